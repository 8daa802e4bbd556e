/* The Jinja evaluator: statements, expressions, Jinja's undefined values
 * (printing as "", failing on use with jinja2's messages), the sandbox's
 * attribute rules (dict keys as attributes, list mutation refused), the
 * filters, tests, methods and globals chat templates use. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "chat/jinja.h"

typedef struct frame {
  struct frame *parent;
  size_t n, cap;
  const char **names;
  jv *vals;
} frame;

struct jj_env {
  jj_err err;
  jj_arena arena;
  jj_buf out;
  uint64_t steps, max_steps;
  int depth;
  int nest; /* nested evaluations (expressions and statements): bounds the C stack */
  frame *top;
  jv blockval;
};

typedef struct jj_func {
  const char *name;
  int kind; /* F_* */
  jv self;
} jj_func;
enum { F_GLOBAL, F_STR, F_DICT, F_LIST, F_LOOP };

typedef struct jj_macro {
  const char *name;
  const jj_node *def; /* S_MACRO or S_CALLBLOCK (params in names/list2, body in list) */
  frame *closure;
  jv caller; /* for the macro a call block calls */
} jj_macro;

typedef struct jj_loop {
  jj_list *items;
  size_t idx;
  int depth0;
  const jj_node *fornode;
  frame *fr;
  bool changed_set;
  jv last_changed;
} jj_loop;

typedef struct args {
  jv *pos;
  size_t npos;
  const char **kwn;
  jv *kwv;
  size_t nkw;
} args;

enum { EX_OK = 0, EX_BREAK, EX_CONTINUE };

/* ---- errors and allocation ------------------------------------------------------------ */
_Noreturn void jj_fail(jj_env *e, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(e->err.msg, sizeof e->err.msg, fmt, ap);
  va_end(ap);
  longjmp(e->err.jb, 1);
}

jj_buf jj_tmpbuf(jj_env *e, size_t limit) {
  jj_buf b = {.limit = limit, .arena = &e->arena};
  return b;
}

void *jj_alloc(jj_env *e, size_t n) {
  void *p = jj_arena_alloc(&e->arena, n);
  if (!p) jj_fail(e, "template rendering ran out of memory (limit %zu MiB)", e->arena.limit >> 20);
  return p;
}

static void step(jj_env *e) {
  if (++e->steps > e->max_steps)
    jj_fail(e, "template exceeded the limit of %llu loop iterations and calls",
            (unsigned long long)e->max_steps);
}

static void out_add(jj_env *e, const char *s, size_t n) {
  if (!jj_buf_add(&e->out, s, n))
    jj_fail(e, "template output exceeds the limit of %zu bytes", e->out.limit);
}

static jv vnone(void) {
  return (jv){.t = JV_NONE};
}
static jv vbool(bool b) {
  jv v = {.t = JV_BOOL};
  v.u.b = b;
  return v;
}
static jv vint(int64_t i) {
  jv v = {.t = JV_INT};
  v.u.i = i;
  return v;
}
static jv vfloat(double f) {
  jv v = {.t = JV_FLOAT};
  v.u.f = f;
  return v;
}
static jv vstr(jj_env *e, const char *s) {
  return jj_str_new(e, s, strlen(s));
}

static jv vundef_msg(jj_env *e, const char *fmt, ...) TL_PRINTF(2, 3);
static jv vundef_msg(jj_env *e, const char *fmt, ...) {
  char m[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(m, sizeof m, fmt, ap);
  va_end(ap);
  size_t n = strlen(m);
  char *c = jj_alloc(e, n + 1);
  memcpy(c, m, n + 1);
  jv v = {.t = JV_UNDEF};
  v.u.undef = c;
  return v;
}

/* jinja2's object_type_repr */
static const char *obj_type_repr(jv v, char *buf, size_t cap) {
  if (v.t == JV_NONE) return "None";
  if (v.t == JV_NS) return "jinja2.utils.Namespace object";
  if (v.t == JV_LOOP) return "jinja2.runtime.LoopContext object";
  if (v.t == JV_MACRO) return "jinja2.runtime.Macro object";
  if (v.t == JV_STR && v.safe) return "markupsafe.Markup object";
  snprintf(buf, cap, "%s object", jj_type_name(v));
  return buf;
}

static jv undef_attr(jj_env *e, jv obj, const char *name) {
  char b[64];
  return vundef_msg(e, "'%s' has no attribute '%s'", obj_type_repr(obj, b, sizeof b), name);
}

static jv undef_item(jj_env *e, jv obj, jv key) {
  char b[64];
  if (key.t == JV_STR)
    return vundef_msg(e, "'%s' has no attribute '%.300s'", obj_type_repr(obj, b, sizeof b),
                      key.u.s->s);
  jj_buf kb = jj_tmpbuf(e, 256);
  jj_repr(e, &kb, key);
  jv r = vundef_msg(e, "%s has no element %s", obj_type_repr(obj, b, sizeof b), kb.p ? kb.p : "");
  return r;
}

_Noreturn static void fail_undef(jj_env *e, jv v) {
  jj_fail(e, "%s", v.u.undef);
}

static const char *str_of(jj_env *e, jv v) {
  return jj_stringify(e, v).u.s->s;
}

/* ---- frames ------------------------------------------------------------------------------ */
static frame *frame_new(jj_env *e, frame *parent) {
  frame *f = jj_alloc(e, sizeof *f);
  memset(f, 0, sizeof *f);
  f->parent = parent;
  return f;
}

static void frame_set(jj_env *e, frame *f, const char *name, jv v) {
  for (size_t i = 0; i < f->n; i++)
    if (!strcmp(f->names[i], name)) {
      f->vals[i] = v;
      return;
    }
  if (f->n == f->cap) {
    size_t cap = f->cap ? f->cap * 2 : 8;
    const char **nn = jj_alloc(e, cap * sizeof *nn);
    jv *nv = jj_alloc(e, cap * sizeof *nv);
    if (f->n) {
      memcpy(nn, f->names, f->n * sizeof *nn);
      memcpy(nv, f->vals, f->n * sizeof *nv);
    }
    f->names = nn;
    f->vals = nv;
    f->cap = cap;
  }
  f->names[f->n] = name;
  f->vals[f->n] = v;
  f->n++;
}

static bool frame_get(frame *f, const char *name, jv *out) {
  for (; f; f = f->parent)
    for (size_t i = f->n; i-- > 0;)
      if (!strcmp(f->names[i], name)) {
        *out = f->vals[i];
        return true;
      }
  return false;
}

/* ---- strings --------------------------------------------------------------------------------- */
static uint32_t u8dec(const char *s, size_t n, size_t *adv) {
  const unsigned char *u = (const unsigned char *)s;
  uint32_t c = u[0];
  size_t k = c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
  if (k > n) k = n;
  *adv = k;
  if (k == 1) return c;
  c &= 0xffu >> (k + 1);
  for (size_t i = 1; i < k; i++) c = (c << 6) | (u[i] & 0x3f);
  return c;
}

static size_t u8enc(uint32_t c, char *t) {
  if (c < 0x80) {
    t[0] = (char)c;
    return 1;
  }
  if (c < 0x800) {
    t[0] = (char)(0xc0 | (c >> 6));
    t[1] = (char)(0x80 | (c & 0x3f));
    return 2;
  }
  if (c < 0x10000) {
    t[0] = (char)(0xe0 | (c >> 12));
    t[1] = (char)(0x80 | ((c >> 6) & 0x3f));
    t[2] = (char)(0x80 | (c & 0x3f));
    return 3;
  }
  t[0] = (char)(0xf0 | (c >> 18));
  t[1] = (char)(0x80 | ((c >> 12) & 0x3f));
  t[2] = (char)(0x80 | ((c >> 6) & 0x3f));
  t[3] = (char)(0x80 | (c & 0x3f));
  return 4;
}

static bool py_isspace(uint32_t c) {
  return (c >= 9 && c <= 13) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f ||
         c == 0x3000;
}

static uint32_t cp_upper(uint32_t c) {
  if (c >= 'a' && c <= 'z') return c - 32;
  if ((c >= 0xe0 && c <= 0xfe && c != 0xf7)) return c - 32;
  if (c >= 0x3b1 && c <= 0x3c9 && c != 0x3c2) return c - 32;
  if (c >= 0x430 && c <= 0x44f) return c - 32;
  if (c >= 0x450 && c <= 0x45f) return c - 80;
  return c;
}
static uint32_t cp_lower(uint32_t c) {
  if (c >= 'A' && c <= 'Z') return c + 32;
  if ((c >= 0xc0 && c <= 0xde && c != 0xd7)) return c + 32;
  if (c >= 0x391 && c <= 0x3a9 && c != 0x3a2) return c + 32;
  if (c >= 0x410 && c <= 0x42f) return c + 32;
  if (c >= 0x400 && c <= 0x40f) return c + 80;
  return c;
}
static bool cp_isalpha(uint32_t c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= 0xc0 && c != 0xd7 && c != 0xf7 && !py_isspace(c) && !(c >= 0x2000 && c <= 0x2bff) &&
          !(c >= 0x3000 && c <= 0x303f) && !(c >= 0xff00 && c <= 0xff20) && !(c >= 0x1f000));
}
static bool cp_isupper(uint32_t c) {
  return cp_lower(c) != c;
}
static bool cp_islower(uint32_t c) {
  return cp_upper(c) != c || c == 0xdf;
}

/* mode: 0 upper, 1 lower, 2 capitalize, 3 python title, 4 swapcase */
static jv str_case(jj_env *e, jv s, int mode) {
  const char *p = s.u.s->s;
  size_t n = s.u.s->len;
  char *d = jj_alloc(e, n * 2 + 4);
  size_t k = 0;
  bool prev_cased = false, first = true;
  for (size_t i = 0; i < n;) {
    size_t adv;
    uint32_t c = u8dec(p + i, n - i, &adv);
    uint32_t o = c;
    switch (mode) {
      case 0:
        o = cp_upper(c);
        break;
      case 1:
        o = cp_lower(c);
        break;
      case 2:
        o = first ? cp_upper(c) : cp_lower(c);
        break;
      case 3:
        o = prev_cased ? cp_lower(c) : cp_upper(c);
        break;
      case 4:
        o = cp_isupper(c) ? cp_lower(c) : cp_upper(c);
        break;
    }
    bool cased = cp_isupper(c) || cp_islower(c);
    prev_cased = cased || (mode == 3 && cp_isalpha(c) && cased);
    first = false;
    if (o == c) {
      memcpy(d + k, p + i, adv);
      k += adv;
    } else {
      k += u8enc(o, d + k);
    }
    i += adv;
  }
  return jj_str_new(e, d, k);
}

/* strip: which 1 left, 2 right, 3 both; chars NULL: whitespace */
static jv str_strip(jj_env *e, jv s, jv chars, int which) {
  const char *p = s.u.s->s;
  size_t n = s.u.s->len, a = 0, b = n;
  bool ws = chars.t == JV_NONE || chars.t == JV_UNDEF;
  if (!ws && chars.t != JV_STR) jj_fail(e, "strip arg must be None or str");
  if (which & 1) {
    while (a < b) {
      size_t adv;
      uint32_t c = u8dec(p + a, b - a, &adv);
      bool in = false;
      if (ws) {
        in = py_isspace(c);
      } else {
        for (size_t j = 0; j < chars.u.s->len;) {
          size_t ad2;
          if (u8dec(chars.u.s->s + j, chars.u.s->len - j, &ad2) == c) in = true;
          j += ad2;
        }
      }
      if (!in) break;
      a += adv;
    }
  }
  if (which & 2) {
    while (b > a) {
      size_t st = b - 1;
      while (st > a && ((unsigned char)p[st] & 0xc0) == 0x80) st--;
      size_t adv;
      uint32_t c = u8dec(p + st, b - st, &adv);
      bool in = false;
      if (ws) {
        in = py_isspace(c);
      } else {
        for (size_t j = 0; j < chars.u.s->len;) {
          size_t ad2;
          if (u8dec(chars.u.s->s + j, chars.u.s->len - j, &ad2) == c) in = true;
          j += ad2;
        }
      }
      if (!in) break;
      b = st;
    }
  }
  return jj_str_new(e, p + a, b - a);
}

static const char *memmem_s(const char *h, size_t hn, const char *nd, size_t nn) {
  if (nn == 0) return h;
  if (nn > hn) return NULL;
  for (size_t i = 0; i + nn <= hn; i++)
    if (h[i] == nd[0] && !memcmp(h + i, nd, nn)) return h + i;
  return NULL;
}

static jv str_replace(jj_env *e, jv s, jv old, jv nw, int64_t count) {
  if (old.t != JV_STR || nw.t != JV_STR) jj_fail(e, "replace() argument must be str");
  jj_buf b = jj_tmpbuf(e, JJ_MAX_OUTPUT);
  const char *p = s.u.s->s;
  size_t n = s.u.s->len, on = old.u.s->len;
  int64_t done = 0;
  bool ok = true;
  if (on == 0) {
    size_t i = 0;
    for (;;) {
      if (count < 0 || done < count) {
        ok = ok && jj_buf_add(&b, nw.u.s->s, nw.u.s->len);
        done++;
      }
      if (i >= n) break;
      size_t adv;
      u8dec(p + i, n - i, &adv);
      ok = ok && jj_buf_add(&b, p + i, adv);
      i += adv;
    }
  } else {
    size_t i = 0;
    while (i < n) {
      const char *f = (count < 0 || done < count) ? memmem_s(p + i, n - i, old.u.s->s, on) : NULL;
      if (!f) {
        ok = ok && jj_buf_add(&b, p + i, n - i);
        break;
      }
      ok = ok && jj_buf_add(&b, p + i, (size_t)(f - (p + i)));
      ok = ok && jj_buf_add(&b, nw.u.s->s, nw.u.s->len);
      i = (size_t)(f - p) + on;
      done++;
    }
  }
  if (!ok) {
    jj_fail(e, "string too long");
  }
  jv r = jj_str_new(e, b.p ? b.p : "", b.len);
  return r;
}

static jv str_split(jj_env *e, jv s, jv sep, int64_t maxsplit) {
  jv r = jj_list_new(e, 4);
  const char *p = s.u.s->s;
  size_t n = s.u.s->len;
  if (sep.t == JV_NONE || sep.t == JV_UNDEF) {
    size_t i = 0;
    int64_t done = 0;
    for (;;) {
      while (i < n) {
        size_t adv;
        uint32_t c = u8dec(p + i, n - i, &adv);
        if (!py_isspace(c)) break;
        i += adv;
      }
      if (i >= n) break;
      if (maxsplit >= 0 && done >= maxsplit) {
        size_t end = n;
        /* the rest, right-stripped */
        jv rest = str_strip(e, jj_str_new(e, p + i, end - i), vnone(), 2);
        jj_list_push(e, r.u.l, rest);
        break;
      }
      size_t st = i;
      while (i < n) {
        size_t adv;
        uint32_t c = u8dec(p + i, n - i, &adv);
        if (py_isspace(c)) break;
        i += adv;
      }
      jj_list_push(e, r.u.l, jj_str_new(e, p + st, i - st));
      done++;
    }
    return r;
  }
  if (sep.t != JV_STR) jj_fail(e, "must be str or None, not %s", jj_type_name(sep));
  size_t sn = sep.u.s->len;
  if (!sn) jj_fail(e, "empty separator");
  size_t i = 0;
  int64_t done = 0;
  for (;;) {
    const char *f =
        (maxsplit < 0 || done < maxsplit) ? memmem_s(p + i, n - i, sep.u.s->s, sn) : NULL;
    if (!f) {
      jj_list_push(e, r.u.l, jj_str_new(e, p + i, n - i));
      break;
    }
    jj_list_push(e, r.u.l, jj_str_new(e, p + i, (size_t)(f - (p + i))));
    i = (size_t)(f - p) + sn;
    done++;
    step(e);
  }
  return r;
}

static jv str_rsplit(jj_env *e, jv s, jv sep, int64_t maxsplit) {
  if (maxsplit < 0 || sep.t != JV_STR) return str_split(e, s, sep, maxsplit);
  const char *p = s.u.s->s;
  size_t n = s.u.s->len, sn = sep.u.s->len;
  if (!sn) jj_fail(e, "empty separator");
  jv parts[64];
  size_t np = 0;
  size_t end = n;
  int64_t done = 0;
  while (done < maxsplit && np < 63) {
    const char *found = NULL;
    for (size_t i = end; i-- > 0;)
      if (i + sn <= end && !memcmp(p + i, sep.u.s->s, sn)) {
        found = p + i;
        break;
      }
    if (!found) break;
    parts[np++] = jj_str_new(e, found + sn, (size_t)(p + end - (found + sn)));
    end = (size_t)(found - p);
    done++;
  }
  jv r = jj_list_new(e, np + 1);
  jj_list_push(e, r.u.l, jj_str_new(e, p, end));
  while (np) jj_list_push(e, r.u.l, parts[--np]);
  return r;
}

static jv str_splitlines(jj_env *e, jv s) {
  jv r = jj_list_new(e, 4);
  const char *p = s.u.s->s;
  size_t n = s.u.s->len, st = 0, i = 0;
  while (i < n) {
    size_t adv;
    uint32_t c = u8dec(p + i, n - i, &adv);
    bool br = c == '\n' || c == '\r' || c == 0xb || c == 0xc || (c >= 0x1c && c <= 0x1e) ||
              c == 0x85 || c == 0x2028 || c == 0x2029;
    if (br) {
      jj_list_push(e, r.u.l, jj_str_new(e, p + st, i - st));
      i += adv;
      if (c == '\r' && i < n && p[i] == '\n') i++;
      st = i;
    } else {
      i += adv;
    }
  }
  if (st < n) jj_list_push(e, r.u.l, jj_str_new(e, p + st, n - st));
  return r;
}

/* ---- iteration ----------------------------------------------------------------------------------
 */
static jj_list *to_list(jj_env *e, jv v) {
  switch (v.t) {
    case JV_LIST:
      return v.u.l;
    case JV_DICT: {
      jv l = jj_list_new(e, v.u.d->n);
      for (size_t i = 0; i < v.u.d->n; i++) jj_list_push(e, l.u.l, v.u.d->k[i]);
      return l.u.l;
    }
    case JV_STR: {
      jv l = jj_list_new(e, v.u.s->len);
      const char *p = v.u.s->s;
      size_t n = v.u.s->len;
      for (size_t i = 0; i < n;) {
        size_t adv;
        u8dec(p + i, n - i, &adv);
        jj_list_push(e, l.u.l, jj_str_new(e, p + i, adv));
        i += adv;
      }
      return l.u.l;
    }
    case JV_UNDEF:
      return jj_list_new(e, 0).u.l;
    default:
      jj_fail(e, "'%s' object is not iterable", jj_type_name(v));
  }
}

static jv as_view(jv l, int view, const char *name) {
  l.u.l->view = (uint8_t)view;
  l.u.l->view_name = name;
  return l;
}

static bool is_view(jv v, int view) {
  return v.t == JV_LIST && v.u.l->view == view;
}
/* generators, iterators and dict views: not subscriptable */
static bool not_subscriptable(jv v) {
  return v.t == JV_LIST && v.u.l->view != JL_LIST && v.u.l->view != JL_RANGE;
}

static jv tuple2(jj_env *e, jv a, jv b) {
  jv t = jj_list_new(e, 2);
  t.u.l->tuple = true;
  jj_list_push(e, t.u.l, a);
  jj_list_push(e, t.u.l, b);
  return t;
}

/* ---- attributes and items ----------------------------------------------------------------------
 */
static const char *const str_methods[] = {
    "strip",        "lstrip",       "rstrip",   "split",      "rsplit",    "splitlines",
    "startswith",   "endswith",     "replace",  "upper",      "lower",     "title",
    "capitalize",   "swapcase",     "format",   "find",       "rfind",     "index",
    "rindex",       "count",        "join",     "isdigit",    "isalpha",   "isalnum",
    "isspace",      "isupper",      "islower",  "isnumeric",  "isdecimal", "istitle",
    "partition",    "rpartition",   "zfill",    "ljust",      "rjust",     "center",
    "removeprefix", "removesuffix", "casefold", "expandtabs", NULL};
static const char *const dict_methods[] = {"get", "items", "keys", "values", "copy", NULL};
static const char *const dict_unsafe[] = {"clear", "pop", "popitem", "setdefault", "update", NULL};
static const char *const list_methods[] = {"index", "count", "copy", NULL};
static const char *const list_unsafe[] = {"append", "clear",  "pop",    "reverse", "insert",
                                          "sort",   "extend", "remove", NULL};

static bool in_names(const char *const *names, const char *s) {
  for (size_t i = 0; names[i]; i++)
    if (!strcmp(names[i], s)) return true;
  return false;
}

static jv bound(jj_env *e, const char *name, int kind, jv self) {
  jj_func *f = jj_alloc(e, sizeof *f);
  size_t n = strlen(name);
  char *nm = jj_alloc(e, n + 1);
  memcpy(nm, name, n + 1);
  f->name = nm;
  f->kind = kind;
  f->self = self;
  jv v = {.t = JV_FUNC};
  v.u.fn = f;
  return v;
}

static jv loop_attr(jj_env *e, jv lv, const char *name, bool *found);

/* obj.name as the sandbox's getattr; found = false: no attribute */
static jv get_attribute(jj_env *e, jv obj, const char *name, bool *found) {
  *found = true;
  switch (obj.t) {
    case JV_STR:
      if (in_names(str_methods, name)) return bound(e, name, F_STR, obj);
      break;
    case JV_DICT:
      if (in_names(dict_methods, name)) return bound(e, name, F_DICT, obj);
      if (in_names(dict_unsafe, name))
        return vundef_msg(e, "access to attribute '%s' of 'dict' object is unsafe.", name);
      break;
    case JV_LIST:
      if (obj.u.l->tuple) {
        if (!strcmp(name, "index") || !strcmp(name, "count")) return bound(e, name, F_LIST, obj);
        break;
      }
      if (in_names(list_methods, name)) return bound(e, name, F_LIST, obj);
      if (in_names(list_unsafe, name))
        return vundef_msg(e, "access to attribute '%s' of 'list' object is unsafe.", name);
      break;
    case JV_NS: {
      jv *v = jj_dict_find_str(obj.u.d, name);
      if (v) return *v;
      break;
    }
    case JV_LOOP: {
      jv r = loop_attr(e, obj, name, found);
      if (*found) return r;
      break;
    }
    default:
      break;
  }
  *found = false;
  return vnone();
}

static jv getattr_v(jj_env *e, jv obj, const char *name) {
  if (obj.t == JV_UNDEF) fail_undef(e, obj);
  bool found;
  jv r = get_attribute(e, obj, name, &found);
  if (found) return r;
  if (obj.t == JV_DICT) {
    jv *v = jj_dict_find_str(obj.u.d, name);
    if (v) return *v;
  }
  return undef_attr(e, obj, name);
}

static jv getitem_v(jj_env *e, jv obj, jv key) {
  if (obj.t == JV_UNDEF) fail_undef(e, obj);
  switch (obj.t) {
    case JV_DICT: {
      jv *v = jj_dict_find(obj.u.d, key);
      if (v) return *v;
      break;
    }
    case JV_LIST:
      if ((key.t == JV_INT || key.t == JV_BOOL) && !not_subscriptable(obj)) {
        int64_t i = key.t == JV_INT ? key.u.i : key.u.b;
        int64_t n = (int64_t)obj.u.l->n;
        if (i < 0) i += n;
        if (i >= 0 && i < n) return obj.u.l->v[i];
      }
      break;
    case JV_STR:
      if (key.t == JV_INT || key.t == JV_BOOL) {
        int64_t i = key.t == JV_INT ? key.u.i : key.u.b;
        int64_t n = (int64_t)jj_utf8_len(obj.u.s->s, obj.u.s->len);
        if (i < 0) i += n;
        if (i >= 0 && i < n) {
          size_t a = jj_utf8_off(obj.u.s->s, obj.u.s->len, (size_t)i);
          size_t adv;
          u8dec(obj.u.s->s + a, obj.u.s->len - a, &adv);
          return jj_str_new(e, obj.u.s->s + a, adv);
        }
      }
      break;
    default:
      break;
  }
  if (key.t == JV_STR) {
    bool found;
    jv r = get_attribute(e, obj, key.u.s->s, &found);
    if (found) return r;
  }
  return undef_item(e, obj, key);
}

/* Python slicing */
static void slice_idx(int64_t n, jv st, jv sp, jv stp, int64_t *start, int64_t *stop,
                      int64_t *stepv) {
  int64_t s = stp.t == JV_INT ? stp.u.i : 1;
  *stepv = s;
  int64_t a, b;
  if (st.t == JV_INT) {
    a = st.u.i;
    if (a < 0) a += n;
    if (a < 0) a = s < 0 ? -1 : 0;
    if (a >= n) a = s < 0 ? n - 1 : n;
  } else {
    a = s < 0 ? n - 1 : 0;
  }
  if (sp.t == JV_INT) {
    b = sp.u.i;
    if (b < 0) b += n;
    if (b < 0) b = s < 0 ? -1 : 0;
    if (b >= n) b = s < 0 ? n - 1 : n;
  } else {
    b = s < 0 ? -1 : n;
  }
  *start = a;
  *stop = b;
}

static jv do_slice(jj_env *e, jv obj, jv st, jv sp, jv stp) {
  if (obj.t == JV_UNDEF) fail_undef(e, obj);
  for (int k = 0; k < 3; k++) {
    jv x = k == 0 ? st : k == 1 ? sp : stp;
    if (x.t != JV_INT && x.t != JV_NONE && x.t != JV_UNDEF)
      jj_fail(e, "slice indices must be integers or None or have an __index__ method");
  }
  if (stp.t == JV_INT && stp.u.i == 0) jj_fail(e, "slice step cannot be zero");
  if (obj.t == JV_LIST && !not_subscriptable(obj)) {
    int64_t a, b, s;
    slice_idx((int64_t)obj.u.l->n, st, sp, stp, &a, &b, &s);
    jv r = jj_list_new(e, 0);
    r.u.l->tuple = obj.u.l->tuple;
    for (int64_t i = a; s > 0 ? i < b : i > b; i += s) jj_list_push(e, r.u.l, obj.u.l->v[i]);
    return r;
  }
  if (obj.t == JV_STR) {
    jj_list *chars = to_list(e, obj);
    int64_t a, b, s;
    slice_idx((int64_t)chars->n, st, sp, stp, &a, &b, &s);
    jj_buf bb = jj_tmpbuf(e, JJ_MAX_OUTPUT);
    for (int64_t i = a; s > 0 ? i < b : i > b; i += s)
      if (!jj_buf_add(&bb, chars->v[i].u.s->s, chars->v[i].u.s->len)) {
        jj_fail(e, "string too long");
      }
    jv r = jj_str_new(e, bb.p ? bb.p : "", bb.len);
    return r;
  }
  /* jinja2 compiles a slice to Python's subscript (not environment.getitem) */
  jj_fail(e, "'%s' object is not subscriptable", jj_type_name(obj));
}

/* ---- arithmetic
 * ------------------------------------------------------------------------------------ */
static bool isnum(jv v) {
  return v.t == JV_INT || v.t == JV_FLOAT || v.t == JV_BOOL;
}
static double fnum(jv v) {
  return v.t == JV_FLOAT ? v.u.f : v.t == JV_INT ? (double)v.u.i : (double)v.u.b;
}
static int64_t inum(jv v) {
  return v.t == JV_INT ? v.u.i : (int64_t)v.u.b;
}

static const char *op_sym(int op) {
  switch (op) {
    case OP_ADD:
      return "+";
    case OP_SUB:
      return "-";
    case OP_MUL:
      return "*";
    case OP_DIV:
      return "/";
    case OP_FLOORDIV:
      return "//";
    case OP_MOD:
      return "%";
    case OP_POW:
      return "** or pow()";
  }
  return "?";
}

static jv py_percent_format(jj_env *e, jv fmt, jv argsv);
static jv html_escape(jj_env *e, jv v);

static jv repeat_seq(jj_env *e, jv seq, int64_t n) {
  if (n < 0) n = 0;
  if (seq.t == JV_STR) {
    if (seq.u.s->len && (uint64_t)n > JJ_MAX_OUTPUT / seq.u.s->len) jj_fail(e, "string too long");
    size_t len = seq.u.s->len * (size_t)n;
    char *d = jj_alloc(e, len + 1);
    for (int64_t i = 0; i < n; i++) memcpy(d + (size_t)i * seq.u.s->len, seq.u.s->s, seq.u.s->len);
    return jj_str_new(e, d, len);
  }
  if (seq.u.l->n && (uint64_t)n > JJ_MAX_STEPS / seq.u.l->n) jj_fail(e, "list too long");
  jv r = jj_list_new(e, seq.u.l->n * (size_t)n);
  r.u.l->tuple = seq.u.l->tuple;
  for (int64_t i = 0; i < n; i++)
    for (size_t j = 0; j < seq.u.l->n; j++) jj_list_push(e, r.u.l, seq.u.l->v[j]);
  return r;
}

static jv binop(jj_env *e, int op, jv a, jv b) {
  if (a.t == JV_UNDEF) fail_undef(e, a);
  if (b.t == JV_UNDEF) fail_undef(e, b);
  if (isnum(a) && isnum(b)) {
    bool fl = a.t == JV_FLOAT || b.t == JV_FLOAT;
    if (op == OP_DIV) {
      if (fnum(b) == 0) jj_fail(e, fl ? "float division by zero" : "division by zero");
      return vfloat(fnum(a) / fnum(b));
    }
    if (fl) {
      double x = fnum(a), y = fnum(b);
      switch (op) {
        case OP_ADD:
          return vfloat(x + y);
        case OP_SUB:
          return vfloat(x - y);
        case OP_MUL:
          return vfloat(x * y);
        case OP_FLOORDIV:
          if (y == 0) jj_fail(e, "float floor division by zero");
          return vfloat(floor(x / y));
        case OP_MOD: {
          if (y == 0) jj_fail(e, "float modulo");
          double m = fmod(x, y);
          if (m != 0 && ((m < 0) != (y < 0))) m += y;
          return vfloat(m);
        }
        case OP_POW:
          return vfloat(pow(x, y));
      }
    }
    int64_t x = inum(a), y = inum(b), r;
    switch (op) {
      case OP_ADD:
        if (__builtin_add_overflow(x, y, &r)) jj_fail(e, "integer overflow");
        return vint(r);
      case OP_SUB:
        if (__builtin_sub_overflow(x, y, &r)) jj_fail(e, "integer overflow");
        return vint(r);
      case OP_MUL:
        if (__builtin_mul_overflow(x, y, &r)) jj_fail(e, "integer overflow");
        return vint(r);
      case OP_FLOORDIV:
      case OP_MOD: {
        if (y == 0) jj_fail(e, "integer division or modulo by zero");
        if (x == INT64_MIN && y == -1) jj_fail(e, "integer overflow");
        int64_t q = x / y, m = x % y;
        if (m != 0 && ((m < 0) != (y < 0))) {
          q--;
          m += y;
        }
        return vint(op == OP_MOD ? m : q);
      }
      case OP_POW: {
        if (y < 0) return vfloat(pow((double)x, (double)y));
        int64_t acc = 1;
        for (int64_t i = 0; i < y; i++) {
          if (__builtin_mul_overflow(acc, x, &acc)) jj_fail(e, "integer overflow");
          if (acc == 0 || acc == 1) break;
        }
        return vint(acc);
      }
    }
  }
  if (op == OP_ADD) {
    if (a.t == JV_STR && b.t == JV_STR && a.safe != b.safe) {
      /* Markup + str (either way round) escapes the str */
      jv r = binop(e, OP_ADD, a.safe ? a : html_escape(e, a), b.safe ? b : html_escape(e, b));
      r.safe = true;
      return r;
    }
    if (a.t == JV_STR && b.t == JV_STR) {
      size_t n = a.u.s->len + b.u.s->len;
      if (n > JJ_MAX_OUTPUT) jj_fail(e, "string too long");
      char *d = jj_alloc(e, n + 1);
      memcpy(d, a.u.s->s, a.u.s->len);
      memcpy(d + a.u.s->len, b.u.s->s, b.u.s->len);
      jj_str *s = jj_alloc(e, sizeof *s);
      d[n] = 0;
      s->s = d;
      s->len = n;
      jv r = {.t = JV_STR};
      r.u.s = s;
      return r;
    }
    if (a.t == JV_LIST && b.t == JV_LIST && a.u.l->tuple == b.u.l->tuple &&
        a.u.l->view == JL_LIST && b.u.l->view == JL_LIST) {
      jv r = jj_list_new(e, a.u.l->n + b.u.l->n);
      r.u.l->tuple = a.u.l->tuple;
      for (size_t i = 0; i < a.u.l->n; i++) jj_list_push(e, r.u.l, a.u.l->v[i]);
      for (size_t i = 0; i < b.u.l->n; i++) jj_list_push(e, r.u.l, b.u.l->v[i]);
      return r;
    }
    if (a.t == JV_STR) jj_fail(e, "can only concatenate str (not \"%s\") to str", jj_type_name(b));
    if (a.t == JV_LIST && a.u.l->view == JL_LIST)
      jj_fail(e, "can only concatenate %s (not \"%s\") to %s", jj_type_name(a), jj_type_name(b),
              jj_type_name(a));
  }
  if (op == OP_MUL) {
    if ((a.t == JV_STR || is_view(a, JL_LIST)) && (b.t == JV_INT || b.t == JV_BOOL))
      return repeat_seq(e, a, inum(b));
    if ((b.t == JV_STR || is_view(b, JL_LIST)) && (a.t == JV_INT || a.t == JV_BOOL))
      return repeat_seq(e, b, inum(a));
    if (a.t == JV_STR || is_view(a, JL_LIST))
      jj_fail(e, "can't multiply sequence by non-int of type '%s'", jj_type_name(b));
    if (b.t == JV_STR || is_view(b, JL_LIST))
      jj_fail(e, "can't multiply sequence by non-int of type '%s'", jj_type_name(a));
  }
  if (op == OP_MOD && a.t == JV_STR) return py_percent_format(e, a, b);
  jj_fail(e, "unsupported operand type(s) for %s: '%s' and '%s'", op_sym(op), jj_type_name(a),
          jj_type_name(b));
}

static bool contains(jj_env *e, jv container, jv item) {
  switch (container.t) {
    case JV_STR:
      if (item.t == JV_UNDEF) fail_undef(e, item);
      if (item.t != JV_STR)
        jj_fail(e, "'in <string>' requires string as left operand, not %s", jj_type_name(item));
      return memmem_s(container.u.s->s, container.u.s->len, item.u.s->s, item.u.s->len) != NULL;
    case JV_LIST:
      for (size_t i = 0; i < container.u.l->n; i++)
        if (jj_equal(container.u.l->v[i], item)) return true;
      return false;
    case JV_DICT:
      if ((item.t == JV_LIST && !item.u.l->tuple) || item.t == JV_DICT || item.t == JV_NS)
        jj_fail(e, "unhashable type: '%s'", jj_type_name(item));
      return jj_dict_find(container.u.d, item) != NULL;
    case JV_UNDEF:
      return false;
    default:
      jj_fail(e, "argument of type '%s' is not iterable", jj_type_name(container));
  }
}

/* ---- evaluation
 * ------------------------------------------------------------------------------------- */
static jv eval(jj_env *e, frame *f, const jj_node *n);
static int exec_body(jj_env *e, frame *f, jj_node *const *body, size_t nb);
static jv call_value(jj_env *e, frame *f, jv callee, args *a);
static jv apply_filter(jj_env *e, frame *f, const char *name, jv v, args *a);
static bool apply_test(jj_env *e, frame *f, const char *name, jv v, args *a);

static void eval_args(jj_env *e, frame *f, const jj_node *n, args *a, size_t extra_kw) {
  a->npos = n->n;
  a->pos = n->n ? jj_alloc(e, n->n * sizeof(jv)) : NULL;
  for (size_t i = 0; i < n->n; i++) a->pos[i] = eval(e, f, n->list[i]);
  a->nkw = n->n2;
  a->kwn = jj_alloc(e, (n->n2 + extra_kw + 1) * sizeof(char *));
  a->kwv = jj_alloc(e, (n->n2 + extra_kw + 1) * sizeof(jv));
  for (size_t i = 0; i < n->n2; i++) {
    a->kwn[i] = n->names[i];
    a->kwv[i] = eval(e, f, n->list2[i]);
  }
}

/* positional i or keyword name; def when neither */
static jv arg_get(args *a, size_t i, const char *name, jv def) {
  if (i < a->npos) return a->pos[i];
  for (size_t k = 0; k < a->nkw; k++)
    if (name && !strcmp(a->kwn[k], name)) return a->kwv[k];
  return def;
}

static jv capture_begin_end(jj_env *e, size_t start) {
  jv s = jj_str_new(e, e->out.p ? e->out.p + start : "", e->out.len - start);
  e->out.len = start;
  if (e->out.p) e->out.p[start] = 0;
  return s; /* a str: Markup only under autoescape */
}

static jv eval_node(jj_env *e, frame *f, const jj_node *n);

/* Python stops at about 1000 frames; 2000 nested evaluations stay well
 * within a thread's stack here */
#define JJ_MAX_EVAL_NEST 2000

static jv eval(jj_env *e, frame *f, const jj_node *n) {
  if (++e->nest > JJ_MAX_EVAL_NEST) jj_fail(e, "maximum recursion depth exceeded");
  jv r = eval_node(e, f, n);
  e->nest--;
  return r;
}

static jv eval_node(jj_env *e, frame *f, const jj_node *n) {
  switch (n->kind) {
    case N_CONST:
      return n->val;
    case N_NAME: {
      jv v;
      if (frame_get(f, n->name, &v)) return v;
      return vundef_msg(e, "'%s' is undefined", n->name);
    }
    case N_LIST:
    case N_TUPLE: {
      jv l = jj_list_new(e, n->n);
      l.u.l->tuple = n->kind == N_TUPLE;
      for (size_t i = 0; i < n->n; i++) jj_list_push(e, l.u.l, eval(e, f, n->list[i]));
      return l;
    }
    case N_DICT: {
      jv d = jj_dict_new(e, n->n);
      for (size_t i = 0; i < n->n; i++) {
        jv k = eval(e, f, n->list[i]);
        if (k.t == JV_LIST && !k.u.l->tuple) jj_fail(e, "unhashable type: 'list'");
        if (k.t == JV_DICT) jj_fail(e, "unhashable type: 'dict'");
        jj_dict_set(e, d.u.d, k, eval(e, f, n->list2[i]));
      }
      return d;
    }
    case N_GETATTR:
      return getattr_v(e, eval(e, f, n->a), n->name);
    case N_GETITEM: {
      jv o = eval(e, f, n->a);
      return getitem_v(e, o, eval(e, f, n->b));
    }
    case N_SLICE: {
      jv o = eval(e, f, n->a);
      jv s[3];
      for (int k = 0; k < 3; k++) s[k] = n->list[k] ? eval(e, f, n->list[k]) : vnone();
      return do_slice(e, o, s[0], s[1], s[2]);
    }
    case N_CALL: {
      jv callee = eval(e, f, n->a);
      args a;
      eval_args(e, f, n, &a, 0);
      return call_value(e, f, callee, &a);
    }
    case N_FILTER: {
      jv v = n->a ? eval(e, f, n->a) : e->blockval;
      args a;
      eval_args(e, f, n, &a, 0);
      return apply_filter(e, f, n->name, v, &a);
    }
    case N_BLOCKVAL:
      return e->blockval;
    case N_TEST: {
      jv v = eval(e, f, n->a);
      args a;
      eval_args(e, f, n, &a, 0);
      bool r = apply_test(e, f, n->name, v, &a);
      return vbool(n->op ? !r : r);
    }
    case N_NEG:
    case N_POS: {
      jv v = eval(e, f, n->a);
      if (v.t == JV_UNDEF) fail_undef(e, v);
      if (v.t == JV_FLOAT) return vfloat(n->kind == N_NEG ? -v.u.f : v.u.f);
      if (v.t == JV_INT || v.t == JV_BOOL) {
        int64_t i = inum(v);
        if (n->kind == N_POS) return vint(i);
        if (i == INT64_MIN) jj_fail(e, "integer overflow");
        return vint(-i);
      }
      jj_fail(e, "bad operand type for unary %c: '%s'", n->kind == N_NEG ? '-' : '+',
              jj_type_name(v));
    }
    case N_NOT:
      return vbool(!jj_truthy(eval(e, f, n->a)));
    case N_AND: {
      jv a = eval(e, f, n->a);
      if (!jj_truthy(a)) return a;
      return eval(e, f, n->b);
    }
    case N_OR: {
      jv a = eval(e, f, n->a);
      if (jj_truthy(a)) return a;
      return eval(e, f, n->b);
    }
    case N_BINOP: {
      jv a = eval(e, f, n->a);
      jv b = eval(e, f, n->b);
      return binop(e, n->op, a, b);
    }
    case N_CONCAT: {
      jv a = jj_stringify(e, eval(e, f, n->a));
      jv b = jj_stringify(e, eval(e, f, n->b));
      return binop(e, OP_ADD, a, b);
    }
    case N_COMPARE: {
      jv left = eval(e, f, n->a);
      for (size_t i = 0; i < n->n; i++) {
        jv right = eval(e, f, n->list[i]);
        bool r;
        switch (n->ops[i]) {
          case OP_EQ:
            r = jj_equal(left, right);
            break;
          case OP_NE:
            r = !jj_equal(left, right);
            break;
          case OP_LT:
            r = jj_compare(e, left, right, "<") < 0;
            break;
          case OP_LE:
            r = jj_compare(e, left, right, "<=") <= 0;
            break;
          case OP_GT:
            r = jj_compare(e, left, right, ">") > 0;
            break;
          case OP_GE:
            r = jj_compare(e, left, right, ">=") >= 0;
            break;
          case OP_IN:
            r = contains(e, right, left);
            break;
          default:
            r = !contains(e, right, left);
            break;
        }
        if (!r) return vbool(false);
        left = right;
      }
      return vbool(true);
    }
    case N_COND:
      if (jj_truthy(eval(e, f, n->a))) return eval(e, f, n->b);
      if (n->c) return eval(e, f, n->c);
      return vundef_msg(
          e,
          "the inline if-expression on line %d evaluated to false and no else section was defined.",
          n->line);
  }
  jj_fail(e, "internal error: bad expression node %d", n->kind);
}

/* ---- macros and calls
 * ------------------------------------------------------------------------------- */
static jv call_macro(jj_env *e, jj_macro *m, args *a) {
  const jj_node *d = m->def;
  if (++e->depth > JJ_MAX_CALL_DEPTH) jj_fail(e, "maximum recursion depth exceeded");
  step(e);
  frame *mf = frame_new(e, m->closure);
  jv varargs = jj_list_new(e, 0);
  varargs.u.l->tuple = true;
  jv kwargs = jj_dict_new(e, 0);
  bool *set = jj_alloc(e, (d->nnames + 1) * sizeof(bool));
  memset(set, 0, (d->nnames + 1) * sizeof(bool));
  for (size_t i = 0; i < a->npos; i++) {
    if (i < d->nnames) {
      frame_set(e, mf, d->names[i], a->pos[i]);
      set[i] = true;
    } else {
      jj_list_push(e, varargs.u.l, a->pos[i]);
    }
  }
  jv caller = m->caller;
  for (size_t k = 0; k < a->nkw; k++) {
    size_t i;
    for (i = 0; i < d->nnames; i++)
      if (!strcmp(d->names[i], a->kwn[k])) break;
    if (i < d->nnames) {
      frame_set(e, mf, d->names[i], a->kwv[k]);
      set[i] = true;
    } else if (!strcmp(a->kwn[k], "caller")) {
      caller = a->kwv[k];
    } else {
      jj_dict_set(e, kwargs.u.d, vstr(e, a->kwn[k]), a->kwv[k]);
    }
  }
  for (size_t i = 0; i < d->nnames; i++) {
    if (set[i]) continue;
    if (i < d->n2 && d->list2[i])
      frame_set(e, mf, d->names[i], eval(e, mf, d->list2[i]));
    else
      frame_set(e, mf, d->names[i], vundef_msg(e, "parameter '%s' was not provided", d->names[i]));
  }
  frame_set(e, mf, "varargs", varargs);
  frame_set(e, mf, "kwargs", kwargs);
  if (caller.t != JV_UNDEF) frame_set(e, mf, "caller", caller);
  size_t start = e->out.len;
  exec_body(e, mf, d->list, d->n);
  e->depth--;
  return capture_begin_end(e, start);
}

static jv call_global(jj_env *e, jj_func *fn, args *a);
static jv call_method(jj_env *e, jj_func *fn, args *a);
static jv run_for(jj_env *e, frame *f, const jj_node *n, jv iterable, int depth0);

static jv call_value(jj_env *e, frame *f, jv callee, args *a) {
  switch (callee.t) {
    case JV_UNDEF:
      fail_undef(e, callee);
    case JV_MACRO:
      return call_macro(e, callee.u.m, a);
    case JV_FUNC:
      step(e);
      if (callee.u.fn->kind == F_GLOBAL) return call_global(e, callee.u.fn, a);
      return call_method(e, callee.u.fn, a);
    case JV_LOOP: {
      jj_loop *lp = callee.u.loop;
      if (!lp->fornode || !lp->fornode->op)
        jj_fail(e, "Tried to call non recursive loop.  Maybe you forgot the 'recursive' modifier.");
      if (a->npos != 1) jj_fail(e, "loop() takes one argument");
      if (++e->depth > JJ_MAX_CALL_DEPTH) jj_fail(e, "maximum recursion depth exceeded");
      size_t start = e->out.len;
      run_for(e, lp->fr, lp->fornode, a->pos[0], lp->depth0 + 1);
      e->depth--;
      return capture_begin_end(e, start);
    }
    default:
      jj_fail(e, "'%s' object is not callable", jj_type_name(callee));
  }
}

/* ---- loops
 * ------------------------------------------------------------------------------------------ */
static jv loop_attr(jj_env *e, jv lv, const char *name, bool *found) {
  jj_loop *l = lv.u.loop;
  int64_t i = (int64_t)l->idx, n = (int64_t)l->items->n;
  *found = true;
  if (!strcmp(name, "index")) return vint(i + 1);
  if (!strcmp(name, "index0")) return vint(i);
  if (!strcmp(name, "revindex")) return vint(n - i);
  if (!strcmp(name, "revindex0")) return vint(n - i - 1);
  if (!strcmp(name, "first")) return vbool(i == 0);
  if (!strcmp(name, "last")) return vbool(i == n - 1);
  if (!strcmp(name, "length")) return vint(n);
  if (!strcmp(name, "depth")) return vint(l->depth0 + 1);
  if (!strcmp(name, "depth0")) return vint(l->depth0);
  if (!strcmp(name, "previtem"))
    return i > 0 ? l->items->v[i - 1] : vundef_msg(e, "there is no previous item");
  if (!strcmp(name, "nextitem"))
    return i + 1 < n ? l->items->v[i + 1] : vundef_msg(e, "there is no next item");
  if (!strcmp(name, "cycle") || !strcmp(name, "changed")) return bound(e, name, F_LOOP, lv);
  *found = false;
  return vnone();
}

static void bind_targets(jj_env *e, frame *f, const jj_node *n, jv item) {
  if (n->nnames == 1) {
    frame_set(e, f, n->names[0], item);
    return;
  }
  jj_list *l;
  if (item.t == JV_LIST)
    l = item.u.l;
  else if (item.t == JV_STR || item.t == JV_DICT)
    l = to_list(e, item);
  else
    jj_fail(e, "cannot unpack non-iterable %s object", jj_type_name(item));
  if (l->n < n->nnames)
    jj_fail(e, "not enough values to unpack (expected %zu, got %zu)", n->nnames, l->n);
  if (l->n > n->nnames) jj_fail(e, "too many values to unpack (expected %zu)", n->nnames);
  for (size_t i = 0; i < n->nnames; i++) frame_set(e, f, n->names[i], l->v[i]);
}

/* runs a for statement over iterable (its else too); EX_OK */
static jv run_for(jj_env *e, frame *f, const jj_node *n, jv iterable, int depth0) {
  jj_list *src = to_list(e, iterable);
  jj_list *items = src;
  if (n->b) {
    items = jj_list_new(e, src->n).u.l;
    frame *cf = frame_new(e, f);
    for (size_t i = 0; i < src->n; i++) {
      step(e);
      cf->n = 0;
      bind_targets(e, cf, n, src->v[i]);
      if (jj_truthy(eval(e, cf, n->b))) jj_list_push(e, items, src->v[i]);
    }
  }
  if (items->n == 0) {
    if (n->n2) exec_body(e, f, n->list2, n->n2);
    return vnone();
  }
  /* jinja2 runs the else block unless some iteration ran its body to the
   * end (an iteration left by break or continue does not count) */
  bool completed = false;
  jj_loop *lp = jj_alloc(e, sizeof *lp);
  memset(lp, 0, sizeof *lp);
  lp->items = items;
  lp->depth0 = depth0;
  lp->fornode = n;
  lp->fr = f;
  jv lv = {.t = JV_LOOP};
  lv.u.loop = lp;
  /* one frame for the body, emptied each iteration (what the body sets
   * does not outlive its iteration, as in jinja2) */
  frame *bf = frame_new(e, f);
  for (size_t i = 0; i < items->n; i++) {
    step(e);
    lp->idx = i;
    bf->n = 0;
    frame_set(e, bf, "loop", lv);
    bind_targets(e, bf, n, items->v[i]);
    int r = exec_body(e, bf, n->list, n->n);
    if (r == EX_OK) completed = true;
    if (r == EX_BREAK) break;
  }
  if (!completed && n->n2) exec_body(e, f, n->list2, n->n2);
  return vnone();
}

/* ---- statements
 * ------------------------------------------------------------------------------------------ */
static int exec_stmt(jj_env *e, frame *f, const jj_node *n) {
  switch (n->kind) {
    case S_TEXT:
      out_add(e, n->val.u.s->s, n->val.u.s->len);
      return EX_OK;
    case S_PRINT: {
      jv v = eval(e, f, n->a);
      if (v.t == JV_STR) {
        out_add(e, v.u.s->s, v.u.s->len);
      } else if (v.t != JV_UNDEF) {
        jv s = jj_stringify(e, v);
        out_add(e, s.u.s->s, s.u.s->len);
      }
      return EX_OK;
    }
    case S_IF:
      if (jj_truthy(eval(e, f, n->a))) return exec_body(e, f, n->list, n->n);
      return exec_body(e, f, n->list2, n->n2);
    case S_FOR:
      run_for(e, f, n, eval(e, f, n->a), 0);
      return EX_OK;
    case S_SET: {
      jv v = eval(e, f, n->a);
      if (n->attr) {
        jv ns;
        if (!frame_get(f, n->names[0], &ns) || ns.t != JV_NS)
          jj_fail(e, "cannot assign attribute on non-namespace object");
        size_t len = strlen(n->attr);
        jj_dict_set(e, ns.u.d, jj_str_new(e, n->attr, len), v);
        return EX_OK;
      }
      if (n->nnames == 1) {
        frame_set(e, f, n->names[0], v);
        return EX_OK;
      }
      bind_targets(e, f, n, v);
      return EX_OK;
    }
    case S_SETBLOCK: { /* the body has its own scope */
      size_t start = e->out.len;
      int r = exec_body(e, frame_new(e, f), n->list, n->n);
      jv v = capture_begin_end(e, start);
      if (r != EX_OK) return r; /* break/continue leave the loop around, the text unused */
      if (n->c) {
        jv saved = e->blockval;
        e->blockval = v;
        v = eval(e, f, n->c);
        e->blockval = saved;
      }
      frame_set(e, f, n->names[0], v);
      return EX_OK;
    }
    case S_MACRO: {
      jj_macro *m = jj_alloc(e, sizeof *m);
      m->name = n->name;
      m->def = n;
      m->closure = f;
      m->caller.t = JV_UNDEF;
      jv v = {.t = JV_MACRO};
      v.u.m = m;
      frame_set(e, f, n->name, v);
      return EX_OK;
    }
    case S_CALLBLOCK: {
      jj_macro *c = jj_alloc(e, sizeof *c);
      c->name = "caller";
      c->def = n;
      c->closure = f;
      c->caller.t = JV_UNDEF;
      jv cv = {.t = JV_MACRO};
      cv.u.m = c;
      const jj_node *call = n->a;
      jv callee = eval(e, f, call->a);
      args a;
      eval_args(e, f, call, &a, 1);
      a.kwn[a.nkw] = "caller";
      a.kwv[a.nkw] = cv;
      a.nkw++;
      jv r = call_value(e, f, callee, &a);
      jv s = jj_stringify(e, r);
      if (r.t != JV_UNDEF) out_add(e, s.u.s->s, s.u.s->len);
      return EX_OK;
    }
    case S_BREAK:
      return EX_BREAK;
    case S_CONTINUE:
      return EX_CONTINUE;
    case S_FILTERBLOCK: { /* the body has its own scope */
      size_t start = e->out.len;
      int rc = exec_body(e, frame_new(e, f), n->list, n->n);
      jv v = capture_begin_end(e, start);
      if (rc != EX_OK) return rc;
      jv saved = e->blockval;
      e->blockval = v;
      jv r = eval(e, f, n->c);
      e->blockval = saved;
      jv s = jj_stringify(e, r);
      if (r.t != JV_UNDEF) out_add(e, s.u.s->s, s.u.s->len);
      return EX_OK;
    }
    case S_WITH: {
      frame *wf = frame_new(e, f);
      for (size_t i = 0; i < n->nnames; i++) frame_set(e, wf, n->names[i], eval(e, f, n->list2[i]));
      return exec_body(e, wf, n->list, n->n);
    }
    case S_BLOCK:
      return exec_body(e, f, n->list, n->n);
  }
  jj_fail(e, "internal error: bad statement node %d", n->kind);
}

static int exec_body(jj_env *e, frame *f, jj_node *const *body, size_t nb) {
  if (++e->nest > JJ_MAX_EVAL_NEST) jj_fail(e, "maximum recursion depth exceeded");
  for (size_t i = 0; i < nb; i++) {
    int r = exec_stmt(e, f, body[i]);
    if (r != EX_OK) {
      e->nest--;
      return r;
    }
  }
  e->nest--;
  return EX_OK;
}

/* ---- globals
 * ---------------------------------------------------------------------------------------------- */
static int64_t want_int(jj_env *e, jv v, const char *what) {
  if (v.t == JV_INT) return v.u.i;
  if (v.t == JV_BOOL) return v.u.b;
  if (v.t == JV_UNDEF) fail_undef(e, v);
  jj_fail(e, "'%s' object cannot be interpreted as an integer%s", jj_type_name(v), what ? "" : "");
}

static jv call_global(jj_env *e, jj_func *fn, args *a) {
  const char *nm = fn->name;
  if (!strcmp(nm, "raise_exception")) {
    jv m = arg_get(a, 0, "message", vstr(e, ""));
    jj_fail(e, "%s", str_of(e, m));
  }
  if (!strcmp(nm, "range")) {
    int64_t start = 0, stop, stp = 1;
    if (a->npos == 0) jj_fail(e, "range expected at least 1 argument, got 0");
    if (a->npos == 1) {
      stop = want_int(e, a->pos[0], NULL);
    } else {
      start = want_int(e, a->pos[0], NULL);
      stop = want_int(e, a->pos[1], NULL);
      if (a->npos > 2) stp = want_int(e, a->pos[2], NULL);
    }
    if (stp == 0) jj_fail(e, "range() arg 3 must not be zero");
    jv l = jj_list_new(e, 0);
    for (int64_t i = start; stp > 0 ? i < stop : i > stop; i += stp) {
      step(e);
      jj_list_push(e, l.u.l, vint(i));
    }
    l.u.l->r0 = start;
    l.u.l->r1 = stop;
    l.u.l->r2 = stp;
    return as_view(l, JL_RANGE, NULL);
  }
  if (!strcmp(nm, "namespace") || !strcmp(nm, "dict")) {
    jv d = jj_dict_new(e, 0);
    for (size_t i = 0; i < a->npos; i++) {
      jv x = a->pos[i];
      if (x.t == JV_DICT || x.t == JV_NS) {
        for (size_t k = 0; k < x.u.d->n; k++) jj_dict_set(e, d.u.d, x.u.d->k[k], x.u.d->v[k]);
      } else if (x.t == JV_LIST) {
        for (size_t k = 0; k < x.u.l->n; k++) {
          jv pr = x.u.l->v[k];
          if (pr.t != JV_LIST || pr.u.l->n != 2)
            jj_fail(e, "dictionary update sequence element #%zu has wrong length", k);
          jj_dict_set(e, d.u.d, pr.u.l->v[0], pr.u.l->v[1]);
        }
      } else {
        jj_fail(e, "'%s' object is not iterable", jj_type_name(x));
      }
    }
    for (size_t k = 0; k < a->nkw; k++) jj_dict_set(e, d.u.d, vstr(e, a->kwn[k]), a->kwv[k]);
    if (nm[0] == 'n') d.t = JV_NS;
    return d;
  }
  if (!strcmp(nm, "strftime_now")) {
    jv fmt = arg_get(a, 0, "format", vstr(e, ""));
    if (fmt.t != JV_STR) jj_fail(e, "strftime() argument 1 must be str, not %s", jj_type_name(fmt));
    time_t now = time(NULL);
    struct tm tmv;
    localtime_r(&now, &tmv);
    char buf[512];
    size_t k = fmt.u.s->len ? strftime(buf, sizeof buf, fmt.u.s->s, &tmv) : 0;
    return jj_str_new(e, buf, k);
  }
  jj_fail(e, "'%s' is not callable", nm);
}

/* ---- methods
 * ------------------------------------------------------------------------------------------------
 */
static bool str_starts(jv s, jv p, bool end) {
  if (p.t != JV_STR) return false;
  if (p.u.s->len > s.u.s->len) return false;
  const char *at = end ? s.u.s->s + s.u.s->len - p.u.s->len : s.u.s->s;
  return !memcmp(at, p.u.s->s, p.u.s->len);
}

static jv str_format(jj_env *e, jv fmt, args *a) {
  jj_buf b = jj_tmpbuf(e, JJ_MAX_OUTPUT);
  const char *p = fmt.u.s->s;
  size_t n = fmt.u.s->len, auto_idx = 0;
  bool ok = true;
  for (size_t i = 0; i < n; i++) {
    if (p[i] == '{' && i + 1 < n && p[i + 1] == '{') {
      ok = ok && jj_buf_add(&b, "{", 1);
      i++;
      continue;
    }
    if (p[i] == '}' && i + 1 < n && p[i + 1] == '}') {
      ok = ok && jj_buf_add(&b, "}", 1);
      i++;
      continue;
    }
    if (p[i] != '{') {
      ok = ok && jj_buf_add(&b, p + i, 1);
      continue;
    }
    size_t j = i + 1;
    while (j < n && p[j] != '}') j++;
    if (j >= n) {
      jj_fail(e, "Single '{' encountered in format string");
    }
    char field[128];
    size_t fl = j - i - 1;
    if (fl >= sizeof field) fl = sizeof field - 1;
    memcpy(field, p + i + 1, fl);
    field[fl] = 0;
    char *conv = strchr(field, '!');
    char *spec = strchr(field, ':');
    bool use_repr = conv && conv[1] == 'r';
    if (conv) *conv = 0;
    if (spec) *spec = 0;
    jv v;
    if (!field[0]) {
      v = auto_idx < a->npos ? a->pos[auto_idx] : vnone();
      if (auto_idx >= a->npos) {
        jj_fail(e, "Replacement index %zu out of range for positional args tuple", auto_idx);
      }
      auto_idx++;
    } else if (isdigit((unsigned char)field[0])) {
      size_t k = (size_t)atoi(field);
      if (k >= a->npos) {
        jj_fail(e, "Replacement index %zu out of range for positional args tuple", k);
      }
      v = a->pos[k];
    } else {
      v = arg_get(a, SIZE_MAX, field, (jv){.t = JV_UNDEF});
      if (v.t == JV_UNDEF) {
        jj_fail(e, "'%s'", field);
      }
    }
    if (use_repr)
      jj_repr(e, &b, v);
    else
      jj_to_str(e, &b, v);
    i = j;
  }
  if (!ok) {
    jj_fail(e, "string too long");
  }
  jv r = jj_str_new(e, b.p ? b.p : "", b.len);
  return r;
}

static int64_t str_find(jv s, jv sub, bool rev) {
  if (sub.t != JV_STR) return -1;
  const char *h = s.u.s->s;
  size_t hn = s.u.s->len, nn = sub.u.s->len;
  if (nn > hn) return -1;
  if (!rev) {
    const char *f = memmem_s(h, hn, sub.u.s->s, nn);
    return f ? (int64_t)jj_utf8_len(h, (size_t)(f - h)) : -1;
  }
  for (size_t i = hn - nn + 1; i-- > 0;)
    if (!memcmp(h + i, sub.u.s->s, nn)) return (int64_t)jj_utf8_len(h, i);
  return -1;
}

static jv join_items(jj_env *e, jv sep, jj_list *l, bool strict) {
  jj_buf b = jj_tmpbuf(e, JJ_MAX_OUTPUT);
  bool ok = true;
  for (size_t i = 0; i < l->n; i++) {
    if (i) ok = ok && jj_buf_add(&b, sep.u.s->s, sep.u.s->len);
    jv x = l->v[i];
    if (strict && x.t != JV_STR) {
      jj_fail(e, "sequence item %zu: expected str instance, %s found", i, jj_type_name(x));
    }
    jv s = jj_stringify(e, x);
    ok = ok && jj_buf_add(&b, s.u.s->s, s.u.s->len);
  }
  if (!ok) {
    jj_fail(e, "string too long");
  }
  jv r = jj_str_new(e, b.p ? b.p : "", b.len);
  return r;
}

static jv call_method(jj_env *e, jj_func *fn, args *a) {
  const char *m = fn->name;
  jv self = fn->self;
  jv undef = {.t = JV_UNDEF};
  if (fn->kind == F_LOOP) {
    jj_loop *l = self.u.loop;
    if (!strcmp(m, "cycle")) {
      if (!a->npos) jj_fail(e, "no items for cycling given");
      return a->pos[l->idx % a->npos];
    }
    /* changed */
    jv cur = jj_list_new(e, a->npos);
    for (size_t i = 0; i < a->npos; i++) jj_list_push(e, cur.u.l, a->pos[i]);
    bool changed = !l->changed_set || !jj_equal(cur, l->last_changed);
    l->changed_set = true;
    l->last_changed = cur;
    return vbool(changed);
  }
  if (fn->kind == F_DICT) {
    jj_dict *d = self.u.d;
    if (!strcmp(m, "get")) {
      if (a->npos < 1) jj_fail(e, "get expected at least 1 argument, got 0");
      jv *v = jj_dict_find(d, a->pos[0]);
      return v ? *v : (a->npos > 1 ? a->pos[1] : vnone());
    }
    if (!strcmp(m, "copy")) {
      jv r = jj_dict_new(e, d->n);
      for (size_t i = 0; i < d->n; i++) jj_dict_set(e, r.u.d, d->k[i], d->v[i]);
      return r;
    }
    jv l = jj_list_new(e, d->n);
    for (size_t i = 0; i < d->n; i++) {
      if (!strcmp(m, "keys"))
        jj_list_push(e, l.u.l, d->k[i]);
      else if (!strcmp(m, "values"))
        jj_list_push(e, l.u.l, d->v[i]);
      else
        jj_list_push(e, l.u.l, tuple2(e, d->k[i], d->v[i]));
    }
    return as_view(l,
                   !strcmp(m, "keys")     ? JL_KEYS
                   : !strcmp(m, "values") ? JL_VALUES
                                          : JL_ITEMS,
                   NULL);
  }
  if (fn->kind == F_LIST) {
    jj_list *l = self.u.l;
    if (!strcmp(m, "copy")) {
      jv r = jj_list_new(e, l->n);
      for (size_t i = 0; i < l->n; i++) jj_list_push(e, r.u.l, l->v[i]);
      return r;
    }
    if (a->npos < 1) jj_fail(e, "%s() takes exactly one argument (0 given)", m);
    int64_t cnt = 0;
    for (size_t i = 0; i < l->n; i++)
      if (jj_equal(l->v[i], a->pos[0])) {
        if (!strcmp(m, "index")) return vint((int64_t)i);
        cnt++;
      }
    if (!strcmp(m, "index")) {
      jj_buf b = jj_tmpbuf(e, 256);
      jj_repr(e, &b, a->pos[0]);
      char msg[300];
      snprintf(msg, sizeof msg, "%s is not in list", b.p ? b.p : "");
      jj_fail(e, "%s", msg);
    }
    return vint(cnt);
  }
  /* str */
  if (!strcmp(m, "strip")) return str_strip(e, self, arg_get(a, 0, "chars", vnone()), 3);
  if (!strcmp(m, "lstrip")) return str_strip(e, self, arg_get(a, 0, "chars", vnone()), 1);
  if (!strcmp(m, "rstrip")) return str_strip(e, self, arg_get(a, 0, "chars", vnone()), 2);
  if (!strcmp(m, "split") || !strcmp(m, "rsplit")) {
    jv sep = arg_get(a, 0, "sep", vnone());
    jv ms = arg_get(a, 1, "maxsplit", vint(-1));
    int64_t mx = want_int(e, ms, NULL);
    return m[0] == 's' ? str_split(e, self, sep, mx) : str_rsplit(e, self, sep, mx);
  }
  if (!strcmp(m, "splitlines")) return str_splitlines(e, self);
  if (!strcmp(m, "startswith") || !strcmp(m, "endswith")) {
    jv p = arg_get(a, 0, NULL, undef);
    bool end = m[0] == 'e';
    if (p.t == JV_LIST) {
      for (size_t i = 0; i < p.u.l->n; i++)
        if (str_starts(self, p.u.l->v[i], end)) return vbool(true);
      return vbool(false);
    }
    if (p.t != JV_STR)
      jj_fail(e, "%s first arg must be str or a tuple of str, not %s", m, jj_type_name(p));
    return vbool(str_starts(self, p, end));
  }
  if (!strcmp(m, "replace")) {
    jv c = arg_get(a, 2, "count", vint(-1));
    return str_replace(e, self, arg_get(a, 0, NULL, undef), arg_get(a, 1, NULL, undef),
                       want_int(e, c, NULL));
  }
  if (!strcmp(m, "upper")) return str_case(e, self, 0);
  if (!strcmp(m, "lower") || !strcmp(m, "casefold")) return str_case(e, self, 1);
  if (!strcmp(m, "capitalize")) return str_case(e, self, 2);
  if (!strcmp(m, "title")) return str_case(e, self, 3);
  if (!strcmp(m, "swapcase")) return str_case(e, self, 4);
  if (!strcmp(m, "format")) return str_format(e, self, a);
  if (!strcmp(m, "find") || !strcmp(m, "rfind") || !strcmp(m, "index") || !strcmp(m, "rindex")) {
    jv sub = arg_get(a, 0, NULL, undef);
    if (sub.t != JV_STR) jj_fail(e, "must be str, not %s", jj_type_name(sub));
    int64_t r = str_find(self, sub, m[0] == 'r');
    if (r < 0 && strstr(m, "index")) jj_fail(e, "substring not found");
    return vint(r);
  }
  if (!strcmp(m, "count")) {
    jv sub = arg_get(a, 0, NULL, undef);
    if (sub.t != JV_STR) jj_fail(e, "must be str, not %s", jj_type_name(sub));
    if (!sub.u.s->len) return vint((int64_t)jj_utf8_len(self.u.s->s, self.u.s->len) + 1);
    int64_t c = 0;
    const char *h = self.u.s->s;
    size_t hn = self.u.s->len, i = 0;
    const char *f;
    while ((f = memmem_s(h + i, hn - i, sub.u.s->s, sub.u.s->len))) {
      c++;
      i = (size_t)(f - h) + sub.u.s->len;
    }
    return vint(c);
  }
  if (!strcmp(m, "join")) {
    jv it = arg_get(a, 0, NULL, undef);
    return join_items(e, self, to_list(e, it), true);
  }
  if (!strcmp(m, "removeprefix") || !strcmp(m, "removesuffix")) {
    jv p = arg_get(a, 0, NULL, undef);
    bool end = m[6] == 's';
    if (p.t == JV_STR && str_starts(self, p, end)) {
      size_t n = self.u.s->len - p.u.s->len;
      return jj_str_new(e, end ? self.u.s->s : self.u.s->s + p.u.s->len, n);
    }
    return self;
  }
  if (!strcmp(m, "partition") || !strcmp(m, "rpartition")) {
    jv sep = arg_get(a, 0, NULL, undef);
    if (sep.t != JV_STR || !sep.u.s->len) jj_fail(e, "empty separator");
    int64_t at = str_find(self, sep, m[0] == 'r');
    jv r = jj_list_new(e, 3);
    r.u.l->tuple = true;
    jv empty = jj_str_new(e, "", 0);
    if (at < 0) {
      jj_list_push(e, r.u.l, m[0] == 'r' ? empty : self);
      jj_list_push(e, r.u.l, empty);
      jj_list_push(e, r.u.l, m[0] == 'r' ? self : empty);
      return r;
    }
    size_t off = jj_utf8_off(self.u.s->s, self.u.s->len, (size_t)at);
    jj_list_push(e, r.u.l, jj_str_new(e, self.u.s->s, off));
    jj_list_push(e, r.u.l, sep);
    size_t after = off + sep.u.s->len;
    jj_list_push(e, r.u.l, jj_str_new(e, self.u.s->s + after, self.u.s->len - after));
    return r;
  }
  if (!strncmp(m, "is", 2)) {
    const char *p = self.u.s->s;
    size_t n = self.u.s->len;
    if (!n) return vbool(false);
    bool any_cased = false, ok = true;
    for (size_t i = 0; i < n;) {
      size_t adv;
      uint32_t c = u8dec(p + i, n - i, &adv);
      i += adv;
      bool dig = c >= '0' && c <= '9';
      bool alpha = cp_isalpha(c);
      if (!strcmp(m, "isdigit") || !strcmp(m, "isnumeric") || !strcmp(m, "isdecimal"))
        ok = ok && dig;
      else if (!strcmp(m, "isalpha"))
        ok = ok && alpha;
      else if (!strcmp(m, "isalnum"))
        ok = ok && (alpha || dig);
      else if (!strcmp(m, "isspace"))
        ok = ok && py_isspace(c);
      else if (!strcmp(m, "isupper")) {
        if (cp_islower(c)) ok = false;
        if (cp_isupper(c)) any_cased = true;
      } else if (!strcmp(m, "islower")) {
        if (cp_isupper(c)) ok = false;
        if (cp_islower(c)) any_cased = true;
      } else {
        ok = false;
      }
    }
    if (!strcmp(m, "isupper") || !strcmp(m, "islower")) ok = ok && any_cased;
    return vbool(ok);
  }
  if (!strcmp(m, "zfill") || !strcmp(m, "ljust") || !strcmp(m, "rjust") || !strcmp(m, "center")) {
    int64_t w = want_int(e, arg_get(a, 0, "width", vint(0)), NULL);
    jv fill = arg_get(a, 1, "fillchar", vstr(e, m[0] == 'z' ? "0" : " "));
    size_t len = jj_utf8_len(self.u.s->s, self.u.s->len);
    if (w <= (int64_t)len || w > (int64_t)JJ_MAX_OUTPUT) return self;
    size_t pad = (size_t)w - len, left = 0;
    if (m[0] == 'z' || m[0] == 'r')
      left = pad;
    else if (m[0] == 'c')
      left = pad / 2 + (pad & (size_t)w & 1);
    jj_buf b = jj_tmpbuf(e, JJ_MAX_OUTPUT);
    for (size_t i = 0; i < left; i++) jj_buf_add(&b, fill.u.s->s, fill.u.s->len);
    jj_buf_add(&b, self.u.s->s, self.u.s->len);
    for (size_t i = left; i < pad; i++) jj_buf_add(&b, fill.u.s->s, fill.u.s->len);
    jv r = jj_str_new(e, b.p ? b.p : "", b.len);
    return r;
  }
  if (!strcmp(m, "expandtabs")) return str_replace(e, self, vstr(e, "\t"), vstr(e, "        "), -1);
  jj_fail(e, "'str' object has no attribute '%s'", m);
}

/* ---- filters
 * --------------------------------------------------------------------------------------------------
 */
/* attribute path "a.b" or "0" as jinja2's make_attrgetter (environment.getitem) */
static jv attr_path(jj_env *e, jv item, jv attr) {
  if (attr.t == JV_INT) return getitem_v(e, item, attr);
  const char *p = str_of(e, attr);
  for (;;) {
    const char *dot = strchr(p, '.');
    size_t len = dot ? (size_t)(dot - p) : strlen(p);
    jv key;
    bool digits = len > 0;
    for (size_t i = 0; i < len; i++)
      if (!isdigit((unsigned char)p[i])) digits = false;
    if (digits)
      key = vint(strtoll(p, NULL, 10));
    else
      key = jj_str_new(e, p, len);
    if (item.t == JV_UNDEF) fail_undef(e, item);
    item = getitem_v(e, item, key);
    if (!dot) return item;
    p = dot + 1;
  }
}

static jv lower_key(jj_env *e, jv v, bool case_sensitive) {
  if (!case_sensitive && v.t == JV_STR) return str_case(e, v, 1);
  return v;
}

/* jinja2 sorts by lists of keys ([key]): equal keys compare equal without
 * an ordering of their type (equal undefined values or dicts sort fine) */
static int sort_cmp(jj_env *e, jv a, jv b) {
  if (jj_equal(a, b)) return 0;
  return jj_compare(e, a, b, "<");
}

static void sort_values(jj_env *e, jv *keys, jv *vals, size_t n, bool reverse, bool list_keys) {
  /* stable insertion sort on keys; merge sort for long lists */
  if (n < 2) return;
  if (n > 64) {
    size_t h = n / 2;
    sort_values(e, keys, vals, h, reverse, list_keys);
    sort_values(e, keys + h, vals + h, n - h, reverse, list_keys);
    jv *tk = jj_alloc(e, n * sizeof(jv)), *tv = jj_alloc(e, n * sizeof(jv));
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n) {
      int c = list_keys ? sort_cmp(e, keys[j], keys[i]) : jj_compare(e, keys[j], keys[i], "<");
      bool take_right = reverse ? c > 0 : c < 0;
      if (take_right) {
        tk[k] = keys[j];
        tv[k++] = vals[j++];
      } else {
        tk[k] = keys[i];
        tv[k++] = vals[i++];
      }
    }
    while (i < h) {
      tk[k] = keys[i];
      tv[k++] = vals[i++];
    }
    while (j < n) {
      tk[k] = keys[j];
      tv[k++] = vals[j++];
    }
    memcpy(keys, tk, n * sizeof(jv));
    memcpy(vals, tv, n * sizeof(jv));
    return;
  }
  for (size_t i = 1; i < n; i++) {
    jv k = keys[i], v = vals[i];
    size_t j = i;
    while (j > 0) {
      int c = list_keys ? sort_cmp(e, k, keys[j - 1]) : jj_compare(e, k, keys[j - 1], "<");
      if (reverse ? c > 0 : c < 0) {
        keys[j] = keys[j - 1];
        vals[j] = vals[j - 1];
        j--;
      } else {
        break;
      }
    }
    keys[j] = k;
    vals[j] = v;
  }
}

static jv html_escape(jj_env *e, jv v) {
  jv s = jj_stringify(e, v);
  jj_buf b = jj_tmpbuf(e, JJ_MAX_OUTPUT);
  for (size_t i = 0; i < s.u.s->len; i++) {
    char c = s.u.s->s[i];
    const char *r = c == '&'    ? "&amp;"
                    : c == '<'  ? "&lt;"
                    : c == '>'  ? "&gt;"
                    : c == '"'  ? "&#34;"
                    : c == '\'' ? "&#39;"
                                : NULL;
    if (r)
      jj_buf_add(&b, r, strlen(r));
    else
      jj_buf_add(&b, &c, 1);
  }
  jv out = jj_str_new(e, b.p ? b.p : "", b.len);
  out.safe = true;
  return out;
}

static jv py_percent_format(jj_env *e, jv fmt, jv argsv) {
  jj_list *al;
  if (argsv.t == JV_LIST && argsv.u.l->tuple) {
    al = argsv.u.l;
  } else {
    al = jj_list_new(e, 1).u.l;
    jj_list_push(e, al, argsv);
  }
  jj_buf b = jj_tmpbuf(e, JJ_MAX_OUTPUT);
  size_t ai = 0;
  const char *p = fmt.u.s->s;
  size_t n = fmt.u.s->len;
  bool ok = true;
  for (size_t i = 0; i < n; i++) {
    if (p[i] != '%') {
      ok = ok && jj_buf_add(&b, p + i, 1);
      continue;
    }
    /* %[flags][width][.precision]type */
    char spec[32] = "%";
    size_t sl = 1;
    i++;
    while (i < n && strchr("-+ 0#", p[i]) && sl < 8) spec[sl++] = p[i++];
    while (i < n && isdigit((unsigned char)p[i]) && sl < 16) spec[sl++] = p[i++];
    if (i < n && p[i] == '.') {
      spec[sl++] = p[i++];
      while (i < n && isdigit((unsigned char)p[i]) && sl < 24) spec[sl++] = p[i++];
    }
    if (i >= n) jj_fail(e, "incomplete format");
    char c = p[i];
    if (c == '%') {
      ok = ok && jj_buf_add(&b, "%", 1);
      continue;
    }
    if (ai >= al->n) jj_fail(e, "not enough arguments for format string");
    jv x = al->v[ai++];
    char tmp[512];
    if (c == 's' || c == 'r') {
      jj_buf sb = jj_tmpbuf(e, JJ_MAX_OUTPUT);
      if (c == 's')
        jj_to_str(e, &sb, x);
      else
        jj_repr(e, &sb, x);
      if (sl == 1) {
        ok = ok && jj_buf_add(&b, sb.p ? sb.p : "", sb.len);
      } else {
        spec[sl++] = 's';
        spec[sl] = 0;
        int w = snprintf(tmp, sizeof tmp, spec, sb.p ? sb.p : "");
        if (w < 0 || (size_t)w >= sizeof tmp) jj_fail(e, "format result too long");
        ok = ok && jj_buf_add(&b, tmp, (size_t)w);
      }
    } else if (strchr("diouxXeEfFgG", c)) {
      if (!isnum(x))
        jj_fail(e, "%%%c format: a real number is required, not %s", c, jj_type_name(x));
      int w;
      if (strchr("diouxX", c)) {
        if (c == 'i' || c == 'u') c = 'd';
        spec[sl++] = 'l';
        spec[sl++] = 'l';
        spec[sl++] = c;
        spec[sl] = 0;
        long long v = x.t == JV_FLOAT ? (long long)x.u.f : (long long)inum(x);
        w = snprintf(tmp, sizeof tmp, spec, v);
      } else {
        spec[sl++] = c;
        spec[sl] = 0;
        w = snprintf(tmp, sizeof tmp, spec, fnum(x));
      }
      if (w < 0 || (size_t)w >= sizeof tmp) jj_fail(e, "format result too long");
      ok = ok && jj_buf_add(&b, tmp, (size_t)w);
    } else {
      jj_fail(e, "unsupported format character '%c' (0x%x) at index %zu", c,
              (unsigned)(unsigned char)c, i);
    }
  }
  if (!ok) jj_fail(e, "string too long");
  if (ai < al->n) jj_fail(e, "not all arguments converted during string formatting");
  return jj_str_new(e, b.p ? b.p : "", b.len);
}

static jv indent_filter(jj_env *e, jv s, jv width, bool first, bool blank) {
  jv ind;
  if (width.t == JV_STR)
    ind = width;
  else
    ind = repeat_seq(e, vstr(e, " "), want_int(e, width, NULL));
  jv text = binop(e, OP_ADD, jj_stringify(e, s), vstr(e, "\n"));
  jj_list *lines = str_splitlines(e, text).u.l;
  jj_buf b = jj_tmpbuf(e, JJ_MAX_OUTPUT);
  bool ok = true;
  if (blank) {
    for (size_t i = 0; i < lines->n; i++) {
      if (i) ok = ok && jj_buf_add(&b, "\n", 1) && jj_buf_add(&b, ind.u.s->s, ind.u.s->len);
      ok = ok && jj_buf_add(&b, lines->v[i].u.s->s, lines->v[i].u.s->len);
    }
  } else {
    if (lines->n) ok = ok && jj_buf_add(&b, lines->v[0].u.s->s, lines->v[0].u.s->len);
    if (lines->n > 1) {
      ok = ok && jj_buf_add(&b, "\n", 1);
      for (size_t i = 1; i < lines->n; i++) {
        if (i > 1) ok = ok && jj_buf_add(&b, "\n", 1);
        if (lines->v[i].u.s->len) ok = ok && jj_buf_add(&b, ind.u.s->s, ind.u.s->len);
        ok = ok && jj_buf_add(&b, lines->v[i].u.s->s, lines->v[i].u.s->len);
      }
    }
  }
  if (!ok) {
    jj_fail(e, "string too long");
  }
  jv r = jj_str_new(e, b.p ? b.p : "", b.len);
  if (first) r = binop(e, OP_ADD, ind, r);
  return r;
}

static bool kw_bool(args *a, size_t i, const char *name, bool def) {
  jv v = arg_get(a, i, name, vbool(def));
  return jj_truthy(v);
}

static jv tojson_filter(jj_env *e, jv v, args *a) {
  /* Hugging Face's tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False) */
  jv ea = arg_get(a, 0, "ensure_ascii", vbool(false));
  jv ind = arg_get(a, 1, "indent", vnone());
  jv seps = arg_get(a, 2, "separators", vnone());
  jv sk = arg_get(a, 3, "sort_keys", vbool(false));
  jj_json_opts o = {0};
  o.ensure_ascii = jj_truthy(ea);
  o.sort_keys = jj_truthy(sk);
  if (ind.t == JV_INT || ind.t == JV_BOOL) {
    int64_t w = inum(ind);
    if (w > 1000) w = 1000;
    char *s = jj_alloc(e, (size_t)(w > 0 ? w : 0) + 1);
    for (int64_t i = 0; i < w; i++) s[i] = ' ';
    s[w > 0 ? w : 0] = 0;
    o.indent = s;
  } else if (ind.t == JV_STR) {
    o.indent = ind.u.s->s;
  } else if (ind.t != JV_NONE && ind.t != JV_UNDEF) {
    jj_fail(e, "indent must be an int or a string");
  }
  o.item_sep = o.indent ? "," : ", ";
  o.key_sep = ": ";
  if (seps.t == JV_LIST) {
    if (seps.u.l->n != 2 || seps.u.l->v[0].t != JV_STR || seps.u.l->v[1].t != JV_STR)
      jj_fail(e, "separators must be a pair of strings");
    o.item_sep = seps.u.l->v[0].u.s->s;
    o.key_sep = seps.u.l->v[1].u.s->s;
  }
  jj_buf b = jj_tmpbuf(e, JJ_MAX_OUTPUT);
  jj_tojson(e, &b, v, &o);
  /* transformers' tojson returns json.dumps' str (no Markup) */
  return jj_str_new(e, b.p ? b.p : "", b.len);
}

/* select/reject/selectattr/rejectattr/map helpers: the test or filter named by args from index k */
static args shift_args(jj_env *e, args *a, size_t k) {
  args r = *a;
  if (k >= a->npos) {
    r.pos = NULL;
    r.npos = 0;
  } else {
    r.pos = a->pos + k;
    r.npos = a->npos - k;
  }
  (void)e;
  return r;
}

static jv select_filter(jj_env *e, frame *f, jv v, args *a, bool attr, bool keep) {
  jj_list *l = to_list(e, v);
  jv out = jj_list_new(e, l->n);
  jv attrname = attr ? arg_get(a, 0, NULL, (jv){.t = JV_UNDEF}) : (jv){.t = JV_UNDEF};
  size_t k = attr ? 1 : 0;
  jv testname = arg_get(a, k, NULL, (jv){.t = JV_UNDEF});
  args rest = shift_args(e, a, k + 1);
  rest.nkw = 0;
  if (testname.t != JV_UNDEF && testname.t != JV_STR) jj_fail(e, "test name must be a string");
  if (testname.t == JV_STR && !jj_test_known(testname.u.s->s))
    jj_fail(e, "No test named '%s'.", testname.u.s->s);
  for (size_t i = 0; i < l->n; i++) {
    step(e);
    jv x = attr ? attr_path(e, l->v[i], attrname) : l->v[i];
    bool r = testname.t == JV_STR ? apply_test(e, f, testname.u.s->s, x, &rest) : jj_truthy(x);
    if (r == keep) jj_list_push(e, out.u.l, l->v[i]);
  }
  return as_view(out, JL_GEN, "select_or_reject");
}

static jv min_max(jj_env *e, jv v, args *a, bool want_max) {
  jj_list *l = to_list(e, v);
  bool cs = kw_bool(a, 0, "case_sensitive", false);
  jv attr = arg_get(a, 1, "attribute", vnone());
  if (!l->n) return vundef_msg(e, "No aggregated item, sequence was empty.");
  jv best = l->v[0];
  jv bk = lower_key(e, attr.t != JV_NONE ? attr_path(e, best, attr) : best, cs);
  for (size_t i = 1; i < l->n; i++) {
    jv k = lower_key(e, attr.t != JV_NONE ? attr_path(e, l->v[i], attr) : l->v[i], cs);
    int c = jj_compare(e, k, bk, want_max ? ">" : "<");
    if (want_max ? c > 0 : c < 0) {
      best = l->v[i];
      bk = k;
    }
  }
  return best;
}

static jv apply_filter(jj_env *e, frame *f, const char *name, jv v, args *a) {
  jv undef = {.t = JV_UNDEF};
  step(e);
  if (!strcmp(name, "tojson")) return tojson_filter(e, v, a);
  if (!strcmp(name, "safe")) {
    jv s = jj_stringify(e, v);
    s.safe = true;
    return s;
  }
  if (!strcmp(name, "string")) {
    if (v.t == JV_UNDEF) return jj_str_new(e, "", 0);
    return jj_stringify(e, v);
  }
  if (!strcmp(name, "trim")) {
    jv s = jj_stringify(e, v);
    return str_strip(e, s, arg_get(a, 0, "chars", vnone()), 3);
  }
  if (!strcmp(name, "upper")) return str_case(e, jj_stringify(e, v), 0);
  if (!strcmp(name, "lower")) return str_case(e, jj_stringify(e, v), 1);
  if (!strcmp(name, "capitalize")) return str_case(e, jj_stringify(e, v), 2);
  if (!strcmp(name, "title")) {
    jv s = jj_stringify(e, v);
    /* words begin after runs of "-", whitespace, "(", "{", "[", "<" */
    const char *p = s.u.s->s;
    size_t n = s.u.s->len;
    jj_buf b = jj_tmpbuf(e, JJ_MAX_OUTPUT);
    bool start = true;
    for (size_t i = 0; i < n;) {
      size_t adv;
      uint32_t c = u8dec(p + i, n - i, &adv);
      bool sep = c == '-' || py_isspace(c) || c == '(' || c == '{' || c == '[' || c == '<';
      uint32_t o = sep ? c : start ? cp_upper(c) : cp_lower(c);
      char t[4];
      size_t k = u8enc(o, t);
      jj_buf_add(&b, t, k);
      start = sep;
      i += adv;
    }
    jv r = jj_str_new(e, b.p ? b.p : "", b.len);
    return r;
  }
  if (!strcmp(name, "length") || !strcmp(name, "count")) {
    switch (v.t) {
      case JV_STR:
        return vint((int64_t)jj_utf8_len(v.u.s->s, v.u.s->len));
      case JV_LIST:
        if (v.u.l->view == JL_GEN || v.u.l->view == JL_REVITER)
          jj_fail(e, "object of type '%s' has no len()", jj_type_name(v));
        return vint((int64_t)v.u.l->n);
      case JV_DICT:
        return vint((int64_t)v.u.d->n);
      case JV_UNDEF:
        return vint(0);
      default:
        jj_fail(e, "object of type '%s' has no len()", jj_type_name(v));
    }
  }
  if (!strcmp(name, "first")) {
    jj_list *l = to_list(e, v);
    return l->n ? l->v[0] : vundef_msg(e, "No first item, sequence was empty.");
  }
  if (!strcmp(name, "last")) {
    if (is_view(v, JL_GEN) || is_view(v, JL_REVITER))
      jj_fail(e, "'%s' object is not reversible", jj_type_name(v));
    jj_list *l = to_list(e, v);
    return l->n ? l->v[l->n - 1] : vundef_msg(e, "No last item, sequence was empty.");
  }
  if (!strcmp(name, "join")) {
    jv sep = arg_get(a, 0, "d", vstr(e, ""));
    jv attr = arg_get(a, 1, "attribute", vnone());
    jj_list *l = to_list(e, v);
    if (attr.t != JV_NONE) {
      jj_list *m = jj_list_new(e, l->n).u.l;
      for (size_t i = 0; i < l->n; i++) jj_list_push(e, m, attr_path(e, l->v[i], attr));
      l = m;
    }
    return join_items(e, jj_stringify(e, sep), l, false);
  }
  if (!strcmp(name, "default") || !strcmp(name, "d")) {
    jv def = arg_get(a, 0, "default_value", vstr(e, ""));
    bool boolean = kw_bool(a, 1, "boolean", false);
    if (v.t == JV_UNDEF || (boolean && !jj_truthy(v))) return def;
    return v;
  }
  if (!strcmp(name, "replace")) {
    jv s = jj_stringify(e, v);
    jv c = arg_get(a, 2, "count", vnone());
    return str_replace(e, s, jj_stringify(e, arg_get(a, 0, "old", undef)),
                       jj_stringify(e, arg_get(a, 1, "new", undef)),
                       c.t == JV_NONE ? -1 : want_int(e, c, NULL));
  }
  if (!strcmp(name, "items")) {
    if (v.t == JV_UNDEF) return as_view(jj_list_new(e, 0), JL_GEN, "do_items");
    if (v.t != JV_DICT) jj_fail(e, "Can only get item pairs from a mapping.");
    jv l = jj_list_new(e, v.u.d->n);
    for (size_t i = 0; i < v.u.d->n; i++)
      jj_list_push(e, l.u.l, tuple2(e, v.u.d->k[i], v.u.d->v[i]));
    return as_view(l, JL_GEN, "do_items");
  }
  if (!strcmp(name, "list")) {
    jj_list *l = to_list(e, v);
    jv r = jj_list_new(e, l->n);
    for (size_t i = 0; i < l->n; i++) jj_list_push(e, r.u.l, l->v[i]);
    return r;
  }
  if (!strcmp(name, "map")) {
    jj_list *l = to_list(e, v);
    jv r = jj_list_new(e, l->n);
    jv attr = arg_get(a, SIZE_MAX, "attribute", undef);
    if (attr.t != JV_UNDEF) {
      jv def = arg_get(a, SIZE_MAX, "default", undef);
      for (size_t i = 0; i < l->n; i++) {
        jv x = attr_path(e, l->v[i], attr);
        if (x.t == JV_UNDEF && def.t != JV_UNDEF) x = def;
        jj_list_push(e, r.u.l, x);
      }
      return as_view(r, JL_GEN, "sync_do_map");
    }
    jv fname = arg_get(a, 0, NULL, undef);
    if (fname.t != JV_STR) jj_fail(e, "map requires a filter argument");
    if (!jj_filter_known(fname.u.s->s)) jj_fail(e, "No filter named '%s'.", fname.u.s->s);
    args rest = shift_args(e, a, 1);
    for (size_t i = 0; i < l->n; i++)
      jj_list_push(e, r.u.l, apply_filter(e, f, fname.u.s->s, l->v[i], &rest));
    return as_view(r, JL_GEN, "sync_do_map");
  }
  if (!strcmp(name, "select")) return select_filter(e, f, v, a, false, true);
  if (!strcmp(name, "reject")) return select_filter(e, f, v, a, false, false);
  if (!strcmp(name, "selectattr")) return select_filter(e, f, v, a, true, true);
  if (!strcmp(name, "rejectattr")) return select_filter(e, f, v, a, true, false);
  if (!strcmp(name, "unique")) {
    bool cs = kw_bool(a, 0, "case_sensitive", false);
    jv attr = arg_get(a, 1, "attribute", vnone());
    jj_list *l = to_list(e, v);
    jv r = jj_list_new(e, l->n);
    jv seen = jj_list_new(e, l->n);
    for (size_t i = 0; i < l->n; i++) {
      step(e);
      jv k = lower_key(e, attr.t != JV_NONE ? attr_path(e, l->v[i], attr) : l->v[i], cs);
      bool dup = false;
      for (size_t j = 0; j < seen.u.l->n && !dup; j++) dup = jj_equal(seen.u.l->v[j], k);
      if (!dup) {
        jj_list_push(e, seen.u.l, k);
        jj_list_push(e, r.u.l, l->v[i]);
      }
    }
    return as_view(r, JL_GEN, "do_unique");
  }
  if (!strcmp(name, "sort")) {
    bool rev = kw_bool(a, 0, "reverse", false);
    bool cs = kw_bool(a, 1, "case_sensitive", false);
    jv attr = arg_get(a, 2, "attribute", vnone());
    jj_list *l = to_list(e, v);
    jv *keys = jj_alloc(e, (l->n + 1) * sizeof(jv)), *vals = jj_alloc(e, (l->n + 1) * sizeof(jv));
    for (size_t i = 0; i < l->n; i++) {
      jv k = l->v[i];
      if (attr.t != JV_NONE) {
        if (attr.t == JV_STR && strchr(attr.u.s->s, ',')) {
          jj_list *parts = str_split(e, attr, vstr(e, ","), -1).u.l;
          jv kt = jj_list_new(e, parts->n);
          for (size_t q = 0; q < parts->n; q++)
            jj_list_push(e, kt.u.l,
                         lower_key(e, attr_path(e, k, str_strip(e, parts->v[q], vnone(), 3)), cs));
          k = kt;
        } else {
          k = attr_path(e, k, attr);
        }
      }
      keys[i] = lower_key(e, k, cs);
      vals[i] = l->v[i];
    }
    sort_values(e, keys, vals, l->n, rev, true); /* keys as jinja2's [key] lists */
    jv r = jj_list_new(e, l->n);
    for (size_t i = 0; i < l->n; i++) jj_list_push(e, r.u.l, vals[i]);
    return r;
  }
  if (!strcmp(name, "dictsort")) {
    if (v.t == JV_UNDEF) fail_undef(e, v);
    if (v.t != JV_DICT) jj_fail(e, "'%s' object has no attribute 'items'", jj_type_name(v));
    bool cs = kw_bool(a, 0, "case_sensitive", false);
    jv by = arg_get(a, 1, "by", vstr(e, "key"));
    bool rev = kw_bool(a, 2, "reverse", false);
    bool byval = by.t == JV_STR && !strcmp(by.u.s->s, "value");
    size_t n = v.u.d->n;
    jv *keys = jj_alloc(e, (n + 1) * sizeof(jv)), *vals = jj_alloc(e, (n + 1) * sizeof(jv));
    for (size_t i = 0; i < n; i++) {
      keys[i] = lower_key(e, byval ? v.u.d->v[i] : v.u.d->k[i], cs);
      vals[i] = tuple2(e, v.u.d->k[i], v.u.d->v[i]);
    }
    sort_values(e, keys, vals, n, rev, false);
    jv r = jj_list_new(e, n);
    for (size_t i = 0; i < n; i++) jj_list_push(e, r.u.l, vals[i]);
    return r;
  }
  if (!strcmp(name, "reverse")) {
    if (v.t == JV_STR) {
      jj_list *c = to_list(e, v);
      jj_buf b = jj_tmpbuf(e, JJ_MAX_OUTPUT);
      for (size_t i = c->n; i-- > 0;) jj_buf_add(&b, c->v[i].u.s->s, c->v[i].u.s->len);
      jv r = jj_str_new(e, b.p ? b.p : "", b.len);
      return r;
    }
    jj_list *l = to_list(e, v);
    jv r = jj_list_new(e, l->n);
    for (size_t i = l->n; i-- > 0;) jj_list_push(e, r.u.l, l->v[i]);
    /* reversed() of a sequence is an iterator; a generator becomes a list */
    return is_view(v, JL_GEN) ? r : as_view(r, JL_REVITER, NULL);
  }
  if (!strcmp(name, "int")) {
    jv def = arg_get(a, 0, "default", vint(0));
    if (v.t == JV_UNDEF) fail_undef(e, v); /* int(Undefined) raises */
    if (v.t == JV_INT) return v;
    if (v.t == JV_BOOL) return vint(v.u.b);
    if (v.t == JV_FLOAT) return isfinite(v.u.f) ? vint((int64_t)v.u.f) : def;
    if (v.t == JV_STR) {
      jv s = str_strip(e, v, vnone(), 3);
      int64_t base = want_int(e, arg_get(a, 1, "base", vint(10)), NULL);
      if (base < 2 || base > 36) base = 10;
      char *end;
      errno = 0;
      long long x = strtoll(s.u.s->s, &end, (int)base);
      if (s.u.s->len && !*end && !errno) return vint(x);
      double d = strtod(s.u.s->s, &end);
      if (s.u.s->len && !*end && isfinite(d)) return vint((int64_t)d);
    }
    return def;
  }
  if (!strcmp(name, "float")) {
    jv def = arg_get(a, 0, "default", vfloat(0.0));
    if (v.t == JV_UNDEF) fail_undef(e, v);
    if (v.t == JV_FLOAT) return v;
    if (v.t == JV_INT || v.t == JV_BOOL) return vfloat(fnum(v));
    if (v.t == JV_STR) {
      jv s = str_strip(e, v, vnone(), 3);
      char *end;
      double d = strtod(s.u.s->s, &end);
      if (s.u.s->len && !*end) return vfloat(d);
    }
    return def;
  }
  if (!strcmp(name, "abs")) {
    if (v.t == JV_FLOAT) return vfloat(fabs(v.u.f));
    if (v.t == JV_INT || v.t == JV_BOOL) {
      int64_t i = inum(v);
      if (i == INT64_MIN) jj_fail(e, "integer overflow");
      return vint(i < 0 ? -i : i);
    }
    jj_fail(e, "bad operand type for abs(): '%s'", jj_type_name(v));
  }
  if (!strcmp(name, "round")) {
    int64_t prec = want_int(e, arg_get(a, 0, "precision", vint(0)), NULL);
    jv method = arg_get(a, 1, "method", vstr(e, "common"));
    if (v.t == JV_UNDEF) fail_undef(e, v);
    if (!isnum(v)) jj_fail(e, "type %s doesn't define __round__ method", jj_type_name(v));
    double x = fnum(v), sc = pow(10.0, (double)prec);
    const char *mth = method.t == JV_STR ? method.u.s->s : "";
    if (!strcmp(mth, "ceil")) return vfloat(ceil(x * sc) / sc);
    if (!strcmp(mth, "floor")) return vfloat(floor(x * sc) / sc);
    if (strcmp(mth, "common")) jj_fail(e, "method must be common, ceil or floor");
    if (v.t != JV_FLOAT) return v.t == JV_BOOL ? vint(v.u.b) : v;
    if (prec >= 0 && prec <= 300 && isfinite(x)) {
      /* Python rounds the exact binary value, half to even: as printf */
      char buf[400];
      snprintf(buf, sizeof buf, "%.*f", (int)prec, x);
      return vfloat(strtod(buf, NULL));
    }
    double y = x * sc, r = nearbyint(y);
    return vfloat(r / sc);
  }
  if (!strcmp(name, "escape") || !strcmp(name, "e") || !strcmp(name, "forceescape")) {
    if (v.safe && name[0] != 'f') return v;
    return html_escape(e, v);
  }
  if (!strcmp(name, "indent")) {
    if (v.t != JV_STR) /* jinja2 appends "\n" to the value as it is */
      jj_fail(e, "unsupported operand type(s) for +=: '%s' and 'str'", jj_type_name(v));
    return indent_filter(e, v, arg_get(a, 0, "width", vint(4)), kw_bool(a, 1, "first", false),
                         kw_bool(a, 2, "blank", false));
  }
  if (!strcmp(name, "wordcount")) {
    jv s = jj_stringify(e, v);
    int64_t c = 0;
    bool in = false;
    for (size_t i = 0; i < s.u.s->len; i++) {
      unsigned char ch = (unsigned char)s.u.s->s[i];
      bool w = isalnum(ch) || ch == '_' || ch >= 0x80;
      if (w && !in) c++;
      in = w;
    }
    return vint(c);
  }
  if (!strcmp(name, "batch")) {
    int64_t cnt = want_int(e, arg_get(a, 0, "linecount", undef), NULL);
    jv fill = arg_get(a, 1, "fill_with", vnone());
    if (cnt <= 0) jj_fail(e, "batch size must be positive");
    jj_list *l = to_list(e, v);
    jv r = jj_list_new(e, 0);
    jv cur = jj_list_new(e, 0);
    for (size_t i = 0; i < l->n; i++) {
      if ((int64_t)cur.u.l->n == cnt) {
        jj_list_push(e, r.u.l, cur);
        cur = jj_list_new(e, 0);
      }
      jj_list_push(e, cur.u.l, l->v[i]);
    }
    if (cur.u.l->n) {
      if (fill.t != JV_NONE)
        while ((int64_t)cur.u.l->n < cnt) jj_list_push(e, cur.u.l, fill);
      jj_list_push(e, r.u.l, cur);
    }
    return as_view(r, JL_GEN, "do_batch");
  }
  if (!strcmp(name, "min")) return min_max(e, v, a, false);
  if (!strcmp(name, "max")) return min_max(e, v, a, true);
  if (!strcmp(name, "sum")) {
    jv attr = arg_get(a, 0, "attribute", vnone());
    jv acc = arg_get(a, 1, "start", vint(0));
    jj_list *l = to_list(e, v);
    for (size_t i = 0; i < l->n; i++)
      acc = binop(e, OP_ADD, acc, attr.t != JV_NONE ? attr_path(e, l->v[i], attr) : l->v[i]);
    return acc;
  }
  if (!strcmp(name, "format")) {
    jv s = jj_stringify(e, v);
    if (a->nkw) return str_format(e, s, a);
    jv t = jj_list_new(e, a->npos);
    t.u.l->tuple = true;
    for (size_t i = 0; i < a->npos; i++) jj_list_push(e, t.u.l, a->pos[i]);
    return py_percent_format(e, s, t);
  }
  if (!strcmp(name, "attr")) {
    jv nm = arg_get(a, 0, "name", undef);
    if (nm.t != JV_STR) jj_fail(e, "attribute name must be a string");
    if (v.t == JV_UNDEF) fail_undef(e, v);
    bool found;
    jv r = get_attribute(e, v, nm.u.s->s, &found);
    return found ? r : undef_attr(e, v, nm.u.s->s);
  }
  if (!strcmp(name, "center")) {
    args b2 = {0};
    jv w = arg_get(a, 0, "width", vint(80));
    b2.pos = &w;
    b2.npos = 1;
    jj_func fn = {.name = "center", .kind = F_STR, .self = jj_stringify(e, v)};
    return call_method(e, &fn, &b2);
  }
  if (!strcmp(name, "pprint")) return jj_stringify(e, v);
  if (!strcmp(name, "striptags")) {
    jv s = jj_stringify(e, v);
    jj_buf b = jj_tmpbuf(e, JJ_MAX_OUTPUT);
    bool intag = false;
    for (size_t i = 0; i < s.u.s->len; i++) {
      char c = s.u.s->s[i];
      if (c == '<')
        intag = true;
      else if (c == '>' && intag)
        intag = false;
      else if (!intag)
        jj_buf_add(&b, &c, 1);
    }
    jv r = jj_str_new(e, b.p ? b.p : "", b.len);
    jv parts = str_split(e, r, vnone(), -1);
    return join_items(e, vstr(e, " "), parts.u.l, false);
  }
  if (!strcmp(name, "groupby")) {
    jv attr = arg_get(a, 0, "attribute", undef);
    jj_list *l = to_list(e, v);
    jv *keys = jj_alloc(e, (l->n + 1) * sizeof(jv)), *vals = jj_alloc(e, (l->n + 1) * sizeof(jv));
    for (size_t i = 0; i < l->n; i++) {
      keys[i] = attr_path(e, l->v[i], attr);
      vals[i] = l->v[i];
    }
    sort_values(e, keys, vals, l->n, false, false);
    jv r = jj_list_new(e, 0);
    for (size_t i = 0; i < l->n;) {
      jv grp = jj_list_new(e, 0);
      size_t j = i;
      while (j < l->n && jj_equal(keys[j], keys[i])) jj_list_push(e, grp.u.l, vals[j++]);
      jj_list_push(e, r.u.l, tuple2(e, keys[i], grp));
      i = j;
    }
    return r;
  }
  if (!strcmp(name, "truncate")) {
    if (v.t != JV_STR) { /* jinja2 measures the value as it is */
      int64_t length = want_int(e, arg_get(a, 0, "length", vint(255)), NULL);
      int64_t lw = want_int(e, arg_get(a, 3, "leeway", vint(5)), NULL);
      size_t n;
      if (v.t == JV_UNDEF) return v; /* len(Undefined) is 0 */
      if (v.t == JV_LIST && v.u.l->view != JL_GEN && v.u.l->view != JL_REVITER)
        n = v.u.l->n;
      else if (v.t == JV_DICT)
        n = v.u.d->n;
      else
        jj_fail(e, "object of type '%s' has no len()", jj_type_name(v));
      if ((int64_t)n <= length + lw) return v;
      jj_fail(e, "'%s' object has no attribute 'rsplit'", jj_type_name(v));
    }
    jv s = v;
    int64_t len = want_int(e, arg_get(a, 0, "length", vint(255)), NULL);
    bool killwords = kw_bool(a, 1, "killwords", false);
    jv end = arg_get(a, 2, "end", vstr(e, "..."));
    int64_t leeway = want_int(e, arg_get(a, 3, "leeway", vint(5)), NULL);
    int64_t n = (int64_t)jj_utf8_len(s.u.s->s, s.u.s->len);
    if (n <= len + leeway) return s;
    int64_t keep = len - (int64_t)jj_utf8_len(end.u.s->s, end.u.s->len);
    if (keep < 0) keep = 0;
    jv head = jj_str_new(e, s.u.s->s, jj_utf8_off(s.u.s->s, s.u.s->len, (size_t)keep));
    if (!killwords) {
      const char *sp = NULL;
      for (size_t i = head.u.s->len; i-- > 0;)
        if (head.u.s->s[i] == ' ') {
          sp = head.u.s->s + i;
          break;
        }
      if (sp) head = jj_str_new(e, head.u.s->s, (size_t)(sp - head.u.s->s));
    }
    return binop(e, OP_ADD, head, jj_stringify(e, end));
  }
  jj_fail(e, "filter '%s' is not supported", name);
}

/* ---- tests
 * ----------------------------------------------------------------------------------------------------------
 */
static bool apply_test(jj_env *e, frame *f, const char *name, jv v, args *a) {
  jv undef = {.t = JV_UNDEF};
  jv x = arg_get(a, 0, NULL, undef);
  (void)f;
  if (!strcmp(name, "defined")) return v.t != JV_UNDEF;
  if (!strcmp(name, "undefined")) return v.t == JV_UNDEF;
  if (!strcmp(name, "none")) return v.t == JV_NONE;
  if (!strcmp(name, "string")) return v.t == JV_STR;
  if (!strcmp(name, "number")) return isnum(v);
  if (!strcmp(name, "integer")) return v.t == JV_INT;
  if (!strcmp(name, "float")) return v.t == JV_FLOAT;
  if (!strcmp(name, "boolean")) return v.t == JV_BOOL;
  if (!strcmp(name, "true")) return v.t == JV_BOOL && v.u.b;
  if (!strcmp(name, "false")) return v.t == JV_BOOL && !v.u.b;
  if (!strcmp(name, "mapping")) return v.t == JV_DICT;
  if (!strcmp(name, "iterable"))
    return v.t == JV_STR || v.t == JV_LIST || v.t == JV_DICT || v.t == JV_UNDEF;
  if (!strcmp(name, "sequence"))
    return v.t == JV_STR || v.t == JV_DICT ||
           (v.t == JV_LIST && (v.u.l->view == JL_LIST || v.u.l->view == JL_RANGE));
  if (!strcmp(name, "callable")) return v.t == JV_FUNC || v.t == JV_MACRO;
  if (!strcmp(name, "escaped")) return v.safe;
  if (!strcmp(name, "lower") || !strcmp(name, "upper")) { /* str(value).islower() */
    args none = {0};
    jj_func fn = {
        .name = name[0] == 'l' ? "islower" : "isupper", .kind = F_STR, .self = jj_stringify(e, v)};
    return jj_truthy(call_method(e, &fn, &none));
  }
  if (!strcmp(name, "odd") || !strcmp(name, "even")) { /* value % 2 == 1 (== 0) */
    jv m = binop(e, OP_MOD, v, vint(2));
    return jj_equal(m, vint(name[0] == 'o' ? 1 : 0));
  }
  if (!strcmp(name, "divisibleby")) {
    jv m = binop(e, OP_MOD, v, x);
    return jj_equal(m, vint(0));
  }
  if (!strcmp(name, "sameas")) {
    if (v.t != x.t) return false;
    switch (v.t) {
      case JV_NONE:
      case JV_UNDEF:
        return true;
      case JV_BOOL:
        return v.u.b == x.u.b;
      case JV_INT:
        return v.u.i == x.u.i && v.u.i >= -5 && v.u.i <= 256;
      case JV_STR:
        return v.u.s == x.u.s;
      case JV_LIST:
        return v.u.l == x.u.l;
      case JV_DICT:
      case JV_NS:
        return v.u.d == x.u.d;
      default:
        return jj_equal(v, x);
    }
  }
  if (!strcmp(name, "in")) return contains(e, x, v);
  if (!strcmp(name, "filter")) return v.t == JV_STR && jj_filter_known(v.u.s->s);
  if (!strcmp(name, "test")) return v.t == JV_STR && jj_test_known(v.u.s->s);
  if (!strcmp(name, "==") || !strcmp(name, "eq") || !strcmp(name, "equalto")) return jj_equal(v, x);
  if (!strcmp(name, "!=") || !strcmp(name, "ne")) return !jj_equal(v, x);
  if (!strcmp(name, ">") || !strcmp(name, "gt") || !strcmp(name, "greaterthan"))
    return jj_compare(e, v, x, ">") > 0;
  if (!strcmp(name, ">=") || !strcmp(name, "ge")) return jj_compare(e, v, x, ">=") >= 0;
  if (!strcmp(name, "<") || !strcmp(name, "lt") || !strcmp(name, "lessthan"))
    return jj_compare(e, v, x, "<") < 0;
  if (!strcmp(name, "<=") || !strcmp(name, "le")) return jj_compare(e, v, x, "<=") <= 0;
  jj_fail(e, "test '%s' is not supported", name);
}

/* ---- entry
 * ---------------------------------------------------------------------------------------------------------------
 */
tl_status jj_render(const jj_template *t, const char *vars_json, size_t vars_len, char **out,
                    size_t *out_len) {
  return jj_render_limits(t, vars_json, vars_len, NULL, out, out_len);
}

tl_status jj_render_limits(const jj_template *t, const char *vars_json, size_t vars_len,
                           const jj_limits *lim, char **out, size_t *out_len) {
  *out = NULL;
  if (out_len) *out_len = 0;
  jj_env *e = calloc(1, sizeof *e);
  if (!e) return tl_fail(TL_ERR_NOMEM, "out of memory");
  jj_arena_init(&e->arena, lim && lim->max_arena ? lim->max_arena : JJ_MAX_ARENA);
  e->out.limit = lim && lim->max_output ? lim->max_output : JJ_MAX_OUTPUT;
  e->max_steps = lim && lim->max_steps ? lim->max_steps : JJ_MAX_STEPS;
  e->blockval.t = JV_UNDEF;
  if (setjmp(e->err.jb)) {
    tl_status st = tl_fail(TL_ERR_INVALID_ARG, "%s", e->err.msg);
    free(e->out.p);
    jj_arena_free(&e->arena);
    free(e);
    return st;
  }
  frame *globals = frame_new(e, NULL);
  static const char *const gnames[] = {"range",           "namespace",    "dict",
                                       "raise_exception", "strftime_now", NULL};
  for (size_t i = 0; gnames[i]; i++)
    frame_set(e, globals, gnames[i], bound(e, gnames[i], F_GLOBAL, vnone()));
  frame *top = frame_new(e, globals);
  if (vars_json && vars_len) {
    jv vars = jj_from_json(e, vars_json, vars_len);
    if (vars.t != JV_DICT) jj_fail(e, "variables: the JSON is not an object");
    for (size_t i = 0; i < vars.u.d->n; i++)
      frame_set(e, top, vars.u.d->k[i].u.s->s, vars.u.d->v[i]);
  }
  e->top = top;
  exec_body(e, top, t->body, t->n);
  if (!jj_buf_add(&e->out, "", 0)) jj_fail(e, "output too long");
  *out = e->out.p;
  if (out_len) *out_len = e->out.len;
  jj_arena_free(&e->arena);
  free(e);
  return TL_OK;
}
