/* grpc_service/server_impl.h - the server object as the RPC files see it (not for main.c).
 *
 * Threads and what they own:
 *   CQ threads (opt.cq_threads)  block in grpc_completion_queue_next and run call steps. They never
 *                                sleep or run engine work (docs/serving-notes.md §2.3).
 *   loader thread                eng_create in the background, so health answers NOT_SERVING while
 *                                the model loads; then starts the engine-host thread.
 *   engine-host thread           loops eng_step (eng_wait_work when idle) and routes events to
 *                                Generate calls (rpc_generate.c), starting their sends itself.
 *   main thread                  signals, drain, shutdown (main.c through server.h).
 *
 * Lock order: a call's mu may be held while taking the router lock (Generate accept) or calling
 * into the engine (eng_submit / eng_cancel, which take the engine's own locks); the router lock
 * and the health lock are never held while taking a call's mu, except health -> call in
 * gsvc_health_notify (no path takes a call's mu and then the health lock).
 */
#ifndef GSVC_SERVER_IMPL_H
#define GSVC_SERVER_IMPL_H

#include "call.h"
#include "options.h"
#include "server.h"

#include "qnext/eng.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* ==== method table ============================================================================ */

enum {
    GSVC_M_GENERATE = 0,
    GSVC_M_ABORT,
    GSVC_M_TOKENIZE,
    GSVC_M_DETOKENIZE,
    GSVC_M_MODEL_INFO,
    GSVC_M_LOAD,
    GSVC_M_HEALTH_CHECK,
    GSVC_M_HEALTH_WATCH,
    GSVC_M_UNKNOWN, /* any other path (grpc_server_request_call): answered UNIMPLEMENTED */
    GSVC_M_COUNT
};

extern const gsvc_method gsvc_m_generate, gsvc_m_abort, gsvc_m_tokenize, gsvc_m_detokenize, gsvc_m_model_info,
    gsvc_m_load, gsvc_m_health_check, gsvc_m_health_watch;

/* ==== Generate router (rpc_generate.c) ======================================================== */

#define GSVC_ROUTER_BUCKETS 4096

typedef struct gen_call gen_call;

typedef struct gsvc_router {
    pthread_mutex_t mu;
    gen_call *by_id[GSVC_ROUTER_BUCKETS];   /* engine request id -> call */
    gen_call *by_name[GSVC_ROUTER_BUCKETS]; /* GenerateRequest.request_id -> call */
    uint64_t next_name;                     /* for server-assigned request ids */
} gsvc_router;

/* Routes one eng_step's events to their calls (engine-host thread). */
void gsvc_generate_route(gsvc_server *s, const eng_event *ev, size_t n);
/* eng_cancel for every request the engine still runs (grace period over). */
void gsvc_generate_abort_all(gsvc_server *s);
/* The engine failed (eng_step error): end every Generate call with a Final of FINISH_REASON_ERROR
 * per open choice and status INTERNAL, and forget them (engine-host thread). */
void gsvc_generate_fail_all(gsvc_server *s, eng_status st, const char *message);

/* ==== health (rpc_health.c) =================================================================== */

typedef struct watch_call watch_call;

/* Re-sends the status to every Watch stream whose status changed. */
void gsvc_health_notify(gsvc_server *s);
/* Serving status of a service name: 1 SERVING, 2 NOT_SERVING, 3 SERVICE_UNKNOWN (unknown name). */
int gsvc_health_status(gsvc_server *s, const char *service);

/* ==== the server ============================================================================== */

typedef enum gsvc_model_state { GSVC_MODEL_LOADING = 0, GSVC_MODEL_READY, GSVC_MODEL_FAILED } gsvc_model_state;

struct gsvc_server {
    gsvc_options opt;
    grpc_completion_queue *cq;
    grpc_server *server;
    void *handles[GSVC_M_COUNT];
    int port;
    pthread_t *cq_threads;
    int n_cq_threads;
    bool grpc_started;

    /* engine */
    eng_engine *_Atomic engine; /* set once loaded */
    atomic_int model_state;     /* gsvc_model_state */
    int64_t created_unix;
    pthread_t loader, host;
    bool loader_started, host_started;
    atomic_bool host_stop;
    atomic_bool fatal;          /* the model failed to load or the engine failed: exit 1 */

    /* lifecycle */
    atomic_bool draining;       /* SIGTERM seen: reject new Generate calls, health NOT_SERVING */
    atomic_bool shutting_down;  /* grpc_server_shutdown_and_notify called: stop re-arming */
    gsvc_op op_shutdown;
    bool shutdown_done;
    atomic_int live_calls;      /* call objects alive, including armed accepts */
    atomic_int active_streams;  /* Generate calls accepted into the engine and not yet finished */
    pthread_mutex_t mu;         /* guards shutdown_done; with cv for waiting on counters */
    pthread_cond_t cv;

    gsvc_router router;

    /* health Watch streams */
    pthread_mutex_t health_mu;
    watch_call *watchers;       /* doubly linked */
    int health_last;            /* last notified overall status */
};

/* The engine if loaded, else NULL. */
static inline eng_engine *gsvc_engine(gsvc_server *s)
{
    return atomic_load(&s->engine);
}

/* True while the model is loaded and the server is not draining. */
bool gsvc_server_serving(gsvc_server *s);

/* Wakes the main thread's waits (counters changed). */
void gsvc_server_signal(gsvc_server *s);

#endif /* GSVC_SERVER_IMPL_H */
