/* text/pyjson.h - JSON read and written the way Python's `json` module does it.
 *
 * The chat templates are Jinja programs that Hugging Face transformers runs on the objects Python's
 * json.loads builds from an OpenAI request. To render them byte-exactly in C we need the same value
 * model, so this parser differs from cJSON where Python differs:
 *   - numbers keep their kind: no fraction and no exponent -> int (any size, kept as decimal text,
 *     "-0" -> "0", more than 4300 digits is an error as in Python 3.11+); otherwise -> float, the
 *     correctly rounded double of the text (1e400 -> inf, 1e-400 -> 0.0);
 *   - duplicate object keys: the key keeps its first position and takes its last value (dict(pairs));
 *   - strings are decoded to UTF-8 (escapes, surrogate pairs); raw control characters, invalid
 *     UTF-8 and lone surrogates are errors (Python would accept a lone "\ud800" escape but its
 *     UTF-8 encoding fails later, so the request could never be served);
 *   - NaN / Infinity literals, which Python accepts, are rejected (they are not JSON).
 * Each value also records its byte span in the source so callers can copy raw text exactly.
 *
 * Writers:
 *   pj_dumps  = json.dumps(v, ensure_ascii=False) with the default separators ", " and ": "
 *               (what transformers' `tojson` filter calls), key order kept;
 *   pj_str    = Python str(v) (what Jinja prints for {{ v }}), pj_repr = repr(v).
 * Floats are printed as Python's repr: the shortest digits that round-trip, fixed notation when
 * the decimal exponent is in [-4, 16), else d.ddde+XX; 1.0 stays "1.0"; inf is "Infinity" in JSON
 * and "inf" in str().
 *
 * Memory: a parse builds the whole tree in one arena (pj_doc); pj_doc_destroy frees it at once.
 */
#ifndef QN_TEXT_PYJSON_H
#define QN_TEXT_PYJSON_H

#include "core/core.h" /* eng_buf, eng_status */

#include <stdbool.h>
#include <stddef.h>

/* Deepest nesting accepted (Python's recursion limit stops near 1000). */
#define PJ_MAX_DEPTH 512
/* Python 3.11's int <-> str digit limit (sys.get_int_max_str_digits()). */
#define PJ_MAX_INT_DIGITS 4300

typedef enum pj_type {
    PJ_UNDEF = 0, /* Jinja's Undefined: a missing key (never produced by the parser itself) */
    PJ_NULL,
    PJ_BOOL,
    PJ_INT,
    PJ_FLOAT,
    PJ_STR,
    PJ_ARRAY,
    PJ_OBJECT,
} pj_type;

typedef struct pj_value pj_value;
struct pj_value {
    pj_type type;
    bool b;          /* PJ_BOOL */
    double f;        /* PJ_FLOAT */
    const char *s;   /* PJ_STR: decoded UTF-8, NUL-terminated, may hold NULs; PJ_INT: canonical decimal */
    size_t n;        /* PJ_STR / PJ_INT: bytes; PJ_ARRAY: items; PJ_OBJECT: members */
    pj_value *items; /* PJ_ARRAY: n values; PJ_OBJECT: 2n values, key (PJ_STR) then value */
    size_t src_off;  /* byte span of the value in the parsed text (0, 0 for made-up values) */
    size_t src_len;
};

/* The shared Undefined value (type PJ_UNDEF). */
extern const pj_value pj_undefined;

typedef struct pj_doc pj_doc;

/* Parses `len` bytes of JSON text (one value, optional surrounding whitespace) into a new document.
 * On success *doc owns every value and *root points into it. Errors: ENG_ERR_INVALID with a detail
 * naming the byte offset ("JSON: unexpected character 'x' at byte 12"), ENG_ERR_NOMEM. `what`
 * prefixes the detail ("messages", "tools"); NULL means "JSON". Thread-safe (no shared state). */
eng_status pj_parse(const char *text, size_t len, const char *what, pj_doc **doc, const pj_value **root);

/* Frees a document and all its values; NULL-safe. */
void pj_doc_destroy(pj_doc *doc);

/* Arena allocation tied to a document (freed by pj_doc_destroy); NULL on OOM. */
void *pj_doc_alloc(pj_doc *doc, size_t n);
/* Makes a PJ_STR value holding a copy of s[0..n) in the document; NULL on OOM. */
pj_value *pj_doc_new_str(pj_doc *doc, const char *s, size_t n);

/* Object member lookup: the value for `key` (exact bytes), or NULL if absent or o is no object. */
const pj_value *pj_get(const pj_value *o, const char *key);

/* Appends json.dumps(v, ensure_ascii=False) to b. False on OOM, or when v is (or contains) PJ_UNDEF
 * (Python: "Object of type Undefined is not JSON serializable"); *undef_hit tells the two apart. */
bool pj_dumps(const pj_value *v, eng_buf *b, bool *undef_hit);
/* Appends Python str(v) (PJ_UNDEF prints as "" like Jinja's Undefined). False on OOM. */
bool pj_str(const pj_value *v, eng_buf *b);
/* Appends Python repr(v). False on OOM. */
bool pj_repr(const pj_value *v, eng_buf *b);

/* Appends Python's repr of a double ("1.0", "1e+16", "5e-324", "-0.0"); `json` picks JSON's
 * spelling of the non-finite values (Infinity, -Infinity, NaN) over Python's (inf, -inf, nan). */
bool pj_float_repr(double x, bool json, eng_buf *b);

/* Python truthiness (Undefined, null, false, 0, 0.0, "", [], {} are false). */
bool pj_truthy(const pj_value *v);

/* Checks that s[0..n) is valid UTF-8 (no overlongs, surrogates or values above U+10FFFF). */
bool pj_utf8_valid(const char *s, size_t n);

#endif /* QN_TEXT_PYJSON_H */
