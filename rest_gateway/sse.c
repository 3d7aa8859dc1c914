/* sse.c - SSE framing (see sse.h). */
#include "sse.h"

#include <string.h>

void gw_sse_event(eng_buf *b, const char *payload, size_t n)
{
    eng_buf_append(b, "data: ", 6);
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        if (payload[i] == '\n') {
            eng_buf_append(b, payload + start, i - start);
            eng_buf_append(b, "\ndata: ", 7);
            start = i + 1;
        }
    }
    eng_buf_append(b, payload + start, n - start);
    eng_buf_append(b, "\n\n", 2);
}

void gw_sse_done(eng_buf *b)
{
    eng_buf_puts(b, "data: [DONE]\n\n");
}

void gw_sse_comment(eng_buf *b, const char *text)
{
    eng_buf_append(b, ": ", 2);
    eng_buf_puts(b, text);
    eng_buf_append(b, "\n\n", 2);
}
