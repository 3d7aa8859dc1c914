/* tests/golden/test_golden.c - the forward pass against Hugging Face transformers.
 *
 * For every fixture model of tests/golden/fixtures (made by gen_golden.py: transformers in
 * float32, see its header) and every SIMD path this CPU can run (scalar always):
 *   prefill  fresh prompts of 1, 3, 63, 64, 65, 130 tokens: every stored row within tolerance
 *   decode   the engine's own greedy loop of 32 steps from a 10-token prompt: the same tokens as
 *            transformers at every step, and the stored logits rows within tolerance
 *   chunked  the 130-token prompt fed in pieces (several splits, aligned and not to 64): the
 *            stored rows within tolerance of transformers' one-shot logits
 * Tolerance (per row): max |engine - hf| / max |hf| <= 2e-3. The worst value seen is printed.
 * The fixtures' prompts were drawn so that no greedy step and no router decision is a near tie
 * (gen_golden.py), so exact token equality is a fair requirement.
 */
#include <check.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/backend.h"
#include "model/cache.h"
#include "model/model.h"

#define TOL 2e-3
#define THREADS 2

static const char *MODELS[] = {"a_realdims", "b_fp8", "c_vocab"};
#define N_MODELS ((int)(sizeof MODELS / sizeof MODELS[0]))
static const eng_simd PATHS[] = {ENG_SIMD_SCALAR, ENG_SIMD_AVX2, ENG_SIMD_AVX512};
#define N_PATHS ((int)(sizeof PATHS / sizeof PATHS[0]))

/* ==== fixture loading ========================================================================= */

typedef struct golden {
    char dir[1024];
    cJSON *json;
    float *bin;
    size_t n_floats;
    int vocab;
} golden;

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    ck_assert(buf != NULL);
    ck_assert_int_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = 0;
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void golden_load(golden *g, const char *name)
{
    const char *src = getenv("QNEXT_SOURCE_DIR");
    ck_assert_msg(src != NULL, "QNEXT_SOURCE_DIR is not set (run through ctest)");
    snprintf(g->dir, sizeof g->dir, "%s/tests/golden/fixtures/%s", src, name);
    char path[1100];
    size_t len;
    snprintf(path, sizeof path, "%s/golden.json", g->dir);
    char *txt = read_all(path, &len);
    g->json = cJSON_ParseWithLength(txt, len);
    free(txt);
    ck_assert_msg(g->json != NULL, "%s: bad JSON", path);
    g->vocab = cJSON_GetObjectItem(g->json, "vocab_size")->valueint;
    snprintf(path, sizeof path, "%s/golden.bin", g->dir);
    g->bin = (float *)(void *)read_all(path, &len);
    g->n_floats = len / 4;
    ck_assert_int_eq((long)g->n_floats, (long)cJSON_GetObjectItem(g->json, "n_floats")->valuedouble);
}

static void golden_free(golden *g)
{
    cJSON_Delete(g->json);
    free(g->bin);
}

static int32_t *int_array(const cJSON *a, int *n)
{
    *n = cJSON_GetArraySize(a);
    int32_t *v = malloc((size_t)(*n > 0 ? *n : 1) * sizeof *v);
    ck_assert(v != NULL);
    for (int i = 0; i < *n; i++) v[i] = (int32_t)cJSON_GetArrayItem(a, i)->valueint;
    return v;
}

/* ==== engine harness ========================================================================== */

typedef struct harness {
    eng_backend *be;
    qn_model *m;
    qn_cache *c;
    int32_t blocks[64];
    int V;
    double worst;
} harness;

static void harness_init(harness *h, const golden *g, eng_simd simd)
{
    memset(h, 0, sizeof *h);
    eng_cpu_options o = {THREADS, simd};
    ck_assert_msg(eng_backend_cpu_create(&o, &h->be) == ENG_OK, "%s", eng_err_last());
    qn_model_params mp = {.max_tokens = 160, .quiet = true};
    ck_assert_msg(qn_model_load(g->dir, h->be, &mp, &h->m) == ENG_OK, "%s", eng_err_last());
    qn_cache_params cp = {.n_slots = 2, .n_blocks = 64, .block_size = 16};
    ck_assert_msg(qn_cache_create(h->m, &cp, &h->c) == ENG_OK, "%s", eng_err_last());
    for (int i = 0; i < 64; i++) h->blocks[i] = 63 - i; /* any order: a block table, not an index */
    h->V = qn_model_vocab(h->m);
    ck_assert_int_eq(h->V, g->vocab);
}

static void harness_free(harness *h)
{
    qn_cache_destroy(h->c);
    qn_model_destroy(h->m);
    eng_backend_destroy(h->be);
}

/* Runs ids[0..n) at position pos of the sequence in slot 0; logits of rows `rows` (relative). */
static void run(harness *h, const int32_t *ids, int n, int pos, const int32_t *rows, int n_rows, float *logits)
{
    qn_seq s = {n, pos, 0, h->blocks, 64};
    qn_batch b = {n, ids, 1, &s, n_rows, rows};
    eng_status st = qn_model_forward(h->m, h->c, &b, logits);
    if (st != ENG_OK) ck_abort_msg("forward: %s", eng_err_last());
}

static double rel_err(const float *got, const float *ref, int V)
{
    double md = 0, mr = 0;
    for (int i = 0; i < V; i++) {
        double d = fabs((double)got[i] - ref[i]);
        if (!isfinite(got[i])) ck_abort_msg("non-finite logit %d", i); /* no ck_assert in loops: each one is a write() */
        if (d > md) md = d;
        if (fabs(ref[i]) > mr) mr = fabs(ref[i]);
    }
    return md / (mr > 0 ? mr : 1);
}

static void check_row(harness *h, const float *got, const float *ref, const char *what, int row)
{
    double e = rel_err(got, ref, h->V);
    if (e > h->worst) h->worst = e;
    if (e > TOL) ck_abort_msg( "%s row %d: max |dlogit| / max |logit| = %.3g > %.1g", what, row, e, TOL);
}

static int argmax(const float *v, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[b]) b = i;
    return b;
}

/* ==== the checks ============================================================================== */

static void check_prefills(harness *h, const golden *g)
{
    const cJSON *cases = cJSON_GetObjectItem(g->json, "prefill");
    for (int ci = 0; ci < cJSON_GetArraySize(cases); ci++) {
        const cJSON *cs = cJSON_GetArrayItem(cases, ci);
        int n, nr;
        int32_t *ids = int_array(cJSON_GetObjectItem(cs, "ids"), &n);
        int32_t *rows = int_array(cJSON_GetObjectItem(cs, "rows"), &nr);
        size_t off = (size_t)cJSON_GetObjectItem(cs, "offset")->valuedouble;
        ck_assert(off + (size_t)nr * h->V <= g->n_floats);
        float *lg = malloc((size_t)nr * h->V * sizeof *lg);
        run(h, ids, n, 0, rows, nr, lg);
        char what[64];
        snprintf(what, sizeof what, "prefill %d", n);
        for (int r = 0; r < nr; r++) check_row(h, lg + (size_t)r * h->V, g->bin + off + (size_t)r * h->V, what, rows[r]);
        free(lg);
        free(ids);
        free(rows);
    }
}

static void check_decode(harness *h, const golden *g)
{
    const cJSON *dc = cJSON_GetObjectItem(g->json, "decode");
    int np, nt, nr;
    int32_t *prompt = int_array(cJSON_GetObjectItem(dc, "prompt"), &np);
    int32_t *toks = int_array(cJSON_GetObjectItem(dc, "tokens"), &nt);
    int32_t *rows = int_array(cJSON_GetObjectItem(dc, "rows"), &nr);
    const float *ref = g->bin + (size_t)cJSON_GetObjectItem(dc, "offset")->valuedouble;
    float *lg = malloc((size_t)h->V * sizeof *lg);
    int32_t last = np - 1, zero = 0;
    run(h, prompt, np, 0, &last, 1, lg);
    int ri = 0;
    for (int step = 0; step < nt; step++) {
        int tok = argmax(lg, h->V);
        if (tok != toks[step]) ck_abort_msg( "decode step %d: engine chose %d, transformers %d", step, tok, toks[step]);
        if (ri < nr && rows[ri] == step) {
            check_row(h, lg, ref + (size_t)ri * h->V, "decode step", step);
            ri++;
        }
        int32_t t = tok;
        run(h, &t, 1, np + step, &zero, 1, lg);
    }
    ck_assert_int_eq(ri, nr);
    free(lg);
    free(prompt);
    free(toks);
    free(rows);
}

static void check_chunked(harness *h, const golden *g)
{
    const cJSON *ch = cJSON_GetObjectItem(g->json, "chunked");
    const cJSON *cs = cJSON_GetArrayItem(cJSON_GetObjectItem(g->json, "prefill"),
                                         cJSON_GetObjectItem(ch, "prefill_case")->valueint);
    int n, nr;
    int32_t *ids = int_array(cJSON_GetObjectItem(cs, "ids"), &n);
    int32_t *rows = int_array(cJSON_GetObjectItem(cs, "rows"), &nr);
    const float *ref = g->bin + (size_t)cJSON_GetObjectItem(cs, "offset")->valuedouble;
    const cJSON *splits = cJSON_GetObjectItem(ch, "splits");
    for (int si = 0; si < cJSON_GetArraySize(splits); si++) {
        int nb;
        int32_t *b = int_array(cJSON_GetArrayItem(splits, si), &nb);
        ck_assert(nb >= 2 && b[0] == 0 && b[nb - 1] == n);
        for (int k = 0; k + 1 < nb; k++) {
            const int p0 = b[k], p1 = b[k + 1];
            int32_t rel[160]; /* this chunk's stored rows, relative to the chunk */
            int nrel = 0, first = -1;
            for (int r = 0; r < nr; r++)
                if (rows[r] >= p0 && rows[r] < p1) {
                    ck_assert(nrel < 160);
                    if (first < 0) first = r;
                    rel[nrel++] = rows[r] - p0;
                }
            float *chunk_lg = malloc((size_t)(nrel > 0 ? nrel : 1) * h->V * sizeof *chunk_lg);
            run(h, ids + p0, p1 - p0, p0, rel, nrel, chunk_lg);
            char what[64];
            snprintf(what, sizeof what, "chunked split %d", si);
            for (int r = 0; r < nrel; r++)
                check_row(h, chunk_lg + (size_t)r * h->V, ref + (size_t)(first + r) * h->V, what, rows[first + r]);
            free(chunk_lg);
        }
        free(b);
    }
    free(ids);
    free(rows);
}

START_TEST(test_model_path)
{
    const int mi = _i / N_PATHS, pi = _i % N_PATHS;
    if (!eng_simd_supported(PATHS[pi])) {
        /* not a skipped check: this CPU cannot run the path at all (reported, not hidden) */
        printf("golden %s: SIMD path %s not available on this CPU\n", MODELS[mi], eng_simd_name(PATHS[pi]));
        return;
    }
    golden g;
    golden_load(&g, MODELS[mi]);
    harness h;
    harness_init(&h, &g, PATHS[pi]);
    const double t0 = eng_now_s();
    check_prefills(&h, &g);
    const double e_prefill = h.worst;
    check_decode(&h, &g);
    check_chunked(&h, &g);
    printf("golden %-10s %-6s ok: worst rel err %.2e (prefill %.2e), %.2f s\n", MODELS[mi], h.be->name + 4, h.worst,
           e_prefill, eng_now_s() - t0);
    harness_free(&h);
    golden_free(&g);
}
END_TEST

/* `qnext logits` end to end: every row of the 130-token prompt of each model, fed in chunks of 48
 * tokens (--max-tokens), read back from the output file. */
START_TEST(test_cli_logits)
{
    const char *bin = getenv("QNEXT_BIN");
    ck_assert_msg(bin != NULL, "QNEXT_BIN is not set (run through ctest)");
    golden g;
    golden_load(&g, MODELS[_i]);
    const cJSON *cs = cJSON_GetArrayItem(cJSON_GetObjectItem(g.json, "prefill"), 5);
    int n, nr;
    int32_t *ids = int_array(cJSON_GetObjectItem(cs, "ids"), &n);
    int32_t *rows = int_array(cJSON_GetObjectItem(cs, "rows"), &nr);
    ck_assert_int_eq(n, 130);
    char *cmd = malloc(4096 + 8 * (size_t)n), out[] = "/tmp/qnext_golden_XXXXXX";
    int fd = mkstemp(out);
    ck_assert_int_ge(fd, 0);
    close(fd);
    int o = snprintf(cmd, 4096, "'%s/qnext' logits --model '%s' --out '%s' --threads 2 --max-tokens 48 --ids '", bin,
                     g.dir, out);
    for (int i = 0; i < n; i++) o += sprintf(cmd + o, "%s%d", i ? " " : "", ids[i]);
    sprintf(cmd + o, "' 2>/dev/null");
    ck_assert_msg(system(cmd) == 0, "qnext logits failed");
    size_t len;
    float *lg = (float *)(void *)read_all(out, &len);
    unlink(out);
    ck_assert_uint_eq(len, (size_t)n * g.vocab * 4);
    const float *ref = g.bin + (size_t)cJSON_GetObjectItem(cs, "offset")->valuedouble;
    double worst = 0;
    for (int r = 0; r < nr; r++) {
        double e = rel_err(lg + (size_t)rows[r] * g.vocab, ref + (size_t)r * g.vocab, g.vocab);
        if (e > worst) worst = e;
        if (e > TOL) ck_abort_msg("qnext logits row %d: error %.3g", rows[r], e);
    }
    printf("golden %-10s qnext logits ok: worst rel err %.2e\n", MODELS[_i], worst);
    free(lg);
    free(cmd);
    free(ids);
    free(rows);
    golden_free(&g);
}
END_TEST

static Suite *golden_suite(void)
{
    Suite *s = suite_create("golden");
    TCase *tc = tcase_create("hf_fp32");
    tcase_add_loop_test(tc, test_model_path, 0, N_MODELS * N_PATHS);
    tcase_add_loop_test(tc, test_cli_logits, 0, N_MODELS);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(golden_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
