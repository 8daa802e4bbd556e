/* UTF-8 helpers: strict validation (no overlong forms, no surrogates, nothing
 * above U+10FFFF) and a prefix check used by the streaming detokenizer. */
#include "tokenizer/tokenizer.h"

int tl_utf8_check(const unsigned char *s, size_t n) {
  if (n == 0) return 0;
  unsigned c = s[0];
  if (c < 0x80) return 1;
  size_t len;
  unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    if (c == 0xE0) lo = 0xA0; /* no overlong forms */
    if (c == 0xED) hi = 0x9F; /* no surrogates */
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    if (c == 0xF0) lo = 0x90; /* no overlong forms */
    if (c == 0xF4) hi = 0x8F; /* nothing above U+10FFFF */
  } else {
    return -1; /* a continuation byte, C0, C1 or F5..FF */
  }
  for (size_t i = 1; i < len; i++) {
    if (i >= n) return 0; /* valid so far, but cut short */
    unsigned b = s[i];
    if (i == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) return -1;
  }
  return (int)len;
}

size_t tl_utf8_len(const unsigned char *s, size_t n) {
  int r = tl_utf8_check(s, n);
  return r > 0 ? (size_t)r : 0;
}

bool tl_utf8_valid(const char *s, size_t n) {
  const unsigned char *p = (const unsigned char *)s;
  size_t i = 0;
  while (i < n) {
    /* fast path for ASCII runs */
    if (p[i] < 0x80) {
      i++;
      continue;
    }
    size_t l = tl_utf8_len(p + i, n - i);
    if (l == 0) return false;
    i += l;
  }
  return true;
}
