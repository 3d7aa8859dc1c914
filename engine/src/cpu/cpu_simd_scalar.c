/* cpu/cpu_simd_scalar.c - the plain-C primitive table (cpu_kernels.h): runs on any CPU, and is the
 * path the SIMD tables are compared against in tests. Each sum keeps 8 independent partial sums
 * (k mod 8) combined in a fixed order, which the compiler may map onto SSE registers without
 * changing the result, and which keeps this path within a few ulps of the vector ones. */
#include "cpu/cpu_kernels.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

#define LANES 8

/* e4m3fn byte -> float, filled once (cpu_scalar_init) */
static float fp8_lut[256];
static pthread_once_t fp8_once = PTHREAD_ONCE_INIT;

static void fp8_lut_fill(void)
{
    for (int i = 0; i < 256; i++) fp8_lut[i] = eng_fp8e4m3_to_f32((uint8_t)i);
}

void cpu_scalar_init(void)
{
    pthread_once(&fp8_once, fp8_lut_fill);
}

static float lanes_sum(const float *a)
{
    return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
}

/* Converts W[r][k0..k0+n) to f32. */
static void row_chunk(const cpu_wpart *p, int64_t r, int64_t k0, int n, float *out)
{
    const uint8_t *row = p->data + (size_t)r * p->row_bytes;
    switch (p->dtype) {
    case ENG_DTYPE_F32:
        memcpy(out, row + 4 * k0, (size_t)n * 4);
        break;
    case ENG_DTYPE_BF16:
        for (int i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, row + 2 * (k0 + i), 2);
            out[i] = eng_bf16_to_f32(h);
        }
        break;
    default: { /* F8_E4M3: block by block, the scale hoisted */
        const float *sc = p->scales + r * p->n_kb;
        for (int i = 0; i < n;) {
            const int64_t k = k0 + i;
            const int kb = (int)(k / p->block_k);
            int end = (int)((int64_t)(kb + 1) * p->block_k - k0);
            if (end > n) end = n;
            const float s = sc[kb];
            for (; i < end; i++) out[i] = fp8_lut[row[k0 + i]] * s;
        }
        break;
    }
    }
}

#define CHUNK 256
#define ROW_MAX 8192 /* rows up to this length are converted once and kept on the stack */

/* sum_k w[k] x[k] in 8 lanes (k mod 8) plus a tail, in locals so the compiler keeps them in
 * registers (and sanitizer builds stay fast). */
static inline float dot8(const float *w, const float *x, int n)
{
    float a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;
    const int nv = n - n % LANES;
    for (int k = 0; k < nv; k += LANES) {
        a0 += w[k] * x[k];
        a1 += w[k + 1] * x[k + 1];
        a2 += w[k + 2] * x[k + 2];
        a3 += w[k + 3] * x[k + 3];
        a4 += w[k + 4] * x[k + 4];
        a5 += w[k + 5] * x[k + 5];
        a6 += w[k + 6] * x[k + 6];
        a7 += w[k + 7] * x[k + 7];
    }
    float tail = 0;
    for (int k = nv; k < n; k++) tail += w[k] * x[k];
    const float a[LANES] = {a0, a1, a2, a3, a4, a5, a6, a7};
    return lanes_sum(a) + tail;
}

static void gemm_scalar(const cpu_wpart *p, int64_t r0, int64_t r1, int64_t K, const float *x, int64_t ldx, int T,
                        float *y, int64_t ldy)
{
    if (K <= ROW_MAX) {
        float w[ROW_MAX];
        for (int64_t r = r0; r < r1; r++) {
            row_chunk(p, r, 0, (int)K, w);
            for (int t = 0; t < T; t++) y[(size_t)t * ldy + p->out0 + r] = dot8(w, x + (size_t)t * ldx, (int)K);
        }
        return;
    }
    /* long rows: convert CHUNK columns at a time; each (row, token) keeps its 8 lane sums across
     * chunks (CHUNK is a multiple of 8), so the order is the one of dot8 */
    float w[CHUNK];
    enum { TB = 8 };
    float acc[TB][LANES];
    for (int64_t r = r0; r < r1; r++) {
        for (int t0 = 0; t0 < T; t0 += TB) {
            int nt = T - t0 < TB ? T - t0 : TB;
            memset(acc, 0, sizeof acc);
            float tail[TB] = {0};
            for (int64_t k0 = 0; k0 < K; k0 += CHUNK) {
                int n = K - k0 < CHUNK ? (int)(K - k0) : CHUNK;
                row_chunk(p, r, k0, n, w);
                int nv = n - n % LANES;
                bool last = k0 + n == K;
                for (int t = 0; t < nt; t++) {
                    const float *xr = x + (size_t)(t0 + t) * ldx + k0;
                    for (int k = 0; k < nv; k += LANES)
                        for (int j = 0; j < LANES; j++) acc[t][j] += w[k + j] * xr[k + j];
                    if (last)
                        for (int k = nv; k < n; k++) tail[t] += w[k] * xr[k];
                }
            }
            for (int t = 0; t < nt; t++) y[(size_t)(t0 + t) * ldy + p->out0 + r] = lanes_sum(acc[t]) + tail[t];
        }
    }
}

static float dot_scalar(const float *a, const float *b, int n)
{
    return dot8(a, b, n);
}

static void axpy_scalar(float *y, float a, const float *x, int n)
{
    for (int k = 0; k < n; k++) y[k] += a * x[k];
}

static void axpby_scalar(float *y, float a, const float *x, float b, int n)
{
    for (int k = 0; k < n; k++) y[k] = a * x[k] + b * y[k];
}

static void row_f32_scalar(const cpu_wpart *p, int64_t r, int64_t K, float *out)
{
    for (int64_t k0 = 0; k0 < K; k0 += CHUNK) {
        int n = K - k0 < CHUNK ? (int)(K - k0) : CHUNK;
        row_chunk(p, r, k0, n, out + k0);
    }
}

static void mm_scalar(float *C, int64_t ldc, const float *A, int64_t lda, const float *B, int64_t ldb, int M, int N,
                      int Kd, bool acc, bool tri)
{
    for (int i = 0; i < M; i++) {
        const int ka = tri && i + 1 < Kd ? i + 1 : Kd;
        const float *Ai = A + (size_t)i * lda;
        float *Ci = C + (size_t)i * ldc;
        if (!acc)
            for (int n = 0; n < N; n++) Ci[n] = 0.0f;
        for (int a = 0; a < ka; a++) {
            const float x = Ai[a], *Ba = B + (size_t)a * ldb;
            for (int n = 0; n < N; n++) Ci[n] += x * Ba[n];
        }
    }
}

static void expv_scalar(float *y, const float *x, int n)
{
    for (int i = 0; i < n; i++) y[i] = expf(x[i]);
}

static void silu_scalar(float *y, const float *x, int n)
{
    for (int i = 0; i < n; i++) y[i] = x[i] / (1.0f + expf(-x[i]));
}

static void sigmoid_scalar(float *y, const float *x, int n)
{
    for (int i = 0; i < n; i++) y[i] = 1.0f / (1.0f + expf(-x[i]));
}

const cpu_kernels cpu_kernels_scalar = {
    .name = "scalar",
    .gemm = gemm_scalar,
    .dot = dot_scalar,
    .axpy = axpy_scalar,
    .axpby = axpby_scalar,
    .row_f32 = row_f32_scalar,
    .mm = mm_scalar,
    .expv = expv_scalar,
    .silu = silu_scalar,
    .sigmoid = sigmoid_scalar,
};
