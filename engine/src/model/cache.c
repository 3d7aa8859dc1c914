/* model/cache.c - the paged KV pool and the recurrent-state slot pool (see cache.h). Both are
 * backend buffers; this file only sizes, zeroes and copies them. */
#include "model/cache.h"
#include "model/qwen3next.h"

struct qn_cache {
    eng_backend *be;
    int n_slots, n_blocks, block_size;
    qn_kv_view kv;
    qn_state_view st;
    size_t conv_slot, ssm_slot; /* floats per slot */
    size_t kv_block_layer;      /* floats of one block in one layer (K or V) */
};

static bool mul3(size_t a, size_t b, size_t c, size_t *out)
{
    size_t t;
    return eng_mul_ok(a, b, &t) && eng_mul_ok(t, c, out);
}

eng_status qn_cache_create(const qn_model *m, const qn_cache_params *p, qn_cache **out)
{
    *out = NULL;
    const qn_dims *d = &m->d;
    if (!p || p->n_slots < 1 || p->n_blocks < 1 || p->block_size > (1 << 20))
        return eng_err_set(ENG_ERR_INVALID, "cache: need at least one slot and one block (got %d slots, %d blocks)",
                           p ? p->n_slots : 0, p ? p->n_blocks : 0);
    qn_cache *c = eng_calloc(1, sizeof *c);
    if (!c) return eng_err_set(ENG_ERR_NOMEM, "cache: out of memory");
    eng_status st = ENG_OK;
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
        c->be->memset0(c->be->ctx, *bufs[i].p, bufs[i].n * sizeof(float));
    }
    *out = c;
    return ENG_OK;
fail:
    qn_cache_destroy(c);
    return st;
}

void qn_cache_destroy(qn_cache *c)
{
    if (!c) return;
    c->be->free(c->be->ctx, c->kv.k);
    c->be->free(c->be->ctx, c->kv.v);
    c->be->free(c->be->ctx, c->st.conv);
    c->be->free(c->be->ctx, c->st.ssm);
    eng_free(c);
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
    return (c->conv_slot + c->ssm_slot) * sizeof(float);
}

size_t qn_cache_block_bytes(const qn_cache *c)
{
    return 2 * c->kv_block_layer * (size_t)c->kv.n_layers * sizeof(float);
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

eng_status qn_cache_slot_reset(qn_cache *c, int slot)
{
    eng_status st = check_slot(c, slot);
    if (st != ENG_OK) return st;
    if (c->conv_slot) c->be->memset0(c->be->ctx, c->st.conv + (size_t)slot * c->conv_slot, c->conv_slot * sizeof(float));
    if (c->ssm_slot) c->be->memset0(c->be->ctx, c->st.ssm + (size_t)slot * c->ssm_slot, c->ssm_slot * sizeof(float));
    return ENG_OK;
}

eng_status qn_cache_slot_copy(qn_cache *c, int dst, int src)
{
    eng_status st;
    if ((st = check_slot(c, dst)) != ENG_OK || (st = check_slot(c, src)) != ENG_OK) return st;
    if (dst == src) return ENG_OK;
    if (c->conv_slot)
        c->be->copy_d2d(c->be->ctx, c->st.conv + (size_t)dst * c->conv_slot, c->st.conv + (size_t)src * c->conv_slot,
                        c->conv_slot * sizeof(float));
    if (c->ssm_slot)
        c->be->copy_d2d(c->be->ctx, c->st.ssm + (size_t)dst * c->ssm_slot, c->st.ssm + (size_t)src * c->ssm_slot,
                        c->ssm_slot * sizeof(float));
    return ENG_OK;
}

eng_status qn_cache_slot_save(const qn_cache *c, int slot, void *dst, size_t cap)
{
    eng_status st = check_slot(c, slot);
    if (st != ENG_OK) return st;
    if (cap < qn_cache_slot_bytes(c))
        return eng_err_set(ENG_ERR_INVALID, "cache: slot save needs %zu bytes, got %zu", qn_cache_slot_bytes(c), cap);
    uint8_t *o = dst;
    if (c->conv_slot)
        c->be->copy_d2h(c->be->ctx, o, c->st.conv + (size_t)slot * c->conv_slot, c->conv_slot * sizeof(float));
    if (c->ssm_slot)
        c->be->copy_d2h(c->be->ctx, o + c->conv_slot * sizeof(float), c->st.ssm + (size_t)slot * c->ssm_slot,
                        c->ssm_slot * sizeof(float));
    return ENG_OK;
}

eng_status qn_cache_slot_restore(qn_cache *c, int slot, const void *src, size_t n)
{
    eng_status st = check_slot(c, slot);
    if (st != ENG_OK) return st;
    if (n != qn_cache_slot_bytes(c))
        return eng_err_set(ENG_ERR_INVALID, "cache: slot restore needs exactly %zu bytes, got %zu",
                           qn_cache_slot_bytes(c), n);
    const uint8_t *i = src;
    if (c->conv_slot)
        c->be->copy_h2d(c->be->ctx, c->st.conv + (size_t)slot * c->conv_slot, i, c->conv_slot * sizeof(float));
    if (c->ssm_slot)
        c->be->copy_h2d(c->be->ctx, c->st.ssm + (size_t)slot * c->ssm_slot, i + c->conv_slot * sizeof(float),
                        c->ssm_slot * sizeof(float));
    return ENG_OK;
}

eng_status qn_cache_block_copy(qn_cache *c, int dst, int src)
{
    if (dst < 0 || dst >= c->n_blocks || src < 0 || src >= c->n_blocks)
        return eng_err_set(ENG_ERR_INVALID, "cache: block copy %d -> %d out of range [0, %d)", src, dst, c->n_blocks);
    if (dst == src) return ENG_OK;
    const size_t n = c->kv_block_layer;
    for (int l = 0; l < c->kv.n_layers; l++) {
        const size_t base = (size_t)l * c->n_blocks;
        c->be->copy_d2d(c->be->ctx, c->kv.k + (base + dst) * n, c->kv.k + (base + src) * n, n * sizeof(float));
        c->be->copy_d2d(c->be->ctx, c->kv.v + (base + dst) * n, c->kv.v + (base + src) * n, n * sizeof(float));
    }
    return ENG_OK;
}

void qn_cache_views(const qn_cache *c, qn_kv_view *kv, qn_state_view *st)
{
    if (kv) *kv = c->kv;
    if (st) *st = c->st;
}
