/* Run-time choice of the CPU kernel set: the best the processor supports,
 * or the one named by TL_CPU_KERNELS (scalar, avx2, avx512, avx512vnni) for tests. Entries
 * a SIMD set lacks fall back to the scalar reference. */
#include <pthread.h>
#include <stdlib.h>

#include "backend/backend.h"

static tl_cpu_kernels g_sets[4];
static int g_n_sets;
static const tl_cpu_kernels *g_best;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void add_set(void (*fill)(tl_cpu_kernels *)) {
  tl_cpu_kernels *k = &g_sets[g_n_sets++];
  *k = *tl_cpu_kernels_scalar();
  fill(k);
  const tl_cpu_kernels *sc = tl_cpu_kernels_scalar();
  for (int t = 0; t < TL_TYPE_COUNT; t++) { /* only types the reference knows */
    if (!sc->vec_dot[t]) k->vec_dot[t] = NULL;
    /* a SIMD vec_dot on f32 activations beats the scalar integer gemm */
    if (k->gemm[t] == sc->gemm[t] && k->vec_dot[t] != sc->vec_dot[t]) k->gemm[t] = NULL;
  }
}

static void init(void) {
  g_best = tl_cpu_kernels_scalar();
#if defined(__x86_64__) || defined(__i386__)
  if (tl_cpu_has_avx2()) add_set(tl_cpu_fill_avx2);
  if (tl_cpu_has_avx512()) add_set(tl_cpu_fill_avx512);
  if (tl_cpu_has_avx512vnni()) add_set(tl_cpu_fill_avx512vnni);
#endif
  if (g_n_sets > 0) g_best = &g_sets[g_n_sets - 1];
  const char *want = getenv("TL_CPU_KERNELS");
  if (want && *want) {
    if (!strcmp(want, "scalar")) {
      g_best = tl_cpu_kernels_scalar();
    } else {
      for (int i = 0; i < g_n_sets; i++)
        if (!strcmp(g_sets[i].name, want)) g_best = &g_sets[i];
    }
  }
}

const tl_cpu_kernels *tl_cpu_kernels_best(void) {
  pthread_once(&g_once, init);
  return g_best;
}

int tl_cpu_kernel_sets(const tl_cpu_kernels **out, int max) {
  pthread_once(&g_once, init);
  int n = 0;
  if (n < max) out[n++] = tl_cpu_kernels_scalar();
  for (int i = 0; i < g_n_sets && n < max; i++) out[n++] = &g_sets[i];
  return n;
}
