/* tp/nccl/nccl_check.c - `qnext-nccl-check`: a self-check of the NCCL collectives on the GPUs of
 * this machine (run by the GPU check script; CI only compiles and links it, having no GPU).
 *
 * For world 1 and, with two or more GPUs, world = all GPUs: one thread per rank runs all-reduce
 * (sizes 1 .. 1M floats, values exact in float so the sum is checkable), all-gather (rank-major
 * layout), broadcast from every root and barrier, 200 rounds, comparing with sums computed here;
 * then the latency of a decode-sized all-reduce (2048 floats). With two or more GPUs, a rank
 * stopped by the fault hook must make the others fail with ENG_ERR_TIMEOUT within the timeout.
 * Every check runs twice: with the ranks' own streams (each call waits), and bound to a stream of
 * the caller's (eng_comm_nccl_bind_stream, as the engine binds the CUDA backend's stream: calls only
 * enqueue, copies are queued on the same stream, eng_comm_wait before the host reads).
 * Prints one line per check; exit status 0 only if every check passed.
 */
#include "tp/nccl/comm_nccl.h"

#include <cuda_runtime.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct ctx {
    eng_comm_group *g;
    int world;
    int stop_rank; /* fault test: this rank stops after 0 calls (-1: none) */
    bool bound;    /* collectives on a stream of the rank thread's (bound mode) */
    long bad[16];
    eng_status st[16];
    char detail[16][512];
    double us_per_allreduce[16];
} ctx;

typedef struct targ {
    ctx *c;
    int rank;
} targ;

#define CK(x)                                                                                                \
    do {                                                                                                     \
        cudaError_t e_ = (x);                                                                                \
        if (e_ != cudaSuccess) {                                                                             \
            fprintf(stderr, "nccl-check: %s: %s\n", #x, cudaGetErrorString(e_));                             \
            exit(2);                                                                                         \
        }                                                                                                    \
    } while (0)

/* Copies through the rank's bound stream (bound mode) or synchronously. */
static void h2d(cudaStream_t s, void *dst, const void *src, size_t n)
{
    if (s)
        CK(cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, s));
    else
        CK(cudaMemcpy(dst, src, n, cudaMemcpyHostToDevice));
}

/* The host reads after a collective: in bound mode wait for the stream first (with the deadline;
 * a copy would block in the driver with none), then copy. */
static eng_status d2h(eng_comm *cm, cudaStream_t s, void *dst, const void *src, size_t n)
{
    if (s) {
        eng_status st = eng_comm_wait(cm);
        if (st != ENG_OK) return st;
        CK(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, s));
        CK(cudaStreamSynchronize(s));
        return ENG_OK;
    }
    CK(cudaMemcpy(dst, src, n, cudaMemcpyDeviceToHost));
    return ENG_OK;
}

static void *rank_main(void *p)
{
    targ *a = p;
    ctx *c = a->c;
    const int r = a->rank, W = c->world;
    eng_comm *cm = eng_comm_group_rank(c->g, r);
    CK(cudaSetDevice(eng_comm_nccl_device(cm)));
    const size_t maxn = 1 << 20;
    float *d = NULL, *h = malloc(maxn * W * sizeof *h);
    CK(cudaMalloc((void **)&d, maxn * W * sizeof *d));
    cudaStream_t s = NULL;
    eng_status st = ENG_OK;
    if (c->bound) {
        CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
        if ((st = eng_comm_nccl_bind_stream(cm, s)) != ENG_OK) goto out;
    }
    if (r == c->stop_rank) {
        eng_comm_debug_stop_after(cm, 0);
        float x = 1;
        h2d(s, d, &x, 4);
        st = eng_comm_all_reduce_sum(cm, d, 1);
        goto out;
    }
    if (c->stop_rank >= 0) { /* the others: one all-reduce that must time out (in the wait when bound) */
        st = eng_comm_all_reduce_sum(cm, d, 1);
        if (st == ENG_OK) st = eng_comm_wait(cm);
        goto out;
    }
    static const size_t sizes[] = {1, 17, 4096, 1 << 20};
    for (int round = 0; round < 200 && st == ENG_OK; round++) {
        const size_t n = sizes[round % 4];
        for (size_t i = 0; i < n; i++) h[i] = (float)((r + 1) * (int)((i + (size_t)round) % 1000));
        h2d(s, d, h, n * 4);
        if ((st = eng_comm_all_reduce_sum(cm, d, n)) != ENG_OK) break;
        if ((st = d2h(cm, s, h, d, n * 4)) != ENG_OK) break;
        for (size_t i = 0; i < n; i++)
            if (h[i] != (float)(W * (W + 1) / 2 * (int)((i + (size_t)round) % 1000))) c->bad[r]++;
        /* all-gather of 3 ints per rank, in place */
        int mine[3] = {r, round, -r}, all[48];
        h2d(s, (char *)d + (size_t)r * sizeof mine, mine, sizeof mine);
        if ((st = eng_comm_all_gather(cm, (char *)d + (size_t)r * sizeof mine, d, sizeof mine)) != ENG_OK)
            break;
        if ((st = d2h(cm, s, all, d, (size_t)W * sizeof mine)) != ENG_OK) break;
        for (int q = 0; q < W; q++)
            if (all[3 * q] != q || all[3 * q + 1] != round || all[3 * q + 2] != -q) c->bad[r]++;
        /* broadcast from round % W */
        int v = r == round % W ? round : -1;
        h2d(s, d, &v, 4);
        if ((st = eng_comm_broadcast(cm, d, 4, round % W)) != ENG_OK) break;
        if ((st = d2h(cm, s, &v, d, 4)) != ENG_OK) break;
        if (v != round) c->bad[r]++;
        if ((st = eng_comm_barrier(cm)) != ENG_OK) break;
        if ((st = eng_comm_wait(cm)) != ENG_OK) break;
    }
    if (st == ENG_OK) { /* latency of a decode-sized all-reduce (bound: queued back to back) */
        const int iters = 500;
        const double t0 = eng_now_s();
        for (int i = 0; i < iters && st == ENG_OK; i++) st = eng_comm_all_reduce_sum(cm, d, 2048);
        if (st == ENG_OK) st = eng_comm_wait(cm);
        c->us_per_allreduce[r] = (eng_now_s() - t0) * 1e6 / iters;
    }
out:
    c->st[r] = st;
    snprintf(c->detail[r], sizeof c->detail[r], "%s", st == ENG_OK ? "" : eng_err_last());
    if (s) { /* (after a failure the aborted communicator's work may still be queued: no sync) */
        (void)eng_comm_nccl_bind_stream(cm, NULL);
        if (st == ENG_OK) (void)cudaStreamSynchronize(s);
        cudaStreamDestroy(s);
    }
    cudaFree(d);
    free(h);
    return NULL;
}

static int run(int world, int stop_rank, int timeout_ms, bool bound)
{
    ctx c;
    memset(&c, 0, sizeof c);
    c.world = world;
    c.stop_rank = stop_rank;
    c.bound = bound;
    const char *mode = bound ? " (bound stream)" : "";
    eng_status st = eng_comm_group_nccl_create(world, NULL, timeout_ms, &c.g);
    if (st != ENG_OK) {
        printf("FAIL world %d%s: create: %s: %s\n", world, mode, eng_status_str(st), eng_err_last());
        return 1;
    }
    pthread_t th[16];
    targ a[16];
    const double t0 = eng_now_s();
    for (int r = 0; r < world; r++) {
        a[r] = (targ){&c, r};
        pthread_create(&th[r], NULL, rank_main, &a[r]);
    }
    for (int r = 0; r < world; r++) pthread_join(th[r], NULL);
    const double dt = eng_now_s() - t0;
    eng_comm_group_destroy(c.g);
    int fails = 0;
    if (stop_rank < 0) {
        for (int r = 0; r < world; r++)
            if (c.st[r] != ENG_OK || c.bad[r]) {
                printf("FAIL world %d%s rank %d: %s, %ld wrong values %s\n", world, mode, r,
                       eng_status_str(c.st[r]), c.bad[r], c.detail[r]);
                fails++;
            }
        if (!fails)
            printf("PASS world %d%s: all-reduce / all-gather / broadcast / barrier x 200; all-reduce of 2048 "
                   "floats: %.1f us\n",
                   world, mode, c.us_per_allreduce[0]);
    } else {
        for (int r = 0; r < world; r++) {
            const bool ok = r == stop_rank ? c.st[r] == ENG_ERR_INTERNAL : c.st[r] == ENG_ERR_TIMEOUT;
            if (!ok) {
                printf("FAIL world %d%s fault test rank %d: %s %s\n", world, mode, r, eng_status_str(c.st[r]),
                       c.detail[r]);
                fails++;
            }
        }
        if (dt > 3.0 * timeout_ms / 1000.0 + 5.0) {
            printf("FAIL world %d%s fault test: took %.1f s\n", world, mode, dt);
            fails++;
        }
        if (!fails)
            printf("PASS world %d%s fault test: rank %d stopped, the others timed out in %.2f s: %s\n", world,
                   mode, stop_rank, dt, c.detail[0]);
    }
    return fails;
}

int main(void)
{
    int n_dev = 0;
    cudaError_t e = cudaGetDeviceCount(&n_dev);
    if (e != cudaSuccess || n_dev < 1) {
        printf("FAIL: no CUDA device (%s)\n", cudaGetErrorString(e));
        return 1;
    }
    if (n_dev > 16) n_dev = 16;
    printf("nccl-check: %d GPU(s)\n", n_dev);
    int fails = 0;
    for (int bound = 0; bound < 2; bound++) {
        fails += run(1, -1, 20000, bound);
        if (n_dev >= 2) {
            fails += run(n_dev, -1, 20000, bound);
            fails += run(n_dev, 1, 2000, bound);
        }
    }
    printf("%s\n", fails ? "nccl-check: FAILED" : "nccl-check: all passed");
    return fails ? 1 : 0;
}
