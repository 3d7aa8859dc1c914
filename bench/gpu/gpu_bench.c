/* bench/gpu/gpu_bench.c - full-dimension Qwen3-Next-80B-A3B with random weights on one GPU: the
 * GPU check's stage 4 (docs/qwen3-next.md 1.1 dims, 7.2 bytes per token).
 *
 *   gpu_bench [--dtype fp8|bf16] [--layers N|0] [--streams 8,32,128] [--prefill 4096]
 *             [--steps 64] [--device N] [--json FILE] [--tmp DIR] [--tiny --backend cpu]
 *
 * No checkpoint is read or written: a sparse model.safetensors (every tensor declared, no data
 * written: holes, no disk space) goes to a temp folder, qn_model_load loads it like any checkpoint
 * through the real loader and forward, and the CUDA backend's random_weights option fills every
 * weight on the device instead of copying the (all-zero) host data. Norms therefore load as 1 and
 * the GDN gated-norm weight, conv and A_log as 0: data-independent kernels time the same, and the
 * random router weights spread tokens over the experts.
 *
 * Layers: --layers 0 takes the most layers (a multiple of 4: 3 GDN + 1 attention, the real
 * pattern) that fit the memory budget with the caches the runs need (all 48 in FP8 on an H200;
 * fewer on an H100); per-layer figures are reported so runs with different depths compare.
 *
 * Measurements (the model brackets every forward with step_begin/step_end and a graph key, so decode
 * runs as CUDA graphs; up to 32 MiB of logits per step, i.e. about 55 rows of the full vocabulary,
 * beyond which the model's key is 0 and the step runs eagerly: the staging arena holds 64 MiB):
 *   bandwidth     device-memory read bandwidth (eng_cuda_read_bandwidth): the roofline;
 *   decode B=1    tok/s after a 32-token prompt, its ratio to bandwidth / bytes read per token
 *                 (weights of the layers present incl. 10 of 512 experts and the lm_head, the
 *                 embedding row, the fp32 recurrent state read and written, the KV read), and the
 *                 same loop without graphs;
 *   batched       tok/s at 8/32/128 concurrent streams (one decode step = one row per stream), with
 *                 and without the lm_head + logits copy (the model API returns logits to the host;
 *                 a device-side sampler would remove that copy);
 *   prefill       tok/s of one 4096-token prompt in one forward.
 * --tiny --backend cpu runs the same code on a tiny model on the CPU (how it is tested here).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend/backend.h"
#include "core/core.h"
#include "model/cache.h"
#include "model/config.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "model/spec.h"
#ifdef QN_HAVE_CUDA
#include "cuda/cuda_backend.h"
#endif

typedef struct opts {
    const char *dtype, *json, *tmp, *backend;
    int layers, prefill, steps, device;
    int streams[8], n_streams;
    bool tiny;
} opts;

typedef struct dims {
    int H, V, L, nq, nkv, dh, hk, hv, dk, dv, E, topk, I, Is;
} dims;

static const dims FULL = {2048, 151936, 48, 16, 2, 256, 16, 32, 128, 128, 512, 10, 512, 512};
static const dims TINY = {256, 1024, 8, 4, 2, 64, 2, 4, 64, 64, 16, 4, 128, 128};

static void fail(const char *what)
{
    fprintf(stderr, "gpu_bench: %s: %s\n", what, eng_err_last());
    exit(1);
}

/* ==== the sparse checkpoint =================================================================== */

static int config_json(const dims *d, int L, bool fp8, char *out, size_t cap)
{
    return snprintf(out, cap,
                    "{\n  \"architectures\": [\"Qwen3NextForCausalLM\"], \"model_type\": \"qwen3_next\",\n"
                    "  \"hidden_size\": %d, \"num_hidden_layers\": %d, \"vocab_size\": %d,\n"
                    "  \"num_attention_heads\": %d, \"num_key_value_heads\": %d, \"head_dim\": %d,\n"
                    "  \"partial_rotary_factor\": 0.25, \"rope_theta\": 10000000, \"rope_scaling\": null,\n"
                    "  \"linear_num_key_heads\": %d, \"linear_num_value_heads\": %d, \"linear_key_head_dim\": %d,\n"
                    "  \"linear_value_head_dim\": %d, \"linear_conv_kernel_dim\": 4, \"full_attention_interval\": 4,\n"
                    "  \"num_experts\": %d, \"num_experts_per_tok\": %d, \"moe_intermediate_size\": %d,\n"
                    "  \"shared_expert_intermediate_size\": %d, \"intermediate_size\": 5120, \"norm_topk_prob\": true,\n"
                    "  \"decoder_sparse_step\": 1, \"mlp_only_layers\": [], \"hidden_act\": \"silu\",\n"
                    "  \"rms_norm_eps\": 1e-06, \"tie_word_embeddings\": false, \"max_position_embeddings\": 262144,\n"
                    "  \"attention_bias\": false, \"bos_token_id\": %d, \"eos_token_id\": %d,\n"
                    "  \"torch_dtype\": \"bfloat16\"%s\n}\n",
                    d->H, L, d->V, d->nq, d->nkv, d->dh, d->hk, d->hv, d->dk, d->dv, d->E, d->topk, d->I, d->Is,
                    d->V > 151645 ? 151643 : d->V - 2, d->V > 151645 ? 151645 : d->V - 1,
                    fp8 ? ",\n  \"quantization_config\": {\"quant_method\": \"fp8\", \"fmt\": \"e4m3\", "
                          "\"activation_scheme\": \"dynamic\", \"weight_block_size\": [128, 128]}"
                        : "");
}

typedef struct ckpt_bytes {
    uint64_t total, experts, embed, lm_head, other; /* weights (+ scales) */
} ckpt_bytes;

/* Writes config.json and a sparse model.safetensors for L layers into dir; returns byte classes. */
static void write_ckpt(const char *dir, const dims *d, int L, bool fp8, ckpt_bytes *cb)
{
    char json[4096], path[1200];
    config_json(d, L, fp8, json, sizeof json);
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    if (!f || fputs(json, f) < 0 || fclose(f) != 0) {
        fprintf(stderr, "gpu_bench: cannot write %s: %s\n", path, strerror(errno));
        exit(1);
    }
    qn_config cfg;
    qn_tensor_spec *list = NULL;
    size_t n = 0;
    if (qn_config_parse(json, strlen(json), "bench config", &cfg) != ENG_OK) fail("config");
    if (qn_spec_list(&cfg, 0, &list, &n) != ENG_OK) fail("spec");
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    eng_st_writer *w = NULL;
    if (eng_st_writer_create(path, &w) != ENG_OK) fail("safetensors writer");
    memset(cb, 0, sizeof *cb);
    for (size_t i = 0; i < n; i++) {
        const qn_tensor_spec *s = &list[i];
        char name[QN_TENSOR_NAME_MAX];
        qn_tensor_name(&s->id, name, sizeof name);
        const bool q = fp8 && s->cls == QN_TENSOR_QUANTIZABLE && s->n_dims == 2;
        uint64_t numel = 1, bytes;
        for (int k = 0; k < s->n_dims; k++) numel *= (uint64_t)s->shape[k];
        bytes = numel * (q ? 1 : 2);
        if (eng_st_writer_add(w, name, q ? ENG_DTYPE_F8_E4M3 : ENG_DTYPE_BF16, s->n_dims, s->shape) != ENG_OK)
            fail("safetensors add");
        if (q) {
            int64_t ss[2];
            qn_spec_scale_shape(&cfg, s->shape, ss);
            char sn[QN_TENSOR_NAME_MAX];
            qn_tensor_scale_name(&s->id, sn, sizeof sn);
            if (eng_st_writer_add(w, sn, ENG_DTYPE_F32, 2, ss) != ENG_OK) fail("safetensors add");
            bytes += (uint64_t)(ss[0] * ss[1]) * 4;
        }
        cb->total += bytes;
        switch (s->id.kind) {
        case QN_T_EXPERT_GATE:
        case QN_T_EXPERT_UP:
        case QN_T_EXPERT_DOWN:
            cb->experts += bytes;
            break;
        case QN_T_EMBED:
            cb->embed += bytes;
            break;
        case QN_T_LM_HEAD:
            cb->lm_head += bytes;
            break;
        default:
            cb->other += bytes;
            break;
        }
    }
    if (eng_st_writer_begin_data(w, true) != ENG_OK || eng_st_writer_finish(w) != ENG_OK) fail("sparse safetensors");
    qn_spec_list_free(list);
}

/* ==== runs ==================================================================================== */

typedef struct bench {
    eng_backend *be;
    qn_model *m;
    qn_cache *c;
    const dims *d;
    int L, bs, max_tokens;
    int32_t *bt;     /* all block ids: slot 0 owns big_blocks (the long prompt), the others small_blocks */
    int big_blocks, small_blocks;
    float *logits;   /* [max(streams)][V] */
    bool graphs;
} bench;

/* One forward of n sequences (stream i in slot i, its own blocks), n_new[i] tokens each at pos[i]. */
static void forward(bench *b, int n, const int *n_new, const int *pos, const int32_t *tokens, int n_out,
                    const int32_t *out_rows)
{
    qn_seq seqs[256];
    int T = 0;
    for (int i = 0; i < n; i++) {
        const int nb = i == 0 ? b->big_blocks : b->small_blocks;
        const int32_t *bt = b->bt + (i == 0 ? 0 : (size_t)b->big_blocks + (size_t)(i - 1) * b->small_blocks);
        if (pos[i] + n_new[i] > nb * b->bs) {
            fprintf(stderr, "gpu_bench: internal: stream %d needs more than %d blocks\n", i, nb);
            exit(1);
        }
        seqs[i] = (qn_seq){n_new[i], pos[i], i, bt, nb};
        T += n_new[i];
    }
    qn_batch batch = {T, tokens, n, seqs, n_out, out_rows};
    qn_model_set_graphs(b->m, b->graphs); /* the model brackets the step; graphs only with a key */
    eng_status st = qn_model_forward(b->m, b->c, &batch, b->logits);
    if (st != ENG_OK) fail("forward");
}

/* Prefills `n` streams with `len` tokens each (in chunks of max_tokens rows). */
static void prefill_streams(bench *b, int n, int len, int32_t *tok)
{
    int done = 0;
    while (done < len) {
        int per = (b->max_tokens / n) < len - done ? b->max_tokens / n : len - done;
        if (per < 1) per = 1;
        int nn[256], pp[256];
        for (int i = 0; i < n; i++) {
            nn[i] = per;
            pp[i] = done;
        }
        for (int i = 0; i < n * per; i++) tok[i] = (int32_t)((i * 7919 + done * 31) % b->d->V);
        forward(b, n, nn, pp, tok, 0, NULL);
        done += per;
    }
}

/* Decode steps of n streams from position p0; returns seconds per step (after `warm` steps). */
static double decode_run(bench *b, int n, int p0, int warm, int steps, bool logits)
{
    int nn[256], pp[256];
    int32_t tok[256], rows[256];
    for (int i = 0; i < n; i++) rows[i] = i;
    double t0 = 0;
    for (int s = 0; s < warm + steps; s++) {
        if (s == warm) {
            b->be->synchronize(b->be->ctx);
            t0 = eng_now_s();
        }
        for (int i = 0; i < n; i++) {
            nn[i] = 1;
            pp[i] = p0 + s;
            tok[i] = (int32_t)((s * 131 + i * 17) % b->d->V);
        }
        forward(b, n, nn, pp, tok, logits ? n : 0, rows);
    }
    b->be->synchronize(b->be->ctx);
    return (eng_now_s() - t0) / steps;
}

/* ==== memory plan ============================================================================= */

static double state_bytes_per_slot(const dims *d, int L)
{
    const int n_lin = L - L / 4;
    const double conv_dim = 2.0 * d->hk * d->dk + (double)d->hv * d->dv;
    return n_lin * ((double)d->hv * d->dk * d->dv + 3.0 * conv_dim) * 4.0;
}

static double kv_bytes_per_token(const dims *d, int L)
{
    return (L / 4) * 2.0 * d->nkv * d->dh * 4.0;
}

static double act_bytes(const dims *d, int T)
{
    const double conv_dim = 2.0 * d->hk * d->dk + (double)d->hv * d->dv, vd = (double)d->hv * d->dv;
    const double proj = conv_dim + vd + 2.0 * d->hv;
    const double per_tok = 6.0 * d->H + proj + conv_dim + 2.0 * vd + 2.0 * d->E + 2.0 * d->topk + 2.0 * d->Is;
    const double moe = (double)d->topk * (3.0 * d->I + d->H + 2);
    return (double)T * 4.0 * (per_tok + moe + proj / 2) + 16.0 * d->V * 4.0 + (512u << 20);
}

int main(int argc, char **argv)
{
    opts o = {.dtype = "fp8", .prefill = 4096, .steps = 64, .streams = {8, 32, 128}, .n_streams = 3, .backend = "cuda"};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const bool v = i + 1 < argc;
        if (!strcmp(a, "--dtype") && v) o.dtype = argv[++i];
        else if (!strcmp(a, "--layers") && v) o.layers = atoi(argv[++i]);
        else if (!strcmp(a, "--prefill") && v) o.prefill = atoi(argv[++i]);
        else if (!strcmp(a, "--steps") && v) o.steps = atoi(argv[++i]);
        else if (!strcmp(a, "--device") && v) o.device = atoi(argv[++i]);
        else if (!strcmp(a, "--json") && v) o.json = argv[++i];
        else if (!strcmp(a, "--tmp") && v) o.tmp = argv[++i];
        else if (!strcmp(a, "--backend") && v) o.backend = argv[++i];
        else if (!strcmp(a, "--tiny")) o.tiny = true;
        else if (!strcmp(a, "--streams") && v) {
            o.n_streams = 0;
            for (char *s = argv[++i]; *s && o.n_streams < 8;) {
                o.streams[o.n_streams++] = (int)strtol(s, &s, 10);
                if (*s == ',') s++;
                else if (*s) break;
            }
        } else {
            fprintf(stderr, "usage: gpu_bench [--dtype fp8|bf16] [--layers N] [--streams 8,32,128] [--prefill N] "
                            "[--steps N] [--device N] [--json FILE] [--tmp DIR] [--tiny --backend cpu]\n");
            return 2;
        }
    }
    for (int i = 0; i < o.n_streams; i++)
        if (o.streams[i] < 1 || o.streams[i] > 256) {
            fprintf(stderr, "gpu_bench: streams must be 1..256\n");
            return 2;
        }
    const dims *d = o.tiny ? &TINY : &FULL;
    const bool fp8 = !strcmp(o.dtype, "fp8");
    const bool cuda = !strcmp(o.backend, "cuda");
    int max_streams = 1;
    for (int i = 0; i < o.n_streams; i++) max_streams = o.streams[i] > max_streams ? o.streams[i] : max_streams;

    /* ---- backend ---- */
    eng_backend *be = NULL;
    char gpu[300] = "cpu";
    double peak_bw = 0;
    if (cuda) {
#ifdef QN_HAVE_CUDA
        eng_cuda_device_info di;
        if (eng_cuda_device_info_get(o.device, &di) != ENG_OK) fail("device");
        snprintf(gpu, sizeof gpu, "%s", di.name);
        peak_bw = di.peak_bw_gbs;
        eng_cuda_options co = {.device = o.device, .memory_fraction = 0.92, .random_weights = 0x5eedull};
        if (eng_backend_cuda_create(&co, &be) != ENG_OK) fail("CUDA backend");
#else
        fprintf(stderr, "gpu_bench: built without CUDA\n");
        return 2;
#endif
    } else {
        eng_cpu_options co = {0, ENG_SIMD_AUTO};
        if (eng_backend_cpu_create(&co, &be) != ENG_OK) fail("CPU backend");
    }
    double bw = 0;
#ifdef QN_HAVE_CUDA
    if (cuda && eng_cuda_read_bandwidth(be, (size_t)2 << 30, 5, &bw) != ENG_OK) fail("bandwidth probe");
#endif

    /* ---- how many layers fit ---- */
    const int prompt = 32, stream_prompt = 16, bs = 16;
    const int max_tokens = o.prefill > 256 ? o.prefill : 256;
    /* slot 0: the 4K prefill and the B=1 decode; streams 1..: their prompt and decode steps */
    const int big_blocks = (o.prefill > prompt + o.steps + 16 ? o.prefill : prompt + o.steps + 16) / bs + 2;
    const int small_blocks = (stream_prompt + o.steps + 16) / bs + 2;
    const int n_blocks_all = big_blocks + max_streams * small_blocks;
    const int n_slots = max_streams + 1;
    char tmpl[1024];
    snprintf(tmpl, sizeof tmpl, "%s/qnext_gpu_bench_XXXXXX", o.tmp ? o.tmp : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmpl)) {
        fprintf(stderr, "gpu_bench: mkdtemp %s: %s\n", tmpl, strerror(errno));
        return 1;
    }
    ckpt_bytes cb4;
    write_ckpt(tmpl, d, 4, fp8, &cb4); /* per 4-layer group: everything but the globals */
    const double globals = (double)(cb4.embed + cb4.lm_head) + 3.0 * 2 * d->H;
    const double group = (double)cb4.total - globals;
    int L = o.layers > 0 ? o.layers : d->L;
    size_t budget = 0, used = 0, peak = 0;
#ifdef QN_HAVE_CUDA
    if (cuda) eng_cuda_memory(be, &budget, &used, NULL);
#endif
    if (o.layers <= 0 && cuda) {
        const double avail = (double)budget - (double)used - (1.0 * (1 << 30));
        for (L = d->L; L >= 4; L -= 4) {
            const double need = globals + group * (L / 4) * 1.01 + n_slots * state_bytes_per_slot(d, L) +
                                (double)n_blocks_all * bs * kv_bytes_per_token(d, L) + act_bytes(d, max_tokens);
            if (need <= avail) break;
        }
        if (L < 4) {
            fprintf(stderr, "gpu_bench: not even 4 layers fit the budget\n");
            return 1;
        }
    }
    ckpt_bytes cb;
    write_ckpt(tmpl, d, L, fp8, &cb);
    printf("gpu_bench: %s, %s weights, %d of %d layers, sparse checkpoint %s (%.2f GB declared)\n", gpu,
           fp8 ? "FP8" : "BF16", L, d->L, tmpl, cb.total / 1e9);
    fflush(stdout);

    /* ---- load ---- */
    bench b = {.be = be, .d = d, .L = L, .bs = bs, .big_blocks = big_blocks, .small_blocks = small_blocks,
               .max_tokens = max_tokens};
    double t0 = eng_now_s();
    qn_model_params mp = {.max_tokens = max_tokens, .quiet = false};
    if (qn_model_load(tmpl, be, &mp, &b.m) != ENG_OK) fail("model load");
    const double load_s = eng_now_s() - t0;
    qn_cache_params cp = {.n_slots = n_slots, .n_blocks = n_blocks_all, .block_size = bs};
    if (qn_cache_create(b.m, &cp, &b.c) != ENG_OK) fail("cache");
    b.bt = malloc((size_t)n_blocks_all * 4);
    b.logits = malloc((size_t)max_streams * d->V * 4);
    int32_t *tok = malloc((size_t)max_tokens * 4);
    if (!b.bt || !b.logits || !tok) fail("out of memory");
    for (int i = 0; i < n_blocks_all; i++) b.bt[i] = i;
    printf("gpu_bench: loaded in %.1f s; read bandwidth %.0f GB/s (theoretical %.0f)\n", load_s, bw, peak_bw);
    fflush(stdout);

    /* ---- decode, one stream ---- */
    b.graphs = true;
    prefill_streams(&b, 1, prompt, tok);
    const double s_b1 = decode_run(&b, 1, prompt, 4, o.steps, true);
    b.graphs = false;
    prefill_streams(&b, 1, prompt, tok);
    const double s_b1_eager = decode_run(&b, 1, prompt, 2, o.steps / 2 > 4 ? o.steps / 2 : 4, true);
    b.graphs = true;
    /* bytes per decoded token: what one step must read (and the state it writes back) */
    const double ctx = prompt + o.steps / 2.0;
    const double bytes_tok = (double)cb.other + (double)cb.lm_head + (double)cb.experts * d->topk / d->E +
                             (double)cb.embed / d->V + 2.0 * state_bytes_per_slot(d, L) + ctx * kv_bytes_per_token(d, L);
    const double ceil_tok = bw > 0 ? bw * 1e9 / bytes_tok : 0;
    printf("gpu_bench: decode B=1: %.1f tok/s (%.3f ms/step, %.4f ms/layer), eager %.1f tok/s; ceiling %.1f tok/s "
           "(%.2f GB/token) -> %.0f%%\n",
           1 / s_b1, s_b1 * 1e3, s_b1 * 1e3 / L, 1 / s_b1_eager, ceil_tok, bytes_tok / 1e9,
           ceil_tok > 0 ? 100.0 / s_b1 / ceil_tok : 0);
    fflush(stdout);

    /* ---- batched decode ---- */
    double bt_tok[8] = {0}, bt_ms[8] = {0}, bt_ms_nolog[8] = {0};
    for (int i = 0; i < o.n_streams; i++) {
        const int n = o.streams[i], steps = o.steps / 2 > 8 ? o.steps / 2 : 8;
        prefill_streams(&b, n, stream_prompt, tok);
        const double s = decode_run(&b, n, stream_prompt, 2, steps, true);
        const double s2 = decode_run(&b, n, stream_prompt + 2 + steps, 2, steps / 2 > 4 ? steps / 2 : 4, false);
        bt_tok[i] = n / s;
        bt_ms[i] = s * 1e3;
        bt_ms_nolog[i] = s2 * 1e3;
        printf("gpu_bench: %3d streams: %.1f tok/s (%.2f ms/step; %.2f ms without lm_head + logits copy)\n", n, n / s,
               s * 1e3, s2 * 1e3);
        fflush(stdout);
    }

    /* ---- prefill ---- */
    int one[1] = {512}, zero[1] = {0};
    for (int i = 0; i < 512 && i < max_tokens; i++) tok[i] = (int32_t)((i * 977) % d->V);
    if (one[0] > max_tokens) one[0] = max_tokens;
    int32_t last = one[0] - 1;
    forward(&b, 1, one, zero, tok, 1, &last); /* warm-up: heuristics, scratch */
    for (int i = 0; i < o.prefill; i++) tok[i] = (int32_t)((i * 7919 + 3) % d->V);
    int pf[1] = {o.prefill};
    last = o.prefill - 1;
    be->synchronize(be->ctx);
    t0 = eng_now_s();
    forward(&b, 1, pf, zero, tok, 1, &last);
    be->synchronize(be->ctx);
    const double pf_s = eng_now_s() - t0;
    printf("gpu_bench: prefill %d tokens: %.3f s, %.0f tok/s (%.3f ms per layer)\n", o.prefill, pf_s, o.prefill / pf_s,
           pf_s * 1e3 / L);

    long captures = 0, replays = 0;
#ifdef QN_HAVE_CUDA
    if (cuda) {
        eng_cuda_memory(be, &budget, &used, &peak);
        eng_cuda_stats cs;
        eng_cuda_stats_get(be, &cs);
        captures = cs.graph_captures;
        replays = cs.graph_replays;
    }
#endif
    if (o.json) {
        FILE *f = fopen(o.json, "w");
        if (!f) fail("json");
        fprintf(f, "{\"gpu\": \"%s\", \"dtype\": \"%s\", \"layers\": %d, \"layers_full\": %d, \"tiny\": %s,\n",
                gpu, fp8 ? "fp8" : "bf16", L, d->L, o.tiny ? "true" : "false");
        fprintf(f, " \"weights_gb\": %.3f, \"load_s\": %.2f, \"read_bw_gbs\": %.1f, \"peak_bw_gbs\": %.1f,\n",
                cb.total / 1e9, load_s, bw, peak_bw);
        fprintf(f, " \"gpu_mem_budget_gb\": %.2f, \"gpu_mem_peak_gb\": %.2f, \"graph_captures\": %ld, \"graph_replays\": %ld,\n",
                budget / 1e9, peak / 1e9, captures, replays);
        fprintf(f, " \"decode_b1\": {\"tok_s\": %.2f, \"ms_per_step\": %.4f, \"ms_per_layer\": %.5f, \"eager_tok_s\": %.2f,"
                   " \"bytes_per_token_gb\": %.4f, \"ceiling_tok_s\": %.2f, \"ratio\": %.4f, \"context\": %d},\n",
                1 / s_b1, s_b1 * 1e3, s_b1 * 1e3 / L, 1 / s_b1_eager, bytes_tok / 1e9, ceil_tok,
                ceil_tok > 0 ? 1 / s_b1 / ceil_tok : 0, prompt);
        fprintf(f, " \"batched\": [");
        for (int i = 0; i < o.n_streams; i++)
            fprintf(f, "%s{\"streams\": %d, \"tok_s\": %.1f, \"ms_per_step\": %.3f, \"ms_per_step_no_logits\": %.3f}",
                    i ? ", " : "", o.streams[i], bt_tok[i], bt_ms[i], bt_ms_nolog[i]);
        fprintf(f, "],\n \"prefill\": {\"tokens\": %d, \"seconds\": %.4f, \"tok_s\": %.1f, \"ms_per_layer\": %.4f}}\n",
                o.prefill, pf_s, o.prefill / pf_s, pf_s * 1e3 / L);
        fclose(f);
    }
    qn_cache_destroy(b.c);
    qn_model_destroy(b.m);
    eng_backend_destroy(be);
    free(b.bt), free(b.logits), free(tok);
    char path[1200];
    snprintf(path, sizeof path, "%s/model.safetensors", tmpl);
    unlink(path);
    snprintf(path, sizeof path, "%s/config.json", tmpl);
    unlink(path);
    rmdir(tmpl);
    return 0;
}
