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
 *
 * Tensor parallelism (model.h has the sharding table): every rank runs this same forward on its
 * shard. The residual stream is replicated; the partial outputs of the row-parallel projections
 * (o_proj / out_proj, the experts' and shared expert's down_proj, the dense MLP's down_proj) and
 * of the vocabulary-split embedding lookup are summed by an all-reduce, so a layer costs two
 * all-reduces of [T][H] floats; each rank's lm_head rows are all-gathered for rank 0. Rank 0 runs
 * on the caller's thread and hands the batch to the others through the executor (tp/group.h).
 */
#include "core/threadpool.h" /* defines: eng_cpu_count */
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
        {(void **)&m->d_logits, (size_t)QN_LOGIT_ROWS * d->Lw},
        {(void **)&m->d_gather, d->tp_world > 1 ? (size_t)d->tp_world * QN_LOGIT_ROWS * d->Lw : 1},
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
    m->h_ids = eng_malloc(T * sizeof *m->h_ids);
    m->seqs = eng_malloc(T * sizeof *m->seqs);
    if (!m->h_pos || !m->h_ids || !m->seqs) return eng_err_set(ENG_ERR_NOMEM, "out of memory");
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

static void weight_bytes(const qn_model *m, size_t *owned, size_t *mapped)
{
    *owned = *mapped = 0;
    for (int l = 0; l < m->d.n_layers; l++) {
        const qn_layer_w *L = &m->layers[l];
        const qn_weight *ws[] = {L->lin_in, L->lin_out, L->attn_qkv, L->attn_o, L->router, L->exp_gu,
                                 L->exp_down, L->sh_gu, L->sh_down, L->mlp_gu, L->mlp_down};
        for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) {
            if (!ws[i]) continue;
            size_t o, p;
            m->be->weight_bytes(ws[i], &o, &p);
            *owned += o;
            *mapped += p;
        }
    }
    const qn_weight *g[] = {m->embed, m->lm_head != m->embed ? m->lm_head : NULL};
    for (int i = 0; i < 2; i++) {
        if (!g[i]) continue;
        size_t o, p;
        m->be->weight_bytes(g[i], &o, &p);
        *owned += o;
        *mapped += p;
    }
}

static void log_summary(const qn_model *m, double secs)
{
    size_t owned = 0, mapped = 0, act = 0;
    const int world = m->tp ? m->tp->world : 1;
    for (int r = 0; r < world; r++) {
        const qn_model *mr = m->tp ? m->tp->ranks[r] : m;
        size_t o, p;
        weight_bytes(mr, &o, &p);
        owned += o;
        mapped += p;
        act += mr->act_bytes;
    }
    char a[32], b[32], c[32], tp[96] = "";
    if (world > 1)
        snprintf(tp, sizeof tp, ", tensor parallel %d ranks (%s collectives; totals over ranks)", world,
                 eng_comm_name(m->comm));
    eng_log(ENG_LOG_INFO, "model %s: %d layers (%d GDN, %d attention), %s weights in place + %s converted, "
            "%s activations for %d tokens, backend %s%s, loaded in %.2f s", m->dir, m->d.n_layers, m->d.n_lin,
            m->d.n_full, eng_fmt_bytes((double)mapped, a, sizeof a), eng_fmt_bytes((double)owned, b, sizeof b),
            eng_fmt_bytes((double)act, c, sizeof c), m->max_tokens, m->be->name, tp, secs);
}

/* Loads one rank's shard into m (m->cfg, st, be, dir, max_tokens already set). */
static eng_status load_rank(qn_model *m, int rank, int world, bool progress)
{
    eng_status st = qn_weights_load(m, rank, world, progress);
    if (st == ENG_OK) st = alloc_activations(m);
    return st;
}

/* Frees one rank's model (not its backend; not the checkpoint when borrowed). */
static void destroy_one(qn_model *m)
{
    if (!m) return;
    qn_weights_free(m);
    if (m->be)
        for (int i = 0; i < m->n_bufs; i++) m->be->free(m->be->ctx, m->bufs[i]);
    eng_free(m->bufs);
    eng_free(m->seqs);
    eng_free(m->h_pos);
    eng_free(m->h_ids);
    if (!m->st_borrowed) eng_st_close(m->st);
    eng_free(m->dir);
    eng_free(m);
}

/* ==== tensor-parallel load ==================================================================== */

typedef struct tp_load_job {
    qn_tp *tp;
    const qn_model_params *p;
} tp_load_job;

static eng_status tp_load_rank(void *arg, int rank)
{
    tp_load_job *j = arg;
    qn_tp *tp = j->tp;
    eng_status st = ENG_OK;
    if (rank > 0) {
        if (j->p->tp_backend) {
            st = j->p->tp_backend(j->p->tp_backend_ctx, rank, &tp->backends[rank]);
        } else {
            eng_cpu_options o = {j->p->tp_threads, eng_backend_cpu_simd(tp->backends[0])};
            if (o.n_threads <= 0) o.n_threads = eng_cpu_count() / tp->world > 0 ? eng_cpu_count() / tp->world : 1;
            st = eng_backend_cpu_create(&o, &tp->backends[rank]);
        }
        if (st != ENG_OK) return eng_err_wrap(st, "backend");
        tp->ranks[rank]->be = tp->backends[rank];
    }
    return load_rank(tp->ranks[rank], rank, tp->world, rank == 0 && j->p->progress);
}

static void tp_destroy(qn_tp *tp)
{
    if (!tp) return;
    if (tp->exec && !eng_tp_group_quiesce(tp->exec)) {
        /* a rank thread may still be inside its step: leave everything it could touch */
        eng_tp_group_destroy(tp->exec);
        return;
    }
    eng_tp_group_destroy(tp->exec);
    if (tp->ranks)
        for (int r = tp->world - 1; r >= 1; r--) destroy_one(tp->ranks[r]);
    if (tp->backends)
        for (int r = 1; r < tp->world; r++) eng_backend_destroy(tp->backends[r]);
    if (tp->comm_owned) eng_comm_group_destroy(tp->comm);
    eng_free(tp->ranks);
    eng_free(tp->backends);
    eng_free(tp);
}

/* Builds the group for rank-0 model m (config and checkpoint loaded) and loads every rank. */
static eng_status tp_load(qn_model *m, const qn_model_params *p, int world)
{
    eng_status st;
    if ((st = qn_tp_check(&m->cfg, world, m->dir)) != ENG_OK) return st;
    if (!p->tp_backend && strncmp(m->be->name, "cpu", 3) != 0)
        return eng_err_set(ENG_ERR_INVALID, "tensor parallel on the %s backend needs a backend factory for the other "
                           "ranks (qn_model_params.tp_backend)", m->be->name);
    if (p->tp_comm && eng_comm_group_world(p->tp_comm) != world)
        return eng_err_set(ENG_ERR_INVALID, "tensor parallel: the collectives group has %d ranks, tp_world is %d",
                           eng_comm_group_world(p->tp_comm), world);
    qn_tp *tp = eng_calloc(1, sizeof *tp);
    if (!tp) return eng_err_set(ENG_ERR_NOMEM, "out of memory");
    m->tp = tp;
    tp->world = world;
    tp->ranks = eng_calloc((size_t)world, sizeof *tp->ranks);
    tp->backends = eng_calloc((size_t)world, sizeof *tp->backends);
    if (!tp->ranks || !tp->backends) return eng_err_set(ENG_ERR_NOMEM, "out of memory");
    tp->ranks[0] = m;
    tp->backends[0] = m->be;
    for (int r = 1; r < world; r++) {
        qn_model *mr = eng_calloc(1, sizeof *mr);
        if (!mr) return eng_err_set(ENG_ERR_NOMEM, "out of memory");
        tp->ranks[r] = mr;
        mr->cfg = m->cfg;
        mr->st = m->st;
        mr->st_borrowed = true;
        mr->max_tokens = m->max_tokens;
        mr->dir = eng_strdup(m->dir);
        if (!mr->dir) return eng_err_set(ENG_ERR_NOMEM, "out of memory");
    }
    if (p->tp_comm) {
        tp->comm = p->tp_comm;
    } else {
        if ((st = eng_comm_group_cpu_create(world, p->tp_timeout_ms, &tp->comm)) != ENG_OK) return st;
        tp->comm_owned = true;
    }
    for (int r = 0; r < world; r++) tp->ranks[r]->comm = eng_comm_group_rank(tp->comm, r);
    if ((st = eng_tp_group_create(world, p->tp_timeout_ms, tp->comm, &tp->exec)) != ENG_OK) return st;
    tp_load_job job = {tp, p};
    return eng_tp_group_run(tp->exec, tp_load_rank, &job);
}

eng_status qn_model_load(const char *dir, eng_backend *be, const qn_model_params *p, qn_model **out)
{
    *out = NULL;
    qn_model_params prm = {0};
    if (p) prm = *p;
    if (prm.max_tokens <= 0) prm.max_tokens = 256;
    if (prm.max_tokens > (1 << 20)) return eng_err_set(ENG_ERR_INVALID, "max_tokens %d is too large", prm.max_tokens);
    const int world = prm.tp_world > 0 ? prm.tp_world : 1;
    if (world > 1024) return eng_err_set(ENG_ERR_INVALID, "tensor-parallel size %d is too large", world);
    if (prm.tp_rank != 0)
        return eng_err_set(ENG_ERR_INVALID, "tp_rank %d: qn_model_load builds every rank and returns rank 0 (pass 0)",
                           prm.tp_rank);
    if (!be) return eng_err_set(ENG_ERR_INVALID, "no backend");
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
    if (world > 1 && (st = qn_tp_check(&m->cfg, world, dir)) != ENG_OK) goto fail;
    if ((st = eng_st_open(dir, true, &m->st)) != ENG_OK) goto fail;
    if (world == 1) st = load_rank(m, 0, 1, prm.progress);
    else st = tp_load(m, &prm, world);
    if (st != ENG_OK) goto fail;
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
    tp_destroy(m->tp);
    m->tp = NULL;
    destroy_one(m);
}

eng_tp_group *qn_model_tp_exec(const qn_model *m)
{
    return m->tp ? m->tp->exec : NULL;
}

int qn_model_tp(const qn_model *m)
{
    return m->tp ? m->tp->world : 1;
}

qn_model *qn_model_tp_rank(qn_model *m, int rank)
{
    if (!m->tp) return rank == 0 ? m : NULL;
    return rank >= 0 && rank < m->tp->world ? m->tp->ranks[rank] : NULL;
}

eng_comm *qn_model_tp_comm(qn_model *m, int rank)
{
    qn_model *mr = qn_model_tp_rank(m, rank);
    return mr ? mr->comm : NULL;
}

const qn_config *qn_model_config(const qn_model *m)
{
    return &m->cfg;
}

eng_backend *qn_model_backend(const qn_model *m)
{
    return m->be;
}

eng_backend *qn_model_rank_backend(const qn_model *m, int rank)
{
    if (!m->tp) return rank == 0 ? m->be : NULL;
    return rank >= 0 && rank < m->tp->world ? m->tp->backends[rank] : NULL;
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

/* Sums a [n] partial result over the ranks (no-op with one rank). A synchronous endpoint needs the
 * device work finished first; a stream-ordered one (NCCL on the backend's stream) queues the sum
 * behind it (tp/comm.h). */
static eng_status reduce(qn_model *m, float *d_buf, size_t n)
{
    if (!m->comm) return ENG_OK;
    if (!eng_comm_async(m->comm)) m->be->synchronize(m->be->ctx);
    return eng_comm_all_reduce_sum(m->comm, d_buf, n);
}

/* The step key of a forward (backend.h step_begin). A nonzero key promises that every step with
 * the same key, T and n_seqs runs the same ops in the same order on the same device buffers. In
 * this forward the op sequence and its buffers follow from the model (weights, activations), the
 * cache (the pools) and n_out (the lm_head passes and their copies); T and n_seqs the backend adds
 * itself, and ids, positions, descriptors, block tables and output rows are host data the backend
 * stages afresh every step. A freed backend buffer drops every captured graph (cuda_backend.c), so
 * a later model or cache at a recycled address cannot replay a stale one. Key 0 (never captured):
 *   - tensor parallelism: the collectives wait on the host (eng_comm_wait) inside the step, and
 *     synchronize is a no-op inside a captured step;
 *   - graphs turned off (qn_model_set_graphs);
 *   - a step whose logits would not fit the CUDA backend's staging arena (64 MiB: in a graph step
 *     copy_d2h lands there; more aborts), with half of it left for the descriptors. */
#define QN_GRAPH_MAX_LOGIT_BYTES ((uint64_t)32 << 20)

static uint64_t step_key(const qn_model *m, const qn_cache *c, const qn_batch *b)
{
    if (m->d.tp_world > 1 || m->no_graphs) return 0;
    if ((uint64_t)b->n_out * (uint64_t)m->d.V * sizeof(float) > QN_GRAPH_MAX_LOGIT_BYTES) return 0;
    const uint64_t v[3] = {(uint64_t)(uintptr_t)m, (uint64_t)(uintptr_t)c, (uint64_t)b->n_out};
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a over the three words */
    const unsigned char *p = (const unsigned char *)v;
    for (size_t i = 0; i < sizeof v; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h ? h : 1;
}

void qn_model_set_graphs(qn_model *m, bool on)
{
    const int world = m->tp ? m->tp->world : 1;
    for (int r = 0; r < world; r++) (m->tp ? m->tp->ranks[r] : m)->no_graphs = !on;
}

/* The layers, the final norm and the lm_head of one rank, inside its step (forward_rank). */
static eng_status forward_body(qn_model *m, const qn_kv_view *kv, const qn_state_view *sv, const qn_batch *b,
                               float *logits)
{
    const int T = b->n_tokens;
    const qn_dims *d = &m->d;
    eng_status st;
    const int32_t *ids = b->tokens;
    if (d->tp_world > 1) { /* ids outside this rank's vocabulary slice read its zero row */
        for (int t = 0; t < T; t++) {
            const int32_t v = b->tokens[t] - d->v0;
            m->h_ids[t] = v >= 0 && v < d->Vr ? v : d->Vr;
        }
        ids = m->h_ids;
    }
    OP(copy_h2d, m->d_ids, ids, (size_t)T * sizeof(int32_t));
    OP(copy_h2d, m->d_pos, m->h_pos, (size_t)T * sizeof(int32_t));
    OP(embed, m->embed, m->d_ids, T, m->d_x);
    if ((st = reduce(m, m->d_x, (size_t)T * d->H)) != ENG_OK) return st;
    for (int l = 0; l < d->n_layers; l++) {
        const qn_layer_w *L = &m->layers[l];
        if (l == 0) OP(rmsnorm, m->d_x, d->H, T, d->H, L->d_attn_norm, d->eps, m->d_xn, d->H);
        else OP(add_rmsnorm, m->d_x, m->d_delta, T, d->H, L->d_attn_norm, d->eps, m->d_xn);
        if (L->type == QN_LAYER_LINEAR) gdn_block(m, L, T, b->n_seqs, sv);
        else attn_block(m, L, T, b->n_seqs, kv);
        if ((st = reduce(m, m->d_delta, (size_t)T * d->H)) != ENG_OK) return st;
        OP(add_rmsnorm, m->d_x, m->d_delta, T, d->H, L->d_mlp_norm, d->eps, m->d_xn);
        mlp_block(m, L, T);
        if ((st = reduce(m, m->d_delta, (size_t)T * d->H)) != ENG_OK) return st;
    }
    OP(add, m->d_x, m->d_delta, T, d->H);
    /* lm_head rows of this rank's vocabulary slice, QN_LOGIT_ROWS output rows at a time */
    for (int i0 = 0; i0 < b->n_out; i0 += QN_LOGIT_ROWS) {
        const int n = b->n_out - i0 < QN_LOGIT_ROWS ? b->n_out - i0 : QN_LOGIT_ROWS;
        OP(get_rows, m->d_x, d->H, d->H, b->out_rows + i0, n, m->d_xsel);
        OP(rmsnorm, m->d_xsel, d->H, n, d->H, m->d_final_norm, d->eps, m->d_xsel, d->H);
        OP(matmul, m->lm_head, 0, m->d_xsel, d->H, n, m->d_logits, d->Lw);
        if (!m->comm) {
            OP(copy_d2h, logits + (size_t)i0 * d->V, m->d_logits, (size_t)n * d->V * sizeof(float));
            continue;
        }
        if (!eng_comm_async(m->comm)) m->be->synchronize(m->be->ctx);
        const size_t blk = (size_t)n * (size_t)d->Lw;
        if ((st = eng_comm_all_gather(m->comm, m->d_logits, m->d_gather, blk * sizeof(float))) != ENG_OK) return st;
        if (!logits) continue;
        /* the host reads the gathered rows: wait for them with the group's deadline (copy_d2h
         * would block in the driver with none) */
        if ((st = eng_comm_wait(m->comm)) != ENG_OK) return st;
        for (int r = 0; r < d->tp_world; r++) {
            int v0, nv;
            qn_vocab_slice(d->V, d->tp_world, r, &v0, &nv);
            for (int i = 0; i < n; i++)
                OP(copy_d2h, logits + (size_t)(i0 + i) * d->V + v0, m->d_gather + (size_t)r * blk + (size_t)i * d->Lw,
                   (size_t)nv * sizeof(float));
        }
    }
    return ENG_OK;
}

/* The forward of one rank on its shard and caches (the batch was validated by the caller).
 * logits: host [n_out][V] on rank 0, NULL on the other ranks. The body is bracketed by the
 * backend's step_begin / step_end when it has them (one pair per call with T > 0, on every exit).
 * With stream-ordered collectives every rank ends its step with eng_comm_wait, so a step never
 * leaves work queued behind a collective that another rank did not join (that wait is what turns
 * such a rank into ENG_ERR_TIMEOUT here rather than a hang later). */
static eng_status forward_rank(qn_model *m, qn_cache *c, const qn_batch *b, float *logits)
{
    qn_kv_view kv;
    qn_state_view sv;
    qn_cache_views(c, &kv, &sv);
    const int T = b->n_tokens;
    if (T == 0) return ENG_OK;
    for (int i = 0, row = 0; i < b->n_seqs; i++) {
        const qn_seq *s = &b->seqs[i];
        m->seqs[i] = (qn_seq_desc){row, s->n_new, s->pos, s->slot, s->block_table, s->n_blocks};
        for (int t = 0; t < s->n_new; t++) m->h_pos[row + t] = s->pos + t;
        row += s->n_new;
    }
    const bool bracket = m->be->step_begin && m->be->step_end;
    if (bracket) m->be->step_begin(m->be->ctx, step_key(m, c, b), m->seqs, b->n_seqs, T);
    eng_status st = forward_body(m, &kv, &sv, b, logits);
    if (bracket) m->be->step_end(m->be->ctx);
    if (st == ENG_OK && m->comm) st = eng_comm_wait(m->comm);
    return st;
}

typedef struct tp_fwd_job {
    qn_tp *tp;
    qn_cache *c;
    const qn_batch *b;
    float *logits;
} tp_fwd_job;

static eng_status tp_forward_rank(void *arg, int rank)
{
    tp_fwd_job *j = arg;
    return forward_rank(j->tp->ranks[rank], qn_cache_rank(j->c, rank), j->b, rank == 0 ? j->logits : NULL);
}

eng_status qn_model_forward(qn_model *m, qn_cache *c, const qn_batch *b, float *logits)
{
    eng_status st;
    if (m->tp && (st = eng_tp_group_status(m->tp->exec)) != ENG_OK) return st;
    if (qn_cache_tp_world(c) != qn_model_tp(m))
        return eng_err_set(ENG_ERR_INVALID, "batch: the cache was made for %d tensor-parallel ranks, the model has %d",
                           qn_cache_tp_world(c), qn_model_tp(m));
    qn_kv_view kv;
    qn_state_view sv;
    qn_cache_views(c, &kv, &sv);
    if ((st = check_batch(m, c, b, logits, &kv, &sv)) != ENG_OK) return st;
    if (!m->tp) return forward_rank(m, c, b, logits);
    if (b->n_tokens == 0) return ENG_OK;
    tp_fwd_job job = {m->tp, c, b, logits};
    st = eng_tp_group_run(m->tp->exec, tp_forward_rank, &job);
    if (st != ENG_OK) eng_tp_group_fail(m->tp->exec, st);
    return st;
}
