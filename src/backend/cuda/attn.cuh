/* Attention over the KV cache. Included by backend_cuda.cu.
 *
 * One block of FA_WARPS warps per (token, query head, split): the visible
 * positions of the token are cut into nsplit equal runs (flash-decoding:
 * a decode step has one token, so its positions are spread over many
 * blocks), and each warp of the block takes every FA_WARPS-th position of
 * its run, two at a time: the lanes hold the head's dimensions (d = lane +
 * TL_WARP i), a score is a warp sum, and the warp keeps an online softmax (its
 * maximum, its sum and its weighted values). The warps are then merged in
 * shared memory; with one split the result is written, with several each
 * split writes its (maximum, sum, values) and k_attn_merge merges them. */
#define FA_WARPS 4
#define FA_THREADS (FA_WARPS * TL_WARP)
#define FA_DMAX 8   /* head_dim <= TL_WARP * FA_DMAX */
#define ATT_MAXS 32 /* the most splits of a token's positions */

/* How many runs a token's len visible positions are cut into: one per
 * tile positions, at most ATT_MAXS. A function of the token alone, so that
 * its attention is computed the same way in any batch. */
__host__ __device__ __forceinline__ int att_ns(int len, int tile) {
  const int ns = (len + tile - 1) / tile;
  return ns < 1 ? 1 : ns > ATT_MAXS ? ATT_MAXS : ns;
}

/* The merge of a (token, head)'s ns split results pp[s * (hd + 2) ..]
 * (values, maximum, sum) into out[hd], by the threads of a block; the same
 * operations where the splits were blocks (k_attn_merge, from global
 * memory) and where one block ran them in turn (shared memory). */
__device__ __forceinline__ void att_merge(const float *pp, int ns, int hd, float *out) {
  float M = -INFINITY;
  for (int s = 0; s < ns; s++) M = fmaxf(M, pp[s * (hd + 2) + hd]);
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    float o = 0.0f, L = 0.0f;
    for (int s = 0; s < ns; s++) {
      const float *ps = pp + s * (hd + 2);
      const float f = ps[hd] == -INFINITY ? 0.0f : __expf(ps[hd] - M);
      o = __fmaf_rn(ps[d], f, o);
      L = __fmaf_rn(ps[hd + 1], f, L);
    }
    out[d] = __fdiv_rn(o, L);
  }
}

/* Blocks (token, head, split): with gridDim.z > 1 block z takes split z of
 * its token (none where the token has fewer), and k_attn_merge merges; with
 * gridDim.z == 1 the block takes its token's splits in turn, keeping their
 * results in shared memory (ns_max * (hd + 2) floats, dynamic), and merges
 * them itself. */
template <typename E>
__global__ void __launch_bounds__(FA_THREADS)
    k_attn(const E *__restrict__ kc, const E *__restrict__ vc, const float *__restrict__ q,
           float *__restrict__ out, float *__restrict__ part, const int32_t *__restrict__ pos,
           const int32_t *__restrict__ seq, int nh, int nkv, int hd, int window, float scale,
           float cap, int layer, int n_seq, int64_t kv_ctx, int tile) {
  pdl_entry();
  extern __shared__ float s_part[];
  __shared__ float s_acc[FA_WARPS][TL_WARP * FA_DMAX], s_m[FA_WARPS], s_l[FA_WARPS];
  const int t = blockIdx.x, h = blockIdx.y;
  const int w = threadIdx.x / TL_WARP, lane = threadIdx.x % TL_WARP;
  const int kvh = h / (nh / nkv), p = pos[t];
  const int j0 = window > 0 && p - window + 1 > 0 ? p - window + 1 : 0;
  const int len = p - j0 + 1, ns = att_ns(len, tile);
  const bool inblock = gridDim.z == 1;
  if (!inblock && (int)blockIdx.z >= ns) return;
  const int per = (len + ns - 1) / ns;
  const size_t base = (((size_t)layer * n_seq + seq[t]) * nkv + kvh) * (size_t)kv_ctx * hd;
  const E *K = kc + base, *V = vc + base;
  const int nd = (hd + TL_WARP - 1) / TL_WARP;
  const float *qh = q + ((size_t)t * nh + h) * hd;
  float qr[FA_DMAX];
#pragma unroll
  for (int i = 0; i < FA_DMAX; i++) {
    const int d = lane + TL_WARP * i;
    qr[i] = i < nd && d < hd ? qh[d] : 0.0f;
  }
  const int sp0 = inblock ? 0 : (int)blockIdx.z, sp1 = inblock ? ns : sp0 + 1;
  for (int sp = sp0; sp < sp1; sp++) {
    const int js = j0 + sp * per, je = js + per < p + 1 ? js + per : p + 1;
    float acc[FA_DMAX];
#pragma unroll
    for (int i = 0; i < FA_DMAX; i++) acc[i] = 0.0f;
    float m = -INFINITY, l = 0.0f;
    for (int j = js + w; j < je; j += 2 * FA_WARPS) {
      const int j2 = j + FA_WARPS;
      const bool two = j2 < je;
      const E *k1 = K + (size_t)j * hd, *k2 = K + (size_t)(two ? j2 : j) * hd;
      const E *v1 = V + (size_t)j * hd, *v2 = V + (size_t)(two ? j2 : j) * hd;
      /* the values are loaded with the keys: their loads do not wait for the
       * scores */
      float s1 = 0.0f, s2 = 0.0f, w1[FA_DMAX], w2[FA_DMAX];
#pragma unroll
      for (int i = 0; i < FA_DMAX; i++) {
        const int d = lane + TL_WARP * i;
        w1[i] = w2[i] = 0.0f;
        if (i < nd && d < hd) {
          s1 = fmaf(qr[i], ld_kv<E>(k1 + d), s1);
          s2 = fmaf(qr[i], ld_kv<E>(k2 + d), s2);
          w1[i] = ld_kv<E>(v1 + d);
          w2[i] = ld_kv<E>(v2 + d);
        }
      }
      s1 = warp_sum(s1) * scale;
      s2 = warp_sum(s2) * scale;
      if (cap > 0) {
        s1 = cap * tanhf(s1 / cap);
        s2 = cap * tanhf(s2 / cap);
      }
      if (!two) s2 = -INFINITY;
      const float mn = fmaxf(m, fmaxf(s1, s2));
      const float corr = __expf(m - mn), p1 = __expf(s1 - mn), p2 = two ? __expf(s2 - mn) : 0.0f;
      l = l * corr + p1 + p2;
      m = mn;
#pragma unroll
      for (int i = 0; i < FA_DMAX; i++) acc[i] = acc[i] * corr + p1 * w1[i] + p2 * w2[i];
    }
    if (lane == 0) {
      s_m[w] = m;
      s_l[w] = l;
    }
#pragma unroll
    for (int i = 0; i < FA_DMAX; i++)
      if (i < nd) s_acc[w][lane + TL_WARP * i] = acc[i];
    __syncthreads();
    float M = -INFINITY;
#pragma unroll
    for (int k = 0; k < FA_WARPS; k++) M = fmaxf(M, s_m[k]);
    float f[FA_WARPS], L = 0.0f;
#pragma unroll
    for (int k = 0; k < FA_WARPS; k++) {
      f[k] = s_m[k] == -INFINITY ? 0.0f : __expf(s_m[k] - M);
      L += s_l[k] * f[k];
    }
    float *pp = inblock ? s_part + (size_t)sp * (hd + 2)
                        : part + (((size_t)t * nh + h) * gridDim.z + sp) * (hd + 2);
    for (int d = threadIdx.x; d < hd; d += FA_THREADS) {
      float o = 0.0f;
#pragma unroll
      for (int k = 0; k < FA_WARPS; k++) o += s_acc[k][d] * f[k];
      if (ns == 1) {
        out[((size_t)t * nh + h) * hd + d] = o / L;
      } else {
        pp[d] = o;
        if (d == 0) pp[hd] = M, pp[hd + 1] = L;
      }
    }
    __syncthreads();
  }
  if (inblock && ns > 1) att_merge(s_part, ns, hd, out + ((size_t)t * nh + h) * hd);
}

/* One block per (token, head): the splits of k_attn (gridDim.z = nz of
 * them) merged, for the tokens with more than one. */
__global__ void k_attn_merge(const float *__restrict__ part, float *__restrict__ out,
                             const int32_t *__restrict__ pos, int nh, int hd, int window, int tile,
                             int nz) {
  pdl_entry();
  const int t = blockIdx.x, h = blockIdx.y, p = pos[t];
  const int j0 = window > 0 && p - window + 1 > 0 ? p - window + 1 : 0;
  const int ns = att_ns(p - j0 + 1, tile);
  if (ns == 1) return;
  att_merge(part + ((size_t)t * nh + h) * nz * (hd + 2), ns, hd, out + ((size_t)t * nh + h) * hd);
}
