/* The GPU vendor header of the CUDA backend: the one place where the same
 * sources become the CUDA backend (nvcc) or the HIP backend (hipcc, AMD
 * GPUs). Under nvcc it includes the CUDA headers and defines the three
 * constants TL_WARP, TL_GPU_NAME and TL_GPU_API, nothing else (the machine
 * code is the same as with the CUDA headers included directly).
 * Under hipcc (__HIP__) it includes HIP's and maps every CUDA runtime name
 * the backend uses to HIP's (cudaMalloc -> hipMalloc, ...), and supplies
 * the few device intrinsics HIP lacks with the same results (__dp4a,
 * __vsub4, __reduce_add_sync). Where the hardware differs it says so with
 * an #if here, or, for NVIDIA-only paths (programmatic dependent launch,
 * the int8 mma / cp.async kernel in mmq.cuh, cuBLAS), with #ifdef TL_HIP
 * around them in the backend, which then takes its portable path.
 *
 * Warps: the kernels' reductions and lane arithmetic are written for warps
 * of TL_WARP = 32 lanes. NVIDIA GPUs and AMD's RDNA (gfx10, gfx11, wave32)
 * run 32-lane warps; CDNA (gfx9: gfx90a) runs 64-lane wavefronts, each of
 * which then holds two of these warps: every shuffle below is given the
 * width TL_WARP, so that it stays within its 32 lanes, and a kernel computes
 * the same sums, in the same order, on either. Included first by
 * backend_cuda.cu. */
#ifndef TL_GPU_CUH
#define TL_GPU_CUH

/* The lanes of a warp in the kernels' logic (lane = threadIdx.x % TL_WARP,
 * the strides of lanes over a row, the shuffles' reach). */
#define TL_WARP 32

#if defined(__HIP__)

#define TL_HIP 1
#define TL_GPU_NAME "hip"
#define TL_GPU_API "HIP"

#include <hip/hip_bfloat16.h>
#include <hip/hip_fp16.h>
#include <hip/hip_runtime.h>

#if defined(__HIP_DEVICE_COMPILE__) && __AMDGCN_WAVEFRONT_SIZE % TL_WARP != 0
#error "a wavefront must hold whole warps of TL_WARP lanes"
#endif

/* ---- the runtime ---- */
#define cudaDeviceProp hipDeviceProp_t
#define cudaError_t hipError_t
#define cudaErrorInvalidValue hipErrorInvalidValue
#define cudaErrorMemoryAllocation hipErrorOutOfMemory
#define cudaErrorUnknown hipErrorUnknown
#define cudaFree hipFree
#define cudaFreeHost hipHostFree
#define cudaGetDeviceCount hipGetDeviceCount
#define cudaGetDeviceProperties hipGetDeviceProperties
#define cudaGetErrorString hipGetErrorString
#define cudaGetLastError hipGetLastError
#define cudaMalloc hipMalloc
#define cudaMallocHost(p, bytes) hipHostMalloc((p), (bytes), hipHostMallocDefault)
#define cudaMemGetInfo hipMemGetInfo
#define cudaMemcpy hipMemcpy
#define cudaMemcpyAsync hipMemcpyAsync
#define cudaMemcpyDeviceToDevice hipMemcpyDeviceToDevice
#define cudaMemcpyDeviceToHost hipMemcpyDeviceToHost
#define cudaMemcpyHostToDevice hipMemcpyHostToDevice
#define cudaMemcpyKind hipMemcpyKind
#define cudaSetDevice hipSetDevice
#define cudaStreamCreateWithFlags hipStreamCreateWithFlags
#define cudaStreamDestroy hipStreamDestroy
#define cudaStreamNonBlocking hipStreamNonBlocking
#define cudaStreamSynchronize hipStreamSynchronize
#define cudaStream_t hipStream_t
#define cudaSuccess hipSuccess

/* graphs: CUDA 12's cudaGraphInstantiate(exec, graph, flags) and
 * cudaGraphExecUpdate(exec, graph, &info) are HIP's ...WithFlags and the
 * four-argument update (the error node not wanted) */
#define cudaGraphDestroy hipGraphDestroy
#define cudaGraphExecDestroy hipGraphExecDestroy
#define cudaGraphExecUpdate tl_hip_graph_exec_update
#define cudaGraphExecUpdateResultInfo hipGraphExecUpdateResult
#define cudaGraphExec_t hipGraphExec_t
#define cudaGraphInstantiate(exec, graph, flags) \
  hipGraphInstantiateWithFlags((exec), (graph), (flags))
#define cudaGraphLaunch hipGraphLaunch
#define cudaGraph_t hipGraph_t
#define cudaStreamBeginCapture hipStreamBeginCapture
#define cudaStreamCaptureModeThreadLocal hipStreamCaptureModeThreadLocal
#define cudaStreamEndCapture hipStreamEndCapture

static inline hipError_t tl_hip_graph_exec_update(hipGraphExec_t exec, hipGraph_t graph,
                                                  hipGraphExecUpdateResult *info) {
  hipGraphNode_t node = NULL; /* the node that failed: not wanted */
  return hipGraphExecUpdate(exec, graph, &node, info);
}

/* ---- device types and intrinsics ---- */
#define __nv_bfloat16 hip_bfloat16
__device__ __forceinline__ float __bfloat162float(hip_bfloat16 v) {
  return static_cast<float>(v); /* the 16 bits as the high half of a float */
}

/* A warp's shuffles: the mask is all lanes in this backend; the width keeps
 * a 64-lane wavefront's two warps apart. */
#define __shfl_xor_sync(mask, v, lane_mask) __shfl_xor((v), (lane_mask), TL_WARP)

/* The sum of an int over the warp's lanes (every lane gets it). */
__device__ __forceinline__ int tl_hip_reduce_add(int v) {
#pragma unroll
  for (int o = TL_WARP / 2; o > 0; o >>= 1) v += __shfl_xor(v, o, TL_WARP);
  return v;
}
#define __reduce_add_sync(mask, v) tl_hip_reduce_add(v)

/* c + the dot product of the 4 signed bytes of a and b (wrapping, as
 * __dp4a): one instruction where the target has it (v_dot4_i32_i8 on CDNA
 * and RDNA2, v_dot4_i32_iu8 with both signed on RDNA3), else four products. */
__device__ __forceinline__ int __dp4a(int a, int b, int c) {
#if defined(__gfx906__) || defined(__gfx908__) || defined(__gfx90a__) || defined(__gfx940__) || \
    defined(__gfx1011__) || defined(__gfx1012__) || defined(__gfx1030__) ||                     \
    defined(__gfx1031__) || defined(__gfx1032__) || defined(__gfx1034__) ||                     \
    defined(__gfx1035__) || defined(__gfx1036__)
  return __builtin_amdgcn_sdot4(a, b, c, false);
#elif defined(__gfx1100__) || defined(__gfx1101__) || defined(__gfx1102__) || defined(__gfx1103__)
  return __builtin_amdgcn_sudot4(true, a, true, b, c, false);
#else
  const unsigned ua = (unsigned)a, ub = (unsigned)b;
  unsigned s = (unsigned)c;
#pragma unroll
  for (int i = 0; i < 32; i += 8)
    s += (unsigned)((int)(signed char)(ua >> i) * (int)(signed char)(ub >> i));
  return (int)s;
#endif
}

/* a - b in each of the 4 bytes, modulo 256 (no borrow between bytes). */
__device__ __forceinline__ unsigned __vsub4(unsigned a, unsigned b) {
  const unsigned h = 0x80808080u;
  return ((a | h) - (b & ~h)) ^ ((a ^ ~b) & h);
}

#else /* CUDA */

#define TL_GPU_NAME "cuda"
#define TL_GPU_API "CUDA"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#endif
#endif
