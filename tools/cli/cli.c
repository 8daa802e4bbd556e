/* torchless, the command-line tool: the options of every command (one table,
 * one parser), errors, and loading a model with the options. */
#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* int options are stored through an int *, also into int32_t fields */
_Static_assert(_Generic((int32_t)0, int : 1, default : 0), "int32_t is int");

int cli_die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "torchless: error: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  return 1;
}

int cli_fail(tl_status s) {
  return cli_die("%s (%s)", tl_last_error(), tl_status_name(s));
}

/* --backend NAME against the backends the library has (tl_backend_names):
 * a GPU backend this build was made without is "not available" (exit 1), a
 * name nobody knows is a usage error (exit 2). Whether the device is there
 * is the library's to say when the context is made. */
int cli_check_backend(const char *name) {
  char have[128] = "auto";
  for (const char *const *b = tl_backend_names(); *b; b++) {
    if (!strcmp(name, *b) || !strcmp(name, "auto")) return 0;
    snprintf(have + strlen(have), sizeof have - strlen(have), ", %s", *b);
  }
  static const char *const gpu[] = {"cuda", "hip", "opencl"};
  for (size_t i = 0; i < sizeof gpu / sizeof gpu[0]; i++)
    if (!strcmp(name, gpu[i]))
      return cli_die("backend '%s' is not available in this build (available: %s)", name, have);
  cli_die("unknown backend '%s' (%s)", name, have);
  return 2;
}

/* ---- the options ------------------------------------------------------------ */

typedef enum opt_kind {
  OPT_FLAG,     /* bool = true, no value */
  OPT_STR,      /* const char * */
  OPT_INT,      /* int in lo..hi */
  OPT_FLOAT,    /* float, finite */
  OPT_U64,      /* uint64_t */
  OPT_NAME,     /* int: the value of one of names */
  OPT_FTYPE,    /* int: a tl_ftype by its name */
  OPT_OVERRIDE, /* one more --override-kv */
  OPT_BACKEND,  /* const char *, checked by cli_check_backend */
} opt_kind;

typedef struct opt_name {
  const char *name;
  int value;
} opt_name;

typedef struct opt {
  const char *name, *alias; /* "-t", "--threads" (alias may be NULL) */
  unsigned cmds;            /* the commands (CLI_* bits) that take it */
  opt_kind kind;
  size_t off; /* the field of cli_opts */
  long lo, hi;
  const char *bad; /* the error for a bad value: a format with one %s, the value */
  const opt_name *names;
} opt;

#define GEN (CLI_RUN | CLI_EVAL | CLI_TOKENIZE | CLI_CHAT)
#define LOAD (GEN | CLI_BENCH | CLI_PERPLEXITY | CLI_SERVE)
#define ALL (LOAD | CLI_QUANTIZE | CLI_SYNTH | CLI_CONVERT)
#define SPEC (CLI_RUN | CLI_CHAT | CLI_BENCH)
#define AT(field) offsetof(cli_opts, field)
#define FTYPES                                                                                  \
  "(f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, q3_k_s/m/l, q4_k_s/m, q5_k_s/m, q6_k, " \
  "iq4_nl, iq4_xs)"

static const opt_name kv_names[] = {
    {"f16", TL_KV_F16}, {"f32", TL_KV_F32}, {"q8_0", TL_KV_Q8_0}, {NULL, 0}};
static const opt_name bin_names[] = {{"f32", 0}, {"int8", 1}, {NULL, 0}};

/* An option's name may stand twice for different commands (-p is bench's
 * prompt length, the others' prompt). */
static const opt g_opts[] = {
    /* the model and its context */
    {"-m", "--model", LOAD | CLI_TEMPLATE, OPT_STR, AT(model), 0, 0, NULL, NULL},
    {"--backend", NULL, LOAD, OPT_BACKEND, AT(backend), 0, 0, NULL, NULL},
    {"-ngl", "--gpu-layers", LOAD, OPT_INT, AT(gpu_layers), 0, 1 << 20,
     "--gpu-layers needs a layer count >= 0, got '%s'", NULL},
    {"-t", "--threads", LOAD | CLI_QUANTIZE | CLI_SYNTH, OPT_INT, AT(threads), 1, 1024,
     "-t needs a thread count in 1..1024, got '%s'", NULL},
    {"-c", "--ctx", GEN | CLI_PERPLEXITY | CLI_SERVE, OPT_INT, AT(ctx), 1, 1 << 24,
     "-c needs a context size in 1..16777216, got '%s'", NULL},
    {"--kv", NULL, LOAD, OPT_NAME, AT(kv), 0, 0, "--kv must be f16, f32 or q8_0, got '%s'",
     kv_names},
    {"--quant", NULL, GEN | CLI_PERPLEXITY | CLI_SERVE, OPT_FTYPE, AT(quant), 0, 0,
     "--quant: unknown type '%s' " FTYPES, NULL},
    {"--override-kv", NULL, GEN | CLI_TEMPLATE | CLI_PERPLEXITY | CLI_SERVE, OPT_OVERRIDE, 0, 0, 0,
     NULL, NULL},
    {"--mlock", NULL, LOAD, OPT_FLAG, AT(mlock), 0, 0, NULL, NULL},
    {"--low-mem", NULL, LOAD, OPT_FLAG, AT(low_mem), 0, 0, NULL, NULL},
    {"--mem-budget", NULL, LOAD, OPT_INT, AT(mem_budget), 1, 1 << 24,
     "--mem-budget needs a size in MiB in 1..16777216, got '%s'", NULL},
    {"-v", "--verbose", ALL | CLI_TEMPLATE, OPT_FLAG, AT(verbose), 0, 0, NULL, NULL},
    /* run, eval, tokenize */
    {"-p", "--prompt", GEN, OPT_STR, AT(prompt), 0, 0, NULL, NULL},
    {"--prompt-cache", NULL, CLI_RUN, OPT_STR, AT(prompt_cache), 0, 0, NULL, NULL},
    {"--prompt-cache-ro", NULL, CLI_RUN, OPT_FLAG, AT(prompt_cache_ro), 0, 0, NULL, NULL},
    {"--ids", NULL, GEN, OPT_STR, AT(ids), 0, 0, NULL, NULL},
    {"--logits", NULL, GEN, OPT_STR, AT(logits_out), 0, 0, NULL, NULL},
    {"-n", "--n-predict", GEN, OPT_INT, AT(n_predict), 0, INT_MAX,
     "-n needs a count >= 0, got '%s'", NULL},
    {"--greedy", NULL, GEN, OPT_INT, AT(greedy), 0, INT_MAX,
     "--greedy needs a count >= 0, got '%s'", NULL},
    {"--temp", NULL, GEN, OPT_FLOAT, AT(sp.temperature), 0, 0, "--temp needs a number, got '%s'",
     NULL},
    {"--top-k", NULL, GEN, OPT_INT, AT(sp.top_k), 0, INT_MAX,
     "--top-k needs a count >= 0, got '%s'", NULL},
    {"--top-p", NULL, GEN, OPT_FLOAT, AT(sp.top_p), 0, 0, "--top-p needs a number, got '%s'", NULL},
    {"--min-p", NULL, GEN, OPT_FLOAT, AT(sp.min_p), 0, 0, "--min-p needs a number, got '%s'", NULL},
    {"--repeat-penalty", NULL, GEN, OPT_FLOAT, AT(sp.repeat_penalty), 0, 0,
     "--repeat-penalty needs a number, got '%s'", NULL},
    {"--seed", NULL, GEN | CLI_SYNTH, OPT_U64, AT(seed), 0, 0,
     "--seed needs a non-negative integer, got '%s'", NULL},
    {"--truncate", NULL, GEN, OPT_FLAG, AT(truncate), 0, 0, NULL, NULL},
    {"--no-bos", NULL, GEN, OPT_FLAG, AT(no_bos), 0, 0, NULL, NULL},
    {"--show-pieces", NULL, CLI_TOKENIZE, OPT_FLAG, AT(show_pieces), 0, 0, NULL, NULL},
    /* template, chat, run --chat */
    {"--template", NULL, CLI_TEMPLATE, OPT_STR, AT(template_file), 0, 0, NULL, NULL},
    {"--input", NULL, CLI_TEMPLATE, OPT_STR, AT(input), 0, 0, NULL, NULL},
    {"--system", NULL, CLI_CHAT | CLI_RUN, OPT_STR, AT(system), 0, 0, NULL, NULL},
    {"--chat", NULL, CLI_RUN, OPT_FLAG, AT(chat), 0, 0, NULL, NULL},
    /* speculative decoding: run, chat, bench */
    {"--draft", "-md", SPEC, OPT_STR, AT(draft), 0, 0, NULL, NULL},
    {"--draft-backend", NULL, SPEC, OPT_BACKEND, AT(draft_backend), 0, 0, NULL, NULL},
    {"--draft-threads", NULL, SPEC, OPT_INT, AT(draft_threads), 1, 1024,
     "--draft-threads needs a thread count in 1..1024, got '%s'", NULL},
    {"--draft-max", NULL, SPEC, OPT_INT, AT(draft_max), 1, 64,
     "--draft-max needs a token count in 1..64, got '%s'", NULL},
    {"--draft-min", NULL, SPEC, OPT_INT, AT(draft_min), 0, 64,
     "--draft-min needs a token count in 0..64, got '%s'", NULL},
    {"--draft-p-min", NULL, SPEC, OPT_FLOAT, AT(draft_p_min), 0, 0,
     "--draft-p-min needs a number, got '%s'", NULL},
    {"--lookup", NULL, SPEC, OPT_INT, AT(lookup), 1, 16,
     "--lookup needs an n-gram length in 1..16, got '%s'", NULL},
    /* perplexity */
    {"-f", "--file", CLI_PERPLEXITY | CLI_BENCH, OPT_STR, AT(text_file), 0, 0, NULL, NULL},
    {"-b", "--batch-size", CLI_PERPLEXITY | CLI_RUN | CLI_EVAL | CLI_CHAT | CLI_BENCH, OPT_INT,
     AT(batch), 1, 1 << 20, "-b needs a token count >= 1, got '%s'", NULL},
    {"--kl-divergence-base", NULL, CLI_PERPLEXITY, OPT_STR, AT(kld_base), 0, 0, NULL, NULL},
    {"--kl-divergence", NULL, CLI_PERPLEXITY, OPT_FLAG, AT(kld), 0, 0, NULL, NULL},
    /* serve */
    {"--host", NULL, CLI_SERVE, OPT_STR, AT(host), 0, 0, NULL, NULL},
    {"--port", NULL, CLI_SERVE, OPT_INT, AT(port), 0, 65535,
     "--port needs a port in 0..65535, got '%s'", NULL},
    {"-np", "--parallel", CLI_SERVE, OPT_INT, AT(parallel), 1, 256,
     "--parallel needs a sequence count in 1..256, got '%s'", NULL},
    {"--queue", NULL, CLI_SERVE, OPT_INT, AT(queue), 1, 1 << 20,
     "--queue needs a request count >= 1, got '%s'", NULL},
    {"--api-key", NULL, CLI_SERVE, OPT_STR, AT(api_key), 0, 0, NULL, NULL},
    /* bench */
    {"-p", "--n-prompt", CLI_BENCH, OPT_INT, AT(n_prompt), 0, 1 << 20, "-p needs a count, got '%s'",
     NULL},
    {"-n", "--n-gen", CLI_BENCH, OPT_INT, AT(n_gen), 0, 1 << 20, "-n needs a count, got '%s'",
     NULL},
    {"-d", "--n-depth", CLI_BENCH, OPT_INT, AT(depth), 0, 1 << 22, "-d needs a count, got '%s'",
     NULL},
    {"-r", "--repetitions", CLI_BENCH, OPT_INT, AT(reps), 1, 64, "-r needs 1..64, got '%s'", NULL},
    {"--json", NULL, CLI_BENCH, OPT_FLAG, AT(json), 0, 0, NULL, NULL},
    {"--membw", NULL, CLI_BENCH, OPT_FLAG, AT(membw), 0, 0, NULL, NULL},
    /* quantize */
    {"--mix", NULL, CLI_QUANTIZE, OPT_STR, AT(mix), 0, 0, NULL, NULL},
    {"--pure", NULL, CLI_QUANTIZE, OPT_FLAG, AT(pure), 0, 0, NULL, NULL},
    /* synth */
    {"--preset", NULL, CLI_SYNTH, OPT_STR, AT(preset), 0, 0, NULL, NULL},
    {"--arch", NULL, CLI_SYNTH, OPT_STR, AT(arch), 0, 0, NULL, NULL},
    {"--type", NULL, CLI_SYNTH, OPT_FTYPE, AT(type), 0, 0, "--type: unknown type '%s' " FTYPES,
     NULL},
    {"-o", "--output", CLI_SYNTH, OPT_STR, AT(out), 0, 0, NULL, NULL},
    {"--layers", NULL, CLI_SYNTH, OPT_INT, AT(layers), 1, 4096,
     "--layers needs a count in 1..4096, got '%s'", NULL}, /* hidden: fewer layers for tests */
    {"--tokenizer", NULL, CLI_SYNTH, OPT_STR, AT(tokenizer), 0, 0, NULL, NULL},
    /* convert */
    {"--quant", NULL, CLI_CONVERT, OPT_NAME, AT(int8), 0, 0,
     "--quant must be f32 or int8, got '%s'", bin_names},
};

void cli_opts_init(cli_opts *o, unsigned bit) {
  *o = (cli_opts){.model = TL_DEFAULT_MODEL,
                  .backend = "auto",
                  .gpu_layers = -1,
                  .kv = TL_KV_F16,
                  .quant = -1,
                  .n_predict = 128,
                  .n_prompt = 512,
                  .n_gen = 128,
                  .reps = 3,
                  .tokenizer = TL_DEFAULT_MODEL,
                  .type = -1,
                  .host = "127.0.0.1",
                  .port = 8080,
                  .parallel = 4,
                  .queue = 64};
  tl_spec_params spd = tl_spec_default_params();
  o->draft_max = spd.n_max;
  o->draft_min = spd.n_min;
  o->draft_p_min = spd.p_min;
  if (bit == CLI_CHAT) o->n_predict = -1; /* a reply runs to its end of turn */
  o->sp = tl_sampler_default_params();
  o->seed = bit == CLI_SYNTH ? tl_synth_default_params().seed : (uint64_t)time(NULL);
}

static bool parse_long(const char *s, long lo, long hi, long *out) {
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

static bool parse_u64(const char *s, uint64_t *out) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || end == s || *end) return false;
  *out = v;
  return true;
}

static const opt *find_opt(const char *a, unsigned bit) {
  for (size_t i = 0; i < sizeof g_opts / sizeof g_opts[0]; i++) {
    const opt *d = &g_opts[i];
    if ((d->cmds & bit) && (!strcmp(a, d->name) || (d->alias && !strcmp(a, d->alias)))) return d;
  }
  return NULL;
}

/* Store option d's value v; 0, or the exit status after printing. */
static int set_value(cli_opts *o, const opt *d, const char *v) {
  void *p = (char *)o + d->off;
  long lv;
  tl_ftype ft;
  switch (d->kind) {
    case OPT_STR:
      *(const char **)p = v;
      return 0;
    case OPT_INT:
      if (!parse_long(v, d->lo, d->hi, &lv)) break;
      *(int *)p = (int)lv;
      return 0;
    case OPT_FLOAT:
      if (!parse_float(v, p)) break;
      return 0;
    case OPT_U64:
      if (!parse_u64(v, p)) break;
      return 0;
    case OPT_NAME:
      for (const opt_name *n = d->names; n->name; n++)
        if (!strcmp(v, n->name)) {
          *(int *)p = n->value;
          return 0;
        }
      break;
    case OPT_FTYPE:
      if (tl_ftype_from_name(v, &ft) != TL_OK) break;
      *(int *)p = (int)ft;
      return 0;
    case OPT_OVERRIDE:
      if (o->n_overrides == CLI_MAX_OVERRIDES)
        return cli_die("at most %d --override-kv options", CLI_MAX_OVERRIDES);
      o->overrides[o->n_overrides++] = v;
      o->overrides[o->n_overrides] = NULL;
      return 0;
    case OPT_BACKEND:
      *(const char **)p = v;
      return cli_check_backend(v);
    case OPT_FLAG:
      break;
  }
  return cli_die(d->bad, v);
}

/* The sampling values: the library takes some of these out-of-range values
 * as "off"; on the command line they are mistakes. */
static int check_sampling(const cli_opts *o) {
  const tl_sampler_params *p = &o->sp;
  if (p->temperature < 0)
    return cli_die("--temp must be >= 0 (0: greedy), got %g", (double)p->temperature);
  if (!(p->top_p > 0 && p->top_p <= 1))
    return cli_die("--top-p must be in (0, 1] (1: off), got %g", (double)p->top_p);
  if (!(p->min_p >= 0 && p->min_p <= 1))
    return cli_die("--min-p must be in [0, 1] (0: off), got %g", (double)p->min_p);
  return 0;
}

static int parse_args(int argc, char **argv, int start, const cli_command *cmd, cli_opts *o) {
  for (int i = start; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      if (!cli_help(cmd->name, stdout))
        return cli_die("no help for '%s' (see torchless --help)", cmd->name);
      return CLI_DONE;
    }
    if (cmd->max_pos > 0 && (a[0] != '-' || !a[1])) {
      if (o->n_pos == cmd->max_pos)
        return cli_die("%s takes %s, got an extra argument '%s'", cmd->name, cmd->pos_names, a);
      o->pos[o->n_pos++] = a;
      continue;
    }
    const opt *d = find_opt(a, cmd->bit);
    if (!d)
      return cli_die("unknown option '%s' for '%s' (see torchless %s --help)", a, cmd->name,
                     cmd->bit == CLI_RUN ? "run" : cmd->name);
    if (d->kind == OPT_FLAG) {
      *(bool *)((char *)o + d->off) = true;
      continue;
    }
    if (i + 1 == argc) return cli_die("option %s of '%s' needs a value", a, cmd->name);
    int rc = set_value(o, d, argv[++i]);
    if (rc) return rc;
  }
  return 0;
}

/* --draft and --lookup exclude each other; their tuning options need one. */
static int check_spec(const cli_opts *o, int argc, char **argv, int start) {
  if (o->draft && o->lookup)
    return cli_die("--draft and --lookup are two kinds of draft: give one of them");
  if (o->prompt_cache && (o->draft || o->lookup))
    return cli_die("--prompt-cache does not go with --draft or --lookup (yet)");
  if (o->prompt_cache_ro && !o->prompt_cache)
    return cli_die("--prompt-cache-ro needs --prompt-cache FILE");
  if (!(o->draft_p_min >= 0 && o->draft_p_min <= 1))
    return cli_die("--draft-p-min must be in [0, 1], got %g", (double)o->draft_p_min);
  if (o->draft_min > o->draft_max)
    return cli_die("--draft-min (%d) is larger than --draft-max (%d)", o->draft_min, o->draft_max);
  if (o->draft || o->lookup) return 0;
  static const char *const tuning[] = {"--draft-max", "--draft-min", "--draft-p-min",
                                       "--draft-backend", "--draft-threads"};
  for (int i = start; i < argc; i++)
    for (size_t j = 0; j < sizeof tuning / sizeof tuning[0]; j++)
      if (!strcmp(argv[i], tuning[j]))
        return cli_die("%s needs --draft MODEL or --lookup N", tuning[j]);
  return 0;
}

int cli_parse(int argc, char **argv, int start, const cli_command *cmd, cli_opts *o) {
  int rc = parse_args(argc, argv, start, cmd, o);
  if (rc) return rc;
  if (cmd->bit & SPEC && (rc = check_spec(o, argc, argv, start))) return rc;
  return cmd->bit & (CLI_RUN | CLI_CHAT) ? check_sampling(o) : 0;
}

/* ---- loading ---------------------------------------------------------------- */

tl_model *cli_load_model(const cli_opts *o, bool vocab_only, double *ms) {
  int64_t t0 = tl_time_us();
  tl_model_params mp = tl_model_default_params();
  mp.vocab_only = vocab_only;
  mp.kv_overrides = o->n_overrides ? o->overrides : NULL;
  mp.quant_ftype = o->quant;
  mp.use_mlock = o->mlock;
  tl_model *m = NULL;
  const bool bar = o->quant >= 0 && !vocab_only;
  if (bar) cli_load_progress(&mp, true);
  tl_status s = tl_model_load(o->model, &mp, &m);
  if (bar) cli_load_progress(&mp, false);
  if (s) {
    if (s == TL_ERR_ABORTED && cli_interrupted) {
      cli_die("interrupted while quantizing '%s'", o->model);
      exit(CLI_EXIT_INTERRUPTED);
    }
    cli_fail(s);
    return NULL;
  }
  if (!vocab_only && !o->low_mem && o->mem_budget <= 0) cli_prefetch(m);
  if (ms) *ms = (double)(tl_time_us() - t0) / 1000.0;
  return m;
}

volatile sig_atomic_t cli_interrupted = 0;

static void on_sigint(int sig) {
  (void)sig;
  cli_interrupted = 1;
}

void cli_catch_sigint(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigint;
  /* SA_RESTART: a write interrupted by the signal goes on (the library's
   * file writes would otherwise fail as i/o errors); SA_RESETHAND: the
   * second Ctrl-C ends the process */
  sa.sa_flags = SA_RESTART | SA_RESETHAND;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
}

static bool abort_cb(void *user) {
  (void)user;
  return cli_interrupted != 0;
}

void cli_warn_ctx(const tl_model *m, const cli_opts *o) {
  int32_t train = tl_model_n_ctx_train(m);
  if (o->ctx > 0 && train > 0 && o->ctx > train)
    fprintf(stderr,
            "torchless: warning: -c %d is larger than the model's training context (%d "
            "tokens); text past it may degrade\n",
            o->ctx, (int)train);
}

tl_context *cli_new_context(tl_model *m, const cli_opts *o, int n_ctx, int n_batch) {
  cli_warn_ctx(m, o);
  tl_context_params cp = tl_context_default_params();
  cp.abort_callback = abort_cb;
  cp.n_ctx = n_ctx;
  if (n_batch > 0) cp.n_batch = n_batch;
  if (o->batch > 0) cp.n_batch = o->batch; /* -b */
  cp.n_threads = o->threads;
  cp.kv_type = (tl_kv_type)o->kv;
  cp.backend = o->backend;
  cp.n_gpu_layers = o->gpu_layers;
  cp.low_mem = o->low_mem || o->mem_budget > 0; /* a budget implies the mode */
  cp.mem_budget_mb = o->mem_budget;
  tl_context *c = NULL;
  tl_status s = tl_context_new(m, &cp, &c);
  if (s) {
    cli_fail(s);
    return NULL;
  }
  return c;
}

char *cli_read_file(const char *path, size_t *len) {
  FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
  if (!f) {
    cli_die("cannot open %s: %s", path, strerror(errno));
    return NULL;
  }
  size_t cap = 1 << 16, n = 0;
  char *buf = malloc(cap + 1);
  while (buf) {
    size_t r = fread(buf + n, 1, cap - n, f);
    n += r;
    if (n < cap) break;
    char *nb = cap > ((size_t)1 << 30) ? NULL : realloc(buf, cap * 2 + 1);
    if (!nb) {
      free(buf);
      buf = NULL;
      break;
    }
    buf = nb;
    cap *= 2;
  }
  bool err = ferror(f);
  if (f != stdin) fclose(f);
  if (!buf || err) {
    free(buf);
    cli_die("cannot read %s", path);
    return NULL;
  }
  buf[n] = 0;
  *len = n;
  return buf;
}

tl_token *cli_tokenize(const tl_model *m, const char *text, size_t len, bool add_bos,
                       bool parse_special, size_t *n) {
  size_t cap = len + 8;
  tl_token *toks = malloc(cap * sizeof(tl_token));
  if (!toks) {
    cli_die("out of memory");
    return NULL;
  }
  tl_status s = tl_tokenize(m, text, len, add_bos, parse_special, toks, cap, n);
  if (s == TL_ERR_INVALID_ARG && *n > cap) {
    cap = *n;
    tl_token *t2 = realloc(toks, cap * sizeof(tl_token));
    if (!t2) {
      free(toks);
      cli_die("out of memory");
      return NULL;
    }
    toks = t2;
    s = tl_tokenize(m, text, len, add_bos, parse_special, toks, cap, n);
  }
  if (s) {
    cli_fail(s);
    free(toks);
    return NULL;
  }
  return toks;
}

/* ---- speculative decoding ------------------------------------------------------ */

int cli_spec_new(const cli_opts *o, tl_context *c, tl_model **dm, tl_context **dc, tl_spec **sp) {
  *dm = NULL;
  *dc = NULL;
  *sp = NULL;
  if (!o->draft && !o->lookup) return 0;
  tl_spec_params p = tl_spec_default_params();
  p.n_max = o->draft_max;
  p.n_min = o->draft_min;
  p.p_min = o->draft_p_min;
  if (o->lookup) p.lookup = o->lookup;
  tl_status s;
  if (o->draft) {
    tl_model_params mp = tl_model_default_params();
    mp.use_mlock = o->mlock;
    if ((s = tl_model_load(o->draft, &mp, dm))) {
      cli_die("the draft model: %s (%s)", tl_last_error(), tl_status_name(s));
      return 1;
    }
    if ((s = tl_spec_check_vocab(tl_context_model(c), *dm))) {
      cli_die("--draft %s: %s", o->draft, tl_last_error());
      goto fail;
    }
    tl_context_params cp = tl_context_default_params();
    cp.abort_callback = abort_cb;
    cp.n_ctx = tl_context_n_ctx(c);
    cp.n_threads = o->draft_threads ? o->draft_threads : o->threads;
    cp.kv_type = (tl_kv_type)o->kv;
    if (cp.kv_type == TL_KV_Q8_0)
      cp.kv_type = TL_KV_F16; /* the draft's head size may not allow it */
    cp.backend = o->draft_backend ? o->draft_backend : o->backend;
    if ((s = tl_context_new(*dm, &cp, dc))) {
      cli_die("the draft model's context: %s (%s)", tl_last_error(), tl_status_name(s));
      goto fail;
    }
  }
  if ((s = tl_spec_new(c, *dc, &p, sp))) {
    cli_fail(s);
    goto fail;
  }
  return 0;
fail:
  tl_context_free(*dc);
  tl_model_free(*dm);
  *dc = NULL;
  *dm = NULL;
  return 1;
}

void cli_spec_report(const tl_spec *sp, FILE *f) {
  tl_spec_stats st;
  tl_spec_get_stats(sp, &st);
  fprintf(f,
          "speculative: drafted %lld, accepted %lld (%.1f%%) | %lld target passes for %lld tokens "
          "(%.3f per token) | draft %.0f ms, verify %.0f ms\n",
          (long long)st.n_drafted, (long long)st.n_accepted,
          st.n_drafted ? 100.0 * (double)st.n_accepted / (double)st.n_drafted : 0.0,
          (long long)st.n_target, (long long)st.n_generated,
          st.n_generated ? (double)st.n_target / (double)st.n_generated : 0.0,
          (double)st.t_draft_us / 1000.0, (double)st.t_target_us / 1000.0);
}
