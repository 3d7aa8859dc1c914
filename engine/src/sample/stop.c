/* sample/stop.c - stop tokens, stop strings with hold-back, min/max tokens (see stop.h).
 *
 * Each stop string runs a KMP automaton over the whole output text: q[k] is the length of the
 * longest prefix of stop k that is a suffix of the text so far, updated in amortised O(1) per
 * byte, so a feed costs O(delta bytes x number of stops) whatever the stop lengths. A match ends
 * where q[k] reaches the stop's length; the held-back suffix is max_k q[k] (its proper part).
 * `pend` holds the text not yet emitted; between calls it is exactly that held-back suffix.
 */
#include "sample/stop.h"

#include "core/core.h" /* eng_malloc, eng_realloc, eng_strdup */

#include <stdint.h>
#include <string.h>

/* A growable NUL-terminated byte string. */
typedef struct bytes {
    char *data;
    size_t len, cap;
} bytes;

struct eng_stop {
    char **stops; /* n_stop copies */
    size_t *stop_len;
    uint16_t **fail; /* fail[k][i]: KMP prefix function of stop k (stop_len[k] entries) */
    size_t *q;       /* automaton state per stop, 0..stop_len[k] */
    size_t n_stop;
    int32_t *eos; /* n_eos */
    size_t n_eos;
    int32_t *stop_ids; /* n_stop_ids */
    size_t n_stop_ids;
    int32_t *suppress; /* eos (unless ignore_eos) + stop ids, while n_tokens < min_tokens */
    size_t n_suppress;
    int max_tokens, min_tokens;
    bool ignore_eos;

    int n_tokens;
    bool finished;
    bytes pend; /* text not emitted yet: the held-back suffix (+ the delta during a feed) */
    bytes emit; /* what the last call returned */
};

/* ==== helpers ================================================================================= */

/* Strict UTF-8 check (no overlongs, no surrogates, <= U+10FFFF). */
static bool utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t k;
        unsigned min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            k = 1, min = 0x80, c &= 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            k = 2, min = 0x800, c &= 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            k = 3, min = 0x10000, c &= 0x07;
        } else {
            return false;
        }
        if (n - i <= k) return false;
        for (size_t j = 1; j <= k; j++) {
            unsigned d = s[i + j];
            if ((d & 0xC0) != 0x80) return false;
            c = (c << 6) | (d & 0x3F);
        }
        if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return false;
        i += k + 1;
    }
    return true;
}

static bool in_list(const int32_t *ids, size_t n, int32_t t)
{
    for (size_t i = 0; i < n; i++)
        if (ids[i] == t) return true;
    return false;
}

/* KMP prefix function: f[i] = length of the longest proper prefix of p[0..i] that is also a
 * suffix of it. */
static void kmp_prefix(const char *p, size_t L, uint16_t *f)
{
    f[0] = 0;
    size_t k = 0;
    for (size_t i = 1; i < L; i++) {
        while (k > 0 && p[i] != p[k]) k = f[k - 1];
        if (p[i] == p[k]) k++;
        f[i] = (uint16_t)k;
    }
}

/* One automaton step of stop k from state q on byte c; the result equals stop_len[k] on a match. */
static inline size_t kmp_step(const eng_stop *st, size_t k, size_t q, char c)
{
    const char *p = st->stops[k];
    const uint16_t *f = st->fail[k];
    if (q == st->stop_len[k]) q = f[q - 1];
    while (q > 0 && p[q] != c) q = f[q - 1];
    if (p[q] == c) q++;
    return q;
}

/* Bytes at the end of the text that may still begin a stop string. */
static size_t held_len(const eng_stop *st)
{
    size_t best = 0;
    for (size_t k = 0; k < st->n_stop; k++) {
        size_t q = st->q[k];
        if (q == st->stop_len[k])
            q = st->fail[k][q - 1]; /* a match before min_tokens: only its border continues */
        if (q > best) best = q;
    }
    return best;
}

/* Grows a byte buffer to hold `need` bytes plus a NUL. All-or-nothing. */
static bool bytes_reserve(bytes *b, size_t need)
{
    if (need < b->cap) return true;
    size_t cap = b->cap ? b->cap : 64;
    while (cap <= need) {
        if (cap > SIZE_MAX / 2) return false;
        cap *= 2;
    }
    char *d = eng_realloc(b->data, cap);
    if (!d) return false;
    b->data = d;
    b->cap = cap;
    return true;
}

static void result_reset(eng_stop_result *out)
{
    memset(out, 0, sizeof *out);
    out->text = "";
    out->matched_token = -1;
}

/* Moves pend[0, n) into the emit buffer (reserved by the caller) and points out's text at it. */
static void emit_pending(eng_stop *st, size_t n, eng_stop_result *out)
{
    if (n) memcpy(st->emit.data, st->pend.data, n);
    st->emit.data[n] = '\0';
    st->emit.len = n;
    if (st->pend.len > n) memmove(st->pend.data, st->pend.data + n, st->pend.len - n);
    st->pend.len -= n;
    st->pend.data[st->pend.len] = '\0';
    out->text = st->emit.data;
    out->len = n;
}

static void finish(eng_stop *st, eng_finish_reason reason, eng_stop_result *out)
{
    st->finished = true;
    out->finished = true;
    out->reason = reason;
}

/* ==== lifecycle =============================================================================== */

eng_status eng_stop_create(const eng_stop_config *cfg, eng_stop **out)
{
    eng_stop *st = NULL;
    *out = NULL;
    if (!cfg) return eng_err_set(ENG_ERR_INVALID, "stop: NULL config");
    if ((cfg->n_stop && !cfg->stop) || (cfg->n_eos && !cfg->eos_ids) ||
        (cfg->n_stop_token_ids && !cfg->stop_token_ids))
        return eng_err_set(ENG_ERR_INVALID, "stop: NULL array with a non-zero count");
    if (cfg->n_stop > ENG_STOP_MAX_STRINGS)
        return eng_err_set(ENG_ERR_INVALID, "stop: at most %d stop strings (got %zu)", ENG_STOP_MAX_STRINGS,
                           cfg->n_stop);
    if (cfg->min_tokens < 0) return eng_err_set(ENG_ERR_INVALID, "stop: min_tokens must be >= 0");
    if (cfg->max_tokens == 0)
        return eng_err_set(ENG_ERR_INVALID, "stop: max_tokens must be >= 1 (or < 0: unlimited)");
    if (cfg->max_tokens > 0 && cfg->min_tokens > cfg->max_tokens)
        return eng_err_set(ENG_ERR_INVALID, "stop: min_tokens (%d) must not exceed max_tokens (%d)",
                           cfg->min_tokens, cfg->max_tokens);
    for (size_t i = 0; i < cfg->n_stop; i++) {
        const char *s = cfg->stop[i];
        if (!s || !*s) return eng_err_set(ENG_ERR_INVALID, "stop: stop string %zu is empty", i);
        size_t L = strnlen(s, ENG_STOP_MAX_LEN + 1);
        if (L > ENG_STOP_MAX_LEN)
            return eng_err_set(ENG_ERR_INVALID, "stop: stop string %zu is longer than %d bytes", i,
                               ENG_STOP_MAX_LEN);
        if (!utf8_valid((const unsigned char *)s, L))
            return eng_err_set(ENG_ERR_INVALID, "stop: stop string %zu is not valid UTF-8", i);
    }

    st = eng_calloc(1, sizeof *st);
    if (!st) goto fail;
    st->max_tokens = cfg->max_tokens;
    st->min_tokens = cfg->min_tokens;
    st->ignore_eos = cfg->ignore_eos;
    if (cfg->n_stop) {
        st->stops = eng_calloc(cfg->n_stop, sizeof *st->stops);
        st->stop_len = eng_calloc(cfg->n_stop, sizeof *st->stop_len);
        st->fail = eng_calloc(cfg->n_stop, sizeof *st->fail);
        st->q = eng_calloc(cfg->n_stop, sizeof *st->q);
        if (!st->stops || !st->stop_len || !st->fail || !st->q) goto fail;
        for (size_t i = 0; i < cfg->n_stop; i++) {
            size_t L = strlen(cfg->stop[i]);
            st->stops[i] = eng_strdup(cfg->stop[i]);
            st->fail[i] = eng_malloc(L * sizeof *st->fail[i]);
            st->n_stop++; /* destroy frees entry i from here on */
            if (!st->stops[i] || !st->fail[i]) goto fail;
            st->stop_len[i] = L;
            kmp_prefix(st->stops[i], L, st->fail[i]);
        }
    }
    if (cfg->n_eos) {
        st->eos = eng_malloc(cfg->n_eos * sizeof *st->eos);
        if (!st->eos) goto fail;
        memcpy(st->eos, cfg->eos_ids, cfg->n_eos * sizeof *st->eos);
        st->n_eos = cfg->n_eos;
    }
    if (cfg->n_stop_token_ids) {
        st->stop_ids = eng_malloc(cfg->n_stop_token_ids * sizeof *st->stop_ids);
        if (!st->stop_ids) goto fail;
        memcpy(st->stop_ids, cfg->stop_token_ids, cfg->n_stop_token_ids * sizeof *st->stop_ids);
        st->n_stop_ids = cfg->n_stop_token_ids;
    }
    size_t n_sup = (cfg->ignore_eos ? 0 : st->n_eos) + st->n_stop_ids;
    if (n_sup && st->min_tokens > 0) {
        st->suppress = eng_malloc(n_sup * sizeof *st->suppress);
        if (!st->suppress) goto fail;
        if (!cfg->ignore_eos)
            for (size_t i = 0; i < st->n_eos; i++) st->suppress[st->n_suppress++] = st->eos[i];
        for (size_t i = 0; i < st->n_stop_ids; i++) st->suppress[st->n_suppress++] = st->stop_ids[i];
    }
    if (!bytes_reserve(&st->pend, 0) || !bytes_reserve(&st->emit, 0)) goto fail;
    st->pend.data[0] = st->emit.data[0] = '\0';
    *out = st;
    return ENG_OK;
fail:
    eng_stop_destroy(st);
    return eng_err_set(ENG_ERR_NOMEM, "stop: out of memory");
}

void eng_stop_destroy(eng_stop *st)
{
    if (!st) return;
    for (size_t i = 0; i < st->n_stop; i++) {
        eng_free(st->stops[i]);
        eng_free(st->fail[i]);
    }
    eng_free(st->stops);
    eng_free(st->stop_len);
    eng_free(st->fail);
    eng_free(st->q);
    eng_free(st->eos);
    eng_free(st->stop_ids);
    eng_free(st->suppress);
    eng_free(st->pend.data);
    eng_free(st->emit.data);
    eng_free(st);
}

/* ==== feeding ================================================================================= */

eng_status eng_stop_feed(eng_stop *st, int32_t token, const char *text, size_t len, eng_stop_result *out)
{
    result_reset(out);
    if (st->finished) return eng_err_set(ENG_ERR_INVALID, "stop: the choice already finished");
    if (len && !text) return eng_err_set(ENG_ERR_INVALID, "stop: NULL text with a non-zero length");

    /* the only allocations: room for held + delta in both buffers; nothing changes on failure */
    size_t held = st->pend.len, need;
    if (!eng_add_ok(held, len, &need) || !bytes_reserve(&st->pend, need) || !bytes_reserve(&st->emit, need))
        return eng_err_set(ENG_ERR_NOMEM, "stop: out of memory");

    int p = st->n_tokens + 1;
    st->n_tokens = p;
    bool token_active = p >= st->min_tokens;

    /* token stops: the token's own text is dropped, the held text is flushed */
    bool is_eos = !st->ignore_eos && in_list(st->eos, st->n_eos, token);
    bool is_stop_id = !is_eos && in_list(st->stop_ids, st->n_stop_ids, token);
    if (token_active && (is_eos || is_stop_id)) {
        emit_pending(st, st->pend.len, out);
        finish(st, ENG_FINISH_STOP, out);
        out->matched_token = is_stop_id ? token : -1;
        return ENG_OK;
    }

    if (len) memcpy(st->pend.data + held, text, len);
    st->pend.len = need;
    st->pend.data[need] = '\0';

    /* run the automata over the delta; stop at the first byte where a stop string completes */
    bool check = p > st->min_tokens;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        int best = -1;
        for (size_t k = 0; k < st->n_stop; k++) {
            size_t q = kmp_step(st, k, st->q[k], c);
            st->q[k] = q;
            if (check && q == st->stop_len[k] && (best < 0 || q > st->stop_len[best])) best = (int)k;
        }
        if (best >= 0) {
            size_t end = held + i + 1, start = end - st->stop_len[best];
            emit_pending(st, start, out);
            st->pend.len = 0;
            st->pend.data[0] = '\0';
            finish(st, ENG_FINISH_STOP, out);
            out->matched_stop = st->stops[best];
            return ENG_OK;
        }
    }

    if (st->max_tokens > 0 && p >= st->max_tokens && token_active) {
        emit_pending(st, st->pend.len, out);
        finish(st, ENG_FINISH_LENGTH, out);
        return ENG_OK;
    }
    size_t keep = held_len(st);
    if (keep > st->pend.len) keep = st->pend.len; /* cannot happen: states only grow with the text */
    emit_pending(st, st->pend.len - keep, out);
    return ENG_OK;
}

eng_status eng_stop_finish(eng_stop *st, eng_finish_reason reason, eng_stop_result *out)
{
    result_reset(out);
    if (st->finished) return eng_err_set(ENG_ERR_INVALID, "stop: the choice already finished");
    emit_pending(st, st->pend.len, out); /* emit has room: it is reserved to pend's size on every feed */
    finish(st, reason, out);
    return ENG_OK;
}

size_t eng_stop_suppressed(const eng_stop *st, const int32_t **ids)
{
    if (st->n_tokens < st->min_tokens && st->n_suppress) {
        *ids = st->suppress;
        return st->n_suppress;
    }
    *ids = NULL;
    return 0;
}

int eng_stop_n_tokens(const eng_stop *st)
{
    return st->n_tokens;
}

size_t eng_stop_n_held(const eng_stop *st)
{
    return st->pend.len;
}

bool eng_stop_is_finished(const eng_stop *st)
{
    return st->finished;
}
