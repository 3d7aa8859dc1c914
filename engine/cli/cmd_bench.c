/* cli/cmd_bench.c - `qnext bench`: offline engine throughput at several concurrency levels.
 *
 * For each level c (default 1, 4, 16): c requests of --prompt-len random token ids (distinct per
 * request, so nothing is served from the prefix cache, which is off unless --prefix-cache-mb is
 * given) are submitted at once and decoded greedily for exactly --gen-len tokens (ignore_eos).
 * Reported per level:
 *   prefill tok/s  c * prompt_len / (time until the last request got its first token)
 *   decode tok/s   tokens generated after that moment / the time from then to the end (all c
 *                  sequences decoding together)
 *   total tok/s    (prompt + generated tokens) / wall time
 *   TTFT           mean and max time to first token under that load (engine timings)
 * A warm-up request runs first (weights paged in, kernels warm). The machine is described (CPU,
 * cores, SIMD path, memory, load average) because numbers from a shared machine need that context.
 */
#include "cli.h"
#include "cli_engine.h" /* defines: cli_engine_opts, cli_engine_open */

#include "backend/backend.h" /* defines: eng_simd_supported, eng_simd_name */
#include "core/core.h"       /* defines: eng_now_s, eng_peak_rss */

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_LEVELS 16

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: qnext bench --model DIR [--prompt-len 128] [--gen-len 64] [--concurrency 1,4,16] [options]\n"
        "\n"
        "Offline throughput: prefill and decode tok/s and time to first token at each concurrency.\n"
        "\n"
        "options:\n"
        "  --prompt-len N       prompt tokens per request (default 128)\n"
        "  --gen-len N          generated tokens per request (default 64)\n"
        "  --concurrency LIST   comma-separated concurrent request counts (default 1,4,16)\n"
        "  --seed S             seed of the random prompts (default 1)\n"
        "  --markdown           print the table as Markdown\n"
        "%s",
        cli_engine_flags_help);
}

typedef struct level_result {
    int c;
    double prefill_tps, decode_tps, total_tps, ttft_mean, ttft_max, wall;
} level_result;

static void machine_info(FILE *f, const cli_engine_opts *eo, const eng_model_info *mi)
{
    char cpu[256] = "unknown CPU";
    FILE *ci = fopen("/proc/cpuinfo", "r");
    if (ci) {
        char line[512];
        while (fgets(line, sizeof line, ci))
            if (!strncmp(line, "model name", 10)) {
                char *p = strchr(line, ':');
                if (p) {
                    p += 2;
                    p[strcspn(p, "\n")] = '\0';
                    snprintf(cpu, sizeof cpu, "%s", p);
                }
                break;
            }
        fclose(ci);
    }
    char load[128] = "?";
    FILE *la = fopen("/proc/loadavg", "r");
    if (la) {
        double l1, l5, l15;
        if (fscanf(la, "%lf %lf %lf", &l1, &l5, &l15) == 3)
            snprintf(load, sizeof load, "%.2f %.2f %.2f", l1, l5, l15);
        fclose(la);
    }
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    double mem = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE);
    eng_simd simd = eng_simd_supported(ENG_SIMD_AVX512) ? ENG_SIMD_AVX512
                    : eng_simd_supported(ENG_SIMD_AVX2) ? ENG_SIMD_AVX2
                                                        : ENG_SIMD_SCALAR;
    const char *env_simd = getenv("QNEXT_SIMD");
    char mb[32];
    fprintf(f, "machine: %s, %ld online cores, %s RAM, SIMD %s, %ld worker thread(s), load average %s\n", cpu,
            cores, cli_fmt_bytes(mem, mb, sizeof mb), env_simd && *env_simd ? env_simd : eng_simd_name(simd),
            eo->threads ? eo->threads : cores, load);
    fprintf(f, "model: %s (%s, %s template, vocab %d), context %d, device %s, tp %d\n", mi->model_id,
            mi->dtype, mi->template_kind, mi->vocab_size, mi->max_model_len, mi->device, mi->tp);
}

/* Runs one level; false on an engine failure. */
static bool run_level(eng_engine *e, int c, int prompt_len, int gen_len, unsigned long long seed, int vocab,
                      level_result *out)
{
    int32_t *ids = malloc((size_t)c * (size_t)prompt_len * sizeof *ids);
    double *t_first = calloc((size_t)c, sizeof *t_first);
    uint64_t *rid = calloc((size_t)c, sizeof *rid);
    bool ok = false;
    if (!ids || !t_first || !rid) goto out;
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + (uint64_t)c;
    int hi = vocab < 150000 ? vocab : 150000;
    for (int i = 0; i < c * prompt_len; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = 100 + (int32_t)((x >> 33) % (uint64_t)(hi - 100));
    }
    double t0 = eng_now_s();
    for (int i = 0; i < c; i++) {
        eng_request r;
        eng_request_init(&r);
        r.input = ENG_INPUT_TOKENS;
        r.tokens = ids + (size_t)i * (size_t)prompt_len;
        r.n_tokens = (size_t)prompt_len;
        r.sampling.max_tokens = gen_len;
        r.sampling.ignore_eos = true;
        r.sampling.temperature = 0;
        eng_status st = eng_submit(e, &r, &rid[i]);
        if (st != ENG_OK) {
            fprintf(stderr, "qnext bench: %s: %s\n", eng_status_str(st), eng_err_last());
            goto out;
        }
    }
    int n_done = 0, n_first = 0;
    double t_all_first = 0, ttft_sum = 0, ttft_max = 0;
    long after_first = 0; /* tokens generated once every request had its first token */
    while (n_done < c) {
        eng_event ev[256];
        size_t n = 0;
        eng_status st = eng_step(e, ev, 256, &n);
        if (st != ENG_OK) {
            fprintf(stderr, "qnext bench: engine failure: %s: %s\n", eng_status_str(st), eng_err_last());
            goto out;
        }
        double now = eng_now_s();
        bool all_first_before = n_first == c;
        for (size_t k = 0; k < n; k++) {
            int i = -1;
            for (int j = 0; j < c; j++)
                if (rid[j] == ev[k].request_id) i = j;
            if (i < 0) continue;
            if (ev[k].kind == ENG_EV_ERROR) {
                fprintf(stderr, "qnext bench: request failed: %s\n", ev[k].error_message);
                goto out;
            }
            if (ev[k].kind == ENG_EV_DONE) {
                n_done++;
                ttft_sum += ev[k].timings.ttft_s;
                if (ev[k].timings.ttft_s > ttft_max) ttft_max = ev[k].timings.ttft_s;
                continue;
            }
            if (ev[k].n_tokens && t_first[i] == 0) {
                t_first[i] = now;
                if (++n_first == c) t_all_first = now;
            }
            if (all_first_before) after_first += (long)ev[k].n_tokens;
        }
    }
    double t_end = eng_now_s();
    out->c = c;
    out->wall = t_end - t0;
    out->prefill_tps = t_all_first > t0 ? (double)c * prompt_len / (t_all_first - t0) : 0;
    out->decode_tps =
        t_end > t_all_first && after_first > 0 ? (double)after_first / (t_end - t_all_first) : 0;
    out->total_tps = (double)c * (prompt_len + gen_len) / out->wall;
    out->ttft_mean = ttft_sum / c;
    out->ttft_max = ttft_max;
    ok = true;
out:
    free(ids);
    free(t_first);
    free(rid);
    return ok;
}

int cmd_bench(int argc, char **argv)
{
    cli_engine_opts eo;
    cli_engine_opts_init(&eo);
    long prompt_len = 128, gen_len = 64;
    unsigned long long seed = 1;
    bool markdown = false;
    int levels[MAX_LEVELS] = {1, 4, 16}, n_levels = 3;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        int r = cli_engine_flag("bench", argc, argv, &i, &eo);
        if (r < 0) return 2;
        if (r > 0) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--prompt-len") && has) {
            if (!cli_parse_long(argv[++i], 1, 1 << 20, &prompt_len)) {
                fprintf(stderr, "qnext bench: --prompt-len needs an integer >= 1, got '%s'\n", argv[i]);
                return 2;
            }
        } else if (!strcmp(a, "--gen-len") && has) {
            if (!cli_parse_long(argv[++i], 1, 1 << 20, &gen_len)) {
                fprintf(stderr, "qnext bench: --gen-len needs an integer >= 1, got '%s'\n", argv[i]);
                return 2;
            }
        } else if (!strcmp(a, "--seed") && has) {
            if (!cli_parse_u64(argv[++i], &seed)) {
                fprintf(stderr, "qnext bench: --seed needs an unsigned integer, got '%s'\n", argv[i]);
                return 2;
            }
        } else if (!strcmp(a, "--markdown")) {
            markdown = true;
        } else if (!strcmp(a, "--concurrency") && has) {
            char buf[256];
            snprintf(buf, sizeof buf, "%s", argv[++i]);
            n_levels = 0;
            for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
                long v;
                if (n_levels == MAX_LEVELS || !cli_parse_long(tok, 1, 4096, &v)) {
                    fprintf(stderr,
                            "qnext bench: --concurrency needs up to %d integers in [1, 4096], got '%s'\n",
                            MAX_LEVELS, argv[i]);
                    return 2;
                }
                levels[n_levels++] = (int)v;
            }
            if (!n_levels) {
                fprintf(stderr, "qnext bench: --concurrency is empty\n");
                return 2;
            }
        } else {
            fprintf(stderr, "qnext bench: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!eo.model) {
        fprintf(stderr, "qnext bench: --model is required\n");
        usage(stderr);
        return 2;
    }
    int max_c = 1;
    for (int i = 0; i < n_levels; i++)
        if (levels[i] > max_c) max_c = levels[i];
    if (!eo.max_running) eo.max_running = max_c;
    if (!eo.max_model_len) eo.max_model_len = prompt_len + gen_len + 16;
    if (eo.prefix_cache_mb < 0)
        eo.prefix_cache_mb = 0; /* distinct prompts: measure the model, not the cache */
    eng_engine *e = cli_engine_open("bench", &eo);
    if (!e) return 1;
    eng_model_info mi;
    eng_get_model_info(e, &mi);
    int rc = 1;
    level_result res[MAX_LEVELS];
    level_result warm;
    if (!run_level(e, 1, prompt_len < 8 ? (int)prompt_len : 8, 4, seed + 1000, mi.vocab_size, &warm))
        goto out;
    for (int i = 0; i < n_levels; i++) {
        fprintf(stderr, "qnext bench: %d concurrent x (%ld prompt + %ld generated tokens)...\n", levels[i],
                prompt_len, gen_len);
        if (!run_level(e, levels[i], (int)prompt_len, (int)gen_len, seed, mi.vocab_size, &res[i])) goto out;
    }
    machine_info(stdout, &eo, &mi);
    printf("requests: %ld prompt tokens (random ids), %ld generated tokens (greedy, ignore_eos), prefix "
           "cache %s\n",
           prompt_len, gen_len, eo.prefix_cache_mb > 0 ? "on" : "off");
    if (markdown) {
        printf("\n| concurrency | prefill tok/s | decode tok/s | total tok/s | TTFT mean (s) | TTFT max (s) "
               "| wall (s) |\n"
               "|---:|---:|---:|---:|---:|---:|---:|\n");
        for (int i = 0; i < n_levels; i++)
            printf("| %d | %.1f | %.1f | %.1f | %.3f | %.3f | %.2f |\n", res[i].c, res[i].prefill_tps,
                   res[i].decode_tps, res[i].total_tps, res[i].ttft_mean, res[i].ttft_max, res[i].wall);
    } else {
        printf("\n%11s %14s %13s %12s %10s %10s %9s\n", "concurrency", "prefill tok/s", "decode tok/s",
               "total tok/s", "TTFT mean", "TTFT max", "wall s");
        for (int i = 0; i < n_levels; i++)
            printf("%11d %14.1f %13.1f %12.1f %10.3f %10.3f %9.2f\n", res[i].c, res[i].prefill_tps,
                   res[i].decode_tps, res[i].total_tps, res[i].ttft_mean, res[i].ttft_max, res[i].wall);
    }
    char mem[32];
    printf("peak memory %s\n", cli_fmt_bytes((double)eng_peak_rss(), mem, sizeof mem));
    rc = 0;
out:
    eng_destroy(e);
    return rc;
}
