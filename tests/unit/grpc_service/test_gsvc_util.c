/* tests/unit/grpc_service/test_gsvc_util.c - grpc_service/util.c: UTF-8 checks and repair,
 * the growable buffer, the allocation fault injector. */
#include "util.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

/* ==== UTF-8 validation ======================================================================== */

START_TEST(test_utf8_valid_cases)
{
    static const struct {
        const char *s;
        size_t n;
        bool ok;
    } cases[] = {
        {"", 0, true},
        {"plain ascii text, longer than eight bytes", 41, true},
        {"\xC3\xA9", 2, true},                  /* é */
        {"\xE2\x82\xAC", 3, true},              /* € */
        {"\xF0\x9F\x98\x80", 4, true},          /* 😀 */
        {"\xF4\x8F\xBF\xBF", 4, true},          /* U+10FFFF */
        {"\xEF\xBF\xBD", 3, true},              /* U+FFFD */
        {"\x00", 1, true},                      /* NUL is UTF-8 (the wire check rejects it separately) */
        {"\x80", 1, false},                     /* lone continuation */
        {"\xC0\x80", 2, false},                 /* overlong NUL */
        {"\xC1\xBF", 2, false},                 /* overlong */
        {"\xE0\x80\xAF", 3, false},             /* overlong '/' */
        {"\xED\xA0\x80", 3, false},             /* surrogate U+D800 */
        {"\xF4\x90\x80\x80", 4, false},         /* U+110000 */
        {"\xF5\x80\x80\x80", 4, false},
        {"\xC3", 1, false},                     /* truncated */
        {"\xE2\x82", 2, false},
        {"abcdefgh\xC3(", 10, false},           /* bad byte right after a fast ASCII word */
        {"abcdefghijklmnop\xF0\x9F\x98", 19, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        ck_assert_msg(gsvc_utf8_valid(cases[i].s, cases[i].n) == cases[i].ok, "case %zu", i);
}
END_TEST

START_TEST(test_utf8_sanitize)
{
    gsvc_buf b;
    gsvc_buf_init(&b);
    /* one U+FFFD per bad byte, NUL too; good sequences untouched */
    ck_assert(gsvc_utf8_append_sanitized(&b, "a\xC3(b\xED\xA0\x80\xC3\xA9\x00z", 11));
    ck_assert_str_eq(gsvc_buf_str(&b), "a\xEF\xBF\xBD(b\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xC3\xA9\xEF\xBF\xBDz");
    ck_assert(gsvc_utf8_valid(b.data, b.len));
    gsvc_buf_reset(&b);
    ck_assert(gsvc_utf8_append_sanitized(&b, "clean \xE2\x82\xAC", 9));
    ck_assert_str_eq(gsvc_buf_str(&b), "clean \xE2\x82\xAC");
    gsvc_buf_free(&b);
}
END_TEST

/* ==== buffer and allocator ==================================================================== */

START_TEST(test_buf_grow_and_reset)
{
    gsvc_buf b;
    gsvc_buf_init(&b);
    ck_assert_str_eq(gsvc_buf_str(&b), "");
    for (int i = 0; i < 1000; i++) ck_assert(gsvc_buf_puts(&b, "xyz"));
    ck_assert_uint_eq(b.len, 3000);
    ck_assert_uint_eq(strlen(b.data), 3000);
    size_t cap = b.cap;
    gsvc_buf_reset(&b);
    ck_assert_uint_eq(b.len, 0);
    ck_assert_uint_eq(b.cap, cap);
    ck_assert_str_eq(gsvc_buf_str(&b), "");
    gsvc_buf_free(&b);
    gsvc_buf_free(NULL);
}
END_TEST

START_TEST(test_buf_oom_keeps_content)
{
    gsvc_buf b;
    gsvc_buf_init(&b);
    ck_assert(gsvc_buf_puts(&b, "keep"));
    gsvc_alloc_fail_after(0);
    char big[100];
    memset(big, 'q', sizeof big);
    ck_assert(!gsvc_buf_append(&b, big, sizeof big));
    gsvc_alloc_fail_after(-1);
    ck_assert_str_eq(gsvc_buf_str(&b), "keep");
    gsvc_buf_free(&b);
}
END_TEST

START_TEST(test_fail_after_counts)
{
    gsvc_alloc_fail_after(2);
    void *a = gsvc_malloc(8), *b = gsvc_malloc(8), *c = gsvc_malloc(8), *d = gsvc_calloc(1, 8);
    gsvc_alloc_fail_after(-1);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    ck_assert_ptr_null(c);
    ck_assert_ptr_null(d);
    void *e = gsvc_malloc(8);
    ck_assert_ptr_nonnull(e);
    gsvc_free(a);
    gsvc_free(b);
    gsvc_free(e);
    ck_assert_ptr_null(gsvc_strdup(NULL));
    char *s = gsvc_strndup("abcdef", 3);
    ck_assert_str_eq(s, "abc");
    gsvc_free(s);
}
END_TEST

static Suite *util_suite(void)
{
    Suite *s = suite_create("gsvc_util");
    TCase *tc = tcase_create("utf8");
    tcase_add_test(tc, test_utf8_valid_cases);
    tcase_add_test(tc, test_utf8_sanitize);
    suite_add_tcase(s, tc);
    tc = tcase_create("memory");
    tcase_add_test(tc, test_buf_grow_and_reset);
    tcase_add_test(tc, test_buf_oom_keeps_content);
    tcase_add_test(tc, test_fail_after_counts);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(util_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
