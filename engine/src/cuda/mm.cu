/* cuda/mm.cu - the GEMM kernels: y[t][n] = sum_k W[n][k] * x[t][k] for one weight segment
 * (cu_mm), dense or grouped by expert (MoE), with FP8/BF16/F32 weights dequantized in registers.
 *
 * k_mm_simt (CUDA cores, exact): a warp owns MM_ROWS weight rows and walks K in 16-byte chunks of
 *   weights, lane l taking chunks l, l+32, l+64, ...; every (row, token) accumulator is one fp32
 *   FMA chain over the lane's chunks in k order, then a fixed butterfly sum over the lanes. That
 *   order depends on K and the dtype only, never on T, the token tile, grouping or the grid: the
 *   kernel is batch invariant. Tokens run in tiles of TT (1, 2, 4 or 8) so the weight chunk in
 *   registers serves TT tokens; the warp loops over all token tiles before leaving its rows, so a
 *   weight row comes from HBM once per call (decode reads each weight byte once).
 *   Weights: f32, bf16 (<< 16) and e4m3 (bit placement * 2^120, exact) times the block scale in
 *   fp32: bitwise the CPU's dequantized value.
 *
 * k_mm_tc (tensor cores, WMMA bf16 16x16x16, fp32 accumulate): 64 weight rows x 32 tokens per
 *   block, K in steps of 32 through shared memory. With `split`, activations are stored as bf16
 *   hi = rn(x) and lo = rn(x - hi) and both are multiplied (and weights that are not bf16 are
 *   split the same way after dequantization), so each operand carries ~16 mantissa bits: about
 *   1e-5 relative to float32, against ~1e-3 for plain bf16. Not batch invariant (different
 *   reduction order from the SIMT kernel); the host picks it for T > simt_max_tokens.
 */
#include "cuda/common.cuh"

#include <mma.h>

#define MM_ROWS 4
#define MM_WARPS 4

// ==== CUDA-core kernel ===========================================================================

// Resolves the token range and matrix of this block (dense or grouped); false when idle.
__device__ __forceinline__ bool mm_range(const cu_mm &p, int slot, int64_t *t0, int64_t *t1, int *mat)
{
    if (p.g_off) {
        if (slot >= *p.g_n_active) return false;
        const int e = p.g_active[slot];
        *mat = e;
        *t0 = p.g_off[e];
        *t1 = p.g_off[e + 1];
    } else {
        *mat = p.mat;
        *t0 = 0;
        *t1 = p.T;
    }
    return *t1 > *t0;
}

// FP8 k-block of column k (a shift for the usual power-of-two block width).
__device__ __forceinline__ int kblock(const cu_mm &p, int64_t k)
{
    return p.bk_shift >= 0 ? (int)(k >> p.bk_shift) : (int)k / p.block_k;
}

template <int DT, int TT>
__global__ void __launch_bounds__(MM_WARPS * 32) k_mm_simt(cu_mm p)
{
    using WV = wvec<DT>;
    constexpr int VEC = WV::VEC;
    constexpr size_t ES = DT == ENG_DTYPE_F32 ? 4 : DT == ENG_DTYPE_BF16 ? 2 : 1;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    int64_t t0, t1;
    int mat;
    if (!mm_range(p, blockIdx.y, &t0, &t1, &mat)) return;
    const int64_t r0 = ((int64_t)blockIdx.x * MM_WARPS + warp) * MM_ROWS;
    if (r0 >= p.rows) return;
    const int nr = (int)min((int64_t)MM_ROWS, p.rows - r0);

    const uint8_t *wbase = (const uint8_t *)p.w + ((size_t)mat * p.rows) * p.ld * ES;
    const uint8_t *wr[MM_ROWS];
    const float *sr[MM_ROWS];
#pragma unroll
    for (int r = 0; r < MM_ROWS; r++) {
        const int64_t row = r0 + (r < nr ? r : 0); // rows past the end re-read row r0, never stored
        wr[r] = wbase + (size_t)row * p.ld * ES;
        sr[r] = DT == ENG_DTYPE_F8_E4M3 ? p.scales + (size_t)p.srow[(size_t)mat * p.rows + row] * p.n_kb : nullptr;
    }
    const int64_t n_full = p.K / VEC;  // whole 16-byte chunks
    const int tail = (int)(p.K % VEC); // elements of the last, partial chunk (owned by one lane)

    for (int64_t tb = t0; tb < t1; tb += TT) {
        const int nt = (int)min((int64_t)TT, t1 - tb);
        const float *xr[TT];
#pragma unroll
        for (int i = 0; i < TT; i++) {
            const int64_t q = tb + (i < nt ? i : 0);
            const int64_t xrow = p.x_rows ? p.x_rows[q] : q;
            xr[i] = p.x + (size_t)xrow * p.ldx;
        }
        float acc[MM_ROWS][TT];
#pragma unroll
        for (int r = 0; r < MM_ROWS; r++)
#pragma unroll
            for (int i = 0; i < TT; i++) acc[r][i] = 0.0f;

        for (int64_t c = lane; c < n_full; c += 32) {
            const int64_t k = c * VEC;
            const int kb = DT == ENG_DTYPE_F8_E4M3 ? kblock(p, k) : 0;
            float w[MM_ROWS][VEC];
#pragma unroll
            for (int r = 0; r < MM_ROWS; r++) {
                const uint4 u = __ldg((const uint4 *)(wr[r] + (size_t)k * ES));
                const float s = DT == ENG_DTYPE_F8_E4M3 ? sr[r][kb] : 1.0f;
                WV::load(u, s, w[r]);
            }
#pragma unroll
            for (int i = 0; i < TT; i++) {
                if (TT > 1 && i >= nt) break;
                float xv[VEC];
#pragma unroll
                for (int j = 0; j < VEC; j += 4) {
                    const float4 f = __ldg((const float4 *)(xr[i] + k + j));
                    xv[j] = f.x;
                    xv[j + 1] = f.y;
                    xv[j + 2] = f.z;
                    xv[j + 3] = f.w;
                }
#pragma unroll
                for (int r = 0; r < MM_ROWS; r++)
#pragma unroll
                    for (int j = 0; j < VEC; j++) acc[r][i] = fmaf(w[r][j], xv[j], acc[r][i]);
            }
        }
        if (tail && lane == (int)(n_full % 32)) { // the partial chunk, after this lane's full ones
            const int64_t k = n_full * VEC;
#pragma unroll
            for (int r = 0; r < MM_ROWS; r++) {
                const float s = DT == ENG_DTYPE_F8_E4M3 ? sr[r][kblock(p, k)] : 1.0f;
                for (int j = 0; j < tail; j++) {
                    const float wv = w_elem((eng_dtype)DT, wr[r], k + j, s);
#pragma unroll
                    for (int i = 0; i < TT; i++)
                        if (i < nt) acc[r][i] = fmaf(wv, xr[i][k + j], acc[r][i]);
                }
            }
        }
#pragma unroll
        for (int i = 0; i < TT; i++) {
            if (TT > 1 && i >= nt) break; // warp-uniform
#pragma unroll
            for (int r = 0; r < MM_ROWS; r++) {
                const float v = warp_sum(acc[r][i]);
                if (lane == 0 && r < nr) p.y[(size_t)(tb + i) * p.ldy + r0 + r] = v;
            }
        }
    }
}

template <int DT> static void launch_simt_dt(const cu_mm *p, int tt, dim3 grid, cudaStream_t s)
{
    switch (tt) {
    case 1:
        k_mm_simt<DT, 1><<<grid, MM_WARPS * 32, 0, s>>>(*p);
        break;
    case 2:
        k_mm_simt<DT, 2><<<grid, MM_WARPS * 32, 0, s>>>(*p);
        break;
    case 4:
        k_mm_simt<DT, 4><<<grid, MM_WARPS * 32, 0, s>>>(*p);
        break;
    default:
        k_mm_simt<DT, 8><<<grid, MM_WARPS * 32, 0, s>>>(*p);
        break;
    }
}

extern "C" void cu_launch_mm_simt(const cu_mm *p, cudaStream_t s)
{
    if (p->rows <= 0) return;
    // token tile: the smallest power of two covering T (dense) or 8 (grouped: counts unknown here)
    const int T = p->g_off ? 8 : p->T;
    if (!p->g_off && T <= 0) return;
    const int tt = T <= 1 ? 1 : T <= 2 ? 2 : T <= 4 ? 4 : 8;
    dim3 grid(cu_div_up(p->rows, MM_ROWS * MM_WARPS), p->g_off ? (unsigned)p->g_slots : 1u);
    if (grid.y == 0) return;
    switch (p->dtype) {
    case ENG_DTYPE_F32:
        launch_simt_dt<ENG_DTYPE_F32>(p, tt, grid, s);
        break;
    case ENG_DTYPE_BF16:
        launch_simt_dt<ENG_DTYPE_BF16>(p, tt, grid, s);
        break;
    default:
        launch_simt_dt<ENG_DTYPE_F8_E4M3>(p, tt, grid, s);
        break;
    }
    CU_LAUNCH_CHECK();
}

// ==== tensor-core kernel =========================================================================

#define TC_BM 64       // weight rows per block (4 warps x 16)
#define TC_BT 32       // tokens per tile (2 fragments of 16)
#define TC_BK 32       // k per shared-memory stage
#define TC_LDS (TC_BK + 8)  // bf16 row stride in shared memory (a multiple of 8, staggers banks)
#define TC_LDC (TC_BM + 4)  // f32 stride of the output staging tile

using namespace nvcuda;

__device__ __forceinline__ void split_bf16(float v, bool split, __nv_bfloat16 *hi, __nv_bfloat16 *lo)
{
    const __nv_bfloat16 h = __float2bfloat16_rn(v);
    *hi = h;
    *lo = split ? __float2bfloat16_rn(v - __bfloat162float(h)) : __float2bfloat16_rn(0.0f);
}

// Tensor-core GEMM; A_LO: the weights need a lo half (not bf16) when splitting.
template <int DT, bool A_LO>
__global__ void __launch_bounds__(128) k_mm_tc(cu_mm p)
{
    constexpr size_t ES = DT == ENG_DTYPE_F32 ? 4 : DT == ENG_DTYPE_BF16 ? 2 : 1;
    __shared__ __align__(32) __nv_bfloat16 a_hi[TC_BM * TC_LDS];
    __shared__ __align__(32) __nv_bfloat16 a_lo[A_LO ? TC_BM * TC_LDS : 16];
    __shared__ __align__(32) __nv_bfloat16 b_hi[TC_BT * TC_LDS];
    __shared__ __align__(32) __nv_bfloat16 b_lo[TC_BT * TC_LDS];
    __shared__ __align__(32) float c_st[TC_BT * TC_LDC];
    const int tid = threadIdx.x, warp = tid >> 5;
    int64_t t0, t1;
    int mat;
    if (!mm_range(p, p.g_off ? blockIdx.y : 0, &t0, &t1, &mat)) return;
    if (!p.g_off) { // dense: grid.y tiles the tokens
        t0 = (int64_t)blockIdx.y * TC_BT;
        if (t0 >= t1) return;
        t1 = min(t1, t0 + TC_BT);
    }
    const int64_t r0 = (int64_t)blockIdx.x * TC_BM;
    const uint8_t *wbase = (const uint8_t *)p.w + ((size_t)mat * p.rows) * p.ld * ES;
    const bool split = p.split != 0;

    for (int64_t tb = t0; tb < t1; tb += TC_BT) {
        const int nt = (int)min((int64_t)TC_BT, t1 - tb);
        wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2];
        wmma::fill_fragment(acc[0], 0.0f);
        wmma::fill_fragment(acc[1], 0.0f);
        for (int64_t k0 = 0; k0 < p.ld; k0 += TC_BK) {
            // A: 64 rows x 32 k; thread -> row tid / 2, 16 k from (tid % 2) * 16
            {
                const int r = tid >> 1, kk = (tid & 1) * 16;
                const int64_t row = r0 + r, k = k0 + kk;
                float w[16];
                if (row < p.rows && k < p.ld) { // ld is a multiple of 16: 16 stored elements
                    const uint8_t *wr = wbase + ((size_t)row * p.ld + k) * ES;
                    float s = 1.0f;
                    if (DT == ENG_DTYPE_F8_E4M3)
                        s = p.scales[(size_t)p.srow[(size_t)mat * p.rows + row] * p.n_kb + kblock(p, k)];
                    constexpr int VEC = wvec<DT>::VEC;
#pragma unroll
                    for (int j = 0; j < 16; j += VEC) wvec<DT>::load(__ldg((const uint4 *)(wr + j * ES)), s, w + j);
                } else {
#pragma unroll
                    for (int j = 0; j < 16; j++) w[j] = 0.0f;
                }
#pragma unroll
                for (int j = 0; j < 16; j++) {
                    __nv_bfloat16 h, l;
                    split_bf16(w[j], A_LO, &h, &l);
                    a_hi[r * TC_LDS + kk + j] = h;
                    if (A_LO) a_lo[r * TC_LDS + kk + j] = l;
                }
            }
            // B: 32 tokens x 32 k; thread -> token tid / 4, 8 k from (tid % 4) * 8
            {
                const int t = tid >> 2, kk = (tid & 3) * 8;
                const int64_t k = k0 + kk;
                float xv[8];
                if (t < nt) {
                    const int64_t q = tb + t;
                    const float *xr = p.x + (size_t)(p.x_rows ? p.x_rows[q] : q) * p.ldx;
                    if (k + 8 <= p.K) {
                        const float4 f0 = __ldg((const float4 *)(xr + k)), f1 = __ldg((const float4 *)(xr + k + 4));
                        xv[0] = f0.x, xv[1] = f0.y, xv[2] = f0.z, xv[3] = f0.w;
                        xv[4] = f1.x, xv[5] = f1.y, xv[6] = f1.z, xv[7] = f1.w;
                    } else {
#pragma unroll
                        for (int j = 0; j < 8; j++) xv[j] = k + j < p.K ? xr[k + j] : 0.0f;
                    }
                } else {
#pragma unroll
                    for (int j = 0; j < 8; j++) xv[j] = 0.0f;
                }
#pragma unroll
                for (int j = 0; j < 8; j++) {
                    __nv_bfloat16 h, l;
                    split_bf16(xv[j], split, &h, &l);
                    b_hi[t * TC_LDS + kk + j] = h;
                    b_lo[t * TC_LDS + kk + j] = l;
                }
            }
            __syncthreads();
#pragma unroll
            for (int ks = 0; ks < TC_BK; ks += 16) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fa_hi, fa_lo;
                wmma::load_matrix_sync(fa_hi, a_hi + warp * 16 * TC_LDS + ks, TC_LDS);
                if (A_LO) wmma::load_matrix_sync(fa_lo, a_lo + warp * 16 * TC_LDS + ks, TC_LDS);
#pragma unroll
                for (int j = 0; j < 2; j++) {
                    wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> fb_hi, fb_lo;
                    wmma::load_matrix_sync(fb_hi, b_hi + j * 16 * TC_LDS + ks, TC_LDS);
                    wmma::mma_sync(acc[j], fa_hi, fb_hi, acc[j]);
                    if (split) {
                        wmma::load_matrix_sync(fb_lo, b_lo + j * 16 * TC_LDS + ks, TC_LDS);
                        wmma::mma_sync(acc[j], fa_hi, fb_lo, acc[j]);
                    }
                    if (A_LO) wmma::mma_sync(acc[j], fa_lo, fb_hi, acc[j]);
                }
            }
            __syncthreads();
        }
        // accumulators (rows x tokens) -> c_st[token][row] -> y[token][row]
        wmma::store_matrix_sync(c_st + warp * 16, acc[0], TC_LDC, wmma::mem_col_major);
        wmma::store_matrix_sync(c_st + 16 * TC_LDC + warp * 16, acc[1], TC_LDC, wmma::mem_col_major);
        __syncthreads();
        for (int i = tid; i < TC_BT * TC_BM; i += 128) {
            const int t = i / TC_BM, r = i % TC_BM;
            if (t < nt && r0 + r < p.rows) p.y[(size_t)(tb + t) * p.ldy + r0 + r] = c_st[t * TC_LDC + r];
        }
        __syncthreads();
    }
}

template <int DT, bool A_LO> static void launch_tc_dt(const cu_mm *p, dim3 grid, cudaStream_t s)
{
    k_mm_tc<DT, A_LO><<<grid, 128, 0, s>>>(*p);
}

extern "C" void cu_launch_mm_tc(const cu_mm *p, cudaStream_t s)
{
    if (p->rows <= 0) return;
    if (!p->g_off && p->T <= 0) return;
    dim3 grid(cu_div_up(p->rows, TC_BM), p->g_off ? (unsigned)p->g_slots : cu_div_up(p->T, TC_BT));
    if (grid.y == 0) return;
    switch (p->dtype) {
    case ENG_DTYPE_BF16: // bf16 weights are exact in bf16: no lo half
        launch_tc_dt<ENG_DTYPE_BF16, false>(p, grid, s);
        break;
    case ENG_DTYPE_F32:
        if (p->split) launch_tc_dt<ENG_DTYPE_F32, true>(p, grid, s);
        else launch_tc_dt<ENG_DTYPE_F32, false>(p, grid, s);
        break;
    default:
        if (p->split) launch_tc_dt<ENG_DTYPE_F8_E4M3, true>(p, grid, s);
        else launch_tc_dt<ENG_DTYPE_F8_E4M3, false>(p, grid, s);
        break;
    }
    CU_LAUNCH_CHECK();
}

// ==== activation helpers =========================================================================

// hi[t][k] = rn_bf16(x), lo[t][k] = rn_bf16(x - hi) for k < K, zeros for K <= k < ldo.
__global__ void k_split_x(const float *x, int64_t ldx, int T, int64_t K, int64_t ldo, __nv_bfloat16 *hi,
                          __nv_bfloat16 *lo)
{
    const int t = blockIdx.y;
    for (int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; k < ldo; k += (int64_t)gridDim.x * blockDim.x) {
        const float v = k < K ? x[(size_t)t * ldx + k] : 0.0f;
        const __nv_bfloat16 h = __float2bfloat16_rn(v);
        hi[(size_t)t * ldo + k] = h;
        if (lo) lo[(size_t)t * ldo + k] = __float2bfloat16_rn(v - __bfloat162float(h));
    }
}

extern "C" void cu_launch_split_x(const float *x, int64_t ldx, int T, int64_t K, int64_t ldo, void *hi, void *lo,
                                  cudaStream_t s)
{
    if (T <= 0) return;
    dim3 grid(min(cu_div_up(ldo, 256), 64u), (unsigned)T);
    k_split_x<<<grid, 256, 0, s>>>(x, ldx, T, K, ldo, (__nv_bfloat16 *)hi, (__nv_bfloat16 *)lo);
    CU_LAUNCH_CHECK();
}

__global__ void k_copy_rows(const float *x, int64_t ldx, int64_t K, float *out, int64_t ldo)
{
    const int t = blockIdx.y;
    for (int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; k < K; k += (int64_t)gridDim.x * blockDim.x)
        out[(size_t)t * ldo + k] = x[(size_t)t * ldx + k];
}

extern "C" void cu_launch_copy_rows_f32(const float *x, int64_t ldx, int T, int64_t K, float *out, int64_t ldo,
                                        cudaStream_t s)
{
    if (T <= 0 || K <= 0) return;
    dim3 grid(min(cu_div_up(K, 256), 64u), (unsigned)T);
    k_copy_rows<<<grid, 256, 0, s>>>(x, ldx, K, out, ldo);
    CU_LAUNCH_CHECK();
}
