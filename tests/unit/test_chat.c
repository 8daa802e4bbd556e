/* Chat templates through the public API: rendering, the errors (syntax with
 * line and column, unknown filters and tests, raise_exception, undefined
 * values, type errors) and the limits (recursion depth, loop iterations,
 * output size) as statuses with messages, a model's template and its
 * bos/eos variables, the end-of-turn tokens. (tests/chat compares the
 * rendering with Python's jinja2.) */
#include "testutil.h"

#define DEMO TL_TEST_DATA "/../../models/kjv-llama-13m-q8_0.gguf"

static tl_status render(const char *tmpl, const char *vars, char **out) {
  tl_chat_template *t = NULL;
  *out = NULL;
  tl_status s = tl_chat_template_parse(tmpl, strlen(tmpl), &t);
  if (s) {
    assert_null(t);
    return s;
  }
  s = tl_chat_template_render(t, vars, strlen(vars), out, NULL);
  tl_chat_template_free(t);
  return s;
}

static void expect(const char *tmpl, const char *vars, const char *want) {
  char *out;
  tl_status s = render(tmpl, vars, &out);
  if (s) fail_msg("%s: %s", tmpl, tl_last_error());
  assert_string_equal(out, want);
  free(out);
}

static void expect_error(const char *tmpl, const char *vars, tl_status want, const char *msg) {
  char *out;
  tl_status s = render(tmpl, vars, &out);
  assert_int_equal(s, want);
  assert_null(out);
  if (!strstr(tl_last_error(), msg)) fail_msg("%s: '%s' lacks '%s'", tmpl, tl_last_error(), msg);
}

static void test_render(void **state) {
  (void)state;
  expect("{% for m in messages %}<{{ m.role }}>{{ m.content | trim }}\n{% endfor %}",
         "{\"messages\": [{\"role\": \"user\", \"content\": \" hi \"}]}", "<user>hi\n");
  expect("{{ x }}|{{ y }}|{{ z }}|{{ w }}",
         "{\"x\": 1.0, \"y\": 2, \"z\": [1, \"a\", null], \"w\": true}",
         "1.0|2|[1, 'a', None]|True");
  expect("{{ d | tojson }}", "{\"d\": {\"b\": \"é\", \"a\": [1.5, false]}}",
         "{\"b\": \"é\", \"a\": [1.5, false]}");
  expect("  {% if true %}\n  x\n  {% endif %}\n", "{}", "  x\n");
  expect("{{ strftime_now('%Y') | length }}", "{}", "4");
}

static void test_errors(void **state) {
  (void)state;
  expect_error("line 1\n{{ a + }}", "{}", TL_ERR_FORMAT, "line 2, column 8");
  expect_error("{% if x %}", "{}", TL_ERR_FORMAT, "line 1");
  expect_error("{{ x | nosuchfilter }}", "{}", TL_ERR_FORMAT, "No filter named 'nosuchfilter'.");
  expect_error("{{ x is nosuchtest }}", "{}", TL_ERR_FORMAT, "No test named 'nosuchtest'.");
  expect_error("{% do x %}", "{}", TL_ERR_FORMAT, "unknown tag 'do'");
  expect_error("{{ 'x' ~ }}", "{}", TL_ERR_FORMAT, "syntax error");
  expect_error("{{ raise_exception('Roles must alternate') }}", "{}", TL_ERR_INVALID_ARG,
               "Roles must alternate");
  expect_error("{{ messages[0].role }}", "{\"messages\": []}", TL_ERR_INVALID_ARG,
               "list object has no element 0");
  expect_error("{{ m.a.b }}", "{\"m\": {}}", TL_ERR_INVALID_ARG,
               "'dict object' has no attribute 'a'");
  expect_error("{{ 'a' + 1 }}", "{}", TL_ERR_INVALID_ARG, "can only concatenate str");
  expect_error("{{ [].append(1) }}", "{}", TL_ERR_INVALID_ARG, "unsafe");
  expect_error("{{ 1 // 0 }}", "{}", TL_ERR_INVALID_ARG, "division");
  expect_error("{{ x }}", "[1, 2]", TL_ERR_INVALID_ARG, "not an object");
  expect_error("{{ x }}", "{\"x\": ", TL_ERR_INVALID_ARG, "invalid JSON");
}

static void test_limits(void **state) {
  (void)state;
  expect_error("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "{}", TL_ERR_INVALID_ARG,
               "recursion depth");
  expect_error(
      "{% set r = range(100000) %}{% for i in r %}{% for j in r %}{% endfor %}{% endfor %}", "{}",
      TL_ERR_INVALID_ARG, "loop iterations");
  expect_error(
      "{% set s = namespace(x='x') %}{% for i in range(40) %}{% set s.x = s.x ~ s.x %}"
      "{% endfor %}{{ s.x }}",
      "{}", TL_ERR_INVALID_ARG, "too long");
  /* deep nesting in the parser */
  char deep[4096];
  size_t k = 0;
  k += (size_t)snprintf(deep + k, sizeof deep - k, "{{ ");
  for (int i = 0; i < 1000; i++) deep[k++] = '(';
  deep[k++] = '1';
  for (int i = 0; i < 1000; i++) deep[k++] = ')';
  snprintf(deep + k, sizeof deep - k, " }}");
  expect_error(deep, "{}", TL_ERR_FORMAT, "nested too deeply");
}

static void test_model(void **state) {
  (void)state;
  tl_model_params mp = tl_model_default_params();
  mp.vocab_only = true;
  tl_model *m = NULL;
  assert_int_equal(tl_model_load(DEMO, &mp, &m), TL_OK);
  const char *t = tl_model_chat_template(m);
  assert_non_null(t);
  char *out = NULL;
  size_t len = 0;
  assert_int_equal(tl_chat_render(m, NULL,
                                  "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}], "
                                  "\"add_generation_prompt\": true}",
                                  &out, &len),
                   TL_OK);
  assert_string_equal(out, "<s>[INST] Hi [/INST]");
  assert_int_equal(len, strlen(out));
  free(out);
  /* the caller's bos_token wins; an empty object works */
  assert_int_equal(
      tl_chat_render(m, "{{ bos_token }}|{{ eos_token }}", "{\"bos_token\": \"B\"}", &out, NULL),
      TL_OK);
  assert_string_equal(out, "B|</s>");
  free(out);
  assert_int_equal(tl_chat_render(m, "{{ bos_token }}{{ eos_token }}", " { } ", &out, NULL), TL_OK);
  assert_string_equal(out, "<s></s>");
  free(out);
  tl_token eog[16];
  int32_t n = tl_model_eog_tokens(m, eog, 16);
  assert_true(n >= 1);
  bool has_eos = false;
  for (int32_t i = 0; i < n && i < 16; i++) has_eos |= eog[i] == tl_token_eos(m);
  assert_true(has_eos);
  tl_model_free(m);

  /* named templates: "tool_use" when tools are given */
  const char *ov_tool[] = {"tokenizer.chat_template.tool_use=str:T{{ tools | length }}", NULL};
  mp.kv_overrides = ov_tool;
  assert_int_equal(tl_model_load(DEMO, &mp, &m), TL_OK);
  assert_int_equal(tl_chat_render(m, NULL, "{\"messages\": [], \"tools\": [1, 2]}", &out, NULL),
                   TL_OK);
  assert_string_equal(out, "T2");
  free(out);
  assert_int_equal(tl_chat_render(m, NULL, "{\"messages\": [], \"tools\": null}", &out, NULL),
                   TL_OK);
  assert_string_equal(out, "<s>");
  free(out);
  tl_model_free(m);

  /* an empty template is none */
  const char *ov[] = {"tokenizer.chat_template=str:", NULL};
  mp.kv_overrides = ov;
  assert_int_equal(tl_model_load(DEMO, &mp, &m), TL_OK);
  assert_null(tl_model_chat_template(m));
  assert_int_equal(tl_chat_render(m, NULL, "{}", &out, NULL), TL_ERR_UNSUPPORTED);
  tl_model_free(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_render),
      cmocka_unit_test(test_errors),
      cmocka_unit_test(test_limits),
      cmocka_unit_test(test_model),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
