/* model/qwen3next.h - internals of the Qwen3-Next model shared by weights.c (load + repack),
 * cache.c and qwen3next.c (forward): dimensions, per-layer weight handles, activation buffers.
 *
 * Everything named d_* is backend (device) memory; the model code only passes it to ops.
 */
#ifndef QN_QWEN3NEXT_H
#define QN_QWEN3NEXT_H

#include "model/model.h"
#include "model/safetensors.h"
#include "tp/comm.h"  /* defines: eng_comm, eng_comm_group */
#include "tp/group.h" /* defines: eng_tp_group */

/* Model dimensions, local to a tensor-parallel rank where marked (head counts are divided by the
 * world size; the rest is replicated). */
typedef struct qn_dims {
    int H, V, n_layers;        /* V: the whole vocabulary */
    int v0, Vr, Lw;            /* this rank's vocabulary slice [v0, v0 + Vr) and the row stride of its
                                  logits (world 1: 0, V, V; else ceil(V / world) + 1, room for the
                                  embedding's zero row when lm_head is tied) */
    int nq, nkv, dh, rot;      /* attention: heads (rank), kv heads (rank), head_dim, rotary dims */
    int hk, hv, dk, dv, conv_k; /* GDN: key / value heads (rank), head dims, conv taps */
    int conv_dim, vd;          /* 2*hk*dk + hv*dv, hv*dv (rank) */
    int E, topk, I, Is, Id;    /* experts, per token, expert / shared / dense intermediate (rank) */
    int n_full, n_lin;         /* layers of each kind */
    int q_rows;                /* fused attention projection rows: 2*nq*dh + 2*nkv*dh */
    int lin_rows;              /* fused GDN projection rows: conv_dim + vd + 2*hv */
    int tp_rank, tp_world;
    float eps;
} qn_dims;

typedef struct qn_layer_w {
    qn_layer_type type;
    int kind_index;            /* index among the GDN layers or among the full-attention layers */
    float *d_attn_norm;        /* [H] f32, 1 + w */
    float *d_mlp_norm;         /* [H] f32, 1 + w */
    /* Gated DeltaNet */
    qn_weight *lin_in;         /* [conv_dim + vd + 2*hv][H]: q|k|v (conv channel order) | z | b | a */
    float *d_conv_w;           /* [conv_k][conv_dim] f32 (transposed from [conv_dim][1][conv_k]) */
    float *d_A_log, *d_dt_bias; /* [hv] f32 */
    float *d_gnorm;            /* [dv] f32, plain w */
    qn_weight *lin_out;        /* [H][vd] */
    /* full attention */
    qn_weight *attn_qkv;       /* [2*nq*dh + 2*nkv*dh][H]: q (head-major) | gate | k | v */
    float *d_q_norm, *d_k_norm; /* [dh] f32, 1 + w */
    qn_weight *attn_o;         /* [H][nq*dh] */
    /* MoE */
    bool moe;
    bool has_shared;
    qn_weight *router;         /* [E (+1)][H]: expert logits | shared_expert_gate */
    qn_weight *exp_gu;         /* [E][2I][H]: per expert gate rows then up rows */
    qn_weight *exp_down;       /* [E][H][I] */
    qn_weight *sh_gu;          /* [2Is][H] */
    qn_weight *sh_down;        /* [H][Is] */
    /* dense MLP (mlp_only_layers) */
    qn_weight *mlp_gu;         /* [2Id][H] */
    qn_weight *mlp_down;       /* [H][Id] */
} qn_layer_w;

#define QN_LOGIT_ROWS 16 /* lm_head rows computed per pass (bounds the logits buffer) */

/* The tensor-parallel group a rank-0 model drives (world > 1). Rank r's model is ranks[r]: its own
 * weight shard, activations and backend; ranks 1..world-1 run on the executor's worker threads.
 * The checkpoint mapping is opened once (rank 0's m->st) and shared read-only by every rank. */
typedef struct qn_tp {
    int world;
    qn_model **ranks;          /* [world]; ranks[0] is the handle the caller holds */
    eng_backend **backends;    /* [world]; [0] is the caller's (not owned), the others are owned */
    eng_comm_group *comm;      /* the collectives */
    bool comm_owned;           /* made here (CPU) rather than passed in qn_model_params.tp_comm */
    eng_tp_group *exec;        /* worker threads of ranks 1..world-1 */
} qn_tp;

struct qn_model {
    qn_config cfg;
    qn_dims d;
    eng_backend *be;           /* not owned */
    eng_st_model *st;          /* the mmapped checkpoint; zero-copy weights point into it */
    bool st_borrowed;          /* a rank > 0 model: st belongs to rank 0 */
    char *dir;
    bool no_graphs;            /* step_begin always gets key 0 (qn_model_set_graphs) */

    /* tensor parallelism (NULL / unused when world == 1) */
    qn_tp *tp;                 /* rank 0 only: the group it drives */
    eng_comm *comm;            /* this rank's collectives endpoint (every rank when world > 1) */
    float *h_zero_row;         /* host [H] f32 zeros: the embedding row that ids outside this rank's
                                  vocabulary slice map to (the all-reduce then adds the owner's row) */
    int32_t *h_ids;            /* host [max_tokens] rank-local embedding ids */

    qn_weight *embed;          /* [V][H] */
    qn_weight *lm_head;        /* [V][H]; == embed when tied */
    float *d_final_norm;       /* [H] f32, 1 + w */
    qn_layer_w *layers;        /* [n_layers] */
    float *d_inv_freq;         /* [rot/2] f32 */
    float rope_scale;          /* cos/sin multiplier (1 for plain RoPE) */

    /* activations, sized for max_tokens rows */
    int max_tokens;
    int proj_cols;             /* widest projection output */
    float *d_x;                /* [T][H] residual stream */
    float *d_xn;               /* [T][H] normed input of a block */
    float *d_proj;             /* [T][proj_cols] projection outputs */
    float *d_conv;             /* [T][conv_dim] conv output */
    float *d_beta, *d_g;       /* [T][hv] */
    float *d_core;             /* [T][max(vd, nq*dh)] mixer core output */
    float *d_core2;            /* [T][vd] gated-norm output */
    float *d_delta;            /* [T][H] block output */
    float *d_act;              /* [T][max(Is, Id)] */
    float *d_shared;           /* [T][H] shared-expert output */
    float *d_rlog;             /* [T][E + 1] router logits | shared gate logit */
    int32_t *d_ridx;           /* [T][topk] */
    float *d_rwt;              /* [T][topk] */
    int32_t *d_ids, *d_pos;    /* [T] */
    float *d_xsel;             /* [QN_LOGIT_ROWS][H] */
    float *d_logits;           /* [QN_LOGIT_ROWS][Lw] this rank's vocabulary slice */
    float *d_gather;           /* [world][QN_LOGIT_ROWS][Lw] every rank's slices (world > 1) */
    size_t act_bytes;          /* bytes of the activation buffers above */
    void **bufs;               /* every backend buffer above (and weight vectors), for freeing */
    int n_bufs, cap_bufs;
    void **hbufs;              /* host memory weights reference (re-gridded FP8 scales, ...) */
    int n_hbufs, cap_hbufs;

    /* host scratch */
    qn_seq_desc *seqs;         /* [max_tokens] (a batch has at most one sequence per token) */
    int32_t *h_pos;            /* [max_tokens] */
};

/* weights.c: fills m->d, the weight handles and weight vectors from m->st and m->cfg, for rank
 * `rank` of `world` (world 1: the whole model). Checks the world size first (qn_spec_check_tp,
 * vocabulary), then, when the backend has weights_fit, asks it whether the rank's share of the
 * checkpoint fits before anything is copied (its ENG_ERR_NOMEM detail is passed on). */
eng_status qn_weights_load(qn_model *m, int rank, int world, bool progress);
/* Checkpoint bytes (weights and FP8 scales of the main model, mtp.* excluded) that one rank of
 * `world` holds: replicated tensors whole, split ones (qn_tensor_kind_tp_split) divided by world,
 * rounded up; k/v projections replicated when world exceeds num_key_value_heads. What weights_fit
 * is asked about. ENG_ERR_NOMEM only. */
eng_status qn_weights_rank_bytes(const qn_config *cfg, const eng_st_model *st, int world, uint64_t *out);
/* The vocabulary slice of rank r of world: rows [*v0, *v0 + *n). */
void qn_vocab_slice(int V, int world, int r, int *v0, int *n);
/* Checks that `world` can split the model of cfg (heads, FFN sizes, vocabulary); ENG_ERR_INVALID
 * naming the config field otherwise. */
eng_status qn_tp_check(const qn_config *cfg, int world, const char *dir);
void qn_weights_free(qn_model *m);
/* Allocates a backend buffer tracked in m->bufs (freed by qn_model_destroy). */
void *qn_model_alloc(qn_model *m, size_t bytes);

/* Tensor parallelism: the executor of a rank-0 model (NULL when world == 1), and rank r's model
 * and collectives endpoint (tests use eng_comm_debug_stop_after on it to kill a rank). */
eng_tp_group *qn_model_tp_exec(const qn_model *m);
qn_model *qn_model_tp_rank(qn_model *m, int rank);
eng_comm *qn_model_tp_comm(qn_model *m, int rank);

/* cache.c: the cache of rank r (the handle itself for rank 0 or world 1), and the world size the
 * cache was made for. */
qn_cache *qn_cache_rank(qn_cache *c, int rank);
int qn_cache_tp_world(const qn_cache *c);

#endif /* QN_QWEN3NEXT_H */
