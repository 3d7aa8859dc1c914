/* cache/block_pool.c - refcounted KV block ids, a LIFO free list, and block tables with
 * copy-on-write (see block_pool.h). All operations are O(1) per block touched.
 */
#include "cache/block_pool.h"

#include "core/core.h" /* eng_malloc, eng_calloc, eng_realloc */

#include <string.h>

struct eng_block_pool {
    int n_blocks;
    int block_size;
    int32_t *refs;     /* (n_blocks) refcount per block, 0 = free */
    int32_t *free_ids; /* (n_blocks) stack of free ids; top at n_free - 1 */
    int n_free;
    int n_shared; /* blocks with refcount >= 2 */
    int peak_used;
    uint64_t n_allocs, n_cow;
};

/* ==== pool ==================================================================================== */

eng_status eng_block_pool_create(int n_blocks, int block_size, eng_block_pool **out)
{
    eng_block_pool *p = NULL;
    *out = NULL;
    if (n_blocks < 1 || block_size < 1)
        return eng_err_set(ENG_ERR_INVALID, "block pool: need n_blocks >= 1 and block_size >= 1 (got %d, %d)",
                           n_blocks, block_size);
    p = eng_calloc(1, sizeof *p);
    if (!p) goto fail;
    p->n_blocks = n_blocks;
    p->block_size = block_size;
    p->refs = eng_calloc((size_t)n_blocks, sizeof *p->refs);
    p->free_ids = eng_malloc((size_t)n_blocks * sizeof *p->free_ids);
    if (!p->refs || !p->free_ids) goto fail;
    for (int i = 0; i < n_blocks; i++) p->free_ids[i] = n_blocks - 1 - i; /* pop gives 0, 1, 2, ... */
    p->n_free = n_blocks;
    *out = p;
    return ENG_OK;
fail:
    eng_block_pool_destroy(p);
    return eng_err_set(ENG_ERR_NOMEM, "block pool: out of memory for %d blocks", n_blocks);
}

void eng_block_pool_destroy(eng_block_pool *p)
{
    if (!p) return;
    eng_free(p->refs);
    eng_free(p->free_ids);
    eng_free(p);
}

int eng_block_pool_block_size(const eng_block_pool *p)
{
    return p->block_size;
}

int eng_block_pool_n_total(const eng_block_pool *p)
{
    return p->n_blocks;
}

int eng_block_pool_n_free(const eng_block_pool *p)
{
    return p->n_free;
}

bool eng_block_pool_can_alloc(const eng_block_pool *p, int n)
{
    return n <= p->n_free;
}

bool eng_block_pool_can_admit(const eng_block_pool *p, int n_tokens)
{
    return eng_blocks_for_tokens(p->block_size, n_tokens) <= p->n_free;
}

eng_status eng_block_pool_alloc(eng_block_pool *p, int32_t *id)
{
    if (p->n_free == 0)
        return eng_err_set(ENG_ERR_NO_KV_BLOCKS, "block pool: all %d blocks are in use", p->n_blocks);
    int32_t b = p->free_ids[--p->n_free];
    p->refs[b] = 1;
    p->n_allocs++;
    int used = p->n_blocks - p->n_free;
    if (used > p->peak_used) p->peak_used = used;
    *id = b;
    return ENG_OK;
}

static bool valid_used(const eng_block_pool *p, int32_t id)
{
    return id >= 0 && id < p->n_blocks && p->refs[id] > 0;
}

eng_status eng_block_pool_ref(eng_block_pool *p, int32_t id)
{
    if (!valid_used(p, id))
        return eng_err_set(ENG_ERR_INTERNAL, "block pool: ref of free or invalid block %d", (int)id);
    if (++p->refs[id] == 2) p->n_shared++;
    return ENG_OK;
}

eng_status eng_block_pool_unref(eng_block_pool *p, int32_t id)
{
    if (!valid_used(p, id))
        return eng_err_set(ENG_ERR_INTERNAL, "block pool: unref of free or invalid block %d", (int)id);
    if (p->refs[id]-- == 2) p->n_shared--;
    if (p->refs[id] == 0) p->free_ids[p->n_free++] = id;
    return ENG_OK;
}

int eng_block_pool_refcount(const eng_block_pool *p, int32_t id)
{
    return id >= 0 && id < p->n_blocks ? p->refs[id] : -1;
}

void eng_block_pool_get_stats(const eng_block_pool *p, eng_block_pool_stats *out)
{
    out->n_total = p->n_blocks;
    out->n_free = p->n_free;
    out->n_used = p->n_blocks - p->n_free;
    out->n_shared = p->n_shared;
    out->peak_used = p->peak_used;
    out->n_allocs = p->n_allocs;
    out->n_cow = p->n_cow;
}

/* ==== block tables ============================================================================ */

void eng_block_table_init(eng_block_table *t)
{
    memset(t, 0, sizeof *t);
}

void eng_block_table_free(eng_block_table *t, eng_block_pool *p)
{
    if (!t) return;
    for (int i = 0; i < t->n_blocks; i++) eng_block_pool_unref(p, t->ids[i]);
    eng_free(t->ids);
    eng_block_table_init(t);
}

bool eng_block_table_last_shared(const eng_block_table *t, const eng_block_pool *p)
{
    return t->n_blocks > 0 && t->n_tokens % p->block_size != 0 && p->refs[t->ids[t->n_blocks - 1]] > 1;
}

int eng_block_table_blocks_needed(const eng_block_table *t, const eng_block_pool *p, int n_new)
{
    return eng_blocks_needed(p->block_size, t->n_tokens, t->n_blocks, eng_block_table_last_shared(t, p),
                             n_new);
}

int eng_block_table_n_freeable(const eng_block_table *t, const eng_block_pool *p)
{
    int n = 0;
    for (int i = 0; i < t->n_blocks; i++) n += p->refs[t->ids[i]] == 1;
    return n;
}

static bool table_reserve(eng_block_table *t, int n)
{
    if (n <= t->_cap) return true;
    int cap = t->_cap ? t->_cap : 8;
    while (cap < n) cap *= 2;
    int32_t *ids = eng_realloc(t->ids, (size_t)cap * sizeof *ids);
    if (!ids) return false;
    t->ids = ids;
    t->_cap = cap;
    return true;
}

eng_status eng_block_table_append(eng_block_table *t, eng_block_pool *p, int n_new, eng_block_copy *copy,
                                  bool *copied)
{
    if (copied) *copied = false;
    if (n_new < 0 || t->n_tokens > INT32_MAX - n_new)
        return eng_err_set(ENG_ERR_INVALID, "block table: bad append of %d tokens", n_new);
    if (n_new == 0) return ENG_OK;
    bool cow = eng_block_table_last_shared(t, p);
    if (cow && (!copy || !copied))
        return eng_err_set(ENG_ERR_INVALID,
                           "block table: the append needs a copy-on-write but no copy output was given");
    int need = eng_block_table_blocks_needed(t, p, n_new);
    if (!eng_block_pool_can_alloc(p, need))
        return eng_err_set(ENG_ERR_NO_KV_BLOCKS, "block table: %d blocks needed, %d free", need, p->n_free);
    int total = eng_blocks_for_tokens(p->block_size, t->n_tokens + n_new);
    if (!table_reserve(t, total)) return eng_err_set(ENG_ERR_NOMEM, "block table: out of memory");

    int32_t b = -1;
    if (cow) {
        int32_t old = t->ids[t->n_blocks - 1];
        eng_block_pool_alloc(p, &b); /* cannot fail: checked above */
        *copy = (eng_block_copy){old, b, t->n_tokens % p->block_size};
        *copied = true;
        t->ids[t->n_blocks - 1] = b;
        eng_block_pool_unref(p, old); /* shared: stays allocated for its other owners */
        p->n_cow++;
    }
    while (t->n_blocks < total) {
        eng_block_pool_alloc(p, &b);
        t->ids[t->n_blocks++] = b;
    }
    t->n_tokens += n_new;
    return ENG_OK;
}

eng_status eng_block_table_attach(eng_block_table *t, eng_block_pool *p, const int32_t *ids, int n_tokens)
{
    if (t->n_blocks || t->n_tokens)
        return eng_err_set(ENG_ERR_INVALID, "block table: attach needs an empty table");
    if (n_tokens < 0 || (n_tokens > 0 && !ids))
        return eng_err_set(ENG_ERR_INVALID, "block table: bad attach of %d tokens", n_tokens);
    int n = eng_blocks_for_tokens(p->block_size, n_tokens);
    for (int i = 0; i < n; i++)
        if (!valid_used(p, ids[i]))
            return eng_err_set(ENG_ERR_INVALID, "block table: attach of free or invalid block %d",
                               (int)ids[i]);
    if (!table_reserve(t, n)) return eng_err_set(ENG_ERR_NOMEM, "block table: out of memory");
    for (int i = 0; i < n; i++) {
        eng_block_pool_ref(p, ids[i]);
        t->ids[i] = ids[i];
    }
    t->n_blocks = n;
    t->n_tokens = n_tokens;
    return ENG_OK;
}

eng_status eng_block_table_fork(const eng_block_table *src, eng_block_table *dst, eng_block_pool *p)
{
    return eng_block_table_attach(dst, p, src->ids, src->n_tokens);
}
