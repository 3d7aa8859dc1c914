/* text/parse_reasoning.c - streaming <think> ... </think> splitter (rules in qnext/chat.h).
 *
 * Why these rules: the Qwen templates write a thought as "<think>\n" + reasoning + "\n</think>\n\n"
 * + content (and strip '\n' from both ends of each when they render history), so the exact inverse
 * drops one '\n' after <think>, one before </think> and up to two after it. vLLM's deepseek_r1 and
 * qwen3 parsers drop only the tags (their reasoning keeps the '\n' before </think> and the content
 * starts with "\n\n"); Qwen's model card strips every leading and trailing '\n' of both parts
 * (`.strip("\n")`). Ours sits between: the template's own separators go, anything else the model
 * wrote stays, so rendering the parsed turn back through the template reproduces the output.
 *
 * State machine over bytes (tags are ASCII, so a UTF-8 character split across pieces passes
 * through untouched). Between feeds it holds at most a proper prefix of "<think>" (START) or of
 * "\n</think>" (THINK): 8 bytes.
 */
#include "qnext/chat.h"

#include "core/core.h"  /* eng_buf */
#include "text/parse.h" /* eng_deltas_add_text */

#include <string.h>

typedef enum {
    S_START,       /* at the very start: "<think>" may come */
    S_AFTER_OPEN,  /* right after "<think>": one '\n' is dropped */
    S_THINK,       /* in the thought */
    S_AFTER_CLOSE, /* right after "</think>": up to two '\n' are dropped */
    S_CONTENT,     /* everything else is content */
} rstate;

struct eng_reasoning_parser {
    eng_reasoning_start start;
    rstate state;
    int nl_dropped;
    bool finished;
    eng_buf work; /* held bytes + the new piece */
    size_t held;  /* bytes of `work` kept from the previous feed */
};

static const char OPEN[] = "<think>";       /* 7 */
static const char CLOSE[] = "</think>";     /* 8 */
static const char NLCLOSE[] = "\n</think>"; /* 9 */

eng_status eng_reasoning_parser_create(eng_reasoning_start start, eng_reasoning_parser **out)
{
    *out = NULL;
    if ((unsigned)start > ENG_REASONING_MAY_OPEN)
        return eng_err_set(ENG_ERR_INVALID, "reasoning parser: unknown start mode %d", (int)start);
    eng_reasoning_parser *p = eng_calloc(1, sizeof *p);
    if (!p) return eng_err_set(ENG_ERR_NOMEM, "out of memory creating the reasoning parser");
    p->start = start;
    p->state = start == ENG_REASONING_NONE ? S_CONTENT : S_START;
    eng_buf_init(&p->work);
    *out = p;
    return ENG_OK;
}

void eng_reasoning_parser_destroy(eng_reasoning_parser *p)
{
    if (!p) return;
    eng_buf_free(&p->work);
    eng_free(p);
}

bool eng_reasoning_parser_done(const eng_reasoning_parser *p)
{
    return p->state == S_AFTER_CLOSE || p->state == S_CONTENT;
}

/* Length of the longest suffix of s[0..n) that could still grow into "\n</think>" / "</think>". */
static size_t close_prefix_len(const char *s, size_t n)
{
    for (size_t k = n < 8 ? n : 8; k > 0; k--) {
        const char *suf = s + n - k;
        if (memcmp(suf, NLCLOSE, k) == 0) return k;        /* k <= 8 < 9: proper prefix */
        if (k < 8 && memcmp(suf, CLOSE, k) == 0) return k; /* proper prefix of "</think>" */
    }
    return 0;
}

/* Runs the state machine over w[0..n); returns how many trailing bytes to hold. */
static size_t run(eng_reasoning_parser *p, const char *w, size_t n, eng_deltas *out)
{
    size_t i = 0;
    bool ok = true;
    while (i < n && ok) {
        switch (p->state) {
        case S_START: {
            size_t m = n - i < 7 ? n - i : 7;
            if (memcmp(w + i, OPEN, m) == 0) {
                if (m < 7) return n - i; /* could still be "<think>" */
                i += 7;
                p->state = S_AFTER_OPEN;
            } else {
                p->state = p->start == ENG_REASONING_IN_THOUGHT ? S_THINK : S_CONTENT;
            }
            break;
        }
        case S_AFTER_OPEN:
            if (w[i] == '\n') i++;
            p->state = S_THINK;
            break;
        case S_THINK: {
            const char *c = memmem(w + i, n - i, CLOSE, 8);
            if (c) {
                size_t at = (size_t)(c - w), end = at;
                if (end > i && w[end - 1] == '\n') end--;
                ok = eng_deltas_add_text(out, ENG_DELTA_REASONING, w + i, end - i, false);
                i = at + 8;
                p->state = S_AFTER_CLOSE;
                p->nl_dropped = 0;
            } else {
                size_t hold = close_prefix_len(w + i, n - i);
                ok = eng_deltas_add_text(out, ENG_DELTA_REASONING, w + i, n - i - hold, false);
                return ok ? hold : 0;
            }
            break;
        }
        case S_AFTER_CLOSE:
            if (w[i] == '\n' && p->nl_dropped < 2) {
                i++;
                p->nl_dropped++;
            } else {
                p->state = S_CONTENT;
            }
            break;
        case S_CONTENT:
            ok = eng_deltas_add_text(out, ENG_DELTA_CONTENT, w + i, n - i, false);
            i = n;
            break;
        }
    }
    return 0;
}

eng_status eng_reasoning_parser_feed(eng_reasoning_parser *p, const char *text, size_t len, eng_deltas *out)
{
    if (p->finished) return eng_err_set(ENG_ERR_INVALID, "reasoning parser: feed after finish");
    if (len == 0) return ENG_OK;
    const char *w = text;
    size_t n = len;
    if (p->held) { /* only then do we copy: hold + piece */
        if (!eng_buf_append(&p->work, text, len))
            return eng_err_set(ENG_ERR_NOMEM, "out of memory in reasoning parser");
        w = p->work.data;
        n = p->work.len;
    }
    size_t hold = run(p, w, n, out);
    if (out->_oom) return eng_err_set(ENG_ERR_NOMEM, "out of memory in reasoning parser");
    /* keep the last `hold` bytes */
    if (hold) {
        char tmp[8];
        memcpy(tmp, w + n - hold, hold);
        p->work.len = 0;
        if (!eng_buf_append(&p->work, tmp, hold))
            return eng_err_set(ENG_ERR_NOMEM, "out of memory in reasoning parser");
    } else {
        p->work.len = 0;
    }
    p->held = hold;
    return ENG_OK;
}

eng_status eng_reasoning_parser_finish(eng_reasoning_parser *p, eng_deltas *out)
{
    if (p->finished) return ENG_OK;
    p->finished = true;
    if (p->held) {
        eng_delta_kind k = ENG_DELTA_CONTENT;
        if (p->state == S_THINK || (p->state == S_START && p->start == ENG_REASONING_IN_THOUGHT))
            k = ENG_DELTA_REASONING;
        if (!eng_deltas_add_text(out, k, p->work.data, p->held, false))
            return eng_err_set(ENG_ERR_NOMEM, "out of memory in reasoning parser");
        p->held = 0;
        p->work.len = 0;
    }
    return ENG_OK;
}
