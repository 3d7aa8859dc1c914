/* cli/cli_engine.c - shared plumbing of the engine subcommands (see cli_engine.h). */
#include "cli_engine.h"

#include "core/core.h" /* defines: eng_fmt_bytes */

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char cli_engine_flags_help[] =
    "engine options:\n"
    "  --model DIR            model folder (config.json, *.safetensors, tokenizer.json); required\n"
    "  --device NAME          cpu, cuda or auto (cuda when built with CUDA and a GPU is present; default "
    "cpu)\n"
    "  --threads N            CPU worker threads (default: all cores)\n"
    "  --tp N                 tensor-parallel ranks (CPU: threads split between them; cuda: GPUs 0..N-1\n"
    "                         over NCCL; default 1)\n"
    "  --gpu-memory-fraction F  cuda: share of each GPU's memory to use, weights + caches (default 0.90)\n"
    "  --template NAME        chat template: instruct, thinking or hybrid (default: from the model folder)\n"
    "  --max-running N        sequences decoding at once (default 64)\n"
    "  --max-batch-tokens N   tokens per engine step (default 2048)\n"
    "  --max-model-len N      context limit in tokens (default: the model's, within the KV cache)\n"
    "  --kv-cache-mb N        KV cache budget in MiB (default: max-running x context, on the CPU at most\n"
    "                         10% of RAM and 4 GiB; on a GPU what the weights leave)\n"
    "  --prefix-cache-mb N    prefix cache budget in MiB (default 1024; 0 disables)\n";

void cli_engine_opts_init(cli_engine_opts *o)
{
    memset(o, 0, sizeof *o);
    o->prefix_cache_mb = -1;
}

bool cli_parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < lo || v > hi) return false;
    *out = v;
    return true;
}

bool cli_parse_double(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno || !isfinite(v) || v < lo || v > hi) return false;
    *out = v;
    return true;
}

bool cli_parse_u64(const char *s, unsigned long long *out)
{
    char *end;
    errno = 0;
    if (!*s || *s == '-') return false;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || *end || errno) return false;
    *out = v;
    return true;
}

int cli_engine_flag(const char *cmd, int argc, char **argv, int *i, cli_engine_opts *o)
{
    const char *a = argv[*i];
    static const struct {
        const char *flag;
        int kind; /* 0 string, 1 long, 2 double */
        long lo, hi;
        size_t off;
    } flags[] = {
        {"--model", 0, 0, 0, offsetof(cli_engine_opts, model)},
        {"--device", 0, 0, 0, offsetof(cli_engine_opts, device)},
        {"--gpu-memory-fraction", 2, 0, 1, offsetof(cli_engine_opts, gpu_memory_fraction)},
        {"--template", 0, 0, 0, offsetof(cli_engine_opts, template_name)},
        {"--threads", 1, 1, 4096, offsetof(cli_engine_opts, threads)},
        {"--tp", 1, 1, 64, offsetof(cli_engine_opts, tp)},
        {"--max-running", 1, 1, 1 << 20, offsetof(cli_engine_opts, max_running)},
        {"--max-batch-tokens", 1, 1, 1 << 24, offsetof(cli_engine_opts, max_batch_tokens)},
        {"--max-model-len", 1, 2, 1 << 24, offsetof(cli_engine_opts, max_model_len)},
        {"--kv-cache-mb", 2, 0, 1 << 24, offsetof(cli_engine_opts, kv_cache_mb)},
        {"--prefix-cache-mb", 2, 0, 1 << 24, offsetof(cli_engine_opts, prefix_cache_mb)},
    };
    for (size_t k = 0; k < sizeof flags / sizeof flags[0]; k++) {
        if (strcmp(a, flags[k].flag)) continue;
        if (*i + 1 >= argc) {
            fprintf(stderr, "qnext %s: %s needs a value\n", cmd, a);
            return -1;
        }
        const char *v = argv[++*i];
        char *base = (char *)o + flags[k].off;
        if (flags[k].kind == 0) {
            *(const char **)base = v;
        } else if (flags[k].kind == 1) {
            if (!cli_parse_long(v, flags[k].lo, flags[k].hi, (long *)base)) {
                fprintf(stderr, "qnext %s: %s needs an integer in [%ld, %ld], got '%s'\n", cmd, a,
                        flags[k].lo, flags[k].hi, v);
                return -1;
            }
        } else if (!cli_parse_double(v, (double)flags[k].lo, (double)flags[k].hi, (double *)base)) {
            fprintf(stderr, "qnext %s: %s needs a number in [%ld, %ld], got '%s'\n", cmd, a, flags[k].lo,
                    flags[k].hi, v);
            return -1;
        }
        return 1;
    }
    return 0;
}

eng_engine *cli_engine_open(const char *cmd, const cli_engine_opts *o)
{
    eng_config cfg;
    eng_config_init(&cfg);
    cfg.model_dir = o->model;
    if (o->device) cfg.device = o->device;
    if (o->gpu_memory_fraction > 0) cfg.gpu_memory_fraction = o->gpu_memory_fraction;
    cfg.n_threads = (int)o->threads;
    if (o->tp) cfg.tp = (int)o->tp;
    if (o->template_name) cfg.chat_template = o->template_name;
    if (o->max_running) cfg.max_running = (int)o->max_running;
    if (o->max_batch_tokens) cfg.max_batch_tokens = (int)o->max_batch_tokens;
    if (o->max_model_len) cfg.max_model_len = (int)o->max_model_len;
    if (o->kv_cache_mb > 0) cfg.kv_cache_bytes = (size_t)(o->kv_cache_mb * 1048576.0);
    if (o->prefix_cache_mb >= 0) cfg.prefix_cache_bytes = (size_t)(o->prefix_cache_mb * 1048576.0);
    eng_engine *e = NULL;
    eng_status st = eng_create(&cfg, &e);
    if (st != ENG_OK) {
        fprintf(stderr, "qnext %s: cannot load %s: %s: %s\n", cmd, o->model, eng_status_str(st),
                eng_err_last());
        return NULL;
    }
    return e;
}

volatile sig_atomic_t cli_interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    if (cli_interrupted) _exit(130);
    cli_interrupted = 1;
}

void cli_sigint_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
}

char *cli_messages_json(const char *system, const char *user)
{
    cJSON *arr = cJSON_CreateArray(), *m;
    if (!arr) return NULL;
    if (system) {
        m = cJSON_CreateObject();
        cJSON_AddItemToArray(arr, m);
        cJSON_AddStringToObject(m, "role", "system");
        cJSON_AddStringToObject(m, "content", system);
    }
    m = cJSON_CreateObject();
    cJSON_AddItemToArray(arr, m);
    cJSON_AddStringToObject(m, "role", "user");
    cJSON_AddStringToObject(m, "content", user);
    char *s = cJSON_PrintUnformatted(arr);
    cJSON_Delete(arr);
    return s;
}

bool cli_isatty(FILE *f)
{
    return isatty(fileno(f));
}

const char *cli_fmt_bytes(double bytes, char *buf, size_t cap)
{
    return eng_fmt_bytes(bytes, buf, cap);
}

char *cli_read_all(FILE *f, size_t *len)
{
    size_t cap = 65536, n = 0;
    char *b = malloc(cap);
    if (!b) return NULL;
    size_t got;
    while ((got = fread(b + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (cap - n - 1 == 0) {
            char *g = realloc(b, cap * 2);
            if (!g) {
                free(b);
                return NULL;
            }
            b = g;
            cap *= 2;
        }
    }
    if (ferror(f)) {
        free(b);
        return NULL;
    }
    b[n] = '\0';
    if (len) *len = n;
    return b;
}
