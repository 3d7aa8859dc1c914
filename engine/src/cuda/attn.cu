/* cuda/attn.cu - the gated full-attention ops (docs/qwen3-next.md 3.4) on device: per-head q/k
 * RMSNorm + partial NeoX RoPE, K/V writes into the paged fp32 pool, and causal GQA attention over
 * the pool with the sigmoid output gate.
 *
 * Attention is flash-decoding style with a split fixed by the row alone: a row at position p has
 * nb = p/64 + 1 context blocks of 64 positions (the CPU's blocks); split z of CU_ATTN_SPLITS takes
 * blocks [z*nb/S, (z+1)*nb/S) and runs the CPU's online softmax over them; a second kernel
 * combines the splits in z order. One block per (row, KV head, split) computes all query heads of
 * the group, so K and V are read once per group. Nothing depends on the other rows of the batch
 * or on whether the row is a decode or a prefill row: batch invariant. Prefill rows are launched
 * CU_ATTN_ROWS at a time (bounds the split scratch).
 */
#include "cuda/common.cuh"

// ==== q/k norm + RoPE ============================================================================

#define ROPE_WARPS 4

__global__ void __launch_bounds__(ROPE_WARPS * 32) k_qk_norm_rope(float *q, int64_t ldq, int n_q, float *k,
                                                                   int64_t ldk, int n_k, int hd, const float *qw,
                                                                   const float *kw, float eps, const int32_t *pos,
                                                                   int rot, const float *inv_freq, float rope_scale)
{
    __shared__ float buf[ROPE_WARPS][CU_ATTN_HDMAX];
    const int t = blockIdx.x, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const float p = (float)pos[t];
    const int half = rot / 2;
    float *bw = buf[warp];
    for (int h = warp; h < n_q + n_k; h += ROPE_WARPS) {
        float *x = h < n_q ? q + (size_t)t * ldq + (size_t)h * hd : k + (size_t)t * ldk + (size_t)(h - n_q) * hd;
        const float *w = h < n_q ? qw : kw;
        float ss = 0.0f;
        for (int i = lane; i < hd; i += 32) ss = fmaf(x[i], x[i], ss);
        ss = warp_sum(ss);
        const float r = 1.0f / sqrtf(ss / (float)hd + eps);
        for (int i = lane; i < hd; i += 32) bw[i] = (x[i] * r) * w[i];
        __syncwarp();
        for (int i = lane; i < hd; i += 32) {
            if (i < rot) {
                const int j = i < half ? i : i - half; // pair (j, j + half)
                const float f = p * inv_freq[j];
                const float cs = cosf(f) * rope_scale, sn = sinf(f) * rope_scale;
                const float x1 = bw[j], x2 = bw[j + half];
                x[i] = i < half ? x1 * cs - x2 * sn : x2 * cs + x1 * sn;
            } else {
                x[i] = bw[i];
            }
        }
        __syncwarp();
    }
}

extern "C" void cu_launch_qk_norm_rope(float *q, int64_t ldq, int n_q, float *k, int64_t ldk, int n_k, int T,
                                       int head_dim, const float *qw, const float *kw, float eps, const int32_t *pos,
                                       int rot_dim, const float *inv_freq, float rope_scale, cudaStream_t s)
{
    if (T <= 0) return;
    k_qk_norm_rope<<<T, ROPE_WARPS * 32, 0, s>>>(q, ldq, n_q, k, ldk, n_k, head_dim, qw, kw, eps, pos, rot_dim,
                                                 inv_freq, rope_scale);
    CU_LAUNCH_CHECK();
}

// ==== KV write ===================================================================================

// Row r's position and the pool row where it lives (-1 when the block table does not cover it,
// which the model's batch check rules out).
__device__ __forceinline__ int64_t kv_row(const cu_batch &b, const qn_kv_view &kv, int layer, int s, int p)
{
    const cu_seq q = b.seqs[s];
    const int bi = p / kv.block_size;
    if (bi >= q.n_blocks) return -1;
    const int blk = b.bt[(size_t)s * b.bt_stride + bi];
    if (blk < 0 || blk >= kv.n_blocks) return -1;
    return ((int64_t)layer * kv.n_blocks + blk) * kv.block_size + p % kv.block_size;
}

__global__ void k_kv_write(cu_batch b, const float *k, int64_t ldk, const float *v, int64_t ldv, int layer,
                           qn_kv_view kv)
{
    const int r = blockIdx.x;
    const int s = b.row2seq[r];
    const cu_seq q = b.seqs[s];
    const int64_t pr = kv_row(b, kv, layer, s, q.pos + (r - q.row0));
    if (pr < 0) return;
    const int n = kv.n_kv_heads * kv.head_dim;
    float *dk = kv.k + (size_t)pr * n, *dv = kv.v + (size_t)pr * n;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        dk[i] = k[(size_t)r * ldk + i];
        dv[i] = v[(size_t)r * ldv + i];
    }
}

extern "C" void cu_launch_kv_write(cu_batch b, const float *k, int64_t ldk, const float *v, int64_t ldv, int layer,
                                   const qn_kv_view *kv, cudaStream_t s)
{
    if (b.T <= 0) return;
    k_kv_write<<<b.T, 128, 0, s>>>(b, k, ldk, v, ldv, layer, *kv);
    CU_LAUNCH_CHECK();
}

// ==== attention ==================================================================================

#define ATT_THREADS 128
#define NS CU_ATTN_SPLITS
#define BLK CU_ATTN_BLOCK

// Partial of (row, query head, split): [m, l, acc[hd]].
__device__ __forceinline__ float *part_at(float *part, int row_local, int n_heads, int qh, int z, int hd)
{
    return part + (((size_t)row_local * n_heads + qh) * NS + z) * (size_t)(hd + 2);
}

__global__ void __launch_bounds__(ATT_THREADS) k_attn_split(cu_batch b, int row_base, const float *q, int64_t ldq,
                                                            qn_attn_dims d, qn_kv_view kv, float *part)
{
    __shared__ float qs[CU_ATTN_REPMAX * CU_ATTN_HDMAX];
    __shared__ float sc[CU_ATTN_REPMAX * BLK];
    __shared__ float mx[CU_ATTN_REPMAX], ls[CU_ATTN_REPMAX], corr[CU_ATTN_REPMAX];
    const int rl = blockIdx.x, r = row_base + rl, kvh = blockIdx.y, z = blockIdx.z;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int s = b.row2seq[r];
    const cu_seq sq = b.seqs[s];
    const int p = sq.pos + (r - sq.row0);
    const int rep = d.n_heads / d.n_kv_heads, hd = d.head_dim;
    const int nb = p / BLK + 1;
    const int b0 = (int)((int64_t)z * nb / NS), b1 = (int)((int64_t)(z + 1) * nb / NS);
    if (b0 >= b1) { // empty split
        if (tid < rep) {
            float *pp = part_at(part, rl, d.n_heads, kvh * rep + tid, z, hd);
            pp[0] = -INFINITY;
            pp[1] = 0.0f;
        }
        return;
    }
    for (int i = tid; i < rep * hd; i += ATT_THREADS)
        qs[i] = q[(size_t)r * ldq + (size_t)kvh * rep * hd + i];
    if (tid < rep) {
        mx[tid] = -INFINITY;
        ls[tid] = 0.0f;
    }
    float acc[CU_ATTN_REPMAX][2];
#pragma unroll
    for (int g = 0; g < CU_ATTN_REPMAX; g++) acc[g][0] = acc[g][1] = 0.0f;
    const size_t kvrow = (size_t)kv.n_kv_heads * hd;
    __syncthreads();

    for (int bb = b0; bb < b1; bb++) {
        const int pos0 = bb * BLK, bl = min(BLK, p + 1 - pos0);
        // scores: one warp per position, lanes over the head dims
        for (int j = warp; j < bl; j += ATT_THREADS / 32) {
            const int64_t pr = kv_row(b, kv, d.layer, s, pos0 + j);
            float kr[CU_ATTN_HDMAX / 32];
#pragma unroll
            for (int i = 0; i < CU_ATTN_HDMAX / 32; i++) {
                const int e = lane + 32 * i;
                kr[i] = (pr >= 0 && e < hd) ? kv.k[(size_t)pr * kvrow + (size_t)kvh * hd + e] : 0.0f;
            }
            for (int g = 0; g < rep; g++) {
                float dot = 0.0f;
#pragma unroll
                for (int i = 0; i < CU_ATTN_HDMAX / 32; i++) {
                    const int e = lane + 32 * i;
                    if (e < hd) dot = fmaf(qs[g * hd + e], kr[i], dot);
                }
                dot = warp_sum(dot);
                if (lane == 0) sc[g * BLK + j] = dot * d.scale;
            }
        }
        __syncthreads();
        // online softmax, one thread per query head (the CPU's order)
        if (tid < rep) {
            float *sg = sc + tid * BLK;
            float bm = sg[0];
            for (int j = 1; j < bl; j++) bm = sg[j] > bm ? sg[j] : bm;
            const float mn = mx[tid] > bm ? mx[tid] : bm;
            float c = 1.0f, l = ls[tid];
            if (mx[tid] != -INFINITY && mx[tid] != mn) {
                c = expf(mx[tid] - mn);
                l *= c;
            }
            for (int j = 0; j < bl; j++) {
                sg[j] = expf(sg[j] - mn);
                l += sg[j];
            }
            mx[tid] = mn;
            ls[tid] = l;
            corr[tid] = c;
        }
        __syncthreads();
        // acc = acc * corr + sum_j p_j v_j
#pragma unroll
        for (int g = 0; g < CU_ATTN_REPMAX; g++)
            if (g < rep && corr[g] != 1.0f) {
                acc[g][0] *= corr[g];
                acc[g][1] *= corr[g];
            }
        for (int j = 0; j < bl; j++) {
            const int64_t pr = kv_row(b, kv, d.layer, s, pos0 + j);
            const float *vp = kv.v + (size_t)(pr >= 0 ? pr : 0) * kvrow + (size_t)kvh * hd;
            const float v0 = tid < hd ? vp[tid] : 0.0f;
            const float v1 = tid + ATT_THREADS < hd ? vp[tid + ATT_THREADS] : 0.0f;
#pragma unroll
            for (int g = 0; g < CU_ATTN_REPMAX; g++)
                if (g < rep) {
                    const float pj = sc[g * BLK + j];
                    acc[g][0] = fmaf(pj, v0, acc[g][0]);
                    acc[g][1] = fmaf(pj, v1, acc[g][1]);
                }
        }
        __syncthreads(); // sc is rewritten by the next block
    }
#pragma unroll
    for (int g = 0; g < CU_ATTN_REPMAX; g++)
        if (g < rep) {
            float *pp = part_at(part, rl, d.n_heads, kvh * rep + g, z, hd);
            if (tid == 0) {
                pp[0] = mx[g];
                pp[1] = ls[g];
            }
            if (tid < hd) pp[2 + tid] = acc[g][0];
            if (tid + ATT_THREADS < hd) pp[2 + tid + ATT_THREADS] = acc[g][1];
        }
}

// out = (sum_z acc_z e^(m_z - M)) / (sum_z l_z e^(m_z - M)) * sigmoid(gate), splits in z order.
__global__ void __launch_bounds__(ATT_THREADS) k_attn_combine(int row_base, const float *gate, int64_t ldgate,
                                                              int n_heads, int hd, const float *part, float *out)
{
    const int rl = blockIdx.x, r = row_base + rl, qh = blockIdx.y, tid = threadIdx.x;
    float M = -INFINITY;
    for (int z = 0; z < NS; z++) {
        const float m = part_at((float *)part, rl, n_heads, qh, z, hd)[0];
        M = m > M ? m : M;
    }
    float L = 0.0f, a0 = 0.0f, a1 = 0.0f;
    for (int z = 0; z < NS; z++) {
        const float *pp = part_at((float *)part, rl, n_heads, qh, z, hd);
        if (pp[0] == -INFINITY) continue; // empty split
        const float f = expf(pp[0] - M);
        L = fmaf(pp[1], f, L);
        if (tid < hd) a0 = fmaf(pp[2 + tid], f, a0);
        if (tid + ATT_THREADS < hd) a1 = fmaf(pp[2 + tid + ATT_THREADS], f, a1);
    }
    const float inv = 1.0f / L;
    const float *gt = gate + (size_t)r * ldgate + (size_t)qh * hd;
    float *o = out + (size_t)r * n_heads * hd + (size_t)qh * hd;
    if (tid < hd) o[tid] = (a0 * inv) * sigmoid_f(gt[tid]);
    if (tid + ATT_THREADS < hd) o[tid + ATT_THREADS] = (a1 * inv) * sigmoid_f(gt[tid + ATT_THREADS]);
}

extern "C" void cu_launch_attention(cu_batch b, const float *q, int64_t ldq, const float *gate, int64_t ldgate,
                                    const qn_attn_dims *d, const qn_kv_view *kv, float *part, float *out,
                                    cudaStream_t s)
{
    for (int r0 = 0; r0 < b.T; r0 += CU_ATTN_ROWS) {
        const int n = b.T - r0 < CU_ATTN_ROWS ? b.T - r0 : CU_ATTN_ROWS;
        k_attn_split<<<dim3((unsigned)n, (unsigned)d->n_kv_heads, NS), ATT_THREADS, 0, s>>>(b, r0, q, ldq, *d, *kv,
                                                                                            part);
        CU_LAUNCH_CHECK();
        k_attn_combine<<<dim3((unsigned)n, (unsigned)d->n_heads), ATT_THREADS, 0, s>>>(r0, gate, ldgate, d->n_heads,
                                                                                       d->head_dim, part, out);
        CU_LAUNCH_CHECK();
    }
}

// Floats of split scratch the attention op needs for n_heads heads of head_dim.
extern "C" size_t cu_attn_part_floats(int n_heads, int head_dim)
{
    return (size_t)CU_ATTN_ROWS * (size_t)n_heads * NS * (size_t)(head_dim + 2);
}
