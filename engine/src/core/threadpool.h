/* core/threadpool.h - a persistent worker pool with a low-overhead blocking parallel-for.
 *
 * The CPU backend runs every op as `eng_threadpool_run(pool, n_tasks, fn, arg)`: task indices
 * 0..n_tasks-1 are handed out dynamically (an atomic counter) to the calling thread plus the
 * workers, and the call returns when all tasks have finished. Which thread runs which task is not
 * fixed, so a task's result must depend only on its index (that is what keeps every kernel's output
 * independent of the thread count and of the batch; see backend/backend.h "batch invariance").
 *
 * Workers spin briefly after each job (a decode step issues hundreds of small jobs back to back)
 * and then sleep on a condition variable, so an idle engine costs no CPU. One job runs at a time:
 * run() must not be called concurrently on the same pool, nor from inside a task.
 */
#ifndef QN_THREADPOOL_H
#define QN_THREADPOOL_H

#include "core/core.h"

typedef struct eng_threadpool eng_threadpool;

/* fn(arg, task, thread): runs task `task`; `thread` is 0..n_threads-1 (0 = the caller), stable for
 * the duration of the call, so it can index per-thread scratch. */
typedef void (*eng_task_fn)(void *arg, int task, int thread);

/* Creates a pool of n_threads threads in total (the caller of run() counts as one, so n_threads-1
 * workers are started). n_threads <= 0 means "all online CPUs". Fails with ENG_ERR_NOMEM or
 * ENG_ERR_INTERNAL (thread creation). */
eng_status eng_threadpool_create(int n_threads, eng_threadpool **out);

/* Stops and joins the workers. NULL-safe. Not while a run() is in progress. */
void eng_threadpool_destroy(eng_threadpool *p);

/* Number of threads including the caller (>= 1). */
int eng_threadpool_size(const eng_threadpool *p);

/* Runs fn for every task index in [0, n_tasks) and returns when all are done. n_tasks <= 0 returns
 * at once; a single task (or a pool of one) runs inline on the caller. Not reentrant. */
void eng_threadpool_run(eng_threadpool *p, int n_tasks, eng_task_fn fn, void *arg);

/* Number of online CPUs (>= 1). */
int eng_cpu_count(void);

#endif /* QN_THREADPOOL_H */
