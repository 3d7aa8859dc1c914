/* text/pyjson.c - JSON parsed and printed with Python's json / str / repr semantics (see pyjson.h).
 *
 * Layout: an arena (pj_doc) holds every value and string of one parse; the parser is recursive
 * descent bounded by PJ_MAX_DEPTH; objects are de-duplicated like dict(pairs) with a small hash
 * table; floats are printed by searching the shortest round-tripping digit string with the C
 * library's correctly rounded printf/strtod (in the "C" locale, whatever the process locale is).
 */
#include "text/pyjson.h"

#include <locale.h>
#include <pthread.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

const pj_value pj_undefined = {.type = PJ_UNDEF};

/* ==== arena =================================================================================== */

typedef struct pj_chunk {
    struct pj_chunk *next;
    size_t used, cap;
    max_align_t data[];
} pj_chunk;

struct pj_doc {
    pj_chunk *head;
};

#define PJ_CHUNK_BYTES (64 * 1024)

void *pj_doc_alloc(pj_doc *doc, size_t n)
{
    size_t a = (n + 15) & ~(size_t)15;
    if (a < n) return NULL;
    pj_chunk *c = doc->head;
    if (!c || c->cap - c->used < a) {
        size_t cap = a > PJ_CHUNK_BYTES ? a : PJ_CHUNK_BYTES;
        size_t total;
        if (!eng_add_ok(sizeof(pj_chunk), cap, &total)) return NULL;
        c = eng_malloc(total);
        if (!c) return NULL;
        c->used = 0;
        c->cap = cap;
        c->next = doc->head;
        doc->head = c;
    }
    void *p = (char *)c->data + c->used;
    c->used += a;
    return p;
}

void pj_doc_destroy(pj_doc *doc)
{
    if (!doc) return;
    pj_chunk *c = doc->head;
    while (c) {
        pj_chunk *next = c->next;
        eng_free(c);
        c = next;
    }
    eng_free(doc);
}

pj_value *pj_doc_new_str(pj_doc *doc, const char *s, size_t n)
{
    if (n == SIZE_MAX) return NULL;
    pj_value *v = pj_doc_alloc(doc, sizeof *v);
    char *copy = v ? pj_doc_alloc(doc, n + 1) : NULL;
    if (!copy) return NULL;
    if (n) memcpy(copy, s, n);
    copy[n] = '\0';
    memset(v, 0, sizeof *v);
    v->type = PJ_STR;
    v->s = copy;
    v->n = n;
    return v;
}

/* ==== helpers ================================================================================= */

const pj_value *pj_get(const pj_value *o, const char *key)
{
    if (!o || o->type != PJ_OBJECT) return NULL;
    size_t kl = strlen(key);
    for (size_t i = 0; i < o->n; i++) {
        const pj_value *k = &o->items[2 * i];
        if (k->n == kl && memcmp(k->s, key, kl) == 0) return &o->items[2 * i + 1];
    }
    return NULL;
}

bool pj_truthy(const pj_value *v)
{
    switch (v->type) {
    case PJ_BOOL:
        return v->b;
    case PJ_INT:
        return !(v->n == 1 && v->s[0] == '0');
    case PJ_FLOAT:
        return v->f != 0.0;
    case PJ_STR:
    case PJ_ARRAY:
    case PJ_OBJECT:
        return v->n > 0;
    default:
        return false;
    }
}

/* Length of the UTF-8 sequence at s (1..4) if valid, else 0. Decodes into *cp. */
static size_t utf8_seq(const unsigned char *s, size_t avail, uint32_t *cp)
{
    unsigned c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t len;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2, *cp = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3, *cp = c & 0x0F;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4, *cp = c & 0x07;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else
        return 0;
    if (avail < len) return 0;
    for (size_t i = 1; i < len; i++) {
        unsigned d = s[i];
        if (i == 1 ? (d < lo || d > hi) : (d < 0x80 || d > 0xBF)) return 0;
        *cp = (*cp << 6) | (d & 0x3F);
    }
    return len;
}

bool pj_utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    uint32_t cp;
    while (i < n) {
        size_t k = utf8_seq(p + i, n - i, &cp);
        if (!k) return false;
        i += k;
    }
    return true;
}

static size_t utf8_put(char *out, uint32_t cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* The "C" locale, so that strtod/printf use '.' whatever setlocale() the host program did. */
static locale_t c_loc;
static void c_locale_init(void)
{
    c_loc = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
}
static locale_t c_locale(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, c_locale_init);
    return c_loc ? c_loc : LC_GLOBAL_LOCALE;
}

/* ==== parser ================================================================================== */

typedef struct parser {
    const char *base, *p, *end;
    const char *what;
    pj_doc *doc;
    eng_status st; /* first error */
} parser;

static bool fail(parser *ps, const char *at, const char *msg)
{
    if (ps->st == ENG_OK) {
        size_t off = (size_t)(at - ps->base);
        if (at < ps->end) {
            unsigned char c = (unsigned char)*at;
            if (c >= 0x20 && c < 0x7F)
                ps->st = eng_err_set(ENG_ERR_INVALID, "%s: %s: '%c' at byte %zu", ps->what, msg, c, off);
            else
                ps->st =
                    eng_err_set(ENG_ERR_INVALID, "%s: %s: byte 0x%02x at byte %zu", ps->what, msg, c, off);
        } else {
            ps->st =
                eng_err_set(ENG_ERR_INVALID, "%s: %s at the end of the text (byte %zu)", ps->what, msg, off);
        }
    }
    return false;
}

static bool oom(parser *ps)
{
    if (ps->st == ENG_OK)
        ps->st = eng_err_set(ENG_ERR_NOMEM, "%s: out of memory while parsing JSON", ps->what);
    return false;
}

static void skip_ws(parser *ps)
{
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r')) ps->p++;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static bool read_u4(parser *ps, const char *at, uint32_t *out)
{
    if (ps->end - at < 4) return fail(ps, at, "truncated \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(at[i]);
        if (h < 0) return fail(ps, at + i, "bad hex digit in \\u escape");
        v = v << 4 | (uint32_t)h;
    }
    *out = v;
    return true;
}

/* ps->p is at the opening quote. Decodes into the arena. */
static bool parse_string(parser *ps, const char **out, size_t *out_len)
{
    const char *start = ++ps->p;
    const char *q = start;
    while (q < ps->end && *q != '"') {
        if (*q == '\\') q++;
        q++;
    }
    if (q >= ps->end) return fail(ps, ps->end, "unterminated string");
    size_t raw = (size_t)(q - start);
    char *buf = pj_doc_alloc(ps->doc, raw + 1);
    if (!buf) return oom(ps);
    size_t n = 0;
    const char *p = start;
    while (p < q) {
        unsigned char c = (unsigned char)*p;
        if (c == '\\') {
            char e = p[1];
            switch (e) {
            case '"':
                buf[n++] = '"';
                p += 2;
                break;
            case '\\':
                buf[n++] = '\\';
                p += 2;
                break;
            case '/':
                buf[n++] = '/';
                p += 2;
                break;
            case 'b':
                buf[n++] = '\b';
                p += 2;
                break;
            case 'f':
                buf[n++] = '\f';
                p += 2;
                break;
            case 'n':
                buf[n++] = '\n';
                p += 2;
                break;
            case 'r':
                buf[n++] = '\r';
                p += 2;
                break;
            case 't':
                buf[n++] = '\t';
                p += 2;
                break;
            case 'u': {
                uint32_t u;
                if (!read_u4(ps, p + 2, &u)) return false;
                if (u >= 0xDC00 && u <= 0xDFFF) return fail(ps, p, "lone low surrogate in \\u escape");
                if (u >= 0xD800 && u <= 0xDBFF) {
                    uint32_t lo;
                    if (q - (p + 6) < 6 || p[6] != '\\' || p[7] != 'u')
                        return fail(ps, p, "lone high surrogate in \\u escape");
                    if (!read_u4(ps, p + 8, &lo)) return false;
                    if (lo < 0xDC00 || lo > 0xDFFF) return fail(ps, p, "lone high surrogate in \\u escape");
                    u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
                    p += 6;
                }
                n += utf8_put(buf + n, u);
                p += 6;
                break;
            }
            default:
                return fail(ps, p + 1, "invalid escape in string");
            }
        } else if (c < 0x20) {
            return fail(ps, p, "raw control character in string");
        } else if (c < 0x80) {
            buf[n++] = (char)c;
            p++;
        } else {
            uint32_t cp;
            size_t k = utf8_seq((const unsigned char *)p, (size_t)(q - p), &cp);
            if (!k) return fail(ps, p, "invalid UTF-8 in string");
            memcpy(buf + n, p, k);
            n += k;
            p += k;
        }
    }
    buf[n] = '\0';
    ps->p = q + 1;
    *out = buf;
    *out_len = n;
    return true;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool parse_number(parser *ps, pj_value *v)
{
    const char *s = ps->p, *p = s;
    bool neg = false;
    if (p < ps->end && *p == '-') neg = true, p++;
    if (p >= ps->end || !is_digit(*p)) return fail(ps, p, "invalid number");
    const char *int_start = p;
    if (*p == '0')
        p++;
    else
        while (p < ps->end && is_digit(*p)) p++;
    size_t int_digits = (size_t)(p - int_start);
    bool is_float = false;
    if (p < ps->end && *p == '.') {
        const char *d = p + 1;
        if (d >= ps->end || !is_digit(*d)) return fail(ps, d, "digit expected after the decimal point");
        while (d < ps->end && is_digit(*d)) d++;
        p = d;
        is_float = true;
    }
    if (p < ps->end && (*p == 'e' || *p == 'E')) {
        const char *d = p + 1;
        if (d < ps->end && (*d == '+' || *d == '-')) d++;
        if (d >= ps->end || !is_digit(*d)) return fail(ps, d, "digit expected in the exponent");
        while (d < ps->end && is_digit(*d)) d++;
        p = d;
        is_float = true;
    }
    size_t len = (size_t)(p - s);
    if (is_float) {
        char stackbuf[64];
        char *tmp = len < sizeof stackbuf ? stackbuf : eng_malloc(len + 1);
        if (!tmp) return oom(ps);
        memcpy(tmp, s, len);
        tmp[len] = '\0';
        locale_t old = uselocale(c_locale());
        v->f = strtod(tmp, NULL);
        uselocale(old);
        if (tmp != stackbuf) eng_free(tmp);
        v->type = PJ_FLOAT;
    } else {
        if (int_digits > PJ_MAX_INT_DIGITS) {
            if (ps->st == ENG_OK)
                ps->st = eng_err_set(ENG_ERR_INVALID,
                                     "%s: integer at byte %zu has %zu digits, more than Python's limit of %d",
                                     ps->what, (size_t)(s - ps->base), int_digits, PJ_MAX_INT_DIGITS);
            return false;
        }
        bool zero = int_digits == 1 && *int_start == '0';
        const char *t = (neg && zero) ? int_start : s; /* "-0" is the int 0 */
        size_t tl = (size_t)(p - t);
        char *copy = pj_doc_alloc(ps->doc, tl + 1);
        if (!copy) return oom(ps);
        memcpy(copy, t, tl);
        copy[tl] = '\0';
        v->type = PJ_INT;
        v->s = copy;
        v->n = tl;
    }
    ps->p = p;
    return true;
}

static bool parse_value(parser *ps, pj_value *v, int depth);

/* Growable scratch vector of values (heap, moved into the arena when complete). */
typedef struct vvec {
    pj_value *v;
    size_t n, cap;
} vvec;

static bool vvec_push(vvec *a, const pj_value *x)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 8, bytes;
        if (!eng_mul_ok(cap, sizeof *a->v, &bytes)) return false;
        pj_value *nv = eng_realloc(a->v, bytes);
        if (!nv) return false;
        a->v = nv;
        a->cap = cap;
    }
    a->v[a->n++] = *x;
    return true;
}

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

/* Python dict(pairs): a repeated key keeps its first position and takes the last value.
 * kv holds 2n values; returns the new member count (in place). */
static bool dedup_members(pj_value *kv, size_t n, size_t *out_n)
{
    if (n < 2) {
        *out_n = n;
        return true;
    }
    size_t m = 0;
    if (n <= 8) {
        for (size_t i = 0; i < n; i++) {
            size_t j;
            for (j = 0; j < m; j++)
                if (kv[2 * j].n == kv[2 * i].n && memcmp(kv[2 * j].s, kv[2 * i].s, kv[2 * i].n) == 0) break;
            if (j < m)
                kv[2 * j + 1] = kv[2 * i + 1];
            else {
                kv[2 * m] = kv[2 * i];
                kv[2 * m + 1] = kv[2 * i + 1];
                m++;
            }
        }
        *out_n = m;
        return true;
    }
    size_t cap = 16;
    while (cap < 2 * n) cap *= 2;
    size_t *slots = eng_malloc(cap * sizeof *slots); /* member index + 1, 0 = empty */
    if (!slots) return false;
    memset(slots, 0, cap * sizeof *slots);
    for (size_t i = 0; i < n; i++) {
        const pj_value *k = &kv[2 * i];
        size_t h = (size_t)hash_bytes(k->s, k->n) & (cap - 1);
        for (;;) {
            size_t sl = slots[h];
            if (sl == 0) {
                kv[2 * m] = kv[2 * i];
                kv[2 * m + 1] = kv[2 * i + 1];
                slots[h] = ++m;
                break;
            }
            const pj_value *o = &kv[2 * (sl - 1)];
            if (o->n == k->n && memcmp(o->s, k->s, k->n) == 0) {
                kv[2 * (sl - 1) + 1] = kv[2 * i + 1];
                break;
            }
            h = (h + 1) & (cap - 1);
        }
    }
    eng_free(slots);
    *out_n = m;
    return true;
}

static bool finish_container(parser *ps, pj_value *v, vvec *a)
{
    if (a->n) {
        size_t bytes;
        if (!eng_mul_ok(a->n, sizeof *a->v, &bytes)) return oom(ps);
        v->items = pj_doc_alloc(ps->doc, bytes);
        if (!v->items) return oom(ps);
        memcpy(v->items, a->v, bytes);
    }
    return true;
}

static bool parse_array(parser *ps, pj_value *v, int depth)
{
    vvec a = {0};
    bool ok = false;
    ps->p++; /* [ */
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == ']') {
        ps->p++;
        ok = true;
        goto out;
    }
    for (;;) {
        pj_value item;
        if (!parse_value(ps, &item, depth + 1)) goto out;
        if (!vvec_push(&a, &item)) {
            oom(ps);
            goto out;
        }
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            continue;
        }
        if (ps->p < ps->end && *ps->p == ']') {
            ps->p++;
            break;
        }
        fail(ps, ps->p, "expected ',' or ']' in array");
        goto out;
    }
    ok = true;
out:
    if (ok) {
        v->type = PJ_ARRAY;
        v->n = a.n;
        ok = finish_container(ps, v, &a);
    }
    eng_free(a.v);
    return ok;
}

static bool parse_object(parser *ps, pj_value *v, int depth)
{
    vvec a = {0};
    bool ok = false;
    ps->p++; /* { */
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == '}') {
        ps->p++;
        ok = true;
        goto out;
    }
    for (;;) {
        skip_ws(ps);
        if (ps->p >= ps->end || *ps->p != '"') {
            fail(ps, ps->p, "expected a string key in object");
            goto out;
        }
        pj_value key = {.type = PJ_STR, .src_off = (size_t)(ps->p - ps->base)};
        if (!parse_string(ps, &key.s, &key.n)) goto out;
        key.src_len = (size_t)(ps->p - ps->base) - key.src_off;
        skip_ws(ps);
        if (ps->p >= ps->end || *ps->p != ':') {
            fail(ps, ps->p, "expected ':' after object key");
            goto out;
        }
        ps->p++;
        pj_value val;
        if (!parse_value(ps, &val, depth + 1)) goto out;
        if (!vvec_push(&a, &key) || !vvec_push(&a, &val)) {
            oom(ps);
            goto out;
        }
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            continue;
        }
        if (ps->p < ps->end && *ps->p == '}') {
            ps->p++;
            break;
        }
        fail(ps, ps->p, "expected ',' or '}' in object");
        goto out;
    }
    ok = true;
out:
    if (ok) {
        size_t m;
        if (!dedup_members(a.v, a.n / 2, &m)) {
            ok = oom(ps);
        } else {
            a.n = 2 * m;
            v->type = PJ_OBJECT;
            v->n = m;
            ok = finish_container(ps, v, &a);
        }
    }
    eng_free(a.v);
    return ok;
}

static bool match_lit(parser *ps, const char *lit)
{
    size_t n = strlen(lit);
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, lit, n) != 0)
        return fail(ps, ps->p, "invalid literal");
    ps->p += n;
    return true;
}

static bool parse_value(parser *ps, pj_value *v, int depth)
{
    memset(v, 0, sizeof *v);
    if (depth > PJ_MAX_DEPTH) {
        if (ps->st == ENG_OK)
            ps->st = eng_err_set(ENG_ERR_INVALID, "%s: JSON nested deeper than %d levels at byte %zu",
                                 ps->what, PJ_MAX_DEPTH, (size_t)(ps->p - ps->base));
        return false;
    }
    skip_ws(ps);
    if (ps->p >= ps->end) return fail(ps, ps->p, "expected a value");
    v->src_off = (size_t)(ps->p - ps->base);
    bool ok;
    switch (*ps->p) {
    case '{':
        ok = parse_object(ps, v, depth);
        break;
    case '[':
        ok = parse_array(ps, v, depth);
        break;
    case '"':
        v->type = PJ_STR;
        ok = parse_string(ps, &v->s, &v->n);
        break;
    case 't':
        v->type = PJ_BOOL, v->b = true;
        ok = match_lit(ps, "true");
        break;
    case 'f':
        v->type = PJ_BOOL, v->b = false;
        ok = match_lit(ps, "false");
        break;
    case 'n':
        v->type = PJ_NULL;
        ok = match_lit(ps, "null");
        break;
    default:
        if (*ps->p == '-' || is_digit(*ps->p))
            ok = parse_number(ps, v);
        else
            ok = fail(ps, ps->p, "unexpected character");
    }
    if (ok) v->src_len = (size_t)(ps->p - ps->base) - v->src_off;
    return ok;
}

eng_status pj_parse(const char *text, size_t len, const char *what, pj_doc **doc, const pj_value **root)
{
    *doc = NULL;
    *root = NULL;
    parser ps = {.base = text, .p = text, .end = text + len, .what = what ? what : "JSON", .st = ENG_OK};
    ps.doc = eng_calloc(1, sizeof *ps.doc);
    if (!ps.doc) return eng_err_set(ENG_ERR_NOMEM, "%s: out of memory", ps.what);
    pj_value *v = pj_doc_alloc(ps.doc, sizeof *v);
    if (!v) {
        oom(&ps);
        goto fail;
    }
    if (!text && len) {
        ps.st = eng_err_set(ENG_ERR_INVALID, "%s: no text", ps.what);
        goto fail;
    }
    if (!parse_value(&ps, v, 0)) goto fail;
    skip_ws(&ps);
    if (ps.p != ps.end) {
        fail(&ps, ps.p, "extra data after the JSON value");
        goto fail;
    }
    *doc = ps.doc;
    *root = v;
    return ENG_OK;
fail:
    pj_doc_destroy(ps.doc);
    return ps.st;
}

/* ==== floats ================================================================================== */

/* Shortest decimal digits of |x| (finite, non-zero) that round-trip: value = 0.D * 10^decpt. */
static void shortest_digits(double x, char *digits, int *ndig, int *decpt)
{
    double ax = fabs(x);
    char buf[64], cand[64];
    for (int p = 1; p <= 17; p++) {
        snprintf(buf, sizeof buf, "%.*e", p - 1, ax);
        /* buf = d[.ddd]e[+-]XX */
        char d[24];
        int nd = 0;
        const char *q = buf;
        for (; *q && *q != 'e' && nd < 20; q++)
            if (*q != '.') d[nd++] = *q;
        int e10 = atoi(q + 1);
        double back = strtod(buf, NULL);
        if (back != ax) {
            /* The nearest p-digit decimal misses; its neighbour on the other side of x may not. */
            char nbuf[24];
            memcpy(nbuf, d, (size_t)nd);
            int ne = e10;
            if (back < ax) {
                int i = nd - 1;
                while (i >= 0 && nbuf[i] == '9') nbuf[i--] = '0';
                if (i < 0) {
                    nbuf[0] = '1';
                    ne++;
                } else
                    nbuf[i]++;
            } else {
                int i = nd - 1;
                while (i >= 0 && nbuf[i] == '0') nbuf[i--] = '9';
                if (i < 0) continue; /* cannot happen: the leading digit is not 0 */
                nbuf[i]--;
                if (nbuf[0] == '0') { /* 100..0 - 1 -> 99..9 one decade lower */
                    for (int k = 0; k < nd; k++) nbuf[k] = '9';
                    ne--;
                }
            }
            int w = 0;
            cand[w++] = nbuf[0];
            if (nd > 1) {
                cand[w++] = '.';
                memcpy(cand + w, nbuf + 1, (size_t)nd - 1);
                w += nd - 1;
            }
            snprintf(cand + w, sizeof cand - (size_t)w, "e%d", ne);
            if (strtod(cand, NULL) != ax) continue;
            memcpy(d, nbuf, (size_t)nd);
            e10 = ne;
        }
        while (nd > 1 && d[nd - 1] == '0') nd--;
        memcpy(digits, d, (size_t)nd);
        *ndig = nd;
        *decpt = e10 + 1;
        return;
    }
    /* %.16e always round-trips, so this is unreachable; keep a sane answer anyway. */
    snprintf(buf, sizeof buf, "%.16e", ax);
    int nd = 0;
    const char *q = buf;
    for (; *q && *q != 'e'; q++)
        if (*q != '.') digits[nd++] = *q;
    *ndig = nd;
    *decpt = atoi(q + 1) + 1;
}

bool pj_float_repr(double x, bool json, eng_buf *b)
{
    if (isnan(x)) return eng_buf_puts(b, json ? "NaN" : "nan");
    if (isinf(x)) return eng_buf_puts(b, x < 0 ? (json ? "-Infinity" : "-inf") : (json ? "Infinity" : "inf"));
    if (x == 0.0) return eng_buf_puts(b, signbit(x) ? "-0.0" : "0.0");
    char digits[24];
    int nd, decpt;
    locale_t old = uselocale(c_locale());
    shortest_digits(x, digits, &nd, &decpt);
    uselocale(old);
    char out[64];
    int w = 0;
    if (x < 0) out[w++] = '-';
    if (decpt <= -4 || decpt > 16) {
        out[w++] = digits[0];
        if (nd > 1) {
            out[w++] = '.';
            memcpy(out + w, digits + 1, (size_t)nd - 1);
            w += nd - 1;
        }
        int e = decpt - 1;
        w += snprintf(out + w, sizeof out - (size_t)w, "e%c%02d", e < 0 ? '-' : '+', e < 0 ? -e : e);
    } else if (decpt <= 0) {
        out[w++] = '0';
        out[w++] = '.';
        for (int i = 0; i < -decpt; i++) out[w++] = '0';
        memcpy(out + w, digits, (size_t)nd);
        w += nd;
    } else if (decpt < nd) {
        memcpy(out + w, digits, (size_t)decpt);
        w += decpt;
        out[w++] = '.';
        memcpy(out + w, digits + decpt, (size_t)(nd - decpt));
        w += nd - decpt;
    } else {
        memcpy(out + w, digits, (size_t)nd);
        w += nd;
        for (int i = nd; i < decpt; i++) out[w++] = '0';
        out[w++] = '.';
        out[w++] = '0';
    }
    return eng_buf_append(b, out, (size_t)w);
}

/* ==== json.dumps ============================================================================== */

static bool dump_string(const char *s, size_t n, eng_buf *b)
{
    static const char hex[] = "0123456789abcdef";
    if (!eng_buf_putc(b, '"')) return false;
    size_t run = 0; /* start of the pending run of bytes copied verbatim */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        char u[7];
        switch (c) {
        case '"':
            esc = "\\\"";
            break;
        case '\\':
            esc = "\\\\";
            break;
        case '\n':
            esc = "\\n";
            break;
        case '\r':
            esc = "\\r";
            break;
        case '\t':
            esc = "\\t";
            break;
        case '\b':
            esc = "\\b";
            break;
        case '\f':
            esc = "\\f";
            break;
        default:
            if (c < 0x20) {
                memcpy(u, "\\u00", 4);
                u[4] = hex[c >> 4];
                u[5] = hex[c & 15];
                u[6] = '\0';
                esc = u;
            }
        }
        if (esc) {
            if (!eng_buf_append(b, s + run, i - run) || !eng_buf_puts(b, esc)) return false;
            run = i + 1;
        }
    }
    if (!eng_buf_append(b, s + run, n - run)) return false;
    return eng_buf_putc(b, '"');
}

static bool dumps_rec(const pj_value *v, eng_buf *b, bool *undef)
{
    switch (v->type) {
    case PJ_UNDEF:
        *undef = true;
        return false;
    case PJ_NULL:
        return eng_buf_puts(b, "null");
    case PJ_BOOL:
        return eng_buf_puts(b, v->b ? "true" : "false");
    case PJ_INT:
        return eng_buf_append(b, v->s, v->n);
    case PJ_FLOAT:
        return pj_float_repr(v->f, true, b);
    case PJ_STR:
        return dump_string(v->s, v->n, b);
    case PJ_ARRAY:
        if (!eng_buf_putc(b, '[')) return false;
        for (size_t i = 0; i < v->n; i++) {
            if (i && !eng_buf_puts(b, ", ")) return false;
            if (!dumps_rec(&v->items[i], b, undef)) return false;
        }
        return eng_buf_putc(b, ']');
    case PJ_OBJECT:
        if (!eng_buf_putc(b, '{')) return false;
        for (size_t i = 0; i < v->n; i++) {
            if (i && !eng_buf_puts(b, ", ")) return false;
            if (!dump_string(v->items[2 * i].s, v->items[2 * i].n, b) || !eng_buf_puts(b, ": ")) return false;
            if (!dumps_rec(&v->items[2 * i + 1], b, undef)) return false;
        }
        return eng_buf_putc(b, '}');
    }
    return false;
}

bool pj_dumps(const pj_value *v, eng_buf *b, bool *undef_hit)
{
    bool u = false;
    bool ok = dumps_rec(v, b, &u);
    if (undef_hit) *undef_hit = u;
    return ok;
}

/* ==== str / repr ============================================================================== */

/* Python's str.isprintable() for one non-ASCII code point (Unicode data of utf8proc). */
static bool py_printable(uint32_t cp)
{
    switch (utf8proc_category((utf8proc_int32_t)cp)) {
    case UTF8PROC_CATEGORY_CC:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_CS:
    case UTF8PROC_CATEGORY_CO:
    case UTF8PROC_CATEGORY_CN:
    case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP:
    case UTF8PROC_CATEGORY_ZS:
        return false;
    default:
        return true;
    }
}

static bool repr_string(const char *s, size_t n, eng_buf *b)
{
    char quote = '\'';
    if (memchr(s, '\'', n) && !memchr(s, '"', n)) quote = '"';
    if (!eng_buf_putc(b, quote)) return false;
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    char tmp[16];
    while (i < n) {
        uint32_t cp;
        size_t k = utf8_seq(p + i, n - i, &cp);
        if (!k) { /* cannot happen for parsed strings; print the byte escaped */
            cp = p[i];
            k = 1;
        }
        bool ok;
        if (cp == (uint32_t)quote || cp == '\\') {
            tmp[0] = '\\', tmp[1] = (char)cp;
            ok = eng_buf_append(b, tmp, 2);
        } else if (cp == '\t')
            ok = eng_buf_puts(b, "\\t");
        else if (cp == '\n')
            ok = eng_buf_puts(b, "\\n");
        else if (cp == '\r')
            ok = eng_buf_puts(b, "\\r");
        else if (cp < 0x20 || cp == 0x7F)
            ok = eng_buf_printf(b, "\\x%02x", cp);
        else if (cp < 0x7F)
            ok = eng_buf_putc(b, (char)cp);
        else if (k > 1 && py_printable(cp))
            ok = eng_buf_append(b, s + i, k);
        else if (cp <= 0xFF)
            ok = eng_buf_printf(b, "\\x%02x", cp);
        else if (cp <= 0xFFFF)
            ok = eng_buf_printf(b, "\\u%04x", cp);
        else
            ok = eng_buf_printf(b, "\\U%08x", cp);
        if (!ok) return false;
        i += k;
    }
    return eng_buf_putc(b, quote);
}

bool pj_repr(const pj_value *v, eng_buf *b)
{
    switch (v->type) {
    case PJ_STR:
        return repr_string(v->s, v->n, b);
    case PJ_ARRAY:
        if (!eng_buf_putc(b, '[')) return false;
        for (size_t i = 0; i < v->n; i++) {
            if (i && !eng_buf_puts(b, ", ")) return false;
            if (!pj_repr(&v->items[i], b)) return false;
        }
        return eng_buf_putc(b, ']');
    case PJ_OBJECT:
        if (!eng_buf_putc(b, '{')) return false;
        for (size_t i = 0; i < v->n; i++) {
            if (i && !eng_buf_puts(b, ", ")) return false;
            if (!pj_repr(&v->items[2 * i], b) || !eng_buf_puts(b, ": ")) return false;
            if (!pj_repr(&v->items[2 * i + 1], b)) return false;
        }
        return eng_buf_putc(b, '}');
    case PJ_UNDEF:
        return true; /* not reachable from parsed data */
    default:
        return pj_str(v, b);
    }
}

bool pj_str(const pj_value *v, eng_buf *b)
{
    switch (v->type) {
    case PJ_UNDEF:
        return true;
    case PJ_NULL:
        return eng_buf_puts(b, "None");
    case PJ_BOOL:
        return eng_buf_puts(b, v->b ? "True" : "False");
    case PJ_INT:
    case PJ_STR:
        return eng_buf_append(b, v->s, v->n);
    case PJ_FLOAT:
        return pj_float_repr(v->f, false, b);
    default:
        return pj_repr(v, b);
    }
}
