/* Model and context facts for tools (bench, logs). */
#include "model/model.h"

/* Bytes of weights a decode step reads: every matrix once, but of the
 * embedding only one row (unless the output head shares it), and of a
 * mixture of experts only the n_expert_used experts a token chooses. */
uint64_t tl_model_decode_bytes(const tl_model *m) {
  if (!m->has_weights) return 0;
  uint64_t embd = m->tok_embd.row_bytes * (uint64_t)m->tok_embd.rows;
  bool tied = m->output.data == m->tok_embd.data;
  uint64_t b = tied ? m->weight_bytes : m->weight_bytes - embd + m->tok_embd.row_bytes;
  for (int il = 0; il < m->hp.n_layer && m->hp.n_expert > 0; il++) {
    const tl_layer *L = &m->layers[il];
    const tl_weight *ws[] = {&L->w_gate_exps, &L->w_up_exps, &L->w_down_exps};
    for (size_t i = 0; i < 3; i++) {
      const uint64_t all = ws[i]->row_bytes * (uint64_t)ws[i]->rows;
      b -= all - all / (uint64_t)m->hp.n_expert * (uint64_t)m->hp.n_expert_used;
    }
  }
  return b;
}

/* The type of most weight bytes, e.g. "Q4_K", or the file's type name. */
const char *tl_model_weight_type(const tl_model *m) {
  if (!m->has_weights) return "none";
  uint64_t bytes[TL_TYPE_COUNT] = {0};
  for (int il = 0; il < m->hp.n_layer; il++) {
    const tl_layer *L = &m->layers[il];
    const tl_weight *ws[] = {&L->wq,   &L->wk,     &L->wv,          &L->wo,        &L->w_gate,
                             &L->w_up, &L->w_down, &L->w_gate_exps, &L->w_up_exps, &L->w_down_exps};
    for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++)
      if (ws[i]->data && ws[i]->type < TL_TYPE_COUNT)
        bytes[ws[i]->type] += ws[i]->row_bytes * (uint64_t)ws[i]->rows;
  }
  uint32_t best = 0;
  for (uint32_t t = 0; t < TL_TYPE_COUNT; t++)
    if (bytes[t] > bytes[best]) best = t;
  return tl_type_name(best);
}
