/* model/spec.c - the expected tensor set of a Qwen3-Next checkpoint and its validator (spec.h).
 *
 * One table describes every tensor kind (name suffix, scope, dtype class, TP split); names, shapes,
 * the enumeration and the checks all derive from it and from qn_config, so the loader and
 * `qnext inspect` cannot disagree about what a checkpoint must hold.
 */
#include "model/spec.h" /* defines: qn_tensor_*, qn_spec_* */

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ==== the kind table ========================================================================== */

typedef enum scope { SCOPE_GLOBAL, SCOPE_LAYER, SCOPE_EXPERT, SCOPE_MTP } scope;

static const struct {
    const char *suffix; /* after "model.layers.L." / "mtp.layers.L." (expert kinds: a %d for e) */
    const char *str;
    scope scope;
    qn_tensor_class cls;
    bool split; /* tensor parallelism splits it */
} kinds[QN_T_COUNT] = {
    [QN_T_EMBED] = {"model.embed_tokens.weight", "embed", SCOPE_GLOBAL, QN_TENSOR_PLAIN, true},
    [QN_T_FINAL_NORM] = {"model.norm.weight", "final_norm", SCOPE_GLOBAL, QN_TENSOR_PLAIN, false},
    [QN_T_LM_HEAD] = {"lm_head.weight", "lm_head", SCOPE_GLOBAL, QN_TENSOR_PLAIN, true},
    [QN_T_INPUT_NORM] = {"input_layernorm.weight", "input_norm", SCOPE_LAYER, QN_TENSOR_PLAIN, false},
    [QN_T_POST_NORM] = {"post_attention_layernorm.weight", "post_norm", SCOPE_LAYER, QN_TENSOR_PLAIN, false},
    [QN_T_LIN_QKVZ] = {"linear_attn.in_proj_qkvz.weight", "lin_qkvz", SCOPE_LAYER, QN_TENSOR_QUANTIZABLE, true},
    [QN_T_LIN_BA] = {"linear_attn.in_proj_ba.weight", "lin_ba", SCOPE_LAYER, QN_TENSOR_PLAIN, true},
    [QN_T_LIN_CONV] = {"linear_attn.conv1d.weight", "lin_conv", SCOPE_LAYER, QN_TENSOR_PLAIN, true},
    [QN_T_LIN_DT_BIAS] = {"linear_attn.dt_bias", "lin_dt_bias", SCOPE_LAYER, QN_TENSOR_PLAIN, true},
    [QN_T_LIN_A_LOG] = {"linear_attn.A_log", "lin_a_log", SCOPE_LAYER, QN_TENSOR_PLAIN, true},
    [QN_T_LIN_NORM] = {"linear_attn.norm.weight", "lin_norm", SCOPE_LAYER, QN_TENSOR_PLAIN, false},
    [QN_T_LIN_OUT] = {"linear_attn.out_proj.weight", "lin_out", SCOPE_LAYER, QN_TENSOR_QUANTIZABLE, true},
    [QN_T_ATTN_Q] = {"self_attn.q_proj.weight", "attn_q", SCOPE_LAYER, QN_TENSOR_QUANTIZABLE, true},
    [QN_T_ATTN_K] = {"self_attn.k_proj.weight", "attn_k", SCOPE_LAYER, QN_TENSOR_QUANTIZABLE, true},
    [QN_T_ATTN_V] = {"self_attn.v_proj.weight", "attn_v", SCOPE_LAYER, QN_TENSOR_QUANTIZABLE, true},
    [QN_T_ATTN_O] = {"self_attn.o_proj.weight", "attn_o", SCOPE_LAYER, QN_TENSOR_QUANTIZABLE, true},
    [QN_T_ATTN_Q_NORM] = {"self_attn.q_norm.weight", "attn_q_norm", SCOPE_LAYER, QN_TENSOR_PLAIN, false},
    [QN_T_ATTN_K_NORM] = {"self_attn.k_norm.weight", "attn_k_norm", SCOPE_LAYER, QN_TENSOR_PLAIN, false},
    [QN_T_ATTN_Q_BIAS] = {"self_attn.q_proj.bias", "attn_q_bias", SCOPE_LAYER, QN_TENSOR_PLAIN, true},
    [QN_T_ATTN_K_BIAS] = {"self_attn.k_proj.bias", "attn_k_bias", SCOPE_LAYER, QN_TENSOR_PLAIN, true},
    [QN_T_ATTN_V_BIAS] = {"self_attn.v_proj.bias", "attn_v_bias", SCOPE_LAYER, QN_TENSOR_PLAIN, true},
    [QN_T_ATTN_O_BIAS] = {"self_attn.o_proj.bias", "attn_o_bias", SCOPE_LAYER, QN_TENSOR_PLAIN, false},
    [QN_T_MOE_ROUTER] = {"mlp.gate.weight", "moe_router", SCOPE_LAYER, QN_TENSOR_PLAIN, false},
    [QN_T_EXPERT_GATE] = {"mlp.experts.%d.gate_proj.weight", "expert_gate", SCOPE_EXPERT, QN_TENSOR_QUANTIZABLE, true},
    [QN_T_EXPERT_UP] = {"mlp.experts.%d.up_proj.weight", "expert_up", SCOPE_EXPERT, QN_TENSOR_QUANTIZABLE, true},
    [QN_T_EXPERT_DOWN] = {"mlp.experts.%d.down_proj.weight", "expert_down", SCOPE_EXPERT, QN_TENSOR_QUANTIZABLE, true},
    [QN_T_SHARED_GATE] = {"mlp.shared_expert.gate_proj.weight", "shared_gate", SCOPE_LAYER, QN_TENSOR_QUANTIZABLE, true},
    [QN_T_SHARED_UP] = {"mlp.shared_expert.up_proj.weight", "shared_up", SCOPE_LAYER, QN_TENSOR_QUANTIZABLE, true},
    [QN_T_SHARED_DOWN] = {"mlp.shared_expert.down_proj.weight", "shared_down", SCOPE_LAYER, QN_TENSOR_QUANTIZABLE, true},
    [QN_T_SHARED_EXPERT_GATE] = {"mlp.shared_expert_gate.weight", "shared_expert_gate", SCOPE_LAYER, QN_TENSOR_PLAIN, false},
    [QN_T_MLP_GATE] = {"mlp.gate_proj.weight", "mlp_gate", SCOPE_LAYER, QN_TENSOR_QUANTIZABLE, true},
    [QN_T_MLP_UP] = {"mlp.up_proj.weight", "mlp_up", SCOPE_LAYER, QN_TENSOR_QUANTIZABLE, true},
    [QN_T_MLP_DOWN] = {"mlp.down_proj.weight", "mlp_down", SCOPE_LAYER, QN_TENSOR_QUANTIZABLE, true},
    [QN_T_MTP_FC] = {"mtp.fc.weight", "mtp_fc", SCOPE_MTP, QN_TENSOR_PLAIN, true},
    [QN_T_MTP_NORM_EMB] = {"mtp.pre_fc_norm_embedding.weight", "mtp_norm_emb", SCOPE_MTP, QN_TENSOR_PLAIN, false},
    [QN_T_MTP_NORM_HIDDEN] = {"mtp.pre_fc_norm_hidden.weight", "mtp_norm_hidden", SCOPE_MTP, QN_TENSOR_PLAIN, false},
    [QN_T_MTP_NORM] = {"mtp.norm.weight", "mtp_norm", SCOPE_MTP, QN_TENSOR_PLAIN, false},
};

qn_tensor_class qn_tensor_kind_class(qn_tensor_kind k)
{
    return (unsigned)k < QN_T_COUNT ? kinds[k].cls : QN_TENSOR_PLAIN;
}

bool qn_tensor_kind_is_layer(qn_tensor_kind k)
{
    return (unsigned)k < QN_T_COUNT && (kinds[k].scope == SCOPE_LAYER || kinds[k].scope == SCOPE_EXPERT);
}

bool qn_tensor_kind_tp_split(qn_tensor_kind k)
{
    return (unsigned)k < QN_T_COUNT && kinds[k].split;
}

const char *qn_tensor_kind_str(qn_tensor_kind k)
{
    return (unsigned)k < QN_T_COUNT ? kinds[k].str : "?";
}

/* ==== names =================================================================================== */

bool qn_tensor_name(const qn_tensor_id *id, char *buf, size_t cap)
{
    if (!buf || !cap) return false;
    buf[0] = '\0';
    if (!id || (unsigned)id->kind >= QN_T_COUNT) return false;
    scope s = kinds[id->kind].scope;
    int n;
    switch (s) {
    case SCOPE_GLOBAL:
        if (id->mtp || id->layer != -1 || id->expert != -1) return false;
        n = snprintf(buf, cap, "%s", kinds[id->kind].suffix);
        break;
    case SCOPE_MTP:
        if (!id->mtp || id->layer != -1 || id->expert != -1) return false;
        n = snprintf(buf, cap, "%s", kinds[id->kind].suffix);
        break;
    case SCOPE_LAYER:
        if (id->layer < 0 || id->expert != -1) return false;
        n = snprintf(buf, cap, "%s.layers.%d.%s", id->mtp ? "mtp" : "model", id->layer, kinds[id->kind].suffix);
        break;
    case SCOPE_EXPERT: {
        if (id->layer < 0 || id->expert < 0) return false;
        char sfx[64];
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
        snprintf(sfx, sizeof sfx, kinds[id->kind].suffix, id->expert);
#pragma GCC diagnostic pop
        n = snprintf(buf, cap, "%s.layers.%d.%s", id->mtp ? "mtp" : "model", id->layer, sfx);
        break;
    }
    default: return false;
    }
    if (n < 0 || (size_t)n >= cap) {
        buf[0] = '\0';
        return false;
    }
    return true;
}

bool qn_tensor_scale_name(const qn_tensor_id *id, char *buf, size_t cap)
{
    if (!qn_tensor_name(id, buf, cap)) return false;
    size_t l = strlen(buf);
    if (l + sizeof "_scale_inv" > cap) {
        buf[0] = '\0';
        return false;
    }
    memcpy(buf + l, "_scale_inv", sizeof "_scale_inv");
    return true;
}

/* ==== shapes ================================================================================== */

void qn_spec_shape(const qn_config *c, qn_tensor_kind k, int *n_dims, int64_t shape[QN_SPEC_MAX_DIMS])
{
    int64_t H = c->hidden_size, V = c->vocab_size;
    int64_t kd = qn_lin_key_dim(c), vd = qn_lin_value_dim(c);
    int64_t q = (int64_t)c->n_heads * c->head_dim, kv = (int64_t)c->n_kv_heads * c->head_dim;
    int64_t a = 0, b = 0, d = 0;
    int n = 2;
    switch (k) {
    case QN_T_EMBED:
    case QN_T_LM_HEAD: a = V, b = H; break;
    case QN_T_FINAL_NORM:
    case QN_T_INPUT_NORM:
    case QN_T_POST_NORM:
    case QN_T_MTP_NORM_EMB:
    case QN_T_MTP_NORM_HIDDEN:
    case QN_T_MTP_NORM:
    case QN_T_ATTN_O_BIAS: n = 1, a = H; break;
    case QN_T_LIN_QKVZ: a = 2 * kd + 2 * vd, b = H; break;
    case QN_T_LIN_BA: a = 2 * (int64_t)c->lin_n_v_heads, b = H; break;
    case QN_T_LIN_CONV: n = 3, a = 2 * kd + vd, b = 1, d = c->lin_conv_kernel; break;
    case QN_T_LIN_DT_BIAS:
    case QN_T_LIN_A_LOG: n = 1, a = c->lin_n_v_heads; break;
    case QN_T_LIN_NORM: n = 1, a = c->lin_v_head_dim; break;
    case QN_T_LIN_OUT: a = H, b = vd; break;
    case QN_T_ATTN_Q: a = 2 * q, b = H; break;
    case QN_T_ATTN_K:
    case QN_T_ATTN_V: a = kv, b = H; break;
    case QN_T_ATTN_O: a = H, b = q; break;
    case QN_T_ATTN_Q_NORM:
    case QN_T_ATTN_K_NORM: n = 1, a = c->head_dim; break;
    case QN_T_ATTN_Q_BIAS: n = 1, a = 2 * q; break;
    case QN_T_ATTN_K_BIAS:
    case QN_T_ATTN_V_BIAS: n = 1, a = kv; break;
    case QN_T_MOE_ROUTER: a = c->n_experts, b = H; break;
    case QN_T_EXPERT_GATE:
    case QN_T_EXPERT_UP: a = c->moe_intermediate, b = H; break;
    case QN_T_EXPERT_DOWN: a = H, b = c->moe_intermediate; break;
    case QN_T_SHARED_GATE:
    case QN_T_SHARED_UP: a = c->shared_intermediate, b = H; break;
    case QN_T_SHARED_DOWN: a = H, b = c->shared_intermediate; break;
    case QN_T_SHARED_EXPERT_GATE: a = 1, b = H; break;
    case QN_T_MLP_GATE:
    case QN_T_MLP_UP: a = c->intermediate_size, b = H; break;
    case QN_T_MLP_DOWN: a = H, b = c->intermediate_size; break;
    case QN_T_MTP_FC: a = H, b = 2 * H; break;
    default: n = 0; break;
    }
    *n_dims = n;
    shape[0] = a;
    shape[1] = b;
    shape[2] = d;
}

void qn_spec_scale_shape(const qn_config *c, const int64_t w[2], int64_t s[2])
{
    int64_t bn = c->quant.block_n > 0 ? c->quant.block_n : 128, bk = c->quant.block_k > 0 ? c->quant.block_k : 128;
    s[0] = (w[0] + bn - 1) / bn;
    s[1] = (w[1] + bk - 1) / bk;
}

/* ==== enumeration ============================================================================= */

typedef struct emitter {
    const qn_config *cfg;
    qn_tensor_spec *out; /* NULL: count only */
    size_t n;
} emitter;

static void emit(emitter *e, qn_tensor_kind k, int layer, int expert, bool mtp)
{
    if (e->out) {
        qn_tensor_spec *s = &e->out[e->n];
        s->id = (qn_tensor_id){k, layer, expert, mtp};
        s->cls = kinds[k].cls;
        qn_spec_shape(e->cfg, k, &s->n_dims, s->shape);
    }
    e->n++;
}

static void emit_layer(emitter *e, int l, bool mtp, bool full, bool moe)
{
    const qn_config *c = e->cfg;
    emit(e, QN_T_INPUT_NORM, l, -1, mtp);
    if (full) {
        static const qn_tensor_kind a[] = {QN_T_ATTN_Q, QN_T_ATTN_K, QN_T_ATTN_V, QN_T_ATTN_O, QN_T_ATTN_Q_NORM, QN_T_ATTN_K_NORM};
        for (size_t i = 0; i < sizeof a / sizeof a[0]; i++) emit(e, a[i], l, -1, mtp);
        if (c->attention_bias)
            for (int k = QN_T_ATTN_Q_BIAS; k <= QN_T_ATTN_O_BIAS; k++) emit(e, (qn_tensor_kind)k, l, -1, mtp);
    } else {
        for (int k = QN_T_LIN_QKVZ; k <= QN_T_LIN_OUT; k++) emit(e, (qn_tensor_kind)k, l, -1, mtp);
    }
    emit(e, QN_T_POST_NORM, l, -1, mtp);
    if (moe) {
        emit(e, QN_T_MOE_ROUTER, l, -1, mtp);
        for (int x = 0; x < c->n_experts; x++) {
            emit(e, QN_T_EXPERT_GATE, l, x, mtp);
            emit(e, QN_T_EXPERT_UP, l, x, mtp);
            emit(e, QN_T_EXPERT_DOWN, l, x, mtp);
        }
        for (int k = QN_T_SHARED_GATE; k <= QN_T_SHARED_EXPERT_GATE; k++) emit(e, (qn_tensor_kind)k, l, -1, mtp);
    } else {
        for (int k = QN_T_MLP_GATE; k <= QN_T_MLP_DOWN; k++) emit(e, (qn_tensor_kind)k, l, -1, mtp);
    }
}

static void emit_all(emitter *e, int n_mtp)
{
    const qn_config *c = e->cfg;
    emit(e, QN_T_EMBED, -1, -1, false);
    for (int l = 0; l < c->n_layers; l++) emit_layer(e, l, false, c->layer_types[l] == QN_LAYER_FULL, qn_config_layer_is_moe(c, l));
    emit(e, QN_T_FINAL_NORM, -1, -1, false);
    if (!c->tie_word_embeddings) emit(e, QN_T_LM_HEAD, -1, -1, false);
    if (n_mtp > 0) {
        emit(e, QN_T_MTP_FC, -1, -1, true);
        emit(e, QN_T_MTP_NORM_EMB, -1, -1, true);
        emit(e, QN_T_MTP_NORM_HIDDEN, -1, -1, true);
        for (int l = 0; l < n_mtp; l++) emit_layer(e, l, true, true, c->n_experts > 0);
        emit(e, QN_T_MTP_NORM, -1, -1, true);
    }
}

eng_status qn_spec_list(const qn_config *cfg, int n_mtp_layers, qn_tensor_spec **out, size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    emitter e = {cfg, NULL, 0};
    emit_all(&e, n_mtp_layers);
    size_t n = e.n;
    e.out = eng_malloc(n * sizeof *e.out);
    if (!e.out) return eng_err_set(ENG_ERR_NOMEM, "out of memory for %zu tensor specs", n);
    e.n = 0;
    emit_all(&e, n_mtp_layers);
    *out = e.out;
    *n_out = n;
    return ENG_OK;
}

void qn_spec_list_free(qn_tensor_spec *list)
{
    eng_free(list);
}

/* ==== checkpoint helpers ====================================================================== */

#define MAX_MTP_DETECT 16

int qn_spec_detect_mtp(const qn_config *cfg, const eng_st_model *m)
{
    if (cfg->mtp_in_config) return cfg->n_mtp_layers;
    bool any = false;
    int max_l = -1;
    for (size_t i = 0; i < eng_st_count(m); i++) {
        const char *nm = eng_st_at(m, i)->name;
        if (strncmp(nm, "mtp.", 4) != 0) continue;
        any = true;
        if (strncmp(nm, "mtp.layers.", 11) != 0) continue;
        const char *p = nm + 11;
        int l = 0, digits = 0;
        while (*p >= '0' && *p <= '9' && digits < 4) l = l * 10 + (*p++ - '0'), digits++;
        if (digits && *p == '.' && l < MAX_MTP_DETECT && l > max_l) max_l = l;
    }
    if (!any) return 0;
    return max_l + 1 > 1 ? max_l + 1 : 1;
}

void qn_spec_resolve_mtp(qn_config *cfg, const eng_st_model *m)
{
    cfg->n_mtp_layers = qn_spec_detect_mtp(cfg, m);
}

const eng_st_tensor *qn_spec_find(const eng_st_model *m, const qn_tensor_id *id)
{
    char name[QN_TENSOR_NAME_MAX];
    if (!qn_tensor_name(id, name, sizeof name)) return NULL;
    return eng_st_find(m, name);
}

static void fmt_shape(char *buf, size_t cap, int n, const int64_t *s)
{
    size_t o = 0;
    o += (size_t)snprintf(buf + o, cap - o, "[");
    for (int i = 0; i < n && o < cap; i++) o += (size_t)snprintf(buf + o, cap - o, i ? ", %lld" : "%lld", (long long)s[i]);
    if (o < cap) snprintf(buf + o, cap - o, "]");
}

static bool is_float(eng_dtype d)
{
    return d == ENG_DTYPE_BF16 || d == ENG_DTYPE_F16 || d == ENG_DTYPE_F32;
}

static bool shape_eq(const eng_st_tensor *t, int n, const int64_t *s)
{
    if (t->n_dims != n) return false;
    for (int i = 0; i < n; i++)
        if (t->shape[i] != s[i]) return false;
    return true;
}

/* Checks one found tensor (and finds its scale); writes a problem into kind/detail and returns
 * false when something is wrong. *scale_out is the scale tensor if one exists for it. */
typedef struct one_check {
    qn_problem_kind kind;
    char detail[512];
} one_check;

static bool check_scale(const qn_config *cfg, const eng_st_tensor *t, const eng_st_tensor *sc, const char *sname, one_check *r)
{
    if (!sc) {
        r->kind = QN_PROBLEM_SCALE;
        snprintf(r->detail, sizeof r->detail, "F8_E4M3 weight without its scale '%s'", sname);
        return false;
    }
    if (t->n_dims != 2) return true; /* the shape problem is reported already */
    int64_t want[2];
    qn_spec_scale_shape(cfg, t->shape, want);
    if (sc->dtype != ENG_DTYPE_F32) {
        r->kind = QN_PROBLEM_SCALE;
        snprintf(r->detail, sizeof r->detail, "scale '%s' is %s, expected F32", sname, eng_dtype_name(sc->dtype));
        return false;
    }
    if (!shape_eq(sc, 2, want)) {
        char a[64], b[64];
        fmt_shape(a, sizeof a, sc->n_dims, sc->shape);
        fmt_shape(b, sizeof b, 2, want);
        r->kind = QN_PROBLEM_SCALE;
        snprintf(r->detail, sizeof r->detail, "scale '%s' has shape %s, expected %s for %dx%d blocks", sname, a, b,
                 cfg->quant.block_n, cfg->quant.block_k);
        return false;
    }
    return true;
}

/* dtype + scale rules of spec.h. Returns false (with r filled) on the first problem. */
static bool check_dtype(const qn_config *cfg, const eng_st_model *m, const qn_tensor_spec *s, const eng_st_tensor *t,
                        const eng_st_tensor **scale_out, one_check *r)
{
    char sname[QN_TENSOR_NAME_MAX];
    *scale_out = NULL;
    qn_tensor_scale_name(&s->id, sname, sizeof sname);
    if (s->cls == QN_TENSOR_QUANTIZABLE) *scale_out = eng_st_find(m, sname);
    if (is_float(t->dtype)) {
        if (*scale_out) {
            r->kind = QN_PROBLEM_SCALE;
            snprintf(r->detail, sizeof r->detail, "stored as %s but has an FP8 scale '%s'", eng_dtype_name(t->dtype), sname);
            return false;
        }
        return true;
    }
    if (t->dtype == ENG_DTYPE_F8_E4M3 && s->cls == QN_TENSOR_QUANTIZABLE) {
        if (!cfg->quant.fp8) {
            r->kind = QN_PROBLEM_DTYPE;
            snprintf(r->detail, sizeof r->detail, "dtype F8_E4M3 but config.json has no fp8 quantization_config");
            return false;
        }
        return check_scale(cfg, t, *scale_out, sname, r);
    }
    r->kind = QN_PROBLEM_DTYPE;
    snprintf(r->detail, sizeof r->detail, "dtype %s, expected BF16, F16 or F32%s", eng_dtype_name(t->dtype),
             s->cls == QN_TENSOR_QUANTIZABLE ? " (or F8_E4M3 with a scale)" : " (this tensor is never quantized)");
    return false;
}

eng_status qn_spec_require(const qn_config *cfg, const eng_st_model *m, const qn_tensor_id *id, const eng_st_tensor **w,
                           const eng_st_tensor **scale)
{
    *w = NULL;
    if (scale) *scale = NULL;
    char name[QN_TENSOR_NAME_MAX];
    if (!qn_tensor_name(id, name, sizeof name))
        return eng_err_set(ENG_ERR_INVALID, "malformed tensor id (kind %d, layer %d, expert %d)", (int)id->kind, id->layer,
                           id->expert);
    const eng_st_tensor *t = eng_st_find(m, name);
    if (!t) return eng_err_set(ENG_ERR_NOT_FOUND, "tensor '%s' is missing from the checkpoint", name);
    qn_tensor_spec s = {.id = *id, .cls = kinds[id->kind].cls};
    qn_spec_shape(cfg, id->kind, &s.n_dims, s.shape);
    if (!shape_eq(t, s.n_dims, s.shape)) {
        char a[96], b[96];
        fmt_shape(a, sizeof a, t->n_dims, t->shape);
        fmt_shape(b, sizeof b, s.n_dims, s.shape);
        return eng_err_set(ENG_ERR_FORMAT, "tensor '%s': shape %s but config.json gives %s", name, a, b);
    }
    one_check r;
    const eng_st_tensor *sc = NULL;
    if (!check_dtype(cfg, m, &s, t, &sc, &r)) return eng_err_set(ENG_ERR_FORMAT, "tensor '%s': %s", name, r.detail);
    *w = t;
    if (scale) *scale = t->dtype == ENG_DTYPE_F8_E4M3 ? sc : NULL;
    return ENG_OK;
}

eng_status qn_spec_check_tp(const qn_config *c, int tp)
{
    if (tp < 1) return eng_err_set(ENG_ERR_INVALID, "tensor-parallel size %d must be at least 1", tp);
    struct {
        const char *field;
        int v;
        bool needed;
    } f[] = {
        {"num_attention_heads", c->n_heads, true},
        {"linear_num_key_heads", c->lin_n_k_heads, c->n_linear_layers > 0},
        {"linear_num_value_heads", c->lin_n_v_heads, c->n_linear_layers > 0},
        {"moe_intermediate_size", c->moe_intermediate, c->n_experts > 0},
        {"shared_expert_intermediate_size", c->shared_intermediate, c->n_experts > 0},
        {"intermediate_size", c->intermediate_size, false},
    };
    for (int l = 0; l < c->n_layers; l++) f[5].needed |= !qn_config_layer_is_moe(c, l);
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (f[i].needed && f[i].v % tp)
            return eng_err_set(ENG_ERR_INVALID, "tensor-parallel size %d does not divide %s (%d)", tp, f[i].field, f[i].v);
    if (c->n_kv_heads % tp && tp % c->n_kv_heads)
        return eng_err_set(ENG_ERR_INVALID,
                           "tensor-parallel size %d neither divides num_key_value_heads (%d) nor is a multiple of it", tp,
                           c->n_kv_heads);
    return ENG_OK;
}

/* ==== validation ============================================================================== */

const char *qn_problem_kind_str(qn_problem_kind k)
{
    switch (k) {
    case QN_PROBLEM_MISSING: return "missing";
    case QN_PROBLEM_UNEXPECTED: return "unexpected";
    case QN_PROBLEM_SHAPE: return "shape";
    case QN_PROBLEM_DTYPE: return "dtype";
    case QN_PROBLEM_SCALE: return "scale";
    }
    return "?";
}

void qn_spec_report_free(qn_spec_report *r)
{
    if (!r) return;
    for (size_t i = 0; i < r->n_problems; i++) {
        eng_free(r->problems[i].name);
        eng_free(r->problems[i].detail);
    }
    eng_free(r->problems);
    memset(r, 0, sizeof *r);
}

static eng_status add_problem(qn_spec_report *r, qn_problem_kind kind, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static eng_status add_problem(qn_spec_report *r, qn_problem_kind kind, const char *name, const char *fmt, ...)
{
    r->n_problems_total++;
    if (r->n_problems >= QN_SPEC_MAX_PROBLEMS) return ENG_OK;
    char detail[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    qn_spec_problem *p = &r->problems[r->n_problems];
    p->kind = kind;
    p->name = eng_strdup(name);
    p->detail = eng_strdup(detail);
    if (!p->name || !p->detail) {
        eng_free(p->name);
        eng_free(p->detail);
        return eng_err_set(ENG_ERR_NOMEM, "out of memory");
    }
    r->n_problems++;
    return ENG_OK;
}

enum { MARK_NONE = 0, MARK_WEIGHT = 1, MARK_SCALE = 2 };

eng_status qn_spec_check(const qn_config *cfg, const eng_st_model *m, qn_spec_report *r)
{
    memset(r, 0, sizeof *r);
    eng_status st = ENG_OK;
    qn_tensor_spec *list = NULL;
    size_t n_list = 0, n_t = eng_st_count(m);
    unsigned char *mark = NULL;
    const eng_st_tensor *base = n_t ? eng_st_at(m, 0) : NULL;

    r->problems = eng_calloc(QN_SPEC_MAX_PROBLEMS, sizeof *r->problems);
    mark = eng_calloc(n_t ? n_t : 1, 1);
    if (!r->problems || !mark) {
        st = eng_err_set(ENG_ERR_NOMEM, "out of memory");
        goto out;
    }
    r->n_mtp_layers = qn_spec_detect_mtp(cfg, m);
    r->n_tensors = n_t;
    if ((st = qn_spec_list(cfg, r->n_mtp_layers, &list, &n_list))) goto out;
    r->n_expected = n_list;

    for (size_t i = 0; i < n_list; i++) {
        const qn_tensor_spec *s = &list[i];
        char name[QN_TENSOR_NAME_MAX], want[96], have[96];
        uint64_t numel = 1;
        for (int d = 0; d < s->n_dims; d++) numel *= (uint64_t)s->shape[d];
        if (s->id.mtp) {
            r->n_params_mtp += numel;
        } else {
            r->n_params_main += numel;
            if (s->id.expert < cfg->n_experts_per_tok) r->n_params_active += numel;
        }
        qn_tensor_name(&s->id, name, sizeof name);
        fmt_shape(want, sizeof want, s->n_dims, s->shape);
        const eng_st_tensor *t = eng_st_find(m, name);
        if (!t) {
            if ((st = add_problem(r, QN_PROBLEM_MISSING, name, "missing (expected %s %s)", want,
                                  s->cls == QN_TENSOR_QUANTIZABLE ? "BF16 or F8_E4M3 + scale" : "BF16")))
                goto out;
            continue;
        }
        mark[t - base] = MARK_WEIGHT;
        bool split = kinds[s->id.kind].split;
        if (split)
            r->n_bytes_split += t->n_bytes;
        else
            r->n_bytes_replicated += t->n_bytes;
        if (!shape_eq(t, s->n_dims, s->shape)) {
            fmt_shape(have, sizeof have, t->n_dims, t->shape);
            if ((st = add_problem(r, QN_PROBLEM_SHAPE, name, "shape %s but config.json gives %s", have, want))) goto out;
        }
        one_check oc;
        const eng_st_tensor *sc = NULL;
        bool ok = check_dtype(cfg, m, s, t, &sc, &oc);
        if (sc && mark[sc - base] == MARK_NONE) {
            mark[sc - base] = MARK_SCALE;
            r->n_scales++;
            r->n_scale_elems += sc->numel;
            if (split)
                r->n_bytes_split += sc->n_bytes;
            else
                r->n_bytes_replicated += sc->n_bytes;
        }
        if (!ok && (st = add_problem(r, oc.kind, name, "%s", oc.detail))) goto out;
    }

    for (size_t i = 0; i < n_t; i++) {
        const eng_st_tensor *t = &base[i];
        r->n_bytes += t->n_bytes;
        if ((unsigned)t->dtype < ENG_DTYPE_COUNT) {
            r->dtype_tensors[t->dtype]++;
            r->dtype_bytes[t->dtype] += t->n_bytes;
            r->dtype_elems[t->dtype] += t->numel;
        }
        if (mark[i] != MARK_SCALE) r->n_params += t->numel;
        if (mark[i] != MARK_NONE) continue;
        r->n_bytes_replicated += t->n_bytes;
        char have[96];
        fmt_shape(have, sizeof have, t->n_dims, t->shape);
        size_t l = strlen(t->name);
        bool is_scale = l > 10 && !strcmp(t->name + l - 10, "_scale_inv");
        if ((st = add_problem(r, QN_PROBLEM_UNEXPECTED, t->name, "%s %s %s", eng_dtype_name(t->dtype), have,
                              is_scale ? "is a scale whose weight is not an expected quantizable tensor"
                                       : "is not part of a Qwen3-Next checkpoint with this config.json")))
            goto out;
    }
out:
    qn_spec_list_free(list);
    eng_free(mark);
    if (st) qn_spec_report_free(r);
    return st;
}
