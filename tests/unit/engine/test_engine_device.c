/* tests/unit/engine/test_engine_device.c - how the engine and the model meet a device backend, on
 * the CPU (no GPU is needed; the CUDA-specific paths are reached through the optional members of
 * the op table):
 *   - device selection: "cuda" without a CUDA build or without a GPU is a clear
 *     ENG_ERR_UNSUPPORTED (engine and `qnext run --device cuda`), "auto" falls back to the CPU,
 *     an unknown device or memory fraction is ENG_ERR_INVALID, GetModelInfo's device says which;
 *   - the step hooks: a test backend wrapping the CPU backend records step_begin / step_end and the
 *     ops: one pair per forward with rows, on every exit (a collective failing mid-step included),
 *     never nested, every op inside; the key is nonzero and stable for one (model, cache, n_out),
 *     different when any of them changes, 0 with graphs off, with logits too large for a graph
 *     step, and on every rank with tensor parallelism; the descriptors are the batch's; logits are
 *     bitwise those of the plain CPU backend;
 *   - weights_fit: called once per rank before any weight is made, with the rank's share of the
 *     checkpoint; its ENG_ERR_NOMEM (and detail) stops the load, naming the rank under TP;
 *   - cache sizing (the eng_cache_plan policy, then eng_create): host defaults
 *     min(max_running x context, 10% of RAM, 4 GiB), explicit sizes, a lowered context, the device
 *     policy from the memory left (headroom, slots that lower max_running, errors);
 *   - unzeroed caches: with the pools poisoned with NaN (QNEXT_TEST_POISON_CACHE) a model and an
 *     engine give bitwise the results of clean pools (slot reuse, forks, prefix-cache restores,
 *     partial blocks, preemption).
 */
#include "test_engine_util.h"

#include <pthread.h>
#include <stddef.h>
#include <sys/wait.h>

#include "backend/backend.h"
#include "core/core.h"
#include "model/cache.h"
#include "model/model.h"
#include "model/qwen3next.h"   /* defines: qn_model_tp_comm */
#include "sched/engine_impl.h" /* defines: eng_cache_plan, eng_device_resolve */
#include "tp/comm.h"
#ifdef QN_HAVE_CUDA
#include "cuda/cuda_backend.h" /* defines: eng_cuda_device_count */
#endif

static int n_gpus(void)
{
#ifdef QN_HAVE_CUDA
    return eng_cuda_device_count();
#else
    return 0;
#endif
}

/* ==== the recording backend ================================================================== */

#define REC_MAX 256

/* What one wrapped backend saw. The ops receive the inner backend's ctx, so a record is found by
 * it; record r belongs to tensor-parallel rank r (made by that rank's thread). */
typedef struct rec {
    const void *ctx;
    int n_begin, n_end, depth, max_depth;
    int n_outside; /* matmuls during a forward but outside a step */
    int n_matmul;
    uint64_t key[REC_MAX];
    int T[REC_MAX], n_seqs[REC_MAX];
    qn_seq_desc seq0[REC_MAX];
    int32_t bt0[REC_MAX]; /* first block id of the first sequence */
    int n_fit, n_wc, n_wc_at_fit;
    uint64_t fit_bytes;
} rec;

static rec g_rec[4];
static eng_status g_fit_result[4]; /* what weights_fit answers, per rank */
static volatile int g_in_forward;

typedef struct wrap {
    eng_backend be; /* the inner table with some members replaced; be.ctx = the inner ctx */
    eng_backend *inner;
} wrap;

static rec *rec_of(const void *ctx)
{
    for (int i = 0; i < 4; i++)
        if (g_rec[i].ctx == ctx) return &g_rec[i];
    ck_abort_msg("an op with an unknown backend context");
    return NULL;
}

static eng_backend *inner_of(const void *ctx);

static void w_step_begin(void *ctx, uint64_t key, const qn_seq_desc *seqs, int n_seqs, int T)
{
    rec *r = rec_of(ctx);
    if (r->n_begin < REC_MAX) {
        r->key[r->n_begin] = key;
        r->T[r->n_begin] = T;
        r->n_seqs[r->n_begin] = n_seqs;
        r->seq0[r->n_begin] = seqs[0];
        r->bt0[r->n_begin] = seqs[0].n_blocks > 0 ? seqs[0].block_table[0] : -1;
    }
    r->n_begin++;
    if (++r->depth > r->max_depth) r->max_depth = r->depth;
}

static void w_step_end(void *ctx)
{
    rec *r = rec_of(ctx);
    r->n_end++;
    r->depth--;
}

static void w_matmul(void *ctx, const qn_weight *w, int mat, const float *x, int64_t ldx, int T, float *y,
                     int64_t ldy)
{
    rec *r = rec_of(ctx);
    r->n_matmul++;
    if (g_in_forward && r->depth == 0) r->n_outside++;
    inner_of(ctx)->matmul(ctx, w, mat, x, ldx, T, y, ldy);
}

static eng_status w_weight_create(void *ctx, const qn_weight_desc *d, qn_weight **out)
{
    rec_of(ctx)->n_wc++;
    return inner_of(ctx)->weight_create(ctx, d, out);
}

static eng_status w_weights_fit(void *ctx, uint64_t bytes)
{
    rec *r = rec_of(ctx);
    r->n_fit++;
    r->n_wc_at_fit = r->n_wc;
    r->fit_bytes = bytes;
    const int rank = (int)(r - g_rec);
    if (g_fit_result[rank] != ENG_OK)
        return eng_err_set(g_fit_result[rank], "test backend: %llu bytes do not fit (rank %d)",
                           (unsigned long long)bytes, rank);
    return ENG_OK;
}

static void w_destroy(eng_backend *be)
{
    wrap *w = (wrap *)(void *)((char *)be - offsetof(wrap, be));
    eng_backend_destroy(w->inner);
    free(w);
}

static wrap *g_wraps[4];

static eng_backend *inner_of(const void *ctx)
{
    for (int i = 0; i < 4; i++)
        if (g_wraps[i] && g_wraps[i]->inner->ctx == ctx) return g_wraps[i]->inner;
    ck_abort_msg("unknown backend context");
    return NULL;
}

/* A CPU backend (1 thread) wrapped for rank `rank`; `fit` adds the weights_fit member. */
static eng_backend *wrap_create(int rank, bool fit)
{
    eng_cpu_options o = {1, ENG_SIMD_AUTO};
    eng_backend *inner = NULL;
    ck_assert_msg(eng_backend_cpu_create(&o, &inner) == ENG_OK, "%s", eng_err_last());
    wrap *w = calloc(1, sizeof *w);
    ck_assert_ptr_nonnull(w);
    w->inner = inner;
    w->be = *inner;
    w->be.destroy = w_destroy;
    w->be.step_begin = w_step_begin;
    w->be.step_end = w_step_end;
    w->be.matmul = w_matmul;
    w->be.weight_create = w_weight_create;
    if (fit) w->be.weights_fit = w_weights_fit;
    memset(&g_rec[rank], 0, sizeof g_rec[rank]);
    g_rec[rank].ctx = inner->ctx;
    g_wraps[rank] = w;
    return &w->be;
}

static bool g_factory_fit;

static eng_status wrap_factory(void *ctx, int rank, eng_backend **out)
{
    (void)ctx;
    *out = wrap_create(rank, g_factory_fit);
    return ENG_OK;
}

typedef struct rig {
    eng_backend *be;
    qn_model *m;
    qn_cache *c;
} rig;

static eng_status rig_load(rig *r, const char *dir, int world, bool fit, int max_tokens)
{
    memset(r, 0, sizeof *r);
    memset(g_wraps, 0, sizeof g_wraps);
    memset(g_rec, 0, sizeof g_rec);
    g_factory_fit = fit;
    r->be = wrap_create(0, fit);
    qn_model_params mp = {.max_tokens = max_tokens,
                          .quiet = true,
                          .tp_world = world,
                          .tp_threads = 1,
                          .tp_backend = world > 1 ? wrap_factory : NULL,
                          .tp_timeout_ms = 2000};
    eng_status st = qn_model_load(dir, r->be, &mp, &r->m);
    if (st != ENG_OK) return st;
    qn_cache_params cp = {.n_slots = 4, .n_blocks = 64, .block_size = 16};
    ck_assert_msg(qn_cache_create(r->m, &cp, &r->c) == ENG_OK, "%s", eng_err_last());
    return ENG_OK;
}

static void rig_close(rig *r)
{
    qn_cache_destroy(r->c);
    qn_model_destroy(r->m);
    eng_backend_destroy(r->be);
}

/* One forward; n_seqs sequences of n_new[i] tokens at pos[i] in slot i (blocks 8i..), logits of
 * the last row of each sequence, or of n_out rows counted from row 0 when n_out > n_seqs. */
static eng_status fwd(rig *r, qn_cache *c, int n_seqs, const int *n_new, const int *pos, int n_out,
                      float *logits)
{
    static int32_t tok[256], bt[4][8], rows[256];
    qn_seq seqs[4];
    int T = 0;
    for (int i = 0; i < n_seqs; i++) {
        for (int k = 0; k < 8; k++) bt[i][k] = 8 * i + k;
        seqs[i] = (qn_seq){n_new[i], pos[i], i, bt[i], 8};
        for (int t = 0; t < n_new[i]; t++) tok[T + t] = 300 + (7 * (pos[i] + t) + 13 * i) % 3000;
        T += n_new[i];
        if (n_out <= n_seqs) rows[i] = T - 1;
    }
    if (n_out > n_seqs)
        for (int i = 0; i < n_out; i++) rows[i] = i;
    qn_batch b = {T, tok, n_seqs, seqs, n_out, rows};
    g_in_forward = 1;
    eng_status st = qn_model_forward(r->m, c, &b, logits);
    g_in_forward = 0;
    return st;
}

/* ==== device selection ======================================================================== */

START_TEST(test_device_cuda_without_gpu)
{
    eng_config c = tm_config_small();
    c.device = "cuda";
    eng_engine *e = (eng_engine *)1;
    eng_status st = eng_create(&c, &e);
    if (n_gpus() > 0) { /* a machine with a GPU: it must work instead */
        ck_assert_msg(st == ENG_OK, "%s", eng_err_last());
        eng_model_info mi;
        eng_get_model_info(e, &mi);
        ck_assert_str_eq(mi.device, "cuda");
        eng_destroy(e);
        return;
    }
    ck_assert_int_eq(st, ENG_ERR_UNSUPPORTED);
    ck_assert_ptr_null(e);
#ifdef QN_HAVE_CUDA
    ck_assert_msg(strstr(eng_err_last(), "no CUDA device found") && strstr(eng_err_last(), "--device cpu"),
                  "%s", eng_err_last());
#else
    ck_assert_msg(strstr(eng_err_last(), "this build has no CUDA backend"), "%s", eng_err_last());
#endif
    eng_device_kind k;
    ck_assert_int_eq(eng_device_resolve("cuda", &k), ENG_ERR_UNSUPPORTED);
    /* tensor parallelism asks for the device first: the same error, not an NCCL one */
    c.tp = 2;
    c.model_dir = tm_tp;
    ck_assert_int_eq(eng_create(&c, &e), ENG_ERR_UNSUPPORTED);
}
END_TEST

START_TEST(test_device_auto_cpu_and_bad_names)
{
    eng_config c = tm_config_small();
    c.device = "auto";
    eng_engine *e = tm_engine(&c);
    eng_model_info mi;
    eng_get_model_info(e, &mi);
    ck_assert_str_eq(mi.device, n_gpus() > 0 ? "cuda" : "cpu");
    eng_destroy(e);
    c.device = NULL; /* the default */
    e = tm_engine(&c);
    eng_get_model_info(e, &mi);
    ck_assert_str_eq(mi.device, "cpu");
    eng_destroy(e);
    c.device = "cpu";
    e = tm_engine(&c);
    eng_destroy(e);
    eng_device_kind k = ENG_DEVICE_CUDA;
    ck_assert_int_eq(eng_device_resolve("cpu", &k), ENG_OK);
    ck_assert_int_eq(k, ENG_DEVICE_CPU);
    ck_assert_int_eq(eng_device_resolve("CUDA", &k), ENG_ERR_INVALID);
    c.device = "gpu";
    ck_assert_int_eq(eng_create(&c, &e), ENG_ERR_INVALID);
    ck_assert_msg(strstr(eng_err_last(), "\"gpu\"") && strstr(eng_err_last(), "cpu, cuda or auto"), "%s",
                  eng_err_last());
    c.device = "cpu";
    c.gpu_memory_fraction = 1.5;
    ck_assert_int_eq(eng_create(&c, &e), ENG_ERR_INVALID);
    ck_assert_msg(strstr(eng_err_last(), "gpu_memory_fraction"), "%s", eng_err_last());
}
END_TEST

/* `qnext run --device cuda` on this machine: exit 1 and the engine's sentence on stderr. */
START_TEST(test_cli_device_flag)
{
    if (n_gpus() > 0) return; /* (a GPU machine runs it for real; nothing to refuse) */
    const char *bin = getenv("QNEXT_BIN");
    ck_assert_ptr_nonnull(bin);
    char cmd[2048], err[1024];
    snprintf(err, sizeof err, "%s/device-err.txt", tm_model);
    snprintf(cmd, sizeof cmd,
             "%s/qnext run --model %s --device cuda --prompt hi --max-tokens 1 >/dev/null 2>%s", bin,
             tm_model, err);
    int st = system(cmd);
    ck_assert(WIFEXITED(st));
    ck_assert_int_eq(WEXITSTATUS(st), 1);
    FILE *f = fopen(err, "r");
    ck_assert_ptr_nonnull(f);
    char text[2048] = "";
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = '\0';
    fclose(f);
    unlink(err);
    ck_assert_msg(strstr(text, "cuda") &&
                      (strstr(text, "no CUDA device found") || strstr(text, "no CUDA backend")),
                  "%s", text);
    /* a bad device name is a load error too; --device auto runs */
    snprintf(cmd, sizeof cmd,
             "%s/qnext run --model %s --device auto --prompt hi --max-tokens 2 --ignore-eos --threads 1 "
             "--kv-cache-mb 4 >/dev/null 2>/dev/null",
             bin, tm_model);
    st = system(cmd);
    ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}
END_TEST

/* ==== step hooks ============================================================================== */

static void check_pairs(const rec *r, int n_forwards)
{
    ck_assert_int_eq(r->n_begin, n_forwards);
    ck_assert_int_eq(r->n_end, n_forwards);
    ck_assert_int_eq(r->depth, 0);
    ck_assert_int_le(r->max_depth, 1); /* never nested */
    ck_assert_int_eq(r->n_outside, 0);
}

START_TEST(test_step_hooks_one_rank)
{
    rig r;
    ck_assert_msg(rig_load(&r, tm_tp, 1, false, 160) == ENG_OK, "%s", eng_err_last());
    const int V = qn_model_vocab(r.m);
    float *lg = malloc((size_t)4 * V * sizeof *lg), *ref = malloc((size_t)4 * V * sizeof *ref);
    const rec *g = &g_rec[0];
    int n1[] = {10, 7}, p0[] = {0, 0}, d1[] = {1, 1}, p10[] = {10, 7};
    /* prefill, then two decode steps of the same shape */
    ck_assert_int_eq(fwd(&r, r.c, 1, n1, p0, 1, lg), ENG_OK);
    ck_assert_int_eq(fwd(&r, r.c, 1, d1, p10, 1, lg), ENG_OK);
    p10[0] = 11;
    ck_assert_int_eq(fwd(&r, r.c, 1, d1, p10, 1, lg), ENG_OK);
    check_pairs(g, 3);
    ck_assert(g->key[0] != 0 && g->key[1] == g->key[0] && g->key[2] == g->key[0]);
    ck_assert_int_eq(g->T[0], 10);
    ck_assert_int_eq(g->T[1], 1);
    ck_assert_int_eq(g->n_seqs[0], 1);
    ck_assert_int_eq(g->seq0[1].pos, 10);
    ck_assert_int_eq(g->seq0[2].pos, 11);
    ck_assert_int_eq(g->seq0[1].n_new, 1);
    ck_assert_int_eq(g->seq0[1].row0, 0);
    ck_assert_int_eq(g->seq0[1].n_blocks, 8);
    ck_assert_int_eq(g->bt0[1], 0);
    /* n_out changes the key; so does another cache */
    ck_assert_int_eq(fwd(&r, r.c, 2, n1, p0, 2, lg), ENG_OK);
    ck_assert(g->key[3] != 0 && g->key[3] != g->key[0]);
    ck_assert_int_eq(g->T[3], 17);
    ck_assert_int_eq(g->n_seqs[3], 2);
    qn_cache *c2 = NULL;
    qn_cache_params cp = {.n_slots = 4, .n_blocks = 64, .block_size = 16};
    ck_assert_int_eq(qn_cache_create(r.m, &cp, &c2), ENG_OK);
    ck_assert_int_eq(fwd(&r, c2, 1, n1, p0, 1, lg), ENG_OK);
    ck_assert(g->key[4] != 0 && g->key[4] != g->key[0]);
    /* graphs off: key 0; on again: the same key as before */
    qn_model_set_graphs(r.m, false);
    ck_assert_int_eq(fwd(&r, r.c, 1, d1, p10, 1, lg), ENG_OK);
    ck_assert(g->key[5] == 0);
    qn_model_set_graphs(r.m, true);
    ck_assert_int_eq(fwd(&r, c2, 1, n1, p0, 1, lg), ENG_OK);
    ck_assert(g->key[6] == g->key[4]);
    check_pairs(g, 7);
    /* no rows, or a batch refused before computing: no step at all */
    qn_batch empty = {0, NULL, 0, NULL, 0, NULL};
    ck_assert_int_eq(qn_model_forward(r.m, r.c, &empty, NULL), ENG_OK);
    int bad_pos[] = {-1};
    ck_assert_int_eq(fwd(&r, r.c, 1, d1, bad_pos, 1, lg), ENG_ERR_INVALID);
    check_pairs(g, 7);
    ck_assert_int_gt(g->n_matmul, 0);

    /* the hooks change nothing: the plain CPU backend gives the same bits */
    int ab[] = {5, 9}, pa[] = {0, 0};
    ck_assert_int_eq(fwd(&r, c2, 2, ab, pa, 2, lg), ENG_OK);
    qn_cache_destroy(c2);
    rig_close(&r);
    eng_backend *cpu = NULL;
    ck_assert_int_eq(eng_backend_cpu_create(&(eng_cpu_options){1, ENG_SIMD_AUTO}, &cpu), ENG_OK);
    qn_model_params mp = {.max_tokens = 160, .quiet = true};
    rig p = {cpu, NULL, NULL};
    ck_assert_int_eq(qn_model_load(tm_tp, cpu, &mp, &p.m), ENG_OK);
    ck_assert_int_eq(qn_cache_create(p.m, &cp, &p.c), ENG_OK);
    ck_assert_int_eq(fwd(&p, p.c, 2, ab, pa, 2, ref), ENG_OK);
    ck_assert_mem_eq(lg, ref, (size_t)2 * V * sizeof *lg);
    rig_close(&p);
    free(lg);
    free(ref);
}
END_TEST

/* Logits of more than 32 MiB in one step could not be staged for a CUDA graph: key 0. With the
 * full vocabulary (151936 floats = 594 KiB a row) that is 56 rows or more. */
START_TEST(test_step_key_large_logits)
{
    rig r;
    ck_assert_msg(rig_load(&r, tm_model, 1, false, 64) == ENG_OK, "%s", eng_err_last());
    const int V = qn_model_vocab(r.m);
    ck_assert_int_eq(V, TM_VOCAB);
    float *lg = malloc((size_t)60 * V * sizeof *lg);
    int n[] = {60}, p[] = {0};
    ck_assert_int_eq(fwd(&r, r.c, 1, n, p, 55, lg), ENG_OK); /* 55 x 607744 B = 31.9 MiB */
    ck_assert_int_eq(fwd(&r, r.c, 1, n, p, 56, lg), ENG_OK); /* 32.5 MiB */
    check_pairs(&g_rec[0], 2);
    ck_assert(g_rec[0].key[0] != 0);
    ck_assert(g_rec[0].key[1] == 0);
    free(lg);
    rig_close(&r);
}
END_TEST

START_TEST(test_step_hooks_tp2)
{
    rig r;
    ck_assert_msg(rig_load(&r, tm_tp, 2, false, 160) == ENG_OK, "%s", eng_err_last());
    const int V = qn_model_vocab(r.m);
    float *lg = malloc((size_t)4 * V * sizeof *lg);
    int n1[] = {10, 7}, p0[] = {0, 0}, d1[] = {1, 1}, p10[] = {10, 7};
    ck_assert_int_eq(fwd(&r, r.c, 2, n1, p0, 2, lg), ENG_OK);
    ck_assert_int_eq(fwd(&r, r.c, 2, d1, p10, 2, lg), ENG_OK);
    for (int rank = 0; rank < 2; rank++) {
        const rec *g = &g_rec[rank];
        ck_assert_int_eq(g->n_begin, 2);
        ck_assert_int_eq(g->n_end, 2);
        ck_assert_int_le(g->max_depth, 1);
        ck_assert_msg(g->key[0] == 0 && g->key[1] == 0, "rank %d: tensor parallel steps must not be captured",
                      rank);
        ck_assert_int_eq(g->T[0], 17);
        ck_assert_int_eq(g->T[1], 2);
        ck_assert_int_eq(g->n_seqs[1], 2);
        ck_assert_int_eq(g->seq0[1].pos, 10);
    }
    ck_assert_int_eq(g_rec[0].n_outside, 0);
    /* a rank that stops mid-step: the forward fails, and every rank still closed its step */
    eng_comm_debug_stop_after(qn_model_tp_comm(r.m, 1), 3);
    ck_assert_int_ne(fwd(&r, r.c, 2, d1, p10, 2, lg), ENG_OK);
    for (int rank = 0; rank < 2; rank++) {
        ck_assert_int_eq(g_rec[rank].n_begin, 3);
        ck_assert_msg(g_rec[rank].n_end == 3 && g_rec[rank].depth == 0, "rank %d left its step open", rank);
    }
    free(lg);
    rig_close(&r);
}
END_TEST

/* ==== weights_fit ============================================================================= */

/* Bytes of every tensor in dir's checkpoint (the tiny models have no mtp.* and no scales). */
static uint64_t checkpoint_bytes(const char *dir)
{
    eng_st_model *st = NULL;
    ck_assert_int_eq(eng_st_open(dir, false, &st), ENG_OK);
    uint64_t n = 0;
    for (size_t i = 0; i < eng_st_count(st); i++) n += eng_st_at(st, i)->n_bytes;
    eng_st_close(st);
    return n;
}

START_TEST(test_weights_fit)
{
    rig r;
    memset(g_fit_result, 0, sizeof g_fit_result);
    ck_assert_msg(rig_load(&r, tm_tp, 1, true, 64) == ENG_OK, "%s", eng_err_last());
    const uint64_t all = checkpoint_bytes(tm_tp);
    ck_assert_int_eq(g_rec[0].n_fit, 1);
    ck_assert_int_eq(g_rec[0].n_wc_at_fit, 0); /* asked before any weight was made */
    ck_assert_int_gt(g_rec[0].n_wc, 0);
    ck_assert_uint_eq(g_rec[0].fit_bytes, all);
    rig_close(&r);

    /* TP 2: each rank is asked about its share: the same for both, more than half (replicated
     * norms and routers) and less than the whole */
    ck_assert_msg(rig_load(&r, tm_tp, 2, true, 64) == ENG_OK, "%s", eng_err_last());
    for (int rank = 0; rank < 2; rank++) {
        ck_assert_int_eq(g_rec[rank].n_fit, 1);
        ck_assert_int_eq(g_rec[rank].n_wc_at_fit, 0);
        ck_assert_uint_eq(g_rec[rank].fit_bytes, g_rec[0].fit_bytes);
        ck_assert(g_rec[rank].fit_bytes > all / 2 && g_rec[rank].fit_bytes < all);
    }
    rig_close(&r);

    /* a refusal stops the load before any weight, with the backend's detail */
    g_fit_result[0] = ENG_ERR_NOMEM;
    ck_assert_int_eq(rig_load(&r, tm_tp, 1, true, 64), ENG_ERR_NOMEM);
    ck_assert_ptr_null(r.m);
    ck_assert_int_eq(g_rec[0].n_wc, 0);
    ck_assert_msg(strstr(eng_err_last(), "do not fit") && strstr(eng_err_last(), tm_tp), "%s",
                  eng_err_last());
    eng_backend_destroy(r.be);
    /* TP 2, rank 1 refuses: the load fails naming rank 1 */
    g_fit_result[0] = ENG_OK;
    g_fit_result[1] = ENG_ERR_NOMEM;
    ck_assert_int_eq(rig_load(&r, tm_tp, 2, true, 64), ENG_ERR_NOMEM);
    ck_assert_ptr_null(r.m);
    ck_assert_msg(strstr(eng_err_last(), "rank 1") && strstr(eng_err_last(), "do not fit"), "%s",
                  eng_err_last());
    eng_backend_destroy(r.be);
    g_fit_result[1] = ENG_OK;
}
END_TEST

/* ==== cache sizing ============================================================================ */

#define GiB ((size_t)1 << 30)
#define MiB ((size_t)1 << 20)

static eng_cache_plan host_plan(size_t block_bytes, int max_running, int len, size_t phys)
{
    eng_cache_plan p = {.block_bytes = block_bytes,
                        .slot_bytes = 430080,
                        .world = 1,
                        .block_size = 16,
                        .phys_bytes = phys,
                        .max_running = max_running,
                        .max_model_len = len};
    return p;
}

START_TEST(test_plan_host_defaults)
{
    /* the demo model's numbers: 32 KiB blocks, 262144-token context, 64 sequences */
    eng_cache_plan p = host_plan(32768, 64, 262144, 16 * GiB);
    ck_assert_int_eq(eng_cache_plan_make(&p), ENG_OK);
    ck_assert_int_eq(p.n_blocks, (int)((16 * GiB / 10) / 32768)); /* 10% of RAM binds */
    ck_assert_int_eq(p.n_slots, 65);
    ck_assert_int_eq(p.len_limited, 0); /* 52428 blocks hold the whole context */
    ck_assert_int_eq(p.max_model_len, 262144);
    ck_assert_int_eq(p.max_running, 64);
    p = host_plan(32768, 64, 262144, 2 * GiB);
    ck_assert_int_eq(eng_cache_plan_make(&p), ENG_OK);
    ck_assert_int_eq(p.n_blocks, (int)((2 * GiB / 10) / 32768)); /* 6553 blocks: the context shrinks */
    ck_assert_int_eq(p.len_limited, 262144);
    ck_assert_int_eq(p.max_model_len, (p.n_blocks - 1) * 16);
    p = host_plan(32768, 64, 262144, 256 * GiB);
    ck_assert_int_eq(eng_cache_plan_make(&p), ENG_OK);
    ck_assert_int_eq(p.n_blocks, (int)(4 * GiB / 32768)); /* then 4 GiB */
    p = host_plan(32768, 1, 1024, 16 * GiB);
    ck_assert_int_eq(eng_cache_plan_make(&p), ENG_OK);
    ck_assert_int_eq(p.n_blocks, 1 * (1024 / 16 + 1)); /* what one sequence needs */
    ck_assert_int_eq(p.n_slots, 2);
    ck_assert_int_eq(p.len_limited, 0);
    ck_assert_int_eq(p.max_model_len, 1024);
    p = host_plan(32768, 4, 1000, 0); /* unknown RAM: the other two bounds */
    ck_assert_int_eq(eng_cache_plan_make(&p), ENG_OK);
    ck_assert_int_eq(p.n_blocks, 4 * (63 + 1));
    /* explicit sizes win */
    p = host_plan(32768, 64, 262144, 16 * GiB);
    p.kv_cache_bytes = 100 * MiB;
    p.n_state_slots = 80;
    ck_assert_int_eq(eng_cache_plan_make(&p), ENG_OK);
    ck_assert_int_eq(p.n_blocks, 3200);
    ck_assert_int_eq(p.n_slots, 80);
    /* an explicit context the pool cannot hold; caches over 90% of RAM */
    p = host_plan(32768, 64, 262144, 16 * GiB);
    p.kv_cache_bytes = 100 * MiB;
    p.len_explicit = true;
    ck_assert_int_eq(eng_cache_plan_make(&p), ENG_ERR_INVALID);
    ck_assert_msg(strstr(eng_err_last(), "max_model_len"), "%s", eng_err_last());
    p = host_plan(32768, 4, 1024, 1 * GiB);
    p.n_state_slots = 4000; /* 4000 x 420 KiB */
    ck_assert_int_eq(eng_cache_plan_make(&p), ENG_ERR_NOMEM);
    ck_assert_msg(strstr(eng_err_last(), "lower max_running"), "%s", eng_err_last());
}
END_TEST

START_TEST(test_plan_device)
{
    /* 10 GiB left after the weights, one GPU, full-size state slots (74 MiB), 1 MiB KV blocks */
    eng_cache_plan p = {.block_bytes = MiB,
                        .slot_bytes = 74 * MiB,
                        .world = 1,
                        .block_size = 16,
                        .device = true,
                        .room = 10 * GiB,
                        .max_running = 64,
                        .max_model_len = 4096,
                        .phys_bytes = 1 * GiB};
    ck_assert_int_eq(eng_cache_plan_make(&p), ENG_OK);
    const size_t head = 10 * GiB / 32, avail = 10 * GiB - head;
    ck_assert_int_eq(p.n_slots, 65); /* 4.7 GiB: within half of avail */
    ck_assert_int_eq(p.n_blocks,
                     (int)((avail - 65 * 74 * MiB) / MiB)); /* the rest (less than 64 x 257 wanted) */
    ck_assert_int_eq(p.max_running, 64);
    ck_assert_str_eq(p.note, "");
    /* (host RAM does not limit device caches: 1 GiB of RAM above) */

    /* two ranks share every block and slot: each holds half */
    p = (eng_cache_plan){.block_bytes = MiB,
                         .slot_bytes = 74 * MiB,
                         .world = 2,
                         .block_size = 16,
                         .device = true,
                         .room = 10 * GiB,
                         .max_running = 64,
                         .max_model_len = 4096};
    ck_assert_int_eq(eng_cache_plan_make(&p), ENG_OK);
    ck_assert_int_eq(p.n_slots, 65);
    ck_assert_int_eq(p.n_blocks, (int)((avail - 65 * 37 * MiB) / (MiB / 2)));
    p.room = 20 * GiB; /* then everything wanted fits */
    ck_assert_int_eq(eng_cache_plan_make(&p), ENG_OK);
    ck_assert_int_eq(p.n_blocks, 64 * (256 + 1));

    /* too many slots for half the room: max_running drops, and says so */
    p = (eng_cache_plan){.block_bytes = MiB,
                         .slot_bytes = 74 * MiB,
                         .world = 1,
                         .block_size = 16,
                         .device = true,
                         .room = 4 * GiB,
                         .max_running = 64,
                         .max_model_len = 4096};
    ck_assert_int_eq(eng_cache_plan_make(&p), ENG_OK);
    const size_t avail4 = 4 * GiB - 256 * MiB; /* headroom at its 256 MiB floor */
    ck_assert_int_eq(p.n_slots, (int)(avail4 / 2 / (74 * MiB)));
    ck_assert_int_eq(p.max_running, p.n_slots - 1);
    ck_assert_msg(strstr(p.note, "max_running lowered from 64"), "%s", p.note);

    /* explicit KV bytes that do not fit; explicit slots that do not fit; no room at all */
    p = (eng_cache_plan){.block_bytes = MiB,
                         .slot_bytes = 74 * MiB,
                         .world = 1,
                         .block_size = 16,
                         .device = true,
                         .room = 4 * GiB,
                         .max_running = 4,
                         .max_model_len = 4096,
                         .kv_cache_bytes = 8 * GiB};
    ck_assert_int_eq(eng_cache_plan_make(&p), ENG_ERR_NOMEM);
    ck_assert_msg(strstr(eng_err_last(), "KV cache"), "%s", eng_err_last());
    p = (eng_cache_plan){.block_bytes = MiB,
                         .slot_bytes = 74 * MiB,
                         .world = 1,
                         .block_size = 16,
                         .device = true,
                         .room = 4 * GiB,
                         .max_running = 4,
                         .max_model_len = 4096,
                         .n_state_slots = 100};
    ck_assert_int_eq(eng_cache_plan_make(&p), ENG_ERR_NOMEM);
    ck_assert_msg(strstr(eng_err_last(), "state slots"), "%s", eng_err_last());
    p = (eng_cache_plan){.block_bytes = MiB,
                         .slot_bytes = 74 * MiB,
                         .world = 1,
                         .block_size = 16,
                         .device = true,
                         .room = 200 * MiB,
                         .max_running = 4,
                         .max_model_len = 4096};
    ck_assert_int_eq(eng_cache_plan_make(&p), ENG_ERR_NOMEM);
    ck_assert_msg(strstr(eng_err_last(), "gpu-memory-fraction"), "%s", eng_err_last());
}
END_TEST

/* eng_create with the default KV size: max_running x context (the tiny model's block: 1 attention
 * layer x 16 positions x 1 KV head x 32 dims x K,V x 4 bytes = 4 KiB, far under the caps). */
START_TEST(test_engine_default_kv)
{
    eng_config c = tm_config_small();
    c.kv_cache_bytes = 0;
    c.max_running = 16;
    c.max_model_len = 1024;
    eng_engine *e = tm_engine(&c);
    eng_stats st;
    eng_get_stats(e, &st);
    ck_assert_int_eq(st.kv_blocks_total, 16 * (1024 / 16 + 1));
    ck_assert_int_eq(st.state_slots_total, 17);
    eng_destroy(e);
    c.max_model_len = 0; /* the model's 4096 */
    c.max_running = 3;
    e = tm_engine(&c);
    eng_get_stats(e, &st);
    ck_assert_int_eq(st.kv_blocks_total, 3 * (4096 / 16 + 1));
    eng_model_info mi;
    eng_get_model_info(e, &mi);
    ck_assert_int_eq(mi.max_model_len, 4096);
    eng_destroy(e);
}
END_TEST

/* ==== unzeroed caches ========================================================================= */

/* Forwards that reuse slots and blocks after other sequences: a fresh sequence in a used slot,
 * decode across a block boundary, a partial prefill; the logits of every step are appended. */
static void cache_workload(const char *dir, float *out, size_t *n_out)
{
    rig r;
    ck_assert_msg(rig_load(&r, dir, 1, false, 160) == ENG_OK, "%s", eng_err_last());
    const int V = qn_model_vocab(r.m);
    *n_out = 0;
    int a[] = {20, 13}, z[] = {0, 0}, one[] = {1, 1}, p[] = {20, 13};
    ck_assert_int_eq(fwd(&r, r.c, 2, a, z, 2, out + *n_out), ENG_OK);
    *n_out += (size_t)2 * V;
    for (int s = 0; s < 14; s++) { /* 13 + 14 crosses a block boundary */
        ck_assert_int_eq(fwd(&r, r.c, 2, one, p, 2, out + *n_out), ENG_OK);
        *n_out += (size_t)2 * V;
        p[0]++;
        p[1]++;
    }
    int b[] = {5, 31};
    ck_assert_int_eq(fwd(&r, r.c, 2, b, z, 2, out + *n_out), ENG_OK); /* fresh sequences in used slots */
    *n_out += (size_t)2 * V;
    ck_assert_int_eq(qn_cache_slot_copy(r.c, 2, 0), ENG_OK);
    rig_close(&r);
}

START_TEST(test_poisoned_cache_model)
{
    const size_t cap = (size_t)40 * TM_SMALL_VOCAB;
    float *clean = malloc(cap * sizeof *clean), *dirty = malloc(cap * sizeof *dirty);
    size_t n1 = 0, n2 = 0;
    unsetenv("QNEXT_TEST_POISON_CACHE");
    cache_workload(tm_tp, clean, &n1);
    setenv("QNEXT_TEST_POISON_CACHE", "1", 1);
    cache_workload(tm_tp, dirty, &n2);
    unsetenv("QNEXT_TEST_POISON_CACHE");
    ck_assert_uint_eq(n1, n2);
    for (size_t i = 0; i < n1; i++)
        ck_assert_msg(isfinite(dirty[i]), "NaN logit %zu: unwritten cache read", i);
    ck_assert_mem_eq(clean, dirty, n1 * sizeof *clean);
    /* the hook itself works: a pool read before any write would be NaN */
    setenv("QNEXT_TEST_POISON_CACHE", "1", 1);
    rig r;
    ck_assert_int_eq(rig_load(&r, tm_tp, 1, false, 16), ENG_OK);
    float *state = malloc(qn_cache_slot_bytes(r.c));
    ck_assert_int_eq(qn_cache_slot_save(r.c, 1, state, qn_cache_slot_bytes(r.c)), ENG_OK);
    ck_assert(isnan(state[0]));
    free(state);
    rig_close(&r);
    unsetenv("QNEXT_TEST_POISON_CACHE");
    free(clean);
    free(dirty);
}
END_TEST

/* The engine on poisoned pools writes the tokens it writes on clean ones: batched requests with
 * shared prefixes (prefix-cache restores and shared blocks) and an n = 2 fork, then the same with a
 * KV pool small enough to preempt. */
typedef struct wl_ctx {
    eng_engine *e;
    eng_request *req;
    tm_result *res;
    int n;
} wl_ctx;

/* Requests 0..2 at step 0, the others (which share request 0's first 50 tokens) at step 4, when
 * request 0's prompt snapshot exists. */
static void wl_submit(void *ctx, int step)
{
    wl_ctx *x = ctx;
    for (int i = 0; i < x->n; i++)
        if ((i < 3 && step == 0) || (i >= 3 && step == 4))
            tm_result_init(&x->res[i], tm_submit(x->e, &x->req[i]), x->req[i].sampling.n);
}

static void engine_workload(tm_result *res, int n, int kv_blocks)
{
    static int32_t ids[6][120];
    eng_request req[6];
    for (int i = 0; i < n; i++) {
        tm_ids(ids[i], 120, 70 + (uint64_t)i);
        if (i >= 3) memcpy(ids[i], ids[0], 50 * sizeof(int32_t));
        eng_request_init(&req[i]);
        req[i].input = ENG_INPUT_TOKENS;
        req[i].tokens = ids[i];
        req[i].n_tokens = (size_t)(40 + 13 * i);
        req[i].sampling.max_tokens = 30;
        req[i].sampling.ignore_eos = true;
        req[i].sampling.n = i == 1 ? 2 : 1;
        req[i].sampling.temperature = i == 1 ? 0.8f : 0.0f;
        req[i].sampling.has_seed = true;
        req[i].sampling.seed = 3;
    }
    eng_config c = tm_config_small();
    c.max_running = 6;
    c.max_model_len = 200;
    c.kv_cache_bytes = (size_t)kv_blocks * 4096;
    eng_engine *e = tm_engine(&c);
    for (int i = 0; i < n; i++) tm_result_init(&res[i], 0, req[i].sampling.n);
    wl_ctx x = {e, req, res, n};
    tm_drive(e, res, n, 100000, wl_submit, &x);
    eng_stats st;
    eng_get_stats(e, &st);
    if (kv_blocks < 40) /* a small pool preempts (and evicts the prefix cache) */
        ck_assert_msg(st.n_preempted_total > 0, "nothing was preempted");
    else
        ck_assert_msg(st.prefix_cache_hit_tokens > 0, "no prefix-cache hit");
    eng_destroy(e);
}

START_TEST(test_poisoned_cache_engine)
{
    static tm_result clean[6], dirty[6];
    for (int round = 0; round < 2; round++) {
        const int kv_blocks = round ? 20 : 200; /* prefix-cache hits and a fork; then preemption */
        unsetenv("QNEXT_TEST_POISON_CACHE");
        engine_workload(clean, 6, kv_blocks);
        setenv("QNEXT_TEST_POISON_CACHE", "1", 1);
        engine_workload(dirty, 6, kv_blocks);
        unsetenv("QNEXT_TEST_POISON_CACHE");
        for (int i = 0; i < 6; i++) {
            ck_assert(!clean[i].error && !dirty[i].error);
            for (int ch = 0; ch < clean[i].n; ch++) {
                ck_assert_int_eq(clean[i].ch[ch].n_tok, 30);
                ck_assert_int_eq(dirty[i].ch[ch].n_tok, 30);
                ck_assert_msg(!memcmp(clean[i].ch[ch].tok, dirty[i].ch[ch].tok, 30 * sizeof(int32_t)),
                              "request %d choice %d differs on a poisoned cache (%d KV blocks)", i, ch,
                              kv_blocks);
            }
        }
    }
}
END_TEST

static Suite *device_suite(void)
{
    Suite *s = suite_create("engine_device");
    TCase *tc = tcase_create("device selection");
    tcase_add_test(tc, test_device_cuda_without_gpu);
    tcase_add_test(tc, test_device_auto_cpu_and_bad_names);
    tcase_add_test(tc, test_cli_device_flag);
    suite_add_tcase(s, tc);
    tc = tcase_create("step hooks and weights_fit");
    tcase_add_test(tc, test_step_hooks_one_rank);
    tcase_add_test(tc, test_step_key_large_logits);
    tcase_add_test(tc, test_step_hooks_tp2);
    tcase_add_test(tc, test_weights_fit);
    suite_add_tcase(s, tc);
    tc = tcase_create("cache sizing");
    tcase_add_test(tc, test_plan_host_defaults);
    tcase_add_test(tc, test_plan_device);
    tcase_add_test(tc, test_engine_default_kv);
    tcase_add_test(tc, test_poisoned_cache_model);
    tcase_add_test(tc, test_poisoned_cache_engine);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    eng_log_set_level(ENG_LOG_ERROR);
    tm_setup();
    SRunner *sr = srunner_create(device_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    tm_cleanup();
    return failed ? 1 : 0;
}
