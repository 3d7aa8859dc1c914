/* cuda/cuda_weights.c - weights on the device. A qn_weight_desc (host parts, possibly row
 * selections of several checkpoint tensors of different dtypes) becomes per matrix a list of
 * segments: maximal runs of consecutive parts with the same storage dtype, copied row by row into
 * one contiguous device array per segment [n_mats][rows][ld] (ld = K rounded up to 16 elements,
 * zero padding, so every row is 16-byte aligned). F16 is widened to F32 (exact), BF16 and FP8
 * stay as they are (FP8 rows keep their bytes; the block scales become a small table of source
 * scale rows plus, per weight row, the index of its scale row), so the device holds 1 byte per
 * FP8 weight and the kernels reproduce the CPU's dequantized value exactly.
 *
 * Rows are gathered into two pinned 32 MiB buffers (made at the first weight, kept by the context)
 * alternately and copied asynchronously; the call returns after the device holds everything. With eng_cuda_options.random_weights the host data
 * is never read: each segment is filled on the device (benchmarks of full-size models).
 */
#include "cuda/cuda_impl.h"

#include "core/core.h" /* defines: eng_malloc, eng_err_set, eng_fmt_bytes */

#include <stdio.h>
#include <string.h>

#define UP_BYTES ((size_t)32 << 20)

static eng_dtype storage(eng_dtype d)
{
    return d == ENG_DTYPE_F16 ? ENG_DTYPE_F32 : d;
}

static size_t es_of(eng_dtype d)
{
    return d == ENG_DTYPE_F32 ? 4 : d == ENG_DTYPE_BF16 ? 2 : 1;
}

static int64_t src_row(const qn_weight_part *p, int64_t i)
{
    return p->row_idx ? p->row_idx[i] : p->row0 + i;
}

/* The same validation as the CPU backend (cpu_backend.c check_part). */
static eng_status check_part(const qn_weight_desc *d, const qn_weight_part *pd)
{
    const char *nm = pd->name ? pd->name : d->name;
    if (pd->dtype != ENG_DTYPE_F32 && pd->dtype != ENG_DTYPE_BF16 && pd->dtype != ENG_DTYPE_F16 &&
        pd->dtype != ENG_DTYPE_F8_E4M3)
        return eng_err_set(ENG_ERR_UNSUPPORTED, "tensor '%s': dtype %s is not supported for a weight matrix", nm,
                           eng_dtype_name(pd->dtype));
    if (!pd->data || pd->src_rows <= 0 || pd->src_rows > INT32_MAX || pd->src_cols <= 0 || pd->n_rows <= 0 ||
        pd->n_rows > INT32_MAX || pd->col0 < 0 || pd->col0 + d->cols > pd->src_cols)
        return eng_err_set(ENG_ERR_INVALID, "tensor '%s': [%lld, %lld] cannot supply %lld rows x %lld columns from "
                           "column %lld", nm, (long long)pd->src_rows, (long long)pd->src_cols,
                           (long long)pd->n_rows, (long long)d->cols, (long long)pd->col0);
    for (int64_t i = 0; i < pd->n_rows; i++) {
        int64_t r = src_row(pd, i);
        if (r < 0 || r >= pd->src_rows)
            return eng_err_set(ENG_ERR_INVALID, "tensor '%s': row %lld out of range [0, %lld)", nm, (long long)r,
                               (long long)pd->src_rows);
    }
    if (pd->dtype == ENG_DTYPE_F8_E4M3 &&
        (!pd->scale || pd->block_n <= 0 || pd->block_k <= 0 || pd->block_k % 16 != 0 || pd->col0 % pd->block_k != 0))
        return eng_err_set(ENG_ERR_UNSUPPORTED, "tensor '%s': FP8 needs a weight_scale_inv and a k block that is a "
                           "multiple of 16 (block %dx%d, first column %lld)", nm, pd->block_n, pd->block_k,
                           (long long)pd->col0);
    return ENG_OK;
}

/* ==== upload ================================================================================== */

/* Streams bytes into consecutive device memory through the two pinned buffers. */
typedef struct uploader {
    cu_ctx *c;
    uint8_t *buf[2];
    cudaEvent_t ev[2];
    int cur;
    size_t fill;
    uint8_t *dst;      /* device address of buf[cur][0] */
} uploader;

static void up_flush(uploader *u)
{
    if (!u->fill) return;
    CUDA_CHECK(cudaMemcpyAsync(u->dst, u->buf[u->cur], u->fill, cudaMemcpyHostToDevice, u->c->stream));
    CUDA_CHECK(cudaEventRecord(u->ev[u->cur], u->c->stream));
    u->dst += u->fill;
    u->fill = 0;
    u->cur ^= 1;
    CUDA_CHECK(cudaEventSynchronize(u->ev[u->cur])); /* its previous copy has finished */
}

/* Room for n bytes in the current buffer (n <= UP_BYTES). */
static uint8_t *up_room(uploader *u, size_t n)
{
    if (u->fill + n > UP_BYTES) up_flush(u);
    uint8_t *p = u->buf[u->cur] + u->fill;
    u->fill += n;
    return p;
}

static void up_seek(uploader *u, uint8_t *dst)
{
    up_flush(u);
    u->dst = dst;
}

/* One weight row (K elements from column col0 of source row r) in storage dtype, zero padded. */
static void put_row(uploader *u, const qn_weight_part *p, int64_t r, int64_t K, int64_t ld)
{
    const eng_dtype st = storage(p->dtype);
    const size_t es = es_of(st), srces = eng_dtype_size(p->dtype);
    uint8_t *o = up_room(u, (size_t)ld * es);
    const uint8_t *src = (const uint8_t *)p->data + ((size_t)r * (size_t)p->src_cols + (size_t)p->col0) * srces;
    if (p->dtype == ENG_DTYPE_F16) {
        float *of = (float *)(void *)o;
        for (int64_t k = 0; k < K; k++) {
            uint16_t h;
            memcpy(&h, src + 2 * k, 2);
            of[k] = eng_f16_to_f32(h);
        }
    } else {
        memcpy(o, src, (size_t)K * es);
    }
    memset(o + (size_t)K * es, 0, (size_t)(ld - K) * es);
}

/* ==== create / destroy ======================================================================== */

void cu_weight_destroy(void *ctx, qn_weight *qw)
{
    cu_ctx *c = ctx;
    cu_weight *w = (cu_weight *)(void *)qw;
    if (!w) return;
    for (int s = 0; s < w->n_segs; s++) {
        cu_dev_free(c, w->segs[s].data);
        cu_dev_free(c, w->segs[s].srow);
        cu_dev_free(c, w->segs[s].scales);
    }
    eng_free(w);
}

void cu_weight_bytes(const qn_weight *qw, size_t *owned, size_t *mapped)
{
    const cu_weight *w = cu_w(qw);
    if (owned) *owned = w ? w->bytes : 0;
    if (mapped) *mapped = 0;
}

/* Part index range [p0, p1) of segment s (the same for every matrix). */
typedef struct seg_plan {
    int p0, p1;
} seg_plan;

static eng_status fail_alloc(const cu_weight *w, eng_status st)
{
    return eng_err_wrap(st, "weight '%s': the model does not fit this GPU (use the FP8 checkpoint, tensor "
                        "parallelism over more GPUs, or a larger --gpu-memory-fraction)", w->name);
}

eng_status cu_weight_create(void *ctx, const qn_weight_desc *d, qn_weight **out)
{
    cu_ctx *c = ctx;
    *out = NULL;
    if (!d || d->n_mats <= 0 || d->n_parts <= 0 || d->cols <= 0 || !d->parts)
        return eng_err_set(ENG_ERR_INVALID, "weight '%s': empty description", d && d->name ? d->name : "?");
    eng_status st = ENG_OK;
    /* validate, and check that every matrix has matrix 0's part layout */
    int64_t rows = 0;
    for (int q = 0; q < d->n_parts; q++) rows += d->parts[q].n_rows;
    for (int m = 0; m < d->n_mats; m++) {
        int64_t r = 0;
        for (int q = 0; q < d->n_parts; q++) {
            const qn_weight_part *pd = &d->parts[m * d->n_parts + q], *p0 = &d->parts[q];
            if ((st = check_part(d, pd)) != ENG_OK) return st;
            r += pd->n_rows;
            if (pd->n_rows != p0->n_rows || storage(pd->dtype) != storage(p0->dtype) ||
                (pd->dtype == ENG_DTYPE_F8_E4M3 && pd->block_k != p0->block_k))
                return eng_err_set(ENG_ERR_UNSUPPORTED, "weight '%s': matrix %d's part %d differs from matrix 0's in "
                                   "rows or dtype (the CUDA backend stores a stack with one layout)", d->name, m, q);
        }
        if (r != rows)
            return eng_err_set(ENG_ERR_INVALID, "weight '%s': matrix %d has %lld rows, matrix 0 has %lld", d->name, m,
                               (long long)r, (long long)rows);
    }
    seg_plan plan[CU_MAX_SEGS];
    int n_segs = 0;
    for (int q = 0; q < d->n_parts; q++) {
        const qn_weight_part *p = &d->parts[q], *prev = q ? &d->parts[q - 1] : NULL;
        if (prev && storage(p->dtype) == storage(prev->dtype) &&
            (p->dtype != ENG_DTYPE_F8_E4M3 || p->block_k == prev->block_k)) {
            plan[n_segs - 1].p1 = q + 1;
            continue;
        }
        if (n_segs == CU_MAX_SEGS)
            return eng_err_set(ENG_ERR_UNSUPPORTED, "weight '%s': more than %d dtype runs", d->name, CU_MAX_SEGS);
        plan[n_segs++] = (seg_plan){q, q + 1};
    }

    cu_weight *w = eng_calloc(1, sizeof *w);
    int32_t *srow = NULL;
    float *tab = NULL;
    uploader u = {.c = c};
    if (!w) return eng_err_set(ENG_ERR_NOMEM, "weight '%s': out of memory", d->name);
    snprintf(w->name, sizeof w->name, "%s", d->name ? d->name : "");
    w->rows = rows;
    w->cols = d->cols;
    w->n_mats = d->n_mats;
    w->n_segs = n_segs;
    const int64_t K = d->cols, ld = (K + 15) & ~(int64_t)15;
    const bool random = c->opt.random_weights != 0;
    cu_enter(c);
    if (!random) {
        for (int i = 0; i < 2; i++) { /* made once, kept for the next weights */
            cudaError_t e = cudaSuccess;
            if (!c->h_up[i] && (e = cudaHostAlloc((void **)&c->h_up[i], UP_BYTES, cudaHostAllocDefault)) != cudaSuccess)
                c->h_up[i] = NULL;
            if (e == cudaSuccess && !c->up_ev[i] &&
                (e = cudaEventCreateWithFlags(&c->up_ev[i], cudaEventDisableTiming)) != cudaSuccess)
                c->up_ev[i] = NULL;
            if (e != cudaSuccess) {
                (void)cudaGetLastError();
                st = eng_err_set(ENG_ERR_NOMEM, "weight '%s': pinned upload buffers: %s", d->name, cudaGetErrorString(e));
                goto fail;
            }
        }
        for (int i = 0; i < 2; i++) {
            u.buf[i] = c->h_up[i];
            u.ev[i] = c->up_ev[i];
        }
    }
    int64_t row0 = 0;
    for (int s = 0; s < n_segs; s++) {
        cu_seg *g = &w->segs[s];
        const qn_weight_part *p0 = &d->parts[plan[s].p0];
        g->dtype = storage(p0->dtype);
        g->row0 = row0;
        g->ld = ld;
        for (int q = plan[s].p0; q < plan[s].p1; q++) g->rows += d->parts[q].n_rows;
        row0 += g->rows;
        const size_t es = es_of(g->dtype), n_el = (size_t)d->n_mats * (size_t)g->rows * (size_t)ld;
        if (!(g->data = cu_dev_alloc(c, n_el * es, d->name))) {
            st = fail_alloc(w, ENG_ERR_NOMEM);
            goto fail;
        }
        w->bytes += n_el * es;
        size_t n_tab = 0;
        if (g->dtype == ENG_DTYPE_F8_E4M3) {
            g->block_k = p0->block_k;
            g->n_kb = (int)((K + g->block_k - 1) / g->block_k);
            for (int m = 0; m < d->n_mats; m++)
                for (int q = plan[s].p0; q < plan[s].p1; q++) {
                    const qn_weight_part *p = &d->parts[m * d->n_parts + q];
                    n_tab += (size_t)((p->src_rows + p->block_n - 1) / p->block_n);
                }
            srow = eng_malloc((size_t)d->n_mats * (size_t)g->rows * sizeof *srow);
            tab = eng_malloc(n_tab * (size_t)g->n_kb * sizeof *tab);
            g->srow = cu_dev_alloc(c, (size_t)d->n_mats * (size_t)g->rows * sizeof *srow, d->name);
            g->scales = g->srow ? cu_dev_alloc(c, n_tab * (size_t)g->n_kb * sizeof *tab, d->name) : NULL;
            if (!srow || !tab) {
                st = eng_err_set(ENG_ERR_NOMEM, "weight '%s': out of host memory", d->name);
                goto fail;
            }
            if (!g->srow || !g->scales) {
                st = fail_alloc(w, ENG_ERR_NOMEM);
                goto fail;
            }
            w->bytes += (size_t)d->n_mats * (size_t)g->rows * sizeof *srow + n_tab * (size_t)g->n_kb * sizeof *tab;
            /* scale rows of every part, then each weight row's index into them */
            size_t t0 = 0, ri = 0;
            for (int m = 0; m < d->n_mats; m++)
                for (int q = plan[s].p0; q < plan[s].p1; q++) {
                    const qn_weight_part *p = &d->parts[m * d->n_parts + q];
                    const int64_t n_sr = (p->src_rows + p->block_n - 1) / p->block_n;
                    const int64_t src_kb = (p->src_cols + p->block_k - 1) / p->block_k, kb0 = p->col0 / p->block_k;
                    if (!random)
                        for (int64_t r = 0; r < n_sr; r++)
                            memcpy(tab + (t0 + (size_t)r) * (size_t)g->n_kb,
                                   (const uint8_t *)p->scale + ((size_t)r * (size_t)src_kb + (size_t)kb0) * 4,
                                   (size_t)g->n_kb * 4);
                    for (int64_t i = 0; i < p->n_rows; i++) srow[ri++] = (int32_t)(t0 + (size_t)(src_row(p, i) / p->block_n));
                    t0 += (size_t)n_sr;
                }
            CUDA_CHECK(cudaMemcpy(g->srow, srow, ri * sizeof *srow, cudaMemcpyHostToDevice));
            if (random)
                cu_launch_fill_f32(g->scales, n_tab * (size_t)g->n_kb, 0.0346f / 448.0f, c->stream);
            else
                CUDA_CHECK(cudaMemcpy(g->scales, tab, n_tab * (size_t)g->n_kb * sizeof *tab, cudaMemcpyHostToDevice));
            eng_free(srow);
            eng_free(tab);
            srow = NULL;
            tab = NULL;
        }
        if (random) {
            /* std 0.02 (uniform +-0.0346) like the checkpoint initialiser; fp8 spans its range and the
             * constant scale above brings it to the same magnitude */
            uint64_t seed = c->opt.random_weights ^ (0x9e3779b97f4a7c15ull * (uint64_t)(s + 1));
            for (const char *ch = w->name; *ch; ch++) seed = (seed ^ (uint8_t)*ch) * 0x100000001b3ull;
            cu_launch_fill_random(g->data, g->dtype, n_el, seed, 0.0346f, c->stream);
            continue;
        }
        for (int m = 0; m < d->n_mats; m++) {
            up_seek(&u, (uint8_t *)g->data + (size_t)m * (size_t)g->rows * (size_t)ld * es);
            for (int q = plan[s].p0; q < plan[s].p1; q++) {
                const qn_weight_part *p = &d->parts[m * d->n_parts + q];
                for (int64_t i = 0; i < p->n_rows; i++) put_row(&u, p, src_row(p, i), K, ld);
            }
        }
    }
    if (!random) up_flush(&u);
    CUDA_CHECK(cudaStreamSynchronize(c->stream)); /* the upload buffers are free again */
    *out = (qn_weight *)(void *)w;
    return ENG_OK;
fail:
    CUDA_CHECK(cudaStreamSynchronize(c->stream));
    eng_free(srow);
    eng_free(tab);
    cu_weight_destroy(c, (qn_weight *)(void *)w);
    return st;
}
