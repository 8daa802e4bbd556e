/* libFuzzer target: a chat template (Jinja) parsed and rendered. The input
 * is the template, optionally followed by "\n@@@@\n" and the JSON object of
 * variables (else a short conversation). Small limits keep each input fast;
 * a failure must leave a message, and nothing may leak or crash. */
#include <stdlib.h>

#include "chat/jinja.h"
#include "fuzz_util.h"

static const char k_vars[] =
    "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", "
    "\"content\": \"Hi \\u00e9\"}, {\"role\": \"assistant\", \"content\": \"Hello\", "
    "\"tool_calls\": [{\"type\": \"function\", \"function\": {\"name\": \"f\", \"arguments\": "
    "{\"x\": 1.5}}}]}, {\"role\": \"tool\", \"content\": \"42\"}], \"tools\": [{\"type\": "
    "\"function\", \"function\": {\"name\": \"f\", \"parameters\": {}}}], "
    "\"add_generation_prompt\": true, \"bos_token\": \"<s>\", \"eos_token\": \"</s>\"}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  size_t n1, n2;
  const uint8_t *p2;
  fz_split(data, size, &n1, &p2, &n2);
  jj_template *t = NULL;
  tl_clear_error();
  tl_status s = jj_parse((const char *)data, n1, &t);
  if (s != TL_OK) {
    if (t || !tl_last_error()[0]) abort();
    return 0;
  }
  jj_limits lim = {.max_output = 1 << 20, .max_steps = 100000, .max_arena = 64 << 20};
  char *out = NULL;
  size_t out_len = 0;
  const char *vars = p2 ? (const char *)p2 : k_vars;
  size_t vlen = p2 ? n2 : sizeof k_vars - 1;
  s = jj_render_limits(t, vars, vlen, &lim, &out, &out_len);
  if (s != TL_OK) {
    if (out || !tl_last_error()[0]) abort();
  } else {
    if (!out || out[out_len] != 0) abort();
    free(out);
  }
  jj_template_free(t);
  return 0;
}
