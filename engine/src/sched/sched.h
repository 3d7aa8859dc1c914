/* sched/sched.h - the scheduling policy: sequences + limits in, one step's plan out.
 *
 * Design note (nano-vllm Scheduler, vLLM v1 scheduler; docs/style.md rule 8). A pure function: no
 * allocation beyond the plan's own arrays, no device, no locks, no clock. The step loop describes
 * every sequence it holds (eng_sched_seq: counts copied from its block table and state), calls
 * eng_sched_schedule, and executes the plan in this order:
 *   1. release[]: cancelled sequences; free their blocks and slot, emit DONE(cancelled).
 *   2. preempt[]: running sequences to evict: free their blocks and slot, set them WAITING with
 *      nothing computed (they recompute prompt + output later, vLLM's "recompute" preemption).
 *   3. items[]: per item, if `admit` take a state slot, attach the prefix-cache hit the step
 *      loop described (blocks + snapshot restore); eng_block_table_append(n_tokens) (exactly
 *      n_new_blocks blocks, copy-on-write copies run on the device first); then one forward over
 *      all items' tokens; sample the last row of items with `sample`; snapshot the state of
 *      items with `snapshot` (if not cached already).
 * The scheduler counts the blocks and slots that steps 1-2 free, so steps 1-3 always succeed.
 * Choices of an n > 1 request are separate sequences: the step loop forks choices 1..n-1 from
 * choice 0 once its prompt is done (eng_block_table_fork + a state-slot copy), taking their slots
 * from plan.free_state_slots_after; until then they are not described to the scheduler. A
 * fork's shared partial block is copied on its first append, which eng_blocks_needed counts.
 *
 * Policy:
 *   - Token budget max_batch_tokens per step. Decodes first: every running sequence with one
 *     token to run gets it. Then prefill chunks of running sequences that are still prefilling,
 *     then admissions of waiting sequences, each chunk min(remaining, budget left,
 *     max_prefill_chunk). So a long prompt is split across steps and running streams never stall.
 *     Admission also keeps kv_watermark blocks free for the growth of running sequences.
 *   - Running sequences are served by importance: priority (lower first), then admission order.
 *     Waiting ones by priority, then arrival. Admission needs a free state slot, room under
 *     max_running, and the KV blocks of its first chunk; the first waiting sequence that does not
 *     fit stops admission (no overtaking, so priorities and arrival order hold). No admission in a
 *     step that preempted.
 *   - Out of KV blocks for a running sequence: preempt the least important running sequence
 *     (highest priority value, then most recently admitted); that may be the sequence itself, or
 *     one already planned this step (its item is dropped and its budget and blocks returned).
 *   - Prefill chunks end at snapshot points (multiples of snapshot_every within the prompt, and
 *     the prompt end) so the step loop can take the prefix-cache snapshots exactly there.
 */
#ifndef QN_SCHED_SCHED_H
#define QN_SCHED_SCHED_H

#include "qnext/status.h"

#include <stdbool.h>
#include <stdint.h>

typedef enum eng_seq_status {
    ENG_SEQ_WAITING = 0, /* holds no slot and no blocks of its own (new or preempted) */
    ENG_SEQ_RUNNING,     /* holds a state slot and a block table */
} eng_seq_status;

/* What the scheduler needs to know about one sequence (one choice of a request). */
typedef struct eng_sched_seq {
    eng_seq_status status;
    bool cancelled;         /* release it this step */
    int priority;           /* lower runs first (vLLM convention) */
    uint64_t arrival;       /* submission order (the request id): smaller is older */
    uint64_t admitted;      /* RUNNING: admission stamp, larger = more recent */
    int n_tokens_prompt;    /* prompt length (snapshot points) */
    int n_tokens;           /* tokens known now: prompt + generated, >= 1 */
    int n_tokens_computed;  /* RUNNING: positions in its block table (KV and state done);
                             * WAITING: the prefix-cache hit it would start from (0 = none) */
    int n_blocks;           /* RUNNING: blocks in its table; WAITING: blocks of the hit */
    int n_blocks_freeable;  /* RUNNING: blocks freed if it is released (eng_block_table_n_freeable) */
    bool last_block_shared; /* the last block is partial and shared: the next append copies it */
} eng_sched_seq;

typedef struct eng_sched_limits {
    int max_running;          /* sequences holding a state slot, >= 1 */
    int max_batch_tokens;     /* tokens per step, >= 1 */
    int max_prefill_chunk;    /* per prefill chunk; 0 = only the budget limits it */
    int block_size;           /* tokens per KV block, >= 1 */
    int free_kv_blocks;       /* free blocks in the pool now (after any prefix-cache reclaim) */
    int free_state_slots;     /* free recurrent-state slots now */
    int kv_watermark;         /* admissions leave at least this many blocks free (vLLM's watermark) so
                               * running sequences can grow a while before anyone is preempted; 0 = none */
    int snapshot_every;       /* cut prefill chunks at multiples of this within the prompt (0 = off) */
    bool snapshot_prompt_end; /* cut prefill chunks at the prompt end */
} eng_sched_limits;

typedef struct eng_sched_item {
    int seq;          /* index into the seqs array */
    int start;        /* first position (= n_tokens_computed) */
    int n_tokens;     /* positions [start, start + n_tokens) run this step */
    int n_new_blocks; /* blocks the append takes (growth + copy-on-write) */
    bool admit;       /* WAITING -> RUNNING now (slot, attach hit, restore snapshot) */
    bool sample;      /* start + n_tokens == seq's n_tokens: sample its last row */
    bool snapshot;    /* the chunk ends at a snapshot point */
} eng_sched_item;

/* One step's plan. Caller-allocated; eng_sched_plan_init/_free. Arrays are reused across steps. */
typedef struct eng_sched_plan {
    eng_sched_item *items; /* n_items: decodes, running prefill chunks, admissions */
    int n_items;
    int *preempt; /* n_preempt seq indices (RUNNING, not cancelled) */
    int n_preempt;
    int *release; /* n_release seq indices (cancelled) */
    int n_release;
    int n_batch_tokens; /* sum of items' n_tokens (<= max_batch_tokens) */
    int n_decode;       /* items with n_tokens == 1 that sample */
    int n_admit;
    int n_new_blocks;         /* sum of items' n_new_blocks */
    int free_kv_blocks_after; /* what the pool will have after executing the plan */
    int free_state_slots_after;

    int _cap; /* private scratch, sized to the number of seqs */
    int *_order, *_item_of;
    bool *_preempted;
} eng_sched_plan;

/* An empty plan (nothing allocated); eng_sched_schedule grows its arrays as needed. */
void eng_sched_plan_init(eng_sched_plan *plan);
/* Frees the plan's arrays and makes it empty again. NULL-safe. */
void eng_sched_plan_free(eng_sched_plan *plan);

/* Plans one step for seqs[0, n). Overwrites *plan. ENG_ERR_INVALID (bad limits or an
 * inconsistent sequence: detail names its index), ENG_ERR_NOMEM (growing the plan). */
eng_status eng_sched_schedule(const eng_sched_seq *seqs, int n, const eng_sched_limits *lim,
                              eng_sched_plan *plan);

#endif /* QN_SCHED_SCHED_H */
