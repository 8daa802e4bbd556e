/* The public chat-template API: parse and render templates, a model's own
 * template and its end-of-turn tokens. */
#include <cjson/cJSON.h>
#include <stdlib.h>

#include "chat/jinja.h"
#include "model/model.h"

struct tl_chat_template {
  jj_template *t;
};

tl_status tl_chat_template_parse(const char *text, size_t len, tl_chat_template **out) {
  if (!out) return tl_fail(TL_ERR_INVALID_ARG, "no output");
  *out = NULL;
  if (!text) return tl_fail(TL_ERR_INVALID_ARG, "no template text");
  tl_chat_template *ct = calloc(1, sizeof *ct);
  if (!ct) return tl_fail(TL_ERR_NOMEM, "out of memory");
  tl_status st = jj_parse(text, len, &ct->t);
  if (st != TL_OK) {
    free(ct);
    return st;
  }
  *out = ct;
  return TL_OK;
}

void tl_chat_template_free(tl_chat_template *t) {
  if (!t) return;
  jj_template_free(t->t);
  free(t);
}

tl_status tl_chat_template_render(const tl_chat_template *t, const char *vars_json, size_t len,
                                  char **out, size_t *out_len) {
  if (!t || !out) return tl_fail(TL_ERR_INVALID_ARG, "no template or output");
  return jj_render(t->t, vars_json, vars_json ? len : 0, out, out_len);
}

const char *tl_model_chat_template(const tl_model *model) {
  return model ? model->chat_template : NULL;
}

static bool add_token_var(cJSON *root, const tl_model *model, const char *key, tl_token t) {
  if (cJSON_GetObjectItemCaseSensitive(root, key)) return true;
  const char *text = "";
  size_t len = 0;
  if (model && model->vocab && t >= 0) {
    const char *x = tl_vocab_text(model->vocab, t, &len);
    if (x)
      text = x;
    else
      len = 0;
  }
  char *copy = tl_strndup(text, len);
  if (!copy) return false;
  cJSON *item = cJSON_CreateString(copy);
  free(copy);
  return item && cJSON_AddItemToObject(root, key, item);
}

tl_status tl_chat_render(const tl_model *model, const char *template_text, const char *vars_json,
                         char **out, size_t *out_len) {
  if (!out) return tl_fail(TL_ERR_INVALID_ARG, "no output");
  *out = NULL;
  const char *text = template_text ? template_text : tl_model_chat_template(model);
  /* as apply_chat_template: a model with named templates uses "tool_use"
   * when tools are given and it has one */
  char *named = NULL;
  if (!template_text && model && model->gguf && vars_json) {
    cJSON *root = cJSON_Parse(vars_json);
    const cJSON *tools = cJSON_GetObjectItemCaseSensitive(root, "tools");
    tl_str ts;
    if (tools && !cJSON_IsNull(tools) &&
        tl_gguf_get_str(model->gguf, "tokenizer.chat_template.tool_use", &ts) && ts.len > 0) {
      named = tl_strndup(ts.ptr, (size_t)ts.len);
      if (named) text = named;
    }
    cJSON_Delete(root);
  }
  if (!text) return tl_fail(TL_ERR_UNSUPPORTED, "the model has no chat template");
  tl_chat_template *t;
  tl_status st = tl_chat_template_parse(text, strlen(text), &t);
  free(named);
  if (st != TL_OK) return st;
  const char *vars = vars_json ? vars_json : "{}";
  char *merged = NULL;
  if (model) {
    /* bos_token / eos_token from the model unless the caller gave them; the
     * caller's JSON text is kept as is (cJSON would print 1.0 as 1) */
    cJSON *root = cJSON_Parse(vars);
    cJSON *extra = cJSON_CreateObject();
    char *ex = NULL;
    bool ok = root && cJSON_IsObject(root);
    if (ok) {
      for (int k = 0; k < 2; k++) {
        const char *key = k ? "eos_token" : "bos_token";
        if (cJSON_GetObjectItemCaseSensitive(root, key)) continue;
        if (!extra ||
            !add_token_var(extra, model, key, k ? tl_token_eos(model) : tl_token_bos(model))) {
          ok = false;
          break;
        }
      }
    }
    if (ok && extra && extra->child) {
      ex = cJSON_PrintUnformatted(extra);
      const char *body = strchr(vars, '{') + 1;
      const char *q = body;
      while (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r') q++;
      size_t el = ex ? strlen(ex) : 0, bl = strlen(body);
      merged = ex ? malloc(el + bl + 2) : NULL;
      if (merged) {
        memcpy(merged, ex, el - 1);
        if (*q == '}') {
          memcpy(merged + el - 1, "}", 2);
        } else {
          merged[el - 1] = ',';
          memcpy(merged + el, body, bl + 1);
        }
        vars = merged;
      } else {
        ok = false;
      }
    }
    bool was_object = root && cJSON_IsObject(root);
    free(ex);
    cJSON_Delete(extra);
    cJSON_Delete(root);
    if (!ok) {
      free(merged);
      tl_chat_template_free(t);
      return was_object ? tl_fail(TL_ERR_NOMEM, "out of memory")
                        : tl_fail(TL_ERR_INVALID_ARG, "variables: not a JSON object");
    }
  }
  st = tl_chat_template_render(t, vars, strlen(vars), out, out_len);
  free(merged);
  tl_chat_template_free(t);
  return st;
}

int32_t tl_model_eog_tokens(const tl_model *model, tl_token *out, int32_t cap) {
  if (!model || !model->vocab) return 0;
  const tl_vocab *v = model->vocab;
  for (int32_t i = 0; i < v->n_eog && i < cap; i++) out[i] = v->eog[i];
  return v->n_eog;
}
