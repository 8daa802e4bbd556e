/* The boundary between the library and the CUDA backend's shared object
 * (libtorchless-cuda.so), which the library opens with dlopen when a
 * context asks for "cuda" or "auto": so that libtorchless and the CLI start
 * on a machine without a GPU driver, and build without CUDA. The HIP build
 * of the same sources (libtorchless-hip.so, "hip") has the same boundary.
 *
 * The shared object exports one function, TL_CUDA_ENTRY, of type
 * tl_cuda_create_fn. It calls back into the library only through the table
 * it is given (errors and logs), never by symbol. */
#ifndef TL_CUDA_HOST_H
#define TL_CUDA_HOST_H

#include "backend/backend.h"

/* 2: tl_backend.kv_io; 3: moe_route, matmul_id; 4: tl_backend_config.low_mem */
#define TL_CUDA_ABI 4
#define TL_CUDA_ENTRY "tl_cuda_backend_create"
#define TL_CUDA_LIBRARY "libtorchless-cuda.so"
#define TL_HIP_LIBRARY "libtorchless-hip.so"

typedef struct tl_cuda_host {
  int abi; /* TL_CUDA_ABI */
  tl_status (*fail)(tl_status s, const char *fmt, ...);
  void (*log)(tl_log_level level, const char *fmt, ...);
} tl_cuda_host;

typedef tl_status (*tl_cuda_create_fn)(const tl_cuda_host *host, const tl_backend_config *cfg,
                                       tl_backend **out);

#endif
