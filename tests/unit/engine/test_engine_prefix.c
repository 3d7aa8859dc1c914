/* tests/unit/engine/test_engine_prefix.c - prefix reuse in the engine (KV blocks + recurrent-state
 * snapshots, cache/prefix_cache.h) on a tiny random model. The reference for every output is a
 * cold engine (prefix cache off):
 *   - turn 2 of a chat starts from turn 1's prompt-end snapshot, reports the cached tokens and
 *     writes the same tokens (logprobs within 1e-4) as a cold run
 *   - a turn that ended on a stop leaves its whole history cached: the next turn prefills only the
 *     new messages
 *   - a small budget evicts entries and stays correct; mixed load (shared prefixes, n > 1, KV
 *     pressure with preemption, copy-on-write of shared partial blocks) matches cold solo runs
 */
#include "test_engine_util.h"

#include "core/core.h" /* eng_log_set_level */

static const char rules[] = "{\"rules\": [\n"
                            "  {\"marker\": \"@@free@@\", \"tokens\": []},\n"
                            "  {\"marker\": \"@@f@@\", \"text\": \"Paris is nice.<|im_end|>\"}\n"
                            "]}\n";

static eng_engine *engine_with_hook(size_t prefix_bytes)
{
    tm_write_file(tm_model, "forced.json", rules, sizeof rules - 1);
    char path[1024];
    snprintf(path, sizeof path, "%s/forced.json", tm_model);
    setenv("QNEXT_TEST_FORCED_OUTPUT", path, 1);
    eng_config c = tm_config_default();
    c.prefix_cache_bytes = prefix_bytes;
    eng_engine *e = tm_engine(&c);
    unsetenv("QNEXT_TEST_FORCED_OUTPUT");
    return e;
}

static void chat(eng_engine *e, const char *messages, int max_tokens, tm_result *out)
{
    eng_request r;
    eng_request_init(&r);
    r.input = ENG_INPUT_CHAT;
    r.messages_json = messages;
    r.sampling.max_tokens = max_tokens;
    r.sampling.logprobs = 3;
    tm_run1(e, &r, out);
    ck_assert_msg(!out->error, "%s", out->err_msg);
}

static void same_output(const tm_result *a, const tm_result *b)
{
    const tm_choice *x = &a->ch[0], *y = &b->ch[0];
    ck_assert_int_eq(x->n_tok, y->n_tok);
    ck_assert_mem_eq(x->tok, y->tok, (size_t)x->n_tok * sizeof(int32_t));
    for (int i = 0; i < x->n_tok; i++)
        for (int k = 0; k < x->n_top[i]; k++) {
            double p = x->top[i][k].logprob, q = y->top[i][k].logprob;
            ck_assert_msg(fabs(p - q) <= 1e-4 * fmax(fabs(p), 1e-3), "logprob %d/%d: %g vs %g", i, k, p, q);
        }
}

START_TEST(test_turn2_reuses_turn1_prompt)
{
    static const char t1[] = "[{\"role\": \"system\", \"content\": \"You are a helpful assistant who answers "
                             "questions about geography in detail.\"},"
                             " {\"role\": \"user\", \"content\": \"What is the capital of France?\"}]";
    static const char t2[] = "[{\"role\": \"system\", \"content\": \"You are a helpful assistant who answers "
                             "questions about geography in detail.\"},"
                             " {\"role\": \"user\", \"content\": \"What is the capital of France?\"},"
                             " {\"role\": \"assistant\", \"content\": \"It is Paris.\"},"
                             " {\"role\": \"user\", \"content\": \"And of Germany?\"}]";
    static tm_result a1, a2, cold;
    eng_config c = tm_config_default();
    eng_engine *e = tm_engine(&c);
    chat(e, t1, 6, &a1); /* ends by length: only its prompt-end snapshot is cached */
    int p1 = a1.ch[0].usage.prompt_tokens;
    ck_assert_int_eq(a1.ch[0].usage.cached_prompt_tokens, 0);
    chat(e, t2, 8, &a2);
    ck_assert_int_eq(a2.ch[0].usage.cached_prompt_tokens, p1);
    ck_assert_int_gt(a2.ch[0].usage.prompt_tokens, p1);
    eng_stats st;
    eng_get_stats(e, &st);
    ck_assert_uint_eq(st.prefix_cache_hit_tokens, (uint64_t)p1);
    ck_assert_uint_eq(st.prefix_cache_queries_tokens, (uint64_t)(p1 + a2.ch[0].usage.prompt_tokens));
    eng_destroy(e);

    c.prefix_cache_bytes = 0;
    e = tm_engine(&c);
    chat(e, t2, 8, &cold);
    ck_assert_int_eq(cold.ch[0].usage.cached_prompt_tokens, 0);
    same_output(&a2, &cold);
    eng_destroy(e);
}
END_TEST

START_TEST(test_history_cached_after_stop)
{
    static const char t1[] = "[{\"role\": \"user\", \"content\": \"Capital of France? @@f@@\"}]";
    static const char t2[] = "[{\"role\": \"user\", \"content\": \"Capital of France? @@f@@\"},"
                             " {\"role\": \"assistant\", \"content\": \"Paris is nice.\"},"
                             " {\"role\": \"user\", \"content\": \"And Germany? @@free@@\"}]";
    static tm_result a1, a2, cold;
    eng_engine *e = engine_with_hook(16u << 20);
    chat(e, t1, 20, &a1);
    ck_assert_str_eq(a1.ch[0].content, "Paris is nice.");
    ck_assert_int_eq(a1.ch[0].finish, ENG_FINISH_STOP);
    int p1 = a1.ch[0].usage.prompt_tokens, n1 = a1.ch[0].n_tok; /* "Paris", " is", " nice", "." */
    ck_assert_int_eq(n1, 4);
    chat(e, t2, 8, &a2);
    ck_assert_int_eq(a2.ch[0].usage.cached_prompt_tokens,
                     p1 + n1); /* prompt + answer: only the new turn runs */
    ck_assert_int_eq(a2.ch[0].n_tok, 8);
    eng_destroy(e);
    e = engine_with_hook(0);
    chat(e, t2, 8, &cold);
    same_output(&a2, &cold);
    eng_destroy(e);
}
END_TEST

/* ==== eviction and mixed load ================================================================= */

#define N_MIX 12

typedef struct mix_ctx {
    eng_engine *e;
    eng_request req[N_MIX];
    int32_t ids[N_MIX][260];
    tm_result *res;
} mix_ctx;

static void mix_make(mix_ctx *x)
{
    int32_t base[200];
    tm_ids(base, 200, 777);
    for (int i = 0; i < N_MIX; i++) {
        int shared = (i * 53) % 200, own = 5 + (i * 17) % 50;
        memcpy(x->ids[i], base, (size_t)shared * sizeof(int32_t));
        tm_ids(x->ids[i] + shared, own, 900 + (uint64_t)i);
        eng_request *r = &x->req[i];
        eng_request_init(r);
        r->input = ENG_INPUT_TOKENS;
        r->tokens = x->ids[i];
        r->n_tokens = (size_t)(shared + own);
        r->sampling.max_tokens = 6 + i % 7;
        r->sampling.ignore_eos = true;
        r->sampling.temperature = 0;
        r->sampling.n = 1 + i % 3;
    }
}

static void mix_submit(void *ctx, int step)
{
    mix_ctx *x = ctx;
    for (int i = 0; i < N_MIX; i++)
        if (step == i / 2) tm_result_init(&x->res[i], tm_submit(x->e, &x->req[i]), x->req[i].sampling.n);
}

static mix_ctx mix;
static tm_result mix_cold[N_MIX];

/* Runs the mix twice on one engine (the second round hits what the first left cached) and checks
 * every choice against the cold solo runs. */
static void run_mix(const char *what, size_t prefix_bytes, size_t kv_bytes, int snapshot_every)
{
    static tm_result res[N_MIX];
    eng_config c = tm_config_small();
    c.prefix_cache_bytes = prefix_bytes;
    c.prefix_snapshot_every = snapshot_every;
    c.max_running = 6;
    c.max_model_len = 300;
    if (kv_bytes) c.kv_cache_bytes = kv_bytes;
    eng_engine *e = tm_engine(&c);
    mix.e = e;
    for (int round = 0; round < 2; round++) {
        memset(res, 0, sizeof res);
        mix.res = res;
        tm_drive(e, res, N_MIX, 100000, mix_submit, &mix);
        for (int i = 0; i < N_MIX; i++) {
            ck_assert_msg(!res[i].error, "%s: request %d: %s", what, i, res[i].err_msg);
            for (int k = 0; k < res[i].n; k++) {
                const tm_choice *a = &mix_cold[i].ch[0], *b = &res[i].ch[k];
                ck_assert_int_eq(b->n_tok, a->n_tok);
                ck_assert_msg(!memcmp(a->tok, b->tok, (size_t)a->n_tok * sizeof(int32_t)),
                              "%s: round %d request %d choice %d differs from the cold run", what, round, i,
                              k);
            }
        }
    }
    eng_stats st;
    eng_get_stats(e, &st);
    ck_assert_msg(st.prefix_cache_hit_tokens > 0, "%s: no prefix-cache hits", what);
    ck_assert_int_eq(st.n_running, 0);
    ck_assert_int_eq(st.state_slots_used, 0);
    if (kv_bytes) ck_assert_msg(st.n_preempted_total > 0, "%s: KV pressure expected preemptions", what);
    eng_destroy(e);
}

START_TEST(test_mixed_load_matches_cold)
{
    mix_make(&mix);
    eng_config c = tm_config_small();
    c.prefix_cache_bytes = 0;
    eng_engine *e = tm_engine(&c);
    for (int i = 0; i < N_MIX; i++) tm_run1(e, &mix.req[i], &mix_cold[i]);
    eng_destroy(e);
    run_mix("large budget", 16u << 20, 0, 32);
    /* about three snapshots (29 KB each) and a few pinned blocks (4 KB each) fit: entries are
     * evicted while others are in use */
    run_mix("small budget", 100u << 10, 0, 32);
    /* 25 blocks (400 positions) for prompts of up to 250 tokens: the cache must give blocks back
     * and running sequences get preempted */
    run_mix("KV pressure", 16u << 20, 25 * 4096, 64);
}
END_TEST

static Suite *prefix_suite(void)
{
    Suite *s = suite_create("engine_prefix");
    TCase *tc = tcase_create("prefix");
    tcase_add_test(tc, test_turn2_reuses_turn1_prompt);
    tcase_add_test(tc, test_history_cached_after_stop);
    tcase_add_test(tc, test_mixed_load_matches_cold);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    eng_log_set_level(ENG_LOG_ERROR);
    tm_setup();
    SRunner *sr = srunner_create(prefix_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    tm_cleanup();
    return failed ? 1 : 0;
}
