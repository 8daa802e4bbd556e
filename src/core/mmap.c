#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core.h"

/* Large files are mapped at a 2 MiB-aligned address and marked for huge
 * pages: the kernel can then read them into 2 MiB page-cache folios and map
 * those with one page-table entry each (FilePmdMapped in /proc/meminfo), so
 * streaming the weights once per token takes far fewer TLB misses than with
 * 4 KiB pages. Still one read-only mapping of the file, no copy. */
#define TL_HUGE ((size_t)2 << 20)
static void *map_aligned(int fd, size_t size) {
  long psz = sysconf(_SC_PAGESIZE);
  if (size < 4 * TL_HUGE || psz <= 0 || TL_HUGE % (size_t)psz)
    return mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const size_t len = (size + (size_t)psz - 1) / (size_t)psz * (size_t)psz; /* whole pages */
  uint8_t *area = mmap(NULL, len + TL_HUGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (area == MAP_FAILED) return mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
  uint8_t *at = (uint8_t *)(((uintptr_t)area + TL_HUGE - 1) & ~(uintptr_t)(TL_HUGE - 1));
  void *p = mmap(at, size, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, 0);
  if (p == MAP_FAILED) {
    int e = errno;
    munmap(area, len + TL_HUGE);
    errno = e;
    return p;
  }
  /* give back the unused head and tail of the reservation */
  if (at > area) munmap(area, (size_t)(at - area));
  if (area + len + TL_HUGE > at + len)
    munmap(at + len, (size_t)(area + len + TL_HUGE - (at + len)));
#ifdef MADV_HUGEPAGE
  madvise(p, size, MADV_HUGEPAGE); /* a hint: failure changes nothing */
#endif
  return p;
}

tl_status tl_mmap_open(const char *path, tl_mmap *out) {
  memset(out, 0, sizeof *out);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return tl_fail(TL_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    return tl_fail(TL_ERR_IO, "cannot stat '%s': %s", path, strerror(e));
  }
  if (S_ISDIR(st.st_mode)) {
    close(fd);
    return tl_fail(TL_ERR_IO, "'%s' is a directory", path);
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return tl_fail(TL_ERR_IO, "'%s' is not a regular file", path);
  }
  if (st.st_size == 0) {
    close(fd);
    return tl_fail(TL_ERR_FORMAT, "'%s' is empty", path);
  }
  void *p = map_aligned(fd, (size_t)st.st_size);
  int e = errno;
  close(fd);
  if (p == MAP_FAILED) return tl_fail(TL_ERR_IO, "cannot map '%s': %s", path, strerror(e));
  out->data = p;
  out->size = (size_t)st.st_size;
  out->mapped = true;
  out->owned = true;
  return TL_OK;
}

bool tl_mmap_holds(const tl_mmap *m, const void *p, size_t n) {
  const uintptr_t a = (uintptr_t)p, base = (uintptr_t)m->data;
  return m->mapped && m->data && a >= base && n <= m->size && a - base <= m->size - n;
}

void tl_mmap_release(const tl_mmap *m, const void *p, size_t n) {
  if (!tl_mmap_holds(m, p, n)) return;
  const uintptr_t a = (uintptr_t)p, pg = (uintptr_t)sysconf(_SC_PAGESIZE);
  const uintptr_t lo = (a + pg - 1) / pg * pg, hi = (a + n) / pg * pg;
  if (hi > lo) madvise((void *)lo, hi - lo, MADV_DONTNEED); /* a hint: failure changes nothing */
}

/* absent pages of [p, p + n) (page aligned) */
static uint64_t absent_in(const uint8_t *p, size_t n, size_t pg, unsigned char *vec) {
  if (mincore((void *)p, n, vec) != 0) return 0;
  uint64_t a = 0;
  for (size_t i = 0; i < (n + pg - 1) / pg; i++)
    if (!(vec[i] & 1)) a += pg;
  return a;
}

#define PREFETCH_CHUNK ((size_t)32 << 20)

uint64_t tl_mmap_absent(const tl_mmap *m) {
  if (!m->mapped || !m->data || !m->size) return 0;
  const size_t pg = (size_t)sysconf(_SC_PAGESIZE);
  unsigned char *vec = malloc(PREFETCH_CHUNK / pg + 1);
  if (!vec) return 0;
  uint64_t a = 0;
  for (size_t off = 0; off < m->size; off += PREFETCH_CHUNK) {
    const size_t n = m->size - off < PREFETCH_CHUNK ? m->size - off : PREFETCH_CHUNK;
    a += absent_in((const uint8_t *)m->data + off, n, pg, vec);
  }
  free(vec);
  return a;
}

tl_status tl_mmap_prefetch(const tl_mmap *m,
                           bool (*progress)(uint64_t done, uint64_t total, void *user),
                           void *user) {
  if (!m->mapped || !m->data || !m->size) return TL_OK;
  const size_t pg = (size_t)sysconf(_SC_PAGESIZE);
  unsigned char *vec = malloc(PREFETCH_CHUNK / pg + 1);
  if (!vec) return tl_fail(TL_ERR_NOMEM, "out of memory");
  const uint64_t total = tl_mmap_absent(m);
  uint64_t done = 0;
  for (size_t off = 0; off < m->size && total > 0; off += PREFETCH_CHUNK) {
    const uint8_t *p = (const uint8_t *)m->data + off;
    const size_t n = m->size - off < PREFETCH_CHUNK ? m->size - off : PREFETCH_CHUNK;
    const uint64_t a = absent_in(p, n, pg, vec);
    if (a == 0) continue;
    madvise((void *)p, n, MADV_WILLNEED); /* a hint: the reads below do the work */
    volatile uint8_t sink = 0;
    for (size_t i = 0; i < n; i += pg)
      if (!(vec[i / pg] & 1)) sink ^= p[i];
    (void)sink;
    done += a;
    if (progress && !progress(done < total ? done : total, total, user)) {
      free(vec);
      return tl_fail(TL_ERR_ABORTED, "prefetch stopped");
    }
  }
  free(vec);
  return TL_OK;
}

void tl_mmap_close(tl_mmap *m) {
  if (m->owned && m->data) {
    if (m->mapped)
      munmap((void *)m->data, m->size);
    else
      free((void *)m->data);
  }
  memset(m, 0, sizeof *m);
}
