/* text/tokenizer_bpe.c - the byte-level BPE merge loop for one pre-tokenized piece.
 *
 * Semantics (HF tokenizers BPE::merge_word with no dropout): start from one symbol per byte (the
 * byte-level alphabet is all in the vocabulary, checked at load), then repeatedly apply the
 * adjacent pair with the lowest merge rank, the leftmost one among equal ranks, until no adjacent
 * pair is a merge. HF keeps a heap ordered by (rank, position); choosing the global minimum
 * (rank, position) every step is the same order.
 *
 * Fast paths, in order:
 *   1. one byte: its byte token;
 *   2. the whole piece is a model-vocabulary token whose BPE is known to be itself (self_state,
 *      learned the first time the token is seen: an atomic per-token flag);
 *   3. the word cache (pieces up to QN_WC_KEY bytes whose BPE was computed before);
 *   4. pieces up to SMALL_MAX bytes: arrays on the stack, linear scan for the minimum rank,
 *      with the ranks of untouched pairs kept between steps;
 *   5. longer pieces: a doubly linked list of symbols plus a binary min-heap of candidate
 *      merges with lazy invalidation (O(n log n)), so a 1 MB word of one letter stays fast.
 * Both caches are bounded, shared by all threads and lock-free: self_state is one atomic byte per
 * token; the word cache is a direct-mapped table whose slots are seqlocks built from atomic words
 * (a reader copies a slot and re-checks its sequence number; a writer that finds the slot busy
 * simply does not cache). Neither can change a result: an entry is used only after its whole key
 * compares equal.
 */
#include "text/tokenizer_impl.h" /* defines: eng_tokenizer, qn_merge_rank, qn_ids, qn_wc_slot */

#include "core/core.h" /* defines: eng_realloc, eng_free */

#include <limits.h>

#define SMALL_MAX 96

bool qn_ids_grow(qn_ids *o, size_t extra)
{
    size_t need;
    if (!eng_add_ok(o->n, extra, &need)) return false;
    if (need <= o->cap) return true;
    size_t cap = o->cap ? o->cap : 64;
    while (cap < need) {
        if (cap > SIZE_MAX / 2 / sizeof(int32_t)) return false;
        cap *= 2;
    }
    int32_t *v = eng_realloc(o->v, cap * sizeof(int32_t));
    if (!v) return false;
    o->v = v;
    o->cap = cap;
    return true;
}

void qn_bpe_scratch_free(qn_bpe_scratch *sc)
{
    eng_free(sc->buf);
    sc->buf = NULL;
    sc->cap = 0;
}

static bool scratch_reserve(qn_bpe_scratch *sc, size_t n_int32)
{
    if (n_int32 <= sc->cap) return true;
    size_t cap = sc->cap ? sc->cap : 1024, bytes;
    while (cap < n_int32) {
        if (cap > SIZE_MAX / 4) return false;
        cap *= 2;
    }
    if (!eng_mul_ok(cap, sizeof(int32_t), &bytes)) return false;
    int32_t *p = eng_realloc(sc->buf, bytes);
    if (!p) return false;
    sc->buf = p;
    sc->cap = cap;
    return true;
}

/* ==== small pieces ============================================================================ */

/* Writes the BPE of s[0..n) (n <= SMALL_MAX) to sym[], returns the symbol count. */
static size_t bpe_small(const eng_tokenizer *t, const uint8_t *s, size_t n, int32_t *sym)
{
    int32_t rank[SMALL_MAX];
    size_t m = n;
    for (size_t i = 0; i < n; i++) sym[i] = t->byte_id[s[i]];
    for (size_t i = 0; i + 1 < m; i++) rank[i] = qn_merge_rank(t, sym[i], sym[i + 1]);
    while (m > 1) {
        size_t best = 0;
        int32_t br = rank[0];
        for (size_t i = 1; i + 1 < m; i++)
            if (rank[i] < br) {
                br = rank[i];
                best = i;
            }
        if (br == INT32_MAX) break;
        sym[best] = t->merge_id[br];
        size_t tail = m - best - 2; /* symbols after best + 1 */
        memmove(&sym[best + 1], &sym[best + 2], tail * sizeof sym[0]);
        memmove(&rank[best + 1], &rank[best + 2], (tail ? tail - 1 : 0) * sizeof rank[0]);
        m--;
        if (best > 0) rank[best - 1] = qn_merge_rank(t, sym[best - 1], sym[best]);
        if (best + 1 < m) rank[best] = qn_merge_rank(t, sym[best], sym[best + 1]);
    }
    return m;
}

/* ==== long pieces ============================================================================= */

typedef struct heap_ent {
    int32_t rank, pos;
} heap_ent;

static inline bool ent_less(const heap_ent *a, const heap_ent *b)
{
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void heap_push(heap_ent *h, size_t *n, heap_ent e)
{
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!ent_less(&e, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = e;
}

static heap_ent heap_pop(heap_ent *h, size_t *n)
{
    heap_ent top = h[0], last = h[--(*n)];
    size_t i = 0, m = *n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= m) break;
        if (c + 1 < m && ent_less(&h[c + 1], &h[c])) c++;
        if (!ent_less(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (m) h[i] = last;
    return top;
}

/* BPE of s[0..n) for any n; appends the ids to out. */
static eng_status bpe_long(const eng_tokenizer *t, const uint8_t *s, size_t n, qn_ids *out,
                           qn_bpe_scratch *sc)
{
    if (n > (size_t)INT32_MAX / 8) /* 256 MiB */
        return eng_err_set(ENG_ERR_INVALID, "encode: a single word of %zu bytes is too long", n);
    /* scratch: sym, prev, next (n each) + heap of up to 3n entries (2 int32 each) */
    size_t need = 3 * n + 6 * n + 16;
    if (!scratch_reserve(sc, need))
        return eng_err_set(ENG_ERR_NOMEM, "encode: out of memory (word of %zu bytes)", n);
    int32_t *sym = sc->buf, *prev = sym + n, *next = prev + n;
    heap_ent *heap = (heap_ent *)(next + n);
    size_t hn = 0;
    for (size_t i = 0; i < n; i++) {
        sym[i] = t->byte_id[s[i]];
        prev[i] = (int32_t)i - 1;
        next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    for (size_t i = 0; i + 1 < n; i++) {
        heap_ent e = {.pos = (int32_t)i, .rank = qn_merge_rank(t, sym[i], sym[i + 1])};
        if (e.rank != INT32_MAX) heap_push(heap, &hn, e);
    }
    while (hn) {
        heap_ent e = heap_pop(heap, &hn);
        int32_t p = e.pos, q;
        if (sym[p] < 0 || (q = next[p]) < 0) continue;
        /* stale if the pair at p changed since (HF compares the merged id; a rank names one pair) */
        if (qn_merge_rank(t, sym[p], sym[q]) != e.rank) continue;
        sym[p] = t->merge_id[e.rank];
        sym[q] = -1;
        next[p] = next[q];
        if (next[q] >= 0) prev[next[q]] = p;
        if (prev[p] >= 0) {
            heap_ent f = {.pos = prev[p], .rank = qn_merge_rank(t, sym[prev[p]], sym[p])};
            if (f.rank != INT32_MAX) heap_push(heap, &hn, f);
        }
        if (next[p] >= 0) {
            heap_ent f = {.pos = p, .rank = qn_merge_rank(t, sym[p], sym[next[p]])};
            if (f.rank != INT32_MAX) heap_push(heap, &hn, f);
        }
    }
    for (int32_t i = 0; i >= 0; i = next[i])
        if (!qn_ids_push(out, sym[i])) return eng_err_set(ENG_ERR_NOMEM, "encode: out of memory");
    return ENG_OK;
}

/* ==== word cache ============================================================================= */

/* Copies the cached ids of s[0..n) (hash h) into ids[]; returns their count, or 0 on a miss. */
static size_t wc_get(const eng_tokenizer *t, uint64_t h, const uint8_t *s, size_t n, int32_t ids[QN_WC_IDS])
{
    qn_wc_slot *sl = &t->wcache[(h >> 20) & (QN_WC_SLOTS - 1)];
    uint64_t seq = atomic_load_explicit(&sl->w[0], memory_order_acquire);
    if (seq & 1) return 0;
    uint64_t meta = atomic_load_explicit(&sl->w[1], memory_order_relaxed);
    size_t m = meta & 0xFF;
    if ((uint32_t)(meta >> 32) != (uint32_t)h || ((meta >> 8) & 0xFF) != n || m == 0 || m > QN_WC_IDS)
        return 0;
    uint64_t key[QN_WC_KEY / 8], val[QN_WC_IDS / 2];
    for (size_t k = 0; k < (n + 7) / 8; k++)
        key[k] = atomic_load_explicit(&sl->w[2 + k], memory_order_relaxed);
    for (size_t k = 0; k < (m + 1) / 2; k++)
        val[k] = atomic_load_explicit(&sl->w[8 + k], memory_order_relaxed);
    atomic_thread_fence(memory_order_acquire);
    if (atomic_load_explicit(&sl->w[0], memory_order_relaxed) != seq) return 0; /* a writer got in */
    if (memcmp(key, s, n) != 0) return 0;
    memcpy(ids, val, m * sizeof ids[0]);
    return m;
}

/* Caches ids[0..m) for s[0..n) unless another thread is writing the slot right now. */
static void wc_put(const eng_tokenizer *t, uint64_t h, const uint8_t *s, size_t n, const int32_t *ids,
                   size_t m)
{
    qn_wc_slot *sl = &t->wcache[(h >> 20) & (QN_WC_SLOTS - 1)];
    uint64_t seq = atomic_load_explicit(&sl->w[0], memory_order_relaxed);
    if ((seq & 1) || !atomic_compare_exchange_strong_explicit(&sl->w[0], &seq, seq + 1, memory_order_relaxed,
                                                              memory_order_relaxed))
        return;
    atomic_thread_fence(memory_order_release);
    uint64_t key[QN_WC_KEY / 8] = {0}, val[QN_WC_IDS / 2] = {0};
    memcpy(key, s, n);
    memcpy(val, ids, m * sizeof ids[0]);
    atomic_store_explicit(&sl->w[1], (uint64_t)(uint32_t)h << 32 | (uint64_t)n << 8 | m,
                          memory_order_relaxed);
    for (size_t k = 0; k < (n + 7) / 8; k++)
        atomic_store_explicit(&sl->w[2 + k], key[k], memory_order_relaxed);
    for (size_t k = 0; k < (m + 1) / 2; k++)
        atomic_store_explicit(&sl->w[8 + k], val[k], memory_order_relaxed);
    atomic_store_explicit(&sl->w[0], seq + 2, memory_order_release);
}

/* ==== entry point ============================================================================= */

eng_status qn_bpe_piece(const eng_tokenizer *t, const uint8_t *s, size_t n, qn_ids *out, qn_bpe_scratch *sc)
{
    if (n == 1) {
        if (!qn_ids_push(out, t->byte_id[s[0]])) return eng_err_set(ENG_ERR_NOMEM, "encode: out of memory");
        return ENG_OK;
    }
    uint64_t h = qn_hash_bytes(s, n);
    int32_t whole = qn_vocab_bytes_find(t, s, n, h);
    uint8_t state = QN_SELF_NO;
    if (whole >= 0) {
        if (t->ignore_merges) {
            if (!qn_ids_push(out, whole)) return eng_err_set(ENG_ERR_NOMEM, "encode: out of memory");
            return ENG_OK;
        }
        state = atomic_load_explicit(&t->self_state[whole], memory_order_relaxed);
        if (state == QN_SELF_YES) {
            if (!qn_ids_push(out, whole)) return eng_err_set(ENG_ERR_NOMEM, "encode: out of memory");
            return ENG_OK;
        }
    }
    int32_t sym[SMALL_MAX];
    size_t m;
    if (n <= QN_WC_KEY && (m = wc_get(t, h, s, n, sym)) > 0) {
        if (!qn_ids_grow(out, m)) return eng_err_set(ENG_ERR_NOMEM, "encode: out of memory");
        memcpy(out->v + out->n, sym, m * sizeof sym[0]);
        out->n += m;
        return ENG_OK;
    }
    size_t before = out->n;
    if (n <= SMALL_MAX) {
        m = bpe_small(t, s, n, sym);
        if (!qn_ids_grow(out, m)) return eng_err_set(ENG_ERR_NOMEM, "encode: out of memory");
        memcpy(out->v + out->n, sym, m * sizeof sym[0]);
        out->n += m;
        if (n <= QN_WC_KEY && m <= QN_WC_IDS && !(whole >= 0 && m == 1 && sym[0] == whole))
            wc_put(t, h, s, n, sym, m);
    } else {
        eng_status st = bpe_long(t, s, n, out, sc);
        if (st != ENG_OK) return st;
    }
    if (whole >= 0 && state == QN_SELF_UNKNOWN) {
        bool self = out->n - before == 1 && out->v[before] == whole;
        atomic_store_explicit(&t->self_state[whole], self ? QN_SELF_YES : QN_SELF_NO, memory_order_relaxed);
    }
    return ENG_OK;
}
