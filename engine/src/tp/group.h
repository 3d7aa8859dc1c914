/* tp/group.h - the rank executor of tensor parallelism (nano-vllm's ModelRunner loop): rank 0 is
 * the caller's thread; ranks 1..world-1 are worker threads that sleep until rank 0 hands out a
 * step, run the same function on their own shard, and report back.
 *
 *   eng_tp_group_run(g, fn, arg)   runs fn(arg, r) on every rank r at once (rank 0 inline) and
 *                                  returns when all have returned
 *
 * `arg` is how rank 0 "broadcasts" the step: the ranks are threads of one process, so the batch
 * description rank 0 was given is shared memory that every rank reads during the call (it stays
 * valid until run returns). The data-plane collectives between ranks are tp/comm.h.
 *
 * Failures: each rank's status and error detail are collected; the call returns the root cause
 * first ("rank 2: injected failure ...; rank 0: all_reduce #7 ... did not arrive"), status of the
 * first rank that failed other than by timeout, else ENG_ERR_TIMEOUT. A worker that has not
 * returned 2 x timeout_ms after rank 0 finished (one timeout is what a rank waiting in a
 * collective takes to give up by itself) gets its collectives aborted (the comm group, if given)
 * and one more timeout to return; if it still has not, the group is lost: every later run fails
 * at once and destroy leaks the stuck thread's state rather than hang on it (a rank stuck in a
 * kernel is unrecoverable in-process, like a sticky CUDA error).
 * eng_tp_group_fail() marks a group unusable on purpose (a forward that failed mid-way leaves the
 * ranks' caches inconsistent).
 *
 * Threads: one thread calls run / fail / destroy (the model's owner).
 */
#ifndef QN_TP_GROUP_H
#define QN_TP_GROUP_H

#include "tp/comm.h" /* defines: eng_comm_group */

typedef struct eng_tp_group eng_tp_group;

/* The work of one rank. Must return (the executor has no way to stop it). */
typedef eng_status (*eng_tp_fn)(void *arg, int rank);

/* Starts world-1 worker threads. comm (optional, not owned) is aborted when a worker does not
 * finish a step in time, which wakes ranks waiting for it. timeout_ms <= 0: the default (60 s).
 * ENG_ERR_INVALID / ENG_ERR_NOMEM / ENG_ERR_INTERNAL (thread creation). */
eng_status eng_tp_group_create(int world, int timeout_ms, eng_comm_group *comm, eng_tp_group **out);

/* Stops and joins the workers; a lost group is quiesced first and, if a worker is still stuck,
 * leaked (see above). NULL-safe. */
void eng_tp_group_destroy(eng_tp_group *g);

int eng_tp_group_world(const eng_tp_group *g);

/* Runs fn(arg, rank) on every rank; see the file comment for errors. */
eng_status eng_tp_group_run(eng_tp_group *g, eng_tp_fn fn, void *arg);

/* Marks the group failed with the current error detail of the calling thread: every later run
 * returns `st` with "the tensor-parallel group failed earlier: <detail>". */
void eng_tp_group_fail(eng_tp_group *g, eng_status st);
/* Whether the group failed (eng_tp_group_fail, or a lost worker). */
bool eng_tp_group_failed(const eng_tp_group *g);
/* ENG_OK, or the failure's status with the detail "the tensor-parallel group failed earlier ...". */
eng_status eng_tp_group_status(const eng_tp_group *g);
/* Whether a worker never returned from a step (its thread may still use the job's memory: the
 * owner must then leak, not free, what the job could touch). */
bool eng_tp_group_lost(const eng_tp_group *g);
/* For a lost group: waits up to three timeouts for the stuck workers to return; true (and the
 * group no longer lost, though still failed) if they did, or if none was stuck. */
bool eng_tp_group_quiesce(eng_tp_group *g);

#endif /* QN_TP_GROUP_H */
