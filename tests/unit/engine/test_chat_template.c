/* tests/unit/engine/test_chat_template.c - template names, embedded sources, detection from model
 * folders, and the `qnext template` command (stdin -> prompt, exit codes).
 */
#include <check.h>

#include "core/core.h"
#include "qnext/chat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *fixtures(void)
{
    const char *d = getenv("QNEXT_FIXTURES");
    ck_assert_ptr_nonnull(d);
    return d;
}

static char *read_file(const char *path, size_t *len)
{
    char *t = NULL;
    ck_assert_msg(eng_file_read(path, 64u << 20, &t, len) == ENG_OK, "%s", eng_err_last());
    return t;
}

static void write_file(const char *path, const char *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, len, f), len);
    fclose(f);
}

START_TEST(test_names)
{
    static const char *names[] = {"instruct", "thinking", "hybrid"};
    for (int k = 0; k < ENG_TEMPLATE_COUNT; k++) {
        eng_template_kind got;
        ck_assert_str_eq(eng_template_name((eng_template_kind)k), names[k]);
        ck_assert_int_eq(eng_template_parse(names[k], &got), ENG_OK);
        ck_assert_int_eq(got, k);
    }
    eng_template_kind got;
    ck_assert_int_eq(eng_template_parse("Instruct", &got), ENG_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(eng_err_last(), "instruct, thinking or hybrid"));
    ck_assert_int_eq(eng_template_parse(NULL, &got), ENG_ERR_INVALID);
    ck_assert_str_eq(eng_template_name((eng_template_kind)9), "?");
    ck_assert_ptr_null(eng_template_source((eng_template_kind)9));
}
END_TEST

/* The embedded texts are the fixture files, byte for byte. */
START_TEST(test_sources_match_fixtures)
{
    char path[4096];
    size_t len;
    snprintf(path, sizeof path, "%s/tokenizer/chat_template.qwen3-next-instruct.jinja", fixtures());
    char *t = read_file(path, &len);
    ck_assert_uint_eq(len, strlen(eng_template_source(ENG_TEMPLATE_INSTRUCT)));
    ck_assert_int_eq(memcmp(t, eng_template_source(ENG_TEMPLATE_INSTRUCT), len), 0);
    eng_free(t);
    snprintf(path, sizeof path, "%s/tokenizer/chat_template.qwen3-next-thinking.jinja", fixtures());
    t = read_file(path, &len);
    ck_assert_uint_eq(len, strlen(eng_template_source(ENG_TEMPLATE_THINKING)));
    ck_assert_int_eq(memcmp(t, eng_template_source(ENG_TEMPLATE_THINKING), len), 0);
    eng_free(t);
    /* the hybrid one is checked through detection of tokenizer_config.json below */
    snprintf(path, sizeof path, "%s/tokenizer", fixtures());
    eng_template_kind k;
    ck_assert_msg(eng_template_detect(path, &k) == ENG_OK, "%s", eng_err_last());
    ck_assert_int_eq(k, ENG_TEMPLATE_HYBRID);
    snprintf(path, sizeof path, "%s/tokenizer/tokenizer_config.json", fixtures());
    ck_assert_int_eq(eng_template_detect(path, &k), ENG_OK);
    ck_assert_int_eq(k, ENG_TEMPLATE_HYBRID);
    snprintf(path, sizeof path, "%s/tokenizer/chat_template.qwen3-next-thinking.jinja", fixtures());
    ck_assert_int_eq(eng_template_detect(path, &k), ENG_OK);
    ck_assert_int_eq(k, ENG_TEMPLATE_THINKING);
}
END_TEST

static char tmpdir[256];

static void make_tmpdir(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/qnext-test-chat-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void rm_tmpdir(void)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
}

static char *tpath(const char *name)
{
    static char p[512];
    snprintf(p, sizeof p, "%s/%s", tmpdir, name);
    return p;
}

START_TEST(test_detect_folders)
{
    make_tmpdir();
    eng_template_kind k;
    /* empty folder */
    ck_assert_int_eq(eng_template_detect(tmpdir, &k), ENG_ERR_NOT_FOUND);
    ck_assert_ptr_nonnull(strstr(eng_err_last(), "--template"));
    ck_assert_int_eq(eng_template_detect(tpath("nope"), &k), ENG_ERR_NOT_FOUND);
    /* chat_template.jinja with a trailing newline (trailing whitespace is normalised) */
    const char *ins = eng_template_source(ENG_TEMPLATE_INSTRUCT);
    char *with_nl = malloc(strlen(ins) + 3);
    sprintf(with_nl, "%s\n\n", ins);
    write_file(tpath("chat_template.jinja"), with_nl, strlen(with_nl));
    ck_assert_int_eq(eng_template_detect(tmpdir, &k), ENG_OK);
    ck_assert_int_eq(k, ENG_TEMPLATE_INSTRUCT);
    /* chat_template.jinja wins over tokenizer_config.json */
    write_file(tpath("tokenizer_config.json"), "{\"chat_template\": \"x\"}", 22);
    ck_assert_int_eq(eng_template_detect(tmpdir, &k), ENG_OK);
    ck_assert_int_eq(k, ENG_TEMPLATE_INSTRUCT);
    /* one changed byte inside is unknown */
    with_nl[10] ^= 1;
    write_file(tpath("chat_template.jinja"), with_nl, strlen(with_nl));
    ck_assert_int_eq(eng_template_detect(tmpdir, &k), ENG_ERR_UNSUPPORTED);
    ck_assert_msg(strstr(eng_err_last(), "--template instruct|thinking|hybrid") &&
                      strstr(eng_err_last(), "Qwen3-Next Instruct") && strstr(eng_err_last(), "Qwen3 hybrid"),
                  "%s", eng_err_last());
    free(with_nl);
    unlink(tpath("chat_template.jinja"));
    /* tokenizer_config.json: unknown string, list form with default, list without default, bad JSON */
    ck_assert_int_eq(eng_template_detect(tmpdir, &k), ENG_ERR_UNSUPPORTED);
    char json[16384];
    char esc[12000];
    size_t w = 0;
    for (const char *s = eng_template_source(ENG_TEMPLATE_THINKING); *s; s++) {
        if (*s == '\n')
            esc[w++] = '\\', esc[w++] = 'n';
        else if (*s == '"' || *s == '\\')
            esc[w++] = '\\', esc[w++] = *s;
        else
            esc[w++] = *s;
    }
    esc[w] = '\0';
    snprintf(json, sizeof json,
             "{\"chat_template\": [{\"name\": \"tool_use\", \"template\": \"x\"}, {\"name\": \"default\", "
             "\"template\": \"%s\"}]}",
             esc);
    write_file(tpath("tokenizer_config.json"), json, strlen(json));
    ck_assert_msg(eng_template_detect(tmpdir, &k) == ENG_OK, "%s", eng_err_last());
    ck_assert_int_eq(k, ENG_TEMPLATE_THINKING);
    const char *nodef = "{\"chat_template\": [{\"name\": \"tool_use\", \"template\": \"x\"}]}";
    write_file(tpath("tokenizer_config.json"), nodef, strlen(nodef));
    ck_assert_int_eq(eng_template_detect(tmpdir, &k), ENG_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(eng_err_last(), "default"));
    write_file(tpath("tokenizer_config.json"), "{\"chat_template\": ", 18);
    ck_assert_int_eq(eng_template_detect(tmpdir, &k), ENG_ERR_FORMAT);
    write_file(tpath("tokenizer_config.json"), "{\"model_max_length\": 5}", 23);
    ck_assert_int_eq(eng_template_detect(tmpdir, &k), ENG_ERR_NOT_FOUND);
    write_file(tpath("tokenizer_config.json"), "{\"chat_template\": 5}", 20);
    ck_assert_int_eq(eng_template_detect(tmpdir, &k), ENG_ERR_FORMAT);
    ck_assert_int_eq(eng_template_detect(NULL, &k), ENG_ERR_INVALID);
    rm_tmpdir();
}
END_TEST

/* ---- the CLI ---------------------------------------------------------------------------------- */

/* Runs `qnext template ARGS < stdin_text`; returns the exit status, stdout in *out. */
static int run_cli(const char *args, const char *stdin_text, char **out, size_t *out_len)
{
    const char *bin = getenv("QNEXT_BIN");
    ck_assert_ptr_nonnull(bin);
    write_file(tpath("in.json"), stdin_text, strlen(stdin_text));
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s/qnext' template %s < '%s/in.json' > '%s/out.txt' 2> '%s/err.txt'", bin,
             args, tmpdir, tmpdir, tmpdir);
    int rc = system(cmd);
    ck_assert(WIFEXITED(rc));
    *out = read_file(tpath("out.txt"), out_len);
    return WEXITSTATUS(rc);
}

START_TEST(test_cli)
{
    make_tmpdir();
    char *out, *err;
    size_t len, elen;
    const char *body =
        "{\"messages\": [{\"role\": \"system\", \"content\": \"S\"}, {\"role\": \"user\", \"content\": "
        "\"Hi\"}], \"tools\": [{\"x\": 1e2}], \"model\": \"ignored\"}";
    ck_assert_int_eq(run_cli("--template thinking", body, &out, &len), 0);
    char *want;
    size_t want_len;
    ck_assert_int_eq(
        eng_chat_render(ENG_TEMPLATE_THINKING,
                        "[{\"role\": \"system\", \"content\": \"S\"}, {\"role\": \"user\", \"content\": "
                        "\"Hi\"}]",
                        "[{\"x\": 1e2}]", NULL, true, &want, &want_len),
        ENG_OK);
    ck_assert_uint_eq(len, want_len);
    ck_assert_int_eq(memcmp(out, want, len), 0);
    ck_assert_ptr_nonnull(strstr(out, "{\"x\": 100.0}"));
    ck_assert_str_eq(out + len - strlen("<|im_start|>assistant\n<think>\n"),
                     "<|im_start|>assistant\n<think>\n");
    eng_chat_free(want);
    eng_free(out);

    /* detection from a folder, --no-generation-prompt */
    char args[1024];
    snprintf(args, sizeof args, "--tokenizer '%s/tokenizer' --no-generation-prompt", fixtures());
    ck_assert_int_eq(run_cli(args, "{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}]}", &out, &len),
                     0);
    ck_assert_str_eq(out, "<|im_start|>user\nq<|im_end|>\n");
    eng_free(out);
    /* hybrid with enable_thinking=false */
    ck_assert_int_eq(run_cli("--template hybrid",
                             "{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}], "
                             "\"chat_template_kwargs\": {\"enable_thinking\": false}}",
                             &out, &len),
                     0);
    ck_assert_str_eq(out, "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n");
    eng_free(out);
    /* --help */
    ck_assert_int_eq(run_cli("--help", "", &out, &len), 0);
    ck_assert_ptr_nonnull(strstr(out, "--no-generation-prompt"));
    eng_free(out);
    /* runtime errors: exit 1, message on stderr, nothing on stdout */
    ck_assert_int_eq(run_cli("--template instruct", "{\"messages\": [", &out, &len), 1);
    ck_assert_uint_eq(len, 0);
    eng_free(out);
    err = read_file(tpath("err.txt"), &elen);
    ck_assert_ptr_nonnull(strstr(err, "request body"));
    eng_free(err);
    ck_assert_int_eq(run_cli("--template hybrid", "{\"messages\": [{\"role\": \"user\"}]}", &out, &len), 1);
    eng_free(out);
    err = read_file(tpath("err.txt"), &elen);
    ck_assert_ptr_nonnull(strstr(err, "messages[0]"));
    eng_free(err);
    snprintf(args, sizeof args, "--tokenizer '%s'", tmpdir); /* a folder without a template */
    ck_assert_int_eq(run_cli(args, "{}", &out, &len), 1);
    eng_free(out);
    /* usage errors: exit 2 */
    ck_assert_int_eq(run_cli("", "{}", &out, &len), 2);
    eng_free(out);
    ck_assert_int_eq(run_cli("--template", "{}", &out, &len), 2);
    eng_free(out);
    ck_assert_int_eq(run_cli("--template chatml", "{}", &out, &len), 2);
    eng_free(out);
    ck_assert_int_eq(run_cli("--template instruct --bogus", "{}", &out, &len), 2);
    eng_free(out);
    rm_tmpdir();
}
END_TEST

static Suite *chat_template_suite(void)
{
    Suite *s = suite_create("chat_template");
    TCase *tc = tcase_create("templates");
    tcase_add_test(tc, test_names);
    tcase_add_test(tc, test_sources_match_fixtures);
    tcase_add_test(tc, test_detect_folders);
    suite_add_tcase(s, tc);
    tc = tcase_create("cli");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_cli);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(chat_template_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
