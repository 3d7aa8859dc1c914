/* cpu/cpu_ops_attn.c - CPU ops of the gated full-attention layer (docs/qwen3-next.md section 3.4):
 * per-head q/k RMSNorm + partial NeoX RoPE, KV write into the paged cache, and causal GQA
 * attention over the paged cache with the sigmoid output gate.
 *
 * Attention runs one task per (up to 8 rows of a sequence, KV head), for all query heads of that
 * KV head, over each row's context [0, pos] in blocks of 64 positions with an online softmax
 * (running max, rescaled sums); scores and the weighted sum of V are small matrix products on the
 * kernel table (gemm, mm). The block walk depends only on the row's position and every value goes
 * through the same operations whichever rows share a task, so a row's result is the same whatever
 * else is in the batch.
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

#define ATTN_ROWS 8 /* query rows of one sequence per task (times the group's query heads) */

size_t cpu_attn_scratch_floats(const qn_op_limits *lim)
{
    if (lim->attn_head_dim <= 0) return 0;
    const size_t nq = (size_t)ATTN_ROWS * (size_t)lim->attn_group, hd = (size_t)lim->attn_head_dim;
    return nq * (2 * hd + 2 * CPU_ATTN_BLOCK + 2) + 64;
}

typedef struct attn_job {
    const cpu_ctx *c;
    const qn_seq_desc *seqs;
    int n_seqs;
    const int32_t *task0;  /* [n_seqs + 1] first task of each sequence */
    const float *q, *gate;
    int64_t ldq, ldgate;
    const qn_attn_dims *d;
    const qn_kv_view *kv;
    float *out;
} attn_job;

/* One task: up to ATTN_ROWS consecutive rows of one sequence and one KV head, i.e. nq = rows x rep
 * queries, over the context in blocks of 64 positions. Per block, scores S = K Q^T come from the
 * GEMM kernel (each score one dot product in the kernels' fixed order), each query's online
 * softmax is updated over its own causal range (positions <= its row's), and acc += P V runs on
 * mm with P zero beyond a query's range (adding 0 * v leaves its sums unchanged). Every value a
 * query produces therefore goes through the same operations whichever rows share its task, so a
 * row's output is the same alone, batched, or split into chunks. */
static void attn_task(void *arg, int task, int thread)
{
    const attn_job *j = arg;
    const qn_attn_dims *d = j->d;
    const qn_kv_view *kv = j->kv;
    int si = 0, lo = 0, hi = j->n_seqs - 1; /* the sequence owning this task */
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (j->task0[mid] <= task) lo = mid;
        else hi = mid - 1;
    }
    si = lo;
    const qn_seq_desc *s = &j->seqs[si];
    const int local = task - j->task0[si], kvh = local % d->n_kv_heads, blk = local / d->n_kv_heads;
    const int rr0 = blk * ATTN_ROWS, nr = s->n_new - rr0 < ATTN_ROWS ? s->n_new - rr0 : ATTN_ROWS;
    const int rep = d->n_heads / d->n_kv_heads, hd = d->head_dim, B = CPU_ATTN_BLOCK, nq = nr * rep;
    const int64_t kvld = (int64_t)kv->n_kv_heads * hd;
    float *Q = j->c->scratch[thread].buf;         /* [nq][hd] the task's queries */
    float *acc = Q + (size_t)nq * hd;             /* [nq][hd] */
    float *S = acc + (size_t)nq * hd;             /* [B][nq] scores, key-major */
    float *P = S + (size_t)B * nq;                /* [nq][B] probabilities */
    float *mx = P + (size_t)nq * B, *l = mx + nq; /* [nq] */
    for (int r = 0; r < nr; r++)
        memcpy(Q + (size_t)r * rep * hd, j->q + (size_t)(s->row0 + rr0 + r) * j->ldq + (size_t)kvh * rep * hd,
               (size_t)rep * hd * sizeof *Q);
    memset(acc, 0, (size_t)nq * hd * sizeof *acc);
    for (int i = 0; i < nq; i++) {
        mx[i] = -INFINITY;
        l[i] = 0.0f;
    }
    const cpu_wpart qp = {.dtype = ENG_DTYPE_F32, .data = (const uint8_t *)Q, .row_bytes = (size_t)hd * sizeof(float),
                          .rows = nq, .out0 = 0};
    const int p_first = s->pos + rr0, p_last = p_first + nr - 1;
    for (int b0 = 0; b0 <= p_last; b0 += B) {
        const int blmax = p_last + 1 - b0 < B ? p_last + 1 - b0 : B;
        /* scores, one KV block (contiguous positions) at a time */
        for (int c0 = 0; c0 < blmax;) {
            const int p = b0 + c0, in_blk = kv->block_size - p % kv->block_size;
            const int n = blmax - c0 < in_blk ? blmax - c0 : in_blk;
            const float *kp = kv_at(kv, kv->k, d->layer, s, p) + (size_t)kvh * hd;
            j->c->k->gemm(&qp, 0, nq, hd, kp, kvld, n, S + (size_t)c0 * nq, nq);
            c0 += n;
        }
        for (int r = 0; r < nr; r++) {
            const int pr = p_first + r, bl = pr + 1 - b0 < B ? pr + 1 - b0 : B; /* this row's keys */
            for (int g = 0; g < rep; g++) {
                const int qi = r * rep + g;
                float *Pi = P + (size_t)qi * B;
                if (bl <= 0) {
                    memset(Pi, 0, (size_t)blmax * sizeof *Pi);
                    continue;
                }
                float bm = S[qi] * d->scale;
                for (int jj = 1; jj < bl; jj++) {
                    const float v = S[(size_t)jj * nq + qi] * d->scale;
                    bm = v > bm ? v : bm;
                }
                const float mn = mx[qi] > bm ? mx[qi] : bm;
                if (mx[qi] != -INFINITY && mx[qi] != mn) {
                    const float corr = expf(mx[qi] - mn);
                    l[qi] *= corr;
                    float *ai = acc + (size_t)qi * hd;
                    for (int i = 0; i < hd; i++) ai[i] *= corr;
                }
                for (int jj = 0; jj < bl; jj++) Pi[jj] = S[(size_t)jj * nq + qi] * d->scale - mn;
                j->c->k->expv(Pi, Pi, bl);
                for (int jj = 0; jj < bl; jj++) l[qi] += Pi[jj];
                for (int jj = bl; jj < blmax; jj++) Pi[jj] = 0.0f;
                mx[qi] = mn;
            }
        }
        for (int c0 = 0; c0 < blmax;) {
            const int p = b0 + c0, in_blk = kv->block_size - p % kv->block_size;
            const int n = blmax - c0 < in_blk ? blmax - c0 : in_blk;
            const float *vp = kv_at(kv, kv->v, d->layer, s, p) + (size_t)kvh * hd;
            j->c->k->mm(acc, hd, P + c0, B, vp, kvld, nq, hd, n, true, false);
            c0 += n;
        }
    }
    for (int r = 0; r < nr; r++) {
        const int row = s->row0 + rr0 + r;
        for (int g = 0; g < rep; g++) {
            const int qi = r * rep + g, qh = kvh * rep + g;
            const float *ai = acc + (size_t)qi * hd, *gt = j->gate + (size_t)row * j->ldgate + (size_t)qh * hd;
            float *o = j->out + (size_t)row * (size_t)(d->n_heads * hd) + (size_t)qh * hd;
            const float inv = 1.0f / l[qi];
            j->c->k->sigmoid(o, gt, hd);
            for (int i = 0; i < hd; i++) o[i] = (ai[i] * inv) * o[i];
        }
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
    CPU_ASSERT(n_seqs <= c->lim.max_tokens);
    int32_t *task0 = c->attn_task0;
    double work = 0;
    task0[0] = 0;
    for (int i = 0; i < n_seqs; i++) {
        task0[i + 1] = task0[i] + (seqs[i].n_new + ATTN_ROWS - 1) / ATTN_ROWS * d->n_kv_heads;
        work += (double)seqs[i].n_new * (seqs[i].pos + seqs[i].n_new) * 2.0 * d->n_heads * d->head_dim;
    }
    attn_job j = {c, seqs, n_seqs, task0, q, gate, ldq, ldgate, d, kv, out};
    cpu_run(c, task0[n_seqs], attn_task, &j, work);
}
