/* tests/fuzz/fuzz_parse_reasoning.c - libFuzzer target for the streaming <think> splitter.
 *
 * Input layout: byte 0 picks the start mode (% 3); byte 1 gives k = number of piece lengths
 * (% 16); the next k bytes are piece lengths (0 means 1), used cyclically; the rest is the model
 * output. The output is fed cut at those points, and again in one piece. Checks: both runs give
 * the same reasoning and content; every delta is non-empty and NUL-terminated; no reasoning comes
 * after content; reasoning + content never exceed the input; and the split equals the documented
 * one-shot rules (restated here on the whole text).
 */
#include "core/core.h"
#include "qnext/chat.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct res {
    eng_buf r, c;
} res;

static void collect(res *x, const eng_deltas *d, bool *content_seen)
{
    for (size_t i = 0; i < d->n; i++) {
        const eng_delta *it = &d->items[i];
        if (it->len == 0 || it->text[it->len] != '\0') abort();
        if (it->kind == ENG_DELTA_REASONING) {
            if (*content_seen) abort();
            eng_buf_append(&x->r, it->text, it->len);
        } else if (it->kind == ENG_DELTA_CONTENT) {
            *content_seen = true;
            eng_buf_append(&x->c, it->text, it->len);
        } else {
            abort();
        }
    }
}

static void run(eng_reasoning_start start, const uint8_t *cuts, size_t ncuts, const char *s, size_t n, res *x)
{
    eng_reasoning_parser *p;
    if (eng_reasoning_parser_create(start, &p) != ENG_OK) abort();
    eng_deltas d;
    eng_deltas_init(&d);
    bool seen = false;
    size_t ci = 0;
    for (size_t i = 0; i < n;) {
        size_t k = ncuts ? (cuts[ci % ncuts] ? cuts[ci % ncuts] : 1) : n - i;
        ci++;
        if (k > n - i) k = n - i;
        eng_deltas_clear(&d);
        if (eng_reasoning_parser_feed(p, s + i, k, &d) != ENG_OK) abort();
        collect(x, &d, &seen);
        i += k;
    }
    eng_deltas_clear(&d);
    if (eng_reasoning_parser_finish(p, &d) != ENG_OK) abort();
    collect(x, &d, &seen);
    eng_deltas_free(&d);
    eng_reasoning_parser_destroy(p);
}

/* The documented rules on the whole text. */
static void reference(eng_reasoning_start start, const char *s, size_t n, res *x)
{
    if (start == ENG_REASONING_NONE) {
        eng_buf_append(&x->c, s, n);
        return;
    }
    if (n >= 7 && !memcmp(s, "<think>", 7)) {
        s += 7, n -= 7;
        if (n && *s == '\n') s++, n--;
    } else if (start == ENG_REASONING_MAY_OPEN) {
        eng_buf_append(&x->c, s, n);
        return;
    }
    const char *e = memmem(s, n, "</think>", 8);
    if (!e) {
        eng_buf_append(&x->r, s, n);
        return;
    }
    size_t rl = (size_t)(e - s);
    eng_buf_append(&x->r, s, rl && s[rl - 1] == '\n' ? rl - 1 : rl);
    const char *c = e + 8;
    size_t cl = n - (size_t)(c - s);
    for (int k = 0; k < 2 && cl && *c == '\n'; k++) c++, cl--;
    eng_buf_append(&x->c, c, cl);
}

static bool same(const eng_buf *a, const eng_buf *b)
{
    return a->len == b->len && (a->len == 0 || !memcmp(a->data, b->data, a->len));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    eng_reasoning_start start = (eng_reasoning_start)(data[0] % 3);
    size_t ncuts = data[1] % 16;
    if (size < 2 + ncuts) return 0;
    const uint8_t *cuts = data + 2;
    const char *s = (const char *)data + 2 + ncuts;
    size_t n = size - 2 - ncuts;
    res a = {0}, b = {0}, ref = {0};
    run(start, cuts, ncuts, s, n, &a);
    run(start, NULL, 0, s, n, &b);
    reference(start, s, n, &ref);
    if (!same(&a.r, &b.r) || !same(&a.c, &b.c) || !same(&a.r, &ref.r) || !same(&a.c, &ref.c)) abort();
    if (a.r.len + a.c.len > n) abort();
    eng_buf_free(&a.r), eng_buf_free(&a.c), eng_buf_free(&b.r), eng_buf_free(&b.c);
    eng_buf_free(&ref.r), eng_buf_free(&ref.c);
    return 0;
}
