/* grpc_service/server.c - completion-queue threads, call objects, the model loader and the
 * engine-host thread, drain and shutdown (see server.h, server_impl.h, call.h).
 */
#include "server_impl.h"

#include "util.h" /* defines: gsvc_malloc, gsvc_log */
#include "wire.h" /* defines: gsvc_pack_bb */

#include <grpc/grpc_security.h>
#include <grpc/support/time.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* Calls to paths nobody registered: without a generic request they would wait for their deadline. */
static void unknown_on_accept(gsvc_call *c)
{
    char msg[300];
    size_t n = GRPC_SLICE_LENGTH(c->call_details.method);
    if (n > 200) n = 200;
    snprintf(msg, sizeof msg, "unknown method %.*s", (int)n, (const char *)GRPC_SLICE_START_PTR(c->call_details.method));
    pthread_mutex_lock(&c->mu);
    gsvc_call_send_status(c, GRPC_STATUS_UNIMPLEMENTED, msg, -1);
    pthread_mutex_unlock(&c->mu);
}

static const gsvc_method gsvc_m_unknown = {
    .path = NULL,
    .call_size = sizeof(gsvc_call),
    .n_accepts = 1,
    .on_accept = unknown_on_accept,
};

static const gsvc_method *const methods[GSVC_M_COUNT] = {
    [GSVC_M_GENERATE] = &gsvc_m_generate,         [GSVC_M_ABORT] = &gsvc_m_abort,
    [GSVC_M_TOKENIZE] = &gsvc_m_tokenize,         [GSVC_M_DETOKENIZE] = &gsvc_m_detokenize,
    [GSVC_M_MODEL_INFO] = &gsvc_m_model_info,     [GSVC_M_LOAD] = &gsvc_m_load,
    [GSVC_M_HEALTH_CHECK] = &gsvc_m_health_check, [GSVC_M_HEALTH_WATCH] = &gsvc_m_health_watch,
    [GSVC_M_UNKNOWN] = &gsvc_m_unknown,
};

/* ==== calls =================================================================================== */

gsvc_call *gsvc_call_ref(gsvc_call *c)
{
    atomic_fetch_add(&c->refs, 1);
    return c;
}

void gsvc_call_unref(gsvc_call *c)
{
    if (!c || atomic_fetch_sub(&c->refs, 1) != 1) return;
    gsvc_server *s = c->srv;
    if (c->m->destroy) c->m->destroy(c);
    if (c->call) grpc_call_unref(c->call);
    grpc_metadata_array_destroy(&c->md);
    if (!c->m->path) grpc_call_details_destroy(&c->call_details);
    if (c->payload) grpc_byte_buffer_destroy(c->payload);
    if (c->send_bb) grpc_byte_buffer_destroy(c->send_bb);
    if (c->has_details) grpc_slice_unref(c->details);
    if (c->has_trailer) {
        grpc_slice_unref(c->trailer.key);
        grpc_slice_unref(c->trailer.value);
    }
    pthread_mutex_destroy(&c->mu);
    gsvc_free(c);
    if (atomic_fetch_sub(&s->live_calls, 1) == 1) gsvc_server_signal(s);
}

/* Starts one send batch; the SEND op holds a reference until it completes. */
static bool start_send(gsvc_call *c, grpc_op *ops, size_t n)
{
    gsvc_call_ref(c);
    grpc_call_error e = grpc_call_start_batch(c->call, ops, n, &c->op_send, NULL);
    if (e != GRPC_CALL_OK) {
        gsvc_log(GSVC_LOG_DEBUG, "%s: send batch refused: %s", c->m->path ? c->m->path : "?", grpc_call_error_to_string(e));
        atomic_fetch_sub(&c->refs, 1); /* the caller holds another reference */
        return false;
    }
    c->md_sent = true;
    return true;
}

static size_t add_initial_md(gsvc_call *c, grpc_op *ops)
{
    if (c->md_sent) return 0;
    memset(&ops[0], 0, sizeof ops[0]);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    return 1;
}

bool gsvc_call_send_message(gsvc_call *c, const ProtobufCMessage *m)
{
    grpc_op ops[2];
    size_t n = add_initial_md(c, ops);
    grpc_byte_buffer *bb = gsvc_pack_bb(m);
    if (!bb) return false;
    memset(&ops[n], 0, sizeof ops[n]);
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n].data.send_message.send_message = bb;
    n++;
    if (c->send_bb) grpc_byte_buffer_destroy(c->send_bb);
    c->send_bb = bb;
    if (!start_send(c, ops, n)) {
        grpc_byte_buffer_destroy(bb);
        c->send_bb = NULL;
        return false;
    }
    return true;
}

/* Fills the SEND_STATUS_FROM_SERVER op (details and trailer live in the call until it is freed). */
static void status_op(gsvc_call *c, grpc_op *op, grpc_status_code status, const char *message, int retry_after_ms)
{
    memset(op, 0, sizeof *op);
    op->op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    op->data.send_status_from_server.status = status;
    if (message && message[0]) {
        if (c->has_details) grpc_slice_unref(c->details);
        c->details = grpc_slice_from_copied_string(message);
        c->has_details = true;
        op->data.send_status_from_server.status_details = &c->details;
    }
    if (retry_after_ms >= 0) {
        char v[24];
        snprintf(v, sizeof v, "%d", retry_after_ms);
        if (c->has_trailer) {
            grpc_slice_unref(c->trailer.key);
            grpc_slice_unref(c->trailer.value);
        }
        memset(&c->trailer, 0, sizeof c->trailer);
        c->trailer.key = grpc_slice_from_static_string("retry-after-ms");
        c->trailer.value = grpc_slice_from_copied_string(v);
        c->has_trailer = true;
        op->data.send_status_from_server.trailing_metadata_count = 1;
        op->data.send_status_from_server.trailing_metadata = &c->trailer;
    }
}

bool gsvc_call_send_status(gsvc_call *c, grpc_status_code status, const char *message, int retry_after_ms)
{
    grpc_op ops[2];
    size_t n = add_initial_md(c, ops);
    status_op(c, &ops[n++], status, message, retry_after_ms);
    return start_send(c, ops, n);
}

bool gsvc_call_send_reply(gsvc_call *c, const ProtobufCMessage *m)
{
    grpc_op ops[3];
    size_t n = add_initial_md(c, ops);
    grpc_byte_buffer *bb = gsvc_pack_bb(m);
    if (!bb) return gsvc_call_send_status(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory", -1);
    memset(&ops[n], 0, sizeof ops[n]);
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n].data.send_message.send_message = bb;
    n++;
    status_op(c, &ops[n++], GRPC_STATUS_OK, NULL, -1);
    if (c->send_bb) grpc_byte_buffer_destroy(c->send_bb);
    c->send_bb = bb;
    if (!start_send(c, ops, n)) {
        grpc_byte_buffer_destroy(bb);
        c->send_bb = NULL;
        return false;
    }
    return true;
}

/* ==== accepting calls ========================================================================= */

/* Asks gRPC for the next call of method mi (one call object per outstanding request). */
static void arm(gsvc_server *s, int mi)
{
    if (atomic_load(&s->shutting_down)) return;
    const gsvc_method *m = methods[mi];
    gsvc_call *c = gsvc_calloc(1, m->call_size);
    if (!c) {
        gsvc_log(GSVC_LOG_ERROR, "%s: out of memory arming the next call", m->path ? m->path : "(unregistered)");
        return;
    }
    c->srv = s;
    c->m = m;
    c->method_index = mi;
    pthread_mutex_init(&c->mu, NULL);
    atomic_init(&c->refs, 1); /* the ACCEPT op */
    c->op_accept = (gsvc_op){c, GSVC_OP_ACCEPT};
    c->op_close = (gsvc_op){c, GSVC_OP_CLOSE};
    c->op_send = (gsvc_op){c, GSVC_OP_SEND};
    grpc_metadata_array_init(&c->md);
    atomic_fetch_add(&s->live_calls, 1);
    grpc_call_error e;
    if (m->path) {
        e = grpc_server_request_registered_call(s->server, s->handles[mi], &c->call, &c->deadline, &c->md, &c->payload,
                                                s->cq, s->cq, &c->op_accept);
    } else {
        grpc_call_details_init(&c->call_details);
        e = grpc_server_request_call(s->server, &c->call, &c->call_details, &c->md, s->cq, s->cq, &c->op_accept);
    }
    if (e != GRPC_CALL_OK) {
        gsvc_log(GSVC_LOG_ERROR, "%s: request call: %s", m->path ? m->path : "(unregistered)", grpc_call_error_to_string(e));
        gsvc_call_unref(c);
    }
}

static void on_accept(gsvc_call *c, bool ok)
{
    gsvc_server *s = c->srv;
    if (!ok) { /* the server is shutting down */
        gsvc_call_unref(c);
        return;
    }
    arm(s, c->method_index); /* re-arm first: the next caller need not wait for this one */
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op.data.recv_close_on_server.cancelled = &c->cancelled;
    gsvc_call_ref(c);
    grpc_call_error e = grpc_call_start_batch(c->call, &op, 1, &c->op_close, NULL);
    if (e != GRPC_CALL_OK) {
        gsvc_log(GSVC_LOG_WARN, "%s: RECV_CLOSE_ON_SERVER refused: %s", c->m->path ? c->m->path : "?",
                 grpc_call_error_to_string(e));
        atomic_fetch_sub(&c->refs, 1);
    }
    c->m->on_accept(c);
    gsvc_call_unref(c); /* the ACCEPT op's reference */
}

static void dispatch(gsvc_server *s, grpc_event ev)
{
    gsvc_op *op = ev.tag;
    gsvc_call *c = op->call;
    switch (op->kind) {
    case GSVC_OP_SERVER_SHUTDOWN:
        pthread_mutex_lock(&s->mu);
        s->shutdown_done = true;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        break;
    case GSVC_OP_ACCEPT:
        on_accept(c, ev.success);
        break;
    case GSVC_OP_CLOSE:
        if (c->m->on_close) c->m->on_close(c, c->cancelled != 0);
        gsvc_call_unref(c);
        break;
    case GSVC_OP_SEND:
        pthread_mutex_lock(&c->mu);
        if (c->send_bb) grpc_byte_buffer_destroy(c->send_bb);
        c->send_bb = NULL;
        pthread_mutex_unlock(&c->mu);
        if (c->m->on_send_done) c->m->on_send_done(c, ev.success);
        gsvc_call_unref(c);
        break;
    }
}

static void *cq_main(void *arg)
{
    gsvc_server *s = arg;
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN) break;
        if (ev.type == GRPC_OP_COMPLETE) dispatch(s, ev);
    }
    return NULL;
}

/* ==== engine ================================================================================== */

#define HOST_EVENTS 256

static void *host_main(void *arg)
{
    gsvc_server *s = arg;
    eng_engine *e = gsvc_engine(s);
    eng_event *ev = gsvc_malloc(HOST_EVENTS * sizeof *ev);
    if (!ev) {
        gsvc_log(GSVC_LOG_ERROR, "engine host: out of memory");
        atomic_store(&s->fatal, true);
        gsvc_server_signal(s);
        return NULL;
    }
    while (!atomic_load(&s->host_stop)) {
        if (!eng_has_work(e)) {
            eng_wait_work(e, 50);
            continue;
        }
        size_t n = 0;
        eng_status st = eng_step(e, ev, HOST_EVENTS, &n);
        if (st != ENG_OK) {
            gsvc_log(GSVC_LOG_ERROR, "engine step failed: %s: %s", eng_status_str(st), eng_err_last());
            atomic_store(&s->fatal, true);
            gsvc_generate_fail_all(s, st, eng_err_last());
            gsvc_health_notify(s);
            gsvc_server_signal(s);
            break;
        }
        if (n) gsvc_generate_route(s, ev, n);
    }
    gsvc_free(ev);
    return NULL;
}

static void *loader_main(void *arg)
{
    gsvc_server *s = arg;
    double t0 = gsvc_now_s();
    gsvc_log(GSVC_LOG_INFO, "loading the model from %s", s->opt.eng.model_dir);
    eng_engine *e = NULL;
    eng_status st = eng_create(&s->opt.eng, &e);
    if (st != ENG_OK) {
        gsvc_log(GSVC_LOG_ERROR, "model load failed: %s: %s", eng_status_str(st), eng_err_last());
        atomic_store(&s->model_state, GSVC_MODEL_FAILED);
        atomic_store(&s->fatal, true);
        gsvc_health_notify(s);
        gsvc_server_signal(s);
        return NULL;
    }
    s->created_unix = (int64_t)time(NULL);
    atomic_store(&s->engine, e);
    if (pthread_create(&s->host, NULL, host_main, s) != 0) {
        gsvc_log(GSVC_LOG_ERROR, "cannot start the engine-host thread: %s", strerror(errno));
        atomic_store(&s->model_state, GSVC_MODEL_FAILED);
        atomic_store(&s->fatal, true);
        gsvc_server_signal(s);
        return NULL;
    }
    s->host_started = true;
    eng_model_info mi;
    eng_get_model_info(e, &mi);
    atomic_store(&s->model_state, GSVC_MODEL_READY);
    gsvc_log(GSVC_LOG_INFO, "model %s loaded in %.1f s (%s, %s, context %d)", mi.model_id ? mi.model_id : "?",
             gsvc_now_s() - t0, mi.device ? mi.device : "?", mi.dtype ? mi.dtype : "?", mi.max_model_len);
    gsvc_health_notify(s);
    return NULL;
}

/* ==== server ================================================================================== */

bool gsvc_server_serving(gsvc_server *s)
{
    return atomic_load(&s->model_state) == GSVC_MODEL_READY && !atomic_load(&s->draining) && !atomic_load(&s->fatal);
}

void gsvc_server_signal(gsvc_server *s)
{
    pthread_mutex_lock(&s->mu);
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

eng_status gsvc_server_create(const gsvc_options *opt, gsvc_server **out)
{
    *out = NULL;
    gsvc_server *s = gsvc_calloc(1, sizeof *s);
    if (!s) return eng_err_set(ENG_ERR_NOMEM, "out of memory");
    s->opt = *opt;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    pthread_mutex_init(&s->router.mu, NULL);
    pthread_mutex_init(&s->health_mu, NULL);
    s->health_last = -1;
    s->op_shutdown = (gsvc_op){NULL, GSVC_OP_SERVER_SHUTDOWN};
    eng_status st = ENG_OK;
    grpc_init();

    grpc_arg args[6];
    int na = 0;
    args[na++] = (grpc_arg){GRPC_ARG_INTEGER, GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, {.integer = (int)opt->max_message_bytes}};
    args[na++] = (grpc_arg){GRPC_ARG_INTEGER, GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, {.integer = -1}};
    /* Let clients (the gateway) keep idle connections alive with pings every >= 10 s. */
    args[na++] = (grpc_arg){GRPC_ARG_INTEGER, GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, {.integer = 10000}};
    args[na++] = (grpc_arg){GRPC_ARG_INTEGER, GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, {.integer = 1}};
    /* A port already in use is an error, not a silently shared listener. */
    args[na++] = (grpc_arg){GRPC_ARG_INTEGER, GRPC_ARG_ALLOW_REUSEPORT, {.integer = 0}};
    if (opt->max_concurrent_streams > 0)
        args[na++] = (grpc_arg){GRPC_ARG_INTEGER, GRPC_ARG_MAX_CONCURRENT_STREAMS, {.integer = opt->max_concurrent_streams}};
    grpc_channel_args cargs = {(size_t)na, args};

    s->cq = grpc_completion_queue_create_for_next(NULL);
    s->server = grpc_server_create(&cargs, NULL);
    if (!s->cq || !s->server) {
        st = eng_err_set(ENG_ERR_INTERNAL, "cannot create the gRPC server");
        goto fail;
    }
    grpc_server_register_completion_queue(s->server, s->cq, NULL);
    for (int i = 0; i < GSVC_M_COUNT; i++) {
        if (!methods[i]->path) continue;
        s->handles[i] = grpc_server_register_method(s->server, methods[i]->path, NULL,
                                                    GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
        if (!s->handles[i]) {
            st = eng_err_set(ENG_ERR_INTERNAL, "cannot register %s", methods[i]->path);
            goto fail;
        }
    }
    grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
    s->port = grpc_server_add_http2_port(s->server, opt->listen, creds);
    grpc_server_credentials_release(creds);
    if (s->port <= 0) {
        st = eng_err_set(ENG_ERR_IO, "cannot listen on %s (address in use or invalid?)", opt->listen);
        goto fail;
    }
    *out = s;
    return ENG_OK;
fail:
    gsvc_server_destroy(s);
    return st;
}

int gsvc_server_port(const gsvc_server *s)
{
    return s->port;
}

eng_status gsvc_server_start(gsvc_server *s)
{
    grpc_server_start(s->server);
    s->grpc_started = true;
    s->cq_threads = gsvc_calloc((size_t)s->opt.cq_threads, sizeof *s->cq_threads);
    if (!s->cq_threads) return eng_err_set(ENG_ERR_NOMEM, "out of memory");
    for (int i = 0; i < s->opt.cq_threads; i++) {
        if (pthread_create(&s->cq_threads[i], NULL, cq_main, s) != 0)
            return eng_err_set(ENG_ERR_INTERNAL, "cannot start a completion-queue thread: %s", strerror(errno));
        s->n_cq_threads++;
    }
    for (int i = 0; i < GSVC_M_COUNT; i++)
        for (int k = 0; k < methods[i]->n_accepts; k++) arm(s, i);
    if (pthread_create(&s->loader, NULL, loader_main, s) != 0)
        return eng_err_set(ENG_ERR_INTERNAL, "cannot start the loader thread: %s", strerror(errno));
    s->loader_started = true;
    gsvc_log(GSVC_LOG_INFO, "serving qnext.v1.Generator and grpc.health.v1.Health on %s (port %d)", s->opt.listen,
             s->port);
    return ENG_OK;
}

bool gsvc_server_failed(gsvc_server *s)
{
    return atomic_load(&s->fatal);
}

bool gsvc_server_loaded(gsvc_server *s)
{
    return atomic_load(&s->model_state) == GSVC_MODEL_READY;
}

void gsvc_server_drain(gsvc_server *s)
{
    if (atomic_exchange(&s->draining, true)) return;
    gsvc_health_notify(s);
}

int gsvc_server_active_streams(gsvc_server *s)
{
    return atomic_load(&s->active_streams);
}

/* Waits on s->cv until pred(s) or timeout_ms passes (timeout_ms < 0: no limit). */
static bool wait_for(gsvc_server *s, bool (*pred)(gsvc_server *), int timeout_ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t ns = (int64_t)ts.tv_nsec + (int64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000000;
    ts.tv_sec += (time_t)(ns / 1000000000);
    ts.tv_nsec = (long)(ns % 1000000000);
    pthread_mutex_lock(&s->mu);
    bool ok;
    while (!(ok = pred(s))) {
        if (timeout_ms < 0) pthread_cond_wait(&s->cv, &s->mu);
        else if (pthread_cond_timedwait(&s->cv, &s->mu, &ts) == ETIMEDOUT) break;
    }
    pthread_mutex_unlock(&s->mu);
    return ok;
}

static bool pred_idle(gsvc_server *s)
{
    return atomic_load(&s->active_streams) == 0 || atomic_load(&s->fatal);
}

static bool pred_shutdown(gsvc_server *s)
{
    return s->shutdown_done;
}

static bool pred_no_calls(gsvc_server *s)
{
    return atomic_load(&s->live_calls) == 0;
}

bool gsvc_server_wait_idle(gsvc_server *s, int timeout_ms)
{
    return wait_for(s, pred_idle, timeout_ms) && atomic_load(&s->active_streams) == 0;
}

void gsvc_server_abort_streams(gsvc_server *s)
{
    gsvc_generate_abort_all(s);
}

void gsvc_server_shutdown(gsvc_server *s)
{
    if (!s || !s->grpc_started || atomic_exchange(&s->shutting_down, true)) return;
    atomic_store(&s->draining, true);
    grpc_server_shutdown_and_notify(s->server, s->cq, &s->op_shutdown);
    grpc_server_cancel_all_calls(s->server);
    if (s->n_cq_threads == 0) /* start failed before any CQ thread ran: poll here */
        while (!s->shutdown_done) {
            grpc_event ev = grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
            if (ev.type == GRPC_OP_COMPLETE) dispatch(s, ev);
        }
    wait_for(s, pred_shutdown, -1);
    /* Cancelled Generate calls are released once the engine confirms their end (eng_cancel ends them
     * within one step); armed accepts were failed by the shutdown. */
    if (!wait_for(s, pred_no_calls, 30000))
        gsvc_log(GSVC_LOG_ERROR, "%d calls still alive 30 s after shutdown", atomic_load(&s->live_calls));
    if (s->loader_started) {
        pthread_join(s->loader, NULL);
        s->loader_started = false;
    }
    atomic_store(&s->host_stop, true);
    if (s->host_started) {
        pthread_join(s->host, NULL);
        s->host_started = false;
    }
}

void gsvc_server_destroy(gsvc_server *s)
{
    if (!s) return;
    gsvc_server_shutdown(s);
    if (s->loader_started) pthread_join(s->loader, NULL);
    if (s->server) grpc_server_destroy(s->server);
    if (s->cq) {
        grpc_completion_queue_shutdown(s->cq);
        if (s->n_cq_threads == 0)
            while (grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type != GRPC_QUEUE_SHUTDOWN) {
            }
        for (int i = 0; i < s->n_cq_threads; i++) pthread_join(s->cq_threads[i], NULL);
        grpc_completion_queue_destroy(s->cq);
    }
    gsvc_free(s->cq_threads);
    eng_destroy(gsvc_engine(s));
    pthread_mutex_destroy(&s->router.mu);
    pthread_mutex_destroy(&s->health_mu);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    gsvc_free(s);
    grpc_shutdown();
}
