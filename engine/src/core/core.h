/* core/core.h - small engine-internal services: allocation (with fault injection for tests),
 * logging, whole-file reads, monotonic time, checked size arithmetic and a progress bar.
 *
 * Every engine allocation goes through eng_malloc/eng_calloc/eng_realloc/eng_free so tests can
 * make the Nth allocation fail (eng_alloc_fail_after) and check "clean ENG_ERR_NOMEM, no leak"
 * (docs/style.md rule 9). Large weight buffers that are mmapped do not go through it.
 */
#ifndef QN_CORE_H
#define QN_CORE_H

#include "qnext/status.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ==== allocation ============================================================================== */

void *eng_malloc(size_t n);
void *eng_calloc(size_t count, size_t size);
void *eng_realloc(void *p, size_t n);
void eng_free(void *p);
char *eng_strdup(const char *s);
char *eng_strndup(const char *s, size_t n);
/* 64-byte-aligned allocation for SIMD buffers; free with eng_free_aligned. */
void *eng_malloc_aligned(size_t n);
void eng_free_aligned(void *p);

/* Test hook: after `n` more successful allocations, every allocation fails (returns NULL) until
 * eng_alloc_fail_after(-1) turns injection off. Process-wide; tests only. */
void eng_alloc_fail_after(long n);
/* Number of allocations made through eng_* since start (tests use it to size fault sweeps). */
long eng_alloc_count(void);

/* Checked arithmetic: false on overflow. */
static inline bool eng_mul_ok(size_t a, size_t b, size_t *out)
{
    return !__builtin_mul_overflow(a, b, out);
}
static inline bool eng_add_ok(size_t a, size_t b, size_t *out)
{
    return !__builtin_add_overflow(a, b, out);
}

/* A growable byte buffer (always NUL-terminated when len > 0 or after eng_buf_cstr). */
typedef struct eng_buf {
    char *data;
    size_t len, cap;
    bool oom; /* sticky: an append failed; the content is incomplete */
} eng_buf;

void eng_buf_init(eng_buf *b);
void eng_buf_free(eng_buf *b);
bool eng_buf_append(eng_buf *b, const void *p, size_t n);
bool eng_buf_puts(eng_buf *b, const char *s);
bool eng_buf_putc(eng_buf *b, char c);
bool eng_buf_printf(eng_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Returns the content as a C string ("" when empty); NULL only if the buffer is out of memory. */
const char *eng_buf_cstr(eng_buf *b);
/* Hands the storage to the caller (free with eng_free) and resets the buffer. */
char *eng_buf_take(eng_buf *b, size_t *len);

/* ==== logging ================================================================================= */

typedef enum eng_log_level { ENG_LOG_DEBUG = 0, ENG_LOG_INFO, ENG_LOG_WARN, ENG_LOG_ERROR } eng_log_level;

/* Logs one line to stderr as "qnext: level: message". The threshold comes from QNEXT_LOG
 * (debug|info|warn|error, default info) or eng_log_set_level. Thread-safe. */
void eng_log(eng_log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void eng_log_set_level(eng_log_level lvl);

/* ==== files and time ========================================================================== */

/* Reads a whole file into a NUL-terminated heap buffer (free with eng_free). Fails with
 * ENG_ERR_IO (detail names the path) or ENG_ERR_INVALID if the file is larger than max_bytes. */
eng_status eng_file_read(const char *path, size_t max_bytes, char **out, size_t *len);
bool eng_file_exists(const char *path);
bool eng_dir_exists(const char *path);
/* Joins dir + "/" + name into a heap string (NULL on OOM). */
char *eng_path_join(const char *dir, const char *name);

/* Monotonic clock in nanoseconds and seconds. */
uint64_t eng_now_ns(void);
double eng_now_s(void);

/* Peak resident set size of this process in bytes (0 if unknown). */
size_t eng_peak_rss(void);

/* ==== progress bar ============================================================================ */

/* A one-line progress bar on stderr ("loading weights [=====>    ] 52% 3.1 GB/9.0 GB 1.2 GB/s").
 * Draws only when stderr is a terminal (or QNEXT_PROGRESS=1), at most 10 times a second. */
typedef struct eng_progress {
    const char *label;
    uint64_t total, done;
    bool bytes;   /* format counts as bytes (and rate as bytes/s) */
    bool enabled; /* drawing at all */
    uint64_t t_start_ns, t_last_ns;
} eng_progress;

void eng_progress_begin(eng_progress *p, const char *label, uint64_t total, bool bytes);
void eng_progress_update(eng_progress *p, uint64_t done);
void eng_progress_end(eng_progress *p);
/* Formats a byte count as "1.23 GB" into buf (returns buf). */
const char *eng_fmt_bytes(double bytes, char *buf, size_t cap);

#endif /* QN_CORE_H */
