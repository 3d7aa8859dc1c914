/* openai_response.h - OpenAI response bodies and SSE chunks built from qnext.v1 Generate streams.
 *
 * A gw_xcode ("transcoder") turns the GenerateResponse messages of one HTTP request's upstream
 * calls (one per prompt: chat has one, /v1/completions one per prompt) into what the client sees:
 *   streaming:     one SSE event per delta (first chunk per choice carries the role; tool-call
 *                  deltas carry index/id/type/function; finish chunk with delta {}; the usage chunk
 *                  with choices [] when stream_options.include_usage; then data: [DONE]);
 *   non-streaming: accumulated per choice, written as one chat.completion / text_completion body.
 * The shapes follow docs/serving-notes.md §1.3, §1.4, §1.8 byte for byte (tests compare goldens).
 *
 * No h2o and no gRPC here: input is protobuf-c structs, output an eng_buf. Not thread-safe: one
 * transcoder belongs to one request on one event loop.
 */
#ifndef GW_OPENAI_RESPONSE_H
#define GW_OPENAI_RESPONSE_H

#include "core/core.h"          /* defines: eng_buf */
#include "openai_request.h"     /* defines: gw_request, gw_error */
#include "qnext/v1/generator.pb-c.h" /* defines: Qnext__V1__GenerateResponse */

#include <stdbool.h>
#include <stdint.h>

typedef struct gw_xcode gw_xcode;

typedef struct gw_xcode_opts {
    const char *id;        /* "chatcmpl-..." / "cmpl-..." (copied) */
    const char *model;     /* the model name to report (copied) */
    int64_t created;       /* unix seconds */
    bool mirror_reasoning; /* also emit the reasoning text as `reasoning` (newer vLLM name) */
} gw_xcode_opts;

/* Creates a transcoder for `req` (which must outlive it). ENG_ERR_NOMEM on allocation failure. */
eng_status gw_xcode_create(const gw_request *req, const gw_xcode_opts *o, gw_xcode **out);

/* Frees a transcoder. NULL-safe. */
void gw_xcode_destroy(gw_xcode *x);

/* Feeds one message of upstream call `call` (0-based prompt index; always 0 for chat). Streaming:
 * appends zero or more SSE events to `out`. Returns ENG_OK; ENG_ERR_INVALID with `err` set when the
 * message reports FINISH_REASON_ERROR or breaks the protocol (choice out of range, output after the
 * choice's Final); ENG_ERR_NOMEM when out of memory. */
eng_status gw_xcode_feed(gw_xcode *x, size_t call, const Qnext__V1__GenerateResponse *m, eng_buf *out,
                         gw_error *err);

/* To be called once every upstream call has ended with status OK. Streaming: appends the usage
 * chunk (when asked for) and "data: [DONE]". Non-streaming: writes the whole JSON body to `out`.
 * Returns ENG_ERR_INVALID with `err` (a 500) if some choice never received its Final. */
eng_status gw_xcode_finish(gw_xcode *x, eng_buf *out, gw_error *err);

/* Completion tokens reported so far (sum of finished choices), prompt tokens (sum over calls). */
void gw_xcode_usage(const gw_xcode *x, int64_t *prompt_tokens, int64_t *completion_tokens);

/* The finish reason text of the first finished choice ("stop", "length", ...), or NULL. */
const char *gw_xcode_finish_reason(const gw_xcode *x);

/* ==== standalone builders ===================================================================== */

/* Appends {"error":{"message","type","param","code"}} for `e`. */
void gw_error_json(eng_buf *b, const gw_error *e);

/* Appends an SSE error event: data: {"error":{...}}\n\n. */
void gw_sse_error(eng_buf *b, const gw_error *e);

/* One entry of GET /v1/models. */
typedef struct gw_model_card {
    const char *id;
    int64_t created;
    const char *owned_by;
    int32_t max_model_len; /* 0: not reported */
} gw_model_card;

/* Appends a Model object ({"id","object":"model","created","owned_by",...}). */
void gw_model_json(eng_buf *b, const gw_model_card *m);

/* Appends {"object":"list","data":[...]} for n models. */
void gw_models_json(eng_buf *b, const gw_model_card *m, size_t n);

/* The OpenAI finish_reason text for a proto finish reason ("stop", "length", "tool_calls",
 * "abort", "error"); `had_tool_calls` turns "stop" into "tool_calls". */
const char *gw_finish_reason_str(Qnext__V1__FinishReason fr, bool had_tool_calls);

#endif /* GW_OPENAI_RESPONSE_H */
