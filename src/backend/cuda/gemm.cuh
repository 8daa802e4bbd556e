/* Batches (prefill) on the tensor cores through cuBLAS, which the backend
 * opens with dlopen at run time (libcublas.so.13 or .12): the shared object
 * links no cuBLAS, and without it (or with TL_CUDA_CUBLAS=0) batches take
 * the backend's own tiled kernel. Included by backend_cuda.cu.
 *
 * Float weights are multiplied in their type: F16 and BF16 directly, F32 as
 * float32 (no TF32). Quantized weights are dequantized (dq8, the values of
 * the CPU's dequantizers) into an f16 scratch matrix, a slice of rows at a
 * time, and multiplied from there. The activations go in as f16 (bf16 for
 * BF16 weights), each token scaled by a power of two so that its largest
 * value is near 2^10 (no overflow, and the scale undone exactly on the
 * result); for float weights they go in twice, as a high and a low part
 * (x = hi + lo, two products summed in float32), so that the product keeps
 * about 22 bits of each activation, as the CPU's float32 kernels do
 * (TL_CUDA_SPLIT=0 turns the low part off). Quantized weights take the high
 * part only: the CPU rounds their activations to 8 bits.
 *
 * The HIP build has no BLAS (Debian ships no hipBLAS or rocBLAS): there
 * blas_open says so and batches take the backend's own kernels. */
#ifdef TL_HIP
typedef struct blas_api {
  void *lib; /* always NULL */
} blas_api;

static bool blas_open(blas_api *a, cudaStream_t stream, char *why, size_t why_len) {
  a->lib = NULL;
  snprintf(why, why_len, "the hip build has no BLAS");
  return false;
}

static void blas_close(blas_api *a) {}
#else
#include <cublas_api.h>
#include <dlfcn.h>

typedef cublasStatus_t (*pf_cublas_create)(cublasHandle_t *);
typedef cublasStatus_t (*pf_cublas_destroy)(cublasHandle_t);
typedef cublasStatus_t (*pf_cublas_set_stream)(cublasHandle_t, cudaStream_t);
typedef cublasStatus_t (*pf_cublas_gemm_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t,
                                            int, int, int, const void *, const void *, cudaDataType,
                                            int, const void *, cudaDataType, int, const void *,
                                            void *, cudaDataType, int, cublasComputeType_t,
                                            cublasGemmAlgo_t);

typedef struct blas_api {
  void *lib;
  cublasHandle_t h;
  pf_cublas_destroy destroy;
  pf_cublas_gemm_ex gemm;
} blas_api;

/* cuBLAS for this stream, or false (and a reason) where it cannot be had. */
static bool blas_open(blas_api *a, cudaStream_t stream, char *why, size_t why_len) {
  static const char *names[] = {"libcublas.so.13", "libcublas.so.12", "libcublas.so",
                                "/usr/local/cuda/lib64/libcublas.so.13",
                                "/usr/local/cuda/lib64/libcublas.so.12"};
  memset(a, 0, sizeof *a);
  for (size_t i = 0; i < sizeof names / sizeof *names && !a->lib; i++)
    a->lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
  if (!a->lib) {
    snprintf(why, why_len, "libcublas.so.13 not found");
    return false;
  }
  pf_cublas_create create = (pf_cublas_create)dlsym(a->lib, "cublasCreate_v2");
  pf_cublas_set_stream set_stream = (pf_cublas_set_stream)dlsym(a->lib, "cublasSetStream_v2");
  a->destroy = (pf_cublas_destroy)dlsym(a->lib, "cublasDestroy_v2");
  a->gemm = (pf_cublas_gemm_ex)dlsym(a->lib, "cublasGemmEx");
  if (!create || !set_stream || !a->destroy || !a->gemm) {
    snprintf(why, why_len, "libcublas lacks cublasGemmEx");
  } else if (create(&a->h) != CUBLAS_STATUS_SUCCESS) {
    snprintf(why, why_len, "cublasCreate failed");
  } else if (set_stream(a->h, stream) != CUBLAS_STATUS_SUCCESS) {
    a->destroy(a->h);
    snprintf(why, why_len, "cublasSetStream failed");
  } else {
    return true;
  }
  dlclose(a->lib);
  memset(a, 0, sizeof *a);
  return false;
}

static void blas_close(blas_api *a) {
  if (!a->lib) return;
  a->destroy(a->h);
  dlclose(a->lib);
  memset(a, 0, sizeof *a);
}

/* Rows r0 .. r0 + nr of a weight as f16 (one thread per 8 values). */
template <int T>
__global__ void k_dequant_h(const uint8_t *__restrict__ W, size_t ldw, int64_t r0, int64_t nr,
                            int cols, __half *__restrict__ out) {
  pdl_entry();
  const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  const int per = cols / 8;
  if (i >= nr * per) return;
  const int64_t r = i / per;
  const int c = (int)(i % per);
  constexpr int CPB = blk<T>::n / 8;
  float v[8];
  dq8<T>(W + (size_t)(r0 + r) * ldw + (size_t)(c / CPB) * blk<T>::bytes, c % CPB, v);
  __align__(16) __half h[8];
#pragma unroll
  for (int j = 0; j < 8; j++) h[j] = __float2half_rn(v[j]);
  *(int4 *)(out + r * cols + 8 * (int64_t)c) = *(const int4 *)h;
}

/* One block per token: s[t] = a power of two with max |x[t]| / s[t] in
 * [2^9, 2^10) (1 for a zero row); hi = x / s in E, lo = x / s - hi (where
 * lo is not NULL). */
template <typename E>
__device__ __forceinline__ E to_e(float v);
template <>
__device__ __forceinline__ __half to_e<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 to_e<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}
template <typename E>
__device__ __forceinline__ float from_e(E v);
template <>
__device__ __forceinline__ float from_e<__half>(__half v) {
  return __half2float(v);
}
template <>
__device__ __forceinline__ float from_e<__nv_bfloat16>(__nv_bfloat16 v) {
  return __bfloat162float(v);
}

template <typename E>
__global__ void k_split_x(const float *__restrict__ x, int cols, E *__restrict__ hi,
                          E *__restrict__ lo, float *__restrict__ s) {
  pdl_entry();
  __shared__ float sh[1024 / TL_WARP]; /* a warp's maximum each (block_max) */
  const float *xr = x + (size_t)blockIdx.x * cols;
  float m = 0.0f;
  for (int i = threadIdx.x; i < cols; i += blockDim.x) m = fmaxf(m, fabsf(xr[i]));
  m = block_max(m, sh);
  int e = 0;
  if (m > 0.0f && isfinite(m)) frexpf(m, &e); /* m = f * 2^e, f in [0.5, 1) */
  const float sc = ldexpf(1.0f, e - 10), inv = ldexpf(1.0f, 10 - e);
  if (threadIdx.x == 0) s[blockIdx.x] = sc;
  E *hr = hi + (size_t)blockIdx.x * cols, *lr = lo ? lo + (size_t)blockIdx.x * cols : NULL;
  for (int i = threadIdx.x; i < cols; i += blockDim.x) {
    const float v = xr[i] * inv;
    const E h = to_e<E>(v);
    hr[i] = h;
    if (lr) lr[i] = to_e<E>(v - from_e<E>(h));
  }
}

/* y[t][r] = y[t][r] * s[t] (+ bias[r]) */
__global__ void k_gemm_finish(float *__restrict__ y, int64_t ldy, int rows, int n,
                              const float *__restrict__ s, const float *__restrict__ bias) {
  pdl_entry();
  const int t = blockIdx.y;
  const float sc = s ? s[t] : 1.0f;
  for (int r = blockIdx.x * blockDim.x + threadIdx.x; r < rows; r += gridDim.x * blockDim.x)
    y[(size_t)t * ldy + r] = y[(size_t)t * ldy + r] * sc + (bias ? bias[r] : 0.0f);
}
#endif /* TL_HIP */
