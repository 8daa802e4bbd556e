/* torchless: the command-line tool. It uses only the public API. This file
 * picks the command (cli.h lists them) and prints the usage. */
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
      "                (a first word that is neither a command nor a file is a mistyped\n"
      "                command; a one-word prompt: -p WORD)\n"
      "  torchless run -m MODEL -p PROMPT [-n N] [--temp T] [--top-k K] [--top-p P]\n"
      "                [--min-p P] [--repeat-penalty R] [--seed S] [-t THREADS] [-c CTX]\n"
      "                [--kv f16|f32|q8_0] [--backend NAME] [--truncate] [-v]\n"
      "                --truncate: a prompt longer than the context keeps BOS and its last\n"
      "                tokens, leaving room for min(N, CTX/2) generated tokens\n"
      "  torchless eval -m MODEL --ids 1,2,3 [--logits OUT.f32] [--greedy N] [--kv f32|f16|q8_0]\n"
      "                [-t THREADS] [-c CTX] [--backend NAME]\n"
      "  torchless tokenize -m MODEL -p TEXT [--no-bos] [--show-pieces]\n"
      "  run/eval/tokenize also take:\n"
      "                --override-kv KEY=TYPE:VALUE   metadata override (TYPE int, float, bool, "
      "str)\n"
      "                --quant TYPE   quantize a float model while loading it (e.g. q4_k_m)\n"
      "                --mlock        keep the weights locked in RAM\n"
      "  run/eval/bench: --gpu-layers N (-ngl N)   with a GPU backend, the first N layers on\n"
      "                the GPU and the rest with the output head on the CPU (default: all)\n"
      "  torchless quantize IN OUT TYPE [--mix q4_k_m|q5_k_m|q3_k_m] [--pure] [-t THREADS]\n"
      "                TYPE: f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 q2_k q3_k_s q3_k_m q3_k_l\n"
      "                q4_k_s q4_k_m q5_k_s q5_k_m q6_k (q3_k, q4_k, q5_k: the _m mixes)\n"
      "  torchless synth --preset tinyllama-1.1b|mistral-7b|llama3-8b|qwen2.5-7b\n"
      "                [--arch llama|qwen2] [--type TYPE] [--seed S] [-t THREADS] -o OUT.gguf\n"
      "  torchless convert IN OUT.bin [--quant f32|int8]   a Torchless .bin file\n"
      "  torchless bench [-m MODEL] [-p 512] [-n 128] [-r 3] [-d DEPTH] [--mlock] [--membw] [-t "
      "THREADS] [--kv f16|f32|q8_0] [--backend NAME] [--json]\n"
      "                --membw        also measure the memory read bandwidth (the tg roofline)\n"
      "  torchless template (-m MODEL | --template FILE) --input VARS.json\n"
      "                prints the chat template rendered over the variables (messages,\n"
      "                tools, add_generation_prompt, ...) exactly, or exits 1 with its error\n"
      "  torchless chat -m MODEL [--system TEXT] [-c CTX] [-n N] [sampling options]\n"
      "                (-n: most tokens a reply; default: until the end of the turn)\n"
      "                an interactive conversation through the model's chat template;\n"
      "                /reset, /system TEXT, /exit; Ctrl-C stops a reply, twice exits\n"
      "  run also takes --chat [--system TEXT]: the prompt as one user message\n"
      "                through the chat template\n"
      "  torchless perplexity -m MODEL -f TEXT [-c CTX] [-b N] [--kl-divergence-base FILE]\n"
      "                [--kl-divergence]   perplexity as llama-perplexity computes it: windows\n"
      "                of CTX tokens (default min(512, training context)), each scored on its\n"
      "                second half; with --kl-divergence-base the log-probabilities are saved,\n"
      "                with --kl-divergence (and the same FILE) compared: KL divergence, top-1\n"
      "                agreement, the base's perplexity\n"
      "  torchless serve [-m MODEL] [--host ADDR] [--port N] [--parallel N] [-c CTX]\n"
      "                [--api-key KEY] [--queue N] [--backend B] [-t THREADS]\n"
      "                an OpenAI-compatible HTTP server (/v1/chat/completions,\n"
      "                /v1/completions, /v1/models, /health, /metrics, a chat page at /)\n"
      "  torchless COMMAND --help                  COMMAND's options and their defaults\n"
      "  torchless --help | --version\n"
      "MODEL is a GGUF file, a Torchless .bin file or a Hugging Face folder (config.json,\n"
      "*.safetensors, "
      "tokenizer files). Without -m the built-in demo model is used:\n"
      "  %s\n",
      TL_DEFAULT_MODEL);
}

#ifdef TL_NO_SERVER
int cmd_serve(cli_opts *o) {
  (void)o;
  return cli_die(
      "this build has no HTTP server: libmicrohttpd was not found when it was configured "
      "(apt-get install libmicrohttpd-dev, then configure again)");
}
#endif

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
    {"template", CLI_TEMPLATE, 0, NULL, cmd_template},
    {"chat", CLI_CHAT, 0, NULL, cmd_chat},
    {"perplexity", CLI_PERPLEXITY, 0, NULL, cmd_perplexity},
    {"serve", CLI_SERVE, 0, NULL, cmd_serve},
};

/* torchless [MODEL] [PROMPT] [options]: run's options */
static const cli_command g_default = {"torchless", CLI_RUN, 0, NULL, cmd_run};

/* Levenshtein distance of two short words (longer ones count as far). */
static size_t edit_distance(const char *a, const char *b) {
  size_t na = strlen(a), nb = strlen(b);
  if (na > 31 || nb > 31) return 99;
  size_t d[32][32];
  for (size_t i = 0; i <= na; i++) d[i][0] = i;
  for (size_t j = 0; j <= nb; j++) d[0][j] = j;
  for (size_t i = 1; i <= na; i++)
    for (size_t j = 1; j <= nb; j++) {
      size_t best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
      if (d[i - 1][j] + 1 < best) best = d[i - 1][j] + 1;
      if (d[i][j - 1] + 1 < best) best = d[i][j - 1] + 1;
      d[i][j] = best;
    }
  return d[na][nb];
}

/* A first word that is neither a command nor a file, and is not a prompt (no
 * spaces) nor a path (no '/' or '.'): a mistyped command. */
static bool looks_like_command(const char *w) {
  if (!*w) return false;
  for (const char *c = w; *c; c++)
    if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || *c == '-' || *c == '_'))
      return false;
  return true;
}

static int unknown_command(const char *w, const cli_command *cmds, size_t n) {
  const char *best = NULL;
  size_t best_d = 99;
  for (size_t k = 0; k < n; k++) {
    size_t dist = edit_distance(w, cmds[k].name);
    if (dist < best_d) {
      best_d = dist;
      best = cmds[k].name;
    }
  }
  if (best && best_d <= (strlen(w) < 5 ? 1u : 2u))
    cli_die("unknown command '%s' (did you mean '%s'?)", w, best);
  else
    cli_die("unknown command '%s' (see torchless --help; a one-word prompt: torchless -p %s)", w,
            w);
  return CLI_EXIT_USAGE;
}

int main(int argc, char **argv) {
  cli_opts o;
  if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
    usage(stdout);
    return 0;
  }
  if (argc >= 2 && !strcmp(argv[1], "--version")) {
    cli_version(stdout);
    return 0;
  }
  /* an unknown TL_CPU_KERNELS before any model is loaded (the library
   * fails the same way when it makes a context) */
  const char *want = getenv("TL_CPU_KERNELS");
  if (want && *want) {
    char have[256] = "";
    bool known = false;
    for (const char *const *k = tl_cpu_kernel_names(); *k; k++) {
      known = known || !strcmp(want, *k);
      snprintf(have + strlen(have), sizeof have - strlen(have), "%s%s", *have ? ", " : "", *k);
    }
    if (!known)
      return cli_die(
          "TL_CPU_KERNELS: CPU kernel set '%s' is not available on this CPU (it has: %s)", want,
          have);
  }
  tl_set_log(log_cb, &o);
  const char *name = argc >= 2 ? argv[1] : "";
  for (size_t k = 0; k < sizeof g_commands / sizeof g_commands[0]; k++) {
    const cli_command *cmd = &g_commands[k];
    if (strcmp(name, cmd->name)) continue;
    cli_opts_init(&o, cmd->bit);
    int rc = cli_parse(argc, argv, 2, cmd, &o);
    if (rc) return rc == CLI_DONE ? 0 : rc;
    return cmd->run(&o);
  }
  if (argc >= 2 && !is_file(name) && looks_like_command(name))
    return unknown_command(name, g_commands, sizeof g_commands / sizeof g_commands[0]);
  cli_opts_init(&o, g_default.bit);
  int i = 1;
  if (i < argc && argv[i][0] != '-') {
    if (i + 1 < argc && argv[i + 1][0] != '-') {
      o.model = argv[i++];
      o.prompt = argv[i++];
    } else if (is_file(argv[i])) {
      o.model = argv[i++]; /* a path with spaces too */
    } else {
      o.prompt = argv[i++];
    }
  }
  int rc = cli_parse(argc, argv, i, &g_default, &o);
  if (rc) return rc == CLI_DONE ? 0 : rc;
  if (!o.prompt) o.prompt = "In the beginning";
  return cmd_run(&o);
}
