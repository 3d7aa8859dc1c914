/* main.c - qnext-gateway: the OpenAI-compatible REST/SSE gateway in front of qnext-engine replicas.
 *
 * Signals are handled synchronously: they are blocked in every thread (set before any thread is
 * created, so gRPC's and our threads inherit the mask) and the main thread waits for them with
 * sigtimedwait. SIGTERM/SIGINT start a graceful drain (a second one cancels what is left);
 * SIGHUP re-reads --api-keys-file. Nothing runs in signal-handler context.
 */
#include "config.h"  /* defines: gw_config */
#include "gateway.h" /* defines: gw_server */

#include "core/core.h" /* defines: eng_log */

#include <grpc/grpc.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void set_log_level(const char *l)
{
    if (!l) return;
    if (!strcmp(l, "debug")) eng_log_set_level(ENG_LOG_DEBUG);
    else if (!strcmp(l, "warn")) eng_log_set_level(ENG_LOG_WARN);
    else if (!strcmp(l, "error")) eng_log_set_level(ENG_LOG_ERROR);
    else eng_log_set_level(ENG_LOG_INFO);
}

int main(int argc, char **argv)
{
    gw_config cfg;
    bool exit_now = false;
    if (gw_config_parse(&cfg, argc, argv, stdout, &exit_now) != ENG_OK) {
        fprintf(stderr, "qnext-gateway: %s\n", eng_err_last());
        gw_config_free(&cfg);
        return 2;
    }
    if (exit_now) {
        gw_config_free(&cfg);
        return 0;
    }
    set_log_level(cfg.log_level);

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    grpc_init();
    gw_server *srv = NULL;
    int rc = 0;
    if (gw_server_create(&cfg, &srv) != ENG_OK) {
        fprintf(stderr, "qnext-gateway: %s\n", eng_err_last());
        rc = 1;
        goto out;
    }
    if (gw_server_start(srv) != ENG_OK) {
        /* some loop threads may be running: leave without tearing down under them */
        fprintf(stderr, "qnext-gateway: %s\n", eng_err_last());
        fflush(stderr);
        _exit(1);
    }
    fprintf(stderr, "qnext-gateway: listening on %s://%s:%d (%d threads, %zu engines, auth %s)\n",
            cfg.tls_cert ? "https" : "http", cfg.host, gw_server_port(srv), cfg.threads, cfg.n_engines,
            cfg.n_api_keys || cfg.api_keys_file ? "on" : "off");
    fflush(stderr);

    int terms = 0;
    for (;;) {
        struct timespec ts = {0, 200 * 1000000};
        int sig = sigtimedwait(&set, NULL, &ts);
        if (sig == SIGHUP) {
            if (!cfg.api_keys_file) {
                eng_log(ENG_LOG_INFO, "gateway: SIGHUP: no --api-keys-file to reload");
            } else if (gw_auth_reload(srv->auth) == ENG_OK) {
                eng_log(ENG_LOG_INFO, "gateway: SIGHUP: reloaded %s (%zu keys)", cfg.api_keys_file,
                        gw_auth_count(srv->auth));
            } else {
                eng_log(ENG_LOG_WARN, "gateway: SIGHUP: keeping the old keys: %s", eng_err_last());
            }
        } else if (sig == SIGTERM || sig == SIGINT) {
            terms++;
            eng_log(ENG_LOG_INFO, "gateway: %s: %s", sig == SIGTERM ? "SIGTERM" : "SIGINT",
                    terms == 1 ? "draining" : "cancelling in-flight requests");
            gw_server_shutdown(srv, terms > 1);
        }
        if (terms && gw_server_wait(srv, 0)) break;
    }
    eng_log(ENG_LOG_INFO, "gateway: stopped");
out:
    gw_server_destroy(srv);
    grpc_shutdown();
    gw_config_free(&cfg);
    return rc;
}
