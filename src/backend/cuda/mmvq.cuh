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
 * sum(q)). */
__global__ void k_quant_q8(const float *__restrict__ x, int64_t nblk, int8_t *__restrict__ xq,
                           float2 *__restrict__ xd) {
  const int64_t b = blockIdx.x * (int64_t)(blockDim.x / 32) + threadIdx.x / 32;
  if (b >= nblk) return;
  const int lane = threadIdx.x % 32;
  const float v = x[b * 32 + lane];
  const float amax = warp_max(fabsf(v));
  const float d = amax / 127.0f;
  const int q = amax > 0.0f ? __float2int_rn(v / d) : 0;
  xq[b * 32 + lane] = (int8_t)q;
  const int sum = __reduce_add_sync(0xffffffffu, q);
  if (lane == 0) xd[b] = make_float2(d, d * (float)sum);
}

/* Elements per item, by type (every type below: cols % 32 == 0). */
template <int T>
struct mvq;
template <>
struct mvq<T_Q4_0> {
  enum { n = 32 };
};
template <>
struct mvq<T_Q4_1> {
  enum { n = 32 };
};
template <>
struct mvq<T_Q5_0> {
  enum { n = 32 };
};
template <>
struct mvq<T_Q5_1> {
  enum { n = 32 };
};
template <>
struct mvq<T_Q8_0> {
  enum { n = 32 };
};
template <>
struct mvq<T_Q4_K> {
  enum { n = 64 };
};
template <>
struct mvq<T_Q5_K> {
  enum { n = 64 };
};
template <>
struct mvq<T_Q6_K> {
  enum { n = 32 };
};

/* The types with an item dot product. */
#define MVQ_TYPES(X, A) \
  X(T_Q4_0, A)          \
  X(T_Q4_1, A) X(T_Q5_0, A) X(T_Q5_1, A) X(T_Q8_0, A) X(T_Q4_K, A) X(T_Q5_K, A) X(T_Q6_K, A)

static bool mvq_known(uint32_t t) {
  switch (t) {
#define KNOWN(T, A) case T:
    MVQ_TYPES(KNOWN, _)
#undef KNOWN
    return true;
  }
  return false;
}

/* 32 activations of block ib as 8 words */
struct xblk {
  int v[8];
};
__device__ __forceinline__ xblk ld_x(const int8_t *xq, int ib) {
  const int4 *p = (const int4 *)(xq + 32 * (size_t)ib);
  const int4 a = p[0], b = p[1];
  xblk r = {{a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w}};
  return r;
}

/* W row . x for item `it` of the row: vdot<T>(row, it, xq, xd). */
template <int T>
__device__ __forceinline__ float vdot(const uint8_t *row, int it, const int8_t *xq,
                                      const float2 *xd);

template <>
__device__ __forceinline__ float vdot<T_Q4_0>(const uint8_t *row, int it, const int8_t *xq,
                                              const float2 *xd) {
  const uint8_t *b = row + (size_t)it * 18;
  const xblk x = ld_x(xq, it);
  int s = 0;
#pragma unroll
  for (int j = 0; j < 4; j++) {
    const int v = ld_a2(b + 2 + 4 * j);
    s = __dp4a(v & 0x0F0F0F0F, x.v[j], s);
    s = __dp4a((v >> 4) & 0x0F0F0F0F, x.v[j + 4], s);
  }
  const float2 dx = xd[it];
  return h2f(b) * (dx.x * (float)s - 8.0f * dx.y);
}

template <>
__device__ __forceinline__ float vdot<T_Q4_1>(const uint8_t *row, int it, const int8_t *xq,
                                              const float2 *xd) {
  const uint8_t *b = row + (size_t)it * 20;
  const xblk x = ld_x(xq, it);
  int s = 0;
#pragma unroll
  for (int j = 0; j < 4; j++) {
    const int v = ld_a4(b + 4 + 4 * j);
    s = __dp4a(v & 0x0F0F0F0F, x.v[j], s);
    s = __dp4a((v >> 4) & 0x0F0F0F0F, x.v[j + 4], s);
  }
  const float2 dx = xd[it];
  return h2f(b) * dx.x * (float)s + h2f(b + 2) * dx.y;
}

template <>
__device__ __forceinline__ float vdot<T_Q5_0>(const uint8_t *row, int it, const int8_t *xq,
                                              const float2 *xd) {
  const uint8_t *b = row + (size_t)it * 22;
  const uint32_t qh = (uint32_t)ld_a2(b + 2);
  const xblk x = ld_x(xq, it);
  int s = 0;
#pragma unroll
  for (int j = 0; j < 4; j++) {
    const int v = ld_a2(b + 6 + 4 * j);
    s = __dp4a((v & 0x0F0F0F0F) | bits_to_b4(qh >> (4 * j)), x.v[j], s);
    s = __dp4a(((v >> 4) & 0x0F0F0F0F) | bits_to_b4(qh >> (16 + 4 * j)), x.v[j + 4], s);
  }
  const float2 dx = xd[it];
  return h2f(b) * (dx.x * (float)s - 16.0f * dx.y);
}

template <>
__device__ __forceinline__ float vdot<T_Q5_1>(const uint8_t *row, int it, const int8_t *xq,
                                              const float2 *xd) {
  const uint8_t *b = row + (size_t)it * 24;
  const uint32_t qh = (uint32_t)ld_a4(b + 4);
  const xblk x = ld_x(xq, it);
  int s = 0;
#pragma unroll
  for (int j = 0; j < 4; j++) {
    const int v = ld_a4(b + 8 + 4 * j);
    s = __dp4a((v & 0x0F0F0F0F) | bits_to_b4(qh >> (4 * j)), x.v[j], s);
    s = __dp4a(((v >> 4) & 0x0F0F0F0F) | bits_to_b4(qh >> (16 + 4 * j)), x.v[j + 4], s);
  }
  const float2 dx = xd[it];
  return h2f(b) * dx.x * (float)s + h2f(b + 2) * dx.y;
}

template <>
__device__ __forceinline__ float vdot<T_Q8_0>(const uint8_t *row, int it, const int8_t *xq,
                                              const float2 *xd) {
  const uint8_t *b = row + (size_t)it * 34;
  const xblk x = ld_x(xq, it);
  int s = 0;
#pragma unroll
  for (int j = 0; j < 8; j++) s = __dp4a(ld_a2(b + 2 + 4 * j), x.v[j], s);
  return h2f(b) * xd[it].x * (float)s;
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

/* Q4_K and Q5_K: an item is the 64 values of sub-blocks 2g and 2g + 1, one
 * 32-byte run of quants (low nibbles: 2g, high: 2g + 1). */
template <>
__device__ __forceinline__ float vdot<T_Q4_K>(const uint8_t *row, int it, const int8_t *xq,
                                              const float2 *xd) {
  const uint8_t *b = row + (size_t)(it >> 2) * 144;
  const int g = it & 3;
  const int4 *qp = (const int4 *)(b + 16 + 32 * g);
  const int4 qa = qp[0], qb = qp[1];
  const int v[8] = {qa.x, qa.y, qa.z, qa.w, qb.x, qb.y, qb.z, qb.w};
  const xblk x0 = ld_x(xq, 2 * it), x1 = ld_x(xq, 2 * it + 1);
  int s0 = 0, s1 = 0;
#pragma unroll
  for (int j = 0; j < 8; j++) {
    s0 = __dp4a(v[j] & 0x0F0F0F0F, x0.v[j], s0);
    s1 = __dp4a((v[j] >> 4) & 0x0F0F0F0F, x1.v[j], s1);
  }
  int sc[2], m[2];
  k4_pair(g, b + 4, sc, m);
  const float2 d0 = xd[2 * it], d1 = xd[2 * it + 1];
  return h2f(b) * ((float)sc[0] * d0.x * (float)s0 + (float)sc[1] * d1.x * (float)s1) -
         h2f(b + 2) * ((float)m[0] * d0.y + (float)m[1] * d1.y);
}

template <>
__device__ __forceinline__ float vdot<T_Q5_K>(const uint8_t *row, int it, const int8_t *xq,
                                              const float2 *xd) {
  const uint8_t *b = row + (size_t)(it >> 2) * 176;
  const int g = it & 3;
  const int4 *qp = (const int4 *)(b + 48 + 32 * g), *hp = (const int4 *)(b + 16);
  const int4 qa = qp[0], qb = qp[1], ha = hp[0], hb = hp[1];
  const int v[8] = {qa.x, qa.y, qa.z, qa.w, qb.x, qb.y, qb.z, qb.w};
  const int h[8] = {ha.x, ha.y, ha.z, ha.w, hb.x, hb.y, hb.z, hb.w};
  const xblk x0 = ld_x(xq, 2 * it), x1 = ld_x(xq, 2 * it + 1);
  int s0 = 0, s1 = 0;
#pragma unroll
  for (int j = 0; j < 8; j++) {
    const int lo = (v[j] & 0x0F0F0F0F) | ((((uint32_t)h[j] >> (2 * g)) & 0x01010101u) << 4);
    const int hi =
        ((v[j] >> 4) & 0x0F0F0F0F) | ((((uint32_t)h[j] >> (2 * g + 1)) & 0x01010101u) << 4);
    s0 = __dp4a(lo, x0.v[j], s0);
    s1 = __dp4a(hi, x1.v[j], s1);
  }
  int sc[2], m[2];
  k4_pair(g, b + 4, sc, m);
  const float2 d0 = xd[2 * it], d1 = xd[2 * it + 1];
  return h2f(b) * ((float)sc[0] * d0.x * (float)s0 + (float)sc[1] * d1.x * (float)s1) -
         h2f(b + 2) * ((float)m[0] * d0.y + (float)m[1] * d1.y);
}

/* Q6_K: an item is 32 values (two 16-value scales). */
template <>
__device__ __forceinline__ float vdot<T_Q6_K>(const uint8_t *row, int it, const int8_t *xq,
                                              const float2 *xd) {
  const uint8_t *b = row + (size_t)(it >> 3) * 210;
  const int k = it & 7, h = k >> 2, kk = k & 3;
  const uint8_t *ql = b + 64 * h + 32 * (kk & 1), *qh = b + 128 + 32 * h;
  const int sh = kk < 2 ? 0 : 4;
  const xblk x = ld_x(xq, it);
  int s[2] = {0, 0};
#pragma unroll
  for (int j = 0; j < 8; j++) {
    const uint32_t lo = ((uint32_t)ld_a2(ql + 4 * j) >> sh) & 0x0F0F0F0Fu;
    const uint32_t hi = (((uint32_t)ld_a2(qh + 4 * j) >> (2 * kk)) & 0x03030303u) << 4;
    const int q = (int)__vsub4(lo | hi, 0x20202020u);
    s[j >> 2] = __dp4a(q, x.v[j], s[j >> 2]);
  }
  const int8_t *sc = (const int8_t *)(b + 192) + 2 * k;
  return h2f(b + 208) * xd[it].x * ((float)sc[0] * (float)s[0] + (float)sc[1] * (float)s[1]);
}

#define MV_WARPS 4

/* y[t][r] = W[r] . x[t] (+ bias[r]) for the tokens t0 .. t0 + NT of
 * blockIdx.y, one warp per row, the lanes on consecutive items. */
template <int T, int NT>
__global__ void __launch_bounds__(MV_WARPS * 32)
    k_mmvq(const uint8_t *__restrict__ W, size_t ldw, int rows, int cols,
           const int8_t *__restrict__ xq, const float2 *__restrict__ xd, int n,
           const float *__restrict__ bias, float *__restrict__ y, int64_t ldy) {
  const int lane = threadIdx.x % 32, row = blockIdx.x * MV_WARPS + threadIdx.x / 32;
  const int t0 = blockIdx.y * NT;
  if (row >= rows) return;
  const int nt = n - t0 < NT ? n - t0 : NT;
  const uint8_t *wr = W + (size_t)row * ldw;
  const int items = cols / mvq<T>::n;
  float acc[NT];
#pragma unroll
  for (int t = 0; t < NT; t++) acc[t] = 0.0f;
#pragma unroll 2
  for (int it = lane; it < items; it += 32) {
#pragma unroll
    for (int t = 0; t < NT; t++)
      if (t < nt)
        acc[t] +=
            vdot<T>(wr, it, xq + (size_t)(t0 + t) * cols, xd + (size_t)(t0 + t) * (cols / 32));
  }
#pragma unroll
  for (int t = 0; t < NT; t++) {
    const float s = warp_sum(acc[t]);
    if (lane == 0 && t < nt) y[(size_t)(t0 + t) * ldy + row] = s + (bias ? bias[row] : 0.0f);
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

template <int T, int NT>
__global__ void __launch_bounds__(MV_WARPS * 32)
    k_mmvf(const uint8_t *__restrict__ W, size_t ldw, int rows, int cols,
           const float *__restrict__ x, int n, const float *__restrict__ bias,
           float *__restrict__ y, int64_t ldy) {
  const int lane = threadIdx.x % 32, row = blockIdx.x * MV_WARPS + threadIdx.x / 32;
  const int t0 = blockIdx.y * NT;
  if (row >= rows) return;
  const int nt = n - t0 < NT ? n - t0 : NT;
  const uint8_t *wr = W + (size_t)row * ldw;
  float acc[NT];
#pragma unroll
  for (int t = 0; t < NT; t++) acc[t] = 0.0f;
  const int chunks = cols / 8;
#pragma unroll 4
  for (int c = lane; c < chunks; c += 32) {
    float v[8];
    fl8<T>(wr, c, v);
#pragma unroll
    for (int t = 0; t < NT; t++) {
      if (t < nt) {
        const float4 *xp = (const float4 *)(x + (size_t)(t0 + t) * cols + 8 * (size_t)c);
        const float4 a = xp[0], b = xp[1];
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
    if (lane == 0 && t < nt) y[(size_t)(t0 + t) * ldy + row] = s + (bias ? bias[row] : 0.0f);
  }
}
