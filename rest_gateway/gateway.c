/* gateway.c - server setup, listeners, loop threads and graceful shutdown (see gateway.h).
 *
 * Listeners: every loop has its own socket bound to the same port with SO_REUSEPORT, so the kernel
 * spreads connections over the loops (the first socket picks the port when --port 0).
 *
 * Shutdown (serving-notes §3.6, §6.6): the main thread posts a message to every loop; each loop
 * closes its listener, asks h2o to shut down (HTTP/2 GOAWAY, HTTP/1 Connection: close), and then
 * checks every 100 ms: when its streams are gone (or 0.5 s after that if idle keep-alive
 * connections linger) the loop exits; at the drain deadline (--shutdown-timeout) it cancels the
 * upstream calls still running and exits shortly after. Before its thread returns, every gRPC
 * call has completed, so the completion queue can be shut down.
 */
#include "gateway.h"

#include "core/core.h" /* defines: eng_malloc, eng_log, eng_now_ns */

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ==== listeners =============================================================================== */

/* Opens a listening socket on host:port with SO_REUSEPORT; *port_out gets the bound port. */
static int open_listener(const char *host, int port, int *port_out)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    int rc = getaddrinfo(host, ps, &hints, &res);
    if (rc != 0) {
        eng_err_set(ENG_ERR_INVALID, "--host %s: %s", host, gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) continue;
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, SOMAXCONN) == 0) break;
        close(fd);
        fd = -1;
    }
    if (fd < 0) {
        eng_err_set(ENG_ERR_IO, "cannot listen on %s:%d: %s", host, port, strerror(errno));
    } else {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        getsockname(fd, (struct sockaddr *)&ss, &sl);
        *port_out = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                             : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    }
    freeaddrinfo(res);
    return fd;
}

static void on_conn_close(void *data)
{
    gw_loop *loop = data;
    loop->n_conns--;
}

static void on_accept(h2o_socket_t *listener, const char *err)
{
    gw_loop *loop = listener->data;
    if (err) return;
    for (int i = 0; i < 16; i++) {
        h2o_socket_t *sock = h2o_evloop_socket_accept(listener);
        if (!sock) break;
        loop->n_conns++;
        sock->on_close.cb = on_conn_close;
        sock->on_close.data = loop;
        h2o_accept(&loop->accept_ctx, sock);
    }
}

/* ==== shutdown ================================================================================ */

static void on_tick(h2o_timeout_entry_t *entry)
{
    gw_loop *loop = H2O_STRUCT_FROM_MEMBER(gw_loop, tick, entry);
    uint64_t now = eng_now_ns();
    bool force = atomic_load(&loop->srv->force_cancel);
    if ((force || now >= loop->drain_deadline_ns) && !loop->cancelled_all) {
        if (loop->n_streams) eng_log(ENG_LOG_INFO, "gateway: loop %d: cancelling %zu requests still running", loop->index,
                                     loop->n_streams);
        gw_stream_cancel_all(loop);
        loop->cancelled_all = true;
        loop->drain_deadline_ns = now; /* start the final grace period now */
    }
    if (loop->n_streams == 0) {
        if (!loop->streams_done_ns) loop->streams_done_ns = now;
        if (loop->n_conns == 0 || now - loop->streams_done_ns >= 500000000ull) loop->exit = true;
    }
    if (loop->cancelled_all && now - loop->drain_deadline_ns >= 2000000000ull) loop->exit = true;
    if (!loop->exit) h2o_timeout_link(loop->ctx.loop, &loop->tick_timeout, &loop->tick);
}

static void begin_shutdown(gw_loop *loop)
{
    if (loop->shutting_down) return;
    loop->shutting_down = true;
    if (loop->listener) {
        h2o_socket_read_stop(loop->listener);
        h2o_socket_close(loop->listener);
        loop->listener = NULL;
        loop->listen_fd = -1;
    }
    h2o_context_request_shutdown(&loop->ctx);
    loop->drain_deadline_ns = eng_now_ns() + (uint64_t)(loop->srv->cfg->shutdown_timeout_s * 1e9);
    loop->tick.cb = on_tick;
    h2o_timeout_link(loop->ctx.loop, &loop->tick_timeout, &loop->tick);
}

static void on_ctl(h2o_multithread_receiver_t *r, h2o_linklist_t *messages)
{
    gw_loop *loop = H2O_STRUCT_FROM_MEMBER(gw_loop, ctl, r);
    while (!h2o_linklist_is_empty(messages)) h2o_linklist_unlink(messages->next);
    begin_shutdown(loop);
}

/* ==== loop threads ============================================================================ */

/* Per-thread setup: everything h2o creates must be created on the thread that runs it (h2o keeps
 * per-thread allocators, e.g. the socket buffer prototype, that sockets made elsewhere would share
 * unsafely). Returns ENG_OK or an error with a detail. */
static eng_status loop_setup(gw_loop *loop)
{
    gw_server *s = loop->srv;
    h2o_context_init(&loop->ctx, h2o_evloop_create(), &s->hconf);
    loop->ctx_inited = true;
    loop->accept_ctx.ctx = &loop->ctx;
    loop->accept_ctx.hosts = s->hconf.hosts;
    loop->accept_ctx.ssl_ctx = s->ssl;
    loop->listener = h2o_evloop_socket_create(loop->ctx.loop, loop->listen_fd, H2O_SOCKET_FLAG_DONT_READ);
    loop->listener->data = loop;
    h2o_timeout_init(loop->ctx.loop, &loop->ping_timeout,
                     (uint64_t)(s->cfg->sse_ping_interval_s > 0 ? s->cfg->sse_ping_interval_s * 1000 : 1000));
    h2o_timeout_init(loop->ctx.loop, &loop->tick_timeout, 100);
    h2o_multithread_register_receiver(loop->ctx.queue, &loop->ctl, on_ctl);
    loop->ctl_registered = true;
    return gw_upstream_create(s->pool, loop->ctx.queue, &loop->up);
}

static void *loop_main(void *arg)
{
    gw_loop *loop = arg;
    gw_server *s = loop->srv;
    eng_status st = loop_setup(loop);
    pthread_mutex_lock(&s->start_mu);
    s->n_started++;
    if (st && !s->start_error[0]) snprintf(s->start_error, sizeof s->start_error, "%s", eng_err_last());
    pthread_cond_signal(&s->start_cv);
    pthread_mutex_unlock(&s->start_mu);
    if (st) goto out;

    h2o_socket_read_start(loop->listener, on_accept);
    while (!loop->exit) h2o_evloop_run(loop->ctx.loop, INT32_MAX);
    /* every upstream call must complete before the CQ goes away: cancel, then run the loop until
     * their last batches have been delivered */
    gw_stream_cancel_all(loop);
    uint64_t until = eng_now_ns() + 5000000000ull;
    while (loop->n_calls_live > 0 && eng_now_ns() < until) h2o_evloop_run(loop->ctx.loop, 10);
out:
    gw_upstream_destroy(loop->up);
    loop->up = NULL;
    if (loop->listener) {
        h2o_socket_close(loop->listener);
        loop->listener = NULL;
        loop->listen_fd = -1;
    }
    if (loop->ctl_registered) h2o_multithread_unregister_receiver(loop->ctx.queue, &loop->ctl);
    loop->ctl_registered = false;
    /* the h2o context itself is left to process exit: connections may still be open */
    return NULL;
}

static eng_status loop_init(gw_server *s, gw_loop *loop, int index)
{
    loop->srv = s;
    loop->index = index;
    loop->listen_fd = -1;
    h2o_linklist_init_anchor(&loop->streams);
    loop->rng = eng_now_ns() ^ ((uint64_t)index << 48) ^ 0x9E3779B97F4A7C15ull;
    FILE *ur = fopen("/dev/urandom", "rb");
    if (ur) {
        uint64_t r;
        if (fread(&r, sizeof r, 1, ur) == 1) loop->rng ^= r;
        fclose(ur);
    }
    if (!loop->rng) loop->rng = 88172645463325252ull;
    int port = s->port;
    loop->listen_fd = open_listener(s->cfg->host, index == 0 ? s->cfg->port : s->port, &port);
    if (loop->listen_fd < 0) return ENG_ERR_IO;
    if (index == 0) s->port = port;
    return ENG_OK;
}

/* ==== server ================================================================================== */

static eng_status make_ssl(gw_server *s)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) return eng_err_set(ENG_ERR_INTERNAL, "cannot create a TLS context");
    s->ssl = ctx;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION);
    if (SSL_CTX_use_certificate_chain_file(ctx, s->cfg->tls_cert) != 1)
        return eng_err_set(ENG_ERR_IO, "--tls-cert %s: cannot load the certificate", s->cfg->tls_cert);
    if (SSL_CTX_use_PrivateKey_file(ctx, s->cfg->tls_key, SSL_FILETYPE_PEM) != 1)
        return eng_err_set(ENG_ERR_IO, "--tls-key %s: cannot load the private key", s->cfg->tls_key);
    if (SSL_CTX_check_private_key(ctx) != 1)
        return eng_err_set(ENG_ERR_INVALID, "--tls-key does not match --tls-cert");
    if (!s->cfg->no_http2) h2o_ssl_register_alpn_protocols(ctx, h2o_http2_alpn_protocols);
    return ENG_OK;
}

eng_status gw_server_create(gw_config *cfg, gw_server **out)
{
    *out = NULL;
    eng_status st;
    gw_server *s = eng_calloc(1, sizeof *s);
    if (!s) return eng_err_set(ENG_ERR_NOMEM, "out of memory");
    s->cfg = cfg;
    pthread_mutex_init(&s->start_mu, NULL);
    pthread_cond_init(&s->start_cv, NULL);
    gw_metrics_init(&s->metrics);
    gw_limits_default(&s->limits);
    s->limits.max_tokens_clamp = (int32_t)cfg->max_tokens_limit;

    h2o_config_init(&s->hconf);
    s->hconf.server_name = h2o_iovec_init(H2O_STRLIT("qnext-gateway"));
    /* h2o's own limit (text/plain 413 on HTTP/1, RST_STREAM on HTTP/2) sits above ours, so that
     * bodies between the two get our JSON 413 */
    size_t hard = (size_t)cfg->max_body_bytes * 2;
    if (hard < (size_t)cfg->max_body_bytes + (1u << 20)) hard = (size_t)cfg->max_body_bytes + (1u << 20);
    s->hconf.max_request_entity_size = hard;
    s->hconf.http1.upgrade_to_http2 = cfg->no_http2 ? 0 : 1;
    h2o_hostconf_t *host = h2o_config_register_host(&s->hconf, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *pc = h2o_config_register_path(host, "/", 0);
    h2o_handler_t *h = h2o_create_handler(pc, sizeof *h);
    h->on_req = gw_handle_request;

    if (cfg->tls_cert && (st = make_ssl(s))) goto fail;
    if ((st = gw_auth_create((const char *const *)cfg->api_keys, cfg->n_api_keys, cfg->api_keys_file, &s->auth)))
        goto fail;
    if ((st = gw_pool_create(cfg, &s->pool))) goto fail;
    s->n_loops = cfg->threads;
    s->loops = eng_calloc((size_t)s->n_loops, sizeof(gw_loop));
    if (!s->loops) {
        st = eng_err_set(ENG_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (int i = 0; i < s->n_loops; i++)
        if ((st = loop_init(s, &s->loops[i], i))) goto fail;
    *out = s;
    return ENG_OK;
fail:
    gw_server_destroy(s);
    return st;
}

eng_status gw_server_start(gw_server *s)
{
    int started = 0;
    for (int i = 0; i < s->n_loops; i++) {
        if (pthread_create(&s->loops[i].thread, NULL, loop_main, &s->loops[i]) != 0) break;
        s->loops[i].thread_started = true;
        started++;
    }
    pthread_mutex_lock(&s->start_mu);
    while (s->n_started < started) pthread_cond_wait(&s->start_cv, &s->start_mu);
    bool failed = s->start_error[0] != 0 || started < s->n_loops;
    pthread_mutex_unlock(&s->start_mu);
    if (!failed) return ENG_OK;
    if (started < s->n_loops) return eng_err_set(ENG_ERR_INTERNAL, "cannot start event-loop thread %d", started);
    return eng_err_set(ENG_ERR_INTERNAL, "%s", s->start_error);
}

void gw_server_shutdown(gw_server *s, bool force)
{
    if (force) atomic_store(&s->force_cancel, true);
    if (atomic_exchange(&s->draining, true)) return;
    for (int i = 0; i < s->n_loops; i++)
        if (s->loops[i].thread_started) h2o_multithread_send_message(&s->loops[i].ctl, &s->loops[i].ctl_msg);
}

bool gw_server_wait(gw_server *s, int timeout_ms)
{
    bool all = true;
    for (int i = 0; i < s->n_loops; i++) {
        gw_loop *l = &s->loops[i];
        if (!l->thread_started) continue;
        if (timeout_ms < 0) {
            pthread_join(l->thread, NULL);
        } else {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            int64_t ns = ts.tv_nsec + (int64_t)timeout_ms * 1000000;
            ts.tv_sec += ns / 1000000000;
            ts.tv_nsec = ns % 1000000000;
            if (pthread_timedjoin_np(l->thread, NULL, &ts) != 0) {
                all = false;
                continue;
            }
        }
        l->thread_started = false;
    }
    return all;
}

void gw_server_destroy(gw_server *s)
{
    if (!s) return;
    for (int i = 0; s->loops && i < s->n_loops; i++) {
        gw_loop *l = &s->loops[i];
        if (!l->thread_started && l->listen_fd >= 0 && !l->listener) close(l->listen_fd); /* never set up */
    }
    eng_free(s->loops);
    gw_pool_destroy(s->pool);
    gw_auth_destroy(s->auth);
    if (s->ssl) SSL_CTX_free(s->ssl);
    pthread_mutex_destroy(&s->start_mu);
    pthread_cond_destroy(&s->start_cv);
    eng_free(s);
}

int gw_server_port(const gw_server *s)
{
    return s->port;
}
