/* tests/unit/engine/test_engine.c - the batching engine (qnext/eng.h) on a tiny random model:
 * scheduling and state. Every expected output is the engine's own output for the same request run
 * alone (greedy or seeded), so these tests check invariance, not a recorded transcript:
 *   - basic generation, determinism, usage, finish reasons
 *   - batch invariance: 18 requests of different lengths arriving at different steps, greedy and
 *     seeded, each equal to its solo run (and again with tiny prefill chunks)
 *   - chunked prefill: logprobs equal to one-shot prefill within 1e-4 relative
 *   - cancellation mid-prefill and mid-decode frees the slot and blocks within one step
 *   - preemption when KV blocks run out, with unchanged output
 *   - queue full, priorities, n > 1 forks, invalid requests, events split across eng_step calls
 *   - tensor parallelism (2 CPU ranks): the same tokens as one rank, forks and snapshots included
 *   - an allocation-failure sweep over submit + steps: clean errors, no hang, no leak
 */
#include "test_engine_util.h"

#include "core/core.h" /* eng_log_set_level */

/* ==== basics ================================================================================== */

START_TEST(test_basic_generation)
{
    eng_config c = tm_config_default();
    eng_engine *e = tm_engine(&c);
    eng_request r;
    eng_request_init(&r);
    r.text = "The quick brown fox";
    r.sampling.max_tokens = 8;
    r.sampling.ignore_eos = true;
    static tm_result a, b;
    tm_run1(e, &r, &a);
    tm_run1(e, &r, &b);
    ck_assert(!a.error);
    tm_choice *x = &a.ch[0];
    ck_assert_int_eq(x->n_tok, 8);
    ck_assert_int_eq(x->finish, ENG_FINISH_LENGTH);
    ck_assert_int_eq(x->usage.completion_tokens, 8);
    ck_assert_int_eq(x->usage.prompt_tokens, 4); /* "The", " quick", " brown", " fox" */
    ck_assert(x->tm.total_s >= x->tm.ttft_s && x->tm.ttft_s >= x->tm.queue_s && x->tm.queue_s >= 0);
    ck_assert(x->tm.mean_itl_s >= 0);
    ck_assert_str_eq(x->content, x->text); /* text input: no parsing */
    ck_assert_str_eq(x->reasoning, "");
    ck_assert_int_eq(b.ch[0].n_tok, 8);
    ck_assert_mem_eq(a.ch[0].tok, b.ch[0].tok, 8 * sizeof(int32_t)); /* greedy is deterministic */
    ck_assert_str_eq(a.ch[0].text, b.ch[0].text);

    eng_stats st;
    eng_get_stats(e, &st);
    ck_assert_int_eq(st.n_running, 0);
    ck_assert_int_eq(st.n_waiting, 0);
    ck_assert_int_eq(st.state_slots_used, 0);
    ck_assert_uint_eq(st.generation_tokens_total, 16);
    ck_assert_uint_eq(st.prompt_tokens_total, 8);
    ck_assert(!eng_has_work(e));
    eng_model_info mi;
    eng_get_model_info(e, &mi);
    ck_assert_int_eq(mi.vocab_size, TM_VOCAB);
    ck_assert_int_eq(mi.max_model_len, 1024);
    ck_assert_str_eq(mi.template_kind, "instruct");
    ck_assert_str_eq(mi.dtype, "bf16");
    ck_assert_int_eq(mi.n_eos_token_ids, 2);
    ck_assert_int_eq(mi.eos_token_ids[0], 151645);
    ck_assert_int_eq(mi.eos_token_ids[1], 151643);
    ck_assert_ptr_nonnull(eng_get_tokenizer(e));
    eng_destroy(e);
}
END_TEST

START_TEST(test_chat_request)
{
    eng_config c = tm_config_default();
    eng_engine *e = tm_engine(&c);
    eng_request r;
    eng_request_init(&r);
    r.input = ENG_INPUT_CHAT;
    r.messages_json = "[{\"role\":\"user\",\"content\":\"Say hi\"}]";
    r.sampling.max_tokens = 5;
    r.sampling.ignore_eos = true;
    static tm_result a;
    tm_run1(e, &r, &a);
    ck_assert(!a.error);
    /* <|im_start|>user\nSay hi<|im_end|>\n<|im_start|>assistant\n */
    ck_assert_int_gt(a.ch[0].usage.prompt_tokens, 8);
    ck_assert_int_eq(a.ch[0].n_tok, 5);
    ck_assert_str_eq(a.ch[0].content, a.ch[0].text); /* instruct: everything is content */
    eng_destroy(e);
}
END_TEST

/* ==== batch invariance ======================================================================== */

#define N_INV 18

typedef struct inv_ctx {
    eng_engine *e;
    eng_request req[N_INV];
    int32_t ids[N_INV][300];
    int at_step[N_INV];
    tm_result *res;
} inv_ctx;

static void inv_make(inv_ctx *x)
{
    for (int i = 0; i < N_INV; i++) {
        int len = 1 + (i * 37) % 200 + (i == 5 ? 90 : 0);
        tm_ids(x->ids[i], len, 1000 + (uint64_t)i);
        eng_request *r = &x->req[i];
        eng_request_init(r);
        r->input = ENG_INPUT_TOKENS;
        r->tokens = x->ids[i];
        r->n_tokens = (size_t)len;
        r->sampling.max_tokens = 4 + i % 9;
        r->sampling.ignore_eos = true;
        if (i % 2) { /* seeded sampling */
            r->sampling.temperature = 0.9f;
            r->sampling.top_p = 0.95f;
            r->sampling.top_k = 50;
            r->sampling.has_seed = true;
            r->sampling.seed = 77 + (uint64_t)i;
        } else {
            r->sampling.temperature = 0;
        }
        x->at_step[i] = (i * 3) % 11;
    }
}

static void inv_submit(void *ctx, int step)
{
    inv_ctx *x = ctx;
    for (int i = 0; i < N_INV; i++)
        if (x->at_step[i] == step) tm_result_init(&x->res[i], tm_submit(x->e, &x->req[i]), 1);
}

static void check_invariance(int max_batch_tokens)
{
    static inv_ctx x;
    static tm_result solo[N_INV], batched[N_INV];
    inv_make(&x);
    eng_config c = tm_config_small();
    c.max_batch_tokens = max_batch_tokens;
    c.prefix_cache_bytes = 0; /* solo runs must not warm a cache for the batched ones */
    eng_engine *e = tm_engine(&c);
    for (int i = 0; i < N_INV; i++) tm_run1(e, &x.req[i], &solo[i]);
    x.e = e;
    x.res = batched;
    memset(batched, 0, sizeof batched);
    tm_drive(e, batched, N_INV, 10000, inv_submit, &x);
    eng_stats st;
    eng_get_stats(e, &st);
    for (int i = 0; i < N_INV; i++) {
        ck_assert_msg(!batched[i].error, "request %d failed: %s", i, batched[i].err_msg);
        tm_choice *a = &solo[i].ch[0], *b = &batched[i].ch[0];
        ck_assert_int_eq(a->n_tok, x.req[i].sampling.max_tokens);
        ck_assert_int_eq(b->n_tok, a->n_tok);
        ck_assert_msg(!memcmp(a->tok, b->tok, (size_t)a->n_tok * sizeof *a->tok),
                      "request %d (%zu prompt tokens) differs when batched", i, x.req[i].n_tokens);
        ck_assert_str_eq(a->text, b->text);
    }
    /* they really were batched: some step ran several sequences (first tokens overlap) */
    int overlap = 0;
    for (int i = 0; i < N_INV; i++)
        for (int j = 0; j < N_INV; j++)
            if (i != j && batched[i].ch[0].first_step <= batched[j].ch[0].first_step &&
                batched[j].ch[0].first_step <= batched[i].ch[0].done_step)
                overlap++;
    ck_assert_int_gt(overlap, N_INV);
    ck_assert_int_eq(st.n_running, 0);
    eng_destroy(e);
}

START_TEST(test_batch_invariance)
{
    check_invariance(256);
}
END_TEST

START_TEST(test_batch_invariance_small_chunks)
{
    check_invariance(37); /* prefills split across many steps, next to decodes */
}
END_TEST

/* ==== chunked prefill ========================================================================= */

START_TEST(test_chunked_prefill_logits)
{
    int32_t ids[300];
    tm_ids(ids, 300, 4242);
    eng_request r;
    eng_request_init(&r);
    r.input = ENG_INPUT_TOKENS;
    r.tokens = ids;
    r.n_tokens = 300;
    r.sampling.max_tokens = 6;
    r.sampling.ignore_eos = true;
    r.sampling.temperature = 0;
    r.sampling.logprobs = 4;
    static tm_result one, chunked;
    eng_config c = tm_config_small();
    c.max_batch_tokens = 512;
    c.prefix_cache_bytes = 0;
    eng_engine *e = tm_engine(&c);
    tm_run1(e, &r, &one);
    eng_destroy(e);
    c.max_batch_tokens = 23; /* 300 = 13 chunks of 23 + 1, none aligned with the 64-token GDN chunks */
    e = tm_engine(&c);
    tm_run1(e, &r, &chunked);
    eng_destroy(e);
    tm_choice *a = &one.ch[0], *b = &chunked.ch[0];
    ck_assert_int_eq(a->n_tok, 6);
    ck_assert_int_eq(b->n_tok, 6);
    ck_assert_mem_eq(a->tok, b->tok, 6 * sizeof(int32_t));
    double worst = 0;
    for (int t = 0; t < 6; t++) {
        ck_assert_int_eq(a->n_top[t], 4);
        for (int k = 0; k < 4; k++) {
            ck_assert_int_eq(a->top[t][k].token, b->top[t][k].token);
            double x = a->top[t][k].logprob, y = b->top[t][k].logprob;
            double rel = fabs(x - y) / fmax(fabs(x), 1e-3);
            if (rel > worst) worst = rel;
        }
    }
    ck_assert_msg(worst <= 1e-4, "chunked prefill logprobs differ by %g relative", worst);
}
END_TEST

/* ==== cancellation ============================================================================ */

START_TEST(test_cancel_mid_prefill_and_decode)
{
    eng_config c = tm_config_small();
    c.max_batch_tokens = 16;
    c.prefix_cache_bytes = 0;
    eng_engine *e = tm_engine(&c);
    int32_t ids[200];
    tm_ids(ids, 200, 9);
    eng_request r;
    eng_request_init(&r);
    r.input = ENG_INPUT_TOKENS;
    r.tokens = ids;
    r.n_tokens = 200;
    r.sampling.ignore_eos = true;
    static tm_result a, b, q;
    tm_result_init(&a, tm_submit(e, &r), 1);
    tm_drive(e, &a, 1, 3, NULL, NULL); /* 3 steps of a 13-step prefill */
    eng_stats st;
    eng_get_stats(e, &st);
    ck_assert_int_eq(st.n_running, 1);
    ck_assert_int_eq(st.state_slots_used, 1);
    ck_assert_int_gt(st.kv_blocks_used, 0);
    ck_assert_int_eq(a.ch[0].n_tok, 0);
    ck_assert_int_eq(eng_cancel(e, a.id), ENG_OK);
    ck_assert_int_eq(eng_cancel(e, a.id), ENG_OK); /* a repeated cancel is accepted once */
    eng_event ev[8];
    size_t n;
    ck_assert_int_eq(eng_step(e, ev, 8, &n), ENG_OK); /* within one step */
    for (size_t k = 0; k < n; k++) tm_route(&a, 1, &ev[k], 0);
    ck_assert(a.ch[0].done);
    ck_assert_int_eq(a.ch[0].finish, ENG_FINISH_CANCELLED);
    eng_get_stats(e, &st);
    ck_assert_int_eq(st.n_running, 0);
    ck_assert_int_eq(st.state_slots_used, 0);
    ck_assert_int_eq(st.kv_blocks_used, 0);
    ck_assert_int_eq(eng_cancel(e, a.id), ENG_ERR_NOT_FOUND);
    ck_assert_int_eq(eng_cancel(e, 987654), ENG_ERR_NOT_FOUND);

    /* mid-decode */
    r.n_tokens = 10;
    tm_result_init(&b, tm_submit(e, &r), 1);
    tm_drive(e, &b, 1, 5, NULL, NULL);
    ck_assert_int_ge(b.ch[0].n_tok, 3);
    ck_assert_int_eq(eng_cancel(e, b.id), ENG_OK);
    ck_assert_int_eq(eng_step(e, ev, 8, &n), ENG_OK);
    for (size_t k = 0; k < n; k++) tm_route(&b, 1, &ev[k], 0);
    ck_assert(b.ch[0].done);
    ck_assert_int_eq(b.ch[0].finish, ENG_FINISH_CANCELLED);
    ck_assert_int_ge(b.ch[0].usage.completion_tokens, 3);
    eng_get_stats(e, &st);
    ck_assert_int_eq(st.kv_blocks_used, 0);
    ck_assert_int_eq(st.state_slots_used, 0);

    /* cancelled while still queued (never stepped) */
    tm_result_init(&q, tm_submit(e, &r), 1);
    ck_assert_int_eq(eng_cancel(e, q.id), ENG_OK);
    tm_drive(e, &q, 1, 5, NULL, NULL);
    ck_assert(q.ch[0].done && q.ch[0].finish == ENG_FINISH_CANCELLED);
    ck_assert_int_eq(q.ch[0].n_tok, 0);
    ck_assert(!eng_has_work(e));
    eng_destroy(e);
}
END_TEST

/* ==== preemption ============================================================================== */

START_TEST(test_preemption_keeps_output)
{
    enum { N = 6 };
    int32_t ids[N][120];
    eng_request req[N];
    for (int i = 0; i < N; i++) {
        tm_ids(ids[i], 60 + 10 * i, 300 + (uint64_t)i);
        eng_request_init(&req[i]);
        req[i].input = ENG_INPUT_TOKENS;
        req[i].tokens = ids[i];
        req[i].n_tokens = (size_t)(60 + 10 * i);
        req[i].sampling.max_tokens = 60;
        req[i].sampling.ignore_eos = true;
        req[i].sampling.temperature = i % 2 ? 0.7f : 0.0f;
        req[i].sampling.has_seed = true;
        req[i].sampling.seed = 5;
    }
    static tm_result solo[N], all[N];
    eng_config c = tm_config_small();
    c.prefix_cache_bytes = 0;
    eng_engine *e = tm_engine(&c);
    for (int i = 0; i < N; i++) tm_run1(e, &req[i], &solo[i]);
    eng_destroy(e);

    /* 40 blocks of 16 = 640 positions for 6 sequences that grow to 120..170 positions each (~58
     * blocks together). The tiny model's KV block: 1 attention layer x 16 positions x 1 KV head x
     * 32 dims x (K, V) x 4 bytes. */
    eng_stats st;
    c.max_model_len = 200;
    c.max_running = 6;
    c.kv_cache_bytes = 40 * (16 * 32 * 2 * 4);
    e = tm_engine(&c);
    eng_get_stats(e, &st);
    ck_assert_int_eq(st.kv_blocks_total, 40);
    for (int i = 0; i < N; i++) tm_result_init(&all[i], tm_submit(e, &req[i]), 1);
    tm_drive(e, all, N, 100000, NULL, NULL);
    eng_get_stats(e, &st);
    ck_assert_msg(st.n_preempted_total > 0, "nothing was preempted");
    for (int i = 0; i < N; i++) {
        ck_assert(!all[i].error);
        ck_assert_int_eq(all[i].ch[0].n_tok, 60);
        ck_assert_msg(!memcmp(all[i].ch[0].tok, solo[i].ch[0].tok, 60 * sizeof(int32_t)),
                      "request %d changed after preemption", i);
    }
    ck_assert_int_eq(st.kv_blocks_used, 0);
    eng_destroy(e);
}
END_TEST

/* ==== queue, priorities ======================================================================= */

START_TEST(test_queue_full)
{
    eng_config c = tm_config_default();
    c.max_queue = 2;
    eng_engine *e = tm_engine(&c);
    eng_request r;
    eng_request_init(&r);
    r.text = "hi";
    r.sampling.max_tokens = 2;
    uint64_t id;
    ck_assert_int_eq(eng_submit(e, &r, &id), ENG_OK);
    ck_assert_int_eq(eng_submit(e, &r, &id), ENG_OK);
    ck_assert_int_eq(eng_submit(e, &r, &id), ENG_ERR_QUEUE_FULL);
    eng_stats st;
    eng_get_stats(e, &st);
    ck_assert_int_eq(st.n_waiting, 2);
    static tm_result res[2];
    tm_result_init(&res[0], 1, 1);
    tm_result_init(&res[1], 2, 1);
    tm_drive(e, res, 2, 100, NULL, NULL); /* admitted: room again */
    ck_assert_int_eq(eng_submit(e, &r, &id), ENG_OK);
    eng_destroy(e);
}
END_TEST

START_TEST(test_priorities)
{
    eng_config c = tm_config_default();
    c.max_running = 1;
    eng_engine *e = tm_engine(&c);
    eng_request r;
    eng_request_init(&r);
    r.sampling.max_tokens = 3;
    r.sampling.ignore_eos = true;
    const char *texts[4] = {"first", "low", "high", "middle"};
    int prio[4] = {0, 5, -3, 1};
    static tm_result res[4];
    for (int i = 0; i < 4; i++) {
        r.text = texts[i];
        r.priority = prio[i];
        tm_result_init(&res[i], tm_submit(e, &r), 1);
    }
    tm_drive(e, res, 4, 1000, NULL, NULL);
    /* all four are drained in the first step and wait together; max_running 1 runs them one at a
     * time by priority: -3, 0, 1, 5 */
    int order[4] = {2, 0, 3, 1};
    for (int k = 1; k < 4; k++)
        ck_assert_msg(res[order[k - 1]].ch[0].done_step < res[order[k]].ch[0].first_step,
                      "priority order broken at %d", k);
    eng_destroy(e);
}
END_TEST

/* ==== n > 1 =================================================================================== */

START_TEST(test_n_choices)
{
    eng_config c = tm_config_small();
    c.prefix_cache_bytes = 0;
    eng_engine *e = tm_engine(&c);
    int32_t ids[70];
    tm_ids(ids, 70, 71);
    eng_request r;
    eng_request_init(&r);
    r.input = ENG_INPUT_TOKENS;
    r.tokens = ids;
    r.n_tokens = 70;
    r.sampling.n = 4;
    r.sampling.max_tokens = 12;
    r.sampling.ignore_eos = true;
    r.sampling.temperature = 0;
    static tm_result g, solo, s1, s2, one;
    tm_run1(e, &r, &g);
    for (int k = 1; k < 4; k++) { /* greedy: every fork continues exactly like choice 0 */
        ck_assert_int_eq(g.ch[k].n_tok, 12);
        ck_assert_mem_eq(g.ch[k].tok, g.ch[0].tok, 12 * sizeof(int32_t));
        ck_assert_int_eq(g.ch[k].usage.prompt_tokens, 70);
    }
    r.sampling.n = 1;
    tm_run1(e, &r, &solo);
    ck_assert_mem_eq(solo.ch[0].tok, g.ch[0].tok, 12 * sizeof(int32_t));

    /* seeded sampling: choices differ, the whole set is reproducible */
    r.sampling.n = 4;
    r.sampling.temperature = 1.0f;
    r.sampling.top_k = 0;
    r.sampling.top_p = 1.0f;
    r.sampling.has_seed = true;
    r.sampling.seed = 2024;
    tm_result_init(&s1, tm_submit(e, &r), 4);
    /* the prompt is computed once: while the choices decode, the KV blocks in use are shared */
    eng_stats st;
    int max_used = 0;
    for (int step = 0; step < 200 && !tm_result_done(&s1); step++) {
        tm_drive(e, &s1, 1, 1, NULL, NULL);
        eng_get_stats(e, &st);
        if (st.kv_blocks_used > max_used) max_used = st.kv_blocks_used;
    }
    ck_assert(tm_result_done(&s1));
    ck_assert_int_lt(max_used, 4 * 5); /* 4 unshared copies of 82 positions would take 24 blocks */
    tm_run1(e, &r, &s2);
    int differ = 0;
    for (int k = 0; k < 4; k++) {
        ck_assert_int_eq(s1.ch[k].n_tok, 12);
        ck_assert_mem_eq(s1.ch[k].tok, s2.ch[k].tok, 12 * sizeof(int32_t));
        if (k && memcmp(s1.ch[k].tok, s1.ch[0].tok, 12 * sizeof(int32_t))) differ++;
    }
    ck_assert_int_ge(differ, 2);
    /* choice k of an n-request samples like a 1-request would with choice index k: choice 0 equals
     * the n = 1 run with the same seed */
    r.sampling.n = 1;
    tm_run1(e, &r, &one);
    ck_assert_mem_eq(one.ch[0].tok, s1.ch[0].tok, 12 * sizeof(int32_t));
    eng_destroy(e);
}
END_TEST

START_TEST(test_n_choices_no_free_slot)
{
    /* max_running 2: only one choice can be forked, the others wait and recompute the prompt */
    eng_config c = tm_config_small();
    c.max_running = 2;
    c.prefix_cache_bytes = 0;
    eng_engine *e = tm_engine(&c);
    int32_t ids[20];
    tm_ids(ids, 20, 606);
    eng_request r;
    eng_request_init(&r);
    r.input = ENG_INPUT_TOKENS;
    r.tokens = ids;
    r.n_tokens = 20;
    r.sampling.n = 5;
    r.sampling.max_tokens = 6;
    r.sampling.ignore_eos = true;
    r.sampling.temperature = 0.8f;
    r.sampling.has_seed = true;
    r.sampling.seed = 3;
    static tm_result a, b;
    tm_run1(e, &r, &a);
    eng_destroy(e);
    c.max_running = 8;
    e = tm_engine(&c);
    tm_run1(e, &r, &b);
    for (int k = 0; k < 5; k++) {
        ck_assert_int_eq(a.ch[k].n_tok, 6);
        ck_assert_mem_eq(a.ch[k].tok, b.ch[k].tok, 6 * sizeof(int32_t));
    }
    eng_destroy(e);
}
END_TEST

/* ==== invalid requests ======================================================================== */

START_TEST(test_invalid_requests)
{
    eng_config c = tm_config_default();
    eng_engine *e = tm_engine(&c);
    eng_request r;
    uint64_t id;
    eng_request_init(&r);
    r.text = "";
    ck_assert_int_eq(eng_submit(e, &r, &id), ENG_ERR_INVALID);
    eng_request_init(&r);
    r.text = "x";
    r.sampling.n = 0;
    ck_assert_int_eq(eng_submit(e, &r, &id), ENG_ERR_INVALID);
    r.sampling.n = 129;
    ck_assert_int_eq(eng_submit(e, &r, &id), ENG_ERR_INVALID);
    r.sampling.n = 1;
    r.sampling.logprobs = 21;
    ck_assert_int_eq(eng_submit(e, &r, &id), ENG_ERR_INVALID);
    r.sampling.logprobs = -1;
    r.sampling.max_tokens = 0;
    ck_assert_int_eq(eng_submit(e, &r, &id), ENG_ERR_INVALID);
    r.sampling.max_tokens = 3;
    r.sampling.min_tokens = 4;
    ck_assert_int_eq(eng_submit(e, &r, &id), ENG_ERR_INVALID);
    r.sampling.min_tokens = 0;
    r.sampling.temperature = NAN;
    ck_assert_int_eq(eng_submit(e, &r, &id), ENG_ERR_INVALID);
    ck_assert(strstr(eng_err_last(), "temperature") != NULL);
    r.sampling.temperature = 0;
    const char *bad_stop[] = {"\xff"};
    r.sampling.stop = bad_stop;
    r.sampling.n_stop = 1;
    ck_assert_int_eq(eng_submit(e, &r, &id), ENG_ERR_INVALID);
    r.sampling.n_stop = 0;
    eng_logit_bias lb = {TM_VOCAB + 3, 1.0f};
    r.sampling.logit_bias = &lb;
    r.sampling.n_logit_bias = 1;
    ck_assert_int_eq(eng_submit(e, &r, &id), ENG_ERR_INVALID);
    r.sampling.n_logit_bias = 0;
    int32_t bad_ids[2] = {5, TM_VOCAB};
    r.input = ENG_INPUT_TOKENS;
    r.tokens = bad_ids;
    r.n_tokens = 2;
    ck_assert_int_eq(eng_submit(e, &r, &id), ENG_ERR_INVALID);
    ck_assert(strstr(eng_err_last(), "vocabulary") != NULL);
    static int32_t long_ids[1024];
    for (int i = 0; i < 1024; i++) long_ids[i] = 100;
    r.tokens = long_ids;
    r.n_tokens = 1024; /* == max_model_len: no room for one token */
    ck_assert_int_eq(eng_submit(e, &r, &id), ENG_ERR_INVALID);
    ck_assert(strstr(eng_err_last(), "context") != NULL);

    /* failures found by the step thread: one ERROR event, the engine carries on */
    eng_request_init(&r);
    r.input = ENG_INPUT_CHAT;
    r.messages_json = "[{\"role\": \"user\", \"content\": ";
    static tm_result all[3];
    tm_result_init(&all[0], tm_submit(e, &r), 1);
    eng_request g;
    eng_request_init(&g);
    g.text = "fine";
    g.sampling.max_tokens = 2;
    tm_result_init(&all[1], tm_submit(e, &g), 1);
    static char huge[1200 * 6];
    for (int i = 0; i < 1200; i++) memcpy(huge + 6 * i, " word ", 6);
    huge[sizeof huge - 1] = '\0';
    eng_request_init(&r);
    r.text = huge; /* ~1200 tokens > the 1024 context */
    tm_result_init(&all[2], tm_submit(e, &r), 1);
    tm_drive(e, all, 3, 100, NULL, NULL);
    ck_assert(all[0].error);
    ck_assert_int_eq(all[0].err, ENG_ERR_INVALID);
    ck_assert(!all[1].error && all[1].ch[0].done);
    ck_assert(all[2].error);
    ck_assert_int_eq(all[2].err, ENG_ERR_INVALID);
    ck_assert_msg(strstr(all[2].err_msg, "context") != NULL, "%s", all[2].err_msg);
    ck_assert_int_eq(eng_cancel(e, all[0].id), ENG_ERR_NOT_FOUND);
    ck_assert(!eng_has_work(e));
    eng_destroy(e);

    /* the tokenizer knows more ids than the small model: such a text prompt is refused */
    c = tm_config_small();
    e = tm_engine(&c);
    eng_request_init(&r);
    r.text = "lowest"; /* one token, id >= 4096 */
    tm_run1(e, &r, &all[0]);
    ck_assert(all[0].error);
    ck_assert_int_eq(all[0].err, ENG_ERR_INVALID);
    ck_assert_msg(strstr(all[0].err_msg, "vocabulary") != NULL, "%s", all[0].err_msg);
    eng_destroy(e);
}
END_TEST

START_TEST(test_create_errors)
{
    eng_config c = tm_config_default();
    eng_engine *e = (eng_engine *)1;
    c.model_dir = "/nonexistent/model";
    ck_assert_int_ne(eng_create(&c, &e), ENG_OK);
    ck_assert_ptr_null(e);
    c = tm_config_default();
    c.device = "tpu";
    ck_assert_int_eq(eng_create(&c, &e), ENG_ERR_INVALID);
    c = tm_config_default();
    c.max_running = 0;
    ck_assert_int_eq(eng_create(&c, &e), ENG_ERR_INVALID);
    c = tm_config_default();
    c.kv_cache_bytes = 4096; /* 2 blocks: far less than the explicit 1024-token context */
    ck_assert_int_eq(eng_create(&c, &e), ENG_ERR_INVALID);
    ck_assert(strstr(eng_err_last(), "max_model_len") != NULL);
    c = tm_config_default();
    c.chat_template = "jinja-magic";
    ck_assert_int_eq(eng_create(&c, &e), ENG_ERR_INVALID);
    eng_destroy(NULL);
}
END_TEST

/* ==== tensor parallelism ====================================================================== */

/* The engine on 2 CPU ranks writes the tokens it writes on one: batched requests, an n > 1 fork
 * (state-slot copy on every rank) and prefix-cache snapshots (saved and restored across ranks). */
START_TEST(test_tensor_parallel)
{
    enum { N = 5 };
    int32_t ids[N][100];
    eng_request req[N];
    for (int i = 0; i < N; i++) {
        tm_ids(ids[i], 100, 50 + (uint64_t)i);
        if (i >= 3) memcpy(ids[i], ids[0], 60 * sizeof(int32_t)); /* shared prefixes: cache hits */
        eng_request_init(&req[i]);
        req[i].input = ENG_INPUT_TOKENS;
        req[i].tokens = ids[i];
        req[i].n_tokens = (size_t)(70 + 7 * i);
        req[i].sampling.max_tokens = 8;
        req[i].sampling.ignore_eos = true;
        req[i].sampling.n = i == 1 ? 3 : 1;
        req[i].sampling.temperature = i == 1 ? 0.8f : 0.0f;
        req[i].sampling.has_seed = true;
        req[i].sampling.seed = 9;
    }
    static tm_result res[2][N];
    for (int tp = 1; tp <= 2; tp++) {
        eng_config c = tm_config_small();
        c.model_dir = tm_tp;
        c.tp = tp;
        c.n_threads = 2;
        c.prefix_snapshot_every = 32;
        eng_engine *e = tm_engine(&c);
        eng_model_info mi;
        eng_get_model_info(e, &mi);
        ck_assert_int_eq(mi.tp, tp);
        tm_run1(e, &req[0], &res[tp - 1][0]); /* warms the prefix cache for requests 3 and 4 */
        for (int i = 1; i < N; i++) tm_result_init(&res[tp - 1][i], tm_submit(e, &req[i]), req[i].sampling.n);
        tm_drive(e, res[tp - 1] + 1, N - 1, 1000, NULL, NULL);
        eng_stats st;
        eng_get_stats(e, &st);
        ck_assert_uint_gt(st.prefix_cache_hit_tokens, 0);
        eng_destroy(e);
    }
    for (int i = 0; i < N; i++)
        for (int k = 0; k < req[i].sampling.n; k++) {
            ck_assert_int_eq(res[1][i].ch[k].n_tok, 8);
            ck_assert_msg(!memcmp(res[0][i].ch[k].tok, res[1][i].ch[k].tok, 8 * sizeof(int32_t)),
                          "request %d choice %d differs at tp 2", i, k);
        }
}
END_TEST

/* ==== allocation failures ===================================================================== */

/* Fails the n-th allocation after submission, for every n until a request completes without a
 * failure: each outcome must be clean (submit says NOMEM; or the request ends with an ERROR event
 * or completes normally; or eng_step reports NOMEM and the engine is destroyed), never a hang or a
 * leak (ASan), and an engine that did not report an error keeps working afterwards. */
START_TEST(test_alloc_failure_sweep)
{
    eng_config c = tm_config_default();
    eng_engine *e = tm_engine(&c);
    eng_request r;
    eng_request_init(&r);
    r.input = ENG_INPUT_CHAT;
    r.messages_json = "[{\"role\": \"user\", \"content\": \"Hello there\"}]";
    r.sampling.max_tokens = 4;
    r.sampling.n = 2;
    r.sampling.logprobs = 2;
    r.sampling.ignore_eos = true;
    const char *stops[] = {"@@none@@"};
    r.sampling.stop = stops;
    r.sampling.n_stop = 1;
    static tm_result ref, res;
    tm_run1(e, &r, &ref);
    int clean = 0, submit_fail = 0, event_fail = 0, step_fail = 0;
    for (long n = 0; n < 2000; n++) {
        long a0 = eng_alloc_count();
        eng_alloc_fail_after(n);
        uint64_t id = 0;
        eng_status st = eng_submit(e, &r, &id);
        if (st != ENG_OK) {
            eng_alloc_fail_after(-1);
            ck_assert_int_eq(st, ENG_ERR_NOMEM);
            submit_fail++;
            continue;
        }
        tm_result_init(&res, id, 2);
        bool poisoned = false;
        for (int step = 0; step < 200 && !tm_result_done(&res); step++) {
            eng_event ev[16];
            size_t k = 0;
            st = eng_step(e, ev, 16, &k);
            for (size_t i = 0; i < k; i++) tm_route(&res, 1, &ev[i], step);
            if (st != ENG_OK) {
                ck_assert_int_eq(st, ENG_ERR_NOMEM);
                poisoned = true;
                break;
            }
        }
        eng_alloc_fail_after(-1);
        bool failed_at_all =
            eng_alloc_count() - a0 >= n; /* n succeeded: the next one failed (or none came) */
        if (poisoned) {
            step_fail++;
            eng_destroy(e);
            e = tm_engine(&c);
            continue;
        }
        ck_assert_msg(tm_result_done(&res), "request %ld hangs after allocation failure %ld", (long)id, n);
        if (res.error) {
            ck_assert_int_eq(res.err, ENG_ERR_NOMEM);
            event_fail++;
        } else {
            for (int k = 0; k < 2; k++) { /* survived (a snapshot or such was skipped): same output */
                ck_assert_int_eq(res.ch[k].n_tok, 4);
                ck_assert_mem_eq(res.ch[k].tok, ref.ch[k].tok, 4 * sizeof(int32_t));
            }
            clean++;
        }
        if (!failed_at_all) break;
    }
    ck_assert_int_gt(submit_fail + event_fail + step_fail, 0);
    ck_assert_int_gt(clean, 0);
    tm_run1(e, &r, &res); /* the surviving engine still works */
    ck_assert_mem_eq(res.ch[1].tok, ref.ch[1].tok, 4 * sizeof(int32_t));
    eng_stats st;
    eng_get_stats(e, &st);
    ck_assert_int_eq(st.state_slots_used, 0);
    eng_destroy(e);
}
END_TEST

static Suite *engine_suite(void)
{
    Suite *s = suite_create("engine");
    TCase *tc = tcase_create("basics");
    tcase_add_test(tc, test_basic_generation);
    tcase_add_test(tc, test_chat_request);
    tcase_add_test(tc, test_invalid_requests);
    tcase_add_test(tc, test_create_errors);
    tcase_add_test(tc, test_queue_full);
    tcase_add_test(tc, test_alloc_failure_sweep);
    suite_add_tcase(s, tc);
    tc = tcase_create("scheduling");
    tcase_add_test(tc, test_batch_invariance);
    tcase_add_test(tc, test_batch_invariance_small_chunks);
    tcase_add_test(tc, test_chunked_prefill_logits);
    tcase_add_test(tc, test_cancel_mid_prefill_and_decode);
    tcase_add_test(tc, test_preemption_keeps_output);
    tcase_add_test(tc, test_priorities);
    tcase_add_test(tc, test_n_choices);
    tcase_add_test(tc, test_n_choices_no_free_slot);
    tcase_add_test(tc, test_tensor_parallel);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    eng_log_set_level(ENG_LOG_ERROR);
    tm_setup();
    SRunner *sr = srunner_create(engine_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    tm_cleanup();
    return failed ? 1 : 0;
}
