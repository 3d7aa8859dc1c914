/* core/alloc.c - the engine allocator with a fault injector (see core.h). */
#include "core/core.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static atomic_long fail_after = -1; /* -1: injection off */
static atomic_long n_allocs = 0;

void eng_alloc_fail_after(long n)
{
    atomic_store(&fail_after, n);
}

long eng_alloc_count(void)
{
    return atomic_load(&n_allocs);
}

/* true if this allocation must fail */
static bool inject(void)
{
    long f = atomic_load(&fail_after);
    if (f < 0) return false;
    while (f > 0) {
        if (atomic_compare_exchange_weak(&fail_after, &f, f - 1)) return false;
        if (f < 0) return false;
    }
    return f == 0;
}

void *eng_malloc(size_t n)
{
    if (inject()) return NULL;
    atomic_fetch_add(&n_allocs, 1);
    return malloc(n ? n : 1);
}

void *eng_calloc(size_t count, size_t size)
{
    if (inject()) return NULL;
    atomic_fetch_add(&n_allocs, 1);
    if (count == 0 || size == 0) return calloc(1, 1);
    return calloc(count, size);
}

void *eng_realloc(void *p, size_t n)
{
    if (inject()) return NULL;
    atomic_fetch_add(&n_allocs, 1);
    return realloc(p, n ? n : 1);
}

void eng_free(void *p)
{
    free(p);
}

char *eng_strndup(const char *s, size_t n)
{
    char *d = eng_malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *eng_strdup(const char *s)
{
    return eng_strndup(s, strlen(s));
}

void *eng_malloc_aligned(size_t n)
{
    if (inject()) return NULL;
    atomic_fetch_add(&n_allocs, 1);
    void *p = NULL;
    size_t sz = (n + 63) & ~(size_t)63;
    if (posix_memalign(&p, 64, sz ? sz : 64) != 0) return NULL;
    return p;
}

void eng_free_aligned(void *p)
{
    free(p);
}

/* ==== eng_buf ================================================================================= */

void eng_buf_init(eng_buf *b)
{
    b->data = NULL;
    b->len = b->cap = 0;
    b->oom = false;
}

void eng_buf_free(eng_buf *b)
{
    eng_free(b->data);
    eng_buf_init(b);
}

static bool buf_reserve(eng_buf *b, size_t extra)
{
    size_t need;
    if (b->oom || !eng_add_ok(b->len, extra, &need) || !eng_add_ok(need, 1, &need)) {
        b->oom = true;
        return false;
    }
    if (need <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) {
        if (cap > SIZE_MAX / 2) {
            cap = need;
            break;
        }
        cap *= 2;
    }
    char *d = eng_realloc(b->data, cap);
    if (!d) {
        b->oom = true;
        return false;
    }
    b->data = d;
    b->cap = cap;
    return true;
}

bool eng_buf_append(eng_buf *b, const void *p, size_t n)
{
    if (!buf_reserve(b, n)) return false;
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return true;
}

bool eng_buf_puts(eng_buf *b, const char *s)
{
    return eng_buf_append(b, s, strlen(s));
}

bool eng_buf_putc(eng_buf *b, char c)
{
    return eng_buf_append(b, &c, 1);
}

bool eng_buf_printf(eng_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !buf_reserve(b, (size_t)n)) return false;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return true;
}

const char *eng_buf_cstr(eng_buf *b)
{
    if (b->oom) return NULL;
    if (!b->data) return "";
    return b->data;
}

char *eng_buf_take(eng_buf *b, size_t *len)
{
    if (b->oom) {
        eng_buf_free(b);
        return NULL;
    }
    if (!b->data && !buf_reserve(b, 0)) return NULL;
    if (b->len == 0) b->data[0] = '\0';
    char *d = b->data;
    if (len) *len = b->len;
    eng_buf_init(b);
    return d;
}
