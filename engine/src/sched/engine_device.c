/* sched/engine_device.c - where an engine computes: eng_config.device -> the CPU backend or the
 * CUDA backend, and for tensor parallelism the other ranks' backends and the collectives.
 *
 *   cpu    one CPU backend per rank (threads split between the ranks), shared-memory collectives
 *          made by the model (tp/comm_cpu.c);
 *   cuda   rank r drives GPU r: rank 0's backend is made here on the caller's thread, ranks
 *          1..tp-1's by a factory the model calls on each rank's thread; every backend gets
 *          gpu_memory_fraction and batch_invariant. With tp > 1 the NCCL group is made here (before
 *          the backends, so its per-GPU setup is not charged to their budgets) and each rank's
 *          endpoint is bound to its backend's stream (eng_comm_nccl_bind_stream): collectives are
 *          ordered with the ops on one stream, the host waits only for the logits and the end of a
 *          step (model/qwen3next.c), and a step could later be captured whole;
 *   auto   cuda when this build has the CUDA backend and the driver reports a GPU, else cpu.
 * The CUDA parts compile only with QN_HAVE_CUDA (and the NCCL ones with QN_HAVE_NCCL, defined by the
 * qn_comm_nccl library); without them a request for cuda is a clear ENG_ERR_UNSUPPORTED.
 */
#include "sched/engine_impl.h"

#include "backend/backend.h" /* defines: eng_backend_cpu_create */
#include "core/threadpool.h" /* defines: eng_cpu_count */
#include "tp/comm.h"         /* defines: eng_comm_group_destroy */
#ifdef QN_HAVE_CUDA
#include "cuda/cuda_backend.h" /* defines: eng_backend_cuda_create, eng_cuda_device_count, eng_cuda_stream */
#endif
#ifdef QN_HAVE_NCCL
#include "tp/nccl/comm_nccl.h" /* defines: eng_comm_group_nccl_create, eng_comm_nccl_bind_stream */
#endif

#include <string.h>

const char *eng_device_name(eng_device_kind k)
{
    return k == ENG_DEVICE_CUDA ? "cuda" : "cpu";
}

static int gpu_count(void)
{
#ifdef QN_HAVE_CUDA
    return eng_cuda_device_count();
#else
    return 0;
#endif
}

eng_status eng_device_resolve(const char *name, eng_device_kind *out)
{
    *out = ENG_DEVICE_CPU;
    if (!name || !strcmp(name, "cpu")) return ENG_OK;
    if (!strcmp(name, "auto")) {
        if (gpu_count() > 0) *out = ENG_DEVICE_CUDA;
        return ENG_OK;
    }
    if (strcmp(name, "cuda"))
        return eng_err_set(ENG_ERR_INVALID, "engine: unknown device \"%s\" (cpu, cuda or auto)", name);
#ifndef QN_HAVE_CUDA
    return eng_err_set(
        ENG_ERR_UNSUPPORTED,
        "engine: device \"cuda\": this build has no CUDA backend (nvcc was not found when it was "
        "configured, or -DQN_CUDA=OFF): use --device cpu, or rebuild with the CUDA toolkit");
#else
    if (gpu_count() < 1)
        return eng_err_set(
            ENG_ERR_UNSUPPORTED,
            "engine: device \"cuda\": no CUDA device found (no GPU, or no driver): use --device cpu");
    *out = ENG_DEVICE_CUDA;
    return ENG_OK;
#endif
}

/* ==== CPU ===================================================================================== */

static eng_status open_cpu(eng_engine *e, qn_model_params *mp)
{
    const int tp = e->cfg.tp;
    int per_rank = (e->cfg.n_threads > 0 ? e->cfg.n_threads : eng_cpu_count()) / tp;
    if (per_rank < 1) per_rank = 1;
    eng_cpu_options bo = {tp > 1 ? per_rank : e->cfg.n_threads, ENG_SIMD_AUTO};
    mp->tp_threads = per_rank; /* ranks 1..tp-1: CPU backends with rank 0's SIMD path (the model's default) */
    return eng_backend_cpu_create(&bo, &e->be);
}

/* ==== CUDA ==================================================================================== */

#ifdef QN_HAVE_CUDA
static eng_cuda_options cuda_options(const eng_engine *e, int device)
{
    eng_cuda_options o;
    memset(&o, 0, sizeof o);
    o.device = device;
    o.memory_fraction = e->cfg.gpu_memory_fraction;
    o.batch_invariant = e->cfg.batch_invariant;
    return o;
}

/* Binds rank r's collectives (if any) to backend be's stream. */
static eng_status bind_rank(eng_engine *e, int rank, eng_backend *be)
{
    if (!e->comm) return ENG_OK;
#ifdef QN_HAVE_NCCL
    return eng_comm_nccl_bind_stream(eng_comm_group_rank(e->comm, rank), eng_cuda_stream(be));
#else
    (void)rank;
    (void)be;
    return eng_err_set(ENG_ERR_INTERNAL, "engine: collectives without NCCL");
#endif
}

/* qn_backend_factory for ranks 1..tp-1 (called on the rank's own thread). */
static eng_status cuda_rank_backend(void *ctx, int rank, eng_backend **out)
{
    eng_engine *e = ctx;
    eng_cuda_options o = cuda_options(e, rank);
    eng_backend *be = NULL;
    eng_status st = eng_backend_cuda_create(&o, &be);
    if (st == ENG_OK) st = bind_rank(e, rank, be);
    if (st != ENG_OK) {
        eng_backend_destroy(be);
        be = NULL;
    }
    *out = be;
    return st;
}

static eng_status open_cuda(eng_engine *e, qn_model_params *mp)
{
    const int tp = e->cfg.tp, n_gpus = gpu_count();
    eng_status st;
    if (tp > n_gpus)
        return eng_err_set(ENG_ERR_UNSUPPORTED,
                           "engine: tensor parallelism over %d GPUs (--tp %d), but %d %s found", tp, tp,
                           n_gpus, n_gpus == 1 ? "GPU was" : "GPUs were");
    if (tp > 1) {
#ifdef QN_HAVE_NCCL
        if ((st = eng_comm_group_nccl_create(tp, NULL, 0, &e->comm)) != ENG_OK) return st;
#else
        return eng_err_set(ENG_ERR_UNSUPPORTED,
                           "engine: tensor parallelism on GPUs needs NCCL, and this build has "
                           "none (nccl.h / libnccl were not found): use --tp 1, or rebuild with NCCL");
#endif
    }
    eng_cuda_options o = cuda_options(e, 0);
    if ((st = eng_backend_cuda_create(&o, &e->be)) != ENG_OK) return st;
    if ((st = bind_rank(e, 0, e->be)) != ENG_OK) return st;
    if (tp > 1) {
        mp->tp_backend = cuda_rank_backend;
        mp->tp_backend_ctx = e;
        mp->tp_comm = e->comm;
    }
    return ENG_OK;
}
#endif

eng_status eng_device_open(eng_engine *e, qn_model_params *mp)
{
    mp->tp_world = e->cfg.tp;
    if (e->device == ENG_DEVICE_CPU) return open_cpu(e, mp);
#ifdef QN_HAVE_CUDA
    return open_cuda(e, mp);
#else
    return eng_err_set(ENG_ERR_UNSUPPORTED, "engine: this build has no CUDA backend");
#endif
}

void eng_device_close(eng_engine *e)
{
    /* every step ended with its collectives complete (eng_comm_wait), so nothing is queued on the
     * bound streams, which the backends (destroyed before) owned; the group only uses its own */
    eng_comm_group_destroy(e->comm);
    e->comm = NULL;
}

bool eng_device_room(const eng_engine *e, size_t *room)
{
    *room = 0;
    bool any = false;
    for (int r = 0; r < qn_model_tp(e->m); r++) {
        eng_backend *be = qn_model_rank_backend(e->m, r);
        if (!be || !be->mem_info) return false;
        size_t budget = 0, used = 0;
        be->mem_info(be->ctx, &budget, &used);
        const size_t left = budget > used ? budget - used : 0;
        if (!any || left < *room) *room = left;
        any = true;
    }
    return any;
}
