/* grpc_service/convert.c - request validation and mapping, response building (see convert.h). */
#include "convert.h"

#include "util.h" /* defines: gsvc_buf, gsvc_malloc */

#include <cjson/cJSON.h>
#include <grpc/status.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ==== JSON helpers ============================================================================ */

/* Appends s as a JSON string literal (s is valid UTF-8: the wire check guaranteed it). */
static bool json_str(gsvc_buf *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    if (!gsvc_buf_append(b, "\"", 1)) return false;
    const char *run = s;
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        char esc[7];
        size_t n = 0;
        if (c == '"' || c == '\\') esc[0] = '\\', esc[1] = (char)c, n = 2;
        else if (c == '\n') memcpy(esc, "\\n", 2), n = 2;
        else if (c == '\r') memcpy(esc, "\\r", 2), n = 2;
        else if (c == '\t') memcpy(esc, "\\t", 2), n = 2;
        else if (c < 0x20) memcpy(esc, "\\u00", 4), esc[4] = hex[c >> 4], esc[5] = hex[c & 15], n = 6;
        if (!n) continue;
        if (!gsvc_buf_append(b, run, (size_t)(p - run)) || !gsvc_buf_append(b, esc, n)) return false;
        run = p + 1;
    }
    return gsvc_buf_puts(b, run) && gsvc_buf_append(b, "\"", 1);
}

/* ,"key":"value" (or without the comma when first) */
static bool json_kv(gsvc_buf *b, bool *first, const char *key, const char *value)
{
    if (!*first && !gsvc_buf_append(b, ",", 1)) return false;
    *first = false;
    return json_str(b, key) && gsvc_buf_append(b, ":", 1) && (value ? json_str(b, value) : gsvc_buf_puts(b, "null"));
}

/* ENG_OK if s parses as one JSON value of the wanted type (cJSON_Object / cJSON_Array). */
static eng_status json_check(const char *s, int type, const char *what)
{
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(s, strlen(s), &end, false);
    if (!j) return eng_err_set(ENG_ERR_INVALID, "%s: not valid JSON", what);
    bool ok = (j->type & 0xFF) == type;
    size_t n = type == cJSON_Array ? (size_t)cJSON_GetArraySize(j) : 1;
    cJSON_Delete(j);
    while (end && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r')) end++;
    if (end && *end) return eng_err_set(ENG_ERR_INVALID, "%s: trailing characters after the JSON value", what);
    if (!ok) return eng_err_set(ENG_ERR_INVALID, "%s: must be a JSON %s", what, type == cJSON_Array ? "array" : "object");
    if (n == 0) return eng_err_set(ENG_ERR_INVALID, "%s: must not be empty", what);
    return ENG_OK;
}

/* ==== chat ==================================================================================== */

static bool role_ok(const char *r)
{
    static const char *roles[] = {"system", "developer", "user", "assistant", "tool"};
    for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++)
        if (!strcmp(r, roles[i])) return true;
    return false;
}

static eng_status message_to_json(gsvc_buf *b, const Qnext__V1__ChatMessage *m, const char *what, size_t idx)
{
    if (!role_ok(m->role))
        return eng_err_set(ENG_ERR_INVALID, "%s.messages[%zu].role: \"%s\" is not one of system, developer, user, assistant, tool",
                           what, idx, m->role);
    if (m->n_tool_calls && strcmp(m->role, "assistant"))
        return eng_err_set(ENG_ERR_INVALID, "%s.messages[%zu]: only assistant messages carry tool_calls", what, idx);
    bool first = true, ok = gsvc_buf_append(b, "{", 1) && json_kv(b, &first, "role", m->role);
    if (m->name[0]) ok = ok && json_kv(b, &first, "name", m->name);
    ok = ok && json_kv(b, &first, "content",
                       m->content_opt_case == QNEXT__V1__CHAT_MESSAGE__CONTENT_OPT_CONTENT ? m->content : NULL);
    if (m->reasoning_content_opt_case == QNEXT__V1__CHAT_MESSAGE__REASONING_CONTENT_OPT_REASONING_CONTENT)
        ok = ok && json_kv(b, &first, "reasoning_content", m->reasoning_content);
    if (m->tool_call_id[0]) ok = ok && json_kv(b, &first, "tool_call_id", m->tool_call_id);
    if (m->n_tool_calls) {
        ok = ok && gsvc_buf_puts(b, ",\"tool_calls\":[");
        for (size_t i = 0; ok && i < m->n_tool_calls; i++) {
            const Qnext__V1__ChatToolCall *tc = m->tool_calls[i];
            if (!tc->name[0])
                return eng_err_set(ENG_ERR_INVALID, "%s.messages[%zu].tool_calls[%zu].name: required", what, idx, i);
            bool f2 = true, f3 = true;
            ok = ok && gsvc_buf_puts(b, i ? ",{" : "{");
            if (tc->id[0]) ok = ok && json_kv(b, &f2, "id", tc->id);
            ok = ok && json_kv(b, &f2, "type", "function") && gsvc_buf_puts(b, ",\"function\":{") &&
                 json_kv(b, &f3, "name", tc->name) && json_kv(b, &f3, "arguments", tc->arguments) &&
                 gsvc_buf_puts(b, "}}");
        }
        ok = ok && gsvc_buf_append(b, "]", 1);
    }
    ok = ok && gsvc_buf_append(b, "}", 1);
    return ok ? ENG_OK : eng_err_set(ENG_ERR_NOMEM, "out of memory rendering chat messages");
}

eng_status gsvc_chat_to_json(const Qnext__V1__ChatInput *c, const char *what, char **messages_json, char **tools_json)
{
    *messages_json = *tools_json = NULL;
    eng_status st = ENG_OK;
    gsvc_buf mb, tb;
    gsvc_buf_init(&mb);
    gsvc_buf_init(&tb);
    if (c->n_messages && c->messages_json[0]) {
        st = eng_err_set(ENG_ERR_INVALID, "%s: set either messages or messages_json, not both", what);
        goto fail;
    }
    if (c->n_messages) {
        if (!gsvc_buf_append(&mb, "[", 1)) goto oom;
        for (size_t i = 0; i < c->n_messages; i++) {
            if (i && !gsvc_buf_append(&mb, ",", 1)) goto oom;
            if ((st = message_to_json(&mb, c->messages[i], what, i)) != ENG_OK) goto fail;
        }
        if (!gsvc_buf_append(&mb, "]", 1)) goto oom;
    } else if (c->messages_json[0]) {
        char field[96];
        snprintf(field, sizeof field, "%s.messages_json", what);
        if ((st = json_check(c->messages_json, cJSON_Array, field)) != ENG_OK) goto fail;
        if (!gsvc_buf_puts(&mb, c->messages_json)) goto oom;
    } else {
        st = eng_err_set(ENG_ERR_INVALID, "%s: messages (or messages_json) is required", what);
        goto fail;
    }
    if (c->n_tools_json) {
        if (!gsvc_buf_append(&tb, "[", 1)) goto oom;
        for (size_t i = 0; i < c->n_tools_json; i++) {
            char field[96];
            snprintf(field, sizeof field, "%s.tools_json[%zu]", what, i);
            if ((st = json_check(c->tools_json[i], cJSON_Object, field)) != ENG_OK) goto fail;
            if ((i && !gsvc_buf_append(&tb, ",", 1)) || !gsvc_buf_puts(&tb, c->tools_json[i])) goto oom;
        }
        if (!gsvc_buf_append(&tb, "]", 1)) goto oom;
    }
    if (c->template_kwargs_json[0]) {
        char field[96];
        snprintf(field, sizeof field, "%s.template_kwargs_json", what);
        if ((st = json_check(c->template_kwargs_json, cJSON_Object, field)) != ENG_OK) goto fail;
    }
    *messages_json = mb.data;
    *tools_json = tb.data;
    return ENG_OK;
oom:
    st = eng_err_set(ENG_ERR_NOMEM, "out of memory rendering %s", what);
fail:
    gsvc_buf_free(&mb);
    gsvc_buf_free(&tb);
    return st;
}

/* ==== GenerateRequest -> eng_request ========================================================== */

static eng_status check_float(float v, float lo, float hi, bool lo_open, const char *name)
{
    if (!isfinite(v) || v > hi || v < lo || (lo_open && v == lo))
        return eng_err_set(ENG_ERR_INVALID, "%s: %g is out of range %c%g, %g]", name, (double)v, lo_open ? '(' : '[',
                           (double)lo, (double)hi);
    return ENG_OK;
}

static eng_status map_sampling(gsvc_gen_req *g, const Qnext__V1__SamplingParams *sp)
{
    eng_sampling *s = &g->req.sampling;
    eng_status st;
    if (sp->temperature_opt_case) {
        if ((st = check_float(sp->temperature, 0, 100, false, "sampling.temperature")) != ENG_OK) return st;
        s->temperature = sp->temperature;
    }
    if (sp->top_p_opt_case) {
        if ((st = check_float(sp->top_p, 0, 1, true, "sampling.top_p")) != ENG_OK) return st;
        s->top_p = sp->top_p;
    }
    if (sp->top_k_opt_case) {
        if (sp->top_k < 0) return eng_err_set(ENG_ERR_INVALID, "sampling.top_k: %d is negative (0 = off)", sp->top_k);
        s->top_k = sp->top_k;
    }
    if (sp->min_p_opt_case) {
        if ((st = check_float(sp->min_p, 0, 1, false, "sampling.min_p")) != ENG_OK) return st;
        s->min_p = sp->min_p;
    }
    if ((st = check_float(sp->presence_penalty, -2, 2, false, "sampling.presence_penalty")) != ENG_OK) return st;
    if ((st = check_float(sp->frequency_penalty, -2, 2, false, "sampling.frequency_penalty")) != ENG_OK) return st;
    s->presence_penalty = sp->presence_penalty;
    s->frequency_penalty = sp->frequency_penalty;
    if (sp->repetition_penalty_opt_case) {
        if ((st = check_float(sp->repetition_penalty, 0, 100, true, "sampling.repetition_penalty")) != ENG_OK) return st;
        s->repetition_penalty = sp->repetition_penalty;
    }
    if (sp->seed_opt_case) {
        s->has_seed = true;
        s->seed = sp->seed;
    }
    if (sp->n < 0 || sp->n > GSVC_MAX_CHOICES)
        return eng_err_set(ENG_ERR_INVALID, "sampling.n: %d is out of range 1..%d", sp->n, GSVC_MAX_CHOICES);
    s->n = sp->n ? sp->n : 1;
    if (sp->logprobs_opt_case) {
        if (sp->logprobs < 0 || sp->logprobs > GSVC_MAX_LOGPROBS)
            return eng_err_set(ENG_ERR_INVALID, "sampling.logprobs: %d is out of range 0..%d", sp->logprobs, GSVC_MAX_LOGPROBS);
        s->logprobs = sp->logprobs;
    }
    if (sp->n_logit_bias) {
        g->bias = gsvc_malloc(sp->n_logit_bias * sizeof *g->bias);
        if (!g->bias) return eng_err_set(ENG_ERR_NOMEM, "out of memory for logit_bias");
        for (size_t i = 0; i < sp->n_logit_bias; i++) {
            const Qnext__V1__LogitBias *lb = sp->logit_bias[i];
            if (lb->token < 0) return eng_err_set(ENG_ERR_INVALID, "sampling.logit_bias[%zu].token: %d is negative", i, lb->token);
            if ((st = check_float(lb->bias, -100, 100, false, "sampling.logit_bias.bias")) != ENG_OK) return st;
            g->bias[i] = (eng_logit_bias){lb->token, lb->bias};
        }
        s->logit_bias = g->bias;
        s->n_logit_bias = sp->n_logit_bias;
    }
    return ENG_OK;
}

static eng_status map_stop(gsvc_gen_req *g, const Qnext__V1__StopParams *sp)
{
    eng_sampling *s = &g->req.sampling;
    if (sp->max_tokens_opt_case) {
        if (sp->max_tokens < 1) return eng_err_set(ENG_ERR_INVALID, "stop.max_tokens: %d must be at least 1", sp->max_tokens);
        s->max_tokens = sp->max_tokens;
    }
    if (sp->min_tokens < 0) return eng_err_set(ENG_ERR_INVALID, "stop.min_tokens: %d is negative", sp->min_tokens);
    if (sp->max_tokens_opt_case && sp->min_tokens > sp->max_tokens)
        return eng_err_set(ENG_ERR_INVALID, "stop.min_tokens (%d) is larger than stop.max_tokens (%d)", sp->min_tokens, sp->max_tokens);
    s->min_tokens = sp->min_tokens;
    s->ignore_eos = sp->ignore_eos;
    if (sp->n_stop > GSVC_MAX_STOP_STRINGS)
        return eng_err_set(ENG_ERR_INVALID, "stop.stop: %zu strings (at most %d)", sp->n_stop, GSVC_MAX_STOP_STRINGS);
    if (sp->n_stop) {
        g->stop = gsvc_malloc(sp->n_stop * sizeof *g->stop);
        if (!g->stop) return eng_err_set(ENG_ERR_NOMEM, "out of memory for stop strings");
        for (size_t i = 0; i < sp->n_stop; i++) {
            size_t n = strlen(sp->stop[i]);
            if (n == 0) return eng_err_set(ENG_ERR_INVALID, "stop.stop[%zu]: empty string", i);
            if (n > GSVC_MAX_STOP_STRING_BYTES)
                return eng_err_set(ENG_ERR_INVALID, "stop.stop[%zu]: %zu bytes (at most %d)", i, n, GSVC_MAX_STOP_STRING_BYTES);
            g->stop[i] = sp->stop[i];
        }
        s->stop = g->stop;
        s->n_stop = sp->n_stop;
    }
    for (size_t i = 0; i < sp->n_stop_token_ids; i++)
        if (sp->stop_token_ids[i] < 0)
            return eng_err_set(ENG_ERR_INVALID, "stop.stop_token_ids[%zu]: %d is negative", i, sp->stop_token_ids[i]);
    s->stop_token_ids = sp->stop_token_ids;
    s->n_stop_token_ids = sp->n_stop_token_ids;
    return ENG_OK;
}

eng_status gsvc_gen_req_init(gsvc_gen_req *g, const Qnext__V1__GenerateRequest *m)
{
    memset(g, 0, sizeof *g);
    eng_request_init(&g->req);
    eng_request *r = &g->req;
    eng_status st = ENG_OK;

    size_t idlen = strlen(m->request_id);
    if (idlen > GSVC_MAX_REQUEST_ID_BYTES)
        return eng_err_set(ENG_ERR_INVALID, "request_id: %zu bytes (at most %d)", idlen, GSVC_MAX_REQUEST_ID_BYTES);
    for (size_t i = 0; i < idlen; i++)
        if ((unsigned char)m->request_id[i] < 0x20 || m->request_id[i] == 0x7F)
            return eng_err_set(ENG_ERR_INVALID, "request_id: contains a control character");
    if (idlen) r->client_id = m->request_id;

    switch (m->input_case) {
    case QNEXT__V1__GENERATE_REQUEST__INPUT_PROMPT:
        if (!m->prompt[0]) return eng_err_set(ENG_ERR_INVALID, "prompt: empty");
        r->input = ENG_INPUT_TEXT;
        r->text = m->prompt;
        break;
    case QNEXT__V1__GENERATE_REQUEST__INPUT_TOKEN_IDS:
        if (!m->token_ids || m->token_ids->n_ids == 0) return eng_err_set(ENG_ERR_INVALID, "token_ids: empty");
        for (size_t i = 0; i < m->token_ids->n_ids; i++)
            if (m->token_ids->ids[i] < 0)
                return eng_err_set(ENG_ERR_INVALID, "token_ids.ids[%zu]: %d is negative", i, m->token_ids->ids[i]);
        r->input = ENG_INPUT_TOKENS;
        r->tokens = m->token_ids->ids;
        r->n_tokens = m->token_ids->n_ids;
        break;
    case QNEXT__V1__GENERATE_REQUEST__INPUT_CHAT:
        if ((st = gsvc_chat_to_json(m->chat, "chat", &g->messages_json, &g->tools_json)) != ENG_OK) return st;
        r->input = ENG_INPUT_CHAT;
        r->messages_json = g->messages_json;
        r->tools_json = g->tools_json;
        r->template_kwargs_json = m->chat->template_kwargs_json[0] ? m->chat->template_kwargs_json : NULL;
        r->add_generation_prompt = !m->chat->no_generation_prompt;
        break;
    default:
        return eng_err_set(ENG_ERR_INVALID, "input: one of prompt, token_ids or chat is required");
    }

    if (m->sampling && (st = map_sampling(g, m->sampling)) != ENG_OK) return st;
    if (m->stop && (st = map_stop(g, m->stop)) != ENG_OK) return st;
    if (r->sampling.n < 1) r->sampling.n = 1;
    g->n_choices = r->sampling.n;

    const Qnext__V1__OutputOptions *o = m->output;
    r->sampling.skip_special_tokens = !(o && o->keep_special_tokens);
    r->parse_output = r->input == ENG_INPUT_CHAT && !(o && o->raw_output);
    g->skip_text = o && o->skip_text;
    r->priority = m->priority;
    return ENG_OK;
}

void gsvc_gen_req_free(gsvc_gen_req *g)
{
    if (!g) return;
    gsvc_free(g->messages_json);
    gsvc_free(g->tools_json);
    gsvc_free(g->stop);
    gsvc_free(g->bias);
    g->messages_json = g->tools_json = NULL;
    g->stop = NULL;
    g->bias = NULL;
}

/* ==== responses =============================================================================== */

Qnext__V1__FinishReason gsvc_finish_to_pb(eng_finish_reason f)
{
    switch (f) {
    case ENG_FINISH_STOP: return QNEXT__V1__FINISH_REASON__FINISH_REASON_STOP;
    case ENG_FINISH_LENGTH: return QNEXT__V1__FINISH_REASON__FINISH_REASON_LENGTH;
    case ENG_FINISH_TOOL_CALLS: return QNEXT__V1__FINISH_REASON__FINISH_REASON_TOOL_CALLS;
    case ENG_FINISH_CANCELLED: return QNEXT__V1__FINISH_REASON__FINISH_REASON_CANCELLED;
    case ENG_FINISH_ERROR: return QNEXT__V1__FINISH_REASON__FINISH_REASON_ERROR;
    default: return QNEXT__V1__FINISH_REASON__FINISH_REASON_UNSPECIFIED;
    }
}

int gsvc_status_to_grpc(eng_status s)
{
    switch (s) {
    case ENG_OK: return GRPC_STATUS_OK;
    case ENG_ERR_INVALID:
    case ENG_ERR_FORMAT:
    case ENG_ERR_UNSUPPORTED:
    case ENG_ERR_NOT_FOUND: return GRPC_STATUS_INVALID_ARGUMENT;
    case ENG_ERR_QUEUE_FULL:
    case ENG_ERR_NO_KV_BLOCKS:
    case ENG_ERR_NOMEM: return GRPC_STATUS_RESOURCE_EXHAUSTED;
    case ENG_ERR_CANCELLED: return GRPC_STATUS_CANCELLED;
    case ENG_ERR_TIMEOUT: return GRPC_STATUS_DEADLINE_EXCEEDED;
    default: return GRPC_STATUS_INTERNAL;
    }
}

static void token_bytes(const eng_tokenizer *tok, int32_t id, ProtobufCBinaryData *out)
{
    size_t n = 0;
    const uint8_t *p = tok ? eng_tokenizer_token_bytes(tok, id, &n) : NULL;
    out->data = p ? (uint8_t *)p : NULL;
    out->len = p ? n : 0;
}

static char *cstr(const gsvc_buf *b)
{
    return (char *)gsvc_buf_str(b);
}

void gsvc_resp_free(gsvc_resp *r)
{
    if (!r) return;
    gsvc_free(r->tools);
    gsvc_free(r->tool_ptrs);
    gsvc_free(r->lps);
    gsvc_free(r->lp_ptrs);
    gsvc_free(r->tops);
    gsvc_free(r->top_ptrs);
    r->tools = NULL;
    r->tool_ptrs = NULL;
    r->lps = NULL;
    r->lp_ptrs = NULL;
    r->tops = NULL;
    r->top_ptrs = NULL;
}

eng_status gsvc_resp_build(gsvc_resp *r, const gsvc_item *it, const char *request_id, const eng_tokenizer *tok)
{
    memset(r, 0, sizeof *r);
    qnext__v1__generate_response__init(&r->msg);
    r->msg.request_id = (char *)request_id;
    r->msg.choice = (uint32_t)it->choice;
    if (it->is_final) {
        qnext__v1__final__init(&r->final);
        qnext__v1__usage__init(&r->usage);
        qnext__v1__timings__init(&r->timings);
        r->final.finish_reason = gsvc_finish_to_pb(it->finish);
        r->final.matched_stop = cstr(&it->matched_stop);
        if (it->has_matched_stop_token) {
            r->final.matched_stop_token_opt_case = QNEXT__V1__FINAL__MATCHED_STOP_TOKEN_OPT_MATCHED_STOP_TOKEN;
            r->final.matched_stop_token = it->matched_stop_token;
        }
        r->usage.prompt_tokens = it->usage.prompt_tokens;
        r->usage.completion_tokens = it->usage.completion_tokens;
        r->usage.cached_prompt_tokens = it->usage.cached_prompt_tokens;
        r->usage.reasoning_tokens = it->usage.reasoning_tokens;
        r->timings.queue_seconds = it->timings.queue_s;
        r->timings.ttft_seconds = it->timings.ttft_s;
        r->timings.total_seconds = it->timings.total_s;
        r->timings.mean_itl_seconds = it->timings.mean_itl_s;
        r->final.usage = &r->usage;
        r->final.timings = &r->timings;
        r->final.tool_call_parse_error = it->tool_call_parse_error;
        r->final.error_message = cstr(&it->error_message);
        r->msg.kind_case = QNEXT__V1__GENERATE_RESPONSE__KIND_FINAL;
        r->msg.final = &r->final;
        return ENG_OK;
    }
    qnext__v1__delta__init(&r->delta);
    r->delta.n_token_ids = it->n_tokens;
    r->delta.token_ids = it->tokens;
    r->delta.text = cstr(&it->text);
    r->delta.content = cstr(&it->content);
    r->delta.reasoning = cstr(&it->reasoning);
    if (it->n_tools) {
        r->tools = gsvc_calloc(it->n_tools, sizeof *r->tools);
        r->tool_ptrs = gsvc_calloc(it->n_tools, sizeof *r->tool_ptrs);
        if (!r->tools || !r->tool_ptrs) goto oom;
        for (size_t i = 0; i < it->n_tools; i++) {
            Qnext__V1__ToolCallDelta *t = &r->tools[i];
            qnext__v1__tool_call_delta__init(t);
            t->index = it->tools[i].index;
            t->id = cstr(&it->tools[i].id);
            t->name = cstr(&it->tools[i].name);
            t->arguments = cstr(&it->tools[i].arguments);
            r->tool_ptrs[i] = t;
        }
        r->delta.n_tool_calls = it->n_tools;
        r->delta.tool_calls = r->tool_ptrs;
    }
    if (it->n_lps) {
        r->lps = gsvc_calloc(it->n_lps, sizeof *r->lps);
        r->lp_ptrs = gsvc_calloc(it->n_lps, sizeof *r->lp_ptrs);
        r->tops = gsvc_calloc(it->n_tops, sizeof *r->tops);
        r->top_ptrs = gsvc_calloc(it->n_tops, sizeof *r->top_ptrs);
        if (!r->lps || !r->lp_ptrs || !r->tops || !r->top_ptrs) goto oom;
        for (size_t i = 0; i < it->n_tops; i++) {
            qnext__v1__top_logprob__init(&r->tops[i]);
            r->tops[i].token = it->tops[i].token;
            r->tops[i].logprob = it->tops[i].logprob;
            token_bytes(tok, r->tops[i].token, &r->tops[i].token_bytes);
            r->top_ptrs[i] = &r->tops[i];
        }
        for (size_t i = 0; i < it->n_lps; i++) {
            Qnext__V1__TokenLogprob *l = &r->lps[i];
            qnext__v1__token_logprob__init(l);
            l->token = it->lps[i].token;
            l->logprob = it->lps[i].logprob;
            token_bytes(tok, l->token, &l->token_bytes);
            l->n_top = it->lps[i].n_top;
            l->top = l->n_top ? r->top_ptrs + it->lps[i].top_off : NULL;
            r->lp_ptrs[i] = l;
        }
        r->delta.n_logprobs = it->n_lps;
        r->delta.logprobs = r->lp_ptrs;
    }
    r->msg.kind_case = QNEXT__V1__GENERATE_RESPONSE__KIND_DELTA;
    r->msg.delta = &r->delta;
    return ENG_OK;
oom:
    gsvc_resp_free(r);
    return eng_err_set(ENG_ERR_NOMEM, "out of memory building a response");
}
