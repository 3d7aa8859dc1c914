/* cache/prefix_cache.h - prefix cache for the hybrid model: KV blocks + recurrent-state snapshot.
 *
 * Design note. Qwen3-Next mixes attention layers (paged KV: any prefix of a cached sequence is
 * reusable block by block) with Gated DeltaNet layers (one fixed-size recurrent state that
 * summarises *all* tokens so far: it cannot be rewound). So a usable hit at length n needs both
 * the KV blocks of positions [0, n) and a snapshot of the recurrent state taken exactly after
 * token n. vLLM's per-block chain hash only answers the first half. Here an entry *is* such a
 * pair: (token ids [0, n), the ceil(n / block_size) KV block ids pinned through the block pool, an
 * opaque snapshot handle and its byte size). The engine takes snapshots at the end of every
 * prompt and every N tokens of long prompts (the scheduler cuts prefill chunks there) and inserts
 * them; the cache never copies state itself.
 *
 * Keys: a chained 64-bit hash over the token ids (h_{i+1} = f(h_i, t_i)) plus the length. A
 * lookup hashes the new prompt once, probes only the lengths that exist in the cache (longest
 * first), and verifies the tokens of a candidate entry with memcmp, so a hash collision can only
 * cost time, never return a wrong prefix (tests inject a constant hash to prove it).
 *
 * Budget: the bytes of all snapshots + stored token ids + per-entry overhead, plus
 * kv_bytes_per_block for each *distinct* pinned block (blocks shared by entries of one
 * conversation count once). Inserting past the budget evicts least-recently-used entries;
 * evicting releases the entry's block references and calls free_snapshot(ctx, handle).
 * eng_prefix_cache_reclaim frees KV blocks for the scheduler by evicting entries that pin blocks
 * nobody else holds.
 *
 * Usage from the step loop (single thread, like the block pool):
 *   lookup(prompt, max_len = n_prompt - 1) -> hint for the scheduler (n_tokens, blocks)
 *   on admission: lookup again (same result while the cache is unchanged, see generation()),
 *   eng_block_table_attach(hit.blocks, hit.n_tokens), restore hit.snapshot into the state slot,
 *   eng_prefix_cache_record(hit, n_prompt) for LRU and the counters.
 *   after a chunk that ends at a snapshot point: if !contains(tokens, n): copy the state,
 *   insert(tokens, n, table.ids, handle, bytes).
 * max_len = n_prompt - 1 keeps at least one token to run, so the step produces logits to sample.
 */
#ifndef QN_CACHE_PREFIX_CACHE_H
#define QN_CACHE_PREFIX_CACHE_H

#include "cache/block_pool.h" /* eng_block_pool */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct eng_prefix_cache eng_prefix_cache;

/* Chain hash step: the hash of tokens [0, i] from the hash of [0, i) and token i. */
typedef uint64_t (*eng_prefix_hash_fn)(uint64_t h, int32_t token);
/* Releases a snapshot the cache owned. */
typedef void (*eng_prefix_free_fn)(void *ctx, uint64_t snapshot);

typedef struct eng_prefix_cache_config {
    size_t budget_bytes;       /* > 0 */
    size_t kv_bytes_per_block; /* device bytes of one KV block (all layers, K and V); 0 = not counted */
    eng_prefix_free_fn free_snapshot; /* may be NULL (nothing to free) */
    void *free_ctx;
    eng_prefix_hash_fn hash; /* NULL: the default 64-bit chain hash (tests inject weak ones) */
} eng_prefix_cache_config;

typedef enum eng_prefix_insert_result {
    ENG_PREFIX_INSERTED = 0,
    ENG_PREFIX_DUPLICATE, /* an entry for exactly these tokens exists (touched; new snapshot freed) */
    ENG_PREFIX_TOO_LARGE, /* alone it exceeds the budget (snapshot freed) */
} eng_prefix_insert_result;

/* A lookup result. Pointers are valid until the next insert/evict/clear/destroy. */
typedef struct eng_prefix_hit {
    int n_tokens;          /* cached prefix length; 0 = miss */
    const int32_t *blocks; /* (n_blocks) KV block ids of positions [0, n_tokens) */
    int n_blocks;
    uint64_t snapshot; /* recurrent state after token n_tokens */
    size_t snapshot_bytes;
    const void *_entry;
} eng_prefix_hit;

typedef struct eng_prefix_cache_stats {
    uint64_t n_queries, n_hits;        /* eng_prefix_cache_record calls, and those with a hit */
    uint64_t query_tokens, hit_tokens; /* prompt tokens looked up / served from the cache */
    uint64_t n_inserts, n_duplicates, n_too_large, n_evictions;
    size_t bytes_used, budget_bytes;
    int n_entries;
    int n_blocks_pinned; /* distinct KV blocks held by entries */
} eng_prefix_cache_stats;

/* Creates an empty cache over `pool` (which must outlive it). ENG_ERR_INVALID / ENG_ERR_NOMEM. */
eng_status eng_prefix_cache_create(const eng_prefix_cache_config *cfg, eng_block_pool *pool,
                                   eng_prefix_cache **out);

/* Evicts everything (block refs released, free_snapshot called) and frees the cache. NULL-safe. */
void eng_prefix_cache_destroy(eng_prefix_cache *c);

/* Adds the entry for tokens[0, n_tokens) (n_tokens >= 1) with its ceil(n_tokens / block_size)
 * KV blocks (each gets one more reference) and snapshot. The cache takes ownership of the
 * snapshot in every case, including errors (free_snapshot is called when it does not keep it).
 * Then evicts LRU entries until the budget holds. *result (may be NULL) says what happened.
 * ENG_ERR_INVALID (bad arguments, a block id not in use), ENG_ERR_NOMEM. */
eng_status eng_prefix_cache_insert(eng_prefix_cache *c, const int32_t *tokens, int n_tokens,
                                   const int32_t *blocks, uint64_t snapshot, size_t snapshot_bytes,
                                   eng_prefix_insert_result *result);

/* True if an entry for exactly tokens[0, n_tokens) exists. Does not touch LRU or counters. */
bool eng_prefix_cache_contains(eng_prefix_cache *c, const int32_t *tokens, int n_tokens);

/* Finds the longest entry whose tokens are a prefix of tokens[0, n_tokens) and whose length is
 * <= max_len. Fills *hit (n_tokens = 0 on a miss) and returns whether it hit. Does not touch LRU
 * or counters (see eng_prefix_cache_record), so it is safe for scheduling hints. */
bool eng_prefix_cache_lookup(eng_prefix_cache *c, const int32_t *tokens, int n_tokens, int max_len,
                             eng_prefix_hit *hit);

/* Counts one prompt of n_query_tokens tokens served with `hit` (a miss counts too) and marks the
 * hit entry most recently used. `hit` must come from a lookup with no mutation since. */
void eng_prefix_cache_record(eng_prefix_cache *c, const eng_prefix_hit *hit, int n_query_tokens);

/* Evicts least-recently-used entries that pin at least one block held by nobody else, until the
 * pool has >= min_free_blocks free blocks or no such entry is left. Returns the number evicted. */
int eng_prefix_cache_reclaim(eng_prefix_cache *c, int min_free_blocks);

/* Evicts the least-recently-used entry; false if the cache is empty. */
bool eng_prefix_cache_evict_lru(eng_prefix_cache *c);

/* Evicts everything. */
void eng_prefix_cache_clear(eng_prefix_cache *c);

/* Changes on every insert and eviction: lookups repeated with the same generation give the same
 * answer, so the step loop may cache per-sequence hints. */
uint64_t eng_prefix_cache_generation(const eng_prefix_cache *c);

/* Fills *out: counters since create, current bytes and entries (for eng_get_stats and /metrics:
 * query_tokens / hit_tokens are vLLM's prefix_cache_queries / prefix_cache_hits). */
void eng_prefix_cache_get_stats(const eng_prefix_cache *c, eng_prefix_cache_stats *out);

/* The default chain hash step (SplitMix64-based). */
uint64_t eng_prefix_hash_default(uint64_t h, int32_t token);

#endif /* QN_CACHE_PREFIX_CACHE_H */
