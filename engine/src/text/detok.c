/* text/detok.c - decoding ids to text (HF ByteLevel decoder + String::from_utf8_lossy) and the
 * streaming detokenizer that emits only complete UTF-8.
 *
 * Lossy UTF-8 (the rule Rust's from_utf8_lossy and the WHATWG decoder follow, "substitution of
 * maximal subparts"): at a byte where no well-formed sequence starts, the longest prefix of a
 * well-formed sequence found there (at least one byte) is replaced by one U+FFFD. A prefix cut
 * short by the end of the input is one U+FFFD too. The rule only looks ahead (at most 3 bytes),
 * so the streaming detokenizer gives the same bytes as decoding everything at once: it holds back
 * a truncated-but-valid tail (at most 3 bytes) until the next token completes or breaks it, and
 * turns it into one U+FFFD at flush.
 */
#include "text/tokenizer_impl.h" /* defines: eng_tokenizer, qn_utf8_lossy_append */

#include "core/core.h" /* defines: eng_malloc, eng_realloc, eng_free */

#include <stdio.h>

static const uint8_t REPLACEMENT[3] = {0xEF, 0xBF, 0xBD}; /* U+FFFD */

/* ==== lossy UTF-8 ============================================================================= */

/* At s[i], where no complete well-formed sequence starts: length of the maximal prefix of a
 * well-formed sequence (>= 1); *truncated if that prefix reaches the end of s. */
static size_t bad_len(const uint8_t *s, size_t n, size_t i, bool *truncated)
{
    uint8_t b0 = s[i], lo = 0x80, hi = 0xBF;
    size_t need;
    *truncated = false;
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        need = 1;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
        need = 2;
        if (b0 == 0xE0) lo = 0xA0;
        if (b0 == 0xED) hi = 0x9F;
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        need = 3;
        if (b0 == 0xF0) lo = 0x90;
        if (b0 == 0xF4) hi = 0x8F;
    } else {
        return 1;
    }
    size_t k = 1;
    for (; k <= need; k++) {
        if (i + k >= n) {
            *truncated = true;
            return k;
        }
        uint8_t b = s[i + k];
        bool ok = k == 1 ? (b >= lo && b <= hi) : ((b & 0xC0) == 0x80);
        if (!ok) break;
    }
    return k;
}

static bool grow(char **dst, size_t *cap, size_t need)
{
    if (need <= *cap) return true;
    size_t c = *cap ? *cap : 64;
    while (c < need) {
        if (c > SIZE_MAX / 2) return false;
        c *= 2;
    }
    char *p = eng_realloc(*dst, c);
    if (!p) return false;
    *dst = p;
    *cap = c;
    return true;
}

bool qn_utf8_lossy_append(const uint8_t *s, size_t n, bool keep_tail, char **dst, size_t *len, size_t *cap,
                          size_t *tail)
{
    *tail = 0;
    /* worst case: every byte becomes U+FFFD (3 bytes), + NUL */
    size_t need;
    if (!eng_mul_ok(n, 3, &need) || !eng_add_ok(need, *len + 1, &need) || !grow(dst, cap, need)) return false;
    char *o = *dst + *len;
    size_t i = 0;
    while (i < n) {
        /* copy the longest valid run */
        size_t j = i;
        while (j < n) {
            if (s[j] < 0x80) {
                j++;
                continue;
            }
            int32_t cp;
            size_t l = qn_utf8_unit(s, n, j, &cp);
            if (cp < 0) break;
            j += l;
        }
        memcpy(o, s + i, j - i);
        o += j - i;
        i = j;
        if (i >= n) break;
        bool truncated;
        size_t bl = bad_len(s, n, i, &truncated);
        if (truncated && keep_tail) {
            *tail = n - i;
            break;
        }
        memcpy(o, REPLACEMENT, 3);
        o += 3;
        i += bl;
    }
    *len = (size_t)(o - *dst);
    (*dst)[*len] = '\0';
    return true;
}

/* ==== decode ================================================================================== */

/* ENG_ERR_INVALID naming the id (and its position, unless pos == SIZE_MAX) */
static eng_status bad_id(const eng_tokenizer *t, int32_t id, size_t pos)
{
    char where[48] = "";
    if (pos != SIZE_MAX) snprintf(where, sizeof where, " at position %zu", pos);
    if (id < 0 || id >= t->n_vocab)
        return eng_err_set(ENG_ERR_INVALID, "token id %d%s is out of range [0, %d)", (int)id, where,
                           (int)t->n_vocab);
    return eng_err_set(ENG_ERR_INVALID, "token id %d%s names no token", (int)id, where);
}

static inline bool id_present(const eng_tokenizer *t, int32_t id)
{
    return id >= 0 && id < t->n_vocab && (t->flags[id] & QN_TOK_PRESENT);
}

eng_status eng_tokenizer_decode(const eng_tokenizer *t, const int32_t *ids, size_t n, bool skip_special,
                                char **text, size_t *len)
{
    if (text) *text = NULL;
    if (len) *len = 0;
    if (!t || !text || (!ids && n))
        return eng_err_set(ENG_ERR_INVALID, "eng_tokenizer_decode: NULL argument");
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (!id_present(t, id)) return bad_id(t, id, i);
        if (skip_special && (t->flags[id] & QN_TOK_SPECIAL)) continue;
        if (!eng_add_ok(total, t->entries[id].bytes_len, &total))
            return eng_err_set(ENG_ERR_INVALID, "decode: output too large");
    }
    eng_status st = ENG_OK;
    uint8_t *raw = eng_malloc(total + 1);
    char *out = NULL;
    size_t olen = 0, ocap = 0, tail;
    if (!raw) {
        st = eng_err_set(ENG_ERR_NOMEM, "decode: out of memory (%zu bytes)", total);
        goto out;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (skip_special && (t->flags[id] & QN_TOK_SPECIAL)) continue;
        const qn_tok_entry *e = &t->entries[id];
        memcpy(raw + k, t->bytes_pool + e->bytes_off, e->bytes_len);
        k += e->bytes_len;
    }
    /* most decodes are valid UTF-8: hand the buffer over as is */
    if (qn_utf8_valid_prefix(raw, k) == k) {
        raw[k] = '\0';
        *text = (char *)raw;
        if (len) *len = k;
        return ENG_OK;
    }
    if (!qn_utf8_lossy_append(raw, k, false, &out, &olen, &ocap, &tail)) {
        st = eng_err_set(ENG_ERR_NOMEM, "decode: out of memory");
        goto out;
    }
    *text = out;
    out = NULL;
    if (len) *len = olen;
out:
    eng_free(raw);
    eng_free(out);
    return st;
}

/* ==== streaming detokenizer =================================================================== */

struct eng_detok {
    const eng_tokenizer *tok;
    bool skip_special;
    uint8_t pend[4]; /* held-back tail of an incomplete character (<= 3 bytes) */
    size_t n_pend;
    uint8_t *work; /* (work_cap) pend + the new token's bytes */
    size_t work_cap;
    char *out; /* (out_cap) text returned by the last call */
    size_t out_cap;
};

eng_status eng_detok_create(const eng_tokenizer *tok, bool skip_special, eng_detok **out)
{
    if (!out) return eng_err_set(ENG_ERR_INVALID, "eng_detok_create: out is NULL");
    *out = NULL;
    if (!tok) return eng_err_set(ENG_ERR_INVALID, "eng_detok_create: tokenizer is NULL");
    eng_detok *d = eng_calloc(1, sizeof *d);
    if (!d) return eng_err_set(ENG_ERR_NOMEM, "detokenizer: out of memory");
    d->tok = tok;
    d->skip_special = skip_special;
    d->out = eng_malloc(64);
    if (!d->out) {
        eng_free(d);
        return eng_err_set(ENG_ERR_NOMEM, "detokenizer: out of memory");
    }
    d->out_cap = 64;
    d->out[0] = '\0';
    *out = d;
    return ENG_OK;
}

void eng_detok_destroy(eng_detok *d)
{
    if (!d) return;
    eng_free(d->work);
    eng_free(d->out);
    eng_free(d);
}

void eng_detok_reset(eng_detok *d)
{
    if (d) d->n_pend = 0;
}

size_t eng_detok_pending(const eng_detok *d)
{
    return d ? d->n_pend : 0;
}

eng_status eng_detok_push(eng_detok *d, int32_t id, const char **text, size_t *len)
{
    if (text) *text = "";
    if (len) *len = 0;
    if (!d || !text || !len) return eng_err_set(ENG_ERR_INVALID, "eng_detok_push: NULL argument");
    const eng_tokenizer *t = d->tok;
    if (!id_present(t, id)) return bad_id(t, id, SIZE_MAX);
    if (d->skip_special && (t->flags[id] & QN_TOK_SPECIAL)) return ENG_OK;
    const qn_tok_entry *e = &t->entries[id];
    size_t n = d->n_pend + e->bytes_len;
    if (n > d->work_cap) {
        size_t cap = n < 64 ? 64 : n;
        uint8_t *w = eng_realloc(d->work, cap);
        if (!w) return eng_err_set(ENG_ERR_NOMEM, "detokenizer: out of memory");
        d->work = w;
        d->work_cap = cap;
    }
    memcpy(d->work, d->pend, d->n_pend);
    memcpy(d->work + d->n_pend, t->bytes_pool + e->bytes_off, e->bytes_len);
    size_t olen = 0, tail;
    if (!qn_utf8_lossy_append(d->work, n, true, &d->out, &olen, &d->out_cap, &tail))
        return eng_err_set(ENG_ERR_NOMEM, "detokenizer: out of memory");
    memcpy(d->pend, d->work + n - tail, tail);
    d->n_pend = tail;
    *text = d->out;
    *len = olen;
    return ENG_OK;
}

eng_status eng_detok_flush(eng_detok *d, const char **text, size_t *len)
{
    if (text) *text = "";
    if (len) *len = 0;
    if (!d || !text || !len) return eng_err_set(ENG_ERR_INVALID, "eng_detok_flush: NULL argument");
    size_t olen = 0, tail;
    if (!qn_utf8_lossy_append(d->pend, d->n_pend, false, &d->out, &olen, &d->out_cap, &tail))
        return eng_err_set(ENG_ERR_NOMEM, "detokenizer: out of memory");
    d->n_pend = 0;
    *text = d->out;
    *len = olen;
    return ENG_OK;
}
