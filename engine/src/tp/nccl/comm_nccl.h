/* tp/nccl/comm_nccl.h - the NCCL implementation of the collectives (tp/comm.h): one thread per GPU
 * in this process, one communicator per GPU, each rank with its own CUDA stream; buffers are
 * device memory of the rank's GPU. Built only when the CUDA toolkit and NCCL are found (target
 * qn_comm_nccl, which defines QN_HAVE_NCCL); the header itself needs neither.
 *
 * Waiting: each call enqueues the NCCL operation on the rank's stream and polls the stream
 * (cudaStreamQuery) and the communicator's asynchronous error until it completes, so a rank that
 * never joins makes the others return ENG_ERR_TIMEOUT after the group's timeout instead of
 * blocking forever; the communicators are non-blocking (ncclConfig_t.blocking = 0), which lets a
 * timed-out rank call ncclCommAbort on its communicator. A CUDA or NCCL error is ENG_ERR_DEVICE
 * with the library's text. Either failure aborts the group (tp/comm.h rules).
 * Ordering: the caller synchronises its compute stream before a collective (the model does), and
 * the results are complete when the call returns.
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

#endif /* QN_TP_COMM_NCCL_H */
