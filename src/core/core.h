/* Internal core helpers: error reporting, logging, checked arithmetic,
 * half-precision conversion. */
#ifndef TL_CORE_H
#define TL_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "torchless.h"

#if defined(__GNUC__)
#define TL_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define TL_PRINTF(a, b)
#endif

/* Record a message for tl_last_error() and return the status. */
tl_status tl_fail(tl_status s, const char *fmt, ...) TL_PRINTF(2, 3);
/* Prefix the current error message with context ("loading x: ..."). */
tl_status tl_fail_prefix(tl_status s, const char *fmt, ...) TL_PRINTF(2, 3);
void tl_clear_error(void);

void tl_log(tl_log_level level, const char *fmt, ...) TL_PRINTF(2, 3);

/* Overflow-checked size arithmetic: return false on overflow. */
static inline bool tl_add_u64(uint64_t a, uint64_t b, uint64_t *out) {
  return !__builtin_add_overflow(a, b, out);
}
static inline bool tl_mul_u64(uint64_t a, uint64_t b, uint64_t *out) {
  return !__builtin_mul_overflow(a, b, out);
}
static inline bool tl_mul_size(size_t a, size_t b, size_t *out) {
  return !__builtin_mul_overflow(a, b, out);
}

/* Allocation helpers: NULL on overflow or failure. */
void *tl_malloc_array(size_t n, size_t size);
void *tl_calloc_array(size_t n, size_t size);
void *tl_aligned_alloc(size_t size); /* 64-byte aligned, free with tl_aligned_free */
void tl_aligned_free(void *p);
char *tl_strndup(const char *s, size_t n);

/* IEEE half <-> float, round to nearest even. */
static inline float tl_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else { /* subnormal: normalise */
      int e = -1;
      do {
        e++;
        mant <<= 1;
      } while ((mant & 0x400u) == 0);
      bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((mant & 0x3ffu) << 13);
    }
  } else {
    bits = sign | ((exp + 112u) << 23) | (mant << 13);
  }
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

static inline uint16_t tl_f32_to_f16(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000u;
  uint32_t absx = x & 0x7fffffffu;
  if (absx >= 0x7f800000u) { /* inf or nan */
    return (uint16_t)(sign | 0x7c00u | (absx > 0x7f800000u ? 0x200u : 0));
  }
  if (absx >= 0x477ff000u) { /* rounds to >= 65520: overflow to inf */
    return (uint16_t)(sign | 0x7c00u);
  }
  if (absx < 0x38800000u) { /* below the smallest normal half: subnormal */
    /* value = absx as float; half subnormal unit is 2^-24 */
    float af;
    memcpy(&af, &absx, 4);
    float scaled = af * 16777216.0f; /* / 2^-24 */
    /* round to nearest even */
    uint32_t q = (uint32_t)scaled;
    float rem = scaled - (float)q;
    if (rem > 0.5f || (rem == 0.5f && (q & 1u))) q++;
    return (uint16_t)(sign | q);
  }
  uint32_t exp = (absx >> 23) - 112u;
  uint32_t mant = absx & 0x7fffffu;
  uint32_t h = (exp << 10) | (mant >> 13);
  uint32_t rest = mant & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) h++;
  return (uint16_t)(sign | h);
}

static inline float tl_bf16_to_f32(uint16_t h) {
  uint32_t bits = (uint32_t)h << 16;
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

static inline uint16_t tl_f32_to_bf16(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u); /* quiet nan */
  x += 0x7fffu + ((x >> 16) & 1u);
  return (uint16_t)(x >> 16);
}

/* Little-endian loads from unaligned memory. */
static inline uint32_t tl_rd_u32(const void *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}
static inline uint64_t tl_rd_u64(const void *p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return v;
}
static inline uint16_t tl_rd_u16(const void *p) {
  uint16_t v;
  memcpy(&v, p, 2);
  return v;
}

/* A read-only mapping of a whole file. */
typedef struct tl_mmap {
  const uint8_t *data;
  size_t size;
  bool mapped; /* false: data was malloc'd or borrowed */
  bool owned;
} tl_mmap;

tl_status tl_mmap_open(const char *path, tl_mmap *out);
void tl_mmap_close(tl_mmap *m);
/* Whether [p, p + n) lies wholly inside m, a file mapping. */
bool tl_mmap_holds(const tl_mmap *m, const void *p, size_t n);
/* Drops the pages wholly inside [p, p + n) of a file mapping from the
 * process (touched again, they are read again from the file): a GPU
 * backend's weights, once uploaded, then have no second copy in RAM.
 * Nothing where m is not a file mapping or the range is not inside it. */
void tl_mmap_release(const tl_mmap *m, const void *p, size_t n);
/* Bytes of the mapping not in memory now (mincore; 0 when unknown). */
uint64_t tl_mmap_absent(const tl_mmap *m);
/* Read the mapping's absent pages into memory, in order, 32 MiB a time:
 * progress(done, total, user) after each (total: the absent bytes; return
 * false to stop). TL_ERR_ABORTED when stopped. */
tl_status tl_mmap_prefetch(const tl_mmap *m,
                           bool (*progress)(uint64_t done, uint64_t total, void *user), void *user);

/* A length-delimited string (not NUL-terminated), usually a view into a file. */
typedef struct tl_str {
  const char *ptr;
  uint64_t len;
} tl_str;

static inline bool tl_str_eq(tl_str a, const char *b) {
  size_t n = strlen(b);
  return a.len == n && memcmp(a.ptr, b, n) == 0;
}

#endif
