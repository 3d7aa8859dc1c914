/* tests/unit/engine/test_engine_util.h - shared by the test_engine*.c suites: a tiny random
 * Qwen3-Next written at test time, and a driver that runs eng_step and collects events.
 *
 * The tiny model has the real vocabulary (151936, so the real tokenizer, its special tokens and
 * the tool-call / think tags are all valid ids) but hidden size 32 and 4 layers (3 Gated DeltaNet
 * + 1 full attention, one dense-MLP layer, 8 experts top-2): ~20 MB of bf16, written in a fraction
 * of a second into a temp folder with the tokenizer fixture and the Instruct chat template. Its
 * embeddings and lm_head are N(0, 1), so logits are spread out (greedy choices are far from ties)
 * and the output varies from token to token. generation_config.json: greedy by default, EOS
 * 151645 and 151643 (the Qwen3-Next pair).
 *
 * A second copy with a 4096-token vocabulary (tm_small, EOS 1 and 2) serves the token-id
 * workloads: sampling and the lm_head are O(vocab), so it is ~40x cheaper per token (it matters
 * under ASan).
 *
 * Include once per test binary (static functions); call tm_setup() in main() before srunner_run
 * and tm_cleanup() after.
 */
#ifndef TEST_ENGINE_UTIL_H
#define TEST_ENGINE_UTIL_H

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/dtype.h"        /* eng_f32_to_bf16 */
#include "model/config.h"      /* qn_config_parse */
#include "model/safetensors.h" /* eng_st_writer */
#include "model/spec.h"        /* qn_spec_list */
#include "qnext/eng.h"
#include "qnext/tokenizer.h"

#define TM_FN static __attribute__((unused)) /* each binary uses a subset */
#define TM_VOCAB 151936
#define TM_EOS 151645
#define TM_SMALL_VOCAB 4096

static char tm_model[512];    /* the full-vocabulary model: text, chat, special tokens */
static char tm_tp[600];       /* small vocabulary, 2 GDN key heads: splits over 2 tensor-parallel ranks */
static char tm_small[600];    /* the same architecture with a 4096-token vocabulary (EOS 1 and 2): for
                               * token-id workloads, ~40x cheaper per sampled token (the lm_head and
                               * the sampler are O(vocab)); prompts must use ids < TM_SMALL_VOCAB */
static eng_tokenizer *tm_tok; /* loaded once in tm_setup, lent to every engine (forked children share it) */

/* The architecture; the GDN key heads, vocab_size and the EOS ids are filled in. */
static const char tm_config_fmt[] =
    "{\"architectures\": [\"Qwen3NextForCausalLM\"], \"model_type\": \"qwen3_next\",\n"
    " \"hidden_size\": 32, \"num_hidden_layers\": 4, \"full_attention_interval\": 4,\n"
    " \"num_attention_heads\": 2, \"num_key_value_heads\": 1, \"head_dim\": 32, \"partial_rotary_factor\": "
    "0.25,\n"
    " \"linear_num_key_heads\": %d, \"linear_num_value_heads\": 2, \"linear_key_head_dim\": 32,\n"
    " \"linear_value_head_dim\": 32, \"linear_conv_kernel_dim\": 4,\n"
    " \"num_experts\": 8, \"num_experts_per_tok\": 2, \"moe_intermediate_size\": 32,\n"
    " \"shared_expert_intermediate_size\": 32, \"intermediate_size\": 64, \"mlp_only_layers\": [1],\n"
    " \"decoder_sparse_step\": 1, \"norm_topk_prob\": true, \"hidden_act\": \"silu\",\n"
    " \"max_position_embeddings\": 4096, \"rms_norm_eps\": 1e-06, \"rope_theta\": 10000000,\n"
    " \"tie_word_embeddings\": false, \"torch_dtype\": \"bfloat16\", \"vocab_size\": %d,\n"
    " \"bos_token_id\": %d, \"eos_token_id\": %d}\n";

static const char tm_gen_config_fmt[] = "{\"do_sample\": false, \"eos_token_id\": [%d, %d]}\n";

static uint64_t tm_rng = 0x243F6A8885A308D3ull;
TM_FN double tm_uniform(void)
{
    uint64_t z = (tm_rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}
TM_FN float tm_normal(void)
{
    double u = 1.0 - tm_uniform(), v = tm_uniform();
    return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

TM_FN float tm_value(qn_tensor_kind k)
{
    switch (k) {
    case QN_T_EMBED:
    case QN_T_LM_HEAD:
        return tm_normal();
    case QN_T_LIN_A_LOG:
        return (float)log(1.0 + 15.0 * tm_uniform());
    case QN_T_LIN_DT_BIAS:
        return (float)log(expm1(0.001 + 0.099 * tm_uniform()));
    case QN_T_LIN_CONV:
        return (float)(tm_uniform() - 0.5);
    case QN_T_LIN_NORM:
        return 1.0f + 0.02f * tm_normal();
    case QN_T_FINAL_NORM:
    case QN_T_INPUT_NORM:
    case QN_T_POST_NORM:
    case QN_T_ATTN_Q_NORM:
    case QN_T_ATTN_K_NORM:
        return 0.05f * tm_normal();
    default:
        return 0.2f * tm_normal();
    }
}

TM_FN void tm_write_file(const char *dir, const char *name, const char *data, size_t n)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", p);
        exit(1);
    }
}

TM_FN void tm_copy_file(const char *src, const char *dir, const char *name)
{
    FILE *f = fopen(src, "rb");
    if (!f) {
        fprintf(stderr, "cannot read %s\n", src);
        exit(1);
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (!b || fread(b, 1, (size_t)n, f) != (size_t)n) exit(1);
    fclose(f);
    tm_write_file(dir, name, b, (size_t)n);
    free(b);
}

/* Writes one model (config, generation config, weights, tokenizer, template) into dir. */
TM_FN void tm_write_model(const char *dir, const char *fx, int lin_k_heads, int vocab, int eos1, int eos2)
{
    char cfg_json[4096], gen_json[256];
    int cl = snprintf(cfg_json, sizeof cfg_json, tm_config_fmt, lin_k_heads, vocab, eos2, eos1);
    int gl = snprintf(gen_json, sizeof gen_json, tm_gen_config_fmt, eos1, eos2);
    tm_write_file(dir, "config.json", cfg_json, (size_t)cl);
    tm_write_file(dir, "generation_config.json", gen_json, (size_t)gl);
    char src[1024], dst[1024];
    snprintf(src, sizeof src, "%s/tokenizer/tokenizer.json", fx);
    snprintf(dst, sizeof dst, "%s/tokenizer.json", dir);
    if (symlink(src, dst) != 0) tm_copy_file(src, dir, "tokenizer.json");
    snprintf(src, sizeof src, "%s/tokenizer/chat_template.qwen3-next-instruct.jinja", fx);
    tm_copy_file(src, dir, "chat_template.jinja");

    qn_config cfg;
    eng_status st = qn_config_parse(cfg_json, (size_t)cl, "tiny config.json", &cfg);
    if (st != ENG_OK) {
        fprintf(stderr, "tiny config: %s\n", eng_err_last());
        exit(1);
    }
    qn_tensor_spec *list = NULL;
    size_t n = 0;
    if (qn_spec_list(&cfg, 0, &list, &n) != ENG_OK) exit(1);
    snprintf(dst, sizeof dst, "%s/model.safetensors", dir);
    eng_st_writer *w = NULL;
    if (eng_st_writer_create(dst, &w) != ENG_OK) exit(1);
    for (size_t i = 0; i < n; i++) {
        char name[QN_TENSOR_NAME_MAX];
        qn_tensor_name(&list[i].id, name, sizeof name);
        if (eng_st_writer_add(w, name, ENG_DTYPE_BF16, list[i].n_dims, list[i].shape) != ENG_OK) exit(1);
    }
    if (eng_st_writer_begin_data(w, false) != ENG_OK) exit(1);
    uint16_t *buf = malloc(65536 * sizeof *buf);
    for (size_t i = 0; i < n; i++) {
        uint64_t numel = 1;
        for (int d = 0; d < list[i].n_dims; d++) numel *= (uint64_t)list[i].shape[d];
        for (uint64_t k = 0; k < numel; k += 65536) {
            size_t m = numel - k < 65536 ? (size_t)(numel - k) : 65536;
            for (size_t j = 0; j < m; j++) buf[j] = eng_f32_to_bf16(tm_value(list[i].id.kind));
            if (eng_st_writer_data(w, buf, m * 2) != ENG_OK) exit(1);
        }
    }
    free(buf);
    if (eng_st_writer_finish(w) != ENG_OK) {
        fprintf(stderr, "tiny model: %s\n", eng_err_last());
        exit(1);
    }
    qn_spec_list_free(list);
}

/* Writes both tiny models into a fresh temp folder (tm_model, tm_small inside it) and loads the
 * tokenizer once. */
TM_FN void tm_setup(void)
{
    const char *fx = getenv("QNEXT_FIXTURES");
    if (!fx) {
        fprintf(stderr, "QNEXT_FIXTURES is not set (run through ctest)\n");
        exit(1);
    }
    snprintf(tm_model, sizeof tm_model, "%s/qnext-engine-test-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tm_model)) {
        perror("mkdtemp");
        exit(1);
    }
    snprintf(tm_small, sizeof tm_small, "%s/small", tm_model);
    snprintf(tm_tp, sizeof tm_tp, "%s/tp", tm_model);
    if (mkdir(tm_small, 0700) != 0 || mkdir(tm_tp, 0700) != 0) {
        perror("mkdir");
        exit(1);
    }
    tm_write_model(tm_model, fx, 1, TM_VOCAB, 151645, 151643);
    tm_write_model(tm_small, fx, 1, TM_SMALL_VOCAB, 1, 2);
    tm_write_model(tm_tp, fx, 2, TM_SMALL_VOCAB, 1, 2);
    if (eng_tokenizer_load(tm_model, &tm_tok) != ENG_OK) {
        fprintf(stderr, "tokenizer: %s\n", eng_err_last());
        exit(1);
    }
}

TM_FN void tm_cleanup(void)
{
    eng_tokenizer_destroy(tm_tok);
    static const char *files[] = {"config.json",         "generation_config.json", "tokenizer.json",
                                  "chat_template.jinja", "model.safetensors",      "forced.json"};
    char p[1024];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", tm_small, files[i]);
        unlink(p);
        snprintf(p, sizeof p, "%s/%s", tm_tp, files[i]);
        unlink(p);
        snprintf(p, sizeof p, "%s/%s", tm_model, files[i]);
        unlink(p);
    }
    rmdir(tm_small);
    rmdir(tm_tp);
    rmdir(tm_model);
}

/* A config for the tiny model: small, quiet, 1 thread (fast to create under ASan too). */
TM_FN eng_config tm_config_default(void)
{
    eng_config c;
    eng_config_init(&c);
    c.model_dir = tm_model;
    c.n_threads = 1;
    c.max_running = 16;
    c.max_batch_tokens = 256;
    c.max_model_len = 1024;
    c.kv_cache_bytes = 8u << 20;
    c.prefix_cache_bytes = 16u << 20;
    c.tokenizer = tm_tok;
    return c;
}

/* The same for the small-vocabulary model. */
TM_FN eng_config tm_config_small(void)
{
    eng_config c = tm_config_default();
    c.model_dir = tm_small;
    return c;
}

TM_FN eng_engine *tm_engine(const eng_config *c)
{
    eng_engine *e = NULL;
    eng_status st = eng_create(c, &e);
    ck_assert_msg(st == ENG_OK, "eng_create: %s: %s", eng_status_str(st), eng_err_last());
    return e;
}

/* ==== collecting events ====================================================================== */

#define TM_MAX_TOK 512
#define TM_MAX_TEXT 4096
#define TM_MAX_CHOICES 5

typedef struct tm_choice {
    int32_t tok[TM_MAX_TOK];
    int n_tok;
    int text_end[TM_MAX_TOK]; /* strlen(text) after the event that carried token i */
    float lp[TM_MAX_TOK];
    eng_top_logprob top[TM_MAX_TOK][4];
    int n_top[TM_MAX_TOK];
    int n_lp;
    char text[TM_MAX_TEXT], content[TM_MAX_TEXT], reasoning[TM_MAX_TEXT];
    char tool_name[64], tool_id[64], tool_args[512];
    int n_tool_calls, n_events;
    bool done;
    eng_finish_reason finish;
    char matched_stop[256];
    int32_t matched_token;
    eng_usage usage;
    eng_timings tm;
    int first_step; /* step index of its first token (-1: none) */
    int done_step;
} tm_choice;

typedef struct tm_result {
    uint64_t id;
    int n; /* choices */
    bool error;
    eng_status err;
    char err_msg[512];
    tm_choice ch[TM_MAX_CHOICES];
} tm_result;

TM_FN void tm_append(char *dst, size_t cap, const char *s)
{
    size_t l = strlen(dst), k = strlen(s);
    ck_assert_msg(l + k < cap, "test buffer too small");
    memcpy(dst + l, s, k + 1);
}

TM_FN void tm_result_init(tm_result *r, uint64_t id, int n)
{
    memset(r, 0, sizeof *r);
    r->id = id;
    r->n = n;
    for (int c = 0; c < TM_MAX_CHOICES; c++) r->ch[c].first_step = r->ch[c].done_step = -1;
}

TM_FN bool tm_result_done(const tm_result *r)
{
    if (r->error) return true;
    for (int c = 0; c < r->n; c++)
        if (!r->ch[c].done) return false;
    return true;
}

TM_FN void tm_route(tm_result *res, int n_res, const eng_event *ev, int step)
{
    tm_result *r = NULL;
    for (int i = 0; i < n_res; i++)
        if (res[i].id == ev->request_id) r = &res[i];
    ck_assert_msg(r != NULL, "event for unknown request %llu", (unsigned long long)ev->request_id);
    if (ev->kind == ENG_EV_ERROR) {
        ck_assert_msg(!r->error, "two ERROR events");
        r->error = true;
        r->err = ev->error;
        snprintf(r->err_msg, sizeof r->err_msg, "%s", ev->error_message ? ev->error_message : "");
        return;
    }
    ck_assert_int_lt(ev->choice, r->n);
    tm_choice *c = &r->ch[ev->choice];
    ck_assert_msg(!c->done, "event after DONE (request %llu choice %d)", (unsigned long long)r->id,
                  ev->choice);
    c->n_events++;
    if (ev->kind == ENG_EV_DONE) {
        c->done = true;
        c->finish = ev->finish;
        c->usage = ev->usage;
        c->tm = ev->timings;
        c->matched_token = ev->matched_stop_token;
        snprintf(c->matched_stop, sizeof c->matched_stop, "%s", ev->matched_stop ? ev->matched_stop : "");
        c->done_step = step;
        return;
    }
    for (size_t i = 0; i < ev->n_tokens; i++) {
        ck_assert_int_lt(c->n_tok, TM_MAX_TOK);
        if (ev->logprobs) {
            const eng_token_logprob *l = &ev->logprobs[i];
            ck_assert_int_eq(l->token, ev->tokens[i]);
            c->lp[c->n_tok] = l->logprob;
            c->n_top[c->n_tok] = (int)(l->n_top < 4 ? l->n_top : 4);
            for (int k = 0; k < c->n_top[c->n_tok]; k++) c->top[c->n_tok][k] = l->top[k];
            c->n_lp++;
        }
        c->tok[c->n_tok++] = ev->tokens[i];
        if (c->first_step < 0) c->first_step = step;
    }
    ck_assert(ev->text && ev->content && ev->reasoning);
    tm_append(c->text, sizeof c->text, ev->text);
    if (c->n_tok) c->text_end[c->n_tok - 1] = (int)strlen(c->text);
    tm_append(c->content, sizeof c->content, ev->content);
    tm_append(c->reasoning, sizeof c->reasoning, ev->reasoning);
    for (size_t i = 0; i < ev->n_tool_deltas; i++) {
        const eng_tool_delta *t = &ev->tool_deltas[i];
        if (t->name) {
            c->n_tool_calls++;
            snprintf(c->tool_name, sizeof c->tool_name, "%s", t->name);
            snprintf(c->tool_id, sizeof c->tool_id, "%s", t->id ? t->id : "");
        }
        if (t->arguments) tm_append(c->tool_args, sizeof c->tool_args, t->arguments);
    }
}

/* Runs steps until every result is done (or max_steps). `each_step(ctx, step)` (may be NULL) runs
 * before each step (to submit or cancel mid-run). Returns the number of steps. */
TM_FN int tm_drive(eng_engine *e, tm_result *res, int n_res, int max_steps, void (*each_step)(void *, int),
                   void *ctx)
{
    int step = 0;
    for (; step < max_steps; step++) {
        if (each_step) each_step(ctx, step);
        bool all = true;
        for (int i = 0; i < n_res; i++)
            if (!res[i].id || !tm_result_done(&res[i])) all = false;
        if (all && !each_step) break;
        if (all && each_step && !eng_has_work(e)) break;
        eng_event ev[7]; /* small on purpose: events of one step span several eng_step calls */
        size_t n = 0;
        eng_status st;
        do {
            st = eng_step(e, ev, 7, &n);
            ck_assert_msg(st == ENG_OK, "eng_step: %s: %s", eng_status_str(st), eng_err_last());
            for (size_t k = 0; k < n; k++) tm_route(res, n_res, &ev[k], step);
        } while (n == 7);
    }
    return step;
}

/* Submits r and returns its id (the request must be accepted). */
TM_FN uint64_t tm_submit(eng_engine *e, const eng_request *r)
{
    uint64_t id = 0;
    eng_status st = eng_submit(e, r, &id);
    ck_assert_msg(st == ENG_OK, "eng_submit: %s: %s", eng_status_str(st), eng_err_last());
    return id;
}

/* Runs one request alone to the end. */
TM_FN void tm_run1(eng_engine *e, const eng_request *r, tm_result *out)
{
    tm_result_init(out, tm_submit(e, r), r->sampling.n);
    tm_drive(e, out, 1, 100000, NULL, NULL);
    ck_assert(tm_result_done(out));
}

/* A token-id prompt of n ids drawn from [300, TM_SMALL_VOCAB) by seed (valid for both models). */
TM_FN void tm_ids(int32_t *out, int n, uint64_t seed)
{
    for (int i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        out[i] = 300 + (int32_t)((seed >> 33) % (TM_SMALL_VOCAB - 300));
    }
}

#endif /* TEST_ENGINE_UTIL_H */
