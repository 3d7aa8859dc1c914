/* tests/unit/grpc_service/test_gsvc_convert.c - grpc_service/convert.c: GenerateRequest ->
 * eng_request mapping (from bytes made by the Python runtime), every validation rule, the chat
 * messages -> JSON rendering, and GenerateResponse building checked byte for byte against Python. */
#include "convert.h"
#include "gsvc_wire_fixtures.h"
#include "util.h"
#include "wire.h"

#include <cjson/cJSON.h>
#include <grpc/status.h>

#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ==== mapping ================================================================================= */

static Qnext__V1__GenerateRequest *unpack_req(const unsigned char *b, size_t n)
{
    ProtobufCMessage *m;
    ck_assert_int_eq(gsvc_unpack(&qnext__v1__generate_request__descriptor, b, n, &m), ENG_OK);
    return (Qnext__V1__GenerateRequest *)m;
}

static const char *EXPECTED_MESSAGES_JSON =
    "[{\"role\":\"system\",\"content\":\"Be brief.\"},"
    "{\"role\":\"assistant\",\"content\":null,\"reasoning_content\":\"think\",\"tool_calls\":[{\"id\":\"call_9\","
    "\"type\":\"function\",\"function\":{\"name\":\"get\",\"arguments\":\"{\\\"q\\\": \\\"a\\\\\\\"b\\\"}\"}}]},"
    "{\"role\":\"tool\",\"content\":\"42\",\"tool_call_id\":\"call_9\"},"
    "{\"role\":\"user\",\"content\":\"Line1\\nTab\\t\\\"q\\\" \xC3\xA9 \\u0001\"}]";

START_TEST(test_map_chat_request)
{
    Qnext__V1__GenerateRequest *m = unpack_req(fix_chat_request, FIX_CHAT_REQUEST_LEN);
    gsvc_gen_req g;
    ck_assert_int_eq(gsvc_gen_req_init(&g, m), ENG_OK);
    const eng_request *r = &g.req;
    ck_assert_int_eq(r->input, ENG_INPUT_CHAT);
    ck_assert_str_eq(r->messages_json, EXPECTED_MESSAGES_JSON);
    ck_assert_str_eq(r->tools_json, "[{\"type\":\"function\",\"function\":{\"name\":\"get\"}}]");
    ck_assert_str_eq(r->template_kwargs_json, "{\"enable_thinking\": false}");
    ck_assert(r->add_generation_prompt);
    ck_assert(r->parse_output);
    ck_assert_str_eq(r->client_id, "abc");
    ck_assert_int_eq(r->priority, -3);
    ck_assert(r->sampling.temperature == 0.0f);
    ck_assert(r->sampling.top_p < 0); /* unset: eng_request_init's "model default" */
    ck_assert_int_eq(r->sampling.top_k, 20);
    ck_assert(r->sampling.has_seed);
    ck_assert_uint_eq(r->sampling.seed, 7);
    ck_assert_int_eq(r->sampling.n, 2);
    ck_assert_int_eq(g.n_choices, 2);
    ck_assert_int_eq(r->sampling.logprobs, 3);
    ck_assert_uint_eq(r->sampling.n_logit_bias, 1);
    ck_assert_int_eq(r->sampling.logit_bias[0].token, 5);
    ck_assert(r->sampling.logit_bias[0].bias == -100.0f);
    ck_assert_int_eq(r->sampling.max_tokens, 16);
    ck_assert_int_eq(r->sampling.min_tokens, 2);
    ck_assert_uint_eq(r->sampling.n_stop, 1);
    ck_assert_str_eq(r->sampling.stop[0], "END");
    ck_assert_uint_eq(r->sampling.n_stop_token_ids, 1);
    ck_assert_int_eq(r->sampling.stop_token_ids[0], 151645);
    ck_assert(r->sampling.skip_special_tokens);
    ck_assert(g.skip_text);

    /* the JSON is valid and carries the strings exactly */
    cJSON *j = cJSON_Parse(r->messages_json);
    ck_assert_ptr_nonnull(j);
    ck_assert_int_eq(cJSON_GetArraySize(j), 4);
    cJSON *args = cJSON_GetObjectItem(
        cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetArrayItem(j, 1), "tool_calls"), 0), "function"),
        "arguments");
    ck_assert_str_eq(cJSON_GetStringValue(args), m->chat->messages[1]->tool_calls[0]->arguments);
    ck_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(j, 3), "content")),
                     m->chat->messages[3]->content);
    ck_assert(cJSON_IsNull(cJSON_GetObjectItem(cJSON_GetArrayItem(j, 1), "content")));
    cJSON_Delete(j);

    gsvc_gen_req_free(&g);
    gsvc_gen_req_free(&g);
    gsvc_msg_free(&m->base);
}
END_TEST

START_TEST(test_map_prompt_and_tokens)
{
    Qnext__V1__GenerateRequest *m = unpack_req(fix_prompt_request, FIX_PROMPT_REQUEST_LEN);
    gsvc_gen_req g;
    ck_assert_int_eq(gsvc_gen_req_init(&g, m), ENG_OK);
    ck_assert_int_eq(g.req.input, ENG_INPUT_TEXT);
    ck_assert_str_eq(g.req.text, "Hello");
    ck_assert_int_eq(g.req.sampling.n, 1);
    ck_assert_int_eq(g.req.sampling.max_tokens, -1);
    ck_assert_int_eq(g.req.sampling.logprobs, -1);
    ck_assert(!g.req.sampling.has_seed);
    ck_assert(!g.req.parse_output); /* only chat output is parsed */
    ck_assert_ptr_null(g.req.client_id);
    ck_assert(!g.skip_text);
    gsvc_gen_req_free(&g);
    gsvc_msg_free(&m->base);

    m = unpack_req(fix_tokens_request, FIX_TOKENS_REQUEST_LEN);
    ck_assert_int_eq(gsvc_gen_req_init(&g, m), ENG_OK);
    ck_assert_int_eq(g.req.input, ENG_INPUT_TOKENS);
    ck_assert_uint_eq(g.req.n_tokens, 3);
    ck_assert_int_eq(g.req.tokens[2], 151643);
    gsvc_gen_req_free(&g);
    gsvc_msg_free(&m->base);
}
END_TEST

START_TEST(test_map_output_options)
{
    Qnext__V1__GenerateRequest m = QNEXT__V1__GENERATE_REQUEST__INIT;
    Qnext__V1__ChatInput c = QNEXT__V1__CHAT_INPUT__INIT;
    Qnext__V1__OutputOptions o = QNEXT__V1__OUTPUT_OPTIONS__INIT;
    c.messages_json = "[{\"role\":\"user\",\"content\":\"hi\"}]";
    c.no_generation_prompt = true;
    o.keep_special_tokens = true;
    o.raw_output = true;
    m.input_case = QNEXT__V1__GENERATE_REQUEST__INPUT_CHAT;
    m.chat = &c;
    m.output = &o;
    gsvc_gen_req g;
    ck_assert_int_eq(gsvc_gen_req_init(&g, &m), ENG_OK);
    ck_assert_str_eq(g.req.messages_json, c.messages_json);
    ck_assert_ptr_null(g.req.tools_json);
    ck_assert_ptr_null(g.req.template_kwargs_json);
    ck_assert(!g.req.add_generation_prompt);
    ck_assert(!g.req.sampling.skip_special_tokens);
    ck_assert(!g.req.parse_output);
    gsvc_gen_req_free(&g);
}
END_TEST

/* ==== validation ============================================================================== */

/* A fresh valid prompt request with every sub-message attached, for tests to break one field. */
typedef struct req_parts {
    Qnext__V1__GenerateRequest m;
    Qnext__V1__SamplingParams sp;
    Qnext__V1__StopParams st;
    Qnext__V1__TokenIds ids;
    Qnext__V1__ChatInput chat;
    Qnext__V1__ChatMessage msg;
    Qnext__V1__ChatMessage *msgs[1];
    Qnext__V1__ChatToolCall tc;
    Qnext__V1__ChatToolCall *tcs[1];
    Qnext__V1__LogitBias lb;
    Qnext__V1__LogitBias *lbs[1];
    char *stops[17];
    char *tools[1];
} req_parts;

static void parts_init(req_parts *p)
{
    memset(p, 0, sizeof *p);
    qnext__v1__generate_request__init(&p->m);
    qnext__v1__sampling_params__init(&p->sp);
    qnext__v1__stop_params__init(&p->st);
    qnext__v1__token_ids__init(&p->ids);
    qnext__v1__chat_input__init(&p->chat);
    qnext__v1__chat_message__init(&p->msg);
    qnext__v1__chat_tool_call__init(&p->tc);
    qnext__v1__logit_bias__init(&p->lb);
    p->m.input_case = QNEXT__V1__GENERATE_REQUEST__INPUT_PROMPT;
    p->m.prompt = "hi";
    p->m.sampling = &p->sp;
    p->m.stop = &p->st;
    p->msgs[0] = &p->msg;
    p->tcs[0] = &p->tc;
    p->lbs[0] = &p->lb;
    p->msg.role = "user";
    p->msg.content_opt_case = QNEXT__V1__CHAT_MESSAGE__CONTENT_OPT_CONTENT;
    p->msg.content = "hello";
    p->chat.n_messages = 1;
    p->chat.messages = p->msgs;
    p->tc.name = "f";
    for (int i = 0; i < 17; i++) p->stops[i] = "s";
}

static void use_chat(req_parts *p)
{
    p->m.input_case = QNEXT__V1__GENERATE_REQUEST__INPUT_CHAT;
    p->m.chat = &p->chat;
}

static void expect_ok(req_parts *p)
{
    gsvc_gen_req g;
    eng_status st = gsvc_gen_req_init(&g, &p->m);
    ck_assert_msg(st == ENG_OK, "unexpected error: %s", eng_err_last());
    gsvc_gen_req_free(&g);
}

static void expect_bad(req_parts *p, const char *needle)
{
    gsvc_gen_req g;
    ck_assert_int_eq(gsvc_gen_req_init(&g, &p->m), ENG_ERR_INVALID);
    ck_assert_msg(strstr(eng_err_last(), needle), "detail \"%s\" lacks \"%s\"", eng_err_last(), needle);
    gsvc_gen_req_free(&g);
}

START_TEST(test_validate_input)
{
    req_parts p;
    parts_init(&p);
    expect_ok(&p);
    p.m.input_case = QNEXT__V1__GENERATE_REQUEST__INPUT__NOT_SET;
    expect_bad(&p, "one of prompt, token_ids or chat is required");
    parts_init(&p);
    p.m.prompt = "";
    expect_bad(&p, "prompt: empty");
    parts_init(&p);
    p.m.input_case = QNEXT__V1__GENERATE_REQUEST__INPUT_TOKEN_IDS;
    p.m.token_ids = &p.ids;
    expect_bad(&p, "token_ids: empty");
    int32_t ids[3] = {1, -5, 2};
    p.ids.ids = ids;
    p.ids.n_ids = 3;
    expect_bad(&p, "token_ids.ids[1]: -5 is negative");
    ids[1] = 5;
    expect_ok(&p);

    parts_init(&p);
    char id[300];
    memset(id, 'a', sizeof id - 1);
    id[sizeof id - 1] = '\0';
    p.m.request_id = id;
    expect_bad(&p, "request_id: 299 bytes");
    p.m.request_id = "tab\there";
    expect_bad(&p, "control character");
    p.m.request_id = "req-\xC3\xA9-1";
    expect_ok(&p);
}
END_TEST

START_TEST(test_validate_chat)
{
    req_parts p;
    parts_init(&p);
    use_chat(&p);
    expect_ok(&p);
    p.chat.messages_json = "[]";
    expect_bad(&p, "either messages or messages_json");
    parts_init(&p);
    use_chat(&p);
    p.chat.n_messages = 0;
    expect_bad(&p, "messages (or messages_json) is required");
    p.chat.messages_json = "[]";
    expect_bad(&p, "chat.messages_json: must not be empty");
    p.chat.messages_json = "{\"role\":\"user\"}";
    expect_bad(&p, "chat.messages_json: must be a JSON array");
    p.chat.messages_json = "[{\"role\":";
    expect_bad(&p, "chat.messages_json: not valid JSON");
    p.chat.messages_json = "[1] [2]";
    expect_bad(&p, "trailing characters");
    p.chat.messages_json = " [{\"role\":\"user\",\"content\":\"x\"}] \n";
    expect_ok(&p);

    parts_init(&p);
    use_chat(&p);
    p.msg.role = "wizard";
    expect_bad(&p, "chat.messages[0].role: \"wizard\" is not one of");
    p.msg.role = "user";
    p.msg.n_tool_calls = 1;
    p.msg.tool_calls = p.tcs;
    expect_bad(&p, "only assistant messages carry tool_calls");
    p.msg.role = "assistant";
    expect_ok(&p);
    p.tc.name = "";
    expect_bad(&p, "tool_calls[0].name: required");

    parts_init(&p);
    use_chat(&p);
    p.tools[0] = "[1]";
    p.chat.tools_json = p.tools;
    p.chat.n_tools_json = 1;
    expect_bad(&p, "chat.tools_json[0]: must be a JSON object");
    p.tools[0] = "{\"type\":\"function\"} trailing";
    expect_bad(&p, "chat.tools_json[0]: trailing characters");
    p.tools[0] = "{\"type\":\"function\",\"function\":{\"name\":\"f\"}}";
    expect_ok(&p);
    p.chat.template_kwargs_json = "true";
    expect_bad(&p, "chat.template_kwargs_json: must be a JSON object");
    p.chat.template_kwargs_json = "{\"enable_thinking\":true}";
    expect_ok(&p);
}
END_TEST

START_TEST(test_validate_sampling)
{
    req_parts p;
    static const struct {
        int field;
        float v;
        const char *needle;
    } bad[] = {
        {0, -0.5f, "sampling.temperature"}, {0, 101.0f, "sampling.temperature"}, {1, 0.0f, "sampling.top_p"},
        {1, 1.5f, "sampling.top_p"},        {3, 1.5f, "sampling.min_p"},         {4, 2.5f, "sampling.presence_penalty"},
        {5, -3.0f, "sampling.frequency_penalty"}, {6, 0.0f, "sampling.repetition_penalty"},
        {7, 101.0f, "sampling.logit_bias.bias"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        parts_init(&p);
        float v = bad[i].v;
        switch (bad[i].field) {
        case 0: p.sp.temperature_opt_case = QNEXT__V1__SAMPLING_PARAMS__TEMPERATURE_OPT_TEMPERATURE; p.sp.temperature = v; break;
        case 1: p.sp.top_p_opt_case = QNEXT__V1__SAMPLING_PARAMS__TOP_P_OPT_TOP_P; p.sp.top_p = v; break;
        case 3: p.sp.min_p_opt_case = QNEXT__V1__SAMPLING_PARAMS__MIN_P_OPT_MIN_P; p.sp.min_p = v; break;
        case 4: p.sp.presence_penalty = v; break;
        case 5: p.sp.frequency_penalty = v; break;
        case 6:
            p.sp.repetition_penalty_opt_case = QNEXT__V1__SAMPLING_PARAMS__REPETITION_PENALTY_OPT_REPETITION_PENALTY;
            p.sp.repetition_penalty = v;
            break;
        case 7: p.lb.token = 1; p.lb.bias = v; p.sp.logit_bias = p.lbs; p.sp.n_logit_bias = 1; break;
        }
        expect_bad(&p, bad[i].needle);
    }
    parts_init(&p);
    p.sp.temperature_opt_case = QNEXT__V1__SAMPLING_PARAMS__TEMPERATURE_OPT_TEMPERATURE;
    p.sp.temperature = NAN;
    expect_bad(&p, "sampling.temperature");
    p.sp.temperature = 2.0f;
    p.sp.top_p_opt_case = QNEXT__V1__SAMPLING_PARAMS__TOP_P_OPT_TOP_P;
    p.sp.top_p = 1.0f;
    p.sp.min_p_opt_case = QNEXT__V1__SAMPLING_PARAMS__MIN_P_OPT_MIN_P;
    p.sp.min_p = 0.0f;
    expect_ok(&p);
    p.sp.top_k_opt_case = QNEXT__V1__SAMPLING_PARAMS__TOP_K_OPT_TOP_K;
    p.sp.top_k = -1;
    expect_bad(&p, "sampling.top_k: -1 is negative");
    p.sp.top_k = 0;
    p.sp.n = 129;
    expect_bad(&p, "sampling.n: 129 is out of range 1..128");
    p.sp.n = -1;
    expect_bad(&p, "sampling.n: -1");
    p.sp.n = 128;
    expect_ok(&p);
    p.sp.logprobs_opt_case = QNEXT__V1__SAMPLING_PARAMS__LOGPROBS_OPT_LOGPROBS;
    p.sp.logprobs = 21;
    expect_bad(&p, "sampling.logprobs: 21 is out of range 0..20");
    p.sp.logprobs = -1;
    expect_bad(&p, "sampling.logprobs");
    p.sp.logprobs = 20;
    expect_ok(&p);
    p.lb.token = -1;
    p.sp.logit_bias = p.lbs;
    p.sp.n_logit_bias = 1;
    expect_bad(&p, "sampling.logit_bias[0].token: -1 is negative");
}
END_TEST

START_TEST(test_validate_stop)
{
    req_parts p;
    parts_init(&p);
    p.st.max_tokens_opt_case = QNEXT__V1__STOP_PARAMS__MAX_TOKENS_OPT_MAX_TOKENS;
    p.st.max_tokens = 0;
    expect_bad(&p, "stop.max_tokens: 0 must be at least 1");
    p.st.max_tokens = 4;
    p.st.min_tokens = 5;
    expect_bad(&p, "stop.min_tokens (5) is larger than stop.max_tokens (4)");
    p.st.min_tokens = -1;
    expect_bad(&p, "stop.min_tokens: -1 is negative");
    p.st.min_tokens = 4;
    expect_ok(&p);
    p.st.stop = p.stops;
    p.st.n_stop = 17;
    expect_bad(&p, "stop.stop: 17 strings (at most 16)");
    p.st.n_stop = 16;
    expect_ok(&p);
    p.stops[3] = "";
    expect_bad(&p, "stop.stop[3]: empty string");
    char long_stop[1100];
    memset(long_stop, 'x', sizeof long_stop - 1);
    long_stop[sizeof long_stop - 1] = '\0';
    p.stops[3] = long_stop;
    expect_bad(&p, "stop.stop[3]: 1099 bytes");
    p.stops[3] = "ok";
    int32_t ids[2] = {7, -2};
    p.st.stop_token_ids = ids;
    p.st.n_stop_token_ids = 2;
    expect_bad(&p, "stop.stop_token_ids[1]: -2 is negative");
}
END_TEST

START_TEST(test_alloc_failure_sweep)
{
    Qnext__V1__GenerateRequest *m = unpack_req(fix_chat_request, FIX_CHAT_REQUEST_LEN);
    int failures = 0;
    for (long k = 0; k < 100; k++) {
        gsvc_gen_req g;
        gsvc_alloc_fail_after(k);
        eng_status st = gsvc_gen_req_init(&g, m);
        gsvc_alloc_fail_after(-1);
        gsvc_gen_req_free(&g);
        if (st == ENG_OK) break;
        ck_assert_int_eq(st, ENG_ERR_NOMEM);
        failures++;
    }
    ck_assert_int_gt(failures, 3);
    gsvc_msg_free(&m->base);
}
END_TEST

/* ==== responses (exact bytes) ================================================================= */

/* Packs the next item of s as a response to request_id and compares with the expected bytes. */
static void expect_next_bytes(gsvc_stream *s, const char *request_id, const unsigned char *want, size_t n)
{
    const gsvc_item *it;
    ck_assert_int_eq(gsvc_stream_next(s, &it), GSVC_ACT_SEND_MESSAGE);
    gsvc_resp r;
    ck_assert_int_eq(gsvc_resp_build(&r, it, request_id, NULL), ENG_OK);
    uint8_t buf[256];
    size_t got = protobuf_c_message_get_packed_size(&r.msg.base);
    ck_assert_uint_eq(got, n);
    ck_assert_uint_eq(protobuf_c_message_pack(&r.msg.base, buf), n);
    for (size_t i = 0; i < n; i++) ck_assert_msg(buf[i] == want[i], "byte %zu: %02x != %02x", i, buf[i], want[i]);
    gsvc_resp_free(&r);
    gsvc_stream_sent(s, true);
}

START_TEST(test_response_bytes)
{
    gsvc_stream s;
    /* Delta with two tokens */
    ck_assert_int_eq(gsvc_stream_init(&s, 1, 1 << 20, false), ENG_OK);
    int32_t ids[2] = {1965, 7};
    eng_event e;
    memset(&e, 0, sizeof e);
    e.kind = ENG_EV_TOKENS;
    e.tokens = ids;
    e.n_tokens = 2;
    e.text = e.content = " w1965";
    e.reasoning = "";
    ck_assert_int_eq(gsvc_stream_push(&s, &e), ENG_OK);
    expect_next_bytes(&s, "gen-1", fix_delta, FIX_DELTA_LEN);
    gsvc_stream_free(&s);

    /* Final of choice 2 with matched_stop_token = 0 (present although zero) */
    ck_assert_int_eq(gsvc_stream_init(&s, 3, 1 << 20, false), ENG_OK);
    memset(&e, 0, sizeof e);
    e.kind = ENG_EV_DONE;
    e.choice = 2;
    e.finish = ENG_FINISH_STOP;
    e.matched_stop = "\n\n";
    e.matched_stop_token = 0;
    e.usage.prompt_tokens = 11;
    e.usage.completion_tokens = 5;
    e.usage.reasoning_tokens = 2;
    e.timings.ttft_s = 0.5;
    ck_assert_int_eq(gsvc_stream_push(&s, &e), ENG_OK);
    expect_next_bytes(&s, "r", fix_final, FIX_FINAL_LEN);
    gsvc_stream_free(&s);

    /* reasoning, a tool call and logprobs */
    ck_assert_int_eq(gsvc_stream_init(&s, 2, 1 << 20, false), ENG_OK);
    int32_t id = 300;
    eng_top_logprob top = {301, -1.25f};
    eng_token_logprob lp = {300, -0.5f, &top, 1};
    eng_tool_delta td = {0, "call_1", "f", "{\"a\": 1}"};
    memset(&e, 0, sizeof e);
    e.kind = ENG_EV_TOKENS;
    e.choice = 1;
    e.tokens = &id;
    e.n_tokens = 1;
    e.text = e.content = "";
    e.reasoning = "\xC3\xA9";
    e.tool_deltas = &td;
    e.n_tool_deltas = 1;
    e.logprobs = &lp;
    ck_assert_int_eq(gsvc_stream_push(&s, &e), ENG_OK);
    expect_next_bytes(&s, "x", fix_tools_lp, FIX_TOOLS_LP_LEN);
    gsvc_stream_free(&s);

    /* an engine error becomes a Final of FINISH_REASON_ERROR */
    ck_assert_int_eq(gsvc_stream_init(&s, 1, 1 << 20, false), ENG_OK);
    gsvc_stream_error(&s, GRPC_STATUS_INTERNAL, "boom");
    expect_next_bytes(&s, "e", fix_final_err, FIX_FINAL_ERR_LEN);
    gsvc_stream_free(&s);
}
END_TEST

START_TEST(test_status_and_finish_maps)
{
    ck_assert_int_eq(gsvc_status_to_grpc(ENG_OK), GRPC_STATUS_OK);
    ck_assert_int_eq(gsvc_status_to_grpc(ENG_ERR_INVALID), GRPC_STATUS_INVALID_ARGUMENT);
    ck_assert_int_eq(gsvc_status_to_grpc(ENG_ERR_UNSUPPORTED), GRPC_STATUS_INVALID_ARGUMENT);
    ck_assert_int_eq(gsvc_status_to_grpc(ENG_ERR_QUEUE_FULL), GRPC_STATUS_RESOURCE_EXHAUSTED);
    ck_assert_int_eq(gsvc_status_to_grpc(ENG_ERR_NO_KV_BLOCKS), GRPC_STATUS_RESOURCE_EXHAUSTED);
    ck_assert_int_eq(gsvc_status_to_grpc(ENG_ERR_CANCELLED), GRPC_STATUS_CANCELLED);
    ck_assert_int_eq(gsvc_status_to_grpc(ENG_ERR_TIMEOUT), GRPC_STATUS_DEADLINE_EXCEEDED);
    ck_assert_int_eq(gsvc_status_to_grpc(ENG_ERR_DEVICE), GRPC_STATUS_INTERNAL);
    ck_assert_int_eq(gsvc_finish_to_pb(ENG_FINISH_TOOL_CALLS), QNEXT__V1__FINISH_REASON__FINISH_REASON_TOOL_CALLS);
    ck_assert_int_eq(gsvc_finish_to_pb(ENG_FINISH_CANCELLED), QNEXT__V1__FINISH_REASON__FINISH_REASON_CANCELLED);
    ck_assert_int_eq(gsvc_finish_to_pb(ENG_FINISH_NONE), QNEXT__V1__FINISH_REASON__FINISH_REASON_UNSPECIFIED);
}
END_TEST

static Suite *convert_suite(void)
{
    Suite *s = suite_create("gsvc_convert");
    TCase *tc = tcase_create("map");
    tcase_add_test(tc, test_map_chat_request);
    tcase_add_test(tc, test_map_prompt_and_tokens);
    tcase_add_test(tc, test_map_output_options);
    suite_add_tcase(s, tc);
    tc = tcase_create("validate");
    tcase_add_test(tc, test_validate_input);
    tcase_add_test(tc, test_validate_chat);
    tcase_add_test(tc, test_validate_sampling);
    tcase_add_test(tc, test_validate_stop);
    tcase_add_test(tc, test_alloc_failure_sweep);
    suite_add_tcase(s, tc);
    tc = tcase_create("respond");
    tcase_add_test(tc, test_response_bytes);
    tcase_add_test(tc, test_status_and_finish_maps);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(convert_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
