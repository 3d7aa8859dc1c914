/* openai_request.h - parsing and validating OpenAI request bodies into a gw_request.
 *
 * Two request kinds: POST /v1/chat/completions and POST /v1/completions (docs/serving-notes.md
 * §1.1, §1.2, §1.8). Every field is type- and range-checked; a field the gateway does not support
 * (response_format json_schema, tool_choice "required", audio, suffix, best_of > 1, ...) or does not
 * know is rejected with a 400 whose `param` names it - never silently ignored. JSON null means
 * "absent" for every optional field, as in OpenAI's schema.
 *
 * The result, gw_request, is the gateway's own plain description of the work: pack.c turns it into
 * a qnext.v1.GenerateRequest. This module needs only qn_core and cJSON (no h2o, no gRPC, no
 * protobuf), so the libFuzzer target compiles it in directly.
 */
#ifndef GW_OPENAI_REQUEST_H
#define GW_OPENAI_REQUEST_H

#include "qnext/status.h" /* defines: eng_status */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ==== errors ================================================================================== */

/* An OpenAI-shaped error: {"error":{"message","type","param","code"}} plus the HTTP status. */
typedef struct gw_error {
    int status;        /* HTTP status: 400, 401, 404, 413, 429, 500, 503, ... */
    const char *type;  /* static: "invalid_request_error", "authentication_error", ... */
    const char *code;  /* static or NULL: "invalid_api_key", "model_not_found", ... */
    char param[128];   /* the offending parameter ("messages[2].content"), "" = null */
    char message[512]; /* human-readable, safe to show to the client */
    int retry_after_s; /* > 0: send Retry-After (429, 503) */
} gw_error;

/* Fills `e` (printf-style message, truncated to fit). `param` may be NULL. Returns ENG_ERR_INVALID
 * so parsers can `return gw_error_set(...)`. */
eng_status gw_error_set(gw_error *e, int status, const char *type, const char *code, const char *param,
                        const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* ==== requests ================================================================================ */

typedef enum gw_api {
    GW_API_CHAT = 1,        /* POST /v1/chat/completions */
    GW_API_COMPLETIONS = 2, /* POST /v1/completions */
} gw_api;

/* Bounds applied while parsing (hostile-input limits and operator policy). */
typedef struct gw_limits {
    int max_n;                /* choices per request (OpenAI: 128) */
    int32_t max_tokens_clamp; /* > 0: max_tokens is lowered to this, and set to it when absent */
    size_t max_messages;      /* chat messages per request */
    size_t max_content_parts; /* text parts per message */
    size_t max_prompts;       /* completions: prompts per request; n * prompts <= max_n too */
    size_t max_tools;         /* tools per request */
    size_t max_logit_bias;    /* logit_bias entries */
    size_t max_stop_bytes;    /* bytes per stop string */
    size_t max_stop_token_ids;
    int32_t vocab_size; /* > 0: token ids must be below it (known from GetModelInfo) */
} gw_limits;

/* Default limits (n <= 128, 4096 messages, 256 prompts, 512 tools, 1024 logit_bias entries). */
void gw_limits_default(gw_limits *l);

/* One completions prompt: text, or token ids. */
typedef struct gw_prompt {
    char *text;   /* NUL-terminated UTF-8, or NULL when ids are used */
    int32_t *ids; /* (n_ids,) token ids, or NULL */
    size_t n_ids;
} gw_prompt;

typedef struct gw_request {
    gw_api api;
    char *model; /* as sent by the client */
    bool stream;
    bool include_usage; /* stream_options.include_usage */

    /* chat */
    char *messages_json;  /* the validated `messages` array re-serialised as compact JSON */
    char **tools_json;    /* (n_tools,) each tool object as compact JSON */
    size_t n_tools;
    char *template_kwargs_json;  /* chat_template_kwargs as compact JSON, or NULL */
    bool parallel_tool_calls;    /* default true; false: only tool call index 0 is passed on */

    /* completions */
    gw_prompt *prompts; /* (n_prompts,) */
    size_t n_prompts;
    bool echo;

    /* sampling; has_* = the client set it */
    bool has_temperature, has_top_p, has_top_k, has_min_p, has_repetition_penalty, has_seed;
    float temperature, top_p, min_p, repetition_penalty;
    int32_t top_k; /* 0 = off (-1 from vLLM-style clients is mapped to 0) */
    float presence_penalty, frequency_penalty;
    uint64_t seed; /* an int64 seed's two's-complement bits */
    int n;         /* 1..max_n */
    int32_t *bias_tokens; /* (n_bias,) */
    float *bias_values;   /* (n_bias,) -100..100 */
    size_t n_bias;
    int logprobs; /* -1: none; 0: the sampled token's; k: plus top k (chat <= 20, completions <= 5) */

    /* stopping */
    bool has_max_tokens;
    int32_t max_tokens; /* chat: max_completion_tokens wins over max_tokens; completions default 16 */
    int32_t min_tokens;
    bool ignore_eos;
    char **stop; /* (n_stop,) non-empty UTF-8 strings, at most 4 */
    size_t n_stop;
    int32_t *stop_token_ids; /* (n_stop_token_ids,) */
    size_t n_stop_token_ids;

    bool skip_special_tokens; /* default true */
} gw_request;

/* Parses and validates `body[0..len)` (need not be NUL-terminated) as a request of kind `api`.
 * On success *out owns a new request (free with gw_request_destroy) and ENG_OK is returned. On bad
 * input returns ENG_ERR_INVALID with `err` describing a 400 (param = the offending field); on out
 * of memory returns ENG_ERR_NOMEM with `err` set to a 500. Thread-safe (no shared state). */
eng_status gw_request_parse(gw_api api, const char *body, size_t len, const gw_limits *lim, gw_request **out,
                            gw_error *err);

/* Frees a request. NULL-safe. */
void gw_request_destroy(gw_request *r);

/* Number of choices the response will carry: n, times the number of prompts for completions. */
size_t gw_request_n_choices(const gw_request *r);

#endif /* GW_OPENAI_REQUEST_H */
