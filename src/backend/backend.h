/* The backend boundary: what the forward pass (model/forward.c) asks of a
 * device. A backend owns its buffers, its KV cache (the layout is private:
 * the model names a layer, a sequence and positions), its threads or streams
 * and its kernels; the model owns the recipe (which operations, in which
 * order, with which traits) and nothing device-specific.
 *
 * Shape of a step. tl_decode cuts a batch into steps of at most n_batch
 * tokens. For each step the recipe calls step_begin with the tokens, their
 * positions and sequences and the rows whose logits are wanted (host
 * arrays: the backend copies what it needs), then a fixed sequence of the
 * operations below on backend buffers, then step_end, then to_host for the
 * wanted rows of logits.
 * The sequence depends only on the model and the step's shape (token count,
 * rows out), never on the values, so a GPU backend can capture one decode
 * step as a graph and replay it; no operation returns a value to the host
 * except to_host. Operations do not fail one by one: a device error
 * is kept and returned by step_end (or to_host). Between step_begin
 * and step_end only the operations are called (no to_host, from_host,
 * kv_copy, prepare or buffer calls): a GPU backend may be capturing them.
 *
 * Buffers. alloc gives device memory the host never dereferences (on the CPU
 * it is host memory); the recipe passes such pointers, and pointers inside
 * them, to the operations. Activations are float32 rows, row-major.
 *
 * Weights. prepare_weight / prepare_vector make one of a model's tensors
 * available to the backend and return the backend's view of it (the CPU
 * returns the mapped file's own view; a GPU uploads it once). */
#ifndef TL_BACKEND_H
#define TL_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "torchless.h"

/* A weight matrix for y = W x: rows output features, cols input features,
 * stored row-major in its file type. data is in the memory of whoever holds
 * the view: the mapped file for the model's own, the device for a
 * backend's. */
typedef struct tl_weight {
  uint32_t type;
  int64_t rows, cols;
  size_t row_bytes;
  const void *data;
  /* Torchless .bin int8 weights (type TL_TYPE_I8): one float per group of 64
   * values of a row, value = q / scale; row r's scales start at
   * scales + r * cols / 64. NULL for every other type. */
  const float *scales;
} tl_weight;

/* Group size of the int8 weights with separate scales. */
#define TL_I8S_GROUP 64

/* Row i of a host weight (the model's view) as float32 into out[cols]. */
void tl_weight_row_f32(const tl_weight *w, int64_t i, float *out);

typedef enum tl_norm_kind { TL_NORM_RMS = 0, TL_NORM_LAYER = 1 } tl_norm_kind;
/* RoPE pairing: NORM rotates adjacent pairs (x[2i], x[2i+1]) as in GGUF
 * LLaMA files (whose Q/K rows llama.cpp permuted); NEOX rotates the halves
 * (x[i], x[i + n_rot/2]) as Hugging Face's rotate_half. */
typedef enum tl_rope_kind { TL_ROPE_NORM = 0, TL_ROPE_NEOX = 1 } tl_rope_kind;
typedef enum tl_act_kind { TL_ACT_SILU = 0, TL_ACT_GELU_TANH = 1, TL_ACT_GELU = 2 } tl_act_kind;

/* What a backend instance is created for: the model's shapes, the context's
 * sizes, and the CPU's options (ignored by other backends). */
typedef struct tl_backend_config {
  int32_t n_layer, n_head, n_head_kv, head_dim, n_embd;
  int32_t n_ctx, n_seq, n_batch;
  tl_kv_type kv_type;
  int32_t n_threads;
  /* CPU kernel set by name (NULL or "": the best this CPU runs; the
   * environment's TL_CPU_KERNELS overrides, for tests) */
  const char *cpu_kernels;
  /* positions per attention tile (0: the backend's own; TL_ATT_TILE in the
   * environment overrides, for tests) */
  int32_t att_tile;
  /* low-memory mode (tl_context_params.low_mem): the CPU's KV cache without
   * huge pages (a short sequence would hold a 2 MiB page per kv head and
   * layer: a GiB for a 7B model at 32k positions) */
  bool low_mem;
} tl_backend_config;

/* The options of a context's parameters that are the backend's (the CPU
 * kernel set, the attention tile), into cfg. */
void tl_backend_config_options(tl_backend_config *cfg, const tl_context_params *p);

/* One step: n tokens, each with its position and sequence, and the n_out
 * rows (indices into the step, ascending) whose logits are wanted. The
 * arrays are the caller's, valid until step_end. */
typedef struct tl_step {
  int32_t n;
  const tl_token *tokens;
  const int32_t *pos, *seq;
  int32_t n_out;
  const int32_t *out_rows;
} tl_step;

/* y = norm(x) over rows of len values, with x first updated by a residual:
 *   x[r] += a[r] (+ b[r])     where a is not NULL (a + b summed first)
 *   y[r] = norm(x[r]) * w (+ nb)   where w is not NULL (y may be x)
 * RMS: x / sqrt(mean(x^2) + eps); LAYER: (x - mean) / sqrt(var + eps), the
 * sums in double. */
typedef struct tl_norm_op {
  float *x;
  const float *a, *b;
  const float *w, *nb;
  float *y;
  int64_t rows, len;
  tl_norm_kind kind;
  float eps;
} tl_norm_op;

/* RoPE on the step's q (n_head heads) and k (n_head_kv heads) rows, token t
 * rotated by its position pos[t] * freq_scale: the first n_rot values of
 * each head of head_dim, pair i at frequency theta^(-2i/n_rot), divided by
 * freq_factors[i] where given (a backend vector). */
typedef struct tl_rope_op {
  float *q, *k;
  int32_t n_head, n_head_kv, head_dim, n_rot;
  tl_rope_kind kind;
  float theta, freq_scale;
  const float *freq_factors;
} tl_rope_op;

/* Attention of the step's tokens over the cache of layer `layer`: token t,
 * query head h reads kv head h / (n_head / n_head_kv) of sequence seq[t] at
 * positions j <= pos[t] (and j > pos[t] - window where window > 0):
 * softmax(cap * tanh(scale * q.k / cap)) (no tanh where softcap is 0) times
 * V. q is [n][n_head * head_dim], out the same shape. */
typedef struct tl_attn_op {
  int32_t layer;
  const float *q;
  float *out;
  int32_t n_head, n_head_kv, head_dim, window;
  float scale, softcap;
} tl_attn_op;

/* Mixture of experts, routing: for each of the step's n tokens, the router
 * logits [n][n_expert] (float32) through a softmax, the k largest
 * probabilities (ties to the lower expert index) in descending order into
 * ids [n][k] (int32) and weights [n][k], divided by their sum where norm.
 * Computed on the device: the expert choice never reaches the host, so the
 * step's operation sequence does not depend on it. */
typedef struct tl_moe_route_op {
  const float *logits;
  int32_t *ids;
  float *weights;
  int32_t n, n_expert, k;
  bool norm;
} tl_moe_route_op;

/* Mixture of experts, the indirect product: w holds n_expert matrices of
 * w->rows / n_expert rows each, stacked (expert e's rows start at row
 * e * w->rows / n_expert, as llama.cpp's ffn_*_exps tensors). For token t and
 * slot j < k, with e = ids[t * k + j] and x_tj = x[t] (x_per_slot false:
 * x is [n][cols]) or x[t * k + j] (true: x is [n][k][cols]):
 *   weights NULL: y[t * k + j] = W_e x_tj        (y is [n][k][rows / n_expert])
 *   else:         y[t] = sum_j weights[t * k + j] * W_e x_tj, summed in slot
 *                 order                          (y is [n][rows / n_expert])
 * A backend reads each chosen expert's weights once per step (the tokens
 * routed to it grouped), and no expert that no token chose. */
typedef struct tl_matmul_id_op {
  const tl_weight *w;
  int32_t n_expert;
  const float *x;
  bool x_per_slot;
  const int32_t *ids;
  const float *weights;
  int32_t n, k;
  float *y;
} tl_matmul_id_op;

typedef struct tl_backend tl_backend;

/* The table a backend fills; one instance per context (priv is its state). */
struct tl_backend {
  const char *name;   /* "cpu", "cuda" */
  const char *detail; /* e.g. the CPU kernel set or the GPU's name */
  void *priv;

  /* Whether the backend can multiply weights of this type. */
  bool (*supports_type)(const tl_backend *be, uint32_t type);
  void (*free)(tl_backend *be);

  /* Weights: the backend's view of a host weight or a host vector of n
   * floats (valid until free). */
  tl_status (*prepare_weight)(tl_backend *be, const tl_weight *host, tl_weight *out);
  tl_status (*prepare_vector)(tl_backend *be, const float *host, int64_t n, const float **out);

  /* Buffers of device memory (NULL on failure), freed by buffer_free or
   * with the backend. */
  void *(*buffer_alloc)(tl_backend *be, size_t bytes);
  void (*buffer_free)(tl_backend *be, void *p);

  /* KV cache sequence operations (its layout is the backend's): copy the
   * positions [p0, p1) of every layer from sequence src to dst. */
  tl_status (*kv_copy)(tl_backend *be, int32_t src, int32_t dst, int32_t p0, int32_t p1);
  /* Positions [p0, p1) of sequence seq out of the cache into buf (write:
   * from buf into the cache), in one layout whatever the backend's: for each
   * of the backend's layers, for each kv head, the keys of the positions
   * then their values, one row per position of head_dim values in the
   * cache's type (f32, f16, or Q8_0 blocks): tl_kv_row_bytes() each. */
  tl_status (*kv_io)(tl_backend *be, int32_t seq, int32_t p0, int32_t p1, void *buf, bool write);

  /* A step: begin (the hook where a GPU backend captures or replays a
   * graph of the operations up to step_end), the operations, end. */
  tl_status (*step_begin)(tl_backend *be, const tl_step *st);
  tl_status (*step_end)(tl_backend *be);

  /* x[t] = row tokens[t] of the embedding table w, for the step's tokens. */
  void (*embed)(tl_backend *be, const tl_weight *w, float *x);
  /* y[t] = x[out_rows[t]] for the step's n_out rows of len values. */
  void (*select_out)(tl_backend *be, const float *x, float *y, int64_t len);
  void (*norm)(tl_backend *be, const tl_norm_op *op);
  /* y[t][r] = sum_c W[r][c] x[t][c] (+ bias[r]) for t < n; x rows are
   * w->cols apart, y rows ldy apart. */
  void (*matmul)(tl_backend *be, const tl_weight *w, const float *bias, const float *x, int32_t n,
                 float *y, int64_t ldy);
  void (*rope)(tl_backend *be, const tl_rope_op *op);
  /* Mixture of experts: the router's choice (ids, weights), and the
   * experts' products on it (see tl_moe_route_op, tl_matmul_id_op). */
  void (*moe_route)(tl_backend *be, const tl_moe_route_op *op);
  void (*matmul_id)(tl_backend *be, const tl_matmul_id_op *op);
  /* The step's keys and values ([n][n_head_kv * head_dim] each) into the
   * cache of layer `layer`, at their tokens' sequences and positions; of two
   * tokens at one position, the later in the step stays. */
  void (*kv_store)(tl_backend *be, int32_t layer, const float *k, const float *v);
  void (*attention)(tl_backend *be, const tl_attn_op *op);
  /* a = act(a) * b (gated) or a = act(b), n values. */
  void (*act)(tl_backend *be, tl_act_kind kind, bool gated, float *a, const float *b, int64_t n);
  /* x *= s, n values. */
  void (*scale)(tl_backend *be, float *x, float s, int64_t n);
  /* x = cap * tanh(x / cap), n values. */
  void (*softcap)(tl_backend *be, float *x, float cap, int64_t n);
  /* n floats from device to host (waits for the step's work). */
  tl_status (*to_host)(tl_backend *be, const float *src, float *dst, int64_t n);
  /* n floats from host to device (tests, and inputs a caller gives). */
  tl_status (*from_host)(tl_backend *be, const float *src, float *dst, int64_t n);
  /* Device memory (NULL where the backend's memory is the host's): the
   * bytes the backend holds now and at most so far, and what the whole
   * device has in use (other processes and the runtime's own included). */
  void (*memory)(tl_backend *be, uint64_t *now, uint64_t *peak, uint64_t *device_used);
};

/* A backend instance by name: "cpu", a GPU backend's name, or "auto" / NULL
 * (the best that initialises, the choice and the reason logged). An unknown
 * name or one this build or machine cannot run is TL_ERR_UNSUPPORTED. */
tl_status tl_backend_new(const char *name, const tl_backend_config *cfg, tl_backend **out);
void tl_backend_free(tl_backend *be);

/* Bytes of one position's row of one kv head in a cache of this type
 * (kv_io's layout): head_dim floats, halves, or Q8_0 blocks. */
static inline size_t tl_kv_row_bytes(tl_kv_type t, int32_t head_dim) {
  return t == TL_KV_F32   ? 4 * (size_t)head_dim
         : t == TL_KV_F16 ? 2 * (size_t)head_dim
                          : (size_t)head_dim / 32 * 34;
}

/* Whether some backend of this build multiplies weights of this type (the
 * CPU, the reference, has every type any backend has). */
bool tl_backend_type_supported(uint32_t type);

/* The CPU backend (src/backend/cpu/backend_cpu.c). */
tl_status tl_backend_cpu_new(const tl_backend_config *cfg, tl_backend **out);

/* The OpenCL backend (src/backend/opencl/backend_opencl.c; builds with
 * TL_HAVE_OPENCL): TL_ERR_UNSUPPORTED, saying why, where the ICD loader or
 * a device is missing or the kernels do not build. */
tl_status tl_backend_opencl_new(const tl_backend_config *cfg, tl_backend **out);

#endif
