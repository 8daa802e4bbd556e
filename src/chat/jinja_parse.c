/* Jinja lexer and parser, following jinja2's lexer.py and parser.py: the
 * same whitespace rules (trim_blocks, lstrip_blocks, "-" and "+" markers,
 * one trailing newline of the source dropped), the same operator
 * precedence, and unknown filters and tests rejected when parsing, as
 * jinja2 does when it compiles. */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "chat/jinja.h"

enum { T_EOF, T_TEXT, T_VBEGIN, T_VEND, T_BBEGIN, T_BEND, T_NAME, T_STR, T_INT, T_FLOAT, T_OP };

typedef struct tok {
  uint8_t type;
  int op;
  int line, col;
  const char *s; /* T_NAME, T_TEXT, T_STR: NUL-terminated (arena) */
  size_t len;
  int64_t i;
  double f;
} tok;

typedef struct parser {
  jj_arena *arena;
  const char *src;
  size_t n;
  tok *toks;
  size_t ntok, cap, pos;
  int depth;
  jmp_buf jb;
  char msg[512];
} parser;

_Noreturn static void pfail_at(parser *p, int line, int col, const char *fmt, ...) TL_PRINTF(4, 5);
_Noreturn static void pfail_at(parser *p, int line, int col, const char *fmt, ...) {
  char m[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(m, sizeof m, fmt, ap);
  va_end(ap);
  snprintf(p->msg, sizeof p->msg, "template syntax error at line %d, column %d: %s", line, col, m);
  longjmp(p->jb, 1);
}

static void *palloc(parser *p, size_t n) {
  void *r = jj_arena_alloc(p->arena, n);
  if (!r) {
    snprintf(p->msg, sizeof p->msg, "template too large (out of memory)");
    longjmp(p->jb, 1);
  }
  memset(r, 0, n);
  return r;
}

static char *pstrdup(parser *p, const char *s, size_t n) {
  char *r = palloc(p, n + 1);
  memcpy(r, s, n);
  r[n] = 0;
  return r;
}

/* ---- lexer ---------------------------------------------------------------------- */
static void line_col(parser *p, size_t off, int *line, int *col) {
  int l = 1, c = 1;
  for (size_t i = 0; i < off && i < p->n; i++) {
    if (p->src[i] == '\n') {
      l++;
      c = 1;
    } else if (((unsigned char)p->src[i] & 0xc0) != 0x80) {
      c++;
    }
  }
  *line = l;
  *col = c;
}

static tok *push_tok(parser *p, int type, size_t off) {
  if (p->ntok == p->cap) {
    size_t cap = p->cap ? p->cap * 2 : 256;
    tok *nt = palloc(p, cap * sizeof(tok));
    if (p->ntok) memcpy(nt, p->toks, p->ntok * sizeof(tok));
    p->toks = nt;
    p->cap = cap;
  }
  tok *t = &p->toks[p->ntok++];
  memset(t, 0, sizeof *t);
  t->type = (uint8_t)type;
  line_col(p, off, &t->line, &t->col);
  return t;
}

static bool is_ws(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* template data with newlines normalized to \n */
static void push_text(parser *p, const char *s, size_t n, size_t off) {
  if (!n) return;
  tok *t = push_tok(p, T_TEXT, off);
  char *d = palloc(p, n + 1);
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '\r') {
      d[k++] = '\n';
      if (i + 1 < n && s[i + 1] == '\n') i++;
    } else {
      d[k++] = s[i];
    }
  }
  d[k] = 0;
  t->s = d;
  t->len = k;
}

/* Does src[i..] start "{%[-+]?\s*NAME\s*[-+]?%}"? Returns the end (after %})
 * and the two signs. */
static size_t match_tag_named(parser *p, size_t i, const char *name, char *lsign, char *rsign) {
  const char *s = p->src;
  size_t n = p->n, nl = strlen(name);
  if (i + 2 > n || s[i] != '{' || s[i + 1] != '%') return 0;
  i += 2;
  *lsign = 0;
  if (i < n && (s[i] == '-' || s[i] == '+')) *lsign = s[i++];
  while (i < n && is_ws(s[i])) i++;
  if (i + nl > n || memcmp(s + i, name, nl)) return 0;
  i += nl;
  if (i < n && (isalnum((unsigned char)s[i]) || s[i] == '_')) return 0;
  while (i < n && is_ws(s[i])) i++;
  *rsign = 0;
  if (i < n && (s[i] == '-' || s[i] == '+')) *rsign = s[i++];
  if (i + 2 > n || s[i] != '%' || s[i + 1] != '}') return 0;
  return i + 2;
}

static const struct {
  const char *s;
  int op;
} ops[] = {
    {"//", OP_FLOORDIV}, {"**", OP_POW},   {"==", OP_EQ},      {"!=", OP_NE},      {">=", OP_GE},
    {"<=", OP_LE},       {"+", OP_ADD},    {"-", OP_SUB},      {"*", OP_MUL},      {"/", OP_DIV},
    {"%", OP_MOD},       {"~", OP_TILDE},  {"[", OP_LBRACKET}, {"]", OP_RBRACKET}, {"(", OP_LPAREN},
    {")", OP_RPAREN},    {"{", OP_LBRACE}, {"}", OP_RBRACE},   {">", OP_GT},       {"<", OP_LT},
    {"=", OP_ASSIGN},    {".", OP_DOT},    {":", OP_COLON},    {"|", OP_PIPE},     {",", OP_COMMA},
    {";", OP_SEMICOLON},
};

static void put_utf8(char *d, size_t *k, uint32_t c) {
  if (c < 0x80) {
    d[(*k)++] = (char)c;
  } else if (c < 0x800) {
    d[(*k)++] = (char)(0xc0 | (c >> 6));
    d[(*k)++] = (char)(0x80 | (c & 0x3f));
  } else if (c < 0x10000) {
    d[(*k)++] = (char)(0xe0 | (c >> 12));
    d[(*k)++] = (char)(0x80 | ((c >> 6) & 0x3f));
    d[(*k)++] = (char)(0x80 | (c & 0x3f));
  } else {
    d[(*k)++] = (char)(0xf0 | (c >> 18));
    d[(*k)++] = (char)(0x80 | ((c >> 12) & 0x3f));
    d[(*k)++] = (char)(0x80 | ((c >> 6) & 0x3f));
    d[(*k)++] = (char)(0x80 | (c & 0x3f));
  }
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* a string literal at src[i] (the quote); returns the index after it */
static size_t lex_string(parser *p, size_t i, tok *t) {
  const char *s = p->src;
  char q = s[i];
  size_t start = i;
  i++;
  size_t j = i;
  while (j < p->n && s[j] != q) {
    if (s[j] == '\\') j++;
    j++;
  }
  if (j >= p->n) {
    int l, c;
    line_col(p, start, &l, &c);
    pfail_at(p, l, c, "unexpected end of string");
  }
  char *d = palloc(p, (j - i) + 1);
  size_t k = 0;
  while (i < j) {
    char c = s[i];
    if (c == '\r') {
      d[k++] = '\n';
      if (i + 1 < j && s[i + 1] == '\n') i++;
      i++;
      continue;
    }
    if (c != '\\') {
      d[k++] = c;
      i++;
      continue;
    }
    char x = s[i + 1];
    i += 2;
    switch (x) {
      case 'n':
        d[k++] = '\n';
        break;
      case 't':
        d[k++] = '\t';
        break;
      case 'r':
        d[k++] = '\r';
        break;
      case 'b':
        d[k++] = '\b';
        break;
      case 'f':
        d[k++] = '\f';
        break;
      case 'v':
        d[k++] = '\v';
        break;
      case 'a':
        d[k++] = '\a';
        break;
      case '\\':
        d[k++] = '\\';
        break;
      case '\'':
        d[k++] = '\'';
        break;
      case '"':
        d[k++] = '"';
        break;
      case '\n':
        break;
      case 'x':
      case 'u':
      case 'U': {
        int nd = x == 'x' ? 2 : x == 'u' ? 4 : 8;
        uint32_t v = 0;
        int got = 0;
        while (got < nd && i < j && hexval(s[i]) >= 0) {
          v = v * 16 + (uint32_t)hexval(s[i]);
          i++;
          got++;
        }
        if (got != nd || v > 0x10ffff) {
          int l, cc;
          line_col(p, start, &l, &cc);
          pfail_at(p, l, cc, "bad escape in string");
        }
        if (v >= 0xd800 && v < 0xe000) v = 0xfffd;
        /* the escape is at least as long as its UTF-8 */
        put_utf8(d, &k, v);
        break;
      }
      default:
        if (x >= '0' && x <= '7') {
          uint32_t v = (uint32_t)(x - '0');
          for (int m = 0; m < 2 && i < j && s[i] >= '0' && s[i] <= '7'; m++)
            v = v * 8 + (uint32_t)(s[i++] - '0');
          put_utf8(d, &k, v);
        } else {
          d[k++] = '\\';
          d[k++] = x;
        }
    }
  }
  d[k] = 0;
  t->type = T_STR;
  t->s = d;
  t->len = k;
  return j + 1;
}

/* the tokens inside {{ }} or {% %}; returns the index after the closing tag */
static size_t lex_tag(parser *p, size_t i, bool block, bool *line_starting) {
  const char *s = p->src;
  size_t n = p->n;
  int balance = 0;
  for (;;) {
    while (i < n && is_ws(s[i])) i++;
    if (i >= n) {
      int l, c;
      line_col(p, n, &l, &c);
      pfail_at(p, l, c,
               block ? "unexpected end of template, expected '%%}'"
                     : "unexpected end of template, expected '}}'");
    }
    if (balance == 0) {
      char e0 = block ? '%' : '}';
      if ((s[i] == '-' || (s[i] == '+' && block)) && i + 2 < n && s[i + 1] == e0 &&
          s[i + 2] == '}') {
        size_t st = i;
        i += 3;
        if (s[st] == '-')
          while (i < n && is_ws(s[i])) i++;
        push_tok(p, block ? T_BEND : T_VEND, st);
        *line_starting = i > 0 && s[i - 1] == '\n';
        return i;
      }
      if (s[i] == e0 && i + 1 < n && s[i + 1] == '}') {
        size_t st = i;
        i += 2;
        if (block && i < n && s[i] == '\n') i++;
        push_tok(p, block ? T_BEND : T_VEND, st);
        *line_starting = s[i - 1] == '\n';
        return i;
      }
    }
    char c = s[i];
    if (c == '\'' || c == '"') {
      tok *t = push_tok(p, T_STR, i);
      i = lex_string(p, i, t);
      continue;
    }
    if (isalpha((unsigned char)c) || c == '_') {
      size_t st = i;
      while (i < n && (isalnum((unsigned char)s[i]) || s[i] == '_')) i++;
      tok *t = push_tok(p, T_NAME, st);
      t->s = pstrdup(p, s + st, i - st);
      t->len = i - st;
      continue;
    }
    if (isdigit((unsigned char)c)) {
      size_t st = i;
      while (i < n && (isdigit((unsigned char)s[i]) || s[i] == '_')) i++;
      bool isf = false;
      if (i + 1 < n && s[i] == '.' && isdigit((unsigned char)s[i + 1])) {
        isf = true;
        i++;
        while (i < n && (isdigit((unsigned char)s[i]) || s[i] == '_')) i++;
      }
      if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        size_t k = i + 1;
        if (k < n && (s[k] == '+' || s[k] == '-')) k++;
        if (k < n && isdigit((unsigned char)s[k])) {
          isf = true;
          i = k;
          while (i < n && isdigit((unsigned char)s[i])) i++;
        }
      }
      char tmp[128];
      size_t k = 0;
      for (size_t m = st; m < i && k < sizeof tmp - 1; m++)
        if (s[m] != '_') tmp[k++] = s[m];
      tmp[k] = 0;
      tok *t = push_tok(p, isf ? T_FLOAT : T_INT, st);
      if (isf) {
        t->f = strtod(tmp, NULL);
      } else {
        errno = 0;
        t->i = strtoll(tmp, NULL, 10);
        if (errno) pfail_at(p, t->line, t->col, "integer literal too large");
      }
      continue;
    }
    size_t k;
    for (k = 0; k < sizeof ops / sizeof ops[0]; k++) {
      size_t l = strlen(ops[k].s);
      if (i + l <= n && !memcmp(s + i, ops[k].s, l)) break;
    }
    if (k == sizeof ops / sizeof ops[0]) {
      int l, cc;
      line_col(p, i, &l, &cc);
      pfail_at(p, l, cc, "unexpected char '%c'", c);
    }
    tok *t = push_tok(p, T_OP, i);
    t->op = ops[k].op;
    if (t->op == OP_LPAREN || t->op == OP_LBRACKET || t->op == OP_LBRACE) balance++;
    if (t->op == OP_RPAREN || t->op == OP_RBRACKET || t->op == OP_RBRACE) {
      if (balance == 0) pfail_at(p, t->line, t->col, "unexpected '%s'", ops[k].s);
      balance--;
    }
    i += strlen(ops[k].s);
  }
}

static void lex(parser *p) {
  const char *s = p->src;
  size_t n = p->n;
  size_t i = 0;
  bool line_starting = true;
  while (i < n) {
    /* the next tag start */
    size_t j = i;
    int kind = 0; /* 1 var, 2 block, 3 comment */
    for (; j + 1 < n; j++) {
      if (s[j] != '{') continue;
      if (s[j + 1] == '{')
        kind = 1;
      else if (s[j + 1] == '%')
        kind = 2;
      else if (s[j + 1] == '#')
        kind = 3;
      if (kind) break;
    }
    if (!kind) {
      push_text(p, s + i, n - i, i);
      break;
    }
    char sign = (j + 2 < n && (s[j + 2] == '-' || s[j + 2] == '+')) ? s[j + 2] : 0;
    char rawl, rawr;
    size_t raw_end = kind == 2 ? match_tag_named(p, j, "raw", &rawl, &rawr) : 0;
    if (raw_end && rawr == '+') raw_end = 0; /* jinja2's raw_begin takes "-%}" or "%}" only */
    /* text before the tag */
    size_t tl = j - i;
    if (sign == '-') {
      while (tl > 0 && is_ws(s[i + tl - 1])) tl--;
    } else if (sign != '+' && kind != 1) {
      size_t lp = tl;
      while (lp > 0 && s[i + lp - 1] != '\n') lp--;
      if (lp > 0 || line_starting) {
        bool allws = lp < tl;
        for (size_t m = lp; m < tl; m++)
          if (!is_ws(s[i + m])) allws = false;
        if (allws) tl = lp;
      }
    }
    push_text(p, s + i, tl, i);
    if (kind == 3) {
      size_t k = j + 2;
      while (k + 1 < n && !(s[k] == '#' && s[k + 1] == '}')) k++;
      if (k + 1 >= n) {
        int l, c;
        line_col(p, j, &l, &c);
        pfail_at(p, l, c, "missing end of comment tag");
      }
      bool minus = k > j + 2 && s[k - 1] == '-';
      bool plus = k > j + 2 && s[k - 1] == '+';
      i = k + 2;
      if (minus)
        while (i < n && is_ws(s[i])) i++;
      else if (!plus && i < n && s[i] == '\n')
        i++;
      line_starting = s[i - 1] == '\n';
      continue;
    }
    if (raw_end) {
      size_t k = raw_end;
      if (rawr == '-')
        while (k < n && is_ws(s[k])) k++;
      size_t body = k;
      char l2, r2;
      size_t end = 0, m;
      for (m = body; m + 1 < n; m++)
        if (s[m] == '{' && s[m + 1] == '%' && (end = match_tag_named(p, m, "endraw", &l2, &r2)))
          break;
      if (!end) {
        int l, c;
        line_col(p, j, &l, &c);
        pfail_at(p, l, c, "missing end of raw directive");
      }
      size_t bl = m - body;
      if (l2 == '-') {
        while (bl > 0 && is_ws(s[body + bl - 1])) bl--;
      } else if (l2 != '+') {
        size_t lp = bl;
        while (lp > 0 && s[body + lp - 1] != '\n') lp--;
        if (lp > 0) {
          bool allws = lp < bl;
          for (size_t q = lp; q < bl; q++)
            if (!is_ws(s[body + q])) allws = false;
          if (allws) bl = lp;
        }
      }
      push_text(p, s + body, bl, body);
      i = end;
      if (r2 == '-')
        while (i < n && is_ws(s[i])) i++;
      else if (r2 != '+' && i < n && s[i] == '\n')
        i++;
      line_starting = s[i - 1] == '\n';
      continue;
    }
    push_tok(p, kind == 1 ? T_VBEGIN : T_BBEGIN, j);
    i = lex_tag(p, j + 2 + (sign ? 1 : 0), kind == 2, &line_starting);
  }
  push_tok(p, T_EOF, n);
}

/* ---- parser ------------------------------------------------------------------------ */
static tok *cur(parser *p) {
  return &p->toks[p->pos];
}
static tok *peek(parser *p, size_t k) {
  size_t i = p->pos + k;
  return &p->toks[i < p->ntok ? i : p->ntok - 1];
}
static tok *next(parser *p) {
  tok *t = &p->toks[p->pos];
  if (p->pos + 1 < p->ntok) p->pos++;
  return t;
}
static bool is_op(parser *p, int op) {
  return cur(p)->type == T_OP && cur(p)->op == op;
}
static bool is_name(parser *p, const char *name) {
  return name && cur(p)->type == T_NAME && !strcmp(cur(p)->s, name);
}

static const char *tok_desc(tok *t, char *buf, size_t cap) {
  switch (t->type) {
    case T_EOF:
      return "end of template";
    case T_TEXT:
      return "template data";
    case T_VBEGIN:
      return "'{{'";
    case T_VEND:
      return "'}}'";
    case T_BBEGIN:
      return "'{%'";
    case T_BEND:
      return "'%}'";
    case T_NAME:
      snprintf(buf, cap, "'%s'", t->s);
      return buf;
    case T_STR:
      return "string";
    case T_INT:
      return "integer";
    case T_FLOAT:
      return "float";
    default:
      for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++)
        if (ops[k].op == t->op) {
          snprintf(buf, cap, "'%s'", ops[k].s);
          return buf;
        }
      return "operator";
  }
}

_Noreturn static void unexpected(parser *p, const char *expected) {
  char b[128];
  tok *t = cur(p);
  pfail_at(p, t->line, t->col, "expected %s, got %s", expected, tok_desc(t, b, sizeof b));
}

static void expect_op(parser *p, int op, const char *what) {
  if (!is_op(p, op)) unexpected(p, what);
  next(p);
}
static const char *expect_name(parser *p) {
  if (cur(p)->type != T_NAME) unexpected(p, "a name");
  return next(p)->s;
}
static void expect_bend(parser *p) {
  if (cur(p)->type != T_BEND) unexpected(p, "end of statement block");
  next(p);
}

static jj_node *node(parser *p, int kind, tok *at) {
  jj_node *n = palloc(p, sizeof *n);
  n->kind = (uint8_t)kind;
  n->line = at->line;
  n->col = at->col;
  return n;
}

/* growable node lists */
typedef struct nlist {
  jj_node **v;
  size_t n, cap;
} nlist;
static void nl_push(parser *p, nlist *l, jj_node *x) {
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 4;
    jj_node **nv = palloc(p, cap * sizeof *nv);
    if (l->n) memcpy(nv, l->v, l->n * sizeof *nv);
    l->v = nv;
    l->cap = cap;
  }
  l->v[l->n++] = x;
}
typedef struct slist {
  const char **v;
  size_t n, cap;
} slist;
static void sl_push(parser *p, slist *l, const char *x) {
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 4;
    const char **nv = palloc(p, cap * sizeof *nv);
    if (l->n) memcpy(nv, l->v, l->n * sizeof *nv);
    l->v = nv;
    l->cap = cap;
  }
  l->v[l->n++] = x;
}

static jj_node *parse_expression(parser *p, bool with_condexpr);
static jj_node *parse_unary(parser *p, bool with_filter);
static jj_node *parse_primary(parser *p);
static jj_node *parse_postfix(parser *p, jj_node *n);
static jj_node *parse_filter_expr(parser *p, jj_node *n);

static void enter(parser *p) {
  if (++p->depth > JJ_MAX_NEST) {
    tok *t = cur(p);
    pfail_at(p, t->line, t->col, "nested too deeply");
  }
}
static void leave(parser *p) {
  p->depth--;
}

static bool is_tuple_end(parser *p, const char *extra) {
  tok *t = cur(p);
  if (t->type == T_VEND || t->type == T_BEND || t->type == T_EOF) return true;
  if (t->type == T_OP && t->op == OP_RPAREN) return true;
  if (extra && t->type == T_NAME && !strcmp(t->s, extra)) return true;
  return false;
}

static jj_node *parse_tuple(parser *p, bool simplified, bool with_condexpr, const char *extra,
                            bool explicit_parens) {
  tok *at = cur(p);
  nlist items = {0};
  bool is_tuple = false;
  for (;;) {
    if (items.n) expect_op(p, OP_COMMA, "','");
    if (is_tuple_end(p, extra)) break;
    jj_node *x = simplified ? parse_primary(p) : parse_expression(p, with_condexpr);
    nl_push(p, &items, x);
    if (is_op(p, OP_COMMA))
      is_tuple = true;
    else
      break;
  }
  if (!is_tuple) {
    if (items.n) return items.v[0];
    if (!explicit_parens) unexpected(p, "an expression");
  }
  jj_node *n = node(p, N_TUPLE, at);
  n->list = items.v;
  n->n = items.n;
  return n;
}

static void parse_call_args(parser *p, jj_node *n) {
  expect_op(p, OP_LPAREN, "'('");
  nlist args = {0}, kwvals = {0};
  slist kwnames = {0};
  bool first = true;
  while (!is_op(p, OP_RPAREN)) {
    if (!first) {
      expect_op(p, OP_COMMA, "','");
      if (is_op(p, OP_RPAREN)) break;
    }
    first = false;
    if (is_op(p, OP_MUL) || is_op(p, OP_POW)) {
      tok *t = cur(p);
      pfail_at(p, t->line, t->col, "*args and **kwargs in calls are not supported");
    }
    if (cur(p)->type == T_NAME && peek(p, 1)->type == T_OP && peek(p, 1)->op == OP_ASSIGN) {
      const char *k = next(p)->s;
      next(p);
      sl_push(p, &kwnames, k);
      nl_push(p, &kwvals, parse_expression(p, true));
    } else {
      if (kwnames.n) {
        tok *t = cur(p);
        pfail_at(p, t->line, t->col, "positional argument follows keyword argument");
      }
      nl_push(p, &args, parse_expression(p, true));
    }
  }
  next(p);
  n->list = args.v;
  n->n = args.n;
  n->list2 = kwvals.v;
  n->n2 = kwvals.n;
  n->names = kwnames.v;
  n->nnames = kwnames.n;
}

static jj_node *parse_filter(parser *p, jj_node *operand, bool start_inline) {
  while (is_op(p, OP_PIPE) || start_inline) {
    if (!start_inline) next(p);
    start_inline = false;
    tok *at = cur(p);
    const char *name = expect_name(p);
    while (is_op(p, OP_DOT)) {
      next(p);
      const char *part = expect_name(p);
      size_t a = strlen(name), b = strlen(part);
      char *nm = palloc(p, a + b + 2);
      memcpy(nm, name, a);
      nm[a] = '.';
      memcpy(nm + a + 1, part, b + 1);
      name = nm;
    }
    if (!jj_filter_known(name)) pfail_at(p, at->line, at->col, "No filter named '%s'.", name);
    jj_node *f = node(p, N_FILTER, at);
    f->name = name;
    f->a = operand;
    if (is_op(p, OP_LPAREN)) parse_call_args(p, f);
    operand = f;
  }
  return operand;
}

static jj_node *parse_test(parser *p, jj_node *operand) {
  tok *at = next(p); /* is */
  bool neg = false;
  if (is_name(p, "not")) {
    next(p);
    neg = true;
  }
  tok *nt = cur(p);
  const char *name;
  if (nt->type == T_NAME) {
    name = next(p)->s;
  } else {
    unexpected(p, "a test name");
  }
  while (is_op(p, OP_DOT)) {
    next(p);
    const char *part = expect_name(p);
    size_t a = strlen(name), b = strlen(part);
    char *nm = palloc(p, a + b + 2);
    memcpy(nm, name, a);
    nm[a] = '.';
    memcpy(nm + a + 1, part, b + 1);
    name = nm;
  }
  jj_node *t = node(p, N_TEST, at);
  t->name = name;
  t->a = operand;
  t->op = neg;
  tok *c = cur(p);
  if (is_op(p, OP_LPAREN)) {
    parse_call_args(p, t);
  } else if ((c->type == T_NAME || c->type == T_STR || c->type == T_INT || c->type == T_FLOAT ||
              (c->type == T_OP &&
               (c->op == OP_LPAREN || c->op == OP_LBRACKET || c->op == OP_LBRACE))) &&
             !(c->type == T_NAME &&
               (!strcmp(c->s, "else") || !strcmp(c->s, "or") || !strcmp(c->s, "and")))) {
    if (c->type == T_NAME && !strcmp(c->s, "is"))
      pfail_at(p, c->line, c->col, "You cannot chain multiple tests with is");
    jj_node *arg = parse_postfix(p, parse_primary(p));
    t->list = palloc(p, sizeof(jj_node *));
    t->list[0] = arg;
    t->n = 1;
  }
  if (!jj_test_known(name)) pfail_at(p, at->line, at->col, "No test named '%s'.", name);
  return t;
}

static jj_node *parse_primary(parser *p) {
  enter(p);
  tok *t = cur(p);
  jj_node *n;
  if (t->type == T_NAME) {
    next(p);
    const char *s = t->s;
    if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "false") || !strcmp(s, "False")) {
      n = node(p, N_CONST, t);
      n->val.t = JV_BOOL;
      n->val.u.b = s[0] == 't' || s[0] == 'T';
    } else if (!strcmp(s, "none") || !strcmp(s, "None")) {
      n = node(p, N_CONST, t);
      n->val.t = JV_NONE;
    } else {
      n = node(p, N_NAME, t);
      n->name = s;
    }
  } else if (t->type == T_STR) {
    /* adjacent strings concatenate */
    size_t total = 0, k = p->pos;
    while (p->toks[k].type == T_STR) total += p->toks[k++].len;
    char *d = palloc(p, total + 1);
    size_t off = 0;
    while (cur(p)->type == T_STR) {
      tok *s = next(p);
      memcpy(d + off, s->s, s->len);
      off += s->len;
    }
    jj_str *js = palloc(p, sizeof *js);
    js->s = d;
    js->len = total;
    n = node(p, N_CONST, t);
    n->val.t = JV_STR;
    n->val.u.s = js;
  } else if (t->type == T_INT || t->type == T_FLOAT) {
    next(p);
    n = node(p, N_CONST, t);
    if (t->type == T_INT) {
      n->val.t = JV_INT;
      n->val.u.i = t->i;
    } else {
      n->val.t = JV_FLOAT;
      n->val.u.f = t->f;
    }
  } else if (is_op(p, OP_LPAREN)) {
    next(p);
    n = parse_tuple(p, false, true, NULL, true);
    expect_op(p, OP_RPAREN, "')'");
  } else if (is_op(p, OP_LBRACKET)) {
    next(p);
    nlist items = {0};
    while (!is_op(p, OP_RBRACKET)) {
      if (items.n) expect_op(p, OP_COMMA, "','");
      if (is_op(p, OP_RBRACKET)) break;
      nl_push(p, &items, parse_expression(p, true));
    }
    next(p);
    n = node(p, N_LIST, t);
    n->list = items.v;
    n->n = items.n;
  } else if (is_op(p, OP_LBRACE)) {
    next(p);
    nlist keys = {0}, vals = {0};
    while (!is_op(p, OP_RBRACE)) {
      if (keys.n) expect_op(p, OP_COMMA, "','");
      if (is_op(p, OP_RBRACE)) break;
      nl_push(p, &keys, parse_expression(p, true));
      expect_op(p, OP_COLON, "':'");
      nl_push(p, &vals, parse_expression(p, true));
    }
    next(p);
    n = node(p, N_DICT, t);
    n->list = keys.v;
    n->n = keys.n;
    n->list2 = vals.v;
    n->n2 = vals.n;
  } else {
    unexpected(p, "an expression");
  }
  leave(p);
  return n;
}

static jj_node *parse_subscribed(parser *p) {
  tok *at = cur(p);
  jj_node *args[3] = {NULL, NULL, NULL};
  if (is_op(p, OP_COLON)) {
    next(p);
  } else {
    jj_node *x = parse_expression(p, true);
    if (!is_op(p, OP_COLON)) return x;
    next(p);
    args[0] = x;
  }
  if (!is_op(p, OP_COLON) && !is_op(p, OP_RBRACKET) && !is_op(p, OP_COMMA))
    args[1] = parse_expression(p, true);
  if (is_op(p, OP_COLON)) {
    next(p);
    if (!is_op(p, OP_RBRACKET) && !is_op(p, OP_COMMA)) args[2] = parse_expression(p, true);
  }
  jj_node *n = node(p, N_SLICE, at);
  n->list = palloc(p, 3 * sizeof(jj_node *));
  n->n = 3;
  memcpy(n->list, args, sizeof args);
  return n;
}

static jj_node *parse_postfix(parser *p, jj_node *n) {
  for (;;) {
    tok *t = cur(p);
    if (is_op(p, OP_DOT)) {
      next(p);
      tok *a = cur(p);
      if (a->type == T_NAME) {
        next(p);
        jj_node *g = node(p, N_GETATTR, t);
        g->a = n;
        g->name = a->s;
        n = g;
      } else if (a->type == T_INT) {
        next(p);
        jj_node *k = node(p, N_CONST, a);
        k->val.t = JV_INT;
        k->val.u.i = a->i;
        jj_node *g = node(p, N_GETITEM, t);
        g->a = n;
        g->b = k;
        n = g;
      } else {
        unexpected(p, "a name or number");
      }
    } else if (is_op(p, OP_LBRACKET)) {
      next(p);
      nlist idx = {0};
      while (!is_op(p, OP_RBRACKET)) {
        if (idx.n) expect_op(p, OP_COMMA, "','");
        if (is_op(p, OP_RBRACKET)) break;
        nl_push(p, &idx, parse_subscribed(p));
      }
      next(p);
      if (idx.n != 1) pfail_at(p, t->line, t->col, "expected one subscript");
      jj_node *s = idx.v[0];
      if (s->kind == N_SLICE) {
        s->a = n;
        n = s;
      } else {
        jj_node *g = node(p, N_GETITEM, t);
        g->a = n;
        g->b = s;
        n = g;
      }
    } else if (is_op(p, OP_LPAREN)) {
      jj_node *c = node(p, N_CALL, t);
      c->a = n;
      parse_call_args(p, c);
      n = c;
    } else {
      return n;
    }
  }
}

static jj_node *parse_filter_expr(parser *p, jj_node *n) {
  for (;;) {
    if (is_op(p, OP_PIPE)) {
      n = parse_filter(p, n, false);
    } else if (is_name(p, "is")) {
      n = parse_test(p, n);
    } else if (is_op(p, OP_LPAREN)) {
      jj_node *c = node(p, N_CALL, cur(p));
      c->a = n;
      parse_call_args(p, c);
      n = c;
    } else {
      return n;
    }
  }
}

static jj_node *parse_unary(parser *p, bool with_filter) {
  enter(p);
  tok *t = cur(p);
  jj_node *n;
  if (is_op(p, OP_SUB) || is_op(p, OP_ADD)) {
    next(p);
    n = node(p, t->op == OP_SUB ? N_NEG : N_POS, t);
    n->a = parse_unary(p, false);
  } else {
    n = parse_primary(p);
  }
  n = parse_postfix(p, n);
  if (with_filter) n = parse_filter_expr(p, n);
  leave(p);
  return n;
}

static jj_node *binop(parser *p, tok *at, int op, jj_node *a, jj_node *b) {
  jj_node *n = node(p, op == OP_TILDE ? N_CONCAT : N_BINOP, at);
  n->op = op;
  n->a = a;
  n->b = b;
  return n;
}

static jj_node *parse_pow(parser *p) {
  jj_node *l = parse_unary(p, true);
  while (is_op(p, OP_POW)) {
    tok *t = next(p);
    l = binop(p, t, OP_POW, l, parse_unary(p, true));
  }
  return l;
}

static jj_node *parse_math2(parser *p) {
  jj_node *l = parse_pow(p);
  while (is_op(p, OP_MUL) || is_op(p, OP_DIV) || is_op(p, OP_FLOORDIV) || is_op(p, OP_MOD)) {
    tok *t = next(p);
    l = binop(p, t, t->op, l, parse_pow(p));
  }
  return l;
}

static jj_node *parse_concat(parser *p) {
  jj_node *l = parse_math2(p);
  while (is_op(p, OP_TILDE)) {
    tok *t = next(p);
    l = binop(p, t, OP_TILDE, l, parse_math2(p));
  }
  return l;
}

static jj_node *parse_math1(parser *p) {
  jj_node *l = parse_concat(p);
  while (is_op(p, OP_ADD) || is_op(p, OP_SUB)) {
    tok *t = next(p);
    l = binop(p, t, t->op, l, parse_concat(p));
  }
  return l;
}

static jj_node *parse_compare(parser *p) {
  tok *at = cur(p);
  jj_node *expr = parse_math1(p);
  nlist operands = {0};
  int opsbuf[64];
  size_t nops = 0;
  for (;;) {
    tok *t = cur(p);
    int op = 0;
    if (t->type == T_OP && (t->op == OP_EQ || t->op == OP_NE || t->op == OP_LT || t->op == OP_LE ||
                            t->op == OP_GT || t->op == OP_GE)) {
      next(p);
      op = t->op;
    } else if (is_name(p, "in")) {
      next(p);
      op = OP_IN;
    } else if (is_name(p, "not") && peek(p, 1)->type == T_NAME && !strcmp(peek(p, 1)->s, "in")) {
      next(p);
      next(p);
      op = OP_NOTIN;
    } else {
      break;
    }
    if (nops == 64) pfail_at(p, t->line, t->col, "too many comparisons in a row");
    opsbuf[nops++] = op;
    nl_push(p, &operands, parse_math1(p));
  }
  if (!nops) return expr;
  jj_node *n = node(p, N_COMPARE, at);
  n->a = expr;
  n->list = operands.v;
  n->n = operands.n;
  n->ops = palloc(p, nops * sizeof(int));
  memcpy(n->ops, opsbuf, nops * sizeof(int));
  return n;
}

static jj_node *parse_not(parser *p) {
  if (is_name(p, "not")) {
    tok *t = next(p);
    enter(p);
    jj_node *n = node(p, N_NOT, t);
    n->a = parse_not(p);
    leave(p);
    return n;
  }
  return parse_compare(p);
}

static jj_node *parse_and(parser *p) {
  jj_node *l = parse_not(p);
  while (is_name(p, "and")) {
    tok *t = next(p);
    jj_node *n = node(p, N_AND, t);
    n->a = l;
    n->b = parse_not(p);
    l = n;
  }
  return l;
}

static jj_node *parse_or(parser *p) {
  jj_node *l = parse_and(p);
  while (is_name(p, "or")) {
    tok *t = next(p);
    jj_node *n = node(p, N_OR, t);
    n->a = l;
    n->b = parse_and(p);
    l = n;
  }
  return l;
}

static jj_node *parse_condexpr(parser *p) {
  jj_node *e1 = parse_or(p);
  while (is_name(p, "if")) {
    tok *t = next(p);
    jj_node *e2 = parse_or(p);
    jj_node *e3 = NULL;
    if (is_name(p, "else")) {
      next(p);
      e3 = parse_condexpr(p);
    }
    jj_node *n = node(p, N_COND, t);
    n->a = e2;
    n->b = e1;
    n->c = e3;
    e1 = n;
  }
  return e1;
}

static jj_node *parse_expression(parser *p, bool with_condexpr) {
  enter(p);
  jj_node *n = with_condexpr ? parse_condexpr(p) : parse_or(p);
  leave(p);
  return n;
}

/* ---- statements --------------------------------------------------------------------- */
static jj_node **parse_body(parser *p, const char *const *ends, size_t *n_out);

/* for targets: names, a, b or (a, b) */
static void parse_targets(parser *p, slist *names, const char *extra_end) {
  bool paren = false;
  if (is_op(p, OP_LPAREN)) {
    next(p);
    paren = true;
  }
  for (;;) {
    sl_push(p, names, expect_name(p));
    if (!is_op(p, OP_COMMA)) break;
    next(p);
    if (paren && is_op(p, OP_RPAREN)) break;
    if (!paren && (is_name(p, extra_end) || is_op(p, OP_ASSIGN))) break;
  }
  if (paren) expect_op(p, OP_RPAREN, "')'");
}

static void parse_params(parser *p, jj_node *n) {
  slist names = {0};
  nlist defs = {0};
  expect_op(p, OP_LPAREN, "'('");
  while (!is_op(p, OP_RPAREN)) {
    if (names.n) expect_op(p, OP_COMMA, "','");
    if (is_op(p, OP_RPAREN)) break;
    tok *t = cur(p);
    const char *nm = expect_name(p);
    jj_node *d = NULL;
    if (is_op(p, OP_ASSIGN)) {
      next(p);
      d = parse_expression(p, true);
    } else if (defs.n && defs.v[defs.n - 1]) {
      pfail_at(p, t->line, t->col, "non-default argument follows default argument");
    }
    sl_push(p, &names, nm);
    nl_push(p, &defs, d);
  }
  next(p);
  n->names = names.v;
  n->nnames = names.n;
  n->list2 = defs.v;
  n->n2 = defs.n;
}

static void end_tag(parser *p, const char *name) {
  /* parse_body stopped at this name */
  next(p);
  (void)name;
  /* "endmacro name" / "endblock name" are allowed */
  if (cur(p)->type == T_NAME && (!strcmp(name, "endmacro") || !strcmp(name, "endblock"))) next(p);
  expect_bend(p);
}

static jj_node *parse_statement(parser *p) {
  tok *t = cur(p);
  if (t->type != T_NAME) unexpected(p, "a statement name");
  const char *kw = t->s;
  enter(p);
  jj_node *n = NULL;
  if (!strcmp(kw, "if")) {
    next(p);
    n = node(p, S_IF, t);
    jj_node *ifn = n;
    for (;;) {
      ifn->a = parse_tuple(p, false, true, NULL, false);
      expect_bend(p);
      static const char *const ends[] = {"elif", "else", "endif", NULL};
      ifn->list = parse_body(p, ends, &ifn->n);
      if (is_name(p, "elif")) {
        tok *et = next(p);
        jj_node *e2 = node(p, S_IF, et);
        ifn->list2 = palloc(p, sizeof(jj_node *));
        ifn->list2[0] = e2;
        ifn->n2 = 1;
        ifn = e2;
        continue;
      }
      if (is_name(p, "else")) {
        next(p);
        expect_bend(p);
        static const char *const ends2[] = {"endif", NULL};
        ifn->list2 = parse_body(p, ends2, &ifn->n2);
      }
      end_tag(p, "endif");
      break;
    }
  } else if (!strcmp(kw, "for")) {
    next(p);
    n = node(p, S_FOR, t);
    slist names = {0};
    parse_targets(p, &names, "in");
    n->names = names.v;
    n->nnames = names.n;
    if (!is_name(p, "in")) unexpected(p, "'in'");
    next(p);
    n->a = parse_tuple(p, false, false, "recursive", false);
    if (is_name(p, "if")) {
      next(p);
      n->b = parse_expression(p, true);
    }
    if (is_name(p, "recursive")) {
      next(p);
      n->op = 1;
    }
    expect_bend(p);
    static const char *const ends[] = {"endfor", "else", NULL};
    n->list = parse_body(p, ends, &n->n);
    if (is_name(p, "else")) {
      next(p);
      expect_bend(p);
      static const char *const ends2[] = {"endfor", NULL};
      n->list2 = parse_body(p, ends2, &n->n2);
    }
    end_tag(p, "endfor");
  } else if (!strcmp(kw, "set")) {
    next(p);
    slist names = {0};
    const char *attr = NULL;
    tok *nt = cur(p);
    if (nt->type == T_NAME && peek(p, 1)->type == T_OP && peek(p, 1)->op == OP_DOT) {
      sl_push(p, &names, next(p)->s);
      next(p);
      attr = expect_name(p);
    } else {
      parse_targets(p, &names, NULL);
    }
    if (is_op(p, OP_ASSIGN)) {
      next(p);
      n = node(p, S_SET, t);
      n->a = parse_tuple(p, false, true, NULL, false);
      expect_bend(p);
    } else {
      if (attr || names.n != 1) unexpected(p, "'='");
      n = node(p, S_SETBLOCK, t);
      if (is_op(p, OP_PIPE)) {
        jj_node *bv = node(p, N_BLOCKVAL, cur(p));
        n->c = parse_filter(p, bv, false);
      }
      expect_bend(p);
      static const char *const ends[] = {"endset", NULL};
      n->list = parse_body(p, ends, &n->n);
      end_tag(p, "endset");
    }
    n->names = names.v;
    n->nnames = names.n;
    n->attr = attr;
  } else if (!strcmp(kw, "macro")) {
    next(p);
    n = node(p, S_MACRO, t);
    n->name = expect_name(p);
    parse_params(p, n);
    expect_bend(p);
    static const char *const ends[] = {"endmacro", NULL};
    n->list = parse_body(p, ends, &n->n);
    end_tag(p, "endmacro");
  } else if (!strcmp(kw, "call")) {
    next(p);
    n = node(p, S_CALLBLOCK, t);
    if (is_op(p, OP_LPAREN)) parse_params(p, n);
    n->a = parse_expression(p, true);
    if (n->a->kind != N_CALL) pfail_at(p, t->line, t->col, "expected call");
    expect_bend(p);
    static const char *const ends[] = {"endcall", NULL};
    n->list = parse_body(p, ends, &n->n);
    end_tag(p, "endcall");
  } else if (!strcmp(kw, "filter")) {
    next(p);
    n = node(p, S_FILTERBLOCK, t);
    jj_node *bv = node(p, N_BLOCKVAL, cur(p));
    n->c = parse_filter(p, bv, true);
    expect_bend(p);
    static const char *const ends[] = {"endfilter", NULL};
    n->list = parse_body(p, ends, &n->n);
    end_tag(p, "endfilter");
  } else if (!strcmp(kw, "break") || !strcmp(kw, "continue")) {
    next(p);
    n = node(p, kw[0] == 'b' ? S_BREAK : S_CONTINUE, t);
    expect_bend(p);
  } else if (!strcmp(kw, "with")) {
    next(p);
    n = node(p, S_WITH, t);
    slist names = {0};
    nlist vals = {0};
    while (cur(p)->type != T_BEND) {
      if (names.n) expect_op(p, OP_COMMA, "','");
      sl_push(p, &names, expect_name(p));
      expect_op(p, OP_ASSIGN, "'='");
      nl_push(p, &vals, parse_expression(p, true));
    }
    expect_bend(p);
    n->names = names.v;
    n->nnames = names.n;
    n->list2 = vals.v;
    n->n2 = vals.n;
    static const char *const ends[] = {"endwith", NULL};
    n->list = parse_body(p, ends, &n->n);
    end_tag(p, "endwith");
  } else if (!strcmp(kw, "generation") || !strcmp(kw, "block")) {
    bool gen = kw[0] == 'g';
    next(p);
    n = node(p, S_BLOCK, t);
    if (!gen) {
      n->name = expect_name(p);
      if (is_name(p, "scoped")) next(p);
      if (is_name(p, "required")) next(p);
    }
    expect_bend(p);
    static const char *const ends_g[] = {"endgeneration", NULL};
    static const char *const ends_b[] = {"endblock", NULL};
    n->list = parse_body(p, gen ? ends_g : ends_b, &n->n);
    end_tag(p, gen ? "endgeneration" : "endblock");
  } else {
    pfail_at(p, t->line, t->col, "Encountered unknown tag '%s'.", kw);
  }
  leave(p);
  return n;
}

/* statements until a block tag whose name is in ends (left current) or EOF */
static jj_node **parse_body(parser *p, const char *const *ends, size_t *n_out) {
  nlist body = {0};
  for (;;) {
    tok *t = cur(p);
    if (t->type == T_EOF) {
      if (ends) {
        char want[128] = "";
        size_t w = 0;
        for (size_t k = 0; ends[k]; k++)
          w += (size_t)snprintf(want + w, sizeof want - w > w ? sizeof want - w : 0, "%s'%s'",
                                k ? " or " : "", ends[k]);
        pfail_at(p, t->line, t->col, "unexpected end of template, expected %s", want);
      }
      break;
    }
    if (t->type == T_TEXT) {
      next(p);
      jj_node *n = node(p, S_TEXT, t);
      jj_str *js = palloc(p, sizeof *js);
      js->s = (char *)t->s;
      js->len = t->len;
      n->val.t = JV_STR;
      n->val.u.s = js;
      nl_push(p, &body, n);
    } else if (t->type == T_VBEGIN) {
      next(p);
      jj_node *n = node(p, S_PRINT, t);
      n->a = parse_tuple(p, false, true, NULL, false);
      if (cur(p)->type != T_VEND) unexpected(p, "end of print statement");
      next(p);
      nl_push(p, &body, n);
    } else if (t->type == T_BBEGIN) {
      tok *k = peek(p, 1);
      if (ends && k->type == T_NAME) {
        bool stop = false;
        for (size_t i = 0; ends[i]; i++)
          if (!strcmp(k->s, ends[i])) stop = true;
        if (stop) {
          next(p);
          break;
        }
      }
      if (k->type == T_NAME &&
          (!strncmp(k->s, "end", 3) || !strcmp(k->s, "elif") || !strcmp(k->s, "else"))) {
        pfail_at(p, k->line, k->col, "Encountered unknown tag '%s'.", k->s);
      }
      next(p);
      nl_push(p, &body, parse_statement(p));
    } else {
      unexpected(p, "template data or a tag");
    }
  }
  *n_out = body.n;
  return body.v;
}

/* ---- names jinja2 knows ------------------------------------------------------------------ */
static const char *const known_filters[] = {
    "abs",       "attr",       "batch",       "capitalize", "center",  "count",
    "d",         "default",    "dictsort",    "e",          "escape",  "filesizeformat",
    "first",     "float",      "forceescape", "format",     "groupby", "indent",
    "int",       "join",       "last",        "length",     "list",    "lower",
    "items",     "map",        "min",         "max",        "pprint",  "random",
    "reject",    "rejectattr", "replace",     "reverse",    "round",   "safe",
    "select",    "selectattr", "slice",       "sort",       "string",  "striptags",
    "sum",       "title",      "trim",        "truncate",   "unique",  "upper",
    "urlencode", "urlize",     "wordcount",   "wordwrap",   "xmlattr", "tojson",
    NULL};
static const char *const known_tests[] = {
    "odd",     "even",     "divisibleby", "defined",     "undefined", "none",    "boolean",
    "false",   "true",     "integer",     "float",       "lower",     "upper",   "string",
    "mapping", "number",   "sequence",    "iterable",    "callable",  "sameas",  "escaped",
    "in",      "filter",   "test",        "==",          "eq",        "equalto", "!=",
    "ne",      ">",        "gt",          "greaterthan", "ge",        ">=",      "<",
    "lt",      "lessthan", "<=",          "le",          NULL};

bool jj_filter_known(const char *name) {
  for (size_t i = 0; known_filters[i]; i++)
    if (!strcmp(known_filters[i], name)) return true;
  return false;
}
bool jj_test_known(const char *name) {
  for (size_t i = 0; known_tests[i]; i++)
    if (!strcmp(known_tests[i], name)) return true;
  return false;
}

/* ---- entry ----------------------------------------------------------------------------- */
tl_status jj_parse(const char *src, size_t len, jj_template **out) {
  *out = NULL;
  if (!src) return tl_fail(TL_ERR_INVALID_ARG, "no template");
  if (len > JJ_MAX_SOURCE)
    return tl_fail(TL_ERR_INVALID_ARG, "template too large (%zu bytes)", len);
  jj_template *t = calloc(1, sizeof *t);
  parser *p = calloc(1, sizeof *p);
  if (!t || !p) {
    free(t);
    free(p);
    return tl_fail(TL_ERR_NOMEM, "out of memory");
  }
  jj_arena_init(&t->arena, (size_t)JJ_MAX_SOURCE * 16);
  p->arena = &t->arena;
  if (setjmp(p->jb)) {
    tl_status st = tl_fail(TL_ERR_FORMAT, "%s", p->msg);
    jj_arena_free(&t->arena);
    free(t);
    free(p);
    return st;
  }
  /* as jinja2's lexer: newlines normalized to \n first (\r\n and \r), then
   * one trailing newline dropped (keep_trailing_newline=False) */
  char *norm = palloc(p, len + 1);
  size_t k = 0;
  for (size_t i = 0; i < len; i++) {
    if (src[i] == '\r') {
      norm[k++] = '\n';
      if (i + 1 < len && src[i + 1] == '\n') i++;
    } else {
      norm[k++] = src[i];
    }
  }
  if (k && norm[k - 1] == '\n') k--;
  norm[k] = 0;
  p->src = norm;
  p->n = k;
  lex(p);
  t->body = parse_body(p, NULL, &t->n);
  free(p);
  *out = t;
  return TL_OK;
}

void jj_template_free(jj_template *t) {
  if (!t) return;
  jj_arena_free(&t->arena);
  free(t);
}
