/* grpc_service/call.h - the per-call state object and its completion-queue tags.
 *
 * Every accepted call is one heap object whose first member is a gsvc_call; the RPC's own state
 * follows it (gen_call in rpc_generate.c, watch_call in rpc_health.c, plain gsvc_call for unary
 * RPCs). The completion-queue tags are three gsvc_op structs embedded in the object, one per kind of
 * outstanding operation, so a completion identifies both the call and the step to run
 * (sysrepo-gnmi call_ctx, gRPC fling server):
 *
 *   ACCEPT  request_registered_call completed: re-arm the method at once, start RECV_CLOSE_ON_SERVER
 *           in its own batch (cancellation is only seen through it), then run the method's on_accept.
 *   CLOSE   RECV_CLOSE_ON_SERVER completed: `cancelled` says whether the client cancelled, its
 *           deadline passed or the connection broke -> on_close (Generate: eng_cancel).
 *   SEND    the one outstanding send batch completed (a message, or the status) -> on_send_done.
 *
 * At most one send batch is in flight per call (gRPC allows only one SEND_MESSAGE at a time, and
 * starting batches must be serialised per call): every send happens with `mu` held and through the
 * method's own "in flight" bookkeeping. Sends may start on a CQ thread or on the engine-host thread.
 *
 * Lifetime: `refs` counts one reference per outstanding gRPC operation, plus any holder such as the
 * Generate router while the engine still has the request. The last gsvc_call_unref runs the
 * method's destroy hook, releases the grpc_call and frees the object.
 */
#ifndef GSVC_CALL_H
#define GSVC_CALL_H

#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct gsvc_server gsvc_server;
typedef struct gsvc_call gsvc_call;

typedef enum gsvc_op_kind {
    GSVC_OP_ACCEPT = 0,
    GSVC_OP_CLOSE,
    GSVC_OP_SEND,
    GSVC_OP_SERVER_SHUTDOWN, /* the tag of grpc_server_shutdown_and_notify (call == NULL) */
} gsvc_op_kind;

typedef struct gsvc_op {
    gsvc_call *call;
    gsvc_op_kind kind;
} gsvc_op;

/* One registered method: its path and its steps. Steps run with no lock held. */
typedef struct gsvc_method {
    const char *path;         /* "/qnext.v1.Generator/Generate"; NULL: every unregistered path */
    size_t call_size;         /* size of the RPC's call object (>= sizeof(gsvc_call)) */
    int n_accepts;            /* request_registered_call kept outstanding */
    void (*on_accept)(gsvc_call *c);             /* request in c->payload */
    void (*on_send_done)(gsvc_call *c, bool ok); /* optional */
    void (*on_close)(gsvc_call *c, bool cancelled); /* optional */
    void (*destroy)(gsvc_call *c);               /* optional: free the RPC's state (no gRPC calls) */
} gsvc_method;

struct gsvc_call {
    gsvc_server *srv;
    const gsvc_method *m;
    int method_index;
    grpc_call *call;
    gpr_timespec deadline;
    grpc_metadata_array md;     /* request metadata */
    grpc_call_details call_details; /* unregistered methods only (path in call_details.method) */
    grpc_byte_buffer *payload;  /* the request message (NULL if none arrived) */
    pthread_mutex_t mu;
    atomic_int refs;
    gsvc_op op_accept, op_close, op_send;
    int cancelled;              /* out-parameter of RECV_CLOSE_ON_SERVER */
    bool md_sent;               /* initial metadata went out */
    grpc_byte_buffer *send_bb;  /* the message of the send in flight */
    grpc_slice details;         /* status details of the status send */
    bool has_details;
    grpc_metadata trailer;      /* retry-after-ms */
    bool has_trailer;
};

gsvc_call *gsvc_call_ref(gsvc_call *c);
/* Drops a reference; the last one frees the call. */
void gsvc_call_unref(gsvc_call *c);

/* The send helpers: called with c->mu held and no other send in flight on c. Each starts one batch
 * (with SEND_INITIAL_METADATA first if it has not gone out) whose completion comes back as the SEND
 * op. They return false if the batch could not be started (then no completion will come). */
bool gsvc_call_send_message(gsvc_call *c, const ProtobufCMessage *m);
/* status: a grpc_status_code; message may be NULL; retry_after_ms >= 0 adds that trailing metadata. */
bool gsvc_call_send_status(gsvc_call *c, grpc_status_code status, const char *message, int retry_after_ms);
/* A unary reply: message + OK status in one batch. */
bool gsvc_call_send_reply(gsvc_call *c, const ProtobufCMessage *m);

#endif /* GSVC_CALL_H */
