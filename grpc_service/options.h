/* grpc_service/options.h - qnext-engine's settings: command-line flags, QNEXT_* environment
 * variables and defaults, in that order of precedence, described by one table that also prints
 * --help. Every eng_config field has a flag; the service adds the listen address, limits and
 * the drain grace period.
 */
#ifndef GSVC_OPTIONS_H
#define GSVC_OPTIONS_H

#include "qnext/eng.h" /* defines: eng_config */

#include <stddef.h>
#include <stdio.h>

typedef struct gsvc_options {
    eng_config eng;              /* engine settings; eng.model_dir is required */
    const char *listen;          /* host:port to serve on (default 0.0.0.0:50051) */
    int max_concurrent_streams;  /* HTTP/2 streams per connection; 0 = gRPC's default */
    size_t max_message_bytes;    /* largest request message accepted (default 4 MiB) */
    double grace_s;              /* SIGTERM: how long running streams may finish (default 30) */
    int cq_threads;              /* completion-queue threads (default 2) */
    int retry_after_ms;          /* the retry-after-ms hint sent with "queue full" (default 1000) */
    size_t stream_backlog_bytes; /* a stream's unsent output beyond which a non-reading client is
                                    dropped with RESOURCE_EXHAUSTED (default 1 MiB) */
} gsvc_options;

typedef enum gsvc_opt_result {
    GSVC_OPT_RUN = 0, /* parsed: run the server */
    GSVC_OPT_EXIT,    /* --help or --version was printed to `out`: exit 0 */
    GSVC_OPT_ERROR,   /* a message was printed to `err`: exit 2 */
} gsvc_opt_result;

/* Fills defaults (eng_config_init + the service's own). */
void gsvc_options_init(gsvc_options *o);

/* Applies environment variables (looked up with `get`, e.g. getenv) and then argv[1..argc). String
 * values point into argv or the environment (which must outlive o). Prints to out / err. */
gsvc_opt_result gsvc_options_parse(gsvc_options *o, int argc, char **argv, const char *(*get)(const char *name),
                                   FILE *out, FILE *err);

/* Prints the --help text (with current values as defaults) to f. */
void gsvc_options_usage(const gsvc_options *o, FILE *f, const char *prog);

#endif /* GSVC_OPTIONS_H */
