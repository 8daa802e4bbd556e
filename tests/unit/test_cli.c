/* The command-line tool end to end: generation from the demo model against
 * the reference continuation, tokenize, and clear errors (exit code 1, one
 * message) for bad input. */
#include <cjson/cJSON.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

#define DEMO TL_TEST_DATA "/../../models/kjv-llama-13m-q8_0.gguf"

static cJSON *demo_ref(void) {
  char *txt = tl_test_read_file(TL_TEST_DATA "/demo/reference.json", NULL);
  assert_non_null(txt);
  cJSON *j = cJSON_Parse(txt);
  free(txt);
  assert_non_null(j);
  return j;
}

/* Greedy generation streams exactly the reference's continuation text. */
static void test_run_greedy_text(void **state) {
  (void)state;
  cJSON *j = demo_ref(), *p;
  cJSON_ArrayForEach(p, cJSON_GetObjectItem(j, "prompts")) {
    const char *prompt = cJSON_GetObjectItem(p, "text")->valuestring;
    const char *cont = cJSON_GetObjectItem(p, "greedy_text")->valuestring;
    int n = cJSON_GetArraySize(cJSON_GetObjectItem(p, "greedy"));
    char args[1024];
    snprintf(args, sizeof args, "run -m '%s' -p '%s' -n %d --temp 0 -t 2", DEMO, prompt, n);
    char *out = NULL, *err = NULL;
    assert_int_equal(tl_test_run_cli(args, &out, &err), 0);
    char expect[4096];
    snprintf(expect, sizeof expect, "%s %s\n", prompt, cont);
    assert_string_equal(out, expect);
    assert_non_null(strstr(err, "tok/s"));
    free(out);
    free(err);
  }
  cJSON_Delete(j);
}

/* The seed's usage: torchless MODEL PROMPT, and no model at all (the demo). */
static void test_positional_usage(void **state) {
  (void)state;
  char *out = NULL;
  char args[1024];
  snprintf(args, sizeof args, "'%s' 'And God said' -n 8 --seed 7", DEMO);
  assert_int_equal(tl_test_run_cli(args, &out, NULL), 0);
  assert_true(strncmp(out, "And God said", 12) == 0);
  assert_true(strlen(out) > 14);
  free(out);
  /* same seed, same text */
  char *out2 = NULL;
  assert_int_equal(tl_test_run_cli(args, &out2, NULL), 0);
  char *out3 = NULL;
  assert_int_equal(tl_test_run_cli("'And God said' -n 8 --seed 7", &out3, NULL), 0);
  assert_string_equal(out3, out2);
  free(out2);
  free(out3);
}

static void test_tokenize(void **state) {
  (void)state;
  cJSON *j = demo_ref(), *p;
  cJSON_ArrayForEach(p, cJSON_GetObjectItem(j, "prompts")) {
    char args[1024], expect[1024] = "";
    snprintf(args, sizeof args, "tokenize -m '%s' -p '%s'", DEMO,
             cJSON_GetObjectItem(p, "text")->valuestring);
    cJSON *id;
    cJSON_ArrayForEach(id, cJSON_GetObjectItem(p, "input_ids")) {
      snprintf(expect + strlen(expect), sizeof expect - strlen(expect), "%s%d",
               expect[0] ? " " : "", id->valueint);
    }
    strcat(expect, "\n");
    char *out = NULL;
    assert_int_equal(tl_test_run_cli(args, &out, NULL), 0);
    assert_string_equal(out, expect);
    free(out);
  }
  cJSON_Delete(j);
}

/* Each bad input: exit code `status`, a message on stderr naming the problem. */
static void expect_status(const char *args, int status, const char *needle) {
  char *out = NULL, *err = NULL;
  int rc = tl_test_run_cli(args, &out, &err);
  if (rc != status || !err || !strstr(err, needle))
    fail_msg("torchless %s: exit %d, stderr '%s' (wanted exit %d and '%s')", args, rc,
             err ? err : "", status, needle);
  free(out);
  free(err);
}

static void expect_error(const char *args, const char *needle) {
  expect_status(args, 1, needle);
}

/* Bad input: the arguments, the exit status, what stderr names. */
typedef struct cli_case {
  const char *args;
  int status;
  const char *needle;
} cli_case;

static const cli_case g_errors[] = {
    {"run -m /nonexistent/model.gguf -p hi", 1, "cannot open"},
    {"run -m /tmp -p hi", 1, "config.json"},
    {"eval -m " DEMO " --ids 1,2,99999", 1, "outside the vocabulary"},
    {"eval -m " DEMO " --ids 1,x", 1, "--ids"},
    {"eval -m " DEMO, 1, "--ids"},
    {"run -m " DEMO " -p hi --bogus", 1, "unknown option"},
    {"run -m " DEMO " -p hi -t 0", 1, "-t"},
    {"run -m " DEMO " -p hi -n -3", 1, "-n"},
    {"run -m " DEMO " -p hi --kv f8", 1, "--kv"},
    {"run -m " DEMO " -p hi --temp nan", 1, "--temp"},
    {"run -m " DEMO " -p hi --backend nosuch", 2, "unknown backend 'nosuch'"},
    {"eval -m " DEMO " --ids 1 --backend nosuch", 2, "unknown backend 'nosuch'"},
    {"bench -m " DEMO " --backend nosuch", 2, "unknown backend 'nosuch'"},
    {"run -m " DEMO " -p hi --backend", 1, "needs a value"},
    {"run -m " DEMO " -p", 1, "needs a value"},
    /* a prompt longer than the context */
    {"run -m " DEMO " -c 4 -p 'And the LORD said unto Moses, go'", 1, "context"},
    {"eval -m " DEMO " -c 2 --ids 1,2,3", 1, "context"},
    /* bench */
    {"bench -m " DEMO " -p -1", 1, "-p"},
    {"bench -m " DEMO " -r 0", 1, "-r"},
    {"bench -m " DEMO " -p 0 -n 0", 1, "both 0"},
    {"bench -m " DEMO " --kv f8", 1, "--kv"},
    {"bench -m " DEMO " --bogus", 1, "unknown option"},
    {"bench -m " DEMO " -t 0", 1, "-t"},
    /* quantize, synth and convert: their options and positional arguments */
    {"quantize a b", 1, "usage"},
    {"quantize a b q8_0 extra", 1, "extra argument 'extra'"},
    {"quantize a b q8_0 --bogus", 1, "unknown option"},
    {"quantize a b q8_0 --mix", 1, "needs a value"},
    {"quantize a b q8_0 -t x", 1, "-t"},
    {"quantize a a q8_0", 1, "same file"},
    {"synth --preset tiny", 1, "-o"},
    {"synth --type q9 -o x.gguf", 1, "unknown type 'q9'"},
    {"synth --layers 0 -o x.gguf", 1, "--layers"},
    {"synth --seed x -o x.gguf", 1, "--seed"},
    {"synth stray -o x.gguf", 1, "unknown option 'stray'"},
    {"synth --preset qwen2.5-7b --arch llama -o x.gguf", 1, "architecture"},
    {"convert a", 1, "usage"},
    {"convert a b c", 1, "extra argument 'c'"},
    {"convert a b --quant q4", 1, "--quant"},
    {"convert a b -t 2", 1, "unknown option"},
};

static void test_errors(void **state) {
  (void)state;
  char args[2048];
  for (size_t i = 0; i < sizeof g_errors / sizeof g_errors[0]; i++)
    expect_status(g_errors[i].args, g_errors[i].status, g_errors[i].needle);
  /* a GPU backend this build was made without is "not available" (exit 1);
   * one it has is taken (it runs, or fails naming that backend, exit 1) */
  static const char *const gpus[] = {"cuda", "hip", "opencl"};
  for (size_t i = 0; i < sizeof gpus / sizeof gpus[0]; i++) {
    bool have = false;
    for (const char *const *b = tl_backend_names(); *b; b++) have |= !strcmp(*b, gpus[i]);
    char msg[64];
    snprintf(msg, sizeof msg, "backend %s", gpus[i]);
    snprintf(args, sizeof args, "run -m %s -p hi -n 1 --backend %s", DEMO, gpus[i]);
    if (!have) {
      expect_error(args, "not available");
      snprintf(args, sizeof args, "bench -m %s --backend %s", DEMO, gpus[i]);
      expect_error(args, "not available");
    } else {
      char *out = NULL, *err = NULL;
      const int rc = tl_test_run_cli(args, &out, &err);
      if (rc != 0 && (rc != 1 || !err || !strstr(err, msg)))
        fail_msg("torchless %s: exit %d, stderr '%s' (wanted 0, or 1 and '%s')", args, rc,
                 err ? err : "", msg);
      free(out);
      free(err);
    }
  }
  /* invalid UTF-8 is rejected, not mangled */
  snprintf(args, sizeof args, "run -m %s -p \"$(printf 'abc\\377\\376')\"", DEMO);
  expect_error(args, "UTF-8");
  /* a file that is not a model */
  char *tmp = tl_test_tmpfile(".gguf");
  assert_int_equal(tl_test_write_file(tmp, "hello world, not a model", 24), 0);
  snprintf(args, sizeof args, "run -m %s -p hi", tmp);
  expect_error(args, "not a GGUF");
  unlink(tmp);
  free(tmp);
}

static double json_num(const cJSON *o, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!cJSON_IsNumber(v)) fail_msg("bench --json: no number '%s'", key);
  return v->valuedouble;
}

/* bench: llama-bench's fields in --json, one object per test with the counts
 * asked for, speeds that are positive, the weight bytes per token, peak RSS
 * and (--membw) a measured read bandwidth; the table and roofline lines in
 * text mode. (Its errors for bad counts are in g_errors.) */
static void test_bench(void **state) {
  (void)state;
  char *out = NULL;
  assert_int_equal(
      tl_test_run_cli("bench -m " DEMO " -p 16 -n 4 -r 2 -t 2 -d 8 --json --membw", &out, NULL), 0);
  cJSON *j = cJSON_Parse(out);
  assert_non_null(j);
  assert_int_equal(cJSON_GetArraySize(j), 2);
  for (int i = 0; i < 2; i++) {
    const cJSON *o = cJSON_GetArrayItem(j, i);
    assert_int_equal((int)json_num(o, "n_prompt"), i == 0 ? 16 : 0);
    assert_int_equal((int)json_num(o, "n_gen"), i == 0 ? 0 : 4);
    assert_int_equal((int)json_num(o, "n_depth"), 8);
    assert_int_equal((int)json_num(o, "n_threads"), 2);
    assert_int_equal((int)json_num(o, "repetitions"), 2);
    assert_true(json_num(o, "avg_ts") > 0);
    assert_true(json_num(o, "stddev_ts") >= 0);
    struct stat st;
    assert_int_equal(stat(DEMO, &st), 0);
    /* the weights are most of the file, and all of them are read per token
     * except the token embedding rows not looked up */
    assert_true(json_num(o, "model_size") > 0.9 * (double)st.st_size);
    assert_true(json_num(o, "model_size") <= (double)st.st_size);
    assert_true(json_num(o, "bytes_per_token") > 0.5 * json_num(o, "model_size"));
    assert_true(json_num(o, "bytes_per_token") <= json_num(o, "model_size"));
    assert_true(json_num(o, "peak_rss_bytes") > 0);
    assert_true(json_num(o, "rss_anon_bytes") > 0 && json_num(o, "rss_file_bytes") > 0);
    /* any memory reads faster than 100 MB/s, and none at 10 TB/s */
    assert_true(json_num(o, "read_bw_bytes_per_s") > 1e8);
    assert_true(json_num(o, "read_bw_bytes_per_s") < 1e13);
    const cJSON *kv = cJSON_GetObjectItemCaseSensitive(o, "type_k");
    assert_true(cJSON_IsString(kv) && !strcmp(kv->valuestring, "f16"));
  }
  cJSON_Delete(j);
  free(out);
  out = NULL;
  assert_int_equal(tl_test_run_cli("bench -m " DEMO " -p 8 -n 2 -r 1 --membw", &out, NULL), 0);
  assert_non_null(strstr(out, "| pp8 |"));
  assert_non_null(strstr(out, "| tg2 |"));
  assert_non_null(strstr(out, "memory read bandwidth"));
  assert_non_null(strstr(out, "tg roofline"));
  free(out);
}

static void test_help(void **state) {
  (void)state;
  char *out = NULL;
  assert_int_equal(tl_test_run_cli("--help", &out, NULL), 0);
  assert_non_null(strstr(out, "usage"));
  free(out);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_run_greedy_text),
      cmocka_unit_test(test_positional_usage),
      cmocka_unit_test(test_tokenize),
      cmocka_unit_test(test_errors),
      cmocka_unit_test(test_help),
      cmocka_unit_test(test_bench),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
