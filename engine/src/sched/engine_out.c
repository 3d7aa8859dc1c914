/* sched/engine_out.c - the output side of the step loop: what happens to one generated token.
 *
 *     token -> streaming detokenizer (complete UTF-8 only; ids that name no token give no text)
 *           -> stop matcher (EOS / stop ids / stop strings with hold-back / min and max tokens)
 *           -> output parser (reasoning splitter + tool-call parser, chat requests only)
 *           -> one ENG_EV_TOKENS event, and ENG_EV_DONE when the choice finished.
 *
 * Conventions (the gRPC contract of tests/support/fake_engine.h): the id of a token that ends a
 * choice as EOS or a stop token id is not emitted (no id, no text, no logprob), but it counts in
 * usage.completion_tokens, as in vLLM; a stop string and what follows it are never emitted. A
 * choice whose turn produced tool calls and ended with a stop finishes with ENG_FINISH_TOOL_CALLS.
 * Event payloads live in the step arena (valid until the next step starts).
 */
#include "sched/engine_impl.h"

#include <string.h>

/* ==== step arena and events =================================================================== */

void *eng_arena_alloc(eng_engine *e, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    eng_arena_block *b = e->arena;
    /* blocks are kept across steps; find one with room (the list is short) */
    for (; b; b = b->next)
        if (b->cap - b->used >= n) break;
    if (!b) {
        size_t cap = n > 65536 ? n : 65536;
        b = eng_malloc(sizeof *b + cap);
        if (!b) return NULL;
        b->used = 0;
        b->cap = cap;
        b->next = e->arena;
        e->arena = b;
    }
    void *p = b->data + b->used;
    b->used += n;
    return p;
}

char *eng_arena_strndup(eng_engine *e, const char *s, size_t n)
{
    char *d = eng_arena_alloc(e, n + 1);
    if (!d) return NULL;
    if (n) memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

void eng_arena_reset(eng_engine *e)
{
    /* keep at most ~1 MiB of blocks for the next step, free the rest */
    size_t kept = 0;
    eng_arena_block **pp = &e->arena;
    while (*pp) {
        eng_arena_block *b = *pp;
        if (kept + b->cap > (1u << 20) && kept > 0) {
            *pp = b->next;
            eng_free(b);
            continue;
        }
        kept += b->cap;
        b->used = 0;
        pp = &b->next;
    }
}

void eng_arena_free(eng_engine *e)
{
    while (e->arena) {
        eng_arena_block *n = e->arena->next;
        eng_free(e->arena);
        e->arena = n;
    }
}

eng_event *eng_ev_new(eng_engine *e, uint64_t id, int choice, eng_event_kind kind)
{
    if (e->n_ev == e->cap_ev) {
        size_t cap = e->cap_ev ? e->cap_ev * 2 : 64;
        eng_event *p = eng_realloc(e->ev, cap * sizeof *p);
        if (!p) {
            e->ev_lost = true;
            return NULL;
        }
        e->ev = p;
        e->cap_ev = cap;
    }
    eng_event *ev = &e->ev[e->n_ev++];
    memset(ev, 0, sizeof *ev);
    ev->kind = kind;
    ev->request_id = id;
    ev->choice = choice;
    ev->text = ev->content = ev->reasoning = "";
    ev->matched_stop_token = -1;
    return ev;
}

/* ==== sequences =============================================================================== */

eng_status eng_seq_create(eng_engine *e, ereq *r, int choice, eseq **out)
{
    *out = NULL;
    eng_status st;
    eseq *s = eng_calloc(1, sizeof *s);
    if (!s) return eng_err_set(ENG_ERR_NOMEM, "out of memory creating a sequence");
    s->r = r;
    s->choice = choice;
    s->status = ENG_SEQ_WAITING;
    s->slot = -1;
    eng_block_table_init(&s->bt);
    int extra = r->max_tokens < 64 ? r->max_tokens : 64;
    s->cap_tok = r->n_prompt + extra + 1;
    s->tok = eng_malloc((size_t)s->cap_tok * sizeof *s->tok);
    if (!s->tok) goto oom;
    memcpy(s->tok, r->prompt, (size_t)r->n_prompt * sizeof *s->tok);
    s->n_tok = r->n_prompt;

    const eng_sampling *sp = &r->p->req.sampling;
    eng_stop_config sc = {sp->stop,         sp->n_stop,         e->eos,
                          (size_t)e->n_eos, sp->stop_token_ids, sp->n_stop_token_ids,
                          r->max_tokens,    sp->min_tokens,     sp->ignore_eos};
    if ((st = eng_stop_create(&sc, &s->stop)) != ENG_OK) goto fail;
    if ((st = eng_detok_create(e->tok, sp->skip_special_tokens, &s->detok)) != ENG_OK) goto fail;
    if (r->parse && (st = eng_output_parser_create(r->rstart, r->tools, 0, &s->parser)) != ENG_OK) goto fail;
    *out = s;
    return ENG_OK;
oom:
    st = eng_err_set(ENG_ERR_NOMEM, "out of memory creating a sequence");
fail:
    eng_seq_destroy(s);
    return st;
}

void eng_seq_destroy(eseq *s)
{
    if (!s) return;
    eng_stop_destroy(s->stop);
    eng_detok_destroy(s->detok);
    eng_output_parser_destroy(s->parser);
    eng_free(s->tok);
    eng_free(s->bt.ids);
    eng_free(s);
}

void eng_seq_release(eng_engine *e, eseq *s)
{
    eng_block_table_free(&s->bt, e->pool);
    if (s->slot >= 0) e->free_slots[e->n_free_slots++] = s->slot;
    s->slot = -1;
    s->n_computed = 0;
    s->status = ENG_SEQ_WAITING;
    s->hint_valid = false;
}

static bool tok_push(eseq *s, int32_t t)
{
    if (s->n_tok == s->cap_tok) {
        int cap = s->cap_tok * 2;
        int32_t *p = eng_realloc(s->tok, (size_t)cap * sizeof *p);
        if (!p) return false;
        s->tok = p;
        s->cap_tok = cap;
    }
    s->tok[s->n_tok++] = t;
    return true;
}

/* ==== DONE / ERROR ============================================================================ */

static void fill_done(eng_engine *e, eseq *s, eng_event *ev, eng_finish_reason reason)
{
    ereq *r = s->r;
    double now = eng_now_s();
    ev->finish = reason;
    ev->usage.prompt_tokens = r->n_prompt;
    ev->usage.completion_tokens = s->n_out;
    ev->usage.cached_prompt_tokens = r->n_cached;
    ev->usage.reasoning_tokens = s->n_reasoning;
    ev->timings.queue_s = (r->t_sched > 0 ? r->t_sched : now) - r->t_submit;
    ev->timings.ttft_s = s->n_out > 0 ? s->t_first - r->t_submit : 0;
    ev->timings.total_s = now - r->t_submit;
    ev->timings.mean_itl_s = s->n_out > 1 ? (s->t_last - s->t_first) / (s->n_out - 1) : 0;
    (void)e;
}

void eng_out_finish(eng_engine *e, eseq *s, eng_finish_reason reason)
{
    if (s->done) return;
    s->done = true;
    s->finish = reason;
    s->r->n_open--;
    eng_event *ev = eng_ev_new(e, s->r->id, s->choice, ENG_EV_DONE);
    if (ev) fill_done(e, s, ev, reason);
}

void eng_req_fail(eng_engine *e, ereq *r, eng_status st, const char *msg)
{
    if (r->failed) return;
    r->failed = true;
    eng_event *ev = eng_ev_new(e, r->id, 0, ENG_EV_ERROR);
    if (ev) {
        ev->error = st;
        ev->finish = ENG_FINISH_ERROR;
        ev->error_message = eng_arena_strndup(e, msg ? msg : "", msg ? strlen(msg) : 0);
        if (!ev->error_message) ev->error_message = "";
    }
    const char *cid = r->p->req.client_id;
    eng_log(ENG_LOG_WARN, "request %llu%s%s%s failed: %s: %s", (unsigned long long)r->id, cid ? " (" : "",
            cid ? cid : "", cid ? ")" : "", eng_status_str(st), msg ? msg : "");
    for (int c = 0; c < r->n_choices; c++)
        if (r->ch[c]) r->ch[c]->done = true;
    r->n_open = 0;
}

/* ==== one token =============================================================================== */

/* Copies the parser's deltas of one token into the event: content, reasoning, tool deltas. */
static bool deltas_to_event(eng_engine *e, eng_event *ev, bool *has_r, bool *has_c)
{
    const eng_deltas *d = &e->deltas;
    size_t n_r = 0, n_c = 0, n_t = 0;
    for (size_t i = 0; i < d->n; i++) {
        const eng_delta *x = &d->items[i];
        if (x->kind == ENG_DELTA_REASONING)
            n_r += x->len;
        else if (x->kind == ENG_DELTA_CONTENT)
            n_c += x->len;
        else
            n_t++;
    }
    *has_r = n_r > 0;
    *has_c = n_c > 0 || n_t > 0;
    char *rs = eng_arena_alloc(e, n_r + 1), *cs = eng_arena_alloc(e, n_c + 1);
    eng_tool_delta *td = n_t ? eng_arena_alloc(e, n_t * sizeof *td) : NULL;
    if (!rs || !cs || (n_t && !td)) return false;
    size_t pr = 0, pc = 0, pt = 0;
    for (size_t i = 0; i < d->n; i++) {
        const eng_delta *x = &d->items[i];
        switch (x->kind) {
        case ENG_DELTA_REASONING:
            memcpy(rs + pr, x->text, x->len);
            pr += x->len;
            break;
        case ENG_DELTA_CONTENT:
            memcpy(cs + pc, x->text, x->len);
            pc += x->len;
            break;
        case ENG_DELTA_TOOL_CALL: {
            char *id = eng_arena_strndup(e, x->id ? x->id : "", x->id ? strlen(x->id) : 0);
            char *name = eng_arena_strndup(e, x->text, x->len);
            if (!id || !name) return false;
            td[pt++] = (eng_tool_delta){x->index, id, name, ""};
            break;
        }
        case ENG_DELTA_TOOL_ARGS: {
            char *a = eng_arena_strndup(e, x->text, x->len);
            if (!a) return false;
            td[pt++] = (eng_tool_delta){x->index, NULL, NULL, a};
            break;
        }
        }
    }
    rs[pr] = '\0';
    cs[pc] = '\0';
    ev->reasoning = rs;
    ev->content = cs;
    ev->tool_deltas = td;
    ev->n_tool_deltas = n_t;
    return true;
}

eng_status eng_out_token(eng_engine *e, eseq *s, int32_t token, const eng_sample_result *lp)
{
    ereq *r = s->r;
    eng_status st;
    if (!tok_push(s, token)) return eng_err_set(ENG_ERR_NOMEM, "out of memory for generated tokens");
    s->n_out++;
    double now = eng_now_s();
    if (s->n_out == 1) s->t_first = now;
    s->t_last = now;
    e->generation_tokens_total++;

    const char *piece = "";
    size_t plen = 0;
    if (eng_detok_push(s->detok, token, &piece, &plen) != ENG_OK) { /* an id that names no token */
        eng_err_clear();
        piece = "";
        plen = 0;
    }
    eng_stop_result sr;
    if ((st = eng_stop_feed(s->stop, token, piece, plen, &sr)) != ENG_OK) return st;
    eng_buf *tb = &e->text;
    tb->len = 0;
    tb->oom = false;
    eng_buf_append(tb, sr.text, sr.len);
    if (sr.finished && !sr.matched_stop) { /* the held-back text is out; so must be a partial character */
        const char *ft;
        size_t fl;
        if (eng_detok_flush(s->detok, &ft, &fl) == ENG_OK) eng_buf_append(tb, ft, fl);
    }
    if (tb->oom) return eng_err_set(ENG_ERR_NOMEM, "out of memory for output text");
    const char *text = tb->len ? tb->data : "";
    size_t len = tb->len;

    eng_deltas_clear(&e->deltas);
    if (s->parser) {
        if (len && (st = eng_output_parser_feed(s->parser, text, len, &e->deltas)) != ENG_OK) return st;
        if (sr.finished && (st = eng_output_parser_finish(s->parser, &e->deltas)) != ENG_OK) return st;
    }
    bool include = !(sr.finished && sr.reason == ENG_FINISH_STOP && !sr.matched_stop);
    bool has_r = false, has_c = false;
    if (include || len || e->deltas.n) {
        eng_event *ev = eng_ev_new(e, r->id, s->choice, ENG_EV_TOKENS);
        if (!ev) return eng_err_set(ENG_ERR_NOMEM, "out of memory for events");
        if (include) {
            int32_t *tp = eng_arena_alloc(e, sizeof *tp);
            if (!tp) return eng_err_set(ENG_ERR_NOMEM, "out of memory for events");
            *tp = token;
            ev->tokens = tp;
            ev->n_tokens = 1;
        }
        char *t = eng_arena_strndup(e, text, len);
        if (!t) return eng_err_set(ENG_ERR_NOMEM, "out of memory for events");
        ev->text = t;
        if (s->parser) {
            if (!deltas_to_event(e, ev, &has_r, &has_c))
                return eng_err_set(ENG_ERR_NOMEM, "out of memory for events");
        } else {
            ev->content = t;
        }
        if (lp && include) {
            eng_token_logprob *l = eng_arena_alloc(e, sizeof *l);
            eng_top_logprob *top = lp->n_top ? eng_arena_alloc(e, (size_t)lp->n_top * sizeof *top) : NULL;
            if (!l || (lp->n_top && !top)) return eng_err_set(ENG_ERR_NOMEM, "out of memory for events");
            if (lp->n_top) memcpy(top, lp->top, (size_t)lp->n_top * sizeof *top);
            *l = (eng_token_logprob){token, lp->logprob, top, (size_t)lp->n_top};
            ev->logprobs = l;
        }
    }
    if (s->parser) {
        if (has_r || (!has_c && !s->content_seen && r->rstart != ENG_REASONING_NONE)) s->n_reasoning++;
        if (has_c) s->content_seen = true;
    }
    if (sr.finished) {
        eng_finish_reason why = sr.reason;
        const eng_toolcall_parser *tp = s->parser ? eng_output_parser_tools(s->parser) : NULL;
        if (why == ENG_FINISH_STOP && tp && eng_toolcall_parser_count(tp) > 0) why = ENG_FINISH_TOOL_CALLS;
        char *ms = sr.matched_stop ? eng_arena_strndup(e, sr.matched_stop, strlen(sr.matched_stop)) : NULL;
        if (sr.matched_stop && !ms) return eng_err_set(ENG_ERR_NOMEM, "out of memory for events");
        s->done = true;
        s->finish = why;
        r->n_open--;
        eng_event *ev = eng_ev_new(e, r->id, s->choice, ENG_EV_DONE);
        if (!ev) return eng_err_set(ENG_ERR_NOMEM, "out of memory for events");
        fill_done(e, s, ev, why);
        ev->matched_stop = ms;
        ev->matched_stop_token = sr.matched_token;
        ev->tool_call_parse_error = tp && eng_toolcall_parser_malformed(tp);
    }
    return ENG_OK;
}
