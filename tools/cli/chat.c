/* torchless template and torchless chat: the model's chat template rendered
 * over a JSON file, and an interactive conversation through it. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static char *read_all(const char *path, size_t *len) {
  FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
  if (!f) {
    cli_die("cannot open %s: %s", path, strerror(errno));
    return NULL;
  }
  size_t cap = 1 << 16, n = 0;
  char *buf = malloc(cap + 1);
  while (buf) {
    size_t r = fread(buf + n, 1, cap - n, f);
    n += r;
    if (n < cap) break;
    char *nb = cap > ((size_t)1 << 30) ? NULL : realloc(buf, cap * 2 + 1);
    if (!nb) {
      free(buf);
      buf = NULL;
      break;
    }
    buf = nb;
    cap *= 2;
  }
  bool err = ferror(f);
  if (f != stdin) fclose(f);
  if (!buf || err) {
    free(buf);
    cli_die("cannot read %s", path);
    return NULL;
  }
  buf[n] = 0;
  *len = n;
  return buf;
}

int cmd_template(cli_opts *o) {
  if (!o->input) return cli_die("template needs --input VARS.json");
  bool has_model = strcmp(o->model, TL_DEFAULT_MODEL) != 0;
  if (o->template_file && has_model) return cli_die("template takes -m MODEL or --template FILE, not both");
  size_t vlen;
  char *vars = read_all(o->input, &vlen);
  if (!vars) return 1;
  char *text = NULL, *out = NULL;
  size_t tlen = 0, olen = 0;
  tl_model *m = NULL;
  tl_status s;
  int rc = 0;
  if (o->template_file) {
    text = read_all(o->template_file, &tlen);
    if (!text) {
      free(vars);
      return 1;
    }
    tl_chat_template *t = NULL;
    s = tl_chat_template_parse(text, tlen, &t);
    if (s == TL_OK) s = tl_chat_template_render(t, vars, vlen, &out, &olen);
    tl_chat_template_free(t);
  } else {
    m = cli_load_model(o, true, NULL);
    if (!m) {
      free(vars);
      return 1;
    }
    s = tl_chat_render(m, NULL, vars, &out, &olen);
  }
  if (s == TL_OK) {
    if (fwrite(out, 1, olen, stdout) != olen || fflush(stdout)) rc = cli_die("cannot write the output");
  } else {
    fprintf(stderr, "%s\n", tl_last_error());
    rc = 1;
  }
  free(out);
  free(text);
  free(vars);
  tl_model_free(m);
  return rc;
}

char *cli_chat_prompt(tl_model *m, const char *user, const char *system) {
  (void)m;
  (void)user;
  (void)system;
  cli_die("--chat is not implemented yet");
  return NULL;
}

int cmd_chat(cli_opts *o) {
  (void)o;
  return cli_die("chat is not implemented yet");
}
