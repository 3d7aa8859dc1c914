/* cli/cmd_detokenize.c - `qnext detokenize`: token ids on stdin -> text on stdout.
 *
 * Ids are decimal integers separated by whitespace (commas and brackets are accepted too, so a
 * JSON array can be pasted). The text is written as decoded, with no newline added; invalid UTF-8
 * formed by the tokens' bytes comes out as U+FFFD, as HF decode does.
 */
#include "cli.h"

#include "core/core.h"       /* defines: eng_buf, eng_free */
#include "qnext/tokenizer.h" /* defines: eng_tokenizer_* */

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: qnext detokenize --tokenizer PATH [--skip-special]\n"
            "\n"
            "Reads token ids from stdin (decimal, separated by whitespace; commas and [ ] are ignored)\n"
            "and writes the decoded text to stdout, with no newline added.\n"
            "\n"
            "options:\n"
            "  --tokenizer PATH  tokenizer.json, or a model folder that contains it (required)\n"
            "  --skip-special    leave out special tokens (<|im_end|>, ...); non-special added tokens\n"
            "                    such as <think> are kept, as in HF decode(skip_special_tokens=True)\n"
            "  -h, --help        this text\n"
            "\n"
            "exit status: 0 ok, 1 bad input (not an id, id out of range) or runtime error, 2 usage error\n");
}

static bool read_all(FILE *f, eng_buf *b)
{
    char chunk[65536];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0)
        if (!eng_buf_append(b, chunk, got)) return false;
    return !ferror(f);
}

/* Parses the ids in s into *ids (heap) / *n; prints a message and returns false on bad input. */
static bool parse_ids(const char *s, int32_t **ids, size_t *n)
{
    size_t cap = 256, k = 0, item = 0;
    int32_t *v = malloc(cap * sizeof *v);
    if (!v) {
        fprintf(stderr, "qnext detokenize: out of memory\n");
        return false;
    }
    const char *p = s;
    for (;;) {
        while (*p && (isspace((unsigned char)*p) || *p == ',' || *p == '[' || *p == ']')) p++;
        if (!*p) break;
        const char *start = p;
        while (*p && !isspace((unsigned char)*p) && *p != ',' && *p != '[' && *p != ']') p++;
        char word[32];
        size_t wl = (size_t)(p - start);
        char *end = NULL;
        long long x = 0;
        bool ok = wl < sizeof word;
        if (ok) {
            memcpy(word, start, wl);
            word[wl] = '\0';
            errno = 0;
            x = strtoll(word, &end, 10);
            ok = end != word && *end == '\0' && errno == 0 && x >= INT32_MIN && x <= INT32_MAX;
        }
        if (!ok) {
            fprintf(stderr, "qnext detokenize: item %zu ('%.*s') is not a token id\n", item,
                    (int)(wl > 40 ? 40 : wl), start);
            free(v);
            return false;
        }
        if (k == cap) {
            int32_t *nv = realloc(v, 2 * cap * sizeof *v);
            if (!nv) {
                fprintf(stderr, "qnext detokenize: out of memory\n");
                free(v);
                return false;
            }
            v = nv;
            cap *= 2;
        }
        v[k++] = (int32_t)x;
        item++;
    }
    *ids = v;
    *n = k;
    return true;
}

int cmd_detokenize(int argc, char **argv)
{
    const char *path = NULL;
    bool skip = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--skip-special")) {
            skip = true;
        } else if (!strcmp(a, "--tokenizer")) {
            if (++i >= argc) {
                fprintf(stderr, "qnext detokenize: --tokenizer needs a path\n");
                usage(stderr);
                return 2;
            }
            path = argv[i];
        } else if (!strncmp(a, "--tokenizer=", 12)) {
            path = a + 12;
        } else {
            fprintf(stderr, "qnext detokenize: unknown argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!path || !*path) {
        fprintf(stderr, "qnext detokenize: --tokenizer PATH is required\n");
        usage(stderr);
        return 2;
    }
    int rc = 1;
    eng_tokenizer *tok = NULL;
    int32_t *ids = NULL;
    size_t n = 0, len = 0;
    char *text = NULL;
    eng_buf in;
    eng_buf_init(&in);
    if (!read_all(stdin, &in) || !eng_buf_cstr(&in)) {
        fprintf(stderr, "qnext detokenize: cannot read stdin\n");
        goto out;
    }
    if (memchr(eng_buf_cstr(&in), '\0', in.len)) {
        fprintf(stderr, "qnext detokenize: stdin contains a NUL byte\n");
        goto out;
    }
    if (!parse_ids(eng_buf_cstr(&in), &ids, &n)) goto out;
    if (eng_tokenizer_load(path, &tok) != ENG_OK) {
        fprintf(stderr, "qnext detokenize: %s\n", eng_err_last());
        goto out;
    }
    if (eng_tokenizer_decode(tok, ids, n, skip, &text, &len) != ENG_OK) {
        fprintf(stderr, "qnext detokenize: %s\n", eng_err_last());
        goto out;
    }
    if (fwrite(text, 1, len, stdout) != len || fflush(stdout) != 0) {
        fprintf(stderr, "qnext detokenize: cannot write stdout\n");
        goto out;
    }
    rc = 0;
out:
    free(ids);
    eng_free(text);
    eng_buf_free(&in);
    eng_tokenizer_destroy(tok);
    return rc;
}
