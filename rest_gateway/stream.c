/* stream.c - one generation request: h2o response side + its upstream gRPC Generate call(s).
 *
 * A gw_stream lives on its loop thread and is reference-counted, because its two halves end
 * independently (serving-notes §3.3, §3.4):
 *   - the request half: one reference held from creation until h2o disposes the request (a
 *     dispose hook in the request's memory pool; h2o's generator `stop` only marks the client gone
 *     earlier). h2o calls can re-enter those callbacks, so every h2o call is made holding an
 *     extra reference;
 *   - the upstream half: one reference per live gRPC call, dropped when its last batch completed
 *     and its status arrived (then grpc_call_unref).
 * Each call has three batches in flight at most: start (send request + close, receive initial
 * metadata), status (RECV_STATUS_ON_CLIENT), and one RECV_MESSAGE, re-armed after each message
 * while the stream's unsent output is below --stream-buffer-bytes (backpressure reaches the engine
 * through gRPC flow control).
 *
 * Output (streaming): SSE bytes accumulate in `out`; at most one h2o_send is in flight (`inflight`
 * holds its bytes until `proceed`); the last send is FINAL with its bytes copied into the request
 * pool. Headers go out with the first bytes - the first engine output, or the first heartbeat -
 * so an engine that rejects the call at once (429, 503, 400) still yields a clean HTTP status.
 *
 * Failures before any output of a call: UNAVAILABLE or RESOURCE_EXHAUSTED mark the engine
 * saturated (used last) and the call is retried on another engine if there is one; otherwise the gRPC status maps to
 * an OpenAI error (JSON response, or an SSE error event once the stream has started). A client
 * that goes away cancels every upstream call (grpc_call_cancel), which frees the engine slots.
 */
#include "gateway.h"

#include "json_write.h"      /* defines: gw_jw_* */
#include "openai_response.h" /* defines: gw_xcode */
#include "pack.h"            /* defines: gw_pack_generate, gw_unpack_bb */
#include "sse.h"             /* defines: gw_sse_comment */

#include "core/core.h" /* defines: eng_buf, eng_now_ns, eng_log */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct gw_stream gw_stream;

typedef struct upcall {
    gw_stream *s;
    size_t idx; /* prompt index */
    grpc_call *call;
    int engine;
    uint64_t tried; /* engines already tried (bit i) */
    gw_op op_start, op_recv, op_status;
    grpc_metadata_array md_init, md_trail;
    grpc_byte_buffer *send_bb, *recv_bb;
    grpc_status_code status;
    grpc_slice details;
    int pending; /* batches in flight */
    bool live, status_done, got_message, recv_paused, ended_ok;
} upcall;

struct gw_stream {
    int refs;
    gw_loop *loop;
    h2o_linklist_t link; /* in loop->streams */
    h2o_req_t *req;      /* NULL once the request is gone */
    h2o_generator_t gen;
    gw_endpoint ep;
    gw_request *rq;
    gw_xcode *x;
    char id[48];
    char model[256];
    eng_buf out, inflight;
    bool stream;           /* SSE response */
    bool headers_sent;     /* h2o_start_response done */
    bool sending;          /* an IN_PROGRESS h2o_send awaits proceed */
    bool final_pending;    /* the last bytes are in `out` */
    bool final_sent;       /* FINAL or an inline response went out */
    bool failed, complete, detached;
    h2o_timeout_entry_t ping;
    uint64_t t_start, t_first, t_last, t_last_write;
    size_t n_calls, n_ok;
    upcall calls[];
};

typedef struct dispose_hook {
    gw_stream *s;
} dispose_hook;

static void flush(gw_stream *s);
static void fail(gw_stream *s, const gw_error *e);
static bool call_start(upcall *c);

/* ==== lifetime ================================================================================ */

static void ref(gw_stream *s)
{
    s->refs++;
}

static void unref(gw_stream *s)
{
    if (--s->refs > 0) return;
    gw_loop *loop = s->loop;
    if (h2o_timeout_is_linked(&s->ping)) h2o_timeout_unlink(&s->ping);
    h2o_linklist_unlink(&s->link);
    loop->n_streams--;
    atomic_fetch_sub(&loop->srv->metrics.running, 1);
    gw_xcode_destroy(s->x);
    gw_request_destroy(s->rq);
    eng_buf_free(&s->out);
    eng_buf_free(&s->inflight);
    eng_free(s);
}

static void cancel_calls(gw_stream *s)
{
    for (size_t i = 0; i < s->n_calls; i++)
        if (s->calls[i].live) grpc_call_cancel(s->calls[i].call, NULL);
}

/* The client is gone (generator stop) or the request was disposed. Idempotent. */
static void detach(gw_stream *s)
{
    if (s->detached) return;
    s->detached = true;
    s->req = NULL;
    if (h2o_timeout_is_linked(&s->ping)) h2o_timeout_unlink(&s->ping);
    if (!s->final_sent && !s->complete && !s->failed) {
        gw_metrics *m = &s->loop->srv->metrics;
        atomic_fetch_add(&m->client_disconnected, 1);
        if (!s->headers_sent) gw_metrics_http(m, s->ep, 499);
    }
    cancel_calls(s);
}

static void on_dispose(void *p)
{
    gw_stream *s = ((dispose_hook *)p)->s;
    detach(s);
    unref(s);
}

static void on_stop(h2o_generator_t *g, h2o_req_t *req)
{
    (void)req;
    detach(H2O_STRUCT_FROM_MEMBER(gw_stream, gen, g));
}

/* ==== output ================================================================================== */

static void on_proceed(h2o_generator_t *g, h2o_req_t *req)
{
    (void)req;
    gw_stream *s = H2O_STRUCT_FROM_MEMBER(gw_stream, gen, g);
    s->sending = false;
    s->inflight.len = 0;
    ref(s);
    if ((int64_t)s->out.len < s->loop->srv->cfg->stream_buffer_bytes) {
        for (size_t i = 0; i < s->n_calls; i++) {
            upcall *c = &s->calls[i];
            if (c->recv_paused && c->live && !s->failed) {
                c->recv_paused = false;
                grpc_op op;
                memset(&op, 0, sizeof op);
                op.op = GRPC_OP_RECV_MESSAGE;
                op.data.recv_message.recv_message = &c->recv_bb;
                c->pending++;
                if (grpc_call_start_batch(c->call, &op, 1, &c->op_recv, NULL) != GRPC_CALL_OK) c->pending--;
            }
        }
    }
    flush(s);
    unref(s);
}

static void start_sse(gw_stream *s)
{
    h2o_req_t *req = s->req;
    req->res.status = 200;
    req->res.reason = "OK";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT(GW_SSE_CONTENT_TYPE));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-cache"));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-accel-buffering"), 0, NULL, H2O_STRLIT("no"));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-request-id"), 0, NULL, s->id, strlen(s->id));
    s->gen.proceed = on_proceed;
    s->gen.stop = on_stop;
    s->headers_sent = true;
    gw_metrics_http(&s->loop->srv->metrics, s->ep, 200);
    h2o_start_response(req, &s->gen);
}

/* Hands pending SSE bytes to h2o (one send in flight). */
static void flush(gw_stream *s)
{
    if (!s->stream || s->detached || s->final_sent || s->sending) return;
    if (s->out.len == 0 && !s->final_pending) return;
    ref(s);
    if (!s->headers_sent) start_sse(s);
    s->t_last_write = eng_now_ns();
    if (s->final_pending) {
        h2o_iovec_t iov = h2o_iovec_init(NULL, 0);
        if (s->out.len) {
            iov.base = h2o_mem_alloc_pool(&s->req->pool, s->out.len);
            memcpy(iov.base, s->out.data, s->out.len);
            iov.len = s->out.len;
        }
        s->out.len = 0;
        s->final_sent = true;
        if (h2o_timeout_is_linked(&s->ping)) h2o_timeout_unlink(&s->ping);
        h2o_send(s->req, &iov, iov.len ? 1 : 0, H2O_SEND_STATE_FINAL);
    } else {
        eng_buf t = s->inflight; /* empty: no send in flight */
        s->inflight = s->out;
        s->out = t;
        s->out.len = 0;
        s->sending = true;
        h2o_iovec_t iov = h2o_iovec_init(s->inflight.data, s->inflight.len);
        h2o_send(s->req, &iov, 1, H2O_SEND_STATE_IN_PROGRESS);
    }
    unref(s);
}

static void respond_json(gw_stream *s, int status, const char *body, size_t len)
{
    if (s->detached || s->final_sent) return;
    s->final_sent = true;
    ref(s);
    h2o_add_header_by_str(&s->req->pool, &s->req->res.headers, H2O_STRLIT("x-request-id"), 0, NULL, s->id,
                          strlen(s->id));
    gw_respond(s->req, s->ep, status, "application/json", body, len);
    unref(s);
}

/* Ends the request with an error: a JSON response while nothing was sent, else an SSE error event
 * and the end of the stream. Cancels the other upstream calls. */
static void fail(gw_stream *s, const gw_error *e)
{
    if (s->failed || s->complete) return;
    s->failed = true;
    cancel_calls(s);
    if (s->detached || s->final_sent) return;
    gw_metrics *m = &s->loop->srv->metrics;
    if (e->status == 429) atomic_fetch_add(&m->rejected_429, 1);
    if (e->status == 503) atomic_fetch_add(&m->rejected_503, 1);
    if (e->status >= 500 && e->status != 503)
        eng_log(ENG_LOG_WARN, "gateway: %s: %d %s", s->id, e->status, e->message);
    if (!s->headers_sent) {
        s->final_sent = true;
        ref(s);
        gw_respond_error(s->req, s->ep, e);
        unref(s);
        return;
    }
    gw_sse_error(&s->out, e);
    s->final_pending = true;
    flush(s);
}

static void complete(gw_stream *s)
{
    gw_error err;
    s->complete = true;
    eng_status st = gw_xcode_finish(s->x, &s->out, &err);
    if (st) {
        s->complete = false;
        fail(s, &err);
        return;
    }
    gw_metrics *m = &s->loop->srv->metrics;
    int64_t pt, ct;
    gw_xcode_usage(s->x, &pt, &ct);
    atomic_fetch_add(&m->prompt_tokens, (uint64_t)(pt > 0 ? pt : 0));
    atomic_fetch_add(&m->generation_tokens, (uint64_t)(ct > 0 ? ct : 0));
    atomic_fetch_add(&m->success[gw_finish_from_str(gw_xcode_finish_reason(s->x))], 1);
    gw_hist_observe(&m->e2e, (double)(eng_now_ns() - s->t_start) / 1e9, 1);
    if (s->stream) {
        s->final_pending = true;
        flush(s);
    } else {
        respond_json(s, 200, s->out.data ? s->out.data : "", s->out.len);
    }
}

/* ==== gRPC status mapping ===================================================================== */

static void map_status(gw_stream *s, upcall *c, gw_error *e)
{
    char details[400];
    size_t dl = GRPC_SLICE_LENGTH(c->details);
    if (dl >= sizeof details) dl = sizeof details - 1;
    memcpy(details, GRPC_SLICE_START_PTR(c->details), dl);
    details[dl] = 0;
    dl = gw_utf8_complete_prefix(details, dl);
    details[dl] = 0;
    const char *d = details[0] ? details : "no details";
    int retry = (int)s->loop->srv->cfg->retry_after_s;
    char ra[32];
    if (gw_metadata_get(&c->md_trail, "retry-after-ms", ra, sizeof ra)) {
        long ms = strtol(ra, NULL, 10);
        if (ms > 0) retry = (int)((ms + 999) / 1000);
    }
    switch (c->status) {
    case GRPC_STATUS_INVALID_ARGUMENT:
    case GRPC_STATUS_FAILED_PRECONDITION:
    case GRPC_STATUS_OUT_OF_RANGE:
        gw_error_set(e, 400, "invalid_request_error", NULL, NULL, "%s", d);
        break;
    case GRPC_STATUS_NOT_FOUND: gw_error_set(e, 404, "invalid_request_error", "not_found", NULL, "%s", d); break;
    case GRPC_STATUS_UNAUTHENTICATED:
        gw_error_set(e, 401, "invalid_request_error", "invalid_api_key", NULL, "%s", d);
        break;
    case GRPC_STATUS_PERMISSION_DENIED: gw_error_set(e, 403, "permission_error", NULL, NULL, "%s", d); break;
    case GRPC_STATUS_RESOURCE_EXHAUSTED:
        if (strstr(d, "larger than max")) {
            gw_error_set(e, 413, "invalid_request_error", "request_too_large", NULL, "the request is too large for the engine: %s", d);
        } else {
            gw_error_set(e, 429, "rate_limit_error", "rate_limit_exceeded", NULL, "the engine is overloaded: %s", d);
            e->retry_after_s = retry > 0 ? retry : 1;
        }
        break;
    case GRPC_STATUS_UNAVAILABLE:
    case GRPC_STATUS_CANCELLED:
        gw_error_set(e, 503, "server_error", "service_unavailable", NULL, "the engine is unavailable: %s", d);
        e->retry_after_s = retry > 0 ? retry : 1;
        break;
    case GRPC_STATUS_DEADLINE_EXCEEDED:
        gw_error_set(e, 504, "server_error", "timeout", NULL, "the request took longer than --request-timeout (%g s)",
                     s->loop->srv->cfg->request_timeout_s);
        break;
    case GRPC_STATUS_UNIMPLEMENTED: gw_error_set(e, 501, "server_error", NULL, NULL, "not implemented by the engine: %s", d); break;
    default: gw_error_set(e, 500, "server_error", NULL, NULL, "engine error (gRPC status %d): %s", (int)c->status, d);
    }
}

/* ==== upstream call =========================================================================== */

static void call_cleanup(upcall *c)
{
    if (c->call) grpc_call_unref(c->call);
    c->call = NULL;
    grpc_metadata_array_destroy(&c->md_init);
    grpc_metadata_array_destroy(&c->md_trail);
    grpc_slice_unref(c->details);
    c->details = grpc_empty_slice();
    if (c->send_bb) grpc_byte_buffer_destroy(c->send_bb);
    c->send_bb = NULL;
    if (c->recv_bb) grpc_byte_buffer_destroy(c->recv_bb);
    c->recv_bb = NULL;
    if (c->live) c->s->loop->n_calls_live--;
    c->live = false;
}

/* The call's last batch is done: release it, retry elsewhere, or record the outcome. */
static void call_check_done(upcall *c)
{
    if (c->pending > 0 || !c->status_done) return;
    gw_stream *s = c->s;
    gw_pool *pool = gw_upstream_pool(s->loop->up);
    gw_pool_release(pool, c->engine);
    grpc_status_code st = c->status;
    bool retried = false;
    if (st != GRPC_STATUS_OK && !c->got_message && !s->failed && !s->detached &&
        (st == GRPC_STATUS_UNAVAILABLE || st == GRPC_STATUS_RESOURCE_EXHAUSTED)) {
        char ra[32];
        bool too_large = GRPC_SLICE_LENGTH(c->details) > 0 &&
                         memmem(GRPC_SLICE_START_PTR(c->details), GRPC_SLICE_LENGTH(c->details), "larger than max", 15);
        if (!too_large) {
            long ms = gw_metadata_get(&c->md_trail, "retry-after-ms", ra, sizeof ra) ? strtol(ra, NULL, 10) : 0;
            gw_pool_mark_saturated(pool, c->engine, ms);
            if (c->engine >= 0 && c->engine < 64) c->tried |= 1ull << c->engine;
            int why;
            /* retry only if another engine can take it; otherwise report this engine's answer */
            int other = gw_pool_acquire(pool, c->tried, &why);
            if (other >= 0) {
                gw_pool_release(pool, other);
                call_cleanup(c);
                retried = true;
                call_start(c);
            }
        }
    }
    if (!retried) {
        if (st == GRPC_STATUS_OK) {
            c->ended_ok = true;
            s->n_ok++;
        } else if (!s->failed && !s->detached) {
            gw_error e;
            map_status(s, c, &e);
            fail(s, &e);
        }
        call_cleanup(c);
        if (s->n_ok == s->n_calls && !s->failed && !s->detached) complete(s);
    }
    unref(s); /* the reference of the finished call */
}

static void on_start_done(gw_op *op, bool ok)
{
    (void)ok;
    upcall *c = H2O_STRUCT_FROM_MEMBER(upcall, op_start, op);
    c->pending--;
    call_check_done(c);
}

static void on_status_done(gw_op *op, bool ok)
{
    (void)ok;
    upcall *c = H2O_STRUCT_FROM_MEMBER(upcall, op_status, op);
    c->pending--;
    c->status_done = true;
    call_check_done(c);
}

static void handle_message(upcall *c, grpc_byte_buffer *bb)
{
    gw_stream *s = c->s;
    gw_error e;
    Qnext__V1__GenerateResponse *m =
        (Qnext__V1__GenerateResponse *)gw_unpack_bb(&qnext__v1__generate_response__descriptor, bb);
    if (!m) {
        gw_error_set(&e, 502, "server_error", NULL, NULL, "the engine sent a malformed message");
        fail(s, &e);
        return;
    }
    c->got_message = true;
    gw_metrics *mt = &s->loop->srv->metrics;
    if (m->kind_case == QNEXT__V1__GENERATE_RESPONSE__KIND_DELTA && m->delta && m->delta->n_token_ids) {
        uint64_t now = eng_now_ns();
        if (!s->t_first) {
            s->t_first = now;
            gw_hist_observe(&mt->ttft, (double)(now - s->t_start) / 1e9, 1);
        } else {
            size_t k = m->delta->n_token_ids;
            gw_hist_observe(&mt->itl, (double)(now - s->t_last) / 1e9 / (double)k, k);
        }
        s->t_last = now;
    }
    eng_status st = gw_xcode_feed(s->x, c->idx, m, &s->out, &e);
    protobuf_c_message_free_unpacked(&m->base, NULL);
    if (st) {
        if (st == ENG_ERR_NOMEM) gw_error_set(&e, 500, "server_error", NULL, NULL, "out of memory");
        fail(s, &e);
        return;
    }
    flush(s);
}

static void on_recv_done(gw_op *op, bool ok)
{
    (void)ok;
    upcall *c = H2O_STRUCT_FROM_MEMBER(upcall, op_recv, op);
    gw_stream *s = c->s;
    c->pending--;
    grpc_byte_buffer *bb = c->recv_bb;
    c->recv_bb = NULL;
    if (bb) {
        if (!s->failed && !s->detached) handle_message(c, bb);
        grpc_byte_buffer_destroy(bb);
        if (!s->failed && !s->detached && c->live) {
            if (s->stream && (int64_t)s->out.len >= s->loop->srv->cfg->stream_buffer_bytes) {
                c->recv_paused = true;
            } else {
                grpc_op o;
                memset(&o, 0, sizeof o);
                o.op = GRPC_OP_RECV_MESSAGE;
                o.data.recv_message.recv_message = &c->recv_bb;
                c->pending++;
                if (grpc_call_start_batch(c->call, &o, 1, &c->op_recv, NULL) != GRPC_CALL_OK) c->pending--;
            }
        }
    }
    call_check_done(c);
}

/* Picks an engine and starts the call. On failure the stream fails (429/503/500) and false is
 * returned. Takes one stream reference on success. */
static bool call_start(upcall *c)
{
    gw_stream *s = c->s;
    gw_loop *loop = s->loop;
    gw_pool *pool = gw_upstream_pool(loop->up);
    gw_error e;
    int why = 503;
    c->engine = gw_pool_acquire(pool, c->tried, &why);
    if (c->engine < 0) {
        if (why == 429) {
            gw_error_set(&e, 429, "rate_limit_error", "rate_limit_exceeded", NULL,
                         "all engines are busy; retry later");
        } else {
            gw_error_set(&e, 503, "server_error", "service_unavailable", NULL, "no engine is available");
        }
        e.retry_after_s = (int)(loop->srv->cfg->retry_after_s > 0 ? loop->srv->cfg->retry_after_s : 1);
        fail(s, &e);
        return false;
    }
    char rid[64];
    if (s->n_calls > 1) snprintf(rid, sizeof rid, "%s-%zu", s->id, c->idx);
    else snprintf(rid, sizeof rid, "%s", s->id);
    uint8_t *bytes = NULL;
    size_t len = 0;
    if (gw_pack_generate(s->rq, c->idx, rid, &bytes, &len) != ENG_OK) goto internal;
    c->send_bb = gw_pack_to_bb(bytes, len);
    eng_free(bytes);
    c->call = gw_upstream_generate_call(loop->up, c->engine, loop->srv->cfg->request_timeout_s);
    if (!c->send_bb || !c->call) goto internal;
    grpc_metadata_array_init(&c->md_init);
    grpc_metadata_array_init(&c->md_trail);
    c->details = grpc_empty_slice();
    c->status = GRPC_STATUS_UNKNOWN;
    c->status_done = false;
    c->got_message = false;
    c->recv_paused = false;

    grpc_op ops[4];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = c->send_bb;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &c->md_init;
    if (grpc_call_start_batch(c->call, ops, 4, &c->op_start, NULL) != GRPC_CALL_OK) goto internal_call;
    c->pending = 1;
    c->live = true;
    loop->n_calls_live++;
    ref(s);
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[0].data.recv_status_on_client.trailing_metadata = &c->md_trail;
    ops[0].data.recv_status_on_client.status = &c->status;
    ops[0].data.recv_status_on_client.status_details = &c->details;
    if (grpc_call_start_batch(c->call, ops, 1, &c->op_status, NULL) == GRPC_CALL_OK) c->pending++;
    else {
        /* cannot learn the status: end the call; its start batch completes cancelled */
        c->status_done = true;
        c->status = GRPC_STATUS_INTERNAL;
        grpc_call_cancel(c->call, NULL);
    }
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_RECV_MESSAGE;
    ops[0].data.recv_message.recv_message = &c->recv_bb;
    if (grpc_call_start_batch(c->call, ops, 1, &c->op_recv, NULL) == GRPC_CALL_OK) c->pending++;
    return true;

internal_call:
    grpc_metadata_array_destroy(&c->md_init);
    grpc_metadata_array_destroy(&c->md_trail);
internal:
    if (c->call) grpc_call_unref(c->call);
    c->call = NULL;
    if (c->send_bb) grpc_byte_buffer_destroy(c->send_bb);
    c->send_bb = NULL;
    gw_pool_release(pool, c->engine);
    gw_error_set(&e, 500, "server_error", NULL, NULL, "cannot start the upstream call");
    fail(s, &e);
    return false;
}

/* ==== heartbeats ============================================================================== */

static void on_ping(h2o_timeout_entry_t *entry)
{
    gw_stream *s = H2O_STRUCT_FROM_MEMBER(gw_stream, ping, entry);
    if (s->detached || s->final_sent || s->failed || s->complete) return;
    double interval = s->loop->srv->cfg->sse_ping_interval_s;
    uint64_t now = eng_now_ns();
    ref(s);
    if (!s->sending && s->out.len == 0 && (double)(now - s->t_last_write) >= interval * 1e9 * 0.999) {
        gw_sse_comment(&s->out, "ping");
        flush(s);
    }
    if (!s->detached && !s->final_sent && !h2o_timeout_is_linked(&s->ping))
        h2o_timeout_link(s->loop->ctx.loop, &s->loop->ping_timeout, &s->ping);
    unref(s);
}

/* ==== entry points ============================================================================ */

static void make_id(gw_loop *loop, const char *prefix, char *out, size_t cap)
{
    uint64_t x = loop->rng;
    uint64_t a, b;
    x ^= x << 13, x ^= x >> 7, x ^= x << 17, a = x;
    x ^= x << 13, x ^= x >> 7, x ^= x << 17, b = x;
    loop->rng = x;
    snprintf(out, cap, "%s%016llx%08llx", prefix, (unsigned long long)a, (unsigned long long)(b & 0xffffffffu));
}

void gw_stream_start(gw_loop *loop, h2o_req_t *req, gw_endpoint ep, gw_request *r, const char *model)
{
    gw_server *srv = loop->srv;
    gw_error e;
    if (atomic_load(&srv->metrics.running) >= srv->cfg->max_concurrent) {
        gw_error_set(&e, 429, "rate_limit_error", "rate_limit_exceeded", NULL,
                     "too many requests in flight (--max-concurrent-requests %lld); retry later",
                     (long long)srv->cfg->max_concurrent);
        e.retry_after_s = (int)(srv->cfg->retry_after_s > 0 ? srv->cfg->retry_after_s : 1);
        atomic_fetch_add(&srv->metrics.rejected_429, 1);
        gw_respond_error(req, ep, &e);
        gw_request_destroy(r);
        return;
    }
    size_t n_calls = r->api == GW_API_CHAT ? 1 : r->n_prompts;
    gw_stream *s = eng_calloc(1, sizeof *s + n_calls * sizeof(upcall));
    dispose_hook *hook = s ? h2o_mem_alloc_shared(&req->pool, sizeof *hook, on_dispose) : NULL;
    if (!hook) {
        eng_free(s);
        gw_request_destroy(r);
        gw_error_set(&e, 500, "server_error", NULL, NULL, "out of memory");
        gw_respond_error(req, ep, &e);
        return;
    }
    hook->s = s;
    s->refs = 1; /* the request half, released by on_dispose */
    s->loop = loop;
    s->req = req;
    s->ep = ep;
    s->rq = r;
    s->stream = r->stream;
    s->n_calls = n_calls;
    s->t_start = eng_now_ns();
    s->t_last_write = s->t_start;
    s->ping.cb = on_ping;
    eng_buf_init(&s->out);
    eng_buf_init(&s->inflight);
    h2o_linklist_insert(&loop->streams, &s->link);
    loop->n_streams++;
    atomic_fetch_add(&srv->metrics.running, 1);
    make_id(loop, r->api == GW_API_CHAT ? "chatcmpl-" : "cmpl-", s->id, sizeof s->id);
    snprintf(s->model, sizeof s->model, "%s", model);
    for (size_t i = 0; i < n_calls; i++) {
        upcall *c = &s->calls[i];
        c->s = s;
        c->idx = i;
        c->engine = -1;
        c->details = grpc_empty_slice();
        c->op_start.done = on_start_done;
        c->op_recv.done = on_recv_done;
        c->op_status.done = on_status_done;
    }
    gw_xcode_opts xo = {.id = s->id, .model = s->model, .created = (int64_t)time(NULL),
                        .mirror_reasoning = srv->cfg->mirror_reasoning};
    if (gw_xcode_create(r, &xo, &s->x) != ENG_OK) {
        gw_error_set(&e, 500, "server_error", NULL, NULL, "out of memory");
        fail(s, &e);
        return;
    }
    ref(s);
    for (size_t i = 0; i < n_calls && !s->failed; i++) call_start(&s->calls[i]);
    if (s->stream && srv->cfg->sse_ping_interval_s > 0 && !s->failed && !s->detached)
        h2o_timeout_link(loop->ctx.loop, &loop->ping_timeout, &s->ping);
    unref(s);
}

void gw_stream_cancel_all(gw_loop *loop)
{
    for (h2o_linklist_t *l = loop->streams.next; l != &loop->streams; l = l->next) {
        gw_stream *s = H2O_STRUCT_FROM_MEMBER(gw_stream, link, l);
        cancel_calls(s);
    }
}
