/* cli/cmd_tokenize.c - `qnext tokenize`: UTF-8 text on stdin -> token ids on one line.
 *
 * The text is taken byte for byte (a trailing newline from `echo` is part of it; use printf or
 * echo -n to leave it out). Invalid UTF-8 is encoded losslessly through byte tokens, as the
 * library documents (qnext/tokenizer.h).
 */
#include "cli.h"

#include "core/core.h"       /* defines: eng_buf, eng_free */
#include "qnext/tokenizer.h" /* defines: eng_tokenizer_* */

#include <stdio.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: qnext tokenize --tokenizer PATH [--special]\n"
               "\n"
               "Reads UTF-8 text from stdin (byte for byte, including any trailing newline) and prints\n"
               "its token ids on one line, separated by spaces. No BOS/EOS is added.\n"
               "\n"
               "options:\n"
               "  --tokenizer PATH  tokenizer.json, or a model folder that contains it (required)\n"
               "  --special         match the text of special tokens (<|im_start|>, <|endoftext|>, ...)\n"
               "                    as those tokens; by default it is encoded as plain text. Non-special\n"
               "                    added tokens (<think>, <tool_call>, ...) always match.\n"
               "  -h, --help        this text\n"
               "\n"
               "exit status: 0 ok, 1 runtime error (tokenizer or input unreadable), 2 usage error\n");
}

/* Reads all of f into b; false on a read error or out of memory. */
static bool read_all(FILE *f, eng_buf *b)
{
    char chunk[65536];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0)
        if (!eng_buf_append(b, chunk, got)) return false;
    return !ferror(f);
}

int cmd_tokenize(int argc, char **argv)
{
    const char *path = NULL;
    bool special = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--special")) {
            special = true;
        } else if (!strcmp(a, "--tokenizer")) {
            if (++i >= argc) {
                fprintf(stderr, "qnext tokenize: --tokenizer needs a path\n");
                usage(stderr);
                return 2;
            }
            path = argv[i];
        } else if (!strncmp(a, "--tokenizer=", 12)) {
            path = a + 12;
        } else {
            fprintf(stderr, "qnext tokenize: unknown argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!path || !*path) {
        fprintf(stderr, "qnext tokenize: --tokenizer PATH is required\n");
        usage(stderr);
        return 2;
    }
    int rc = 1;
    eng_tokenizer *tok = NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    eng_buf in;
    eng_buf_init(&in);
    if (eng_tokenizer_load(path, &tok) != ENG_OK) {
        fprintf(stderr, "qnext tokenize: %s\n", eng_err_last());
        goto out;
    }
    if (!read_all(stdin, &in)) {
        fprintf(stderr, "qnext tokenize: cannot read stdin\n");
        goto out;
    }
    if (eng_tokenizer_encode(tok, in.data, in.len, special, &ids, &n) != ENG_OK) {
        fprintf(stderr, "qnext tokenize: %s\n", eng_err_last());
        goto out;
    }
    for (size_t i = 0; i < n; i++) printf(i ? " %d" : "%d", (int)ids[i]);
    putchar('\n');
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "qnext tokenize: cannot write stdout\n");
        goto out;
    }
    rc = 0;
out:
    eng_free(ids);
    eng_buf_free(&in);
    eng_tokenizer_destroy(tok);
    return rc;
}
