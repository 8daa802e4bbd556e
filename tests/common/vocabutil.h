/* Shared helpers of the tokenizer tests (test_tokenizer_spm, test_tokenizer_bpe). */
#ifndef TL_VOCABUTIL_H
#define TL_VOCABUTIL_H

#include "testutil.h"
#include "tokenizer/tokenizer.h"

/* The vocabulary of a GGUF file; fails the test when it cannot be read. */
tl_vocab *tl_test_vocab_gguf(const char *path);

/* Tokenize into a malloc'd array (sized with a first call); *n ids. */
tl_token *tl_test_tokenize(const tl_vocab *v, const char *text, size_t len, bool bos, bool special,
                           size_t *n);

/* "  label: id id ..." (the first 64 ids). */
void tl_test_print_ids(const char *label, const tl_token *t, size_t n);

/* Concatenated pieces of the tokens (malloc'd, NUL-terminated), *len bytes. */
char *tl_test_pieces(const tl_vocab *v, const tl_token *t, size_t n, size_t *len);

/* The prompts of ARCH/reference.json (tl_test_load_prompts) tokenized by v,
 * BOS as v adds it and special tokens parsed, each text after prefix, against
 * their input_ids; a mismatch is printed ("MISMATCH ARCH prompt I: 'TEXT'"
 * and both id lists). Returns how many match; the number of prompts in
 * *n_prompts. */
int tl_test_reference_ids(const tl_vocab *v, const char *arch, const char *prefix, int *n_prompts);

/* llama.cpp's test-tokenizer-0 vectors: the texts of inp_path (separated by
 * "\n__ggml_vocab_test__\n") tokenized without BOS and special-token parsing
 * must give the ids on the matching line of out_path. With round_trip, the
 * pieces of the ids must also give the text back. Mismatches are printed; the
 * test fails unless every case matches and there are at least 40. Returns the
 * number of cases. */
int tl_test_vocab_cases(const tl_vocab *v, const char *inp_path, const char *out_path,
                        const char *label, bool round_trip);

#endif
