/* config.h - qnext-gateway settings from command-line flags and QNEXT_* environment variables.
 *
 * One table describes every setting (flag, environment variable, type, default, help text); the
 * environment is applied first and flags override it (a repeatable flag given on the command line
 * replaces the environment's list). `qnext-gateway --help` prints the table.
 */
#ifndef GW_CONFIG_H
#define GW_CONFIG_H

#include "qnext/status.h" /* defines: eng_status */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct gw_config {
    char *host;                 /* listen address (default 0.0.0.0) */
    int port;                   /* 0: any free port (printed on stderr at startup) */
    int threads;                /* event loops */
    char **engines;             /* (n_engines,) "host:port" of qnext-engine replicas */
    size_t n_engines;
    char *served_model_name;    /* overrides the engines' model_id; NULL = use the engines' */
    char **api_keys;            /* (n_api_keys,) */
    size_t n_api_keys;
    char *api_keys_file;        /* one key per line; re-read on SIGHUP */
    bool metrics_require_key;   /* /metrics needs a key too */
    int64_t max_body_bytes;     /* request body limit */
    int64_t max_tokens_limit;   /* > 0: clamp every request's max tokens */
    int64_t max_concurrent;     /* generation requests in flight through this gateway (then 429) */
    int64_t max_per_engine;     /* > 0: in-flight requests per engine (then the next engine, then 429) */
    double sse_ping_interval_s; /* SSE ": ping" after this long without output; 0 = never */
    double request_timeout_s;   /* gRPC deadline per request; 0 = none */
    double load_poll_s;         /* GetLoad / health poll period */
    double shutdown_timeout_s;  /* SIGTERM: drain this long, then cancel what is left */
    int64_t retry_after_s;      /* Retry-After on 429/503 when the engine gives no hint */
    char *tls_cert, *tls_key;   /* PEM files: serve HTTPS (h2 via ALPN) */
    bool no_http2;              /* HTTP/1.1 only: no h2c, no h2 via TLS ALPN */
    bool mirror_reasoning;      /* also emit `reasoning` next to `reasoning_content` */
    int64_t stream_buffer_bytes; /* per-stream output buffer above which reading upstream pauses */
    char *log_level;            /* debug, info, warn, error */
} gw_config;

/* Fills `c` from the environment then argv. Returns ENG_OK; ENG_ERR_INVALID with a detail naming
 * the flag on bad input. `*exit_now` is set when --help or --version was printed to `out`. */
eng_status gw_config_parse(gw_config *c, int argc, char **argv, FILE *out, bool *exit_now);

/* Frees the strings in `c`. NULL-safe, idempotent. */
void gw_config_free(gw_config *c);

/* Prints the flag table. */
void gw_config_usage(FILE *out);

#endif /* GW_CONFIG_H */
