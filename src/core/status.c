#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/core.h"

#define MSG_CAP 1024
static _Thread_local char g_msg[MSG_CAP];

tl_status tl_fail(tl_status s, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(g_msg, MSG_CAP, fmt, ap);
  va_end(ap);
  return s;
}

tl_status tl_fail_prefix(tl_status s, const char *fmt, ...) {
  char prefix[MSG_CAP], old[MSG_CAP];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(prefix, MSG_CAP, fmt, ap);
  va_end(ap);
  memcpy(old, g_msg, MSG_CAP);
  size_t n = strlen(prefix);
  if (n > MSG_CAP - 3) n = MSG_CAP - 3;
  memcpy(g_msg, prefix, n);
  memcpy(g_msg + n, ": ", 2);
  size_t rest = MSG_CAP - n - 3, ol = strlen(old);
  if (ol > rest) ol = rest;
  memcpy(g_msg + n + 2, old, ol);
  g_msg[n + 2 + ol] = 0;
  return s;
}

void tl_clear_error(void) { g_msg[0] = 0; }

const char *tl_last_error(void) { return g_msg; }

const char *tl_status_name(tl_status s) {
  switch (s) {
    case TL_OK:
      return "ok";
    case TL_ERR_INVALID_ARG:
      return "invalid argument";
    case TL_ERR_IO:
      return "i/o error";
    case TL_ERR_FORMAT:
      return "invalid file format";
    case TL_ERR_UNSUPPORTED:
      return "unsupported";
    case TL_ERR_NOMEM:
      return "out of memory";
    case TL_ERR_CONTEXT_FULL:
      return "context full";
    case TL_ERR_TOKENIZER:
      return "tokenizer error";
    case TL_ERR_ABORTED:
      return "aborted";
  }
  return "unknown status";
}

static tl_log_fn g_log_fn;
static void *g_log_user;

void tl_set_log(tl_log_fn fn, void *user) {
  g_log_fn = fn;
  g_log_user = user;
}

void tl_log(tl_log_level level, const char *fmt, ...) {
  if (!g_log_fn) return;
  char buf[MSG_CAP];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  g_log_fn(level, buf, g_log_user);
}

void *tl_malloc_array(size_t n, size_t size) {
  size_t total;
  if (!tl_mul_size(n, size, &total)) return NULL;
  return malloc(total ? total : 1);
}

void *tl_calloc_array(size_t n, size_t size) {
  size_t total;
  if (!tl_mul_size(n, size, &total)) return NULL;
  return calloc(n ? n : 1, size ? size : 1);
}

void *tl_aligned_alloc(size_t size) {
  void *p = NULL;
  if (posix_memalign(&p, 64, size ? size : 64) != 0) return NULL;
  return p;
}

void tl_aligned_free(void *p) { free(p); }

char *tl_strndup(const char *s, size_t n) {
  char *d = malloc(n + 1);
  if (!d) return NULL;
  memcpy(d, s, n);
  d[n] = 0;
  return d;
}
