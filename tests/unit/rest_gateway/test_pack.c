/* tests/unit/rest_gateway/test_pack.c - gw_request -> qnext.v1.GenerateRequest mapping.
 *
 * Packs requests parsed from literal OpenAI bodies, unpacks the bytes with protobuf-c and checks
 * every mapped field, including oneof presence (unset sampling fields must stay absent so the
 * engine applies the model's defaults).
 */
#include <check.h>

#include "core/core.h"
#include "openai_request.h"
#include "pack.h"

#include <string.h>

static Qnext__V1__GenerateRequest *pack(gw_api api, const char *body, size_t idx)
{
    gw_request *r;
    gw_error e;
    ck_assert_int_eq(gw_request_parse(api, body, strlen(body), NULL, &r, &e), ENG_OK);
    uint8_t *b;
    size_t n;
    ck_assert_int_eq(gw_pack_generate(r, idx, "req-1", &b, &n), ENG_OK);
    Qnext__V1__GenerateRequest *g = qnext__v1__generate_request__unpack(NULL, n, b);
    ck_assert_ptr_nonnull(g);
    eng_free(b);
    gw_request_destroy(r);
    return g;
}

START_TEST(test_chat_mapping)
{
    Qnext__V1__GenerateRequest *g =
        pack(GW_API_CHAT,
             "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"temperature\":0,\"seed\":42,"
             "\"n\":2,\"max_tokens\":9,\"max_completion_tokens\":7,\"stop\":[\"x\",\"y\"],\"logprobs\":true,"
             "\"top_logprobs\":3,\"logit_bias\":{\"5\":-100},\"presence_penalty\":0.5,\"stop_token_ids\":[11],"
             "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}],"
             "\"chat_template_kwargs\":{\"enable_thinking\":false},\"skip_special_tokens\":false,\"min_tokens\":1,"
             "\"ignore_eos\":true}",
             0);
    ck_assert_str_eq(g->request_id, "req-1");
    ck_assert_int_eq(g->input_case, QNEXT__V1__GENERATE_REQUEST__INPUT_CHAT);
    ck_assert_str_eq(g->chat->messages_json, "[{\"role\":\"user\",\"content\":\"hi\"}]");
    ck_assert_uint_eq(g->chat->n_tools_json, 1);
    ck_assert_str_eq(g->chat->tools_json[0], "{\"type\":\"function\",\"function\":{\"name\":\"f\"}}");
    ck_assert_str_eq(g->chat->template_kwargs_json, "{\"enable_thinking\":false}");
    Qnext__V1__SamplingParams *s = g->sampling;
    ck_assert_int_eq(s->temperature_opt_case, QNEXT__V1__SAMPLING_PARAMS__TEMPERATURE_OPT_TEMPERATURE);
    ck_assert(s->temperature == 0.0f);
    ck_assert_int_eq(s->top_p_opt_case, QNEXT__V1__SAMPLING_PARAMS__TOP_P_OPT__NOT_SET);
    ck_assert_int_eq(s->top_k_opt_case, QNEXT__V1__SAMPLING_PARAMS__TOP_K_OPT__NOT_SET);
    ck_assert_int_eq(s->seed_opt_case, QNEXT__V1__SAMPLING_PARAMS__SEED_OPT_SEED);
    ck_assert_uint_eq(s->seed, 42);
    ck_assert_int_eq(s->n, 2);
    ck_assert_int_eq(s->logprobs_opt_case, QNEXT__V1__SAMPLING_PARAMS__LOGPROBS_OPT_LOGPROBS);
    ck_assert_int_eq(s->logprobs, 3);
    ck_assert_uint_eq(s->n_logit_bias, 1);
    ck_assert_int_eq(s->logit_bias[0]->token, 5);
    ck_assert(s->logit_bias[0]->bias == -100.0f);
    ck_assert(s->presence_penalty == 0.5f);
    Qnext__V1__StopParams *st = g->stop;
    ck_assert_int_eq(st->max_tokens_opt_case, QNEXT__V1__STOP_PARAMS__MAX_TOKENS_OPT_MAX_TOKENS);
    ck_assert_int_eq(st->max_tokens, 7);
    ck_assert_uint_eq(st->n_stop, 2);
    ck_assert_str_eq(st->stop[1], "y");
    ck_assert_uint_eq(st->n_stop_token_ids, 1);
    ck_assert_int_eq(st->stop_token_ids[0], 11);
    ck_assert_int_eq(st->min_tokens, 1);
    ck_assert(st->ignore_eos);
    ck_assert(g->output->keep_special_tokens);
    ck_assert(!g->output->raw_output);
    qnext__v1__generate_request__free_unpacked(g, NULL);
}
END_TEST

START_TEST(test_chat_defaults_absent)
{
    Qnext__V1__GenerateRequest *g =
        pack(GW_API_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", 0);
    ck_assert_int_eq(g->sampling->temperature_opt_case, QNEXT__V1__SAMPLING_PARAMS__TEMPERATURE_OPT__NOT_SET);
    ck_assert_int_eq(g->sampling->seed_opt_case, QNEXT__V1__SAMPLING_PARAMS__SEED_OPT__NOT_SET);
    ck_assert_int_eq(g->sampling->logprobs_opt_case, QNEXT__V1__SAMPLING_PARAMS__LOGPROBS_OPT__NOT_SET);
    ck_assert_int_eq(g->stop->max_tokens_opt_case, QNEXT__V1__STOP_PARAMS__MAX_TOKENS_OPT__NOT_SET);
    ck_assert_int_eq(g->sampling->n, 1);
    ck_assert_str_eq(g->chat->template_kwargs_json, "");
    ck_assert(!g->output->keep_special_tokens);
    qnext__v1__generate_request__free_unpacked(g, NULL);
}
END_TEST

START_TEST(test_completions_mapping)
{
    const char *body = "{\"model\":\"m\",\"prompt\":[[1,2,3],[4]],\"logprobs\":0,\"seed\":-2}";
    Qnext__V1__GenerateRequest *g = pack(GW_API_COMPLETIONS, body, 0);
    ck_assert_int_eq(g->input_case, QNEXT__V1__GENERATE_REQUEST__INPUT_TOKEN_IDS);
    ck_assert_uint_eq(g->token_ids->n_ids, 3);
    ck_assert_int_eq(g->token_ids->ids[2], 3);
    ck_assert_int_eq(g->sampling->logprobs_opt_case, QNEXT__V1__SAMPLING_PARAMS__LOGPROBS_OPT_LOGPROBS);
    ck_assert_int_eq(g->sampling->logprobs, 0);
    ck_assert_uint_eq(g->sampling->seed, (uint64_t)-2);
    ck_assert_int_eq(g->stop->max_tokens, 16);
    qnext__v1__generate_request__free_unpacked(g, NULL);
    g = pack(GW_API_COMPLETIONS, body, 1);
    ck_assert_uint_eq(g->token_ids->n_ids, 1);
    ck_assert_int_eq(g->token_ids->ids[0], 4);
    qnext__v1__generate_request__free_unpacked(g, NULL);
    g = pack(GW_API_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"Once upon\"}", 0);
    ck_assert_int_eq(g->input_case, QNEXT__V1__GENERATE_REQUEST__INPUT_PROMPT);
    ck_assert_str_eq(g->prompt, "Once upon");
    qnext__v1__generate_request__free_unpacked(g, NULL);
}
END_TEST

START_TEST(test_byte_buffer_roundtrip)
{
    Qnext__V1__GenerateResponse m = QNEXT__V1__GENERATE_RESPONSE__INIT;
    Qnext__V1__Delta d = QNEXT__V1__DELTA__INIT;
    d.content = "hé";
    m.choice = 3;
    m.kind_case = QNEXT__V1__GENERATE_RESPONSE__KIND_DELTA;
    m.delta = &d;
    uint8_t buf[64];
    size_t n = qnext__v1__generate_response__pack(&m, buf);
    grpc_byte_buffer *bb = gw_pack_to_bb(buf, n);
    Qnext__V1__GenerateResponse *u =
        (Qnext__V1__GenerateResponse *)gw_unpack_bb(&qnext__v1__generate_response__descriptor, bb);
    ck_assert_ptr_nonnull(u);
    ck_assert_uint_eq(u->choice, 3);
    ck_assert_str_eq(u->delta->content, "hé");
    protobuf_c_message_free_unpacked(&u->base, NULL);
    grpc_byte_buffer_destroy(bb);
    /* malformed bytes unpack to NULL */
    uint8_t bad[] = {0x1a, 0x7f, 0x01};
    bb = gw_pack_to_bb(bad, sizeof bad);
    ck_assert_ptr_null(gw_unpack_bb(&qnext__v1__generate_response__descriptor, bb));
    grpc_byte_buffer_destroy(bb);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("pack");
    TCase *tc = tcase_create("generate");
    tcase_add_test(tc, test_chat_mapping);
    tcase_add_test(tc, test_chat_defaults_absent);
    tcase_add_test(tc, test_completions_mapping);
    tcase_add_test(tc, test_byte_buffer_roundtrip);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
