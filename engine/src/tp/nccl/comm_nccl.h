/* tp/nccl/comm_nccl.h - the NCCL implementation of the collectives (tp/comm.h): one thread per GPU
 * in this process, one communicator per GPU, each rank with its own CUDA stream; buffers are
 * device memory of the rank's GPU. Built only when the CUDA toolkit and NCCL are found (target
 * qn_comm_nccl, which defines QN_HAVE_NCCL); the header itself needs neither.
 *
 * Streams: by default each rank has a stream of its own; a call enqueues the NCCL operation there
 * and polls it to completion (the caller synchronises its compute stream first; the results are
 * complete when the call returns). eng_comm_nccl_bind_stream puts a rank's collectives on the
 * caller's stream instead (the CUDA backend's, eng_cuda_stream): a call then only enqueues behind
 * the compute work already there and returns (eng_comm_async is true), so a tensor-parallel step
 * stays ordered on one stream with no host synchronisation per collective, and
 * eng_comm_wait polls that stream where the host needs a result (the logits, the end of a step).
 *
 * Waiting: every host wait polls (cudaStreamQuery, and the communicator's asynchronous error)
 * instead of blocking, so a rank that never joins makes the others return ENG_ERR_TIMEOUT after the
 * group's timeout instead of blocking forever; the communicators are non-blocking
 * (ncclConfig_t.blocking = 0), which lets a timed-out rank call ncclCommAbort on its communicator.
 * A CUDA or NCCL error is ENG_ERR_DEVICE with the library's text. Either failure aborts the group
 * (tp/comm.h rules).
 */
#ifndef QN_TP_COMM_NCCL_H
#define QN_TP_COMM_NCCL_H

#include "tp/comm.h"

/* Creates a group of `world` ranks on CUDA devices devices[0..world) (NULL: 0..world-1), with
 * ncclCommInitRankConfig for every rank inside one ncclGroupStart/End from this thread.
 * ENG_ERR_DEVICE (no such device, NCCL init failure, with the library's text) / ENG_ERR_TIMEOUT
 * (init did not complete) / ENG_ERR_NOMEM / ENG_ERR_INVALID. Each rank's endpoint must then be
 * used from one thread (that rank's). */
eng_status eng_comm_group_nccl_create(int world, const int *devices, int timeout_ms, eng_comm_group **out);

/* The CUDA device of a rank of an NCCL group (-1 for a non-NCCL endpoint). */
int eng_comm_nccl_device(const eng_comm *c);

/* Binds rank c's collectives to `stream` (a cudaStream_t of the rank's device, e.g.
 * eng_cuda_stream(backend)), or back to its own stream when stream is NULL (see the file comment).
 * The stream must outlive its use here (unbind, or destroy the group, before destroying it) and no
 * collective of the rank may be in flight. ENG_ERR_INVALID for a non-NCCL endpoint. */
eng_status eng_comm_nccl_bind_stream(eng_comm *c, void *stream);

#endif /* QN_TP_COMM_NCCL_H */
