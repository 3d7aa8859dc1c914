/* model/demo.c - the random-weight Qwen3-Next writer behind `qnext demo-model` (see demo.h).
 *
 * The tensor list comes from spec.c (the same enumeration `qnext inspect` validates against), the
 * values from a per-tensor xoshiro256** stream seeded by (seed, name), and the files go through the
 * safetensors writer, streamed in chunks so memory stays small (the 151936 x 256 embedding is the
 * largest tensor, about 78 MB in bf16).
 */
#include "model/demo.h" /* defines: qn_demo_* */

#include "model/safetensors.h" /* defines: eng_st_writer */
#include "model/spec.h"        /* defines: qn_spec_list, qn_tensor_name */

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>

#define CHUNK 65536
#define FP8_MAX 448.0f

/* ==== config.json ============================================================================= */

static void put_common(eng_buf *b)
{
    eng_buf_puts(b, "{\n"
                    "  \"architectures\": [\"Qwen3NextForCausalLM\"],\n"
                    "  \"attention_dropout\": 0.0,\n"
                    "  \"bos_token_id\": 151643,\n"
                    "  \"decoder_sparse_step\": 1,\n"
                    "  \"eos_token_id\": 151645,\n"
                    "  \"full_attention_interval\": 4,\n"
                    "  \"head_dim\": 64,\n"
                    "  \"hidden_act\": \"silu\",\n"
                    "  \"hidden_size\": 256,\n"
                    "  \"initializer_range\": 0.02,\n"
                    "  \"intermediate_size\": 512,\n"
                    "  \"linear_conv_kernel_dim\": 4,\n"
                    "  \"linear_key_head_dim\": 64,\n"
                    "  \"linear_num_key_heads\": 2,\n"
                    "  \"linear_num_value_heads\": 4,\n"
                    "  \"linear_value_head_dim\": 64,\n"
                    "  \"max_position_embeddings\": 262144,\n"
                    "  \"mlp_only_layers\": [],\n"
                    "  \"model_type\": \"qwen3_next\",\n"
                    "  \"moe_intermediate_size\": 128,\n"
                    "  \"norm_topk_prob\": true,\n"
                    "  \"num_attention_heads\": 4,\n"
                    "  \"num_experts\": 8,\n"
                    "  \"num_experts_per_tok\": 2,\n"
                    "  \"num_hidden_layers\": 8,\n"
                    "  \"num_key_value_heads\": 2,\n"
                    "  \"output_router_logits\": false,\n"
                    "  \"partial_rotary_factor\": 0.25,\n");
}

static void put_tail(eng_buf *b)
{
    eng_buf_puts(b, "  \"rms_norm_eps\": 1e-06,\n"
                    "  \"rope_scaling\": null,\n"
                    "  \"rope_theta\": 10000000,\n"
                    "  \"router_aux_loss_coef\": 0.001,\n"
                    "  \"shared_expert_intermediate_size\": 128,\n"
                    "  \"tie_word_embeddings\": false,\n"
                    "  \"torch_dtype\": \"bfloat16\",\n"
                    "  \"transformers_version\": \"4.57.0.dev0\",\n"
                    "  \"use_cache\": true,\n"
                    "  \"use_sliding_window\": false,\n"
                    "  \"vocab_size\": 151936\n"
                    "}\n");
}

/* modules_to_not_convert as in the real FP8 config: every never-quantized module except the
 * embedding and the final norm, named without the ".weight" suffix. */
static void put_quant(eng_buf *b, const qn_tensor_spec *list, size_t n)
{
    eng_buf_puts(b, "  \"quantization_config\": {\n"
                    "    \"activation_scheme\": \"dynamic\",\n"
                    "    \"fmt\": \"e4m3\",\n"
                    "    \"modules_to_not_convert\": [");
    bool first = true;
    for (size_t i = 0; i < n; i++) {
        if (list[i].cls != QN_TENSOR_PLAIN || list[i].id.kind == QN_T_EMBED || list[i].id.kind == QN_T_FINAL_NORM) continue;
        char name[QN_TENSOR_NAME_MAX];
        qn_tensor_name(&list[i].id, name, sizeof name);
        size_t l = strlen(name);
        if (l > 7 && !strcmp(name + l - 7, ".weight")) name[l - 7] = '\0';
        eng_buf_printf(b, "%s\n      \"%s\"", first ? "" : ",", name);
        first = false;
    }
    eng_buf_puts(b, "\n    ],\n"
                    "    \"quant_method\": \"fp8\",\n"
                    "    \"weight_block_size\": [128, 128]\n"
                    "  },\n");
}

static eng_status build_config(bool fp8, char **json, qn_config *cfg, qn_tensor_spec **list, size_t *n_list)
{
    eng_buf b;
    eng_buf_init(&b);
    eng_status st;
    *json = NULL;
    *list = NULL;
    *n_list = 0;
    put_common(&b);
    put_tail(&b);
    if (b.oom) {
        eng_buf_free(&b);
        return eng_err_set(ENG_ERR_NOMEM, "out of memory");
    }
    if ((st = qn_config_parse(b.data, b.len, "demo config.json", cfg))) goto out;
    if ((st = qn_spec_list(cfg, 1, list, n_list))) goto out;
    if (fp8) {
        eng_buf_free(&b);
        eng_buf_init(&b);
        put_common(&b);
        put_quant(&b, *list, *n_list);
        put_tail(&b);
        if (b.oom) {
            st = eng_err_set(ENG_ERR_NOMEM, "out of memory");
            goto out;
        }
        if ((st = qn_config_parse(b.data, b.len, "demo config.json", cfg))) goto out;
    }
    *json = eng_buf_take(&b, NULL);
out:
    eng_buf_free(&b);
    if (st) {
        qn_spec_list_free(*list);
        *list = NULL;
        *n_list = 0;
    }
    return st;
}

/* The architecture of o->config_path: its text, parsed config and tensor list. */
static eng_status load_config(const char *path, bool want_fp8, char **json, qn_config *cfg, qn_tensor_spec **list,
                              size_t *n_list)
{
    size_t len = 0;
    eng_status st;
    *json = NULL;
    *list = NULL;
    *n_list = 0;
    if ((st = eng_file_read(path, 1u << 20, json, &len))) return st;
    if ((st = qn_config_parse(*json, len, path, cfg))) goto fail;
    if (want_fp8 && !cfg->quant.fp8) {
        st = eng_err_set(ENG_ERR_INVALID, "%s: fp8 weights need a block-fp8 quantization_config in the config", path);
        goto fail;
    }
    if ((st = qn_spec_list(cfg, cfg->mtp_in_config ? cfg->n_mtp_layers : 0, list, n_list))) goto fail;
    return ENG_OK;
fail:
    eng_free(*json);
    *json = NULL;
    return st;
}

eng_status qn_demo_config_json(bool fp8, char **out)
{
    qn_config cfg;
    qn_tensor_spec *list;
    size_t n;
    eng_status st = build_config(fp8, out, &cfg, &list, &n);
    qn_spec_list_free(list);
    return st;
}

/* ==== random values =========================================================================== */

typedef struct rng {
    uint64_t s[4];
    bool has_spare;
    double spare;
} rng;

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void rng_seed(rng *r, uint64_t seed, const char *name)
{
    uint64_t h = 1469598103934665603ull;
    for (const char *p = name; *p; p++) h = (h ^ (uint8_t)*p) * 1099511628211ull;
    uint64_t x = seed * 0x9e3779b97f4a7c15ull ^ h;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
    r->has_spare = false;
}

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(rng *r)
{
    uint64_t *s = r->s, out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

static double rng_uniform(rng *r) /* [0, 1) */
{
    return (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

static double rng_normal(rng *r)
{
    if (r->has_spare) {
        r->has_spare = false;
        return r->spare;
    }
    double u = 1.0 - rng_uniform(r), v = rng_uniform(r); /* u in (0, 1] */
    double m = sqrt(-2.0 * log(u));
    r->spare = m * sin(2.0 * M_PI * v);
    r->has_spare = true;
    return m * cos(2.0 * M_PI * v);
}

static float gen_value(rng *r, qn_tensor_kind k)
{
    switch (k) {
    case QN_T_LIN_A_LOG: return (float)log(1.0 + 15.0 * rng_uniform(r));
    case QN_T_LIN_DT_BIAS: return (float)log(expm1(0.001 + 0.099 * rng_uniform(r)));
    case QN_T_LIN_CONV: return (float)(rng_uniform(r) - 0.5);
    case QN_T_LIN_NORM: return (float)(1.0 + 0.02 * rng_normal(r));
    default: return (float)(0.02 * rng_normal(r));
    }
}

/* ==== files =================================================================================== */

static eng_status mkdir_p(const char *path)
{
    char *p = eng_strdup(path);
    if (!p) return eng_err_set(ENG_ERR_NOMEM, "out of memory");
    eng_status st = ENG_OK;
    for (char *s = p + 1;; s++) {
        if (*s == '/' || *s == '\0') {
            char c = *s;
            *s = '\0';
            if (mkdir(p, 0755) != 0 && errno != EEXIST) {
                st = eng_err_set(ENG_ERR_IO, "%s: cannot create folder: %s", p, strerror(errno));
                break;
            }
            *s = c;
            if (!c) break;
        }
    }
    eng_free(p);
    if (!st && !eng_dir_exists(path)) st = eng_err_set(ENG_ERR_IO, "%s: not a folder", path);
    return st;
}

static eng_status write_file(const char *dir, const char *name, const char *data, size_t len)
{
    char *path = eng_path_join(dir, name);
    if (!path) return eng_err_set(ENG_ERR_NOMEM, "out of memory");
    eng_status st = ENG_OK;
    FILE *f = fopen(path, "wb");
    if (!f) {
        st = eng_err_set(ENG_ERR_IO, "%s: %s", path, strerror(errno));
    } else {
        bool ok = fwrite(data, 1, len, f) == len;
        ok &= fclose(f) == 0;
        if (!ok) st = eng_err_set(ENG_ERR_IO, "%s: write failed", path);
    }
    eng_free(path);
    return st;
}

static eng_status read_in(const char *dir, const char *name, char **out, size_t *len)
{
    char *path = eng_path_join(dir, name);
    if (!path) return eng_err_set(ENG_ERR_NOMEM, "out of memory");
    eng_status st = eng_file_read(path, 256u << 20, out, len);
    eng_free(path);
    return st;
}

static bool exists_in(const char *dir, const char *name)
{
    char *path = eng_path_join(dir, name);
    bool r = path && eng_file_exists(path);
    eng_free(path);
    return r;
}

static eng_status write_tokenizer(const char *tok_dir, const char *out_dir)
{
    char *tok = NULL, *tcfg = NULL, *tmpl = NULL, *printed = NULL;
    size_t n_tok, n_tcfg, n_tmpl = 0;
    cJSON *root = NULL;
    eng_status st;
    if ((st = read_in(tok_dir, "tokenizer.json", &tok, &n_tok))) goto out;
    if ((st = read_in(tok_dir, "tokenizer_config.json", &tcfg, &n_tcfg))) goto out;
    const char *tname = exists_in(tok_dir, "chat_template.qwen3-next-instruct.jinja") ? "chat_template.qwen3-next-instruct.jinja"
                        : exists_in(tok_dir, "chat_template.jinja")                   ? "chat_template.jinja"
                                                                                      : NULL;
    if (tname && (st = read_in(tok_dir, tname, &tmpl, &n_tmpl))) goto out;
    if ((st = write_file(out_dir, "tokenizer.json", tok, n_tok))) goto out;
    root = cJSON_ParseWithLength(tcfg, n_tcfg);
    if (!root || !cJSON_IsObject(root)) {
        st = eng_err_set(ENG_ERR_FORMAT, "%s/tokenizer_config.json: malformed JSON", tok_dir);
        goto out;
    }
    if (tmpl) {
        cJSON *s = cJSON_CreateString(tmpl);
        if (!s) {
            st = eng_err_set(ENG_ERR_NOMEM, "out of memory");
            goto out;
        }
        if (cJSON_GetObjectItemCaseSensitive(root, "chat_template"))
            cJSON_ReplaceItemInObjectCaseSensitive(root, "chat_template", s);
        else
            cJSON_AddItemToObject(root, "chat_template", s);
        if ((st = write_file(out_dir, "chat_template.jinja", tmpl, n_tmpl))) goto out;
    }
    printed = cJSON_Print(root);
    if (!printed) {
        st = eng_err_set(ENG_ERR_NOMEM, "out of memory");
        goto out;
    }
    st = write_file(out_dir, "tokenizer_config.json", printed, strlen(printed));
out:
    cJSON_Delete(root);
    if (printed) cJSON_free(printed);
    eng_free(tok);
    eng_free(tcfg);
    eng_free(tmpl);
    return st;
}

static const char gen_config_json[] = "{\n"
                                      "  \"bos_token_id\": 151643,\n"
                                      "  \"do_sample\": true,\n"
                                      "  \"eos_token_id\": [151645, 151643],\n"
                                      "  \"pad_token_id\": 151643,\n"
                                      "  \"temperature\": 0.7,\n"
                                      "  \"top_k\": 20,\n"
                                      "  \"top_p\": 0.8,\n"
                                      "  \"transformers_version\": \"4.57.0.dev0\"\n"
                                      "}\n";

/* generation_config.json: the one next to o->config_path if there is one, else the demo's. */
static eng_status write_gen_config(const qn_demo_options *o)
{
    if (!o->config_path)
        return write_file(o->out_dir, "generation_config.json", gen_config_json, sizeof gen_config_json - 1);
    const char *slash = strrchr(o->config_path, '/');
    char *dir = !slash                    ? eng_strdup(".")
                : slash == o->config_path ? eng_strdup("/")
                                          : eng_strndup(o->config_path, (size_t)(slash - o->config_path));
    if (!dir) return eng_err_set(ENG_ERR_NOMEM, "out of memory");
    char *text = NULL;
    size_t len = 0;
    eng_status st;
    if (!exists_in(dir, "generation_config.json"))
        st = write_file(o->out_dir, "generation_config.json", gen_config_json, sizeof gen_config_json - 1);
    else if ((st = read_in(dir, "generation_config.json", &text, &len)) == ENG_OK)
        st = write_file(o->out_dir, "generation_config.json", text, len);
    eng_free(text);
    eng_free(dir);
    return st;
}

/* ==== weights ================================================================================= */

typedef struct plan {
    qn_tensor_spec s;
    char name[QN_TENSOR_NAME_MAX];
    bool fp8;
    uint64_t numel, bytes, scale_bytes;
    int64_t scale_shape[2];
    int shard;
} plan;

typedef struct writer_ctx {
    eng_progress *prog;
    uint64_t done;
    float *f;       /* CHUNK floats, or one 128-row block */
    uint16_t *h;    /* CHUNK bf16 */
    uint8_t *q;     /* one 128-row block of fp8 */
    size_t block_cap;
} writer_ctx;

static eng_status write_plain(eng_st_writer *w, const plan *p, rng *r, writer_ctx *c)
{
    eng_status st;
    for (uint64_t i = 0; i < p->numel; i += CHUNK) {
        size_t n = p->numel - i < CHUNK ? (size_t)(p->numel - i) : CHUNK;
        for (size_t k = 0; k < n; k++) c->h[k] = eng_f32_to_bf16(gen_value(r, p->s.id.kind));
        if ((st = eng_st_writer_data(w, c->h, n * 2))) return st;
        c->done += n * 2;
        eng_progress_update(c->prog, c->done);
    }
    return ENG_OK;
}

static eng_status write_fp8(eng_st_writer *w, const plan *p, rng *r, writer_ctx *c, const qn_config *cfg)
{
    int64_t N = p->s.shape[0], K = p->s.shape[1], bn = cfg->quant.block_n, bk = cfg->quant.block_k;
    int64_t sn = p->scale_shape[0], sk = p->scale_shape[1];
    float *scales = eng_malloc((size_t)(sn * sk) * sizeof *scales);
    if (!scales) return eng_err_set(ENG_ERR_NOMEM, "out of memory");
    eng_status st = ENG_OK;
    for (int64_t r0 = 0; r0 < N; r0 += bn) {
        int64_t rows = N - r0 < bn ? N - r0 : bn;
        for (int64_t i = 0; i < rows * K; i++) c->f[i] = gen_value(r, p->s.id.kind);
        for (int64_t cb = 0; cb < sk; cb++) {
            int64_t k0 = cb * bk, k1 = k0 + bk < K ? k0 + bk : K;
            float amax = 0;
            for (int64_t i = 0; i < rows; i++)
                for (int64_t k = k0; k < k1; k++) amax = fmaxf(amax, fabsf(c->f[i * K + k]));
            float scale = amax > 0 ? amax / FP8_MAX : 1.0f;
            scales[(r0 / bn) * sk + cb] = scale;
            for (int64_t i = 0; i < rows; i++)
                for (int64_t k = k0; k < k1; k++) c->q[i * K + k] = eng_f32_to_fp8e4m3(c->f[i * K + k] / scale);
        }
        if ((st = eng_st_writer_data(w, c->q, (uint64_t)(rows * K)))) goto out;
        c->done += (uint64_t)(rows * K);
        eng_progress_update(c->prog, c->done);
    }
    if ((st = eng_st_writer_data(w, scales, p->scale_bytes))) goto out;
    c->done += p->scale_bytes;
out:
    eng_free(scales);
    return st;
}

static eng_status write_shard(const char *path, const plan *pl, size_t n, int shard, uint64_t seed, const qn_config *cfg,
                              writer_ctx *c)
{
    eng_st_writer *w = NULL;
    eng_status st;
    char seed_s[32];
    snprintf(seed_s, sizeof seed_s, "%llu", (unsigned long long)seed);
    if ((st = eng_st_writer_create(path, &w))) return st;
    if ((st = eng_st_writer_set_metadata(w, "format", "pt")) || (st = eng_st_writer_set_metadata(w, "qnext_demo_seed", seed_s)))
        goto fail;
    for (size_t i = 0; i < n; i++) {
        const plan *p = &pl[i];
        if (p->shard != shard) continue;
        if ((st = eng_st_writer_add(w, p->name, p->fp8 ? ENG_DTYPE_F8_E4M3 : ENG_DTYPE_BF16, p->s.n_dims, p->s.shape))) goto fail;
        if (p->fp8) {
            char sname[QN_TENSOR_NAME_MAX];
            qn_tensor_scale_name(&p->s.id, sname, sizeof sname);
            if ((st = eng_st_writer_add(w, sname, ENG_DTYPE_F32, 2, p->scale_shape))) goto fail;
        }
    }
    if ((st = eng_st_writer_begin_data(w, false))) goto fail;
    for (size_t i = 0; i < n; i++) {
        const plan *p = &pl[i];
        if (p->shard != shard) continue;
        rng r;
        rng_seed(&r, seed, p->name);
        if ((st = p->fp8 ? write_fp8(w, p, &r, c, cfg) : write_plain(w, p, &r, c))) goto fail;
    }
    return eng_st_writer_finish(w);
fail:
    eng_st_writer_abort(w);
    return st;
}

eng_status qn_demo_write(const qn_demo_options *o, qn_demo_summary *summary)
{
    char *cfg_json = NULL, *path = NULL;
    qn_config cfg;
    qn_tensor_spec *list = NULL;
    size_t n = 0;
    plan *pl = NULL;
    writer_ctx c = {0};
    eng_progress prog;
    eng_buf idx;
    eng_buf_init(&idx);
    eng_status st;
    if (summary) memset(summary, 0, sizeof *summary);

    if (o->config_path) {
        if ((st = load_config(o->config_path, o->fp8, &cfg_json, &cfg, &list, &n))) goto out;
    } else if ((st = build_config(o->fp8, &cfg_json, &cfg, &list, &n))) {
        goto out;
    }
    const bool fp8 = o->config_path ? cfg.quant.fp8 : o->fp8;
    if ((st = mkdir_p(o->out_dir))) goto out;
    if ((st = write_file(o->out_dir, "config.json", cfg_json, strlen(cfg_json)))) goto out;
    if ((st = write_gen_config(o))) goto out;
    if (o->tokenizer_dir && (st = write_tokenizer(o->tokenizer_dir, o->out_dir))) goto out;

    /* plan: dtypes, sizes, shards (HF greedy fill in save order) */
    pl = eng_calloc(n, sizeof *pl);
    if (!pl) {
        st = eng_err_set(ENG_ERR_NOMEM, "out of memory");
        goto out;
    }
    uint64_t total = 0, shard_bytes = 0;
    int shard = 0;
    int64_t max_k = 0;
    for (size_t i = 0; i < n; i++) {
        plan *p = &pl[i];
        p->s = list[i];
        qn_tensor_name(&p->s.id, p->name, sizeof p->name);
        p->numel = 1;
        for (int d = 0; d < p->s.n_dims; d++) p->numel *= (uint64_t)p->s.shape[d];
        p->fp8 = fp8 && p->s.cls == QN_TENSOR_QUANTIZABLE && p->s.n_dims == 2;
        p->bytes = p->numel * (p->fp8 ? 1 : 2);
        if (p->fp8) {
            qn_spec_scale_shape(&cfg, p->s.shape, p->scale_shape);
            p->scale_bytes = (uint64_t)(p->scale_shape[0] * p->scale_shape[1]) * 4;
            if (p->s.shape[1] > max_k) max_k = p->s.shape[1];
        }
        uint64_t b = p->bytes + p->scale_bytes;
        if (o->max_shard_bytes && shard_bytes > 0 && shard_bytes + b > o->max_shard_bytes) {
            shard++;
            shard_bytes = 0;
        }
        p->shard = shard;
        shard_bytes += b;
        total += b;
        if (summary) {
            summary->n_tensors += p->fp8 ? 2 : 1;
            summary->n_params += p->numel;
        }
    }
    int n_shards = shard + 1;
    c.block_cap = (size_t)(cfg.quant.block_n > 0 ? cfg.quant.block_n : 128) * (size_t)(max_k > 0 ? max_k : 1);
    c.f = eng_malloc((c.block_cap > CHUNK ? c.block_cap : CHUNK) * sizeof *c.f);
    c.h = eng_malloc(CHUNK * sizeof *c.h);
    c.q = eng_malloc(c.block_cap);
    if (!c.f || !c.h || !c.q) {
        st = eng_err_set(ENG_ERR_NOMEM, "out of memory");
        goto out;
    }
    eng_progress_begin(&prog, "writing weights", total, true);
    if (!o->progress) prog.enabled = false;
    c.prog = &prog;

    eng_buf_printf(&idx, "{\n  \"metadata\": {\n    \"total_size\": %llu\n  },\n  \"weight_map\": {", (unsigned long long)total);
    bool first = true;
    for (int s = 0; s < n_shards; s++) {
        char fname[64];
        if (n_shards == 1 && !o->max_shard_bytes)
            snprintf(fname, sizeof fname, "model.safetensors");
        else
            snprintf(fname, sizeof fname, "model-%05d-of-%05d.safetensors", s + 1, n_shards);
        eng_free(path);
        if (!(path = eng_path_join(o->out_dir, fname))) {
            st = eng_err_set(ENG_ERR_NOMEM, "out of memory");
            goto out;
        }
        if ((st = write_shard(path, pl, n, s, o->seed, &cfg, &c))) goto out;
        for (size_t i = 0; i < n; i++) {
            if (pl[i].shard != s) continue;
            eng_buf_printf(&idx, "%s\n    \"%s\": \"%s\"", first ? "" : ",", pl[i].name, fname);
            first = false;
            if (pl[i].fp8) eng_buf_printf(&idx, ",\n    \"%s_scale_inv\": \"%s\"", pl[i].name, fname);
        }
    }
    eng_progress_end(&prog);
    eng_buf_puts(&idx, "\n  }\n}\n");
    if (idx.oom) {
        st = eng_err_set(ENG_ERR_NOMEM, "out of memory");
        goto out;
    }
    if (o->max_shard_bytes && (st = write_file(o->out_dir, "model.safetensors.index.json", idx.data, idx.len))) goto out;
    if (summary) {
        summary->n_bytes = total;
        summary->n_shards = n_shards;
        summary->fp8 = fp8;
        summary->n_layers = cfg.n_layers;
        summary->n_linear = cfg.n_linear_layers;
        summary->n_full = cfg.n_full_layers;
        summary->n_mtp = o->config_path ? (cfg.mtp_in_config ? cfg.n_mtp_layers : 0) : 1;
        summary->n_experts = cfg.n_experts;
        summary->top_k = cfg.n_experts_per_tok;
    }
out:
    eng_buf_free(&idx);
    eng_free(cfg_json);
    eng_free(path);
    eng_free(pl);
    eng_free(c.f);
    eng_free(c.h);
    eng_free(c.q);
    qn_spec_list_free(list);
    return st;
}
