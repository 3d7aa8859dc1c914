/* model/config.h - Qwen3-Next config.json and generation_config.json (docs/qwen3-next.md §1).
 *
 * Every field of the real config is read; missing optional fields take the transformers defaults;
 * layer types come from `layer_types` or, when absent, from `full_attention_interval` (layer i is
 * full attention iff (i+1) % interval == 0). Inconsistent values (head counts that do not divide,
 * zero sizes, absurd sizes, unknown model_type, top-k > experts, ...) are ENG_ERR_FORMAT with a
 * detail naming config.json and the field. Defaults follow transformers' Qwen3NextConfig (5.x):
 * rope_theta 10000, partial_rotary_factor 0.25, max_position_embeddings 32768, intermediate_size
 * 5632, the other sizes those of Qwen3-Next-80B-A3B. Both spellings are read: rope_theta /
 * partial_rotary_factor / rope_scaling / torch_dtype (4.x) and rope_parameters / dtype (5.x);
 * rope types other than "default" and "yarn", hidden_act other than silu, and quantization other
 * than block-wise fp8 e4m3 are ENG_ERR_UNSUPPORTED. Sizes are bounded (hidden <= 65536, vocab <=
 * 4M, heads <= 1024, head dims <= 4096, experts <= 16384, FFN <= 1M, positions <= 64M, <= 1e13
 * parameters, <= 64 GiB recurrent state per sequence) so a hostile config cannot drive later
 * allocations. The functions are pure (no global state) and thread-safe.
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
    int n_modules_not_converted; /* length of modules_to_not_convert (informational) */
} qn_quant_config;

typedef struct qn_config {
    char model_type[32];  /* "qwen3_next" */
    int hidden_size;      /* H */
    int n_layers;
    int vocab_size;
    int max_position_embeddings;
    double rms_norm_eps;
    bool tie_word_embeddings;
    char torch_dtype[16]; /* "dtype" (5.x) or "torch_dtype" (4.x); "" if absent */

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
    int n_mtp_layers;     /* num_nextn_predict_layers / mtp_num_hidden_layers when config.json has it
                           * (mtp_in_config); otherwise 0 here, and qn_spec_resolve_mtp (spec.h)
                           * sets 1 when the checkpoint has mtp.* tensors (the real config has no
                           * such field: vLLM defaults to 1) */
    bool mtp_in_config;

    int bos_token_id;     /* -1 if absent */
    int pad_token_id;     /* -1 if absent */
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
/* Reads <dir>/generation_config.json if present, else fills defaults from cfg (eos ids). The
 * eos list is the generation file's ids followed by config.json's ids not already listed. Values
 * out of range (temperature outside [0, 100], top_p outside (0, 1], negative top_k, ...) are
 * ENG_ERR_FORMAT naming the file and field; on any error *out holds the defaults. */
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
