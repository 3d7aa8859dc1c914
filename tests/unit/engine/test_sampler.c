/* tests/unit/engine/test_sampler.c - sample/rng + sample/sampler: Philox known answers, each
 * filter on hand-computed 4-token cases (llama.cpp style), vLLM's processing order, penalties,
 * bias, greedy ties, reproducibility, empirical distributions (chi-square with fixed seeds),
 * raw logprobs, extreme values, large-vocabulary filters against a full-sort reference, speed.
 *
 * Expected values are computed by hand (in comments) or by simple reference code in this file
 * (full sorts, double-precision softmax), never by the sampler itself.
 */
#include <check.h>

#include "core/core.h"
#include "sample/rng.h"
#include "sample/sampler.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define V4 4

static eng_sampler *S;

static void setup4(void)
{
    ck_assert_int_eq(eng_sampler_create(V4, &S), ENG_OK);
}

static void teardown(void)
{
    eng_sampler_destroy(S);
    S = NULL;
}

/* logits = log(p) for p = (0.1, 0.2, 0.3, 0.4) */
static void probs_logits(float *l)
{
    const double p[V4] = {0.1, 0.2, 0.3, 0.4};
    for (int i = 0; i < V4; i++) l[i] = (float)log(p[i]);
}

static void dist(const float *logits, const eng_sampler_params *p, const eng_sampler_history *h, float *out)
{
    eng_status rc = eng_sampler_distribution(S, logits, p, h, out);
    ck_assert_msg(rc == ENG_OK, "distribution failed: %s", eng_err_last());
}

static void expect_probs(const float *got, const double *want, int n, double tol)
{
    for (int i = 0; i < n; i++)
        ck_assert_msg(fabs(got[i] - want[i]) <= tol, "token %d: got %.7f want %.7f", i, got[i], want[i]);
}

/* softmax in double of x[0, n) (-INFINITY entries get 0) */
static void ref_softmax(const double *x, int n, double *out)
{
    double m = -INFINITY, s = 0;
    for (int i = 0; i < n; i++)
        if (x[i] > m) m = x[i];
    for (int i = 0; i < n; i++) s += out[i] = isinf(x[i]) && x[i] < 0 ? 0.0 : exp(x[i] - m);
    for (int i = 0; i < n; i++) out[i] /= s;
}

/* ==== rng ===================================================================================== */

START_TEST(test_philox_known_answers)
{
    /* Random123 tests/kat_vectors, "philox4x32 10" lines: counter, key -> output */
    const uint32_t kat[3][10] = {
        {0, 0, 0, 0, 0, 0, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
        {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0x408f276d, 0x41c83b0e,
         0xa20bc7c6, 0x6d5451fd},
        {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0, 0xd16cfe09, 0x94fdcceb,
         0x5001e420, 0x24126ea1},
    };
    for (int v = 0; v < 3; v++) {
        uint32_t out[4];
        eng_philox4x32_10(&kat[v][0], &kat[v][4], out);
        for (int i = 0; i < 4; i++) ck_assert_uint_eq(out[i], kat[v][6 + i]);
    }
}
END_TEST

START_TEST(test_uniform_range_and_streams)
{
    double sum = 0;
    int same_stream = 0;
    for (uint64_t pos = 0; pos < 10000; pos++) {
        double u = eng_rng_uniform(42, 0, pos);
        ck_assert(u >= 0.0 && u < 1.0);
        ck_assert(u == eng_rng_uniform(42, 0, pos)); /* pure */
        same_stream += u == eng_rng_uniform(42, 1, pos);
        sum += u;
    }
    ck_assert_int_le(same_stream, 1);
    ck_assert(fabs(sum / 10000 - 0.5) < 0.01); /* mean of 10k uniforms: sd 0.0029 */
    ck_assert(eng_rng_uniform(1, 0, 0) != eng_rng_uniform(2, 0, 0));
    ck_assert(eng_rng_uniform(1, 0, 0) != eng_rng_uniform(1, 0, 1ull << 32)); /* high counter word is used */
    ck_assert(eng_rng_entropy_seed() != eng_rng_entropy_seed());
}
END_TEST

/* ==== filters on 4 tokens ===================================================================== */

START_TEST(test_softmax_and_temperature)
{
    float l[V4], pr[V4];
    probs_logits(l);
    eng_sampler_params p;
    eng_sampler_params_init(&p);
    dist(l, &p, NULL, pr);
    expect_probs(pr, (const double[]){0.1, 0.2, 0.3, 0.4}, V4, 1e-6);
    p.temperature = 0.5f; /* p^2 / sum p^2 = (.01, .04, .09, .16) / .30 */
    dist(l, &p, NULL, pr);
    expect_probs(pr, (const double[]){0.01 / 0.3, 0.04 / 0.3, 0.09 / 0.3, 0.16 / 0.3}, V4, 1e-6);
}
END_TEST

START_TEST(test_top_k)
{
    float l[V4], pr[V4];
    probs_logits(l);
    eng_sampler_params p;
    eng_sampler_params_init(&p);
    p.top_k = 1;
    dist(l, &p, NULL, pr);
    expect_probs(pr, (const double[]){0, 0, 0, 1}, V4, 1e-7);
    p.top_k = 3;
    dist(l, &p, NULL, pr);
    expect_probs(pr, (const double[]){0, 0.2 / 0.9, 0.3 / 0.9, 0.4 / 0.9}, V4, 1e-6);
    p.top_k = 4; /* == vocab: off */
    dist(l, &p, NULL, pr);
    expect_probs(pr, (const double[]){0.1, 0.2, 0.3, 0.4}, V4, 1e-6);
    p.top_k = 1000;
    dist(l, &p, NULL, pr);
    expect_probs(pr, (const double[]){0.1, 0.2, 0.3, 0.4}, V4, 1e-6);

    /* ties with the k-th value are all kept (vLLM masks logits < kth only) */
    float t[V4] = {1, 2, 2, 0};
    p.top_k = 1;
    dist(t, &p, NULL, pr);
    expect_probs(pr, (const double[]){0, 0.5, 0.5, 0}, V4, 1e-6);
}
END_TEST

START_TEST(test_top_p)
{
    float l[V4], pr[V4];
    probs_logits(l);
    eng_sampler_params p;
    eng_sampler_params_init(&p);
    p.top_p = 0.35f; /* 0.4 alone crosses 0.35 */
    dist(l, &p, NULL, pr);
    expect_probs(pr, (const double[]){0, 0, 0, 1}, V4, 1e-7);
    p.top_p = 0.5f; /* mass before token 2 is 0.4 < 0.5: keep {3, 2} */
    dist(l, &p, NULL, pr);
    expect_probs(pr, (const double[]){0, 0, 0.3 / 0.7, 0.4 / 0.7}, V4, 1e-6);
    p.top_p = 0.75f; /* 0.7 < 0.75: token 1 kept too */
    dist(l, &p, NULL, pr);
    expect_probs(pr, (const double[]){0, 0.2 / 0.9, 0.3 / 0.9, 0.4 / 0.9}, V4, 1e-6);
    p.top_p = 0.95f;
    dist(l, &p, NULL, pr);
    expect_probs(pr, (const double[]){0.1, 0.2, 0.3, 0.4}, V4, 1e-6);
    p.top_p = 1e-6f; /* at least one token */
    dist(l, &p, NULL, pr);
    expect_probs(pr, (const double[]){0, 0, 0, 1}, V4, 1e-7);
}
END_TEST

START_TEST(test_min_p)
{
    float l[V4], pr[V4];
    probs_logits(l);
    eng_sampler_params p;
    eng_sampler_params_init(&p);
    p.min_p = 0.6f; /* threshold 0.6 * 0.4 = 0.24: keep 0.3 and 0.4 */
    dist(l, &p, NULL, pr);
    expect_probs(pr, (const double[]){0, 0, 3.0 / 7, 4.0 / 7}, V4, 1e-6);
    p.min_p = 0.3f; /* threshold 0.12 */
    dist(l, &p, NULL, pr);
    expect_probs(pr, (const double[]){0, 0.2 / 0.9, 0.3 / 0.9, 0.4 / 0.9}, V4, 1e-6);
    p.min_p = 1.0f; /* only the max */
    dist(l, &p, NULL, pr);
    expect_probs(pr, (const double[]){0, 0, 0, 1}, V4, 1e-7);
}
END_TEST

/* vLLM order: temperature, then min_p, then top-k, then top-p on the renormalised survivors. */
START_TEST(test_filter_order)
{
    float l[V4], pr[V4];
    probs_logits(l);
    eng_sampler_params p;
    eng_sampler_params_init(&p);
    /* T = 2 first: p ~ sqrt(p), ratios to the max (.5, .707, .866, 1); min_p .6 keeps {1,2,3}.
     * (min_p before temperature would keep only {2,3}: ratios .25 .5 .75 1.) */
    p.temperature = 2.0f;
    p.min_p = 0.6f;
    dist(l, &p, NULL, pr);
    double s = sqrt(0.2) + sqrt(0.3) + sqrt(0.4);
    expect_probs(pr, (const double[]){0, sqrt(0.2) / s, sqrt(0.3) / s, sqrt(0.4) / s}, V4, 1e-6);

    /* top-k 2 then top-p .55 over the renormalised pair (.4286, .5714): only token 3.
     * (top-p first on the full distribution would keep {2,3}.) */
    eng_sampler_params_init(&p);
    p.top_k = 2;
    p.top_p = 0.55f;
    dist(l, &p, NULL, pr);
    expect_probs(pr, (const double[]){0, 0, 0, 1}, V4, 1e-7);
    p.top_p = 0.6f; /* .5714 < .6: both */
    dist(l, &p, NULL, pr);
    expect_probs(pr, (const double[]){0, 0, 3.0 / 7, 4.0 / 7}, V4, 1e-6);
}
END_TEST

/* ==== penalties, bias, suppression ============================================================ */

START_TEST(test_repetition_penalty)
{
    float l[V4] = {2.0f, -2.0f, 1.0f, 0.5f}, pr[V4];
    eng_sampler_params p;
    eng_sampler_params_init(&p);
    p.repetition_penalty = 2.0f;
    /* token 0 seen in the prompt (3 times: penalised once), token 1 in the output */
    int32_t prompt[3] = {0, 0, 0}, output[1] = {1};
    eng_sampler_history h = {prompt, 3, output, 1};
    dist(l, &p, &h, pr);
    double want[V4];
    ref_softmax((const double[]){1.0, -4.0, 1.0, 0.5}, V4, want); /* 2/2, -2*2 */
    expect_probs(pr, want, V4, 1e-6);

    p.repetition_penalty = 0.5f; /* < 1 rewards repeats */
    dist(l, &p, &h, pr);
    ref_softmax((const double[]){4.0, -1.0, 1.0, 0.5}, V4, want);
    expect_probs(pr, want, V4, 1e-6);
}
END_TEST

START_TEST(test_presence_frequency)
{
    float l[V4] = {1.0f, 1.0f, 1.0f, 1.0f}, pr[V4];
    eng_sampler_params p;
    eng_sampler_params_init(&p);
    p.frequency_penalty = 0.5f;
    p.presence_penalty = 1.0f;
    int32_t prompt[2] = {0, 1}, output[3] = {2, 2, 3};
    eng_sampler_history h = {prompt, 2, output, 3};
    dist(l, &p, &h, pr);
    /* prompt tokens untouched; token 2: 1 - .5*2 - 1 = -1; token 3: 1 - .5 - 1 = -.5 */
    double want[V4];
    ref_softmax((const double[]){1.0, 1.0, -1.0, -0.5}, V4, want);
    expect_probs(pr, want, V4, 1e-6);

    /* negative penalties encourage repeats */
    p.frequency_penalty = -1.0f;
    p.presence_penalty = 0.0f;
    dist(l, &p, &h, pr);
    ref_softmax((const double[]){1.0, 1.0, 3.0, 2.0}, V4, want);
    expect_probs(pr, want, V4, 1e-6);
}
END_TEST

START_TEST(test_bias_and_suppress)
{
    float l[V4], pr[V4];
    probs_logits(l);
    eng_sampler_params p;
    eng_sampler_params_init(&p);
    eng_logit_bias b[2] = {{0, (float)log(4.0)}, {3, -100.0f}};
    p.logit_bias = b;
    p.n_logit_bias = 2;
    dist(l, &p, NULL, pr);
    /* 0.1 * 4 = 0.4; 0.4 * e^-100 ~ 0: (.4, .2, .3, ~0) / .9 */
    expect_probs(pr, (const double[]){0.4 / 0.9, 0.2 / 0.9, 0.3 / 0.9, 0}, V4, 1e-6);

    /* suppression wins over a positive bias (-inf + b = -inf) */
    int32_t sup[2] = {0, 99}; /* out-of-range ids are ignored */
    p.suppress = sup;
    p.n_suppress = 2;
    dist(l, &p, NULL, pr);
    expect_probs(pr, (const double[]){0, 0.4, 0.6, 0}, V4, 1e-6);

    /* bias is applied before the repetition penalty (vLLM: logit processors, then penalties):
     * l0 = -1 + 4 = 3 > 0 -> 3 / 2 = 1.5 (penalty first would give -2 + 4 = 2) */
    float m[V4] = {-1.0f, 0.0f, 0.0f, 0.0f};
    eng_logit_bias b0 = {0, 4.0f};
    eng_sampler_params_init(&p);
    p.logit_bias = &b0;
    p.n_logit_bias = 1;
    p.repetition_penalty = 2.0f;
    int32_t prompt[1] = {0};
    eng_sampler_history h = {prompt, 1, NULL, 0};
    dist(m, &p, &h, pr);
    double want[V4];
    ref_softmax((const double[]){1.5, 0, 0, 0}, V4, want);
    expect_probs(pr, want, V4, 1e-6);
}
END_TEST

/* ==== greedy ================================================================================== */

START_TEST(test_greedy)
{
    float l[V4] = {1.0f, 3.0f, 3.0f, 2.0f};
    eng_sampler_params p;
    eng_sampler_params_init(&p);
    p.temperature = 0.0f;
    eng_sample_result r;
    for (uint64_t seed = 0; seed < 20; seed++) {
        p.seed = seed;
        ck_assert_int_eq(eng_sampler_sample(S, l, &p, NULL, &r), ENG_OK);
        ck_assert_int_eq(r.token, 1); /* tie: lowest id */
    }
    p.temperature = 1e-6f; /* below vLLM's epsilon: greedy */
    ck_assert_int_eq(eng_sampler_sample(S, l, &p, NULL, &r), ENG_OK);
    ck_assert_int_eq(r.token, 1);
    /* greedy sees penalties: token 1 and 2 repeated in output with presence 1.5 -> token 3 */
    int32_t out[2] = {1, 2};
    eng_sampler_history h = {NULL, 0, out, 2};
    p.presence_penalty = 1.5f;
    ck_assert_int_eq(eng_sampler_sample(S, l, &p, &h, &r), ENG_OK);
    ck_assert_int_eq(r.token, 3);
    /* and the greedy distribution is one-hot */
    float pr[V4];
    dist(l, &p, &h, pr);
    expect_probs(pr, (const double[]){0, 0, 0, 1}, V4, 0);
}
END_TEST

/* ==== sampling ================================================================================ */

/* chi-square statistic of counts vs probabilities over the tokens with p > 0; fails if a token
 * with p == 0 was drawn */
static double chi_square(const int *count, const double *p, int n, int draws)
{
    double chi = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] == 0) {
            ck_assert_msg(count[i] == 0, "token %d has probability 0 but was drawn %d times", i, count[i]);
            continue;
        }
        double e = p[i] * draws;
        chi += (count[i] - e) * (count[i] - e) / e;
    }
    return chi;
}

START_TEST(test_distribution_chi_square)
{
    eng_sampler *s8;
    ck_assert_int_eq(eng_sampler_create(8, &s8), ENG_OK);
    const double p8[8] = {0.02, 0.08, 0.05, 0.25, 0.15, 0.3, 0.1, 0.05};
    float l[8];
    for (int i = 0; i < 8; i++) l[i] = (float)log(p8[i]) + 3.0f; /* a shift changes nothing */
    eng_sampler_params p;
    eng_sampler_params_init(&p);
    p.seed = 12345;
    int count[8] = {0};
    int32_t *out = malloc(20000 * sizeof *out);
    const int N = 20000;
    for (int i = 0; i < N; i++) {
        eng_sampler_history h = {NULL, 0, out, (size_t)i}; /* the position is the output length */
        eng_sample_result r;
        ck_assert_int_eq(eng_sampler_sample(s8, l, &p, &h, &r), ENG_OK);
        out[i] = 0;
        count[r.token]++;
    }
    /* 7 degrees of freedom: the 0.999 quantile is 24.32 */
    double chi = chi_square(count, p8, 8, N);
    ck_assert_msg(chi < 24.32, "chi-square %.2f", chi);

    /* filtered: top_k 4 keeps {3,5,4,6}; top_p .8 over them keeps 3 + 5 + 4 = .7/.8 of the mass
     * (.3/.8 = .375, +.25/.8 -> .6875, +.15/.8 -> .875 crosses .8): {5, 3, 4} renormalised */
    p.top_k = 4;
    p.top_p = 0.8f;
    p.seed = 777;
    memset(count, 0, sizeof count);
    for (int i = 0; i < N; i++) {
        eng_sampler_history h = {NULL, 0, out, (size_t)i};
        eng_sample_result r;
        ck_assert_int_eq(eng_sampler_sample(s8, l, &p, &h, &r), ENG_OK);
        count[r.token]++;
    }
    const double q[8] = {0, 0, 0, 0.25 / 0.7, 0.15 / 0.7, 0.3 / 0.7, 0, 0};
    chi = chi_square(count, q, 8, N); /* 2 degrees of freedom: 0.999 quantile 13.82 */
    ck_assert_msg(chi < 13.82, "chi-square %.2f", chi);
    free(out);
    eng_sampler_destroy(s8);
}
END_TEST

START_TEST(test_reproducible_per_seed)
{
    float l[V4];
    probs_logits(l);
    int32_t out_a[200], out_b[200], out_c[2000];
    eng_sampler_params p;
    eng_sampler_params_init(&p);
    p.seed = 0xfeedbeefull;
    for (int i = 0; i < 200; i++) {
        eng_sampler_history h = {NULL, 0, out_a, (size_t)i};
        eng_sample_result r;
        ck_assert_int_eq(eng_sampler_sample(S, l, &p, &h, &r), ENG_OK);
        out_a[i] = r.token;
    }
    /* again, interleaved with unrelated requests on the same sampler (a different "batch") */
    eng_sampler_params other;
    eng_sampler_params_init(&other);
    other.temperature = 0.3f;
    other.seed = 99;
    float lo[V4] = {4, 3, 2, 1};
    for (int i = 0; i < 200; i++) {
        eng_sample_result r;
        eng_sampler_history ho = {NULL, 0, out_c, (size_t)(i * 7)};
        ck_assert_int_eq(eng_sampler_sample(S, lo, &other, &ho, &r), ENG_OK);
        eng_sampler_history h = {NULL, 0, out_b, (size_t)i};
        ck_assert_int_eq(eng_sampler_sample(S, l, &p, &h, &r), ENG_OK);
        out_b[i] = r.token;
    }
    ck_assert_mem_eq(out_a, out_b, sizeof out_a);
    /* another choice of the same request draws an independent stream */
    p.choice = 1;
    int differ = 0;
    for (int i = 0; i < 200; i++) {
        eng_sampler_history h = {NULL, 0, out_c, (size_t)i};
        eng_sample_result r;
        ck_assert_int_eq(eng_sampler_sample(S, l, &p, &h, &r), ENG_OK);
        differ += r.token != out_a[i];
    }
    ck_assert_int_gt(differ, 50); /* two independent streams agree ~30% of the time */
}
END_TEST

/* ==== logprobs ================================================================================ */

START_TEST(test_logprobs_raw)
{
    float l[V4] = {1.0f, 4.0f, 2.0f, 4.0f};
    double lse = log(exp(1.0) + exp(4.0) + exp(2.0) + exp(4.0));
    eng_sampler_params p;
    eng_sampler_params_init(&p);
    p.n_logprobs = 3;
    p.temperature = 0.0f;
    p.logit_bias = (const eng_logit_bias[]){{0, 10.0f}};
    p.n_logit_bias = 1; /* greedy picks token 0, but logprobs stay raw */
    eng_sample_result r;
    ck_assert_int_eq(eng_sampler_sample(S, l, &p, NULL, &r), ENG_OK);
    ck_assert_int_eq(r.token, 0);
    ck_assert(fabs(r.logprob - (1.0 - lse)) < 1e-5);
    ck_assert_int_eq(r.n_top, 3);
    ck_assert_int_eq(r.top[0].token, 1); /* tie 1/3: lower id first */
    ck_assert_int_eq(r.top[1].token, 3);
    ck_assert_int_eq(r.top[2].token, 2);
    ck_assert(fabs(r.top[0].logprob - (4.0 - lse)) < 1e-5);
    ck_assert(fabs(r.top[2].logprob - (2.0 - lse)) < 1e-5);

    /* temperature does not change raw logprobs */
    p.temperature = 0.25f;
    p.n_logit_bias = 0;
    p.n_logprobs = 0;
    ck_assert_int_eq(eng_sampler_sample(S, l, &p, NULL, &r), ENG_OK);
    ck_assert_int_eq(r.n_top, 0);
    ck_assert(fabs(r.logprob - (l[r.token] - lse)) < 1e-5);

    /* more alternatives than tokens */
    p.n_logprobs = 20;
    ck_assert_int_eq(eng_sampler_sample(S, l, &p, NULL, &r), ENG_OK);
    ck_assert_int_eq(r.n_top, 4);
    ck_assert_int_eq(r.top[3].token, 0);
    /* none */
    p.n_logprobs = -1;
    ck_assert_int_eq(eng_sampler_sample(S, l, &p, NULL, &r), ENG_OK);
    ck_assert_int_eq(r.n_top, 0);
    ck_assert(r.logprob == 0.0f);

    /* the standalone entry point */
    float lp;
    eng_top_logprob top[2];
    int nt;
    ck_assert_int_eq(eng_sampler_logprobs(S, l, 2, 2, &lp, top, &nt), ENG_OK);
    ck_assert(fabs(lp - (2.0 - lse)) < 1e-5);
    ck_assert_int_eq(nt, 2);
    ck_assert_int_eq(eng_sampler_logprobs(S, l, 4, 2, &lp, top, &nt), ENG_ERR_INVALID);
    ck_assert_int_eq(eng_sampler_logprobs(S, l, 0, 21, &lp, top, &nt), ENG_ERR_INVALID);
}
END_TEST

/* ==== extreme values ========================================================================== */

START_TEST(test_all_neg_inf_but_one)
{
    float l[V4] = {-INFINITY, -INFINITY, 7.0f, -INFINITY};
    eng_sampler_params p;
    eng_sampler_params_init(&p);
    p.n_logprobs = 2;
    p.top_p = 0.5f;
    p.top_k = 3;
    for (int pos = 0; pos < 50; pos++) {
        eng_sample_result r;
        int32_t dummy[64] = {0};
        eng_sampler_history h = {NULL, 0, dummy, (size_t)pos};
        ck_assert_int_eq(eng_sampler_sample(S, l, &p, &h, &r), ENG_OK);
        ck_assert_int_eq(r.token, 2);
        ck_assert(r.logprob == 0.0f);
        ck_assert_int_eq(r.n_top, 2);
        ck_assert(isinf(r.top[1].logprob) && r.top[1].logprob < 0);
        ck_assert_int_eq(r.top[1].token, 0); /* -inf ties: lowest id */
    }
}
END_TEST

START_TEST(test_nan_and_inf)
{
    eng_sampler_params p;
    eng_sampler_params_init(&p);
    eng_sample_result r;

    /* NaN counts as -inf; reported */
    float a[V4] = {NAN, 1.0f, NAN, 0.0f};
    int seen[V4] = {0};
    for (int pos = 0; pos < 400; pos++) {
        int32_t dummy[1] = {0};
        eng_sampler_history h = {NULL, 0, dummy, (size_t)pos};
        p.n_logprobs = 1;
        ck_assert_int_eq(eng_sampler_sample(S, a, &p, &h, &r), ENG_OK);
        seen[r.token]++;
        ck_assert_int_eq(r.n_nan, 2);
    }
    ck_assert_int_eq(seen[0] + seen[2], 0);
    ck_assert_int_gt(seen[1], seen[3]);
    ck_assert_int_gt(seen[3], 0);

    /* +inf tokens share the mass equally; greedy takes the lowest; logprob -log 2 */
    float b[V4] = {0.0f, INFINITY, 5.0f, INFINITY};
    memset(seen, 0, sizeof seen);
    for (int pos = 0; pos < 400; pos++) {
        int32_t dummy[1] = {0};
        eng_sampler_history h = {NULL, 0, dummy, (size_t)pos};
        ck_assert_int_eq(eng_sampler_sample(S, b, &p, &h, &r), ENG_OK);
        seen[r.token]++;
        ck_assert(fabs(r.logprob + log(2.0)) < 1e-6);
    }
    ck_assert_int_eq(seen[0] + seen[2], 0);
    ck_assert(seen[1] > 150 && seen[3] > 150);
    p.temperature = 0;
    ck_assert_int_eq(eng_sampler_sample(S, b, &p, NULL, &r), ENG_OK);
    ck_assert_int_eq(r.token, 1);

    /* huge finite values do not overflow the weights */
    float c[V4] = {3e38f, -3e38f, 0.0f, 3e38f};
    p.temperature = 0.7f;
    for (int pos = 0; pos < 50; pos++) {
        int32_t dummy[1] = {0};
        eng_sampler_history h = {NULL, 0, dummy, (size_t)pos};
        ck_assert_int_eq(eng_sampler_sample(S, c, &p, &h, &r), ENG_OK);
        ck_assert(r.token == 0 || r.token == 3);
        ck_assert(isfinite(r.logprob));
    }
}
END_TEST

START_TEST(test_nothing_left_is_an_error)
{
    eng_sampler_params p;
    eng_sampler_params_init(&p);
    eng_sample_result r;
    float a[V4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
    ck_assert_int_eq(eng_sampler_sample(S, a, &p, NULL, &r), ENG_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(eng_err_last(), "no token"));
    float b[V4] = {NAN, NAN, NAN, NAN};
    ck_assert_int_eq(eng_sampler_sample(S, b, &p, NULL, &r), ENG_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(eng_err_last(), "4 NaN"));
    p.temperature = 0;
    ck_assert_int_eq(eng_sampler_sample(S, b, &p, NULL, &r), ENG_ERR_INVALID);
    /* everything suppressed */
    float c[V4] = {1, 2, 3, 4};
    int32_t sup[V4] = {0, 1, 2, 3};
    p.suppress = sup;
    p.n_suppress = V4;
    ck_assert_int_eq(eng_sampler_sample(S, c, &p, NULL, &r), ENG_ERR_INVALID);
    ck_assert_int_eq(r.token, -1);
}
END_TEST

START_TEST(test_param_validation)
{
    eng_sampler_params p;
    float l[V4] = {0, 0, 0, 0};
    eng_sample_result r;
#define BAD(stmt)                                                                                            \
    do {                                                                                                     \
        eng_sampler_params_init(&p);                                                                         \
        stmt;                                                                                                \
        ck_assert_int_eq(eng_sampler_params_check(&p, V4), ENG_ERR_INVALID);                                 \
        ck_assert_int_eq(eng_sampler_sample(S, l, &p, NULL, &r), ENG_ERR_INVALID);                           \
    } while (0)
    BAD(p.temperature = -0.5f);
    BAD(p.temperature = NAN);
    BAD(p.temperature = INFINITY);
    BAD(p.top_k = -1);
    BAD(p.top_p = 0.0f);
    BAD(p.top_p = 1.5f);
    BAD(p.top_p = NAN);
    BAD(p.min_p = -0.1f);
    BAD(p.min_p = 1.1f);
    BAD(p.repetition_penalty = 0.0f);
    BAD(p.repetition_penalty = NAN);
    BAD(p.presence_penalty = 2.5f);
    BAD(p.frequency_penalty = -3.0f);
    BAD(p.n_logprobs = 21);
    BAD(p.n_logprobs = -2);
    BAD((p.logit_bias = (const eng_logit_bias[]){{4, 1.0f}}, p.n_logit_bias = 1));
    BAD((p.logit_bias = (const eng_logit_bias[]){{-1, 1.0f}}, p.n_logit_bias = 1));
    BAD((p.logit_bias = (const eng_logit_bias[]){{1, INFINITY}}, p.n_logit_bias = 1));
    BAD(p.n_logit_bias = 1);
    BAD(p.n_suppress = 1);
#undef BAD
    eng_sampler_params_init(&p);
    ck_assert_int_eq(eng_sampler_params_check(&p, V4), ENG_OK);
    ck_assert_int_eq(eng_sampler_sample(S, NULL, &p, NULL, &r), ENG_ERR_INVALID);
    eng_sampler *bad;
    ck_assert_int_eq(eng_sampler_create(0, &bad), ENG_ERR_INVALID);
    ck_assert_ptr_null(bad);
}
END_TEST

/* ==== large vocabulary ======================================================================== */

#define VBIG 151936
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define QN_TEST_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(QN_TEST_ASAN) || !defined(__OPTIMIZE__)
#define SPEED_BOUND_MS 60.0 /* sanitizer or unoptimised builds */
#else
#define SPEED_BOUND_MS 15.0
#endif

/* deterministic pseudo-normal logits (sum of uniforms) with a few strong tokens */
static float *make_big_logits(uint32_t seed, float scale)
{
    float *l = malloc(VBIG * sizeof *l);
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (int i = 0; i < VBIG; i++) {
        double s = 0;
        for (int k = 0; k < 4; k++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            s += (double)(x >> 11) / 9007199254740992.0;
        }
        l[i] = (float)((s - 2.0) * scale);
    }
    for (int k = 0; k < 10; k++) l[(k * 15013 + seed) % VBIG] += 6.0f + (float)k;
    return l;
}

typedef struct ref_c {
    float l;
    int id;
} ref_c;

static int ref_cmp(const void *a, const void *b)
{
    const ref_c *x = a, *y = b;
    if (x->l != y->l) return x->l > y->l ? -1 : 1;
    return x->id - y->id;
}

/* Reference for temperature + top-k + top-p: full sort, the definitions of sampler.h. */
static void ref_filter(const float *l, int n, float T, int k, float top_p, double *out)
{
    ref_c *c = malloc((size_t)n * sizeof *c);
    for (int i = 0; i < n; i++) c[i] = (ref_c){l[i], i};
    qsort(c, (size_t)n, sizeof *c, ref_cmp);
    int keep = n;
    if (k > 0 && k < n) {
        keep = k;
        while (keep < n && c[keep].l == c[k - 1].l) keep++;
    }
    double m = c[0].l, Z = 0;
    double *w = malloc((size_t)n * sizeof *w);
    for (int i = 0; i < keep; i++) Z += w[i] = exp(((double)c[i].l - m) / T);
    int cut = keep;
    if (top_p < 1.0f) {
        double cum = 0;
        for (cut = 0; cut < keep && cum < top_p * Z; cut++) cum += w[cut];
        Z = cum;
    }
    memset(out, 0, (size_t)n * sizeof *out);
    for (int i = 0; i < cut; i++) out[c[i].id] = w[i] / Z;
    free(w);
    free(c);
}

START_TEST(test_big_vocab_matches_reference)
{
    eng_sampler *s;
    ck_assert_int_eq(eng_sampler_create(VBIG, &s), ENG_OK);
    float *pr = malloc(VBIG * sizeof *pr);
    double *want = malloc(VBIG * sizeof *want);
    const struct {
        float scale, T, top_p;
        int k;
    } cases[] = {
        {1.0f, 1.0f, 0.9f, 0}, /* flat: top-p needs many thousands of tokens */
        {3.0f, 0.7f, 0.95f, 0},     {3.0f, 1.0f, 1.0f, 40}, {3.0f, 1.3f, 0.8f, 500},
        {0.5f, 2.0f, 0.99f, 0}, /* nearly uniform: the chunked selection grows to the whole vocab */
        {3.0f, 1.0f, 0.5f, 100000},
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        float *l = make_big_logits((uint32_t)ci + 1, cases[ci].scale);
        eng_sampler_params p;
        eng_sampler_params_init(&p);
        p.temperature = cases[ci].T;
        p.top_p = cases[ci].top_p;
        p.top_k = cases[ci].k;
        ck_assert_int_eq(eng_sampler_distribution(s, l, &p, NULL, pr), ENG_OK);
        ref_filter(l, VBIG, cases[ci].T, cases[ci].k, cases[ci].top_p, want);
        int n_got = 0, n_want = 0;
        for (int i = 0; i < VBIG; i++) {
            n_got += pr[i] > 0, n_want += want[i] > 0;
            ck_assert_msg(fabs(pr[i] - want[i]) <= 1e-6 + 1e-4 * want[i], "case %zu token %d: %g vs %g", ci,
                          i, pr[i], want[i]);
        }
        /* exp underflow can only drop tokens with probability < 1e-38 */
        ck_assert_msg(abs(n_got - n_want) <= 2, "case %zu: %d vs %d survivors", ci, n_got, n_want);
        free(l);
    }
    free(pr);
    free(want);
    eng_sampler_destroy(s);
}
END_TEST

START_TEST(test_big_vocab_speed)
{
    eng_sampler *s;
    ck_assert_int_eq(eng_sampler_create(VBIG, &s), ENG_OK);
    float *l = make_big_logits(7, 3.0f);
    int32_t hist[4096];
    for (int i = 0; i < 4096; i++) hist[i] = (i * 7919) % VBIG;
    const struct {
        const char *name;
        float T, top_p, min_p;
        int k, n_lp;
        float rep;
    } cases[] = {
        {"greedy", 0.0f, 1.0f, 0.0f, 0, -1, 1.0f},
        {"T=0.7 top_k=20 top_p=0.8 +rep +logprobs20", 0.7f, 0.8f, 0.0f, 20, 20, 1.1f},
        {"T=1 top_p=0.95", 1.0f, 0.95f, 0.0f, 0, -1, 1.0f},
        {"T=1.5 top_p=0.99 (flat, worst case)", 1.5f, 0.99f, 0.0f, 0, -1, 1.0f},
        {"T=1 min_p=0.05", 1.0f, 1.0f, 0.05f, 0, -1, 1.0f},
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        eng_sampler_params p;
        eng_sampler_params_init(&p);
        p.temperature = cases[ci].T;
        p.top_p = cases[ci].top_p;
        p.top_k = cases[ci].k;
        p.min_p = cases[ci].min_p;
        p.n_logprobs = cases[ci].n_lp;
        p.repetition_penalty = cases[ci].rep;
        p.presence_penalty = 0.1f;
        const int iters = 30;
        double best = 1e30, total = 0;
        for (int it = 0; it < iters; it++) {
            eng_sampler_history h = {hist, 2048, hist + 2048, (size_t)(1024 + it)};
            eng_sample_result r;
            uint64_t t0 = eng_now_ns();
            ck_assert_int_eq(eng_sampler_sample(s, l, &p, &h, &r), ENG_OK);
            double ms = (double)(eng_now_ns() - t0) / 1e6;
            total += ms;
            if (ms < best) best = ms;
        }
        double ms = total / iters;
        printf("sampler V=%d %-45s best %.3f ms, mean %.3f ms per token\n", VBIG, cases[ci].name, best, ms);
        /* sanity bound on the best of 30 (robust to a loaded box): an O(V log V) sort of the
         * vocabulary alone costs more than the release bound */
        ck_assert_msg(best < SPEED_BOUND_MS, "%s: %.3f ms per token", cases[ci].name, best);
    }
    free(l);
    eng_sampler_destroy(s);
}
END_TEST

/* ==== allocation failures ===================================================================== */

START_TEST(test_create_alloc_failures)
{
    for (long k = 0; k < 20; k++) {
        eng_sampler *s = NULL;
        eng_alloc_fail_after(k);
        eng_status rc = eng_sampler_create(1000, &s);
        eng_alloc_fail_after(-1);
        if (rc == ENG_OK) {
            ck_assert_ptr_nonnull(s);
            eng_sampler_destroy(s);
            ck_assert_int_eq(k, 10); /* 10 allocations */
            return;
        }
        ck_assert_int_eq(rc, ENG_ERR_NOMEM);
        ck_assert_ptr_null(s);
    }
    ck_abort_msg("create never succeeded");
}
END_TEST

/* ==== registry ================================================================================ */

static Suite *sampler_suite(void)
{
    Suite *s = suite_create("sampler");
    TCase *tc = tcase_create("rng");
    tcase_add_test(tc, test_philox_known_answers);
    tcase_add_test(tc, test_uniform_range_and_streams);
    suite_add_tcase(s, tc);

    tc = tcase_create("filters");
    tcase_add_checked_fixture(tc, setup4, teardown);
    tcase_add_test(tc, test_softmax_and_temperature);
    tcase_add_test(tc, test_top_k);
    tcase_add_test(tc, test_top_p);
    tcase_add_test(tc, test_min_p);
    tcase_add_test(tc, test_filter_order);
    suite_add_tcase(s, tc);

    tc = tcase_create("penalties");
    tcase_add_checked_fixture(tc, setup4, teardown);
    tcase_add_test(tc, test_repetition_penalty);
    tcase_add_test(tc, test_presence_frequency);
    tcase_add_test(tc, test_bias_and_suppress);
    tcase_add_test(tc, test_greedy);
    suite_add_tcase(s, tc);

    tc = tcase_create("sampling");
    tcase_add_checked_fixture(tc, setup4, teardown);
    tcase_add_test(tc, test_distribution_chi_square);
    tcase_add_test(tc, test_reproducible_per_seed);
    tcase_add_test(tc, test_logprobs_raw);
    suite_add_tcase(s, tc);

    tc = tcase_create("extremes");
    tcase_add_checked_fixture(tc, setup4, teardown);
    tcase_add_test(tc, test_all_neg_inf_but_one);
    tcase_add_test(tc, test_nan_and_inf);
    tcase_add_test(tc, test_nothing_left_is_an_error);
    tcase_add_test(tc, test_param_validation);
    tcase_add_test(tc, test_create_alloc_failures);
    suite_add_tcase(s, tc);

    tc = tcase_create("big_vocab");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_big_vocab_matches_reference);
    tcase_add_test(tc, test_big_vocab_speed);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(sampler_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
