/* text/pretok.h - the Qwen2 pre-tokenizer (the Split regex of tokenizer.json as a hand-written
 * matcher), Unicode character classes from utf8proc, strict UTF-8 decoding, and NFC.
 *
 * The regex (Oniguruma syntax, as HF tokenizers runs it):
 *   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|
 * ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ with split behaviour "Isolated": the text is cut into
 * consecutive matches (every character is matched by some branch, so there are no gaps). Semantics that
 * matter, each checked against HF over every code point (tests/unit/engine/test_tokenizer.c): \p{L}, \p{N}
 * general categories L*, N* (utf8proc_category) \s             U+0009..U+000D, U+0085 and categories Zs, Zl,
 * Zp (Oniguruma's definition; it is also Unicode White_Space). U+001C..U+001F are NOT \s.
 *   (?i:...)       case-insensitive with Unicode simple case folding: 's also matches 'S and
 *                  'ſ (U+017F LATIN SMALL LETTER LONG S); the others only ASCII case variants.
 * Invalid UTF-8 bytes are one unit each, of class "other" (see qnext/tokenizer.h).
 */
#ifndef QN_TEXT_PRETOK_H
#define QN_TEXT_PRETOK_H

#include "qnext/status.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ==== character classes ======================================================================= */

/* class of a unit (low 3 bits of qn_pretok_class_of) */
enum {
    QN_CC_OTHER = 0, /* [^\s\p{L}\p{N}], also invalid bytes */
    QN_CC_L = 1,     /* \p{L} */
    QN_CC_N = 2,     /* \p{N} */
    QN_CC_S = 3,     /* \s except \r and \n */
    QN_CC_NL = 4,    /* \r or \n */
};
#define QN_CC_MASK 0x07
#define QN_CC_NFC_STABLE 0x08 /* ccc 0 and NFC_Quick_Check=Yes: a run of such units is already NFC */
#define QN_CC_WORD 0x10       /* \w approximation (L, M, Nd, Nl, Pc, ZWJ/ZWNJ) for single_word tokens */
#define QN_CC_UNASSIGNED 0x20 /* general category Cn in utf8proc's Unicode version */

/* Builds the process-wide class tables from utf8proc (once; thread-safe; no allocation). Every
 * other function here calls it, so callers need not. */
void qn_pretok_init(void);

/* Class byte (QN_CC_* bits) of code point cp (0..0x10FFFF, surrogates give QN_CC_OTHER). */
uint8_t qn_pretok_class_of(int32_t cp);

/* Decodes the unit starting at s[i] (i < n): a well-formed UTF-8 sequence (returns its length 1..4
 * and sets *cp) or one invalid byte (returns 1, *cp = -1). */
size_t qn_utf8_unit(const uint8_t *s, size_t n, size_t i, int32_t *cp);

/* Number of bytes at the start of s[0..n) that form a complete, well-formed prefix, i.e. the index
 * of the first byte that is invalid or belongs to a truncated sequence at the end. */
size_t qn_utf8_valid_prefix(const uint8_t *s, size_t n);

/* ==== pre-tokenizer =========================================================================== */

/* End (exclusive) of the regex match that starts at s[i] (i < n). Always > i. Needs the class
 * tables: call qn_pretok_init() once before (eng_tokenizer_load does). */
size_t qn_pretok_next(const uint8_t *s, size_t n, size_t i);

/* ==== NFC ===================================================================================== */

/* Scratch space reused across calls by one thread (owned by the caller; zero-initialize, release
 * with qn_nfc_scratch_free). */
typedef struct qn_nfc_scratch {
    int32_t *cps; /* (cap_cps) code points */
    size_t cap_cps;
    uint8_t *out; /* (cap_out) normalized bytes */
    size_t cap_out;
} qn_nfc_scratch;

void qn_nfc_scratch_free(qn_nfc_scratch *sc);

/* NFC-normalizes s[0..n) as HF's NFC normalizer does (utf8proc composition), leaving invalid
 * bytes in place (each one ends the run being normalized). If the text is already NFC (quick
 * check), *out = s and nothing is copied; otherwise *out points into sc->out. ENG_ERR_NOMEM or
 * ENG_OK. */
eng_status qn_nfc(const uint8_t *s, size_t n, qn_nfc_scratch *sc, const uint8_t **out, size_t *out_len);

/* True if s[0..n) is valid UTF-8 made only of QN_CC_NFC_STABLE code points (so NFC leaves it and
 * every piece of it unchanged). */
bool qn_nfc_is_stable(const uint8_t *s, size_t n);

#endif /* QN_TEXT_PRETOK_H */
