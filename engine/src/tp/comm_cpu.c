/* tp/comm_cpu.c - collectives between threads of one process over shared (host) memory.
 *
 * Every collective is two barrier phases around a copy or reduction:
 *   1. each rank publishes its buffer pointers (and the op and size, to catch mismatches), then
 *      waits until all ranks have;
 *   2. each rank does its share of the work reading the other ranks' buffers directly;
 *   3. a second barrier keeps every buffer alive and unchanged until all ranks are done with it.
 * All-reduce splits the n elements into `world` chunks (64-byte aligned); rank r reduces chunk r:
 * it accumulates b0 += b1, += b2, ... (rank order, so each element is ((b0 + b1) + b2) + ... no
 * matter which rank computes it) and copies the sum into every rank's chunk. Nobody else touches
 * chunk r during phase 2, so all ranks end with the same bits, and the result does not depend on
 * thread timing: reproducible run to run.
 *
 * The barrier spins briefly on an atomic generation counter (collectives come in bursts during a
 * forward, and waking a sleeping thread costs tens of microseconds), then sleeps on a condition
 * variable with a CLOCK_MONOTONIC deadline. A waiter whose deadline passes aborts the group with a
 * detail naming the collective and the ranks that never arrived; the abort wakes every waiter.
 */
#include "tp/comm_impl.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

#define SPIN_ITERS 4000 /* ~10-40 us of pause before sleeping */

typedef enum cop { COP_ALL_REDUCE = 1, COP_ALL_GATHER, COP_BROADCAST, COP_BARRIER } cop;

static const char *cop_name(int op)
{
    switch (op) {
    case COP_ALL_REDUCE:
        return "all_reduce";
    case COP_ALL_GATHER:
        return "all_gather";
    case COP_BROADCAST:
        return "broadcast";
    default:
        return "barrier";
    }
}

/* What a rank published for the current collective (written by the rank before phase 1). */
typedef struct cpu_slot {
    _Alignas(64) int op; /* one cache line per rank */
    size_t size;         /* elements (all_reduce) or bytes */
    int root;
    const void *src;
    void *dst;
    long seq; /* the rank's collective count */
} cpu_slot;

typedef struct cpu_group {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_ullong gen;   /* barrier generation: bumped when the last rank arrives */
    int arrived;         /* under mu */
    unsigned char *here; /* [world] under mu: arrived in the current generation */
    cpu_slot *slots;     /* [world] */
    long *seq;           /* [world] per-rank collective counters (owner thread only) */
} cpu_group;

static cpu_group *grp(const eng_comm *c)
{
    return c->group->impl;
}

static void deadline_after(struct timespec *ts, int ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* Waits until every rank has reached this barrier. `what` names the collective for errors. */
static eng_status barrier_wait(eng_comm *c, const char *what, long seq, int phase)
{
    eng_comm_group *g = c->group;
    cpu_group *cg = grp(c);
    const unsigned long long my = atomic_load(&cg->gen);
    pthread_mutex_lock(&cg->mu);
    if (atomic_load(&g->aborted)) {
        pthread_mutex_unlock(&cg->mu);
        return eng_comm_aborted_error(c, what);
    }
    cg->here[c->rank] = 1;
    if (++cg->arrived == g->world) {
        cg->arrived = 0;
        memset(cg->here, 0, (size_t)g->world);
        atomic_store(&cg->gen, my + 1);
        pthread_cond_broadcast(&cg->cv);
        pthread_mutex_unlock(&cg->mu);
        return ENG_OK;
    }
    pthread_mutex_unlock(&cg->mu);
    for (int i = 0; i < SPIN_ITERS; i++) {
        if (atomic_load(&cg->gen) != my) return ENG_OK;
        if (atomic_load(&g->aborted)) break;
        CPU_RELAX();
    }
    struct timespec dl;
    deadline_after(&dl, g->timeout_ms);
    eng_status st = ENG_OK;
    pthread_mutex_lock(&cg->mu);
    while (atomic_load(&cg->gen) == my && !atomic_load(&g->aborted)) {
        int rc = pthread_cond_timedwait(&cg->cv, &cg->mu, &dl);
        if (rc == ETIMEDOUT && atomic_load(&cg->gen) == my && !atomic_load(&g->aborted)) {
            char missing[256];
            size_t o = 0;
            missing[0] = '\0';
            for (int r = 0; r < g->world && o + 16 < sizeof missing; r++)
                if (!cg->here[r])
                    o += (size_t)snprintf(missing + o, sizeof missing - o, "%s%d", o ? ", " : "", r);
            pthread_mutex_unlock(&cg->mu);
            eng_comm_group_fail(g, ENG_ERR_TIMEOUT,
                                "%s #%ld (phase %d): rank%s %s did not arrive within %.1f s", what, seq,
                                phase, strchr(missing, ',') ? "s" : "", missing, g->timeout_ms / 1000.0);
            eng_err_set(ENG_ERR_TIMEOUT, "collectives (cpu): rank %d: %s", c->rank, g->abort_msg);
            return ENG_ERR_TIMEOUT;
        }
    }
    if (atomic_load(&cg->gen) == my) st = ENG_ERR_TIMEOUT; /* woken by an abort */
    pthread_mutex_unlock(&cg->mu);
    if (st != ENG_OK) return eng_comm_aborted_error(c, what);
    return ENG_OK;
}

/* Phase 1: publish, wait, check that every rank is in the same collective. */
static eng_status publish(eng_comm *c, int op, size_t size, int root, const void *src, void *dst)
{
    cpu_group *cg = grp(c);
    const long seq = ++cg->seq[c->rank];
    cpu_slot *s = &cg->slots[c->rank];
    s->op = op;
    s->size = size;
    s->root = root;
    s->src = src;
    s->dst = dst;
    s->seq = seq;
    eng_status st = barrier_wait(c, cop_name(op), seq, 1);
    if (st != ENG_OK) return st;
    for (int r = 0; r < c->world; r++) {
        const cpu_slot *o = &cg->slots[r];
        if (o->op != op || o->size != size || o->root != root || o->seq != seq) {
            eng_comm_group_fail(c->group, ENG_ERR_INTERNAL,
                                "collective mismatch: rank %d called %s #%ld (size %zu, "
                                "root %d) while rank %d called %s #%ld (size %zu, root %d)",
                                c->rank, cop_name(op), seq, size, root, r, cop_name(o->op), o->seq, o->size,
                                o->root);
            return eng_comm_aborted_error(c, cop_name(op));
        }
    }
    return ENG_OK;
}

static eng_status finish(eng_comm *c, int op)
{
    return barrier_wait(c, cop_name(op), grp(c)->seq[c->rank], 2);
}

/* ==== collectives ============================================================================= */

static eng_status cpu_all_reduce(eng_comm *c, float *buf, size_t n)
{
    eng_status st = publish(c, COP_ALL_REDUCE, n, 0, NULL, buf);
    if (st != ENG_OK) return st;
    cpu_group *cg = grp(c);
    const int W = c->world;
    size_t chunk = (n + (size_t)W - 1) / (size_t)W;
    chunk = (chunk + 15) & ~(size_t)15; /* 64-byte chunks: no false sharing between reducers */
    const size_t lo = (size_t)c->rank * chunk < n ? (size_t)c->rank * chunk : n;
    const size_t hi = lo + chunk < n ? lo + chunk : n;
    if (hi > lo) {
        float *acc = (float *)cg->slots[0].dst + lo;
        const size_t m = hi - lo;
        for (int r = 1; r < W; r++) {
            const float *b = (const float *)cg->slots[r].dst + lo;
            for (size_t i = 0; i < m; i++) acc[i] += b[i];
        }
        for (int r = 1; r < W; r++) memcpy((float *)cg->slots[r].dst + lo, acc, m * sizeof *acc);
    }
    return finish(c, COP_ALL_REDUCE);
}

static eng_status cpu_all_gather(eng_comm *c, const void *send, void *recv, size_t bytes)
{
    eng_status st = publish(c, COP_ALL_GATHER, bytes, 0, send, recv);
    if (st != ENG_OK) return st;
    cpu_group *cg = grp(c);
    for (int r = 0; r < c->world; r++) {
        uint8_t *d = (uint8_t *)recv + (size_t)r * bytes;
        if (bytes && d != cg->slots[r].src) memcpy(d, cg->slots[r].src, bytes);
    }
    return finish(c, COP_ALL_GATHER);
}

static eng_status cpu_broadcast(eng_comm *c, void *buf, size_t bytes, int root)
{
    eng_status st = publish(c, COP_BROADCAST, bytes, root, NULL, buf);
    if (st != ENG_OK) return st;
    cpu_group *cg = grp(c);
    if (c->rank != root && bytes && buf != cg->slots[root].dst) memcpy(buf, cg->slots[root].dst, bytes);
    return finish(c, COP_BROADCAST);
}

static eng_status cpu_barrier(eng_comm *c)
{
    /* two phases like the others: a rank must not publish its next collective while a slower one
     * still checks this one's slots */
    eng_status st = publish(c, COP_BARRIER, 0, 0, NULL, NULL);
    return st != ENG_OK ? st : finish(c, COP_BARRIER);
}

static void cpu_abort(eng_comm_group *g)
{
    cpu_group *cg = g->impl;
    pthread_mutex_lock(&cg->mu);
    pthread_cond_broadcast(&cg->cv);
    pthread_mutex_unlock(&cg->mu);
}

static void cpu_destroy(eng_comm_group *g)
{
    cpu_group *cg = g->impl;
    if (!cg) return;
    pthread_cond_destroy(&cg->cv);
    pthread_mutex_destroy(&cg->mu);
    eng_free(cg->here);
    eng_free_aligned(cg->slots);
    eng_free(cg->seq);
    eng_free(cg);
    g->impl = NULL;
}

static const eng_comm_ops cpu_ops = {
    .name = "cpu",
    .all_reduce_sum = cpu_all_reduce,
    .all_gather = cpu_all_gather,
    .broadcast = cpu_broadcast,
    .barrier = cpu_barrier,
    .abort = cpu_abort,
    .destroy = cpu_destroy,
};

eng_status eng_comm_group_cpu_create(int world, int timeout_ms, eng_comm_group **out)
{
    eng_comm_group *g = NULL;
    eng_status st = eng_comm_group_alloc(&cpu_ops, world, timeout_ms, &g);
    if (st != ENG_OK) return st;
    cpu_group *cg = eng_calloc(1, sizeof *cg);
    if (!cg) goto oom;
    g->impl = cg;
    cg->here = eng_calloc((size_t)world, 1);
    cg->slots = eng_malloc_aligned((size_t)world * sizeof *cg->slots);
    cg->seq = eng_calloc((size_t)world, sizeof *cg->seq);
    if (!cg->here || !cg->slots || !cg->seq) goto oom_partial;
    memset(cg->slots, 0, (size_t)world * sizeof *cg->slots);
    atomic_init(&cg->gen, 0);
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0) goto oom_partial;
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&cg->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (rc != 0) goto oom_partial;
    if (pthread_mutex_init(&cg->mu, NULL) != 0) {
        pthread_cond_destroy(&cg->cv);
        goto oom_partial;
    }
    *out = g;
    return ENG_OK;
oom_partial:
    eng_free(cg->here);
    eng_free_aligned(cg->slots);
    eng_free(cg->seq);
    eng_free(cg);
    g->impl = NULL;
oom:
    eng_comm_group_destroy(g);
    return eng_err_set(ENG_ERR_NOMEM, "collectives (cpu): cannot set up a group of %d ranks", world);
}
