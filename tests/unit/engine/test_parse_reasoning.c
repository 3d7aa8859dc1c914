/* tests/unit/engine/test_parse_reasoning.c - the streaming <think> splitter (qnext/chat.h).
 *
 * A one-shot reference below restates the documented rules on the whole text with plain string
 * operations. Hand cases pin the rules; then synthetic outputs (random mixes of tags, partial tags,
 * newlines and multi-byte text) are fed cut into pieces in several ways over many seeds: random
 * 1..7-byte pieces ignoring UTF-8, the same at character boundaries only, single bytes, and whole.
 * Each run must give the reference's reasoning and content; after every piece the text emitted so
 * far must be a prefix of the final result and at most 8 bytes may be held back.
 */
#include <check.h>

#include "core/core.h"
#include "qnext/chat.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ck_assert records every passing check (one write each); hot loops use this instead. */
#define CHECK(cond, ...)                                                                                     \
    do {                                                                                                     \
        if (!(cond)) ck_abort_msg(__VA_ARGS__);                                                              \
    } while (0)
#define CHECK1(cond) CHECK(cond, "check failed: %s", #cond)

/* ---- reference ---------------------------------------------------------------------------- */

typedef struct split {
    char *reasoning, *content;
    size_t rlen, clen;
} split;

static void split_free(split *s)
{
    free(s->reasoning);
    free(s->content);
}

static char *dup_n(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

static split reference(eng_reasoning_start mode, const char *in, size_t n)
{
    split r = {dup_n("", 0), dup_n("", 0), 0, 0};
    if (mode == ENG_REASONING_NONE) {
        free(r.content);
        r.content = dup_n(in, n), r.clen = n;
        return r;
    }
    const char *s = in;
    size_t len = n;
    if (len >= 7 && memcmp(s, "<think>", 7) == 0) {
        s += 7, len -= 7;
        if (len && *s == '\n') s++, len--;
    } else if (mode == ENG_REASONING_MAY_OPEN) {
        free(r.content);
        r.content = dup_n(in, n), r.clen = n;
        return r;
    }
    const char *close = memmem(s, len, "</think>", 8);
    if (!close) {
        free(r.reasoning);
        r.reasoning = dup_n(s, len), r.rlen = len;
        return r;
    }
    size_t rl = (size_t)(close - s);
    if (rl && s[rl - 1] == '\n') rl--;
    free(r.reasoning);
    r.reasoning = dup_n(s, rl), r.rlen = rl;
    const char *c = close + 8;
    size_t cl = len - (size_t)(c - s);
    for (int k = 0; k < 2 && cl && *c == '\n'; k++) c++, cl--;
    free(r.content);
    r.content = dup_n(c, cl), r.clen = cl;
    return r;
}

/* ---- running the parser ----------------------------------------------------------------------- */

typedef struct acc {
    eng_buf reasoning, content;
    bool content_seen; /* a content delta came: no reasoning may follow */
    bool order_ok;
} acc;

static void acc_take(acc *a, const eng_deltas *d)
{
    for (size_t i = 0; i < d->n; i++) {
        const eng_delta *it = &d->items[i];
        CHECK1(strlen(it->text) <= it->len);
        CHECK1(it->len > 0);
        if (it->kind == ENG_DELTA_REASONING) {
            if (a->content_seen) a->order_ok = false;
            eng_buf_append(&a->reasoning, it->text, it->len);
        } else {
            CHECK1(it->kind == ENG_DELTA_CONTENT);
            a->content_seen = true;
            eng_buf_append(&a->content, it->text, it->len);
        }
    }
}

static bool is_prefix(const eng_buf *b, const char *s, size_t n)
{
    return b->len <= n && (b->len == 0 || memcmp(b->data, s, b->len) == 0);
}

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

enum { CUT_BYTES, CUT_UTF8, CUT_SINGLE, CUT_WHOLE, CUT_MODES };

/* Next piece length from position i. */
static size_t piece_len(int mode, uint64_t *rng, const char *s, size_t i, size_t n)
{
    if (mode == CUT_WHOLE) return n - i;
    if (mode == CUT_SINGLE) return 1;
    size_t k = 1 + rng_next(rng) % 7;
    if (k > n - i) k = n - i;
    if (mode == CUT_UTF8)
        while (i + k < n && ((unsigned char)s[i + k] & 0xC0) == 0x80) k++;
    return k;
}

/* Feeds s cut by `mode`; checks against the reference; returns nothing (asserts). */
static void run_one(eng_reasoning_start start, const char *s, size_t n, int mode, uint64_t seed)
{
    split ref = reference(start, s, n);
    eng_reasoning_parser *p;
    CHECK1(eng_reasoning_parser_create(start, &p) == ENG_OK);
    acc a = {.order_ok = true};
    eng_buf_init(&a.reasoning);
    eng_buf_init(&a.content);
    eng_deltas d;
    eng_deltas_init(&d);
    uint64_t rng = seed | 1;
    for (size_t i = 0; i < n;) {
        size_t k = piece_len(mode, &rng, s, i, n);
        eng_deltas_clear(&d);
        CHECK1(eng_reasoning_parser_feed(p, s + i, k, &d) == ENG_OK);
        acc_take(&a, &d);
        i += k;
        /* emitted so far is a prefix of the final split; at most 8 bytes are held back */
        CHECK(
            is_prefix(&a.reasoning, ref.reasoning, ref.rlen) && is_prefix(&a.content, ref.content, ref.clen),
            "emitted text is not a prefix of the one-shot split (mode %d, input \"%.*s\")", mode, (int)n, s);
        split part = reference(start, s, i);
        size_t emitted = a.reasoning.len + a.content.len, could = part.rlen + part.clen;
        CHECK(emitted <= could && could - emitted <= 8, "held back %zu bytes after %zu of \"%.*s\"",
              could - emitted, i, (int)n, s);
        split_free(&part);
    }
    eng_deltas_clear(&d);
    CHECK1(eng_reasoning_parser_finish(p, &d) == ENG_OK);
    acc_take(&a, &d);
    CHECK(a.reasoning.len == ref.rlen &&
              (ref.rlen == 0 || !memcmp(a.reasoning.data, ref.reasoning, ref.rlen)),
          "reasoning differs (start %d, mode %d, seed %llu): input \"%.*s\" got \"%.*s\" want \"%s\"", start,
          mode, (unsigned long long)seed, (int)n, s, (int)a.reasoning.len,
          a.reasoning.data ? a.reasoning.data : "", ref.reasoning);
    CHECK(a.content.len == ref.clen && (ref.clen == 0 || !memcmp(a.content.data, ref.content, ref.clen)),
          "content differs (start %d, mode %d): input \"%.*s\" got \"%.*s\" want \"%s\"", start, mode, (int)n,
          s, (int)a.content.len, a.content.data ? a.content.data : "", ref.content);
    CHECK1(a.order_ok);
    /* the documented reconstruction: the input is reasoning + content + the dropped markup */
    CHECK1(ref.rlen + ref.clen <= n);
    eng_deltas_free(&d);
    eng_buf_free(&a.reasoning);
    eng_buf_free(&a.content);
    eng_reasoning_parser_destroy(p);
    split_free(&ref);
}

static void run_all_cuts(eng_reasoning_start start, const char *s, uint64_t seed)
{
    size_t n = strlen(s);
    for (int mode = 0; mode < CUT_MODES; mode++) run_one(start, s, n, mode, seed);
}

/* ---- hand cases ------------------------------------------------------------------------------- */

static void expect_split(eng_reasoning_start start, const char *in, const char *want_r, const char *want_c)
{
    split r = reference(start, in, strlen(in));
    ck_assert_msg(!strcmp(r.reasoning, want_r) && !strcmp(r.content, want_c),
                  "reference on \"%s\": \"%s\" | \"%s\"", in, r.reasoning, r.content);
    split_free(&r);
    run_all_cuts(start, in, 12345);
}

START_TEST(test_rules)
{
    const eng_reasoning_start IN = ENG_REASONING_IN_THOUGHT, MAY = ENG_REASONING_MAY_OPEN,
                              NONE = ENG_REASONING_NONE;
    /* thinking template: output starts inside the thought */
    expect_split(IN, "Let me think.\n</think>\n\nThe answer is 4.", "Let me think.", "The answer is 4.");
    expect_split(IN, "a\n\n</think>\n\n\nb", "a\n", "\nb");
    expect_split(IN, "</think>answer", "", "answer");
    expect_split(IN, "\n</think>\n", "", "");
    expect_split(IN, "no close yet\n", "no close yet\n", "");
    expect_split(IN, "<think>\nrepeated tag\n</think>\n\nx", "repeated tag", "x");
    expect_split(IN, "x<think>y</think>z", "x<think>y", "z");
    expect_split(IN, "a</think>b</think>c<think>d", "a", "b</think>c<think>d");
    expect_split(IN, "</thin", "</thin", "");
    expect_split(IN, "", "", "");
    /* hybrid: the model opens the thought itself */
    expect_split(MAY, "<think>\nHmm.\n</think>\n\nHi!", "Hmm.", "Hi!");
    expect_split(MAY, "<think>\n\n</think>\n\nHi!", "", "Hi!");
    expect_split(MAY, "<think>\n</think>\n\nHi!", "", "Hi!");
    expect_split(MAY, "<think>unterminated", "unterminated", "");
    expect_split(MAY, "Hi! </think> <think>", "", "Hi! </think> <think>");
    expect_split(MAY, " <think>x</think>", "", " <think>x</think>");
    expect_split(MAY, "<thin", "", "<thin");
    expect_split(MAY, "<think>", "", "");
    /* instruct / thinking off: all content */
    expect_split(NONE, "<think>\nx\n</think>\n\ny", "", "<think>\nx\n</think>\n\ny");
}
END_TEST

START_TEST(test_recorded_shapes)
{
    /* Output shapes of Qwen3 models (written for these tests, in the models' format) */
    static const char *thinking[] = {
        "Okay, the user asks for 17 * 23. Let me compute: 17 * 20 = 340, 17 * 3 = 51, total "
        "391.\n</think>\n\n"
        "17 × 23 = **391**.",
        "用户问的是天气。我需要调用工具。\n</think>\n\n<tool_call>\n{\"name\": \"get_weather\", "
        "\"arguments\": "
        "{\"city\": \"北京\"}}\n</tool_call>",
        "I will write code:\n```c\nint main(void) { return 0; }\n```\nThat compiles.\n</think>\n\n```c\nint "
        "main(void) { return 0; }\n```",
        "Thinking that gets cut off by max_tokens because it is very long and never ends",
    };
    static const char *hybrid[] = {
        "<think>\nThe user greets me. I should greet back.\n</think>\n\nHello! How can I help you today? 😊",
        "<think>\n\n</think>\n\nSure — here is the list:\n1. a\n2. b",
        "<think>\nNeed the weather tool.\n</think>\n\n<tool_call>\n{\"name\": \"get_weather\", "
        "\"arguments\": {\"city\": "
        "\"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": "
        "\"Rome\"}}\n</tool_call>",
    };
    for (uint64_t seed = 1; seed <= 200; seed++) {
        for (size_t i = 0; i < sizeof thinking / sizeof thinking[0]; i++)
            run_all_cuts(ENG_REASONING_IN_THOUGHT, thinking[i], seed);
        for (size_t i = 0; i < sizeof hybrid / sizeof hybrid[0]; i++)
            run_all_cuts(ENG_REASONING_MAY_OPEN, hybrid[i], seed);
    }
    split r = reference(ENG_REASONING_MAY_OPEN, hybrid[0], strlen(hybrid[0]));
    ck_assert_str_eq(r.reasoning, "The user greets me. I should greet back.");
    ck_assert_str_eq(r.content, "Hello! How can I help you today? 😊");
    split_free(&r);
}
END_TEST

/* Random mixes of the pieces that matter, in all three modes, every cut style, many seeds. */
START_TEST(test_random_streams)
{
    static const char *pieces[] = {"<think>", "</think>", "\n",     "\n\n", "a",   "bc ",     "é",
                                   "日本",    "😀",        "<",      "</",   "<th", "</think", "think>",
                                   ">",       "<think",   "</thin", "\n</", "x\n"};
    const size_t np = sizeof pieces / sizeof pieces[0];
    char s[512];
    int runs = 0;
    for (uint64_t seed = 1; seed <= 3000; seed++) {
        uint64_t rng = seed * 0x9E3779B97F4A7C15ull | 1;
        size_t w = 0;
        if (rng_next(&rng) % 2) w += (size_t)sprintf(s, "<think>%s", rng_next(&rng) % 2 ? "\n" : "");
        int count = (int)(rng_next(&rng) % 24);
        for (int i = 0; i < count; i++) {
            const char *p = pieces[rng_next(&rng) % np];
            size_t l = strlen(p);
            if (w + l >= sizeof s) break;
            memcpy(s + w, p, l);
            w += l;
        }
        s[w] = '\0';
        for (int start = 0; start <= ENG_REASONING_MAY_OPEN; start++) {
            run_all_cuts((eng_reasoning_start)start, s, seed);
            runs += CUT_MODES;
        }
    }
    ck_assert_int_eq(runs, 3000 * 3 * CUT_MODES);
}
END_TEST

START_TEST(test_api_edges)
{
    eng_reasoning_parser *p;
    ck_assert_int_eq(eng_reasoning_parser_create((eng_reasoning_start)9, &p), ENG_ERR_INVALID);
    ck_assert_ptr_null(p);
    ck_assert_int_eq(eng_reasoning_parser_create(ENG_REASONING_MAY_OPEN, &p), ENG_OK);
    eng_deltas d;
    eng_deltas_init(&d);
    ck_assert(!eng_reasoning_parser_done(p));
    ck_assert_int_eq(eng_reasoning_parser_feed(p, "", 0, &d), ENG_OK);
    ck_assert_int_eq(eng_reasoning_parser_feed(p, "<think>x</think>", 16, &d), ENG_OK);
    ck_assert(eng_reasoning_parser_done(p));
    ck_assert_int_eq(eng_reasoning_parser_finish(p, &d), ENG_OK);
    ck_assert_int_eq(eng_reasoning_parser_finish(p, &d), ENG_OK);
    ck_assert_int_eq(eng_reasoning_parser_feed(p, "y", 1, &d), ENG_ERR_INVALID);
    ck_assert_uint_eq(d.n, 1);
    ck_assert_int_eq(d.items[0].kind, ENG_DELTA_REASONING);
    ck_assert_str_eq(d.items[0].text, "x");
    eng_reasoning_parser_destroy(p);
    eng_reasoning_parser_destroy(NULL);
    eng_deltas_free(&d);
    eng_deltas_free(NULL);

    /* deltas of one kind merge; pointers survive arena growth */
    ck_assert_int_eq(eng_reasoning_parser_create(ENG_REASONING_IN_THOUGHT, &p), ENG_OK);
    eng_deltas_init(&d);
    for (int i = 0; i < 1000; i++) ck_assert_int_eq(eng_reasoning_parser_feed(p, "abcdefgh", 8, &d), ENG_OK);
    ck_assert_uint_eq(d.n, 1);
    ck_assert_uint_eq(d.items[0].len, 8000);
    ck_assert_uint_eq(strlen(d.items[0].text), 8000);
    eng_deltas_free(&d);
    eng_reasoning_parser_destroy(p);
}
END_TEST

START_TEST(test_alloc_failures)
{
    const char *s = "<think>\nsome reasoning that is long enough to need memory\n</think>\n\nand the answer";
    for (long n = 0; n < 200; n++) {
        eng_reasoning_parser *p = NULL;
        eng_deltas d;
        eng_deltas_init(&d);
        eng_alloc_fail_after(n);
        eng_status st = eng_reasoning_parser_create(ENG_REASONING_MAY_OPEN, &p);
        for (size_t i = 0; st == ENG_OK && i < strlen(s); i += 5) {
            size_t k = strlen(s) - i < 5 ? strlen(s) - i : 5;
            st = eng_reasoning_parser_feed(p, s + i, k, &d);
        }
        if (st == ENG_OK) st = eng_reasoning_parser_finish(p, &d);
        eng_alloc_fail_after(-1);
        ck_assert(st == ENG_OK || st == ENG_ERR_NOMEM);
        eng_reasoning_parser_destroy(p);
        eng_deltas_free(&d);
        if (st == ENG_OK) return;
    }
    ck_abort_msg("never succeeded");
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("parse_reasoning");
    TCase *tc = tcase_create("rules");
    tcase_add_test(tc, test_rules);
    tcase_add_test(tc, test_recorded_shapes);
    tcase_add_test(tc, test_api_edges);
    tcase_add_test(tc, test_alloc_failures);
    suite_add_tcase(s, tc);
    tc = tcase_create("random");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_random_streams);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
