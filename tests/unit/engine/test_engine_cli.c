/* tests/unit/engine/test_engine_cli.c - smoke tests of the engine subcommands of `qnext`
 * ($QNEXT_BIN/qnext) on the tiny random model: run (chat and --raw), chat driven through a pipe
 * (turns, slash commands, prefix reuse visible in /stats), batch (valid and broken lines), bench
 * (table and machine info), and usage errors (exit status 2).
 */
#include "test_engine_util.h"

#include <cjson/cJSON.h>
#include <sys/wait.h>

static char qnext[1024];

/* Runs a shell command; returns its exit status and its stdout (heap, caller frees). */
static int sh(const char *cmd, char **out)
{
    FILE *p = popen(cmd, "r");
    ck_assert_msg(p != NULL, "popen %s", cmd);
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    size_t got;
    while ((got = fread(b + n, 1, cap - n - 1, p)) > 0) {
        n += got;
        if (cap - n - 1 == 0) b = realloc(b, cap *= 2);
    }
    b[n] = '\0';
    int st = pclose(p);
    if (out)
        *out = b;
    else
        free(b);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static const char forced[] = "{\"rules\": [{\"marker\": \"@@hi@@\", \"text\": \"Hi there.<|im_end|>\"}]}\n";

START_TEST(test_run)
{
    char cmd[4096], *out;
    snprintf(cmd, sizeof cmd,
             "%s run --model %s --prompt 'Hello' --max-tokens 5 --threads 1 --ignore-eos --kv-cache-mb 4 "
             "2>%s/err.txt",
             qnext, tm_model, tm_model);
    ck_assert_int_eq(sh(cmd, &out), 0);
    ck_assert_int_gt((int)strlen(out), 0);
    free(out);
    snprintf(cmd, sizeof cmd, "cat %s/err.txt", tm_model);
    sh(cmd, &out);
    ck_assert_msg(strstr(out, "tok/s") && strstr(out, "peak memory") && strstr(out, "generated 5 tokens"),
                  "%s", out);
    free(out);
    /* raw completion from stdin, with the forced-output hook: exact text */
    snprintf(
        cmd, sizeof cmd,
        "printf 'say @@hi@@' | QNEXT_TEST_FORCED_OUTPUT=%s/forced.json %s run --model %s --raw --threads 1 "
        "--kv-cache-mb 4 2>/dev/null",
        tm_model, qnext, tm_model);
    ck_assert_int_eq(sh(cmd, &out), 0);
    ck_assert_str_eq(out, "Hi there.\n");
    free(out);
    snprintf(cmd, sizeof cmd, "%s run --model %s --prompt x --max-tokens 0 2>/dev/null", qnext, tm_model);
    ck_assert_int_eq(sh(cmd, NULL), 2);
    snprintf(cmd, sizeof cmd, "%s run --prompt x 2>/dev/null", qnext);
    ck_assert_int_eq(sh(cmd, NULL), 2);
    snprintf(cmd, sizeof cmd, "%s run --model /nonexistent --prompt x 2>/dev/null", qnext);
    ck_assert_int_eq(sh(cmd, NULL), 1);
}
END_TEST

START_TEST(test_chat_piped)
{
    char cmd[4096], *out;
    snprintf(
        cmd, sizeof cmd,
        "printf 'Hello @@hi@@\\n/stats\\nAnd now?\\n/stats\\n/set temperature 0.5\\n/set nope 1\\n/help\\n"
        "/system Be brief.\\nAgain @@hi@@\\n/quit\\nnever read\\n' | "
        "QNEXT_TEST_FORCED_OUTPUT=%s/forced.json %s chat --model %s --max-tokens 4 --threads 1 "
        "--kv-cache-mb 4 2>/dev/null",
        tm_model, qnext, tm_model);
    ck_assert_int_eq(sh(cmd, &out), 0);
    /* turn 1 (forced answer), its stats, turn 2 (sampled, 4 tokens) reusing turn 1 */
    char *t1 = strstr(out, "Hi there.");
    ck_assert_msg(t1 != NULL, "%s", out);
    char *s1 = strstr(out, "last turn: prompt ");
    ck_assert_msg(s1 != NULL, "%s", out);
    int p1, c1, p2, c2;
    ck_assert_int_eq(sscanf(s1, "last turn: prompt %d tokens = %d from the prefix cache", &p1, &c1), 2);
    ck_assert_int_eq(c1, 0);
    char *s2 = strstr(s1 + 1, "last turn: prompt ");
    ck_assert_msg(s2 != NULL, "%s", out);
    ck_assert_int_eq(sscanf(s2, "last turn: prompt %d tokens = %d from the prefix cache", &p2, &c2), 2);
    /* turn 1's prompt and its answer ("Hi", " there", ".") came from the prefix cache */
    ck_assert_int_eq(c2, p1 + 3);
    ck_assert(strstr(out, "temperature = 0.5") != NULL);
    ck_assert(strstr(out, "cannot set nope") != NULL);
    ck_assert(strstr(out, "system message set") != NULL);
    ck_assert(strstr(out, "session: 2 turns") != NULL);
    free(out);
}
END_TEST

static const char batch_in[] =
    "{\"custom_id\": \"a\", \"method\": \"POST\", \"url\": \"/v1/chat/completions\", \"body\": {\"model\": "
    "\"m\", "
    "\"messages\": [{\"role\": \"user\", \"content\": \"Hello\"}], \"max_tokens\": 4, \"ignore_eos\": true, "
    "\"logprobs\": true, \"top_logprobs\": 2}}\n"
    "{\"custom_id\": \"b\", \"method\": \"POST\", \"url\": \"/v1/chat/completions\", \"body\": "
    "{\"messages\": "
    "[{\"role\": \"user\", \"content\": \"Two answers\"}], \"n\": 2, \"max_completion_tokens\": 3, "
    "\"temperature\": 0.7, "
    "\"seed\": 5, \"ignore_eos\": true}}\n"
    "not json at all\n"
    "\n"
    "{\"custom_id\": \"c\", \"method\": \"POST\", \"url\": \"/v1/embeddings\", \"body\": {}}\n"
    "{\"method\": \"POST\", \"url\": \"/v1/chat/completions\", \"body\": {\"messages\": []}}\n"
    "{\"custom_id\": \"d\", \"method\": \"POST\", \"url\": \"/v1/chat/completions\", \"body\": "
    "{\"messages\": "
    "[{\"role\": \"user\", \"content\": \"x\"}], \"frobnicate\": 1}}\n"
    "{\"custom_id\": \"e\", \"method\": \"POST\", \"url\": \"/v1/chat/completions\", \"body\": "
    "{\"messages\": "
    "[{\"role\": \"user\", \"content\": [{\"type\": \"image_url\", \"image_url\": {\"url\": \"x\"}}]}], "
    "\"max_tokens\": 2}}\n"
    "{\"custom_id\": \"f\", \"method\": \"POST\", \"url\": \"/v1/completions\", \"body\": {\"prompt\": "
    "\"Once\", "
    "\"max_tokens\": 3, \"ignore_eos\": true}}\n";

START_TEST(test_batch)
{
    char in[1024], outp[1024], cmd[4096], *out;
    snprintf(in, sizeof in, "%s/in.jsonl", tm_model);
    snprintf(outp, sizeof outp, "%s/out.jsonl", tm_model);
    tm_write_file(tm_model, "in.jsonl", batch_in, sizeof batch_in - 1);
    snprintf(cmd, sizeof cmd, "%s batch --model %s %s %s --threads 1 --kv-cache-mb 4 2>&1", qnext, tm_model,
             in, outp);
    int rc = sh(cmd, &out);
    ck_assert_msg(rc == 0, "%s", out);
    ck_assert_msg(strstr(out, "8 requests (5 failed)") != NULL, "%s", out);
    free(out);
    snprintf(cmd, sizeof cmd, "cat %s", outp);
    sh(cmd, &out);
    int lines = 0, ok = 0, errors = 0;
    bool seen[6] = {0};
    for (char *l = strtok(out, "\n"); l; l = strtok(NULL, "\n")) {
        lines++;
        cJSON *j = cJSON_Parse(l);
        ck_assert_msg(j != NULL, "output line is not JSON: %s", l);
        ck_assert(cJSON_IsString(cJSON_GetObjectItem(j, "id")));
        const cJSON *cid = cJSON_GetObjectItem(j, "custom_id");
        const cJSON *resp = cJSON_GetObjectItem(j, "response"), *err = cJSON_GetObjectItem(j, "error");
        if (cJSON_IsNull(err)) {
            ok++;
            ck_assert_int_eq(cJSON_GetObjectItem(resp, "status_code")->valueint, 200);
            const cJSON *body = cJSON_GetObjectItem(resp, "body");
            const cJSON *ch = cJSON_GetObjectItem(body, "choices");
            const cJSON *u = cJSON_GetObjectItem(body, "usage");
            int total = cJSON_GetObjectItem(u, "total_tokens")->valueint;
            ck_assert_int_eq(total, cJSON_GetObjectItem(u, "prompt_tokens")->valueint +
                                        cJSON_GetObjectItem(u, "completion_tokens")->valueint);
            const char *c = cid->valuestring;
            if (!strcmp(c, "a")) {
                seen[0] = true;
                ck_assert_str_eq(cJSON_GetObjectItem(body, "object")->valuestring, "chat.completion");
                ck_assert_str_eq(cJSON_GetObjectItem(body, "model")->valuestring, "m");
                const cJSON *c0 = cJSON_GetArrayItem(ch, 0);
                ck_assert_str_eq(cJSON_GetObjectItem(c0, "finish_reason")->valuestring, "length");
                const cJSON *lp = cJSON_GetObjectItem(cJSON_GetObjectItem(c0, "logprobs"), "content");
                ck_assert_int_eq(cJSON_GetArraySize(lp), 4);
                ck_assert_int_eq(
                    cJSON_GetArraySize(cJSON_GetObjectItem(cJSON_GetArrayItem(lp, 0), "top_logprobs")), 2);
                ck_assert_int_eq(cJSON_GetObjectItem(u, "completion_tokens")->valueint, 4);
            } else if (!strcmp(c, "b")) {
                seen[1] = true;
                ck_assert_int_eq(cJSON_GetArraySize(ch), 2);
                ck_assert_int_eq(cJSON_GetObjectItem(u, "completion_tokens")->valueint, 6);
            } else if (!strcmp(c, "f")) {
                seen[2] = true;
                ck_assert_str_eq(cJSON_GetObjectItem(body, "object")->valuestring, "text_completion");
                ck_assert(cJSON_IsString(cJSON_GetObjectItem(cJSON_GetArrayItem(ch, 0), "text")));
            } else {
                ck_abort_msg("unexpected success for %s", c);
            }
        } else {
            errors++;
            ck_assert(cJSON_IsNull(resp));
            const char *msg = cJSON_GetObjectItem(err, "message")->valuestring;
            if (cJSON_IsNull(cid)) {
                seen[3] = true; /* the bad JSON line and the one without custom_id */
            } else if (!strcmp(cid->valuestring, "c")) {
                seen[4] = true;
                ck_assert_str_eq(cJSON_GetObjectItem(err, "code")->valuestring, "invalid_url");
            } else if (!strcmp(cid->valuestring, "d")) {
                ck_assert_msg(strstr(msg, "frobnicate") != NULL, "%s", msg);
            } else if (!strcmp(cid->valuestring, "e")) {
                seen[5] = true; /* rejected by the chat template in the engine */
            }
        }
        cJSON_Delete(j);
    }
    ck_assert_int_eq(lines, 8);
    ck_assert_int_eq(ok, 3);
    ck_assert_int_eq(errors, 5);
    for (int i = 0; i < 6; i++) ck_assert_msg(seen[i], "case %d missing", i);
    free(out);
    snprintf(cmd, sizeof cmd, "%s batch --model %s %s 2>/dev/null", qnext, tm_model, in);
    ck_assert_int_eq(sh(cmd, NULL), 2);
}
END_TEST

START_TEST(test_bench)
{
    char cmd[4096], *out;
    snprintf(cmd, sizeof cmd,
             "%s bench --model %s --prompt-len 16 --gen-len 4 --concurrency 1,3 --threads 1 --markdown "
             "2>/dev/null",
             qnext, tm_model);
    ck_assert_int_eq(sh(cmd, &out), 0);
    ck_assert_msg(strstr(out, "machine:") && strstr(out, "| concurrency |") && strstr(out, "\n| 1 | ") &&
                      strstr(out, "\n| 3 | ") && strstr(out, "peak memory"),
                  "%s", out);
    free(out);
    snprintf(cmd, sizeof cmd, "%s bench --model %s --concurrency 0 2>/dev/null", qnext, tm_model);
    ck_assert_int_eq(sh(cmd, NULL), 2);
}
END_TEST

static Suite *cli_suite(void)
{
    Suite *s = suite_create("engine_cli");
    TCase *tc = tcase_create("cli");
    tcase_add_test(tc, test_run);
    tcase_add_test(tc, test_chat_piped);
    tcase_add_test(tc, test_batch);
    tcase_add_test(tc, test_bench);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    const char *bin = getenv("QNEXT_BIN");
    if (!bin) {
        fprintf(stderr, "QNEXT_BIN is not set (run through ctest)\n");
        return 1;
    }
    snprintf(qnext, sizeof qnext, "%s/qnext", bin);
    if (access(qnext, X_OK) != 0) {
        fprintf(stderr, "%s is not built\n", qnext);
        return 1;
    }
    tm_setup();
    tm_write_file(tm_model, "forced.json", forced, sizeof forced - 1);
    SRunner *sr = srunner_create(cli_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    char p[1100];
    const char *extra[] = {"err.txt", "in.jsonl", "out.jsonl"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%s", tm_model, extra[i]);
        unlink(p);
    }
    tm_cleanup();
    return failed ? 1 : 0;
}
