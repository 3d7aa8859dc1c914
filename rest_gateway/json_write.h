/* json_write.h - appending JSON values to an eng_buf, byte-exact and always valid.
 *
 * The gateway writes every response body and SSE chunk itself (not through cJSON) so that the bytes
 * are fixed (golden tests) and cheap (one pass, no tree). Strings are escaped per RFC 8259; bytes
 * that are not valid UTF-8 become U+FFFD, so whatever the engine sends, the output parses. Floats
 * use the shortest text that reads back to the same value; non-finite numbers, which JSON cannot
 * carry, are written as -9999.0 (minus infinity, as vLLM does for logprobs) or null (NaN).
 *
 * All functions are h2o-free and gRPC-free. Out of memory is sticky in the eng_buf (`b->oom`).
 */
#ifndef GW_JSON_WRITE_H
#define GW_JSON_WRITE_H

#include "core/core.h" /* defines: eng_buf */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Writes `s[0..n)` as a quoted JSON string. Invalid UTF-8 sequences become "\ufffd". */
void gw_jw_str(eng_buf *b, const char *s, size_t n);

/* Writes a NUL-terminated string as a quoted JSON string, or `null` when s is NULL. */
void gw_jw_cstr(eng_buf *b, const char *s);

/* Writes `"key":` (key is a trusted ASCII literal; it is not escaped). */
void gw_jw_key(eng_buf *b, const char *key);

/* Writes an integer. */
void gw_jw_int(eng_buf *b, int64_t v);

/* Writes a float32 with the fewest digits that read back to the same float (-9999.0 for -inf,
 * 9999.0 for +inf, null for NaN). */
void gw_jw_float(eng_buf *b, float v);

/* Writes a double the same way (at most 17 significant digits). */
void gw_jw_double(eng_buf *b, double v);

/* Writes true or false. */
void gw_jw_bool(eng_buf *b, bool v);

/* True if s[0..n) is well-formed UTF-8 (no overlong forms, no surrogates, <= U+10FFFF). */
bool gw_utf8_valid(const char *s, size_t n);

/* Length of the longest prefix of s[0..n) that does not end inside a UTF-8 sequence (a trailing
 * incomplete but so-far-valid sequence is left out). Used to cut strings safely. */
size_t gw_utf8_complete_prefix(const char *s, size_t n);

#endif /* GW_JSON_WRITE_H */
