/* cuda/gdn.cu - the Gated DeltaNet ops (docs/qwen3-next.md 3.5) on device: causal conv with its
 * state window, gates, and the gated delta rule with an fp32 state, recurrent for one new token
 * and chunked (64-token chunks aligned to absolute positions, as cpu_ops_gdn.c) for more.
 *
 * Delta rule layout: one block per (sequence, value head [, column slice]); thread c owns column
 * c of the state S [dk][dv] in registers for the whole call. Every step of both forms is then
 * either a reduction over the thread's own column (no synchronisation) or reads shared, read-only
 * per-chunk tensors (normalised Q and K, W, the L/P matrices, gamma), so the arithmetic order of
 * each output element is fixed by its sequence alone: batch invariant, and independent of the
 * column split. The order of every sum matches the CPU reference; only fused multiply-adds and
 * the sum-of-squares order differ (ulps).
 */
#include "cuda/common.cuh"

// ==== conv =======================================================================================

// One thread per (channel, sequence): walks the sequence's new tokens with the last conv_k-1
// inputs in registers (initialised from the slot, or zeros at position 0), writes the SiLU
// outputs, and leaves the last conv_k-1 inputs in the slot.
__global__ void k_gdn_conv(cu_batch b, const float *x, int64_t ldx, int C, const float *w, int K, int layer,
                           qn_state_view st, float *out)
{
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    const cu_seq q = b.seqs[blockIdx.y];
    if (q.n_new <= 0) return;
    constexpr int WN = CU_CONV_KMAX - 1;
    float *state = st.conv + ((size_t)q.slot * st.n_layers + layer) * (size_t)(K - 1) * C;
    const bool fresh = q.pos == 0;
    float win[WN], wt[WN];
#pragma unroll
    for (int j = 0; j < WN; j++) {
        win[j] = (j < K - 1 && !fresh) ? state[(size_t)j * C + c] : 0.0f;
        wt[j] = j < K - 1 ? w[(size_t)j * C + c] : 0.0f;
    }
    const float wcur = w[(size_t)(K - 1) * C + c]; // tap K-1: the current token
    for (int t = 0; t < q.n_new; t++) {
        const float xv = x[(size_t)(q.row0 + t) * ldx + c];
        float o = 0.0f;
#pragma unroll
        for (int j = 0; j < WN; j++)
            if (j < K - 1) o = fmaf(wt[j], win[j], o);
        o = fmaf(wcur, xv, o);
        out[(size_t)(q.row0 + t) * C + c] = silu_f(o);
#pragma unroll
        for (int j = 0; j < WN; j++) {
            const float nxt = j + 1 < WN ? win[j + 1] : 0.0f;
            win[j] = j < K - 2 ? nxt : (j == K - 2 ? xv : win[j]);
        }
    }
#pragma unroll
    for (int j = 0; j < WN; j++)
        if (j < K - 1) state[(size_t)j * C + c] = win[j];
}

extern "C" void cu_launch_gdn_conv(cu_batch b, const float *x, int64_t ldx, int conv_dim, const float *w, int conv_k,
                                   int layer, const qn_state_view *st, float *out, cudaStream_t s)
{
    if (b.n_seqs <= 0) return;
    dim3 grid(cu_div_up(conv_dim, 128), (unsigned)b.n_seqs);
    k_gdn_conv<<<grid, 128, 0, s>>>(b, x, ldx, conv_dim, w, conv_k, layer, *st, out);
    CU_LAUNCH_CHECK();
}

// ==== gates ======================================================================================

__global__ void k_gdn_gates(const float *ba, int64_t ldba, int T, int hv, const float *A_log, const float *dt_bias,
                            float *beta, float *g)
{
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (int64_t)T * hv) return;
    const int t = (int)(i / hv), h = (int)(i % hv);
    const float *b = ba + (size_t)t * ldba, *a = b + hv;
    beta[i] = sigmoid_f(b[h]);
    const float xa = a[h] + dt_bias[h];
    const float sp = xa > 20.0f ? xa : log1pf(expf(xa));
    g[i] = -expf(A_log[h]) * sp;
}

extern "C" void cu_launch_gdn_gates(const float *ba, int64_t ldba, int T, int hv, const float *A_log,
                                    const float *dt_bias, float *beta, float *g, cudaStream_t s)
{
    const int64_t n = (int64_t)T * hv;
    if (n <= 0) return;
    k_gdn_gates<<<cu_div_up(n, 256), 256, 0, s>>>(ba, ldba, T, hv, A_log, dt_bias, beta, g);
    CU_LAUNCH_CHECK();
}

// ==== delta rule: recurrent (one new token) ======================================================

#define GDN_THREADS 128

__device__ __forceinline__ float *gdn_state(const qn_state_view &st, const cu_seq &q, const qn_gdn_dims &d, int h)
{
    return st.ssm + (((size_t)q.slot * st.n_layers + d.layer) * d.n_v_heads + h) * (size_t)d.dk * d.dv;
}

__global__ void __launch_bounds__(GDN_THREADS) k_gdn_rec(cu_batch b, const float *qkv, const float *beta,
                                                         const float *g, qn_gdn_dims d, qn_state_view st, float *out)
{
    const int h = blockIdx.x;
    const cu_seq q = b.seqs[blockIdx.y];
    if (q.n_new != 1) return;
    __shared__ float qs[CU_GDN_DMAX], ks[CU_GDN_DMAX], red[32];
    const int dk = d.dk, dv = d.dv, Hv = d.n_v_heads, Hk = d.n_k_heads, kh = h / (Hv / Hk);
    const size_t C = (size_t)2 * Hk * dk + (size_t)Hv * dv;
    const size_t t = (size_t)q.row0;
    const float *row = qkv + t * C;
    const int j = threadIdx.x;
    const float qv = j < dk ? row[(size_t)kh * dk + j] : 0.0f;
    const float kv = j < dk ? row[(size_t)Hk * dk + (size_t)kh * dk + j] : 0.0f;
    const float sq = block_sum(qv * qv, red);
    const float sk = block_sum(kv * kv, red);
    if (j < dk) {
        qs[j] = (qv * (1.0f / sqrtf(sq + 1e-6f))) * (1.0f / sqrtf((float)dk));
        ks[j] = kv * (1.0f / sqrtf(sk + 1e-6f));
    }
    __syncthreads();
    if (j >= dv) return;
    float *S = gdn_state(st, q, d, h);
    const bool fresh = q.pos == 0;
    float Sc[CU_GDN_DMAX];
#pragma unroll
    for (int a = 0; a < CU_GDN_DMAX; a++) Sc[a] = (a < dk && !fresh) ? S[(size_t)a * dv + j] : 0.0f;
    const float decay = expf(g[t * Hv + h]), bt = beta[t * Hv + h];
    float u = 0.0f;
#pragma unroll
    for (int a = 0; a < CU_GDN_DMAX; a++)
        if (a < dk) {
            Sc[a] *= decay;
            u = fmaf(ks[a], Sc[a], u);
        }
    const float dlt = (row[(size_t)2 * Hk * dk + (size_t)h * dv + j] - u) * bt;
    float o = 0.0f;
#pragma unroll
    for (int a = 0; a < CU_GDN_DMAX; a++)
        if (a < dk) {
            Sc[a] = fmaf(ks[a], dlt, Sc[a]);
            o = fmaf(qs[a], Sc[a], o);
        }
#pragma unroll
    for (int a = 0; a < CU_GDN_DMAX; a++)
        if (a < dk) S[(size_t)a * dv + j] = Sc[a];
    out[t * (size_t)(Hv * dv) + (size_t)h * dv + j] = o;
}

// ==== delta rule: chunked (several new tokens) ===================================================

#define CH CU_GDN_CHUNK
#define LPS (CH + 1) // stride of the L/P matrix

static size_t gdn_chunk_smem(int dk, int dv, int csplit)
{
    const size_t dkp = (size_t)dk + 1, dvs = (size_t)(dv / csplit);
    return (3 * CH * dkp + CH * dvs + (size_t)CH * LPS + 4 * CH) * sizeof(float);
}

// grid (Hv * csplit, n_seqs); block c0 = (blockIdx.x % csplit) * dv / csplit owns state columns
// [c0, c0 + dv / csplit). Shared: Q, K, W [CH][dk+1], U [CH][dv/csplit], LP [CH][CH+1] (L, then P),
// gam, bet, eg, kdec [CH].
__global__ void __launch_bounds__(GDN_THREADS) k_gdn_chunk(cu_batch b, const float *qkv, const float *beta,
                                                           const float *g, qn_gdn_dims d, qn_state_view st,
                                                           int csplit, float *out)
{
    const cu_seq q = b.seqs[blockIdx.y];
    if (q.n_new <= 1) return;
    extern __shared__ float sm[];
    const int h = blockIdx.x / csplit, part = blockIdx.x % csplit;
    const int dk = d.dk, dv = d.dv, Hv = d.n_v_heads, Hk = d.n_k_heads, kh = h / (Hv / Hk);
    const int dkp = dk + 1, dvs = dv / csplit, c0 = part * dvs;
    float *Qs = sm, *Ks = Qs + CH * dkp, *Ws = Ks + CH * dkp, *Us = Ws + CH * dkp, *LP = Us + CH * dvs;
    float *gam = LP + CH * LPS, *bet = gam + CH, *eg = bet + CH, *kdec = eg + CH;
    const size_t C = (size_t)2 * Hk * dk + (size_t)Hv * dv;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const float qscale = 1.0f / sqrtf((float)dk);
    const bool own = tid < dvs; // owns state column c0 + tid
    const int col = c0 + tid;

    float *S = gdn_state(st, q, d, h);
    float Sc[CU_GDN_DMAX];
#pragma unroll
    for (int a = 0; a < CU_GDN_DMAX; a++) Sc[a] = (own && a < dk && q.pos != 0) ? S[(size_t)a * dv + col] : 0.0f;

    int t = 0, p = q.pos;
    while (t < q.n_new) {
        int m = CH - p % CH;
        if (m > q.n_new - t) m = q.n_new - t;
        const size_t r0 = (size_t)q.row0 + t;
        // 1. normalised queries and keys, gates
        for (int i = warp; i < m; i += GDN_THREADS / 32) {
            const float *row = qkv + (r0 + i) * C;
            const float *qr = row + (size_t)kh * dk, *kr = row + (size_t)Hk * dk + (size_t)kh * dk;
            float sq = 0.0f, sk = 0.0f;
            for (int a = lane; a < dk; a += 32) {
                sq = fmaf(qr[a], qr[a], sq);
                sk = fmaf(kr[a], kr[a], sk);
            }
            sq = warp_sum(sq);
            sk = warp_sum(sk);
            const float iq = 1.0f / sqrtf(sq + 1e-6f), ik = 1.0f / sqrtf(sk + 1e-6f);
            for (int a = lane; a < dk; a += 32) {
                Qs[i * dkp + a] = (qr[a] * iq) * qscale;
                Ks[i * dkp + a] = kr[a] * ik;
            }
        }
        if (tid == 0) {
            float acc = 0.0f;
            for (int i = 0; i < m; i++) {
                acc += g[(r0 + i) * Hv + h];
                gam[i] = acc;
                bet[i] = beta[(r0 + i) * Hv + h];
                eg[i] = expf(acc);
            }
            for (int i = 0; i < m; i++) kdec[i] = expf(gam[m - 1] - gam[i]);
        }
        __syncthreads();
        // 2. L (strictly lower): L_ij = beta_i (k_i . k_j) exp(gamma_i - gamma_j)
        for (int idx = tid; idx < m * m; idx += GDN_THREADS) {
            const int i = idx / m, j = idx % m;
            if (j >= i) continue;
            float dot = 0.0f;
            for (int a = 0; a < dk; a++) dot = fmaf(Ks[i * dkp + a], Ks[j * dkp + a], dot);
            LP[i * LPS + j] = (bet[i] * dot) * expf(gam[i] - gam[j]);
        }
        __syncthreads();
        // 3. forward substitution, column-local: W (all dk columns) and this block's U columns
        if (tid < dk) {
            for (int i = 0; i < m; i++) {
                float w = Ks[i * dkp + tid] * (bet[i] * eg[i]);
                for (int j = 0; j < i; j++) w = fmaf(-LP[i * LPS + j], Ws[j * dkp + tid], w);
                Ws[i * dkp + tid] = w;
            }
        }
        if (own) {
            for (int i = 0; i < m; i++) {
                float u = qkv[(r0 + i) * C + (size_t)2 * Hk * dk + (size_t)h * dv + col] * bet[i];
                for (int j = 0; j < i; j++) u = fmaf(-LP[i * LPS + j], Us[j * dvs + tid], u);
                Us[i * dvs + tid] = u;
            }
        }
        __syncthreads();
        // P (lower with diagonal): P_ij = (q_i . k_j) exp(gamma_i - gamma_j), into the L buffer
        for (int idx = tid; idx < m * m; idx += GDN_THREADS) {
            const int i = idx / m, j = idx % m;
            if (j > i) continue;
            float dot = 0.0f;
            for (int a = 0; a < dk; a++) dot = fmaf(Qs[i * dkp + a], Ks[j * dkp + a], dot);
            LP[i * LPS + j] = dot * expf(gam[i] - gam[j]);
        }
        __syncthreads();
        if (own) {
            // 4. U' = U - W S (in place)
            for (int i = 0; i < m; i++) {
                float u = Us[i * dvs + tid];
#pragma unroll
                for (int a = 0; a < CU_GDN_DMAX; a++)
                    if (a < dk) u = fmaf(-Ws[i * dkp + a], Sc[a], u);
                Us[i * dvs + tid] = u;
            }
            // 5. O_i = exp(gamma_i) q_i S + sum_{j <= i} P_ij U'_j
            for (int i = 0; i < m; i++) {
                float o = 0.0f;
#pragma unroll
                for (int a = 0; a < CU_GDN_DMAX; a++)
                    if (a < dk) o = fmaf(Qs[i * dkp + a] * eg[i], Sc[a], o);
                for (int j = 0; j <= i; j++) o = fmaf(LP[i * LPS + j], Us[j * dvs + tid], o);
                out[(r0 + i) * (size_t)(Hv * dv) + (size_t)h * dv + col] = o;
            }
            // 6. S = exp(gamma_last) S + sum_i exp(gamma_last - gamma_i) k_i U'_i^T
            const float dlast = eg[m - 1];
#pragma unroll
            for (int a = 0; a < CU_GDN_DMAX; a++)
                if (a < dk) {
                    float s = Sc[a] * dlast;
                    for (int i = 0; i < m; i++) s = fmaf(Ks[i * dkp + a] * kdec[i], Us[i * dvs + tid], s);
                    Sc[a] = s;
                }
        }
        __syncthreads(); // shared tensors are rewritten by the next chunk
        t += m;
        p += m;
    }
    if (own) {
#pragma unroll
        for (int a = 0; a < CU_GDN_DMAX; a++)
            if (a < dk) S[(size_t)a * dv + col] = Sc[a];
    }
}

extern "C" void cu_launch_gdn(cu_batch b, bool any_single, bool any_multi, int csplit, const float *qkv,
                              const float *beta, const float *g, const qn_gdn_dims *d, const qn_state_view *st,
                              float *out, size_t smem_optin, cudaStream_t s)
{
    if (b.n_seqs <= 0) return;
    if (any_single) {
        dim3 grid((unsigned)d->n_v_heads, (unsigned)b.n_seqs);
        k_gdn_rec<<<grid, GDN_THREADS, 0, s>>>(b, qkv, beta, g, *d, *st, out);
        CU_LAUNCH_CHECK();
    }
    if (any_multi) {
        if (csplit < 1 || d->dv % csplit != 0) csplit = 1;
        size_t smem = gdn_chunk_smem(d->dk, d->dv, csplit);
        CU_ASSERT(smem <= smem_optin);
        CUDA_CHECK(cudaFuncSetAttribute(k_gdn_chunk, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        dim3 grid((unsigned)(d->n_v_heads * csplit), (unsigned)b.n_seqs);
        k_gdn_chunk<<<grid, GDN_THREADS, smem, s>>>(b, qkv, beta, g, *d, *st, csplit, out);
        CU_LAUNCH_CHECK();
    }
}

// Shared memory the chunked kernel needs (for the op's limits check).
extern "C" size_t cu_gdn_chunk_smem(int dk, int dv)
{
    return gdn_chunk_smem(dk, dv, 1);
}
