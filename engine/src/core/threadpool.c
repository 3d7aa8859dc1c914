/* core/threadpool.c - persistent workers and a blocking parallel-for (see threadpool.h).
 *
 * A job is published as one 64-bit atomic ticket: generation (16 bits) | task count (24 bits) |
 * next task index (24 bits). A thread claims task i by a compare-and-swap of the ticket from
 * (g, n, i) to (g, n, i + 1); only after a successful claim does it read the job's function and
 * argument, which stay valid because the job cannot finish while one of its tasks is claimed and
 * not done. The caller claims tasks too and then waits only for the claimed tasks to finish
 * (`done`), never for idle or descheduled workers, which matters on a busy machine.
 * Waiting workers spin for SPIN_ROUNDS polls, then sleep on `cv` (the `sleeping` count tells run()
 * whether it must broadcast; sequentially consistent atomics on both sides mean a worker either
 * sees the new ticket before sleeping or is woken).
 */
#include "core/threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

#define SPIN_ROUNDS 4000
#define TASK_BITS 24
#define TASK_MASK ((1ull << TASK_BITS) - 1)
#define MAX_TASKS ((int)TASK_MASK)

struct eng_threadpool {
    int n_threads;
    pthread_t *threads; /* [n_threads - 1] workers */
    int n_started;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_int sleeping;
    atomic_bool stop;

    atomic_uint_least64_t ticket; /* gen << 48 | n_tasks << 24 | next */
    atomic_int done;              /* tasks of the current job finished */
    unsigned gen;                 /* caller side */
    eng_task_fn fn;               /* written before the ticket is published */
    void *arg;
};

typedef struct worker_arg {
    eng_threadpool *p;
    int id;
} worker_arg;

int eng_cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (int)n;
}

static inline bool claimable(uint64_t t)
{
    return (t & TASK_MASK) < ((t >> TASK_BITS) & TASK_MASK);
}

/* Claims and runs tasks until the current job has none left. */
static void work_on_job(eng_threadpool *p, int id)
{
    uint64_t cur = atomic_load(&p->ticket);
    while (claimable(cur)) {
        if (!atomic_compare_exchange_weak(&p->ticket, &cur, cur + 1)) continue; /* cur reloaded */
        p->fn(p->arg, (int)(cur & TASK_MASK), id);
        atomic_fetch_add(&p->done, 1);
        cur = atomic_load(&p->ticket);
    }
}

static void *worker_main(void *va)
{
    worker_arg wa = *(worker_arg *)va;
    eng_free(va);
    eng_threadpool *p = wa.p;
    for (;;) {
        int spins = 0;
        while (!claimable(atomic_load(&p->ticket)) && !atomic_load(&p->stop)) {
            if (++spins < SPIN_ROUNDS) {
                cpu_relax();
                continue;
            }
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->sleeping, 1);
            while (!claimable(atomic_load(&p->ticket)) && !atomic_load(&p->stop)) pthread_cond_wait(&p->cv, &p->mu);
            atomic_fetch_sub(&p->sleeping, 1);
            pthread_mutex_unlock(&p->mu);
            spins = 0;
        }
        if (atomic_load(&p->stop)) break;
        work_on_job(p, wa.id);
    }
    return NULL;
}

eng_status eng_threadpool_create(int n_threads, eng_threadpool **out)
{
    *out = NULL;
    if (n_threads <= 0) n_threads = eng_cpu_count();
    if (n_threads > 1024) n_threads = 1024;
    eng_threadpool *p = eng_calloc(1, sizeof *p);
    if (!p) return eng_err_set(ENG_ERR_NOMEM, "thread pool: out of memory");
    eng_status st = ENG_OK;
    p->n_threads = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    atomic_init(&p->sleeping, 0);
    atomic_init(&p->stop, false);
    atomic_init(&p->ticket, 0);
    atomic_init(&p->done, 0);
    if (n_threads > 1) {
        p->threads = eng_calloc((size_t)n_threads - 1, sizeof *p->threads);
        if (!p->threads) {
            st = eng_err_set(ENG_ERR_NOMEM, "thread pool: out of memory");
            goto fail;
        }
    }
    for (int i = 1; i < n_threads; i++) {
        worker_arg *wa = eng_malloc(sizeof *wa);
        if (!wa) {
            st = eng_err_set(ENG_ERR_NOMEM, "thread pool: out of memory");
            goto fail;
        }
        wa->p = p;
        wa->id = i;
        if (pthread_create(&p->threads[i - 1], NULL, worker_main, wa) != 0) {
            eng_free(wa);
            st = eng_err_set(ENG_ERR_INTERNAL, "thread pool: cannot start worker %d of %d", i, n_threads - 1);
            goto fail;
        }
        p->n_started++;
    }
    *out = p;
    return ENG_OK;
fail:
    eng_threadpool_destroy(p);
    return st;
}

void eng_threadpool_destroy(eng_threadpool *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, true);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_started; i++) pthread_join(p->threads[i], NULL);
    eng_free(p->threads);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    eng_free(p);
}

int eng_threadpool_size(const eng_threadpool *p)
{
    return p ? p->n_threads : 1;
}

void eng_threadpool_run(eng_threadpool *p, int n_tasks, eng_task_fn fn, void *arg)
{
    if (n_tasks <= 0) return;
    if (!p || p->n_started == 0 || n_tasks == 1) {
        for (int t = 0; t < n_tasks; t++) fn(arg, t, 0);
        return;
    }
    if (n_tasks > MAX_TASKS) {
        fprintf(stderr, "qnext: internal error: thread pool job of %d tasks (max %d)\n", n_tasks, MAX_TASKS);
        abort();
    }
    p->fn = fn;
    p->arg = arg;
    atomic_store(&p->done, 0);
    p->gen = (p->gen + 1) & 0xffff;
    atomic_store(&p->ticket, (uint64_t)p->gen << (2 * TASK_BITS) | (uint64_t)n_tasks << TASK_BITS);
    if (atomic_load(&p->sleeping) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    work_on_job(p, 0);
    int spins = 0;
    while (atomic_load(&p->done) < n_tasks) {
        if (++spins < SPIN_ROUNDS) cpu_relax();
        else sched_yield();
    }
}
