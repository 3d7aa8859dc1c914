/* cpu/cpu_kernels.h - the SIMD primitives of the CPU backend, one table per instruction set.
 *
 * cpu_backend.c builds every op from these few primitives, so adding an instruction set means
 * writing one table: the GEMM over a weight part (the hot path of prefill and decode), a dot
 * product and an axpy (attention, GDN), and a row conversion (embedding). The scalar table is plain
 * C and runs everywhere; the AVX2 and AVX-512 tables are generated from one template
 * (cpu_simd_tmpl.h) so that they share their structure, and so their reduction order: each output
 * element is one vector accumulator over k in order, reduced by a fixed horizontal sum, plus a
 * scalar tail - the same whatever the tile, the row range or the number of tokens (batch
 * invariance, backend.h).
 */
#ifndef QN_CPU_KERNELS_H
#define QN_CPU_KERNELS_H

#include "core/dtype.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A run of weight rows in one storage format, as the kernels read it. */
typedef struct cpu_wpart {
    eng_dtype dtype;      /* F32, BF16 or F8_E4M3 */
    const uint8_t *data;  /* row r starts at data + r * row_bytes (any alignment) */
    size_t row_bytes;
    const float *scales;  /* F8_E4M3: [rows][n_kb] per-row block scales (f32), else NULL */
    int n_kb, block_k;    /* F8_E4M3: k blocks per row and their width (multiple of 16) */
    int64_t rows;         /* rows in this part */
    int64_t out0;         /* output row of this part's row 0 within its matrix */
} cpu_wpart;

typedef struct cpu_kernels {
    const char *name;
    /* y[t][p->out0 + r] = sum_k W[r][k] * x[t][k] for r in [r0, r1), t in [0, T). */
    void (*gemm)(const cpu_wpart *p, int64_t r0, int64_t r1, int64_t K, const float *x, int64_t ldx, int T,
                 float *y, int64_t ldy);
    float (*dot)(const float *a, const float *b, int n);
    /* y += a * x */
    void (*axpy)(float *y, float a, const float *x, int n);
    /* y = a * x + b * y */
    void (*axpby)(float *y, float a, const float *x, float b, int n);
    /* out[k] = W[r][k] as f32 */
    void (*row_f32)(const cpu_wpart *p, int64_t r, int64_t K, float *out);
    /* C[i][n] (+)= sum_{a < Kd} A[i][a] B[a][n], i < M, n < N, row-major with leading dimensions;
     * acc: accumulate into C, else overwrite; tri: A[i][a] = 0 for a > i (those terms skipped).
     * Each element is one multiply-add chain over a in increasing order, whatever M, N or the
     * tiling (the chunked GDN's matrix products). */
    void (*mm)(float *C, int64_t ldc, const float *A, int64_t lda, const float *B, int64_t ldb, int M, int N,
               int Kd, bool acc, bool tri);
    /* Elementwise y = e^x, x / (1 + e^-x), 1 / (1 + e^-x) (y may alias x). The SIMD tables use a
     * polynomial exp (within 2 ulp of expf), the same on every lane and tail element, so a value
     * depends only on its input. */
    void (*expv)(float *y, const float *x, int n);
    void (*silu)(float *y, const float *x, int n);
    void (*sigmoid)(float *y, const float *x, int n);
} cpu_kernels;

extern const cpu_kernels cpu_kernels_scalar;
/* Prepares the scalar table's lookup tables; called by every backend creation (idempotent). */
void cpu_scalar_init(void);
extern const cpu_kernels cpu_kernels_avx2;
extern const cpu_kernels cpu_kernels_avx512;

/* Scalar weight element (shared by every table's tails). */
static inline float cpu_w_at(const cpu_wpart *p, int64_t r, int64_t k)
{
    const uint8_t *row = p->data + (size_t)r * p->row_bytes;
    switch (p->dtype) {
    case ENG_DTYPE_F32: {
        float f;
        memcpy(&f, row + 4 * k, 4);
        return f;
    }
    case ENG_DTYPE_BF16: {
        uint16_t h;
        memcpy(&h, row + 2 * k, 2);
        return eng_bf16_to_f32(h);
    }
    default:
        return eng_fp8e4m3_to_f32(row[k]) * p->scales[r * p->n_kb + k / p->block_k];
    }
}

#endif /* QN_CPU_KERNELS_H */
