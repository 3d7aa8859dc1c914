/* grpc_service/stream.h - the send side of one Generate call, without any gRPC: a bounded queue of
 * pending GenerateResponse items that coalesces deltas, plus the state machine that decides what
 * to send next (one send in flight at a time) and when to send the final status.
 *
 * Engine events enter with gsvc_stream_push (any number, at engine speed). The call's owner asks
 * gsvc_stream_next what to send whenever no send is in flight and reports each completion with
 * gsvc_stream_sent. While a send is in flight, new deltas of a choice merge into that choice's one
 * pending Delta item (tokens, text, tool-call fragments and logprobs appended), so a slow reader
 * gets fewer, larger messages instead of an unbounded queue (sysrepo-gnmi SEND_QUEUE_MAX, but
 * merging instead of dropping). Per choice at most one pending Delta and one Final exist, so the
 * queue never holds more than 2 * n_choices items; the bytes in it are capped by `max_backlog`
 * (a reader that falls that far behind is dropped with RESOURCE_EXHAUSTED).
 *
 * Order: per choice, deltas in order and the Final last; choices interleave by first arrival.
 * Not thread-safe: the caller serialises every call on one stream (the per-call mutex).
 */
#ifndef GSVC_STREAM_H
#define GSVC_STREAM_H

#include "qnext/eng.h" /* defines: eng_event, eng_finish_reason, eng_usage, eng_timings */
#include "util.h"      /* defines: gsvc_buf */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One tool-call fragment being accumulated. */
typedef struct gsvc_tool_frag {
    int index;
    bool has_id, has_name;
    gsvc_buf id, name, arguments;
} gsvc_tool_frag;

/* One sampled token's logprob; its alternatives are tops[top_off .. top_off + n_top) of the item. */
typedef struct gsvc_lp {
    int32_t token;
    float logprob;
    size_t top_off, n_top;
} gsvc_lp;

/* One pending GenerateResponse: a Delta or a Final of one choice. Storage is reused between uses. */
typedef struct gsvc_item {
    int choice;
    bool is_final;
    /* delta */
    int32_t *tokens; /* (n_tokens) token ids */
    size_t n_tokens, cap_tokens;
    gsvc_buf text, content, reasoning;
    gsvc_tool_frag *tools;
    size_t n_tools, cap_tools;
    gsvc_lp *lps; /* (n_lps) one per token when logprobs were requested */
    size_t n_lps, cap_lps;
    eng_top_logprob *tops; /* (n_tops) alternatives of all lps, concatenated */
    size_t n_tops, cap_tops;
    /* final */
    eng_finish_reason finish;
    gsvc_buf matched_stop;
    bool has_matched_stop_token;
    int32_t matched_stop_token;
    bool tool_call_parse_error;
    gsvc_buf error_message;
    eng_usage usage;
    eng_timings timings;
    size_t bytes; /* approximate encoded size, for the backlog cap */
} gsvc_item;

typedef enum gsvc_stream_state {
    GSVC_STREAM_OPEN = 0,    /* sending */
    GSVC_STREAM_STATUS_SENT, /* the status went out; nothing more to do */
    GSVC_STREAM_GONE,        /* the client left (cancel, deadline, failed send); nothing more to send */
} gsvc_stream_state;

typedef enum gsvc_stream_act {
    GSVC_ACT_NONE = 0,     /* nothing to send now */
    GSVC_ACT_SEND_MESSAGE, /* send *item (valid until the next call on this stream) */
    GSVC_ACT_SEND_STATUS,  /* send status_code / status_message: the last send */
} gsvc_stream_act;

typedef struct gsvc_stream {
    int n_choices;
    bool skip_text;    /* OutputOptions.skip_text: token ids only */
    size_t max_backlog;
    gsvc_stream_state state;
    bool in_flight;    /* a send is outstanding */
    bool in_flight_status; /* ... and it is the status */
    bool ending;       /* no more items will be queued: send the status once the queue is empty */
    int n_open;        /* choices whose Final has not been queued */
    unsigned char *choice_done; /* (n_choices) Final queued */
    int *pending_delta;         /* (n_choices) ring slot of the choice's pending Delta, or -1 */
    gsvc_item *ring;            /* (cap) */
    size_t cap, head, count;
    size_t backlog;             /* sum of bytes of queued items */
    int status_code;            /* grpc_status_code sent at the end (0 = OK) */
    gsvc_buf status_message;
    uint64_t n_messages_sent;   /* messages handed out by gsvc_stream_next */
} gsvc_stream;

/* Sets up a stream for n_choices (1..128) choices. ENG_ERR_NOMEM / ENG_ERR_INVALID; on failure the
 * stream is left safe to gsvc_stream_free. */
eng_status gsvc_stream_init(gsvc_stream *s, int n_choices, size_t max_backlog, bool skip_text);

/* Frees everything. NULL-safe, idempotent. */
void gsvc_stream_free(gsvc_stream *s);

/* Queues one ENG_EV_TOKENS or ENG_EV_DONE event (copied). After the stream is GONE or ending,
 * events are ignored (ENG_OK). ENG_ERR_INVALID: choice out of range, a delta after the choice's
 * Final, or an ENG_EV_ERROR (use gsvc_stream_error). ENG_ERR_QUEUE_FULL: the backlog would pass
 * max_backlog (the caller aborts the call). ENG_ERR_NOMEM. On any error the stream is unchanged. */
eng_status gsvc_stream_push(gsvc_stream *s, const eng_event *ev);

/* The request failed: queue a Final of FINISH_REASON_ERROR (with `message`) for every open choice,
 * then end with status `code` (a grpc_status_code) and `message`. Queued items are still sent. */
void gsvc_stream_error(gsvc_stream *s, int code, const char *message);

/* End now: drop every queued item and end with status `code` / `message` (after any send that is
 * in flight completes). */
void gsvc_stream_abort(gsvc_stream *s, int code, const char *message);

/* What to send now. Returns GSVC_ACT_NONE while a send is in flight, when nothing is queued and the
 * stream is not ending, and in the STATUS_SENT / GONE states. SEND_MESSAGE / SEND_STATUS mark a
 * send in flight; *item (SEND_MESSAGE) stays valid until the next push/next call. */
gsvc_stream_act gsvc_stream_next(gsvc_stream *s, const gsvc_item **item);

/* The outstanding send completed (ok = false: it failed, the client is gone). */
void gsvc_stream_sent(gsvc_stream *s, bool ok);

/* RECV_CLOSE_ON_SERVER completed; cancelled: the client cancelled, its deadline passed or the
 * connection broke. Nothing more will be sent after a cancel. */
void gsvc_stream_closed(gsvc_stream *s, bool cancelled);

/* True once every choice has its Final queued (or the stream ended otherwise). */
static inline bool gsvc_stream_all_final(const gsvc_stream *s)
{
    return s->n_open == 0;
}

#endif /* GSVC_STREAM_H */
