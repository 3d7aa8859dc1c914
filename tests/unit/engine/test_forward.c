/* tests/unit/engine/test_forward.c - the model forward pass and its caches as the batching engine
 * will use them (model/model.h, model/cache.h), on the golden fixture models:
 *   - batch invariance: a sequence's logits are bitwise equal alone or batched with others of
 *     different lengths (prefill and decode mixed, any row offset), and with 1 or 2 threads
 *   - a prompt split at multiples of 64 gives bitwise the logits of the whole prompt
 *   - slot copy / save / restore and KV block copy (forks, prefix snapshots, copy-on-write)
 *   - position 0 ignores whatever a reused slot holds
 *   - malformed batches are rejected with ENG_ERR_INVALID; load errors name the file and tensor;
 *     allocation failures during load give a clean ENG_ERR_NOMEM
 * Accuracy against transformers is tests/golden/test_golden.c's job.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/backend.h"
#include "model/cache.h"
#include "model/model.h"
#include "model/safetensors.h"

static const eng_simd PATHS[] = {ENG_SIMD_SCALAR, ENG_SIMD_AVX2, ENG_SIMD_AVX512};
#define N_PATHS ((int)(sizeof PATHS / sizeof PATHS[0]))

static void fixture(char *buf, size_t cap, const char *name)
{
    const char *src = getenv("QNEXT_SOURCE_DIR");
    ck_assert_msg(src != NULL, "QNEXT_SOURCE_DIR is not set (run through ctest)");
    snprintf(buf, cap, "%s/tests/golden/fixtures/%s", src, name);
}

typedef struct rig {
    eng_backend *be;
    qn_model *m;
    qn_cache *c;
    int V;
} rig;

static void rig_open(rig *r, const char *name, eng_simd simd, int threads, int slots, int blocks)
{
    char dir[1024];
    fixture(dir, sizeof dir, name);
    eng_cpu_options o = {threads, simd};
    ck_assert_msg(eng_backend_cpu_create(&o, &r->be) == ENG_OK, "%s", eng_err_last());
    qn_model_params mp = {.max_tokens = 200, .quiet = true};
    ck_assert_msg(qn_model_load(dir, r->be, &mp, &r->m) == ENG_OK, "%s", eng_err_last());
    qn_cache_params cp = {.n_slots = slots, .n_blocks = blocks, .block_size = 16};
    ck_assert_msg(qn_cache_create(r->m, &cp, &r->c) == ENG_OK, "%s", eng_err_last());
    r->V = qn_model_vocab(r->m);
}

static void rig_close(rig *r)
{
    qn_cache_destroy(r->c);
    qn_model_destroy(r->m);
    eng_backend_destroy(r->be);
}

static void ids(int32_t *out, int n, int seed, int V)
{
    uint32_t x = 2463534242u + (uint32_t)seed * 7919u;
    for (int i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        out[i] = (int32_t)(3 + x % (uint32_t)(V - 3));
    }
}

static void forward(rig *r, const int32_t *tok, int n_tok, const qn_seq *seqs, int n_seqs, const int32_t *rows,
                    int n_rows, float *logits)
{
    qn_batch b = {n_tok, tok, n_seqs, seqs, n_rows, rows};
    eng_status st = qn_model_forward(r->m, r->c, &b, logits);
    if (st != ENG_OK) ck_abort_msg("forward: %s", eng_err_last());
}

/* ==== batch invariance ======================================================================== */

static void check_invariance(const char *model, eng_simd simd)
{
    rig r;
    rig_open(&r, model, simd, 2, 4, 64);
    const int V = r.V, LA = 40, LB = 100, steps = 3;
    int32_t a[40], bt[100], c[1], dec[3] = {5, 17, 9};
    ids(a, LA, 1, V);
    ids(bt, LB, 2, V);
    ids(c, 1, 3, V);
    int32_t tabA[8] = {0, 1, 2, 3, 4, 5, 6, 7}, tabB[8] = {20, 9, 31, 12, 40, 41, 42, 43}, tabC[2] = {50, 51};
    float *alone = malloc((size_t)(1 + steps) * V * 4), *batched = malloc((size_t)(1 + steps) * V * 4);
    float *tmp = malloc((size_t)3 * V * 4);
    /* A alone: prompt, then decode steps */
    int32_t last = LA - 1, zero = 0;
    qn_seq sa = {LA, 0, 0, tabA, 8};
    forward(&r, a, LA, &sa, 1, &last, 1, alone);
    for (int s = 0; s < steps; s++) {
        qn_seq sd = {1, LA + s, 0, tabA, 8};
        forward(&r, &dec[s], 1, &sd, 1, &zero, 1, alone + (size_t)(1 + s) * V);
    }
    /* A batched between B (a longer prefill) and C (a 1-token sequence), in other slots */
    int32_t tok[141];
    memcpy(tok, bt, sizeof bt);
    memcpy(tok + LB, a, sizeof a);
    tok[LB + LA] = c[0];
    qn_seq three[3] = {{LB, 0, 1, tabB, 8}, {LA, 0, 2, tabA, 8}, {1, 0, 3, tabC, 2}};
    int32_t rows[3] = {LB + LA - 1, LB - 1, LB + LA};
    forward(&r, tok, LB + LA + 1, three, 3, rows, 3, tmp);
    memcpy(batched, tmp, (size_t)V * 4);
    for (int s = 0; s < steps; s++) {
        /* decode all three, A last this time */
        int32_t t3[3] = {1000 % V, 7, dec[s]};
        qn_seq d3[3] = {{1, 1 + s, 3, tabC, 2}, {1, LB + s, 1, tabB, 8}, {1, LA + s, 2, tabA, 8}};
        int32_t r3[2] = {2, 0};
        forward(&r, t3, 3, d3, 3, r3, 2, tmp);
        memcpy(batched + (size_t)(1 + s) * V, tmp, (size_t)V * 4);
    }
    for (int s = 0; s <= steps; s++)
        if (memcmp(alone + (size_t)s * V, batched + (size_t)s * V, (size_t)V * 4) != 0)
            ck_abort_msg("%s %s: sequence logits at step %d differ alone vs batched", model, eng_simd_name(simd), s);
    rig_close(&r);
    /* one thread: the same bits */
    rig_open(&r, model, simd, 1, 4, 64);
    forward(&r, a, LA, &sa, 1, &last, 1, tmp);
    ck_assert_msg(memcmp(tmp, alone, (size_t)V * 4) == 0, "%s: 1 thread differs from 2", model);
    rig_close(&r);
    free(alone);
    free(batched);
    free(tmp);
}

START_TEST(test_batch_invariance)
{
    for (int pi = 0; pi < N_PATHS; pi++) {
        if (!eng_simd_supported(PATHS[pi])) {
            printf("forward: SIMD path %s not available on this CPU\n", eng_simd_name(PATHS[pi]));
            continue;
        }
        check_invariance("a_realdims", PATHS[pi]);
        check_invariance("b_fp8", PATHS[pi]);
        check_invariance("c_vocab", PATHS[pi]);
    }
}
END_TEST

/* ==== chunked prefill ========================================================================= */

START_TEST(test_aligned_chunks_bitwise)
{
    rig r;
    rig_open(&r, "a_realdims", ENG_SIMD_AUTO, 2, 2, 32);
    const int L = 150, V = r.V;
    int32_t p[150], rows[150], tab0[10] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, tab1[10] = {10, 11, 12, 13, 14, 15, 16, 17, 18, 19};
    ids(p, L, 4, V);
    for (int i = 0; i < L; i++) rows[i] = i;
    float *one = malloc((size_t)L * V * 4), *parts = malloc((size_t)L * V * 4);
    qn_seq s = {L, 0, 0, tab0, 10};
    forward(&r, p, L, &s, 1, rows, L, one);
    const int cuts[] = {0, 64, 128, 150};
    for (int k = 0; k < 3; k++) {
        qn_seq sk = {cuts[k + 1] - cuts[k], cuts[k], 1, tab1, 10};
        forward(&r, p + cuts[k], sk.n_new, &sk, 1, rows, sk.n_new, parts + (size_t)cuts[k] * V);
    }
    ck_assert_msg(memcmp(one, parts, (size_t)L * V * 4) == 0, "prompt split at multiples of 64 differs");
    free(one);
    free(parts);
    rig_close(&r);
}
END_TEST

/* ==== slots and blocks ======================================================================== */

START_TEST(test_slot_fork_save_restore)
{
    rig r;
    rig_open(&r, "a_realdims", ENG_SIMD_AUTO, 2, 4, 32);
    const int V = r.V, L = 37; /* 37 = 2 full blocks of 16 + a partial one */
    int32_t p[37], zero = 0, last = L - 1;
    ids(p, L, 5, V);
    int32_t tab0[4] = {0, 1, 2, 3}, tab1[4] = {0, 1, 9, 10};
    float *l0 = malloc((size_t)V * 4), *l1 = malloc((size_t)V * 4), *l2 = malloc((size_t)2 * V * 4);
    qn_seq s0 = {L, 0, 0, tab0, 4};
    forward(&r, p, L, &s0, 1, &last, 1, l0);
    /* fork: slot 0 -> 1, the partial block 2 -> 9 (copy on write); full blocks shared */
    ck_assert_int_eq(qn_cache_slot_copy(r.c, 1, 0), ENG_OK);
    ck_assert_int_eq(qn_cache_block_copy(r.c, 9, 2), ENG_OK);
    size_t sb = qn_cache_slot_bytes(r.c);
    ck_assert_uint_gt(sb, 0);
    void *snap = malloc(sb);
    ck_assert_int_eq(qn_cache_slot_save(r.c, 0, snap, sb), ENG_OK);
    /* both branches decode the same token in one batch: same logits */
    int32_t t2[2] = {42, 42}, r2[2] = {0, 1};
    qn_seq d2[2] = {{1, L, 0, tab0, 4}, {1, L, 1, tab1, 4}};
    forward(&r, t2, 2, d2, 2, r2, 2, l2);
    ck_assert_msg(memcmp(l2, l2 + V, (size_t)V * 4) == 0, "forked sequences diverged");
    /* restore slot 0's snapshot and decode again: the same logits as the first time */
    ck_assert_int_eq(qn_cache_slot_restore(r.c, 0, snap, sb), ENG_OK);
    forward(&r, t2, 1, d2, 1, &zero, 1, l1);
    ck_assert_msg(memcmp(l1, l2, (size_t)V * 4) == 0, "restored snapshot differs");
    /* reset: a different state, so different logits */
    ck_assert_int_eq(qn_cache_slot_reset(r.c, 0), ENG_OK);
    forward(&r, t2, 1, d2, 1, &zero, 1, l1);
    ck_assert_msg(memcmp(l1, l2, (size_t)V * 4) != 0, "reset slot gave the old logits");
    /* argument checks */
    ck_assert_int_eq(qn_cache_slot_copy(r.c, 4, 0), ENG_ERR_INVALID);
    ck_assert_int_eq(qn_cache_slot_save(r.c, 0, snap, sb - 1), ENG_ERR_INVALID);
    ck_assert_int_eq(qn_cache_slot_restore(r.c, 0, snap, sb + 1), ENG_ERR_INVALID);
    ck_assert_int_eq(qn_cache_block_copy(r.c, 32, 0), ENG_ERR_INVALID);
    ck_assert_int_eq(qn_cache_slot_reset(r.c, -1), ENG_ERR_INVALID);
    ck_assert_uint_eq(qn_cache_bytes(r.c), sb * 4 + qn_cache_block_bytes(r.c) * 32);
    free(snap);
    free(l0);
    free(l1);
    free(l2);
    rig_close(&r);
}
END_TEST

START_TEST(test_pos0_ignores_stale_slot)
{
    rig r;
    rig_open(&r, "c_vocab", ENG_SIMD_AUTO, 2, 2, 16);
    const int V = r.V;
    int32_t x[30], y[20], tab[4] = {0, 1, 2, 3}, last = 19, lx = 29;
    ids(x, 30, 6, V);
    ids(y, 20, 7, V);
    float *a = malloc((size_t)V * 4), *b = malloc((size_t)V * 4);
    qn_seq sy = {20, 0, 1, tab, 4};
    forward(&r, y, 20, &sy, 1, &last, 1, a); /* fresh slot 1 */
    qn_seq sx = {30, 0, 0, tab, 4};
    forward(&r, x, 30, &sx, 1, &lx, 1, b); /* fill slot 0 with x's state */
    sy.slot = 0;
    forward(&r, y, 20, &sy, 1, &last, 1, b); /* y again, over x's state */
    ck_assert_msg(memcmp(a, b, (size_t)V * 4) == 0, "a pos-0 sequence saw a stale slot");
    free(a);
    free(b);
    rig_close(&r);
}
END_TEST

/* ==== errors ================================================================================== */

typedef struct bad_case {
    qn_batch b;
    const char *why;
} bad_case;

START_TEST(test_invalid_batches)
{
    rig r;
    rig_open(&r, "c_vocab", ENG_SIMD_SCALAR, 1, 2, 4);
    const int V = r.V;
    float *lg = malloc((size_t)2 * V * 4);
    int32_t tok[3] = {5, 6, 7}, tab[4] = {0, 1, 2, 3}, row = 0, badrow = 3;
    qn_seq s = {3, 0, 0, tab, 4};
    bad_case cases[8];
    qn_seq s_bad_tok = s, s_slot = s, s_blocks = s, s_blockid = s, s_two[2] = {{1, 0, 1, tab, 4}, {2, 0, 1, tab, 4}};
    int32_t badtok[3] = {5, V, 7};
    s_slot.slot = 2;
    s_blocks.pos = 62; /* 65 positions need 5 blocks of 16; the table has 4 */
    int32_t badtab[4] = {0, 1, 2, 4};
    s_blockid.block_table = badtab;
    s_blockid.pos = 50;
    cases[0] = (bad_case){{3, badtok, 1, &s_bad_tok, 1, &row}, "token outside the vocabulary"};
    cases[1] = (bad_case){{3, tok, 1, &s_slot, 1, &row}, "slot out of range"};
    cases[2] = (bad_case){{3, tok, 1, &s_blocks, 1, &row}, "block table too short"};
    cases[3] = (bad_case){{3, tok, 1, &s_blockid, 1, &row}, "block id out of range"};
    cases[4] = (bad_case){{3, tok, 2, s_two, 1, &row}, "two sequences share a slot"};
    cases[5] = (bad_case){{2, tok, 1, &s, 1, &row}, "rows do not add up"};
    cases[6] = (bad_case){{3, tok, 1, &s, 1, &badrow}, "output row out of range"};
    cases[7] = (bad_case){{201, tok, 1, &s, 1, &row}, "more tokens than max_tokens"};
    for (int i = 0; i < 8; i++) {
        eng_status st = qn_model_forward(r.m, r.c, &cases[i].b, lg);
        ck_assert_msg(st == ENG_ERR_INVALID, "%s: got %s", cases[i].why, eng_status_str(st));
        ck_assert_msg(strncmp(eng_err_last(), "batch:", 6) == 0, "%s: detail '%s'", cases[i].why, eng_err_last());
    }
    /* an empty batch is fine */
    qn_batch empty = {0, NULL, 0, NULL, 0, NULL};
    ck_assert_int_eq(qn_model_forward(r.m, r.c, &empty, lg), ENG_OK);
    free(lg);
    rig_close(&r);
}
END_TEST

/* A checkpoint missing a tensor, one with a wrong shape, a missing folder: clear errors. */
START_TEST(test_load_errors)
{
    char src[1024], tmp[] = "/tmp/qnext_fwd_XXXXXX", path[1200];
    fixture(src, sizeof src, "c_vocab");
    ck_assert_ptr_nonnull(mkdtemp(tmp));
    eng_backend *be;
    ck_assert_int_eq(eng_backend_cpu_create(NULL, &be), ENG_OK);
    qn_model *m = (qn_model *)1;
    char nowhere[1100];
    snprintf(nowhere, sizeof nowhere, "%s/none", tmp);
    ck_assert_int_ne(qn_model_load(nowhere, be, NULL, &m), ENG_OK);
    ck_assert_ptr_null(m);
    /* config.json copied, a checkpoint holding only a wrongly shaped embedding */
    char *cfg;
    size_t len;
    snprintf(path, sizeof path, "%s/config.json", src);
    ck_assert_int_eq(eng_file_read(path, 1 << 20, &cfg, &len), ENG_OK);
    snprintf(path, sizeof path, "%s/config.json", tmp);
    FILE *f = fopen(path, "wb");
    ck_assert_uint_eq(fwrite(cfg, 1, len, f), len);
    fclose(f);
    eng_free(cfg);
    snprintf(path, sizeof path, "%s/model.safetensors", tmp);
    eng_st_writer *w;
    int64_t shape[2] = {30007, 32};
    ck_assert_int_eq(eng_st_writer_create(path, &w), ENG_OK);
    ck_assert_int_eq(eng_st_writer_add(w, "model.embed_tokens.weight", ENG_DTYPE_BF16, 2, shape), ENG_OK);
    ck_assert_int_eq(eng_st_writer_begin_data(w, true), ENG_OK);
    ck_assert_int_eq(eng_st_writer_finish(w), ENG_OK);
    eng_status st = qn_model_load(tmp, be, NULL, &m);
    ck_assert_int_eq(st, ENG_ERR_FORMAT);
    ck_assert_msg(strstr(eng_err_last(), "model.embed_tokens.weight") && strstr(eng_err_last(), "model.safetensors"),
                  "detail: %s", eng_err_last());
    unlink(path);
    snprintf(path, sizeof path, "%s/config.json", tmp);
    unlink(path);
    rmdir(tmp);
    eng_backend_destroy(be);
}
END_TEST

START_TEST(test_load_alloc_failures)
{
    char dir[1024];
    fixture(dir, sizeof dir, "c_vocab");
    eng_backend *be;
    ck_assert_int_eq(eng_backend_cpu_create(NULL, &be), ENG_OK);
    long before = eng_alloc_count();
    qn_model *m;
    qn_model_params mp = {.max_tokens = 8, .quiet = true};
    ck_assert_int_eq(qn_model_load(dir, be, &mp, &m), ENG_OK);
    long n = eng_alloc_count() - before;
    qn_model_destroy(m);
    int failures = 0;
    for (long k = 0; k < n; k += 1 + n / 150) {
        eng_alloc_fail_after(k);
        eng_status st = qn_model_load(dir, be, &mp, &m);
        eng_alloc_fail_after(-1);
        if (st == ENG_OK) {
            qn_model_destroy(m);
            continue;
        }
        failures++;
        ck_assert_ptr_null(m);
        ck_assert_msg(st == ENG_ERR_NOMEM, "allocation %ld failing gave %s: %s", k, eng_status_str(st), eng_err_last());
    }
    ck_assert_int_gt(failures, 0);
    eng_backend_destroy(be);
}
END_TEST

static Suite *forward_suite(void)
{
    Suite *s = suite_create("forward");
    TCase *tc = tcase_create("batch");
    tcase_set_timeout(tc, 900);
    tcase_add_test(tc, test_batch_invariance);
    tcase_add_test(tc, test_aligned_chunks_bitwise);
    tcase_add_test(tc, test_slot_fork_save_restore);
    tcase_add_test(tc, test_pos0_ignores_stale_slot);
    suite_add_tcase(s, tc);
    TCase *te = tcase_create("errors");
    tcase_set_timeout(te, 900);
    tcase_add_test(te, test_invalid_batches);
    tcase_add_test(te, test_load_errors);
    tcase_add_test(te, test_load_alloc_failures);
    suite_add_tcase(s, te);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(forward_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
