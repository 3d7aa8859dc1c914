/* grpc_service/convert.h - qnext.v1 protobuf-c messages <-> engine structs, with validation.
 *
 * Requests: gsvc_gen_req_init checks a GenerateRequest against the contract in generator.proto
 * (ranges, sizes, JSON shapes, roles) and maps it onto an eng_request. The eng_request points into
 * the protobuf message and into storage owned by gsvc_gen_req, so the message must outlive it.
 * Every violation is ENG_ERR_INVALID with a detail (eng_err_last) that names the field, which the
 * service returns as INVALID_ARGUMENT. The engine validates what needs the model (token ids against
 * the vocabulary, prompt length against the context, template rendering).
 *
 * Responses: gsvc_resp_build fills a GenerateResponse from a queued stream item (stream.h), pointing
 * into the item (no copies); gsvc_resp_free releases the small scratch arrays it needed.
 */
#ifndef GSVC_CONVERT_H
#define GSVC_CONVERT_H

#include "qnext/eng.h"       /* defines: eng_request, eng_finish_reason, eng_status */
#include "qnext/tokenizer.h" /* defines: eng_tokenizer_token_bytes */
#include "qnext/v1/generator.pb-c.h"
#include "stream.h"    /* defines: gsvc_item */

#include <stdbool.h>

/* Contract limits checked here (the engine may have tighter ones). */
#define GSVC_MAX_CHOICES 128
#define GSVC_MAX_LOGPROBS 20
#define GSVC_MAX_STOP_STRINGS 16
#define GSVC_MAX_STOP_STRING_BYTES 1024
#define GSVC_MAX_REQUEST_ID_BYTES 256

/* ==== requests ================================================================================ */

typedef struct gsvc_gen_req {
    eng_request req;     /* ready for eng_submit */
    int n_choices;       /* req.sampling.n */
    bool skip_text;      /* OutputOptions.skip_text */
    char *messages_json; /* owned: built from ChatInput.messages, or NULL */
    char *tools_json;    /* owned: "[tool, ...]", or NULL */
    const char **stop;   /* owned array of pointers into the message */
    eng_logit_bias *bias;/* owned */
} gsvc_gen_req;

/* Validates m and fills g (see the file comment). On failure g is safe to gsvc_gen_req_free. */
eng_status gsvc_gen_req_init(gsvc_gen_req *g, const Qnext__V1__GenerateRequest *m);

/* Frees g's storage. NULL-safe, idempotent. */
void gsvc_gen_req_free(gsvc_gen_req *g);

/* Validates a ChatInput and renders it for the engine: *messages_json (always: from `messages` as an
 * OpenAI messages array, or a validated copy of `messages_json`) and *tools_json ("[...]" or NULL
 * when there are no tools). Both owned by the caller (gsvc_free). `what` prefixes error details. */
eng_status gsvc_chat_to_json(const Qnext__V1__ChatInput *c, const char *what, char **messages_json, char **tools_json);

/* ==== responses =============================================================================== */

typedef struct gsvc_resp {
    Qnext__V1__GenerateResponse msg; /* pack this */
    Qnext__V1__Delta delta;
    Qnext__V1__Final final;
    Qnext__V1__Usage usage;
    Qnext__V1__Timings timings;
    Qnext__V1__ToolCallDelta *tools, **tool_ptrs;
    Qnext__V1__TokenLogprob *lps, **lp_ptrs;
    Qnext__V1__TopLogprob *tops, **top_ptrs;
} gsvc_resp;

/* Fills r->msg from `it` for request `request_id`; r points into it (keep it alive and unchanged
 * until packed). With a tokenizer, logprob entries carry their tokens' bytes (pointing into the
 * tokenizer). ENG_ERR_NOMEM (r is then safe to free). */
eng_status gsvc_resp_build(gsvc_resp *r, const gsvc_item *it, const char *request_id, const eng_tokenizer *tok);

/* Frees r's scratch arrays. NULL-safe. */
void gsvc_resp_free(gsvc_resp *r);

/* Engine finish reason -> qnext.v1.FinishReason. */
Qnext__V1__FinishReason gsvc_finish_to_pb(eng_finish_reason f);

/* Engine status -> grpc_status_code (as int): INVALID/UNSUPPORTED/FORMAT/NOT_FOUND ->
 * INVALID_ARGUMENT, QUEUE_FULL/NO_KV_BLOCKS/NOMEM -> RESOURCE_EXHAUSTED, CANCELLED -> CANCELLED,
 * TIMEOUT -> DEADLINE_EXCEEDED, everything else INTERNAL. */
int gsvc_status_to_grpc(eng_status s);

#endif /* GSVC_CONVERT_H */
