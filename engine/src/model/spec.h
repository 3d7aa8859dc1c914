/* model/spec.h - the expected tensor set of a Qwen3-Next checkpoint (docs/qwen3-next.md §2, §5).
 *
 * From a qn_config this module enumerates every tensor a checkpoint must hold (name, shape and
 * dtype class), formats checkpoint names ("give me tensor X of layer L, expert E"), and validates an
 * opened checkpoint against the set without reading data: missing, unexpected, wrong shape, wrong
 * dtype, missing or malformed FP8 scales, all reported by name. The weight loader uses the same
 * identifiers (qn_tensor_id) and lookups (qn_spec_require), so what inspect accepts is what loads.
 *
 * Dtype classes: QN_TENSOR_PLAIN tensors (embeddings, norms, router, shared_expert_gate,
 * in_proj_ba, conv1d, A_log, dt_bias, mtp.fc, lm_head) are always a float dtype (BF16, F16 or F32).
 * QN_TENSOR_QUANTIZABLE tensors (every other Linear weight [N, K]) are a float dtype, or F8_E4M3
 * when config.json has an fp8 quantization_config, in which case `<name>_scale_inv` must exist as
 * F32 [ceil(N / block_n), ceil(K / block_k)] (dequantised W[n, k] = fp8[n, k] * scale[n / bn, k / bk]).
 * The MTP block (mtp.*) is optional: present iff config.json says so (num_nextn_predict_layers) or,
 * when it says nothing, iff the checkpoint has mtp.* tensors.
 */
#ifndef QN_SPEC_H
#define QN_SPEC_H

#include "model/config.h"      /* defines: qn_config */
#include "model/safetensors.h" /* defines: eng_st_model, eng_st_tensor */

#define QN_SPEC_MAX_DIMS 3
#define QN_TENSOR_NAME_MAX 128    /* every name formatted here fits, scale suffix included */
#define QN_SPEC_MAX_PROBLEMS 1000 /* problems stored in a report (all are counted) */

typedef enum qn_tensor_kind {
    /* global (layer = -1) */
    QN_T_EMBED = 0,  /* model.embed_tokens.weight            [V, H] */
    QN_T_FINAL_NORM, /* model.norm.weight                    [H] zero-centred (1 + w) */
    QN_T_LM_HEAD,    /* lm_head.weight                       [V, H] (absent if tie_word_embeddings) */
    /* every decoder layer, main and MTP ("model.layers.L." or "mtp.layers.L.") */
    QN_T_INPUT_NORM, /* input_layernorm.weight               [H] */
    QN_T_POST_NORM,  /* post_attention_layernorm.weight      [H] */
    /* Gated DeltaNet (linear-attention layers) */
    QN_T_LIN_QKVZ,    /* linear_attn.in_proj_qkvz.weight     [2*key_dim + 2*value_dim, H], per-k-head interleaved */
    QN_T_LIN_BA,      /* linear_attn.in_proj_ba.weight       [2*Hv, H] */
    QN_T_LIN_CONV,    /* linear_attn.conv1d.weight           [conv_dim, 1, K] */
    QN_T_LIN_DT_BIAS, /* linear_attn.dt_bias                 [Hv] */
    QN_T_LIN_A_LOG,   /* linear_attn.A_log                   [Hv] */
    QN_T_LIN_NORM,    /* linear_attn.norm.weight             [Dv] plain w (not 1 + w) */
    QN_T_LIN_OUT,     /* linear_attn.out_proj.weight         [H, value_dim] */
    /* gated full attention (full-attention layers and every MTP layer) */
    QN_T_ATTN_Q,      /* self_attn.q_proj.weight             [Nq*Dh*2, H], per head [query | gate] */
    QN_T_ATTN_K,      /* self_attn.k_proj.weight             [Nkv*Dh, H] */
    QN_T_ATTN_V,      /* self_attn.v_proj.weight             [Nkv*Dh, H] */
    QN_T_ATTN_O,      /* self_attn.o_proj.weight             [H, Nq*Dh] */
    QN_T_ATTN_Q_NORM, /* self_attn.q_norm.weight             [Dh] */
    QN_T_ATTN_K_NORM, /* self_attn.k_norm.weight             [Dh] */
    QN_T_ATTN_Q_BIAS, /* self_attn.q_proj.bias               [Nq*Dh*2]  (attention_bias only) */
    QN_T_ATTN_K_BIAS, /* self_attn.k_proj.bias               [Nkv*Dh]   (attention_bias only) */
    QN_T_ATTN_V_BIAS, /* self_attn.v_proj.bias               [Nkv*Dh]   (attention_bias only) */
    QN_T_ATTN_O_BIAS, /* self_attn.o_proj.bias               [H]        (attention_bias only) */
    /* sparse MoE block */
    QN_T_MOE_ROUTER,         /* mlp.gate.weight                     [E, H] */
    QN_T_EXPERT_GATE,        /* mlp.experts.e.gate_proj.weight      [I, H] */
    QN_T_EXPERT_UP,          /* mlp.experts.e.up_proj.weight        [I, H] */
    QN_T_EXPERT_DOWN,        /* mlp.experts.e.down_proj.weight      [H, I] */
    QN_T_SHARED_GATE,        /* mlp.shared_expert.gate_proj.weight  [Is, H] */
    QN_T_SHARED_UP,          /* mlp.shared_expert.up_proj.weight    [Is, H] */
    QN_T_SHARED_DOWN,        /* mlp.shared_expert.down_proj.weight  [H, Is] */
    QN_T_SHARED_EXPERT_GATE, /* mlp.shared_expert_gate.weight       [1, H] */
    /* dense MLP (mlp_only_layers / decoder_sparse_step) */
    QN_T_MLP_GATE, /* mlp.gate_proj.weight                   [intermediate_size, H] */
    QN_T_MLP_UP,   /* mlp.up_proj.weight                     [intermediate_size, H] */
    QN_T_MLP_DOWN, /* mlp.down_proj.weight                   [H, intermediate_size] */
    /* MTP block globals (mtp = true, layer = -1) */
    QN_T_MTP_FC,          /* mtp.fc.weight                   [H, 2H], input concat(norm(emb), norm(hidden)) */
    QN_T_MTP_NORM_EMB,    /* mtp.pre_fc_norm_embedding.weight [H] */
    QN_T_MTP_NORM_HIDDEN, /* mtp.pre_fc_norm_hidden.weight   [H] */
    QN_T_MTP_NORM,        /* mtp.norm.weight                 [H] */
    QN_T_COUNT
} qn_tensor_kind;

typedef enum qn_tensor_class {
    QN_TENSOR_PLAIN = 0,   /* always BF16 / F16 / F32 */
    QN_TENSOR_QUANTIZABLE, /* a Linear weight: float, or F8_E4M3 with a F32 `<name>_scale_inv` */
} qn_tensor_class;

/* Identifies one checkpoint tensor. */
typedef struct qn_tensor_id {
    qn_tensor_kind kind;
    int layer;  /* main: 0..n_layers-1, MTP: 0..n_mtp_layers-1; -1 for global kinds */
    int expert; /* 0..n_experts-1 for QN_T_EXPERT_*, else -1 */
    bool mtp;   /* in the mtp.* block */
} qn_tensor_id;

/* One expected tensor. */
typedef struct qn_tensor_spec {
    qn_tensor_id id;
    qn_tensor_class cls;
    int n_dims;
    int64_t shape[QN_SPEC_MAX_DIMS];
} qn_tensor_spec;

/* ==== identifiers and names ================================================================== */

/* Shorthands for ids: main-model layer tensor, routed expert tensor, global tensor. */
static inline qn_tensor_id qn_tid(qn_tensor_kind k, int layer)
{
    return (qn_tensor_id){k, layer, -1, false};
}
static inline qn_tensor_id qn_tid_expert(qn_tensor_kind k, int layer, int expert)
{
    return (qn_tensor_id){k, layer, expert, false};
}
/* MTP block: layer tensors (expert -1 unless a routed expert) and mtp.* globals (layer -1). */
static inline qn_tensor_id qn_tid_mtp(qn_tensor_kind k, int layer, int expert)
{
    return (qn_tensor_id){k, layer, expert, true};
}
/* Global tensors: embed, final norm, lm_head. */
static inline qn_tensor_id qn_tid_global(qn_tensor_kind k)
{
    return (qn_tensor_id){k, -1, -1, false};
}

/* Writes the checkpoint name of `id` into buf ("model.layers.3.self_attn.q_proj.weight",
 * "mtp.layers.0.mlp.experts.7.up_proj.weight", "lm_head.weight"). Returns false, with buf = "",
 * if the id is malformed (layer/expert missing or given where not allowed) or buf is too small
 * (QN_TENSOR_NAME_MAX always suffices). Pure; thread-safe. */
bool qn_tensor_name(const qn_tensor_id *id, char *buf, size_t cap);
/* Same, with "_scale_inv" appended: the FP8 scale companion of a quantized weight. */
bool qn_tensor_scale_name(const qn_tensor_id *id, char *buf, size_t cap);

/* The dtype class of a kind; whether a kind is per-layer; whether tensor parallelism splits it
 * (false: replicated on every rank: norms, router, shared_expert_gate). */
qn_tensor_class qn_tensor_kind_class(qn_tensor_kind k);
bool qn_tensor_kind_is_layer(qn_tensor_kind k);
bool qn_tensor_kind_tp_split(qn_tensor_kind k);
/* A short name of the kind ("lin_qkvz", "expert_down", ...) for logs. */
const char *qn_tensor_kind_str(qn_tensor_kind k);

/* Expected shape of a kind under cfg (independent of layer and expert). */
void qn_spec_shape(const qn_config *cfg, qn_tensor_kind k, int *n_dims, int64_t shape[QN_SPEC_MAX_DIMS]);
/* Expected FP8 scale shape for a 2-D weight [n, k]: [ceil(n / block_n), ceil(k / block_k)]. */
void qn_spec_scale_shape(const qn_config *cfg, const int64_t weight_shape[2], int64_t scale_shape[2]);

/* ==== enumeration ============================================================================= */

/* Every expected tensor (scales not included) in checkpoint save order: embed; per layer input
 * norm, mixer, post norm, MLP (router, experts 0..E-1 gate/up/down, shared expert, shared gate);
 * final norm; lm_head; then, with n_mtp_layers > 0, mtp.fc, the two pre-fc norms, the MTP layers
 * and mtp.norm. Heap array (free with qn_spec_list_free); ENG_ERR_NOMEM only. */
eng_status qn_spec_list(const qn_config *cfg, int n_mtp_layers, qn_tensor_spec **out, size_t *n_out);
void qn_spec_list_free(qn_tensor_spec *list); /* NULL-safe */

/* ==== the checkpoint ========================================================================== */

/* MTP layers of a checkpoint: cfg->n_mtp_layers when config.json sets it (mtp_in_config), else
 * 1 + the largest L of any "mtp.layers.L." tensor, or 1 if only other mtp.* tensors exist, else 0. */
int qn_spec_detect_mtp(const qn_config *cfg, const eng_st_model *m);
/* Sets cfg->n_mtp_layers = qn_spec_detect_mtp(cfg, m). Call once after opening the checkpoint. */
void qn_spec_resolve_mtp(qn_config *cfg, const eng_st_model *m);

/* Finds tensor `id` (NULL if absent; no detail set). */
const eng_st_tensor *qn_spec_find(const eng_st_model *m, const qn_tensor_id *id);
/* Finds tensor `id`, checks its shape against cfg and its dtype against its class, and for an
 * F8_E4M3 weight also finds and checks the scale. *scale is NULL for float weights.
 * ENG_ERR_NOT_FOUND / ENG_ERR_FORMAT with a detail naming the tensor otherwise. This is the
 * loader's "give me tensor X of layer L". */
eng_status qn_spec_require(const qn_config *cfg, const eng_st_model *m, const qn_tensor_id *id, const eng_st_tensor **w,
                           const eng_st_tensor **scale);

/* Tensor parallelism: ENG_ERR_INVALID (detail names the field) unless tp >= 1 divides
 * num_attention_heads, linear_num_key_heads, linear_num_value_heads, the expert and shared
 * intermediate sizes (and intermediate_size when dense layers exist), and num_key_value_heads
 * either divides by tp or divides tp (KV heads replicated, as vLLM does). */
eng_status qn_spec_check_tp(const qn_config *cfg, int tp);

/* ==== validation ============================================================================== */

typedef enum qn_problem_kind {
    QN_PROBLEM_MISSING = 0, /* an expected tensor is absent */
    QN_PROBLEM_UNEXPECTED,  /* the checkpoint has a tensor the config does not describe */
    QN_PROBLEM_SHAPE,       /* shape differs from the config's */
    QN_PROBLEM_DTYPE,       /* dtype not allowed for its class (or F8 without fp8 quantization_config) */
    QN_PROBLEM_SCALE,       /* FP8 scale missing, of the wrong dtype or shape, or present on a float weight */
} qn_problem_kind;

typedef struct qn_spec_problem {
    qn_problem_kind kind;
    char *name;   /* the tensor (the weight, for scale problems) */
    char *detail; /* one line: "shape [8192, 2048] but config.json gives [8192, 4096]" */
} qn_spec_problem;

typedef struct qn_spec_report {
    qn_spec_problem *problems; /* the first QN_SPEC_MAX_PROBLEMS problems */
    size_t n_problems;         /* stored */
    size_t n_problems_total;   /* counted: valid iff 0 */
    int n_mtp_layers;          /* as detected (qn_spec_detect_mtp) */
    size_t n_tensors;          /* in the checkpoint, scales included */
    size_t n_expected;         /* expected tensors, scales not included */
    size_t n_scales;           /* matched FP8 scale tensors */
    /* parameters (elements) */
    uint64_t n_params;        /* every non-scale tensor of the checkpoint */
    uint64_t n_scale_elems;   /* elements of matched scales */
    uint64_t n_params_main;   /* config-derived: main model (no mtp.*) */
    uint64_t n_params_mtp;    /* config-derived: mtp.* */
    uint64_t n_params_active; /* config-derived: main model per token (embedding table, lm_head, top-k routed experts included) */
    /* bytes */
    uint64_t n_bytes;          /* all tensors */
    uint64_t n_bytes_split;    /* tensors that tensor parallelism splits (and their scales) */
    uint64_t n_bytes_replicated; /* the rest: norms, router, shared_expert_gate, unexpected tensors */
    uint64_t dtype_tensors[ENG_DTYPE_COUNT];
    uint64_t dtype_bytes[ENG_DTYPE_COUNT];
    uint64_t dtype_elems[ENG_DTYPE_COUNT];
} qn_spec_report;

/* Validates every tensor's presence, shape and dtype (and FP8 scales) against cfg without reading
 * data; fills *out (free with qn_spec_report_free). Returns ENG_OK whenever the check ran, valid
 * or not (look at n_problems_total); ENG_ERR_NOMEM otherwise. cfg->n_mtp_layers is not used:
 * the MTP block is detected with qn_spec_detect_mtp. */
eng_status qn_spec_check(const qn_config *cfg, const eng_st_model *m, qn_spec_report *out);
void qn_spec_report_free(qn_spec_report *r); /* NULL-safe; zeroes *r */
const char *qn_problem_kind_str(qn_problem_kind k); /* "missing", "unexpected", ... */

#endif /* QN_SPEC_H */
