/* tp/comm.h - collectives for tensor parallelism: one endpoint (eng_comm) per rank of a group
 * (eng_comm_group), with all-reduce (sum, float32), all-gather, broadcast and barrier.
 *
 * Implementations (the ops vtable is in tp/comm_impl.h):
 *   cpu   ranks are threads of this process; buffers are host memory (the CPU backend's "device"
 *         memory). Reductions are deterministic: element i is ((b0[i] + b1[i]) + b2[i]) + ... in
 *         rank order whichever rank computes it, and every rank receives the same bits.
 *   nccl  one thread per GPU in this process, one communicator per GPU (tp/nccl/comm_nccl.h);
 *         buffers are device memory of that rank's GPU. Built only when CUDA and NCCL are found.
 *
 * Rules for callers (the model's forward on each rank):
 *   - every rank of a group calls the same collectives, in the same order, with the same sizes
 *     (a mismatch is detected by the CPU implementation and fails the group with ENG_ERR_INTERNAL);
 *   - on a synchronous endpoint (every CPU one, and an NCCL one with its own stream) buffers hold
 *     the results when the call returns (the call waits for completion), so on a device backend
 *     synchronise the compute stream before calling;
 *   - on a stream-ordered endpoint (eng_comm_async() true: NCCL bound to the backend's stream with
 *     eng_comm_nccl_bind_stream) a call only enqueues the collective behind the work already on
 *     that stream and returns: the result is ready for later work on the same stream (no host
 *     synchronisation, and a CUDA-graph capture of the stream could include it), not for the
 *     host. Call eng_comm_wait() where the host needs a result or the end of a step;
 *   - every wait has a deadline (the group's timeout): a rank that stops participating makes the
 *     others return ENG_ERR_TIMEOUT with a detail naming the collective and the missing ranks,
 *     never a hang. After any failure the group is aborted: every later call on any rank fails at
 *     once (ENG_ERR_TIMEOUT, detail: the first failure). A failed group cannot be reused; make a
 *     new one (a model reload).
 * An endpoint is used by one thread at a time (its rank's thread); different ranks' endpoints are
 * used concurrently, which is the point.
 */
#ifndef QN_TP_COMM_H
#define QN_TP_COMM_H

#include "core/core.h" /* defines: eng_status, eng_err_set */

typedef struct eng_comm eng_comm;             /* one rank's endpoint (owned by its group) */
typedef struct eng_comm_group eng_comm_group; /* all endpoints of one group */

#define ENG_COMM_DEFAULT_TIMEOUT_MS 60000

/* Creates a CPU (shared-memory, threads) group of `world` ranks (1..1024). timeout_ms <= 0: the
 * default (60 s). ENG_ERR_INVALID / ENG_ERR_NOMEM / ENG_ERR_INTERNAL (pthread setup). */
eng_status eng_comm_group_cpu_create(int world, int timeout_ms, eng_comm_group **out);

/* Frees the group and its endpoints. No rank may be inside a call. NULL-safe. */
void eng_comm_group_destroy(eng_comm_group *g);

/* Endpoint of rank r (0 <= r < world), owned by the group. */
eng_comm *eng_comm_group_rank(eng_comm_group *g, int r);
int eng_comm_group_world(const eng_comm_group *g);

/* Aborts the group from any thread: ranks waiting in a collective return ENG_ERR_TIMEOUT at once
 * and every later call fails; `why` becomes the error detail. Used by the rank executor when a
 * rank does not finish its step. Idempotent (the first reason is kept). */
void eng_comm_group_abort(eng_comm_group *g, const char *why);
/* Whether the group was aborted (a timeout, a mismatch, or eng_comm_group_abort). */
bool eng_comm_group_aborted(const eng_comm_group *g);

/* buf: device [n] float32, in place: every rank ends with the element-wise sum over ranks. */
eng_status eng_comm_all_reduce_sum(eng_comm *c, float *buf, size_t n);
/* send: device [bytes]; recv: device [world][bytes], rank-major (rank q's block at q * bytes).
 * send may be recv + rank * bytes (in place). */
eng_status eng_comm_all_gather(eng_comm *c, const void *send, void *recv, size_t bytes);
/* buf: device [bytes]; root's contents are copied to every other rank's buf. */
eng_status eng_comm_broadcast(eng_comm *c, void *buf, size_t bytes, int root);
/* Returns when every rank has called it (or fails after the timeout). On a stream-ordered endpoint
 * it is enqueued like the other collectives: follow it with eng_comm_wait to wait for the ranks. */
eng_status eng_comm_barrier(eng_comm *c);

/* Whether calls on this endpoint only enqueue their collective on a device stream (see the rules
 * above). false for the CPU implementation. */
bool eng_comm_async(const eng_comm *c);
/* Waits, with the group's deadline, until everything queued on a stream-ordered endpoint's stream
 * (the collectives and the device work before them) has completed; ENG_OK at once on a
 * synchronous endpoint. A rank that never joins a queued collective makes this fail with
 * ENG_ERR_TIMEOUT (the group is then aborted, as for any collective); an aborted group fails at
 * once. Not counted as a collective (eng_comm_debug_stop_after ignores it). */
eng_status eng_comm_wait(eng_comm *c);

int eng_comm_rank(const eng_comm *c);
int eng_comm_world(const eng_comm *c);
const char *eng_comm_name(const eng_comm *c); /* "cpu", "nccl" */
eng_comm_group *eng_comm_group_of(eng_comm *c);

/* Test hook (fault injection): after `n_calls` more collectives, this endpoint stops
 * participating: its calls return ENG_ERR_INTERNAL ("injected failure") without joining the
 * others, as a crashed rank would; the other ranks then time out. n_calls < 0 turns it off. */
void eng_comm_debug_stop_after(eng_comm *c, long n_calls);

#endif /* QN_TP_COMM_H */
