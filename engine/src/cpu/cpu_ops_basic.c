/* cpu/cpu_ops_basic.c - CPU ops: embedding gather, matmul against a weight, RMSNorm (+ fused
 * residual add), residual add, SiLU-mul, row gather. Each row is computed by one task with the
 * SIMD table's fixed reduction order (batch invariance, backend.h). */
#include "cpu/cpu_impl.h"

#include <math.h>
#include <string.h>

/* ==== matmul ================================================================================== */

typedef struct mm_job {
    const cpu_kernels *k;
    const cpu_weight *w;
    const cpu_task *tasks;
    const float *x;
    int64_t ldx;
    int T;
    float *y;
    int64_t ldy;
    int group, n_tasks; /* row tasks per pool task, row tasks in all */
} mm_job;

/* Pool task i runs the weight's row tasks [i * group, (i + 1) * group). */
static void mm_task(void *arg, int i, int thread)
{
    (void)thread;
    const mm_job *j = arg;
    const int t1 = (i + 1) * j->group < j->n_tasks ? (i + 1) * j->group : j->n_tasks;
    for (int ti = i * j->group; ti < t1; ti++) {
        const cpu_task *t = &j->tasks[ti];
        j->k->gemm(&j->w->parts[t->part], t->r0, t->r1, j->w->cols, j->x, j->ldx, j->T, j->y, j->ldy);
    }
}

void cpu_matmul_rows(cpu_ctx *c, const cpu_weight *w, int mat, const float *x, int64_t ldx, int T, float *y,
                     int64_t ldy)
{
    CPU_ASSERT(mat >= 0 && mat < w->n_mats);
    if (T <= 0) return;
    const int n = w->mat_task0[mat + 1] - w->mat_task0[mat];
    /* Few tokens: a row task is a few microseconds of streaming, so hand them out in groups (at
     * least 8 groups per thread for balance). Row tasks are independent, so grouping changes no
     * result. */
    int group = 1;
    if (T <= 4) {
        group = n / (8 * c->n_threads);
        group = group < 1 ? 1 : group > CPU_MAX_GROUP ? CPU_MAX_GROUP : group;
    }
    mm_job j = {c->k, w, w->tasks + w->mat_task0[mat], x, ldx, T, y, ldy, group, n};
    cpu_run(c, (n + group - 1) / group, mm_task, &j, (double)w->rows * (double)w->cols * T);
}

void cpu_op_matmul(void *ctx, const qn_weight *w, int mat, const float *x, int64_t ldx, int T, float *y, int64_t ldy)
{
    cpu_matmul_rows(ctx, cpu_w(w), mat, x, ldx, T, y, ldy);
}

/* ==== embedding =============================================================================== */

typedef struct embed_job {
    const cpu_kernels *k;
    const cpu_weight *w;
    const int32_t *ids;
    float *out;
} embed_job;

static void embed_task(void *arg, int t, int thread)
{
    (void)thread;
    const embed_job *j = arg;
    int64_t row = j->ids[t];
    CPU_ASSERT(row >= 0 && row < j->w->rows);
    for (int p = j->w->mat_part0[0]; p < j->w->mat_part0[1]; p++) {
        const cpu_wpart *wp = &j->w->parts[p];
        if (row >= wp->out0 && row < wp->out0 + wp->rows) {
            j->k->row_f32(wp, row - wp->out0, j->w->cols, j->out + (size_t)t * (size_t)j->w->cols);
            return;
        }
    }
}

void cpu_op_embed(void *ctx, const qn_weight *w, const int32_t *ids, int T, float *out)
{
    cpu_ctx *c = ctx;
    embed_job j = {c->k, cpu_w(w), ids, out};
    cpu_run(c, T, embed_task, &j, (double)T * (double)cpu_w(w)->cols);
}

/* ==== norms and elementwise =================================================================== */

/* Rows per task for cheap row-wise ops: enough work per task to amortise the hand-out. */
static int rows_per_task(int n)
{
    int r = 16384 / (n > 0 ? n : 1);
    return r < 1 ? 1 : r;
}

typedef struct norm_job {
    const cpu_kernels *k;
    float *res;
    const float *x, *delta, *w;
    int64_t ldx, ldy;
    int T, n, per;
    float eps;
    float *y;
} norm_job;

static void norm_row(const cpu_kernels *k, const float *x, int n, const float *w, float eps, float *y)
{
    float ss = k->dot(x, x, n);
    float r = 1.0f / sqrtf(ss / (float)n + eps);
    for (int i = 0; i < n; i++) y[i] = (x[i] * r) * w[i];
}

static void rmsnorm_task(void *arg, int task, int thread)
{
    (void)thread;
    const norm_job *j = arg;
    int t1 = (task + 1) * j->per < j->T ? (task + 1) * j->per : j->T;
    for (int t = task * j->per; t < t1; t++)
        norm_row(j->k, j->x + (size_t)t * j->ldx, j->n, j->w, j->eps, j->y + (size_t)t * j->ldy);
}

void cpu_op_rmsnorm(void *ctx, const float *x, int64_t ldx, int T, int n, const float *w, float eps, float *y,
                    int64_t ldy)
{
    cpu_ctx *c = ctx;
    norm_job j = {.k = c->k, .x = x, .w = w, .ldx = ldx, .ldy = ldy, .T = T, .n = n, .eps = eps, .y = y};
    j.per = rows_per_task(n);
    cpu_run(c, (T + j.per - 1) / j.per, rmsnorm_task, &j, (double)T * n);
}

static void add_rmsnorm_task(void *arg, int task, int thread)
{
    (void)thread;
    const norm_job *j = arg;
    int t1 = (task + 1) * j->per < j->T ? (task + 1) * j->per : j->T;
    for (int t = task * j->per; t < t1; t++) {
        float *r = j->res + (size_t)t * j->n;
        const float *d = j->delta + (size_t)t * j->n;
        for (int i = 0; i < j->n; i++) r[i] += d[i];
        if (j->y) norm_row(j->k, r, j->n, j->w, j->eps, j->y + (size_t)t * j->n);
    }
}

void cpu_op_add_rmsnorm(void *ctx, float *res, const float *delta, int T, int n, const float *w, float eps, float *y)
{
    cpu_ctx *c = ctx;
    norm_job j = {.k = c->k, .res = res, .delta = delta, .w = w, .T = T, .n = n, .eps = eps, .y = y};
    j.per = rows_per_task(n);
    cpu_run(c, (T + j.per - 1) / j.per, add_rmsnorm_task, &j, (double)T * n);
}

void cpu_op_add(void *ctx, float *x, const float *delta, int T, int n)
{
    cpu_ctx *c = ctx;
    norm_job j = {.k = c->k, .res = x, .delta = delta, .T = T, .n = n, .y = NULL};
    j.per = rows_per_task(n);
    cpu_run(c, (T + j.per - 1) / j.per, add_rmsnorm_task, &j, (double)T * n);
}

typedef struct silu_job {
    const cpu_kernels *k;
    const float *gu;
    int64_t ldgu;
    int T, inter, per;
    float *out;
} silu_job;

static void silu_task(void *arg, int task, int thread)
{
    (void)thread;
    const silu_job *j = arg;
    int t1 = (task + 1) * j->per < j->T ? (task + 1) * j->per : j->T;
    for (int t = task * j->per; t < t1; t++) {
        const float *g = j->gu + (size_t)t * j->ldgu, *u = g + j->inter;
        float *o = j->out + (size_t)t * j->inter;
        j->k->silu(o, g, j->inter);
        for (int i = 0; i < j->inter; i++) o[i] *= u[i];
    }
}

void cpu_op_silu_mul(void *ctx, const float *gu, int64_t ldgu, int T, int inter, float *out)
{
    cpu_ctx *c = ctx;
    silu_job j = {c->k, gu, ldgu, T, inter, rows_per_task(inter), out};
    cpu_run(c, (T + j.per - 1) / j.per, silu_task, &j, 4.0 * T * inter);
}

void cpu_op_get_rows(void *ctx, const float *x, int64_t ldx, int cols, const int32_t *rows, int n, float *out)
{
    (void)ctx;
    for (int i = 0; i < n; i++)
        memcpy(out + (size_t)i * cols, x + (size_t)rows[i] * ldx, (size_t)cols * sizeof(float));
}
