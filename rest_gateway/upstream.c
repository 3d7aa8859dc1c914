/* upstream.c - engine pool, health/load poller and per-loop gRPC clients (see upstream.h).
 *
 * Channels reconnect by themselves; their reconnect backoff is kept short (0.2 s .. 2 s) so an
 * engine that comes back is used within about one poll period. Calls do not wait for a connection
 * (no wait_for_ready): a call to an engine that is down fails at once with UNAVAILABLE, which the
 * stream retries on another engine or answers with 503.
 */
#include "upstream.h"

#include "core/core.h" /* defines: eng_malloc, eng_log, eng_now_ns */
#include "pack.h"      /* defines: gw_unpack_bb */

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#define GENERATE_METHOD "/qnext.v1.Generator/Generate"

enum { ENG_UNKNOWN = 0, ENG_UP = 1, ENG_DOWN = 2 };

typedef struct engine {
    char *target;
    _Atomic int state;
    _Atomic bool draining;
    _Atomic int outstanding;
    _Atomic int64_t saturated_until_ns; /* monotonic; 0 = not saturated */
    _Atomic int polled_load;            /* running + waiting at the last GetLoad (all its clients) */
    /* poller-owned, read under pool->mu */
    bool has_load, has_info;
    Qnext__V1__Load load;
    gw_model_info info;
    grpc_channel *poll_ch;
} engine;

struct gw_pool {
    engine *e;
    size_t n;
    int64_t max_per_engine;
    double poll_s;
    _Atomic unsigned rr; /* rotates the tie-break start */
    pthread_mutex_t mu;  /* guards the load/info snapshots and `stop` */
    pthread_cond_t cv;
    bool stop;
    pthread_t poller;
    bool poller_started;
};

/* ==== channels ================================================================================ */

static grpc_channel *make_channel(const char *target)
{
    grpc_arg args[8];
    memset(args, 0, sizeof args);
    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[0].value.integer = 64 << 20;
    args[1].type = GRPC_ARG_INTEGER;
    args[1].key = GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS;
    args[1].value.integer = 200;
    args[2].type = GRPC_ARG_INTEGER;
    args[2].key = GRPC_ARG_MIN_RECONNECT_BACKOFF_MS;
    args[2].value.integer = 200;
    args[3].type = GRPC_ARG_INTEGER;
    args[3].key = GRPC_ARG_MAX_RECONNECT_BACKOFF_MS;
    args[3].value.integer = 2000;
    args[4].type = GRPC_ARG_INTEGER;
    args[4].key = GRPC_ARG_ENABLE_RETRIES;
    args[4].value.integer = 0;
    /* keepalive pings find an engine whose host died without closing the connection; the engine
     * permits pings every 10 s without calls (docs/decisions.md D11) */
    args[5].type = GRPC_ARG_INTEGER;
    args[5].key = GRPC_ARG_KEEPALIVE_TIME_MS;
    args[5].value.integer = 20000;
    args[6].type = GRPC_ARG_INTEGER;
    args[6].key = GRPC_ARG_KEEPALIVE_TIMEOUT_MS;
    args[6].value.integer = 10000;
    args[7].type = GRPC_ARG_INTEGER;
    args[7].key = GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS;
    args[7].value.integer = 1;
    grpc_channel_args ca = {.num_args = 8, .args = args};
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    grpc_channel *ch = grpc_channel_create(target, creds, &ca);
    grpc_channel_credentials_release(creds);
    return ch;
}

static gpr_timespec deadline_in(double s)
{
    if (s <= 0) return gpr_inf_future(GPR_CLOCK_REALTIME);
    return gpr_time_add(gpr_now(GPR_CLOCK_REALTIME), gpr_time_from_millis((int64_t)(s * 1000), GPR_TIMESPAN));
}

bool gw_metadata_get(const grpc_metadata_array *md, const char *key, char *buf, size_t cap)
{
    size_t kl = strlen(key);
    for (size_t i = 0; i < md->count; i++) {
        const grpc_metadata *m = &md->metadata[i];
        if (GRPC_SLICE_LENGTH(m->key) == kl && !memcmp(GRPC_SLICE_START_PTR(m->key), key, kl)) {
            size_t vl = GRPC_SLICE_LENGTH(m->value);
            if (vl >= cap) vl = cap - 1;
            memcpy(buf, GRPC_SLICE_START_PTR(m->value), vl);
            buf[vl] = 0;
            return true;
        }
    }
    return false;
}

/* A blocking unary call on a pluck CQ (poller thread only). On OK, *resp holds the response
 * bytes (caller unrefs). Returns the call's status (UNAVAILABLE etc. on transport failure). */
static grpc_status_code unary(grpc_channel *ch, grpc_completion_queue *cq, const char *method, const uint8_t *req,
                              size_t req_len, double timeout_s, grpc_slice *resp)
{
    *resp = grpc_empty_slice();
    grpc_slice m = grpc_slice_from_static_string(method);
    grpc_call *call =
        grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, m, NULL, deadline_in(timeout_s), NULL);
    if (!call) return GRPC_STATUS_INTERNAL;
    grpc_byte_buffer *send = gw_pack_to_bb(req, req_len);
    grpc_byte_buffer *recv = NULL;
    grpc_metadata_array md_init, md_trail;
    grpc_metadata_array_init(&md_init);
    grpc_metadata_array_init(&md_trail);
    grpc_status_code status = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();
    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &md_init;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &recv;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &md_trail;
    ops[5].data.recv_status_on_client.status = &status;
    ops[5].data.recv_status_on_client.status_details = &details;
    void *tag = (void *)call;
    if (grpc_call_start_batch(call, ops, 6, tag, NULL) == GRPC_CALL_OK) {
        grpc_event ev = grpc_completion_queue_pluck(cq, tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        (void)ev;
    } else {
        status = GRPC_STATUS_INTERNAL;
    }
    if (status == GRPC_STATUS_OK && recv) {
        grpc_byte_buffer_reader rd;
        if (grpc_byte_buffer_reader_init(&rd, recv)) {
            *resp = grpc_byte_buffer_reader_readall(&rd);
            grpc_byte_buffer_reader_destroy(&rd);
        }
    }
    if (recv) grpc_byte_buffer_destroy(recv);
    grpc_byte_buffer_destroy(send);
    grpc_slice_unref(details);
    grpc_metadata_array_destroy(&md_init);
    grpc_metadata_array_destroy(&md_trail);
    grpc_call_unref(call);
    return status;
}

/* grpc.health.v1.HealthCheckResponse{status=1 SERVING}: field 1 varint. Parsed by hand (2 bytes). */
static int health_status(grpc_slice s)
{
    const uint8_t *p = GRPC_SLICE_START_PTR(s);
    size_t n = GRPC_SLICE_LENGTH(s), i = 0;
    int status = 0; /* UNKNOWN when absent */
    while (i < n) {
        uint8_t key = p[i++];
        if (key == 0x08 && i < n) {
            status = p[i++] & 0x7f;
        } else {
            return -1; /* unexpected field: treat as unknown */
        }
    }
    return status;
}

/* ==== poller ================================================================================== */

static void poll_engine(gw_pool *p, engine *e, grpc_completion_queue *cq)
{
    double to = p->poll_s < 1 ? 1 : p->poll_s;
    if (to > 5) to = 5;
    grpc_slice resp;
    /* health: SERVING required; UNIMPLEMENTED (no health service) tolerated */
    grpc_status_code hs = unary(e->poll_ch, cq, "/grpc.health.v1.Health/Check", NULL, 0, to, &resp);
    int serving = hs == GRPC_STATUS_OK ? health_status(resp) : (hs == GRPC_STATUS_UNIMPLEMENTED ? 1 : -1);
    grpc_slice_unref(resp);
    Qnext__V1__Load *load = NULL;
    if (hs == GRPC_STATUS_OK || hs == GRPC_STATUS_UNIMPLEMENTED) {
        grpc_status_code ls = unary(e->poll_ch, cq, "/qnext.v1.Generator/GetLoad", NULL, 0, to, &resp);
        if (ls == GRPC_STATUS_OK)
            load = qnext__v1__load__unpack(NULL, GRPC_SLICE_LENGTH(resp), GRPC_SLICE_START_PTR(resp));
        grpc_slice_unref(resp);
    }
    int prev = atomic_load(&e->state);
    bool up = serving == 1 && load != NULL;
    if (up && (prev != ENG_UP || !e->has_info)) {
        grpc_status_code is = unary(e->poll_ch, cq, "/qnext.v1.Generator/GetModelInfo", NULL, 0, to, &resp);
        if (is == GRPC_STATUS_OK) {
            Qnext__V1__ModelInfo *mi =
                qnext__v1__model_info__unpack(NULL, GRPC_SLICE_LENGTH(resp), GRPC_SLICE_START_PTR(resp));
            if (mi) {
                pthread_mutex_lock(&p->mu);
                snprintf(e->info.id, sizeof e->info.id, "%s", mi->model_id);
                e->info.created = mi->created_unix;
                e->info.max_model_len = mi->max_model_len;
                e->info.vocab_size = mi->vocab_size;
                e->has_info = true;
                pthread_mutex_unlock(&p->mu);
                qnext__v1__model_info__free_unpacked(mi, NULL);
            }
        }
        grpc_slice_unref(resp);
    }
    pthread_mutex_lock(&p->mu);
    if (load) {
        e->load = *load;
        e->load.base.descriptor = NULL; /* a plain copy of the scalars */
        e->has_load = true;
    }
    pthread_mutex_unlock(&p->mu);
    if (load) {
        bool full = load->max_queue > 0 && load->waiting >= load->max_queue;
        atomic_store(&e->draining, load->draining);
        atomic_store(&e->polled_load, load->running + load->waiting);
        atomic_store(&e->saturated_until_ns, full ? (int64_t)(eng_now_ns() + (uint64_t)(p->poll_s * 1e9)) : 0);
        qnext__v1__load__free_unpacked(load, NULL);
    }
    int now = up ? ENG_UP : ENG_DOWN;
    atomic_store(&e->state, now);
    if (now != prev) eng_log(ENG_LOG_INFO, "gateway: engine %s is %s", e->target, up ? "up" : "down");
}

static void *poller_main(void *arg)
{
    gw_pool *p = arg;
    grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
    for (;;) {
        for (size_t i = 0; i < p->n; i++) poll_engine(p, &p->e[i], cq);
        pthread_mutex_lock(&p->mu);
        if (!p->stop) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            int64_t ns = ts.tv_nsec + (int64_t)(p->poll_s * 1e9);
            ts.tv_sec += ns / 1000000000;
            ts.tv_nsec = ns % 1000000000;
            pthread_cond_timedwait(&p->cv, &p->mu, &ts);
        }
        bool stop = p->stop;
        pthread_mutex_unlock(&p->mu);
        if (stop) break;
    }
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type != GRPC_QUEUE_SHUTDOWN) {
    }
    grpc_completion_queue_destroy(cq);
    return NULL;
}

/* ==== pool API ================================================================================ */

eng_status gw_pool_create(const gw_config *cfg, gw_pool **out)
{
    *out = NULL;
    gw_pool *p = eng_calloc(1, sizeof *p);
    if (!p) return eng_err_set(ENG_ERR_NOMEM, "out of memory");
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->n = cfg->n_engines;
    p->max_per_engine = cfg->max_per_engine;
    p->poll_s = cfg->load_poll_s > 0 ? cfg->load_poll_s : 1;
    p->e = eng_calloc(p->n, sizeof(engine));
    if (!p->e) goto oom;
    for (size_t i = 0; i < p->n; i++) {
        if (!(p->e[i].target = eng_strdup(cfg->engines[i]))) goto oom;
        if (!(p->e[i].poll_ch = make_channel(cfg->engines[i]))) goto oom;
    }
    if (pthread_create(&p->poller, NULL, poller_main, p) != 0) {
        gw_pool_destroy(p);
        return eng_err_set(ENG_ERR_INTERNAL, "cannot start the poller thread");
    }
    p->poller_started = true;
    *out = p;
    return ENG_OK;
oom:
    gw_pool_destroy(p);
    return eng_err_set(ENG_ERR_NOMEM, "out of memory");
}

void gw_pool_destroy(gw_pool *p)
{
    if (!p) return;
    if (p->poller_started) {
        pthread_mutex_lock(&p->mu);
        p->stop = true;
        pthread_cond_signal(&p->cv);
        pthread_mutex_unlock(&p->mu);
        pthread_join(p->poller, NULL);
    }
    for (size_t i = 0; p->e && i < p->n; i++) {
        if (p->e[i].poll_ch) grpc_channel_destroy(p->e[i].poll_ch);
        eng_free(p->e[i].target);
    }
    eng_free(p->e);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    eng_free(p);
}

size_t gw_pool_size(const gw_pool *p)
{
    return p->n;
}

const char *gw_pool_target(const gw_pool *p, int engine)
{
    return engine >= 0 && (size_t)engine < p->n ? p->e[engine].target : "";
}

int gw_pool_acquire(gw_pool *p, uint64_t tried, int *http_status)
{
    int64_t now = (int64_t)eng_now_ns();
    bool any_up = false;
    int best = -1, best_load = 0;
    bool best_sat = true;
    size_t start = atomic_fetch_add_explicit(&p->rr, 1, memory_order_relaxed) % (p->n ? p->n : 1);
    for (size_t k = 0; k < p->n; k++) {
        size_t i = (start + k) % p->n;
        engine *e = &p->e[i];
        if (i < 64 && (tried >> i) & 1) continue;
        if (atomic_load(&e->state) == ENG_DOWN || atomic_load(&e->draining)) continue;
        any_up = true;
        int out = atomic_load(&e->outstanding);
        if (p->max_per_engine > 0 && out >= p->max_per_engine) continue;
        /* the score: our own in-flight requests, or what the engine last reported if that is more
         * (other gateways and direct gRPC callers share the engine) */
        int score = out;
        int polled = atomic_load(&e->polled_load);
        if (polled > score) score = polled;
        /* saturated or suspect engines are used only when nothing else is left: the engine then
         * answers for itself (429/503 with its own retry hint) */
        bool sat = atomic_load(&e->saturated_until_ns) > now;
        if (best < 0 || (best_sat && !sat) || (sat == best_sat && score < best_load)) {
            best = (int)i;
            best_load = score;
            best_sat = sat;
        }
    }
    if (best < 0) {
        *http_status = any_up ? 429 : 503;
        return -1;
    }
    atomic_fetch_add(&p->e[best].outstanding, 1);
    return best;
}

void gw_pool_release(gw_pool *p, int engine)
{
    if (engine >= 0 && (size_t)engine < p->n) atomic_fetch_sub(&p->e[engine].outstanding, 1);
}

void gw_pool_mark_saturated(gw_pool *p, int engine, int64_t ms)
{
    if (engine < 0 || (size_t)engine >= p->n) return;
    if (ms <= 0) ms = (int64_t)(p->poll_s * 1000);
    atomic_store(&p->e[engine].saturated_until_ns, (int64_t)eng_now_ns() + ms * 1000000);
}

bool gw_pool_ready(gw_pool *p)
{
    for (size_t i = 0; i < p->n; i++)
        if (atomic_load(&p->e[i].state) == ENG_UP && !atomic_load(&p->e[i].draining)) return true;
    return false;
}

bool gw_pool_model(gw_pool *p, gw_model_info *out)
{
    bool found = false;
    pthread_mutex_lock(&p->mu);
    for (size_t i = 0; i < p->n && !found; i++) {
        if (p->e[i].has_info) {
            *out = p->e[i].info;
            found = true;
        }
    }
    pthread_mutex_unlock(&p->mu);
    return found;
}

size_t gw_pool_stats(gw_pool *p, gw_engine_stat *out, size_t cap)
{
    size_t n = p->n < cap ? p->n : cap;
    pthread_mutex_lock(&p->mu);
    for (size_t i = 0; i < n; i++) {
        engine *e = &p->e[i];
        gw_engine_stat *s = &out[i];
        memset(s, 0, sizeof *s);
        s->target = e->target;
        s->up = atomic_load(&e->state) == ENG_UP && !atomic_load(&e->draining);
        s->outstanding = atomic_load(&e->outstanding);
        s->has_load = e->has_load;
        if (e->has_load) {
            s->running = e->load.running;
            s->waiting = e->load.waiting;
            s->kv_usage = e->load.kv_cache_usage;
            s->prefix_queries = e->load.prefix_cache_queries_tokens;
            s->prefix_hits = e->load.prefix_cache_hits_tokens;
            s->preemptions = e->load.preemptions_total;
        }
    }
    pthread_mutex_unlock(&p->mu);
    return n;
}

/* ==== per-loop client ========================================================================= */

struct gw_upstream {
    gw_pool *pool;
    grpc_completion_queue *cq;
    pthread_t thread;
    bool thread_started;
    h2o_multithread_receiver_t receiver;
    h2o_multithread_queue_t *queue;
    bool receiver_registered;
    grpc_channel **ch; /* (pool->n,) */
    void **reg;        /* (pool->n,) registered Generate method per channel */
};

/* Runs on the loop thread: every completed batch, in order. */
static void on_ops(h2o_multithread_receiver_t *r, h2o_linklist_t *messages)
{
    (void)r;
    while (!h2o_linklist_is_empty(messages)) {
        gw_op *op = H2O_STRUCT_FROM_MEMBER(gw_op, msg.link, messages->next);
        h2o_linklist_unlink(&op->msg.link);
        op->done(op, op->ok);
    }
}

/* The CQ thread: blocks in grpc_completion_queue_next and forwards each completion to the loop. */
static void *cq_main(void *arg)
{
    gw_upstream *u = arg;
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(u->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN) break;
        if (ev.type != GRPC_OP_COMPLETE) continue;
        gw_op *op = ev.tag;
        op->ok = ev.success != 0;
        h2o_multithread_send_message(&u->receiver, &op->msg);
    }
    return NULL;
}

eng_status gw_upstream_create(gw_pool *p, h2o_multithread_queue_t *queue, gw_upstream **out)
{
    *out = NULL;
    gw_upstream *u = eng_calloc(1, sizeof *u);
    if (!u) return eng_err_set(ENG_ERR_NOMEM, "out of memory");
    u->pool = p;
    u->queue = queue;
    u->ch = eng_calloc(p->n, sizeof *u->ch);
    u->reg = eng_calloc(p->n, sizeof *u->reg);
    if (!u->ch || !u->reg) goto oom;
    for (size_t i = 0; i < p->n; i++) {
        if (!(u->ch[i] = make_channel(p->e[i].target))) goto oom;
        u->reg[i] = grpc_channel_register_call(u->ch[i], GENERATE_METHOD, NULL, NULL);
    }
    u->cq = grpc_completion_queue_create_for_next(NULL);
    h2o_multithread_register_receiver(queue, &u->receiver, on_ops);
    u->receiver_registered = true;
    if (pthread_create(&u->thread, NULL, cq_main, u) != 0) {
        gw_upstream_destroy(u);
        return eng_err_set(ENG_ERR_INTERNAL, "cannot start a completion-queue thread");
    }
    u->thread_started = true;
    *out = u;
    return ENG_OK;
oom:
    gw_upstream_destroy(u);
    return eng_err_set(ENG_ERR_NOMEM, "out of memory");
}

void gw_upstream_destroy(gw_upstream *u)
{
    if (!u) return;
    if (u->cq) {
        grpc_completion_queue_shutdown(u->cq);
        if (u->thread_started) pthread_join(u->thread, NULL);
        grpc_completion_queue_destroy(u->cq);
    }
    if (u->receiver_registered) h2o_multithread_unregister_receiver(u->queue, &u->receiver);
    for (size_t i = 0; u->ch && i < u->pool->n; i++)
        if (u->ch[i]) grpc_channel_destroy(u->ch[i]);
    eng_free(u->ch);
    eng_free(u->reg);
    eng_free(u);
}

grpc_call *gw_upstream_generate_call(gw_upstream *u, int engine, double timeout_s)
{
    if (engine < 0 || (size_t)engine >= u->pool->n) return NULL;
    return grpc_channel_create_registered_call(u->ch[engine], NULL, GRPC_PROPAGATE_DEFAULTS, u->cq, u->reg[engine],
                                               deadline_in(timeout_s), NULL);
}

gw_pool *gw_upstream_pool(gw_upstream *u)
{
    return u->pool;
}
