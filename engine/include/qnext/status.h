/* qnext/status.h - status codes and error details shared by every engine module.
 *
 * Library code never exits: it returns an eng_status and, for anything a user must act on, sets a
 * human-readable detail with eng_err_set() ("model/x.safetensors: tensor 'lm_head.weight': shape
 * [10, 64] does not match config [151936, 64]"). The detail is per thread and stays until the next
 * eng_err_set() or eng_err_clear() on that thread, so the caller that receives the status reads it
 * with eng_err_last() right away.
 */
#ifndef QNEXT_STATUS_H
#define QNEXT_STATUS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum eng_status {
    ENG_OK = 0,
    ENG_ERR_NOMEM,        /* an allocation failed */
    ENG_ERR_INVALID,      /* bad argument or bad input from outside (JSON, ids, config values) */
    ENG_ERR_IO,           /* open/read/mmap failed; detail has the path and errno text */
    ENG_ERR_FORMAT,       /* a file is malformed (safetensors header, tokenizer.json, config.json) */
    ENG_ERR_UNSUPPORTED,  /* valid but not supported (dtype, template, architecture) */
    ENG_ERR_NOT_FOUND,    /* a named thing does not exist (tensor, file, request id) */
    ENG_ERR_NO_KV_BLOCKS, /* the KV cache or the state-slot pool is exhausted */
    ENG_ERR_QUEUE_FULL,   /* the submission queue is full: back off and retry */
    ENG_ERR_CANCELLED,    /* the request was cancelled */
    ENG_ERR_TIMEOUT,      /* a wait (collective, drain) ran past its deadline */
    ENG_ERR_DEVICE,       /* a GPU / NCCL error */
    ENG_ERR_INTERNAL,     /* a bug: an invariant did not hold */
} eng_status;

/* Short constant text for a status ("out of memory", "invalid argument", ...). Never NULL. */
const char *eng_status_str(eng_status s);

/* Sets this thread's error detail (printf-style, truncated to 1 KiB) and returns `s`, so that
 * `return eng_err_set(ENG_ERR_FORMAT, "%s: bad header", path);` reads naturally. */
eng_status eng_err_set(eng_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prepends "prefix: " to this thread's current detail (adds context while unwinding) and returns `s`. */
eng_status eng_err_wrap(eng_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* This thread's last detail, or "" if none. Valid until the next eng_err_* call on this thread. */
const char *eng_err_last(void);

/* Clears this thread's detail. */
void eng_err_clear(void);

#ifdef __cplusplus
}
#endif

#endif /* QNEXT_STATUS_H */
