/* Matrix times a few vectors (decode and small batches), bandwidth first.
 * Included by backend_cuda.cu after the block layouts and helpers.
 *
 * Quantized weights: the activations are first quantized to 8 bits per
 * block of 32 (k_quant_q8: int8 values, and per block the scale d and
 * d * sum(q)), as the CPU quantizes them for its integer kernels; a lane
 * then takes one "item" of a row (a block, or a part of a super-block) at
 * a time and multiplies it with __dp4a, four products per instruction, the
 * block scales applied once per item. Float weights: 8 values per 16-byte
 * load, float32 activations. */

/* Two 16-bit loads as one 32-bit word (blocks of 18, 22, 34 and 210 bytes
 * are only 2-byte aligned). */
__device__ __forceinline__ int ld_a2(const uint8_t *p) {
  const uint16_t *h = (const uint16_t *)p;
  return (int)((uint32_t)h[0] | (uint32_t)h[1] << 16);
}
__device__ __forceinline__ int ld_a4(const uint8_t *p) {
  return *(const int *)p;
}
/* bits 0..3 of x to bit 4 of bytes 0..3 */
__device__ __forceinline__ int bits_to_b4(uint32_t x) {
  return (int)(((x & 1u) << 4) | ((x & 2u) << 11) | ((x & 4u) << 18) | ((x & 8u) << 25));
}

/* The 8-bit activations: one warp per block of 32 values of x (n rows of
 * cols, cols % 32 == 0) into xq[t][cols] and xd[t][cols / 32] = (d, d *
 * sum(q)). A lane per value: TL_WARP == 32 (see quant_store). */
__global__ void k_quant_q8(const float *__restrict__ x, int64_t nblk, int8_t *__restrict__ xq,
                           float2 *__restrict__ xd) {
  pdl_entry();
  const int64_t b = blockIdx.x * (int64_t)(blockDim.x / TL_WARP) + threadIdx.x / TL_WARP;
  if (b >= nblk) return;
  const int lane = threadIdx.x % TL_WARP;
  const float v = x[b * 32 + lane];
  const float amax = warp_max(fabsf(v));
  const float d = amax / 127.0f;
  const int q = amax > 0.0f ? __float2int_rn(v / d) : 0;
  xq[b * 32 + lane] = (int8_t)q;
  const int sum = __reduce_add_sync(0xffffffffu, q);
  if (lane == 0) xd[b] = make_float2(d, d * (float)sum);
}

/* The types with an item dot product. */
#define MVQ_TYPES(X, A) \
  X(T_Q4_0, A)          \
  X(T_Q4_1, A)          \
  X(T_Q5_0, A) X(T_Q5_1, A) X(T_Q8_0, A) X(T_Q3_K, A) X(T_Q4_K, A) X(T_Q5_K, A) X(T_Q6_K, A)

static bool mvq_known(uint32_t t) {
  switch (t) {
#define KNOWN(T, A) case T:
    MVQ_TYPES(KNOWN, _)
#undef KNOWN
    return true;
  }
  return false;
}

/* The 6-bit scale and min of sub-blocks 2g and 2g + 1 (k4_scale_min). */
__device__ __forceinline__ void k4_pair(int g, const uint8_t *q, int *sc, int *m) {
#pragma unroll
  for (int i = 0; i < 2; i++) {
    const int j = 2 * g + i;
    if (j < 4) {
      sc[i] = q[j] & 63;
      m[i] = q[j + 4] & 63;
    } else {
      sc[i] = (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4);
      m[i] = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
  }
}

/* Block kb of a row as 32 integers in 8 words (element order), the scales
 * of its two halves and the coefficient of the block's activation sum:
 * row . x over the block = s0 * dx * sum(q[0..16) x) + s1 * dx * sum(q[16..32) x)
 *                         + mn * dx * sum(x). */
template <int T>
__device__ __forceinline__ void mq_unpack(const uint8_t *row, int kb, int *q, float *s0, float *mn);

template <>
__device__ __forceinline__ void mq_unpack<T_Q4_0>(const uint8_t *row, int kb, int *q, float *s,
                                                  float *mn) {
  const uint8_t *b = row + (size_t)kb * 18;
#pragma unroll
  for (int j = 0; j < 4; j++) {
    const int v = ld_a2(b + 2 + 4 * j);
    q[j] = v & 0x0F0F0F0F;
    q[j + 4] = (v >> 4) & 0x0F0F0F0F;
  }
  s[0] = s[1] = h2f(b);
  *mn = -8.0f * s[0];
}

template <>
__device__ __forceinline__ void mq_unpack<T_Q4_1>(const uint8_t *row, int kb, int *q, float *s,
                                                  float *mn) {
  const uint8_t *b = row + (size_t)kb * 20;
#pragma unroll
  for (int j = 0; j < 4; j++) {
    const int v = ld_a4(b + 4 + 4 * j);
    q[j] = v & 0x0F0F0F0F;
    q[j + 4] = (v >> 4) & 0x0F0F0F0F;
  }
  s[0] = s[1] = h2f(b);
  *mn = h2f(b + 2);
}

template <>
__device__ __forceinline__ void mq_unpack<T_Q5_0>(const uint8_t *row, int kb, int *q, float *s,
                                                  float *mn) {
  const uint8_t *b = row + (size_t)kb * 22;
  const uint32_t qh = (uint32_t)ld_a2(b + 2);
#pragma unroll
  for (int j = 0; j < 4; j++) {
    const int v = ld_a2(b + 6 + 4 * j);
    q[j] = (v & 0x0F0F0F0F) | bits_to_b4(qh >> (4 * j));
    q[j + 4] = ((v >> 4) & 0x0F0F0F0F) | bits_to_b4(qh >> (16 + 4 * j));
  }
  s[0] = s[1] = h2f(b);
  *mn = -16.0f * s[0];
}

template <>
__device__ __forceinline__ void mq_unpack<T_Q5_1>(const uint8_t *row, int kb, int *q, float *s,
                                                  float *mn) {
  const uint8_t *b = row + (size_t)kb * 24;
  const uint32_t qh = (uint32_t)ld_a4(b + 4);
#pragma unroll
  for (int j = 0; j < 4; j++) {
    const int v = ld_a4(b + 8 + 4 * j);
    q[j] = (v & 0x0F0F0F0F) | bits_to_b4(qh >> (4 * j));
    q[j + 4] = ((v >> 4) & 0x0F0F0F0F) | bits_to_b4(qh >> (16 + 4 * j));
  }
  s[0] = s[1] = h2f(b);
  *mn = h2f(b + 2);
}

template <>
__device__ __forceinline__ void mq_unpack<T_Q8_0>(const uint8_t *row, int kb, int *q, float *s,
                                                  float *mn) {
  const uint8_t *b = row + (size_t)kb * 34;
#pragma unroll
  for (int j = 0; j < 8; j++) q[j] = ld_a2(b + 2 + 4 * j);
  s[0] = s[1] = h2f(b);
  *mn = 0.0f;
}

/* Q4_K, Q5_K: block kb is sub-block j = kb % 8 of super-block kb / 8 */
template <>
__device__ __forceinline__ void mq_unpack<T_Q4_K>(const uint8_t *row, int kb, int *q, float *s,
                                                  float *mn) {
  const uint8_t *b = row + (size_t)(kb >> 3) * 144;
  const int j = kb & 7, sh = 4 * (j & 1);
  const int4 *qp = (const int4 *)(b + 16 + 32 * (j >> 1));
  const int4 qa = qp[0], qb = qp[1];
  const int v[8] = {qa.x, qa.y, qa.z, qa.w, qb.x, qb.y, qb.z, qb.w};
#pragma unroll
  for (int w = 0; w < 8; w++) q[w] = (v[w] >> sh) & 0x0F0F0F0F;
  int sc[2], m[2];
  k4_pair(j >> 1, b + 4, sc, m);
  s[0] = s[1] = h2f(b) * (float)sc[j & 1];
  *mn = -h2f(b + 2) * (float)m[j & 1];
}

template <>
__device__ __forceinline__ void mq_unpack<T_Q5_K>(const uint8_t *row, int kb, int *q, float *s,
                                                  float *mn) {
  const uint8_t *b = row + (size_t)(kb >> 3) * 176;
  const int j = kb & 7, sh = 4 * (j & 1);
  const int4 *qp = (const int4 *)(b + 48 + 32 * (j >> 1)), *hp = (const int4 *)(b + 16);
  const int4 qa = qp[0], qb = qp[1], ha = hp[0], hb = hp[1];
  const int v[8] = {qa.x, qa.y, qa.z, qa.w, qb.x, qb.y, qb.z, qb.w};
  const int h[8] = {ha.x, ha.y, ha.z, ha.w, hb.x, hb.y, hb.z, hb.w};
#pragma unroll
  for (int w = 0; w < 8; w++)
    q[w] = ((v[w] >> sh) & 0x0F0F0F0F) | (int)((((uint32_t)h[w] >> j) & 0x01010101u) << 4);
  int sc[2], m[2];
  k4_pair(j >> 1, b + 4, sc, m);
  s[0] = s[1] = h2f(b) * (float)sc[j & 1];
  *mn = -h2f(b + 2) * (float)m[j & 1];
}

/* Q6_K: block kb is the 32 values k = kb % 8 of super-block kb / 8, two
 * scales of 16 */
template <>
__device__ __forceinline__ void mq_unpack<T_Q6_K>(const uint8_t *row, int kb, int *q, float *s,
                                                  float *mn) {
  const uint8_t *b = row + (size_t)(kb >> 3) * 210;
  const int k = kb & 7, h = k >> 2, kk = k & 3;
  const uint8_t *ql = b + 64 * h + 32 * (kk & 1), *qh = b + 128 + 32 * h;
  const int sh = kk < 2 ? 0 : 4;
#pragma unroll
  for (int w = 0; w < 8; w++) {
    const uint32_t lo = ((uint32_t)ld_a2(ql + 4 * w) >> sh) & 0x0F0F0F0Fu;
    const uint32_t hi = (((uint32_t)ld_a2(qh + 4 * w) >> (2 * kk)) & 0x03030303u) << 4;
    q[w] = (int)__vsub4(lo | hi, 0x20202020u);
  }
  const int8_t *sc = (const int8_t *)(b + 192) + 2 * k;
  const float d = h2f(b + 208);
  s[0] = d * (float)sc[0];
  s[1] = d * (float)sc[1];
  *mn = 0.0f;
}

/* Q3_K: block kb is the 32 values k = kb % 8 of super-block kb / 8 (bits
 * 2j of quants 32n + l, high bit 4n + j of the mask, n = k / 4, j = k % 4),
 * two signed 6-bit scales of 16 */
template <>
__device__ __forceinline__ void mq_unpack<T_Q3_K>(const uint8_t *row, int kb, int *q, float *s,
                                                  float *mn) {
  const uint8_t *b = row + (size_t)(kb >> 3) * 110;
  const int k = kb & 7, n = k >> 2, j = k & 3;
  const uint8_t *qs = b + 32 + 32 * n, *hm = b;
#pragma unroll
  for (int w = 0; w < 8; w++) {
    const uint32_t lo = ((uint32_t)ld_a2(qs + 4 * w) >> (2 * j)) & 0x03030303u;
    const uint32_t hb = ((uint32_t)ld_a2(hm + 4 * w) >> (4 * n + j)) & 0x01010101u;
    q[w] = (int)__vsub4(lo, (hb ^ 0x01010101u) << 2);
  }
  const uint8_t *sc = b + 96;
  const float d = h2f(b + 108);
#pragma unroll
  for (int i = 0; i < 2; i++) {
    const int js = 2 * k + i;
    const int lo = js < 8 ? (sc[js] & 0x0F) : (sc[js - 8] >> 4);
    const int hi = (sc[8 + js % 4] >> (2 * (js / 4))) & 3;
    s[i] = d * (float)((lo | hi << 4) - 32);
  }
  *mn = 0.0f;
}

/* Types whose two halves may have different scales (two k16 products). */
template <int T>
struct mq_halves {
  enum { v = 0 };
};
template <>
struct mq_halves<T_Q3_K> {
  enum { v = 1 };
};
template <>
struct mq_halves<T_Q6_K> {
  enum { v = 1 };
};

/* The term of one block of 32 in every sum of a quantized weight's row
 * with the 8-bit activations, the same float operations in the decode
 * kernels (here) and the batch kernel (mmq.cuh), each rounded as written
 * (no contraction): c0 and c1 are the integer sums of the block's halves
 * (their sum where the halves share a scale), dx = (d, d * sum(q)) the
 * activations' scale and sum. */
template <int T>
__device__ __forceinline__ float mq_term(const float *s, float mn, float2 dx, int c0, int c1) {
  if (mq_halves<T>::v)
    return __fmul_rn(dx.x,
                     __fmaf_rn(s[0], __int2float_rn(c0), __fmul_rn(s[1], __int2float_rn(c1))));
  return __fmaf_rn(__fmul_rn(s[0], dx.x), __int2float_rn(c0 + c1), __fmul_rn(mn, dx.y));
}

/* The sum of 8 consecutive blocks' terms, as the batch kernel adds them:
 * ((t0 + t1) + (t2 + t3)) + ((t4 + t5) + (t6 + t7)), here over the 8 lanes
 * 8j .. 8j + 7 of a warp (every one gets it). The sums over these groups of
 * 8 are then added in double precision, where their order no longer
 * matters (to about 1e-16), so that a batch and decode give the same
 * float32 results. */
__device__ __forceinline__ float tree8(float t) {
  t = __fadd_rn(t, __shfl_xor_sync(0xffffffffu, t, 1));
  t = __fadd_rn(t, __shfl_xor_sync(0xffffffffu, t, 2));
  return __fadd_rn(t, __shfl_xor_sync(0xffffffffu, t, 4));
}

__device__ __forceinline__ double warp_sum_d(double v) {
#pragma unroll
  for (int o = TL_WARP / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

#define MV_WARPS 4
#define MV_THREADS (MV_WARPS * TL_WARP)

/* Where a matvec's rows come from and go: up to three matrices of one type
 * and width multiplied by the same x in one launch (a layer's q, k and v,
 * or gate and up); rows [end[p - 1], end[p]) are those of part p. One
 * matrix: end[0] = end[1] = end[2] = its rows. */
struct mv_out {
  const uint8_t *w[3];
  float *y[3];
  const float *bias[3];
  int end[3];
};
struct mv_row {
  const uint8_t *w;
  float *y;
  float b;
};
/* the part of a (global) row: its weights' row, output column and bias */
__device__ __forceinline__ mv_row mv_at(const mv_out &o, int row, size_t ldw) {
  const int p = row < o.end[0] ? 0 : row < o.end[1] ? 1 : 2;
  const int r = row - (p == 0 ? 0 : p == 1 ? o.end[0] : o.end[1]);
  const uint8_t *w = p == 0 ? o.w[0] : p == 1 ? o.w[1] : o.w[2];
  float *y = p == 0 ? o.y[0] : p == 1 ? o.y[1] : o.y[2];
  const float *b = p == 0 ? o.bias[0] : p == 1 ? o.bias[1] : o.bias[2];
  mv_row m = {w + (size_t)r * ldw, y + r, b ? b[r] : 0.0f};
  return m;
}

/* y[t][r] = W[r] . x[t] (+ bias[r]) for the tokens t0 .. t0 + NT of
 * blockIdx.y, one warp per row, lane l on the blocks l, l + TL_WARP, ... of
 * the row; each group of 8 blocks summed by tree8, the groups in double. */
template <int T, int NT>
__global__ void __launch_bounds__(MV_THREADS)
    k_mmvq(const mv_out o, size_t ldw, int cols, const int8_t *__restrict__ xq,
           const float2 *__restrict__ xd, int n, int64_t ldy) {
  pdl_entry();
  const int lane = threadIdx.x % TL_WARP, row = blockIdx.x * MV_WARPS + threadIdx.x / TL_WARP;
  const int t0 = blockIdx.y * NT;
  if (row >= o.end[2]) return;
  const int nt = n - t0 < NT ? n - t0 : NT;
  const mv_row m = mv_at(o, row, ldw);
  const int nkb = cols / 32;
  double acc[NT];
#pragma unroll
  for (int t = 0; t < NT; t++) acc[t] = 0.0;
  for (int k0 = 0; k0 < nkb; k0 += TL_WARP) {
    const int kb = k0 + lane;
    const bool ok = kb < nkb;
    int q[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    float s[2] = {0.0f, 0.0f}, mn = 0.0f;
    if (ok) mq_unpack<T>(m.w, kb, q, s, &mn);
#pragma unroll
    for (int t = 0; t < NT; t++) {
      float v = 0.0f;
      if (ok && t < nt) {
        const int4 *xp = (const int4 *)(xq + (size_t)(t0 + t) * cols + 32 * (size_t)kb);
        const int4 xa = xp[0], xb = xp[1];
        const int c0 =
            __dp4a(q[3], xa.w, __dp4a(q[2], xa.z, __dp4a(q[1], xa.y, __dp4a(q[0], xa.x, 0))));
        const int c1 =
            __dp4a(q[7], xb.w, __dp4a(q[6], xb.z, __dp4a(q[5], xb.y, __dp4a(q[4], xb.x, 0))));
        v = mq_term<T>(s, mn, xd[(size_t)(t0 + t) * nkb + kb], c0, c1);
      }
      v = tree8(v);
      if ((lane & 7) == 0) acc[t] += (double)v;
    }
  }
#pragma unroll
  for (int t = 0; t < NT; t++) {
    const double s = warp_sum_d(acc[t]);
    if (lane == 0 && t < nt) m.y[(size_t)(t0 + t) * ldy] = (float)(s + (double)m.b);
  }
}

/* Float weights (cols % 8 == 0): 8 values per 16-byte load. */
template <int T>
__device__ __forceinline__ void fl8(const uint8_t *row, int c, float *v);
template <>
__device__ __forceinline__ void fl8<T_F32>(const uint8_t *row, int c, float *v) {
  const float4 *p = (const float4 *)(row + 32 * (size_t)c);
  const float4 a = p[0], b = p[1];
  v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
}
template <>
__device__ __forceinline__ void fl8<T_F16>(const uint8_t *row, int c, float *v) {
  const int4 r = *(const int4 *)(row + 16 * (size_t)c);
  const __half2 *h = (const __half2 *)&r;
#pragma unroll
  for (int j = 0; j < 4; j++) {
    const float2 f = __half22float2(h[j]);
    v[2 * j] = f.x, v[2 * j + 1] = f.y;
  }
}
template <>
__device__ __forceinline__ void fl8<T_BF16>(const uint8_t *row, int c, float *v) {
  const int4 r = *(const int4 *)(row + 16 * (size_t)c);
  const uint32_t w[4] = {(uint32_t)r.x, (uint32_t)r.y, (uint32_t)r.z, (uint32_t)r.w};
#pragma unroll
  for (int j = 0; j < 4; j++) {
    v[2 * j] = __uint_as_float(w[j] << 16);
    v[2 * j + 1] = __uint_as_float(w[j] & 0xFFFF0000u);
  }
}

/* v rounded to 11 significant bits, to nearest even: the f16 value of v
 * times any power of two in f16's normal range, over it (the activations
 * of F16 weights where they are taken in f16, see gemm.cuh) */
__device__ __forceinline__ float round11(float v) {
  uint32_t u = __float_as_uint(v);
  u += 0xFFFu + ((u >> 13) & 1u);
  return __uint_as_float(u & 0xFFFFE000u);
}
__device__ __forceinline__ float4 round11(float4 v) {
  return make_float4(round11(v.x), round11(v.y), round11(v.z), round11(v.w));
}

template <int T, int NT>
__global__ void __launch_bounds__(MV_THREADS)
    k_mmvf(const mv_out o, size_t ldw, int cols, const float *__restrict__ x, int n, int64_t ldy,
           bool rx) {
  pdl_entry();
  const int lane = threadIdx.x % TL_WARP, row = blockIdx.x * MV_WARPS + threadIdx.x / TL_WARP;
  const int t0 = blockIdx.y * NT;
  if (row >= o.end[2]) return;
  const int nt = n - t0 < NT ? n - t0 : NT;
  const mv_row m = mv_at(o, row, ldw);
  const uint8_t *wr = m.w;
  float acc[NT];
#pragma unroll
  for (int t = 0; t < NT; t++) acc[t] = 0.0f;
  const int chunks = cols / 8;
#pragma unroll 4
  for (int c = lane; c < chunks; c += TL_WARP) {
    float v[8];
    fl8<T>(wr, c, v);
#pragma unroll
    for (int t = 0; t < NT; t++) {
      if (t < nt) {
        const float4 *xp = (const float4 *)(x + (size_t)(t0 + t) * cols + 8 * (size_t)c);
        float4 a = xp[0], b = xp[1];
        if (T == T_F16 && rx) a = round11(a), b = round11(b);
        float s = acc[t];
        s = fmaf(v[0], a.x, s), s = fmaf(v[1], a.y, s), s = fmaf(v[2], a.z, s),
        s = fmaf(v[3], a.w, s);
        s = fmaf(v[4], b.x, s), s = fmaf(v[5], b.y, s), s = fmaf(v[6], b.z, s),
        s = fmaf(v[7], b.w, s);
        acc[t] = s;
      }
    }
  }
#pragma unroll
  for (int t = 0; t < NT; t++) {
    const float s = warp_sum(acc[t]);
    if (lane == 0 && t < nt) m.y[(size_t)(t0 + t) * ldy] = s + m.b;
  }
}
