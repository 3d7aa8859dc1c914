/* tests/unit/grpc_service/test_gsvc_wire.c - grpc_service/wire.c: strict unpacking of outside bytes
 * (against encodings made by the Python protobuf runtime), the wire check's rejections, round trips,
 * a garbage/mutation loop and an allocation-failure sweep. */
#include "gsvc_wire_fixtures.h"
#include "util.h"
#include "wire.h"

#include "grpc/health/v1/health.pb-c.h"
#include "qnext/v1/generator.pb-c.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#define GEN_REQ (&qnext__v1__generate_request__descriptor)

/* Unpacks and expects ENG_ERR_INVALID with `needle` in the detail. */
static void expect_invalid(const ProtobufCMessageDescriptor *d, const void *p, size_t n, const char *needle)
{
    ProtobufCMessage *m = (ProtobufCMessage *)1;
    eng_status st = gsvc_unpack(d, p, n, &m);
    ck_assert_int_eq(st, ENG_ERR_INVALID);
    ck_assert_ptr_null(m);
    ck_assert_msg(strstr(eng_err_last(), needle), "detail \"%s\" lacks \"%s\"", eng_err_last(), needle);
}

/* ==== decoding known encodings ================================================================ */

START_TEST(test_unpack_chat_request)
{
    ProtobufCMessage *m;
    ck_assert_int_eq(gsvc_unpack(GEN_REQ, fix_chat_request, FIX_CHAT_REQUEST_LEN, &m), ENG_OK);
    const Qnext__V1__GenerateRequest *r = (const Qnext__V1__GenerateRequest *)m;
    ck_assert_str_eq(r->request_id, "abc");
    ck_assert_int_eq(r->priority, -3);
    ck_assert_int_eq(r->input_case, QNEXT__V1__GENERATE_REQUEST__INPUT_CHAT);
    ck_assert_uint_eq(r->chat->n_messages, 4);
    ck_assert_str_eq(r->chat->messages[0]->role, "system");
    ck_assert_str_eq(r->chat->messages[0]->content, "Be brief.");
    ck_assert_int_eq(r->chat->messages[1]->content_opt_case, QNEXT__V1__CHAT_MESSAGE__CONTENT_OPT__NOT_SET);
    ck_assert_str_eq(r->chat->messages[1]->reasoning_content, "think");
    ck_assert_str_eq(r->chat->messages[1]->tool_calls[0]->arguments, "{\"q\": \"a\\\"b\"}");
    ck_assert_str_eq(r->chat->messages[3]->content, "Line1\nTab\t\"q\" \xC3\xA9 \x01");
    ck_assert_str_eq(r->chat->template_kwargs_json, "{\"enable_thinking\": false}");
    ck_assert_int_eq(r->sampling->temperature_opt_case, QNEXT__V1__SAMPLING_PARAMS__TEMPERATURE_OPT_TEMPERATURE);
    ck_assert(r->sampling->temperature == 0.0f);
    ck_assert_int_eq(r->sampling->top_p_opt_case, QNEXT__V1__SAMPLING_PARAMS__TOP_P_OPT__NOT_SET);
    ck_assert_int_eq(r->sampling->top_k, 20);
    ck_assert_uint_eq(r->sampling->seed, 7);
    ck_assert_int_eq(r->sampling->logit_bias[0]->token, 5);
    ck_assert(r->sampling->logit_bias[0]->bias == -100.0f);
    ck_assert_int_eq(r->stop->max_tokens, 16);
    ck_assert_int_eq(r->stop->stop_token_ids[0], 151645);
    ck_assert(r->output->skip_text);

    /* protobuf-c re-encodes it to the same bytes (both encoders are canonical) */
    uint8_t buf[512];
    size_t n = protobuf_c_message_pack(m, buf);
    ck_assert_uint_eq(n, FIX_CHAT_REQUEST_LEN);
    ck_assert(!memcmp(buf, fix_chat_request, n));
    gsvc_msg_free(m);
}
END_TEST

START_TEST(test_unpack_small_requests)
{
    ProtobufCMessage *m;
    ck_assert_int_eq(gsvc_unpack(GEN_REQ, fix_prompt_request, FIX_PROMPT_REQUEST_LEN, &m), ENG_OK);
    ck_assert_str_eq(((Qnext__V1__GenerateRequest *)m)->prompt, "Hello");
    ck_assert_ptr_null(((Qnext__V1__GenerateRequest *)m)->sampling);
    gsvc_msg_free(m);
    ck_assert_int_eq(gsvc_unpack(GEN_REQ, fix_tokens_request, FIX_TOKENS_REQUEST_LEN, &m), ENG_OK);
    const Qnext__V1__TokenIds *t = ((Qnext__V1__GenerateRequest *)m)->token_ids;
    ck_assert_uint_eq(t->n_ids, 3);
    ck_assert_int_eq(t->ids[2], 151643);
    gsvc_msg_free(m);
    /* an empty message is valid: every field at its default */
    ck_assert_int_eq(gsvc_unpack(GEN_REQ, NULL, 0, &m), ENG_OK);
    ck_assert_int_eq(((Qnext__V1__GenerateRequest *)m)->input_case, QNEXT__V1__GENERATE_REQUEST__INPUT__NOT_SET);
    gsvc_msg_free(m);
    /* health */
    ck_assert_int_eq(gsvc_unpack(&grpc__health__v1__health_check_response__descriptor, fix_health_serving,
                                 FIX_HEALTH_SERVING_LEN, &m),
                     ENG_OK);
    ck_assert_int_eq(((Grpc__Health__V1__HealthCheckResponse *)m)->status,
                     GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
    gsvc_msg_free(m);
    gsvc_msg_free(NULL);
}
END_TEST

START_TEST(test_unknown_fields_skipped)
{
    /* field 99 varint, field 100 length-delimited (with bytes that are not UTF-8: not a string
     * field, so no check), then prompt */
    static const unsigned char b[] = "\x98\x06\x05\xa2\x06\x02\xff\xfe\x12\x02hi";
    ProtobufCMessage *m;
    ck_assert_int_eq(gsvc_unpack(GEN_REQ, b, sizeof b - 1, &m), ENG_OK);
    ck_assert_str_eq(((Qnext__V1__GenerateRequest *)m)->prompt, "hi");
    gsvc_msg_free(m);
}
END_TEST

/* ==== rejections ============================================================================== */

START_TEST(test_reject_bad_strings)
{
    expect_invalid(GEN_REQ, "\x12\x02\xc3\x28", 4, "GenerateRequest.prompt: string is not valid UTF-8");
    expect_invalid(GEN_REQ, "\x12\x03\x61\x00\x62", 5, "GenerateRequest.prompt: string contains a NUL");
    expect_invalid(GEN_REQ, "\x0a\x02\xed\xa0", 4, "request_id");
    /* nested: chat.messages[0].content = "\xff" */
    expect_invalid(GEN_REQ, "\x22\x05\x0a\x03\x12\x01\xff", 7, "ChatMessage.content: string is not valid UTF-8");
    /* nested deeper: chat.messages[0].tool_calls[0].name = "\xc0\x80" (overlong NUL) */
    expect_invalid(GEN_REQ, "\x22\x08\x0a\x06\x22\x04\x12\x02\xc0\x80", 10, "ChatToolCall.name");
}
END_TEST

START_TEST(test_reject_malformed)
{
    expect_invalid(GEN_REQ, "\x12\x05\x61\x62", 4, "truncated length-delimited");
    expect_invalid(GEN_REQ, "\x12", 1, "truncated length-delimited");
    expect_invalid(GEN_REQ, "\x40", 1, "truncated varint");
    expect_invalid(GEN_REQ, "\x40\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 12, "truncated varint");
    expect_invalid(GEN_REQ, "\x0b", 1, "unsupported wire type 3");
    expect_invalid(GEN_REQ, "\x0f", 1, "unsupported wire type 7");
    expect_invalid(GEN_REQ, "\x02\x00", 2, "invalid field number");
    expect_invalid(GEN_REQ, "\x0d\x01\x02", 3, "truncated fixed");
    expect_invalid(GEN_REQ, "\x80", 1, "truncated tag");
    /* well framed, wrong wire type for the field (prompt as a varint): protobuf-c rejects it */
    expect_invalid(GEN_REQ, "\x10\x01", 2, "malformed GenerateRequest");
    /* a sub-message whose inner framing is broken */
    expect_invalid(GEN_REQ, "\x22\x02\x0a\x05", 4, "malformed ChatInput");
}
END_TEST

/* ==== robustness ============================================================================== */

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)rng;
}

START_TEST(test_garbage_and_mutations)
{
    uint8_t buf[FIX_CHAT_REQUEST_LEN + 16];
    int ok = 0, bad = 0;
    for (int iter = 0; iter < 200000; iter++) {
        size_t n;
        if (iter & 1) { /* random bytes */
            n = next_rand() % 48;
            for (size_t i = 0; i < n; i++) buf[i] = (uint8_t)next_rand();
        } else { /* the chat request with 1-4 bytes changed, maybe cut */
            memcpy(buf, fix_chat_request, FIX_CHAT_REQUEST_LEN);
            n = FIX_CHAT_REQUEST_LEN;
            for (uint32_t k = next_rand() % 4 + 1; k; k--) buf[next_rand() % n] = (uint8_t)next_rand();
            if (next_rand() % 4 == 0) n = next_rand() % n;
        }
        ProtobufCMessage *m;
        eng_status st = gsvc_unpack(GEN_REQ, buf, n, &m);
        ck_assert(st == ENG_OK || st == ENG_ERR_INVALID);
        if (st == ENG_OK) {
            ok++;
            /* what was accepted re-encodes and decodes again */
            uint8_t *again = malloc(protobuf_c_message_get_packed_size(m) + 1);
            size_t k = protobuf_c_message_pack(m, again);
            ProtobufCMessage *m2;
            ck_assert_int_eq(gsvc_unpack(GEN_REQ, again, k, &m2), ENG_OK);
            gsvc_msg_free(m2);
            free(again);
            gsvc_msg_free(m);
        } else {
            ck_assert_ptr_null(m);
            bad++;
        }
    }
    ck_assert_int_gt(ok, 1000); /* both outcomes were exercised */
    ck_assert_int_gt(bad, 1000);
}
END_TEST

START_TEST(test_alloc_failure_sweep)
{
    int failures = 0;
    for (long k = 0; k < 200; k++) {
        ProtobufCMessage *m;
        gsvc_alloc_fail_after(k);
        eng_status st = gsvc_unpack(GEN_REQ, fix_chat_request, FIX_CHAT_REQUEST_LEN, &m);
        gsvc_alloc_fail_after(-1);
        if (st == ENG_OK) {
            ck_assert_str_eq(((Qnext__V1__GenerateRequest *)m)->request_id, "abc");
            gsvc_msg_free(m);
            ck_assert_int_gt(k, 5); /* it does allocate: the sweep reached the success point */
            break;
        }
        ck_assert_int_eq(st, ENG_ERR_INVALID); /* protobuf-c reports OOM as a failed unpack */
        ck_assert_ptr_null(m);
        failures++;
    }
    ck_assert_int_gt(failures, 5);
}
END_TEST

START_TEST(test_pack_matches_python)
{
    Grpc__Health__V1__HealthCheckResponse h = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    h.status = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
    uint8_t out[8];
    ck_assert_uint_eq(protobuf_c_message_pack(&h.base, out), FIX_HEALTH_SERVING_LEN);
    ck_assert(!memcmp(out, fix_health_serving, FIX_HEALTH_SERVING_LEN));
}
END_TEST

static Suite *wire_suite(void)
{
    Suite *s = suite_create("gsvc_wire");
    TCase *tc = tcase_create("decode");
    tcase_add_test(tc, test_unpack_chat_request);
    tcase_add_test(tc, test_unpack_small_requests);
    tcase_add_test(tc, test_unknown_fields_skipped);
    tcase_add_test(tc, test_pack_matches_python);
    suite_add_tcase(s, tc);
    tc = tcase_create("reject");
    tcase_add_test(tc, test_reject_bad_strings);
    tcase_add_test(tc, test_reject_malformed);
    suite_add_tcase(s, tc);
    tc = tcase_create("robustness");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_garbage_and_mutations);
    tcase_add_test(tc, test_alloc_failure_sweep);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(wire_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
