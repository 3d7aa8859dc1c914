/* tp/group.c - the rank executor (see group.h): worker threads parked on a condition variable,
 * one job (fn, arg) at a time, a generation counter to hand it out, a done counter to collect it.
 */
#include "tp/group.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define DETAIL_MAX 1024

typedef struct worker {
    eng_tp_group *g;
    int rank;
    pthread_t thread;
    bool started;
    /* result of the current job (written by the worker before it counts itself done) */
    eng_status st;
    char detail[DETAIL_MAX];
} worker;

struct eng_tp_group {
    int world;
    int timeout_ms;
    eng_comm_group *comm;
    worker *w; /* [world]; w[0] is rank 0 (no thread) */
    pthread_mutex_t mu;
    pthread_cond_t job_cv;  /* workers wait for gen to change or quit */
    pthread_cond_t done_cv; /* rank 0 waits for n_done */
    unsigned long gen;      /* under mu: job generation */
    int n_done;             /* under mu: workers done with the current job */
    bool quit;              /* under mu */
    eng_tp_fn fn;           /* under mu: the current job */
    void *arg;
    bool lost; /* a worker never returned: its thread may still touch us */
    bool failed;
    eng_status fail_st;
    char fail_detail[DETAIL_MAX];
};

static void *worker_main(void *p)
{
    worker *w = p;
    eng_tp_group *g = w->g;
    unsigned long seen = 0;
    pthread_mutex_lock(&g->mu);
    for (;;) {
        while (g->gen == seen && !g->quit) pthread_cond_wait(&g->job_cv, &g->mu);
        if (g->quit) break;
        seen = g->gen;
        eng_tp_fn fn = g->fn;
        void *arg = g->arg;
        pthread_mutex_unlock(&g->mu);
        eng_err_clear();
        eng_status st = fn(arg, w->rank);
        w->st = st;
        if (st != ENG_OK)
            snprintf(w->detail, sizeof w->detail, "%s", eng_err_last());
        else
            w->detail[0] = '\0';
        pthread_mutex_lock(&g->mu);
        g->n_done++;
        pthread_cond_broadcast(&g->done_cv);
    }
    pthread_mutex_unlock(&g->mu);
    return NULL;
}

eng_status eng_tp_group_create(int world, int timeout_ms, eng_comm_group *comm, eng_tp_group **out)
{
    *out = NULL;
    if (world < 1 || world > 1024)
        return eng_err_set(ENG_ERR_INVALID, "tensor parallel: world size %d is outside [1, 1024]", world);
    eng_tp_group *g = eng_calloc(1, sizeof *g);
    if (!g) return eng_err_set(ENG_ERR_NOMEM, "tensor parallel: out of memory");
    g->w = eng_calloc((size_t)world, sizeof *g->w);
    if (!g->w) {
        eng_free(g);
        return eng_err_set(ENG_ERR_NOMEM, "tensor parallel: out of memory");
    }
    g->world = world;
    g->timeout_ms = timeout_ms > 0 ? timeout_ms : ENG_COMM_DEFAULT_TIMEOUT_MS;
    g->comm = comm;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->job_cv, NULL);
    pthread_cond_init(&g->done_cv, &ca);
    pthread_condattr_destroy(&ca);
    for (int r = 0; r < world; r++) {
        g->w[r].g = g;
        g->w[r].rank = r;
    }
    for (int r = 1; r < world; r++) {
        if (pthread_create(&g->w[r].thread, NULL, worker_main, &g->w[r]) != 0) {
            eng_tp_group_destroy(g);
            return eng_err_set(ENG_ERR_INTERNAL, "tensor parallel: cannot start the thread of rank %d: %s", r,
                               strerror(errno));
        }
        g->w[r].started = true;
    }
    *out = g;
    return ENG_OK;
}

void eng_tp_group_destroy(eng_tp_group *g)
{
    if (!g) return;
    eng_tp_group_quiesce(g);
    pthread_mutex_lock(&g->mu);
    g->quit = true;
    pthread_cond_broadcast(&g->job_cv);
    const bool lost = g->lost;
    pthread_mutex_unlock(&g->mu);
    if (lost) {
        /* a worker is stuck inside a job: joining would hang and freeing would pull memory from
         * under it. Leave it (the process is expected to restart). */
        for (int r = 1; r < g->world; r++)
            if (g->w[r].started) pthread_detach(g->w[r].thread);
        eng_log(ENG_LOG_ERROR, "tensor parallel: a rank never returned from its step; leaking its thread");
        return;
    }
    for (int r = 1; r < g->world; r++)
        if (g->w[r].started) pthread_join(g->w[r].thread, NULL);
    pthread_cond_destroy(&g->job_cv);
    pthread_cond_destroy(&g->done_cv);
    pthread_mutex_destroy(&g->mu);
    eng_free(g->w);
    eng_free(g);
}

int eng_tp_group_world(const eng_tp_group *g)
{
    return g->world;
}

void eng_tp_group_fail(eng_tp_group *g, eng_status st)
{
    if (g->failed) return;
    g->failed = true;
    g->fail_st = st != ENG_OK ? st : ENG_ERR_INTERNAL;
    snprintf(g->fail_detail, sizeof g->fail_detail, "%s", eng_err_last());
}

bool eng_tp_group_failed(const eng_tp_group *g)
{
    return g->failed;
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

/* Waits (under mu) until every worker is done or the deadline passes. true if all are done. */
static bool wait_done(eng_tp_group *g, int ms)
{
    struct timespec dl;
    deadline_after(&dl, ms);
    while (g->n_done < g->world - 1)
        if (pthread_cond_timedwait(&g->done_cv, &g->mu, &dl) == ETIMEDOUT) return g->n_done == g->world - 1;
    return true;
}

eng_status eng_tp_group_status(const eng_tp_group *g)
{
    if (!g->failed) return ENG_OK;
    return eng_err_set(g->fail_st, "the tensor-parallel group failed earlier (%s); reload the model",
                       g->fail_detail);
}

bool eng_tp_group_lost(const eng_tp_group *g)
{
    return g->lost;
}

static bool wait_done(eng_tp_group *g, int ms);

bool eng_tp_group_quiesce(eng_tp_group *g)
{
    if (!g->lost) return true;
    pthread_mutex_lock(&g->mu);
    if (wait_done(g, 3 * g->timeout_ms)) g->lost = false;
    pthread_mutex_unlock(&g->mu);
    return !g->lost;
}

eng_status eng_tp_group_run(eng_tp_group *g, eng_tp_fn fn, void *arg)
{
    if (g->failed) return eng_tp_group_status(g);
    worker *w0 = &g->w[0];
    if (g->world > 1) {
        pthread_mutex_lock(&g->mu);
        g->fn = fn;
        g->arg = arg;
        g->n_done = 0;
        g->gen++;
        pthread_cond_broadcast(&g->job_cv);
        pthread_mutex_unlock(&g->mu);
    }
    eng_status st0 = fn(arg, 0);
    w0->st = st0;
    if (st0 != ENG_OK) snprintf(w0->detail, sizeof w0->detail, "%s", eng_err_last());
    if (g->world == 1) return st0;

    /* a worker waiting in a collective gives up by itself within one timeout: wait two, so that
     * its own, more precise error is the one reported */
    pthread_mutex_lock(&g->mu);
    bool all = wait_done(g, 2 * g->timeout_ms);
    if (!all) {
        pthread_mutex_unlock(&g->mu);
        char why[160];
        snprintf(why, sizeof why, "a rank did not finish its step within %.1f s of rank 0",
                 2 * g->timeout_ms / 1000.0);
        if (g->comm) eng_comm_group_abort(g->comm, why);
        pthread_mutex_lock(&g->mu);
        all = wait_done(g, g->timeout_ms);
    }
    pthread_mutex_unlock(&g->mu);
    if (!all) {
        g->lost = true;
        pthread_mutex_lock(&g->mu);
        const int n_stuck = g->world - 1 - g->n_done;
        pthread_mutex_unlock(&g->mu);
        eng_status st =
            eng_err_set(ENG_ERR_TIMEOUT,
                        "tensor parallel: %d of %d ranks never returned from the step "
                        "(%.1f s after rank 0 finished, then %.1f s after their collectives were aborted)",
                        n_stuck, g->world, 2 * g->timeout_ms / 1000.0, g->timeout_ms / 1000.0);
        eng_tp_group_fail(g, st);
        return st;
    }
    /* compose: root causes (not timeouts) first, then the rest */
    eng_status first = ENG_OK;
    char msg[DETAIL_MAX * 2];
    size_t o = 0;
    msg[0] = '\0';
    for (int pass = 0; pass < 2; pass++)
        for (int r = 0; r < g->world; r++) {
            const worker *w = &g->w[r];
            if (w->st == ENG_OK || (pass == 0) != (w->st != ENG_ERR_TIMEOUT)) continue;
            if (first == ENG_OK) first = w->st;
            if (o + 32 < sizeof msg)
                o += (size_t)snprintf(msg + o, sizeof msg - o, "%srank %d: %s", o ? "; " : "", r, w->detail);
        }
    if (first == ENG_OK) return ENG_OK;
    return eng_err_set(first, "tensor parallel: %s", msg);
}
