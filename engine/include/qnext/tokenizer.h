/* qnext/tokenizer.h - the Qwen2/Qwen3 byte-level BPE tokenizer, exact against Hugging Face
 * `tokenizers` (the reference is tokenizers 0.23 loading the same tokenizer.json).
 *
 * What is supported (anything else in tokenizer.json is rejected at load with ENG_ERR_UNSUPPORTED
 * and a detail naming the unsupported part):
 *   model          BPE with merge ranks; merges as "a b" strings or ["a", "b"] pairs; no dropout,
 *                  no continuing_subword_prefix / end_of_word_suffix; ignore_merges honoured
 *   normalizer     null or NFC (also a Sequence holding only NFC)
 *   pre_tokenizer  Sequence[Split(the Qwen2 regex, Isolated), ByteLevel(use_regex=false,
 *                  add_prefix_space=false)]; the regex is a hand-written matcher (pretok.c)
 *   decoder        ByteLevel; post_processor ByteLevel or null; truncation and padding null
 *   added_tokens   with their special / normalized / lstrip / rstrip / single_word flags
 *
 * Usage:
 *     eng_tokenizer *tok;
 *     if (eng_tokenizer_load("models/qwen3/", &tok) != ENG_OK) die(eng_err_last());
 *     int32_t *ids; size_t n;
 *     eng_tokenizer_encode(tok, text, strlen(text), false, &ids, &n);
 *     ...
 *     eng_free(ids);
 *     eng_tokenizer_destroy(tok);
 *
 * Threads: after load, a tokenizer is read-only as far as callers can tell; every function below
 * that takes `const eng_tokenizer *` may be called from any number of threads at once. (Its two
 * caches, a per-token flag and a word cache, are lock-free and built from atomics; see
 * text/tokenizer_bpe.c. They never change a result.) An eng_detok belongs to one thread at a time.
 *
 * Invalid UTF-8 in encode input (defined behaviour, never an error): every byte that does not
 * belong to a well-formed UTF-8 sequence (Unicode Table 3-7: no overlongs, no surrogates, nothing
 * above U+10FFFF) is kept as one unit of the pre-tokenizer class "other" (like punctuation: it
 * joins runs of [^\s\p{L}\p{N}]), is left untouched by NFC (it ends the run being normalized), and
 * is encoded through its byte-level token. Nothing is dropped or replaced: the concatenated
 * eng_tokenizer_token_bytes() of the ids reproduce the (NFC-normalized) input byte for byte.
 * Decoding such ids gives U+FFFD where the bytes are not valid UTF-8, exactly as HF decode does.
 *
 * Unicode version: categories come from the linked utf8proc. The regex engine inside HF
 * tokenizers 0.23 classifies by Unicode 16; utf8proc 2.8 (Debian 12) knows Unicode 15, so the
 * 5,004 letters/numbers first assigned in Unicode 16 are "other" here (text using them can
 * tokenize differently; everything else agrees). tests/unit/engine/test_tokenizer.c checks all
 * 1,112,064 code points against a table recorded from HF and allows a difference only where
 * utf8proc says "unassigned"; utf8proc 2.10 (Unicode 16) should close the gap.
 */
#ifndef QNEXT_TOKENIZER_H
#define QNEXT_TOKENIZER_H

#include "qnext/status.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct eng_tokenizer eng_tokenizer; /* same typedef as in qnext/eng.h */
typedef struct eng_detok eng_detok;         /* streaming detokenizer, one per output stream */

/* Frees memory returned by the engine (ids from encode, text from decode). NULL-safe. This is the
 * engine allocator's free (declared here too, so API users need no internal header). */
void eng_free(void *p);

/* ==== load / destroy ========================================================================== */

/* Loads a Hugging Face tokenizer.json. `path` is the file itself or a folder that contains
 * "tokenizer.json". On success *out owns everything it needs (the file is not kept open).
 * Errors: ENG_ERR_IO (unreadable), ENG_ERR_FORMAT (not JSON, missing or mistyped fields, a merge
 * naming an unknown token, ...), ENG_ERR_UNSUPPORTED (model/normalizer/pre-tokenizer/decoder type
 * or option this implementation does not do), ENG_ERR_NOMEM. On failure *out = NULL and
 * eng_err_last() names the file and the offending field. */
eng_status eng_tokenizer_load(const char *path, eng_tokenizer **out);

/* The same from tokenizer.json text in memory (`json` need not be NUL-terminated). */
eng_status eng_tokenizer_load_json(const char *json, size_t len, eng_tokenizer **out);

/* Frees the tokenizer. NULL-safe. No other call may be using it. */
void eng_tokenizer_destroy(eng_tokenizer *tok);

/* ==== vocabulary ============================================================================== */

/* Number of token ids: 1 + the largest id of the model vocabulary and the added tokens
 * (151,669 for Qwen3). Ids below it that name no token (gaps) are rejected like out-of-range ids. */
int32_t eng_tokenizer_vocab_size(const eng_tokenizer *tok);

/* Id of a token given its string as written in tokenizer.json: an added token's content
 * ("<|im_end|>") or a model vocabulary key in byte-level form ("Ġhello"). Added tokens are looked
 * up first, as HF's token_to_id does. Returns -1 if there is no such token. `token` is
 * NUL-terminated; eng_tokenizer_token_id_n takes an explicit length. */
int32_t eng_tokenizer_token_id(const eng_tokenizer *tok, const char *token);
int32_t eng_tokenizer_token_id_n(const eng_tokenizer *tok, const char *token, size_t len);

/* The token's string as written in tokenizer.json (HF id_to_token), NUL-terminated, owned by the
 * tokenizer; *len (if non-NULL) gets its length. NULL if `id` names no token. */
const char *eng_tokenizer_token_str(const eng_tokenizer *tok, int32_t id, size_t *len);

/* The raw bytes the token stands for (what the ByteLevel decoder turns it into; for OpenAI
 * logprobs `bytes`). May be a partial UTF-8 character. Owned by the tokenizer, valid for its
 * lifetime. NULL (and *len = 0) if `id` names no token. */
const uint8_t *eng_tokenizer_token_bytes(const eng_tokenizer *tok, int32_t id, size_t *len);

/* True if `id` is an added token flagged "special" (<|im_start|>, <|endoftext|>, ...). False for
 * regular and non-special added tokens (<think>, <tool_call>, ...) and for invalid ids. */
bool eng_tokenizer_is_special(const eng_tokenizer *tok, int32_t id);

/* True if `id` is any added token (special or not). */
bool eng_tokenizer_is_added(const eng_tokenizer *tok, int32_t id);

/* ==== encode / decode ========================================================================= */

/* Tokenizes text[0..len) (UTF-8; see the file comment for invalid bytes). No BOS/EOS is added.
 *   parse_special = true : every added token's text is matched (HF default).
 *   parse_special = false: text of added tokens flagged special (<|im_start|>, ...) stays plain
 *                          text and is BPE-encoded; non-special added tokens (<think>, </think>,
 *                          <tool_call>, ...) still match (HF split_special_tokens=True).
 * On ENG_OK *ids is a heap array of *n ids (never NULL, even when *n == 0), freed with eng_free.
 * On failure *ids = NULL, *n = 0: ENG_ERR_NOMEM, or ENG_ERR_INVALID for NULL arguments or a
 * single word / combining-mark run longer than 256 MiB. Thread-safe. `text` may be NULL when
 * len == 0. Time is linear in len (n log n for one huge word). */
eng_status eng_tokenizer_encode(const eng_tokenizer *tok, const char *text, size_t len, bool parse_special,
                                int32_t **ids, size_t *n);

/* Detokenizes ids[0..n) exactly like HF Tokenizer.decode(ids, skip_special_tokens) for this
 * tokenizer (ByteLevel decoder, clean_up_tokenization_spaces off): the tokens' bytes are
 * concatenated and invalid UTF-8 becomes U+FFFD, one per maximal invalid subsequence (as Rust's
 * String::from_utf8_lossy). skip_special drops special added tokens only.
 * On ENG_OK *text is a heap NUL-terminated string of *len bytes (free with eng_free).
 * An id < 0, >= vocab size, or naming no token gives ENG_ERR_INVALID with a detail naming the id
 * and its position, and *text = NULL. Thread-safe. */
eng_status eng_tokenizer_decode(const eng_tokenizer *tok, const int32_t *ids, size_t n, bool skip_special,
                                char **text, size_t *len);

/* ==== streaming detokenizer =================================================================== */

/* A per-stream detokenizer for generated tokens: push ids one at a time and get back only
 * complete UTF-8. Bytes of a character split across tokens are held until the character is
 * complete; bytes that can no longer become valid UTF-8 come out as U+FFFD right away. The
 * concatenation of every push output plus the flush output equals eng_tokenizer_decode() of all
 * pushed ids (same skip_special), byte for byte.
 * The tokenizer must outlive the detokenizer. */
eng_status eng_detok_create(const eng_tokenizer *tok, bool skip_special, eng_detok **out);

/* Appends token `id`. On ENG_OK *text / *len describe the newly completed text (possibly empty,
 * *text is then "" ); it points into the detokenizer and is valid until its next call. An invalid
 * id gives ENG_ERR_INVALID (detail names it) and leaves the state unchanged. */
eng_status eng_detok_push(eng_detok *d, int32_t id, const char **text, size_t *len);

/* Ends the stream: leftover bytes of an incomplete character become one U+FFFD (as HF decode of
 * the whole sequence does at the end). Returns that text (usually empty) like eng_detok_push, and
 * resets the detokenizer for a new stream. */
eng_status eng_detok_flush(eng_detok *d, const char **text, size_t *len);

/* Drops any pending bytes without output (e.g. when a request is cancelled). */
void eng_detok_reset(eng_detok *d);

/* Number of bytes held back, waiting for the rest of a character (0..3). */
size_t eng_detok_pending(const eng_detok *d);

/* NULL-safe. */
void eng_detok_destroy(eng_detok *d);

#ifdef __cplusplus
}
#endif

#endif /* QNEXT_TOKENIZER_H */
