/* grpc_service/util.h - small services for the gRPC service: allocation with a fault injector,
 * logging, a growable byte buffer, UTF-8 checks and monotonic time.
 *
 * The service may use only the engine's public headers (qnext/eng.h, qnext/status.h), so it has its
 * own allocator entry points instead of the engine-internal eng_malloc (docs/decisions.md D9).
 * Every service allocation, including protobuf-c's (gsvc_pb_allocator in wire.h), goes through
 * gsvc_malloc/gsvc_realloc/gsvc_free so that unit tests can make the Nth allocation fail and check
 * for a clean error with no leak (docs/style.md rules 9 and 13).
 */
#ifndef GSVC_UTIL_H
#define GSVC_UTIL_H

#include "qnext/status.h" /* defines: eng_status, eng_err_set */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ==== allocation ============================================================================== */

void *gsvc_malloc(size_t n);
void *gsvc_calloc(size_t count, size_t size);
void *gsvc_realloc(void *p, size_t n);
void gsvc_free(void *p);
/* Copies of s / of the first n bytes of s (always NUL-terminated); NULL on OOM or s == NULL. */
char *gsvc_strdup(const char *s);
char *gsvc_strndup(const char *s, size_t n);

/* Test hook: after `n` more successful allocations every gsvc_* allocation fails until
 * gsvc_alloc_fail_after(-1). Process-wide, atomic; tests only. */
void gsvc_alloc_fail_after(long n);

/* ==== growable buffer ========================================================================= */

/* A byte buffer that keeps its capacity across gsvc_buf_reset (reused per call, per message).
 * data is NUL-terminated whenever cap > 0. */
typedef struct gsvc_buf {
    char *data;
    size_t len, cap;
} gsvc_buf;

void gsvc_buf_init(gsvc_buf *b);
void gsvc_buf_free(gsvc_buf *b);
static inline void gsvc_buf_reset(gsvc_buf *b)
{
    b->len = 0;
    if (b->data) b->data[0] = '\0';
}
/* Appends n bytes; false on OOM (the buffer is unchanged then). */
bool gsvc_buf_append(gsvc_buf *b, const void *p, size_t n);
bool gsvc_buf_puts(gsvc_buf *b, const char *s);
/* The content as a C string: "" for an empty, never-allocated buffer. */
const char *gsvc_buf_str(const gsvc_buf *b);

/* ==== text ==================================================================================== */

/* True if p[0..n) is well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
bool gsvc_utf8_valid(const char *p, size_t n);

/* Appends p[0..n) to b with every ill-formed sequence, and every NUL, replaced by U+FFFD (text
 * bound for a protobuf-c string field, which is a C string). False on OOM. */
bool gsvc_utf8_append_sanitized(gsvc_buf *b, const char *p, size_t n);

/* ==== logging and time ======================================================================== */

typedef enum gsvc_log_level { GSVC_LOG_DEBUG = 0, GSVC_LOG_INFO, GSVC_LOG_WARN, GSVC_LOG_ERROR } gsvc_log_level;

/* One line to stderr: "qnext-engine: <level>: <message>". Threshold from QNEXT_LOG
 * (debug|info|warn|error, default info). Thread-safe. */
void gsvc_log(gsvc_log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Monotonic time in milliseconds / seconds. */
int64_t gsvc_now_ms(void);
double gsvc_now_s(void);

#endif /* GSVC_UTIL_H */
