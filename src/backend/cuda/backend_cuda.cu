/* The CUDA backend: the operations of backend/backend.h on an NVIDIA GPU.
 * Built into its own shared object (libtorchless-cuda.so) that the library
 * opens with dlopen (cuda_host.h); it links the CUDA runtime statically, so
 * it needs only the driver at run time.
 *
 * Weights are uploaded once in their file type and multiplied in it: each
 * kernel dequantizes 8 values at a time in registers (dq8) and never writes
 * a dequantized copy. Activations are float32. The KV cache is f16 or f32,
 * [layer][sequence][kv head][position][head_dim]. One stream; operations
 * are queued without waiting, and a device error is kept and returned by
 * step_end or to_host. */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

template <int T> struct blk;
/* float types: a "block" is 8 values (dq8 reads one) */
template <> struct blk<T_F32> { enum { n = 8, bytes = 32 }; };
template <> struct blk<T_F16> { enum { n = 8, bytes = 16 }; };
template <> struct blk<T_BF16> { enum { n = 8, bytes = 16 }; };
template <> struct blk<T_Q4_0> { enum { n = 32, bytes = 18 }; };
template <> struct blk<T_Q4_1> { enum { n = 32, bytes = 20 }; };
template <> struct blk<T_Q5_0> { enum { n = 32, bytes = 22 }; };
template <> struct blk<T_Q5_1> { enum { n = 32, bytes = 24 }; };
template <> struct blk<T_Q8_0> { enum { n = 32, bytes = 34 }; };
template <> struct blk<T_Q2_K> { enum { n = 256, bytes = 84 }; };
template <> struct blk<T_Q3_K> { enum { n = 256, bytes = 110 }; };
template <> struct blk<T_Q4_K> { enum { n = 256, bytes = 144 }; };
template <> struct blk<T_Q5_K> { enum { n = 256, bytes = 176 }; };
template <> struct blk<T_Q6_K> { enum { n = 256, bytes = 210 }; };

/* Every type this backend multiplies: X(T, A) for each, for the switches
 * below (A passed through). */
#define CUDA_TYPES(X, A)                                                                      \
  X(T_F32, A) X(T_F16, A) X(T_BF16, A) X(T_Q8_0, A) X(T_Q4_0, A) X(T_Q4_1, A) X(T_Q5_0, A)    \
  X(T_Q5_1, A) X(T_Q2_K, A) X(T_Q3_K, A) X(T_Q4_K, A) X(T_Q5_K, A) X(T_Q6_K, A)

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
template <int T> __device__ __forceinline__ void dq8(const uint8_t *b, int k, float *v);

template <> __device__ __forceinline__ void dq8<T_F32>(const uint8_t *b, int k, float *v) {
  const float *f = (const float *)b;
#pragma unroll
  for (int j = 0; j < 8; j++) v[j] = f[j];
}
template <> __device__ __forceinline__ void dq8<T_F16>(const uint8_t *b, int k, float *v) {
  const __half *h = (const __half *)b;
#pragma unroll
  for (int j = 0; j < 8; j++) v[j] = __half2float(h[j]);
}
template <> __device__ __forceinline__ void dq8<T_BF16>(const uint8_t *b, int k, float *v) {
  const __nv_bfloat16 *h = (const __nv_bfloat16 *)b;
#pragma unroll
  for (int j = 0; j < 8; j++) v[j] = __bfloat162float(h[j]);
}
template <> __device__ __forceinline__ void dq8<T_Q8_0>(const uint8_t *b, int k, float *v) {
  const float d = h2f(b);
  const int8_t *q = (const int8_t *)(b + 2) + 8 * k;
#pragma unroll
  for (int j = 0; j < 8; j++) v[j] = (float)q[j] * d;
}
template <> __device__ __forceinline__ void dq8<T_Q4_0>(const uint8_t *b, int k, float *v) {
  const float d = h2f(b);
  const uint8_t *q = b + 2 + 8 * (k & 1);
  const int sh = k < 2 ? 0 : 4;
#pragma unroll
  for (int j = 0; j < 8; j++) v[j] = (float)(((q[j] >> sh) & 15) - 8) * d;
}
template <> __device__ __forceinline__ void dq8<T_Q4_1>(const uint8_t *b, int k, float *v) {
  const float d = h2f(b), m = h2f(b + 2);
  const uint8_t *q = b + 4 + 8 * (k & 1);
  const int sh = k < 2 ? 0 : 4;
#pragma unroll
  for (int j = 0; j < 8; j++) v[j] = (float)((q[j] >> sh) & 15) * d + m;
}
__device__ __forceinline__ uint32_t ld_u32_bytes(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
template <> __device__ __forceinline__ void dq8<T_Q5_0>(const uint8_t *b, int k, float *v) {
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
template <> __device__ __forceinline__ void dq8<T_Q5_1>(const uint8_t *b, int k, float *v) {
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
template <> __device__ __forceinline__ void dq8<T_Q2_K>(const uint8_t *b, int k, float *v) {
  const int e = 8 * k;
  const float d = h2f(b + 80), dmin = h2f(b + 82);
  const uint8_t sc = b[e / 16];
  const float dl = d * (float)(sc & 0x0F), ml = dmin * (float)(sc >> 4);
  const uint8_t *q = b + 16 + (e / 128) * 32 + (e % 32);
  const int sh = 2 * ((e % 128) / 32);
#pragma unroll
  for (int j = 0; j < 8; j++) v[j] = dl * (float)((q[j] >> sh) & 3) - ml;
}
template <> __device__ __forceinline__ void dq8<T_Q3_K>(const uint8_t *b, int k, float *v) {
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
template <> __device__ __forceinline__ void dq8<T_Q4_K>(const uint8_t *b, int k, float *v) {
  const int e = 8 * k, g = e / 64, l = e % 64;
  float sc, m;
  k4_scale_min(2 * g + (l >= 32), b + 4, &sc, &m);
  const float d1 = h2f(b) * sc, m1 = h2f(b + 2) * m;
  const uint8_t *q = b + 16 + 32 * g + (l % 32);
  const int sh = l < 32 ? 0 : 4;
#pragma unroll
  for (int j = 0; j < 8; j++) v[j] = d1 * (float)((q[j] >> sh) & 15) - m1;
}
template <> __device__ __forceinline__ void dq8<T_Q5_K>(const uint8_t *b, int k, float *v) {
  const int e = 8 * k, g = e / 64, l = e % 64;
  float sc, m;
  k4_scale_min(2 * g + (l >= 32), b + 4, &sc, &m);
  const float d1 = h2f(b) * sc, m1 = h2f(b + 2) * m;
  const uint8_t *q = b + 48 + 32 * g + (l % 32), *qh = b + 16 + (l % 32);
  const int sh = l < 32 ? 0 : 4;
  const uint8_t u = (uint8_t)(1u << (2 * g + (l >= 32)));
#pragma unroll
  for (int j = 0; j < 8; j++) v[j] = d1 * (float)(((q[j] >> sh) & 15) + ((qh[j] & u) ? 16 : 0)) - m1;
}
template <> __device__ __forceinline__ void dq8<T_Q6_K>(const uint8_t *b, int k, float *v) {
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
template <int T> __device__ __forceinline__ float fl_at(const uint8_t *row, int64_t e) {
  if (T == T_F32) return ((const float *)row)[e];
  if (T == T_F16) return __half2float(((const __half *)row)[e]);
  return __bfloat162float(((const __nv_bfloat16 *)row)[e]);
}

/* ---- kernels ---------------------------------------------------------------- */

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
/* The sum over a block of up to 1024 threads (every thread gets it). */
__device__ float block_sum(float v, float *sh) {
  const int lane = threadIdx.x % 32, w = threadIdx.x / 32, nw = (blockDim.x + 31) / 32;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) sh[w] = v;
  __syncthreads();
  v = lane < nw ? sh[lane] : 0.0f;
  return warp_sum(v);
}
__device__ float block_max(float v, float *sh) {
  const int lane = threadIdx.x % 32, w = threadIdx.x / 32, nw = (blockDim.x + 31) / 32;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) sh[w] = v;
  __syncthreads();
  v = lane < nw ? sh[lane] : -INFINITY;
  return warp_max(v);
}

#define MM_WARPS 4

/* y[t][r] = W[r] . x[t] (+ bias[r]) for the tokens t0 .. t0 + NT of
 * blockIdx.y, one warp per row: the lanes walk the row 8 values at a time,
 * dequantizing each 8 once for all NT tokens. */
template <int T, int NT>
__global__ void __launch_bounds__(MM_WARPS * 32)
    k_matmul(const uint8_t *__restrict__ W, size_t ldw, int rows, int cols,
             const float *__restrict__ x, int n, const float *__restrict__ bias,
             float *__restrict__ y, int64_t ldy) {
  const int lane = threadIdx.x % 32, row = blockIdx.x * MM_WARPS + threadIdx.x / 32;
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
  for (int c = lane; c < chunks; c += 32) {
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
    for (int e = chunks * 8 + lane; e < cols; e += 32) {
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
  const int i = blockIdx.y;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < len;
       e += (int64_t)gridDim.x * blockDim.x)
    y[(size_t)i * len + e] = x[(size_t)rows[i] * len + e];
}

/* One block per row: x += a (+ b); y = norm(x) * w (+ nb). */
__global__ void k_norm(float *__restrict__ x, const float *__restrict__ a,
                       const float *__restrict__ b, const float *__restrict__ w,
                       const float *__restrict__ nb, float *y, int64_t len, int layer_norm,
                       float eps) {
  __shared__ float sh[32];
  float *xr = x + (size_t)blockIdx.x * len;
  if (a) {
    const float *ar = a + (size_t)blockIdx.x * len, *br = b ? b + (size_t)blockIdx.x * len : NULL;
    for (int64_t i = threadIdx.x; i < len; i += blockDim.x)
      xr[i] += br ? ar[i] + br[i] : ar[i];
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
  for (int64_t i = threadIdx.x; i < len; i += blockDim.x)
    yr[i] = (xr[i] - mean) * scale * w[i] + (nb ? nb[i] : 0.0f);
}

/* One thread per (token, head, pair); positions from the step. */
__global__ void k_rope(float *q, float *k, int nq, int nk, int hd, int n_rot, int neox,
                       float theta, float freq_scale, const float *__restrict__ factors,
                       const int32_t *__restrict__ pos, int n) {
  const int half = n_rot / 2;
  const int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (idx >= (int64_t)n * (nq + nk) * half) return;
  const int i = (int)(idx % half), h = (int)(idx / half % (nq + nk)), t = (int)(idx / half / (nq + nk));
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

/* One thread per (kv head, value): the step's tokens in order, so that of
 * two at one position the later stays. */
template <typename E>
__global__ void k_kv_store(E *kc, E *vc, const float *__restrict__ k, const float *__restrict__ v,
                           const int32_t *__restrict__ pos, const int32_t *__restrict__ seq, int n,
                           int nkv, int hd, int layer, int n_seq, int64_t kv_ctx) {
  const int idx = blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= nkv * hd) return;
  const int h = idx / hd, d = idx % hd;
  for (int t = 0; t < n; t++) {
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
}

template <typename E> __device__ __forceinline__ float ld_kv(const E *p);
template <> __device__ __forceinline__ float ld_kv<__half>(const __half *p) {
  return __half2float(*p);
}
template <> __device__ __forceinline__ float ld_kv<float>(const float *p) {
  return *p;
}

#define ATT_THREADS 128

/* One block per (token, query head): the visible positions in tiles of
 * ATT_THREADS, one score per thread, an online softmax over the tiles, the
 * head's values accumulated by dimension (each thread up to 2 of hd <= 256). */
template <typename E>
__global__ void __launch_bounds__(ATT_THREADS)
    k_attention(const E *__restrict__ kc, const E *__restrict__ vc, const float *__restrict__ q,
                float *__restrict__ out, const int32_t *__restrict__ pos,
                const int32_t *__restrict__ seq, int nh, int nkv, int hd, int window, float scale,
                float cap, int layer, int n_seq, int64_t kv_ctx) {
  __shared__ float qs[256], ps[ATT_THREADS], red[32];
  const int t = blockIdx.x, h = blockIdx.y, kvh = h / (nh / nkv);
  const int p = pos[t];
  const int j0 = window > 0 && p - window + 1 > 0 ? p - window + 1 : 0;
  const float *qh = q + ((size_t)t * nh + h) * hd;
  for (int i = threadIdx.x; i < hd; i += ATT_THREADS) qs[i] = qh[i];
  const size_t base = (((size_t)layer * n_seq + seq[t]) * nkv + kvh) * (size_t)kv_ctx * hd;
  const E *K = kc + base, *V = vc + base;
  float m = -INFINITY, l = 0.0f, acc0 = 0.0f, acc1 = 0.0f;
  const int d0 = threadIdx.x, d1 = threadIdx.x + ATT_THREADS;
  __syncthreads();
  for (int jt = j0; jt <= p; jt += ATT_THREADS) {
    const int j = jt + threadIdx.x;
    float s = -INFINITY;
    if (j <= p) {
      const E *kr = K + (size_t)j * hd;
      float dot = 0.0f;
      for (int i = 0; i < hd; i++) dot = fmaf(qs[i], ld_kv<E>(kr + i), dot);
      s = dot * scale;
      if (cap > 0) s = cap * tanhf(s / cap);
    }
    const float tm = block_max(s, red);
    const float mn = fmaxf(m, tm);
    const float corr = __expf(m - mn); /* 0 on the first tile (m = -inf) */
    const float pj = j <= p ? __expf(s - mn) : 0.0f;
    ps[threadIdx.x] = pj;
    l = l * corr + block_sum(pj, red);
    acc0 *= corr;
    acc1 *= corr;
    m = mn;
    __syncthreads();
    const int nj = p - jt + 1 < ATT_THREADS ? p - jt + 1 : ATT_THREADS;
    for (int r = 0; r < nj; r++) {
      const E *vr = V + (size_t)(jt + r) * hd;
      const float pr = ps[r];
      if (d0 < hd) acc0 = fmaf(pr, ld_kv<E>(vr + d0), acc0);
      if (d1 < hd) acc1 = fmaf(pr, ld_kv<E>(vr + d1), acc1);
    }
    __syncthreads();
  }
  float *o = out + ((size_t)t * nh + h) * hd;
  const float inv = 1.0f / l;
  if (d0 < hd) o[d0] = acc0 * inv;
  if (d1 < hd) o[d1] = acc1 * inv;
}

__device__ __forceinline__ float act_f(int kind, float x) {
  if (kind == TL_ACT_SILU) return x / (1.0f + expf(-x));
  if (kind == TL_ACT_GELU_TANH)
    return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
  return 0.5f * x * (1.0f + erff(x * 0.7071067811865476f));
}

__global__ void k_act(int kind, int gated, float *a, const float *__restrict__ b, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x)
    a[i] = gated ? act_f(kind, a[i]) * b[i] : act_f(kind, b[i]);
}

__global__ void k_scale(float *x, float s, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x)
    x[i] *= s;
}

__global__ void k_softcap(float *x, float cap, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x)
    x[i] = cap * tanhf(x[i] / cap);
}

/* ---- the backend --------------------------------------------------------------- */

typedef struct cuda_ctx {
  tl_backend be;
  tl_backend_config cfg;
  int device;
  char name[256];
  cudaStream_t stream;
  cudaError_t err; /* the first error, kept for step_end / to_host */
  char err_where[64];
  void *k_cache, *v_cache;
  size_t kv_es;
  int64_t kv_ctx;
  int32_t *d_tok, *d_pos, *d_seq, *d_out; /* the step's arrays, n_batch each */
  int32_t n, n_out;
  /* uploaded weights and vectors (a tied output is shared by the context) */
  void **ups;
  int n_ups, cap_ups;
  int grid_cap; /* blocks for grid-stride loops */
  /* decode steps (one token) are captured as a graph and launched whole:
   * the kernels then run back to back without the gaps of separate
   * launches. Each step is captured anew and the executable graph updated
   * in place (cheap when only parameters changed), so every operation the
   * recipe calls is run; TL_CUDA_GRAPHS=0 turns this off. */
  bool graphs, capturing;
  cudaGraphExec_t exec;
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
#define LAUNCHED(c, what) note((c), cudaGetLastError(), (what))

static tl_status fail_cuda(cuda_ctx *c) {
  cudaError_t e = c->err;
  c->err = cudaSuccess;
  cudaGetLastError();
  return g_host->fail(TL_ERR_IO, "CUDA error in %s: %s", c->err_where, cudaGetErrorString(e));
}

static int grid_for(cuda_ctx *c, int64_t n, int threads) {
  int64_t g = (n + threads - 1) / threads;
  if (g > c->grid_cap) g = c->grid_cap;
  return g < 1 ? 1 : (int)g;
}

static bool cuda_supports_type(const tl_backend *be, uint32_t type) {
  return type_known(type);
}

static void *cuda_buffer_alloc(tl_backend *be, size_t bytes) {
  void *p = NULL;
  if (cudaMalloc(&p, bytes ? bytes : 1) != cudaSuccess) {
    cudaGetLastError();
    return NULL;
  }
  return p;
}

static void cuda_buffer_free(tl_backend *be, void *p) {
  if (p) cudaFree(p);
}

/* host bytes onto the device (kept in ups, freed with the backend) */
static tl_status upload(cuda_ctx *c, const void *host, size_t bytes, void **out) {
  if (c->n_ups == c->cap_ups) {
    int cap = c->cap_ups ? 2 * c->cap_ups : 256;
    void *n = realloc(c->ups, sizeof *c->ups * (size_t)cap);
    if (!n) return g_host->fail(TL_ERR_NOMEM, "out of memory");
    c->ups = (void **)n;
    c->cap_ups = cap;
  }
  void *d = NULL;
  cudaError_t e = cudaMalloc(&d, bytes ? bytes : 1);
  if (e != cudaSuccess) {
    cudaGetLastError();
    size_t fr = 0, tot = 0;
    cudaMemGetInfo(&fr, &tot);
    return g_host->fail(TL_ERR_NOMEM,
                        "out of GPU memory uploading %.1f MiB of weights (%.1f of %.1f GiB free "
                        "on %s)",
                        (double)bytes / 1048576.0, (double)fr / 1073741824.0,
                        (double)tot / 1073741824.0, c->name);
  }
  if ((e = cudaMemcpy(d, host, bytes, cudaMemcpyHostToDevice)) != cudaSuccess) {
    cudaFree(d);
    note(c, e, "upload");
    return fail_cuda(c);
  }
  c->ups[c->n_ups++] = d;
  *out = d;
  return TL_OK;
}

static tl_status cuda_prepare_weight(tl_backend *be, const tl_weight *host, tl_weight *out) {
  cuda_ctx *c = cu(be);
  if (host->scales || !type_known(host->type))
    return g_host->fail(TL_ERR_UNSUPPORTED, "the cuda backend cannot multiply weights of type %u%s",
                        host->type, host->scales ? " (int8 with scales)" : "");
  *out = *host;
  void *d = NULL;
  tl_status s = upload(c, host->data, host->row_bytes * (size_t)host->rows, &d);
  if (s) return s;
  out->data = d;
  return TL_OK;
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
      note(c, cudaMemcpyAsync((uint8_t *)c->k_cache + to, (uint8_t *)c->k_cache + fo, bytes,
                              cudaMemcpyDeviceToDevice, c->stream), "kv_copy");
      note(c, cudaMemcpyAsync((uint8_t *)c->v_cache + to, (uint8_t *)c->v_cache + fo, bytes,
                              cudaMemcpyDeviceToDevice, c->stream), "kv_copy");
    }
  note(c, cudaStreamSynchronize(c->stream), "kv_copy");
  return c->err ? fail_cuda(c) : TL_OK;
}

static tl_status cuda_step_begin(tl_backend *be, const tl_step *st) {
  cuda_ctx *c = cu(be);
  if (st->n < 1 || st->n > c->cfg.n_batch || st->n_out > st->n)
    return g_host->fail(TL_ERR_INVALID_ARG, "cuda: a step of %d tokens (batch %d)", st->n,
                        c->cfg.n_batch);
  c->n = st->n;
  c->n_out = st->n_out;
  const size_t b = sizeof(int32_t) * (size_t)st->n;
  note(c, cudaMemcpyAsync(c->d_tok, st->tokens, b, cudaMemcpyHostToDevice, c->stream), "step");
  note(c, cudaMemcpyAsync(c->d_pos, st->pos, b, cudaMemcpyHostToDevice, c->stream), "step");
  note(c, cudaMemcpyAsync(c->d_seq, st->seq, b, cudaMemcpyHostToDevice, c->stream), "step");
  if (st->n_out > 0)
    note(c, cudaMemcpyAsync(c->d_out, st->out_rows, sizeof(int32_t) * (size_t)st->n_out,
                            cudaMemcpyHostToDevice, c->stream), "step");
  /* pageable sources: the copies may read them after this returns */
  note(c, cudaStreamSynchronize(c->stream), "step");
  if (c->err) return fail_cuda(c);
  if (c->graphs && st->n == 1) {
    note(c, cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal), "graph capture");
    c->capturing = c->err == cudaSuccess;
  }
  return c->err ? fail_cuda(c) : TL_OK;
}

static tl_status cuda_step_end(tl_backend *be) {
  cuda_ctx *c = cu(be);
  if (c->capturing) {
    c->capturing = false;
    cudaGraph_t g = NULL;
    cudaError_t e = cudaStreamEndCapture(c->stream, &g);
    note(c, e, "graph capture");
    if (e == cudaSuccess && !c->err) {
      cudaGraphExecUpdateResultInfo info;
      if (!c->exec || cudaGraphExecUpdate(c->exec, g, &info) != cudaSuccess) {
        cudaGetLastError();
        if (c->exec) cudaGraphExecDestroy(c->exec);
        c->exec = NULL;
        note(c, cudaGraphInstantiate(&c->exec, g, 0), "graph instantiate");
      }
      if (!c->err) note(c, cudaGraphLaunch(c->exec, c->stream), "graph launch");
    }
    if (g) cudaGraphDestroy(g);
  }
  note(c, cudaStreamSynchronize(c->stream), "step");
  return c->err ? fail_cuda(c) : TL_OK;
}

/* F(T) for the weight type, one instantiation per type. */
#define TYPE_CASE(T, F) \
  case T:                \
    F(T);                \
    break;
#define TYPE_SWITCH(type, F)                                                \
  switch (type) {                                                           \
    CUDA_TYPES(TYPE_CASE, F)                                                \
    default: note(c, cudaErrorInvalidValue, "weight type"); break;          \
  }

static void cuda_embed(tl_backend *be, const tl_weight *w, float *x) {
  cuda_ctx *c = cu(be);
  const int cols = (int)w->cols;
  dim3 grid((unsigned)((cols / 8 + 127) / 128 + 1), (unsigned)c->n);
#define EMB(T) k_embed<T><<<grid, 128, 0, c->stream>>>((const uint8_t *)w->data, w->row_bytes, cols, c->d_tok, x)
  TYPE_SWITCH(w->type, EMB)
#undef EMB
  LAUNCHED(c, "embed");
}

static void cuda_select_out(tl_backend *be, const float *x, float *y, int64_t len) {
  cuda_ctx *c = cu(be);
  if (c->n_out < 1) return;
  dim3 grid((unsigned)grid_for(c, len, 256), (unsigned)c->n_out);
  k_select<<<grid, 256, 0, c->stream>>>(x, y, len, c->d_out);
  LAUNCHED(c, "select_out");
}

static void cuda_norm(tl_backend *be, const tl_norm_op *op) {
  cuda_ctx *c = cu(be);
  if (op->rows < 1) return;
  const int threads = op->len >= 1024 ? 1024 : op->len >= 256 ? 256 : 64;
  k_norm<<<(unsigned)op->rows, threads, 0, c->stream>>>(op->x, op->a, op->b, op->w, op->nb, op->y,
                                                       op->len, op->kind == TL_NORM_LAYER,
                                                       op->eps);
  LAUNCHED(c, "norm");
}

static void cuda_matmul(tl_backend *be, const tl_weight *w, const float *bias, const float *x,
                        int32_t n, float *y, int64_t ldy) {
  cuda_ctx *c = cu(be);
  if (n < 1) return;
  const int rows = (int)w->rows, cols = (int)w->cols;
  const unsigned gx = (unsigned)((rows + MM_WARPS - 1) / MM_WARPS);
  const uint8_t *W = (const uint8_t *)w->data;
  if (n == 1) {
#define MM1(T) k_matmul<T, 1><<<dim3(gx, 1), MM_WARPS * 32, 0, c->stream>>>(W, w->row_bytes, rows, cols, x, n, bias, y, ldy)
    TYPE_SWITCH(w->type, MM1)
#undef MM1
  } else if (n >= 16 && cols % GT_K == 0) {
    const dim3 g((unsigned)((rows + GT_M - 1) / GT_M), (unsigned)((n + GT_N - 1) / GT_N));
#define MMT(T) k_matmul_tiled<T><<<g, 256, 0, c->stream>>>(W, w->row_bytes, rows, cols, x, n, bias, y, ldy)
    TYPE_SWITCH(w->type, MMT)
#undef MMT
  } else {
    const unsigned gy = (unsigned)((n + 7) / 8);
#define MM8(T) k_matmul<T, 8><<<dim3(gx, gy), MM_WARPS * 32, 0, c->stream>>>(W, w->row_bytes, rows, cols, x, n, bias, y, ldy)
    TYPE_SWITCH(w->type, MM8)
#undef MM8
  }
  LAUNCHED(c, "matmul");
}

static void cuda_rope(tl_backend *be, const tl_rope_op *op) {
  cuda_ctx *c = cu(be);
  const int64_t n = (int64_t)c->n * (op->n_head + op->n_head_kv) * (op->n_rot / 2);
  k_rope<<<(unsigned)((n + 255) / 256), 256, 0, c->stream>>>(
      op->q, op->k, op->n_head, op->n_head_kv, op->head_dim, op->n_rot, op->kind == TL_ROPE_NEOX,
      op->theta, op->freq_scale, op->freq_factors, c->d_pos, c->n);
  LAUNCHED(c, "rope");
}

static void cuda_kv_store(tl_backend *be, int32_t layer, const float *k, const float *v) {
  cuda_ctx *c = cu(be);
  const int nkv = c->cfg.n_head_kv, hd = c->cfg.head_dim;
  const unsigned g = (unsigned)((nkv * hd + 127) / 128);
  if (c->kv_es == 2)
    k_kv_store<__half><<<g, 128, 0, c->stream>>>((__half *)c->k_cache, (__half *)c->v_cache, k, v,
                                                 c->d_pos, c->d_seq, c->n, nkv, hd, layer,
                                                 c->cfg.n_seq, c->kv_ctx);
  else
    k_kv_store<float><<<g, 128, 0, c->stream>>>((float *)c->k_cache, (float *)c->v_cache, k, v,
                                                c->d_pos, c->d_seq, c->n, nkv, hd, layer,
                                                c->cfg.n_seq, c->kv_ctx);
  LAUNCHED(c, "kv_store");
}

static void cuda_attention(tl_backend *be, const tl_attn_op *op) {
  cuda_ctx *c = cu(be);
  dim3 grid((unsigned)c->n, (unsigned)op->n_head);
  if (c->kv_es == 2)
    k_attention<__half><<<grid, ATT_THREADS, 0, c->stream>>>(
        (const __half *)c->k_cache, (const __half *)c->v_cache, op->q, op->out, c->d_pos, c->d_seq,
        op->n_head, op->n_head_kv, op->head_dim, op->window, op->scale, op->softcap, op->layer,
        c->cfg.n_seq, c->kv_ctx);
  else
    k_attention<float><<<grid, ATT_THREADS, 0, c->stream>>>(
        (const float *)c->k_cache, (const float *)c->v_cache, op->q, op->out, c->d_pos, c->d_seq,
        op->n_head, op->n_head_kv, op->head_dim, op->window, op->scale, op->softcap, op->layer,
        c->cfg.n_seq, c->kv_ctx);
  LAUNCHED(c, "attention");
}

static void cuda_act(tl_backend *be, tl_act_kind kind, bool gated, float *a, const float *b,
                     int64_t n) {
  cuda_ctx *c = cu(be);
  k_act<<<grid_for(c, n, 256), 256, 0, c->stream>>>((int)kind, gated, a, b, n);
  LAUNCHED(c, "act");
}

static void cuda_scale(tl_backend *be, float *x, float s, int64_t n) {
  cuda_ctx *c = cu(be);
  k_scale<<<grid_for(c, n, 256), 256, 0, c->stream>>>(x, s, n);
  LAUNCHED(c, "scale");
}

static void cuda_softcap(tl_backend *be, float *x, float cap, int64_t n) {
  cuda_ctx *c = cu(be);
  k_softcap<<<grid_for(c, n, 256), 256, 0, c->stream>>>(x, cap, n);
  LAUNCHED(c, "softcap");
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
  for (int i = 0; i < c->n_ups; i++) cudaFree(c->ups[i]);
  free(c->ups);
  cudaFree(c->k_cache);
  cudaFree(c->v_cache);
  cudaFree(c->d_tok);
  cudaFree(c->d_pos);
  cudaFree(c->d_seq);
  cudaFree(c->d_out);
  if (c->exec) cudaGraphExecDestroy(c->exec);
  if (c->stream) cudaStreamDestroy(c->stream);
  free(c);
}

extern "C" __attribute__((visibility("default"))) tl_status
tl_cuda_backend_create(const tl_cuda_host *host, const tl_backend_config *cfg, tl_backend **out) {
  *out = NULL;
  if (!host || host->abi != TL_CUDA_ABI) return TL_ERR_UNSUPPORTED;
  g_host = host;
  int n_dev = 0;
  cudaError_t e = cudaGetDeviceCount(&n_dev);
  if (e != cudaSuccess || n_dev < 1) {
    cudaGetLastError();
    return host->fail(TL_ERR_UNSUPPORTED, "no usable CUDA device (%s)",
                      e != cudaSuccess ? cudaGetErrorString(e) : "none found");
  }
  if (cfg->kv_type != TL_KV_F16 && cfg->kv_type != TL_KV_F32)
    return host->fail(TL_ERR_UNSUPPORTED,
                      "the cuda backend keeps an f16 or f32 KV cache, not q8_0: use --kv f16");
  if (cfg->head_dim > 256)
    return host->fail(TL_ERR_UNSUPPORTED, "the cuda backend supports head sizes up to 256, not %d",
                      cfg->head_dim);
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
    return host->fail(TL_ERR_UNSUPPORTED, "CUDA device %d: %s", dev, cudaGetErrorString(e));
  }
  snprintf(c->name, sizeof c->name, "%s", prop.name);
  c->grid_cap = prop.multiProcessorCount * 8;
  const char *graphs = getenv("TL_CUDA_GRAPHS");
  c->graphs = !(graphs && !strcmp(graphs, "0"));
  c->be.name = "cuda";
  c->be.detail = c->name;
  c->be.priv = c;
  c->be.supports_type = cuda_supports_type;
  c->be.free = cuda_free;
  c->be.prepare_weight = cuda_prepare_weight;
  c->be.prepare_vector = cuda_prepare_vector;
  c->be.buffer_alloc = cuda_buffer_alloc;
  c->be.buffer_free = cuda_buffer_free;
  c->be.kv_copy = cuda_kv_copy;
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
  c->kv_es = cfg->kv_type == TL_KV_F16 ? 2 : 4;
  c->kv_ctx = cfg->n_ctx;
  const size_t kv_bytes = (size_t)cfg->n_layer * cfg->n_seq * cfg->n_head_kv * (size_t)c->kv_ctx *
                          cfg->head_dim * c->kv_es;
  size_t fr = 0, tot = 0;
  cudaMemGetInfo(&fr, &tot);
  if (cudaMalloc(&c->k_cache, kv_bytes) != cudaSuccess ||
      cudaMalloc(&c->v_cache, kv_bytes) != cudaSuccess ||
      cudaMalloc((void **)&c->d_tok, sizeof(int32_t) * (size_t)cfg->n_batch) != cudaSuccess ||
      cudaMalloc((void **)&c->d_pos, sizeof(int32_t) * (size_t)cfg->n_batch) != cudaSuccess ||
      cudaMalloc((void **)&c->d_seq, sizeof(int32_t) * (size_t)cfg->n_batch) != cudaSuccess ||
      cudaMalloc((void **)&c->d_out, sizeof(int32_t) * (size_t)cfg->n_batch) != cudaSuccess) {
    cudaGetLastError();
    cuda_free(&c->be);
    return host->fail(TL_ERR_NOMEM,
                      "a context of %d tokens x %d sequences needs a KV cache of %.2f GiB on the "
                      "GPU; %s has %.2f GiB free: use a smaller context (-c)",
                      cfg->n_ctx, cfg->n_seq, 2.0 * (double)kv_bytes / 1073741824.0, c->name,
                      (double)fr / 1073741824.0);
  }
  host->log(TL_LOG_INFO, "cuda: %s (compute %d.%d, %d SMs, %.1f GiB), KV cache %.1f MiB",
            prop.name, prop.major, prop.minor, prop.multiProcessorCount,
            (double)prop.totalGlobalMem / 1073741824.0, 2.0 * (double)kv_bytes / 1048576.0);
  *out = &c->be;
  return TL_OK;
}
