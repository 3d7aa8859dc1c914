/* bench/cpu/bench_ops.c - single-op timings of the CPU backend on the benchmark model's shapes, for
 * working on one kernel at a time (bench_cpu measures the whole forward):
 *
 *   matmul  bf16 weight [N][K] times T tokens: GFLOP/s and weight GB/s (T = 1 is the decode GEMV)
 *   moe     the routed experts of one layer (64 experts of 256, top 8, H 1024) for T tokens
 *   gdn     the delta rule of one GDN layer (16 value heads of 128, 8 key heads), T tokens from
 *           position 0 (T = 1: the recurrent step from a non-zero state)
 *   attn    causal attention of one layer (8 heads, 2 KV heads of 256) over T new tokens
 *   read    one thread's streaming-read bandwidth (the reference for the GEMV numbers)
 *   pool    the thread pool's round trip for an empty parallel-for
 *
 * usage: bench_ops [--threads N] [--simd NAME] [--reps R] [op ...]   (default: every op)
 * Each case prints the best of R runs. Weights are random and live in anonymous memory (4 KiB
 * pages, like the mmapped checkpoint); matrices larger than the L3 are streamed from memory.
 */
#include "backend/backend.h" /* defines: eng_backend_cpu_create and the op table */
#include "core/threadpool.h" /* defines: eng_threadpool (dispatch latency) */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHECK(cond, ...)                                                                                          \
    do {                                                                                                          \
        if (!(cond)) {                                                                                            \
            fprintf(stderr, "bench_ops: " __VA_ARGS__);                                                           \
            fprintf(stderr, "\n");                                                                                \
            exit(1);                                                                                              \
        }                                                                                                         \
    } while (0)

static uint64_t rs = 88172645463325252ull;
static float frand(void)
{
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return (float)((double)(rs >> 11) / 9007199254740992.0) * 2.0f - 1.0f;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    CHECK(p != NULL, "out of memory");
    return p;
}

static float *rand_f32(size_t n, float scale)
{
    float *x = xmalloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = frand() * scale;
    return x;
}

static uint16_t *rand_bf16(size_t n)
{
    uint16_t *w = xmalloc(n * sizeof *w);
    for (size_t i = 0; i < n; i++) w[i] = eng_f32_to_bf16(frand() * 0.05f);
    return w;
}

static int reps = 5;

/* Process CPU seconds (all threads): on a machine shared with other jobs the best-of-R CPU time
 * of a one-thread run is a steadier measure of a compute-bound kernel than its wall time. */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Times one call: best wall and best CPU seconds over the reps. */
#define TIME_BEST(best, best_cpu, CALL)                                                                           \
    do {                                                                                                          \
        best = best_cpu = 1e30;                                                                                   \
        for (int r_ = 0; r_ < reps; r_++) {                                                                       \
            double t0_ = eng_now_s(), c0_ = cpu_now();                                                            \
            CALL;                                                                                                 \
            double dt_ = eng_now_s() - t0_, dc_ = cpu_now() - c0_;                                                \
            if (dt_ < best) best = dt_;                                                                           \
            if (dc_ < best_cpu) best_cpu = dc_;                                                                   \
        }                                                                                                         \
    } while (0)

/* ==== matmul ================================================================================== */

static void bench_matmul(eng_backend *be, const char *what, int64_t N, int64_t K, const int *Ts, int nT)
{
    uint16_t *w = rand_bf16((size_t)(N * K));
    qn_weight_part part = {what, ENG_DTYPE_BF16, w, N, K, NULL, 0, 0, N, NULL, 0, 0};
    qn_weight_desc d = {what, K, 1, 1, &part};
    qn_weight *qw = NULL;
    CHECK(be->weight_create(be->ctx, &d, &qw) == ENG_OK, "%s", eng_err_last());
    for (int i = 0; i < nT; i++) {
        const int T = Ts[i];
        float *x = rand_f32((size_t)T * K, 1.0f), *y = xmalloc((size_t)T * N * sizeof *y);
        double best, cpu;
        TIME_BEST(best, cpu, be->matmul(be->ctx, qw, 0, x, K, T, y, N));
        printf("matmul %-22s N=%-6lld K=%-5lld T=%-4d %9.3f ms %8.1f GFLOP/s %7.1f GB/s | cpu %9.3f ms\n", what,
               (long long)N, (long long)K, T, 1e3 * best, 2.0 * N * K * T / best / 1e9, 2.0 * N * K / best / 1e9,
               1e3 * cpu);
        free(x);
        free(y);
    }
    be->weight_destroy(be->ctx, qw);
    free(w);
}

/* ==== MoE ===================================================================================== */

static void bench_moe(eng_backend *be, const int *Ts, int nT)
{
    const int E = 64, I = 256, H = 1024, topk = 8;
    uint16_t *gu = rand_bf16((size_t)E * 2 * I * H), *dn = rand_bf16((size_t)E * H * I);
    qn_weight_part *pg = xmalloc((size_t)E * 2 * sizeof *pg), *pd = xmalloc((size_t)E * sizeof *pd);
    for (int e = 0; e < E; e++) {
        const uint16_t *g = gu + (size_t)e * 2 * I * H;
        pg[2 * e] = (qn_weight_part){"gate", ENG_DTYPE_BF16, g, I, H, NULL, 0, 0, I, NULL, 0, 0};
        pg[2 * e + 1] = (qn_weight_part){"up", ENG_DTYPE_BF16, g + (size_t)I * H, I, H, NULL, 0, 0, I, NULL, 0, 0};
        pd[e] = (qn_weight_part){"down", ENG_DTYPE_BF16, dn + (size_t)e * H * I, H, I, NULL, 0, 0, H, NULL, 0, 0};
    }
    qn_weight_desc dg = {"experts.gate_up", H, E, 2, pg}, dd = {"experts.down", I, E, 1, pd};
    qn_weight *wg = NULL, *wd = NULL;
    CHECK(be->weight_create(be->ctx, &dg, &wg) == ENG_OK, "%s", eng_err_last());
    CHECK(be->weight_create(be->ctx, &dd, &wd) == ENG_OK, "%s", eng_err_last());
    for (int i = 0; i < nT; i++) {
        const int T = Ts[i];
        float *x = rand_f32((size_t)T * H, 1.0f), *out = xmalloc((size_t)T * H * sizeof *out);
        int32_t *idx = xmalloc((size_t)T * topk * sizeof *idx);
        float *wt = xmalloc((size_t)T * topk * sizeof *wt);
        for (int t = 0; t < T; t++) {
            int used[64] = {0};
            for (int j = 0; j < topk; j++) {
                int e;
                do e = (int)((frand() + 1.0f) * 32.0f) % E;
                while (used[e]);
                used[e] = 1;
                idx[t * topk + j] = e;
                wt[t * topk + j] = 1.0f / topk;
            }
        }
        double best, cpu;
        TIME_BEST(best, cpu, be->moe_experts(be->ctx, wg, wd, I, x, T, H, idx, wt, topk, NULL, NULL, 0, out));
        const double flop = 2.0 * T * topk * 3.0 * I * H;
        printf("moe_experts E=%d top%d I=%d H=%d T=%-4d %9.3f ms %8.1f GFLOP/s | cpu %9.3f ms\n", E, topk, I, H, T,
               1e3 * best, flop / best / 1e9, 1e3 * cpu);
        free(x);
        free(out);
        free(idx);
        free(wt);
    }
    be->weight_destroy(be->ctx, wg);
    be->weight_destroy(be->ctx, wd);
    free(pg);
    free(pd);
    free(gu);
    free(dn);
}

/* ==== GDN ===================================================================================== */

static void bench_gdn(eng_backend *be, const int *Ts, int nT)
{
    const int Hk = 8, Hv = 16, dk = 128, dv = 128, C = 2 * Hk * dk + Hv * dv;
    qn_gdn_dims gd = {Hk, Hv, dk, dv, 4, 0};
    float *ssm = be->alloc(be->ctx, (size_t)Hv * dk * dv * 4), *conv = be->alloc(be->ctx, (size_t)3 * C * 4);
    qn_state_view sv = {conv, ssm, 1, 1, C, 4, Hv, dk, dv};
    for (int i = 0; i < nT; i++) {
        const int T = Ts[i];
        float *qkv = rand_f32((size_t)T * C, 1.0f), *beta = xmalloc((size_t)T * Hv * 4), *g = xmalloc((size_t)T * Hv * 4);
        float *out = xmalloc((size_t)T * Hv * dv * 4);
        for (int k = 0; k < T * Hv; k++) {
            beta[k] = 0.5f + 0.4f * frand();
            g[k] = -0.05f + 0.04f * frand();
        }
        for (size_t k = 0; k < (size_t)Hv * dk * dv; k++) ssm[k] = 0.01f * frand();
        qn_seq_desc s = {0, T, T == 1 ? 5 : 0, 0, NULL, 0};
        double best, cpu;
        TIME_BEST(best, cpu, be->gdn(be->ctx, &s, 1, qkv, beta, g, &gd, &sv, out));
        printf("gdn Hv=%d dk=%d dv=%d T=%-4d %9.3f ms | cpu %9.3f ms\n", Hv, dk, dv, T, 1e3 * best, 1e3 * cpu);
        free(qkv);
        free(beta);
        free(g);
        free(out);
    }
    be->free(be->ctx, ssm);
    be->free(be->ctx, conv);
}

/* ==== attention =============================================================================== */

static void bench_attn(eng_backend *be, const int *Ts, int nT)
{
    const int nq = 8, nkv = 2, hd = 256, bs = 16, nb = 64;
    qn_attn_dims ad = {nq, nkv, hd, 0, 1.0f / 16.0f};
    float *kc = be->alloc(be->ctx, (size_t)nb * bs * nkv * hd * 4), *vc = be->alloc(be->ctx, (size_t)nb * bs * nkv * hd * 4);
    for (size_t k = 0; k < (size_t)nb * bs * nkv * hd; k++) {
        kc[k] = frand();
        vc[k] = frand();
    }
    qn_kv_view kv = {kc, vc, 1, nb, bs, nkv, hd};
    int32_t table[64];
    for (int i = 0; i < nb; i++) table[i] = i;
    for (int i = 0; i < nT; i++) {
        const int T = Ts[i], pos = T == 1 ? 160 : 0;
        float *q = rand_f32((size_t)T * nq * hd, 1.0f), *gate = rand_f32((size_t)T * nq * hd, 1.0f);
        float *out = xmalloc((size_t)T * nq * hd * 4);
        qn_seq_desc s = {0, T, pos, 0, table, nb};
        double best, cpu;
        TIME_BEST(best, cpu, be->attention(be->ctx, &s, 1, q, nq * hd, gate, nq * hd, &ad, &kv, out));
        printf("attention nq=%d nkv=%d hd=%d T=%-4d pos=%-4d %9.3f ms | cpu %9.3f ms\n", nq, nkv, hd, T, pos,
               1e3 * best, 1e3 * cpu);
        free(q);
        free(gate);
        free(out);
    }
    be->free(be->ctx, kc);
    be->free(be->ctx, vc);
}

/* ==== streaming read ========================================================================== */

/* One thread's read bandwidth over a 512 MiB buffer (the reference for the GEMV numbers). */
static void bench_read(void)
{
    const size_t n = (size_t)512 << 20;
    uint64_t *b = xmalloc(n);
    for (size_t i = 0; i < n / 8; i += 8) b[i] = i;
    double best = 1e30;
    uint64_t sum = 0;
    for (int r = 0; r < reps; r++) {
        double t0 = eng_now_s();
        uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (size_t i = 0; i < n / 8; i += 4) {
            s0 += b[i];
            s1 += b[i + 1];
            s2 += b[i + 2];
            s3 += b[i + 3];
        }
        sum += s0 + s1 + s2 + s3;
        double dt = eng_now_s() - t0;
        if (dt < best) best = dt;
    }
    printf("read 512 MiB, one thread: %.1f GB/s%s\n", (double)n / best / 1e9, sum == 42 ? " " : "");
    free(b);
}

/* ==== thread pool dispatch ==================================================================== */

static void spin_task(void *arg, int task, int thread)
{
    (void)task, (void)thread;
    const uint64_t until = eng_now_ns() + *(const uint64_t *)arg;
    while (eng_now_ns() < until) {
    }
}

/* Round trip of one parallel-for of one 5-microsecond task per thread, minus those 5 us: the floor
 * every pooled op pays for handing work to the other threads and waiting for them (a decode step
 * runs about 200 pooled ops). */
static int cmp_dbl(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void bench_pool(int threads)
{
    eng_threadpool *p = NULL;
    CHECK(eng_threadpool_create(threads, &p) == ENG_OK, "%s", eng_err_last());
    enum { N = 20000 };
    static double dt[N];
    uint64_t work_ns = 5000;
    for (int i = 0; i < N; i++) {
        const uint64_t t0 = eng_now_ns();
        eng_threadpool_run(p, threads, spin_task, &work_ns);
        dt[i] = (double)(eng_now_ns() - t0) * 1e-3 - 5.0;
    }
    qsort(dt, N, sizeof dt[0], cmp_dbl);
    printf("thread pool, %d threads: beyond its 5 us tasks a parallel-for costs %.2f us (median), %.2f us (10th "
           "percentile), %.2f us (90th)\n", threads, dt[N / 2], dt[N / 10], dt[N * 9 / 10]);
    eng_threadpool_destroy(p);
}

/* ==== main ==================================================================================== */

int main(int argc, char **argv)
{
    int threads = 2;
    eng_simd simd = ENG_SIMD_AUTO;
    const char *ops[16];
    int n_ops = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--simd") && i + 1 < argc) {
            int s = eng_simd_parse(argv[++i]);
            CHECK(s >= 0, "unknown SIMD path '%s'", argv[i]);
            simd = (eng_simd)s;
        } else if (n_ops < 16) ops[n_ops++] = argv[i];
    }
    CHECK(reps >= 1 && threads >= 1, "usage: bench_ops [--threads N] [--simd NAME] [--reps R] [matmul|moe|gdn|attn|read|pool ...]");
    eng_backend *be = NULL;
    eng_cpu_options o = {threads, simd};
    CHECK(eng_backend_cpu_create(&o, &be) == ENG_OK, "%s", eng_err_last());
    qn_op_limits lim = {.max_tokens = 128, .hidden = 1024, .n_experts = 64, .top_k = 8, .moe_inter = 256,
                        .gdn_dk = 128, .gdn_dv = 128, .attn_head_dim = 256, .attn_group = 4};
    CHECK(be->reserve(be->ctx, &lim) == ENG_OK, "%s", eng_err_last());
    printf("backend %s, %d threads, best of %d\n", be->name, threads, reps);
    bool all = n_ops == 0;
    for (int i = 0; i < (all ? 1 : n_ops); i++) {
        const char *op = all ? "" : ops[i];
        if (all || !strcmp(op, "read")) bench_read();
        if (all || !strcmp(op, "pool")) bench_pool(threads);
        if (all || !strcmp(op, "matmul")) {
            const int Ts[] = {1, 2, 3, 16, 128};
            bench_matmul(be, "gdn.in_proj", 6176, 1024, Ts, 5);
            bench_matmul(be, "gdn.out_proj", 1024, 2048, Ts, 5);
            const int T1[] = {1};
            bench_matmul(be, "lm_head", 151936, 1024, T1, 1);
        }
        if (all || !strcmp(op, "moe")) {
            const int Ts[] = {1, 128};
            bench_moe(be, Ts, 2);
        }
        if (all || !strcmp(op, "gdn")) {
            const int Ts[] = {1, 128};
            bench_gdn(be, Ts, 2);
        }
        if (all || !strcmp(op, "attn")) {
            const int Ts[] = {1, 128};
            bench_attn(be, Ts, 2);
        }
    }
    eng_backend_destroy(be);
    return 0;
}
