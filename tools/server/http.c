/* torchless serve: HTTP (libmicrohttpd, one thread per connection) and the
 * OpenAI API in JSON (cJSON). A connection's thread parses the request,
 * renders the conversation through the chat template, tokenizes it and
 * queues it to the engine (engine.c); then it waits for the reply, or streams
 * it as server-sent events from a content reader that blocks until the engine
 * has more. A client that goes away is noticed on its socket (POLLRDHUP)
 * while waiting, and its request is cancelled: the engine frees the slot at
 * its next step. */
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <microhttpd.h>

#include "../cli/cli.h"
#include "server.h"

#define SRV_MAX_BODY (4u << 20) /* bytes of a request body */

extern const unsigned char tl_server_page[]; /* index.html, embedded at build time */
extern const size_t tl_server_page_len;


typedef struct server {
  struct MHD_Daemon *d;
  tl_model *m;
  tl_context *c;
  srv_engine *engine;
  atomic_int ready; /* 0 loading, 1 serving, 2 stopping */
  const char *api_key;
  char model_id[256];
  bool plain; /* no chat template: the plain format */
  int n_parallel;
  long created;
  atomic_ulong next_id;
  /* requests answered before the engine exists (loading) */
  atomic_ulong early_requests;
} server;

/* ---- responses ------------------------------------------------------------------ */

static enum MHD_Result send_buf(struct MHD_Connection *con, unsigned status, const char *type,
                                const void *data, size_t len) {
  struct MHD_Response *resp =
      MHD_create_response_from_buffer(len, (void *)data, MHD_RESPMEM_MUST_COPY);
  if (!resp) return MHD_NO;
  MHD_add_response_header(resp, "Content-Type", type);
  MHD_add_response_header(resp, "Access-Control-Allow-Origin", "*");
  enum MHD_Result r = MHD_queue_response(con, status, resp);
  MHD_destroy_response(resp);
  return r;
}

static enum MHD_Result send_json(struct MHD_Connection *con, unsigned status, cJSON *j) {
  char *s = j ? cJSON_PrintUnformatted(j) : NULL;
  cJSON_Delete(j);
  if (!s) return send_buf(con, 500, "text/plain", "out of memory\n", 14);
  enum MHD_Result r = send_buf(con, status, "application/json", s, strlen(s));
  free(s);
  return r;
}

static const char *error_type(unsigned status) {
  switch (status) {
    case 401:
      return "authentication_error";
    case 404:
      return "not_found_error";
    case 503:
      return "unavailable_error";
    default:
      return status >= 500 ? "server_error" : "invalid_request_error";
  }
}

static cJSON *error_json(unsigned status, const char *param, const char *msg) {
  cJSON *j = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(j, "error");
  cJSON_AddStringToObject(e, "message", msg);
  cJSON_AddStringToObject(e, "type", error_type(status));
  if (param)
    cJSON_AddStringToObject(e, "param", param);
  else
    cJSON_AddNullToObject(e, "param");
  if (status == 401)
    cJSON_AddStringToObject(e, "code", "invalid_api_key");
  else
    cJSON_AddNumberToObject(e, "code", status);
  return j;
}

static enum MHD_Result send_error(server *sv, struct MHD_Connection *con, unsigned status,
                                  const char *param, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static enum MHD_Result send_error(server *sv, struct MHD_Connection *con, unsigned status,
                                  const char *param, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (atomic_load(&sv->ready) == 1 && sv->engine) {
    srv_lock(sv->engine);
    srv_count_request(sv->engine, true);
    srv_unlock(sv->engine);
  }
  return send_json(con, status, error_json(status, param, msg));
}

/* ---- request parameters ------------------------------------------------------------ */

typedef struct perr {
  const char *param;
  char msg[256];
} perr;

static bool bad(perr *pe, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static bool bad(perr *pe, const char *param, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  pe->param = param;
  vsnprintf(pe->msg, sizeof pe->msg, fmt, ap);
  va_end(ap);
  return false;
}

/* A number in [lo, hi] (absent or null: *out unchanged). */
static bool get_num(const cJSON *o, const char *key, double lo, double hi, double *out, perr *pe) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!v || cJSON_IsNull(v)) return true;
  if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
    return bad(pe, key, "'%s' must be a number", key);
  if (v->valuedouble < lo || v->valuedouble > hi)
    return bad(pe, key, "'%s' must be between %g and %g, got %g", key, lo, hi, v->valuedouble);
  *out = v->valuedouble;
  return true;
}

static bool get_int(const cJSON *o, const char *key, double lo, double hi, double *out, perr *pe) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!v || cJSON_IsNull(v)) return true;
  if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble))
    return bad(pe, key, "'%s' must be an integer", key);
  return get_num(o, key, lo, hi, out, pe);
}

static bool get_bool(const cJSON *o, const char *key, bool *out, perr *pe) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!v || cJSON_IsNull(v)) return true;
  if (!cJSON_IsBool(v)) return bad(pe, key, "'%s' must be true or false", key);
  *out = cJSON_IsTrue(v);
  return true;
}

typedef struct api_req {
  srv_params p;
  bool stream, include_usage;
} api_req;

/* The options /v1/chat/completions and /v1/completions share. */
static bool parse_common(server *sv, const cJSON *j, bool chat, api_req *a, perr *pe) {
  memset(a, 0, sizeof *a);
  srv_params *p = &a->p;
  p->sp = tl_sampler_default_params();
  p->sp.temperature = 1.0f; /* OpenAI's defaults */
  p->sp.top_p = 1.0f;
  p->sp.top_k = 0;
  p->sp.min_p = 0.0f;
  p->sp.repeat_penalty = 1.0f;
  p->sp.repeat_last_n = 64;
  p->cache_prompt = true;
  static atomic_ulong seeds;
  p->sp.seed = (uint64_t)tl_time_us() * 6364136223846793005ull + atomic_fetch_add(&seeds, 1);
  const cJSON *model = cJSON_GetObjectItemCaseSensitive(j, "model");
  if (model && !cJSON_IsNull(model) && !cJSON_IsString(model))
    return bad(pe, "model", "'model' must be a string");
  double v, mt = -1;
  if (!get_int(j, "max_tokens", 1, 1e9, &mt, pe)) return false;
  if (!get_int(j, "max_completion_tokens", 1, 1e9, &mt, pe)) return false;
  p->max_tokens = mt > 0 ? (int)mt : -1;
  v = p->sp.temperature;
  if (!get_num(j, "temperature", 0, 2, &v, pe)) return false;
  p->sp.temperature = (float)v;
  v = p->sp.top_p;
  if (!get_num(j, "top_p", 0, 1, &v, pe)) return false;
  if (v <= 0) return bad(pe, "top_p", "'top_p' must be above 0");
  p->sp.top_p = (float)v;
  v = 0;
  if (!get_int(j, "top_k", 0, 1e9, &v, pe)) return false;
  p->sp.top_k = (int32_t)v;
  v = 0;
  if (!get_num(j, "min_p", 0, 1, &v, pe)) return false;
  p->sp.min_p = (float)v;
  v = 1;
  if (!get_num(j, "repeat_penalty", 0.01, 100, &v, pe)) return false;
  p->sp.repeat_penalty = (float)v;
  v = 0;
  if (!get_num(j, "presence_penalty", -2, 2, &v, pe)) return false;
  p->presence = (float)v;
  v = 0;
  if (!get_num(j, "frequency_penalty", -2, 2, &v, pe)) return false;
  p->frequency = (float)v;
  v = NAN;
  if (!get_int(j, "seed", -9.2e18, 1.8e19, &v, pe)) return false;
  if (!isnan(v)) p->sp.seed = v < 0 ? (uint64_t)(int64_t)v : (uint64_t)v;
  v = 1;
  if (!get_int(j, "n", 1, 1, &v, pe)) return bad(pe, "n", "only 'n' = 1 is supported");
  if (!get_bool(j, "stream", &a->stream, pe)) return false;
  if (!get_bool(j, "cache_prompt", &p->cache_prompt, pe)) return false;
  const cJSON *so = cJSON_GetObjectItemCaseSensitive(j, "stream_options");
  if (so && !cJSON_IsNull(so)) {
    if (!cJSON_IsObject(so)) return bad(pe, "stream_options", "'stream_options' must be an object");
    if (!get_bool(so, "include_usage", &a->include_usage, pe))
      return bad(pe, "stream_options", "'stream_options.include_usage' must be true or false");
  }
  /* logprobs: chat takes a boolean and top_logprobs, completions a count */
  if (chat) {
    if (!get_bool(j, "logprobs", &p->logprobs, pe)) return false;
    v = 0;
    if (!get_int(j, "top_logprobs", 0, SRV_MAX_TOP, &v, pe)) return false;
    p->top_logprobs = (int)v;
    if (p->top_logprobs > 0 && !p->logprobs)
      return bad(pe, "top_logprobs", "'top_logprobs' needs 'logprobs' set to true");
  } else {
    v = -1;
    if (!get_int(j, "logprobs", 0, SRV_MAX_TOP, &v, pe)) return false;
    p->logprobs = v >= 0;
    p->top_logprobs = v > 0 ? (int)v : 0;
    bool echo = false;
    if (!get_bool(j, "echo", &echo, pe)) return false;
    if (echo) return bad(pe, "echo", "'echo' is not supported");
  }
  const cJSON *stop = cJSON_GetObjectItemCaseSensitive(j, "stop");
  if (stop && !cJSON_IsNull(stop)) {
    if (cJSON_IsString(stop)) {
      if (*stop->valuestring) p->stop[p->n_stop++] = stop->valuestring;
    } else if (cJSON_IsArray(stop)) {
      if (cJSON_GetArraySize(stop) > 4) return bad(pe, "stop", "'stop' takes at most 4 strings");
      const cJSON *s;
      cJSON_ArrayForEach(s, stop) {
        if (!cJSON_IsString(s)) return bad(pe, "stop", "'stop' must be a string or strings");
        if (*s->valuestring) p->stop[p->n_stop++] = s->valuestring;
      }
    } else {
      return bad(pe, "stop", "'stop' must be a string or a list of strings");
    }
  }
  if (chat && sv->plain) {
    p->stop[p->n_stop++] = (char *)cli_plain_stop;
    p->trim_leading = true; /* "Assistant:" is followed by a space */
  }
  return true;
}

/* A prompt as tokens; NULL (and pe) when it cannot be tokenized. */
static tl_token *tokenize(server *sv, const char *text, size_t len, bool add_bos, int *n,
                          const char *param, perr *pe) {
  size_t cap = len + 8, got = 0;
  tl_token *t = malloc(cap * sizeof *t);
  if (!t) {
    bad(pe, param, "out of memory");
    return NULL;
  }
  tl_status s = tl_tokenize(sv->m, text, len, add_bos, true, t, cap, &got);
  if (s == TL_ERR_INVALID_ARG && got > cap) {
    tl_token *t2 = realloc(t, got * sizeof *t);
    if (!t2) {
      free(t);
      bad(pe, param, "out of memory");
      return NULL;
    }
    t = t2;
    cap = got;
    s = tl_tokenize(sv->m, text, len, add_bos, true, t, cap, &got);
  }
  if (s) {
    bad(pe, param, "the text cannot be tokenized: %s", tl_last_error());
    free(t);
    return NULL;
  }
  *n = (int)got;
  return t;
}

/* The messages of a chat request through the template, tokenized. */
static tl_token *chat_prompt(server *sv, const cJSON *j, int *n, perr *pe) {
  const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(j, "messages");
  if (!msgs) {
    bad(pe, "messages", "'messages' is required");
    return NULL;
  }
  if (!cJSON_IsArray(msgs) || cJSON_GetArraySize(msgs) == 0) {
    bad(pe, "messages", "'messages' must be a non-empty array");
    return NULL;
  }
  cJSON *vars = cJSON_CreateObject();
  cJSON *out = cJSON_AddArrayToObject(vars, "messages");
  cJSON_AddTrueToObject(vars, "add_generation_prompt");
  const cJSON *m;
  int i = 0;
  char *json = NULL;
  cJSON_ArrayForEach(m, msgs) {
    const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
    if (!cJSON_IsObject(m) || !cJSON_IsString(role)) {
      bad(pe, "messages", "messages[%d] must be an object with a string 'role'", i);
      goto fail;
    }
    const char *r = role->valuestring;
    if (!strcmp(r, "developer")) r = "system";
    if (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant") && strcmp(r, "tool")) {
      bad(pe, "messages", "messages[%d].role must be system, developer, user, assistant or tool",
          i);
      goto fail;
    }
    /* content: a string, text parts, or null (an assistant's tool call) */
    char *text = NULL;
    size_t tl = 0;
    if (cJSON_IsString(content)) {
      text = strdup(content->valuestring);
    } else if (!content || cJSON_IsNull(content)) {
      text = strdup("");
    } else if (cJSON_IsArray(content)) {
      text = strdup("");
      const cJSON *part;
      cJSON_ArrayForEach(part, content) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
        const cJSON *pt = cJSON_GetObjectItemCaseSensitive(part, "text");
        if (!cJSON_IsString(type) || strcmp(type->valuestring, "text") || !cJSON_IsString(pt)) {
          free(text);
          bad(pe, "messages",
              "messages[%d].content: only {\"type\": \"text\", \"text\": ...} parts "
              "are supported",
              i);
          goto fail;
        }
        size_t pl = strlen(pt->valuestring);
        char *nt = text ? realloc(text, tl + pl + 1) : NULL;
        if (!nt) break;
        text = nt;
        memcpy(text + tl, pt->valuestring, pl + 1);
        tl += pl;
      }
    } else {
      bad(pe, "messages", "messages[%d].content must be a string or an array of text parts", i);
      goto fail;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "role", r);
    cJSON_AddStringToObject(o, "content", text ? text : "");
    free(text);
    cJSON_AddItemToArray(out, o);
    i++;
  }
  json = cJSON_PrintUnformatted(vars);
  cJSON_Delete(vars);
  vars = NULL;
  char *prompt = NULL;
  size_t plen = 0;
  if (!json) {
    bad(pe, "messages", "out of memory");
    return NULL;
  }
  tl_status s = tl_chat_render(sv->m, sv->plain ? cli_plain_template : NULL, json, &prompt, &plen);
  free(json);
  if (s) {
    bad(pe, "messages", "the chat template failed: %s", tl_last_error());
    return NULL;
  }
  tl_token *t = tokenize(sv, prompt, plen, sv->plain && tl_model_add_bos(sv->m), n, "messages", pe);
  free(prompt);
  return t;
fail:
  cJSON_Delete(vars);
  return NULL;
}

/* The prompt of a completion: a string, token ids, or a list of one of them. */
static tl_token *completion_prompt(server *sv, const cJSON *j, int *n, perr *pe) {
  const cJSON *p = cJSON_GetObjectItemCaseSensitive(j, "prompt");
  if (!p || cJSON_IsNull(p)) {
    bad(pe, "prompt", "'prompt' is required");
    return NULL;
  }
  if (cJSON_IsArray(p) && cJSON_GetArraySize(p) == 1 &&
      (cJSON_IsString(p->child) || cJSON_IsArray(p->child)))
    p = p->child;
  if (cJSON_IsString(p))
    return tokenize(sv, p->valuestring, strlen(p->valuestring), tl_model_add_bos(sv->m), n,
                    "prompt", pe);
  if (!cJSON_IsArray(p) || cJSON_GetArraySize(p) == 0) {
    bad(pe, "prompt", "'prompt' must be a string, token ids, or a list of one of them");
    return NULL;
  }
  int k = cJSON_GetArraySize(p), i = 0;
  tl_token *t = malloc(sizeof *t * (size_t)k);
  if (!t) {
    bad(pe, "prompt", "out of memory");
    return NULL;
  }
  int32_t nv = tl_model_n_vocab(sv->m);
  const cJSON *x;
  cJSON_ArrayForEach(x, p) {
    if (!cJSON_IsNumber(x) || x->valuedouble != floor(x->valuedouble) || x->valuedouble < 0 ||
        x->valuedouble >= nv) {
      free(t);
      bad(pe, "prompt", "prompt[%d] is not a token id (0..%d)", i, nv - 1);
      return NULL;
    }
    t[i++] = (tl_token)x->valuedouble;
  }
  *n = k;
  return t;
}

/* ---- replies ------------------------------------------------------------------------ */

/* A token's text as valid UTF-8 (bytes that form no character become
 * U+FFFD), and its bytes. */
static void add_token_text(server *sv, cJSON *o, const char *key, tl_token t, bool bytes) {
  char piece[256], out[800];
  int32_t n = tl_token_to_piece(sv->m, t, piece, sizeof piece);
  if (n < 0) n = 0;
  if (n > (int32_t)sizeof piece) n = sizeof piece;
  size_t k = 0;
  for (int32_t i = 0; i < n;) {
    unsigned char c = (unsigned char)piece[i];
    int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    bool ok = len > 0 && i + len <= n;
    for (int q = 1; ok && q < len; q++) ok = ((unsigned char)piece[i + q] >> 6) == 2;
    if (ok) {
      memcpy(out + k, piece + i, (size_t)len);
      k += (size_t)len;
      i += len;
    } else {
      memcpy(out + k, "\xEF\xBF\xBD", 3);
      k += 3;
      i++;
    }
  }
  out[k] = 0;
  if (key) cJSON_AddStringToObject(o, key, out);
  if (bytes) {
    cJSON *b = cJSON_AddArrayToObject(o, "bytes");
    for (int32_t i = 0; i < n; i++)
      cJSON_AddItemToArray(b, cJSON_CreateNumber((unsigned char)piece[i]));
  }
}

/* Chat logprobs: {"content": [{token, logprob, bytes, top_logprobs}]}. */
static cJSON *chat_logprobs(server *sv, const srv_tokinfo *t, int n) {
  cJSON *lp = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(lp, "content");
  for (int i = 0; i < n; i++) {
    cJSON *o = cJSON_CreateObject();
    add_token_text(sv, o, "token", t[i].id, false);
    cJSON_AddNumberToObject(o, "logprob", t[i].logprob);
    add_token_text(sv, o, NULL, t[i].id, true);
    cJSON *top = cJSON_AddArrayToObject(o, "top_logprobs");
    for (int k = 0; k < t[i].n_top; k++) {
      cJSON *x = cJSON_CreateObject();
      add_token_text(sv, x, "token", t[i].top_id[k], false);
      cJSON_AddNumberToObject(x, "logprob", t[i].top_lp[k]);
      add_token_text(sv, x, NULL, t[i].top_id[k], true);
      cJSON_AddItemToArray(top, x);
    }
    cJSON_AddItemToArray(arr, o);
  }
  return lp;
}

/* Completion logprobs (the legacy shape): tokens, token_logprobs,
 * top_logprobs, text_offset. */
static cJSON *completion_logprobs(server *sv, const srv_tokinfo *t, int n, size_t offset0) {
  cJSON *lp = cJSON_CreateObject();
  cJSON *toks = cJSON_AddArrayToObject(lp, "tokens");
  cJSON *tlp = cJSON_AddArrayToObject(lp, "token_logprobs");
  cJSON *top = cJSON_AddArrayToObject(lp, "top_logprobs");
  cJSON *off = cJSON_AddArrayToObject(lp, "text_offset");
  size_t at = offset0;
  for (int i = 0; i < n; i++) {
    cJSON *holder = cJSON_CreateObject();
    add_token_text(sv, holder, "t", t[i].id, false);
    const char *text = cJSON_GetObjectItem(holder, "t")->valuestring;
    cJSON_AddItemToArray(toks, cJSON_CreateString(text));
    cJSON_AddItemToArray(off, cJSON_CreateNumber((double)at));
    at += strlen(text);
    cJSON_Delete(holder);
    cJSON_AddItemToArray(tlp, cJSON_CreateNumber(t[i].logprob));
    cJSON *d = cJSON_CreateObject();
    for (int k = 0; k < t[i].n_top; k++) {
      cJSON *h = cJSON_CreateObject();
      add_token_text(sv, h, "t", t[i].top_id[k], false);
      const char *key = cJSON_GetObjectItem(h, "t")->valuestring;
      if (!cJSON_GetObjectItemCaseSensitive(d, key))
        cJSON_AddNumberToObject(d, key, t[i].top_lp[k]);
      cJSON_Delete(h);
    }
    cJSON_AddItemToArray(top, d);
  }
  return lp;
}

static cJSON *usage_json(const srv_request *r) {
  cJSON *u = cJSON_CreateObject();
  cJSON_AddNumberToObject(u, "prompt_tokens", r->n_prompt);
  cJSON_AddNumberToObject(u, "completion_tokens", r->n_gen);
  cJSON_AddNumberToObject(u, "total_tokens", r->n_prompt + r->n_gen);
  cJSON *d = cJSON_AddObjectToObject(u, "prompt_tokens_details");
  cJSON_AddNumberToObject(d, "cached_tokens", r->n_cached);
  return u;
}

static void make_id(server *sv, char *buf, size_t cap, bool chat) {
  unsigned long k = atomic_fetch_add(&sv->next_id, 1);
  snprintf(buf, cap, "%s-%08lx%08lx", chat ? "chatcmpl" : "cmpl", (unsigned long)time(NULL), k);
}

/* The start of a reply object (id, object, created, model). */
static cJSON *reply_head(server *sv, const char *id, const char *object, long created) {
  cJSON *j = cJSON_CreateObject();
  cJSON_AddStringToObject(j, "id", id);
  cJSON_AddStringToObject(j, "object", object);
  cJSON_AddNumberToObject(j, "created", (double)created);
  cJSON_AddStringToObject(j, "model", sv->model_id);
  cJSON_AddStringToObject(j, "system_fingerprint", "torchless-" TL_VERSION);
  return j;
}

/* Whether the client closed its end of the connection. */
static bool client_gone(int fd) {
  if (fd < 0) return false;
  struct pollfd p = {.fd = fd, .events = POLLIN | POLLRDHUP};
  if (poll(&p, 1, 0) <= 0) return false;
  if (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) return true;
  if (p.revents & POLLIN) {
    char c;
    return recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
  }
  return false;
}

static int conn_fd(struct MHD_Connection *con) {
  const union MHD_ConnectionInfo *ci =
      MHD_get_connection_info(con, MHD_CONNECTION_INFO_CONNECTION_FD);
  return ci ? ci->connect_fd : -1;
}

/* ---- streaming ------------------------------------------------------------------------ */

typedef struct stream_ctx {
  server *sv;
  srv_request *r;
  int fd;
  bool chat, include_usage, logprobs;
  char id[64];
  long created;
  size_t sent_text;
  int sent_toks;
  int phase; /* 0: the role chunk, 1: deltas, 2: finished (usage, [DONE] queued), 3: over */
  char *pend;
  size_t plen, poff;
} stream_ctx;

static void pend_event(stream_ctx *st, cJSON *j) {
  char *s = cJSON_PrintUnformatted(j);
  cJSON_Delete(j);
  if (!s) return;
  size_t n = strlen(s);
  char *np = realloc(st->pend, st->plen + n + 9);
  if (np) {
    st->pend = np;
    memcpy(st->pend + st->plen, "data: ", 6);
    memcpy(st->pend + st->plen + 6, s, n);
    memcpy(st->pend + st->plen + 6 + n, "\n\n", 2);
    st->plen += n + 8;
  }
  free(s);
}

static void pend_raw(stream_ctx *st, const char *s) {
  size_t n = strlen(s);
  char *np = realloc(st->pend, st->plen + n + 1);
  if (!np) return;
  st->pend = np;
  memcpy(st->pend + st->plen, s, n);
  st->plen += n;
}

/* One chunk: new text (and its tokens' logprobs), or the finish reason. */
static cJSON *stream_chunk(stream_ctx *st, const char *text, size_t len, const srv_tokinfo *toks,
                           int ntok, const char *finish, bool role) {
  cJSON *j = reply_head(st->sv, st->id, st->chat ? "chat.completion.chunk" : "text_completion",
                        st->created);
  cJSON *choices = cJSON_AddArrayToObject(j, "choices"), *c = cJSON_CreateObject();
  cJSON_AddNumberToObject(c, "index", 0);
  char *t = malloc(len + 1);
  if (t) {
    memcpy(t, text, len);
    t[len] = 0;
  }
  if (st->chat) {
    cJSON *d = cJSON_AddObjectToObject(c, "delta");
    if (role) cJSON_AddStringToObject(d, "role", "assistant");
    if (role || len) cJSON_AddStringToObject(d, "content", t ? t : "");
  } else {
    cJSON_AddStringToObject(c, "text", t ? t : "");
  }
  free(t);
  if (st->logprobs && ntok)
    cJSON_AddItemToObject(c, "logprobs",
                          st->chat ? chat_logprobs(st->sv, toks, ntok)
                                   : completion_logprobs(st->sv, toks, ntok, st->sent_text));
  else
    cJSON_AddNullToObject(c, "logprobs");
  if (finish)
    cJSON_AddStringToObject(c, "finish_reason", finish);
  else
    cJSON_AddNullToObject(c, "finish_reason");
  cJSON_AddItemToArray(choices, c);
  return j;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
  (void)pos;
  stream_ctx *st = cls;
  srv_engine *e = st->sv->engine;
  for (;;) {
    if (st->poff < st->plen) {
      size_t k = st->plen - st->poff < max ? st->plen - st->poff : max;
      memcpy(buf, st->pend + st->poff, k);
      st->poff += k;
      if (st->poff == st->plen) st->poff = st->plen = 0;
      return (ssize_t)k;
    }
    if (st->phase == 3) return MHD_CONTENT_READER_END_OF_STREAM;
    if (st->phase == 0) {
      if (st->chat) pend_event(st, stream_chunk(st, "", 0, NULL, 0, NULL, true));
      st->phase = 1;
      continue;
    }
    srv_request *r = st->r;
    srv_lock(e);
    while (r->state != SRV_DONE && r->len == st->sent_text && r->n_toks == st->sent_toks) {
      srv_wait(e, 100);
      if (r->state != SRV_DONE && client_gone(st->fd)) {
        atomic_store(&r->cancelled, true);
        srv_unlock(e);
        return MHD_CONTENT_READER_END_WITH_ERROR;
      }
    }
    bool done = r->state == SRV_DONE;
    size_t tlen = r->len - st->sent_text;
    char *text = malloc(tlen + 1);
    int ntok = r->n_toks - st->sent_toks;
    srv_tokinfo *toks = ntok ? malloc(sizeof *toks * (size_t)ntok) : NULL;
    if (text) memcpy(text, r->text + st->sent_text, tlen);
    if (toks) memcpy(toks, r->toks + st->sent_toks, sizeof *toks * (size_t)ntok);
    srv_unlock(e);
    if (tlen || ntok)
      pend_event(st, stream_chunk(st, text ? text : "", text ? tlen : 0, toks, toks ? ntok : 0,
                                  NULL, false));
    st->sent_text += tlen;
    st->sent_toks += ntok;
    free(text);
    free(toks);
    if (done) {
      if (r->err[0]) {
        pend_event(st, error_json((unsigned)r->err_status, NULL, r->err));
      } else {
        pend_event(st, stream_chunk(st, "", 0, NULL, 0, r->finish, false));
        if (st->include_usage) {
          cJSON *j = reply_head(
              st->sv, st->id, st->chat ? "chat.completion.chunk" : "text_completion", st->created);
          cJSON_AddArrayToObject(j, "choices");
          cJSON_AddItemToObject(j, "usage", usage_json(r));
          pend_event(st, j);
        }
      }
      pend_raw(st, "data: [DONE]\n\n");
      st->phase = 3;
    }
  }
}

static void stream_free(void *cls) {
  stream_ctx *st = cls;
  srv_release(st->sv->engine, st->r);
  free(st->pend);
  free(st);
}

/* ---- the two generation endpoints ---------------------------------------------------------- */

static enum MHD_Result generate(server *sv, struct MHD_Connection *con, const char *body,
                                size_t len, bool chat) {
  const char *param = chat ? "messages" : "prompt";
  cJSON *j = cJSON_ParseWithLength(body, len);
  if (!j) return send_error(sv, con, 400, NULL, "the request body is not valid JSON");
  if (!cJSON_IsObject(j)) {
    cJSON_Delete(j);
    return send_error(sv, con, 400, NULL, "the request body must be a JSON object");
  }
  api_req a;
  perr pe = {0};
  int n = 0;
  tl_token *prompt = NULL;
  if (!parse_common(sv, j, chat, &a, &pe) ||
      !(prompt = chat ? chat_prompt(sv, j, &n, &pe) : completion_prompt(sv, j, &n, &pe))) {
    cJSON_Delete(j);
    return send_error(sv, con, 400, pe.param, "%s", pe.msg);
  }
  int n_ctx = srv_n_ctx(sv->engine);
  if (n == 0 || n >= n_ctx) {
    free(prompt);
    cJSON_Delete(j);
    return send_error(sv, con, 400, param,
                      n ? "the prompt has %d tokens; the context holds %d (with room for one "
                          "generated token: at most %d)"
                        : "the prompt is empty (%d tokens)",
                      n, n_ctx, n_ctx - 1);
  }
  srv_request *r = srv_request_new(prompt, n, &a.p); /* copies the stop strings */
  free(prompt);
  cJSON_Delete(j);
  if (!r) return send_error(sv, con, 500, NULL, "out of memory");
  int rc = srv_submit(sv->engine, r);
  if (rc) {
    srv_release(sv->engine, r);
    return send_error(
        sv, con, 503, NULL,
        rc == -1 ? "the queue is full; try again later" : "the server is shutting down");
  }
  srv_lock(sv->engine);
  srv_count_request(sv->engine, false);
  srv_unlock(sv->engine);
  char id[64];
  make_id(sv, id, sizeof id, chat);
  long created = (long)time(NULL);
  int fd = conn_fd(con);
  if (a.stream) {
    stream_ctx *st = calloc(1, sizeof *st);
    if (!st) {
      srv_release(sv->engine, r);
      return send_error(sv, con, 500, NULL, "out of memory");
    }
    st->sv = sv;
    st->r = r;
    st->fd = fd;
    st->chat = chat;
    st->include_usage = a.include_usage;
    st->logprobs = a.p.logprobs;
    st->created = created;
    snprintf(st->id, sizeof st->id, "%s", id);
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, st, stream_free);
    if (!resp) {
      stream_free(st);
      return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", "text/event-stream");
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    MHD_add_response_header(resp, "Access-Control-Allow-Origin", "*");
    enum MHD_Result res = MHD_queue_response(con, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    return res;
  }
  /* the whole reply */
  srv_engine *e = sv->engine;
  srv_lock(e);
  while (r->state != SRV_DONE) {
    srv_wait(e, 100);
    if (r->state != SRV_DONE && client_gone(fd)) {
      srv_unlock(e);
      srv_release(e, r);
      return MHD_NO; /* closes the connection */
    }
  }
  srv_unlock(e);
  if (r->err[0]) {
    enum MHD_Result res = send_error(sv, con, (unsigned)r->err_status, NULL, "%s", r->err);
    srv_release(e, r);
    return res;
  }
  cJSON *out = reply_head(sv, id, chat ? "chat.completion" : "text_completion", created);
  cJSON *choices = cJSON_AddArrayToObject(out, "choices"), *c = cJSON_CreateObject();
  cJSON_AddNumberToObject(c, "index", 0);
  if (chat) {
    cJSON *msg = cJSON_AddObjectToObject(c, "message");
    cJSON_AddStringToObject(msg, "role", "assistant");
    cJSON_AddStringToObject(msg, "content", r->text);
  } else {
    cJSON_AddStringToObject(c, "text", r->text);
  }
  if (a.p.logprobs)
    cJSON_AddItemToObject(c, "logprobs",
                          chat ? chat_logprobs(sv, r->toks, r->n_toks)
                               : completion_logprobs(sv, r->toks, r->n_toks, 0));
  else
    cJSON_AddNullToObject(c, "logprobs");
  cJSON_AddStringToObject(c, "finish_reason", r->finish ? r->finish : "stop");
  cJSON_AddItemToArray(choices, c);
  cJSON_AddItemToObject(out, "usage", usage_json(r));
  srv_release(e, r);
  return send_json(con, 200, out);
}

/* ---- the other endpoints --------------------------------------------------------------------- */

static enum MHD_Result models(server *sv, struct MHD_Connection *con) {
  cJSON *j = cJSON_CreateObject();
  cJSON_AddStringToObject(j, "object", "list");
  cJSON *data = cJSON_AddArrayToObject(j, "data"), *m = cJSON_CreateObject();
  cJSON_AddStringToObject(m, "id", sv->model_id);
  cJSON_AddStringToObject(m, "object", "model");
  cJSON_AddNumberToObject(m, "created", (double)sv->created);
  cJSON_AddStringToObject(m, "owned_by", "torchless");
  cJSON *meta = cJSON_AddObjectToObject(m, "meta");
  cJSON_AddStringToObject(meta, "desc", tl_model_desc(sv->m));
  cJSON_AddNumberToObject(meta, "n_vocab", tl_model_n_vocab(sv->m));
  cJSON_AddNumberToObject(meta, "n_ctx", srv_n_ctx(sv->engine));
  cJSON_AddNumberToObject(meta, "n_ctx_train", tl_model_n_ctx_train(sv->m));
  cJSON_AddNumberToObject(meta, "parallel", sv->n_parallel);
  cJSON_AddItemToArray(data, m);
  return send_json(con, 200, j);
}

static enum MHD_Result metrics(server *sv, struct MHD_Connection *con) {
  srv_lock(sv->engine);
  srv_metrics m = srv_get_metrics(sv->engine);
  srv_unlock(sv->engine);
  char buf[4096];
  size_t k = 0;
#define METRIC(name, type, help, fmt, v)                                                      \
  k += (size_t)snprintf(buf + k, sizeof buf - k,                                              \
                        "# HELP torchless_" name " " help "\n# TYPE torchless_" name " " type \
                        "\ntorchless_" name " " fmt "\n",                                     \
                        v)
  METRIC("requests_total", "counter", "Generation requests accepted or refused.", "%llu",
         (unsigned long long)m.requests);
  METRIC("requests_failed_total", "counter", "Requests answered with an error.", "%llu",
         (unsigned long long)m.requests_failed);
  METRIC("prompt_tokens_total", "counter", "Prompt tokens of the requests taken into slots.",
         "%llu", (unsigned long long)m.prompt_tokens);
  METRIC("prompt_tokens_cached_total", "counter", "Prompt tokens reused from a slot's cache.",
         "%llu", (unsigned long long)m.cached_tokens);
  METRIC("tokens_generated_total", "counter", "Tokens generated.", "%llu",
         (unsigned long long)m.gen_tokens);
  METRIC("decode_steps_total", "counter", "Batched decoder steps.", "%llu",
         (unsigned long long)m.steps);
  METRIC("generation_seconds_total", "counter", "Decoder time spent on generated tokens.", "%.6f",
         m.gen_seconds);
  METRIC("prompt_seconds_total", "counter", "Decoder time spent on prompt tokens.", "%.6f",
         m.prompt_seconds);
  METRIC("tokens_per_second", "gauge", "Tokens generated per second over the last seconds.", "%.3f",
         m.recent_tps);
  METRIC("queue_length", "gauge", "Requests waiting for a slot.", "%d", m.queue_len);
  METRIC("slots_busy", "gauge", "Slots decoding a request.", "%d", m.slots_busy);
  METRIC("slots_total", "gauge", "Slots (--parallel).", "%d", m.slots);
#undef METRIC
  return send_buf(con, 200, "text/plain; version=0.0.4", buf, k < sizeof buf ? k : sizeof buf - 1);
}

/* ---- routing ------------------------------------------------------------------------------------
 */

typedef struct conn_ctx {
  char *body;
  size_t len, cap;
  bool too_big;
} conn_ctx;

/* Constant-time comparison: the time depends only on the key's length. */
static bool key_ok(const char *want, const char *got) {
  size_t wl = strlen(want), gl = got ? strlen(got) : 0;
  unsigned char d = wl != gl;
  for (size_t i = 0; i < wl; i++)
    d |= (unsigned char)want[i] ^ (unsigned char)(i < gl ? got[i] : 0);
  return d == 0;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *con, const char *url,
                               const char *method, const char *version, const char *upload,
                               size_t *upload_size, void **con_cls) {
  (void)version;
  server *sv = cls;
  conn_ctx *cc = *con_cls;
  if (!cc) {
    if (!(cc = calloc(1, sizeof *cc))) return MHD_NO;
    *con_cls = cc;
    const char *cl = MHD_lookup_connection_value(con, MHD_HEADER_KIND, "Content-Length");
    if (cl && strtoull(cl, NULL, 10) > SRV_MAX_BODY) cc->too_big = true;
    return MHD_YES;
  }
  if (*upload_size) {
    if (!cc->too_big && cc->len + *upload_size > SRV_MAX_BODY) cc->too_big = true;
    if (!cc->too_big) {
      if (cc->len + *upload_size + 1 > cc->cap) {
        size_t nc = (cc->len + *upload_size + 1) * 2;
        char *nb = realloc(cc->body, nc);
        if (!nb) return MHD_NO;
        cc->body = nb;
        cc->cap = nc;
      }
      memcpy(cc->body + cc->len, upload, *upload_size);
      cc->len += *upload_size;
    }
    *upload_size = 0;
    return MHD_YES;
  }
  bool get = !strcmp(method, "GET") || !strcmp(method, "HEAD"), post = !strcmp(method, "POST");
  static const struct {
    const char *path;
    bool post;
  } routes[] = {{"/", false},
                {"/index.html", false},
                {"/health", false},
                {"/metrics", false},
                {"/v1/models", false},
                {"/models", false},
                {"/v1/chat/completions", true},
                {"/chat/completions", true},
                {"/v1/completions", true},
                {"/completions", true}};
  int route = -1;
  for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
    if (!strcmp(url, routes[i].path)) route = (int)i;
  if (route < 0) return send_error(sv, con, 404, NULL, "no such endpoint: %s %s", method, url);
  if (!strcmp(method, "OPTIONS")) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(resp, "Access-Control-Allow-Origin", "*");
    MHD_add_response_header(resp, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
    MHD_add_response_header(resp, "Access-Control-Allow-Headers", "Authorization, Content-Type");
    enum MHD_Result r = MHD_queue_response(con, 204, resp);
    MHD_destroy_response(resp);
    return r;
  }
  if (routes[route].post ? !post : !get) {
    char msg[200];
    snprintf(msg, sizeof msg, "%s takes %s, not %s", url, routes[route].post ? "POST" : "GET",
             method);
    cJSON *ej = error_json(405, NULL, msg);
    char *s = cJSON_PrintUnformatted(ej);
    cJSON_Delete(ej);
    if (!s) return MHD_NO;
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(s), s, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(resp, "Content-Type", "application/json");
    MHD_add_response_header(resp, "Allow", routes[route].post ? "POST, OPTIONS" : "GET, HEAD");
    enum MHD_Result r = MHD_queue_response(con, 405, resp);
    MHD_destroy_response(resp);
    return r;
  }
  if (cc->too_big)
    return send_error(sv, con, 413, NULL, "the request body is larger than %u bytes", SRV_MAX_BODY);
  const char *path = routes[route].path;
  if (!strcmp(path, "/") || !strcmp(path, "/index.html")) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        tl_server_page_len, (void *)tl_server_page, MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(resp, "Content-Type", "text/html; charset=utf-8");
    enum MHD_Result r = MHD_queue_response(con, 200, resp);
    MHD_destroy_response(resp);
    return r;
  }
  int ready = atomic_load(&sv->ready);
  if (!strcmp(path, "/health")) {
    const char *st = ready == 1   ? "{\"status\":\"ok\"}"
                     : ready == 0 ? "{\"status\":\"loading model\"}"
                                  : "{\"status\":\"shutting down\"}";
    return send_buf(con, ready == 1 ? 200 : 503, "application/json", st, strlen(st));
  }
  if (sv->api_key) {
    const char *auth = MHD_lookup_connection_value(con, MHD_HEADER_KIND, "Authorization");
    const char *got = auth && !strncmp(auth, "Bearer ", 7) ? auth + 7 : NULL;
    if (!key_ok(sv->api_key, got))
      return send_error(sv, con, 401, NULL,
                        got ? "invalid API key"
                            : "an API key is required (Authorization: Bearer "
                              "KEY)");
  }
  if (ready != 1)
    return send_error(sv, con, 503, NULL,
                      ready == 0 ? "the model is loading" : "the server is shutting down");
  if (!strcmp(path, "/metrics")) return metrics(sv, con);
  if (!strcmp(path, "/v1/models") || !strcmp(path, "/models")) return models(sv, con);
  bool chat = strstr(path, "chat") != NULL;
  return generate(sv, con, cc->body ? cc->body : "", cc->len, chat);
}

static void completed(void *cls, struct MHD_Connection *con, void **con_cls,
                      enum MHD_RequestTerminationCode toe) {
  (void)cls;
  (void)con;
  (void)toe;
  conn_ctx *cc = *con_cls;
  if (!cc) return;
  free(cc->body);
  free(cc);
  *con_cls = NULL;
}

/* ---- torchless serve
 * ------------------------------------------------------------------------------ */

static void on_signal(int sig) {
  (void)sig; /* never runs: the signals are blocked and taken by sigwait */
}

int cmd_serve(cli_opts *o) {
  /* SIGINT and SIGTERM are taken by sigwait below: every thread made from
   * here on (the HTTP threads, the engine, the library's pool) blocks them */
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, NULL);
  /* (a disposition inherited as "ignore", as a shell gives background
   * jobs for SIGINT, would not do for sigwait everywhere) */
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);

  server *sv = calloc(1, sizeof *sv);
  if (!sv) return cli_die("out of memory");
  atomic_init(&sv->ready, 0);
  atomic_init(&sv->next_id, 1);
  sv->api_key = o->api_key && *o->api_key ? o->api_key : NULL;
  sv->n_parallel = o->parallel;
  sv->created = (long)time(NULL);
  const char *base = strrchr(o->model, '/');
  snprintf(sv->model_id, sizeof sv->model_id, "%s", base && base[1] ? base + 1 : o->model);

  struct addrinfo hints = {.ai_family = AF_UNSPEC,
                           .ai_socktype = SOCK_STREAM,
                           .ai_flags = AI_PASSIVE},
                  *ai = NULL;
  char port[16];
  snprintf(port, sizeof port, "%d", o->port);
  int gai = getaddrinfo(o->host, port, &hints, &ai);
  if (gai) {
    free(sv);
    return cli_die("--host %s: %s", o->host, gai_strerror(gai));
  }
  unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC |
                   MHD_USE_ERROR_LOG;
  if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
  sv->d = MHD_start_daemon(flags, (uint16_t)o->port, NULL, NULL, handler, sv, MHD_OPTION_SOCK_ADDR,
                           ai->ai_addr, MHD_OPTION_CONNECTION_LIMIT, (unsigned)1024,
                           MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)600,
                           MHD_OPTION_NOTIFY_COMPLETED, completed, sv, MHD_OPTION_END);
  freeaddrinfo(ai);
  if (!sv->d) {
    free(sv);
    return cli_die("cannot listen on %s port %d: %s", o->host, o->port, strerror(errno));
  }
  const union MHD_DaemonInfo *di = MHD_get_daemon_info(sv->d, MHD_DAEMON_INFO_BIND_PORT);
  int bound = di ? di->port : o->port;
  bool v6 = strchr(o->host, ':') != NULL;
  fprintf(stderr, "torchless: listening on http://%s%s%s:%d (loading %s)\n", v6 ? "[" : "", o->host,
          v6 ? "]" : "", bound, o->model);

  int rc = 1;
  tl_model *m = cli_load_model(o, false, NULL);
  if (!m) goto out;
  sv->m = m;
  sv->plain = tl_model_chat_template(m) == NULL;
  int n_ctx = o->ctx;
  if (!n_ctx) {
    n_ctx = tl_model_n_ctx_train(m);
    if (n_ctx <= 0 || n_ctx > 4096) n_ctx = 4096;
  }
  cli_warn_ctx(m, o);
  tl_context_params cp = tl_context_default_params();
  cp.n_ctx = n_ctx;
  cp.n_seq = o->parallel;
  cp.n_batch = 256 + o->parallel; /* engine.c's SRV_CHUNK and one token per slot */
  cp.n_threads = o->threads;
  cp.kv_type = (tl_kv_type)o->kv;
  cp.backend = o->backend;
  cp.n_gpu_layers = o->gpu_layers;
  cp.abort_callback = srv_abort_cb;
  cp.abort_user = &sv->engine;
  tl_status s = tl_context_new(m, &cp, &sv->c);
  if (s) {
    cli_fail(s);
    goto out;
  }
  if ((s = srv_engine_start(m, sv->c, o->parallel, o->queue, &sv->engine))) {
    cli_die("cannot start the scheduler (%s)", tl_status_name(s));
    goto out;
  }
  atomic_store(&sv->ready, 1);
  fprintf(stderr, "torchless: serving %s (%s): %d slots of %d tokens, %d threads, %s backend%s%s\n",
          sv->model_id, tl_model_desc(m), o->parallel, tl_context_n_ctx(sv->c),
          tl_context_n_threads(sv->c), tl_context_backend(sv->c),
          sv->plain ? ", plain chat format (the model has no template)" : "",
          sv->api_key ? ", API key required" : "");
  int sig = 0;
  sigwait(&sigs, &sig);
  fprintf(stderr, "torchless: %s: shutting down\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
  rc = 0;
out:
  /* stop accepting, cancel what runs, let the connections answer, free */
  atomic_store(&sv->ready, 2);
  MHD_socket lfd = MHD_quiesce_daemon(sv->d);
  if (lfd != MHD_INVALID_SOCKET) close(lfd);
  srv_engine_shutdown(sv->engine);
  MHD_stop_daemon(sv->d);
  srv_engine_free(sv->engine);
  tl_context_free(sv->c);
  tl_model_free(sv->m);
  free(sv);
  return rc;
}
