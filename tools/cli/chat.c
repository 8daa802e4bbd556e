/* torchless template and torchless chat: the model's chat template rendered
 * over a JSON file, and an interactive conversation through it. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli.h"

int cmd_template(cli_opts *o) {
  if (!o->input) return cli_die("template needs --input VARS.json");
  bool has_model = strcmp(o->model, TL_DEFAULT_MODEL) != 0;
  if (o->template_file && has_model)
    return cli_die("template takes -m MODEL or --template FILE, not both");
  size_t vlen;
  char *vars = cli_read_file(o->input, &vlen);
  if (!vars) return 1;
  char *text = NULL, *out = NULL;
  size_t tlen = 0, olen = 0;
  tl_model *m = NULL;
  tl_status s;
  int rc = 0;
  if (o->template_file) {
    text = cli_read_file(o->template_file, &tlen);
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
    if (fwrite(out, 1, olen, stdout) != olen || fflush(stdout))
      rc = cli_die("cannot write the output");
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

/* ---- chat ---------------------------------------------------------------- */

/* For models without a template: a plain format, stopped at "\nUser:". */
const char cli_plain_template[] =
    "{% for m in messages %}"
    "{% if m.role == 'system' %}{{ m.content }}\n\n"
    "{% elif m.role == 'user' %}User: {{ m.content }}\n"
    "{% else %}Assistant: {{ m.content }}\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}";
const char cli_plain_stop[] = "\nUser:";

typedef struct chat_state {
  tl_model *m;
  const char *text; /* the template */
  bool plain;
  cJSON *messages; /* the conversation, system message first when set */
} chat_state;

static bool chat_init(chat_state *st, tl_model *m, bool quiet) {
  memset(st, 0, sizeof *st);
  st->m = m;
  const char *text = tl_model_chat_template(m);
  if (!text) {
    st->plain = true;
    text = cli_plain_template;
    if (!quiet)
      fprintf(stderr,
              "torchless: the model has no chat template; using a plain \"User: / Assistant:\" "
              "format\n");
  }
  /* parsed once here to report a broken template up front */
  tl_chat_template *t = NULL;
  tl_status s = tl_chat_template_parse(text, strlen(text), &t);
  tl_chat_template_free(t);
  if (s) {
    cli_fail(s);
    return false;
  }
  st->text = text;
  st->messages = cJSON_CreateArray();
  return st->messages != NULL;
}

static void chat_free(chat_state *st) {
  cJSON_Delete(st->messages);
}

static bool add_message(cJSON *arr, const char *role, const char *content) {
  cJSON *msg = cJSON_CreateObject();
  if (!msg || !cJSON_AddStringToObject(msg, "role", role) ||
      !cJSON_AddStringToObject(msg, "content", content)) {
    cJSON_Delete(msg);
    return false;
  }
  return cJSON_AddItemToArray(arr, msg);
}

/* The conversation through the template, with the assistant's prompt. */
static char *chat_render(chat_state *st, size_t *len) {
  cJSON *vars = cJSON_CreateObject();
  char *json = NULL, *out = NULL;
  if (!vars) return NULL;
  cJSON *msgs = cJSON_Duplicate(st->messages, true);
  if (msgs && cJSON_AddItemToObject(vars, "messages", msgs) &&
      cJSON_AddTrueToObject(vars, "add_generation_prompt"))
    json = cJSON_PrintUnformatted(vars);
  cJSON_Delete(vars);
  if (!json) {
    cli_die("out of memory");
    return NULL;
  }
  /* the library adds the model's bos_token and eos_token */
  tl_status s = tl_chat_render(st->m, st->text, json, &out, len);
  free(json);
  if (s) {
    fprintf(stderr, "torchless: the chat template failed: %s\n", tl_last_error());
    return NULL;
  }
  return out;
}

char *cli_chat_prompt(tl_model *m, const char *user, const char *system) {
  chat_state st;
  if (!chat_init(&st, m, false)) {
    chat_free(&st);
    return NULL;
  }
  char *out = NULL;
  size_t len;
  if ((!system || add_message(st.messages, "system", system)) &&
      add_message(st.messages, "user", user))
    out = chat_render(&st, &len);
  chat_free(&st);
  return out;
}

bool cli_chat_plain(tl_model *m) {
  return tl_model_chat_template(m) == NULL;
}

/* Ctrl-C: stops the reply being generated; at the prompt, or a second time
 * while a reply stops, it exits. */
static volatile sig_atomic_t g_generating, g_stop, g_quit;
static void on_sigint(int sig) {
  (void)sig;
  if (g_generating && !g_stop) {
    g_stop = 1;
    return;
  }
  /* at the prompt (a flag checked before read() could miss it: exit here) */
  g_quit = 1;
  if (write(STDOUT_FILENO, "\n", 1) < 0) _exit(1);
  _exit(g_generating ? 130 : 0);
}
static bool abort_cb(void *user) {
  (void)user;
  return g_stop != 0;
}

typedef struct chat_run {
  tl_context *c;
  tl_token *cached; /* the tokens in the KV cache, positions 0.. */
  size_t n_cached, cap_cached;
} chat_run;

static bool cache_push(chat_run *r, tl_token t) {
  if (r->n_cached == r->cap_cached) {
    size_t cap = r->cap_cached ? r->cap_cached * 2 : 256;
    tl_token *n = realloc(r->cached, cap * sizeof *n);
    if (!n) return false;
    r->cached = n;
    r->cap_cached = cap;
  }
  r->cached[r->n_cached++] = t;
  return true;
}

/* Evaluate toks[0, n) reusing the cached prefix: only the tokens after the
 * first difference are decoded (in batches). */
static tl_status eval_prompt(chat_run *r, const tl_token *toks, size_t n, size_t *reused) {
  size_t p = 0;
  while (p < n && p < r->n_cached && r->cached[p] == toks[p]) p++;
  if (p == n) p = n - 1; /* the last token again, for its logits */
  *reused = p;
  if (p < r->n_cached) {
    tl_status s = tl_kv_seq_rm(r->c, 0, (int32_t)p, -1);
    if (s) return s;
    r->n_cached = p;
  }
  const size_t chunk = 256;
  while (r->n_cached < n) {
    size_t k = n - r->n_cached < chunk ? n - r->n_cached : chunk;
    int32_t pos[256];
    for (size_t i = 0; i < k; i++) pos[i] = (int32_t)(r->n_cached + i);
    tl_batch b = {.n_tokens = (int32_t)k, .tokens = toks + r->n_cached, .pos = pos};
    tl_status s = tl_decode(r->c, &b);
    if (s) {
      /* what the cache holds after an abort */
      int32_t have = tl_kv_seq_pos_max(r->c, 0) + 1;
      r->n_cached = have > 0 ? (size_t)have : 0;
      return s;
    }
    for (size_t i = 0; i < k; i++)
      if (!cache_push(r, toks[r->n_cached])) return TL_ERR_NOMEM;
  }
  return TL_OK;
}

/* the length of the longest suffix of s[0, n) that is a prefix of stop */
static size_t stop_overlap(const char *s, size_t n, const char *stop) {
  size_t sl = strlen(stop);
  for (size_t k = sl < n ? sl : n; k > 0; k--)
    if (!memcmp(s + n - k, stop, k)) return k;
  return 0;
}

int cmd_chat(cli_opts *o) {
  /* SIGINT goes to this thread only: the library's threads, created while
   * it is blocked, inherit the mask (a Ctrl-C must end the wait for a line) */
  sigset_t sigint;
  sigemptyset(&sigint);
  sigaddset(&sigint, SIGINT);
  pthread_sigmask(SIG_BLOCK, &sigint, NULL);
  tl_model *m = cli_load_model(o, false, NULL);
  if (!m) return 1;
  bool tty = isatty(STDIN_FILENO);
  chat_state st;
  chat_run r = {0};
  tl_sampler *smp = NULL;
  tl_model *dm = NULL;
  tl_context *dc = NULL;
  tl_spec *sp = NULL;
  char *line = NULL, *reply = NULL;
  size_t line_cap = 0;
  int rc = 1;
  if (!chat_init(&st, m, false)) goto done;
  if (o->system && !add_message(st.messages, "system", o->system)) goto done;
  int n_ctx = o->ctx ? o->ctx : tl_model_n_ctx_train(m);
  cli_warn_ctx(m, o);
  tl_context_params cp = tl_context_default_params();
  cp.n_ctx = n_ctx;
  cp.n_threads = o->threads;
  cp.kv_type = (tl_kv_type)o->kv;
  cp.backend = o->backend;
  cp.abort_callback = abort_cb;
  tl_status s = tl_context_new(m, &cp, &r.c);
  if (s) {
    rc = cli_fail(s);
    goto done;
  }
  n_ctx = tl_context_n_ctx(r.c);
  if (cli_spec_new(o, r.c, &dm, &dc, &sp)) goto done;
  o->sp.seed = o->seed;
  if ((s = tl_sampler_new(&o->sp, &smp))) {
    rc = cli_fail(s);
    goto done;
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigint;
  sigaction(SIGINT, &sa, NULL); /* no SA_RESTART: a Ctrl-C ends the wait for a line */
  pthread_sigmask(SIG_UNBLOCK, &sigint, NULL);
  if (tty)
    fprintf(stderr,
            "torchless chat: %s, context %d tokens. /reset, /system TEXT, /exit; "
            "Ctrl-C stops a reply, twice exits.\n",
            tl_model_desc(m), n_ctx);
  int32_t n_vocab = tl_model_n_vocab(m);
  for (;;) {
    if (tty) {
      fputs("> ", stdout);
      fflush(stdout);
    }
    errno = 0;
    ssize_t got = getline(&line, &line_cap, stdin);
    if (g_quit) {
      if (tty) fputc('\n', stdout);
      break;
    }
    if (got < 0) break; /* end of input */
    while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r')) line[--got] = 0;
    if (!strcmp(line, "/exit") || !strcmp(line, "/quit")) break;
    if (!strcmp(line, "/reset")) {
      cJSON *sys = cJSON_GetArrayItem(st.messages, 0);
      bool keep_sys =
          sys && !strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(sys, "role")), "system");
      while (cJSON_GetArraySize(st.messages) > (keep_sys ? 1 : 0))
        cJSON_DeleteItemFromArray(st.messages, keep_sys ? 1 : 0);
      tl_sampler_reset(smp);
      fprintf(stderr, "torchless: conversation reset\n");
      continue;
    }
    if (!strncmp(line, "/system", 7) && (line[7] == ' ' || line[7] == 0)) {
      const char *text = line[7] ? line + 8 : "";
      cJSON *first = cJSON_GetArrayItem(st.messages, 0);
      if (first && !strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(first, "role")), "system"))
        cJSON_DeleteItemFromArray(st.messages, 0);
      if (*text) {
        cJSON *msg = cJSON_CreateObject();
        cJSON_AddStringToObject(msg, "role", "system");
        cJSON_AddStringToObject(msg, "content", text);
        cJSON_InsertItemInArray(st.messages, 0, msg);
        fprintf(stderr, "torchless: system message set\n");
      } else {
        fprintf(stderr, "torchless: system message removed\n");
      }
      continue;
    }
    if (!add_message(st.messages, "user", line)) goto done;
    /* render and tokenize; drop the oldest turns (never the system message)
     * while the prompt and room for a reply outgrow the context */
    int room = o->n_predict >= 0 && o->n_predict < n_ctx / 4 ? o->n_predict : n_ctx / 4;
    if (room < 1) room = 1;
    tl_token *toks = NULL;
    size_t n_toks = 0;
    for (;;) {
      size_t plen;
      char *prompt = chat_render(&st, &plen);
      if (!prompt) break;
      toks = cli_tokenize(m, prompt, plen, st.plain && tl_model_add_bos(m), true, &n_toks);
      free(prompt);
      if (!toks) break;
      if (n_toks + (size_t)room <= (size_t)n_ctx) break;
      free(toks);
      toks = NULL;
      cJSON *first = cJSON_GetArrayItem(st.messages, 0);
      int base =
          first && !strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(first, "role")), "system");
      if (cJSON_GetArraySize(st.messages) - base <= 1) {
        fprintf(stderr,
                "torchless: the message does not fit in the context of %d tokens (with room for "
                "a reply); it was dropped\n",
                n_ctx);
        cJSON_DeleteItemFromArray(st.messages, cJSON_GetArraySize(st.messages) - 1);
        break;
      }
      /* the oldest turn: the first message after the system message and
       * what follows it up to the next user message */
      cJSON_DeleteItemFromArray(st.messages, base);
      while (cJSON_GetArraySize(st.messages) - base > 1) {
        cJSON *x = cJSON_GetArrayItem(st.messages, base);
        if (!strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(x, "role")), "user")) break;
        cJSON_DeleteItemFromArray(st.messages, base);
      }
      fprintf(stderr,
              "torchless: the conversation outgrew the context of %d tokens; the oldest turn "
              "was dropped%s\n",
              n_ctx, base ? " (the system message is kept)" : "");
    }
    if (!toks) {
      if (cJSON_GetArraySize(st.messages) > 0) {
        cJSON *last = cJSON_GetArrayItem(st.messages, cJSON_GetArraySize(st.messages) - 1);
        if (!strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(last, "role")), "user") &&
            !strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(last, "content")), line))
          cJSON_DeleteItemFromArray(st.messages, cJSON_GetArraySize(st.messages) - 1);
      }
      continue;
    }
    if (n_toks == 0) {
      fprintf(stderr, "torchless: the template rendered an empty prompt\n");
      free(toks);
      cJSON_DeleteItemFromArray(st.messages, cJSON_GetArraySize(st.messages) - 1);
      continue;
    }
    g_stop = 0;
    g_generating = 1;
    size_t reused = 0;
    if (sp) /* the generator keeps the prefix its caches share with the prompt */
      s = tl_spec_begin(sp, toks, (int32_t)n_toks);
    else
      s = eval_prompt(&r, toks, n_toks, &reused);
    if (o->verbose)
      fprintf(stderr, "torchless: prompt %zu tokens, %zu reused from the cache\n", n_toks, reused);
    free(toks);
    if (s == TL_ERR_ABORTED) {
      g_generating = 0;
      g_stop = 0;
      fprintf(stderr, "\ntorchless: stopped\n");
      cJSON_DeleteItemFromArray(st.messages, cJSON_GetArraySize(st.messages) - 1);
      continue;
    }
    if (s) {
      g_generating = 0;
      rc = cli_fail(s);
      goto done;
    }
    /* generate the reply, streaming it */
    tl_detok *dt = NULL;
    if ((s = tl_detok_new(m, &dt))) {
      g_generating = 0;
      rc = cli_fail(s);
      goto done;
    }
    size_t rlen = 0, rcap = 4096, printed = 0;
    free(reply);
    reply = malloc(rcap);
    if (!reply) goto done;
    reply[0] = 0;
    const float *logits = tl_get_logits(r.c, 0);
    bool full = false, stopped_plain = false;
    char buf[256];
    tl_token spec_toks[64];
    int32_t spec_n = 0, spec_i = 0;
    for (int n_gen = 0; (o->n_predict < 0 || n_gen < o->n_predict) && !g_stop; n_gen++) {
      tl_token t;
      if (sp) { /* tokens from speculative steps, which decode them too */
        if (spec_i == spec_n) {
          int32_t want = o->n_predict < 0 || o->n_predict - n_gen > 64 ? 64 : o->n_predict - n_gen;
          spec_i = 0;
          s = tl_spec_next(sp, smp, want, spec_toks, &spec_n);
          if (s == TL_ERR_CONTEXT_FULL) {
            full = true;
            break;
          }
          if (s == TL_ERR_ABORTED) break;
          if (s) {
            g_generating = 0;
            tl_detok_free(dt);
            rc = cli_fail(s);
            goto done;
          }
        }
        t = spec_toks[spec_i++];
        if (tl_token_is_eog(m, t)) break;
      } else {
        t = tl_sampler_sample(smp, logits, n_vocab);
        if (tl_token_is_eog(m, t)) break;
        tl_sampler_accept(smp, t);
      }
      size_t nb = tl_detok_push(dt, t, buf, sizeof buf);
      if (rlen + nb + 1 > rcap) {
        char *nr = realloc(reply, rcap * 2 + nb);
        if (!nr) break;
        reply = nr;
        rcap = rcap * 2 + nb;
      }
      memcpy(reply + rlen, buf, nb);
      rlen += nb;
      reply[rlen] = 0;
      if (st.plain) {
        char *hit = strstr(reply, cli_plain_stop);
        if (hit) {
          rlen = (size_t)(hit - reply);
          reply[rlen] = 0;
          stopped_plain = true;
        }
      }
      /* print what cannot be the start of the plain format's stop text */
      size_t hold = st.plain && !stopped_plain ? stop_overlap(reply, rlen, cli_plain_stop) : 0;
      if (rlen - hold > printed) {
        size_t from = printed == 0 ? 0 : printed;
        const char *p = reply + from;
        size_t k = rlen - hold - from;
        if (from == 0 && st.plain)
          while (k > 0 && *p == ' ') { /* "Assistant:" is followed by a space */
            p++;
            k--;
          }
        fwrite(p, 1, k, stdout);
        fflush(stdout);
        printed = rlen - hold;
      }
      if (stopped_plain) break;
      if (sp) continue;
      if (r.n_cached >= (size_t)n_ctx) {
        full = true;
        break;
      }
      int32_t pos = (int32_t)r.n_cached;
      int8_t want = 1;
      tl_batch b = {.n_tokens = 1, .tokens = &t, .pos = &pos, .logits = &want};
      s = tl_decode(r.c, &b);
      if (s == TL_ERR_ABORTED) break;
      if (s) {
        g_generating = 0;
        tl_detok_free(dt);
        rc = cli_fail(s);
        goto done;
      }
      cache_push(&r, t);
      logits = tl_get_logits(r.c, 0);
    }
    if (!stopped_plain) {
      size_t nb = tl_detok_flush(dt, buf, sizeof buf);
      if (nb && rlen + nb + 1 <= rcap) {
        memcpy(reply + rlen, buf, nb);
        rlen += nb;
        reply[rlen] = 0;
      }
      if (rlen > printed) fwrite(reply + printed, 1, rlen - printed, stdout);
    }
    tl_detok_free(dt);
    if (!sp) {
      /* an aborted step may have written part of its position: keep the
       * cache and what we know of it the same */
      int32_t have = tl_kv_seq_pos_max(r.c, 0) + 1;
      if (have > (int32_t)r.n_cached)
        tl_kv_seq_rm(r.c, 0, (int32_t)r.n_cached, -1);
      else if (have >= 0 && have < (int32_t)r.n_cached)
        r.n_cached = (size_t)have;
    }
    fputc('\n', stdout);
    fflush(stdout);
    if (g_stop) fprintf(stderr, "torchless: stopped\n");
    if (full)
      fprintf(stderr, "torchless: the reply stopped: the context of %d tokens is full\n", n_ctx);
    g_generating = 0;
    g_stop = 0;
    const char *text = reply;
    if (st.plain)
      while (*text == ' ') text++;
    if (!add_message(st.messages, "assistant", text)) goto done;
  }
  rc = 0;
  if (sp) cli_spec_report(sp, stderr);
done:
  free(line);
  free(reply);
  free(r.cached);
  tl_sampler_free(smp);
  tl_spec_free(sp);
  tl_context_free(dc);
  tl_model_free(dm);
  tl_context_free(r.c);
  chat_free(&st);
  tl_model_free(m);
  return rc;
}
