/* core/status.c - status strings and the per-thread error detail (see qnext/status.h). */
#include "qnext/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define ERR_CAP 1024

static _Thread_local char err_buf[ERR_CAP];

const char *eng_status_str(eng_status s)
{
    switch (s) {
    case ENG_OK: return "ok";
    case ENG_ERR_NOMEM: return "out of memory";
    case ENG_ERR_INVALID: return "invalid argument";
    case ENG_ERR_IO: return "i/o error";
    case ENG_ERR_FORMAT: return "malformed file";
    case ENG_ERR_UNSUPPORTED: return "unsupported";
    case ENG_ERR_NOT_FOUND: return "not found";
    case ENG_ERR_NO_KV_BLOCKS: return "out of KV cache blocks or state slots";
    case ENG_ERR_QUEUE_FULL: return "queue full";
    case ENG_ERR_CANCELLED: return "cancelled";
    case ENG_ERR_TIMEOUT: return "timed out";
    case ENG_ERR_DEVICE: return "device error";
    case ENG_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

eng_status eng_err_set(eng_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_buf, sizeof err_buf, fmt, ap);
    va_end(ap);
    return s;
}

eng_status eng_err_wrap(eng_status s, const char *fmt, ...)
{
    char prefix[ERR_CAP], old[ERR_CAP];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err_buf, sizeof old);
    size_t n = strlen(prefix);
    memcpy(err_buf, prefix, n + 1);
    if (old[0] && n + 2 < sizeof err_buf) {
        memcpy(err_buf + n, ": ", 3);
        size_t room = sizeof err_buf - n - 3;
        size_t m = strnlen(old, room);
        memcpy(err_buf + n + 2, old, m);
        err_buf[n + 2 + m] = '\0';
    }
    return s;
}

const char *eng_err_last(void)
{
    return err_buf;
}

void eng_err_clear(void)
{
    err_buf[0] = '\0';
}
