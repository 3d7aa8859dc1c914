/* tests/unit/engine/test_cpu_perf.c - the CPU backend's performance paths (cpu/cpu_simd_tmpl.h,
 * cpu/cpu_profile.c) and `qnext demo-model --config` (model/demo.c), on every SIMD path this CPU
 * can run:
 *   - the GEMM's ways to compute a row (the prefetching 8-row one-token GEMV, the 4 x 3 and 4 x 1
 *     register tiles, the single-row leftovers) give bitwise the same outputs, on long runs of
 *     consecutive rows (which test_kernels' permuted weights rarely have), for bf16, fp8 and f32,
 *     and are close to a double reference;
 *   - the small matmul behind the chunked GDN and attention (mm): close to a double reference, a row
 *     computed alone equals the row computed in a tile, and skipping the zeros of a triangular A
 *     changes no bit;
 *   - the per-op timers (QNEXT_CPU_PROFILE) leave results bitwise unchanged;
 *   - demo-model --config copies the config (and a generation_config.json beside it), writes a
 *     model the forward loads and runs, and rejects fp8 without a quantization_config and a
 *     malformed config with clear errors.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backend/backend.h"
#include "cpu/cpu_kernels.h"
#include "model/cache.h"
#include "model/demo.h"
#include "model/model.h"

static const eng_simd PATHS[] = {ENG_SIMD_SCALAR, ENG_SIMD_AVX2, ENG_SIMD_AVX512};
#define N_PATHS ((int)(sizeof PATHS / sizeof PATHS[0]))

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static double urand(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}
static float frand(float lo, float hi)
{
    return lo + (hi - lo) * (float)urand();
}
static void *xcalloc(size_t n, size_t s)
{
    void *p = calloc(n ? n : 1, s ? s : 1);
    ck_assert(p != NULL);
    return p;
}

static eng_backend *make_backend(eng_simd simd, int threads)
{
    eng_backend *be = NULL;
    eng_cpu_options o = {threads, simd};
    ck_assert_msg(eng_backend_cpu_create(&o, &be) == ENG_OK, "%s", eng_err_last());
    qn_op_limits lim = {.max_tokens = 64, .hidden = 64, .attn_head_dim = 64, .attn_group = 2};
    ck_assert_int_eq(be->reserve(be->ctx, &lim), ENG_OK);
    return be;
}

/* ==== GEMM paths ============================================================================== */

/* A weight of `rows` consecutive rows of K columns (bf16, fp8 with 128-column blocks, or f32) and
 * the exact value of every element. */
typedef struct wsrc {
    eng_dtype dt;
    int rows, K;
    void *data;
    float *scale;
    double *val;
} wsrc;

static void wsrc_make(wsrc *w, eng_dtype dt, int rows, int K)
{
    memset(w, 0, sizeof *w);
    w->dt = dt;
    w->rows = rows;
    w->K = K;
    w->data = xcalloc((size_t)rows * K, eng_dtype_size(dt));
    w->val = xcalloc((size_t)rows * K, sizeof *w->val);
    const int nbc = (K + 127) / 128, nbr = (rows + 127) / 128;
    if (dt == ENG_DTYPE_F8_E4M3) {
        w->scale = xcalloc((size_t)nbr * nbc, sizeof *w->scale);
        for (int i = 0; i < nbr * nbc; i++) w->scale[i] = frand(0.001f, 0.003f);
    }
    for (int r = 0; r < rows; r++)
        for (int k = 0; k < K; k++) {
            const size_t i = (size_t)r * K + k;
            const float v = frand(-1, 1);
            if (dt == ENG_DTYPE_F32) {
                ((float *)w->data)[i] = v;
                w->val[i] = v;
            } else if (dt == ENG_DTYPE_BF16) {
                ((uint16_t *)w->data)[i] = eng_f32_to_bf16(v);
                w->val[i] = eng_bf16_to_f32(((uint16_t *)w->data)[i]);
            } else {
                const uint8_t b = eng_f32_to_fp8e4m3(v * 400.0f);
                ((uint8_t *)w->data)[i] = b;
                w->val[i] = (double)(eng_fp8e4m3_to_f32(b) * w->scale[(r / 128) * nbc + k / 128]);
            }
        }
}

static void wsrc_free(wsrc *w)
{
    free(w->data);
    free(w->scale);
    free(w->val);
}

static void check_gemm_paths(eng_simd simd, eng_dtype dt, int rows, int K)
{
    wsrc w;
    wsrc_make(&w, dt, rows, K);
    qn_weight_part part = {"paths", dt, w.data, rows, K, w.scale, 128, 128, rows, NULL, 0, 0};
    qn_weight_desc desc = {"paths", K, 1, 1, &part};
    eng_backend *be = make_backend(simd, 2);
    qn_weight *qw = NULL;
    ck_assert_msg(be->weight_create(be->ctx, &desc, &qw) == ENG_OK, "%s", eng_err_last());
    const int Ts[] = {1, 2, 3, 6, 7, 13, 31, 32, 33, 50};
    const int ldx = K + 1, ldy = rows + 3;
    for (size_t ti = 0; ti < sizeof Ts / sizeof Ts[0]; ti++) {
        const int T = Ts[ti];
        float *x = xcalloc((size_t)T * ldx, sizeof *x), *y = xcalloc((size_t)T * ldy, sizeof *y);
        float *y1 = xcalloc((size_t)ldy, sizeof *y1);
        for (size_t i = 0; i < (size_t)T * ldx; i++) x[i] = frand(-1, 1);
        be->matmul(be->ctx, qw, 0, x, ldx, T, y, ldy);
        for (int t = 0; t < T; t++) {
            be->matmul(be->ctx, qw, 0, x + (size_t)t * ldx, ldx, 1, y1, ldy);
            if (memcmp(y1, y + (size_t)t * ldy, (size_t)rows * sizeof *y1) != 0)
                ck_abort_msg("gemm %s %s rows=%d K=%d T=%d: row %d differs from the same row alone",
                             eng_simd_name(simd), eng_dtype_name(dt), rows, K, T, t);
            for (int n = 0; n < rows; n++) {
                double ref = 0, scale = 0;
                for (int k = 0; k < K; k++) {
                    const double p = w.val[(size_t)n * K + k] * x[(size_t)t * ldx + k];
                    ref += p;
                    scale += fabs(p);
                }
                const double err = fabs(y[(size_t)t * ldy + n] - ref) / (scale > 1e-30 ? scale : 1e-30);
                if (!(err <= 2e-6 * (1 + sqrt(K))))
                    ck_abort_msg("gemm %s %s K=%d T=%d [%d][%d]: %.9g vs %.9g", eng_simd_name(simd),
                                 eng_dtype_name(dt), K, T, t, n, y[(size_t)t * ldy + n], ref);
            }
        }
        free(x);
        free(y);
        free(y1);
    }
    be->weight_destroy(be->ctx, qw);
    eng_backend_destroy(be);
    wsrc_free(&w);
}

START_TEST(test_gemm_paths_bitwise)
{
    for (int pi = 0; pi < N_PATHS; pi++) {
        if (!eng_simd_supported(PATHS[pi])) continue;
        check_gemm_paths(PATHS[pi], ENG_DTYPE_BF16, 45, 1030); /* 8-row GEMV tiles + leftovers, K tail */
        check_gemm_paths(PATHS[pi], ENG_DTYPE_BF16, 37, 256);
        check_gemm_paths(PATHS[pi], ENG_DTYPE_F8_E4M3, 40, 384);
        check_gemm_paths(PATHS[pi], ENG_DTYPE_F32, 27, 200);
    }
}
END_TEST

/* ==== mm ====================================================================================== */

/* mm is reached directly through the exported kernel tables (the ops use it inside the chunked
 * GDN and attention, whose results test_kernels checks). */
static const cpu_kernels *table_for(eng_simd s)
{
    switch (s) {
    case ENG_SIMD_AVX2:
        return &cpu_kernels_avx2;
    case ENG_SIMD_AVX512:
        return &cpu_kernels_avx512;
    default:
        return &cpu_kernels_scalar;
    }
}

static void check_mm(eng_simd simd, int M, int N, int Kd, bool tri)
{
    const cpu_kernels *k = table_for(simd);
    const int lda = Kd + 2, ldb = N + 3, ldc = N + 1;
    float *A = xcalloc((size_t)M * lda, 4), *B = xcalloc((size_t)Kd * ldb, 4);
    float *C = xcalloc((size_t)M * ldc, 4), *C0 = xcalloc((size_t)M * ldc, 4), *C1 = xcalloc((size_t)M * ldc, 4);
    for (int i = 0; i < M; i++)
        for (int a = 0; a < Kd; a++) A[(size_t)i * lda + a] = tri && a > i ? 0.0f : frand(-1, 1);
    for (size_t i = 0; i < (size_t)Kd * ldb; i++) B[i] = frand(-1, 1);
    for (size_t i = 0; i < (size_t)M * ldc; i++) C0[i] = frand(-1, 1);
    for (int acc = 0; acc < 2; acc++) {
        memcpy(C, C0, (size_t)M * ldc * 4);
        k->mm(C, ldc, A, lda, B, ldb, M, N, Kd, acc, tri);
        for (int i = 0; i < M; i++)
            for (int n = 0; n < N; n++) {
                double ref = acc ? C0[(size_t)i * ldc + n] : 0.0, scale = fabs(ref);
                for (int a = 0; a < Kd; a++) {
                    const double p = (double)A[(size_t)i * lda + a] * B[(size_t)a * ldb + n];
                    ref += p;
                    scale += fabs(p);
                }
                const double err = fabs(C[(size_t)i * ldc + n] - ref) / (scale > 1e-30 ? scale : 1e-30);
                if (!(err <= 2e-6 * (1 + sqrt(Kd))))
                    ck_abort_msg("mm %s M=%d N=%d Kd=%d acc=%d tri=%d [%d][%d]: %.9g vs %.9g", eng_simd_name(simd), M,
                                 N, Kd, acc, tri, i, n, C[(size_t)i * ldc + n], ref);
            }
        /* each row alone, and (for a triangular A) without skipping its zeros: the same bits */
        for (int i = 0; i < M; i++) {
            memcpy(C1, C0, (size_t)M * ldc * 4);
            k->mm(C1 + (size_t)i * ldc, ldc, A + (size_t)i * lda, lda, B, ldb, 1, N, tri ? (i + 1 < Kd ? i + 1 : Kd) : Kd,
                  acc, false);
            if (memcmp(C1 + (size_t)i * ldc, C + (size_t)i * ldc, (size_t)N * 4) != 0)
                ck_abort_msg("mm %s M=%d N=%d Kd=%d acc=%d tri=%d: row %d alone differs", eng_simd_name(simd), M, N,
                             Kd, acc, tri, i);
        }
        if (tri) {
            memcpy(C1, C0, (size_t)M * ldc * 4);
            k->mm(C1, ldc, A, lda, B, ldb, M, N, Kd, acc, false);
            ck_assert_msg(memcmp(C1, C, (size_t)M * ldc * 4) == 0, "mm %s: skipping the triangle changed bits",
                          eng_simd_name(simd));
        }
    }
    free(A), free(B), free(C), free(C0), free(C1);
}

START_TEST(test_mm)
{
    const int Ms[] = {1, 4, 7, 64}, Ns[] = {8, 13, 24, 40, 128}, Ks[] = {1, 37, 64};
    for (int pi = 0; pi < N_PATHS; pi++) {
        if (!eng_simd_supported(PATHS[pi])) continue;
        for (size_t a = 0; a < 4; a++)
            for (size_t b = 0; b < 5; b++)
                for (size_t c = 0; c < 3; c++)
                    for (int tri = 0; tri < 2; tri++) check_mm(PATHS[pi], Ms[a], Ns[b], Ks[c], tri);
    }
}
END_TEST

/* ==== profile ================================================================================= */

static void golden_dir(char *buf, size_t cap, const char *name)
{
    const char *src = getenv("QNEXT_SOURCE_DIR");
    ck_assert_msg(src != NULL, "QNEXT_SOURCE_DIR is not set (run through ctest)");
    snprintf(buf, cap, "%s/tests/golden/fixtures/%s", src, name);
}

/* Prefill of n tokens then 2 decode steps; logits of the last row of each call. */
static void run_model(const char *dir, eng_simd simd, int n, float *logits, int *V)
{
    eng_backend *be = NULL;
    eng_cpu_options o = {2, simd};
    ck_assert_msg(eng_backend_cpu_create(&o, &be) == ENG_OK, "%s", eng_err_last());
    qn_model *m = NULL;
    qn_model_params mp = {.max_tokens = 64, .quiet = true};
    ck_assert_msg(qn_model_load(dir, be, &mp, &m) == ENG_OK, "%s", eng_err_last());
    qn_cache *c = NULL;
    qn_cache_params cp = {.n_slots = 1, .n_blocks = 8, .block_size = 16};
    ck_assert_msg(qn_cache_create(m, &cp, &c) == ENG_OK, "%s", eng_err_last());
    *V = qn_model_vocab(m);
    int32_t tok[64], table[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    for (int i = 0; i < n; i++) tok[i] = 3 + (i * 7919) % (*V - 3);
    for (int step = 0; step < 3; step++) {
        const int nt = step == 0 ? n : 1, pos = step == 0 ? 0 : n + step - 1;
        qn_seq s = {nt, pos, 0, table, 8};
        int32_t row = nt - 1;
        qn_batch b = {nt, step == 0 ? tok : &tok[step], 1, &s, 1, &row};
        ck_assert_msg(qn_model_forward(m, c, &b, logits + (size_t)step * *V) == ENG_OK, "%s", eng_err_last());
    }
    qn_cache_destroy(c);
    qn_model_destroy(m);
    eng_backend_destroy(be);
}

START_TEST(test_profile_bitwise)
{
    char dir[1024];
    golden_dir(dir, sizeof dir, "a_realdims");
    int V = 0;
    float *a = xcalloc((size_t)3 * 200000, 4), *b = xcalloc((size_t)3 * 200000, 4);
    run_model(dir, ENG_SIMD_AUTO, 40, a, &V);
    ck_assert_int_le(V, 200000);
    setenv("QNEXT_CPU_PROFILE", "1", 1);
    run_model(dir, ENG_SIMD_AUTO, 40, b, &V); /* prints its table to stderr */
    unsetenv("QNEXT_CPU_PROFILE");
    ck_assert_msg(memcmp(a, b, (size_t)3 * V * 4) == 0, "per-op timers changed the logits");
    free(a);
    free(b);
}
END_TEST

/* ==== demo-model --config ===================================================================== */

static char tmp[64];

static void setup(void)
{
    snprintf(tmp, sizeof tmp, "/tmp/qn_cpuperf_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmp));
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    ck_assert_int_eq(system(cmd), 0);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fputs(text, f) >= 0, 1);
    ck_assert_int_eq(fclose(f), 0);
}

static bool same_file(const char *a, const char *b)
{
    char *x = NULL, *y = NULL;
    size_t nx = 0, ny = 0;
    bool ok = eng_file_read(a, 1 << 20, &x, &nx) == ENG_OK && eng_file_read(b, 1 << 20, &y, &ny) == ENG_OK && nx == ny &&
              !memcmp(x, y, nx);
    eng_free(x);
    eng_free(y);
    return ok;
}

/* A small architecture unlike the built-in demo: 3 layers (the last full attention), 4 experts
 * top-2, hidden 96, vocab 1000, tied embeddings, one MTP layer named in the config. */
static const char small_config[] =
    "{\"architectures\": [\"Qwen3NextForCausalLM\"], \"model_type\": \"qwen3_next\", \"hidden_size\": 96,\n"
    " \"num_hidden_layers\": 3, \"full_attention_interval\": 3, \"num_attention_heads\": 2,\n"
    " \"num_key_value_heads\": 1, \"head_dim\": 32, \"partial_rotary_factor\": 0.25, \"linear_num_key_heads\": 1,\n"
    " \"linear_num_value_heads\": 2, \"linear_key_head_dim\": 32, \"linear_value_head_dim\": 32,\n"
    " \"linear_conv_kernel_dim\": 4, \"num_experts\": 4, \"num_experts_per_tok\": 2, \"moe_intermediate_size\": 48,\n"
    " \"shared_expert_intermediate_size\": 48, \"intermediate_size\": 64, \"vocab_size\": 1000,\n"
    " \"tie_word_embeddings\": true, \"rms_norm_eps\": 1e-6, \"rope_theta\": 10000, \"norm_topk_prob\": true,\n"
    " \"num_nextn_predict_layers\": 1, \"torch_dtype\": \"bfloat16\"}\n";

START_TEST(test_demo_config)
{
    char cfg[256], gen[256], out[256], p[512], q[512];
    snprintf(cfg, sizeof cfg, "%s/config.json", tmp);
    snprintf(gen, sizeof gen, "%s/generation_config.json", tmp);
    snprintf(out, sizeof out, "%s/model", tmp);
    write_text(cfg, small_config);
    write_text(gen, "{\"eos_token_id\": [5], \"temperature\": 0.5}\n");
    qn_demo_options o = {.out_dir = out, .seed = 3, .config_path = cfg};
    qn_demo_summary s;
    ck_assert_msg(qn_demo_write(&o, &s) == ENG_OK, "%s", eng_err_last());
    ck_assert_int_eq(s.n_layers, 3);
    ck_assert_int_eq(s.n_linear, 2);
    ck_assert_int_eq(s.n_full, 1);
    ck_assert_int_eq(s.n_mtp, 1);
    ck_assert_int_eq(s.n_experts, 4);
    ck_assert_int_eq(s.top_k, 2);
    ck_assert(!s.fp8);
    snprintf(p, sizeof p, "%s/config.json", out);
    ck_assert_msg(same_file(cfg, p), "config.json is not a copy of the given config");
    snprintf(p, sizeof p, "%s/generation_config.json", out);
    ck_assert_msg(same_file(gen, p), "generation_config.json beside the config was not copied");
    /* the forward loads and runs it */
    float *logits = xcalloc((size_t)3 * 1000, 4);
    int V = 0;
    run_model(out, ENG_SIMD_AUTO, 5, logits, &V);
    ck_assert_int_eq(V, 1000);
    for (int i = 0; i < 3 * V; i++) ck_assert(isfinite(logits[i]));
    free(logits);
    /* the CLI, without a generation_config.json beside the config: the demo's is written */
    const char *bin = getenv("QNEXT_BIN");
    ck_assert_ptr_nonnull(bin);
    snprintf(q, sizeof q, "%s/other", tmp);
    ck_assert_int_eq(mkdir(q, 0755), 0);
    snprintf(p, sizeof p, "%s/other/config.json", tmp);
    write_text(p, small_config);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "QNEXT_PROGRESS=0 '%s/qnext' demo-model --config '%s' --out '%s/m2' --no-tokenizer "
             "--shard-mb 0 > '%s/log' 2>&1", bin, p, tmp, tmp);
    int st = system(cmd);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "demo-model --config failed");
    snprintf(p, sizeof p, "%s/log", tmp);
    char *log = NULL;
    size_t n = 0;
    ck_assert_int_eq(eng_file_read(p, 1 << 20, &log, &n), ENG_OK);
    ck_assert_msg(strstr(log, "3 layers (2 linear + 1 full attention) + 1 MTP layer, 4 experts top-2"), "%s", log);
    eng_free(log);
    snprintf(p, sizeof p, "%s/m2/generation_config.json", tmp);
    ck_assert(eng_file_exists(p));
}
END_TEST

START_TEST(test_demo_config_errors)
{
    char cfg[256], out[256];
    snprintf(cfg, sizeof cfg, "%s/config.json", tmp);
    snprintf(out, sizeof out, "%s/model", tmp);
    write_text(cfg, small_config);
    qn_demo_options o = {.out_dir = out, .config_path = cfg, .fp8 = true};
    ck_assert_int_eq(qn_demo_write(&o, NULL), ENG_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(eng_err_last(), "quantization_config"));
    write_text(cfg, "{\"model_type\": \"qwen3_next\", \"hidden_size\": -4}");
    o.fp8 = false;
    ck_assert_int_eq(qn_demo_write(&o, NULL), ENG_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(eng_err_last(), "config.json"));
    snprintf(cfg, sizeof cfg, "%s/missing.json", tmp);
    ck_assert_int_eq(qn_demo_write(&o, NULL), ENG_ERR_IO);
    ck_assert(!eng_dir_exists(out)); /* nothing written on a bad config */
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("cpu_perf");
    TCase *tc = tcase_create("kernels");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_gemm_paths_bitwise);
    tcase_add_test(tc, test_mm);
    tcase_add_test(tc, test_profile_bitwise);
    suite_add_tcase(s, tc);
    TCase *td = tcase_create("demo_config");
    tcase_add_checked_fixture(td, setup, teardown);
    tcase_set_timeout(td, 600);
    tcase_add_test(td, test_demo_config);
    tcase_add_test(td, test_demo_config_errors);
    suite_add_tcase(s, td);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
