/* bench/cpu/bench_cpu.c - CPU forward-pass benchmark of a Qwen3-Next checkpoint through the
 * qn_model API (model/model.h): prefill and decode throughput at batch 1, per thread count, next
 * to a streaming-read bandwidth measured in the same run, so decode can be stated as a fraction of
 * its memory-bandwidth bound.
 *
 * For each thread count:
 *   1. bandwidth: a streaming read (sum) of a --bw-mb buffer split into 1 MiB tasks on a thread
 *      pool of that size, best of 5 passes (4 KiB pages, as the mmapped weights), measured again
 *      after every repetition below (the machine's load drifts; the best decode is compared with
 *      the best bandwidth);
 *   2. the model is loaded on a CPU backend of that many threads, warmed up with one prefill and a
 *      few decode steps (pages of the mmapped checkpoint faulted in);
 *   3. prefill: --reps forwards of a --prompt-token prompt from position 0 (logits of its last
 *      row), best time;
 *   4. decode: --reps runs of --gen greedy steps of one token after that prompt (logits and argmax
 *      every step), best time.
 * Bytes per decoded token are computed from the loaded model: every weight one token touches (the
 * embedding row, all dense projections, the router, the shared expert, top_k of the routed
 * experts, the final norm and the whole lm_head) plus the small f32 vectors; the recurrent state
 * and KV cache traffic is reported beside it. Peak memory is the process's peak RSS while the
 * model is loaded and running, without the bandwidth buffer (the high-water mark is read before
 * each bandwidth pass and reset through /proc/self/clear_refs after it).
 *
 * Output: a human-readable report, and with --markdown the table rows bench/cpu/run.sh puts in
 * bench/RESULTS.md. With --profile, the backend's per-op timers (QNEXT_CPU_PROFILE, see
 * cpu/cpu_backend.c) print a breakdown of one prefill and of the decode steps.
 */
#include "backend/backend.h"   /* defines: eng_backend_cpu_create */
#include "core/threadpool.h"   /* defines: eng_threadpool */
#include "model/cache.h"       /* defines: qn_cache */
#include "model/model.h"       /* defines: qn_model_load, qn_model_forward */
#include "model/safetensors.h" /* defines: eng_st_open (tensor sizes for the byte count) */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#define CHECK(cond, ...)                                                                                          \
    do {                                                                                                          \
        if (!(cond)) {                                                                                            \
            fprintf(stderr, "bench_cpu: " __VA_ARGS__);                                                           \
            fprintf(stderr, "\n");                                                                                \
            exit(1);                                                                                              \
        }                                                                                                         \
    } while (0)

typedef struct opts {
    const char *model;
    int threads[8], n_threads;
    int prompt, gen, reps;
    int bw_mb;
    eng_simd simd;
    bool markdown;
    bool profile;
    const char *tsv; /* also write one line per thread count here */
} opts;

typedef struct result {
    int threads;
    double bw_gbs;                  /* streaming read, GB/s */
    double prefill_s, prefill_med_s; /* best and median seconds for one prompt */
    double decode_s, decode_med_s;   /* best and median seconds for gen tokens */
    double first_prefill_s;
} result;

/* ==== bandwidth =============================================================================== */

#define BW_TASK_BYTES (1u << 20)

typedef struct bw_job {
    const uint8_t *buf;
    uint64_t sums[1024][8]; /* one line per thread, no false sharing */
} bw_job;

#if defined(__x86_64__)
__attribute__((target("avx2"))) static uint64_t sum_avx2(const uint8_t *p, size_t n)
{
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i < n; i += 128) {
        a0 = _mm256_add_epi64(a0, _mm256_load_si256((const __m256i *)(const void *)(p + i)));
        a1 = _mm256_add_epi64(a1, _mm256_load_si256((const __m256i *)(const void *)(p + i + 32)));
        a2 = _mm256_add_epi64(a2, _mm256_load_si256((const __m256i *)(const void *)(p + i + 64)));
        a3 = _mm256_add_epi64(a3, _mm256_load_si256((const __m256i *)(const void *)(p + i + 96)));
    }
    __m256i s = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
    uint64_t v[4];
    _mm256_storeu_si256((__m256i *)(void *)v, s);
    return v[0] + v[1] + v[2] + v[3];
}
#endif

static uint64_t sum_plain(const uint8_t *p, size_t n)
{
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    const uint64_t *q = (const uint64_t *)(const void *)p;
    for (size_t i = 0; i < n / 8; i += 4) {
        s0 += q[i];
        s1 += q[i + 1];
        s2 += q[i + 2];
        s3 += q[i + 3];
    }
    return s0 + s1 + s2 + s3;
}

static bool have_avx2;

static void bw_task(void *arg, int task, int thread)
{
    bw_job *j = arg;
    const uint8_t *p = j->buf + (size_t)task * BW_TASK_BYTES;
#if defined(__x86_64__)
    j->sums[thread][0] += have_avx2 ? sum_avx2(p, BW_TASK_BYTES) : sum_plain(p, BW_TASK_BYTES);
#else
    j->sums[thread][0] += sum_plain(p, BW_TASK_BYTES);
#endif
}

/* Best streaming-read GB/s over 5 passes of an mb-MiB buffer on `threads` threads. */
static double measure_bandwidth(int threads, int mb)
{
    const size_t bytes = (size_t)mb << 20;
    uint8_t *buf = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(buf != MAP_FAILED, "cannot map %d MiB for the bandwidth test", mb);
    for (size_t i = 0; i < bytes; i += 64) buf[i] = (uint8_t)i;
    eng_threadpool *pool = NULL;
    CHECK(eng_threadpool_create(threads, &pool) == ENG_OK, "%s", eng_err_last());
    bw_job *j = calloc(1, sizeof *j);
    CHECK(j != NULL, "out of memory");
    j->buf = buf;
    double best = 0;
    for (int pass = 0; pass < 6; pass++) {
        double t0 = eng_now_s();
        eng_threadpool_run(pool, (int)(bytes / BW_TASK_BYTES), bw_task, j);
        double dt = eng_now_s() - t0;
        if (pass > 0 && bytes / dt / 1e9 > best) best = (double)bytes / dt / 1e9; /* pass 0 warms up */
    }
    uint64_t s = 0;
    for (int i = 0; i < threads; i++) s += j->sums[i][0];
    if (s == 42) printf(" "); /* keeps the sums live */
    free(j);
    eng_threadpool_destroy(pool);
    munmap(buf, bytes);
    return best;
}

/* Resets the peak-RSS high-water mark (Linux >= 4.0); false if not possible. */
static bool reset_peak_rss(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f) return false;
    bool ok = fputs("5", f) >= 0;
    ok &= fclose(f) == 0;
    return ok;
}

/* ==== bytes per decoded token ================================================================= */

typedef struct token_bytes {
    double weights; /* every weight byte one decoded token reads */
    double lm_head, experts, dense;
    double state;   /* GDN state read + written, conv state, KV cache read at the mean decode position */
} token_bytes;

/* From the checkpoint's tensor list (names as in Hugging Face Qwen3-Next) and config: the whole of
 * every tensor one decoded token reads, except the embedding (one row) and the routed experts
 * (top_k of the E experts of each layer, counted as top_k / E of their bytes); MTP tensors are not
 * read by the forward. (The engine reads norms and conv weights as f32 copies: < 0.3% more.) */
static token_bytes bytes_per_token(const char *dir, const qn_config *c, int mean_pos)
{
    token_bytes b = {0};
    eng_st_model *st = NULL;
    CHECK(eng_st_open(dir, false, &st) == ENG_OK, "%s", eng_err_last());
    for (size_t i = 0; i < eng_st_count(st); i++) {
        const eng_st_tensor *t = eng_st_at(st, i);
        const double n = (double)t->n_bytes;
        if (!strncmp(t->name, "mtp.", 4)) continue;
        if (!strcmp(t->name, "model.embed_tokens.weight")) {
            b.weights += n / (double)t->shape[0];
            if (c->tie_word_embeddings) b.lm_head += n;
        } else if (!strcmp(t->name, "lm_head.weight")) {
            b.lm_head += n;
        } else if (strstr(t->name, ".mlp.experts.")) {
            b.experts += n * c->n_experts_per_tok / c->n_experts;
        } else {
            b.dense += n;
        }
    }
    eng_st_close(st);
    b.weights += b.lm_head + b.experts + b.dense;
    const double dk = c->lin_k_head_dim, dv = c->lin_v_head_dim;
    b.state = c->n_linear_layers * (2.0 * 4 * c->lin_n_v_heads * dk * dv +           /* ssm state read + write */
                                     2.0 * 4 * (c->lin_conv_kernel - 1) * qn_lin_conv_dim(c)) + /* conv state */
              c->n_full_layers * 2.0 * 4 * (double)mean_pos * c->n_kv_heads * c->head_dim; /* K and V read */
    return b;
}

/* ==== model runs ============================================================================== */

static void make_prompt(int32_t *ids, int n, int V)
{
    uint32_t x = 2463534242u;
    for (int i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        ids[i] = (int32_t)(1000 + x % (uint32_t)(V > 20000 ? 20000 : V - 1000 > 0 ? V - 1000 : 1));
    }
}

static int argmax(const float *x, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

typedef struct rig {
    eng_backend *be;
    qn_model *m;
    qn_cache *c;
    int32_t *table;
    int n_blocks;
    float *logits;
    int V;
} rig;

static void rig_open(rig *r, const opts *o, int threads)
{
    memset(r, 0, sizeof *r);
    eng_cpu_options co = {threads, o->simd};
    CHECK(eng_backend_cpu_create(&co, &r->be) == ENG_OK, "backend: %s", eng_err_last());
    qn_model_params mp = {.max_tokens = o->prompt, .quiet = true};
    CHECK(qn_model_load(o->model, r->be, &mp, &r->m) == ENG_OK, "load: %s", eng_err_last());
    const int bs = 16;
    r->n_blocks = (o->prompt + o->gen + bs - 1) / bs + 1;
    qn_cache_params cp = {.n_slots = 1, .n_blocks = r->n_blocks, .block_size = bs};
    CHECK(qn_cache_create(r->m, &cp, &r->c) == ENG_OK, "cache: %s", eng_err_last());
    r->table = calloc((size_t)r->n_blocks, sizeof *r->table);
    CHECK(r->table != NULL, "out of memory");
    for (int i = 0; i < r->n_blocks; i++) r->table[i] = i;
    r->V = qn_model_vocab(r->m);
    r->logits = malloc((size_t)r->V * sizeof *r->logits);
    CHECK(r->logits != NULL, "out of memory");
}

static void rig_close(rig *r)
{
    free(r->table);
    free(r->logits);
    qn_cache_destroy(r->c);
    qn_model_destroy(r->m);
    eng_backend_destroy(r->be);
}

static void fwd(rig *r, const int32_t *tok, int n, int pos)
{
    qn_seq s = {n, pos, 0, r->table, r->n_blocks};
    int32_t row = n - 1;
    qn_batch b = {n, tok, 1, &s, 1, &row};
    CHECK(qn_model_forward(r->m, r->c, &b, r->logits) == ENG_OK, "forward: %s", eng_err_last());
}

/* Runs gen greedy decode steps after the prompt already in the cache; returns seconds. */
static double decode_run(rig *r, const int32_t *prompt, int n_prompt, int gen)
{
    int32_t tok = argmax(r->logits, r->V);
    (void)prompt;
    double t0 = eng_now_s();
    for (int i = 0; i < gen; i++) {
        fwd(r, &tok, 1, n_prompt + i);
        tok = argmax(r->logits, r->V);
    }
    return eng_now_s() - t0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Peak RSS so far, then a bandwidth pass, then the high-water mark reset (so the bandwidth buffer
 * never counts as the model's memory); returns false if the mark cannot be reset. */
static bool bandwidth_pass(int threads, int mb, double *best_gbs, size_t *peak)
{
    const size_t p = eng_peak_rss();
    if (p > *peak) *peak = p;
    const double gbs = measure_bandwidth(threads, mb);
    if (gbs > *best_gbs) *best_gbs = gbs;
    return reset_peak_rss();
}

static result run_threads(const opts *o, int threads, const int32_t *prompt, size_t *peak)
{
    result res = {.threads = threads};
    size_t peak_here = 0;
    bool reset = bandwidth_pass(threads, o->bw_mb, &res.bw_gbs, &peak_here);
    peak_here = 0; /* before the model: the bench's own memory only */
    rig r;
    rig_open(&r, o, threads);
    double t0 = eng_now_s();
    fwd(&r, prompt, o->prompt, 0); /* warm-up: faults the checkpoint pages in */
    res.first_prefill_s = eng_now_s() - t0;
    decode_run(&r, prompt, o->prompt, 4);
    double pf[64], dc[64];
    const int reps = o->reps < 64 ? o->reps : 64;
    for (int i = 0; i < reps; i++) {
        t0 = eng_now_s();
        fwd(&r, prompt, o->prompt, 0);
        pf[i] = eng_now_s() - t0;
        dc[i] = decode_run(&r, prompt, o->prompt, o->gen);
        /* the bandwidth again between repetitions: on a shared machine the load drifts, and the
         * best decode is compared with the best bandwidth */
        reset &= bandwidth_pass(threads, o->bw_mb, &res.bw_gbs, &peak_here);
    }
    res.prefill_s = pf[0];
    res.decode_s = dc[0];
    for (int i = 1; i < reps; i++) {
        if (pf[i] < res.prefill_s) res.prefill_s = pf[i];
        if (dc[i] < res.decode_s) res.decode_s = dc[i];
    }
    res.prefill_med_s = median(pf, reps);
    res.decode_med_s = median(dc, reps);
    if (!reset) peak_here = 0; /* would include the bandwidth buffer */
    if (peak_here > *peak) *peak = peak_here;
    rig_close(&r);
    return res;
}

/* ==== main ==================================================================================== */

static void usage(FILE *f)
{
    fprintf(f, "usage: bench_cpu --model DIR [--threads 1,2] [--prompt 128] [--gen 64] [--reps 3] [--bw-mb 1024]\n"
               "                 [--simd auto|scalar|avx2|avx512] [--markdown] [--tsv FILE] [--profile]\n"
               "  --markdown   the results table as markdown rows (bench/cpu/run.sh)\n"
               "  --tsv FILE   also write threads, prefill tok/s, decode tok/s, GB/s, bound tok/s, peak RSS bytes,\n"
               "               weight bytes per token, one line per thread count (best of --reps)\n"
               "  --profile    per-op time breakdown of one prefill and --gen decode steps instead\n");
}

static int parse_int(const char *s, int lo, int hi, const char *what)
{
    char *end;
    long v = strtol(s, &end, 10);
    CHECK(*s && !*end && v >= lo && v <= hi, "%s must be an integer in [%d, %d], got '%s'", what, lo, hi, s);
    return (int)v;
}

int main(int argc, char **argv)
{
    opts o = {.prompt = 128, .gen = 64, .reps = 3, .bw_mb = 1024, .simd = ENG_SIMD_AUTO};
    o.threads[0] = 1;
    o.threads[1] = 2;
    o.n_threads = 2;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool v = i + 1 < argc;
        if (!strcmp(a, "--model") && v) {
            o.model = argv[++i];
        } else if (!strcmp(a, "--threads") && v) {
            char *s = argv[++i], *save = NULL;
            o.n_threads = 0;
            for (char *t = strtok_r(s, ",", &save); t && o.n_threads < 8; t = strtok_r(NULL, ",", &save))
                o.threads[o.n_threads++] = parse_int(t, 1, 1024, "--threads");
            CHECK(o.n_threads > 0, "--threads needs a list like 1,2");
        } else if (!strcmp(a, "--prompt") && v) {
            o.prompt = parse_int(argv[++i], 1, 1 << 16, "--prompt");
        } else if (!strcmp(a, "--gen") && v) {
            o.gen = parse_int(argv[++i], 1, 1 << 16, "--gen");
        } else if (!strcmp(a, "--reps") && v) {
            o.reps = parse_int(argv[++i], 1, 64, "--reps");
        } else if (!strcmp(a, "--bw-mb") && v) {
            o.bw_mb = parse_int(argv[++i], 64, 1 << 16, "--bw-mb");
        } else if (!strcmp(a, "--simd") && v) {
            int s = eng_simd_parse(argv[++i]);
            CHECK(s >= 0, "--simd: unknown path '%s'", argv[i]);
            o.simd = (eng_simd)s;
        } else if (!strcmp(a, "--markdown")) {
            o.markdown = true;
        } else if (!strcmp(a, "--tsv") && v) {
            o.tsv = argv[++i];
        } else if (!strcmp(a, "--profile")) {
            o.profile = true;
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (!o.model) {
        usage(stderr);
        return 2;
    }
#if defined(__x86_64__)
    __builtin_cpu_init();
    have_avx2 = __builtin_cpu_supports("avx2");
#endif
    qn_config cfg;
    CHECK(qn_config_load(o.model, &cfg) == ENG_OK, "%s", eng_err_last());
    int32_t *prompt = malloc((size_t)o.prompt * sizeof *prompt);
    CHECK(prompt != NULL, "out of memory");
    make_prompt(prompt, o.prompt, cfg.vocab_size);

    if (o.profile) {
        /* the backend's per-op timers, skipping the first (warm-up) forward; they print when
         * the backend is destroyed, split into one-token calls (decode) and longer ones (prefill) */
        for (int i = 0; i < o.n_threads; i++) {
            fprintf(stderr, "== per-op profile, %d thread%s: one prefill of %d tokens, %d decode steps ==\n",
                    o.threads[i], o.threads[i] == 1 ? "" : "s", o.prompt, o.gen);
            setenv("QNEXT_CPU_PROFILE", "1", 1);
            rig r;
            rig_open(&r, &o, o.threads[i]);
            unsetenv("QNEXT_CPU_PROFILE");
            fwd(&r, prompt, o.prompt, 0); /* warm-up, skipped by the profile */
            double t0 = eng_now_s();
            fwd(&r, prompt, o.prompt, 0);
            double t1 = eng_now_s();
            decode_run(&r, prompt, o.prompt, o.gen);
            double t2 = eng_now_s();
            fprintf(stderr, "wall: prefill %.3f s, decode %.3f s (%.2f ms/token)\n", t1 - t0, t2 - t1,
                    1e3 * (t2 - t1) / o.gen);
            rig_close(&r); /* prints the profile */
        }
        free(prompt);
        return 0;
    }

    result res[8];
    const token_bytes tb = bytes_per_token(o.model, &cfg, o.prompt + o.gen / 2);
    size_t peak = 0;
    char simd_name[32] = "";
    {
        eng_backend *be;
        eng_cpu_options co = {1, o.simd};
        CHECK(eng_backend_cpu_create(&co, &be) == ENG_OK, "%s", eng_err_last());
        snprintf(simd_name, sizeof simd_name, "%s", be->name);
        eng_backend_destroy(be);
    }
    for (int i = 0; i < o.n_threads; i++) {
        res[i] = run_threads(&o, o.threads[i], prompt, &peak);
        const result *x = &res[i];
        const double bound = x->bw_gbs * 1e9 / tb.weights;
        fprintf(stderr, "threads %d: bandwidth %.1f GB/s; prefill %d tok: best %.3f s (%.1f tok/s), median %.3f s, "
                "first (cold) %.3f s; decode %d tok: best %.3f s (%.2f tok/s), median %.2f tok/s; bound %.2f tok/s "
                "(%.0f%%)\n", x->threads, x->bw_gbs, o.prompt, x->prefill_s, o.prompt / x->prefill_s,
                x->prefill_med_s, x->first_prefill_s, o.gen, x->decode_s, o.gen / x->decode_s,
                o.gen / x->decode_med_s, bound, 100.0 * (o.gen / x->decode_s) / bound);
    }
    char b1[32], b2[32], b3[32], b4[32], b5[32];
    printf("model: %s (%s), backend %s\n", o.model, cfg.torch_dtype[0] ? cfg.torch_dtype : "?", simd_name);
    printf("bytes per decoded token: %s weights (lm_head %s, active experts %s, rest %s) + %s state/KV traffic\n",
           eng_fmt_bytes(tb.weights, b1, sizeof b1), eng_fmt_bytes(tb.lm_head, b2, sizeof b2),
           eng_fmt_bytes(tb.experts, b3, sizeof b3), eng_fmt_bytes(tb.weights - tb.lm_head - tb.experts, b4, sizeof b4),
           eng_fmt_bytes(tb.state, b5, sizeof b5));
    printf("peak RSS: %s\n\n", peak ? eng_fmt_bytes((double)peak, b1, sizeof b1) : "unknown");
    if (o.markdown) {
        printf("| threads | prefill pp%d tok/s | decode tg%d tok/s | read bandwidth GB/s | bound tok/s | decode %% of bound |\n"
               "|---|---|---|---|---|---|\n", o.prompt, o.gen);
    } else {
        printf("%-8s %18s %18s %14s %12s %10s\n", "threads", "prefill tok/s", "decode tok/s", "bw GB/s", "bound tok/s",
               "% bound");
    }
    for (int i = 0; i < o.n_threads; i++) {
        const result *x = &res[i];
        const double bound = x->bw_gbs * 1e9 / tb.weights, dec = o.gen / x->decode_s;
        if (o.markdown)
            printf("| %d | %.1f (median %.1f) | %.2f (median %.2f) | %.1f | %.2f | %.0f %% |\n", x->threads,
                   o.prompt / x->prefill_s, o.prompt / x->prefill_med_s, dec, o.gen / x->decode_med_s, x->bw_gbs,
                   bound, 100.0 * dec / bound);
        else
            printf("%-8d %18.1f %18.2f %14.1f %12.2f %9.0f%%\n", x->threads, o.prompt / x->prefill_s, dec, x->bw_gbs,
                   bound, 100.0 * dec / bound);
    }
    if (o.tsv) {
        FILE *f = fopen(o.tsv, "w");
        CHECK(f != NULL, "cannot write %s", o.tsv);
        for (int i = 0; i < o.n_threads; i++) {
            const result *x = &res[i];
            fprintf(f, "%d\t%.2f\t%.3f\t%.2f\t%.3f\t%zu\t%.0f\n", x->threads, o.prompt / x->prefill_s,
                    o.gen / x->decode_s, x->bw_gbs, x->bw_gbs * 1e9 / tb.weights, peak, tb.weights);
        }
        CHECK(fclose(f) == 0, "cannot write %s", o.tsv);
    }
    free(prompt);
    return 0;
}
