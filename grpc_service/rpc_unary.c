/* grpc_service/rpc_unary.c - Tokenize, Detokenize, GetModelInfo and GetLoad.
 *
 * Each is one step: unpack the request (INVALID_ARGUMENT when malformed), compute, and send the
 * reply and the status in one batch. Before the model is loaded they answer UNAVAILABLE. Tokenize
 * and Detokenize use the engine's tokenizer (qnext/tokenizer.h; UNIMPLEMENTED when the engine has
 * none) and, for chat input, the engine's chat templates (qnext/chat.h), so that a Tokenize of a
 * chat gives exactly the prompt tokens Generate would use.
 */
#include "server_impl.h"

#include "convert.h" /* defines: gsvc_chat_to_json, gsvc_status_to_grpc */
#include "util.h"
#include "wire.h"

#include "qnext/chat.h"      /* defines: eng_chat_render, eng_template_parse */
#include "qnext/tokenizer.h" /* defines: eng_tokenizer_encode, eng_tokenizer_decode */

#include <grpc/status.h>

#include <string.h>

/* Unpacks the request or ends the call with INVALID_ARGUMENT; also UNAVAILABLE before the model
 * is loaded. Returns the engine, or NULL when the call was ended. c->mu held. */
static eng_engine *begin(gsvc_call *c, const ProtobufCMessageDescriptor *d, ProtobufCMessage **m)
{
    eng_status st = gsvc_unpack_bb(d, c->payload, m);
    if (st != ENG_OK) {
        gsvc_call_send_status(c, (grpc_status_code)gsvc_status_to_grpc(st), eng_err_last(), -1);
        return NULL;
    }
    eng_engine *e = gsvc_engine(c->srv);
    if (!e || atomic_load(&c->srv->fatal)) {
        gsvc_call_send_status(c, GRPC_STATUS_UNAVAILABLE,
                              e ? "the engine is not available" : "the model is still loading", -1);
        return NULL;
    }
    return e;
}

static void fail(gsvc_call *c, eng_status st)
{
    gsvc_call_send_status(c, (grpc_status_code)gsvc_status_to_grpc(st), eng_err_last(), -1);
}

/* ==== Tokenize ================================================================================ */

static void tokenize_on_accept(gsvc_call *c)
{
    ProtobufCMessage *m = NULL;
    char *mj = NULL, *tj = NULL, *text = NULL;
    int32_t *ids = NULL;
    size_t n = 0, len = 0;
    pthread_mutex_lock(&c->mu);
    eng_engine *e = begin(c, &qnext__v1__tokenize_request__descriptor, &m);
    if (!e) goto out;
    const Qnext__V1__TokenizeRequest *req = (const Qnext__V1__TokenizeRequest *)m;
    const eng_tokenizer *tok = eng_get_tokenizer(e);
    if (!tok) {
        gsvc_call_send_status(c, GRPC_STATUS_UNIMPLEMENTED, "this engine has no tokenizer", -1);
        goto out;
    }
    eng_status st;
    if (req->input_case == QNEXT__V1__TOKENIZE_REQUEST__INPUT_TEXT) {
        st = eng_tokenizer_encode(tok, req->text, strlen(req->text), req->parse_special, &ids, &n);
    } else if (req->input_case == QNEXT__V1__TOKENIZE_REQUEST__INPUT_CHAT) {
        eng_model_info mi;
        eng_get_model_info(e, &mi);
        eng_template_kind kind;
        st = gsvc_chat_to_json(req->chat, "chat", &mj, &tj);
        if (st == ENG_OK) st = eng_template_parse(mi.template_kind ? mi.template_kind : "", &kind);
        if (st == ENG_OK) {
            const char *kw = req->chat->template_kwargs_json[0] ? req->chat->template_kwargs_json : NULL;
            st = eng_chat_render(kind, mj, tj, kw, !req->chat->no_generation_prompt, &text, &len);
        }
        /* the rendered template's <|im_start|> etc. are special tokens */
        if (st == ENG_OK) st = eng_tokenizer_encode(tok, text, len, true, &ids, &n);
    } else {
        st = eng_err_set(ENG_ERR_INVALID, "input: text or chat is required");
    }
    if (st != ENG_OK) {
        fail(c, st);
        goto out;
    }
    eng_model_info mi;
    eng_get_model_info(e, &mi);
    Qnext__V1__TokenizeResponse resp = QNEXT__V1__TOKENIZE_RESPONSE__INIT;
    resp.ids = ids;
    resp.n_ids = n;
    resp.max_model_len = mi.max_model_len;
    gsvc_call_send_reply(c, &resp.base);
out:
    pthread_mutex_unlock(&c->mu);
    eng_free(ids);
    eng_chat_free(text);
    gsvc_free(mj);
    gsvc_free(tj);
    gsvc_msg_free(m);
}

const gsvc_method gsvc_m_tokenize = {
    .path = "/qnext.v1.Generator/Tokenize",
    .call_size = sizeof(gsvc_call),
    .n_accepts = 1,
    .on_accept = tokenize_on_accept,
};

/* ==== Detokenize ============================================================================== */

static void detokenize_on_accept(gsvc_call *c)
{
    ProtobufCMessage *m = NULL;
    char *text = NULL;
    size_t len = 0;
    gsvc_buf clean;
    gsvc_buf_init(&clean);
    pthread_mutex_lock(&c->mu);
    eng_engine *e = begin(c, &qnext__v1__detokenize_request__descriptor, &m);
    if (!e) goto out;
    const Qnext__V1__DetokenizeRequest *req = (const Qnext__V1__DetokenizeRequest *)m;
    const eng_tokenizer *tok = eng_get_tokenizer(e);
    if (!tok) {
        gsvc_call_send_status(c, GRPC_STATUS_UNIMPLEMENTED, "this engine has no tokenizer", -1);
        goto out;
    }
    eng_status st = eng_tokenizer_decode(tok, req->ids, req->n_ids, req->skip_special_tokens, &text, &len);
    if (st != ENG_OK) {
        fail(c, st);
        goto out;
    }
    /* decode is lossy UTF-8 already; a NUL byte cannot travel in a protobuf-c string */
    if (!gsvc_utf8_append_sanitized(&clean, text, len) || !gsvc_buf_append(&clean, "", 0)) {
        gsvc_call_send_status(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory", -1);
        goto out;
    }
    Qnext__V1__DetokenizeResponse resp = QNEXT__V1__DETOKENIZE_RESPONSE__INIT;
    resp.text = (char *)gsvc_buf_str(&clean);
    gsvc_call_send_reply(c, &resp.base);
out:
    pthread_mutex_unlock(&c->mu);
    eng_free(text);
    gsvc_buf_free(&clean);
    gsvc_msg_free(m);
}

const gsvc_method gsvc_m_detokenize = {
    .path = "/qnext.v1.Generator/Detokenize",
    .call_size = sizeof(gsvc_call),
    .n_accepts = 1,
    .on_accept = detokenize_on_accept,
};

/* ==== GetModelInfo ============================================================================ */

static char *str_or_empty(const char *s)
{
    return (char *)(s ? s : "");
}

static void model_info_on_accept(gsvc_call *c)
{
    ProtobufCMessage *m = NULL;
    pthread_mutex_lock(&c->mu);
    eng_engine *e = begin(c, &qnext__v1__get_model_info_request__descriptor, &m);
    if (!e) goto out;
    eng_model_info mi;
    eng_get_model_info(e, &mi);
    Qnext__V1__ModelInfo resp = QNEXT__V1__MODEL_INFO__INIT;
    resp.model_id = str_or_empty(mi.model_id);
    resp.max_model_len = mi.max_model_len;
    resp.template_kind = str_or_empty(mi.template_kind);
    resp.dtype = str_or_empty(mi.dtype);
    resp.tensor_parallel_size = mi.tp;
    resp.vocab_size = mi.vocab_size;
    resp.device = str_or_empty(mi.device);
    resp.created_unix = c->srv->created_unix;
    /* The engine's EOS ids (generation_config.json). An engine that reports none (the fake):
     * the Qwen end-of-turn / end-of-text tokens, when the tokenizer has them. */
    int32_t eos[2];
    size_t n_eos = 0;
    const eng_tokenizer *tok = eng_get_tokenizer(e);
    static const char *eos_names[] = {"<|im_end|>", "<|endoftext|>"};
    for (size_t i = 0; tok && i < 2 && mi.n_eos_token_ids <= 0; i++) {
        int32_t id = eng_tokenizer_token_id(tok, eos_names[i]);
        if (id >= 0) eos[n_eos++] = id;
    }
    resp.eos_token_ids = mi.n_eos_token_ids > 0 ? (int32_t *)mi.eos_token_ids : eos;
    resp.n_eos_token_ids = mi.n_eos_token_ids > 0 ? (size_t)mi.n_eos_token_ids : n_eos;
    gsvc_call_send_reply(c, &resp.base);
out:
    pthread_mutex_unlock(&c->mu);
    gsvc_msg_free(m);
}

const gsvc_method gsvc_m_model_info = {
    .path = "/qnext.v1.Generator/GetModelInfo",
    .call_size = sizeof(gsvc_call),
    .n_accepts = 1,
    .on_accept = model_info_on_accept,
};

/* ==== GetLoad ================================================================================= */

static void load_on_accept(gsvc_call *c)
{
    ProtobufCMessage *m = NULL;
    gsvc_server *s = c->srv;
    pthread_mutex_lock(&c->mu);
    eng_engine *e = begin(c, &qnext__v1__get_load_request__descriptor, &m);
    if (!e) goto out;
    eng_stats st;
    eng_get_stats(e, &st);
    Qnext__V1__Load resp = QNEXT__V1__LOAD__INIT;
    resp.waiting = st.n_waiting;
    resp.running = st.n_running;
    resp.max_running = s->opt.eng.max_running;
    resp.max_queue = s->opt.eng.max_queue;
    resp.kv_blocks_used = st.kv_blocks_used;
    resp.kv_blocks_total = st.kv_blocks_total;
    resp.state_slots_used = st.state_slots_used;
    resp.state_slots_total = st.state_slots_total;
    resp.kv_cache_usage = st.kv_blocks_total > 0 ? (double)st.kv_blocks_used / st.kv_blocks_total : 0;
    resp.prompt_tokens_per_second = st.prompt_tok_per_s;
    resp.generation_tokens_per_second = st.decode_tok_per_s;
    resp.prompt_tokens_total = st.prompt_tokens_total;
    resp.generation_tokens_total = st.generation_tokens_total;
    resp.prefix_cache_queries_tokens = st.prefix_cache_queries_tokens;
    resp.prefix_cache_hits_tokens = st.prefix_cache_hit_tokens;
    resp.preemptions_total = st.n_preempted_total > 0 ? (uint64_t)st.n_preempted_total : 0;
    resp.active_streams = atomic_load(&s->active_streams);
    resp.draining = atomic_load(&s->draining);
    gsvc_call_send_reply(c, &resp.base);
out:
    pthread_mutex_unlock(&c->mu);
    gsvc_msg_free(m);
}

const gsvc_method gsvc_m_load = {
    .path = "/qnext.v1.Generator/GetLoad",
    .call_size = sizeof(gsvc_call),
    .n_accepts = 1,
    .on_accept = load_on_accept,
};
