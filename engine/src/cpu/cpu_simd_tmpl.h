/* cpu/cpu_simd_tmpl.h - the body of a SIMD primitive table (cpu_kernels.h), included by
 * cpu_simd_avx2.c and cpu_simd_avx512.c after they define:
 *
 *   VL              lanes per vector          vf            the float vector type
 *   VZERO() VLOADU(p) VSTOREU(p, v) VSET1(s) VFMA(a, b, acc) VMUL(a, b) VADD VSUB VDIV VMIN VMAX
 *   VROUND(a) (to nearest integer)  VPOW2I(n) (2^n for integer-valued n in [-126, 127])
 *   vload_bf16(const uint8_t *p)   VL bf16 -> f32            vload_f8(const uint8_t *p)  VL e4m3 -> f32
 *   vhsum(vf)                      fixed-order horizontal sum
 *   TABLE_NAME, TABLE_STR          the exported table and its name
 *
 * GEMM: one token (decode) runs 8 weight rows at a time (8 independent FMA chains) with a
 * software prefetch of the rows 16 further on; more tokens run register tiles of 4 weight rows x 3
 * tokens (12 accumulators), with 4 x 1 for leftover tokens and 1 x 1 for leftover rows. Weights
 * are converted in registers (measured on Zen 3: converting a task's rows to an f32 panel first,
 * or 2 x 6 tiles, was slower than converting 4 rows per 3 tokens, because the bf16 tile stays in
 * L1 with the x rows). Every output element is one accumulator over k = 0, VL, 2VL, ... (FMA),
 * reduced by vhsum, plus a scalar tail over the last K % VL columns: the same sequence of
 * operations in every tile shape, so the result does not depend on T or on the row range a task
 * covers. Weights are converted in-register (bf16: shift; e4m3: bit placement and a 2^120
 * rescale, exact for normals and subnormals, then times the block scale, giving exactly the
 * float32 dequantized weight fp8 * scale_inv).
 *
 * Also here: the small row-major matmul of the chunked GDN and attention (mm, one FMA chain per
 * element), and a polynomial exp with SiLU and sigmoid built on it.
 */

#define TOK_BLOCK 48 /* tokens per pass over a row tile (keeps x in L2) */

static inline float tail_dot(const cpu_wpart *p, int64_t r, int64_t k0, int64_t K, const float *x)
{
    float s = 0.0f;
    for (int64_t k = k0; k < K; k++) s += cpu_w_at(p, r, k) * x[k];
    return s;
}

/* The vector part of some weight rows as the micro-kernels read them: row i at d + i * rb; F8
 * rows also have n_kb block scales each at sc + i * n_kb (block width bk). */
typedef struct wview {
    const uint8_t *d;
    size_t rb;
    const float *sc;
    int n_kb;
    int64_t bk;
} wview;

#define PREFETCH_L2(p) __builtin_prefetch((p), 0, 2) /* into L2 */
/* The one-token GEMV prefetches the rows this many rows ahead into L2 (measured on Zen 3: without
 * it 8 interleaved 2 KB row streams run at ~half the streaming-read bandwidth; 16 rows ahead into
 * L2 reaches it). Beyond the end of a task it prefetches the next rows of the matrix, and past the
 * matrix harmless addresses (a prefetch never faults). */
#define GEMV_PF_ROWS 16

static const float no_scale[1] = {1.0f}; /* the scale "rows" of formats without scales */

/* Weight vector of row pointer `row` at column k; `sp` points to the row's scale of the current
 * k block (F8 only). Every path gives bitwise the same f32 vector for the same (row, k). */
#define LOADW_F32(row, k, sp) VLOADU((const float *)(const void *)(row) + (k))
#define LOADW_BF16(row, k, sp) vload_bf16((row) + 2 * (k))
#define LOADW_F8(row, k, sp) VMUL(vload_f8((row) + (k)), VSET1(*(sp)))

/* Walks the k blocks of [0, Kv): for F8 the scale pointers advance one per block; for the other
 * formats there is one block. The body sees kb, ke (the block's range) and ib (its index). */
#define FOR_KBLOCKS(IS_F8, w, Kv, ...)                                                                          \
    do {                                                                                                         \
        const int64_t bk_ = (IS_F8) ? (w)->bk : ((Kv) > 0 ? (Kv) : 1);                                           \
        for (int64_t kb = 0, ib = 0; kb < (Kv); kb += bk_, ib++) {                                               \
            const int64_t ke = kb + bk_ < (Kv) ? kb + bk_ : (Kv);                                                \
            (void)ib;                                                                                            \
            __VA_ARGS__                                                                                          \
        }                                                                                                        \
    } while (0)

/* The same weight vectors for the GEMM below, with the F8 block scale already a vector. */
#define LOADV_F32(row, k, sc) VLOADU((const float *)(const void *)(row) + (k))
#define LOADV_BF16(row, k, sc) vload_bf16((row) + 2 * (k))
#define LOADV_F8(row, k, sc) VMUL(vload_f8((row) + (k)), sc)

/* Defines gemm_<SUF>: the GEMM for one weight dtype (two or more tokens). For F8 the k loop runs
 * block by block so the block scale is a register; for the others the "block" is the whole vector
 * part of K. */
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


/* One-token kernels for one weight format (the decode GEMV). Each output element is one
 * accumulator over k = 0, VL, 2VL, ... < Kv (FMA), reduced by vhsum, as in gemm_<SUF>; the caller
 * adds the scalar tail. The tile shape only decides which elements are computed together, never
 * the order within one.
 *   k8x1: 8 rows (8 independent FMA chains hide the FMA latency; prefetches GEMV_PF_ROWS ahead)
 *   k4x1, k1x1: leftover rows. */
#define DEF_KERNELS(SUF, LOADW, IS_F8, ES)                                                                       \
    static void k8x1_##SUF(const wview *w, int64_t i, int64_t Kv, const float *x0, float *o, bool pf)            \
    {                                                                                                            \
        const uint8_t *w0 = w->d + (size_t)i * w->rb;                                                            \
        const uint8_t *w1 = w0 + w->rb, *w2 = w1 + w->rb, *w3 = w2 + w->rb, *w4 = w3 + w->rb;                    \
        const uint8_t *w5 = w4 + w->rb, *w6 = w5 + w->rb, *w7 = w6 + w->rb;                                      \
        const float *s0 = IS_F8 ? w->sc + i * w->n_kb : no_scale;                                                    \
        const int nkb = w->n_kb;                                                                                 \
        (void)s0, (void)nkb;                                                                                     \
        vf a0 = VZERO(), a1 = VZERO(), a2 = VZERO(), a3 = VZERO(), a4 = VZERO(), a5 = VZERO(), a6 = VZERO();     \
        vf a7 = VZERO();                                                                                         \
        FOR_KBLOCKS(IS_F8, w, Kv, {                                                                              \
            const float *c0 = s0 + ib, *c1 = c0 + nkb, *c2 = c1 + nkb, *c3 = c2 + nkb, *c4 = c3 + nkb;           \
            const float *c5 = c4 + nkb, *c6 = c5 + nkb, *c7 = c6 + nkb;                                          \
            (void)c0, (void)c1, (void)c2, (void)c3, (void)c4, (void)c5, (void)c6, (void)c7;                      \
            for (int64_t k = kb; k < ke; k += VL) {                                                              \
                if (pf && ((k * ES) & 63) == 0) { /* rows GEMV_PF_ROWS on, a line each per 64 bytes done */      \
                    const size_t ra = GEMV_PF_ROWS * w->rb, off = (size_t)k * ES;                                \
                    PREFETCH_L2(w0 + ra + off), PREFETCH_L2(w1 + ra + off), PREFETCH_L2(w2 + ra + off);          \
                    PREFETCH_L2(w3 + ra + off), PREFETCH_L2(w4 + ra + off), PREFETCH_L2(w5 + ra + off);          \
                    PREFETCH_L2(w6 + ra + off), PREFETCH_L2(w7 + ra + off);                                      \
                }                                                                                                \
                const vf xa = VLOADU(x0 + k);                                                                    \
                a0 = VFMA(LOADW(w0, k, c0), xa, a0);                                                             \
                a1 = VFMA(LOADW(w1, k, c1), xa, a1);                                                             \
                a2 = VFMA(LOADW(w2, k, c2), xa, a2);                                                             \
                a3 = VFMA(LOADW(w3, k, c3), xa, a3);                                                             \
                a4 = VFMA(LOADW(w4, k, c4), xa, a4);                                                             \
                a5 = VFMA(LOADW(w5, k, c5), xa, a5);                                                             \
                a6 = VFMA(LOADW(w6, k, c6), xa, a6);                                                             \
                a7 = VFMA(LOADW(w7, k, c7), xa, a7);                                                             \
            }                                                                                                    \
        });                                                                                                      \
        o[0] = vhsum(a0), o[1] = vhsum(a1), o[2] = vhsum(a2), o[3] = vhsum(a3);                                  \
        o[4] = vhsum(a4), o[5] = vhsum(a5), o[6] = vhsum(a6), o[7] = vhsum(a7);                                  \
    }                                                                                                            \
    static void k4x1_##SUF(const wview *w, int64_t i, int64_t Kv, const float *x0, float *o)                     \
    {                                                                                                            \
        const uint8_t *w0 = w->d + (size_t)i * w->rb;                                                            \
        const uint8_t *w1 = w0 + w->rb, *w2 = w1 + w->rb, *w3 = w2 + w->rb;                                      \
        const float *s0 = IS_F8 ? w->sc + i * w->n_kb : no_scale;                                                    \
        const int nkb = w->n_kb;                                                                                 \
        (void)s0, (void)nkb;                                                                                     \
        vf a0 = VZERO(), a1 = VZERO(), a2 = VZERO(), a3 = VZERO();                                               \
        FOR_KBLOCKS(IS_F8, w, Kv, {                                                                              \
            const float *c0 = s0 + ib, *c1 = c0 + nkb, *c2 = c1 + nkb, *c3 = c2 + nkb;                           \
            (void)c0, (void)c1, (void)c2, (void)c3;                                                              \
            for (int64_t k = kb; k < ke; k += VL) {                                                              \
                const vf xa = VLOADU(x0 + k);                                                                    \
                a0 = VFMA(LOADW(w0, k, c0), xa, a0);                                                             \
                a1 = VFMA(LOADW(w1, k, c1), xa, a1);                                                             \
                a2 = VFMA(LOADW(w2, k, c2), xa, a2);                                                             \
                a3 = VFMA(LOADW(w3, k, c3), xa, a3);                                                             \
            }                                                                                                    \
        });                                                                                                      \
        o[0] = vhsum(a0), o[1] = vhsum(a1), o[2] = vhsum(a2), o[3] = vhsum(a3);                                  \
    }                                                                                                            \
    static float k1x1_##SUF(const wview *w, int64_t i, int64_t Kv, const float *x0)                              \
    {                                                                                                            \
        const uint8_t *w0 = w->d + (size_t)i * w->rb;                                                            \
        const float *s0 = IS_F8 ? w->sc + i * w->n_kb : no_scale;                                                    \
        (void)s0;                                                                                                \
        vf a0 = VZERO();                                                                                         \
        FOR_KBLOCKS(IS_F8, w, Kv, {                                                                              \
            const float *c0 = s0 + ib;                                                                           \
            (void)c0;                                                                                            \
            for (int64_t k = kb; k < ke; k += VL) a0 = VFMA(LOADW(w0, k, c0), VLOADU(x0 + k), a0);               \
        });                                                                                                      \
        return vhsum(a0);                                                                                        \
    }                                                                                                            \
    /* Rows [i0, i1) of view w (row i is the part's row r0 + i) times tokens [0, T): y and tails; two  \
     * or more tokens go to gemm_<SUF>. */                                                                       \
    static void rows_##SUF(const cpu_wpart *p, int64_t r0, const wview *w, int64_t i0, int64_t i1, int64_t K,    \
                           const float *x, int64_t ldx, int T, float *y, int64_t ldy)                            \
    {                                                                                                            \
        const int64_t Kv = K - K % VL;                                                                           \
        float o[12];                                                                                             \
        if (T == 1) {                                                                                            \
            float *y0 = y + p->out0 + r0;                                                                        \
            int64_t i = i0;                                                                                      \
            for (; i + 8 <= i1; i += 8) {                                                                        \
                k8x1_##SUF(w, i, Kv, x, o, true);                                                                     \
                for (int j = 0; j < 8; j++) y0[i + j] = o[j] + tail_dot(p, r0 + i + j, Kv, K, x);                \
            }                                                                                                    \
            for (; i + 4 <= i1; i += 4) {                                                                        \
                k4x1_##SUF(w, i, Kv, x, o);                                                                      \
                for (int j = 0; j < 4; j++) y0[i + j] = o[j] + tail_dot(p, r0 + i + j, Kv, K, x);                \
            }                                                                                                    \
            for (; i < i1; i++) y0[i] = k1x1_##SUF(w, i, Kv, x) + tail_dot(p, r0 + i, Kv, K, x);                 \
            return;                                                                                              \
        }                                                                                                        \
        gemm_##SUF(p, r0 + i0, r0 + i1, K, x, ldx, T, y, ldy);                                                 \
    }

DEF_GEMM(f32, LOADV_F32, 0)
DEF_GEMM(bf16, LOADV_BF16, 0)
DEF_GEMM(f8, LOADV_F8, 1)

DEF_KERNELS(f32, LOADW_F32, 0, 4)
DEF_KERNELS(bf16, LOADW_BF16, 0, 2)
DEF_KERNELS(f8, LOADW_F8, 1, 1)

static void simd_gemm(const cpu_wpart *p, int64_t r0, int64_t r1, int64_t K, const float *x, int64_t ldx, int T,
                      float *y, int64_t ldy)
{
    const wview w = {p->data + (size_t)r0 * p->row_bytes, p->row_bytes,
                     p->dtype == ENG_DTYPE_F8_E4M3 ? p->scales + r0 * p->n_kb : NULL, p->n_kb, p->block_k};
    switch (p->dtype) {
    case ENG_DTYPE_F32:
        rows_f32(p, r0, &w, 0, r1 - r0, K, x, ldx, T, y, ldy);
        break;
    case ENG_DTYPE_BF16:
        rows_bf16(p, r0, &w, 0, r1 - r0, K, x, ldx, T, y, ldy);
        break;
    default:
        rows_f8(p, r0, &w, 0, r1 - r0, K, x, ldx, T, y, ldy);
        break;
    }
}

/* ==== small row-major matmul (GDN chunks) ===================================================== */

/* acc[r][0..2) += A[r][a] * B[a][n0 .. n0 + 2VL) over a in [0, ka), for MR rows: one FMA chain per
 * element in increasing a. */
#define MM_TILE(MR)                                                                                              \
    static void mm_tile##MR(float *C, int64_t ldc, const float *A, int64_t lda, const float *B, int64_t ldb,     \
                            int ka, bool acc)                                                                    \
    {                                                                                                            \
        vf c[MR][2];                                                                                             \
        _Pragma("GCC unroll 8") for (int r = 0; r < MR; r++) {                                                   \
            c[r][0] = acc ? VLOADU(C + r * ldc) : VZERO();                                                       \
            c[r][1] = acc ? VLOADU(C + r * ldc + VL) : VZERO();                                                  \
        }                                                                                                        \
        for (int a = 0; a < ka; a++) {                                                                           \
            const vf b0 = VLOADU(B + (size_t)a * ldb), b1 = VLOADU(B + (size_t)a * ldb + VL);                     \
            _Pragma("GCC unroll 8") for (int r = 0; r < MR; r++) {                                               \
                const vf x = VSET1(A[r * lda + a]);                                                              \
                c[r][0] = VFMA(x, b0, c[r][0]);                                                                  \
                c[r][1] = VFMA(x, b1, c[r][1]);                                                                  \
            }                                                                                                    \
        }                                                                                                        \
        _Pragma("GCC unroll 8") for (int r = 0; r < MR; r++) {                                                   \
            VSTOREU(C + r * ldc, c[r][0]);                                                                       \
            VSTOREU(C + r * ldc + VL, c[r][1]);                                                                  \
        }                                                                                                        \
    }
MM_TILE(6)
MM_TILE(3)
MM_TILE(1)

/* C[i][n] (+)= sum_{a < Kd} A[i][a] * B[a][n] for i < M, n < N (row-major, leading dimensions lda,
 * ldb, ldc); acc: add to C, else overwrite. Each element is one FMA chain over a in increasing order
 * (starting from C or 0) in every tile shape and in the scalar column tail, so it depends only on
 * its own row and column. tri: A is lower triangular (A[i][a] = 0 for a > i), whose zero terms are
 * skipped (adding 0 * b leaves a finite chain unchanged). */
static void simd_mm(float *C, int64_t ldc, const float *A, int64_t lda, const float *B, int64_t ldb, int M, int N,
                    int Kd, bool acc, bool tri)
{
    int n0 = 0;
    for (; n0 + 2 * VL <= N; n0 += 2 * VL) {
        int i = 0;
        for (; i + 6 <= M; i += 6) {
            const int ka = tri && i + 6 < Kd ? i + 6 : Kd;
            mm_tile6(C + (size_t)i * ldc + n0, ldc, A + (size_t)i * lda, lda, B + n0, ldb, ka, acc);
        }
        for (; i + 3 <= M; i += 3) {
            const int ka = tri && i + 3 < Kd ? i + 3 : Kd;
            mm_tile3(C + (size_t)i * ldc + n0, ldc, A + (size_t)i * lda, lda, B + n0, ldb, ka, acc);
        }
        for (; i < M; i++) {
            const int ka = tri && i + 1 < Kd ? i + 1 : Kd;
            mm_tile1(C + (size_t)i * ldc + n0, ldc, A + (size_t)i * lda, lda, B + n0, ldb, ka, acc);
        }
    }
    for (int i = 0; i < M; i++) {
        const int ka = tri && i + 1 < Kd ? i + 1 : Kd;
        const float *Ai = A + (size_t)i * lda;
        float *Ci = C + (size_t)i * ldc;
        int n = n0;
        for (; n + VL <= N; n += VL) {
            vf c = acc ? VLOADU(Ci + n) : VZERO();
            for (int a = 0; a < ka; a++) c = VFMA(VSET1(Ai[a]), VLOADU(B + (size_t)a * ldb + n), c);
            VSTOREU(Ci + n, c);
        }
        for (; n < N; n++) {
            float c = acc ? Ci[n] : 0.0f;
            for (int a = 0; a < ka; a++) c = fmaf(Ai[a], B[(size_t)a * ldb + n], c);
            Ci[n] = c;
        }
    }
}

/* ==== exp, SiLU, sigmoid ====================================================================== */

/* e^x for x in float range: x clamped to [-87.3, 88.3], x = n ln2 + r with |r| <= ln2/2 (ln2 split
 * in two for an exact product), e^r by the degree-6 Taylor/Cephes polynomial, times 2^n. Within
 * 2 ulp of expf; e^x of x < -87.3 gives ~1e-38 instead of a denormal or 0. */
static inline vf vexp(vf x)
{
    x = VMIN(VMAX(x, VSET1(-87.3f)), VSET1(88.3f)); /* n stays in [-126, 127] */
    const vf n = VROUND(VMUL(x, VSET1(1.44269504088896341f)));
    vf r = VFMA(n, VSET1(-0.693359375f), x);
    r = VFMA(n, VSET1(2.12194440e-4f), r);
    vf p = VSET1(1.9875691500e-4f);
    p = VFMA(p, r, VSET1(1.3981999507e-3f));
    p = VFMA(p, r, VSET1(8.3334519073e-3f));
    p = VFMA(p, r, VSET1(4.1665795894e-2f));
    p = VFMA(p, r, VSET1(1.6666665459e-1f));
    p = VFMA(p, r, VSET1(5.0000001201e-1f));
    p = VFMA(VMUL(p, r), r, VADD(r, VSET1(1.0f)));
    return VMUL(p, VPOW2I(n));
}

static float sexp(float x) /* the scalar tail: the same formula on one lane */
{
    float v[VL] = {0}, o[VL];
    v[0] = x;
    VSTOREU(o, vexp(VLOADU(v)));
    return o[0];
}

static void simd_expv(float *y, const float *x, int n)
{
    const int nv = n - n % VL;
    for (int i = 0; i < nv; i += VL) VSTOREU(y + i, vexp(VLOADU(x + i)));
    for (int i = nv; i < n; i++) y[i] = sexp(x[i]);
}

static void simd_silu(float *y, const float *x, int n)
{
    const int nv = n - n % VL;
    const vf one = VSET1(1.0f);
    for (int i = 0; i < nv; i += VL) {
        const vf v = VLOADU(x + i);
        VSTOREU(y + i, VDIV(v, VADD(one, vexp(VSUB(VZERO(), v)))));
    }
    for (int i = nv; i < n; i++) y[i] = x[i] / (1.0f + sexp(-x[i]));
}

static void simd_sigmoid(float *y, const float *x, int n)
{
    const int nv = n - n % VL;
    const vf one = VSET1(1.0f);
    for (int i = 0; i < nv; i += VL) VSTOREU(y + i, VDIV(one, VADD(one, vexp(VSUB(VZERO(), VLOADU(x + i))))));
    for (int i = nv; i < n; i++) y[i] = 1.0f / (1.0f + sexp(-x[i]));
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

static void simd_axpby(float *y, float a, const float *x, float b, int n)
{
    const int nv = n - n % VL;
    const vf va = VSET1(a), vb = VSET1(b);
    for (int k = 0; k < nv; k += VL) VSTOREU(y + k, VFMA(va, VLOADU(x + k), VMUL(vb, VLOADU(y + k))));
    for (int k = nv; k < n; k++) y[k] = fmaf(a, x[k], b * y[k]);
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
    .axpby = simd_axpby,
    .row_f32 = simd_row_f32,
    .mm = simd_mm,
    .expv = simd_expv,
    .silu = simd_silu,
    .sigmoid = simd_sigmoid,
};
