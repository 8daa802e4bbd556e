/* torchless serve: the OpenAI-compatible HTTP server. Two parts:
 *
 * engine.c  the scheduler: one thread owns the context and decodes every
 *           active request in one batch per step (continuous batching),
 *           each request in its own KV slot, prompts prefilled in chunks,
 *           a slot's cached prefix reused by the next request that starts
 *           with it (prompt caching).
 * http.c    libmicrohttpd (one thread per connection) and the OpenAI JSON:
 *           requests are parsed, rendered through the chat template and
 *           tokenized on the connection's thread, queued to the engine, and
 *           answered from what the engine publishes (whole, or as server-sent
 *           events while it is generated).
 *
 * The engine and the connections share one mutex; the engine broadcasts a
 * condition variable after every step. */
#ifndef TL_SERVER_H
#define TL_SERVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "torchless.h"

#define SRV_MAX_STOP 8 /* stop strings of a request (OpenAI: 4), plus the plain format's */
#define SRV_MAX_TOP 20 /* top_logprobs */

/* One generated token with its log-probability and the most likely
 * alternatives (when logprobs were asked for). */
typedef struct srv_tokinfo {
  tl_token id;
  float logprob;
  int n_top;
  tl_token top_id[SRV_MAX_TOP];
  float top_lp[SRV_MAX_TOP];
} srv_tokinfo;

/* What a request asks of the generation. */
typedef struct srv_params {
  int max_tokens; /* capped by the context */
  tl_sampler_params sp;
  float presence, frequency; /* OpenAI's penalties, -2..2 */
  bool logprobs;
  int top_logprobs;
  bool cache_prompt; /* reuse a slot's cached prefix (default true) */
  bool trim_leading; /* drop the reply's leading spaces (the plain chat format) */
  char *stop[SRV_MAX_STOP];
  int n_stop;
} srv_params;

typedef enum srv_state { SRV_QUEUED, SRV_ACTIVE, SRV_DONE } srv_state;

typedef struct srv_request {
  /* set by the connection before srv_submit, then read-only */
  tl_token *prompt;
  int n_prompt;
  srv_params p;
  /* written by the engine, read by the connection, under the engine's mutex */
  srv_state state;
  char *text; /* the reply so far, NUL-terminated (stop strings held back) */
  size_t len, cap;
  srv_tokinfo *toks; /* with p.logprobs: one per generated token */
  int n_toks, cap_toks;
  int n_gen;                 /* completion tokens */
  int n_cached;              /* prompt tokens found in the slot's cache */
  const char *finish;        /* "stop" or "length" when done without error */
  char err[256];             /* when done with an error: the message, */
  int err_status;            /* and the HTTP status */
  int64_t t_queued, t_first; /* microseconds: queued, first token */
  int refs;                  /* the connection and the engine */
  atomic_bool cancelled;     /* the client went away */
  struct srv_request *next;  /* the queue */
} srv_request;

/* Counters for /metrics (read under the lock). */
typedef struct srv_metrics {
  uint64_t requests, requests_failed, prompt_tokens, cached_tokens, gen_tokens, steps;
  double gen_seconds, prompt_seconds; /* time of the steps that generated / prefilled */
  int queue_len, slots_busy, slots;
  double recent_tps; /* generated tokens per second over the last few seconds */
} srv_metrics;

typedef struct srv_engine srv_engine;

/* Start the scheduler on a context of n_parallel sequences. */
tl_status srv_engine_start(tl_model *m, tl_context *c, int n_parallel, int max_queue,
                           srv_engine **out);
/* The context's abort_callback, with abort_user = &the srv_engine pointer
 * (the context is made before the engine): stops a step when the server
 * shuts down or every request in the step is gone. */
bool srv_abort_cb(void *user);
/* Cancel everything queued or running (they end with "the server is
 * shutting down", 503) and stop the thread; requests can still be released. */
void srv_engine_shutdown(srv_engine *e);
/* Shut down if needed and free the engine (not the model or context). */
void srv_engine_free(srv_engine *e);

/* A new request (refs = 1, owned by the caller) with a copy of the prompt. */
srv_request *srv_request_new(const tl_token *prompt, int n_prompt, const srv_params *p);
/* Queue it: 0, or 503-worthy: -1 queue full, -2 shutting down. */
int srv_submit(srv_engine *e, srv_request *r);
/* The caller is done with r: cancels it if still running, drops its reference. */
void srv_release(srv_engine *e, srv_request *r);

void srv_lock(srv_engine *e);
void srv_unlock(srv_engine *e);
/* With the lock held: wait until the engine has stepped or ms pass. */
void srv_wait(srv_engine *e, int ms);
/* With the lock held. */
srv_metrics srv_get_metrics(srv_engine *e);
void srv_count_request(srv_engine *e, bool failed);
int srv_n_ctx(const srv_engine *e);

#endif
