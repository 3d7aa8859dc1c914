/* cache/prefix_cache.c - prefix entries (tokens, pinned KV blocks, state snapshot) with a chained
 * hash index, a sorted set of entry lengths, LRU eviction in a byte budget (see prefix_cache.h).
 *
 * Structures: a chained hash table keyed by (prefix hash, length); a doubly linked LRU list (head
 * = most recent); `lens`, the sorted distinct entry lengths with multiplicities, which a lookup
 * walks longest first; `pins`, per pool block the number of entries pinning it, to count each
 * shared block's bytes once.
 */
#include "cache/prefix_cache.h"

#include "core/core.h" /* eng_malloc, eng_calloc, eng_realloc */

#include <string.h>

#define HASH_SEED 0x6a09e667f3bcc908ull /* arbitrary non-zero start value */

typedef struct entry {
    uint64_t hash;
    int n_tokens;
    int n_blocks;
    int32_t *tokens; /* (n_tokens) */
    int32_t *blocks; /* (n_blocks) */
    uint64_t snapshot;
    size_t snapshot_bytes;
    size_t bytes; /* own bytes: snapshot + tokens + blocks + overhead */
    struct entry *hnext;
    struct entry *prev, *next; /* LRU: prev toward the head (most recent) */
} entry;

typedef struct len_count {
    int len;
    int count;
} len_count;

struct eng_prefix_cache {
    eng_prefix_cache_config cfg;
    eng_block_pool *pool;
    entry **buckets;  /* (n_buckets) chains */
    size_t n_buckets; /* power of two */
    entry *head, *tail;
    int n_entries;
    len_count *lens; /* (n_lens) ascending by len */
    int n_lens, cap_lens;
    uint64_t *scratch; /* (cap_lens) hashes at each length during a lookup */
    int32_t *pins;     /* (pool blocks) entries pinning each block */
    int n_pinned;      /* blocks with pins > 0 */
    size_t entry_bytes;
    uint64_t generation;
    eng_prefix_cache_stats st;
};

/* ==== hashing ================================================================================= */

uint64_t eng_prefix_hash_default(uint64_t h, int32_t token)
{
    uint64_t z = h + 0x9E3779B97F4A7C15ull * ((uint64_t)(uint32_t)token + 1);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static size_t bucket_of(const eng_prefix_cache *c, uint64_t hash, int n)
{
    uint64_t z = hash ^ ((uint64_t)(uint32_t)n * 0xD6E8FEB86659FD93ull);
    z ^= z >> 32;
    return (size_t)(z & (c->n_buckets - 1));
}

static uint64_t hash_tokens(const eng_prefix_cache *c, const int32_t *t, int n)
{
    uint64_t h = HASH_SEED;
    for (int i = 0; i < n; i++) h = c->cfg.hash(h, t[i]);
    return h;
}

static entry *find_exact(const eng_prefix_cache *c, uint64_t hash, const int32_t *tokens, int n)
{
    for (entry *e = c->buckets[bucket_of(c, hash, n)]; e; e = e->hnext)
        if (e->n_tokens == n && e->hash == hash && memcmp(e->tokens, tokens, (size_t)n * sizeof *tokens) == 0)
            return e;
    return NULL;
}

/* ==== LRU and bookkeeping ===================================================================== */

static void lru_unlink(eng_prefix_cache *c, entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        c->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        c->tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_push_head(eng_prefix_cache *c, entry *e)
{
    e->prev = NULL;
    e->next = c->head;
    if (c->head) c->head->prev = e;
    c->head = e;
    if (!c->tail) c->tail = e;
}

static size_t bytes_used(const eng_prefix_cache *c)
{
    return c->entry_bytes + (size_t)c->n_pinned * c->cfg.kv_bytes_per_block;
}

/* Index of len in lens, or the insertion point (negative - 1) when absent. */
static int lens_find(const eng_prefix_cache *c, int len)
{
    int lo = 0, hi = c->n_lens;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (c->lens[mid].len < len)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < c->n_lens && c->lens[lo].len == len ? lo : -lo - 1;
}

/* Makes room for one more distinct length (lens + scratch). */
static bool lens_reserve(eng_prefix_cache *c)
{
    if (c->n_lens < c->cap_lens) return true;
    int cap = c->cap_lens ? c->cap_lens * 2 : 16;
    len_count *l = eng_realloc(c->lens, (size_t)cap * sizeof *l);
    if (!l) return false;
    c->lens = l;
    uint64_t *s = eng_realloc(c->scratch, (size_t)cap * sizeof *s);
    if (!s) return false; /* lens grew but cap_lens did not: harmless */
    c->scratch = s;
    c->cap_lens = cap;
    return true;
}

static void lens_add(eng_prefix_cache *c, int len) /* room reserved by the caller */
{
    int i = lens_find(c, len);
    if (i >= 0) {
        c->lens[i].count++;
        return;
    }
    i = -i - 1;
    memmove(&c->lens[i + 1], &c->lens[i], (size_t)(c->n_lens - i) * sizeof *c->lens);
    c->lens[i] = (len_count){len, 1};
    c->n_lens++;
}

static void lens_remove(eng_prefix_cache *c, int len)
{
    int i = lens_find(c, len);
    if (i < 0) return;
    if (--c->lens[i].count > 0) return;
    memmove(&c->lens[i], &c->lens[i + 1], (size_t)(c->n_lens - i - 1) * sizeof *c->lens);
    c->n_lens--;
}

static bool buckets_grow(eng_prefix_cache *c)
{
    size_t nb = c->n_buckets * 2;
    entry **b = eng_calloc(nb, sizeof *b);
    if (!b) return false;
    size_t old_n = c->n_buckets;
    entry **old = c->buckets;
    c->buckets = b;
    c->n_buckets = nb;
    for (size_t i = 0; i < old_n; i++) {
        entry *e = old[i];
        while (e) {
            entry *nx = e->hnext;
            size_t k = bucket_of(c, e->hash, e->n_tokens);
            e->hnext = b[k];
            b[k] = e;
            e = nx;
        }
    }
    eng_free(old);
    return true;
}

static void entry_free_mem(entry *e)
{
    if (!e) return;
    eng_free(e->tokens);
    eng_free(e->blocks);
    eng_free(e);
}

/* Unlinks e everywhere, releases its blocks and snapshot, frees it. */
static void evict(eng_prefix_cache *c, entry *e)
{
    entry **pp = &c->buckets[bucket_of(c, e->hash, e->n_tokens)];
    while (*pp != e) pp = &(*pp)->hnext;
    *pp = e->hnext;
    lru_unlink(c, e);
    lens_remove(c, e->n_tokens);
    for (int i = 0; i < e->n_blocks; i++) {
        if (--c->pins[e->blocks[i]] == 0) c->n_pinned--;
        eng_block_pool_unref(c->pool, e->blocks[i]);
    }
    if (c->cfg.free_snapshot) c->cfg.free_snapshot(c->cfg.free_ctx, e->snapshot);
    c->entry_bytes -= e->bytes;
    c->n_entries--;
    c->st.n_evictions++;
    c->generation++;
    entry_free_mem(e);
}

/* ==== lifecycle =============================================================================== */

eng_status eng_prefix_cache_create(const eng_prefix_cache_config *cfg, eng_block_pool *pool,
                                   eng_prefix_cache **out)
{
    eng_prefix_cache *c = NULL;
    *out = NULL;
    if (!cfg || !pool || cfg->budget_bytes == 0)
        return eng_err_set(ENG_ERR_INVALID,
                           "prefix cache: need a config with budget_bytes > 0 and a block pool");
    c = eng_calloc(1, sizeof *c);
    if (!c) goto fail;
    c->cfg = *cfg;
    if (!c->cfg.hash) c->cfg.hash = eng_prefix_hash_default;
    c->pool = pool;
    c->n_buckets = 64;
    c->buckets = eng_calloc(c->n_buckets, sizeof *c->buckets);
    c->pins = eng_calloc((size_t)eng_block_pool_n_total(pool), sizeof *c->pins);
    if (!c->buckets || !c->pins) goto fail;
    c->st.budget_bytes = cfg->budget_bytes;
    *out = c;
    return ENG_OK;
fail:
    eng_prefix_cache_destroy(c);
    return eng_err_set(ENG_ERR_NOMEM, "prefix cache: out of memory");
}

void eng_prefix_cache_destroy(eng_prefix_cache *c)
{
    if (!c) return;
    if (c->buckets) eng_prefix_cache_clear(c);
    eng_free(c->buckets);
    eng_free(c->lens);
    eng_free(c->scratch);
    eng_free(c->pins);
    eng_free(c);
}

void eng_prefix_cache_clear(eng_prefix_cache *c)
{
    while (c->tail) evict(c, c->tail);
}

/* ==== insert ================================================================================== */

eng_status eng_prefix_cache_insert(eng_prefix_cache *c, const int32_t *tokens, int n_tokens,
                                   const int32_t *blocks, uint64_t snapshot, size_t snapshot_bytes,
                                   eng_prefix_insert_result *result)
{
    eng_status rc = ENG_OK;
    entry *e = NULL;
    eng_prefix_insert_result res = ENG_PREFIX_INSERTED;
    int bs = eng_block_pool_block_size(c->pool);
    int n_blocks = eng_blocks_for_tokens(bs, n_tokens);

    if (n_tokens < 1 || !tokens || !blocks) {
        rc = eng_err_set(ENG_ERR_INVALID, "prefix cache: insert needs >= 1 token and its blocks");
        goto drop;
    }
    for (int i = 0; i < n_blocks; i++)
        if (eng_block_pool_refcount(c->pool, blocks[i]) < 1) {
            rc = eng_err_set(ENG_ERR_INVALID, "prefix cache: block %d is not in use", (int)blocks[i]);
            goto drop;
        }

    uint64_t h = hash_tokens(c, tokens, n_tokens);
    entry *dup = find_exact(c, h, tokens, n_tokens);
    if (dup) {
        lru_unlink(c, dup);
        lru_push_head(c, dup);
        c->st.n_duplicates++;
        res = ENG_PREFIX_DUPLICATE;
        goto drop;
    }

    size_t own = sizeof(entry) + (size_t)n_tokens * sizeof(int32_t) + (size_t)n_blocks * sizeof(int32_t);
    size_t alone = own, kv;
    if (!eng_add_ok(alone, snapshot_bytes, &alone) ||
        !eng_mul_ok((size_t)n_blocks, c->cfg.kv_bytes_per_block, &kv) || !eng_add_ok(alone, kv, &alone) ||
        alone > c->cfg.budget_bytes) {
        c->st.n_too_large++;
        res = ENG_PREFIX_TOO_LARGE;
        goto drop;
    }

    /* all allocations first, so a failure changes nothing */
    e = eng_calloc(1, sizeof *e);
    if (!e) goto nomem;
    e->tokens = eng_malloc((size_t)n_tokens * sizeof *e->tokens);
    e->blocks = eng_malloc((size_t)n_blocks * sizeof *e->blocks);
    if (!e->tokens || !e->blocks || !lens_reserve(c)) goto nomem;
    if ((size_t)c->n_entries + 1 > c->n_buckets && !buckets_grow(c)) goto nomem;

    memcpy(e->tokens, tokens, (size_t)n_tokens * sizeof *tokens);
    memcpy(e->blocks, blocks, (size_t)n_blocks * sizeof *blocks);
    e->hash = h;
    e->n_tokens = n_tokens;
    e->n_blocks = n_blocks;
    e->snapshot = snapshot;
    e->snapshot_bytes = snapshot_bytes;
    e->bytes = own + snapshot_bytes;
    for (int i = 0; i < n_blocks; i++) {
        eng_block_pool_ref(c->pool, blocks[i]);
        if (c->pins[blocks[i]]++ == 0) c->n_pinned++;
    }
    size_t k = bucket_of(c, h, n_tokens);
    e->hnext = c->buckets[k];
    c->buckets[k] = e;
    lru_push_head(c, e);
    lens_add(c, n_tokens);
    c->entry_bytes += e->bytes;
    c->n_entries++;
    c->st.n_inserts++;
    c->generation++;
    while (bytes_used(c) > c->cfg.budget_bytes && c->tail != e) evict(c, c->tail);
    if (result) *result = ENG_PREFIX_INSERTED;
    return ENG_OK;

nomem:
    entry_free_mem(e);
    rc = eng_err_set(ENG_ERR_NOMEM, "prefix cache: out of memory");
drop:
    if (c->cfg.free_snapshot) c->cfg.free_snapshot(c->cfg.free_ctx, snapshot);
    if (result) *result = res;
    return rc;
}

/* ==== lookup ================================================================================== */

bool eng_prefix_cache_contains(eng_prefix_cache *c, const int32_t *tokens, int n_tokens)
{
    if (n_tokens < 1 || !tokens || lens_find(c, n_tokens) < 0) return false;
    return find_exact(c, hash_tokens(c, tokens, n_tokens), tokens, n_tokens) != NULL;
}

bool eng_prefix_cache_lookup(eng_prefix_cache *c, const int32_t *tokens, int n_tokens, int max_len,
                             eng_prefix_hit *hit)
{
    memset(hit, 0, sizeof *hit);
    int lim = n_tokens < max_len ? n_tokens : max_len;
    if (lim < 1 || !tokens || c->n_lens == 0) return false;

    /* lengths <= lim: lens[0, m) */
    int m = lens_find(c, lim);
    m = m >= 0 ? m + 1 : -m - 1;
    if (m == 0) return false;

    /* one pass over the prompt, recording the hash at each cached length */
    uint64_t h = HASH_SEED;
    int j = 0;
    for (int i = 0; i < lim && j < m; i++) {
        h = c->cfg.hash(h, tokens[i]);
        if (i + 1 == c->lens[j].len) c->scratch[j++] = h;
    }
    for (j = m - 1; j >= 0; j--) {
        entry *e = find_exact(c, c->scratch[j], tokens, c->lens[j].len);
        if (e) {
            hit->n_tokens = e->n_tokens;
            hit->blocks = e->blocks;
            hit->n_blocks = e->n_blocks;
            hit->snapshot = e->snapshot;
            hit->snapshot_bytes = e->snapshot_bytes;
            hit->_entry = e;
            return true;
        }
    }
    return false;
}

void eng_prefix_cache_record(eng_prefix_cache *c, const eng_prefix_hit *hit, int n_query_tokens)
{
    c->st.n_queries++;
    if (n_query_tokens > 0) c->st.query_tokens += (uint64_t)n_query_tokens;
    if (!hit || !hit->_entry || hit->n_tokens <= 0) return;
    entry *e = (entry *)hit->_entry;
    c->st.n_hits++;
    c->st.hit_tokens += (uint64_t)hit->n_tokens;
    lru_unlink(c, e);
    lru_push_head(c, e);
}

/* ==== eviction ================================================================================ */

bool eng_prefix_cache_evict_lru(eng_prefix_cache *c)
{
    if (!c->tail) return false;
    evict(c, c->tail);
    return true;
}

int eng_prefix_cache_reclaim(eng_prefix_cache *c, int min_free_blocks)
{
    int n = 0;
    bool progress = true;
    /* repeat: evicting one entry can make an older entry's shared blocks exclusive */
    while (progress && eng_block_pool_n_free(c->pool) < min_free_blocks) {
        progress = false;
        entry *e = c->tail;
        while (e && eng_block_pool_n_free(c->pool) < min_free_blocks) {
            entry *newer = e->prev;
            bool frees = false;
            for (int i = 0; i < e->n_blocks && !frees; i++)
                frees = eng_block_pool_refcount(c->pool, e->blocks[i]) == 1;
            if (frees) {
                evict(c, e);
                n++;
                progress = true;
            }
            e = newer;
        }
    }
    return n;
}

uint64_t eng_prefix_cache_generation(const eng_prefix_cache *c)
{
    return c->generation;
}

void eng_prefix_cache_get_stats(const eng_prefix_cache *c, eng_prefix_cache_stats *out)
{
    *out = c->st;
    out->bytes_used = bytes_used(c);
    out->budget_bytes = c->cfg.budget_bytes;
    out->n_entries = c->n_entries;
    out->n_blocks_pinned = c->n_pinned;
}
