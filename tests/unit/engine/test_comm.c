/* tests/unit/engine/test_comm.c - the CPU collectives (tp/comm.h): each test starts `world`
 * threads, one per rank, and checks
 *   - all-reduce: the sum in rank order ((b0 + b1) + b2) + ... (values chosen so that any other
 *     order gives different bits), identical bits on every rank, sizes 0 .. 100003, worlds 1..7
 *   - all-gather: rank-major layout, in place and out of place
 *   - broadcast from every root; barrier ordering
 *   - timeouts: a rank that never calls, a rank stopped by the fault hook, a mismatched call; the
 *     others return ENG_ERR_TIMEOUT / ENG_ERR_INTERNAL within a bound naming the missing rank,
 *     and every later call fails at once
 *   - many iterations of mixed collectives with results checked each time (races)
 * The expected values are computed here with plain loops, never by the code under test.
 */
#include <check.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tp/comm.h"

/* ==== a tiny SPMD harness ===================================================================== */

typedef struct spmd spmd;
typedef void (*rank_fn)(spmd *s, int rank);

struct spmd {
    int world;
    eng_comm_group *g;
    rank_fn fn;
    void *ctx;
    eng_status st[16];
    char detail[16][1024];
    double secs[16];
};

typedef struct targ {
    spmd *s;
    int rank;
} targ;

static void *thread_main(void *p)
{
    targ *a = p;
    a->s->fn(a->s, a->rank);
    return NULL;
}

/* Runs fn on `world` threads against a fresh CPU group. */
static void spmd_run(spmd *s, int world, int timeout_ms, rank_fn fn, void *ctx)
{
    ck_assert_int_le(world, 16);
    s->world = world;
    s->fn = fn;
    s->ctx = ctx;
    ck_assert_msg(eng_comm_group_cpu_create(world, timeout_ms, &s->g) == ENG_OK, "%s", eng_err_last());
    pthread_t th[16];
    targ a[16];
    for (int r = 0; r < world; r++) {
        a[r] = (targ){s, r};
        ck_assert_int_eq(pthread_create(&th[r], NULL, thread_main, &a[r]), 0);
    }
    for (int r = 0; r < world; r++) pthread_join(th[r], NULL);
    eng_comm_group_destroy(s->g);
    s->g = NULL;
}

static void record(spmd *s, int rank, eng_status st)
{
    s->st[rank] = st;
    snprintf(s->detail[rank], sizeof s->detail[rank], "%s", st == ENG_OK ? "" : eng_err_last());
}

/* Deterministic values whose sum depends on the order: big, small, -big, small, ... */
static float val(int rank, size_t i, int salt)
{
    uint32_t x = (uint32_t)(rank * 2654435761u) ^ (uint32_t)(i * 40503u) ^ (uint32_t)(salt * 97u);
    x ^= x >> 13;
    x *= 0x5bd1e995u;
    x ^= x >> 15;
    float small = (float)(x % 1000) / 997.0f;
    switch (rank % 4) { /* rank order: (big - big) + small...; reversed: the smalls vanish into big */
    case 0:
        return 1e8f + small;
    case 1:
        return -1e8f;
    case 2:
        return small;
    default:
        return small * 0.5f;
    }
}

/* ==== all-reduce ============================================================================== */

typedef struct ar_ctx {
    size_t n;
    int salt;
    float *out[16];
} ar_ctx;

static void ar_rank(spmd *s, int rank)
{
    ar_ctx *c = s->ctx;
    float *b = malloc((c->n ? c->n : 1) * sizeof *b);
    for (size_t i = 0; i < c->n; i++) b[i] = val(rank, i, c->salt);
    eng_comm *cm = eng_comm_group_rank(s->g, rank);
    ck_assert_int_eq(eng_comm_rank(cm), rank);
    ck_assert_int_eq(eng_comm_world(cm), s->world);
    record(s, rank, eng_comm_all_reduce_sum(cm, b, c->n));
    c->out[rank] = b;
}

START_TEST(test_all_reduce_order_and_bits)
{
    static const int worlds[] = {1, 2, 3, 4, 7};
    static const size_t sizes[] = {0, 1, 15, 16, 17, 1000, 100003};
    for (size_t wi = 0; wi < sizeof worlds / sizeof worlds[0]; wi++)
        for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
            const int W = worlds[wi];
            ar_ctx c = {.n = sizes[si], .salt = (int)si};
            spmd s = {0};
            spmd_run(&s, W, 10000, ar_rank, &c);
            size_t bad_order = 0;
            for (int r = 0; r < W; r++) ck_assert_msg(s.st[r] == ENG_OK, "rank %d: %s", r, s.detail[r]);
            for (size_t i = 0; i < c.n; i++) {
                float want = val(0, i, c.salt); /* rank order */
                for (int r = 1; r < W; r++) want += val(r, i, c.salt);
                float other = val(W - 1, i, c.salt); /* reverse order, to show the order matters */
                for (int r = W - 2; r >= 0; r--) other += val(r, i, c.salt);
                if (other != want) bad_order++;
                for (int r = 0; r < W; r++)
                    if (memcmp(&c.out[r][i], &want, 4) != 0)
                        ck_abort_msg("world %d n %zu: rank %d element %zu = %.9g, want %.9g", W, c.n, r, i,
                                     c.out[r][i], want);
            }
            if (W >= 3 && c.n >= 1000) ck_assert_msg(bad_order > 0, "test values do not depend on the order");
            for (int r = 0; r < W; r++) free(c.out[r]);
        }
}
END_TEST

/* ==== all-gather, broadcast, barrier ========================================================== */

typedef struct ag_ctx {
    size_t bytes;
    bool in_place;
    uint8_t *recv[16];
} ag_ctx;

static uint8_t pat(int rank, size_t i)
{
    return (uint8_t)(rank * 31 + i * 7 + 1);
}

static void ag_rank(spmd *s, int rank)
{
    ag_ctx *c = s->ctx;
    const size_t B = c->bytes;
    uint8_t *recv = malloc((size_t)s->world * B + 1);
    memset(recv, 0xEE, (size_t)s->world * B + 1);
    uint8_t *send = c->in_place ? recv + (size_t)rank * B : malloc(B + 1);
    for (size_t i = 0; i < B; i++) send[i] = pat(rank, i);
    record(s, rank, eng_comm_all_gather(eng_comm_group_rank(s->g, rank), send, recv, B));
    if (!c->in_place) free(send);
    c->recv[rank] = recv;
}

START_TEST(test_all_gather_layout)
{
    for (int in_place = 0; in_place < 2; in_place++)
        for (int W = 1; W <= 5; W++) {
            static const size_t sizes[] = {0, 1, 3, 64, 4099};
            for (size_t si = 0; si < 5; si++) {
                ag_ctx c = {.bytes = sizes[si], .in_place = in_place};
                spmd s = {0};
                spmd_run(&s, W, 10000, ag_rank, &c);
                for (int r = 0; r < W; r++) {
                    ck_assert_msg(s.st[r] == ENG_OK, "rank %d: %s", r, s.detail[r]);
                    for (int q = 0; q < W; q++)
                        for (size_t i = 0; i < c.bytes; i++)
                            if (c.recv[r][(size_t)q * c.bytes + i] != pat(q, i))
                                ck_abort_msg(
                                    "world %d bytes %zu in_place %d: rank %d block %d byte %zu wrong", W,
                                    c.bytes, in_place, r, q, i);
                    ck_assert_int_eq(c.recv[r][(size_t)W * c.bytes], 0xEE); /* nothing written past the end */
                    free(c.recv[r]);
                }
            }
        }
}
END_TEST

typedef struct bc_ctx {
    int root;
    uint64_t got[16][33];
} bc_ctx;

static void bc_rank(spmd *s, int rank)
{
    bc_ctx *c = s->ctx;
    uint64_t buf[33];
    for (int i = 0; i < 33; i++) buf[i] = rank == c->root ? (uint64_t)(1000 * c->root + i) : 7;
    record(s, rank, eng_comm_broadcast(eng_comm_group_rank(s->g, rank), buf, sizeof buf, c->root));
    memcpy(c->got[rank], buf, sizeof buf);
}

START_TEST(test_broadcast_every_root)
{
    for (int W = 1; W <= 4; W++)
        for (int root = 0; root < W; root++) {
            bc_ctx c = {.root = root};
            spmd s = {0};
            spmd_run(&s, W, 10000, bc_rank, &c);
            for (int r = 0; r < W; r++) {
                ck_assert_msg(s.st[r] == ENG_OK, "rank %d: %s", r, s.detail[r]);
                for (int i = 0; i < 33; i++) ck_assert_uint_eq(c.got[r][i], (uint64_t)(1000 * root + i));
            }
        }
    /* a bad root is refused before any wait */
    eng_comm_group *g;
    ck_assert_int_eq(eng_comm_group_cpu_create(2, 100, &g), ENG_OK);
    int x = 0;
    ck_assert_int_eq(eng_comm_broadcast(eng_comm_group_rank(g, 0), &x, sizeof x, 2), ENG_ERR_INVALID);
    ck_assert(strstr(eng_err_last(), "root 2") != NULL);
    ck_assert(!eng_comm_group_aborted(g));
    eng_comm_group_destroy(g);
}
END_TEST

typedef struct bar_ctx {
    atomic_int before;
    int seen[16][50];
} bar_ctx;

static void bar_rank(spmd *s, int rank)
{
    bar_ctx *c = s->ctx;
    eng_comm *cm = eng_comm_group_rank(s->g, rank);
    eng_status st = ENG_OK;
    for (int it = 0; it < 50 && st == ENG_OK; it++) {
        if ((it + rank) % 3 == 0) usleep(200);
        atomic_fetch_add(&c->before, 1);
        st = eng_comm_barrier(cm);
        c->seen[rank][it] = atomic_load(&c->before); /* everyone has counted this round */
        if (st == ENG_OK) st = eng_comm_barrier(cm); /* nobody starts the next round early */
    }
    record(s, rank, st);
}

START_TEST(test_barrier_orders)
{
    bar_ctx c;
    memset(&c, 0, sizeof c);
    atomic_init(&c.before, 0);
    spmd s = {0};
    spmd_run(&s, 4, 10000, bar_rank, &c);
    for (int r = 0; r < 4; r++) {
        ck_assert_msg(s.st[r] == ENG_OK, "rank %d: %s", r, s.detail[r]);
        for (int it = 0; it < 50; it++) ck_assert_int_eq(c.seen[r][it], 4 * (it + 1));
    }
}
END_TEST

/* ==== failures ================================================================================ */

typedef struct fail_ctx {
    int absent;    /* this rank never calls */
    int stop_rank; /* this rank is stopped by the fault hook after stop_after calls */
    long stop_after;
    int mismatch;         /* this rank passes a different size */
    int calls;            /* collectives each rank attempts */
    eng_status later[16]; /* a call after the failure */
    char later_detail[16][1024];
} fail_ctx;

static void fail_rank(spmd *s, int rank)
{
    fail_ctx *c = s->ctx;
    eng_comm *cm = eng_comm_group_rank(s->g, rank);
    const double t0 = eng_now_s();
    if (rank == c->stop_rank) eng_comm_debug_stop_after(cm, c->stop_after);
    eng_status st = ENG_OK;
    if (rank == c->absent)
        while (!eng_comm_group_aborted(s->g)) usleep(1000); /* comes back only after the others gave up */
    else {
        float b[40] = {0};
        for (int i = 0; i < c->calls && st == ENG_OK; i++)
            st = eng_comm_all_reduce_sum(cm, b, rank == c->mismatch ? 33 : 40);
    }
    s->secs[rank] = eng_now_s() - t0;
    record(s, rank, st);
    float y = 0;
    c->later[rank] = eng_comm_all_reduce_sum(cm, &y, 1);
    snprintf(c->later_detail[rank], sizeof c->later_detail[rank], "%s", eng_err_last());
}

START_TEST(test_timeout_absent_rank)
{
    fail_ctx c = {.absent = 2, .stop_rank = -1, .mismatch = -1, .calls = 3};
    spmd s = {0};
    const double t0 = eng_now_s();
    spmd_run(&s, 3, 300, fail_rank, &c);
    ck_assert_msg(eng_now_s() - t0 < 5.0, "took %.1f s", eng_now_s() - t0);
    for (int r = 0; r < 2; r++) {
        ck_assert_msg(s.st[r] == ENG_ERR_TIMEOUT, "rank %d: %d %s", r, s.st[r], s.detail[r]);
        ck_assert_msg(strstr(s.detail[r], "rank 2 did not arrive") != NULL, "rank %d: %s", r, s.detail[r]);
        ck_assert_msg(strstr(s.detail[r], "all_reduce #1") != NULL, "rank %d: %s", r, s.detail[r]);
        ck_assert(s.secs[r] >= 0.25 && s.secs[r] < 3.0);
    }
    for (int r = 0; r < 3; r++) { /* every later call (also the absent rank's) fails at once */
        ck_assert_int_eq(c.later[r], ENG_ERR_TIMEOUT);
        ck_assert_msg(strstr(c.later_detail[r], "failed earlier") != NULL, "%s", c.later_detail[r]);
    }
}
END_TEST

START_TEST(test_fault_hook_stops_a_rank)
{
    fail_ctx c = {.absent = -1, .stop_rank = 1, .stop_after = 5, .mismatch = -1, .calls = 20};
    spmd s = {0};
    spmd_run(&s, 4, 300, fail_rank, &c);
    ck_assert_int_eq(s.st[1], ENG_ERR_INTERNAL);
    ck_assert_msg(strstr(s.detail[1], "injected failure") != NULL, "%s", s.detail[1]);
    ck_assert_msg(strstr(s.detail[1], "call 6") != NULL, "%s", s.detail[1]);
    for (int r = 0; r < 4; r++) {
        if (r == 1) continue;
        ck_assert_msg(s.st[r] == ENG_ERR_TIMEOUT, "rank %d: %s", r, s.detail[r]);
        ck_assert_msg(strstr(s.detail[r], "rank 1 did not arrive") != NULL, "rank %d: %s", r, s.detail[r]);
        ck_assert_msg(strstr(s.detail[r], "all_reduce #6") != NULL, "rank %d: %s", r, s.detail[r]);
        ck_assert_int_eq(c.later[r], ENG_ERR_TIMEOUT);
    }
}
END_TEST

START_TEST(test_mismatch_detected)
{
    fail_ctx c = {.absent = -1, .stop_rank = -1, .mismatch = 0, .calls = 2};
    spmd s = {0};
    spmd_run(&s, 2, 2000, fail_rank, &c);
    for (int r = 0; r < 2; r++) {
        ck_assert_msg(s.st[r] == ENG_ERR_INTERNAL, "rank %d: %d %s", r, s.st[r], s.detail[r]);
        ck_assert_msg(strstr(s.detail[r], "mismatch") != NULL, "%s", s.detail[r]);
    }
}
END_TEST

START_TEST(test_abort_wakes_waiters)
{
    eng_comm_group *g;
    ck_assert_int_eq(eng_comm_group_cpu_create(2, 60000, &g), ENG_OK);
    ck_assert(!eng_comm_group_aborted(g));
    eng_comm_group_abort(g, "stopped by the test");
    ck_assert(eng_comm_group_aborted(g));
    ck_assert_int_eq(eng_comm_barrier(eng_comm_group_rank(g, 0)), ENG_ERR_TIMEOUT);
    ck_assert(strstr(eng_err_last(), "stopped by the test") != NULL);
    eng_comm_group_destroy(g);
    eng_comm_group_destroy(NULL);
    ck_assert_int_eq(eng_comm_group_cpu_create(0, 0, &g), ENG_ERR_INVALID);
}
END_TEST

typedef struct wake_ctx {
    eng_comm_group *g;
} wake_ctx;

static void *abort_later(void *p)
{
    wake_ctx *w = p;
    usleep(100000);
    eng_comm_group_abort(w->g, "aborted from another thread");
    return NULL;
}

START_TEST(test_abort_from_another_thread)
{
    eng_comm_group *g;
    ck_assert_int_eq(eng_comm_group_cpu_create(2, 60000, &g), ENG_OK);
    wake_ctx w = {g};
    pthread_t th;
    pthread_create(&th, NULL, abort_later, &w);
    const double t0 = eng_now_s();
    float x = 1;
    ck_assert_int_eq(eng_comm_all_reduce_sum(eng_comm_group_rank(g, 0), &x, 1),
                     ENG_ERR_TIMEOUT); /* rank 1 never comes */
    ck_assert(eng_now_s() - t0 < 5.0);
    ck_assert(strstr(eng_err_last(), "aborted from another thread") != NULL);
    pthread_join(th, NULL);
    eng_comm_group_destroy(g);
}
END_TEST

/* ==== stress ================================================================================== */

typedef struct stress_ctx {
    int iters;
    long bad[16];
} stress_ctx;

static void stress_rank(spmd *s, int rank)
{
    stress_ctx *c = s->ctx;
    eng_comm *cm = eng_comm_group_rank(s->g, rank);
    const int W = s->world;
    float buf[300];
    int gat[16 * 3];
    eng_status st = ENG_OK;
    for (int it = 0; it < c->iters && st == ENG_OK; it++) {
        const size_t n = (size_t)(it * 37 % 300);
        for (size_t i = 0; i < n; i++) buf[i] = (float)(rank + 1) * (float)(i + it);
        if ((st = eng_comm_all_reduce_sum(cm, buf, n)) != ENG_OK) break;
        for (size_t i = 0; i < n; i++)
            if (buf[i] != (float)(W * (W + 1) / 2) * (float)(i + it)) c->bad[rank]++;
        int mine[3] = {rank, it, -rank};
        if ((st = eng_comm_all_gather(cm, mine, gat, sizeof mine)) != ENG_OK) break;
        for (int q = 0; q < W; q++)
            if (gat[3 * q] != q || gat[3 * q + 1] != it || gat[3 * q + 2] != -q) c->bad[rank]++;
        int v = rank == it % W ? it : -1;
        if ((st = eng_comm_broadcast(cm, &v, sizeof v, it % W)) != ENG_OK) break;
        if (v != it) c->bad[rank]++;
    }
    record(s, rank, st);
}

START_TEST(test_many_iterations)
{
    for (int W = 2; W <= 4; W++) {
        stress_ctx c = {.iters = 3000};
        spmd s = {0};
        spmd_run(&s, W, 20000, stress_rank, &c);
        for (int r = 0; r < W; r++) {
            ck_assert_msg(s.st[r] == ENG_OK, "world %d rank %d: %s", W, r, s.detail[r]);
            ck_assert_msg(c.bad[r] == 0, "world %d rank %d: %ld wrong values", W, r, c.bad[r]);
        }
    }
}
END_TEST

Suite *comm_suite(void)
{
    Suite *s = suite_create("comm");
    TCase *tc = tcase_create("collectives");
    tcase_add_test(tc, test_all_reduce_order_and_bits);
    tcase_add_test(tc, test_all_gather_layout);
    tcase_add_test(tc, test_broadcast_every_root);
    tcase_add_test(tc, test_barrier_orders);
    tcase_add_test(tc, test_many_iterations);
    suite_add_tcase(s, tc);
    TCase *tf = tcase_create("failures");
    tcase_add_test(tf, test_timeout_absent_rank);
    tcase_add_test(tf, test_fault_hook_stops_a_rank);
    tcase_add_test(tf, test_mismatch_detected);
    tcase_add_test(tf, test_abort_wakes_waiters);
    tcase_add_test(tf, test_abort_from_another_thread);
    suite_add_tcase(s, tf);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(comm_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
