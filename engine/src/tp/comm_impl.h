/* tp/comm_impl.h - the collectives vtable behind tp/comm.h (ggml-backend-impl style): what an
 * implementation (comm_cpu.c, nccl/comm_nccl.c) fills in. The generic wrappers in comm.c count
 * calls, apply the fault-injection hook and refuse calls on an aborted group before dispatching.
 */
#ifndef QN_TP_COMM_IMPL_H
#define QN_TP_COMM_IMPL_H

#include "tp/comm.h"

#include <pthread.h>
#include <stdatomic.h>

typedef struct eng_comm_ops {
    const char *name;
    /* Each returns ENG_OK, or an error with the detail set (and the group aborted). */
    eng_status (*all_reduce_sum)(eng_comm *c, float *buf, size_t n);
    eng_status (*all_gather)(eng_comm *c, const void *send, void *recv, size_t bytes);
    eng_status (*broadcast)(eng_comm *c, void *buf, size_t bytes, int root);
    eng_status (*barrier)(eng_comm *c);
    /* Optional (NULL: synchronous endpoints). Whether calls of endpoint c only enqueue on a device
     * stream, and the wait for that stream (tp/comm.h eng_comm_async / eng_comm_wait). */
    bool (*async)(const eng_comm *c);
    eng_status (*wait)(eng_comm *c);
    /* Wakes every waiting rank (the generic part has already recorded the reason). */
    void (*abort)(eng_comm_group *g);
    /* Frees impl state (not the eng_comm_group / endpoints, freed by comm.c). */
    void (*destroy)(eng_comm_group *g);
} eng_comm_ops;

struct eng_comm {
    eng_comm_group *group;
    int rank, world;
    long n_calls;    /* collectives called so far */
    long stop_after; /* fault injection: calls left before this rank stops (-1: off) */
    void *impl;      /* per-rank implementation state */
};

struct eng_comm_group {
    const eng_comm_ops *ops;
    int world;
    int timeout_ms;
    eng_comm *ranks;    /* [world] */
    void *impl;         /* implementation state */
    atomic_int aborted; /* set once; then abort_msg and abort_status are immutable */
    pthread_mutex_t abort_mu;
    eng_status abort_status;
    char abort_msg[768];
};

/* Allocates the group shell and its endpoints (impl fields NULL). */
eng_status eng_comm_group_alloc(const eng_comm_ops *ops, int world, int timeout_ms, eng_comm_group **out);
/* Marks the group aborted with a status and reason (the first one wins) and calls ops->abort.
 * Thread-safe. */
void eng_comm_group_fail(eng_comm_group *g, eng_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Sets this thread's detail to the abort reason and returns the abort status. */
eng_status eng_comm_aborted_error(const eng_comm *c, const char *op);

#endif /* QN_TP_COMM_IMPL_H */
