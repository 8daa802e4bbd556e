/* Helpers shared by the libFuzzer targets (tests/fuzz/fuzz_*.c). */
#ifndef TL_FUZZ_UTIL_H
#define TL_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "torchless.h"

#ifndef TL_FUZZ_DATA
#define TL_FUZZ_DATA "tests/data"
#endif

/* A fresh private directory (in /dev/shm when it exists); exits on failure. */
char *fz_tmpdir(void);
/* dir/name := data[0, n); exits on failure. */
void fz_write(const char *dir, const char *name, const void *data, size_t n);
/* Remove dir/name (absent is fine). */
void fz_unlink(const char *dir, const char *name);
/* dir/name -> target (a fixture), replacing what was there. */
void fz_symlink(const char *dir, const char *name, const char *target);
/* Tokenize a few fixed texts and text[0, n) (made valid UTF-8), detokenize
 * the results, and stream every token piece (up to a bound) through the
 * detokenizer: the calls must not crash whatever the vocabulary holds. */
void fz_exercise_vocab(const tl_model *m, const uint8_t *text, size_t n);
/* Splits data at the first "\n@@@@\n": *n1 bytes of part 1, part 2 after it
 * (NULL, 0 when there is no marker). */
void fz_split(const uint8_t *data, size_t size, size_t *n1, const uint8_t **p2, size_t *n2);

#endif
