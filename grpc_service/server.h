/* grpc_service/server.h - qnext-engine's gRPC server: lifecycle as main() drives it.
 *
 *     gsvc_server *s;
 *     if (gsvc_server_create(&opt, &s) != ENG_OK) ...;   // binds the port
 *     gsvc_server_start(s);                               // serves; loads the model in the background
 *     ... wait for SIGTERM (or gsvc_server_failed) ...
 *     gsvc_server_drain(s);                               // health NOT_SERVING, new Generate -> UNAVAILABLE
 *     ... wait up to the grace period for gsvc_server_active_streams(s) == 0 ...
 *     gsvc_server_abort_streams(s); gsvc_server_wait_idle(s, 2000);
 *     gsvc_server_shutdown(s);                            // stop gRPC, cancel the rest, stop the engine
 *     gsvc_server_destroy(s);
 *
 * All functions are for the main thread; none may be called concurrently with another of them.
 */
#ifndef GSVC_SERVER_H
#define GSVC_SERVER_H

#include "options.h"

#include "qnext/status.h"

#include <stdbool.h>

typedef struct gsvc_server gsvc_server;

/* Creates the completion queue and the gRPC server, registers every method and binds opt->listen
 * (the port must be free). Copies *opt (its strings must outlive the server). ENG_ERR_IO with a
 * detail when the address cannot be bound; *out = NULL on failure. */
eng_status gsvc_server_create(const gsvc_options *opt, gsvc_server **out);

/* The bound port (useful with port 0). */
int gsvc_server_port(const gsvc_server *s);

/* Starts serving: CQ threads, armed calls, and the loader thread (eng_create in the background). */
eng_status gsvc_server_start(gsvc_server *s);

/* True once the model failed to load or the engine failed: the process should exit non-zero. */
bool gsvc_server_failed(gsvc_server *s);

/* True once the model is loaded. */
bool gsvc_server_loaded(gsvc_server *s);

/* Begins draining: health NOT_SERVING, new Generate calls get UNAVAILABLE. Idempotent. */
void gsvc_server_drain(gsvc_server *s);

/* Open Generate streams. */
int gsvc_server_active_streams(gsvc_server *s);

/* Waits up to timeout_ms for active streams to reach 0 (or the server to fail). True if idle. */
bool gsvc_server_wait_idle(gsvc_server *s, int timeout_ms);

/* Aborts every running request (their streams end with FINISH_REASON_CANCELLED). */
void gsvc_server_abort_streams(gsvc_server *s);

/* Stops gRPC (grpc_server_shutdown_and_notify + grpc_server_cancel_all_calls), waits for every call
 * to be released, then stops the engine-host thread and waits for the loader. */
void gsvc_server_shutdown(gsvc_server *s);

/* Frees everything (after gsvc_server_shutdown, or instead of it if never started). NULL-safe. */
void gsvc_server_destroy(gsvc_server *s);

#endif /* GSVC_SERVER_H */
