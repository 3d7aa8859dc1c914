/* tests/unit/engine/test_tp_group.c - the rank executor (tp/group.h):
 *   - a step runs on every rank (rank 0 on the caller's thread, the others on their own threads),
 *     many times in a row, with the shared argument visible to all
 *   - errors: every failing rank is named, root causes (not timeouts) first, with the first root
 *     cause's status; eng_tp_group_fail makes later steps fail at once
 *   - a rank that does not return in time: its collectives are aborted, a rank that then returns
 *     is collected; one that stays stuck makes the step fail with ENG_ERR_TIMEOUT (no hang), the
 *     group is lost until it returns, and destroy joins it once it has
 */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "tp/group.h"

typedef struct job {
    atomic_int calls[8];
    pthread_t thread[8];
    int fail_rank; /* returns an error (-1: none) */
    eng_status fail_st;
    int slow_rank; /* sleeps slow_ms (-1: none) */
    int slow_ms;
    eng_comm_group *comm; /* when set, every rank does one all-reduce */
    float sum[8];
} job;

static eng_status step(void *arg, int rank)
{
    job *j = arg;
    atomic_fetch_add(&j->calls[rank], 1);
    j->thread[rank] = pthread_self();
    if (rank == j->slow_rank) usleep((useconds_t)j->slow_ms * 1000);
    if (rank == j->fail_rank) return eng_err_set(j->fail_st, "rank %d broke on purpose", rank);
    if (j->comm) {
        float x = (float)(rank + 1);
        eng_status st = eng_comm_all_reduce_sum(eng_comm_group_rank(j->comm, rank), &x, 1);
        j->sum[rank] = x;
        return st;
    }
    return ENG_OK;
}

START_TEST(test_runs_every_rank)
{
    for (int world = 1; world <= 4; world++) {
        eng_tp_group *g;
        ck_assert_int_eq(eng_tp_group_create(world, 5000, NULL, &g), ENG_OK);
        ck_assert_int_eq(eng_tp_group_world(g), world);
        job j;
        memset(&j, 0, sizeof j);
        j.fail_rank = j.slow_rank = -1;
        for (int it = 0; it < 500; it++) ck_assert_int_eq(eng_tp_group_run(g, step, &j), ENG_OK);
        for (int r = 0; r < world; r++) ck_assert_int_eq(atomic_load(&j.calls[r]), 500);
        ck_assert(pthread_equal(j.thread[0], pthread_self()));
        for (int r = 1; r < world; r++) ck_assert(!pthread_equal(j.thread[r], pthread_self()));
        ck_assert(eng_tp_group_status(g) == ENG_OK);
        eng_tp_group_destroy(g);
    }
    eng_tp_group_destroy(NULL);
    eng_tp_group *g;
    ck_assert_int_eq(eng_tp_group_create(0, 0, NULL, &g), ENG_ERR_INVALID);
}
END_TEST

START_TEST(test_with_collectives)
{
    eng_comm_group *cg;
    eng_tp_group *g;
    ck_assert_int_eq(eng_comm_group_cpu_create(3, 5000, &cg), ENG_OK);
    ck_assert_int_eq(eng_tp_group_create(3, 5000, cg, &g), ENG_OK);
    job j;
    memset(&j, 0, sizeof j);
    j.fail_rank = j.slow_rank = -1;
    j.comm = cg;
    for (int it = 0; it < 200; it++) {
        ck_assert_int_eq(eng_tp_group_run(g, step, &j), ENG_OK);
        for (int r = 0; r < 3; r++) ck_assert(j.sum[r] == 6.0f);
    }
    eng_tp_group_destroy(g);
    eng_comm_group_destroy(cg);
}
END_TEST

START_TEST(test_errors_name_ranks)
{
    eng_comm_group *cg;
    eng_tp_group *g;
    ck_assert_int_eq(eng_comm_group_cpu_create(3, 300, &cg), ENG_OK);
    ck_assert_int_eq(eng_tp_group_create(3, 5000, cg, &g), ENG_OK);
    job j;
    memset(&j, 0, sizeof j);
    j.fail_rank = 2;
    j.fail_st = ENG_ERR_DEVICE;
    j.slow_rank = -1;
    j.comm = cg;
    const double t0 = eng_now_s();
    eng_status st = eng_tp_group_run(g, step, &j);
    ck_assert_msg(eng_now_s() - t0 < 5.0, "took %.1f s", eng_now_s() - t0);
    /* rank 2 failed before its all-reduce: ranks 0 and 1 time out; the root cause comes first */
    ck_assert_int_eq(st, ENG_ERR_DEVICE);
    const char *d = eng_err_last();
    const char *p2 = strstr(d, "rank 2: rank 2 broke on purpose"), *p0 = strstr(d, "rank 0:"),
               *p1 = strstr(d, "rank 1:");
    ck_assert_msg(p2 && p0 && p1 && p2 < p0 && p0 < p1, "%s", d);
    ck_assert_msg(strstr(d, "did not arrive") != NULL, "%s", d);
    /* not failed until the owner says so (a failed cache allocation is not fatal) */
    ck_assert(eng_tp_group_status(g) == ENG_OK);
    eng_tp_group_fail(g, st);
    ck_assert(eng_tp_group_failed(g));
    j.fail_rank = -1;
    j.comm = NULL;
    ck_assert_int_eq(eng_tp_group_run(g, step, &j), ENG_ERR_DEVICE);
    ck_assert_msg(strstr(eng_err_last(), "failed earlier") && strstr(eng_err_last(), "broke on purpose"),
                  "%s", eng_err_last());
    ck_assert_int_eq(atomic_load(&j.calls[0]), 1); /* refused: nothing ran */
    eng_tp_group_destroy(g);
    eng_comm_group_destroy(cg);
}
END_TEST

START_TEST(test_slow_rank_collected_after_abort)
{
    /* rank 1 returns 2.5 s after rank 0: past the 2 s (2 x 1 s) wait, within the 1 s grace period */
    eng_comm_group *cg;
    eng_tp_group *g;
    ck_assert_int_eq(eng_comm_group_cpu_create(2, 60000, &cg), ENG_OK);
    ck_assert_int_eq(eng_tp_group_create(2, 1000, cg, &g), ENG_OK);
    job j;
    memset(&j, 0, sizeof j);
    j.fail_rank = -1;
    j.slow_rank = 1;
    j.slow_ms = 2500;
    ck_assert_int_eq(eng_tp_group_run(g, step, &j), ENG_OK); /* it returned OK: no collective in this step */
    ck_assert(eng_comm_group_aborted(cg));                   /* but its collectives were aborted */
    ck_assert(!eng_tp_group_lost(g));
    eng_tp_group_destroy(g);
    eng_comm_group_destroy(cg);
}
END_TEST

START_TEST(test_stuck_rank_no_hang)
{
    /* rank 2 sleeps 1.8 s; timeout 400 ms: the step gives up after ~1.2 s (2 x 400 + 400), and
     * quiesce (up to 3 x 400 ms more) collects it */
    eng_tp_group *g;
    ck_assert_int_eq(eng_tp_group_create(3, 400, NULL, &g), ENG_OK);
    job j;
    memset(&j, 0, sizeof j);
    j.fail_rank = -1;
    j.slow_rank = 2;
    j.slow_ms = 1800;
    const double t0 = eng_now_s();
    eng_status st = eng_tp_group_run(g, step, &j);
    const double dt = eng_now_s() - t0;
    ck_assert_int_eq(st, ENG_ERR_TIMEOUT);
    ck_assert_msg(dt > 1.15 && dt < 1.75, "gave up after %.2f s", dt);
    ck_assert_msg(strstr(eng_err_last(), "1 of 3 ranks never returned") != NULL, "%s", eng_err_last());
    ck_assert(eng_tp_group_lost(g) && eng_tp_group_failed(g));
    ck_assert_int_eq(eng_tp_group_run(g, step, &j), ENG_ERR_TIMEOUT); /* refused at once */
    ck_assert(eng_tp_group_quiesce(g));                               /* waits for the sleeper */
    ck_assert(!eng_tp_group_lost(g));
    eng_tp_group_destroy(g);
}
END_TEST

Suite *tp_group_suite(void)
{
    Suite *s = suite_create("tp_group");
    TCase *tc = tcase_create("executor");
    tcase_add_test(tc, test_runs_every_rank);
    tcase_add_test(tc, test_with_collectives);
    tcase_add_test(tc, test_errors_name_ranks);
    tcase_add_test(tc, test_slow_rank_collected_after_abort);
    tcase_add_test(tc, test_stuck_rank_no_hang);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(tp_group_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
