/* text/tokenizer_impl.h - the eng_tokenizer struct and the helpers shared by tokenizer.c (load,
 * lookups, encode), tokenizer_bpe.c (the merge loop) and detok.c (decode, streaming).
 *
 * Data layout (all owned by the tokenizer, immutable after load except the two caches,
 * `self_state` and `wcache`, which are only touched through atomics):
 *   entries[id]      token string and raw bytes, as offsets into str_pool / bytes_pool
 *   flags[id]        QN_TOK_* bits
 *   vocab_str        open-addressing map: model-vocabulary string -> id
 *   vocab_bytes      open-addressing map: model-vocabulary raw bytes -> id (BPE fast path)
 *   added_str        open-addressing map: added-token content (as in the file) -> index in added[]
 *   merges           open-addressing map: (left id, right id) -> rank; merge_id[rank] = merged id
 *   self_state[id]   lazily learned "BPE of this token's bytes is this token alone" (atomic)
 *   wcache           word cache: piece bytes -> ids, lock-free (per-slot seqlock made of atomics)
 */
#ifndef QN_TEXT_TOKENIZER_IMPL_H
#define QN_TEXT_TOKENIZER_IMPL_H

#include "qnext/tokenizer.h" /* defines: eng_tokenizer API */
#include "text/pretok.h"     /* defines: qn_nfc_scratch */

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Largest token id accepted from a tokenizer.json (bounds every per-id array). */
#define QN_TOK_MAX_ID (1 << 24)

enum {
    QN_TOK_PRESENT = 1, /* the id names a token */
    QN_TOK_MODEL = 2,   /* in model.vocab */
    QN_TOK_ADDED = 4,   /* an added token (its content overrides a model string with the same id) */
    QN_TOK_SPECIAL = 8, /* an added token flagged special */
};

/* self_state values */
enum { QN_SELF_UNKNOWN = 0, QN_SELF_YES = 1, QN_SELF_NO = 2 };

typedef struct qn_tok_entry {
    uint32_t str_off, str_len;     /* token string (NUL-terminated in str_pool) */
    uint32_t bytes_off, bytes_len; /* raw bytes in bytes_pool */
} qn_tok_entry;

typedef struct qn_added_token {
    int32_t id;
    uint32_t content_off, content_len; /* content as written in the file, in pat_pool */
    uint32_t pat_off, pat_len;         /* what is matched, in pat_pool: the content, or NFC(content) if
                                        * normalized (HF also reports this form from id_to_token) */
    bool special, normalized, lstrip, rstrip, single_word;
} qn_added_token;

/* The added tokens matched against one kind of text (raw or normalized), bucketed by first byte
 * and, within a bucket, longest first (so the first hit at a position is the longest). */
typedef struct qn_added_set {
    uint32_t *order; /* (n) indexes into tok->added */
    uint32_t n;
    uint32_t first[257]; /* order[first[b] .. first[b+1]) start with byte b */
} qn_added_set;

typedef struct qn_merge_slot { /* 12 bytes: the 151k-merge table is 3 MB */
    uint32_t a, b;             /* left and right id; a == UINT32_MAX: empty */
    int32_t rank;
} qn_merge_slot;

/* Word cache: direct-mapped, QN_WC_SLOTS slots of 16 atomic words (128 bytes):
 *   w[0] sequence (odd while a writer is inside), w[1] hash << 32 | len << 8 | n_ids,
 *   w[2..7] key bytes (<= QN_WC_KEY), w[8..15] ids, two per word (<= QN_WC_IDS).
 * Readers never block and never see a torn entry: they re-check w[0] after copying. */
#define QN_WC_SLOTS 8192
#define QN_WC_KEY 48
#define QN_WC_IDS 16
typedef struct qn_wc_slot {
    _Atomic uint64_t w[16];
} qn_wc_slot;

typedef struct qn_map_slot {
    int32_t id;    /* -1: empty */
    uint32_t hash; /* low 32 bits of the key's hash */
} qn_map_slot;

typedef struct qn_id_map { /* open addressing, linear probing, indexed by the hash's high bits */
    qn_map_slot *slots;
    uint32_t mask;
} qn_id_map;

struct eng_tokenizer {
    int32_t n_vocab;             /* 1 + largest id */
    qn_tok_entry *entries;       /* (n_vocab) */
    uint8_t *flags;              /* (n_vocab) QN_TOK_* */
    _Atomic uint8_t *self_state; /* (n_vocab) QN_SELF_* */
    char *str_pool;
    uint8_t *bytes_pool;
    uint8_t *pat_pool;

    qn_id_map vocab_str, vocab_bytes, added_str;
    qn_merge_slot *merges; /* (merge_mask + 1) */
    uint32_t merge_mask;
    size_t n_merges;      /* distinct pairs */
    int32_t *merge_id;    /* (number of merge entries) merged token of each rank */
    qn_wc_slot *wcache;   /* (QN_WC_SLOTS) */
    int32_t byte_id[256]; /* token of each single byte */

    qn_added_token *added; /* (n_added) */
    uint32_t n_added;
    qn_added_set raw_set, norm_set;

    bool nfc;           /* normalizer is NFC */
    bool ignore_merges; /* model.ignore_merges */
};

/* ==== hashing and maps ======================================================================== */

static inline uint64_t qn_hash_bytes(const void *data, size_t n)
{
    const uint8_t *p = data;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ ((uint64_t)n * 0xFF51AFD7ED558CCDull);
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        h = (h ^ v) * 0xBF58476D1CE4E5B9ull;
        h ^= h >> 29;
        p += 8;
        n -= 8;
    }
    uint64_t v = 0;
    memcpy(&v, p, n);
    h = (h ^ v) * 0x94D049BB133111EBull;
    h ^= h >> 31;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 32;
    return h;
}

static inline uint32_t qn_merge_hash(uint32_t a, uint32_t b)
{
    uint64_t key = ((uint64_t)a << 32 | b) * 0x9E3779B97F4A7C15ull;
    return (uint32_t)(key >> 32);
}

/* Rank of the merge of the pair (a, b), or INT32_MAX if there is none. */
static inline int32_t qn_merge_rank(const eng_tokenizer *t, int32_t a, int32_t b)
{
    uint32_t i = qn_merge_hash((uint32_t)a, (uint32_t)b) & t->merge_mask;
    for (;;) {
        const qn_merge_slot *s = &t->merges[i];
        if (s->a == (uint32_t)a && s->b == (uint32_t)b) return s->rank;
        if (s->a == UINT32_MAX) return INT32_MAX;
        i = (i + 1) & t->merge_mask;
    }
}

/* Model-vocabulary token whose raw bytes are s[0..n) (h = qn_hash_bytes(s, n)), or -1. */
static inline int32_t qn_vocab_bytes_find(const eng_tokenizer *t, const uint8_t *s, size_t n, uint64_t h)
{
    uint32_t h32 = (uint32_t)h, i = (uint32_t)(h >> 32) & t->vocab_bytes.mask;
    for (;;) {
        const qn_map_slot *sl = &t->vocab_bytes.slots[i];
        int32_t id = sl->id;
        if (id < 0) return -1;
        if (sl->hash == h32) {
            const qn_tok_entry *e = &t->entries[id];
            if (e->bytes_len == n && memcmp(t->bytes_pool + e->bytes_off, s, n) == 0) return id;
        }
        i = (i + 1) & t->vocab_bytes.mask;
    }
}

/* ==== id output =============================================================================== */

typedef struct qn_ids {
    int32_t *v;
    size_t n, cap;
} qn_ids;

bool qn_ids_grow(qn_ids *o, size_t extra);

static inline bool qn_ids_push(qn_ids *o, int32_t id)
{
    if (o->n == o->cap && !qn_ids_grow(o, 1)) return false;
    o->v[o->n++] = id;
    return true;
}

/* ==== BPE (tokenizer_bpe.c) =================================================================== */

typedef struct qn_bpe_scratch { /* per call, reused across pieces */
    int32_t *buf;
    size_t cap;
} qn_bpe_scratch;

void qn_bpe_scratch_free(qn_bpe_scratch *sc);

/* Appends the BPE ids of one pre-tokenized piece s[0..n) (n >= 1) to out. ENG_OK or
 * ENG_ERR_NOMEM. Thread-safe (self_state is updated with relaxed atomics). */
eng_status qn_bpe_piece(const eng_tokenizer *t, const uint8_t *s, size_t n, qn_ids *out, qn_bpe_scratch *sc);

/* ==== UTF-8 repair (detok.c) ================================================================== */

/* Appends s[0..n) to *dst (growing it with eng_realloc; dst, len and cap describe the buffer),
 * replacing each maximal invalid subsequence by U+FFFD like Rust's String::from_utf8_lossy.
 * If keep_tail is true, a truncated but so far valid sequence at the very end is not emitted;
 * its length is returned in *tail (else it becomes U+FFFD and *tail = 0). False on OOM. */
bool qn_utf8_lossy_append(const uint8_t *s, size_t n, bool keep_tail, char **dst, size_t *len, size_t *cap,
                          size_t *tail);

#endif /* QN_TEXT_TOKENIZER_IMPL_H */
