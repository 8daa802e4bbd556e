/* Batches of quantized weights on the integer tensor cores (sm_80 and
 * later): the activations in 8 bits per block of 32 (k_quant_q8, the same
 * values the decode matvec multiplies), the weights unpacked to their 8-bit
 * integers in shared memory, the products of each block of 32 summed in
 * int32 by mma.sync (m16n8k32, or two m16n8k16 for Q6_K's 16-value
 * scales), and each block's sum scaled in float32 as the decode kernels
 * scale it. So a batch and a decode step compute the same sums (in another
 * order), unlike the f16 GEMM that a batch took before. Included by
 * backend_cuda.cu after mmvq.cuh (not in the HIP build: the tensor-core
 * instructions are NVIDIA's; batches there take the tiled float kernel);
 * TL_CUDA_MMQ=0 turns it off. */

__device__ __forceinline__ void mma_k32(int *c, const int *a, int b0, int b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};"
      : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}
__device__ __forceinline__ void mma_k16(int *c, int a0, int a1, int b0) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5}, {%6}, "
      "{%0,%1,%2,%3};"
      : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
      : "r"(a0), "r"(a1), "r"(b0));
#endif
}

/* 16 (or 8) bytes from global to shared memory without passing through
 * registers (cp.async, sm_80); zeros where n is 0. */
__device__ __forceinline__ void cp_async16(void *dst, const void *src, int n) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const unsigned d = (unsigned)__cvta_generic_to_shared(dst);
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(d), "l"(src), "r"(n));
#endif
}
__device__ __forceinline__ void cp_async8(void *dst, const void *src, int n) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const unsigned d = (unsigned)__cvta_generic_to_shared(dst);
  asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;" ::"r"(d), "l"(src), "r"(n));
#endif
}
__device__ __forceinline__ void cp_async_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;\ncp.async.wait_group 0;" ::: "memory");
#endif
}

/* A block: MQ_BM rows x MQ_BN tokens, 8 warps of 32 rows x 16 tokens,
 * over MQ_KB blocks of 32 (one super-block) per step. Rows of the tiles in
 * shared memory are MQ_LD words apart (68: the fragment loads of a warp hit
 * 32 different banks); the scales are stored block-major (a warp's rows or
 * tokens of one block side by side). The activations are copied with
 * cp.async while the weights are loaded and unpacked. Each output's 8
 * block terms of a step are added as tree8 adds them, the steps in double
 * precision (see mmvq.cuh). */
#define MQ_BM 64
#define MQ_BN 64
#define MQ_KB 8
#define MQ_LD 68
#define MQ_THREADS 256

template <int T>
__global__ void __launch_bounds__(MQ_THREADS, 2)
    k_mmq(const uint8_t *__restrict__ W, size_t ldw, int rows, int cols,
          const int8_t *__restrict__ xq, const float2 *__restrict__ xd, int n,
          const float *__restrict__ bias, float *__restrict__ y, int64_t ldy) {
  pdl_entry();
  __shared__ __align__(16) int sw[MQ_BM * MQ_LD];
  __shared__ __align__(16) int sx[MQ_BN * MQ_LD];
  __shared__ float4 ss[MQ_KB * MQ_BM]; /* [kb][row]: s0, s1, mn */
  __shared__ float2 sd[MQ_KB * MQ_BN]; /* [kb][token]: dx, dx * sum(q) */
  const int r0 = blockIdx.x * MQ_BM, t0 = blockIdx.y * MQ_BN;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int g = lane >> 2, tg = lane & 3;
  const int wm = (warp & 1) * 32, wn = (warp >> 1) * 16;
  const int nkb = cols / 32;
  double acc[2][2][4];
#pragma unroll
  for (int i = 0; i < 2; i++)
#pragma unroll
    for (int j = 0; j < 2; j++)
#pragma unroll
      for (int e = 0; e < 4; e++) acc[i][j][e] = 0.0;

  for (int kb0 = 0; kb0 < nkb; kb0 += MQ_KB) {
    const int kbv = nkb - kb0 < MQ_KB ? nkb - kb0 : MQ_KB;
    /* the activations: 16 bytes a thread 4 times, the scales 8 bytes twice */
#pragma unroll
    for (int i = 0; i < MQ_BN * MQ_KB * 2 / MQ_THREADS; i++) {
      const int p = tid + MQ_THREADS * i, t = p / (MQ_KB * 2), part = p % (MQ_KB * 2);
      const bool ok = t0 + t < n && part / 2 < kbv;
      cp_async16(sx + t * MQ_LD + 4 * part,
                 ok ? (const void *)(xq + (size_t)(t0 + t) * cols + (size_t)kb0 * 32 + 16 * part)
                    : (const void *)xq,
                 ok ? 16 : 0);
    }
#pragma unroll
    for (int i = 0; i < MQ_BN * MQ_KB / MQ_THREADS; i++) {
      const int p = tid + MQ_THREADS * i, t = p / MQ_KB, kb = p % MQ_KB;
      const bool ok = t0 + t < n && kb < kbv;
      cp_async8(sd + kb * MQ_BN + t,
                ok ? (const void *)(xd + (size_t)(t0 + t) * nkb + kb0 + kb) : (const void *)xd,
                ok ? 8 : 0);
    }
    /* the weights: 2 (row, block) pairs a thread, loaded together */
    int q[2][8];
    float s[2][2], mn[2];
#pragma unroll
    for (int i = 0; i < 2; i++) {
      const int p = tid + MQ_THREADS * i, r = p / MQ_KB, kb = p % MQ_KB;
      const int row = r0 + r < rows ? r0 + r : rows - 1;
      mq_unpack<T>(W + (size_t)row * ldw, kb0 + (kb < kbv ? kb : 0), q[i], s[i], &mn[i]);
    }
#pragma unroll
    for (int i = 0; i < 2; i++) {
      const int p = tid + MQ_THREADS * i, r = p / MQ_KB, kb = p % MQ_KB;
      const bool ok = r0 + r < rows && kb < kbv;
      int4 *dst = (int4 *)(sw + r * MQ_LD + kb * 8);
      dst[0] = ok ? make_int4(q[i][0], q[i][1], q[i][2], q[i][3]) : make_int4(0, 0, 0, 0);
      dst[1] = ok ? make_int4(q[i][4], q[i][5], q[i][6], q[i][7]) : make_int4(0, 0, 0, 0);
      ss[kb * MQ_BM + r] =
          ok ? make_float4(s[i][0], s[i][1], mn[i], 0.0f) : make_float4(0, 0, 0, 0);
    }
    cp_async_wait();
    __syncthreads();
    /* the step's terms of each output, added as tree8 adds them:
     * A = t0 + t1; B = t2 + t3; A += B; B = t4 + t5; C = t6 + t7; B += C;
     * A += B (blocks past the row are zeros) */
    float A[2][2][4], B[2][2][4], C[2][2][4];
#pragma unroll
    for (int kb = 0; kb < MQ_KB; kb++) {
      int a[2][4], b[2][2];
#pragma unroll
      for (int mi = 0; mi < 2; mi++) {
        const int *ar = sw + (wm + 16 * mi + g) * MQ_LD + 8 * kb + tg;
        a[mi][0] = ar[0];
        a[mi][1] = ar[8 * MQ_LD];
        a[mi][2] = ar[4];
        a[mi][3] = ar[8 * MQ_LD + 4];
      }
#pragma unroll
      for (int ni = 0; ni < 2; ni++) {
        const int *br = sx + (wn + 8 * ni + g) * MQ_LD + 8 * kb + tg;
        b[ni][0] = br[0];
        b[ni][1] = br[4];
      }
      float4 ws[2][2];
      float2 xs[2][2];
#pragma unroll
      for (int mi = 0; mi < 2; mi++)
#pragma unroll
        for (int h = 0; h < 2; h++) ws[mi][h] = ss[kb * MQ_BM + wm + 16 * mi + g + 8 * h];
#pragma unroll
      for (int ni = 0; ni < 2; ni++)
#pragma unroll
        for (int e = 0; e < 2; e++) xs[ni][e] = sd[kb * MQ_BN + wn + 8 * ni + 2 * tg + e];
#pragma unroll
      for (int mi = 0; mi < 2; mi++)
#pragma unroll
        for (int ni = 0; ni < 2; ni++) {
          int c0[4] = {0, 0, 0, 0}, c1[4] = {0, 0, 0, 0};
          if (mq_halves<T>::v) {
            mma_k16(c0, a[mi][0], a[mi][1], b[ni][0]);
            mma_k16(c1, a[mi][2], a[mi][3], b[ni][1]);
          } else {
            mma_k32(c0, a[mi], b[ni][0], b[ni][1]);
          }
#pragma unroll
          for (int e = 0; e < 4; e++) {
            const float4 w = ws[mi][e >> 1];
            const float sc[2] = {w.x, w.y};
            const float t = mq_term<T>(sc, w.z, xs[ni][e & 1], c0[e], c1[e]);
            float &a_ = A[mi][ni][e], &b_ = B[mi][ni][e], &c_ = C[mi][ni][e];
            switch (kb) {
              case 0:
                a_ = t;
                break;
              case 1:
                a_ = __fadd_rn(a_, t);
                break;
              case 2:
                b_ = t;
                break;
              case 3:
                b_ = __fadd_rn(b_, t), a_ = __fadd_rn(a_, b_);
                break;
              case 4:
                b_ = t;
                break;
              case 5:
                b_ = __fadd_rn(b_, t);
                break;
              case 6:
                c_ = t;
                break;
              default:
                c_ = __fadd_rn(c_, t), b_ = __fadd_rn(b_, c_), a_ = __fadd_rn(a_, b_);
                acc[mi][ni][e] += (double)a_;
            }
          }
        }
    }
    __syncthreads();
  }
#pragma unroll
  for (int mi = 0; mi < 2; mi++)
#pragma unroll
    for (int ni = 0; ni < 2; ni++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const int r = r0 + wm + 16 * mi + g + 8 * (e >> 1), t = t0 + wn + 8 * ni + 2 * tg + (e & 1);
        if (r < rows && t < n)
          y[(size_t)t * ldy + r] = (float)(acc[mi][ni][e] + (bias ? (double)bias[r] : 0.0));
      }
}
