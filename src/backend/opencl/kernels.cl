/* The OpenCL backend's kernels (OpenCL C 1.2), embedded in the library at
 * build time and built at run time (backend_opencl.c). The host defines:
 *   WG     work-items per work-group of the row kernels (matmul, norm, attention)
 *   TT     tokens per work-group of the matrix product
 *   HDMAX  the largest head size attention takes
 * Device memory is passed as a buffer and a byte offset (the backend's
 * "pointers" are places in its buffers). Half-precision values are read and
 * written with vload_half / vstore_half (core OpenCL, no cl_khr_fp16);
 * RoPE's angles and the norms' sums are in double where the device has
 * cl_khr_fp64, as the CPU backend computes them. */
/* no fused multiply-adds the source does not write: the CPU backend's C
 * (ISO C17) does not contract either, so that the sums match its scalar
 * kernels' */
#pragma OPENCL FP_CONTRACT OFF
#ifdef cl_khr_fp64
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
typedef double acc_t;
#else
typedef float acc_t;
#endif

#define GPTR(T, b, o) ((__global T *)((__global uchar *)(b) + (o)))
#define CPTR(T, b, o) ((__global const T *)((__global const uchar *)(b) + (o)))

/* ggml's type ids (quant/quant.h) */
#define T_F32 0
#define T_F16 1
#define T_Q4_0 2
#define T_Q4_1 3
#define T_Q5_0 6
#define T_Q5_1 7
#define T_Q8_0 8
#define T_Q2_K 10
#define T_Q3_K 11
#define T_Q4_K 12
#define T_Q5_K 13
#define T_Q6_K 14
#define T_I8 24
#define T_BF16 30

static inline float ldh(__global const uchar *p) {
  return vload_half(0, (__global const half *)p);
}

/* ---- dequantization: 32 consecutive values (chunk j of a block) ---------- */

static inline void deq_q8_0(__global const uchar *b, int j, float *v) {
  const float d = ldh(b);
  __global const char *q = (__global const char *)(b + 2);
  for (int i = 0; i < 32; i++) v[i] = d * (float)q[i];
}

static inline void deq_q4_0(__global const uchar *b, int j, float *v) {
  const float d = ldh(b);
  __global const uchar *q = b + 2;
  for (int i = 0; i < 16; i++) {
    v[i] = (float)((int)(q[i] & 15) - 8) * d;
    v[i + 16] = (float)((int)(q[i] >> 4) - 8) * d;
  }
}

static inline void deq_q4_1(__global const uchar *b, int j, float *v) {
  const float d = ldh(b), m = ldh(b + 2);
  __global const uchar *q = b + 4;
  for (int i = 0; i < 16; i++) {
    v[i] = (float)(q[i] & 15) * d + m;
    v[i + 16] = (float)(q[i] >> 4) * d + m;
  }
}

static inline uint q5_high(__global const uchar *h) {
  return (uint)h[0] | (uint)h[1] << 8 | (uint)h[2] << 16 | (uint)h[3] << 24;
}

static inline void deq_q5_0(__global const uchar *b, int j, float *v) {
  const float d = ldh(b);
  const uint qh = q5_high(b + 2);
  __global const uchar *q = b + 6;
  for (int i = 0; i < 16; i++) {
    const int h0 = (int)((qh >> i) & 1) << 4, h1 = (int)((qh >> (i + 16)) & 1) << 4;
    v[i] = (float)(((q[i] & 15) | h0) - 16) * d;
    v[i + 16] = (float)(((q[i] >> 4) | h1) - 16) * d;
  }
}

static inline void deq_q5_1(__global const uchar *b, int j, float *v) {
  const float d = ldh(b), m = ldh(b + 2);
  const uint qh = q5_high(b + 4);
  __global const uchar *q = b + 8;
  for (int i = 0; i < 16; i++) {
    const int h0 = (int)((qh >> i) & 1) << 4, h1 = (int)((qh >> (i + 16)) & 1) << 4;
    v[i] = (float)((q[i] & 15) | h0) * d + m;
    v[i + 16] = (float)((q[i] >> 4) | h1) * d + m;
  }
}

/* Q2_K (84 bytes): scales[16] qs[64] d dmin; chunk j: elements 32j.. */
static inline void deq_q2_k(__global const uchar *b, int j, float *v) {
  const float d = ldh(b + 80), mn = ldh(b + 82);
  __global const uchar *q = b + 16 + (j / 4) * 32;
  const int shift = 2 * (j % 4);
  for (int h = 0; h < 2; h++) {
    const uchar sc = b[2 * j + h];
    const float dl = d * (float)(sc & 15), ml = mn * (float)(sc >> 4);
    for (int l = 0; l < 16; l++) v[16 * h + l] = dl * (float)((q[16 * h + l] >> shift) & 3) - ml;
  }
}

/* Q3_K (110 bytes): hmask[32] qs[64] scales[12] d */
static inline int q3_scale(__global const uchar *p, int s) {
  const int lo = s < 8 ? (p[s] & 15) : (p[s - 8] >> 4);
  const int hi = (p[8 + s % 4] >> (2 * (s / 4))) & 3;
  return (lo | hi << 4) - 32;
}

static inline void deq_q3_k(__global const uchar *b, int j, float *v) {
  const float d = ldh(b + 108);
  __global const uchar *hm = b, *q = b + 32 + (j / 4) * 32;
  const int shift = 2 * (j % 4);
  const uchar mask = (uchar)(1u << j);
  for (int h = 0; h < 2; h++) {
    const float dl = d * (float)q3_scale(b + 96, 2 * j + h);
    for (int l = 16 * h; l < 16 * h + 16; l++) {
      const int lo = (q[l] >> shift) & 3;
      v[l] = dl * (float)(lo - ((hm[l] & mask) ? 0 : 4));
    }
  }
}

/* the 6-bit scale and min of sub-block j of Q4_K / Q5_K */
static inline void k4_scale_min(int j, __global const uchar *p, float *sc, float *m) {
  if (j < 4) {
    *sc = (float)(p[j] & 63);
    *m = (float)(p[j + 4] & 63);
  } else {
    *sc = (float)((p[j + 4] & 15) | ((p[j - 4] >> 6) << 4));
    *m = (float)((p[j + 4] >> 4) | ((p[j] >> 6) << 4));
  }
}

/* Q4_K (144 bytes): d dmin scales[12] qs[128] */
static inline void deq_q4_k(__global const uchar *b, int j, float *v) {
  const float d = ldh(b), mn = ldh(b + 2);
  float sc, m;
  k4_scale_min(j, b + 4, &sc, &m);
  const float dl = d * sc, ml = mn * m;
  __global const uchar *q = b + 16 + 32 * (j / 2);
  const int shift = 4 * (j % 2);
  for (int l = 0; l < 32; l++) v[l] = dl * (float)((q[l] >> shift) & 15) - ml;
}

/* Q5_K (176 bytes): d dmin scales[12] qh[32] qs[128] */
static inline void deq_q5_k(__global const uchar *b, int j, float *v) {
  const float d = ldh(b), mn = ldh(b + 2);
  float sc, m;
  k4_scale_min(j, b + 4, &sc, &m);
  const float dl = d * sc, ml = mn * m;
  __global const uchar *qh = b + 16, *q = b + 48 + 32 * (j / 2);
  const int shift = 4 * (j % 2);
  const uchar u = (uchar)(1u << j);
  for (int l = 0; l < 32; l++)
    v[l] = dl * (float)(((q[l] >> shift) & 15) + ((qh[l] & u) ? 16 : 0)) - ml;
}

/* Q6_K (210 bytes): ql[128] qh[64] scales[16] d */
static inline void deq_q6_k(__global const uchar *b, int j, float *v) {
  const float d = ldh(b + 208);
  const int h = j / 4, k = j % 4;
  __global const uchar *ql = b + 64 * h + 32 * (k % 2), *qh = b + 128 + 32 * h;
  __global const char *sc = (__global const char *)(b + 192);
  const int ns = k < 2 ? 0 : 4;
  for (int l = 0; l < 32; l++) {
    const int lo = (ql[l] >> ns) & 15, hi = (qh[l] >> (2 * k)) & 3;
    v[l] = d * (float)sc[(32 * j + l) / 16] * (float)((lo | hi << 4) - 32);
  }
}

/* float types: one value */
static inline float ld_f32(__global const uchar *r, int c) {
  return ((__global const float *)r)[c];
}
static inline float ld_f16(__global const uchar *r, int c) {
  return vload_half(c, (__global const half *)r);
}
static inline float ld_bf16(__global const uchar *r, int c) {
  return as_float((uint)((__global const ushort *)r)[c] << 16);
}

/* 32 values of chunk ch (32 * ch..) of a row of the type (embedding rows). */
static void deq_chunk(int type, __global const uchar *row, int ch, float *v) {
  switch (type) {
    case T_Q8_0: deq_q8_0(row + 34 * ch, 0, v); break;
    case T_Q4_0: deq_q4_0(row + 18 * ch, 0, v); break;
    case T_Q4_1: deq_q4_1(row + 20 * ch, 0, v); break;
    case T_Q5_0: deq_q5_0(row + 22 * ch, 0, v); break;
    case T_Q5_1: deq_q5_1(row + 24 * ch, 0, v); break;
    case T_Q2_K: deq_q2_k(row + 84 * (ch / 8), ch % 8, v); break;
    case T_Q3_K: deq_q3_k(row + 110 * (ch / 8), ch % 8, v); break;
    case T_Q4_K: deq_q4_k(row + 144 * (ch / 8), ch % 8, v); break;
    case T_Q5_K: deq_q5_k(row + 176 * (ch / 8), ch % 8, v); break;
    case T_Q6_K: deq_q6_k(row + 210 * (ch / 8), ch % 8, v); break;
    default:
      for (int i = 0; i < 32; i++) v[i] = 0.0f;
  }
}

/* ---- embedding, selection --------------------------------------------------- */

/* x[t] = row tok[t] of w: one work-item per (token, value) of a float or
 * int8 table (scales: one per 64 values, value = q / scale), per (token,
 * chunk of 32) of a quantized one (chunks = cols / 32). */
__kernel void embed(__global const uchar *w, ulong wo, ulong row_bytes, int type, int cols,
                    __global const float *sc, ulong so, __global const int *tok,
                    __global float *x, ulong xo, int n) {
  const size_t id = get_global_id(0);
  const int per = type == T_F32 || type == T_F16 || type == T_BF16 || type == T_I8 ? cols : cols / 32;
  if (id >= (size_t)n * per) return;
  const int t = (int)(id / per), c = (int)(id % per);
  __global const uchar *row = (__global const uchar *)w + wo + (ulong)tok[t] * row_bytes;
  __global float *xr = GPTR(float, x, xo) + (size_t)t * cols;
  if (type == T_F32) {
    xr[c] = ld_f32(row, c);
  } else if (type == T_F16) {
    xr[c] = ld_f16(row, c);
  } else if (type == T_BF16) {
    xr[c] = ld_bf16(row, c);
  } else if (type == T_I8) {
    __global const float *s = CPTR(float, sc, so) + (size_t)tok[t] * (cols / 64);
    xr[c] = (float)((__global const char *)row)[c] / s[c / 64];
  } else {
    float v[32];
    deq_chunk(type, row, c, v);
    for (int i = 0; i < 32; i++) xr[32 * c + i] = v[i];
  }
}

/* y[i] = x[rows[i]] for i < n_out, one work-item per column, rows in order
 * (rows ascend, so y may be x: row i is read before it is overwritten). */
__kernel void select_out(__global const float *x, ulong xo, __global float *y, ulong yo,
                         __global const int *rows, int n_out, long len) {
  const long c = get_global_id(0);
  if (c >= len) return;
  __global const float *xs = CPTR(float, x, xo);
  __global float *ys = GPTR(float, y, yo);
  for (int i = 0; i < n_out; i++) ys[i * len + c] = xs[rows[i] * len + c];
}

/* ---- matrix product ------------------------------------------------------------ */

/* y[t][r] = sum_c W[r][c] x[t][c] (+ bias[r]): a work-group of WG per row r
 * and TT tokens; each work-item sums its share of the row (values, or
 * chunks of 32 of a block), each in order, then a tree over the work-group.
 * A token's sum does not depend on the other tokens of its group: a batch
 * computes what one token alone does. Float weights multiply float
 * activations; quantized ones 8-bit activations, as the CPU backend's do. */
#define REDUCE_STORE()                                                               \
  __local float red[TT][WG];                                                          \
  for (int tt = 0; tt < TT; tt++) red[tt][lid] = acc[tt];                             \
  barrier(CLK_LOCAL_MEM_FENCE);                                                       \
  for (int s = WG / 2; s > 0; s >>= 1) {                                              \
    if (lid < s)                                                                      \
      for (int tt = 0; tt < TT; tt++) red[tt][lid] += red[tt][lid + s];               \
    barrier(CLK_LOCAL_MEM_FENCE);                                                     \
  }                                                                                   \
  if (lid < TT && t0 + lid < n) {                                                     \
    float s = red[lid][0];                                                            \
    if (has_bias) s += CPTR(float, bias, bo)[r];                                      \
    GPTR(float, y, yo)[(size_t)(t0 + lid) * ldy + r] = s;                             \
  }


/* MM_ROW=1 (CPU devices): one work-item per row and TT tokens, the whole
 * row in order, no work-group (PoCL runs work-groups with barriers as loops
 * over the work-items, which costs more than the sums here). */
#if MM_ROW
#define MM_ATTR
#define MM_LID 0
#define MM_STEP 1
#define MM_R ((int)get_global_id(0))
#define MM_STORE()                                                    \
  for (int tt = 0; tt < TT && t0 + tt < n; tt++) {                    \
    float s = acc[tt];                                                \
    if (has_bias) s += CPTR(float, bias, bo)[r];                      \
    GPTR(float, y, yo)[(size_t)(t0 + tt) * ldy + r] = s;              \
  }
#else
#define MM_ATTR __attribute__((reqd_work_group_size(WG, 1, 1)))
#define MM_LID ((int)get_local_id(0))
#define MM_STEP WG
#define MM_R ((int)get_group_id(0))
#define MM_STORE() REDUCE_STORE()
#endif

#define MM_ARGS                                                                          \
  __global const uchar *w, ulong wo, ulong row_bytes, int cols, __global const float *sc, \
      ulong so, __global const float *x, ulong xo, __global float *y, ulong yo, long ldy, \
      __global const float *bias, ulong bo, int has_bias, int n

/* ---- 8-bit activations (the CPU backend's, qact.c) ------------------------------- */

/* x rows as int8 blocks: d = max|x| / 127, q = x / d rounded to nearest
 * even. Q8_32 (blk 32) for the 32-value types, with s = d * sum(q) per
 * block; Q8_256 (blk 256) for the K-quants, with the sums of q per 16. One
 * work-item per block. */
__kernel void quant_x(__global const float *x, ulong xo, int cols, int n, int blk,
                      __global char *xq, __global float *xd, __global float *xs,
                      __global int *xb) {
  const size_t id = get_global_id(0);
  const int per = cols / blk;
  if (id >= (size_t)n * per) return;
  __global const float *xr = CPTR(float, x, xo) + id * blk;
  float amax = 0.0f;
  for (int i = 0; i < blk; i++) amax = fmax(amax, fabs(xr[i]));
  const float d = amax / 127.0f, inv = d != 0.0f ? 1.0f / d : 0.0f;
  __global char *q = xq + id * blk;
  int sum = 0;
  for (int i = 0; i < blk; i++) {
    const int v = (int)rint(xr[i] * inv);
    q[i] = (char)v;
    sum += v;
    if (blk == 256 && i % 16 == 15) {
      xb[id * 16 + i / 16] = sum;
      sum = 0;
    }
  }
  xd[id] = d;
  if (blk == 32) xs[id] = d * (float)sum;
}

/* The integers of chunk j (32 values) of a block, and the block's scales:
 * the chunk's value is d * dx * (sc0 * dot(q[0..16), a) + sc1 * dot(q[16..32), a))
 * - dmin * dx * (m0 * bsum0 + m1 * bsum1) for the K-quants, d * dx * dot + m * s for
 * the others (sc, m unused). */
typedef struct qchunk {
  char q[32];
  int sc0, sc1, m0, m1;
  float d, dmin;
} qchunk;

static inline void iq_q8_0(__global const uchar *b, int j, qchunk *c) {
  c->d = ldh(b);
  c->dmin = 0.0f;
  for (int i = 0; i < 32; i++) c->q[i] = ((__global const char *)(b + 2))[i];
}
static inline void iq_q4_0(__global const uchar *b, int j, qchunk *c) {
  c->d = ldh(b);
  c->dmin = 0.0f;
  for (int i = 0; i < 16; i++) {
    c->q[i] = (char)((b[2 + i] & 15) - 8);
    c->q[i + 16] = (char)((b[2 + i] >> 4) - 8);
  }
}
static inline void iq_q4_1(__global const uchar *b, int j, qchunk *c) {
  c->d = ldh(b);
  c->dmin = ldh(b + 2);
  for (int i = 0; i < 16; i++) {
    c->q[i] = (char)(b[4 + i] & 15);
    c->q[i + 16] = (char)(b[4 + i] >> 4);
  }
}
static inline void iq_q5(__global const uchar *qh4, __global const uchar *qs, int off, qchunk *c) {
  const uint h = q5_high(qh4);
  for (int i = 0; i < 16; i++) {
    c->q[i] = (char)(((qs[i] & 15) | (int)((h >> i) & 1) << 4) - off);
    c->q[i + 16] = (char)(((qs[i] >> 4) | (int)((h >> (i + 16)) & 1) << 4) - off);
  }
}
static inline void iq_q5_0(__global const uchar *b, int j, qchunk *c) {
  c->d = ldh(b);
  c->dmin = 0.0f;
  iq_q5(b + 2, b + 6, 16, c);
}
static inline void iq_q5_1(__global const uchar *b, int j, qchunk *c) {
  c->d = ldh(b);
  c->dmin = ldh(b + 2);
  iq_q5(b + 4, b + 8, 0, c);
}
static inline void iq_q2_k(__global const uchar *b, int j, qchunk *c) {
  c->d = ldh(b + 80);
  c->dmin = ldh(b + 82);
  __global const uchar *q = b + 16 + (j / 4) * 32;
  const int shift = 2 * (j % 4);
  for (int l = 0; l < 32; l++) c->q[l] = (char)((q[l] >> shift) & 3);
  c->sc0 = b[2 * j] & 15;
  c->m0 = b[2 * j] >> 4;
  c->sc1 = b[2 * j + 1] & 15;
  c->m1 = b[2 * j + 1] >> 4;
}
static inline void iq_q3_k(__global const uchar *b, int j, qchunk *c) {
  c->d = ldh(b + 108);
  c->dmin = 0.0f;
  __global const uchar *q = b + 32 + (j / 4) * 32;
  const int shift = 2 * (j % 4);
  for (int l = 0; l < 32; l++)
    c->q[l] = (char)(((q[l] >> shift) & 3) - (((b[l] >> j) & 1) ? 0 : 4));
  c->sc0 = q3_scale(b + 96, 2 * j);
  c->sc1 = q3_scale(b + 96, 2 * j + 1);
  c->m0 = c->m1 = 0;
}
static inline void iq_k45(__global const uchar *b, int j, bool five, qchunk *c) {
  c->d = ldh(b);
  c->dmin = ldh(b + 2);
  float sc, m;
  k4_scale_min(j, b + 4, &sc, &m);
  c->sc0 = c->sc1 = (int)sc;
  c->m0 = c->m1 = (int)m;
  __global const uchar *qs = b + (five ? 48 : 16) + 32 * (j / 2), *qh = b + 16;
  const int shift = 4 * (j % 2);
  for (int l = 0; l < 32; l++)
    c->q[l] = (char)(((qs[l] >> shift) & 15) | (five ? ((qh[l] >> j) & 1) << 4 : 0));
}
static inline void iq_q4_k(__global const uchar *b, int j, qchunk *c) {
  iq_k45(b, j, false, c);
}
static inline void iq_q5_k(__global const uchar *b, int j, qchunk *c) {
  iq_k45(b, j, true, c);
}
static inline void iq_q6_k(__global const uchar *b, int j, qchunk *c) {
  c->d = ldh(b + 208);
  c->dmin = 0.0f;
  const int h = j / 4, k = j % 4;
  __global const uchar *ql = b + 64 * h + 32 * (k % 2), *qh = b + 128 + 32 * h;
  const int ns = k < 2 ? 0 : 4;
  for (int l = 0; l < 32; l++)
    c->q[l] = (char)((((ql[l] >> ns) & 15) | ((qh[l] >> (2 * k)) & 3) << 4) - 32);
  __global const char *sc = (__global const char *)(b + 192);
  c->sc0 = sc[2 * j];
  c->sc1 = sc[2 * j + 1];
  c->m0 = c->m1 = 0;
}

static inline int idot16(const char *q, __global const char *a) {
  int s = 0;
  for (int i = 0; i < 16; i++) s += (int)q[i] * (int)a[i];
  return s;
}

/* y[t][r] = sum over the row's chunks of the integer dot products with the
 * 8-bit activations (quant_x), scaled as the CPU's scalar kernels scale them
 * (qact.c); the chunks summed per work-item, then a tree. */
#define MM_QUANT(NAME, QK, BYTES, IQ)                                                      \
  __kernel MM_ATTR void NAME(                                                              \
      __global const uchar *w, ulong wo, ulong row_bytes, int cols, __global const char *xq, \
      __global const float *xd, __global const float *xs, __global const int *xb,          \
      __global float *y, ulong yo, long ldy, __global const float *bias, ulong bo,          \
      int has_bias, int n) {                                                                \
    const int lid = MM_LID, r = MM_R, t0 = (int)get_global_id(1) * TT;       \
    __global const uchar *row = w + wo + (size_t)r * row_bytes;                            \
    float acc[TT];                                                                         \
    for (int tt = 0; tt < TT; tt++) acc[tt] = 0.0f;                                        \
    const int nch = cols / 32;                                                             \
    for (int ch = lid; ch < nch; ch += MM_STEP) {                                               \
      qchunk c;                                                                            \
      IQ(row + (size_t)(ch / (QK / 32)) * BYTES, ch % (QK / 32), &c);                      \
      for (int tt = 0; tt < TT; tt++) {                                                    \
        if (t0 + tt >= n) break;                                                           \
        const size_t xt = (size_t)(t0 + tt) * cols;                                        \
        __global const char *a = xq + xt + 32 * ch;                                        \
        if (QK == 32) {                                                                    \
          const int dot = idot16(c.q, a) + idot16(c.q + 16, a + 16);                       \
          acc[tt] += c.d * xd[xt / 32 + ch] * (float)dot + c.dmin * xs[xt / 32 + ch];      \
        } else {                                                                           \
          const float dx = xd[xt / 256 + ch / 8];                                          \
          __global const int *bs = xb + xt / 16 + 2 * ch;                                  \
          const int tot = c.sc0 * idot16(c.q, a) + c.sc1 * idot16(c.q + 16, a + 16);       \
          const int mins = c.m0 * bs[0] + c.m1 * bs[1];                                    \
          acc[tt] += c.d * dx * (float)tot - c.dmin * dx * (float)mins;                    \
        }                                                                                  \
      }                                                                                    \
    }                                                                                      \
    MM_STORE()                                                                             \
  }

MM_QUANT(mm_q8_0, 32, 34, iq_q8_0)
MM_QUANT(mm_q4_0, 32, 18, iq_q4_0)
MM_QUANT(mm_q4_1, 32, 20, iq_q4_1)
MM_QUANT(mm_q5_0, 32, 22, iq_q5_0)
MM_QUANT(mm_q5_1, 32, 24, iq_q5_1)
MM_QUANT(mm_q2_k, 256, 84, iq_q2_k)
MM_QUANT(mm_q3_k, 256, 110, iq_q3_k)
MM_QUANT(mm_q4_k, 256, 144, iq_q4_k)
MM_QUANT(mm_q5_k, 256, 176, iq_q5_k)
MM_QUANT(mm_q6_k, 256, 210, iq_q6_k)

/* float types and int8 with scales: values one at a time (any cols) */
#define MM_FLOAT(NAME, LOAD)                                                           \
  __kernel MM_ATTR void NAME(MM_ARGS) {                                                \
    const int lid = MM_LID, r = MM_R, t0 = (int)get_global_id(1) * TT;   \
    __global const uchar *row = w + wo + (size_t)r * row_bytes;                        \
    __global const float *xs = CPTR(float, x, xo);                                     \
    __global const float *srow = CPTR(float, sc, so) + (size_t)r * (cols / 64);        \
    float acc[TT];                                                                     \
    for (int tt = 0; tt < TT; tt++) acc[tt] = 0.0f;                                    \
    for (int c = lid; c < cols; c += MM_STEP) {                                             \
      const float v = LOAD;                                                            \
      for (int tt = 0; tt < TT; tt++) {                                                \
        if (t0 + tt >= n) break;                                                       \
        acc[tt] += v * xs[(size_t)(t0 + tt) * cols + c];                               \
      }                                                                                \
    }                                                                                  \
    MM_STORE()                                                                         \
  }

MM_FLOAT(mm_f32, ld_f32(row, c))
MM_FLOAT(mm_f16, ld_f16(row, c))
MM_FLOAT(mm_bf16, ld_bf16(row, c))
MM_FLOAT(mm_i8, (float)((__global const char *)row)[c] / srow[c / 64])

/* ---- norms ------------------------------------------------------------------------ */

/* One work-group per row: x += a (+ b), then y = norm(x) * w (+ nb) where w
 * is given (has_w); kind 0 RMS, 1 layer norm. Every work-item runs every
 * barrier (none under a condition). */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1))) void norm(
    __global float *x, ulong xo, __global const float *a, ulong ao, int has_a,
    __global const float *b, ulong bo, int has_b, __global const float *w, ulong wo, int has_w,
    __global const float *nb, ulong nbo, int has_nb, __global float *y, ulong yo, int len,
    int kind, float eps) {
  __local acc_t red[WG];
  const int lid = get_local_id(0);
  const size_t base = (size_t)get_group_id(0) * len;
  __global float *xr = GPTR(float, x, xo) + base;
  if (has_a) {
    __global const float *ar = CPTR(float, a, ao) + base, *br = CPTR(float, b, bo) + base;
    for (int i = lid; i < len; i += WG) xr[i] += has_b ? ar[i] + br[i] : ar[i];
  }
  /* each work-item reads back only the values it wrote */
  acc_t mean = 0, ss = 0;
  for (int i = lid; i < len; i += WG) mean += xr[i];
  red[lid] = mean;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int s = WG / 2; s > 0; s >>= 1) {
    if (lid < s) red[lid] += red[lid + s];
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  mean = kind == 1 ? red[0] / len : 0;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int i = lid; i < len; i += WG) ss += ((acc_t)xr[i] - mean) * ((acc_t)xr[i] - mean);
  red[lid] = ss;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int s = WG / 2; s > 0; s >>= 1) {
    if (lid < s) red[lid] += red[lid + s];
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  ss = red[0];
  if (!has_w) return;
  const float scale = (float)(1.0 / sqrt(ss / len + eps));
  __global const float *wr = CPTR(float, w, wo), *nbr = CPTR(float, nb, nbo);
  __global float *yr = GPTR(float, y, yo) + base;
  for (int i = lid; i < len; i += WG) {
    if (kind == 1)
      yr[i] = (float)((xr[i] - mean) * scale) * wr[i] + (has_nb ? nbr[i] : 0.0f);
    else
      yr[i] = xr[i] * scale * wr[i];
  }
}

/* ---- RoPE -------------------------------------------------------------------------- */

/* One work-item per (token, head of q then k, pair i). */
__kernel void rope(__global float *q, ulong qo, __global float *k, ulong ko,
                   __global const int *pos, int n, int nh, int nkv, int hd, int n_rot,
                   int neox, float theta, float freq_scale, __global const float *ff, ulong ffo,
                   int has_ff) {
  const size_t id = get_global_id(0);
  const int half_rot = n_rot / 2, heads = nh + nkv;
  if (id >= (size_t)n * heads * half_rot) return;
  const int i = (int)(id % half_rot), h = (int)(id / half_rot % heads), t = (int)(id / half_rot / heads);
  acc_t inv = pow((acc_t)theta, (acc_t)(-2.0) * i / n_rot);
  if (has_ff) inv /= CPTR(float, ff, ffo)[i];
  const acc_t ang = (acc_t)pos[t] * freq_scale * inv;
  const float c = (float)cos(ang), s = (float)sin(ang);
  __global float *p = h < nh ? GPTR(float, q, qo) + ((size_t)t * nh + h) * hd
                             : GPTR(float, k, ko) + ((size_t)t * nkv + (h - nh)) * hd;
  const int i0 = neox ? i : 2 * i, i1 = neox ? i + half_rot : 2 * i + 1;
  const float x0 = p[i0], x1 = p[i1];
  p[i0] = x0 * c - x1 * s;
  p[i1] = x0 * s + x1 * c;
}

/* ---- KV cache ----------------------------------------------------------------------- */

/* The cache: [layer][seq][kv head][position] rows of hd values in its type
 * (kv 0 f32, 1 f16, 2 Q8_0 blocks of 32). One work-item per (kv head, value)
 * (Q8_0: per block), the step's tokens in order, so that of two tokens at one
 * position the later stays. */
__kernel void kv_store(__global uchar *kc, __global uchar *vc, __global const float *k, ulong ko,
                       __global const float *v, ulong vo, __global const int *pos,
                       __global const int *seq, int n, int layer, int n_seq, int nkv, int hd,
                       int kv_ctx, int kv) {
  const int per = kv == 2 ? hd / 32 : hd;
  const size_t id = get_global_id(0);
  if (id >= (size_t)nkv * per) return;
  const int h = (int)(id / per), e = (int)(id % per);
  const size_t row = kv == 0 ? 4 * (size_t)hd : kv == 1 ? 2 * (size_t)hd : (size_t)hd / 32 * 34;
  for (int t = 0; t < n; t++) {
    const size_t at = ((((size_t)layer * n_seq + seq[t]) * nkv + h) * kv_ctx + pos[t]) * row;
    const size_t src = ((size_t)t * nkv + h) * hd;
    for (int which = 0; which < 2; which++) {
      __global const float *xs = which ? CPTR(float, v, vo) + src : CPTR(float, k, ko) + src;
      __global uchar *dst = (which ? vc : kc) + at;
      if (kv == 0) {
        ((__global float *)dst)[e] = xs[e];
      } else if (kv == 1) {
        vstore_half_rte(xs[e], e, (__global half *)dst);
      } else { /* ggml's quantize_row_q8_0_ref (tl_quant_q8_0) */
        __global const float *xb = xs + 32 * e;
        __global uchar *b = dst + 34 * e;
        float amax = 0.0f;
        for (int i = 0; i < 32; i++) amax = fmax(amax, fabs(xb[i]));
        const float d = amax / 127.0f, id8 = d != 0.0f ? 1.0f / d : 0.0f;
        vstore_half_rte(d, 0, (__global half *)b);
        for (int i = 0; i < 32; i++) ((__global char *)(b + 2))[i] = (char)round(xb[i] * id8);
      }
    }
  }
}

/* value d of a cached row */
static inline float kv_at(__global const uchar *row, int d, int kv) {
  if (kv == 0) return ((__global const float *)row)[d];
  if (kv == 1) return vload_half(d, (__global const half *)row);
  __global const uchar *b = row + 34 * (d / 32);
  return ldh(b) * (float)((__global const char *)(b + 2))[d % 32];
}

/* ---- attention --------------------------------------------------------------------- */

/* One work-group of WG per (token, query head): positions in tiles of WG, a
 * score per work-item, then the online softmax; work-item i keeps the output
 * values d = i, i + WG, ... */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1))) void attention(
    __global const float *q, ulong qo, __global float *out, ulong oo, __global const uchar *kc,
    __global const uchar *vc, __global const int *pos, __global const int *seq, int layer,
    int n_seq, int nh, int nkv, int hd, int kv_ctx, int kv, int window, float scale,
    float softcap) {
  __local float qs[HDMAX];
  __local float p[WG];
  const int lid = get_local_id(0), g = get_group_id(0);
  const int t = g / nh, h = g % nh, kvh = h / (nh / nkv);
  __global const float *qh = CPTR(float, q, qo) + (size_t)g * hd;
  for (int d = lid; d < hd; d += WG) qs[d] = qh[d];
  barrier(CLK_LOCAL_MEM_FENCE);
  const int pt = pos[t];
  const int j0 = window > 0 && pt - window + 1 > 0 ? pt - window + 1 : 0;
  const size_t row = kv == 0 ? 4 * (size_t)hd : kv == 1 ? 2 * (size_t)hd : (size_t)hd / 32 * 34;
  const size_t head = (((size_t)layer * n_seq + seq[t]) * nkv + kvh) * kv_ctx;
  __global const uchar *kh = kc + head * row, *vh = vc + head * row;
  float o[HDMAX / WG];
  for (int i = 0; i < HDMAX / WG; i++) o[i] = 0.0f;
  float m = -INFINITY, l = 0.0f;
  for (int jb = j0; jb <= pt; jb += WG) {
    const int j = jb + lid, nv = pt - jb + 1 < WG ? pt - jb + 1 : WG;
    float s = -INFINITY;
    if (j <= pt) {
      __global const uchar *kr = kh + (size_t)j * row;
      float acc = 0.0f;
      for (int d = 0; d < hd; d++) acc += qs[d] * kv_at(kr, d, kv);
      s = acc * scale;
      if (softcap > 0.0f) s = softcap * tanh(s / softcap);
    }
    p[lid] = s;
    barrier(CLK_LOCAL_MEM_FENCE);
    float mt = m;
    for (int i = 0; i < nv; i++) mt = fmax(mt, p[i]);
    barrier(CLK_LOCAL_MEM_FENCE);
    p[lid] = j <= pt ? exp(s - mt) : 0.0f;
    barrier(CLK_LOCAL_MEM_FENCE);
    const float corr = exp(m - mt);
    float ls = 0.0f;
    for (int i = 0; i < nv; i++) ls += p[i];
    l = l * corr + ls;
    for (int k = 0; k < HDMAX / WG; k++) {
      const int d = lid + k * WG;
      if (d >= hd) break;
      float acc = o[k] * corr;
      for (int i = 0; i < nv; i++) acc += p[i] * kv_at(vh + (size_t)(jb + i) * row, d, kv);
      o[k] = acc;
    }
    m = mt;
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  __global float *oh = GPTR(float, out, oo) + (size_t)g * hd;
  for (int k = 0; k < HDMAX / WG; k++) {
    const int d = lid + k * WG;
    if (d < hd) oh[d] = o[k] / l;
  }
}

/* ---- elementwise ---------------------------------------------------------------------- */

static inline float act_of(int kind, float x) {
  if (kind == 0) return x / (1.0f + exp(-x));
  if (kind == 1) return 0.5f * x * (1.0f + tanh(0.7978845608028654f * (x + 0.044715f * x * x * x)));
  return 0.5f * x * (1.0f + erf(x * 0.7071067811865476f));
}

/* a = act(a) * b (gated) or a = act(b) */
__kernel void act(int kind, int gated, __global float *a, ulong ao, __global const float *b,
                  ulong bo, long n) {
  const long i = get_global_id(0);
  if (i >= n) return;
  __global float *as = GPTR(float, a, ao);
  const float bv = CPTR(float, b, bo)[i];
  as[i] = gated ? act_of(kind, as[i]) * bv : act_of(kind, bv);
}

__kernel void scale(__global float *x, ulong xo, float s, long n) {
  const long i = get_global_id(0);
  if (i < n) GPTR(float, x, xo)[i] *= s;
}

__kernel void softcap(__global float *x, ulong xo, float cap, long n) {
  const long i = get_global_id(0);
  if (i < n) {
    __global float *p = GPTR(float, x, xo) + i;
    *p = cap * tanh(*p / cap);
  }
}
