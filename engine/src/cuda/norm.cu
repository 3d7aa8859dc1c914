/* cuda/norm.cu - row-wise ops: embedding gather, RMSNorm (+ fused residual add), residual add,
 * SiLU-mul, row gather, and the gated RMSNorm of the GDN output. One block (or warp) per row, so
 * a row's result never depends on the other rows; sums use block_sum's fixed order. Formulas and
 * the order of multiplications follow the CPU reference (cpu_ops_basic.c, cpu_ops_gdn.c).
 */
#include "cuda/common.cuh"

#define NORM_THREADS 256

// ==== embedding ==================================================================================

struct embed_segs {
    int n;
    int64_t row0[CU_MAX_SEGS], rows[CU_MAX_SEGS], ld[CU_MAX_SEGS];
    int dtype[CU_MAX_SEGS];
    const void *data[CU_MAX_SEGS];
    const int32_t *srow[CU_MAX_SEGS];
    const float *scales[CU_MAX_SEGS];
    int n_kb[CU_MAX_SEGS], block_k[CU_MAX_SEGS];
};

// out[t][k] = W[ids[t]][k]; an id outside the table gives a zero row (the model checks ids first).
__global__ void k_embed(embed_segs sg, int64_t n_rows, int64_t K, const int32_t *ids, float *out)
{
    const int t = blockIdx.x;
    const int64_t id = ids[t];
    float *o = out + (size_t)t * K;
    int si = -1;
    for (int i = 0; i < sg.n; i++)
        if (id >= sg.row0[i] && id < sg.row0[i] + sg.rows[i]) si = i;
    if (id < 0 || id >= n_rows || si < 0) {
        for (int64_t k = threadIdx.x; k < K; k += blockDim.x) o[k] = 0.0f;
        return;
    }
    const int64_t r = id - sg.row0[si];
    const eng_dtype dt = (eng_dtype)sg.dtype[si];
    const uint8_t *row = (const uint8_t *)sg.data[si] + (size_t)r * sg.ld[si] * dtype_bytes(dt);
    const float *sc = dt == ENG_DTYPE_F8_E4M3 ? sg.scales[si] + (size_t)sg.srow[si][r] * sg.n_kb[si] : nullptr;
    for (int64_t k = threadIdx.x; k < K; k += blockDim.x)
        o[k] = w_elem(dt, row, k, sc ? sc[k / sg.block_k[si]] : 1.0f);
}

extern "C" void cu_launch_embed(const cu_weight *w, const int32_t *ids, int T, float *out, cudaStream_t s)
{
    if (T <= 0) return;
    embed_segs sg = {};
    sg.n = w->n_segs;
    for (int i = 0; i < w->n_segs; i++) {
        const cu_seg *g = &w->segs[i];
        sg.row0[i] = g->row0;
        sg.rows[i] = g->rows;
        sg.ld[i] = g->ld;
        sg.dtype[i] = g->dtype;
        sg.data[i] = g->data;
        sg.srow[i] = g->srow;
        sg.scales[i] = g->scales;
        sg.n_kb[i] = g->n_kb;
        sg.block_k[i] = g->block_k > 0 ? g->block_k : 1;
    }
    k_embed<<<T, NORM_THREADS, 0, s>>>(sg, w->rows, w->cols, ids, out);
    CU_LAUNCH_CHECK();
}

// ==== RMSNorm ====================================================================================

// y = (x * r) * w with r = 1 / sqrt(mean(x^2) + eps). x and y may alias exactly: every element is
// read (pass 2) by the thread that then writes it.
__global__ void k_rmsnorm(const float *x, int64_t ldx, int n, const float *w, float eps, float *y, int64_t ldy)
{
    __shared__ float red[32];
    const float *xr = x + (size_t)blockIdx.x * ldx;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) ss = fmaf(xr[i], xr[i], ss);
    ss = block_sum(ss, red);
    const float r = 1.0f / sqrtf(ss / (float)n + eps);
    float *yr = y + (size_t)blockIdx.x * ldy;
    for (int i = threadIdx.x; i < n; i += blockDim.x) yr[i] = (xr[i] * r) * w[i];
}

extern "C" void cu_launch_rmsnorm(const float *x, int64_t ldx, int T, int n, const float *w, float eps, float *y,
                                  int64_t ldy, cudaStream_t s)
{
    if (T <= 0) return;
    k_rmsnorm<<<T, NORM_THREADS, 0, s>>>(x, ldx, n, w, eps, y, ldy);
    CU_LAUNCH_CHECK();
}

// res += delta; y = rmsnorm(res) (y == NULL: the add only).
__global__ void k_add_rmsnorm(float *res, const float *delta, int n, const float *w, float eps, float *y)
{
    __shared__ float red[32];
    float *r = res + (size_t)blockIdx.x * n;
    const float *d = delta + (size_t)blockIdx.x * n;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        const float v = r[i] + d[i];
        r[i] = v;
        ss = fmaf(v, v, ss);
    }
    if (!y) return; // uniform over the block
    ss = block_sum(ss, red);
    const float rs = 1.0f / sqrtf(ss / (float)n + eps);
    float *yr = y + (size_t)blockIdx.x * n;
    for (int i = threadIdx.x; i < n; i += blockDim.x) yr[i] = (r[i] * rs) * w[i];
}

extern "C" void cu_launch_add_rmsnorm(float *res, const float *delta, int T, int n, const float *w, float eps,
                                      float *y, cudaStream_t s)
{
    if (T <= 0) return;
    k_add_rmsnorm<<<T, NORM_THREADS, 0, s>>>(res, delta, n, w, eps, y);
    CU_LAUNCH_CHECK();
}

extern "C" void cu_launch_add(float *x, const float *delta, int T, int n, cudaStream_t s)
{
    cu_launch_add_rmsnorm(x, delta, T, n, nullptr, 0.0f, nullptr, s);
}

// ==== SiLU-mul, row gather =======================================================================

__global__ void k_silu_mul(const float *gu, int64_t ldgu, int inter, float *out, int64_t ldo)
{
    const float *g = gu + (size_t)blockIdx.y * ldgu, *u = g + inter;
    float *o = out + (size_t)blockIdx.y * ldo;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < inter; i += gridDim.x * blockDim.x)
        o[i] = silu_f(g[i]) * u[i];
}

extern "C" void cu_launch_silu_mul(const float *gu, int64_t ldgu, int T, int inter, float *out, int64_t ldo,
                                   cudaStream_t s)
{
    if (T <= 0 || inter <= 0) return;
    dim3 grid(min(cu_div_up(inter, NORM_THREADS), 32u), (unsigned)T);
    k_silu_mul<<<grid, NORM_THREADS, 0, s>>>(gu, ldgu, inter, out, ldo);
    CU_LAUNCH_CHECK();
}

__global__ void k_get_rows(const float *x, int64_t ldx, int cols, const int32_t *rows, float *out)
{
    const float *src = x + (size_t)rows[blockIdx.x] * ldx;
    float *dst = out + (size_t)blockIdx.x * cols;
    for (int i = threadIdx.x; i < cols; i += blockDim.x) dst[i] = src[i];
}

extern "C" void cu_launch_get_rows(const float *x, int64_t ldx, int cols, const int32_t *rows, int n, float *out,
                                   cudaStream_t s)
{
    if (n <= 0) return;
    k_get_rows<<<n, NORM_THREADS, 0, s>>>(x, ldx, cols, rows, out);
    CU_LAUNCH_CHECK();
}

// ==== gated RMSNorm ==============================================================================

// out[t][h] = w * rmsnorm(o[t][h]) * silu(z[t][h]); one warp per (row, head).
__global__ void k_gated_rmsnorm(const float *o, const float *z, int64_t ldz, int T, int n_heads, int dv,
                                const float *w, float eps, float *out)
{
    const int lane = threadIdx.x & 31;
    const int64_t item = (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (item >= (int64_t)T * n_heads) return;
    const int t = (int)(item / n_heads), h = (int)(item % n_heads);
    const size_t off = (size_t)t * n_heads * dv + (size_t)h * dv;
    const float *x = o + off, *zz = z + (size_t)t * ldz + (size_t)h * dv;
    float ss = 0.0f;
    for (int i = lane; i < dv; i += 32) ss = fmaf(x[i], x[i], ss);
    ss = warp_sum(ss);
    const float r = 1.0f / sqrtf(ss / (float)dv + eps);
    for (int i = lane; i < dv; i += 32) out[off + i] = (w[i] * (x[i] * r)) * silu_f(zz[i]);
}

extern "C" void cu_launch_gated_rmsnorm(const float *o, const float *z, int64_t ldz, int T, int n_heads, int dv,
                                        const float *w, float eps, float *out, cudaStream_t s)
{
    const int64_t items = (int64_t)T * n_heads;
    if (items <= 0) return;
    k_gated_rmsnorm<<<cu_div_up(items, 8), 256, 0, s>>>(o, z, ldz, T, n_heads, dv, w, eps, out);
    CU_LAUNCH_CHECK();
}
