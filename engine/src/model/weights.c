/* model/weights.c - loads a Qwen3-Next checkpoint onto a backend in the layout the forward wants.
 *
 * Every tensor is found and checked through spec.h (qn_spec_require: presence, shape, dtype, FP8
 * scale), so what `qnext inspect` accepts is what loads. Repacking (docs/qwen3-next.md §3.4-3.6):
 *   - GDN: in_proj_qkvz rows are de-interleaved per K-head group into [q | k | v] (the conv
 *     channel order) then z, and in_proj_ba into b then a; both go into one fused weight
 *     [q|k|v | z | b | a] (parts may differ in dtype: the FP8 checkpoint keeps in_proj_ba bf16).
 *     FP8 scale rows follow their weight rows (the backend expands scales per row).
 *   - attention: q_proj's per-head [query | gate] rows become [all queries | all gates], fused
 *     with k_proj and v_proj into one weight [q | gate | k | v].
 *   - MoE: experts become one stacked weight per projection, expert-major: gate_up [E][2I][H]
 *     (gate rows then up rows) and down [E][H][I]; the router gets shared_expert_gate as an extra
 *     row so one matmul yields both.
 *   - zero-centred norm weights are stored as 1 + w (float32); the gated norm weight as is.
 *   - lm_head is its own tensor unless tie_word_embeddings.
 * Tensor parallelism: the same row selections describe a rank's slice (heads [h0, h0 + n) of its
 * rank for column-parallel weights, a column range for row-parallel ones, an intermediate range
 * for the FFNs, a vocabulary range for embed/lm_head); every offset below is rank tp_rank's. The
 * slices point into the one mmapped checkpoint (zero-copy on CPU), never a per-rank copy. The
 * embedding of a rank gets one extra all-zero row: ids outside its vocabulary slice look it up, so
 * the all-reduce of the ranks' lookups is exactly the one real row.
 * FP8 row-parallel slices: a slice starting inside a 128-column scale block (expert and shared
 * down_proj at TP 8: 512 / 8 = 64 columns per rank) is described with a finer scale grid of
 * gcd(block_k, first column) columns, each fine block copying its 128-block's scale: the fp8 bytes
 * stay in place and every dequantised weight is bitwise the same. If that grid is not a multiple
 * of 16 columns (the kernels' unit; only toy models) the slice is dequantised to F32 instead.
 */
#include "model/qwen3next.h"
#include "model/spec.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct loader {
    qn_model *m;
    eng_progress pg;
    uint64_t done;
} loader;

/* Host memory that weights reference (re-gridded FP8 scales, dequantised slices), freed with the
 * model after its weights. */
static void *host_keep(qn_model *m, size_t bytes)
{
    if (m->n_hbufs == m->cap_hbufs) {
        int cap = m->cap_hbufs ? 2 * m->cap_hbufs : 16;
        void **b = eng_realloc(m->hbufs, (size_t)cap * sizeof *b);
        if (!b) return NULL;
        m->hbufs = b;
        m->cap_hbufs = cap;
    }
    void *p = eng_malloc_aligned(bytes ? bytes : 64);
    if (p) m->hbufs[m->n_hbufs++] = p;
    return p;
}

void *qn_model_alloc(qn_model *m, size_t bytes)
{
    if (m->n_bufs == m->cap_bufs) {
        int cap = m->cap_bufs ? 2 * m->cap_bufs : 64;
        void **b = eng_realloc(m->bufs, (size_t)cap * sizeof *b);
        if (!b) return NULL;
        m->bufs = b;
        m->cap_bufs = cap;
    }
    void *p = m->be->alloc(m->be->ctx, bytes);
    if (p) m->bufs[m->n_bufs++] = p;
    return p;
}

/* Finds tensor (kind, layer, expert) through the spec; the error names the file and tensor. */
static eng_status req(loader *ld, qn_tensor_kind kind, int layer, int expert, const eng_st_tensor **t,
                      const eng_st_tensor **sc)
{
    qn_model *m = ld->m;
    qn_tensor_id id = {kind, layer, expert, false};
    eng_status st = qn_spec_require(&m->cfg, m->st, &id, t, sc);
    if (st != ENG_OK) {
        char name[QN_TENSOR_NAME_MAX];
        const eng_st_tensor *f = qn_tensor_name(&id, name, sizeof name) ? eng_st_find(m->st, name) : NULL;
        return eng_err_wrap(st, "%s", f ? eng_st_file_path(m->st, f->file_index) : m->dir);
    }
    eng_st_prefetch(m->st, *t);
    ld->done += (*t)->n_bytes;
    if (sc && *sc) ld->done += (*sc)->n_bytes;
    eng_progress_update(&ld->pg, ld->done);
    return ENG_OK;
}

/* ==== float vectors =========================================================================== */

static float elem_f32(const eng_st_tensor *t, int64_t i)
{
    const uint8_t *p = (const uint8_t *)t->data;
    switch (t->dtype) {
    case ENG_DTYPE_F32: {
        float f;
        memcpy(&f, p + 4 * i, 4);
        return f;
    }
    case ENG_DTYPE_BF16: {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        return eng_bf16_to_f32(h);
    }
    default: {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        return eng_f16_to_f32(h);
    }
    }
}

/* d_out = backend copy of (add + t[src[i]]) for i < n (src NULL: identity). */
static eng_status load_vec(loader *ld, const eng_st_tensor *t, int64_t n, const int32_t *src, float add, float **d_out)
{
    qn_model *m = ld->m;
    eng_status st = ENG_OK;
    float *h = eng_malloc((size_t)n * sizeof *h);
    float *d = NULL;
    if (!h) return eng_err_set(ENG_ERR_NOMEM, "tensor '%s': out of memory", t->name);
    for (int64_t i = 0; i < n; i++) h[i] = add + elem_f32(t, src ? src[i] : i);
    d = qn_model_alloc(m, (size_t)n * sizeof *h);
    if (!d) {
        st = eng_err_set(ENG_ERR_NOMEM, "tensor '%s': out of backend memory", t->name);
        goto out;
    }
    m->be->copy_h2d(m->be->ctx, d, h, (size_t)n * sizeof *h);
    *d_out = d;
out:
    eng_free(h);
    return st;
}

static eng_status vec(loader *ld, qn_tensor_kind kind, int layer, float add, float **d_out)
{
    const eng_st_tensor *t;
    eng_status st = req(ld, kind, layer, -1, &t, NULL);
    if (st != ENG_OK) return st;
    return load_vec(ld, t, (int64_t)t->numel, NULL, add, d_out);
}

/* ==== matrices ================================================================================ */

static qn_weight_part part_of(const qn_model *m, const eng_st_tensor *t, const eng_st_tensor *sc, int64_t n_rows,
                              const int32_t *row_idx, int64_t row0, int64_t col0)
{
    qn_weight_part p = {0};
    p.name = t->name;
    p.dtype = t->dtype;
    p.data = t->data;
    p.src_rows = t->shape[0];
    p.src_cols = t->n_dims > 1 ? t->shape[1] : 1;
    p.scale = sc ? sc->data : NULL;
    p.block_n = m->cfg.quant.block_n > 0 ? m->cfg.quant.block_n : 128;
    p.block_k = m->cfg.quant.block_k > 0 ? m->cfg.quant.block_k : 128;
    p.n_rows = n_rows;
    p.row_idx = row_idx;
    p.row0 = row0;
    p.col0 = col0;
    return p;
}

static int64_t gcd64(int64_t a, int64_t b)
{
    while (b) {
        int64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

static int64_t part_src_row(const qn_weight_part *p, int64_t i)
{
    return p->row_idx ? p->row_idx[i] : p->row0 + i;
}

/* An FP8 part whose first column is not on a scale-block boundary (a row-parallel slice): re-grid
 * its scales to gcd(block_k, col0) columns, or dequantise it to F32 (see the file comment). */
static eng_status fp8_align(loader *ld, qn_weight_part *p, int64_t cols)
{
    qn_model *m = ld->m;
    if (p->dtype != ENG_DTYPE_F8_E4M3 || p->block_k <= 0 || p->col0 % p->block_k == 0) return ENG_OK;
    const int64_t bk = p->block_k, bn = p->block_n, g = gcd64(bk, p->col0);
    const int64_t src_kb = (p->src_cols + bk - 1) / bk, src_nb = (p->src_rows + bn - 1) / bn;
    if (!p->scale || p->col0 < 0 || p->col0 + cols > p->src_cols)
        return eng_err_set(ENG_ERR_INVALID, "tensor '%s': columns [%lld, %lld) outside [0, %lld)", p->name,
                           (long long)p->col0, (long long)(p->col0 + cols), (long long)p->src_cols);
    if (g % 16 == 0) {
        const int64_t kb2 = (p->src_cols + g - 1) / g;
        float *s2 = host_keep(m, (size_t)(src_nb * kb2) * sizeof *s2);
        if (!s2) return eng_err_set(ENG_ERR_NOMEM, "tensor '%s': out of memory for FP8 scales", p->name);
        const uint8_t *s = p->scale;
        for (int64_t nb = 0; nb < src_nb; nb++)
            for (int64_t j = 0; j < kb2; j++) memcpy(&s2[nb * kb2 + j], s + (nb * src_kb + (j * g) / bk) * 4, 4);
        p->scale = s2;
        p->block_k = (int)g;
        return ENG_OK;
    }
    float *w = host_keep(m, (size_t)(p->n_rows * cols) * sizeof *w);
    if (!w) return eng_err_set(ENG_ERR_NOMEM, "tensor '%s': out of memory dequantising an FP8 slice", p->name);
    const uint8_t *q = p->data, *s = p->scale;
    for (int64_t i = 0; i < p->n_rows; i++) {
        const int64_t r = part_src_row(p, i);
        if (r < 0 || r >= p->src_rows)
            return eng_err_set(ENG_ERR_INVALID, "tensor '%s': row %lld out of range", p->name, (long long)r);
        for (int64_t k = 0; k < cols; k++) {
            const int64_t c = p->col0 + k;
            float sc;
            memcpy(&sc, s + ((r / bn) * src_kb + c / bk) * 4, 4);
            w[i * cols + k] = eng_fp8e4m3_to_f32(q[r * p->src_cols + c]) * sc;
        }
    }
    p->dtype = ENG_DTYPE_F32;
    p->data = w;
    p->src_rows = p->n_rows;
    p->src_cols = cols;
    p->scale = NULL;
    p->row_idx = NULL;
    p->row0 = 0;
    p->col0 = 0;
    return ENG_OK;
}

static eng_status make_weight(loader *ld, const char *name, int64_t cols, int n_mats, int n_parts,
                              const qn_weight_part *parts, qn_weight **out)
{
    eng_status st = ENG_OK;
    qn_weight_part *fixed = NULL;
    const size_t n = (size_t)n_mats * (size_t)n_parts;
    for (size_t i = 0; i < n; i++) {
        const qn_weight_part *p = &parts[i];
        if (p->dtype != ENG_DTYPE_F8_E4M3 || p->block_k <= 0 || p->col0 % p->block_k == 0) continue;
        if (!fixed) {
            fixed = eng_malloc(n * sizeof *fixed);
            if (!fixed) return eng_err_set(ENG_ERR_NOMEM, "weight '%s': out of memory", name);
            memcpy(fixed, parts, n * sizeof *fixed);
        }
        if ((st = fp8_align(ld, &fixed[i], cols)) != ENG_OK) goto out;
    }
    qn_weight_desc d = {name, cols, n_mats, n_parts, fixed ? fixed : parts};
    st = ld->m->be->weight_create(ld->m->be->ctx, &d, out);
    if (st != ENG_OK) st = eng_err_wrap(st, "%s", ld->m->dir);
out:
    eng_free(fixed);
    return st;
}

/* A whole 2-D tensor as a one-part weight (rows [row0, row0+n), columns [col0, col0+cols)). */
static eng_status simple_weight(loader *ld, qn_tensor_kind kind, int layer, int64_t row0, int64_t n_rows, int64_t col0,
                                int64_t cols, qn_weight **out)
{
    const eng_st_tensor *t, *sc;
    eng_status st = req(ld, kind, layer, -1, &t, &sc);
    if (st != ENG_OK) return st;
    qn_weight_part p = part_of(ld->m, t, sc, n_rows, NULL, row0, col0);
    return make_weight(ld, t->name, cols, 1, 1, &p, out);
}

/* ==== layers ================================================================================== */

static eng_status load_gdn(loader *ld, int l, qn_layer_w *L)
{
    qn_model *m = ld->m;
    const qn_dims *d = &m->d;
    const qn_config *c = &m->cfg;
    const int Hk = c->lin_n_k_heads, Hv = c->lin_n_v_heads, R = Hv / Hk, dk = d->dk, dv = d->dv;
    const int kh0 = d->tp_rank * d->hk, vh0 = d->tp_rank * d->hv;
    const int64_t G = 2 * dk + 2 * R * dv; /* rows of one K-head group in in_proj_qkvz */
    eng_status st = ENG_OK;
    int32_t *rows = eng_malloc((size_t)(d->conv_dim + d->vd) * sizeof *rows);
    int32_t *ch = eng_malloc((size_t)d->conv_dim * sizeof *ch);
    int32_t *ba = eng_malloc((size_t)(2 * d->hv) * sizeof *ba);
    float *conv_t = NULL;
    if (!rows || !ch || !ba) {
        st = eng_err_set(ENG_ERR_NOMEM, "layer %d: out of memory", l);
        goto out;
    }
    int n = 0, nc = 0;
    for (int i = 0; i < d->hk; i++) /* q */
        for (int e = 0; e < dk; e++) {
            rows[n++] = (int32_t)((kh0 + i) * G + e);
            ch[nc++] = (kh0 + i) * dk + e;
        }
    for (int i = 0; i < d->hk; i++) /* k */
        for (int e = 0; e < dk; e++) {
            rows[n++] = (int32_t)((kh0 + i) * G + dk + e);
            ch[nc++] = Hk * dk + (kh0 + i) * dk + e;
        }
    for (int h = 0; h < d->hv; h++) /* v */
        for (int e = 0; e < dv; e++) {
            int hh = vh0 + h;
            rows[n++] = (int32_t)((hh / R) * G + 2 * dk + (hh % R) * dv + e);
            ch[nc++] = 2 * Hk * dk + hh * dv + e;
        }
    for (int h = 0; h < d->hv; h++) /* z */
        for (int e = 0; e < dv; e++) {
            int hh = vh0 + h;
            rows[n++] = (int32_t)((hh / R) * G + 2 * dk + R * dv + (hh % R) * dv + e);
        }
    for (int h = 0; h < d->hv; h++) {
        int hh = vh0 + h;
        ba[h] = (hh / R) * 2 * R + hh % R;              /* b */
        ba[d->hv + h] = (hh / R) * 2 * R + R + hh % R;  /* a */
    }
    const eng_st_tensor *tq, *sq, *tba, *sba, *t;
    if ((st = req(ld, QN_T_LIN_QKVZ, l, -1, &tq, &sq)) != ENG_OK) goto out;
    if ((st = req(ld, QN_T_LIN_BA, l, -1, &tba, &sba)) != ENG_OK) goto out;
    qn_weight_part parts[2] = {part_of(m, tq, sq, n, rows, 0, 0), part_of(m, tba, sba, 2 * d->hv, ba, 0, 0)};
    char name[96];
    snprintf(name, sizeof name, "layer %d linear_attn.in_proj", l);
    if ((st = make_weight(ld, name, d->H, 1, 2, parts, &L->lin_in)) != ENG_OK) goto out;
    /* conv1d [conv_dim][1][K] -> [K][conv_dim local] */
    if ((st = req(ld, QN_T_LIN_CONV, l, -1, &t, NULL)) != ENG_OK) goto out;
    {
        const int K = d->conv_k, C = d->conv_dim;
        conv_t = eng_malloc((size_t)K * C * sizeof *conv_t);
        if (!conv_t) {
            st = eng_err_set(ENG_ERR_NOMEM, "layer %d: out of memory", l);
            goto out;
        }
        for (int j = 0; j < K; j++)
            for (int cc = 0; cc < C; cc++) conv_t[(size_t)j * C + cc] = elem_f32(t, (int64_t)ch[cc] * K + j);
        L->d_conv_w = qn_model_alloc(m, (size_t)K * C * sizeof *conv_t);
        if (!L->d_conv_w) {
            st = eng_err_set(ENG_ERR_NOMEM, "layer %d: out of backend memory", l);
            goto out;
        }
        m->be->copy_h2d(m->be->ctx, L->d_conv_w, conv_t, (size_t)K * C * sizeof *conv_t);
    }
    {
        int32_t vh[1024];
        for (int h = 0; h < d->hv && h < 1024; h++) vh[h] = vh0 + h;
        if ((st = req(ld, QN_T_LIN_A_LOG, l, -1, &t, NULL)) != ENG_OK) goto out;
        if ((st = load_vec(ld, t, d->hv, vh, 0.0f, &L->d_A_log)) != ENG_OK) goto out;
        if ((st = req(ld, QN_T_LIN_DT_BIAS, l, -1, &t, NULL)) != ENG_OK) goto out;
        if ((st = load_vec(ld, t, d->hv, vh, 0.0f, &L->d_dt_bias)) != ENG_OK) goto out;
    }
    if ((st = vec(ld, QN_T_LIN_NORM, l, 0.0f, &L->d_gnorm)) != ENG_OK) goto out;
    /* out_proj [H][Hv*dv] is row-parallel: this rank's value heads are its columns */
    st = simple_weight(ld, QN_T_LIN_OUT, l, 0, d->H, (int64_t)vh0 * dv, d->vd, &L->lin_out);
out:
    eng_free(rows);
    eng_free(ch);
    eng_free(ba);
    eng_free(conv_t);
    return st;
}

static eng_status load_attn(loader *ld, int l, qn_layer_w *L)
{
    qn_model *m = ld->m;
    const qn_dims *d = &m->d;
    const int dh = d->dh, qh0 = d->tp_rank * d->nq;
    const int kvh0 = m->cfg.n_kv_heads % d->tp_world == 0 ? d->tp_rank * d->nkv
                                                            : d->tp_rank / (d->tp_world / m->cfg.n_kv_heads);
    eng_status st = ENG_OK;
    int32_t *qrows = eng_malloc((size_t)2 * d->nq * dh * sizeof *qrows);
    if (!qrows) return eng_err_set(ENG_ERR_NOMEM, "layer %d: out of memory", l);
    int n = 0;
    for (int half = 0; half < 2; half++) /* queries, then gates */
        for (int h = 0; h < d->nq; h++)
            for (int e = 0; e < dh; e++) qrows[n++] = (qh0 + h) * 2 * dh + half * dh + e;
    const eng_st_tensor *tq, *sq, *tk, *sk, *tv, *sv;
    if ((st = req(ld, QN_T_ATTN_Q, l, -1, &tq, &sq)) != ENG_OK) goto out;
    if ((st = req(ld, QN_T_ATTN_K, l, -1, &tk, &sk)) != ENG_OK) goto out;
    if ((st = req(ld, QN_T_ATTN_V, l, -1, &tv, &sv)) != ENG_OK) goto out;
    qn_weight_part parts[3] = {part_of(m, tq, sq, n, qrows, 0, 0),
                               part_of(m, tk, sk, (int64_t)d->nkv * dh, NULL, (int64_t)kvh0 * dh, 0),
                               part_of(m, tv, sv, (int64_t)d->nkv * dh, NULL, (int64_t)kvh0 * dh, 0)};
    char name[96];
    snprintf(name, sizeof name, "layer %d self_attn.qkv", l);
    if ((st = make_weight(ld, name, d->H, 1, 3, parts, &L->attn_qkv)) != ENG_OK) goto out;
    if ((st = vec(ld, QN_T_ATTN_Q_NORM, l, 1.0f, &L->d_q_norm)) != ENG_OK) goto out;
    if ((st = vec(ld, QN_T_ATTN_K_NORM, l, 1.0f, &L->d_k_norm)) != ENG_OK) goto out;
    st = simple_weight(ld, QN_T_ATTN_O, l, 0, d->H, (int64_t)qh0 * dh, (int64_t)d->nq * dh, &L->attn_o);
out:
    eng_free(qrows);
    return st;
}

static eng_status load_moe(loader *ld, int l, qn_layer_w *L)
{
    qn_model *m = ld->m;
    const qn_dims *d = &m->d;
    const int E = d->E, I = d->I, i0 = d->tp_rank * I;
    eng_status st = ENG_OK;
    qn_weight_part *parts = eng_calloc((size_t)E * 2, sizeof *parts);
    if (!parts) return eng_err_set(ENG_ERR_NOMEM, "layer %d: out of memory", l);
    char name[96];
    const eng_st_tensor *t, *sc, *t2, *sc2;
    /* router (+ shared expert gate as the last row) */
    if ((st = req(ld, QN_T_MOE_ROUTER, l, -1, &t, &sc)) != ENG_OK) goto out;
    parts[0] = part_of(m, t, sc, E, NULL, 0, 0);
    L->has_shared = d->Is > 0;
    if (L->has_shared) {
        if ((st = req(ld, QN_T_SHARED_EXPERT_GATE, l, -1, &t2, &sc2)) != ENG_OK) goto out;
        parts[1] = part_of(m, t2, sc2, 1, NULL, 0, 0);
    }
    snprintf(name, sizeof name, "layer %d mlp.router", l);
    if ((st = make_weight(ld, name, d->H, 1, L->has_shared ? 2 : 1, parts, &L->router)) != ENG_OK) goto out;
    /* experts: gate_up [E][2I][H], down [E][H][I] */
    for (int e = 0; e < E; e++) {
        if ((st = req(ld, QN_T_EXPERT_GATE, l, e, &t, &sc)) != ENG_OK) goto out;
        if ((st = req(ld, QN_T_EXPERT_UP, l, e, &t2, &sc2)) != ENG_OK) goto out;
        parts[2 * e] = part_of(m, t, sc, I, NULL, i0, 0);
        parts[2 * e + 1] = part_of(m, t2, sc2, I, NULL, i0, 0);
    }
    snprintf(name, sizeof name, "layer %d mlp.experts.gate_up", l);
    if ((st = make_weight(ld, name, d->H, E, 2, parts, &L->exp_gu)) != ENG_OK) goto out;
    for (int e = 0; e < E; e++) {
        if ((st = req(ld, QN_T_EXPERT_DOWN, l, e, &t, &sc)) != ENG_OK) goto out;
        parts[e] = part_of(m, t, sc, d->H, NULL, 0, i0);
    }
    snprintf(name, sizeof name, "layer %d mlp.experts.down", l);
    if ((st = make_weight(ld, name, I, E, 1, parts, &L->exp_down)) != ENG_OK) goto out;
    if (L->has_shared) {
        const int s0 = d->tp_rank * d->Is;
        if ((st = req(ld, QN_T_SHARED_GATE, l, -1, &t, &sc)) != ENG_OK) goto out;
        if ((st = req(ld, QN_T_SHARED_UP, l, -1, &t2, &sc2)) != ENG_OK) goto out;
        parts[0] = part_of(m, t, sc, d->Is, NULL, s0, 0);
        parts[1] = part_of(m, t2, sc2, d->Is, NULL, s0, 0);
        snprintf(name, sizeof name, "layer %d mlp.shared_expert.gate_up", l);
        if ((st = make_weight(ld, name, d->H, 1, 2, parts, &L->sh_gu)) != ENG_OK) goto out;
        st = simple_weight(ld, QN_T_SHARED_DOWN, l, 0, d->H, s0, d->Is, &L->sh_down);
    }
out:
    eng_free(parts);
    return st;
}

static eng_status load_dense(loader *ld, int l, qn_layer_w *L)
{
    qn_model *m = ld->m;
    const qn_dims *d = &m->d;
    const int i0 = d->tp_rank * d->Id;
    const eng_st_tensor *t, *sc, *t2, *sc2;
    eng_status st;
    if ((st = req(ld, QN_T_MLP_GATE, l, -1, &t, &sc)) != ENG_OK) return st;
    if ((st = req(ld, QN_T_MLP_UP, l, -1, &t2, &sc2)) != ENG_OK) return st;
    qn_weight_part parts[2] = {part_of(m, t, sc, d->Id, NULL, i0, 0), part_of(m, t2, sc2, d->Id, NULL, i0, 0)};
    char name[96];
    snprintf(name, sizeof name, "layer %d mlp.gate_up", l);
    if ((st = make_weight(ld, name, d->H, 1, 2, parts, &L->mlp_gu)) != ENG_OK) return st;
    return simple_weight(ld, QN_T_MLP_DOWN, l, 0, d->H, i0, d->Id, &L->mlp_down);
}

/* ==== dims ==================================================================================== */

void qn_vocab_slice(int V, int world, int r, int *v0, int *n)
{
    const int per = (V + world - 1) / world;
    int a = r * per, b = a + per;
    if (a > V) a = V;
    if (b > V) b = V;
    *v0 = a;
    *n = b - a;
}

eng_status qn_tp_check(const qn_config *c, int world, const char *dir)
{
    eng_status st = qn_spec_check_tp(c, world);
    if (st != ENG_OK) return eng_err_wrap(st, "%s/config.json", dir);
    int v0, n;
    qn_vocab_slice(c->vocab_size, world, world - 1, &v0, &n);
    if (n < 1)
        return eng_err_set(ENG_ERR_INVALID, "%s/config.json: tensor-parallel size %d leaves rank %d no part of "
                           "vocab_size (%d)", dir, world, world - 1, c->vocab_size);
    return ENG_OK;
}

static eng_status dims_init(qn_model *m, int rank, int world)
{
    const qn_config *c = &m->cfg;
    qn_dims *d = &m->d;
    memset(d, 0, sizeof *d);
    eng_status st = qn_tp_check(c, world, m->dir);
    if (st != ENG_OK) return st;
    if (rank < 0 || rank >= world) return eng_err_set(ENG_ERR_INVALID, "tensor-parallel rank %d of %d", rank, world);
    if (c->attention_bias)
        return eng_err_set(ENG_ERR_UNSUPPORTED, "%s/config.json: attention_bias is not supported", m->dir);
    if (c->rope_scaling.enabled)
        return eng_err_set(ENG_ERR_UNSUPPORTED, "%s/config.json: rope_scaling (YaRN) is not supported yet; remove it "
                           "for contexts up to max_position_embeddings", m->dir);
    d->tp_rank = rank;
    d->tp_world = world;
    d->H = c->hidden_size;
    d->V = c->vocab_size;
    qn_vocab_slice(d->V, world, rank, &d->v0, &d->Vr);
    d->Lw = world == 1 ? d->V : (d->V + world - 1) / world + 1;
    d->n_layers = c->n_layers;
    d->eps = (float)c->rms_norm_eps;
    d->nq = c->n_heads / world;
    d->nkv = c->n_kv_heads % world == 0 ? c->n_kv_heads / world : 1;
    d->dh = c->head_dim;
    d->rot = c->rotary_dim;
    d->hk = c->lin_n_k_heads / world;
    d->hv = c->lin_n_v_heads / world;
    d->dk = c->lin_k_head_dim;
    d->dv = c->lin_v_head_dim;
    d->conv_k = c->lin_conv_kernel;
    d->conv_dim = 2 * d->hk * d->dk + d->hv * d->dv;
    d->vd = d->hv * d->dv;
    d->E = c->n_experts;
    d->topk = c->n_experts_per_tok;
    d->I = c->moe_intermediate / world;
    d->Is = c->shared_intermediate / world;
    d->Id = c->intermediate_size / world;
    d->n_full = c->n_full_layers;
    d->n_lin = c->n_linear_layers;
    d->q_rows = 2 * d->nq * d->dh + 2 * d->nkv * d->dh;
    d->lin_rows = d->conv_dim + d->vd + 2 * d->hv;
    if (d->n_lin > 0 && (d->hk <= 0 || d->hv % d->hk != 0 || d->hv > 1024 || d->conv_k < 1 || d->conv_k > 16))
        return eng_err_set(ENG_ERR_UNSUPPORTED, "%s/config.json: linear attention with %d key / %d value heads and "
                           "%d conv taps is not supported", m->dir, d->hk, d->hv, d->conv_k);
    if (d->n_full > 0 && (d->rot % 2 != 0 || d->rot > d->dh || d->rot / 2 > 512 || d->nq % d->nkv != 0))
        return eng_err_set(ENG_ERR_UNSUPPORTED, "%s/config.json: rotary dim %d of head dim %d is not supported", m->dir,
                           d->rot, d->dh);
    return ENG_OK;
}

/* ==== load / free ============================================================================= */

/* embed_tokens (and lm_head): the whole table for world 1; else this rank's vocabulary rows plus
 * one zero row (index Vr) for ids owned by other ranks. */
static eng_status load_vocab(loader *ld)
{
    qn_model *m = ld->m;
    const qn_dims *d = &m->d;
    const eng_st_tensor *t, *sc;
    eng_status st;
    if ((st = req(ld, QN_T_EMBED, -1, -1, &t, &sc)) != ENG_OK) return st;
    if (d->tp_world == 1) {
        qn_weight_part pe = part_of(m, t, NULL, d->V, NULL, 0, 0);
        if ((st = make_weight(ld, t->name, d->H, 1, 1, &pe, &m->embed)) != ENG_OK) return st;
    } else {
        m->h_zero_row = host_keep(m, (size_t)d->H * sizeof(float));
        if (!m->h_zero_row) return eng_err_set(ENG_ERR_NOMEM, "out of memory");
        memset(m->h_zero_row, 0, (size_t)d->H * sizeof(float));
        qn_weight_part pe[2] = {part_of(m, t, NULL, d->Vr, NULL, d->v0, 0), {0}};
        pe[1].name = "(zero row)";
        pe[1].dtype = ENG_DTYPE_F32;
        pe[1].data = m->h_zero_row;
        pe[1].src_rows = 1;
        pe[1].src_cols = d->H;
        pe[1].n_rows = 1;
        if ((st = make_weight(ld, t->name, d->H, 1, 2, pe, &m->embed)) != ENG_OK) return st;
    }
    if (m->cfg.tie_word_embeddings) {
        m->lm_head = m->embed;
        return ENG_OK;
    }
    return simple_weight(ld, QN_T_LM_HEAD, -1, d->v0, d->Vr, 0, d->H, &m->lm_head);
}

eng_status qn_weights_rank_bytes(const qn_config *cfg, const eng_st_model *st, int world, uint64_t *out)
{
    qn_tensor_spec *list = NULL;
    size_t n = 0;
    *out = 0;
    eng_status s = qn_spec_list(cfg, 0, &list, &n);
    if (s != ENG_OK) return s;
    uint64_t whole = 0, split = 0, kv = 0;
    for (size_t i = 0; i < n; i++) {
        const eng_st_tensor *t = qn_spec_find(st, &list[i].id);
        if (!t) continue; /* the load reports it */
        uint64_t b = t->n_bytes;
        char name[QN_TENSOR_NAME_MAX];
        const eng_st_tensor *sc = qn_tensor_scale_name(&list[i].id, name, sizeof name) ? eng_st_find(st, name) : NULL;
        if (sc) b += sc->n_bytes;
        const qn_tensor_kind k = list[i].id.kind;
        if ((k == QN_T_ATTN_K || k == QN_T_ATTN_V) && cfg->n_kv_heads > 0 && world > cfg->n_kv_heads)
            kv += (b + (uint64_t)cfg->n_kv_heads - 1) / (uint64_t)cfg->n_kv_heads; /* one replicated KV head */
        else if (qn_tensor_kind_tp_split(k))
            split += b;
        else
            whole += b;
    }
    qn_spec_list_free(list);
    *out = whole + kv + (split + (uint64_t)world - 1) / (uint64_t)world;
    return ENG_OK;
}

eng_status qn_weights_load(qn_model *m, int rank, int world, bool progress)
{
    eng_status st = dims_init(m, rank, world);
    if (st != ENG_OK) return st;
    if (m->be->weights_fit) { /* a device backend refuses a model that cannot fit before any copy */
        uint64_t bytes = 0;
        if ((st = qn_weights_rank_bytes(&m->cfg, m->st, world, &bytes)) != ENG_OK) return st;
        if ((st = m->be->weights_fit(m->be->ctx, bytes)) != ENG_OK) return eng_err_wrap(st, "%s", m->dir);
    }
    const qn_dims *d = &m->d;
    loader ld = {.m = m};
    uint64_t total = 0;
    for (size_t i = 0; i < eng_st_count(m->st); i++) {
        const eng_st_tensor *t = eng_st_at(m->st, i);
        if (strncmp(t->name, "mtp.", 4) != 0) total += t->n_bytes;
    }
    eng_progress_begin(&ld.pg, "loading weights", total, true);
    if (!progress) ld.pg.enabled = false;
    m->layers = eng_calloc((size_t)d->n_layers, sizeof *m->layers);
    if (!m->layers) {
        st = eng_err_set(ENG_ERR_NOMEM, "out of memory");
        goto out;
    }
    if ((st = load_vocab(&ld)) != ENG_OK) goto out;
    if ((st = vec(&ld, QN_T_FINAL_NORM, -1, 1.0f, &m->d_final_norm)) != ENG_OK) goto out;
    int n_lin = 0, n_full = 0;
    for (int l = 0; l < d->n_layers; l++) {
        qn_layer_w *L = &m->layers[l];
        L->type = m->cfg.layer_types[l];
        if ((st = vec(&ld, QN_T_INPUT_NORM, l, 1.0f, &L->d_attn_norm)) != ENG_OK) goto out;
        if ((st = vec(&ld, QN_T_POST_NORM, l, 1.0f, &L->d_mlp_norm)) != ENG_OK) goto out;
        if (L->type == QN_LAYER_LINEAR) {
            L->kind_index = n_lin++;
            st = load_gdn(&ld, l, L);
        } else {
            L->kind_index = n_full++;
            st = load_attn(&ld, l, L);
        }
        if (st != ENG_OK) goto out;
        L->moe = qn_config_layer_is_moe(&m->cfg, l);
        if ((st = L->moe ? load_moe(&ld, l, L) : load_dense(&ld, l, L)) != ENG_OK) goto out;
    }
    /* RoPE inverse frequencies, computed as transformers does: 1 / theta^(2i/rot) in float32 */
    if (d->n_full > 0) {
        float inv[512];
        const int half = d->rot / 2;
        for (int i = 0; i < half; i++) inv[i] = 1.0f / powf((float)m->cfg.rope_theta, (float)(2 * i) / (float)d->rot);
        m->d_inv_freq = qn_model_alloc(m, (size_t)(half > 0 ? half : 1) * sizeof(float));
        if (!m->d_inv_freq) {
            st = eng_err_set(ENG_ERR_NOMEM, "out of backend memory");
            goto out;
        }
        if (half > 0) m->be->copy_h2d(m->be->ctx, m->d_inv_freq, inv, (size_t)half * sizeof(float));
        m->rope_scale = 1.0f;
    }
    ld.done = total;
    eng_progress_update(&ld.pg, total);
out:
    eng_progress_end(&ld.pg);
    return st;
}

static void free_weight(qn_model *m, qn_weight *w)
{
    if (w) m->be->weight_destroy(m->be->ctx, w);
}

void qn_weights_free(qn_model *m)
{
    if (!m || !m->be) return;
    if (m->layers) {
        for (int l = 0; l < m->d.n_layers; l++) {
            qn_layer_w *L = &m->layers[l];
            qn_weight *ws[] = {L->lin_in, L->lin_out, L->attn_qkv, L->attn_o, L->router, L->exp_gu,
                               L->exp_down, L->sh_gu, L->sh_down, L->mlp_gu, L->mlp_down};
            for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) free_weight(m, ws[i]);
        }
        eng_free(m->layers);
        m->layers = NULL;
    }
    if (m->lm_head != m->embed) free_weight(m, m->lm_head);
    free_weight(m, m->embed);
    m->lm_head = m->embed = NULL;
    for (int i = 0; i < m->n_hbufs; i++) eng_free_aligned(m->hbufs[i]);
    eng_free(m->hbufs);
    m->hbufs = NULL;
    m->n_hbufs = m->cap_hbufs = 0;
    m->h_zero_row = NULL;
}
