/* Shared helpers of the kernel tests (test_kernels, test_qkernels): the
 * weight types the CPU backend multiplies, and random weight matrices of
 * them. */
#ifndef TL_WEIGHTUTIL_H
#define TL_WEIGHTUTIL_H

#include "backend/cpu/cpu.h"
#include "quant/quant.h"
#include "testutil.h"

/* The weight types the CPU backend multiplies into out (room for
 * TL_TYPE_COUNT); returns how many. */
int tl_test_cpu_types(uint32_t *out);

/* A random rows x cols weight matrix of a type (malloc'd; rows of
 * *row_bytes bytes): quantized random floats, row r scaled by
 * 1 + r % scale_period, where the type has a quantizer, else random blocks
 * (bytes with bit 6 cleared when needed, which keeps every f16 scale
 * finite). The random numbers are tl_test_frand(rng)'s. */
uint8_t *tl_test_random_weight(uint32_t type, int64_t rows, int64_t cols, int scale_period,
                               uint64_t *rng, size_t *row_bytes);

#endif
