/* cpu/cpu_backend.c - the CPU backend: the reference implementation of the op table
 * (backend/backend.h) on host memory, a thread pool and a SIMD path chosen at run time.
 *
 * Weights: each qn_weight_part becomes one or more row runs (cpu_wpart). Rows selected by a
 * row_idx list are split into maximal runs of consecutive source rows, so the de-interleaved GDN
 * projection and the per-head q_proj split stay zero-copy views of the mmapped checkpoint (runs of
 * a head's 128 or 256 rows). Only F16 data is converted (to F32, owned), and FP8 block scales are
 * expanded to one row of k-block scales per weight row (owned; 1/128 of the fp8 bytes per 4 bytes).
 * A matrix's rows are cut into tasks of CPU_ROWS_PER_TASK rows that never straddle a run.
 */
#include "cpu/cpu_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Noreturn void cpu_assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "qnext: internal error: %s:%d: assertion failed: %s\n", file, line, expr);
    abort();
}

/* ==== SIMD selection ========================================================================== */

const char *eng_simd_name(eng_simd s)
{
    switch (s) {
    case ENG_SIMD_SCALAR:
        return "scalar";
    case ENG_SIMD_AVX2:
        return "avx2";
    case ENG_SIMD_AVX512:
        return "avx512";
    default:
        return "auto";
    }
}

int eng_simd_parse(const char *s)
{
    if (!s) return -1;
    if (!strcmp(s, "auto")) return ENG_SIMD_AUTO;
    if (!strcmp(s, "scalar")) return ENG_SIMD_SCALAR;
    if (!strcmp(s, "avx2")) return ENG_SIMD_AVX2;
    if (!strcmp(s, "avx512")) return ENG_SIMD_AVX512;
    return -1;
}

bool eng_simd_supported(eng_simd s)
{
    switch (s) {
    case ENG_SIMD_SCALAR:
    case ENG_SIMD_AUTO:
        return true;
#if defined(__x86_64__)
    case ENG_SIMD_AVX2:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case ENG_SIMD_AVX512:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("fma");
#endif
    default:
        return false;
    }
}

static const cpu_kernels *kernels_for(eng_simd s)
{
    switch (s) {
#if defined(__x86_64__)
    case ENG_SIMD_AVX2:
        return &cpu_kernels_avx2;
    case ENG_SIMD_AVX512:
        return &cpu_kernels_avx512;
#endif
    default:
        return &cpu_kernels_scalar;
    }
}

/* ==== memory ================================================================================== */

static void *cpu_alloc(void *ctx, size_t bytes)
{
    (void)ctx;
    return eng_malloc_aligned(bytes ? bytes : 64);
}

static void cpu_free(void *ctx, void *p)
{
    (void)ctx;
    eng_free_aligned(p);
}

static void cpu_memset0(void *ctx, void *dst, size_t bytes)
{
    (void)ctx;
    memset(dst, 0, bytes);
}

static void cpu_copy(void *ctx, void *dst, const void *src, size_t bytes)
{
    (void)ctx;
    if (bytes) memmove(dst, src, bytes);
}

static void cpu_sync(void *ctx)
{
    (void)ctx;
}

/* ==== weights ================================================================================= */

static bool own(cpu_weight *w, void *p, size_t bytes)
{
    if (w->n_owned == w->cap_owned) {
        int cap = w->cap_owned ? 2 * w->cap_owned : 8;
        void **o = eng_realloc(w->owned, (size_t)cap * sizeof *o);
        if (!o) return false;
        w->owned = o;
        w->cap_owned = cap;
    }
    w->owned[w->n_owned++] = p;
    w->bytes_owned += bytes;
    return true;
}

static void cpu_weight_destroy(void *ctx, qn_weight *qw)
{
    (void)ctx;
    cpu_weight *w = (cpu_weight *)(void *)qw;
    if (!w) return;
    for (int i = 0; i < w->n_owned; i++) eng_free_aligned(w->owned[i]);
    eng_free(w->owned);
    eng_free(w->parts);
    eng_free(w->mat_part0);
    eng_free(w->tasks);
    eng_free(w->mat_task0);
    eng_free(w);
}

static void cpu_weight_bytes(const qn_weight *qw, size_t *owned, size_t *mapped)
{
    const cpu_weight *w = cpu_w(qw);
    if (owned) *owned = w ? w->bytes_owned : 0;
    if (mapped) *mapped = w ? w->bytes_mapped : 0;
}

static int64_t src_row(const qn_weight_part *pd, int64_t i)
{
    return pd->row_idx ? pd->row_idx[i] : pd->row0 + i;
}

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
    if (pd->dtype == ENG_DTYPE_F8_E4M3) {
        if (!pd->scale || pd->block_n <= 0 || pd->block_k <= 0 || pd->block_k % 16 != 0 ||
            pd->col0 % pd->block_k != 0)
            return eng_err_set(ENG_ERR_UNSUPPORTED, "tensor '%s': FP8 needs a weight_scale_inv and a k block "
                               "that is a multiple of 16 (block %dx%d, first column %lld)", nm, pd->block_n,
                               pd->block_k, (long long)pd->col0);
    }
    return ENG_OK;
}

/* Appends the runs of one part to w (parts/tasks arrays pre-sized by the caller). */
static eng_status add_part(cpu_weight *w, const qn_weight_desc *d, const qn_weight_part *pd, int64_t out0,
                           int *n_parts, int *n_tasks)
{
    const size_t es = eng_dtype_size(pd->dtype);
    const int64_t K = d->cols;
    const float *scales = NULL; /* expanded [n_rows][n_kb] */
    int n_kb = 0;
    if (pd->dtype == ENG_DTYPE_F8_E4M3) {
        n_kb = (int)((K + pd->block_k - 1) / pd->block_k);
        const int64_t src_kb = (pd->src_cols + pd->block_k - 1) / pd->block_k;
        const int64_t kb0 = pd->col0 / pd->block_k;
        size_t bytes = (size_t)pd->n_rows * (size_t)n_kb * sizeof(float);
        float *s = eng_malloc_aligned(bytes);
        if (!s || !own(w, s, bytes)) {
            eng_free_aligned(s);
            return eng_err_set(ENG_ERR_NOMEM, "tensor '%s': out of memory for FP8 scales", pd->name);
        }
        for (int64_t i = 0; i < pd->n_rows; i++) {
            const uint8_t *src = (const uint8_t *)pd->scale + ((src_row(pd, i) / pd->block_n) * src_kb + kb0) * 4;
            memcpy(s + i * n_kb, src, (size_t)n_kb * sizeof(float));
        }
        scales = s;
    }
    const uint8_t *f32copy = NULL;
    if (pd->dtype == ENG_DTYPE_F16) { /* convert the selected rows to f32 once */
        size_t bytes = (size_t)pd->n_rows * (size_t)K * sizeof(float);
        float *c = eng_malloc_aligned(bytes);
        if (!c || !own(w, c, bytes)) {
            eng_free_aligned(c);
            return eng_err_set(ENG_ERR_NOMEM, "tensor '%s': out of memory converting F16 to F32", pd->name);
        }
        const uint8_t *base = pd->data;
        for (int64_t i = 0; i < pd->n_rows; i++) {
            const uint8_t *row = base + ((size_t)src_row(pd, i) * (size_t)pd->src_cols + (size_t)pd->col0) * 2;
            for (int64_t k = 0; k < K; k++) {
                uint16_t h;
                memcpy(&h, row + 2 * k, 2);
                c[i * K + k] = eng_f16_to_f32(h);
            }
        }
        f32copy = (const uint8_t *)c;
    }
    int64_t i = 0;
    while (i < pd->n_rows) {
        int64_t j = i + 1;
        if (!f32copy)
            while (j < pd->n_rows && src_row(pd, j) == src_row(pd, j - 1) + 1) j++;
        else
            j = pd->n_rows;
        cpu_wpart *p = &w->parts[(*n_parts)++];
        memset(p, 0, sizeof *p);
        p->rows = j - i;
        p->out0 = out0 + i;
        if (f32copy) {
            p->dtype = ENG_DTYPE_F32;
            p->row_bytes = (size_t)K * 4;
            p->data = f32copy;
        } else {
            p->dtype = pd->dtype;
            p->row_bytes = (size_t)pd->src_cols * es;
            p->data = (const uint8_t *)pd->data + ((size_t)src_row(pd, i) * (size_t)pd->src_cols + (size_t)pd->col0) * es;
            w->bytes_mapped += (size_t)p->rows * (size_t)K * es;
        }
        if (scales) {
            p->scales = scales + i * n_kb;
            p->n_kb = n_kb;
            p->block_k = pd->block_k;
        }
        for (int64_t r = 0; r < p->rows; r += CPU_ROWS_PER_TASK) {
            cpu_task *t = &w->tasks[(*n_tasks)++];
            t->part = *n_parts - 1;
            t->r0 = (int32_t)r;
            t->r1 = (int32_t)(r + CPU_ROWS_PER_TASK < p->rows ? r + CPU_ROWS_PER_TASK : p->rows);
        }
        i = j;
    }
    return ENG_OK;
}

static eng_status cpu_weight_create(void *ctx, const qn_weight_desc *d, qn_weight **out)
{
    (void)ctx;
    *out = NULL;
    eng_status st = ENG_OK;
    cpu_weight *w = NULL;
    if (!d || d->n_mats <= 0 || d->n_parts <= 0 || d->cols <= 0 || !d->parts)
        return eng_err_set(ENG_ERR_INVALID, "weight '%s': empty description", d && d->name ? d->name : "?");
    /* exact counts of runs and tasks (add_part makes the same cuts) */
    size_t max_parts = 0, max_tasks = 0;
    int64_t rows = -1;
    for (int m = 0; m < d->n_mats; m++) {
        int64_t r = 0;
        for (int q = 0; q < d->n_parts; q++) {
            const qn_weight_part *pd = &d->parts[m * d->n_parts + q];
            if ((st = check_part(d, pd)) != ENG_OK) return st;
            r += pd->n_rows;
            for (int64_t i = 0, j; i < pd->n_rows; i = j) {
                j = i + 1;
                if (pd->dtype == ENG_DTYPE_F16) j = pd->n_rows;
                else
                    while (j < pd->n_rows && src_row(pd, j) == src_row(pd, j - 1) + 1) j++;
                max_parts++;
                max_tasks += (size_t)((j - i + CPU_ROWS_PER_TASK - 1) / CPU_ROWS_PER_TASK);
            }
        }
        if (rows >= 0 && r != rows)
            return eng_err_set(ENG_ERR_INVALID, "weight '%s': matrix %d has %lld rows, matrix 0 has %lld", d->name, m,
                               (long long)r, (long long)rows);
        rows = r;
    }
    w = eng_calloc(1, sizeof *w);
    if (!w) return eng_err_set(ENG_ERR_NOMEM, "weight '%s': out of memory", d->name);
    snprintf(w->name, sizeof w->name, "%s", d->name ? d->name : "");
    w->rows = rows;
    w->cols = d->cols;
    w->n_mats = d->n_mats;
    w->mat_part0 = eng_calloc((size_t)d->n_mats + 1, sizeof *w->mat_part0);
    w->mat_task0 = eng_calloc((size_t)d->n_mats + 1, sizeof *w->mat_task0);
    w->parts = eng_calloc(max_parts, sizeof *w->parts);
    w->tasks = eng_calloc(max_tasks, sizeof *w->tasks);
    if (!w->mat_part0 || !w->mat_task0 || !w->parts || !w->tasks) {
        st = eng_err_set(ENG_ERR_NOMEM, "weight '%s': out of memory", d->name);
        goto fail;
    }
    int n_parts = 0, n_tasks = 0;
    for (int m = 0; m < d->n_mats; m++) {
        w->mat_part0[m] = n_parts;
        w->mat_task0[m] = n_tasks;
        int64_t out0 = 0;
        for (int q = 0; q < d->n_parts; q++) {
            const qn_weight_part *pd = &d->parts[m * d->n_parts + q];
            if ((st = add_part(w, d, pd, out0, &n_parts, &n_tasks)) != ENG_OK) goto fail;
            out0 += pd->n_rows;
        }
    }
    w->mat_part0[d->n_mats] = n_parts;
    w->mat_task0[d->n_mats] = n_tasks;
    if ((size_t)n_parts != max_parts || (size_t)n_tasks != max_tasks) {
        st = eng_err_set(ENG_ERR_INTERNAL, "weight '%s': run count mismatch", d->name);
        goto fail;
    }
    *out = (qn_weight *)(void *)w;
    return ENG_OK;
fail:
    cpu_weight_destroy(NULL, (qn_weight *)(void *)w);
    return st;
}

/* ==== scratch ================================================================================= */

static void free_scratch(cpu_ctx *c)
{
    if (c->scratch)
        for (int i = 0; i < c->n_threads; i++) eng_free_aligned(c->scratch[i].buf);
    eng_free(c->scratch);
    c->scratch = NULL;
    eng_free_aligned(c->moe_x);
    eng_free_aligned(c->moe_gu);
    eng_free_aligned(c->moe_act);
    eng_free_aligned(c->moe_y);
    eng_free(c->moe_pair_tok);
    eng_free(c->moe_pair_slot);
    eng_free(c->moe_inv);
    eng_free(c->moe_cnt);
    eng_free(c->moe_off);
    eng_free(c->moe_active);
    eng_free(c->moe_task0);
    eng_free(c->attn_task0);
    c->attn_task0 = NULL;
    c->moe_x = c->moe_gu = c->moe_act = c->moe_y = NULL;
    c->moe_pair_tok = c->moe_pair_slot = c->moe_inv = c->moe_cnt = c->moe_off = c->moe_active = c->moe_task0 = NULL;
    c->moe_pairs_cap = 0;
    c->moe_experts_cap = 0;
}

static int imax(int a, int b)
{
    return a > b ? a : b;
}

static eng_status cpu_reserve(void *ctx, const qn_op_limits *req)
{
    cpu_ctx *c = ctx;
    qn_op_limits lim = c->lim;
    qn_op_limits_max(&lim, req);
    if (!memcmp(&lim, &c->lim, sizeof lim) && c->scratch) return ENG_OK;
    /* allocate the new set first: on failure the old one (in use by loaded models) stays */
    cpu_ctx old = *c;
    c->scratch = NULL;
    c->moe_x = c->moe_gu = c->moe_act = c->moe_y = NULL;
    c->moe_pair_tok = c->moe_pair_slot = c->moe_inv = c->moe_cnt = c->moe_off = c->moe_active = c->moe_task0 = NULL;
    c->moe_pairs_cap = 0;
    c->moe_experts_cap = 0;
    c->lim = lim;
    size_t per = cpu_gdn_scratch_floats(&lim);
    size_t a = cpu_attn_scratch_floats(&lim);
    if (a > per) per = a;
    size_t rowbuf = (size_t)imax(lim.hidden, 1) + 64; /* embed conversions etc. */
    if (rowbuf > per) per = rowbuf;
    c->attn_task0 = NULL;
    c->scratch = eng_calloc((size_t)c->n_threads, sizeof *c->scratch);
    if (!c->scratch) goto oom;
    c->attn_task0 = eng_malloc(((size_t)imax(lim.max_tokens, 1) + 1) * sizeof *c->attn_task0);
    if (!c->attn_task0) goto oom;
    for (int i = 0; i < c->n_threads; i++) {
        c->scratch[i].buf = eng_malloc_aligned(per * sizeof(float));
        if (!c->scratch[i].buf) goto oom;
        c->scratch[i].n_floats = per;
    }
    if (lim.n_experts > 0 && lim.top_k > 0) {
        size_t P = (size_t)lim.max_tokens * (size_t)lim.top_k, H = (size_t)lim.hidden, I = (size_t)lim.moe_inter;
        size_t E = (size_t)lim.n_experts;
        c->moe_x = eng_malloc_aligned(P * H * sizeof(float));
        c->moe_gu = eng_malloc_aligned(P * 2 * I * sizeof(float));
        c->moe_act = eng_malloc_aligned(P * I * sizeof(float));
        c->moe_y = eng_malloc_aligned(P * H * sizeof(float));
        c->moe_pair_tok = eng_malloc(P * sizeof(int32_t));
        c->moe_pair_slot = eng_malloc(P * sizeof(int32_t));
        c->moe_inv = eng_malloc(P * sizeof(int32_t));
        c->moe_cnt = eng_malloc(E * sizeof(int32_t));
        c->moe_off = eng_malloc((E + 1) * sizeof(int32_t));
        c->moe_active = eng_malloc(E * sizeof(int32_t));
        c->moe_task0 = eng_malloc((E + 1) * sizeof(int32_t));
        if (!c->moe_x || !c->moe_gu || !c->moe_act || !c->moe_y || !c->moe_pair_tok || !c->moe_pair_slot ||
            !c->moe_inv || !c->moe_cnt || !c->moe_off || !c->moe_active || !c->moe_task0)
            goto oom;
        c->moe_pairs_cap = P;
        c->moe_experts_cap = lim.n_experts;
    }
    free_scratch(&old);
    return ENG_OK;
oom:
    free_scratch(c);
    *c = old;
    return eng_err_set(ENG_ERR_NOMEM, "cpu backend: out of memory for op scratch (%d tokens)", req->max_tokens);
}

/* ==== create / destroy ======================================================================== */

static void cpu_destroy(eng_backend *be)
{
    if (!be) return;
    cpu_ctx *c = be->ctx;
    if (c) {
        cpu_prof_report(c);
        free_scratch(c);
        eng_threadpool_destroy(c->pool);
        eng_free(c);
    }
    eng_free(be);
}

eng_simd eng_backend_cpu_simd(const eng_backend *be)
{
    return be && be->ctx ? ((const cpu_ctx *)be->ctx)->simd : ENG_SIMD_SCALAR;
}

eng_status eng_backend_cpu_create(const eng_cpu_options *opt, eng_backend **out)
{
    *out = NULL;
    eng_cpu_options o = {0};
    if (opt) o = *opt;
    eng_simd simd = o.simd;
    cpu_scalar_init();
    if (simd == ENG_SIMD_AUTO) {
        const char *e = getenv("QNEXT_SIMD");
        if (e && *e) {
            int s = eng_simd_parse(e);
            if (s < 0)
                return eng_err_set(ENG_ERR_INVALID, "QNEXT_SIMD='%s': expected scalar, avx2, avx512 or auto", e);
            simd = (eng_simd)s;
        }
    }
    if (simd == ENG_SIMD_AUTO) {
        simd = eng_simd_supported(ENG_SIMD_AVX512) ? ENG_SIMD_AVX512
               : eng_simd_supported(ENG_SIMD_AVX2) ? ENG_SIMD_AVX2
                                                   : ENG_SIMD_SCALAR;
    } else if (!eng_simd_supported(simd)) {
        return eng_err_set(ENG_ERR_UNSUPPORTED, "SIMD path '%s' is not supported by this CPU", eng_simd_name(simd));
    }
    eng_status st = ENG_OK;
    eng_backend *be = eng_calloc(1, sizeof *be);
    cpu_ctx *c = eng_calloc(1, sizeof *c);
    if (!be || !c) {
        eng_free(be);
        eng_free(c);
        return eng_err_set(ENG_ERR_NOMEM, "cpu backend: out of memory");
    }
    be->ctx = c;
    be->destroy = cpu_destroy;
    if ((st = eng_threadpool_create(o.n_threads, &c->pool)) != ENG_OK) goto fail;
    c->n_threads = eng_threadpool_size(c->pool);
    c->simd = simd;
    c->k = kernels_for(simd);
    snprintf(c->name, sizeof c->name, "cpu-%s", c->k->name);
    be->name = c->name;
    be->alloc = cpu_alloc;
    be->free = cpu_free;
    be->memset0 = cpu_memset0;
    be->copy_h2d = cpu_copy;
    be->copy_d2h = cpu_copy;
    be->copy_d2d = cpu_copy;
    be->synchronize = cpu_sync;
    be->weight_create = cpu_weight_create;
    be->weight_destroy = cpu_weight_destroy;
    be->weight_bytes = cpu_weight_bytes;
    be->reserve = cpu_reserve;
    be->embed = cpu_op_embed;
    be->matmul = cpu_op_matmul;
    be->rmsnorm = cpu_op_rmsnorm;
    be->add_rmsnorm = cpu_op_add_rmsnorm;
    be->add = cpu_op_add;
    be->silu_mul = cpu_op_silu_mul;
    be->gdn_conv = cpu_op_gdn_conv;
    be->gdn_gates = cpu_op_gdn_gates;
    be->gdn = cpu_op_gdn;
    be->gated_rmsnorm = cpu_op_gated_rmsnorm;
    be->qk_norm_rope = cpu_op_qk_norm_rope;
    be->kv_write = cpu_op_kv_write;
    be->attention = cpu_op_attention;
    be->moe_route = cpu_op_moe_route;
    be->moe_experts = cpu_op_moe_experts;
    be->get_rows = cpu_op_get_rows;
    if (!cpu_prof_wrap(c, be)) {
        st = eng_err_set(ENG_ERR_NOMEM, "cpu backend: out of memory");
        goto fail;
    }
    /* a minimal reserve so ops with small shapes work without an explicit call (tests) */
    qn_op_limits lim = {.max_tokens = 1, .hidden = 1};
    if ((st = cpu_reserve(c, &lim)) != ENG_OK) goto fail;
    *out = be;
    return ENG_OK;
fail:
    cpu_destroy(be);
    return st;
}
