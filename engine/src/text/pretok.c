/* text/pretok.c - Unicode classes (from utf8proc), strict UTF-8 units, the Qwen2 pre-tokenizer
 * matcher and NFC with a quick check. See pretok.h for the regex and the semantics it follows.
 *
 * Class table: one byte per code point below QN_CLS_TABLE (planes 0-2: every script, emoji and
 * the common CJK extensions), derived at first use from utf8proc; code points above it ask
 * utf8proc directly. Nothing here is a hand-written Unicode table.
 *
 * NFC quick check: a code point is "NFC-stable" when its canonical combining class is 0 and it
 * is NFC_Quick_Check=Yes, i.e. it neither changes under NFC (no singleton / excluded /
 * non-starter decomposition) nor can combine with a preceding character (it is not the second
 * half of any primary composite, Hangul V/T jamo included). Both sets are computed from utf8proc
 * at init. A boundary before a stable code point is a safe normalization boundary, so only the
 * stretches around unstable code points are handed to utf8proc.
 */
#include "text/pretok.h" /* defines: classes, qn_pretok_next, qn_nfc */

#include "core/core.h" /* defines: eng_realloc, eng_free */

#include <pthread.h>
#include <string.h>
#include <utf8proc.h>

/* ==== class tables ============================================================================ */

#define QN_CLS_TABLE 0x30000

static uint8_t g_cls[QN_CLS_TABLE];
static bool g_high_unstable; /* some non-stable code point lies at or above QN_CLS_TABLE */
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static bool has_canonical_decomposition(int32_t cp, const utf8proc_property_t *p)
{
    if (cp >= 0xAC00 && cp <= 0xD7A3) return true; /* Hangul syllables: algorithmic */
    return p->decomp_seqindex != UINT16_MAX && p->decomp_type == 0;
}

/* class bits from the general category and the \s definition (stability bit added later) */
static uint8_t base_class(int32_t cp)
{
    if (cp == '\r' || cp == '\n') return QN_CC_NL;
    if (cp == 0x09 || cp == 0x0B || cp == 0x0C || cp == 0x85) return QN_CC_S;
    utf8proc_category_t c = utf8proc_category(cp);
    uint8_t word = 0;
    switch (c) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
        return QN_CC_L | QN_CC_WORD;
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
        return QN_CC_N | QN_CC_WORD;
    case UTF8PROC_CATEGORY_NO:
        return QN_CC_N;
    case UTF8PROC_CATEGORY_ZS:
    case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP:
        return QN_CC_S;
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC:
    case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_PC:
        word = QN_CC_WORD;
        break;
    case UTF8PROC_CATEGORY_CN:
        return QN_CC_OTHER | QN_CC_UNASSIGNED;
    default:
        break;
    }
    if (cp == 0x200C || cp == 0x200D) word = QN_CC_WORD; /* Join_Control */
    return QN_CC_OTHER | word;
}

/* Marks cp unstable: in the table, or by noting that the high range needs the slow path. */
static void mark_unstable(int32_t cp)
{
    if (cp < QN_CLS_TABLE)
        g_cls[cp] &= (uint8_t)~QN_CC_NFC_STABLE;
    else
        g_high_unstable = true;
}

static void init_tables(void)
{
    for (int32_t cp = 0; cp < QN_CLS_TABLE; cp++) {
        if (cp >= 0xD800 && cp <= 0xDFFF) {
            g_cls[cp] = QN_CC_OTHER;
            continue;
        }
        g_cls[cp] = base_class(cp) | QN_CC_NFC_STABLE;
    }
    /* ccc != 0, NFC_QC=No (decomposes and does not recompose to itself), NFC_QC=Maybe (every
     * non-first code point of a primary composite's canonical decomposition). */
    for (int32_t cp = 0x80; cp <= 0x10FFFF; cp++) {
        if (cp >= 0xD800 && cp <= 0xDFFF) continue;
        const utf8proc_property_t *p = utf8proc_get_property(cp);
        if (p->combining_class != 0) mark_unstable(cp);
        if (!has_canonical_decomposition(cp, p)) continue;
        utf8proc_int32_t d[32], c[32];
        utf8proc_ssize_t nd = utf8proc_decompose_char(cp, d, 32, UTF8PROC_DECOMPOSE, NULL);
        if (nd <= 0 || nd > 32) {
            mark_unstable(cp);
            continue;
        }
        memcpy(c, d, (size_t)nd * sizeof d[0]);
        utf8proc_ssize_t nc = utf8proc_normalize_utf32(c, nd, UTF8PROC_STABLE | UTF8PROC_COMPOSE);
        if (nc != 1 || c[0] != cp) {
            mark_unstable(cp); /* NFC_QC=No */
            continue;
        }
        for (utf8proc_ssize_t k = 1; k < nd; k++) mark_unstable(d[k]); /* NFC_QC=Maybe */
    }
}

void qn_pretok_init(void)
{
    pthread_once(&g_once, init_tables);
}

static uint8_t high_class(int32_t cp)
{
    uint8_t c = base_class(cp);
    if (!g_high_unstable) {
        const utf8proc_property_t *p = utf8proc_get_property(cp);
        if (p->combining_class == 0 && !has_canonical_decomposition(cp, p)) c |= QN_CC_NFC_STABLE;
    }
    return c;
}

static inline uint8_t class_of(int32_t cp)
{
    return cp < QN_CLS_TABLE ? g_cls[cp] : high_class(cp);
}

uint8_t qn_pretok_class_of(int32_t cp)
{
    qn_pretok_init();
    if (cp < 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return QN_CC_OTHER;
    return class_of(cp);
}

/* ==== UTF-8 =================================================================================== */

size_t qn_utf8_unit(const uint8_t *s, size_t n, size_t i, int32_t *cp)
{
    uint8_t b0 = s[i];
    if (b0 < 0x80) {
        *cp = b0;
        return 1;
    }
    size_t left = n - i;
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        if (left >= 2 && (s[i + 1] & 0xC0) == 0x80) {
            *cp = ((int32_t)(b0 & 0x1F) << 6) | (s[i + 1] & 0x3F);
            return 2;
        }
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
        if (left >= 3) {
            uint8_t b1 = s[i + 1], b2 = s[i + 2];
            uint8_t lo = b0 == 0xE0 ? 0xA0 : 0x80, hi = b0 == 0xED ? 0x9F : 0xBF;
            if (b1 >= lo && b1 <= hi && (b2 & 0xC0) == 0x80) {
                *cp = ((int32_t)(b0 & 0x0F) << 12) | ((int32_t)(b1 & 0x3F) << 6) | (b2 & 0x3F);
                return 3;
            }
        }
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        if (left >= 4) {
            uint8_t b1 = s[i + 1], b2 = s[i + 2], b3 = s[i + 3];
            uint8_t lo = b0 == 0xF0 ? 0x90 : 0x80, hi = b0 == 0xF4 ? 0x8F : 0xBF;
            if (b1 >= lo && b1 <= hi && (b2 & 0xC0) == 0x80 && (b3 & 0xC0) == 0x80) {
                *cp = ((int32_t)(b0 & 0x07) << 18) | ((int32_t)(b1 & 0x3F) << 12) |
                      ((int32_t)(b2 & 0x3F) << 6) | (b3 & 0x3F);
                return 4;
            }
        }
    }
    *cp = -1;
    return 1;
}

size_t qn_utf8_valid_prefix(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        int32_t cp;
        size_t l = qn_utf8_unit(s, n, i, &cp);
        if (cp < 0) break;
        i += l;
    }
    return i;
}

/* ==== the pre-tokenizer matcher =============================================================== */

/* class (QN_CC_MASK bits only) of the unit at s[i], its length in *len */
static inline uint8_t unit_class(const uint8_t *s, size_t n, size_t i, size_t *len)
{
    uint8_t b = s[i];
    if (b < 0x80) {
        *len = 1;
        return g_cls[b] & QN_CC_MASK;
    }
    int32_t cp;
    *len = qn_utf8_unit(s, n, i, &cp);
    if (cp < 0) return QN_CC_OTHER;
    return class_of(cp) & QN_CC_MASK;
}

/* end of the run of units of class `cls` starting at j */
static inline size_t run_of(const uint8_t *s, size_t n, size_t j, uint8_t cls)
{
    while (j < n) {
        size_t l;
        if (unit_class(s, n, j, &l) != cls) break;
        j += l;
    }
    return j;
}

/* [^\s\p{L}\p{N}]+[\r\n]* continuing at j (the first unit of the + is already consumed) */
static inline size_t run_other_nl(const uint8_t *s, size_t n, size_t j)
{
    j = run_of(s, n, j, QN_CC_OTHER);
    while (j < n && (s[j] == '\r' || s[j] == '\n')) j++;
    return j;
}

static inline bool ascii_ieq(uint8_t c, uint8_t lower)
{
    return (c | 0x20) == lower;
}

/* (?i:'s|'t|'re|'ve|'m|'ll|'d) at s[i] == '\'': match length or 0 */
static size_t contraction(const uint8_t *s, size_t n, size_t i)
{
    if (i + 1 >= n) return 0;
    uint8_t c = s[i + 1];
    if (c < 0x80 && (c | 0x20) >= 'a' && (c | 0x20) <= 'z') {
        uint8_t lc = c | 0x20;
        if (lc == 's' || lc == 't' || lc == 'm' || lc == 'd') return 2;
        if (i + 2 < n) {
            uint8_t c2 = s[i + 2];
            if ((lc == 'r' || lc == 'v') && ascii_ieq(c2, 'e')) return 3;
            if (lc == 'l' && ascii_ieq(c2, 'l')) return 3;
        }
        return 0;
    }
    /* U+017F LATIN SMALL LETTER LONG S case-folds to 's' */
    if (c == 0xC5 && i + 2 < n && s[i + 2] == 0xBF) return 3;
    return 0;
}

size_t qn_pretok_next(const uint8_t *s, size_t n, size_t i)
{
    /* branch 1: contractions */
    if (s[i] == '\'') {
        size_t m = contraction(s, n, i);
        if (m) return i + m;
    }
    size_t l0;
    uint8_t c0 = unit_class(s, n, i, &l0);
    size_t j = i + l0;
    /* branch 2 with an empty prefix: \p{L}+ */
    if (c0 == QN_CC_L) return run_of(s, n, j, QN_CC_L);
    /* branch 3: one \p{N} */
    if (c0 == QN_CC_N) return j;
    size_t l1 = 0;
    uint8_t c1 = 0xFF;
    if (j < n) c1 = unit_class(s, n, j, &l1);
    /* branch 2: [^\r\n\p{L}\p{N}]\p{L}+ */
    if (c0 != QN_CC_NL && c1 == QN_CC_L) return run_of(s, n, j + l1, QN_CC_L);
    /* branch 4: ' ?[^\s\p{L}\p{N}]+[\r\n]*' */
    if (c0 == QN_CC_OTHER) return run_other_nl(s, n, j);
    if (s[i] == ' ' && c1 == QN_CC_OTHER) return run_other_nl(s, n, j + l1);
    /* c0 is \s. Branch 5 '\s*[\r\n]+' ends after the last \r or \n of the whitespace run;
     * branch 6 '\s+(?!\S)' takes the run, minus its last unit unless the text ends there;
     * branch 7 '\s+' takes a single unit followed by non-space. */
    size_t p = i, last = i, nl_end = 0, count = 0;
    while (p < n) {
        size_t l;
        uint8_t c = unit_class(s, n, p, &l);
        if (c != QN_CC_S && c != QN_CC_NL) break;
        if (c == QN_CC_NL) nl_end = p + l;
        last = p;
        p += l;
        count++;
    }
    if (nl_end) return nl_end;
    if (p == n) return p;
    if (count >= 2) return last;
    return p;
}

/* ==== NFC ===================================================================================== */

void qn_nfc_scratch_free(qn_nfc_scratch *sc)
{
    eng_free(sc->cps);
    eng_free(sc->out);
    memset(sc, 0, sizeof *sc);
}

bool qn_nfc_is_stable(const uint8_t *s, size_t n)
{
    qn_pretok_init();
    size_t i = 0;
    while (i < n) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        int32_t cp;
        size_t l = qn_utf8_unit(s, n, i, &cp);
        if (cp < 0 || !(class_of(cp) & QN_CC_NFC_STABLE)) return false;
        i += l;
    }
    return true;
}

static bool out_reserve(qn_nfc_scratch *sc, size_t need)
{
    if (need <= sc->cap_out) return true;
    size_t cap = sc->cap_out ? sc->cap_out : 256;
    while (cap < need) {
        if (cap > SIZE_MAX / 2) return false;
        cap *= 2;
    }
    uint8_t *p = eng_realloc(sc->out, cap);
    if (!p) return false;
    sc->out = p;
    sc->cap_out = cap;
    return true;
}

static bool out_append(qn_nfc_scratch *sc, size_t *len, const void *p, size_t n)
{
    size_t need;
    if (!eng_add_ok(*len, n, &need) || !out_reserve(sc, need)) return false;
    if (n) memcpy(sc->out + *len, p, n);
    *len = need;
    return true;
}

static bool cps_reserve(qn_nfc_scratch *sc, size_t need)
{
    if (need <= sc->cap_cps) return true;
    size_t cap = sc->cap_cps ? sc->cap_cps : 256, bytes;
    while (cap < need) {
        if (cap > SIZE_MAX / 8) return false;
        cap *= 2;
    }
    if (!eng_mul_ok(cap, sizeof(int32_t), &bytes)) return false;
    int32_t *p = eng_realloc(sc->cps, bytes);
    if (!p) return false;
    sc->cps = p;
    sc->cap_cps = cap;
    return true;
}

static inline int ccc_of(int32_t cp)
{
    return utf8proc_get_property(cp)->combining_class;
}

/* Stable sort of v[0..n) by canonical combining class (the canonical ordering of one run of
 * non-starters): insertion sort for short runs, a counting sort (O(n), stable) for long ones,
 * so that hostile input such as a megabyte of alternating marks stays linear. utf8proc's own
 * ordering is a bubble sort, quadratic on such input. */
static bool sort_by_ccc(int32_t *v, size_t n)
{
    if (n <= 32) {
        for (size_t i = 1; i < n; i++) {
            int32_t x = v[i];
            int cx = ccc_of(x);
            size_t j = i;
            while (j > 0 && ccc_of(v[j - 1]) > cx) {
                v[j] = v[j - 1];
                j--;
            }
            v[j] = x;
        }
        return true;
    }
    int32_t *tmp = eng_malloc(n * sizeof *tmp);
    if (!tmp) return false;
    size_t count[257] = {0};
    for (size_t i = 0; i < n; i++) count[ccc_of(v[i]) + 1]++;
    for (int c = 1; c < 257; c++) count[c] += count[c - 1];
    for (size_t i = 0; i < n; i++) tmp[count[ccc_of(v[i])]++] = v[i];
    memcpy(v, tmp, n * sizeof *tmp);
    eng_free(tmp);
    return true;
}

/* Normalizes the valid UTF-8 span s[0..n) and appends it to sc->out: canonical decomposition of
 * each code point (utf8proc), canonical ordering (sort_by_ccc), then canonical composition and
 * re-encoding (utf8proc_reencode). Same result as utf8proc's NFC, in linear time. */
static eng_status nfc_span(const uint8_t *s, size_t n, qn_nfc_scratch *sc, size_t *len)
{
    const utf8proc_option_t opt = UTF8PROC_STABLE | UTF8PROC_COMPOSE;
    if (n > (size_t)INT32_MAX / 8)
        return eng_err_set(ENG_ERR_INVALID, "NFC: a span of %zu bytes is too long", n);
    size_t m = 0;
    for (size_t i = 0; i < n;) {
        int32_t cp;
        i += qn_utf8_unit(s, n, i, &cp); /* the span is valid UTF-8 */
        if (!cps_reserve(sc, m + 33)) return eng_err_set(ENG_ERR_NOMEM, "NFC: out of memory");
        utf8proc_ssize_t k = utf8proc_decompose_char(cp, sc->cps + m, 32, UTF8PROC_DECOMPOSE, NULL);
        if (k < 0 || k > 32)
            return eng_err_set(ENG_ERR_INTERNAL, "NFC: cannot decompose U+%04X", (unsigned)cp);
        m += (size_t)k;
    }
    for (size_t i = 0; i < m;) {
        if (ccc_of(sc->cps[i]) == 0) {
            i++;
            continue;
        }
        size_t j = i + 1;
        while (j < m && ccc_of(sc->cps[j]) != 0) j++;
        if (j - i > 1 && !sort_by_ccc(sc->cps + i, j - i))
            return eng_err_set(ENG_ERR_NOMEM, "NFC: out of memory");
        i = j;
    }
    /* composition, then UTF-8 written over the buffer (it needs m + 1 slots) */
    utf8proc_ssize_t nb = utf8proc_reencode(sc->cps, (utf8proc_ssize_t)m, opt);
    if (nb < 0) return eng_err_set(ENG_ERR_INTERNAL, "NFC: utf8proc: %s", utf8proc_errmsg(nb));
    if (!out_append(sc, len, sc->cps, (size_t)nb)) return eng_err_set(ENG_ERR_NOMEM, "NFC: out of memory");
    return ENG_OK;
}

eng_status qn_nfc(const uint8_t *s, size_t n, qn_nfc_scratch *sc, const uint8_t **out, size_t *out_len)
{
    qn_pretok_init();
    size_t i = 0;
    /* quick check: ASCII and stable code points (and invalid bytes, which pass through) */
    while (i < n) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        int32_t cp;
        size_t l = qn_utf8_unit(s, n, i, &cp);
        if (cp >= 0 && !(class_of(cp) & QN_CC_NFC_STABLE)) break;
        i += l;
    }
    if (i == n) {
        *out = s;
        *out_len = n;
        return ENG_OK;
    }
    /* slow path: copy stable stretches, normalize each stretch of unstable code points together
     * with the stable code point before it (which may be the first half of a composite) */
    size_t len = 0, copied = 0, boundary = 0, p = 0;
    eng_status st = ENG_OK;
    while (p < n) {
        int32_t cp;
        size_t l = qn_utf8_unit(s, n, p, &cp);
        if (cp < 0) { /* an invalid byte ends the run; the next unit starts a new one */
            p += 1;
            boundary = p;
            continue;
        }
        if (class_of(cp) & QN_CC_NFC_STABLE) {
            boundary = p;
            p += l;
            continue;
        }
        size_t q = p + l;
        while (q < n) {
            int32_t cq;
            size_t lq = qn_utf8_unit(s, n, q, &cq);
            if (cq < 0 || (class_of(cq) & QN_CC_NFC_STABLE)) break;
            q += lq;
        }
        if (!out_append(sc, &len, s + copied, boundary - copied)) {
            st = eng_err_set(ENG_ERR_NOMEM, "NFC: out of memory");
            goto fail;
        }
        st = nfc_span(s + boundary, q - boundary, sc, &len);
        if (st != ENG_OK) goto fail;
        copied = boundary = p = q;
    }
    if (!out_append(sc, &len, s + copied, n - copied)) {
        st = eng_err_set(ENG_ERR_NOMEM, "NFC: out of memory");
        goto fail;
    }
    *out = sc->out;
    *out_len = len;
    return ENG_OK;
fail:
    *out = NULL;
    *out_len = 0;
    return st;
}
