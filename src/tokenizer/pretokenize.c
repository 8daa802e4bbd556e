/* Pre-tokenizers of byte-level BPE vocabularies: the text is cut into pieces
 * by a regular expression (selected by tokenizer.ggml.pre) before the merges
 * run inside each piece. The regexes are those of GPT-2, LLaMA 3 and Qwen2 as
 * Hugging Face tokenizers (Oniguruma) runs them; here PCRE2 in UTF + UCP mode
 * runs them, with \s spelt out as the Unicode White_Space set (PCRE2's own
 * \s also takes U+180E, which Oniguruma does not). Also: GPT-2's
 * bytes_to_unicode table. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdlib.h>

#include "tokenizer/tokenizer.h"

/* Unicode White_Space, as the inside of a character class */
#define WS                                                                                 \
  "\\t\\n\\x{0B}\\f\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}" \
  "\\x{202F}\\x{205F}\\x{3000}"

static const char RE_GPT2[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" WS
                              "\\p{L}\\p{N}]+|[" WS "]+(?![^" WS "])|[" WS "]+";

#define RE_LLAMA3_QWEN2(digits)                                                        \
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}" digits " ?[^" WS \
  "\\p{L}\\p{N}]+[\\r\\n]*|[" WS "]*[\\r\\n]+|[" WS "]+(?![^" WS "])|[" WS "]+"

static const char RE_LLAMA3[] = RE_LLAMA3_QWEN2("{1,3}|");
static const char RE_QWEN2[] = RE_LLAMA3_QWEN2("|");

/* The same regexes as tokenizer.json spells them (Split pre-tokenizers). */
static const struct {
  const char *hf_regex;
  const char *pre;
} known_hf[] = {
    {"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+", "gpt-2"},
    {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
     "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
     "llama-bpe"},
    {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
     "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
     "qwen2"},
};

const char *tl_pretok_name_for_regex(const char *re, size_t len) {
  for (size_t i = 0; i < sizeof known_hf / sizeof known_hf[0]; i++) {
    if (strlen(known_hf[i].hf_regex) == len && memcmp(known_hf[i].hf_regex, re, len) == 0) {
      return known_hf[i].pre;
    }
  }
  return NULL;
}

struct tl_pretok {
  const char *kind;
  pcre2_code *code;
};

static bool name_is(const char *name, size_t len, const char *const *list) {
  for (; *list; list++) {
    if (strlen(*list) == len && memcmp(*list, name, len) == 0) return true;
  }
  return false;
}

tl_status tl_pretok_new(const char *name, size_t len, tl_pretok **out) {
  if (!out) return tl_fail(TL_ERR_INVALID_ARG, "tl_pretok_new: NULL argument");
  *out = NULL;
  static const char *const gpt2[] = {"gpt2", "gpt-2", "phi-2", "default", NULL};
  static const char *const llama3[] = {"llama3", "llama-v3", "llama-bpe", NULL};
  static const char *const qwen2[] = {"qwen2", "deepseek-r1-qwen", NULL};
  const char *kind = "gpt2", *re = RE_GPT2;
  if (!name) name = "", len = 0;
  if (name_is(name, len, llama3)) {
    kind = "llama3";
    re = RE_LLAMA3;
  } else if (name_is(name, len, qwen2)) {
    kind = "qwen2";
    re = RE_QWEN2;
  } else if (!name_is(name, len, gpt2)) {
    int shown = len > 64 ? 64 : (int)len;
    tl_log(TL_LOG_WARN, "unknown pre-tokenizer '%.*s': using the GPT-2 regex", shown, name);
  }
  tl_pretok *p = calloc(1, sizeof *p);
  if (!p) return tl_fail(TL_ERR_NOMEM, "out of memory");
  int err = 0;
  PCRE2_SIZE erroff = 0;
  p->code = pcre2_compile((PCRE2_SPTR)re, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &err,
                          &erroff, NULL);
  if (!p->code) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    free(p);
    return tl_fail(TL_ERR_UNSUPPORTED, "pre-tokenizer %s: PCRE2 cannot compile its regex: %s", kind,
                   (const char *)msg);
  }
  /* JIT when available; the interpreter otherwise */
  (void)pcre2_jit_compile(p->code, PCRE2_JIT_COMPLETE);
  p->kind = kind;
  *out = p;
  return TL_OK;
}

void tl_pretok_free(tl_pretok *p) {
  if (!p) return;
  pcre2_code_free(p->code);
  free(p);
}

const char *tl_pretok_kind(const tl_pretok *p) {
  return p ? p->kind : NULL;
}

tl_status tl_pretok_split(const tl_pretok *p, const char *text, size_t n, tl_pretok_fn fn,
                          void *user) {
  if (!p || (!text && n > 0) || !fn) return tl_fail(TL_ERR_INVALID_ARG, "pretok: NULL argument");
  if (n == 0) return TL_OK;
  pcre2_match_data *md = pcre2_match_data_create_from_pattern(p->code, NULL);
  if (!md) return tl_fail(TL_ERR_NOMEM, "out of memory");
  tl_status st = TL_OK;
  size_t pos = 0;
  while (pos < n) {
    /* the caller validated the UTF-8 */
    int rc = pcre2_match(p->code, (PCRE2_SPTR)text, n, pos, PCRE2_NO_UTF_CHECK, md, NULL);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {
      rc = pcre2_match(p->code, (PCRE2_SPTR)text, n, pos, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md,
                       NULL);
    }
    if (rc == PCRE2_ERROR_NOMATCH) {
      st = fn(user, pos, n - pos); /* the rest is one piece */
      break;
    }
    if (rc < 0) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(rc, msg, sizeof msg);
      st = tl_fail(TL_ERR_TOKENIZER, "pre-tokenizer regex failed at offset %zu: %s", pos,
                   (const char *)msg);
      break;
    }
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    size_t ms = ov[0], me = ov[1];
    if (ms > pos) {
      st = fn(user, pos, ms - pos); /* text the regex skipped is a piece too */
      if (st != TL_OK) break;
    }
    if (me > ms) {
      st = fn(user, ms, me - ms);
      if (st != TL_OK) break;
      pos = me;
    } else {
      /* an empty match: the next character is a piece of its own */
      size_t l = tl_utf8_len((const unsigned char *)text + ms, n - ms);
      size_t next = ms + (l ? l : 1);
      st = fn(user, ms, next - ms);
      if (st != TL_OK) break;
      pos = next;
    }
  }
  pcre2_match_data_free(md);
  return st;
}

/* ---- GPT-2 bytes_to_unicode ------------------------------------------------ */

static bool printable_byte(unsigned b) {
  return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

uint32_t tl_byte_to_cp(uint8_t b) {
  if (printable_byte(b)) return b;
  /* the others take 256, 257, ... in byte order */
  uint32_t k = 0;
  for (unsigned i = 0; i < b; i++) k += !printable_byte(i);
  return 256 + k;
}

int tl_cp_to_byte(uint32_t cp) {
  if (cp < 256) return printable_byte(cp) ? (int)cp : -1;
  if (cp >= 256 + 68) return -1; /* 68 bytes are not printable */
  uint32_t k = cp - 256;
  for (unsigned i = 0; i < 256; i++) {
    if (!printable_byte(i)) {
      if (k == 0) return (int)i;
      k--;
    }
  }
  return -1;
}
