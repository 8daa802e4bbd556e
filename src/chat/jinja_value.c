/* Jinja values: the arena, strings, lists and dicts, Python's printing of
 * values (str, repr, float repr), json.dumps as Hugging Face's tojson calls
 * it, and JSON input (ints stay ints, floats stay floats, keys keep their
 * order). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "chat/jinja.h"

/* ---- arena ------------------------------------------------------------------ */
struct jj_chunk {
  jj_chunk *next;
  size_t used, cap;
  max_align_t data[];
};

void jj_arena_init(jj_arena *a, size_t limit) {
  a->head = NULL;
  a->total = 0;
  a->limit = limit;
}

void jj_arena_free(jj_arena *a) {
  jj_chunk *c = a->head;
  while (c) {
    jj_chunk *n = c->next;
    free(c);
    c = n;
  }
  a->head = NULL;
  a->total = 0;
}

void *jj_arena_alloc(jj_arena *a, size_t n) {
  n = (n + 15) & ~(size_t)15;
  if (n == 0) n = 16;
  jj_chunk *c = a->head;
  if (!c || c->cap - c->used < n) {
    size_t cap = n > (64u << 10) ? n : (64u << 10);
    if (a->total + cap > a->limit || cap < n) return NULL;
    c = malloc(sizeof(jj_chunk) + cap);
    if (!c) return NULL;
    c->next = a->head;
    c->used = 0;
    c->cap = cap;
    a->head = c;
    a->total += cap;
  }
  void *p = (char *)c->data + c->used;
  c->used += n;
  return p;
}

bool jj_buf_add(jj_buf *b, const char *s, size_t n) {
  if (n > b->limit || b->len > b->limit - n) return false;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1) cap *= 2;
    char *p;
    if (b->arena) {
      p = jj_arena_alloc(b->arena, cap);
      if (p && b->len) memcpy(p, b->p, b->len);
    } else {
      p = realloc(b->p, cap);
    }
    if (!p) return false;
    b->p = p;
    b->cap = cap;
  }
  if (n) memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = 0;
  return true;
}

/* ---- constructors ---------------------------------------------------------------- */
jv jj_str_new(jj_env *e, const char *s, size_t n) {
  jj_str *str = jj_alloc(e, sizeof *str + n + 1);
  str->len = n;
  str->s = (char *)(str + 1);
  if (n) memcpy(str->s, s, n);
  str->s[n] = 0;
  jv v = {.t = JV_STR};
  v.u.s = str;
  return v;
}

jv jj_list_new(jj_env *e, size_t cap) {
  jj_list *l = jj_alloc(e, sizeof *l);
  l->n = 0;
  l->cap = cap;
  l->tuple = false;
  l->view = JL_LIST;
  l->view_name = NULL;
  l->r0 = l->r1 = l->r2 = 0;
  l->v = cap ? jj_alloc(e, cap * sizeof(jv)) : NULL;
  jv v = {.t = JV_LIST};
  v.u.l = l;
  return v;
}

void jj_list_push(jj_env *e, jj_list *l, jv v) {
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 4;
    if (cap > (SIZE_MAX / sizeof(jv))) jj_fail(e, "list too long");
    jv *nv = jj_alloc(e, cap * sizeof(jv));
    if (l->n) memcpy(nv, l->v, l->n * sizeof(jv));
    l->v = nv;
    l->cap = cap;
  }
  l->v[l->n++] = v;
}

jv jj_dict_new(jj_env *e, size_t cap) {
  jj_dict *d = jj_alloc(e, sizeof *d);
  d->n = 0;
  d->cap = cap;
  d->k = cap ? jj_alloc(e, cap * sizeof(jv)) : NULL;
  d->v = cap ? jj_alloc(e, cap * sizeof(jv)) : NULL;
  jv v = {.t = JV_DICT};
  v.u.d = d;
  return v;
}

jv *jj_dict_find(const jj_dict *d, jv k) {
  for (size_t i = 0; i < d->n; i++)
    if (jj_equal(d->k[i], k)) return &d->v[i];
  return NULL;
}

jv *jj_dict_find_str(const jj_dict *d, const char *k) {
  size_t n = strlen(k);
  for (size_t i = 0; i < d->n; i++)
    if (d->k[i].t == JV_STR && d->k[i].u.s->len == n && !memcmp(d->k[i].u.s->s, k, n))
      return &d->v[i];
  return NULL;
}

void jj_dict_set(jj_env *e, jj_dict *d, jv k, jv v) {
  jv *p = jj_dict_find(d, k);
  if (p) {
    *p = v;
    return;
  }
  if (d->n == d->cap) {
    size_t cap = d->cap ? d->cap * 2 : 4;
    jv *nk = jj_alloc(e, cap * sizeof(jv)), *nv = jj_alloc(e, cap * sizeof(jv));
    if (d->n) {
      memcpy(nk, d->k, d->n * sizeof(jv));
      memcpy(nv, d->v, d->n * sizeof(jv));
    }
    d->k = nk;
    d->v = nv;
    d->cap = cap;
  }
  d->k[d->n] = k;
  d->v[d->n] = v;
  d->n++;
}

/* ---- truth, equality, order ------------------------------------------------------ */
bool jj_truthy(jv v) {
  switch (v.t) {
    case JV_UNDEF:
    case JV_NONE:
      return false;
    case JV_BOOL:
      return v.u.b;
    case JV_INT:
      return v.u.i != 0;
    case JV_FLOAT:
      return v.u.f != 0;
    case JV_STR:
      return v.u.s->len != 0;
    case JV_LIST:
      return v.u.l->view == JL_GEN || v.u.l->view == JL_REVITER || v.u.l->n != 0;
    case JV_DICT:
      return v.u.d->n != 0;
    default:
      return true;
  }
}

static bool is_num(jv v) {
  return v.t == JV_BOOL || v.t == JV_INT || v.t == JV_FLOAT;
}
static double num_f(jv v) {
  return v.t == JV_FLOAT ? v.u.f : v.t == JV_INT ? (double)v.u.i : (double)v.u.b;
}
static int64_t num_i(jv v) {
  return v.t == JV_INT ? v.u.i : (int64_t)v.u.b;
}

bool jj_equal(jv a, jv b) {
  if (is_num(a) && is_num(b)) {
    if (a.t == JV_FLOAT || b.t == JV_FLOAT) return num_f(a) == num_f(b);
    return num_i(a) == num_i(b);
  }
  if (a.t != b.t) return false;
  switch (a.t) {
    case JV_UNDEF:
    case JV_NONE:
      return true;
    case JV_STR:
      return a.u.s->len == b.u.s->len && !memcmp(a.u.s->s, b.u.s->s, a.u.s->len);
    case JV_LIST:
      if (a.u.l == b.u.l) return true;
      if (a.u.l->view != b.u.l->view || a.u.l->view == JL_GEN || a.u.l->view == JL_REVITER ||
          a.u.l->view == JL_VALUES)
        return false;
      if (a.u.l->tuple != b.u.l->tuple || a.u.l->n != b.u.l->n) return false;
      if (a.u.l->view == JL_ITEMS || a.u.l->view == JL_KEYS) { /* as sets */
        for (size_t i = 0; i < a.u.l->n; i++) {
          bool found = false;
          for (size_t j = 0; j < b.u.l->n && !found; j++)
            found = jj_equal(a.u.l->v[i], b.u.l->v[j]);
          if (!found) return false;
        }
        return true;
      }
      for (size_t i = 0; i < a.u.l->n; i++)
        if (!jj_equal(a.u.l->v[i], b.u.l->v[i])) return false;
      return true;
    case JV_DICT: {
      if (a.u.d->n != b.u.d->n) return false;
      for (size_t i = 0; i < a.u.d->n; i++) {
        jv *o = jj_dict_find(b.u.d, a.u.d->k[i]);
        if (!o || !jj_equal(a.u.d->v[i], *o)) return false;
      }
      return true;
    }
    case JV_NS:
      return a.u.d == b.u.d;
    case JV_FUNC:
      return a.u.fn == b.u.fn;
    case JV_MACRO:
      return a.u.m == b.u.m;
    case JV_LOOP:
      return a.u.loop == b.u.loop;
  }
  return false;
}

const char *jj_type_name(jv v) {
  switch (v.t) {
    case JV_UNDEF:
      return "Undefined";
    case JV_NONE:
      return "NoneType";
    case JV_BOOL:
      return "bool";
    case JV_INT:
      return "int";
    case JV_FLOAT:
      return "float";
    case JV_STR:
      return v.safe ? "Markup" : "str";
    case JV_LIST:
      switch (v.u.l->view) {
        case JL_GEN:
          return "generator";
        case JL_REVITER:
          return "list_reverseiterator";
        case JL_ITEMS:
          return "dict_items";
        case JL_KEYS:
          return "dict_keys";
        case JL_VALUES:
          return "dict_values";
        case JL_RANGE:
          return "range";
      }
      return v.u.l->tuple ? "tuple" : "list";
    case JV_DICT:
      return "dict";
    case JV_NS:
      return "Namespace";
    case JV_FUNC:
      return "builtin_function_or_method";
    case JV_MACRO:
      return "Macro";
    case JV_LOOP:
      return "LoopContext";
  }
  return "object";
}

int jj_compare(jj_env *e, jv a, jv b, const char *op) {
  if (is_num(a) && is_num(b)) {
    if (a.t == JV_FLOAT || b.t == JV_FLOAT) {
      double x = num_f(a), y = num_f(b);
      return x < y ? -1 : x > y ? 1 : 0;
    }
    int64_t x = num_i(a), y = num_i(b);
    return x < y ? -1 : x > y ? 1 : 0;
  }
  if (a.t == JV_STR && b.t == JV_STR) {
    size_t n = a.u.s->len < b.u.s->len ? a.u.s->len : b.u.s->len;
    int c = memcmp(a.u.s->s, b.u.s->s, n);
    if (c) return c < 0 ? -1 : 1;
    return a.u.s->len < b.u.s->len ? -1 : a.u.s->len > b.u.s->len ? 1 : 0;
  }
  if (a.t == JV_LIST && b.t == JV_LIST && a.u.l->tuple == b.u.l->tuple && a.u.l->view == JL_LIST &&
      b.u.l->view == JL_LIST) {
    for (size_t i = 0; i < a.u.l->n && i < b.u.l->n; i++) {
      if (jj_equal(a.u.l->v[i], b.u.l->v[i])) continue;
      return jj_compare(e, a.u.l->v[i], b.u.l->v[i], op);
    }
    return a.u.l->n < b.u.l->n ? -1 : a.u.l->n > b.u.l->n ? 1 : 0;
  }
  if (a.t == JV_UNDEF) jj_fail(e, "%s", a.u.undef);
  if (b.t == JV_UNDEF) jj_fail(e, "%s", b.u.undef);
  jj_fail(e, "'%s' not supported between instances of '%s' and '%s'", op, jj_type_name(a),
          jj_type_name(b));
}

/* ---- UTF-8 ------------------------------------------------------------------------ */
size_t jj_utf8_len(const char *s, size_t n) {
  size_t c = 0;
  for (size_t i = 0; i < n; i++)
    if (((unsigned char)s[i] & 0xc0) != 0x80) c++;
  return c;
}

size_t jj_utf8_off(const char *s, size_t n, size_t idx) {
  size_t c = 0;
  for (size_t i = 0; i < n; i++) {
    if (((unsigned char)s[i] & 0xc0) != 0x80) {
      if (c == idx) return i;
      c++;
    }
  }
  return n;
}

static uint32_t utf8_decode(const unsigned char *s, size_t n, size_t *adv) {
  uint32_t c = s[0];
  size_t k = c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
  if (k > n) k = n;
  if (k == 1) {
    *adv = 1;
    return c;
  }
  c &= 0xff >> (k + 1);
  for (size_t i = 1; i < k; i++) c = (c << 6) | (s[i] & 0x3f);
  *adv = k;
  return c;
}

/* ---- printing ---------------------------------------------------------------------- */
#define ADD(b, s, n)                                               \
  do {                                                             \
    if (!jj_buf_add((b), (s), (n))) jj_fail(e, "output too long"); \
  } while (0)
#define ADDS(b, s) ADD(b, s, strlen(s))

void jj_float_repr(double f, char *out, size_t cap) {
  if (isnan(f)) {
    snprintf(out, cap, "nan");
    return;
  }
  if (isinf(f)) {
    snprintf(out, cap, f < 0 ? "-inf" : "inf");
    return;
  }
  if (f == 0) {
    snprintf(out, cap, signbit(f) ? "-0.0" : "0.0");
    return;
  }
  char tmp[64];
  int p;
  for (p = 1; p <= 17; p++) {
    snprintf(tmp, sizeof tmp, "%.*e", p - 1, f);
    if (strtod(tmp, NULL) == f) break;
  }
  /* tmp: [-]d[.ddd]e[+-]XX */
  char digits[32];
  size_t nd = 0;
  const char *q = tmp;
  bool neg = false;
  if (*q == '-') {
    neg = true;
    q++;
  }
  for (; *q && *q != 'e'; q++)
    if (*q != '.') digits[nd++] = *q;
  int exp10 = atoi(q + 1);
  while (nd > 1 && digits[nd - 1] == '0') nd--;
  digits[nd] = 0;
  char *o = out;
  size_t left = cap;
#define PUT(...)                              \
  do {                                        \
    int w_ = snprintf(o, left, __VA_ARGS__);  \
    if (w_ < 0 || (size_t)w_ >= left) return; \
    o += w_;                                  \
    left -= (size_t)w_;                       \
  } while (0)
  if (neg) PUT("-");
  if (exp10 < -4 || exp10 >= 16) {
    PUT("%c", digits[0]);
    if (nd > 1) PUT(".%s", digits + 1);
    PUT("e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
  } else if (exp10 < 0) {
    PUT("0.");
    for (int i = 0; i < -exp10 - 1; i++) PUT("0");
    PUT("%s", digits);
  } else {
    for (int i = 0; i <= exp10; i++) PUT("%c", (size_t)i < nd ? digits[i] : '0');
    PUT(".");
    if ((size_t)exp10 + 1 < nd)
      PUT("%s", digits + exp10 + 1);
    else
      PUT("0");
  }
#undef PUT
}

/* Python's str.isprintable() for a code point, closely enough: controls,
 * separators other than ' ', format characters and surrogates are not. */
static bool py_printable(uint32_t c) {
  if (c < 0x20 || c == 0x7f) return false;
  if (c < 0x7f) return true;
  if (c <= 0xa0 || c == 0xad) return false;
  if (c == 0x1680 || (c >= 0x2000 && c <= 0x200f) || (c >= 0x2028 && c <= 0x202f) ||
      (c >= 0x205f && c <= 0x206f) || c == 0x3000 || c == 0xfeff || (c >= 0xd800 && c <= 0xdfff) ||
      (c >= 0xfff9 && c <= 0xfffb) || c == 0x61c || c == 0x180e || (c >= 0xe000 && c <= 0xf8ff) ||
      c >= 0xf0000 || (c >= 0xe0000 && c <= 0xe0fff))
    return false;
  return true;
}

static void repr_str(jj_env *e, jj_buf *b, const char *s, size_t n) {
  bool sq = memchr(s, '\'', n) != NULL, dq = memchr(s, '"', n) != NULL;
  char quote = (sq && !dq) ? '"' : '\'';
  ADD(b, &quote, 1);
  for (size_t i = 0; i < n;) {
    size_t adv;
    uint32_t c = utf8_decode((const unsigned char *)s + i, n - i, &adv);
    char tmp[16];
    if (c == (uint32_t)quote || c == '\\') {
      tmp[0] = '\\';
      tmp[1] = (char)c;
      ADD(b, tmp, 2);
    } else if (c == '\n') {
      ADDS(b, "\\n");
    } else if (c == '\r') {
      ADDS(b, "\\r");
    } else if (c == '\t') {
      ADDS(b, "\\t");
    } else if (!py_printable(c)) {
      if (c < 0x100)
        snprintf(tmp, sizeof tmp, "\\x%02x", c);
      else if (c < 0x10000)
        snprintf(tmp, sizeof tmp, "\\u%04x", c);
      else
        snprintf(tmp, sizeof tmp, "\\U%08x", c);
      ADDS(b, tmp);
    } else {
      ADD(b, s + i, adv);
    }
    i += adv;
  }
  ADD(b, &quote, 1);
}

static void print_value(jj_env *e, jj_buf *b, jv v, bool repr);

static void print_dict(jj_env *e, jj_buf *b, const jj_dict *d) {
  ADDS(b, "{");
  for (size_t i = 0; i < d->n; i++) {
    if (i) ADDS(b, ", ");
    print_value(e, b, d->k[i], true);
    ADDS(b, ": ");
    print_value(e, b, d->v[i], true);
  }
  ADDS(b, "}");
}

static void print_value(jj_env *e, jj_buf *b, jv v, bool repr) {
  char tmp[64];
  switch (v.t) {
    case JV_UNDEF:
      if (repr) ADDS(b, "Undefined");
      return;
    case JV_NONE:
      ADDS(b, "None");
      return;
    case JV_BOOL:
      ADDS(b, v.u.b ? "True" : "False");
      return;
    case JV_INT:
      snprintf(tmp, sizeof tmp, "%lld", (long long)v.u.i);
      ADDS(b, tmp);
      return;
    case JV_FLOAT:
      jj_float_repr(v.u.f, tmp, sizeof tmp);
      ADDS(b, tmp);
      return;
    case JV_STR:
      if (repr)
        repr_str(e, b, v.u.s->s, v.u.s->len);
      else
        ADD(b, v.u.s->s, v.u.s->len);
      return;
    case JV_LIST: {
      const jj_list *l = v.u.l;
      if (l->view == JL_GEN || l->view == JL_REVITER) {
        ADDS(b, "<");
        ADDS(b, l->view == JL_GEN ? "generator object " : "list_reverseiterator object");
        if (l->view == JL_GEN) ADDS(b, l->view_name ? l->view_name : "<genexpr>");
        ADDS(b, " at 0x7f0000000000>");
        return;
      }
      if (l->view == JL_RANGE) {
        if (l->r2 == 1)
          snprintf(tmp, sizeof tmp, "range(%lld, %lld)", (long long)l->r0, (long long)l->r1);
        else
          snprintf(tmp, sizeof tmp, "range(%lld, %lld, %lld)", (long long)l->r0, (long long)l->r1,
                   (long long)l->r2);
        ADDS(b, tmp);
        return;
      }
      if (l->view != JL_LIST) {
        ADDS(b, jj_type_name(v));
        ADDS(b, "([");
        for (size_t i = 0; i < l->n; i++) {
          if (i) ADDS(b, ", ");
          print_value(e, b, l->v[i], true);
        }
        ADDS(b, "])");
        return;
      }
      ADDS(b, l->tuple ? "(" : "[");
      for (size_t i = 0; i < l->n; i++) {
        if (i) ADDS(b, ", ");
        print_value(e, b, l->v[i], true);
      }
      if (l->tuple && l->n == 1) ADDS(b, ",");
      ADDS(b, l->tuple ? ")" : "]");
      return;
    }
    case JV_DICT:
      print_dict(e, b, v.u.d);
      return;
    case JV_NS:
      ADDS(b, "<Namespace ");
      print_dict(e, b, v.u.d);
      ADDS(b, ">");
      return;
    case JV_FUNC:
      ADDS(b, "<built-in function>");
      return;
    case JV_MACRO:
      ADDS(b, "<Macro>");
      return;
    case JV_LOOP:
      ADDS(b, "<LoopContext>");
      return;
  }
}

void jj_to_str(jj_env *e, jj_buf *b, jv v) {
  print_value(e, b, v, false);
}
void jj_repr(jj_env *e, jj_buf *b, jv v) {
  print_value(e, b, v, true);
}

jv jj_stringify(jj_env *e, jv v) {
  if (v.t == JV_STR) return v;
  jj_buf b = jj_tmpbuf(e, JJ_MAX_OUTPUT);
  print_value(e, &b, v, false);
  jv r = jj_str_new(e, b.p ? b.p : "", b.len);
  return r;
}

/* ---- json.dumps ---------------------------------------------------------------------- */
static void json_str(jj_env *e, jj_buf *b, const char *s, size_t n, bool ascii) {
  ADDS(b, "\"");
  size_t run = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c >= 0x20 && c != '"' && c != '\\' && !(ascii && c >= 0x80)) continue;
    ADD(b, s + run, i - run);
    char tmp[16];
    if (c >= 0x80) {
      size_t adv;
      uint32_t cp = utf8_decode((const unsigned char *)s + i, n - i, &adv);
      if (cp >= 0x10000) {
        cp -= 0x10000;
        snprintf(tmp, sizeof tmp, "\\u%04x\\u%04x", 0xd800 + (cp >> 10), 0xdc00 + (cp & 0x3ff));
      } else {
        snprintf(tmp, sizeof tmp, "\\u%04x", cp);
      }
      ADDS(b, tmp);
      i += adv - 1;
      run = i + 1;
      continue;
    }
    run = i + 1;
    switch (c) {
      case '"':
        ADDS(b, "\\\"");
        break;
      case '\\':
        ADDS(b, "\\\\");
        break;
      case '\n':
        ADDS(b, "\\n");
        break;
      case '\r':
        ADDS(b, "\\r");
        break;
      case '\t':
        ADDS(b, "\\t");
        break;
      case '\b':
        ADDS(b, "\\b");
        break;
      case '\f':
        ADDS(b, "\\f");
        break;
      default:
        snprintf(tmp, sizeof tmp, "\\u%04x", c);
        ADDS(b, tmp);
    }
  }
  ADD(b, s + run, n - run);
  ADDS(b, "\"");
}

static void json_newline(jj_env *e, jj_buf *b, const jj_json_opts *o, int level) {
  ADDS(b, "\n");
  for (int i = 0; i < level; i++) ADDS(b, o->indent);
}

static void json_value(jj_env *e, jj_buf *b, jv v, const jj_json_opts *o, int level);

static int cmp_keys_e(jj_env *e, jv a, jv b) {
  return jj_compare(e, a, b, "<");
}

static void json_key(jj_env *e, jj_buf *b, jv k, bool ascii) {
  char tmp[64];
  switch (k.t) {
    case JV_STR:
      json_str(e, b, k.u.s->s, k.u.s->len, ascii);
      return;
    case JV_INT:
      snprintf(tmp, sizeof tmp, "\"%lld\"", (long long)k.u.i);
      ADDS(b, tmp);
      return;
    case JV_FLOAT:
      ADDS(b, "\"");
      jj_float_repr(k.u.f, tmp, sizeof tmp);
      ADDS(b, tmp);
      ADDS(b, "\"");
      return;
    case JV_BOOL:
      ADDS(b, k.u.b ? "\"true\"" : "\"false\"");
      return;
    case JV_NONE:
      ADDS(b, "\"null\"");
      return;
    default:
      jj_fail(e, "keys must be str, int, float, bool or None, not %s", jj_type_name(k));
  }
}

static void json_value(jj_env *e, jj_buf *b, jv v, const jj_json_opts *o, int level) {
  char tmp[64];
  if (level > JJ_MAX_JSON_DEPTH) jj_fail(e, "maximum recursion depth exceeded in tojson");
  switch (v.t) {
    case JV_NONE:
      ADDS(b, "null");
      return;
    case JV_BOOL:
      ADDS(b, v.u.b ? "true" : "false");
      return;
    case JV_INT:
      snprintf(tmp, sizeof tmp, "%lld", (long long)v.u.i);
      ADDS(b, tmp);
      return;
    case JV_FLOAT:
      if (isnan(v.u.f))
        ADDS(b, "NaN");
      else if (isinf(v.u.f))
        ADDS(b, v.u.f < 0 ? "-Infinity" : "Infinity");
      else {
        jj_float_repr(v.u.f, tmp, sizeof tmp);
        ADDS(b, tmp);
      }
      return;
    case JV_STR:
      json_str(e, b, v.u.s->s, v.u.s->len, o->ensure_ascii);
      return;
    case JV_LIST: {
      const jj_list *l = v.u.l;
      if (l->view != JL_LIST)
        jj_fail(e, "Object of type %s is not JSON serializable", jj_type_name(v));
      if (!l->n) {
        ADDS(b, "[]");
        return;
      }
      ADDS(b, "[");
      for (size_t i = 0; i < l->n; i++) {
        if (i) ADDS(b, o->item_sep);
        if (o->indent) json_newline(e, b, o, level + 1);
        json_value(e, b, l->v[i], o, level + 1);
      }
      if (o->indent) json_newline(e, b, o, level);
      ADDS(b, "]");
      return;
    }
    case JV_DICT: {
      const jj_dict *d = v.u.d;
      if (!d->n) {
        ADDS(b, "{}");
        return;
      }
      size_t *order = jj_alloc(e, d->n * sizeof(size_t));
      for (size_t i = 0; i < d->n; i++) order[i] = i;
      if (o->sort_keys) /* insertion sort: stable, and errors unwind cleanly */
        for (size_t i = 1; i < d->n; i++) {
          size_t x = order[i], j = i;
          while (j > 0 && cmp_keys_e(e, d->k[order[j - 1]], d->k[x]) > 0) {
            order[j] = order[j - 1];
            j--;
          }
          order[j] = x;
        }
      ADDS(b, "{");
      for (size_t i = 0; i < d->n; i++) {
        if (i) ADDS(b, o->item_sep);
        if (o->indent) json_newline(e, b, o, level + 1);
        json_key(e, b, d->k[order[i]], o->ensure_ascii);
        ADDS(b, o->key_sep);
        json_value(e, b, d->v[order[i]], o, level + 1);
      }
      if (o->indent) json_newline(e, b, o, level);
      ADDS(b, "}");
      return;
    }
    default:
      jj_fail(e, "Object of type %s is not JSON serializable", jj_type_name(v));
  }
}

void jj_tojson(jj_env *e, jj_buf *b, jv v, const jj_json_opts *o) {
  json_value(e, b, v, o, 0);
}

/* ---- JSON input -------------------------------------------------------------------------- */
typedef struct jp {
  jj_env *e;
  const char *s;
  size_t n, i;
  int depth;
} jp;

static void jp_ws(jp *p) {
  while (p->i < p->n &&
         (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' || p->s[p->i] == '\r'))
    p->i++;
}

_Noreturn static void jp_fail(jp *p, const char *what) {
  jj_fail(p->e, "variables: invalid JSON at byte %zu: %s", p->i, what);
}

static void put_utf8(jj_buf *b, jj_env *e, uint32_t c) {
  char t[4];
  size_t n;
  if (c < 0x80) {
    t[0] = (char)c;
    n = 1;
  } else if (c < 0x800) {
    t[0] = (char)(0xc0 | (c >> 6));
    t[1] = (char)(0x80 | (c & 0x3f));
    n = 2;
  } else if (c < 0x10000) {
    t[0] = (char)(0xe0 | (c >> 12));
    t[1] = (char)(0x80 | ((c >> 6) & 0x3f));
    t[2] = (char)(0x80 | (c & 0x3f));
    n = 3;
  } else {
    t[0] = (char)(0xf0 | (c >> 18));
    t[1] = (char)(0x80 | ((c >> 12) & 0x3f));
    t[2] = (char)(0x80 | ((c >> 6) & 0x3f));
    t[3] = (char)(0x80 | (c & 0x3f));
    n = 4;
  }
  ADD(b, t, n);
}

static int hex4(jp *p, size_t at) {
  if (at + 4 > p->n) jp_fail(p, "short \\u escape");
  int v = 0;
  for (int k = 0; k < 4; k++) {
    char c = p->s[at + k];
    v <<= 4;
    if (c >= '0' && c <= '9')
      v |= c - '0';
    else if (c >= 'a' && c <= 'f')
      v |= c - 'a' + 10;
    else if (c >= 'A' && c <= 'F')
      v |= c - 'A' + 10;
    else
      jp_fail(p, "bad \\u escape");
  }
  return v;
}

static jv jp_string(jp *p) {
  jj_env *e = p->e;
  p->i++; /* " */
  jj_buf b = jj_tmpbuf(e, JJ_MAX_OUTPUT);
  size_t run = p->i;
  for (;;) {
    if (p->i >= p->n) {
      jp_fail(p, "unterminated string");
    }
    unsigned char c = (unsigned char)p->s[p->i];
    if (c == '"') break;
    if (c < 0x20) {
      jp_fail(p, "control character in string");
    }
    if (c != '\\') {
      p->i++;
      continue;
    }
    ADD(&b, p->s + run, p->i - run);
    if (p->i + 1 >= p->n) {
      jp_fail(p, "unterminated string");
    }
    char x = p->s[p->i + 1];
    p->i += 2;
    switch (x) {
      case '"':
      case '\\':
      case '/':
        ADD(&b, &x, 1);
        break;
      case 'b':
        ADDS(&b, "\b");
        break;
      case 'f':
        ADDS(&b, "\f");
        break;
      case 'n':
        ADDS(&b, "\n");
        break;
      case 'r':
        ADDS(&b, "\r");
        break;
      case 't':
        ADDS(&b, "\t");
        break;
      case 'u': {
        uint32_t cp = (uint32_t)hex4(p, p->i);
        p->i += 4;
        if (cp >= 0xd800 && cp < 0xdc00 && p->i + 6 <= p->n && p->s[p->i] == '\\' &&
            p->s[p->i + 1] == 'u') {
          uint32_t lo = (uint32_t)hex4(p, p->i + 2);
          if (lo >= 0xdc00 && lo < 0xe000) {
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            p->i += 6;
          }
        }
        if (cp >= 0xd800 && cp < 0xe000) cp = 0xfffd;
        put_utf8(&b, e, cp);
        break;
      }
      default:
        jp_fail(p, "bad escape");
    }
    run = p->i;
  }
  ADD(&b, p->s + run, p->i - run);
  p->i++;
  jv v = jj_str_new(e, b.p ? b.p : "", b.len);
  return v;
}

static jv jp_value(jp *p) {
  jp_ws(p);
  if (p->i >= p->n) jp_fail(p, "unexpected end");
  if (++p->depth > JJ_MAX_JSON_DEPTH) jp_fail(p, "nested too deeply");
  char c = p->s[p->i];
  jv v = {.t = JV_NONE};
  if (c == '{') {
    p->i++;
    v = jj_dict_new(p->e, 0);
    jp_ws(p);
    if (p->i < p->n && p->s[p->i] == '}') {
      p->i++;
    } else {
      for (;;) {
        jp_ws(p);
        if (p->i >= p->n || p->s[p->i] != '"') jp_fail(p, "expected a key");
        jv k = jp_string(p);
        jp_ws(p);
        if (p->i >= p->n || p->s[p->i] != ':') jp_fail(p, "expected ':'");
        p->i++;
        jv x = jp_value(p);
        jj_dict_set(p->e, v.u.d, k, x);
        jp_ws(p);
        if (p->i < p->n && p->s[p->i] == ',') {
          p->i++;
          continue;
        }
        if (p->i < p->n && p->s[p->i] == '}') {
          p->i++;
          break;
        }
        jp_fail(p, "expected ',' or '}'");
      }
    }
  } else if (c == '[') {
    p->i++;
    v = jj_list_new(p->e, 0);
    jp_ws(p);
    if (p->i < p->n && p->s[p->i] == ']') {
      p->i++;
    } else {
      for (;;) {
        jj_list_push(p->e, v.u.l, jp_value(p));
        jp_ws(p);
        if (p->i < p->n && p->s[p->i] == ',') {
          p->i++;
          continue;
        }
        if (p->i < p->n && p->s[p->i] == ']') {
          p->i++;
          break;
        }
        jp_fail(p, "expected ',' or ']'");
      }
    }
  } else if (c == '"') {
    v = jp_string(p);
  } else if (c == '-' || (c >= '0' && c <= '9')) {
    size_t st = p->i;
    bool isf = false;
    if (p->s[p->i] == '-') p->i++;
    while (p->i < p->n) {
      char d = p->s[p->i];
      if (d >= '0' && d <= '9') {
      } else if (d == '.' || d == 'e' || d == 'E' || d == '+' || d == '-') {
        isf = true;
      } else {
        break;
      }
      p->i++;
    }
    char tmp[64];
    size_t len = p->i - st;
    if (len == 0 || len >= sizeof tmp) jp_fail(p, "bad number");
    memcpy(tmp, p->s + st, len);
    tmp[len] = 0;
    char *end;
    if (!isf) {
      errno = 0;
      long long x = strtoll(tmp, &end, 10);
      if (errno == 0 && *end == 0) {
        v.t = JV_INT;
        v.u.i = x;
        p->depth--;
        return v;
      }
    }
    double f = strtod(tmp, &end);
    if (*end) jp_fail(p, "bad number");
    v.t = JV_FLOAT;
    v.u.f = f;
  } else if (p->n - p->i >= 4 && !memcmp(p->s + p->i, "true", 4)) {
    p->i += 4;
    v.t = JV_BOOL;
    v.u.b = true;
  } else if (p->n - p->i >= 5 && !memcmp(p->s + p->i, "false", 5)) {
    p->i += 5;
    v.t = JV_BOOL;
    v.u.b = false;
  } else if (p->n - p->i >= 4 && !memcmp(p->s + p->i, "null", 4)) {
    p->i += 4;
  } else {
    jp_fail(p, "unexpected character");
  }
  p->depth--;
  return v;
}

jv jj_from_json(jj_env *e, const char *s, size_t n) {
  jp p = {.e = e, .s = s, .n = n};
  jv v = jp_value(&p);
  jp_ws(&p);
  if (p.i != p.n) jp_fail(&p, "trailing characters");
  return v;
}
