/* Run-time choice of the CPU kernel set: the best the processor supports,
 * or the one named by TL_CPU_KERNELS (scalar, avx2, avx512, avx512vnni on
 * x86-64; neon, neon_dotprod on AArch64) for tests. Entries a SIMD set lacks
 * fall back to the scalar reference. */
#include <pthread.h>
#include <stdlib.h>

#include "backend/cpu/cpu.h"

#if defined(__aarch64__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMD
#define HWCAP_ASIMD (1 << 1)
#endif
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif

bool tl_cpu_has_neon(void) {
  return (getauxval(AT_HWCAP) & HWCAP_ASIMD) != 0;
}

bool tl_cpu_has_neon_dotprod(void) {
  const unsigned long hw = getauxval(AT_HWCAP);
  return (hw & HWCAP_ASIMD) && (hw & HWCAP_ASIMDDP);
}
#endif

static tl_cpu_kernels g_sets[8];
static int g_n_sets;
static const tl_cpu_kernels *g_best;
static const char *g_names[10]; /* scalar, the sets, NULL */
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void add_set(void (*fill)(tl_cpu_kernels *)) {
  if (g_n_sets >= (int)(sizeof g_sets / sizeof g_sets[0])) return;
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
#if defined(__aarch64__)
  if (tl_cpu_has_neon()) add_set(tl_cpu_fill_neon);
  if (tl_cpu_has_neon_dotprod()) add_set(tl_cpu_fill_neon_dotprod);
#endif
  if (g_n_sets > 0) g_best = &g_sets[g_n_sets - 1];
  g_names[0] = tl_cpu_kernels_scalar()->name;
  for (int i = 0; i < g_n_sets; i++) g_names[i + 1] = g_sets[i].name;
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

const char *const *tl_cpu_kernel_names(void) {
  pthread_once(&g_once, init);
  return g_names;
}
