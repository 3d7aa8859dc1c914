/* model/qwen3next.c - the Qwen3-Next forward pass over a ragged batch (docs/qwen3-next.md §3),
 * written only in terms of the op table (backend/backend.h).
 *
 *   x = embed(tokens)
 *   for each layer:  xn = norm(x)             (fused with the residual add of the previous block)
 *                    delta = GDN(xn) or GatedAttention(xn)
 *                    x += delta; xn = norm(x)
 *                    delta = MoE(xn) or MLP(xn)
 *   x += delta; logits[rows] = lm_head(norm(x[rows]))
 *
 * GDN:        proj = W_in xn -> [q|k|v | z | b | a]; conv (+state) -> SiLU; gates; delta rule
 *             (+state); gated RMSNorm with z; out_proj.
 * Attention:  proj = W_qkv xn -> [q | gate | k | v]; q/k RMSNorm + partial RoPE; K,V -> paged
 *             cache; causal GQA attention over the cache, times sigmoid(gate); o_proj.
 * MoE:        router logits (+ shared-expert gate logit) -> top-k; shared expert MLP; routed
 *             experts combined with sigmoid(shared gate) * shared.
 * The residual stream and every activation are float32.
 */
#include "model/cache.h"
#include "model/qwen3next.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define OP(name, ...) m->be->name(m->be->ctx, __VA_ARGS__)

/* ==== load / destroy ========================================================================== */

static int imax(int a, int b)
{
    return a > b ? a : b;
}

static eng_status alloc_activations(qn_model *m)
{
    const qn_dims *d = &m->d;
    const size_t T = (size_t)m->max_tokens;
    m->proj_cols = imax(imax(d->n_full ? d->q_rows : 0, d->n_lin ? d->lin_rows : 0),
                        imax(2 * imax(d->Is, d->Id), d->E + 1));
    struct {
        void **p;
        size_t n;
    } a[] = {
        {(void **)&m->d_x, T * d->H},
        {(void **)&m->d_xn, T * d->H},
        {(void **)&m->d_proj, T * (size_t)m->proj_cols},
        {(void **)&m->d_conv, T * (size_t)imax(d->conv_dim, 1)},
        {(void **)&m->d_beta, T * (size_t)imax(d->hv, 1)},
        {(void **)&m->d_g, T * (size_t)imax(d->hv, 1)},
        {(void **)&m->d_core, T * (size_t)imax(imax(d->vd, d->nq * d->dh), 1)},
        {(void **)&m->d_core2, T * (size_t)imax(d->vd, 1)},
        {(void **)&m->d_delta, T * d->H},
        {(void **)&m->d_act, T * (size_t)imax(imax(d->Is, d->Id), 1)},
        {(void **)&m->d_shared, T * d->H},
        {(void **)&m->d_rlog, T * (size_t)(d->E + 1)},
        {(void **)&m->d_ridx, T * (size_t)imax(d->topk, 1)},
        {(void **)&m->d_rwt, T * (size_t)imax(d->topk, 1)},
        {(void **)&m->d_ids, T},
        {(void **)&m->d_pos, T},
        {(void **)&m->d_xsel, (size_t)QN_LOGIT_ROWS * d->H},
        {(void **)&m->d_logits, (size_t)QN_LOGIT_ROWS * d->V},
    };
    m->act_bytes = 0;
    for (size_t i = 0; i < sizeof a / sizeof a[0]; i++) {
        m->act_bytes += a[i].n * 4;
        *a[i].p = qn_model_alloc(m, a[i].n * 4);
        if (!*a[i].p) {
            char b[32];
            return eng_err_set(ENG_ERR_NOMEM, "out of memory for activations (%s for %d tokens)",
                               eng_fmt_bytes((double)a[i].n * 4, b, sizeof b), m->max_tokens);
        }
    }
    m->h_pos = eng_malloc(T * sizeof *m->h_pos);
    if (!m->h_pos) return eng_err_set(ENG_ERR_NOMEM, "out of memory");
    qn_op_limits lim = {
        .max_tokens = m->max_tokens,
        .hidden = d->H,
        .n_experts = d->E,
        .top_k = d->topk,
        .moe_inter = d->I,
        .gdn_dk = d->n_lin ? d->dk : 0,
        .gdn_dv = d->n_lin ? d->dv : 0,
        .attn_head_dim = d->n_full ? d->dh : 0,
        .attn_group = d->n_full ? d->nq / d->nkv : 0,
    };
    return m->be->reserve(m->be->ctx, &lim);
}

static void log_summary(const qn_model *m, double secs)
{
    size_t owned = 0, mapped = 0;
    const qn_weight *seen_embed = NULL;
    for (int l = 0; l < m->d.n_layers; l++) {
        const qn_layer_w *L = &m->layers[l];
        const qn_weight *ws[] = {L->lin_in, L->lin_out, L->attn_qkv, L->attn_o, L->router, L->exp_gu,
                                 L->exp_down, L->sh_gu, L->sh_down, L->mlp_gu, L->mlp_down};
        for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) {
            if (!ws[i]) continue;
            size_t o, p;
            m->be->weight_bytes(ws[i], &o, &p);
            owned += o;
            mapped += p;
        }
    }
    const qn_weight *g[] = {m->embed, m->lm_head};
    for (int i = 0; i < 2; i++) {
        if (!g[i] || g[i] == seen_embed) continue;
        seen_embed = g[i];
        size_t o, p;
        m->be->weight_bytes(g[i], &o, &p);
        owned += o;
        mapped += p;
    }
    char a[32], b[32], c[32];
    eng_log(ENG_LOG_INFO, "model %s: %d layers (%d GDN, %d attention), %s weights in place + %s converted, "
            "%s activations for %d tokens, backend %s, loaded in %.2f s", m->dir, m->d.n_layers, m->d.n_lin,
            m->d.n_full, eng_fmt_bytes((double)mapped, a, sizeof a), eng_fmt_bytes((double)owned, b, sizeof b),
            eng_fmt_bytes((double)m->act_bytes, c, sizeof c),
            m->max_tokens, m->be->name, secs);
}

eng_status qn_model_load(const char *dir, eng_backend *be, const qn_model_params *p, qn_model **out)
{
    *out = NULL;
    qn_model_params prm = {0};
    if (p) prm = *p;
    if (prm.max_tokens <= 0) prm.max_tokens = 256;
    if (prm.max_tokens > (1 << 20)) return eng_err_set(ENG_ERR_INVALID, "max_tokens %d is too large", prm.max_tokens);
    const double t0 = eng_now_s();
    eng_status st = ENG_OK;
    qn_model *m = eng_calloc(1, sizeof *m);
    if (!m) return eng_err_set(ENG_ERR_NOMEM, "out of memory");
    m->be = be;
    m->max_tokens = prm.max_tokens;
    m->dir = eng_strdup(dir);
    if (!m->dir) {
        st = eng_err_set(ENG_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if ((st = qn_config_load(dir, &m->cfg)) != ENG_OK) goto fail;
    if ((st = eng_st_open(dir, true, &m->st)) != ENG_OK) goto fail;
    if ((st = qn_weights_load(m, &prm)) != ENG_OK) goto fail;
    if ((st = alloc_activations(m)) != ENG_OK) goto fail;
    if (!prm.quiet) log_summary(m, eng_now_s() - t0);
    *out = m;
    return ENG_OK;
fail:
    qn_model_destroy(m);
    return st;
}

void qn_model_destroy(qn_model *m)
{
    if (!m) return;
    qn_weights_free(m);
    for (int i = 0; i < m->n_bufs; i++) m->be->free(m->be->ctx, m->bufs[i]);
    eng_free(m->bufs);
    eng_free(m->seqs);
    eng_free(m->h_pos);
    eng_st_close(m->st);
    eng_free(m->dir);
    eng_free(m);
}

const qn_config *qn_model_config(const qn_model *m)
{
    return &m->cfg;
}

eng_backend *qn_model_backend(const qn_model *m)
{
    return m->be;
}

int qn_model_max_tokens(const qn_model *m)
{
    return m->max_tokens;
}

int qn_model_vocab(const qn_model *m)
{
    return m->d.V;
}

/* ==== batch validation ======================================================================== */

static eng_status check_batch(qn_model *m, const qn_cache *c, const qn_batch *b, const float *logits,
                              const qn_kv_view *kv, const qn_state_view *sv)
{
    const qn_dims *d = &m->d;
    if (b->n_tokens < 0 || b->n_tokens > m->max_tokens)
        return eng_err_set(ENG_ERR_INVALID, "batch: %d tokens, the model was loaded for at most %d per call",
                           b->n_tokens, m->max_tokens);
    if (b->n_tokens > 0 && (!b->tokens || !b->seqs || b->n_seqs < 1))
        return eng_err_set(ENG_ERR_INVALID, "batch: tokens or sequences missing");
    if (b->n_out < 0 || (b->n_out > 0 && (!b->out_rows || !logits)))
        return eng_err_set(ENG_ERR_INVALID, "batch: output rows or the logits buffer missing");
    if ((d->n_full && (kv->n_kv_heads != d->nkv || kv->head_dim != d->dh || kv->n_layers != d->n_full)) ||
        (d->n_lin && (sv->n_layers != d->n_lin || sv->conv_dim != d->conv_dim || sv->n_v_heads != d->hv ||
                      sv->dk != d->dk || sv->dv != d->dv)))
        return eng_err_set(ENG_ERR_INVALID, "batch: the cache was made for another model");
    for (int t = 0; t < b->n_tokens; t++)
        if (b->tokens[t] < 0 || b->tokens[t] >= d->V)
            return eng_err_set(ENG_ERR_INVALID, "batch: token %d at row %d is outside the vocabulary [0, %d)",
                               b->tokens[t], t, d->V);
    long rows = 0;
    for (int i = 0; i < b->n_seqs; i++) {
        const qn_seq *s = &b->seqs[i];
        if (s->n_new < 1 || s->pos < 0 || s->pos > (1 << 30) - s->n_new)
            return eng_err_set(ENG_ERR_INVALID, "batch: sequence %d has %d new tokens at position %d", i, s->n_new,
                               s->pos);
        rows += s->n_new;
        if (d->n_lin) {
            if (s->slot < 0 || s->slot >= qn_cache_n_slots(c))
                return eng_err_set(ENG_ERR_INVALID, "batch: sequence %d uses slot %d, the cache has %d", i, s->slot,
                                   qn_cache_n_slots(c));
            for (int j = 0; j < i; j++)
                if (b->seqs[j].slot == s->slot)
                    return eng_err_set(ENG_ERR_INVALID, "batch: sequences %d and %d share slot %d", j, i, s->slot);
        }
        if (d->n_full) {
            const long need = ((long)s->pos + s->n_new + kv->block_size - 1) / kv->block_size;
            if (!s->block_table || s->n_blocks < need)
                return eng_err_set(ENG_ERR_INVALID, "batch: sequence %d needs %ld KV blocks for %d positions, its "
                                   "table has %d", i, need, s->pos + s->n_new, s->n_blocks);
            for (long k = 0; k < need; k++)
                if (s->block_table[k] < 0 || s->block_table[k] >= kv->n_blocks)
                    return eng_err_set(ENG_ERR_INVALID, "batch: sequence %d block %ld is %d, the pool has %d", i, k,
                                       s->block_table[k], kv->n_blocks);
        }
    }
    if (rows != b->n_tokens)
        return eng_err_set(ENG_ERR_INVALID, "batch: sequences cover %ld rows, the batch has %d tokens", rows,
                           b->n_tokens);
    for (int i = 0; i < b->n_out; i++)
        if (b->out_rows[i] < 0 || b->out_rows[i] >= b->n_tokens)
            return eng_err_set(ENG_ERR_INVALID, "batch: output row %d is outside [0, %d)", b->out_rows[i],
                               b->n_tokens);
    if (m->seqs_cap < b->n_seqs) {
        qn_seq_desc *s = eng_realloc(m->seqs, (size_t)b->n_seqs * sizeof *s);
        if (!s) return eng_err_set(ENG_ERR_NOMEM, "batch: out of memory");
        m->seqs = s;
        m->seqs_cap = b->n_seqs;
    }
    return ENG_OK;
}

/* ==== blocks ================================================================================== */

static void gdn_block(qn_model *m, const qn_layer_w *L, int T, int n_seqs, const qn_state_view *sv)
{
    const qn_dims *d = &m->d;
    const int64_t P = d->lin_rows;
    const qn_gdn_dims gd = {d->hk, d->hv, d->dk, d->dv, d->conv_k, L->kind_index};
    OP(matmul, L->lin_in, 0, m->d_xn, d->H, T, m->d_proj, P);
    OP(gdn_conv, m->seqs, n_seqs, m->d_proj, P, d->conv_dim, L->d_conv_w, &gd, sv, m->d_conv);
    OP(gdn_gates, m->d_proj + d->conv_dim + d->vd, P, T, d->hv, L->d_A_log, L->d_dt_bias, m->d_beta, m->d_g);
    OP(gdn, m->seqs, n_seqs, m->d_conv, m->d_beta, m->d_g, &gd, sv, m->d_core);
    OP(gated_rmsnorm, m->d_core, m->d_proj + d->conv_dim, P, T, d->hv, d->dv, L->d_gnorm, d->eps, m->d_core2);
    OP(matmul, L->lin_out, 0, m->d_core2, d->vd, T, m->d_delta, d->H);
}

static void attn_block(qn_model *m, const qn_layer_w *L, int T, int n_seqs, const qn_kv_view *kv)
{
    const qn_dims *d = &m->d;
    const int64_t P = d->q_rows;
    const int qd = d->nq * d->dh, kd = d->nkv * d->dh;
    const qn_attn_dims ad = {d->nq, d->nkv, d->dh, L->kind_index, 1.0f / sqrtf((float)d->dh)};
    float *q = m->d_proj, *gate = q + qd, *k = gate + qd, *v = k + kd;
    OP(matmul, L->attn_qkv, 0, m->d_xn, d->H, T, m->d_proj, P);
    OP(qk_norm_rope, q, P, d->nq, k, P, d->nkv, T, d->dh, L->d_q_norm, L->d_k_norm, d->eps, m->d_pos, d->rot,
       m->d_inv_freq, m->rope_scale);
    OP(kv_write, m->seqs, n_seqs, k, P, v, P, &ad, kv);
    OP(attention, m->seqs, n_seqs, q, P, gate, P, &ad, kv, m->d_core);
    OP(matmul, L->attn_o, 0, m->d_core, qd, T, m->d_delta, d->H);
}

static void mlp_block(qn_model *m, const qn_layer_w *L, int T)
{
    const qn_dims *d = &m->d;
    if (!L->moe) {
        OP(matmul, L->mlp_gu, 0, m->d_xn, d->H, T, m->d_proj, 2 * d->Id);
        OP(silu_mul, m->d_proj, 2 * d->Id, T, d->Id, m->d_act);
        OP(matmul, L->mlp_down, 0, m->d_act, d->Id, T, m->d_delta, d->H);
        return;
    }
    const int64_t RL = d->E + (L->has_shared ? 1 : 0);
    OP(matmul, L->router, 0, m->d_xn, d->H, T, m->d_rlog, RL);
    OP(moe_route, m->d_rlog, RL, T, d->E, d->topk, m->cfg.norm_topk_prob, m->d_ridx, m->d_rwt);
    if (L->has_shared) {
        OP(matmul, L->sh_gu, 0, m->d_xn, d->H, T, m->d_proj, 2 * d->Is);
        OP(silu_mul, m->d_proj, 2 * d->Is, T, d->Is, m->d_act);
        OP(matmul, L->sh_down, 0, m->d_act, d->Is, T, m->d_shared, d->H);
    }
    OP(moe_experts, L->exp_gu, L->exp_down, d->I, m->d_xn, T, d->H, m->d_ridx, m->d_rwt, d->topk,
       L->has_shared ? m->d_shared : NULL, L->has_shared ? m->d_rlog + d->E : NULL, RL, m->d_delta);
}

/* ==== forward ================================================================================= */

eng_status qn_model_forward(qn_model *m, qn_cache *c, const qn_batch *b, float *logits)
{
    qn_kv_view kv;
    qn_state_view sv;
    qn_cache_views(c, &kv, &sv);
    eng_status st = check_batch(m, c, b, logits, &kv, &sv);
    if (st != ENG_OK) return st;
    const int T = b->n_tokens;
    if (T == 0) return ENG_OK;
    const qn_dims *d = &m->d;
    for (int i = 0, row = 0; i < b->n_seqs; i++) {
        const qn_seq *s = &b->seqs[i];
        m->seqs[i] = (qn_seq_desc){row, s->n_new, s->pos, s->slot, s->block_table, s->n_blocks};
        for (int t = 0; t < s->n_new; t++) m->h_pos[row + t] = s->pos + t;
        row += s->n_new;
    }
    OP(copy_h2d, m->d_ids, b->tokens, (size_t)T * sizeof(int32_t));
    OP(copy_h2d, m->d_pos, m->h_pos, (size_t)T * sizeof(int32_t));
    OP(embed, m->embed, m->d_ids, T, m->d_x);
    for (int l = 0; l < d->n_layers; l++) {
        const qn_layer_w *L = &m->layers[l];
        if (l == 0) OP(rmsnorm, m->d_x, d->H, T, d->H, L->d_attn_norm, d->eps, m->d_xn, d->H);
        else OP(add_rmsnorm, m->d_x, m->d_delta, T, d->H, L->d_attn_norm, d->eps, m->d_xn);
        if (L->type == QN_LAYER_LINEAR) gdn_block(m, L, T, b->n_seqs, &sv);
        else attn_block(m, L, T, b->n_seqs, &kv);
        OP(add_rmsnorm, m->d_x, m->d_delta, T, d->H, L->d_mlp_norm, d->eps, m->d_xn);
        mlp_block(m, L, T);
    }
    OP(add, m->d_x, m->d_delta, T, d->H);
    for (int i0 = 0; i0 < b->n_out; i0 += QN_LOGIT_ROWS) {
        const int n = b->n_out - i0 < QN_LOGIT_ROWS ? b->n_out - i0 : QN_LOGIT_ROWS;
        OP(get_rows, m->d_x, d->H, d->H, b->out_rows + i0, n, m->d_xsel);
        OP(rmsnorm, m->d_xsel, d->H, n, d->H, m->d_final_norm, d->eps, m->d_xsel, d->H);
        OP(matmul, m->lm_head, 0, m->d_xsel, d->H, n, m->d_logits, d->V);
        OP(copy_d2h, logits + (size_t)i0 * d->V, m->d_logits, (size_t)n * d->V * sizeof(float));
    }
    return ENG_OK;
}
