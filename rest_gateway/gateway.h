/* gateway.h - the qnext-gateway server: h2o configuration, listeners, one event loop per thread,
 * graceful shutdown; and the structures shared by handlers.c and stream.c.
 *
 * Threads: the main thread handles signals only (SIGTERM/SIGINT: drain, SIGHUP: reload keys);
 * each loop thread runs one h2o context with its own listener socket (SO_REUSEPORT on one port),
 * its own gRPC client (upstream.h) and its own timers. Requests, streams and gRPC call state never
 * leave their loop thread. Cross-thread messages (gRPC completions, the shutdown request) arrive
 * through h2o multithread receivers.
 */
#ifndef GW_GATEWAY_H
#define GW_GATEWAY_H

#ifndef H2O_USE_LIBUV
#define H2O_USE_LIBUV 0
#endif
#include <h2o.h>
#include <h2o/multithread.h>

#include "auth.h"           /* defines: gw_auth */
#include "config.h"         /* defines: gw_config */
#include "metrics.h"        /* defines: gw_metrics */
#include "openai_request.h" /* defines: gw_limits, gw_error */
#include "upstream.h"       /* defines: gw_pool, gw_upstream */

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct gw_server gw_server;

/* One event loop (one thread). */
typedef struct gw_loop {
    gw_server *srv;
    int index;
    pthread_t thread;
    bool thread_started;
    h2o_context_t ctx;
    bool ctx_inited;
    h2o_accept_ctx_t accept_ctx;
    int listen_fd;
    h2o_socket_t *listener;
    gw_upstream *up;
    h2o_multithread_receiver_t ctl; /* shutdown requests from the main thread */
    h2o_multithread_message_t ctl_msg;
    h2o_timeout_t ping_timeout;     /* SSE heartbeats (one entry per stream) */
    h2o_timeout_t tick_timeout;     /* 100 ms: shutdown progress */
    h2o_timeout_entry_t tick;
    h2o_linklist_t streams;         /* live gw_stream objects (for shutdown) */
    size_t n_streams, n_conns;
    size_t n_calls_live;            /* gRPC calls not yet completed */
    uint64_t rng;                   /* xorshift state for request ids */
    bool ctl_registered;
    bool shutting_down, cancelled_all, exit;
    uint64_t drain_deadline_ns, streams_done_ns;
} gw_loop;

struct gw_server {
    gw_config *cfg;
    h2o_globalconf_t hconf;
    SSL_CTX *ssl;
    gw_pool *pool;
    gw_auth *auth;
    gw_metrics metrics;
    gw_limits limits;
    int port;
    int n_loops;
    gw_loop *loops;
    _Atomic bool draining;
    _Atomic bool force_cancel; /* second SIGTERM: cancel at once */
    pthread_mutex_t start_mu;  /* loop threads report their setup */
    pthread_cond_t start_cv;
    int n_started;
    char start_error[512];
};

/* Builds the server (config must outlive it): TLS context, key set, engine pool, listeners, loops.
 * Nothing runs until gw_server_start. Errors leave a detail in eng_err_last(). */
eng_status gw_server_create(gw_config *cfg, gw_server **out);
/* Starts the loop threads (each sets up its own h2o context, listener socket and gRPC client) and
 * waits until all are serving. On failure some threads may be running: the caller must end the
 * process (_exit) rather than destroy the server. */
eng_status gw_server_start(gw_server *s);
/* Asks every loop to drain (SIGTERM). `force`: cancel in-flight requests now. Thread-safe. */
void gw_server_shutdown(gw_server *s, bool force);
/* Joins the loop threads; true when all have exited. `timeout_ms` < 0 waits forever. */
bool gw_server_wait(gw_server *s, int timeout_ms);
/* Frees the server. NULL-safe. Only after gw_server_wait returned true (or before start). */
void gw_server_destroy(gw_server *s);
/* The bound port. */
int gw_server_port(const gw_server *s);

/* ---- shared by handlers.c / stream.c ------------------------------------------------------ */

/* The loop that owns a request. */
gw_loop *gw_loop_of(h2o_req_t *req);

/* Sends an OpenAI-shaped JSON error response (also counts it in the metrics). */
void gw_respond_error(h2o_req_t *req, gw_endpoint ep, const gw_error *e);
/* Sends a JSON (or other) body with `status`. The body is copied. */
void gw_respond(h2o_req_t *req, gw_endpoint ep, int status, const char *content_type, const char *body, size_t len);

/* The root handler (routing, auth, limits): handlers.c. */
int gw_handle_request(h2o_handler_t *self, h2o_req_t *req);

/* Starts a generation request (chat or completions) whose body parsed into `r` (ownership moves
 * to the stream): stream.c. */
void gw_stream_start(gw_loop *loop, h2o_req_t *req, gw_endpoint ep, struct gw_request *r, const char *model);
/* Cancels the upstream calls of every live stream of `loop` (shutdown deadline): stream.c. */
void gw_stream_cancel_all(gw_loop *loop);

#endif /* GW_GATEWAY_H */
