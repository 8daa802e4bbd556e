/* Speculative decoding: the verification of one drafted token, exposed for
 * the unit tests (tests/unit/test_spec.c), and a test-only switch to a wrong
 * rule, so that the statistical tests can show that they catch it. */
#ifndef TL_SPEC_H
#define TL_SPEC_H

#include "torchless.h"

typedef enum tl_spec_rule {
  TL_SPEC_RULE_EXACT = 0, /* on a rejection, draw from max(0, p - q) normalised */
  TL_SPEC_RULE_PLAIN = 1, /* WRONG, for tests: on a rejection, draw from p itself */
} tl_spec_rule;

/* Verify drafted token d against the target's distribution p[0, n) (as
 * tl_sampler_probs gives it; overwritten with the residual) and the draft's
 * q (NULL: the draft was fixed, q is 1 at d), with smp's random numbers:
 * keeps d with probability min(1, p[d] / q[d]), else draws from the
 * residual. Returns the token and whether it is the kept draft. */
tl_token tl_spec_verify_token(tl_sampler *smp, float *p, const float *q, int32_t n, tl_token d,
                              tl_spec_rule rule, bool *accepted);
/* The rule a generator uses on rejections (tests only). */
void tl_spec_set_rule(tl_spec *sp, tl_spec_rule rule);

#endif
