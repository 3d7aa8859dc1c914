/* text/parse_deltas.c - the eng_deltas list the output parsers append to (qnext/chat.h, parse.h).
 *
 * Items live in `items`; their strings live in one growable arena. Because the arena can move
 * when it grows, each item also keeps its string offsets (_offs, three per item: text, id, raw)
 * and the public pointers are recomputed whenever the arena's address changes.
 */
#include "text/parse.h"

#include "core/core.h" /* eng_malloc, eng_realloc, eng_free */

#include <stdint.h>
#include <string.h>

#define NO_OFF SIZE_MAX

void eng_deltas_init(eng_deltas *d)
{
    memset(d, 0, sizeof *d);
}

void eng_deltas_clear(eng_deltas *d)
{
    d->n = 0;
    d->_arena_len = 0;
    d->_oom = false;
}

void eng_deltas_free(eng_deltas *d)
{
    if (!d) return;
    eng_free(d->items);
    eng_free(d->_arena);
    eng_free(d->_offs);
    eng_deltas_init(d);
}

static void repoint(eng_deltas *d, size_t from)
{
    for (size_t i = from; i < d->n; i++) {
        size_t *o = &d->_offs[3 * i];
        d->items[i].text = o[0] == NO_OFF ? NULL : d->_arena + o[0];
        d->items[i].id = o[1] == NO_OFF ? NULL : d->_arena + o[1];
        d->items[i].raw = o[2] == NO_OFF ? NULL : d->_arena + o[2];
    }
}

/* Makes room for `extra` more arena bytes; re-points every item if the arena moved. */
static bool arena_reserve(eng_deltas *d, size_t extra)
{
    size_t need;
    if (!eng_add_ok(d->_arena_len, extra, &need)) return false;
    if (need <= d->_arena_cap) return true;
    size_t cap = d->_arena_cap ? d->_arena_cap : 256;
    while (cap < need) {
        if (cap > SIZE_MAX / 2) {
            cap = need;
            break;
        }
        cap *= 2;
    }
    char *a = eng_realloc(d->_arena, cap);
    if (!a) return false;
    bool moved = a != d->_arena;
    d->_arena = a;
    d->_arena_cap = cap;
    if (moved) repoint(d, 0);
    return true;
}

/* Copies s[0..n) + NUL into the arena; returns its offset. Caller reserved the room. */
static size_t arena_put(eng_deltas *d, const char *s, size_t n)
{
    size_t off = d->_arena_len;
    if (n) memcpy(d->_arena + off, s, n);
    d->_arena[off + n] = '\0';
    d->_arena_len += n + 1;
    return off;
}

static eng_delta *new_item(eng_deltas *d)
{
    if (d->n == d->_cap) {
        size_t cap = d->_cap ? d->_cap * 2 : 8, b1, b2;
        if (!eng_mul_ok(cap, sizeof *d->items, &b1) || !eng_mul_ok(cap, 3 * sizeof *d->_offs, &b2))
            return NULL;
        eng_delta *it = eng_realloc(d->items, b1);
        if (!it) return NULL;
        d->items = it;
        size_t *of = eng_realloc(d->_offs, b2);
        if (!of) return NULL;
        d->_offs = of;
        d->_cap = cap;
    }
    eng_delta *it = &d->items[d->n];
    memset(it, 0, sizeof *it);
    size_t *o = &d->_offs[3 * d->n];
    o[0] = o[1] = o[2] = NO_OFF;
    d->n++;
    return it;
}

static bool oom(eng_deltas *d)
{
    d->_oom = true;
    return false;
}

bool eng_deltas_add_text(eng_deltas *d, eng_delta_kind kind, const char *s, size_t n, bool malformed)
{
    if (n == 0) return !d->_oom;
    if (d->_oom) return false;
    size_t total;
    if (!eng_add_ok(n, 1, &total) || !arena_reserve(d, total)) return oom(d);
    if (d->n > 0) {
        eng_delta *last = &d->items[d->n - 1];
        size_t off = d->_offs[3 * (d->n - 1)];
        /* merge when the last item is text of this kind and its text ends the arena */
        if (last->kind == kind && off != NO_OFF && off + last->len + 1 == d->_arena_len) {
            d->_arena_len--; /* drop its NUL */
            arena_put(d, s, n);
            last->len += n;
            last->malformed = last->malformed || malformed;
            return true;
        }
    }
    eng_delta *it = new_item(d);
    if (!it) return oom(d);
    it->kind = kind;
    it->len = n;
    it->malformed = malformed;
    d->_offs[3 * (d->n - 1)] = arena_put(d, s, n);
    repoint(d, d->n - 1);
    return true;
}

bool eng_deltas_add_call(eng_deltas *d, int index, const char *id, const char *name, size_t name_len,
                         const char *raw, size_t raw_len, const char *args, size_t args_len)
{
    if (d->_oom) return false;
    size_t id_len = strlen(id), total = 0;
    size_t parts[] = {name_len, id_len, raw_len, args_len};
    for (int i = 0; i < 4; i++)
        if (!eng_add_ok(total, parts[i] + 1, &total)) return oom(d);
    if (!arena_reserve(d, total)) return oom(d);
    eng_delta *it = new_item(d);
    if (!it) return oom(d);
    it->kind = ENG_DELTA_TOOL_CALL;
    it->index = index;
    it->len = name_len;
    it->raw_len = raw_len;
    size_t *o = &d->_offs[3 * (d->n - 1)];
    o[0] = arena_put(d, name, name_len);
    o[1] = arena_put(d, id, id_len);
    o[2] = arena_put(d, raw, raw_len);
    it = new_item(d);
    if (!it) {
        d->n--; /* drop the half-made call */
        return oom(d);
    }
    it->kind = ENG_DELTA_TOOL_ARGS;
    it->index = index;
    it->len = args_len;
    d->_offs[3 * (d->n - 1)] = arena_put(d, args, args_len);
    repoint(d, d->n - 2);
    return true;
}
