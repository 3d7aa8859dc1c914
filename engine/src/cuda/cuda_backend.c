/* cuda/cuda_backend.c - the CUDA backend's host side: creation, the memory budget, scratch, the
 * staging arena for host data, and the step state machine that captures decode steps as CUDA
 * graphs and replays them.
 *
 * Memory: every device allocation goes through cu_dev_alloc, which refuses to pass the budget
 * (memory_fraction x total device memory) with a detail saying what was asked and what is left;
 * buffers, weights, scratch, the staging mirror and the cuBLASLt workspace all count.
 *
 * Staging: ops that take host data (token ids and positions through copy_h2d, sequence
 * descriptors and block tables, row lists) copy it into a pinned arena and queue an async copy to
 * the arena's device mirror, so no op synchronises the host. The arena is bump-allocated and reset
 * at synchronisation points (copy_d2h and synchronize outside a step, step_end), or when full
 * (after a stream sync).
 *
 * Steps and graphs (backend.h step_begin/step_end): a step stages its descriptors once; ops whose
 * sequence array equals the step's use them. A decode-only step with a nonzero key runs in one of
 * three modes:
 *   capture  the ops launch into a stream capture (nothing executes); every op records a
 *            signature (a hash of its arguments); step_end instantiates the graph and launches it;
 *   replay   a graph for (key, T, n_seqs, block-table stride) exists: ops only copy their host data
 *            into the same arena offsets as at capture and check their signature, launching
 *            nothing; step_end launches the graph. A mismatch is a caller bug and aborts with the
 *            op and its index (the key promised the same op sequence);
 *   eager    anything else.
 * In both graph modes copy_d2h lands in the arena and is copied to its destination after the
 * graph ran (step_end). The block tables are staged with a stride bucketed to a power of two, so
 * a growing context re-captures only when it crosses a bucket. Graphs are cached per exact batch
 * size (LRU, CU_MAX_GRAPHS), and dropped whenever a buffer is freed or scratch grows (they hold its
 * address).
 */
#include "cuda/cuda_impl.h"

#include "core/core.h" /* defines: eng_malloc, eng_err_set, eng_log, eng_fmt_bytes */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STAGE_BYTES ((size_t)64 << 20)   /* pinned staging arena (and its device mirror) */
#define STAGE_SMALL ((size_t)4 << 20)    /* copy_h2d up to this size goes through the arena */
#define LT_WORKSPACE ((size_t)32 << 20)  /* cuBLASLt workspace */

void cu_fatal(const char *expr, const char *what, const char *func, const char *file, int line)
{
    fprintf(stderr, "qnext: fatal CUDA backend error: %s\n  at %s (%s:%d): %s\n", what, func, file, line, expr);
    fprintf(stderr, "  a device error cannot be recovered in process (docs/style.md rule 3); "
                    "rerun with CUDA_LAUNCH_BLOCKING=1 to find the failing kernel\n");
    fflush(stderr);
    abort();
}

void cu_enter(cu_ctx *c)
{
    int cur = -1;
    if (cudaGetDevice(&cur) != cudaSuccess || cur != c->device) CUDA_CHECK(cudaSetDevice(c->device));
}

static const char *fmtb(double b, char *buf, size_t cap)
{
    return eng_fmt_bytes(b, buf, cap);
}

/* ==== memory ================================================================================== */

static void budget_detail(const cu_ctx *c, char *out, size_t cap)
{
    char a[32], b[32], t[32], u[32];
    snprintf(out, cap, "%s of this GPU's budget left (budget %s = %.2f of %s on device %d; %s in use)",
             fmtb((double)(c->budget > c->used ? c->budget - c->used : 0), a, sizeof a), fmtb((double)c->budget, b, sizeof b),
             c->opt.memory_fraction, fmtb((double)c->total_mem, t, sizeof t), c->device,
             fmtb((double)c->used, u, sizeof u));
}

void *cu_dev_alloc(cu_ctx *c, size_t bytes, const char *what)
{
    if (!bytes) bytes = 256;
    bytes = (bytes + 255) & ~(size_t)255;
    char detail[256], nb[32];
    if (c->used + bytes > c->budget) {
        budget_detail(c, detail, sizeof detail);
        eng_err_set(ENG_ERR_NOMEM, "%s: needs %s of GPU memory, %s", what, fmtb((double)bytes, nb, sizeof nb), detail);
        return NULL;
    }
    if (c->n_allocs == c->cap_allocs) {
        int cap = c->cap_allocs ? 2 * c->cap_allocs : 256;
        cu_alloc_rec *r = eng_realloc(c->allocs, (size_t)cap * sizeof *r);
        if (!r) {
            eng_err_set(ENG_ERR_NOMEM, "%s: out of host memory", what);
            return NULL;
        }
        c->allocs = r;
        c->cap_allocs = cap;
    }
    cu_enter(c);
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes);
    if (e != cudaSuccess) {
        (void)cudaGetLastError(); /* an allocation failure is not sticky */
        budget_detail(c, detail, sizeof detail);
        eng_err_set(ENG_ERR_NOMEM, "%s: cudaMalloc of %s failed (%s); %s", what, fmtb((double)bytes, nb, sizeof nb),
                    cudaGetErrorString(e), detail);
        return NULL;
    }
    c->allocs[c->n_allocs++] = (cu_alloc_rec){p, bytes};
    c->used += bytes;
    if (c->used > c->peak) c->peak = c->used;
    return p;
}

static void really_free(cu_ctx *c, void *p)
{
    for (int i = c->n_allocs - 1; i >= 0; i--)
        if (c->allocs[i].p == p) {
            c->used -= c->allocs[i].bytes;
            c->allocs[i] = c->allocs[--c->n_allocs];
            CUDA_CHECK(cudaFree(p));
            return;
        }
    cu_fatal("free", "pointer was not allocated by this backend", __func__, __FILE__, __LINE__);
}

static void retire(cu_ctx *c, void *p)
{
    if (c->n_retired == c->cap_retired) {
        int cap = c->cap_retired ? 2 * c->cap_retired : 16;
        void **r = eng_realloc(c->retired, (size_t)cap * sizeof *r);
        if (!r) cu_fatal("retire", "out of host memory", __func__, __FILE__, __LINE__);
        c->retired = r;
        c->cap_retired = cap;
    }
    c->retired[c->n_retired++] = p;
}

/* Graphs may hold p (a buffer they were captured with): drop them, and free p now unless a
 * capture is running (which may reference it too; it is freed at the next clear). */
void cu_dev_free(cu_ctx *c, void *p)
{
    if (!p) return;
    cu_enter(c);
    cu_graph_clear(c);
    if (c->mode == CU_CAPTURE) retire(c, p);
    else really_free(c, p);
}

static void graph_free(cu_graph *g)
{
    if (g->exec) CUDA_CHECK(cudaGraphExecDestroy(g->exec));
    eng_free(g->sigs);
    memset(g, 0, sizeof *g);
}

void cu_graph_clear(cu_ctx *c)
{
    for (int i = 0; i < c->n_graphs; i++) graph_free(&c->graphs[i]);
    c->n_graphs = 0;
    if (c->mode != CU_CAPTURE) {
        for (int i = 0; i < c->n_retired; i++) really_free(c, c->retired[i]);
        c->n_retired = 0;
    }
}

/* Grows scratch slot id to >= bytes; NULL (detail set) if the budget refuses. */
static void *scratch_try(cu_ctx *c, cu_scratch_id id, size_t bytes)
{
    cu_scratch *s = &c->scr[id];
    if (s->p && s->bytes >= bytes) return s->p;
    size_t want = bytes + bytes / 4;
    if (want < s->bytes + s->bytes / 2) want = s->bytes + s->bytes / 2;
    static const char *names[CU_SCR_COUNT] = {"GEMM activation halves", "GEMM activation halves",
                                              "aligned GEMM input", "attention split partials", "MoE indices",
                                              "MoE gate_up outputs", "MoE activations", "MoE expert outputs"};
    size_t got = want;
    void *p = cu_dev_alloc(c, want, names[id]);
    if (!p && want > bytes) p = cu_dev_alloc(c, got = bytes, names[id]);
    if (!p) return NULL;
    if (s->p) {
        if (c->reserved) c->stats.scratch_grows++;
        /* kernels already queued (or captured) may still use the old buffer */
        cu_graph_clear(c);
        if (c->mode == CU_CAPTURE) retire(c, s->p);
        else really_free(c, s->p); /* cudaFree waits for queued work */
    }
    s->p = p;
    s->bytes = got;
    return p;
}

void *cu_scratch_get(cu_ctx *c, cu_scratch_id id, size_t bytes)
{
    void *p = scratch_try(c, id, bytes);
    if (!p) cu_fatal("cu_scratch_get", eng_err_last(), __func__, __FILE__, __LINE__);
    return p;
}

/* ==== staging ================================================================================= */

static void stage_reset(cu_ctx *c)
{
    c->stage_off = 0;
    c->desc_valid = false;
}

static cu_batch pack_batch(cu_ctx *c, const qn_seq_desc *seqs, int n_seqs, int bt_stride);

/* Offset of `bytes` in the arena (256-aligned), or SIZE_MAX if it can never fit. */
static size_t stage_alloc(cu_ctx *c, size_t bytes)
{
    size_t off = (c->stage_off + 255) & ~(size_t)255;
    if (off + bytes > c->stage_cap) {
        if (c->mode != CU_EAGER)
            cu_fatal("stage_alloc", "the staging arena is full inside a graph step (a step stages at most 64 MiB)",
                     __func__, __FILE__, __LINE__);
        if (bytes > c->stage_cap) return SIZE_MAX;
        CUDA_CHECK(cudaStreamSynchronize(c->stream));
        stage_reset(c);
        if (c->in_step && c->step_has_batch) /* the step's descriptors lived in the arena */
            c->step_batch = pack_batch(c, c->step_seqs, c->step_n_seqs, c->step_batch.bt_stride);
        off = (c->stage_off + 255) & ~(size_t)255;
    }
    c->stage_off = off + bytes;
    return off;
}

void *cu_stage_h2d(cu_ctx *c, const void *src, size_t bytes)
{
    size_t off = stage_alloc(c, bytes);
    if (off == SIZE_MAX) cu_fatal("cu_stage_h2d", "host data larger than the staging arena", __func__, __FILE__, __LINE__);
    memcpy(c->h_stage + off, src, bytes);
    if (c->mode != CU_REPLAY)
        CUDA_CHECK(cudaMemcpyAsync(c->d_stage + off, c->h_stage + off, bytes, cudaMemcpyHostToDevice, c->stream));
    return c->d_stage + off;
}

static size_t al256(size_t n)
{
    return (n + 255) & ~(size_t)255;
}

static int batch_rows(const qn_seq_desc *seqs, int n_seqs)
{
    int T = 0;
    for (int i = 0; i < n_seqs; i++)
        if (seqs[i].row0 + seqs[i].n_new > T) T = seqs[i].row0 + seqs[i].n_new;
    return T;
}

/* Packs [cu_seq x n][row2seq x T][bt: n x stride] into the arena and queues its upload. */
static cu_batch pack_batch(cu_ctx *c, const qn_seq_desc *seqs, int n_seqs, int bt_stride)
{
    const int T = batch_rows(seqs, n_seqs);
    const size_t s_bytes = al256((size_t)n_seqs * sizeof(cu_seq)), r_bytes = al256((size_t)T * 4);
    const size_t bytes = s_bytes + r_bytes + (size_t)n_seqs * (size_t)bt_stride * 4;
    const size_t off = stage_alloc(c, bytes);
    if (off == SIZE_MAX) cu_fatal("pack_batch", "batch descriptors larger than the staging arena", __func__, __FILE__, __LINE__);
    uint8_t *h = c->h_stage + off;
    cu_seq *hs = (cu_seq *)(void *)h;
    int32_t *r2s = (int32_t *)(void *)(h + s_bytes), *bt = (int32_t *)(void *)(h + s_bytes + r_bytes);
    memset(r2s, 0, (size_t)T * 4);
    for (int i = 0; i < n_seqs; i++) {
        const qn_seq_desc *s = &seqs[i];
        CU_ASSERT(s->n_blocks <= bt_stride && s->n_new >= 0 && s->row0 >= 0);
        hs[i] = (cu_seq){s->row0, s->n_new, s->pos, s->slot, s->n_blocks, 0};
        for (int r = 0; r < s->n_new; r++) r2s[s->row0 + r] = i;
        int32_t *dst = bt + (size_t)i * bt_stride;
        if (s->n_blocks > 0) memcpy(dst, s->block_table, (size_t)s->n_blocks * 4);
        for (int k = s->n_blocks; k < bt_stride; k++) dst[k] = -1;
    }
    if (c->mode != CU_REPLAY)
        CUDA_CHECK(cudaMemcpyAsync(c->d_stage + off, h, bytes, cudaMemcpyHostToDevice, c->stream));
    cu_batch b = {(const cu_seq *)(const void *)(c->d_stage + off), (const int32_t *)(const void *)(c->d_stage + off + s_bytes),
                  (const int32_t *)(const void *)(c->d_stage + off + s_bytes + r_bytes), n_seqs, T, bt_stride};
    c->desc_valid = true;
    c->desc_off = off;
    c->desc_bytes = bytes;
    c->desc_batch = b;
    return b;
}

static bool seqs_equal(const qn_seq_desc *a, int na, const qn_seq_desc *b, int nb)
{
    if (na != nb) return false;
    if (a == b) return true;
    for (int i = 0; i < na; i++) {
        if (a[i].row0 != b[i].row0 || a[i].n_new != b[i].n_new || a[i].pos != b[i].pos || a[i].slot != b[i].slot ||
            a[i].n_blocks != b[i].n_blocks)
            return false;
        if (a[i].n_blocks > 0 && a[i].block_table != b[i].block_table &&
            memcmp(a[i].block_table, b[i].block_table, (size_t)a[i].n_blocks * 4) != 0)
            return false;
    }
    return true;
}

/* Does the last packed batch (host copy in the arena) describe these sequences? */
static bool staged_equal(const cu_ctx *c, const qn_seq_desc *seqs, int n_seqs)
{
    if (!c->desc_valid || c->desc_batch.n_seqs != n_seqs || c->desc_batch.T != batch_rows(seqs, n_seqs)) return false;
    const uint8_t *h = c->h_stage + c->desc_off;
    const cu_seq *hs = (const cu_seq *)(const void *)h;
    const size_t s_bytes = al256((size_t)n_seqs * sizeof(cu_seq)), r_bytes = al256((size_t)c->desc_batch.T * 4);
    const int32_t *bt = (const int32_t *)(const void *)(h + s_bytes + r_bytes);
    for (int i = 0; i < n_seqs; i++) {
        const qn_seq_desc *s = &seqs[i];
        if (hs[i].row0 != s->row0 || hs[i].n_new != s->n_new || hs[i].pos != s->pos || hs[i].slot != s->slot ||
            hs[i].n_blocks != s->n_blocks || s->n_blocks > c->desc_batch.bt_stride)
            return false;
        if (s->n_blocks > 0 && memcmp(bt + (size_t)i * c->desc_batch.bt_stride, s->block_table, (size_t)s->n_blocks * 4))
            return false;
    }
    return true;
}

static int max_blocks(const qn_seq_desc *seqs, int n_seqs)
{
    int m = 1;
    for (int i = 0; i < n_seqs; i++)
        if (seqs[i].n_blocks > m) m = seqs[i].n_blocks;
    return m;
}

cu_batch cu_stage_batch(cu_ctx *c, const qn_seq_desc *seqs, int n_seqs)
{
    if (c->in_step && c->step_has_batch && n_seqs == c->step_n_seqs) {
        /* an array that matched once in this step is the step's (the model does not change its
         * descriptors inside a forward): later ops skip the comparison of the block tables */
        if (seqs == c->step_alias) return c->step_batch;
        if (seqs_equal(seqs, n_seqs, c->step_seqs, c->step_n_seqs)) {
            c->step_alias = seqs;
            return c->step_batch;
        }
    }
    if (c->mode != CU_EAGER)
        cu_fatal("cu_stage_batch", "an op of a graph step got sequences that differ from the step's (step_begin)",
                 __func__, __FILE__, __LINE__);
    if (staged_equal(c, seqs, n_seqs)) return c->desc_batch;
    return pack_batch(c, seqs, n_seqs, max_blocks(seqs, n_seqs));
}

/* ==== signatures and steps ==================================================================== */

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

bool cu_sig(cu_ctx *c, const char *op, const uint64_t *v, int n)
{
    if (c->mode == CU_EAGER) return false;
    uint64_t h = fnv(0xcbf29ce484222325ull, op, strlen(op));
    h = fnv(h, v, (size_t)n * sizeof *v);
    cu_graph *g = c->cur;
    if (c->mode == CU_CAPTURE) {
        if (g->n_sigs == g->cap_sigs) {
            int cap = g->cap_sigs ? 2 * g->cap_sigs : 1024;
            uint64_t *s = eng_realloc(g->sigs, (size_t)cap * sizeof *s);
            if (!s) cu_fatal("cu_sig", "out of host memory", __func__, __FILE__, __LINE__);
            g->sigs = s;
            g->cap_sigs = cap;
        }
        g->sigs[g->n_sigs++] = h;
        return false;
    }
    if (c->sig_pos >= g->n_sigs || g->sigs[c->sig_pos] != h) {
        char msg[256];
        snprintf(msg, sizeof msg, "graph replay: op #%d (%s) differs from the captured step (key %llx, T %d, %d ops "
                 "captured): the step key promised the same op sequence", c->sig_pos, op,
                 (unsigned long long)g->key, g->T, g->n_sigs);
        cu_fatal("cu_sig", msg, __func__, __FILE__, __LINE__);
    }
    c->sig_pos++;
    return true;
}

static void deferred_push(cu_ctx *c, void *dst, size_t off, size_t bytes)
{
    if (c->n_deferred == c->cap_deferred) {
        int cap = c->cap_deferred ? 2 * c->cap_deferred : 16;
        cu_deferred *d = eng_realloc(c->deferred, (size_t)cap * sizeof *d);
        if (!d) cu_fatal("deferred_push", "out of host memory", __func__, __FILE__, __LINE__);
        c->deferred = d;
        c->cap_deferred = cap;
    }
    c->deferred[c->n_deferred++] = (cu_deferred){dst, off, bytes};
}

static cu_graph *graph_find(cu_ctx *c, uint64_t key, int T, int n_seqs, int bt_stride)
{
    for (int i = 0; i < c->n_graphs; i++) {
        cu_graph *g = &c->graphs[i];
        if (g->key == key && g->T == T && g->n_seqs == n_seqs && g->bt_stride == bt_stride) return g;
    }
    return NULL;
}

static void step_begin(void *ctx, uint64_t key, const qn_seq_desc *seqs, int n_seqs, int T)
{
    cu_ctx *c = ctx;
    cu_enter(c);
    if (c->in_step) cu_fatal("step_begin", "steps do not nest", __func__, __FILE__, __LINE__);
    c->in_step = true;
    c->step_seqs = seqs;
    c->step_alias = seqs;
    c->step_n_seqs = n_seqs;
    c->step_T = T;
    c->mode = CU_EAGER;
    bool decode = n_seqs > 0 && T == n_seqs;
    for (int i = 0; decode && i < n_seqs; i++) decode = seqs[i].n_new == 1 && seqs[i].row0 == i;
    int stride = max_blocks(seqs, n_seqs);
    if (key && !c->opt.no_graphs && decode && T <= c->opt.graph_max_tokens) {
        int b = 16;
        while (b < stride) b *= 2;
        stride = b;
        CUDA_CHECK(cudaStreamSynchronize(c->stream)); /* earlier eager work may still read the arena */
        stage_reset(c);
        cu_graph *g = graph_find(c, key, T, n_seqs, stride);
        if (g) {
            c->mode = CU_REPLAY;
            c->cur = g;
            c->sig_pos = 0;
            g->last_used = ++c->clock;
            c->stats.graph_replays++;
        } else {
            c->mode = CU_CAPTURE;
            c->cur = &c->capture;
            memset(c->cur, 0, sizeof *c->cur);
            c->cur->key = key;
            c->cur->T = T;
            c->cur->n_seqs = n_seqs;
            c->cur->bt_stride = stride;
            CUDA_CHECK(cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeRelaxed));
            c->stats.graph_captures++;
        }
    } else {
        c->stats.eager_steps++;
    }
    c->step_batch = pack_batch(c, seqs, n_seqs, stride);
    c->step_has_batch = true;
}

static void step_end(void *ctx)
{
    cu_ctx *c = ctx;
    cu_enter(c);
    if (!c->in_step) cu_fatal("step_end", "no step is open", __func__, __FILE__, __LINE__);
    if (c->mode == CU_CAPTURE) {
        cudaGraph_t graph = NULL;
        CUDA_CHECK(cudaStreamEndCapture(c->stream, &graph));
        cu_graph g = *c->cur;
        CUDA_CHECK(cudaGraphInstantiate(&g.exec, graph, 0));
        CUDA_CHECK(cudaGraphDestroy(graph));
        g.stage_end = c->stage_off;
        g.last_used = ++c->clock;
        c->mode = CU_EAGER; /* (cu_graph_clear below must free retired buffers now) */
        if (c->n_graphs == CU_MAX_GRAPHS) { /* evict the least recently used */
            int lru = 0;
            for (int i = 1; i < c->n_graphs; i++)
                if (c->graphs[i].last_used < c->graphs[lru].last_used) lru = i;
            graph_free(&c->graphs[lru]);
            c->graphs[lru] = c->graphs[--c->n_graphs];
        }
        c->graphs[c->n_graphs++] = g;
        memset(&c->capture, 0, sizeof c->capture);
        CUDA_CHECK(cudaGraphLaunch(g.exec, c->stream));
        c->mode = CU_CAPTURE; /* for the deferred copies below */
    } else if (c->mode == CU_REPLAY) {
        if (c->sig_pos != c->cur->n_sigs) {
            char msg[200];
            snprintf(msg, sizeof msg, "graph replay: the step made %d op calls, the captured one %d", c->sig_pos,
                     c->cur->n_sigs);
            cu_fatal("step_end", msg, __func__, __FILE__, __LINE__);
        }
        CUDA_CHECK(cudaGraphLaunch(c->cur->exec, c->stream));
    }
    if (c->mode != CU_EAGER) {
        CUDA_CHECK(cudaStreamSynchronize(c->stream));
        for (int i = 0; i < c->n_deferred; i++)
            memcpy(c->deferred[i].dst, c->h_stage + c->deferred[i].off, c->deferred[i].bytes);
        c->n_deferred = 0;
        stage_reset(c);
    }
    c->mode = CU_EAGER;
    c->cur = NULL;
    c->in_step = false;
    c->step_has_batch = false;
    c->step_seqs = c->step_alias = NULL;
    if (c->n_retired) cu_graph_clear(c); /* buffers retired during the capture */
}

/* ==== memory ops ============================================================================== */

static void *op_alloc(void *ctx, size_t bytes)
{
    return cu_dev_alloc(ctx, bytes, "buffer");
}

static void op_free(void *ctx, void *p)
{
    cu_dev_free(ctx, p);
}

static void op_memset0(void *ctx, void *dst, size_t bytes)
{
    cu_ctx *c = ctx;
    if (!bytes) return;
    uint64_t v[] = {(uintptr_t)dst, bytes};
    if (cu_sig(c, "memset0", v, 2)) return;
    cu_enter(c);
    CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, c->stream));
}

static void op_copy_h2d(void *ctx, void *dst, const void *src, size_t bytes)
{
    cu_ctx *c = ctx;
    if (!bytes) return;
    if (c->mode != CU_EAGER || bytes <= STAGE_SMALL) {
        size_t off = stage_alloc(c, bytes);
        if (off != SIZE_MAX) {
            memcpy(c->h_stage + off, src, bytes);
            uint64_t v[] = {(uintptr_t)dst, bytes, off};
            if (cu_sig(c, "copy_h2d", v, 3)) return;
            cu_enter(c);
            CUDA_CHECK(cudaMemcpyAsync(dst, c->h_stage + off, bytes, cudaMemcpyHostToDevice, c->stream));
            return;
        }
    }
    cu_enter(c); /* large and eager: pageable copy (returns once the driver holds the data) */
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, c->stream));
}

static void op_copy_d2h(void *ctx, void *dst, const void *src, size_t bytes)
{
    cu_ctx *c = ctx;
    if (!bytes) return;
    cu_enter(c);
    if (c->mode == CU_EAGER) {
        CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, c->stream));
        CUDA_CHECK(cudaStreamSynchronize(c->stream));
        if (!c->in_step) stage_reset(c);
        return;
    }
    size_t off = stage_alloc(c, bytes);
    deferred_push(c, dst, off, bytes);
    uint64_t v[] = {(uintptr_t)src, bytes, off};
    if (cu_sig(c, "copy_d2h", v, 3)) return;
    CUDA_CHECK(cudaMemcpyAsync(c->h_stage + off, src, bytes, cudaMemcpyDeviceToHost, c->stream));
}

static void op_copy_d2d(void *ctx, void *dst, const void *src, size_t bytes)
{
    cu_ctx *c = ctx;
    if (!bytes) return;
    uint64_t v[] = {(uintptr_t)dst, (uintptr_t)src, bytes};
    if (cu_sig(c, "copy_d2d", v, 3)) return;
    cu_enter(c);
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, c->stream));
}

static void op_synchronize(void *ctx)
{
    cu_ctx *c = ctx;
    if (c->mode != CU_EAGER) return; /* inside a graph step: completes at step_end */
    cu_enter(c);
    CUDA_CHECK(cudaStreamSynchronize(c->stream));
    if (!c->in_step) stage_reset(c);
}

static void op_mem_info(void *ctx, size_t *budget, size_t *used)
{
    const cu_ctx *c = ctx;
    if (budget) *budget = c->budget;
    if (used) *used = c->used;
}

static eng_status op_weights_fit(void *ctx, uint64_t weight_bytes)
{
    const cu_ctx *c = ctx;
    const size_t left = c->budget > c->used ? c->budget - c->used : 0;
    /* room for activations, scratch and a minimal cache: 1 GiB plus 3% of the weights */
    const uint64_t need = weight_bytes + ((uint64_t)1 << 30) + weight_bytes / 33;
    if (need <= left) return ENG_OK;
    char w[32], l[32], b[32], t[32], m[32], s[32];
    return eng_err_set(ENG_ERR_NOMEM,
                       "the model does not fit on GPU %d (%s): its weights need %s plus about %s for activations and "
                       "caches, but only %s of the budget is left (budget %s = --gpu-memory-fraction %.2f of %s): %s "
                       "short. Try the FP8 checkpoint (about half the bytes of BF16), tensor parallelism over more GPUs "
                       "(--tp 2, 4 or 8 divides the weights), or a larger --gpu-memory-fraction",
                       c->device, c->name, fmtb((double)weight_bytes, w, sizeof w),
                       fmtb((double)(need - weight_bytes), m, sizeof m), fmtb((double)left, l, sizeof l),
                       fmtb((double)c->budget, b, sizeof b), c->opt.memory_fraction, fmtb((double)c->total_mem, t, sizeof t),
                       fmtb((double)(need - left), s, sizeof s));
}

/* ==== reserve ================================================================================= */

static eng_status op_reserve(void *ctx, const qn_op_limits *req)
{
    cu_ctx *c = ctx;
    cu_enter(c);
    qn_op_limits l = c->lim;
    qn_op_limits_max(&l, req);
    if (l.gdn_dk > CU_GDN_DMAX || l.gdn_dv > CU_GDN_DMAX)
        return eng_err_set(ENG_ERR_UNSUPPORTED, "cuda backend: GDN head dims %d x %d exceed %d", l.gdn_dk, l.gdn_dv,
                           CU_GDN_DMAX);
    if (l.gdn_dk > 0 && cu_gdn_chunk_smem(l.gdn_dk, l.gdn_dv) > c->smem_optin)
        return eng_err_set(ENG_ERR_UNSUPPORTED, "cuda backend: the chunked GDN kernel needs %zu bytes of shared memory, "
                           "this GPU allows %zu per block", cu_gdn_chunk_smem(l.gdn_dk, l.gdn_dv), c->smem_optin);
    if (l.attn_head_dim > CU_ATTN_HDMAX || l.attn_group > CU_ATTN_REPMAX)
        return eng_err_set(ENG_ERR_UNSUPPORTED, "cuda backend: attention head dim %d / group %d exceed %d / %d",
                           l.attn_head_dim, l.attn_group, CU_ATTN_HDMAX, CU_ATTN_REPMAX);
    if (l.n_experts > 1024 || l.top_k > 32)
        return eng_err_set(ENG_ERR_UNSUPPORTED, "cuda backend: %d experts top-%d exceed 1024 / 32", l.n_experts, l.top_k);
    if (l.max_tokens > 65535)
        return eng_err_set(ENG_ERR_UNSUPPORTED, "cuda backend: %d tokens per call exceed 65535", l.max_tokens);
    c->lim = l;
    /* size what the limits determine now, so steady-state steps never grow scratch */
    const size_t P = (size_t)l.max_tokens * (size_t)(l.top_k > 0 ? l.top_k : 1);
    const size_t E = (size_t)(l.n_experts > 0 ? l.n_experts : 1), I4 = (size_t)((l.moe_inter + 3) & ~3);
    struct {
        cu_scratch_id id;
        size_t bytes;
    } want[] = {
        {CU_SCR_MOE_I32, (3 * E + 2 + 2 * P) * 4},
        {CU_SCR_MOE_GU, P * 2 * (size_t)l.moe_inter * 4},
        {CU_SCR_MOE_ACT, P * I4 * 4},
        {CU_SCR_MOE_Y, P * (size_t)l.hidden * 4},
        {CU_SCR_ATTN, l.attn_head_dim > 0 ? cu_attn_part_floats(2 * l.attn_group, l.attn_head_dim) * 4 : 0},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        if (!want[i].bytes || (l.n_experts == 0 && want[i].id != CU_SCR_ATTN)) continue;
        if (!scratch_try(c, want[i].id, want[i].bytes)) return eng_err_wrap(ENG_ERR_NOMEM, "cuda backend reserve");
    }
    c->reserved = true;
    return ENG_OK;
}

/* ==== create / destroy ======================================================================== */

static void cu_destroy(eng_backend *be)
{
    if (!be) return;
    cu_ctx *c = be->ctx;
    if (c) {
        if (c->stream) {
            cu_enter(c);
            (void)cudaStreamSynchronize(c->stream);
        }
        c->mode = CU_EAGER;
        cu_graph_clear(c);
        for (int i = 0; i < CU_SCR_COUNT; i++)
            if (c->scr[i].p) really_free(c, c->scr[i].p);
        while (c->n_allocs > 0) really_free(c, c->allocs[c->n_allocs - 1].p); /* leftovers (and the arena mirror) */
        for (int i = 0; i < 2; i++) {
            if (c->up_ev[i]) cudaEventDestroy(c->up_ev[i]);
            if (c->h_up[i]) cudaFreeHost(c->h_up[i]);
        }
        if (c->lt) cublasLtDestroy(c->lt);
        if (c->h_stage) cudaFreeHost(c->h_stage);
        if (c->stream) cudaStreamDestroy(c->stream);
        eng_free(c->allocs);
        eng_free(c->retired);
        eng_free(c->deferred);
        eng_free(c);
    }
    eng_free(be);
}

bool eng_backend_is_cuda(const eng_backend *be)
{
    return be && be->destroy == cu_destroy;
}

int eng_cuda_device_count(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return n;
}

eng_status eng_cuda_device_info_get(int device, eng_cuda_device_info *out)
{
    memset(out, 0, sizeof *out);
    struct cudaDeviceProp p;
    cudaError_t e = cudaGetDeviceProperties(&p, device);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return eng_err_set(ENG_ERR_DEVICE, "CUDA device %d: %s", device, cudaGetErrorString(e));
    }
    snprintf(out->name, sizeof out->name, "%s", p.name);
    out->cc_major = p.major;
    out->cc_minor = p.minor;
    out->sm_count = p.multiProcessorCount;
    out->total_bytes = p.totalGlobalMem;
    int cur = 0;
    if (cudaGetDevice(&cur) == cudaSuccess && cudaSetDevice(device) == cudaSuccess) {
        size_t fr = 0, tot = 0;
        if (cudaMemGetInfo(&fr, &tot) == cudaSuccess) out->free_bytes = fr;
        (void)cudaSetDevice(cur);
    }
    (void)cudaGetLastError();
    cudaDriverGetVersion(&out->driver_version);
    cudaRuntimeGetVersion(&out->runtime_version);
    int clk = 0, bus = 0;
    if (cudaDeviceGetAttribute(&clk, cudaDevAttrMemoryClockRate, device) == cudaSuccess &&
        cudaDeviceGetAttribute(&bus, cudaDevAttrGlobalMemoryBusWidth, device) == cudaSuccess)
        out->peak_bw_gbs = 2.0 * clk * 1e3 * (bus / 8.0) / 1e9; /* DDR: two transfers per clock */
    (void)cudaGetLastError();
    return ENG_OK;
}

void eng_cuda_memory(const eng_backend *be, size_t *budget, size_t *used, size_t *peak)
{
    const cu_ctx *c = eng_backend_is_cuda(be) ? be->ctx : NULL;
    if (budget) *budget = c ? c->budget : 0;
    if (used) *used = c ? c->used : 0;
    if (peak) *peak = c ? c->peak : 0;
}

void eng_cuda_stats_get(const eng_backend *be, eng_cuda_stats *out)
{
    memset(out, 0, sizeof *out);
    if (!eng_backend_is_cuda(be)) return;
    const cu_ctx *c = be->ctx;
    *out = c->stats;
    out->graphs_cached = c->n_graphs;
}

void *eng_cuda_stream(const eng_backend *be)
{
    return eng_backend_is_cuda(be) ? (void *)((const cu_ctx *)be->ctx)->stream : NULL;
}

int eng_cuda_device(const eng_backend *be)
{
    return eng_backend_is_cuda(be) ? ((const cu_ctx *)be->ctx)->device : -1;
}

eng_status eng_cuda_read_bandwidth(eng_backend *be, size_t bytes, int iters, double *gbs)
{
    *gbs = 0;
    if (!eng_backend_is_cuda(be)) return eng_err_set(ENG_ERR_INVALID, "not a CUDA backend");
    cu_ctx *c = be->ctx;
    cu_enter(c);
    const size_t left = c->budget > c->used ? c->budget - c->used : 0;
    if (bytes == 0) bytes = (size_t)1 << 30;
    if (bytes > left / 4) bytes = left / 4;
    bytes &= ~(size_t)((1 << 20) - 1);
    if (bytes < ((size_t)64 << 20)) return eng_err_set(ENG_ERR_NOMEM, "bandwidth probe: less than 256 MiB of the GPU budget left");
    if (iters < 1) iters = 5;
    void *buf = cu_dev_alloc(c, bytes, "bandwidth probe");
    float *sink = cu_dev_alloc(c, 256, "bandwidth probe");
    eng_status st = ENG_OK;
    if (!buf || !sink) {
        st = ENG_ERR_NOMEM;
        goto out;
    }
    CUDA_CHECK(cudaMemsetAsync(buf, 1, bytes, c->stream));
    cudaEvent_t e0, e1;
    CUDA_CHECK(cudaEventCreate(&e0));
    CUDA_CHECK(cudaEventCreate(&e1));
    cu_launch_read_probe(buf, bytes, sink, c->stream); /* warm-up */
    float best = 1e30f;
    for (int i = 0; i < iters; i++) {
        CUDA_CHECK(cudaEventRecord(e0, c->stream));
        cu_launch_read_probe(buf, bytes, sink, c->stream);
        CUDA_CHECK(cudaEventRecord(e1, c->stream));
        CUDA_CHECK(cudaEventSynchronize(e1));
        float ms = 0;
        CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
        if (ms < best) best = ms;
    }
    CUDA_CHECK(cudaEventDestroy(e0));
    CUDA_CHECK(cudaEventDestroy(e1));
    *gbs = (double)bytes / (best * 1e-3) / 1e9;
out:
    if (buf) cu_dev_free(c, buf);
    if (sink) cu_dev_free(c, sink);
    return st;
}

static eng_status dev_err(cudaError_t e, const char *what, int device)
{
    (void)cudaGetLastError();
    return eng_err_set(ENG_ERR_DEVICE, "CUDA device %d: %s: %s", device, what, cudaGetErrorString(e));
}

eng_status eng_backend_cuda_create(const eng_cuda_options *opt, eng_backend **out)
{
    *out = NULL;
    eng_cuda_options o = {0};
    if (opt) o = *opt;
    if (o.memory_fraction <= 0) o.memory_fraction = 0.90;
    if (o.memory_fraction > 1.0 || o.device < 0)
        return eng_err_set(ENG_ERR_INVALID, "cuda backend: memory fraction %.3f must be in (0, 1] and device %d >= 0",
                           o.memory_fraction, o.device);
    if (o.graph_max_tokens <= 0) o.graph_max_tokens = 256;
    if (o.simt_max_tokens <= 0) o.simt_max_tokens = 8;
    if (o.cublas_min_tokens <= 0) o.cublas_min_tokens = 128;
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) return dev_err(e, "no usable CUDA driver (cudaGetDeviceCount)", o.device);
    if (o.device >= n)
        return eng_err_set(ENG_ERR_DEVICE, "CUDA device %d does not exist (%d device%s visible; check "
                           "CUDA_VISIBLE_DEVICES)", o.device, n, n == 1 ? "" : "s");
    if ((e = cudaSetDevice(o.device)) != cudaSuccess) return dev_err(e, "cudaSetDevice", o.device);
    struct cudaDeviceProp p;
    if ((e = cudaGetDeviceProperties(&p, o.device)) != cudaSuccess) return dev_err(e, "properties", o.device);
    if (p.major < 8)
        return eng_err_set(ENG_ERR_UNSUPPORTED, "CUDA device %d (%s) has compute capability %d.%d; the kernels need "
                           "8.0 or newer (bf16 tensor cores)", o.device, p.name, p.major, p.minor);
    eng_status st = ENG_OK;
    eng_backend *be = eng_calloc(1, sizeof *be);
    cu_ctx *c = eng_calloc(1, sizeof *c);
    if (!be || !c) {
        eng_free(be);
        eng_free(c);
        return eng_err_set(ENG_ERR_NOMEM, "cuda backend: out of memory");
    }
    be->ctx = c;
    be->destroy = cu_destroy;
    c->device = o.device;
    c->opt = o;
    c->gemm = o.batch_invariant ? ENG_CUDA_GEMM_FP32 : o.gemm;
    c->sm_count = p.multiProcessorCount;
    int smem = 0;
    if (cudaDeviceGetAttribute(&smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, o.device) != cudaSuccess) smem = 48 << 10;
    c->smem_optin = (size_t)smem;
    snprintf(c->name, sizeof c->name, "cuda:%d %s", o.device, p.name);
    be->name = c->name;
    size_t fr = 0, tot = 0;
    if ((e = cudaMemGetInfo(&fr, &tot)) != cudaSuccess) {
        st = dev_err(e, "cudaMemGetInfo", o.device);
        goto fail;
    }
    c->total_mem = tot;
    c->budget = (size_t)(o.memory_fraction * (double)tot);
    if (c->budget + ((size_t)256 << 20) > fr) { /* someone else holds memory: stay inside what is free */
        char a[32], b[32];
        size_t cap = fr > ((size_t)256 << 20) ? fr - ((size_t)256 << 20) : 0;
        eng_log(ENG_LOG_WARN, "%s: budget %s exceeds the free memory; using %s", c->name,
                fmtb((double)c->budget, a, sizeof a), fmtb((double)cap, b, sizeof b));
        c->budget = cap;
    }
    if ((e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking)) != cudaSuccess) {
        st = dev_err(e, "cudaStreamCreate", o.device);
        goto fail;
    }
    if (cublasLtCreate(&c->lt) != CUBLAS_STATUS_SUCCESS) {
        c->lt = NULL;
        st = eng_err_set(ENG_ERR_DEVICE, "CUDA device %d: cublasLtCreate failed", o.device);
        goto fail;
    }
    if ((e = cudaHostAlloc((void **)&c->h_stage, STAGE_BYTES, cudaHostAllocDefault)) != cudaSuccess) {
        c->h_stage = NULL;
        st = dev_err(e, "cudaHostAlloc of the staging arena", o.device);
        goto fail;
    }
    c->stage_cap = STAGE_BYTES;
    if (!(c->d_stage = cu_dev_alloc(c, STAGE_BYTES, "staging arena")) ||
        !(c->lt_ws = cu_dev_alloc(c, LT_WORKSPACE, "cuBLASLt workspace"))) {
        st = ENG_ERR_NOMEM;
        goto fail;
    }
    c->lt_ws_bytes = LT_WORKSPACE;
    be->alloc = op_alloc;
    be->free = op_free;
    be->memset0 = op_memset0;
    be->copy_h2d = op_copy_h2d;
    be->copy_d2h = op_copy_d2h;
    be->copy_d2d = op_copy_d2d;
    be->synchronize = op_synchronize;
    be->weight_create = cu_weight_create;
    be->weight_destroy = cu_weight_destroy;
    be->weight_bytes = cu_weight_bytes;
    be->reserve = op_reserve;
    be->step_begin = step_begin;
    be->step_end = step_end;
    be->mem_info = op_mem_info;
    be->weights_fit = op_weights_fit;
    cu_set_ops(be);
    *out = be;
    return ENG_OK;
fail:
    cu_destroy(be);
    return st;
}
