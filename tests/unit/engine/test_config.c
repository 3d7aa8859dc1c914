/* tests/unit/engine/test_config.c - config.json / generation_config.json parsing: the real
 * Qwen3-Next configs (4.x raw file, FP8 with quantization_config, transformers 5 re-serialisation),
 * transformers' defaults, YaRN, and every validation error naming the field. Expected values come
 * from docs/qwen3-next.md §1 and transformers' configuration_qwen3_next.py, not from this code. */
#include <check.h>

#include "model/config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *fixture(const char *name, size_t *len)
{
    const char *root = getenv("QNEXT_FIXTURES");
    ck_assert_msg(root != NULL, "QNEXT_FIXTURES is not set");
    char path[1024];
    snprintf(path, sizeof path, "%s/loader/%s", root, name);
    char *text;
    ck_assert_int_eq(eng_file_read(path, 1 << 20, &text, len), ENG_OK);
    return text;
}

static void parse_ok(const char *json, qn_config *c)
{
    eng_status st = qn_config_parse(json, strlen(json), "config.json", c);
    ck_assert_msg(st == ENG_OK, "%s: %s", eng_status_str(st), eng_err_last());
}

static void parse_fail(const char *json, eng_status want, const char *frag)
{
    qn_config c;
    eng_err_clear();
    eng_status st = qn_config_parse(json, strlen(json), "dir/config.json", &c);
    ck_assert_msg(st == want, "%s: got %s (%s), wanted %s", json, eng_status_str(st), eng_err_last(), eng_status_str(want));
    ck_assert_msg(strstr(eng_err_last(), "dir/config.json"), "detail '%s' does not name the file", eng_err_last());
    if (frag) ck_assert_msg(strstr(eng_err_last(), frag), "detail '%s' lacks '%s'", eng_err_last(), frag);
}

static void check_80b(const qn_config *c)
{
    ck_assert_str_eq(c->model_type, "qwen3_next");
    ck_assert_int_eq(c->hidden_size, 2048);
    ck_assert_int_eq(c->n_layers, 48);
    ck_assert_int_eq(c->vocab_size, 151936);
    ck_assert_int_eq(c->max_position_embeddings, 262144);
    ck_assert_double_eq_tol(c->rms_norm_eps, 1e-6, 1e-12);
    ck_assert(!c->tie_word_embeddings);
    ck_assert_int_eq(c->n_heads, 16);
    ck_assert_int_eq(c->n_kv_heads, 2);
    ck_assert_int_eq(c->head_dim, 256);
    ck_assert_int_eq(c->rotary_dim, 64);
    ck_assert_double_eq(c->rope_theta, 1e7);
    ck_assert(!c->rope_scaling.enabled);
    ck_assert(!c->attention_bias);
    ck_assert_int_eq(c->lin_n_k_heads, 16);
    ck_assert_int_eq(c->lin_n_v_heads, 32);
    ck_assert_int_eq(c->lin_k_head_dim, 128);
    ck_assert_int_eq(c->lin_v_head_dim, 128);
    ck_assert_int_eq(c->lin_conv_kernel, 4);
    ck_assert_int_eq(qn_lin_key_dim(c), 2048);
    ck_assert_int_eq(qn_lin_value_dim(c), 4096);
    ck_assert_int_eq(qn_lin_conv_dim(c), 8192);
    ck_assert_int_eq(c->n_experts, 512);
    ck_assert_int_eq(c->n_experts_per_tok, 10);
    ck_assert_int_eq(c->moe_intermediate, 512);
    ck_assert_int_eq(c->shared_intermediate, 512);
    ck_assert_int_eq(c->intermediate_size, 5120);
    ck_assert(c->norm_topk_prob);
    ck_assert_int_eq(c->decoder_sparse_step, 1);
    ck_assert_int_eq(c->n_mlp_only_layers, 0);
    ck_assert_int_eq(c->n_full_layers, 12);
    ck_assert_int_eq(c->n_linear_layers, 36);
    for (int l = 0; l < 48; l++) {
        ck_assert_int_eq(c->layer_types[l], (l % 4 == 3) ? QN_LAYER_FULL : QN_LAYER_LINEAR);
        ck_assert(qn_config_layer_is_moe(c, l));
    }
    ck_assert_int_eq(c->bos_token_id, 151643);
    ck_assert_int_eq(c->n_eos_token_ids, 1);
    ck_assert_int_eq(c->eos_token_ids[0], 151645);
    ck_assert_int_eq(c->n_mtp_layers, 0);
    ck_assert(!c->mtp_in_config);
    ck_assert_str_eq(c->torch_dtype, "bfloat16");
}

START_TEST(test_real_bf16)
{
    size_t n;
    char *j = fixture("config.instruct-bf16.json", &n);
    qn_config c;
    ck_assert_int_eq(qn_config_parse(j, n, "config.json", &c), ENG_OK);
    check_80b(&c);
    ck_assert(!c.quant.fp8);
    eng_free(j);
}
END_TEST

START_TEST(test_real_fp8)
{
    size_t n;
    char *j = fixture("config.instruct-fp8.json", &n);
    qn_config c;
    ck_assert_int_eq(qn_config_parse(j, n, "config.json", &c), ENG_OK);
    check_80b(&c);
    ck_assert(c.quant.fp8);
    ck_assert_int_eq(c.quant.block_n, 128);
    ck_assert_int_eq(c.quant.block_k, 128);
    ck_assert(c.quant.dynamic_activations);
    ck_assert_int_eq(c.quant.n_modules_not_converted, 407);
    eng_free(j);
}
END_TEST

/* transformers 5 writes rope_parameters, dtype and an explicit layer_types list. */
START_TEST(test_transformers5_dump)
{
    size_t n;
    char *j = fixture("config.instruct-fp8.transformers5.json", &n);
    qn_config c;
    ck_assert_int_eq(qn_config_parse(j, n, "config.json", &c), ENG_OK);
    check_80b(&c);
    ck_assert(c.quant.fp8);
    ck_assert_int_eq(c.pad_token_id, -1);
    eng_free(j);
}
END_TEST

/* Defaults of transformers' Qwen3NextConfig (5.x). */
START_TEST(test_defaults)
{
    qn_config c;
    parse_ok("{\"model_type\": \"qwen3_next\"}", &c);
    ck_assert_int_eq(c.vocab_size, 151936);
    ck_assert_int_eq(c.hidden_size, 2048);
    ck_assert_int_eq(c.intermediate_size, 5632);
    ck_assert_int_eq(c.n_layers, 48);
    ck_assert_int_eq(c.max_position_embeddings, 32768);
    ck_assert_double_eq(c.rope_theta, 10000.0);
    ck_assert_double_eq(c.partial_rotary_factor, 0.25);
    ck_assert_int_eq(c.rotary_dim, 64);
    ck_assert_int_eq(c.full_attention_interval, 4);
    ck_assert_int_eq(c.n_full_layers, 12);
    ck_assert_int_eq(c.layer_types[3], QN_LAYER_FULL);
    ck_assert_int_eq(c.n_experts, 512);
    ck_assert_int_eq(c.n_experts_per_tok, 10);
    ck_assert_int_eq(c.bos_token_id, -1);
    ck_assert_int_eq(c.n_eos_token_ids, 0);
    ck_assert_str_eq(c.torch_dtype, "");
}
END_TEST

START_TEST(test_variants)
{
    qn_config c;
    /* explicit layer_types override the interval */
    parse_ok("{\"model_type\": \"qwen3_next\", \"num_hidden_layers\": 3, \"full_attention_interval\": 2,"
             " \"layer_types\": [\"full_attention\", \"linear_attention\", \"full_attention\"]}",
             &c);
    ck_assert_int_eq(c.n_full_layers, 2);
    ck_assert_int_eq(c.layer_types[1], QN_LAYER_LINEAR);
    /* interval 2 */
    parse_ok("{\"model_type\": \"qwen3_next\", \"num_hidden_layers\": 6, \"full_attention_interval\": 2}", &c);
    ck_assert_int_eq(c.n_full_layers, 3);
    ck_assert_int_eq(c.layer_types[1], QN_LAYER_FULL);
    ck_assert_int_eq(c.layer_types[2], QN_LAYER_LINEAR);
    /* eos as a list, dense layers */
    parse_ok("{\"model_type\": \"qwen3_next\", \"num_hidden_layers\": 4, \"eos_token_id\": [151645, 151643],"
             " \"mlp_only_layers\": [0, 2], \"decoder_sparse_step\": 1, \"num_nextn_predict_layers\": 2}",
             &c);
    ck_assert_int_eq(c.n_eos_token_ids, 2);
    ck_assert_int_eq(c.eos_token_ids[1], 151643);
    ck_assert(!qn_config_layer_is_moe(&c, 0));
    ck_assert(qn_config_layer_is_moe(&c, 1));
    ck_assert(!qn_config_layer_is_moe(&c, 2));
    ck_assert_int_eq(c.n_mtp_layers, 2);
    ck_assert(c.mtp_in_config);
    parse_ok("{\"model_type\": \"qwen3_next\", \"num_hidden_layers\": 4, \"decoder_sparse_step\": 2}", &c);
    ck_assert(!qn_config_layer_is_moe(&c, 0));
    ck_assert(qn_config_layer_is_moe(&c, 1));
    /* YaRN (README recipe): attention factor 0.1 ln(4) + 1 */
    parse_ok("{\"model_type\": \"qwen3_next\", \"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4.0,"
             " \"original_max_position_embeddings\": 262144}}",
             &c);
    ck_assert(c.rope_scaling.enabled);
    ck_assert_double_eq(c.rope_scaling.factor, 4.0);
    ck_assert_int_eq(c.rope_scaling.original_max_position_embeddings, 262144);
    ck_assert_double_eq_tol(c.rope_scaling.attention_factor, 0.1 * log(4.0) + 1.0, 1e-12);
    ck_assert_double_eq(c.rope_scaling.beta_fast, 32.0);
    ck_assert_double_eq(c.rope_scaling.beta_slow, 1.0);
    /* legacy "type" key; rope_scaling null; rope_parameters carrying theta and the rotary factor */
    parse_ok("{\"model_type\": \"qwen3_next\", \"rope_scaling\": {\"type\": \"yarn\", \"factor\": 2}}", &c);
    ck_assert(c.rope_scaling.enabled);
    ck_assert_int_eq(c.rope_scaling.original_max_position_embeddings, 32768);
    parse_ok("{\"model_type\": \"qwen3_next\", \"rope_scaling\": null, \"rope_theta\": 5000}", &c);
    ck_assert(!c.rope_scaling.enabled);
    ck_assert_double_eq(c.rope_theta, 5000.0);
    parse_ok("{\"model_type\": \"qwen3_next\", \"rope_theta\": 5, \"rope_parameters\": {\"rope_type\": \"default\","
             " \"rope_theta\": 1000000, \"partial_rotary_factor\": 0.5}}",
             &c);
    ck_assert_double_eq(c.rope_theta, 1e6);
    ck_assert_int_eq(c.rotary_dim, 128);
    /* integral floats are accepted as integers */
    parse_ok("{\"model_type\": \"qwen3_next\", \"hidden_size\": 1024.0}", &c);
    ck_assert_int_eq(c.hidden_size, 1024);
}
END_TEST

START_TEST(test_errors)
{
    parse_fail("", ENG_ERR_FORMAT, "malformed JSON");
    parse_fail("{\"model_type\": \"qwen3_next\",}", ENG_ERR_FORMAT, "malformed JSON");
    parse_fail("[1]", ENG_ERR_FORMAT, "not a JSON object");
    parse_fail("{}", ENG_ERR_FORMAT, "model_type");
    parse_fail("{\"model_type\": \"llama\"}", ENG_ERR_UNSUPPORTED, "model_type");
    parse_fail("{\"model_type\": 5}", ENG_ERR_FORMAT, "model_type");
    parse_fail("{\"model_type\": \"qwen3_next\", \"model_type\": \"llama\"}", ENG_ERR_FORMAT, "twice");
    parse_fail("{\"model_type\": \"qwen3_next\", \"hidden_size\": 0}", ENG_ERR_FORMAT, "hidden_size");
    parse_fail("{\"model_type\": \"qwen3_next\", \"hidden_size\": -4}", ENG_ERR_FORMAT, "hidden_size");
    parse_fail("{\"model_type\": \"qwen3_next\", \"hidden_size\": \"2048\"}", ENG_ERR_FORMAT, "hidden_size");
    parse_fail("{\"model_type\": \"qwen3_next\", \"hidden_size\": 2048.5}", ENG_ERR_FORMAT, "hidden_size");
    parse_fail("{\"model_type\": \"qwen3_next\", \"hidden_size\": 1e12}", ENG_ERR_FORMAT, "hidden_size");
    parse_fail("{\"model_type\": \"qwen3_next\", \"vocab_size\": 1e300}", ENG_ERR_FORMAT, "vocab_size");
    parse_fail("{\"model_type\": \"qwen3_next\", \"num_hidden_layers\": 5000}", ENG_ERR_FORMAT, "num_hidden_layers");
    parse_fail("{\"model_type\": \"qwen3_next\", \"num_attention_heads\": 16, \"num_key_value_heads\": 3}", ENG_ERR_FORMAT,
               "num_key_value_heads");
    parse_fail("{\"model_type\": \"qwen3_next\", \"linear_num_value_heads\": 24, \"linear_num_key_heads\": 16}", ENG_ERR_FORMAT,
               "linear_num_value_heads");
    parse_fail("{\"model_type\": \"qwen3_next\", \"num_experts\": 8, \"num_experts_per_tok\": 9}", ENG_ERR_FORMAT,
               "num_experts_per_tok");
    parse_fail("{\"model_type\": \"qwen3_next\", \"num_experts_per_tok\": 0}", ENG_ERR_FORMAT, "num_experts_per_tok");
    parse_fail("{\"model_type\": \"qwen3_next\", \"num_hidden_layers\": 3, \"layer_types\": [\"full_attention\"]}", ENG_ERR_FORMAT,
               "layer_types");
    parse_fail("{\"model_type\": \"qwen3_next\", \"num_hidden_layers\": 1, \"layer_types\": [\"sliding_attention\"]}",
               ENG_ERR_FORMAT, "layer_types");
    parse_fail("{\"model_type\": \"qwen3_next\", \"full_attention_interval\": 0}", ENG_ERR_FORMAT, "full_attention_interval");
    parse_fail("{\"model_type\": \"qwen3_next\", \"mlp_only_layers\": [48]}", ENG_ERR_FORMAT, "mlp_only_layers");
    parse_fail("{\"model_type\": \"qwen3_next\", \"mlp_only_layers\": [0], \"intermediate_size\": 0}", ENG_ERR_FORMAT,
               "intermediate_size");
    parse_fail("{\"model_type\": \"qwen3_next\", \"hidden_act\": \"gelu\"}", ENG_ERR_UNSUPPORTED, "hidden_act");
    parse_fail("{\"model_type\": \"qwen3_next\", \"eos_token_id\": 151936}", ENG_ERR_FORMAT, "eos_token_id");
    parse_fail("{\"model_type\": \"qwen3_next\", \"eos_token_id\": [1, \"x\"]}", ENG_ERR_FORMAT, "eos_token_id");
    parse_fail("{\"model_type\": \"qwen3_next\", \"eos_token_id\": [1,2,3,4,5,6,7,8,9]}", ENG_ERR_FORMAT, "eos_token_id");
    parse_fail("{\"model_type\": \"qwen3_next\", \"bos_token_id\": -1}", ENG_ERR_FORMAT, "bos_token_id");
    parse_fail("{\"model_type\": \"qwen3_next\", \"rms_norm_eps\": 0}", ENG_ERR_FORMAT, "rms_norm_eps");
    parse_fail("{\"model_type\": \"qwen3_next\", \"partial_rotary_factor\": 0.005}", ENG_ERR_FORMAT, "partial_rotary_factor");
    parse_fail("{\"model_type\": \"qwen3_next\", \"partial_rotary_factor\": 1.5}", ENG_ERR_FORMAT, "partial_rotary_factor");
    parse_fail("{\"model_type\": \"qwen3_next\", \"tie_word_embeddings\": 1}", ENG_ERR_FORMAT, "tie_word_embeddings");
    parse_fail("{\"model_type\": \"qwen3_next\", \"rope_scaling\": {\"rope_type\": \"linear\", \"factor\": 2}}",
               ENG_ERR_UNSUPPORTED, "rope_scaling.rope_type");
    parse_fail("{\"model_type\": \"qwen3_next\", \"rope_scaling\": {\"rope_type\": \"yarn\"}}", ENG_ERR_FORMAT, "factor");
    parse_fail("{\"model_type\": \"qwen3_next\", \"rope_scaling\": [1]}", ENG_ERR_FORMAT, "rope_scaling");
    parse_fail("{\"model_type\": \"qwen3_next\", \"rope_parameters\": {\"rope_theta\": -1}}", ENG_ERR_FORMAT,
               "rope_parameters.rope_theta");
    parse_fail("{\"model_type\": \"qwen3_next\", \"quantization_config\": {\"quant_method\": \"awq\"}}", ENG_ERR_UNSUPPORTED,
               "quantization_config.quant_method");
    parse_fail("{\"model_type\": \"qwen3_next\", \"quantization_config\": {\"quant_method\": \"fp8\"}}", ENG_ERR_UNSUPPORTED,
               "weight_block_size");
    parse_fail("{\"model_type\": \"qwen3_next\", \"quantization_config\": {\"quant_method\": \"fp8\", \"weight_block_size\": [128]}}",
               ENG_ERR_FORMAT, "weight_block_size");
    parse_fail("{\"model_type\": \"qwen3_next\", \"quantization_config\": {\"quant_method\": \"fp8\", \"fmt\": \"e5m2\","
               " \"weight_block_size\": [128, 128]}}",
               ENG_ERR_UNSUPPORTED, "quantization_config.fmt");
    /* each size within its bound, but together absurd: sanity limits on parameters and state */
    parse_fail("{\"model_type\": \"qwen3_next\", \"num_hidden_layers\": 1024, \"hidden_size\": 65536, \"num_experts\": 16384,"
               " \"moe_intermediate_size\": 1048576}",
               ENG_ERR_FORMAT, "parameters");
    parse_fail("{\"model_type\": \"qwen3_next\", \"num_hidden_layers\": 1024, \"linear_num_value_heads\": 1024,"
               " \"linear_num_key_heads\": 1024, \"linear_key_head_dim\": 4096, \"linear_value_head_dim\": 4096,"
               " \"hidden_size\": 8, \"num_experts\": 1, \"num_experts_per_tok\": 1}",
               ENG_ERR_FORMAT, "recurrent state");
}
END_TEST

START_TEST(test_generation)
{
    size_t n;
    char *j = fixture("config.instruct-bf16.json", &n);
    qn_config c;
    ck_assert_int_eq(qn_config_parse(j, n, "config.json", &c), ENG_OK);
    eng_free(j);
    qn_gen_config g;
    /* the Qwen3-2507 convention */
    const char *gj = "{\"bos_token_id\": 151643, \"do_sample\": true, \"eos_token_id\": [151645, 151643], \"pad_token_id\": 151643,"
                     " \"temperature\": 0.7, \"top_k\": 20, \"top_p\": 0.8, \"transformers_version\": \"4.57.0\"}";
    ck_assert_int_eq(qn_gen_config_parse(gj, strlen(gj), "generation_config.json", &c, &g), ENG_OK);
    ck_assert(g.do_sample);
    ck_assert_float_eq_tol(g.temperature, 0.7f, 1e-6f);
    ck_assert_float_eq_tol(g.top_p, 0.8f, 1e-6f);
    ck_assert_int_eq(g.top_k, 20);
    ck_assert_float_eq(g.min_p, 0.0f);
    ck_assert_float_eq(g.repetition_penalty, 1.0f);
    ck_assert_int_eq(g.max_new_tokens, -1);
    ck_assert_int_eq(g.n_eos_token_ids, 2);
    ck_assert_int_eq(g.eos_token_ids[0], 151645);
    ck_assert_int_eq(g.eos_token_ids[1], 151643);
    /* config eos merged after generation eos */
    const char *g2 = "{\"eos_token_id\": 151643, \"temperature\": null, \"max_new_tokens\": 100}";
    ck_assert_int_eq(qn_gen_config_parse(g2, strlen(g2), "generation_config.json", &c, &g), ENG_OK);
    ck_assert_int_eq(g.n_eos_token_ids, 2);
    ck_assert_int_eq(g.eos_token_ids[0], 151643);
    ck_assert_int_eq(g.eos_token_ids[1], 151645);
    ck_assert_float_eq(g.temperature, 1.0f);
    ck_assert_int_eq(g.max_new_tokens, 100);
    /* bad values */
    static const char *bad[][2] = {
        {"{\"temperature\": -0.5}", "temperature"}, {"{\"top_p\": 0}", "top_p"},       {"{\"top_k\": -1}", "top_k"},
        {"{\"min_p\": 2}", "min_p"},                {"{\"do_sample\": \"yes\"}", "do_sample"},
        {"{\"eos_token_id\": \"x\"}", "eos_token_id"}, {"{\"repetition_penalty\": 0}", "repetition_penalty"},
        {"{\"top_p\": 0.8", "malformed"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        eng_status st = qn_gen_config_parse(bad[i][0], strlen(bad[i][0]), "generation_config.json", &c, &g);
        ck_assert_msg(st == ENG_ERR_FORMAT, "%s: %s", bad[i][0], eng_status_str(st));
        ck_assert_msg(strstr(eng_err_last(), bad[i][1]) && strstr(eng_err_last(), "generation_config.json"), "%s: '%s'", bad[i][0],
                      eng_err_last());
        ck_assert_float_eq(g.temperature, 1.0f); /* defaults on error */
        ck_assert_int_eq(g.n_eos_token_ids, 1);
    }
}
END_TEST

START_TEST(test_load_from_dir)
{
    char dir[] = "/tmp/qn_cfg_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char path[256], gpath[256];
    snprintf(path, sizeof path, "%s/config.json", dir);
    snprintf(gpath, sizeof gpath, "%s/generation_config.json", dir);
    qn_config c;
    qn_gen_config g;
    ck_assert_int_eq(qn_config_load(dir, &c), ENG_ERR_IO);
    ck_assert_ptr_nonnull(strstr(eng_err_last(), "config.json"));
    FILE *f = fopen(path, "w");
    fputs("{\"model_type\": \"qwen3_next\", \"eos_token_id\": 151645, \"num_experts\": 4, \"num_experts_per_tok\": 2}", f);
    fclose(f);
    ck_assert_int_eq(qn_config_load(dir, &c), ENG_OK);
    ck_assert_int_eq(c.n_experts, 4);
    /* absent generation_config.json: defaults + config eos */
    ck_assert_int_eq(qn_gen_config_load(dir, &c, &g), ENG_OK);
    ck_assert(!g.do_sample);
    ck_assert_float_eq(g.temperature, 1.0f);
    ck_assert_float_eq(g.top_p, 1.0f);
    ck_assert_int_eq(g.top_k, 0);
    ck_assert_int_eq(g.n_eos_token_ids, 1);
    ck_assert_int_eq(g.eos_token_ids[0], 151645);
    f = fopen(gpath, "w");
    fputs("{\"top_k\": 20, \"eos_token_id\": [151645, 151643]}", f);
    fclose(f);
    ck_assert_int_eq(qn_gen_config_load(dir, &c, &g), ENG_OK);
    ck_assert_int_eq(g.top_k, 20);
    ck_assert_int_eq(g.n_eos_token_ids, 2);
    f = fopen(gpath, "w");
    fputs("{\"top_k\": 20.5}", f);
    fclose(f);
    ck_assert_int_eq(qn_gen_config_load(dir, &c, &g), ENG_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(eng_err_last(), gpath));
    /* a 20 MB config is refused before parsing */
    f = fopen(path, "w");
    for (int i = 0; i < 20 << 20; i += 4) fputs("    ", f);
    fclose(f);
    ck_assert_int_eq(qn_config_load(dir, &c), ENG_ERR_FORMAT);
    /* allocation failures: clean NOMEM */
    f = fopen(path, "w");
    fputs("{\"model_type\": \"qwen3_next\"}", f);
    fclose(f);
    for (long k = 0; k < 10; k++) {
        eng_alloc_fail_after(k);
        eng_status st = qn_config_load(dir, &c);
        eng_alloc_fail_after(-1);
        ck_assert_msg(st == ENG_OK || st == ENG_ERR_NOMEM, "k=%ld %s", k, eng_status_str(st));
    }
    unlink(path);
    unlink(gpath);
    rmdir(dir);
}
END_TEST

static Suite *config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("config");
    tcase_add_test(tc, test_real_bf16);
    tcase_add_test(tc, test_real_fp8);
    tcase_add_test(tc, test_transformers5_dump);
    tcase_add_test(tc, test_defaults);
    tcase_add_test(tc, test_variants);
    tcase_add_test(tc, test_errors);
    suite_add_tcase(s, tc);
    tc = tcase_create("generation");
    tcase_add_test(tc, test_generation);
    tcase_add_test(tc, test_load_from_dir);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(config_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
