/* tests/unit/grpc_service/test_gsvc_stream.c - grpc_service/stream.c without a network: the send
 * state machine (one send in flight, status last), coalescing of deltas while a send is in flight,
 * per-choice order, the 2n item bound, the backlog cap, error/abort/cancel paths, OOM safety. */
#include "stream.h"

#include <grpc/status.h>

#include <check.h>
#include <stdlib.h>
#include <string.h>

/* ==== helpers ================================================================================= */

static eng_event tokens_ev(int choice, int32_t *ids, size_t n, const char *text)
{
    eng_event e;
    memset(&e, 0, sizeof e);
    e.kind = ENG_EV_TOKENS;
    e.choice = choice;
    e.tokens = ids;
    e.n_tokens = n;
    e.text = text;
    e.content = text;
    e.reasoning = "";
    e.matched_stop_token = -1;
    return e;
}

static eng_event done_ev(int choice, eng_finish_reason why)
{
    eng_event e;
    memset(&e, 0, sizeof e);
    e.kind = ENG_EV_DONE;
    e.choice = choice;
    e.finish = why;
    e.matched_stop_token = -1;
    e.usage.completion_tokens = 7;
    return e;
}

static void push_tok(gsvc_stream *s, int choice, int32_t id, const char *text)
{
    int32_t ids[1] = {id};
    eng_event e = tokens_ev(choice, ids, 1, text);
    ck_assert_int_eq(gsvc_stream_push(s, &e), ENG_OK);
}

static void push_done(gsvc_stream *s, int choice, eng_finish_reason why)
{
    eng_event e = done_ev(choice, why);
    ck_assert_int_eq(gsvc_stream_push(s, &e), ENG_OK);
}

/* Takes the next message; asserts there is one. */
static const gsvc_item *take(gsvc_stream *s)
{
    const gsvc_item *it;
    ck_assert_int_eq(gsvc_stream_next(s, &it), GSVC_ACT_SEND_MESSAGE);
    ck_assert_ptr_nonnull(it);
    return it;
}

/* ==== the basic sequence ====================================================================== */

START_TEST(test_single_choice_sequence)
{
    gsvc_stream s;
    ck_assert_int_eq(gsvc_stream_init(&s, 1, 1 << 20, false), ENG_OK);
    const gsvc_item *it;
    ck_assert_int_eq(gsvc_stream_next(&s, &it), GSVC_ACT_NONE); /* nothing yet */

    push_tok(&s, 0, 11, " a");
    it = take(&s);
    ck_assert(!it->is_final);
    ck_assert_uint_eq(it->n_tokens, 1);
    ck_assert_int_eq(it->tokens[0], 11);
    ck_assert_str_eq(gsvc_buf_str(&it->text), " a");
    ck_assert_int_eq(gsvc_stream_next(&s, &it), GSVC_ACT_NONE); /* one send in flight */

    /* while in flight: three more tokens coalesce into one Delta */
    push_tok(&s, 0, 12, " b");
    push_tok(&s, 0, 13, " c");
    push_tok(&s, 0, 14, "");
    ck_assert_uint_eq(s.count, 1);
    /* an event that adds nothing queues nothing */
    eng_event empty = tokens_ev(0, NULL, 0, "");
    ck_assert_int_eq(gsvc_stream_push(&s, &empty), ENG_OK);
    ck_assert_uint_eq(s.count, 1);
    ck_assert_int_eq(gsvc_stream_next(&s, &it), GSVC_ACT_NONE);
    gsvc_stream_sent(&s, true);
    it = take(&s);
    ck_assert_uint_eq(it->n_tokens, 3);
    ck_assert_int_eq(it->tokens[0], 12);
    ck_assert_int_eq(it->tokens[2], 14);
    ck_assert_str_eq(gsvc_buf_str(&it->text), " b c");
    ck_assert_str_eq(gsvc_buf_str(&it->content), " b c");

    push_done(&s, 0, ENG_FINISH_LENGTH);
    ck_assert(gsvc_stream_all_final(&s));
    gsvc_stream_sent(&s, true);
    it = take(&s);
    ck_assert(it->is_final);
    ck_assert_int_eq(it->finish, ENG_FINISH_LENGTH);
    ck_assert_int_eq(it->usage.completion_tokens, 7);
    ck_assert(!it->has_matched_stop_token);
    ck_assert_int_eq(gsvc_stream_next(&s, &it), GSVC_ACT_NONE);
    gsvc_stream_sent(&s, true);
    ck_assert_int_eq(gsvc_stream_next(&s, &it), GSVC_ACT_SEND_STATUS);
    ck_assert_int_eq(s.status_code, GRPC_STATUS_OK);
    ck_assert_int_eq(gsvc_stream_next(&s, &it), GSVC_ACT_NONE);
    gsvc_stream_sent(&s, true);
    ck_assert_int_eq(s.state, GSVC_STREAM_STATUS_SENT);
    ck_assert_int_eq(gsvc_stream_next(&s, &it), GSVC_ACT_NONE);
    ck_assert_uint_eq(s.n_messages_sent, 3);
    gsvc_stream_closed(&s, false);
    ck_assert_int_eq(s.state, GSVC_STREAM_STATUS_SENT);
    gsvc_stream_free(&s);
    gsvc_stream_free(&s); /* idempotent */
}
END_TEST

START_TEST(test_final_follows_pending_delta)
{
    gsvc_stream s;
    ck_assert_int_eq(gsvc_stream_init(&s, 1, 1 << 20, false), ENG_OK);
    push_tok(&s, 0, 1, "x");
    (void)take(&s);
    push_tok(&s, 0, 2, "y");
    eng_event d = done_ev(0, ENG_FINISH_STOP);
    d.matched_stop = "STOP";
    d.matched_stop_token = 0; /* a real token id 0 */
    ck_assert_int_eq(gsvc_stream_push(&s, &d), ENG_OK);
    gsvc_stream_sent(&s, true);
    const gsvc_item *it = take(&s);
    ck_assert(!it->is_final);
    ck_assert_int_eq(it->tokens[0], 2);
    gsvc_stream_sent(&s, true);
    it = take(&s);
    ck_assert(it->is_final);
    ck_assert_str_eq(gsvc_buf_str(&it->matched_stop), "STOP");
    ck_assert(it->has_matched_stop_token);
    ck_assert_int_eq(it->matched_stop_token, 0);
    gsvc_stream_free(&s);
}
END_TEST

/* ==== several choices ========================================================================= */

START_TEST(test_choices_interleave_in_order)
{
    gsvc_stream s;
    ck_assert_int_eq(gsvc_stream_init(&s, 3, 1 << 20, false), ENG_OK);
    push_tok(&s, 1, 100, "p");
    (void)take(&s); /* choice 1, in flight */
    push_tok(&s, 0, 200, "q");
    push_tok(&s, 2, 300, "r");
    push_tok(&s, 0, 201, "s");
    push_done(&s, 2, ENG_FINISH_STOP);
    push_tok(&s, 1, 101, "t");
    ck_assert_uint_eq(s.count, 4); /* c0 delta, c2 delta, c2 final, c1 delta */
    int order_choice[4], order_final[4];
    for (int i = 0; i < 4; i++) {
        gsvc_stream_sent(&s, true);
        const gsvc_item *it = take(&s);
        order_choice[i] = it->choice;
        order_final[i] = it->is_final;
        if (it->choice == 0) {
            ck_assert_uint_eq(it->n_tokens, 2);
            ck_assert_str_eq(gsvc_buf_str(&it->text), "qs");
        }
    }
    ck_assert_int_eq(order_choice[0], 0);
    ck_assert_int_eq(order_choice[1], 2);
    ck_assert_int_eq(order_final[1], 0);
    ck_assert_int_eq(order_choice[2], 2);
    ck_assert_int_eq(order_final[2], 1);
    ck_assert_int_eq(order_choice[3], 1);
    ck_assert(!gsvc_stream_all_final(&s));
    push_done(&s, 0, ENG_FINISH_STOP);
    push_done(&s, 1, ENG_FINISH_STOP);
    ck_assert(gsvc_stream_all_final(&s));
    gsvc_stream_free(&s);
}
END_TEST

START_TEST(test_queue_never_exceeds_two_per_choice)
{
    enum { N = 8 };
    gsvc_stream s;
    ck_assert_int_eq(gsvc_stream_init(&s, N, 1 << 24, false), ENG_OK);
    push_tok(&s, 0, 1, "a");
    (void)take(&s); /* in flight for the rest of the test: nothing drains */
    for (int round = 0; round < 1000; round++)
        for (int c = 0; c < N; c++) {
            push_tok(&s, c, 1000 + round, "w");
            ck_assert_uint_le(s.count, 2 * N);
        }
    for (int c = 0; c < N; c++) push_done(&s, c, ENG_FINISH_LENGTH);
    ck_assert_uint_eq(s.count, 2 * N);
    /* drain: per choice one Delta of 1000 tokens then its Final */
    int seen_final[N] = {0};
    for (int i = 0; i < 2 * N; i++) {
        gsvc_stream_sent(&s, true);
        const gsvc_item *it = take(&s);
        if (it->is_final) {
            seen_final[it->choice] = 1;
        } else {
            ck_assert(!seen_final[it->choice]);
            ck_assert_uint_eq(it->n_tokens, 1000);
            ck_assert_int_eq(it->tokens[999], 1999);
        }
    }
    gsvc_stream_sent(&s, true);
    const gsvc_item *it;
    ck_assert_int_eq(gsvc_stream_next(&s, &it), GSVC_ACT_SEND_STATUS);
    gsvc_stream_free(&s);
}
END_TEST

/* ==== tool calls, logprobs, skip_text, sanitising ============================================= */

START_TEST(test_tool_fragments_merge)
{
    gsvc_stream s;
    ck_assert_int_eq(gsvc_stream_init(&s, 1, 1 << 20, false), ENG_OK);
    push_tok(&s, 0, 1, "x");
    (void)take(&s);
    eng_tool_delta a[2] = {{0, "call_A", "get", ""}, {0, NULL, NULL, "{\"q\":"}};
    eng_tool_delta b[3] = {{0, NULL, NULL, " 1}"}, {1, "call_B", "put", ""}, {1, NULL, NULL, "{}"}};
    eng_event e = tokens_ev(0, NULL, 0, "");
    e.tool_deltas = a;
    e.n_tool_deltas = 2;
    ck_assert_int_eq(gsvc_stream_push(&s, &e), ENG_OK);
    e.tool_deltas = b;
    e.n_tool_deltas = 3;
    ck_assert_int_eq(gsvc_stream_push(&s, &e), ENG_OK);
    gsvc_stream_sent(&s, true);
    const gsvc_item *it = take(&s);
    ck_assert_uint_eq(it->n_tools, 2);
    ck_assert_int_eq(it->tools[0].index, 0);
    ck_assert_str_eq(gsvc_buf_str(&it->tools[0].id), "call_A");
    ck_assert_str_eq(gsvc_buf_str(&it->tools[0].name), "get");
    ck_assert_str_eq(gsvc_buf_str(&it->tools[0].arguments), "{\"q\": 1}");
    ck_assert_int_eq(it->tools[1].index, 1);
    ck_assert_str_eq(gsvc_buf_str(&it->tools[1].name), "put");
    ck_assert_str_eq(gsvc_buf_str(&it->tools[1].arguments), "{}");
    gsvc_stream_free(&s);
}
END_TEST

START_TEST(test_logprobs_coalesce)
{
    gsvc_stream s;
    ck_assert_int_eq(gsvc_stream_init(&s, 1, 1 << 20, false), ENG_OK);
    push_tok(&s, 0, 1, "x");
    (void)take(&s);
    eng_top_logprob t1[2] = {{7, -1.0f}, {8, -2.0f}}, t2[1] = {{9, -3.0f}};
    eng_token_logprob l1 = {5, -0.5f, t1, 2}, l2 = {6, -0.25f, t2, 1};
    int32_t i1 = 5, i2 = 6;
    eng_event e = tokens_ev(0, &i1, 1, "a");
    e.logprobs = &l1;
    ck_assert_int_eq(gsvc_stream_push(&s, &e), ENG_OK);
    e = tokens_ev(0, &i2, 1, "b");
    e.logprobs = &l2;
    ck_assert_int_eq(gsvc_stream_push(&s, &e), ENG_OK);
    gsvc_stream_sent(&s, true);
    const gsvc_item *it = take(&s);
    ck_assert_uint_eq(it->n_lps, 2);
    ck_assert_uint_eq(it->n_tops, 3);
    ck_assert_int_eq(it->lps[1].token, 6);
    ck_assert_uint_eq(it->lps[1].top_off, 2);
    ck_assert_uint_eq(it->lps[1].n_top, 1);
    ck_assert_int_eq(it->tops[it->lps[1].top_off].token, 9);
    ck_assert_int_eq(it->tops[1].token, 8);
    gsvc_stream_free(&s);
}
END_TEST

START_TEST(test_empty_event_sends_nothing)
{
    gsvc_stream s;
    ck_assert_int_eq(gsvc_stream_init(&s, 1, 1 << 20, true), ENG_OK);
    eng_event e = tokens_ev(0, NULL, 0, "held back"); /* text only, and skip_text */
    ck_assert_int_eq(gsvc_stream_push(&s, &e), ENG_OK);
    const gsvc_item *it;
    ck_assert_int_eq(gsvc_stream_next(&s, &it), GSVC_ACT_NONE);
    gsvc_stream_free(&s);
}
END_TEST

START_TEST(test_skip_text)
{
    gsvc_stream s;
    ck_assert_int_eq(gsvc_stream_init(&s, 1, 1 << 20, true), ENG_OK);
    eng_tool_delta td = {0, "id", "n", "{}"};
    int32_t id = 42;
    eng_event e = tokens_ev(0, &id, 1, "text");
    e.reasoning = "why";
    e.tool_deltas = &td;
    e.n_tool_deltas = 1;
    ck_assert_int_eq(gsvc_stream_push(&s, &e), ENG_OK);
    const gsvc_item *it = take(&s);
    ck_assert_uint_eq(it->n_tokens, 1);
    ck_assert_uint_eq(it->text.len, 0);
    ck_assert_uint_eq(it->content.len, 0);
    ck_assert_uint_eq(it->reasoning.len, 0);
    ck_assert_uint_eq(it->n_tools, 0);
    gsvc_stream_free(&s);
}
END_TEST

START_TEST(test_bad_utf8_from_engine_is_repaired)
{
    gsvc_stream s;
    ck_assert_int_eq(gsvc_stream_init(&s, 1, 1 << 20, false), ENG_OK);
    push_tok(&s, 0, 1, "ok\xff");
    const gsvc_item *it = take(&s);
    ck_assert_str_eq(gsvc_buf_str(&it->text), "ok\xEF\xBF\xBD");
    gsvc_stream_free(&s);
}
END_TEST

/* ==== limits and failures ===================================================================== */

START_TEST(test_backlog_cap)
{
    gsvc_stream s;
    ck_assert_int_eq(gsvc_stream_init(&s, 1, 100, false), ENG_OK);
    push_tok(&s, 0, 1, "x");
    (void)take(&s);
    char text[41];
    memset(text, 't', 40);
    text[40] = '\0';
    push_tok(&s, 0, 2, text); /* 5 + 2*40 = 85 bytes queued */
    int32_t id = 3;
    eng_event e = tokens_ev(0, &id, 1, text);
    ck_assert_int_eq(gsvc_stream_push(&s, &e), ENG_ERR_QUEUE_FULL);
    /* unchanged: the queued delta still holds only token 2 */
    ck_assert_uint_eq(s.count, 1);
    gsvc_stream_sent(&s, true);
    const gsvc_item *it = take(&s);
    ck_assert_uint_eq(it->n_tokens, 1);
    ck_assert_int_eq(it->tokens[0], 2);
    ck_assert_uint_eq(s.backlog, 0);
    /* Finals are not subject to the cap */
    push_tok(&s, 0, 4, text);
    push_tok(&s, 0, 5, "");
    push_done(&s, 0, ENG_FINISH_STOP);
    gsvc_stream_free(&s);
}
END_TEST

START_TEST(test_error_finishes_open_choices)
{
    gsvc_stream s;
    ck_assert_int_eq(gsvc_stream_init(&s, 3, 1 << 20, false), ENG_OK);
    push_tok(&s, 0, 1, "a");
    (void)take(&s);
    push_done(&s, 1, ENG_FINISH_STOP);
    push_tok(&s, 2, 2, "b");
    gsvc_stream_error(&s, GRPC_STATUS_INTERNAL, "device lost");
    ck_assert(gsvc_stream_all_final(&s));
    /* choice 1 final, choice 2 delta, then ERROR finals for choices 0 and 2 */
    int finals_err = 0, n = 0;
    for (;;) {
        gsvc_stream_sent(&s, true);
        const gsvc_item *it;
        gsvc_stream_act a = gsvc_stream_next(&s, &it);
        if (a == GSVC_ACT_SEND_STATUS) break;
        ck_assert_int_eq(a, GSVC_ACT_SEND_MESSAGE);
        n++;
        if (it->is_final && it->finish == ENG_FINISH_ERROR) {
            finals_err++;
            ck_assert_str_eq(gsvc_buf_str(&it->error_message), "device lost");
            ck_assert_int_ne(it->choice, 1);
        }
    }
    ck_assert_int_eq(n, 4);
    ck_assert_int_eq(finals_err, 2);
    ck_assert_int_eq(s.status_code, GRPC_STATUS_INTERNAL);
    ck_assert_str_eq(gsvc_buf_str(&s.status_message), "device lost");
    /* the engine sends nothing after an error; a stray delta is reported, not queued */
    int32_t id = 9;
    eng_event e = tokens_ev(0, &id, 1, "late");
    ck_assert_int_eq(gsvc_stream_push(&s, &e), ENG_ERR_INVALID); /* choice 0 has its Final */
    gsvc_stream_free(&s);
}
END_TEST

START_TEST(test_abort_drops_queue)
{
    gsvc_stream s;
    ck_assert_int_eq(gsvc_stream_init(&s, 2, 1 << 20, false), ENG_OK);
    push_tok(&s, 0, 1, "a");
    (void)take(&s);
    push_tok(&s, 0, 2, "b");
    push_tok(&s, 1, 3, "c");
    gsvc_stream_abort(&s, GRPC_STATUS_RESOURCE_EXHAUSTED, "slow client");
    ck_assert_uint_eq(s.count, 0);
    const gsvc_item *it;
    ck_assert_int_eq(gsvc_stream_next(&s, &it), GSVC_ACT_NONE); /* wait for the send in flight */
    push_tok(&s, 1, 4, "ignored");
    ck_assert_uint_eq(s.count, 0);
    gsvc_stream_sent(&s, true);
    ck_assert_int_eq(gsvc_stream_next(&s, &it), GSVC_ACT_SEND_STATUS);
    ck_assert_int_eq(s.status_code, GRPC_STATUS_RESOURCE_EXHAUSTED);
    /* the engine's CANCELLED finals still count the choices down */
    ck_assert(!gsvc_stream_all_final(&s));
    push_done(&s, 0, ENG_FINISH_CANCELLED);
    push_done(&s, 1, ENG_FINISH_CANCELLED);
    ck_assert(gsvc_stream_all_final(&s));
    gsvc_stream_free(&s);
}
END_TEST

START_TEST(test_client_cancel_and_failed_send)
{
    gsvc_stream s;
    ck_assert_int_eq(gsvc_stream_init(&s, 1, 1 << 20, false), ENG_OK);
    push_tok(&s, 0, 1, "a");
    (void)take(&s);
    push_tok(&s, 0, 2, "b");
    gsvc_stream_closed(&s, true);
    ck_assert_int_eq(s.state, GSVC_STREAM_GONE);
    gsvc_stream_sent(&s, false);
    const gsvc_item *it;
    ck_assert_int_eq(gsvc_stream_next(&s, &it), GSVC_ACT_NONE);
    push_tok(&s, 0, 3, "c");
    ck_assert_uint_eq(s.count, 0);
    push_done(&s, 0, ENG_FINISH_CANCELLED);
    ck_assert(gsvc_stream_all_final(&s));
    ck_assert_int_eq(gsvc_stream_next(&s, &it), GSVC_ACT_NONE); /* no status to a gone client */
    gsvc_stream_free(&s);

    ck_assert_int_eq(gsvc_stream_init(&s, 1, 1 << 20, false), ENG_OK);
    push_tok(&s, 0, 1, "a");
    (void)take(&s);
    gsvc_stream_sent(&s, false); /* the write failed: the client is gone */
    ck_assert_int_eq(s.state, GSVC_STREAM_GONE);
    push_done(&s, 0, ENG_FINISH_STOP);
    ck_assert_int_eq(gsvc_stream_next(&s, &it), GSVC_ACT_NONE);
    gsvc_stream_free(&s);
}
END_TEST

START_TEST(test_invalid_events)
{
    gsvc_stream s;
    ck_assert_int_eq(gsvc_stream_init(&s, 0, 100, false), ENG_ERR_INVALID);
    gsvc_stream_free(&s);
    ck_assert_int_eq(gsvc_stream_init(&s, 129, 100, false), ENG_ERR_INVALID);
    gsvc_stream_free(&s);
    ck_assert_int_eq(gsvc_stream_init(&s, 2, 1 << 20, false), ENG_OK);
    int32_t id = 1;
    eng_event e = tokens_ev(2, &id, 1, "x");
    ck_assert_int_eq(gsvc_stream_push(&s, &e), ENG_ERR_INVALID);
    e.choice = -1;
    ck_assert_int_eq(gsvc_stream_push(&s, &e), ENG_ERR_INVALID);
    e = tokens_ev(0, &id, 1, "x");
    e.kind = ENG_EV_ERROR;
    ck_assert_int_eq(gsvc_stream_push(&s, &e), ENG_ERR_INVALID);
    push_done(&s, 0, ENG_FINISH_STOP);
    eng_event d = done_ev(0, ENG_FINISH_STOP);
    ck_assert_int_eq(gsvc_stream_push(&s, &d), ENG_ERR_INVALID); /* second final */
    e = tokens_ev(0, &id, 1, "x");
    ck_assert_int_eq(gsvc_stream_push(&s, &e), ENG_ERR_INVALID); /* tokens after the final */
    ck_assert_int_eq(s.n_open, 1);
    gsvc_stream_free(&s);
}
END_TEST

START_TEST(test_oom_leaves_stream_unchanged)
{
    eng_tool_delta td[2] = {{0, "call_x", "fn", "{"}, {0, NULL, NULL, "}"}};
    eng_top_logprob tops[3] = {{1, -1}, {2, -2}, {3, -3}};
    eng_token_logprob lp[2] = {{10, -0.1f, tops, 3}, {11, -0.2f, tops, 2}};
    int32_t ids[2] = {10, 11};
    int ok_at = -1;
    for (long k = 0; k < 60 && ok_at < 0; k++) {
        gsvc_stream s;
        ck_assert_int_eq(gsvc_stream_init(&s, 1, 1 << 20, false), ENG_OK);
        push_tok(&s, 0, 1, "first");
        (void)take(&s);
        push_tok(&s, 0, 2, "second");
        eng_event e = tokens_ev(0, ids, 2, "more text");
        e.reasoning = "thinking";
        e.tool_deltas = td;
        e.n_tool_deltas = 2;
        e.logprobs = lp;
        gsvc_alloc_fail_after(k);
        eng_status st = gsvc_stream_push(&s, &e);
        gsvc_alloc_fail_after(-1);
        gsvc_stream_sent(&s, true);
        const gsvc_item *it = take(&s);
        if (st == ENG_OK) {
            ok_at = (int)k;
            ck_assert_uint_eq(it->n_tokens, 3);
            ck_assert_str_eq(gsvc_buf_str(&it->text), "secondmore text");
            ck_assert_uint_eq(it->n_tools, 1);
            ck_assert_str_eq(gsvc_buf_str(&it->tools[0].arguments), "{}");
            ck_assert_uint_eq(it->n_lps, 2);
            ck_assert_uint_eq(it->n_tops, 5);
        } else {
            ck_assert_int_eq(st, ENG_ERR_NOMEM);
            ck_assert_uint_eq(it->n_tokens, 1);
            ck_assert_str_eq(gsvc_buf_str(&it->text), "second");
            ck_assert_str_eq(gsvc_buf_str(&it->reasoning), "");
            ck_assert_uint_eq(it->n_tools, 0);
            ck_assert_uint_eq(it->n_lps, 0);
        }
        gsvc_stream_free(&s);
    }
    ck_assert_int_gt(ok_at, 3); /* the sweep went through several failure points */
}
END_TEST

static Suite *stream_suite(void)
{
    Suite *s = suite_create("gsvc_stream");
    TCase *tc = tcase_create("sequence");
    tcase_add_test(tc, test_single_choice_sequence);
    tcase_add_test(tc, test_final_follows_pending_delta);
    tcase_add_test(tc, test_choices_interleave_in_order);
    tcase_add_test(tc, test_queue_never_exceeds_two_per_choice);
    suite_add_tcase(s, tc);
    tc = tcase_create("content");
    tcase_add_test(tc, test_tool_fragments_merge);
    tcase_add_test(tc, test_logprobs_coalesce);
    tcase_add_test(tc, test_skip_text);
    tcase_add_test(tc, test_empty_event_sends_nothing);
    tcase_add_test(tc, test_bad_utf8_from_engine_is_repaired);
    suite_add_tcase(s, tc);
    tc = tcase_create("failures");
    tcase_add_test(tc, test_backlog_cap);
    tcase_add_test(tc, test_error_finishes_open_choices);
    tcase_add_test(tc, test_abort_drops_queue);
    tcase_add_test(tc, test_client_cancel_and_failed_send);
    tcase_add_test(tc, test_invalid_events);
    tcase_add_test(tc, test_oom_leaves_stream_unchanged);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(stream_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
