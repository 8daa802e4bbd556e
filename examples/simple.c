/* The whole life cycle of the library: load a model, tokenize a prompt,
 * generate with a sampler while streaming text, free everything.
 * usage: simple MODEL.gguf "PROMPT" */
#include <stdio.h>
#include <string.h>

#include "torchless.h"

static int check(tl_status s) {
  if (s) fprintf(stderr, "error: %s\n", tl_last_error());
  return s != TL_OK;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s MODEL.gguf PROMPT\n", argv[0]);
    return 1;
  }
  tl_model *model = NULL;
  if (check(tl_model_load(argv[1], NULL, &model))) return 1;

  tl_token prompt[512];
  size_t n_prompt = 0;
  if (check(tl_tokenize(model, argv[2], strlen(argv[2]), true, false, prompt, 512, &n_prompt)))
    return 1;

  tl_context_params cp = tl_context_default_params();
  cp.n_ctx = 256;
  tl_context *ctx = NULL;
  if (check(tl_context_new(model, &cp, &ctx))) return 1;

  tl_sampler_params sp = tl_sampler_default_params();
  sp.seed = 42;
  tl_sampler *sampler = NULL;
  tl_detok *detok = NULL;
  if (check(tl_sampler_new(&sp, &sampler)) || check(tl_detok_new(model, &detok))) return 1;

  /* prefill: the whole prompt in one batch, positions 0..n-1 */
  int32_t pos[512];
  for (size_t i = 0; i < n_prompt; i++) pos[i] = (int32_t)i;
  tl_batch batch = {.n_tokens = (int32_t)n_prompt, .tokens = prompt, .pos = pos};
  if (check(tl_decode(ctx, &batch))) return 1;

  printf("%s", argv[2]);
  char text[256];
  int n_gen = 0;
  for (int32_t p = (int32_t)n_prompt; p < 256 && n_gen < 48; p++) {
    tl_token t = tl_sampler_sample(sampler, tl_get_logits(ctx, 0), tl_model_n_vocab(model));
    if (tl_token_is_eog(model, t)) break;
    tl_sampler_accept(sampler, t);
    n_gen++;
    size_t n = tl_detok_push(detok, t, text, sizeof text);
    fwrite(text, 1, n, stdout);
    fflush(stdout);
    tl_batch step = {.n_tokens = 1, .tokens = &t, .pos = &p};
    if (check(tl_decode(ctx, &step))) return 1;
  }
  size_t n = tl_detok_flush(detok, text, sizeof text);
  fwrite(text, 1, n, stdout);
  printf("\ngenerated %d tokens\n", n_gen);

  tl_detok_free(detok);
  tl_sampler_free(sampler);
  tl_context_free(ctx);
  tl_model_free(model);
  return 0;
}
