/* sched/queue.h - the bounded, thread-safe submission queue between callers and the step thread.
 *
 * Design note (h2o's thread-to-loop message queue; docs/style.md anti-pattern 5). eng_submit and
 * eng_cancel may run on any thread; everything else in the engine belongs to the step thread. The
 * two meet only here: callers append records under a mutex and signal a condition variable; the
 * step thread drains all records in FIFO order at the start of a step (or sleeps in
 * eng_queue_wait when idle). Submissions and cancellations share one FIFO, so a cancel can never
 * overtake the submission it refers to.
 *
 * Bound: at most `capacity` requests may be *waiting* (submitted and not yet admitted by the
 * scheduler, whether still in this queue or already drained into the engine's waiting list);
 * beyond that eng_queue_submit fails with ENG_ERR_QUEUE_FULL and the caller backs off (gRPC
 * RESOURCE_EXHAUSTED, HTTP 429). The step thread reports eng_queue_mark_admitted when a request
 * first gets a state slot and eng_queue_mark_finished when it is done, so the queue also knows
 * which ids are live: eng_queue_cancel of an unknown or finished id is ENG_ERR_NOT_FOUND, and a
 * repeated cancel is accepted once (so cancel records are bounded by the live requests).
 *
 * Payloads are opaque (the engine's copied request); the queue owns a submitted payload until it
 * is drained, and frees undrained ones with `free_payload` on destroy.
 */
#ifndef QN_SCHED_QUEUE_H
#define QN_SCHED_QUEUE_H

#include "qnext/status.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct eng_queue eng_queue;

typedef enum eng_queue_kind {
    ENG_QUEUE_SUBMIT = 0, /* a new request: id + payload */
    ENG_QUEUE_CANCEL,     /* cancel request `id` (payload NULL) */
} eng_queue_kind;

typedef struct eng_queue_item {
    eng_queue_kind kind;
    uint64_t id;
    void *payload; /* SUBMIT: now owned by the drainer */
} eng_queue_item;

typedef struct eng_queue_stats {
    int n_pending; /* records in the queue, not drained yet */
    int n_waiting; /* submitted, not admitted yet (what `capacity` bounds) */
    int n_live;    /* submitted, not finished */
    uint64_t n_submitted, n_rejected_full, n_cancels;
} eng_queue_stats;

/* Creates a queue admitting at most `capacity` (>= 1) waiting requests. free_payload (may be
 * NULL) frees payloads left in the queue at destroy. ENG_ERR_INVALID / ENG_ERR_NOMEM. */
eng_status eng_queue_create(int capacity, void (*free_payload)(void *payload), eng_queue **out);

/* Frees undrained payloads and the queue. NULL-safe. No other thread may use the queue. */
void eng_queue_destroy(eng_queue *q);

/* Thread-safe. Appends a request and sets *id (ids are 1, 2, 3, ... in submission order, which is
 * also the scheduler's arrival order). On ENG_OK the queue owns payload; on error the caller
 * keeps it: ENG_ERR_QUEUE_FULL (capacity waiting requests), ENG_ERR_CANCELLED (the queue is
 * closed: shutting down), ENG_ERR_NOMEM. */
eng_status eng_queue_submit(eng_queue *q, void *payload, uint64_t *id);

/* Thread-safe. Queues a cancellation of a live request. ENG_OK (also for a repeated cancel, which
 * adds nothing), ENG_ERR_NOT_FOUND (unknown or finished id), ENG_ERR_NOMEM. Works after close. */
eng_status eng_queue_cancel(eng_queue *q, uint64_t id);

/* Step thread. Moves up to `cap` records, oldest first, into out; returns how many. */
size_t eng_queue_drain(eng_queue *q, eng_queue_item *out, size_t cap);

/* Step thread. The request got its first state slot: it stops counting against capacity.
 * Idempotent; unknown ids are ignored. */
void eng_queue_mark_admitted(eng_queue *q, uint64_t id);

/* Step thread. The request is done (finished, cancelled or failed): later cancels answer
 * ENG_ERR_NOT_FOUND. Unknown ids are ignored. */
void eng_queue_mark_finished(eng_queue *q, uint64_t id);

/* Blocks until a record is pending, the queue is closed, or timeout_ms passes (< 0: no limit).
 * Returns true if records are pending. */
bool eng_queue_wait(eng_queue *q, int timeout_ms);

/* Thread-safe. Stops accepting submissions and wakes waiters. Idempotent. */
void eng_queue_close(eng_queue *q);

/* Thread-safe snapshot of the counters. */
void eng_queue_get_stats(eng_queue *q, eng_queue_stats *out);

#endif /* QN_SCHED_QUEUE_H */
