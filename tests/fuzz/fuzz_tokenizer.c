/* tests/fuzz/fuzz_tokenizer.c - libFuzzer target: arbitrary bytes through the Qwen3 tokenizer.
 *
 * The fixture tokenizer (tests/fixtures/tokenizer/tokenizer.json; $QNEXT_FIXTURES/tokenizer/ when
 * set, else found relative to this source file) is loaded once. Each input is encoded with
 * parse_special false and true, and the results are checked:
 *   - encode never fails (invalid UTF-8 is defined behaviour, qnext/tokenizer.h);
 *   - if NFC cannot change the input (every valid code point NFC-stable; invalid bytes pass
 *     through), the ids' bytes are exactly the input, and if the input is also valid UTF-8 the
 *     decode is the input (the round trip);
 *   - decode(ids) equals the streaming detokenizer fed the same ids one by one (both skip modes).
 * A violation aborts, which libFuzzer reports with the input.
 */
#include "core/core.h"       /* defines: eng_buf, eng_free */
#include "qnext/tokenizer.h" /* defines: eng_tokenizer_* */
#include "text/pretok.h"     /* defines: qn_utf8_unit, qn_pretok_class_of, QN_CC_NFC_STABLE */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static eng_tokenizer *g_tok;

static void load(void)
{
    char path[4096];
    const char *fx = getenv("QNEXT_FIXTURES");
    if (fx && *fx) {
        snprintf(path, sizeof path, "%s/tokenizer/tokenizer.json", fx);
    } else {
        const char *f = __FILE__, *slash = strrchr(f, '/');
        snprintf(path, sizeof path, "%.*s/../fixtures/tokenizer/tokenizer.json", slash ? (int)(slash - f) : 1,
                 slash ? f : ".");
    }
    if (eng_tokenizer_load(path, &g_tok) != ENG_OK) {
        fprintf(stderr, "fuzz_tokenizer: %s\n", eng_err_last());
        abort();
    }
}

#define REQUIRE(c)                                                                                           \
    do {                                                                                                     \
        if (!(c)) {                                                                                          \
            fprintf(stderr, "fuzz_tokenizer: check failed: %s (line %d)\n", #c, __LINE__);                   \
            abort();                                                                                         \
        }                                                                                                    \
    } while (0)

/* decode == streaming detokenization, for one skip mode */
static void check_detok(const int32_t *ids, size_t n, bool skip, const char *text, size_t len)
{
    eng_detok *d;
    REQUIRE(eng_detok_create(g_tok, skip, &d) == ENG_OK);
    eng_buf acc;
    eng_buf_init(&acc);
    for (size_t i = 0; i < n; i++) {
        const char *p;
        size_t pl;
        REQUIRE(eng_detok_push(d, ids[i], &p, &pl) == ENG_OK);
        REQUIRE(eng_detok_pending(d) <= 3);
        eng_buf_append(&acc, p, pl);
    }
    const char *p;
    size_t pl;
    REQUIRE(eng_detok_flush(d, &p, &pl) == ENG_OK);
    eng_buf_append(&acc, p, pl);
    REQUIRE(!acc.oom && acc.len == len && (len == 0 || memcmp(acc.data, text, len) == 0));
    eng_buf_free(&acc);
    eng_detok_destroy(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!g_tok) load();
    bool valid = true, stable = true;
    for (size_t i = 0; i < size;) {
        int32_t cp;
        i += qn_utf8_unit(data, size, i, &cp);
        if (cp < 0)
            valid = false;
        else if (!(qn_pretok_class_of(cp) & QN_CC_NFC_STABLE))
            stable = false;
    }
    for (int mode = 0; mode < 2; mode++) {
        int32_t *ids = NULL;
        size_t n = 0;
        REQUIRE(eng_tokenizer_encode(g_tok, (const char *)data, size, mode == 1, &ids, &n) == ENG_OK);
        REQUIRE(ids != NULL && n <= 3 * size); /* NFC grows text at most 3x; a token is >= 1 byte */
        eng_buf raw;
        eng_buf_init(&raw);
        for (size_t i = 0; i < n; i++) {
            size_t bl;
            const uint8_t *b = eng_tokenizer_token_bytes(g_tok, ids[i], &bl);
            REQUIRE(b != NULL && bl > 0);
            eng_buf_append(&raw, b, bl);
        }
        if (stable) REQUIRE(raw.len == size && (size == 0 || memcmp(raw.data, data, size) == 0));
        for (int skip = 0; skip < 2; skip++) {
            char *text = NULL;
            size_t len = 0;
            REQUIRE(eng_tokenizer_decode(g_tok, ids, n, skip, &text, &len) == ENG_OK);
            if (!skip && valid && stable) REQUIRE(len == size && memcmp(text, data, size) == 0);
            check_detok(ids, n, skip, text, len);
            eng_free(text);
        }
        eng_buf_free(&raw);
        eng_free(ids);
    }
    return 0;
}
