/* Backend selection: the backends this build has, by name. The CUDA
 * backend lives in its own shared object (cuda/cuda_host.h), opened on
 * first use, so that this library starts on machines without a GPU driver;
 * "auto" takes it when it opens and finds a device, else the CPU. The
 * OpenCL backend (opencl/backend_opencl.c, which opens the ICD loader on
 * first use) runs only when named: "auto" never picks it, as on a CPU
 * device (PoCL) it is slower than the CPU backend, and a GPU with an
 * OpenCL driver is better served by its own backend where there is one. */
#include "backend/backend.h"

#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "backend/cpu/cpu.h"
#include "backend/cuda/cuda_host.h"
#include "core/core.h"

static const char *const g_names[] = {"cpu",
#ifdef TL_HAVE_CUDA
                                      "cuda",
#endif
#ifdef TL_HAVE_OPENCL
                                      "opencl",
#endif
                                      NULL};

const char *const *tl_backend_names(void) {
  return g_names;
}

#ifdef TL_HAVE_CUDA
static pthread_once_t g_cuda_once = PTHREAD_ONCE_INIT;
static tl_cuda_create_fn g_cuda_create;
static char g_cuda_why[512];

/* The shared object: $TL_CUDA_LIBRARY, else next to the running program,
 * else by the loader's search path. */
static void open_cuda(void) {
  const char *env = getenv("TL_CUDA_LIBRARY");
  void *h = NULL;
  if (env && *env) {
    h = dlopen(env, RTLD_NOW | RTLD_LOCAL);
  } else {
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
      exe[n] = 0;
      char *slash = strrchr(exe, '/');
      if (slash && (size_t)(slash - exe) + 1 + sizeof TL_CUDA_LIBRARY < sizeof exe) {
        strcpy(slash + 1, TL_CUDA_LIBRARY);
        h = dlopen(exe, RTLD_NOW | RTLD_LOCAL);
      }
    }
    if (!h) h = dlopen(TL_CUDA_LIBRARY, RTLD_NOW | RTLD_LOCAL);
  }
  if (!h) {
    const char *e = dlerror();
    snprintf(g_cuda_why, sizeof g_cuda_why, "cannot open %s: %s",
             env && *env ? env : TL_CUDA_LIBRARY, e ? e : "not found");
    return;
  }
  g_cuda_create = (tl_cuda_create_fn)dlsym(h, TL_CUDA_ENTRY);
  if (!g_cuda_create)
    snprintf(g_cuda_why, sizeof g_cuda_why, "%s has no %s", TL_CUDA_LIBRARY, TL_CUDA_ENTRY);
}

static tl_status cuda_new(const tl_backend_config *cfg, tl_backend **out) {
  pthread_once(&g_cuda_once, open_cuda);
  if (!g_cuda_create) return tl_fail(TL_ERR_UNSUPPORTED, "backend cuda: %s", g_cuda_why);
  static const tl_cuda_host host = {TL_CUDA_ABI, tl_fail, tl_log};
  tl_status s = g_cuda_create(&host, cfg, out);
  if (s) tl_fail_prefix(s, "backend cuda");
  return s;
}
#endif

tl_status tl_backend_new(const char *name, const tl_backend_config *cfg, tl_backend **out) {
  if (!out || !cfg) return tl_fail(TL_ERR_INVALID_ARG, "tl_backend_new: invalid arguments");
  *out = NULL;
  if (!name || !*name || !strcmp(name, "auto")) {
#ifdef TL_HAVE_OPENCL
    /* never chosen by auto: PoCL on a CPU is slower than the CPU backend */
    const char *ocl = "; opencl runs only when asked: --backend opencl";
#else
    const char *ocl = "";
#endif
#ifdef TL_HAVE_CUDA
    tl_status s = cuda_new(cfg, out);
    if (!s) {
      tl_log(TL_LOG_INFO, "backend auto: cuda");
      return s;
    }
    tl_log(TL_LOG_INFO, "backend auto: cpu (%s%s)", tl_last_error(), ocl);
    tl_clear_error();
#else
    tl_log(TL_LOG_INFO, "backend auto: cpu (this build has no CUDA backend%s)", ocl);
#endif
    return tl_backend_cpu_new(cfg, out);
  }
  if (!strcmp(name, "cpu")) return tl_backend_cpu_new(cfg, out);
#ifdef TL_HAVE_CUDA
  if (!strcmp(name, "cuda")) return cuda_new(cfg, out);
#endif
#ifdef TL_HAVE_OPENCL
  if (!strcmp(name, "opencl")) return tl_backend_opencl_new(cfg, out);
#endif
  char have[128] = "auto";
  for (const char *const *b = g_names; *b; b++)
    snprintf(have + strlen(have), sizeof have - strlen(have), ", %s", *b);
  return tl_fail(TL_ERR_UNSUPPORTED, "unknown backend '%.64s' (this build has: %s)", name, have);
}

void tl_backend_free(tl_backend *be) {
  if (be) be->free(be);
}

bool tl_backend_type_supported(uint32_t type) {
  return tl_cpu_supports_type(type);
}

void tl_backend_config_options(tl_backend_config *cfg, const tl_context_params *p) {
  cfg->cpu_kernels = p->cpu_kernels;
  cfg->att_tile = p->att_tile;
}

/* The model level's accessor (model/context.c); the public calls that name
 * the backend's compute are answered here. */
const tl_backend *tl_context_get_backend(const tl_context *c);

const char *tl_context_kernels(const tl_context *c) {
  return tl_context_get_backend(c)->detail;
}
