/* tests/fuzz/fuzz_gw_request.c - libFuzzer target for the gateway's OpenAI request parser.
 *
 * Each input is parsed as a /v1/chat/completions body and as a /v1/completions body (with a known
 * vocabulary size and a max-tokens clamp, so those branches run too). A parse must succeed or fail
 * cleanly with a 400/500 error naming a parameter; it must never crash, hang or leak (ASan/UBSan).
 *
 * The parser modules need only qn_core and cJSON, which qn_engine brings, so they are compiled in
 * here directly: the fuzz build (QN_GATEWAY=OFF) links fuzzers against qn_engine alone.
 */
#include "../../rest_gateway/json_write.c"
#include "../../rest_gateway/openai_request.c"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gw_limits lim;
    gw_limits_default(&lim);
    lim.vocab_size = 151936;
    lim.max_tokens_clamp = 4096;
    for (int api = 1; api <= 2; api++) {
        gw_request *r = NULL;
        gw_error e;
        eng_status st = gw_request_parse((gw_api)api, (const char *)data, size, &lim, &r, &e);
        if (st == ENG_OK) {
            if (!r || !r->model) abort();
            if (api == GW_API_CHAT && !r->messages_json) abort();
            if (api == GW_API_COMPLETIONS && (r->n_prompts == 0 || gw_request_n_choices(r) > 128)) abort();
            if (r->n_stop > 4 || r->n < 1 || r->n > 128) abort();
            if (r->has_max_tokens && (r->max_tokens < 1 || r->max_tokens > 4096)) abort();
            gw_request_destroy(r);
        } else {
            if (r) abort();
            if (e.status != 400 && e.status != 500) abort();
        }
    }
    return 0;
}
