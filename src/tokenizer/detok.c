/* Public streaming detokenizer: the vocabulary-level one of the model. */
#include "tokenizer/tokenizer.h"

/* Provided by the model code (src/model/model.h). */
extern const tl_vocab *tl_model_vocab(const tl_model *m);

tl_status tl_detok_new(const tl_model *model, tl_detok **out) {
  if (!model) {
    if (out) *out = NULL;
    return tl_fail(TL_ERR_INVALID_ARG, "tl_detok_new: NULL model");
  }
  return tl_vocab_detok_new(tl_model_vocab(model), out);
}

size_t tl_detok_push(tl_detok *d, tl_token t, char *buf, size_t cap) {
  return tl_vocab_detok_push(d, t, buf, cap);
}

size_t tl_detok_flush(tl_detok *d, char *buf, size_t cap) {
  return tl_vocab_detok_flush(d, buf, cap);
}

void tl_detok_free(tl_detok *d) {
  tl_vocab_detok_free(d);
}
