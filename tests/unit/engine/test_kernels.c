/* tests/unit/engine/test_kernels.c - every op of the CPU backend (backend/backend.h) against a
 * naive double-precision reference written here, on every SIMD path this CPU can run.
 *
 * Tolerances follow llm.c: |got - ref| <= tol * (scale of the terms), with tol a few float32 ulps
 * times the reduction length where sums are long. Beyond closeness, the batch-invariance rules
 * are checked bitwise: a matmul or MoE row computed alone equals the same row computed among
 * others, and results do not depend on the thread count.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"

static const eng_simd PATHS[] = {ENG_SIMD_SCALAR, ENG_SIMD_AVX2, ENG_SIMD_AVX512};
#define N_PATHS ((int)(sizeof PATHS / sizeof PATHS[0]))

/* ==== helpers ================================================================================= */

static uint64_t rng_state = 88172645463325252ull;
static double urand(void) /* [0, 1) */
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}
static float frand(float lo, float hi)
{
    return lo + (hi - lo) * (float)urand();
}
static void fill(float *x, size_t n, float lo, float hi)
{
    for (size_t i = 0; i < n; i++) x[i] = frand(lo, hi);
}
static void *xcalloc(size_t n, size_t s)
{
    void *p = calloc(n ? n : 1, s ? s : 1);
    ck_assert(p != NULL);
    return p;
}

static eng_backend *make_backend(eng_simd simd, int threads)
{
    eng_backend *be = NULL;
    eng_cpu_options o = {threads, simd};
    ck_assert_msg(eng_backend_cpu_create(&o, &be) == ENG_OK, "%s", eng_err_last());
    qn_op_limits lim = {.max_tokens = 256, .hidden = 512, .n_experts = 16, .top_k = 4, .moe_inter = 64,
                        .gdn_dk = 64, .gdn_dv = 64, .attn_head_dim = 256, .attn_group = 4};
    ck_assert_int_eq(be->reserve(be->ctx, &lim), ENG_OK);
    return be;
}

/* Records the worst |got - ref| / scale; fails the test (one check, not one per element). */
typedef struct errs {
    double worst;
    const char *what;
} errs;

static void expect_close(errs *e, double got, double ref, double scale, double tol, int idx)
{
    double d = fabs(got - ref) / (scale > 1e-30 ? scale : 1e-30);
    if (!(d <= tol)) ck_abort_msg("%s[%d]: got %.9g, want %.9g (error %.3g of scale %.3g > %.3g)", e->what, idx, got, ref,
                                  d, scale, tol);
    if (d > e->worst) e->worst = d;
}

static bool supported(int pi)
{
    if (eng_simd_supported(PATHS[pi])) return true;
    printf("kernels: SIMD path %s not available on this CPU\n", eng_simd_name(PATHS[pi]));
    return false;
}

/* ==== matmul ================================================================================== */

/* A source tensor in one dtype plus its exact float values. */
typedef struct src_mat {
    eng_dtype dt;
    int rows, cols, bn, bk;
    void *data;
    float *scale; /* F8 */
    double *val;  /* [rows][cols] the dequantized value the kernels must use */
} src_mat;

static void src_make(src_mat *m, eng_dtype dt, int rows, int cols)
{
    memset(m, 0, sizeof *m);
    m->dt = dt;
    m->rows = rows;
    m->cols = cols;
    m->bn = 8;
    m->bk = 32;
    m->val = xcalloc((size_t)rows * cols, sizeof *m->val);
    size_t n = (size_t)rows * cols;
    m->data = xcalloc(n, eng_dtype_size(dt));
    if (dt == ENG_DTYPE_F8_E4M3) {
        int nbr = (rows + m->bn - 1) / m->bn, nbc = (cols + m->bk - 1) / m->bk;
        m->scale = xcalloc((size_t)nbr * nbc, sizeof *m->scale);
        for (int i = 0; i < nbr * nbc; i++) m->scale[i] = frand(0.0005f, 0.004f);
    }
    for (int r = 0; r < rows; r++)
        for (int k = 0; k < cols; k++) {
            size_t i = (size_t)r * cols + k;
            float v = frand(-1.0f, 1.0f);
            switch (dt) {
            case ENG_DTYPE_F32:
                ((float *)m->data)[i] = v;
                m->val[i] = v;
                break;
            case ENG_DTYPE_BF16:
                ((uint16_t *)m->data)[i] = eng_f32_to_bf16(v);
                m->val[i] = eng_bf16_to_f32(((uint16_t *)m->data)[i]);
                break;
            case ENG_DTYPE_F16:
                ((uint16_t *)m->data)[i] = eng_f32_to_f16(v);
                m->val[i] = eng_f16_to_f32(((uint16_t *)m->data)[i]);
                break;
            default: {
                /* spread over e4m3's range, subnormals included */
                float q = v * (urand() < 0.1 ? 0.01f : 300.0f);
                uint8_t b = eng_f32_to_fp8e4m3(q);
                ((uint8_t *)m->data)[i] = b;
                float s = m->scale[(r / m->bn) * ((cols + m->bk - 1) / m->bk) + k / m->bk];
                m->val[i] = (double)(eng_fp8e4m3_to_f32(b) * s); /* float32 product, as the kernels */
                break;
            }
            }
        }
}

static void src_free(src_mat *m)
{
    free(m->data);
    free(m->scale);
    free(m->val);
}

static qn_weight_part src_part(const src_mat *m, int n_rows, const int32_t *row_idx, int row0, int col0)
{
    qn_weight_part p = {"test", m->dt, m->data, m->rows, m->cols, m->scale, m->bn, m->bk, n_rows, row_idx, row0, col0};
    return p;
}

static void check_matmul_path(eng_simd simd, eng_dtype dt, int K)
{
    /* matrix 0: part A (a permutation with runs and singletons of a) + part B (rows 3..8 of b,
     * columns from col0); matrix 1: part A' rows of c, part B' rows of d. */
    const int col0 = dt == ENG_DTYPE_F8_E4M3 ? 32 : 5;
    src_mat a, b, c, d;
    src_make(&a, dt, 30, K);
    src_make(&b, dt, 12, K + col0);
    src_make(&c, dt, 30, K);
    src_make(&d, dt, 12, K + col0);
    int32_t perm[17] = {4, 5, 6, 7, 0, 1, 2, 3, 20, 9, 29, 28, 10, 11, 12, 13, 14};
    qn_weight_part parts[4] = {src_part(&a, 17, perm, 0, 0), src_part(&b, 6, NULL, 3, col0),
                               src_part(&c, 17, perm, 0, 0), src_part(&d, 6, NULL, 3, col0)};
    const src_mat *srcs[4] = {&a, &b, &c, &d};
    const int N = 23;
    eng_backend *be = make_backend(simd, 2), *be1 = make_backend(simd, 1);
    qn_weight_desc desc = {"test", K, 2, 2, parts};
    qn_weight *w = NULL, *w1 = NULL;
    ck_assert_msg(be->weight_create(be->ctx, &desc, &w) == ENG_OK, "%s", eng_err_last());
    ck_assert_int_eq(be1->weight_create(be1->ctx, &desc, &w1), ENG_OK);
    const int Ts[] = {1, 2, 3, 4, 5, 7, 50};
    for (size_t ti = 0; ti < sizeof Ts / sizeof Ts[0]; ti++) {
        const int T = Ts[ti], ldx = K + 3, ldy = N + 2;
        float *x = xcalloc((size_t)T * ldx, sizeof *x), *y = xcalloc((size_t)T * ldy, sizeof *y);
        float *y1 = xcalloc((size_t)ldy, sizeof *y1), *yt = xcalloc((size_t)T * ldy, sizeof *yt);
        fill(x, (size_t)T * ldx, -1, 1);
        for (int mat = 0; mat < 2; mat++) {
            be->matmul(be->ctx, w, mat, x, ldx, T, y, ldy);
            be1->matmul(be1->ctx, w1, mat, x, ldx, T, yt, ldy);
            char what[96];
            snprintf(what, sizeof what, "matmul %s %s K=%d T=%d mat=%d", eng_simd_name(simd), eng_dtype_name(dt), K,
                     T, mat);
            errs e = {0, what};
            for (int t = 0; t < T; t++) {
                for (int n = 0; n < N; n++) {
                    const qn_weight_part *pp = n < 17 ? &parts[2 * mat] : &parts[2 * mat + 1];
                    const src_mat *sm = srcs[n < 17 ? 2 * mat : 2 * mat + 1];
                    int sr = n < 17 ? pp->row_idx[n] : (int)pp->row0 + (n - 17);
                    double ref = 0, scale = 0;
                    for (int k = 0; k < K; k++) {
                        double wv = sm->val[(size_t)sr * sm->cols + pp->col0 + k];
                        ref += wv * x[(size_t)t * ldx + k];
                        scale += fabs(wv * x[(size_t)t * ldx + k]);
                    }
                    expect_close(&e, y[(size_t)t * ldy + n], ref, scale, 2e-6 * (1 + sqrt(K)), t * N + n);
                }
                /* the same row alone (T = 1) and with one thread: the same bits */
                be->matmul(be->ctx, w, mat, x + (size_t)t * ldx, ldx, 1, y1, ldy);
                if (memcmp(y1, y + (size_t)t * ldy, (size_t)N * sizeof *y1) != 0)
                    ck_abort_msg("%s: row %d differs when computed alone", what, t);
                if (memcmp(yt + (size_t)t * ldy, y + (size_t)t * ldy, (size_t)N * sizeof *y1) != 0)
                    ck_abort_msg("%s: row %d differs between 1 and 2 threads", what, t);
            }
        }
        free(x);
        free(y);
        free(y1);
        free(yt);
    }
    size_t owned, mapped;
    be->weight_bytes(w, &owned, &mapped);
    if (dt == ENG_DTYPE_F16) ck_assert_uint_gt(owned, 0); /* converted */
    else ck_assert_uint_gt(mapped, 0);                    /* zero-copy */
    be->weight_destroy(be->ctx, w);
    be1->weight_destroy(be1->ctx, w1);
    eng_backend_destroy(be);
    eng_backend_destroy(be1);
    src_free(&a);
    src_free(&b);
    src_free(&c);
    src_free(&d);
}

START_TEST(test_matmul)
{
    const eng_dtype dts[] = {ENG_DTYPE_F32, ENG_DTYPE_BF16, ENG_DTYPE_F16, ENG_DTYPE_F8_E4M3};
    const int Ks[] = {1, 7, 8, 16, 33, 64, 96, 257};
    for (int pi = 0; pi < N_PATHS; pi++) {
        if (!supported(pi)) continue;
        for (size_t di = 0; di < 4; di++)
            for (size_t ki = 0; ki < sizeof Ks / sizeof Ks[0]; ki++) check_matmul_path(PATHS[pi], dts[di], Ks[ki]);
    }
}
END_TEST

START_TEST(test_embed_and_rows)
{
    for (int pi = 0; pi < N_PATHS; pi++) {
        if (!supported(pi)) continue;
        eng_backend *be = make_backend(PATHS[pi], 2);
        src_mat a;
        src_make(&a, ENG_DTYPE_BF16, 50, 37);
        qn_weight_part p = src_part(&a, 50, NULL, 0, 0);
        qn_weight_desc desc = {"emb", 37, 1, 1, &p};
        qn_weight *w;
        ck_assert_int_eq(be->weight_create(be->ctx, &desc, &w), ENG_OK);
        int32_t ids[5] = {3, 49, 0, 3, 17};
        float out[5 * 37], rows[2 * 37];
        be->embed(be->ctx, w, ids, 5, out);
        int bad = 0;
        for (int t = 0; t < 5; t++)
            for (int k = 0; k < 37; k++) bad += out[t * 37 + k] != (float)a.val[(size_t)ids[t] * 37 + k];
        ck_assert_int_eq(bad, 0);
        int32_t sel[2] = {4, 1};
        be->get_rows(be->ctx, out, 37, 37, sel, 2, rows);
        ck_assert(memcmp(rows, out + 4 * 37, 37 * 4) == 0 && memcmp(rows + 37, out + 37, 37 * 4) == 0);
        be->weight_destroy(be->ctx, w);
        src_free(&a);
        eng_backend_destroy(be);
    }
}
END_TEST

START_TEST(test_weight_errors)
{
    eng_backend *be = make_backend(ENG_SIMD_SCALAR, 1);
    src_mat a;
    src_make(&a, ENG_DTYPE_F8_E4M3, 8, 64);
    qn_weight *w = (qn_weight *)1;
    qn_weight_part p = src_part(&a, 8, NULL, 0, 0);
    p.block_k = 8; /* not a multiple of 16 */
    qn_weight_desc d = {"bad", 64, 1, 1, &p};
    ck_assert_int_eq(be->weight_create(be->ctx, &d, &w), ENG_ERR_UNSUPPORTED);
    ck_assert_ptr_null(w);
    p = src_part(&a, 8, NULL, 1, 0); /* rows 1..8 of 8 */
    ck_assert_int_eq(be->weight_create(be->ctx, &d, &w), ENG_ERR_INVALID);
    int32_t idx[2] = {0, 8};
    p = src_part(&a, 2, idx, 0, 0);
    ck_assert_int_eq(be->weight_create(be->ctx, &d, &w), ENG_ERR_INVALID);
    p = src_part(&a, 8, NULL, 0, 0);
    p.dtype = ENG_DTYPE_I32;
    ck_assert_int_eq(be->weight_create(be->ctx, &d, &w), ENG_ERR_UNSUPPORTED);
    p = src_part(&a, 8, NULL, 0, 16); /* 16 + 64 columns > 64 */
    ck_assert_int_eq(be->weight_create(be->ctx, &d, &w), ENG_ERR_INVALID);
    /* allocation failures: clean NOMEM, no leak (ASan) */
    p = src_part(&a, 8, NULL, 0, 0);
    for (long k = 0; k < 12; k++) {
        eng_alloc_fail_after(k);
        eng_status st = be->weight_create(be->ctx, &d, &w);
        eng_alloc_fail_after(-1);
        ck_assert(st == ENG_OK || st == ENG_ERR_NOMEM);
        if (st == ENG_OK) be->weight_destroy(be->ctx, w);
    }
    /* a failed reserve keeps the scratch already in use: asking again for the old limits then
     * needs no allocation at all */
    qn_op_limits big = {.max_tokens = 4096, .hidden = 4096, .n_experts = 64, .top_k = 8, .moe_inter = 512,
                        .gdn_dk = 128, .gdn_dv = 128, .attn_head_dim = 256, .attn_group = 8};
    qn_op_limits same = {.max_tokens = 256, .hidden = 512, .n_experts = 16, .top_k = 4, .moe_inter = 64,
                         .gdn_dk = 64, .gdn_dv = 64, .attn_head_dim = 256, .attn_group = 4};
    eng_alloc_fail_after(2);
    ck_assert_int_eq(be->reserve(be->ctx, &big), ENG_ERR_NOMEM);
    eng_alloc_fail_after(0);
    ck_assert_int_eq(be->reserve(be->ctx, &same), ENG_OK);
    eng_alloc_fail_after(-1);
    src_free(&a);
    eng_backend_destroy(be);
}
END_TEST

/* ==== norms and elementwise =================================================================== */

START_TEST(test_norms)
{
    for (int pi = 0; pi < N_PATHS; pi++) {
        if (!supported(pi)) continue;
        eng_backend *be = make_backend(PATHS[pi], 2);
        const int T = 9, n = 70, ld = 75;
        float *x = xcalloc((size_t)T * ld, 4), *y = xcalloc((size_t)T * ld, 4), *w = xcalloc(n, 4);
        float *res = xcalloc((size_t)T * n, 4), *res0 = xcalloc((size_t)T * n, 4), *dl = xcalloc((size_t)T * n, 4);
        float *yn = xcalloc((size_t)T * n, 4);
        fill(x, (size_t)T * ld, -2, 2);
        fill(w, n, 0.5f, 1.5f);
        fill(res, (size_t)T * n, -1, 1);
        fill(dl, (size_t)T * n, -1, 1);
        memcpy(res0, res, (size_t)T * n * 4);
        const float eps = 1e-6f;
        be->rmsnorm(be->ctx, x, ld, T, n, w, eps, y, ld);
        be->add_rmsnorm(be->ctx, res, dl, T, n, w, eps, yn);
        errs e = {0, "rmsnorm"}, e2 = {0, "add_rmsnorm"};
        for (int t = 0; t < T; t++) {
            double ss = 0, ss2 = 0;
            for (int i = 0; i < n; i++) {
                ss += (double)x[t * ld + i] * x[t * ld + i];
                double r = (double)res0[t * n + i] + dl[t * n + i];
                ss2 += r * r;
            }
            double r1 = 1 / sqrt(ss / n + eps), r2 = 1 / sqrt(ss2 / n + eps);
            for (int i = 0; i < n; i++) {
                double ref = x[t * ld + i] * r1 * w[i];
                expect_close(&e, y[t * ld + i], ref, fabs(ref) + 1e-3, 2e-6, t * n + i);
                double rr = (double)res0[t * n + i] + dl[t * n + i];
                expect_close(&e2, res[t * n + i], rr, fabs(rr) + 1e-6, 1e-7, t * n + i);
                expect_close(&e2, yn[t * n + i], rr * r2 * w[i], fabs(rr * r2 * w[i]) + 1e-3, 2e-6, t * n + i);
            }
        }
        /* add */
        memcpy(res, res0, (size_t)T * n * 4);
        be->add(be->ctx, res, dl, T, n);
        for (int i = 0; i < T * n; i++)
            if (res[i] != res0[i] + dl[i]) ck_abort_msg("add[%d]", i);
        /* gated rmsnorm: 3 heads of 16, z at stride 50 */
        const int H = 3, dv = 16, ldz = 50;
        float *o = xcalloc((size_t)T * H * dv, 4), *z = xcalloc((size_t)T * ldz, 4), *go = xcalloc((size_t)T * H * dv, 4);
        fill(o, (size_t)T * H * dv, -3, 3);
        fill(z, (size_t)T * ldz, -4, 4);
        be->gated_rmsnorm(be->ctx, o, z, ldz, T, H, dv, w, eps, go);
        errs e3 = {0, "gated_rmsnorm"};
        for (int t = 0; t < T; t++)
            for (int h = 0; h < H; h++) {
                double ss = 0;
                for (int i = 0; i < dv; i++) ss += (double)o[(t * H + h) * dv + i] * o[(t * H + h) * dv + i];
                double r = 1 / sqrt(ss / dv + eps);
                for (int i = 0; i < dv; i++) {
                    double zz = z[t * ldz + h * dv + i];
                    double ref = w[i] * (o[(t * H + h) * dv + i] * r) * (zz / (1 + exp(-zz)));
                    expect_close(&e3, go[(t * H + h) * dv + i], ref, fabs(ref) + 1e-3, 3e-6, (t * H + h) * dv + i);
                }
            }
        /* silu_mul */
        const int I = 21, ldgu = 45;
        float *gu = xcalloc((size_t)T * ldgu, 4), *so = xcalloc((size_t)T * I, 4);
        fill(gu, (size_t)T * ldgu, -6, 6);
        be->silu_mul(be->ctx, gu, ldgu, T, I, so);
        errs e4 = {0, "silu_mul"};
        for (int t = 0; t < T; t++)
            for (int i = 0; i < I; i++) {
                double g = gu[t * ldgu + i], u = gu[t * ldgu + I + i];
                double ref = g / (1 + exp(-g)) * u;
                expect_close(&e4, so[t * I + i], ref, fabs(ref) + 1e-4, 2e-6, t * I + i);
            }
        free(x), free(y), free(w), free(res), free(res0), free(dl), free(yn), free(o), free(z), free(go), free(gu),
            free(so);
        eng_backend_destroy(be);
    }
}
END_TEST

/* ==== attention =============================================================================== */

static void ref_norm_rope(double *x, const float *w, int hd, int rot, int pos, const float *inv, float eps)
{
    double ss = 0;
    for (int i = 0; i < hd; i++) ss += x[i] * x[i];
    double r = 1 / sqrt(ss / hd + eps);
    for (int i = 0; i < hd; i++) x[i] = x[i] * r * w[i];
    for (int i = 0; i < rot / 2; i++) {
        double a = (double)(float)((float)pos * inv[i]), c = cos(a), s = sin(a);
        double x1 = x[i], x2 = x[i + rot / 2];
        x[i] = x1 * c - x2 * s;
        x[i + rot / 2] = x2 * c + x1 * s;
    }
}

START_TEST(test_qk_norm_rope)
{
    for (int pi = 0; pi < N_PATHS; pi++) {
        if (!supported(pi)) continue;
        eng_backend *be = make_backend(PATHS[pi], 2);
        const int T = 6, hd = 32, nq = 3, nk = 2, rot = 8, ld = nq * hd + nk * hd + 5;
        float *buf = xcalloc((size_t)T * ld, 4), *orig = xcalloc((size_t)T * ld, 4), qw[32], kw[32], inv[4];
        fill(buf, (size_t)T * ld, -2, 2);
        memcpy(orig, buf, (size_t)T * ld * 4);
        fill(qw, hd, 0.8f, 1.2f);
        fill(kw, hd, 0.8f, 1.2f);
        for (int i = 0; i < rot / 2; i++) inv[i] = 1.0f / powf(10000.0f, (float)(2 * i) / rot);
        int32_t pos[6] = {0, 1, 2, 100, 4097, 7};
        be->qk_norm_rope(be->ctx, buf, ld, nq, buf + nq * hd, ld, nk, T, hd, qw, kw, 1e-6f, pos, rot, inv, 1.0f);
        errs e = {0, "qk_norm_rope"};
        for (int t = 0; t < T; t++)
            for (int h = 0; h < nq + nk; h++) {
                double x[32];
                for (int i = 0; i < hd; i++) x[i] = orig[t * ld + h * hd + i];
                ref_norm_rope(x, h < nq ? qw : kw, hd, rot, pos[t], inv, 1e-6f);
                for (int i = 0; i < hd; i++)
                    expect_close(&e, buf[t * ld + h * hd + i], x[i], fabs(x[i]) + 1e-2, 4e-6, (t * 5 + h) * hd + i);
            }
        free(buf);
        free(orig);
        eng_backend_destroy(be);
    }
}
END_TEST

/* Three sequences (a prefill continuing at pos 70, a 2-token chunk at 130, a decode at 5) over a
 * paged pool with scattered block tables, against dense causal attention over the full history. */
static void check_attention(eng_simd simd, int nq, int nkv, int hd)
{
    eng_backend *be = make_backend(simd, 2);
    const int bs = 4, n_blocks = 120, layers = 2, layer = 1;
    const int n_seq = 3, lens[3] = {150, 132, 6}, news[3] = {80, 2, 1};
    const size_t kvsz = (size_t)layers * n_blocks * bs * nkv * hd;
    float *K = xcalloc(kvsz, 4), *Vv = xcalloc(kvsz, 4);
    fill(K, kvsz, -9, 9); /* garbage where nothing was written */
    fill(Vv, kvsz, -9, 9);
    qn_kv_view kv = {K, Vv, layers, n_blocks, bs, nkv, hd};
    qn_attn_dims ad = {nq, nkv, hd, layer, 1.0f / sqrtf((float)hd)};
    int32_t tables[3][40];
    int next = 0;
    int32_t order[120];
    for (int i = 0; i < n_blocks; i++) order[i] = i;
    for (int i = n_blocks - 1; i > 0; i--) { /* shuffle */
        int j = (int)(urand() * (i + 1));
        int32_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    float *hk[3], *hv[3]; /* full histories [len][nkv*hd] */
    for (int s = 0; s < n_seq; s++) {
        int nb = (lens[s] + bs - 1) / bs;
        for (int b = 0; b < nb; b++) tables[s][b] = order[next++];
        hk[s] = xcalloc((size_t)lens[s] * nkv * hd, 4);
        hv[s] = xcalloc((size_t)lens[s] * nkv * hd, 4);
        fill(hk[s], (size_t)lens[s] * nkv * hd, -1, 1);
        fill(hv[s], (size_t)lens[s] * nkv * hd, -1, 1);
        /* history write in one call */
        int old = lens[s] - news[s];
        if (old > 0) {
            qn_seq_desc d0 = {0, old, 0, 0, tables[s], nb};
            be->kv_write(be->ctx, &d0, 1, hk[s], nkv * hd, hv[s], nkv * hd, &ad, &kv);
        }
    }
    /* the batch: rows of the new tokens, q and gate at stride ld */
    int T = 0;
    qn_seq_desc seqs[3];
    for (int s = 0; s < n_seq; s++) {
        seqs[s] = (qn_seq_desc){T, news[s], lens[s] - news[s], s, tables[s], (lens[s] + bs - 1) / bs};
        T += news[s];
    }
    const int ld = 2 * nq * hd + 3, ldk = nkv * hd + 1;
    float *q = xcalloc((size_t)T * ld, 4), *knew = xcalloc((size_t)T * ldk, 4), *vnew = xcalloc((size_t)T * ldk, 4);
    float *out = xcalloc((size_t)T * nq * hd, 4);
    fill(q, (size_t)T * ld, -1, 1);
    for (int s = 0; s < n_seq; s++)
        for (int i = 0; i < news[s]; i++) {
            int p = seqs[s].pos + i, row = seqs[s].row0 + i;
            memcpy(knew + (size_t)row * ldk, hk[s] + (size_t)p * nkv * hd, (size_t)nkv * hd * 4);
            memcpy(vnew + (size_t)row * ldk, hv[s] + (size_t)p * nkv * hd, (size_t)nkv * hd * 4);
        }
    be->kv_write(be->ctx, seqs, n_seq, knew, ldk, vnew, ldk, &ad, &kv);
    be->attention(be->ctx, seqs, n_seq, q, ld, q + nq * hd, ld, &ad, &kv, out);
    char what[64];
    snprintf(what, sizeof what, "attention %s nq=%d nkv=%d hd=%d", eng_simd_name(simd), nq, nkv, hd);
    errs e = {0, what};
    double *sc = xcalloc(200, sizeof *sc);
    for (int s = 0; s < n_seq; s++)
        for (int i = 0; i < news[s]; i++) {
            const int p = seqs[s].pos + i, row = seqs[s].row0 + i;
            for (int h = 0; h < nq; h++) {
                const int kh = h / (nq / nkv);
                const float *qq = q + (size_t)row * ld + h * hd;
                double mx = -1e300, sum = 0;
                for (int t = 0; t <= p; t++) {
                    double d = 0;
                    for (int j = 0; j < hd; j++) d += (double)qq[j] * hk[s][((size_t)t * nkv + kh) * hd + j];
                    sc[t] = d / sqrt((double)hd);
                    if (sc[t] > mx) mx = sc[t];
                }
                for (int t = 0; t <= p; t++) sum += (sc[t] = exp(sc[t] - mx));
                for (int j = 0; j < hd; j++) {
                    double o = 0;
                    for (int t = 0; t <= p; t++) o += sc[t] / sum * hv[s][((size_t)t * nkv + kh) * hd + j];
                    double g = q[(size_t)row * ld + nq * hd + h * hd + j];
                    double ref = o / (1 + exp(-g));
                    expect_close(&e, out[((size_t)row * nq + h) * hd + j], ref, 0.05, 2e-5, (row * nq + h) * hd + j);
                }
            }
        }
    free(sc);
    for (int s = 0; s < n_seq; s++) free(hk[s]), free(hv[s]);
    free(K), free(Vv), free(q), free(knew), free(vnew), free(out);
    eng_backend_destroy(be);
}

START_TEST(test_attention_paged)
{
    for (int pi = 0; pi < N_PATHS; pi++) {
        if (!supported(pi)) continue;
        check_attention(PATHS[pi], 4, 2, 32);
        check_attention(PATHS[pi], 2, 1, 256);
        check_attention(PATHS[pi], 3, 3, 20);
    }
}
END_TEST

/* ==== GDN ===================================================================================== */

START_TEST(test_gdn_conv_state)
{
    for (int pi = 0; pi < N_PATHS; pi++) {
        if (!supported(pi)) continue;
        eng_backend *be = make_backend(PATHS[pi], 2);
        const int C = 300, K = 4, L = 23, ldx = C + 7, slots = 3, layers = 2, layer = 1, slot = 2;
        float *x = xcalloc((size_t)L * ldx, 4), *w = xcalloc((size_t)K * C, 4), *out = xcalloc((size_t)L * C, 4);
        float *conv = xcalloc((size_t)slots * layers * (K - 1) * C, 4);
        fill(x, (size_t)L * ldx, -2, 2);
        fill(w, (size_t)K * C, -0.5f, 0.5f);
        fill(conv, (size_t)slots * layers * (K - 1) * C, -5, 5); /* stale state: pos 0 must ignore it */
        qn_state_view sv = {conv, NULL, slots, layers, C, K, 1, 1, 1};
        qn_gdn_dims gd = {1, 1, 1, 1, K, layer};
        const int cuts[] = {0, 1, 3, 4, 5, 21, 23};
        for (size_t c = 0; c + 1 < sizeof cuts / sizeof cuts[0]; c++) {
            qn_seq_desc s = {0, cuts[c + 1] - cuts[c], cuts[c], slot, NULL, 0};
            be->gdn_conv(be->ctx, &s, 1, x + (size_t)cuts[c] * ldx, ldx, C, w, &gd, &sv, out + (size_t)cuts[c] * C);
        }
        errs e = {0, "gdn_conv"};
        for (int t = 0; t < L; t++)
            for (int ch = 0; ch < C; ch++) {
                double acc = 0, scale = 0;
                for (int j = 0; j < K; j++) {
                    int src = t - (K - 1) + j;
                    double v = src >= 0 ? x[(size_t)src * ldx + ch] : 0;
                    acc += w[j * C + ch] * v;
                    scale += fabs(w[j * C + ch] * v);
                }
                double ref = acc / (1 + exp(-acc));
                expect_close(&e, out[(size_t)t * C + ch], ref, scale + 1e-3, 1e-6, t * C + ch);
            }
        /* the state holds the last K-1 inputs, oldest first */
        const float *st = conv + ((size_t)slot * layers + layer) * (K - 1) * C;
        for (int i = 0; i < K - 1; i++)
            if (memcmp(st + (size_t)i * C, x + (size_t)(L - (K - 1) + i) * ldx, (size_t)C * 4) != 0)
                ck_abort_msg("conv state row %d", i);
        free(x), free(w), free(out), free(conv);
        eng_backend_destroy(be);
    }
}
END_TEST

START_TEST(test_gdn_gates)
{
    eng_backend *be = make_backend(ENG_SIMD_SCALAR, 1);
    const int T = 5, Hv = 6, ld = 15;
    float ba[5 * 15], A[6], dt[6], beta[30], g[30];
    fill(ba, sizeof ba / 4, -30, 30);
    fill(A, 6, 0, 2.7f);
    fill(dt, 6, -1, 2);
    be->gdn_gates(be->ctx, ba, ld, T, Hv, A, dt, beta, g);
    errs e = {0, "gdn_gates"};
    for (int t = 0; t < T; t++)
        for (int h = 0; h < Hv; h++) {
            double b = ba[t * ld + h], a = (double)ba[t * ld + Hv + h] + dt[h];
            double sp = a > 20 ? a : log1p(exp(a));
            expect_close(&e, beta[t * Hv + h], 1 / (1 + exp(-b)), 1, 1e-6, t * Hv + h);
            double gr = -exp((double)A[h]) * sp;
            expect_close(&e, g[t * Hv + h], gr, fabs(gr) + 1e-6, 2e-6, t * Hv + h);
        }
    eng_backend_destroy(be);
}
END_TEST

/* Reference: the recurrent rule in double, from state S (updated), for tokens [t0, t1). */
static void ref_gdn(const float *qkv, int C, const float *beta, const float *g, int Hk, int Hv, int dk, int dv,
                    int t0, int t1, double *S /* [Hv][dk][dv] */, double *out /* [T][Hv*dv] */)
{
    for (int t = t0; t < t1; t++)
        for (int h = 0; h < Hv; h++) {
            const int kh = h / (Hv / Hk);
            const float *row = qkv + (size_t)t * C;
            double q[256], k[256], qn = 0, kn = 0;
            for (int i = 0; i < dk; i++) {
                q[i] = row[kh * dk + i];
                k[i] = row[Hk * dk + kh * dk + i];
                qn += q[i] * q[i];
                kn += k[i] * k[i];
            }
            for (int i = 0; i < dk; i++) {
                q[i] = q[i] / sqrt(qn + 1e-6) / sqrt((double)dk);
                k[i] = k[i] / sqrt(kn + 1e-6);
            }
            const float *v = row + 2 * Hk * dk + h * dv;
            double *s = S + (size_t)h * dk * dv, dec = exp((double)g[t * Hv + h]), u[256];
            for (int b = 0; b < dv; b++) u[b] = 0;
            for (int a = 0; a < dk; a++)
                for (int b = 0; b < dv; b++) {
                    s[a * dv + b] *= dec;
                    u[b] += s[a * dv + b] * k[a];
                }
            for (int b = 0; b < dv; b++) u[b] = (v[b] - u[b]) * beta[t * Hv + h];
            for (int b = 0; b < dv; b++) {
                double o = 0;
                for (int a = 0; a < dk; a++) {
                    s[a * dv + b] += k[a] * u[b];
                    o += s[a * dv + b] * q[a];
                }
                out[(size_t)t * Hv * dv + h * dv + b] = o;
            }
        }
}

/* Two sequences in one batch: seq A fed by the given cuts (chunked for n > 1, recurrent for
 * n = 1; chunks align to absolute multiples of 64), seq B (slot 0) a fresh 40-token prefill
 * alongside its first piece. Outputs and final states against the double reference. */
static void check_gdn(eng_simd simd, int Hk, int Hv, int dk, int dv, const int *cuts, int n_cuts)
{
    eng_backend *be = make_backend(simd, 2);
    const int L = cuts[n_cuts - 1], LB = 40, C = 2 * Hk * dk + Hv * dv, slots = 2, layers = 1;
    float *qkv = xcalloc((size_t)(L + LB) * C, 4), *beta = xcalloc((size_t)(L + LB) * Hv, 4);
    float *g = xcalloc((size_t)(L + LB) * Hv, 4), *out = xcalloc((size_t)(L + LB) * Hv * dv, 4);
    fill(qkv, (size_t)(L + LB) * C, -1, 1);
    fill(beta, (size_t)(L + LB) * Hv, 0.05f, 0.95f);
    for (int i = 0; i < (L + LB) * Hv; i++) g[i] = -frand(0.0f, 1.0f) * (urand() < 0.1 ? 8.0f : 0.3f);
    const size_t S1 = (size_t)Hv * dk * dv;
    float *ssm = xcalloc((size_t)slots * S1, 4);
    fill(ssm, (size_t)slots * S1, -3, 3); /* stale: pos 0 must start from zeros */
    qn_state_view sv = {NULL, ssm, slots, layers, C, 4, Hv, dk, dv};
    qn_gdn_dims gd = {Hk, Hv, dk, dv, 4, 0};
    /* batch rows: [A piece][B] for the first call, then A pieces alone. A's rows live at [0, L),
     * B's at [L, L+LB) of the input arrays; each call gets a compact copy. */
    for (int c = 0; c + 1 < n_cuts; c++) {
        const int n = cuts[c + 1] - cuts[c], withB = c == 0, T = n + (withB ? LB : 0);
        float *bq = xcalloc((size_t)T * C, 4), *bb = xcalloc((size_t)T * Hv, 4), *bg = xcalloc((size_t)T * Hv, 4);
        float *bo = xcalloc((size_t)T * Hv * dv, 4);
        memcpy(bq, qkv + (size_t)cuts[c] * C, (size_t)n * C * 4);
        memcpy(bb, beta + (size_t)cuts[c] * Hv, (size_t)n * Hv * 4);
        memcpy(bg, g + (size_t)cuts[c] * Hv, (size_t)n * Hv * 4);
        qn_seq_desc s[2] = {{0, n, cuts[c], 1, NULL, 0}, {n, LB, 0, 0, NULL, 0}};
        if (withB) {
            memcpy(bq + (size_t)n * C, qkv + (size_t)L * C, (size_t)LB * C * 4);
            memcpy(bb + (size_t)n * Hv, beta + (size_t)L * Hv, (size_t)LB * Hv * 4);
            memcpy(bg + (size_t)n * Hv, g + (size_t)L * Hv, (size_t)LB * Hv * 4);
        }
        be->gdn(be->ctx, s, withB ? 2 : 1, bq, bb, bg, &gd, &sv, bo);
        memcpy(out + (size_t)cuts[c] * Hv * dv, bo, (size_t)n * Hv * dv * 4);
        if (withB) memcpy(out + (size_t)L * Hv * dv, bo + (size_t)n * Hv * dv, (size_t)LB * Hv * dv * 4);
        free(bq), free(bb), free(bg), free(bo);
    }
    double *S = xcalloc(S1, sizeof *S), *SB = xcalloc(S1, sizeof *SB);
    double *ref = xcalloc((size_t)(L + LB) * Hv * dv, sizeof *ref);
    ref_gdn(qkv, C, beta, g, Hk, Hv, dk, dv, 0, L, S, ref);
    ref_gdn(qkv, C, beta, g, Hk, Hv, dk, dv, L, L + LB, SB, ref);
    char what[96];
    snprintf(what, sizeof what, "gdn %s Hk=%d Hv=%d dk=%d dv=%d cuts=%d", eng_simd_name(simd), Hk, Hv, dk, dv, n_cuts);
    errs e = {0, what};
    for (size_t i = 0; i < (size_t)(L + LB) * Hv * dv; i++) expect_close(&e, out[i], ref[i], 1.0, 2e-5, (int)i);
    for (size_t i = 0; i < S1; i++) {
        expect_close(&e, ssm[S1 + i], S[i], 1.0, 2e-5, (int)i);
        expect_close(&e, ssm[i], SB[i], 1.0, 2e-5, (int)i);
    }
    free(qkv), free(beta), free(g), free(out), free(ssm), free(S), free(SB), free(ref);
    eng_backend_destroy(be);
}

START_TEST(test_gdn_chunked_vs_recurrent)
{
    const int one_shot[] = {0, 150};
    const int pieces[] = {0, 70, 71, 72, 130, 150};
    const int decode[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 65, 66};
    for (int pi = 0; pi < N_PATHS; pi++) {
        if (!supported(pi)) continue;
        check_gdn(PATHS[pi], 2, 4, 32, 32, one_shot, 2);
        check_gdn(PATHS[pi], 2, 4, 32, 32, pieces, 6);
        check_gdn(PATHS[pi], 1, 3, 16, 24, decode, 11);
        check_gdn(PATHS[pi], 1, 2, 64, 64, pieces, 6);
    }
}
END_TEST

/* Chunks align to absolute positions: a prompt split at a multiple of 64 gives exactly the bits
 * of the whole prompt (the batching engine relies on this for chunked prefill). */
START_TEST(test_gdn_aligned_split_bitwise)
{
    for (int pi = 0; pi < N_PATHS; pi++) {
        if (!supported(pi)) continue;
        eng_backend *be = make_backend(PATHS[pi], 2);
        const int Hk = 1, Hv = 2, dk = 32, dv = 32, C = 2 * Hk * dk + Hv * dv, L = 150;
        float *qkv = xcalloc((size_t)L * C, 4), *beta = xcalloc((size_t)L * Hv, 4), *g = xcalloc((size_t)L * Hv, 4);
        float *o1 = xcalloc((size_t)L * Hv * dv, 4), *o2 = xcalloc((size_t)L * Hv * dv, 4);
        float *ssm = xcalloc((size_t)2 * Hv * dk * dv, 4);
        fill(qkv, (size_t)L * C, -1, 1);
        fill(beta, (size_t)L * Hv, 0, 1);
        fill(g, (size_t)L * Hv, -1, 0);
        qn_state_view sv = {NULL, ssm, 2, 1, C, 4, Hv, dk, dv};
        qn_gdn_dims gd = {Hk, Hv, dk, dv, 4, 0};
        qn_seq_desc whole = {0, L, 0, 0, NULL, 0};
        be->gdn(be->ctx, &whole, 1, qkv, beta, g, &gd, &sv, o1);
        qn_seq_desc a = {0, 64, 0, 1, NULL, 0}, b = {0, 64, 64, 1, NULL, 0}, c = {0, L - 128, 128, 1, NULL, 0};
        be->gdn(be->ctx, &a, 1, qkv, beta, g, &gd, &sv, o2);
        be->gdn(be->ctx, &b, 1, qkv + 64 * C, beta + 64 * Hv, g + 64 * Hv, &gd, &sv, o2 + 64 * Hv * dv);
        be->gdn(be->ctx, &c, 1, qkv + 128 * C, beta + 128 * Hv, g + 128 * Hv, &gd, &sv, o2 + 128 * Hv * dv);
        ck_assert(memcmp(o1, o2, (size_t)L * Hv * dv * 4) == 0);
        ck_assert(memcmp(ssm, ssm + Hv * dk * dv, (size_t)Hv * dk * dv * 4) == 0);
        free(qkv), free(beta), free(g), free(o1), free(o2), free(ssm);
        eng_backend_destroy(be);
    }
}
END_TEST

/* ==== MoE ===================================================================================== */

START_TEST(test_moe)
{
    for (int pi = 0; pi < N_PATHS; pi++) {
        if (!supported(pi)) continue;
        eng_backend *be = make_backend(PATHS[pi], 2);
        const int E = 6, k = 2, I = 12, H = 20, T = 9, ldl = E + 1;
        /* router */
        float lg[9 * 7];
        fill(lg, sizeof lg / 4, -3, 3);
        lg[2 * ldl + 1] = lg[2 * ldl + 4] = 5.0f; /* a tie: the lower index comes first */
        int32_t idx[18];
        float wt[18];
        be->moe_route(be->ctx, lg, ldl, T, E, k, true, idx, wt);
        errs e = {0, "moe_route"};
        for (int t = 0; t < T; t++) {
            int b0 = -1, b1 = -1;
            for (int x = 0; x < E; x++) {
                if (b0 < 0 || lg[t * ldl + x] > lg[t * ldl + b0]) b1 = b0, b0 = x;
                else if (b1 < 0 || lg[t * ldl + x] > lg[t * ldl + b1]) b1 = x;
            }
            if (idx[t * k] != b0 || idx[t * k + 1] != b1)
                ck_abort_msg("moe_route token %d: got %d,%d want %d,%d", t, idx[t * k], idx[t * k + 1], b0, b1);
            double e0 = exp(lg[t * ldl + b0]), e1 = exp(lg[t * ldl + b1]);
            expect_close(&e, wt[t * k], e0 / (e0 + e1), 1, 1e-6, t);
            expect_close(&e, wt[t * k + 1], e1 / (e0 + e1), 1, 1e-6, t);
        }
        ck_assert_int_eq(idx[2 * k], 1);
        ck_assert_int_eq(idx[2 * k + 1], 4);
        /* experts */
        src_mat gu[6], dn[6];
        qn_weight_part pg[12], pd[6];
        for (int x = 0; x < E; x++) {
            src_make(&gu[x], ENG_DTYPE_BF16, 2 * I, H);
            src_make(&dn[x], ENG_DTYPE_F32, H, I);
            pg[2 * x] = src_part(&gu[x], I, NULL, 0, 0);
            pg[2 * x + 1] = src_part(&gu[x], I, NULL, I, 0);
            pd[x] = src_part(&dn[x], H, NULL, 0, 0);
        }
        qn_weight_desc dg = {"gu", H, E, 2, pg}, dd = {"down", I, E, 1, pd};
        qn_weight *wg, *wd;
        ck_assert_int_eq(be->weight_create(be->ctx, &dg, &wg), ENG_OK);
        ck_assert_int_eq(be->weight_create(be->ctx, &dd, &wd), ENG_OK);
        float x[9 * 20], sh[9 * 20], out[9 * 20], out1[20];
        fill(x, sizeof x / 4, -1, 1);
        fill(sh, sizeof sh / 4, -1, 1);
        be->moe_experts(be->ctx, wg, wd, I, x, T, H, idx, wt, k, sh, lg + E, ldl, out);
        errs e2 = {0, "moe_experts"};
        for (int t = 0; t < T; t++) {
            for (int c = 0; c < H; c++) {
                double ref = 0, scale = 0;
                for (int j = 0; j < k; j++) {
                    const int ex = idx[t * k + j];
                    double y = 0;
                    for (int i = 0; i < I; i++) {
                        double gg = 0, uu = 0;
                        for (int h = 0; h < H; h++) {
                            gg += gu[ex].val[i * H + h] * x[t * H + h];
                            uu += gu[ex].val[(I + i) * H + h] * x[t * H + h];
                        }
                        y += dn[ex].val[c * I + i] * (gg / (1 + exp(-gg)) * uu);
                    }
                    ref += wt[t * k + j] * y;
                    scale += fabs(wt[t * k + j] * y);
                }
                double s = 1 / (1 + exp(-(double)lg[t * ldl + E]));
                ref += s * sh[t * H + c];
                scale += fabs(s * sh[t * H + c]) + 1e-3;
                expect_close(&e2, out[t * H + c], ref, scale, 1e-5, t * H + c);
            }
            /* the token alone: the same bits */
            be->moe_experts(be->ctx, wg, wd, I, x + t * H, 1, H, idx + t * k, wt + t * k, k, sh + t * H,
                            lg + t * ldl + E, ldl, out1);
            if (memcmp(out1, out + t * H, H * 4) != 0) ck_abort_msg("moe token %d differs when alone", t);
        }
        be->weight_destroy(be->ctx, wg);
        be->weight_destroy(be->ctx, wd);
        for (int xx = 0; xx < E; xx++) src_free(&gu[xx]), src_free(&dn[xx]);
        eng_backend_destroy(be);
    }
}
END_TEST

START_TEST(test_simd_names)
{
    ck_assert_int_eq(eng_simd_parse("avx2"), ENG_SIMD_AVX2);
    ck_assert_int_eq(eng_simd_parse("scalar"), ENG_SIMD_SCALAR);
    ck_assert_int_eq(eng_simd_parse("sse9"), -1);
    ck_assert(eng_simd_supported(ENG_SIMD_SCALAR));
    eng_backend *be;
    setenv("QNEXT_SIMD", "bogus", 1);
    ck_assert_int_eq(eng_backend_cpu_create(NULL, &be), ENG_ERR_INVALID);
    setenv("QNEXT_SIMD", "scalar", 1);
    ck_assert_int_eq(eng_backend_cpu_create(NULL, &be), ENG_OK);
    ck_assert_int_eq(eng_backend_cpu_simd(be), ENG_SIMD_SCALAR);
    ck_assert_str_eq(be->name, "cpu-scalar");
    eng_backend_destroy(be);
    unsetenv("QNEXT_SIMD");
    for (int pi = 0; pi < N_PATHS; pi++) {
        eng_cpu_options o = {1, PATHS[pi]};
        eng_status st = eng_backend_cpu_create(&o, &be);
        ck_assert_int_eq(st, eng_simd_supported(PATHS[pi]) ? ENG_OK : ENG_ERR_UNSUPPORTED);
        if (st == ENG_OK) eng_backend_destroy(be);
    }
    eng_backend_destroy(NULL);
}
END_TEST

static Suite *kernels_suite(void)
{
    Suite *s = suite_create("kernels");
    TCase *tc = tcase_create("ops");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_simd_names);
    tcase_add_test(tc, test_matmul);
    tcase_add_test(tc, test_embed_and_rows);
    tcase_add_test(tc, test_weight_errors);
    tcase_add_test(tc, test_norms);
    tcase_add_test(tc, test_qk_norm_rope);
    tcase_add_test(tc, test_attention_paged);
    tcase_add_test(tc, test_gdn_conv_state);
    tcase_add_test(tc, test_gdn_gates);
    tcase_add_test(tc, test_gdn_chunked_vs_recurrent);
    tcase_add_test(tc, test_gdn_aligned_split_bitwise);
    tcase_add_test(tc, test_moe);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(kernels_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
