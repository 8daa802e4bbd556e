/* Backend selection: the backends this build has, by name. The GPU
 * backends live in their own shared objects (cuda/cuda_host.h), opened on
 * first use, so that this library starts on machines without a GPU driver:
 * "cuda" (libtorchless-cuda.so) and "hip" (libtorchless-hip.so, the same
 * sources built by hipcc for AMD GPUs). "auto" takes the first that opens
 * and finds a device, else the CPU.
 * The OpenCL backend (opencl/backend_opencl.c, which opens the ICD loader on
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
#ifdef TL_HAVE_HIP
                                      "hip",
#endif
#ifdef TL_HAVE_OPENCL
                                      "opencl",
#endif
                                      NULL};

const char *const *tl_backend_names(void) {
  return g_names;
}

#if defined(TL_HAVE_CUDA) || defined(TL_HAVE_HIP)
/* A GPU backend's shared object, opened once. */
typedef struct gpu_lib {
  const char *name, *file, *env; /* "cuda", TL_CUDA_LIBRARY, "TL_CUDA_LIBRARY" */
  pthread_once_t once;
  tl_cuda_create_fn create;
  char why[512];
} gpu_lib;

/* The shared object: $<env>, else next to the running program, else by
 * the loader's search path. */
static void open_gpu(gpu_lib *g) {
  const char *env = getenv(g->env);
  void *h = NULL;
  if (env && *env) {
    h = dlopen(env, RTLD_NOW | RTLD_LOCAL);
  } else {
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
      exe[n] = 0;
      char *slash = strrchr(exe, '/');
      if (slash && (size_t)(slash - exe) + 1 + strlen(g->file) < sizeof exe) {
        strcpy(slash + 1, g->file);
        h = dlopen(exe, RTLD_NOW | RTLD_LOCAL);
      }
    }
    if (!h) h = dlopen(g->file, RTLD_NOW | RTLD_LOCAL);
  }
  if (!h) {
    const char *e = dlerror();
    snprintf(g->why, sizeof g->why, "cannot open %s: %s", env && *env ? env : g->file,
             e ? e : "not found");
    return;
  }
  g->create = (tl_cuda_create_fn)dlsym(h, TL_CUDA_ENTRY);
  if (!g->create) snprintf(g->why, sizeof g->why, "%s has no %s", g->file, TL_CUDA_ENTRY);
}

static tl_status gpu_new(gpu_lib *g, void (*open)(void), const tl_backend_config *cfg,
                         tl_backend **out) {
  pthread_once(&g->once, open);
  if (!g->create) return tl_fail(TL_ERR_UNSUPPORTED, "backend %s: %s", g->name, g->why);
  static const tl_cuda_host host = {TL_CUDA_ABI, tl_fail, tl_log};
  tl_status s = g->create(&host, cfg, out);
  if (s) tl_fail_prefix(s, "backend %s", g->name);
  return s;
}
#endif

#ifdef TL_HAVE_CUDA
static gpu_lib g_cuda = {"cuda", TL_CUDA_LIBRARY, "TL_CUDA_LIBRARY", PTHREAD_ONCE_INIT, NULL, ""};
static void open_cuda(void) {
  open_gpu(&g_cuda);
}
#endif
#ifdef TL_HAVE_HIP
static gpu_lib g_hip = {"hip", TL_HIP_LIBRARY, "TL_HIP_LIBRARY", PTHREAD_ONCE_INIT, NULL, ""};
static void open_hip(void) {
  open_gpu(&g_hip);
}
#endif

/* The GPU backend of that name (*known), or *known = false where this
 * build has none. */
static tl_status gpu_by_name(const char *name, const tl_backend_config *cfg, tl_backend **out,
                             bool *known) {
  *known = true;
#ifdef TL_HAVE_CUDA
  if (!strcmp(name, "cuda")) return gpu_new(&g_cuda, open_cuda, cfg, out);
#endif
#ifdef TL_HAVE_HIP
  if (!strcmp(name, "hip")) return gpu_new(&g_hip, open_hip, cfg, out);
#endif
  (void)cfg, (void)out;
  *known = false;
  return TL_ERR_UNSUPPORTED;
}

tl_status tl_backend_new(const char *name, const tl_backend_config *cfg, tl_backend **out) {
  if (!out || !cfg) return tl_fail(TL_ERR_INVALID_ARG, "tl_backend_new: invalid arguments");
  *out = NULL;
  bool known = false;
  if (!name || !*name || !strcmp(name, "auto")) {
    /* the GPU backends in the order of g_names, then the CPU */
    char why[512] = "this build has no GPU backend";
    for (const char *const *b = g_names + 1; *b; b++) {
      if (!strcmp(*b, "opencl")) continue; /* only when asked */
      tl_status s = gpu_by_name(*b, cfg, out, &known);
      if (!s) {
        tl_log(TL_LOG_INFO, "backend auto: %s", *b);
        return s;
      }
      snprintf(why, sizeof why, "%s", tl_last_error());
      tl_clear_error();
    }
#ifdef TL_HAVE_OPENCL
    tl_log(TL_LOG_INFO, "backend auto: cpu (%s; opencl runs only when asked: --backend opencl)",
           why);
#else
    tl_log(TL_LOG_INFO, "backend auto: cpu (%s)", why);
#endif
    return tl_backend_cpu_new(cfg, out);
  }
  if (!strcmp(name, "cpu")) return tl_backend_cpu_new(cfg, out);
#ifdef TL_HAVE_OPENCL
  if (!strcmp(name, "opencl")) return tl_backend_opencl_new(cfg, out);
#endif
  tl_status s = gpu_by_name(name, cfg, out, &known);
  if (known) return s;
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
  cfg->low_mem = p->low_mem;
}

/* The model level's accessor (model/context.c); the public calls that name
 * the backend's compute are answered here. */
const tl_backend *tl_context_get_backend(const tl_context *c);

const char *tl_context_kernels(const tl_context *c) {
  return tl_context_get_backend(c)->detail;
}
