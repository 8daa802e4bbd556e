/* Unicode NFC (canonical decomposition, canonical ordering, canonical
 * composition; UAX #15), for tokenizers whose normalizer is NFC (Qwen). */
#include <stdlib.h>

#include "tokenizer/tokenizer.h"
#include "tokenizer/nfc_tables.h"

#define NFC_N(t) (sizeof(t) / sizeof((t)[0]))

enum {
  S_BASE = 0xAC00,
  L_BASE = 0x1100,
  V_BASE = 0x1161,
  T_BASE = 0x11A7,
  L_COUNT = 19,
  V_COUNT = 21,
  T_COUNT = 28,
  N_COUNT = V_COUNT * T_COUNT,
  S_COUNT = L_COUNT * N_COUNT,
};

static uint32_t ccc_of(uint32_t cp) {
  if (cp < 0x300) return 0;
  size_t lo = 0, hi = NFC_N(nfc_ccc);
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (cp < nfc_ccc[mid][0]) {
      hi = mid;
    } else if (cp > nfc_ccc[mid][1]) {
      lo = mid + 1;
    } else {
      return nfc_ccc[mid][2];
    }
  }
  return 0;
}

static const uint32_t *decomp_of(uint32_t cp) {
  size_t lo = 0, hi = NFC_N(nfc_decomp);
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (cp < nfc_decomp[mid][0]) {
      hi = mid;
    } else if (cp > nfc_decomp[mid][0]) {
      lo = mid + 1;
    } else {
      return nfc_decomp[mid];
    }
  }
  return NULL;
}

/* The primary composite of a + b, 0 if none. */
static uint32_t compose(uint32_t a, uint32_t b) {
  if (a >= L_BASE && a < L_BASE + L_COUNT && b >= V_BASE && b < V_BASE + V_COUNT) {
    return S_BASE + ((a - L_BASE) * V_COUNT + (b - V_BASE)) * T_COUNT;
  }
  if (a >= S_BASE && a < S_BASE + S_COUNT && (a - S_BASE) % T_COUNT == 0 && b > T_BASE &&
      b < T_BASE + T_COUNT) {
    return a + (b - T_BASE);
  }
  size_t lo = 0, hi = NFC_N(nfc_comp);
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    const uint32_t *e = nfc_comp[mid];
    if (a < e[0] || (a == e[0] && b < e[1])) {
      hi = mid;
    } else if (a > e[0] || b > e[1]) {
      lo = mid + 1;
    } else {
      return e[2];
    }
  }
  return 0;
}

typedef struct {
  uint32_t *cp;
  size_t n, cap;
} cpbuf;

static bool put(cpbuf *b, uint32_t cp) {
  if (b->n == b->cap) {
    size_t nc = b->cap ? b->cap * 2 : 64;
    uint32_t *p = realloc(b->cp, nc * sizeof *p);
    if (!p) return false;
    b->cp = p;
    b->cap = nc;
  }
  b->cp[b->n++] = cp;
  return true;
}

/* Full canonical decomposition of cp (the tables nest at most a few deep). */
static bool decompose(cpbuf *b, uint32_t cp, int depth) {
  if (cp >= S_BASE && cp < S_BASE + S_COUNT) {
    uint32_t s = cp - S_BASE, t = s % T_COUNT;
    if (!put(b, L_BASE + s / N_COUNT) || !put(b, V_BASE + (s % N_COUNT) / T_COUNT)) return false;
    return t == 0 || put(b, T_BASE + t);
  }
  const uint32_t *d = depth < 8 ? decomp_of(cp) : NULL;
  if (!d) return put(b, cp);
  if (!decompose(b, d[1], depth + 1)) return false;
  return d[2] == 0 || decompose(b, d[2], depth + 1);
}

static uint32_t utf8_decode(const unsigned char *s, size_t l) {
  switch (l) {
    case 1:
      return s[0];
    case 2:
      return ((uint32_t)(s[0] & 0x1F) << 6) | (s[1] & 0x3F);
    case 3:
      return ((uint32_t)(s[0] & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
    default:
      return ((uint32_t)(s[0] & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) |
             ((uint32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
  }
}

static size_t utf8_encode(char *o, uint32_t cp) {
  if (cp < 0x80) {
    o[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    o[0] = (char)(0xC0 | (cp >> 6));
    o[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (char)(0xE0 | (cp >> 12));
    o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  o[0] = (char)(0xF0 | (cp >> 18));
  o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
  o[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

tl_status tl_utf8_nfc(const char *s, size_t n, char **out, size_t *out_len) {
  if (!out || !out_len || (!s && n > 0)) return tl_fail(TL_ERR_INVALID_ARG, "nfc: NULL argument");
  *out = NULL;
  *out_len = 0;
  const unsigned char *p = (const unsigned char *)s;
  bool simple = true; /* below U+0300 nothing changes */
  for (size_t i = 0; i < n && simple; i++) simple = p[i] < 0xCC;
  if (simple) {
    char *r = malloc(n + 1);
    if (!r) return tl_fail(TL_ERR_NOMEM, "out of memory");
    if (n) memcpy(r, s, n);
    r[n] = '\0';
    *out = r;
    *out_len = n;
    return TL_OK;
  }
  cpbuf b = {0};
  for (size_t i = 0; i < n;) {
    size_t l = tl_utf8_len(p + i, n - i);
    if (l == 0) {
      free(b.cp);
      return tl_fail(TL_ERR_TOKENIZER, "nfc: the text is not valid UTF-8 (offset %zu)", i);
    }
    if (!decompose(&b, utf8_decode(p + i, l), 0)) {
      free(b.cp);
      return tl_fail(TL_ERR_NOMEM, "out of memory");
    }
    i += l;
  }
  /* canonical ordering: stable insertion sort of each run of non-starters */
  for (size_t i = 1; i < b.n; i++) {
    uint32_t c = b.cp[i], cc = ccc_of(c);
    if (cc == 0) continue;
    size_t j = i;
    while (j > 0) {
      uint32_t pc = ccc_of(b.cp[j - 1]);
      if (pc == 0 || pc <= cc) break;
      b.cp[j] = b.cp[j - 1];
      j--;
    }
    b.cp[j] = c;
  }
  /* canonical composition */
  size_t w = 0, starter = SIZE_MAX;
  uint32_t last_cc = 0;
  for (size_t i = 0; i < b.n; i++) {
    uint32_t c = b.cp[i], cc = ccc_of(c);
    if (starter != SIZE_MAX) {
      bool blocked = w - 1 > starter && (last_cc == 0 || last_cc >= cc);
      uint32_t k = blocked ? 0 : compose(b.cp[starter], c);
      if (k) {
        b.cp[starter] = k;
        continue;
      }
    }
    if (cc == 0) starter = w;
    last_cc = cc;
    b.cp[w++] = c;
  }
  char *r = malloc(w * 4 + 1);
  if (!r) {
    free(b.cp);
    return tl_fail(TL_ERR_NOMEM, "out of memory");
  }
  size_t m = 0;
  for (size_t i = 0; i < w; i++) m += utf8_encode(r + m, b.cp[i]);
  r[m] = '\0';
  free(b.cp);
  *out = r;
  *out_len = m;
  return TL_OK;
}
