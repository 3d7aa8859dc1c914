/* model/cache.c - the paged KV pool and the recurrent-state slot pool (see cache.h). Both are
 * backend buffers; this file only sizes, zeroes and copies them.
 *
 * Tensor parallelism: the handle made from a rank-0 model holds rank 0's pools and the caches of
 * ranks 1..world-1 (each its heads' KV and GDN state, on its own backend). Every operation is
 * validated once on the handle, then run on all ranks through the model's executor, each rank on
 * its own thread (where a GPU backend has its device current).
 */
#include "model/cache.h"
#include "model/qwen3next.h"

#include <math.h>
#include <stdlib.h>

struct qn_cache {
    eng_backend *be;
    int n_slots, n_blocks, block_size;
    qn_kv_view kv;
    qn_state_view st;
    size_t conv_slot, ssm_slot; /* floats per slot */
    size_t kv_block_layer;      /* floats of one block in one layer (K or V) */
    /* tensor parallelism (handle of rank 0 only) */
    int world;                  /* 1, or the model's world size */
    qn_cache **ranks;           /* [world] when world > 1; ranks[0] is this handle */
    eng_tp_group *exec;         /* the model's executor (not owned) */
};

static bool mul3(size_t a, size_t b, size_t c, size_t *out)
{
    size_t t;
    return eng_mul_ok(a, b, &t) && eng_mul_ok(t, c, out);
}

/* Test hook (QNEXT_TEST_POISON_CACHE set): fills a new pool with quiet NaNs, so any read of cache
 * memory no forward wrote shows up as NaN logits. */
static void poison(eng_backend *be, float *d, size_t n)
{
    enum { CHUNK = 1 << 16 };
    float *h = eng_malloc(CHUNK * sizeof *h);
    if (!h) return;
    for (size_t i = 0; i < CHUNK; i++) h[i] = NAN;
    for (size_t i = 0; i < n; i += CHUNK) be->copy_h2d(be->ctx, d + i, h, (n - i < CHUNK ? n - i : CHUNK) * sizeof *h);
    be->synchronize(be->ctx);
    eng_free(h);
}

static eng_status create_local(const qn_model *m, const qn_cache_params *p, qn_cache **out)
{
    *out = NULL;
    const qn_dims *d = &m->d;
    qn_cache *c = eng_calloc(1, sizeof *c);
    if (!c) return eng_err_set(ENG_ERR_NOMEM, "cache: out of memory");
    eng_status st = ENG_OK;
    c->world = 1;
    c->be = m->be;
    c->n_slots = p->n_slots;
    c->n_blocks = p->n_blocks;
    c->block_size = p->block_size > 0 ? p->block_size : 16;
    c->kv = (qn_kv_view){NULL, NULL, d->n_full, c->n_blocks, c->block_size, d->nkv, d->dh};
    c->st = (qn_state_view){NULL, NULL, c->n_slots, d->n_lin, d->conv_dim, d->conv_k, d->hv, d->dk, d->dv};
    size_t kv_floats = 0, conv_floats = 0, ssm_floats = 0;
    bool ok = mul3((size_t)c->block_size, (size_t)d->nkv, (size_t)d->dh, &c->kv_block_layer) &&
              mul3(c->kv_block_layer, (size_t)d->n_full, (size_t)c->n_blocks, &kv_floats) &&
              mul3((size_t)d->n_lin, (size_t)(d->conv_k > 0 ? d->conv_k - 1 : 0), (size_t)d->conv_dim, &c->conv_slot) &&
              mul3((size_t)d->n_lin, (size_t)d->hv, (size_t)d->dk * (size_t)d->dv, &c->ssm_slot) &&
              eng_mul_ok(c->conv_slot, (size_t)c->n_slots, &conv_floats) &&
              eng_mul_ok(c->ssm_slot, (size_t)c->n_slots, &ssm_floats) && kv_floats < SIZE_MAX / 8 &&
              conv_floats < SIZE_MAX / 8 && ssm_floats < SIZE_MAX / 8;
    if (!ok) {
        st = eng_err_set(ENG_ERR_INVALID, "cache: %d blocks of %d positions and %d slots overflow the address space",
                         c->n_blocks, c->block_size, c->n_slots);
        goto fail;
    }
    struct {
        float **p;
        size_t n;
        const char *what;
    } bufs[] = {{&c->kv.k, kv_floats, "KV pool (K)"},
                {&c->kv.v, kv_floats, "KV pool (V)"},
                {&c->st.conv, conv_floats, "conv state pool"},
                {&c->st.ssm, ssm_floats, "SSM state pool"}};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        if (!bufs[i].n) continue;
        *bufs[i].p = c->be->alloc(c->be->ctx, bufs[i].n * sizeof(float));
        if (!*bufs[i].p) {
            char b[32];
            st = eng_err_set(ENG_ERR_NOMEM, "cache: cannot allocate the %s (%s)", bufs[i].what,
                             eng_fmt_bytes((double)bufs[i].n * 4, b, sizeof b));
            goto fail;
        }
        /* Not zeroed, on purpose: zeroing a multi-GB pool touches every page (seconds of page
         * faults on the CPU at start, memory the OS would otherwise hand out lazily), and nothing
         * needs it, because no op reads cache memory that a forward has not written:
         *   - KV: a forward writes positions pos..pos+n_new-1 (kv_write) before its attention reads
         *     [0, position of the row]; positions below pos were written by earlier steps of the
         *     same sequence, or are prefix-cache blocks that another sequence wrote; attention
         *     never reads past a row's own position (not even masked: CPU cpu_ops_attn.c and CUDA
         *     attn.cu bound their loops by it), and block copies only move floats;
         *   - GDN state: a sequence at position 0 reads its slot as zeros whatever it holds (the
         *     conv window and the delta-rule state, on every backend: backend.h qn_seq_desc.pos),
         *     and later positions read what its earlier steps or a restored snapshot wrote.
         * qn_cache_slot_reset still zeroes a slot on request. test_engine_device runs a model and
         * an engine on pools poisoned with NaN (QNEXT_TEST_POISON_CACHE) to hold this. */
        if (getenv("QNEXT_TEST_POISON_CACHE")) poison(c->be, *bufs[i].p, bufs[i].n);
    }
    *out = c;
    return ENG_OK;
fail:
    qn_cache_destroy(c);
    return st;
}

typedef struct create_job {
    const qn_model *m;
    const qn_cache_params *p;
    qn_cache **ranks;
} create_job;

static eng_status create_rank(void *arg, int rank)
{
    create_job *j = arg;
    return create_local(j->m->tp->ranks[rank], j->p, &j->ranks[rank]);
}

eng_status qn_cache_create(const qn_model *m, const qn_cache_params *p, qn_cache **out)
{
    *out = NULL;
    if (!p || p->n_slots < 1 || p->n_blocks < 1 || p->block_size > (1 << 20))
        return eng_err_set(ENG_ERR_INVALID, "cache: need at least one slot and one block (got %d slots, %d blocks)",
                           p ? p->n_slots : 0, p ? p->n_blocks : 0);
    if (!m->tp) return create_local(m, p, out);
    eng_status st = eng_tp_group_status(m->tp->exec);
    if (st != ENG_OK) return st;
    const int world = m->tp->world;
    qn_cache **ranks = eng_calloc((size_t)world, sizeof *ranks);
    if (!ranks) return eng_err_set(ENG_ERR_NOMEM, "cache: out of memory");
    create_job job = {m, p, ranks};
    st = eng_tp_group_run(m->tp->exec, create_rank, &job);
    if (st != ENG_OK) {
        for (int r = 0; r < world; r++) qn_cache_destroy(ranks[r]);
        eng_free(ranks);
        return st;
    }
    qn_cache *c = ranks[0];
    c->world = world;
    c->ranks = ranks;
    c->exec = m->tp->exec;
    *out = c;
    return ENG_OK;
}

void qn_cache_destroy(qn_cache *c)
{
    if (!c) return;
    if (c->ranks) {
        if (c->exec && !eng_tp_group_quiesce(c->exec)) return; /* a stuck rank may still use its pools */
        for (int r = 1; r < c->world; r++) qn_cache_destroy(c->ranks[r]);
        eng_free(c->ranks);
    }
    c->be->free(c->be->ctx, c->kv.k);
    c->be->free(c->be->ctx, c->kv.v);
    c->be->free(c->be->ctx, c->st.conv);
    c->be->free(c->be->ctx, c->st.ssm);
    eng_free(c);
}

qn_cache *qn_cache_rank(qn_cache *c, int rank)
{
    if (!c->ranks) return rank == 0 ? c : NULL;
    return rank >= 0 && rank < c->world ? c->ranks[rank] : NULL;
}

int qn_cache_tp_world(const qn_cache *c)
{
    return c->world;
}

/* ==== operations on every rank ================================================================ */

typedef enum cache_op { OP_SLOT_RESET, OP_SLOT_COPY, OP_SLOT_SAVE, OP_SLOT_RESTORE, OP_BLOCK_COPY } cache_op;

typedef struct op_job {
    qn_cache *c;
    cache_op op;
    int a, b;           /* slot / block numbers */
    uint8_t *dst;       /* save: host [slot bytes], rank-major */
    const uint8_t *src; /* restore: host [slot bytes], rank-major */
} op_job;

static size_t local_slot_bytes(const qn_cache *c)
{
    return (c->conv_slot + c->ssm_slot) * sizeof(float);
}

static void slot_reset_local(qn_cache *c, int slot);
static void slot_copy_local(qn_cache *c, int dst, int src);
static void slot_save_local(const qn_cache *c, int slot, uint8_t *o);
static void slot_restore_local(qn_cache *c, int slot, const uint8_t *i);
static void block_copy_local(qn_cache *c, int dst, int src);

static eng_status op_rank(void *arg, int rank)
{
    op_job *j = arg;
    qn_cache *c = j->c->ranks[rank];
    size_t off = 0;
    for (int r = 0; r < rank; r++) off += local_slot_bytes(j->c->ranks[r]);
    switch (j->op) {
    case OP_SLOT_RESET: slot_reset_local(c, j->a); break;
    case OP_SLOT_COPY: slot_copy_local(c, j->a, j->b); break;
    case OP_SLOT_SAVE: slot_save_local(c, j->a, j->dst + off); break;
    case OP_SLOT_RESTORE: slot_restore_local(c, j->a, j->src + off); break;
    case OP_BLOCK_COPY: block_copy_local(c, j->a, j->b); break;
    }
    return ENG_OK;
}

/* Runs a validated operation on every rank (world > 1). */
static eng_status run_all(qn_cache *c, cache_op op, int a, int b, uint8_t *dst, const uint8_t *src)
{
    op_job j = {c, op, a, b, dst, src};
    return eng_tp_group_run(c->exec, op_rank, &j);
}

int qn_cache_n_slots(const qn_cache *c)
{
    return c->n_slots;
}

int qn_cache_n_blocks(const qn_cache *c)
{
    return c->n_blocks;
}

int qn_cache_block_size(const qn_cache *c)
{
    return c->block_size;
}

size_t qn_cache_slot_bytes(const qn_cache *c)
{
    if (!c->ranks) return local_slot_bytes(c);
    size_t n = 0;
    for (int r = 0; r < c->world; r++) n += local_slot_bytes(c->ranks[r]);
    return n;
}

size_t qn_cache_block_bytes(const qn_cache *c)
{
    const int world = c->ranks ? c->world : 1;
    size_t n = 0;
    for (int r = 0; r < world; r++) {
        const qn_cache *cr = c->ranks ? c->ranks[r] : c;
        n += 2 * cr->kv_block_layer * (size_t)cr->kv.n_layers * sizeof(float);
    }
    return n;
}

size_t qn_cache_bytes(const qn_cache *c)
{
    return qn_cache_slot_bytes(c) * (size_t)c->n_slots + qn_cache_block_bytes(c) * (size_t)c->n_blocks;
}

static eng_status check_slot(const qn_cache *c, int slot)
{
    if (slot < 0 || slot >= c->n_slots)
        return eng_err_set(ENG_ERR_INVALID, "cache: slot %d out of range [0, %d)", slot, c->n_slots);
    return ENG_OK;
}

static void slot_reset_local(qn_cache *c, int slot)
{
    if (c->conv_slot) c->be->memset0(c->be->ctx, c->st.conv + (size_t)slot * c->conv_slot, c->conv_slot * sizeof(float));
    if (c->ssm_slot) c->be->memset0(c->be->ctx, c->st.ssm + (size_t)slot * c->ssm_slot, c->ssm_slot * sizeof(float));
}

static void slot_copy_local(qn_cache *c, int dst, int src)
{
    if (c->conv_slot)
        c->be->copy_d2d(c->be->ctx, c->st.conv + (size_t)dst * c->conv_slot, c->st.conv + (size_t)src * c->conv_slot,
                        c->conv_slot * sizeof(float));
    if (c->ssm_slot)
        c->be->copy_d2d(c->be->ctx, c->st.ssm + (size_t)dst * c->ssm_slot, c->st.ssm + (size_t)src * c->ssm_slot,
                        c->ssm_slot * sizeof(float));
}

static void slot_save_local(const qn_cache *c, int slot, uint8_t *o)
{
    if (c->conv_slot)
        c->be->copy_d2h(c->be->ctx, o, c->st.conv + (size_t)slot * c->conv_slot, c->conv_slot * sizeof(float));
    if (c->ssm_slot)
        c->be->copy_d2h(c->be->ctx, o + c->conv_slot * sizeof(float), c->st.ssm + (size_t)slot * c->ssm_slot,
                        c->ssm_slot * sizeof(float));
}

static void slot_restore_local(qn_cache *c, int slot, const uint8_t *i)
{
    if (c->conv_slot)
        c->be->copy_h2d(c->be->ctx, c->st.conv + (size_t)slot * c->conv_slot, i, c->conv_slot * sizeof(float));
    if (c->ssm_slot)
        c->be->copy_h2d(c->be->ctx, c->st.ssm + (size_t)slot * c->ssm_slot, i + c->conv_slot * sizeof(float),
                        c->ssm_slot * sizeof(float));
}

static void block_copy_local(qn_cache *c, int dst, int src)
{
    const size_t n = c->kv_block_layer;
    for (int l = 0; l < c->kv.n_layers; l++) {
        const size_t base = (size_t)l * c->n_blocks;
        c->be->copy_d2d(c->be->ctx, c->kv.k + (base + dst) * n, c->kv.k + (base + src) * n, n * sizeof(float));
        c->be->copy_d2d(c->be->ctx, c->kv.v + (base + dst) * n, c->kv.v + (base + src) * n, n * sizeof(float));
    }
}

eng_status qn_cache_slot_reset(qn_cache *c, int slot)
{
    eng_status st = check_slot(c, slot);
    if (st != ENG_OK) return st;
    if (c->ranks) return run_all(c, OP_SLOT_RESET, slot, 0, NULL, NULL);
    slot_reset_local(c, slot);
    return ENG_OK;
}

eng_status qn_cache_slot_copy(qn_cache *c, int dst, int src)
{
    eng_status st;
    if ((st = check_slot(c, dst)) != ENG_OK || (st = check_slot(c, src)) != ENG_OK) return st;
    if (dst == src) return ENG_OK;
    if (c->ranks) return run_all(c, OP_SLOT_COPY, dst, src, NULL, NULL);
    slot_copy_local(c, dst, src);
    return ENG_OK;
}

eng_status qn_cache_slot_save(const qn_cache *c, int slot, void *dst, size_t cap)
{
    eng_status st = check_slot(c, slot);
    if (st != ENG_OK) return st;
    if (cap < qn_cache_slot_bytes(c))
        return eng_err_set(ENG_ERR_INVALID, "cache: slot save needs %zu bytes, got %zu", qn_cache_slot_bytes(c), cap);
    if (c->ranks) return run_all((qn_cache *)c, OP_SLOT_SAVE, slot, 0, dst, NULL);
    slot_save_local(c, slot, dst);
    return ENG_OK;
}

eng_status qn_cache_slot_restore(qn_cache *c, int slot, const void *src, size_t n)
{
    eng_status st = check_slot(c, slot);
    if (st != ENG_OK) return st;
    if (n != qn_cache_slot_bytes(c))
        return eng_err_set(ENG_ERR_INVALID, "cache: slot restore needs exactly %zu bytes, got %zu",
                           qn_cache_slot_bytes(c), n);
    if (c->ranks) return run_all(c, OP_SLOT_RESTORE, slot, 0, NULL, src);
    slot_restore_local(c, slot, src);
    return ENG_OK;
}

eng_status qn_cache_block_copy(qn_cache *c, int dst, int src)
{
    if (dst < 0 || dst >= c->n_blocks || src < 0 || src >= c->n_blocks)
        return eng_err_set(ENG_ERR_INVALID, "cache: block copy %d -> %d out of range [0, %d)", src, dst, c->n_blocks);
    if (dst == src) return ENG_OK;
    if (c->ranks) return run_all(c, OP_BLOCK_COPY, dst, src, NULL, NULL);
    block_copy_local(c, dst, src);
    return ENG_OK;
}

void qn_cache_views(const qn_cache *c, qn_kv_view *kv, qn_state_view *st)
{
    if (kv) *kv = c->kv;
    if (st) *st = c->st;
}
