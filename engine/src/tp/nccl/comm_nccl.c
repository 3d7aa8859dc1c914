/* tp/nccl/comm_nccl.c - collectives over NCCL (see comm_nccl.h). Host code only (C11); links the
 * CUDA runtime and libnccl.
 *
 * Two modes per rank: with its own stream (made here; every call enqueues there and polls it to
 * completion, so the caller must have synchronised its compute stream first), or bound to the
 * caller's stream (eng_comm_nccl_bind_stream: the CUDA backend's stream). Bound, a call enqueues the
 * collective behind the compute work already on that stream and returns; eng_comm_wait polls the
 * stream where the host needs a result. Either way every host wait polls (cudaStreamQuery,
 * ncclCommGetAsyncError, the group's abort flag) against the group's deadline, never blocks in the
 * driver, and a timed-out rank aborts its communicator.
 * The communicators are non-blocking, so an NCCL call may return ncclInProgress before its work is
 * on the stream: the call then polls ncclCommGetAsyncError until the enqueue finished (a host wait
 * for the enqueue, not for the result) so that work queued after it on a bound stream is ordered
 * behind the collective, and the next NCCL call on the communicator is allowed.
 */
#include "tp/nccl/comm_nccl.h"
#include "tp/comm_impl.h"

#include <cuda_runtime.h>
#include <nccl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

typedef struct nccl_rank {
    int device;
    ncclComm_t comm;     /* NULL until initialised */
    cudaStream_t own;    /* this rank's own stream (NULL until created) */
    cudaStream_t stream; /* where collectives go: `own`, or the bound caller's stream (not owned) */
    bool bound;          /* stream is the caller's (eng_comm_nccl_bind_stream) */
    float *d_scratch;    /* device [1]: the barrier's all-reduce */
    bool aborted;        /* ncclCommAbort was called on comm */
} nccl_rank;

typedef struct nccl_group {
    nccl_rank *r; /* [world] */
} nccl_group;

static nccl_rank *rk(const eng_comm *c)
{
    return &((nccl_group *)c->group->impl)->r[c->rank];
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void pause_us(long us)
{
    struct timespec ts = {0, us * 1000L};
    nanosleep(&ts, NULL);
}

static void abort_comm(nccl_rank *r)
{
    if (r->comm && !r->aborted) {
        ncclCommAbort(r->comm);
        r->aborted = true;
    }
}

/* Fails the group with a CUDA or NCCL error and aborts this rank's communicator. */
static eng_status device_error(eng_comm *c, const char *op, const char *lib, const char *text)
{
    eng_comm_group_fail(c->group, ENG_ERR_DEVICE, "%s on rank %d (GPU %d): %s: %s", op, c->rank,
                        rk(c)->device, lib, text);
    abort_comm(rk(c));
    return eng_comm_aborted_error(c, op);
}

/* Polls until the rank's stream has finished the enqueued collective, an error, an abort, or the
 * deadline. */
static eng_status wait_stream(eng_comm *c, const char *op)
{
    nccl_rank *r = rk(c);
    eng_comm_group *g = c->group;
    const double deadline = now_s() + g->timeout_ms / 1000.0;
    for (long spins = 0;; spins++) {
        cudaError_t ce = cudaStreamQuery(r->stream);
        if (ce == cudaSuccess) return ENG_OK;
        if (ce != cudaErrorNotReady) return device_error(c, op, "CUDA", cudaGetErrorString(ce));
        ncclResult_t ae = ncclSuccess;
        ncclCommGetAsyncError(r->comm, &ae);
        if (ae != ncclSuccess && ae != ncclInProgress)
            return device_error(c, op, "NCCL", ncclGetErrorString(ae));
        if (atomic_load(&g->aborted)) {
            abort_comm(r);
            return eng_comm_aborted_error(c, op);
        }
        if (now_s() > deadline) {
            eng_comm_group_fail(g, ENG_ERR_TIMEOUT,
                                "%s #%ld on rank %d (GPU %d) did not complete within %.1f s (a rank "
                                "did not join)",
                                op, c->n_calls, c->rank, r->device, g->timeout_ms / 1000.0);
            abort_comm(r);
            return eng_err_set(ENG_ERR_TIMEOUT, "collectives (nccl): %s", g->abort_msg);
        }
        if (spins > 1000) pause_us(20);
    }
}

/* A non-blocking communicator returned ncclInProgress: polls until the operation is on the stream
 * (ncclCommGetAsyncError leaves ncclInProgress), an error, an abort, or the deadline. */
static eng_status wait_enqueue(eng_comm *c, const char *op)
{
    nccl_rank *r = rk(c);
    eng_comm_group *g = c->group;
    const double deadline = now_s() + g->timeout_ms / 1000.0;
    for (long spins = 0;; spins++) {
        ncclResult_t ae = ncclInProgress;
        ncclCommGetAsyncError(r->comm, &ae);
        if (ae == ncclSuccess) return ENG_OK;
        if (ae != ncclInProgress) return device_error(c, op, "NCCL", ncclGetErrorString(ae));
        if (atomic_load(&g->aborted)) {
            abort_comm(r);
            return eng_comm_aborted_error(c, op);
        }
        if (now_s() > deadline) {
            eng_comm_group_fail(g, ENG_ERR_TIMEOUT,
                                "%s #%ld on rank %d (GPU %d) was not enqueued within %.1f s", op, c->n_calls,
                                c->rank, r->device, g->timeout_ms / 1000.0);
            abort_comm(r);
            return eng_err_set(ENG_ERR_TIMEOUT, "collectives (nccl): %s", g->abort_msg);
        }
        if (spins > 1000) pause_us(20);
    }
}

/* Enqueue result check (ncclInProgress is normal for a non-blocking communicator: wait for the
 * enqueue), then on an own-stream rank the wait for completion; a bound rank returns at once. */
static eng_status enqueued(eng_comm *c, const char *op, ncclResult_t res)
{
    if (res != ncclSuccess && res != ncclInProgress)
        return device_error(c, op, "NCCL", ncclGetErrorString(res));
    if (res == ncclInProgress) {
        eng_status st = wait_enqueue(c, op);
        if (st != ENG_OK) return st;
    }
    return rk(c)->bound ? ENG_OK : wait_stream(c, op);
}

static eng_status set_device(eng_comm *c, const char *op)
{
    cudaError_t ce = cudaSetDevice(rk(c)->device);
    return ce == cudaSuccess ? ENG_OK : device_error(c, op, "CUDA", cudaGetErrorString(ce));
}

static eng_status nccl_all_reduce(eng_comm *c, float *buf, size_t n)
{
    eng_status st = set_device(c, "all_reduce");
    if (st != ENG_OK) return st;
    nccl_rank *r = rk(c);
    return enqueued(c, "all_reduce", ncclAllReduce(buf, buf, n, ncclFloat32, ncclSum, r->comm, r->stream));
}

static eng_status nccl_all_gather(eng_comm *c, const void *send, void *recv, size_t bytes)
{
    eng_status st = set_device(c, "all_gather");
    if (st != ENG_OK) return st;
    nccl_rank *r = rk(c);
    return enqueued(c, "all_gather", ncclAllGather(send, recv, bytes, ncclUint8, r->comm, r->stream));
}

static eng_status nccl_broadcast(eng_comm *c, void *buf, size_t bytes, int root)
{
    eng_status st = set_device(c, "broadcast");
    if (st != ENG_OK) return st;
    nccl_rank *r = rk(c);
    return enqueued(c, "broadcast", ncclBroadcast(buf, buf, bytes, ncclUint8, root, r->comm, r->stream));
}

static eng_status nccl_barrier(eng_comm *c)
{
    eng_status st = set_device(c, "barrier");
    if (st != ENG_OK) return st;
    nccl_rank *r = rk(c);
    return enqueued(c, "barrier",
                    ncclAllReduce(r->d_scratch, r->d_scratch, 1, ncclFloat32, ncclSum, r->comm, r->stream));
}

static bool nccl_async(const eng_comm *c)
{
    return rk(c)->bound;
}

/* eng_comm_wait: a bound rank polls its (the backend's) stream to completion; an own-stream rank
 * has nothing in flight (every call waited). */
static eng_status nccl_wait(eng_comm *c)
{
    if (!rk(c)->bound) return ENG_OK;
    eng_status st = set_device(c, "wait");
    if (st != ENG_OK) return st;
    return wait_stream(c, "wait");
}

static void nccl_abort(eng_comm_group *g)
{
    (void)g; /* each rank aborts its own communicator when it sees the flag (NCCL calls on a
                communicator belong to its thread) */
}

static void nccl_destroy(eng_comm_group *g)
{
    nccl_group *ng = g->impl;
    if (!ng) return;
    for (int i = 0; i < g->world; i++) {
        nccl_rank *r = &ng->r[i];
        if (r->device >= 0) cudaSetDevice(r->device);
        if (r->comm) {
            if (r->aborted || atomic_load(&g->aborted)) {
                abort_comm(r);
            } else {
                /* finalize (flushes outstanding work) with a deadline, then destroy; abort if stuck */
                ncclResult_t res = ncclCommFinalize(r->comm), ae = ncclInProgress;
                const double deadline = now_s() + g->timeout_ms / 1000.0;
                while (res == ncclSuccess || res == ncclInProgress) {
                    ncclCommGetAsyncError(r->comm, &ae);
                    if (ae != ncclInProgress || now_s() > deadline) break;
                    pause_us(100);
                }
                if (ae == ncclSuccess)
                    ncclCommDestroy(r->comm);
                else
                    abort_comm(r);
            }
        }
        if (r->own) cudaStreamDestroy(r->own); /* a bound stream belongs to its backend */
        if (r->d_scratch) cudaFree(r->d_scratch);
    }
    eng_free(ng->r);
    eng_free(ng);
    g->impl = NULL;
}

static const eng_comm_ops nccl_ops = {
    .name = "nccl",
    .all_reduce_sum = nccl_all_reduce,
    .all_gather = nccl_all_gather,
    .broadcast = nccl_broadcast,
    .barrier = nccl_barrier,
    .async = nccl_async,
    .wait = nccl_wait,
    .abort = nccl_abort,
    .destroy = nccl_destroy,
};

int eng_comm_nccl_device(const eng_comm *c)
{
    return c && c->group->ops == &nccl_ops ? rk(c)->device : -1;
}

eng_status eng_comm_nccl_bind_stream(eng_comm *c, void *stream)
{
    if (!c || c->group->ops != &nccl_ops)
        return eng_err_set(ENG_ERR_INVALID, "collectives: binding a stream needs an NCCL endpoint");
    nccl_rank *r = rk(c);
    if (!r->own)
        return eng_err_set(ENG_ERR_INVALID, "collectives (nccl): rank %d is not initialised", c->rank);
    r->stream = stream ? (cudaStream_t)stream : r->own;
    r->bound = stream != NULL;
    return ENG_OK;
}

eng_status eng_comm_group_nccl_create(int world, const int *devices, int timeout_ms, eng_comm_group **out)
{
    *out = NULL;
    eng_comm_group *g = NULL;
    eng_status st = eng_comm_group_alloc(&nccl_ops, world, timeout_ms, &g);
    if (st != ENG_OK) return st;
    nccl_group *ng = eng_calloc(1, sizeof *ng);
    if (!ng || !(ng->r = eng_calloc((size_t)world, sizeof *ng->r))) {
        eng_free(ng);
        eng_comm_group_destroy(g);
        return eng_err_set(ENG_ERR_NOMEM, "collectives (nccl): out of memory");
    }
    g->impl = ng;
    int n_dev = 0;
    cudaError_t ce = cudaGetDeviceCount(&n_dev);
    if (ce != cudaSuccess) {
        st = eng_err_set(ENG_ERR_DEVICE, "collectives (nccl): no CUDA device: %s", cudaGetErrorString(ce));
        goto fail;
    }
    for (int i = 0; i < world; i++) {
        ng->r[i].device = devices ? devices[i] : i;
        if (ng->r[i].device < 0 || ng->r[i].device >= n_dev) {
            st = eng_err_set(ENG_ERR_INVALID, "collectives (nccl): rank %d wants GPU %d, this machine has %d",
                             i, ng->r[i].device, n_dev);
            ng->r[i].device = -1;
            goto fail;
        }
    }
    for (int i = 0; i < world; i++) {
        nccl_rank *r = &ng->r[i];
        if ((ce = cudaSetDevice(r->device)) != cudaSuccess ||
            (ce = cudaStreamCreateWithFlags(&r->own, cudaStreamNonBlocking)) != cudaSuccess ||
            (ce = cudaMalloc((void **)&r->d_scratch, sizeof(float))) != cudaSuccess) {
            st = eng_err_set(ENG_ERR_DEVICE, "collectives (nccl): GPU %d: %s", r->device,
                             cudaGetErrorString(ce));
            goto fail;
        }
        r->stream = r->own;
    }
    ncclUniqueId id;
    ncclResult_t res = ncclGetUniqueId(&id);
    if (res != ncclSuccess) {
        st = eng_err_set(ENG_ERR_DEVICE, "collectives (nccl): ncclGetUniqueId: %s", ncclGetErrorString(res));
        goto fail;
    }
    ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
    cfg.blocking = 0;
    res = ncclGroupStart();
    for (int i = 0; i < world && (res == ncclSuccess || res == ncclInProgress); i++) {
        cudaSetDevice(ng->r[i].device);
        res = ncclCommInitRankConfig(&ng->r[i].comm, world, id, i, &cfg);
    }
    ncclResult_t end = ncclGroupEnd();
    if (res == ncclSuccess || res == ncclInProgress) res = end;
    if (res != ncclSuccess && res != ncclInProgress) {
        st = eng_err_set(ENG_ERR_DEVICE, "collectives (nccl): init of %d ranks: %s", world,
                         ncclGetErrorString(res));
        goto fail;
    }
    const double deadline = now_s() + g->timeout_ms / 1000.0;
    for (int i = 0; i < world; i++) {
        ncclResult_t ae = ncclInProgress;
        while (ng->r[i].comm) {
            ncclCommGetAsyncError(ng->r[i].comm, &ae);
            if (ae != ncclInProgress) break;
            if (now_s() > deadline) {
                st = eng_err_set(ENG_ERR_TIMEOUT,
                                 "collectives (nccl): init of rank %d did not complete within %.1f s", i,
                                 g->timeout_ms / 1000.0);
                atomic_store(&g->aborted, 1); /* destroy aborts instead of finalizing */
                goto fail;
            }
            pause_us(100);
        }
        if (!ng->r[i].comm || ae != ncclSuccess) {
            st = eng_err_set(ENG_ERR_DEVICE, "collectives (nccl): init of rank %d: %s", i,
                             ng->r[i].comm ? ncclGetErrorString(ae) : "no communicator");
            atomic_store(&g->aborted, 1);
            goto fail;
        }
    }
    *out = g;
    return ENG_OK;
fail:
    eng_comm_group_destroy(g);
    return st;
}
