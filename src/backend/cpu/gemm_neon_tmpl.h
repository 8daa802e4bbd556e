/* The integer matrix kernels of gemm_neon.c, included there twice: with
 * SFX(name) the name suffix, TGT the function target attribute, and
 * DOT16(acc, w, a) adding the dot product of the int8x16 w and a into the
 * int32x4 acc (the sum of its lanes). Not a header of its own. */

/* ---- 32-element blocks ---------------------------------------------------------------- */

/* acc[r] (lane t: token t) += d_r * dx_t * dot(w_r, a_t) (+ m_r * s_t) for block i. */
TGT INLINE void SFX(g32_tile)(kind32 k, const w32 wb[4], const uint8_t *const xr[4], int64_t n,
                              int64_t i, float32x4_t acc[4], const int T) {
  const bool hm = k == K32_Q4_1 || k == K32_Q5_1;
  int8x16_t a0[4], a1[4];
  float dx[4] = {0, 0, 0, 0}, sx[4] = {0, 0, 0, 0};
  _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) {
    a0[t] = vld1q_s8((const int8_t *)xr[t] + 32 * i);
    a1[t] = vld1q_s8((const int8_t *)xr[t] + 32 * i + 16);
    dx[t] = tl_act_d(xr[t], n)[i];
    if (hm) sx[t] = tl_act_s(xr[t], n)[i];
  }
  const float32x4_t dxv = T == 1 ? vdupq_n_f32(dx[0]) : vld1q_f32(dx);
  const float32x4_t sxv = T == 1 ? vdupq_n_f32(sx[0]) : vld1q_f32(sx);
  _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++) {
    int32x4_t p[4];
    _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) p[t] =
        DOT16(DOT16(vdupq_n_s32(0), wb[r].q0, a0[t]), wb[r].q1, a1[t]);
    acc[r] = vfmaq_f32(acc[r], vcvtq_f32_s32(hsum4(p, T)), vmulq_n_f32(dxv, wb[r].d));
    if (hm) acc[r] = vfmaq_n_f32(acc[r], sxv, wb[r].m);
  }
}

TGT INLINE void SFX(gemm32)(kind32 k, const void *w, size_t ldw, int64_t nr, const void *x,
                            size_t ldx, int64_t nt, int64_t n, float *y, int64_t ldy) {
  const size_t bs = bsize32(k);
  for (int64_t c0 = 0; c0 < nt; c0 += TOK_CHUNK) {
    const int64_t tn = min64(TOK_CHUNK, nt - c0);
    const int ntt = (int)((tn + 3) / 4);
    const uint8_t *xc = (const uint8_t *)x + c0 * ldx;
    for (int64_t r0 = 0; r0 < nr; r0 += 4) {
      const uint8_t *wr[4];
      _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++) wr[r] =
          (const uint8_t *)w + min64(r0 + r, nr - 1) * ldw;
      float32x4_t acc[TOK_CHUNK / 4][4];
      for (int q = 0; q < ntt; q++)
        _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++) acc[q][r] = vdupq_n_f32(0);
      for (int64_t i = 0; i < n / 32; i++) {
        w32 wb[4];
        _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++)
            unpack32(k, wr[r] + (size_t)i * bs, &wb[r]);
        if (tn == 1) {
          const uint8_t *const xr[4] = {xc, xc, xc, xc};
          SFX(g32_tile)(k, wb, xr, n, i, acc[0], 1);
          continue;
        }
        for (int q = 0; q < ntt; q++) {
          const uint8_t *xr[4];
          for (int t = 0; t < 4; t++) xr[t] = xc + min64(4 * q + t, tn - 1) * ldx;
          SFX(g32_tile)(k, wb, xr, n, i, acc[q], 4);
        }
      }
      store_tiles(acc, ntt, tn, nr, c0, r0, y, ldy);
    }
  }
}

/* ---- 256-element blocks ---------------------------------------------------------------- */

/* acc[r] (lane t) += d_r dx_t sum_g sc_rg dot_g(w_r, a_t) - dmin_r dx_t sum_g mn_rg bsum_tg. */
TGT INLINE void SFX(gk_tile)(bool has_min, const kblk kb[4], const uint8_t *const xr[4], int64_t n,
                             int64_t i, float32x4_t acc[4], const int T) {
  int32x4_t is[4][4];
  const int8_t *xa[4];
  float dx[4] = {0, 0, 0, 0};
  _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) {
    xa[t] = (const int8_t *)xr[t] + 256 * i;
    dx[t] = tl_act_d(xr[t], n)[i];
    _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++) is[r][t] = vdupq_n_s32(0);
  }
  for (int s = 0; s < 4; s++) {
#define KG(j)                                                                            \
  do {                                                                                   \
    int8x16_t av[4];                                                                     \
    _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) av[t] =                          \
        vld1q_s8(xa[t] + 64 * s + 16 * (j));                                             \
    _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++) {                                \
      const int8x16_t wv = vld1q_s8(kb[r].q + 64 * s + 16 * (j));                        \
      _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) is[r][t] =                     \
          vmlaq_laneq_s32(is[r][t], DOT16(vdupq_n_s32(0), wv, av[t]), kb[r].sc[s], (j)); \
    }                                                                                    \
  } while (0)
    KG(0);
    KG(1);
    KG(2);
    KG(3);
#undef KG
  }
  const float32x4_t dxv = T == 1 ? vdupq_n_f32(dx[0]) : vld1q_f32(dx);
  int16x8_t b0[4], b1[4];
  if (has_min) _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) {
      const int16_t *bs = tl_act_bsum(xr[t], n) + 16 * i;
      b0[t] = vld1q_s16(bs);
      b1[t] = vld1q_s16(bs + 8);
    }
  _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++) {
    acc[r] = vfmaq_f32(acc[r], vcvtq_f32_s32(hsum4(is[r], T)), vmulq_n_f32(dxv, kb[r].d));
    if (has_min) {
      int32x4_t m[4];
      _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) {
        m[t] = vmull_s16(vget_low_s16(kb[r].mn[0]), vget_low_s16(b0[t]));
        m[t] = vmlal_high_s16(m[t], kb[r].mn[0], b0[t]);
        m[t] = vmlal_s16(m[t], vget_low_s16(kb[r].mn[1]), vget_low_s16(b1[t]));
        m[t] = vmlal_high_s16(m[t], kb[r].mn[1], b1[t]);
      }
      acc[r] = vfmsq_f32(acc[r], vcvtq_f32_s32(hsum4(m, T)), vmulq_n_f32(dxv, kb[r].dmin));
    }
  }
}

TGT INLINE void SFX(gemmk)(void (*unpack)(const uint8_t *, kblk *), size_t bsz, bool has_min,
                           const void *w, size_t ldw, int64_t nr, const void *x, size_t ldx,
                           int64_t nt, int64_t n, float *y, int64_t ldy) {
  for (int64_t c0 = 0; c0 < nt; c0 += TOK_CHUNK) {
    const int64_t tn = min64(TOK_CHUNK, nt - c0);
    const int ntt = (int)((tn + 3) / 4);
    const uint8_t *xc = (const uint8_t *)x + c0 * ldx;
    for (int64_t r0 = 0; r0 < nr; r0 += 4) {
      const uint8_t *wr[4];
      _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++) wr[r] =
          (const uint8_t *)w + min64(r0 + r, nr - 1) * ldw;
      float32x4_t acc[TOK_CHUNK / 4][4];
      for (int q = 0; q < ntt; q++)
        _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++) acc[q][r] = vdupq_n_f32(0);
      for (int64_t i = 0; i < n / 256; i++) {
        kblk kb[4];
        _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++) unpack(wr[r] + (size_t)i * bsz, &kb[r]);
        if (tn == 1) {
          const uint8_t *const xr[4] = {xc, xc, xc, xc};
          SFX(gk_tile)(has_min, kb, xr, n, i, acc[0], 1);
          continue;
        }
        for (int q = 0; q < ntt; q++) {
          const uint8_t *xr[4];
          for (int t = 0; t < 4; t++) xr[t] = xc + min64(4 * q + t, tn - 1) * ldx;
          SFX(gk_tile)(has_min, kb, xr, n, i, acc[q], 4);
        }
      }
      store_tiles(acc, ntt, tn, nr, c0, r0, y, ldy);
    }
  }
}

/* ---- the entry points ---------------------------------------------------------------- */

#define TL_NEON_GEMM32(name, kind)                                                             \
  TGT static void SFX(gemm_##name)(const void *w, size_t ldw, int64_t nr, const void *x,       \
                                   size_t ldx, int64_t nt, int64_t n, float *y, int64_t ldy) { \
    SFX(gemm32)(kind, w, ldw, nr, x, ldx, nt, n, y, ldy);                                      \
  }
TL_NEON_GEMM32(q4_0, K32_Q4_0)
TL_NEON_GEMM32(q4_1, K32_Q4_1)
TL_NEON_GEMM32(q5_0, K32_Q5_0)
TL_NEON_GEMM32(q5_1, K32_Q5_1)
TL_NEON_GEMM32(q8_0, K32_Q8_0)
TL_NEON_GEMM32(iq4_nl, K32_IQ4NL)
#undef TL_NEON_GEMM32

#define TL_NEON_GEMMK(name, has_min)                                                           \
  TGT static void SFX(gemm_##name)(const void *w, size_t ldw, int64_t nr, const void *x,       \
                                   size_t ldx, int64_t nt, int64_t n, float *y, int64_t ldy) { \
    SFX(gemmk)                                                                                 \
    (unpack_##name, sizeof(tl_block_##name), has_min, w, ldw, nr, x, ldx, nt, n, y, ldy);      \
  }
TL_NEON_GEMMK(q2_k, true)
TL_NEON_GEMMK(q3_k, false)
TL_NEON_GEMMK(q4_k, true)
TL_NEON_GEMMK(q5_k, true)
TL_NEON_GEMMK(q6_k, false)
TL_NEON_GEMMK(iq4_xs, false)
TL_NEON_GEMMK(iq2_xxs, false)
TL_NEON_GEMMK(iq2_xs, false)
TL_NEON_GEMMK(iq2_s, false)
TL_NEON_GEMMK(iq3_xxs, false)
TL_NEON_GEMMK(iq3_s, false)
TL_NEON_GEMMK(iq1_s, false)
TL_NEON_GEMMK(iq1_m, false)
#undef TL_NEON_GEMMK

static void SFX(fill_qgemm)(tl_cpu_kernels *k) {
  k->gemm[TL_TYPE_Q4_0] = SFX(gemm_q4_0);
  k->gemm[TL_TYPE_Q4_1] = SFX(gemm_q4_1);
  k->gemm[TL_TYPE_Q5_0] = SFX(gemm_q5_0);
  k->gemm[TL_TYPE_Q5_1] = SFX(gemm_q5_1);
  k->gemm[TL_TYPE_Q8_0] = SFX(gemm_q8_0);
  k->gemm[TL_TYPE_Q2_K] = SFX(gemm_q2_k);
  k->gemm[TL_TYPE_Q3_K] = SFX(gemm_q3_k);
  k->gemm[TL_TYPE_Q4_K] = SFX(gemm_q4_k);
  k->gemm[TL_TYPE_Q5_K] = SFX(gemm_q5_k);
  k->gemm[TL_TYPE_Q6_K] = SFX(gemm_q6_k);
  k->gemm[TL_TYPE_IQ4_NL] = SFX(gemm_iq4_nl);
  k->gemm[TL_TYPE_IQ4_XS] = SFX(gemm_iq4_xs);
  k->gemm[TL_TYPE_IQ2_XXS] = SFX(gemm_iq2_xxs);
  k->gemm[TL_TYPE_IQ2_XS] = SFX(gemm_iq2_xs);
  k->gemm[TL_TYPE_IQ2_S] = SFX(gemm_iq2_s);
  k->gemm[TL_TYPE_IQ3_XXS] = SFX(gemm_iq3_xxs);
  k->gemm[TL_TYPE_IQ3_S] = SFX(gemm_iq3_s);
  k->gemm[TL_TYPE_IQ1_S] = SFX(gemm_iq1_s);
  k->gemm[TL_TYPE_IQ1_M] = SFX(gemm_iq1_m);
}
