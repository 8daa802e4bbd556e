/* torchless run, eval and tokenize: text from a prompt, logits and greedy
 * continuations of token ids, and token ids of a text. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* Prefill tokens [p0, n) at positions p0.. of sequence 0, logits of the last. */
static tl_status prefill_from(tl_context *c, const tl_token *toks, int32_t p0, int32_t n,
                              bool all_logits) {
  int32_t *pos = malloc((size_t)(n - p0) * sizeof(int32_t));
  int8_t *want = malloc((size_t)(n - p0));
  if (!pos || !want) {
    free(pos);
    free(want);
    return TL_ERR_NOMEM;
  }
  for (int32_t i = p0; i < n; i++) {
    pos[i - p0] = i;
    want[i - p0] = all_logits || i == n - 1;
  }
  tl_batch b = {.n_tokens = n - p0, .tokens = toks + p0, .pos = pos, .logits = want};
  tl_status s = tl_decode(c, &b);
  free(pos);
  free(want);
  return s;
}

/* --prompt-cache FILE: the prompt's tokens and cache from FILE where they
 * start as this prompt does (the rest prefilled), and the prompt's state
 * written back to FILE (unless --prompt-cache-ro, or nothing changed). A
 * missing FILE is an empty cache; one of another model or damaged is an
 * error. Returns 0 or the exit code (the error printed). */
static int prefill_cached(tl_context *c, const cli_opts *o, const tl_token *toks, int32_t n) {
  const char *path = o->prompt_cache;
  tl_token *old = malloc(sizeof(tl_token) * (size_t)tl_context_n_ctx(c));
  if (!old) return cli_die("out of memory");
  size_t n_old = 0;
  FILE *f = fopen(path, "rb");
  tl_status s = TL_OK;
  if (f) {
    fclose(f);
    s = tl_state_seq_load_file(c, path, 0, old, (size_t)tl_context_n_ctx(c), &n_old);
  } else if (errno != ENOENT) {
    free(old);
    return cli_die("cannot open the prompt cache '%s': %s", path, strerror(errno));
  }
  int32_t k = 0;
  while (!s && k < n && (size_t)k < n_old && old[k] == toks[k]) k++;
  free(old);
  /* the last prompt token is decoded again for its logits */
  const int32_t keep = k < n ? k : n - 1;
  if (!s) s = tl_kv_seq_rm(c, 0, keep, -1);
  if (!s) s = prefill_from(c, toks, keep, n, false);
  if (!s && o->verbose)
    fprintf(stderr, "torchless: prompt cache '%s': %d of %d prompt tokens reused\n", path, keep, n);
  if (!s && !o->prompt_cache_ro && !(keep == n - 1 && (size_t)n == n_old))
    s = tl_state_seq_save_file(c, path, 0, toks, (size_t)n);
  return s && !cli_interrupted ? cli_fail(s) : 0;
}

/* Prefill tokens [0, n) at positions 0.. of sequence 0, logits of the last. */
static tl_status prefill(tl_context *c, const tl_token *toks, int32_t n, bool all_logits) {
  int32_t *pos = malloc((size_t)n * sizeof(int32_t));
  int8_t *want = malloc((size_t)n);
  if (!pos || !want) {
    free(pos);
    free(want);
    return TL_ERR_NOMEM;
  }
  for (int32_t i = 0; i < n; i++) {
    pos[i] = i;
    want[i] = all_logits || i == n - 1;
  }
  tl_batch b = {.n_tokens = n, .tokens = toks, .pos = pos, .logits = want};
  tl_status s = tl_decode(c, &b);
  free(pos);
  free(want);
  return s;
}

static tl_status decode_one(tl_context *c, tl_token t, int32_t pos) {
  int8_t want = 1;
  tl_batch b = {.n_tokens = 1, .tokens = &t, .pos = &pos, .logits = &want};
  return tl_decode(c, &b);
}

int cmd_run(cli_opts *o) {
  if (!o->prompt) return cli_die("run needs -p PROMPT");
  double load_ms;
  tl_model *m = cli_load_model(o, false, &load_ms);
  if (!m) return 1;
  int rc = 1;
  tl_context *c = NULL;
  tl_sampler *smp = NULL;
  tl_detok *dt = NULL;
  tl_model *dm = NULL;
  tl_context *dc = NULL;
  tl_spec *sp = NULL;
  size_t n_prompt = 0;
  tl_token *toks = NULL;
  char *chat_prompt = NULL;
  const char *prompt = o->prompt;
  bool add_bos = tl_model_add_bos(m);
  if (o->chat) {
    /* one user message through the chat template, which writes its own
     * BOS token (as apply_chat_template: no special tokens added) */
    if (!(chat_prompt = cli_chat_prompt(m, o->prompt, o->system))) goto done;
    prompt = chat_prompt;
    add_bos = add_bos && cli_chat_plain(m);
  }
  toks = cli_tokenize(m, prompt, strlen(prompt), add_bos, true, &n_prompt);
  if (!toks) goto done;
  if (n_prompt == 0) {
    rc = cli_die("the prompt is empty and the model adds no BOS token: nothing to generate from");
    goto done;
  }
  int n_ctx = o->ctx ? o->ctx : tl_model_n_ctx_train(m);
  if (n_prompt > (size_t)n_ctx && !o->truncate) {
    rc = cli_die(
        "the prompt has %zu tokens but the context holds %d (use a shorter prompt, -c or "
        "--truncate)",
        n_prompt, n_ctx);
    goto done;
  }
  if (o->truncate && n_prompt > (size_t)n_ctx) {
    /* keep the BOS token and the end of the prompt, leaving room for
     * min(n, n_ctx / 2) generated tokens */
    int room = o->n_predict < n_ctx / 2 ? o->n_predict : n_ctx / 2;
    size_t keep = (size_t)(n_ctx - room > 1 ? n_ctx - room : 1);
    size_t head = tl_model_add_bos(m) && keep > 1 ? 1 : 0;
    memmove(toks + head, toks + n_prompt - (keep - head), (keep - head) * sizeof *toks);
    fprintf(stderr, "torchless: the prompt of %zu tokens was truncated to its last %zu%s\n",
            n_prompt, keep - head, head ? " (after BOS)" : "");
    n_prompt = keep;
  }
  if (!(c = cli_new_context(m, o, n_ctx, 0))) goto done;
  if (cli_spec_new(o, c, &dm, &dc, &sp)) goto done;
  /* Ctrl-C: the first stops the prompt's decode or the generation, the
   * text so far and the speed line are printed, exit 130 */
  cli_catch_sigint();
  o->sp.seed = o->seed;
  tl_status s = tl_sampler_new(&o->sp, &smp);
  if (s) {
    rc = cli_fail(s);
    goto done;
  }
  if ((s = tl_detok_new(m, &dt))) {
    rc = cli_fail(s);
    goto done;
  }
  for (size_t i = 0; i < n_prompt; i++) tl_sampler_accept(smp, toks[i]);
  if (!o->chat) fputs(o->prompt, stdout);
  fflush(stdout);
  int64_t t0 = tl_time_us();
  if (sp)
    s = tl_spec_begin(sp, toks, (int32_t)n_prompt);
  else if (!o->prompt_cache)
    s = prefill(c, toks, (int32_t)n_prompt, false);
  else if ((rc = prefill_cached(c, o, toks, (int32_t)n_prompt)) != 0)
    goto done;
  if (s && !cli_interrupted) {
    rc = cli_fail(s);
    goto done;
  }
  int64_t t1 = tl_time_us();
  int n_gen = 0;
  int32_t pos = (int32_t)n_prompt;
  char buf[256];
  const float *logits = tl_get_logits(c, 0);
  int32_t n_vocab = tl_model_n_vocab(m);
  bool ctx_full = false;
  /* speculative: each step gives one or more tokens */
  while (sp && !cli_interrupted && n_gen < o->n_predict) {
    tl_token step[64];
    int32_t k = 0, want = o->n_predict - n_gen < 64 ? o->n_predict - n_gen : 64;
    s = tl_spec_next(sp, smp, want, step, &k);
    if (s == TL_ERR_CONTEXT_FULL) {
      ctx_full = true;
      break;
    }
    if (s) {
      if (cli_interrupted) break;
      rc = cli_fail(s);
      goto done;
    }
    bool eog = false;
    for (int32_t i = 0; i < k && !eog; i++) {
      if ((eog = tl_token_is_eog(m, step[i]))) break;
      n_gen++;
      size_t nb = tl_detok_push(dt, step[i], buf, sizeof buf);
      fwrite(buf, 1, nb, stdout);
    }
    fflush(stdout);
    if (eog) break;
  }
  while (!sp && !cli_interrupted && n_gen < o->n_predict) {
    tl_token t = tl_sampler_sample(smp, logits, n_vocab);
    if (tl_token_is_eog(m, t)) break;
    tl_sampler_accept(smp, t);
    n_gen++;
    size_t nb = tl_detok_push(dt, t, buf, sizeof buf);
    fwrite(buf, 1, nb, stdout);
    fflush(stdout);
    if (n_gen == o->n_predict) break;
    if (pos >= n_ctx) {
      ctx_full = true;
      break;
    }
    if ((s = decode_one(c, t, pos++))) {
      if (cli_interrupted) break;
      rc = cli_fail(s);
      goto done;
    }
    logits = tl_get_logits(c, 0);
  }
  size_t nb = tl_detok_flush(dt, buf, sizeof buf);
  fwrite(buf, 1, nb, stdout);
  fputc('\n', stdout);
  fflush(stdout);
  int64_t t2 = tl_time_us();
  if (ctx_full) fprintf(stderr, "torchless: stopped: the context of %d tokens is full\n", n_ctx);
  double pp_s = (double)(t1 - t0) / 1e6, tg_s = (double)(t2 - t1) / 1e6;
  fprintf(stderr,
          "\n%s | load %.0f ms | prompt %zu tokens, %.1f tok/s | generated %d tokens, %.1f tok/s | "
          "%d threads\n",
          tl_model_desc(m), load_ms, n_prompt, pp_s > 0 ? (double)n_prompt / pp_s : 0.0, n_gen,
          tg_s > 0 && n_gen > 0 ? (double)n_gen / tg_s : 0.0, tl_context_n_threads(c));
  if (sp) cli_spec_report(sp, stderr);
  rc = 0;
  if (cli_interrupted) {
    fprintf(stderr, "torchless: interrupted\n");
    rc = CLI_EXIT_INTERRUPTED;
  }
done:
  tl_detok_free(dt);
  tl_sampler_free(smp);
  tl_spec_free(sp);
  tl_context_free(dc);
  tl_model_free(dm);
  tl_context_free(c);
  free(toks);
  free(chat_prompt);
  tl_model_free(m);
  return rc;
}

static int parse_ids(const char *s, tl_token **out, size_t *n) {
  size_t cap = 16, k = 0;
  tl_token *ids = malloc(cap * sizeof(tl_token));
  const char *p = s;
  while (*p) {
    char *end;
    errno = 0;
    long v = strtol(p, &end, 10);
    if (end == p || errno || v < 0 || v > INT32_MAX) {
      free(ids);
      return cli_die("--ids must be comma-separated non-negative integers, got '%s'", s);
    }
    if (k == cap) {
      cap *= 2;
      ids = realloc(ids, cap * sizeof(tl_token));
    }
    ids[k++] = (tl_token)v;
    p = end;
    while (*p == ',' || *p == ' ') p++;
  }
  if (k == 0) {
    free(ids);
    return cli_die("--ids is empty");
  }
  *out = ids;
  *n = k;
  return 0;
}

int cmd_eval(cli_opts *o) {
  if (!o->ids) return cli_die("eval needs --ids (comma-separated token ids)");
  tl_token *ids = NULL;
  size_t n = 0;
  if (parse_ids(o->ids, &ids, &n)) return 1;
  tl_model *m = cli_load_model(o, false, NULL);
  if (!m) {
    free(ids);
    return 1;
  }
  int rc = 1;
  tl_context *c = NULL;
  FILE *f = NULL;
  int32_t nv = tl_model_n_vocab(m);
  int n_ctx = o->ctx ? o->ctx : tl_model_n_ctx_train(m);
  if (n > (size_t)n_ctx) {
    rc = cli_die("%zu ids do not fit in the context of %d tokens (use -c)", n, n_ctx);
    goto done;
  }
  for (size_t i = 0; i < n; i++)
    if (ids[i] >= nv) {
      rc = cli_die("token id %d is outside the vocabulary of %d tokens", ids[i], nv);
      goto done;
    }
  if (!o->logits_out && o->greedy <= 0) {
    rc = cli_die(
        "eval has nothing to print: add --logits OUT.f32 (the logits of every position, "
        "%d float32 each) and/or --greedy N (the next N token ids of greedy decoding)",
        (int)nv);
    goto done;
  }
  if (!(c = cli_new_context(m, o, n_ctx, 0))) goto done;
  tl_status s;
  if (o->logits_out) {
    if ((s = prefill(c, ids, (int32_t)n, true))) {
      rc = cli_fail(s);
      goto done;
    }
    f = fopen(o->logits_out, "wb");
    if (!f) {
      rc = cli_die("cannot write '%s': %s", o->logits_out, strerror(errno));
      goto done;
    }
    for (size_t i = 0; i < n; i++)
      if (fwrite(tl_get_logits(c, (int32_t)i), sizeof(float), (size_t)nv, f) != (size_t)nv) {
        rc = cli_die("cannot write '%s': %s", o->logits_out, strerror(errno));
        goto done;
      }
    if (fclose(f) != 0) {
      f = NULL;
      rc = cli_die("cannot write '%s': %s", o->logits_out, strerror(errno));
      goto done;
    }
    f = NULL;
  }
  if (o->greedy > 0) {
    tl_kv_clear(c, -1);
    if ((s = prefill(c, ids, (int32_t)n, false))) {
      rc = cli_fail(s);
      goto done;
    }
    int32_t pos = (int32_t)n;
    for (int g = 0; g < o->greedy; g++) {
      const float *lg = tl_get_logits(c, 0);
      tl_token best = 0;
      for (int32_t v = 1; v < nv; v++)
        if (lg[v] > lg[best]) best = v;
      printf(g ? " %d" : "%d", best);
      if (g + 1 == o->greedy) break;
      if (pos >= n_ctx) {
        printf("\n");
        rc = cli_die("the context of %d tokens is full after %d greedy tokens", n_ctx, g + 1);
        goto done;
      }
      if ((s = decode_one(c, best, pos++))) {
        rc = cli_fail(s);
        goto done;
      }
    }
    printf("\n");
  }
  rc = 0;
done:
  if (f) fclose(f);
  tl_context_free(c);
  tl_model_free(m);
  free(ids);
  return rc;
}

int cmd_tokenize(cli_opts *o) {
  if (!o->prompt) return cli_die("tokenize needs -p TEXT");
  tl_model *m = cli_load_model(o, true, NULL);
  if (!m) return 1;
  size_t n = 0;
  tl_token *toks =
      cli_tokenize(m, o->prompt, strlen(o->prompt), !o->no_bos && tl_model_add_bos(m), true, &n);
  int rc = 1;
  if (toks && o->show_pieces) {
    /* as llama-tokenize: "id -> 'piece'" a line */
    char buf[256];
    for (size_t i = 0; i < n; i++) {
      int32_t len = tl_token_to_piece(m, toks[i], buf, sizeof buf);
      if (len < 0) len = 0;
      printf("%6d -> '%.*s'\n", toks[i],
             (int)(len < (int32_t)sizeof buf ? len : (int32_t)sizeof buf), buf);
    }
    rc = 0;
  } else if (toks) {
    for (size_t i = 0; i < n; i++) printf(i ? " %d" : "%d", toks[i]);
    printf("\n");
    rc = 0;
  }
  free(toks);
  tl_model_free(m);
  return rc;
}
