/* pack.c - GenerateRequest building and byte-buffer bridging (see pack.h).
 *
 * The proto structs point into the gw_request (no copies); only the packed bytes are allocated.
 */
#include "pack.h"

#include "core/core.h" /* defines: eng_malloc */

#include <grpc/byte_buffer_reader.h>
#include <grpc/slice.h>

#include <string.h>

eng_status gw_pack_generate(const gw_request *r, size_t prompt_idx, const char *request_id, uint8_t **out,
                            size_t *len)
{
    *out = NULL;
    *len = 0;
    eng_status st = ENG_ERR_NOMEM;
    Qnext__V1__GenerateRequest g = QNEXT__V1__GENERATE_REQUEST__INIT;
    Qnext__V1__ChatInput chat = QNEXT__V1__CHAT_INPUT__INIT;
    Qnext__V1__TokenIds ids = QNEXT__V1__TOKEN_IDS__INIT;
    Qnext__V1__SamplingParams sp = QNEXT__V1__SAMPLING_PARAMS__INIT;
    Qnext__V1__StopParams stop = QNEXT__V1__STOP_PARAMS__INIT;
    Qnext__V1__OutputOptions oo = QNEXT__V1__OUTPUT_OPTIONS__INIT;
    Qnext__V1__LogitBias *bias = NULL, **bias_p = NULL;

    g.request_id = (char *)(request_id ? request_id : "");
    if (r->api == GW_API_CHAT) {
        g.input_case = QNEXT__V1__GENERATE_REQUEST__INPUT_CHAT;
        g.chat = &chat;
        chat.messages_json = r->messages_json;
        chat.n_tools_json = r->n_tools;
        chat.tools_json = r->tools_json;
        if (r->template_kwargs_json) chat.template_kwargs_json = r->template_kwargs_json;
    } else {
        const gw_prompt *p = &r->prompts[prompt_idx];
        if (p->text) {
            g.input_case = QNEXT__V1__GENERATE_REQUEST__INPUT_PROMPT;
            g.prompt = p->text;
        } else {
            g.input_case = QNEXT__V1__GENERATE_REQUEST__INPUT_TOKEN_IDS;
            g.token_ids = &ids;
            ids.n_ids = p->n_ids;
            ids.ids = p->ids;
        }
    }

    g.sampling = &sp;
    if (r->has_temperature) {
        sp.temperature_opt_case = QNEXT__V1__SAMPLING_PARAMS__TEMPERATURE_OPT_TEMPERATURE;
        sp.temperature = r->temperature;
    }
    if (r->has_top_p) {
        sp.top_p_opt_case = QNEXT__V1__SAMPLING_PARAMS__TOP_P_OPT_TOP_P;
        sp.top_p = r->top_p;
    }
    if (r->has_top_k) {
        sp.top_k_opt_case = QNEXT__V1__SAMPLING_PARAMS__TOP_K_OPT_TOP_K;
        sp.top_k = r->top_k;
    }
    if (r->has_min_p) {
        sp.min_p_opt_case = QNEXT__V1__SAMPLING_PARAMS__MIN_P_OPT_MIN_P;
        sp.min_p = r->min_p;
    }
    if (r->has_repetition_penalty) {
        sp.repetition_penalty_opt_case = QNEXT__V1__SAMPLING_PARAMS__REPETITION_PENALTY_OPT_REPETITION_PENALTY;
        sp.repetition_penalty = r->repetition_penalty;
    }
    if (r->has_seed) {
        sp.seed_opt_case = QNEXT__V1__SAMPLING_PARAMS__SEED_OPT_SEED;
        sp.seed = r->seed;
    }
    sp.presence_penalty = r->presence_penalty;
    sp.frequency_penalty = r->frequency_penalty;
    sp.n = r->n;
    if (r->logprobs >= 0) {
        sp.logprobs_opt_case = QNEXT__V1__SAMPLING_PARAMS__LOGPROBS_OPT_LOGPROBS;
        sp.logprobs = r->logprobs;
    }
    if (r->n_bias) {
        bias = eng_calloc(r->n_bias, sizeof *bias);
        bias_p = eng_calloc(r->n_bias, sizeof *bias_p);
        if (!bias || !bias_p) goto out;
        for (size_t i = 0; i < r->n_bias; i++) {
            Qnext__V1__LogitBias init = QNEXT__V1__LOGIT_BIAS__INIT;
            bias[i] = init;
            bias[i].token = r->bias_tokens[i];
            bias[i].bias = r->bias_values[i];
            bias_p[i] = &bias[i];
        }
        sp.n_logit_bias = r->n_bias;
        sp.logit_bias = bias_p;
    }

    g.stop = &stop;
    if (r->has_max_tokens) {
        stop.max_tokens_opt_case = QNEXT__V1__STOP_PARAMS__MAX_TOKENS_OPT_MAX_TOKENS;
        stop.max_tokens = r->max_tokens;
    }
    stop.min_tokens = r->min_tokens;
    stop.ignore_eos = r->ignore_eos;
    stop.n_stop = r->n_stop;
    stop.stop = r->stop;
    stop.n_stop_token_ids = r->n_stop_token_ids;
    stop.stop_token_ids = r->stop_token_ids;

    g.output = &oo;
    oo.keep_special_tokens = !r->skip_special_tokens;

    size_t n = qnext__v1__generate_request__get_packed_size(&g);
    uint8_t *buf = eng_malloc(n ? n : 1);
    if (!buf) goto out;
    *len = qnext__v1__generate_request__pack(&g, buf);
    *out = buf;
    st = ENG_OK;
out:
    eng_free(bias);
    eng_free(bias_p);
    return st;
}

grpc_byte_buffer *gw_pack_to_bb(const uint8_t *data, size_t len)
{
    grpc_slice s = grpc_slice_from_copied_buffer((const char *)data, len);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return bb;
}

ProtobufCMessage *gw_unpack_bb(const ProtobufCMessageDescriptor *d, grpc_byte_buffer *bb)
{
    grpc_byte_buffer_reader rd;
    if (!grpc_byte_buffer_reader_init(&rd, bb)) return NULL;
    grpc_slice s = grpc_byte_buffer_reader_readall(&rd);
    grpc_byte_buffer_reader_destroy(&rd);
    ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, GRPC_SLICE_LENGTH(s), GRPC_SLICE_START_PTR(s));
    grpc_slice_unref(s);
    return m;
}
