/* A Jinja2 interpreter for chat templates: the language as Hugging Face's
 * apply_chat_template runs it (jinja2's ImmutableSandboxedEnvironment with
 * trim_blocks, lstrip_blocks and loop controls; tojson with
 * ensure_ascii=False; raise_exception and strftime_now as globals).
 *
 * jinja_parse.c: lexer and parser (source -> tree); jinja_value.c: values,
 * the arena, JSON in and out, Python-style printing; jinja_eval.c: the
 * evaluator, filters, tests and methods. Errors unwind with longjmp to the
 * entry points, which turn them into tl_status failures; all memory of a
 * parse or a render lives in one arena freed at the end. */
#ifndef TL_CHAT_JINJA_H
#define TL_CHAT_JINJA_H

#include <setjmp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

/* ---- limits ----------------------------------------------------------------- */
#define JJ_MAX_SOURCE (16u << 20)   /* template bytes */
#define JJ_MAX_NEST 200             /* parser nesting (expressions and blocks) */
#define JJ_MAX_CALL_DEPTH 200       /* macro calls, recursive loops */
#define JJ_MAX_OUTPUT (64u << 20)   /* rendered bytes */
#define JJ_MAX_STEPS 50000000ull    /* loop iterations + calls + filter items */
#define JJ_MAX_ARENA (512ull << 20) /* bytes of values one render may allocate */
#define JJ_MAX_JSON_DEPTH 200

/* ---- arena ------------------------------------------------------------------ */
typedef struct jj_chunk jj_chunk;
typedef struct jj_arena {
  jj_chunk *head;
  size_t total, limit;
} jj_arena;

/* ---- values ------------------------------------------------------------------ */
typedef enum jj_type {
  JV_UNDEF,
  JV_NONE,
  JV_BOOL,
  JV_INT,
  JV_FLOAT,
  JV_STR,
  JV_LIST, /* also tuples (l->tuple) */
  JV_DICT,
  JV_NS,    /* namespace(): a mutable dict */
  JV_FUNC,  /* a global function or a bound method */
  JV_MACRO, /* a macro, or caller() */
  JV_LOOP,  /* the loop variable */
} jj_type;

typedef struct jj_str {
  size_t len;
  char *s; /* NUL-terminated */
} jj_str;

struct jj_list;
struct jj_dict;
struct jj_func;
struct jj_macro;
struct jj_loop;

typedef struct jv {
  uint8_t t;
  bool safe; /* a Markup string (no effect: autoescape is off) */
  union {
    bool b;
    int64_t i;
    double f;
    jj_str *s;
    struct jj_list *l;
    struct jj_dict *d;
    struct jj_func *fn;
    struct jj_macro *m;
    struct jj_loop *loop;
    const char *undef; /* JV_UNDEF: the message an operation on it raises */
  } u;
} jv;

/* What Python object a list stands for: jinja2's map/select/unique/items
 * filters give generators (always true, no len(), not subscriptable),
 * reverse gives an iterator, dict methods give views, range() a range;
 * they print and behave as those do. */
enum {
  JL_LIST = 0,
  JL_GEN,     /* a generator (view_name: the function's name) */
  JL_REVITER, /* list_reverseiterator */
  JL_ITEMS,   /* dict_items */
  JL_KEYS,    /* dict_keys */
  JL_VALUES,  /* dict_values */
  JL_RANGE,   /* range(r0, r1, r2) */
};

typedef struct jj_list {
  size_t n, cap;
  jv *v;
  bool tuple;
  uint8_t view; /* JL_* */
  const char *view_name;
  int64_t r0, r1, r2;
} jj_list;

typedef struct jj_dict {
  size_t n, cap;
  jv *k, *v;
} jj_dict;

/* ---- the tree ----------------------------------------------------------------- */
typedef enum jj_kind {
  /* expressions */
  N_CONST,
  N_NAME,
  N_LIST,
  N_TUPLE,
  N_DICT,
  N_GETATTR,
  N_GETITEM,
  N_SLICE,
  N_CALL,
  N_FILTER,
  N_TEST,
  N_NEG,
  N_POS,
  N_NOT,
  N_AND,
  N_OR,
  N_BINOP,
  N_CONCAT,
  N_COMPARE,
  N_COND,
  N_BLOCKVAL, /* the body of a filter block or set block, inside its filter chain */
  /* statements */
  S_TEXT,
  S_PRINT,
  S_IF,
  S_FOR,
  S_SET,
  S_SETBLOCK,
  S_MACRO,
  S_CALLBLOCK,
  S_BREAK,
  S_CONTINUE,
  S_FILTERBLOCK,
  S_WITH,
  S_BLOCK, /* generation, block: their body as is */
} jj_kind;

typedef struct jj_node jj_node;
struct jj_node {
  uint8_t kind;
  int op; /* operator (token code), negation of tests, recursive loops */
  int line, col;
  jj_node *a, *b, *c;
  jj_node **list; /* args / items / body / compare operands */
  size_t n;
  jj_node **list2; /* kwarg values / dict values / else body / defaults */
  size_t n2;
  const char **names; /* kwarg names / targets / params */
  size_t nnames;
  int *ops; /* comparison operators */
  const char *name;
  const char *attr; /* S_SET: namespace attribute */
  jv val;
};

/* ---- operator codes (tokens) ----------------------------------------------------- */
enum {
  OP_ADD = 1,
  OP_SUB,
  OP_MUL,
  OP_DIV,
  OP_FLOORDIV,
  OP_MOD,
  OP_POW,
  OP_TILDE,
  OP_LBRACKET,
  OP_RBRACKET,
  OP_LPAREN,
  OP_RPAREN,
  OP_LBRACE,
  OP_RBRACE,
  OP_EQ,
  OP_NE,
  OP_GT,
  OP_GE,
  OP_LT,
  OP_LE,
  OP_ASSIGN,
  OP_DOT,
  OP_COLON,
  OP_PIPE,
  OP_COMMA,
  OP_SEMICOLON,
  OP_IN,
  OP_NOTIN,
};

/* ---- a compiled template ---------------------------------------------------------- */
typedef struct jj_template {
  jj_arena arena;
  jj_node **body;
  size_t n;
} jj_template;

/* ---- shared helpers (jinja_value.c) -------------------------------------------------- */
typedef struct jj_err {
  jmp_buf jb;
  char msg[1024];
} jj_err;

void jj_arena_init(jj_arena *a, size_t limit);
void jj_arena_free(jj_arena *a);
/* NULL when over the limit or out of memory */
void *jj_arena_alloc(jj_arena *a, size_t n);

/* a growable byte buffer: malloc'd, or in an arena (temporary buffers of a
 * render, so that an error unwinding past them leaks nothing) */
typedef struct jj_buf {
  char *p;
  size_t len, cap, limit;
  jj_arena *arena;
} jj_buf;
bool jj_buf_add(jj_buf *b, const char *s, size_t n);

/* the rendering state's allocation hooks (jinja_eval.c) */
typedef struct jj_env jj_env;
_Noreturn void jj_fail(jj_env *e, const char *fmt, ...) TL_PRINTF(2, 3);
/* a temporary buffer in the render's arena */
jj_buf jj_tmpbuf(jj_env *e, size_t limit);
void *jj_alloc(jj_env *e, size_t n);
jv jj_str_new(jj_env *e, const char *s, size_t n);
jv jj_list_new(jj_env *e, size_t cap);
void jj_list_push(jj_env *e, jj_list *l, jv v);
jv jj_dict_new(jj_env *e, size_t cap);
void jj_dict_set(jj_env *e, jj_dict *d, jv k, jv v);
jv *jj_dict_find(const jj_dict *d, jv k);
jv *jj_dict_find_str(const jj_dict *d, const char *k);

/* values */
bool jj_truthy(jv v);
bool jj_equal(jv a, jv b);
const char *jj_type_name(jv v); /* Python's type name: "str", "NoneType" ... */
/* -1, 0, 1; fails with Python's TypeError message when not comparable */
int jj_compare(jj_env *e, jv a, jv b, const char *op);
void jj_to_str(jj_env *e, jj_buf *b, jv v); /* Python str() */
void jj_repr(jj_env *e, jj_buf *b, jv v);   /* Python repr() */
jv jj_stringify(jj_env *e, jv v);           /* str() as a value */
void jj_float_repr(double f, char *out, size_t cap);
typedef struct jj_json_opts {
  const char *indent; /* NULL: none */
  const char *item_sep, *key_sep;
  bool sort_keys;
  bool ensure_ascii;
} jj_json_opts;
void jj_tojson(jj_env *e, jj_buf *b, jv v, const jj_json_opts *o);
/* JSON text -> value (objects become dicts in key order, ints stay ints) */
jv jj_from_json(jj_env *e, const char *s, size_t n);
/* code points of a UTF-8 string */
size_t jj_utf8_len(const char *s, size_t n);
/* byte offset of code point index i (clamped to n) */
size_t jj_utf8_off(const char *s, size_t n, size_t i);

/* the parser (jinja_parse.c) */
tl_status jj_parse(const char *src, size_t len, jj_template **out);
void jj_template_free(jj_template *t);
/* is name a filter / test jinja2 knows (its built-in set plus tojson) */
bool jj_filter_known(const char *name);
bool jj_test_known(const char *name);

/* the evaluator (jinja_eval.c): renders with the JSON object's keys as
 * variables. *out is malloc'd and NUL-terminated. */
tl_status jj_render(const jj_template *t, const char *vars_json, size_t vars_len, char **out,
                    size_t *out_len);
/* the same with other limits (0: the default); the fuzz target's are small */
typedef struct jj_limits {
  size_t max_output;
  uint64_t max_steps;
  size_t max_arena;
} jj_limits;
tl_status jj_render_limits(const jj_template *t, const char *vars_json, size_t vars_len,
                           const jj_limits *lim, char **out, size_t *out_len);

#endif
