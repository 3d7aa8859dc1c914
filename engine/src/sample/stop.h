/* sample/stop.h - per-choice stop conditions over the token and detokenized-text streams.
 *
 * Design note. One eng_stop per choice. The step loop feeds it every new token together with that
 * token's text delta (from the streaming detokenizer: complete UTF-8 only) and gets back the text
 * that may be shown now, and whether/why the choice finished. It is pure bookkeeping: no
 * tokenizer, no device, no locks.
 *
 * Semantics (vLLM v1 `vllm/v1/core/sched/utils.py` check_stop and `vllm/v1/engine/detokenizer.py`
 * / StopChecker.check_stop_strings, with two deliberate differences marked [*]):
 *   - Position p counts generated tokens including the current one (1-based).
 *   - min_tokens: token stops (EOS, stop ids) and max_tokens act only when p >= min_tokens; stop
 *     strings only match text that ends in a token with p > min_tokens (vLLM PR #22014). The
 *     sampler should also mask EOS/stop ids while p < min_tokens (eng_stop_suppressed()).
 *   - EOS ids (several; ignored when ignore_eos) and stop token ids finish with
 *     ENG_FINISH_STOP. The stop token's own text is not emitted. matched_token is the id for a
 *     stop token id and -1 for EOS (vLLM's stop_reason).
 *   - Stop strings are matched across token boundaries and never emitted; the text before the
 *     match is. [*] When several stops could match, the one that *completes first* in the text
 *     wins (earliest end; at equal ends the longest, i.e. the earliest start). vLLM instead
 *     takes the first entry of the stop list found in the new text; both agree unless stops
 *     overlap within one delta. Ours does not depend on list order and equals scanning the text
 *     one byte at a time.
 *   - [*] Held-back text: vLLM always holds back max(len(stop)) - 1 characters while streaming.
 *     We hold back only the longest suffix of the pending text that is a proper prefix of some
 *     stop string, so unrelated text streams with no delay.
 *   - max_tokens: at p >= max_tokens the choice finishes with ENG_FINISH_LENGTH (unless a token
 *     stop or a stop string matched on the same token: those win, as in vLLM).
 *   - At any finish other than a stop string the held-back text is flushed (it was not a stop).
 * Matching is on bytes. Stop strings must be valid UTF-8 (checked), and since the text is
 * complete UTF-8 and a UTF-8 string can only start at a character boundary, emitted pieces are
 * always complete UTF-8 too.
 */
#ifndef QN_SAMPLE_STOP_H
#define QN_SAMPLE_STOP_H

#include "qnext/eng.h" /* eng_finish_reason, eng_status */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ENG_STOP_MAX_STRINGS 64 /* stop strings per choice (OpenAI allows 4) */
#define ENG_STOP_MAX_LEN 4096   /* bytes per stop string */

typedef struct eng_stop eng_stop;

/* Borrowed during eng_stop_create only (everything is copied). */
typedef struct eng_stop_config {
    const char *const *stop; /* n_stop non-empty, valid UTF-8, NUL-terminated stop strings */
    size_t n_stop;
    const int32_t *eos_ids; /* n_eos end-of-sequence ids (from the model's generation config) */
    size_t n_eos;
    const int32_t *stop_token_ids;
    size_t n_stop_token_ids;
    int max_tokens; /* < 0: unlimited (the caller also caps by the context length) */
    int min_tokens; /* >= 0 */
    bool ignore_eos;
} eng_stop_config;

/* What one feed produced. Pointers stay valid until the next call on the same eng_stop. */
typedef struct eng_stop_result {
    const char *text; /* text to emit now (NUL-terminated; "" if none) */
    size_t len;
    bool finished;
    eng_finish_reason reason; /* ENG_FINISH_NONE while running */
    const char *matched_stop; /* the stop string that matched, or NULL */
    int32_t matched_token;    /* the stop token id that matched, or -1 */
} eng_stop_result;

/* Builds the matcher. ENG_ERR_INVALID (empty or non-UTF-8 stop string, more than
 * ENG_STOP_MAX_STRINGS strings or a longer one than ENG_STOP_MAX_LEN, min_tokens < 0, NULL arrays
 * with a count) or ENG_ERR_NOMEM; *out = NULL on failure. */
eng_status eng_stop_create(const eng_stop_config *cfg, eng_stop **out);

/* NULL-safe. */
void eng_stop_destroy(eng_stop *st);

/* Feeds the next generated token and its text delta (`text` may be NULL when len == 0). Fills
 * *out. ENG_ERR_INVALID if the choice already finished, ENG_ERR_NOMEM if the held-back buffer
 * cannot grow (the state is unchanged then). */
eng_status eng_stop_feed(eng_stop *st, int32_t token, const char *text, size_t len, eng_stop_result *out);

/* Finishes the choice from outside (cancel, context limit, error) with `reason`: returns the
 * held-back text to emit. ENG_ERR_INVALID if already finished. */
eng_status eng_stop_finish(eng_stop *st, eng_finish_reason reason, eng_stop_result *out);

/* Token ids the sampler must mask for the next token (EOS unless ignore_eos, and stop token ids)
 * while fewer than min_tokens tokens were generated; 0 afterwards. *ids stays valid for the
 * lifetime of st. */
size_t eng_stop_suppressed(const eng_stop *st, const int32_t **ids);

/* Tokens fed so far. */
int eng_stop_n_tokens(const eng_stop *st);

/* Bytes currently held back (a possible start of a stop string). */
size_t eng_stop_n_held(const eng_stop *st);

/* True once a feed or eng_stop_finish finished the choice. */
bool eng_stop_is_finished(const eng_stop *st);

#endif /* QN_SAMPLE_STOP_H */
