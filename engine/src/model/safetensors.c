/* model/safetensors.c - the safetensors reader (mmap, sharded folders, headers-only mode) and the
 * streaming writer (optionally sparse) declared in safetensors.h.
 *
 * Headers and the shard index are parsed by a small pull parser below instead of cJSON: it reads
 * integers exactly as u64 (cJSON stores numbers as doubles), keeps memory proportional to the
 * number of tensors rather than to the number of JSON nodes (a hostile 100 MiB header cannot make
 * us allocate gigabytes), and limits nesting depth. Every malformed input is an ENG_ERR_FORMAT or
 * ENG_ERR_IO whose detail names the file and, where there is one, the tensor.
 */
#include "model/safetensors.h" /* defines: eng_st_*, eng_st_tensor, ENG_ST_MAX_* */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define JSON_MAX_DEPTH 64
#define INDEX_MAX_BYTES (256u << 20)
#define MAX_JSON_INT ((uint64_t)1 << 62) /* any integer above this in a header is hostile */

/* ==== name hash (open addressing over indices into a caller-owned array) ====================== */

typedef const char *(*name_of_fn)(const void *ctx, uint32_t i);

typedef struct name_index {
    uint32_t *slots; /* index + 1, 0 = empty */
    size_t cap;      /* power of two, >= 2 * count */
} name_index;

static uint64_t hash_name(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static bool name_index_init(name_index *ni, size_t count)
{
    size_t cap = 16;
    while (cap < count * 2 + 1) cap <<= 1;
    ni->slots = eng_calloc(cap, sizeof *ni->slots);
    ni->cap = ni->slots ? cap : 0;
    return ni->slots != NULL;
}

static void name_index_free(name_index *ni)
{
    eng_free(ni->slots);
    ni->slots = NULL;
    ni->cap = 0;
}

/* Inserts index i (named name_of(ctx, i)). Returns -1 when inserted, or the index already holding
 * that name. The table must have been sized for every insertion. */
static int64_t name_index_put(name_index *ni, name_of_fn name_of, const void *ctx, uint32_t i)
{
    const char *name = name_of(ctx, i);
    size_t mask = ni->cap - 1, s = (size_t)hash_name(name) & mask;
    while (ni->slots[s]) {
        uint32_t j = ni->slots[s] - 1;
        if (!strcmp(name_of(ctx, j), name)) return j;
        s = (s + 1) & mask;
    }
    ni->slots[s] = i + 1;
    return -1;
}

static int64_t name_index_get(const name_index *ni, name_of_fn name_of, const void *ctx, const char *name)
{
    if (!ni->cap) return -1;
    size_t mask = ni->cap - 1, s = (size_t)hash_name(name) & mask;
    while (ni->slots[s]) {
        uint32_t j = ni->slots[s] - 1;
        if (!strcmp(name_of(ctx, j), name)) return j;
        s = (s + 1) & mask;
    }
    return -1;
}

/* ==== a minimal JSON pull parser ============================================================== */

typedef struct jp {
    const char *p, *end;
    const char *file; /* for error details */
    const char *base; /* start of the text, for byte offsets in details */
} jp;

static eng_status jp_err(const jp *j, const char *at, const char *what)
{
    long off = at && j->base && at >= j->base ? (long)(at - j->base) : -1;
    return eng_err_set(ENG_ERR_FORMAT, "%s: malformed JSON: %s (near byte %ld)", j->file, what, off);
}

static void jp_ws(jp *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')) j->p++;
}

/* Consumes character c (after whitespace). */
static bool jp_eat(jp *j, char c)
{
    jp_ws(j);
    if (j->p < j->end && *j->p == c) {
        j->p++;
        return true;
    }
    return false;
}

static bool jp_peek(jp *j, char c)
{
    jp_ws(j);
    return j->p < j->end && *j->p == c;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static bool utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            len = 2, cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            len = 3, cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            len = 4, cp = c & 0x07;
        } else {
            return false;
        }
        if (i + len > n) return false;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return false;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += len;
    }
    return true;
}

static void put_utf8(eng_buf *b, uint32_t cp)
{
    char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (char)cp, n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xc0 | (cp >> 6)), u[1] = (char)(0x80 | (cp & 0x3f)), n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xe0 | (cp >> 12)), u[1] = (char)(0x80 | ((cp >> 6) & 0x3f)), u[2] = (char)(0x80 | (cp & 0x3f)), n = 3;
    } else {
        u[0] = (char)(0xf0 | (cp >> 18)), u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3f)), u[3] = (char)(0x80 | (cp & 0x3f)), n = 4;
    }
    eng_buf_append(b, u, n);
}

/* Parses a JSON string into a heap C string (UTF-8, unescaped). Strings with an embedded NUL or
 * invalid UTF-8 are rejected. */
static eng_status jp_string(jp *j, char **out)
{
    *out = NULL;
    if (!jp_eat(j, '"')) return jp_err(j, j->p, "expected a string");
    const char *s = j->p;
    /* fast path: no escapes */
    const char *q = s;
    while (q < j->end && *q != '"' && *q != '\\' && (unsigned char)*q >= 0x20) q++;
    if (q < j->end && *q == '"') {
        if (!utf8_valid((const unsigned char *)s, (size_t)(q - s))) return jp_err(j, s, "string is not valid UTF-8");
        *out = eng_strndup(s, (size_t)(q - s));
        if (!*out) return eng_err_set(ENG_ERR_NOMEM, "%s: out of memory", j->file);
        j->p = q + 1;
        return ENG_OK;
    }
    eng_buf b;
    eng_buf_init(&b);
    eng_status st = ENG_OK;
    q = s;
    for (;;) {
        if (q >= j->end) {
            st = jp_err(j, s, "unterminated string");
            goto fail;
        }
        unsigned char c = (unsigned char)*q;
        if (c == '"') break;
        if (c < 0x20) {
            st = jp_err(j, s, "control character in string");
            goto fail;
        }
        if (c != '\\') {
            eng_buf_putc(&b, (char)c);
            q++;
            continue;
        }
        if (q + 1 >= j->end) {
            st = jp_err(j, s, "unterminated escape");
            goto fail;
        }
        char e = q[1];
        q += 2;
        switch (e) {
        case '"': eng_buf_putc(&b, '"'); break;
        case '\\': eng_buf_putc(&b, '\\'); break;
        case '/': eng_buf_putc(&b, '/'); break;
        case 'b': eng_buf_putc(&b, '\b'); break;
        case 'f': eng_buf_putc(&b, '\f'); break;
        case 'n': eng_buf_putc(&b, '\n'); break;
        case 'r': eng_buf_putc(&b, '\r'); break;
        case 't': eng_buf_putc(&b, '\t'); break;
        case 'u': {
            uint32_t cp = 0;
            for (int k = 0; k < 4; k++) {
                int h = q + k < j->end ? hexval(q[k]) : -1;
                if (h < 0) {
                    st = jp_err(j, s, "bad \\u escape");
                    goto fail;
                }
                cp = cp * 16 + (uint32_t)h;
            }
            q += 4;
            if (cp >= 0xd800 && cp <= 0xdbff) {
                uint32_t lo = 0;
                bool ok = q + 6 <= j->end && q[0] == '\\' && q[1] == 'u';
                for (int k = 0; ok && k < 4; k++) {
                    int h = hexval(q[2 + k]);
                    if (h < 0) ok = false;
                    lo = lo * 16 + (uint32_t)h;
                }
                if (!ok || lo < 0xdc00 || lo > 0xdfff) {
                    st = jp_err(j, s, "unpaired surrogate in \\u escape");
                    goto fail;
                }
                q += 6;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            } else if (cp >= 0xdc00 && cp <= 0xdfff) {
                st = jp_err(j, s, "unpaired surrogate in \\u escape");
                goto fail;
            }
            if (cp == 0) {
                st = jp_err(j, s, "NUL character in string");
                goto fail;
            }
            put_utf8(&b, cp);
            break;
        }
        default: st = jp_err(j, s, "bad escape in string"); goto fail;
        }
    }
    if (b.oom) {
        st = eng_err_set(ENG_ERR_NOMEM, "%s: out of memory", j->file);
        goto fail;
    }
    if (!utf8_valid((const unsigned char *)(b.data ? b.data : ""), b.len)) {
        st = jp_err(j, s, "string is not valid UTF-8");
        goto fail;
    }
    j->p = q + 1;
    if (!b.data) {
        *out = eng_strdup("");
        if (!*out) st = eng_err_set(ENG_ERR_NOMEM, "%s: out of memory", j->file);
        return st;
    }
    *out = eng_buf_take(&b, NULL);
    return ENG_OK;
fail:
    eng_buf_free(&b);
    return st;
}

/* Parses a non-negative JSON integer exactly. Negative numbers, fractions, exponents and values
 * above MAX_JSON_INT are rejected with `what` in the detail. */
static eng_status jp_u64(jp *j, uint64_t *out, const char *what, bool *negative)
{
    jp_ws(j);
    if (negative) *negative = false;
    if (j->p < j->end && *j->p == '-') {
        if (negative) *negative = true;
        return eng_err_set(ENG_ERR_FORMAT, "%s: %s is negative", j->file, what);
    }
    if (j->p >= j->end || *j->p < '0' || *j->p > '9')
        return eng_err_set(ENG_ERR_FORMAT, "%s: %s is not an integer", j->file, what);
    uint64_t v = 0;
    const char *s = j->p;
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
        if (v > (MAX_JSON_INT - 9) / 10) return eng_err_set(ENG_ERR_FORMAT, "%s: %s is too large", j->file, what);
        v = v * 10 + (uint64_t)(*j->p - '0');
        j->p++;
    }
    if (j->p - s > 1 && *s == '0') return eng_err_set(ENG_ERR_FORMAT, "%s: %s has a leading zero", j->file, what);
    if (j->p < j->end && (*j->p == '.' || *j->p == 'e' || *j->p == 'E'))
        return eng_err_set(ENG_ERR_FORMAT, "%s: %s is not an integer", j->file, what);
    *out = v;
    return ENG_OK;
}

static eng_status jp_skip(jp *j, int depth);

static eng_status jp_skip_container(jp *j, int depth, char close, bool object)
{
    if (depth > JSON_MAX_DEPTH) return jp_err(j, j->p, "nesting too deep");
    if (jp_eat(j, close)) return ENG_OK;
    for (;;) {
        eng_status st;
        if (object) {
            char *k;
            if ((st = jp_string(j, &k))) return st;
            eng_free(k);
            if (!jp_eat(j, ':')) return jp_err(j, j->p, "expected ':'");
        }
        if ((st = jp_skip(j, depth + 1))) return st;
        if (jp_eat(j, ',')) continue;
        if (jp_eat(j, close)) return ENG_OK;
        return jp_err(j, j->p, object ? "expected ',' or '}'" : "expected ',' or ']'");
    }
}

/* Skips any JSON value (validating its syntax). */
static eng_status jp_skip(jp *j, int depth)
{
    jp_ws(j);
    if (j->p >= j->end) return jp_err(j, j->p, "unexpected end of JSON");
    char c = *j->p;
    if (c == '{') {
        j->p++;
        return jp_skip_container(j, depth, '}', true);
    }
    if (c == '[') {
        j->p++;
        return jp_skip_container(j, depth, ']', false);
    }
    if (c == '"') {
        char *s;
        eng_status st = jp_string(j, &s);
        eng_free(s);
        return st;
    }
    static const char *lits[] = {"true", "false", "null"};
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(lits[i]);
        if ((size_t)(j->end - j->p) >= n && !memcmp(j->p, lits[i], n)) {
            j->p += n;
            return ENG_OK;
        }
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
        const char *s = j->p;
        if (*j->p == '-') j->p++;
        if (j->p >= j->end || *j->p < '0' || *j->p > '9') return jp_err(j, s, "bad number");
        while (j->p < j->end && ((*j->p >= '0' && *j->p <= '9') || *j->p == '.' || *j->p == 'e' || *j->p == 'E' ||
                                 *j->p == '+' || *j->p == '-'))
            j->p++;
        return ENG_OK;
    }
    return jp_err(j, j->p, "unexpected character");
}

/* After the top-level value: only whitespace may follow. */
static eng_status jp_finish(jp *j)
{
    jp_ws(j);
    if (j->p != j->end) return jp_err(j, j->p, "trailing characters after the JSON object");
    return ENG_OK;
}

/* ==== header parsing ========================================================================== */

static const char *tensor_name_of(const void *ctx, uint32_t i)
{
    return ((const eng_st_tensor *)ctx)[i].name;
}

void eng_st_tensors_free(eng_st_tensor *t, size_t n)
{
    if (!t) return;
    for (size_t i = 0; i < n; i++) eng_free((char *)t[i].name);
    eng_free(t);
}

/* Parses one tensor entry's object (after its name). */
static eng_status parse_entry(jp *j, eng_st_tensor *t, uint64_t *begin, uint64_t *end)
{
    const char *name = t->name;
    bool have_dtype = false, have_shape = false, have_off = false;
    eng_status st;
    if (!jp_eat(j, '{')) return eng_err_set(ENG_ERR_FORMAT, "%s: tensor '%s': entry is not an object", j->file, name);
    if (jp_eat(j, '}')) goto check;
    for (;;) {
        char *key;
        if ((st = jp_string(j, &key))) return eng_err_wrap(st, "tensor '%s'", name);
        if (!jp_eat(j, ':')) {
            eng_free(key);
            return eng_err_set(ENG_ERR_FORMAT, "%s: tensor '%s': expected ':'", j->file, name);
        }
        if (!strcmp(key, "dtype")) {
            eng_free(key);
            char *dt;
            if (have_dtype) return eng_err_set(ENG_ERR_FORMAT, "%s: tensor '%s': duplicate \"dtype\"", j->file, name);
            if ((st = jp_string(j, &dt)))
                return st == ENG_ERR_NOMEM ? st
                                           : eng_err_set(ENG_ERR_FORMAT, "%s: tensor '%s': \"dtype\" is not a string", j->file, name);
            int d = eng_dtype_parse(dt, strlen(dt));
            if (d < 0) {
                st = eng_err_set(ENG_ERR_FORMAT, "%s: tensor '%s': unknown dtype '%.40s'", j->file, name, dt);
                eng_free(dt);
                return st;
            }
            eng_free(dt);
            t->dtype = (eng_dtype)d;
            have_dtype = true;
        } else if (!strcmp(key, "shape")) {
            eng_free(key);
            if (have_shape) return eng_err_set(ENG_ERR_FORMAT, "%s: tensor '%s': duplicate \"shape\"", j->file, name);
            if (!jp_eat(j, '[')) return eng_err_set(ENG_ERR_FORMAT, "%s: tensor '%s': \"shape\" is not an array", j->file, name);
            t->n_dims = 0;
            if (!jp_eat(j, ']')) {
                for (;;) {
                    uint64_t v;
                    bool neg;
                    if (t->n_dims >= ENG_ST_MAX_DIMS)
                        return eng_err_set(ENG_ERR_FORMAT, "%s: tensor '%s': more than %d dimensions", j->file, name,
                                           ENG_ST_MAX_DIMS);
                    if ((st = jp_u64(j, &v, "shape dimension", &neg)))
                        return eng_err_set(ENG_ERR_FORMAT, "%s: tensor '%s': shape dimension %d is %s", j->file, name,
                                           t->n_dims, neg ? "negative" : "not a valid non-negative integer");
                    t->shape[t->n_dims++] = (int64_t)v;
                    if (jp_eat(j, ',')) continue;
                    if (jp_eat(j, ']')) break;
                    return eng_err_set(ENG_ERR_FORMAT, "%s: tensor '%s': malformed \"shape\" array", j->file, name);
                }
            }
            have_shape = true;
        } else if (!strcmp(key, "data_offsets")) {
            eng_free(key);
            if (have_off) return eng_err_set(ENG_ERR_FORMAT, "%s: tensor '%s': duplicate \"data_offsets\"", j->file, name);
            bool neg = false;
            if (!jp_eat(j, '[') || (st = jp_u64(j, begin, "data offset", &neg)) || !jp_eat(j, ',') ||
                (st = jp_u64(j, end, "data offset", &neg)) || !jp_eat(j, ']'))
                return eng_err_set(ENG_ERR_FORMAT, "%s: tensor '%s': \"data_offsets\" must be [begin, end] with %s", j->file,
                                   name, neg ? "no negative values" : "two non-negative integers");
            have_off = true;
        } else {
            eng_free(key);
            if ((st = jp_skip(j, 2))) return eng_err_wrap(st, "tensor '%s'", name);
        }
        if (jp_eat(j, ',')) continue;
        if (jp_eat(j, '}')) break;
        return eng_err_set(ENG_ERR_FORMAT, "%s: tensor '%s': expected ',' or '}' in its entry", j->file, name);
    }
check:
    if (!have_dtype || !have_shape || !have_off)
        return eng_err_set(ENG_ERR_FORMAT, "%s: tensor '%s': entry lacks \"%s\"", j->file, name,
                           !have_dtype ? "dtype" : !have_shape ? "shape" : "data_offsets");
    return ENG_OK;
}

typedef struct span {
    uint64_t begin, end;
    uint32_t i;
} span;

static int span_cmp(const void *a, const void *b)
{
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

eng_status eng_st_parse_header(const char *json, size_t json_len, uint64_t data_len, const char *file_name,
                               eng_st_tensor **out, size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    const char *fname = file_name ? file_name : "safetensors";
    jp j = {json, json + json_len, fname, json};
    eng_st_tensor *t = NULL;
    size_t n = 0, cap = 0;
    uint64_t *beg = NULL; /* begin/end pairs, parallel to t */
    span *spans = NULL;
    name_index ni = {0};
    eng_status st = ENG_OK;

    if (!jp_eat(&j, '{')) {
        st = eng_err_set(ENG_ERR_FORMAT, "%s: header is not a JSON object", fname);
        goto fail;
    }
    if (!jp_eat(&j, '}')) {
        bool seen_meta = false;
        for (;;) {
            char *name;
            if ((st = jp_string(&j, &name))) goto fail;
            if (!jp_eat(&j, ':')) {
                eng_free(name);
                st = jp_err(&j, j.p, "expected ':' after a tensor name");
                goto fail;
            }
            if (!strcmp(name, "__metadata__")) {
                eng_free(name);
                if (seen_meta) {
                    st = eng_err_set(ENG_ERR_FORMAT, "%s: duplicate \"__metadata__\"", fname);
                    goto fail;
                }
                seen_meta = true;
                /* {str: str}; the content is not needed, but it must be an object of strings */
                if (!jp_eat(&j, '{')) {
                    st = eng_err_set(ENG_ERR_FORMAT, "%s: \"__metadata__\" is not an object", fname);
                    goto fail;
                }
                if (!jp_eat(&j, '}')) {
                    for (;;) {
                        char *k = NULL, *v = NULL;
                        if ((st = jp_string(&j, &k))) goto fail;
                        eng_free(k);
                        if (!jp_eat(&j, ':') || !jp_peek(&j, '"')) {
                            st = eng_err_set(ENG_ERR_FORMAT, "%s: \"__metadata__\" values must be strings", fname);
                            goto fail;
                        }
                        if ((st = jp_string(&j, &v))) goto fail;
                        eng_free(v);
                        if (jp_eat(&j, ',')) continue;
                        if (jp_eat(&j, '}')) break;
                        st = jp_err(&j, j.p, "expected ',' or '}' in \"__metadata__\"");
                        goto fail;
                    }
                }
            } else {
                if (!name[0]) {
                    eng_free(name);
                    st = eng_err_set(ENG_ERR_FORMAT, "%s: a tensor has an empty name", fname);
                    goto fail;
                }
                if (n == cap) {
                    size_t nc = cap ? cap * 2 : 64;
                    eng_st_tensor *nt = eng_realloc(t, nc * sizeof *t);
                    if (!nt) {
                        eng_free(name);
                        st = eng_err_set(ENG_ERR_NOMEM, "%s: out of memory", fname);
                        goto fail;
                    }
                    t = nt;
                    uint64_t *nb = eng_realloc(beg, nc * 2 * sizeof *beg);
                    if (!nb) {
                        eng_free(name);
                        st = eng_err_set(ENG_ERR_NOMEM, "%s: out of memory", fname);
                        goto fail;
                    }
                    beg = nb;
                    cap = nc;
                }
                memset(&t[n], 0, sizeof t[n]);
                t[n].name = name;
                n++;
                if ((st = parse_entry(&j, &t[n - 1], &beg[2 * (n - 1)], &beg[2 * (n - 1) + 1]))) goto fail;
            }
            if (jp_eat(&j, ',')) continue;
            if (jp_eat(&j, '}')) break;
            st = jp_err(&j, j.p, "expected ',' or '}' between tensors");
            goto fail;
        }
    }
    if ((st = jp_finish(&j))) goto fail;

    /* per-tensor checks: sizes, offsets inside the data section */
    for (size_t i = 0; i < n; i++) {
        eng_st_tensor *x = &t[i];
        uint64_t numel = 1;
        for (int d = 0; d < x->n_dims; d++) {
            if (__builtin_mul_overflow(numel, (uint64_t)x->shape[d], &numel) || numel > MAX_JSON_INT) {
                st = eng_err_set(ENG_ERR_FORMAT, "%s: tensor '%s': shape overflows (element count too large)", fname, x->name);
                goto fail;
            }
        }
        uint64_t nbytes;
        if (__builtin_mul_overflow(numel, (uint64_t)eng_dtype_size(x->dtype), &nbytes)) {
            st = eng_err_set(ENG_ERR_FORMAT, "%s: tensor '%s': byte size overflows", fname, x->name);
            goto fail;
        }
        uint64_t b = beg[2 * i], e = beg[2 * i + 1];
        if (b > e) {
            st = eng_err_set(ENG_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] has begin > end", fname, x->name,
                             (unsigned long long)b, (unsigned long long)e);
            goto fail;
        }
        if (e - b != nbytes) {
            st = eng_err_set(ENG_ERR_FORMAT,
                             "%s: tensor '%s': data_offsets [%llu, %llu] hold %llu bytes but %s x %llu elements need %llu",
                             fname, x->name, (unsigned long long)b, (unsigned long long)e, (unsigned long long)(e - b),
                             eng_dtype_name(x->dtype), (unsigned long long)numel, (unsigned long long)nbytes);
            goto fail;
        }
        if (e > data_len) {
            st = eng_err_set(ENG_ERR_FORMAT,
                             "%s: tensor '%s': data [%llu, %llu) extends past the end of the data section (%llu bytes): "
                             "the file is truncated or the offsets are corrupt",
                             fname, x->name, (unsigned long long)b, (unsigned long long)e, (unsigned long long)data_len);
            goto fail;
        }
        x->numel = numel;
        x->n_bytes = nbytes;
        x->file_offset = 8 + (uint64_t)json_len + b;
        x->data = NULL;
        x->file_index = 0;
    }

    /* duplicate names */
    if (n > UINT32_MAX / 4) {
        st = eng_err_set(ENG_ERR_FORMAT, "%s: too many tensors", fname);
        goto fail;
    }
    if (!name_index_init(&ni, n)) {
        st = eng_err_set(ENG_ERR_NOMEM, "%s: out of memory", fname);
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        if (name_index_put(&ni, tensor_name_of, t, (uint32_t)i) >= 0) {
            st = eng_err_set(ENG_ERR_FORMAT, "%s: tensor '%s' appears twice in the header", fname, t[i].name);
            goto fail;
        }
    }

    /* overlapping data (empty tensors may sit anywhere) */
    spans = eng_malloc((n ? n : 1) * sizeof *spans);
    if (!spans) {
        st = eng_err_set(ENG_ERR_NOMEM, "%s: out of memory", fname);
        goto fail;
    }
    size_t ns = 0;
    for (size_t i = 0; i < n; i++)
        if (beg[2 * i + 1] > beg[2 * i]) spans[ns++] = (span){beg[2 * i], beg[2 * i + 1], (uint32_t)i};
    qsort(spans, ns, sizeof *spans, span_cmp);
    for (size_t i = 1; i < ns; i++) {
        if (spans[i].begin < spans[i - 1].end) {
            st = eng_err_set(ENG_ERR_FORMAT, "%s: tensors '%s' [%llu, %llu) and '%s' [%llu, %llu) overlap", fname,
                             t[spans[i - 1].i].name, (unsigned long long)spans[i - 1].begin,
                             (unsigned long long)spans[i - 1].end, t[spans[i].i].name, (unsigned long long)spans[i].begin,
                             (unsigned long long)spans[i].end);
            goto fail;
        }
    }

    *out = t;
    *n_out = n;
    t = NULL;
    n = 0;
fail:
    eng_st_tensors_free(t, n);
    eng_free(beg);
    eng_free(spans);
    name_index_free(&ni);
    return st;
}

/* ==== the model: open, lookup, close ========================================================== */

typedef struct st_file {
    char *path;
    int fd;
    uint64_t size;
    void *map; /* whole file, or NULL when headers-only */
} st_file;

struct eng_st_model {
    st_file *files;
    int n_files;
    eng_st_tensor *tensors;
    size_t n_tensors, cap_tensors;
    name_index index;
    uint64_t total_bytes;
};

static const char *model_name_of(const void *ctx, uint32_t i)
{
    return ((const eng_st_model *)ctx)->tensors[i].name;
}

void eng_st_close(eng_st_model *m)
{
    if (!m) return;
    for (int i = 0; i < m->n_files; i++) {
        if (m->files[i].map) munmap(m->files[i].map, (size_t)m->files[i].size);
        if (m->files[i].fd >= 0) close(m->files[i].fd);
        eng_free(m->files[i].path);
    }
    eng_free(m->files);
    eng_st_tensors_free(m->tensors, m->n_tensors);
    name_index_free(&m->index);
    eng_free(m);
}

size_t eng_st_count(const eng_st_model *m)
{
    return m->n_tensors;
}

const eng_st_tensor *eng_st_at(const eng_st_model *m, size_t i)
{
    return i < m->n_tensors ? &m->tensors[i] : NULL;
}

const eng_st_tensor *eng_st_find(const eng_st_model *m, const char *name)
{
    if (!m || !name) return NULL;
    int64_t i = name_index_get(&m->index, model_name_of, m, name);
    return i < 0 ? NULL : &m->tensors[i];
}

const char *eng_st_file_path(const eng_st_model *m, int file_index)
{
    return file_index >= 0 && file_index < m->n_files ? m->files[file_index].path : NULL;
}

int eng_st_file_count(const eng_st_model *m)
{
    return m->n_files;
}

uint64_t eng_st_total_bytes(const eng_st_model *m)
{
    return m->total_bytes;
}

bool eng_st_has_data(const eng_st_model *m)
{
    return m->n_files > 0 && m->files[0].map != NULL;
}

void eng_st_prefetch(const eng_st_model *m, const eng_st_tensor *t)
{
    if (!m || !t || !t->data || !t->n_bytes) return;
    long pg = sysconf(_SC_PAGESIZE);
    size_t page = pg > 0 ? (size_t)pg : 4096;
    uintptr_t a = (uintptr_t)t->data & ~(uintptr_t)(page - 1);
    uintptr_t e = (uintptr_t)t->data + t->n_bytes;
    madvise((void *)a, e - a, MADV_WILLNEED);
    volatile const unsigned char *p = (const unsigned char *)t->data;
    unsigned char acc = 0;
    for (uint64_t off = 0; off < t->n_bytes; off += page) acc ^= p[off];
    acc ^= p[t->n_bytes - 1];
    (void)acc;
}

/* Reads one file's header and appends its tensors to the model. */
static eng_status load_file(eng_st_model *m, int fi, bool map_data)
{
    st_file *f = &m->files[fi];
    eng_status st = ENG_OK;
    char *hdr = NULL;
    eng_st_tensor *t = NULL;
    size_t n = 0;
    struct stat sb;

    f->fd = open(f->path, O_RDONLY | O_CLOEXEC);
    if (f->fd < 0) return eng_err_set(ENG_ERR_IO, "%s: %s", f->path, strerror(errno));
    if (fstat(f->fd, &sb) != 0) return eng_err_set(ENG_ERR_IO, "%s: %s", f->path, strerror(errno));
    if (!S_ISREG(sb.st_mode)) return eng_err_set(ENG_ERR_IO, "%s: not a regular file", f->path);
    f->size = (uint64_t)sb.st_size;
    unsigned char pre[8];
    if (f->size < 8) return eng_err_set(ENG_ERR_FORMAT, "%s: truncated: %llu bytes, shorter than the 8-byte header length", f->path, (unsigned long long)f->size);
    if (pread(f->fd, pre, 8, 0) != 8) return eng_err_set(ENG_ERR_IO, "%s: cannot read the header length", f->path);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | pre[i];
    if (hl > ENG_ST_MAX_HEADER)
        return eng_err_set(ENG_ERR_FORMAT, "%s: header length %llu is above the limit of %u bytes (not a safetensors file?)",
                           f->path, (unsigned long long)hl, ENG_ST_MAX_HEADER);
    if (hl > f->size - 8)
        return eng_err_set(ENG_ERR_FORMAT, "%s: header length %llu is beyond the file size %llu (truncated file?)", f->path,
                           (unsigned long long)hl, (unsigned long long)f->size);
    if (hl < 2) return eng_err_set(ENG_ERR_FORMAT, "%s: header length %llu is too short for a JSON object", f->path, (unsigned long long)hl);
    hdr = eng_malloc((size_t)hl);
    if (!hdr) return eng_err_set(ENG_ERR_NOMEM, "%s: out of memory for a %llu-byte header", f->path, (unsigned long long)hl);
    size_t got = 0;
    while (got < hl) {
        ssize_t r = pread(f->fd, hdr + got, (size_t)hl - got, (off_t)(8 + got));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            st = eng_err_set(ENG_ERR_IO, "%s: short read of the header", f->path);
            goto out;
        }
        got += (size_t)r;
    }
    if ((st = eng_st_parse_header(hdr, (size_t)hl, f->size - 8 - hl, f->path, &t, &n))) goto out;
    if (map_data) {
        f->map = mmap(NULL, (size_t)f->size, PROT_READ, MAP_PRIVATE, f->fd, 0);
        if (f->map == MAP_FAILED) {
            f->map = NULL;
            st = eng_err_set(ENG_ERR_IO, "%s: mmap of %llu bytes failed: %s", f->path, (unsigned long long)f->size, strerror(errno));
            goto out;
        }
    }
    /* append */
    if (m->n_tensors + n > m->cap_tensors) {
        size_t nc = m->cap_tensors ? m->cap_tensors : 256;
        while (nc < m->n_tensors + n) nc *= 2;
        eng_st_tensor *nt = eng_realloc(m->tensors, nc * sizeof *nt);
        if (!nt) {
            st = eng_err_set(ENG_ERR_NOMEM, "%s: out of memory", f->path);
            goto out;
        }
        m->tensors = nt;
        m->cap_tensors = nc;
    }
    for (size_t i = 0; i < n; i++) {
        t[i].file_index = fi;
        t[i].data = f->map ? (const unsigned char *)f->map + t[i].file_offset : NULL;
        m->tensors[m->n_tensors++] = t[i];
        m->total_bytes += t[i].n_bytes;
    }
    eng_free(t); /* names now belong to the model */
    t = NULL;
    n = 0;
out:
    eng_st_tensors_free(t, n);
    eng_free(hdr);
    return st;
}

/* ---- the shard index ---------------------------------------------------------------------- */

typedef struct index_entry {
    char *name, *file;
} index_entry;

typedef struct shard_index {
    index_entry *e;
    size_t n, cap;
    char **files; /* unique shard names, sorted */
    size_t n_files;
} shard_index;

static void shard_index_free(shard_index *x)
{
    for (size_t i = 0; i < x->n; i++) {
        eng_free(x->e[i].name);
        eng_free(x->e[i].file);
    }
    eng_free(x->e);
    for (size_t i = 0; i < x->n_files; i++) eng_free(x->files[i]);
    eng_free(x->files);
    memset(x, 0, sizeof *x);
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static const char *index_name_of(const void *ctx, uint32_t i)
{
    return ((const index_entry *)ctx)[i].name;
}

static const char *str_of(const void *ctx, uint32_t i)
{
    return ((char *const *)ctx)[i];
}

/* Parses model.safetensors.index.json: {"metadata": {...}, "weight_map": {tensor: file}}. */
static eng_status parse_index(const char *json, size_t len, const char *path, shard_index *x)
{
    jp j = {json, json + len, path, json};
    eng_status st = ENG_OK;
    bool have_map = false;
    name_index ni = {0};
    memset(x, 0, sizeof *x);
    if (!jp_eat(&j, '{')) return eng_err_set(ENG_ERR_FORMAT, "%s: not a JSON object", path);
    if (!jp_eat(&j, '}')) {
        for (;;) {
            char *key;
            if ((st = jp_string(&j, &key))) goto fail;
            if (!jp_eat(&j, ':')) {
                eng_free(key);
                st = jp_err(&j, j.p, "expected ':'");
                goto fail;
            }
            bool is_map = !strcmp(key, "weight_map");
            eng_free(key);
            if (is_map) {
                if (have_map) {
                    st = eng_err_set(ENG_ERR_FORMAT, "%s: duplicate \"weight_map\"", path);
                    goto fail;
                }
                have_map = true;
                if (!jp_eat(&j, '{')) {
                    st = eng_err_set(ENG_ERR_FORMAT, "%s: \"weight_map\" is not an object", path);
                    goto fail;
                }
                if (!jp_eat(&j, '}')) {
                    for (;;) {
                        char *name = NULL, *file = NULL;
                        if ((st = jp_string(&j, &name))) goto fail;
                        if (!jp_eat(&j, ':') || !jp_peek(&j, '"')) {
                            st = eng_err_set(ENG_ERR_FORMAT, "%s: weight_map entry '%s' must map to a file name string", path, name);
                            eng_free(name);
                            goto fail;
                        }
                        if ((st = jp_string(&j, &file))) {
                            eng_free(name);
                            goto fail;
                        }
                        if (!file[0] || strchr(file, '/') || !strcmp(file, ".") || !strcmp(file, "..")) {
                            st = eng_err_set(ENG_ERR_FORMAT, "%s: tensor '%s' maps to '%s', which is not a plain file name", path,
                                             name, file);
                            eng_free(name);
                            eng_free(file);
                            goto fail;
                        }
                        if (x->n == x->cap) {
                            size_t nc = x->cap ? x->cap * 2 : 256;
                            index_entry *ne = eng_realloc(x->e, nc * sizeof *ne);
                            if (!ne) {
                                eng_free(name);
                                eng_free(file);
                                st = eng_err_set(ENG_ERR_NOMEM, "%s: out of memory", path);
                                goto fail;
                            }
                            x->e = ne;
                            x->cap = nc;
                        }
                        x->e[x->n++] = (index_entry){name, file};
                        if (jp_eat(&j, ',')) continue;
                        if (jp_eat(&j, '}')) break;
                        st = jp_err(&j, j.p, "expected ',' or '}' in \"weight_map\"");
                        goto fail;
                    }
                }
            } else if ((st = jp_skip(&j, 1))) {
                goto fail;
            }
            if (jp_eat(&j, ',')) continue;
            if (jp_eat(&j, '}')) break;
            st = jp_err(&j, j.p, "expected ',' or '}'");
            goto fail;
        }
    }
    if ((st = jp_finish(&j))) goto fail;
    if (!have_map) {
        st = eng_err_set(ENG_ERR_FORMAT, "%s: no \"weight_map\"", path);
        goto fail;
    }
    if (x->n == 0) {
        st = eng_err_set(ENG_ERR_FORMAT, "%s: \"weight_map\" is empty", path);
        goto fail;
    }
    /* duplicate tensor names */
    if (!name_index_init(&ni, x->n)) {
        st = eng_err_set(ENG_ERR_NOMEM, "%s: out of memory", path);
        goto fail;
    }
    for (size_t i = 0; i < x->n; i++) {
        if (name_index_put(&ni, index_name_of, x->e, (uint32_t)i) >= 0) {
            st = eng_err_set(ENG_ERR_FORMAT, "%s: tensor '%s' is listed twice in \"weight_map\"", path, x->e[i].name);
            goto fail;
        }
    }
    /* unique shard files, sorted */
    name_index_free(&ni);
    x->files = eng_malloc(x->n * sizeof *x->files);
    if (!x->files || !name_index_init(&ni, x->n)) {
        st = eng_err_set(ENG_ERR_NOMEM, "%s: out of memory", path);
        goto fail;
    }
    for (size_t i = 0; i < x->n; i++) {
        x->files[x->n_files] = x->e[i].file; /* borrowed for the uniqueness test */
        if (name_index_put(&ni, str_of, x->files, (uint32_t)x->n_files) < 0) x->n_files++;
    }
    for (size_t i = 0; i < x->n_files; i++) {
        char *d = eng_strdup(x->files[i]);
        if (!d) {
            for (size_t k = 0; k < i; k++) eng_free(x->files[k]);
            x->n_files = 0;
            st = eng_err_set(ENG_ERR_NOMEM, "%s: out of memory", path);
            goto fail;
        }
        x->files[i] = d;
    }
    qsort(x->files, x->n_files, sizeof *x->files, str_cmp);
fail:
    name_index_free(&ni);
    if (st) shard_index_free(x);
    return st;
}

/* Lists every *.safetensors in dir, sorted. */
static eng_status list_safetensors(const char *dir, char ***out, size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    DIR *d = opendir(dir);
    if (!d) return eng_err_set(ENG_ERR_IO, "%s: %s", dir, strerror(errno));
    char **v = NULL;
    size_t n = 0, cap = 0;
    eng_status st = ENG_OK;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (l <= 12 || strcmp(de->d_name + l - 12, ".safetensors") != 0 || de->d_name[0] == '.') continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            char **nv = eng_realloc(v, nc * sizeof *nv);
            if (!nv) {
                st = eng_err_set(ENG_ERR_NOMEM, "%s: out of memory", dir);
                goto out;
            }
            v = nv;
            cap = nc;
        }
        if (!(v[n] = eng_strdup(de->d_name))) {
            st = eng_err_set(ENG_ERR_NOMEM, "%s: out of memory", dir);
            goto out;
        }
        n++;
    }
    if (n) qsort(v, n, sizeof *v, str_cmp);
out:
    closedir(d);
    if (st) {
        for (size_t i = 0; i < n; i++) eng_free(v[i]);
        eng_free(v);
        return st;
    }
    *out = v;
    *n_out = n;
    return ENG_OK;
}

static eng_status model_add_files(eng_st_model *m, const char *dir, char **names, size_t n)
{
    m->files = eng_calloc(n ? n : 1, sizeof *m->files);
    if (!m->files) return eng_err_set(ENG_ERR_NOMEM, "%s: out of memory", dir ? dir : names[0]);
    for (size_t i = 0; i < n; i++) {
        m->files[i].fd = -1;
        m->files[i].path = dir ? eng_path_join(dir, names[i]) : eng_strdup(names[i]);
        m->n_files = (int)i + 1;
        if (!m->files[i].path) return eng_err_set(ENG_ERR_NOMEM, "out of memory");
    }
    return ENG_OK;
}

eng_status eng_st_open(const char *path, bool map_data, eng_st_model **out)
{
    *out = NULL;
    eng_status st = ENG_OK;
    eng_st_model *m = eng_calloc(1, sizeof *m);
    char *index_path = NULL, *index_json = NULL, *single = NULL;
    char **names = NULL;
    size_t n_names = 0;
    shard_index idx = {0};
    if (!m) return eng_err_set(ENG_ERR_NOMEM, "out of memory");

    struct stat sb;
    if (stat(path, &sb) != 0) {
        st = eng_err_set(ENG_ERR_IO, "%s: %s", path, strerror(errno));
        goto fail;
    }
    bool use_index = false;
    if (S_ISREG(sb.st_mode)) {
        char *p = (char *)path;
        if ((st = model_add_files(m, NULL, &p, 1))) goto fail;
    } else if (S_ISDIR(sb.st_mode)) {
        index_path = eng_path_join(path, "model.safetensors.index.json");
        single = eng_path_join(path, "model.safetensors");
        if (!index_path || !single) {
            st = eng_err_set(ENG_ERR_NOMEM, "out of memory");
            goto fail;
        }
        if (eng_file_exists(index_path)) {
            size_t len;
            if ((st = eng_file_read(index_path, INDEX_MAX_BYTES, &index_json, &len))) goto fail;
            if ((st = parse_index(index_json, len, index_path, &idx))) goto fail;
            for (size_t i = 0; i < idx.n_files; i++) {
                char *fp = eng_path_join(path, idx.files[i]);
                if (!fp) {
                    st = eng_err_set(ENG_ERR_NOMEM, "out of memory");
                    goto fail;
                }
                bool ok = eng_file_exists(fp);
                eng_free(fp);
                if (!ok) {
                    st = eng_err_set(ENG_ERR_IO, "%s names shard '%s', which is missing from %s", index_path, idx.files[i], path);
                    goto fail;
                }
            }
            if ((st = model_add_files(m, path, idx.files, idx.n_files))) goto fail;
            use_index = true;
        } else if (eng_file_exists(single)) {
            char *nm = "model.safetensors";
            if ((st = model_add_files(m, path, &nm, 1))) goto fail;
        } else {
            if ((st = list_safetensors(path, &names, &n_names))) goto fail;
            if (n_names == 0) {
                st = eng_err_set(ENG_ERR_NOT_FOUND, "%s: no model.safetensors, model.safetensors.index.json or *.safetensors file", path);
                goto fail;
            }
            if ((st = model_add_files(m, path, names, n_names))) goto fail;
        }
    } else {
        st = eng_err_set(ENG_ERR_IO, "%s: neither a file nor a folder", path);
        goto fail;
    }

    for (int i = 0; i < m->n_files; i++)
        if ((st = load_file(m, i, map_data))) goto fail;

    /* global name index: duplicates across shards */
    if (m->n_tensors > UINT32_MAX / 4) {
        st = eng_err_set(ENG_ERR_FORMAT, "%s: too many tensors", path);
        goto fail;
    }
    if (!name_index_init(&m->index, m->n_tensors)) {
        st = eng_err_set(ENG_ERR_NOMEM, "%s: out of memory", path);
        goto fail;
    }
    for (size_t i = 0; i < m->n_tensors; i++) {
        int64_t prev = name_index_put(&m->index, model_name_of, m, (uint32_t)i);
        if (prev >= 0) {
            st = eng_err_set(ENG_ERR_FORMAT, "tensor '%s' appears in both %s and %s", m->tensors[i].name,
                             m->files[m->tensors[prev].file_index].path, m->files[m->tensors[i].file_index].path);
            goto fail;
        }
    }

    if (use_index) {
        /* every index entry must be in the shard it names, and every shard tensor in the index */
        for (size_t i = 0; i < idx.n; i++) {
            const eng_st_tensor *t = eng_st_find(m, idx.e[i].name);
            if (!t) {
                st = eng_err_set(ENG_ERR_FORMAT, "%s: tensor '%s' is listed in shard '%s', which has no such tensor", index_path,
                                 idx.e[i].name, idx.e[i].file);
                goto fail;
            }
            const char *fp = m->files[t->file_index].path;
            size_t fl = strlen(fp), nl = strlen(idx.e[i].file);
            if (fl < nl || strcmp(fp + fl - nl, idx.e[i].file) != 0 || (fl > nl && fp[fl - nl - 1] != '/')) {
                st = eng_err_set(ENG_ERR_FORMAT, "%s: tensor '%s' is listed in shard '%s' but found in %s", index_path,
                                 idx.e[i].name, idx.e[i].file, fp);
                goto fail;
            }
        }
        if (idx.n != m->n_tensors) {
            name_index ni = {0};
            if (!name_index_init(&ni, idx.n)) {
                st = eng_err_set(ENG_ERR_NOMEM, "out of memory");
                goto fail;
            }
            for (size_t i = 0; i < idx.n; i++) name_index_put(&ni, index_name_of, idx.e, (uint32_t)i);
            for (size_t i = 0; i < m->n_tensors; i++) {
                if (name_index_get(&ni, index_name_of, idx.e, m->tensors[i].name) < 0) {
                    st = eng_err_set(ENG_ERR_FORMAT, "%s: tensor '%s' is not listed in %s", m->files[m->tensors[i].file_index].path,
                                     m->tensors[i].name, index_path);
                    break;
                }
            }
            name_index_free(&ni);
            if (st) goto fail;
        }
    }

    *out = m;
    m = NULL;
fail:
    eng_st_close(m);
    eng_free(index_path);
    eng_free(index_json);
    eng_free(single);
    for (size_t i = 0; i < n_names; i++) eng_free(names[i]);
    eng_free(names);
    shard_index_free(&idx);
    return st;
}

/* ==== writer ================================================================================== */

typedef struct wt {
    char *name;
    eng_dtype dtype;
    int n_dims;
    int64_t shape[ENG_ST_MAX_DIMS];
    uint64_t n_bytes;
} wt;

struct eng_st_writer {
    char *path;
    FILE *f;
    wt *t;
    size_t n, cap;
    char **meta; /* key, value pairs */
    size_t n_meta;
    name_index ni;
    bool data_phase, sparse;
    uint64_t data_total, data_written;
};

static const char *wt_name_of(const void *ctx, uint32_t i)
{
    return ((const wt *)ctx)[i].name;
}

eng_status eng_st_writer_create(const char *path, eng_st_writer **out)
{
    *out = NULL;
    eng_st_writer *w = eng_calloc(1, sizeof *w);
    if (!w) return eng_err_set(ENG_ERR_NOMEM, "out of memory");
    w->path = eng_strdup(path);
    if (!w->path) {
        eng_free(w);
        return eng_err_set(ENG_ERR_NOMEM, "out of memory");
    }
    w->f = fopen(path, "wb");
    if (!w->f) {
        eng_status st = eng_err_set(ENG_ERR_IO, "%s: %s", path, strerror(errno));
        eng_free(w->path);
        eng_free(w);
        return st;
    }
    *out = w;
    return ENG_OK;
}

static void writer_free(eng_st_writer *w)
{
    for (size_t i = 0; i < w->n; i++) eng_free(w->t[i].name);
    eng_free(w->t);
    for (size_t i = 0; i < 2 * w->n_meta; i++) eng_free(w->meta[i]);
    eng_free(w->meta);
    name_index_free(&w->ni);
    eng_free(w->path);
    eng_free(w);
}

void eng_st_writer_abort(eng_st_writer *w)
{
    if (!w) return;
    if (w->f) fclose(w->f);
    unlink(w->path);
    writer_free(w);
}

static eng_status writer_rehash(eng_st_writer *w, size_t need)
{
    if (w->ni.cap >= need * 2 + 1) return ENG_OK;
    name_index_free(&w->ni);
    if (!name_index_init(&w->ni, need * 2)) return eng_err_set(ENG_ERR_NOMEM, "%s: out of memory", w->path);
    for (size_t i = 0; i < w->n; i++) name_index_put(&w->ni, wt_name_of, w->t, (uint32_t)i);
    return ENG_OK;
}

eng_status eng_st_writer_add(eng_st_writer *w, const char *name, eng_dtype dtype, int n_dims, const int64_t *shape)
{
    if (w->data_phase) return eng_err_set(ENG_ERR_INVALID, "%s: tensor '%s' added after the data began", w->path, name);
    if (!name || !name[0] || !strcmp(name, "__metadata__"))
        return eng_err_set(ENG_ERR_INVALID, "%s: invalid tensor name", w->path);
    if ((unsigned)dtype >= ENG_DTYPE_COUNT) return eng_err_set(ENG_ERR_INVALID, "%s: tensor '%s': bad dtype", w->path, name);
    if (n_dims < 0 || n_dims > ENG_ST_MAX_DIMS)
        return eng_err_set(ENG_ERR_INVALID, "%s: tensor '%s': %d dimensions", w->path, name, n_dims);
    uint64_t numel = 1;
    for (int d = 0; d < n_dims; d++)
        if (shape[d] < 0 || __builtin_mul_overflow(numel, (uint64_t)shape[d], &numel) || numel > MAX_JSON_INT)
            return eng_err_set(ENG_ERR_INVALID, "%s: tensor '%s': bad shape", w->path, name);
    uint64_t nb;
    if (__builtin_mul_overflow(numel, (uint64_t)eng_dtype_size(dtype), &nb) || w->data_total + nb > MAX_JSON_INT)
        return eng_err_set(ENG_ERR_INVALID, "%s: tensor '%s': too large", w->path, name);
    if (w->n == w->cap) {
        size_t nc = w->cap ? w->cap * 2 : 64;
        wt *nt = eng_realloc(w->t, nc * sizeof *nt);
        if (!nt) return eng_err_set(ENG_ERR_NOMEM, "%s: out of memory", w->path);
        w->t = nt;
        w->cap = nc;
    }
    eng_status st = writer_rehash(w, w->n + 1);
    if (st) return st;
    wt *t = &w->t[w->n];
    memset(t, 0, sizeof *t);
    if (!(t->name = eng_strdup(name))) return eng_err_set(ENG_ERR_NOMEM, "%s: out of memory", w->path);
    t->dtype = dtype;
    t->n_dims = n_dims;
    for (int d = 0; d < n_dims; d++) t->shape[d] = shape[d];
    t->n_bytes = nb;
    if (name_index_put(&w->ni, wt_name_of, w->t, (uint32_t)w->n) >= 0) {
        eng_free(t->name);
        return eng_err_set(ENG_ERR_INVALID, "%s: tensor '%s' added twice", w->path, name);
    }
    w->n++;
    w->data_total += nb;
    return ENG_OK;
}

eng_status eng_st_writer_set_metadata(eng_st_writer *w, const char *key, const char *value)
{
    if (w->data_phase) return eng_err_set(ENG_ERR_INVALID, "%s: metadata set after the data began", w->path);
    for (size_t i = 0; i < w->n_meta; i++) {
        if (!strcmp(w->meta[2 * i], key)) {
            char *v = eng_strdup(value);
            if (!v) return eng_err_set(ENG_ERR_NOMEM, "out of memory");
            eng_free(w->meta[2 * i + 1]);
            w->meta[2 * i + 1] = v;
            return ENG_OK;
        }
    }
    char **nm = eng_realloc(w->meta, (w->n_meta + 1) * 2 * sizeof *nm);
    if (!nm) return eng_err_set(ENG_ERR_NOMEM, "out of memory");
    w->meta = nm;
    char *k = eng_strdup(key), *v = eng_strdup(value);
    if (!k || !v) {
        eng_free(k);
        eng_free(v);
        return eng_err_set(ENG_ERR_NOMEM, "out of memory");
    }
    w->meta[2 * w->n_meta] = k;
    w->meta[2 * w->n_meta + 1] = v;
    w->n_meta++;
    return ENG_OK;
}

static void json_str(eng_buf *b, const char *s)
{
    eng_buf_putc(b, '"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            eng_buf_putc(b, '\\');
            eng_buf_putc(b, (char)c);
        } else if (c < 0x20) {
            eng_buf_printf(b, "\\u%04x", c);
        } else {
            eng_buf_putc(b, (char)c);
        }
    }
    eng_buf_putc(b, '"');
}

eng_status eng_st_writer_begin_data(eng_st_writer *w, bool sparse)
{
    if (w->data_phase) return eng_err_set(ENG_ERR_INVALID, "%s: begin_data called twice", w->path);
    eng_buf b;
    eng_buf_init(&b);
    eng_status st = ENG_OK;
    bool have_format = false;
    for (size_t i = 0; i < w->n_meta; i++) have_format |= !strcmp(w->meta[2 * i], "format");
    eng_buf_puts(&b, "{\"__metadata__\":{");
    if (!have_format) eng_buf_puts(&b, "\"format\":\"pt\"");
    for (size_t i = 0; i < w->n_meta; i++) {
        if (i || !have_format) eng_buf_putc(&b, ',');
        json_str(&b, w->meta[2 * i]);
        eng_buf_putc(&b, ':');
        json_str(&b, w->meta[2 * i + 1]);
    }
    eng_buf_putc(&b, '}');
    uint64_t off = 0;
    for (size_t i = 0; i < w->n; i++) {
        const wt *t = &w->t[i];
        eng_buf_putc(&b, ',');
        json_str(&b, t->name);
        eng_buf_printf(&b, ":{\"dtype\":\"%s\",\"shape\":[", eng_dtype_name(t->dtype));
        for (int d = 0; d < t->n_dims; d++) eng_buf_printf(&b, d ? ",%lld" : "%lld", (long long)t->shape[d]);
        eng_buf_printf(&b, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off, (unsigned long long)(off + t->n_bytes));
        off += t->n_bytes;
    }
    eng_buf_putc(&b, '}');
    while (!b.oom && b.len % 8) eng_buf_putc(&b, ' '); /* data starts 8-byte aligned, as HF writers do */
    if (b.oom) {
        st = eng_err_set(ENG_ERR_NOMEM, "%s: out of memory building the header", w->path);
        goto out;
    }
    if (b.len > ENG_ST_MAX_HEADER) {
        st = eng_err_set(ENG_ERR_INVALID, "%s: header of %zu bytes is above the %u-byte limit", w->path, b.len, ENG_ST_MAX_HEADER);
        goto out;
    }
    unsigned char pre[8];
    uint64_t hl = b.len;
    for (int i = 0; i < 8; i++) pre[i] = (unsigned char)(hl >> (8 * i));
    if (fwrite(pre, 1, 8, w->f) != 8 || fwrite(b.data, 1, b.len, w->f) != b.len) {
        st = eng_err_set(ENG_ERR_IO, "%s: write failed: %s", w->path, strerror(errno));
        goto out;
    }
    w->data_phase = true;
    w->sparse = sparse;
    if (sparse) {
        if (fflush(w->f) != 0 || ftruncate(fileno(w->f), (off_t)(8 + hl + w->data_total)) != 0)
            st = eng_err_set(ENG_ERR_IO, "%s: cannot extend the file: %s", w->path, strerror(errno));
    }
out:
    eng_buf_free(&b);
    return st;
}

eng_status eng_st_writer_data(eng_st_writer *w, const void *data, uint64_t n_bytes)
{
    if (!w->data_phase) return eng_err_set(ENG_ERR_INVALID, "%s: data written before begin_data", w->path);
    if (w->sparse) return eng_err_set(ENG_ERR_INVALID, "%s: data written to a sparse file", w->path);
    if (n_bytes > w->data_total - w->data_written)
        return eng_err_set(ENG_ERR_INVALID, "%s: %llu bytes written past the end of the declared tensors", w->path,
                           (unsigned long long)(w->data_written + n_bytes - w->data_total));
    if (n_bytes && fwrite(data, 1, (size_t)n_bytes, w->f) != n_bytes)
        return eng_err_set(ENG_ERR_IO, "%s: write failed: %s", w->path, strerror(errno));
    w->data_written += n_bytes;
    return ENG_OK;
}

eng_status eng_st_writer_finish(eng_st_writer *w)
{
    eng_status st = ENG_OK;
    if (!w->data_phase) st = eng_st_writer_begin_data(w, false);
    if (!st && !w->sparse && w->data_written != w->data_total)
        st = eng_err_set(ENG_ERR_INVALID, "%s: only %llu of %llu data bytes were written", w->path,
                         (unsigned long long)w->data_written, (unsigned long long)w->data_total);
    if (st) {
        eng_st_writer_abort(w);
        return st;
    }
    FILE *f = w->f;
    w->f = NULL;
    if (fclose(f) != 0) {
        st = eng_err_set(ENG_ERR_IO, "%s: close failed: %s", w->path, strerror(errno));
        unlink(w->path);
    }
    writer_free(w);
    return st;
}
