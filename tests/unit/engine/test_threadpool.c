/* tests/unit/engine/test_threadpool.c - core/threadpool: every task runs exactly once per job,
 * thread ids are in range and exclusive, jobs of any size back to back, sleeping workers wake up,
 * create/destroy (including allocation failures). */
#include <check.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "core/threadpool.h"

typedef struct count_job {
    atomic_int *hits;   /* [n_tasks] */
    atomic_int busy[64]; /* per thread id: tasks running right now */
    atomic_int bad;
    int n_threads;
} count_job;

static void count_task(void *arg, int task, int thread)
{
    count_job *j = arg;
    if (thread < 0 || thread >= j->n_threads) {
        atomic_fetch_add(&j->bad, 1);
        return;
    }
    if (atomic_fetch_add(&j->busy[thread], 1) != 0) atomic_fetch_add(&j->bad, 1); /* id shared concurrently */
    atomic_fetch_add(&j->hits[task], 1);
    atomic_fetch_sub(&j->busy[thread], 1);
}

static void run_and_check(eng_threadpool *p, int n_tasks)
{
    static atomic_int hits[5000];
    count_job j;
    memset(&j, 0, sizeof j);
    j.hits = hits;
    j.n_threads = eng_threadpool_size(p);
    for (int i = 0; i < n_tasks; i++) atomic_store(&hits[i], 0);
    eng_threadpool_run(p, n_tasks, count_task, &j);
    int wrong = 0;
    for (int i = 0; i < n_tasks; i++) wrong += atomic_load(&hits[i]) != 1;
    ck_assert_int_eq(wrong, 0);
    ck_assert_int_eq(atomic_load(&j.bad), 0);
}

START_TEST(test_each_task_once)
{
    const int sizes[] = {0, 1, 2, 3, 4, 7, 64, 1000, 4999};
    for (int threads = 1; threads <= 4; threads++) {
        eng_threadpool *p;
        ck_assert_int_eq(eng_threadpool_create(threads, &p), ENG_OK);
        ck_assert_int_eq(eng_threadpool_size(p), threads);
        for (int rep = 0; rep < 3; rep++)
            for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) run_and_check(p, sizes[i]);
        eng_threadpool_destroy(p);
    }
}
END_TEST

START_TEST(test_many_small_jobs)
{
    eng_threadpool *p;
    ck_assert_int_eq(eng_threadpool_create(3, &p), ENG_OK);
    for (int i = 0; i < 20000; i++) run_and_check(p, 1 + i % 5);
    eng_threadpool_destroy(p);
}
END_TEST

START_TEST(test_wakes_after_sleep)
{
    eng_threadpool *p;
    ck_assert_int_eq(eng_threadpool_create(2, &p), ENG_OK);
    run_and_check(p, 100);
    usleep(50 * 1000); /* workers fall asleep on the condition variable */
    run_and_check(p, 100);
    usleep(50 * 1000);
    run_and_check(p, 2);
    eng_threadpool_destroy(p);
}
END_TEST

START_TEST(test_default_size_and_null)
{
    eng_threadpool *p;
    ck_assert_int_eq(eng_threadpool_create(0, &p), ENG_OK);
    ck_assert_int_eq(eng_threadpool_size(p), eng_cpu_count());
    eng_threadpool_destroy(p);
    eng_threadpool_destroy(NULL);
    ck_assert_int_eq(eng_threadpool_size(NULL), 1);
    run_and_check(NULL, 10); /* a NULL pool runs inline */
}
END_TEST

START_TEST(test_alloc_failures)
{
    for (long k = 0; k < 8; k++) {
        eng_threadpool *p = (eng_threadpool *)1;
        eng_alloc_fail_after(k);
        eng_status st = eng_threadpool_create(4, &p);
        eng_alloc_fail_after(-1);
        if (st == ENG_OK) {
            run_and_check(p, 50);
            eng_threadpool_destroy(p);
        } else {
            ck_assert_int_eq(st, ENG_ERR_NOMEM);
            ck_assert_ptr_null(p);
        }
    }
}
END_TEST

static Suite *threadpool_suite(void)
{
    Suite *s = suite_create("threadpool");
    TCase *tc = tcase_create("run");
    tcase_add_test(tc, test_each_task_once);
    tcase_add_test(tc, test_many_small_jobs);
    tcase_add_test(tc, test_wakes_after_sleep);
    tcase_add_test(tc, test_default_size_and_null);
    tcase_add_test(tc, test_alloc_failures);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(threadpool_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
