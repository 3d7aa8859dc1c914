/* upstream.h - the gateway's gRPC side: the engine pool (balancing, health and load polling) and
 * one gRPC C-core client per event loop.
 *
 * gw_pool (process-wide): the engine replicas. A poller thread calls grpc.health.v1.Health/Check
 * and qnext.v1.Generator/GetLoad on every engine each poll period (and GetModelInfo when an engine
 * comes up), marking it up or down, draining, or saturated (its queue is full). Requests pick the
 * up, unsaturated engine with the least outstanding requests: the larger of the gateway's own
 * in-flight calls to it and the running + waiting it reported at the last poll (other clients
 * share it). An engine not polled yet counts as up; saturated ones are used last. Counters are atomics; the
 * snapshots for /metrics and /v1/models are under a mutex.
 *
 * gw_upstream (one per event loop): a completion queue, a thread blocked in
 * grpc_completion_queue_next (serving-notes §2.3: the CQ thread must poll), and a channel to every
 * engine. Each gRPC batch is tagged with a gw_op; when it completes the CQ thread only records
 * `ok` and posts the op to the loop through h2o's multithread queue, where op->done runs. So all
 * call state is touched on the loop thread only (docs/style.md rule 15).
 */
#ifndef GW_UPSTREAM_H
#define GW_UPSTREAM_H

#ifndef H2O_USE_LIBUV
#define H2O_USE_LIBUV 0 /* h2o headers default to libuv (serving-notes §3.1) */
#endif
#include <h2o.h>
#include <h2o/multithread.h>

#include <grpc/grpc.h>

#include "config.h"  /* defines: gw_config */
#include "metrics.h" /* defines: gw_engine_stat */

#include <stdbool.h>
#include <stdint.h>

typedef struct gw_pool gw_pool;
typedef struct gw_upstream gw_upstream;

/* ==== pool ==================================================================================== */

/* Model facts learnt from GetModelInfo. */
typedef struct gw_model_info {
    char id[256];
    int64_t created;
    int32_t max_model_len;
    int32_t vocab_size;
} gw_model_info;

/* Creates the pool for cfg->engines and starts the poller (first poll at once). */
eng_status gw_pool_create(const gw_config *cfg, gw_pool **out);
/* Stops the poller and frees the pool. NULL-safe. No gw_upstream may use it afterwards. */
void gw_pool_destroy(gw_pool *p);
size_t gw_pool_size(const gw_pool *p);
const char *gw_pool_target(const gw_pool *p, int engine);

/* Picks an engine not in `tried` (bit i = engine i) and counts one outstanding request on it.
 * Returns its index, or -1 with *http_status = 503 (no engine up) or 429 (all saturated). */
int gw_pool_acquire(gw_pool *p, uint64_t tried, int *http_status);
/* Ends one outstanding request on `engine` (from gw_pool_acquire). */
void gw_pool_release(gw_pool *p, int engine);
/* The engine answered RESOURCE_EXHAUSTED, or a call found it UNAVAILABLE: prefer other engines
 * for `ms` milliseconds (<= 0: one poll period). It is still used when no other engine is left,
 * so that it answers for itself; only the poller marks an engine down. */
void gw_pool_mark_saturated(gw_pool *p, int engine, int64_t ms);
/* True if some engine answered its last poll as SERVING and not draining. */
bool gw_pool_ready(gw_pool *p);
/* Copies the model facts of the first engine that reported them; false if none has yet. */
bool gw_pool_model(gw_pool *p, gw_model_info *out);
/* Fills up to `cap` per-engine figures for /metrics; targets point into the pool. Returns count. */
size_t gw_pool_stats(gw_pool *p, gw_engine_stat *out, size_t cap);

/* ==== per-loop client ========================================================================= */

/* A completion tag. `done` runs on the loop thread with the batch's success flag. */
typedef struct gw_op {
    h2o_multithread_message_t msg; /* must stay unlinked while the batch is in flight */
    void (*done)(struct gw_op *op, bool ok);
    bool ok;
} gw_op;

/* Creates the client of one loop: a CQ + its thread posting to `queue` (the loop's
 * h2o_context.queue), and channels to every engine of `p`. */
eng_status gw_upstream_create(gw_pool *p, h2o_multithread_queue_t *queue, gw_upstream **out);
/* Shuts the CQ down and joins its thread. Every call must have completed (all ops delivered):
 * the loop keeps running until its streams are gone before calling this. */
void gw_upstream_destroy(gw_upstream *u);
/* A new Generate call on `engine`'s channel, bound to this loop's CQ, with the given deadline
 * (seconds from now; <= 0: none). NULL on failure. */
grpc_call *gw_upstream_generate_call(gw_upstream *u, int engine, double timeout_s);
gw_pool *gw_upstream_pool(gw_upstream *u);

/* Looks up `key` (lower case) in a metadata array; returns its value as a C string in buf. */
bool gw_metadata_get(const grpc_metadata_array *md, const char *key, char *buf, size_t cap);

#endif /* GW_UPSTREAM_H */
