/* model/cache.h - the caches a forward pass runs against, owned outside the forward:
 *
 *   a paged KV pool for the full-attention layers: K and V, each
 *       [n_full_layers][n_blocks][block_size][n_kv_heads][head_dim] float32,
 *       K stored after k_norm + RoPE, V raw; a sequence's position p lives in its block table's
 *       block p / block_size at offset p % block_size;
 *   a recurrent-state slot pool for the Gated DeltaNet layers, per slot:
 *       conv [n_gdn_layers][conv_k - 1][conv_dim] float32  the last conv_k-1 pre-conv inputs
 *       ssm  [n_gdn_layers][n_v_heads][dk][dv]    float32  the delta-rule state
 *
 * Block ids and slot numbers are plain integers: the block manager, scheduler and prefix cache
 * (engine/src/cache, engine/src/sched) decide who uses what; this module only holds the memory
 * (backend buffers) and copies it. All functions are for the thread that runs the forward.
 *
 * Tensor parallelism: a cache made from a model loaded with tp_world N holds every rank's pools
 * (rank r: the KV of its KV heads and the GDN state of its heads, on its backend). Block ids and
 * slots mean the same on every rank, and each operation below applies to all ranks. Byte counts
 * are totals over the ranks; a saved slot is the ranks' states one after the other (rank 0 first,
 * each laid out as conv then ssm) - opaque to the caller, valid only for a model of the same world.
 */
#ifndef QN_CACHE_H
#define QN_CACHE_H

#include "model/model.h"

typedef struct qn_cache_params {
    int n_slots;    /* recurrent-state slots (concurrent sequences + snapshots), >= 1 */
    int n_blocks;   /* KV blocks, >= 1 */
    int block_size; /* positions per block; <= 0: 16 */
} qn_cache_params;

/* Allocates both pools on the model's backend, NOT zeroed (nothing reads cache memory a forward
 * has not written: a sequence at position 0 ignores its slot's old state, and attention reads only
 * positions already written; cache.c has the details). ENG_ERR_NOMEM (detail gives the bytes asked
 * for) or ENG_ERR_INVALID. The model must outlive the cache.
 * Test hook: with the environment variable QNEXT_TEST_POISON_CACHE set, new pools are filled with
 * NaN instead, so a test shows any read of unwritten cache memory. */
eng_status qn_cache_create(const qn_model *m, const qn_cache_params *p, qn_cache **out);
void qn_cache_destroy(qn_cache *c); /* NULL-safe */

int qn_cache_n_slots(const qn_cache *c);
int qn_cache_n_blocks(const qn_cache *c);
int qn_cache_block_size(const qn_cache *c);
/* Bytes of one slot's state (conv + ssm), one KV block (all layers, K and V), and the whole cache
 * (summed over tensor-parallel ranks). */
size_t qn_cache_slot_bytes(const qn_cache *c);
size_t qn_cache_block_bytes(const qn_cache *c);
size_t qn_cache_bytes(const qn_cache *c);

/* Zeroes a slot (not needed before a pos-0 forward, which ignores the old state). */
eng_status qn_cache_slot_reset(qn_cache *c, int slot);
/* Copies slot src to dst (fork a sequence, take or restore a prefix snapshot). */
eng_status qn_cache_slot_copy(qn_cache *c, int dst, int src);
/* Copies a slot's state out to / in from host memory of qn_cache_slot_bytes() bytes, laid out as
 * conv then ssm (as above; per rank, ranks in order, with tensor parallelism). Restore fails with
 * ENG_ERR_INVALID if n != slot bytes. */
eng_status qn_cache_slot_save(const qn_cache *c, int slot, void *dst, size_t cap);
eng_status qn_cache_slot_restore(qn_cache *c, int slot, const void *src, size_t n);
/* Copies KV block src to dst in every full-attention layer (copy-on-write of a shared partial
 * block). */
eng_status qn_cache_block_copy(qn_cache *c, int dst, int src);

/* For the forward: the pools as the ops see them (rank 0's with tensor parallelism). */
void qn_cache_views(const qn_cache *c, qn_kv_view *kv, qn_state_view *st);

#endif /* QN_CACHE_H */
