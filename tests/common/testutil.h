/* Shared helpers for the test suite (cmocka). */
#ifndef TL_TESTUTIL_H
#define TL_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "torchless.h"

/* Path of a fixture file: the repository's tests/data/REL if it exists, else
 * ../shared/fixtures/models/REL (for model files) or ../shared/fixtures/REL.
 * Returns a malloc'd path or NULL when the file is in neither place. */
char *tl_test_fixture(const char *rel);
/* Like tl_test_fixture, but when the file is absent prints
 * "SKIPPED: <rel> (fixture not found)" and returns NULL. */
char *tl_test_fixture_or_skip(const char *rel);
/* tl_test_fixture_or_skip of a printf-formatted path. */
char *tl_test_fixture_or_skipf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Both paths or neither: when *a or *b is NULL (a fixture not found), frees
 * the other, sets both to NULL and returns false. */
bool tl_test_both(char **a, char **b);

/* Whole file into memory (NUL-terminated); NULL if unreadable. */
char *tl_test_read_file(const char *path, size_t *size);
/* Write a buffer to a file; 0 on success. */
int tl_test_write_file(const char *path, const void *data, size_t size);
/* Fails the test unless files a and b both read and hold the same bytes. */
void tl_test_assert_same_file(const char *a, const char *b);
/* A fresh temporary file path (malloc'd) in $TMPDIR or /tmp. */
char *tl_test_tmpfile(const char *suffix);

/* A float32 safetensors file (reference outputs). */
typedef struct tl_test_st tl_test_st;
tl_test_st *tl_test_st_open(const char *path);
/* Tensor data (float32) and shape; NULL if absent or not F32. */
const float *tl_test_st_get(const tl_test_st *st, const char *name, int64_t shape[4], int *ndim);
/* The reference logits of prompt pi's n_rows tokens ([n_rows][nv]):
 * "logits.pi" (one pass over the prompt), or where a file lacks it the first
 * n_rows rows of "logits_full.pi" (one pass over the prompt and its greedy
 * continuation: the same rows bit for bit in every fixture of a dense
 * model, so the repository's copies keep only those); NULL if neither fits. */
const float *tl_test_ref_logits(const tl_test_st *st, int pi, int64_t n_rows, int64_t nv);
void tl_test_st_free(tl_test_st *st);

/* Uniform in [-1, 1): a xorshift64 step of *state (each test file keeps
 * its own seed). */
float tl_test_frand(uint64_t *state);

/* Relative L2 error ||a - b|| / ||b||. */
double tl_test_rel_err(const float *a, const float *b, size_t n);
/* Fraction of rows whose argmax agrees. */
double tl_test_argmax_agree(const float *a, const float *b, size_t rows, size_t cols);
int32_t tl_test_argmax(const float *x, size_t n);

/* ---- fixture models and prompts ---- */

/* A prompt of ARCH/reference.json: its text, input_ids (ids, n_ids) and the
 * reference's greedy continuation (greedy, n_greedy), which also follows the
 * prompt in ids (ids holds n_ids + n_greedy tokens). */
typedef struct tl_test_prompt {
  char *text;
  tl_token *ids;
  int n_ids;
  tl_token greedy[64];
  int n_greedy;
} tl_test_prompt;
/* The prompts of ARCH (at most max); fails the test when unreadable. */
int tl_test_load_prompts(const char *arch, tl_test_prompt *ps, int max);
void tl_test_free_prompts(tl_test_prompt *ps, int n);

/* The fixture model ARCH in TYPE: "hf" is the Hugging Face folder, else
 * ARCH/model-TYPE.gguf. NULL (after "SKIPPED: ...") when absent. */
char *tl_test_model_path(const char *arch, const char *type);
/* tl_model_load with default parameters; fails the test on an error. */
tl_model *tl_test_load_model(const char *path);
/* tl_context_default_params with 2 threads and the backend under test
 * (tl_test_backend). */
tl_context_params tl_test_ctx_params(void);
/* tl_context_new; fails the test on an error. */
tl_context *tl_test_ctx(tl_model *m, const tl_context_params *cp);
/* Whether the backend under test refuses this model for what it lacks (a
 * weight type without kernels, a mixture of experts) with its message:
 * then prints SKIPPED with `what` and returns true (the caller frees and
 * skips). Any other failure, or any on the CPU, fails the test. */
bool tl_test_backend_refuses(tl_model *m, const char *what);
/* A context of n_ctx tokens, 2 threads, KV cache kv, on tl_test_backend;
 * fails the test on an error. */
tl_context *tl_test_new_ctx(tl_model *m, tl_kv_type kv, int n_ctx);
/* Prefill n tokens (positions 0..n-1) from an empty cache, every logit into
 * out[n][nv]. */
void tl_test_prefill(tl_context *c, const tl_token *ids, int n, float *out, int nv);

/* ---- one group of tests per backend ---- */

/* The backend the tests' contexts use (tl_test_ctx_params, tl_test_new_ctx):
 * a name of tl_backend_names(), or NULL for the library's default. */
extern const char *tl_test_backend;
/* tl_test_backend's name, "auto" when it is NULL. */
const char *tl_test_backend_name(void);
/* The backends to test: tl_backend_names() but opencl, or the
 * comma-separated list of the environment variable TL_TEST_BACKENDS (a GPU
 * machine runs TL_TEST_BACKENDS=cuda; ctest's *_opencl tests
 * TL_TEST_BACKENDS=opencl), less those that cannot make a context for the demo
 * model (tests/data/demo/model-q8_0.gguf), which are reported as
 * "SKIPPED: backend NAME: <tl_last_error()>". At most max names into names;
 * returns their count. */
int tl_test_backends(const char **names, int max);
/* Runs the tests as the cmocka group "GROUP BACKEND" with tl_test_backend
 * set to backend and every name prefixed "BACKEND: " ("cpu: reference llama
 * q8_0"). A TL_TEST_FILTER / TL_TEST_SKIP pattern without a ':' matches the
 * names without that prefix. Returns the number of failed tests. */
int tl_test_run_on_backend(const char *backend, const char *group, const struct CMUnitTest *tests,
                           size_t n);
/* The usual main of a test file whose tests run once per backend: for every
 * backend of tl_test_backends, make(backend, tests, max) fills tests (the
 * tests for that backend, at most max) and returns their count, and they
 * run by tl_test_run_on_backend. Returns 0 when every group passed, 1 when
 * a test failed or TL_TEST_BACKENDS named backends of which none could run. */
int tl_test_main_per_backend(const char *group,
                             int (*make)(const char *backend, struct CMUnitTest *tests, int max));

/* Run the CLI (TL_CLI_PATH) with a shell argument string; captures stdout
 * (malloc'd, may be NULL) and returns the exit status (-1 on failure). */
int tl_test_run_cli(const char *args, char **out_stdout, char **out_stderr);

#endif
