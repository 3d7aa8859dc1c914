/* tests/unit/rest_gateway/test_openai_request.c - OpenAI request validation and mapping.
 *
 * Each case is a literal request body and the expected gw_request fields, or the expected 400 with
 * the parameter it must name. Expected values are written by hand from the OpenAI spec and
 * docs/serving-notes.md §1, never computed by the code under test. A fault sweep checks that every
 * allocation failure ends in a clean 500 (ASan runs check for leaks).
 */
#include <check.h>

#include "core/core.h"
#include "openai_request.h"

#include <string.h>

static gw_request *req;
static gw_error err;

static eng_status parse_api(gw_api api, const char *body)
{
    gw_request_destroy(req);
    req = NULL;
    memset(&err, 0, sizeof err);
    return gw_request_parse(api, body, strlen(body), NULL, &req, &err);
}

static eng_status chat(const char *body)
{
    return parse_api(GW_API_CHAT, body);
}

static eng_status comp(const char *body)
{
    return parse_api(GW_API_COMPLETIONS, body);
}

static void teardown(void)
{
    gw_request_destroy(req);
    req = NULL;
}

/* expects a 400 naming `param` ("" = null) */
#define BAD400(call, prm)                                                                                            \
    do {                                                                                                             \
        ck_assert_int_eq((call), ENG_ERR_INVALID);                                                                   \
        ck_assert_int_eq(err.status, 400);                                                                           \
        ck_assert_str_eq(err.type, "invalid_request_error");                                                        \
        ck_assert_str_eq(err.param, (prm));                                                                          \
        ck_assert_ptr_null(req);                                                                                     \
    } while (0)

#define MSG "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]"

/* ==== chat: mapping =========================================================================== */

START_TEST(test_chat_minimal)
{
    ck_assert_int_eq(chat("{\"model\":\"m\"," MSG "}"), ENG_OK);
    ck_assert_str_eq(req->model, "m");
    ck_assert_str_eq(req->messages_json, "[{\"role\":\"user\",\"content\":\"hi\"}]");
    ck_assert(!req->stream);
    ck_assert_int_eq(req->n, 1);
    ck_assert_int_eq(req->logprobs, -1);
    ck_assert(!req->has_max_tokens);
    ck_assert(!req->has_temperature && !req->has_top_p && !req->has_seed);
    ck_assert(req->parallel_tool_calls);
    ck_assert(req->skip_special_tokens);
    ck_assert_uint_eq(gw_request_n_choices(req), 1);
}
END_TEST

START_TEST(test_chat_sampling_fields)
{
    ck_assert_int_eq(chat("{\"model\":\"m\"," MSG ",\"temperature\":0,\"top_p\":0.5,\"top_k\":-1,\"min_p\":0.1,"
                          "\"presence_penalty\":-2,\"frequency_penalty\":1.5,\"seed\":-1,\"n\":3,"
                          "\"repetition_penalty\":1.1,\"user\":\"u1\",\"min_tokens\":2,\"ignore_eos\":true,"
                          "\"skip_special_tokens\":false,\"stop_token_ids\":[7,9]}"),
                     ENG_OK);
    ck_assert(req->has_temperature);
    ck_assert(req->temperature == 0.0f);
    ck_assert(req->has_top_p && req->top_p == 0.5f);
    ck_assert(req->has_top_k);
    ck_assert_int_eq(req->top_k, 0); /* -1 means off */
    ck_assert(req->has_min_p && req->min_p == 0.1f);
    ck_assert(req->presence_penalty == -2.0f);
    ck_assert(req->frequency_penalty == 1.5f);
    ck_assert(req->has_seed);
    ck_assert(req->seed == UINT64_MAX); /* -1 as two's complement bits */
    ck_assert_int_eq(req->n, 3);
    ck_assert(req->has_repetition_penalty && req->repetition_penalty == 1.1f);
    ck_assert_int_eq(req->min_tokens, 2);
    ck_assert(req->ignore_eos);
    ck_assert(!req->skip_special_tokens);
    ck_assert_uint_eq(req->n_stop_token_ids, 2);
    ck_assert_int_eq(req->stop_token_ids[1], 9);
}
END_TEST

START_TEST(test_chat_max_tokens_precedence)
{
    ck_assert_int_eq(chat("{\"model\":\"m\"," MSG ",\"max_tokens\":50,\"max_completion_tokens\":20}"), ENG_OK);
    ck_assert(req->has_max_tokens);
    ck_assert_int_eq(req->max_tokens, 20);
    ck_assert_int_eq(chat("{\"model\":\"m\"," MSG ",\"max_completion_tokens\":20,\"max_tokens\":50}"), ENG_OK);
    ck_assert_int_eq(req->max_tokens, 20);
    ck_assert_int_eq(chat("{\"model\":\"m\"," MSG ",\"max_tokens\":50}"), ENG_OK);
    ck_assert_int_eq(req->max_tokens, 50);
    ck_assert_int_eq(chat("{\"model\":\"m\"," MSG ",\"max_tokens\":null}"), ENG_OK);
    ck_assert(!req->has_max_tokens);
    BAD400(chat("{\"model\":\"m\"," MSG ",\"max_tokens\":0}"), "max_tokens");
    BAD400(chat("{\"model\":\"m\"," MSG ",\"max_completion_tokens\":1.5}"), "max_completion_tokens");
}
END_TEST

START_TEST(test_chat_clamp)
{
    gw_limits lim;
    gw_limits_default(&lim);
    lim.max_tokens_clamp = 100;
    const char *b1 = "{\"model\":\"m\"," MSG ",\"max_tokens\":5000}";
    ck_assert_int_eq(gw_request_parse(GW_API_CHAT, b1, strlen(b1), &lim, &req, &err), ENG_OK);
    ck_assert_int_eq(req->max_tokens, 100);
    gw_request_destroy(req);
    const char *b2 = "{\"model\":\"m\"," MSG "}";
    ck_assert_int_eq(gw_request_parse(GW_API_CHAT, b2, strlen(b2), &lim, &req, &err), ENG_OK);
    ck_assert(req->has_max_tokens);
    ck_assert_int_eq(req->max_tokens, 100);
    gw_request_destroy(req);
    const char *b3 = "{\"model\":\"m\"," MSG ",\"max_tokens\":7}";
    ck_assert_int_eq(gw_request_parse(GW_API_CHAT, b3, strlen(b3), &lim, &req, &err), ENG_OK);
    ck_assert_int_eq(req->max_tokens, 7);
}
END_TEST

START_TEST(test_chat_stop)
{
    ck_assert_int_eq(chat("{\"model\":\"m\"," MSG ",\"stop\":\"END\"}"), ENG_OK);
    ck_assert_uint_eq(req->n_stop, 1);
    ck_assert_str_eq(req->stop[0], "END");
    ck_assert_int_eq(chat("{\"model\":\"m\"," MSG ",\"stop\":[\"a\",\"b\",\"c\",\"d\"]}"), ENG_OK);
    ck_assert_uint_eq(req->n_stop, 4);
    ck_assert_str_eq(req->stop[3], "d");
    ck_assert_int_eq(chat("{\"model\":\"m\"," MSG ",\"stop\":[]}"), ENG_OK);
    ck_assert_uint_eq(req->n_stop, 0);
    BAD400(chat("{\"model\":\"m\"," MSG ",\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}"), "stop");
    BAD400(chat("{\"model\":\"m\"," MSG ",\"stop\":[\"a\",3]}"), "stop[1]");
    BAD400(chat("{\"model\":\"m\"," MSG ",\"stop\":\"\"}"), "stop");
    BAD400(chat("{\"model\":\"m\"," MSG ",\"stop\":5}"), "stop");
}
END_TEST

START_TEST(test_chat_logprobs)
{
    ck_assert_int_eq(chat("{\"model\":\"m\"," MSG ",\"logprobs\":true}"), ENG_OK);
    ck_assert_int_eq(req->logprobs, 0);
    ck_assert_int_eq(chat("{\"model\":\"m\"," MSG ",\"logprobs\":true,\"top_logprobs\":20}"), ENG_OK);
    ck_assert_int_eq(req->logprobs, 20);
    ck_assert_int_eq(chat("{\"model\":\"m\"," MSG ",\"logprobs\":false}"), ENG_OK);
    ck_assert_int_eq(req->logprobs, -1);
    BAD400(chat("{\"model\":\"m\"," MSG ",\"top_logprobs\":2}"), "top_logprobs");
    BAD400(chat("{\"model\":\"m\"," MSG ",\"logprobs\":true,\"top_logprobs\":21}"), "top_logprobs");
    BAD400(chat("{\"model\":\"m\"," MSG ",\"logprobs\":1}"), "logprobs");
}
END_TEST

START_TEST(test_chat_ranges)
{
    BAD400(chat("{\"model\":\"m\"," MSG ",\"temperature\":2.01}"), "temperature");
    BAD400(chat("{\"model\":\"m\"," MSG ",\"temperature\":-0.1}"), "temperature");
    BAD400(chat("{\"model\":\"m\"," MSG ",\"temperature\":\"hot\"}"), "temperature");
    BAD400(chat("{\"model\":\"m\"," MSG ",\"top_p\":1.5}"), "top_p");
    BAD400(chat("{\"model\":\"m\"," MSG ",\"n\":0}"), "n");
    BAD400(chat("{\"model\":\"m\"," MSG ",\"n\":129}"), "n");
    BAD400(chat("{\"model\":\"m\"," MSG ",\"presence_penalty\":3}"), "presence_penalty");
    BAD400(chat("{\"model\":\"m\"," MSG ",\"frequency_penalty\":-2.5}"), "frequency_penalty");
    BAD400(chat("{\"model\":\"m\"," MSG ",\"seed\":1e30}"), "seed");
    BAD400(chat("{\"model\":\"m\"," MSG ",\"top_k\":-2}"), "top_k");
    BAD400(chat("{\"model\":\"m\"," MSG ",\"repetition_penalty\":0.005}"), "repetition_penalty");
    BAD400(chat("{\"model\":\"m\"," MSG ",\"stream\":1}"), "stream");
    BAD400(chat("{\"model\":\"m\"," MSG ",\"min_tokens\":10,\"max_tokens\":5}"), "min_tokens");
    ck_assert_int_eq(chat("{\"model\":\"m\"," MSG ",\"n\":128,\"temperature\":2,\"top_p\":0}"), ENG_OK);
    ck_assert(req->top_p > 0.0f && req->top_p <= 1e-9f); /* 0 = only the top token; the engine wants > 0 */
}
END_TEST

START_TEST(test_chat_stream_options)
{
    ck_assert_int_eq(chat("{\"model\":\"m\"," MSG ",\"stream\":true,\"stream_options\":{\"include_usage\":true}}"),
                     ENG_OK);
    ck_assert(req->stream && req->include_usage);
    BAD400(chat("{\"model\":\"m\"," MSG ",\"stream_options\":{\"include_usage\":true}}"), "stream_options");
    BAD400(chat("{\"model\":\"m\"," MSG ",\"stream\":true,\"stream_options\":{\"continuous_usage_stats\":true}}"),
           "stream_options.continuous_usage_stats");
    ck_assert_int_eq(chat("{\"model\":\"m\"," MSG ",\"stream\":false,\"stream_options\":null}"), ENG_OK);
}
END_TEST

/* ==== chat: unsupported and unknown fields ==================================================== */

START_TEST(test_chat_unsupported)
{
    BAD400(chat("{\"model\":\"m\"," MSG ",\"response_format\":{\"type\":\"json_object\"}}"), "response_format");
    BAD400(chat("{\"model\":\"m\"," MSG ",\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"x\"}}}"),
           "response_format");
    BAD400(chat("{\"model\":\"m\"," MSG ",\"tool_choice\":\"required\"}"), "tool_choice");
    BAD400(chat("{\"model\":\"m\"," MSG ",\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"f\"}}}"),
           "tool_choice");
    BAD400(chat("{\"model\":\"m\"," MSG ",\"functions\":[]}"), "functions");
    BAD400(chat("{\"model\":\"m\"," MSG ",\"function_call\":\"auto\"}"), "function_call");
    BAD400(chat("{\"model\":\"m\"," MSG ",\"audio\":{}}"), "audio");
    BAD400(chat("{\"model\":\"m\"," MSG ",\"modalities\":[\"text\",\"audio\"]}"), "modalities");
    BAD400(chat("{\"model\":\"m\"," MSG ",\"prediction\":{}}"), "prediction");
    BAD400(chat("{\"model\":\"m\"," MSG ",\"reasoning_effort\":\"low\"}"), "reasoning_effort");
    BAD400(chat("{\"model\":\"m\"," MSG ",\"store\":true}"), "store");
    BAD400(chat("{\"model\":\"m\"," MSG ",\"suffix\":\"x\"}"), "suffix"); /* completions only: unknown here */
    BAD400(chat("{\"model\":\"m\"," MSG ",\"frobnicate\":1}"), "frobnicate");
    ck_assert_str_eq(err.message, "Unrecognized request argument supplied: frobnicate");
    /* accepted no-ops */
    ck_assert_int_eq(chat("{\"model\":\"m\"," MSG ",\"response_format\":{\"type\":\"text\"},\"store\":false,"
                          "\"modalities\":[\"text\"],\"functions\":null,\"audio\":null}"),
                     ENG_OK);
}
END_TEST

START_TEST(test_chat_required_and_duplicates)
{
    BAD400(chat("{" MSG "}"), "model");
    BAD400(chat("{\"model\":\"m\"}"), "messages");
    BAD400(chat("{\"model\":null," MSG "}"), "model");
    BAD400(chat("{\"model\":\"m\",\"messages\":[]}"), "messages");
    BAD400(chat("{\"model\":\"m\",\"messages\":{}}"), "messages");
    BAD400(chat("{\"model\":\"m\"," MSG ",\"n\":1,\"n\":2}"), "n");
    ck_assert_str_eq(err.message, "duplicate key 'n' in the request body");
    /* model names are limited to 256 characters (not bytes) */
    char body[2048];
    char name[1024] = "";
    for (int i = 0; i < 256; i++) strcat(name, "\xc3\xa9");
    snprintf(body, sizeof body, "{\"model\":\"%s\"," MSG "}", name);
    ck_assert_int_eq(chat(body), ENG_OK);
    strcat(name, "x");
    snprintf(body, sizeof body, "{\"model\":\"%s\"," MSG "}", name);
    BAD400(chat(body), "model");
}
END_TEST

START_TEST(test_chat_body_checks)
{
    BAD400(chat(""), "");
    BAD400(chat("[1,2]"), "");
    BAD400(chat("{\"model\":"), "");
    ck_assert_ptr_nonnull(strstr(err.message, "not valid JSON"));
    BAD400(chat("{\"model\":\"m\"," MSG "} x"), "");
    ck_assert_ptr_nonnull(strstr(err.message, "trailing data"));
    BAD400(chat("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a\\u0000b\"}]}"), "");
    ck_assert_ptr_nonnull(strstr(err.message, "NUL"));
    BAD400(chat("{\"model\":\"\xff\"," MSG "}"), "");
    ck_assert_ptr_nonnull(strstr(err.message, "UTF-8"));
    /* lone surrogate escapes are rejected by the JSON parser */
    BAD400(chat("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\\ud800\"}]}"), "");
    /* an escaped backslash before u0000 is plain text, not a NUL */
    ck_assert_int_eq(chat("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\\\\u0000\"}]}"), ENG_OK);
    /* a raw NUL byte inside the body */
    static const char raw[] = "{\"model\":\"m\",\"x\":\"\0\"}";
    gw_request_destroy(req);
    req = NULL;
    ck_assert_int_eq(gw_request_parse(GW_API_CHAT, raw, sizeof raw - 1, NULL, &req, &err), ENG_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(err.message, "NUL"));
}
END_TEST

/* ==== chat: messages and tools ================================================================ */

START_TEST(test_chat_messages)
{
    ck_assert_int_eq(chat("{\"model\":\"m\",\"messages\":["
                          "{\"role\":\"system\",\"content\":[{\"type\":\"text\",\"text\":\"be brief\"}]},"
                          "{\"role\":\"user\",\"content\":\"weather?\",\"name\":\"bob\"},"
                          "{\"role\":\"assistant\",\"content\":null,\"refusal\":null,\"tool_calls\":[{\"id\":\"c1\","
                          "\"type\":\"function\",\"function\":{\"name\":\"w\",\"arguments\":\"{}\"}}]},"
                          "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"sunny\"},"
                          "{\"role\":\"assistant\",\"content\":\"It is sunny.\",\"reasoning_content\":\"ok\"}]}"),
                     ENG_OK);
    ck_assert_str_eq(req->messages_json,
                     "[{\"role\":\"system\",\"content\":[{\"type\":\"text\",\"text\":\"be brief\"}]},"
                     "{\"role\":\"user\",\"content\":\"weather?\",\"name\":\"bob\"},"
                     "{\"role\":\"assistant\",\"content\":null,\"refusal\":null,\"tool_calls\":[{\"id\":\"c1\","
                     "\"type\":\"function\",\"function\":{\"name\":\"w\",\"arguments\":\"{}\"}}]},"
                     "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"sunny\"},"
                     "{\"role\":\"assistant\",\"content\":\"It is sunny.\",\"reasoning_content\":\"ok\"}]");
    BAD400(chat("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},"
                "{\"type\":\"image_url\",\"image_url\":{\"url\":\"x\"}}]}]}"),
           "messages[0].content[1].type");
    BAD400(chat("{\"model\":\"m\",\"messages\":[{\"role\":\"tool\",\"content\":\"x\"}]}"), "messages[0].tool_call_id");
    BAD400(chat("{\"model\":\"m\",\"messages\":[{\"role\":\"wizard\",\"content\":\"x\"}]}"), "messages[0].role");
    BAD400(chat("{\"model\":\"m\",\"messages\":[{\"role\":\"function\",\"content\":\"x\",\"name\":\"f\"}]}"),
           "messages[0].role");
    BAD400(chat("{\"model\":\"m\",\"messages\":[{\"content\":\"x\"}]}"), "messages[0].role");
    BAD400(chat("{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}]}"), "messages[0].content");
    BAD400(chat("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[]}]}"), "messages[0].content");
    BAD400(chat("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":5}]}"), "messages[0].content");
    BAD400(chat("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"foo\":1}]}"), "messages[0].foo");
    BAD400(chat("{\"model\":\"m\",\"messages\":[\"hi\"]}"), "messages[0]");
    BAD400(chat("{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"c\",\"type\":"
                "\"function\",\"function\":{\"name\":\"f\",\"arguments\":{}}}]}]}"),
           "messages[0].tool_calls[0]");
    BAD400(chat("{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"content\":\"x\",\"audio\":{\"id\":\"a\"}}]}"),
           "messages[0].audio");
}
END_TEST

START_TEST(test_chat_tools)
{
    ck_assert_int_eq(chat("{\"model\":\"m\"," MSG ",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":"
                          "\"get_weather\",\"description\":\"d\",\"parameters\":{\"type\":\"object\",\"properties\":"
                          "{\"city\":{\"type\":\"string\"}}},\"strict\":false}}],\"tool_choice\":\"auto\","
                          "\"parallel_tool_calls\":false}"),
                     ENG_OK);
    ck_assert_uint_eq(req->n_tools, 1);
    ck_assert_str_eq(req->tools_json[0], "{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":"
                                         "\"d\",\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":"
                                         "\"string\"}}},\"strict\":false}}");
    ck_assert(!req->parallel_tool_calls);
    /* tool_choice "none" is honoured by not offering the tools */
    ck_assert_int_eq(chat("{\"model\":\"m\"," MSG ",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}],"
                          "\"tool_choice\":\"none\"}"),
                     ENG_OK);
    ck_assert_uint_eq(req->n_tools, 0);
    BAD400(chat("{\"model\":\"m\"," MSG ",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"bad name\"}}]}"),
           "tools[0].function.name");
    BAD400(chat("{\"model\":\"m\"," MSG ",\"tools\":[{\"type\":\"custom\",\"custom\":{\"name\":\"f\"}}]}"),
           "tools[0].type");
    BAD400(chat("{\"model\":\"m\"," MSG ",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\","
                "\"strict\":true}}]}"),
           "tools[0].function.strict");
    BAD400(chat("{\"model\":\"m\"," MSG ",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\","
                "\"parameters\":[]}}]}"),
           "tools[0].function.parameters");
    BAD400(chat("{\"model\":\"m\"," MSG ",\"tools\":{}}"), "tools");
}
END_TEST

START_TEST(test_chat_logit_bias_and_kwargs)
{
    ck_assert_int_eq(chat("{\"model\":\"m\"," MSG ",\"logit_bias\":{\"15\":-100,\"7\":2.5},"
                          "\"chat_template_kwargs\":{\"enable_thinking\":false}}"),
                     ENG_OK);
    ck_assert_uint_eq(req->n_bias, 2);
    ck_assert_int_eq(req->bias_tokens[0], 15);
    ck_assert(req->bias_values[0] == -100.0f);
    ck_assert_int_eq(req->bias_tokens[1], 7);
    ck_assert(req->bias_values[1] == 2.5f);
    ck_assert_str_eq(req->template_kwargs_json, "{\"enable_thinking\":false}");
    BAD400(chat("{\"model\":\"m\"," MSG ",\"logit_bias\":{\"x\":1}}"), "logit_bias");
    BAD400(chat("{\"model\":\"m\"," MSG ",\"logit_bias\":{\"-1\":1}}"), "logit_bias");
    BAD400(chat("{\"model\":\"m\"," MSG ",\"logit_bias\":{\"1\":101}}"), "logit_bias");
    BAD400(chat("{\"model\":\"m\"," MSG ",\"chat_template_kwargs\":[]}"), "chat_template_kwargs");
    /* with a known vocabulary, ids must be below it */
    gw_limits lim;
    gw_limits_default(&lim);
    lim.vocab_size = 10;
    const char *b = "{\"model\":\"m\"," MSG ",\"logit_bias\":{\"10\":1}}";
    gw_request_destroy(req);
    req = NULL;
    ck_assert_int_eq(gw_request_parse(GW_API_CHAT, b, strlen(b), &lim, &req, &err), ENG_ERR_INVALID);
    ck_assert_str_eq(err.param, "logit_bias");
}
END_TEST

/* ==== completions ============================================================================= */

START_TEST(test_completions_prompts)
{
    ck_assert_int_eq(comp("{\"model\":\"m\",\"prompt\":\"Once\"}"), ENG_OK);
    ck_assert_uint_eq(req->n_prompts, 1);
    ck_assert_str_eq(req->prompts[0].text, "Once");
    ck_assert(req->has_max_tokens);
    ck_assert_int_eq(req->max_tokens, 16); /* OpenAI's default */
    ck_assert_int_eq(comp("{\"model\":\"m\",\"prompt\":[\"a\",\"b\"],\"n\":2}"), ENG_OK);
    ck_assert_uint_eq(req->n_prompts, 2);
    ck_assert_str_eq(req->prompts[1].text, "b");
    ck_assert_uint_eq(gw_request_n_choices(req), 4);
    ck_assert_int_eq(comp("{\"model\":\"m\",\"prompt\":[1,2,3]}"), ENG_OK);
    ck_assert_uint_eq(req->n_prompts, 1);
    ck_assert_ptr_null(req->prompts[0].text);
    ck_assert_uint_eq(req->prompts[0].n_ids, 3);
    ck_assert_int_eq(req->prompts[0].ids[2], 3);
    ck_assert_int_eq(comp("{\"model\":\"m\",\"prompt\":[[1],[2,3]],\"max_tokens\":4}"), ENG_OK);
    ck_assert_uint_eq(req->n_prompts, 2);
    ck_assert_uint_eq(req->prompts[1].n_ids, 2);
    ck_assert_int_eq(req->max_tokens, 4);
    BAD400(comp("{\"model\":\"m\",\"prompt\":[]}"), "prompt");
    BAD400(comp("{\"model\":\"m\",\"prompt\":[\"a\",1]}"), "prompt[1]");
    BAD400(comp("{\"model\":\"m\",\"prompt\":[1,-1]}"), "prompt");
    BAD400(comp("{\"model\":\"m\",\"prompt\":[[1],[]]}"), "prompt[1]");
    BAD400(comp("{\"model\":\"m\",\"prompt\":{}}"), "prompt");
    BAD400(comp("{\"model\":\"m\"}"), "prompt");
    BAD400(comp("{\"model\":\"m\",\"prompt\":[\"a\",\"b\"],\"n\":65}"), "n");
}
END_TEST

START_TEST(test_completions_fields)
{
    ck_assert_int_eq(comp("{\"model\":\"m\",\"prompt\":\"x\",\"logprobs\":5,\"echo\":false,\"suffix\":\"\","
                          "\"best_of\":1,\"stream\":true,\"stream_options\":{\"include_usage\":true}}"),
                     ENG_OK);
    ck_assert_int_eq(req->logprobs, 5);
    ck_assert(req->include_usage);
    ck_assert_int_eq(comp("{\"model\":\"m\",\"prompt\":\"x\",\"echo\":true}"), ENG_OK);
    ck_assert(req->echo);
    BAD400(comp("{\"model\":\"m\",\"prompt\":\"x\",\"logprobs\":6}"), "logprobs");
    BAD400(comp("{\"model\":\"m\",\"prompt\":\"x\",\"logprobs\":true}"), "logprobs");
    BAD400(comp("{\"model\":\"m\",\"prompt\":\"x\",\"suffix\":\"tail\"}"), "suffix");
    BAD400(comp("{\"model\":\"m\",\"prompt\":\"x\",\"best_of\":2}"), "best_of");
    BAD400(comp("{\"model\":\"m\",\"prompt\":[1,2],\"echo\":true}"), "echo");
    BAD400(comp("{\"model\":\"m\",\"prompt\":\"x\",\"echo\":true,\"logprobs\":1}"), "echo");
    BAD400(comp("{\"model\":\"m\",\"prompt\":\"x\",\"messages\":[]}"), "messages");
    BAD400(comp("{\"model\":\"m\",\"prompt\":\"x\",\"top_logprobs\":1}"), "top_logprobs");
    BAD400(comp("{\"model\":\"m\",\"prompt\":\"x\",\"max_completion_tokens\":1}"), "max_completion_tokens");
}
END_TEST

/* ==== allocation failures ===================================================================== */

START_TEST(test_alloc_failure_sweep)
{
    const char *body = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stop\":[\"a\",\"b\"],"
                       "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}],\"logit_bias\":{\"1\":1},"
                       "\"chat_template_kwargs\":{\"a\":1},\"stop_token_ids\":[1]}";
    const char *cbody = "{\"model\":\"m\",\"prompt\":[[1,2],[3]],\"n\":2}";
    for (int api = 0; api < 2; api++) {
        const char *b = api ? cbody : body;
        gw_api a = api ? GW_API_COMPLETIONS : GW_API_CHAT;
        long before = eng_alloc_count();
        ck_assert_int_eq(gw_request_parse(a, b, strlen(b), NULL, &req, &err), ENG_OK);
        long n = eng_alloc_count() - before;
        gw_request_destroy(req);
        req = NULL;
        ck_assert_int_gt(n, 3);
        for (long k = 0; k < n; k++) {
            eng_alloc_fail_after(k);
            eng_status st = gw_request_parse(a, b, strlen(b), NULL, &req, &err);
            eng_alloc_fail_after(-1);
            if (st == ENG_OK) {
                gw_request_destroy(req);
                req = NULL;
                continue;
            }
            ck_assert_int_eq(st, ENG_ERR_NOMEM);
            ck_assert_int_eq(err.status, 500);
            ck_assert_ptr_null(req);
        }
    }
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("openai_request");
    TCase *tc = tcase_create("chat");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, test_chat_minimal);
    tcase_add_test(tc, test_chat_sampling_fields);
    tcase_add_test(tc, test_chat_max_tokens_precedence);
    tcase_add_test(tc, test_chat_clamp);
    tcase_add_test(tc, test_chat_stop);
    tcase_add_test(tc, test_chat_logprobs);
    tcase_add_test(tc, test_chat_ranges);
    tcase_add_test(tc, test_chat_stream_options);
    tcase_add_test(tc, test_chat_unsupported);
    tcase_add_test(tc, test_chat_required_and_duplicates);
    tcase_add_test(tc, test_chat_body_checks);
    tcase_add_test(tc, test_chat_messages);
    tcase_add_test(tc, test_chat_tools);
    tcase_add_test(tc, test_chat_logit_bias_and_kwargs);
    suite_add_tcase(s, tc);
    tc = tcase_create("completions");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, test_completions_prompts);
    tcase_add_test(tc, test_completions_fields);
    suite_add_tcase(s, tc);
    tc = tcase_create("faults");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, test_alloc_failure_sweep);
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
