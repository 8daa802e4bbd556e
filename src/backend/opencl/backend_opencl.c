/* The OpenCL backend: the operations of backend/backend.h as OpenCL C 1.2
 * kernels (kernels.cl, embedded in the library at build time as
 * tl_opencl_source and built at run time for the device).
 *
 * The OpenCL library is the standard ICD loader (libOpenCL.so.1), opened
 * with dlopen on first use: the library and the CLI start and run on the
 * other backends where it is absent, and the build needs only the headers.
 * The loader finds the drivers through the .icd files of /etc/OpenCL/vendors (or
 * OCL_ICD_VENDORS). The device: TL_OPENCL_DEVICE=P:D (platform P, device D,
 * from 0), else the first GPU of any platform, else the first device.
 *
 * Buffers. OpenCL 1.2 has no device pointers, only buffer objects, while the
 * interface passes pointers and pointers inside them. Each buffer is given
 * an address range of its own, reserved with mmap(PROT_NONE) so that no
 * other allocation can take it and a stray host access faults; an operation
 * turns its pointers back into (buffer, byte offset) pairs, which the kernels
 * take as arguments.
 *
 * Work. One in-order queue; operations are enqueued without waiting, to_host
 * reads (and so waits); the first error is kept and returned by step_end or
 * to_host. The matrix product dequantizes the weights' blocks in the kernel
 * and multiplies float32 activations (no 8-bit activations: a batch and one
 * token compute the same sums). The KV cache is [layer][seq][kv head][pos]
 * rows of head_dim values in f32, f16 or Q8_0 (kv_io's layout). */
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "backend/backend.h"
#include "core/core.h"
#include "quant/quant.h"

extern const unsigned char tl_opencl_source[];
extern const size_t tl_opencl_source_len;

/* work-items per row work-group, tokens per matmul work-group, largest head */
#define OCL_WG 64
#define OCL_TT 8
#define OCL_HDMAX 256

/* ---- the ICD loader, opened at run time -------------------------------------- */

/* clang-format off */
#define CL_FUNCS(X) \
  X(clGetPlatformIDs) \
  X(clGetPlatformInfo) \
  X(clGetDeviceIDs) \
  X(clGetDeviceInfo) \
  X(clCreateContext) \
  X(clCreateCommandQueue) \
  X(clReleaseCommandQueue) \
  X(clCreateBuffer) \
  X(clReleaseMemObject) \
  X(clCreateProgramWithSource) \
  X(clBuildProgram) \
  X(clGetProgramBuildInfo) \
  X(clCreateKernel) \
  X(clReleaseKernel) \
  X(clSetKernelArg) \
  X(clEnqueueNDRangeKernel) \
  X(clEnqueueReadBuffer) \
  X(clEnqueueWriteBuffer) \
  X(clEnqueueCopyBuffer) \
  X(clFinish) \
  X(clGetKernelWorkGroupInfo)
/* clang-format on */

static struct {
#define FIELD(f) __typeof__(f) *f;
  CL_FUNCS(FIELD)
#undef FIELD
} cl;

/* The process's OpenCL: the device, its context and the built program,
 * made once (the build is what costs: PoCL compiles with LLVM), shared by
 * every backend instance; each instance has its own queue and kernels. */
static struct {
  cl_device_id dev;
  cl_context ctx;
  cl_program prog;
  char name[256], version[128];
  size_t max_wg;
  cl_ulong mem;
  bool mm_row;    /* matrix products one row per work-item (CPU devices) */
  char why[4096]; /* why there is none */
} g;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

/* The kernels, by name (the kernel objects of one instance: k[K_...]). */
/* clang-format off */
#define KERNELS(X) \
  X(embed) X(select_out) X(norm) X(rope) X(kv_store) X(attention) X(act) X(scale) \
  X(softcap) X(quant_x) X(mm_f32) X(mm_f16) X(mm_bf16) X(mm_i8) X(mm_q8_0) X(mm_q4_0) \
  X(mm_q4_1) X(mm_q5_0) X(mm_q5_1) X(mm_q2_k) X(mm_q3_k) X(mm_q4_k) X(mm_q5_k) X(mm_q6_k)
/* clang-format on */
enum {
#define KENUM(n) K_##n,
  KERNELS(KENUM)
#undef KENUM
      K_COUNT
};
static const char *const g_kernel_names[K_COUNT] = {
#define KNAME(n) #n,
    KERNELS(KNAME)
#undef KNAME
};

static void open_opencl(void) {
  void *h = dlopen("libOpenCL.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!h) h = dlopen("libOpenCL.so", RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char *e = dlerror();
    snprintf(g.why, sizeof g.why, "cannot open the OpenCL ICD loader libOpenCL.so.1: %s",
             e ? e : "not found");
    return;
  }
#define LOAD(f)                                                       \
  if (!(cl.f = (__typeof__(f) *)dlsym(h, #f))) {                      \
    snprintf(g.why, sizeof g.why, "the OpenCL loader has no %s", #f); \
    return;                                                           \
  }
  CL_FUNCS(LOAD)
#undef LOAD
  cl_platform_id plats[16];
  cl_uint np = 0;
  cl_int e = cl.clGetPlatformIDs(16, plats, &np);
  if (e != CL_SUCCESS || np == 0) {
    snprintf(g.why, sizeof g.why, "no OpenCL device (no platform: error %d)", (int)e);
    return;
  }
  if (np > 16) np = 16;
  const char *want = getenv("TL_OPENCL_DEVICE");
  int wp = -1, wd = -1;
  if (want && *want && sscanf(want, "%d:%d", &wp, &wd) != 2) {
    snprintf(g.why, sizeof g.why, "TL_OPENCL_DEVICE='%.64s': expected PLATFORM:DEVICE (e.g. 0:0)",
             want);
    return;
  }
  cl_device_id pick = NULL, first = NULL;
  for (cl_uint p = 0; p < np && !pick; p++) {
    cl_device_id devs[16];
    cl_uint nd = 0;
    if (cl.clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, 16, devs, &nd) != CL_SUCCESS) continue;
    if (nd > 16) nd = 16;
    for (cl_uint d = 0; d < nd && !pick; d++) {
      if (wp >= 0) {
        if ((int)p == wp && (int)d == wd) pick = devs[d];
        continue;
      }
      cl_device_type t = 0;
      cl.clGetDeviceInfo(devs[d], CL_DEVICE_TYPE, sizeof t, &t, NULL);
      if (!first) first = devs[d];
      if (t & CL_DEVICE_TYPE_GPU) pick = devs[d];
    }
  }
  if (!pick) pick = wp >= 0 ? NULL : first;
  if (!pick) {
    snprintf(g.why, sizeof g.why, "no OpenCL device%s%s", wp >= 0 ? " at TL_OPENCL_DEVICE=" : "",
             wp >= 0 ? want : "");
    return;
  }
  g.dev = pick;
  cl.clGetDeviceInfo(pick, CL_DEVICE_NAME, sizeof g.name - 1, g.name, NULL);
  cl.clGetDeviceInfo(pick, CL_DEVICE_VERSION, sizeof g.version - 1, g.version, NULL);
  cl.clGetDeviceInfo(pick, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof g.max_wg, &g.max_wg, NULL);
  cl.clGetDeviceInfo(pick, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof g.mem, &g.mem, NULL);
  if (g.max_wg < OCL_WG) {
    snprintf(g.why, sizeof g.why, "OpenCL device %s: work-groups of %zu, the backend needs %d",
             g.name, g.max_wg, OCL_WG);
    return;
  }
  g.ctx = cl.clCreateContext(NULL, 1, &pick, NULL, NULL, &e);
  if (!g.ctx) {
    snprintf(g.why, sizeof g.why, "OpenCL device %s: no context (error %d)", g.name, (int)e);
    return;
  }
  const char *src = (const char *)tl_opencl_source;
  const size_t len = tl_opencl_source_len;
  g.prog = cl.clCreateProgramWithSource(g.ctx, 1, &src, &len, &e);
  if (!g.prog) {
    snprintf(g.why, sizeof g.why, "OpenCL device %s: no program (error %d)", g.name, (int)e);
    return;
  }
  /* correctly rounded division where the device offers it: the Q8_0 cache's
   * scales then round as the CPU's do */
  cl_device_fp_config fp = 0;
  cl.clGetDeviceInfo(pick, CL_DEVICE_SINGLE_FP_CONFIG, sizeof fp, &fp, NULL);
  /* the matrix products' shape: a row per work-group (GPUs) or per
   * work-item (CPU devices); TL_OPENCL_MM=group|row chooses */
  cl_device_type dt = 0;
  cl.clGetDeviceInfo(pick, CL_DEVICE_TYPE, sizeof dt, &dt, NULL);
  const char *mm = getenv("TL_OPENCL_MM");
  g.mm_row = mm && *mm ? !strcmp(mm, "row") : (dt & CL_DEVICE_TYPE_CPU) != 0;
  char opts[512];
  snprintf(
      opts, sizeof opts, "-cl-std=CL1.2 -DWG=%d -DTT=%d -DHDMAX=%d -DMM_ROW=%d%s", OCL_WG, OCL_TT,
      OCL_HDMAX, g.mm_row ? 1 : 0,
      fp & CL_FP_CORRECTLY_ROUNDED_DIVIDE_SQRT ? " -cl-fp32-correctly-rounded-divide-sqrt" : "");
  /* TL_OPENCL_OPTIONS: more build options (e.g. -cl-fast-relaxed-math to
   * compare, or a broken define to see a driver's build log) */
  const char *more = getenv("TL_OPENCL_OPTIONS");
  if (more && *more) snprintf(opts + strlen(opts), sizeof opts - strlen(opts), " %s", more);
  e = cl.clBuildProgram(g.prog, 1, &pick, opts, NULL, NULL);
  if (e != CL_SUCCESS) {
    int n = snprintf(g.why, sizeof g.why,
                     "OpenCL device %s: the kernels failed to build (error %d): ", g.name, (int)e);
    size_t got = 0;
    if (n > 0 && (size_t)n < sizeof g.why)
      cl.clGetProgramBuildInfo(g.prog, pick, CL_PROGRAM_BUILD_LOG, sizeof g.why - (size_t)n - 1,
                               g.why + n, &got);
    g.why[sizeof g.why - 1] = 0;
    g.prog = NULL; /* (kept by the runtime; never used) */
    return;
  }
}

/* ---- the backend ---------------------------------------------------------------- */

typedef struct region {
  uintptr_t base; /* the reserved addresses [base, base + span) */
  size_t span, bytes;
  cl_mem mem;
} region;

typedef struct ocl_ctx {
  tl_backend be;
  tl_backend_config cfg;
  cl_command_queue q;
  cl_kernel k[K_COUNT];
  region *regs; /* sorted by base */
  int n_regs, cap_regs;
  cl_mem k_cache, v_cache, d_tok, d_pos, d_seq, d_out, dummy;
  size_t kv_row; /* bytes of one cached row (one position of one kv head) */
  int kv_code;   /* 0 f32, 1 f16, 2 Q8_0 */
  uint64_t bytes_now, bytes_peak;
  /* 8-bit activations (quant_x) for the widest weight: int8 values, block
   * scales, block sums (Q8_32), sums per 16 (Q8_256); and what they hold
   * now (x, its tokens and block size; xq_src NULL: nothing), so that the
   * products that share an input quantize it once */
  cl_mem xq, xd, xs, xb;
  int64_t xq_cols;
  size_t xq_bytes[4];
  const float *xq_src;
  int64_t xq_cols_now;
  int32_t xq_n, xq_blk;
  tl_step st;
  cl_int err;
  char err_where[64];
  char detail[300];
} ocl_ctx;

static ocl_ctx *oc(tl_backend *be) {
  return be->priv;
}

static void note(ocl_ctx *c, cl_int e, const char *where) {
  if (e != CL_SUCCESS && c->err == CL_SUCCESS) {
    c->err = e;
    snprintf(c->err_where, sizeof c->err_where, "%s", where);
  }
}

static tl_status fail_cl(ocl_ctx *c) {
  const cl_int e = c->err;
  c->err = CL_SUCCESS;
  return tl_fail(e == CL_MEM_OBJECT_ALLOCATION_FAILURE || e == CL_OUT_OF_RESOURCES ||
                         e == CL_OUT_OF_HOST_MEMORY
                     ? TL_ERR_NOMEM
                     : TL_ERR_IO,
                 "OpenCL error %d in %s (%s)", (int)e, c->err_where, g.name);
}

static cl_mem dev_alloc(ocl_ctx *c, size_t bytes, const void *init) {
  cl_int e;
  if (!bytes) init = NULL; /* an empty buffer: 4 bytes, nothing to copy */
  cl_mem m = cl.clCreateBuffer(g.ctx, CL_MEM_READ_WRITE | (init ? CL_MEM_COPY_HOST_PTR : 0),
                               bytes ? bytes : 4, (void *)init, &e);
  if (!m) return NULL;
  c->bytes_now += bytes;
  if (c->bytes_now > c->bytes_peak) c->bytes_peak = c->bytes_now;
  return m;
}

static void dev_release(ocl_ctx *c, cl_mem m, size_t bytes) {
  if (!m) return;
  cl.clReleaseMemObject(m);
  c->bytes_now -= bytes;
}

/* A buffer of bytes (filled from init where given) and its address range. */
static void *region_new(ocl_ctx *c, size_t bytes, const void *init) {
  if (c->n_regs == c->cap_regs) {
    const int cap = c->cap_regs ? 2 * c->cap_regs : 64;
    region *n = realloc(c->regs, sizeof *n * (size_t)cap);
    if (!n) return NULL;
    c->regs = n;
    c->cap_regs = cap;
  }
  const size_t page = 4096;
  if (bytes > SIZE_MAX - 2 * page) return NULL;
  const size_t span = (bytes + page - 1) / page * page + page; /* a guard page after it */
  void *a = mmap(NULL, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (a == MAP_FAILED) return NULL;
  cl_mem m = dev_alloc(c, bytes, init);
  if (!m) {
    munmap(a, span);
    return NULL;
  }
  int i = c->n_regs;
  while (i > 0 && c->regs[i - 1].base > (uintptr_t)a) i--;
  memmove(c->regs + i + 1, c->regs + i, sizeof *c->regs * (size_t)(c->n_regs - i));
  c->regs[i] = (region){(uintptr_t)a, span, bytes, m};
  c->n_regs++;
  return a;
}

/* The region holding p (NULL if none). */
static region *region_of(ocl_ctx *c, const void *p) {
  const uintptr_t a = (uintptr_t)p;
  int lo = 0, hi = c->n_regs - 1, at = -1;
  while (lo <= hi) {
    const int mid = (lo + hi) / 2;
    if (c->regs[mid].base <= a) {
      at = mid;
      lo = mid + 1;
    } else {
      hi = mid - 1;
    }
  }
  if (at < 0 || a > c->regs[at].base + c->regs[at].bytes) return NULL;
  return &c->regs[at];
}

static void region_free(ocl_ctx *c, void *p) {
  region *r = p ? region_of(c, p) : NULL;
  if (!r || r->base != (uintptr_t)p) return;
  c->xq_src = NULL; /* (its addresses may be given out again) */
  dev_release(c, r->mem, r->bytes);
  munmap((void *)r->base, r->span);
  const int i = (int)(r - c->regs);
  memmove(c->regs + i, c->regs + i + 1, sizeof *c->regs * (size_t)(c->n_regs - i - 1));
  c->n_regs--;
}

/* ---- kernel arguments ------------------------------------------------------------- */

typedef struct kargs {
  ocl_ctx *c;
  cl_kernel k;
  cl_uint i;
} kargs;

static kargs args(ocl_ctx *c, int kernel) {
  if (kernel < K_quant_x) c->xq_src = NULL; /* an operation that may write the input */
  return (kargs){c, c->k[kernel], 0};
}

static void a_raw(kargs *a, size_t size, const void *v) {
  note(a->c, cl.clSetKernelArg(a->k, a->i++, size, v), "clSetKernelArg");
}
static void a_buf(kargs *a, cl_mem m) {
  a_raw(a, sizeof m, &m);
}
static void a_int(kargs *a, int v) {
  const cl_int x = v;
  a_raw(a, sizeof x, &x);
}
static void a_long(kargs *a, int64_t v) {
  const cl_long x = v;
  a_raw(a, sizeof x, &x);
}
static void a_ulong(kargs *a, uint64_t v) {
  const cl_ulong x = v;
  a_raw(a, sizeof x, &x);
}
static void a_float(kargs *a, float v) {
  const cl_float x = v;
  a_raw(a, sizeof x, &x);
}
/* a device pointer: its buffer and byte offset (NULL: a dummy buffer, 0) */
static void a_ptr(kargs *a, const void *p) {
  if (!p) {
    a_buf(a, a->c->dummy);
    a_ulong(a, 0);
    return;
  }
  region *r = region_of(a->c, p);
  if (!r) {
    note(a->c, CL_INVALID_MEM_OBJECT, "a pointer that is not the backend's");
    a->i += 2;
    return;
  }
  a_buf(a, r->mem);
  a_ulong(a, (uint64_t)((uintptr_t)p - r->base));
}

/* enqueue: global g0 x g1 work-items (g0 rounded up to a multiple of l0
 * where l0 is given) */
static void run(kargs *a, size_t g0, size_t g1, size_t l0, const char *what) {
  if (a->c->err || g0 == 0 || g1 == 0) return;
  size_t gs[2] = {g0, g1}, ls[2] = {l0, 1};
  if (l0) gs[0] = (g0 + l0 - 1) / l0 * l0;
  note(a->c,
       cl.clEnqueueNDRangeKernel(a->c->q, a->k, g1 > 1 ? 2 : 1, NULL, gs, l0 ? ls : NULL, 0, NULL,
                                 NULL),
       what);
}

/* ---- operations ------------------------------------------------------------------- */

static bool ocl_supports_type(const tl_backend *be, uint32_t t) {
  switch (t) {
    case TL_TYPE_F32:
    case TL_TYPE_F16:
    case TL_TYPE_BF16:
    case TL_TYPE_Q8_0:
    case TL_TYPE_Q4_0:
    case TL_TYPE_Q4_1:
    case TL_TYPE_Q5_0:
    case TL_TYPE_Q5_1:
    case TL_TYPE_Q2_K:
    case TL_TYPE_Q3_K:
    case TL_TYPE_Q4_K:
    case TL_TYPE_Q5_K:
    case TL_TYPE_Q6_K:
      return true;
  }
  return false;
}

static int mm_kernel(uint32_t type, bool scales) {
  if (scales) return K_mm_i8;
  switch (type) {
    case TL_TYPE_F32:
      return K_mm_f32;
    case TL_TYPE_F16:
      return K_mm_f16;
    case TL_TYPE_BF16:
      return K_mm_bf16;
    case TL_TYPE_Q8_0:
      return K_mm_q8_0;
    case TL_TYPE_Q4_0:
      return K_mm_q4_0;
    case TL_TYPE_Q4_1:
      return K_mm_q4_1;
    case TL_TYPE_Q5_0:
      return K_mm_q5_0;
    case TL_TYPE_Q5_1:
      return K_mm_q5_1;
    case TL_TYPE_Q2_K:
      return K_mm_q2_k;
    case TL_TYPE_Q3_K:
      return K_mm_q3_k;
    case TL_TYPE_Q4_K:
      return K_mm_q4_k;
    case TL_TYPE_Q5_K:
      return K_mm_q5_k;
    case TL_TYPE_Q6_K:
      return K_mm_q6_k;
  }
  return -1;
}

static tl_status out_of_memory(ocl_ctx *c, size_t bytes, const char *what) {
  return tl_fail(TL_ERR_NOMEM, "out of OpenCL memory for %.1f MiB of %s (%s, %.1f GiB)",
                 (double)bytes / 1048576.0, what, g.name, (double)g.mem / 1073741824.0);
}

static tl_status ocl_prepare_weight(tl_backend *be, const tl_weight *host, tl_weight *out) {
  ocl_ctx *c = oc(be);
  const bool i8 = host->scales != NULL;
  if (i8 ? host->type != TL_TYPE_I8 || host->cols % TL_I8S_GROUP
         : !ocl_supports_type(be, host->type))
    return tl_fail(TL_ERR_UNSUPPORTED, "the opencl backend cannot multiply weights of type %u%s",
                   host->type, i8 ? " (int8 with scales)" : "");
  const int64_t blck = i8 ? 1 : tl_type_get(host->type)->blck;
  if (host->cols % (blck > 1 ? 32 : 1))
    return tl_fail(TL_ERR_UNSUPPORTED, "opencl: %lld columns of %s", (long long)host->cols,
                   tl_type_name(host->type));
  if (!i8 && blck > 1 && host->cols > c->xq_cols) { /* the 8-bit activations' buffers */
    const size_t e = (size_t)c->cfg.n_batch * (size_t)host->cols;
    const size_t want[4] = {e, e / 32 * sizeof(float), e / 32 * sizeof(float),
                            e / 16 * sizeof(int32_t)};
    cl_mem *bufs[4] = {&c->xq, &c->xd, &c->xs, &c->xb};
    for (int i = 0; i < 4; i++) {
      dev_release(c, *bufs[i], c->xq_bytes[i]);
      c->xq_bytes[i] = 0;
      if (!(*bufs[i] = dev_alloc(c, want[i], NULL)))
        return out_of_memory(c, want[i], "8-bit activations");
      c->xq_bytes[i] = want[i];
    }
    c->xq_cols = host->cols;
    c->xq_src = NULL;
  }
  *out = *host;
  size_t bytes;
  if (!tl_mul_size(host->row_bytes, (size_t)host->rows, &bytes))
    return tl_fail(TL_ERR_INVALID_ARG, "opencl: weight too large");
  void *d = region_new(c, bytes, host->data);
  if (!d) return out_of_memory(c, bytes, "weights");
  out->data = d;
  if (i8) {
    const size_t sb = sizeof(float) * (size_t)host->rows * (size_t)(host->cols / TL_I8S_GROUP);
    void *s = region_new(c, sb, host->scales);
    if (!s) return out_of_memory(c, sb, "weight scales");
    out->scales = s;
  }
  return TL_OK;
}

static tl_status ocl_prepare_vector(tl_backend *be, const float *host, int64_t n,
                                    const float **out) {
  ocl_ctx *c = oc(be);
  void *d = region_new(c, sizeof(float) * (size_t)n, host);
  if (!d) return out_of_memory(c, sizeof(float) * (size_t)n, "vectors");
  *out = d;
  return TL_OK;
}

static void *ocl_buffer_alloc(tl_backend *be, size_t bytes) {
  return region_new(oc(be), bytes, NULL);
}

static void ocl_buffer_free(tl_backend *be, void *p) {
  region_free(oc(be), p);
}

static size_t kv_offset(const ocl_ctx *c, int layer, int seq, int h, int pos) {
  const tl_backend_config *g2 = &c->cfg;
  return ((((size_t)layer * g2->n_seq + seq) * g2->n_head_kv + h) * g2->n_ctx + pos) * c->kv_row;
}

static tl_status ocl_kv_copy(tl_backend *be, int32_t src, int32_t dst, int32_t p0, int32_t p1) {
  ocl_ctx *c = oc(be);
  if (src == dst || p1 <= p0) return TL_OK;
  if (src < 0 || dst < 0 || src >= c->cfg.n_seq || dst >= c->cfg.n_seq || p0 < 0 ||
      p1 > c->cfg.n_ctx)
    return tl_fail(TL_ERR_INVALID_ARG, "kv_copy: sequences %d -> %d, positions [%d, %d)", src, dst,
                   p0, p1);
  const size_t bytes = (size_t)(p1 - p0) * c->kv_row;
  for (int l = 0; l < c->cfg.n_layer; l++)
    for (int h = 0; h < c->cfg.n_head_kv; h++) {
      const size_t fo = kv_offset(c, l, src, h, p0), to = kv_offset(c, l, dst, h, p0);
      note(c, cl.clEnqueueCopyBuffer(c->q, c->k_cache, c->k_cache, fo, to, bytes, 0, NULL, NULL),
           "kv_copy");
      note(c, cl.clEnqueueCopyBuffer(c->q, c->v_cache, c->v_cache, fo, to, bytes, 0, NULL, NULL),
           "kv_copy");
    }
  note(c, cl.clFinish(c->q), "kv_copy");
  return c->err ? fail_cl(c) : TL_OK;
}

static tl_status ocl_kv_io(tl_backend *be, int32_t seq, int32_t p0, int32_t p1, void *buf,
                           bool write) {
  ocl_ctx *c = oc(be);
  if (seq < 0 || seq >= c->cfg.n_seq || p0 < 0 || p1 > c->cfg.n_ctx || p1 < p0)
    return tl_fail(TL_ERR_INVALID_ARG, "kv_io: sequence %d, positions [%d, %d)", seq, p0, p1);
  const size_t bytes = (size_t)(p1 - p0) * c->kv_row;
  uint8_t *b = buf;
  for (int l = 0; l < c->cfg.n_layer && bytes; l++)
    for (int h = 0; h < c->cfg.n_head_kv; h++) {
      const size_t o = kv_offset(c, l, seq, h, p0);
      for (int which = 0; which < 2; which++, b += bytes) {
        cl_mem m = which ? c->v_cache : c->k_cache;
        note(c,
             write ? cl.clEnqueueWriteBuffer(c->q, m, CL_TRUE, o, bytes, b, 0, NULL, NULL)
                   : cl.clEnqueueReadBuffer(c->q, m, CL_TRUE, o, bytes, b, 0, NULL, NULL),
             "kv_io");
      }
    }
  return c->err ? fail_cl(c) : TL_OK;
}

static tl_status ocl_step_begin(tl_backend *be, const tl_step *st) {
  ocl_ctx *c = oc(be);
  if (st->n < 0 || st->n > c->cfg.n_batch || st->n_out < 0 || st->n_out > st->n)
    return tl_fail(TL_ERR_INVALID_ARG, "opencl: a step of %d tokens (%d out), batches of %d", st->n,
                   st->n_out, c->cfg.n_batch);
  c->st = *st;
  c->xq_src = NULL;
  const size_t n = sizeof(int32_t) * (size_t)st->n;
  if (n) {
    _Static_assert(sizeof(tl_token) == sizeof(cl_int), "tokens are 32-bit");
    note(c, cl.clEnqueueWriteBuffer(c->q, c->d_tok, CL_TRUE, 0, n, st->tokens, 0, NULL, NULL),
         "step_begin");
    note(c, cl.clEnqueueWriteBuffer(c->q, c->d_pos, CL_TRUE, 0, n, st->pos, 0, NULL, NULL),
         "step_begin");
    note(c, cl.clEnqueueWriteBuffer(c->q, c->d_seq, CL_TRUE, 0, n, st->seq, 0, NULL, NULL),
         "step_begin");
  }
  if (st->n_out)
    note(c,
         cl.clEnqueueWriteBuffer(c->q, c->d_out, CL_TRUE, 0, sizeof(int32_t) * (size_t)st->n_out,
                                 st->out_rows, 0, NULL, NULL),
         "step_begin");
  return c->err ? fail_cl(c) : TL_OK;
}

static tl_status ocl_step_end(tl_backend *be) {
  ocl_ctx *c = oc(be);
  return c->err ? fail_cl(c) : TL_OK;
}

static void ocl_embed(tl_backend *be, const tl_weight *w, float *x) {
  ocl_ctx *c = oc(be);
  const bool flt =
      w->scales || w->type == TL_TYPE_F32 || w->type == TL_TYPE_F16 || w->type == TL_TYPE_BF16;
  kargs a = args(c, K_embed);
  a_ptr(&a, w->data);
  a_ulong(&a, w->row_bytes);
  a_int(&a, w->scales ? 24 /* T_I8 */ : (int)w->type);
  a_int(&a, (int)w->cols);
  a_ptr(&a, w->scales);
  a_buf(&a, c->d_tok);
  a_ptr(&a, x);
  a_int(&a, c->st.n);
  run(&a, (size_t)c->st.n * (size_t)(flt ? w->cols : w->cols / 32), 1, 0, "embed");
}

static void ocl_select_out(tl_backend *be, const float *x, float *y, int64_t len) {
  ocl_ctx *c = oc(be);
  kargs a = args(c, K_select_out);
  a_ptr(&a, x);
  a_ptr(&a, y);
  a_buf(&a, c->d_out);
  a_int(&a, c->st.n_out);
  a_long(&a, len);
  if (c->st.n_out) run(&a, (size_t)len, 1, 0, "select_out");
}

static void ocl_norm(tl_backend *be, const tl_norm_op *op) {
  ocl_ctx *c = oc(be);
  kargs a = args(c, K_norm);
  a_ptr(&a, op->x);
  a_ptr(&a, op->a);
  a_int(&a, op->a != NULL);
  a_ptr(&a, op->b);
  a_int(&a, op->b != NULL);
  a_ptr(&a, op->w);
  a_int(&a, op->w != NULL);
  a_ptr(&a, op->nb);
  a_int(&a, op->nb != NULL);
  a_ptr(&a, op->y ? op->y : op->x);
  a_int(&a, (int)op->len);
  a_int(&a, op->kind);
  a_float(&a, op->eps);
  run(&a, (size_t)op->rows * OCL_WG, 1, OCL_WG, "norm");
}

/* x's n rows of cols values as 8-bit blocks of blk (unless they are already) */
static void quant_x(ocl_ctx *c, const float *x, int32_t n, int64_t cols, int blk) {
  if (c->xq_src == x && c->xq_n >= n && c->xq_blk == blk && c->xq_cols_now == cols) return;
  if (cols > c->xq_cols) {
    note(c, CL_INVALID_BUFFER_SIZE, "matmul wider than its prepared weights");
    return;
  }
  kargs a = args(c, K_quant_x);
  a_ptr(&a, x);
  a_int(&a, (int)cols);
  a_int(&a, n);
  a_int(&a, blk);
  a_buf(&a, c->xq);
  a_buf(&a, c->xd);
  a_buf(&a, c->xs);
  a_buf(&a, c->xb);
  run(&a, (size_t)n * (size_t)(cols / blk), 1, 0, "quant_x");
  c->xq_src = c->err ? NULL : x;
  c->xq_n = n;
  c->xq_blk = blk;
  c->xq_cols_now = cols;
}

static void ocl_matmul(tl_backend *be, const tl_weight *w, const float *bias, const float *x,
                       int32_t n, float *y, int64_t ldy) {
  ocl_ctx *c = oc(be);
  const int k = mm_kernel(w->type, w->scales != NULL);
  if (k < 0) {
    note(c, CL_INVALID_VALUE, "matmul of an unsupported type");
    return;
  }
  const bool quant = k >= K_mm_q8_0;
  if (quant) quant_x(c, x, n, w->cols, tl_type_get(w->type)->blck >= 256 ? 256 : 32);
  kargs a = args(c, k);
  a_ptr(&a, w->data);
  a_ulong(&a, w->row_bytes);
  a_int(&a, (int)w->cols);
  if (quant) {
    a_buf(&a, c->xq);
    a_buf(&a, c->xd);
    a_buf(&a, c->xs);
    a_buf(&a, c->xb);
  } else {
    a_ptr(&a, w->scales);
    a_ptr(&a, x);
  }
  a_ptr(&a, y);
  a_long(&a, ldy);
  a_ptr(&a, bias);
  a_int(&a, bias != NULL);
  a_int(&a, n);
  const size_t tiles = (size_t)(n + OCL_TT - 1) / OCL_TT;
  if (g.mm_row)
    run(&a, (size_t)w->rows, tiles, 0, "matmul");
  else
    run(&a, (size_t)w->rows * OCL_WG, tiles, OCL_WG, "matmul");
  /* y written: the activations stay valid unless y is in x's buffer */
  if (c->xq_src && region_of(c, y) == region_of(c, x)) c->xq_src = NULL;
}

static void ocl_rope(tl_backend *be, const tl_rope_op *op) {
  ocl_ctx *c = oc(be);
  kargs a = args(c, K_rope);
  a_ptr(&a, op->q);
  a_ptr(&a, op->k);
  a_buf(&a, c->d_pos);
  a_int(&a, c->st.n);
  a_int(&a, op->n_head);
  a_int(&a, op->n_head_kv);
  a_int(&a, op->head_dim);
  a_int(&a, op->n_rot);
  a_int(&a, op->kind == TL_ROPE_NEOX);
  a_float(&a, op->theta);
  a_float(&a, op->freq_scale);
  a_ptr(&a, op->freq_factors);
  a_int(&a, op->freq_factors != NULL);
  run(&a, (size_t)c->st.n * (size_t)(op->n_head + op->n_head_kv) * (size_t)(op->n_rot / 2), 1, 0,
      "rope");
}

static void ocl_kv_store(tl_backend *be, int32_t layer, const float *k, const float *v) {
  ocl_ctx *c = oc(be);
  kargs a = args(c, K_kv_store);
  a_buf(&a, c->k_cache);
  a_buf(&a, c->v_cache);
  a_ptr(&a, k);
  a_ptr(&a, v);
  a_buf(&a, c->d_pos);
  a_buf(&a, c->d_seq);
  a_int(&a, c->st.n);
  a_int(&a, layer);
  a_int(&a, c->cfg.n_seq);
  a_int(&a, c->cfg.n_head_kv);
  a_int(&a, c->cfg.head_dim);
  a_int(&a, c->cfg.n_ctx);
  a_int(&a, c->kv_code);
  const int per = c->kv_code == 2 ? c->cfg.head_dim / 32 : c->cfg.head_dim;
  if (c->st.n) run(&a, (size_t)c->cfg.n_head_kv * (size_t)per, 1, 0, "kv_store");
}

static void ocl_attention(tl_backend *be, const tl_attn_op *op) {
  ocl_ctx *c = oc(be);
  kargs a = args(c, K_attention);
  a_ptr(&a, op->q);
  a_ptr(&a, op->out);
  a_buf(&a, c->k_cache);
  a_buf(&a, c->v_cache);
  a_buf(&a, c->d_pos);
  a_buf(&a, c->d_seq);
  a_int(&a, op->layer);
  a_int(&a, c->cfg.n_seq);
  a_int(&a, op->n_head);
  a_int(&a, op->n_head_kv);
  a_int(&a, op->head_dim);
  a_int(&a, c->cfg.n_ctx);
  a_int(&a, c->kv_code);
  a_int(&a, op->window);
  a_float(&a, op->scale);
  a_float(&a, op->softcap);
  run(&a, (size_t)c->st.n * (size_t)op->n_head * OCL_WG, 1, OCL_WG, "attention");
}

static void ocl_act(tl_backend *be, tl_act_kind kind, bool gated, float *x, const float *b,
                    int64_t n) {
  ocl_ctx *c = oc(be);
  kargs a = args(c, K_act);
  a_int(&a, kind);
  a_int(&a, gated);
  a_ptr(&a, x);
  a_ptr(&a, b);
  a_long(&a, n);
  run(&a, (size_t)n, 1, 0, "act");
}

static void ocl_scale(tl_backend *be, float *x, float s, int64_t n) {
  ocl_ctx *c = oc(be);
  kargs a = args(c, K_scale);
  a_ptr(&a, x);
  a_float(&a, s);
  a_long(&a, n);
  run(&a, (size_t)n, 1, 0, "scale");
}

static void ocl_softcap(tl_backend *be, float *x, float cap, int64_t n) {
  ocl_ctx *c = oc(be);
  kargs a = args(c, K_softcap);
  a_ptr(&a, x);
  a_float(&a, cap);
  a_long(&a, n);
  run(&a, (size_t)n, 1, 0, "softcap");
}

/* n floats between the host and a device pointer (blocking) */
static tl_status copy_floats(ocl_ctx *c, const float *dev, float *host, int64_t n, bool write,
                             const char *what) {
  if (c->err) return fail_cl(c);
  if (n <= 0) return TL_OK;
  region *r = region_of(c, dev);
  const size_t off = r ? (size_t)((uintptr_t)dev - r->base) : 0, bytes = sizeof(float) * (size_t)n;
  if (!r || off + bytes > r->bytes)
    return tl_fail(TL_ERR_INVALID_ARG, "opencl %s: %lld floats outside the backend's buffers", what,
                   (long long)n);
  note(c,
       write ? cl.clEnqueueWriteBuffer(c->q, r->mem, CL_TRUE, off, bytes, host, 0, NULL, NULL)
             : cl.clEnqueueReadBuffer(c->q, r->mem, CL_TRUE, off, bytes, host, 0, NULL, NULL),
       what);
  return c->err ? fail_cl(c) : TL_OK;
}

static tl_status ocl_to_host(tl_backend *be, const float *src, float *dst, int64_t n) {
  return copy_floats(oc(be), src, dst, n, false, "to_host");
}

static tl_status ocl_from_host(tl_backend *be, const float *src, float *dst, int64_t n) {
  oc(be)->xq_src = NULL;
  return copy_floats(oc(be), dst, (float *)src, n, true, "from_host");
}

/* OpenCL has no query of the device's memory in use: what this backend
 * holds stands for it. */
static void ocl_memory(tl_backend *be, uint64_t *now, uint64_t *peak, uint64_t *device_used) {
  ocl_ctx *c = oc(be);
  *now = c->bytes_now;
  *peak = c->bytes_peak;
  *device_used = c->bytes_now;
}

static void ocl_free(tl_backend *be) {
  if (!be) return;
  ocl_ctx *c = oc(be);
  if (c->q) cl.clFinish(c->q);
  while (c->n_regs) region_free(c, (void *)c->regs[c->n_regs - 1].base);
  free(c->regs);
  const size_t kvb =
      (size_t)c->cfg.n_layer * c->cfg.n_seq * c->cfg.n_head_kv * (size_t)c->cfg.n_ctx * c->kv_row;
  const size_t nb = sizeof(int32_t) * (size_t)c->cfg.n_batch;
  dev_release(c, c->k_cache, kvb);
  dev_release(c, c->v_cache, kvb);
  dev_release(c, c->d_tok, nb);
  dev_release(c, c->d_pos, nb);
  dev_release(c, c->d_seq, nb);
  dev_release(c, c->d_out, nb);
  dev_release(c, c->dummy, 4);
  cl_mem xbufs[4] = {c->xq, c->xd, c->xs, c->xb};
  for (int i = 0; i < 4; i++) dev_release(c, xbufs[i], c->xq_bytes[i]);
  for (int i = 0; i < K_COUNT; i++)
    if (c->k[i]) cl.clReleaseKernel(c->k[i]);
  if (c->q) cl.clReleaseCommandQueue(c->q);
  free(c);
}

tl_status tl_backend_opencl_new(const tl_backend_config *cfg, tl_backend **out) {
  *out = NULL;
  pthread_once(&g_once, open_opencl);
  if (!g.prog) return tl_fail(TL_ERR_UNSUPPORTED, "backend opencl: %s", g.why);
  if (cfg->head_dim > OCL_HDMAX || cfg->head_dim < 1)
    return tl_fail(TL_ERR_UNSUPPORTED, "the opencl backend supports head sizes up to %d, not %d",
                   OCL_HDMAX, cfg->head_dim);
  if (cfg->kv_type == TL_KV_Q8_0 && cfg->head_dim % 32)
    return tl_fail(TL_ERR_UNSUPPORTED, "a q8_0 KV cache needs head sizes of multiples of 32");
  ocl_ctx *c = calloc(1, sizeof *c);
  if (!c) return tl_fail(TL_ERR_NOMEM, "out of memory");
  c->cfg = *cfg;
  c->cfg.cpu_kernels = NULL;
  c->kv_code = cfg->kv_type == TL_KV_F32 ? 0 : cfg->kv_type == TL_KV_F16 ? 1 : 2;
  c->kv_row = tl_kv_row_bytes(cfg->kv_type, cfg->head_dim);
  snprintf(c->detail, sizeof c->detail, "%s", g.name);
  c->be = (tl_backend){
      .name = "opencl",
      .detail = c->detail,
      .priv = c,
      .supports_type = ocl_supports_type,
      .free = ocl_free,
      .prepare_weight = ocl_prepare_weight,
      .prepare_vector = ocl_prepare_vector,
      .buffer_alloc = ocl_buffer_alloc,
      .buffer_free = ocl_buffer_free,
      .kv_copy = ocl_kv_copy,
      .kv_io = ocl_kv_io,
      .step_begin = ocl_step_begin,
      .step_end = ocl_step_end,
      .embed = ocl_embed,
      .select_out = ocl_select_out,
      .norm = ocl_norm,
      .matmul = ocl_matmul,
      .rope = ocl_rope,
      .kv_store = ocl_kv_store,
      .attention = ocl_attention,
      .act = ocl_act,
      .scale = ocl_scale,
      .softcap = ocl_softcap,
      .to_host = ocl_to_host,
      .from_host = ocl_from_host,
      .memory = ocl_memory,
  };
  cl_int e = CL_SUCCESS;
  c->q = cl.clCreateCommandQueue(g.ctx, g.dev, 0, &e);
  for (int i = 0; i < K_COUNT && c->q; i++)
    if (!(c->k[i] = cl.clCreateKernel(g.prog, g_kernel_names[i], &e))) break;
  if (e != CL_SUCCESS) {
    ocl_free(&c->be);
    return tl_fail(TL_ERR_UNSUPPORTED, "backend opencl: %s: no queue or kernels (error %d)", g.name,
                   (int)e);
  }
  uint64_t kv_bytes = 0;
  const bool fits = tl_mul_u64((uint64_t)cfg->n_layer * (uint64_t)cfg->n_seq *
                                   (uint64_t)cfg->n_head_kv * (uint64_t)cfg->n_ctx,
                               c->kv_row, &kv_bytes) &&
                    kv_bytes <= SIZE_MAX / 2;
  const size_t nb = sizeof(int32_t) * (size_t)(cfg->n_batch > 0 ? cfg->n_batch : 1);
  if (!fits || !(c->k_cache = dev_alloc(c, (size_t)kv_bytes, NULL)) ||
      !(c->v_cache = dev_alloc(c, (size_t)kv_bytes, NULL)) ||
      !(c->d_tok = dev_alloc(c, nb, NULL)) || !(c->d_pos = dev_alloc(c, nb, NULL)) ||
      !(c->d_seq = dev_alloc(c, nb, NULL)) || !(c->d_out = dev_alloc(c, nb, NULL)) ||
      !(c->dummy = dev_alloc(c, 4, NULL))) {
    ocl_free(&c->be);
    return tl_fail(TL_ERR_NOMEM,
                   "a context of %d tokens x %d sequences needs a KV cache of %.2f GiB; the OpenCL "
                   "device %s has %.2f GiB: use a smaller context (-c)",
                   cfg->n_ctx, cfg->n_seq, 2.0 * (double)kv_bytes / 1073741824.0, g.name,
                   (double)g.mem / 1073741824.0);
  }
  tl_log(TL_LOG_INFO, "opencl: %s (%s), KV cache %.1f MiB", g.name, g.version,
         2.0 * (double)kv_bytes / 1048576.0);
  *out = &c->be;
  return TL_OK;
}
