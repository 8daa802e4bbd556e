#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core.h"

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
  void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
  int e = errno;
  close(fd);
  if (p == MAP_FAILED) return tl_fail(TL_ERR_IO, "cannot map '%s': %s", path, strerror(e));
  out->data = p;
  out->size = (size_t)st.st_size;
  out->mapped = true;
  out->owned = true;
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
