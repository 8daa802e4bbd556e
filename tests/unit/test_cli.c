/* The command-line tool end to end: generation from the demo model against
 * the reference continuation, tokenize, and clear errors (exit code 1, one
 * message) for bad input. */
#include <cjson/cJSON.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

#define DEMO TL_TEST_DATA "/../../models/kjv-llama-11m-q8_0.gguf"

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

static void test_errors(void **state) {
  (void)state;
  char args[2048];
  expect_error("run -m /nonexistent/model.gguf -p hi", "cannot open");
  expect_error("run -m /tmp -p hi", "config.json");
  expect_error("eval -m " DEMO " --ids 1,2,99999", "outside the vocabulary");
  expect_error("eval -m " DEMO " --ids 1,x", "--ids");
  expect_error("eval -m " DEMO, "--ids");
  expect_error("run -m " DEMO " -p hi --bogus", "unknown option");
  expect_error("run -m " DEMO " -p hi -t 0", "-t");
  expect_error("run -m " DEMO " -p hi -n -3", "-n");
  expect_error("run -m " DEMO " -p hi --kv f8", "--kv");
  expect_error("run -m " DEMO " -p hi --temp nan", "--temp");
  expect_error("run -m " DEMO " -p hi --backend cuda", "not available");
  expect_status("run -m " DEMO " -p hi --backend nosuch", 2, "unknown backend 'nosuch'");
  expect_status("eval -m " DEMO " --ids 1 --backend nosuch", 2, "unknown backend 'nosuch'");
  expect_status("bench -m " DEMO " --backend nosuch", 2, "unknown backend 'nosuch'");
  expect_error("bench -m " DEMO " --backend cuda", "not available");
  expect_error("run -m " DEMO " -p hi --backend", "needs a value");
  expect_error("run -m " DEMO " -p", "needs a value");
  /* a prompt longer than the context */
  expect_error("run -m " DEMO " -c 4 -p 'And the LORD said unto Moses, go'", "context");
  expect_error("eval -m " DEMO " -c 2 --ids 1,2,3", "context");
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

/* quantize, synth and convert: their options and positional arguments. */
static void test_file_command_errors(void **state) {
  (void)state;
  expect_error("quantize a b", "usage");
  expect_error("quantize a b q8_0 extra", "extra argument 'extra'");
  expect_error("quantize a b q8_0 --bogus", "unknown option");
  expect_error("quantize a b q8_0 --mix", "needs a value");
  expect_error("quantize a b q8_0 -t x", "-t");
  expect_error("quantize a a q8_0", "same file");
  expect_error("synth --preset tiny", "-o");
  expect_error("synth --type q9 -o x.gguf", "unknown type 'q9'");
  expect_error("synth --layers 0 -o x.gguf", "--layers");
  expect_error("synth --seed x -o x.gguf", "--seed");
  expect_error("synth stray -o x.gguf", "unknown option 'stray'");
  expect_error("synth --preset qwen2.5-7b --arch llama -o x.gguf", "architecture");
  expect_error("convert a", "usage");
  expect_error("convert a b c", "extra argument 'c'");
  expect_error("convert a b --quant q4", "--quant");
  expect_error("convert a b -t 2", "unknown option");
}

static double json_num(const cJSON *o, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!cJSON_IsNumber(v)) fail_msg("bench --json: no number '%s'", key);
  return v->valuedouble;
}

/* bench: llama-bench's fields in --json, one object per test with the counts
 * asked for, speeds that are positive, the weight bytes per token, peak RSS
 * and (--membw) a measured read bandwidth; the table and roofline lines in
 * text mode; and clear errors for bad counts. */
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
  expect_error("bench -m " DEMO " -p -1", "-p");
  expect_error("bench -m " DEMO " -r 0", "-r");
  expect_error("bench -m " DEMO " -p 0 -n 0", "both 0");
  expect_error("bench -m " DEMO " --kv f8", "--kv");
  expect_error("bench -m " DEMO " --bogus", "unknown option");
  expect_error("bench -m " DEMO " -t 0", "-t");
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
      cmocka_unit_test(test_file_command_errors),
      cmocka_unit_test(test_help),
      cmocka_unit_test(test_bench),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
