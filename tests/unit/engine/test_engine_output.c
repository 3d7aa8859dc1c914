/* tests/unit/engine/test_engine_output.c - the engine's output side on a tiny random model:
 *   - stop strings that span token boundaries (never emitted, text before them is), stop ids,
 *     EOS through logit bias, min_tokens, ignore_eos, max_tokens and the context limit
 *   - logprobs consistent with the sampled tokens (greedy = top-1; raw logprobs do not depend on
 *     temperature)
 *   - the QNEXT_TEST_FORCED_OUTPUT hook: a forced tool call comes out as tool-call deltas with
 *     finish tool_calls; forced reasoning is split from the answer; ids that name no token
 *   - events of one step delivered over several eng_step calls
 */
#include "test_engine_util.h"

#include "core/core.h" /* eng_log_set_level */

static eng_engine *E;

static void setup(void)
{
    eng_config c = tm_config_default();
    E = tm_engine(&c);
}

static void teardown(void)
{
    eng_destroy(E);
}

/* ==== stops =================================================================================== */

START_TEST(test_stop_string_across_tokens)
{
    eng_request r;
    eng_request_init(&r);
    r.sampling.max_tokens = 40;
    r.sampling.ignore_eos = true;
    static tm_result base, out;
    char stop[16] = "";
    const char *prompts[] = {"Tell me a story", "Once upon a time", "The weather today", "Numbers: 1, 2, 3",
                             "Hello there",     "abc def ghi",      "A B C D",           "qnext engine"};
    int k_found = -1;
    for (size_t p = 0; p < sizeof prompts / sizeof prompts[0] && k_found < 0; p++) {
        r.text = prompts[p];
        tm_run1(E, &r, &base);
        const tm_choice *b = &base.ch[0];
        for (int k = 1; k < b->n_tok && k_found < 0; k++) {
            int a0 = k >= 2 ? b->text_end[k - 2] : 0, a1 = b->text_end[k - 1], b1 = b->text_end[k];
            if (a1 - a0 < 2 || b1 - a1 < 1) continue;
            const char *t = b->text;
            bool ascii = true;
            for (int i = a1 - 2; i <= a1; i++) ascii &= (unsigned char)t[i] < 0x80 && t[i] > ' ';
            if (!ascii) continue;
            snprintf(stop, sizeof stop, "%.3s", t + a1 - 2); /* two bytes of token k-1, one of token k */
            if ((int)(strstr(t, stop) - t) != a1 - 2) continue;
            k_found = k;
        }
    }
    ck_assert_msg(k_found > 0, "no usable token boundary in the sample outputs");
    const char *stops[2] = {"@@never@@", stop};
    r.sampling.stop = stops;
    r.sampling.n_stop = 2;
    tm_run1(E, &r, &out);
    const tm_choice *b = &base.ch[0], *o = &out.ch[0];
    int at = b->text_end[k_found - 1] - 2;
    ck_assert_int_eq(o->finish, ENG_FINISH_STOP);
    ck_assert_str_eq(o->matched_stop, stop);
    ck_assert_int_eq(o->matched_token, -1);
    ck_assert_int_eq((int)strlen(o->text), at);
    ck_assert(!strncmp(o->text, b->text, (size_t)at));
    ck_assert(strstr(o->text, stop) == NULL);
    ck_assert_int_eq(o->n_tok, k_found + 1); /* the tokens up to the one that completed the stop */
    ck_assert_mem_eq(o->tok, b->tok, (size_t)o->n_tok * sizeof(int32_t));
    ck_assert_int_eq(o->usage.completion_tokens, k_found + 1);
}
END_TEST

START_TEST(test_stop_token_ids_and_min_tokens)
{
    eng_request r;
    eng_request_init(&r);
    r.text = "stop ids";
    r.sampling.max_tokens = 10;
    r.sampling.ignore_eos = true;
    static tm_result base, a, b;
    tm_run1(E, &r, &base);
    const int32_t *t = base.ch[0].tok;
    ck_assert(t[2] != t[0] && t[2] != t[1]);
    int32_t stop_id = t[2];
    r.sampling.stop_token_ids = &stop_id;
    r.sampling.n_stop_token_ids = 1;
    tm_run1(E, &r, &a);
    ck_assert_int_eq(a.ch[0].finish, ENG_FINISH_STOP);
    ck_assert_int_eq(a.ch[0].matched_token, stop_id);
    ck_assert_int_eq(a.ch[0].n_tok, 2);                   /* the stop id itself is not emitted ... */
    ck_assert_int_eq(a.ch[0].usage.completion_tokens, 3); /* ... but counted */
    ck_assert_mem_eq(a.ch[0].tok, t, 2 * sizeof(int32_t));
    ck_assert_int_eq((int)strlen(a.ch[0].text), base.ch[0].text_end[1]);

    r.sampling.min_tokens = 5; /* the stop id is masked for the first 5 tokens */
    tm_run1(E, &r, &b);
    ck_assert_mem_eq(b.ch[0].tok, t, 2 * sizeof(int32_t));
    ck_assert_int_ne(b.ch[0].tok[2], stop_id);
    for (int i = 0; i < 5 && i < b.ch[0].n_tok; i++) ck_assert_int_ne(b.ch[0].tok[i], stop_id);
    ck_assert_int_ge(b.ch[0].usage.completion_tokens, 5);
}
END_TEST

START_TEST(test_eos_min_tokens_ignore_eos)
{
    eng_request r;
    eng_request_init(&r);
    r.text = "end here";
    r.sampling.max_tokens = 10;
    eng_logit_bias lb = {TM_EOS, 100.0f}; /* the model now wants to stop at once */
    r.sampling.logit_bias = &lb;
    r.sampling.n_logit_bias = 1;
    static tm_result a, b, c;
    tm_run1(E, &r, &a);
    ck_assert_int_eq(a.ch[0].finish, ENG_FINISH_STOP);
    ck_assert_int_eq(a.ch[0].matched_token, -1); /* EOS, not a stop id */
    ck_assert_int_eq(a.ch[0].n_tok, 0);
    ck_assert_int_eq(a.ch[0].usage.completion_tokens, 1);
    ck_assert_str_eq(a.ch[0].text, "");

    r.sampling.min_tokens = 3;
    tm_run1(E, &r, &b);
    ck_assert_int_eq(b.ch[0].finish, ENG_FINISH_STOP);
    ck_assert_int_eq(b.ch[0].n_tok, 3);
    ck_assert_int_eq(b.ch[0].usage.completion_tokens, 4);
    for (int i = 0; i < 3; i++) ck_assert_int_ne(b.ch[0].tok[i], TM_EOS);

    r.sampling.min_tokens = 0;
    r.sampling.ignore_eos = true; /* EOS is an ordinary token now (its text is skipped) */
    tm_run1(E, &r, &c);
    ck_assert_int_eq(c.ch[0].finish, ENG_FINISH_LENGTH);
    ck_assert_int_eq(c.ch[0].n_tok, 10);
    ck_assert_int_eq(c.ch[0].tok[0], TM_EOS);
}
END_TEST

START_TEST(test_context_limit)
{
    eng_destroy(E);
    eng_config c = tm_config_default();
    c.max_model_len = 40;
    E = tm_engine(&c);
    int32_t ids[30];
    tm_ids(ids, 30, 5);
    eng_request r;
    eng_request_init(&r);
    r.input = ENG_INPUT_TOKENS;
    r.tokens = ids;
    r.n_tokens = 30;
    r.sampling.ignore_eos = true; /* no max_tokens: up to the context */
    static tm_result a;
    tm_run1(E, &r, &a);
    ck_assert_int_eq(a.ch[0].finish, ENG_FINISH_LENGTH);
    ck_assert_int_eq(a.ch[0].n_tok, 10);
    r.sampling.max_tokens = 100; /* capped by the context too */
    tm_run1(E, &r, &a);
    ck_assert_int_eq(a.ch[0].n_tok, 10);
    r.sampling.max_tokens = 4;
    tm_run1(E, &r, &a);
    ck_assert_int_eq(a.ch[0].n_tok, 4);
    ck_assert_int_eq(a.ch[0].finish, ENG_FINISH_LENGTH);
}
END_TEST

/* ==== logprobs ================================================================================ */

START_TEST(test_logprobs)
{
    eng_request r;
    eng_request_init(&r);
    r.text = "logprobs please";
    r.sampling.max_tokens = 12;
    r.sampling.ignore_eos = true;
    r.sampling.logprobs = 4;
    static tm_result g, s, s0;
    tm_run1(E, &r, &g);
    const tm_choice *c = &g.ch[0];
    ck_assert_int_eq(c->n_lp, 12);
    for (int i = 0; i < c->n_tok; i++) {
        ck_assert_int_eq(c->n_top[i], 4);
        ck_assert_int_eq(c->top[i][0].token, c->tok[i]); /* greedy: the sampled token is the top one */
        ck_assert_float_eq(c->lp[i], c->top[i][0].logprob);
        ck_assert(c->lp[i] <= 0);
        for (int k = 1; k < 4; k++) ck_assert(c->top[i][k - 1].logprob >= c->top[i][k].logprob);
    }
    /* sampled: the token's logprob is the raw one (equal to its entry when listed); the first
     * token's distribution does not depend on temperature */
    r.sampling.temperature = 1.5f;
    r.sampling.top_k = 0;
    r.sampling.top_p = 1;
    r.sampling.has_seed = true;
    r.sampling.seed = 11;
    tm_run1(E, &r, &s);
    const tm_choice *d = &s.ch[0];
    ck_assert_int_eq(d->n_lp, 12);
    for (int k = 0; k < 4; k++) {
        ck_assert_int_eq(d->top[0][k].token, c->top[0][k].token);
        ck_assert_float_eq(d->top[0][k].logprob, c->top[0][k].logprob);
    }
    int off_top = 0;
    for (int i = 0; i < d->n_tok; i++) {
        ck_assert(d->lp[i] <= 0 && d->lp[i] <= d->top[i][0].logprob);
        bool listed = false;
        for (int k = 0; k < 4; k++)
            if (d->top[i][k].token == d->tok[i]) {
                listed = true;
                ck_assert_float_eq(d->lp[i], d->top[i][k].logprob);
            }
        off_top += !listed;
    }
    ck_assert_int_gt(off_top, 0); /* at temperature 1.5 some tokens come from the tail */
    r.sampling.logprobs = 0;      /* the sampled token only */
    tm_run1(E, &r, &s0);
    ck_assert_int_eq(s0.ch[0].n_lp, 12);
    ck_assert_int_eq(s0.ch[0].n_top[0], 0);
    ck_assert_mem_eq(s0.ch[0].tok, d->tok, 12 * sizeof(int32_t)); /* logprobs do not change sampling */
    ck_assert_float_eq(s0.ch[0].lp[3], d->lp[3]);
}
END_TEST

START_TEST(test_small_event_batches)
{
    /* 7 requests x 3 choices finishing together: one step makes more events than eng_step's cap */
    eng_request r;
    eng_request_init(&r);
    r.sampling.max_tokens = 3;
    r.sampling.ignore_eos = true;
    r.sampling.n = 3;
    static tm_result res[7];
    char text[7][16];
    for (int i = 0; i < 7; i++) {
        snprintf(text[i], sizeof text[i], "req %d", i);
        r.text = text[i];
        tm_result_init(&res[i], tm_submit(E, &r), 3);
    }
    tm_drive(E, res, 7, 100, NULL, NULL);
    for (int i = 0; i < 7; i++)
        for (int k = 0; k < 3; k++) {
            ck_assert(res[i].ch[k].done);
            ck_assert_int_eq(res[i].ch[k].n_tok, 3);
        }
}
END_TEST

/* ==== the forced-output test hook ============================================================= */

static const char forced_rules[] =
    "{\"rules\": [\n"
    "  {\"marker\": \"@@tool@@\", \"text\": \"<tool_call>\\n{\\\"name\\\": \\\"get_weather\\\", "
    "\\\"arguments\\\": "
    "{\\\"city\\\": \\\"Paris\\\"}}\\n</tool_call><|im_end|>\"},\n"
    "  {\"marker\": \"@@think@@\", \"text\": \"Let me think.\\n</think>\\n\\nThe answer is 4.<|im_end|>\"},\n"
    "  {\"marker\": \"@@gap@@\", \"tokens\": [151800, 9707, 151800, 1879]}\n"
    "]}\n";

static eng_engine *forced_engine(const char *template_name)
{
    tm_write_file(tm_model, "forced.json", forced_rules, sizeof forced_rules - 1);
    char path[1024];
    snprintf(path, sizeof path, "%s/forced.json", tm_model);
    setenv("QNEXT_TEST_FORCED_OUTPUT", path, 1);
    eng_config c = tm_config_default();
    c.chat_template = template_name;
    eng_engine *e = tm_engine(&c);
    unsetenv("QNEXT_TEST_FORCED_OUTPUT");
    return e;
}

static const char tools[] =
    "[{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"parameters\": "
    "{\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}}}}]";

START_TEST(test_forced_tool_call)
{
    eng_engine *e = forced_engine(NULL);
    eng_request r;
    eng_request_init(&r);
    r.input = ENG_INPUT_CHAT;
    r.messages_json = "[{\"role\": \"user\", \"content\": \"Weather in Paris? @@tool@@\"}]";
    r.tools_json = tools;
    r.sampling.logprobs = 1;
    static tm_result a, b, c;
    tm_run1(e, &r, &a);
    const tm_choice *x = &a.ch[0];
    ck_assert(!a.error);
    ck_assert_int_eq(x->finish, ENG_FINISH_TOOL_CALLS);
    ck_assert_int_eq(x->n_tool_calls, 1);
    ck_assert_str_eq(x->tool_name, "get_weather");
    ck_assert(!strncmp(x->tool_id, "call_", 5));
    ck_assert_str_eq(x->tool_args, "{\"city\": \"Paris\"}");
    ck_assert_str_eq(x->content, "");
    ck_assert_str_eq(
        x->text,
        "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>");
    ck_assert_int_eq(x->n_lp, x->n_tok); /* forced tokens get the model's raw logprobs */
    for (int i = 0; i < x->n_tok; i++) ck_assert(x->lp[i] <= 0);
    ck_assert_int_eq(x->usage.completion_tokens, x->n_tok + 1); /* + the EOS */

    /* without tools the same text stays content; without the marker the model samples */
    r.tools_json = NULL;
    tm_run1(e, &r, &b);
    ck_assert_int_eq(b.ch[0].finish, ENG_FINISH_STOP);
    ck_assert_str_eq(b.ch[0].content, x->text);
    r.messages_json = "[{\"role\": \"user\", \"content\": \"Weather in Paris?\"}]";
    r.tools_json = tools;
    r.sampling.max_tokens = 6;
    r.sampling.ignore_eos = true;
    tm_run1(e, &r, &c);
    ck_assert_int_eq(c.ch[0].finish, ENG_FINISH_LENGTH);
    ck_assert_int_eq(c.ch[0].n_tool_calls, 0);
    eng_destroy(e);
}
END_TEST

START_TEST(test_forced_reasoning)
{
    eng_engine *e = forced_engine("thinking");
    eng_request r;
    eng_request_init(&r);
    r.input = ENG_INPUT_CHAT;
    r.messages_json = "[{\"role\": \"user\", \"content\": \"2 + 2? @@think@@\"}]";
    static tm_result a, b;
    tm_run1(e, &r, &a);
    const tm_choice *x = &a.ch[0];
    ck_assert_int_eq(x->finish, ENG_FINISH_STOP);
    ck_assert_str_eq(x->reasoning, "Let me think.");
    ck_assert_str_eq(x->content, "The answer is 4.");
    ck_assert_int_gt(x->usage.reasoning_tokens, 0);
    ck_assert_int_lt(x->usage.reasoning_tokens, x->usage.completion_tokens);
    eng_model_info mi;
    eng_get_model_info(e, &mi);
    ck_assert_str_eq(mi.template_kind, "thinking");
    /* raw output: no parsing */
    r.parse_output = false;
    tm_run1(e, &r, &b);
    ck_assert_str_eq(b.ch[0].content, "Let me think.\n</think>\n\nThe answer is 4.");
    ck_assert_str_eq(b.ch[0].reasoning, "");
    eng_destroy(e);
}
END_TEST

START_TEST(test_forced_ids_without_tokens)
{
    eng_engine *e = forced_engine(NULL);
    eng_request r;
    eng_request_init(&r);
    r.text = "@@gap@@";
    r.sampling.max_tokens = 4;
    static tm_result a;
    tm_run1(e, &r, &a);
    /* 151800 is inside the model's vocabulary but names no tokenizer token: no text, no failure */
    ck_assert_int_eq(a.ch[0].n_tok, 4);
    ck_assert_int_eq(a.ch[0].tok[0], 151800);
    ck_assert_str_eq(a.ch[0].text, "Hello world");
    eng_destroy(e);

    /* the hook is off unless the variable is set */
    eng_config c = tm_config_default();
    e = tm_engine(&c);
    tm_run1(e, &r, &a);
    ck_assert_int_ne(a.ch[0].tok[0], 151800);
    eng_destroy(e);

    /* a broken rules file is a load error naming it */
    const char *bad = "{\"rules\": [{\"marker\": 1}]}";
    tm_write_file(tm_model, "forced.json", bad, strlen(bad));
    char path[1024];
    snprintf(path, sizeof path, "%s/forced.json", tm_model);
    setenv("QNEXT_TEST_FORCED_OUTPUT", path, 1);
    e = (eng_engine *)1;
    ck_assert_int_eq(eng_create(&c, &e), ENG_ERR_FORMAT);
    ck_assert(strstr(eng_err_last(), "forced.json") != NULL);
    unsetenv("QNEXT_TEST_FORCED_OUTPUT");
}
END_TEST

static Suite *output_suite(void)
{
    Suite *s = suite_create("engine_output");
    TCase *tc = tcase_create("stops");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_stop_string_across_tokens);
    tcase_add_test(tc, test_stop_token_ids_and_min_tokens);
    tcase_add_test(tc, test_eos_min_tokens_ignore_eos);
    tcase_add_test(tc, test_context_limit);
    tcase_add_test(tc, test_logprobs);
    tcase_add_test(tc, test_small_event_batches);
    suite_add_tcase(s, tc);
    tc = tcase_create("forced_output_hook");
    tcase_add_test(tc, test_forced_tool_call);
    tcase_add_test(tc, test_forced_reasoning);
    tcase_add_test(tc, test_forced_ids_without_tokens);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    eng_log_set_level(ENG_LOG_ERROR);
    tm_setup();
    SRunner *sr = srunner_create(output_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    tm_cleanup();
    return failed ? 1 : 0;
}
