/* Speculative decoding over the public API: a draft (a small model's
 * context, or prompt lookup) proposes tokens, the target verifies them in
 * one tl_decode, rejected positions leave both caches through tl_kv_seq_rm.
 * See torchless.h (tl_spec_*) for the contract and the acceptance rule.
 *
 * The generator keeps the sequence (h[0, n)) and, for each cache, the tokens
 * it holds (a record): between steps the target holds h[0, n - 1) (the last
 * token is decoded by the next verification, with the drafts after it), the
 * draft some prefix of h. Each cache is brought to what a step needs by
 * keeping the common prefix of its record and decoding the rest, which also
 * gives tl_spec_begin its prefix reuse (a chat's earlier turns). */
#include "spec/spec.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "sample/sample.h"

#define TL_SPEC_MAX_DRAFT 64
#define TL_SPEC_MAX_LOOKUP 16

struct tl_spec {
  tl_context *tc, *dc; /* target, draft (NULL: prompt lookup) */
  const tl_model *tm;
  tl_spec_params p;
  int32_t n_vocab, n_ctx, n_dctx;
  tl_token *h; /* the sequence */
  int32_t n, h_cap;
  tl_token *trec, *drec; /* what each cache holds */
  int32_t tn, dn;
  int32_t k_cur;    /* the adaptive draft length */
  tl_sampler *dsmp; /* the draft's sampler: the target sampler's parameters */
  tl_sampler_params dsmp_params;
  float *q;    /* [n_max][n_vocab]: the draft's distributions (sampling) */
  float *pbuf; /* [n_vocab] */
  tl_token draft[TL_SPEC_MAX_DRAFT];
  tl_token *btok; /* batch scratch, n_ctx + 1 entries */
  int32_t *bpos, *bseq;
  int8_t *bwant;
  tl_spec_stats st;
  tl_spec_rule rule;
};

tl_spec_params tl_spec_default_params(void) {
  return (tl_spec_params){.n_max = 12, .n_min = 0, .p_min = 0.75f, .lookup = 3, .seq = 0};
}

void tl_spec_set_rule(tl_spec *sp, tl_spec_rule rule) {
  sp->rule = rule;
}

/* ---- vocabularies ------------------------------------------------------------ */

static void quote_piece(const tl_model *m, tl_token t, char *out, size_t cap) {
  char buf[64];
  int32_t len = tl_token_to_piece(m, t, buf, sizeof buf);
  if (len < 0) {
    snprintf(out, cap, "(invalid)");
    return;
  }
  size_t k = 0;
  out[k++] = '\'';
  for (int32_t i = 0; i < len && i < (int32_t)sizeof buf && k + 6 < cap; i++) {
    unsigned char ch = (unsigned char)buf[i];
    if (ch < 0x20 || ch == 0x7f || ch == '\'' || ch == '\\')
      k += (size_t)snprintf(out + k, cap - k, "\\x%02x", ch);
    else
      out[k++] = (char)ch;
  }
  if (len > (int32_t)sizeof buf && k + 4 < cap) k += (size_t)snprintf(out + k, cap - k, "...");
  out[k++] = '\'';
  out[k] = 0;
}

tl_status tl_spec_check_vocab(const tl_model *target, const tl_model *draft) {
  if (!target || !draft) return tl_fail(TL_ERR_INVALID_ARG, "speculative: a model is NULL");
  int32_t nt = tl_model_n_vocab(target), nd = tl_model_n_vocab(draft);
  int32_t n = nt < nd ? nt : nd;
  char a[256], b[256], pa[300], pb[300];
  for (int32_t t = 0; t < n; t++) {
    int32_t la = tl_token_to_piece(target, t, a, sizeof a);
    int32_t lb = tl_token_to_piece(draft, t, b, sizeof b);
    bool same = la == lb && (la < 0 || memcmp(a, b, (size_t)(la < 256 ? la : 256)) == 0);
    if (!same) {
      quote_piece(target, t, pa, sizeof pa);
      quote_piece(draft, t, pb, sizeof pb);
      return tl_fail(TL_ERR_INVALID_ARG,
                     "the draft model's vocabulary differs from the target's: token %d is %s in "
                     "the target, %s in the draft",
                     (int)t, pa, pb);
    }
  }
  if (nt != nd) {
    const tl_model *big = nt > nd ? target : draft;
    quote_piece(big, n, pa, sizeof pa);
    return tl_fail(TL_ERR_INVALID_ARG,
                   "the draft model's vocabulary differs from the target's: the target has %d "
                   "tokens, the draft %d (token %d is %s in the %s only)",
                   (int)nt, (int)nd, (int)n, pa, nt > nd ? "target" : "draft");
  }
  if (tl_token_bos(target) != tl_token_bos(draft) || tl_token_eos(target) != tl_token_eos(draft))
    return tl_fail(TL_ERR_INVALID_ARG,
                   "the draft model's special tokens differ from the target's: BOS %d / EOS %d in "
                   "the target, %d / %d in the draft",
                   (int)tl_token_bos(target), (int)tl_token_eos(target), (int)tl_token_bos(draft),
                   (int)tl_token_eos(draft));
  return TL_OK;
}

/* ---- life cycle -------------------------------------------------------------- */

void tl_spec_free(tl_spec *sp) {
  if (!sp) return;
  free(sp->h);
  free(sp->trec);
  free(sp->drec);
  free(sp->q);
  free(sp->pbuf);
  free(sp->btok);
  free(sp->bpos);
  free(sp->bseq);
  free(sp->bwant);
  tl_sampler_free(sp->dsmp);
  free(sp);
}

tl_status tl_spec_new(tl_context *target, tl_context *draft, const tl_spec_params *params,
                      tl_spec **out) {
  if (!out) return tl_fail(TL_ERR_INVALID_ARG, "speculative: out is NULL");
  *out = NULL;
  if (!target) return tl_fail(TL_ERR_INVALID_ARG, "speculative: no target context");
  tl_spec_params p = params ? *params : tl_spec_default_params();
  if (p.n_max < 1 || p.n_max > TL_SPEC_MAX_DRAFT)
    return tl_fail(TL_ERR_INVALID_ARG, "speculative: draft-max must be in 1..%d (got %d)",
                   TL_SPEC_MAX_DRAFT, (int)p.n_max);
  if (p.n_min < 0 || p.n_min > p.n_max)
    return tl_fail(TL_ERR_INVALID_ARG,
                   "speculative: draft-min must be in 0..draft-max (%d), got %d", (int)p.n_max,
                   (int)p.n_min);
  if (!(p.p_min >= 0.0f && p.p_min <= 1.0f))
    return tl_fail(TL_ERR_INVALID_ARG, "speculative: draft-p-min must be in [0, 1] (got %g)",
                   (double)p.p_min);
  if (!draft && (p.lookup < 1 || p.lookup > TL_SPEC_MAX_LOOKUP))
    return tl_fail(TL_ERR_INVALID_ARG, "speculative: the lookup n-gram must be in 1..%d (got %d)",
                   TL_SPEC_MAX_LOOKUP, (int)p.lookup);
  const tl_model *tm = tl_context_model(target);
  if (draft) {
    tl_status s = tl_spec_check_vocab(tm, tl_context_model(draft));
    if (s) return s;
  }
  tl_spec *sp = calloc(1, sizeof *sp);
  if (!sp) return tl_fail(TL_ERR_NOMEM, "speculative: out of memory");
  sp->tc = target;
  sp->dc = draft;
  sp->tm = tm;
  sp->p = p;
  sp->n_vocab = tl_model_n_vocab(tm);
  sp->n_ctx = tl_context_n_ctx(target);
  sp->n_dctx = draft ? tl_context_n_ctx(draft) : 0;
  sp->k_cur = p.n_max < 4 ? p.n_max : 4;
  if (sp->k_cur < p.n_min) sp->k_cur = p.n_min;
  size_t cap = (size_t)sp->n_ctx + TL_SPEC_MAX_DRAFT + 2;
  size_t dcap = (size_t)sp->n_dctx + TL_SPEC_MAX_DRAFT + 2;
  sp->h_cap = (int32_t)cap;
  sp->h = tl_malloc_array(cap, sizeof(tl_token));
  sp->trec = tl_malloc_array(cap, sizeof(tl_token));
  sp->drec = tl_malloc_array(dcap, sizeof(tl_token));
  size_t bcap = cap > dcap ? cap : dcap;
  sp->btok = tl_malloc_array(bcap, sizeof(tl_token));
  sp->bpos = tl_malloc_array(bcap, sizeof(int32_t));
  sp->bseq = tl_malloc_array(bcap, sizeof(int32_t));
  sp->bwant = malloc(bcap);
  sp->pbuf = tl_malloc_array((size_t)sp->n_vocab, sizeof(float));
  sp->q = tl_malloc_array((size_t)p.n_max * (size_t)sp->n_vocab, sizeof(float));
  if (!sp->h || !sp->trec || !sp->drec || !sp->btok || !sp->bpos || !sp->bseq || !sp->bwant ||
      !sp->pbuf || !sp->q) {
    tl_spec_free(sp);
    return tl_fail(TL_ERR_NOMEM, "speculative: out of memory");
  }
  tl_kv_clear(target, p.seq);
  if (draft) tl_kv_clear(draft, 0);
  *out = sp;
  return TL_OK;
}

int32_t tl_spec_n_tokens(const tl_spec *sp) {
  return sp ? sp->n : 0;
}

void tl_spec_get_stats(const tl_spec *sp, tl_spec_stats *out) {
  if (sp && out) *out = sp->st;
}

void tl_spec_reset_stats(tl_spec *sp) {
  if (sp) memset(&sp->st, 0, sizeof sp->st);
}

/* ---- caches ------------------------------------------------------------------- */

static int32_t common_prefix(const tl_token *a, int32_t na, const tl_token *b, int32_t nb) {
  int32_t n = na < nb ? na : nb, i = 0;
  while (i < n && a[i] == b[i]) i++;
  return i;
}

/* Drop what a cache holds from position p on. */
static tl_status cut(tl_context *c, int32_t seq, int32_t *rn, int32_t p) {
  if (*rn <= p) return TL_OK;
  tl_status s = tl_kv_seq_rm(c, seq, p, -1);
  if (s == TL_OK) *rn = p;
  return s;
}

/* Make c's sequence seq hold want[0, n): keep the common prefix with the
 * record, decode the rest (at least the last token when logits is set:
 * its logits are then row 0 of tl_get_logits). On an error the cache and
 * the record are left at the common prefix. */
static tl_status bring(tl_spec *sp, tl_context *c, int32_t seq, tl_token *rec, int32_t *rn,
                       const tl_token *want, int32_t n, bool logits) {
  int32_t p = common_prefix(rec, *rn, want, n);
  if (logits && p == n) p = n - 1;
  tl_status s = cut(c, seq, rn, p);
  if (s) return s;
  if (p == n) return TL_OK;
  int32_t k = n - p;
  for (int32_t i = 0; i < k; i++) {
    sp->bpos[i] = p + i;
    sp->bseq[i] = seq;
    sp->bwant[i] = logits && i == k - 1;
  }
  tl_batch b = {
      .n_tokens = k, .tokens = want + p, .pos = sp->bpos, .seq = sp->bseq, .logits = sp->bwant};
  s = tl_decode(c, &b);
  if (s) {
    tl_kv_seq_rm(c, seq, p, -1);
    return s;
  }
  memcpy(rec + p, want + p, sizeof(tl_token) * (size_t)k);
  *rn = n;
  return TL_OK;
}

tl_status tl_spec_begin(tl_spec *sp, const tl_token *toks, int32_t n) {
  if (!sp || !toks || n < 1)
    return tl_fail(TL_ERR_INVALID_ARG, "speculative: tl_spec_begin needs at least one token");
  if (n > sp->n_ctx)
    return tl_fail(TL_ERR_CONTEXT_FULL, "speculative: %d tokens do not fit in the context of %d",
                   (int)n, (int)sp->n_ctx);
  int64_t t0 = tl_time_us();
  memcpy(sp->h, toks, sizeof(tl_token) * (size_t)n);
  sp->n = n;
  tl_status s = bring(sp, sp->tc, sp->p.seq, sp->trec, &sp->tn, toks, n - 1, false);
  if (!s && sp->dc) {
    int32_t nd = n - 1 < sp->n_dctx ? n - 1 : sp->n_dctx;
    s = bring(sp, sp->dc, 0, sp->drec, &sp->dn, toks, nd, false);
  }
  sp->st.t_prefill_us += tl_time_us() - t0;
  return s;
}

/* ---- drafting ------------------------------------------------------------------- */

/* Prompt lookup: the continuation (up to k tokens) of the most recent
 * earlier occurrence of the longest suffix of h[0, n) of 2..g_max tokens
 * (1 when g_max is 1). Single tokens recur everywhere: on the demo model they
 * drafted 3x as many tokens at 17 % acceptance where pairs and longer drafted
 * at 27 %, and on a copying task pairs took fewer target passes (0.646
 * against 0.664 per token). */
static int32_t lookup_draft(const tl_token *h, int32_t n, int32_t g_max, int32_t k, tl_token *out) {
  const int32_t g_min = g_max < 2 ? 1 : 2;
  for (int32_t g = g_max < n - 1 ? g_max : n - 1; g >= g_min; g--) {
    const tl_token *suf = h + n - g;
    for (int32_t j = n - g - 1; j >= 0; j--) {
      if (h[j] != suf[0] || memcmp(h + j, suf, sizeof(tl_token) * (size_t)g) != 0) continue;
      int32_t c = 0;
      while (c < k && j + g + c < n) {
        out[c] = h[j + g + c];
        c++;
      }
      return c;
    }
  }
  return 0;
}

/* Whether token t (the draft's best) has probability >= p_min under
 * softmax(l) at temperature 1: 1 / sum_i exp(l_i - l_t) >= p_min. Terms below exp(-20) are left out
 * (all 4096 of a vocabulary add at most 1e-5), so that most logits cost a
 * comparison instead of an exp, and the sum stops once it is too large. */
static bool confident(const float *l, int32_t n, tl_token t, float p_min) {
  const double lim = 1.0 / (double)p_min;
  const float lt = l[t];
  double z = 0.0;
  for (int32_t i = 0; i < n; i++) {
    const float x = l[i] - lt;
    if (!(x >= -20.0f)) continue; /* (NaN too) */
    z += exp((double)x);
    if (z > lim) return false;
  }
  return true;
}

/* Up to k tokens from the draft model into sp->draft (their distributions
 * in sp->q when sampling); the count. */
static tl_status model_draft(tl_spec *sp, bool greedy, int32_t k, int32_t *n_out) {
  *n_out = 0;
  int32_t n = sp->n;
  if (n > sp->n_dctx) return TL_OK; /* the draft's context is full: no draft */
  if (k > sp->n_dctx - n + 1) k = sp->n_dctx - n + 1;
  tl_status s = bring(sp, sp->dc, 0, sp->drec, &sp->dn, sp->h, n, true);
  if (s) return s;
  sp->st.n_draft++;
  tl_sampler_set_history(sp->dsmp, sp->h, n);
  int32_t c = 0;
  while (c < k) {
    const float *l = tl_get_logits(sp->dc, 0);
    if (!l) return tl_fail(TL_ERR_INVALID_ARG, "speculative: the draft gave no logits");
    /* stop where the draft is unsure: decided on its logits alone, before
     * a token is drawn (a decision that looked at the drawn token would
     * keep drafts that are not distributed as q, and the acceptance rule
     * would no longer give the target's distribution) */
    if (sp->p.p_min > 0.0f) {
      tl_token top = 0;
      for (int32_t i = 1; i < sp->n_vocab; i++)
        if (l[i] > l[top]) top = i;
      if (!confident(l, sp->n_vocab, top, sp->p.p_min)) break;
    }
    tl_token d;
    if (greedy) {
      d = tl_sampler_sample(sp->dsmp, l, sp->n_vocab);
    } else {
      float *q = sp->q + (size_t)c * (size_t)sp->n_vocab;
      if ((s = tl_sampler_probs(sp->dsmp, l, sp->n_vocab, q))) return s;
      d = tl_sampler_draw(sp->dsmp, q, sp->n_vocab);
      if (d < 0) break;
    }
    sp->draft[c++] = d;
    tl_sampler_accept(sp->dsmp, d);
    if (c == k) break;
    /* the next position: decode d */
    int32_t pos = n + c - 1;
    int8_t want = 1;
    tl_batch b = {.n_tokens = 1, .tokens = &d, .pos = &pos, .logits = &want};
    if ((s = tl_decode(sp->dc, &b))) {
      tl_kv_seq_rm(sp->dc, 0, pos, -1);
      return s;
    }
    sp->st.n_draft++;
    sp->drec[pos] = d;
    sp->dn = pos + 1;
  }
  *n_out = c;
  return TL_OK;
}

/* ---- verification ------------------------------------------------------------------ */

tl_token tl_spec_verify_token(tl_sampler *smp, float *p, const float *q, int32_t n, tl_token d,
                              tl_spec_rule rule, bool *accepted) {
  double pd = p[d], qd = q ? q[d] : 1.0;
  double u = tl_sampler_rand(smp);
  if (u * qd < pd) { /* u < p / q */
    *accepted = true;
    return d;
  }
  *accepted = false;
  if (rule == TL_SPEC_RULE_EXACT) {
    if (q) {
      for (int32_t i = 0; i < n; i++) p[i] = p[i] > q[i] ? p[i] - q[i] : 0.0f;
    } else {
      p[d] = 0.0f; /* max(0, p - 1 at d) */
    }
  }
  tl_token t = tl_sampler_draw(smp, p, n);
  /* no mass left: p and q agree to rounding, and the draft is p's */
  return t < 0 ? d : t;
}

tl_status tl_spec_next(tl_spec *sp, tl_sampler *smp, int32_t max, tl_token *out, int32_t *n_out) {
  if (n_out) *n_out = 0;
  if (!sp || !smp || !out || !n_out || max < 1)
    return tl_fail(TL_ERR_INVALID_ARG,
                   "speculative: tl_spec_next needs a generator, a sampler "
                   "and room for a token");
  if (sp->n < 1)
    return tl_fail(TL_ERR_INVALID_ARG, "speculative: tl_spec_begin has not been called");
  int32_t n = sp->n;
  if (n > sp->n_ctx)
    return tl_fail(TL_ERR_CONTEXT_FULL, "speculative: the context of %d tokens is full",
                   (int)sp->n_ctx);
  const tl_sampler_params *sprm = tl_sampler_get_params(smp);
  bool greedy = sprm->temperature <= 0.0f;
  tl_status s;

  /* the draft */
  int32_t k = sp->k_cur;
  if (k > max - 1) k = max - 1;
  if (k > sp->n_ctx - n) k = sp->n_ctx - n; /* positions n .. n + k - 1 */
  if (k > sp->h_cap - n - 1) k = sp->h_cap - n - 1;
  int32_t nd = 0;
  int64_t t0 = tl_time_us();
  if (k > 0) {
    if (sp->dc) {
      if (!sp->dsmp || memcmp(&sp->dsmp_params, sprm, sizeof *sprm) != 0) {
        tl_sampler_free(sp->dsmp);
        sp->dsmp = NULL;
        tl_sampler_params dp = *sprm;
        dp.seed = sprm->seed ^ UINT64_C(0x9e3779b97f4a7c15);
        if ((s = tl_sampler_new(&dp, &sp->dsmp))) return s;
        sp->dsmp_params = *sprm;
      }
      if ((s = model_draft(sp, greedy, k, &nd))) return s;
    } else {
      nd = lookup_draft(sp->h, n, sp->p.lookup, k, sp->draft);
    }
    if (nd < sp->p.n_min) nd = 0;
  }
  int64_t t1 = tl_time_us();
  sp->st.t_draft_us += t1 - t0;

  /* the target over h[p, n) and the draft, logits from position n - 1 on */
  int32_t seq = sp->p.seq;
  int32_t p = common_prefix(sp->trec, sp->tn, sp->h, n - 1);
  if ((s = cut(sp->tc, seq, &sp->tn, p))) return s;
  int32_t nb = n - p + nd;
  for (int32_t i = 0; i < nb; i++) {
    sp->btok[i] = i < n - p ? sp->h[p + i] : sp->draft[i - (n - p)];
    sp->bpos[i] = p + i;
    sp->bseq[i] = seq;
    sp->bwant[i] = p + i >= n - 1;
  }
  tl_batch b = {
      .n_tokens = nb, .tokens = sp->btok, .pos = sp->bpos, .seq = sp->bseq, .logits = sp->bwant};
  s = tl_decode(sp->tc, &b);
  sp->st.t_target_us += tl_time_us() - t1;
  if (s) {
    tl_kv_seq_rm(sp->tc, seq, p, -1);
    return s;
  }
  sp->st.n_target++;
  memcpy(sp->trec + p, sp->btok, sizeof(tl_token) * (size_t)nb);
  sp->tn = p + nb;

  /* accept */
  int32_t a = 0, m = 0;
  for (int32_t i = 0; i <= nd; i++) {
    const float *l = tl_get_logits(sp->tc, i);
    if (!l) return tl_fail(TL_ERR_INVALID_ARG, "speculative: the target gave no logits");
    tl_token t;
    bool acc = false;
    if (i == nd) { /* every draft kept: the target's own next token */
      t = tl_sampler_sample(smp, l, sp->n_vocab);
    } else if (greedy) {
      t = tl_sampler_sample(smp, l, sp->n_vocab);
      acc = t == sp->draft[i];
    } else {
      if ((s = tl_sampler_probs(smp, l, sp->n_vocab, sp->pbuf))) return s;
      const float *q = sp->dc ? sp->q + (size_t)i * (size_t)sp->n_vocab : NULL;
      t = tl_spec_verify_token(smp, sp->pbuf, q, sp->n_vocab, sp->draft[i], sp->rule, &acc);
    }
    out[m++] = t;
    sp->h[sp->n++] = t;
    tl_sampler_accept(smp, t);
    if (acc) a++;
    if (!acc || tl_token_is_eog(sp->tm, t)) break;
  }
  sp->st.n_drafted += nd;
  sp->st.n_accepted += a;
  sp->st.n_generated += m;
  *n_out = m;

  /* the rejected positions leave both caches */
  if ((s = cut(sp->tc, seq, &sp->tn, n + a))) return s;
  if (sp->dc) {
    int32_t keep = common_prefix(sp->drec, sp->dn, sp->h, sp->n);
    if ((s = cut(sp->dc, 0, &sp->dn, keep))) return s;
  }

  /* the draft length follows the acceptance */
  if (nd > 0) {
    int32_t lo = sp->p.n_min > 1 ? sp->p.n_min : 1;
    if (a == nd && nd == sp->k_cur)
      sp->k_cur = sp->k_cur + 2 < sp->p.n_max ? sp->k_cur + 2 : sp->p.n_max;
    else if (a < nd)
      sp->k_cur = sp->k_cur - 1 > lo ? sp->k_cur - 1 : lo;
  }
  return TL_OK;
}
