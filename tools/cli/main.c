/* torchless: the command-line tool. It uses only the public API. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

static void log_cb(tl_log_level level, const char *msg, void *user) {
  const cli_opts *o = user;
  if (level >= TL_LOG_WARN || o->verbose)
    fprintf(stderr, "%s: %s\n",
            level >= TL_LOG_ERROR  ? "error"
            : level == TL_LOG_WARN ? "warning"
                                   : "info",
            msg);
}

static void usage(FILE *f) {
  fprintf(
      f,
      "usage:\n"
      "  torchless [MODEL] [PROMPT]                generate text (default model: the built-in "
      "demo)\n"
      "  torchless run -m MODEL -p PROMPT [-n N] [--temp T] [--top-k K] [--top-p P]\n"
      "                [--min-p P] [--repeat-penalty R] [--seed S] [-t THREADS] [-c CTX]\n"
      "                [--kv f16|f32|q8_0] [--backend auto|cpu] [--truncate] [-v]\n"
      "                --truncate: a prompt longer than the context keeps BOS and its last\n"
      "                tokens, leaving room for min(N, CTX/2) generated tokens\n"
      "  torchless eval -m MODEL --ids 1,2,3 [--logits OUT.f32] [--greedy N] [--kv f32|f16|q8_0]\n"
      "                [-t THREADS] [-c CTX] [--backend auto|cpu]\n"
      "  torchless tokenize -m MODEL -p TEXT [--no-bos]\n"
      "  run/eval/tokenize also take:\n"
      "                --override-kv KEY=TYPE:VALUE   metadata override (TYPE int, float, bool, "
      "str)\n"
      "                --quant TYPE   quantize a float model while loading it (e.g. q4_k_m)\n"
      "                --mlock        keep the weights locked in RAM\n"
      "  torchless quantize IN OUT TYPE [--mix q4_k_m|q5_k_m|q3_k_m] [--pure] [-t THREADS]\n"
      "                TYPE: f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 q2_k q3_k_s q3_k_m q3_k_l\n"
      "                q4_k_s q4_k_m q5_k_s q5_k_m q6_k (q3_k, q4_k, q5_k: the _m mixes)\n"
      "  torchless synth --preset tinyllama-1.1b|mistral-7b|llama3-8b|qwen2.5-7b\n"
      "                [--arch llama|qwen2] [--type TYPE] [--seed S] [-t THREADS] -o OUT.gguf\n"
      "  torchless convert IN OUT.bin [--quant f32|int8]   a Torchless .bin file\n"
      "  torchless bench [-m MODEL] [-p 512] [-n 128] [-r 3] [-d DEPTH] [--mlock] [--membw] [-t "
      "THREADS] [--kv f16|f32|q8_0] [--backend auto|cpu] [--json]\n"
      "                --membw        also measure the memory read bandwidth (the tg roofline)\n"
      "  torchless --help | --version\n"
      "MODEL is a GGUF file, a Torchless .bin file or a Hugging Face folder (config.json,\n"
      "*.safetensors, "
      "tokenizer files). Without -m the built-in demo model is used:\n"
      "  %s\n",
      TL_DEFAULT_MODEL);
}

/* Tokenize into a malloc'd array. */
static tl_token *tokenize(const tl_model *m, const char *text, bool add_bos, size_t *n) {
  size_t len = strlen(text), cap = len + 8;
  tl_token *toks = malloc(cap * sizeof(tl_token));
  if (!toks) return NULL;
  tl_status s = tl_tokenize(m, text, len, add_bos, true, toks, cap, n);
  if (s == TL_ERR_INVALID_ARG && *n > cap) {
    cap = *n;
    tl_token *t2 = realloc(toks, cap * sizeof(tl_token));
    if (!t2) {
      free(toks);
      return NULL;
    }
    toks = t2;
    s = tl_tokenize(m, text, len, add_bos, true, toks, cap, n);
  }
  if (s) {
    cli_fail(s);
    free(toks);
    return NULL;
  }
  return toks;
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
  size_t n_prompt = 0;
  tl_token *toks = tokenize(m, o->prompt, tl_model_add_bos(m), &n_prompt);
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
  fputs(o->prompt, stdout);
  fflush(stdout);
  int64_t t0 = tl_time_us();
  if ((s = prefill(c, toks, (int32_t)n_prompt, false))) {
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
  while (n_gen < o->n_predict) {
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
  rc = 0;
done:
  tl_detok_free(dt);
  tl_sampler_free(smp);
  tl_context_free(c);
  free(toks);
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
  tl_token *toks = tokenize(m, o->prompt, !o->no_bos && tl_model_add_bos(m), &n);
  int rc = 1;
  if (toks) {
    for (size_t i = 0; i < n; i++) printf(i ? " %d" : "%d", toks[i]);
    printf("\n");
    rc = 0;
  }
  free(toks);
  tl_model_free(m);
  return rc;
}

/* ---- quantize / synth ------------------------------------------------------ */

static volatile sig_atomic_t g_interrupted = 0;
static void on_sigint(int sig) {
  (void)sig;
  g_interrupted = 1;
}

/* One progress line per tensor on stderr; a Ctrl-C cancels at the next
 * tensor (the library then removes its temporary file). */
static bool progress_cb(const tl_quantize_progress *p, void *user) {
  (void)user;
  fprintf(stderr,
          "[%4d/%4d] %-36s [%6" PRId64 ", %6" PRId64 "] %-5s -> %-5s %9.2f MiB -> %9.2f MiB\n",
          p->index + 1, p->count, p->name, p->ne[0], p->ne[1], p->src_type, p->dst_type,
          (double)p->src_bytes / 1048576.0, (double)p->dst_bytes / 1048576.0);
  return !g_interrupted;
}

static void catch_sigint(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigint;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
}

int cmd_quantize(cli_opts *o) {
  const char *const *pos = o->pos;
  const char *mix = o->mix;
  tl_quantize_params qp = tl_quantize_default_params();
  qp.pure = o->pure;
  qp.n_threads = o->threads;
  if (o->n_pos < 3)
    return cli_die("usage: torchless quantize IN OUT TYPE [--mix q4_k_m|q5_k_m|q3_k_m]");
  tl_ftype ft;
  tl_status s = tl_ftype_from_name(pos[2], &ft);
  if (s) return cli_fail(s);
  if (mix) {
    tl_ftype mf;
    if ((s = tl_ftype_from_name(mix, &mf))) return cli_fail(s);
    /* the mix must be one of TYPE's: q4_k --mix q4_k_m (or q4_k_m --mix q4_k_m) */
    const char *tn = tl_ftype_name(ft), *mn = tl_ftype_name(mf);
    if (strncmp(tn, mn, 4) != 0 || strlen(mn) != 6 || mn[3] != 'K')
      return cli_die(
          "--mix %s does not apply to type %s (use q3_k, q4_k or q5_k with their "
          "_s/_m/_l mixes)",
          mix, pos[2]);
    ft = mf;
  }
  qp.ftype = ft;
  qp.progress = progress_cb;
  if (!strcmp(pos[0], pos[1])) return cli_die("IN and OUT are the same file");
  catch_sigint();
  int64_t t0 = tl_time_us();
  s = tl_model_quantize(pos[0], pos[1], &qp);
  if (s) return cli_fail(s);
  struct stat sti, sto;
  double mo = stat(pos[1], &sto) == 0 ? (double)sto.st_size / 1048576.0 : 0;
  if (stat(pos[0], &sti) == 0 && S_ISREG(sti.st_mode))
    fprintf(stderr, "wrote %s (%s): %.2f MiB -> %.2f MiB in %.1f s\n", pos[1], tl_ftype_name(ft),
            (double)sti.st_size / 1048576.0, mo, (double)(tl_time_us() - t0) / 1e6);
  else
    fprintf(stderr, "wrote %s (%s): %.2f MiB in %.1f s\n", pos[1], tl_ftype_name(ft), mo,
            (double)(tl_time_us() - t0) / 1e6);
  return 0;
}

int cmd_synth(cli_opts *o) {
  tl_synth_params sp = tl_synth_default_params();
  if (o->preset) sp.preset = o->preset;
  if (o->type >= 0) sp.ftype = (tl_ftype)o->type;
  sp.seed = o->seed;
  sp.tokenizer_model = o->tokenizer;
  if (o->layers) sp.n_layer = o->layers;
  sp.n_threads = o->threads;
  const char *out = o->out, *arch = o->arch;
  if (!out) return cli_die("synth needs -o OUT.gguf");
  if (arch) {
    bool qwen = !strncmp(sp.preset, "qwen", 4);
    if (strcmp(arch, qwen ? "qwen2" : "llama") != 0)
      return cli_die("preset '%s' has architecture %s, not '%s'", sp.preset,
                     qwen ? "qwen2" : "llama", arch);
  }
  sp.progress = progress_cb;
  catch_sigint();
  int64_t t0 = tl_time_us();
  tl_status s = tl_synth_model(out, &sp);
  if (s) return cli_fail(s);
  fprintf(stderr, "wrote %s (%s, %s, seed %" PRIu64 ") in %.1f s\n", out, sp.preset,
          tl_ftype_name(sp.ftype), sp.seed, (double)(tl_time_us() - t0) / 1e6);
  return 0;
}

/* torchless convert IN OUT.bin [--quant f32|int8]: a Torchless .bin file */
int cmd_convert(cli_opts *o) {
  const char *const *pos = o->pos;
  bool int8 = o->int8;
  if (o->n_pos < 2) return cli_die("usage: torchless convert IN OUT.bin [--quant f32|int8]");
  if (!strcmp(pos[0], pos[1])) return cli_die("IN and OUT are the same file");
  catch_sigint();
  int64_t t0 = tl_time_us();
  tl_status s = tl_model_convert_native(pos[0], pos[1], int8, progress_cb, NULL);
  if (s) return cli_fail(s);
  struct stat sto;
  double mo = stat(pos[1], &sto) == 0 ? (double)sto.st_size / 1048576.0 : 0;
  fprintf(stderr, "wrote %s (Torchless .bin, %s): %.2f MiB in %.1f s\n", pos[1],
          int8 ? "int8" : "f32", mo, (double)(tl_time_us() - t0) / 1e6);
  return 0;
}

static bool is_file(const char *p) {
  struct stat st;
  return stat(p, &st) == 0;
}

static const cli_command g_commands[] = {
    {"run", CLI_RUN, 0, NULL, cmd_run},
    {"eval", CLI_EVAL, 0, NULL, cmd_eval},
    {"tokenize", CLI_TOKENIZE, 0, NULL, cmd_tokenize},
    {"bench", CLI_BENCH, 0, NULL, cmd_bench},
    {"quantize", CLI_QUANTIZE, 3, "IN OUT TYPE", cmd_quantize},
    {"synth", CLI_SYNTH, 0, NULL, cmd_synth},
    {"convert", CLI_CONVERT, 2, "IN OUT", cmd_convert},
};

/* torchless [MODEL] [PROMPT] [options]: run's options */
static const cli_command g_default = {"torchless", CLI_RUN, 0, NULL, cmd_run};

int main(int argc, char **argv) {
  cli_opts o;
  if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
    usage(stdout);
    return 0;
  }
  if (argc >= 2 && !strcmp(argv[1], "--version")) {
    printf("torchless %s\n", TL_VERSION);
    return 0;
  }
  tl_set_log(log_cb, &o);
  const char *name = argc >= 2 ? argv[1] : "";
  for (size_t k = 0; k < sizeof g_commands / sizeof g_commands[0]; k++) {
    const cli_command *cmd = &g_commands[k];
    if (strcmp(name, cmd->name)) continue;
    cli_opts_init(&o, cmd->bit);
    int rc = cli_parse(argc, argv, 2, cmd, &o);
    return rc ? rc : cmd->run(&o);
  }
  if (!strcmp(name, "serve") || !strcmp(name, "perplexity"))
    return cli_die("the '%s' command is not implemented yet in this version", name);
  cli_opts_init(&o, g_default.bit);
  int i = 1;
  if (i < argc && argv[i][0] != '-') {
    if (i + 1 < argc && argv[i + 1][0] != '-') {
      o.model = argv[i++];
      o.prompt = argv[i++];
    } else if (is_file(argv[i]) && !strchr(argv[i], ' ')) {
      o.model = argv[i++];
    } else {
      o.prompt = argv[i++];
    }
  }
  int rc = cli_parse(argc, argv, i, &g_default, &o);
  if (rc) return rc;
  if (!o.prompt) o.prompt = "In the beginning";
  return cmd_run(&o);
}
