/* tests/unit/engine/test_chat_pyjson.c - text/pyjson.c against Python's json / str.
 *
 * tests/fixtures/chat/pyjson_cases.json (from gen_chat_cases.py) holds JSON texts with Python's
 * json.dumps(json.loads(t), ensure_ascii=False) and str(json.loads(t)): fixed edge cases (float
 * spellings, subnormals, huge ints, escapes, duplicate keys, non-printable characters in repr) and
 * 2000 random ones (random doubles in several spellings, big ints, random code points). Each must
 * match byte for byte. Hand-written tests cover what Python accepts and we reject on purpose, the
 * limits, spans and allocation failures.
 */
#include <check.h>
#include <cjson/cJSON.h>

#include "core/core.h"
#include "text/pyjson.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int hexval(char c)
{
    return c <= '9' ? c - '0' : (c | 32) - 'a' + 10;
}

/* expected bytes of field `key` (or key_hex when the text holds NUL) */
static char *expected(const cJSON *c, const char *key, size_t *len)
{
    char hk[32];
    snprintf(hk, sizeof hk, "%s_hex", key);
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(c, hk);
    if (h) {
        size_t n = strlen(h->valuestring) / 2;
        char *s = malloc(n + 1);
        for (size_t i = 0; i < n; i++)
            s[i] = (char)(hexval(h->valuestring[2 * i]) << 4 | hexval(h->valuestring[2 * i + 1]));
        *len = n;
        return s;
    }
    const char *v = cJSON_GetObjectItemCaseSensitive(c, key)->valuestring;
    *len = strlen(v);
    return strdup(v);
}

START_TEST(test_python_cases)
{
    const char *dir = getenv("QNEXT_FIXTURES");
    ck_assert_ptr_nonnull(dir);
    char path[4096];
    snprintf(path, sizeof path, "%s/chat/pyjson_cases.json", dir);
    char *text;
    size_t len;
    ck_assert_msg(eng_file_read(path, 64u << 20, &text, &len) == ENG_OK, "%s", eng_err_last());
    cJSON *doc = cJSON_ParseWithLength(text, len);
    eng_free(text);
    ck_assert_ptr_nonnull(doc);
    int n = 0, fails = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(doc, "cases"))
    {
        const char *json = cJSON_GetObjectItemCaseSensitive(c, "json")->valuestring;
        pj_doc *d;
        const pj_value *v;
        eng_status st = pj_parse(json, strlen(json), NULL, &d, &v);
        if (st != ENG_OK) {
            fprintf(stderr, "FAIL parse %s: %s\n", json, eng_err_last());
            fails++;
            continue;
        }
        static const char *keys[] = {"dumps", "str"};
        for (int k = 0; k < 2; k++) {
            size_t el;
            char *e = expected(c, keys[k], &el);
            eng_buf b;
            eng_buf_init(&b);
            bool ok = k == 0 ? pj_dumps(v, &b, NULL) : pj_str(v, &b);
            if (!ok || b.len != el || memcmp(b.data, e, el) != 0) {
                fprintf(stderr, "FAIL %s(%s):\n  python: %.*s\n  ours:   %.*s\n", keys[k], json, (int)el, e,
                        (int)b.len, b.data ? b.data : "");
                fails++;
            }
            eng_buf_free(&b);
            free(e);
        }
        pj_doc_destroy(d);
        n++;
    }
    cJSON_Delete(doc);
    ck_assert_int_gt(n, 2000);
    ck_assert_msg(fails == 0, "%d of %d pyjson cases differ from Python", fails, n);
}
END_TEST

static eng_status parse(const char *s, pj_doc **d, const pj_value **v)
{
    return pj_parse(s, strlen(s), "t", d, v);
}

START_TEST(test_rejected)
{
    static const char *bad[] = {
        "",
        " ",
        "nul",
        "tru",
        "NaN",
        "Infinity",
        "-Infinity",
        "[1,]",
        "{\"a\":1,}",
        "[1 2]",
        "{\"a\" 1}",
        "{1: 2}",
        "01",
        "1.",
        ".5",
        "-",
        "+1",
        "1e",
        "1e+",
        "0x10",
        "\"\\x41\"",
        "\"\\u12\"",
        "\"\\uZZZZ\"",
        "\"abc",
        "\"a\nb\"",
        "\"\t\"",
        "\"\\ud800\"",
        "\"\\udc00\"",
        "\"\\ud800\\u0041\"",
        "\"\xc3\"",
        "\"\xc0\x80\"",
        "\"\xed\xa0\x80\"",
        "\"\xf4\x90\x80\x80\"",
        "\xef\xbb\xbf{}",
        "{} {}",
        "[] x",
        "\"a\" \"b\"",
        "[",
        "{",
        "{\"a\"",
        "{\"a\":",
        "\xff",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        pj_doc *d = (pj_doc *)1;
        const pj_value *v = (const pj_value *)1;
        eng_status st = parse(bad[i], &d, &v);
        ck_assert_msg(st == ENG_ERR_INVALID, "accepted bad JSON #%zu", i);
        ck_assert_ptr_null(d);
        ck_assert_ptr_null(v);
        ck_assert_msg(strstr(eng_err_last(), "byte") != NULL, "#%zu: detail without position: %s", i,
                      eng_err_last());
    }
}
END_TEST

START_TEST(test_limits)
{
    /* 4300 digits parse, 4301 do not (Python 3.11's int_max_str_digits) */
    char *num = malloc(4400);
    memset(num, '7', 4301);
    num[4300] = '\0';
    pj_doc *d;
    const pj_value *v;
    ck_assert_int_eq(parse(num, &d, &v), ENG_OK);
    ck_assert_int_eq(v->type, PJ_INT);
    ck_assert_uint_eq(v->n, 4300);
    pj_doc_destroy(d);
    num[4300] = '7';
    num[4301] = '\0';
    ck_assert_int_eq(parse(num, &d, &v), ENG_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(eng_err_last(), "4300"));
    /* a float of any length is fine */
    num[0] = '0';
    num[1] = '.';
    ck_assert_int_eq(parse(num, &d, &v), ENG_OK);
    ck_assert_int_eq(v->type, PJ_FLOAT);
    pj_doc_destroy(d);
    free(num);
    /* nesting */
    char deep[2 * (PJ_MAX_DEPTH + 2) + 1];
    for (int depth = PJ_MAX_DEPTH; depth <= PJ_MAX_DEPTH + 1; depth++) {
        int w = 0;
        for (int i = 0; i <= depth; i++) deep[w++] = '[';
        for (int i = 0; i <= depth; i++) deep[w++] = ']';
        deep[w] = '\0';
        eng_status st = parse(deep, &d, &v);
        ck_assert_int_eq(st, depth == PJ_MAX_DEPTH ? ENG_OK : ENG_ERR_INVALID);
        if (st == ENG_OK) pj_doc_destroy(d);
    }
}
END_TEST

START_TEST(test_values_and_spans)
{
    const char *s = " {\"b\": [1, -0, 2.50, \"x\\u00e9\"], \"a\": null, \"b\": {\"k\": true}} ";
    pj_doc *d;
    const pj_value *v;
    ck_assert_int_eq(parse(s, &d, &v), ENG_OK);
    ck_assert_int_eq(v->type, PJ_OBJECT);
    ck_assert_uint_eq(v->n, 2); /* "b" keeps its first place, takes the last value */
    ck_assert_str_eq(v->items[0].s, "b");
    ck_assert_int_eq(v->items[1].type, PJ_OBJECT);
    ck_assert_str_eq(v->items[2].s, "a");
    ck_assert_uint_eq(v->src_off, 1);
    ck_assert_uint_eq(v->src_len, strlen(s) - 2);
    const pj_value *b = pj_get(v, "b");
    ck_assert_int_eq(strncmp(s + b->src_off, "{\"k\": true}", b->src_len), 0);
    ck_assert_ptr_null(pj_get(v, "zz"));
    ck_assert_ptr_null(pj_get(b->items + 1, "k")); /* not an object */
    eng_buf out;
    eng_buf_init(&out);
    ck_assert(pj_dumps(v, &out, NULL));
    ck_assert_str_eq(out.data, "{\"b\": {\"k\": true}, \"a\": null}");
    eng_buf_free(&out);
    pj_doc_destroy(d);

    ck_assert_int_eq(parse("[1, -0, 2.50, \"x\\u00e9\", 1E400]", &d, &v), ENG_OK);
    ck_assert_str_eq(v->items[1].s, "0"); /* -0 is int 0 */
    ck_assert(v->items[2].type == PJ_FLOAT && v->items[2].f == 2.5);
    ck_assert_str_eq(v->items[3].s, "x\xc3\xa9");
    ck_assert(isinf(v->items[4].f));
    eng_buf_init(&out);
    ck_assert(pj_str(v, &out));
    ck_assert_str_eq(out.data, "[1, 0, 2.5, 'x\xc3\xa9', inf]");
    eng_buf_free(&out);
    ck_assert(pj_truthy(&v->items[0]) && !pj_truthy(&v->items[1]));
    ck_assert(!pj_truthy(&pj_undefined));
    pj_doc_destroy(d);

    /* Undefined in dumps is reported, printing it with str() gives nothing */
    eng_buf_init(&out);
    bool undef = false;
    ck_assert(!pj_dumps(&pj_undefined, &out, &undef));
    ck_assert(undef);
    ck_assert(pj_str(&pj_undefined, &out));
    ck_assert_uint_eq(out.len, 0);
    eng_buf_free(&out);
    pj_doc_destroy(NULL);

    ck_assert(pj_utf8_valid("a\xc3\xa9\xf0\x9f\x98\x80", 7));
    ck_assert(!pj_utf8_valid("\xed\xa0\x80", 3));
    ck_assert(!pj_utf8_valid("\xc3", 1));
}
END_TEST

/* float repr on doubles built in C (no text round trip on our side) */
START_TEST(test_float_repr_direct)
{
    static const struct {
        double x;
        const char *py;
    } t[] = {
        {1.0, "1.0"},
        {0.1, "0.1"},
        {1e16, "1e+16"},
        {1e15, "1000000000000000.0"},
        {1e-4, "0.0001"},
        {1e-5, "1e-05"},
        {5e-324, "5e-324"},
        {-0.0, "-0.0"},
        {1.5e300, "1.5e+300"},
        {123.456, "123.456"},
        {2.0 / 3.0, "0.6666666666666666"},
        {1.7976931348623157e308, "1.7976931348623157e+308"},
        {9007199254740993.0, "9007199254740992.0"},
        {INFINITY, "inf"},
        {-INFINITY, "-inf"},
        {NAN, "nan"},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        eng_buf b;
        eng_buf_init(&b);
        ck_assert(pj_float_repr(t[i].x, false, &b));
        ck_assert_str_eq(b.data, t[i].py);
        eng_buf_free(&b);
    }
    eng_buf b;
    eng_buf_init(&b);
    pj_float_repr(-INFINITY, true, &b);
    pj_float_repr(NAN, true, &b);
    ck_assert_str_eq(b.data, "-InfinityNaN");
    eng_buf_free(&b);
}
END_TEST

START_TEST(test_alloc_failures)
{
    const char *s =
        "{\"messages\": [{\"role\": \"user\", \"content\": \"h\\u00e9llo\"}], \"a\": [1.5, 2, [3, {\"k\": "
        "\"v\", \"k\": 9, \"a\": 1, \"b\": 2, \"c\": 3, \"d\": 4, \"e\": 5, \"f\": 6, \"g\": 7, \"h\": 8}]]}";
    int ok_at = -1;
    for (long n = 0; n < 1000 && ok_at < 0; n++) {
        pj_doc *d;
        const pj_value *v;
        eng_alloc_fail_after(n);
        eng_status st = parse(s, &d, &v);
        eng_alloc_fail_after(-1);
        if (st == ENG_OK) {
            ok_at = (int)n;
            pj_doc_destroy(d);
        } else {
            ck_assert_int_eq(st, ENG_ERR_NOMEM);
            ck_assert_ptr_null(d);
        }
    }
    ck_assert_int_gt(ok_at, 0);
}
END_TEST

static Suite *pyjson_suite(void)
{
    Suite *s = suite_create("chat_pyjson");
    TCase *tc = tcase_create("python");
    tcase_add_test(tc, test_python_cases);
    tcase_add_test(tc, test_float_repr_direct);
    suite_add_tcase(s, tc);
    tc = tcase_create("parser");
    tcase_add_test(tc, test_rejected);
    tcase_add_test(tc, test_limits);
    tcase_add_test(tc, test_values_and_spans);
    tcase_add_test(tc, test_alloc_failures);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(pyjson_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
