/* GGUF reader: files built by an in-test writer (every metadata type, nested
 * arrays, alignments, tensor infos), the llama fixture, hostile inputs
 * (truncation at every byte, huge counts and lengths, bad shapes, types and
 * offsets, duplicates), model-level validation on writer-made llama files
 * (plus a complete tiny model that loads and decodes), and the CLI on broken
 * paths. Everything runs under ASan/UBSan: hostile buffers are copied into
 * allocations of exactly their size so that any over-read is caught. */
#include "testutil.h"

#include <math.h>
#include <time.h>
#include <unistd.h>

#include "backend/cpu/cpu.h"
#include "format/gguf.h"
#include "quant/quant.h"

/* ---- a byte-buffer writer ------------------------------------------------- */

typedef struct buf {
  uint8_t *p;
  size_t n, cap;
} buf;

static void b_put(buf *b, const void *d, size_t n) {
  if (b->n + n > b->cap) {
    size_t c = b->cap ? b->cap : 256;
    while (c < b->n + n) c *= 2;
    b->p = realloc(b->p, c);
    assert_non_null(b->p);
    b->cap = c;
  }
  if (n) memcpy(b->p + b->n, d, n);
  b->n += n;
}

static void b_u8(buf *b, uint8_t v) {
  b_put(b, &v, 1);
}
static void b_u16(buf *b, uint16_t v) {
  b_put(b, &v, 2);
}
static void b_u32(buf *b, uint32_t v) {
  b_put(b, &v, 4);
}
static void b_u64(buf *b, uint64_t v) {
  b_put(b, &v, 8);
}
static void b_f32(buf *b, float v) {
  b_put(b, &v, 4);
}
static void b_f64(buf *b, double v) {
  b_put(b, &v, 8);
}
static void b_str(buf *b, const char *s) {
  b_u64(b, strlen(s));
  b_put(b, s, strlen(s));
}
static void b_zeros(buf *b, size_t n) {
  for (size_t i = 0; i < n; i++) b_u8(b, 0);
}
static void b_pad(buf *b, size_t align) {
  while (b->n % align) b_u8(b, 0);
}
/* The contents in an allocation of exactly their size (ASan sees over-reads). */
static uint8_t *b_take(buf *b, size_t *n) {
  uint8_t *p = malloc(b->n ? b->n : 1);
  assert_non_null(p);
  if (b->n) memcpy(p, b->p, b->n);
  *n = b->n;
  free(b->p);
  memset(b, 0, sizeof *b);
  return p;
}

static void b_header(buf *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
  b_put(b, "GGUF", 4);
  b_u32(b, version);
  b_u64(b, n_tensors);
  b_u64(b, n_kv);
}
static void b_key(buf *b, const char *key, uint32_t type) {
  b_str(b, key);
  b_u32(b, type);
}
static void b_arr(buf *b, uint32_t elem_type, uint64_t n) {
  b_u32(b, elem_type);
  b_u64(b, n);
}

/* ---- a GGUF file builder: metadata, tensors, layout ----------------------- */

#define MAX_T 64

typedef struct gtensor {
  char name[128];
  uint32_t n_dims, type;
  uint64_t ne[4];
  uint8_t *data;
  size_t nbytes;
  uint64_t offset; /* filled by gf_build */
} gtensor;

typedef struct gfile {
  uint32_t version;
  uint64_t align; /* layout alignment; general.alignment is written by gf_align */
  buf kv;
  uint64_t n_kv;
  gtensor t[MAX_T];
  int n_t;
  size_t info_end, data_off; /* filled by gf_build */
} gfile;

static void gf_init(gfile *f, uint32_t version) {
  memset(f, 0, sizeof *f);
  f->version = version;
  f->align = 32;
}
static void gf_free(gfile *f) {
  free(f->kv.p);
  for (int i = 0; i < f->n_t; i++) free(f->t[i].data);
  memset(f, 0, sizeof *f);
}
static buf *gf_key(gfile *f, const char *key, uint32_t type) {
  b_key(&f->kv, key, type);
  f->n_kv++;
  return &f->kv;
}
static void gf_u8(gfile *f, const char *k, uint8_t v) {
  b_u8(gf_key(f, k, TL_GGUF_U8), v);
}
static void gf_i8(gfile *f, const char *k, int8_t v) {
  b_u8(gf_key(f, k, TL_GGUF_I8), (uint8_t)v);
}
static void gf_u16(gfile *f, const char *k, uint16_t v) {
  b_u16(gf_key(f, k, TL_GGUF_U16), v);
}
static void gf_i16(gfile *f, const char *k, int16_t v) {
  b_u16(gf_key(f, k, TL_GGUF_I16), (uint16_t)v);
}
static void gf_u32(gfile *f, const char *k, uint32_t v) {
  b_u32(gf_key(f, k, TL_GGUF_U32), v);
}
static void gf_i32(gfile *f, const char *k, int32_t v) {
  b_u32(gf_key(f, k, TL_GGUF_I32), (uint32_t)v);
}
static void gf_f32(gfile *f, const char *k, float v) {
  b_f32(gf_key(f, k, TL_GGUF_F32), v);
}
static void gf_bool(gfile *f, const char *k, bool v) {
  b_u8(gf_key(f, k, TL_GGUF_BOOL), v);
}
static void gf_str(gfile *f, const char *k, const char *v) {
  b_str(gf_key(f, k, TL_GGUF_STRING), v);
}
static void gf_u64(gfile *f, const char *k, uint64_t v) {
  b_u64(gf_key(f, k, TL_GGUF_U64), v);
}
static void gf_i64(gfile *f, const char *k, int64_t v) {
  b_u64(gf_key(f, k, TL_GGUF_I64), (uint64_t)v);
}
static void gf_f64(gfile *f, const char *k, double v) {
  b_f64(gf_key(f, k, TL_GGUF_F64), v);
}
static void gf_align(gfile *f, uint32_t a) {
  gf_u32(f, "general.alignment", a);
  f->align = a;
}

static uint64_t tensor_bytes(uint32_t type, uint32_t n_dims, const uint64_t *ne) {
  uint64_t row;
  assert_true(tl_type_row_size(type, (int64_t)ne[0], &row));
  for (uint32_t d = 1; d < n_dims; d++) row *= ne[d];
  return row;
}

/* Adds a tensor; data NULL: a deterministic byte pattern. */
static gtensor *gf_tensor(gfile *f, const char *name, uint32_t type, uint32_t n_dims,
                          const uint64_t *ne, const void *data) {
  assert_true(f->n_t < MAX_T);
  gtensor *t = &f->t[f->n_t++];
  memset(t, 0, sizeof *t);
  snprintf(t->name, sizeof t->name, "%s", name);
  t->type = type;
  t->n_dims = n_dims;
  for (int d = 0; d < 4; d++) t->ne[d] = d < (int)n_dims ? ne[d] : 1;
  t->nbytes = (size_t)tensor_bytes(type, n_dims, ne);
  t->data = malloc(t->nbytes ? t->nbytes : 1);
  assert_non_null(t->data);
  for (size_t i = 0; i < t->nbytes; i++)
    t->data[i] = data ? ((const uint8_t *)data)[i] : (uint8_t)(i * 7 + (size_t)f->n_t);
  return t;
}

static uint64_t align_up(uint64_t x, uint64_t a) {
  return (x + a - 1) / a * a;
}

/* Serialises the file into an allocation of exactly its size. */
static uint8_t *gf_build(gfile *f, size_t *size) {
  buf b = {0};
  b_header(&b, f->version, (uint64_t)f->n_t, f->n_kv);
  b_put(&b, f->kv.p, f->kv.n);
  uint64_t off = 0;
  for (int i = 0; i < f->n_t; i++) {
    gtensor *t = &f->t[i];
    off = align_up(off, f->align);
    t->offset = off;
    off += t->nbytes;
    b_str(&b, t->name);
    b_u32(&b, t->n_dims);
    for (uint32_t d = 0; d < t->n_dims; d++) b_u64(&b, t->ne[d]);
    b_u32(&b, t->type);
    b_u64(&b, t->offset);
  }
  f->info_end = b.n;
  if (f->n_t) b_pad(&b, f->align);
  f->data_off = b.n;
  for (int i = 0; i < f->n_t; i++) {
    while (b.n - f->data_off < f->t[i].offset) b_u8(&b, 0);
    b_put(&b, f->t[i].data, f->t[i].nbytes);
  }
  return b_take(&b, size);
}

/* ---- parse helpers -------------------------------------------------------- */

/* Parses a copy of data[0..n) that must be rejected with a non-empty message
 * containing sub (when sub is not NULL). */
#define EXPECT_FAIL(data, n, sub) expect_fail_at((data), (n), (sub), __LINE__)
static tl_status expect_fail_at(const uint8_t *data, size_t n, const char *sub, int line) {
  uint8_t *copy = malloc(n ? n : 1);
  assert_non_null(copy);
  if (n) memcpy(copy, data, n);
  tl_clear_error();
  tl_gguf *g = (tl_gguf *)(uintptr_t)1;
  tl_status s = tl_gguf_parse(copy, n, &g);
  if (s == TL_OK) {
    tl_gguf_free(g);
    free(copy);
    fail_msg("line %d: a buffer of %zu bytes parsed; expected an error ('%s')", line, n,
             sub ? sub : "");
  }
  const char *msg = tl_last_error();
  if (g != NULL) fail_msg("line %d: *out is not NULL after a failure", line);
  if (!msg[0]) fail_msg("line %d: failure (%s) without a message", line, tl_status_name(s));
  if (sub && !strstr(msg, sub))
    fail_msg("line %d: message '%s' does not contain '%s'", line, msg, sub);
  free(copy);
  return s;
}

/* Parses data (borrowed) that must be valid. */
#define PARSE_OK(data, n) parse_ok_at((data), (n), __LINE__)
static tl_gguf *parse_ok_at(const uint8_t *data, size_t n, int line) {
  tl_gguf *g = NULL;
  tl_status s = tl_gguf_parse(data, n, &g);
  if (s != TL_OK) fail_msg("line %d: parse failed: %s", line, tl_last_error());
  assert_non_null(g);
  return g;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static bool str_is(tl_str s, const char *c) {
  return tl_str_eq(s, c);
}

/* ---- 1. round trip of every metadata type ----------------------------------- */

static const float k_a[6] = {0.0f, 1.0f, -2.5f, 3.25f, 1e-3f, -7.0f};

/* align 0: leave general.alignment out (default 32). */
static uint8_t *build_all_types(gfile *f, uint32_t version, uint32_t align, size_t *n) {
  gf_init(f, version);
  gf_u8(f, "t.u8", 200);
  gf_i8(f, "t.i8", -100);
  gf_i8(f, "t.i8p", 100);
  gf_u16(f, "t.u16", 60000);
  gf_i16(f, "t.i16", -30000);
  gf_u32(f, "t.u32", 4000000000u);
  gf_i32(f, "t.i32", -2000000000);
  gf_i32(f, "t.i32p", 123456);
  gf_f32(f, "t.f32", 1.5f);
  gf_bool(f, "t.bool", true);
  gf_bool(f, "t.bool0", false);
  gf_str(f, "t.str", "hello, gguf");
  gf_str(f, "t.empty", "");
  gf_u64(f, "t.u64", (1ull << 40) + 5);
  gf_u64(f, "t.u64s", 77);
  gf_i64(f, "t.i64", -(1ll << 40));
  gf_i64(f, "t.i64max32", (int64_t)UINT32_MAX);
  gf_i64(f, "t.i64over", (int64_t)UINT32_MAX + 1);
  gf_f64(f, "t.f64", 3.25);
  if (align) gf_align(f, align);
  buf *b = gf_key(f, "t.arr_u32", TL_GGUF_ARRAY);
  b_arr(b, TL_GGUF_U32, 3);
  b_u32(b, 1);
  b_u32(b, 2);
  b_u32(b, 0xffffffffu);
  b = gf_key(f, "t.arr_i16", TL_GGUF_ARRAY);
  b_arr(b, TL_GGUF_I16, 2);
  b_u16(b, (uint16_t)-1);
  b_u16(b, 2);
  b = gf_key(f, "t.arr_f32", TL_GGUF_ARRAY);
  b_arr(b, TL_GGUF_F32, 2);
  b_f32(b, 0.5f);
  b_f32(b, -2.0f);
  b = gf_key(f, "t.arr_f64", TL_GGUF_ARRAY);
  b_arr(b, TL_GGUF_F64, 1);
  b_f64(b, 1e300);
  b = gf_key(f, "t.arr_i64", TL_GGUF_ARRAY);
  b_arr(b, TL_GGUF_I64, 1);
  b_u64(b, (uint64_t)INT64_MIN);
  b = gf_key(f, "t.arr_bool", TL_GGUF_ARRAY);
  b_arr(b, TL_GGUF_BOOL, 2);
  b_u8(b, 1);
  b_u8(b, 0);
  b = gf_key(f, "t.arr_empty", TL_GGUF_ARRAY);
  b_arr(b, TL_GGUF_U8, 0);
  b = gf_key(f, "t.arr_str", TL_GGUF_ARRAY);
  b_arr(b, TL_GGUF_STRING, 3);
  b_str(b, "a");
  b_str(b, "");
  b_str(b, "ccc");
  /* [[1, 2] (u32), ["x"] (string), [[-5] (i8)] (array of arrays), [] (array)] */
  b = gf_key(f, "t.arr_arr", TL_GGUF_ARRAY);
  b_arr(b, TL_GGUF_ARRAY, 4);
  b_arr(b, TL_GGUF_U32, 2);
  b_u32(b, 1);
  b_u32(b, 2);
  b_arr(b, TL_GGUF_STRING, 1);
  b_str(b, "x");
  b_arr(b, TL_GGUF_ARRAY, 1);
  b_arr(b, TL_GGUF_I8, 1);
  b_u8(b, (uint8_t)-5);
  b_arr(b, TL_GGUF_ARRAY, 0);
  gf_str(f, "t.last", "end");

  gf_tensor(f, "a", TL_TYPE_F32, 2, (uint64_t[]){3, 2}, k_a);
  gf_tensor(f, "blk.0.b", TL_TYPE_Q8_0, 1, (uint64_t[]){64}, NULL);
  gf_tensor(f, "c", TL_TYPE_F16, 4, (uint64_t[]){5, 1, 1, 2}, NULL);
  gf_tensor(f, "d.odd", TL_TYPE_I8, 1, (uint64_t[]){7}, NULL);
  gf_tensor(f, "e", TL_TYPE_F32, 3, (uint64_t[]){1, 3, 1}, NULL);
  return gf_build(f, n);
}

static void check_all_types(const gfile *f, const uint8_t *data, size_t n, const tl_gguf *g,
                            uint32_t version, uint32_t align) {
  uint64_t al = align ? align : 32;
  assert_int_equal(g->version, version);
  assert_int_equal(g->n_kv, f->n_kv);
  assert_int_equal(g->n_tensors, 5);
  assert_int_equal(g->alignment, al);
  assert_int_equal(g->data_offset, f->data_off);
  assert_int_equal(g->data_offset % al, 0);
  assert_true(g->data_offset >= f->info_end && g->data_offset < f->info_end + al);

  /* raw values */
  const tl_gguf_value *v = tl_gguf_get(g, "t.u8");
  assert_non_null(v);
  assert_int_equal(v->type, TL_GGUF_U8);
  assert_int_equal(v->v.u64, 200);
  v = tl_gguf_get(g, "t.i8");
  assert_int_equal(v->type, TL_GGUF_I8);
  assert_int_equal(v->v.i64, -100);
  assert_int_equal(tl_gguf_get(g, "t.u16")->v.u64, 60000);
  assert_int_equal(tl_gguf_get(g, "t.i16")->type, TL_GGUF_I16);
  assert_int_equal(tl_gguf_get(g, "t.i16")->v.i64, -30000);
  assert_int_equal(tl_gguf_get(g, "t.u32")->v.u64, 4000000000u);
  assert_int_equal(tl_gguf_get(g, "t.i32")->v.i64, -2000000000);
  assert_true(tl_gguf_get(g, "t.f32")->v.f64 == 1.5);
  assert_int_equal(tl_gguf_get(g, "t.bool")->type, TL_GGUF_BOOL);
  assert_int_equal(tl_gguf_get(g, "t.u64")->type, TL_GGUF_U64);
  assert_int_equal(tl_gguf_get(g, "t.u64")->v.u64, (1ull << 40) + 5);
  assert_int_equal(tl_gguf_get(g, "t.i64")->type, TL_GGUF_I64);
  assert_true(tl_gguf_get(g, "t.i64")->v.i64 == -(1ll << 40));
  assert_int_equal(tl_gguf_get(g, "t.f64")->type, TL_GGUF_F64);
  assert_true(tl_gguf_get(g, "t.f64")->v.f64 == 3.25);
  assert_null(tl_gguf_get(g, "t.missing"));
  assert_null(tl_gguf_get(g, "t.u"));   /* a prefix of a key */
  assert_null(tl_gguf_get(g, "t.u8x")); /* a key plus a suffix */

  /* tl_gguf_get_u32: unsigned and non-negative signed integers that fit */
  uint32_t u = 12345;
  assert_true(tl_gguf_get_u32(g, "t.u8", &u) && u == 200);
  assert_true(tl_gguf_get_u32(g, "t.i8p", &u) && u == 100);
  assert_true(tl_gguf_get_u32(g, "t.u16", &u) && u == 60000);
  assert_true(tl_gguf_get_u32(g, "t.u32", &u) && u == 4000000000u);
  assert_true(tl_gguf_get_u32(g, "t.i32p", &u) && u == 123456);
  assert_true(tl_gguf_get_u32(g, "t.u64s", &u) && u == 77);
  assert_true(tl_gguf_get_u32(g, "t.i64max32", &u) && u == UINT32_MAX);
  u = 12345;
  assert_false(tl_gguf_get_u32(g, "t.i8", &u));      /* negative */
  assert_false(tl_gguf_get_u32(g, "t.i16", &u));     /* negative */
  assert_false(tl_gguf_get_u32(g, "t.i32", &u));     /* negative */
  assert_false(tl_gguf_get_u32(g, "t.i64", &u));     /* negative */
  assert_false(tl_gguf_get_u32(g, "t.u64", &u));     /* > UINT32_MAX */
  assert_false(tl_gguf_get_u32(g, "t.i64over", &u)); /* > UINT32_MAX */
  assert_false(tl_gguf_get_u32(g, "t.f32", &u));     /* not an integer type */
  assert_false(tl_gguf_get_u32(g, "t.f64", &u));
  assert_false(tl_gguf_get_u32(g, "t.bool", &u));
  assert_false(tl_gguf_get_u32(g, "t.str", &u));
  assert_false(tl_gguf_get_u32(g, "t.arr_u32", &u));
  assert_false(tl_gguf_get_u32(g, "t.missing", &u));
  assert_int_equal(u, 12345); /* untouched on failure */

  float fl = 0;
  assert_true(tl_gguf_get_f32(g, "t.f32", &fl) && fl == 1.5f);
  assert_true(tl_gguf_get_f32(g, "t.f64", &fl) && fl == 3.25f);
  assert_true(tl_gguf_get_f32(g, "t.i16", &fl) && fl == -30000.0f);
  assert_true(tl_gguf_get_f32(g, "t.u8", &fl) && fl == 200.0f);
  assert_false(tl_gguf_get_f32(g, "t.bool", &fl));
  assert_false(tl_gguf_get_f32(g, "t.str", &fl));
  assert_false(tl_gguf_get_f32(g, "t.arr_f32", &fl));
  assert_false(tl_gguf_get_f32(g, "t.missing", &fl));

  bool bo = false;
  assert_true(tl_gguf_get_bool(g, "t.bool", &bo) && bo);
  assert_true(tl_gguf_get_bool(g, "t.bool0", &bo) && !bo);
  assert_false(tl_gguf_get_bool(g, "t.u8", &bo));
  assert_false(tl_gguf_get_bool(g, "t.str", &bo));
  assert_false(tl_gguf_get_bool(g, "t.missing", &bo));

  tl_str s = {0};
  assert_true(tl_gguf_get_str(g, "t.str", &s) && str_is(s, "hello, gguf"));
  assert_true((const uint8_t *)s.ptr > data && (const uint8_t *)s.ptr + s.len <= data + n);
  assert_true(tl_gguf_get_str(g, "t.empty", &s) && s.len == 0);
  assert_true(tl_gguf_get_str(g, "t.last", &s) && str_is(s, "end"));
  assert_false(tl_gguf_get_str(g, "t.u8", &s));
  assert_false(tl_gguf_get_str(g, "t.arr_str", &s));
  assert_false(tl_gguf_get_str(g, "t.missing", &s));

  /* arrays */
  const tl_gguf_value *a = tl_gguf_get_arr(g, "t.arr_u32", TL_GGUF_U32);
  assert_non_null(a);
  assert_int_equal(a->v.arr.n, 3);
  assert_int_equal(tl_gguf_arr_i64(a, 0), 1);
  assert_int_equal(tl_gguf_arr_i64(a, 2), 0xffffffffu);
  assert_true(tl_gguf_arr_f64(a, 1) == 2.0);
  assert_int_equal(tl_gguf_arr_i64(a, 3), 0); /* out of range */
  assert_true(tl_gguf_arr_f64(a, UINT64_MAX) == 0.0);
  assert_null(tl_gguf_get_arr(g, "t.arr_u32", TL_GGUF_I32)); /* wrong element type */
  assert_null(tl_gguf_get_arr(g, "t.u32", TL_GGUF_U32));     /* not an array */
  assert_null(tl_gguf_get_arr(g, "t.missing", TL_GGUF_U32));
  a = tl_gguf_get_arr(g, "t.arr_i16", TL_GGUF_I16);
  assert_non_null(a);
  assert_int_equal(tl_gguf_arr_i64(a, 0), -1);
  assert_true(tl_gguf_arr_f64(a, 0) == -1.0);
  a = tl_gguf_get_arr(g, "t.arr_f32", TL_GGUF_F32);
  assert_non_null(a);
  assert_true(tl_gguf_arr_f64(a, 0) == 0.5 && tl_gguf_arr_f64(a, 1) == -2.0);
  assert_int_equal(tl_gguf_arr_i64(a, 1), -2);
  a = tl_gguf_get_arr(g, "t.arr_f64", TL_GGUF_F64);
  assert_non_null(a);
  assert_true(tl_gguf_arr_f64(a, 0) == 1e300);
  a = tl_gguf_get_arr(g, "t.arr_i64", TL_GGUF_I64);
  assert_non_null(a);
  assert_true(tl_gguf_arr_i64(a, 0) == INT64_MIN);
  a = tl_gguf_get_arr(g, "t.arr_bool", TL_GGUF_BOOL);
  assert_non_null(a);
  assert_int_equal(tl_gguf_arr_i64(a, 0), 1);
  assert_int_equal(tl_gguf_arr_i64(a, 1), 0);
  a = tl_gguf_get_arr(g, "t.arr_empty", TL_GGUF_U8);
  assert_non_null(a);
  assert_int_equal(a->v.arr.n, 0);
  assert_int_equal(tl_gguf_arr_i64(a, 0), 0);
  a = tl_gguf_get_arr(g, "t.arr_str", TL_GGUF_STRING);
  assert_non_null(a);
  assert_int_equal(a->v.arr.n, 3);
  assert_non_null(a->v.arr.strs);
  assert_true(str_is(a->v.arr.strs[0], "a"));
  assert_int_equal(a->v.arr.strs[1].len, 0);
  assert_true(str_is(a->v.arr.strs[2], "ccc"));
  assert_true(tl_gguf_arr_f64(a, 0) == 0.0); /* not numeric */
  a = tl_gguf_get_arr(g, "t.arr_arr", TL_GGUF_ARRAY);
  assert_non_null(a);
  assert_int_equal(a->v.arr.n, 4);
  const tl_gguf_value *e = a->v.arr.elems;
  assert_non_null(e);
  assert_int_equal(e[0].type, TL_GGUF_ARRAY);
  assert_int_equal(e[0].v.arr.elem_type, TL_GGUF_U32);
  assert_int_equal(e[0].v.arr.n, 2);
  assert_int_equal(tl_gguf_arr_i64(&e[0], 1), 2);
  assert_int_equal(e[1].v.arr.elem_type, TL_GGUF_STRING);
  assert_int_equal(e[1].v.arr.n, 1);
  assert_true(str_is(e[1].v.arr.strs[0], "x"));
  assert_int_equal(e[2].v.arr.elem_type, TL_GGUF_ARRAY);
  assert_int_equal(e[2].v.arr.n, 1);
  assert_int_equal(e[2].v.arr.elems[0].v.arr.elem_type, TL_GGUF_I8);
  assert_int_equal(tl_gguf_arr_i64(&e[2].v.arr.elems[0], 0), -5);
  assert_int_equal(e[3].v.arr.elem_type, TL_GGUF_ARRAY);
  assert_int_equal(e[3].v.arr.n, 0);

  /* tensors: names, dims, types, offsets, data inside the buffer */
  for (int i = 0; i < f->n_t; i++) {
    const gtensor *w = &f->t[i];
    const tl_gguf_tensor *t = tl_gguf_find_tensor(g, w->name);
    assert_non_null(t);
    assert_ptr_equal(t, &g->tensors[i]); /* file order kept */
    assert_true(str_is(t->name, w->name));
    assert_int_equal(t->n_dims, w->n_dims);
    for (int d = 0; d < 4; d++) assert_int_equal(t->ne[d], w->ne[d]);
    assert_int_equal(t->type, w->type);
    assert_int_equal(t->offset, w->offset);
    assert_int_equal(t->offset % al, 0);
    assert_int_equal(t->nbytes, w->nbytes);
    assert_ptr_equal(t->data, data + g->data_offset + t->offset);
    assert_true((const uint8_t *)t->data + t->nbytes <= data + n);
    assert_memory_equal(t->data, w->data, w->nbytes);
  }
  assert_null(tl_gguf_find_tensor(g, "blk.0"));
  assert_null(tl_gguf_find_tensor(g, "aa"));
  const tl_gguf_tensor *ta = tl_gguf_find_tensor(g, "a");
  float x;
  memcpy(&x, (const uint8_t *)ta->data + 3 * 4, 4);
  assert_true(x == 3.25f);
}

static void test_roundtrip_all_types(void **state) {
  (void)state;
  static const uint32_t aligns[] = {0, 32, 64, 256, 1, 8};
  for (uint32_t version = 2; version <= 3; version++) {
    for (size_t k = 0; k < sizeof aligns / sizeof aligns[0]; k++) {
      gfile f;
      size_t n;
      uint8_t *data = build_all_types(&f, version, aligns[k], &n);
      tl_gguf *g = PARSE_OK(data, n);
      check_all_types(&f, data, n, g, version, aligns[k]);
      tl_gguf_free(g);

      /* the same through a file */
      char *path = tl_test_tmpfile(".gguf");
      assert_int_equal(tl_test_write_file(path, data, n), 0);
      g = NULL;
      assert_int_equal(tl_gguf_open(path, &g), TL_OK);
      assert_int_equal(g->n_kv, f.n_kv);
      assert_int_equal(g->data_offset, f.data_off);
      const tl_gguf_tensor *t = tl_gguf_find_tensor(g, "c");
      assert_non_null(t);
      assert_memory_equal(t->data, f.t[2].data, f.t[2].nbytes);
      tl_gguf_free(g);
      unlink(path);
      free(path);
      free(data);
      gf_free(&f);
    }
  }
}

/* A file without tensors may end right after its metadata; an empty one too. */
static void test_no_tensors(void **state) {
  (void)state;
  buf b = {0};
  b_header(&b, 3, 0, 1);
  b_key(&b, "general.architecture", TL_GGUF_STRING);
  b_str(&b, "llama");
  size_t n;
  uint8_t *d = b_take(&b, &n);
  tl_gguf *g = PARSE_OK(d, n);
  assert_int_equal(g->n_tensors, 0);
  assert_int_equal(g->n_kv, 1);
  tl_str s;
  assert_true(tl_gguf_get_str(g, "general.architecture", &s) && str_is(s, "llama"));
  assert_null(tl_gguf_find_tensor(g, "x"));
  tl_gguf_free(g);
  free(d);

  b_header(&b, 2, 0, 0);
  d = b_take(&b, &n);
  g = PARSE_OK(d, n);
  assert_int_equal(g->n_kv, 0);
  assert_null(tl_gguf_get(g, "general.alignment"));
  assert_int_equal(g->alignment, 32);
  tl_gguf_free(g);
  free(d);

  tl_gguf_free(NULL); /* no-op */
}

/* ---- 2. the llama fixture ------------------------------------------------- */

static void test_fixture(void **state) {
  (void)state;
  char *path = tl_test_fixture_or_skip("llama/model-q8_0.gguf");
  if (!path) skip();
  tl_gguf *g = NULL;
  assert_int_equal(tl_gguf_open(path, &g), TL_OK);
  assert_true(g->version == 2 || g->version == 3);
  tl_str arch;
  assert_true(tl_gguf_get_str(g, "general.architecture", &arch));
  assert_true(str_is(arch, "llama"));
  uint32_t u;
  assert_true(tl_gguf_get_u32(g, "llama.block_count", &u));
  assert_int_equal(u, 2);
  assert_true(tl_gguf_get_u32(g, "llama.embedding_length", &u));
  assert_int_equal(u, 256);
  const tl_gguf_tensor *t = tl_gguf_find_tensor(g, "token_embd.weight");
  assert_non_null(t);
  assert_int_equal(t->n_dims, 2);
  assert_int_equal(t->ne[0], 256);
  assert_int_equal(t->ne[1], 512);
  assert_int_equal(t->ne[2], 1);
  assert_int_equal(t->type, TL_TYPE_Q8_0);
  assert_int_equal(t->nbytes, 512 * (256 / 32) * 34);
  const tl_gguf_value *toks = tl_gguf_get_arr(g, "tokenizer.ggml.tokens", TL_GGUF_STRING);
  assert_non_null(toks);
  assert_int_equal(toks->v.arr.n, 512);
  assert_non_null(tl_gguf_find_tensor(g, "blk.1.ffn_down.weight"));
  assert_null(tl_gguf_find_tensor(g, "blk.2.ffn_down.weight"));
  for (uint64_t i = 0; i < g->n_tensors; i++) {
    const tl_gguf_tensor *ti = &g->tensors[i];
    assert_int_equal(ti->offset % g->alignment, 0);
    assert_true((const uint8_t *)ti->data >= g->map.data + g->data_offset);
    assert_true((const uint8_t *)ti->data + ti->nbytes <= g->map.data + g->map.size);
  }
  /* the same bytes through tl_gguf_parse */
  size_t n;
  char *bytes = tl_test_read_file(path, &n);
  assert_non_null(bytes);
  tl_gguf *g2 = PARSE_OK((const uint8_t *)bytes, n);
  assert_int_equal(g2->n_kv, g->n_kv);
  assert_int_equal(g2->n_tensors, g->n_tensors);
  assert_int_equal(g2->data_offset, g->data_offset);
  tl_gguf_free(g2);
  free(bytes);
  tl_gguf_free(g);
  free(path);
}

/* ---- 3. hostile inputs ---------------------------------------------------- */

/* Truncation at every byte up to the data section, then inside it: all fail,
 * and the first size holding every tensor parses. */
static void truncate_everywhere(const uint8_t *data, size_t n, const char *label) {
  tl_gguf *g = PARSE_OK(data, n);
  uint64_t data_off = g->data_offset, end = 0;
  for (uint64_t i = 0; i < g->n_tensors; i++) {
    uint64_t e = g->tensors[i].offset + g->tensors[i].nbytes;
    if (e > end) end = e;
  }
  tl_gguf_free(g);
  assert_true(end > 0 && data_off + end <= n);
  double t0 = now_s();
  for (size_t k = 0; k <= data_off; k++) EXPECT_FAIL(data, k, NULL);
  const uint64_t inside[] = {1, 2, 31, 32, 33, end / 3, end / 2, end - 32, end - 1};
  for (size_t i = 0; i < sizeof inside / sizeof inside[0]; i++)
    if (inside[i] > 0 && inside[i] < end) EXPECT_FAIL(data, data_off + inside[i], "past the end");
  double dt = now_s() - t0;
  print_message("%s: %llu truncations in %.2f s\n", label, (unsigned long long)data_off + 1, dt);
  assert_true(dt < 60.0);
  g = PARSE_OK(data, (size_t)(data_off + end)); /* exactly the last tensor's end */
  tl_gguf_free(g);
}

static void test_truncation_fixture(void **state) {
  (void)state;
  char *path = tl_test_fixture_or_skip("llama/model-q8_0.gguf");
  if (!path) skip();
  size_t n;
  char *data = tl_test_read_file(path, &n);
  assert_non_null(data);
  truncate_everywhere((const uint8_t *)data, n, "llama q8_0 fixture");
  free(data);
  free(path);
}

static void test_truncation_writer(void **state) {
  (void)state;
  for (uint32_t version = 2; version <= 3; version++) {
    gfile f;
    size_t n;
    uint8_t *data = build_all_types(&f, version, 64, &n);
    truncate_everywhere(data, n, version == 2 ? "writer v2" : "writer v3");
    free(data);
    gf_free(&f);
  }
}

static void test_bad_header(void **state) {
  (void)state;
  buf b = {0};
  size_t n;
  uint8_t *d;
  EXPECT_FAIL((const uint8_t *)"", 0, NULL);
  EXPECT_FAIL((const uint8_t *)"GGU", 3, NULL);

  b_put(&b, "GGUX", 4);
  b_u32(&b, 3);
  b_u64(&b, 0);
  b_u64(&b, 0);
  d = b_take(&b, &n);
  EXPECT_FAIL(d, n, "magic");
  d[3] = 'F';
  tl_gguf *g = PARSE_OK(d, n); /* control: the same header with the right magic */
  tl_gguf_free(g);
  free(d);
  b_put(&b, "FUGG", 4); /* byte-swapped */
  b_u32(&b, 3);
  b_u64(&b, 0);
  b_u64(&b, 0);
  d = b_take(&b, &n);
  EXPECT_FAIL(d, n, "magic");
  free(d);

  const uint32_t versions[] = {0, 1, 4, 5, 0x03000000u, 0xffffffffu};
  for (size_t i = 0; i < sizeof versions / sizeof versions[0]; i++) {
    b_header(&b, versions[i], 0, 0);
    d = b_take(&b, &n);
    EXPECT_FAIL(d, n, "version");
    free(d);
  }

  const uint64_t counts[] = {1ull << 63, UINT64_MAX, 1ull << 32, 1ull << 21, 2};
  for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
    b_header(&b, 3, counts[i], 0); /* tensors */
    b_zeros(&b, 16);
    d = b_take(&b, &n);
    EXPECT_FAIL(d, n, NULL);
    free(d);
    b_header(&b, 3, 0, counts[i]); /* metadata */
    b_zeros(&b, 16);
    d = b_take(&b, &n);
    EXPECT_FAIL(d, n, NULL);
    free(d);
  }
  b_header(&b, 3, 1ull << 63, 0);
  d = b_take(&b, &n);
  EXPECT_FAIL(d, n, "tensor count");
  free(d);
  b_header(&b, 3, 0, UINT64_MAX);
  d = b_take(&b, &n);
  EXPECT_FAIL(d, n, "metadata count");
  free(d);
}

/* A v3 file with no tensors and one metadata pair: key, type id, raw value. */
static uint8_t *one_kv(const char *key, uint32_t type, const buf *value, size_t *n) {
  buf b = {0};
  b_header(&b, 3, 0, 1);
  b_key(&b, key, type);
  b_put(&b, value->p, value->n);
  return b_take(&b, n);
}

static void expect_kv_fail(const buf *value, uint32_t type, const char *sub, int line) {
  size_t n;
  uint8_t *d = one_kv("k", type, value, &n);
  expect_fail_at(d, n, sub, line);
  free(d);
}
#define EXPECT_KV_FAIL(v, type, sub) expect_kv_fail((v), (type), (sub), __LINE__)

static void expect_kv_ok(const buf *value, uint32_t type, int line) {
  size_t n;
  uint8_t *d = one_kv("k", type, value, &n);
  tl_gguf *g = parse_ok_at(d, n, line);
  assert_non_null(tl_gguf_get(g, "k"));
  tl_gguf_free(g);
  free(d);
}

/* k arrays nested in one another; the innermost holds one u8. */
static void nested(buf *b, int k) {
  for (int i = 0; i < k - 1; i++) b_arr(b, TL_GGUF_ARRAY, 1);
  b_arr(b, TL_GGUF_U8, 1);
  b_u8(b, 7);
}

static void test_bad_metadata(void **state) {
  (void)state;
  buf v = {0};

  /* strings: a length of 2^63, 2^64-1, one past the end of the file */
  b_str(&v, "abc");
  expect_kv_ok(&v, TL_GGUF_STRING, __LINE__);
  v.n = 0;
  b_u64(&v, 1ull << 63);
  b_put(&v, "abc", 3);
  EXPECT_KV_FAIL(&v, TL_GGUF_STRING, "truncated");
  v.n = 0;
  b_u64(&v, UINT64_MAX);
  b_put(&v, "abc", 3);
  EXPECT_KV_FAIL(&v, TL_GGUF_STRING, "truncated");
  v.n = 0;
  b_u64(&v, 4);
  b_put(&v, "abc", 3);
  EXPECT_KV_FAIL(&v, TL_GGUF_STRING, "truncated");

  /* keys: the same lengths */
  const uint64_t key_lens[] = {1ull << 63, UINT64_MAX, 9};
  for (size_t i = 0; i < sizeof key_lens / sizeof key_lens[0]; i++) {
    buf b = {0};
    size_t n;
    b_header(&b, 3, 0, 1);
    b_u64(&b, key_lens[i]);
    b_put(&b, "key", 3);
    b_u32(&b, TL_GGUF_U8);
    b_u8(&b, 1);
    uint8_t *d = b_take(&b, &n);
    EXPECT_FAIL(d, n, "truncated");
    free(d);
  }

  /* value type ids */
  v.n = 0;
  b_u32(&v, 1);
  expect_kv_ok(&v, TL_GGUF_U32, __LINE__);
  const uint32_t bad_types[] = {TL_GGUF_NTYPES, 14, 255, 0x80000000u, 0xffffffffu};
  for (size_t i = 0; i < sizeof bad_types / sizeof bad_types[0]; i++)
    EXPECT_KV_FAIL(&v, bad_types[i], "unknown metadata value type");

  /* scalars cut short */
  v.n = 0;
  b_u16(&v, 1);
  EXPECT_KV_FAIL(&v, TL_GGUF_U32, "truncated");
  EXPECT_KV_FAIL(&v, TL_GGUF_F64, "truncated");

  /* arrays: huge lengths of numbers, strings and arrays */
  const uint64_t huge[] = {1ull << 62, 1ull << 63, UINT64_MAX, (1ull << 61) + 1, 1000};
  const uint32_t elem[] = {TL_GGUF_U8, TL_GGUF_U32, TL_GGUF_F64, TL_GGUF_STRING, TL_GGUF_ARRAY};
  for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
    for (size_t j = 0; j < sizeof elem / sizeof elem[0]; j++) {
      v.n = 0;
      b_arr(&v, elem[j], huge[i]);
      b_zeros(&v, 64);
      EXPECT_KV_FAIL(&v, TL_GGUF_ARRAY, NULL);
    }
  }
  v.n = 0;
  b_arr(&v, TL_GGUF_U64, UINT64_MAX / 4); /* count * 8 wraps to a small number */
  b_zeros(&v, 64);
  EXPECT_KV_FAIL(&v, TL_GGUF_ARRAY, "past the end");
  v.n = 0;
  b_arr(&v, TL_GGUF_STRING, 2); /* the second string runs past the end */
  b_str(&v, "ok");
  b_u64(&v, 100);
  b_put(&v, "short", 5);
  EXPECT_KV_FAIL(&v, TL_GGUF_ARRAY, "truncated");
  v.n = 0;
  b_arr(&v, TL_GGUF_STRING, 2); /* a string of length 2^63 in an array */
  b_str(&v, "ok");
  b_u64(&v, 1ull << 63);
  b_zeros(&v, 8);
  EXPECT_KV_FAIL(&v, TL_GGUF_ARRAY, "truncated");
  v.n = 0;
  b_arr(&v, TL_GGUF_ARRAY, 2); /* a nested array of 2^62 elements */
  b_arr(&v, TL_GGUF_U8, 1);
  b_u8(&v, 1);
  b_arr(&v, TL_GGUF_U32, 1ull << 62);
  b_zeros(&v, 8);
  EXPECT_KV_FAIL(&v, TL_GGUF_ARRAY, "past the end");

  /* array element types */
  v.n = 0;
  b_arr(&v, TL_GGUF_U8, 2);
  b_u8(&v, 1);
  b_u8(&v, 2);
  expect_kv_ok(&v, TL_GGUF_ARRAY, __LINE__);
  const uint32_t bad_elem[] = {13, 99, 0xffffffffu};
  for (size_t i = 0; i < sizeof bad_elem / sizeof bad_elem[0]; i++) {
    v.n = 0;
    b_arr(&v, bad_elem[i], 2);
    b_u8(&v, 1);
    b_u8(&v, 2);
    EXPECT_KV_FAIL(&v, TL_GGUF_ARRAY, "unknown array element type");
    v.n = 0; /* the same inside a nested array, after a valid element */
    b_arr(&v, TL_GGUF_ARRAY, 2);
    b_arr(&v, TL_GGUF_U8, 0);
    b_arr(&v, bad_elem[i], 2);
    b_u8(&v, 1);
    b_u8(&v, 2);
    EXPECT_KV_FAIL(&v, TL_GGUF_ARRAY, "unknown array element type");
  }

  /* nesting: shallow works, deep is refused without recursing deeper */
  for (int k = 1; k <= 4; k++) {
    v.n = 0;
    nested(&v, k);
    expect_kv_ok(&v, TL_GGUF_ARRAY, __LINE__);
  }
  const int deep[] = {6, 7, 64, 100000};
  for (size_t i = 0; i < sizeof deep / sizeof deep[0]; i++) {
    v.n = 0;
    nested(&v, deep[i]);
    EXPECT_KV_FAIL(&v, TL_GGUF_ARRAY, "nested");
  }
  free(v.p);
}

static void test_duplicate_keys(void **state) {
  (void)state;
  for (int dup_at = 0; dup_at < 3; dup_at++) {
    buf b = {0};
    size_t n;
    b_header(&b, 3, 0, 4);
    const char *keys[4] = {"a.one", "a.two", "a.three", "a.four"};
    keys[3] = keys[dup_at]; /* the last key repeats an earlier one */
    for (int i = 0; i < 4; i++) {
      b_key(&b, keys[i], TL_GGUF_U32);
      b_u32(&b, (uint32_t)i);
    }
    uint8_t *d = b_take(&b, &n);
    EXPECT_FAIL(d, n, "duplicate metadata key");
    EXPECT_FAIL(d, n, keys[dup_at]);
    free(d);
  }
  /* keys that differ in length or in a byte are distinct; an empty key too */
  buf b = {0};
  size_t n;
  b_header(&b, 3, 0, 4);
  const char *keys[4] = {"ab", "abc", "abd", ""};
  for (int i = 0; i < 4; i++) {
    b_key(&b, keys[i], TL_GGUF_U8);
    b_u8(&b, (uint8_t)i);
  }
  uint8_t *d = b_take(&b, &n);
  tl_gguf *g = PARSE_OK(d, n);
  assert_int_equal(g->n_kv, 4);
  uint32_t u;
  assert_true(tl_gguf_get_u32(g, "abd", &u) && u == 2);
  assert_true(tl_gguf_get_u32(g, "", &u) && u == 3);
  tl_gguf_free(g);
  free(d);
  /* two empty keys */
  b_header(&b, 3, 0, 2);
  b_key(&b, "", TL_GGUF_U8);
  b_u8(&b, 0);
  b_key(&b, "", TL_GGUF_U8);
  b_u8(&b, 1);
  d = b_take(&b, &n);
  EXPECT_FAIL(d, n, "duplicate metadata key");
  free(d);
}

/* A v3 file with tensors whose info fields are given raw, general.alignment
 * (as a u32) unless align is NO_ALIGN, and data_bytes of data. */
#define NO_ALIGN UINT64_MAX
typedef struct tinfo {
  const char *name;
  uint32_t n_dims;
  uint64_t ne[8];
  uint32_t type;
  uint64_t offset;
} tinfo;

static uint8_t *tensor_file(const tinfo *ti, int n_t, uint64_t align, size_t data_bytes,
                            size_t *n) {
  buf b = {0};
  b_header(&b, 3, (uint64_t)n_t, align != NO_ALIGN ? 2 : 1);
  b_key(&b, "general.name", TL_GGUF_STRING);
  b_str(&b, "t");
  if (align != NO_ALIGN) {
    b_key(&b, "general.alignment", TL_GGUF_U32);
    b_u32(&b, (uint32_t)align);
  }
  for (int i = 0; i < n_t; i++) {
    b_str(&b, ti[i].name);
    b_u32(&b, ti[i].n_dims);
    for (uint32_t d = 0; d < ti[i].n_dims && d < 8; d++) b_u64(&b, ti[i].ne[d]);
    b_u32(&b, ti[i].type);
    b_u64(&b, ti[i].offset);
  }
  /* pad to the alignment the reader will use (an invalid one is refused first) */
  b_pad(&b, align != NO_ALIGN && align && !(align & (align - 1)) && align <= 65536 ? (size_t)align
                                                                                   : 32);
  b_zeros(&b, data_bytes);
  return b_take(&b, n);
}

static void expect_tensor_fail(tinfo ti, size_t data_bytes, const char *sub, int line) {
  size_t n;
  uint8_t *d = tensor_file(&ti, 1, NO_ALIGN, data_bytes, &n);
  expect_fail_at(d, n, sub, line);
  free(d);
}
#define EXPECT_TENSOR_FAIL(ti, bytes, sub) expect_tensor_fail((ti), (bytes), (sub), __LINE__)

static void test_bad_tensor_info(void **state) {
  (void)state;
  size_t n;
  /* control: a valid F32 [32, 2] tensor */
  const tinfo ok = {"w", 2, {32, 2}, TL_TYPE_F32, 0};
  uint8_t *d = tensor_file(&ok, 1, NO_ALIGN, 256, &n);
  tl_gguf *g = PARSE_OK(d, n);
  assert_int_equal(g->tensors[0].nbytes, 256);
  tl_gguf_free(g);
  free(d);

  tinfo t = ok;
  /* dimension counts */
  t.n_dims = 0;
  EXPECT_TENSOR_FAIL(t, 256, "dimensions");
  t.n_dims = 5;
  t.ne[2] = t.ne[3] = t.ne[4] = 1;
  EXPECT_TENSOR_FAIL(t, 256, "dimensions");
  t.n_dims = 0xffffffffu;
  EXPECT_TENSOR_FAIL(t, 256, "dimensions");

  /* shapes: a zero dim, a dim > INT64_MAX, products overflowing int64/uint64 */
  const uint64_t shapes[][4] = {
      {0, 2, 1, 1},
      {32, 0, 1, 1},
      {32, 2, 1, 0},
      {1ull << 63, 1, 1, 1},
      {UINT64_MAX, 1, 1, 1},
      {1ull << 32, 1ull << 32, 1, 1},
      {1ull << 32, 1ull << 31, 1, 1},
      {1ull << 62, 2, 1, 1},
      {1ull << 62, 4, 1, 1},
      {1ull << 16, 1ull << 16, 1ull << 16, 1ull << 16},
      {3, 3074457345618258603ull, 1, 1}, /* 3 * ... = 2^63 + 1 */
  };
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
    t = ok;
    t.n_dims = 4;
    memcpy(t.ne, shapes[i], sizeof shapes[i]);
    EXPECT_TENSOR_FAIL(t, 256, "invalid shape");
  }
  /* the element count fits in int64 but the byte size does not */
  t = ok;
  t.ne[0] = 1ull << 31;
  t.ne[1] = 1ull << 31;
  EXPECT_TENSOR_FAIL(t, 256, "too large");
  /* the byte size fits but is larger than the file */
  t.ne[0] = 1ull << 61;
  t.ne[1] = 1;
  EXPECT_TENSOR_FAIL(t, 256, "past the end");

  /* tensor types */
  const uint32_t bad_types[] = {4, 5, 31, 36, 39, TL_TYPE_COUNT, 99, 0xffffffffu};
  for (size_t i = 0; i < sizeof bad_types / sizeof bad_types[0]; i++) {
    t = ok;
    t.type = bad_types[i];
    assert_null(tl_type_get(bad_types[i]));
    EXPECT_TENSOR_FAIL(t, 1 << 16, "unknown type");
  }
  /* rows that are not whole blocks */
  t = ok;
  t.type = TL_TYPE_Q8_0;
  t.ne[0] = 33;
  EXPECT_TENSOR_FAIL(t, 256, "not a multiple");
  t.ne[0] = 64; /* control: two Q8_0 blocks a row */
  d = tensor_file(&t, 1, NO_ALIGN, 2 * 2 * 34, &n);
  g = PARSE_OK(d, n);
  assert_int_equal(g->tensors[0].nbytes, 2 * 2 * 34);
  tl_gguf_free(g);
  free(d);
  t.type = TL_TYPE_Q4_K;
  t.ne[0] = 128;
  EXPECT_TENSOR_FAIL(t, 1 << 16, "not a multiple");

  /* names: empty, too long, length past the end */
  t = ok;
  t.name = "";
  EXPECT_TENSOR_FAIL(t, 256, "name");
  char longname[300];
  memset(longname, 'x', sizeof longname - 1);
  longname[sizeof longname - 1] = 0;
  t.name = longname;
  EXPECT_TENSOR_FAIL(t, 256, "name");
  {
    buf b = {0};
    b_header(&b, 3, 1, 0);
    b_u64(&b, 1ull << 63);
    b_put(&b, "w", 1);
    b_zeros(&b, 64);
    d = b_take(&b, &n);
    EXPECT_FAIL(d, n, "truncated");
    free(d);
  }

  /* offsets: unaligned, past the end, wrapping around */
  t = ok;
  const uint64_t unaligned[] = {1, 4, 16, 31, 33, UINT64_MAX};
  for (size_t i = 0; i < sizeof unaligned / sizeof unaligned[0]; i++) {
    t.offset = unaligned[i];
    EXPECT_TENSOR_FAIL(t, 1024, "not aligned");
  }
  t.offset = 32; /* aligned, but the data ends 1 byte early */
  EXPECT_TENSOR_FAIL(t, 32 + 255, "past the end");
  t.offset = 0;
  EXPECT_TENSOR_FAIL(t, 255, "past the end");
  EXPECT_TENSOR_FAIL(t, 0, NULL);
  const uint64_t wrap[] = {UINT64_MAX - 31, UINT64_MAX - 255, UINT64_MAX - 511, 1ull << 63,
                           (UINT64_MAX - 255) & ~31ull};
  for (size_t i = 0; i < sizeof wrap / sizeof wrap[0]; i++) {
    t.offset = wrap[i];
    assert_int_equal(t.offset % 32, 0);
    EXPECT_TENSOR_FAIL(t, 256, "past the end");
  }
  t.offset = 32; /* control: exactly enough data */
  d = tensor_file(&t, 1, NO_ALIGN, 32 + 256, &n);
  g = PARSE_OK(d, n);
  assert_ptr_equal(g->tensors[0].data, d + g->data_offset + 32);
  tl_gguf_free(g);
  free(d);

  /* the tensor infos end, but the padding before the data is missing */
  {
    buf b = {0};
    b_header(&b, 3, 1, 0);
    b_str(&b, "w");
    b_u32(&b, 1);
    b_u64(&b, 1);
    b_u32(&b, TL_TYPE_I8);
    b_u64(&b, 0);
    assert_true(b.n % 32 != 0);
    d = b_take(&b, &n);
    EXPECT_FAIL(d, n, NULL);
    free(d);
  }
}

static void test_duplicate_tensors(void **state) {
  (void)state;
  size_t n;
  tinfo ts[3] = {{"a", 1, {8}, TL_TYPE_F32, 0},
                 {"b", 1, {8}, TL_TYPE_F32, 32},
                 {"a", 1, {8}, TL_TYPE_F32, 64}};
  uint8_t *d = tensor_file(ts, 3, NO_ALIGN, 96, &n);
  EXPECT_FAIL(d, n, "duplicate tensor name 'a'");
  free(d);
  ts[2].name = "ab"; /* control */
  d = tensor_file(ts, 3, NO_ALIGN, 96, &n);
  tl_gguf *g = PARSE_OK(d, n);
  assert_int_equal(g->n_tensors, 3);
  assert_ptr_equal(tl_gguf_find_tensor(g, "ab"), &g->tensors[2]);
  tl_gguf_free(g);
  free(d);
  /* two tensors sharing one offset (aliasing) are allowed by the format */
  ts[1].offset = 0;
  d = tensor_file(ts, 3, NO_ALIGN, 96, &n);
  g = PARSE_OK(d, n);
  assert_ptr_equal(g->tensors[0].data, g->tensors[1].data);
  tl_gguf_free(g);
  free(d);
}

static void test_alignment(void **state) {
  (void)state;
  size_t n;
  const tinfo t = {"w", 1, {8}, TL_TYPE_F32, 0};
  /* valid alignments, with the tensor at the second aligned slot */
  const uint32_t good[] = {1, 2, 8, 32, 64, 4096, 65536};
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
    tinfo t2 = t;
    t2.offset = good[i] >= 32 ? good[i] : 32;
    uint8_t *d = tensor_file(&t2, 1, good[i], (size_t)t2.offset + 32, &n);
    tl_gguf *g = PARSE_OK(d, n);
    assert_int_equal(g->alignment, good[i]);
    assert_int_equal(g->data_offset % good[i], 0);
    assert_ptr_equal(g->tensors[0].data, d + g->data_offset + t2.offset);
    tl_gguf_free(g);
    free(d);
  }
  const uint32_t bad[] = {0, 3, 6, 48, 65537, 1u << 17, 1u << 31, 0xffffffffu};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    uint8_t *d = tensor_file(&t, 1, bad[i], 64, &n);
    EXPECT_FAIL(d, n, "general.alignment");
    free(d);
  }
  /* alignment of the wrong type: string, f32, bool, a negative i32, an array */
  buf v = {0};
  struct {
    uint32_t type;
    int what;
  } wrong[] = {{TL_GGUF_STRING, 0}, {TL_GGUF_F32, 1},   {TL_GGUF_BOOL, 2},
               {TL_GGUF_I32, 3},    {TL_GGUF_ARRAY, 4}, {TL_GGUF_U64, 5}};
  for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++) {
    v.n = 0;
    switch (wrong[i].what) {
      case 0:
        b_str(&v, "32");
        break;
      case 1:
        b_f32(&v, 32.0f);
        break;
      case 2:
        b_u8(&v, 1);
        break;
      case 3:
        b_u32(&v, (uint32_t)-32);
        break;
      case 4:
        b_arr(&v, TL_GGUF_U32, 1);
        b_u32(&v, 32);
        break;
      default:
        b_u64(&v, (1ull << 32) + 32); /* does not fit in 32 bits */
        break;
    }
    size_t nd;
    uint8_t *d = one_kv("general.alignment", wrong[i].type, &v, &nd);
    EXPECT_FAIL(d, nd, "general.alignment");
    free(d);
  }
  free(v.p);
}

/* Parse cost stays linear in the number of keys and tensors. */
static void test_many_entries(void **state) {
  (void)state;
  const int n_kv = 100000, n_t = 100000;
  buf b = {0};
  b_header(&b, 3, 0, (uint64_t)n_kv);
  char key[32];
  for (int i = 0; i < n_kv; i++) {
    snprintf(key, sizeof key, "k.%07d", i);
    b_key(&b, key, TL_GGUF_U8);
    b_u8(&b, (uint8_t)i);
  }
  size_t n;
  uint8_t *d = b_take(&b, &n);
  double t0 = now_s();
  tl_gguf *g = PARSE_OK(d, n);
  double dt = now_s() - t0;
  uint32_t u;
  assert_true(tl_gguf_get_u32(g, "k.0099999", &u) && u == (uint8_t)99999);
  tl_gguf_free(g);
  print_message("%d keys parsed in %.3f s\n", n_kv, dt);
  assert_true(dt < 5.0);
  free(d);

  b_header(&b, 3, (uint64_t)n_t, 0);
  for (int i = 0; i < n_t; i++) {
    snprintf(key, sizeof key, "t.%07d", i);
    b_str(&b, key);
    b_u32(&b, 1);
    b_u64(&b, 1);
    b_u32(&b, TL_TYPE_I8);
    b_u64(&b, (uint64_t)i * 32);
  }
  b_pad(&b, 32);
  b_zeros(&b, (size_t)n_t * 32);
  d = b_take(&b, &n);
  t0 = now_s();
  g = PARSE_OK(d, n);
  dt = now_s() - t0;
  assert_int_equal(g->n_tensors, n_t);
  assert_ptr_equal(g->tensors[n_t - 1].data, d + g->data_offset + (size_t)(n_t - 1) * 32);
  tl_gguf_free(g);
  print_message("%d tensors parsed in %.3f s\n", n_t, dt);
  assert_true(dt < 5.0);
  free(d);
}

/* ---- 4. model-level validation -------------------------------------------- */

enum { N_VOCAB = 8 };
static const char *const k_tokens[N_VOCAB] = {"<unk>",
                                              "<s>",
                                              "</s>",
                                              "\xe2\x96\x81",
                                              "a",
                                              "b",
                                              "\xe2\x96\x81"
                                              "a",
                                              "ab"};
static const int32_t k_toktypes[N_VOCAB] = {2, 3, 3, 1, 1, 1, 1, 1};
static const float k_scores[N_VOCAB] = {0, 0, 0, -1, -2, -2, -1.5f, -3};

typedef struct llama_cfg {
  int n_embd, n_head, n_head_kv, n_ff, n_layer;
  const char *arch;    /* NULL: general.architecture left out */
  const char *omit;    /* a tensor left out */
  const char *reshape; /* a tensor whose last dim is one too large */
  const char *retype;  /* a tensor stored with type retype_to */
  uint32_t retype_to;
  const char *nan_in;   /* a tensor whose first value is NaN */
  const char *omit_key; /* a metadata suffix ("<arch>.X") left out */
  int extra_vocab_rows; /* rows added to token_embd / output */
} llama_cfg;

static llama_cfg tiny_cfg(void) {
  llama_cfg c = {
      .n_embd = 8, .n_head = 2, .n_head_kv = 1, .n_ff = 12, .n_layer = 2, .arch = "llama"};
  return c;
}

static uint32_t g_rng = 12345;
static float frand(void) { /* in [-0.5, 0.5) */
  g_rng = g_rng * 1664525u + 1013904223u;
  return (float)(g_rng >> 8) / 16777216.0f - 0.5f;
}

static void add_weight(gfile *f, const llama_cfg *c, const char *name, uint64_t ne0, uint64_t ne1,
                       bool is_norm) {
  uint32_t n_dims = ne1 ? 2 : 1;
  uint64_t ne[2] = {ne0, ne1 ? ne1 : 1};
  if (c->omit && !strcmp(c->omit, name)) return;
  if (c->reshape && !strcmp(c->reshape, name)) ne[n_dims - 1] += 1;
  uint32_t type = TL_TYPE_F32;
  if (c->retype && !strcmp(c->retype, name)) type = c->retype_to;
  if (type != TL_TYPE_F32) {
    gf_tensor(f, name, type, n_dims, ne, NULL);
    return;
  }
  size_t cnt = (size_t)(ne[0] * ne[1]);
  float *w = malloc(cnt * sizeof *w);
  assert_non_null(w);
  for (size_t i = 0; i < cnt; i++) w[i] = is_norm ? 1.0f + 0.2f * frand() : frand();
  if (c->nan_in && !strcmp(c->nan_in, name)) w[0] = NAN;
  gf_tensor(f, name, TL_TYPE_F32, n_dims, ne, w);
  free(w);
}

static uint8_t *build_llama(const llama_cfg *c, size_t *n) {
  gfile f;
  gf_init(&f, 3);
  g_rng = 12345;
  const char *arch = c->arch ? c->arch : "llama";
  char key[128];
#define AK(s) (snprintf(key, sizeof key, "%s.%s", arch, s), key)
#define KEEP(s) (!c->omit_key || strcmp(c->omit_key, s) != 0)
  if (c->arch) gf_str(&f, "general.architecture", c->arch);
  gf_str(&f, "general.name", "tiny test llama");
  if (KEEP("block_count")) gf_u32(&f, AK("block_count"), (uint32_t)c->n_layer);
  gf_u32(&f, AK("context_length"), 64);
  if (KEEP("embedding_length")) gf_u32(&f, AK("embedding_length"), (uint32_t)c->n_embd);
  if (KEEP("feed_forward_length")) gf_u32(&f, AK("feed_forward_length"), (uint32_t)c->n_ff);
  if (KEEP("attention.head_count")) gf_u32(&f, AK("attention.head_count"), (uint32_t)c->n_head);
  gf_u32(&f, AK("attention.head_count_kv"), (uint32_t)c->n_head_kv);
  gf_f32(&f, AK("attention.layer_norm_rms_epsilon"), 1e-5f);
  gf_f32(&f, AK("rope.freq_base"), 10000.0f);
#undef AK
#undef KEEP
  gf_str(&f, "tokenizer.ggml.model", "llama");
  buf *b = gf_key(&f, "tokenizer.ggml.tokens", TL_GGUF_ARRAY);
  b_arr(b, TL_GGUF_STRING, N_VOCAB);
  for (int i = 0; i < N_VOCAB; i++) b_str(b, k_tokens[i]);
  b = gf_key(&f, "tokenizer.ggml.scores", TL_GGUF_ARRAY);
  b_arr(b, TL_GGUF_F32, N_VOCAB);
  for (int i = 0; i < N_VOCAB; i++) b_f32(b, k_scores[i]);
  b = gf_key(&f, "tokenizer.ggml.token_type", TL_GGUF_ARRAY);
  b_arr(b, TL_GGUF_I32, N_VOCAB);
  for (int i = 0; i < N_VOCAB; i++) b_u32(b, (uint32_t)k_toktypes[i]);
  gf_u32(&f, "tokenizer.ggml.bos_token_id", 1);
  gf_u32(&f, "tokenizer.ggml.eos_token_id", 2);
  gf_u32(&f, "tokenizer.ggml.unknown_token_id", 0);

  uint64_t d = (uint64_t)c->n_embd, hd = d / (uint64_t)c->n_head;
  uint64_t qd = hd * (uint64_t)c->n_head, kvd = hd * (uint64_t)c->n_head_kv;
  uint64_t ff = (uint64_t)c->n_ff, nv = N_VOCAB + (uint64_t)c->extra_vocab_rows;
  add_weight(&f, c, "token_embd.weight", d, nv, false);
  add_weight(&f, c, "output_norm.weight", d, 0, true);
  add_weight(&f, c, "output.weight", d, nv, false);
  for (int il = 0; il < c->n_layer; il++) {
    char nm[64];
#define NM(x) (snprintf(nm, sizeof nm, "blk.%d.%s", il, x), nm)
    add_weight(&f, c, NM("attn_norm.weight"), d, 0, true);
    add_weight(&f, c, NM("attn_q.weight"), d, qd, false);
    add_weight(&f, c, NM("attn_k.weight"), d, kvd, false);
    add_weight(&f, c, NM("attn_v.weight"), d, kvd, false);
    add_weight(&f, c, NM("attn_output.weight"), qd, d, false);
    add_weight(&f, c, NM("ffn_norm.weight"), d, 0, true);
    add_weight(&f, c, NM("ffn_gate.weight"), d, ff, false);
    add_weight(&f, c, NM("ffn_up.weight"), d, ff, false);
    add_weight(&f, c, NM("ffn_down.weight"), ff, d, false);
#undef NM
  }
  uint8_t *data = gf_build(&f, n);
  gf_free(&f);
  return data;
}

/* Writes the file, loads it; returns the status, the model in *out (or NULL). */
static tl_status load_bytes(const uint8_t *data, size_t n, tl_model **out) {
  char *path = tl_test_tmpfile(".gguf");
  assert_non_null(path);
  assert_int_equal(tl_test_write_file(path, data, n), 0);
  tl_clear_error();
  *out = NULL;
  tl_status s = tl_model_load(path, NULL, out);
  unlink(path);
  free(path);
  return s;
}

#define EXPECT_LOAD_FAIL(cfg, want, sub1, sub2) \
  expect_load_fail_at((cfg), (want), (sub1), (sub2), __LINE__)
static void expect_load_fail_at(const llama_cfg *c, tl_status want, const char *sub1,
                                const char *sub2, int line) {
  size_t n;
  uint8_t *data = build_llama(c, &n);
  /* the file itself is well-formed */
  tl_gguf *g = parse_ok_at(data, n, line);
  tl_gguf_free(g);
  tl_model *m = NULL;
  tl_status s = load_bytes(data, n, &m);
  free(data);
  if (s == TL_OK) {
    tl_model_free(m);
    fail_msg("line %d: the model loaded; expected '%s'", line, sub1);
  }
  const char *msg = tl_last_error();
  print_message("  %s\n", msg);
  if (m) fail_msg("line %d: model not NULL after a failure", line);
  if (s != want)
    fail_msg("line %d: status %s, expected %s (%s)", line, tl_status_name(s), tl_status_name(want),
             msg);
  if (sub1 && !strstr(msg, sub1)) fail_msg("line %d: '%s' does not name '%s'", line, msg, sub1);
  if (sub2 && !strstr(msg, sub2)) fail_msg("line %d: '%s' does not name '%s'", line, msg, sub2);
}

static void test_model_semantic_errors(void **state) {
  (void)state;
  llama_cfg c = tiny_cfg();
  c.arch = NULL;
  EXPECT_LOAD_FAIL(&c, TL_ERR_FORMAT, "general.architecture", NULL);

  c = tiny_cfg();
  c.arch = "foo";
  EXPECT_LOAD_FAIL(&c, TL_ERR_UNSUPPORTED, "foo", "architecture");

  c = tiny_cfg();
  c.omit = "blk.0.attn_q.weight";
  EXPECT_LOAD_FAIL(&c, TL_ERR_FORMAT, "missing tensor", "blk.0.attn_q.weight");
  c.omit = "blk.1.ffn_gate.weight";
  EXPECT_LOAD_FAIL(&c, TL_ERR_FORMAT, "missing tensor", "blk.1.ffn_gate.weight");
  c.omit = "token_embd.weight";
  EXPECT_LOAD_FAIL(&c, TL_ERR_FORMAT, "missing tensor", "token_embd.weight");
  c.omit = "output_norm.weight";
  EXPECT_LOAD_FAIL(&c, TL_ERR_FORMAT, "missing tensor", "output_norm.weight");

  c = tiny_cfg();
  c.reshape = "blk.1.ffn_up.weight";
  EXPECT_LOAD_FAIL(&c, TL_ERR_FORMAT, "blk.1.ffn_up.weight", "shape");
  c.reshape = "blk.0.attn_k.weight";
  EXPECT_LOAD_FAIL(&c, TL_ERR_FORMAT, "blk.0.attn_k.weight", "shape");
  c.reshape = "blk.0.ffn_norm.weight";
  EXPECT_LOAD_FAIL(&c, TL_ERR_FORMAT, "blk.0.ffn_norm.weight", "shape");
  c.reshape = "output.weight";
  EXPECT_LOAD_FAIL(&c, TL_ERR_FORMAT, "output.weight", "shape");

  c = tiny_cfg();
  c.n_head_kv = 3; /* 2 query heads */
  EXPECT_LOAD_FAIL(&c, TL_ERR_FORMAT, "kv heads", NULL);
  c.n_head = 4;
  c.n_head_kv = 3;
  EXPECT_LOAD_FAIL(&c, TL_ERR_FORMAT, "kv heads", NULL);

  c = tiny_cfg();
  c.omit_key = "embedding_length";
  EXPECT_LOAD_FAIL(&c, TL_ERR_FORMAT, "llama.embedding_length", NULL);
  c.omit_key = "block_count";
  EXPECT_LOAD_FAIL(&c, TL_ERR_FORMAT, "llama.block_count", NULL);

  c = tiny_cfg();
  c.extra_vocab_rows = 1;
  EXPECT_LOAD_FAIL(&c, TL_ERR_FORMAT, "tokenizer", NULL);

  c = tiny_cfg();
  c.nan_in = "blk.1.attn_norm.weight";
  EXPECT_LOAD_FAIL(&c, TL_ERR_FORMAT, "blk.1.attn_norm.weight", "non-finite");

  /* every known weight type on a matrix (n_embd = 256 fits every block size):
   * a type with a kernel loads, one without fails naming the tensor and type;
   * Q4_K in particular, whichever case applies */
  c = tiny_cfg();
  c.n_embd = 256;
  c.n_head = 2;
  c.n_head_kv = 2;
  c.n_layer = 1;
  c.retype = "blk.0.attn_q.weight";
  int n_with = 0, n_without = 0;
  for (uint32_t type = 0; type < TL_TYPE_COUNT; type++) {
    if (!tl_type_get(type)) continue;
    c.retype_to = type;
    if (!tl_cpu_supports_type(type)) {
      EXPECT_LOAD_FAIL(&c, TL_ERR_UNSUPPORTED, "blk.0.attn_q.weight", tl_type_name(type));
      n_without++;
      continue;
    }
    size_t n;
    uint8_t *data = build_llama(&c, &n);
    tl_model *m = NULL;
    if (load_bytes(data, n, &m) != TL_OK)
      fail_msg("attn_q as %s: %s", tl_type_name(type), tl_last_error());
    assert_non_null(strstr(tl_model_desc(m), tl_type_name(type)));
    tl_model_free(m);
    free(data);
    n_with++;
  }
  print_message("  %d weight types load, %d are refused as unsupported\n", n_with, n_without);
  assert_true(n_with >= 4); /* F32, F16, BF16, Q8_0 at least */
  assert_true(n_without >= 1);
  /* I32 has no kernel and no conversion: as a matrix and as a norm vector */
  c = tiny_cfg();
  c.retype = "blk.0.ffn_down.weight";
  c.retype_to = TL_TYPE_I32;
  assert_false(tl_cpu_supports_type(TL_TYPE_I32));
  EXPECT_LOAD_FAIL(&c, TL_ERR_UNSUPPORTED, "blk.0.ffn_down.weight", "I32");
  c.retype = "blk.0.attn_norm.weight";
  EXPECT_LOAD_FAIL(&c, TL_ERR_UNSUPPORTED, "blk.0.attn_norm.weight", "I32");
}

/* The fixture truncated: tl_model_load fails with a message naming the file. */
static void test_model_truncated_fixture(void **state) {
  (void)state;
  char *path = tl_test_fixture_or_skip("llama/model-q8_0.gguf");
  if (!path) skip();
  size_t n;
  char *data = tl_test_read_file(path, &n);
  assert_non_null(data);
  const size_t cuts[] = {1, 4, 8, 23, 24, 1000, n / 2, n - 1};
  for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
    tl_model *m = NULL;
    tl_status s = load_bytes((const uint8_t *)data, cuts[i], &m);
    assert_int_not_equal(s, TL_OK);
    assert_null(m);
    assert_non_null(strstr(tl_last_error(), "loading '"));
  }
  tl_model *m = NULL;
  assert_int_equal(load_bytes((const uint8_t *)data, n, &m), TL_OK); /* control */
  assert_int_equal(tl_model_n_layer(m), 2);
  tl_model_free(m);
  free(data);
  free(path);
}

/* ---- the positive control: a complete tiny model loads and decodes --------- */

static const float *tdata(const tl_gguf *g, const char *name) {
  const tl_gguf_tensor *t = tl_gguf_find_tensor(g, name);
  assert_non_null(t);
  assert_int_equal(t->type, TL_TYPE_F32);
  return t->data;
}

static void ref_rms(const double *x, const float *w, double *y, int n) {
  double ss = 0;
  for (int i = 0; i < n; i++) ss += x[i] * x[i];
  double sc = 1.0 / sqrt(ss / n + 1e-5);
  for (int i = 0; i < n; i++) y[i] = x[i] * sc * w[i];
}

/* y[rows] = W[rows][cols] x */
static void ref_matvec(const float *w, const double *x, double *y, int rows, int cols) {
  for (int r = 0; r < rows; r++) {
    double s = 0;
    for (int k = 0; k < cols; k++) s += (double)w[(size_t)r * cols + k] * x[k];
    y[r] = s;
  }
}

/* Logits of one token at position 0 (attention over itself = its V head). */
static void ref_logits(const tl_gguf *g, const llama_cfg *c, int tok, double *logits) {
  int d = c->n_embd, hd = d / c->n_head, qd = hd * c->n_head, kvd = hd * c->n_head_kv;
  int ff = c->n_ff, group = c->n_head / c->n_head_kv;
  double x[64], xn[64], v[64], att[64], o[64], a[64], up[64];
  const float *emb = tdata(g, "token_embd.weight");
  for (int i = 0; i < d; i++) x[i] = emb[(size_t)tok * d + i];
  char nm[64];
#define NM(x) (snprintf(nm, sizeof nm, "blk.%d.%s", il, x), nm)
  for (int il = 0; il < c->n_layer; il++) {
    ref_rms(x, tdata(g, NM("attn_norm.weight")), xn, d);
    ref_matvec(tdata(g, NM("attn_v.weight")), xn, v, kvd, d);
    for (int h = 0; h < c->n_head; h++)
      for (int i = 0; i < hd; i++) att[h * hd + i] = v[(h / group) * hd + i];
    ref_matvec(tdata(g, NM("attn_output.weight")), att, o, d, qd);
    for (int i = 0; i < d; i++) x[i] += o[i];
    ref_rms(x, tdata(g, NM("ffn_norm.weight")), xn, d);
    ref_matvec(tdata(g, NM("ffn_gate.weight")), xn, a, ff, d);
    ref_matvec(tdata(g, NM("ffn_up.weight")), xn, up, ff, d);
    for (int i = 0; i < ff; i++) a[i] = a[i] / (1.0 + exp(-a[i])) * up[i];
    ref_matvec(tdata(g, NM("ffn_down.weight")), a, o, d, ff);
    for (int i = 0; i < d; i++) x[i] += o[i];
  }
#undef NM
  ref_rms(x, tdata(g, "output_norm.weight"), xn, d);
  ref_matvec(tdata(g, "output.weight"), xn, logits, N_VOCAB, d);
}

static void test_model_tiny_valid(void **state) {
  (void)state;
  llama_cfg c = tiny_cfg();
  size_t n;
  uint8_t *data = build_llama(&c, &n);
  tl_model *m = NULL;
  tl_status s = load_bytes(data, n, &m);
  if (s != TL_OK) fail_msg("tiny model: %s", tl_last_error());
  assert_string_equal(tl_model_arch(m), "llama");
  assert_true(tl_model_has_weights(m));
  assert_int_equal(tl_model_n_vocab(m), N_VOCAB);
  assert_int_equal(tl_model_n_layer(m), 2);
  assert_int_equal(tl_model_n_ctx_train(m), 64);
  uint64_t d = 8, kvd = 4, ff = 12;
  uint64_t per_layer = 2 * d + d * d + 2 * d * kvd + d * d + 3 * d * ff;
  assert_int_equal(tl_model_n_params(m), 2 * N_VOCAB * d + d + 2 * per_layer);
  assert_int_equal(tl_model_size_bytes(m), 4 * tl_model_n_params(m));
  assert_int_equal(tl_token_bos(m), 1);
  assert_int_equal(tl_token_eos(m), 2);
  assert_true(tl_token_is_eog(m, 2));
  char piece[16];
  assert_int_equal(tl_token_to_piece(m, 6, piece, sizeof piece), 2);
  assert_memory_equal(piece, " a", 2);
  tl_token toks[16];
  size_t nt = 0;
  assert_int_equal(tl_tokenize(m, "ab", 2, true, false, toks, 16, &nt), TL_OK);
  assert_true(nt >= 2);
  assert_int_equal(toks[0], 1);
  for (size_t i = 0; i < nt; i++) assert_true(toks[i] >= 0 && toks[i] < N_VOCAB);

  tl_context_params cp = tl_context_default_params();
  cp.n_ctx = 16;
  cp.n_threads = 1;
  tl_context *ctx = NULL;
  /* a q8_0 KV cache needs heads of whole 32-value blocks; these have 4 */
  cp.kv_type = TL_KV_Q8_0;
  assert_int_equal(tl_context_new(m, &cp, &ctx), TL_ERR_INVALID_ARG);
  assert_null(ctx);
  assert_non_null(strstr(tl_last_error(), "multiple of 32"));
  cp.kv_type = (tl_kv_type)7;
  assert_int_equal(tl_context_new(m, &cp, &ctx), TL_ERR_INVALID_ARG);
  cp.kv_type = TL_KV_F32;
  assert_int_equal(tl_context_new(m, &cp, &ctx), TL_OK);

  /* one token at position 0 against the reference */
  tl_gguf *g = PARSE_OK(data, n);
  for (tl_token tok = 0; tok < N_VOCAB; tok += 3) {
    tl_kv_clear(ctx, -1);
    int32_t pos = 0;
    int8_t want = 1;
    tl_batch b = {.n_tokens = 1, .tokens = &tok, .pos = &pos, .logits = &want};
    assert_int_equal(tl_decode(ctx, &b), TL_OK);
    const float *lg = tl_get_logits(ctx, 0);
    assert_non_null(lg);
    double ref[N_VOCAB];
    ref_logits(g, &c, tok, ref);
    double nrm = 0;
    for (int i = 0; i < N_VOCAB; i++) nrm += ref[i] * ref[i];
    assert_true(nrm > 1e-6); /* not trivially zero */
    for (int i = 0; i < N_VOCAB; i++)
      if (fabs(lg[i] - ref[i]) > 1e-4 * (1 + fabs(ref[i])))
        fail_msg("token %d logit %d: %f vs reference %f", tok, i, lg[i], ref[i]);
  }
  tl_gguf_free(g);

  /* a batch of several tokens: every requested row is finite */
  tl_kv_clear(ctx, -1);
  tl_token bt[4] = {1, 4, 5, 7};
  int32_t bp[4] = {0, 1, 2, 3};
  int8_t bw[4] = {1, 0, 1, 1};
  tl_batch b = {.n_tokens = 4, .tokens = bt, .pos = bp, .logits = bw};
  assert_int_equal(tl_decode(ctx, &b), TL_OK);
  for (int r = 0; r < 3; r++) {
    const float *lg = tl_get_logits(ctx, r);
    assert_non_null(lg);
    for (int i = 0; i < N_VOCAB; i++) assert_true(isfinite(lg[i]));
  }
  tl_context_free(ctx);
  tl_model_free(m);

  /* GQA off (n_head_kv == n_head) and a v2 file load too */
  c.n_head_kv = 2;
  free(data);
  data = build_llama(&c, &n);
  memcpy(data + 4, &(uint32_t){2}, 4);
  assert_int_equal(load_bytes(data, n, &m), TL_OK);
  assert_int_equal(tl_model_n_vocab(m), N_VOCAB);
  tl_model_free(m);
  free(data);
}

/* ---- 5. the CLI ------------------------------------------------------------- */

static void expect_cli_error(const char *args) {
  char *out = NULL, *err = NULL;
  int rc = tl_test_run_cli(args, &out, &err);
  if (rc != 1)
    fail_msg("'%s': exit status %d (expected 1; -1 means a signal)\nstderr: %s", args, rc,
             err ? err : "");
  assert_non_null(err);
  if (!strstr(err, "error")) fail_msg("'%s': stderr lacks 'error': %s", args, err);
  if (strstr(err, "Sanitizer") || strstr(err, "runtime error"))
    fail_msg("'%s': sanitizer report: %s", args, err);
  print_message("  %s -> %s", args, err);
  free(out);
  free(err);
}

static void test_cli(void **state) {
  (void)state;
  if (access(TL_CLI_PATH, X_OK) != 0) {
    print_message("SKIPPED: %s not built\n", TL_CLI_PATH);
    skip();
  }
  char *path = tl_test_fixture_or_skip("llama/model-q8_0.gguf");
  if (!path) skip();
  size_t n;
  char *data = tl_test_read_file(path, &n);
  assert_non_null(data);
  char *cut = tl_test_tmpfile(".gguf");
  char args[1024];
  const size_t cuts[] = {n / 2, 100};
  for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
    assert_int_equal(tl_test_write_file(cut, data, cuts[i]), 0);
    snprintf(args, sizeof args, "run -m '%s' -p hello -n 1 -t 1", cut);
    expect_cli_error(args);
    snprintf(args, sizeof args, "tokenize -m '%s' -p hello", cut);
    expect_cli_error(args);
    snprintf(args, sizeof args, "'%s' hello", cut);
    expect_cli_error(args);
  }
  expect_cli_error("run -m /nonexistent/dir/model.gguf -p hello -n 1");
  expect_cli_error("/nonexistent/dir/model.gguf hello");
  /* a directory that is not a Hugging Face model folder (no config.json) */
  snprintf(args, sizeof args, "run -m '%s' -p hello -n 1", TL_TEST_DATA "/peer");
  expect_cli_error(args);
  snprintf(args, sizeof args, "tokenize -m '%s' -p hello", TL_TEST_DATA);
  expect_cli_error(args);
  unlink(cut);
  free(cut);
  free(data);
  free(path);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_roundtrip_all_types),
      cmocka_unit_test(test_no_tensors),
      cmocka_unit_test(test_fixture),
      cmocka_unit_test(test_truncation_fixture),
      cmocka_unit_test(test_truncation_writer),
      cmocka_unit_test(test_bad_header),
      cmocka_unit_test(test_bad_metadata),
      cmocka_unit_test(test_duplicate_keys),
      cmocka_unit_test(test_bad_tensor_info),
      cmocka_unit_test(test_duplicate_tensors),
      cmocka_unit_test(test_alignment),
      cmocka_unit_test(test_many_entries),
      cmocka_unit_test(test_model_semantic_errors),
      cmocka_unit_test(test_model_truncated_fixture),
      cmocka_unit_test(test_model_tiny_valid),
      cmocka_unit_test(test_cli),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
