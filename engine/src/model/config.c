/* model/config.c - parse and validate Qwen3-Next config.json and generation_config.json
 * (contract in config.h; field list in docs/qwen3-next.md §1).
 *
 * Defaults are those of transformers' Qwen3NextConfig (5.x): a field missing from config.json takes
 * the value the Python class would give it, so a config that transformers loads means the same
 * model here. Both the 4.x spelling (rope_theta, partial_rotary_factor, rope_scaling, torch_dtype)
 * and the 5.x one (rope_parameters, dtype, layer_types) are read; rope_scaling wins over
 * rope_parameters and values inside them win over top-level ones, as in transformers. Every value
 * is range-checked so that a hostile config cannot drive later allocations (KV cache, recurrent
 * state, weights) into terabytes; each error names the file and the field.
 */
#include "model/config.h" /* defines: qn_config, qn_gen_config, qn_config_* */

#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>

#define CONFIG_MAX_BYTES (16u << 20)
#define CONFIG_MAX_KEYS 4096

/* Sanity bounds: far above any real model, far below what would exhaust memory on their own. */
#define MAX_HIDDEN 65536
#define MAX_VOCAB (1 << 22)
#define MAX_HEADS 1024
#define MAX_HEAD_DIM 4096
#define MAX_EXPERTS 16384
#define MAX_FFN (1 << 20)
#define MAX_POSITIONS (1 << 26)
#define MAX_CONV_KERNEL 64
#define MAX_PARAMS 1e13          /* 10 T parameters */
#define MAX_STATE_BYTES 68719476736.0 /* 64 GiB of recurrent state per sequence */

/* ==== field helpers =========================================================================== */

typedef struct ctx {
    const char *src;
    const cJSON *root;
} ctx;

static const cJSON *field(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

static bool is_int_value(const cJSON *v, int64_t lo, int64_t hi, int64_t *out)
{
    if (!cJSON_IsNumber(v)) return false;
    double d = v->valuedouble;
    if (!isfinite(d) || d != floor(d) || d < (double)lo || d > (double)hi) return false;
    *out = (int64_t)d;
    return true;
}

/* Reads an integer field in [lo, hi]; absent or null -> def. */
static eng_status get_int(const ctx *c, const cJSON *obj, const char *prefix, const char *key, int def, int lo, int hi,
                          int *out)
{
    const cJSON *v = field(obj, key);
    if (!v) {
        *out = def;
        return ENG_OK;
    }
    int64_t x;
    if (!is_int_value(v, lo, hi, &x)) {
        if (cJSON_IsNumber(v))
            return eng_err_set(ENG_ERR_FORMAT, "%s: field '%s%s' = %g is not an integer in [%d, %d]", c->src, prefix, key,
                               v->valuedouble, lo, hi);
        return eng_err_set(ENG_ERR_FORMAT, "%s: field '%s%s' must be an integer in [%d, %d]", c->src, prefix, key, lo, hi);
    }
    *out = (int)x;
    return ENG_OK;
}

/* Reads a number field in [lo, hi] (lo_open: lo excluded); absent or null -> def. */
static eng_status get_num(const ctx *c, const cJSON *obj, const char *prefix, const char *key, double def, double lo,
                          bool lo_open, double hi, double *out)
{
    const cJSON *v = field(obj, key);
    if (!v) {
        *out = def;
        return ENG_OK;
    }
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble > hi || v->valuedouble < lo ||
        (lo_open && v->valuedouble == lo))
        return eng_err_set(ENG_ERR_FORMAT, "%s: field '%s%s' must be a number in %s%g, %g]", c->src, prefix, key,
                           lo_open ? "(" : "[", lo, hi);
    *out = v->valuedouble;
    return ENG_OK;
}

static eng_status get_bool(const ctx *c, const cJSON *obj, const char *key, bool def, bool *out)
{
    const cJSON *v = field(obj, key);
    if (!v) {
        *out = def;
        return ENG_OK;
    }
    if (!cJSON_IsBool(v)) return eng_err_set(ENG_ERR_FORMAT, "%s: field '%s' must be true or false", c->src, key);
    *out = cJSON_IsTrue(v);
    return ENG_OK;
}

/* Reads a string field into buf; absent or null -> def. */
static eng_status get_str(const ctx *c, const cJSON *obj, const char *prefix, const char *key, const char *def, char *buf,
                          size_t cap)
{
    const cJSON *v = field(obj, key);
    const char *s = def;
    if (v) {
        if (!cJSON_IsString(v)) return eng_err_set(ENG_ERR_FORMAT, "%s: field '%s%s' must be a string", c->src, prefix, key);
        s = v->valuestring;
    }
    if (strlen(s) >= cap)
        return eng_err_set(ENG_ERR_FORMAT, "%s: field '%s%s' is too long (%zu bytes)", c->src, prefix, key, strlen(s));
    memcpy(buf, s, strlen(s) + 1);
    return ENG_OK;
}

/* Token id list: an integer or an array of integers, each in [0, vocab). */
static eng_status get_ids(const ctx *c, const cJSON *obj, const char *key, int vocab, int *ids, int *n)
{
    *n = 0;
    const cJSON *v = field(obj, key);
    if (!v) return ENG_OK;
    int64_t x;
    if (cJSON_IsNumber(v)) {
        if (!is_int_value(v, 0, vocab - 1, &x))
            return eng_err_set(ENG_ERR_FORMAT, "%s: field '%s' must be a token id in [0, %d)", c->src, key, vocab);
        ids[(*n)++] = (int)x;
        return ENG_OK;
    }
    if (!cJSON_IsArray(v))
        return eng_err_set(ENG_ERR_FORMAT, "%s: field '%s' must be a token id or a list of token ids", c->src, key);
    const cJSON *it;
    cJSON_ArrayForEach(it, v)
    {
        if (!is_int_value(it, 0, vocab - 1, &x))
            return eng_err_set(ENG_ERR_FORMAT, "%s: field '%s' has an entry that is not a token id in [0, %d)", c->src, key,
                               vocab);
        bool dup = false;
        for (int i = 0; i < *n; i++) dup |= ids[i] == (int)x;
        if (dup) continue;
        if (*n >= QN_MAX_EOS)
            return eng_err_set(ENG_ERR_FORMAT, "%s: field '%s' lists more than %d token ids", c->src, key, QN_MAX_EOS);
        ids[(*n)++] = (int)x;
    }
    return ENG_OK;
}

static eng_status parse_root(const char *json, size_t len, const char *src, cJSON **out)
{
    *out = NULL;
    if (!json) return eng_err_set(ENG_ERR_INVALID, "%s: no text", src);
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root) {
        const char *e = cJSON_GetErrorPtr();
        long off = e && e >= json && e <= json + len ? (long)(e - json) : -1;
        return eng_err_set(ENG_ERR_FORMAT, "%s: malformed JSON (near byte %ld)", src, off);
    }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return eng_err_set(ENG_ERR_FORMAT, "%s: not a JSON object", src);
    }
    /* duplicate top-level keys would make the meaning depend on the parser */
    int n = 0;
    const cJSON *a, *b;
    cJSON_ArrayForEach(a, root)
    {
        if (++n > CONFIG_MAX_KEYS) {
            cJSON_Delete(root);
            return eng_err_set(ENG_ERR_FORMAT, "%s: more than %d fields", src, CONFIG_MAX_KEYS);
        }
        for (b = a->next; b; b = b->next) {
            if (a->string && b->string && !strcmp(a->string, b->string)) {
                eng_status st = eng_err_set(ENG_ERR_FORMAT, "%s: field '%.100s' appears twice", src, a->string);
                cJSON_Delete(root);
                return st;
            }
        }
    }
    *out = root;
    return ENG_OK;
}

/* ==== rope ==================================================================================== */

static double yarn_mscale(double factor, double mscale)
{
    return factor <= 1.0 ? 1.0 : 0.1 * mscale * log(factor) + 1.0;
}

static eng_status parse_rope(const ctx *c, qn_config *cfg)
{
    const cJSON *root = c->root;
    eng_status st;
    double theta, prf;
    if ((st = get_num(c, root, "", "rope_theta", 10000.0, 0, true, 1e12, &theta))) return st;
    if ((st = get_num(c, root, "", "partial_rotary_factor", 0.25, 0, true, 1.0, &prf))) return st;
    memset(&cfg->rope_scaling, 0, sizeof cfg->rope_scaling);

    const char *pname = "rope_scaling.";
    const cJSON *rp = field(root, "rope_scaling");
    if (!rp) {
        rp = field(root, "rope_parameters");
        pname = "rope_parameters.";
    }
    if (rp) {
        if (!cJSON_IsObject(rp))
            return eng_err_set(ENG_ERR_FORMAT, "%s: field '%.*s' must be an object or null", c->src, (int)strlen(pname) - 1, pname);
        char type[32];
        if ((st = get_str(c, rp, pname, "rope_type", "", type, sizeof type))) return st;
        if (!type[0] && (st = get_str(c, rp, pname, "type", "default", type, sizeof type))) return st;
        if ((st = get_num(c, rp, pname, "rope_theta", theta, 0, true, 1e12, &theta))) return st;
        if ((st = get_num(c, rp, pname, "partial_rotary_factor", prf, 0, true, 1.0, &prf))) return st;
        if (!strcmp(type, "yarn")) {
            qn_rope_scaling *y = &cfg->rope_scaling;
            y->enabled = true;
            if (!field(rp, "factor")) return eng_err_set(ENG_ERR_FORMAT, "%s: field '%sfactor' is required for yarn", c->src, pname);
            if ((st = get_num(c, rp, pname, "factor", 1.0, 1.0, false, 1024.0, &y->factor))) return st;
            if ((st = get_int(c, rp, pname, "original_max_position_embeddings", cfg->max_position_embeddings, 1,
                              MAX_POSITIONS, &y->original_max_position_embeddings)))
                return st;
            if ((st = get_num(c, rp, pname, "beta_fast", 32.0, 0, true, 1e6, &y->beta_fast))) return st;
            if ((st = get_num(c, rp, pname, "beta_slow", 1.0, 0, true, 1e6, &y->beta_slow))) return st;
            double ms, msad;
            if ((st = get_num(c, rp, pname, "mscale", 0.0, 0, false, 1e6, &ms))) return st;
            if ((st = get_num(c, rp, pname, "mscale_all_dim", 0.0, 0, false, 1e6, &msad))) return st;
            double def_af = (ms > 0 && msad > 0) ? yarn_mscale(y->factor, ms) / yarn_mscale(y->factor, msad)
                                                 : yarn_mscale(y->factor, 1.0);
            if ((st = get_num(c, rp, pname, "attention_factor", def_af, 0, true, 1e6, &y->attention_factor))) return st;
        } else if (strcmp(type, "default") != 0) {
            return eng_err_set(ENG_ERR_UNSUPPORTED, "%s: field '%srope_type' = '%s' is not supported (default or yarn)", c->src,
                               pname, type);
        }
    }
    cfg->rope_theta = theta;
    cfg->partial_rotary_factor = prf;
    return ENG_OK;
}

/* ==== quantization_config ===================================================================== */

static eng_status parse_quant(const ctx *c, qn_config *cfg)
{
    const cJSON *q = field(c->root, "quantization_config");
    memset(&cfg->quant, 0, sizeof cfg->quant);
    if (!q) return ENG_OK;
    if (!cJSON_IsObject(q)) return eng_err_set(ENG_ERR_FORMAT, "%s: field 'quantization_config' must be an object", c->src);
    eng_status st;
    char method[32], fmt[32], scheme[32];
    const char *p = "quantization_config.";
    if ((st = get_str(c, q, p, "quant_method", "", method, sizeof method))) return st;
    if (strcmp(method, "fp8") != 0)
        return eng_err_set(ENG_ERR_UNSUPPORTED, "%s: field 'quantization_config.quant_method' = '%s' is not supported (only fp8)",
                           c->src, method);
    if ((st = get_str(c, q, p, "fmt", "e4m3", fmt, sizeof fmt))) return st;
    if (strcmp(fmt, "e4m3") != 0)
        return eng_err_set(ENG_ERR_UNSUPPORTED, "%s: field 'quantization_config.fmt' = '%s' is not supported (only e4m3)", c->src,
                           fmt);
    if ((st = get_str(c, q, p, "activation_scheme", "dynamic", scheme, sizeof scheme))) return st;
    if (strcmp(scheme, "dynamic") && strcmp(scheme, "static"))
        return eng_err_set(ENG_ERR_FORMAT, "%s: field 'quantization_config.activation_scheme' = '%s' (dynamic or static)", c->src,
                           scheme);
    const cJSON *bs = field(q, "weight_block_size");
    if (!bs)
        return eng_err_set(ENG_ERR_UNSUPPORTED,
                           "%s: field 'quantization_config.weight_block_size' is missing: per-tensor fp8 is not supported", c->src);
    int64_t bn, bk;
    if (!cJSON_IsArray(bs) || cJSON_GetArraySize(bs) != 2 || !is_int_value(cJSON_GetArrayItem(bs, 0), 1, 65536, &bn) ||
        !is_int_value(cJSON_GetArrayItem(bs, 1), 1, 65536, &bk))
        return eng_err_set(ENG_ERR_FORMAT, "%s: field 'quantization_config.weight_block_size' must be [n, k] with 1..65536",
                           c->src);
    const cJSON *mods = field(q, "modules_to_not_convert");
    int n_mods = 0;
    if (mods) {
        const cJSON *it;
        if (!cJSON_IsArray(mods))
            return eng_err_set(ENG_ERR_FORMAT, "%s: field 'quantization_config.modules_to_not_convert' must be a list", c->src);
        cJSON_ArrayForEach(it, mods)
        {
            if (!cJSON_IsString(it))
                return eng_err_set(ENG_ERR_FORMAT, "%s: field 'quantization_config.modules_to_not_convert' must list strings",
                                   c->src);
            n_mods++;
        }
    }
    cfg->quant.fp8 = true;
    cfg->quant.block_n = (int)bn;
    cfg->quant.block_k = (int)bk;
    cfg->quant.dynamic_activations = !strcmp(scheme, "dynamic");
    cfg->quant.n_modules_not_converted = n_mods;
    return ENG_OK;
}

/* ==== config.json ============================================================================= */

static eng_status parse_layers(const ctx *c, qn_config *cfg)
{
    eng_status st;
    const cJSON *lt = field(c->root, "layer_types");
    if ((st = get_int(c, c->root, "", "full_attention_interval", 4, 1, QN_MAX_LAYERS, &cfg->full_attention_interval)))
        return st;
    if (lt) {
        if (!cJSON_IsArray(lt)) return eng_err_set(ENG_ERR_FORMAT, "%s: field 'layer_types' must be a list", c->src);
        int n = cJSON_GetArraySize(lt);
        if (n != cfg->n_layers)
            return eng_err_set(ENG_ERR_FORMAT, "%s: field 'layer_types' has %d entries but num_hidden_layers is %d", c->src, n,
                               cfg->n_layers);
        int i = 0;
        const cJSON *it;
        cJSON_ArrayForEach(it, lt)
        {
            if (cJSON_IsString(it) && !strcmp(it->valuestring, "linear_attention"))
                cfg->layer_types[i] = QN_LAYER_LINEAR;
            else if (cJSON_IsString(it) && !strcmp(it->valuestring, "full_attention"))
                cfg->layer_types[i] = QN_LAYER_FULL;
            else
                return eng_err_set(ENG_ERR_FORMAT,
                                   "%s: field 'layer_types' entry %d must be \"linear_attention\" or \"full_attention\"", c->src, i);
            i++;
        }
    } else {
        for (int i = 0; i < cfg->n_layers; i++)
            cfg->layer_types[i] = (i + 1) % cfg->full_attention_interval == 0 ? QN_LAYER_FULL : QN_LAYER_LINEAR;
    }
    cfg->n_full_layers = cfg->n_linear_layers = 0;
    for (int i = 0; i < cfg->n_layers; i++) {
        if (cfg->layer_types[i] == QN_LAYER_FULL)
            cfg->n_full_layers++;
        else
            cfg->n_linear_layers++;
    }

    const cJSON *mo = field(c->root, "mlp_only_layers");
    cfg->n_mlp_only_layers = 0;
    if (mo) {
        if (!cJSON_IsArray(mo)) return eng_err_set(ENG_ERR_FORMAT, "%s: field 'mlp_only_layers' must be a list", c->src);
        const cJSON *it;
        cJSON_ArrayForEach(it, mo)
        {
            int64_t x;
            if (!is_int_value(it, 0, cfg->n_layers - 1, &x))
                return eng_err_set(ENG_ERR_FORMAT, "%s: field 'mlp_only_layers' has an entry that is not a layer index in [0, %d)",
                                   c->src, cfg->n_layers);
            bool dup = false;
            for (int i = 0; i < cfg->n_mlp_only_layers; i++) dup |= cfg->mlp_only_layers[i] == (int)x;
            if (dup) continue;
            if (cfg->n_mlp_only_layers >= (int)(sizeof cfg->mlp_only_layers / sizeof cfg->mlp_only_layers[0]))
                return eng_err_set(ENG_ERR_FORMAT, "%s: field 'mlp_only_layers' lists more than %d layers", c->src,
                                   (int)(sizeof cfg->mlp_only_layers / sizeof cfg->mlp_only_layers[0]));
            cfg->mlp_only_layers[cfg->n_mlp_only_layers++] = (int)x;
        }
    }
    return ENG_OK;
}

bool qn_config_layer_is_moe(const qn_config *c, int l)
{
    for (int i = 0; i < c->n_mlp_only_layers; i++)
        if (c->mlp_only_layers[i] == l) return false;
    return c->n_experts > 0 && (l + 1) % c->decoder_sparse_step == 0;
}

/* Cross-field consistency and size sanity. */
static eng_status validate(const ctx *c, qn_config *cfg)
{
    const char *src = c->src;
    if (cfg->n_heads % cfg->n_kv_heads)
        return eng_err_set(ENG_ERR_FORMAT, "%s: field 'num_attention_heads' (%d) is not a multiple of 'num_key_value_heads' (%d)",
                           src, cfg->n_heads, cfg->n_kv_heads);
    if (cfg->lin_n_v_heads % cfg->lin_n_k_heads)
        return eng_err_set(ENG_ERR_FORMAT,
                           "%s: field 'linear_num_value_heads' (%d) is not a multiple of 'linear_num_key_heads' (%d)", src,
                           cfg->lin_n_v_heads, cfg->lin_n_k_heads);
    double rd = floor((double)cfg->head_dim * cfg->partial_rotary_factor);
    cfg->rotary_dim = (int)rd;
    if (cfg->rotary_dim < 2 || cfg->rotary_dim % 2)
        return eng_err_set(ENG_ERR_FORMAT,
                           "%s: field 'partial_rotary_factor' (%g) x head_dim (%d) gives rotary dim %d, which must be even and >= 2",
                           src, cfg->partial_rotary_factor, cfg->head_dim, cfg->rotary_dim);
    bool any_moe = false, any_dense = false;
    for (int l = 0; l < cfg->n_layers; l++) {
        if (qn_config_layer_is_moe(cfg, l))
            any_moe = true;
        else
            any_dense = true;
    }
    if (any_moe) {
        if (cfg->n_experts_per_tok < 1 || cfg->n_experts_per_tok > cfg->n_experts)
            return eng_err_set(ENG_ERR_FORMAT, "%s: field 'num_experts_per_tok' (%d) must be in [1, num_experts = %d]", src,
                               cfg->n_experts_per_tok, cfg->n_experts);
        if (cfg->moe_intermediate < 1)
            return eng_err_set(ENG_ERR_FORMAT, "%s: field 'moe_intermediate_size' must be positive", src);
        if (cfg->shared_intermediate < 1)
            return eng_err_set(ENG_ERR_FORMAT, "%s: field 'shared_expert_intermediate_size' must be positive", src);
    }
    if (any_dense && cfg->intermediate_size < 1)
        return eng_err_set(ENG_ERR_FORMAT, "%s: field 'intermediate_size' must be positive (dense MLP layers exist)", src);
    if (cfg->n_layers < 1) return eng_err_set(ENG_ERR_FORMAT, "%s: field 'num_hidden_layers' must be positive", src);

    /* sizes that later allocations follow */
    double H = cfg->hidden_size, V = cfg->vocab_size;
    double attn = H * (double)cfg->n_heads * cfg->head_dim * 3 + 2 * H * (double)cfg->n_kv_heads * cfg->head_dim;
    double kd = qn_lin_key_dim(cfg), vd = qn_lin_value_dim(cfg);
    double gdn = H * (2 * kd + 2 * vd) + H * 2 * cfg->lin_n_v_heads + (2 * kd + vd) * cfg->lin_conv_kernel + vd * H;
    double moe = (double)cfg->n_experts * 3 * H * cfg->moe_intermediate + 3 * H * cfg->shared_intermediate + H * cfg->n_experts;
    double dense = 3 * H * (double)cfg->intermediate_size;
    double params = 2 * V * H;
    for (int l = 0; l < cfg->n_layers; l++)
        params += (cfg->layer_types[l] == QN_LAYER_FULL ? attn : gdn) + (qn_config_layer_is_moe(cfg, l) ? moe : dense);
    if (params > MAX_PARAMS)
        return eng_err_set(ENG_ERR_FORMAT, "%s: sizes describe %.3g parameters, more than the sanity limit of %.0e", src, params,
                           MAX_PARAMS);
    double state = (double)cfg->n_linear_layers *
                   ((double)cfg->lin_n_v_heads * cfg->lin_k_head_dim * cfg->lin_v_head_dim * 4 + (2 * kd + vd) * cfg->lin_conv_kernel * 4);
    if (state > MAX_STATE_BYTES)
        return eng_err_set(ENG_ERR_FORMAT,
                           "%s: linear-attention sizes give %.3g bytes of recurrent state per sequence, more than the 64 GiB limit",
                           src, state);
    return ENG_OK;
}

eng_status qn_config_parse(const char *json, size_t len, const char *source, qn_config *out)
{
    const char *src = source ? source : "config.json";
    cJSON *root = NULL;
    memset(out, 0, sizeof *out);
    eng_status st = parse_root(json, len, src, &root);
    if (st) return st;
    ctx c = {src, root};
    qn_config *cfg = out;

    if (!field(root, "model_type")) {
        st = eng_err_set(ENG_ERR_FORMAT, "%s: field 'model_type' is missing (expected \"qwen3_next\")", src);
        goto out;
    }
    if ((st = get_str(&c, root, "", "model_type", "", cfg->model_type, sizeof cfg->model_type))) goto out;
    if (strcmp(cfg->model_type, "qwen3_next") != 0) {
        st = eng_err_set(ENG_ERR_UNSUPPORTED, "%s: field 'model_type' = '%s' is not supported (expected \"qwen3_next\")", src,
                         cfg->model_type);
        goto out;
    }
    char act[32];
    if ((st = get_str(&c, root, "", "hidden_act", "silu", act, sizeof act))) goto out;
    if (strcmp(act, "silu") != 0) {
        st = eng_err_set(ENG_ERR_UNSUPPORTED, "%s: field 'hidden_act' = '%s' is not supported (only silu)", src, act);
        goto out;
    }
    const cJSON *dt = field(root, "dtype") ? field(root, "dtype") : field(root, "torch_dtype");
    if (dt && !cJSON_IsString(dt)) {
        st = eng_err_set(ENG_ERR_FORMAT, "%s: field 'torch_dtype' must be a string", src);
        goto out;
    }
    if (dt) {
        size_t l = strlen(dt->valuestring);
        if (l >= sizeof cfg->torch_dtype) l = sizeof cfg->torch_dtype - 1;
        memcpy(cfg->torch_dtype, dt->valuestring, l);
        cfg->torch_dtype[l] = '\0';
    }

    /* the order matters only where a default depends on another field */
    if ((st = get_int(&c, root, "", "hidden_size", 2048, 1, MAX_HIDDEN, &cfg->hidden_size)) ||
        (st = get_int(&c, root, "", "num_hidden_layers", 48, 1, QN_MAX_LAYERS, &cfg->n_layers)) ||
        (st = get_int(&c, root, "", "vocab_size", 151936, 1, MAX_VOCAB, &cfg->vocab_size)) ||
        (st = get_int(&c, root, "", "max_position_embeddings", 32768, 1, MAX_POSITIONS, &cfg->max_position_embeddings)) ||
        (st = get_num(&c, root, "", "rms_norm_eps", 1e-6, 0, true, 0.5, &cfg->rms_norm_eps)) ||
        (st = get_bool(&c, root, "tie_word_embeddings", false, &cfg->tie_word_embeddings)) ||
        (st = get_int(&c, root, "", "num_attention_heads", 16, 1, MAX_HEADS, &cfg->n_heads)) ||
        (st = get_int(&c, root, "", "num_key_value_heads", 2, 1, MAX_HEADS, &cfg->n_kv_heads)) ||
        (st = get_int(&c, root, "", "head_dim", 256, 1, MAX_HEAD_DIM, &cfg->head_dim)) ||
        (st = get_bool(&c, root, "attention_bias", false, &cfg->attention_bias)) ||
        (st = get_int(&c, root, "", "linear_num_key_heads", 16, 1, MAX_HEADS, &cfg->lin_n_k_heads)) ||
        (st = get_int(&c, root, "", "linear_num_value_heads", 32, 1, MAX_HEADS, &cfg->lin_n_v_heads)) ||
        (st = get_int(&c, root, "", "linear_key_head_dim", 128, 1, MAX_HEAD_DIM, &cfg->lin_k_head_dim)) ||
        (st = get_int(&c, root, "", "linear_value_head_dim", 128, 1, MAX_HEAD_DIM, &cfg->lin_v_head_dim)) ||
        (st = get_int(&c, root, "", "linear_conv_kernel_dim", 4, 1, MAX_CONV_KERNEL, &cfg->lin_conv_kernel)) ||
        (st = get_int(&c, root, "", "num_experts", 512, 0, MAX_EXPERTS, &cfg->n_experts)) ||
        (st = get_int(&c, root, "", "num_experts_per_tok", 10, 0, MAX_EXPERTS, &cfg->n_experts_per_tok)) ||
        (st = get_int(&c, root, "", "moe_intermediate_size", 512, 0, MAX_FFN, &cfg->moe_intermediate)) ||
        (st = get_int(&c, root, "", "shared_expert_intermediate_size", 512, 0, MAX_FFN, &cfg->shared_intermediate)) ||
        (st = get_int(&c, root, "", "intermediate_size", 5632, 0, MAX_FFN, &cfg->intermediate_size)) ||
        (st = get_bool(&c, root, "norm_topk_prob", true, &cfg->norm_topk_prob)) ||
        (st = get_int(&c, root, "", "decoder_sparse_step", 1, 1, QN_MAX_LAYERS, &cfg->decoder_sparse_step)))
        goto out;
    if ((st = parse_rope(&c, cfg))) goto out;
    if ((st = parse_layers(&c, cfg))) goto out;
    if ((st = parse_quant(&c, cfg))) goto out;

    const char *mtp_key = field(root, "num_nextn_predict_layers") ? "num_nextn_predict_layers" : "mtp_num_hidden_layers";
    cfg->mtp_in_config = field(root, mtp_key) != NULL;
    if ((st = get_int(&c, root, "", mtp_key, 0, 0, 16, &cfg->n_mtp_layers))) goto out;

    int ids[QN_MAX_EOS], n;
    if ((st = get_ids(&c, root, "bos_token_id", cfg->vocab_size, ids, &n))) goto out;
    if (n > 1) {
        st = eng_err_set(ENG_ERR_FORMAT, "%s: field 'bos_token_id' must be a single token id", src);
        goto out;
    }
    cfg->bos_token_id = n ? ids[0] : -1;
    if ((st = get_ids(&c, root, "pad_token_id", cfg->vocab_size, ids, &n))) goto out;
    if (n > 1) {
        st = eng_err_set(ENG_ERR_FORMAT, "%s: field 'pad_token_id' must be a single token id", src);
        goto out;
    }
    cfg->pad_token_id = n ? ids[0] : -1;
    if ((st = get_ids(&c, root, "eos_token_id", cfg->vocab_size, cfg->eos_token_ids, &cfg->n_eos_token_ids))) goto out;

    st = validate(&c, cfg);
out:
    cJSON_Delete(root);
    if (st) memset(out, 0, sizeof *out);
    return st;
}

eng_status qn_config_load(const char *dir, qn_config *out)
{
    memset(out, 0, sizeof *out);
    char *path = eng_path_join(dir, "config.json");
    if (!path) return eng_err_set(ENG_ERR_NOMEM, "out of memory");
    char *text = NULL;
    size_t len = 0;
    eng_status st = eng_file_read(path, CONFIG_MAX_BYTES, &text, &len);
    if (st == ENG_ERR_INVALID) st = ENG_ERR_FORMAT; /* too large */
    if (!st) st = qn_config_parse(text, len, path, out);
    eng_free(text);
    eng_free(path);
    return st;
}

/* ==== generation_config.json ================================================================== */

static void gen_defaults(const qn_config *cfg, qn_gen_config *g)
{
    memset(g, 0, sizeof *g);
    g->do_sample = false;
    g->temperature = 1.0f;
    g->top_p = 1.0f;
    g->top_k = 0;
    g->min_p = 0.0f;
    g->repetition_penalty = 1.0f;
    g->max_new_tokens = -1;
    if (cfg) {
        for (int i = 0; i < cfg->n_eos_token_ids && i < QN_MAX_EOS; i++) g->eos_token_ids[i] = cfg->eos_token_ids[i];
        g->n_eos_token_ids = cfg->n_eos_token_ids;
    }
}

eng_status qn_gen_config_parse(const char *json, size_t len, const char *source, const qn_config *cfg, qn_gen_config *out)
{
    const char *src = source ? source : "generation_config.json";
    gen_defaults(NULL, out);
    cJSON *root = NULL;
    eng_status st = parse_root(json, len, src, &root);
    if (st) {
        gen_defaults(cfg, out);
        return st;
    }
    ctx c = {src, root};
    double t, p, mp, rp;
    int vocab = cfg ? cfg->vocab_size : MAX_VOCAB;
    int ids[QN_MAX_EOS], n = 0;
    if ((st = get_bool(&c, root, "do_sample", false, &out->do_sample)) ||
        (st = get_num(&c, root, "", "temperature", 1.0, 0, false, 100.0, &t)) ||
        (st = get_num(&c, root, "", "top_p", 1.0, 0, true, 1.0, &p)) ||
        (st = get_int(&c, root, "", "top_k", 0, 0, MAX_VOCAB, &out->top_k)) ||
        (st = get_num(&c, root, "", "min_p", 0.0, 0, false, 1.0, &mp)) ||
        (st = get_num(&c, root, "", "repetition_penalty", 1.0, 0, true, 100.0, &rp)) ||
        (st = get_int(&c, root, "", "max_new_tokens", -1, 0, 1 << 30, &out->max_new_tokens)) ||
        (st = get_ids(&c, root, "eos_token_id", vocab, ids, &n)))
        goto out;
    out->temperature = (float)t;
    out->top_p = (float)p;
    out->min_p = (float)mp;
    out->repetition_penalty = (float)rp;
    /* generation ids first, then config ids not listed yet */
    out->n_eos_token_ids = 0;
    for (int i = 0; i < n; i++) out->eos_token_ids[out->n_eos_token_ids++] = ids[i];
    for (int i = 0; cfg && i < cfg->n_eos_token_ids; i++) {
        bool dup = false;
        for (int k = 0; k < out->n_eos_token_ids; k++) dup |= out->eos_token_ids[k] == cfg->eos_token_ids[i];
        if (dup) continue;
        if (out->n_eos_token_ids >= QN_MAX_EOS) {
            st = eng_err_set(ENG_ERR_FORMAT, "%s: more than %d distinct eos token ids with config.json's", src, QN_MAX_EOS);
            goto out;
        }
        out->eos_token_ids[out->n_eos_token_ids++] = cfg->eos_token_ids[i];
    }
out:
    cJSON_Delete(root);
    if (st) gen_defaults(cfg, out);
    return st;
}

eng_status qn_gen_config_load(const char *dir, const qn_config *cfg, qn_gen_config *out)
{
    gen_defaults(cfg, out);
    char *path = eng_path_join(dir, "generation_config.json");
    if (!path) return eng_err_set(ENG_ERR_NOMEM, "out of memory");
    eng_status st = ENG_OK;
    if (eng_file_exists(path)) {
        char *text = NULL;
        size_t len = 0;
        st = eng_file_read(path, CONFIG_MAX_BYTES, &text, &len);
        if (st == ENG_ERR_INVALID) st = ENG_ERR_FORMAT;
        if (!st) st = qn_gen_config_parse(text, len, path, cfg, out);
        eng_free(text);
    }
    eng_free(path);
    return st;
}
