/* bench/gpu/gpu_engine.c - the whole engine (qnext/eng.h) on a device against the CPU engine, on the
 * golden fixture models: the GPU check's engine stage (bench/gpu/run.sh).
 *
 *   gpu_engine [--device cuda|cpu|auto] [--tp N] [--requests R] [--tokens G] [--min-equal K]
 *              [--fixtures DIR] [--tokenizer DIR] [--json FILE]
 *
 * For each fixture model (tests/golden/fixtures: a_realdims, b_fp8, c_vocab) two engines run the same
 * R token-id requests, all submitted at once (prompts of 5..~130 tokens: chunked prefill, then
 * batched decode with the sequences joining and leaving, so CUDA graphs are captured and replayed
 * at several batch sizes), greedy, G tokens each, ignore_eos:
 *   reference  the CPU engine, one rank;
 *   test       --device (default cuda) with --tp ranks (default 1; on CUDA over NCCL), the engine's
 *              defaults otherwise (batch_invariant: the exact fp32 GEMM path on the GPU).
 * A request passes when its first K (--min-equal, default 8) tokens equal the reference's; the
 * model passes when every request does and at least 90% of them are equal to the end (float
 * reduction orders differ between the CPU and the GPU, so a late near-tie may legitimately flip
 * one). Prints a table (equal requests, first divergence, steps, tok/s of both engines) and
 * optionally JSON. Exit status 0 when every model passed.
 * --device cpu runs the harness CPU against CPU (how it is tested without a GPU: every request
 * must then be equal).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h" /* defines: eng_now_s, eng_log_set_level */
#include "qnext/eng.h"
#include "qnext/tokenizer.h"

#define MAX_REQ 64
#define MAX_TOK 256

static const char *MODELS[] = {"a_realdims", "b_fp8", "c_vocab"};
#define N_MODELS 3

typedef struct opts {
    const char *device, *fixtures, *tokenizer, *json;
    int tp, requests, tokens, min_equal;
} opts;

typedef struct run_out {
    int32_t tok[MAX_REQ][MAX_TOK];
    int n_tok[MAX_REQ];
    bool failed;
    char error[512];
    double secs;
    int steps;
    const char *device;
} run_out;

typedef struct model_result {
    const char *name;
    int equal, early_ok, first_div; /* requests equal to the end, equal over min_equal, earliest divergence */
    double ref_tps, test_tps;
    int steps;
    bool pass;
    char error[512];
} model_result;

/* Prompt i of model `vocab`: deterministic ids in [3, vocab) (0..2 are bos / eos in the fixtures). */
static int prompt(int i, int vocab, int32_t *ids)
{
    const int len = 5 + (i * 41) % 126;
    uint64_t x = 0x9E3779B97F4A7C15ull * (uint64_t)(i + 1);
    for (int t = 0; t < len; t++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        ids[t] = (int32_t)(3 + x % (uint64_t)(vocab - 3));
    }
    return len;
}

static void run_engine(const opts *o, const char *dir, const eng_tokenizer *tok, const char *device, int tp,
                       run_out *out)
{
    memset(out, 0, sizeof *out);
    eng_config c;
    eng_config_init(&c);
    c.model_dir = dir;
    c.device = device;
    c.tp = tp;
    c.tokenizer = tok;
    c.max_running = o->requests;
    c.max_batch_tokens = 256;
    c.max_model_len = 512;
    c.prefix_cache_bytes = 0;
    eng_engine *e = NULL;
    eng_status st = eng_create(&c, &e);
    if (st != ENG_OK) {
        out->failed = true;
        snprintf(out->error, sizeof out->error, "eng_create (%s, tp %d): %s: %s", device, tp,
                 eng_status_str(st), eng_err_last());
        return;
    }
    eng_model_info mi;
    eng_get_model_info(e, &mi);
    out->device = mi.device;
    uint64_t ids[MAX_REQ];
    static int32_t p[MAX_REQ][160];
    const double t0 = eng_now_s();
    for (int i = 0; i < o->requests; i++) {
        eng_request r;
        eng_request_init(&r);
        r.input = ENG_INPUT_TOKENS;
        r.n_tokens = (size_t)prompt(i, mi.vocab_size, p[i]);
        r.tokens = p[i];
        r.sampling.temperature = 0;
        r.sampling.max_tokens = o->tokens;
        r.sampling.ignore_eos = true;
        if ((st = eng_submit(e, &r, &ids[i])) != ENG_OK) {
            out->failed = true;
            snprintf(out->error, sizeof out->error, "eng_submit: %s: %s", eng_status_str(st), eng_err_last());
            eng_destroy(e);
            return;
        }
    }
    int open = o->requests;
    while (open > 0 && out->steps < 100000) {
        eng_event ev[64];
        size_t n = 0;
        if ((st = eng_step(e, ev, 64, &n)) != ENG_OK) {
            out->failed = true;
            snprintf(out->error, sizeof out->error, "eng_step: %s: %s", eng_status_str(st), eng_err_last());
            break;
        }
        out->steps++;
        for (size_t k = 0; k < n; k++) {
            int i = 0;
            while (i < o->requests && ids[i] != ev[k].request_id) i++;
            if (i == o->requests) continue;
            if (ev[k].kind == ENG_EV_TOKENS) {
                for (size_t j = 0; j < ev[k].n_tokens && out->n_tok[i] < MAX_TOK; j++)
                    out->tok[i][out->n_tok[i]++] = ev[k].tokens[j];
            } else {
                if (ev[k].kind == ENG_EV_ERROR) {
                    out->failed = true;
                    snprintf(out->error, sizeof out->error, "request %d: %s", i,
                             ev[k].error_message ? ev[k].error_message : "error");
                }
                open--;
            }
        }
    }
    out->secs = eng_now_s() - t0;
    eng_destroy(e);
}

static void compare(const opts *o, const run_out *ref, const run_out *test, model_result *r)
{
    r->first_div = -1;
    for (int i = 0; i < o->requests; i++) {
        int n = ref->n_tok[i] < test->n_tok[i] ? ref->n_tok[i] : test->n_tok[i], k = 0;
        while (k < n && ref->tok[i][k] == test->tok[i][k]) k++;
        if (k == o->tokens && ref->n_tok[i] == o->tokens && test->n_tok[i] == o->tokens)
            r->equal++;
        else if (r->first_div < 0 || k < r->first_div)
            r->first_div = k;
        if (k >= o->min_equal || k == o->tokens) r->early_ok++;
    }
    const double gen = (double)o->requests * o->tokens;
    r->ref_tps = ref->secs > 0 ? gen / ref->secs : 0;
    r->test_tps = test->secs > 0 ? gen / test->secs : 0;
    r->steps = test->steps;
    const bool exact = !strcmp(test->device ? test->device : "", "cpu") && o->tp == 1;
    r->pass =
        r->early_ok == o->requests && (exact ? r->equal == o->requests : 10 * r->equal >= 9 * o->requests);
}

int main(int argc, char **argv)
{
    opts o = {.device = "cuda", .tp = 1, .requests = 12, .tokens = 24, .min_equal = 8};
    const char *src = getenv("QNEXT_SOURCE_DIR");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--device") && v)
            o.device = argv[++i];
        else if (!strcmp(a, "--tp") && v)
            o.tp = atoi(argv[++i]);
        else if (!strcmp(a, "--requests") && v)
            o.requests = atoi(argv[++i]);
        else if (!strcmp(a, "--tokens") && v)
            o.tokens = atoi(argv[++i]);
        else if (!strcmp(a, "--min-equal") && v)
            o.min_equal = atoi(argv[++i]);
        else if (!strcmp(a, "--fixtures") && v)
            o.fixtures = argv[++i];
        else if (!strcmp(a, "--tokenizer") && v)
            o.tokenizer = argv[++i];
        else if (!strcmp(a, "--json") && v)
            o.json = argv[++i];
        else {
            fprintf(stderr, "usage: gpu_engine [--device cuda|cpu|auto] [--tp N] [--requests R] [--tokens G] "
                            "[--min-equal K] [--fixtures DIR] [--tokenizer DIR] [--json FILE]\n");
            return 2;
        }
    }
    if (o.requests < 1 || o.requests > MAX_REQ || o.tokens < 1 || o.tokens > MAX_TOK || o.tp < 1 ||
        o.min_equal < 0) {
        fprintf(stderr, "gpu_engine: --requests 1..%d, --tokens 1..%d, --tp >= 1\n", MAX_REQ, MAX_TOK);
        return 2;
    }
    char fx[1024], tk[1024];
    snprintf(fx, sizeof fx, "%s", o.fixtures ? o.fixtures : "");
    snprintf(tk, sizeof tk, "%s", o.tokenizer ? o.tokenizer : "");
    if (!o.fixtures) snprintf(fx, sizeof fx, "%s/tests/golden/fixtures", src ? src : ".");
    if (!o.tokenizer) snprintf(tk, sizeof tk, "%s/tests/fixtures/tokenizer", src ? src : ".");
    eng_log_set_level(ENG_LOG_WARN);
    eng_tokenizer *tok = NULL;
    eng_status st = eng_tokenizer_load(tk, &tok);
    if (st != ENG_OK) {
        fprintf(stderr, "gpu_engine: tokenizer %s: %s\n", tk, eng_err_last());
        return 1;
    }
    static run_out ref, test;
    model_result res[N_MODELS];
    memset(res, 0, sizeof res);
    int failed = 0;
    printf("engine on %s (tp %d) against the CPU engine: %d requests x %d greedy tokens per model\n\n",
           o.device, o.tp, o.requests, o.tokens);
    printf("| model | requests equal | first %d equal | earliest divergence | steps | CPU tok/s | %s tok/s | "
           "result |\n",
           o.min_equal, o.device);
    printf("|---|---|---|---|---|---|---|---|\n");
    for (int mi = 0; mi < N_MODELS; mi++) {
        model_result *r = &res[mi];
        r->name = MODELS[mi];
        char dir[1200];
        snprintf(dir, sizeof dir, "%s/%s", fx, MODELS[mi]);
        run_engine(&o, dir, tok, "cpu", 1, &ref);
        if (!ref.failed) run_engine(&o, dir, tok, o.device, o.tp, &test);
        if (ref.failed || test.failed) {
            snprintf(r->error, sizeof r->error, "%s", ref.failed ? ref.error : test.error);
            printf("| %s | - | - | - | - | - | - | FAIL: %s |\n", r->name, r->error);
            failed++;
            continue;
        }
        compare(&o, &ref, &test, r);
        char div[32] = "-";
        if (r->first_div >= 0) snprintf(div, sizeof div, "token %d", r->first_div);
        printf("| %s | %d/%d | %d/%d | %s | %d | %.0f | %.0f | %s |\n", r->name, r->equal, o.requests,
               r->early_ok, o.requests, div, r->steps, r->ref_tps, r->test_tps, r->pass ? "pass" : "FAIL");
        if (!r->pass) failed++;
    }
    if (o.json) {
        FILE *f = fopen(o.json, "w");
        if (f) {
            fprintf(f, "{\"device\": \"%s\", \"tp\": %d, \"requests\": %d, \"tokens\": %d, \"models\": [",
                    o.device, o.tp, o.requests, o.tokens);
            for (int mi = 0; mi < N_MODELS; mi++) {
                const model_result *r = &res[mi];
                fprintf(
                    f,
                    "%s{\"name\": \"%s\", \"pass\": %s, \"equal\": %d, \"first_equal\": %d, "
                    "\"first_divergence\": %d, \"steps\": %d, \"cpu_tok_s\": %.1f, \"device_tok_s\": %.1f, "
                    "\"error\": \"%s\"}",
                    mi ? ", " : "", r->name, r->pass ? "true" : "false", r->equal, r->early_ok, r->first_div,
                    r->steps, r->ref_tps, r->test_tps, r->error[0] ? "see log" : "");
            }
            fprintf(f, "]}\n");
            fclose(f);
        }
    }
    eng_tokenizer_destroy(tok);
    printf("\ngpu_engine: %s\n", failed ? "FAILED" : "all models passed");
    return failed ? 1 : 0;
}
