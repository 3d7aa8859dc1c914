/* tests/fuzz/fuzz_parse_toolcall.c - libFuzzer target for the streaming tool-call parser.
 *
 * Input layout: byte 0 gives k = number of piece lengths (% 16); the next k bytes are piece
 * lengths (0 means 1), used cyclically; the rest is the content stream. It is fed cut at those
 * points, and again in one piece. Checks: the no-loss invariant (CONTENT texts and TOOL_CALL raw
 * blocks, in order, rebuild the input byte for byte); both runs give the same transcript of content
 * runs and calls (names, arguments); each TOOL_CALL is followed by its TOOL_ARGS, indices count up from 0,
 * ids have the documented shape, and the arguments text lies inside the raw block; the parser's count and
 * malformed flag agree with what was emitted.
 */
#include "core/core.h"
#include "qnext/chat.h"

#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct res {
    eng_buf flat;  /* content and raw blocks as emitted, in order */
    eng_buf shape; /* a transcript: 'C' + content, 'T' + name + '\0' + args + '\0' */
    int calls;
    bool malformed;
    bool last_content; /* adjacent content merges in the transcript, however it was cut */
} res;

static void collect(res *x, const eng_deltas *d)
{
    for (size_t i = 0; i < d->n; i++) {
        const eng_delta *it = &d->items[i];
        if (it->text == NULL || it->text[it->len] != '\0') abort();
        if (it->kind == ENG_DELTA_CONTENT) {
            if (it->len == 0) abort();
            eng_buf_append(&x->flat, it->text, it->len);
            if (!x->last_content) eng_buf_putc(&x->shape, 'C');
            eng_buf_append(&x->shape, it->text, it->len);
            x->last_content = true;
            x->malformed = x->malformed || it->malformed;
        } else if (it->kind == ENG_DELTA_TOOL_CALL) {
            if (i + 1 >= d->n || d->items[i + 1].kind != ENG_DELTA_TOOL_ARGS) abort();
            const eng_delta *a = &d->items[i + 1];
            if (it->index != x->calls || a->index != x->calls) abort();
            if (!it->id || strlen(it->id) != 29 || strncmp(it->id, "call_", 5)) abort();
            for (int k = 5; k < 29; k++)
                if (!isalnum((unsigned char)it->id[k])) abort();
            if (it->len == 0 || it->raw_len < 23 || memcmp(it->raw, "<tool_call>", 11) ||
                memcmp(it->raw + it->raw_len - 12, "</tool_call>", 12))
                abort();
            if (a->len == 0 || !memmem(it->raw, it->raw_len, a->text, a->len)) abort();
            eng_buf_append(&x->flat, it->raw, it->raw_len);
            eng_buf_putc(&x->shape, 'T');
            eng_buf_append(&x->shape, it->text, it->len + 1);
            eng_buf_append(&x->shape, a->text, a->len + 1);
            x->calls++;
            x->last_content = false;
            i++;
        } else {
            abort();
        }
    }
}

static void run(const uint8_t *cuts, size_t ncuts, const char *s, size_t n, res *x)
{
    eng_toolcall_parser *p;
    if (eng_toolcall_parser_create(7, &p) != ENG_OK) abort();
    eng_deltas d;
    eng_deltas_init(&d);
    size_t ci = 0;
    for (size_t i = 0; i < n;) {
        size_t k = ncuts ? (cuts[ci % ncuts] ? cuts[ci % ncuts] : 1) : n - i;
        ci++;
        if (k > n - i) k = n - i;
        eng_deltas_clear(&d);
        if (eng_toolcall_parser_feed(p, s + i, k, &d) != ENG_OK) abort();
        collect(x, &d);
        i += k;
    }
    eng_deltas_clear(&d);
    if (eng_toolcall_parser_finish(p, &d) != ENG_OK) abort();
    collect(x, &d);
    if (eng_toolcall_parser_count(p) != x->calls || eng_toolcall_parser_malformed(p) != x->malformed) abort();
    eng_deltas_free(&d);
    eng_toolcall_parser_destroy(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    size_t ncuts = data[0] % 16;
    if (size < 1 + ncuts) return 0;
    const char *s = (const char *)data + 1 + ncuts;
    size_t n = size - 1 - ncuts;
    res a = {0}, b = {0};
    run(data + 1, ncuts, s, n, &a);
    run(NULL, 0, s, n, &b);
    if (a.flat.len != n || (n && memcmp(a.flat.data, s, n))) abort(); /* no byte lost or repeated */
    /* the same transcript of content runs and calls, however the input was cut */
    if (a.calls != b.calls || a.malformed != b.malformed) abort();
    if (a.shape.len != b.shape.len || (a.shape.len && memcmp(a.shape.data, b.shape.data, a.shape.len)))
        abort();
    if (b.flat.len != n || (n && memcmp(b.flat.data, s, n))) abort();
    eng_buf_free(&a.flat), eng_buf_free(&a.shape), eng_buf_free(&b.flat), eng_buf_free(&b.shape);
    return 0;
}
