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

/* Whole file into memory (NUL-terminated); NULL if unreadable. */
char *tl_test_read_file(const char *path, size_t *size);
/* Write a buffer to a file; 0 on success. */
int tl_test_write_file(const char *path, const void *data, size_t size);
/* A fresh temporary file path (malloc'd) in $TMPDIR or /tmp. */
char *tl_test_tmpfile(const char *suffix);

/* A float32 safetensors file (reference outputs). */
typedef struct tl_test_st tl_test_st;
tl_test_st *tl_test_st_open(const char *path);
/* Tensor data (float32) and shape; NULL if absent or not F32. */
const float *tl_test_st_get(const tl_test_st *st, const char *name, int64_t shape[4], int *ndim);
void tl_test_st_free(tl_test_st *st);

/* Relative L2 error ||a - b|| / ||b||. */
double tl_test_rel_err(const float *a, const float *b, size_t n);
/* Fraction of rows whose argmax agrees. */
double tl_test_argmax_agree(const float *a, const float *b, size_t rows, size_t cols);
int32_t tl_test_argmax(const float *x, size_t n);

/* Run the CLI (TL_CLI_PATH) with a shell argument string; captures stdout
 * (malloc'd, may be NULL) and returns the exit status (-1 on failure). */
int tl_test_run_cli(const char *args, char **out_stdout, char **out_stderr);

#endif
