/* tests/unit/engine/test_stop.c - sample/stop: stop strings across every token split, overlapping
 * stops, stops at the start, multibyte stops, minimal hold-back, EOS / stop ids / ignore_eos,
 * max_tokens / min_tokens, external finish, validation, allocation failures, long stops.
 *
 * The reference is a brute-force scan in this file: the output is the text before the stop that
 * completes first (earliest end, then longest), and the held-back text after each token is the
 * longest suffix that is a proper prefix of some stop. It shares no code with the KMP matcher.
 */
#include <check.h>

#include "core/core.h"
#include "sample/stop.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ==== reference =============================================================================== */

/* Index of the first-completing stop in text[0, n) (earliest end, then longest), -1 if none.
 * Only matches ending after byte `from` count. */
static int ref_match(const char *text, size_t n, size_t from, const char *const *stops, size_t n_stop,
                     size_t *start)
{
    for (size_t end = from + 1; end <= n; end++) {
        int best = -1;
        size_t best_len = 0;
        for (size_t k = 0; k < n_stop; k++) {
            size_t L = strlen(stops[k]);
            if (L <= end && L > best_len && memcmp(text + end - L, stops[k], L) == 0)
                best = (int)k, best_len = L;
        }
        if (best >= 0) {
            *start = end - best_len;
            return best;
        }
    }
    return -1;
}

static size_t ref_held(const char *text, size_t n, const char *const *stops, size_t n_stop)
{
    size_t best = 0;
    for (size_t k = 0; k < n_stop; k++) {
        size_t L = strlen(stops[k]);
        for (size_t m = 1; m < L && m <= n; m++)
            if (memcmp(text + n - m, stops[k], m) == 0 && m > best) best = m;
    }
    return best;
}

/* ==== helpers ================================================================================= */

static eng_stop *make(const char *const *stops, size_t n_stop, int max_tokens, int min_tokens)
{
    eng_stop_config cfg = {0};
    cfg.stop = stops;
    cfg.n_stop = n_stop;
    cfg.max_tokens = max_tokens;
    cfg.min_tokens = min_tokens;
    eng_stop *st = NULL;
    ck_assert_msg(eng_stop_create(&cfg, &st) == ENG_OK, "create: %s", eng_err_last());
    return st;
}

/* Feeds text cut at the given byte offsets (cuts[0, n_cuts), ascending, inside (0, len)) as
 * tokens 1000, 1001, ...; checks the hold-back invariant after each token against the reference;
 * returns the concatenated emitted text (static buffer) and the final result. */
static const char *feed_split(eng_stop *st, const char *text, const size_t *cuts, size_t n_cuts,
                              const char *const *stops, size_t n_stop, eng_stop_result *last)
{
    static char out[4096];
    size_t out_len = 0, len = strlen(text), prev = 0;
    memset(last, 0, sizeof *last);
    for (size_t i = 0; i <= n_cuts; i++) {
        size_t cut = i < n_cuts ? cuts[i] : len;
        eng_stop_result r;
        ck_assert_int_eq(eng_stop_feed(st, 1000 + (int32_t)i, text + prev, cut - prev, &r), ENG_OK);
        ck_assert_uint_eq(strlen(r.text), r.len);
        memcpy(out + out_len, r.text, r.len);
        out_len += r.len;
        *last = r;
        if (r.finished) break;
        /* emitted + held == text so far, and held is the minimal hold-back */
        size_t held = eng_stop_n_held(st);
        ck_assert_uint_eq(out_len + held, cut);
        ck_assert_uint_eq(held, ref_held(text, cut, stops, n_stop));
        prev = cut;
    }
    out[out_len] = '\0';
    return out;
}

/* Every way of cutting `text` into tokens at the allowed boundaries (all bytes, or UTF-8
 * character starts only) gives the reference output. */
static void check_all_splits(const char *text, const char *const *stops, size_t n_stop, bool utf8)
{
    size_t len = strlen(text);
    size_t bounds[32], nb = 0;
    for (size_t i = 1; i < len; i++)
        if (!utf8 || ((unsigned char)text[i] & 0xC0) != 0x80) bounds[nb++] = i;
    ck_assert_uint_le(nb, 16);

    size_t start = 0;
    int k = ref_match(text, len, 0, stops, n_stop, &start);
    char want[256];
    size_t want_len = k >= 0 ? start : len;
    memcpy(want, text, want_len);
    want[want_len] = '\0';

    for (unsigned mask = 0; mask < (1u << nb); mask++) {
        size_t cuts[32], nc = 0;
        for (size_t b = 0; b < nb; b++)
            if (mask & (1u << b)) cuts[nc++] = bounds[b];
        eng_stop *st = make(stops, n_stop, -1, 0);
        eng_stop_result r;
        const char *got = feed_split(st, text, cuts, nc, stops, n_stop, &r);
        ck_assert_msg(strcmp(got, want) == 0, "text '%s' mask %x: got '%s' want '%s'", text, mask, got, want);
        if (k >= 0) {
            ck_assert(r.finished);
            ck_assert_int_eq(r.reason, ENG_FINISH_STOP);
            ck_assert_str_eq(r.matched_stop, stops[k]);
            ck_assert_int_eq(r.matched_token, -1);
        } else {
            ck_assert(!r.finished);
        }
        eng_stop_destroy(st);
    }
}

/* ==== stop strings ============================================================================ */

START_TEST(test_split_everywhere)
{
    const char *s1[] = {"o w"};
    check_all_splits("hello world!", s1, 1, false);
    const char *s2[] = {"STOP"};
    check_all_splits("STOPrest", s2, 1, false);   /* stop at the very start */
    check_all_splits("xxSTOSTOPy", s2, 1, false); /* a false start right before the real one */
    const char *s3[] = {"aab"};
    check_all_splits("aaaaab-tail", s3, 1, false); /* needs the KMP fallback */
    const char *s4[] = {"abab", "bx"};
    check_all_splits("ababax-ababx", s4, 2, false);
    const char *s5[] = {"zzz"};
    check_all_splits("no stop in here", s5, 1, false); /* nothing held: streams unchanged */
    const char *s6[] = {"\n\n", "User:"};
    check_all_splits("Hi\nUser\nUser:", s6, 2, false);
}
END_TEST

START_TEST(test_overlapping_stops)
{
    /* both complete on the same byte: the longer (earlier start) wins */
    const char *a[] = {"bc", "abc"};
    check_all_splits("xabcd", a, 2, false);
    /* "ab" completes before "bcd" could: earliest end wins, whatever the list order */
    const char *b[] = {"bcd", "ab"};
    check_all_splits("zabcd", b, 2, false);
    const char *c[] = {"ab", "bcd"};
    check_all_splits("zabcd", c, 2, false);
    /* one stop is a prefix of another */
    const char *d[] = {"ab", "abc"};
    check_all_splits("-abc", d, 2, false);

    /* explicit expectations for the cases above (independent of the reference) */
    eng_stop *st = make(a, 2, -1, 0);
    eng_stop_result r;
    ck_assert_int_eq(eng_stop_feed(st, 1, "xabcd", 5, &r), ENG_OK);
    ck_assert(r.finished);
    ck_assert_str_eq(r.text, "x");
    ck_assert_str_eq(r.matched_stop, "abc");
    eng_stop_destroy(st);
    st = make(b, 2, -1, 0);
    ck_assert_int_eq(eng_stop_feed(st, 1, "zabcd", 5, &r), ENG_OK);
    ck_assert_str_eq(r.text, "z");
    ck_assert_str_eq(r.matched_stop, "ab");
    eng_stop_destroy(st);
}
END_TEST

START_TEST(test_multibyte_stops)
{
    const char *s1[] = {"日本"};
    check_all_splits("abc日本語", s1, 1, true);
    const char *s2[] = {"é!"};
    check_all_splits("café! ok", s2, 1, true);
    const char *s3[] = {"🙂", "ü"};
    check_all_splits("x🙂yü", s3, 2, true);
    /* a stop that shares a lead byte with the text but not the continuation: no false match */
    const char *s4[] = {"é"};              /* C3 A9 */
    check_all_splits("ãè é", s4, 1, true); /* ã = C3 A3, è = C3 A8 */

    /* emitted pieces are always complete UTF-8: the held part starts at a character */
    eng_stop *st = make(s1, 1, -1, 0);
    eng_stop_result r;
    ck_assert_int_eq(eng_stop_feed(st, 1, "x日", strlen("x日"), &r), ENG_OK);
    ck_assert_str_eq(r.text, "x");
    ck_assert_uint_eq(eng_stop_n_held(st), strlen("日"));
    ck_assert_int_eq(eng_stop_feed(st, 2, "語", strlen("語"), &r), ENG_OK);
    ck_assert_str_eq(r.text, "日語");
    eng_stop_destroy(st);
}
END_TEST

START_TEST(test_no_delay_without_prefix)
{
    const char *s[] = {"###"};
    eng_stop *st = make(s, 1, -1, 0);
    eng_stop_result r;
    ck_assert_int_eq(eng_stop_feed(st, 1, "Hello", 5, &r), ENG_OK);
    ck_assert_str_eq(r.text, "Hello");
    ck_assert_int_eq(eng_stop_feed(st, 2, " #", 2, &r), ENG_OK);
    ck_assert_str_eq(r.text, " ");
    ck_assert_int_eq(eng_stop_feed(st, 3, "#x", 2, &r), ENG_OK); /* "##x": no longer a prefix */
    ck_assert_str_eq(r.text, "##x");
    ck_assert_int_eq(eng_stop_feed(st, 4, "", 0, &r), ENG_OK); /* empty delta (partial UTF-8 held upstream) */
    ck_assert_str_eq(r.text, "");
    ck_assert(!r.finished);
    ck_assert_int_eq(eng_stop_n_tokens(st), 4);
    eng_stop_destroy(st);
}
END_TEST

/* ==== token stops and limits ================================================================== */

START_TEST(test_eos_and_stop_ids)
{
    const char *s[] = {"b!"};
    int32_t eos[2] = {0, 2};
    int32_t stop_ids[1] = {7};
    eng_stop_config cfg = {.stop = s,
                           .n_stop = 1,
                           .eos_ids = eos,
                           .n_eos = 2,
                           .stop_token_ids = stop_ids,
                           .n_stop_token_ids = 1,
                           .max_tokens = -1};
    eng_stop *st;
    eng_stop_result r;

    /* second EOS id; the held "b" is flushed, the EOS text is not emitted */
    ck_assert_int_eq(eng_stop_create(&cfg, &st), ENG_OK);
    ck_assert_int_eq(eng_stop_feed(st, 10, "ab", 2, &r), ENG_OK);
    ck_assert_str_eq(r.text, "a");
    ck_assert_int_eq(eng_stop_feed(st, 2, "</s>", 4, &r), ENG_OK);
    ck_assert(r.finished);
    ck_assert_int_eq(r.reason, ENG_FINISH_STOP);
    ck_assert_str_eq(r.text, "b");
    ck_assert_ptr_null(r.matched_stop);
    ck_assert_int_eq(r.matched_token, -1);
    ck_assert_int_eq(eng_stop_feed(st, 11, "x", 1, &r), ENG_ERR_INVALID); /* already finished */
    eng_stop_destroy(st);

    /* stop token id: reported */
    ck_assert_int_eq(eng_stop_create(&cfg, &st), ENG_OK);
    ck_assert_int_eq(eng_stop_feed(st, 7, "<|im_end|>", 10, &r), ENG_OK);
    ck_assert(r.finished);
    ck_assert_int_eq(r.matched_token, 7);
    ck_assert_str_eq(r.text, "");
    eng_stop_destroy(st);

    /* ignore_eos: EOS is ordinary text, stop ids still work */
    cfg.ignore_eos = true;
    ck_assert_int_eq(eng_stop_create(&cfg, &st), ENG_OK);
    ck_assert_int_eq(eng_stop_feed(st, 0, "<e>", 3, &r), ENG_OK);
    ck_assert(!r.finished);
    ck_assert_str_eq(r.text, "<e>");
    ck_assert_int_eq(eng_stop_feed(st, 7, "", 0, &r), ENG_OK);
    ck_assert(r.finished);
    eng_stop_destroy(st);
}
END_TEST

START_TEST(test_max_tokens)
{
    const char *s[] = {"END"};
    int32_t eos[1] = {0};
    eng_stop_config cfg = {.stop = s, .n_stop = 1, .eos_ids = eos, .n_eos = 1, .max_tokens = 3};
    eng_stop *st;
    eng_stop_result r;

    ck_assert_int_eq(eng_stop_create(&cfg, &st), ENG_OK);
    ck_assert_int_eq(eng_stop_feed(st, 1, "a", 1, &r), ENG_OK);
    ck_assert_int_eq(eng_stop_feed(st, 1, "b", 1, &r), ENG_OK);
    ck_assert(!r.finished);
    ck_assert_int_eq(eng_stop_feed(st, 1, "cEN", 3, &r), ENG_OK); /* "EN" would be held, but length flushes */
    ck_assert(r.finished);
    ck_assert_int_eq(r.reason, ENG_FINISH_LENGTH);
    ck_assert_str_eq(r.text, "cEN");
    eng_stop_destroy(st);

    /* a stop string on the last allowed token wins over length */
    ck_assert_int_eq(eng_stop_create(&cfg, &st), ENG_OK);
    ck_assert_int_eq(eng_stop_feed(st, 1, "a", 1, &r), ENG_OK);
    ck_assert_int_eq(eng_stop_feed(st, 1, "EN", 2, &r), ENG_OK);
    ck_assert_int_eq(eng_stop_feed(st, 1, "Dx", 2, &r), ENG_OK);
    ck_assert_int_eq(r.reason, ENG_FINISH_STOP);
    ck_assert_str_eq(r.text, ""); /* "a" went out with token 1, "EN" was held */
    ck_assert_str_eq(r.matched_stop, "END");
    eng_stop_destroy(st);

    /* and so does EOS */
    ck_assert_int_eq(eng_stop_create(&cfg, &st), ENG_OK);
    ck_assert_int_eq(eng_stop_feed(st, 1, "a", 1, &r), ENG_OK);
    ck_assert_int_eq(eng_stop_feed(st, 1, "b", 1, &r), ENG_OK);
    ck_assert_int_eq(eng_stop_feed(st, 0, "", 0, &r), ENG_OK);
    ck_assert_int_eq(r.reason, ENG_FINISH_STOP);
    eng_stop_destroy(st);

    /* max_tokens 1 */
    cfg.max_tokens = 1;
    ck_assert_int_eq(eng_stop_create(&cfg, &st), ENG_OK);
    ck_assert_int_eq(eng_stop_feed(st, 1, "E", 1, &r), ENG_OK);
    ck_assert_int_eq(r.reason, ENG_FINISH_LENGTH);
    ck_assert_str_eq(r.text, "E");
    eng_stop_destroy(st);
}
END_TEST

START_TEST(test_min_tokens)
{
    const char *s[] = {"xy"};
    int32_t eos[1] = {0}, stop_ids[1] = {5};
    eng_stop_config cfg = {.stop = s,
                           .n_stop = 1,
                           .eos_ids = eos,
                           .n_eos = 1,
                           .stop_token_ids = stop_ids,
                           .n_stop_token_ids = 1,
                           .max_tokens = 10,
                           .min_tokens = 3};
    eng_stop *st;
    eng_stop_result r;
    const int32_t *sup;

    ck_assert_int_eq(eng_stop_create(&cfg, &st), ENG_OK);
    ck_assert_uint_eq(eng_stop_suppressed(st, &sup), 2); /* EOS + stop id masked for tokens 1..3 */
    ck_assert_int_eq(sup[0], 0);
    ck_assert_int_eq(sup[1], 5);
    /* token 1: EOS ignored, its text kept; a complete stop string inside min text is ignored */
    ck_assert_int_eq(eng_stop_feed(st, 0, "xy", 2, &r), ENG_OK);
    ck_assert(!r.finished);
    ck_assert_str_eq(r.text, "xy");
    /* token 2: stop id ignored; "x" is held (it may start a stop that ends later) */
    ck_assert_int_eq(eng_stop_feed(st, 5, "-x", 2, &r), ENG_OK);
    ck_assert(!r.finished);
    ck_assert_str_eq(r.text, "-");
    ck_assert_uint_eq(eng_stop_suppressed(st, &sup), 2);
    /* token 3 (p == min_tokens): its text is still min text: "xy" completed here is ignored,
     * the new "x" is held */
    ck_assert_int_eq(eng_stop_feed(st, 9, "yx", 2, &r), ENG_OK);
    ck_assert(!r.finished);
    ck_assert_str_eq(r.text, "xy");
    ck_assert_uint_eq(eng_stop_suppressed(st, &sup), 0);
    ck_assert_ptr_null(sup);
    /* token 4: a stop that started in min text and ends now matches */
    ck_assert_int_eq(eng_stop_feed(st, 9, "y", 1, &r), ENG_OK);
    ck_assert(r.finished);
    ck_assert_str_eq(r.text, "");
    ck_assert_str_eq(r.matched_stop, "xy");
    eng_stop_destroy(st);

    /* EOS exactly at p == min_tokens stops (vLLM check_stop: num_output_tokens < min_tokens) */
    ck_assert_int_eq(eng_stop_create(&cfg, &st), ENG_OK);
    ck_assert_int_eq(eng_stop_feed(st, 1, "a", 1, &r), ENG_OK);
    ck_assert_int_eq(eng_stop_feed(st, 1, "b", 1, &r), ENG_OK);
    ck_assert_int_eq(eng_stop_feed(st, 0, "", 0, &r), ENG_OK);
    ck_assert(r.finished);
    ck_assert_int_eq(r.reason, ENG_FINISH_STOP);
    eng_stop_destroy(st);

    /* ignore_eos: only stop ids are suppressed */
    cfg.ignore_eos = true;
    ck_assert_int_eq(eng_stop_create(&cfg, &st), ENG_OK);
    ck_assert_uint_eq(eng_stop_suppressed(st, &sup), 1);
    ck_assert_int_eq(sup[0], 5);
    eng_stop_destroy(st);
}
END_TEST

START_TEST(test_external_finish)
{
    const char *s[] = {"STOP"};
    eng_stop *st = make(s, 1, -1, 0);
    eng_stop_result r;
    ck_assert_int_eq(eng_stop_feed(st, 1, "abST", 4, &r), ENG_OK);
    ck_assert_str_eq(r.text, "ab");
    ck_assert_int_eq(eng_stop_finish(st, ENG_FINISH_CANCELLED, &r), ENG_OK);
    ck_assert(r.finished);
    ck_assert_int_eq(r.reason, ENG_FINISH_CANCELLED);
    ck_assert_str_eq(r.text, "ST");
    ck_assert(eng_stop_is_finished(st));
    ck_assert_int_eq(eng_stop_finish(st, ENG_FINISH_CANCELLED, &r), ENG_ERR_INVALID);
    eng_stop_destroy(st);
    eng_stop_destroy(NULL);
}
END_TEST

START_TEST(test_validation)
{
    eng_stop *st = (eng_stop *)1;
    eng_stop_config cfg = {.max_tokens = -1};
    const char *empty[] = {""};
    cfg.stop = empty;
    cfg.n_stop = 1;
    ck_assert_int_eq(eng_stop_create(&cfg, &st), ENG_ERR_INVALID);
    ck_assert_ptr_null(st);
    const char *bad_utf8[] = {"ok", "\xC3("};
    cfg.stop = bad_utf8;
    cfg.n_stop = 2;
    ck_assert_int_eq(eng_stop_create(&cfg, &st), ENG_ERR_INVALID);
    const char *overlong[] = {"\xC0\xAF"};
    cfg.stop = overlong;
    cfg.n_stop = 1;
    ck_assert_int_eq(eng_stop_create(&cfg, &st), ENG_ERR_INVALID);
    const char *surrogate[] = {"\xED\xA0\x80"};
    cfg.stop = surrogate;
    ck_assert_int_eq(eng_stop_create(&cfg, &st), ENG_ERR_INVALID);
    const char *nulls[] = {NULL};
    cfg.stop = nulls;
    ck_assert_int_eq(eng_stop_create(&cfg, &st), ENG_ERR_INVALID);
    cfg.stop = NULL;
    ck_assert_int_eq(eng_stop_create(&cfg, &st), ENG_ERR_INVALID);

    const char *many[ENG_STOP_MAX_STRINGS + 1];
    for (int i = 0; i <= ENG_STOP_MAX_STRINGS; i++) many[i] = "x";
    cfg.stop = many;
    cfg.n_stop = ENG_STOP_MAX_STRINGS + 1;
    ck_assert_int_eq(eng_stop_create(&cfg, &st), ENG_ERR_INVALID);
    cfg.n_stop = ENG_STOP_MAX_STRINGS;
    ck_assert_int_eq(eng_stop_create(&cfg, &st), ENG_OK);
    eng_stop_destroy(st);

    char *longs = malloc(ENG_STOP_MAX_LEN + 2);
    memset(longs, 'a', ENG_STOP_MAX_LEN + 1);
    longs[ENG_STOP_MAX_LEN + 1] = '\0';
    const char *lp[] = {longs};
    cfg.stop = lp;
    cfg.n_stop = 1;
    ck_assert_int_eq(eng_stop_create(&cfg, &st), ENG_ERR_INVALID);
    free(longs);

    cfg.n_stop = 0;
    cfg.max_tokens = 0;
    ck_assert_int_eq(eng_stop_create(&cfg, &st), ENG_ERR_INVALID);
    cfg.max_tokens = 3;
    cfg.min_tokens = 4;
    ck_assert_int_eq(eng_stop_create(&cfg, &st), ENG_ERR_INVALID);
    cfg.min_tokens = -1;
    ck_assert_int_eq(eng_stop_create(&cfg, &st), ENG_ERR_INVALID);
    cfg.min_tokens = 0;
    cfg.n_eos = 1;
    ck_assert_int_eq(eng_stop_create(&cfg, &st), ENG_ERR_INVALID);
    cfg.n_eos = 0;
    ck_assert_int_eq(eng_stop_create(&cfg, &st), ENG_OK);
    eng_stop_result r;
    ck_assert_int_eq(eng_stop_feed(st, 1, NULL, 3, &r), ENG_ERR_INVALID);
    eng_stop_destroy(st);
}
END_TEST

/* ==== robustness ============================================================================== */

START_TEST(test_alloc_failures)
{
    const char *s[] = {"abc", "xyz!"};
    int32_t eos[1] = {0};
    eng_stop_config cfg = {
        .stop = s, .n_stop = 2, .eos_ids = eos, .n_eos = 1, .max_tokens = -1, .min_tokens = 1};
    /* create: every allocation failing in turn gives NOMEM and no leak (ASan) */
    bool created = false;
    for (long k = 0; k < 40 && !created; k++) {
        eng_stop *st = NULL;
        eng_alloc_fail_after(k);
        eng_status rc = eng_stop_create(&cfg, &st);
        eng_alloc_fail_after(-1);
        if (rc == ENG_OK) {
            created = true;
            eng_stop_destroy(st);
        } else {
            ck_assert_int_eq(rc, ENG_ERR_NOMEM);
            ck_assert_ptr_null(st);
        }
    }
    ck_assert(created);

    /* feed: a failed feed changes nothing; retrying gives the same output as a clean run */
    char big[300];
    memset(big, 'q', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    eng_stop *st;
    ck_assert_int_eq(eng_stop_create(&cfg, &st), ENG_OK);
    eng_stop_result r;
    ck_assert_int_eq(eng_stop_feed(st, 1, "xy", 2, &r), ENG_OK);
    eng_alloc_fail_after(0);
    eng_status rc = eng_stop_feed(st, 2, big, strlen(big), &r); /* needs a bigger buffer */
    eng_alloc_fail_after(-1);
    ck_assert_int_eq(rc, ENG_ERR_NOMEM);
    ck_assert_int_eq(eng_stop_n_tokens(st), 1);
    ck_assert_uint_eq(eng_stop_n_held(st), 2);
    ck_assert_int_eq(eng_stop_feed(st, 2, big, strlen(big), &r), ENG_OK);
    ck_assert_uint_eq(r.len, 2 + strlen(big));
    ck_assert(r.text[0] == 'x' && r.text[1] == 'y');
    eng_stop_destroy(st);
}
END_TEST

START_TEST(test_long_stop_is_linear)
{
    /* 4096-byte stop "aaa...ab" against 1 MiB of 'a': quadratic matching would take minutes */
    char *stop = malloc(ENG_STOP_MAX_LEN + 1);
    memset(stop, 'a', ENG_STOP_MAX_LEN - 1);
    stop[ENG_STOP_MAX_LEN - 1] = 'b';
    stop[ENG_STOP_MAX_LEN] = '\0';
    const char *s[] = {stop};
    eng_stop *st = make(s, 1, -1, 0);
    char chunk[1024];
    memset(chunk, 'a', sizeof chunk);
    eng_stop_result r;
    size_t emitted = 0;
    uint64_t t0 = eng_now_ns();
    for (int i = 0; i < 1024; i++) {
        ck_assert_int_eq(eng_stop_feed(st, 1, chunk, sizeof chunk, &r), ENG_OK);
        emitted += r.len;
        ck_assert_uint_eq(eng_stop_n_held(st), ENG_STOP_MAX_LEN - 1 < (i + 1) * 1024
                                                   ? ENG_STOP_MAX_LEN - 1
                                                   : (size_t)(i + 1) * 1024);
    }
    ck_assert_int_eq(eng_stop_feed(st, 2, "b", 1, &r), ENG_OK);
    ck_assert(r.finished);
    emitted += r.len;
    ck_assert_uint_eq(emitted, 1024 * 1024 - (ENG_STOP_MAX_LEN - 1));
    double s_el = (double)(eng_now_ns() - t0) / 1e9;
    printf("stop: 1 MiB against a 4096-byte stop in %.3f s\n", s_el);
    ck_assert(s_el < 5.0);
    eng_stop_destroy(st);
    free(stop);
}
END_TEST

/* ==== registry ================================================================================ */

static Suite *stop_suite(void)
{
    Suite *s = suite_create("stop");
    TCase *tc = tcase_create("strings");
    tcase_add_test(tc, test_split_everywhere);
    tcase_add_test(tc, test_overlapping_stops);
    tcase_add_test(tc, test_multibyte_stops);
    tcase_add_test(tc, test_no_delay_without_prefix);
    suite_add_tcase(s, tc);

    tc = tcase_create("tokens");
    tcase_add_test(tc, test_eos_and_stop_ids);
    tcase_add_test(tc, test_max_tokens);
    tcase_add_test(tc, test_min_tokens);
    tcase_add_test(tc, test_external_finish);
    suite_add_tcase(s, tc);

    tc = tcase_create("robustness");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_validation);
    tcase_add_test(tc, test_alloc_failures);
    tcase_add_test(tc, test_long_stop_is_linear);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(stop_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
