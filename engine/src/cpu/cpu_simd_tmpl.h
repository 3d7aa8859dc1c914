/* cpu/cpu_simd_tmpl.h - the body of a SIMD primitive table (cpu_kernels.h), included by
 * cpu_simd_avx2.c and cpu_simd_avx512.c after they define:
 *
 *   VL              lanes per vector          vf            the float vector type
 *   VZERO() VLOADU(p) VSTOREU(p, v) VSET1(s) VFMA(a, b, acc) VMUL(a, b)
 *   vload_bf16(const uint8_t *p)   VL bf16 -> f32            vload_f8(const uint8_t *p)  VL e4m3 -> f32
 *   vhsum(vf)                      fixed-order horizontal sum
 *   TABLE_NAME, TABLE_STR          the exported table and its name
 *
 * GEMM: register tiles of 4 weight rows x 3 tokens (12 accumulators), then 4 x 1 for leftover
 * tokens and 1 x 1 for leftover rows. Every output element is one accumulator over k = 0, VL,
 * 2VL, ... (FMA), reduced by vhsum, plus a scalar tail over the last K % VL columns: the same
 * sequence of operations in every tile shape, so the result does not depend on T or on the row
 * range a task covers. Weights are converted in-register (bf16: shift; e4m3: bit placement and a
 * 2^120 rescale, exact for normals and subnormals, then times the block scale, giving exactly the
 * float32 dequantized weight fp8 * scale_inv).
 */

#define TOK_BLOCK 48 /* tokens per pass over a row tile (keeps x in L2) */

static inline float tail_dot(const cpu_wpart *p, int64_t r, int64_t k0, int64_t K, const float *x)
{
    float s = 0.0f;
    for (int64_t k = k0; k < K; k++) s += cpu_w_at(p, r, k) * x[k];
    return s;
}

#define LOADW_F32(row, k, sc) VLOADU((const float *)(const void *)(row) + (k))
#define LOADW_BF16(row, k, sc) vload_bf16((row) + 2 * (k))
#define LOADW_F8(row, k, sc) VMUL(vload_f8((row) + (k)), sc)

/* Defines gemm_<SUF>: the GEMM for one weight dtype. For F8 the k loop runs block by block so the
 * block scale is a register; for the others the "block" is the whole vector part of K. */
#define DEF_GEMM(SUF, LOADW, IS_F8)                                                                              \
    static void gemm_##SUF(const cpu_wpart *p, int64_t r0, int64_t r1, int64_t K, const float *x, int64_t ldx,   \
                           int T, float *y, int64_t ldy)                                                         \
    {                                                                                                            \
        const int64_t Kv = K - K % VL;                                                                           \
        const int64_t bk = IS_F8 ? p->block_k : (Kv > 0 ? Kv : 1);                                               \
        const float one = 1.0f;                                                                                  \
        for (int tb = 0; tb < T; tb += TOK_BLOCK) {                                                              \
            const int tn = T - tb < TOK_BLOCK ? T - tb : TOK_BLOCK;                                              \
            int64_t r = r0;                                                                                      \
            for (; r + 4 <= r1; r += 4) {                                                                        \
                const uint8_t *w0 = p->data + (size_t)r * p->row_bytes;                                          \
                const uint8_t *w1 = w0 + p->row_bytes, *w2 = w1 + p->row_bytes, *w3 = w2 + p->row_bytes;         \
                const float *s0 = IS_F8 ? p->scales + r * p->n_kb : &one;                                        \
                const float *s1 = IS_F8 ? s0 + p->n_kb : &one, *s2 = IS_F8 ? s1 + p->n_kb : &one;                \
                const float *s3 = IS_F8 ? s2 + p->n_kb : &one;                                                   \
                int t = 0;                                                                                       \
                for (; t + 3 <= tn; t += 3) {                                                                    \
                    const float *x0 = x + (size_t)(tb + t) * ldx, *x1 = x0 + ldx, *x2 = x1 + ldx;                \
                    vf a00 = VZERO(), a01 = VZERO(), a02 = VZERO(), a10 = VZERO(), a11 = VZERO(), a12 = VZERO(); \
                    vf a20 = VZERO(), a21 = VZERO(), a22 = VZERO(), a30 = VZERO(), a31 = VZERO(), a32 = VZERO(); \
                    for (int64_t kb = 0, ib = 0; kb < Kv; kb += bk, ib++) {                                      \
                        const int64_t ke = kb + bk < Kv ? kb + bk : Kv;                                          \
                        const vf c0 = VSET1(s0[IS_F8 ? ib : 0]), c1 = VSET1(s1[IS_F8 ? ib : 0]);                 \
                        const vf c2 = VSET1(s2[IS_F8 ? ib : 0]), c3 = VSET1(s3[IS_F8 ? ib : 0]);                 \
                        (void)c0, (void)c1, (void)c2, (void)c3;                                                  \
                        for (int64_t k = kb; k < ke; k += VL) {                                                  \
                            const vf xa = VLOADU(x0 + k), xb = VLOADU(x1 + k), xc = VLOADU(x2 + k);              \
                            vf w = LOADW(w0, k, c0);                                                             \
                            a00 = VFMA(w, xa, a00), a01 = VFMA(w, xb, a01), a02 = VFMA(w, xc, a02);              \
                            w = LOADW(w1, k, c1);                                                                \
                            a10 = VFMA(w, xa, a10), a11 = VFMA(w, xb, a11), a12 = VFMA(w, xc, a12);              \
                            w = LOADW(w2, k, c2);                                                                \
                            a20 = VFMA(w, xa, a20), a21 = VFMA(w, xb, a21), a22 = VFMA(w, xc, a22);              \
                            w = LOADW(w3, k, c3);                                                                \
                            a30 = VFMA(w, xa, a30), a31 = VFMA(w, xb, a31), a32 = VFMA(w, xc, a32);              \
                        }                                                                                        \
                    }                                                                                            \
                    float *y0 = y + (size_t)(tb + t) * ldy + p->out0 + r, *y1 = y0 + ldy, *y2 = y1 + ldy;        \
                    y0[0] = vhsum(a00) + tail_dot(p, r, Kv, K, x0);                                              \
                    y1[0] = vhsum(a01) + tail_dot(p, r, Kv, K, x1);                                              \
                    y2[0] = vhsum(a02) + tail_dot(p, r, Kv, K, x2);                                              \
                    y0[1] = vhsum(a10) + tail_dot(p, r + 1, Kv, K, x0);                                          \
                    y1[1] = vhsum(a11) + tail_dot(p, r + 1, Kv, K, x1);                                          \
                    y2[1] = vhsum(a12) + tail_dot(p, r + 1, Kv, K, x2);                                          \
                    y0[2] = vhsum(a20) + tail_dot(p, r + 2, Kv, K, x0);                                          \
                    y1[2] = vhsum(a21) + tail_dot(p, r + 2, Kv, K, x1);                                          \
                    y2[2] = vhsum(a22) + tail_dot(p, r + 2, Kv, K, x2);                                          \
                    y0[3] = vhsum(a30) + tail_dot(p, r + 3, Kv, K, x0);                                          \
                    y1[3] = vhsum(a31) + tail_dot(p, r + 3, Kv, K, x1);                                          \
                    y2[3] = vhsum(a32) + tail_dot(p, r + 3, Kv, K, x2);                                          \
                }                                                                                                \
                for (; t < tn; t++) {                                                                            \
                    const float *x0 = x + (size_t)(tb + t) * ldx;                                                \
                    vf a0 = VZERO(), a1 = VZERO(), a2 = VZERO(), a3 = VZERO();                                   \
                    for (int64_t kb = 0, ib = 0; kb < Kv; kb += bk, ib++) {                                      \
                        const int64_t ke = kb + bk < Kv ? kb + bk : Kv;                                          \
                        const vf c0 = VSET1(s0[IS_F8 ? ib : 0]), c1 = VSET1(s1[IS_F8 ? ib : 0]);                 \
                        const vf c2 = VSET1(s2[IS_F8 ? ib : 0]), c3 = VSET1(s3[IS_F8 ? ib : 0]);                 \
                        (void)c0, (void)c1, (void)c2, (void)c3;                                                  \
                        for (int64_t k = kb; k < ke; k += VL) {                                                  \
                            const vf xa = VLOADU(x0 + k);                                                        \
                            a0 = VFMA(LOADW(w0, k, c0), xa, a0);                                                 \
                            a1 = VFMA(LOADW(w1, k, c1), xa, a1);                                                 \
                            a2 = VFMA(LOADW(w2, k, c2), xa, a2);                                                 \
                            a3 = VFMA(LOADW(w3, k, c3), xa, a3);                                                 \
                        }                                                                                        \
                    }                                                                                            \
                    float *y0 = y + (size_t)(tb + t) * ldy + p->out0 + r;                                        \
                    y0[0] = vhsum(a0) + tail_dot(p, r, Kv, K, x0);                                               \
                    y0[1] = vhsum(a1) + tail_dot(p, r + 1, Kv, K, x0);                                           \
                    y0[2] = vhsum(a2) + tail_dot(p, r + 2, Kv, K, x0);                                           \
                    y0[3] = vhsum(a3) + tail_dot(p, r + 3, Kv, K, x0);                                           \
                }                                                                                                \
            }                                                                                                    \
            for (; r < r1; r++) {                                                                                \
                const uint8_t *w0 = p->data + (size_t)r * p->row_bytes;                                          \
                const float *s0 = IS_F8 ? p->scales + r * p->n_kb : &one;                                        \
                for (int t = 0; t < tn; t++) {                                                                   \
                    const float *x0 = x + (size_t)(tb + t) * ldx;                                                \
                    vf a0 = VZERO();                                                                             \
                    for (int64_t kb = 0, ib = 0; kb < Kv; kb += bk, ib++) {                                      \
                        const int64_t ke = kb + bk < Kv ? kb + bk : Kv;                                          \
                        const vf c0 = VSET1(s0[IS_F8 ? ib : 0]);                                                 \
                        (void)c0;                                                                                \
                        for (int64_t k = kb; k < ke; k += VL) a0 = VFMA(LOADW(w0, k, c0), VLOADU(x0 + k), a0);   \
                    }                                                                                            \
                    y[(size_t)(tb + t) * ldy + p->out0 + r] = vhsum(a0) + tail_dot(p, r, Kv, K, x0);             \
                }                                                                                                \
            }                                                                                                    \
        }                                                                                                        \
    }

DEF_GEMM(f32, LOADW_F32, 0)
DEF_GEMM(bf16, LOADW_BF16, 0)
DEF_GEMM(f8, LOADW_F8, 1)

static void simd_gemm(const cpu_wpart *p, int64_t r0, int64_t r1, int64_t K, const float *x, int64_t ldx, int T,
                      float *y, int64_t ldy)
{
    switch (p->dtype) {
    case ENG_DTYPE_F32:
        gemm_f32(p, r0, r1, K, x, ldx, T, y, ldy);
        break;
    case ENG_DTYPE_BF16:
        gemm_bf16(p, r0, r1, K, x, ldx, T, y, ldy);
        break;
    default:
        gemm_f8(p, r0, r1, K, x, ldx, T, y, ldy);
        break;
    }
}

static float simd_dot(const float *a, const float *b, int n)
{
    const int nv = n - n % VL;
    vf acc = VZERO();
    for (int k = 0; k < nv; k += VL) acc = VFMA(VLOADU(a + k), VLOADU(b + k), acc);
    float tail = 0.0f;
    for (int k = nv; k < n; k++) tail += a[k] * b[k];
    return vhsum(acc) + tail;
}

static void simd_axpy(float *y, float a, const float *x, int n)
{
    const int nv = n - n % VL;
    const vf va = VSET1(a);
    for (int k = 0; k < nv; k += VL) VSTOREU(y + k, VFMA(va, VLOADU(x + k), VLOADU(y + k)));
    for (int k = nv; k < n; k++) y[k] += a * x[k];
}

static void simd_row_f32(const cpu_wpart *p, int64_t r, int64_t K, float *out)
{
    const uint8_t *row = p->data + (size_t)r * p->row_bytes;
    const int64_t Kv = K - K % VL;
    if (p->dtype == ENG_DTYPE_BF16) {
        for (int64_t k = 0; k < Kv; k += VL) VSTOREU(out + k, vload_bf16(row + 2 * k));
        for (int64_t k = Kv; k < K; k++) out[k] = cpu_w_at(p, r, k);
    } else {
        for (int64_t k = 0; k < K; k++) out[k] = cpu_w_at(p, r, k);
    }
}

const cpu_kernels TABLE_NAME = {
    .name = TABLE_STR,
    .gemm = simd_gemm,
    .dot = simd_dot,
    .axpy = simd_axpy,
    .row_f32 = simd_row_f32,
};
