/* metrics.c - counters, histograms and the Prometheus text exposition (see metrics.h). */
#include "metrics.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* vLLM's buckets (vllm/v1/metrics/loggers.py). */
static const double ttft_b[] = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,  0.25,  0.5,   0.75,
                                1.0,   2.5,   5.0,  7.5,  10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0};
static const double itl_b[] = {0.01, 0.025, 0.05, 0.075, 0.1,  0.15, 0.2,  0.3,  0.4,  0.5,
                               0.75, 1.0,   2.5,  5.0,   7.5, 10.0, 20.0, 40.0, 80.0};
static const double e2e_b[] = {0.3,  0.5,  0.8,  1.0,  1.5,  2.0,   2.5,   5.0,   10.0,   15.0,  20.0,
                               30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};

static const char *const fin_names[GW_FIN_COUNT] = {"stop", "length", "tool_calls", "abort", "error"};

const char *gw_endpoint_path(gw_endpoint ep)
{
    switch (ep) {
    case GW_EP_CHAT: return "/v1/chat/completions";
    case GW_EP_COMPLETIONS: return "/v1/completions";
    case GW_EP_MODELS: return "/v1/models";
    case GW_EP_HEALTH: return "/health";
    case GW_EP_READY: return "/ready";
    case GW_EP_METRICS: return "/metrics";
    case GW_EP_OPENAPI: return "/openapi.json";
    default: return "other";
    }
}

static const char *endpoint_method(gw_endpoint ep)
{
    return ep == GW_EP_CHAT || ep == GW_EP_COMPLETIONS ? "POST" : "GET";
}

static void hist_init(gw_hist *h, const double *b, size_t n)
{
    h->bounds = b;
    h->n_bounds = n < GW_HIST_MAX_BUCKETS ? n : GW_HIST_MAX_BUCKETS;
}

void gw_metrics_init(gw_metrics *m)
{
    memset(m, 0, sizeof *m);
    hist_init(&m->ttft, ttft_b, sizeof ttft_b / sizeof ttft_b[0]);
    hist_init(&m->itl, itl_b, sizeof itl_b / sizeof itl_b[0]);
    hist_init(&m->e2e, e2e_b, sizeof e2e_b / sizeof e2e_b[0]);
}

void gw_metrics_http(gw_metrics *m, gw_endpoint ep, int status)
{
    if ((unsigned)ep >= GW_EP_COUNT) ep = GW_EP_OTHER;
    if (status < 100 || status > 599) status = 500;
    atomic_fetch_add_explicit(&m->http[ep][status - 100], 1, memory_order_relaxed);
}

void gw_hist_observe(gw_hist *h, double seconds, uint64_t k)
{
    if (k == 0) return;
    if (!(seconds > 0)) seconds = 0; /* also NaN */
    size_t i = 0;
    while (i < h->n_bounds && seconds > h->bounds[i]) i++;
    atomic_fetch_add_explicit(&h->buckets[i], k, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, k, memory_order_relaxed);
    double ns = seconds * 1e9 * (double)k;
    atomic_fetch_add_explicit(&h->sum_ns, ns < 1.8e19 ? (uint64_t)ns : (uint64_t)1.8e19, memory_order_relaxed);
}

gw_finish gw_finish_from_str(const char *s)
{
    for (int i = 0; s && i < GW_FIN_COUNT; i++)
        if (!strcmp(s, fin_names[i])) return (gw_finish)i;
    return GW_FIN_STOP;
}

void gw_metrics_label(eng_buf *out, const char *v)
{
    for (const char *p = v ? v : ""; *p; p++) {
        if (*p == '\\') eng_buf_puts(out, "\\\\");
        else if (*p == '"') eng_buf_puts(out, "\\\"");
        else if (*p == '\n') eng_buf_puts(out, "\\n");
        else eng_buf_putc(out, *p);
    }
}

/* ==== rendering =============================================================================== */

static void header(eng_buf *o, const char *name, const char *type, const char *help)
{
    eng_buf_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{model_name="m"<extra>} */
static void series(eng_buf *o, const char *name, const char *suffix, const char *model, const char *extra)
{
    eng_buf_printf(o, "%s%s{model_name=\"", name, suffix);
    gw_metrics_label(o, model);
    eng_buf_putc(o, '"');
    if (extra) eng_buf_puts(o, extra);
    eng_buf_putc(o, '}');
}

/* Prometheus float text: integers without a fraction, others in the fewest digits that read back
 * exactly (at most 17). */
static void value(eng_buf *o, double v)
{
    if (isnan(v)) eng_buf_puts(o, " NaN\n");
    else if (isinf(v)) eng_buf_puts(o, v > 0 ? " +Inf\n" : " -Inf\n");
    else if (v == floor(v) && fabs(v) < 1e15) eng_buf_printf(o, " %.0f\n", v);
    else {
        char t[40];
        for (int prec = 15; prec <= 17; prec++) {
            snprintf(t, sizeof t, "%.*g", prec, v);
            if (strtod(t, NULL) == v) break;
        }
        eng_buf_printf(o, " %s\n", t);
    }
}

static void hist(eng_buf *o, const char *name, const char *help, const gw_hist *h, const char *model)
{
    header(o, name, "histogram", help);
    uint64_t cum = 0;
    char le[64];
    for (size_t i = 0; i <= h->n_bounds; i++) {
        cum += atomic_load_explicit(&h->buckets[i], memory_order_relaxed);
        if (i < h->n_bounds) snprintf(le, sizeof le, ",le=\"%g\"", h->bounds[i]);
        else snprintf(le, sizeof le, ",le=\"+Inf\"");
        series(o, name, "_bucket", model, le);
        value(o, (double)cum);
    }
    series(o, name, "_sum", model, NULL);
    value(o, (double)atomic_load_explicit(&h->sum_ns, memory_order_relaxed) / 1e9);
    series(o, name, "_count", model, NULL);
    /* the +Inf bucket and _count must agree: use the cumulative total read above */
    value(o, (double)cum);
}

static void engine_series(eng_buf *o, const char *name, const char *model, const char *target)
{
    eng_buf_printf(o, "%s{model_name=\"", name);
    gw_metrics_label(o, model);
    eng_buf_puts(o, "\",engine=\"");
    gw_metrics_label(o, target);
    eng_buf_puts(o, "\"}");
}

void gw_metrics_render(const gw_metrics *m, const char *model, const gw_engine_stat *e, size_t n, eng_buf *o)
{
    /* per-engine load (GetLoad) */
    static const struct {
        const char *name, *type, *help;
        int what;
    } eng_metrics[] = {
        {"vllm:num_requests_running", "gauge", "Number of requests in model execution batches.", 0},
        {"vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.", 1},
        {"vllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.", 2},
        {"vllm:prefix_cache_queries_total", "counter", "Prefix cache queries, in terms of number of queried tokens.", 3},
        {"vllm:prefix_cache_hits_total", "counter", "Prefix cache hits, in terms of number of cached tokens.", 4},
        {"vllm:num_preemptions_total", "counter", "Cumulative number of preemptions from the engine.", 5},
        {"qnext_gateway_engine_up", "gauge", "1 if the engine answered its last health/load poll and is serving.", 6},
        {"qnext_gateway_engine_outstanding", "gauge", "Requests the gateway has in flight to the engine.", 7},
    };
    for (size_t k = 0; k < sizeof eng_metrics / sizeof eng_metrics[0]; k++) {
        header(o, eng_metrics[k].name, eng_metrics[k].type, eng_metrics[k].help);
        for (size_t i = 0; i < n; i++) {
            double v;
            int w = eng_metrics[k].what;
            if (w < 6 && !e[i].has_load) continue;
            switch (w) {
            case 0: v = e[i].running; break;
            case 1: v = e[i].waiting; break;
            case 2: v = e[i].kv_usage; break;
            case 3: v = (double)e[i].prefix_queries; break;
            case 4: v = (double)e[i].prefix_hits; break;
            case 5: v = (double)e[i].preemptions; break;
            case 6: v = e[i].up ? 1 : 0; break;
            default: v = e[i].outstanding; break;
            }
            engine_series(o, eng_metrics[k].name, model, e[i].target);
            value(o, v);
        }
    }

    header(o, "vllm:prompt_tokens_total", "counter", "Number of prefill tokens processed.");
    series(o, "vllm:prompt_tokens_total", "", model, NULL);
    value(o, (double)atomic_load(&m->prompt_tokens));
    header(o, "vllm:generation_tokens_total", "counter", "Number of generation tokens processed.");
    series(o, "vllm:generation_tokens_total", "", model, NULL);
    value(o, (double)atomic_load(&m->generation_tokens));

    header(o, "vllm:request_success_total", "counter", "Count of successfully processed requests.");
    for (int i = 0; i < GW_FIN_COUNT; i++) {
        char extra[64];
        snprintf(extra, sizeof extra, ",finished_reason=\"%s\"", fin_names[i]);
        series(o, "vllm:request_success_total", "", model, extra);
        value(o, (double)atomic_load(&m->success[i]));
    }

    hist(o, "vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", &m->ttft, model);
    hist(o, "vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", &m->itl, model);
    hist(o, "vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", &m->e2e, model);

    header(o, "vllm:http_requests_client_disconnected_total", "counter",
           "Requests whose client disconnected before the response was complete.");
    series(o, "vllm:http_requests_client_disconnected_total", "", model, NULL);
    value(o, (double)atomic_load(&m->client_disconnected));

    header(o, "http_requests_total", "counter", "HTTP responses by handler, method and status.");
    for (int ep = 0; ep < GW_EP_COUNT; ep++) {
        for (int s = 0; s < 500; s++) {
            uint64_t c = atomic_load_explicit(&m->http[ep][s], memory_order_relaxed);
            if (!c) continue;
            eng_buf_printf(o, "http_requests_total{handler=\"%s\",method=\"%s\",status=\"%d\"}",
                           gw_endpoint_path((gw_endpoint)ep), endpoint_method((gw_endpoint)ep), s + 100);
            value(o, (double)c);
        }
    }

    header(o, "qnext_gateway_requests_running", "gauge", "Generation requests in flight through the gateway.");
    eng_buf_puts(o, "qnext_gateway_requests_running");
    value(o, (double)atomic_load(&m->running));
    header(o, "qnext_gateway_rejected_total", "counter", "Requests rejected for overload (429) or no engine (503).");
    eng_buf_puts(o, "qnext_gateway_rejected_total{reason=\"overloaded\"}");
    value(o, (double)atomic_load(&m->rejected_429));
    eng_buf_puts(o, "qnext_gateway_rejected_total{reason=\"unavailable\"}");
    value(o, (double)atomic_load(&m->rejected_503));
}
