/* What speculative decoding (src/spec/) needs of a sampler beyond the public
 * API: its parameters, its random numbers, a draw from given weights, and a
 * penalty history set from a token list. */
#ifndef TL_SAMPLE_H
#define TL_SAMPLE_H

#include "torchless.h"

const tl_sampler_params *tl_sampler_get_params(const tl_sampler *s);
/* Uniform in [0, 1) from the sampler's generator. */
double tl_sampler_rand(tl_sampler *s);
/* A token drawn with probability w[i] / sum(w) (negative and NaN weights
 * count as 0) from the sampler's generator; -1 when no weight is positive. */
tl_token tl_sampler_draw(tl_sampler *s, const float *w, int32_t n);
/* Replace the repetition history by the last repeat_last_n of toks[0, n). */
void tl_sampler_set_history(tl_sampler *s, const tl_token *toks, int32_t n);

#endif
