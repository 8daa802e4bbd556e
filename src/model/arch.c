/* Architecture traits. Adding an architecture means adding a row here (and
 * the hyper-parameters it needs in model.c), not a copy of the forward pass. */
#include "model/model.h"

static const tl_arch g_archs[] = {
    /* LLaMA 1/2/3 and Mistral (llama.cpp converts Mistral to "llama") */
    {.name = "llama",
     .norm = TL_NORM_RMS,
     .act = TL_ACT_SILU,
     .gated_ffn = true,
     .rope = TL_ROPE_NORM,
     .ffn_norm = true,
     .moe_norm = true},
    /* Qwen 2 (q/k/v biases) and Qwen 3 (q/k norms) */
    {.name = "qwen2",
     .norm = TL_NORM_RMS,
     .act = TL_ACT_SILU,
     .gated_ffn = true,
     .rope = TL_ROPE_NEOX,
     .ffn_norm = true},
    {.name = "qwen3",
     .norm = TL_NORM_RMS,
     .act = TL_ACT_SILU,
     .gated_ffn = true,
     .rope = TL_ROPE_NEOX,
     .ffn_norm = true},
    /* Qwen3-MoE: Qwen 3 with a mixture of experts in every layer (llama.cpp
     * renormalizes its top-k; a Hugging Face view with norm_topk_prob false
     * says expert_weights_norm = false). Mixtral is "llama" with experts. */
    {.name = "qwen3moe",
     .norm = TL_NORM_RMS,
     .act = TL_ACT_SILU,
     .gated_ffn = true,
     .rope = TL_ROPE_NEOX,
     .ffn_norm = true,
     .moe_norm = true},
    /* Phi-2: LayerNorm, partial rotary, attention and MLP in parallel */
    {.name = "phi2",
     .norm = TL_NORM_LAYER,
     .act = TL_ACT_GELU_TANH,
     .gated_ffn = false,
     .rope = TL_ROPE_NEOX,
     .parallel = true,
     .ffn_norm = false},
    /* Phi-3: fused qkv and gate_up */
    {.name = "phi3",
     .norm = TL_NORM_RMS,
     .act = TL_ACT_SILU,
     .gated_ffn = true,
     .rope = TL_ROPE_NEOX,
     .ffn_norm = true},
    /* Gemma 1/2/3: scaled embeddings, GeGLU; norms stored as (1 + w) */
    {.name = "gemma",
     .norm = TL_NORM_RMS,
     .act = TL_ACT_GELU_TANH,
     .gated_ffn = true,
     .rope = TL_ROPE_NEOX,
     .embd_scale = true,
     .ffn_norm = true},
    {.name = "gemma2",
     .norm = TL_NORM_RMS,
     .act = TL_ACT_GELU_TANH,
     .gated_ffn = true,
     .rope = TL_ROPE_NEOX,
     .embd_scale = true,
     .ffn_norm = true,
     .swa_period = 2,
     .scale_by_embd_layers = 46},
    {.name = "gemma3",
     .norm = TL_NORM_RMS,
     .act = TL_ACT_GELU_TANH,
     .gated_ffn = true,
     .rope = TL_ROPE_NEOX,
     .embd_scale = true,
     .ffn_norm = true,
     .swa_period = 6,
     .swa_rope_base = true,
     .scale_by_embd_layers = 62},
};

const tl_arch *tl_arch_find(const char *name, size_t len) {
  for (size_t i = 0; i < sizeof g_archs / sizeof g_archs[0]; i++)
    if (strlen(g_archs[i].name) == len && memcmp(g_archs[i].name, name, len) == 0)
      return &g_archs[i];
  return NULL;
}
