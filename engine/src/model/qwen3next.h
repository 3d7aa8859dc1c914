/* model/qwen3next.h - internals of the Qwen3-Next model shared by weights.c (load + repack),
 * cache.c and qwen3next.c (forward): dimensions, per-layer weight handles, activation buffers.
 *
 * Everything named d_* is backend (device) memory; the model code only passes it to ops.
 */
#ifndef QN_QWEN3NEXT_H
#define QN_QWEN3NEXT_H

#include "model/model.h"
#include "model/safetensors.h"

/* Model dimensions, local to a tensor-parallel rank where marked (head counts are divided by the
 * world size; the rest is replicated). */
typedef struct qn_dims {
    int H, V, n_layers;
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

struct qn_model {
    qn_config cfg;
    qn_dims d;
    eng_backend *be;           /* not owned */
    eng_st_model *st;          /* the mmapped checkpoint; zero-copy weights point into it */
    char *dir;

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
    float *d_logits;           /* [QN_LOGIT_ROWS][V] */
    size_t act_bytes;          /* bytes of the activation buffers above */
    void **bufs;               /* every backend buffer above (and weight vectors), for freeing */
    int n_bufs, cap_bufs;

    /* host scratch */
    qn_seq_desc *seqs;
    int seqs_cap;
    int32_t *h_pos;            /* [max_tokens] */
};

/* weights.c: fills m->d, the weight handles and weight vectors from m->st and m->cfg. */
eng_status qn_weights_load(qn_model *m, const qn_model_params *p);
void qn_weights_free(qn_model *m);
/* Allocates a backend buffer tracked in m->bufs (freed by qn_model_destroy). */
void *qn_model_alloc(qn_model *m, size_t bytes);

#endif /* QN_QWEN3NEXT_H */
