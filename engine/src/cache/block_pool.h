/* cache/block_pool.h - KV block pool (refcounted fixed-size blocks) and per-sequence block tables.
 *
 * Design note (nano-vllm BlockManager, vLLM BlockPool). The paged KV cache on the device is laid
 * out [layer][block][block_size][kv_heads][head_dim]; this module only hands out block *ids* and
 * never touches memory. A block is shared by refcount: by the sequences of a multi-choice request
 * (eng_block_table_fork), by a sequence and prefix-cache entries (eng_block_table_attach), and
 * returns to the free list when its count drops to zero.
 *
 * A block table maps positions [0, n_tokens) of one sequence to slots: position p lives in block
 * ids[p / block_size] at offset p % block_size (eng_block_table_slot). Invariant:
 * n_blocks == ceil(n_tokens / block_size). Full blocks are never written again, so sharing them is
 * free. The last block may be partial; if it is also shared, appending would overwrite slots
 * another owner may use (or that a cached prefix promises), so eng_block_table_append first copies
 * it to a fresh block ("copy-on-write") and returns that copy as an instruction for the caller to
 * run on the device before the forward pass writes the new tokens.
 *
 * Not thread-safe: the step thread owns the pool, every table and the prefix cache.
 */
#ifndef QN_CACHE_BLOCK_POOL_H
#define QN_CACHE_BLOCK_POOL_H

#include "qnext/status.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct eng_block_pool eng_block_pool;

typedef struct eng_block_pool_stats {
    int n_total;       /* blocks in the pool */
    int n_free;        /* on the free list */
    int n_used;        /* refcount >= 1 */
    int n_shared;      /* refcount >= 2 */
    int peak_used;     /* highest n_used since create */
    uint64_t n_allocs; /* successful eng_block_pool_alloc calls */
    uint64_t n_cow;    /* copy-on-write copies handed out by eng_block_table_append */
} eng_block_pool_stats;

/* Creates a pool of n_blocks blocks of block_size tokens (both >= 1). Blocks are handed out
 * lowest id first from a fresh pool. ENG_ERR_INVALID / ENG_ERR_NOMEM; *out = NULL on failure. */
eng_status eng_block_pool_create(int n_blocks, int block_size, eng_block_pool **out);

/* NULL-safe. Does not check for outstanding references. */
void eng_block_pool_destroy(eng_block_pool *p);

/* Tokens per block, blocks in the pool, blocks on the free list. */
int eng_block_pool_block_size(const eng_block_pool *p);
int eng_block_pool_n_total(const eng_block_pool *p);
int eng_block_pool_n_free(const eng_block_pool *p);

/* True if n blocks can be allocated now. */
bool eng_block_pool_can_alloc(const eng_block_pool *p, int n);

/* True if a new sequence of n_tokens positions (no shared prefix) fits the free blocks now. */
bool eng_block_pool_can_admit(const eng_block_pool *p, int n_tokens);

/* Takes a free block with refcount 1. ENG_ERR_NO_KV_BLOCKS when none is free. */
eng_status eng_block_pool_alloc(eng_block_pool *p, int32_t *id);

/* Adds a reference. ENG_ERR_INTERNAL (a bug in the caller) if id is out of range or free. */
eng_status eng_block_pool_ref(eng_block_pool *p, int32_t id);

/* Drops a reference; the block returns to the free list at zero. ENG_ERR_INTERNAL if id is out of
 * range or already free (double free). */
eng_status eng_block_pool_unref(eng_block_pool *p, int32_t id);

/* Current refcount (0 = free); -1 for an id out of range. */
int eng_block_pool_refcount(const eng_block_pool *p, int32_t id);

/* Fills *out with the counters above (for eng_get_stats and /metrics). */
void eng_block_pool_get_stats(const eng_block_pool *p, eng_block_pool_stats *out);

/* Blocks needed to hold n_tokens: ceil(n_tokens / block_size) (0 for n_tokens <= 0). */
static inline int eng_blocks_for_tokens(int block_size, int n_tokens)
{
    return n_tokens <= 0 ? 0 : (n_tokens + block_size - 1) / block_size;
}

/* New blocks an append of n_new tokens allocates for a table holding n_tokens positions in
 * n_blocks blocks, when its last block is shared (last_shared): the growth plus one block for the
 * copy-on-write of a shared partial last block. The scheduler uses this same formula. */
static inline int eng_blocks_needed(int block_size, int n_tokens, int n_blocks, bool last_shared, int n_new)
{
    if (n_new <= 0) return 0;
    int grow = eng_blocks_for_tokens(block_size, n_tokens + n_new) - n_blocks;
    int cow = last_shared && n_tokens % block_size != 0 ? 1 : 0;
    return (grow > 0 ? grow : 0) + cow;
}

/* ==== block tables ============================================================================ */

/* One sequence's blocks. Caller-allocated; _init/_free. */
typedef struct eng_block_table {
    int32_t *ids; /* (n_blocks) block ids in position order */
    int n_blocks;
    int n_tokens; /* positions [0, n_tokens) have a slot */
    int _cap;     /* allocated entries of ids */
} eng_block_table;

/* A device copy the caller must run before the forward: copy the first n_tokens slots of block
 * src into block dst (all layers, K and V). */
typedef struct eng_block_copy {
    int32_t src, dst;
    int n_tokens;
} eng_block_copy;

/* Makes an empty table (no blocks, nothing allocated). */
void eng_block_table_init(eng_block_table *t);

/* Drops the table's reference on each block and resets it to empty (keeps nothing allocated).
 * NULL-safe for t. */
void eng_block_table_free(eng_block_table *t, eng_block_pool *p);

/* True if the last block is partial and shared (the next append copies it). */
bool eng_block_table_last_shared(const eng_block_table *t, const eng_block_pool *p);

/* Blocks eng_block_table_append(t, n_new) would allocate (eng_blocks_needed on this table). */
int eng_block_table_blocks_needed(const eng_block_table *t, const eng_block_pool *p, int n_new);

/* Blocks that would return to the free list if the table were freed now (refcount 1). */
int eng_block_table_n_freeable(const eng_block_table *t, const eng_block_pool *p);

/* Reserves slots for n_new more tokens (n_new >= 0): copy-on-write of a shared partial last block
 * first, then new blocks as needed. On copy-on-write *copied is true and *copy says what the
 * device must copy (both may be NULL only when the caller knows no copy can happen). All or
 * nothing: ENG_ERR_NO_KV_BLOCKS (or ENG_ERR_NOMEM) leaves the table and pool unchanged. */
eng_status eng_block_table_append(eng_block_table *t, eng_block_pool *p, int n_new, eng_block_copy *copy,
                                  bool *copied);

/* Makes an empty table share n_tokens positions held in `ids` (ceil(n_tokens / block_size) blocks,
 * e.g. a prefix-cache hit): takes one reference per block. ENG_ERR_INVALID if t is not empty or an
 * id is free/out of range (nothing changes then), ENG_ERR_NOMEM. */
eng_status eng_block_table_attach(eng_block_table *t, eng_block_pool *p, const int32_t *ids, int n_tokens);

/* Makes empty table dst share all of src's blocks (a new choice of the same prompt). Same errors
 * as eng_block_table_attach. */
eng_status eng_block_table_fork(const eng_block_table *src, eng_block_table *dst, eng_block_pool *p);

/* The flat KV slot of position pos (< t->n_tokens): block id * block_size + pos % block_size. */
static inline int64_t eng_block_table_slot(const eng_block_table *t, int block_size, int pos)
{
    return (int64_t)t->ids[pos / block_size] * block_size + pos % block_size;
}

#endif /* QN_CACHE_BLOCK_POOL_H */
