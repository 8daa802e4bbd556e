/* torchless, the command-line tool: what its command files share. The
 * commands' options all go into one cli_opts, filled by one parser
 * (cli_parse) from one table of options (cli.c) in which each option names
 * the commands that take it. The tool uses only the public API. */
#ifndef TL_CLI_H
#define TL_CLI_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "torchless.h"

#ifndef TL_DEFAULT_MODEL
#define TL_DEFAULT_MODEL "models/kjv-llama-13m-q8_0.gguf"
#endif

/* The sub-commands as bits: each option names the commands that take it. */
enum {
  CLI_RUN = 1 << 0, /* run, and torchless [MODEL] [PROMPT] */
  CLI_EVAL = 1 << 1,
  CLI_TOKENIZE = 1 << 2,
  CLI_BENCH = 1 << 3,
  CLI_QUANTIZE = 1 << 4,
  CLI_SYNTH = 1 << 5,
  CLI_CONVERT = 1 << 6,
  CLI_TEMPLATE = 1 << 7,
  CLI_CHAT = 1 << 8, /* chat: run's generation options too */
  CLI_PERPLEXITY = 1 << 9,
  CLI_SERVE = 1 << 10,
};

#define CLI_MAX_OVERRIDES 32

/* The options of every command; cli_opts_init sets the defaults. */
typedef struct cli_opts {
  /* the model and its context: run, eval, tokenize, bench */
  const char *model;
  const char *backend; /* --backend: "auto", "cpu", "cuda" (see cli_check_backend) */
  int gpu_layers;      /* --gpu-layers: layers on a GPU backend (-1: all) */
  int threads;         /* 0: the library's choice (also quantize, synth) */
  int ctx;             /* 0: the model's training context */
  int kv;              /* a tl_kv_type */
  int quant;           /* -1 or a tl_ftype: quantize while loading */
  bool mlock;
  bool low_mem;   /* --low-mem: a layer's weights released once it has run */
  int mem_budget; /* --mem-budget MiB (implies --low-mem); 0: the default */
  const char *overrides[CLI_MAX_OVERRIDES + 1]; /* NULL-terminated --override-kv */
  int n_overrides;
  bool verbose;
  /* run, eval, tokenize */
  const char *prompt;
  const char *ids;
  const char *logits_out;
  int n_predict;
  int greedy;
  bool no_bos;
  bool truncate; /* run: cut a prompt longer than the context */
  tl_sampler_params sp;
  uint64_t seed; /* run: the sampler's, synth: the weights' */
  /* bench */
  int n_prompt, n_gen, reps;
  int depth; /* tokens already in the cache before each test (llama-bench -d) */
  bool json, membw;
  /* quantize, synth, convert */
  const char *pos[3]; /* positional arguments (IN OUT [TYPE]) */
  int n_pos;
  const char *mix;
  bool pure;
  const char *out, *preset, *arch, *tokenizer;
  int type;   /* synth --type: -1 or a tl_ftype */
  int layers; /* synth --layers: 0 or a layer count */
  int int8;   /* convert --quant: 0 f32, 1 int8 */
  /* perplexity */
  const char *text_file; /* -f */
  int batch;             /* -b: tokens per step (0: the library's) */
  const char *kld_base;  /* --kl-divergence-base FILE: save the log-probabilities */
  bool kld;              /* --kl-divergence: compare with the saved ones */
  /* template, chat, run --chat */
  const char *template_file, *input, *system;
  bool chat; /* run: send the prompt through the chat template */
  /* run, chat, bench: speculative decoding */
  const char *draft;         /* --draft MODEL */
  const char *draft_backend; /* --draft-backend (NULL: the target's) */
  int draft_threads;         /* --draft-threads (0: -t) */
  int draft_max, draft_min;  /* --draft-max, --draft-min */
  float draft_p_min;         /* --draft-p-min */
  int lookup;                /* --lookup N: prompt lookup with n-grams of up to N tokens */
  bool show_pieces;          /* tokenize: one "id -> 'piece'" a line */
  const char *prompt_cache;  /* run --prompt-cache FILE: the prompt's state kept in FILE */
  bool prompt_cache_ro;      /* --prompt-cache-ro: read it, never write it */
  /* serve */
  const char *host;    /* --host: the address to bind (default 127.0.0.1) */
  int port;            /* --port (0: any free port, printed) */
  int parallel;        /* --parallel: sequences decoded together */
  int queue;           /* --queue: most requests waiting for a slot */
  const char *api_key; /* --api-key: required as "Authorization: Bearer KEY" */
} cli_opts;

/* A sub-command: its name, its bit, how many positional arguments it takes
 * (their names for messages), and what runs it. */
typedef struct cli_command {
  const char *name;
  unsigned bit;
  int max_pos;
  const char *pos_names; /* "IN OUT TYPE" */
  int (*run)(cli_opts *o);
} cli_command;

/* The defaults of command `bit`'s options. */
void cli_opts_init(cli_opts *o, unsigned bit);
/* Parse argv[start..] as options of `cmd` into o. Returns 0, or (after
 * printing one error) the exit status, or CLI_DONE after printing --help. */
int cli_parse(int argc, char **argv, int start, const cli_command *cmd, cli_opts *o);
#define CLI_DONE (-1) /* cli_parse: --help was printed, exit 0 */

/* Exit statuses besides 0 and 1 (an error): a usage error the shell's way
 * (an unknown command or backend name), and Ctrl-C (128 + SIGINT). */
#define CLI_EXIT_USAGE 2
#define CLI_EXIT_INTERRUPTED 130

/* help.c: command's --help on f (false for a command without one), and
 * --version. */
bool cli_help(const char *command, FILE *f);
void cli_version(FILE *f);

/* Ctrl-C: cli_catch_sigint sets cli_interrupted on the first SIGINT (or
 * SIGTERM) and leaves the second to the default (the process ends).
 * cli_new_context's contexts stop a decode when it is set. */
extern volatile sig_atomic_t cli_interrupted;
void cli_catch_sigint(void);
/* --quant on load: a progress bar on a terminal (on: before the load;
 * off: after it, the bar's line cleared) */
void cli_load_progress(tl_model_params *mp, bool on);
/* A model file mostly not in the page cache, on a terminal: read it now
 * with a progress bar ("loading [###...]") instead of during the first
 * tokens. */
void cli_prefetch(const tl_model *m);
/* --backend NAME: 0 if this build has it, else (after printing) the exit
 * status: 1 for a backend this build lacks, 2 for an unknown name. */
int cli_check_backend(const char *name);

/* "torchless: error: ..." on stderr; returns 1 (the exit status). */
int cli_die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The library's last error and the status' name; returns 1. */
int cli_fail(tl_status s);

/* A whole file ("-": standard input) into a malloc'd, NUL-terminated buffer
 * of *len bytes; NULL after printing why. */
char *cli_read_file(const char *path, size_t *len);
/* len bytes of text as a malloc'd array of *n tokens; NULL after printing why. */
tl_token *cli_tokenize(const tl_model *m, const char *text, size_t len, bool add_bos,
                       bool parse_special, size_t *n);

/* Load o->model (its vocabulary only if vocab_only) with o's load options;
 * the load time in milliseconds in *ms (may be NULL). NULL after printing. */
tl_model *cli_load_model(const cli_opts *o, bool vocab_only, double *ms);
/* A warning on stderr when -c asks for more than m's training context. */
void cli_warn_ctx(const tl_model *m, const cli_opts *o);
/* A context of n_ctx tokens with o's threads and cache type, n_batch tokens
 * a batch (0: the default). NULL after printing. */
tl_context *cli_new_context(tl_model *m, const cli_opts *o, int n_ctx, int n_batch);

/* --draft / --lookup: a speculative generator on the target context c, with
 * the draft model and context it needs (*dm, *dc: NULL for prompt lookup).
 * All three NULL when neither option is given. 0, or the exit status after
 * printing (nothing is left allocated then). */
int cli_spec_new(const cli_opts *o, tl_context *c, tl_model **dm, tl_context **dc, tl_spec **sp);
/* The generator's statistics, one line on f. */
void cli_spec_report(const tl_spec *sp, FILE *f);

/* The commands. */
int cmd_run(cli_opts *o);
int cmd_eval(cli_opts *o);
int cmd_tokenize(cli_opts *o);
int cmd_bench(cli_opts *o);
int cmd_quantize(cli_opts *o);
int cmd_synth(cli_opts *o);
int cmd_convert(cli_opts *o);
int cmd_template(cli_opts *o);
int cmd_chat(cli_opts *o);
int cmd_perplexity(cli_opts *o);
int cmd_serve(cli_opts *o); /* tools/server/ */
/* chat.c: the prompt of run --chat (one user message through the template);
 * malloc'd, NULL after printing */
char *cli_chat_prompt(tl_model *m, const char *user, const char *system);
/* whether chat.c uses its plain format for m (no template of its own) */
bool cli_chat_plain(tl_model *m);
/* For models without a chat template (chat, run --chat, serve): a plain
 * "User: / Assistant:" format, and where a reply stops in it. */
extern const char cli_plain_template[];
extern const char cli_plain_stop[];

#endif
