/* tests/unit/engine/test_tp.c - tensor parallelism of the model (model.h, cache.h with tp_world > 1)
 * on the CPU backend, against the same model at tp_world 1:
 *   - prefill, greedy decode and batched multi-sequence forwards (several sequences with mixed
 *     prefill chunks and decode tokens, as the batching engine issues them): every logit row
 *     within 1e-4 relative (max |tp - tp1| / max |tp1|) and identical greedy tokens
 *   - the Hugging Face golden bound (2e-3, same greedy tokens) still holds at TP 2
 *   - cache operations (slot copy / save / restore, block copy) act on every rank
 *   - models: the golden fixtures at TP 2 (their head counts allow no more: a_realdims and b_fp8
 *     have 2 attention heads, c_vocab 2 GDN key heads), and a generated model whose heads allow
 *     TP 4, in bf16 and in block FP8 (slices starting inside a 128-column scale block: the
 *     re-gridded scales and the F32 fallback)
 *   - bad world sizes and tp_rank are refused naming the config field; a rank that stops
 *     mid-step (fault hook) gives a clear error within the timeout and a model that refuses
 *     further work; allocation failures during a TP load give a clean ENG_ERR_NOMEM
 *   - `qnext logits --tp 2` end to end
 */
#include <check.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backend/backend.h"
#include "model/cache.h"
#include "model/model.h"
#include "model/qwen3next.h" /* defines: qn_model_tp_comm (the fault hook's endpoint) */
#include "model/safetensors.h"
#include "model/spec.h"
#include "tp/comm.h"

#define TOL_TP 1e-4 /* TP n vs TP 1 */
#define TOL_HF 2e-3 /* vs transformers, as tests/golden */
#define N_BLOCKS 64
#define BS 16

static void fixture(char *buf, size_t cap, const char *name)
{
    const char *src = getenv("QNEXT_SOURCE_DIR");
    ck_assert_msg(src != NULL, "QNEXT_SOURCE_DIR is not set (run through ctest)");
    snprintf(buf, cap, "%s/tests/golden/fixtures/%s", src, name);
}

/* ==== a generated model whose head counts allow TP 4 ========================================== */

static uint64_t rng_state;

static double urand(void) /* [0, 1) */
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) * (1.0 / 9007199254740992.0);
}

static float gen(qn_tensor_kind k)
{
    switch (k) {
    case QN_T_INPUT_NORM:
    case QN_T_POST_NORM:
    case QN_T_FINAL_NORM:
    case QN_T_ATTN_Q_NORM:
    case QN_T_ATTN_K_NORM:
        return (float)(0.2 * (urand() - 0.5));
    case QN_T_LIN_NORM:
        return (float)(1.0 + 0.2 * (urand() - 0.5));
    case QN_T_LIN_A_LOG:
        return (float)log(1.0 + 15.0 * urand());
    case QN_T_LIN_DT_BIAS:
        return (float)log(expm1(0.001 + 0.099 * urand()));
    case QN_T_LIN_CONV:
        return (float)(urand() - 0.5);
    case QN_T_EMBED:
        return (float)(urand() - 0.5);
    default:
        return (float)(0.25 * (urand() - 0.5));
    }
}

/* Writes config.json + model.safetensors of a small model into dir: 4 layers (GDN, attention, GDN
 * with a dense MLP, attention), 4 query / 2 KV heads (TP 4 replicates KV heads), 4 / 8 GDN heads,
 * 8 experts top 2, an uneven vocabulary of 1001. fp8: every quantizable weight in block FP8, and
 * an expert FFN of 40 (slices of 20 or 10 columns: the F32 fallback). */
static void make_model(const char *dir, bool fp8)
{
    mkdir(dir, 0755);
    char cfg_txt[2048], path[1200];
    snprintf(cfg_txt, sizeof cfg_txt,
             "{\"architectures\": [\"Qwen3NextForCausalLM\"], \"model_type\": \"qwen3_next\", "
             "\"hidden_act\": \"silu\","
             " \"hidden_size\": 64, \"num_hidden_layers\": 4, \"vocab_size\": 1001, "
             "\"max_position_embeddings\": 4096,"
             " \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"head_dim\": 32, "
             "\"partial_rotary_factor\": 0.25,"
             " \"rope_theta\": 10000, \"rms_norm_eps\": 1e-6, \"linear_num_key_heads\": 4, "
             "\"linear_num_value_heads\": 8,"
             " \"linear_key_head_dim\": 16, \"linear_value_head_dim\": 16, \"linear_conv_kernel_dim\": 4,"
             " \"num_experts\": 8, \"num_experts_per_tok\": 2, \"moe_intermediate_size\": %d,"
             " \"shared_expert_intermediate_size\": 64, \"intermediate_size\": 128, \"mlp_only_layers\": [2],"
             " \"decoder_sparse_step\": 1, \"full_attention_interval\": 2, \"norm_topk_prob\": true,"
             " \"tie_word_embeddings\": false, \"bos_token_id\": 0, \"eos_token_id\": 1%s}",
             fp8 ? 40 : 64,
             fp8 ? ", \"quantization_config\": {\"quant_method\": \"fp8\", \"fmt\": \"e4m3\", "
                   "\"activation_scheme\": "
                   "\"dynamic\", \"weight_block_size\": [128, 128]}"
                 : "");
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    fputs(cfg_txt, f);
    fclose(f);
    qn_config cfg;
    ck_assert_msg(qn_config_parse(cfg_txt, strlen(cfg_txt), path, &cfg) == ENG_OK, "%s", eng_err_last());
    qn_tensor_spec *list;
    size_t n;
    ck_assert_int_eq(qn_spec_list(&cfg, 0, &list, &n), ENG_OK);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    eng_st_writer *w;
    ck_assert_int_eq(eng_st_writer_create(path, &w), ENG_OK);
    for (size_t i = 0; i < n; i++) {
        char name[QN_TENSOR_NAME_MAX];
        ck_assert(qn_tensor_name(&list[i].id, name, sizeof name));
        const bool q = fp8 && list[i].cls == QN_TENSOR_QUANTIZABLE;
        ck_assert_int_eq(
            eng_st_writer_add(w, name, q ? ENG_DTYPE_F8_E4M3 : ENG_DTYPE_BF16, list[i].n_dims, list[i].shape),
            ENG_OK);
        if (q) {
            int64_t ss[2];
            qn_spec_scale_shape(&cfg, list[i].shape, ss);
            ck_assert(qn_tensor_scale_name(&list[i].id, name, sizeof name));
            ck_assert_int_eq(eng_st_writer_add(w, name, ENG_DTYPE_F32, 2, ss), ENG_OK);
        }
    }
    ck_assert_int_eq(eng_st_writer_begin_data(w, false), ENG_OK);
    rng_state = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < n; i++) {
        size_t numel = 1;
        for (int d = 0; d < list[i].n_dims; d++) numel *= (size_t)list[i].shape[d];
        float *v = malloc(numel * sizeof *v);
        for (size_t k = 0; k < numel; k++) v[k] = gen(list[i].id.kind);
        if (fp8 && list[i].cls == QN_TENSOR_QUANTIZABLE) {
            const int64_t N = list[i].shape[0], K = list[i].shape[1];
            int64_t ss[2];
            qn_spec_scale_shape(&cfg, list[i].shape, ss);
            float *sc = malloc((size_t)(ss[0] * ss[1]) * sizeof *sc);
            uint8_t *qv = malloc(numel);
            for (int64_t bn = 0; bn < ss[0]; bn++)
                for (int64_t bk = 0; bk < ss[1]; bk++) {
                    float amax = 0;
                    for (int64_t r = bn * 128; r < N && r < bn * 128 + 128; r++)
                        for (int64_t c = bk * 128; c < K && c < bk * 128 + 128; c++)
                            amax = fmaxf(amax, fabsf(v[r * K + c]));
                    const float s = amax > 0 ? amax / 448.0f : 1.0f;
                    sc[bn * ss[1] + bk] = s;
                    for (int64_t r = bn * 128; r < N && r < bn * 128 + 128; r++)
                        for (int64_t c = bk * 128; c < K && c < bk * 128 + 128; c++)
                            qv[r * K + c] = eng_f32_to_fp8e4m3(v[r * K + c] / s);
                }
            ck_assert_int_eq(eng_st_writer_data(w, qv, numel), ENG_OK);
            ck_assert_int_eq(eng_st_writer_data(w, sc, (uint64_t)(ss[0] * ss[1]) * 4), ENG_OK);
            free(sc);
            free(qv);
        } else {
            uint16_t *h = malloc(numel * 2);
            for (size_t k = 0; k < numel; k++) h[k] = eng_f32_to_bf16(v[k]);
            ck_assert_int_eq(eng_st_writer_data(w, h, numel * 2), ENG_OK);
            free(h);
        }
        free(v);
    }
    ck_assert_int_eq(eng_st_writer_finish(w), ENG_OK);
    qn_spec_list_free(list);
}

static void remove_model(const char *dir)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/config.json", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    unlink(path);
    rmdir(dir);
}

/* ==== harness ================================================================================= */

typedef struct rig {
    eng_backend *be;
    qn_model *m;
    qn_cache *c;
    int V, world;
} rig;

static eng_status rig_try(rig *r, const char *dir, int world, int timeout_ms)
{
    memset(r, 0, sizeof *r);
    eng_cpu_options o = {1, ENG_SIMD_AUTO};
    ck_assert_msg(eng_backend_cpu_create(&o, &r->be) == ENG_OK, "%s", eng_err_last());
    qn_model_params mp = {
        .max_tokens = 160, .quiet = true, .tp_world = world, .tp_threads = 1, .tp_timeout_ms = timeout_ms};
    eng_status st = qn_model_load(dir, r->be, &mp, &r->m);
    if (st != ENG_OK) {
        eng_backend_destroy(r->be);
        return st;
    }
    qn_cache_params cp = {.n_slots = 6, .n_blocks = N_BLOCKS, .block_size = BS};
    ck_assert_msg(qn_cache_create(r->m, &cp, &r->c) == ENG_OK, "%s", eng_err_last());
    r->V = qn_model_vocab(r->m);
    r->world = world;
    ck_assert_int_eq(qn_model_tp(r->m), world);
    return ENG_OK;
}

static void rig_open(rig *r, const char *dir, int world)
{
    eng_status st = rig_try(r, dir, world, 20000);
    ck_assert_msg(st == ENG_OK, "%s TP %d: %s", dir, world, eng_err_last());
}

static void rig_close(rig *r)
{
    qn_cache_destroy(r->c);
    qn_model_destroy(r->m);
    eng_backend_destroy(r->be);
}

static void fwd(rig *r, const int32_t *tok, int n_tok, const qn_seq *seqs, int n_seqs, const int32_t *rows,
                int n_rows, float *logits)
{
    qn_batch b = {n_tok, tok, n_seqs, seqs, n_rows, rows};
    eng_status st = qn_model_forward(r->m, r->c, &b, logits);
    if (st != ENG_OK) ck_abort_msg("forward (TP %d): %s", r->world, eng_err_last());
}

static double rel_err(const float *got, const float *ref, int V)
{
    double md = 0, mr = 0;
    for (int i = 0; i < V; i++) {
        if (!isfinite(got[i])) return INFINITY;
        double d = fabs((double)got[i] - ref[i]);
        if (d > md) md = d;
        if (fabs(ref[i]) > mr) mr = fabs(ref[i]);
    }
    return md / (mr > 0 ? mr : 1);
}

static int argmax(const float *v, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[b]) b = i;
    return b;
}

static void ids(int32_t *out, int n, int seed, int V)
{
    uint32_t x = 2463534242u + (uint32_t)seed * 7919u;
    for (int i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        out[i] = (int32_t)(3 + x % (uint32_t)(V - 3));
    }
}

static double g_worst;

static void cmp_rows(const char *what, int world, const float *got, const float *ref, int n_rows, int V)
{
    for (int i = 0; i < n_rows; i++) {
        double e = rel_err(got + (size_t)i * V, ref + (size_t)i * V, V);
        if (e > g_worst) g_worst = e;
        if (e > TOL_TP)
            ck_abort_msg("%s TP %d row %d: max |dlogit| / max |logit| = %.3g > %.0e", what, world, i, e,
                         TOL_TP);
    }
}

/* ==== the scenario: prefill, decode, a batched step mix ======================================= */

/* Runs the same work on `one` (TP 1) and `tp` and compares every logit row. */
static void scenario(rig *one, rig *tp, const char *name)
{
    rig *rigs[2] = {one, tp};
    const int V = one->V;
    float *lg[2] = {malloc((size_t)160 * V * 4), malloc((size_t)160 * V * 4)};
    int32_t tab[6][10];
    for (int s = 0; s < 6; s++)
        for (int k = 0; k < 10; k++) tab[s][k] = (int32_t)(s * 10 + (9 - k)); /* any order */
    int32_t rows[160];
    for (int i = 0; i < 160; i++) rows[i] = i;
    char what[96];

    /* 1. prefill 70 tokens in slot 0, every row */
    int32_t p[70];
    ids(p, 70, 11, V);
    qn_seq s0 = {70, 0, 0, tab[0], 10};
    for (int k = 0; k < 2; k++) fwd(rigs[k], p, 70, &s0, 1, rows, 70, lg[k]);
    snprintf(what, sizeof what, "%s prefill", name);
    cmp_rows(what, tp->world, lg[1], lg[0], 70, V);

    /* 2. greedy decode 12 steps from row 69, each rig on its own choices: the same tokens */
    for (int k = 0; k < 2; k++) memmove(lg[k], lg[k] + (size_t)69 * V, (size_t)V * 4);
    int32_t zero = 0;
    for (int step = 0; step < 12; step++) {
        snprintf(what, sizeof what, "%s decode step %d", name, step);
        cmp_rows(what, tp->world, lg[1], lg[0], 1, V);
        const int t0 = argmax(lg[0], V), t1 = argmax(lg[1], V);
        if (t0 != t1)
            ck_abort_msg("%s decode step %d: TP %d chose %d, TP 1 chose %d", name, step, tp->world, t1, t0);
        for (int k = 0; k < 2; k++) {
            int32_t t = k ? t1 : t0;
            qn_seq sd = {1, 70 + step, 0, tab[0], 10};
            fwd(rigs[k], &t, 1, &sd, 1, &zero, 1, lg[k]);
        }
    }

    /* 3. batched steps as the engine issues them: prefill chunks, decode tokens, new sequences.
     * Step 1 starts slots 1 and 2; step 2 continues slot 1's prompt, decodes slot 2, starts slot
     * 3 and decodes slot 0 where the greedy loop left it (70 + 12 = 82); step 3 decodes slots 2
     * and 1 around a second chunk of slot 3. */
    int32_t a[70], b[25], c[15], buf[160];
    ids(a, 70, 21, V);
    ids(b, 25, 22, V);
    ids(c, 15, 23, V);
    struct {
        int n_seqs;
        qn_seq s[4];
        const int32_t *src[4];
    } steps[3] = {
        {2, {{40, 0, 1, tab[1], 10}, {25, 0, 2, tab[2], 10}}, {a, b}},
        {4,
         {{30, 40, 1, tab[1], 10}, {1, 25, 2, tab[2], 10}, {10, 0, 3, tab[3], 10}, {1, 82, 0, tab[0], 10}},
         {a + 40, &c[14], c, &c[13]}},
        {3,
         {{1, 26, 2, tab[2], 10}, {5, 10, 3, tab[3], 10}, {1, 70, 1, tab[1], 10}},
         {&c[12], c + 10, &c[11]}},
    };
    for (int si = 0; si < 3; si++) {
        int n = 0;
        for (int q = 0; q < steps[si].n_seqs; q++) {
            memcpy(buf + n, steps[si].src[q], (size_t)steps[si].s[q].n_new * 4);
            n += steps[si].s[q].n_new;
        }
        for (int k = 0; k < 2; k++) fwd(rigs[k], buf, n, steps[si].s, steps[si].n_seqs, rows, n, lg[k]);
        snprintf(what, sizeof what, "%s batched step %d", name, si);
        cmp_rows(what, tp->world, lg[1], lg[0], n, V);
        for (int i = 0; i < n; i++)
            if (argmax(lg[1] + (size_t)i * V, V) != argmax(lg[0] + (size_t)i * V, V))
                ck_abort_msg("%s: row %d greedy token differs", what, i);
    }
    free(lg[0]);
    free(lg[1]);
}

/* ==== HF golden bound at TP > 1 =============================================================== */

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    ck_assert_int_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = 0;
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static int32_t *int_array(const cJSON *a, int *n)
{
    *n = cJSON_GetArraySize(a);
    int32_t *v = malloc((size_t)(*n > 0 ? *n : 1) * sizeof *v);
    for (int i = 0; i < *n; i++) v[i] = (int32_t)cJSON_GetArrayItem(a, i)->valueint;
    return v;
}

static void check_hf(rig *r, const char *dir)
{
    char path[1200];
    size_t len;
    snprintf(path, sizeof path, "%s/golden.json", dir);
    char *txt = read_all(path, &len);
    cJSON *js = cJSON_ParseWithLength(txt, len);
    free(txt);
    snprintf(path, sizeof path, "%s/golden.bin", dir);
    float *bin = (float *)(void *)read_all(path, &len);
    const int V = r->V;
    float *lg = malloc((size_t)160 * V * 4);
    /* prefills */
    const cJSON *cases = cJSON_GetObjectItem(js, "prefill");
    for (int ci = 0; ci < cJSON_GetArraySize(cases); ci++) {
        const cJSON *cs = cJSON_GetArrayItem(cases, ci);
        int n, nr;
        int32_t *pid = int_array(cJSON_GetObjectItem(cs, "ids"), &n);
        int32_t *rw = int_array(cJSON_GetObjectItem(cs, "rows"), &nr);
        const size_t off = (size_t)cJSON_GetObjectItem(cs, "offset")->valuedouble;
        ck_assert(off + (size_t)nr * V <= len / 4);
        int32_t tab9[9] = {50, 51, 52, 53, 54, 55, 56, 57, 58};
        qn_seq s = {n, 0, 5, tab9, 9};
        fwd(r, pid, n, &s, 1, rw, nr, lg);
        for (int i = 0; i < nr; i++) {
            double e = rel_err(lg + (size_t)i * V, bin + off + (size_t)i * V, V);
            if (e > TOL_HF)
                ck_abort_msg("%s TP %d prefill %d row %d vs transformers: %.3g > %.0e", dir, r->world, n,
                             rw[i], e, TOL_HF);
        }
        free(pid);
        free(rw);
    }
    /* greedy decode: transformers' tokens and stored rows */
    const cJSON *dc = cJSON_GetObjectItem(js, "decode");
    int np, nt, nr;
    int32_t *prompt = int_array(cJSON_GetObjectItem(dc, "prompt"), &np);
    int32_t *toks = int_array(cJSON_GetObjectItem(dc, "tokens"), &nt);
    int32_t *rw = int_array(cJSON_GetObjectItem(dc, "rows"), &nr);
    const float *ref = bin + (size_t)cJSON_GetObjectItem(dc, "offset")->valuedouble;
    int32_t tab[4] = {60, 61, 62, 63}, last = np - 1, zero = 0;
    qn_seq s = {np, 0, 4, tab, 4};
    fwd(r, prompt, np, &s, 1, &last, 1, lg);
    for (int step = 0, ri = 0; step < nt; step++) {
        int t = argmax(lg, V);
        if (t != toks[step])
            ck_abort_msg("%s TP %d decode step %d: %d, transformers %d", dir, r->world, step, t, toks[step]);
        if (ri < nr && rw[ri] == step) {
            double e = rel_err(lg, ref + (size_t)ri * V, V);
            if (e > TOL_HF)
                ck_abort_msg("%s TP %d decode step %d vs transformers: %.3g", dir, r->world, step, e);
            ri++;
        }
        int32_t tt = t;
        qn_seq sd = {1, np + step, 4, tab, 4};
        fwd(r, &tt, 1, &sd, 1, &zero, 1, lg);
    }
    free(prompt);
    free(toks);
    free(rw);
    free(lg);
    free(bin);
    cJSON_Delete(js);
}

/* ==== tests =================================================================================== */

static void golden_tp2(const char *name)
{
    char dir[1024];
    fixture(dir, sizeof dir, name);
    rig rigs[2];
    rig_open(&rigs[0], dir, 1);
    rig_open(&rigs[1], dir, 2);
    g_worst = 0;
    scenario(&rigs[0], &rigs[1], name);
    check_hf(&rigs[1], dir);
    printf("tp: %s TP 2: worst relative logit difference to TP 1: %.3g\n", name, g_worst);
    rig_close(&rigs[1]);
    rig_close(&rigs[0]);
}

START_TEST(test_golden_a_realdims_tp2)
{
    golden_tp2("a_realdims");
}
END_TEST

START_TEST(test_golden_b_fp8_tp2)
{
    golden_tp2("b_fp8");
}
END_TEST

START_TEST(test_golden_c_vocab_tp2)
{
    golden_tp2("c_vocab");
}
END_TEST

static void tiny_tp(bool fp8)
{
    char dir[] = "/tmp/qnext_tp_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    make_model(dir, fp8);
    const int worlds[] = {1, 2, 4};
    for (int k = 1; k < 3; k++) {
        rig rigs[2];
        rig_open(&rigs[0], dir, 1);
        rig_open(&rigs[1], dir, worlds[k]);
        g_worst = 0;
        scenario(&rigs[0], &rigs[1], fp8 ? "tiny-fp8" : "tiny");
        printf("tp: tiny%s TP %d: worst relative logit difference to TP 1: %.3g\n", fp8 ? "-fp8" : "",
               worlds[k], g_worst);
        rig_close(&rigs[1]);
        rig_close(&rigs[0]);
    }
    remove_model(dir);
}

START_TEST(test_tiny_tp4)
{
    tiny_tp(false);
}
END_TEST

START_TEST(test_tiny_fp8_tp4)
{
    tiny_tp(true);
}
END_TEST

/* Fork, snapshot and copy-on-write on every rank: after each operation, decoding continues with
 * the same logits (to 1e-4) as TP 1 doing the same, and a restored snapshot continues bitwise
 * like the original within one TP run. */
START_TEST(test_cache_ops_every_rank)
{
    char dir[1024];
    fixture(dir, sizeof dir, "c_vocab");
    rig rigs[2];
    rig_open(&rigs[0], dir, 1);
    rig_open(&rigs[1], dir, 2);
    ck_assert_uint_eq(qn_cache_slot_bytes(rigs[1].c),
                      qn_cache_slot_bytes(rigs[0].c)); /* heads split, no copy */
    ck_assert_uint_eq(qn_cache_block_bytes(rigs[1].c), qn_cache_block_bytes(rigs[0].c));
    const int V = rigs[0].V;
    int32_t p[37], tabA[4] = {0, 1, 2, 3}, tabB[4] = {4, 5, 6, 7}, zero = 0, last = 36;
    (void)zero;
    ids(p, 37, 5, V);
    float *lg = malloc((size_t)4 * V * 4);
    const size_t sb = qn_cache_slot_bytes(rigs[1].c);
    for (int k = 0; k < 2; k++) {
        rig *r = &rigs[k];
        qn_seq s = {37, 0, 0, tabA, 4};
        fwd(r, p, 37, &s, 1, &last, 1, lg);
        /* fork A into slot 1 and block 4..: copy its partial last block (positions 32..36) */
        ck_assert_int_eq(qn_cache_slot_copy(r->c, 1, 0), ENG_OK);
        for (int b = 0; b < 3; b++) tabB[b] = tabA[b]; /* shared full blocks */
        tabB[2] = 4;
        ck_assert_int_eq(qn_cache_block_copy(r->c, 4, 2), ENG_OK);
        /* snapshot slot 0 to host, then scribble on slot 2 and restore into it */
        char *snap = malloc(sb);
        ck_assert_int_eq(qn_cache_slot_save(r->c, 0, snap, sb), ENG_OK);
        ck_assert_int_eq(qn_cache_slot_reset(r->c, 2), ENG_OK);
        ck_assert_int_eq(qn_cache_slot_restore(r->c, 2, snap, sb), ENG_OK);
        ck_assert_int_eq(qn_cache_slot_restore(r->c, 2, snap, sb - 1), ENG_ERR_INVALID);
        free(snap);
        /* decode one token on the original (slot 0), the fork (slot 1) and the restored (slot 2) */
        int32_t t3[3] = {7, 7, 7};
        int32_t tabC[4] = {0, 1, 5, 3};
        ck_assert_int_eq(qn_cache_block_copy(r->c, 5, 2), ENG_OK);
        qn_seq d3[3] = {{1, 37, 0, tabA, 4}, {1, 37, 1, tabB, 4}, {1, 37, 2, tabC, 4}};
        int32_t r3[3] = {0, 1, 2};
        fwd(r, t3, 3, d3, 3, r3, 3, lg);
        ck_assert_msg(memcmp(lg, lg + V, (size_t)V * 4) == 0, "TP %d: the fork differs from the original",
                      r->world);
        ck_assert_msg(memcmp(lg, lg + 2 * (size_t)V, (size_t)V * 4) == 0, "TP %d: the restored slot differs",
                      r->world);
        if (k == 0)
            memcpy(lg + 3 * (size_t)V, lg, (size_t)V * 4);
        else
            cmp_rows("cache ops", 2, lg, lg + 3 * (size_t)V, 1, V);
    }
    ck_assert_int_eq(qn_cache_slot_copy(rigs[1].c, 9, 0), ENG_ERR_INVALID);
    ck_assert_int_eq(qn_cache_block_copy(rigs[1].c, 0, N_BLOCKS), ENG_ERR_INVALID);
    /* a cache of the TP 1 model cannot run on the TP 2 model */
    qn_batch b = {1, p, 1, &(qn_seq){1, 0, 0, tabA, 4}, 1, &zero};
    ck_assert_int_eq(qn_model_forward(rigs[1].m, rigs[0].c, &b, lg), ENG_ERR_INVALID);
    ck_assert_msg(strstr(eng_err_last(), "tensor-parallel") != NULL, "%s", eng_err_last());
    free(lg);
    rig_close(&rigs[1]);
    rig_close(&rigs[0]);
}
END_TEST

START_TEST(test_bad_world_sizes)
{
    char dir[1024];
    rig r;
    fixture(dir, sizeof dir, "a_realdims");
    ck_assert_int_eq(rig_try(&r, dir, 3, 0), ENG_ERR_INVALID);
    ck_assert_msg(strstr(eng_err_last(), "num_attention_heads") && strstr(eng_err_last(), "config.json"),
                  "%s", eng_err_last());
    ck_assert_int_eq(rig_try(&r, dir, 4, 0), ENG_ERR_INVALID);
    ck_assert_msg(strstr(eng_err_last(), "num_attention_heads (2)") != NULL, "%s", eng_err_last());
    fixture(dir, sizeof dir, "c_vocab");
    ck_assert_int_eq(rig_try(&r, dir, 4, 0), ENG_ERR_INVALID);
    ck_assert_msg(strstr(eng_err_last(), "linear_num_key_heads (2)") != NULL, "%s", eng_err_last());
    /* tp_rank must be 0: the handle is rank 0 */
    eng_backend *be;
    ck_assert_int_eq(eng_backend_cpu_create(&(eng_cpu_options){1, ENG_SIMD_AUTO}, &be), ENG_OK);
    qn_model *m = (qn_model *)1;
    qn_model_params mp = {.tp_world = 2, .tp_rank = 1, .quiet = true};
    ck_assert_int_eq(qn_model_load(dir, be, &mp, &m), ENG_ERR_INVALID);
    ck_assert_ptr_null(m);
    ck_assert_msg(strstr(eng_err_last(), "tp_rank") != NULL, "%s", eng_err_last());
    /* a collectives group of the wrong size */
    eng_comm_group *g;
    ck_assert_int_eq(eng_comm_group_cpu_create(3, 0, &g), ENG_OK);
    qn_model_params mp2 = {.tp_world = 2, .tp_comm = g, .quiet = true};
    ck_assert_int_eq(qn_model_load(dir, be, &mp2, &m), ENG_ERR_INVALID);
    ck_assert_msg(strstr(eng_err_last(), "3 ranks") != NULL, "%s", eng_err_last());
    eng_comm_group_destroy(g);
    eng_backend_destroy(be);
}
END_TEST

/* A rank stops participating mid-step: a clear error within the timeout, then refusals. */
static void rank_failure(const char *dir, int world, int dead, long after)
{
    rig r;
    ck_assert_msg(rig_try(&r, dir, world, 400) == ENG_OK, "%s", eng_err_last());
    int32_t p[20], tab[2] = {0, 1}, last = 19;
    ids(p, 20, 3, r.V);
    float *lg = malloc((size_t)r.V * 4);
    qn_seq s = {20, 0, 0, tab, 2};
    qn_batch b = {20, p, 1, &s, 1, &last};
    ck_assert_msg(qn_model_forward(r.m, r.c, &b, lg) == ENG_OK, "%s", eng_err_last()); /* healthy first */
    eng_comm_debug_stop_after(qn_model_tp_comm(r.m, dead), after);
    const double t0 = eng_now_s();
    eng_status st = qn_model_forward(r.m, r.c, &b, lg);
    const double dt = eng_now_s() - t0;
    ck_assert_int_eq(st, ENG_ERR_INTERNAL); /* the root cause: the injected failure */
    char want[64];
    snprintf(want, sizeof want, "rank %d: collectives: injected failure", dead);
    ck_assert_msg(strstr(eng_err_last(), want) != NULL, "%s", eng_err_last());
    snprintf(want, sizeof want, "rank %d did not arrive", dead);
    ck_assert_msg(strstr(eng_err_last(), want) != NULL, "%s", eng_err_last());
    ck_assert_msg(dt < 4.0, "the failure took %.1f s to surface", dt);
    /* the model refuses further work (its caches are inconsistent) */
    ck_assert_int_eq(qn_model_forward(r.m, r.c, &b, lg), ENG_ERR_INTERNAL);
    ck_assert_msg(strstr(eng_err_last(), "failed earlier") != NULL, "%s", eng_err_last());
    ck_assert_int_eq(qn_cache_slot_copy(r.c, 1, 0), ENG_ERR_INTERNAL);
    free(lg);
    rig_close(&r); /* no hang, no leak */
}

START_TEST(test_rank_failure_mid_step)
{
    char dir[1024];
    fixture(dir, sizeof dir, "c_vocab");
    rank_failure(dir, 2, 1, 5); /* a worker rank dies in layer 2 */
    rank_failure(dir, 2, 0, 0); /* rank 0 (the caller's thread) dies at the embedding */
    char tmp[] = "/tmp/qnext_tpf_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(tmp));
    make_model(tmp, false);
    rank_failure(tmp, 4, 3, 9); /* the last rank dies before the lm_head gather */
    remove_model(tmp);
}
END_TEST

START_TEST(test_load_alloc_failures_tp)
{
    char dir[1024];
    fixture(dir, sizeof dir, "c_vocab");
    eng_backend *be;
    ck_assert_int_eq(eng_backend_cpu_create(&(eng_cpu_options){1, ENG_SIMD_AUTO}, &be), ENG_OK);
    qn_model_params mp = {.max_tokens = 8, .quiet = true, .tp_world = 2, .tp_threads = 1};
    long before = eng_alloc_count();
    qn_model *m;
    ck_assert_int_eq(qn_model_load(dir, be, &mp, &m), ENG_OK);
    long n = eng_alloc_count() - before;
    qn_model_destroy(m);
    int failures = 0;
    for (long k = 0; k < n; k += 1 + n / 60) {
        eng_alloc_fail_after(k);
        eng_status st = qn_model_load(dir, be, &mp, &m);
        eng_alloc_fail_after(-1);
        if (st == ENG_OK) {
            qn_model_destroy(m);
            continue;
        }
        failures++;
        ck_assert_ptr_null(m);
        ck_assert_msg(st == ENG_ERR_NOMEM, "allocation %ld failing gave %s: %s", k, eng_status_str(st),
                      eng_err_last());
    }
    ck_assert_int_gt(failures, 0);
    eng_backend_destroy(be);
}
END_TEST

/* `qnext logits --tp 2` writes the logits TP 1 computes (to 1e-4); --tp 3 is refused. */
START_TEST(test_cli_logits_tp)
{
    const char *bin = getenv("QNEXT_BIN");
    ck_assert_ptr_nonnull(bin);
    char dir[1024], out[] = "/tmp/qnext_tpl_XXXXXX", cmd[4096];
    fixture(dir, sizeof dir, "c_vocab");
    int fd = mkstemp(out);
    ck_assert_int_ge(fd, 0);
    close(fd);
    int32_t p[9];
    ids(p, 9, 8, 30007);
    snprintf(
        cmd, sizeof cmd,
        "'%s/qnext' logits --model '%s' --out '%s' --threads 2 --tp 2 --ids '%d %d %d %d %d %d %d %d %d' "
        "2>/dev/null",
        bin, dir, out, p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8]);
    ck_assert_int_eq(system(cmd), 0);
    size_t len;
    float *got = (float *)(void *)read_all(out, &len);
    rig r;
    rig_open(&r, dir, 1);
    ck_assert_uint_eq(len, (size_t)9 * r.V * 4);
    float *ref = malloc((size_t)9 * r.V * 4);
    int32_t rows[9] = {0, 1, 2, 3, 4, 5, 6, 7, 8}, tab[1] = {0};
    qn_seq s = {9, 0, 0, tab, 1};
    fwd(&r, p, 9, &s, 1, rows, 9, ref);
    cmp_rows("qnext logits --tp 2", 2, got, ref, 9, r.V);
    rig_close(&r);
    free(got);
    free(ref);
    snprintf(cmd, sizeof cmd, "'%s/qnext' logits --model '%s' --out '%s' --tp 3 --ids '1 2' 2>'%s.err'", bin,
             dir, out, out);
    int rc = system(cmd);
    ck_assert(WIFEXITED(rc) && WEXITSTATUS(rc) == 1);
    char errp[1200];
    snprintf(errp, sizeof errp, "%s.err", out);
    char *err = read_all(errp, &len);
    ck_assert_msg(strstr(err, "num_attention_heads") || strstr(err, "linear_num_key_heads"), "%s", err);
    free(err);
    unlink(errp);
    unlink(out);
}
END_TEST

static Suite *tp_suite(void)
{
    Suite *s = suite_create("tp");
    TCase *tc = tcase_create("equal to one rank");
    tcase_set_timeout(tc, 900);
    tcase_add_test(tc, test_golden_a_realdims_tp2);
    tcase_add_test(tc, test_golden_b_fp8_tp2);
    tcase_add_test(tc, test_golden_c_vocab_tp2);
    tcase_add_test(tc, test_tiny_tp4);
    tcase_add_test(tc, test_tiny_fp8_tp4);
    tcase_add_test(tc, test_cache_ops_every_rank);
    suite_add_tcase(s, tc);
    TCase *te = tcase_create("errors");
    tcase_set_timeout(te, 900);
    tcase_add_test(te, test_bad_world_sizes);
    tcase_add_test(te, test_rank_failure_mid_step);
    tcase_add_test(te, test_load_alloc_failures_tp);
    tcase_add_test(te, test_cli_logits_tp);
    suite_add_tcase(s, te);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(tp_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
