/* openai_response.c - the Generate-stream -> OpenAI transcoder and small builders (see openai_response.h).
 *
 * Choice numbering: upstream call c (prompt c) choice j is OpenAI choice c * n + j, as OpenAI numbers
 * the choices of a multi-prompt /v1/completions request. Usage: prompt figures repeat in every Final
 * of a call, so prompt and cached tokens are taken once per call; completion and reasoning tokens
 * are summed over choices.
 */
#include "openai_response.h"

#include "json_write.h" /* defines: gw_jw_* */
#include "sse.h"        /* defines: gw_sse_* */

#include <stdio.h>
#include <string.h>

/* ==== state =================================================================================== */

typedef struct tool_acc {
    int32_t index;
    char *id;
    char *name;
    eng_buf args;
} tool_acc;

typedef struct choice_st {
    bool started;  /* streaming: role chunk (chat) or echo chunk (completions) sent */
    bool finished; /* its Final arrived */
    bool had_tools;
    Qnext__V1__FinishReason fr;
    int64_t completion_tokens, reasoning_tokens;
    /* non-streaming accumulators */
    eng_buf content, reasoning;
    tool_acc *tools;
    size_t n_tools, cap_tools;
    eng_buf lp;     /* chat: logprobs.content items; completions: "tokens" items */
    eng_buf lp_val; /* completions: token_logprobs items */
    eng_buf lp_top; /* completions: top_logprobs items */
    eng_buf lp_off; /* completions: text_offset items */
    size_t text_offset;
} choice_st;

typedef struct call_st {
    bool have_usage;
    int64_t prompt_tokens, cached_tokens;
} call_st;

struct gw_xcode {
    const gw_request *req;
    char *id, *model;
    int64_t created;
    bool mirror_reasoning;
    bool chat;
    size_t n_choices, n_calls;
    choice_st *ch;
    call_st *calls;
    eng_buf head; /* streaming chunk prefix up to and including "choices":[ */
};

/* ==== small helpers =========================================================================== */

static void sb(eng_buf *b, const char *s)
{
    eng_buf_puts(b, s);
}

static void free_choice(choice_st *c)
{
    eng_buf_free(&c->content);
    eng_buf_free(&c->reasoning);
    for (size_t i = 0; i < c->n_tools; i++) {
        eng_free(c->tools[i].id);
        eng_free(c->tools[i].name);
        eng_buf_free(&c->tools[i].args);
    }
    eng_free(c->tools);
    eng_buf_free(&c->lp);
    eng_buf_free(&c->lp_val);
    eng_buf_free(&c->lp_top);
    eng_buf_free(&c->lp_off);
}

const char *gw_finish_reason_str(Qnext__V1__FinishReason fr, bool had_tool_calls)
{
    switch (fr) {
    case QNEXT__V1__FINISH_REASON__FINISH_REASON_STOP: return had_tool_calls ? "tool_calls" : "stop";
    case QNEXT__V1__FINISH_REASON__FINISH_REASON_LENGTH: return "length";
    case QNEXT__V1__FINISH_REASON__FINISH_REASON_TOOL_CALLS: return "tool_calls";
    case QNEXT__V1__FINISH_REASON__FINISH_REASON_CANCELLED: return "abort";
    case QNEXT__V1__FINISH_REASON__FINISH_REASON_ERROR: return "error";
    default: return had_tool_calls ? "tool_calls" : "stop";
    }
}

/* A deterministic tool-call id when the engine sent none: "call_" + 24 hex digits from a hash of
 * (request id, choice, tool index). */
static char *make_call_id(const gw_xcode *x, size_t choice, int32_t index)
{
    uint64_t h1 = 1469598103934665603ull, h2 = 0x9E3779B97F4A7C15ull;
    for (const char *p = x->id; *p; p++) {
        h1 = (h1 ^ (unsigned char)*p) * 1099511628211ull;
        h2 = (h2 ^ (unsigned char)*p) * 0x100000001B3ull + 7;
    }
    h1 = (h1 ^ choice) * 1099511628211ull;
    h2 = (h2 ^ (uint64_t)(uint32_t)index) * 0x100000001B3ull;
    char t[48];
    snprintf(t, sizeof t, "call_%016llx%08x", (unsigned long long)h1, (unsigned)(h2 & 0xffffffffu));
    return eng_strdup(t);
}

/* ==== create / destroy ======================================================================== */

eng_status gw_xcode_create(const gw_request *req, const gw_xcode_opts *o, gw_xcode **out)
{
    *out = NULL;
    gw_xcode *x = eng_calloc(1, sizeof *x);
    if (!x) return ENG_ERR_NOMEM;
    x->req = req;
    x->chat = req->api == GW_API_CHAT;
    x->n_calls = x->chat ? 1 : req->n_prompts;
    x->n_choices = gw_request_n_choices(req);
    x->created = o->created;
    x->mirror_reasoning = o->mirror_reasoning;
    x->id = eng_strdup(o->id ? o->id : "");
    x->model = eng_strdup(o->model ? o->model : "");
    x->ch = eng_calloc(x->n_choices ? x->n_choices : 1, sizeof(choice_st));
    x->calls = eng_calloc(x->n_calls ? x->n_calls : 1, sizeof(call_st));
    eng_buf_init(&x->head);
    if (!x->id || !x->model || !x->ch || !x->calls) goto fail;
    for (size_t i = 0; i < x->n_choices; i++) {
        choice_st *c = &x->ch[i];
        eng_buf_init(&c->content);
        eng_buf_init(&c->reasoning);
        eng_buf_init(&c->lp);
        eng_buf_init(&c->lp_val);
        eng_buf_init(&c->lp_top);
        eng_buf_init(&c->lp_off);
    }
    sb(&x->head, "{\"id\":");
    gw_jw_cstr(&x->head, x->id);
    sb(&x->head, x->chat ? ",\"object\":\"chat.completion.chunk\",\"created\":" : ",\"object\":\"text_completion\",\"created\":");
    gw_jw_int(&x->head, x->created);
    sb(&x->head, ",\"model\":");
    gw_jw_cstr(&x->head, x->model);
    sb(&x->head, ",\"choices\":[");
    if (x->head.oom) goto fail;
    *out = x;
    return ENG_OK;
fail:
    gw_xcode_destroy(x);
    return ENG_ERR_NOMEM;
}

void gw_xcode_destroy(gw_xcode *x)
{
    if (!x) return;
    for (size_t i = 0; x->ch && i < x->n_choices; i++) free_choice(&x->ch[i]);
    eng_free(x->ch);
    eng_free(x->calls);
    eng_free(x->id);
    eng_free(x->model);
    eng_buf_free(&x->head);
    eng_free(x);
}

/* ==== logprobs ================================================================================ */

static void jw_bytes_array(eng_buf *b, const ProtobufCBinaryData *d)
{
    eng_buf_putc(b, '[');
    for (size_t i = 0; i < d->len; i++) {
        if (i) eng_buf_putc(b, ',');
        gw_jw_int(b, d->data[i]);
    }
    eng_buf_putc(b, ']');
}

/* One chat logprobs.content item. */
static void jw_chat_logprob(eng_buf *b, const Qnext__V1__TokenLogprob *lp)
{
    sb(b, "{\"token\":");
    gw_jw_str(b, (const char *)lp->token_bytes.data, lp->token_bytes.len);
    sb(b, ",\"logprob\":");
    gw_jw_float(b, lp->logprob);
    sb(b, ",\"bytes\":");
    jw_bytes_array(b, &lp->token_bytes);
    sb(b, ",\"top_logprobs\":[");
    for (size_t i = 0; i < lp->n_top; i++) {
        const Qnext__V1__TopLogprob *t = lp->top[i];
        if (i) eng_buf_putc(b, ',');
        sb(b, "{\"token\":");
        gw_jw_str(b, (const char *)t->token_bytes.data, t->token_bytes.len);
        sb(b, ",\"logprob\":");
        gw_jw_float(b, t->logprob);
        sb(b, ",\"bytes\":");
        jw_bytes_array(b, &t->token_bytes);
        eng_buf_putc(b, '}');
    }
    sb(b, "]}");
}

/* Appends the legacy (completions) logprob columns of delta `d` to the four lists of `c`
 * (comma-separated items, no brackets). */
static void add_legacy_logprobs(choice_st *c, const Qnext__V1__Delta *d)
{
    for (size_t i = 0; i < d->n_logprobs; i++) {
        const Qnext__V1__TokenLogprob *lp = d->logprobs[i];
        const char *sep = c->lp.len ? "," : "";
        sb(&c->lp, sep);
        gw_jw_str(&c->lp, (const char *)lp->token_bytes.data, lp->token_bytes.len);
        sb(&c->lp_val, sep);
        gw_jw_float(&c->lp_val, lp->logprob);
        sb(&c->lp_top, sep);
        eng_buf_putc(&c->lp_top, '{');
        for (size_t k = 0; k < lp->n_top; k++) {
            if (k) eng_buf_putc(&c->lp_top, ',');
            gw_jw_str(&c->lp_top, (const char *)lp->top[k]->token_bytes.data, lp->top[k]->token_bytes.len);
            eng_buf_putc(&c->lp_top, ':');
            gw_jw_float(&c->lp_top, lp->top[k]->logprob);
        }
        eng_buf_putc(&c->lp_top, '}');
        sb(&c->lp_off, sep);
        gw_jw_int(&c->lp_off, (int64_t)c->text_offset);
        c->text_offset += lp->token_bytes.len;
    }
}

static void jw_legacy_logprobs(eng_buf *b, const choice_st *c)
{
    sb(b, "{\"tokens\":[");
    eng_buf_append(b, c->lp.data, c->lp.len);
    sb(b, "],\"token_logprobs\":[");
    eng_buf_append(b, c->lp_val.data, c->lp_val.len);
    sb(b, "],\"top_logprobs\":[");
    eng_buf_append(b, c->lp_top.data, c->lp_top.len);
    sb(b, "],\"text_offset\":[");
    eng_buf_append(b, c->lp_off.data, c->lp_off.len);
    sb(b, "]}");
}

static void jw_usage(eng_buf *b, int64_t prompt, int64_t completion, int64_t cached, int64_t reasoning)
{
    sb(b, "{\"prompt_tokens\":");
    gw_jw_int(b, prompt);
    sb(b, ",\"completion_tokens\":");
    gw_jw_int(b, completion);
    sb(b, ",\"total_tokens\":");
    gw_jw_int(b, prompt + completion);
    sb(b, ",\"prompt_tokens_details\":{\"cached_tokens\":");
    gw_jw_int(b, cached);
    sb(b, "},\"completion_tokens_details\":{\"reasoning_tokens\":");
    gw_jw_int(b, reasoning);
    sb(b, "}}");
}

static void totals(const gw_xcode *x, int64_t *p, int64_t *c, int64_t *cached, int64_t *r)
{
    *p = *c = *cached = *r = 0;
    for (size_t i = 0; i < x->n_calls; i++) {
        *p += x->calls[i].prompt_tokens;
        *cached += x->calls[i].cached_tokens;
    }
    for (size_t i = 0; i < x->n_choices; i++) {
        *c += x->ch[i].completion_tokens;
        *r += x->ch[i].reasoning_tokens;
    }
}

/* ==== streaming chunks ======================================================================== */

static void chunk_begin(gw_xcode *x, eng_buf *out)
{
    sb(out, "data: ");
    eng_buf_append(out, x->head.data, x->head.len);
}

static void chunk_end(eng_buf *out)
{
    sb(out, "]}\n\n");
}

/* chat: {"index":i,"delta":{...},"logprobs":...,"finish_reason":...} - the delta's inner text is
 * written by the caller between the two halves. */
static void chat_choice_open(eng_buf *out, size_t i)
{
    sb(out, "{\"index\":");
    gw_jw_int(out, (int64_t)i);
    sb(out, ",\"delta\":{");
}

static void stream_role(gw_xcode *x, eng_buf *out, size_t i)
{
    chunk_begin(x, out);
    chat_choice_open(out, i);
    sb(out, "\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}");
    chunk_end(out);
}

/* Writes the tool-call delta list items for delta `d` (filtered by parallel_tool_calls). OpenAI's
 * first fragment of a call carries index, id, type and name with arguments "", and the arguments
 * follow in fragments of their own; the engine sends a call's head and its arguments together, so
 * `args_pass` false writes every item with a head's arguments left "" and `args_pass` true writes
 * only those held-back arguments (the next chunk). Returns the number of items written. */
static size_t jw_tool_deltas(gw_xcode *x, eng_buf *out, size_t choice, const Qnext__V1__Delta *d, bool args_pass)
{
    size_t n = 0;
    for (size_t k = 0; k < d->n_tool_calls; k++) {
        const Qnext__V1__ToolCallDelta *t = d->tool_calls[k];
        if (!x->req->parallel_tool_calls && t->index > 0) continue;
        bool head = t->name && t->name[0];
        const char *args = t->arguments ? t->arguments : "";
        if (args_pass && (!head || !args[0])) continue;
        if (n++) eng_buf_putc(out, ',');
        sb(out, "{\"index\":");
        gw_jw_int(out, t->index);
        if (head && !args_pass) {
            sb(out, ",\"id\":");
            if (t->id && t->id[0]) {
                gw_jw_cstr(out, t->id);
            } else {
                char *id = make_call_id(x, choice, t->index);
                gw_jw_cstr(out, id ? id : "call_0");
                eng_free(id);
            }
            sb(out, ",\"type\":\"function\",\"function\":{\"name\":");
            gw_jw_cstr(out, t->name);
            sb(out, ",\"arguments\":\"\"}}");
        } else {
            sb(out, ",\"function\":{\"arguments\":");
            gw_jw_cstr(out, args);
            sb(out, "}}");
        }
    }
    return n;
}

/* Whether some call head in `d` came with arguments (written as a chunk of their own). */
static bool delta_has_head_args(const gw_xcode *x, const Qnext__V1__Delta *d)
{
    for (size_t k = 0; k < d->n_tool_calls; k++) {
        const Qnext__V1__ToolCallDelta *t = d->tool_calls[k];
        if ((x->req->parallel_tool_calls || t->index == 0) && t->name && t->name[0] && t->arguments &&
            t->arguments[0])
            return true;
    }
    return false;
}

static bool delta_has_tools(const gw_xcode *x, const Qnext__V1__Delta *d)
{
    for (size_t k = 0; k < d->n_tool_calls; k++)
        if (x->req->parallel_tool_calls || d->tool_calls[k]->index == 0) return true;
    return false;
}

static void stream_chat_delta(gw_xcode *x, eng_buf *out, size_t i, const Qnext__V1__Delta *d)
{
    bool has_content = d->content && d->content[0];
    bool has_reasoning = d->reasoning && d->reasoning[0];
    bool has_tools = delta_has_tools(x, d);
    bool has_lp = x->req->logprobs >= 0 && d->n_logprobs > 0;
    if (!has_content && !has_reasoning && !has_tools && !has_lp) return;
    chunk_begin(x, out);
    chat_choice_open(out, i);
    bool first = true;
    if (has_content || (has_lp && !has_reasoning && !has_tools)) {
        sb(out, "\"content\":");
        gw_jw_cstr(out, d->content ? d->content : "");
        first = false;
    }
    if (has_reasoning) {
        if (!first) eng_buf_putc(out, ',');
        sb(out, "\"reasoning_content\":");
        gw_jw_cstr(out, d->reasoning);
        if (x->mirror_reasoning) {
            sb(out, ",\"reasoning\":");
            gw_jw_cstr(out, d->reasoning);
        }
        first = false;
    }
    if (has_tools) {
        if (!first) eng_buf_putc(out, ',');
        sb(out, "\"tool_calls\":[");
        jw_tool_deltas(x, out, i, d, false);
        eng_buf_putc(out, ']');
    }
    sb(out, "},\"logprobs\":");
    if (has_lp) {
        sb(out, "{\"content\":[");
        for (size_t k = 0; k < d->n_logprobs; k++) {
            if (k) eng_buf_putc(out, ',');
            jw_chat_logprob(out, d->logprobs[k]);
        }
        sb(out, "],\"refusal\":null}");
    } else {
        sb(out, "null");
    }
    sb(out, ",\"finish_reason\":null}");
    chunk_end(out);
    if (has_tools && delta_has_head_args(x, d)) {
        chunk_begin(x, out);
        chat_choice_open(out, i);
        sb(out, "\"tool_calls\":[");
        jw_tool_deltas(x, out, i, d, true);
        sb(out, "]},\"logprobs\":null,\"finish_reason\":null}");
        chunk_end(out);
    }
}

static void stream_chat_finish(gw_xcode *x, eng_buf *out, size_t i)
{
    chunk_begin(x, out);
    chat_choice_open(out, i);
    sb(out, "},\"logprobs\":null,\"finish_reason\":");
    gw_jw_cstr(out, gw_finish_reason_str(x->ch[i].fr, x->ch[i].had_tools));
    eng_buf_putc(out, '}');
    chunk_end(out);
}

/* completions: {"text":..,"index":i,"logprobs":..,"finish_reason":..} */
static void stream_text(gw_xcode *x, eng_buf *out, size_t i, const char *text, size_t n, const choice_st *lp,
                        const char *finish)
{
    chunk_begin(x, out);
    sb(out, "{\"text\":");
    gw_jw_str(out, text, n);
    sb(out, ",\"index\":");
    gw_jw_int(out, (int64_t)i);
    sb(out, ",\"logprobs\":");
    if (lp) jw_legacy_logprobs(out, lp);
    else sb(out, "null");
    sb(out, ",\"finish_reason\":");
    gw_jw_cstr(out, finish);
    eng_buf_putc(out, '}');
    chunk_end(out);
}

/* ==== feed ==================================================================================== */

static eng_status add_tool_delta(gw_xcode *x, choice_st *c, const Qnext__V1__ToolCallDelta *t)
{
    if (!x->req->parallel_tool_calls && t->index > 0) return ENG_OK;
    tool_acc *a = NULL;
    for (size_t i = 0; i < c->n_tools; i++)
        if (c->tools[i].index == t->index) a = &c->tools[i];
    if (!a) {
        if (c->n_tools == c->cap_tools) {
            size_t cap = c->cap_tools ? c->cap_tools * 2 : 4;
            tool_acc *nt = eng_realloc(c->tools, cap * sizeof *nt);
            if (!nt) return ENG_ERR_NOMEM;
            c->tools = nt;
            c->cap_tools = cap;
        }
        a = &c->tools[c->n_tools++];
        memset(a, 0, sizeof *a);
        a->index = t->index;
        eng_buf_init(&a->args);
    }
    if (t->id && t->id[0] && !a->id && !(a->id = eng_strdup(t->id))) return ENG_ERR_NOMEM;
    if (t->name && t->name[0] && !a->name && !(a->name = eng_strdup(t->name))) return ENG_ERR_NOMEM;
    if (t->arguments) eng_buf_puts(&a->args, t->arguments);
    return a->args.oom ? ENG_ERR_NOMEM : ENG_OK;
}

eng_status gw_xcode_feed(gw_xcode *x, size_t call, const Qnext__V1__GenerateResponse *m, eng_buf *out,
                         gw_error *err)
{
    size_t n = (size_t)x->req->n;
    if (call >= x->n_calls || m->choice >= n)
        return gw_error_set(err, 500, "server_error", NULL, NULL,
                            "the engine sent choice %u, but the request has %zu", (unsigned)m->choice, n);
    size_t i = call * n + m->choice;
    choice_st *c = &x->ch[i];
    bool stream = x->req->stream;
    if (c->finished)
        return gw_error_set(err, 500, "server_error", NULL, NULL, "the engine sent output after choice %zu ended", i);

    if (stream && !c->started) {
        c->started = true;
        if (x->chat) {
            stream_role(x, out, i);
        } else if (x->req->echo) {
            const char *p = x->req->prompts[call].text;
            stream_text(x, out, i, p, strlen(p), NULL, NULL);
        }
    }

    if (m->kind_case == QNEXT__V1__GENERATE_RESPONSE__KIND_DELTA && m->delta) {
        const Qnext__V1__Delta *d = m->delta;
        if (d->n_tool_calls && delta_has_tools(x, d)) c->had_tools = true;
        if (stream) {
            if (x->chat) {
                stream_chat_delta(x, out, i, d);
            } else if ((d->text && d->text[0]) || (x->req->logprobs >= 0 && d->n_logprobs)) {
                choice_st tmp;
                memset(&tmp, 0, sizeof tmp);
                bool lp = x->req->logprobs >= 0 && d->n_logprobs;
                if (lp) {
                    tmp.text_offset = c->text_offset;
                    add_legacy_logprobs(&tmp, d);
                    c->text_offset = tmp.text_offset;
                }
                stream_text(x, out, i, d->text ? d->text : "", d->text ? strlen(d->text) : 0, lp ? &tmp : NULL,
                            NULL);
                eng_buf_free(&tmp.lp);
                eng_buf_free(&tmp.lp_val);
                eng_buf_free(&tmp.lp_top);
                eng_buf_free(&tmp.lp_off);
            }
        } else if (x->chat) {
            if (d->content) eng_buf_puts(&c->content, d->content);
            if (d->reasoning) eng_buf_puts(&c->reasoning, d->reasoning);
            for (size_t k = 0; k < d->n_tool_calls; k++)
                if (add_tool_delta(x, c, d->tool_calls[k])) return ENG_ERR_NOMEM;
            if (x->req->logprobs >= 0) {
                for (size_t k = 0; k < d->n_logprobs; k++) {
                    if (c->lp.len) eng_buf_putc(&c->lp, ',');
                    jw_chat_logprob(&c->lp, d->logprobs[k]);
                }
            }
        } else {
            if (d->text) eng_buf_puts(&c->content, d->text);
            if (x->req->logprobs >= 0) add_legacy_logprobs(c, d);
        }
    } else if (m->kind_case == QNEXT__V1__GENERATE_RESPONSE__KIND_FINAL && m->final) {
        const Qnext__V1__Final *f = m->final;
        c->finished = true;
        c->fr = f->finish_reason;
        if (f->usage) {
            c->completion_tokens = f->usage->completion_tokens;
            c->reasoning_tokens = f->usage->reasoning_tokens;
            if (!x->calls[call].have_usage) {
                x->calls[call].have_usage = true;
                x->calls[call].prompt_tokens = f->usage->prompt_tokens;
                x->calls[call].cached_tokens = f->usage->cached_prompt_tokens;
            }
        }
        if (f->finish_reason == QNEXT__V1__FINISH_REASON__FINISH_REASON_ERROR)
            return gw_error_set(err, 500, "server_error", NULL, NULL, "generation failed: %.400s",
                                f->error_message && f->error_message[0] ? f->error_message : "engine error");
        if (stream) {
            if (x->chat) stream_chat_finish(x, out, i);
            else stream_text(x, out, i, "", 0, NULL, gw_finish_reason_str(c->fr, c->had_tools));
        }
    }
    if (out->oom || c->content.oom || c->reasoning.oom || c->lp.oom || c->lp_val.oom || c->lp_top.oom ||
        c->lp_off.oom)
        return gw_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
    return ENG_OK;
}

/* ==== finish ================================================================================== */

static void body_chat(gw_xcode *x, eng_buf *out)
{
    sb(out, "{\"id\":");
    gw_jw_cstr(out, x->id);
    sb(out, ",\"object\":\"chat.completion\",\"created\":");
    gw_jw_int(out, x->created);
    sb(out, ",\"model\":");
    gw_jw_cstr(out, x->model);
    sb(out, ",\"choices\":[");
    for (size_t i = 0; i < x->n_choices; i++) {
        choice_st *c = &x->ch[i];
        if (i) eng_buf_putc(out, ',');
        sb(out, "{\"index\":");
        gw_jw_int(out, (int64_t)i);
        sb(out, ",\"message\":{\"role\":\"assistant\",\"content\":");
        if (c->n_tools && c->content.len == 0) sb(out, "null");
        else gw_jw_str(out, c->content.data ? c->content.data : "", c->content.len);
        sb(out, ",\"refusal\":null");
        if (c->reasoning.len) {
            sb(out, ",\"reasoning_content\":");
            gw_jw_str(out, c->reasoning.data, c->reasoning.len);
            if (x->mirror_reasoning) {
                sb(out, ",\"reasoning\":");
                gw_jw_str(out, c->reasoning.data, c->reasoning.len);
            }
        }
        if (c->n_tools) {
            sb(out, ",\"tool_calls\":[");
            for (size_t k = 0; k < c->n_tools; k++) {
                tool_acc *a = &c->tools[k];
                if (k) eng_buf_putc(out, ',');
                sb(out, "{\"id\":");
                if (a->id) {
                    gw_jw_cstr(out, a->id);
                } else {
                    char *id = make_call_id(x, i, a->index);
                    gw_jw_cstr(out, id ? id : "call_0");
                    eng_free(id);
                }
                sb(out, ",\"type\":\"function\",\"function\":{\"name\":");
                gw_jw_cstr(out, a->name ? a->name : "");
                sb(out, ",\"arguments\":");
                gw_jw_str(out, a->args.data ? a->args.data : "", a->args.len);
                sb(out, "}}");
            }
            eng_buf_putc(out, ']');
        }
        sb(out, "},\"logprobs\":");
        if (x->req->logprobs >= 0) {
            sb(out, "{\"content\":[");
            eng_buf_append(out, c->lp.data, c->lp.len);
            sb(out, "],\"refusal\":null}");
        } else {
            sb(out, "null");
        }
        sb(out, ",\"finish_reason\":");
        gw_jw_cstr(out, gw_finish_reason_str(c->fr, c->had_tools));
        eng_buf_putc(out, '}');
    }
    int64_t p, cmp, cached, r;
    totals(x, &p, &cmp, &cached, &r);
    sb(out, "],\"usage\":");
    jw_usage(out, p, cmp, cached, r);
    eng_buf_putc(out, '}');
}

static void body_completions(gw_xcode *x, eng_buf *out)
{
    sb(out, "{\"id\":");
    gw_jw_cstr(out, x->id);
    sb(out, ",\"object\":\"text_completion\",\"created\":");
    gw_jw_int(out, x->created);
    sb(out, ",\"model\":");
    gw_jw_cstr(out, x->model);
    sb(out, ",\"choices\":[");
    size_t n = (size_t)x->req->n;
    for (size_t i = 0; i < x->n_choices; i++) {
        choice_st *c = &x->ch[i];
        if (i) eng_buf_putc(out, ',');
        sb(out, "{\"text\":");
        if (x->req->echo) {
            const char *p = x->req->prompts[i / n].text;
            eng_buf t;
            eng_buf_init(&t);
            eng_buf_puts(&t, p);
            eng_buf_append(&t, c->content.data, c->content.len);
            gw_jw_str(out, t.data ? t.data : "", t.len);
            if (t.oom) out->oom = true;
            eng_buf_free(&t);
        } else {
            gw_jw_str(out, c->content.data ? c->content.data : "", c->content.len);
        }
        sb(out, ",\"index\":");
        gw_jw_int(out, (int64_t)i);
        sb(out, ",\"logprobs\":");
        if (x->req->logprobs >= 0) jw_legacy_logprobs(out, c);
        else sb(out, "null");
        sb(out, ",\"finish_reason\":");
        gw_jw_cstr(out, gw_finish_reason_str(c->fr, c->had_tools));
        eng_buf_putc(out, '}');
    }
    int64_t p, cmp, cached, r;
    totals(x, &p, &cmp, &cached, &r);
    sb(out, "],\"usage\":");
    jw_usage(out, p, cmp, cached, r);
    eng_buf_putc(out, '}');
}

eng_status gw_xcode_finish(gw_xcode *x, eng_buf *out, gw_error *err)
{
    for (size_t i = 0; i < x->n_choices; i++)
        if (!x->ch[i].finished)
            return gw_error_set(err, 500, "server_error", NULL, NULL,
                                "the engine ended the stream before choice %zu finished", i);
    if (x->req->stream) {
        if (x->req->include_usage) {
            int64_t p, c, cached, r;
            totals(x, &p, &c, &cached, &r);
            sb(out, "data: ");
            eng_buf_append(out, x->head.data, x->head.len);
            sb(out, "],\"usage\":");
            jw_usage(out, p, c, cached, r);
            sb(out, "}\n\n");
        }
        gw_sse_done(out);
    } else if (x->chat) {
        body_chat(x, out);
    } else {
        body_completions(x, out);
    }
    if (out->oom) return gw_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
    return ENG_OK;
}

void gw_xcode_usage(const gw_xcode *x, int64_t *prompt_tokens, int64_t *completion_tokens)
{
    int64_t cached, r;
    totals(x, prompt_tokens, completion_tokens, &cached, &r);
}

const char *gw_xcode_finish_reason(const gw_xcode *x)
{
    for (size_t i = 0; i < x->n_choices; i++)
        if (x->ch[i].finished) return gw_finish_reason_str(x->ch[i].fr, x->ch[i].had_tools);
    return NULL;
}

/* ==== standalone builders ===================================================================== */

void gw_error_json(eng_buf *b, const gw_error *e)
{
    sb(b, "{\"error\":{\"message\":");
    gw_jw_cstr(b, e->message);
    sb(b, ",\"type\":");
    gw_jw_cstr(b, e->type ? e->type : "server_error");
    sb(b, ",\"param\":");
    gw_jw_cstr(b, e->param[0] ? e->param : NULL);
    sb(b, ",\"code\":");
    gw_jw_cstr(b, e->code);
    sb(b, "}}");
}

void gw_sse_error(eng_buf *b, const gw_error *e)
{
    sb(b, "data: ");
    gw_error_json(b, e);
    sb(b, "\n\n");
}

void gw_model_json(eng_buf *b, const gw_model_card *m)
{
    sb(b, "{\"id\":");
    gw_jw_cstr(b, m->id);
    sb(b, ",\"object\":\"model\",\"created\":");
    gw_jw_int(b, m->created);
    sb(b, ",\"owned_by\":");
    gw_jw_cstr(b, m->owned_by ? m->owned_by : "qnext");
    if (m->max_model_len > 0) {
        sb(b, ",\"max_model_len\":");
        gw_jw_int(b, m->max_model_len);
    }
    eng_buf_putc(b, '}');
}

void gw_models_json(eng_buf *b, const gw_model_card *m, size_t n)
{
    sb(b, "{\"object\":\"list\",\"data\":[");
    for (size_t i = 0; i < n; i++) {
        if (i) eng_buf_putc(b, ',');
        gw_model_json(b, &m[i]);
    }
    sb(b, "]}");
}
