/* cuda/cuda_impl.h - internals of the CUDA backend shared by its C11 host files and its .cu kernel
 * files: the context, the device weight layout, the staged batch descriptors, and the error
 * macros. C-compatible (the .cu files include it inside their C++ translation units).
 *
 * Files: cuda_backend.c (table, memory budget, staging, step/graph state machine, scratch),
 * cuda_weights.c (weight upload and layout), cuda_ops.c (op entry points: checks, staging, graph
 * signatures, dispatch to kernels and cuBLASLt); kernels, one file pair per op family: mm.cu
 * (GEMMs), norm.cu (norms, elementwise, gathers), gdn.cu (Gated DeltaNet), attn.cu (attention),
 * moe.cu (routing, permutation, combine), util.cu (random fill, bandwidth probe).
 */
#ifndef QN_CUDA_IMPL_H
#define QN_CUDA_IMPL_H

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif
#include "backend/backend.h" /* defines: the op table, qn_* views */
#include "cuda/cuda_backend.h"
#ifdef __cplusplus
}
#endif

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ==== errors ================================================================================== */

/* A CUDA or cuBLAS error inside an op is fatal by design (docs/style.md rule 3): a poisoned
 * context cannot be recovered in process. Prints the expression, function, file and line. */
#if defined(__GNUC__)
__attribute__((noreturn))
#endif
void cu_fatal(const char *expr, const char *what, const char *func, const char *file, int line);

#define CUDA_CHECK(expr)                                                                                         \
    do {                                                                                                         \
        cudaError_t cu_e_ = (expr);                                                                              \
        if (cu_e_ != cudaSuccess) cu_fatal(#expr, cudaGetErrorString(cu_e_), __func__, __FILE__, __LINE__);      \
    } while (0)

#define CUBLAS_CHECK(expr)                                                                                       \
    do {                                                                                                         \
        cublasStatus_t cu_s_ = (expr);                                                                           \
        if (cu_s_ != CUBLAS_STATUS_SUCCESS)                                                                      \
            cu_fatal(#expr, cublasLtGetStatusString(cu_s_), __func__, __FILE__, __LINE__);                      \
    } while (0)

/* Programmer errors in op arguments (the model checks shapes before calling). */
#define CU_ASSERT(cond)                                                                                          \
    do {                                                                                                         \
        if (!(cond)) cu_fatal(#cond, "assertion failed", __func__, __FILE__, __LINE__);                          \
    } while (0)

/* ==== limits ================================================================================== */

#define CU_MAX_SEGS 8         /* dtype runs per weight matrix (real checkpoints: 1 or 2) */
#define CU_GDN_CHUNK 64       /* chunk length of the chunked delta rule (as the CPU) */
#define CU_GDN_DMAX 128       /* largest GDN head dim (dk, dv) the kernels hold in registers */
#define CU_ATTN_BLOCK 64      /* context positions per online-softmax block (as the CPU) */
#define CU_ATTN_SPLITS 16     /* fixed context splits per row (flash-decoding), combined in order */
#define CU_ATTN_ROWS 256      /* rows per attention launch (bounds the split scratch) */
#define CU_ATTN_HDMAX 256     /* largest attention head dim */
#define CU_ATTN_REPMAX 16     /* largest query heads per KV head */
#define CU_CONV_KMAX 16       /* largest conv taps */
#define CU_ROPE_HALFMAX 512   /* largest rot_dim / 2 */
#define CU_MAX_GRAPHS 64      /* cached decode graphs (LRU) */

/* ==== device weights ========================================================================== */

/* One run of consecutive output rows of the same storage dtype, for every matrix of the stack.
 * Rows are stored with a padded stride `ld` (K rounded up to 16 elements, zero padding) so every
 * row starts 16-byte aligned whatever its dtype. */
typedef struct cu_seg {
    eng_dtype dtype;      /* F32 (F16 sources are widened), BF16 or F8_E4M3 */
    int64_t row0, rows;   /* output rows [row0, row0 + rows) of each matrix */
    int64_t ld;           /* stored row stride in elements */
    void *data;           /* device [n_mats][rows][ld] dtype */
    int32_t *srow;        /* F8: device [n_mats][rows] row of `scales` each weight row uses */
    float *scales;        /* F8: device [n_scale_rows][n_kb] f32 block scales (weight_scale_inv) */
    int n_kb, block_k;    /* F8: k blocks per row (ceil(K / block_k)) and their width */
} cu_seg;

typedef struct cu_weight {
    char name[96];
    int64_t rows, cols;   /* per matrix: N, K */
    int n_mats;
    int n_segs;
    cu_seg segs[CU_MAX_SEGS];
    size_t bytes;         /* device bytes held */
} cu_weight;

static inline const cu_weight *cu_w(const qn_weight *w)
{
    return (const cu_weight *)(const void *)w;
}

/* ==== staged batch descriptors ================================================================ */

/* Device form of one qn_seq_desc (the block table lives in cu_batch.bt at seq * bt_stride). */
typedef struct cu_seq {
    int32_t row0, n_new, pos, slot, n_blocks, pad;
} cu_seq;

/* A batch as kernels see it (all device pointers into the staging arena). */
typedef struct cu_batch {
    const cu_seq *seqs;      /* [n_seqs] */
    const int32_t *row2seq;  /* [T] sequence of each row */
    const int32_t *bt;       /* [n_seqs][bt_stride] block ids */
    int n_seqs, T, bt_stride;
} cu_batch;

/* ==== GEMM problem ============================================================================ */

/* One weight segment times activations. Dense: tokens [0, T) of matrix `mat`, x row t, y row t.
 * Grouped (MoE, g_off != NULL): grid slot z takes expert e = g_active[z] (when z < *g_n_active)
 * with pairs p in [g_off[e], g_off[e + 1]); x row x_rows[p] (or p), y row p, matrix e. */
typedef struct cu_mm {
    eng_dtype dtype;
    const void *w;          /* segment data of matrix 0 */
    const int32_t *srow;    /* F8 */
    const float *scales;    /* F8 */
    int n_kb, block_k;
    int bk_shift;           /* log2(block_k) when a power of two, else -1 */
    int64_t rows, ld, K;
    int mat;
    const float *x;         /* [.][ldx], rows 16-byte aligned (ldx % 4 == 0) */
    int64_t ldx;
    const int32_t *x_rows;
    float *y;               /* already offset to the segment's first column */
    int64_t ldy;
    int T;
    const int32_t *g_active, *g_off, *g_n_active;
    int g_slots;            /* grid slots (upper bound of active experts) */
    int split;              /* tensor-core paths: 1 = split activations (and weights) into bf16 hi + lo */
} cu_mm;

/* ==== the context ============================================================================= */

typedef enum cu_mode { CU_EAGER = 0, CU_CAPTURE, CU_REPLAY } cu_mode;

typedef enum cu_scratch_id {
    CU_SCR_XH = 0,   /* bf16 activation halves for cuBLASLt */
    CU_SCR_XL,
    CU_SCR_XALIGN,   /* an aligned copy of a misaligned matmul input */
    CU_SCR_ATTN,     /* attention split partials */
    CU_SCR_MOE_I32,  /* MoE ints: counts, offsets, active list, pair -> token, inverse */
    CU_SCR_MOE_GU,   /* MoE [P][2I] gate_up outputs */
    CU_SCR_MOE_ACT,  /* MoE [P][I] */
    CU_SCR_MOE_Y,    /* MoE [P][H] */
    CU_SCR_COUNT
} cu_scratch_id;

typedef struct cu_scratch {
    void *p;
    size_t bytes;
} cu_scratch;

typedef struct cu_alloc_rec {
    void *p;
    size_t bytes;
} cu_alloc_rec;

typedef struct cu_graph {
    uint64_t key;
    int T, n_seqs, bt_stride;
    cudaGraphExec_t exec;
    uint64_t *sigs;     /* op signatures in call order */
    int n_sigs, cap_sigs;
    size_t stage_end;   /* staging bytes the step used */
    uint64_t last_used;
} cu_graph;

typedef struct cu_deferred {
    void *dst;
    size_t off, bytes;
} cu_deferred;

typedef struct cu_lt_entry {
    uint64_t key;
    cublasLtMatmulAlgo_t algo;
    int ok; /* 0: no algorithm (use the tensor-core kernel) */
} cu_lt_entry;

#define CU_LT_CACHE 256

typedef struct cu_ctx {
    int device;
    char name[300];
    eng_cuda_options opt;
    eng_cuda_gemm gemm;       /* effective GEMM path */
    cudaStream_t stream;
    cublasLtHandle_t lt;
    void *lt_ws;
    size_t lt_ws_bytes;
    cu_lt_entry lt_cache[CU_LT_CACHE];
    int lt_next;

    /* memory budget: every device allocation is recorded */
    size_t total_mem, budget, used, peak;
    cu_alloc_rec *allocs;
    int n_allocs, cap_allocs;
    void **retired;           /* scratch replaced while graphs may reference it; freed at graph_clear */
    int n_retired, cap_retired;

    qn_op_limits lim;
    cu_scratch scr[CU_SCR_COUNT];
    bool reserved;

    /* staging arena: pinned host memory and its device mirror, bump-allocated between sync points */
    uint8_t *h_stage, *d_stage;
    size_t stage_cap, stage_off;
    /* eager descriptor cache: the last staged batch (valid until the arena resets) */
    bool desc_valid;
    size_t desc_off, desc_bytes;
    cu_batch desc_batch;

    /* weight upload: two pinned buffers used alternately (cuda_weights.c) */
    uint8_t *h_up[2];
    cudaEvent_t up_ev[2];

    /* step state */
    bool in_step;
    cu_mode mode;
    const qn_seq_desc *step_seqs;
    const qn_seq_desc *step_alias; /* an op's array found equal to step_seqs in this step */
    int step_n_seqs, step_T;
    cu_batch step_batch;
    bool step_has_batch;
    cu_graph *cur;            /* CAPTURE: being recorded; REPLAY: being checked */
    int sig_pos;
    cu_deferred *deferred;
    int n_deferred, cap_deferred;
    cu_graph capture;         /* the graph being captured */
    cu_graph graphs[CU_MAX_GRAPHS];
    int n_graphs;
    uint64_t clock;

    eng_cuda_stats stats;
    int sm_count;
    size_t smem_optin;        /* max dynamic shared memory per block */
} cu_ctx;

/* ---- cuda_backend.c ---- */
void cu_enter(cu_ctx *c);                                   /* makes c's device current */
void *cu_dev_alloc(cu_ctx *c, size_t bytes, const char *what); /* budgeted; NULL + error detail on failure */
void cu_dev_free(cu_ctx *c, void *p);
/* Scratch slot `id` of at least `bytes` (grows; contents undefined). Never fails: an allocation
 * failure of scratch is fatal (the model reserved its limits; growth past them is rare). */
void *cu_scratch_get(cu_ctx *c, cu_scratch_id id, size_t bytes);
/* Staging: copies host bytes into the arena and queues (eager/capture) the device copy; returns
 * the device address. In replay only the host copy happens. */
void *cu_stage_h2d(cu_ctx *c, const void *src, size_t bytes);
/* The batch descriptors for an op's `seqs` (the step's, or staged now in eager mode). */
cu_batch cu_stage_batch(cu_ctx *c, const qn_seq_desc *seqs, int n_seqs);
/* Graph signatures: every op calls cu_sig with its arguments before launching; returns true when
 * the op must not launch (replay). */
bool cu_sig(cu_ctx *c, const char *op, const uint64_t *v, int n);
void cu_graph_clear(cu_ctx *c);

/* ---- cuda_weights.c ---- */
eng_status cu_weight_create(void *ctx, const qn_weight_desc *d, qn_weight **out);
void cu_weight_destroy(void *ctx, qn_weight *w);
void cu_weight_bytes(const qn_weight *w, size_t *owned, size_t *mapped);

/* ---- cuda_ops.c: the op entry points (signatures as in backend.h) ---- */
void cu_set_ops(eng_backend *be);

/* ---- kernels (extern "C" launchers, defined in the .cu files) ---- */
/* mm.cu */
void cu_launch_mm_simt(const cu_mm *p, cudaStream_t s);
void cu_launch_mm_tc(const cu_mm *p, cudaStream_t s);
void cu_launch_split_x(const float *x, int64_t ldx, int T, int64_t K, int64_t ldo, void *hi, void *lo,
                       cudaStream_t s);
void cu_launch_copy_rows_f32(const float *x, int64_t ldx, int T, int64_t K, float *out, int64_t ldo,
                             cudaStream_t s);
/* norm.cu */
void cu_launch_embed(const cu_weight *w, const int32_t *ids, int T, float *out, cudaStream_t s);
void cu_launch_rmsnorm(const float *x, int64_t ldx, int T, int n, const float *w, float eps, float *y, int64_t ldy,
                       cudaStream_t s);
void cu_launch_add_rmsnorm(float *res, const float *delta, int T, int n, const float *w, float eps, float *y,
                           cudaStream_t s);
void cu_launch_add(float *x, const float *delta, int T, int n, cudaStream_t s);
void cu_launch_silu_mul(const float *gu, int64_t ldgu, int T, int inter, float *out, int64_t ldo, cudaStream_t s);
void cu_launch_get_rows(const float *x, int64_t ldx, int cols, const int32_t *rows, int n, float *out,
                        cudaStream_t s);
void cu_launch_gated_rmsnorm(const float *o, const float *z, int64_t ldz, int T, int n_heads, int dv,
                             const float *w, float eps, float *out, cudaStream_t s);
/* gdn.cu */
void cu_launch_gdn_conv(cu_batch b, const float *x, int64_t ldx, int conv_dim, const float *w, int conv_k,
                        int layer, const qn_state_view *st, float *out, cudaStream_t s);
void cu_launch_gdn_gates(const float *ba, int64_t ldba, int T, int hv, const float *A_log, const float *dt_bias,
                         float *beta, float *g, cudaStream_t s);
void cu_launch_gdn(cu_batch b, bool any_single, bool any_multi, int csplit, const float *qkv,
                   const float *beta, const float *g, const qn_gdn_dims *d, const qn_state_view *st, float *out,
                   size_t smem_optin, cudaStream_t s);
/* attn.cu */
void cu_launch_qk_norm_rope(float *q, int64_t ldq, int n_q, float *k, int64_t ldk, int n_k, int T, int head_dim,
                            const float *qw, const float *kw, float eps, const int32_t *pos, int rot_dim,
                            const float *inv_freq, float rope_scale, cudaStream_t s);
void cu_launch_kv_write(cu_batch b, const float *k, int64_t ldk, const float *v, int64_t ldv, int layer,
                        const qn_kv_view *kv, cudaStream_t s);
void cu_launch_attention(cu_batch b, const float *q, int64_t ldq, const float *gate, int64_t ldgate,
                         const qn_attn_dims *d, const qn_kv_view *kv, float *part, float *out, cudaStream_t s);
/* moe.cu */
void cu_launch_moe_route(const float *logits, int64_t ldl, int T, int n_experts, int top_k, bool norm,
                         int32_t *idx, float *wt, cudaStream_t s);
void cu_launch_moe_sort(const int32_t *idx, int T, int top_k, int n_experts, int32_t *cnt_off, int32_t *active,
                        int32_t *n_active, int32_t *pair_tok, int32_t *inv, cudaStream_t s);
void cu_launch_moe_combine(const float *y, const int32_t *inv, const float *wt, int top_k, int T, int H,
                           const float *shared, const float *sg, int64_t ld_sg, float *out, cudaStream_t s);
size_t cu_gdn_chunk_smem(int dk, int dv);
size_t cu_attn_part_floats(int n_heads, int head_dim);
/* util.cu */
void cu_launch_fill_random(void *dst, eng_dtype dt, size_t n, uint64_t seed, float amp, cudaStream_t s);
void cu_launch_fill_f32(float *dst, size_t n, float v, cudaStream_t s);
/* Streams `bytes` (a multiple of 16) from src, returning nothing observable but a checksum that
 * keeps the loads alive (written to *sink). */
void cu_launch_read_probe(const void *src, size_t bytes, float *sink, cudaStream_t s);

#ifdef __cplusplus
}
#endif

#endif /* QN_CUDA_IMPL_H */
