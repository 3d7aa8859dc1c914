/* grpc_service/util.c - allocation with fault injection, buffers, UTF-8, logging (see util.h). */
#include "util.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* ==== allocation ============================================================================== */

static atomic_long fail_after = -1; /* -1: injection off */

void gsvc_alloc_fail_after(long n)
{
    atomic_store(&fail_after, n);
}

/* true if this allocation must fail */
static bool inject(void)
{
    long f = atomic_load(&fail_after);
    while (f > 0) {
        if (atomic_compare_exchange_weak(&fail_after, &f, f - 1)) return false;
    }
    return f == 0;
}

void *gsvc_malloc(size_t n)
{
    if (inject()) return NULL;
    return malloc(n ? n : 1);
}

void *gsvc_calloc(size_t count, size_t size)
{
    if (inject()) return NULL;
    if (count == 0 || size == 0) return calloc(1, 1);
    return calloc(count, size);
}

void *gsvc_realloc(void *p, size_t n)
{
    if (inject()) return NULL;
    return realloc(p, n ? n : 1);
}

void gsvc_free(void *p)
{
    free(p);
}

char *gsvc_strndup(const char *s, size_t n)
{
    if (!s) return NULL;
    char *d = gsvc_malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *gsvc_strdup(const char *s)
{
    return s ? gsvc_strndup(s, strlen(s)) : NULL;
}

/* ==== growable buffer ========================================================================= */

void gsvc_buf_init(gsvc_buf *b)
{
    b->data = NULL;
    b->len = b->cap = 0;
}

void gsvc_buf_free(gsvc_buf *b)
{
    if (!b) return;
    gsvc_free(b->data);
    gsvc_buf_init(b);
}

bool gsvc_buf_append(gsvc_buf *b, const void *p, size_t n)
{
    if (n > SIZE_MAX / 2 - b->len) return false;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 32;
        while (cap < b->len + n + 1) cap *= 2;
        char *d = gsvc_realloc(b->data, cap);
        if (!d) return false;
        b->data = d;
        b->cap = cap;
    }
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return true;
}

bool gsvc_buf_puts(gsvc_buf *b, const char *s)
{
    return gsvc_buf_append(b, s, strlen(s));
}

const char *gsvc_buf_str(const gsvc_buf *b)
{
    return b->data ? b->data : "";
}

/* ==== UTF-8 =================================================================================== */

/* Length of the well-formed sequence at p[0..n), or 0 if it is ill-formed (Unicode table 3-7). */
static size_t utf8_seq_len(const unsigned char *p, size_t n)
{
    unsigned c = p[0];
    if (c < 0x80) return 1;
    size_t len;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c == 0xE0) len = 3, lo = 0xA0;
    else if (c >= 0xE1 && c <= 0xEC) len = 3;
    else if (c == 0xED) len = 3, hi = 0x9F;
    else if (c >= 0xEE && c <= 0xEF) len = 3;
    else if (c == 0xF0) len = 4, lo = 0x90;
    else if (c >= 0xF1 && c <= 0xF3) len = 4;
    else if (c == 0xF4) len = 4, hi = 0x8F;
    else return 0;
    if (n < len) return 0;
    if (p[1] < lo || p[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if (p[i] < 0x80 || p[i] > 0xBF) return 0;
    return len;
}

bool gsvc_utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        if (p[i] < 0x80) {
            /* ASCII runs 8 bytes at a time (prompts and JSON are mostly ASCII) */
            while (i + 8 <= n) {
                uint64_t w;
                memcpy(&w, p + i, 8);
                if (w & 0x8080808080808080ull) break;
                i += 8;
            }
            while (i < n && p[i] < 0x80) i++;
            continue;
        }
        size_t k = utf8_seq_len(p + i, n - i);
        if (!k) return false;
        i += k;
    }
    return true;
}

bool gsvc_utf8_append_sanitized(gsvc_buf *b, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, run = 0; /* run: start of the current well-formed stretch */
    while (i < n) {
        size_t k = p[i] == 0 ? 0 : p[i] < 0x80 ? 1 : utf8_seq_len(p + i, n - i);
        if (k) {
            i += k;
            continue;
        }
        if (!gsvc_buf_append(b, s + run, i - run) || !gsvc_buf_append(b, "\xEF\xBF\xBD", 3)) return false;
        i++;
        run = i;
    }
    return gsvc_buf_append(b, s + run, n - run);
}

/* ==== logging and time ======================================================================== */

static int log_threshold(void)
{
    static atomic_int lvl = -1;
    int v = atomic_load(&lvl);
    if (v >= 0) return v;
    const char *e = getenv("QNEXT_LOG");
    v = GSVC_LOG_INFO;
    if (e) {
        if (!strcasecmp(e, "debug")) v = GSVC_LOG_DEBUG;
        else if (!strcasecmp(e, "warn")) v = GSVC_LOG_WARN;
        else if (!strcasecmp(e, "error")) v = GSVC_LOG_ERROR;
    }
    atomic_store(&lvl, v);
    return v;
}

void gsvc_log(gsvc_log_level lvl, const char *fmt, ...)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    if ((int)lvl < log_threshold()) return;
    char line[2048];
    int k = snprintf(line, sizeof line, "qnext-engine: %s: ", names[lvl]);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + k, sizeof line - (size_t)k, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s\n", line); /* one call: lines from threads do not interleave */
}

int64_t gsvc_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

double gsvc_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
