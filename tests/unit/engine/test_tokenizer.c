/* tests/unit/engine/test_tokenizer.c - unit tests of the Qwen3 BPE tokenizer (text/tokenizer*.c,
 * text/pretok.c, text/detok.c) and the tokenize/detokenize CLI commands.
 *
 * Expected values come from Hugging Face `tokenizers` (fixture files written by
 * tests/fixtures/tokenizer/gen_corpus.py, or literals copied from its output), from the Unicode /
 * UTF-8 standards, or are properties that must hold (lossless bytes, streaming == batch).
 * The whole-corpus exactness check is test_tokenizer_corpus.c.
 *
 * TCases: unicode (classes of all code points vs HF), pretok (regex splits vs HF), lookups,
 * added (special / non-special matching in both modes), utf8 (invalid input, lossy decode),
 * detok (streaming with random split points, errors), load (unsupported / malformed files),
 * threads (concurrent encode on one tokenizer), faults (allocation failure sweeps), cli.
 */
#include "test_tokenizer_util.h" /* defines: tk_fixture, tk_jsonl_read, tk_get_*, tk_show* */

#include "text/pretok.h" /* defines: qn_pretok_class_of, qn_pretok_next, QN_CC_* */

#include <check.h>
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>
#include <utf8proc.h>

static eng_tokenizer *g_tok; /* the Qwen3 fixture tokenizer, loaded once in the parent */

static void load_once(void)
{
    if (eng_tokenizer_load(tk_fixture("tokenizer.json"), &g_tok) != ENG_OK) {
        fprintf(stderr, "cannot load the fixture tokenizer: %s\n", eng_err_last());
        g_tok = NULL;
    }
}

static void unload(void)
{
    eng_tokenizer_destroy(g_tok);
    g_tok = NULL;
}

/* encode helper: ids into a caller array, returns the count */
static size_t enc(const eng_tokenizer *t, const char *s, size_t len, bool special, int32_t *out, size_t cap)
{
    int32_t *ids = NULL;
    size_t n = 0;
    ck_assert_msg(eng_tokenizer_encode(t, s, len, special, &ids, &n) == ENG_OK, "encode: %s", eng_err_last());
    ck_assert_ptr_nonnull(ids);
    ck_assert_msg(n <= cap, "too many ids (%zu)", n);
    memcpy(out, ids, n * sizeof *ids);
    eng_free(ids);
    return n;
}

#define ASSERT_IDS(got, ngot, ...)                                                                           \
    do {                                                                                                     \
        const int32_t exp_[] = {__VA_ARGS__};                                                                \
        size_t nexp_ = sizeof exp_ / sizeof exp_[0];                                                         \
        ck_assert_msg((ngot) == nexp_ && !memcmp((got), exp_, sizeof exp_),                                  \
                      "ids differ:\n  expected %s\n  got      %s", tk_show_ids(exp_, nexp_, 0),              \
                      tk_show_ids((got), (ngot), 1));                                                        \
    } while (0)

/* ==== unicode: classes of every code point ===================================================== */

START_TEST(test_unicode_classes_match_hf)
{
    /* HF's view, from corpus_unicode.txt: 'L', 'N', 'S' or 0 per code point */
    char *hf = calloc(0x110000, 1);
    FILE *f = fopen(tk_fixture("corpus_unicode.txt"), "r");
    ck_assert_msg(f != NULL, "cannot open %s", tk_fixture("corpus_unicode.txt"));
    char line[128];
    size_t n_ranges = 0;
    while (fgets(line, sizeof line, f)) {
        char k;
        unsigned a, b;
        if (line[0] == '#' || sscanf(line, "%c %x %x", &k, &a, &b) != 3) continue;
        ck_assert(a <= b && b < 0x110000);
        memset(hf + a, k, b - a + 1);
        n_ranges++;
    }
    fclose(f);
    ck_assert_uint_gt(n_ranges, 100);
    size_t mism = 0, newer = 0, checked = 0;
    for (int32_t cp = 0; cp < 0x110000; cp++) {
        if (cp >= 0xD800 && cp <= 0xDFFF) continue;
        uint8_t c = qn_pretok_class_of(cp);
        uint8_t k = c & QN_CC_MASK;
        char ours = k == QN_CC_L ? 'L' : k == QN_CC_N ? 'N' : (k == QN_CC_S || k == QN_CC_NL) ? 'S' : 0;
        checked++;
        if (ours == hf[cp]) continue;
        if (c & QN_CC_UNASSIGNED) { /* assigned after utf8proc's Unicode version */
            newer++;
            continue;
        }
        if (++mism <= 20)
            fprintf(stderr, "U+%04X: HF says %c, we say %c\n", (unsigned)cp, hf[cp] ? hf[cp] : '-',
                    ours ? ours : '-');
    }
    free(hf);
    fprintf(stderr,
            "unicode classes: %zu code points checked; %zu differ only because utf8proc %s (Unicode %s) has "
            "them unassigned\n",
            checked, newer, utf8proc_version(), utf8proc_unicode_version());
    ck_assert_msg(mism == 0, "%zu code points are classed differently from HF", mism);
    /* Unicode 16 added 5,185 characters; anything beyond that would be a real disagreement */
    ck_assert_msg(newer < 6000, "%zu code points unassigned in utf8proc but classed by HF", newer);
    if (strcmp(utf8proc_unicode_version(), "16") >= 0) ck_assert_uint_eq(newer, 0);
}
END_TEST

START_TEST(test_unicode_space_definition)
{
    /* \s as Oniguruma defines it: 9-13, 0x85, Zs, Zl, Zp; not the file/group/record/unit separators */
    const int32_t spaces[] = {0x09,   0x0B,   0x0C,   0x20,   0x85,   0xA0,   0x1680,
                              0x2000, 0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000};
    for (size_t i = 0; i < sizeof spaces / sizeof spaces[0]; i++)
        ck_assert_msg((qn_pretok_class_of(spaces[i]) & QN_CC_MASK) == QN_CC_S, "U+%04X should be \\s",
                      (unsigned)spaces[i]);
    ck_assert_int_eq(qn_pretok_class_of('\n') & QN_CC_MASK, QN_CC_NL);
    ck_assert_int_eq(qn_pretok_class_of('\r') & QN_CC_MASK, QN_CC_NL);
    const int32_t not_spaces[] = {0x1C, 0x1D, 0x1E, 0x1F, 0x200B, 0x180E, 0xFEFF, 0x2060};
    for (size_t i = 0; i < sizeof not_spaces / sizeof not_spaces[0]; i++)
        ck_assert_msg((qn_pretok_class_of(not_spaces[i]) & QN_CC_MASK) == QN_CC_OTHER,
                      "U+%04X should not be \\s", (unsigned)not_spaces[i]);
}
END_TEST

/* ==== pretok: regex splits ====================================================================== */

START_TEST(test_pretok_splits_match_hf)
{
    size_t n = 0, fails = 0;
    qn_pretok_init(); /* qn_pretok_next reads the class tables (eng_tokenizer_load builds them) */
    cJSON **recs = tk_jsonl_read(tk_fixture("corpus_pretok.jsonl"), &n);
    ck_assert_msg(recs && n > 300, "cannot read corpus_pretok.jsonl");
    for (size_t r = 0; r < n; r++) {
        size_t tl;
        char *t = tk_get_str(recs[r], "t", &tl);
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(recs[r], "p"), *it;
        ck_assert(t && cJSON_IsArray(p));
        size_t i = 0, k = 0;
        bool ok = true;
        cJSON_ArrayForEach(it, p)
        {
            size_t pl;
            char *piece = tk_val_str(it, &pl);
            ck_assert(piece != NULL);
            size_t j = i < tl ? qn_pretok_next((const uint8_t *)t, tl, i) : i;
            if (j - i != pl || memcmp(t + i, piece, pl)) {
                if (ok && ++fails <= 10)
                    fprintf(stderr, "split of \"%s\": piece %zu expected \"%s\", got \"%s\"\n",
                            tk_show(t, tl, 0), k, tk_show(piece, pl, 1), tk_show(t + i, j - i, 2));
                ok = false;
            }
            free(piece);
            i = j;
            k++;
        }
        if (ok && i != tl && ++fails <= 10)
            fprintf(stderr, "split of \"%s\": extra pieces after %zu\n", tk_show(t, tl, 0), k);
        free(t);
    }
    tk_jsonl_free(recs);
    ck_assert_msg(fails == 0, "%zu of %zu strings split differently from HF", fails, n);
}
END_TEST

/* literal HF splits for the cases the regex is easiest to get wrong */
START_TEST(test_pretok_literal_cases)
{
    static const struct {
        const char *text;
        const char *pieces[10];
    } cases[] = {
        {"Hello world's  test\n\n  x  ", {"Hello", " world", "'s", " ", " test", "\n\n", " ", " x", "  "}},
        {"x'sam", {"x", "'s", "am"}},
        {"I'LL", {"I", "'LL"}},
        {"'ſ", {"'ſ"}}, /* U+017F LONG S case-folds to s */
        {"'ſam", {"'ſ", "am"}},
        {"'LLama", {"'LL", "ama"}},
        {"'\xe2\x84\xaa", {"'\xe2\x84\xaa"}}, /* 'K (Kelvin): a letter after ', not a contraction */
        {"   !", {"  ", " !"}},
        {"\t!", {"\t", "!"}},
        {"a \n \n b", {"a", " \n \n", " b"}},
        {"((hello", {"((", "hello"}},
        {"\xc2\xa0hello", {"\xc2\xa0hello"}},
    };
    qn_pretok_init();
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const uint8_t *s = (const uint8_t *)cases[c].text;
        size_t n = strlen(cases[c].text), i = 0, k = 0;
        while (i < n) {
            size_t j = qn_pretok_next(s, n, i);
            ck_assert(k < 9);
            const char *want = cases[c].pieces[k];
            ck_assert_msg(want != NULL, "\"%s\": extra piece \"%s\"", tk_show(s, n, 0),
                          tk_show(s + i, j - i, 1));
            ck_assert_msg(j - i == strlen(want) && !memcmp(s + i, want, j - i),
                          "\"%s\": piece %zu is \"%s\", want \"%s\"", tk_show(s, n, 0), k,
                          tk_show(s + i, j - i, 1), tk_show(want, strlen(want), 2));
            i = j;
            k++;
        }
        ck_assert_msg(cases[c].pieces[k] == NULL, "\"%s\": missing pieces", tk_show(s, n, 0));
    }
    /* the last piece of "  " at the end of text: branch \s+(?!\S) takes the whole run */
    const uint8_t *s = (const uint8_t *)"x  ";
    ck_assert_uint_eq(qn_pretok_next(s, 3, 1), 3);
}
END_TEST

/* ==== lookups =================================================================================== */

START_TEST(test_lookups)
{
    ck_assert_ptr_nonnull(g_tok);
    ck_assert_int_eq(eng_tokenizer_vocab_size(g_tok), 151669);
    ck_assert_int_eq(eng_tokenizer_token_id(g_tok, "<|endoftext|>"), 151643);
    ck_assert_int_eq(eng_tokenizer_token_id(g_tok, "<|im_start|>"), 151644);
    ck_assert_int_eq(eng_tokenizer_token_id(g_tok, "<|im_end|>"), 151645);
    ck_assert_int_eq(eng_tokenizer_token_id(g_tok, "<tool_call>"), 151657);
    ck_assert_int_eq(eng_tokenizer_token_id(g_tok, "</think>"), 151668);
    ck_assert_int_eq(eng_tokenizer_token_id(g_tok, "Ġhello"), 23811);
    ck_assert_int_eq(eng_tokenizer_token_id(g_tok, "!"), 0);
    ck_assert_int_eq(eng_tokenizer_token_id(g_tok, "no such token \xff"), -1);
    ck_assert_int_eq(eng_tokenizer_token_id(g_tok, ""), -1);
    ck_assert_int_eq(eng_tokenizer_token_id(g_tok, NULL), -1);
    ck_assert_int_eq(eng_tokenizer_token_id_n(g_tok, "<|im_end|>xyz", 10), 151645);

    size_t len;
    ck_assert_str_eq(eng_tokenizer_token_str(g_tok, 23811, &len), "Ġhello");
    ck_assert_uint_eq(len, strlen("Ġhello"));
    ck_assert_str_eq(eng_tokenizer_token_str(g_tok, 151667, NULL), "<think>");
    ck_assert_ptr_null(eng_tokenizer_token_str(g_tok, -1, &len));
    ck_assert_ptr_null(eng_tokenizer_token_str(g_tok, 151669, &len));
    ck_assert_uint_eq(len, 0);

    const uint8_t *b = eng_tokenizer_token_bytes(g_tok, 23811, &len);
    ck_assert_uint_eq(len, 6);
    ck_assert(!memcmp(b, " hello", 6));
    b = eng_tokenizer_token_bytes(g_tok, 198, &len); /* "Ċ" */
    ck_assert(len == 1 && b[0] == '\n');
    b = eng_tokenizer_token_bytes(g_tok, 151645, &len);
    ck_assert(len == 10 && !memcmp(b, "<|im_end|>", 10));
    /* a token that is half of a UTF-8 character: "ä¸" is E4 B8 (the start of 中) */
    int32_t half = eng_tokenizer_token_id(g_tok, "ä¸");
    ck_assert_int_ge(half, 0);
    b = eng_tokenizer_token_bytes(g_tok, half, &len);
    ck_assert(len == 2 && b[0] == 0xE4 && b[1] == 0xB8);
    ck_assert_ptr_null(eng_tokenizer_token_bytes(g_tok, 1 << 30, &len));

    ck_assert(eng_tokenizer_is_special(g_tok, 151643));
    ck_assert(eng_tokenizer_is_special(g_tok, 151645));
    ck_assert(eng_tokenizer_is_special(g_tok, 151656));
    ck_assert(!eng_tokenizer_is_special(g_tok, 151657)); /* <tool_call> */
    ck_assert(!eng_tokenizer_is_special(g_tok, 151667)); /* <think> */
    ck_assert(!eng_tokenizer_is_special(g_tok, 100));
    ck_assert(!eng_tokenizer_is_special(g_tok, -5));
    ck_assert(eng_tokenizer_is_added(g_tok, 151667));
    ck_assert(!eng_tokenizer_is_added(g_tok, 151642));
    for (int32_t id = 151643; id <= 151668; id++) ck_assert(eng_tokenizer_is_added(g_tok, id));
}
END_TEST

/* ==== added tokens ============================================================================== */

START_TEST(test_added_token_modes)
{
    /* literals from HF tokenizers 0.23 (encode_special_tokens True / False) */
    const char *s = "<|im_start|>user\n<think>hi</think><tool_call>x<|im_end|><|endoftext|>";
    int32_t ids[64];
    size_t n = enc(g_tok, s, strlen(s), false, ids, 64);
    ASSERT_IDS(ids, n, 27, 91, 318, 4906, 91, 29, 872, 198, 151667, 6023, 151668, 151657, 87, 27, 91, 318,
               6213, 91, 1784, 91, 8691, 723, 427, 91, 29);
    n = enc(g_tok, s, strlen(s), true, ids, 64);
    ASSERT_IDS(ids, n, 151644, 872, 198, 151667, 6023, 151668, 151657, 87, 151645, 151643);
    /* decode with and without skipping: only special tokens are dropped */
    char *text;
    size_t len;
    ck_assert_int_eq(eng_tokenizer_decode(g_tok, ids, n, true, &text, &len), ENG_OK);
    ck_assert_str_eq(text, "user\n<think>hi</think><tool_call>x");
    ck_assert_uint_eq(len, strlen(text));
    eng_free(text);
    ck_assert_int_eq(eng_tokenizer_decode(g_tok, ids, n, false, &text, &len), ENG_OK);
    ck_assert_str_eq(text, s);
    eng_free(text);
}
END_TEST

START_TEST(test_added_token_adjacency)
{
    int32_t ids[64];
    /* glued to words and repeated; the longest match wins, partial tokens are text */
    size_t n = enc(g_tok, "a<think>b", 9, false, ids, 64);
    ck_assert(n == 3 && ids[1] == 151667);
    n = enc(g_tok, "<think><think>", 14, true, ids, 64);
    ASSERT_IDS(ids, n, 151667, 151667);
    n = enc(g_tok, "<|im_start", 10, true, ids, 64);
    for (size_t i = 0; i < n; i++) ck_assert_int_lt(ids[i], 151643);
    n = enc(g_tok, "", 0, true, ids, 64);
    ck_assert_uint_eq(n, 0);
    int32_t *p = NULL;
    size_t np = 99;
    ck_assert_int_eq(eng_tokenizer_encode(g_tok, NULL, 0, false, &p, &np), ENG_OK);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq(np, 0);
    eng_free(p);
    ck_assert_int_eq(eng_tokenizer_encode(g_tok, NULL, 3, false, &p, &np), ENG_ERR_INVALID);
    ck_assert_ptr_null(p);
}
END_TEST

/* ==== utf8: invalid input and lossy decode ====================================================== */

/* concatenated token bytes of ids */
static size_t cat_bytes(const int32_t *ids, size_t n, uint8_t *out, size_t cap)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l;
        const uint8_t *b = eng_tokenizer_token_bytes(g_tok, ids[i], &l);
        ck_assert_ptr_nonnull(b);
        ck_assert(k + l <= cap);
        memcpy(out + k, b, l);
        k += l;
    }
    return k;
}

START_TEST(test_invalid_utf8_is_lossless)
{
    static const struct {
        const char *in;
        size_t len;
        const char *decoded; /* what HF-style lossy decoding gives (maximal subparts -> U+FFFD) */
    } cases[] = {
        {"\xff", 1, "\xef\xbf\xbd"},
        {"abc\xe2\x82", 5, "abc\xef\xbf\xbd"},
        {"\xe2\x82"
         "A",
         3,
         "\xef\xbf\xbd"
         "A"},
        {"\xc0\xaf", 2, "\xef\xbf\xbd\xef\xbf\xbd"},
        {"a\xed\xa0\x80"
         "b",
         5,
         "a\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
         "b"},
        {"\xf0\x80\x80\x80", 4, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
        {"\xf4\x90\x80\x80", 4, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
        {"\xf0\x9f\x98", 3, "\xef\xbf\xbd"},
        {"x\x80\x80y", 4, "x\xef\xbf\xbd\xef\xbf\xbdy"},
        {"<think>\xfe</think>", 16, "<think>\xef\xbf\xbd</think>"},
        {"a\0b", 3, "a\0b"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        for (int mode = 0; mode < 2; mode++) {
            int32_t ids[64];
            size_t n = enc(g_tok, cases[c].in, cases[c].len, mode, ids, 64);
            uint8_t back[256];
            size_t bl = cat_bytes(ids, n, back, sizeof back);
            ck_assert_msg(bl == cases[c].len && !memcmp(back, cases[c].in, bl),
                          "case %zu: bytes not preserved: \"%s\"", c, tk_show(back, bl, 0));
            char *text;
            size_t tl;
            ck_assert_int_eq(eng_tokenizer_decode(g_tok, ids, n, false, &text, &tl), ENG_OK);
            size_t el = cases[c].len == 3 && cases[c].in[1] == 0 ? 3 : strlen(cases[c].decoded);
            ck_assert_msg(tl == el && !memcmp(text, cases[c].decoded, el), "case %zu: decoded \"%s\"", c,
                          tk_show(text, tl, 0));
            eng_free(text);
        }
    }
}
END_TEST

START_TEST(test_random_bytes_round_trip)
{
    /* random byte strings (ASCII mixed with high bytes, so NFC has nothing to change): encoding
     * never fails and the ids' bytes reproduce the input exactly */
    unsigned seed = 12345;
    for (int r = 0; r < 2000; r++) {
        uint8_t in[64];
        size_t n = 1 + (size_t)(rand_r(&seed) % 63);
        for (size_t i = 0; i < n; i++) {
            int x = rand_r(&seed) % 4;
            in[i] = (uint8_t)(x == 0   ? 0x80 + rand_r(&seed) % 128
                              : x == 1 ? ' ' + rand_r(&seed) % 95
                                       : "a \n'!"[rand_r(&seed) % 5]);
            if (x == 0 && in[i] >= 0xCC && in[i] <= 0xCF) in[i] = 0xFF; /* avoid combining-mark leads (NFC) */
        }
        bool stable = true; /* valid code points NFC leaves alone everywhere (invalid bytes pass through) */
        for (size_t i = 0; i < n;) {
            int32_t cp;
            i += qn_utf8_unit(in, n, i, &cp);
            if (cp >= 0 && !(qn_pretok_class_of(cp) & QN_CC_NFC_STABLE)) stable = false;
        }
        if (!stable) continue;
        int32_t ids[128];
        size_t k = enc(g_tok, (const char *)in, n, r & 1, ids, 128);
        uint8_t back[512];
        size_t bl = cat_bytes(ids, k, back, sizeof back);
        ck_assert_msg(bl == n && !memcmp(back, in, n), "round %d: \"%s\" came back as \"%s\"", r,
                      tk_show(in, n, 0), tk_show(back, bl, 1));
    }
}
END_TEST

START_TEST(test_nfc_hostile_marks_linear)
{
    /* "a" followed by 100,000 pairs U+0301 U+0316 (ccc 230, 220): canonical ordering must move
     * every U+0316 ahead of every U+0301. A bubble sort would take minutes; the result is
     * NFC = U+00E1 + 100,000 x U+0316 + 99,999 x U+0301 (checked against Python's unicodedata and
     * HF tokenizers for smaller N). */
    const size_t N = 100000;
    eng_buf in, want;
    eng_buf_init(&in);
    eng_buf_init(&want);
    eng_buf_puts(&in, "a");
    for (size_t i = 0; i < N; i++) eng_buf_puts(&in, "\xcc\x81\xcc\x96");
    eng_buf_puts(&want, "\xc3\xa1");
    for (size_t i = 0; i < N; i++) eng_buf_puts(&want, "\xcc\x96");
    for (size_t i = 0; i + 1 < N; i++) eng_buf_puts(&want, "\xcc\x81");
    double t0 = eng_now_s();
    int32_t *ids;
    size_t n;
    ck_assert_int_eq(eng_tokenizer_encode(g_tok, in.data, in.len, false, &ids, &n), ENG_OK);
    double dt = eng_now_s() - t0;
    char *text;
    size_t len;
    ck_assert_int_eq(eng_tokenizer_decode(g_tok, ids, n, false, &text, &len), ENG_OK);
    ck_assert_msg(len == want.len && !memcmp(text, want.data, len), "wrong NFC of the mark run");
    ck_assert_msg(dt < 20.0, "encoding %zu bytes of combining marks took %.1f s", in.len, dt);
    eng_free(text);
    eng_free(ids);
    eng_buf_free(&in);
    eng_buf_free(&want);
}
END_TEST

/* ==== detok: streaming ========================================================================== */

/* Lossy-decodes bytes via the batch decoder using single-byte tokens (reference for streaming). */
static int32_t byte_token(uint8_t b)
{
    /* byte-level alphabet: printable bytes map to themselves, the others to U+0100.. in order */
    int32_t cp = b;
    if (!((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174)) {
        int k = 0;
        for (int x = 0; x < b; x++)
            if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || x >= 174)) k++;
        cp = 256 + k;
    }
    char u[4] = {0};
    if (cp < 0x80)
        u[0] = (char)cp;
    else {
        u[0] = (char)(0xC0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3F));
    }
    return eng_tokenizer_token_id(g_tok, u);
}

START_TEST(test_detok_random_splits)
{
    /* a text whose characters are 1-4 bytes long, cut into random chunks; each chunk becomes one
     * token if the vocabulary has it, else single-byte tokens. The stream must give the text
     * back exactly, emit only valid UTF-8, hold back at most 3 bytes and emit each character as
     * soon as its last byte arrives. */
    const char *text =
        "héllo wörld — 世界、こんにちは 👩‍👩‍👧 👍🏽 ∑x² ΩΩ ﷽ 𝐀 end";
    size_t tl = strlen(text);
    unsigned seed = 7;
    for (int round = 0; round < 300; round++) {
        int32_t ids[512];
        size_t n = 0, i = 0;
        while (i < tl) {
            size_t chunk = 1 + (size_t)(rand_r(&seed) % 4);
            if (chunk > tl - i) chunk = tl - i;
            /* find a token for the chunk by its byte-level string */
            char s[32];
            size_t sl = 0;
            for (size_t k = 0; k < chunk; k++) {
                size_t bl;
                const uint8_t *bs = eng_tokenizer_token_bytes(g_tok, byte_token((uint8_t)text[i + k]), &bl);
                ck_assert(bl == 1 && bs[0] == (uint8_t)text[i + k]);
                const char *str = eng_tokenizer_token_str(g_tok, byte_token((uint8_t)text[i + k]), &bl);
                memcpy(s + sl, str, bl);
                sl += bl;
            }
            int32_t id = eng_tokenizer_token_id_n(g_tok, s, sl);
            if (id >= 0) {
                ids[n++] = id;
            } else {
                for (size_t k = 0; k < chunk; k++) ids[n++] = byte_token((uint8_t)text[i + k]);
            }
            i += chunk;
        }
        eng_detok *d;
        ck_assert_int_eq(eng_detok_create(g_tok, round & 1, &d), ENG_OK);
        eng_buf acc;
        eng_buf_init(&acc);
        size_t fed = 0; /* bytes pushed so far */
        for (size_t k = 0; k < n; k++) {
            const char *p;
            size_t pl, bl;
            ck_assert_int_eq(eng_detok_push(d, ids[k], &p, &pl), ENG_OK);
            ck_assert_uint_eq(qn_utf8_valid_prefix((const uint8_t *)p, pl), pl);
            eng_buf_append(&acc, p, pl);
            eng_tokenizer_token_bytes(g_tok, ids[k], &bl);
            fed += bl;
            ck_assert_uint_le(eng_detok_pending(d), 3);
            /* everything up to the last complete character has been emitted */
            ck_assert_uint_eq(acc.len, qn_utf8_valid_prefix((const uint8_t *)text, fed));
            ck_assert_uint_eq(acc.len + eng_detok_pending(d), fed);
        }
        const char *p;
        size_t pl;
        ck_assert_int_eq(eng_detok_flush(d, &p, &pl), ENG_OK);
        ck_assert_uint_eq(pl, 0);
        ck_assert_msg(acc.len == tl && !memcmp(acc.data, text, tl), "round %d: got \"%s\"", round,
                      tk_show(acc.data, acc.len, 0));
        eng_buf_free(&acc);
        eng_detok_destroy(d);
    }
}
END_TEST

START_TEST(test_detok_invalid_and_flush)
{
    eng_detok *d;
    ck_assert_int_eq(eng_detok_create(g_tok, false, &d), ENG_OK);
    const char *p;
    size_t pl;
    /* E4 B8 (two thirds of 中) is held back */
    ck_assert_int_eq(eng_detok_push(d, eng_tokenizer_token_id(g_tok, "ä¸"), &p, &pl), ENG_OK);
    ck_assert_uint_eq(pl, 0);
    ck_assert_str_eq(p, "");
    ck_assert_uint_eq(eng_detok_pending(d), 2);
    /* an invalid id is refused and changes nothing */
    ck_assert_int_eq(eng_detok_push(d, -1, &p, &pl), ENG_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(eng_err_last(), "-1"));
    ck_assert_int_eq(eng_detok_push(d, 151669, &p, &pl), ENG_ERR_INVALID);
    ck_assert_uint_eq(eng_detok_pending(d), 2);
    /* "A" breaks the sequence: one U+FFFD for the two bytes, then "A" */
    ck_assert_int_eq(eng_detok_push(d, eng_tokenizer_token_id(g_tok, "A"), &p, &pl), ENG_OK);
    ck_assert_uint_eq(pl, 4);
    ck_assert(!memcmp(p,
                      "\xef\xbf\xbd"
                      "A",
                      4));
    /* a lone lead byte left at the end becomes U+FFFD at flush */
    ck_assert_int_eq(eng_detok_push(d, eng_tokenizer_token_id(g_tok, "ä"), &p, &pl), ENG_OK);
    ck_assert_uint_eq(pl, 0);
    ck_assert_int_eq(eng_detok_flush(d, &p, &pl), ENG_OK);
    ck_assert(pl == 3 && !memcmp(p, "\xef\xbf\xbd", 3));
    ck_assert_uint_eq(eng_detok_pending(d), 0);
    /* reset drops pending bytes silently */
    ck_assert_int_eq(eng_detok_push(d, eng_tokenizer_token_id(g_tok, "ä"), &p, &pl), ENG_OK);
    eng_detok_reset(d);
    ck_assert_int_eq(eng_detok_flush(d, &p, &pl), ENG_OK);
    ck_assert_uint_eq(pl, 0);
    eng_detok_destroy(d);
    eng_detok_destroy(NULL);
    /* skip_special: special tokens vanish, non-special added tokens stay, pending bytes survive */
    ck_assert_int_eq(eng_detok_create(g_tok, true, &d), ENG_OK);
    ck_assert_int_eq(eng_detok_push(d, eng_tokenizer_token_id(g_tok, "ä¸"), &p, &pl), ENG_OK);
    ck_assert_int_eq(eng_detok_push(d, 151645, &p, &pl), ENG_OK);
    ck_assert_uint_eq(pl, 0);
    ck_assert_int_eq(eng_detok_push(d, eng_tokenizer_token_id(g_tok, "Ń"), &p, &pl), ENG_OK); /* byte AD */
    ck_assert_str_eq(p, "中");
    ck_assert_int_eq(eng_detok_push(d, 151667, &p, &pl), ENG_OK);
    ck_assert_str_eq(p, "<think>");
    eng_detok_destroy(d);
    ck_assert_int_eq(eng_detok_create(NULL, false, &d), ENG_ERR_INVALID);
}
END_TEST

START_TEST(test_decode_errors)
{
    char *text = (char *)1;
    size_t len = 7;
    const int32_t bad1[] = {9707, -1};
    ck_assert_int_eq(eng_tokenizer_decode(g_tok, bad1, 2, false, &text, &len), ENG_ERR_INVALID);
    ck_assert_ptr_null(text);
    ck_assert_uint_eq(len, 0);
    ck_assert_ptr_nonnull(strstr(eng_err_last(), "-1"));
    ck_assert_ptr_nonnull(strstr(eng_err_last(), "position 1"));
    const int32_t bad2[] = {151669};
    ck_assert_int_eq(eng_tokenizer_decode(g_tok, bad2, 1, true, &text, &len), ENG_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(eng_err_last(), "151669"));
    const int32_t bad3[] = {INT32_MAX, 0};
    ck_assert_int_eq(eng_tokenizer_decode(g_tok, bad3, 2, false, &text, &len), ENG_ERR_INVALID);
    ck_assert_int_eq(eng_tokenizer_decode(g_tok, NULL, 1, false, &text, &len), ENG_ERR_INVALID);
    ck_assert_int_eq(eng_tokenizer_decode(g_tok, NULL, 0, false, &text, &len), ENG_OK);
    ck_assert_str_eq(text, "");
    eng_free(text);
}
END_TEST

/* ==== load: malformed and unsupported files ====================================================== */

static char *g_seed; /* tests/fuzz/corpus/tokenizer_json/seed_strings.json */
static size_t g_seed_len;

static void load_seed(void)
{
    char path[8192];
    snprintf(path, sizeof path, "%s/../../fuzz/corpus/tokenizer_json/seed_strings.json", tk_fixture(""));
    ck_assert_msg(eng_file_read(path, 1 << 20, &g_seed, &g_seed_len) == ENG_OK, "%s", eng_err_last());
}

/* loads the seed with the first `from` replaced by `to`; returns the status, message in eng_err_last() */
static eng_status load_variant(const char *from, const char *to)
{
    load_seed();
    char *at = strstr(g_seed, from);
    ck_assert_msg(at != NULL, "seed has no \"%s\"", from);
    eng_buf b;
    eng_buf_init(&b);
    eng_buf_append(&b, g_seed, (size_t)(at - g_seed));
    eng_buf_puts(&b, to);
    eng_buf_puts(&b, at + strlen(from));
    eng_tokenizer *t = NULL;
    eng_status st = eng_tokenizer_load_json(b.data, b.len, &t);
    if (st == ENG_OK)
        ck_assert_ptr_nonnull(t);
    else
        ck_assert_ptr_null(t);
    eng_tokenizer_destroy(t);
    eng_buf_free(&b);
    eng_free(g_seed);
    g_seed = NULL;
    return st;
}

#define ASSERT_LOAD(from, to, status, needle)                                                                \
    do {                                                                                                     \
        eng_status st_ = load_variant(from, to);                                                             \
        ck_assert_msg(st_ == (status), "replacing %s: status %s (%s)", from, eng_status_str(st_),            \
                      eng_err_last());                                                                       \
        const char *needle_ = (needle);                                                                      \
        if (needle_)                                                                                         \
            ck_assert_msg(strstr(eng_err_last(), needle_), "message \"%s\" lacks \"%s\"", eng_err_last(),    \
                          needle_);                                                                          \
    } while (0)

START_TEST(test_load_rejects)
{
    ASSERT_LOAD("\"type\": \"BPE\"", "\"type\": \"WordPiece\"", ENG_ERR_UNSUPPORTED, "WordPiece");
    ASSERT_LOAD("\"type\": \"NFC\"", "\"type\": \"NFKC\"", ENG_ERR_UNSUPPORTED, "NFKC");
    ASSERT_LOAD("\"behavior\": \"Isolated\"", "\"behavior\": \"Removed\"", ENG_ERR_UNSUPPORTED, "Removed");
    ASSERT_LOAD("(?i:'s|'t|", "(?i:'s|'T|", ENG_ERR_UNSUPPORTED, "regex");
    ASSERT_LOAD("\"pre_tokenizer\": {\"type\": \"Sequence\"", "\"pre_tokenizer\": {\"type\": \"Metaspace\"",
                ENG_ERR_UNSUPPORTED, "Metaspace");
    ASSERT_LOAD("\"decoder\": {\"type\": \"ByteLevel\"", "\"decoder\": {\"type\": \"WordPiece\"",
                ENG_ERR_UNSUPPORTED, "decoder");
    ASSERT_LOAD("\"post_processor\": {\"type\": \"ByteLevel\"",
                "\"post_processor\": {\"type\": \"TemplateProcessing\"", ENG_ERR_UNSUPPORTED,
                "TemplateProcessing");
    ASSERT_LOAD("\"truncation\": null", "\"truncation\": {\"max_length\": 5}", ENG_ERR_UNSUPPORTED,
                "truncation");
    ASSERT_LOAD("\"dropout\": null", "\"dropout\": 0.1", ENG_ERR_UNSUPPORTED, "dropout");
    ASSERT_LOAD("\"end_of_word_suffix\": \"\"", "\"end_of_word_suffix\": \"</w>\"", ENG_ERR_UNSUPPORTED,
                "end_of_word_suffix");
    ASSERT_LOAD("\"use_regex\": false}]}", "\"use_regex\": true}]}", ENG_ERR_UNSUPPORTED, "use_regex");
    ASSERT_LOAD("\"Ġ Ġ\"", "\"Ġ Q\\u00ff\"", ENG_ERR_FORMAT, "merges[0]");
    ASSERT_LOAD("\"Ġ Ġ\"", "\"ĠĠ\"", ENG_ERR_FORMAT, "merges[0]");
    ASSERT_LOAD("\"!\": 0,", "\"!\": -3,", ENG_ERR_FORMAT, "model.vocab");
    ASSERT_LOAD("\"!\": 0,", "", ENG_ERR_UNSUPPORTED, "byte 0x21");
    ASSERT_LOAD("\"!\": 0,", "\"!\": 0, \"!\": 300,", ENG_ERR_FORMAT, "twice");
    ASSERT_LOAD("\"\\\"\": 1,", "\"\\\"\": 0,", ENG_ERR_FORMAT, "id 0");
    ASSERT_LOAD("\"content\": \"<think>\"", "\"content\": \"<|im_end|>\"", ENG_ERR_FORMAT, "twice");
    ASSERT_LOAD("\"id\": 281", "\"id\": 1e30", ENG_ERR_FORMAT, "added_tokens[1]");
    ASSERT_LOAD("\"model\": {", "\"model\": 5, \"x\": {", ENG_ERR_FORMAT, "model");
    ASSERT_LOAD("{\"version\"", "[{\"version\"", ENG_ERR_FORMAT, "JSON");
    /* variants that are fine */
    ASSERT_LOAD("\"normalizer\": {\"type\": \"NFC\"}", "\"normalizer\": null", ENG_OK, NULL);
    ASSERT_LOAD("\"normalizer\": {\"type\": \"NFC\"}",
                "\"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"NFC\"}]}", ENG_OK,
                NULL);

    eng_tokenizer *t = (eng_tokenizer *)1;
    ck_assert_int_eq(eng_tokenizer_load_json("{", 1, &t), ENG_ERR_FORMAT);
    ck_assert_ptr_null(t);
    ck_assert_int_eq(eng_tokenizer_load_json("{} x", 4, &t), ENG_ERR_FORMAT);
    ck_assert_int_eq(eng_tokenizer_load_json("", 0, &t), ENG_ERR_FORMAT);
    ck_assert_int_eq(eng_tokenizer_load("/nonexistent/tokenizer.json", &t), ENG_ERR_IO);
    ck_assert_ptr_nonnull(strstr(eng_err_last(), "/nonexistent/tokenizer.json"));
    ck_assert_int_eq(eng_tokenizer_load(NULL, &t), ENG_ERR_INVALID);
    eng_tokenizer_destroy(NULL);
}
END_TEST

START_TEST(test_load_both_merge_formats)
{
    /* the same tokenizer with merges as ["a", "b"] pairs and as "a b" strings encodes the same */
    char path[8192];
    eng_tokenizer *a = NULL, *b = NULL;
    snprintf(path, sizeof path, "%s/../../fuzz/corpus/tokenizer_json/seed_pairs.json", tk_fixture(""));
    ck_assert_msg(eng_tokenizer_load(path, &a) == ENG_OK, "%s", eng_err_last());
    snprintf(path, sizeof path, "%s/../../fuzz/corpus/tokenizer_json/seed_strings.json", tk_fixture(""));
    ck_assert_msg(eng_tokenizer_load(path, &b) == ENG_OK, "%s", eng_err_last());
    const char *s = "  the internet is at the center <think> in the street\n\n";
    int32_t x[128], y[128];
    size_t nx = enc(a, s, strlen(s), true, x, 128), ny = enc(b, s, strlen(s), true, y, 128);
    ck_assert(nx == ny && !memcmp(x, y, nx * sizeof x[0]));
    ck_assert_uint_lt(nx, strlen(s)); /* merges were applied */
    eng_tokenizer_destroy(a);
    eng_tokenizer_destroy(b);
    /* a model folder works as well as the file */
    ck_assert_msg(eng_tokenizer_load(tk_fixture(""), &a) == ENG_OK, "%s", eng_err_last());
    ck_assert_int_eq(eng_tokenizer_vocab_size(a), 151669);
    eng_tokenizer_destroy(a);
}
END_TEST

/* ==== threads: one tokenizer, many encoders ======================================================= */

typedef struct thread_job {
    const eng_tokenizer *tok;
    cJSON **recs;
    size_t n, start, failures;
} thread_job;

static void *encode_all(void *arg)
{
    thread_job *j = arg;
    for (size_t k = 0; k < j->n; k++) {
        const cJSON *o = j->recs[(j->start + k) % j->n];
        size_t tl = 0, ne = 0;
        char *t = tk_get_str(o, "t", &tl);
        int32_t *exp = tk_get_ids(o, "ids", &ne);
        if (t && exp) {
            int32_t *ids;
            size_t n;
            if (eng_tokenizer_encode(j->tok, t, tl, false, &ids, &n) != ENG_OK || n != ne ||
                memcmp(ids, exp, n * sizeof *ids))
                j->failures++;
            else
                eng_free(ids);
        }
        free(t);
        free(exp);
    }
    return NULL;
}

START_TEST(test_threads_share_a_tokenizer)
{
    /* a fresh tokenizer (nothing learned yet), 4 threads starting at different records */
    eng_tokenizer *t;
    ck_assert_int_eq(eng_tokenizer_load(tk_fixture("tokenizer.json"), &t), ENG_OK);
    size_t n;
    cJSON **recs = tk_jsonl_read(tk_fixture("corpus.jsonl"), &n);
    ck_assert_ptr_nonnull(recs);
    size_t use = n < 1500 ? n : 1500;
    pthread_t th[4];
    thread_job jobs[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (thread_job){.tok = t, .recs = recs, .n = use, .start = (size_t)i * use / 4};
        ck_assert_int_eq(pthread_create(&th[i], NULL, encode_all, &jobs[i]), 0);
    }
    size_t failures = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        failures += jobs[i].failures;
    }
    tk_jsonl_free(recs);
    eng_tokenizer_destroy(t);
    ck_assert_msg(failures == 0, "%zu concurrent encodes differed from HF", failures);
}
END_TEST

/* ==== faults: allocation failures ================================================================= */

START_TEST(test_alloc_failures)
{
    /* every allocation of load, encode and decode may fail: the result is ENG_ERR_NOMEM and no
     * leak (ASan build), never a crash */
    load_seed();
    const char *s = "<think> the internet\n\n is at  the center of the street é\xcc\x81 \xff";
    int done_load = 0, done_all = 0;
    for (long k = 0; k < 400 && !done_all; k++) {
        eng_tokenizer *t = NULL;
        eng_alloc_fail_after(k);
        eng_status st = eng_tokenizer_load_json(g_seed, g_seed_len, &t);
        if (st != ENG_OK) {
            eng_alloc_fail_after(-1);
            ck_assert_msg(st == ENG_ERR_NOMEM, "load with failure after %ld allocations: %s (%s)", k,
                          eng_status_str(st), eng_err_last());
            ck_assert_ptr_null(t);
            continue;
        }
        done_load++;
        int32_t *ids = NULL;
        size_t n = 0;
        st = eng_tokenizer_encode(t, s, strlen(s), false, &ids, &n);
        if (st == ENG_OK) {
            char *text = NULL;
            size_t len;
            eng_status ds = eng_tokenizer_decode(t, ids, n, false, &text, &len);
            ck_assert(ds == ENG_OK || ds == ENG_ERR_NOMEM);
            eng_detok *d = NULL;
            eng_status cs = eng_detok_create(t, false, &d);
            ck_assert(cs == ENG_OK || cs == ENG_ERR_NOMEM);
            bool all_ok = ds == ENG_OK && cs == ENG_OK;
            for (size_t i = 0; d && i < n; i++) {
                const char *p;
                size_t pl;
                eng_status ps = eng_detok_push(d, ids[i], &p, &pl);
                ck_assert(ps == ENG_OK || ps == ENG_ERR_NOMEM);
                all_ok = all_ok && ps == ENG_OK;
            }
            eng_detok_destroy(d);
            eng_free(text);
            eng_free(ids);
            if (all_ok) done_all = 1;
        } else {
            ck_assert_msg(st == ENG_ERR_NOMEM, "encode: %s", eng_status_str(st));
            ck_assert_ptr_null(ids);
        }
        eng_alloc_fail_after(-1);
        eng_tokenizer_destroy(t);
    }
    eng_alloc_fail_after(-1);
    eng_free(g_seed);
    ck_assert_msg(done_load > 0 && done_all, "the sweep never got through load, encode and decode");
}
END_TEST

/* ==== cli ======================================================================================= */

/* runs `qnext <args>` with `in` on stdin; output in out (NUL-terminated); returns the exit status */
static int run_cli(const char *args, const char *in, size_t in_len, char *out, size_t cap)
{
    const char *bin = getenv("QNEXT_BIN");
    ck_assert_msg(bin != NULL, "QNEXT_BIN is not set");
    char inpath[] = "/tmp/qn_tok_in_XXXXXX";
    int fd = mkstemp(inpath);
    ck_assert_int_ge(fd, 0);
    ck_assert(write(fd, in, in_len) == (ssize_t)in_len);
    close(fd);
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "'%s/qnext' %s < '%s' 2>/dev/null", bin, args, inpath);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    int rc = pclose(p);
    unlink(inpath);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

START_TEST(test_cli_tokenize_detokenize)
{
    char args[8192], out[4096];
    const char *tok = tk_fixture("tokenizer.json");
    snprintf(args, sizeof args, "tokenize --tokenizer '%s'", tok);
    const char *s = "<|im_start|>user\n<think>hi</think><tool_call>x<|im_end|><|endoftext|>";
    ck_assert_int_eq(run_cli(args, s, strlen(s), out, sizeof out), 0);
    ck_assert_str_eq(out, "27 91 318 4906 91 29 872 198 151667 6023 151668 151657 87 27 91 318 6213 91 1784 "
                          "91 8691 723 427 91 29\n");
    snprintf(args, sizeof args, "tokenize --special --tokenizer=%s", tok);
    ck_assert_int_eq(run_cli(args, s, strlen(s), out, sizeof out), 0);
    ck_assert_str_eq(out, "151644 872 198 151667 6023 151668 151657 87 151645 151643\n");
    snprintf(args, sizeof args, "detokenize --tokenizer '%s'", tok);
    const char *ids = "151644 872 198 151667 6023 151668\n151657\t87 151645 151643\n";
    ck_assert_int_eq(run_cli(args, ids, strlen(ids), out, sizeof out), 0);
    ck_assert_str_eq(out, s);
    snprintf(args, sizeof args, "detokenize --skip-special --tokenizer '%s'", tok);
    ck_assert_int_eq(run_cli(args, "[151644, 872, 198, 151667, 151645]", 34, out, sizeof out), 0);
    ck_assert_str_eq(out, "user\n<think>");
    /* bad input: exit 1; usage errors: exit 2; --help: 0 */
    snprintf(args, sizeof args, "detokenize --tokenizer '%s'", tok);
    ck_assert_int_eq(run_cli(args, "1 2 x3", 6, out, sizeof out), 1);
    ck_assert_int_eq(run_cli(args, "99999999", 8, out, sizeof out), 1);
    ck_assert_int_eq(run_cli(args, "-1", 2, out, sizeof out), 1);
    ck_assert_int_eq(run_cli("tokenize", "x", 1, out, sizeof out), 2);
    ck_assert_int_eq(run_cli("detokenize --bogus", "x", 1, out, sizeof out), 2);
    ck_assert_int_eq(run_cli("tokenize --tokenizer /nonexistent", "x", 1, out, sizeof out), 1);
    ck_assert_int_eq(run_cli("tokenize --help", "", 0, out, sizeof out), 0);
    ck_assert_ptr_nonnull(strstr(out, "--special"));
    ck_assert_int_eq(run_cli("detokenize -h", "", 0, out, sizeof out), 0);
    ck_assert_ptr_nonnull(strstr(out, "--skip-special"));
}
END_TEST

/* ==== suite ===================================================================================== */

Suite *tokenizer_suite(void)
{
    Suite *s = suite_create("tokenizer");
    struct {
        const char *name;
        bool needs_tok;
        const TTest *tests[8];
    } groups[] = {
        {"unicode", false, {test_unicode_classes_match_hf, test_unicode_space_definition}},
        {"pretok", false, {test_pretok_splits_match_hf, test_pretok_literal_cases}},
        {"lookups", true, {test_lookups}},
        {"added", true, {test_added_token_modes, test_added_token_adjacency}},
        {"utf8",
         true,
         {test_invalid_utf8_is_lossless, test_random_bytes_round_trip, test_nfc_hostile_marks_linear}},
        {"detok", true, {test_detok_random_splits, test_detok_invalid_and_flush, test_decode_errors}},
        {"load", false, {test_load_rejects, test_load_both_merge_formats}},
        {"threads", false, {test_threads_share_a_tokenizer}},
        {"faults", false, {test_alloc_failures}},
        {"cli", false, {test_cli_tokenize_detokenize}},
    };
    for (size_t g = 0; g < sizeof groups / sizeof groups[0]; g++) {
        TCase *tc = tcase_create(groups[g].name);
        if (groups[g].needs_tok) tcase_add_unchecked_fixture(tc, load_once, unload);
        tcase_set_timeout(tc, 300);
        for (size_t i = 0; i < 8 && groups[g].tests[i]; i++) tcase_add_test(tc, groups[g].tests[i]);
        suite_add_tcase(s, tc);
    }
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(tokenizer_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
