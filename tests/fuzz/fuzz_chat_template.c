/* tests/fuzz/fuzz_chat_template.c - libFuzzer target for the chat-template renderers (qnext/chat.h).
 *
 * The input bytes are used three ways, for each of the three templates and both values of
 * add_generation_prompt: as a whole request body (eng_chat_render_request), as the `messages`
 * JSON (eng_chat_render), and as the `tools` JSON next to a fixed valid conversation. Checks: the
 * status is one the API documents, a prompt is NUL-terminated at its length and rendering is
 * deterministic (the same input renders the same bytes twice).
 */
#include "qnext/chat.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void check_status(eng_status st)
{
    if (st != ENG_OK && st != ENG_ERR_INVALID && st != ENG_ERR_UNSUPPORTED && st != ENG_ERR_NOMEM) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    static const char conv[] =
        "[{\"role\": \"system\", \"content\": \"s\"}, {\"role\": \"user\", \"content\": \"q\"}]";
    for (int k = 0; k < ENG_TEMPLATE_COUNT; k++) {
        for (int gen = 0; gen < 2; gen++) {
            eng_chat_prompt a, b;
            eng_status st = eng_chat_render_request((eng_template_kind)k, text, size, gen, &a);
            check_status(st);
            if (st == ENG_OK) {
                if (a.text[a.len] != '\0') abort();
                if (eng_chat_render_request((eng_template_kind)k, text, size, gen, &b) != ENG_OK) abort();
                if (b.len != a.len || memcmp(a.text, b.text, a.len) != 0 || a.reasoning != b.reasoning)
                    abort();
                eng_chat_prompt_free(&b);
            } else if (a.text) {
                abort();
            }
            eng_chat_prompt_free(&a);

            char *out = NULL;
            size_t len = 0;
            st = eng_chat_render((eng_template_kind)k, text, NULL, NULL, gen, &out, &len);
            check_status(st);
            if (st == ENG_OK && out[len] != '\0') abort();
            if (st != ENG_OK && out) abort();
            eng_chat_free(out);

            st = eng_chat_render((eng_template_kind)k, conv, text, text, gen, &out, &len);
            check_status(st);
            eng_chat_free(out);
        }
    }
    free(text);
    return 0;
}
