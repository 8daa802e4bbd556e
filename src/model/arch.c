/* Architecture traits. Adding an architecture means adding a row here (and
 * the tensor names / hyper-parameters it needs in model.c), not a copy of the
 * forward pass. */
#include "model/model.h"

static const tl_arch g_archs[] = {
    /* LLaMA 1/2/3, Mistral (llama.cpp converts Mistral to "llama") */
    {.name = "llama", .norm = TL_NORM_RMS, .act = TL_ACT_SILU, .gated_ffn = true},
};

const tl_arch *tl_arch_find(const char *name, size_t len) {
  for (size_t i = 0; i < sizeof g_archs / sizeof g_archs[0]; i++)
    if (strlen(g_archs[i].name) == len && memcmp(g_archs[i].name, name, len) == 0)
      return &g_archs[i];
  return NULL;
}
