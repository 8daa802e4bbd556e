/* The GGUF quantization types: dequantization against llama.cpp's own
 * dequantized fixtures (bit-exact up to float rounding), scalar dot products
 * against a float64 dot of the dequantized rows on random blocks, and
 * hand-built blocks with known values for every type (so the layouts are not
 * only checked against themselves). */
#include <math.h>

#include "backend/cpu/cpu.h"
#include "format/gguf.h"
#include "quant/quant.h"
#include "testutil.h"

static uint64_t g_rng = 0x243f6a8885a308d3ull;
static uint64_t rng_next(void) {
  g_rng ^= g_rng << 13;
  g_rng ^= g_rng >> 7;
  g_rng ^= g_rng << 17;
  return g_rng;
}
static float frand(void) { /* uniform in [-1, 1) */
  return (float)((rng_next() >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

/* Distance in units in the last place between two finite floats. */
static uint64_t ulp_diff(float a, float b) {
  int32_t ia, ib;
  memcpy(&ia, &a, 4);
  memcpy(&ib, &b, 4);
  int64_t oa = ia < 0 ? (int64_t)INT32_MIN - ia : ia; /* order-preserving map */
  int64_t ob = ib < 0 ? (int64_t)INT32_MIN - ib : ib;
  return (uint64_t)(oa > ob ? oa - ob : ob - oa);
}

/* ---- 1. llama.cpp's dequantized fixtures --------------------------------- */

typedef struct {
  uint64_t n;       /* elements compared */
  uint64_t max_ulp; /* largest ulp distance */
  double max_abs;   /* largest absolute difference */
} cmp_stats;

static const char *const g_fixtures[] = {"q4_0",   "q4_k_m",  "q6_k",  "q8_0",    "iq4_nl",
                                         "iq4_xs", "iq3_xxs", "iq3_s", "iq2_xxs", "iq2_xs",
                                         "iq2_s",  "iq1_s",   "iq1_m"};

static void test_fixture_dequant(void **state) {
  (void)state;
  cmp_stats per_type[TL_TYPE_COUNT] = {0};
  int files = 0;
  for (size_t f = 0; f < sizeof g_fixtures / sizeof g_fixtures[0]; f++) {
    char *gpath = tl_test_fixture_or_skipf("llama/model-%s.gguf", g_fixtures[f]);
    char *dpath = tl_test_fixture_or_skipf("llama/model-%s.dequant.safetensors", g_fixtures[f]);
    if (!tl_test_both(&gpath, &dpath)) continue;
    tl_gguf *g = NULL;
    assert_int_equal(tl_gguf_open(gpath, &g), TL_OK);
    tl_test_st *st = tl_test_st_open(dpath);
    assert_non_null(st);
    int tensors = 0;
    for (uint64_t t = 0; t < g->n_tensors; t++) {
      const tl_gguf_tensor *gt = &g->tensors[t];
      char name[256];
      assert_true(gt->name.len < sizeof name);
      memcpy(name, gt->name.ptr, (size_t)gt->name.len);
      name[gt->name.len] = 0;
      int64_t shape[4];
      int nd = 0;
      const float *ref = tl_test_st_get(st, name, shape, &nd);
      if (!ref) continue;
      const tl_type_info *ti = tl_type_get(gt->type);
      assert_non_null(ti);
      if (!ti->to_float) fail_msg("%s: type %s has no dequantization", name, ti->name);
      int64_t cols = gt->ne[0], rows = 1;
      for (uint32_t d = 1; d < TL_GGUF_MAX_DIMS; d++) rows *= gt->ne[d];
      int64_t ref_numel = 1;
      for (int d = 0; d < nd; d++) ref_numel *= shape[d];
      assert_int_equal(ref_numel, rows * cols);
      assert_int_equal(shape[nd - 1], cols);
      uint64_t rb;
      assert_true(tl_type_row_size(gt->type, cols, &rb));
      assert_true(rb * (uint64_t)rows <= gt->nbytes);
      float *got = malloc(sizeof(float) * (size_t)cols);
      float *want = malloc(sizeof(float) * (size_t)cols);
      cmp_stats *cs = &per_type[gt->type];
      for (int64_t r = 0; r < rows; r++) {
        ti->to_float((const uint8_t *)gt->data + r * rb, got, cols);
        memcpy(want, (const uint8_t *)ref + (size_t)(r * cols) * 4, sizeof(float) * (size_t)cols);
        for (int64_t c = 0; c < cols; c++) {
          float a = got[c], b = want[c];
          if (!isfinite(a) || !isfinite(b))
            fail_msg("%s [%lld,%lld]: non-finite %g vs %g", name, (long long)r, (long long)c, a, b);
          double diff = fabs((double)a - (double)b);
          if (a != b && diff > 2e-7 * fabs((double)b) + 1e-30)
            fail_msg("%s (%s) [%lld,%lld]: got %.9g want %.9g", name, ti->name, (long long)r,
                     (long long)c, a, b);
          uint64_t u = ulp_diff(a, b);
          if (u > cs->max_ulp) cs->max_ulp = u;
          if (diff > cs->max_abs) cs->max_abs = diff;
          cs->n++;
        }
      }
      free(got);
      free(want);
      printf("  model-%s: %s %s [%lld x %lld] matches\n", g_fixtures[f], name, ti->name,
             (long long)rows, (long long)cols);
      tensors++;
    }
    if (tensors == 0)
      fail_msg("model-%s: no tensor of the dequant file found in the GGUF", g_fixtures[f]);
    files++;
    tl_test_st_free(st);
    tl_gguf_free(g);
    free(gpath);
    free(dpath);
  }
  printf("fixture dequantization checked (%d files):", files);
  for (uint32_t t = 0; t < TL_TYPE_COUNT; t++)
    if (per_type[t].n) printf(" %s", tl_type_name(t));
  printf("\n");
  for (uint32_t t = 0; t < TL_TYPE_COUNT; t++)
    if (per_type[t].n)
      printf("  %-5s %9llu values, max diff %llu ulp (%.3g abs)\n", tl_type_name(t),
             (unsigned long long)per_type[t].n, (unsigned long long)per_type[t].max_ulp,
             per_type[t].max_abs);
}

/* ---- 2. random blocks: vec_dot against float64 ----------------------------- */

/* Where a type's f16 scale fields sit in its block. */
typedef struct {
  uint32_t type;
  int n_f16;
  size_t f16_off[2];
} qtype_desc;

static const qtype_desc g_qtypes[] = {
    {TL_TYPE_Q4_0, 1, {offsetof(tl_block_q4_0, d)}},
    {TL_TYPE_Q4_1, 2, {offsetof(tl_block_q4_1, d), offsetof(tl_block_q4_1, m)}},
    {TL_TYPE_Q5_0, 1, {offsetof(tl_block_q5_0, d)}},
    {TL_TYPE_Q5_1, 2, {offsetof(tl_block_q5_1, d), offsetof(tl_block_q5_1, m)}},
    {TL_TYPE_Q8_0, 1, {offsetof(tl_block_q8_0, d)}},
    {TL_TYPE_Q2_K, 2, {offsetof(tl_block_q2_k, d), offsetof(tl_block_q2_k, dmin)}},
    {TL_TYPE_Q3_K, 1, {offsetof(tl_block_q3_k, d)}},
    {TL_TYPE_Q4_K, 2, {offsetof(tl_block_q4_k, d), offsetof(tl_block_q4_k, dmin)}},
    {TL_TYPE_Q5_K, 2, {offsetof(tl_block_q5_k, d), offsetof(tl_block_q5_k, dmin)}},
    {TL_TYPE_Q6_K, 1, {offsetof(tl_block_q6_k, d)}},
    /* the IQ types (d first; IQ1_M's scale is spread over its scale words:
     * random bytes with bit 6 cleared keep it finite) */
    {TL_TYPE_IQ4_NL, 1, {0}},
    {TL_TYPE_IQ4_XS, 1, {0}},
    {TL_TYPE_IQ2_XXS, 1, {0}},
    {TL_TYPE_IQ2_XS, 1, {0}},
    {TL_TYPE_IQ2_S, 1, {0}},
    {TL_TYPE_IQ3_XXS, 1, {0}},
    {TL_TYPE_IQ3_S, 1, {0}},
    {TL_TYPE_IQ1_S, 1, {0}},
    {TL_TYPE_IQ1_M, 0, {0}},
};

/* Random blocks: random bytes, then finite f16 scales of either sign. */
static void random_blocks(const qtype_desc *q, uint8_t *dst, int64_t nblocks) {
  const tl_type_info *ti = tl_type_get(q->type);
  for (size_t i = 0; i < (size_t)nblocks * ti->type_size; i++) dst[i] = (uint8_t)(rng_next() >> 24);
  if (q->type == TL_TYPE_IQ1_M)
    for (size_t i = 0; i < (size_t)nblocks * ti->type_size; i++) dst[i] &= 0xbf;
  for (int64_t b = 0; b < nblocks; b++)
    for (int k = 0; k < q->n_f16; k++) {
      float v = frand() * 0.05f;
      if (b == 0 && k == 0) v = 0; /* a zero scale is legal too */
      uint16_t h = tl_f32_to_f16(v);
      memcpy(dst + (size_t)b * ti->type_size + q->f16_off[k], &h, 2);
    }
}

static void test_random_vec_dot(void **state) {
  (void)state;
  const tl_cpu_kernels *sets[] = {tl_cpu_kernels_scalar(), tl_cpu_kernels_best()};
  const int64_t nblocks_list[] = {1, 2, 3, 5};
  for (size_t qi = 0; qi < sizeof g_qtypes / sizeof g_qtypes[0]; qi++) {
    const qtype_desc *q = &g_qtypes[qi];
    const tl_type_info *ti = tl_type_get(q->type);
    assert_non_null(ti);
    assert_non_null(ti->to_float);
    if (!tl_cpu_supports_type(q->type)) fail_msg("%s: no CPU vec_dot", ti->name);
    for (size_t ni = 0; ni < sizeof nblocks_list / sizeof nblocks_list[0]; ni++) {
      for (int rep = 0; rep < 8; rep++) {
        int64_t nb = nblocks_list[ni], n = nb * ti->blck;
        size_t bytes = (size_t)nb * ti->type_size;
        /* one spare byte in front: the row starts at an odd address */
        uint8_t *buf = malloc(bytes + 1), *row = buf + 1;
        float *x = malloc(sizeof(float) * (size_t)n), *w = malloc(sizeof(float) * (size_t)n);
        random_blocks(q, row, nb);
        for (int64_t i = 0; i < n; i++) x[i] = frand();
        ti->to_float(row, w, n);
        double ref = 0, mag = 0;
        for (int64_t i = 0; i < n; i++) {
          if (!isfinite(w[i])) fail_msg("%s: non-finite dequantized value", ti->name);
          ref += (double)w[i] * x[i];
          mag += fabs((double)w[i] * x[i]);
        }
        for (size_t k = 0; k < 2; k++) {
          float got = sets[k]->vec_dot[q->type](row, x, n);
          if (fabs(got - ref) > 1e-5 * mag + 1e-30)
            fail_msg("%s %s n=%lld: vec_dot %.9g, float64 dot of to_float %.9g (mag %g)",
                     sets[k]->name, ti->name, (long long)n, got, ref, mag);
        }
        /* the row's blocks are independent: dequantizing block by block agrees */
        for (int64_t b = 0; b < nb; b++) {
          float part[256];
          ti->to_float(row + b * (int64_t)ti->type_size, part, ti->blck);
          assert_memory_equal(part, w + b * ti->blck, sizeof(float) * (size_t)ti->blck);
        }
        free(buf);
        free(x);
        free(w);
      }
    }
  }
}

/* ---- 3. hand-built blocks with known values -------------------------------- */

#define F16_ONE 0x3C00
#define F16_HALF 0x3800
#define F16_QUARTER 0x3400
#define F16_MINUS_ONE 0xBC00

static void put_f16(uint8_t *blk, size_t off, uint16_t h) {
  memcpy(blk + off, &h, 2);
}

/* to_float of one block equals want exactly; vec_dot with one-hot vectors
 * picks each element and with all-ones gives the (exact) sum. */
static void check_block(uint32_t type, const uint8_t *blk, const float *want) {
  const tl_type_info *ti = tl_type_get(type);
  int64_t n = ti->blck;
  float got[256], x[256];
  ti->to_float(blk, got, n);
  for (int64_t i = 0; i < n; i++)
    if (got[i] != want[i])
      fail_msg("%s element %lld: got %.9g want %.9g", ti->name, (long long)i, got[i], want[i]);
  tl_vec_dot_fn dot = tl_cpu_kernels_scalar()->vec_dot[type];
  assert_non_null(dot);
  double total = 0;
  for (int64_t i = 0; i < n; i++) {
    for (int64_t j = 0; j < n; j++) x[j] = 0;
    x[i] = 1;
    float d = dot(blk, x, n);
    if (d != want[i])
      fail_msg("%s vec_dot one-hot %lld: got %.9g want %.9g", ti->name, (long long)i, d, want[i]);
    total += want[i];
  }
  for (int64_t j = 0; j < n; j++) x[j] = 1;
  float s = dot(blk, x, n);
  if ((double)s != total) fail_msg("%s vec_dot ones: got %.9g want %.9g", ti->name, s, total);
}

static void fill(float *a, int from, int to, float v) {
  for (int i = from; i < to; i++) a[i] = v;
}

static void test_known_q4_0(void **state) {
  (void)state;
  uint8_t b[sizeof(tl_block_q4_0)] = {0};
  put_f16(b, offsetof(tl_block_q4_0, d), F16_HALF);
  uint8_t *qs = b + offsetof(tl_block_q4_0, qs);
  qs[0] = 0xF0;  /* element 0: 0 -> -8 * 0.5; element 16: 15 -> 7 * 0.5 */
  qs[3] = 0x9C;  /* element 3: 12 -> 2;         element 19: 9 -> 0.5 */
  qs[15] = 0x88; /* element 15 and 31: 8 -> 0 */
  float want[32];
  fill(want, 0, 32, -4.0f); /* nibble 0: (0 - 8) * 0.5 */
  want[0] = -4.0f;
  want[16] = 3.5f;
  want[3] = 2.0f;
  want[19] = 0.5f;
  want[15] = 0.0f;
  want[31] = 0.0f;
  check_block(TL_TYPE_Q4_0, b, want);
}

static void test_known_q4_1(void **state) {
  (void)state;
  uint8_t b[sizeof(tl_block_q4_1)] = {0};
  put_f16(b, offsetof(tl_block_q4_1, d), F16_QUARTER);
  put_f16(b, offsetof(tl_block_q4_1, m), F16_MINUS_ONE);
  uint8_t *qs = b + offsetof(tl_block_q4_1, qs);
  qs[0] = 0x4F; /* element 0: 15 * 0.25 - 1; element 16: 4 * 0.25 - 1 */
  qs[9] = 0x10; /* element 9: -1; element 25: 0.25 - 1 */
  float want[32];
  fill(want, 0, 32, -1.0f);
  want[0] = 2.75f;
  want[16] = 0.0f;
  want[25] = -0.75f;
  check_block(TL_TYPE_Q4_1, b, want);
}

static void test_known_q5_0(void **state) {
  (void)state;
  uint8_t b[sizeof(tl_block_q5_0)] = {0};
  put_f16(b, offsetof(tl_block_q5_0, d), F16_HALF);
  uint8_t *qh = b + offsetof(tl_block_q5_0, qh), *qs = b + offsetof(tl_block_q5_0, qs);
  /* qh is a little-endian u32, bit j = 5th bit of element j */
  qh[0] = 0x01; /* element 0 */
  qh[1] = 0x02; /* element 9 */
  qh[2] = 0x00;
  qh[3] = 0x80;  /* element 31 */
  qs[0] = 0x23;  /* element 0: 3 | 16 = 19 -> 3;  element 16: 2 -> -14 */
  qs[15] = 0xFF; /* element 15: 15 -> -1;        element 31: 15 | 16 = 31 -> 15 */
  float want[32];
  fill(want, 0, 32, -8.0f); /* q = 0: (0 - 16) * 0.5 */
  want[0] = 1.5f;
  want[16] = -7.0f;
  want[9] = 0.0f; /* 16 - 16 */
  want[15] = -0.5f;
  want[31] = 7.5f;
  check_block(TL_TYPE_Q5_0, b, want);
}

static void test_known_q5_1(void **state) {
  (void)state;
  uint8_t b[sizeof(tl_block_q5_1)] = {0};
  put_f16(b, offsetof(tl_block_q5_1, d), F16_ONE);
  put_f16(b, offsetof(tl_block_q5_1, m), F16_HALF);
  uint8_t *qh = b + offsetof(tl_block_q5_1, qh), *qs = b + offsetof(tl_block_q5_1, qs);
  qh[2] = 0x01;  /* bit 16: element 16 */
  qh[3] = 0x40;  /* bit 30: element 30 */
  qs[0] = 0x21;  /* element 0: 1 -> 1.5; element 16: 2 | 16 = 18 -> 18.5 */
  qs[14] = 0x0C; /* element 14: 12 -> 12.5; element 30: 0 | 16 -> 16.5 */
  float want[32];
  fill(want, 0, 32, 0.5f);
  want[0] = 1.5f;
  want[16] = 18.5f;
  want[14] = 12.5f;
  want[30] = 16.5f;
  check_block(TL_TYPE_Q5_1, b, want);
}

static void test_known_q2_k(void **state) {
  (void)state;
  uint8_t b[sizeof(tl_block_q2_k)] = {0};
  put_f16(b, offsetof(tl_block_q2_k, d), F16_ONE);
  put_f16(b, offsetof(tl_block_q2_k, dmin), F16_HALF);
  uint8_t *sc = b + offsetof(tl_block_q2_k, scales), *qs = b + offsetof(tl_block_q2_k, qs);
  sc[0] = 0x21; /* elements 0..15: scale 1, min 2 -> q - 1 */
  sc[1] = 0x03; /* elements 16..31: scale 3, min 0 -> 3 q */
  sc[5] = 0xF2; /* elements 80..95: scale 2, min 15 -> 2 q - 7.5 */
  sc[8] = 0x11; /* elements 128..143: scale 1, min 1 -> q - 0.5 */
  /* byte l of the first 32 holds elements l, l + 32, l + 64, l + 96 in bits
   * 0-1, 2-3, 4-5, 6-7; the second 32 bytes the same for 128..255 */
  qs[0] = 0xE4;  /* element 0: q 0; 32: q 1; 64: q 2; 96: q 3 (scales 0) */
  qs[3] = 0x03;  /* element 3: q 3 -> 2 */
  qs[16] = 0x23; /* element 16: q 3 -> 9; element 80: q 2 -> -3.5 */
  qs[32] = 0x01; /* element 128: q 1 -> 0.5 */
  qs[33] = 0x0C; /* element 161: q 3, scale 0 -> 0 */
  float want[256];
  fill(want, 0, 256, 0.0f);
  fill(want, 0, 16, -1.0f);
  want[3] = 2.0f;
  want[16] = 9.0f;
  fill(want, 80, 96, -7.5f);
  want[80] = -3.5f;
  fill(want, 128, 144, -0.5f);
  want[128] = 0.5f;
  check_block(TL_TYPE_Q2_K, b, want);
}

static void test_known_q3_k(void **state) {
  (void)state;
  uint8_t b[sizeof(tl_block_q3_k)] = {0};
  put_f16(b, offsetof(tl_block_q3_k, d), F16_HALF);
  uint8_t *hm = b + offsetof(tl_block_q3_k, hmask), *qs = b + offsetof(tl_block_q3_k, qs);
  uint8_t *sc = b + offsetof(tl_block_q3_k, scales);
  /* 6-bit scales, stored value - 32: low 4 bits in nibbles of bytes 0..7 (low
   * nibbles: scales 0..7, high: 8..15), high 2 bits of scale j in byte
   * 8 + j % 4 at bit 2 * (j / 4). Default every scale to 32 (effective 0). */
  for (int i = 8; i < 12; i++) sc[i] = 0xAA;
  sc[0] = 0x01;             /* scale 0: 1 | 2 << 4 = 33 -> 1 */
  sc[1] = 0xD0;             /* scale 9: low 13 */
  sc[9] = (uint8_t)(0x9A);  /* scale 9: high 1 (bits 4-5) -> 29 -> -3 */
  sc[7] = 0xF0;             /* scale 15: low 15 */
  sc[11] = (uint8_t)(0xEA); /* scale 15: high 3 (bits 6-7) -> 63 -> 31 */
  memset(hm, 0xFF, 32);     /* high bit set: no -4 */
  qs[0] = 0x03;             /* element 0: q 3 -> 0.5 * 1 * 3 */
  hm[1] = 0xFE;             /* element 1: q 0 - 4 -> -2 */
  qs[48] = 0x42;            /* element 144: q 2; element 240: low 1 */
  hm[16] = 0x7F;            /* element 240: bit 7 clear -> 1 - 4 = -3 */
  qs[49] = 0x01;            /* element 145: low 1 */
  hm[17] = 0xEF;            /* element 145: bit 4 clear -> 1 - 4 = -3 */
  float want[256];
  fill(want, 0, 256, 0.0f);
  want[0] = 1.5f;
  want[1] = -2.0f;
  want[144] = -3.0f;  /* 0.5 * -3 * 2 */
  want[145] = 4.5f;   /* 0.5 * -3 * -3 */
  want[240] = -46.5f; /* 0.5 * 31 * -3 */
  check_block(TL_TYPE_Q3_K, b, want);

  int8_t s[16];
  tl_q3_k_scales(sc, s);
  assert_int_equal(s[0], 1);
  assert_int_equal(s[9], -3);
  assert_int_equal(s[15], 31);
  assert_int_equal(s[4], 0);
  /* all-zero scale bytes decode to -32 everywhere */
  uint8_t z[12] = {0};
  tl_q3_k_scales(z, s);
  for (int j = 0; j < 16; j++) assert_int_equal(s[j], -32);
}

static void test_known_q4_k(void **state) {
  (void)state;
  uint8_t b[sizeof(tl_block_q4_k)] = {0};
  put_f16(b, offsetof(tl_block_q4_k, d), F16_HALF);
  put_f16(b, offsetof(tl_block_q4_k, dmin), F16_QUARTER);
  uint8_t *sc = b + offsetof(tl_block_q4_k, scales), *qs = b + offsetof(tl_block_q4_k, qs);
  sc[0] = 3;    /* sub-block 0 scale */
  sc[4] = 1;    /* sub-block 0 min */
  sc[1] = 0xBF; /* sub-block 1 scale 63 (& 63); top bits 2: high bits of sub-block 5's scale */
  sc[5] = 0x40; /* sub-block 1 min 0; top bits 1: high bits of sub-block 5's min */
  sc[9] = 0xA5; /* sub-block 5: scale low 5, min low 10 -> scale 37, min 26 */
  /* sub-block j: nibble j % 2 of qs[32 * (j / 2) + l] */
  qs[0] = 0x2F;  /* element 0: 15 -> 0.5*3*15 - 0.25 = 22.25; element 32: 2 -> 63 */
  qs[64] = 0x71; /* element 128: sub-block 4, all zero; element 160: 7 -> 129.5 - 6.5 */
  float want[256];
  fill(want, 0, 256, 0.0f);
  fill(want, 0, 32, -0.25f);
  want[0] = 22.25f;
  want[32] = 63.0f;
  fill(want, 160, 192, -6.5f);
  want[160] = 123.0f;
  check_block(TL_TYPE_Q4_K, b, want);

  uint8_t s, m;
  tl_k4_scale_min(5, sc, &s, &m);
  assert_int_equal(s, 37);
  assert_int_equal(m, 26);
  tl_k4_scale_min(1, sc, &s, &m);
  assert_int_equal(s, 63);
  assert_int_equal(m, 0);
}

static void test_known_q5_k(void **state) {
  (void)state;
  uint8_t b[sizeof(tl_block_q5_k)] = {0};
  put_f16(b, offsetof(tl_block_q5_k, d), F16_ONE);
  put_f16(b, offsetof(tl_block_q5_k, dmin), F16_ONE);
  uint8_t *sc = b + offsetof(tl_block_q5_k, scales), *qs = b + offsetof(tl_block_q5_k, qs);
  uint8_t *qh = b + offsetof(tl_block_q5_k, qh);
  sc[0] = 1;  /* sub-block 0: scale 1, min 0 */
  sc[3] = 2;  /* sub-block 3: scale 2 */
  sc[7] = 1;  /* sub-block 3: min 1 */
  sc[11] = 1; /* sub-block 7: scale 1, min 0 (low nibbles of byte 11) */
  /* 5th bit of sub-block j's element l: bit j of qh[l] */
  qs[0] = 0x05;
  qh[0] = 0x01; /* element 0: 5 | 16 = 21 */
  qh[1] = 0x02; /* element 33 (sub-block 1, scale 0): 0 */
  qh[2] = 0x08; /* element 98 (sub-block 3): 16 -> 2 * 16 - 1 = 31 */
  qs[35] = 0xF0;
  qh[3] = 0x09;  /* element 3: 16; element 99: 15 | 16 = 31 -> 61 */
  qh[31] = 0x80; /* element 255 (sub-block 7): 16 */
  float want[256];
  fill(want, 0, 256, 0.0f);
  want[0] = 21.0f;
  want[3] = 16.0f;
  fill(want, 96, 128, -1.0f);
  want[98] = 31.0f;
  want[99] = 61.0f;
  want[255] = 16.0f;
  check_block(TL_TYPE_Q5_K, b, want);
}

static void test_known_q6_k(void **state) {
  (void)state;
  uint8_t b[sizeof(tl_block_q6_k)] = {0};
  put_f16(b, offsetof(tl_block_q6_k, d), F16_HALF);
  uint8_t *ql = b + offsetof(tl_block_q6_k, ql), *qh = b + offsetof(tl_block_q6_k, qh);
  int8_t sc[16] = {0};
  sc[0] = 1;
  sc[5] = -2;
  sc[15] = 127;
  memcpy(b + offsetof(tl_block_q6_k, scales), sc, 16);
  /* element 128 h + 32 k + l: low nibble (k < 2) or high nibble (k >= 2) of
   * ql[64 h + 32 (k % 2) + l], high 2 bits at bit 2 k of qh[32 h + l] */
  ql[0] = 0x0F;
  qh[0] = 0x03;   /* element 0: 63 - 32 = 31 -> 0.5 * 1 * 31 */
  ql[16] = 0x50;  /* element 80 (k 2): low 5 */
  qh[16] = 0x20;  /* element 80: high 2 -> 37 - 32 = 5 -> 0.5 * -2 * 5 */
  ql[112] = 0xA0; /* element 240 (h 1, k 3, l 16): low 10 */
  qh[48] = 0x40;  /* element 240: high 1 -> 26 - 32 = -6 -> 0.5 * 127 * -6 */
  float want[256];
  fill(want, 0, 256, 0.0f);
  fill(want, 0, 16, -16.0f); /* q 0 -> -32 */
  want[0] = 15.5f;
  fill(want, 80, 96, 32.0f);
  want[80] = -5.0f;
  fill(want, 240, 256, -2032.0f);
  want[240] = -381.0f;
  check_block(TL_TYPE_Q6_K, b, want);
}

static void test_known_q8_k(void **state) {
  (void)state;
  uint8_t b[sizeof(tl_block_q8_k)] = {0};
  float d = 0.25f;
  memcpy(b + offsetof(tl_block_q8_k, d), &d, 4);
  int8_t *qs = (int8_t *)(b + offsetof(tl_block_q8_k, qs));
  for (int j = 0; j < 256; j++) qs[j] = (int8_t)(j - 128);
  float got[256];
  tl_type_get(TL_TYPE_Q8_K)->to_float(b, got, 256);
  for (int j = 0; j < 256; j++) assert_true(got[j] == 0.25f * (float)(j - 128));
}

static void test_table(void **state) {
  (void)state;
  const struct {
    uint32_t type;
    int64_t blck;
    size_t size;
  } want[] = {{TL_TYPE_Q4_0, 32, 18},     {TL_TYPE_Q4_1, 32, 20},    {TL_TYPE_Q5_0, 32, 22},
              {TL_TYPE_Q5_1, 32, 24},     {TL_TYPE_Q8_0, 32, 34},    {TL_TYPE_Q2_K, 256, 84},
              {TL_TYPE_Q3_K, 256, 110},   {TL_TYPE_Q4_K, 256, 144},  {TL_TYPE_Q5_K, 256, 176},
              {TL_TYPE_Q6_K, 256, 210},   {TL_TYPE_IQ4_NL, 32, 18},  {TL_TYPE_IQ4_XS, 256, 136},
              {TL_TYPE_IQ2_XXS, 256, 66}, {TL_TYPE_IQ2_XS, 256, 74}, {TL_TYPE_IQ2_S, 256, 82},
              {TL_TYPE_IQ3_XXS, 256, 98}, {TL_TYPE_IQ3_S, 256, 110}, {TL_TYPE_IQ1_S, 256, 50},
              {TL_TYPE_IQ1_M, 256, 56}};
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    const tl_type_info *ti = tl_type_get(want[i].type);
    assert_non_null(ti);
    assert_int_equal(ti->blck, want[i].blck);
    assert_int_equal(ti->type_size, want[i].size);
    assert_non_null(ti->to_float);
    assert_true(tl_cpu_supports_type(want[i].type));
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_table),           cmocka_unit_test(test_known_q4_0),
      cmocka_unit_test(test_known_q4_1),      cmocka_unit_test(test_known_q5_0),
      cmocka_unit_test(test_known_q5_1),      cmocka_unit_test(test_known_q2_k),
      cmocka_unit_test(test_known_q3_k),      cmocka_unit_test(test_known_q4_k),
      cmocka_unit_test(test_known_q5_k),      cmocka_unit_test(test_known_q6_k),
      cmocka_unit_test(test_known_q8_k),      cmocka_unit_test(test_random_vec_dot),
      cmocka_unit_test(test_fixture_dequant),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
