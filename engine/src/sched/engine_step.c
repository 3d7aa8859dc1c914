/* sched/engine_step.c - eng_step: one iteration of the engine loop (nano-vllm LLMEngine.step):
 *
 *   1. drain the submission queue: new requests are tokenized / rendered here (so eng_submit stays
 *      cheap) and get choice 0 as a WAITING sequence; cancellations mark their request
 *   2. cancelled requests end (DONE cancelled) and give back their blocks and slot at once
 *   3. prefix-cache reclaim when the KV pool runs short, then describe every sequence (a WAITING
 *      one with its prefix-cache hit) and let sched/sched.c plan the step
 *   4. execute the plan (sched.h): preempt (recompute later); admit (state slot, attach the hit's
 *      blocks, restore its snapshot); reserve blocks, running copy-on-write copies first
 *   5. one forward over all items; snapshot the state at chunk ends the plan marks
 *   6. sample the last row of every item that completes its sequence's known tokens; at the end
 *      of choice 0's prompt, fork choices 1..n-1 (block-table fork + state-slot copy) and sample
 *      their first tokens from the same row; tokens go through engine_out.c
 *   7. retire finished sequences (a finished chat turn leaves a prefix-cache entry of its whole
 *      history, so the next turn prefills only the new tokens) and finished requests
 * Only the thread that calls eng_step touches any of this.
 */
#include "sched/engine_impl.h"

#include <cjson/cJSON.h>
#include <string.h>

/* ==== small containers ======================================================================== */

static bool grow_ptrs(void ***arr, int *cap, int need)
{
    if (need <= *cap) return true;
    int c = *cap ? *cap * 2 : 64;
    while (c < need) c *= 2;
    void **p = eng_realloc(*arr, (size_t)c * sizeof *p);
    if (!p) return false;
    *arr = p;
    *cap = c;
    return true;
}

static bool seqs_push(eng_engine *e, eseq *s)
{
    int cap = e->cap_seqs;
    if (!grow_ptrs((void ***)&e->seqs, &cap, e->n_seqs + 1)) return false;
    if (cap != e->cap_seqs) {
        eng_sched_seq *d = eng_realloc(e->desc, (size_t)cap * sizeof *d);
        if (!d) return false; /* e->seqs grew; cap_seqs stays, so the next push retries the desc */
        e->desc = d;
        e->cap_seqs = cap;
    }
    e->seqs[e->n_seqs++] = s;
    s->active = true;
    return true;
}

static ereq *find_req(eng_engine *e, uint64_t id)
{
    for (int i = 0; i < e->n_reqs; i++)
        if (e->reqs[i]->id == id) return e->reqs[i];
    return NULL;
}

static void req_free(ereq *r)
{
    if (!r) return;
    if (r->ch)
        for (int c = 0; c < r->n_choices; c++) eng_seq_destroy(r->ch[c]);
    eng_free(r->ch);
    eng_free(r->prompt);
    eng_payload_free(r->p);
    eng_free(r);
}

/* ==== 1. preparing a request ================================================================== */

static bool tools_present(const char *tools_json)
{
    if (!tools_json) return false;
    cJSON *j = cJSON_Parse(tools_json);
    bool yes = j && cJSON_IsArray(j) && cJSON_GetArraySize(j) > 0;
    cJSON_Delete(j);
    return yes;
}

/* The ERROR event of a request that could not be prepared. */
static void prepare_failed(eng_engine *e, uint64_t id, eng_status st)
{
    char msg[1100];
    snprintf(msg, sizeof msg, "%s", eng_err_last());
    eng_event *ev = eng_ev_new(e, id, 0, ENG_EV_ERROR);
    if (ev) {
        ev->error = st;
        ev->finish = ENG_FINISH_ERROR;
        ev->error_message = eng_arena_strndup(e, msg, strlen(msg));
        if (!ev->error_message) ev->error_message = "";
    }
    eng_queue_mark_finished(e->q, id);
}

/* Tokenizes / renders the request; on failure emits its ERROR event and frees it. */
static void prepare(eng_engine *e, uint64_t id, eng_payload *p)
{
    eng_status st = ENG_OK;
    char *rendered = NULL;
    size_t rlen = 0;
    size_t n = 0;
    eseq *s0 = NULL;
    ereq *r = eng_calloc(1, sizeof *r);
    if (!r) {
        st = eng_err_set(ENG_ERR_NOMEM, "out of memory for a request");
        goto fail;
    }
    r->id = id;
    r->p = p;
    r->t_submit = p->t_submit;
    r->n_choices = p->req.sampling.n;
    if (!(r->ch = eng_calloc((size_t)r->n_choices, sizeof *r->ch))) {
        st = eng_err_set(ENG_ERR_NOMEM, "out of memory for a request");
        goto fail;
    }
    const eng_request *q = &p->req;
    switch (q->input) {
    case ENG_INPUT_TEXT:
        st = eng_tokenizer_encode(e->tok, q->text, strlen(q->text), false, &r->prompt, &n);
        if (st == ENG_OK && e->forced) r->forced = eng_forced_match(e->forced, q->text, strlen(q->text));
        break;
    case ENG_INPUT_TOKENS:
        n = q->n_tokens;
        if (!(r->prompt = eng_malloc(n * sizeof *r->prompt)))
            st = eng_err_set(ENG_ERR_NOMEM, "out of memory");
        else
            memcpy(r->prompt, q->tokens, n * sizeof *r->prompt);
        break;
    case ENG_INPUT_CHAT:
        st = eng_chat_reasoning_start(e->tmpl, q->template_kwargs_json, q->add_generation_prompt, &r->rstart);
        if (st == ENG_OK)
            st = eng_chat_render(e->tmpl, q->messages_json, q->tools_json, q->template_kwargs_json,
                                 q->add_generation_prompt, &rendered, &rlen);
        if (st == ENG_OK) st = eng_tokenizer_encode(e->tok, rendered, rlen, true, &r->prompt, &n);
        if (st == ENG_OK && e->forced) r->forced = eng_forced_match(e->forced, rendered, rlen);
        r->parse = q->parse_output;
        r->tools = r->parse && tools_present(q->tools_json);
        break;
    }
    if (st != ENG_OK) goto fail;
    if (n == 0) {
        st = eng_err_set(ENG_ERR_INVALID, "the prompt is empty after tokenization");
        goto fail;
    }
    if (n >= (size_t)e->max_model_len) {
        st = eng_err_set(ENG_ERR_INVALID, "the prompt is %zu tokens but the context is %d", n,
                         e->max_model_len);
        goto fail;
    }
    for (size_t i = 0; i < n; i++) /* a tokenizer larger than the model's vocabulary */
        if (r->prompt[i] >= e->vocab) {
            st = eng_err_set(ENG_ERR_INVALID,
                             "prompt token %d at position %zu is outside the model's vocabulary (%d)",
                             r->prompt[i], i, e->vocab);
            goto fail;
        }
    r->n_prompt = (int)n;
    int left = e->max_model_len - r->n_prompt;
    r->max_tokens = p->max_tokens > 0 && p->max_tokens < left ? p->max_tokens : left;
    r->n_open = r->n_choices;
    if ((st = eng_seq_create(e, r, 0, &s0)) != ENG_OK) goto fail;
    r->ch[0] = s0;
    if (!grow_ptrs((void ***)&e->reqs, &e->cap_reqs, e->n_reqs + 1) || !seqs_push(e, s0)) {
        st = eng_err_set(ENG_ERR_NOMEM, "out of memory for a request");
        goto fail;
    }
    e->reqs[e->n_reqs++] = r;
    e->prompt_tokens_total += (uint64_t)r->n_prompt;
    eng_chat_free(rendered);
    return;
fail:
    prepare_failed(e, id, st);
    eng_chat_free(rendered);
    if (r)
        req_free(r); /* r->p is p */
    else
        eng_payload_free(p);
}

static void drain_queue(eng_engine *e)
{
    eng_queue_item items[64];
    size_t k;
    while ((k = eng_queue_drain(e->q, items, 64)) > 0) {
        for (size_t i = 0; i < k; i++) {
            if (items[i].kind == ENG_QUEUE_SUBMIT) {
                prepare(e, items[i].id, items[i].payload);
            } else {
                ereq *r = find_req(e, items[i].id);
                if (r) r->cancelled = true;
            }
        }
    }
}

/* ==== 2. / 7. ending and retiring ============================================================= */

/* DONE(cancelled) for every open choice of r, including choices not forked yet. */
static void cancel_req(eng_engine *e, ereq *r)
{
    for (int c = 0; c < r->n_choices; c++) {
        if (r->ch[c]) {
            eng_out_finish(e, r->ch[c], ENG_FINISH_CANCELLED);
        } else if (!r->forked) {
            eng_event *ev = eng_ev_new(e, r->id, c, ENG_EV_DONE);
            if (ev) {
                double now = eng_now_s();
                ev->finish = ENG_FINISH_CANCELLED;
                ev->usage.prompt_tokens = r->n_prompt;
                ev->usage.cached_prompt_tokens = r->n_cached;
                ev->timings.queue_s = (r->t_sched > 0 ? r->t_sched : now) - r->t_submit;
                ev->timings.total_s = now - r->t_submit;
            }
            r->n_open--;
        }
    }
    r->n_open = 0;
}

/* A finished chat turn leaves its whole history [0, n_computed) in the prefix cache: the client's
 * next turn repeats it (the answer re-tokenizes to the same ids as long as the model's tokens were
 * canonical BPE, which real models' nearly always are). */
static void snapshot_history(eng_engine *e, eseq *s)
{
    const ereq *r = s->r;
    if (!e->pc || s->finish == ENG_FINISH_CANCELLED || s->finish == ENG_FINISH_ERROR ||
        s->status != ENG_SEQ_RUNNING || s->n_computed <= r->n_prompt || r->n_choices != 1 ||
        r->p->req.input != ENG_INPUT_CHAT || r->failed || r->cancelled)
        return;
    if (eng_prefix_cache_contains(e->pc, s->tok, s->n_computed)) return;
    void *buf = eng_malloc(e->slot_bytes);
    if (!buf) return;
    if (qn_cache_slot_save(e->cache, s->slot, buf, e->slot_bytes) != ENG_OK) {
        eng_free(buf);
        return;
    }
    eng_prefix_cache_insert(e->pc, s->tok, s->n_computed, s->bt.ids, (uint64_t)(uintptr_t)buf, e->slot_bytes,
                            NULL);
}

/* Removes done sequences from the active list (releasing their blocks and slots) and frees
 * requests whose every choice is done. */
static void retire(eng_engine *e)
{
    int w = 0;
    for (int i = 0; i < e->n_seqs; i++) {
        eseq *s = e->seqs[i];
        if (s->done || s->r->failed) {
            if (!s->r->failed) snapshot_history(e, s);
            eng_seq_release(e, s);
            s->active = false;
            continue;
        }
        e->seqs[w++] = s;
    }
    e->n_seqs = w;
    int k = 0;
    for (int i = 0; i < e->n_reqs; i++) {
        ereq *r = e->reqs[i];
        bool live = false;
        if (!r->failed && r->n_open > 0) live = true;
        for (int c = 0; !live && c < r->n_choices; c++)
            if (r->ch[c] && r->ch[c]->active) live = true;
        if (live) {
            e->reqs[k++] = r;
            continue;
        }
        eng_queue_mark_finished(e->q, r->id);
        req_free(r);
    }
    e->n_reqs = k;
}

/* ==== 3. describing and scheduling ============================================================ */

static int n_running(const eng_engine *e)
{
    int n = 0;
    for (int i = 0; i < e->n_seqs; i++) n += e->seqs[i]->status == ENG_SEQ_RUNNING;
    return n;
}

/* Frees prefix-cache blocks when the pool cannot serve this step's likely needs. */
static void maybe_reclaim(eng_engine *e)
{
    if (!e->pc) return;
    int budget = e->cfg.max_batch_tokens, need = e->kv_watermark;
    const eseq *head = NULL;
    for (int i = 0; i < e->n_seqs; i++) {
        const eseq *s = e->seqs[i];
        int want = s->n_tok - s->n_computed;
        if (s->status == ENG_SEQ_RUNNING) {
            need += eng_block_table_blocks_needed(&s->bt, e->pool, want < budget ? want : budget);
        } else if (!head || s->r->p->req.priority < head->r->p->req.priority ||
                   (s->r->p->req.priority == head->r->p->req.priority && s->r->id < head->r->id)) {
            head = s;
        }
    }
    if (head) need += eng_blocks_for_tokens(e->block_size, head->n_tok < budget ? head->n_tok : budget) + 1;
    if (eng_block_pool_n_free(e->pool) < need) eng_prefix_cache_reclaim(e->pc, need);
}

static void describe(eng_engine *e)
{
    uint64_t gen = e->pc ? eng_prefix_cache_generation(e->pc) : 0;
    for (int i = 0; i < e->n_seqs; i++) {
        eseq *s = e->seqs[i];
        eng_sched_seq *d = &e->desc[i];
        memset(d, 0, sizeof *d);
        d->status = s->status;
        d->priority = s->r->p->req.priority;
        d->arrival = s->r->id;
        d->admitted = s->admitted;
        d->n_tokens_prompt = s->r->n_prompt;
        d->n_tokens = s->n_tok;
        if (s->status == ENG_SEQ_RUNNING) {
            d->n_tokens_computed = s->n_computed;
            d->n_blocks = s->bt.n_blocks;
            d->n_blocks_freeable = eng_block_table_n_freeable(&s->bt, e->pool);
            d->last_block_shared = eng_block_table_last_shared(&s->bt, e->pool);
            continue;
        }
        if (e->pc && (!s->hint_valid || s->hint_gen != gen)) {
            eng_prefix_hit hit;
            eng_prefix_cache_lookup(e->pc, s->tok, s->n_tok, s->n_tok - 1, &hit);
            s->hint_n = hit.n_tokens;
            s->hint_blocks = hit.n_blocks;
            s->hint_gen = gen;
            s->hint_valid = true;
        }
        if (e->pc && s->hint_valid) {
            d->n_tokens_computed = s->hint_n;
            d->n_blocks = s->hint_blocks;
            d->last_block_shared = s->hint_n % e->block_size != 0;
        }
    }
}

static eng_status schedule(eng_engine *e)
{
    describe(e);
    eng_sched_limits lim = {
        .max_running = e->cfg.max_running,
        .max_batch_tokens = e->cfg.max_batch_tokens,
        .max_prefill_chunk = e->max_prefill_chunk,
        .block_size = e->block_size,
        .free_kv_blocks = eng_block_pool_n_free(e->pool),
        .free_state_slots = e->n_free_slots,
        .kv_watermark = e->kv_watermark,
        .snapshot_every = e->pc ? e->cfg.prefix_snapshot_every : 0,
        .snapshot_prompt_end = e->pc != NULL,
    };
    return eng_sched_schedule(e->desc, e->n_seqs, &lim, &e->plan);
}

/* ==== 4.-6. executing the plan ================================================================ */

/* Admits s: state slot, prefix-cache hit (blocks + snapshot) when the plan starts past 0. */
static eng_status admit(eng_engine *e, eseq *s, int start)
{
    ereq *r = s->r;
    if (e->n_free_slots == 0)
        return eng_err_set(ENG_ERR_INTERNAL, "engine: no free state slot for an admission");
    s->slot = e->free_slots[--e->n_free_slots];
    s->status = ENG_SEQ_RUNNING;
    s->admitted = ++e->admit_stamp;
    s->n_computed = 0;
    if (e->pc) {
        eng_prefix_hit hit;
        eng_prefix_cache_lookup(e->pc, s->tok, s->n_tok, s->n_tok - 1, &hit);
        if (start > 0) {
            eng_status st;
            if (hit.n_tokens != start)
                return eng_err_set(ENG_ERR_INTERNAL, "engine: prefix hit changed (%d, planned %d)",
                                   hit.n_tokens, start);
            if ((st = eng_block_table_attach(&s->bt, e->pool, hit.blocks, hit.n_tokens)) != ENG_OK) return st;
            if ((st = qn_cache_slot_restore(e->cache, s->slot, (const void *)(uintptr_t)hit.snapshot,
                                            hit.snapshot_bytes)) != ENG_OK)
                return st;
            s->n_computed = start;
            eng_prefix_cache_record(e->pc, &hit, s->n_tok);
        } else {
            eng_prefix_hit miss = {0};
            eng_prefix_cache_record(e->pc, &miss, s->n_tok);
        }
    } else if (start > 0) {
        return eng_err_set(ENG_ERR_INTERNAL, "engine: planned a prefix hit without a prefix cache");
    }
    if (!r->admitted_once) {
        r->admitted_once = true;
        r->n_cached = start;
        r->t_sched = eng_now_s();
        eng_queue_mark_admitted(e->q, r->id);
    }
    return ENG_OK;
}

/* Samples (or takes the forced token) from `row` for s and feeds the token through the output. */
static void sample_into(eng_engine *e, eseq *s, const float *row)
{
    ereq *r = s->r;
    eng_sampler_params sp = r->p->sp;
    sp.choice = (uint32_t)s->choice;
    const int32_t *sup;
    sp.n_suppress = eng_stop_suppressed(s->stop, &sup);
    sp.suppress = sup;
    eng_sampler_history h = {s->tok, (size_t)r->n_prompt, s->tok + r->n_prompt, (size_t)s->n_out};
    eng_sample_result res;
    eng_status st;
    if (r->forced && s->n_out < r->forced->n_ids) {
        memset(&res, 0, sizeof res);
        res.token = r->forced->ids[s->n_out];
        st = sp.n_logprobs >= 0 ? eng_sampler_logprobs(e->sampler, row, res.token, sp.n_logprobs,
                                                       &res.logprob, res.top, &res.n_top)
                                : ENG_OK;
    } else {
        st = eng_sampler_sample(e->sampler, row, &sp, &h, &res);
    }
    if (st == ENG_OK) st = eng_out_token(e, s, res.token, sp.n_logprobs >= 0 ? &res : NULL);
    if (st != ENG_OK) eng_req_fail(e, r, st, eng_err_last());
}

/* Choice 0 of r just finished its prompt (its caches hold exactly the prompt): create choices
 * 1..n-1, sample their first tokens from the same logits row, and fork the caches to those that
 * continue (or leave them WAITING, to recompute, when no slot is free). */
static void fork_choices(eng_engine *e, ereq *r, const float *row)
{
    eseq *p = r->ch[0];
    r->forked = true;
    int running = n_running(e);
    for (int c = 1; c < r->n_choices && !r->failed; c++) {
        eseq *s;
        eng_status st = eng_seq_create(e, r, c, &s);
        if (st == ENG_OK && !seqs_push(e, s)) {
            eng_seq_destroy(s);
            st = eng_err_set(ENG_ERR_NOMEM, "out of memory forking choices");
        }
        if (st != ENG_OK) {
            eng_req_fail(e, r, st, eng_err_last());
            return;
        }
        r->ch[c] = s;
        sample_into(e, s, row);
        if (s->done || r->failed) continue;
        if (p->status != ENG_SEQ_RUNNING || e->n_free_slots == 0 || running >= e->cfg.max_running) continue;
        if (eng_block_table_fork(&p->bt, &s->bt, e->pool) != ENG_OK) continue; /* recompute later */
        s->slot = e->free_slots[--e->n_free_slots];
        if (qn_cache_slot_copy(e->cache, s->slot, p->slot) != ENG_OK) {
            eng_seq_release(e, s);
            continue;
        }
        s->status = ENG_SEQ_RUNNING;
        s->admitted = ++e->admit_stamp;
        s->n_computed = p->n_computed;
        running++;
    }
}

static eng_status run_plan(eng_engine *e)
{
    eng_sched_plan *plan = &e->plan;
    eng_status st;
    for (int k = 0; k < plan->n_preempt; k++) {
        eseq *s = e->seqs[plan->preempt[k]];
        eng_seq_release(e, s);
        e->n_preempted_total++;
    }
    if (plan->n_items == 0) return ENG_OK;
    if (plan->n_items > e->max_rows || plan->n_batch_tokens > e->cfg.max_batch_tokens)
        return eng_err_set(ENG_ERR_INTERNAL,
                           "engine: a plan of %d items / %d tokens exceeds the scratch (%d / %d)",
                           plan->n_items, plan->n_batch_tokens, e->max_rows, e->cfg.max_batch_tokens);

    int n_tok = 0, n_rows = 0, n_b = 0;
    for (int k = 0; k < plan->n_items; k++) {
        const eng_sched_item *it = &plan->items[k];
        eseq *s = e->seqs[it->seq];
        if (it->admit && (st = admit(e, s, it->start)) != ENG_OK) return st;
        if (s->n_computed != it->start)
            return eng_err_set(ENG_ERR_INTERNAL, "engine: plan starts at %d, sequence is at %d", it->start,
                               s->n_computed);
        eng_block_copy cp;
        bool copied = false;
        if ((st = eng_block_table_append(&s->bt, e->pool, it->n_tokens, &cp, &copied)) != ENG_OK)
            return st == ENG_ERR_NO_KV_BLOCKS ? eng_err_wrap(ENG_ERR_INTERNAL, "engine: the plan's blocks")
                                              : st;
        if (copied && (st = qn_cache_block_copy(e->cache, cp.dst, cp.src)) != ENG_OK) return st;
        memcpy(e->b_tok + n_tok, s->tok + it->start, (size_t)it->n_tokens * sizeof *e->b_tok);
        e->b_seqs[n_b++] = (qn_seq){it->n_tokens, it->start, s->slot, s->bt.ids, s->bt.n_blocks};
        n_tok += it->n_tokens;
        if (it->sample) {
            e->b_rows[n_rows] = n_tok - 1;
            e->b_rowseq[n_rows++] = s;
        }
        if (it->n_tokens > 1 || !it->sample) e->prefill_tokens_total += (uint64_t)it->n_tokens;
    }
    qn_batch b = {n_tok, e->b_tok, n_b, e->b_seqs, n_rows, e->b_rows};
    if ((st = qn_model_forward(e->m, e->cache, &b, e->logits)) != ENG_OK) return st;

    for (int k = 0; k < plan->n_items; k++) {
        const eng_sched_item *it = &plan->items[k];
        eseq *s = e->seqs[it->seq];
        s->n_computed = it->start + it->n_tokens;
        if (!it->snapshot || !e->pc || eng_prefix_cache_contains(e->pc, s->tok, s->n_computed)) continue;
        void *buf = eng_malloc(e->slot_bytes);
        if (!buf) continue; /* a snapshot is an optimisation */
        if (qn_cache_slot_save(e->cache, s->slot, buf, e->slot_bytes) != ENG_OK) {
            eng_free(buf);
            continue;
        }
        eng_prefix_cache_insert(e->pc, s->tok, s->n_computed, s->bt.ids, (uint64_t)(uintptr_t)buf,
                                e->slot_bytes, NULL);
    }

    for (int i = 0; i < n_rows; i++) {
        eseq *s = e->b_rowseq[i];
        ereq *r = s->r;
        const float *row = e->logits + (size_t)i * (size_t)e->vocab;
        if (s->done || r->failed) continue;
        sample_into(e, s, row);
        if (s->choice == 0 && r->n_choices > 1 && !r->forked && !r->failed) fork_choices(e, r, row);
    }
    return ENG_OK;
}

/* ==== the step ================================================================================ */

/* Nothing could be planned although sequences wait: drop the prefix cache and try again; if even
 * an empty cache cannot take the first waiting sequence, fail it (it can never run). */
static eng_status unstick(eng_engine *e)
{
    eng_status st;
    if (e->pc) {
        eng_prefix_cache_clear(e->pc);
        if ((st = schedule(e)) != ENG_OK) return st;
        if (e->plan.n_items > 0 || e->plan.n_preempt > 0) return ENG_OK;
    }
    for (int i = 0; i < e->n_seqs; i++) {
        eseq *s = e->seqs[i];
        if (s->status != ENG_SEQ_WAITING) continue;
        eng_req_fail(e, s->r, ENG_ERR_NO_KV_BLOCKS, "the request does not fit the KV cache");
        break;
    }
    return ENG_OK;
}

static void update_stats(eng_engine *e)
{
    e->steps_total++;
    double t = eng_now_s();
    if (t - e->rate_t0 >= 1.0) {
        e->rate_prompt = (double)(e->prefill_tokens_total - e->rate_prompt0) / (t - e->rate_t0);
        e->rate_gen = (double)(e->generation_tokens_total - e->rate_gen0) / (t - e->rate_t0);
        e->rate_t0 = t;
        e->rate_prompt0 = e->prefill_tokens_total;
        e->rate_gen0 = e->generation_tokens_total;
    }
    /* KV blocks in use = distinct blocks of the running sequences; blocks only the prefix cache
     * holds are reclaimable on demand, so they count as free (like vLLM's usage metric) */
    if (++e->mark_gen == 0) {
        memset(e->block_mark, 0, (size_t)e->n_blocks * sizeof *e->block_mark);
        e->mark_gen = 1;
    }
    int used = 0;
    for (int i = 0; i < e->n_seqs; i++) {
        const eng_block_table *bt = &e->seqs[i]->bt;
        for (int k = 0; k < bt->n_blocks; k++)
            if (e->block_mark[bt->ids[k]] != e->mark_gen) {
                e->block_mark[bt->ids[k]] = e->mark_gen;
                used++;
            }
    }
    eng_stats s = {0};
    s.n_running = n_running(e);
    s.n_preempted_total = e->n_preempted_total;
    s.kv_blocks_total = e->n_blocks;
    s.kv_blocks_used = used;
    s.state_slots_total = e->n_slots;
    s.state_slots_used = e->n_slots - e->n_free_slots;
    s.prompt_tokens_total = e->prompt_tokens_total;
    s.generation_tokens_total = e->generation_tokens_total;
    if (e->pc) {
        eng_prefix_cache_stats ps;
        eng_prefix_cache_get_stats(e->pc, &ps);
        s.prefix_cache_queries_tokens = ps.query_tokens;
        s.prefix_cache_hit_tokens = ps.hit_tokens;
    }
    s.prompt_tok_per_s = e->rate_prompt;
    s.decode_tok_per_s = e->rate_gen;
    s.steps_total = e->steps_total;
    pthread_mutex_lock(&e->stats_mu);
    e->stats = s;
    pthread_mutex_unlock(&e->stats_mu);
}

static eng_status run_step(eng_engine *e)
{
    eng_status st = ENG_OK;
    drain_queue(e);
    bool any_cancel = false;
    for (int i = 0; i < e->n_reqs; i++) {
        ereq *r = e->reqs[i];
        if (r->cancelled && !r->failed && r->n_open > 0) {
            cancel_req(e, r);
            any_cancel = true;
        }
    }
    if (any_cancel) retire(e);
    if (e->n_seqs > 0) {
        maybe_reclaim(e);
        if ((st = schedule(e)) != ENG_OK) return st;
        if (e->plan.n_items == 0 && e->plan.n_preempt == 0 && (st = unstick(e)) != ENG_OK) return st;
        if ((st = run_plan(e)) != ENG_OK) return st;
    }
    retire(e);
    update_stats(e);
    return ENG_OK;
}

eng_status eng_step(eng_engine *e, eng_event *out, size_t cap, size_t *n)
{
    if (n) *n = 0;
    if (!e || !n || (cap && !out)) return eng_err_set(ENG_ERR_INVALID, "eng_step: NULL argument");
    eng_status st = ENG_OK;
    if (e->ev_pos >= e->n_ev) {
        e->n_ev = e->ev_pos = 0;
        eng_arena_reset(e);
        st = run_step(e);
        if (st == ENG_OK && e->ev_lost)
            st = eng_err_set(ENG_ERR_NOMEM,
                             "engine: out of memory recording events (some requests lost theirs)");
        e->ev_lost = false;
    }
    size_t k = e->n_ev - e->ev_pos;
    if (k > cap) k = cap;
    if (k) memcpy(out, e->ev + e->ev_pos, k * sizeof *out);
    e->ev_pos += k;
    *n = k;
    atomic_store(&e->busy, e->n_reqs > 0 || e->ev_pos < e->n_ev);
    return st;
}
