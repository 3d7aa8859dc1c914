/* config.c - flag and environment parsing for qnext-gateway (see config.h). */
#include "config.h"

#include "core/core.h" /* defines: eng_strdup, eng_malloc */

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

typedef enum opt_type { T_STR, T_INT, T_NUM, T_BOOL, T_LIST } opt_type;

typedef struct opt {
    const char *flag; /* without the leading "--" */
    const char *env;
    opt_type type;
    size_t off;       /* offsetof the field in gw_config (T_LIST: the char ** field) */
    size_t off_n;     /* T_LIST: offsetof the count */
    double lo, hi;    /* T_INT / T_NUM range */
    const char *def;  /* default, as text (NULL: none) */
    const char *arg;  /* placeholder shown in --help */
    const char *help;
} opt;

#define F(x) offsetof(gw_config, x)
static const opt opts[] = {
    {"host", "QNEXT_HOST", T_STR, F(host), 0, 0, 0, "0.0.0.0", "ADDR", "listen address"},
    {"port", "QNEXT_PORT", T_INT, F(port), 0, 0, 65535, "8000", "N", "listen port (0: any free port)"},
    {"threads", "QNEXT_THREADS", T_INT, F(threads), 0, 1, 256, "2", "N", "event-loop threads"},
    {"engine", "QNEXT_ENGINES", T_LIST, F(engines), F(n_engines), 0, 0, NULL, "HOST:PORT",
     "a qnext-engine replica (repeatable; env: comma-separated); required"},
    {"served-model-name", "QNEXT_SERVED_MODEL_NAME", T_STR, F(served_model_name), 0, 0, 0, NULL, "NAME",
     "model name to serve (default: the engines' model_id)"},
    {"api-key", "QNEXT_API_KEY", T_LIST, F(api_keys), F(n_api_keys), 0, 0, NULL, "KEY",
     "accepted Bearer key (repeatable; prefer --api-keys-file: argv is visible in /proc)"},
    {"api-keys-file", "QNEXT_API_KEYS_FILE", T_STR, F(api_keys_file), 0, 0, 0, NULL, "PATH",
     "file of accepted keys, one per line, # comments; re-read on SIGHUP"},
    {"metrics-require-key", "QNEXT_METRICS_REQUIRE_KEY", T_BOOL, F(metrics_require_key), 0, 0, 0, "0", NULL,
     "require an API key for /metrics too"},
    {"max-body-bytes", "QNEXT_MAX_BODY_BYTES", T_INT, F(max_body_bytes), 0, 1024, 1073741824.0, "4194304", "N",
     "request body limit (413 above it)"},
    {"max-tokens-limit", "QNEXT_MAX_TOKENS_LIMIT", T_INT, F(max_tokens_limit), 0, 0, 2147483647.0, "0", "N",
     "clamp every request's max tokens to N (0: no clamp)"},
    {"max-concurrent-requests", "QNEXT_MAX_CONCURRENT_REQUESTS", T_INT, F(max_concurrent), 0, 1, 1000000, "1024",
     "N", "generation requests in flight through this gateway; above it 429"},
    {"max-requests-per-engine", "QNEXT_MAX_REQUESTS_PER_ENGINE", T_INT, F(max_per_engine), 0, 0, 1000000, "0", "N",
     "in-flight requests per engine before it counts as saturated (0: no limit)"},
    {"sse-ping-interval", "QNEXT_SSE_PING_INTERVAL", T_NUM, F(sse_ping_interval_s), 0, 0, 3600, "5", "SECONDS",
     "send an SSE ': ping' comment after this long without output (0: never)"},
    {"request-timeout", "QNEXT_REQUEST_TIMEOUT", T_NUM, F(request_timeout_s), 0, 0, 86400, "600", "SECONDS",
     "deadline of each upstream call (0: none)"},
    {"load-poll-interval", "QNEXT_LOAD_POLL_INTERVAL", T_NUM, F(load_poll_s), 0, 0.05, 3600, "1", "SECONDS",
     "how often each engine's health and GetLoad are polled"},
    {"shutdown-timeout", "QNEXT_SHUTDOWN_TIMEOUT", T_NUM, F(shutdown_timeout_s), 0, 0, 86400, "30", "SECONDS",
     "on SIGTERM, let in-flight requests finish for this long, then cancel them"},
    {"retry-after", "QNEXT_RETRY_AFTER", T_INT, F(retry_after_s), 0, 0, 3600, "1", "SECONDS",
     "Retry-After sent with 429/503 when the engine gives no hint"},
    {"tls-cert", "QNEXT_TLS_CERT", T_STR, F(tls_cert), 0, 0, 0, NULL, "PEM", "serve HTTPS with this certificate"},
    {"tls-key", "QNEXT_TLS_KEY", T_STR, F(tls_key), 0, 0, 0, NULL, "PEM", "private key for --tls-cert"},
    {"no-http2", "QNEXT_NO_HTTP2", T_BOOL, F(no_http2), 0, 0, 0, "0", NULL,
     "serve HTTP/1.1 only (no h2c upgrade or prior knowledge, no h2 in TLS ALPN)"},
    {"mirror-reasoning", "QNEXT_MIRROR_REASONING", T_BOOL, F(mirror_reasoning), 0, 0, 0, "0", NULL,
     "also send reasoning text as `reasoning` (newer vLLM name) next to `reasoning_content`"},
    {"stream-buffer-bytes", "QNEXT_STREAM_BUFFER_BYTES", T_INT, F(stream_buffer_bytes), 0, 4096, 1073741824.0,
     "262144", "N", "per-stream unsent output above which the upstream stream is paused"},
    {"log-level", "QNEXT_LOG", T_STR, F(log_level), 0, 0, 0, "info", "LEVEL", "debug, info, warn or error"},
};
#define N_OPTS (sizeof opts / sizeof opts[0])

static eng_status list_add(char ***list, size_t *n, const char *v, size_t len)
{
    char **nl = eng_realloc(*list, (*n + 1) * sizeof(char *));
    if (!nl) return eng_err_set(ENG_ERR_NOMEM, "out of memory");
    *list = nl;
    if (!(nl[*n] = eng_strndup(v, len))) return eng_err_set(ENG_ERR_NOMEM, "out of memory");
    (*n)++;
    return ENG_OK;
}

static void list_clear(char ***list, size_t *n)
{
    for (size_t i = 0; *list && i < *n; i++) eng_free((*list)[i]);
    eng_free(*list);
    *list = NULL;
    *n = 0;
}

/* Sets option `o` from text `v`; `src` names the source for messages. `from_env` splits lists on
 * commas. */
static eng_status set_opt(gw_config *c, const opt *o, const char *v, const char *src, bool from_env)
{
    char *base = (char *)c;
    switch (o->type) {
    case T_STR: {
        char **f = (char **)(base + o->off);
        eng_free(*f);
        *f = eng_strdup(v);
        return *f ? ENG_OK : eng_err_set(ENG_ERR_NOMEM, "out of memory");
    }
    case T_BOOL: {
        bool *f = (bool *)(base + o->off);
        if (!strcmp(v, "1") || !strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "on")) *f = true;
        else if (!strcmp(v, "0") || !strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "off") || !*v) *f = false;
        else return eng_err_set(ENG_ERR_INVALID, "%s: expected a boolean, got '%s'", src, v);
        return ENG_OK;
    }
    case T_INT:
    case T_NUM: {
        errno = 0;
        char *end;
        double d = strtod(v, &end);
        if (end == v || *end || errno || !isfinite(d))
            return eng_err_set(ENG_ERR_INVALID, "%s: expected a number, got '%s'", src, v);
        if (o->type == T_INT && d != floor(d))
            return eng_err_set(ENG_ERR_INVALID, "%s: expected an integer, got '%s'", src, v);
        if (d < o->lo || d > o->hi)
            return eng_err_set(ENG_ERR_INVALID, "%s: %s is out of range [%g, %g]", src, v, o->lo, o->hi);
        if (o->type == T_NUM) *(double *)(base + o->off) = d;
        else if (o->off == F(port) || o->off == F(threads)) *(int *)(base + o->off) = (int)d;
        else *(int64_t *)(base + o->off) = (int64_t)d;
        return ENG_OK;
    }
    case T_LIST: {
        char ***l = (char ***)(base + o->off);
        size_t *n = (size_t *)(base + o->off_n);
        if (!from_env) return list_add(l, n, v, strlen(v));
        const char *p = v;
        while (*p) {
            const char *e = strchr(p, ',');
            size_t len = e ? (size_t)(e - p) : strlen(p);
            if (len) {
                eng_status st = list_add(l, n, p, len);
                if (st) return st;
            }
            p += len + (e ? 1 : 0);
        }
        return ENG_OK;
    }
    }
    return ENG_ERR_INTERNAL;
}

void gw_config_usage(FILE *out)
{
    fprintf(out, "usage: qnext-gateway --engine HOST:PORT [options]\n\n"
                 "OpenAI-compatible REST/SSE gateway in front of qnext-engine replicas.\n"
                 "Endpoints: POST /v1/chat/completions, POST /v1/completions, GET /v1/models[/{id}],\n"
                 "GET /health, /ready, /metrics, /openapi.json. Signals: SIGTERM/SIGINT drain and exit,\n"
                 "SIGHUP re-reads --api-keys-file.\n\noptions (environment variable in brackets):\n");
    for (size_t i = 0; i < N_OPTS; i++) {
        const opt *o = &opts[i];
        char left[64];
        snprintf(left, sizeof left, "--%s%s%s", o->flag, o->arg ? " " : "", o->arg ? o->arg : "");
        fprintf(out, "  %-34s %s [%s]", left, o->help, o->env);
        if (o->def && o->type != T_BOOL) fprintf(out, " (default %s)", o->def);
        fputc('\n', out);
    }
    fprintf(out, "  %-34s %s\n  %-34s %s\n", "--help", "show this text", "--version", "show the version");
}

eng_status gw_config_parse(gw_config *c, int argc, char **argv, FILE *out, bool *exit_now)
{
    memset(c, 0, sizeof *c);
    *exit_now = false;
    eng_status st;
    char src[96];
    for (size_t i = 0; i < N_OPTS; i++) {
        if (opts[i].def && (st = set_opt(c, &opts[i], opts[i].def, opts[i].flag, false))) return st;
    }
    for (size_t i = 0; i < N_OPTS; i++) {
        const char *v = getenv(opts[i].env);
        if (!v) continue;
        snprintf(src, sizeof src, "%s", opts[i].env);
        if ((st = set_opt(c, &opts[i], v, src, true))) return st;
    }
    bool cli_list_seen[N_OPTS] = {0};
    for (int a = 1; a < argc; a++) {
        const char *arg = argv[a];
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
            gw_config_usage(out);
            *exit_now = true;
            return ENG_OK;
        }
        if (!strcmp(arg, "--version")) {
            fprintf(out, "qnext-gateway 0.1.0\n");
            *exit_now = true;
            return ENG_OK;
        }
        if (strncmp(arg, "--", 2) != 0) return eng_err_set(ENG_ERR_INVALID, "unexpected argument '%s' (see --help)", arg);
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t nl = eq ? (size_t)(eq - name) : strlen(name);
        const opt *o = NULL;
        size_t oi = 0;
        for (oi = 0; oi < N_OPTS; oi++) {
            if (strlen(opts[oi].flag) == nl && !strncmp(opts[oi].flag, name, nl)) {
                o = &opts[oi];
                break;
            }
        }
        if (!o) return eng_err_set(ENG_ERR_INVALID, "unknown option '%.*s' (see --help)", (int)(nl + 2), arg);
        const char *v;
        if (eq) v = eq + 1;
        else if (o->type == T_BOOL) v = "1";
        else if (a + 1 < argc) v = argv[++a];
        else return eng_err_set(ENG_ERR_INVALID, "--%s needs a value", o->flag);
        if (o->type == T_LIST && !cli_list_seen[oi]) {
            /* the command line replaces the environment's list */
            list_clear((char ***)((char *)c + o->off), (size_t *)((char *)c + o->off_n));
            cli_list_seen[oi] = true;
        }
        snprintf(src, sizeof src, "--%s", o->flag);
        if ((st = set_opt(c, o, v, src, false))) return st;
    }
    if (c->n_engines == 0) return eng_err_set(ENG_ERR_INVALID, "no engine given: use --engine HOST:PORT (or QNEXT_ENGINES)");
    if (!c->tls_cert != !c->tls_key) return eng_err_set(ENG_ERR_INVALID, "--tls-cert and --tls-key go together");
    if (c->n_engines > 64) return eng_err_set(ENG_ERR_INVALID, "at most 64 engines");
    return ENG_OK;
}

void gw_config_free(gw_config *c)
{
    if (!c) return;
    for (size_t i = 0; i < N_OPTS; i++) {
        if (opts[i].type == T_STR) {
            char **f = (char **)((char *)c + opts[i].off);
            eng_free(*f);
            *f = NULL;
        } else if (opts[i].type == T_LIST) {
            list_clear((char ***)((char *)c + opts[i].off), (size_t *)((char *)c + opts[i].off_n));
        }
    }
}
