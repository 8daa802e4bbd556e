/* The CUDA backend: the operations of backend/backend.h on an NVIDIA GPU.
 * Built into its own shared object (libtorchless-cuda.so) that the library
 * opens with dlopen (cuda_host.h); it links the CUDA runtime statically and
 * opens cuBLAS with dlopen, so it needs only the driver at run time.
 *
 * Weights are uploaded once in their file type. A decode step (and batches
 * under 16 tokens) multiplies them in place (mmvq.cuh): quantized types with
 * 8-bit activations and __dp4a, float types with float32 activations (F16
 * weights with f16-rounded ones under an f16 KV cache, see f16x). Larger
 * batches of quantized weights go to the int8 tensor cores (mmq.cuh), with
 * the same 8-bit activations and block sums as decode, so that a batch and
 * decode agree; float weights through cuBLAS (gemm.cuh); Q2_K (and
 * everything without cuBLAS) through a tiled float kernel. Attention reads
 * an f16 or f32 KV cache, [layer][sequence][kv head][position][head_dim],
 * split over blocks for decode (attn.cuh). One stream; operations are
 * queued without waiting, and a device error is kept and returned by
 * step_end or to_host. Kernels are launched with programmatic dependent
 * launch (see pdl_entry). A decode step is recorded, its matvecs that share
 * an input merged into one launch, and launched as a CUDA graph (replay).
 *
 * Switches for comparisons (environment): TL_CUDA_CUBLAS=0, TL_CUDA_MMVQ=0,
 * TL_CUDA_MMQ=0, TL_CUDA_PDL=0, TL_CUDA_MERGE=0, TL_CUDA_SPLIT=0,
 * TL_CUDA_F16X=0|1, TL_CUDA_GRAPHS=0, TL_CUDA_FUSE=1, TL_CUDA_GEMM_MIN=N,
 * TL_CUDA_PROFILE=1 (each operation timed, totals logged at the end). */
#include "backend/cuda/gpu.cuh" /* the CUDA headers, or HIP's and the names mapped */

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <utility>

extern "C" {
#include "backend/cuda/cuda_host.h"
}

/* ggml's type ids (quant/quant.h), and the block layouts of those this
 * backend multiplies: elements and bytes per block. */
enum {
  T_F32 = 0,
  T_F16 = 1,
  T_Q4_0 = 2,
  T_Q4_1 = 3,
  T_Q5_0 = 6,
  T_Q5_1 = 7,
  T_Q8_0 = 8,
  T_Q2_K = 10,
  T_Q3_K = 11,
  T_Q4_K = 12,
  T_Q5_K = 13,
  T_Q6_K = 14,
  T_BF16 = 30,
};

template <int T>
struct blk;
/* float types: a "block" is 8 values (dq8 reads one) */
template <>
struct blk<T_F32> {
  enum { n = 8, bytes = 32 };
};
template <>
struct blk<T_F16> {
  enum { n = 8, bytes = 16 };
};
template <>
struct blk<T_BF16> {
  enum { n = 8, bytes = 16 };
};
template <>
struct blk<T_Q4_0> {
  enum { n = 32, bytes = 18 };
};
template <>
struct blk<T_Q4_1> {
  enum { n = 32, bytes = 20 };
};
template <>
struct blk<T_Q5_0> {
  enum { n = 32, bytes = 22 };
};
template <>
struct blk<T_Q5_1> {
  enum { n = 32, bytes = 24 };
};
template <>
struct blk<T_Q8_0> {
  enum { n = 32, bytes = 34 };
};
template <>
struct blk<T_Q2_K> {
  enum { n = 256, bytes = 84 };
};
template <>
struct blk<T_Q3_K> {
  enum { n = 256, bytes = 110 };
};
template <>
struct blk<T_Q4_K> {
  enum { n = 256, bytes = 144 };
};
template <>
struct blk<T_Q5_K> {
  enum { n = 256, bytes = 176 };
};
template <>
struct blk<T_Q6_K> {
  enum { n = 256, bytes = 210 };
};

/* Every type this backend multiplies: X(T, A) for each, for the switches
 * below (A passed through). */
#define CUDA_TYPES(X, A)                                                                     \
  X(T_F32, A)                                                                                \
  X(T_F16, A)                                                                                \
  X(T_BF16, A)                                                                               \
  X(T_Q8_0, A)                                                                               \
  X(T_Q4_0, A)                                                                               \
  X(T_Q4_1, A) X(T_Q5_0, A) X(T_Q5_1, A) X(T_Q2_K, A) X(T_Q3_K, A) X(T_Q4_K, A) X(T_Q5_K, A) \
      X(T_Q6_K, A)

static bool type_known(uint32_t t) {
  switch (t) {
#define KNOWN(T, A) case T:
    CUDA_TYPES(KNOWN, _)
#undef KNOWN
    return true;
  }
  return false;
}

static const tl_cuda_host *g_host;

/* ---- dequantization: 8 consecutive values of a block --------------------- */

__device__ __forceinline__ float h2f(const uint8_t *p) {
  return __half2float(__ushort_as_half(*(const uint16_t *)p));
}

/* The 6-bit scale and min of sub-block j of a Q4_K/Q5_K block. */
__device__ __forceinline__ void k4_scale_min(int j, const uint8_t *q, float *sc, float *m) {
  if (j < 4) {
    *sc = (float)(q[j] & 63);
    *m = (float)(q[j + 4] & 63);
  } else {
    *sc = (float)((q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4));
    *m = (float)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

/* v[0..8) = elements 8k .. 8k + 7 of the block at b, with ggml's float
 * operations in ggml's order (the CPU's dequantizers match them bit for
 * bit). For the float types b points at the 8 values themselves. */
template <int T>
__device__ __forceinline__ void dq8(const uint8_t *b, int k, float *v);

template <>
__device__ __forceinline__ void dq8<T_F32>(const uint8_t *b, int k, float *v) {
  const float *f = (const float *)b;
#pragma unroll
  for (int j = 0; j < 8; j++) v[j] = f[j];
}
template <>
__device__ __forceinline__ void dq8<T_F16>(const uint8_t *b, int k, float *v) {
  const __half *h = (const __half *)b;
#pragma unroll
  for (int j = 0; j < 8; j++) v[j] = __half2float(h[j]);
}
template <>
__device__ __forceinline__ void dq8<T_BF16>(const uint8_t *b, int k, float *v) {
  const __nv_bfloat16 *h = (const __nv_bfloat16 *)b;
#pragma unroll
  for (int j = 0; j < 8; j++) v[j] = __bfloat162float(h[j]);
}
template <>
__device__ __forceinline__ void dq8<T_Q8_0>(const uint8_t *b, int k, float *v) {
  const float d = h2f(b);
  const int8_t *q = (const int8_t *)(b + 2) + 8 * k;
#pragma unroll
  for (int j = 0; j < 8; j++) v[j] = (float)q[j] * d;
}
template <>
__device__ __forceinline__ void dq8<T_Q4_0>(const uint8_t *b, int k, float *v) {
  const float d = h2f(b);
  const uint8_t *q = b + 2 + 8 * (k & 1);
  const int sh = k < 2 ? 0 : 4;
#pragma unroll
  for (int j = 0; j < 8; j++) v[j] = (float)(((q[j] >> sh) & 15) - 8) * d;
}
template <>
__device__ __forceinline__ void dq8<T_Q4_1>(const uint8_t *b, int k, float *v) {
  const float d = h2f(b), m = h2f(b + 2);
  const uint8_t *q = b + 4 + 8 * (k & 1);
  const int sh = k < 2 ? 0 : 4;
#pragma unroll
  for (int j = 0; j < 8; j++) v[j] = (float)((q[j] >> sh) & 15) * d + m;
}
__device__ __forceinline__ uint32_t ld_u32_bytes(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
template <>
__device__ __forceinline__ void dq8<T_Q5_0>(const uint8_t *b, int k, float *v) {
  const float d = h2f(b);
  const uint32_t qh = ld_u32_bytes(b + 2);
  const uint8_t *q = b + 6 + 8 * (k & 1);
  const int sh = k < 2 ? 0 : 4;
#pragma unroll
  for (int j = 0; j < 8; j++) {
    const int e = 8 * k + j;
    v[j] = (float)((((q[j] >> sh) & 15) | (int)((qh >> e) & 1) << 4) - 16) * d;
  }
}
template <>
__device__ __forceinline__ void dq8<T_Q5_1>(const uint8_t *b, int k, float *v) {
  const float d = h2f(b), m = h2f(b + 2);
  const uint32_t qh = ld_u32_bytes(b + 4);
  const uint8_t *q = b + 8 + 8 * (k & 1);
  const int sh = k < 2 ? 0 : 4;
#pragma unroll
  for (int j = 0; j < 8; j++) {
    const int e = 8 * k + j;
    v[j] = (float)(((q[j] >> sh) & 15) | (int)((qh >> e) & 1) << 4) * d + m;
  }
}
template <>
__device__ __forceinline__ void dq8<T_Q2_K>(const uint8_t *b, int k, float *v) {
  const int e = 8 * k;
  const float d = h2f(b + 80), dmin = h2f(b + 82);
  const uint8_t sc = b[e / 16];
  const float dl = d * (float)(sc & 0x0F), ml = dmin * (float)(sc >> 4);
  const uint8_t *q = b + 16 + (e / 128) * 32 + (e % 32);
  const int sh = 2 * ((e % 128) / 32);
#pragma unroll
  for (int j = 0; j < 8; j++) v[j] = dl * (float)((q[j] >> sh) & 3) - ml;
}
template <>
__device__ __forceinline__ void dq8<T_Q3_K>(const uint8_t *b, int k, float *v) {
  const int e = 8 * k, js = e / 16;
  const uint8_t *sc = b + 96;
  const int lo = js < 8 ? (sc[js] & 0x0F) : (sc[js - 8] >> 4);
  const int hi = (sc[8 + js % 4] >> (2 * (js / 4))) & 3;
  const float dl = h2f(b + 108) * (float)((lo | hi << 4) - 32);
  const uint8_t *q = b + 32 + (e / 128) * 32 + (e % 32);
  const uint8_t *hm = b + (e % 32);
  const int sh = 2 * ((e % 128) / 32);
  const uint8_t mask = (uint8_t)(1u << (e / 32));
#pragma unroll
  for (int j = 0; j < 8; j++) v[j] = dl * (float)(((q[j] >> sh) & 3) - ((hm[j] & mask) ? 0 : 4));
}
template <>
__device__ __forceinline__ void dq8<T_Q4_K>(const uint8_t *b, int k, float *v) {
  const int e = 8 * k, g = e / 64, l = e % 64;
  float sc, m;
  k4_scale_min(2 * g + (l >= 32), b + 4, &sc, &m);
  const float d1 = h2f(b) * sc, m1 = h2f(b + 2) * m;
  const uint8_t *q = b + 16 + 32 * g + (l % 32);
  const int sh = l < 32 ? 0 : 4;
#pragma unroll
  for (int j = 0; j < 8; j++) v[j] = d1 * (float)((q[j] >> sh) & 15) - m1;
}
template <>
__device__ __forceinline__ void dq8<T_Q5_K>(const uint8_t *b, int k, float *v) {
  const int e = 8 * k, g = e / 64, l = e % 64;
  float sc, m;
  k4_scale_min(2 * g + (l >= 32), b + 4, &sc, &m);
  const float d1 = h2f(b) * sc, m1 = h2f(b + 2) * m;
  const uint8_t *q = b + 48 + 32 * g + (l % 32), *qh = b + 16 + (l % 32);
  const int sh = l < 32 ? 0 : 4;
  const uint8_t u = (uint8_t)(1u << (2 * g + (l >= 32)));
#pragma unroll
  for (int j = 0; j < 8; j++)
    v[j] = d1 * (float)(((q[j] >> sh) & 15) + ((qh[j] & u) ? 16 : 0)) - m1;
}
template <>
__device__ __forceinline__ void dq8<T_Q6_K>(const uint8_t *b, int k, float *v) {
  const int e = 8 * k, h = e / 128, r = e % 128, kk = r / 32, l = r % 32;
  const float d = h2f(b + 208) * (float)((const int8_t *)(b + 192))[e / 16];
  const uint8_t *ql = b + 64 * h + l + 32 * (kk % 2), *qh = b + 128 + 32 * h + l;
  const int sh = kk < 2 ? 0 : 4;
#pragma unroll
  for (int j = 0; j < 8; j++) {
    const int q = ((ql[j] >> sh) & 15) | (((qh[j] >> (2 * kk)) & 3) << 4);
    v[j] = d * (float)(q - 32);
  }
}

/* Value e (< cols) of a row of a float type, for the last cols % 8. */
template <int T>
__device__ __forceinline__ float fl_at(const uint8_t *row, int64_t e) {
  if (T == T_F32) return ((const float *)row)[e];
  if (T == T_F16) return __half2float(((const __half *)row)[e]);
  return __bfloat162float(((const __nv_bfloat16 *)row)[e]);
}

/* ---- kernels ---------------------------------------------------------------- */

/* The first statement of every kernel. With programmatic dependent launch
 * (sm_90; see launch()) a kernel may be started while the one before it in
 * the stream is still running: it waits here until that one has finished
 * and its writes are visible, and then lets the next kernel be started in
 * turn, so that the launch latency of each kernel is hidden behind the tail
 * of the one before. Without it both instructions do nothing. */
__device__ __forceinline__ void pdl_entry() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;" :::);
#endif
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = TL_WARP / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = TL_WARP / 2; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
/* The sum over a block of up to 1024 threads (every thread gets it). */
__device__ float block_sum(float v, float *sh) {
  const int lane = threadIdx.x % TL_WARP, w = threadIdx.x / TL_WARP,
            nw = (blockDim.x + TL_WARP - 1) / TL_WARP;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) sh[w] = v;
  __syncthreads();
  v = lane < nw ? sh[lane] : 0.0f;
  return warp_sum(v);
}
__device__ float block_max(float v, float *sh) {
  const int lane = threadIdx.x % TL_WARP, w = threadIdx.x / TL_WARP,
            nw = (blockDim.x + TL_WARP - 1) / TL_WARP;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) sh[w] = v;
  __syncthreads();
  v = lane < nw ? sh[lane] : -INFINITY;
  return warp_max(v);
}

#define MM_WARPS 4
#define MM_THREADS (MM_WARPS * TL_WARP)

/* y[t][r] = W[r] . x[t] (+ bias[r]) for the tokens t0 .. t0 + NT of
 * blockIdx.y, one warp per row: the lanes walk the row 8 values at a time,
 * dequantizing each 8 once for all NT tokens. */
template <int T, int NT>
__global__ void __launch_bounds__(MM_THREADS)
    k_matmul(const uint8_t *__restrict__ W, size_t ldw, int rows, int cols,
             const float *__restrict__ x, int n, const float *__restrict__ bias,
             float *__restrict__ y, int64_t ldy) {
  pdl_entry();
  const int lane = threadIdx.x % TL_WARP, row = blockIdx.x * MM_WARPS + threadIdx.x / TL_WARP;
  const int t0 = blockIdx.y * NT;
  if (row >= rows) return;
  const int nt = n - t0 < NT ? n - t0 : NT;
  const uint8_t *wr = W + (size_t)row * ldw;
  const float *xt = x + (size_t)t0 * cols;
  float acc[NT];
#pragma unroll
  for (int t = 0; t < NT; t++) acc[t] = 0.0f;
  constexpr int CPB = blk<T>::n / 8; /* 8-value pieces per block */
  const int chunks = cols / 8;
#pragma unroll 4
  for (int c = lane; c < chunks; c += TL_WARP) {
    float v[8];
    dq8<T>(wr + (size_t)(c / CPB) * blk<T>::bytes, c % CPB, v);
#pragma unroll
    for (int t = 0; t < NT; t++) {
      if (t < nt) {
        const float *xp = xt + (size_t)t * cols + 8 * c;
        float s = acc[t];
#pragma unroll
        for (int j = 0; j < 8; j++) s = fmaf(v[j], xp[j], s);
        acc[t] = s;
      }
    }
  }
  if (T == T_F32 || T == T_F16 || T == T_BF16) /* the last cols % 8 */
    for (int e = chunks * 8 + lane; e < cols; e += TL_WARP) {
      const float w = fl_at<T>(wr, e);
#pragma unroll
      for (int t = 0; t < NT; t++)
        if (t < nt) acc[t] = fmaf(w, xt[(size_t)t * cols + e], acc[t]);
    }
#pragma unroll
  for (int t = 0; t < NT; t++) {
    const float s = warp_sum(acc[t]);
    if (lane == 0 && t < nt) y[(size_t)(t0 + t) * ldy + row] = s + (bias ? bias[row] : 0.0f);
  }
}

/* Batches (prefill): tiles of TM rows x TN tokens per block of 256
 * threads. Each step over 32 columns dequantizes the weight tile into shared
 * memory once (one dq8 per thread) and stages the activations beside it;
 * each thread then accumulates 4 rows x 2 tokens in float32. cols must be a
 * multiple of 32. */
#define GT_M 64
#define GT_N 32
#define GT_K 32
template <int T>
__global__ void __launch_bounds__(256)
    k_matmul_tiled(const uint8_t *__restrict__ W, size_t ldw, int rows, int cols,
                   const float *__restrict__ x, int n, const float *__restrict__ bias,
                   float *__restrict__ y, int64_t ldy) {
  pdl_entry();
  __shared__ float ws[GT_M][GT_K + 1], xs[GT_N][GT_K + 1];
  const int tid = threadIdx.x, r0 = blockIdx.x * GT_M, t0 = blockIdx.y * GT_N;
  const int tr = tid / 16, tt = tid % 16; /* rows tr*4 .. +3, tokens tt, tt + 16 */
  float acc[4][2] = {{0, 0}, {0, 0}, {0, 0}, {0, 0}};
  constexpr int CPB = blk<T>::n / 8;
  const int wr = tid / 4, wk = tid % 4; /* the weight piece this thread dequantizes */
  for (int c0 = 0; c0 < cols; c0 += GT_K) {
    float v[8];
    if (r0 + wr < rows) {
      const int ch = (c0 + 8 * wk) / 8;
      dq8<T>(W + (size_t)(r0 + wr) * ldw + (size_t)(ch / CPB) * blk<T>::bytes, ch % CPB, v);
    } else {
#pragma unroll
      for (int j = 0; j < 8; j++) v[j] = 0.0f;
    }
#pragma unroll
    for (int j = 0; j < 8; j++) ws[wr][8 * wk + j] = v[j];
#pragma unroll
    for (int i = 0; i < 4; i++) {
      const int e = tid + 256 * i, tk = e / GT_K, kk = e % GT_K;
      xs[tk][kk] = t0 + tk < n ? x[(size_t)(t0 + tk) * cols + c0 + kk] : 0.0f;
    }
    __syncthreads();
#pragma unroll 8
    for (int kk = 0; kk < GT_K; kk++) {
      const float x0 = xs[tt][kk], x1 = xs[tt + 16][kk];
#pragma unroll
      for (int i = 0; i < 4; i++) {
        const float w = ws[tr * 4 + i][kk];
        acc[i][0] = fmaf(w, x0, acc[i][0]);
        acc[i][1] = fmaf(w, x1, acc[i][1]);
      }
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; i++) {
    const int r = r0 + tr * 4 + i;
    if (r >= rows) continue;
    const float b = bias ? bias[r] : 0.0f;
    if (t0 + tt < n) y[(size_t)(t0 + tt) * ldy + r] = acc[i][0] + b;
    if (t0 + tt + 16 < n) y[(size_t)(t0 + tt + 16) * ldy + r] = acc[i][1] + b;
  }
}

/* x[t] = row tokens[t] of the table, one thread per 8 values. */
template <int T>
__global__ void k_embed(const uint8_t *__restrict__ W, size_t ldw, int cols,
                        const int32_t *__restrict__ tok, float *__restrict__ x) {
  pdl_entry();
  const int t = blockIdx.y;
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  const uint8_t *wr = W + (size_t)tok[t] * ldw;
  float *xr = x + (size_t)t * cols;
  constexpr int CPB = blk<T>::n / 8;
  if (c < cols / 8) {
    float v[8];
    dq8<T>(wr + (size_t)(c / CPB) * blk<T>::bytes, c % CPB, v);
#pragma unroll
    for (int j = 0; j < 8; j++) xr[8 * c + j] = v[j];
  }
  if (T == T_F32 || T == T_F16 || T == T_BF16) {
    const int e = (cols / 8) * 8 + c;
    if (c < cols % 8) xr[e] = fl_at<T>(wr, e);
  }
}

__global__ void k_select(const float *__restrict__ x, float *__restrict__ y, int64_t len,
                         const int32_t *__restrict__ rows) {
  pdl_entry();
  const int i = blockIdx.y;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < len;
       e += (int64_t)gridDim.x * blockDim.x)
    y[(size_t)i * len + e] = x[(size_t)rows[i] * len + e];
}

/* One block per row: x += a (+ b); y = norm(x) * w (+ nb). */
/* Called by the 32 lanes of a warp with 32 consecutive values v of flat
 * index i (i % 32 == lane): their 8-bit form into xq / xd, as k_quant_q8
 * makes it (a block of 32 values per warp). */
static_assert(TL_WARP == 32, "quant_store and k_quant_q8 make a block of 32 values per warp");
__device__ __forceinline__ void quant_store(float v, int64_t i, int8_t *xq, float2 *xd) {
  const float amax = warp_max(fabsf(v));
  const float d = amax / 127.0f;
  const int q = amax > 0.0f ? __float2int_rn(v / d) : 0;
  xq[i] = (int8_t)q;
  const int sum = __reduce_add_sync(0xffffffffu, q);
  if (i % 32 == 0) xd[i / 32] = make_float2(d, d * (float)sum);
}

/* xq: also y in 8 bits (len % 32 == 0), for the next matmul. */
__global__ void k_norm(float *__restrict__ x, const float *__restrict__ a,
                       const float *__restrict__ b, const float *__restrict__ w,
                       const float *__restrict__ nb, float *y, int64_t len, int layer_norm,
                       float eps, int8_t *xq, float2 *xd) {
  pdl_entry();
  __shared__ float sh[1024 / TL_WARP]; /* a warp's sum each (block_sum) */
  float *xr = x + (size_t)blockIdx.x * len;
  if (a) {
    const float *ar = a + (size_t)blockIdx.x * len, *br = b ? b + (size_t)blockIdx.x * len : NULL;
    for (int64_t i = threadIdx.x; i < len; i += blockDim.x) xr[i] += br ? ar[i] + br[i] : ar[i];
  }
  if (!w) return;
  __syncthreads();
  float mean = 0.0f;
  if (layer_norm) {
    float s = 0.0f;
    for (int64_t i = threadIdx.x; i < len; i += blockDim.x) s += xr[i];
    mean = block_sum(s, sh) / (float)len;
  }
  float ss = 0.0f;
  for (int64_t i = threadIdx.x; i < len; i += blockDim.x) ss += (xr[i] - mean) * (xr[i] - mean);
  const float scale = rsqrtf(block_sum(ss, sh) / (float)len + eps);
  float *yr = y + (size_t)blockIdx.x * len;
  __syncthreads(); /* every thread has read x before y (which may be x) is written */
  for (int64_t i = threadIdx.x; i < len; i += blockDim.x) {
    const float v = (xr[i] - mean) * scale * w[i] + (nb ? nb[i] : 0.0f);
    yr[i] = v;
    if (xq) quant_store(v, (int64_t)blockIdx.x * len + i, xq, xd);
  }
}

/* One thread per (token, head, pair); positions from the step. */
__global__ void k_rope(float *q, float *k, int nq, int nk, int hd, int n_rot, int neox, float theta,
                       float freq_scale, const float *__restrict__ factors,
                       const int32_t *__restrict__ pos, int n) {
  pdl_entry();
  const int half = n_rot / 2;
  const int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (idx >= (int64_t)n * (nq + nk) * half) return;
  const int i = (int)(idx % half), h = (int)(idx / half % (nq + nk)),
            t = (int)(idx / half / (nq + nk));
  double inv = pow((double)theta, -2.0 * i / n_rot);
  if (factors) inv /= factors[i];
  const double ang = (double)pos[t] * freq_scale * inv;
  const float c = (float)cos(ang), s = (float)sin(ang);
  float *p = h < nq ? q + ((size_t)t * nq + h) * hd : k + ((size_t)t * nk + (h - nq)) * hd;
  const int i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
  const float x0 = p[i0], x1 = p[i1];
  p[i0] = x0 * c - x1 * s;
  p[i1] = x0 * s + x1 * c;
}

/* One thread per (token, kv head, value); a token whose position a later
 * token of the step (same sequence) also writes is skipped (keep[t] == 0,
 * worked out on the host), so that the later stays. */
template <typename E>
__global__ void k_kv_store(E *kc, E *vc, const float *__restrict__ k, const float *__restrict__ v,
                           const int32_t *__restrict__ pos, const int32_t *__restrict__ seq,
                           const int32_t *__restrict__ keep, int nkv, int hd, int layer, int n_seq,
                           int64_t kv_ctx) {
  pdl_entry();
  const int idx = blockIdx.x * blockDim.x + threadIdx.x, t = blockIdx.y;
  if (idx >= nkv * hd || !keep[t]) return;
  const int h = idx / hd, d = idx % hd;
  const size_t at = ((((size_t)layer * n_seq + seq[t]) * nkv + h) * kv_ctx + pos[t]) * hd + d;
  const size_t src = (size_t)t * nkv * hd + idx;
  if (sizeof(E) == 2) {
    ((__half *)kc)[at] = __float2half_rn(k[src]);
    ((__half *)vc)[at] = __float2half_rn(v[src]);
  } else {
    ((float *)kc)[at] = k[src];
    ((float *)vc)[at] = v[src];
  }
}

template <typename E>
__device__ __forceinline__ float ld_kv(const E *p);
template <>
__device__ __forceinline__ float ld_kv<__half>(const __half *p) {
  return __half2float(*p);
}
template <>
__device__ __forceinline__ float ld_kv<float>(const float *p) {
  return *p;
}

__device__ __forceinline__ float act_f(int kind, float x) {
  if (kind == TL_ACT_SILU) return x / (1.0f + expf(-x));
  if (kind == TL_ACT_GELU_TANH)
    return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
  return 0.5f * x * (1.0f + erff(x * 0.7071067811865476f));
}

/* xq: also the result in 8 bits (n % 32 == 0; the grid's stride is a
 * multiple of 32, so each warp has 32 consecutive values). */
__global__ void k_act(int kind, int gated, float *a, const float *__restrict__ b, int64_t n,
                      int8_t *xq, float2 *xd) {
  pdl_entry();
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x) {
    const float v = gated ? act_f(kind, a[i]) * b[i] : act_f(kind, b[i]);
    a[i] = v;
    if (xq) quant_store(v, i, xq, xd);
  }
}

__global__ void k_scale(float *x, float s, int64_t n) {
  pdl_entry();
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x)
    x[i] *= s;
}

__global__ void k_softcap(float *x, float cap, int64_t n) {
  pdl_entry();
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x)
    x[i] = cap * tanhf(x[i] / cap);
}

#include "backend/cuda/attn.cuh"
#include "backend/cuda/gemm.cuh"
#include "backend/cuda/mmvq.cuh"
#ifndef TL_HIP /* int8 mma and cp.async: NVIDIA's (sm_80) */
#include "backend/cuda/mmq.cuh"
#endif

/* ---- the backend --------------------------------------------------------------- */

/* Operation kinds, for TL_CUDA_PROFILE */
enum {
  P_EMBED,
  P_SELECT,
  P_NORM,
  P_QUANT,
  P_MATMUL,
  P_GEMM,
  P_ROPE,
  P_KV,
  P_ATTN,
  P_ACT,
  P_OTHER,
  P_N
};
static const char *const prof_names[P_N] = {"embed",     "select_out", "norm",         "quant x",
                                            "matvec",    "gemm",       "rope",         "kv_store",
                                            "attention", "act",        "scale/softcap"};

typedef struct cuda_ctx {
  tl_backend be;
  tl_backend_config cfg;
  int device, n_sm;
  char name[256];
  cudaStream_t stream;
  cudaError_t err; /* the first error, kept for step_end / to_host */
  char err_where[64];
  void *k_cache, *v_cache;
  size_t kv_es;
  int64_t kv_ctx;
  /* the step's arrays (n_batch each: tokens, positions, sequences, keep
   * flags of kv_store, rows out), staged in pinned memory and copied in one
   * transfer */
  int32_t *h_stage, *d_stage;
  int32_t *d_tok, *d_pos, *d_seq, *d_keep, *d_out;
  int64_t *h_hash; /* kv_store's duplicate check, 2 * n_batch slots (pow2) */
  int hash_cap;
  int32_t n, n_out, max_len; /* max_len: the most positions a token sees */
  /* every device allocation (weights and vectors uploaded, buffers, the
   * KV cache, scratch), with its size: memory() reports them */
  struct dalloc {
    void *p;
    size_t bytes;
  } * allocs;
  int n_allocs, cap_allocs;
  uint64_t bytes_now, bytes_peak;
  int grid_cap;                 /* blocks for grid-stride loops */
  int64_t max_cols, max_qelems; /* widest weight; most values of a quantized one */
  /* 8-bit activations of the quantized matvec (n_batch x max_cols), and the
   * x they were made from while no other operation ran since */
  int8_t *xq;
  float2 *xd;
  int64_t xq_cap;
  const float *xq_src;
  int64_t xq_cols;
  int32_t xq_n;
  bool mmvq;  /* TL_CUDA_MMVQ=0: the float kernels for every type */
  bool pdl;   /* programmatic dependent launch (TL_CUDA_PDL=0: off) */
  bool mmq;   /* batches of quantized weights on the int8 tensor cores (TL_CUDA_MMQ=0: off) */
  bool merge; /* decode matvecs sharing an input in one launch (TL_CUDA_MERGE=0: off) */
  bool fuse;  /* norm and act also write their result in 8 bits (TL_CUDA_FUSE=1) */
  /* cuBLAS for batches of gemm_min tokens or more (TL_CUDA_CUBLAS=0: off) */
  blas_api blas;
  bool split;   /* activations as hi + lo for float weights (TL_CUDA_SPLIT) */
  bool f16x;    /* F16 weights take f16 activations (TL_CUDA_F16X=1) */
  int gemm_min; /* TL_CUDA_GEMM_MIN */
  __half *wh;   /* dequantized rows of a quantized weight */
  int64_t wh_cap;
  void *xh, *xl; /* activations in 16 bits, high and low parts */
  float *xs;     /* their per-token scales */
  int64_t xh_cap;
  float *att_part; /* split attention's partial results */
  int64_t att_cap; /* in (head_dim + 2)-float entries */
  /* decode steps (one token) are captured as a graph and launched whole:
   * the kernels then run back to back without the gaps of separate
   * launches. Each step is captured anew and the executable graph updated
   * in place (cheap when only parameters changed), so every operation the
   * recipe calls is run; TL_CUDA_GRAPHS=0 turns this off. */
  bool graphs, rec;
  cudaGraphExec_t exec;
  /* while rec (a decode step with graphs), the operations are recorded as
   * commands, not launched; step_end launches the graph as it is when the
   * commands equal those it was captured from (the usual decode step: same
   * operations, same buffers, positions read from device memory), and
   * otherwise captures them anew. */
  struct cmd *cmds, *exec_cmds;
  int n_cmds, cap_cmds, n_exec_cmds, cap_exec;
  long n_captures, n_replays; /* decode steps captured, and launched as they were */
  /* TL_CUDA_PROFILE=1: each operation waited for and timed (no graphs),
   * the totals logged when the backend is freed */
  bool prof;
  double prof_t0, prof_ms[P_N];
  long prof_calls[P_N];
} cuda_ctx;

static cuda_ctx *cu(tl_backend *be) {
  return (cuda_ctx *)be->priv;
}

static void note(cuda_ctx *c, cudaError_t e, const char *where) {
  if (e != cudaSuccess && c->err == cudaSuccess) {
    c->err = e;
    snprintf(c->err_where, sizeof c->err_where, "%s", where);
  }
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* after an operation's launches: the error, and under TL_CUDA_PROFILE its
 * time */
static void launched(cuda_ctx *c, const char *what, int kind) {
  note(c, cudaGetLastError(), what);
  if (kind != P_MATMUL && kind != P_GEMM && kind != P_QUANT) c->xq_src = NULL;
  if (c->prof) {
    cudaStreamSynchronize(c->stream);
    const double t = now_ms();
    c->prof_ms[kind] += t - c->prof_t0;
    c->prof_calls[kind]++;
    c->prof_t0 = t;
  }
}
#define LAUNCHED(c, what, kind) launched((c), (what), (kind))

/* kernel<<<grid, block, 0, stream>>>(args), with programmatic dependent
 * launch where the device has it (TL_CUDA_PDL=0: off); every kernel begins
 * with pdl_entry(). */
template <typename... KA, typename... A>
static void launch_smem(cuda_ctx *c, size_t smem, void (*kern)(KA...), dim3 grid, dim3 block,
                        A &&...args) {
#ifdef TL_HIP /* no programmatic dependent launch */
  kern<<<grid, block, smem, c->stream>>>(std::forward<A>(args)...);
  note(c, cudaGetLastError(), "kernel launch");
#else
  cudaLaunchConfig_t cf = {};
  cf.gridDim = grid;
  cf.blockDim = block;
  cf.dynamicSmemBytes = smem;
  cf.stream = c->stream;
  cudaLaunchAttribute at[1] = {};
  at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  at[0].val.programmaticStreamSerializationAllowed = 1;
  cf.attrs = at;
  cf.numAttrs = c->pdl ? 1 : 0;
  note(c, cudaLaunchKernelEx(&cf, kern, std::forward<A>(args)...), "kernel launch");
#endif
}
template <typename... KA, typename... A>
static void launch(cuda_ctx *c, void (*kern)(KA...), dim3 grid, dim3 block, A &&...args) {
  launch_smem(c, 0, kern, grid, block, std::forward<A>(args)...);
}

/* positions per split of attention (tl_backend_config.att_tile, a test hook) */
static int att_tile(const cuda_ctx *c) {
  return c->cfg.att_tile > 0 ? c->cfg.att_tile : 32;
}

static tl_status fail_cuda(cuda_ctx *c) {
  cudaError_t e = c->err;
  c->err = cudaSuccess;
  cudaGetLastError();
  return g_host->fail(TL_ERR_IO, TL_GPU_API " error in %s: %s", c->err_where,
                      cudaGetErrorString(e));
}

static int grid_for(cuda_ctx *c, int64_t n, int threads) {
  int64_t g = (n + threads - 1) / threads;
  if (g > c->grid_cap) g = c->grid_cap;
  return g < 1 ? 1 : (int)g;
}

/* cudaMalloc, recorded (NULL on failure) */
static void *dmalloc(cuda_ctx *c, size_t bytes) {
  if (c->n_allocs == c->cap_allocs) {
    const int cap = c->cap_allocs ? 2 * c->cap_allocs : 256;
    void *n = realloc(c->allocs, sizeof *c->allocs * (size_t)cap);
    if (!n) return NULL;
    c->allocs = (struct cuda_ctx::dalloc *)n;
    c->cap_allocs = cap;
  }
  void *p = NULL;
  if (cudaMalloc(&p, bytes ? bytes : 1) != cudaSuccess) {
    cudaGetLastError();
    return NULL;
  }
  c->allocs[c->n_allocs].p = p;
  c->allocs[c->n_allocs++].bytes = bytes;
  c->bytes_now += bytes;
  if (c->bytes_now > c->bytes_peak) c->bytes_peak = c->bytes_now;
  return p;
}

static void dfree(cuda_ctx *c, void *p) {
  if (!p) return;
  for (int i = 0; i < c->n_allocs; i++)
    if (c->allocs[i].p == p) {
      c->bytes_now -= c->allocs[i].bytes;
      c->allocs[i] = c->allocs[--c->n_allocs];
      break;
    }
  cudaFree(p);
}

static void cuda_memory(tl_backend *be, uint64_t *now, uint64_t *peak, uint64_t *device_used) {
  cuda_ctx *c = cu(be);
  size_t fr = 0, tot = 0;
  if (cudaMemGetInfo(&fr, &tot) != cudaSuccess) cudaGetLastError();
  *now = c->bytes_now;
  *peak = c->bytes_peak;
  *device_used = tot - fr;
}

static bool cuda_supports_type(const tl_backend *be, uint32_t type) {
  return type_known(type);
}

static void *cuda_buffer_alloc(tl_backend *be, size_t bytes) {
  return dmalloc(cu(be), bytes);
}

static void cuda_buffer_free(tl_backend *be, void *p) {
  dfree(cu(be), p);
}

static tl_status out_of_memory(cuda_ctx *c, size_t bytes, const char *what) {
  size_t fr = 0, tot = 0;
  cudaGetLastError();
  cudaMemGetInfo(&fr, &tot);
  return g_host->fail(TL_ERR_NOMEM,
                      "out of GPU memory for %.1f MiB of %s (%.1f of %.1f GiB free on %s)",
                      (double)bytes / 1048576.0, what, (double)fr / 1073741824.0,
                      (double)tot / 1073741824.0, c->name);
}

/* host bytes onto the device (freed with the backend) */
static tl_status upload(cuda_ctx *c, const void *host, size_t bytes, void **out) {
  void *d = dmalloc(c, bytes);
  if (!d) return out_of_memory(c, bytes, "weights");
  cudaError_t e = cudaMemcpy(d, host, bytes, cudaMemcpyHostToDevice);
  if (e != cudaSuccess) {
    dfree(c, d);
    note(c, e, "upload");
    return fail_cuda(c);
  }
  *out = d;
  return TL_OK;
}

/* (re)sizes a scratch buffer to at least `bytes` */
static tl_status grow(cuda_ctx *c, void **p, size_t bytes, const char *what) {
  dfree(c, *p);
  *p = dmalloc(c, bytes);
  return *p ? TL_OK : out_of_memory(c, bytes, what);
}

/* the weight-shaped scratch buffers, for the widest weight seen */
static tl_status size_scratch(cuda_ctx *c, const tl_weight *w) {
  tl_status s = TL_OK;
  const int64_t nb = c->cfg.n_batch;
  if (w->cols > c->max_cols) {
    c->max_cols = w->cols;
    const int64_t e = nb * w->cols;
    if ((s = grow(c, (void **)&c->xq, (size_t)e, "8-bit activations")) ||
        (s = grow(c, (void **)&c->xd, sizeof(float2) * (size_t)(e / 32 + 1), "8-bit activations")))
      return s;
    c->xq_cap = e;
    c->xq_src = NULL;
    if (c->blas.lib) {
      if ((s = grow(c, &c->xh, 2 * (size_t)e, "16-bit activations")) ||
          (s = grow(c, &c->xl, 2 * (size_t)e, "16-bit activations")))
        return s;
      c->xh_cap = e;
    }
  }
  const bool quant = w->type != T_F32 && w->type != T_F16 && w->type != T_BF16;
  if (c->blas.lib && quant && w->cols % 8 == 0) {
    int64_t e = w->rows * w->cols;
    const int64_t cap = (int64_t)64 << 20; /* at most 64 Mi values (128 MiB) at a time */
    if (e > cap) e = cap;
    if (e < 8 * w->cols) e = 8 * w->cols;
    if (e > c->wh_cap) {
      if ((s = grow(c, (void **)&c->wh, 2 * (size_t)e, "dequantized weights"))) return s;
      c->wh_cap = e;
    }
  }
  return TL_OK;
}

static tl_status cuda_prepare_weight(tl_backend *be, const tl_weight *host, tl_weight *out) {
  cuda_ctx *c = cu(be);
  if (host->scales || !type_known(host->type))
    return g_host->fail(TL_ERR_UNSUPPORTED,
                        "the " TL_GPU_NAME " backend cannot multiply weights of type %u%s",
                        host->type, host->scales ? " (int8 with scales)" : "");
  *out = *host;
  void *d = NULL;
  tl_status s = upload(c, host->data, host->row_bytes * (size_t)host->rows, &d);
  if (s) return s;
  out->data = d;
  return size_scratch(c, host);
}

static tl_status cuda_prepare_vector(tl_backend *be, const float *host, int64_t n,
                                     const float **out) {
  void *d = NULL;
  tl_status s = upload(cu(be), host, sizeof(float) * (size_t)n, &d);
  if (s) return s;
  *out = (const float *)d;
  return TL_OK;
}

static tl_status cuda_kv_copy(tl_backend *be, int32_t src, int32_t dst, int32_t p0, int32_t p1) {
  cuda_ctx *c = cu(be);
  if (src == dst || p1 <= p0) return TL_OK;
  const tl_backend_config *g = &c->cfg;
  const size_t row = (size_t)g->head_dim * c->kv_es, bytes = (size_t)(p1 - p0) * row;
  for (int l = 0; l < g->n_layer; l++)
    for (int h = 0; h < g->n_head_kv; h++) {
      const size_t fo = ((((size_t)l * g->n_seq + src) * g->n_head_kv + h) * c->kv_ctx + p0) * row;
      const size_t to = ((((size_t)l * g->n_seq + dst) * g->n_head_kv + h) * c->kv_ctx + p0) * row;
      note(c,
           cudaMemcpyAsync((uint8_t *)c->k_cache + to, (uint8_t *)c->k_cache + fo, bytes,
                           cudaMemcpyDeviceToDevice, c->stream),
           "kv_copy");
      note(c,
           cudaMemcpyAsync((uint8_t *)c->v_cache + to, (uint8_t *)c->v_cache + fo, bytes,
                           cudaMemcpyDeviceToDevice, c->stream),
           "kv_copy");
    }
  note(c, cudaStreamSynchronize(c->stream), "kv_copy");
  return c->err ? fail_cuda(c) : TL_OK;
}

/* kv_io (backend.h): the cache's rows are kv_io's rows already; one copy
 * of each (layer, head)'s keys and values. */
static tl_status cuda_kv_io(tl_backend *be, int32_t seq, int32_t p0, int32_t p1, void *buf,
                            bool write) {
  cuda_ctx *c = cu(be);
  const tl_backend_config *g = &c->cfg;
  if (seq < 0 || seq >= g->n_seq || p0 < 0 || p1 > c->kv_ctx || p1 < p0)
    return g_host->fail(TL_ERR_INVALID_ARG, "kv_io: sequence %d, positions [%d, %d)", seq, p0, p1);
  const size_t row = (size_t)g->head_dim * c->kv_es, bytes = (size_t)(p1 - p0) * row;
  uint8_t *b = (uint8_t *)buf;
  for (int l = 0; l < g->n_layer; l++)
    for (int h = 0; h < g->n_head_kv; h++) {
      const size_t o = ((((size_t)l * g->n_seq + seq) * g->n_head_kv + h) * c->kv_ctx + p0) * row;
      uint8_t *k = (uint8_t *)c->k_cache + o, *v = (uint8_t *)c->v_cache + o;
      const cudaMemcpyKind kind = write ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost;
      note(c, cudaMemcpyAsync(write ? k : b, write ? b : k, bytes, kind, c->stream), "kv_io");
      note(c, cudaMemcpyAsync(write ? v : b + bytes, write ? b + bytes : v, bytes, kind, c->stream),
           "kv_io");
      b += 2 * bytes;
    }
  note(c, cudaStreamSynchronize(c->stream), "kv_io");
  return c->err ? fail_cuda(c) : TL_OK;
}

/* An operation of a recorded step and its arguments (zeroed first, so that
 * two equal commands are equal bytes). */
enum { C_EMBED, C_SELECT, C_NORM, C_MATMUL, C_ROPE, C_KV, C_ATTN, C_ACT, C_SCALE, C_SOFTCAP };
struct cmd {
  int op;
  union {
    struct {
      tl_weight w;
      float *x;
    } embed;
    struct {
      const float *x;
      float *y;
      int64_t len;
    } sel;
    tl_norm_op norm;
    struct {
      tl_weight w;
      const float *bias, *x;
      float *y;
      int64_t ldy;
      int32_t n;
      /* np > 1: the next matmuls of the step had the same x and weights
       * of the same type and width; their own weights, rows and outputs */
      int32_t np;
      struct {
        const void *data;
        int64_t rows;
        float *y;
        const float *bias;
      } more[2];
    } mm;
    tl_rope_op rope;
    struct {
      const float *k, *v;
      int32_t layer;
    } kv;
    struct {
      tl_attn_op op;
      int ns;
    } attn;
    struct {
      float *a;
      const float *b;
      int64_t n;
      int kind, gated;
    } act;
    struct {
      float *x;
      int64_t n;
      float s;
    } sc;
  } u;
};

/* a new zeroed command at the end of the list (NULL, and the error kept,
 * when out of memory) */
static struct cmd *push(cuda_ctx *c, int op) {
  if (c->n_cmds == c->cap_cmds) {
    const int cap = c->cap_cmds ? 2 * c->cap_cmds : 1024;
    void *n = realloc(c->cmds, sizeof *c->cmds * (size_t)cap);
    if (!n) {
      note(c, cudaErrorMemoryAllocation, "recording a step");
      return NULL;
    }
    c->cmds = (struct cmd *)n;
    c->cap_cmds = cap;
  }
  struct cmd *k = &c->cmds[c->n_cmds++];
  memset(k, 0, sizeof *k);
  k->op = op;
  return k;
}

/* keep[t] = 0 where a later token of the step writes the same (sequence,
 * position) */
static void keep_flags(cuda_ctx *c, const tl_step *st, int32_t *keep) {
  const int cap = c->hash_cap;
  for (int i = 0; i < cap; i++) c->h_hash[i] = -1;
  for (int t = st->n - 1; t >= 0; t--) {
    const int64_t key = (int64_t)(uint32_t)st->seq[t] << 32 | (uint32_t)st->pos[t];
    uint32_t hsh = (uint32_t)(((uint64_t)key * 0x9E3779B97F4A7C15ull) >> 32) & (uint32_t)(cap - 1);
    keep[t] = 1;
    while (c->h_hash[hsh] != -1) {
      if (c->h_hash[hsh] == key) {
        keep[t] = 0;
        break;
      }
      hsh = (hsh + 1) & (uint32_t)(cap - 1);
    }
    if (keep[t]) c->h_hash[hsh] = key;
  }
}

static tl_status cuda_step_begin(tl_backend *be, const tl_step *st) {
  cuda_ctx *c = cu(be);
  const int nb = c->cfg.n_batch;
  if (st->n < 1 || st->n > nb || st->n_out > st->n)
    return g_host->fail(TL_ERR_INVALID_ARG, TL_GPU_NAME ": a step of %d tokens (batch %d)", st->n,
                        nb);
  c->n = st->n;
  c->n_out = st->n_out;
  c->max_len = 1;
  for (int t = 0; t < st->n; t++)
    if (st->pos[t] + 1 > c->max_len) c->max_len = st->pos[t] + 1;
  const size_t b = sizeof(int32_t) * (size_t)st->n;
  int32_t *h = c->h_stage;
  memcpy(h, st->tokens, b);
  memcpy(h + nb, st->pos, b);
  memcpy(h + 2 * nb, st->seq, b);
  keep_flags(c, st, h + 3 * nb);
  if (st->n_out > 0) memcpy(h + 4 * nb, st->out_rows, sizeof(int32_t) * (size_t)st->n_out);
  /* pinned staging: the stream's order makes the copy land before the
   * step's kernels, and step_end waits for the step before the next one
   * rewrites the staging */
  note(c,
       cudaMemcpyAsync(c->d_stage, h, sizeof(int32_t) * 5 * (size_t)nb, cudaMemcpyHostToDevice,
                       c->stream),
       "step");
  c->xq_src = NULL;
  if (c->err) return fail_cuda(c);
  if (c->prof) {
    cudaStreamSynchronize(c->stream);
    c->prof_t0 = now_ms();
  }
  if (c->graphs && st->n == 1) {
    c->rec = true;
    c->n_cmds = 0;
  }
  return c->err ? fail_cuda(c) : TL_OK;
}

static void run_cmd(cuda_ctx *c, const struct cmd *k);

/* a recorded step: the graph launched as it is, or captured anew first */
static void replay(cuda_ctx *c) {
  c->rec = false;
  if (c->err) return;
  if (c->exec && c->n_cmds == c->n_exec_cmds &&
      !memcmp(c->cmds, c->exec_cmds, sizeof *c->cmds * (size_t)c->n_cmds)) {
    note(c, cudaGraphLaunch(c->exec, c->stream), "graph launch");
    c->n_replays++;
    return;
  }
  note(c, cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal), "graph capture");
  if (c->err) return;
  for (int i = 0; i < c->n_cmds; i++) run_cmd(c, &c->cmds[i]);
  cudaGraph_t g = NULL;
  cudaError_t e = cudaStreamEndCapture(c->stream, &g);
  note(c, e, "graph capture");
  c->n_exec_cmds = 0;
  if (e == cudaSuccess && !c->err) {
    cudaGraphExecUpdateResultInfo info;
    if (!c->exec || cudaGraphExecUpdate(c->exec, g, &info) != cudaSuccess) {
      cudaGetLastError();
      if (c->exec) cudaGraphExecDestroy(c->exec);
      c->exec = NULL;
      note(c, cudaGraphInstantiate(&c->exec, g, 0), "graph instantiate");
    }
    if (!c->err) {
      note(c, cudaGraphLaunch(c->exec, c->stream), "graph launch");
      /* the commands the graph now holds: the two lists swap (the other
       * one is filled by the next step) */
      struct cmd *t = c->exec_cmds;
      const int tcap = c->cap_exec;
      c->exec_cmds = c->cmds;
      c->cap_exec = c->cap_cmds;
      c->n_exec_cmds = c->n_cmds;
      c->cmds = t;
      c->cap_cmds = tcap;
      c->n_captures++;
    }
  }
  if (g) cudaGraphDestroy(g);
}

static tl_status cuda_step_end(tl_backend *be) {
  cuda_ctx *c = cu(be);
  if (c->rec) replay(c);
  note(c, cudaStreamSynchronize(c->stream), "step");
  return c->err ? fail_cuda(c) : TL_OK;
}

/* F(T) for the weight type, one instantiation per type. */
#define TYPE_CASE(T, F) \
  case T:               \
    F(T);               \
    break;
#define TYPE_SWITCH(type, F)                         \
  switch (type) {                                    \
    CUDA_TYPES(TYPE_CASE, F)                         \
    default:                                         \
      note(c, cudaErrorInvalidValue, "weight type"); \
      break;                                         \
  }
#define MVQ_SWITCH(type, F)                          \
  switch (type) {                                    \
    MVQ_TYPES(TYPE_CASE, F)                          \
    default:                                         \
      note(c, cudaErrorInvalidValue, "weight type"); \
      break;                                         \
  }

/* Whether an operation writing rows x len floats also writes them in 8
 * bits for a matmul that will take them so (only with TL_CUDA_FUSE=1; else
 * the matmul quantizes them itself). A guess: the matmul may not come, or
 * take another path, and then the 8-bit copy is unused. */
static bool fuse_q8(cuda_ctx *c, int64_t rows, int64_t len) {
  return c->fuse && c->mmvq && len % 32 == 0 && rows * len <= c->xq_cap &&
         rows < (c->blas.lib ? c->gemm_min : 16);
}

static void do_embed(cuda_ctx *c, const tl_weight *w, float *x) {
  const int cols = (int)w->cols;
  dim3 grid((unsigned)((cols / 8 + 127) / 128 + 1), (unsigned)c->n);
#define EMB(T) \
  launch(c, k_embed<T>, grid, 128, (const uint8_t *)w->data, w->row_bytes, cols, c->d_tok, x)
  TYPE_SWITCH(w->type, EMB)
#undef EMB
  LAUNCHED(c, "embed", P_EMBED);
}

static void do_select_out(cuda_ctx *c, const float *x, float *y, int64_t len) {
  if (c->n_out < 1) return;
  dim3 grid((unsigned)grid_for(c, len, 256), (unsigned)c->n_out);
  launch(c, k_select, grid, 256, x, y, len, c->d_out);
  LAUNCHED(c, "select_out", P_SELECT);
}

static void do_norm(cuda_ctx *c, const tl_norm_op *op) {
  if (op->rows < 1) return;
  const int threads = op->len >= 1024 ? 1024 : op->len >= 256 ? 256 : 64;
  const bool q = op->w && fuse_q8(c, op->rows, op->len);
  launch(c, k_norm, (unsigned)op->rows, threads, op->x, op->a, op->b, op->w, op->nb, op->y, op->len,
         op->kind == TL_NORM_LAYER, op->eps, q ? c->xq : NULL, q ? c->xd : NULL);
  LAUNCHED(c, "norm", P_NORM);
  if (q) c->xq_src = op->y, c->xq_cols = op->len, c->xq_n = (int32_t)op->rows;
}

/* y = W x through cuBLAS (see gemm.cuh) */
static void matmul_blas(cuda_ctx *c, const tl_weight *w, const float *bias, const float *x,
                        int32_t n, float *y, int64_t ldy) {
#ifdef TL_HIP /* no BLAS: never taken (blas.lib is NULL) */
  note(c, cudaErrorInvalidValue, "gemm without BLAS");
#else
  const int rows = (int)w->rows, cols = (int)w->cols;
  const float one = 1.0f, zero = 0.0f;
  if (w->type == T_F32) {
    if (c->blas.gemm(c->blas.h, CUBLAS_OP_T, CUBLAS_OP_N, rows, n, cols, &one, w->data, CUDA_R_32F,
                     cols, x, CUDA_R_32F, cols, &zero, y, CUDA_R_32F, (int)ldy, CUBLAS_COMPUTE_32F,
                     CUBLAS_GEMM_DEFAULT) != CUBLAS_STATUS_SUCCESS)
      note(c, cudaErrorUnknown, "cublasGemmEx");
    if (bias)
      launch(c, k_gemm_finish, dim3((unsigned)((rows + 255) / 256), (unsigned)n), 256, y, ldy, rows,
             n, (const float *)NULL, bias);
    LAUNCHED(c, "gemm", P_GEMM);
    return;
  }
  const bool bf = w->type == T_BF16, quant = w->type != T_F16 && !bf;
  /* the low part: float32 precision for float weights (but F16 ones with
   * f16x) */
  const bool two = c->split && !quant && !(w->type == T_F16 && c->f16x);
  const cudaDataType et = bf ? CUDA_R_16BF : CUDA_R_16F;
  if (bf)
    launch(c, k_split_x<__nv_bfloat16>, (unsigned)n, 256, x, cols, (__nv_bfloat16 *)c->xh,
           two ? (__nv_bfloat16 *)c->xl : NULL, c->xs);
  else
    launch(c, k_split_x<__half>, (unsigned)n, 256, x, cols, (__half *)c->xh,
           two ? (__half *)c->xl : NULL, c->xs);
  int64_t step = quant ? c->wh_cap / cols : rows;
  if (step > rows) step = rows;
  for (int64_t r0 = 0; r0 < rows; r0 += step) {
    const int64_t nr = rows - r0 < step ? rows - r0 : step;
    const void *A = w->data;
    if (quant) {
      const int64_t th = nr * (cols / 8);
      const unsigned g = (unsigned)((th + 255) / 256);
      const uint8_t *W = (const uint8_t *)w->data;
#define DQH(T) launch(c, k_dequant_h<T>, g, 256, W, w->row_bytes, r0, nr, cols, c->wh)
      TYPE_SWITCH(w->type, DQH)
#undef DQH
      A = c->wh;
    }
    float *C = y + r0;
    if (c->blas.gemm(c->blas.h, CUBLAS_OP_T, CUBLAS_OP_N, (int)nr, n, cols, &one, A, et, cols,
                     c->xh, et, cols, &zero, C, CUDA_R_32F, (int)ldy, CUBLAS_COMPUTE_32F,
                     CUBLAS_GEMM_DEFAULT) != CUBLAS_STATUS_SUCCESS ||
        (two && c->blas.gemm(c->blas.h, CUBLAS_OP_T, CUBLAS_OP_N, (int)nr, n, cols, &one, A, et,
                             cols, c->xl, et, cols, &one, C, CUDA_R_32F, (int)ldy,
                             CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) != CUBLAS_STATUS_SUCCESS))
      note(c, cudaErrorUnknown, "cublasGemmEx");
  }
  launch(c, k_gemm_finish, dim3((unsigned)((rows + 255) / 256), (unsigned)n), 256, y, ldy, rows, n,
         c->xs, bias);
  LAUNCHED(c, "gemm", P_GEMM);
#endif
}

/* The 8-bit copy of x (n rows of cols) in xq / xd, unless it is there. */
static void quant_x(cuda_ctx *c, const float *x, int32_t n, int cols) {
  if (c->xq_src == x && c->xq_cols == cols && c->xq_n == n) return;
  const int64_t nblk = (int64_t)n * cols / 32;
  const int per = 256 / TL_WARP; /* a warp per block of 32 values */
  launch(c, k_quant_q8, (unsigned)((nblk + per - 1) / per), 256, x, nblk, c->xq, c->xd);
  LAUNCHED(c, "quantize activations", P_QUANT);
  c->xq_src = x, c->xq_cols = cols, c->xq_n = n;
}

/* The kernels a matmul of n tokens takes. */
enum { MP_MMQ, MP_BLAS, MP_MMVQ, MP_MMVF, MP_MATMUL };
static int mm_path(cuda_ctx *c, const tl_weight *w, const float *x, int32_t n) {
  const int64_t cols = w->cols;
  const bool fl = w->type == T_F32 || w->type == T_F16 || w->type == T_BF16;
  const bool q8 = mvq_known(w->type) && cols % 32 == 0 && n * cols <= c->xq_cap;
  if (c->mmq && q8 && n >= 16) return MP_MMQ;
  /* quantized weights through cuBLAS (dequantized to f16, the activations
   * rounded to f16) only with the int8 kernel off: without it a batch and
   * decode disagree by about 1e-2; Q2_K takes the tiled kernel, which
   * multiplies float32 activations, as its decode kernel does */
  if (c->blas.lib && n >= c->gemm_min && cols % 8 == 0 && n * cols <= c->xh_cap &&
      (fl || (c->wh && !c->mmq)))
    return MP_BLAS;
  /* a few tokens: the matvec kernels (more go to the tiled kernel) */
  const bool few = n < (c->blas.lib ? c->gemm_min : 16);
  if (few && c->mmvq && q8) return MP_MMVQ;
  if (few && c->mmvq && fl && cols % 8 == 0 && (uintptr_t)x % 16 == 0) return MP_MMVF;
  return MP_MATMUL;
}

static mv_out mv_one(const tl_weight *w, const float *bias, float *y) {
  const int r = (int)w->rows;
  mv_out o = {
      {(const uint8_t *)w->data, NULL, NULL}, {y, NULL, NULL}, {bias, NULL, NULL}, {r, r, r}};
  return o;
}

static bool overlaps(const float *y, int32_t n, int64_t ldy, int64_t rows, const float *x,
                     int64_t len) {
  return y < x + len && x < y + (size_t)(n - 1) * ldy + rows;
}

/* the matvec kernels (path MP_MMVQ or MP_MMVF) over the parts of o, of
 * weights like w */
static void matvec(cuda_ctx *c, int path, const tl_weight *w, const mv_out &o, const float *x,
                   int32_t n, int64_t ldy) {
  const int rows = o.end[2], cols = (int)w->cols;
  const unsigned gx = (unsigned)((rows + MV_WARPS - 1) / MV_WARPS), gy = (unsigned)((n + 3) / 4);
  const size_t ldw = w->row_bytes;
  if (path == MP_MMVQ) {
    quant_x(c, x, n, cols);
    if (n == 1) {
#define MV1(T) launch(c, k_mmvq<T, 1>, dim3(gx, 1), MV_THREADS, o, ldw, cols, c->xq, c->xd, n, ldy)
      MVQ_SWITCH(w->type, MV1)
#undef MV1
    } else {
#define MV4(T) launch(c, k_mmvq<T, 4>, dim3(gx, gy), MV_THREADS, o, ldw, cols, c->xq, c->xd, n, ldy)
      MVQ_SWITCH(w->type, MV4)
#undef MV4
    }
    /* a result written over the quantized x's source makes it stale */
    for (int p = 0; p < 3; p++)
      if (o.y[p] &&
          overlaps(o.y[p], n, ldy, o.end[p] - (p ? o.end[p - 1] : 0), x, (int64_t)n * cols))
        c->xq_src = NULL;
  } else {
    const bool rx = c->f16x && w->type == T_F16;
#define MF(T, NT, G) launch(c, k_mmvf<T, NT>, G, MV_THREADS, o, ldw, cols, x, n, ldy, rx)
    switch (w->type) {
      case T_F32:
        n == 1 ? MF(T_F32, 1, dim3(gx, 1)) : MF(T_F32, 4, dim3(gx, gy));
        break;
      case T_F16:
        n == 1 ? MF(T_F16, 1, dim3(gx, 1)) : MF(T_F16, 4, dim3(gx, gy));
        break;
      case T_BF16:
        n == 1 ? MF(T_BF16, 1, dim3(gx, 1)) : MF(T_BF16, 4, dim3(gx, gy));
        break;
    }
#undef MF
  }
  LAUNCHED(c, "matmul", P_MATMUL);
}

static void do_matmul(cuda_ctx *c, const tl_weight *w, const float *bias, const float *x, int32_t n,
                      float *y, int64_t ldy) {
  if (n < 1) return;
  const int rows = (int)w->rows, cols = (int)w->cols;
  const uint8_t *W = (const uint8_t *)w->data;
  const int path = mm_path(c, w, x, n);
#ifndef TL_HIP
  if (path == MP_MMQ) {
    quant_x(c, x, n, cols);
    const dim3 g((unsigned)((rows + MQ_BM - 1) / MQ_BM), (unsigned)((n + MQ_BN - 1) / MQ_BN));
#define MQ(T) \
  launch(c, k_mmq<T>, g, MQ_THREADS, W, w->row_bytes, rows, cols, c->xq, c->xd, n, bias, y, ldy)
    MVQ_SWITCH(w->type, MQ)
#undef MQ
    if (overlaps(y, n, ldy, rows, x, (int64_t)n * cols)) c->xq_src = NULL;
    LAUNCHED(c, "gemm", P_GEMM);
    return;
  }
#endif
  if (path == MP_BLAS) {
    matmul_blas(c, w, bias, x, n, y, ldy);
    return;
  }
  if (path == MP_MMVQ || path == MP_MMVF) {
    matvec(c, path, w, mv_one(w, bias, y), x, n, ldy);
    return;
  }
  const unsigned gx1 = (unsigned)((rows + MM_WARPS - 1) / MM_WARPS);
  if (n == 1) {
#define MM1(T)                                                                                    \
  launch(c, k_matmul<T, 1>, dim3(gx1, 1), MM_THREADS, W, w->row_bytes, rows, cols, x, n, bias, y, \
         ldy)
    TYPE_SWITCH(w->type, MM1)
#undef MM1
  } else if (n >= 16 && cols % GT_K == 0) {
    const dim3 g((unsigned)((rows + GT_M - 1) / GT_M), (unsigned)((n + GT_N - 1) / GT_N));
#define MMT(T) launch(c, k_matmul_tiled<T>, g, 256, W, w->row_bytes, rows, cols, x, n, bias, y, ldy)
    TYPE_SWITCH(w->type, MMT)
#undef MMT
  } else {
    const unsigned gy = (unsigned)((n + 7) / 8);
#define MM8(T)                                                                                     \
  launch(c, k_matmul<T, 8>, dim3(gx1, gy), MM_THREADS, W, w->row_bytes, rows, cols, x, n, bias, y, \
         ldy)
    TYPE_SWITCH(w->type, MM8)
#undef MM8
  }
  LAUNCHED(c, "matmul", P_MATMUL);
}

/* A recorded matmul with more parts (see cuda_matmul): one matvec launch
 * where the kernels allow, else one matmul per part. */
static void do_matmul_cmd(cuda_ctx *c, const struct cmd *k) {
  const tl_weight *w = &k->u.mm.w;
  const int np = k->u.mm.np;
  if (np <= 1) return do_matmul(c, w, k->u.mm.bias, k->u.mm.x, k->u.mm.n, k->u.mm.y, k->u.mm.ldy);
  const int path = mm_path(c, w, k->u.mm.x, k->u.mm.n);
  if (path == MP_MMVQ || path == MP_MMVF) {
    mv_out o = mv_one(w, k->u.mm.bias, k->u.mm.y);
    for (int p = 1; p < 3; p++) {
      const int e = o.end[p - 1] + (p < np ? (int)k->u.mm.more[p - 1].rows : 0);
      o.end[p] = e;
      if (p < np) {
        o.w[p] = (const uint8_t *)k->u.mm.more[p - 1].data;
        o.y[p] = k->u.mm.more[p - 1].y;
        o.bias[p] = k->u.mm.more[p - 1].bias;
      }
    }
    return matvec(c, path, w, o, k->u.mm.x, k->u.mm.n, k->u.mm.ldy);
  }
  do_matmul(c, w, k->u.mm.bias, k->u.mm.x, k->u.mm.n, k->u.mm.y, k->u.mm.ldy);
  for (int p = 1; p < np; p++) {
    tl_weight wp = *w;
    wp.data = k->u.mm.more[p - 1].data;
    wp.rows = k->u.mm.more[p - 1].rows;
    do_matmul(c, &wp, k->u.mm.more[p - 1].bias, k->u.mm.x, k->u.mm.n, k->u.mm.more[p - 1].y,
              k->u.mm.ldy);
  }
}

static void do_rope(cuda_ctx *c, const tl_rope_op *op) {
  const int64_t n = (int64_t)c->n * (op->n_head + op->n_head_kv) * (op->n_rot / 2);
  launch(c, k_rope, (unsigned)((n + 255) / 256), 256, op->q, op->k, op->n_head, op->n_head_kv,
         op->head_dim, op->n_rot, op->kind == TL_ROPE_NEOX, op->theta, op->freq_scale,
         op->freq_factors, c->d_pos, c->n);
  LAUNCHED(c, "rope", P_ROPE);
}

static void do_kv_store(cuda_ctx *c, int32_t layer, const float *k, const float *v) {
  const int nkv = c->cfg.n_head_kv, hd = c->cfg.head_dim;
  const dim3 g((unsigned)((nkv * hd + 127) / 128), (unsigned)c->n);
  if (c->kv_es == 2)
    launch(c, k_kv_store<__half>, g, 128, (__half *)c->k_cache, (__half *)c->v_cache, k, v,
           c->d_pos, c->d_seq, c->d_keep, nkv, hd, layer, c->cfg.n_seq, c->kv_ctx);
  else
    launch(c, k_kv_store<float>, g, 128, (float *)c->k_cache, (float *)c->v_cache, k, v, c->d_pos,
           c->d_seq, c->d_keep, nkv, hd, layer, c->cfg.n_seq, c->kv_ctx);
  LAUNCHED(c, "kv_store", P_KV);
}

/* How attention runs (attn.cuh): with few (token, head) pairs, a block per
 * split of each token's positions (the most splits of the step's tokens),
 * else 1: a block per (token, head) taking its splits in turn. */
static int att_splits(cuda_ctx *c, const tl_attn_op *op) {
  const int64_t heads = (int64_t)c->n * op->n_head;
  return heads < 2 * c->n_sm ? att_ns(c->max_len, att_tile(c)) : 1;
}

static void do_attention(cuda_ctx *c, const tl_attn_op *op, int ns) {
  const dim3 grid((unsigned)c->n, (unsigned)op->n_head, (unsigned)ns);
  const int tile = att_tile(c);
  /* one block taking the splits in turn keeps them in shared memory */
  const size_t smem =
      ns == 1 ? sizeof(float) * (size_t)att_ns(c->max_len, tile) * (op->head_dim + 2) : 0;
  if (c->kv_es == 2)
    launch_smem(c, smem, k_attn<__half>, grid, FA_THREADS, (const __half *)c->k_cache,
                (const __half *)c->v_cache, op->q, op->out, c->att_part, c->d_pos, c->d_seq,
                op->n_head, op->n_head_kv, op->head_dim, op->window, op->scale, op->softcap,
                op->layer, c->cfg.n_seq, c->kv_ctx, tile);
  else
    launch_smem(c, smem, k_attn<float>, grid, FA_THREADS, (const float *)c->k_cache,
                (const float *)c->v_cache, op->q, op->out, c->att_part, c->d_pos, c->d_seq,
                op->n_head, op->n_head_kv, op->head_dim, op->window, op->scale, op->softcap,
                op->layer, c->cfg.n_seq, c->kv_ctx, tile);
  if (ns > 1)
    launch(c, k_attn_merge, dim3((unsigned)c->n, (unsigned)op->n_head), 128, c->att_part, op->out,
           c->d_pos, op->n_head, op->head_dim, op->window, tile, ns);
  LAUNCHED(c, "attention", P_ATTN);
}

static void do_act(cuda_ctx *c, tl_act_kind kind, bool gated, float *a, const float *b, int64_t n) {
  /* the rows are the step's tokens: the next matmul's x when 8-bit */
  const int64_t len = n / c->n;
  const bool q = n % c->n == 0 && fuse_q8(c, c->n, len);
  launch(c, k_act, grid_for(c, n, 256), 256, (int)kind, gated, a, b, n, q ? c->xq : NULL,
         q ? c->xd : NULL);
  LAUNCHED(c, "act", P_ACT);
  if (q) c->xq_src = a, c->xq_cols = len, c->xq_n = c->n;
}

static void do_scale(cuda_ctx *c, float *x, float s, int64_t n) {
  launch(c, k_scale, grid_for(c, n, 256), 256, x, s, n);
  LAUNCHED(c, "scale", P_OTHER);
}

static void do_softcap(cuda_ctx *c, float *x, float cap, int64_t n) {
  launch(c, k_softcap, grid_for(c, n, 256), 256, x, cap, n);
  LAUNCHED(c, "softcap", P_OTHER);
}

/* The operations: recorded during a decode step with graphs, else launched. */
static void cuda_embed(tl_backend *be, const tl_weight *w, float *x) {
  cuda_ctx *c = cu(be);
  if (!c->rec) return do_embed(c, w, x);
  struct cmd *k = push(c, C_EMBED);
  if (k) k->u.embed.w = *w, k->u.embed.x = x;
}
static void cuda_select_out(tl_backend *be, const float *x, float *y, int64_t len) {
  cuda_ctx *c = cu(be);
  if (!c->rec) return do_select_out(c, x, y, len);
  struct cmd *k = push(c, C_SELECT);
  if (k) k->u.sel.x = x, k->u.sel.y = y, k->u.sel.len = len;
}
static void cuda_norm(tl_backend *be, const tl_norm_op *op) {
  cuda_ctx *c = cu(be);
  if (!c->rec) return do_norm(c, op);
  struct cmd *k = push(c, C_NORM);
  if (k) k->u.norm = *op;
}
static void cuda_matmul(tl_backend *be, const tl_weight *w, const float *bias, const float *x,
                        int32_t n, float *y, int64_t ldy) {
  cuda_ctx *c = cu(be);
  if (!c->rec) return do_matmul(c, w, bias, x, n, y, ldy);
  /* the matmul before with the same x (q, k, v; gate, up): one launch */
  struct cmd *p = c->n_cmds > 0 ? &c->cmds[c->n_cmds - 1] : NULL;
  if (c->merge && p && p->op == C_MATMUL && p->u.mm.np < 3 && p->u.mm.x == x && p->u.mm.n == n &&
      p->u.mm.ldy == ldy && p->u.mm.w.type == w->type && p->u.mm.w.cols == w->cols &&
      p->u.mm.w.row_bytes == w->row_bytes && !w->scales && !p->u.mm.w.scales &&
      p->u.mm.w.rows + w->rows < INT32_MAX) {
    const int64_t len = (int64_t)n * w->cols;
    bool ok = !overlaps(y, n, ldy, w->rows, x, len) &&
              !overlaps(p->u.mm.y, n, ldy, p->u.mm.w.rows, x, len);
    for (int i = 1; i < p->u.mm.np; i++)
      ok = ok && !overlaps(p->u.mm.more[i - 1].y, n, ldy, p->u.mm.more[i - 1].rows, x, len);
    if (ok) {
      if (p->u.mm.np < 1) p->u.mm.np = 1;
      const int i = p->u.mm.np++ - 1;
      p->u.mm.more[i].data = w->data;
      p->u.mm.more[i].rows = w->rows;
      p->u.mm.more[i].y = y;
      p->u.mm.more[i].bias = bias;
      return;
    }
  }
  struct cmd *k = push(c, C_MATMUL);
  if (k) {
    k->u.mm.w = *w;
    k->u.mm.bias = bias, k->u.mm.x = x, k->u.mm.y = y, k->u.mm.ldy = ldy, k->u.mm.n = n;
    k->u.mm.np = 1;
  }
}
static void cuda_rope(tl_backend *be, const tl_rope_op *op) {
  cuda_ctx *c = cu(be);
  if (!c->rec) return do_rope(c, op);
  struct cmd *k = push(c, C_ROPE);
  if (k) k->u.rope = *op;
}
static void cuda_kv_store(tl_backend *be, int32_t layer, const float *kk, const float *v) {
  cuda_ctx *c = cu(be);
  if (!c->rec) return do_kv_store(c, layer, kk, v);
  struct cmd *k = push(c, C_KV);
  if (k) k->u.kv.layer = layer, k->u.kv.k = kk, k->u.kv.v = v;
}
static void cuda_attention(tl_backend *be, const tl_attn_op *op) {
  cuda_ctx *c = cu(be);
  const int ns = att_splits(c, op);
  if (!c->rec) return do_attention(c, op, ns);
  struct cmd *k = push(c, C_ATTN);
  if (k) k->u.attn.op = *op, k->u.attn.ns = ns;
}
static void cuda_act(tl_backend *be, tl_act_kind kind, bool gated, float *a, const float *b,
                     int64_t n) {
  cuda_ctx *c = cu(be);
  if (!c->rec) return do_act(c, kind, gated, a, b, n);
  struct cmd *k = push(c, C_ACT);
  if (k)
    k->u.act.kind = (int)kind, k->u.act.gated = gated, k->u.act.a = a, k->u.act.b = b,
    k->u.act.n = n;
}
static void cuda_scale(tl_backend *be, float *x, float s, int64_t n) {
  cuda_ctx *c = cu(be);
  if (!c->rec) return do_scale(c, x, s, n);
  struct cmd *k = push(c, C_SCALE);
  if (k) k->u.sc.x = x, k->u.sc.s = s, k->u.sc.n = n;
}
static void cuda_softcap(tl_backend *be, float *x, float cap, int64_t n) {
  cuda_ctx *c = cu(be);
  if (!c->rec) return do_softcap(c, x, cap, n);
  struct cmd *k = push(c, C_SOFTCAP);
  if (k) k->u.sc.x = x, k->u.sc.s = cap, k->u.sc.n = n;
}

static void run_cmd(cuda_ctx *c, const struct cmd *k) {
  switch (k->op) {
    case C_EMBED:
      do_embed(c, &k->u.embed.w, k->u.embed.x);
      break;
    case C_SELECT:
      do_select_out(c, k->u.sel.x, k->u.sel.y, k->u.sel.len);
      break;
    case C_NORM:
      do_norm(c, &k->u.norm);
      break;
    case C_MATMUL:
      do_matmul_cmd(c, k);
      break;
    case C_ROPE:
      do_rope(c, &k->u.rope);
      break;
    case C_KV:
      do_kv_store(c, k->u.kv.layer, k->u.kv.k, k->u.kv.v);
      break;
    case C_ATTN:
      do_attention(c, &k->u.attn.op, k->u.attn.ns);
      break;
    case C_ACT:
      do_act(c, (tl_act_kind)k->u.act.kind, k->u.act.gated, k->u.act.a, k->u.act.b, k->u.act.n);
      break;
    case C_SCALE:
      do_scale(c, k->u.sc.x, k->u.sc.s, k->u.sc.n);
      break;
    case C_SOFTCAP:
      do_softcap(c, k->u.sc.x, k->u.sc.s, k->u.sc.n);
      break;
  }
}

static tl_status cuda_to_host(tl_backend *be, const float *src, float *dst, int64_t n) {
  cuda_ctx *c = cu(be);
  note(c, cudaMemcpyAsync(dst, src, sizeof(float) * (size_t)n, cudaMemcpyDeviceToHost, c->stream),
       "to_host");
  note(c, cudaStreamSynchronize(c->stream), "to_host");
  return c->err ? fail_cuda(c) : TL_OK;
}

static tl_status cuda_from_host(tl_backend *be, const float *src, float *dst, int64_t n) {
  cuda_ctx *c = cu(be);
  note(c, cudaMemcpyAsync(dst, src, sizeof(float) * (size_t)n, cudaMemcpyHostToDevice, c->stream),
       "from_host");
  note(c, cudaStreamSynchronize(c->stream), "from_host");
  return c->err ? fail_cuda(c) : TL_OK;
}

static void cuda_free(tl_backend *be) {
  if (!be) return;
  cuda_ctx *c = cu(be);
  if (c->prof) {
    double tot = 0;
    for (int i = 0; i < P_N; i++) tot += c->prof_ms[i];
    for (int i = 0; i < P_N; i++)
      if (c->prof_calls[i])
        g_host->log(TL_LOG_WARN,
                    TL_GPU_NAME " profile: %-14s %8ld calls %10.2f ms (%4.1f%%) %8.2f us/call",
                    prof_names[i], c->prof_calls[i], c->prof_ms[i], 100.0 * c->prof_ms[i] / tot,
                    1e3 * c->prof_ms[i] / c->prof_calls[i]);
  }
  if (c->n_captures + c->n_replays > 0)
    g_host->log(TL_LOG_INFO, TL_GPU_NAME ": %ld decode steps, %ld of them captured as a new graph",
                c->n_captures + c->n_replays, c->n_captures);
  for (int i = 0; i < c->n_allocs; i++) cudaFree(c->allocs[i].p);
  free(c->allocs);
  if (c->h_stage) cudaFreeHost(c->h_stage);
  free(c->cmds);
  free(c->exec_cmds);
  free(c->h_hash);
  blas_close(&c->blas);
  if (c->exec) cudaGraphExecDestroy(c->exec);
  if (c->stream) cudaStreamDestroy(c->stream);
  free(c);
}

static bool env_off(const char *name) {
  const char *v = getenv(name);
  return v && !strcmp(v, "0");
}

extern "C" __attribute__((visibility("default"))) tl_status tl_cuda_backend_create(
    const tl_cuda_host *host, const tl_backend_config *cfg, tl_backend **out) {
  *out = NULL;
  if (!host || host->abi != TL_CUDA_ABI) return TL_ERR_UNSUPPORTED;
  g_host = host;
  int n_dev = 0;
  cudaError_t e = cudaGetDeviceCount(&n_dev);
  if (e != cudaSuccess || n_dev < 1) {
    cudaGetLastError();
    return host->fail(TL_ERR_UNSUPPORTED, "no usable " TL_GPU_API " device (%s)",
                      e != cudaSuccess ? cudaGetErrorString(e) : "none found");
  }
  if (cfg->kv_type != TL_KV_F16 && cfg->kv_type != TL_KV_F32)
    return host->fail(TL_ERR_UNSUPPORTED,
                      "the " TL_GPU_NAME
                      " backend keeps an f16 or f32 KV cache, not q8_0: use --kv f16");
  if (cfg->head_dim > TL_WARP * FA_DMAX)
    return host->fail(TL_ERR_UNSUPPORTED,
                      "the " TL_GPU_NAME " backend supports head sizes up to %d, not %d",
                      TL_WARP * FA_DMAX, cfg->head_dim);
  cuda_ctx *c = (cuda_ctx *)calloc(1, sizeof *c);
  if (!c) return host->fail(TL_ERR_NOMEM, "out of memory");
  c->cfg = *cfg;
  c->cfg.cpu_kernels = NULL;
  const char *dev_env = getenv("TL_CUDA_DEVICE");
  c->device = dev_env ? atoi(dev_env) : 0;
  if (c->device < 0 || c->device >= n_dev) c->device = 0;
  cudaDeviceProp prop;
  if ((e = cudaSetDevice(c->device)) != cudaSuccess ||
      (e = cudaGetDeviceProperties(&prop, c->device)) != cudaSuccess ||
      (e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking)) != cudaSuccess) {
    const int dev = c->device;
    free(c);
    return host->fail(TL_ERR_UNSUPPORTED, TL_GPU_API " device %d: %s", dev, cudaGetErrorString(e));
  }
  snprintf(c->name, sizeof c->name, "%s", prop.name);
  c->n_sm = prop.multiProcessorCount;
  c->grid_cap = prop.multiProcessorCount * 8;
  c->prof = getenv("TL_CUDA_PROFILE") && !env_off("TL_CUDA_PROFILE");
  c->graphs = !env_off("TL_CUDA_GRAPHS") && !c->prof;
  c->mmvq = !env_off("TL_CUDA_MMVQ");
#ifdef TL_HIP /* NVIDIA's: the portable kernels instead */
  c->pdl = c->mmq = false;
#else
  c->pdl = prop.major >= 9 && !env_off("TL_CUDA_PDL");
  c->mmq = prop.major >= 8 && c->mmvq && !env_off("TL_CUDA_MMQ");
#endif
  c->merge = c->mmvq && !env_off("TL_CUDA_MERGE");
  /* measured slower on an H100 (Q4_K_M tg128 263 against 291 tok/s): off
   * unless TL_CUDA_FUSE=1 */
  const char *fu = getenv("TL_CUDA_FUSE");
  c->fuse = fu && !strcmp(fu, "1");
  c->split = !env_off("TL_CUDA_SPLIT");
  const char *gm = getenv("TL_CUDA_GEMM_MIN");
  c->gemm_min = gm && atoi(gm) > 1 ? atoi(gm) : 16;
  char why[128] = "off (TL_CUDA_CUBLAS=0)";
  if (!env_off("TL_CUDA_CUBLAS")) blas_open(&c->blas, c->stream, why, sizeof why);
  /* TL_CUDA_F16X=1: F16 weights multiply f16 activations, as llama.cpp's
   * do (one tensor-core pass for a batch instead of two; decode rounds them
   * alike). Off: rounding to f16 turns differences of an ulp between a
   * batch's and decode's sums into steps of 2^-11, measured 5.4e-4 apart on
   * the llama f16 fixture, over test_sequences' 1e-4. Only with cuBLAS: the
   * tiled kernel that takes batches without it multiplies float32. */
  const char *fx = getenv("TL_CUDA_F16X");
  c->f16x = c->blas.lib && fx && !strcmp(fx, "1");
  c->be.name = TL_GPU_NAME;
  c->be.detail = c->name;
  c->be.priv = c;
  c->be.supports_type = cuda_supports_type;
  c->be.free = cuda_free;
  c->be.prepare_weight = cuda_prepare_weight;
  c->be.prepare_vector = cuda_prepare_vector;
  c->be.buffer_alloc = cuda_buffer_alloc;
  c->be.buffer_free = cuda_buffer_free;
  c->be.kv_copy = cuda_kv_copy;
  c->be.kv_io = cuda_kv_io;
  c->be.step_begin = cuda_step_begin;
  c->be.step_end = cuda_step_end;
  c->be.embed = cuda_embed;
  c->be.select_out = cuda_select_out;
  c->be.norm = cuda_norm;
  c->be.matmul = cuda_matmul;
  c->be.rope = cuda_rope;
  c->be.kv_store = cuda_kv_store;
  c->be.attention = cuda_attention;
  c->be.act = cuda_act;
  c->be.scale = cuda_scale;
  c->be.softcap = cuda_softcap;
  c->be.to_host = cuda_to_host;
  c->be.from_host = cuda_from_host;
  c->be.memory = cuda_memory;
  c->kv_es = cfg->kv_type == TL_KV_F16 ? 2 : 4;
  c->kv_ctx = cfg->n_ctx;
  const size_t kv_bytes = (size_t)cfg->n_layer * cfg->n_seq * cfg->n_head_kv * (size_t)c->kv_ctx *
                          cfg->head_dim * c->kv_es;
  const int nb = cfg->n_batch;
  c->hash_cap = 16;
  while (c->hash_cap < 2 * nb) c->hash_cap *= 2;
  c->att_cap = (int64_t)2 * c->n_sm * ATT_MAXS; /* att_splits: n * heads < 2 * n_sm */
  size_t fr = 0, tot = 0;
  cudaMemGetInfo(&fr, &tot);
  if (!(c->k_cache = dmalloc(c, kv_bytes)) || !(c->v_cache = dmalloc(c, kv_bytes)) ||
      !(c->d_stage = (int32_t *)dmalloc(c, sizeof(int32_t) * 5 * (size_t)nb)) ||
      cudaMallocHost((void **)&c->h_stage, sizeof(int32_t) * 5 * (size_t)nb) != cudaSuccess ||
      !(c->xs = (float *)dmalloc(c, sizeof(float) * (size_t)nb)) ||
      !(c->att_part =
            (float *)dmalloc(c, sizeof(float) * (size_t)c->att_cap * (cfg->head_dim + 2))) ||
      !(c->h_hash = (int64_t *)malloc(sizeof(int64_t) * (size_t)c->hash_cap))) {
    cudaGetLastError();
    cuda_free(&c->be);
    return host->fail(TL_ERR_NOMEM,
                      "a context of %d tokens x %d sequences needs a KV cache of %.2f GiB on the "
                      "GPU; %s has %.2f GiB free: use a smaller context (-c)",
                      cfg->n_ctx, cfg->n_seq, 2.0 * (double)kv_bytes / 1073741824.0, c->name,
                      (double)fr / 1073741824.0);
  }
  c->d_tok = c->d_stage;
  c->d_pos = c->d_stage + nb;
  c->d_seq = c->d_stage + 2 * nb;
  c->d_keep = c->d_stage + 3 * nb;
  c->d_out = c->d_stage + 4 * nb;
#ifdef TL_HIP
  host->log(TL_LOG_INFO,
            "hip: %s (%s, %d CUs, wavefront %d, %.1f GiB), KV cache %.1f MiB, batches on the "
            "backend's kernels (%s)",
            prop.name, prop.gcnArchName, prop.multiProcessorCount, prop.warpSize,
            (double)prop.totalGlobalMem / 1073741824.0, 2.0 * (double)kv_bytes / 1048576.0, why);
#else
  host->log(
      TL_LOG_INFO, "cuda: %s (compute %d.%d, %d SMs, %.1f GiB), KV cache %.1f MiB, batches %s%s",
      prop.name, prop.major, prop.minor, prop.multiProcessorCount,
      (double)prop.totalGlobalMem / 1073741824.0, 2.0 * (double)kv_bytes / 1048576.0,
      c->blas.lib ? "through cuBLAS" : "on the backend's kernels: cuBLAS ", c->blas.lib ? "" : why);
#endif
  *out = &c->be;
  return TL_OK;
}
