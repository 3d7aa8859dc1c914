/* tests/unit/engine/test_block_pool.c - cache/block_pool: allocation and exhaustion, refcounts
 * and misuse, block-table growth and slot mapping, fork and attach with copy-on-write, the
 * blocks-needed formula, all-or-nothing failures, and a randomized simulation that executes the
 * copy instructions on a fake device memory and checks every sequence still reads its own tokens.
 */
#include <check.h>

#include "cache/block_pool.h"
#include "core/core.h"

#include <stdlib.h>
#include <string.h>

static eng_block_pool *pool;

static void setup(void)
{
    ck_assert_int_eq(eng_block_pool_create(8, 4, &pool), ENG_OK);
}

static void teardown(void)
{
    eng_block_pool_destroy(pool);
    pool = NULL;
}

/* ==== pool ==================================================================================== */

START_TEST(test_alloc_until_exhausted)
{
    int32_t id;
    for (int i = 0; i < 8; i++) {
        ck_assert_int_eq(eng_block_pool_alloc(pool, &id), ENG_OK);
        ck_assert_int_eq(id, i); /* a fresh pool hands out 0, 1, 2, ... */
        ck_assert_int_eq(eng_block_pool_refcount(pool, id), 1);
    }
    ck_assert(!eng_block_pool_can_alloc(pool, 1));
    ck_assert(eng_block_pool_can_alloc(pool, 0));
    ck_assert(eng_block_pool_can_admit(pool, 0));
    ck_assert(!eng_block_pool_can_admit(pool, 1));
    ck_assert_int_eq(eng_block_pool_alloc(pool, &id), ENG_ERR_NO_KV_BLOCKS);
    ck_assert_int_eq(eng_block_pool_unref(pool, 5), ENG_OK);
    ck_assert_int_eq(eng_block_pool_n_free(pool), 1);
    ck_assert_int_eq(eng_block_pool_alloc(pool, &id), ENG_OK);
    ck_assert_int_eq(id, 5);
    eng_block_pool_stats st;
    eng_block_pool_get_stats(pool, &st);
    ck_assert_int_eq(st.n_total, 8);
    ck_assert_int_eq(st.n_used, 8);
    ck_assert_int_eq(st.peak_used, 8);
    ck_assert_uint_eq(st.n_allocs, 9);
}
END_TEST

START_TEST(test_refcounts_and_misuse)
{
    int32_t a, b;
    ck_assert_int_eq(eng_block_pool_alloc(pool, &a), ENG_OK);
    ck_assert_int_eq(eng_block_pool_alloc(pool, &b), ENG_OK);
    ck_assert_int_eq(eng_block_pool_ref(pool, a), ENG_OK);
    ck_assert_int_eq(eng_block_pool_ref(pool, a), ENG_OK);
    ck_assert_int_eq(eng_block_pool_refcount(pool, a), 3);
    eng_block_pool_stats st;
    eng_block_pool_get_stats(pool, &st);
    ck_assert_int_eq(st.n_shared, 1);
    ck_assert_int_eq(eng_block_pool_unref(pool, a), ENG_OK);
    ck_assert_int_eq(eng_block_pool_unref(pool, a), ENG_OK);
    eng_block_pool_get_stats(pool, &st);
    ck_assert_int_eq(st.n_shared, 0);
    ck_assert_int_eq(eng_block_pool_n_free(pool), 6);
    ck_assert_int_eq(eng_block_pool_unref(pool, a), ENG_OK);
    ck_assert_int_eq(eng_block_pool_n_free(pool), 7);
    ck_assert_int_eq(eng_block_pool_refcount(pool, a), 0);
    /* double free, ref of a free block, out-of-range ids: reported, nothing changes */
    ck_assert_int_eq(eng_block_pool_unref(pool, a), ENG_ERR_INTERNAL);
    ck_assert_int_eq(eng_block_pool_ref(pool, a), ENG_ERR_INTERNAL);
    ck_assert_int_eq(eng_block_pool_ref(pool, 8), ENG_ERR_INTERNAL);
    ck_assert_int_eq(eng_block_pool_unref(pool, -1), ENG_ERR_INTERNAL);
    ck_assert_int_eq(eng_block_pool_refcount(pool, 99), -1);
    ck_assert_int_eq(eng_block_pool_n_free(pool), 7);
    ck_assert_int_eq(eng_block_pool_refcount(pool, b), 1);
}
END_TEST

START_TEST(test_create_errors)
{
    eng_block_pool *p = (eng_block_pool *)1;
    ck_assert_int_eq(eng_block_pool_create(0, 16, &p), ENG_ERR_INVALID);
    ck_assert_ptr_null(p);
    ck_assert_int_eq(eng_block_pool_create(4, 0, &p), ENG_ERR_INVALID);
    for (long k = 0; k < 3; k++) {
        eng_alloc_fail_after(k);
        eng_status rc = eng_block_pool_create(16, 16, &p);
        eng_alloc_fail_after(-1);
        ck_assert_int_eq(rc, ENG_ERR_NOMEM);
        ck_assert_ptr_null(p);
    }
    eng_block_pool_destroy(NULL);
}
END_TEST

/* ==== tables ================================================================================== */

START_TEST(test_table_growth_and_slots)
{
    eng_block_table t;
    eng_block_table_init(&t);
    eng_block_copy cp;
    bool copied;
    ck_assert(eng_block_pool_can_admit(pool, 32)); /* 8 blocks of 4 */
    ck_assert(!eng_block_pool_can_admit(pool, 33));
    ck_assert_int_eq(eng_block_table_blocks_needed(&t, pool, 1), 1);
    ck_assert_int_eq(eng_block_table_append(&t, pool, 1, &cp, &copied), ENG_OK);
    ck_assert(!copied);
    ck_assert_int_eq(t.n_blocks, 1);
    ck_assert_int_eq(eng_block_table_blocks_needed(&t, pool, 3), 0);
    ck_assert_int_eq(eng_block_table_append(&t, pool, 3, &cp, &copied), ENG_OK);
    ck_assert_int_eq(t.n_blocks, 1);
    ck_assert_int_eq(eng_block_table_blocks_needed(&t, pool, 9), 3);
    ck_assert_int_eq(eng_block_table_append(&t, pool, 9, NULL, NULL), ENG_OK); /* no copy possible */
    ck_assert_int_eq(t.n_tokens, 13);
    ck_assert_int_eq(t.n_blocks, 4);
    ck_assert_int_eq(eng_block_pool_n_free(pool), 4);
    /* position p -> ids[p / 4] * 4 + p % 4 */
    for (int p = 0; p < 13; p++)
        ck_assert_int_eq(eng_block_table_slot(&t, 4, p), (int64_t)t.ids[p / 4] * 4 + p % 4);
    ck_assert_int_eq(eng_block_table_slot(&t, 4, 5), 5); /* blocks 0, 1, 2, 3 in order */
    ck_assert_int_eq(eng_block_table_n_freeable(&t, pool), 4);
    ck_assert_int_eq(eng_block_table_append(&t, pool, 0, NULL, NULL), ENG_OK);
    ck_assert_int_eq(eng_block_table_append(&t, pool, -1, NULL, NULL), ENG_ERR_INVALID);
    eng_block_table_free(&t, pool);
    ck_assert_int_eq(t.n_blocks, 0);
    ck_assert_ptr_null(t.ids);
    ck_assert_int_eq(eng_block_pool_n_free(pool), 8);
    eng_block_table_free(NULL, pool);
}
END_TEST

START_TEST(test_append_all_or_nothing)
{
    eng_block_table a, b;
    eng_block_table_init(&a);
    eng_block_table_init(&b);
    ck_assert_int_eq(eng_block_table_append(&a, pool, 22, NULL, NULL), ENG_OK); /* 6 blocks */
    ck_assert_int_eq(eng_block_pool_n_free(pool), 2);
    ck_assert_int_eq(eng_block_table_append(&b, pool, 9, NULL, NULL), ENG_ERR_NO_KV_BLOCKS); /* needs 3 */
    ck_assert_int_eq(b.n_blocks, 0);
    ck_assert_int_eq(b.n_tokens, 0);
    ck_assert_int_eq(eng_block_pool_n_free(pool), 2);
    ck_assert_int_eq(eng_block_table_append(&a, pool, 11, NULL, NULL),
                     ENG_ERR_NO_KV_BLOCKS); /* 33 tokens: 9 */
    ck_assert_int_eq(a.n_tokens, 22);
    ck_assert_int_eq(a.n_blocks, 6);
    ck_assert_int_eq(eng_block_table_append(&a, pool, 10, NULL, NULL), ENG_OK); /* 32 tokens: exactly 8 */
    ck_assert_int_eq(eng_block_pool_n_free(pool), 0);

    /* appending within the id array's capacity (8 entries at first) allocates nothing */
    eng_block_table_free(&a, pool);
    ck_assert_int_eq(eng_block_table_append(&a, pool, 4, NULL, NULL), ENG_OK);
    eng_alloc_fail_after(0);
    eng_status rc = eng_block_table_append(&a, pool, 28, NULL, NULL); /* 8 blocks */
    eng_alloc_fail_after(-1);
    ck_assert_int_eq(rc, ENG_OK);
    eng_block_table_free(&a, pool);
    /* an allocation failure while growing the id array changes nothing */
    eng_block_pool *big;
    ck_assert_int_eq(eng_block_pool_create(64, 1, &big), ENG_OK);
    ck_assert_int_eq(eng_block_table_append(&a, big, 8, NULL, NULL), ENG_OK);
    eng_alloc_fail_after(0);
    rc = eng_block_table_append(&a, big, 20, NULL, NULL);
    eng_alloc_fail_after(-1);
    ck_assert_int_eq(rc, ENG_ERR_NOMEM);
    ck_assert_int_eq(a.n_tokens, 8);
    ck_assert_int_eq(eng_block_pool_n_free(big), 56);
    eng_block_table_free(&a, big);
    eng_block_pool_destroy(big);
}
END_TEST

START_TEST(test_fork_copy_on_write)
{
    eng_block_table a, b;
    eng_block_table_init(&a);
    eng_block_table_init(&b);
    eng_block_copy cp;
    bool copied;
    ck_assert_int_eq(eng_block_table_append(&a, pool, 6, &cp, &copied), ENG_OK); /* [0 full][1: 2 of 4] */
    ck_assert_int_eq(eng_block_table_fork(&a, &b, pool), ENG_OK);
    ck_assert_int_eq(b.n_tokens, 6);
    ck_assert_int_eq(eng_block_pool_refcount(pool, a.ids[0]), 2);
    ck_assert(eng_block_table_last_shared(&a, pool));
    ck_assert(eng_block_table_last_shared(&b, pool));
    ck_assert_int_eq(eng_block_table_n_freeable(&a, pool), 0);

    /* b writes position 6 into the shared partial block: copy it first */
    ck_assert_int_eq(eng_block_table_blocks_needed(&b, pool, 1), 1);
    ck_assert_int_eq(eng_block_table_append(&b, pool, 1, NULL, NULL), ENG_ERR_INVALID); /* copy needed */
    ck_assert_int_eq(b.n_tokens, 6);
    ck_assert_int_eq(eng_block_table_append(&b, pool, 1, &cp, &copied), ENG_OK);
    ck_assert(copied);
    ck_assert_int_eq(cp.src, a.ids[1]);
    ck_assert_int_eq(cp.dst, b.ids[1]);
    ck_assert_int_eq(cp.n_tokens, 2);
    ck_assert_int_ne(a.ids[1], b.ids[1]);
    ck_assert_int_eq(b.ids[0], a.ids[0]); /* the full block stays shared */
    ck_assert_int_eq(eng_block_pool_refcount(pool, a.ids[1]), 1);
    ck_assert(!eng_block_table_last_shared(&a, pool));

    /* a now owns its partial block: appends in place */
    ck_assert_int_eq(eng_block_table_append(&a, pool, 2, &cp, &copied), ENG_OK);
    ck_assert(!copied);
    ck_assert_int_eq(a.n_blocks, 2);
    eng_block_pool_stats st;
    eng_block_pool_get_stats(pool, &st);
    ck_assert_uint_eq(st.n_cow, 1);

    /* a full last block is never copied: the append starts a new block */
    eng_block_table c;
    eng_block_table_init(&c);
    ck_assert_int_eq(eng_block_table_fork(&a, &c, pool), ENG_OK); /* a has 8 tokens: 2 full blocks */
    ck_assert(!eng_block_table_last_shared(&c, pool));
    ck_assert_int_eq(eng_block_table_append(&c, pool, 1, &cp, &copied), ENG_OK);
    ck_assert(!copied);
    ck_assert_int_eq(c.n_blocks, 3);

    eng_block_table_free(&a, pool);
    eng_block_table_free(&b, pool);
    eng_block_table_free(&c, pool);
    ck_assert_int_eq(eng_block_pool_n_free(pool), 8);
}
END_TEST

START_TEST(test_attach_prefix)
{
    /* a "cache entry" pins the 6-token prefix of a finished sequence */
    eng_block_table a, b;
    eng_block_table_init(&a);
    eng_block_table_init(&b);
    ck_assert_int_eq(eng_block_table_append(&a, pool, 6, NULL, NULL), ENG_OK);
    int32_t pinned[2] = {a.ids[0], a.ids[1]};
    for (int i = 0; i < 2; i++) ck_assert_int_eq(eng_block_pool_ref(pool, pinned[i]), ENG_OK);
    eng_block_table_free(&a, pool);
    ck_assert_int_eq(eng_block_pool_n_free(pool), 6);

    ck_assert_int_eq(eng_block_table_attach(&b, pool, pinned, 6), ENG_OK);
    ck_assert_int_eq(eng_block_table_attach(&b, pool, pinned, 6), ENG_ERR_INVALID); /* not empty */
    ck_assert_int_eq(b.n_tokens, 6);
    ck_assert_int_eq(eng_block_pool_refcount(pool, pinned[1]), 2);
    eng_block_copy cp;
    bool copied;
    ck_assert_int_eq(eng_block_table_append(&b, pool, 3, &cp, &copied), ENG_OK); /* 9 tokens: CoW + 1 new */
    ck_assert(copied);
    ck_assert_int_eq(cp.src, pinned[1]);
    ck_assert_int_eq(cp.n_tokens, 2);
    ck_assert_int_eq(b.n_blocks, 3);
    ck_assert_int_eq(eng_block_pool_refcount(pool, pinned[1]), 1); /* only the "cache" now */
    ck_assert_int_eq(eng_block_table_n_freeable(&b, pool), 2);

    /* attaching a free block is refused and changes nothing */
    eng_block_table c;
    eng_block_table_init(&c);
    int32_t bad[2] = {pinned[0], 7};
    ck_assert_int_eq(eng_block_pool_refcount(pool, 7), 0);
    ck_assert_int_eq(eng_block_table_attach(&c, pool, bad, 8), ENG_ERR_INVALID);
    ck_assert_int_eq(eng_block_pool_refcount(pool, pinned[0]), 2);
    ck_assert_int_eq(c.n_blocks, 0);

    eng_block_table_free(&b, pool);
    for (int i = 0; i < 2; i++) ck_assert_int_eq(eng_block_pool_unref(pool, pinned[i]), ENG_OK);
    ck_assert_int_eq(eng_block_pool_n_free(pool), 8);
}
END_TEST

START_TEST(test_blocks_needed_formula)
{
    /* eng_blocks_needed(block_size, n_tokens, n_blocks, last_shared, n_new), by hand */
    ck_assert_int_eq(eng_blocks_needed(16, 0, 0, false, 1), 1);
    ck_assert_int_eq(eng_blocks_needed(16, 0, 0, false, 16), 1);
    ck_assert_int_eq(eng_blocks_needed(16, 0, 0, false, 17), 2);
    ck_assert_int_eq(eng_blocks_needed(16, 15, 1, false, 1), 0);
    ck_assert_int_eq(eng_blocks_needed(16, 16, 1, false, 1), 1);
    ck_assert_int_eq(eng_blocks_needed(16, 15, 1, true, 1), 1); /* copy-on-write */
    ck_assert_int_eq(eng_blocks_needed(16, 15, 1, true, 2), 2); /* copy + growth */
    ck_assert_int_eq(eng_blocks_needed(16, 16, 1, true, 1), 1); /* full shared block: growth only */
    ck_assert_int_eq(eng_blocks_needed(16, 15, 1, true, 0), 0);
    ck_assert_int_eq(eng_blocks_for_tokens(16, 0), 0);
    ck_assert_int_eq(eng_blocks_for_tokens(16, 33), 3);
}
END_TEST

/* ==== randomized simulation =================================================================== */

#define SIM_TABLES 12
#define SIM_BLOCKS 48
#define SIM_BS 4

typedef struct sim_seq {
    eng_block_table t;
    int32_t tokens[SIM_BLOCKS * SIM_BS];
    bool live;
} sim_seq;

static uint32_t rnd(uint64_t *x)
{
    *x ^= *x << 13, *x ^= *x >> 7, *x ^= *x << 17;
    return (uint32_t)(*x >> 32);
}

START_TEST(test_random_simulation)
{
    eng_block_pool *p;
    ck_assert_int_eq(eng_block_pool_create(SIM_BLOCKS, SIM_BS, &p), ENG_OK);
    static int32_t mem[SIM_BLOCKS * SIM_BS]; /* the fake device: one value per KV slot */
    static sim_seq seqs[SIM_TABLES];
    memset(seqs, 0, sizeof seqs);
    for (int i = 0; i < SIM_TABLES; i++) eng_block_table_init(&seqs[i].t);
    uint64_t x = 0x1234567ull;
    int32_t next_token = 1;
    int n_cow = 0, n_full = 0;

    for (int step = 0; step < 5000; step++) {
        sim_seq *s = &seqs[rnd(&x) % SIM_TABLES];
        uint32_t op = rnd(&x) % 10;
        if (!s->live) { /* start: empty, or a fork of a live one */
            sim_seq *src = &seqs[rnd(&x) % SIM_TABLES];
            if (src != s && src->live && op < 5) {
                ck_assert_int_eq(eng_block_table_fork(&src->t, &s->t, p), ENG_OK);
                memcpy(s->tokens, src->tokens, sizeof s->tokens);
            }
            s->live = true;
        } else if (op < 7) { /* append 1..6 tokens */
            int n = 1 + (int)(rnd(&x) % 6);
            if (s->t.n_tokens + n > SIM_BLOCKS * SIM_BS) continue;
            int need = eng_block_table_blocks_needed(&s->t, p, n);
            int free_before = eng_block_pool_n_free(p);
            eng_block_copy cp;
            bool copied;
            eng_status rc = eng_block_table_append(&s->t, p, n, &cp, &copied);
            if (rc == ENG_ERR_NO_KV_BLOCKS) {
                ck_assert_int_gt(need, free_before);
                ck_assert_int_eq(eng_block_pool_n_free(p), free_before);
                n_full++;
                continue;
            }
            ck_assert_int_eq(rc, ENG_OK);
            ck_assert_int_eq(free_before - eng_block_pool_n_free(p), need);
            if (copied) { /* run the device copy, then write the new tokens */
                memcpy(&mem[cp.dst * SIM_BS], &mem[cp.src * SIM_BS], (size_t)cp.n_tokens * sizeof *mem);
                n_cow++;
            }
            for (int k = 0; k < n; k++) {
                int pos = s->t.n_tokens - n + k;
                s->tokens[pos] = next_token++;
                int32_t blk = s->t.ids[pos / SIM_BS];
                ck_assert_int_eq(eng_block_pool_refcount(p, blk), 1); /* never write a shared block */
                mem[eng_block_table_slot(&s->t, SIM_BS, pos)] = s->tokens[pos];
            }
        } else { /* finish */
            eng_block_table_free(&s->t, p);
            s->live = false;
        }

        /* invariants: every live sequence reads back its own tokens; refcounts add up */
        static int refs[SIM_BLOCKS];
        memset(refs, 0, sizeof refs);
        for (int i = 0; i < SIM_TABLES; i++) {
            const eng_block_table *t = &seqs[i].t;
            ck_assert_int_eq(t->n_blocks, eng_blocks_for_tokens(SIM_BS, t->n_tokens));
            for (int b = 0; b < t->n_blocks; b++) refs[t->ids[b]]++;
            for (int pos = 0; pos < t->n_tokens; pos++)
                ck_assert_int_eq(mem[eng_block_table_slot(t, SIM_BS, pos)], seqs[i].tokens[pos]);
        }
        int n_free = 0;
        for (int b = 0; b < SIM_BLOCKS; b++) {
            ck_assert_int_eq(eng_block_pool_refcount(p, b), refs[b]);
            n_free += refs[b] == 0;
        }
        ck_assert_int_eq(eng_block_pool_n_free(p), n_free);
    }
    ck_assert_int_gt(n_cow, 50);  /* the walk exercised copy-on-write */
    ck_assert_int_gt(n_full, 10); /* and exhaustion */
    for (int i = 0; i < SIM_TABLES; i++) eng_block_table_free(&seqs[i].t, p);
    ck_assert_int_eq(eng_block_pool_n_free(p), SIM_BLOCKS);
    eng_block_pool_destroy(p);
}
END_TEST

/* ==== registry ================================================================================ */

static Suite *block_pool_suite(void)
{
    Suite *s = suite_create("block_pool");
    TCase *tc = tcase_create("pool");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_alloc_until_exhausted);
    tcase_add_test(tc, test_refcounts_and_misuse);
    tcase_add_test(tc, test_create_errors);
    suite_add_tcase(s, tc);

    tc = tcase_create("tables");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_table_growth_and_slots);
    tcase_add_test(tc, test_append_all_or_nothing);
    tcase_add_test(tc, test_fork_copy_on_write);
    tcase_add_test(tc, test_attach_prefix);
    tcase_add_test(tc, test_blocks_needed_formula);
    suite_add_tcase(s, tc);

    tc = tcase_create("simulation");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_random_simulation);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(block_pool_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
