/* bench/serving/serve_inproc.c - the in-process side of the gRPC-overhead benchmark: the engine
 * driven directly through eng_* (no gRPC), with the same requests, the same step loop as
 * qnext-engine's engine-host thread, and per-token timestamps.
 *
 * bench/serving/serving_bench.py starts it next to a qnext-engine with the same engine flags and
 * alternates runs of the two. It reads commands on stdin, one per line:
 *
 *     run C PROMPT_LEN GEN_LEN SEED     C concurrent requests, printed as one JSON line
 *     quit
 *
 * A run submits C requests at once, each PROMPT_LEN token ids from the generator below (the same
 * as `qnext bench` and serving_bench.py's gRPC client: request i of a run gets ids[i*PROMPT_LEN ..]),
 * decoded greedily for exactly GEN_LEN tokens (ignore_eos). A token is "received" when eng_step
 * returns the event that carries it (in qnext-engine that is when the host thread hands it to
 * the gRPC stream). The JSON line has: decode_tps (tokens received after every request had its
 * first token / the time from then to the last token, as `qnext bench`), tokens, wall_s, cpu_s
 * (this process's user + system CPU during the run), ttft_s (per request, from submission), and
 * itl_s (per token after a request's first: time since the request's previous token event,
 * divided evenly over the tokens of an event).
 *
 * Flags (as qnext-engine's): --model DIR --threads N --max-running N --max-model-len N
 * --kv-cache-size BYTES --prefix-cache-size BYTES (default 0: off, so runs do not reuse prompts).
 */
#include "qnext/eng.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define MAX_C 1024

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec +
           (double)ru.ru_stime.tv_usec * 1e-6;
}

/* The prompt generator shared with `qnext bench` (cli/cmd_bench.c) and serving_bench.py. */
static void prompt_ids(int32_t *ids, int n, unsigned long long seed, int c, int vocab)
{
    unsigned long long x = seed * 0x9E3779B97F4A7C15ull + (unsigned long long)c;
    int hi = vocab < 150000 ? vocab : 150000;
    for (int i = 0; i < n; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = 100 + (int32_t)((x >> 33) % (unsigned long long)(hi - 100));
    }
}

static void print_list(const char *name, const double *v, size_t n)
{
    printf(",\"%s\":[", name);
    for (size_t i = 0; i < n; i++) printf("%s%.6f", i ? "," : "", v[i]);
    putchar(']');
}

/* One run; false on an engine failure (printed). */
static bool run(eng_engine *e, int c, int prompt_len, int gen_len, unsigned long long seed, int vocab)
{
    bool ok = false;
    int32_t *ids = malloc((size_t)c * (size_t)prompt_len * sizeof *ids);
    uint64_t *rid = calloc((size_t)c, sizeof *rid);
    double *t_sub = calloc((size_t)c, sizeof *t_sub), *t_last = calloc((size_t)c, sizeof *t_last);
    double *ttft = calloc((size_t)c, sizeof *ttft);
    double *itl = malloc((size_t)c * (size_t)gen_len * sizeof *itl);
    eng_event *ev = malloc(256 * sizeof *ev);
    size_t n_itl = 0;
    if (!ids || !rid || !t_sub || !t_last || !ttft || !itl || !ev) {
        fprintf(stderr, "serve_inproc: out of memory\n");
        goto out;
    }
    prompt_ids(ids, c * prompt_len, seed, c, vocab);
    double cpu0 = cpu_s(), t0 = now_s();
    for (int i = 0; i < c; i++) {
        eng_request r;
        eng_request_init(&r);
        r.input = ENG_INPUT_TOKENS;
        r.tokens = ids + (size_t)i * (size_t)prompt_len;
        r.n_tokens = (size_t)prompt_len;
        r.sampling.max_tokens = gen_len;
        r.sampling.ignore_eos = true;
        r.sampling.temperature = 0;
        t_sub[i] = now_s();
        if (eng_submit(e, &r, &rid[i]) != ENG_OK) {
            fprintf(stderr, "serve_inproc: submit: %s\n", eng_err_last());
            goto out;
        }
    }
    int n_done = 0, n_first = 0;
    long tokens = 0, after_first = 0;
    double t_all_first = 0, t_end = t0;
    while (n_done < c) {
        size_t n = 0;
        if (!eng_has_work(e)) { /* as qnext-engine's host thread */
            eng_wait_work(e, 50);
            continue;
        }
        if (eng_step(e, ev, 256, &n) != ENG_OK) {
            fprintf(stderr, "serve_inproc: engine failure: %s\n", eng_err_last());
            goto out;
        }
        double now = now_s();
        bool all_first_before = n_first == c;
        for (size_t k = 0; k < n; k++) {
            int i = -1;
            for (int j = 0; j < c && i < 0; j++)
                if (rid[j] == ev[k].request_id) i = j;
            if (i < 0) continue;
            if (ev[k].kind == ENG_EV_ERROR) {
                fprintf(stderr, "serve_inproc: request failed: %s\n", ev[k].error_message);
                goto out;
            }
            if (ev[k].kind == ENG_EV_DONE) {
                n_done++;
                continue;
            }
            size_t nt = ev[k].n_tokens;
            if (!nt) continue;
            if (t_last[i] == 0) {
                ttft[i] = now - t_sub[i];
                if (++n_first == c) t_all_first = now;
            } else {
                for (size_t q = 0; q < nt && n_itl < (size_t)c * (size_t)gen_len; q++)
                    itl[n_itl++] = (now - t_last[i]) / (double)nt;
            }
            t_last[i] = now;
            tokens += (long)nt;
            if (all_first_before) after_first += (long)nt;
            t_end = now;
        }
    }
    double cpu1 = cpu_s();
    printf("{\"path\":\"in-process\",\"c\":%d,\"tokens\":%ld,\"decode_tps\":%.4f,\"wall_s\":%.4f,\"cpu_s\":%.4f", c,
           tokens, t_end > t_all_first && after_first ? (double)after_first / (t_end - t_all_first) : 0.0, t_end - t0,
           cpu1 - cpu0);
    print_list("ttft_s", ttft, (size_t)c);
    print_list("itl_s", itl, n_itl);
    printf("}\n");
    fflush(stdout);
    ok = true;
out:
    free(ids);
    free(rid);
    free(t_sub);
    free(t_last);
    free(ttft);
    free(itl);
    free(ev);
    return ok;
}

static bool parse_size(const char *s, size_t *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || v < 0) return false;
    if (*end == 'K' || *end == 'k') v *= 1024.0;
    else if (*end == 'M' || *end == 'm') v *= 1048576.0;
    else if (*end == 'G' || *end == 'g') v *= 1073741824.0;
    else if (*end) return false;
    *out = (size_t)v;
    return true;
}

int main(int argc, char **argv)
{
    eng_config cfg;
    eng_config_init(&cfg);
    cfg.prefix_cache_bytes = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = v != NULL;
        if (!strcmp(a, "--model") && v) cfg.model_dir = v;
        else if (!strcmp(a, "--threads") && v) cfg.n_threads = atoi(v);
        else if (!strcmp(a, "--max-running") && v) cfg.max_running = atoi(v);
        else if (!strcmp(a, "--max-model-len") && v) cfg.max_model_len = atoi(v);
        else if (!strcmp(a, "--kv-cache-size") && v) ok = parse_size(v, &cfg.kv_cache_bytes);
        else if (!strcmp(a, "--prefix-cache-size") && v) ok = parse_size(v, &cfg.prefix_cache_bytes);
        else ok = false;
        if (!ok) {
            fprintf(stderr,
                    "usage: serve_inproc --model DIR [--threads N] [--max-running N] [--max-model-len N]\n"
                    "                    [--kv-cache-size BYTES] [--prefix-cache-size BYTES]   (commands on stdin)\n");
            return 2;
        }
        i++;
    }
    if (!cfg.model_dir) {
        fprintf(stderr, "serve_inproc: --model DIR is required\n");
        return 2;
    }
    eng_engine *e = NULL;
    if (eng_create(&cfg, &e) != ENG_OK) {
        fprintf(stderr, "serve_inproc: %s\n", eng_err_last());
        return 1;
    }
    eng_model_info mi;
    eng_get_model_info(e, &mi);
    printf("{\"ready\":true,\"model\":\"%s\",\"vocab\":%d}\n", mi.model_id, mi.vocab_size);
    fflush(stdout);
    char line[256];
    int rc = 0;
    while (fgets(line, sizeof line, stdin)) {
        int c, pl, gl;
        unsigned long long seed;
        if (!strncmp(line, "quit", 4)) break;
        if (sscanf(line, "run %d %d %d %llu", &c, &pl, &gl, &seed) != 4 || c < 1 || c > MAX_C || pl < 1 || gl < 1) {
            fprintf(stderr, "serve_inproc: bad command: %s", line);
            rc = 2;
            break;
        }
        if (!run(e, c, pl, gl, seed, mi.vocab_size)) {
            rc = 1;
            break;
        }
    }
    eng_destroy(e);
    return rc;
}
