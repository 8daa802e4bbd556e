/* torchless — public C API.
 *
 * Everything a program needs to load a model, tokenize, run the decoder and
 * sample. Handles are opaque; every fallible call returns a tl_status and, on
 * failure, leaves a human-readable message in tl_last_error() (per thread).
 * The library never prints and never exits: diagnostics go to the log
 * callback installed with tl_set_log().
 *
 * How failure is reported: functions returning tl_status return TL_OK or the
 * error (message in tl_last_error()); getters returning a pointer return
 * NULL on failure and set tl_last_error(); those returning a count or length
 * return -1 (and say so where they are declared); plain getters of a valid
 * handle cannot fail.
 *
 * Threads: a tl_model is read-only once loaded and may be shared by any
 * number of threads and contexts (each context on its own thread); a
 * tl_context, a sampler or a detokenizer belongs to one thread at a time
 * (calls on one object must not overlap). tl_set_log is process-wide: set it
 * before other threads call the library. tl_last_error is per thread.
 */
#ifndef TORCHLESS_H
#define TORCHLESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TL_VERSION "0.1.0"

typedef enum tl_status {
  TL_OK = 0,
  TL_ERR_INVALID_ARG = 1,  /* a bad argument from the caller */
  TL_ERR_IO = 2,           /* cannot open / map / read a file */
  TL_ERR_FORMAT = 3,       /* a malformed or truncated file */
  TL_ERR_UNSUPPORTED = 4,  /* valid, but something we do not implement */
  TL_ERR_NOMEM = 5,        /* allocation failed */
  TL_ERR_CONTEXT_FULL = 6, /* the tokens do not fit in the context */
  TL_ERR_TOKENIZER = 7,    /* the text cannot be tokenized */
  TL_ERR_ABORTED = 8,      /* an abort or progress callback asked to stop */
} tl_status;

/* Message describing the last failure on this thread ("" if none). */
const char *tl_last_error(void);
/* Short name of a status code. */
const char *tl_status_name(tl_status s);

typedef enum tl_log_level {
  TL_LOG_DEBUG = 0,
  TL_LOG_INFO = 1,
  TL_LOG_WARN = 2,
  TL_LOG_ERROR = 3,
} tl_log_level;

typedef void (*tl_log_fn)(tl_log_level level, const char *msg, void *user);
/* Install a log callback (NULL: discard all messages, the default). */
void tl_set_log(tl_log_fn fn, void *user);

typedef int32_t tl_token;

typedef struct tl_model tl_model;
typedef struct tl_context tl_context;
typedef struct tl_sampler tl_sampler;
typedef struct tl_detok tl_detok;

/* ---- models ---------------------------------------------------------- */

struct tl_quantize_progress; /* below, with the quantizer */

typedef struct tl_model_params {
  bool vocab_only; /* load the tokenizer only (vocabulary-only GGUF files) */
  /* NULL-terminated list of metadata overrides "KEY=TYPE:VALUE", TYPE one of
   * int, float, bool, str (as llama.cpp's --override-kv), applied before the
   * model is read. NULL: none. */
  const char *const *kv_overrides;
  /* >= 0: quantize the weights while loading to this tl_ftype (a float
   * model, e.g. a Hugging Face folder, runs at Q4_K_M without a separate
   * step). The result is the same as tl_model_quantize() to a file and
   * loading that file: it is written to a temporary file ($TMPDIR) that is
   * mapped and unlinked. -1 (default): load as stored. */
  int32_t quant_ftype;
  /* Lock the mapped weights in RAM (mlock) so they are never paged out. */
  bool use_mlock;
  /* With quant_ftype: called once per tensor as it is quantized (the
   * tl_quantize_progress below); return false to cancel the load
   * (TL_ERR_ABORTED). NULL: progress goes to the log. */
  bool (*progress)(const struct tl_quantize_progress *p, void *user);
  void *progress_user;
} tl_model_params;

tl_model_params tl_model_default_params(void);
/* Load a model. path is one of (told apart by what it is, not its name):
 *  - a GGUF file (versions 2 and 3) as llama.cpp writes it: weights of type
 *    F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 and Q2_K..Q6_K (the IQ
 *    types are refused with TL_ERR_UNSUPPORTED), its tokenizer and chat
 *    template from the metadata;
 *  - a Hugging Face folder: config.json, model.safetensors or the shards
 *    of model.safetensors.index.json (F32, F16 or BF16 tensors), and the
 *    tokenizer from tokenizer.json or tokenizer.model (+ tokenizer_config.json
 *    for its special tokens and chat template);
 *  - a Torchless .bin file (recognized by its content).
 * Architectures (general.architecture; a folder's model_type): llama
 * (and mistral, which loads as llama), qwen2, qwen3, phi2, phi3, gemma,
 * gemma2, gemma3; others give TL_ERR_UNSUPPORTED. The weights are
 * memory-mapped, not copied (a folder's BF16/F16 tensors are read in their
 * type). With params->vocab_only only the tokenizer is read. Errors:
 * TL_ERR_IO (cannot open or read), TL_ERR_FORMAT (a malformed or
 * inconsistent file: every length, offset and shape is checked before use),
 * TL_ERR_UNSUPPORTED (a valid file of a kind not supported), TL_ERR_NOMEM;
 * *out is then NULL and tl_last_error() says which and where. */
tl_status tl_model_load(const char *path, const tl_model_params *params, tl_model **out);
void tl_model_free(tl_model *model);
/* Bytes of the model's file not in memory (the page cache) now: what the
 * first forward pass would read from the disk (0 where not tracked: a Hugging
 * Face folder's tensors). */
uint64_t tl_model_bytes_absent(const tl_model *model);
/* Read those bytes now, in order, calling progress(done, total, user) every
 * 32 MiB (total: the absent bytes; return false to stop, TL_ERR_ABORTED).
 * The CLI shows it as a progress bar on a terminal when a model has more
 * than 64 MiB to read. */
tl_status tl_model_prefetch(const tl_model *model,
                            bool (*progress)(uint64_t done, uint64_t total, void *user),
                            void *user);

const char *tl_model_arch(const tl_model *model);
const char *tl_model_desc(const tl_model *model); /* e.g. "llama 13M Q8_0" */
int32_t tl_model_n_vocab(const tl_model *model);
int32_t tl_model_n_ctx_train(const tl_model *model);
/* The model's metadata by key, as llama.cpp names the keys ("general.name",
 * "llama.context_length", ...; Hugging Face folders and .bin files are read
 * through the same keys). tl_model_meta_str writes the value as text into buf
 * (strings as they are, numbers in decimal, booleans "true"/"false", arrays
 * as "[a, b, ...]" with strings quoted) and returns its length, which may
 * exceed cap - 1 (then the text is cut; buf is always NUL-terminated when cap
 * > 0), or -1 when the model has no such key. tl_model_meta_count and
 * tl_model_meta_key_by_index (the same return convention, -1 for an index
 * out of range) list the keys, as llama_model_meta_* do. */
int32_t tl_model_meta_count(const tl_model *model);
int32_t tl_model_meta_key_by_index(const tl_model *model, int32_t i, char *buf, size_t cap);
int32_t tl_model_meta_str(const tl_model *model, const char *key, char *buf, size_t cap);
int32_t tl_model_n_layer(const tl_model *model);
uint64_t tl_model_n_params(const tl_model *model);
uint64_t tl_model_size_bytes(const tl_model *model); /* bytes of weight data */
bool tl_model_has_weights(const tl_model *model);
/* Weight bytes one decode step reads (each matrix once, one embedding row). */
uint64_t tl_model_decode_bytes(const tl_model *model);
/* Name of the type holding most of the layer weights, e.g. "Q4_K". */
const char *tl_model_weight_type(const tl_model *model);

/* ---- tokenizer --------------------------------------------------------- */

tl_token tl_token_bos(const tl_model *model); /* -1 if none */
tl_token tl_token_eos(const tl_model *model);
bool tl_token_is_eog(const tl_model *model, tl_token t); /* end of generation */
bool tl_model_add_bos(const tl_model *model);

/* Tokenize len bytes of text. add_bos: prepend BOS when the model uses one.
 * parse_special: text such as "</s>" becomes the special token.
 * On success *n_out holds the token count; if it exceeds cap the call returns
 * TL_ERR_INVALID_ARG with *n_out set to the count needed. Invalid UTF-8 is
 * rejected with TL_ERR_TOKENIZER. */
tl_status tl_tokenize(const tl_model *model, const char *text, size_t len, bool add_bos,
                      bool parse_special, tl_token *out, size_t cap, size_t *n_out);

/* The bytes a token stands for, as it appears inside a text (byte tokens
 * give their raw byte, the SentencePiece space marker becomes ' ').
 * Returns the number of bytes (which may exceed cap: then nothing beyond cap is
 * written), or -1 for an invalid token. */
int32_t tl_token_to_piece(const tl_model *model, tl_token t, char *buf, size_t cap);

/* Streaming detokenizer: feed tokens, get only complete UTF-8 characters. */
tl_status tl_detok_new(const tl_model *model, tl_detok **out);
/* Appends the text completed by token t to buf (NUL-terminated); returns the
 * number of bytes written. cap must be at least 64. */
size_t tl_detok_push(tl_detok *d, tl_token t, char *buf, size_t cap);
/* Remaining bytes (an incomplete character is emitted as U+FFFD). */
size_t tl_detok_flush(tl_detok *d, char *buf, size_t cap);
void tl_detok_free(tl_detok *d);

/* ---- contexts (KV cache + scratch) --------------------------------------- */

/* KV cache element type. Q8_0 (blocks of 32 values with an f16 scale, like
 * llama.cpp's -ctk/-ctv q8_0) needs a head size that is a multiple of 32. */
typedef enum tl_kv_type { TL_KV_F16 = 0, TL_KV_F32 = 1, TL_KV_Q8_0 = 2 } tl_kv_type;
/* "f16", "f32", "q8_0"; NULL for an unknown value. */
const char *tl_kv_type_name(tl_kv_type t);

typedef struct tl_context_params {
  int32_t n_ctx;     /* tokens per sequence (0: the model's training context) */
  int32_t n_seq;     /* independent sequences (KV slots) */
  int32_t n_batch;   /* most tokens per step of tl_decode (0: 512, at most n_ctx) */
  int32_t n_threads; /* CPU threads (0: number of physical cores) */
  tl_kv_type kv_type;
  /* Where the decoder runs: "cpu", or "auto" / NULL (the best backend this
   * build and machine can run; the choice is logged). A name this build does
   * not have, or whose device is missing, fails with TL_ERR_UNSUPPORTED.
   * tl_backend_names() lists the names. */
  const char *backend;
  /* With a GPU backend: how many layers run on it (-1: all). The first
   * n_gpu_layers layers and the token embedding go to the GPU, the rest and
   * the output head to the CPU, the activations crossing once per step (for
   * models larger than the card). Ignored by the CPU backend. */
  int32_t n_gpu_layers;
  /* CPU kernel set by name ("scalar", "avx2", "avx512", "avx512vnni", "neon",
   * "neon_dotprod"); NULL: the best this CPU runs. For tests and
   * comparisons; the environment variable TL_CPU_KERNELS overrides it. */
  const char *cpu_kernels;
  /* CPU attention tile in positions, 1..64 (0: 64). For tests; the
   * environment variable TL_ATT_TILE overrides it. */
  int32_t att_tile;
  /* Called between the layers of every step of tl_decode; returning true
   * stops the call with TL_ERR_ABORTED (a server cancels a request so). The
   * sequences keep the tokens of the steps that had finished. NULL: never. */
  bool (*abort_callback)(void *user);
  void *abort_user;
  /* Low-memory mode (the CPU's layers): a layer's weights are released from
   * the process once the layer has run in a step (madvise MADV_DONTNEED on
   * the file mapping: the pages stay in the page cache, never a second copy),
   * and the next layers' are read ahead (mem_budget_mb), so resident
   * memory holds about one layer's weights instead of the whole file. The
   * same logits; slower where the file does not stay in the page cache. */
  bool low_mem;
  /* Low-memory mode's budget for weights in flight, in MiB (0: 1536): the
   * layers after the running one are read ahead by a background thread
   * while their weights fit it, and dropped once they have run (nothing is
   * dropped where the whole model fits). */
  int32_t mem_budget_mb;
} tl_context_params;

tl_context_params tl_context_default_params(void);
tl_status tl_context_new(tl_model *model, const tl_context_params *params, tl_context **out);
void tl_context_free(tl_context *ctx);
int32_t tl_context_n_ctx(const tl_context *ctx);
/* The model the context runs. */
const tl_model *tl_context_model(const tl_context *ctx);
int32_t tl_context_n_threads(const tl_context *ctx);
/* The backend in use ("cpu", ...). */
const char *tl_context_backend(const tl_context *ctx);
/* The CPU kernel set in use ("scalar", "avx2", "avx512", ...), or for
 * another backend its device ("NVIDIA H100 80GB HBM3"). */
const char *tl_context_kernels(const tl_context *ctx);
/* A GPU backend's memory: the bytes its allocations hold now and at most
 * so far (weights, KV cache, buffers, scratch), and what the whole device
 * has in use. false (and zeros) where the backend uses the host's memory. */
bool tl_context_device_memory(const tl_context *ctx, uint64_t *now, uint64_t *peak,
                              uint64_t *device_used);
/* Names of the backends this build has, NULL-terminated ("cpu" first;
 * "auto" is accepted too and not listed). */
const char *const *tl_backend_names(void);
/* Names of the CPU kernel sets this build runs on this CPU, NULL-terminated
 * ("scalar" first, the default last; tl_context_params.cpu_kernels and
 * TL_CPU_KERNELS take one of them). */
const char *const *tl_cpu_kernel_names(void);

/* A batch of tokens, each with its sequence and position (as llama_batch).
 * logits[i] != 0 requests the logits of token i. logits may be NULL: then
 * only the last token's logits are computed. seq may be NULL (all 0). */
typedef struct tl_batch {
  int32_t n_tokens;
  const tl_token *tokens;
  const int32_t *pos;
  const int32_t *seq;
  const int8_t *logits;
} tl_batch;

/* Run the decoder over a batch. Each token attends to the cached tokens of
 * its sequence at positions < its own, plus itself. */
tl_status tl_decode(tl_context *ctx, const tl_batch *batch);
/* Logits of the i-th batch token whose logits were requested (in order):
 * with logits[] = {0, 1, 0, 1}, i = 0 is batch token 1 and i = 1 token 3.
 * llama.cpp's llama_get_logits_ith(ctx, j) takes the batch position j
 * instead; here that is tl_get_logits_pos. NULL (and tl_last_error) when i
 * is out of range. Valid until the next tl_decode on the context. */
const float *tl_get_logits(const tl_context *ctx, int32_t i);
/* Logits of batch position j of the last tl_decode (llama_get_logits_ith's
 * indexing; a negative j counts from the end, -1 being the last token); NULL
 * when that token's logits were not requested. */
const float *tl_get_logits_pos(const tl_context *ctx, int32_t j);
/* Forget the cached tokens of a sequence (-1: all). */
void tl_kv_clear(tl_context *ctx, int32_t seq);
/* Drop positions [p0, p1) of sequence seq (seq -1: every sequence; p1 < 0:
 * to the end). The cache holds each sequence's positions 0..n-1 densely, so
 * the range must reach the end of what is cached (a rejected draft, an
 * edited turn): a range that would leave a hole is TL_ERR_UNSUPPORTED and
 * changes nothing. Afterwards the sequence holds min(n, p0) positions. */
tl_status tl_kv_seq_rm(tl_context *ctx, int32_t seq, int32_t p0, int32_t p1);
/* Copy positions [p0, p1) of sequence src into sequence dst (p1 < 0: to the
 * end of src), so that dst continues from a shared prefix without
 * recomputing it. dst must already hold at least p0 positions; its
 * positions from p1 on are dropped. TL_ERR_INVALID_ARG for a bad sequence
 * or range. */
tl_status tl_kv_seq_cp(tl_context *ctx, int32_t src, int32_t dst, int32_t p0, int32_t p1);
/* The largest cached position of a sequence, -1 when it is empty (or seq is
 * out of range). */
int32_t tl_kv_seq_pos_max(const tl_context *ctx, int32_t seq);

/* A sequence's state in a file, a prompt cache that survives a restart (as
 * llama.cpp's llama_state_seq_save_file / _load_file): save writes the n
 * tokens that sequence seq holds (tokens: the caller's record of them; n
 * must equal tl_kv_seq_pos_max + 1) with their cached keys and values; load
 * replaces sequence seq of a context of the same model and KV type (any
 * backend, any split of --gpu-layers) with a file's, and gives back its
 * tokens (cap: room in tokens). The file carries a version, the model's
 * shape, parameter count and weight size, and a checksum: a file of another
 * version or model, another KV type, a damaged or truncated file is a
 * clear error (TL_ERR_UNSUPPORTED / TL_ERR_INVALID_ARG / TL_ERR_FORMAT)
 * that leaves the sequence as it was (only a backend failing while the
 * cache is written leaves it empty). Save writes PATH.tmp and renames it. */
tl_status tl_state_seq_save_file(tl_context *ctx, const char *path, int32_t seq,
                                 const tl_token *tokens, size_t n_tokens);
tl_status tl_state_seq_load_file(tl_context *ctx, const char *path, int32_t seq, tl_token *tokens,
                                 size_t cap, size_t *n_tokens);

/* ---- sampling ----------------------------------------------------------- */

typedef struct tl_sampler_params {
  float temperature;    /* <= 0: greedy */
  int32_t top_k;        /* <= 0: off */
  float top_p;          /* >= 1: off */
  float min_p;          /* <= 0: off */
  float repeat_penalty; /* 1: off */
  int32_t repeat_last_n;
  uint64_t seed;
} tl_sampler_params;

tl_sampler_params tl_sampler_default_params(void);
tl_status tl_sampler_new(const tl_sampler_params *params, tl_sampler **out);
void tl_sampler_free(tl_sampler *s);
/* Pick a token from n logits (the logits are not modified). */
tl_token tl_sampler_sample(tl_sampler *s, const float *logits, int32_t n);
/* Record a token in the history used by the repetition penalty. */
void tl_sampler_accept(tl_sampler *s, tl_token t);
void tl_sampler_reset(tl_sampler *s);
/* The distribution tl_sampler_sample draws from for these logits, over all n
 * tokens: probs[i] is token i's probability after the whole chain (penalty,
 * top-k, top-p, min-p, temperature), 0 for the tokens it filters out. A
 * greedy sampler gives 1 at its pick. Uses no random number and leaves the
 * history alone. */
tl_status tl_sampler_probs(tl_sampler *s, const float *logits, int32_t n, float *probs);

/* ---- speculative decoding ------------------------------------------------ */

/* A speculative generator over one sequence of a target context. A draft
 * proposes tokens, the target checks them all in one tl_decode, and the
 * longest acceptable prefix is kept, plus one token of the target's own, so
 * that one target pass can yield several tokens. The draft is either a small
 * model (a context of it, any format and backend, whose vocabulary must be
 * the target's) or prompt lookup (no model: the continuation of the longest
 * recent n-gram of the sequence that occurred before in it).
 *
 * Output: with a greedy sampler, exactly the tokens the target alone picks
 * (the same tl_sampler_sample on the target's logits); otherwise, tokens
 * distributed exactly as the sampler's distribution of the target (Leviathan
 * et al. 2023, Chen et al. 2023): a drafted token d, drawn from the draft's
 * distribution q (the same sampler chain on the draft's logits), is kept with
 * probability min(1, p(d) / q(d)); on a rejection the token is drawn from
 * max(0, p - q), normalised, and the step ends. Prompt lookup's drafts are
 * fixed tokens (q is 1 at d). The random numbers are the sampler's, so a
 * seeded run repeats, but a seed gives other tokens than without a draft.
 *
 * Rejected positions are removed from both caches with tl_kv_seq_rm. The
 * draft length adapts to recent acceptance: it grows by 2 after a step whose
 * whole draft was accepted and shrinks by 1 after a rejection, within
 * [max(1, n_min), n_max]; the draft model stops early where its best token's
 * probability (softmax of its logits at temperature 1) is below p_min (a
 * decision made before a token is drawn, as exactness requires), and a draft
 * shorter than n_min is not verified.
 *
 * Greedy identity holds as far as the backend's logits of a batch equal its
 * logits of one token. The default n_max of 12 keeps a verification (n_max +
 * 1 tokens) below the 16 tokens at which the CUDA backend switches to its
 * cuBLAS batch path, whose Q8_0 logits differ from decoding's by about 2e-2. */
typedef struct tl_spec tl_spec;

typedef struct tl_spec_params {
  int32_t n_max;  /* most drafted tokens per step, 1..64 (default 12: see above) */
  int32_t n_min;  /* fewer drafted tokens are not verified (default 0) */
  float p_min;    /* draft model: stop drafting below this probability (0.75) */
  int32_t lookup; /* prompt lookup (no draft context): longest n-gram, 1..16 (3);
                     n-grams of 2..lookup tokens are matched (1 when lookup is 1) */
  int32_t seq;    /* the target's sequence (default 0); the draft uses its 0 */
} tl_spec_params;

typedef struct tl_spec_stats {
  int64_t n_drafted;    /* tokens proposed by the draft and verified */
  int64_t n_accepted;   /* of those, kept */
  int64_t n_generated;  /* tokens returned by tl_spec_next */
  int64_t n_target;     /* target passes (tl_decode calls) of tl_spec_next */
  int64_t n_draft;      /* draft model passes */
  int64_t t_draft_us;   /* time drafting (draft passes, lookup) */
  int64_t t_target_us;  /* time in the target's verification passes */
  int64_t t_prefill_us; /* time in tl_spec_begin */
} tl_spec_stats;

tl_spec_params tl_spec_default_params(void);
/* TL_OK when the two models' vocabularies agree (the same count, for every
 * token the same text, the same BOS and EOS); otherwise TL_ERR_INVALID_ARG
 * naming the first token that differs, e.g. "the draft model's vocabulary
 * differs from the target's: token 450 is ' W' in the target, ' ' in the
 * draft". */
tl_status tl_spec_check_vocab(const tl_model *target, const tl_model *draft);
/* A speculative generator on target (the context of the target model) with
 * draft (a context of the draft model; NULL: prompt lookup). Checks the
 * vocabularies. The contexts stay the caller's, and must outlive the
 * generator; it uses the target's sequence params->seq (NULL: defaults) and
 * the draft's sequence 0, clearing them as it needs. */
tl_status tl_spec_new(tl_context *target, tl_context *draft, const tl_spec_params *params,
                      tl_spec **out);
void tl_spec_free(tl_spec *sp);
/* Start (or continue) a sequence of n >= 1 tokens (a prompt, or a whole
 * conversation so far): the caches keep what they hold of a common prefix
 * and the rest is decoded, all but the last token (the first tl_spec_next
 * decodes it with its draft). TL_ERR_CONTEXT_FULL when n exceeds the
 * target's context. */
tl_status tl_spec_begin(tl_spec *sp, const tl_token *toks, int32_t n);
/* One step: writes 1..max tokens to out (*n_out of them) that continue the
 * sequence, chosen by smp on the target's logits (see above), and appends
 * them to the sequence. The step ends after an end-of-generation token
 * (tl_token_is_eog), which is returned. Each returned token is passed to
 * tl_sampler_accept(smp), so the caller does not. TL_ERR_CONTEXT_FULL when
 * the sequence fills the target's context; an error of tl_decode (e.g.
 * TL_ERR_ABORTED) leaves the caches consistent with the sequence before the
 * step. */
tl_status tl_spec_next(tl_spec *sp, tl_sampler *smp, int32_t max, tl_token *out, int32_t *n_out);
/* The sequence's length so far (prompt and generated tokens). */
int32_t tl_spec_n_tokens(const tl_spec *sp);
void tl_spec_get_stats(const tl_spec *sp, tl_spec_stats *out);
void tl_spec_reset_stats(tl_spec *sp);

/* ---- quantization and synthetic models ---------------------------------- */

/* File types with llama.cpp's LLAMA_FTYPE numbering (general.file_type). A
 * K-quant "mix" (Q4_K_M ...) picks a type per tensor as llama-quantize
 * does; see docs/quantization.md. */
typedef enum tl_ftype {
  TL_FTYPE_F32 = 0,
  TL_FTYPE_F16 = 1,
  TL_FTYPE_Q4_0 = 2,
  TL_FTYPE_Q4_1 = 3,
  TL_FTYPE_Q8_0 = 7,
  TL_FTYPE_Q5_0 = 8,
  TL_FTYPE_Q5_1 = 9,
  TL_FTYPE_Q2_K = 10,
  TL_FTYPE_Q3_K_S = 11,
  TL_FTYPE_Q3_K_M = 12,
  TL_FTYPE_Q3_K_L = 13,
  TL_FTYPE_Q4_K_S = 14,
  TL_FTYPE_Q4_K_M = 15,
  TL_FTYPE_Q5_K_S = 16,
  TL_FTYPE_Q5_K_M = 17,
  TL_FTYPE_Q6_K = 18,
  TL_FTYPE_IQ4_NL = 25, /* llama.cpp's IQ4_NL and IQ4_XS, no importance matrix */
  TL_FTYPE_IQ4_XS = 30,
  TL_FTYPE_BF16 = 32,
} tl_ftype;

/* Parse a type name, case-insensitive: "q8_0", "q4_k_m", "f16" ... and
 * llama-quantize's aliases "q3_k", "q4_k", "q5_k" (the _M mixes). */
tl_status tl_ftype_from_name(const char *name, tl_ftype *out);
const char *tl_ftype_name(tl_ftype ftype); /* "Q4_K_M"; NULL if unknown */

/* One call per tensor, before it is converted. Return false to cancel: the
 * call then fails with TL_ERR_ABORTED ("cancelled") and no output file is left. */
struct tl_quantize_progress {
  int32_t index, count; /* 0-based tensor index, number of tensors */
  const char *name;
  const char *src_type, *dst_type; /* type names, e.g. "F32" -> "Q4_K" */
  int64_t ne[4];                   /* shape, ne[0] = row length */
  uint64_t src_bytes, dst_bytes;
};
typedef struct tl_quantize_progress tl_quantize_progress;
typedef bool (*tl_progress_fn)(const tl_quantize_progress *p, void *user);

typedef struct tl_quantize_params {
  tl_ftype ftype;
  bool pure;         /* every quantizable tensor in the base type: no mix rules */
  int32_t n_threads; /* 0: number of physical cores */
  tl_progress_fn progress;
  void *progress_user;
} tl_quantize_params;

tl_quantize_params tl_quantize_default_params(void); /* Q8_0 */

/* Convert a model to a GGUF v3 file that llama.cpp reads: 2-D weights in the
 * chosen type(s), everything else copied (metadata, tokenizer, 1-D tensors);
 * general.file_type and general.quantization_version are set. The file is
 * written under a temporary name next to out_path and renamed at the end. */
tl_status tl_model_quantize(const char *in_path, const char *out_path,
                            const tl_quantize_params *params);

/* A model with random weights and a real model's exact shapes, for speed
 * measurements. Presets: "tinyllama-1.1b", "mistral-7b", "llama3-8b",
 * "qwen2.5-7b" (and "tiny", a small test shape). */
typedef struct tl_synth_params {
  const char *preset;
  tl_ftype ftype;
  uint64_t seed;
  /* A GGUF whose tokenizer is copied (its vocabulary padded with unused
   * tokens up to the preset's size). Required. */
  const char *tokenizer_model;
  int32_t n_layer;   /* > 0: override the preset's layer count (tests) */
  int32_t n_threads; /* 0: number of physical cores */
  tl_progress_fn progress;
  void *progress_user;
} tl_synth_params;

tl_synth_params tl_synth_default_params(void);
/* Names of the presets, NULL-terminated. */
const char *const *tl_synth_presets(void);
tl_status tl_synth_model(const char *out_path, const tl_synth_params *params);

/* ---- Torchless native .bin files ---------------------------------------- */

/* Write a LLaMA/Mistral-family model (a GGUF file of any type, a Hugging Face
 * folder or a .bin) as a classic Torchless .bin file: f32 weights, or with
 * int8 = true every *_proj matrix as int8 with a float32 scale per group of
 * 64 values (s = 127 / max|x|, q = round(x * s); an all-zero group gets
 * s = 1). The tokenizer is written as Hugging Face's tokenizer.json BPE model
 * represents it (SentencePiece vocabularies with merges derived from the
 * scores, as transformers' SpmConverter does). progress (may be NULL) is
 * called once per tensor. Written under a temporary name, then renamed. */
tl_status tl_model_convert_native(const char *in_path, const char *out_path, bool int8,
                                  tl_progress_fn progress, void *progress_user);

/* ---- chat templates -------------------------------------------------------- */

/* A model's chat template (a Jinja2 program, as Hugging Face's
 * apply_chat_template runs it: trim_blocks, lstrip_blocks, loop controls,
 * tojson with ensure_ascii=False, raise_exception(), strftime_now()). */
typedef struct tl_chat_template tl_chat_template;

/* Parse template text (len bytes). A syntax error is TL_ERR_FORMAT with the
 * line and column in the message; unknown filters and tests are syntax
 * errors, as in jinja2. */
tl_status tl_chat_template_parse(const char *text, size_t len, tl_chat_template **out);
void tl_chat_template_free(tl_chat_template *t);
/* Render with the keys of a JSON object as the variables (messages, tools,
 * add_generation_prompt, bos_token, ...). *out is malloc'd (free() it),
 * NUL-terminated, *out_len its length (out_len may be NULL). An error of
 * the template (raise_exception, a type error, an undefined value used, a
 * limit of output size, loop iterations or recursion depth) is
 * TL_ERR_INVALID_ARG with the template's message. */
tl_status tl_chat_template_render(const tl_chat_template *t, const char *vars_json, size_t len,
                                  char **out, size_t *out_len);

/* The model's template text (tokenizer.chat_template of a GGUF file; for a
 * Hugging Face folder chat_template in tokenizer_config.json or
 * chat_template.jinja), or NULL when it has none (or an empty one). */
const char *tl_model_chat_template(const tl_model *model);
/* Render a conversation: template_text, or the model's own when NULL; the
 * variables of vars_json plus, unless given, bos_token and eos_token from
 * the model (model may be NULL with a template_text). As apply_chat_template,
 * a model with named templates uses its "tool_use" one when vars_json has
 * tools. TL_ERR_UNSUPPORTED when there is no template. */
tl_status tl_chat_render(const tl_model *model, const char *template_text, const char *vars_json,
                         char **out, size_t *out_len);
/* The end-of-turn / end-of-generation tokens of a model: EOS, EOT, EOM, the
 * eos_token_id list of generation_config.json, and the template families'
 * end markers (<|eot_id|>, <|im_end|>, <end_of_turn>, ...). Writes up to cap
 * ids, returns how many there are. */
int32_t tl_model_eog_tokens(const tl_model *model, tl_token *out, int32_t cap);

/* ---- misc --------------------------------------------------------------- */

/* Number of physical cores (fallback: logical CPUs). */
int32_t tl_physical_cores(void);
/* Microseconds from a monotonic clock. */
int64_t tl_time_us(void);

#ifdef __cplusplus
}
#endif
#endif
