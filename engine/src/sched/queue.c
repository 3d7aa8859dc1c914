/* sched/queue.c - mutex + condvar FIFO of submit/cancel records with a live-id table
 * (see queue.h). The FIFO is a growable ring; the live table is open addressing with linear
 * probing and backward-shift deletion, keyed by request id (ids start at 1; 0 marks empty).
 */
#include "sched/queue.h"

#include "core/core.h" /* eng_malloc, eng_calloc */

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#define LIVE_ADMITTED 1u
#define LIVE_CANCELLED 2u

typedef struct live_slot {
    uint64_t id; /* 0 = empty */
    uint32_t flags;
} live_slot;

struct eng_queue {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int capacity;
    void (*free_payload)(void *);
    bool closed;

    eng_queue_item *ring; /* (ring_cap) records; head at ring_head */
    size_t ring_cap, ring_head, ring_len;

    live_slot *live; /* (live_cap) power of two */
    size_t live_cap, n_live;
    int n_waiting;

    uint64_t next_id;
    uint64_t n_submitted, n_rejected_full, n_cancels;
};

/* ==== live-id table =========================================================================== */

static size_t live_home(const eng_queue *q, uint64_t id)
{
    uint64_t z = id * 0x9E3779B97F4A7C15ull;
    return (size_t)(z >> 17) & (q->live_cap - 1);
}

static live_slot *live_find(eng_queue *q, uint64_t id)
{
    for (size_t i = live_home(q, id);; i = (i + 1) & (q->live_cap - 1)) {
        if (q->live[i].id == id) return &q->live[i];
        if (q->live[i].id == 0) return NULL;
    }
}

/* Inserts an id known to be absent; the table has room (load <= 1/2 kept by live_reserve). */
static void live_put(live_slot *tab, size_t cap, size_t home, uint64_t id, uint32_t flags)
{
    size_t i = home;
    while (tab[i].id) i = (i + 1) & (cap - 1);
    tab[i] = (live_slot){id, flags};
}

static bool live_reserve(eng_queue *q)
{
    if ((q->n_live + 1) * 2 <= q->live_cap) return true;
    size_t cap = q->live_cap * 2;
    live_slot *t = eng_calloc(cap, sizeof *t);
    if (!t) return false;
    live_slot *old = q->live;
    size_t old_cap = q->live_cap;
    q->live = t;
    q->live_cap = cap;
    for (size_t i = 0; i < old_cap; i++)
        if (old[i].id) live_put(t, cap, live_home(q, old[i].id), old[i].id, old[i].flags);
    eng_free(old);
    return true;
}

static void live_remove(eng_queue *q, live_slot *s)
{
    size_t mask = q->live_cap - 1, i = (size_t)(s - q->live), j = i;
    q->live[i].id = 0;
    for (;;) { /* backward shift: move later entries of the probe run into the hole */
        j = (j + 1) & mask;
        if (q->live[j].id == 0) break;
        size_t h = live_home(q, q->live[j].id);
        /* entry j may move to hole i if its home is not in (i, j] (cyclically) */
        bool stay = i <= j ? (h > i && h <= j) : (h > i || h <= j);
        if (stay) continue;
        q->live[i] = q->live[j];
        q->live[j].id = 0;
        i = j;
    }
    q->n_live--;
}

/* ==== ring ==================================================================================== */

static bool ring_push(eng_queue *q, eng_queue_item it)
{
    if (q->ring_len == q->ring_cap) {
        size_t cap = q->ring_cap ? q->ring_cap * 2 : 64;
        eng_queue_item *r = eng_malloc(cap * sizeof *r);
        if (!r) return false;
        for (size_t i = 0; i < q->ring_len; i++) r[i] = q->ring[(q->ring_head + i) % q->ring_cap];
        eng_free(q->ring);
        q->ring = r;
        q->ring_cap = cap;
        q->ring_head = 0;
    }
    q->ring[(q->ring_head + q->ring_len) % q->ring_cap] = it;
    q->ring_len++;
    return true;
}

/* ==== API ===================================================================================== */

eng_status eng_queue_create(int capacity, void (*free_payload)(void *), eng_queue **out)
{
    eng_queue *q = NULL;
    *out = NULL;
    if (capacity < 1) return eng_err_set(ENG_ERR_INVALID, "queue: capacity must be >= 1 (got %d)", capacity);
    q = eng_calloc(1, sizeof *q);
    if (!q) goto fail;
    q->capacity = capacity;
    q->free_payload = free_payload;
    q->next_id = 1;
    q->live_cap = 64;
    q->live = eng_calloc(q->live_cap, sizeof *q->live);
    if (!q->live) goto fail;
    if (pthread_mutex_init(&q->mu, NULL) != 0) goto fail;
    if (pthread_cond_init(&q->cv, NULL) != 0) {
        pthread_mutex_destroy(&q->mu);
        goto fail;
    }
    *out = q;
    return ENG_OK;
fail:
    if (q) eng_free(q->live);
    eng_free(q);
    return eng_err_set(ENG_ERR_NOMEM, "queue: out of memory");
}

void eng_queue_destroy(eng_queue *q)
{
    if (!q) return;
    for (size_t i = 0; i < q->ring_len; i++) {
        eng_queue_item *it = &q->ring[(q->ring_head + i) % q->ring_cap];
        if (it->kind == ENG_QUEUE_SUBMIT && it->payload && q->free_payload) q->free_payload(it->payload);
    }
    eng_free(q->ring);
    eng_free(q->live);
    pthread_cond_destroy(&q->cv);
    pthread_mutex_destroy(&q->mu);
    eng_free(q);
}

eng_status eng_queue_submit(eng_queue *q, void *payload, uint64_t *id)
{
    eng_status rc = ENG_OK;
    pthread_mutex_lock(&q->mu);
    if (q->closed) {
        rc = eng_err_set(ENG_ERR_CANCELLED, "queue: the engine is shutting down");
        goto out;
    }
    if (q->n_waiting >= q->capacity) {
        q->n_rejected_full++;
        rc = eng_err_set(ENG_ERR_QUEUE_FULL, "queue: %d requests are already waiting", q->n_waiting);
        goto out;
    }
    uint64_t nid = q->next_id;
    if (!live_reserve(q) || !ring_push(q, (eng_queue_item){ENG_QUEUE_SUBMIT, nid, payload})) {
        rc = eng_err_set(ENG_ERR_NOMEM, "queue: out of memory");
        goto out;
    }
    live_put(q->live, q->live_cap, live_home(q, nid), nid, 0);
    q->n_live++;
    q->n_waiting++;
    q->next_id++;
    q->n_submitted++;
    *id = nid;
    pthread_cond_broadcast(&q->cv);
out:
    pthread_mutex_unlock(&q->mu);
    return rc;
}

eng_status eng_queue_cancel(eng_queue *q, uint64_t id)
{
    eng_status rc = ENG_OK;
    pthread_mutex_lock(&q->mu);
    live_slot *s = id ? live_find(q, id) : NULL;
    if (!s) {
        rc = eng_err_set(ENG_ERR_NOT_FOUND, "queue: no live request with id %llu", (unsigned long long)id);
        goto out;
    }
    if (s->flags & LIVE_CANCELLED) goto out;
    if (!ring_push(q, (eng_queue_item){ENG_QUEUE_CANCEL, id, NULL})) {
        rc = eng_err_set(ENG_ERR_NOMEM, "queue: out of memory");
        goto out;
    }
    s->flags |= LIVE_CANCELLED;
    q->n_cancels++;
    pthread_cond_broadcast(&q->cv);
out:
    pthread_mutex_unlock(&q->mu);
    return rc;
}

size_t eng_queue_drain(eng_queue *q, eng_queue_item *out, size_t cap)
{
    pthread_mutex_lock(&q->mu);
    size_t n = q->ring_len < cap ? q->ring_len : cap;
    for (size_t i = 0; i < n; i++) out[i] = q->ring[(q->ring_head + i) % q->ring_cap];
    if (n) {
        q->ring_head = (q->ring_head + n) % q->ring_cap;
        q->ring_len -= n;
    }
    pthread_mutex_unlock(&q->mu);
    return n;
}

void eng_queue_mark_admitted(eng_queue *q, uint64_t id)
{
    pthread_mutex_lock(&q->mu);
    live_slot *s = id ? live_find(q, id) : NULL;
    if (s && !(s->flags & LIVE_ADMITTED)) {
        s->flags |= LIVE_ADMITTED;
        q->n_waiting--;
    }
    pthread_mutex_unlock(&q->mu);
}

void eng_queue_mark_finished(eng_queue *q, uint64_t id)
{
    pthread_mutex_lock(&q->mu);
    live_slot *s = id ? live_find(q, id) : NULL;
    if (s) {
        if (!(s->flags & LIVE_ADMITTED)) q->n_waiting--;
        live_remove(q, s);
    }
    pthread_mutex_unlock(&q->mu);
}

bool eng_queue_wait(eng_queue *q, int timeout_ms)
{
    struct timespec dl;
    if (timeout_ms >= 0) {
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_sec += timeout_ms / 1000;
        dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (dl.tv_nsec >= 1000000000L) dl.tv_sec++, dl.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&q->mu);
    while (q->ring_len == 0 && !q->closed) {
        int r =
            timeout_ms >= 0 ? pthread_cond_timedwait(&q->cv, &q->mu, &dl) : pthread_cond_wait(&q->cv, &q->mu);
        if (r == ETIMEDOUT) break;
    }
    bool pending = q->ring_len > 0;
    pthread_mutex_unlock(&q->mu);
    return pending;
}

void eng_queue_close(eng_queue *q)
{
    pthread_mutex_lock(&q->mu);
    q->closed = true;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
}

void eng_queue_get_stats(eng_queue *q, eng_queue_stats *out)
{
    pthread_mutex_lock(&q->mu);
    out->n_pending = (int)q->ring_len;
    out->n_waiting = q->n_waiting;
    out->n_live = (int)q->n_live;
    out->n_submitted = q->n_submitted;
    out->n_rejected_full = q->n_rejected_full;
    out->n_cancels = q->n_cancels;
    pthread_mutex_unlock(&q->mu);
}
