/* cli/cmd_template.c - `qnext template`: an OpenAI chat request body on stdin -> the rendered prompt.
 *
 * The prompt is written byte for byte (no newline added), exactly as transformers'
 * apply_chat_template(tokenize=False) renders it for the same template (qnext/chat.h).
 */
#include "cli.h"

#include "core/core.h"  /* defines: eng_buf */
#include "qnext/chat.h" /* defines: eng_template_*, eng_chat_render_request */

#include <stdio.h>
#include <string.h>

#define MAX_BODY (64u << 20)

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: qnext template --tokenizer PATH [--template instruct|thinking|hybrid] "
        "[--no-generation-prompt]\n"
        "       qnext template --template instruct|thinking|hybrid [--no-generation-prompt]\n"
        "\n"
        "Reads an OpenAI-style chat request body (JSON) from stdin and prints the prompt the model's\n"
        "chat template renders for it, byte for byte, with no trailing newline. Fields read:\n"
        "  messages              the conversation (required)\n"
        "  tools                 tool schemas (optional)\n"
        "  chat_template_kwargs  e.g. {\"enable_thinking\": false} for the hybrid template (optional)\n"
        "Text-part content arrays are joined with \"\\n\" as vLLM does; image and audio parts are refused.\n"
        "\n"
        "options:\n"
        "  --tokenizer PATH        model or tokenizer folder (or its chat_template.jinja /\n"
        "                          tokenizer_config.json): the template is recognised from it\n"
        "  --template NAME         use this template instead of recognising one:\n"
        "                            instruct  Qwen3-Next Instruct\n"
        "                            thinking  Qwen3-Next Thinking (prompt ends in \"<think>\\n\")\n"
        "                            hybrid    Qwen3 hybrid, honours enable_thinking\n"
        "  --no-generation-prompt  do not append the assistant header\n"
        "  -h, --help              this text\n"
        "\n"
        "exit status: 0 ok, 1 runtime error (bad request, unknown template, unreadable files), 2 usage "
        "error\n");
}

static bool read_all(FILE *f, eng_buf *b)
{
    char chunk[65536];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (b->len + got > MAX_BODY) return false;
        if (!eng_buf_append(b, chunk, got)) return false;
    }
    return !ferror(f);
}

int cmd_template(int argc, char **argv)
{
    const char *path = NULL, *name = NULL;
    bool add_gen = true;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--tokenizer") || !strcmp(a, "--template")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "qnext template: %s needs a value\n", a);
                return 2;
            }
            if (!strcmp(a, "--tokenizer"))
                path = argv[++i];
            else
                name = argv[++i];
        } else if (!strcmp(a, "--no-generation-prompt")) {
            add_gen = false;
        } else {
            fprintf(stderr, "qnext template: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    eng_template_kind kind;
    if (name) {
        if (eng_template_parse(name, &kind) != ENG_OK) {
            fprintf(stderr, "qnext template: %s\n", eng_err_last());
            return 2;
        }
    } else if (path) {
        if (eng_template_detect(path, &kind) != ENG_OK) {
            fprintf(stderr, "qnext template: %s\n", eng_err_last());
            return 1;
        }
    } else {
        fprintf(stderr, "qnext template: give --tokenizer PATH or --template NAME\n");
        usage(stderr);
        return 2;
    }

    int rc = 1;
    eng_buf body;
    eng_buf_init(&body);
    eng_chat_prompt prompt = {0};
    if (!read_all(stdin, &body)) {
        fprintf(stderr,
                "qnext template: cannot read stdin (read error, out of memory, or more than %u MiB)\n",
                MAX_BODY >> 20);
        goto out;
    }
    if (eng_chat_render_request(kind, body.data ? body.data : "", body.len, add_gen, &prompt) != ENG_OK) {
        fprintf(stderr, "qnext template: %s\n", eng_err_last());
        goto out;
    }
    if (fwrite(prompt.text, 1, prompt.len, stdout) != prompt.len || fflush(stdout) != 0) {
        fprintf(stderr, "qnext template: write error on stdout\n");
        goto out;
    }
    rc = 0;
out:
    eng_chat_prompt_free(&prompt);
    eng_buf_free(&body);
    return rc;
}
