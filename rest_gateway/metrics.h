/* metrics.h - the gateway's Prometheus metrics (GET /metrics, text format 0.0.4).
 *
 * Names follow vLLM where the meaning is the same (docs/serving-notes.md §5.1), so dashboards,
 * autoscalers and the Gateway API inference extension work unchanged:
 *   vllm:num_requests_running / vllm:num_requests_waiting / vllm:kv_cache_usage_perc  (per engine,
 *       from the engines' GetLoad), vllm:prefix_cache_{queries,hits}_total, vllm:num_preemptions_total
 *   vllm:prompt_tokens_total, vllm:generation_tokens_total, vllm:request_success_total{finished_reason}
 *   vllm:time_to_first_token_seconds, vllm:inter_token_latency_seconds,
 *   vllm:e2e_request_latency_seconds (histograms, vLLM's buckets)
 *   vllm:http_requests_client_disconnected_total
 * plus http_requests_total{handler,method,status} (as prometheus_fastapi_instrumentator names it)
 * and qnext_gateway_* for what only the gateway knows (engine up/outstanding, running streams,
 * rejected requests).
 *
 * Recording is lock-free (C11 atomics) and safe from any thread; rendering reads a consistent
 * enough snapshot (each value atomically). No h2o, no gRPC.
 */
#ifndef GW_METRICS_H
#define GW_METRICS_H

#include "core/core.h" /* defines: eng_buf */

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

typedef enum gw_endpoint {
    GW_EP_CHAT = 0,
    GW_EP_COMPLETIONS,
    GW_EP_MODELS,
    GW_EP_HEALTH,
    GW_EP_READY,
    GW_EP_METRICS,
    GW_EP_OPENAPI,
    GW_EP_OTHER,
    GW_EP_COUNT
} gw_endpoint;

/* The handler label of an endpoint ("/v1/chat/completions", ..., "other"). */
const char *gw_endpoint_path(gw_endpoint ep);

#define GW_HIST_MAX_BUCKETS 24

typedef struct gw_hist {
    const double *bounds; /* (n_bounds,) upper bounds, ascending; +Inf implied */
    size_t n_bounds;
    _Atomic uint64_t buckets[GW_HIST_MAX_BUCKETS + 1]; /* non-cumulative counts; last = +Inf */
    _Atomic uint64_t count;
    _Atomic uint64_t sum_ns; /* sum of observations in nanoseconds (all our histograms are seconds) */
} gw_hist;

typedef enum gw_finish { GW_FIN_STOP = 0, GW_FIN_LENGTH, GW_FIN_TOOL_CALLS, GW_FIN_ABORT, GW_FIN_ERROR, GW_FIN_COUNT } gw_finish;

typedef struct gw_metrics {
    _Atomic uint64_t http[GW_EP_COUNT][500]; /* [endpoint][status - 100] */
    _Atomic uint64_t prompt_tokens, generation_tokens;
    _Atomic uint64_t success[GW_FIN_COUNT];
    _Atomic uint64_t client_disconnected;
    _Atomic uint64_t rejected_429, rejected_503;
    _Atomic int64_t running; /* generation requests in flight */
    gw_hist ttft, itl, e2e;
} gw_metrics;

/* Per-engine figures for rendering (filled by upstream.c from GetLoad). */
typedef struct gw_engine_stat {
    const char *target; /* "host:port" */
    bool up;
    bool has_load;
    int running, waiting;
    double kv_usage; /* 0..1 */
    int outstanding; /* the gateway's own in-flight calls to it */
    uint64_t prefix_queries, prefix_hits, preemptions;
} gw_engine_stat;

/* Zeroes `m` and sets the histogram buckets. */
void gw_metrics_init(gw_metrics *m);

/* Counts one HTTP response. Statuses outside 100..599 are counted as 500. */
void gw_metrics_http(gw_metrics *m, gw_endpoint ep, int status);

/* Records `k` observations of `seconds` each (k = 1 for one). Negative values count as 0. */
void gw_hist_observe(gw_hist *h, double seconds, uint64_t k);

/* Maps an OpenAI finish_reason text to gw_finish (unknown -> GW_FIN_STOP). */
gw_finish gw_finish_from_str(const char *s);

/* Appends the whole exposition: model_name labels use `model` (may be ""). */
void gw_metrics_render(const gw_metrics *m, const char *model, const gw_engine_stat *engines, size_t n_engines,
                       eng_buf *out);

/* Appends a Prometheus label value with \\, \" and \n escaped (no quotes). */
void gw_metrics_label(eng_buf *out, const char *v);

#endif /* GW_METRICS_H */
