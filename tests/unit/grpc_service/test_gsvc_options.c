/* tests/unit/grpc_service/test_gsvc_options.c - grpc_service/options.c: defaults, environment,
 * flags (and their precedence), value syntax and ranges, --help. */
#include "options.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

/* A fake environment: NULL-terminated name/value pairs. */
static const char *const *fake_env;

static const char *env_lookup(const char *name)
{
    for (const char *const *p = fake_env; p && p[0]; p += 2)
        if (!strcmp(p[0], name)) return p[1];
    return NULL;
}

static FILE *sink_out, *sink_err;
static char *out_buf, *err_buf;
static size_t out_len, err_len;

static void setup(void)
{
    sink_out = open_memstream(&out_buf, &out_len);
    sink_err = open_memstream(&err_buf, &err_len);
}

static void teardown(void)
{
    fclose(sink_out);
    fclose(sink_err);
    free(out_buf);
    free(err_buf);
}

/* Parses argv (NULL-terminated, without argv[0]) with env; returns the result. */
static gsvc_opt_result parse(gsvc_options *o, const char *const *env, const char *const *args)
{
    char *argv[64] = {"qnext-engine"};
    int argc = 1;
    for (; args && args[argc - 1]; argc++) argv[argc] = (char *)args[argc - 1];
    fake_env = env;
    gsvc_options_init(o);
    gsvc_opt_result r = gsvc_options_parse(o, argc, argv, env_lookup, sink_out, sink_err);
    fflush(sink_out);
    fflush(sink_err);
    return r;
}

START_TEST(test_defaults)
{
    gsvc_options o;
    const char *args[] = {"--model", "/m", NULL};
    ck_assert_int_eq(parse(&o, NULL, args), GSVC_OPT_RUN);
    ck_assert_str_eq(o.eng.model_dir, "/m");
    ck_assert_str_eq(o.listen, "0.0.0.0:50051");
    ck_assert_uint_eq(o.max_message_bytes, 4u << 20);
    ck_assert(o.grace_s == 30.0);
    ck_assert_int_eq(o.cq_threads, 2);
    ck_assert_int_eq(o.max_concurrent_streams, 0);
    eng_config d;
    eng_config_init(&d);
    ck_assert_int_eq(o.eng.max_running, d.max_running);
    ck_assert_int_eq(o.eng.max_queue, d.max_queue);
    ck_assert(o.eng.batch_invariant == d.batch_invariant);
}
END_TEST

START_TEST(test_env_then_flags)
{
    gsvc_options o;
    const char *env[] = {"QNEXT_MODEL", "/env/model", "QNEXT_MAX_QUEUE", "7", "QNEXT_LISTEN", "127.0.0.1:1",
                         "QNEXT_KV_CACHE_SIZE", "2G", "QNEXT_BATCH_INVARIANT", "off", "QNEXT_GRACE_PERIOD", "2.5",
                         NULL};
    ck_assert_int_eq(parse(&o, env, NULL), GSVC_OPT_RUN);
    ck_assert_str_eq(o.eng.model_dir, "/env/model");
    ck_assert_int_eq(o.eng.max_queue, 7);
    ck_assert_str_eq(o.listen, "127.0.0.1:1");
    ck_assert_uint_eq(o.eng.kv_cache_bytes, (size_t)2 << 30);
    ck_assert(!o.eng.batch_invariant);
    ck_assert(o.grace_s == 2.5);

    const char *args[] = {"--max-queue=9", "--model", "/flag", "--batch-invariant", "--max-message-size", "512KiB",
                          "--gpu-memory-fraction", "0.5", "--tp", "2", "--chat-template", "hybrid",
                          "--device=cuda", "--prefix-cache-size", "1M", "--threads", "3", "--state-slots", "9",
                          "--max-model-len", "8192", "--kv-block-size", "32", "--max-batch-tokens", "4096",
                          "--max-running", "5", "--prefix-snapshot-every", "256", "--cq-threads", "2",
                          "--max-concurrent-streams", "100", "--retry-after-ms", "250", "--stream-backlog", "64K",
                          NULL};
    ck_assert_int_eq(parse(&o, env, args), GSVC_OPT_RUN);
    ck_assert_int_eq(o.eng.max_queue, 9); /* the flag wins */
    ck_assert_str_eq(o.eng.model_dir, "/flag");
    ck_assert(o.eng.batch_invariant);
    ck_assert_uint_eq(o.max_message_bytes, 512u << 10);
    ck_assert(o.eng.gpu_memory_fraction == 0.5);
    ck_assert_int_eq(o.eng.tp, 2);
    ck_assert_str_eq(o.eng.chat_template, "hybrid");
    ck_assert_str_eq(o.eng.device, "cuda");
    ck_assert_uint_eq(o.eng.prefix_cache_bytes, 1u << 20);
    ck_assert_int_eq(o.eng.n_threads, 3);
    ck_assert_int_eq(o.eng.n_state_slots, 9);
    ck_assert_int_eq(o.eng.max_model_len, 8192);
    ck_assert_int_eq(o.eng.kv_block_size, 32);
    ck_assert_int_eq(o.eng.max_batch_tokens, 4096);
    ck_assert_int_eq(o.eng.max_running, 5);
    ck_assert_int_eq(o.eng.prefix_snapshot_every, 256);
    ck_assert_int_eq(o.cq_threads, 2);
    ck_assert_int_eq(o.max_concurrent_streams, 100);
    ck_assert_int_eq(o.retry_after_ms, 250);
    ck_assert_uint_eq(o.stream_backlog_bytes, 64u << 10);
    ck_assert_uint_eq(o.eng.kv_cache_bytes, (size_t)2 << 30); /* from the environment still */

    const char *neg[] = {"--model", "/m", "--no-batch-invariant", NULL};
    ck_assert_int_eq(parse(&o, NULL, neg), GSVC_OPT_RUN);
    ck_assert(!o.eng.batch_invariant);
}
END_TEST

static void expect_error(const char *const *env, const char *const *args, const char *needle)
{
    gsvc_options o;
    size_t before = err_len;
    ck_assert_int_eq(parse(&o, env, args), GSVC_OPT_ERROR);
    ck_assert_msg(err_len > before && strstr(err_buf + before, needle), "stderr \"%s\" lacks \"%s\"",
                  err_buf ? err_buf + before : "", needle);
}

START_TEST(test_errors)
{
    const char *a1[] = {NULL};
    expect_error(NULL, a1, "--model DIR (or QNEXT_MODEL) is required");
    const char *a2[] = {"--model", "/m", "--bogus", NULL};
    expect_error(NULL, a2, "unknown option '--bogus'");
    const char *a3[] = {"--model", NULL};
    expect_error(NULL, a3, "--model needs a value");
    const char *a4[] = {"--model", "/m", "--max-queue", "12x", NULL};
    expect_error(NULL, a4, "--max-queue: '12x' is not an integer");
    const char *a5[] = {"--model", "/m", "--tp", "0", NULL};
    expect_error(NULL, a5, "--tp: 0 is out of range");
    const char *a6[] = {"--model", "/m", "--kv-cache-size", "4X", NULL};
    expect_error(NULL, a6, "is not a size");
    const char *a7[] = {"--model", "/m", "--gpu-memory-fraction", "1.5", NULL};
    expect_error(NULL, a7, "out of range");
    const char *a8[] = {"--model", "/m", "--batch-invariant=maybe", NULL};
    expect_error(NULL, a8, "is not a boolean");
    const char *a9[] = {"--model", "/m", "stray", NULL};
    expect_error(NULL, a9, "unexpected argument 'stray'");
    const char *a10[] = {"--model", "", NULL};
    expect_error(NULL, a10, "--model: empty value");
    const char *a11[] = {"--model", "/m", "--no-batch-invariant=1", NULL};
    expect_error(NULL, a11, "takes no value");
    const char *a12[] = {"--model", "/m", "--grace-period", "nan", NULL};
    expect_error(NULL, a12, "is not a number");
    const char *e1[] = {"QNEXT_MODEL", "/m", "QNEXT_MAX_RUNNING", "-3", NULL};
    expect_error(e1, a1, "QNEXT_MAX_RUNNING: -3 is out of range");
    const char *e2[] = {"QNEXT_MODEL", "/m", "QNEXT_MAX_MESSAGE_SIZE", "99999999999999", NULL};
    expect_error(e2, a1, "QNEXT_MAX_MESSAGE_SIZE");
}
END_TEST

START_TEST(test_help_lists_every_setting)
{
    gsvc_options o;
    const char *args[] = {"--max-queue", "77", "--help", NULL};
    ck_assert_int_eq(parse(&o, NULL, args), GSVC_OPT_EXIT);
    static const char *names[] = {
        "--model", "QNEXT_MODEL", "--listen", "QNEXT_LISTEN", "--max-concurrent-streams", "--max-message-size",
        "--grace-period", "--device", "--threads", "--tp", "--chat-template", "--max-running", "--max-batch-tokens",
        "--max-queue", "--max-model-len", "--kv-block-size", "--kv-cache-size", "--state-slots", "--prefix-cache-size",
        "--prefix-snapshot-every", "--gpu-memory-fraction", "--batch-invariant", "QNEXT_GPU_MEMORY_FRACTION",
        "default 0.0.0.0:50051", "default 77", "default 4M", "QNEXT_LOG",
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        ck_assert_msg(strstr(out_buf, names[i]), "--help lacks %s", names[i]);
    const char *v[] = {"--version", NULL};
    ck_assert_int_eq(parse(&o, NULL, v), GSVC_OPT_EXIT);
    ck_assert(strstr(out_buf, "qnext-engine 0.1.0"));
}
END_TEST

static Suite *options_suite(void)
{
    Suite *s = suite_create("gsvc_options");
    TCase *tc = tcase_create("parse");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_defaults);
    tcase_add_test(tc, test_env_then_flags);
    tcase_add_test(tc, test_errors);
    tcase_add_test(tc, test_help_lists_every_setting);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(options_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
