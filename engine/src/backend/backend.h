/* backend/backend.h - the op table: every op the Qwen3-Next forward pass uses, as one struct of
 * function pointers plus a context (ggml's ggml_backend_i; docs/style.md rules 5-6).
 *
 * The model code never calls a kernel directly and never reads or writes activation memory
 * itself: it allocates backend buffers (`alloc`), passes their addresses (plus element offsets) to
 * ops, and moves data to and from the host only with copy_h2d / copy_d2h. A CUDA backend implements
 * the same table with device pointers; the CPU backend (cpu/cpu_backend.c) is the reference.
 *
 * Conventions for every op below:
 *   - "device" pointers are backend memory (host memory for the CPU backend); every other pointer
 *     (the qn_seq_desc array, row lists) is host memory the op reads during the call.
 *   - activations are float32, row-major; `ld*` is the row stride in elements, so an op can read a
 *     column slice of a fused projection output (e.g. the gate half of q_proj).
 *   - ops are asynchronous with respect to the host on a device backend: results are visible after
 *     copy_d2h or synchronize. The CPU backend finishes each op before returning.
 *   - ops cannot fail: shapes are checked by the model before calling, and any scratch an op
 *     needs is sized once by `reserve`. Programmer errors abort (ENG_ASSERT-style).
 *
 * Batch invariance (required by the batching engine): every op computes each output row with a
 * reduction order fixed by the row's own data and position only, never by the number of rows,
 * the other sequences in the batch, the thread count or the tiling. E.g. a matmul output element
 * is one accumulator per (row, token) over k in a fixed order; the MoE combine sums a token's
 * experts in its top-k order; attention walks a row's context in fixed 64-position blocks; the
 * chunked GDN aligns its 64-token chunks to absolute positions (so a prompt split at a multiple of
 * 64 gives the same bits as the whole prompt). A sequence's outputs are therefore bitwise equal
 * alone or batched, for a given backend and SIMD path.
 *
 * Tensor parallelism seam: weights are created from host descriptors that can select rows and a
 * column range (a rank's slice); head counts are arguments, never constants, so a rank passes its
 * local counts. The all-reduce after row-parallel projections belongs to a later issue.
 */
#ifndef QN_BACKEND_H
#define QN_BACKEND_H

#include "core/core.h"
#include "core/dtype.h"

/* An opaque weight matrix (or a stack of equally shaped matrices, e.g. all experts of a layer)
 * owned by a backend, in whatever layout that backend prefers. Created from host data with
 * weight_create; the model only passes the handle to ops. */
typedef struct qn_weight qn_weight;

/* One source of rows of a weight, read from host memory (usually the mmapped checkpoint). A weight
 * is the row-wise concatenation of its parts (fused projections), each possibly a different dtype
 * (the FP8 checkpoint leaves in_proj_ba in bf16 next to an fp8 in_proj_qkvz). */
typedef struct qn_weight_part {
    const char *name;       /* checkpoint tensor name, for error messages */
    eng_dtype dtype;        /* F32, BF16, F16 or F8_E4M3 */
    const void *data;       /* host [src_rows][src_cols] in dtype; must outlive the weight (zero-copy) */
    int64_t src_rows, src_cols;
    const void *scale;      /* F8_E4M3 only: host [ceil(src_rows/block_n)][ceil(src_cols/block_k)] f32
                               weight_scale_inv, any alignment; W[n][k] = fp8[n][k] * scale[n/bn][k/bk] */
    int block_n, block_k;   /* F8_E4M3 block size (128 x 128); block_k must be a multiple of 16 */
    int64_t n_rows;         /* rows this part contributes */
    const int32_t *row_idx; /* [n_rows] source row of each contributed row, or NULL for row0.. */
    int64_t row0;           /* first source row when row_idx is NULL */
    int64_t col0;           /* first source column (a rank's slice); the part reads `cols` columns */
} qn_weight_part;

typedef struct qn_weight_desc {
    const char *name;            /* for error messages and the memory summary */
    int64_t cols;                /* K: input features of every matrix */
    int n_mats;                  /* matrices in the stack (1, or n_experts) */
    int n_parts;                 /* parts per matrix; matrix m is parts[m*n_parts .. +n_parts) */
    const qn_weight_part *parts; /* [n_mats * n_parts]; every matrix has the same row count */
} qn_weight_desc;

/* One sequence of a ragged batch, as the ops see it (host memory). */
typedef struct qn_seq_desc {
    int row0;                   /* first row of this sequence in the batch */
    int n_new;                  /* its rows (new tokens), >= 1 */
    int pos;                    /* absolute position of its first new token; 0 = fresh (its
                                   recurrent state is read as zeros, whatever the slot holds) */
    int slot;                   /* recurrent-state slot */
    const int32_t *block_table; /* [n_blocks] KV block ids for positions [0, pos + n_new) */
    int n_blocks;
} qn_seq_desc;

/* The paged KV pool of the full-attention layers (device memory, float32):
 * k, v: [n_layers][n_blocks][block_size][n_kv_heads][head_dim]; K stored after k_norm + RoPE. */
typedef struct qn_kv_view {
    float *k, *v;
    int n_layers, n_blocks, block_size, n_kv_heads, head_dim;
} qn_kv_view;

/* The recurrent-state slot pool of the GDN layers (device memory, float32):
 * conv: [n_slots][n_layers][conv_k - 1][conv_dim]  the last conv_k-1 pre-conv inputs, oldest first
 * ssm:  [n_slots][n_layers][n_v_heads][dk][dv]     the delta-rule state S */
typedef struct qn_state_view {
    float *conv, *ssm;
    int n_slots, n_layers, conv_dim, conv_k, n_v_heads, dk, dv;
} qn_state_view;

/* Upper bounds the model promises before the first forward; the backend sizes its scratch. */
typedef struct qn_op_limits {
    int max_tokens;          /* rows per op call */
    int hidden;              /* H */
    int n_experts, top_k, moe_inter; /* routed experts (0 if none) */
    int gdn_dk, gdn_dv;      /* GDN head dims (0 if no GDN layers) */
    int attn_head_dim, attn_group; /* head_dim and query heads per KV head (0 if no attention) */
} qn_op_limits;

/* Raises every limit of *acc to at least req's (a backend's reserve keeps the largest of all calls). */
static inline void qn_op_limits_max(qn_op_limits *acc, const qn_op_limits *req)
{
#define QN_LIM_MAX_(f) acc->f = acc->f > req->f ? acc->f : req->f
    QN_LIM_MAX_(max_tokens);
    QN_LIM_MAX_(hidden);
    QN_LIM_MAX_(n_experts);
    QN_LIM_MAX_(top_k);
    QN_LIM_MAX_(moe_inter);
    QN_LIM_MAX_(gdn_dk);
    QN_LIM_MAX_(gdn_dv);
    QN_LIM_MAX_(attn_head_dim);
    QN_LIM_MAX_(attn_group);
#undef QN_LIM_MAX_
}

/* Shapes of one GDN layer (local to a rank). */
typedef struct qn_gdn_dims {
    int n_k_heads, n_v_heads, dk, dv; /* v head h uses k head h / (n_v_heads / n_k_heads) */
    int conv_k;                       /* conv taps (4) */
    int layer;                        /* index among the GDN layers, into the state pool */
} qn_gdn_dims;

/* Shapes of one attention layer (local to a rank). */
typedef struct qn_attn_dims {
    int n_heads, n_kv_heads, head_dim; /* q head h uses kv head h / (n_heads / n_kv_heads) */
    int layer;                         /* index among the full-attention layers, into the KV pool */
    float scale;                       /* 1 / sqrt(head_dim) */
} qn_attn_dims;

typedef struct eng_backend eng_backend;

struct eng_backend {
    const char *name; /* "cpu-avx2", ... */
    void *ctx;

    void (*destroy)(eng_backend *be);

    /* ---- memory ---- */
    /* Device buffer of `bytes` (64-byte aligned), contents undefined; NULL on failure. */
    void *(*alloc)(void *ctx, size_t bytes);
    void (*free)(void *ctx, void *p); /* NULL-safe */
    void (*memset0)(void *ctx, void *dst, size_t bytes);
    void (*copy_h2d)(void *ctx, void *dst, const void *src, size_t bytes);
    void (*copy_d2h)(void *ctx, void *dst, const void *src, size_t bytes);
    void (*copy_d2d)(void *ctx, void *dst, const void *src, size_t bytes);
    void (*synchronize)(void *ctx);

    /* ---- weights ---- */
    /* Builds a weight from host parts (converting, permuting or slicing as described); the
     * backend may keep pointers into part data (zero-copy). ENG_ERR_NOMEM / ENG_ERR_UNSUPPORTED
     * (dtype, block size) / ENG_ERR_INVALID (inconsistent shapes), detail naming the tensor. */
    eng_status (*weight_create)(void *ctx, const qn_weight_desc *d, qn_weight **out);
    void (*weight_destroy)(void *ctx, qn_weight *w); /* NULL-safe */
    /* Bytes the weight holds in backend memory that it allocated (copies, conversions) and bytes
     * it references in place (mmapped checkpoint data). */
    void (*weight_bytes)(const qn_weight *w, size_t *owned, size_t *mapped);

    /* Sizes internal scratch for calls within `lim`; may be called again with larger limits. */
    eng_status (*reserve)(void *ctx, const qn_op_limits *lim);

    /* ---- ops ---- */
    /* out[t][:] = f32(w[ids[t]][:]) for a 1-matrix weight of `cols` H. ids: device [T] int32. */
    void (*embed)(void *ctx, const qn_weight *w, const int32_t *ids, int T, float *out);

    /* y[t][n] = sum_k W_mat[n][k] * x[t][k] for all N rows of matrix `mat`.
     * x: device [T][ldx] (first K used); y: device [T][ldy] (first N written). */
    void (*matmul)(void *ctx, const qn_weight *w, int mat, const float *x, int64_t ldx, int T, float *y,
                   int64_t ldy);

    /* y[t] = x[t] * rsqrt(mean(x[t]^2) + eps) * w (w already holds 1 + w for the zero-centred
     * norms). x, y: device [T][n] with strides ldx, ldy (may alias exactly); w: device [n]. */
    void (*rmsnorm)(void *ctx, const float *x, int64_t ldx, int T, int n, const float *w, float eps, float *y,
                    int64_t ldy);
    /* res[t] += delta[t]; y[t] = rmsnorm(res[t]) (fused residual add). res, delta, y: device [T][n]. */
    void (*add_rmsnorm)(void *ctx, float *res, const float *delta, int T, int n, const float *w, float eps,
                        float *y);
    /* x[t] += delta[t] for [T][n]. */
    void (*add)(void *ctx, float *x, const float *delta, int T, int n);

    /* out[t][i] = silu(gu[t][i]) * gu[t][inter + i]; gu: device [T][ldgu], out: device [T][inter]. */
    void (*silu_mul)(void *ctx, const float *gu, int64_t ldgu, int T, int inter, float *out);

    /* ---- Gated DeltaNet ---- */
    /* Causal depthwise conv + SiLU per sequence, continuing from (and updating) each sequence's
     * conv state. x: device [T][ldx] (first conv_dim columns are the pre-conv q|k|v);
     * w: device [conv_k][conv_dim], out[t][c] = silu(sum_j w[j][c] * x[t - (conv_k-1) + j][c]) (tap
     * conv_k-1 is the current token); out: device [T][conv_dim]. */
    void (*gdn_conv)(void *ctx, const qn_seq_desc *seqs, int n_seqs, const float *x, int64_t ldx, int conv_dim,
                     const float *w, const qn_gdn_dims *d, const qn_state_view *st, float *out);
    /* beta[t][h] = sigmoid(b), g[t][h] = -exp(A_log[h]) * softplus(a + dt_bias[h]) for ba rows
     * [b (n_v_heads) | a (n_v_heads)] at stride ldba. beta, g: device [T][n_v_heads]. */
    void (*gdn_gates)(void *ctx, const float *ba, int64_t ldba, int T, int n_v_heads, const float *A_log,
                      const float *dt_bias, float *beta, float *g);
    /* The gated delta rule per sequence from its slot's state (zeros when pos == 0), updating the
     * state: one token -> the recurrent form; more -> the chunked form (64-token chunks aligned to
     * absolute positions). qkv: device [T][2*n_k_heads*dk + n_v_heads*dv] post-conv q|k|v (q and
     * k are L2-normalised and q scaled by dk^-0.5 inside); out: device [T][n_v_heads*dv]. */
    void (*gdn)(void *ctx, const qn_seq_desc *seqs, int n_seqs, const float *qkv, const float *beta,
                const float *g, const qn_gdn_dims *d, const qn_state_view *st, float *out);
    /* out[t][h] = w * rmsnorm(o[t][h]) * silu(z[t][h]) per head of dv (plain w, not 1 + w).
     * o, out: device [T][n_heads*dv]; z: device [T][ldz]. */
    void (*gated_rmsnorm)(void *ctx, const float *o, const float *z, int64_t ldz, int T, int n_heads, int dv,
                          const float *w, float eps, float *out);

    /* ---- full attention ---- */
    /* In place, per head: x = rmsnorm(x) * w, then NeoX RoPE on the first rot_dim dims with
     * position pos[t]: pairs (i, i + rot_dim/2), angle pos * inv_freq[i], cos/sin scaled by
     * rope_scale. q: device [T][ldq] (n_q heads of head_dim), k: device [T][ldk]; pos: device [T];
     * inv_freq: device [rot_dim/2]; qw, kw: device [head_dim] (1 + w). */
    void (*qk_norm_rope)(void *ctx, float *q, int64_t ldq, int n_q, float *k, int64_t ldk, int n_k, int T,
                         int head_dim, const float *qw, const float *kw, float eps, const int32_t *pos,
                         int rot_dim, const float *inv_freq, float rope_scale);
    /* Writes each sequence's new K and V rows into its KV blocks at positions pos..pos+n_new-1.
     * k, v: device [T][ldk/ldv] (n_kv_heads*head_dim used). */
    void (*kv_write)(void *ctx, const qn_seq_desc *seqs, int n_seqs, const float *k, int64_t ldk, const float *v,
                     int64_t ldv, const qn_attn_dims *d, const qn_kv_view *kv);
    /* Causal GQA attention of each row over its sequence's cached positions [0, pos_of_row], then
     * out = attn * sigmoid(gate). q, gate: device [T][ldq/ldgate] (head-major n_heads*head_dim);
     * out: device [T][n_heads*head_dim]. */
    void (*attention)(void *ctx, const qn_seq_desc *seqs, int n_seqs, const float *q, int64_t ldq,
                      const float *gate, int64_t ldgate, const qn_attn_dims *d, const qn_kv_view *kv, float *out);

    /* ---- MoE ---- */
    /* Softmax over the first n_experts logits of each row, top-k (descending, lower index first on
     * ties), renormalised when norm_topk. logits: device [T][ldl]; idx, wt: device [T][top_k]. */
    void (*moe_route)(void *ctx, const float *logits, int64_t ldl, int T, int n_experts, int top_k, bool norm_topk,
                      int32_t *idx, float *wt);
    /* out[t] = sum_j wt[t][j] * down_e(silu(gate_e(x)) * up_e(x)) with e = idx[t][j], summed in j
     * order, then + sigmoid(shared_gate[t]) * shared[t] when shared != NULL.
     * gate_up: [n_experts][2*inter][H] (gate rows then up rows); down: [n_experts][H][inter].
     * x, shared, out: device [T][H]; shared_gate: device [T] at stride ld_sg. */
    void (*moe_experts)(void *ctx, const qn_weight *gate_up, const qn_weight *down, int inter, const float *x, int T,
                        int H, const int32_t *idx, const float *wt, int top_k, const float *shared,
                        const float *shared_gate, int64_t ld_sg, float *out);

    /* out[i] = x[rows[i]] for i < n (rows: host). x: device [.][ldx]; out: device [n][cols]. */
    void (*get_rows)(void *ctx, const float *x, int64_t ldx, int cols, const int32_t *rows, int n, float *out);

    /* ---- optional: NULL when a backend has no use for them (the CPU backend) ---- */
    /* Bracket one forward step (every op call of one qn_model_forward). `seqs` [n_seqs] is the
     * step's sequence array: the array every sequence op of the step receives, or one with equal
     * content; T its rows. A backend stages the descriptors once per step, and when `key` != 0 and
     * the step is decode-only (every n_new == 1) it may capture the step as a CUDA graph and
     * replay it on later steps with the same (key, T, n_seqs). So `key` != 0 promises: every step
     * with this key, T and n_seqs calls the same ops in the same order with the same device
     * pointers and sizes; only host data (token ids, positions, descriptors, block tables, row
     * lists) differs. Between the two calls copy_d2h may complete only at step_end (the host data
     * is valid after step_end returns), and synchronize is a no-op. Steps do not nest. */
    void (*step_begin)(void *ctx, uint64_t key, const qn_seq_desc *seqs, int n_seqs, int T);
    void (*step_end)(void *ctx);
    /* Bytes this backend may allocate in all (its budget) and holds now: the engine sizes its KV
     * blocks and state slots from the difference. */
    void (*mem_info)(void *ctx, size_t *budget, size_t *used);
    /* Before a model load: ENG_OK if `weight_bytes` (this rank's share of the checkpoint) fit the
     * budget with room for activations and caches, else ENG_ERR_NOMEM with a detail saying how much
     * is missing and what to try (FP8 checkpoint, more GPUs, a larger memory fraction). */
    eng_status (*weights_fit)(void *ctx, uint64_t weight_bytes);
};

/* Destroys a backend (any kind). NULL-safe. */
void eng_backend_destroy(eng_backend *be);

/* ==== the CPU backend ========================================================================== */

typedef enum eng_simd {
    ENG_SIMD_AUTO = 0, /* the best the CPU supports, unless QNEXT_SIMD names one */
    ENG_SIMD_SCALAR,   /* plain C */
    ENG_SIMD_AVX2,     /* AVX2 + FMA + F16C */
    ENG_SIMD_AVX512,   /* AVX-512 F/BW/VL/DQ (untested on the development machine, which lacks it) */
} eng_simd;

/* "scalar", "avx2", "avx512", "auto". */
const char *eng_simd_name(eng_simd s);
/* Parses a name (as above); -1 if unknown. */
int eng_simd_parse(const char *s);
/* Whether this CPU can run path s (scalar: always). */
bool eng_simd_supported(eng_simd s);

typedef struct eng_cpu_options {
    int n_threads; /* <= 0: all online CPUs */
    eng_simd simd; /* AUTO: QNEXT_SIMD if set, else the best supported */
} eng_cpu_options;

/* Creates the CPU backend. ENG_ERR_UNSUPPORTED if the requested (or QNEXT_SIMD) path cannot run on
 * this CPU; ENG_ERR_INVALID for an unknown QNEXT_SIMD value. */
eng_status eng_backend_cpu_create(const eng_cpu_options *opt, eng_backend **out);

/* The SIMD path a CPU backend runs. */
eng_simd eng_backend_cpu_simd(const eng_backend *be);

#endif /* QN_BACKEND_H */
