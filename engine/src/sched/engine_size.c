/* sched/engine_size.c - how many KV blocks and recurrent-state slots an engine gets (the policy of
 * eng_create's cache sizing, as a pure function so that tests can drive it with any machine).
 *
 * Host caches (the CPU backend):
 *   KV       kv_cache_bytes when given; else the smallest of
 *              - what max_running sequences at full context need (plus a spare block each),
 *              - 10% of physical memory,
 *              - 4 GiB;
 *            a small model on a big machine no longer reserves gigabytes it will never fill, and
 *            nothing is touched up front (the pools are not zeroed: model/cache.c), so the size
 *            costs address space, not start-up time.
 *   slots    n_state_slots, or max_running + 1.
 *   The total must stay under 90% of physical memory (a clear error naming the knobs otherwise).
 *
 * Device caches (a backend with mem_info, e.g. CUDA): `room` is the smallest, over the tensor-
 * parallel ranks, of the budget (gpu_memory_fraction x device memory) minus what the rank holds
 * after loading the weights and activations. Each rank holds 1/world of every block and slot.
 *   headroom room/32, within [256 MiB, 2 GiB], is left for scratch that grows on the first steps
 *            (split-GEMM activation halves, cuBLASLt workspace) and the prefix cache's copies;
 *   slots    n_state_slots, or max_running + 1 but at most half of the rest (full-size Qwen3-Next
 *            holds ~74 MiB of recurrent state per sequence): then max_running drops to slots - 1,
 *            with a log line saying so;
 *   KV       kv_cache_bytes when given (an error if it does not fit), else what max_running
 *            sequences at full context need, within what is left.
 * In both cases a context taken from the model shrinks to what the pool holds (an explicit one that
 * does not fit is an error), so one sequence can always run to its context limit.
 */
#include "sched/engine_impl.h"

#include <stdio.h>

#define HOST_KV_CAP ((size_t)4 << 30)
#define MAX_BLOCKS (1 << 26)

static size_t ceil_div(size_t a, size_t b)
{
    return b ? (a + b - 1) / b : 0;
}

/* KV blocks that max_running sequences at full context need (one spare each: copy-on-write). */
static double blocks_wanted(const eng_cache_plan *p, int max_running, int len)
{
    return (double)max_running * (double)(eng_blocks_for_tokens(p->block_size, len) + 1);
}

static eng_status plan_device(eng_cache_plan *p, double *blocks)
{
    char a[32], b[32], c[32];
    const size_t world = (size_t)(p->world > 0 ? p->world : 1);
    const size_t slot_r = ceil_div(p->slot_bytes, world), block_r = ceil_div(p->block_bytes, world);
    size_t headroom = p->room / 32;
    if (headroom < ((size_t)256 << 20)) headroom = (size_t)256 << 20;
    if (headroom > ((size_t)2 << 30)) headroom = (size_t)2 << 30;
    if (p->room <= headroom + slot_r * 2 + block_r * 2)
        return eng_err_set(
            ENG_ERR_NOMEM,
            "engine: after the weights, %s of GPU memory is left per GPU: not enough for the caches "
            "(%s kept for scratch). Raise --gpu-memory-fraction, use the FP8 checkpoint, or more --tp",
            eng_fmt_bytes((double)p->room, a, sizeof a), eng_fmt_bytes((double)headroom, b, sizeof b));
    const size_t avail = p->room - headroom;
    if (p->n_state_slots > 0) {
        p->n_slots = p->n_state_slots;
        if ((double)p->n_slots * (double)slot_r > (double)avail)
            return eng_err_set(
                ENG_ERR_NOMEM,
                "engine: %d state slots need %s per GPU, only %s is left after the weights: lower "
                "--state-slots / max_running",
                p->n_slots, eng_fmt_bytes((double)p->n_slots * (double)slot_r, a, sizeof a),
                eng_fmt_bytes((double)avail, b, sizeof b));
    } else {
        p->n_slots = p->max_running + 1;
        const size_t half = avail / 2;
        if (slot_r && (double)p->n_slots * (double)slot_r > (double)half) {
            int fit = (int)(half / slot_r);
            if (fit < 2) fit = 2;
            snprintf(
                p->note, sizeof p->note,
                "max_running lowered from %d to %d: %d state slots of %s per GPU fill half of the %s left "
                "after the weights",
                p->max_running, fit - 1, fit, eng_fmt_bytes((double)slot_r, a, sizeof a),
                eng_fmt_bytes((double)avail, b, sizeof b));
            p->n_slots = fit;
            p->max_running = fit - 1;
        }
    }
    const size_t slots_r = (size_t)p->n_slots * slot_r;
    const size_t kv_left = avail > slots_r ? avail - slots_r : 0;
    if (p->kv_cache_bytes > 0) {
        *blocks = p->block_bytes ? (double)(p->kv_cache_bytes / p->block_bytes) : 1.0;
        if (*blocks * (double)block_r > (double)kv_left)
            return eng_err_set(
                ENG_ERR_NOMEM,
                "engine: a KV cache of %s needs %s per GPU, only %s is left after the weights and "
                "%d state slots: lower the KV cache size",
                eng_fmt_bytes((double)p->kv_cache_bytes, a, sizeof a),
                eng_fmt_bytes(*blocks * (double)block_r, b, sizeof b),
                eng_fmt_bytes((double)kv_left, c, sizeof c), p->n_slots);
        return ENG_OK;
    }
    *blocks = blocks_wanted(p, p->max_running, p->max_model_len);
    if (block_r && *blocks > (double)(kv_left / block_r)) *blocks = (double)(kv_left / block_r);
    return ENG_OK;
}

static void plan_host(eng_cache_plan *p, double *blocks)
{
    p->n_slots = p->n_state_slots > 0 ? p->n_state_slots : p->max_running + 1;
    if (p->kv_cache_bytes > 0) {
        *blocks = p->block_bytes ? (double)(p->kv_cache_bytes / p->block_bytes) : 1.0;
        return;
    }
    double budget = blocks_wanted(p, p->max_running, p->max_model_len) * (double)p->block_bytes;
    if (p->phys_bytes && budget > (double)p->phys_bytes / 10) budget = (double)p->phys_bytes / 10;
    if (budget > (double)HOST_KV_CAP) budget = (double)HOST_KV_CAP;
    *blocks = p->block_bytes ? (double)(size_t)(budget / (double)p->block_bytes) : 1.0;
}

eng_status eng_cache_plan_make(eng_cache_plan *p)
{
    p->note[0] = '\0';
    p->n_blocks = p->n_slots = 0;
    if (p->block_size < 1 || p->max_running < 1 || p->max_model_len < 1)
        return eng_err_set(ENG_ERR_INVALID,
                           "engine: cache plan with block size %d, max_running %d, context %d", p->block_size,
                           p->max_running, p->max_model_len);
    double blocks = 0;
    if (p->device) {
        eng_status st = plan_device(p, &blocks);
        if (st != ENG_OK) return st;
    } else {
        plan_host(p, &blocks);
    }
    if (blocks > (double)MAX_BLOCKS) blocks = (double)MAX_BLOCKS;
    if (blocks < 2) blocks = 2;
    p->n_blocks = (int)blocks;

    /* one sequence must always fit (one spare block for a copy-on-write) */
    const long capacity = (long)(p->n_blocks - 1) * p->block_size;
    if (p->max_model_len > capacity) {
        if (p->len_explicit)
            return eng_err_set(
                ENG_ERR_INVALID,
                "engine: the KV cache holds %ld tokens (%d blocks of %d), less than max_model_len %d: "
                "raise the KV cache size or lower max_model_len",
                capacity, p->n_blocks, p->block_size, p->max_model_len);
        p->len_limited = p->max_model_len;
        p->max_model_len = (int)capacity;
    }
    if (p->max_model_len < 2)
        return eng_err_set(ENG_ERR_INVALID, "engine: a context of %d tokens is too small", p->max_model_len);

    if (!p->device && p->phys_bytes) {
        const double total =
            (double)p->n_blocks * (double)p->block_bytes + (double)p->n_slots * (double)p->slot_bytes;
        if (total > 0.9 * (double)p->phys_bytes) {
            char a[32], b[32];
            return eng_err_set(
                ENG_ERR_NOMEM,
                "engine: the caches need %s (%d KV blocks of %zu bytes + %d state slots of %zu bytes) "
                "but the machine has %s: lower max_running, the KV cache size or the state slots",
                eng_fmt_bytes(total, a, sizeof a), p->n_blocks, p->block_bytes, p->n_slots, p->slot_bytes,
                eng_fmt_bytes((double)p->phys_bytes, b, sizeof b));
        }
    }
    return ENG_OK;
}
