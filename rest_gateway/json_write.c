/* json_write.c - JSON value writer and UTF-8 checks (see json_write.h). */
#include "json_write.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Length of the valid UTF-8 sequence starting at s[0] (of at most n bytes), or 0 if invalid.
 * `incomplete` is set when the bytes present are a valid prefix cut short by the end of input. */
static size_t utf8_seq(const unsigned char *s, size_t n, bool *incomplete)
{
    *incomplete = false;
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0;      /* no overlongs */
        else if (c == 0xED) hi = 0x9F; /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90;
        else if (c == 0xF4) hi = 0x8F; /* <= U+10FFFF */
    } else {
        return 0;
    }
    for (size_t i = 1; i < len; i++) {
        if (i >= n) {
            *incomplete = true;
            return 0;
        }
        unsigned cc = s[i];
        if (i == 1 ? (cc < lo || cc > hi) : (cc < 0x80 || cc > 0xBF)) return 0;
    }
    return len;
}

bool gw_utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        bool inc;
        size_t l = utf8_seq(p + i, n - i, &inc);
        if (!l) return false;
        i += l;
    }
    return true;
}

size_t gw_utf8_complete_prefix(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        bool inc;
        size_t l = utf8_seq(p + i, n - i, &inc);
        if (!l) {
            if (inc) return i;
            i++; /* an invalid byte is complete (it will be replaced) */
            continue;
        }
        i += l;
    }
    return n;
}

void gw_jw_str(eng_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    eng_buf_putc(b, '"');
    size_t run = 0; /* start of the pending run of bytes that need no escaping */
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i];
        if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0x80) {
            bool inc;
            size_t l = utf8_seq(p + i, n - i, &inc);
            if (l) {
                i += l;
                continue;
            }
        }
        eng_buf_append(b, p + run, i - run);
        char esc[8];
        size_t el = 2;
        esc[0] = '\\';
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        default:
            if (c < 0x20) {
                memcpy(esc, "\\u00", 4);
                esc[4] = hex[c >> 4];
                esc[5] = hex[c & 15];
                el = 6;
            } else { /* an invalid UTF-8 byte */
                memcpy(esc, "\\ufffd", 6);
                el = 6;
            }
        }
        eng_buf_append(b, esc, el);
        i++;
        run = i;
    }
    eng_buf_append(b, p + run, n - run);
    eng_buf_putc(b, '"');
}

void gw_jw_cstr(eng_buf *b, const char *s)
{
    if (!s) eng_buf_puts(b, "null");
    else gw_jw_str(b, s, strlen(s));
}

void gw_jw_key(eng_buf *b, const char *key)
{
    eng_buf_putc(b, '"');
    eng_buf_puts(b, key);
    eng_buf_append(b, "\":", 2);
}

void gw_jw_int(eng_buf *b, int64_t v)
{
    char t[32];
    int l = snprintf(t, sizeof t, "%" PRId64, v);
    eng_buf_append(b, t, (size_t)l);
}

/* Appends `t` and makes sure it reads as a JSON number with a fraction or exponent, so that a
 * float prints as "1.0" rather than "1" (readers that type by syntax then see a float). */
static void put_number(eng_buf *b, const char *t)
{
    eng_buf_puts(b, t);
    if (!strpbrk(t, ".eEn")) eng_buf_append(b, ".0", 2);
}

void gw_jw_float(eng_buf *b, float v)
{
    if (isnan(v)) {
        eng_buf_puts(b, "null");
        return;
    }
    if (isinf(v)) {
        eng_buf_puts(b, v < 0 ? "-9999.0" : "9999.0");
        return;
    }
    char t[48];
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(t, sizeof t, "%.*g", prec, (double)v);
        if (strtof(t, NULL) == v) break;
    }
    put_number(b, t);
}

void gw_jw_double(eng_buf *b, double v)
{
    if (isnan(v)) {
        eng_buf_puts(b, "null");
        return;
    }
    if (isinf(v)) {
        eng_buf_puts(b, v < 0 ? "-9999.0" : "9999.0");
        return;
    }
    char t[48];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(t, sizeof t, "%.*g", prec, v);
        if (strtod(t, NULL) == v) break;
    }
    put_number(b, t);
}

void gw_jw_bool(eng_buf *b, bool v)
{
    eng_buf_puts(b, v ? "true" : "false");
}
