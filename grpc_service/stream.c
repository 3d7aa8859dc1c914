/* grpc_service/stream.c - bounded, coalescing send queue and send state machine (see stream.h). */
#include "stream.h"

#include <string.h>

/* ==== items =================================================================================== */

static void item_reset(gsvc_item *it, int choice, bool is_final)
{
    it->choice = choice;
    it->is_final = is_final;
    it->n_tokens = it->n_tools = it->n_lps = it->n_tops = 0;
    gsvc_buf_reset(&it->text);
    gsvc_buf_reset(&it->content);
    gsvc_buf_reset(&it->reasoning);
    it->finish = ENG_FINISH_NONE;
    gsvc_buf_reset(&it->matched_stop);
    it->has_matched_stop_token = false;
    it->matched_stop_token = 0;
    it->tool_call_parse_error = false;
    gsvc_buf_reset(&it->error_message);
    memset(&it->usage, 0, sizeof it->usage);
    memset(&it->timings, 0, sizeof it->timings);
    it->bytes = 0;
}

static void item_free(gsvc_item *it)
{
    gsvc_free(it->tokens);
    gsvc_buf_free(&it->text);
    gsvc_buf_free(&it->content);
    gsvc_buf_free(&it->reasoning);
    for (size_t i = 0; i < it->cap_tools; i++) {
        gsvc_buf_free(&it->tools[i].id);
        gsvc_buf_free(&it->tools[i].name);
        gsvc_buf_free(&it->tools[i].arguments);
    }
    gsvc_free(it->tools);
    gsvc_free(it->lps);
    gsvc_free(it->tops);
    gsvc_buf_free(&it->matched_stop);
    gsvc_buf_free(&it->error_message);
    memset(it, 0, sizeof *it);
}

/* Appends engine text (NULL = nothing). Protobuf strings must be UTF-8 and the engine promises
 * complete UTF-8, but a bad byte must not make every client fail to parse the message: ill-formed
 * sequences become U+FFFD. False on OOM. */
static bool put_text(gsvc_buf *b, const char *s)
{
    return !s || gsvc_utf8_append_sanitized(b, s, strlen(s));
}

/* Makes room for `extra` more elements of size `esz` in *arr (capacity *cap, length n). */
static bool grow(void **arr, size_t *cap, size_t n, size_t extra, size_t esz)
{
    if (n + extra <= *cap) return true;
    size_t c = *cap ? *cap : 8;
    while (c < n + extra) c *= 2;
    if (c > SIZE_MAX / esz) return false;
    void *p = gsvc_realloc(*arr, c * esz);
    if (!p) return false;
    *arr = p;
    *cap = c;
    return true;
}

static bool grow_tools(gsvc_item *it)
{
    if (it->n_tools < it->cap_tools) return true;
    size_t c = it->cap_tools ? it->cap_tools * 2 : 4;
    gsvc_tool_frag *t = gsvc_realloc(it->tools, c * sizeof *t);
    if (!t) return false;
    for (size_t i = it->cap_tools; i < c; i++) {
        memset(&t[i], 0, sizeof t[i]);
        gsvc_buf_init(&t[i].id);
        gsvc_buf_init(&t[i].name);
        gsvc_buf_init(&t[i].arguments);
    }
    it->tools = t;
    it->cap_tools = c;
    return true;
}

static size_t safe_len(const char *s)
{
    return s ? strlen(s) : 0;
}

/* Lengths of an item's variable parts, to roll back a failed merge. */
typedef struct item_mark {
    size_t n_tokens, text, content, reasoning, n_tools, last_args, n_lps, n_tops;
} item_mark;

static item_mark item_mark_take(const gsvc_item *it)
{
    item_mark m = {it->n_tokens, it->text.len, it->content.len, it->reasoning.len, it->n_tools, 0, it->n_lps, it->n_tops};
    if (it->n_tools) m.last_args = it->tools[it->n_tools - 1].arguments.len;
    return m;
}

static void buf_truncate(gsvc_buf *b, size_t len)
{
    b->len = len;
    if (b->data) b->data[len] = '\0';
}

static void item_mark_restore(gsvc_item *it, const item_mark *m)
{
    it->n_tokens = m->n_tokens;
    buf_truncate(&it->text, m->text);
    buf_truncate(&it->content, m->content);
    buf_truncate(&it->reasoning, m->reasoning);
    it->n_tools = m->n_tools;
    if (m->n_tools) buf_truncate(&it->tools[m->n_tools - 1].arguments, m->last_args);
    it->n_lps = m->n_lps;
    it->n_tops = m->n_tops;
}

/* Appends the delta parts of ev to it. False on OOM (the item may be partly appended: roll back). */
static bool item_append_delta(gsvc_item *it, const eng_event *ev, bool skip_text)
{
    if (ev->n_tokens) {
        if (!ev->tokens || !grow((void **)&it->tokens, &it->cap_tokens, it->n_tokens, ev->n_tokens, sizeof(int32_t)))
            return false;
        memcpy(it->tokens + it->n_tokens, ev->tokens, ev->n_tokens * sizeof(int32_t));
        it->n_tokens += ev->n_tokens;
    }
    if (!skip_text) {
        if (!put_text(&it->text, ev->text) || !put_text(&it->content, ev->content) ||
            !put_text(&it->reasoning, ev->reasoning))
            return false;
        for (size_t i = 0; i < ev->n_tool_deltas && ev->tool_deltas; i++) {
            const eng_tool_delta *td = &ev->tool_deltas[i];
            gsvc_tool_frag *last = it->n_tools ? &it->tools[it->n_tools - 1] : NULL;
            if (last && last->index == td->index && !td->id && !td->name) {
                if (!put_text(&last->arguments, td->arguments)) return false;
                continue;
            }
            if (!grow_tools(it)) return false;
            gsvc_tool_frag *f = &it->tools[it->n_tools];
            f->index = td->index;
            f->has_id = td->id != NULL;
            f->has_name = td->name != NULL;
            gsvc_buf_reset(&f->id);
            gsvc_buf_reset(&f->name);
            gsvc_buf_reset(&f->arguments);
            if (!put_text(&f->id, td->id) || !put_text(&f->name, td->name) || !put_text(&f->arguments, td->arguments))
                return false;
            it->n_tools++;
        }
    }
    if (ev->logprobs && ev->n_tokens) {
        if (!grow((void **)&it->lps, &it->cap_lps, it->n_lps, ev->n_tokens, sizeof(gsvc_lp))) return false;
        for (size_t i = 0; i < ev->n_tokens; i++) {
            const eng_token_logprob *lp = &ev->logprobs[i];
            size_t nt = lp->top ? lp->n_top : 0;
            if (!grow((void **)&it->tops, &it->cap_tops, it->n_tops, nt, sizeof(eng_top_logprob))) return false;
            if (nt) memcpy(it->tops + it->n_tops, lp->top, nt * sizeof(eng_top_logprob));
            it->lps[it->n_lps++] = (gsvc_lp){lp->token, lp->logprob, it->n_tops, nt};
            it->n_tops += nt;
        }
    }
    return true;
}

/* Approximate encoded size of what ev adds to a Delta. */
static size_t delta_bytes(const eng_event *ev, bool skip_text)
{
    size_t b = ev->n_tokens * 5;
    if (!skip_text) {
        b += safe_len(ev->text) + safe_len(ev->content) + safe_len(ev->reasoning);
        for (size_t i = 0; i < ev->n_tool_deltas && ev->tool_deltas; i++) {
            const eng_tool_delta *td = &ev->tool_deltas[i];
            b += 8 + safe_len(td->id) + safe_len(td->name) + safe_len(td->arguments);
        }
    }
    if (ev->logprobs)
        for (size_t i = 0; i < ev->n_tokens; i++) b += 12 + ev->logprobs[i].n_top * 12;
    return b;
}

/* ==== stream ================================================================================== */

eng_status gsvc_stream_init(gsvc_stream *s, int n_choices, size_t max_backlog, bool skip_text)
{
    memset(s, 0, sizeof *s);
    gsvc_buf_init(&s->status_message);
    if (n_choices < 1 || n_choices > 128) return eng_err_set(ENG_ERR_INVALID, "n must be 1..128 (got %d)", n_choices);
    s->n_choices = n_choices;
    s->skip_text = skip_text;
    s->max_backlog = max_backlog;
    s->n_open = n_choices;
    s->cap = 2 * (size_t)n_choices;
    s->ring = gsvc_calloc(s->cap, sizeof *s->ring);
    s->choice_done = gsvc_calloc((size_t)n_choices, 1);
    s->pending_delta = gsvc_malloc((size_t)n_choices * sizeof(int));
    if (!s->ring || !s->choice_done || !s->pending_delta) {
        gsvc_stream_free(s);
        return eng_err_set(ENG_ERR_NOMEM, "out of memory for a stream of %d choices", n_choices);
    }
    for (int i = 0; i < n_choices; i++) s->pending_delta[i] = -1;
    return ENG_OK;
}

void gsvc_stream_free(gsvc_stream *s)
{
    if (!s) return;
    if (s->ring)
        for (size_t i = 0; i < s->cap; i++) item_free(&s->ring[i]);
    gsvc_free(s->ring);
    gsvc_free(s->choice_done);
    gsvc_free(s->pending_delta);
    gsvc_buf_free(&s->status_message);
    s->ring = NULL;
    s->choice_done = NULL;
    s->pending_delta = NULL;
    s->cap = s->count = 0;
}

/* The next free ring slot (not yet counted), or NULL if the ring is full (cannot happen: at most
 * one Delta and one Final per choice are queued). */
static gsvc_item *slot_new(gsvc_stream *s, size_t *idx)
{
    if (s->count >= s->cap) return NULL;
    *idx = (s->head + s->count) % s->cap;
    return &s->ring[*idx];
}

static void queue_clear(gsvc_stream *s)
{
    s->head = s->count = 0;
    s->backlog = 0;
    for (int i = 0; i < s->n_choices; i++) s->pending_delta[i] = -1;
}

static eng_status push_tokens(gsvc_stream *s, const eng_event *ev)
{
    int c = ev->choice;
    if (s->choice_done[c]) return eng_err_set(ENG_ERR_INVALID, "tokens for choice %d after its final", c);
    if (s->state != GSVC_STREAM_OPEN || s->ending) return ENG_OK;
    size_t add = delta_bytes(ev, s->skip_text);
    if (add == 0) return ENG_OK; /* nothing to send (e.g. text held back by the detokenizer) */
    if (s->backlog + add > s->max_backlog)
        return eng_err_set(ENG_ERR_QUEUE_FULL, "more than %zu bytes queued for a client that is not reading", s->max_backlog);
    gsvc_item *it;
    size_t idx = 0;
    bool fresh = s->pending_delta[c] < 0;
    if (fresh) {
        it = slot_new(s, &idx);
        if (!it) return eng_err_set(ENG_ERR_INTERNAL, "stream queue overflow");
        item_reset(it, c, false);
    } else {
        it = &s->ring[s->pending_delta[c]];
    }
    item_mark m = item_mark_take(it);
    if (!item_append_delta(it, ev, s->skip_text)) {
        item_mark_restore(it, &m);
        return eng_err_set(ENG_ERR_NOMEM, "out of memory queueing a delta");
    }
    it->bytes += add;
    s->backlog += add;
    if (fresh) {
        s->pending_delta[c] = (int)idx;
        s->count++;
    }
    return ENG_OK;
}

static eng_status push_done(gsvc_stream *s, const eng_event *ev)
{
    int c = ev->choice;
    if (s->choice_done[c]) return eng_err_set(ENG_ERR_INVALID, "a second final for choice %d", c);
    if (s->state == GSVC_STREAM_OPEN && !s->ending) {
        size_t idx;
        gsvc_item *it = slot_new(s, &idx);
        if (!it) return eng_err_set(ENG_ERR_INTERNAL, "stream queue overflow");
        item_reset(it, c, true);
        it->finish = ev->finish;
        it->usage = ev->usage;
        it->timings = ev->timings;
        it->tool_call_parse_error = ev->tool_call_parse_error;
        it->has_matched_stop_token = ev->matched_stop_token >= 0;
        it->matched_stop_token = ev->matched_stop_token;
        if (!put_text(&it->matched_stop, ev->matched_stop) || !put_text(&it->error_message, ev->error_message))
            return eng_err_set(ENG_ERR_NOMEM, "out of memory queueing a final");
        it->bytes = 64 + it->matched_stop.len + it->error_message.len;
        s->backlog += it->bytes;
        s->count++;
        s->pending_delta[c] = -1;
    }
    s->choice_done[c] = 1;
    s->n_open--;
    if (s->n_open == 0) s->ending = true;
    return ENG_OK;
}

eng_status gsvc_stream_push(gsvc_stream *s, const eng_event *ev)
{
    if (ev->choice < 0 || ev->choice >= s->n_choices)
        return eng_err_set(ENG_ERR_INVALID, "event for choice %d of %d", ev->choice, s->n_choices);
    switch (ev->kind) {
    case ENG_EV_TOKENS: return push_tokens(s, ev);
    case ENG_EV_DONE: return push_done(s, ev);
    default: return eng_err_set(ENG_ERR_INVALID, "gsvc_stream_push: event kind %d", (int)ev->kind);
    }
}

static void set_status(gsvc_stream *s, int code, const char *message)
{
    s->status_code = code;
    gsvc_buf_reset(&s->status_message);
    if (message && !gsvc_buf_puts(&s->status_message, message)) gsvc_buf_reset(&s->status_message);
}

void gsvc_stream_abort(gsvc_stream *s, int code, const char *message)
{
    queue_clear(s);
    if (!s->ending || s->status_code == 0) set_status(s, code, message);
    s->ending = true;
}

void gsvc_stream_error(gsvc_stream *s, int code, const char *message)
{
    bool was_open = s->state == GSVC_STREAM_OPEN && !s->ending;
    for (int c = 0; c < s->n_choices; c++) {
        if (s->choice_done[c]) continue;
        s->choice_done[c] = 1;
        s->n_open--;
        if (!was_open) continue;
        size_t idx;
        gsvc_item *it = slot_new(s, &idx);
        if (!it) continue;
        item_reset(it, c, true);
        it->finish = ENG_FINISH_ERROR;
        if (!put_text(&it->error_message, message)) {
            /* cannot describe the error: drop the queue, the status still says it */
            gsvc_stream_abort(s, code, message);
            was_open = false;
            continue;
        }
        it->bytes = 64 + it->error_message.len;
        s->backlog += it->bytes;
        s->count++;
        s->pending_delta[c] = -1;
    }
    if (!s->ending || s->status_code == 0) set_status(s, code, message);
    s->ending = true;
}

gsvc_stream_act gsvc_stream_next(gsvc_stream *s, const gsvc_item **item)
{
    *item = NULL;
    if (s->state != GSVC_STREAM_OPEN || s->in_flight) return GSVC_ACT_NONE;
    if (s->count > 0) {
        gsvc_item *it = &s->ring[s->head];
        if (!it->is_final && s->pending_delta[it->choice] == (int)s->head) s->pending_delta[it->choice] = -1;
        s->head = (s->head + 1) % s->cap;
        s->count--;
        s->backlog -= it->bytes;
        s->in_flight = true;
        s->in_flight_status = false;
        s->n_messages_sent++;
        *item = it;
        return GSVC_ACT_SEND_MESSAGE;
    }
    if (s->ending) {
        s->in_flight = true;
        s->in_flight_status = true;
        return GSVC_ACT_SEND_STATUS;
    }
    return GSVC_ACT_NONE;
}

void gsvc_stream_sent(gsvc_stream *s, bool ok)
{
    bool was_status = s->in_flight_status;
    s->in_flight = false;
    s->in_flight_status = false;
    if (s->state != GSVC_STREAM_OPEN) return;
    if (!ok) {
        s->state = GSVC_STREAM_GONE;
        queue_clear(s);
    } else if (was_status) {
        s->state = GSVC_STREAM_STATUS_SENT;
    }
}

void gsvc_stream_closed(gsvc_stream *s, bool cancelled)
{
    if (cancelled && s->state == GSVC_STREAM_OPEN) {
        s->state = GSVC_STREAM_GONE;
        queue_clear(s);
    }
}
