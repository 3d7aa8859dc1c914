/* cpu/cpu_ops_moe.c - CPU ops of the sparse MoE block (docs/qwen3-next.md section 3.6): router
 * softmax + top-k, and the routed experts with the sigmoid-gated shared expert combined.
 *
 * Experts: the (token, slot) pairs are counting-sorted by expert (stable, token-major), the
 * tokens' inputs gathered per expert, then two parallel passes run every active expert's
 * gate_up and down GEMMs with tasks over (expert, row chunk), and a last pass combines each token's
 * expert outputs in its top-k order and adds sigmoid(shared_gate) * shared. A token's result
 * depends only on its own routing, never on which other tokens share its experts.
 */
#include "cpu/cpu_impl.h"

#include <math.h>
#include <string.h>

/* ==== router ================================================================================== */

typedef struct route_job {
    const float *logits;
    int64_t ldl;
    int n_experts, top_k;
    bool norm;
    int32_t *idx;
    float *wt;
} route_job;

static void route_task(void *arg, int t, int thread)
{
    (void)thread;
    const route_job *j = arg;
    const float *lg = j->logits + (size_t)t * j->ldl;
    const int E = j->n_experts, k = j->top_k;
    int32_t *idx = j->idx + (size_t)t * k;
    float *wt = j->wt + (size_t)t * k;
    float mx = lg[0];
    for (int e = 1; e < E; e++) mx = lg[e] > mx ? lg[e] : mx;
    float sum = 0.0f;
    for (int e = 0; e < E; e++) sum += expf(lg[e] - mx);
    /* top-k by insertion into a sorted list; equal logits keep the lower index first */
    int n = 0;
    for (int e = 0; e < E; e++) {
        if (n == k && !(lg[e] > lg[idx[k - 1]])) continue;
        int p = n < k ? n++ : k - 1;
        while (p > 0 && lg[e] > lg[idx[p - 1]]) {
            idx[p] = idx[p - 1];
            p--;
        }
        idx[p] = e;
    }
    float tot = 0.0f;
    for (int i = 0; i < k; i++) {
        wt[i] = expf(lg[idx[i]] - mx) / sum;
        tot += wt[i];
    }
    if (j->norm)
        for (int i = 0; i < k; i++) wt[i] /= tot;
}

void cpu_op_moe_route(void *ctx, const float *logits, int64_t ldl, int T, int n_experts, int top_k, bool norm_topk,
                      int32_t *idx, float *wt)
{
    cpu_ctx *c = ctx;
    CPU_ASSERT(top_k >= 1 && top_k <= n_experts);
    route_job j = {logits, ldl, n_experts, top_k, norm_topk, idx, wt};
    cpu_run(c, T, route_task, &j, 4.0 * T * n_experts);
}

/* ==== experts ================================================================================= */

typedef struct moe_job {
    cpu_ctx *c;
    const cpu_weight *w;    /* gate_up or down */
    int n_active;
    const float *x;         /* per-pair inputs [pairs][ldx] */
    int64_t ldx;
    float *y;               /* per-pair outputs [pairs][ldy] */
    int64_t ldy;
    /* silu / combine passes */
    int inter, H, top_k, T;
    const float *wt, *shared, *sg;
    int64_t ld_sg;
    const float *src_x;
    float *out;
    int group, n_flat; /* GEMM passes: (expert, row task) pairs per pool task, pairs in all */
} moe_job;

static void gather_task(void *arg, int p, int thread)
{
    (void)thread;
    const moe_job *j = arg;
    const cpu_ctx *c = j->c;
    memcpy(c->moe_x + (size_t)p * j->H, j->src_x + (size_t)c->moe_pair_tok[p] * j->H, (size_t)j->H * sizeof(float));
}

/* Pool task i runs the flattened (active expert, row task) pairs [i * group, (i + 1) * group). */
static void expert_gemm_task(void *arg, int task, int thread)
{
    (void)thread;
    const moe_job *j = arg;
    const cpu_ctx *c = j->c;
    const int f0 = task * j->group, f1 = f0 + j->group < j->n_flat ? f0 + j->group : j->n_flat;
    int lo = 0, hi = j->n_active - 1; /* the active expert owning pair f0 */
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (c->moe_task0[mid] <= f0) lo = mid;
        else hi = mid - 1;
    }
    for (int f = f0; f < f1; f++) {
        while (c->moe_task0[lo + 1] <= f) lo++;
        const int e = c->moe_active[lo];
        const cpu_task *t = &j->w->tasks[j->w->mat_task0[e] + (f - c->moe_task0[lo])];
        const int p0 = c->moe_off[e], n = c->moe_off[e + 1] - p0;
        c->k->gemm(&j->w->parts[t->part], t->r0, t->r1, j->w->cols, j->x + (size_t)p0 * j->ldx, j->ldx, n,
                   j->y + (size_t)p0 * j->ldy, j->ldy);
    }
}

static void run_expert_gemms(moe_job *j)
{
    cpu_ctx *c = j->c;
    int n = 0;
    for (int a = 0; a < j->n_active; a++) {
        int e = c->moe_active[a];
        c->moe_task0[a] = n;
        n += j->w->mat_task0[e + 1] - j->w->mat_task0[e];
    }
    c->moe_task0[j->n_active] = n;
    /* few tokens per expert (decode): row tasks are tiny, hand them out in groups */
    j->n_flat = n;
    j->group = 1;
    if (j->T <= 4) {
        j->group = n / (8 * c->n_threads);
        j->group = j->group < 1 ? 1 : j->group > CPU_MAX_GROUP ? CPU_MAX_GROUP : j->group;
    }
    cpu_run(c, (n + j->group - 1) / j->group, expert_gemm_task, j,
            (double)j->w->rows * (double)j->w->cols * (double)c->moe_off[j->w->n_mats]);
}

static void act_task(void *arg, int p, int thread)
{
    (void)thread;
    const moe_job *j = arg;
    const cpu_ctx *c = j->c;
    const float *g = c->moe_gu + (size_t)p * 2 * j->inter, *u = g + j->inter;
    float *o = c->moe_act + (size_t)p * j->inter;
    c->k->silu(o, g, j->inter);
    for (int i = 0; i < j->inter; i++) o[i] *= u[i];
}

static void combine_task(void *arg, int t, int thread)
{
    (void)thread;
    const moe_job *j = arg;
    const cpu_ctx *c = j->c;
    float *o = j->out + (size_t)t * j->H;
    memset(o, 0, (size_t)j->H * sizeof *o);
    for (int s = 0; s < j->top_k; s++) {
        const float w = j->wt[(size_t)t * j->top_k + s];
        const float *y = c->moe_y + (size_t)c->moe_inv[(size_t)t * j->top_k + s] * j->H;
        for (int i = 0; i < j->H; i++) o[i] += w * y[i];
    }
    if (j->shared) {
        const float gs = cpu_sigmoid(j->sg[(size_t)t * j->ld_sg]);
        const float *sh = j->shared + (size_t)t * j->H;
        for (int i = 0; i < j->H; i++) o[i] += gs * sh[i];
    }
}

void cpu_op_moe_experts(void *ctx, const qn_weight *gate_up, const qn_weight *down, int inter, const float *x, int T,
                        int H, const int32_t *idx, const float *wt, int top_k, const float *shared,
                        const float *shared_gate, int64_t ld_sg, float *out)
{
    cpu_ctx *c = ctx;
    const cpu_weight *gu = cpu_w(gate_up), *dn = cpu_w(down);
    const int E = gu->n_mats;
    const size_t P = (size_t)T * top_k;
    CPU_ASSERT(P <= c->moe_pairs_cap && E <= c->moe_experts_cap && inter <= c->lim.moe_inter && H <= c->lim.hidden);
    CPU_ASSERT(gu->rows == 2 * (int64_t)inter && gu->cols == H && dn->rows == H && dn->cols == inter &&
               dn->n_mats == E);
    if (T <= 0) return;
    memset(c->moe_cnt, 0, (size_t)E * sizeof *c->moe_cnt);
    for (size_t i = 0; i < P; i++) {
        CPU_ASSERT(idx[i] >= 0 && idx[i] < E);
        c->moe_cnt[idx[i]]++;
    }
    int n_active = 0;
    c->moe_off[0] = 0;
    for (int e = 0; e < E; e++) {
        c->moe_off[e + 1] = c->moe_off[e] + c->moe_cnt[e];
        if (c->moe_cnt[e]) c->moe_active[n_active++] = e;
        c->moe_cnt[e] = c->moe_off[e]; /* becomes the fill cursor */
    }
    for (int t = 0; t < T; t++)
        for (int s = 0; s < top_k; s++) {
            const int e = idx[(size_t)t * top_k + s];
            const int p = c->moe_cnt[e]++;
            c->moe_pair_tok[p] = t;
            c->moe_pair_slot[p] = s;
            c->moe_inv[(size_t)t * top_k + s] = p;
        }
    moe_job j = {.c = c, .n_active = n_active, .inter = inter, .H = H, .top_k = top_k, .T = T, .wt = wt,
                 .shared = shared, .sg = shared_gate, .ld_sg = ld_sg, .src_x = x, .out = out};
    cpu_run(c, (int)P, gather_task, &j, (double)P * H);
    j.w = gu;
    j.x = c->moe_x;
    j.ldx = H;
    j.y = c->moe_gu;
    j.ldy = 2 * inter;
    run_expert_gemms(&j);
    cpu_run(c, (int)P, act_task, &j, 4.0 * P * inter);
    j.w = dn;
    j.x = c->moe_act;
    j.ldx = inter;
    j.y = c->moe_y;
    j.ldy = H;
    run_expert_gemms(&j);
    cpu_run(c, T, combine_task, &j, (double)P * H);
}
