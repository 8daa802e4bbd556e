/* torchless perplexity: llama-perplexity's measure. The text is tokenized
 * whole (with BOS where the model uses one) and cut into windows of n_ctx
 * tokens that do not overlap; each window is evaluated from an empty cache,
 * its first token replaced by BOS, and scored on its second half: the
 * negative log-likelihood of token j + 1 from the logits at j, for j from
 * n_ctx / 2 to n_ctx - 2. The running perplexity is printed after each
 * window, then the final estimate with its standard error (of the mean
 * negative log-likelihood, times the perplexity), as llama-perplexity
 * prints them.
 *
 * --kl-divergence-base FILE saves the scored positions' log-probabilities
 * (float32 rows of the vocabulary, after a small header); a later run with
 * --kl-divergence --kl-divergence-base FILE on another model of the same
 * vocabulary (a quantization of it) compares against them: the mean KL
 * divergence KL(base || this) per token with its standard error, how often
 * both pick the same top token, and both perplexities. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define KLD_MAGIC "TLKLD001"

typedef struct kld_head {
  char magic[8];
  int32_t n_vocab, n_ctx, n_chunk, first;
  uint64_t n_tokens; /* of the text, so that a base of another text is refused */
} kld_head;

/* log-softmax of a row into out (double sums); the row's largest index */
static int log_softmax(const float *x, int n, float *out) {
  int best = 0;
  float mx = x[0];
  for (int i = 1; i < n; i++)
    if (x[i] > mx) mx = x[i], best = i;
  double s = 0;
  for (int i = 0; i < n; i++) s += exp((double)x[i] - mx);
  const double lse = mx + log(s);
  for (int i = 0; i < n; i++) out[i] = (float)((double)x[i] - lse);
  return best;
}

int cmd_perplexity(cli_opts *o) {
  if (!o->text_file) return cli_die("perplexity needs -f TEXT (a text file to score)");
  if (o->kld && !o->kld_base)
    return cli_die(
        "--kl-divergence needs --kl-divergence-base FILE (saved by a run of the base "
        "model with --kl-divergence-base alone)");
  size_t len = 0;
  char *text = cli_read_file(o->text_file, &len);
  if (!text) return 1;
  tl_model *m = cli_load_model(o, false, NULL);
  if (!m) {
    free(text);
    return 1;
  }
  int rc = 1;
  tl_context *c = NULL;
  tl_token *toks = NULL, *win = NULL;
  int32_t *pos = NULL;
  int8_t *want = NULL;
  float *lp = NULL, *base = NULL;
  FILE *kf = NULL;
  const int nv = tl_model_n_vocab(m), train = tl_model_n_ctx_train(m);
  const int n_ctx = o->ctx ? o->ctx : (train < 512 ? train : 512);
  if (n_ctx < 4) {
    rc = cli_die("a context of %d tokens is too small to score (at least 4)", n_ctx);
    goto done;
  }
  if (n_ctx > train)
    fprintf(stderr,
            "torchless: warning: a context of %d tokens is longer than the model's "
            "training context (%d)\n",
            n_ctx, train);
  const bool add_bos = tl_model_add_bos(m);
  size_t n_tok = 0;
  /* as llama-perplexity: special-token text stays text */
  if (!(toks = cli_tokenize(m, text, len, add_bos, false, &n_tok))) goto done;
  if (n_tok < 2 * (size_t)n_ctx) {
    rc = cli_die("%zu tokens in '%s': scoring needs at least %d (two windows of -c %d)", n_tok,
                 o->text_file, 2 * n_ctx, n_ctx);
    goto done;
  }
  const int n_chunk = (int)(n_tok / (size_t)n_ctx), first = n_ctx / 2;
  if (!(c = cli_new_context(m, o, n_ctx, o->batch))) goto done;
  win = malloc(sizeof(tl_token) * (size_t)n_ctx);
  pos = malloc(sizeof(int32_t) * (size_t)n_ctx);
  want = malloc((size_t)n_ctx);
  lp = malloc(sizeof(float) * (size_t)nv);
  if (o->kld) base = malloc(sizeof(float) * (size_t)nv);
  if (!win || !pos || !want || !lp || (o->kld && !base)) {
    rc = cli_die("out of memory");
    goto done;
  }
  kld_head kh = {
      .n_vocab = nv, .n_ctx = n_ctx, .n_chunk = n_chunk, .first = first, .n_tokens = n_tok};
  memcpy(kh.magic, KLD_MAGIC, 8);
  if (o->kld_base) {
    kf = fopen(o->kld_base, o->kld ? "rb" : "wb");
    if (!kf) {
      rc = cli_die("cannot %s '%s': %s", o->kld ? "read" : "write", o->kld_base, strerror(errno));
      goto done;
    }
    if (o->kld) {
      kld_head got;
      if (fread(&got, sizeof got, 1, kf) != 1 || memcmp(got.magic, KLD_MAGIC, 8)) {
        rc = cli_die("'%s' is not a file of --kl-divergence-base", o->kld_base);
        goto done;
      }
      if (got.n_vocab != nv || got.n_ctx != n_ctx || got.n_tokens != n_tok) {
        rc = cli_die(
            "'%s' was saved for %d tokens of vocabulary, windows of %d and a text of "
            "%llu tokens; this run has %d, %d and %zu",
            o->kld_base, got.n_vocab, got.n_ctx, (unsigned long long)got.n_tokens, nv, n_ctx,
            n_tok);
        goto done;
      }
    } else if (fwrite(&kh, sizeof kh, 1, kf) != 1) {
      rc = cli_die("cannot write '%s': %s", o->kld_base, strerror(errno));
      goto done;
    }
  }
  const tl_token bos = tl_token_bos(m);
  double nll = 0, nll2 = 0, bnll = 0, kl = 0, kl2 = 0;
  long count = 0, top_same = 0;
  printf("perplexity: %zu tokens, %d windows of %d, scoring the second half of each\n", n_tok,
         n_chunk, n_ctx);
  fflush(stdout);
  for (int ch = 0; ch < n_chunk; ch++) {
    const size_t start = (size_t)ch * n_ctx;
    memcpy(win, toks + start, sizeof(tl_token) * (size_t)n_ctx);
    if (add_bos && bos >= 0) win[0] = bos;
    for (int j = 0; j < n_ctx; j++) {
      pos[j] = j;
      want[j] = j >= first && j < n_ctx - 1;
    }
    tl_kv_clear(c, -1);
    tl_batch b = {.n_tokens = n_ctx, .tokens = win, .pos = pos, .logits = want};
    tl_status s;
    if ((s = tl_decode(c, &b))) {
      rc = cli_fail(s);
      goto done;
    }
    for (int j = first; j < n_ctx - 1; j++) {
      const float *lg = tl_get_logits(c, j - first);
      if (!lg) {
        rc = cli_fail(TL_ERR_INVALID_ARG);
        goto done;
      }
      const int top = log_softmax(lg, nv, lp);
      const double l = -(double)lp[toks[start + j + 1]];
      nll += l;
      nll2 += l * l;
      count++;
      if (kf && !o->kld) {
        if (fwrite(lp, sizeof(float), (size_t)nv, kf) != (size_t)nv) {
          rc = cli_die("cannot write '%s': %s", o->kld_base, strerror(errno));
          goto done;
        }
      } else if (o->kld) {
        if (fread(base, sizeof(float), (size_t)nv, kf) != (size_t)nv) {
          rc = cli_die("'%s' ends early", o->kld_base);
          goto done;
        }
        double d = 0;
        int btop = 0;
        for (int i = 0; i < nv; i++) {
          if (base[i] > base[btop]) btop = i;
          d += exp((double)base[i]) * ((double)base[i] - lp[i]);
        }
        kl += d;
        kl2 += d * d;
        top_same += btop == top;
        bnll -= base[toks[start + j + 1]];
      }
    }
    printf("[%d]%.4f,", ch + 1, exp(nll / (double)count));
    fflush(stdout);
  }
  printf("\n");
  {
    const double mean = nll / (double)count, ppl = exp(mean);
    double var = nll2 / (double)count - mean * mean;
    const double se = var > 0 && count > 1 ? sqrt(var / (double)(count - 1)) : 0;
    printf("Final estimate: PPL = %.4f +/- %.5f\n", ppl, se * ppl);
    if (o->kld) {
      const double km = kl / (double)count;
      double kv = kl2 / (double)count - km * km;
      const double kse = kv > 0 && count > 1 ? sqrt(kv / (double)(count - 1)) : 0;
      const double bppl = exp(bnll / (double)count);
      printf("KL divergence (base || this): mean %.6f +/- %.6f over %ld tokens\n", km, kse, count);
      printf("same top token: %.3f %%\n", 100.0 * (double)top_same / (double)count);
      printf("PPL: base %.4f, this %.4f, ratio %.6f (delta %+.4f)\n", bppl, ppl, ppl / bppl,
             ppl - bppl);
    }
  }
  rc = 0;
done:
  if (kf && fclose(kf) != 0 && rc == 0 && !o->kld)
    rc = cli_die("cannot write '%s': %s", o->kld_base, strerror(errno));
  free(text);
  free(toks);
  free(win);
  free(pos);
  free(want);
  free(lp);
  free(base);
  tl_context_free(c);
  tl_model_free(m);
  return rc;
}
