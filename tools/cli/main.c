/* torchless: the command-line tool. It uses only the public API. */
#include <errno.h>
#include <stdarg.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "torchless.h"

#ifndef TL_DEFAULT_MODEL
#define TL_DEFAULT_MODEL "models/kjv-llama-11m-q8_0.gguf"
#endif

static int g_verbose = 0;

static void log_cb(tl_log_level level, const char *msg, void *user) {
  (void)user;
  if (level >= TL_LOG_WARN || g_verbose)
    fprintf(stderr, "%s: %s\n",
            level >= TL_LOG_ERROR  ? "error"
            : level == TL_LOG_WARN ? "warning"
                                   : "info",
            msg);
}

static int die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "torchless: error: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  return 1;
}

/* For the other command files (bench.c). */
int cli_die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int cli_die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "torchless: error: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  return 1;
}

int cmd_bench(int argc, char **argv, const char *default_model);

static int fail_status(tl_status s) {
  return die("%s (%s)", tl_last_error(), tl_status_name(s));
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
      "THREADS] [--kv f16|f32|q8_0] [--json]\n"
      "                --membw        also measure the memory read bandwidth (the tg roofline)\n"
      "  torchless --help | --version\n"
      "MODEL is a GGUF file, a Torchless .bin file or a Hugging Face folder (config.json,\n"
      "*.safetensors, "
      "tokenizer files). Without -m the built-in demo model is used:\n"
      "  %s\n",
      TL_DEFAULT_MODEL);
}

typedef struct opts {
  const char *model;
  const char *prompt;
  const char *ids;
  const char *logits_out;
  int n_predict;
  int greedy;
  int threads;
  int ctx;
  bool no_bos;
  bool truncate; /* run: cut a prompt longer than the context */
  const char *overrides[33];
  int n_overrides;
  int quant; /* -1 or a tl_ftype: quantize while loading */
  bool mlock;
  tl_kv_type kv;
  tl_sampler_params sp;
} opts;

static bool parse_int(const char *s, long lo, long hi, long *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s || *end || v < lo || v > hi) return false;
  *out = v;
  return true;
}

static bool parse_float(const char *s, float *out) {
  char *end;
  errno = 0;
  float v = strtof(s, &end);
  if (errno || end == s || *end || !isfinite(v)) return false;
  *out = v;
  return true;
}

/* Parse "--flag value" options shared by the sub-commands. Returns 0 on
 * success, 1 (after printing) on a bad flag. */
static int parse_opts(int argc, char **argv, int start, opts *o, const char *cmd) {
  for (int i = start; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED()                                                     \
  do {                                                             \
    if (!v) return die("option %s of '%s' needs a value", a, cmd); \
    i++;                                                           \
  } while (0)
    long lv;
    if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
      NEED();
      o->model = v;
    } else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) {
      NEED();
      o->prompt = v;
    } else if (!strcmp(a, "--ids")) {
      NEED();
      o->ids = v;
    } else if (!strcmp(a, "--logits")) {
      NEED();
      o->logits_out = v;
    } else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) {
      NEED();
      if (!parse_int(v, 0, INT_MAX, &lv)) return die("-n needs a count >= 0, got '%s'", v);
      o->n_predict = (int)lv;
    } else if (!strcmp(a, "--greedy")) {
      NEED();
      if (!parse_int(v, 0, INT_MAX, &lv)) return die("--greedy needs a count >= 0, got '%s'", v);
      o->greedy = (int)lv;
    } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
      NEED();
      if (!parse_int(v, 1, 1024, &lv))
        return die("-t needs a thread count in 1..1024, got '%s'", v);
      o->threads = (int)lv;
    } else if (!strcmp(a, "-c") || !strcmp(a, "--ctx")) {
      NEED();
      if (!parse_int(v, 1, 1 << 24, &lv))
        return die("-c needs a context size in 1..16777216, got '%s'", v);
      o->ctx = (int)lv;
    } else if (!strcmp(a, "--kv")) {
      NEED();
      if (!strcmp(v, "f16"))
        o->kv = TL_KV_F16;
      else if (!strcmp(v, "f32"))
        o->kv = TL_KV_F32;
      else if (!strcmp(v, "q8_0"))
        o->kv = TL_KV_Q8_0;
      else
        return die("--kv must be f16, f32 or q8_0, got '%s'", v);
    } else if (!strcmp(a, "--backend")) {
      NEED();
      if (strcmp(v, "auto") && strcmp(v, "cpu")) {
        if (!strcmp(v, "cuda") || !strcmp(v, "opencl"))
          return die("backend '%s' is not available in this build (available: cpu)", v);
        return die("unknown backend '%s' (auto, cpu)", v);
      }
    } else if (!strcmp(a, "--temp")) {
      NEED();
      if (!parse_float(v, &o->sp.temperature)) return die("--temp needs a number, got '%s'", v);
    } else if (!strcmp(a, "--top-k")) {
      NEED();
      if (!parse_int(v, 0, INT_MAX, &lv)) return die("--top-k needs a count >= 0, got '%s'", v);
      o->sp.top_k = (int)lv;
    } else if (!strcmp(a, "--top-p")) {
      NEED();
      if (!parse_float(v, &o->sp.top_p)) return die("--top-p needs a number, got '%s'", v);
    } else if (!strcmp(a, "--min-p")) {
      NEED();
      if (!parse_float(v, &o->sp.min_p)) return die("--min-p needs a number, got '%s'", v);
    } else if (!strcmp(a, "--repeat-penalty")) {
      NEED();
      if (!parse_float(v, &o->sp.repeat_penalty))
        return die("--repeat-penalty needs a number, got '%s'", v);
    } else if (!strcmp(a, "--seed")) {
      NEED();
      char *end;
      errno = 0;
      unsigned long long s = strtoull(v, &end, 10);
      if (errno || end == v || *end) return die("--seed needs a non-negative integer, got '%s'", v);
      o->sp.seed = s;
    } else if (!strcmp(a, "--quant")) {
      NEED();
      tl_ftype ft;
      if (tl_ftype_from_name(v, &ft) != TL_OK)
        return die(
            "--quant: unknown type '%s' (f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, "
            "q2_k, q3_k_s/m/l, q4_k_s/m, q5_k_s/m, q6_k)",
            v);
      o->quant = (int)ft;
    } else if (!strcmp(a, "--override-kv")) {
      NEED();
      if (o->n_overrides == 32) return die("at most 32 --override-kv options");
      o->overrides[o->n_overrides++] = v;
      o->overrides[o->n_overrides] = NULL;
    } else if (!strcmp(a, "--truncate")) {
      o->truncate = true;
    } else if (!strcmp(a, "--mlock")) {
      o->mlock = true;
    } else if (!strcmp(a, "--no-bos")) {
      o->no_bos = true;
    } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
      g_verbose = 1;
    } else {
      return die("unknown option '%s' for '%s' (see torchless --help)", a, cmd);
    }
#undef NEED
  }
  return 0;
}

static tl_model *load_model(const opts *o, bool vocab_only, double *ms) {
  const char *path = o->model;
  int64_t t0 = tl_time_us();
  tl_model_params mp = tl_model_default_params();
  mp.vocab_only = vocab_only;
  mp.kv_overrides = o->n_overrides ? o->overrides : NULL;
  mp.quant_ftype = o->quant;
  mp.use_mlock = o->mlock;
  tl_model *m = NULL;
  tl_status s = tl_model_load(path, &mp, &m);
  if (s) {
    fail_status(s);
    return NULL;
  }
  if (ms) *ms = (double)(tl_time_us() - t0) / 1000.0;
  return m;
}

static tl_context *new_context(tl_model *m, const opts *o, int n_ctx) {
  tl_context_params cp = tl_context_default_params();
  cp.n_ctx = n_ctx;
  cp.n_threads = o->threads;
  cp.kv_type = o->kv;
  tl_context *c = NULL;
  tl_status s = tl_context_new(m, &cp, &c);
  if (s) {
    fail_status(s);
    return NULL;
  }
  return c;
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
    fail_status(s);
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

static int cmd_run(opts *o) {
  double load_ms;
  tl_model *m = load_model(o, false, &load_ms);
  if (!m) return 1;
  int rc = 1;
  tl_context *c = NULL;
  tl_sampler *smp = NULL;
  tl_detok *dt = NULL;
  size_t n_prompt = 0;
  tl_token *toks = tokenize(m, o->prompt, tl_model_add_bos(m), &n_prompt);
  if (!toks) goto done;
  if (n_prompt == 0) {
    rc = die("the prompt is empty and the model adds no BOS token: nothing to generate from");
    goto done;
  }
  int n_ctx = o->ctx ? o->ctx : tl_model_n_ctx_train(m);
  if (n_prompt > (size_t)n_ctx && !o->truncate) {
    rc =
        die("the prompt has %zu tokens but the context holds %d (use a shorter prompt, -c or "
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
  if (!(c = new_context(m, o, n_ctx))) goto done;
  tl_status s = tl_sampler_new(&o->sp, &smp);
  if (s) {
    rc = fail_status(s);
    goto done;
  }
  if ((s = tl_detok_new(m, &dt))) {
    rc = fail_status(s);
    goto done;
  }
  for (size_t i = 0; i < n_prompt; i++) tl_sampler_accept(smp, toks[i]);
  fputs(o->prompt, stdout);
  fflush(stdout);
  int64_t t0 = tl_time_us();
  if ((s = prefill(c, toks, (int32_t)n_prompt, false))) {
    rc = fail_status(s);
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
      rc = fail_status(s);
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
      return die("--ids must be comma-separated non-negative integers, got '%s'", s);
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
    return die("--ids is empty");
  }
  *out = ids;
  *n = k;
  return 0;
}

static int cmd_eval(opts *o) {
  if (!o->ids) return die("eval needs --ids (comma-separated token ids)");
  tl_token *ids = NULL;
  size_t n = 0;
  if (parse_ids(o->ids, &ids, &n)) return 1;
  tl_model *m = load_model(o, false, NULL);
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
    rc = die("%zu ids do not fit in the context of %d tokens (use -c)", n, n_ctx);
    goto done;
  }
  for (size_t i = 0; i < n; i++)
    if (ids[i] >= nv) {
      rc = die("token id %d is outside the vocabulary of %d tokens", ids[i], nv);
      goto done;
    }
  if (!(c = new_context(m, o, n_ctx))) goto done;
  tl_status s;
  if (o->logits_out) {
    if ((s = prefill(c, ids, (int32_t)n, true))) {
      rc = fail_status(s);
      goto done;
    }
    f = fopen(o->logits_out, "wb");
    if (!f) {
      rc = die("cannot write '%s': %s", o->logits_out, strerror(errno));
      goto done;
    }
    for (size_t i = 0; i < n; i++)
      if (fwrite(tl_get_logits(c, (int32_t)i), sizeof(float), (size_t)nv, f) != (size_t)nv) {
        rc = die("cannot write '%s': %s", o->logits_out, strerror(errno));
        goto done;
      }
    if (fclose(f) != 0) {
      f = NULL;
      rc = die("cannot write '%s': %s", o->logits_out, strerror(errno));
      goto done;
    }
    f = NULL;
  }
  if (o->greedy > 0) {
    tl_kv_clear(c, -1);
    if ((s = prefill(c, ids, (int32_t)n, false))) {
      rc = fail_status(s);
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
        rc = die("the context of %d tokens is full after %d greedy tokens", n_ctx, g + 1);
        goto done;
      }
      if ((s = decode_one(c, best, pos++))) {
        rc = fail_status(s);
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

static int cmd_tokenize(opts *o) {
  if (!o->prompt) return die("tokenize needs -p TEXT");
  tl_model *m = load_model(o, true, NULL);
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

static int cmd_quantize(int argc, char **argv) {
  const char *pos[3] = {0};
  int np = 0;
  const char *mix = NULL;
  tl_quantize_params qp = tl_quantize_default_params();
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    long lv;
    if (!strcmp(a, "--mix") && i + 1 < argc) {
      mix = argv[++i];
    } else if (!strcmp(a, "--pure")) {
      qp.pure = true;
    } else if ((!strcmp(a, "-t") || !strcmp(a, "--threads")) && i + 1 < argc) {
      if (!parse_int(argv[++i], 1, 1024, &lv))
        return die("-t needs a thread count in 1..1024, got '%s'", argv[i]);
      qp.n_threads = (int32_t)lv;
    } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
      g_verbose = 1;
    } else if (a[0] == '-' && a[1]) {
      return die("unknown or incomplete option '%s' for 'quantize' (see torchless --help)", a);
    } else if (np < 3) {
      pos[np++] = a;
    } else {
      return die("quantize takes IN OUT TYPE, got an extra argument '%s'", a);
    }
  }
  if (np < 3) return die("usage: torchless quantize IN OUT TYPE [--mix q4_k_m|q5_k_m|q3_k_m]");
  tl_ftype ft;
  tl_status s = tl_ftype_from_name(pos[2], &ft);
  if (s) return fail_status(s);
  if (mix) {
    tl_ftype mf;
    if ((s = tl_ftype_from_name(mix, &mf))) return fail_status(s);
    /* the mix must be one of TYPE's: q4_k --mix q4_k_m (or q4_k_m --mix q4_k_m) */
    const char *tn = tl_ftype_name(ft), *mn = tl_ftype_name(mf);
    if (strncmp(tn, mn, 4) != 0 || strlen(mn) != 6 || mn[3] != 'K')
      return die(
          "--mix %s does not apply to type %s (use q3_k, q4_k or q5_k with their "
          "_s/_m/_l mixes)",
          mix, pos[2]);
    ft = mf;
  }
  qp.ftype = ft;
  qp.progress = progress_cb;
  if (!strcmp(pos[0], pos[1])) return die("IN and OUT are the same file");
  catch_sigint();
  int64_t t0 = tl_time_us();
  s = tl_model_quantize(pos[0], pos[1], &qp);
  if (s) return fail_status(s);
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

static int cmd_synth(int argc, char **argv) {
  tl_synth_params sp = tl_synth_default_params();
  sp.tokenizer_model = TL_DEFAULT_MODEL;
  const char *out = NULL, *arch = NULL;
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    long lv;
    if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
      g_verbose = 1;
      continue;
    }
    if (!v) return die("option %s of 'synth' needs a value", a);
    i++;
    if (!strcmp(a, "--preset")) {
      sp.preset = v;
    } else if (!strcmp(a, "--arch")) {
      arch = v;
    } else if (!strcmp(a, "--type")) {
      tl_status s = tl_ftype_from_name(v, &sp.ftype);
      if (s) return fail_status(s);
    } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
      out = v;
    } else if (!strcmp(a, "--seed")) {
      char *end;
      errno = 0;
      unsigned long long sd = strtoull(v, &end, 10);
      if (errno || end == v || *end) return die("--seed needs a non-negative integer, got '%s'", v);
      sp.seed = sd;
    } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
      if (!parse_int(v, 1, 1024, &lv))
        return die("-t needs a thread count in 1..1024, got '%s'", v);
      sp.n_threads = (int32_t)lv;
    } else if (!strcmp(a, "--layers")) { /* hidden: fewer layers for quick tests */
      if (!parse_int(v, 1, 4096, &lv)) return die("--layers needs a count in 1..4096, got '%s'", v);
      sp.n_layer = (int32_t)lv;
    } else if (!strcmp(a, "--tokenizer")) {
      sp.tokenizer_model = v;
    } else {
      return die("unknown option '%s' for 'synth' (see torchless --help)", a);
    }
  }
  if (!out) return die("synth needs -o OUT.gguf");
  if (arch) {
    bool qwen = !strncmp(sp.preset, "qwen", 4);
    if (strcmp(arch, qwen ? "qwen2" : "llama") != 0)
      return die("preset '%s' has architecture %s, not '%s'", sp.preset, qwen ? "qwen2" : "llama",
                 arch);
  }
  sp.progress = progress_cb;
  catch_sigint();
  int64_t t0 = tl_time_us();
  tl_status s = tl_synth_model(out, &sp);
  if (s) return fail_status(s);
  fprintf(stderr, "wrote %s (%s, %s, seed %" PRIu64 ") in %.1f s\n", out, sp.preset,
          tl_ftype_name(sp.ftype), sp.seed, (double)(tl_time_us() - t0) / 1e6);
  return 0;
}

/* torchless convert IN OUT.bin [--quant f32|int8]: a Torchless .bin file */
static int cmd_convert(int argc, char **argv) {
  const char *pos[2] = {0};
  int np = 0;
  bool int8 = false;
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--quant") && i + 1 < argc) {
      const char *v = argv[++i];
      if (!strcmp(v, "int8"))
        int8 = true;
      else if (!strcmp(v, "f32"))
        int8 = false;
      else
        return die("--quant must be f32 or int8, got '%s'", v);
    } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
      g_verbose = 1;
    } else if (a[0] == '-' && a[1]) {
      return die("unknown or incomplete option '%s' for 'convert' (see torchless --help)", a);
    } else if (np < 2) {
      pos[np++] = a;
    } else {
      return die("convert takes IN OUT, got an extra argument '%s'", a);
    }
  }
  if (np < 2) return die("usage: torchless convert IN OUT.bin [--quant f32|int8]");
  if (!strcmp(pos[0], pos[1])) return die("IN and OUT are the same file");
  catch_sigint();
  int64_t t0 = tl_time_us();
  tl_status s = tl_model_convert_native(pos[0], pos[1], int8, progress_cb, NULL);
  if (s) return fail_status(s);
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

int main(int argc, char **argv) {
  tl_set_log(log_cb, NULL);
  opts o = {.model = TL_DEFAULT_MODEL, .n_predict = 128, .kv = TL_KV_F16, .quant = -1};
  o.sp = tl_sampler_default_params();
  o.sp.seed = (uint64_t)time(NULL);
  if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
    usage(stdout);
    return 0;
  }
  if (argc >= 2 && !strcmp(argv[1], "--version")) {
    printf("torchless %s\n", TL_VERSION);
    return 0;
  }
  const char *cmd = argc >= 2 ? argv[1] : "";
  if (!strcmp(cmd, "bench")) return cmd_bench(argc, argv, TL_DEFAULT_MODEL);
  if (!strcmp(cmd, "run") || !strcmp(cmd, "eval") || !strcmp(cmd, "tokenize")) {
    if (parse_opts(argc, argv, 2, &o, cmd)) return 1;
    if (!strcmp(cmd, "run")) {
      if (!o.prompt) return die("run needs -p PROMPT");
      return cmd_run(&o);
    }
    return !strcmp(cmd, "eval") ? cmd_eval(&o) : cmd_tokenize(&o);
  }
  if (!strcmp(cmd, "quantize")) return cmd_quantize(argc, argv);
  if (!strcmp(cmd, "synth")) return cmd_synth(argc, argv);
  if (!strcmp(cmd, "convert")) return cmd_convert(argc, argv);
  if (!strcmp(cmd, "serve") || !strcmp(cmd, "perplexity"))
    return die("the '%s' command is not implemented yet in this version", cmd);
  /* torchless [MODEL] [PROMPT] [options] */
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
  if (parse_opts(argc, argv, i, &o, "torchless")) return 1;
  if (!o.prompt) o.prompt = "In the beginning";
  return cmd_run(&o);
}
