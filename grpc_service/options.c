/* grpc_service/options.c - the flag/environment table, parsing and --help (see options.h). */
#include "options.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef enum opt_kind { OPT_STR, OPT_INT, OPT_SIZE, OPT_DOUBLE, OPT_BOOL } opt_kind;

typedef struct opt_def {
    const char *flag; /* without the leading "--" */
    const char *env;
    opt_kind kind;
    size_t off;       /* offset in gsvc_options */
    double lo, hi;    /* allowed range (INT, SIZE, DOUBLE) */
    const char *arg;  /* metavariable in --help */
    const char *help;
} opt_def;

#define OFF(f) offsetof(gsvc_options, f)

static const opt_def opts[] = {
    /* ---- service */
    {"model", "QNEXT_MODEL", OPT_STR, OFF(eng.model_dir), 0, 0, "DIR",
     "model folder (config.json, *.safetensors, tokenizer.json); required"},
    {"listen", "QNEXT_LISTEN", OPT_STR, OFF(listen), 0, 0, "HOST:PORT", "address to serve gRPC on"},
    {"max-concurrent-streams", "QNEXT_MAX_CONCURRENT_STREAMS", OPT_INT, OFF(max_concurrent_streams), 0, INT_MAX, "N",
     "HTTP/2 streams per client connection (0 = gRPC default, unlimited)"},
    {"max-message-size", "QNEXT_MAX_MESSAGE_SIZE", OPT_SIZE, OFF(max_message_bytes), 1024, INT_MAX, "BYTES",
     "largest request message; larger ones get RESOURCE_EXHAUSTED"},
    {"grace-period", "QNEXT_GRACE_PERIOD", OPT_DOUBLE, OFF(grace_s), 0, 86400, "SECONDS",
     "on SIGTERM/SIGINT, how long running streams may finish before they are aborted"},
    {"cq-threads", "QNEXT_CQ_THREADS", OPT_INT, OFF(cq_threads), 1, 64, "N", "gRPC completion-queue threads"},
    {"retry-after-ms", "QNEXT_RETRY_AFTER_MS", OPT_INT, OFF(retry_after_ms), 0, 3600000, "MS",
     "retry-after-ms hint sent with RESOURCE_EXHAUSTED when the engine queue is full"},
    {"stream-backlog", "QNEXT_STREAM_BACKLOG", OPT_SIZE, OFF(stream_backlog_bytes), 4096, (double)(1ull << 40), "BYTES",
     "unsent output per stream beyond which a client that does not read is dropped"},
    /* ---- engine (eng_config) */
    {"device", "QNEXT_DEVICE", OPT_STR, OFF(eng.device), 0, 0, "NAME", "compute device: cpu, cuda or auto"},
    {"threads", "QNEXT_THREADS", OPT_INT, OFF(eng.n_threads), 0, 4096, "N", "CPU worker threads (0 = all cores)"},
    {"tp", "QNEXT_TP", OPT_INT, OFF(eng.tp), 1, 64, "N", "tensor-parallel world size (GPUs)"},
    {"chat-template", "QNEXT_CHAT_TEMPLATE", OPT_STR, OFF(eng.chat_template), 0, 0, "NAME",
     "chat template: auto (from the model folder), instruct, thinking or hybrid"},
    {"max-running", "QNEXT_MAX_RUNNING", OPT_INT, OFF(eng.max_running), 1, 1 << 20, "N", "sequences decoding at once"},
    {"max-batch-tokens", "QNEXT_MAX_BATCH_TOKENS", OPT_INT, OFF(eng.max_batch_tokens), 1, 1 << 24, "N",
     "tokens per engine step (decode + prefill chunks)"},
    {"max-queue", "QNEXT_MAX_QUEUE", OPT_INT, OFF(eng.max_queue), 0, 1 << 24, "N",
     "waiting requests; more get RESOURCE_EXHAUSTED"},
    {"max-model-len", "QNEXT_MAX_MODEL_LEN", OPT_INT, OFF(eng.max_model_len), 0, 1 << 24, "N",
     "context limit in tokens (0 = the model's)"},
    {"kv-block-size", "QNEXT_KV_BLOCK_SIZE", OPT_INT, OFF(eng.kv_block_size), 1, 1 << 16, "N", "tokens per KV-cache block"},
    {"kv-cache-size", "QNEXT_KV_CACHE_SIZE", OPT_SIZE, OFF(eng.kv_cache_bytes), 0, (double)(1ull << 50), "BYTES",
     "KV cache budget (0 = sized from max-running and max-model-len)"},
    {"state-slots", "QNEXT_STATE_SLOTS", OPT_INT, OFF(eng.n_state_slots), 0, 1 << 20, "N",
     "recurrent-state slots (0 = max-running + 1)"},
    {"prefix-cache-size", "QNEXT_PREFIX_CACHE_SIZE", OPT_SIZE, OFF(eng.prefix_cache_bytes), 0, (double)(1ull << 50),
     "BYTES", "prefix cache budget (0 disables)"},
    {"prefix-snapshot-every", "QNEXT_PREFIX_SNAPSHOT_EVERY", OPT_INT, OFF(eng.prefix_snapshot_every), 1, 1 << 24, "N",
     "also snapshot every N tokens of long prompts"},
    {"gpu-memory-fraction", "QNEXT_GPU_MEMORY_FRACTION", OPT_DOUBLE, OFF(eng.gpu_memory_fraction), 0.01, 1.0, "F",
     "CUDA: fraction of device memory to use"},
    {"batch-invariant", "QNEXT_BATCH_INVARIANT", OPT_BOOL, OFF(eng.batch_invariant), 0, 0, "BOOL",
     "fixed reduction order per row, results independent of batching"},
};

#define N_OPTS (sizeof opts / sizeof opts[0])

void gsvc_options_init(gsvc_options *o)
{
    memset(o, 0, sizeof *o);
    eng_config_init(&o->eng);
    o->listen = "0.0.0.0:50051";
    o->max_message_bytes = 4u << 20;
    o->grace_s = 30;
    o->cq_threads = 2;
    o->retry_after_ms = 1000;
    o->stream_backlog_bytes = 1u << 20;
}

/* ==== value parsing =========================================================================== */

static bool parse_bool(const char *v, bool *out)
{
    static const char *yes[] = {"1", "true", "yes", "on"}, *no[] = {"0", "false", "no", "off"};
    for (int i = 0; i < 4; i++) {
        if (!strcasecmp(v, yes[i])) return *out = true, true;
        if (!strcasecmp(v, no[i])) return *out = false, true;
    }
    return false;
}

/* Integer with an optional binary-unit suffix: K, M, G, T (optionally followed by "iB" or "B"). */
static bool parse_size(const char *v, double *out)
{
    errno = 0;
    char *end;
    if (!isdigit((unsigned char)v[0])) return false;
    unsigned long long n = strtoull(v, &end, 10);
    if (errno) return false;
    double mul = 1;
    switch (toupper((unsigned char)*end)) {
    case 'K': mul = 1024.0; end++; break;
    case 'M': mul = 1048576.0; end++; break;
    case 'G': mul = 1073741824.0; end++; break;
    case 'T': mul = 1099511627776.0; end++; break;
    default: break;
    }
    if (mul > 1 && (!strcasecmp(end, "iB") || !strcasecmp(end, "B"))) end += strlen(end);
    if (*end) return false;
    *out = (double)n * mul;
    return true;
}

/* Sets one option from text; prints a message naming `src` (flag or env variable) on error. */
static bool set_opt(gsvc_options *o, const opt_def *d, const char *v, const char *src, FILE *err)
{
    char *base = (char *)o + d->off;
    char *end;
    double x = 0;
    switch (d->kind) {
    case OPT_STR:
        if (!v[0]) {
            fprintf(err, "qnext-engine: %s: empty value\n", src);
            return false;
        }
        *(const char **)base = v;
        return true;
    case OPT_BOOL:
        if (!parse_bool(v, (bool *)base)) {
            fprintf(err, "qnext-engine: %s: '%s' is not a boolean (true/false, 1/0, yes/no, on/off)\n", src, v);
            return false;
        }
        return true;
    case OPT_INT:
        errno = 0;
        x = (double)strtoll(v, &end, 10);
        if (errno || end == v || *end) {
            fprintf(err, "qnext-engine: %s: '%s' is not an integer\n", src, v);
            return false;
        }
        break;
    case OPT_SIZE:
        if (!parse_size(v, &x)) {
            fprintf(err, "qnext-engine: %s: '%s' is not a size (bytes, or with K/M/G/T)\n", src, v);
            return false;
        }
        break;
    case OPT_DOUBLE:
        errno = 0;
        x = strtod(v, &end);
        if (errno || end == v || *end || !isfinite(x)) {
            fprintf(err, "qnext-engine: %s: '%s' is not a number\n", src, v);
            return false;
        }
        break;
    }
    if (x < d->lo || x > d->hi) {
        fprintf(err, "qnext-engine: %s: %s is out of range [%.17g, %.17g]\n", src, v, d->lo, d->hi);
        return false;
    }
    if (d->kind == OPT_INT) *(int *)base = (int)x;
    else if (d->kind == OPT_SIZE) *(size_t *)base = (size_t)x;
    else *(double *)base = x;
    return true;
}

/* ==== help ==================================================================================== */

static void fmt_value(const gsvc_options *o, const opt_def *d, char *buf, size_t cap)
{
    const char *base = (const char *)o + d->off;
    switch (d->kind) {
    case OPT_STR: snprintf(buf, cap, "%s", *(const char *const *)base ? *(const char *const *)base : "(none)"); break;
    case OPT_INT: snprintf(buf, cap, "%d", *(const int *)base); break;
    case OPT_SIZE: {
        size_t v = *(const size_t *)base;
        if (v && v % (1u << 20) == 0) snprintf(buf, cap, "%zuM", v >> 20);
        else if (v && v % 1024 == 0) snprintf(buf, cap, "%zuK", v >> 10);
        else snprintf(buf, cap, "%zu", v);
        break;
    }
    case OPT_DOUBLE: snprintf(buf, cap, "%g", *(const double *)base); break;
    case OPT_BOOL: snprintf(buf, cap, "%s", *(const bool *)base ? "true" : "false"); break;
    }
}

void gsvc_options_usage(const gsvc_options *o, FILE *f, const char *prog)
{
    fprintf(f,
            "usage: %s --model DIR [options]\n\n"
            "qnext-engine serves one model replica over gRPC: qnext.v1.Generator (Generate, Abort,\n"
            "Tokenize, Detokenize, GetModelInfo, GetLoad) and grpc.health.v1.Health (NOT_SERVING until\n"
            "the model is loaded and while draining). SIGTERM/SIGINT drain: new Generate calls get\n"
            "UNAVAILABLE, running streams get --grace-period to finish, then the rest are aborted; a\n"
            "second signal skips the wait.\n\n"
            "Every option can also be set by the environment variable shown; a flag wins over the\n"
            "environment. Sizes take K/M/G/T (binary) suffixes; booleans true/false, 1/0, yes/no, on/off.\n",
            prog);
    for (size_t i = 0; i < N_OPTS; i++) {
        const opt_def *d = &opts[i];
        if (i == 0) fprintf(f, "\nservice:\n");
        if (!strcmp(d->flag, "device")) fprintf(f, "\nengine:\n");
        char flag[80], val[64];
        snprintf(flag, sizeof flag, "--%s %s", d->flag, d->arg);
        fmt_value(o, d, val, sizeof val);
        fprintf(f, "  %-36s %s\n  %-36s [env %s; default %s]\n", flag, d->help, "", d->env, val);
    }
    fprintf(f, "\nother:\n  %-36s %s\n  %-36s %s\n", "-h, --help", "this text", "--version", "print the version");
    fprintf(f, "\nenvironment only: QNEXT_LOG=debug|info|warn|error (log level, default info)\n");
}

/* ==== parse =================================================================================== */

gsvc_opt_result gsvc_options_parse(gsvc_options *o, int argc, char **argv, const char *(*get)(const char *name),
                                   FILE *out, FILE *err)
{
    const char *prog = argc > 0 ? argv[0] : "qnext-engine";
    for (size_t i = 0; i < N_OPTS && get; i++) {
        const char *v = get(opts[i].env);
        if (v && !set_opt(o, &opts[i], v, opts[i].env, err)) return GSVC_OPT_ERROR;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            gsvc_options_usage(o, out, prog);
            return GSVC_OPT_EXIT;
        }
        if (!strcmp(a, "--version")) {
            fprintf(out, "qnext-engine 0.1.0\n");
            return GSVC_OPT_EXIT;
        }
        if (strncmp(a, "--", 2)) {
            fprintf(err, "qnext-engine: unexpected argument '%s' (see --help)\n", a);
            return GSVC_OPT_ERROR;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        bool negated = false;
        const opt_def *d = NULL;
        for (size_t k = 0; k < N_OPTS && !d; k++) {
            if (strlen(opts[k].flag) == nlen && !strncmp(opts[k].flag, name, nlen)) d = &opts[k];
            else if (opts[k].kind == OPT_BOOL && nlen == strlen(opts[k].flag) + 3 && !strncmp(name, "no-", 3) &&
                     !strncmp(name + 3, opts[k].flag, nlen - 3))
                d = &opts[k], negated = true;
        }
        if (!d) {
            fprintf(err, "qnext-engine: unknown option '--%.*s' (see --help)\n", (int)nlen, name);
            return GSVC_OPT_ERROR;
        }
        const char *v;
        if (d->kind == OPT_BOOL && !eq) {
            v = negated ? "false" : "true";
        } else if (negated) {
            fprintf(err, "qnext-engine: --no-%s takes no value\n", d->flag);
            return GSVC_OPT_ERROR;
        } else if (eq) {
            v = eq + 1;
        } else if (i + 1 < argc) {
            v = argv[++i];
        } else {
            fprintf(err, "qnext-engine: --%s needs a value (%s)\n", d->flag, d->arg);
            return GSVC_OPT_ERROR;
        }
        char src[96];
        snprintf(src, sizeof src, "--%s", d->flag);
        if (!set_opt(o, d, v, src, err)) return GSVC_OPT_ERROR;
    }
    if (!o->eng.model_dir || !o->eng.model_dir[0]) {
        fprintf(err, "qnext-engine: --model DIR (or QNEXT_MODEL) is required (see --help)\n");
        return GSVC_OPT_ERROR;
    }
    return GSVC_OPT_RUN;
}
