/* cuda/moe.cu - the sparse MoE ops (docs/qwen3-next.md 3.6) on device, with no host round trip:
 * router softmax + top-k, the permutation of (token, slot) pairs by expert, and the combine of a
 * token's expert outputs (in its top-k order) with the sigmoid-gated shared expert. The expert
 * GEMMs themselves are mm.cu's kernels in grouped mode, driven by the offsets built here.
 *
 * The pair order inside an expert comes from atomics (not deterministic), but every pair's GEMM
 * output depends only on its own row, so results are: a token's output depends on its routing
 * alone (batch invariance, as cpu_ops_moe.c).
 */
#include "cuda/common.cuh"

#include <float.h>

// ==== router =====================================================================================

#define ROUTE_WARPS 4
#define ROUTE_EMAX 1024
#define ROUTE_KMAX 32

// One warp per token: softmax over the first E logits, top-k by repeated arg-max (largest value,
// lowest index on ties: the CPU's insertion order), renormalised when `norm`. NaN logits count as
// -FLT_MAX, so the k indices are always distinct valid experts (E >= k), whatever the input.
__global__ void __launch_bounds__(ROUTE_WARPS * 32) k_moe_route(const float *logits, int64_t ldl, int T, int E,
                                                                 int k, bool norm, int32_t *idx, float *wt)
{
    __shared__ float vals[ROUTE_WARPS][ROUTE_EMAX];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int t = blockIdx.x * ROUTE_WARPS + warp;
    if (t >= T) return;
    const float *lg = logits + (size_t)t * ldl;
    float *v = vals[warp];
    float mx = -INFINITY;
    for (int e = lane; e < E; e += 32) { // -inf marks a taken expert, so NaN and -inf become -FLT_MAX
        const float x = lg[e];
        v[e] = (x != x || x < -FLT_MAX) ? -FLT_MAX : x;
        mx = fmaxf(mx, v[e]);
    }
    mx = warp_max(mx);
    float sum = 0.0f;
    for (int e = lane; e < E; e += 32) sum += expf(v[e] - mx);
    sum = warp_sum(sum);
    __syncwarp();
    int32_t sel[ROUTE_KMAX];
    float sv[ROUTE_KMAX];
    for (int i = 0; i < k; i++) {
        float best = 0.0f;
        int bi = -1;
        for (int e = lane; e < E; e += 32) {
            const float x = v[e];
            if (x == -INFINITY) continue; // taken
            if (bi < 0 || x > best) { // lanes scan increasing e: ties keep the lower index
                best = x;
                bi = e;
            }
        }
        // warp arg-max: larger value wins, then lower index; lanes with no candidate lose
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            const float ob = __shfl_xor_sync(0xffffffffu, best, o);
            const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
            if (oi >= 0 && (bi < 0 || ob > best || (ob == best && oi < bi))) {
                best = ob;
                bi = oi;
            }
        }
        sel[i] = bi;
        sv[i] = best;
        if (lane == 0) v[bi] = -INFINITY; // bi >= 0: E >= k untaken experts exist
        __syncwarp();
    }
    if (lane == 0) {
        float tot = 0.0f;
        for (int i = 0; i < k; i++) {
            const float w = expf(sv[i] - mx) / sum;
            wt[(size_t)t * k + i] = w;
            idx[(size_t)t * k + i] = sel[i];
            tot += w;
        }
        if (norm)
            for (int i = 0; i < k; i++) wt[(size_t)t * k + i] /= tot;
    }
}

extern "C" void cu_launch_moe_route(const float *logits, int64_t ldl, int T, int n_experts, int top_k, bool norm,
                                    int32_t *idx, float *wt, cudaStream_t s)
{
    if (T <= 0) return;
    k_moe_route<<<cu_div_up(T, ROUTE_WARPS), ROUTE_WARPS * 32, 0, s>>>(logits, ldl, T, n_experts, top_k, norm, idx,
                                                                        wt);
    CU_LAUNCH_CHECK();
}

// ==== permutation ================================================================================

#define SORT_THREADS 1024

// One block: counts pairs per expert, offsets (exclusive scan), the list of active experts, and
// places every pair q = t*k + s at a position p inside its expert's range: pair_tok[p] = t,
// inv[q] = p. cnt_off: [2E + 1] ints (cursor [E] | off [E + 1]).
__global__ void __launch_bounds__(SORT_THREADS) k_moe_sort(const int32_t *idx, int P, int E, int32_t *cnt_off,
                                                           int32_t *active, int32_t *n_active, int32_t *pair_tok,
                                                           int32_t *inv, int top_k)
{
    int32_t *cur = cnt_off, *off = cnt_off + E;
    for (int e = threadIdx.x; e < E; e += SORT_THREADS) cur[e] = 0;
    __syncthreads();
    for (int q = threadIdx.x; q < P; q += SORT_THREADS) {
        const int e = idx[q];
        if (e >= 0 && e < E) atomicAdd(&cur[e], 1);
    }
    __syncthreads();
    if (threadIdx.x == 0) { // E is a few hundred: a serial scan is cheaper than a barrier dance
        int acc = 0, na = 0;
        for (int e = 0; e < E; e++) {
            off[e] = acc;
            if (cur[e]) active[na++] = e;
            acc += cur[e];
            cur[e] = off[e];
        }
        off[E] = acc;
        *n_active = na;
    }
    __syncthreads();
    for (int q = threadIdx.x; q < P; q += SORT_THREADS) {
        const int e = idx[q];
        if (e < 0 || e >= E) {
            inv[q] = -1;
            continue;
        }
        const int p = atomicAdd(&cur[e], 1);
        pair_tok[p] = q / top_k;
        inv[q] = p;
    }
}

extern "C" void cu_launch_moe_sort(const int32_t *idx, int T, int top_k, int n_experts, int32_t *cnt_off,
                                   int32_t *active, int32_t *n_active, int32_t *pair_tok, int32_t *inv, cudaStream_t s)
{
    k_moe_sort<<<1, SORT_THREADS, 0, s>>>(idx, T * top_k, n_experts, cnt_off, active, n_active, pair_tok, inv, top_k);
    CU_LAUNCH_CHECK();
}

// ==== combine ====================================================================================

// out[t] = sum_j wt[t][j] * y[inv[t][j]] (j order, from zero) + sigmoid(sg[t]) * shared[t].
__global__ void k_moe_combine(const float *y, const int32_t *inv, const float *wt, int top_k, int H,
                              const float *shared, const float *sg, int64_t ld_sg, float *out)
{
    const int t = blockIdx.y;
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= H) return;
    float o = 0.0f;
    for (int j = 0; j < top_k; j++) {
        const int p = inv[(size_t)t * top_k + j];
        if (p < 0) continue;
        o = fmaf(wt[(size_t)t * top_k + j], y[(size_t)p * H + i], o);
    }
    if (shared) o = fmaf(sigmoid_f(sg[(size_t)t * ld_sg]), shared[(size_t)t * H + i], o);
    out[(size_t)t * H + i] = o;
}

extern "C" void cu_launch_moe_combine(const float *y, const int32_t *inv, const float *wt, int top_k, int T, int H,
                                      const float *shared, const float *sg, int64_t ld_sg, float *out, cudaStream_t s)
{
    if (T <= 0) return;
    k_moe_combine<<<dim3(cu_div_up(H, 256), (unsigned)T), 256, 0, s>>>(y, inv, wt, top_k, H, shared, sg, ld_sg, out);
    CU_LAUNCH_CHECK();
}
