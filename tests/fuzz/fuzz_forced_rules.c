/* tests/fuzz/fuzz_forced_rules.c - arbitrary bytes as the engine's QNEXT_TEST_FORCED_OUTPUT rules file
 * (engine/src/sched/engine_forced.c), encoded with the real tokenizer (tests/fixtures/tokenizer).
 * Invariants on success: every rule has a non-empty marker and only ids below the vocabulary
 * given; a match never reads outside the prompt; nothing leaks (ASan). */
#include "sched/engine_impl.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static eng_tokenizer *tok;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *fx = getenv("QNEXT_FIXTURES");
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer/tokenizer.json", fx ? fx : "tests/fixtures");
    if (eng_tokenizer_load(path, &tok) != ENG_OK) abort();
    eng_log_set_level(ENG_LOG_ERROR);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const int vocab = 151936;
    eng_forced *f = NULL;
    if (eng_forced_parse((const char *)data, size, tok, vocab, "fuzz", &f) == ENG_OK) {
        if (!f) abort();
        for (int i = 0; i < f->n_rules; i++) {
            if (!f->rules[i].marker[0] || f->rules[i].n_ids < 0) abort();
            for (int k = 0; k < f->rules[i].n_ids; k++)
                if (f->rules[i].ids[k] < 0 || f->rules[i].ids[k] >= vocab) abort();
        }
        /* the input itself as a prompt: a marker may or may not occur in it */
        const eng_forced_rule *m = eng_forced_match(f, (const char *)data, size);
        if (m && (m < f->rules || m >= f->rules + f->n_rules)) abort();
        eng_forced_destroy(f);
    } else if (f) {
        abort();
    }
    return 0;
}
