/* tests/unit/rest_gateway/test_config.c - qnext-gateway flags and QNEXT_* environment variables. */
#include <check.h>

#include "config.h"
#include "core/core.h"

#include <stdlib.h>
#include <string.h>

static gw_config c;

static void teardown(void)
{
    gw_config_free(&c);
    unsetenv("QNEXT_ENGINES");
    unsetenv("QNEXT_PORT");
    unsetenv("QNEXT_METRICS_REQUIRE_KEY");
}

static eng_status parse(int argc, char **argv)
{
    bool exit_now;
    FILE *devnull = fopen("/dev/null", "w");
    eng_status st = gw_config_parse(&c, argc, argv, devnull, &exit_now);
    fclose(devnull);
    return st;
}

START_TEST(test_defaults_and_flags)
{
    char *argv[] = {"gw", "--engine", "a:1", "--engine=b:2", "--port", "0", "--threads", "3",
                    "--api-key", "k1", "--sse-ping-interval", "0.5", "--metrics-require-key", "--max-tokens-limit=64"};
    ck_assert_int_eq(parse(14, argv), ENG_OK);
    ck_assert_uint_eq(c.n_engines, 2);
    ck_assert_str_eq(c.engines[0], "a:1");
    ck_assert_str_eq(c.engines[1], "b:2");
    ck_assert_int_eq(c.port, 0);
    ck_assert_int_eq(c.threads, 3);
    ck_assert_uint_eq(c.n_api_keys, 1);
    ck_assert(c.sse_ping_interval_s == 0.5);
    ck_assert(c.metrics_require_key);
    ck_assert_int_eq(c.max_tokens_limit, 64);
    ck_assert_str_eq(c.host, "0.0.0.0");
    ck_assert_int_eq(c.max_body_bytes, 4194304);
    ck_assert_int_eq(c.max_concurrent, 1024);
    ck_assert(c.request_timeout_s == 600);
}
END_TEST

START_TEST(test_env_and_override)
{
    setenv("QNEXT_ENGINES", "x:1,y:2,,z:3", 1);
    setenv("QNEXT_PORT", "9000", 1);
    setenv("QNEXT_METRICS_REQUIRE_KEY", "true", 1);
    char *argv1[] = {"gw"};
    ck_assert_int_eq(parse(1, argv1), ENG_OK);
    ck_assert_uint_eq(c.n_engines, 3);
    ck_assert_str_eq(c.engines[2], "z:3");
    ck_assert_int_eq(c.port, 9000);
    ck_assert(c.metrics_require_key);
    gw_config_free(&c);
    char *argv2[] = {"gw", "--engine", "only:1", "--port", "9001"};
    ck_assert_int_eq(parse(5, argv2), ENG_OK);
    ck_assert_uint_eq(c.n_engines, 1); /* the command line replaces the environment's list */
    ck_assert_str_eq(c.engines[0], "only:1");
    ck_assert_int_eq(c.port, 9001);
}
END_TEST

START_TEST(test_errors)
{
    char *a1[] = {"gw"};
    ck_assert_int_eq(parse(1, a1), ENG_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(eng_err_last(), "no engine"));
    gw_config_free(&c);
    char *a2[] = {"gw", "--engine", "a:1", "--port", "70000"};
    ck_assert_int_eq(parse(5, a2), ENG_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(eng_err_last(), "--port"));
    gw_config_free(&c);
    char *a3[] = {"gw", "--engine", "a:1", "--bogus"};
    ck_assert_int_eq(parse(4, a3), ENG_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(eng_err_last(), "--bogus"));
    gw_config_free(&c);
    char *a4[] = {"gw", "--engine"};
    ck_assert_int_eq(parse(2, a4), ENG_ERR_INVALID);
    gw_config_free(&c);
    char *a5[] = {"gw", "--engine", "a:1", "--threads", "1.5"};
    ck_assert_int_eq(parse(5, a5), ENG_ERR_INVALID);
    gw_config_free(&c);
    char *a6[] = {"gw", "--engine", "a:1", "--tls-cert", "c.pem"};
    ck_assert_int_eq(parse(5, a6), ENG_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(eng_err_last(), "--tls-key"));
}
END_TEST

START_TEST(test_help)
{
    bool exit_now = false;
    char *argv[] = {"gw", "--help"};
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ck_assert_int_eq(gw_config_parse(&c, 2, argv, f, &exit_now), ENG_OK);
    fclose(f);
    ck_assert(exit_now);
    ck_assert_ptr_nonnull(strstr(buf, "--api-keys-file PATH"));
    ck_assert_ptr_nonnull(strstr(buf, "[QNEXT_ENGINES]"));
    free(buf);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("parse");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, test_defaults_and_flags);
    tcase_add_test(tc, test_env_and_override);
    tcase_add_test(tc, test_errors);
    tcase_add_test(tc, test_help);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
