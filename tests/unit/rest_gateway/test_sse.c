/* tests/unit/rest_gateway/test_sse.c - SSE framing: events, [DONE], comments. */
#include <check.h>

#include "core/core.h"
#include "sse.h"

#include <string.h>

START_TEST(test_event)
{
    eng_buf b;
    eng_buf_init(&b);
    gw_sse_event(&b, "{\"a\":1}", 7);
    ck_assert_str_eq(eng_buf_cstr(&b), "data: {\"a\":1}\n\n");
    eng_buf_free(&b);
}
END_TEST

START_TEST(test_event_multiline)
{
    eng_buf b;
    eng_buf_init(&b);
    gw_sse_event(&b, "x\ny\n", 4);
    ck_assert_str_eq(eng_buf_cstr(&b), "data: x\ndata: y\ndata: \n\n");
    eng_buf_free(&b);
}
END_TEST

START_TEST(test_done_and_comment)
{
    eng_buf b;
    eng_buf_init(&b);
    gw_sse_comment(&b, "ping");
    gw_sse_done(&b);
    ck_assert_str_eq(eng_buf_cstr(&b), ": ping\n\ndata: [DONE]\n\n");
    eng_buf_free(&b);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("sse");
    TCase *tc = tcase_create("framing");
    tcase_add_test(tc, test_event);
    tcase_add_test(tc, test_event_multiline);
    tcase_add_test(tc, test_done_and_comment);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
