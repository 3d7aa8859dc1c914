/* model/config.h - Qwen3-Next config.json and generation_config.json (docs/qwen3-next.md §1).
 *
 * Every field of the real config is read; missing optional fields take the transformers defaults;
 * layer types come from `layer_types` or, when absent, from `full_attention_interval` (layer i is
 * full attention iff (i+1) % interval == 0). Inconsistent values (head counts that do not divide,
 * zero sizes, absurd sizes, unknown model_type, top-k > experts, ...) are ENG_ERR_FORMAT with a
 * detail naming config.json and the field.
 */
#ifndef QN_CONFIG_H
#define QN_CONFIG_H

#include "core/core.h"

#define QN_MAX_LAYERS 1024
#define QN_MAX_EOS 8

typedef enum qn_layer_type { QN_LAYER_LINEAR = 0, QN_LAYER_FULL = 1 } qn_layer_type;

typedef struct qn_rope_scaling {
    bool enabled;         /* rope_scaling present and of type "yarn" */
    double factor;
    int original_max_position_embeddings;
    double beta_fast, beta_slow, attention_factor;
} qn_rope_scaling;

typedef struct qn_quant_config {
    bool fp8;                 /* quantization_config.quant_method == "fp8" */
    int block_n, block_k;     /* weight_block_size, 128 x 128 */
    bool dynamic_activations; /* activation_scheme == "dynamic" */
} qn_quant_config;

typedef struct qn_config {
    char model_type[32];  /* "qwen3_next" */
    int hidden_size;      /* H */
    int n_layers;
    int vocab_size;
    int max_position_embeddings;
    double rms_norm_eps;
    bool tie_word_embeddings;
    char torch_dtype[16];

    /* full attention */
    int n_heads, n_kv_heads, head_dim, rotary_dim; /* rotary_dim = head_dim * partial_rotary_factor */
    double partial_rotary_factor, rope_theta;
    bool attention_bias;
    qn_rope_scaling rope_scaling;

    /* gated deltanet */
    int lin_n_k_heads, lin_n_v_heads, lin_k_head_dim, lin_v_head_dim, lin_conv_kernel;

    /* moe */
    int n_experts, n_experts_per_tok, moe_intermediate, shared_intermediate, intermediate_size;
    bool norm_topk_prob;
    int decoder_sparse_step;
    int n_mlp_only_layers;
    int mlp_only_layers[64];

    int full_attention_interval;
    qn_layer_type layer_types[QN_MAX_LAYERS];
    int n_full_layers, n_linear_layers;
    int n_mtp_layers;     /* num_nextn_predict_layers, default 1 if mtp.* tensors exist, else 0 */

    int bos_token_id;
    int eos_token_ids[QN_MAX_EOS];
    int n_eos_token_ids;

    qn_quant_config quant;
} qn_config;

/* Generation defaults (generation_config.json; absent file or field: the values below). */
typedef struct qn_gen_config {
    bool do_sample;          /* false: greedy default */
    float temperature;       /* 1.0 */
    float top_p;             /* 1.0 */
    int top_k;               /* 0 (off) */
    float min_p;             /* 0 */
    float repetition_penalty;/* 1.0 */
    int eos_token_ids[QN_MAX_EOS];
    int n_eos_token_ids;     /* merged with config eos; Qwen3-Next: 151645 and 151643 */
    int max_new_tokens;      /* -1: unset */
} qn_gen_config;

/* Parses config.json text (for tests and fuzzing); `source` names the file in error details. */
eng_status qn_config_parse(const char *json, size_t len, const char *source, qn_config *out);
/* Reads <dir>/config.json. */
eng_status qn_config_load(const char *dir, qn_config *out);
/* Reads <dir>/generation_config.json if present, else fills defaults from cfg (eos ids). */
eng_status qn_gen_config_load(const char *dir, const qn_config *cfg, qn_gen_config *out);
eng_status qn_gen_config_parse(const char *json, size_t len, const char *source, const qn_config *cfg,
                               qn_gen_config *out);

/* Derived sizes (docs/qwen3-next.md §1.1). */
static inline int qn_lin_key_dim(const qn_config *c) { return c->lin_n_k_heads * c->lin_k_head_dim; }
static inline int qn_lin_value_dim(const qn_config *c) { return c->lin_n_v_heads * c->lin_v_head_dim; }
static inline int qn_lin_conv_dim(const qn_config *c) { return 2 * qn_lin_key_dim(c) + qn_lin_value_dim(c); }
/* true if layer l has a MoE block (vs dense MLP with intermediate_size). */
bool qn_config_layer_is_moe(const qn_config *c, int l);

#endif /* QN_CONFIG_H */
