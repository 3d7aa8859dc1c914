/* text/parse_toolcall.c - streaming hermes-style tool-call parser (rules in qnext/chat.h).
 *
 * Model output (Qwen3 / Qwen3-Next, vLLM's `hermes` parser):
 *     <tool_call>
 *     {"name": "get_weather", "arguments": {"city": "Paris"}}
 *     </tool_call>
 * State: TEXT (looking for "<tool_call>", holding at most a 10-byte proper prefix of it) or BLOCK
 * (the block so far is in `buf`, searched for "</tool_call>" from where the last search stopped,
 * so a long block costs linear time overall). A closed block is judged whole with the strict
 * Python-compatible JSON parser (text/pyjson.h): a valid call is emitted, anything else goes out
 * verbatim as content. Output order equals input order, and no byte is dropped or repeated: every
 * input byte ends up in exactly one CONTENT text or one TOOL_CALL raw block.
 */
#include "qnext/chat.h"

#include "core/core.h"   /* eng_buf, eng_now_ns */
#include "text/parse.h"  /* eng_deltas_add_* */
#include "text/pyjson.h" /* pj_parse */

#include <stdatomic.h>
#include <string.h>

#define MAX_BLOCK (16u << 20)

static const char TAG_OPEN[] = "<tool_call>";   /* 11 */
static const char TAG_CLOSE[] = "</tool_call>"; /* 12 */

struct eng_toolcall_parser {
    eng_buf buf; /* TEXT: a held prefix of "<tool_call>"; BLOCK: the block from "<tool_call>" on */
    bool in_block;
    size_t scan; /* BLOCK: search for the closing tag from here */
    int count;
    bool malformed;
    bool finished;
    uint64_t rng; /* splitmix64 state for call ids */
};

static atomic_uint_fast64_t id_counter;

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

eng_status eng_toolcall_parser_create(uint64_t id_seed, eng_toolcall_parser **out)
{
    *out = NULL;
    eng_toolcall_parser *p = eng_calloc(1, sizeof *p);
    if (!p) return eng_err_set(ENG_ERR_NOMEM, "out of memory creating the tool-call parser");
    eng_buf_init(&p->buf);
    if (id_seed == 0) {
        uint64_t c = atomic_fetch_add(&id_counter, 1);
        id_seed = eng_now_ns() ^ (c * 0xD1B54A32D192ED03ull) ^ (uint64_t)(uintptr_t)p;
    }
    p->rng = id_seed;
    *out = p;
    return ENG_OK;
}

void eng_toolcall_parser_destroy(eng_toolcall_parser *p)
{
    if (!p) return;
    eng_buf_free(&p->buf);
    eng_free(p);
}

int eng_toolcall_parser_count(const eng_toolcall_parser *p)
{
    return p->count;
}

bool eng_toolcall_parser_malformed(const eng_toolcall_parser *p)
{
    return p->malformed;
}

static void make_id(eng_toolcall_parser *p, char id[30])
{
    static const char alnum[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    memcpy(id, "call_", 5);
    for (int i = 0; i < 24; i++) id[5 + i] = alnum[splitmix64(&p->rng) % 62];
    id[29] = '\0';
}

/* A complete block "<tool_call>...</tool_call>": emit a call if valid, else content. */
static bool emit_block(eng_toolcall_parser *p, const char *blk, size_t n, eng_deltas *out)
{
    const char *inner = blk + 11;
    size_t inner_len = n - 11 - 12;
    pj_doc *doc = NULL;
    const pj_value *root;
    /* pj_parse reports errors through the thread's error detail; keep the caller's */
    char saved[1024];
    snprintf(saved, sizeof saved, "%s", eng_err_last());
    eng_status st = pj_parse(inner, inner_len, "tool call", &doc, &root);
    if (saved[0])
        eng_err_set(ENG_OK, "%s", saved);
    else
        eng_err_clear();
    bool ok;
    if (st == ENG_ERR_NOMEM) {
        out->_oom = true;
        return false;
    }
    const pj_value *name = st == ENG_OK ? pj_get(root, "name") : NULL;
    const pj_value *args = st == ENG_OK ? pj_get(root, "arguments") : NULL;
    if (st == ENG_OK && root->type == PJ_OBJECT && name && name->type == PJ_STR && name->n > 0 && args) {
        char id[30];
        make_id(p, id);
        ok = eng_deltas_add_call(out, p->count, id, name->s, name->n, blk, n, inner + args->src_off,
                                 args->src_len);
        p->count++;
    } else {
        p->malformed = true;
        ok = eng_deltas_add_text(out, ENG_DELTA_CONTENT, blk, n, true);
    }
    pj_doc_destroy(doc);
    return ok;
}

/* Longest suffix of s[0..n) that is a proper prefix of "<tool_call>". */
static size_t open_prefix_len(const char *s, size_t n)
{
    for (size_t k = n < 10 ? n : 10; k > 0; k--)
        if (memcmp(s + n - k, TAG_OPEN, k) == 0) return k;
    return 0;
}

/* Consumes what it can of buf; keeps the rest (a held prefix or the open block) at its start. */
static bool process(eng_toolcall_parser *p, eng_deltas *out)
{
    char *b = p->buf.data;
    size_t n = p->buf.len, pos = 0;
    bool ok = true;
    while (ok && pos < n) {
        if (!p->in_block) {
            const char *o = memmem(b + pos, n - pos, TAG_OPEN, 11);
            if (o) {
                size_t at = (size_t)(o - b);
                ok = eng_deltas_add_text(out, ENG_DELTA_CONTENT, b + pos, at - pos, false);
                pos = at;
                p->in_block = true;
                p->scan = at + 11;
            } else {
                size_t hold = open_prefix_len(b + pos, n - pos);
                ok = eng_deltas_add_text(out, ENG_DELTA_CONTENT, b + pos, n - pos - hold, false);
                pos = n - hold;
                break;
            }
        } else {
            const char *c = memmem(b + p->scan, n - p->scan, TAG_CLOSE, 12);
            if (c) {
                size_t end = (size_t)(c - b) + 12;
                ok = emit_block(p, b + pos, end - pos, out);
                pos = end;
                p->in_block = false;
            } else {
                size_t resume = n >= 11 ? n - 11 : 0; /* a tag can straddle the end */
                if (resume > p->scan) p->scan = resume;
                if (n - pos > MAX_BLOCK) { /* give up: a runaway block is content */
                    p->malformed = true;
                    ok = eng_deltas_add_text(out, ENG_DELTA_CONTENT, b + pos, n - pos, true);
                    pos = n;
                    p->in_block = false;
                }
                break;
            }
        }
    }
    if (!ok) return false;
    if (pos) {
        memmove(b, b + pos, n - pos);
        p->buf.len = n - pos;
        if (p->in_block) p->scan -= pos;
    }
    return true;
}

eng_status eng_toolcall_parser_feed(eng_toolcall_parser *p, const char *text, size_t len, eng_deltas *out)
{
    if (p->finished) return eng_err_set(ENG_ERR_INVALID, "tool-call parser: feed after finish");
    if (len == 0) return ENG_OK;
    if (!p->in_block && p->buf.len == 0) {
        /* fast path: no held bytes; only copy from the first '<' that could start a tag */
        const char *lt = memchr(text, '<', len);
        size_t head = lt ? (size_t)(lt - text) : len;
        if (!eng_deltas_add_text(out, ENG_DELTA_CONTENT, text, head, false)) goto nomem;
        text += head;
        len -= head;
        if (len == 0) return ENG_OK;
    }
    if (!eng_buf_append(&p->buf, text, len)) goto nomem;
    if (!process(p, out)) goto nomem;
    return ENG_OK;
nomem:
    return eng_err_set(ENG_ERR_NOMEM, "out of memory in tool-call parser");
}

eng_status eng_toolcall_parser_finish(eng_toolcall_parser *p, eng_deltas *out)
{
    if (p->finished) return ENG_OK;
    p->finished = true;
    if (p->buf.len) {
        if (p->in_block) p->malformed = true; /* unterminated block */
        if (!eng_deltas_add_text(out, ENG_DELTA_CONTENT, p->buf.data, p->buf.len, p->in_block))
            return eng_err_set(ENG_ERR_NOMEM, "out of memory in tool-call parser");
        p->buf.len = 0;
        p->in_block = false;
    }
    return ENG_OK;
}
