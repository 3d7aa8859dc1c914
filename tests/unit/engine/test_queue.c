/* tests/unit/engine/test_queue.c - sched/queue: ids and FIFO order, the waiting-request bound
 * (ENG_ERR_QUEUE_FULL) and how admission/finish release it, cancellation rules, close, waiting
 * with timeouts and wake-ups, payload ownership, allocation failures, and a multi-threaded stress
 * run checked against a model of the live set.
 */
#include <check.h>

#include "core/core.h"
#include "sched/queue.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int n_payload_freed;
static void free_payload(void *p)
{
    n_payload_freed++;
    free(p);
}

START_TEST(test_ids_and_fifo)
{
    eng_queue *q;
    ck_assert_int_eq(eng_queue_create(8, free_payload, &q), ENG_OK);
    int tags[3] = {10, 20, 30};
    uint64_t ids[3];
    for (int i = 0; i < 3; i++) ck_assert_int_eq(eng_queue_submit(q, &tags[i], &ids[i]), ENG_OK);
    ck_assert_uint_eq(ids[0], 1);
    ck_assert_uint_eq(ids[1], 2);
    ck_assert_uint_eq(ids[2], 3);
    ck_assert_int_eq(eng_queue_cancel(q, 2), ENG_OK);
    eng_queue_item it[8];
    ck_assert_uint_eq(eng_queue_drain(q, it, 2), 2); /* partial drain */
    ck_assert_int_eq(it[0].kind, ENG_QUEUE_SUBMIT);
    ck_assert_ptr_eq(it[0].payload, &tags[0]);
    ck_assert_uint_eq(it[1].id, 2);
    ck_assert_uint_eq(eng_queue_drain(q, it, 8), 2);
    ck_assert_uint_eq(it[0].id, 3);
    ck_assert_int_eq(it[1].kind, ENG_QUEUE_CANCEL);
    ck_assert_uint_eq(it[1].id, 2);
    ck_assert_ptr_null(it[1].payload);
    ck_assert_uint_eq(eng_queue_drain(q, it, 8), 0);
    eng_queue_destroy(q);
    eng_queue_destroy(NULL);
}
END_TEST

START_TEST(test_capacity)
{
    eng_queue *q;
    ck_assert_int_eq(eng_queue_create(2, NULL, &q), ENG_OK);
    uint64_t a, b, c;
    int x;
    ck_assert_int_eq(eng_queue_submit(q, &x, &a), ENG_OK);
    ck_assert_int_eq(eng_queue_submit(q, &x, &b), ENG_OK);
    ck_assert_int_eq(eng_queue_submit(q, &x, &c), ENG_ERR_QUEUE_FULL);
    /* draining does not make room: the requests are still waiting in the engine */
    eng_queue_item it[4];
    ck_assert_uint_eq(eng_queue_drain(q, it, 4), 2);
    ck_assert_int_eq(eng_queue_submit(q, &x, &c), ENG_ERR_QUEUE_FULL);
    /* admission does */
    eng_queue_mark_admitted(q, a);
    eng_queue_mark_admitted(q, a); /* idempotent */
    ck_assert_int_eq(eng_queue_submit(q, &x, &c), ENG_OK);
    ck_assert_int_eq(eng_queue_submit(q, &x, &c), ENG_ERR_QUEUE_FULL);
    /* so does finishing a request that never ran (cancelled while waiting) */
    eng_queue_mark_finished(q, b);
    ck_assert_int_eq(eng_queue_submit(q, &x, &c), ENG_OK);
    /* finishing an admitted one does not count twice */
    eng_queue_mark_finished(q, a);
    ck_assert_int_eq(eng_queue_submit(q, &x, &c), ENG_ERR_QUEUE_FULL);
    eng_queue_stats st;
    eng_queue_get_stats(q, &st);
    ck_assert_int_eq(st.n_waiting, 2);
    ck_assert_int_eq(st.n_live, 2);
    ck_assert_int_eq(st.n_pending, 2);
    ck_assert_uint_eq(st.n_submitted, 4);
    ck_assert_uint_eq(st.n_rejected_full, 4);
    eng_queue_mark_finished(q, 999); /* unknown: ignored */
    eng_queue_mark_admitted(q, 999);
    eng_queue_destroy(q);
}
END_TEST

START_TEST(test_cancel_rules)
{
    eng_queue *q;
    ck_assert_int_eq(eng_queue_create(4, NULL, &q), ENG_OK);
    int x;
    uint64_t id;
    ck_assert_int_eq(eng_queue_cancel(q, 1), ENG_ERR_NOT_FOUND); /* never submitted */
    ck_assert_int_eq(eng_queue_cancel(q, 0), ENG_ERR_NOT_FOUND);
    ck_assert_int_eq(eng_queue_submit(q, &x, &id), ENG_OK);
    ck_assert_int_eq(eng_queue_cancel(q, id), ENG_OK);
    ck_assert_int_eq(eng_queue_cancel(q, id), ENG_OK); /* repeated: accepted, not queued again */
    eng_queue_item it[4];
    ck_assert_uint_eq(eng_queue_drain(q, it, 4), 2);
    eng_queue_mark_finished(q, id);
    ck_assert_int_eq(eng_queue_cancel(q, id), ENG_ERR_NOT_FOUND); /* finished */
    /* close: no new work, cancels still accepted */
    ck_assert_int_eq(eng_queue_submit(q, &x, &id), ENG_OK);
    eng_queue_close(q);
    eng_queue_close(q);
    uint64_t id2;
    ck_assert_int_eq(eng_queue_submit(q, &x, &id2), ENG_ERR_CANCELLED);
    ck_assert_int_eq(eng_queue_cancel(q, id), ENG_OK);
    eng_queue_stats st;
    eng_queue_get_stats(q, &st);
    ck_assert_uint_eq(st.n_cancels, 2);
    eng_queue_destroy(q);
}
END_TEST

START_TEST(test_destroy_frees_undrained)
{
    eng_queue *q;
    n_payload_freed = 0;
    ck_assert_int_eq(eng_queue_create(100, free_payload, &q), ENG_OK);
    uint64_t id;
    for (int i = 0; i < 70; i++)
        ck_assert_int_eq(eng_queue_submit(q, malloc(16), &id), ENG_OK); /* ring grows */
    eng_queue_item it[30];
    ck_assert_uint_eq(eng_queue_drain(q, it, 30), 30);
    for (int i = 0; i < 30; i++) free(it[i].payload); /* drained: ours now */
    ck_assert_int_eq(eng_queue_cancel(q, 50), ENG_OK);
    eng_queue_destroy(q);
    ck_assert_int_eq(n_payload_freed, 40);
}
END_TEST

START_TEST(test_alloc_failure)
{
    eng_queue *q;
    ck_assert_int_eq(eng_queue_create(1000, NULL, &q), ENG_OK);
    int x;
    uint64_t id;
    /* the first submit allocates the ring: make that fail */
    eng_alloc_fail_after(0);
    eng_status rc = eng_queue_submit(q, &x, &id);
    eng_alloc_fail_after(-1);
    ck_assert_int_eq(rc, ENG_ERR_NOMEM);
    eng_queue_stats st;
    eng_queue_get_stats(q, &st);
    ck_assert_int_eq(st.n_waiting, 0);
    ck_assert_int_eq(st.n_live, 0);
    ck_assert_int_eq(eng_queue_submit(q, &x, &id), ENG_OK);
    ck_assert_uint_eq(id, 1); /* no id was burnt */
    eng_queue_destroy(q);

    eng_queue *q2 = (eng_queue *)1;
    ck_assert_int_eq(eng_queue_create(0, NULL, &q2), ENG_ERR_INVALID);
    ck_assert_ptr_null(q2);
    for (long k = 0; k < 2; k++) {
        eng_alloc_fail_after(k);
        rc = eng_queue_create(4, NULL, &q2);
        eng_alloc_fail_after(-1);
        ck_assert_int_eq(rc, ENG_ERR_NOMEM);
    }
}
END_TEST

/* ==== waiting ================================================================================= */

static void *submit_later(void *arg)
{
    usleep(50 * 1000);
    uint64_t id;
    static int x;
    eng_queue_submit(arg, &x, &id);
    return NULL;
}

static void *close_later(void *arg)
{
    usleep(50 * 1000);
    eng_queue_close(arg);
    return NULL;
}

START_TEST(test_wait)
{
    eng_queue *q;
    ck_assert_int_eq(eng_queue_create(4, NULL, &q), ENG_OK);
    uint64_t t0 = eng_now_ns();
    ck_assert(!eng_queue_wait(q, 60));
    double waited = (double)(eng_now_ns() - t0) / 1e6;
    ck_assert_msg(waited >= 50 && waited < 2000, "waited %.1f ms", waited);
    ck_assert(!eng_queue_wait(q, 0));

    pthread_t th;
    pthread_create(&th, NULL, submit_later, q);
    ck_assert(eng_queue_wait(q, -1)); /* woken by the submit */
    pthread_join(th, NULL);
    ck_assert(eng_queue_wait(q, 1000)); /* pending: returns at once */

    eng_queue_item it[4];
    ck_assert_uint_eq(eng_queue_drain(q, it, 4), 1);
    pthread_create(&th, NULL, close_later, q);
    ck_assert(!eng_queue_wait(q, -1)); /* woken by close, nothing pending */
    pthread_join(th, NULL);
    eng_queue_destroy(q);
}
END_TEST

/* ==== threads ================================================================================= */

#define PRODUCERS 4
#define PER_PRODUCER 3000

typedef struct prod {
    eng_queue *q;
    int who;
    int n_ok, n_full, n_cancel_ok, n_cancel_nf;
} prod;

static void *producer(void *arg)
{
    prod *p = arg;
    for (int i = 0; i < PER_PRODUCER; i++) {
        int *payload = malloc(2 * sizeof *payload);
        payload[0] = p->who;
        payload[1] = i;
        uint64_t id;
        eng_status rc = eng_queue_submit(p->q, payload, &id);
        if (rc == ENG_OK) {
            p->n_ok++;
            if (i % 3 == 0) {
                rc = eng_queue_cancel(p->q, id);
                if (rc == ENG_OK)
                    p->n_cancel_ok++;
                else if (rc == ENG_ERR_NOT_FOUND)
                    p->n_cancel_nf++; /* already finished: fine */
                else
                    ck_abort_msg("cancel: %d", rc);
            }
        } else {
            ck_assert_int_eq(rc, ENG_ERR_QUEUE_FULL);
            free(payload);
            p->n_full++;
            usleep(50);
        }
    }
    return NULL;
}

START_TEST(test_threads)
{
    eng_queue *q;
    ck_assert_int_eq(eng_queue_create(64, free_payload, &q), ENG_OK);
    prod ps[PRODUCERS];
    pthread_t th[PRODUCERS];
    for (int i = 0; i < PRODUCERS; i++) {
        ps[i] = (prod){q, i, 0, 0, 0, 0};
        pthread_create(&th[i], NULL, producer, &ps[i]);
    }
    /* the step thread: drain, admit half at once, finish everything one drain later */
    static bool seen[PRODUCERS * PER_PRODUCER + 1];
    static bool cancelled[PRODUCERS * PER_PRODUCER + 1];
    int last_i[PRODUCERS];
    for (int i = 0; i < PRODUCERS; i++) last_i[i] = -1;
    uint64_t last_id = 0, pending_finish[256];
    int n_pending_finish = 0, n_sub = 0, n_can = 0, n_joined = 0;
    bool joined[PRODUCERS] = {false};
    eng_queue_item it[32];
    for (;;) {
        for (int k = 0; k < n_pending_finish; k++) eng_queue_mark_finished(q, pending_finish[k]);
        n_pending_finish = 0;
        size_t n = eng_queue_drain(q, it, 32);
        for (size_t k = 0; k < n; k++) {
            ck_assert_uint_le(it[k].id, PRODUCERS * PER_PRODUCER);
            if (it[k].kind == ENG_QUEUE_SUBMIT) {
                ck_assert(!seen[it[k].id]);
                ck_assert_uint_gt(it[k].id, last_id); /* ids arrive in increasing order */
                last_id = it[k].id;
                seen[it[k].id] = true;
                int *pl = it[k].payload;
                ck_assert_int_gt(pl[1], last_i[pl[0]]); /* per-producer FIFO */
                last_i[pl[0]] = pl[1];
                free(pl);
                if (it[k].id % 2) eng_queue_mark_admitted(q, it[k].id);
                pending_finish[n_pending_finish++] = it[k].id;
                n_sub++;
            } else {
                ck_assert(seen[it[k].id]);       /* a cancel never overtakes its submit */
                ck_assert(!cancelled[it[k].id]); /* and is delivered once */
                cancelled[it[k].id] = true;
                n_can++;
            }
        }
        for (int i = 0; i < PRODUCERS; i++)
            if (!joined[i] && pthread_tryjoin_np(th[i], NULL) == 0) joined[i] = true, n_joined++;
        if (n_joined == PRODUCERS && n == 0 && !eng_queue_wait(q, 0)) break;
        if (n == 0) usleep(100);
    }
    int ok = 0, can = 0;
    for (int i = 0; i < PRODUCERS; i++) ok += ps[i].n_ok, can += ps[i].n_cancel_ok;
    ck_assert_int_eq(n_sub, ok);
    ck_assert_int_eq(n_can, can);
    eng_queue_destroy(q);
}
END_TEST

static Suite *queue_suite(void)
{
    Suite *s = suite_create("queue");
    TCase *tc = tcase_create("basics");
    tcase_add_test(tc, test_ids_and_fifo);
    tcase_add_test(tc, test_capacity);
    tcase_add_test(tc, test_cancel_rules);
    tcase_add_test(tc, test_destroy_frees_undrained);
    tcase_add_test(tc, test_alloc_failure);
    suite_add_tcase(s, tc);
    tc = tcase_create("threads");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_wait);
    tcase_add_test(tc, test_threads);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(queue_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
