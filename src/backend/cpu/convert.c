/* Bulk f16 -> f32 and Q8_0 -> f32 conversion (KV cache tiles), with an AVX-512 / F16C path
 * (x86-64) or a NEON one (AArch64) chosen once at run time; the scalar loop
 * is the reference. */
#include <pthread.h>

#include "backend/cpu/cpu.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

__attribute__((target("avx512f"))) static void f16_to_f32_avx512(const void *src, float *dst,
                                                                 int64_t n) {
  const uint16_t *s = src;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(s + i))));
  for (; i < n; i++) dst[i] = tl_f16_to_f32(tl_rd_u16(s + i));
}

/* Q8_0 blocks: d * q, the same single rounding as tl_dequant_q8_0. */
__attribute__((target("avx512f"))) static void q8_0_to_f32_avx512(const void *src, float *dst,
                                                                  int64_t n) {
  const uint8_t *b = src;
  for (int64_t i = 0; i < n / TL_QK8_0; i++, b += sizeof(tl_block_q8_0), dst += TL_QK8_0) {
    const __m512 d = _mm512_set1_ps(tl_f16_to_f32(tl_rd_u16(b)));
    const __m128i *q = (const __m128i *)(const void *)(b + 2);
    _mm512_storeu_ps(
        dst, _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(q)))));
    _mm512_storeu_ps(
        dst + 16,
        _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(q + 1)))));
  }
}

__attribute__((target("avx2,f16c"))) static void f16_to_f32_f16c(const void *src, float *dst,
                                                                 int64_t n) {
  const uint16_t *s = src;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + i))));
  for (; i < n; i++) dst[i] = tl_f16_to_f32(tl_rd_u16(s + i));
}
#endif

#if defined(__aarch64__)
void tl_neon_f16_to_f32(const void *src, float *dst, int64_t n); /* kernels_neon.c */
#endif

static void f16_to_f32_scalar(const void *src, float *dst, int64_t n) {
  const uint8_t *s = src;
  for (int64_t i = 0; i < n; i++) dst[i] = tl_f16_to_f32(tl_rd_u16(s + 2 * i));
}

static void (*g_cvt)(const void *, float *, int64_t) = f16_to_f32_scalar;
static void (*g_q8)(const void *, float *, int64_t) = tl_dequant_q8_0;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void init(void) {
  const tl_cpu_kernels *k = tl_cpu_kernels_best();
  if (k == tl_cpu_kernels_scalar()) return; /* TL_CPU_KERNELS=scalar: the reference */
#if defined(__x86_64__) || defined(__i386__)
  if (tl_cpu_has_avx512()) {
    g_cvt = f16_to_f32_avx512;
    g_q8 = q8_0_to_f32_avx512;
  } else if (tl_cpu_has_avx2())
    g_cvt = f16_to_f32_f16c;
#endif
#if defined(__aarch64__)
  g_cvt = tl_neon_f16_to_f32; /* FCVTL: baseline Armv8 */
#endif
}

void tl_cpu_f16_to_f32(const void *src, float *dst, int64_t n) {
  pthread_once(&g_once, init);
  g_cvt(src, dst, n);
}

void tl_cpu_q8_0_to_f32(const void *src, float *dst, int64_t n) {
  pthread_once(&g_once, init);
  g_q8(src, dst, n);
}
