/* tests/unit/engine/test_prefix_cache.c - cache/prefix_cache: multi-turn chat growth, longest
 * prefix choice, max_len, hash collisions (injected weak hashes), LRU eviction in a tiny budget,
 * duplicate and too-large inserts, byte accounting with shared blocks, reclaim for the
 * scheduler, block refcounts (no leak, no premature free), allocation failures.
 */
#include <check.h>

#include "cache/prefix_cache.h"
#include "core/core.h"

#include <stdlib.h>
#include <string.h>

#define BS 4

static eng_block_pool *pool;

/* snapshot bookkeeping: handles are small integers; freed[h] counts free calls */
static int freed[1024];
static int n_freed;

static void free_snap(void *ctx, uint64_t h)
{
    ck_assert_ptr_eq(ctx, (void *)freed);
    ck_assert_uint_lt(h, 1024);
    freed[h]++;
    ck_assert_int_eq(freed[h], 1); /* never freed twice */
    n_freed++;
}

static void setup(void)
{
    memset(freed, 0, sizeof freed);
    n_freed = 0;
    ck_assert_int_eq(eng_block_pool_create(64, BS, &pool), ENG_OK);
}

static void teardown(void)
{
    /* every test returns every block */
    ck_assert_int_eq(eng_block_pool_n_free(pool), eng_block_pool_n_total(pool));
    eng_block_pool_destroy(pool);
    pool = NULL;
}

static eng_prefix_cache *make_cache(size_t budget, size_t kv_per_block, eng_prefix_hash_fn hash)
{
    eng_prefix_cache_config cfg = {budget, kv_per_block, free_snap, freed, hash};
    eng_prefix_cache *c = NULL;
    ck_assert_int_eq(eng_prefix_cache_create(&cfg, pool, &c), ENG_OK);
    return c;
}

/* A sequence: tokens and a block table that covers them (KV "computed"). */
typedef struct seq {
    int32_t tok[256];
    int n;
    eng_block_table t;
} seq;

static void seq_init(seq *s, const int32_t *tok, int n)
{
    memcpy(s->tok, tok, (size_t)n * sizeof *tok);
    s->n = n;
    eng_block_table_init(&s->t);
}

/* Runs positions [t.n_tokens, upto) "through the model": reserves their slots. */
static void seq_compute(seq *s, int upto)
{
    eng_block_copy cp;
    bool copied;
    ck_assert_int_eq(eng_block_table_append(&s->t, pool, upto - s->t.n_tokens, &cp, &copied), ENG_OK);
}

static void seq_free(seq *s)
{
    eng_block_table_free(&s->t, pool);
}

static eng_prefix_insert_result insert(eng_prefix_cache *c, const seq *s, int n, uint64_t snap, size_t bytes)
{
    eng_prefix_insert_result res;
    ck_assert_int_eq(eng_prefix_cache_insert(c, s->tok, n, s->t.ids, snap, bytes, &res), ENG_OK);
    return res;
}

static void fill(int32_t *t, int n, int32_t base)
{
    for (int i = 0; i < n; i++) t[i] = base + i;
}

/* ==== lookups ================================================================================= */

START_TEST(test_multi_turn_chat)
{
    eng_prefix_cache *c = make_cache(1 << 20, 0, NULL);
    int32_t conv[200];
    fill(conv, 200, 1000);

    /* turn 1: a 30-token prompt; nothing cached */
    seq s1;
    seq_init(&s1, conv, 30);
    eng_prefix_hit hit;
    ck_assert(!eng_prefix_cache_lookup(c, s1.tok, 30, 29, &hit));
    ck_assert_int_eq(hit.n_tokens, 0);
    eng_prefix_cache_record(c, &hit, 30);
    seq_compute(&s1, 30);
    ck_assert_int_eq(insert(c, &s1, 30, 1, 1000), ENG_PREFIX_INSERTED);
    /* the answer (10 tokens) is generated, then the sequence finishes */
    seq_compute(&s1, 40);
    seq_free(&s1);

    /* turn 2: previous prompt + answer + new user message = 70 tokens; hits the 30-token entry */
    seq s2;
    seq_init(&s2, conv, 70);
    ck_assert(eng_prefix_cache_lookup(c, s2.tok, 70, 69, &hit));
    ck_assert_int_eq(hit.n_tokens, 30);
    ck_assert_int_eq(hit.n_blocks, 8);
    ck_assert_uint_eq(hit.snapshot, 1);
    ck_assert_uint_eq(hit.snapshot_bytes, 1000);
    ck_assert_int_eq(eng_block_table_attach(&s2.t, pool, hit.blocks, hit.n_tokens), ENG_OK);
    eng_prefix_cache_record(c, &hit, 70);
    seq_compute(&s2, 70); /* only 40 new tokens */
    ck_assert_int_eq(insert(c, &s2, 70, 2, 1000), ENG_PREFIX_INSERTED);
    seq_free(&s2);

    /* turn 3: hits the 70-token entry (the longest) */
    seq s3;
    seq_init(&s3, conv, 120);
    ck_assert(eng_prefix_cache_lookup(c, s3.tok, 120, 119, &hit));
    ck_assert_int_eq(hit.n_tokens, 70);
    ck_assert_uint_eq(hit.snapshot, 2);
    eng_prefix_cache_record(c, &hit, 120);

    eng_prefix_cache_stats st;
    eng_prefix_cache_get_stats(c, &st);
    ck_assert_uint_eq(st.n_queries, 3);
    ck_assert_uint_eq(st.n_hits, 2);
    ck_assert_uint_eq(st.query_tokens, 30 + 70 + 120);
    ck_assert_uint_eq(st.hit_tokens, 30 + 70);
    ck_assert_int_eq(st.n_entries, 2);
    /* entry 1 pins blocks 0-7 (30 tokens), entry 2 pins its first 7 full blocks shared with
     * entry 1 (positions 0-27), a copy of block 7 and 10 more: 8 + 11 distinct */
    ck_assert_int_eq(st.n_blocks_pinned, 19);
    eng_prefix_cache_destroy(c);
    ck_assert_int_eq(n_freed, 2);
    ck_assert_int_eq(freed[1] + freed[2], 2);
}
END_TEST

START_TEST(test_longest_prefix_and_max_len)
{
    eng_prefix_cache *c = make_cache(1 << 20, 0, NULL);
    int32_t t[64];
    fill(t, 64, 5);
    seq s;
    seq_init(&s, t, 64);
    seq_compute(&s, 40);
    insert(c, &s, 10, 10, 1);
    insert(c, &s, 20, 20, 1);
    insert(c, &s, 40, 40, 1);
    eng_prefix_hit hit;
    ck_assert(eng_prefix_cache_lookup(c, t, 25, 1000, &hit));
    ck_assert_int_eq(hit.n_tokens, 20);
    ck_assert(eng_prefix_cache_lookup(c, t, 64, 39, &hit));
    ck_assert_int_eq(hit.n_tokens, 20);
    ck_assert(eng_prefix_cache_lookup(c, t, 64, 40, &hit));
    ck_assert_int_eq(hit.n_tokens, 40);
    ck_assert(eng_prefix_cache_lookup(c, t, 15, 14, &hit));
    ck_assert_int_eq(hit.n_tokens, 10);
    ck_assert(!eng_prefix_cache_lookup(c, t, 9, 9, &hit));
    ck_assert(!eng_prefix_cache_lookup(c, t, 64, 0, &hit));
    /* a prompt that diverges at token 15 only matches the 10-token entry */
    int32_t d[64];
    memcpy(d, t, sizeof d);
    d[15] = -7;
    ck_assert(eng_prefix_cache_lookup(c, d, 64, 63, &hit));
    ck_assert_int_eq(hit.n_tokens, 10);
    d[0] = 0;
    ck_assert(!eng_prefix_cache_lookup(c, d, 64, 63, &hit));
    ck_assert(eng_prefix_cache_contains(c, t, 20));
    ck_assert(!eng_prefix_cache_contains(c, t, 21));
    ck_assert(!eng_prefix_cache_contains(c, d, 20));
    /* lookups do not count: only record does */
    eng_prefix_cache_stats st;
    eng_prefix_cache_get_stats(c, &st);
    ck_assert_uint_eq(st.n_queries, 0);
    seq_free(&s);
    eng_prefix_cache_destroy(c);
}
END_TEST

/* every prefix hashes to the same value */
static uint64_t hash_const(uint64_t h, int32_t t)
{
    (void)h, (void)t;
    return 42;
}
/* collides whenever the token sums agree */
static uint64_t hash_sum(uint64_t h, int32_t t)
{
    return h + (uint64_t)(uint32_t)t;
}

START_TEST(test_collisions_never_return_a_wrong_prefix)
{
    eng_prefix_hash_fn fns[2] = {hash_const, hash_sum};
    for (int f = 0; f < 2; f++) {
        eng_prefix_cache *c = make_cache(1 << 20, 0, fns[f]);
        /* a = 1 2 3 4 5 6, b = 1 2 4 3 5 6: same sum at every length >= 4, same length */
        int32_t a[6] = {1, 2, 3, 4, 5, 6}, b[6] = {1, 2, 4, 3, 5, 6};
        seq sa, sb;
        seq_init(&sa, a, 6);
        seq_init(&sb, b, 6);
        seq_compute(&sa, 6);
        seq_compute(&sb, 6);
        ck_assert_int_eq(insert(c, &sa, 4, 1, 1), ENG_PREFIX_INSERTED);
        ck_assert_int_eq(insert(c, &sb, 4, 2, 1), ENG_PREFIX_INSERTED); /* not a duplicate */
        eng_prefix_hit hit;
        ck_assert(eng_prefix_cache_lookup(c, a, 6, 6, &hit));
        ck_assert_int_eq(hit.n_tokens, 4);
        ck_assert_uint_eq(hit.snapshot, 1);
        ck_assert_int_eq(hit.blocks[0], sa.t.ids[0]);
        ck_assert(eng_prefix_cache_lookup(c, b, 6, 6, &hit));
        ck_assert_uint_eq(hit.snapshot, 2);
        /* a prompt colliding with both at length 4 but equal to neither */
        int32_t x[6] = {2, 1, 3, 4, 5, 6};
        ck_assert(!eng_prefix_cache_lookup(c, x, 6, 6, &hit));
        ck_assert(!eng_prefix_cache_contains(c, x, 4));
        /* a longer colliding entry does not hide a shorter true one */
        ck_assert_int_eq(insert(c, &sb, 6, 3, 1), ENG_PREFIX_INSERTED);
        ck_assert(eng_prefix_cache_lookup(c, a, 6, 6, &hit));
        ck_assert_uint_eq(hit.snapshot, 1);
        ck_assert_int_eq(insert(c, &sa, 4, 4, 1), ENG_PREFIX_DUPLICATE); /* exact duplicate found */
        ck_assert_int_eq(freed[4], 1);
        seq_free(&sa);
        seq_free(&sb);
        eng_prefix_cache_destroy(c);
        memset(freed, 0, sizeof freed);
    }
}
END_TEST

/* ==== budget and eviction ===================================================================== */

START_TEST(test_lru_eviction_tiny_budget)
{
    /* budget: two 1000-byte snapshots plus overhead, not three */
    eng_prefix_cache *c = make_cache(2600, 0, NULL);
    int32_t t[3][16];
    seq s[3];
    for (int i = 0; i < 3; i++) {
        fill(t[i], 16, 100 * (i + 1));
        seq_init(&s[i], t[i], 16);
        seq_compute(&s[i], 16);
    }
    ck_assert_int_eq(insert(c, &s[0], 16, 0, 1000), ENG_PREFIX_INSERTED);
    ck_assert_int_eq(insert(c, &s[1], 16, 1, 1000), ENG_PREFIX_INSERTED);
    /* use entry 0: entry 1 becomes least recently used */
    eng_prefix_hit hit;
    ck_assert(eng_prefix_cache_lookup(c, t[0], 16, 16, &hit));
    eng_prefix_cache_record(c, &hit, 16);
    uint64_t gen = eng_prefix_cache_generation(c);
    ck_assert_int_eq(insert(c, &s[2], 16, 2, 1000), ENG_PREFIX_INSERTED);
    ck_assert_uint_ne(eng_prefix_cache_generation(c), gen);
    ck_assert_int_eq(freed[1], 1);
    ck_assert_int_eq(n_freed, 1);
    ck_assert(!eng_prefix_cache_contains(c, t[1], 16));
    ck_assert(eng_prefix_cache_contains(c, t[0], 16));
    ck_assert(eng_prefix_cache_contains(c, t[2], 16));
    eng_prefix_cache_stats st;
    eng_prefix_cache_get_stats(c, &st);
    ck_assert_uint_eq(st.n_evictions, 1);
    ck_assert_uint_le(st.bytes_used, 2600);

    /* an entry larger than the whole budget is refused; its snapshot is freed at once */
    ck_assert_int_eq(insert(c, &s[1], 16, 7, 5000), ENG_PREFIX_TOO_LARGE);
    ck_assert_int_eq(freed[7], 1);
    ck_assert_int_eq(n_freed, 2);
    /* a duplicate keeps the old snapshot and frees the new one */
    ck_assert_int_eq(insert(c, &s[2], 16, 8, 1000), ENG_PREFIX_DUPLICATE);
    ck_assert_int_eq(freed[8], 1);
    ck_assert(eng_prefix_cache_lookup(c, t[2], 16, 16, &hit));
    ck_assert_uint_eq(hit.snapshot, 2);

    /* blocks of evicted entries are released; the sequences still hold their own */
    for (int i = 0; i < 3; i++) seq_free(&s[i]);
    ck_assert_int_eq(eng_block_pool_n_free(pool), 64 - 8); /* entries 0 and 2: 4 blocks each */
    ck_assert(eng_prefix_cache_evict_lru(c));
    ck_assert(eng_prefix_cache_evict_lru(c));
    ck_assert(!eng_prefix_cache_evict_lru(c));
    ck_assert_int_eq(n_freed, 5);
    eng_prefix_cache_destroy(c);
}
END_TEST

START_TEST(test_byte_accounting_shared_blocks)
{
    const size_t KV = 100000; /* bytes per block */
    eng_prefix_cache *c = make_cache((size_t)1 << 30, KV, NULL);
    int32_t t[32];
    fill(t, 32, 1);
    seq s;
    seq_init(&s, t, 32);
    seq_compute(&s, 32);
    insert(c, &s, 16, 1, 500); /* 4 blocks */
    insert(c, &s, 32, 2, 700); /* 8 blocks, 4 shared with the first entry */
    eng_prefix_cache_stats st;
    eng_prefix_cache_get_stats(c, &st);
    ck_assert_int_eq(st.n_blocks_pinned, 8);
    size_t tokens_and_ids = (16 + 4 + 32 + 8) * sizeof(int32_t);
    ck_assert_uint_ge(st.bytes_used, 8 * KV + 1200 + tokens_and_ids);
    ck_assert_uint_le(st.bytes_used, 8 * KV + 1200 + tokens_and_ids + 2 * 512); /* + per-entry overhead */
    size_t before = st.bytes_used;
    eng_prefix_hit hit;
    ck_assert(eng_prefix_cache_lookup(c, t, 32, 32, &hit));
    ck_assert(eng_prefix_cache_evict_lru(c)); /* entry 1 (16 tokens) is the LRU one */
    ck_assert_int_eq(freed[1], 1);
    eng_prefix_cache_get_stats(c, &st);
    ck_assert_int_eq(st.n_blocks_pinned, 8);       /* its blocks are still pinned by entry 2 */
    ck_assert_uint_lt(before - st.bytes_used, KV); /* so no KV bytes went away */
    seq_free(&s);
    eng_prefix_cache_destroy(c);
}
END_TEST

START_TEST(test_reclaim)
{
    eng_prefix_cache *c = make_cache((size_t)1 << 30, 0, NULL);
    int32_t t[32], u[32];
    fill(t, 32, 1);
    fill(u, 32, 500);
    /* E1 = t[0,8) and E2 = t[0,16) from one finished sequence: E1's blocks are shared with E2 */
    seq s;
    seq_init(&s, t, 32);
    seq_compute(&s, 16);
    insert(c, &s, 8, 1, 1);
    insert(c, &s, 16, 2, 1);
    seq_free(&s);
    /* E3 = u[0,8), whose blocks a running sequence still holds */
    seq r;
    seq_init(&r, u, 32);
    seq_compute(&r, 8);
    insert(c, &r, 8, 3, 1);
    /* LRU order (oldest first): E1, E2, E3 */
    int base = eng_block_pool_n_free(pool);
    ck_assert_int_eq(base, 64 - 4 - 2);
    /* want 2 more free blocks: E1 frees nothing (shared), E2 frees its 2 exclusive blocks */
    ck_assert_int_eq(eng_prefix_cache_reclaim(c, base + 2), 1);
    ck_assert_int_eq(freed[2], 1);
    ck_assert_int_eq(freed[1], 0);
    ck_assert_int_eq(eng_block_pool_n_free(pool), base + 2);
    /* want 2 more: now E1 is exclusive; E3 never helps (the running sequence holds its blocks) */
    ck_assert_int_eq(eng_prefix_cache_reclaim(c, base + 10), 1);
    ck_assert_int_eq(freed[1], 1);
    ck_assert_int_eq(freed[3], 0);
    ck_assert_int_eq(eng_block_pool_n_free(pool), base + 4);
    /* no premature free: the running sequence's blocks are intact after the cache lets go */
    ck_assert(eng_prefix_cache_evict_lru(c));
    ck_assert_int_eq(eng_block_pool_refcount(pool, r.t.ids[0]), 1);
    ck_assert_int_eq(eng_block_table_n_freeable(&r.t, pool), 2);
    seq_free(&r);
    ck_assert_int_eq(eng_prefix_cache_reclaim(c, 1000), 0); /* empty */
    eng_prefix_cache_destroy(c);
}
END_TEST

/* ==== validation and faults =================================================================== */

START_TEST(test_insert_validation_takes_ownership)
{
    eng_prefix_cache *c = make_cache(1 << 20, 0, NULL);
    int32_t t[8];
    fill(t, 8, 1);
    int32_t blocks[2] = {0, 1}; /* free blocks */
    eng_prefix_insert_result res;
    ck_assert_int_eq(eng_prefix_cache_insert(c, t, 8, blocks, 11, 1, &res), ENG_ERR_INVALID);
    ck_assert_int_eq(freed[11], 1);
    ck_assert_int_eq(eng_prefix_cache_insert(c, t, 0, blocks, 12, 1, &res), ENG_ERR_INVALID);
    ck_assert_int_eq(freed[12], 1);
    ck_assert_int_eq(eng_prefix_cache_insert(c, NULL, 8, blocks, 13, 1, NULL), ENG_ERR_INVALID);
    ck_assert_int_eq(freed[13], 1);
    eng_prefix_cache_config bad = {0, 0, NULL, NULL, NULL};
    eng_prefix_cache *c2 = (eng_prefix_cache *)1;
    ck_assert_int_eq(eng_prefix_cache_create(&bad, pool, &c2), ENG_ERR_INVALID);
    ck_assert_ptr_null(c2);
    eng_prefix_cache_destroy(c);
    eng_prefix_cache_destroy(NULL);
}
END_TEST

START_TEST(test_insert_alloc_failures)
{
    eng_prefix_cache *c = make_cache(1 << 20, 0, NULL);
    int32_t t[40];
    fill(t, 40, 3);
    seq s;
    seq_init(&s, t, 40);
    seq_compute(&s, 40);
    ck_assert_int_eq(insert(c, &s, 8, 1, 1), ENG_PREFIX_INSERTED);
    int rc0 = eng_block_pool_refcount(pool, s.t.ids[0]);
    bool done = false;
    for (long k = 0; k < 20 && !done; k++) {
        eng_alloc_fail_after(k);
        eng_prefix_insert_result res;
        eng_status rc = eng_prefix_cache_insert(c, t, 40, s.t.ids, 100 + (uint64_t)k, 1, &res);
        eng_alloc_fail_after(-1);
        if (rc == ENG_OK) {
            done = true;
            ck_assert_int_eq(res, ENG_PREFIX_INSERTED);
            ck_assert_int_eq(freed[100 + k], 0);
        } else {
            ck_assert_int_eq(rc, ENG_ERR_NOMEM);
            ck_assert_int_eq(freed[100 + k], 1); /* ownership taken even on failure */
            ck_assert(!eng_prefix_cache_contains(c, t, 40));
            ck_assert_int_eq(eng_block_pool_refcount(pool, s.t.ids[0]), rc0); /* no stray refs */
        }
    }
    ck_assert(done);
    eng_prefix_hit hit;
    ck_assert(eng_prefix_cache_lookup(c, t, 40, 40, &hit));
    ck_assert_int_eq(hit.n_tokens, 40);
    seq_free(&s);
    eng_prefix_cache_destroy(c);
}
END_TEST

START_TEST(test_many_entries)
{
    /* 300 distinct conversations x 2 snapshots: the index grows; every lookup is exact */
    eng_block_pool_destroy(pool);
    ck_assert_int_eq(eng_block_pool_create(4096, BS, &pool), ENG_OK);
    eng_prefix_cache *c = make_cache((size_t)1 << 30, 0, NULL);
    static int32_t t[300][12];
    for (int i = 0; i < 300; i++) {
        for (int k = 0; k < 12; k++) t[i][k] = i * 7 + k * 13;
        seq s;
        seq_init(&s, t[i], 12);
        seq_compute(&s, 12);
        eng_prefix_insert_result res;
        ck_assert_int_eq(eng_prefix_cache_insert(c, t[i], 5 + i % 3, s.t.ids, 2 * (uint64_t)i, 1, &res),
                         ENG_OK);
        ck_assert_int_eq(res, ENG_PREFIX_INSERTED);
        ck_assert_int_eq(eng_prefix_cache_insert(c, t[i], 12, s.t.ids, 2 * (uint64_t)i + 1, 1, &res), ENG_OK);
        seq_free(&s);
    }
    for (int i = 0; i < 300; i++) {
        eng_prefix_hit hit;
        ck_assert(eng_prefix_cache_lookup(c, t[i], 12, 11, &hit));
        ck_assert_int_eq(hit.n_tokens, 5 + i % 3);
        ck_assert(eng_prefix_cache_lookup(c, t[i], 12, 12, &hit));
        ck_assert_int_eq(hit.n_tokens, 12);
    }
    eng_prefix_cache_stats st;
    eng_prefix_cache_get_stats(c, &st);
    ck_assert_int_eq(st.n_entries, 600);
    ck_assert_uint_eq(st.n_evictions, 0);
    eng_prefix_cache_clear(c);
    ck_assert_int_eq(n_freed, 600);
    for (int h = 0; h < 600; h++) ck_assert_int_eq(freed[h], 1);
    eng_prefix_cache_destroy(c);
}
END_TEST

/* ==== registry ================================================================================ */

static Suite *prefix_cache_suite(void)
{
    Suite *s = suite_create("prefix_cache");
    TCase *tc = tcase_create("lookup");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_multi_turn_chat);
    tcase_add_test(tc, test_longest_prefix_and_max_len);
    tcase_add_test(tc, test_collisions_never_return_a_wrong_prefix);
    suite_add_tcase(s, tc);

    tc = tcase_create("eviction");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_lru_eviction_tiny_budget);
    tcase_add_test(tc, test_byte_accounting_shared_blocks);
    tcase_add_test(tc, test_reclaim);
    suite_add_tcase(s, tc);

    tc = tcase_create("robustness");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_insert_validation_takes_ownership);
    tcase_add_test(tc, test_insert_alloc_failures);
    tcase_add_test(tc, test_many_entries);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(prefix_cache_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
