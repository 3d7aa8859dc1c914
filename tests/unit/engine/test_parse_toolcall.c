/* tests/unit/engine/test_parse_toolcall.c - the streaming tool-call parser and the chained output
 * parser (qnext/chat.h).
 *
 * A one-shot reference splits the whole text into content and blocks with plain searches (first
 * "<tool_call>", then the first "</tool_call>" after it) and judges each block with the JSON
 * parser. Hand cases pin which blocks are calls. Synthetic outputs (valid and broken blocks, stray
 * and partial tags, text, newlines, multi-byte characters, unterminated blocks) are fed in pieces
 * (random 1..7 bytes, the same at UTF-8 boundaries, single bytes, whole) over many seeds; each run
 * must equal the reference and keep the no-loss invariant: CONTENT texts and TOOL_CALL raw blocks,
 * concatenated in order, give back the input byte for byte.
 */
#include <check.h>

#include "core/core.h"
#include "qnext/chat.h"
#include "text/pyjson.h" /* the reference judges blocks with the same JSON rules */

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond, ...)                                                                                     \
    do {                                                                                                     \
        if (!(cond)) ck_abort_msg(__VA_ARGS__);                                                              \
    } while (0)
#define CHECK1(cond) CHECK(cond, "check failed: %s", #cond)

/* ---- reference ------------------------------------------------------------------------------ */

typedef struct ref_item {
    int kind;   /* 0 content, 1 call */
    char *text; /* content text, or the raw block */
    size_t len;
    char *name, *args;
    size_t args_len;
    bool malformed;
} ref_item;

typedef struct ref_list {
    ref_item *it;
    size_t n;
} ref_list;

static char *dup_n(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (n) memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

static void ref_push(ref_list *l, ref_item x)
{
    /* merge adjacent content, as the parser's delta list does */
    if (x.kind == 0 && x.len == 0) {
        free(x.text);
        return;
    }
    if (x.kind == 0 && l->n && l->it[l->n - 1].kind == 0) {
        ref_item *p = &l->it[l->n - 1];
        p->text = realloc(p->text, p->len + x.len + 1);
        memcpy(p->text + p->len, x.text, x.len);
        p->len += x.len;
        p->text[p->len] = '\0';
        p->malformed = p->malformed || x.malformed;
        free(x.text);
        return;
    }
    l->it = realloc(l->it, (l->n + 1) * sizeof *l->it);
    l->it[l->n++] = x;
}

static void ref_free(ref_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->it[i].text);
        free(l->it[i].name);
        free(l->it[i].args);
    }
    free(l->it);
}

static ref_item judge(const char *blk, size_t n)
{
    ref_item x = {.kind = 0, .text = dup_n(blk, n), .len = n, .malformed = true};
    pj_doc *doc;
    const pj_value *root;
    if (pj_parse(blk + 11, n - 23, "ref", &doc, &root) != ENG_OK) return x;
    const pj_value *name = pj_get(root, "name"), *args = pj_get(root, "arguments");
    if (root->type == PJ_OBJECT && name && name->type == PJ_STR && name->n && args) {
        x.kind = 1;
        x.malformed = false;
        x.name = dup_n(name->s, name->n);
        x.args = dup_n(blk + 11 + args->src_off, args->src_len);
        x.args_len = args->src_len;
    }
    pj_doc_destroy(doc);
    return x;
}

static ref_list reference(const char *s, size_t n)
{
    ref_list l = {0};
    size_t pos = 0;
    for (;;) {
        const char *o = memmem(s + pos, n - pos, "<tool_call>", 11);
        if (!o) {
            ref_push(&l, (ref_item){.text = dup_n(s + pos, n - pos), .len = n - pos});
            break;
        }
        size_t at = (size_t)(o - s);
        ref_push(&l, (ref_item){.text = dup_n(s + pos, at - pos), .len = at - pos});
        const char *c = memmem(s + at + 11, n - at - 11, "</tool_call>", 12);
        if (!c) {
            ref_push(&l, (ref_item){.text = dup_n(s + at, n - at), .len = n - at, .malformed = true});
            break;
        }
        size_t end = (size_t)(c - s) + 12;
        ref_push(&l, judge(s + at, end - at));
        pos = end;
    }
    return l;
}

/* ---- running ---------------------------------------------------------------------------------- */

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

enum { CUT_BYTES, CUT_UTF8, CUT_SINGLE, CUT_WHOLE, CUT_MODES };

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

/* Everything the parser emitted over a run, gathered into one list (copies). */
typedef struct got {
    ref_list l;
    char ids[64][32];
    int n_ids;
} got;

static void take(got *g, const eng_deltas *d)
{
    for (size_t i = 0; i < d->n; i++) {
        const eng_delta *it = &d->items[i];
        CHECK1(it->text && strlen(it->text) <= it->len);
        if (it->kind == ENG_DELTA_CONTENT) {
            CHECK1(it->len > 0);
            ref_push(
                &g->l,
                (ref_item){.text = dup_n(it->text, it->len), .len = it->len, .malformed = it->malformed});
        } else if (it->kind == ENG_DELTA_TOOL_CALL) {
            CHECK(i + 1 < d->n && d->items[i + 1].kind == ENG_DELTA_TOOL_ARGS &&
                      d->items[i + 1].index == it->index,
                  "TOOL_CALL not followed by its TOOL_ARGS");
            const eng_delta *a = &d->items[i + 1];
            CHECK1(it->id && strlen(it->id) == 29 && !strncmp(it->id, "call_", 5));
            for (int k = 5; k < 29; k++) CHECK1(isalnum((unsigned char)it->id[k]));
            for (int k = 0; k < g->n_ids; k++)
                CHECK(strcmp(g->ids[k], it->id) != 0, "duplicate call id %s", it->id);
            int calls = 0;
            for (size_t k = 0; k < g->l.n; k++) calls += g->l.it[k].kind == 1;
            CHECK(it->index == calls, "call index %d, expected %d", it->index, calls);
            if (g->n_ids < 64) strcpy(g->ids[g->n_ids++], it->id);
            ref_item x = {.kind = 1,
                          .text = dup_n(it->raw, it->raw_len),
                          .len = it->raw_len,
                          .name = dup_n(it->text, it->len),
                          .args = dup_n(a->text, a->len),
                          .args_len = a->len};
            ref_push(&g->l, x);
            i++;
        } else {
            ck_abort_msg("unexpected delta kind %d", it->kind);
        }
    }
}

static void compare(const ref_list *want, const ref_list *have, const char *s, size_t n, int mode,
                    uint64_t seed)
{
    CHECK(want->n == have->n, "%zu items, expected %zu (mode %d seed %llu) for \"%.*s\"", have->n, want->n,
          mode, (unsigned long long)seed, (int)n, s);
    for (size_t i = 0; i < want->n; i++) {
        const ref_item *a = &want->it[i], *b = &have->it[i];
        CHECK(a->kind == b->kind && a->len == b->len && !memcmp(a->text, b->text, a->len) &&
                  a->malformed == b->malformed,
              "item %zu differs (mode %d seed %llu): want kind %d \"%s\" (malformed %d) got kind %d \"%s\" "
              "(malformed "
              "%d); input \"%.*s\"",
              i, mode, (unsigned long long)seed, a->kind, a->text, a->malformed, b->kind, b->text,
              b->malformed, (int)n, s);
        if (a->kind == 1)
            CHECK(!strcmp(a->name, b->name) && a->args_len == b->args_len &&
                      !memcmp(a->args, b->args, a->args_len),
                  "call %zu: name/args differ: %s %s vs %s %s", i, a->name, a->args, b->name, b->args);
    }
    /* no byte lost or duplicated */
    size_t w = 0;
    for (size_t i = 0; i < have->n; i++) {
        CHECK(w + have->it[i].len <= n && !memcmp(s + w, have->it[i].text, have->it[i].len),
              "reconstruction differs at byte %zu", w);
        w += have->it[i].len;
    }
    CHECK(w == n, "reconstruction has %zu bytes of %zu", w, n);
}

static void run_one(const char *s, size_t n, int mode, uint64_t seed)
{
    ref_list want = reference(s, n);
    eng_toolcall_parser *p;
    CHECK1(eng_toolcall_parser_create(seed, &p) == ENG_OK);
    got g = {0};
    eng_deltas d;
    eng_deltas_init(&d);
    uint64_t rng = seed | 1;
    for (size_t i = 0; i < n;) {
        size_t k = piece_len(mode, &rng, s, i, n);
        eng_deltas_clear(&d);
        CHECK1(eng_toolcall_parser_feed(p, s + i, k, &d) == ENG_OK);
        take(&g, &d);
        i += k;
    }
    eng_deltas_clear(&d);
    CHECK1(eng_toolcall_parser_finish(p, &d) == ENG_OK);
    take(&g, &d);
    compare(&want, &g.l, s, n, mode, seed);
    int calls = 0;
    bool bad = false;
    for (size_t i = 0; i < want.n; i++) calls += want.it[i].kind == 1, bad = bad || want.it[i].malformed;
    CHECK1(eng_toolcall_parser_count(p) == calls);
    CHECK1(eng_toolcall_parser_malformed(p) == bad);
    eng_deltas_free(&d);
    eng_toolcall_parser_destroy(p);
    ref_free(&want);
    ref_free(&g.l);
}

static void run_all_cuts(const char *s, uint64_t seed)
{
    for (int mode = 0; mode < CUT_MODES; mode++) run_one(s, strlen(s), mode, seed);
}

/* ---- hand cases ------------------------------------------------------------------------------- */

/* One-shot parse of s: number of calls and whether a block fell back. */
static void expect_calls(const char *s, int calls, bool malformed, const char *first_args)
{
    ref_list l = reference(s, strlen(s));
    int c = 0;
    bool bad = false;
    const char *args = NULL;
    for (size_t i = 0; i < l.n; i++) {
        if (l.it[i].kind == 1 && !args) args = l.it[i].args;
        c += l.it[i].kind == 1;
        bad = bad || l.it[i].malformed;
    }
    ck_assert_msg(c == calls && bad == malformed, "\"%s\": %d calls (malformed %d)", s, c, bad);
    if (first_args) ck_assert_str_eq(args, first_args);
    ref_free(&l);
    for (uint64_t seed = 1; seed <= 20; seed++) run_all_cuts(s, seed);
}

START_TEST(test_blocks)
{
    expect_calls(
        "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>", 1,
        false, "{\"city\": \"Paris\"}");
    expect_calls(
        "Let me check.\n\n<tool_call>\n{\"name\": \"a\", \"arguments\": {}}\n</tool_call>\n<tool_call>\n"
        "{\"arguments\": [1, 2.50, -0], \"name\": \"b\", \"extra\": 1}\n</tool_call>",
        2, false, "{}");
    expect_calls("<tool_call>{\"name\":\"f\",\"arguments\":{\"x\":1e400}}</tool_call>", 1, false,
                 "{\"x\":1e400}");
    expect_calls("<tool_call>\n{\"name\": \"f\", \"arguments\": \"{\\\"a\\\": 1}\"}\n</tool_call>", 1, false,
                 "\"{\\\"a\\\": 1}\"");
    expect_calls("<tool_call>\n{\"name\": \"f\", \"arguments\": null}\n</tool_call>", 1, false, "null");
    expect_calls("<tool_call> \t\r\n{\"name\": \"f\", \"arguments\": {}} \n\n</tool_call>trailing", 1, false,
                 "{}");
    expect_calls(
        "<tool_call>\n{\"name\": \"dup\", \"arguments\": {\"a\": 1}, \"arguments\": [2]}\n</tool_call>", 1,
        false, "[2]");
    /* malformed: content verbatim */
    expect_calls("<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": }\n</tool_call>", 0, true, NULL);
    expect_calls("<tool_call>\n{\"name\": \"f\"}\n</tool_call>", 0, true, NULL);
    expect_calls("<tool_call>\n{\"arguments\": {}}\n</tool_call>", 0, true, NULL);
    expect_calls("<tool_call>\n{\"name\": \"\", \"arguments\": {}}\n</tool_call>", 0, true, NULL);
    expect_calls("<tool_call>\n{\"name\": 5, \"arguments\": {}}\n</tool_call>", 0, true, NULL);
    expect_calls("<tool_call>\n[{\"name\": \"f\", \"arguments\": {}}]\n</tool_call>", 0, true, NULL);
    expect_calls("<tool_call>\n{\"name\": \"f\", \"arguments\": {}} extra\n</tool_call>", 0, true, NULL);
    expect_calls("<tool_call>\n</tool_call>", 0, true, NULL);
    expect_calls("<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n", 0, true, NULL); /* unterminated */
    expect_calls("<tool_call>", 0, true, NULL);
    expect_calls("<tool_call>\n{\"name\": \"f\", \"arguments\": NaN}\n</tool_call>", 0, true, NULL);
    /* the first close ends a block: a nested open makes it malformed, the next block is separate */
    expect_calls("<tool_call>{bad<tool_call>{\"name\":\"f\",\"arguments\":{}}</tool_call>", 0, true, NULL);
    expect_calls("<tool_call>{bad</tool_call><tool_call>{\"name\":\"g\",\"arguments\":1}</tool_call>", 1,
                 true, "1");
    /* no blocks */
    expect_calls("plain text with </tool_call> and <tool_call and < tool_call> and <tool_cal", 0, false,
                 NULL);
    expect_calls("", 0, false, NULL);
    expect_calls("<<<<tool_call>{\"name\":\"f\",\"arguments\":{}}</tool_call>>>>", 1, false, "{}");
}
END_TEST

/* Synthetic model outputs: pieces chosen to hit every state and tag straddle. */
static const char *pieces[] = {
    "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
    "<tool_call>\n{\"name\": \"search\", \"arguments\": {\"q\": \"日本 😀\", \"k\": 3, \"f\": "
    "1.50e2}}\n</tool_call>",
    "<tool_call>{\"name\":\"x\",\"arguments\":[]}</tool_call>",
    "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": }\n</tool_call>",
    "<tool_call>\n{\"name\": \"f\"}\n</tool_call>",
    "<tool_call>\n{\"name\": \"s\", \"arguments\": \"</tool\"}\n</tool_call>",
    "<tool_call>",
    "</tool_call>",
    "<tool_call",
    "</tool_call",
    "<tool",
    "</",
    "<",
    ">",
    "\n",
    "\n\n",
    "text ",
    "é",
    "日本",
    "😀",
    "{\"name\": \"f\", \"arguments\": {}}",
    "_call>",
    "tool_call>",
};

START_TEST(test_random_streams)
{
    const size_t np = sizeof pieces / sizeof pieces[0];
    char s[2048];
    for (uint64_t seed = 1; seed <= 2500; seed++) {
        uint64_t rng = seed * 0x9E3779B97F4A7C15ull | 1;
        size_t w = 0;
        int count = (int)(rng_next(&rng) % 16);
        for (int i = 0; i < count; i++) {
            const char *p = pieces[rng_next(&rng) % np];
            size_t l = strlen(p);
            if (w + l >= sizeof s) break;
            memcpy(s + w, p, l);
            w += l;
        }
        s[w] = '\0';
        run_all_cuts(s, seed);
    }
}
END_TEST

START_TEST(test_long_block_gives_up)
{
    eng_toolcall_parser *p;
    ck_assert_int_eq(eng_toolcall_parser_create(1, &p), ENG_OK);
    eng_deltas d;
    eng_deltas_init(&d);
    size_t chunk = 1 << 20, total = 0;
    char *junk = malloc(chunk);
    memset(junk, 'x', chunk);
    ck_assert_int_eq(eng_toolcall_parser_feed(p, "<tool_call>", 11, &d), ENG_OK);
    ck_assert_uint_eq(d.n, 0);
    for (int i = 0; i < 17; i++) ck_assert_int_eq(eng_toolcall_parser_feed(p, junk, chunk, &d), ENG_OK);
    ck_assert_int_eq(eng_toolcall_parser_feed(p, "</tool_call>", 12, &d), ENG_OK);
    ck_assert_int_eq(eng_toolcall_parser_finish(p, &d), ENG_OK);
    for (size_t i = 0; i < d.n; i++) {
        ck_assert_int_eq(d.items[i].kind, ENG_DELTA_CONTENT);
        total += d.items[i].len;
    }
    ck_assert_uint_eq(total, 11 + 17 * chunk + 12);
    ck_assert(eng_toolcall_parser_malformed(p));
    ck_assert_int_eq(eng_toolcall_parser_count(p), 0);
    free(junk);
    eng_deltas_free(&d);
    eng_toolcall_parser_destroy(p);
}
END_TEST

START_TEST(test_ids)
{
    /* a fixed seed repeats ids; seed 0 gives different ones per parser */
    char a[2][32], b[32];
    const char *blk = "<tool_call>{\"name\":\"f\",\"arguments\":{}}</tool_call>";
    for (int round = 0; round < 3; round++) {
        eng_toolcall_parser *p;
        ck_assert_int_eq(eng_toolcall_parser_create(round < 2 ? 42 : 0, &p), ENG_OK);
        eng_deltas d;
        eng_deltas_init(&d);
        ck_assert_int_eq(eng_toolcall_parser_feed(p, blk, strlen(blk), &d), ENG_OK);
        ck_assert_uint_eq(d.n, 2);
        ck_assert_int_eq(d.items[0].index, 0);
        ck_assert_str_eq(d.items[0].text, "f");
        ck_assert_uint_eq(d.items[0].raw_len, strlen(blk));
        ck_assert_str_eq(d.items[1].text, "{}");
        if (round < 2)
            strcpy(a[round], d.items[0].id);
        else
            strcpy(b, d.items[0].id);
        eng_deltas_free(&d);
        eng_toolcall_parser_destroy(p);
    }
    ck_assert_str_eq(a[0], a[1]);
    ck_assert_str_ne(a[0], b);
    eng_toolcall_parser_destroy(NULL);
}
END_TEST

/* ---- the chained output parser ---------------------------------------------------------------- */

START_TEST(test_output_parser)
{
    const char *out =
        "<think>\nI need the weather. Maybe <tool_call> here is just a thought.\n</think>\n\nChecking.\n"
        "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";
    size_t n = strlen(out);
    for (uint64_t seed = 1; seed <= 300; seed++) {
        for (int mode = 0; mode < CUT_MODES; mode++) {
            eng_output_parser *p;
            ck_assert_int_eq(eng_output_parser_create(ENG_REASONING_MAY_OPEN, true, seed, &p), ENG_OK);
            eng_deltas d;
            eng_deltas_init(&d);
            eng_buf r, c;
            eng_buf_init(&r);
            eng_buf_init(&c);
            int calls = 0;
            uint64_t rng = seed;
            for (size_t i = 0; i < n;) {
                size_t k = piece_len(mode, &rng, out, i, n);
                CHECK1(eng_output_parser_feed(p, out + i, k, &d) == ENG_OK);
                i += k;
            }
            CHECK1(eng_output_parser_finish(p, &d) == ENG_OK);
            for (size_t i = 0; i < d.n; i++) {
                const eng_delta *it = &d.items[i];
                if (it->kind == ENG_DELTA_REASONING)
                    eng_buf_append(&r, it->text, it->len);
                else if (it->kind == ENG_DELTA_CONTENT)
                    eng_buf_append(&c, it->text, it->len);
                else if (it->kind == ENG_DELTA_TOOL_CALL) {
                    CHECK1(!strcmp(it->text, "get_weather"));
                    calls++;
                } else
                    CHECK1(!strcmp(it->text, "{\"city\": \"Paris\"}"));
            }
            CHECK1(
                !strcmp(eng_buf_cstr(&r), "I need the weather. Maybe <tool_call> here is just a thought."));
            CHECK1(!strcmp(eng_buf_cstr(&c), "Checking.\n"));
            CHECK1(calls == 1);
            CHECK1(eng_toolcall_parser_count(eng_output_parser_tools(p)) == 1);
            eng_buf_free(&r);
            eng_buf_free(&c);
            eng_deltas_free(&d);
            eng_output_parser_destroy(p);
        }
    }
    /* without tools, blocks stay content */
    eng_output_parser *p;
    ck_assert_int_eq(eng_output_parser_create(ENG_REASONING_NONE, false, 1, &p), ENG_OK);
    ck_assert_ptr_null(eng_output_parser_tools(p));
    eng_deltas d;
    eng_deltas_init(&d);
    ck_assert_int_eq(eng_output_parser_feed(p, out, n, &d), ENG_OK);
    ck_assert_int_eq(eng_output_parser_finish(p, &d), ENG_OK);
    ck_assert_uint_eq(d.n, 1);
    ck_assert_uint_eq(d.items[0].len, n);
    eng_deltas_free(&d);
    eng_output_parser_destroy(p);
    eng_output_parser_destroy(NULL);
    ck_assert_int_eq(eng_output_parser_create((eng_reasoning_start)5, true, 1, &p), ENG_ERR_INVALID);
}
END_TEST

START_TEST(test_alloc_failures)
{
    const char *s =
        "<think>\nr\n</think>\n\nhi <tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": [1, 2]}}\n"
        "</tool_call>\n<tool_call>\n{bad}\n</tool_call> bye <tool_call";
    for (long n = 0; n < 500; n++) {
        eng_output_parser *p = NULL;
        eng_deltas d;
        eng_deltas_init(&d);
        eng_alloc_fail_after(n);
        eng_status st = eng_output_parser_create(ENG_REASONING_MAY_OPEN, true, 3, &p);
        for (size_t i = 0; st == ENG_OK && i < strlen(s); i += 3) {
            size_t k = strlen(s) - i < 3 ? strlen(s) - i : 3;
            st = eng_output_parser_feed(p, s + i, k, &d);
        }
        if (st == ENG_OK) st = eng_output_parser_finish(p, &d);
        eng_alloc_fail_after(-1);
        ck_assert(st == ENG_OK || st == ENG_ERR_NOMEM);
        eng_output_parser_destroy(p);
        eng_deltas_free(&d);
        if (st == ENG_OK) return;
    }
    ck_abort_msg("never succeeded");
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("parse_toolcall");
    TCase *tc = tcase_create("toolcall");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_blocks);
    tcase_add_test(tc, test_random_streams);
    tcase_add_test(tc, test_long_block_gives_up);
    tcase_add_test(tc, test_ids);
    suite_add_tcase(s, tc);
    tc = tcase_create("output");
    tcase_add_test(tc, test_output_parser);
    tcase_add_test(tc, test_alloc_failures);
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
