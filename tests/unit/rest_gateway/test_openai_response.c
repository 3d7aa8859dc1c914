/* tests/unit/rest_gateway/test_openai_response.c - golden bytes of the OpenAI responses and SSE
 * chunks built from Generate streams, the error object, the models list and the JSON writer.
 *
 * The expected strings are written by hand from the shapes in docs/serving-notes.md §1.3-§1.8
 * (OpenAI's recorded traces), not produced by the code under test.
 */
#include <check.h>

#include "core/core.h"
#include "json_write.h"
#include "openai_request.h"
#include "openai_response.h"

#include <math.h>
#include <string.h>

static gw_request *req;
static gw_xcode *x;
static eng_buf out;
static gw_error err;

static void setup(void)
{
    eng_buf_init(&out);
}

static void teardown(void)
{
    gw_xcode_destroy(x);
    x = NULL;
    gw_request_destroy(req);
    req = NULL;
    eng_buf_free(&out);
}

static void make(gw_api api, const char *body)
{
    ck_assert_int_eq(gw_request_parse(api, body, strlen(body), NULL, &req, &err), ENG_OK);
    gw_xcode_opts o = {.id = "chatcmpl-1", .model = "qn", .created = 1700000000};
    if (api == GW_API_COMPLETIONS) o.id = "cmpl-1";
    ck_assert_int_eq(gw_xcode_create(req, &o, &x), ENG_OK);
}

static const char *out_str(void)
{
    return eng_buf_cstr(&out);
}

/* ---- message builders (protobuf-c structs on the stack) -------------------------------------- */

static eng_status feed_delta(size_t call, uint32_t choice, const char *content, const char *reasoning,
                             Qnext__V1__ToolCallDelta **tools, size_t n_tools, Qnext__V1__TokenLogprob **lps,
                             size_t n_lps, const char *text)
{
    Qnext__V1__Delta d = QNEXT__V1__DELTA__INIT;
    int32_t ids[1] = {42};
    d.n_token_ids = 1;
    d.token_ids = ids;
    if (content) d.content = (char *)content;
    if (reasoning) d.reasoning = (char *)reasoning;
    if (text) d.text = (char *)text;
    d.n_tool_calls = n_tools;
    d.tool_calls = tools;
    d.n_logprobs = n_lps;
    d.logprobs = lps;
    Qnext__V1__GenerateResponse m = QNEXT__V1__GENERATE_RESPONSE__INIT;
    m.choice = choice;
    m.kind_case = QNEXT__V1__GENERATE_RESPONSE__KIND_DELTA;
    m.delta = &d;
    return gw_xcode_feed(x, call, &m, &out, &err);
}

static eng_status feed_final(size_t call, uint32_t choice, Qnext__V1__FinishReason fr, int p, int c, int cached,
                             int reasoning)
{
    Qnext__V1__Usage u = QNEXT__V1__USAGE__INIT;
    u.prompt_tokens = p;
    u.completion_tokens = c;
    u.cached_prompt_tokens = cached;
    u.reasoning_tokens = reasoning;
    Qnext__V1__Final f = QNEXT__V1__FINAL__INIT;
    f.finish_reason = fr;
    f.usage = &u;
    if (fr == QNEXT__V1__FINISH_REASON__FINISH_REASON_ERROR) f.error_message = "kaboom";
    Qnext__V1__GenerateResponse m = QNEXT__V1__GENERATE_RESPONSE__INIT;
    m.choice = choice;
    m.kind_case = QNEXT__V1__GENERATE_RESPONSE__KIND_FINAL;
    m.final = &f;
    return gw_xcode_feed(x, call, &m, &out, &err);
}

#define HEAD "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"qn\",\"choices\":["
#define USAGE(p, c, t, cached, r)                                                                                    \
    "{\"prompt_tokens\":" #p ",\"completion_tokens\":" #c ",\"total_tokens\":" #t                                    \
    ",\"prompt_tokens_details\":{\"cached_tokens\":" #cached "},\"completion_tokens_details\":{\"reasoning_tokens\":" #r "}}"

/* ==== chat streaming ========================================================================== */

START_TEST(test_chat_stream_content_and_usage)
{
    make(GW_API_CHAT, "{\"model\":\"qn\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stream\":true,"
                      "\"stream_options\":{\"include_usage\":true}}");
    ck_assert_int_eq(feed_delta(0, 0, "Hel", NULL, NULL, 0, NULL, 0, "Hel"), ENG_OK);
    ck_assert_int_eq(feed_delta(0, 0, "lo \"x\"\n", NULL, NULL, 0, NULL, 0, NULL), ENG_OK);
    ck_assert_int_eq(feed_final(0, 0, QNEXT__V1__FINISH_REASON__FINISH_REASON_STOP, 9, 2, 4, 0), ENG_OK);
    ck_assert_int_eq(gw_xcode_finish(x, &out, &err), ENG_OK);
    ck_assert_str_eq(out_str(),
                     HEAD "{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n"
                     HEAD "{\"index\":0,\"delta\":{\"content\":\"Hel\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n"
                     HEAD "{\"index\":0,\"delta\":{\"content\":\"lo \\\"x\\\"\\n\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n"
                     HEAD "{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}]}\n\n"
                     HEAD "],\"usage\":" USAGE(9, 2, 11, 4, 0) "}\n\n"
                     "data: [DONE]\n\n");
}
END_TEST

START_TEST(test_chat_stream_no_usage_chunk_by_default)
{
    make(GW_API_CHAT, "{\"model\":\"qn\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stream\":true}");
    ck_assert_int_eq(feed_final(0, 0, QNEXT__V1__FINISH_REASON__FINISH_REASON_LENGTH, 1, 0, 0, 0), ENG_OK);
    ck_assert_int_eq(gw_xcode_finish(x, &out, &err), ENG_OK);
    ck_assert_str_eq(out_str(),
                     HEAD "{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n"
                     HEAD "{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"length\"}]}\n\n"
                     "data: [DONE]\n\n");
}
END_TEST

START_TEST(test_chat_stream_reasoning_and_tools)
{
    make(GW_API_CHAT, "{\"model\":\"qn\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stream\":true}");
    ck_assert_int_eq(feed_delta(0, 0, NULL, "think", NULL, 0, NULL, 0, NULL), ENG_OK);
    Qnext__V1__ToolCallDelta t0 = QNEXT__V1__TOOL_CALL_DELTA__INIT, t1 = QNEXT__V1__TOOL_CALL_DELTA__INIT;
    t0.index = 0;
    t0.id = "call_a";
    t0.name = "get_weather";
    Qnext__V1__ToolCallDelta *tp0[] = {&t0};
    ck_assert_int_eq(feed_delta(0, 0, NULL, NULL, tp0, 1, NULL, 0, NULL), ENG_OK);
    t1.index = 0;
    t1.arguments = "{\"city\":";
    Qnext__V1__ToolCallDelta *tp1[] = {&t1};
    ck_assert_int_eq(feed_delta(0, 0, NULL, NULL, tp1, 1, NULL, 0, NULL), ENG_OK);
    /* the engine says STOP, but the turn ended in tool calls */
    ck_assert_int_eq(feed_final(0, 0, QNEXT__V1__FINISH_REASON__FINISH_REASON_STOP, 5, 3, 0, 1), ENG_OK);
    ck_assert_int_eq(gw_xcode_finish(x, &out, &err), ENG_OK);
    ck_assert_str_eq(
        out_str(),
        HEAD "{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n"
        HEAD "{\"index\":0,\"delta\":{\"reasoning_content\":\"think\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n"
        HEAD "{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_a\",\"type\":\"function\",\"function\":"
             "{\"name\":\"get_weather\",\"arguments\":\"\"}}]},\"logprobs\":null,\"finish_reason\":null}]}\n\n"
        HEAD "{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"city\\\":\"}}]},"
             "\"logprobs\":null,\"finish_reason\":null}]}\n\n"
        HEAD "{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"tool_calls\"}]}\n\n"
        "data: [DONE]\n\n");
}
END_TEST

START_TEST(test_chat_stream_logprobs)
{
    make(GW_API_CHAT, "{\"model\":\"qn\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stream\":true,"
                      "\"logprobs\":true,\"top_logprobs\":1}");
    Qnext__V1__TopLogprob top = QNEXT__V1__TOP_LOGPROB__INIT;
    top.token = 7;
    top.logprob = -1.5f;
    top.token_bytes.data = (uint8_t *)"Hi";
    top.token_bytes.len = 2;
    Qnext__V1__TopLogprob *tops[] = {&top};
    Qnext__V1__TokenLogprob lp = QNEXT__V1__TOKEN_LOGPROB__INIT;
    lp.token = 42;
    lp.logprob = -0.25f;
    lp.token_bytes.data = (uint8_t *)"\xe4\xb8"; /* first 2 bytes of a 3-byte character */
    lp.token_bytes.len = 2;
    lp.n_top = 1;
    lp.top = tops;
    Qnext__V1__TokenLogprob *lps[] = {&lp};
    ck_assert_int_eq(feed_delta(0, 0, "", NULL, NULL, 0, lps, 1, NULL), ENG_OK);
    ck_assert_str_eq(
        out_str(),
        HEAD "{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n"
        HEAD "{\"index\":0,\"delta\":{\"content\":\"\"},\"logprobs\":{\"content\":[{\"token\":\"\\ufffd\\ufffd\","
             "\"logprob\":-0.25,\"bytes\":[228,184],\"top_logprobs\":[{\"token\":\"Hi\",\"logprob\":-1.5,\"bytes\":[72,105]}]}],"
             "\"refusal\":null},\"finish_reason\":null}]}\n\n");
}
END_TEST

START_TEST(test_chat_stream_n2_and_generated_ids)
{
    make(GW_API_CHAT, "{\"model\":\"qn\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stream\":true,\"n\":2,"
                      "\"parallel_tool_calls\":false}");
    ck_assert_int_eq(feed_delta(0, 1, "b", NULL, NULL, 0, NULL, 0, NULL), ENG_OK);
    Qnext__V1__ToolCallDelta t0 = QNEXT__V1__TOOL_CALL_DELTA__INIT, t1 = QNEXT__V1__TOOL_CALL_DELTA__INIT;
    t0.index = 0;
    t0.name = "f"; /* no id: the gateway makes one */
    t1.index = 1;
    t1.id = "call_dropped";
    t1.name = "g";
    Qnext__V1__ToolCallDelta *tp[] = {&t0, &t1};
    ck_assert_int_eq(feed_delta(0, 0, NULL, NULL, tp, 2, NULL, 0, NULL), ENG_OK);
    const char *s = out_str();
    ck_assert_ptr_nonnull(strstr(s, HEAD "{\"index\":1,\"delta\":{\"role\":\"assistant\""));
    ck_assert_ptr_nonnull(strstr(s, HEAD "{\"index\":1,\"delta\":{\"content\":\"b\"}"));
    ck_assert_ptr_nonnull(strstr(s, HEAD "{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_"));
    ck_assert_ptr_null(strstr(s, "call_dropped")); /* parallel_tool_calls false: only call 0 */
    ck_assert_ptr_null(strstr(s, "\"index\":1,\"id\""));
    /* a generated id is "call_" + 24 hex digits, the same for the same request/choice/index */
    const char *id = strstr(s, "\"id\":\"call_") + 11;
    for (int i = 0; i < 24; i++) ck_assert(strchr("0123456789abcdef", id[i]));
    ck_assert_int_eq(id[24], '"');
}
END_TEST

/* ==== chat non-streaming ====================================================================== */

START_TEST(test_chat_body)
{
    make(GW_API_CHAT, "{\"model\":\"qn\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"n\":2}");
    ck_assert_int_eq(feed_delta(0, 0, NULL, "hmm", NULL, 0, NULL, 0, NULL), ENG_OK);
    ck_assert_int_eq(feed_delta(0, 1, "B", NULL, NULL, 0, NULL, 0, NULL), ENG_OK);
    ck_assert_int_eq(feed_delta(0, 0, "A", NULL, NULL, 0, NULL, 0, NULL), ENG_OK);
    ck_assert_int_eq(feed_final(0, 1, QNEXT__V1__FINISH_REASON__FINISH_REASON_LENGTH, 10, 1, 2, 0), ENG_OK);
    ck_assert_int_eq(feed_final(0, 0, QNEXT__V1__FINISH_REASON__FINISH_REASON_STOP, 10, 2, 2, 1), ENG_OK);
    ck_assert_uint_eq(out.len, 0); /* nothing streamed */
    ck_assert_int_eq(gw_xcode_finish(x, &out, &err), ENG_OK);
    ck_assert_str_eq(out_str(),
                     "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"created\":1700000000,\"model\":\"qn\","
                     "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"A\",\"refusal\":null,"
                     "\"reasoning_content\":\"hmm\"},\"logprobs\":null,\"finish_reason\":\"stop\"},"
                     "{\"index\":1,\"message\":{\"role\":\"assistant\",\"content\":\"B\",\"refusal\":null},"
                     "\"logprobs\":null,\"finish_reason\":\"length\"}],"
                     "\"usage\":" USAGE(10, 3, 13, 2, 1) "}");
    int64_t p, c;
    gw_xcode_usage(x, &p, &c);
    ck_assert_int_eq(p, 10);
    ck_assert_int_eq(c, 3);
}
END_TEST

START_TEST(test_chat_body_tool_calls)
{
    make(GW_API_CHAT, "{\"model\":\"qn\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"logprobs\":true}");
    Qnext__V1__ToolCallDelta a = QNEXT__V1__TOOL_CALL_DELTA__INIT, b = QNEXT__V1__TOOL_CALL_DELTA__INIT,
                             c = QNEXT__V1__TOOL_CALL_DELTA__INIT;
    a.index = 0;
    a.id = "call_1";
    a.name = "w";
    b.index = 0;
    b.arguments = "{\"c\":";
    c.index = 0;
    c.arguments = "1}";
    Qnext__V1__ToolCallDelta *ta[] = {&a}, *tb[] = {&b}, *tc[] = {&c};
    ck_assert_int_eq(feed_delta(0, 0, NULL, NULL, ta, 1, NULL, 0, NULL), ENG_OK);
    ck_assert_int_eq(feed_delta(0, 0, NULL, NULL, tb, 1, NULL, 0, NULL), ENG_OK);
    ck_assert_int_eq(feed_delta(0, 0, NULL, NULL, tc, 1, NULL, 0, NULL), ENG_OK);
    ck_assert_int_eq(feed_final(0, 0, QNEXT__V1__FINISH_REASON__FINISH_REASON_TOOL_CALLS, 3, 3, 0, 0), ENG_OK);
    ck_assert_int_eq(gw_xcode_finish(x, &out, &err), ENG_OK);
    ck_assert_str_eq(out_str(),
                     "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"created\":1700000000,\"model\":\"qn\","
                     "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":null,\"refusal\":null,"
                     "\"tool_calls\":[{\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"w\","
                     "\"arguments\":\"{\\\"c\\\":1}\"}}]},\"logprobs\":{\"content\":[],\"refusal\":null},"
                     "\"finish_reason\":\"tool_calls\"}],\"usage\":" USAGE(3, 3, 6, 0, 0) "}");
}
END_TEST

START_TEST(test_chat_errors)
{
    make(GW_API_CHAT, "{\"model\":\"qn\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"n\":2}");
    /* choice out of range */
    ck_assert_int_eq(feed_delta(0, 2, "x", NULL, NULL, 0, NULL, 0, NULL), ENG_ERR_INVALID);
    ck_assert_int_eq(err.status, 500);
    /* a stream that ends before every choice finished */
    ck_assert_int_eq(feed_final(0, 0, QNEXT__V1__FINISH_REASON__FINISH_REASON_STOP, 1, 1, 0, 0), ENG_OK);
    ck_assert_int_eq(gw_xcode_finish(x, &out, &err), ENG_ERR_INVALID);
    ck_assert_str_eq(err.message, "the engine ended the stream before choice 1 finished");
    /* output after a choice's Final */
    ck_assert_int_eq(feed_delta(0, 0, "late", NULL, NULL, 0, NULL, 0, NULL), ENG_ERR_INVALID);
    /* FINISH_REASON_ERROR carries the engine's message */
    ck_assert_int_eq(feed_final(0, 1, QNEXT__V1__FINISH_REASON__FINISH_REASON_ERROR, 1, 0, 0, 0), ENG_ERR_INVALID);
    ck_assert_int_eq(err.status, 500);
    ck_assert_str_eq(err.message, "generation failed: kaboom");
}
END_TEST

/* ==== completions ============================================================================= */

START_TEST(test_completions_body_echo_and_numbering)
{
    make(GW_API_COMPLETIONS, "{\"model\":\"qn\",\"prompt\":[\"A\",\"B\"],\"echo\":true}");
    ck_assert_int_eq(feed_delta(1, 0, NULL, NULL, NULL, 0, NULL, 0, " b"), ENG_OK);
    ck_assert_int_eq(feed_delta(0, 0, NULL, NULL, NULL, 0, NULL, 0, " a"), ENG_OK);
    ck_assert_int_eq(feed_final(0, 0, QNEXT__V1__FINISH_REASON__FINISH_REASON_LENGTH, 1, 1, 0, 0), ENG_OK);
    ck_assert_int_eq(feed_final(1, 0, QNEXT__V1__FINISH_REASON__FINISH_REASON_STOP, 2, 1, 0, 0), ENG_OK);
    ck_assert_int_eq(gw_xcode_finish(x, &out, &err), ENG_OK);
    ck_assert_str_eq(out_str(), "{\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1700000000,\"model\":\"qn\","
                                "\"choices\":[{\"text\":\"A a\",\"index\":0,\"logprobs\":null,\"finish_reason\":\"length\"},"
                                "{\"text\":\"B b\",\"index\":1,\"logprobs\":null,\"finish_reason\":\"stop\"}],"
                                "\"usage\":" USAGE(3, 2, 5, 0, 0) "}");
}
END_TEST

static Qnext__V1__TokenLogprob *mk_lp(Qnext__V1__TokenLogprob *lp, const char *tok, float v, Qnext__V1__TopLogprob **tops,
                                      size_t n)
{
    Qnext__V1__TokenLogprob init = QNEXT__V1__TOKEN_LOGPROB__INIT;
    *lp = init;
    lp->logprob = v;
    lp->token_bytes.data = (uint8_t *)tok;
    lp->token_bytes.len = strlen(tok);
    lp->n_top = n;
    lp->top = tops;
    return lp;
}

START_TEST(test_completions_legacy_logprobs)
{
    make(GW_API_COMPLETIONS, "{\"model\":\"qn\",\"prompt\":\"x\",\"logprobs\":1}");
    Qnext__V1__TopLogprob t = QNEXT__V1__TOP_LOGPROB__INIT;
    t.logprob = -0.5f;
    t.token_bytes.data = (uint8_t *)"a";
    t.token_bytes.len = 1;
    Qnext__V1__TopLogprob *tops[] = {&t};
    Qnext__V1__TokenLogprob l1, l2;
    Qnext__V1__TokenLogprob *lps1[] = {mk_lp(&l1, "Hi", -0.125f, tops, 1)};
    Qnext__V1__TokenLogprob *lps2[] = {mk_lp(&l2, " there", -1.0f, tops, 1)};
    ck_assert_int_eq(feed_delta(0, 0, NULL, NULL, NULL, 0, lps1, 1, "Hi"), ENG_OK);
    ck_assert_int_eq(feed_delta(0, 0, NULL, NULL, NULL, 0, lps2, 1, " there"), ENG_OK);
    ck_assert_int_eq(feed_final(0, 0, QNEXT__V1__FINISH_REASON__FINISH_REASON_STOP, 1, 2, 0, 0), ENG_OK);
    ck_assert_int_eq(gw_xcode_finish(x, &out, &err), ENG_OK);
    ck_assert_str_eq(out_str(), "{\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1700000000,\"model\":\"qn\","
                                "\"choices\":[{\"text\":\"Hi there\",\"index\":0,\"logprobs\":{\"tokens\":[\"Hi\",\" there\"],"
                                "\"token_logprobs\":[-0.125,-1.0],\"top_logprobs\":[{\"a\":-0.5},{\"a\":-0.5}],"
                                "\"text_offset\":[0,2]},\"finish_reason\":\"stop\"}],\"usage\":" USAGE(1, 2, 3, 0, 0) "}");
}
END_TEST

START_TEST(test_completions_stream)
{
    make(GW_API_COMPLETIONS, "{\"model\":\"qn\",\"prompt\":\"P\",\"stream\":true,\"echo\":true,"
                             "\"stream_options\":{\"include_usage\":true}}");
    ck_assert_int_eq(feed_delta(0, 0, NULL, NULL, NULL, 0, NULL, 0, "Q"), ENG_OK);
    ck_assert_int_eq(feed_final(0, 0, QNEXT__V1__FINISH_REASON__FINISH_REASON_STOP, 1, 1, 0, 0), ENG_OK);
    ck_assert_int_eq(gw_xcode_finish(x, &out, &err), ENG_OK);
#define CH "data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1700000000,\"model\":\"qn\",\"choices\":["
    ck_assert_str_eq(out_str(), CH "{\"text\":\"P\",\"index\":0,\"logprobs\":null,\"finish_reason\":null}]}\n\n"
                                CH "{\"text\":\"Q\",\"index\":0,\"logprobs\":null,\"finish_reason\":null}]}\n\n"
                                CH "{\"text\":\"\",\"index\":0,\"logprobs\":null,\"finish_reason\":\"stop\"}]}\n\n"
                                CH "],\"usage\":" USAGE(1, 1, 2, 0, 0) "}\n\n"
                                "data: [DONE]\n\n");
#undef CH
}
END_TEST

/* ==== small builders ========================================================================== */

START_TEST(test_error_json)
{
    gw_error e;
    gw_error_set(&e, 400, "invalid_request_error", NULL, "messages[0].role", "bad \"%s\"", "role");
    gw_error_json(&out, &e);
    ck_assert_str_eq(out_str(), "{\"error\":{\"message\":\"bad \\\"role\\\"\",\"type\":\"invalid_request_error\","
                                "\"param\":\"messages[0].role\",\"code\":null}}");
    out.len = 0;
    gw_error_set(&e, 401, "invalid_request_error", "invalid_api_key", NULL, "Incorrect API key provided.");
    gw_sse_error(&out, &e);
    ck_assert_str_eq(out_str(), "data: {\"error\":{\"message\":\"Incorrect API key provided.\",\"type\":"
                                "\"invalid_request_error\",\"param\":null,\"code\":\"invalid_api_key\"}}\n\n");
}
END_TEST

START_TEST(test_models_json)
{
    gw_model_card m = {.id = "Qwen/Qwen3-Next", .created = 5, .owned_by = "qnext", .max_model_len = 4096};
    gw_models_json(&out, &m, 1);
    ck_assert_str_eq(out_str(), "{\"object\":\"list\",\"data\":[{\"id\":\"Qwen/Qwen3-Next\",\"object\":\"model\","
                                "\"created\":5,\"owned_by\":\"qnext\",\"max_model_len\":4096}]}");
}
END_TEST

START_TEST(test_json_writer)
{
    gw_jw_str(&out, "a\"b\\c\x01\t\xc3\xa9\xff\xe4\xb8", 12);
    ck_assert_str_eq(out_str(), "\"a\\\"b\\\\c\\u0001\\t\xc3\xa9\\ufffd\\ufffd\\ufffd\"");
    out.len = 0;
    gw_jw_float(&out, 1.0f);
    eng_buf_putc(&out, ' ');
    gw_jw_float(&out, -0.1f);
    eng_buf_putc(&out, ' ');
    gw_jw_float(&out, -INFINITY);
    eng_buf_putc(&out, ' ');
    gw_jw_float(&out, NAN);
    eng_buf_putc(&out, ' ');
    gw_jw_float(&out, 1e-7f);
    eng_buf_putc(&out, ' ');
    gw_jw_double(&out, 0.1);
    ck_assert_str_eq(out_str(), "1.0 -0.1 -9999.0 null 1e-07 0.1");
    ck_assert(gw_utf8_valid("\xf0\x9f\x8e\x89", 4));
    ck_assert(!gw_utf8_valid("\xed\xa0\x80", 3)); /* surrogate */
    ck_assert(!gw_utf8_valid("\xc0\xaf", 2));     /* overlong */
    ck_assert(!gw_utf8_valid("\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
    ck_assert_uint_eq(gw_utf8_complete_prefix("ab\xe4\xb8", 4), 2);
    ck_assert_uint_eq(gw_utf8_complete_prefix("ab\xff", 3), 3);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("openai_response");
    TCase *tc = tcase_create("chat");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_chat_stream_content_and_usage);
    tcase_add_test(tc, test_chat_stream_no_usage_chunk_by_default);
    tcase_add_test(tc, test_chat_stream_reasoning_and_tools);
    tcase_add_test(tc, test_chat_stream_logprobs);
    tcase_add_test(tc, test_chat_stream_n2_and_generated_ids);
    tcase_add_test(tc, test_chat_body);
    tcase_add_test(tc, test_chat_body_tool_calls);
    tcase_add_test(tc, test_chat_errors);
    suite_add_tcase(s, tc);
    tc = tcase_create("completions");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_completions_body_echo_and_numbering);
    tcase_add_test(tc, test_completions_legacy_logprobs);
    tcase_add_test(tc, test_completions_stream);
    suite_add_tcase(s, tc);
    tc = tcase_create("builders");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_error_json);
    tcase_add_test(tc, test_models_json);
    tcase_add_test(tc, test_json_writer);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
