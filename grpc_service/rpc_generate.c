/* grpc_service/rpc_generate.c - Generate (server streaming) and Abort, and the router that maps
 * engine request ids and caller request ids to calls.
 *
 * One Generate call:
 *   accept   (CQ thread) unpack + validate -> eng_submit under the router lock -> registered in the
 *            router, which holds a reference until the engine has sent every Final. Errors before
 *            that end the call at once with a status (INVALID_ARGUMENT, RESOURCE_EXHAUSTED with a
 *            retry-after-ms hint, UNAVAILABLE while loading or draining).
 *   events   (engine-host thread) gsvc_stream_push, then pump: if no send is in flight, pack the
 *            next queued item and start its batch right there.
 *   send done(CQ thread) pump again: the next item (coalesced meanwhile) or the final status.
 *   close    (CQ thread) a cancelled call (client cancel, deadline, broken connection) -> eng_cancel;
 *            the engine answers with CANCELLED Finals within a step, which unregisters the call.
 * The stream state machine itself is stream.c (no gRPC there, unit-tested on its own).
 */
#include "server_impl.h"

#include "convert.h" /* defines: gsvc_gen_req, gsvc_resp_build */
#include "stream.h"  /* defines: gsvc_stream */
#include "util.h"
#include "wire.h"    /* defines: gsvc_unpack_bb */

#include "qnext/tokenizer.h"

#include <grpc/status.h>

#include <stdio.h>
#include <string.h>

struct gen_call {
    gsvc_call base;
    Qnext__V1__GenerateRequest *msg;
    gsvc_gen_req req;
    gsvc_stream st;
    bool st_ready;     /* st initialised */
    bool streaming;    /* accepted into the engine: sends go through st */
    bool closed;       /* RECV_CLOSE came */
    bool cancelled;    /* ... with cancelled = 1 */
    bool cancel_sent;  /* eng_cancel was called */
    bool engine_done;  /* the engine sent every Final (or failed): no more events */
    bool counted;      /* counted in active_streams */
    char *name;        /* the request_id (owned) */
    uint64_t eng_id;
    gen_call *next_id, *next_name; /* router chains */
};

/* ==== router ================================================================================== */

static size_t bucket_id(uint64_t id)
{
    id ^= id >> 33;
    id *= 0xFF51AFD7ED558CCDull;
    id ^= id >> 33;
    return (size_t)(id & (GSVC_ROUTER_BUCKETS - 1));
}

static size_t bucket_name(const char *s)
{
    uint64_t h = 0xCBF29CE484222325ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001B3ull;
    return (size_t)(h & (GSVC_ROUTER_BUCKETS - 1));
}

/* Router lock held. */
static gen_call *find_id(gsvc_router *r, uint64_t id)
{
    for (gen_call *g = r->by_id[bucket_id(id)]; g; g = g->next_id)
        if (g->eng_id == id) return g;
    return NULL;
}

static gen_call *find_name(gsvc_router *r, const char *name)
{
    for (gen_call *g = r->by_name[bucket_name(name)]; g; g = g->next_name)
        if (!strcmp(g->name, name)) return g;
    return NULL;
}

static void router_insert(gsvc_router *r, gen_call *g)
{
    size_t bi = bucket_id(g->eng_id), bn = bucket_name(g->name);
    g->next_id = r->by_id[bi];
    r->by_id[bi] = g;
    g->next_name = r->by_name[bn];
    r->by_name[bn] = g;
}

/* Removes g if present; true if it was. Router lock held. */
static bool router_remove(gsvc_router *r, gen_call *g)
{
    bool found = false;
    for (gen_call **p = &r->by_id[bucket_id(g->eng_id)]; *p; p = &(*p)->next_id)
        if (*p == g) {
            *p = g->next_id;
            found = true;
            break;
        }
    for (gen_call **p = &r->by_name[bucket_name(g->name)]; *p; p = &(*p)->next_name)
        if (*p == g) {
            *p = g->next_name;
            break;
        }
    return found;
}

/* Drops g from the router and releases the router's reference (if it was still there). */
static void unregister(gsvc_server *s, gen_call *g)
{
    pthread_mutex_lock(&s->router.mu);
    bool was = router_remove(&s->router, g);
    pthread_mutex_unlock(&s->router.mu);
    if (was) gsvc_call_unref(&g->base);
}

/* ==== sending ================================================================================= */

/* The client can no longer be served: stop the engine's work for it. g->base.mu held. */
static void request_cancel(gen_call *g)
{
    if (g->streaming && !g->engine_done && !g->cancel_sent) {
        eng_engine *e = gsvc_engine(g->base.srv);
        g->cancel_sent = true;
        if (e) eng_cancel(e, g->eng_id);
    }
}

/* Starts the next send if none is in flight. g->base.mu held. */
static void pump(gen_call *g)
{
    gsvc_call *c = &g->base;
    for (;;) {
        const gsvc_item *it;
        gsvc_stream_act act = gsvc_stream_next(&g->st, &it);
        if (act == GSVC_ACT_NONE) return;
        if (act == GSVC_ACT_SEND_STATUS) {
            if (!gsvc_call_send_status(c, (grpc_status_code)g->st.status_code, gsvc_buf_str(&g->st.status_message), -1))
                gsvc_stream_sent(&g->st, false);
            return;
        }
        eng_engine *e = gsvc_engine(c->srv);
        gsvc_resp r;
        if (gsvc_resp_build(&r, it, g->name, e ? eng_get_tokenizer(e) : NULL) != ENG_OK) {
            gsvc_stream_sent(&g->st, true);
            gsvc_stream_abort(&g->st, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory building a response");
            request_cancel(g);
            continue;
        }
        bool ok = gsvc_call_send_message(c, &r.msg.base);
        gsvc_resp_free(&r);
        if (ok) return;
        gsvc_stream_sent(&g->st, false); /* the call is gone */
        request_cancel(g);
        return;
    }
}

/* Ends a call that never reached the engine. g->base.mu held. */
static void finish_early(gen_call *g, grpc_status_code code, const char *message, int retry_after_ms)
{
    gsvc_log(GSVC_LOG_DEBUG, "Generate: %s (status %d)", message, (int)code);
    gsvc_call_send_status(&g->base, code, message, retry_after_ms);
}

/* ==== steps =================================================================================== */

static void gen_on_accept(gsvc_call *c)
{
    gen_call *g = (gen_call *)c;
    gsvc_server *s = c->srv;
    char detail[1280];
    pthread_mutex_lock(&c->mu);
    if (g->closed && g->cancelled) goto out; /* the client already left */
    if (atomic_load(&s->draining)) {
        finish_early(g, GRPC_STATUS_UNAVAILABLE, "the server is shutting down", -1);
        goto out;
    }
    eng_engine *e = gsvc_engine(s);
    if (!e || atomic_load(&s->fatal)) {
        finish_early(g, GRPC_STATUS_UNAVAILABLE,
                     atomic_load(&s->model_state) == GSVC_MODEL_LOADING ? "the model is still loading" : "the engine is not available",
                     -1);
        goto out;
    }
    ProtobufCMessage *m;
    eng_status st = gsvc_unpack_bb(&qnext__v1__generate_request__descriptor, c->payload, &m);
    if (st == ENG_OK) {
        g->msg = (Qnext__V1__GenerateRequest *)m;
        st = gsvc_gen_req_init(&g->req, g->msg);
    }
    if (st == ENG_OK) {
        st = gsvc_stream_init(&g->st, g->req.n_choices, s->opt.stream_backlog_bytes, g->req.skip_text);
        g->st_ready = st == ENG_OK;
    }
    if (st != ENG_OK) {
        snprintf(detail, sizeof detail, "%s", eng_err_last());
        finish_early(g, (grpc_status_code)gsvc_status_to_grpc(st), detail, -1);
        goto out;
    }

    pthread_mutex_lock(&s->router.mu);
    if (atomic_load(&s->fatal)) {
        st = eng_err_set(ENG_ERR_INTERNAL, "the engine is not available");
    } else if (g->msg->request_id[0]) {
        if (find_name(&s->router, g->msg->request_id))
            st = eng_err_set(ENG_ERR_INVALID, "request_id \"%s\" is already in use by a running request", g->msg->request_id);
        else if (!(g->name = gsvc_strdup(g->msg->request_id)))
            st = eng_err_set(ENG_ERR_NOMEM, "out of memory");
    } else {
        char buf[32];
        do snprintf(buf, sizeof buf, "gen-%llu", (unsigned long long)++s->router.next_name);
        while (find_name(&s->router, buf));
        if (!(g->name = gsvc_strdup(buf))) st = eng_err_set(ENG_ERR_NOMEM, "out of memory");
    }
    if (st == ENG_OK) st = eng_submit(e, &g->req.req, &g->eng_id);
    if (st == ENG_OK) {
        router_insert(&s->router, g);
        gsvc_call_ref(c); /* the router's */
        g->streaming = true;
        g->counted = true;
        atomic_fetch_add(&s->active_streams, 1);
    }
    pthread_mutex_unlock(&s->router.mu);
    if (st != ENG_OK) {
        snprintf(detail, sizeof detail, "%s", eng_err_last());
        if (st == ENG_ERR_QUEUE_FULL) finish_early(g, GRPC_STATUS_RESOURCE_EXHAUSTED, detail, s->opt.retry_after_ms);
        else if (atomic_load(&s->fatal)) finish_early(g, GRPC_STATUS_UNAVAILABLE, detail, -1);
        else finish_early(g, (grpc_status_code)gsvc_status_to_grpc(st), detail, -1);
        goto out;
    }
    gsvc_log(GSVC_LOG_DEBUG, "Generate %s: engine request %llu, %d choice(s)", g->name, (unsigned long long)g->eng_id,
             g->req.n_choices);
    if (g->closed) { /* RECV_CLOSE raced ahead of us */
        gsvc_stream_closed(&g->st, g->cancelled);
        if (g->cancelled) request_cancel(g);
    }
    pump(g);
out:
    pthread_mutex_unlock(&c->mu);
}

static void gen_on_send_done(gsvc_call *c, bool ok)
{
    gen_call *g = (gen_call *)c;
    pthread_mutex_lock(&c->mu);
    if (g->streaming) {
        gsvc_stream_sent(&g->st, ok);
        if (!ok) request_cancel(g);
        else pump(g);
    }
    pthread_mutex_unlock(&c->mu);
}

static void gen_on_close(gsvc_call *c, bool cancelled)
{
    gen_call *g = (gen_call *)c;
    pthread_mutex_lock(&c->mu);
    g->closed = true;
    g->cancelled = cancelled;
    if (g->streaming) {
        gsvc_stream_closed(&g->st, cancelled);
        if (cancelled) {
            gsvc_log(GSVC_LOG_DEBUG, "Generate %s: cancelled by the client", g->name);
            request_cancel(g);
        }
    }
    pthread_mutex_unlock(&c->mu);
}

static void gen_destroy(gsvc_call *c)
{
    gen_call *g = (gen_call *)c;
    gsvc_gen_req_free(&g->req);
    if (g->msg) gsvc_msg_free(&g->msg->base);
    if (g->st_ready) gsvc_stream_free(&g->st);
    gsvc_free(g->name);
    if (g->counted && atomic_fetch_sub(&c->srv->active_streams, 1) == 1) gsvc_server_signal(c->srv);
}

const gsvc_method gsvc_m_generate = {
    .path = "/qnext.v1.Generator/Generate",
    .call_size = sizeof(gen_call),
    .n_accepts = 4,
    .on_accept = gen_on_accept,
    .on_send_done = gen_on_send_done,
    .on_close = gen_on_close,
    .destroy = gen_destroy,
};

/* ==== engine events =========================================================================== */

void gsvc_generate_route(gsvc_server *s, const eng_event *evs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const eng_event *ev = &evs[i];
        pthread_mutex_lock(&s->router.mu);
        gen_call *g = find_id(&s->router, ev->request_id);
        if (g) gsvc_call_ref(&g->base);
        pthread_mutex_unlock(&s->router.mu);
        if (!g) continue;

        pthread_mutex_lock(&g->base.mu);
        if (ev->kind == ENG_EV_ERROR) {
            const char *msg = ev->error_message && ev->error_message[0] ? ev->error_message : eng_status_str(ev->error);
            gsvc_log(GSVC_LOG_WARN, "Generate %s: engine error: %s", g->name, msg);
            gsvc_stream_error(&g->st, gsvc_status_to_grpc(ev->error), msg);
            g->engine_done = true;
        } else {
            eng_status st = gsvc_stream_push(&g->st, ev);
            if (st == ENG_ERR_QUEUE_FULL) {
                gsvc_log(GSVC_LOG_WARN, "Generate %s: dropping a client that does not read (%s)", g->name, eng_err_last());
                gsvc_stream_abort(&g->st, GRPC_STATUS_RESOURCE_EXHAUSTED, "the client is not reading its stream");
                request_cancel(g);
            } else if (st != ENG_OK) {
                gsvc_log(GSVC_LOG_ERROR, "Generate %s: %s", g->name, eng_err_last());
                gsvc_stream_abort(&g->st, st == ENG_ERR_NOMEM ? GRPC_STATUS_RESOURCE_EXHAUSTED : GRPC_STATUS_INTERNAL,
                                  eng_err_last());
                request_cancel(g);
            }
            if (gsvc_stream_all_final(&g->st)) g->engine_done = true;
        }
        bool done = g->engine_done;
        pump(g);
        pthread_mutex_unlock(&g->base.mu);
        if (done) unregister(s, g);
        gsvc_call_unref(&g->base);
    }
}

/* References to every registered call (router lock taken here). */
static gen_call **collect(gsvc_server *s, size_t *n, bool remove)
{
    pthread_mutex_lock(&s->router.mu);
    size_t count = 0;
    for (size_t b = 0; b < GSVC_ROUTER_BUCKETS; b++)
        for (gen_call *g = s->router.by_id[b]; g; g = g->next_id) count++;
    gen_call **all = gsvc_malloc((count ? count : 1) * sizeof *all);
    size_t k = 0;
    for (size_t b = 0; all && b < GSVC_ROUTER_BUCKETS; b++) {
        for (gen_call *g = s->router.by_id[b]; g; g = g->next_id) {
            all[k++] = g;
            if (!remove) gsvc_call_ref(&g->base); /* when removing, the router's reference moves to us */
        }
        if (remove) s->router.by_id[b] = NULL;
    }
    if (remove && all) memset(s->router.by_name, 0, sizeof s->router.by_name);
    pthread_mutex_unlock(&s->router.mu);
    *n = k;
    return all;
}

void gsvc_generate_abort_all(gsvc_server *s)
{
    size_t n;
    gen_call **all = collect(s, &n, false);
    for (size_t i = 0; all && i < n; i++) {
        pthread_mutex_lock(&all[i]->base.mu);
        request_cancel(all[i]);
        pthread_mutex_unlock(&all[i]->base.mu);
        gsvc_call_unref(&all[i]->base);
    }
    if (n) gsvc_log(GSVC_LOG_INFO, "aborted %zu running request(s)", n);
    gsvc_free(all);
}

void gsvc_generate_fail_all(gsvc_server *s, eng_status st, const char *message)
{
    size_t n;
    gen_call **all = collect(s, &n, true);
    for (size_t i = 0; all && i < n; i++) {
        gen_call *g = all[i];
        pthread_mutex_lock(&g->base.mu);
        gsvc_stream_error(&g->st, GRPC_STATUS_INTERNAL, message && message[0] ? message : eng_status_str(st));
        g->engine_done = true;
        pump(g);
        pthread_mutex_unlock(&g->base.mu);
        gsvc_call_unref(&g->base);
    }
    gsvc_free(all);
}

/* ==== Abort =================================================================================== */

static void abort_on_accept(gsvc_call *c)
{
    gsvc_server *s = c->srv;
    ProtobufCMessage *m = NULL;
    pthread_mutex_lock(&c->mu);
    eng_engine *e = gsvc_engine(s);
    eng_status st = gsvc_unpack_bb(&qnext__v1__abort_request__descriptor, c->payload, &m);
    if (st != ENG_OK) {
        gsvc_call_send_status(c, (grpc_status_code)gsvc_status_to_grpc(st), eng_err_last(), -1);
        goto out;
    }
    if (!e) {
        gsvc_call_send_status(c, GRPC_STATUS_UNAVAILABLE, "the model is still loading", -1);
        goto out;
    }
    const Qnext__V1__AbortRequest *req = (const Qnext__V1__AbortRequest *)m;
    pthread_mutex_lock(&s->router.mu);
    gen_call *g = find_name(&s->router, req->request_id);
    uint64_t id = g ? g->eng_id : 0;
    pthread_mutex_unlock(&s->router.mu);
    Qnext__V1__AbortResponse resp = QNEXT__V1__ABORT_RESPONSE__INIT;
    resp.found = g && eng_cancel(e, id) == ENG_OK;
    gsvc_log(GSVC_LOG_DEBUG, "Abort %s: %s", req->request_id, resp.found ? "cancelled" : "not running");
    gsvc_call_send_reply(c, &resp.base);
out:
    pthread_mutex_unlock(&c->mu);
    gsvc_msg_free(m);
}

const gsvc_method gsvc_m_abort = {
    .path = "/qnext.v1.Generator/Abort",
    .call_size = sizeof(gsvc_call),
    .n_accepts = 1,
    .on_accept = abort_on_accept,
};
