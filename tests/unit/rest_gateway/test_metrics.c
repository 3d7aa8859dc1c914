/* tests/unit/rest_gateway/test_metrics.c - Prometheus text exposition of the gateway metrics.
 *
 * Checks exact sample lines (names, labels, escaping), histogram invariants (cumulative buckets,
 * +Inf bucket == _count, _sum in seconds), and that every line is a comment or "name{labels} value".
 */
#include <check.h>

#include "core/core.h"
#include "metrics.h"

#include <stdlib.h>
#include <string.h>

static gw_metrics m;
static eng_buf out;

static void setup(void)
{
    gw_metrics_init(&m);
    eng_buf_init(&out);
}

static void teardown(void)
{
    eng_buf_free(&out);
}

static void has_line(const char *line)
{
    char *l = malloc(strlen(line) + 3);
    strcpy(l, "\n");
    strcat(l, line);
    strcat(l, "\n");
    if (!strstr(eng_buf_cstr(&out), l)) ck_abort_msg("missing line: %s", line);
    free(l);
}

START_TEST(test_counters_and_labels)
{
    gw_metrics_http(&m, GW_EP_CHAT, 200);
    gw_metrics_http(&m, GW_EP_CHAT, 200);
    gw_metrics_http(&m, GW_EP_COMPLETIONS, 429);
    gw_metrics_http(&m, GW_EP_OTHER, 999); /* out of range: counted as 500 */
    atomic_store(&m.prompt_tokens, 12);
    atomic_store(&m.generation_tokens, 34);
    atomic_store(&m.success[GW_FIN_TOOL_CALLS], 2);
    gw_engine_stat e = {.target = "10.0.0.1:50051", .up = true, .has_load = true, .running = 3, .waiting = 1,
                        .kv_usage = 0.25, .outstanding = 4};
    gw_metrics_render(&m, "Qwen/\"x\"", &e, 1, &out);
    has_line("http_requests_total{handler=\"/v1/chat/completions\",method=\"POST\",status=\"200\"} 2");
    has_line("http_requests_total{handler=\"/v1/completions\",method=\"POST\",status=\"429\"} 1");
    has_line("http_requests_total{handler=\"other\",method=\"GET\",status=\"500\"} 1");
    has_line("vllm:prompt_tokens_total{model_name=\"Qwen/\\\"x\\\"\"} 12");
    has_line("vllm:generation_tokens_total{model_name=\"Qwen/\\\"x\\\"\"} 34");
    has_line("vllm:request_success_total{model_name=\"Qwen/\\\"x\\\"\",finished_reason=\"tool_calls\"} 2");
    has_line("vllm:num_requests_running{model_name=\"Qwen/\\\"x\\\"\",engine=\"10.0.0.1:50051\"} 3");
    has_line("vllm:num_requests_waiting{model_name=\"Qwen/\\\"x\\\"\",engine=\"10.0.0.1:50051\"} 1");
    has_line("vllm:kv_cache_usage_perc{model_name=\"Qwen/\\\"x\\\"\",engine=\"10.0.0.1:50051\"} 0.25");
    has_line("qnext_gateway_engine_up{model_name=\"Qwen/\\\"x\\\"\",engine=\"10.0.0.1:50051\"} 1");
    has_line("qnext_gateway_engine_outstanding{model_name=\"Qwen/\\\"x\\\"\",engine=\"10.0.0.1:50051\"} 4");
    has_line("# TYPE vllm:time_to_first_token_seconds histogram");
    has_line("# TYPE vllm:prompt_tokens_total counter");
}
END_TEST

START_TEST(test_histogram)
{
    gw_hist_observe(&m.ttft, 0.003, 1);  /* bucket le=0.005 */
    gw_hist_observe(&m.ttft, 0.5, 2);    /* le=0.5 (bounds are inclusive) */
    gw_hist_observe(&m.ttft, 99999, 1);  /* +Inf */
    gw_hist_observe(&m.ttft, -1, 1);     /* clamped to 0: le=0.001 */
    gw_metrics_render(&m, "m", NULL, 0, &out);
    has_line("vllm:time_to_first_token_seconds_bucket{model_name=\"m\",le=\"0.001\"} 1");
    has_line("vllm:time_to_first_token_seconds_bucket{model_name=\"m\",le=\"0.005\"} 2");
    has_line("vllm:time_to_first_token_seconds_bucket{model_name=\"m\",le=\"0.25\"} 2");
    has_line("vllm:time_to_first_token_seconds_bucket{model_name=\"m\",le=\"0.5\"} 4");
    has_line("vllm:time_to_first_token_seconds_bucket{model_name=\"m\",le=\"2560\"} 4");
    has_line("vllm:time_to_first_token_seconds_bucket{model_name=\"m\",le=\"+Inf\"} 5");
    has_line("vllm:time_to_first_token_seconds_count{model_name=\"m\"} 5");
    has_line("vllm:time_to_first_token_seconds_sum{model_name=\"m\"} 100000.003");
    has_line("vllm:e2e_request_latency_seconds_count{model_name=\"m\"} 0");
}
END_TEST

START_TEST(test_line_grammar)
{
    gw_metrics_http(&m, GW_EP_MODELS, 200);
    gw_hist_observe(&m.itl, 0.02, 10);
    gw_engine_stat e = {.target = "a:1", .up = false, .has_load = false};
    gw_metrics_render(&m, "m", &e, 1, &out);
    const char *s = eng_buf_cstr(&out);
    int samples = 0;
    while (*s) {
        const char *nl = strchr(s, '\n');
        ck_assert_ptr_nonnull(nl); /* every line ends with \n */
        if (*s != '#') {
            /* name{...} value: a space separates the value, which parses as a number */
            const char *sp = nl;
            while (sp > s && sp[-1] != ' ') sp--;
            ck_assert(sp > s);
            char *end;
            strtod(sp, &end);
            ck_assert_ptr_eq(end, nl);
            ck_assert(sp[-2] == '}' || (sp[-2] >= 'a' && sp[-2] <= 'z'));
            samples++;
        } else {
            ck_assert(!strncmp(s, "# HELP ", 7) || !strncmp(s, "# TYPE ", 7));
        }
        s = nl + 1;
    }
    ck_assert_int_gt(samples, 50);
    /* an engine without load figures still reports up/outstanding, but no vllm: load gauges */
    ck_assert_ptr_null(strstr(eng_buf_cstr(&out), "vllm:num_requests_running{"));
    has_line("qnext_gateway_engine_up{model_name=\"m\",engine=\"a:1\"} 0");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("render");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_counters_and_labels);
    tcase_add_test(tc, test_histogram);
    tcase_add_test(tc, test_line_grammar);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
