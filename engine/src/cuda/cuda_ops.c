/* cuda/cuda_ops.c - the op entry points of the CUDA backend (backend.h signatures): argument
 * checks (programmer errors abort, as on the CPU), host data staging, the graph signature of each
 * call (cu_sig: in replay mode the op stops there), and the dispatch to the kernels of mm.cu,
 * norm.cu, gdn.cu, attn.cu and moe.cu, or to cuBLASLt.
 *
 * GEMM dispatch (per weight segment, eng_cuda_gemm):
 *   FP32 path, or T <= simt_max_tokens    k_mm_simt (exact dequantization, fixed order)
 *   BF16 weights, T >= cublas_min_tokens  cuBLASLt bf16 x bf16 -> fp32 on the activation halves
 *                                         (two GEMMs, the second with beta = 1) or once (BF16 path)
 *   otherwise                             k_mm_tc (tensor cores, split halves)
 * MoE experts: pairs permuted by expert on the device (no host sync), then the same kernels in
 * grouped mode: k_mm_simt when experts average few pairs (decode), k_mm_tc otherwise.
 */
#include "cuda/cuda_impl.h"

#include "core/core.h" /* defines: eng_log */

#include <string.h>

#define U(x) ((uint64_t)(uintptr_t)(x))
#define I(x) ((uint64_t)(int64_t)(x))
#define SIG(c, name, ...)                                                                                          \
    do {                                                                                                           \
        const uint64_t sig_v_[] = {__VA_ARGS__};                                                                   \
        if (cu_sig(c, name, sig_v_, (int)(sizeof sig_v_ / sizeof sig_v_[0]))) return;                              \
    } while (0)

static uint64_t fbits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* ==== GEMM ==================================================================================== */

static cu_mm mm_of(const cu_weight *w, int s, int mat)
{
    const cu_seg *g = &w->segs[s];
    cu_mm p;
    memset(&p, 0, sizeof p);
    p.dtype = g->dtype;
    p.w = g->data;
    p.srow = g->srow;
    p.scales = g->scales;
    p.n_kb = g->n_kb;
    p.block_k = g->block_k;
    p.bk_shift = -1;
    for (int sh = 0; sh < 30 && g->block_k > 0; sh++)
        if ((1 << sh) == g->block_k) p.bk_shift = sh;
    p.rows = g->rows;
    p.ld = g->ld;
    p.K = w->cols;
    p.mat = mat;
    return p;
}

/* x as the kernels need it: rows 16-byte aligned; else an aligned copy in scratch. */
static const float *aligned_x(cu_ctx *c, const float *x, int64_t *ldx, int T, int64_t K)
{
    if (((uintptr_t)x & 15) == 0 && (*ldx & 3) == 0) return x;
    const int64_t ld = (K + 3) & ~(int64_t)3;
    float *a = cu_scratch_get(c, CU_SCR_XALIGN, (size_t)T * (size_t)ld * 4);
    cu_launch_copy_rows_f32(x, *ldx, T, K, a, ld, c->stream);
    *ldx = ld;
    return a;
}

static int align_of(const void *p)
{
    uintptr_t v = (uintptr_t)p;
    int a = 256;
    while (a > 4 && (v % (uintptr_t)a)) a >>= 1;
    return a;
}

static uint64_t lt_key(int64_t m, int64_t n, int64_t k, int64_t lda, int64_t ldb, int64_t ldc, int aa, int ab, int ac,
                       int beta)
{
    uint64_t h = 0xcbf29ce484222325ull;
    const int64_t v[] = {m, n, k, lda, ldb, ldc, aa, ab, ac, beta};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) h = (h ^ (uint64_t)v[i]) * 0x100000001b3ull;
    return h;
}

/* D[m][n] (column-major, ld ldc) = W^T-op(A) x B (+ D when beta): A = the segment's bf16 rows
 * (k x m, ld), B = activations (k x n, ld ldb). false when cuBLASLt offers no algorithm. */
static bool lt_gemm(cu_ctx *c, const cu_mm *p, const void *a, const void *b, int64_t ldb, float beta)
{
    const int64_t m = p->rows, n = p->T, k = p->ld;
    const int aa = align_of(a), ab = align_of(b), ac = align_of(p->y);
    const uint64_t key = lt_key(m, n, k, p->ld, ldb, p->ldy, aa, ab, ac, beta != 0.0f);
    cu_lt_entry *ent = NULL;
    for (int i = 0; i < CU_LT_CACHE; i++)
        if (c->lt_cache[i].key == key) ent = &c->lt_cache[i];
    cublasLtMatmulDesc_t desc = NULL;
    cublasLtMatrixLayout_t la = NULL, lb = NULL, lc = NULL;
    CUBLAS_CHECK(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, (uint64_t)k, (uint64_t)m, p->ld));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, (uint64_t)k, (uint64_t)n, ldb));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&lc, CUDA_R_32F, (uint64_t)m, (uint64_t)n, p->ldy));
    if (!ent) {
        ent = &c->lt_cache[c->lt_next];
        c->lt_next = (c->lt_next + 1) % CU_LT_CACHE;
        memset(ent, 0, sizeof *ent);
        ent->key = key;
        cublasLtMatmulPreference_t pref = NULL;
        CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
        const uint64_t ws = c->lt_ws_bytes;
        const uint32_t ua = (uint32_t)aa, ub = (uint32_t)ab, uc = (uint32_t)ac;
        CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
        CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &ua, sizeof ua));
        CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &ub, sizeof ub));
        CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &uc, sizeof uc));
        CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &uc, sizeof uc));
        cublasLtMatmulHeuristicResult_t res;
        int nres = 0;
        memset(&res, 0, sizeof res);
        cublasStatus_t hs = cublasLtMatmulAlgoGetHeuristic(c->lt, desc, la, lb, lc, lc, pref, 1, &res, &nres);
        cublasLtMatmulPreferenceDestroy(pref);
        if (hs == CUBLAS_STATUS_SUCCESS && nres > 0) {
            ent->algo = res.algo;
            ent->ok = 1;
        }
    }
    bool ok = ent->ok != 0;
    if (ok) {
        const float alpha = 1.0f;
        CUBLAS_CHECK(cublasLtMatmul(c->lt, desc, &alpha, a, la, b, lb, &beta, p->y, lc, p->y, lc, &ent->algo, c->lt_ws,
                                    c->lt_ws_bytes, c->stream));
    }
    cublasLtMatrixLayoutDestroy(la);
    cublasLtMatrixLayoutDestroy(lb);
    cublasLtMatrixLayoutDestroy(lc);
    cublasLtMatmulDescDestroy(desc);
    return ok;
}

/* y[t][row0 + n] for every segment of matrix `mat`. */
static void mm_dense(cu_ctx *c, const cu_weight *w, int mat, const float *x, int64_t ldx, int T, float *y,
                     int64_t ldy)
{
    x = aligned_x(c, x, &ldx, T, w->cols);
    const bool simt = c->gemm == ENG_CUDA_GEMM_FP32 || T <= c->opt.simt_max_tokens;
    const int split = c->gemm != ENG_CUDA_GEMM_BF16;
    const void *xh = NULL, *xl = NULL;
    const int64_t ld = w->segs[0].ld;
    for (int s = 0; s < w->n_segs; s++) {
        cu_mm p = mm_of(w, s, mat);
        p.x = x;
        p.ldx = ldx;
        p.y = y + w->segs[s].row0;
        p.ldy = ldy;
        p.T = T;
        p.split = split;
        if (simt) {
            cu_launch_mm_simt(&p, c->stream);
            continue;
        }
        if (p.dtype == ENG_DTYPE_BF16 && T >= c->opt.cublas_min_tokens) {
            if (!xh) { /* the bf16 halves of x, shared by the segments */
                xh = cu_scratch_get(c, CU_SCR_XH, (size_t)T * (size_t)ld * 2);
                xl = split ? cu_scratch_get(c, CU_SCR_XL, (size_t)T * (size_t)ld * 2) : NULL;
                cu_launch_split_x(x, ldx, T, w->cols, ld, (void *)xh, (void *)xl, c->stream);
            }
            const void *a = (const uint8_t *)p.w + (size_t)mat * (size_t)p.rows * (size_t)ld * 2;
            if (lt_gemm(c, &p, a, xh, ld, 0.0f)) {
                if (split && !lt_gemm(c, &p, a, xl, ld, 1.0f))
                    cu_launch_mm_tc(&p, c->stream); /* no beta = 1 algorithm: redo the segment */
                continue;
            }
        }
        cu_launch_mm_tc(&p, c->stream);
    }
}

static void op_matmul(void *ctx, const qn_weight *qw, int mat, const float *x, int64_t ldx, int T, float *y,
                      int64_t ldy)
{
    cu_ctx *c = ctx;
    const cu_weight *w = cu_w(qw);
    CU_ASSERT(mat >= 0 && mat < w->n_mats && ldx >= w->cols && ldy >= w->rows);
    if (T <= 0) return;
    SIG(c, "matmul", U(w), I(mat), U(x), I(ldx), I(T), U(y), I(ldy));
    cu_enter(c);
    mm_dense(c, w, mat, x, ldx, T, y, ldy);
}

/* ==== embedding, norms, elementwise ========================================================== */

static void op_embed(void *ctx, const qn_weight *qw, const int32_t *ids, int T, float *out)
{
    cu_ctx *c = ctx;
    if (T <= 0) return;
    SIG(c, "embed", U(qw), U(ids), I(T), U(out));
    cu_enter(c);
    cu_launch_embed(cu_w(qw), ids, T, out, c->stream);
}

static void op_rmsnorm(void *ctx, const float *x, int64_t ldx, int T, int n, const float *w, float eps, float *y,
                       int64_t ldy)
{
    cu_ctx *c = ctx;
    SIG(c, "rmsnorm", U(x), I(ldx), I(T), I(n), U(w), fbits(eps), U(y), I(ldy));
    cu_enter(c);
    cu_launch_rmsnorm(x, ldx, T, n, w, eps, y, ldy, c->stream);
}

static void op_add_rmsnorm(void *ctx, float *res, const float *delta, int T, int n, const float *w, float eps,
                           float *y)
{
    cu_ctx *c = ctx;
    SIG(c, "add_rmsnorm", U(res), U(delta), I(T), I(n), U(w), fbits(eps), U(y));
    cu_enter(c);
    cu_launch_add_rmsnorm(res, delta, T, n, w, eps, y, c->stream);
}

static void op_add(void *ctx, float *x, const float *delta, int T, int n)
{
    cu_ctx *c = ctx;
    SIG(c, "add", U(x), U(delta), I(T), I(n));
    cu_enter(c);
    cu_launch_add(x, delta, T, n, c->stream);
}

static void op_silu_mul(void *ctx, const float *gu, int64_t ldgu, int T, int inter, float *out)
{
    cu_ctx *c = ctx;
    SIG(c, "silu_mul", U(gu), I(ldgu), I(T), I(inter), U(out));
    cu_enter(c);
    cu_launch_silu_mul(gu, ldgu, T, inter, out, inter, c->stream);
}

static void op_get_rows(void *ctx, const float *x, int64_t ldx, int cols, const int32_t *rows, int n, float *out)
{
    cu_ctx *c = ctx;
    if (n <= 0) return;
    const int32_t *d_rows = cu_stage_h2d(c, rows, (size_t)n * sizeof *rows);
    SIG(c, "get_rows", U(x), I(ldx), I(cols), U(d_rows), I(n), U(out));
    cu_enter(c);
    cu_launch_get_rows(x, ldx, cols, d_rows, n, out, c->stream);
}

static void op_gated_rmsnorm(void *ctx, const float *o, const float *z, int64_t ldz, int T, int n_heads, int dv,
                             const float *w, float eps, float *out)
{
    cu_ctx *c = ctx;
    SIG(c, "gated_rmsnorm", U(o), U(z), I(ldz), I(T), I(n_heads), I(dv), U(w), fbits(eps), U(out));
    cu_enter(c);
    cu_launch_gated_rmsnorm(o, z, ldz, T, n_heads, dv, w, eps, out, c->stream);
}

/* ==== Gated DeltaNet ========================================================================== */

#define SIG_BATCH(b) U((b).seqs), I((b).n_seqs), I((b).T), I((b).bt_stride)

static void op_gdn_conv(void *ctx, const qn_seq_desc *seqs, int n_seqs, const float *x, int64_t ldx, int conv_dim,
                        const float *w, const qn_gdn_dims *d, const qn_state_view *st, float *out)
{
    cu_ctx *c = ctx;
    CU_ASSERT(conv_dim == st->conv_dim && d->conv_k == st->conv_k && d->conv_k >= 1 && d->conv_k <= CU_CONV_KMAX &&
              d->layer >= 0 && d->layer < st->n_layers);
    if (n_seqs <= 0) return;
    const cu_batch b = cu_stage_batch(c, seqs, n_seqs);
    SIG(c, "gdn_conv", SIG_BATCH(b), U(x), I(ldx), I(conv_dim), U(w), I(d->conv_k), I(d->layer), U(st->conv),
        I(st->n_slots), I(st->n_layers), U(out));
    cu_enter(c);
    cu_launch_gdn_conv(b, x, ldx, conv_dim, w, d->conv_k, d->layer, st, out, c->stream);
}

static void op_gdn_gates(void *ctx, const float *ba, int64_t ldba, int T, int n_v_heads, const float *A_log,
                         const float *dt_bias, float *beta, float *g)
{
    cu_ctx *c = ctx;
    SIG(c, "gdn_gates", U(ba), I(ldba), I(T), I(n_v_heads), U(A_log), U(dt_bias), U(beta), U(g));
    cu_enter(c);
    cu_launch_gdn_gates(ba, ldba, T, n_v_heads, A_log, dt_bias, beta, g, c->stream);
}

static void op_gdn(void *ctx, const qn_seq_desc *seqs, int n_seqs, const float *qkv, const float *beta, const float *g,
                   const qn_gdn_dims *d, const qn_state_view *st, float *out)
{
    cu_ctx *c = ctx;
    CU_ASSERT(d->n_k_heads > 0 && d->n_v_heads % d->n_k_heads == 0 && d->dk <= CU_GDN_DMAX && d->dv <= CU_GDN_DMAX);
    CU_ASSERT(st->n_v_heads == d->n_v_heads && st->dk == d->dk && st->dv == d->dv && d->layer >= 0 &&
              d->layer < st->n_layers);
    if (n_seqs <= 0) return;
    const cu_batch b = cu_stage_batch(c, seqs, n_seqs);
    bool single = false, multi = false;
    int n_multi = 0;
    for (int i = 0; i < n_seqs; i++) {
        single |= seqs[i].n_new == 1;
        if (seqs[i].n_new > 1) {
            multi = true;
            n_multi++;
        }
    }
    /* few prefilling sequences: split each head's state columns over more blocks */
    int csplit = 1;
    if (multi && n_multi * d->n_v_heads * 2 <= c->sm_count && d->dv % 4 == 0) csplit = 4;
    else if (multi && n_multi * d->n_v_heads <= c->sm_count && d->dv % 2 == 0) csplit = 2;
    SIG(c, "gdn", SIG_BATCH(b), I(single), I(multi), I(csplit), U(qkv), U(beta), U(g), I(d->n_k_heads),
        I(d->n_v_heads), I(d->dk), I(d->dv), I(d->layer), U(st->ssm), I(st->n_slots), I(st->n_layers), U(out));
    cu_enter(c);
    cu_launch_gdn(b, single, multi, csplit, qkv, beta, g, d, st, out, c->smem_optin, c->stream);
}

/* ==== attention =============================================================================== */

static void op_qk_norm_rope(void *ctx, float *q, int64_t ldq, int n_q, float *k, int64_t ldk, int n_k, int T,
                            int head_dim, const float *qw, const float *kw, float eps, const int32_t *pos, int rot_dim,
                            const float *inv_freq, float rope_scale)
{
    cu_ctx *c = ctx;
    CU_ASSERT(rot_dim >= 0 && rot_dim % 2 == 0 && rot_dim <= head_dim && head_dim <= CU_ATTN_HDMAX &&
              rot_dim / 2 <= CU_ROPE_HALFMAX);
    SIG(c, "qk_norm_rope", U(q), I(ldq), I(n_q), U(k), I(ldk), I(n_k), I(T), I(head_dim), U(qw), U(kw), fbits(eps),
        U(pos), I(rot_dim), U(inv_freq), fbits(rope_scale));
    cu_enter(c);
    cu_launch_qk_norm_rope(q, ldq, n_q, k, ldk, n_k, T, head_dim, qw, kw, eps, pos, rot_dim, inv_freq, rope_scale,
                           c->stream);
}

static void op_kv_write(void *ctx, const qn_seq_desc *seqs, int n_seqs, const float *k, int64_t ldk, const float *v,
                        int64_t ldv, const qn_attn_dims *d, const qn_kv_view *kv)
{
    cu_ctx *c = ctx;
    CU_ASSERT(d->n_kv_heads == kv->n_kv_heads && d->head_dim == kv->head_dim && d->layer >= 0 &&
              d->layer < kv->n_layers);
    if (n_seqs <= 0) return;
    const cu_batch b = cu_stage_batch(c, seqs, n_seqs);
    SIG(c, "kv_write", SIG_BATCH(b), U(k), I(ldk), U(v), I(ldv), I(d->layer), U(kv->k), U(kv->v), I(kv->n_blocks),
        I(kv->block_size));
    cu_enter(c);
    cu_launch_kv_write(b, k, ldk, v, ldv, d->layer, kv, c->stream);
}

static void op_attention(void *ctx, const qn_seq_desc *seqs, int n_seqs, const float *q, int64_t ldq,
                         const float *gate, int64_t ldgate, const qn_attn_dims *d, const qn_kv_view *kv, float *out)
{
    cu_ctx *c = ctx;
    if (n_seqs <= 0) return;
    CU_ASSERT(d->n_kv_heads > 0 && d->n_heads % d->n_kv_heads == 0 && d->head_dim <= CU_ATTN_HDMAX &&
              d->n_heads / d->n_kv_heads <= CU_ATTN_REPMAX);
    CU_ASSERT(d->n_kv_heads == kv->n_kv_heads && d->head_dim == kv->head_dim && d->layer >= 0 &&
              d->layer < kv->n_layers);
    const cu_batch b = cu_stage_batch(c, seqs, n_seqs);
    SIG(c, "attention", SIG_BATCH(b), U(q), I(ldq), U(gate), I(ldgate), I(d->n_heads), I(d->n_kv_heads),
        I(d->head_dim), I(d->layer), fbits(d->scale), U(kv->k), U(kv->v), I(kv->n_blocks), I(kv->block_size), U(out));
    cu_enter(c);
    float *part = cu_scratch_get(c, CU_SCR_ATTN, cu_attn_part_floats(d->n_heads, d->head_dim) * sizeof(float));
    cu_launch_attention(b, q, ldq, gate, ldgate, d, kv, part, out, c->stream);
}

/* ==== MoE ===================================================================================== */

static void op_moe_route(void *ctx, const float *logits, int64_t ldl, int T, int n_experts, int top_k, bool norm_topk,
                         int32_t *idx, float *wt)
{
    cu_ctx *c = ctx;
    CU_ASSERT(top_k >= 1 && top_k <= n_experts && top_k <= 32 && n_experts <= 1024);
    SIG(c, "moe_route", U(logits), I(ldl), I(T), I(n_experts), I(top_k), I(norm_topk), U(idx), U(wt));
    cu_enter(c);
    cu_launch_moe_route(logits, ldl, T, n_experts, top_k, norm_topk, idx, wt, c->stream);
}

/* Grouped GEMM of every segment of a stacked expert weight over the permuted pairs. */
static void mm_grouped(cu_ctx *c, const cu_weight *w, const float *x, int64_t ldx, const int32_t *x_rows, float *y,
                       int64_t ldy, const int32_t *off, const int32_t *active, const int32_t *n_active, int slots,
                       bool simt)
{
    for (int s = 0; s < w->n_segs; s++) {
        cu_mm p = mm_of(w, s, 0);
        p.x = x;
        p.ldx = ldx;
        p.x_rows = x_rows;
        p.y = y + w->segs[s].row0;
        p.ldy = ldy;
        p.g_off = off;
        p.g_active = active;
        p.g_n_active = n_active;
        p.g_slots = slots;
        p.split = c->gemm != ENG_CUDA_GEMM_BF16;
        if (simt) cu_launch_mm_simt(&p, c->stream);
        else cu_launch_mm_tc(&p, c->stream);
    }
}

static void op_moe_experts(void *ctx, const qn_weight *gate_up, const qn_weight *down, int inter, const float *x,
                           int T, int H, const int32_t *idx, const float *wt, int top_k, const float *shared,
                           const float *shared_gate, int64_t ld_sg, float *out)
{
    cu_ctx *c = ctx;
    const cu_weight *gu = cu_w(gate_up), *dn = cu_w(down);
    const int E = gu->n_mats;
    CU_ASSERT(gu->rows == 2 * (int64_t)inter && gu->cols == H && dn->rows == H && dn->cols == inter &&
              dn->n_mats == E && top_k >= 1 && top_k <= 32 && E <= 1024);
    if (T <= 0) return;
    SIG(c, "moe_experts", U(gu), U(dn), I(inter), U(x), I(T), I(H), U(idx), U(wt), I(top_k), U(shared),
        U(shared_gate), I(ld_sg), U(out));
    cu_enter(c);
    const int P = T * top_k, slots = E < P ? E : P;
    const int64_t ld_act = (inter + 3) & ~3;
    int32_t *ints = cu_scratch_get(c, CU_SCR_MOE_I32, ((size_t)3 * E + 2 + 2 * (size_t)P) * 4);
    int32_t *cnt_off = ints, *off = ints + E, *active = ints + 2 * E + 1, *n_active = active + E;
    int32_t *pair_tok = n_active + 1, *inv = pair_tok + P;
    float *g_u = cu_scratch_get(c, CU_SCR_MOE_GU, (size_t)P * 2 * (size_t)inter * 4);
    float *act = cu_scratch_get(c, CU_SCR_MOE_ACT, (size_t)P * (size_t)ld_act * 4);
    float *yb = cu_scratch_get(c, CU_SCR_MOE_Y, (size_t)P * (size_t)H * 4);
    int64_t ldx = H;
    x = aligned_x(c, x, &ldx, T, H);
    /* few pairs per active expert (decode): the exact CUDA-core kernel streams each expert once */
    const bool simt = c->gemm == ENG_CUDA_GEMM_FP32 || P <= 4 * slots;
    cu_launch_moe_sort(idx, T, top_k, E, cnt_off, active, n_active, pair_tok, inv, c->stream);
    mm_grouped(c, gu, x, ldx, pair_tok, g_u, 2 * (int64_t)inter, off, active, n_active, slots, simt);
    cu_launch_silu_mul(g_u, 2 * (int64_t)inter, P, inter, act, ld_act, c->stream);
    mm_grouped(c, dn, act, ld_act, NULL, yb, H, off, active, n_active, slots, simt);
    cu_launch_moe_combine(yb, inv, wt, top_k, T, H, shared, shared_gate, ld_sg, out, c->stream);
}

/* ==== table =================================================================================== */

void cu_set_ops(eng_backend *be)
{
    be->embed = op_embed;
    be->matmul = op_matmul;
    be->rmsnorm = op_rmsnorm;
    be->add_rmsnorm = op_add_rmsnorm;
    be->add = op_add;
    be->silu_mul = op_silu_mul;
    be->gdn_conv = op_gdn_conv;
    be->gdn_gates = op_gdn_gates;
    be->gdn = op_gdn;
    be->gated_rmsnorm = op_gated_rmsnorm;
    be->qk_norm_rope = op_qk_norm_rope;
    be->kv_write = op_kv_write;
    be->attention = op_attention;
    be->moe_route = op_moe_route;
    be->moe_experts = op_moe_experts;
    be->get_rows = op_get_rows;
}
