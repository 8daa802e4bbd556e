/* torchless, the command-line tool: each command's --help, its options with
 * the defaults that cli_opts_init and the library set, and --version. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* One option: its spelling and what it does, aligned. */
static void opt(FILE *f, const char *flags, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void opt(FILE *f, const char *flags, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(f, "  %-28s ", flags);
  vfprintf(f, fmt, ap);
  fputc('\n', f);
  va_end(ap);
}

/* The options of loading a model and making a context (`bit`'s share). */
static void model_opts(FILE *f, const cli_opts *d, unsigned bit) {
  bool gen = bit & (CLI_RUN | CLI_EVAL | CLI_TOKENIZE | CLI_CHAT);
  opt(f, "-m, --model FILE", "GGUF file, Torchless .bin or Hugging Face folder (default: %s)",
      d->model);
  if (bit == CLI_TOKENIZE) {
    opt(f, "--override-kv KEY=TYPE:VALUE", "metadata override (TYPE int, float, bool, str)");
    opt(f, "-v, --verbose", "the library's information messages");
    return;
  }
  opt(f, "-t, --threads N", "CPU threads (default: the number of physical cores)");
  if (gen) opt(f, "-c, --ctx N", "context size in tokens (default: the model's training context)");
  opt(f, "--kv f16|f32|q8_0", "KV cache type (default: %s)", tl_kv_type_name((tl_kv_type)d->kv));
  opt(f, "--backend NAME",
      "compute backend: auto, cpu, cuda, hip, opencl (default: %s; this build: see --version)",
      d->backend);
  opt(f, "-ngl, --gpu-layers N",
      "with a GPU backend, the first N layers on the GPU (default: all)");
  opt(f, "--mlock", "keep the weights locked in RAM");
  opt(f, "--low-mem",
      "low-memory mode: the weights streamed through the process, the next layers read ahead by a "
      "background thread and each layer's weights released once it has run (resident weights "
      "within --mem-budget; slower where the file does not fit the page cache)");
  opt(f, "--mem-budget MB",
      "low-memory mode's budget for weights in flight, in MiB (default: 1536; implies --low-mem)");
  if (bit != CLI_PERPLEXITY && bit != CLI_SERVE)
    opt(f, "-b, --batch-size N",
        "prompt tokens per step (default: 512, bench: -p); with --low-mem each step reads every "
        "layer's weights once, so larger steps read less per token");
  if (gen) {
    opt(f, "--quant TYPE", "quantize a float model while loading it (e.g. q4_k_m)");
    opt(f, "--override-kv KEY=TYPE:VALUE", "metadata override (TYPE int, float, bool, str)");
  }
  opt(f, "-v, --verbose", "the library's information messages");
}

static void sampling_opts(FILE *f, const cli_opts *d, bool chat) {
  if (chat)
    opt(f, "-n, --n-predict N", "most tokens a reply (default: until the end of the turn)");
  else
    opt(f, "-n, --n-predict N", "tokens to generate (default: %d)", d->n_predict);
  opt(f, "--temp T", "temperature, >= 0; 0: greedy (default: %.2f)", (double)d->sp.temperature);
  opt(f, "--top-k K", "keep the K most likely tokens; 0: off (default: %d)", (int)d->sp.top_k);
  opt(f, "--top-p P", "nucleus sampling, in (0, 1]; 1: off (default: %.2f)", (double)d->sp.top_p);
  opt(f, "--min-p P",
      "drop tokens below P x the best's probability, in [0, 1]; 0: off "
      "(default: %.2f)",
      (double)d->sp.min_p);
  opt(f, "--repeat-penalty R", "penalty of the last %d tokens; 1: off (default: %.2f)",
      (int)d->sp.repeat_last_n, (double)d->sp.repeat_penalty);
  opt(f, "--seed S", "sampling seed (default: from the clock)");
}

/* --draft / --lookup (run, chat, bench) */
static void spec_opts(FILE *f, const cli_opts *d) {
  opt(f, "--draft, -md MODEL",
      "speculative decoding with a small draft model of the same vocabulary (any format); "
      "greedy output is the target's own, sampled output has the target's distribution");
  opt(f, "--lookup N",
      "speculative decoding by prompt lookup: draft the continuation of the longest recent "
      "n-gram (2..N tokens, 1..16; N = 1: single tokens) already seen in the prompt or the "
      "output");
  opt(f, "--draft-max N", "most drafted tokens a step, 1..64 (default: %d; adapts to acceptance)",
      d->draft_max);
  opt(f, "--draft-min N", "fewer drafted tokens are not verified (default: %d)", d->draft_min);
  opt(f, "--draft-p-min P",
      "the draft model stops where its best token is below probability P, in [0, 1] (default: "
      "%.2f)",
      (double)d->draft_p_min);
  opt(f, "--draft-threads N", "threads of the draft model (default: -t)");
  opt(f, "--draft-backend NAME", "backend of the draft model (default: --backend)");
}

static void help_run(FILE *f, const cli_opts *d) {
  fprintf(f,
          "usage: torchless run [-m MODEL] -p PROMPT [options]\n"
          "       torchless [MODEL] [PROMPT] [options]\n"
          "generate text from a prompt; Ctrl-C stops the generation\n\n");
  opt(f, "-p, --prompt TEXT", "the prompt (torchless [MODEL] [PROMPT]: \"In the beginning\")");
  sampling_opts(f, d, false);
  opt(f, "--truncate",
      "a prompt longer than the context keeps BOS and its last tokens, leaving room for "
      "min(N, CTX/2) generated tokens");
  opt(f, "--no-bos", "do not add the BOS token");
  opt(f, "--chat", "the prompt as one user message through the model's chat template");
  opt(f, "--system TEXT", "with --chat: a system message");
  opt(f, "--prompt-cache FILE",
      "keep the prompt's state (tokens and KV cache) in FILE: a later run whose prompt starts "
      "the same way reuses it instead of prefilling again (-v says how many tokens)");
  opt(f, "--prompt-cache-ro", "read the --prompt-cache FILE but do not update it");
  spec_opts(f, d);
  model_opts(f, d, CLI_RUN);
}

static void help_eval(FILE *f, const cli_opts *d) {
  fprintf(f,
          "usage: torchless eval [-m MODEL] --ids 1,2,3 (--logits OUT.f32 | --greedy N) "
          "[options]\n"
          "the logits of token ids, or their greedy continuation\n\n");
  opt(f, "--ids LIST", "comma-separated token ids (required)");
  opt(f, "--logits FILE", "write the logits of every position (n_vocab float32 each)");
  opt(f, "--greedy N", "print the next N token ids of greedy decoding (default: %d)", d->greedy);
  opt(f, "--no-bos", "(accepted; --ids are used as given)");
  model_opts(f, d, CLI_EVAL);
}

static void help_tokenize(FILE *f, const cli_opts *d) {
  fprintf(f,
          "usage: torchless tokenize [-m MODEL] -p TEXT [options]\n"
          "the token ids of a text, on one line\n\n");
  opt(f, "-p, --prompt TEXT", "the text (required)");
  opt(f, "--no-bos", "do not add the BOS token");
  opt(f, "--show-pieces", "one token a line: id -> 'piece'");
  model_opts(f, d, CLI_TOKENIZE);
}

static void help_bench(FILE *f, const cli_opts *d) {
  fprintf(f,
          "usage: torchless bench [-m MODEL] [options]\n"
          "prompt processing (pp) and generation (tg) speed, as llama-bench measures them\n\n");
  opt(f, "-p, --n-prompt N", "prompt tokens of the pp test; 0: none (default: %d)", d->n_prompt);
  opt(f, "-n, --n-gen N", "generated tokens of the tg test; 0: none (default: %d)", d->n_gen);
  opt(f, "-r, --repetitions N", "runs of each test after a warm-up (default: %d)", d->reps);
  opt(f, "-d, --n-depth N", "tokens in the cache before each test (default: %d)", d->depth);
  opt(f, "--json", "llama-bench's JSON fields");
  opt(f, "--membw", "also measure the memory read bandwidth (the tg roofline)");
  fprintf(f,
          "\nwith --draft or --lookup, also -n greedy tokens of text generated by the target alone "
          "and speculatively (acceptance, target passes per token, tok/s of each):\n");
  opt(f, "-f, --file FILE", "the prompt of that test (default: Genesis 1:1-2)");
  spec_opts(f, d);
  model_opts(f, d, CLI_BENCH);
}

static void help_quantize(FILE *f, const cli_opts *d) {
  (void)d;
  fprintf(f,
          "usage: torchless quantize IN OUT TYPE [options]\n"
          "a model file in another weight type; Ctrl-C cancels (no OUT is left)\n"
          "  TYPE: f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 q2_k q3_k_s q3_k_m q3_k_l q4_k_s q4_k_m\n"
          "        q5_k_s q5_k_m q6_k iq4_nl iq4_xs (q3_k, q4_k, q5_k: the _m mixes)\n\n");
  opt(f, "--mix q4_k_m|q5_k_m|q3_k_m", "the K-quant mix of TYPE (default: TYPE's own)");
  opt(f, "--pure", "every tensor in TYPE (no mix)");
  opt(f, "-t, --threads N", "threads (default: the number of physical cores)");
  opt(f, "-v, --verbose", "the library's information messages");
}

static void help_synth(FILE *f, const cli_opts *d) {
  tl_synth_params sp = tl_synth_default_params();
  fprintf(f,
          "usage: torchless synth [--preset NAME] -o OUT.gguf [options]\n"
          "a model of a real architecture's shapes with random weights (for benchmarks);\n"
          "Ctrl-C cancels (no OUT is left)\n\n");
  fprintf(f, "  %-28s a preset (default: %s):", "--preset NAME", sp.preset);
  for (const char *const *p = tl_synth_presets(); *p; p++) fprintf(f, " %s", *p);
  fputc('\n', f);
  opt(f, "-o, --output FILE", "the GGUF file to write (required)");
  opt(f, "--arch llama|qwen2", "check the preset's architecture");
  opt(f, "--type TYPE", "weight type (default: %s)", tl_ftype_name(sp.ftype));
  opt(f, "--seed S", "the weights' seed (default: %" PRIu64 ")", d->seed);
  opt(f, "--tokenizer FILE", "the GGUF whose tokenizer is copied (default: %s)", d->tokenizer);
  opt(f, "-t, --threads N", "threads (default: the number of physical cores)");
  opt(f, "-v, --verbose", "the library's information messages");
}

static void help_convert(FILE *f, const cli_opts *d) {
  (void)d;
  fprintf(f,
          "usage: torchless convert IN OUT.bin [options]\n"
          "a Torchless .bin file from a model; Ctrl-C cancels (no OUT is left)\n\n");
  opt(f, "--quant f32|int8", "weight type of the .bin (default: f32)");
  opt(f, "-v, --verbose", "the library's information messages");
}

static void help_template(FILE *f, const cli_opts *d) {
  fprintf(f,
          "usage: torchless template (-m MODEL | --template FILE) --input VARS.json\n"
          "the chat template rendered over the variables (messages, tools,\n"
          "add_generation_prompt, ...), or exit 1 with its error\n\n");
  opt(f, "-m, --model FILE", "the model whose template is used (default: %s)", d->model);
  opt(f, "--template FILE", "a template file instead of the model's");
  opt(f, "--input FILE", "the variables, a JSON object (required)");
  opt(f, "--override-kv KEY=TYPE:VALUE", "metadata override (TYPE int, float, bool, str)");
  opt(f, "-v, --verbose", "the library's information messages");
}

static void help_chat(FILE *f, const cli_opts *d) {
  fprintf(f,
          "usage: torchless chat [-m MODEL] [options]\n"
          "an interactive conversation through the model's chat template;\n"
          "/reset, /system TEXT, /exit; Ctrl-C stops a reply, twice exits\n\n");
  opt(f, "--system TEXT", "the system message");
  sampling_opts(f, d, true);
  spec_opts(f, d);
  model_opts(f, d, CLI_CHAT);
}

static void help_perplexity(FILE *f, const cli_opts *d) {
  fprintf(f,
          "usage: torchless perplexity -m MODEL -f TEXT [options]\n"
          "perplexity as llama-perplexity computes it: windows of -c tokens that do not\n"
          "overlap, each from an empty cache with BOS first, scored on its second half\n\n");
  opt(f, "-f, --file TEXT", "the text to score (at least two windows of tokens)");
  opt(f, "-c, --ctx N", "window size in tokens (default: min(512, the training context))");
  opt(f, "-b, --batch-size N", "tokens per step (default: the library's, 512)");
  opt(f, "--kl-divergence-base FILE", "save the scored positions' log-probabilities to FILE");
  opt(f, "--kl-divergence", "with --kl-divergence-base FILE: compare with them (KL, top-1, PPL)");
  opt(f, "--quant TYPE", "quantize a float model while loading it");
  model_opts(f, d, CLI_PERPLEXITY);
}

static void help_serve(FILE *f, const cli_opts *d) {
  fprintf(f,
          "usage: torchless serve [-m MODEL] [options]\n"
          "an OpenAI-compatible HTTP server: POST /v1/chat/completions, /v1/completions\n"
          "(streaming as server-sent events), GET /v1/models, /health, /metrics, and a chat\n"
          "page at /. Up to --parallel requests decode together; SIGINT/SIGTERM stop it\n\n");
  opt(f, "--host ADDR", "the address to listen on (default: %s)", d->host);
  opt(f, "--port N", "the TCP port; 0: any free port, printed (default: %d)", d->port);
  opt(f, "-np, --parallel N", "requests decoded together, each in its own KV slot (default: %d)",
      d->parallel);
  opt(f, "--queue N", "most requests waiting for a slot; more get 503 (default: %d)", d->queue);
  opt(f, "--api-key KEY", "require \"Authorization: Bearer KEY\" on /v1/ and /metrics");
  opt(f, "-c, --ctx N",
      "context of each slot in tokens (default: the model's training context, at most 4096)");
  opt(f, "--quant TYPE", "quantize a float model while loading it");
  model_opts(f, d, CLI_SERVE);
}

static const struct {
  const char *name;
  unsigned bit;
  void (*print)(FILE *f, const cli_opts *d);
} g_help[] = {
    {"run", CLI_RUN, help_run},
    {"torchless", CLI_RUN, help_run},
    {"eval", CLI_EVAL, help_eval},
    {"tokenize", CLI_TOKENIZE, help_tokenize},
    {"bench", CLI_BENCH, help_bench},
    {"quantize", CLI_QUANTIZE, help_quantize},
    {"synth", CLI_SYNTH, help_synth},
    {"convert", CLI_CONVERT, help_convert},
    {"template", CLI_TEMPLATE, help_template},
    {"chat", CLI_CHAT, help_chat},
    {"perplexity", CLI_PERPLEXITY, help_perplexity},
    {"serve", CLI_SERVE, help_serve},
};

bool cli_help(const char *command, FILE *f) {
  for (size_t i = 0; i < sizeof g_help / sizeof g_help[0]; i++) {
    if (strcmp(command, g_help[i].name)) continue;
    cli_opts d;
    cli_opts_init(&d, g_help[i].bit);
    g_help[i].print(f, &d);
    opt(f, "-h, --help", "this help");
    return true;
  }
  return false;
}

void cli_version(FILE *f) {
  fprintf(f, "torchless %s\n", TL_VERSION);
  const char *const *k = tl_cpu_kernel_names();
  const char *best = NULL;
  fprintf(f, "CPU kernel sets (this build on this CPU):");
  for (; *k; k++) {
    fprintf(f, " %s", *k);
    best = *k;
  }
  const char *env = getenv("TL_CPU_KERNELS");
  if (env && *env)
    fprintf(f, " (TL_CPU_KERNELS=%s)\n", env);
  else
    fprintf(f, " (default: %s)\n", best ? best : "none");
  fprintf(f, "backends:");
  for (const char *const *b = tl_backend_names(); *b; b++) fprintf(f, " %s", *b);
  fputc('\n', f);
}
