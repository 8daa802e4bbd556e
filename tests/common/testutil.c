#include "testutil.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* TL_TEST_FILTER / TL_TEST_SKIP: cmocka patterns (* and ?) naming the tests
 * to run / to leave out, in the test binaries that use this file's helpers
 * (`make test-neon` runs a few reference cases under qemu). */
__attribute__((constructor)) static void test_filters(void) {
  const char *run = getenv("TL_TEST_FILTER"), *skip = getenv("TL_TEST_SKIP");
  if (run && *run) cmocka_set_test_filter(run);
  if (skip && *skip) cmocka_set_skip_filter(skip);
}

static int file_exists(const char *p) {
  struct stat st;
  return stat(p, &st) == 0;
}

static char *join(const char *a, const char *b) {
  size_t n = strlen(a) + strlen(b) + 2;
  char *s = malloc(n);
  snprintf(s, n, "%s/%s", a, b);
  return s;
}

char *tl_test_fixture(const char *rel) {
  char *p = join(TL_TEST_DATA, rel);
  if (file_exists(p)) return p;
  free(p);
  char *models = join(TL_SHARED_FIXTURES, "models");
  p = join(models, rel);
  free(models);
  if (file_exists(p)) return p;
  free(p);
  p = join(TL_SHARED_FIXTURES, rel);
  if (file_exists(p)) return p;
  free(p);
  return NULL;
}

char *tl_test_fixture_or_skip(const char *rel) {
  char *p = tl_test_fixture(rel);
  if (!p) printf("SKIPPED: %s (fixture not found in tests/data or ../shared/fixtures)\n", rel);
  return p;
}

char *tl_test_fixture_or_skipf(const char *fmt, ...) {
  char rel[1024];
  va_list ap;
  va_start(ap, fmt);
  const int n = vsnprintf(rel, sizeof rel, fmt, ap);
  va_end(ap);
  assert_true(n >= 0 && (size_t)n < sizeof rel);
  return tl_test_fixture_or_skip(rel);
}

bool tl_test_both(char **a, char **b) {
  if (*a && *b) return true;
  free(*a);
  free(*b);
  *a = *b = NULL;
  return false;
}

char *tl_test_read_file(const char *path, size_t *size) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  if (fseek(f, 0, SEEK_END) != 0) {
    fclose(f);
    return NULL;
  }
  long n = ftell(f);
  if (n < 0) {
    fclose(f);
    return NULL;
  }
  rewind(f);
  char *buf = malloc((size_t)n + 1);
  if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
    free(buf);
    buf = NULL;
  }
  fclose(f);
  if (buf) {
    buf[n] = 0;
    if (size) *size = (size_t)n;
  }
  return buf;
}

void tl_test_assert_same_file(const char *a, const char *b) {
  size_t na = 0, nb = 0;
  char *x = tl_test_read_file(a, &na), *y = tl_test_read_file(b, &nb);
  assert_non_null(x);
  assert_non_null(y);
  assert_int_equal(na, nb);
  assert_memory_equal(x, y, na);
  free(x);
  free(y);
}

int tl_test_write_file(const char *path, const void *data, size_t size) {
  FILE *f = fopen(path, "wb");
  if (!f) return -1;
  size_t w = fwrite(data, 1, size, f);
  int rc = fclose(f);
  return (w == size && rc == 0) ? 0 : -1;
}

char *tl_test_tmpfile(const char *suffix) {
  const char *dir = getenv("TMPDIR");
  if (!dir || !*dir) dir = "/tmp";
  static unsigned counter;
  char buf[4096];
  snprintf(buf, sizeof buf, "%s/tl_test_%d_%u%s", dir, (int)getpid(), counter++,
           suffix ? suffix : "");
  return strdup(buf);
}

struct tl_test_st {
  char *data;
  size_t size;
  size_t base;
  cJSON *header;
};

tl_test_st *tl_test_st_open(const char *path) {
  size_t size = 0;
  char *data = tl_test_read_file(path, &size);
  if (!data || size < 8) {
    free(data);
    return NULL;
  }
  uint64_t hlen;
  memcpy(&hlen, data, 8);
  if (hlen > size - 8) {
    free(data);
    return NULL;
  }
  cJSON *h = cJSON_ParseWithLength(data + 8, (size_t)hlen);
  if (!h) {
    free(data);
    return NULL;
  }
  tl_test_st *st = calloc(1, sizeof *st);
  st->data = data;
  st->size = size;
  st->base = 8 + (size_t)hlen;
  st->header = h;
  return st;
}

const float *tl_test_st_get(const tl_test_st *st, const char *name, int64_t shape[4], int *ndim) {
  cJSON *t = cJSON_GetObjectItemCaseSensitive(st->header, name);
  if (!t) return NULL;
  cJSON *dt = cJSON_GetObjectItemCaseSensitive(t, "dtype");
  cJSON *sh = cJSON_GetObjectItemCaseSensitive(t, "shape");
  cJSON *off = cJSON_GetObjectItemCaseSensitive(t, "data_offsets");
  if (!cJSON_IsString(dt) || strcmp(dt->valuestring, "F32") != 0 || !cJSON_IsArray(sh) ||
      !cJSON_IsArray(off))
    return NULL;
  int nd = cJSON_GetArraySize(sh);
  if (nd > 4) return NULL;
  size_t numel = 1;
  for (int i = 0; i < nd; i++) {
    shape[i] = (int64_t)cJSON_GetArrayItem(sh, i)->valuedouble;
    numel *= (size_t)shape[i];
  }
  *ndim = nd;
  size_t b = (size_t)cJSON_GetArrayItem(off, 0)->valuedouble;
  size_t e = (size_t)cJSON_GetArrayItem(off, 1)->valuedouble;
  if (e < b || e - b != numel * 4 || st->base + e > st->size) return NULL;
  return (const float *)(st->data + st->base + b);
}

const float *tl_test_ref_logits(const tl_test_st *st, int pi, int64_t n_rows, int64_t nv) {
  char name[64];
  int64_t sh[4];
  int nd;
  snprintf(name, sizeof name, "logits.%d", pi);
  const float *r = tl_test_st_get(st, name, sh, &nd);
  if (r) return nd == 2 && sh[0] == n_rows && sh[1] == nv ? r : NULL;
  snprintf(name, sizeof name, "logits_full.%d", pi);
  r = tl_test_st_get(st, name, sh, &nd);
  return r && nd == 2 && sh[0] >= n_rows && sh[1] == nv ? r : NULL;
}

void tl_test_st_free(tl_test_st *st) {
  if (!st) return;
  cJSON_Delete(st->header);
  free(st->data);
  free(st);
}

double tl_test_rel_err(const float *a, const float *b, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; i++) {
    double d = (double)a[i] - (double)b[i];
    num += d * d;
    den += (double)b[i] * (double)b[i];
  }
  if (den == 0) return num == 0 ? 0 : INFINITY;
  return sqrt(num / den);
}

float tl_test_frand(uint64_t *state) {
  uint64_t x = *state;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  *state = x;
  return (float)((x >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

int32_t tl_test_argmax(const float *x, size_t n) {
  size_t best = 0;
  for (size_t i = 1; i < n; i++)
    if (x[i] > x[best]) best = i;
  return (int32_t)best;
}

double tl_test_argmax_agree(const float *a, const float *b, size_t rows, size_t cols) {
  size_t agree = 0;
  for (size_t r = 0; r < rows; r++)
    agree += tl_test_argmax(a + r * cols, cols) == tl_test_argmax(b + r * cols, cols);
  return rows ? (double)agree / (double)rows : 1.0;
}

static char *slurp_fd(int fd) {
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap);
  for (;;) {
    if (n + 1 >= cap) {
      cap *= 2;
      buf = realloc(buf, cap);
    }
    ssize_t r = read(fd, buf + n, cap - n - 1);
    if (r <= 0) break;
    n += (size_t)r;
  }
  buf[n] = 0;
  return buf;
}

int tl_test_run_cli(const char *args, char **out_stdout, char **out_stderr) {
  char *errpath = tl_test_tmpfile(".err");
  size_t n = strlen(TL_CLI_PATH) + strlen(args) + strlen(errpath) + 16;
  char *cmd = malloc(n);
  snprintf(cmd, n, "'%s' %s 2>'%s'", TL_CLI_PATH, args, errpath);
  FILE *p = popen(cmd, "r");
  free(cmd);
  if (!p) {
    free(errpath);
    return -1;
  }
  char *out = slurp_fd(fileno(p));
  int st = pclose(p);
  if (out_stdout)
    *out_stdout = out;
  else
    free(out);
  if (out_stderr) *out_stderr = tl_test_read_file(errpath, NULL);
  unlink(errpath);
  free(errpath);
  if (st == -1 || !WIFEXITED(st)) return -1;
  return WEXITSTATUS(st);
}

/* ---- fixture models and prompts ---------------------------------------- */

int tl_test_load_prompts(const char *arch, tl_test_prompt *ps, int max) {
  char rel[256];
  snprintf(rel, sizeof rel, "%s/reference.json", arch);
  char *path = tl_test_fixture(rel);
  assert_non_null(path);
  char *txt = tl_test_read_file(path, NULL);
  free(path);
  assert_non_null(txt);
  cJSON *j = cJSON_Parse(txt), *p;
  free(txt);
  assert_non_null(j);
  int n = 0;
  cJSON_ArrayForEach(p, cJSON_GetObjectItem(j, "prompts")) {
    assert_true(n < max);
    tl_test_prompt *q = &ps[n];
    cJSON *ids = cJSON_GetObjectItem(p, "input_ids"), *gr = cJSON_GetObjectItem(p, "greedy");
    cJSON *text = cJSON_GetObjectItem(p, "text");
    assert_true(cJSON_IsArray(ids) && cJSON_IsString(text));
    q->text = strdup(text->valuestring);
    q->n_ids = cJSON_GetArraySize(ids);
    q->n_greedy = cJSON_IsArray(gr) ? cJSON_GetArraySize(gr) : 0;
    assert_true(q->n_greedy <= 64);
    q->ids = malloc(sizeof(tl_token) * (size_t)(q->n_ids + q->n_greedy + 1));
    assert_non_null(q->ids);
    for (int i = 0; i < q->n_ids; i++) q->ids[i] = (tl_token)cJSON_GetArrayItem(ids, i)->valueint;
    for (int i = 0; i < q->n_greedy; i++) {
      q->greedy[i] = (tl_token)cJSON_GetArrayItem(gr, i)->valueint;
      q->ids[q->n_ids + i] = q->greedy[i];
    }
    n++;
  }
  cJSON_Delete(j);
  return n;
}

void tl_test_free_prompts(tl_test_prompt *ps, int n) {
  for (int i = 0; i < n; i++) {
    free(ps[i].text);
    free(ps[i].ids);
  }
}

char *tl_test_model_path(const char *arch, const char *type) {
  char rel[256];
  const bool hf = !strcmp(type, "hf");
  if (hf)
    snprintf(rel, sizeof rel, "%s/config.json", arch);
  else
    snprintf(rel, sizeof rel, "%s/model-%s.gguf", arch, type);
  char *p = tl_test_fixture_or_skip(rel);
  if (p && hf) *strrchr(p, '/') = 0;
  return p;
}

tl_model *tl_test_load_model(const char *path) {
  tl_model *m = NULL;
  if (tl_model_load(path, NULL, &m) != TL_OK) fail_msg("loading %s: %s", path, tl_last_error());
  return m;
}

tl_context_params tl_test_ctx_params(void) {
  tl_context_params cp = tl_context_default_params();
  cp.n_threads = 2;
  cp.backend = tl_test_backend;
  return cp;
}

bool tl_test_backend_refuses(tl_model *m, const char *what) {
  tl_context_params cp = tl_test_ctx_params();
  cp.n_ctx = 16;
  tl_context *c = NULL;
  if (tl_context_new(m, &cp, &c) == TL_OK) {
    tl_context_free(c);
    return false;
  }
  const char *e = tl_last_error();
  if (!strcmp(tl_test_backend_name(), "cpu") ||
      (!strstr(e, "cannot multiply") && !strstr(e, "cannot run a mixture of experts")))
    fail_msg("%s: %s", what, e);
  printf("SKIPPED: %s on %s: %s\n", what, tl_test_backend_name(), e);
  return true;
}

tl_context *tl_test_ctx(tl_model *m, const tl_context_params *cp) {
  tl_context *c = NULL;
  if (tl_context_new(m, cp, &c) != TL_OK) fail_msg("context: %s", tl_last_error());
  return c;
}

tl_context *tl_test_new_ctx(tl_model *m, tl_kv_type kv, int n_ctx) {
  tl_context_params cp = tl_test_ctx_params();
  cp.n_ctx = n_ctx;
  cp.kv_type = kv;
  return tl_test_ctx(m, &cp);
}

void tl_test_prefill(tl_context *c, const tl_token *ids, int n, float *out, int nv) {
  int32_t *pos = malloc(sizeof(int32_t) * (size_t)n);
  int8_t *want = malloc((size_t)n);
  assert_true(pos && want);
  for (int i = 0; i < n; i++) {
    pos[i] = i;
    want[i] = 1;
  }
  tl_kv_clear(c, -1);
  tl_batch b = {.n_tokens = n, .tokens = ids, .pos = pos, .logits = want};
  if (tl_decode(c, &b) != TL_OK) fail_msg("decode: %s", tl_last_error());
  for (int i = 0; i < n; i++) memcpy(out + (size_t)i * nv, tl_get_logits(c, i), sizeof(float) * nv);
  free(pos);
  free(want);
}

/* ---- one group of tests per backend ------------------------------------- */

const char *tl_test_backend = NULL;

const char *tl_test_backend_name(void) {
  return tl_test_backend ? tl_test_backend : "auto";
}

int tl_test_backends(const char **names, int max) {
  static char list[512];
  const char *want[32];
  int n_want = 0;
  const char *env = getenv("TL_TEST_BACKENDS");
  if (env && *env) {
    snprintf(list, sizeof list, "%s", env);
    char *save = NULL;
    for (char *t = strtok_r(list, ", ", &save); t && n_want < 32; t = strtok_r(NULL, ", ", &save))
      want[n_want++] = t;
  } else {
    /* OpenCL only when named (ctest's *_opencl entries): like "auto", the
     * suite does not pick it by itself, as on PoCL's CPU device it is far
     * slower than the CPU backend */
    for (const char *const *b = tl_backend_names(); *b && n_want < 32; b++)
      if (strcmp(*b, "opencl")) want[n_want++] = *b;
  }
  /* a backend is tested if it can make a context for the demo model */
  char *demo = tl_test_fixture("demo/model-q8_0.gguf");
  tl_model *m = NULL;
  if (!demo || tl_model_load(demo, NULL, &m) != TL_OK) {
    printf("no demo model to probe the backends with (%s): testing every one\n",
           demo ? tl_last_error() : "demo/model-q8_0.gguf not found");
    m = NULL;
  }
  free(demo);
  int n = 0;
  for (int i = 0; i < n_want && n < max; i++) {
    if (m) {
      tl_context_params cp = tl_context_default_params();
      cp.n_ctx = 64;
      cp.n_threads = 1;
      cp.backend = want[i];
      tl_context *c = NULL;
      if (tl_context_new(m, &cp, &c) != TL_OK) {
        printf("SKIPPED: %s (backend %s)\n", tl_last_error(), want[i]);
        continue;
      }
      printf("backend %s: %s (%s)\n", want[i], tl_context_backend(c), tl_context_kernels(c));
      tl_context_free(c);
    }
    names[n++] = want[i];
  }
  tl_model_free(m);
  return n;
}

/* TL_TEST_FILTER / TL_TEST_SKIP for the names of one backend's group: a
 * pattern without a ':' gets the "BACKEND: " prefix. */
static const char *backend_pattern(const char *var, const char *backend, char *buf, size_t cap) {
  const char *p = getenv(var);
  if (!p || !*p) return NULL;
  if (strchr(p, ':')) return p;
  snprintf(buf, cap, "%s: %s", backend, p);
  return buf;
}

int tl_test_run_on_backend(const char *backend, const char *group, const struct CMUnitTest *tests,
                           size_t n) {
  if (n == 0) return 0;
  /* cmocka keeps the pattern pointers */
  static char run_buf[512], skip_buf[512];
  const char *run = backend_pattern("TL_TEST_FILTER", backend, run_buf, sizeof run_buf);
  const char *skip = backend_pattern("TL_TEST_SKIP", backend, skip_buf, sizeof skip_buf);
  if (run) cmocka_set_test_filter(run);
  if (skip) cmocka_set_skip_filter(skip);
  struct CMUnitTest *t = calloc(n, sizeof *t);
  char(*names)[192] = calloc(n, sizeof *names);
  assert_true(t && names);
  for (size_t i = 0; i < n; i++) {
    snprintf(names[i], sizeof names[i], "%s: %s", backend, tests[i].name);
    t[i] = tests[i];
    t[i].name = names[i];
  }
  char gname[192];
  snprintf(gname, sizeof gname, "%s %s", group, backend);
  tl_test_backend = backend;
  const int failed = _cmocka_run_group_tests(gname, t, n, NULL, NULL);
  tl_test_backend = NULL;
  free(t);
  free(names);
  return failed;
}

int tl_test_main_per_backend(const char *group,
                             int (*make)(const char *backend, struct CMUnitTest *tests, int max)) {
  const char *backends[32];
  const int nb = tl_test_backends(backends, 32);
  if (nb == 0) {
    /* TL_TEST_ABSENT_SKIPS=1 (ctest's *_opencl entries): a machine without
     * the device skips, as test_backend_ops does */
    const char *skips = getenv("TL_TEST_ABSENT_SKIPS");
    if (skips && !strcmp(skips, "1")) {
      printf("SKIPPED: %s: none of TL_TEST_BACKENDS=%s can run here\n", group,
             getenv("TL_TEST_BACKENDS") ? getenv("TL_TEST_BACKENDS") : "");
      return 0;
    }
    printf("%s: no backend can run (TL_TEST_BACKENDS=%s)\n", group,
           getenv("TL_TEST_BACKENDS") ? getenv("TL_TEST_BACKENDS") : "");
    return 1;
  }
  int failed = 0;
  static struct CMUnitTest tests[256];
  for (int i = 0; i < nb; i++) {
    const int n = make(backends[i], tests, 256);
    failed += tl_test_run_on_backend(backends[i], group, tests, (size_t)n);
  }
  return failed ? 1 : 0;
}
