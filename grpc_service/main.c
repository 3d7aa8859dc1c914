/* grpc_service/main.c - qnext-engine: flags and environment, signals, drain and exit codes.
 *
 * Exit codes: 0 after a clean drain, 1 if the model failed to load or the engine failed, 2 for
 * bad flags. SIGTERM/SIGINT start the drain (health NOT_SERVING, new Generate calls UNAVAILABLE,
 * running streams get --grace-period to finish, then they are aborted); a second signal ends the
 * wait at once. Signals are blocked in every thread and taken here with sigtimedwait, so no
 * handler runs inside gRPC or engine code.
 */
#include "options.h"
#include "server.h"
#include "util.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *env_get(const char *name)
{
    return getenv(name);
}

/* Waits up to ms for SIGTERM/SIGINT; returns the signal or 0. */
static int wait_signal(const sigset_t *set, int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    int sig = sigtimedwait(set, NULL, &ts);
    return sig > 0 ? sig : 0;
}

int main(int argc, char **argv)
{
    gsvc_options opt;
    gsvc_options_init(&opt);
    switch (gsvc_options_parse(&opt, argc, argv, env_get, stdout, stderr)) {
    case GSVC_OPT_EXIT: return 0;
    case GSVC_OPT_ERROR: return 2;
    case GSVC_OPT_RUN: break;
    }

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* before any thread exists: all inherit it */
    signal(SIGPIPE, SIG_IGN);

    gsvc_server *srv;
    if (gsvc_server_create(&opt, &srv) != ENG_OK) {
        gsvc_log(GSVC_LOG_ERROR, "%s", eng_err_last());
        return 1;
    }
    if (gsvc_server_start(srv) != ENG_OK) {
        gsvc_log(GSVC_LOG_ERROR, "%s", eng_err_last());
        gsvc_server_destroy(srv);
        return 1;
    }

    int sig = 0;
    while (!sig && !gsvc_server_failed(srv)) sig = wait_signal(&set, 200);
    int rc = gsvc_server_failed(srv) ? 1 : 0;
    if (sig) {
        gsvc_log(GSVC_LOG_INFO, "%s: draining (%d stream(s) open, grace period %.0f s)", strsignal(sig),
                 gsvc_server_active_streams(srv), opt.grace_s);
        gsvc_server_drain(srv);
        int64_t deadline = gsvc_now_ms() + (int64_t)(opt.grace_s * 1000);
        bool again = false;
        while (!gsvc_server_wait_idle(srv, 0) && !gsvc_server_failed(srv)) {
            int64_t left = deadline - gsvc_now_ms();
            if (left <= 0) break;
            if (wait_signal(&set, left < 100 ? (int)left : 100)) {
                again = true;
                break;
            }
        }
        int open = gsvc_server_active_streams(srv);
        if (open > 0) {
            gsvc_log(GSVC_LOG_WARN, "%s: aborting %d stream(s)", again ? "second signal" : "grace period over", open);
            gsvc_server_abort_streams(srv);
            gsvc_server_wait_idle(srv, 2000);
        }
        if (gsvc_server_failed(srv)) rc = 1;
    }
    gsvc_log(GSVC_LOG_INFO, "shutting down");
    gsvc_server_shutdown(srv);
    gsvc_server_destroy(srv);
    gsvc_log(GSVC_LOG_INFO, "stopped");
    return rc;
}
