/* handlers.c - routing, authentication, limits and the small endpoints.
 *
 * One h2o handler on "/" routes every request itself, so that unknown paths get an OpenAI-shaped
 * JSON 404 (h2o's own is text/plain) and a wrong method a JSON 405. Everything under /v1 needs a
 * key when keys are configured (fail closed, as vLLM does); /health, /ready and /openapi.json are
 * open; /metrics is open unless --metrics-require-key.
 */
#include "gateway.h"

#include "json_write.h"      /* defines: gw_jw_* */
#include "openai_response.h" /* defines: gw_error_json, gw_models_json */

#include "core/core.h" /* defines: eng_buf */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

extern const char gw_openapi_doc[];
extern const unsigned long gw_openapi_doc_len;

static const char *reason_phrase(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Payload Too Large";
    case 429: return "Too Many Requests";
    case 499: return "Client Closed Request";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return status < 400 ? "OK" : status < 500 ? "Bad Request" : "Internal Server Error";
    }
}

gw_loop *gw_loop_of(h2o_req_t *req)
{
    return H2O_STRUCT_FROM_MEMBER(gw_loop, ctx, req->conn->ctx);
}

void gw_respond(h2o_req_t *req, gw_endpoint ep, int status, const char *content_type, const char *body, size_t len)
{
    gw_metrics_http(&gw_loop_of(req)->srv->metrics, ep, status);
    req->res.status = status;
    req->res.reason = reason_phrase(status);
    req->res.content_length = len;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, content_type, strlen(content_type));
    h2o_send_inline(req, body, len);
}

void gw_respond_error(h2o_req_t *req, gw_endpoint ep, const gw_error *e)
{
    eng_buf b;
    eng_buf_init(&b);
    gw_error_json(&b, e);
    if (e->retry_after_s > 0) {
        char t[16];
        int n = snprintf(t, sizeof t, "%d", e->retry_after_s);
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, h2o_strdup(&req->pool, t, (size_t)n).base,
                       (size_t)n);
    }
    if (e->status == 401)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL, H2O_STRLIT("Bearer"));
    if (b.oom) {
        static const char oom[] = "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\",\"param\":null,\"code\":null}}";
        gw_respond(req, ep, 500, "application/json", oom, sizeof oom - 1);
    } else {
        gw_respond(req, ep, e->status, "application/json", b.data, b.len);
    }
    eng_buf_free(&b);
}

static void respond_buf(h2o_req_t *req, gw_endpoint ep, int status, const char *ct, eng_buf *b)
{
    if (b->oom) {
        gw_error e;
        gw_error_set(&e, 500, "server_error", NULL, NULL, "out of memory");
        gw_respond_error(req, ep, &e);
    } else {
        gw_respond(req, ep, status, ct, b->data ? b->data : "", b->len);
    }
    eng_buf_free(b);
}

static bool path_is(h2o_iovec_t p, const char *s)
{
    size_t n = strlen(s);
    return p.len == n && !memcmp(p.base, s, n);
}

static bool method_is(h2o_req_t *req, const char *m)
{
    size_t n = strlen(m);
    return req->method.len == n && !memcmp(req->method.base, m, n);
}

static void method_not_allowed(h2o_req_t *req, gw_endpoint ep, const char *allow)
{
    gw_error e;
    gw_error_set(&e, 405, "invalid_request_error", "method_not_allowed", NULL, "method %.*s is not allowed here; use %s",
                 (int)(req->method.len > 16 ? 16 : req->method.len), req->method.base, allow);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, allow, strlen(allow));
    gw_respond_error(req, ep, &e);
}

static void not_found(h2o_req_t *req)
{
    gw_error e;
    char p[160];
    size_t n = req->path_normalized.len < 100 ? req->path_normalized.len : 100;
    memcpy(p, req->path_normalized.base, n);
    p[n] = 0;
    n = gw_utf8_complete_prefix(p, n);
    p[n] = 0;
    gw_error_set(&e, 404, "invalid_request_error", "not_found", NULL, "no such endpoint: %s", p);
    gw_respond_error(req, GW_EP_OTHER, &e);
}

/* The model name this gateway serves: --served-model-name, else the engines' model_id. */
static bool served_model(gw_server *srv, char *out, size_t cap, gw_model_info *info, bool *has_info)
{
    *has_info = gw_pool_model(srv->pool, info);
    if (srv->cfg->served_model_name) {
        snprintf(out, cap, "%s", srv->cfg->served_model_name);
        return true;
    }
    if (*has_info) {
        snprintf(out, cap, "%s", info->id);
        return true;
    }
    return false;
}

static void model_not_found(h2o_req_t *req, gw_endpoint ep, const char *name)
{
    gw_error e;
    gw_error_set(&e, 404, "invalid_request_error", "model_not_found", "model",
                 "The model '%.200s' does not exist", name);
    gw_respond_error(req, ep, &e);
}

/* ==== generation endpoints ==================================================================== */

static void handle_generate(gw_loop *loop, h2o_req_t *req, gw_endpoint ep, gw_api api)
{
    gw_server *srv = loop->srv;
    gw_error e;
    if (atomic_load(&srv->draining)) {
        gw_error_set(&e, 503, "server_error", "service_unavailable", NULL, "the gateway is shutting down");
        e.retry_after_s = (int)(srv->cfg->retry_after_s > 0 ? srv->cfg->retry_after_s : 1);
        atomic_fetch_add(&srv->metrics.rejected_503, 1);
        gw_respond_error(req, ep, &e);
        return;
    }
    if ((int64_t)req->entity.len > srv->cfg->max_body_bytes) {
        gw_error_set(&e, 413, "invalid_request_error", "request_too_large", NULL,
                     "the request body is %zu bytes, more than the limit of %lld", req->entity.len,
                     (long long)srv->cfg->max_body_bytes);
        gw_respond_error(req, ep, &e);
        return;
    }
    gw_limits lim = srv->limits;
    gw_model_info info;
    bool has_info;
    char name[256];
    bool known = served_model(srv, name, sizeof name, &info, &has_info);
    if (has_info) lim.vocab_size = info.vocab_size;
    gw_request *r = NULL;
    if (gw_request_parse(api, req->entity.base, req->entity.base ? req->entity.len : 0, &lim, &r, &e) != ENG_OK) {
        gw_respond_error(req, ep, &e);
        return;
    }
    if (known && strcmp(r->model, name) != 0) {
        model_not_found(req, ep, r->model);
        gw_request_destroy(r);
        return;
    }
    gw_stream_start(loop, req, ep, r, known ? name : r->model);
}

/* ==== models, health, metrics ================================================================== */

static void handle_models(gw_loop *loop, h2o_req_t *req, h2o_iovec_t rest)
{
    gw_server *srv = loop->srv;
    gw_model_info info;
    bool has_info;
    char name[256];
    if (!served_model(srv, name, sizeof name, &info, &has_info)) {
        gw_error e;
        gw_error_set(&e, 503, "server_error", "service_unavailable", NULL, "no engine has reported its model yet");
        e.retry_after_s = (int)(srv->cfg->retry_after_s > 0 ? srv->cfg->retry_after_s : 1);
        gw_respond_error(req, GW_EP_MODELS, &e);
        return;
    }
    gw_model_card card = {.id = name,
                          .created = has_info && info.created > 0 ? info.created : (int64_t)time(NULL),
                          .owned_by = "qnext",
                          .max_model_len = has_info ? info.max_model_len : 0};
    eng_buf b;
    eng_buf_init(&b);
    if (rest.len == 0) {
        gw_models_json(&b, &card, 1);
        respond_buf(req, GW_EP_MODELS, 200, "application/json", &b);
        return;
    }
    /* /v1/models/{id}: ids may contain '/' (e.g. "Qwen/Qwen3-Next-80B-A3B") and %-escapes */
    char id[512];
    size_t n = 0;
    for (size_t i = 0; i < rest.len && n + 1 < sizeof id; i++) {
        char ch = rest.base[i];
        if (ch == '%' && i + 2 < rest.len) {
            char hx[3] = {rest.base[i + 1], rest.base[i + 2], 0};
            char *end;
            long v = strtol(hx, &end, 16);
            if (!*end) {
                ch = (char)v;
                i += 2;
            }
        }
        id[n++] = ch;
    }
    id[n] = 0;
    n = gw_utf8_complete_prefix(id, n);
    id[n] = 0;
    if (strcmp(id, name) != 0) {
        model_not_found(req, GW_EP_MODELS, id);
        eng_buf_free(&b);
        return;
    }
    gw_model_json(&b, &card);
    respond_buf(req, GW_EP_MODELS, 200, "application/json", &b);
}

static void handle_metrics(gw_loop *loop, h2o_req_t *req)
{
    gw_server *srv = loop->srv;
    gw_engine_stat st[64];
    size_t n = gw_pool_stats(srv->pool, st, 64);
    gw_model_info info;
    bool has_info;
    char name[256];
    if (!served_model(srv, name, sizeof name, &info, &has_info)) name[0] = 0;
    eng_buf b;
    eng_buf_init(&b);
    gw_metrics_render(&srv->metrics, name, st, n, &b);
    respond_buf(req, GW_EP_METRICS, 200, "text/plain; version=0.0.4; charset=utf-8", &b);
}

static bool authorized(gw_server *srv, h2o_req_t *req)
{
    if (!gw_auth_enabled(srv->auth)) return true;
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    if (i < 0) return false;
    h2o_iovec_t v = req->headers.entries[i].value;
    return gw_auth_check(srv->auth, v.base, v.len);
}

static void unauthorized(h2o_req_t *req, gw_endpoint ep)
{
    gw_error e;
    bool has = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1) >= 0;
    gw_error_set(&e, 401, "invalid_request_error", "invalid_api_key", NULL, "%s",
                 has ? "Incorrect API key provided."
                     : "You didn't provide an API key. Send it as a Bearer token in the Authorization header.");
    gw_respond_error(req, ep, &e);
}

static gw_endpoint endpoint_of(h2o_iovec_t p)
{
    if (path_is(p, "/v1/chat/completions")) return GW_EP_CHAT;
    if (path_is(p, "/v1/completions")) return GW_EP_COMPLETIONS;
    if (path_is(p, "/v1/models") || (p.len > 11 && !memcmp(p.base, "/v1/models/", 11))) return GW_EP_MODELS;
    if (path_is(p, "/health")) return GW_EP_HEALTH;
    if (path_is(p, "/ready")) return GW_EP_READY;
    if (path_is(p, "/metrics")) return GW_EP_METRICS;
    if (path_is(p, "/openapi.json")) return GW_EP_OPENAPI;
    return GW_EP_OTHER;
}

int gw_handle_request(h2o_handler_t *self, h2o_req_t *req)
{
    (void)self;
    gw_loop *loop = gw_loop_of(req);
    gw_server *srv = loop->srv;
    h2o_iovec_t p = req->path_normalized;
    gw_endpoint ep = endpoint_of(p);
    bool v1 = p.len >= 3 && !memcmp(p.base, "/v1", 3) && (p.len == 3 || p.base[3] == '/');

    if ((v1 || (ep == GW_EP_METRICS && srv->cfg->metrics_require_key)) && !authorized(srv, req)) {
        unauthorized(req, ep);
        return 0;
    }
    switch (ep) {
    case GW_EP_CHAT:
    case GW_EP_COMPLETIONS:
        if (!method_is(req, "POST")) method_not_allowed(req, ep, "POST");
        else handle_generate(loop, req, ep, ep == GW_EP_CHAT ? GW_API_CHAT : GW_API_COMPLETIONS);
        return 0;
    case GW_EP_MODELS:
        if (!method_is(req, "GET")) method_not_allowed(req, ep, "GET");
        else handle_models(loop, req, p.len > 11 ? h2o_iovec_init(p.base + 11, p.len - 11) : h2o_iovec_init("", 0));
        return 0;
    case GW_EP_HEALTH:
        if (!method_is(req, "GET")) method_not_allowed(req, ep, "GET");
        else gw_respond(req, ep, 200, "application/json", H2O_STRLIT("{\"status\":\"ok\"}"));
        return 0;
    case GW_EP_READY:
        if (!method_is(req, "GET")) {
            method_not_allowed(req, ep, "GET");
        } else if (!atomic_load(&srv->draining) && gw_pool_ready(srv->pool)) {
            gw_respond(req, ep, 200, "application/json", H2O_STRLIT("{\"status\":\"ready\"}"));
        } else {
            gw_error e;
            gw_error_set(&e, 503, "server_error", "service_unavailable", NULL, "%s",
                         atomic_load(&srv->draining) ? "the gateway is shutting down" : "no engine is serving");
            e.retry_after_s = (int)(srv->cfg->retry_after_s > 0 ? srv->cfg->retry_after_s : 1);
            gw_respond_error(req, ep, &e);
        }
        return 0;
    case GW_EP_METRICS:
        if (!method_is(req, "GET")) method_not_allowed(req, ep, "GET");
        else handle_metrics(loop, req);
        return 0;
    case GW_EP_OPENAPI:
        if (!method_is(req, "GET")) method_not_allowed(req, ep, "GET");
        else gw_respond(req, ep, 200, "application/json", gw_openapi_doc, gw_openapi_doc_len);
        return 0;
    default: not_found(req); return 0;
    }
}
