/* cpu/cpu_impl.h - internals shared by the CPU backend's files: the backend context, the weight
 * layout, per-thread scratch, and the op entry points that cpu_backend.c puts in the table.
 *
 * Files: cpu_backend.c (table, memory, weights, reserve), cpu_ops_basic.c (embed, matmul, norms,
 * adds, silu-mul, rows), cpu_ops_gdn.c (conv, gates, delta rule, gated norm), cpu_ops_attn.c
 * (q/k norm + RoPE, KV write, paged attention), cpu_ops_moe.c (router, experts).
 */
#ifndef QN_CPU_IMPL_H
#define QN_CPU_IMPL_H

#include "backend/backend.h"
#include "core/threadpool.h"
#include "cpu/cpu_kernels.h"

#define CPU_ROWS_PER_TASK 16 /* weight rows per matmul task (a multiple of the 8- and 4-row tiles) */
#define CPU_MAX_GROUP 8      /* row tasks one pool task may run for few-token matmuls */
#define CPU_GDN_CHUNK 64     /* chunk length of the chunked delta rule */
#define CPU_ATTN_BLOCK 64    /* context positions per online-softmax block */

/* One matmul task: rows [r0, r1) of part `part`. */
typedef struct cpu_task {
    int32_t part;
    int32_t r0, r1; /* rows within the part (a part never exceeds 2^31 rows: its source is 2-D) */
} cpu_task;

/* The CPU layout of a qn_weight: each matrix is a list of row runs (cpu_wpart), each pointing into
 * the checkpoint mapping (zero-copy) or into a buffer this weight owns (converted F16, expanded
 * FP8 scales). */
typedef struct cpu_weight {
    int64_t rows, cols;   /* per matrix */
    int n_mats;
    int *mat_part0;       /* [n_mats + 1] first part of matrix m */
    cpu_wpart *parts;     /* [mat_part0[n_mats]] */
    int *mat_task0;       /* [n_mats + 1] first task of matrix m */
    cpu_task *tasks;      /* [mat_task0[n_mats]] row chunks, in row order */
    void **owned;         /* buffers to free */
    int n_owned, cap_owned;
    size_t bytes_owned, bytes_mapped;
    char name[96];
} cpu_weight;

/* Per-thread scratch (sized by reserve). */
typedef struct cpu_scratch {
    float *buf;
    size_t n_floats;
} cpu_scratch;

typedef struct cpu_prof cpu_prof; /* cpu_profile.c */

typedef struct cpu_ctx {
    eng_threadpool *pool;
    int n_threads;
    eng_simd simd;
    const cpu_kernels *k;
    char name[32];

    qn_op_limits lim;
    cpu_scratch *scratch; /* [n_threads] */
    /* MoE workspace (sized for lim.max_tokens * lim.top_k pairs) */
    float *moe_x, *moe_gu, *moe_act, *moe_y;
    int32_t *moe_pair_tok, *moe_pair_slot, *moe_inv, *moe_cnt, *moe_off, *moe_active, *moe_task0;
    int32_t *attn_task0;  /* [max_tokens + 1] first attention task of each sequence */
    size_t moe_pairs_cap;
    int moe_experts_cap;
    cpu_prof *prof;       /* per-op timers (QNEXT_CPU_PROFILE), or NULL */
} cpu_ctx;

static inline const cpu_weight *cpu_w(const qn_weight *w)
{
    return (const cpu_weight *)(const void *)w;
}

/* Runs the tasks of matrix `mat` over x[T] into y. */
void cpu_matmul_rows(cpu_ctx *c, const cpu_weight *w, int mat, const float *x, int64_t ldx, int T, float *y,
                     int64_t ldy);

/* ---- op entry points (signatures as in backend.h, ctx = cpu_ctx) ---- */
void cpu_op_embed(void *ctx, const qn_weight *w, const int32_t *ids, int T, float *out);
void cpu_op_matmul(void *ctx, const qn_weight *w, int mat, const float *x, int64_t ldx, int T, float *y,
                   int64_t ldy);
void cpu_op_rmsnorm(void *ctx, const float *x, int64_t ldx, int T, int n, const float *w, float eps, float *y,
                    int64_t ldy);
void cpu_op_add_rmsnorm(void *ctx, float *res, const float *delta, int T, int n, const float *w, float eps, float *y);
void cpu_op_add(void *ctx, float *x, const float *delta, int T, int n);
void cpu_op_silu_mul(void *ctx, const float *gu, int64_t ldgu, int T, int inter, float *out);
void cpu_op_get_rows(void *ctx, const float *x, int64_t ldx, int cols, const int32_t *rows, int n, float *out);

void cpu_op_gdn_conv(void *ctx, const qn_seq_desc *seqs, int n_seqs, const float *x, int64_t ldx, int conv_dim,
                     const float *w, const qn_gdn_dims *d, const qn_state_view *st, float *out);
void cpu_op_gdn_gates(void *ctx, const float *ba, int64_t ldba, int T, int n_v_heads, const float *A_log,
                      const float *dt_bias, float *beta, float *g);
void cpu_op_gdn(void *ctx, const qn_seq_desc *seqs, int n_seqs, const float *qkv, const float *beta, const float *g,
                const qn_gdn_dims *d, const qn_state_view *st, float *out);
void cpu_op_gated_rmsnorm(void *ctx, const float *o, const float *z, int64_t ldz, int T, int n_heads, int dv,
                          const float *w, float eps, float *out);

void cpu_op_qk_norm_rope(void *ctx, float *q, int64_t ldq, int n_q, float *k, int64_t ldk, int n_k, int T,
                         int head_dim, const float *qw, const float *kw, float eps, const int32_t *pos, int rot_dim,
                         const float *inv_freq, float rope_scale);
void cpu_op_kv_write(void *ctx, const qn_seq_desc *seqs, int n_seqs, const float *k, int64_t ldk, const float *v,
                     int64_t ldv, const qn_attn_dims *d, const qn_kv_view *kv);
void cpu_op_attention(void *ctx, const qn_seq_desc *seqs, int n_seqs, const float *q, int64_t ldq, const float *gate,
                      int64_t ldgate, const qn_attn_dims *d, const qn_kv_view *kv, float *out);

void cpu_op_moe_route(void *ctx, const float *logits, int64_t ldl, int T, int n_experts, int top_k, bool norm_topk,
                      int32_t *idx, float *wt);
void cpu_op_moe_experts(void *ctx, const qn_weight *gate_up, const qn_weight *down, int inter, const float *x, int T,
                        int H, const int32_t *idx, const float *wt, int top_k, const float *shared,
                        const float *shared_gate, int64_t ld_sg, float *out);

/* Per-op timers (cpu_profile.c): wraps be's ops when QNEXT_CPU_PROFILE is set (false: out of
 * memory); report prints the table to stderr and frees it (no-op without timers). */
bool cpu_prof_wrap(cpu_ctx *c, eng_backend *be);
void cpu_prof_report(cpu_ctx *c);

/* Scratch floats each thread needs for the given limits. */
size_t cpu_gdn_scratch_floats(const qn_op_limits *lim);
size_t cpu_attn_scratch_floats(const qn_op_limits *lim);

/* Runtime checks of op arguments that a bad caller could get wrong: abort with a message. */
#define CPU_ASSERT(cond)                                                                                         \
    do {                                                                                                         \
        if (!(cond)) cpu_assert_fail(#cond, __FILE__, __LINE__);                                                 \
    } while (0)
_Noreturn void cpu_assert_fail(const char *expr, const char *file, int line);

/* Work below this (roughly multiply-adds) runs inline on the calling thread: waking the pool costs
 * microseconds, more than a tiny op (small models, decode of small layers). */
#define CPU_INLINE_WORK 32768.0

/* Runs tasks 0..n_tasks-1 on the pool, or inline (as thread 0) when `work` is small. Either way
 * each task computes the same thing, so results do not depend on the choice. */
static inline void cpu_run(cpu_ctx *c, int n_tasks, eng_task_fn fn, void *arg, double work)
{
    if (work < CPU_INLINE_WORK || c->n_threads == 1) {
        for (int t = 0; t < n_tasks; t++) fn(arg, t, 0);
        return;
    }
    eng_threadpool_run(c->pool, n_tasks, fn, arg);
}

static inline float cpu_silu(float x)
{
    return x / (1.0f + expf(-x));
}

static inline float cpu_sigmoid(float x)
{
    return 1.0f / (1.0f + expf(-x));
}

#endif /* QN_CPU_IMPL_H */
