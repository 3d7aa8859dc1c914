/* tests/unit/engine/test_sched.c - sched/sched (+ sched/queue, cache/block_pool at the edges):
 * table-driven scenarios (budget splits, admission order with priorities, no overtaking, slot and
 * max_running limits, preemption choice incl. already-planned victims, cancellation of waiting
 * and running sequences, snapshot cuts, copy-on-write accounting, validation), a long prompt
 * chunked across steps while decodes continue, the submit -> drain -> schedule path with a full
 * queue, and a randomized step-loop simulation that executes every plan against a real block pool
 * and checks the plan's promises (no allocation failure, exact block/slot accounting, decodes
 * never stall, everything finishes).
 */
#include <check.h>

#include "cache/block_pool.h"
#include "core/core.h"
#include "sched/queue.h"
#include "sched/sched.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static eng_sched_plan plan;

static void setup(void)
{
    eng_sched_plan_init(&plan);
}

static void teardown(void)
{
    eng_sched_plan_free(&plan);
}

static eng_sched_limits limits(int bs)
{
    eng_sched_limits l = {.max_running = 8,
                          .max_batch_tokens = 64,
                          .block_size = bs,
                          .free_kv_blocks = 1000,
                          .free_state_slots = 8};
    return l;
}

/* A running sequence whose table holds `computed` positions exclusively. */
static eng_sched_seq running(int prio, uint64_t admitted, int prompt, int tokens, int computed, int bs)
{
    int nb = eng_blocks_for_tokens(bs, computed);
    eng_sched_seq s = {.status = ENG_SEQ_RUNNING,
                       .priority = prio,
                       .arrival = admitted,
                       .admitted = admitted,
                       .n_tokens_prompt = prompt,
                       .n_tokens = tokens,
                       .n_tokens_computed = computed,
                       .n_blocks = nb,
                       .n_blocks_freeable = nb};
    return s;
}

static eng_sched_seq waiting(int prio, uint64_t arrival, int prompt)
{
    eng_sched_seq s = {.status = ENG_SEQ_WAITING,
                       .priority = prio,
                       .arrival = arrival,
                       .n_tokens_prompt = prompt,
                       .n_tokens = prompt};
    return s;
}

static void schedule(const eng_sched_seq *s, int n, const eng_sched_limits *l)
{
    eng_status rc = eng_sched_schedule(s, n, l, &plan);
    ck_assert_msg(rc == ENG_OK, "schedule: %s", eng_err_last());
}

static const eng_sched_item *item_of(int seq)
{
    for (int i = 0; i < plan.n_items; i++)
        if (plan.items[i].seq == seq) return &plan.items[i];
    return NULL;
}

/* ==== budget and order ======================================================================== */

START_TEST(test_budget_split_decode_first)
{
    eng_sched_seq s[4] = {
        running(0, 4, 300, 300, 100, 16), /* prefilling, 200 left */
        running(0, 1, 10, 12, 11, 16),    /* decoding */
        running(0, 2, 10, 15, 14, 16),
        running(0, 3, 10, 11, 10, 16),
    };
    eng_sched_limits l = limits(16);
    schedule(s, 4, &l);
    ck_assert_int_eq(plan.n_items, 4);
    /* decodes first, by admission order, then the prefill chunk with what is left */
    ck_assert_int_eq(plan.items[0].seq, 1);
    ck_assert_int_eq(plan.items[1].seq, 2);
    ck_assert_int_eq(plan.items[2].seq, 3);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(plan.items[i].n_tokens, 1);
        ck_assert(plan.items[i].sample);
        ck_assert(!plan.items[i].admit);
    }
    ck_assert_int_eq(plan.items[3].seq, 0);
    ck_assert_int_eq(plan.items[3].start, 100);
    ck_assert_int_eq(plan.items[3].n_tokens, 61);
    ck_assert(!plan.items[3].sample);
    ck_assert_int_eq(plan.items[3].n_new_blocks, 11 - 7); /* ceil(161/16) - ceil(100/16) */
    ck_assert_int_eq(plan.n_batch_tokens, 64);
    ck_assert_int_eq(plan.n_decode, 3);
    ck_assert_int_eq(plan.n_new_blocks, 4);
    ck_assert_int_eq(plan.free_kv_blocks_after, 996);

    /* with a per-chunk cap the prefill gets 20 */
    l.max_prefill_chunk = 20;
    schedule(s, 4, &l);
    ck_assert_int_eq(item_of(0)->n_tokens, 20);
    ck_assert_int_eq(plan.n_batch_tokens, 23);

    /* a budget smaller than the decodes: the most important ones run */
    l.max_batch_tokens = 2;
    schedule(s, 4, &l);
    ck_assert_int_eq(plan.n_items, 2);
    ck_assert_int_eq(plan.items[0].seq, 1);
    ck_assert_int_eq(plan.items[1].seq, 2);
}
END_TEST

START_TEST(test_admission_order_priorities)
{
    eng_sched_seq s[4] = {
        waiting(1, 1, 10),  /* A: low priority, oldest */
        waiting(0, 3, 10),  /* B */
        waiting(0, 2, 10),  /* C: same priority as B, older */
        waiting(-1, 9, 10), /* D: highest priority, newest */
    };
    eng_sched_limits l = limits(16);
    l.free_state_slots = 3;
    schedule(s, 4, &l);
    ck_assert_int_eq(plan.n_items, 3);
    ck_assert_int_eq(plan.items[0].seq, 3);
    ck_assert_int_eq(plan.items[1].seq, 2);
    ck_assert_int_eq(plan.items[2].seq, 1);
    for (int i = 0; i < 3; i++) {
        ck_assert(plan.items[i].admit);
        ck_assert(plan.items[i].sample); /* whole prompt in one chunk */
        ck_assert_int_eq(plan.items[i].n_tokens, 10);
        ck_assert_int_eq(plan.items[i].n_new_blocks, 1);
    }
    ck_assert_int_eq(plan.n_admit, 3);
    ck_assert_int_eq(plan.free_state_slots_after, 0);

    /* the budget runs out inside the second prompt: it is admitted with a partial chunk */
    l.free_state_slots = 8;
    l.max_batch_tokens = 15;
    schedule(s, 4, &l);
    ck_assert_int_eq(plan.n_items, 2);
    ck_assert_int_eq(plan.items[1].seq, 2);
    ck_assert_int_eq(plan.items[1].n_tokens, 5);
    ck_assert(!plan.items[1].sample);
}
END_TEST

START_TEST(test_no_overtaking)
{
    /* the first waiting prompt does not fit the free blocks: nobody behind it is admitted */
    eng_sched_seq s[2] = {waiting(0, 1, 100), waiting(0, 2, 4)};
    eng_sched_limits l = limits(4);
    l.free_kv_blocks = 10; /* first chunk: 64 tokens = 16 blocks */
    schedule(s, 2, &l);
    ck_assert_int_eq(plan.n_items, 0);
    l.free_kv_blocks = 16;
    schedule(s, 2, &l);
    ck_assert_int_eq(plan.n_items, 1);
    ck_assert_int_eq(plan.items[0].n_tokens, 64);
    ck_assert_int_eq(plan.free_kv_blocks_after, 0);
    /* a watermark keeps blocks back for running sequences */
    l.kv_watermark = 1;
    schedule(s, 2, &l);
    ck_assert_int_eq(plan.n_items, 0);
    l.free_kv_blocks = 17;
    schedule(s, 2, &l);
    ck_assert_int_eq(plan.n_items, 1);
}
END_TEST

START_TEST(test_running_limits)
{
    eng_sched_seq s[3] = {running(0, 1, 5, 6, 5, 16), running(0, 2, 5, 6, 5, 16), waiting(0, 3, 5)};
    eng_sched_limits l = limits(16);
    l.max_running = 2;
    schedule(s, 3, &l);
    ck_assert_int_eq(plan.n_items, 2);
    ck_assert_ptr_null(item_of(2));
    l.max_running = 3;
    l.free_state_slots = 0; /* room under max_running but no state slot */
    schedule(s, 3, &l);
    ck_assert_ptr_null(item_of(2));
    l.free_state_slots = 1;
    schedule(s, 3, &l);
    ck_assert_ptr_nonnull(item_of(2));
    ck_assert(item_of(2)->admit);
}
END_TEST

/* ==== preemption ============================================================================== */

START_TEST(test_preemption_choice)
{
    /* three decodes that each need a new block (8 computed, bs 4) */
    eng_sched_seq s[3] = {
        running(0, 5, 8, 9, 8, 4), /* X */
        running(1, 1, 8, 9, 8, 4), /* Y: lowest priority (oldest admission does not save it) */
        running(0, 9, 8, 9, 8, 4), /* Z: most recently admitted of priority 0 */
    };
    eng_sched_limits l = limits(4);
    l.free_kv_blocks = 1;
    l.free_state_slots = 0;
    schedule(s, 3, &l);
    ck_assert_int_eq(plan.n_preempt, 1);
    ck_assert_int_eq(plan.preempt[0], 1);
    ck_assert_int_eq(plan.n_items, 2);
    ck_assert_int_eq(plan.items[0].seq, 0);
    ck_assert_int_eq(plan.items[1].seq, 2);
    ck_assert_int_eq(plan.free_kv_blocks_after, 1); /* 1 + 2 freed - 2 taken */
    ck_assert_int_eq(plan.free_state_slots_after, 1);

    /* with equal priorities the most recently admitted goes first */
    s[1].priority = 0;
    l.free_kv_blocks = 0;
    schedule(s, 3, &l);
    ck_assert_int_eq(plan.n_preempt, 1);
    ck_assert_int_eq(plan.preempt[0], 2);
    ck_assert_int_eq(plan.n_items, 2);

    /* nothing frees a block (all shared): everyone down to the needer itself is preempted */
    for (int i = 0; i < 3; i++) s[i].n_blocks_freeable = 0;
    schedule(s, 3, &l);
    ck_assert_int_eq(plan.n_preempt, 3);
    ck_assert_int_eq(plan.preempt[0], 2);
    ck_assert_int_eq(plan.preempt[1], 0); /* admitted 5 > 1 */
    ck_assert_int_eq(plan.preempt[2], 1);
    ck_assert_int_eq(plan.n_items, 0);
}
END_TEST

START_TEST(test_preempt_planned_victim)
{
    /* D (low priority) decodes in pass 1; P (high priority) then needs more blocks for its
     * prefill chunk: D is preempted, its item dropped and its token and block returned */
    eng_sched_seq s[2] = {
        running(5, 1, 8, 9, 8, 4),   /* D: needs 1 block */
        running(0, 2, 40, 40, 8, 4), /* P: 32 to prefill = 8 blocks */
    };
    eng_sched_limits l = limits(4);
    l.free_kv_blocks = 8;
    schedule(s, 2, &l);
    ck_assert_int_eq(plan.n_preempt, 1);
    ck_assert_int_eq(plan.preempt[0], 0);
    ck_assert_int_eq(plan.n_items, 1);
    ck_assert_int_eq(plan.items[0].seq, 1);
    ck_assert_int_eq(plan.items[0].n_tokens, 32);
    ck_assert(plan.items[0].sample);
    ck_assert_int_eq(plan.n_batch_tokens, 32);
    ck_assert_int_eq(plan.free_kv_blocks_after, 8 + 2 - 8);
    ck_assert_int_eq(plan.n_decode, 0);
}
END_TEST

START_TEST(test_no_admission_after_preemption)
{
    eng_sched_seq s[3] = {running(0, 1, 8, 9, 8, 4), running(0, 2, 8, 9, 8, 4), waiting(-5, 3, 1)};
    eng_sched_limits l = limits(4);
    l.free_kv_blocks = 1;
    schedule(s, 3, &l);
    ck_assert_int_eq(plan.n_preempt, 1);
    ck_assert_ptr_null(item_of(2));
    l.free_kv_blocks = 3;
    schedule(s, 3, &l);
    ck_assert_int_eq(plan.n_preempt, 0);
    ck_assert_ptr_nonnull(item_of(2));
}
END_TEST

/* ==== cancellation ============================================================================ */

START_TEST(test_cancel_releases_in_the_same_step)
{
    eng_sched_seq s[3] = {running(0, 1, 20, 21, 20, 4), waiting(0, 2, 20), waiting(0, 3, 4)};
    s[0].cancelled = true;
    s[2].cancelled = true;
    eng_sched_limits l = limits(4);
    l.free_kv_blocks = 0;
    l.free_state_slots = 0;
    schedule(s, 3, &l);
    ck_assert_int_eq(plan.n_release, 2);
    ck_assert_int_eq(plan.release[0], 0);
    ck_assert_int_eq(plan.release[1], 2);
    ck_assert_ptr_null(item_of(0));
    ck_assert_ptr_null(item_of(2));
    /* the running one's 5 blocks and slot admit the waiting one right away */
    ck_assert_ptr_nonnull(item_of(1));
    ck_assert(item_of(1)->admit);
    ck_assert_int_eq(item_of(1)->n_new_blocks, 5);
    ck_assert_int_eq(plan.free_kv_blocks_after, 0);
    ck_assert_int_eq(plan.free_state_slots_after, 0);

    /* a cancelled running sequence whose blocks are shared frees only its slot */
    s[0].n_blocks_freeable = 2;
    schedule(s, 3, &l);
    ck_assert_ptr_null(item_of(1));
    ck_assert_int_eq(plan.free_kv_blocks_after, 2);
    ck_assert_int_eq(plan.free_state_slots_after, 1);
}
END_TEST

/* ==== snapshots and prefix hits =============================================================== */

START_TEST(test_snapshot_cuts)
{
    eng_sched_seq s = waiting(0, 1, 200);
    eng_sched_limits l = limits(16);
    l.max_batch_tokens = 1000;
    l.snapshot_every = 64;
    l.snapshot_prompt_end = true;
    int ends[4] = {64, 128, 192, 200};
    for (int step = 0; step < 4; step++) {
        schedule(&s, 1, &l);
        ck_assert_int_eq(plan.n_items, 1);
        const eng_sched_item *it = &plan.items[0];
        ck_assert_int_eq(it->start + it->n_tokens, ends[step]);
        ck_assert(it->snapshot);
        ck_assert_int_eq(it->sample, step == 3);
        ck_assert_int_eq(it->admit, step == 0);
        s.status = ENG_SEQ_RUNNING;
        s.n_tokens_computed = ends[step];
        s.n_blocks = s.n_blocks_freeable = eng_blocks_for_tokens(16, ends[step]);
    }
    /* decoding after the prompt: no snapshots */
    s.n_tokens = 201;
    schedule(&s, 1, &l);
    ck_assert(!plan.items[0].snapshot);

    /* a chunk cap smaller than the period: cut at the cap, then at the multiple */
    eng_sched_seq w = waiting(0, 1, 200);
    l.max_prefill_chunk = 50;
    schedule(&w, 1, &l);
    ck_assert_int_eq(plan.items[0].n_tokens, 50);
    ck_assert(!plan.items[0].snapshot);
    w.status = ENG_SEQ_RUNNING;
    w.n_tokens_computed = 50;
    w.n_blocks = w.n_blocks_freeable = 4;
    schedule(&w, 1, &l);
    ck_assert_int_eq(plan.items[0].n_tokens, 14);
    ck_assert(plan.items[0].snapshot);

    /* only the prompt end */
    eng_sched_seq v = waiting(0, 1, 200);
    l.max_prefill_chunk = 0;
    l.snapshot_every = 0;
    schedule(&v, 1, &l);
    ck_assert_int_eq(plan.items[0].n_tokens, 200);
    ck_assert(plan.items[0].snapshot);
    l.snapshot_prompt_end = false;
    schedule(&v, 1, &l);
    ck_assert(!plan.items[0].snapshot);
}
END_TEST

START_TEST(test_prefix_hit_and_cow)
{
    /* a waiting sequence with a 70-token prefix hit (5 blocks, the last partial and shared) */
    eng_sched_seq s = waiting(0, 1, 200);
    s.n_tokens_computed = 70;
    s.n_blocks = 5;
    s.last_block_shared = true;
    eng_sched_limits l = limits(16);
    l.max_batch_tokens = 1000;
    l.snapshot_every = 64;
    schedule(&s, 1, &l);
    ck_assert_int_eq(plan.n_items, 1);
    ck_assert_int_eq(plan.items[0].start, 70);
    ck_assert_int_eq(plan.items[0].n_tokens, 58);            /* up to the snapshot at 128 */
    ck_assert_int_eq(plan.items[0].n_new_blocks, 8 - 5 + 1); /* growth + copy-on-write */
    l.free_kv_blocks = 3;
    schedule(&s, 1, &l);
    ck_assert_int_eq(plan.n_items, 0);
}
END_TEST

START_TEST(test_validation)
{
    eng_sched_seq s = waiting(0, 1, 10);
    eng_sched_limits l = limits(16);
    schedule(&s, 0, &l);
    ck_assert_int_eq(plan.n_items, 0);
    eng_sched_limits b = l;
    b.max_running = 0;
    ck_assert_int_eq(eng_sched_schedule(&s, 1, &b, &plan), ENG_ERR_INVALID);
    b = l;
    b.max_batch_tokens = 0;
    ck_assert_int_eq(eng_sched_schedule(&s, 1, &b, &plan), ENG_ERR_INVALID);
    b = l;
    b.block_size = 0;
    ck_assert_int_eq(eng_sched_schedule(&s, 1, &b, &plan), ENG_ERR_INVALID);
    b = l;
    b.free_kv_blocks = -1;
    ck_assert_int_eq(eng_sched_schedule(&s, 1, &b, &plan), ENG_ERR_INVALID);
    ck_assert_int_eq(eng_sched_schedule(NULL, 1, &l, &plan), ENG_ERR_INVALID);
    eng_sched_seq bad = s;
    bad.n_tokens = 0;
    ck_assert_int_eq(eng_sched_schedule(&bad, 1, &l, &plan), ENG_ERR_INVALID);
    bad = s;
    bad.n_tokens_computed = 10; /* waiting with nothing to run */
    bad.n_blocks = 1;
    ck_assert_int_eq(eng_sched_schedule(&bad, 1, &l, &plan), ENG_ERR_INVALID);
    bad = running(0, 1, 10, 11, 10, 16);
    bad.n_blocks = 2; /* inconsistent with 10 computed tokens */
    ck_assert_int_eq(eng_sched_schedule(&bad, 1, &l, &plan), ENG_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(eng_err_last(), "sequence 0"));
    bad = running(0, 1, 10, 11, 10, 16);
    bad.n_blocks_freeable = 2;
    ck_assert_int_eq(eng_sched_schedule(&bad, 1, &l, &plan), ENG_ERR_INVALID);
    /* a running sequence with nothing to run is simply skipped */
    eng_sched_seq idle = running(0, 1, 10, 10, 10, 16);
    schedule(&idle, 1, &l);
    ck_assert_int_eq(plan.n_items, 0);
    /* plan growth failure */
    eng_sched_plan p2;
    eng_sched_plan_init(&p2);
    eng_alloc_fail_after(0);
    eng_status rc = eng_sched_schedule(&s, 1, &l, &p2);
    eng_alloc_fail_after(-1);
    ck_assert_int_eq(rc, ENG_ERR_NOMEM);
    eng_sched_plan_free(&p2);
    eng_sched_plan_free(NULL);
}
END_TEST

/* ==== step-loop simulation ==================================================================== */

typedef struct sim_seq {
    eng_sched_seq d; /* what the scheduler sees */
    eng_block_table t;
    int max_new, generated;
    bool live, cancel_req;
    int n_tokens_run; /* forward tokens spent on it (recompute included) */
} sim_seq;

typedef struct sim {
    eng_block_pool *pool;
    int slots_free;
    uint64_t stamp;
    sim_seq *seqs;
    int n_seqs;
    eng_sched_limits lim;
    int n_preemptions, n_finished, n_cancelled;
} sim;

static void sim_release(sim *m, sim_seq *x)
{
    if (x->d.status == ENG_SEQ_RUNNING) m->slots_free++;
    eng_block_table_free(&x->t, m->pool);
    x->live = false;
}

/* One step: describe, schedule, execute. Returns the plan's token count. Checks the promises. */
static int sim_step(sim *m, int *idx)
{
    eng_sched_seq *d = malloc((size_t)(m->n_seqs + 1) * sizeof *d);
    int n = 0;
    for (int i = 0; i < m->n_seqs; i++) {
        sim_seq *x = &m->seqs[i];
        if (!x->live) continue;
        x->d.cancelled = x->cancel_req;
        x->d.n_blocks = x->t.n_blocks;
        x->d.n_blocks_freeable = eng_block_table_n_freeable(&x->t, m->pool);
        x->d.last_block_shared = eng_block_table_last_shared(&x->t, m->pool);
        if (x->d.status == ENG_SEQ_RUNNING) ck_assert_int_eq(x->d.n_tokens_computed, x->t.n_tokens);
        idx[n] = i;
        d[n++] = x->d;
    }
    eng_sched_limits l = m->lim;
    l.free_kv_blocks = eng_block_pool_n_free(m->pool);
    l.free_state_slots = m->slots_free;
    schedule(d, n, &l);
    ck_assert_int_le(plan.n_batch_tokens, l.max_batch_tokens);

    /* 1. releases, 2. preemptions */
    for (int k = 0; k < plan.n_release; k++) {
        sim_seq *x = &m->seqs[idx[plan.release[k]]];
        ck_assert(x->cancel_req);
        sim_release(m, x);
        m->n_cancelled++;
    }
    bool *preempted = calloc((size_t)n + 1, sizeof *preempted);
    for (int k = 0; k < plan.n_preempt; k++) {
        sim_seq *x = &m->seqs[idx[plan.preempt[k]]];
        ck_assert_int_eq(x->d.status, ENG_SEQ_RUNNING);
        eng_block_table_free(&x->t, m->pool);
        m->slots_free++;
        x->d.status = ENG_SEQ_WAITING;
        x->d.n_tokens_computed = 0;
        preempted[plan.preempt[k]] = true;
        m->n_preemptions++;
    }
    /* every running decode that was not preempted or cancelled got its token */
    for (int j = 0; j < n; j++)
        if (d[j].status == ENG_SEQ_RUNNING && !d[j].cancelled && !preempted[j] &&
            d[j].n_tokens - d[j].n_tokens_computed == 1)
            ck_assert_msg(item_of(j) != NULL, "decode of seq %d stalled", j);
    /* 3. items: the block reservations must all succeed */
    int running_now = 0;
    for (int k = 0; k < plan.n_items; k++) {
        const eng_sched_item *it = &plan.items[k];
        sim_seq *x = &m->seqs[idx[it->seq]];
        ck_assert(!preempted[it->seq]);
        if (it->admit) {
            ck_assert_int_eq(x->d.status, ENG_SEQ_WAITING);
            ck_assert_int_gt(m->slots_free, 0);
            m->slots_free--;
            x->d.status = ENG_SEQ_RUNNING;
            x->d.admitted = ++m->stamp;
        }
        ck_assert_int_eq(x->d.status, ENG_SEQ_RUNNING);
        ck_assert_int_eq(it->start, x->d.n_tokens_computed);
        ck_assert_int_eq(eng_block_table_blocks_needed(&x->t, m->pool, it->n_tokens), it->n_new_blocks);
        eng_block_copy cp;
        bool copied;
        ck_assert_int_eq(eng_block_table_append(&x->t, m->pool, it->n_tokens, &cp, &copied), ENG_OK);
        x->d.n_tokens_computed += it->n_tokens;
        x->n_tokens_run += it->n_tokens;
        ck_assert_int_eq(it->sample, x->d.n_tokens_computed == x->d.n_tokens);
    }
    ck_assert_int_eq(eng_block_pool_n_free(m->pool), plan.free_kv_blocks_after);
    ck_assert_int_eq(m->slots_free, plan.free_state_slots_after);
    for (int i = 0; i < m->n_seqs; i++)
        running_now += m->seqs[i].live && m->seqs[i].d.status == ENG_SEQ_RUNNING;
    ck_assert_int_le(running_now, l.max_running);

    /* sample: append the new token; retire finished sequences */
    for (int k = 0; k < plan.n_items; k++) {
        const eng_sched_item *it = &plan.items[k];
        sim_seq *x = &m->seqs[idx[it->seq]];
        if (!it->sample) continue;
        x->generated++;
        x->d.n_tokens++;
        if (x->generated == x->max_new) {
            sim_release(m, x);
            m->n_finished++;
        }
    }
    int tokens = plan.n_batch_tokens;
    free(preempted);
    free(d);
    return tokens;
}

START_TEST(test_long_prompt_chunked_while_decoding)
{
    sim m = {0};
    ck_assert_int_eq(eng_block_pool_create(256, 16, &m.pool), ENG_OK);
    m.slots_free = 4;
    m.lim = (eng_sched_limits){.max_running = 4, .max_batch_tokens = 128, .block_size = 16};
    m.seqs = calloc(3, sizeof *m.seqs);
    m.n_seqs = 3;
    int idx[3];
    /* two short requests start decoding; then a 1000-token prompt arrives */
    for (int i = 0; i < 3; i++) {
        sim_seq *x = &m.seqs[i];
        int prompt = i < 2 ? 20 : 1000;
        x->d = waiting(0, (uint64_t)i + 1, prompt);
        x->max_new = i < 2 ? 100 : 5;
        x->live = i < 2;
        eng_block_table_init(&x->t);
    }
    sim_step(&m, idx);
    ck_assert_int_eq(m.seqs[0].generated, 1);
    ck_assert_int_eq(m.seqs[1].generated, 1);
    m.seqs[2].live = true;
    int steps = 0, gen0 = m.seqs[0].generated;
    while (m.seqs[2].generated == 0) {
        sim_step(&m, idx);
        steps++;
        /* the running streams get a token every single step */
        ck_assert_int_eq(m.seqs[0].generated, gen0 + steps);
        ck_assert_int_eq(m.seqs[1].generated, gen0 + steps);
    }
    ck_assert_int_eq(steps, 8); /* 1000 tokens at 126 per step */
    ck_assert_int_eq(m.seqs[2].n_tokens_run, 1000);
    for (int i = 0; i < 3; i++) eng_block_table_free(&m.seqs[i].t, m.pool);
    free(m.seqs);
    eng_block_pool_destroy(m.pool);
}
END_TEST

static uint32_t rnd(uint64_t *x)
{
    *x ^= *x << 13, *x ^= *x >> 7, *x ^= *x << 17;
    return (uint32_t)(*x >> 32);
}

START_TEST(test_random_step_loop)
{
    const int N = 400;
    for (uint64_t seed = 1; seed <= 4; seed++) {
        sim m = {0};
        ck_assert_int_eq(eng_block_pool_create(40, 16, &m.pool), ENG_OK);
        m.slots_free = 6;
        m.lim = (eng_sched_limits){.max_running = 6,
                                   .max_batch_tokens = 96,
                                   .block_size = 16,
                                   .max_prefill_chunk = seed % 2 ? 48 : 0,
                                   .snapshot_every = seed % 3 ? 32 : 0,
                                   .snapshot_prompt_end = true,
                                   .kv_watermark = (int)(seed % 2) * 4};
        m.seqs = calloc((size_t)N, sizeof *m.seqs);
        int *idx = malloc((size_t)N * sizeof *idx);
        uint64_t x = seed * 0x9E3779B97F4A7C15ull;
        int arrived = 0, step = 0;
        while ((arrived < N || m.n_finished + m.n_cancelled < N) && step < 20000) {
            /* arrivals for a while, random cancels */
            for (int a = 0; a < 2 && arrived < N; a++)
                if (rnd(&x) % 3 == 0) {
                    sim_seq *q = &m.seqs[arrived];
                    q->d = waiting((int)(rnd(&x) % 3), (uint64_t)arrived + 1, 1 + (int)(rnd(&x) % 300));
                    q->max_new = 1 + (int)(rnd(&x) % 40);
                    q->live = true;
                    eng_block_table_init(&q->t);
                    m.n_seqs = ++arrived;
                }
            for (int i = 0; i < m.n_seqs; i++)
                if (m.seqs[i].live && !m.seqs[i].cancel_req && rnd(&x) % 20000 == 0)
                    m.seqs[i].cancel_req = true;
            sim_step(&m, idx);
            step++;
        }
        ck_assert_msg(m.n_finished + m.n_cancelled == N,
                      "seed %llu: %d finished + %d cancelled of %d after %d steps", (unsigned long long)seed,
                      m.n_finished, m.n_cancelled, N, step);
        ck_assert_int_eq(eng_block_pool_n_free(m.pool), 40);
        ck_assert_int_eq(m.slots_free, 6);
        ck_assert_int_gt(m.n_preemptions, 0); /* the pool is small enough to force some */
        printf("sched sim seed %llu: %d steps, %d finished, %d cancelled, %d preemptions\n",
               (unsigned long long)seed, step, m.n_finished, m.n_cancelled, m.n_preemptions);
        free(idx);
        free(m.seqs);
        eng_block_pool_destroy(m.pool);
    }
}
END_TEST

/* ==== queue -> scheduler ====================================================================== */

START_TEST(test_queue_full_then_admission_frees_room)
{
    eng_queue *q;
    ck_assert_int_eq(eng_queue_create(3, NULL, &q), ENG_OK);
    static int payload;
    uint64_t ids[4];
    for (int i = 0; i < 3; i++) ck_assert_int_eq(eng_queue_submit(q, &payload, &ids[i]), ENG_OK);
    ck_assert_int_eq(eng_queue_submit(q, &payload, &ids[3]), ENG_ERR_QUEUE_FULL);

    /* the step thread drains into waiting sequences and schedules with 2 free slots */
    eng_queue_item it[8];
    size_t n = eng_queue_drain(q, it, 8);
    ck_assert_uint_eq(n, 3);
    eng_sched_seq s[3];
    for (size_t i = 0; i < n; i++) s[i] = waiting(0, it[i].id, 8);
    eng_sched_limits l = limits(16);
    l.free_state_slots = 2;
    schedule(s, 3, &l);
    ck_assert_int_eq(plan.n_admit, 2);
    for (int k = 0; k < plan.n_items; k++) {
        eng_queue_mark_admitted(q, s[plan.items[k].seq].arrival);
        s[plan.items[k].seq].status = ENG_SEQ_RUNNING;
        s[plan.items[k].seq].n_tokens_computed = 8;
        s[plan.items[k].seq].n_tokens = 9;
        s[plan.items[k].seq].n_blocks = s[plan.items[k].seq].n_blocks_freeable = 1;
        s[plan.items[k].seq].admitted = (uint64_t)k + 1;
    }
    ck_assert_int_eq(eng_queue_submit(q, &payload, &ids[3]), ENG_OK); /* two places freed */

    /* cancel the running request 1: it comes through the queue and is released next step */
    ck_assert_int_eq(eng_queue_cancel(q, ids[0]), ENG_OK);
    n = eng_queue_drain(q, it, 8);
    ck_assert_uint_eq(n, 2);
    ck_assert_int_eq(it[1].kind, ENG_QUEUE_CANCEL);
    for (int i = 0; i < 3; i++)
        if (s[i].arrival == it[1].id) s[i].cancelled = true;
    l.free_state_slots = 0;
    schedule(s, 3, &l);
    ck_assert_int_eq(plan.n_release, 1);
    ck_assert_uint_eq(s[plan.release[0]].arrival, ids[0]);
    ck_assert_ptr_nonnull(item_of(2)); /* its slot goes to the third request at once */
    ck_assert(item_of(2)->admit);
    eng_queue_mark_finished(q, ids[0]);
    ck_assert_int_eq(eng_queue_cancel(q, ids[0]), ENG_ERR_NOT_FOUND);
    eng_queue_destroy(q);
}
END_TEST

/* ==== registry ================================================================================ */

static Suite *sched_suite(void)
{
    Suite *s = suite_create("sched");
    TCase *tc = tcase_create("scenarios");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_budget_split_decode_first);
    tcase_add_test(tc, test_admission_order_priorities);
    tcase_add_test(tc, test_no_overtaking);
    tcase_add_test(tc, test_running_limits);
    tcase_add_test(tc, test_preemption_choice);
    tcase_add_test(tc, test_preempt_planned_victim);
    tcase_add_test(tc, test_no_admission_after_preemption);
    tcase_add_test(tc, test_cancel_releases_in_the_same_step);
    tcase_add_test(tc, test_snapshot_cuts);
    tcase_add_test(tc, test_prefix_hit_and_cow);
    tcase_add_test(tc, test_validation);
    suite_add_tcase(s, tc);

    tc = tcase_create("step_loop");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_long_prompt_chunked_while_decoding);
    tcase_add_test(tc, test_random_step_loop);
    tcase_add_test(tc, test_queue_full_then_admission_frees_room);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(sched_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
