/* sched/sched.c - eng_sched_schedule: decode-first continuous batching with chunked prefill,
 * priority admission and preemption by recompute (policy in sched.h).
 *
 * Cost: O(n log n) for the two orderings plus O(n) per preemption (victim search).
 */
#include "sched/sched.h"

#include "cache/block_pool.h" /* eng_blocks_needed: the one formula shared with block tables */
#include "core/core.h"        /* eng_realloc, eng_free */

#include <string.h>

typedef struct ctx {
    const eng_sched_seq *seqs;
    const eng_sched_limits *lim;
    eng_sched_plan *plan;
    int *tmp;   /* merge-sort scratch */
    int budget; /* tokens left */
    int free_blocks;
    int free_slots;
} ctx;

/* ==== plan storage ============================================================================ */

void eng_sched_plan_init(eng_sched_plan *plan)
{
    memset(plan, 0, sizeof *plan);
}

void eng_sched_plan_free(eng_sched_plan *plan)
{
    if (!plan) return;
    eng_free(plan->items);
    eng_free(plan->preempt);
    eng_free(plan->release);
    eng_free(plan->_order);
    eng_free(plan->_item_of);
    eng_free(plan->_preempted);
    eng_sched_plan_init(plan);
}

static bool grow(void **p, size_t n, size_t size)
{
    void *q = eng_realloc(*p, n * size);
    if (!q) return false;
    *p = q;
    return true;
}

/* Sizes every array for n seqs (+ n ints of merge scratch at the end of _order). */
static bool plan_reserve(eng_sched_plan *plan, int n)
{
    if (n <= plan->_cap) return true;
    int cap = plan->_cap ? plan->_cap : 16;
    while (cap < n) cap *= 2;
    size_t c = (size_t)cap;
    if (!grow((void **)&plan->items, c, sizeof *plan->items) ||
        !grow((void **)&plan->preempt, c, sizeof(int)) || !grow((void **)&plan->release, c, sizeof(int)) ||
        !grow((void **)&plan->_order, 2 * c, sizeof(int)) ||
        !grow((void **)&plan->_item_of, c, sizeof(int)) || !grow((void **)&plan->_preempted, c, sizeof(bool)))
        return false;
    plan->_cap = cap;
    return true;
}

/* ==== ordering ================================================================================ */

/* Running: priority asc, then admitted asc (most important first). */
static bool before_running(const eng_sched_seq *a, const eng_sched_seq *b)
{
    if (a->priority != b->priority) return a->priority < b->priority;
    return a->admitted < b->admitted;
}

/* Waiting: priority asc, then arrival asc. */
static bool before_waiting(const eng_sched_seq *a, const eng_sched_seq *b)
{
    if (a->priority != b->priority) return a->priority < b->priority;
    return a->arrival < b->arrival;
}

/* Stable bottom-up merge sort of idx[0, n) by `before`. */
static void sort_idx(ctx *c, int *idx, int n, bool (*before)(const eng_sched_seq *, const eng_sched_seq *))
{
    int *src = idx, *dst = c->tmp;
    for (int w = 1; w < n; w *= 2) {
        for (int lo = 0; lo < n; lo += 2 * w) {
            int mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            int i = lo, j = mid, k = lo;
            while (i < mid && j < hi)
                dst[k++] = before(&c->seqs[src[j]], &c->seqs[src[i]]) ? src[j++] : src[i++];
            while (i < mid) dst[k++] = src[i++];
            while (j < hi) dst[k++] = src[j++];
        }
        int *t = src;
        src = dst;
        dst = t;
    }
    if (src != idx) memcpy(idx, src, (size_t)n * sizeof *idx);
}

/* ==== helpers ================================================================================= */

/* Chunk length for seq s starting at its computed position: min(want, cap), cut at the next
 * snapshot point. Sets *snap when the chunk ends on one. */
static int chunk_len(const ctx *c, const eng_sched_seq *s, int want, int cap, bool *snap)
{
    const eng_sched_limits *lim = c->lim;
    int start = s->n_tokens_computed;
    int n = want < cap ? want : cap;
    if (lim->max_prefill_chunk > 0 && n > lim->max_prefill_chunk) n = lim->max_prefill_chunk;
    int end = start + n;
    int P = s->n_tokens_prompt;
    if (lim->snapshot_every > 0 && start < P) {
        int m = (start / lim->snapshot_every + 1) * lim->snapshot_every; /* next multiple > start */
        if (m <= P && m < end) end = m;
    }
    if (lim->snapshot_prompt_end && start < P && P < end) end = P;
    *snap = (start < end && end <= P &&
             ((lim->snapshot_every > 0 && end % lim->snapshot_every == 0) ||
              (lim->snapshot_prompt_end && end == P)));
    return end - start;
}

static int blocks_needed(const ctx *c, const eng_sched_seq *s, int n)
{
    return eng_blocks_needed(c->lim->block_size, s->n_tokens_computed, s->n_blocks, s->last_block_shared, n);
}

static void add_item(ctx *c, int seq, int n, int need, bool admit, bool snap)
{
    eng_sched_plan *p = c->plan;
    const eng_sched_seq *s = &c->seqs[seq];
    eng_sched_item *it = &p->items[p->n_items];
    *it = (eng_sched_item){seq, s->n_tokens_computed, n, need, admit, s->n_tokens_computed + n == s->n_tokens,
                           snap};
    p->_item_of[seq] = p->n_items++;
    c->budget -= n;
    c->free_blocks -= need;
}

/* The least important running sequence not preempted yet (order is most important first). */
static int pick_victim(const ctx *c, const int *order, int n_order)
{
    for (int k = n_order - 1; k >= 0; k--)
        if (!c->plan->_preempted[order[k]]) return order[k];
    return -1;
}

static void preempt(ctx *c, int v)
{
    eng_sched_plan *p = c->plan;
    int it = p->_item_of[v];
    if (it >= 0) { /* planned earlier this step: drop its item */
        c->budget += p->items[it].n_tokens;
        c->free_blocks += p->items[it].n_new_blocks;
        p->items[it].seq = -1;
        p->_item_of[v] = -1;
    }
    p->_preempted[v] = true;
    p->preempt[p->n_preempt++] = v;
    c->free_blocks += c->seqs[v].n_blocks_freeable;
    c->free_slots++;
}

static eng_status check_inputs(const eng_sched_seq *seqs, int n, const eng_sched_limits *lim)
{
    if (!lim || n < 0 || (n > 0 && !seqs)) return eng_err_set(ENG_ERR_INVALID, "sched: bad arguments");
    if (lim->max_running < 1 || lim->max_batch_tokens < 1 || lim->block_size < 1 ||
        lim->max_prefill_chunk < 0 || lim->free_kv_blocks < 0 || lim->free_state_slots < 0 ||
        lim->snapshot_every < 0 || lim->kv_watermark < 0)
        return eng_err_set(ENG_ERR_INVALID,
                           "sched: bad limits (max_running %d, max_batch_tokens %d, block_size %d)",
                           lim->max_running, lim->max_batch_tokens, lim->block_size);
    for (int i = 0; i < n; i++) {
        const eng_sched_seq *s = &seqs[i];
        bool ok = s->n_tokens >= 1 && s->n_tokens_prompt >= 0 && s->n_tokens_computed >= 0 &&
                  s->n_tokens_computed <= s->n_tokens && s->n_blocks >= 0 && s->n_blocks_freeable >= 0 &&
                  s->n_blocks_freeable <= s->n_blocks &&
                  s->n_blocks == eng_blocks_for_tokens(lim->block_size, s->n_tokens_computed) &&
                  (s->status == ENG_SEQ_RUNNING || s->status == ENG_SEQ_WAITING) &&
                  (s->status == ENG_SEQ_RUNNING || s->cancelled || s->n_tokens_computed < s->n_tokens);
        if (!ok)
            return eng_err_set(
                ENG_ERR_INVALID,
                "sched: sequence %d is inconsistent (status %d, tokens %d, computed %d, blocks %d)", i,
                (int)s->status, s->n_tokens, s->n_tokens_computed, s->n_blocks);
    }
    return ENG_OK;
}

/* ==== the policy ============================================================================== */

eng_status eng_sched_schedule(const eng_sched_seq *seqs, int n, const eng_sched_limits *lim,
                              eng_sched_plan *plan)
{
    eng_status rc = check_inputs(seqs, n, lim);
    if (rc != ENG_OK) return rc;
    if (!plan_reserve(plan, n)) return eng_err_set(ENG_ERR_NOMEM, "sched: out of memory for %d sequences", n);

    plan->n_items = plan->n_preempt = plan->n_release = 0;
    plan->n_batch_tokens = plan->n_decode = plan->n_admit = plan->n_new_blocks = 0;
    ctx c = {seqs,
             lim,
             plan,
             plan->_order + plan->_cap,
             lim->max_batch_tokens,
             lim->free_kv_blocks,
             lim->free_state_slots};
    int *order = plan->_order;
    int n_running = 0;

    /* 1. cancellations free their resources for this very step */
    for (int i = 0; i < n; i++) {
        plan->_item_of[i] = -1;
        plan->_preempted[i] = false;
        if (seqs[i].cancelled) {
            plan->release[plan->n_release++] = i;
            if (seqs[i].status == ENG_SEQ_RUNNING) {
                c.free_blocks += seqs[i].n_blocks_freeable;
                c.free_slots++;
            }
        } else if (seqs[i].status == ENG_SEQ_RUNNING) {
            order[n_running++] = i;
        }
    }

    /* 2. running sequences, most important first: decodes, then prefill chunks */
    sort_idx(&c, order, n_running, before_running);
    for (int pass = 0; pass < 2; pass++) {
        for (int k = 0; k < n_running; k++) {
            int i = order[k];
            const eng_sched_seq *s = &seqs[i];
            int want = s->n_tokens - s->n_tokens_computed;
            if (plan->_preempted[i] || want <= 0 || (pass == 0) != (want == 1)) continue;
            if (c.budget == 0) break;
            bool snap;
            int len = chunk_len(&c, s, want, c.budget, &snap);
            for (;;) {
                int need = blocks_needed(&c, s, len);
                if (need <= c.free_blocks) {
                    add_item(&c, i, len, need, false, snap);
                    break;
                }
                int v = pick_victim(&c, order, n_running);
                preempt(&c, v);
                if (v == i) break;
            }
        }
    }

    /* 3. admissions, by priority then arrival, only when nothing was preempted */
    int n_active = n_running - plan->n_preempt;
    if (plan->n_preempt == 0) {
        int n_wait = 0;
        for (int i = 0; i < n; i++)
            if (!seqs[i].cancelled && seqs[i].status == ENG_SEQ_WAITING) order[n_wait++] = i;
        sort_idx(&c, order, n_wait, before_waiting);
        for (int k = 0; k < n_wait; k++) {
            int i = order[k];
            const eng_sched_seq *s = &seqs[i];
            if (n_active >= lim->max_running || c.free_slots == 0 || c.budget == 0) break;
            bool snap;
            int len = chunk_len(&c, s, s->n_tokens - s->n_tokens_computed, c.budget, &snap);
            int need = blocks_needed(&c, s, len);
            if (need + lim->kv_watermark > c.free_blocks) break;
            add_item(&c, i, len, need, true, snap);
            c.free_slots--;
            n_active++;
        }
    }

    /* 4. drop the items of preempted sequences and total up */
    int w = 0;
    for (int k = 0; k < plan->n_items; k++) {
        eng_sched_item *it = &plan->items[k];
        if (it->seq < 0) continue;
        plan->items[w++] = *it;
        plan->n_batch_tokens += it->n_tokens;
        plan->n_new_blocks += it->n_new_blocks;
        plan->n_decode += it->n_tokens == 1 && it->sample;
        plan->n_admit += it->admit;
    }
    plan->n_items = w;
    plan->free_kv_blocks_after = c.free_blocks;
    plan->free_state_slots_after = c.free_slots;
    return ENG_OK;
}
