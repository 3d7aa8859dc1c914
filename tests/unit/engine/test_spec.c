/* tests/unit/engine/test_spec.c - the expected tensor set and the validator: counts and parameter
 * totals of the real 80B configs (numbers from docs/qwen3-next.md §2, §7 and the manifests, not
 * from this code), names, shapes, FP8 scale shapes, TP checks, and qn_spec_check on sparse
 * checkpoints built here with one defect each (missing, unexpected, shape, dtype, scale). */
#include <check.h>

#include "model/demo.h"
#include "model/spec.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void load_fixture_config(const char *name, qn_config *c)
{
    const char *root = getenv("QNEXT_FIXTURES");
    ck_assert_msg(root != NULL, "QNEXT_FIXTURES is not set");
    char path[1024];
    snprintf(path, sizeof path, "%s/loader/%s", root, name);
    char *text;
    size_t n;
    ck_assert_int_eq(eng_file_read(path, 1 << 20, &text, &n), ENG_OK);
    ck_assert_int_eq(qn_config_parse(text, n, path, c), ENG_OK);
    eng_free(text);
}

static uint64_t list_params(const qn_tensor_spec *l, size_t n, int mtp /* -1 all, 0 main, 1 mtp */)
{
    uint64_t p = 0;
    for (size_t i = 0; i < n; i++) {
        if (mtp >= 0 && l[i].id.mtp != (mtp == 1)) continue;
        uint64_t e = 1;
        for (int d = 0; d < l[i].n_dims; d++) e *= (uint64_t)l[i].shape[d];
        p += e;
    }
    return p;
}

START_TEST(test_real_counts)
{
    qn_config c;
    load_fixture_config("config.instruct-bf16.json", &c);
    qn_tensor_spec *l;
    size_t n;
    ck_assert_int_eq(qn_spec_list(&c, 1, &l, &n), ENG_OK);
    ck_assert_uint_eq(n, 75944); /* manifest: 75,944 tensors */
    ck_assert_uint_eq(list_params(l, n, -1), 81324862720ull);
    ck_assert_uint_eq(list_params(l, n, 0), 79674391296ull); /* §7.1 main model */
    ck_assert_uint_eq(list_params(l, n, 1), 1650471424ull);  /* §7.1 MTP block */
    size_t n_mtp = 0, n_quant = 0;
    for (size_t i = 0; i < n; i++) {
        n_mtp += l[i].id.mtp;
        n_quant += l[i].cls == QN_TENSOR_QUANTIZABLE;
    }
    ck_assert_uint_eq(n_mtp, 1553);    /* README: all 1,553 mtp tensors */
    ck_assert_uint_eq(n_quant, 75535); /* FP8 manifest: 75,535 F8_E4M3 weights */
    ck_assert_uint_eq(n - n_quant, 409); /* and 409 BF16 tensors */
    /* FP8 scale elements: 4,921,664 */
    qn_config f;
    load_fixture_config("config.instruct-fp8.json", &f);
    uint64_t se = 0;
    for (size_t i = 0; i < n; i++) {
        if (l[i].cls != QN_TENSOR_QUANTIZABLE) continue;
        int64_t s[2];
        qn_spec_scale_shape(&f, l[i].shape, s);
        se += (uint64_t)(s[0] * s[1]);
    }
    ck_assert_uint_eq(se, 4921664);
    qn_spec_list_free(l);
    ck_assert_int_eq(qn_spec_list(&c, 0, &l, &n), ENG_OK);
    ck_assert_uint_eq(n, 75944 - 1553);
    qn_spec_list_free(l);
    qn_spec_list_free(NULL);
}
END_TEST

START_TEST(test_names_shapes)
{
    qn_config c;
    load_fixture_config("config.instruct-bf16.json", &c);
    char b[QN_TENSOR_NAME_MAX];
    struct {
        qn_tensor_id id;
        const char *name;
        int nd;
        int64_t s0, s1, s2;
    } cases[] = {
        {{QN_T_EMBED, -1, -1, false}, "model.embed_tokens.weight", 2, 151936, 2048, 0},
        {{QN_T_LM_HEAD, -1, -1, false}, "lm_head.weight", 2, 151936, 2048, 0},
        {{QN_T_FINAL_NORM, -1, -1, false}, "model.norm.weight", 1, 2048, 0, 0},
        {{QN_T_LIN_QKVZ, 0, -1, false}, "model.layers.0.linear_attn.in_proj_qkvz.weight", 2, 12288, 2048, 0},
        {{QN_T_LIN_BA, 1, -1, false}, "model.layers.1.linear_attn.in_proj_ba.weight", 2, 64, 2048, 0},
        {{QN_T_LIN_CONV, 2, -1, false}, "model.layers.2.linear_attn.conv1d.weight", 3, 8192, 1, 4},
        {{QN_T_LIN_DT_BIAS, 0, -1, false}, "model.layers.0.linear_attn.dt_bias", 1, 32, 0, 0},
        {{QN_T_LIN_A_LOG, 0, -1, false}, "model.layers.0.linear_attn.A_log", 1, 32, 0, 0},
        {{QN_T_LIN_NORM, 0, -1, false}, "model.layers.0.linear_attn.norm.weight", 1, 128, 0, 0},
        {{QN_T_LIN_OUT, 0, -1, false}, "model.layers.0.linear_attn.out_proj.weight", 2, 2048, 4096, 0},
        {{QN_T_ATTN_Q, 3, -1, false}, "model.layers.3.self_attn.q_proj.weight", 2, 8192, 2048, 0},
        {{QN_T_ATTN_K, 7, -1, false}, "model.layers.7.self_attn.k_proj.weight", 2, 512, 2048, 0},
        {{QN_T_ATTN_O, 47, -1, false}, "model.layers.47.self_attn.o_proj.weight", 2, 2048, 4096, 0},
        {{QN_T_ATTN_Q_NORM, 3, -1, false}, "model.layers.3.self_attn.q_norm.weight", 1, 256, 0, 0},
        {{QN_T_MOE_ROUTER, 5, -1, false}, "model.layers.5.mlp.gate.weight", 2, 512, 2048, 0},
        {{QN_T_EXPERT_DOWN, 5, 511, false}, "model.layers.5.mlp.experts.511.down_proj.weight", 2, 2048, 512, 0},
        {{QN_T_EXPERT_GATE, 0, 0, true}, "mtp.layers.0.mlp.experts.0.gate_proj.weight", 2, 512, 2048, 0},
        {{QN_T_SHARED_UP, 9, -1, false}, "model.layers.9.mlp.shared_expert.up_proj.weight", 2, 512, 2048, 0},
        {{QN_T_SHARED_EXPERT_GATE, 9, -1, false}, "model.layers.9.mlp.shared_expert_gate.weight", 2, 1, 2048, 0},
        {{QN_T_MTP_FC, -1, -1, true}, "mtp.fc.weight", 2, 2048, 4096, 0},
        {{QN_T_MTP_NORM_EMB, -1, -1, true}, "mtp.pre_fc_norm_embedding.weight", 1, 2048, 0, 0},
        {{QN_T_MTP_NORM, -1, -1, true}, "mtp.norm.weight", 1, 2048, 0, 0},
        {{QN_T_INPUT_NORM, 0, -1, true}, "mtp.layers.0.input_layernorm.weight", 1, 2048, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ck_assert(qn_tensor_name(&cases[i].id, b, sizeof b));
        ck_assert_str_eq(b, cases[i].name);
        int nd;
        int64_t s[3];
        qn_spec_shape(&c, cases[i].id.kind, &nd, s);
        ck_assert_int_eq(nd, cases[i].nd);
        ck_assert_int_eq(s[0], cases[i].s0);
        if (nd > 1) ck_assert_int_eq(s[1], cases[i].s1);
        if (nd > 2) ck_assert_int_eq(s[2], cases[i].s2);
    }
    qn_tensor_id id = qn_tid_expert(QN_T_EXPERT_UP, 2, 3);
    ck_assert(qn_tensor_scale_name(&id, b, sizeof b));
    ck_assert_str_eq(b, "model.layers.2.mlp.experts.3.up_proj.weight_scale_inv");
    /* malformed ids and short buffers */
    qn_tensor_id bad[] = {{QN_T_EXPERT_UP, 2, -1, false}, {QN_T_ATTN_Q, -1, -1, false}, {QN_T_EMBED, 0, -1, false},
                          {QN_T_MTP_FC, -1, -1, false},   {QN_T_ATTN_Q, 1, 4, false},   {QN_T_COUNT, 0, -1, false}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert(!qn_tensor_name(&bad[i], b, sizeof b));
        ck_assert_str_eq(b, "");
    }
    id = qn_tid(QN_T_ATTN_Q, 3);
    ck_assert(!qn_tensor_name(&id, b, 10));
    ck_assert(!qn_tensor_scale_name(&id, b, 40));
    /* scale shapes of §5 */
    qn_config f;
    load_fixture_config("config.instruct-fp8.json", &f);
    struct {
        int64_t w[2], s[2];
    } sc[] = {{{12288, 2048}, {96, 16}}, {{2048, 4096}, {16, 32}}, {{8192, 2048}, {64, 16}}, {{512, 2048}, {4, 16}},
              {{2048, 512}, {16, 4}},    {{130, 129}, {2, 2}}};
    for (size_t i = 0; i < sizeof sc / sizeof sc[0]; i++) {
        int64_t s[2];
        qn_spec_scale_shape(&f, sc[i].w, s);
        ck_assert_int_eq(s[0], sc[i].s[0]);
        ck_assert_int_eq(s[1], sc[i].s[1]);
    }
    ck_assert_int_eq(qn_tensor_kind_class(QN_T_LIN_BA), QN_TENSOR_PLAIN);
    ck_assert_int_eq(qn_tensor_kind_class(QN_T_MTP_FC), QN_TENSOR_PLAIN);
    ck_assert_int_eq(qn_tensor_kind_class(QN_T_LM_HEAD), QN_TENSOR_PLAIN);
    ck_assert_int_eq(qn_tensor_kind_class(QN_T_SHARED_DOWN), QN_TENSOR_QUANTIZABLE);
    ck_assert(qn_tensor_kind_is_layer(QN_T_EXPERT_UP));
    ck_assert(!qn_tensor_kind_is_layer(QN_T_MTP_FC));
    ck_assert_str_eq(qn_tensor_kind_str(QN_T_LIN_QKVZ), "lin_qkvz");
}
END_TEST

START_TEST(test_tp)
{
    qn_config c;
    load_fixture_config("config.instruct-bf16.json", &c);
    int ok[] = {1, 2, 4, 8, 16};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) ck_assert_int_eq(qn_spec_check_tp(&c, ok[i]), ENG_OK);
    ck_assert_int_eq(qn_spec_check_tp(&c, 3), ENG_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(eng_err_last(), "num_attention_heads (16)"));
    ck_assert_int_eq(qn_spec_check_tp(&c, 32), ENG_ERR_INVALID);
    ck_assert_int_eq(qn_spec_check_tp(&c, 0), ENG_ERR_INVALID);
    c.n_kv_heads = 4; /* 4 kv heads, tp 8 is a multiple: replicated; tp 6 would not divide 16 anyway */
    ck_assert_int_eq(qn_spec_check_tp(&c, 8), ENG_OK);
    c.n_kv_heads = 16;
    c.n_heads = 48;
    ck_assert_int_eq(qn_spec_check_tp(&c, 3), ENG_ERR_INVALID); /* linear heads 16 % 3 */
    ck_assert_ptr_nonnull(strstr(eng_err_last(), "linear_num_key_heads"));
}
END_TEST

/* ==== synthetic checkpoints =================================================================== */

static char dir[64];

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/qn_spec_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void)
{
    DIR *dp = opendir(dir);
    struct dirent *de;
    while (dp && (de = readdir(dp))) {
        if (de->d_name[0] == '.') continue;
        char p[512];
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        unlink(p);
    }
    if (dp) closedir(dp);
    rmdir(dir);
}

typedef enum mutation { MUT_NONE, MUT_DROP, MUT_SHAPE, MUT_DTYPE, MUT_EXTRA, MUT_DROP_SCALE, MUT_SCALE_SHAPE, MUT_SCALE_DTYPE,
                        MUT_NORM_FP8, MUT_NO_MTP } mutation;

/* Writes a sparse checkpoint of the demo architecture (fp8: quantizable weights F8 + scales),
 * applying one mutation to `target`; returns the parsed config. */
static void build(bool fp8, mutation mut, const char *target, qn_config *cfg)
{
    char *json;
    ck_assert_int_eq(qn_demo_config_json(fp8, &json), ENG_OK);
    ck_assert_int_eq(qn_config_parse(json, strlen(json), "config.json", cfg), ENG_OK);
    eng_free(json);
    qn_tensor_spec *l;
    size_t n;
    ck_assert_int_eq(qn_spec_list(cfg, mut == MUT_NO_MTP ? 0 : 1, &l, &n), ENG_OK);
    char path[128];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    eng_st_writer *w;
    ck_assert_int_eq(eng_st_writer_create(path, &w), ENG_OK);
    for (size_t i = 0; i < n; i++) {
        char name[QN_TENSOR_NAME_MAX], sname[QN_TENSOR_NAME_MAX];
        qn_tensor_name(&l[i].id, name, sizeof name);
        qn_tensor_scale_name(&l[i].id, sname, sizeof sname);
        bool hit = target && !strcmp(name, target);
        int64_t shape[3] = {l[i].shape[0], l[i].shape[1], l[i].shape[2]};
        eng_dtype dt = ENG_DTYPE_BF16;
        bool q = fp8 && l[i].cls == QN_TENSOR_QUANTIZABLE;
        if (q) dt = ENG_DTYPE_F8_E4M3;
        if (hit && mut == MUT_DROP) continue;
        if (hit && mut == MUT_SHAPE) shape[0] += 1;
        if (hit && mut == MUT_DTYPE) dt = ENG_DTYPE_I32;
        if (hit && mut == MUT_NORM_FP8) dt = ENG_DTYPE_F8_E4M3;
        ck_assert_int_eq(eng_st_writer_add(w, name, dt, l[i].n_dims, shape), ENG_OK);
        if (q && !(hit && mut == MUT_DROP_SCALE)) {
            int64_t s[2];
            qn_spec_scale_shape(cfg, shape, s);
            if (hit && mut == MUT_SCALE_SHAPE) s[1] += 1;
            ck_assert_int_eq(eng_st_writer_add(w, sname, hit && mut == MUT_SCALE_DTYPE ? ENG_DTYPE_BF16 : ENG_DTYPE_F32, 2, s),
                             ENG_OK);
        }
    }
    if (mut == MUT_EXTRA) {
        int64_t s[1] = {7};
        ck_assert_int_eq(eng_st_writer_add(w, target, ENG_DTYPE_F32, 1, s), ENG_OK);
    }
    ck_assert_int_eq(eng_st_writer_begin_data(w, true), ENG_OK);
    ck_assert_int_eq(eng_st_writer_finish(w), ENG_OK);
    qn_spec_list_free(l);
}

static void check(const qn_config *cfg, qn_spec_report *r)
{
    eng_st_model *m;
    ck_assert_int_eq(eng_st_open(dir, false, &m), ENG_OK);
    ck_assert_int_eq(qn_spec_check(cfg, m, r), ENG_OK);
    eng_st_close(m);
}

/* Expects exactly one problem, of `kind`, naming `name`, with `frag` in its detail. */
static void expect_one(mutation mut, bool fp8, const char *target, qn_problem_kind kind, const char *name, const char *frag)
{
    qn_config cfg;
    qn_spec_report r;
    build(fp8, mut, target, &cfg);
    check(&cfg, &r);
    ck_assert_msg(r.n_problems_total == 1, "mutation %d on %s: %zu problems (first: %s %s)", mut, target, r.n_problems_total,
                  r.n_problems ? r.problems[0].name : "-", r.n_problems ? r.problems[0].detail : "-");
    ck_assert_int_eq(r.problems[0].kind, kind);
    ck_assert_str_eq(r.problems[0].name, name);
    ck_assert_msg(strstr(r.problems[0].detail, frag), "detail '%s' lacks '%s'", r.problems[0].detail, frag);
    qn_spec_report_free(&r);
}

START_TEST(test_check_valid)
{
    for (int fp8 = 0; fp8 < 2; fp8++) {
        qn_config cfg;
        qn_spec_report r;
        build(fp8, MUT_NONE, NULL, &cfg);
        check(&cfg, &r);
        ck_assert_msg(r.n_problems_total == 0, "fp8=%d: %s: %s", fp8, r.problems[0].name, r.problems[0].detail);
        ck_assert_int_eq(r.n_mtp_layers, 1);
        ck_assert_uint_eq(r.n_expected, 346);
        /* demo architecture by hand: embed + lm_head 2 x 151936 x 256 */
        uint64_t emb = 2ull * 151936 * 256;
        uint64_t moe = 8 * 256 + 8ull * 3 * 128 * 256 + 3 * 128 * 256 + 256; /* router, experts, shared, shared gate */
        uint64_t gdn = 768 * 256 + 8 * 256 + 512 * 4 + 4 + 4 + 64 + 256 * 256;
        uint64_t att = 512 * 256 + 2 * 128 * 256 + 256 * 256 + 64 + 64;
        uint64_t main = emb + 256 + 8 * (2 * 256 + moe) + 6 * gdn + 2 * att;
        uint64_t mtp = 256 * 512 + 3 * 256 + 2 * 256 + att + moe;
        ck_assert_uint_eq(r.n_params_main, main);
        ck_assert_uint_eq(r.n_params_mtp, mtp);
        ck_assert_uint_eq(r.n_params, main + mtp);
        ck_assert_uint_eq(r.n_params_active, main - 8 * 6ull * 3 * 128 * 256); /* 2 of 8 experts active */
        if (fp8) {
            ck_assert_uint_eq(r.n_scales, 267);
            ck_assert_uint_eq(r.dtype_tensors[ENG_DTYPE_F8_E4M3], 267);
            ck_assert_uint_eq(r.dtype_tensors[ENG_DTYPE_F32], 267);
            ck_assert_uint_eq(r.n_tensors, 346 + 267);
        } else {
            ck_assert_uint_eq(r.n_bytes, 2 * (main + mtp));
            ck_assert_uint_eq(r.dtype_bytes[ENG_DTYPE_BF16], 2 * (main + mtp));
        }
        ck_assert_uint_eq(r.n_bytes_split + r.n_bytes_replicated, r.n_bytes);
        qn_spec_report_free(&r);
    }
    /* without the optional MTP block */
    qn_config cfg;
    qn_spec_report r;
    build(false, MUT_NO_MTP, NULL, &cfg);
    check(&cfg, &r);
    ck_assert_uint_eq(r.n_problems_total, 0);
    ck_assert_int_eq(r.n_mtp_layers, 0);
    qn_spec_report_free(&r);
    qn_spec_report_free(NULL);
}
END_TEST

START_TEST(test_check_problems)
{
    expect_one(MUT_DROP, false, "model.layers.3.self_attn.q_proj.weight", QN_PROBLEM_MISSING, "model.layers.3.self_attn.q_proj.weight",
               "[512, 256]");
    expect_one(MUT_DROP, false, "mtp.layers.0.mlp.experts.7.down_proj.weight", QN_PROBLEM_MISSING,
               "mtp.layers.0.mlp.experts.7.down_proj.weight", "missing");
    expect_one(MUT_SHAPE, false, "model.layers.0.linear_attn.in_proj_qkvz.weight", QN_PROBLEM_SHAPE,
               "model.layers.0.linear_attn.in_proj_qkvz.weight", "shape [769, 256] but config.json gives [768, 256]");
    expect_one(MUT_DTYPE, false, "model.norm.weight", QN_PROBLEM_DTYPE, "model.norm.weight", "I32");
    expect_one(MUT_EXTRA, false, "model.layers.99.mlp.gate.weight", QN_PROBLEM_UNEXPECTED, "model.layers.99.mlp.gate.weight",
               "not part of");
    expect_one(MUT_NORM_FP8, true, "model.layers.2.linear_attn.in_proj_ba.weight", QN_PROBLEM_DTYPE,
               "model.layers.2.linear_attn.in_proj_ba.weight", "never quantized");
    expect_one(MUT_DROP_SCALE, true, "model.layers.4.mlp.experts.5.up_proj.weight", QN_PROBLEM_SCALE,
               "model.layers.4.mlp.experts.5.up_proj.weight", "without its scale");
    expect_one(MUT_SCALE_SHAPE, true, "model.layers.7.self_attn.o_proj.weight", QN_PROBLEM_SCALE,
               "model.layers.7.self_attn.o_proj.weight", "expected [2, 2]");
}
END_TEST

START_TEST(test_check_more)
{
    qn_config cfg;
    qn_spec_report r;
    /* scale of the wrong dtype */
    build(true, MUT_SCALE_DTYPE, "model.layers.1.linear_attn.out_proj.weight", &cfg);
    check(&cfg, &r);
    ck_assert_uint_eq(r.n_problems_total, 1);
    ck_assert_int_eq(r.problems[0].kind, QN_PROBLEM_SCALE);
    ck_assert_ptr_nonnull(strstr(r.problems[0].detail, "BF16, expected F32"));
    qn_spec_report_free(&r);
    /* an FP8 checkpoint read with a config lacking quantization_config: every F8 weight is a dtype
     * problem, and counting continues past the stored limit */
    build(true, MUT_NONE, NULL, &cfg);
    qn_config plain;
    char *json;
    ck_assert_int_eq(qn_demo_config_json(false, &json), ENG_OK);
    ck_assert_int_eq(qn_config_parse(json, strlen(json), "config.json", &plain), ENG_OK);
    eng_free(json);
    check(&plain, &r);
    ck_assert_uint_eq(r.n_problems_total, 267);
    ck_assert_int_eq(r.problems[0].kind, QN_PROBLEM_DTYPE);
    ck_assert_ptr_nonnull(strstr(r.problems[0].detail, "no fp8 quantization_config"));
    qn_spec_report_free(&r);
    /* a config with 48 layers: everything of layers 8..47 missing (> QN_SPEC_MAX_PROBLEMS) */
    plain.n_layers = 48;
    for (int l = 8; l < 48; l++) plain.layer_types[l] = plain.layer_types[l % 8];
    check(&plain, &r);
    ck_assert_uint_eq(r.n_problems, QN_SPEC_MAX_PROBLEMS);
    ck_assert_uint_gt(r.n_problems_total, QN_SPEC_MAX_PROBLEMS);
    qn_spec_report_free(&r);

    /* qn_spec_require: the loader's lookup */
    eng_st_model *m;
    ck_assert_int_eq(eng_st_open(dir, false, &m), ENG_OK);
    const eng_st_tensor *w, *s;
    qn_tensor_id id = qn_tid_expert(QN_T_EXPERT_DOWN, 2, 7);
    ck_assert_int_eq(qn_spec_require(&cfg, m, &id, &w, &s), ENG_OK);
    ck_assert_str_eq(w->name, "model.layers.2.mlp.experts.7.down_proj.weight");
    ck_assert_ptr_nonnull(s);
    ck_assert_str_eq(s->name, "model.layers.2.mlp.experts.7.down_proj.weight_scale_inv");
    id = qn_tid(QN_T_LIN_A_LOG, 0);
    ck_assert_int_eq(qn_spec_require(&cfg, m, &id, &w, &s), ENG_OK);
    ck_assert_ptr_null(s);
    ck_assert_ptr_eq(qn_spec_find(m, &id), w);
    id = qn_tid(QN_T_ATTN_Q, 0); /* layer 0 is linear attention */
    ck_assert_int_eq(qn_spec_require(&cfg, m, &id, &w, &s), ENG_ERR_NOT_FOUND);
    ck_assert_ptr_nonnull(strstr(eng_err_last(), "model.layers.0.self_attn.q_proj.weight"));
    id = qn_tid(QN_T_ATTN_Q, 3);
    ck_assert_int_eq(qn_spec_require(&plain, m, &id, &w, &s), ENG_ERR_FORMAT); /* F8 without fp8 config */
    ck_assert_ptr_nonnull(strstr(eng_err_last(), "q_proj"));
    ck_assert_int_eq(qn_spec_detect_mtp(&cfg, m), 1);
    qn_config c2 = cfg;
    c2.mtp_in_config = true;
    c2.n_mtp_layers = 0;
    ck_assert_int_eq(qn_spec_detect_mtp(&c2, m), 0);
    qn_spec_resolve_mtp(&cfg, m);
    ck_assert_int_eq(cfg.n_mtp_layers, 1);
    eng_st_close(m);
}
END_TEST

START_TEST(test_check_alloc_failures)
{
    qn_config cfg;
    build(true, MUT_DROP, "model.norm.weight", &cfg);
    eng_st_model *m;
    ck_assert_int_eq(eng_st_open(dir, false, &m), ENG_OK);
    for (long k = 0; k < 20; k++) {
        qn_spec_report r;
        eng_alloc_fail_after(k);
        eng_status st = qn_spec_check(&cfg, m, &r);
        eng_alloc_fail_after(-1);
        ck_assert_msg(st == ENG_OK || st == ENG_ERR_NOMEM, "k=%ld: %s", k, eng_status_str(st));
        if (st == ENG_OK) ck_assert_uint_eq(r.n_problems_total, 1);
        qn_spec_report_free(&r);
    }
    eng_st_close(m);
}
END_TEST

static Suite *spec_suite(void)
{
    Suite *s = suite_create("spec");
    TCase *tc = tcase_create("enumeration");
    tcase_add_test(tc, test_real_counts);
    tcase_add_test(tc, test_names_shapes);
    tcase_add_test(tc, test_tp);
    suite_add_tcase(s, tc);
    tc = tcase_create("check");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_check_valid);
    tcase_add_test(tc, test_check_problems);
    tcase_add_test(tc, test_check_more);
    tcase_add_test(tc, test_check_alloc_failures);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(spec_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
