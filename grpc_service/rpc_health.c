/* grpc_service/rpc_health.c - grpc.health.v1.Health: Check and Watch (docs/serving-notes.md §2.5).
 *
 * Services: "" (the whole server), "qnext.v1.Generator" and "readiness" are SERVING once the model is
 * loaded and until draining starts (or the engine fails); "liveness" is SERVING while the process is
 * healthy, including during the model load (for a Kubernetes livenessProbe that must not kill a
 * pod that is still loading). Any other name: Check answers NOT_FOUND, Watch sends
 * SERVICE_UNKNOWN and keeps the stream open, as the protocol says.
 *
 * Watch sends the current status at once and then each change. Watch streams are kept in a list;
 * gsvc_health_notify walks it whenever the state changes (model loaded, drain, failure). With one
 * send in flight per stream, a change that happens while a send is outstanding is sent when that
 * send completes, and intermediate states collapse into the latest.
 */
#include "server_impl.h"

#include "convert.h" /* defines: gsvc_status_to_grpc */
#include "util.h"
#include "wire.h"

#include "grpc/health/v1/health.pb-c.h"

#include <grpc/status.h>

#include <string.h>

struct watch_call {
    gsvc_call base;
    char *service;
    int sent;         /* last status sent, -1 none */
    bool in_flight;
    bool closed;      /* RECV_CLOSE came or a send failed */
    bool listed;      /* in s->watchers (holds a reference) */
    watch_call *prev, *next;
};

int gsvc_health_status(gsvc_server *s, const char *service)
{
    if (!service[0] || !strcmp(service, "qnext.v1.Generator") || !strcmp(service, "readiness"))
        return gsvc_server_serving(s) ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
                                      : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
    if (!strcmp(service, "liveness"))
        return atomic_load(&s->fatal) ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING
                                      : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
    return GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN;
}

/* ==== Check =================================================================================== */

static void check_on_accept(gsvc_call *c)
{
    ProtobufCMessage *m = NULL;
    pthread_mutex_lock(&c->mu);
    eng_status st = gsvc_unpack_bb(&grpc__health__v1__health_check_request__descriptor, c->payload, &m);
    if (st != ENG_OK) {
        gsvc_call_send_status(c, (grpc_status_code)gsvc_status_to_grpc(st), eng_err_last(), -1);
        goto out;
    }
    const Grpc__Health__V1__HealthCheckRequest *req = (const Grpc__Health__V1__HealthCheckRequest *)m;
    int status = gsvc_health_status(c->srv, req->service);
    if (status == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN) {
        gsvc_call_send_status(c, GRPC_STATUS_NOT_FOUND, "unknown service", -1);
        goto out;
    }
    Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    resp.status = (Grpc__Health__V1__HealthCheckResponse__ServingStatus)status;
    gsvc_call_send_reply(c, &resp.base);
out:
    pthread_mutex_unlock(&c->mu);
    gsvc_msg_free(m);
}

const gsvc_method gsvc_m_health_check = {
    .path = "/grpc.health.v1.Health/Check",
    .call_size = sizeof(gsvc_call),
    .n_accepts = 2,
    .on_accept = check_on_accept,
};

/* ==== Watch =================================================================================== */

/* Sends the current status if it differs from the last one sent. w->base.mu held. */
static void watch_pump(watch_call *w)
{
    if (w->in_flight || w->closed) return;
    int status = gsvc_health_status(w->base.srv, w->service);
    if (status == w->sent) return;
    Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    resp.status = (Grpc__Health__V1__HealthCheckResponse__ServingStatus)status;
    if (gsvc_call_send_message(&w->base, &resp.base)) {
        w->in_flight = true;
        w->sent = status;
    } else {
        w->closed = true;
    }
}

static void watch_on_accept(gsvc_call *c)
{
    watch_call *w = (watch_call *)c;
    gsvc_server *s = c->srv;
    ProtobufCMessage *m = NULL;
    w->sent = -1;
    pthread_mutex_lock(&c->mu);
    eng_status st = gsvc_unpack_bb(&grpc__health__v1__health_check_request__descriptor, c->payload, &m);
    if (st == ENG_OK && !(w->service = gsvc_strdup(((Grpc__Health__V1__HealthCheckRequest *)m)->service)))
        st = eng_err_set(ENG_ERR_NOMEM, "out of memory");
    gsvc_msg_free(m);
    if (st != ENG_OK) {
        gsvc_call_send_status(c, (grpc_status_code)gsvc_status_to_grpc(st), eng_err_last(), -1);
        pthread_mutex_unlock(&c->mu);
        return;
    }
    pthread_mutex_unlock(&c->mu);

    /* health_mu first (the lock order), then re-check under the call lock that RECV_CLOSE has not
     * come meanwhile: watch_on_close sets `closed` before it takes health_mu to unlist. */
    pthread_mutex_lock(&s->health_mu);
    pthread_mutex_lock(&c->mu);
    if (!w->closed) {
        w->listed = true;
        gsvc_call_ref(c);
        w->next = s->watchers;
        if (s->watchers) s->watchers->prev = w;
        s->watchers = w;
        watch_pump(w);
    }
    pthread_mutex_unlock(&c->mu);
    pthread_mutex_unlock(&s->health_mu);
}

static void watch_on_send_done(gsvc_call *c, bool ok)
{
    watch_call *w = (watch_call *)c;
    pthread_mutex_lock(&c->mu);
    w->in_flight = false;
    if (!ok) w->closed = true;
    else watch_pump(w);
    pthread_mutex_unlock(&c->mu);
}

static void watch_on_close(gsvc_call *c, bool cancelled)
{
    watch_call *w = (watch_call *)c;
    gsvc_server *s = c->srv;
    pthread_mutex_lock(&c->mu);
    w->closed = true;
    pthread_mutex_unlock(&c->mu);
    pthread_mutex_lock(&s->health_mu);
    bool was = w->listed;
    if (was) {
        if (w->prev) w->prev->next = w->next;
        else s->watchers = w->next;
        if (w->next) w->next->prev = w->prev;
        w->listed = false;
    }
    pthread_mutex_unlock(&s->health_mu);
    if (was) gsvc_call_unref(c);
}

static void watch_destroy(gsvc_call *c)
{
    gsvc_free(((watch_call *)c)->service);
}

const gsvc_method gsvc_m_health_watch = {
    .path = "/grpc.health.v1.Health/Watch",
    .call_size = sizeof(watch_call),
    .n_accepts = 1,
    .on_accept = watch_on_accept,
    .on_send_done = watch_on_send_done,
    .on_close = watch_on_close,
    .destroy = watch_destroy,
};

void gsvc_health_notify(gsvc_server *s)
{
    pthread_mutex_lock(&s->health_mu);
    int now = gsvc_health_status(s, "");
    if (now != s->health_last) {
        gsvc_log(GSVC_LOG_INFO, "health: %s", now == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING ? "SERVING" : "NOT_SERVING");
        s->health_last = now;
    }
    for (watch_call *w = s->watchers; w; w = w->next) {
        pthread_mutex_lock(&w->base.mu);
        watch_pump(w);
        pthread_mutex_unlock(&w->base.mu);
    }
    pthread_mutex_unlock(&s->health_mu);
}
