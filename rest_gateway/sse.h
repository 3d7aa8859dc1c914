/* sse.h - Server-Sent Events framing for the streaming endpoints.
 *
 * Each event is "data: <payload>\n\n"; the stream ends with "data: [DONE]\n\n"; keep-alives are
 * comment lines (": ping\n\n") that SSE clients (the openai SDKs included) skip. Payloads are
 * single-line JSON (our writer never emits raw newlines), so no multi-line "data:" splitting is
 * needed; gw_sse_event still splits on '\n' defensively so any payload stays one event.
 */
#ifndef GW_SSE_H
#define GW_SSE_H

#include "core/core.h" /* defines: eng_buf */

#include <stddef.h>

/* Appends one event carrying payload[0..n). Embedded '\n' start a new "data: " line. */
void gw_sse_event(eng_buf *b, const char *payload, size_t n);

/* Appends the terminating "data: [DONE]\n\n". */
void gw_sse_done(eng_buf *b);

/* Appends a comment line ": <text>\n\n" (heartbeat). `text` must not contain '\n'. */
void gw_sse_comment(eng_buf *b, const char *text);

/* Content-Type for SSE responses. */
#define GW_SSE_CONTENT_TYPE "text/event-stream"

#endif /* GW_SSE_H */
