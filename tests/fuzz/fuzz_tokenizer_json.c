/* tests/fuzz/fuzz_tokenizer_json.c - libFuzzer target: the tokenizer.json loader on mutated JSON.
 *
 * Seeds (tests/fuzz/corpus/tokenizer_json/) are small but complete Qwen2-style tokenizers (the
 * 256-symbol byte alphabet, a few merges in both formats, added tokens with flags), written by
 * tests/fixtures/tokenizer/gen_corpus.py. Whatever the input, loading must return a status
 * without crashing or leaking; when it loads, a fixed text is encoded in both modes and decoded.
 */
#include "core/core.h"       /* defines: eng_free */
#include "qnext/tokenizer.h" /* defines: eng_tokenizer_* */

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    eng_tokenizer *t = NULL;
    eng_status st = eng_tokenizer_load_json((const char *)data, size, &t);
    if (st != ENG_OK) {
        if (t != NULL) abort();
        return 0;
    }
    static const char text[] = "<|im_end|> the <think>internet\n\n  é\xcc\x81 \xff 123 x's";
    for (int mode = 0; mode < 2; mode++) {
        int32_t *ids = NULL;
        size_t n = 0;
        if (eng_tokenizer_encode(t, text, sizeof text - 1, mode, &ids, &n) != ENG_OK) abort();
        char *out = NULL;
        size_t len = 0;
        if (eng_tokenizer_decode(t, ids, n, mode, &out, &len) != ENG_OK) abort();
        eng_free(out);
        eng_free(ids);
    }
    int32_t bad = eng_tokenizer_vocab_size(t);
    char *out = NULL;
    size_t len;
    if (eng_tokenizer_decode(t, &bad, 1, false, &out, &len) != ENG_ERR_INVALID || out) abort();
    eng_tokenizer_destroy(t);
    return 0;
}
