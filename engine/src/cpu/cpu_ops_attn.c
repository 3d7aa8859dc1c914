/* cpu/cpu_ops_attn.c - CPU ops of the gated full-attention layer (docs/qwen3-next.md section 3.4):
 * per-head q/k RMSNorm + partial NeoX RoPE, KV write into the paged cache, and causal GQA
 * attention over the paged cache with the sigmoid output gate.
 *
 * Attention runs one task per (row, KV head), for all query heads of that KV head, over the row's
 * context [0, pos] in blocks of 64 positions with an online softmax (running max, rescaled sums).
 * The block walk depends only on the row's position, so a row's result is the same whatever else
 * is in the batch.
 */
#include "cpu/cpu_impl.h"

#include <math.h>
#include <string.h>

#define ROPE_MAX_HALF 512

/* ==== q/k norm + RoPE ========================================================================= */

typedef struct rope_job {
    const cpu_kernels *k;
    float *q, *kk;
    int64_t ldq, ldk;
    int n_q, n_k, head_dim, rot_dim;
    const float *qw, *kw, *inv_freq;
    float eps, rope_scale;
    const int32_t *pos;
} rope_job;

static void norm_rope_head(const rope_job *j, float *x, const float *w, const float *cs, const float *sn)
{
    const int hd = j->head_dim, half = j->rot_dim / 2;
    float r = 1.0f / sqrtf(j->k->dot(x, x, hd) / (float)hd + j->eps);
    for (int i = 0; i < hd; i++) x[i] = (x[i] * r) * w[i];
    for (int i = 0; i < half; i++) {
        const float x1 = x[i], x2 = x[i + half];
        x[i] = x1 * cs[i] - x2 * sn[i];
        x[i + half] = x2 * cs[i] + x1 * sn[i];
    }
}

static void rope_task(void *arg, int t, int thread)
{
    (void)thread;
    const rope_job *j = arg;
    float cs[ROPE_MAX_HALF], sn[ROPE_MAX_HALF];
    const int half = j->rot_dim / 2;
    const float p = (float)j->pos[t];
    for (int i = 0; i < half; i++) {
        const float f = p * j->inv_freq[i];
        cs[i] = cosf(f) * j->rope_scale;
        sn[i] = sinf(f) * j->rope_scale;
    }
    for (int h = 0; h < j->n_q; h++) norm_rope_head(j, j->q + (size_t)t * j->ldq + (size_t)h * j->head_dim, j->qw, cs, sn);
    for (int h = 0; h < j->n_k; h++)
        norm_rope_head(j, j->kk + (size_t)t * j->ldk + (size_t)h * j->head_dim, j->kw, cs, sn);
}

void cpu_op_qk_norm_rope(void *ctx, float *q, int64_t ldq, int n_q, float *k, int64_t ldk, int n_k, int T,
                         int head_dim, const float *qw, const float *kw, float eps, const int32_t *pos, int rot_dim,
                         const float *inv_freq, float rope_scale)
{
    cpu_ctx *c = ctx;
    CPU_ASSERT(rot_dim >= 0 && rot_dim % 2 == 0 && rot_dim <= head_dim && rot_dim / 2 <= ROPE_MAX_HALF);
    rope_job j = {c->k, q, k, ldq, ldk, n_q, n_k, head_dim, rot_dim, qw, kw, inv_freq, eps, rope_scale, pos};
    cpu_run(c, T, rope_task, &j, 4.0 * T * (n_q + n_k) * head_dim);
}

/* ==== KV write ================================================================================ */

static float *kv_at(const qn_kv_view *kv, float *base, int layer, const qn_seq_desc *s, int p)
{
    const int bi = p / kv->block_size;
    CPU_ASSERT(bi < s->n_blocks);
    const int blk = s->block_table[bi];
    CPU_ASSERT(blk >= 0 && blk < kv->n_blocks);
    const size_t row = (size_t)kv->n_kv_heads * kv->head_dim;
    return base + (((size_t)layer * kv->n_blocks + blk) * kv->block_size + p % kv->block_size) * row;
}

void cpu_op_kv_write(void *ctx, const qn_seq_desc *seqs, int n_seqs, const float *k, int64_t ldk, const float *v,
                     int64_t ldv, const qn_attn_dims *d, const qn_kv_view *kv)
{
    (void)ctx;
    CPU_ASSERT(d->n_kv_heads == kv->n_kv_heads && d->head_dim == kv->head_dim && d->layer < kv->n_layers);
    const size_t bytes = (size_t)kv->n_kv_heads * kv->head_dim * sizeof(float);
    for (int i = 0; i < n_seqs; i++) {
        const qn_seq_desc *s = &seqs[i];
        for (int t = 0; t < s->n_new; t++) {
            memcpy(kv_at(kv, kv->k, d->layer, s, s->pos + t), k + (size_t)(s->row0 + t) * ldk, bytes);
            memcpy(kv_at(kv, kv->v, d->layer, s, s->pos + t), v + (size_t)(s->row0 + t) * ldv, bytes);
        }
    }
}

/* ==== attention =============================================================================== */

size_t cpu_attn_scratch_floats(const qn_op_limits *lim)
{
    if (lim->attn_head_dim <= 0) return 0;
    return (size_t)lim->attn_group * (CPU_ATTN_BLOCK + (size_t)lim->attn_head_dim + 2) + 64;
}

typedef struct attn_job {
    const cpu_kernels *k;
    cpu_scratch *scratch;
    const qn_seq_desc *seqs;
    int n_seqs;
    const float *q, *gate;
    int64_t ldq, ldgate;
    const qn_attn_dims *d;
    const qn_kv_view *kv;
    float *out;
} attn_job;

static const qn_seq_desc *seq_of_row(const attn_job *j, int row)
{
    int lo = 0, hi = j->n_seqs - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (j->seqs[mid].row0 <= row) lo = mid;
        else hi = mid - 1;
    }
    return &j->seqs[lo];
}

static void attn_task(void *arg, int task, int thread)
{
    const attn_job *j = arg;
    const qn_attn_dims *d = j->d;
    const int row = task / d->n_kv_heads, kvh = task % d->n_kv_heads;
    const qn_seq_desc *s = seq_of_row(j, row);
    const int p = s->pos + (row - s->row0);
    const int rep = d->n_heads / d->n_kv_heads, hd = d->head_dim, B = CPU_ATTN_BLOCK;
    float *sc = j->scratch[thread].buf; /* [rep][B] */
    float *acc = sc + (size_t)rep * B;  /* [rep][hd] */
    float *mx = acc + (size_t)rep * hd; /* [rep] */
    float *l = mx + rep;                /* [rep] */
    for (int g = 0; g < rep; g++) {
        memset(acc + (size_t)g * hd, 0, (size_t)hd * sizeof *acc);
        mx[g] = -INFINITY;
        l[g] = 0.0f;
    }
    const float *qrow = j->q + (size_t)row * j->ldq + (size_t)kvh * rep * hd;
    for (int b0 = 0; b0 <= p; b0 += B) {
        const int bl = p + 1 - b0 < B ? p + 1 - b0 : B;
        for (int jj = 0; jj < bl; jj++) {
            const float *kp = kv_at(j->kv, j->kv->k, d->layer, s, b0 + jj) + (size_t)kvh * hd;
            for (int g = 0; g < rep; g++) sc[g * B + jj] = j->k->dot(qrow + (size_t)g * hd, kp, hd) * d->scale;
        }
        for (int g = 0; g < rep; g++) {
            float *sg = sc + g * B;
            float bm = sg[0];
            for (int jj = 1; jj < bl; jj++) bm = sg[jj] > bm ? sg[jj] : bm;
            const float mn = mx[g] > bm ? mx[g] : bm;
            if (mx[g] != -INFINITY && mx[g] != mn) {
                const float corr = expf(mx[g] - mn);
                l[g] *= corr;
                float *ag = acc + (size_t)g * hd;
                for (int i = 0; i < hd; i++) ag[i] *= corr;
            }
            for (int jj = 0; jj < bl; jj++) {
                sg[jj] = expf(sg[jj] - mn);
                l[g] += sg[jj];
            }
            mx[g] = mn;
        }
        for (int jj = 0; jj < bl; jj++) {
            const float *vp = kv_at(j->kv, j->kv->v, d->layer, s, b0 + jj) + (size_t)kvh * hd;
            for (int g = 0; g < rep; g++) j->k->axpy(acc + (size_t)g * hd, sc[g * B + jj], vp, hd);
        }
    }
    for (int g = 0; g < rep; g++) {
        const int qh = kvh * rep + g;
        const float *ag = acc + (size_t)g * hd, *gt = j->gate + (size_t)row * j->ldgate + (size_t)qh * hd;
        float *o = j->out + (size_t)row * (size_t)(d->n_heads * hd) + (size_t)qh * hd;
        const float inv = 1.0f / l[g];
        for (int i = 0; i < hd; i++) o[i] = (ag[i] * inv) * cpu_sigmoid(gt[i]);
    }
}

void cpu_op_attention(void *ctx, const qn_seq_desc *seqs, int n_seqs, const float *q, int64_t ldq, const float *gate,
                      int64_t ldgate, const qn_attn_dims *d, const qn_kv_view *kv, float *out)
{
    cpu_ctx *c = ctx;
    if (n_seqs <= 0) return;
    CPU_ASSERT(d->n_kv_heads > 0 && d->n_heads % d->n_kv_heads == 0);
    CPU_ASSERT(d->head_dim <= c->lim.attn_head_dim && d->n_heads / d->n_kv_heads <= c->lim.attn_group);
    CPU_ASSERT(d->n_kv_heads == kv->n_kv_heads && d->head_dim == kv->head_dim && d->layer < kv->n_layers);
    const qn_seq_desc *last = &seqs[n_seqs - 1];
    const int T = last->row0 + last->n_new;
    attn_job j = {c->k, c->scratch, seqs, n_seqs, q, gate, ldq, ldgate, d, kv, out};
    double work = 0;
    for (int i = 0; i < n_seqs; i++)
        work += (double)seqs[i].n_new * (seqs[i].pos + seqs[i].n_new) * 2.0 * d->n_heads * d->head_dim;
    cpu_run(c, T * d->n_kv_heads, attn_task, &j, work);
}
