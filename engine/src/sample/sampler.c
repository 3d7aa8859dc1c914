/* sample/sampler.c - host sampler: suppression, bias, penalties, greedy/temperature, min-p,
 * top-k, top-p, counter-based draw, raw logprobs (order and semantics in sampler.h).
 *
 * Cost per call for vocab V, all O(V) and sort-free: one copy of the row, one pass for the max,
 * a radix select for the top-k threshold, a 4-wide exp pass, one pass that builds the candidate
 * list (and top-p's histogram), a partition for top-p plus the sort of one histogram bin; with
 * logprobs one pass with a 20-entry heap and one exp pass. No allocation after create.
 */
#include "sample/sampler.h"

#include "core/core.h"  /* eng_malloc, eng_free */
#include "sample/rng.h" /* eng_rng_uniform */

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define TOPP_BINS 4096    /* top-p histogram bins over the survivors' logit range */
#define TOPP_SORT_MAX 512 /* top-p sorts sets up to this size outright */

/* One surviving token: processed logit (ordering key), unnormalised weight, id. */
typedef struct cand {
    float l;
    float w;
    int32_t id;
} cand;

struct eng_sampler {
    int vocab;
    float *work;      /* (vocab) f32: processed logits */
    uint32_t *keys;   /* (vocab) radix-select keys for top-k */
    float *wts;       /* (vocab) f32: exp((l - max) / T) */
    cand *cands;      /* (vocab) candidates */
    cand *cands2;     /* (vocab) top-p: the bin that crosses the target */
    double *bin_mass; /* (TOPP_BINS) top-p histogram */
    uint32_t *mark_a; /* (vocab) epoch marks: output-count validity */
    uint32_t *mark_b; /* (vocab) epoch marks: "already penalised" */
    uint32_t *count;  /* (vocab) output counts, valid where mark_a == epoch */
    uint32_t epoch;
};

/* Result of the shared processing pipeline. */
typedef struct prepared {
    bool greedy;
    int32_t greedy_token;
    size_t n_kept; /* candidates [0, n_kept) of s->cands survive */
    double mass;   /* sum of their weights */
    int n_nan;
} prepared;

/* ==== parameters ============================================================================== */

void eng_sampler_params_init(eng_sampler_params *p)
{
    memset(p, 0, sizeof *p);
    p->temperature = 1.0f;
    p->top_p = 1.0f;
    p->repetition_penalty = 1.0f;
    p->n_logprobs = -1;
}

eng_status eng_sampler_params_check(const eng_sampler_params *p, int vocab)
{
    if (!p) return eng_err_set(ENG_ERR_INVALID, "sampler: NULL parameters");
    if (!(p->temperature >= 0.0f) || isinf(p->temperature))
        return eng_err_set(ENG_ERR_INVALID, "temperature must be a finite number >= 0 (got %g)",
                           p->temperature);
    if (p->top_k < 0) return eng_err_set(ENG_ERR_INVALID, "top_k must be >= 0 (0 = off), got %d", p->top_k);
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f))
        return eng_err_set(ENG_ERR_INVALID, "top_p must be in (0, 1] (got %g)", p->top_p);
    if (!(p->min_p >= 0.0f && p->min_p <= 1.0f))
        return eng_err_set(ENG_ERR_INVALID, "min_p must be in [0, 1] (got %g)", p->min_p);
    if (!(p->repetition_penalty > 0.0f) || isinf(p->repetition_penalty))
        return eng_err_set(ENG_ERR_INVALID, "repetition_penalty must be a finite number > 0 (got %g)",
                           p->repetition_penalty);
    if (!(p->presence_penalty >= -2.0f && p->presence_penalty <= 2.0f))
        return eng_err_set(ENG_ERR_INVALID, "presence_penalty must be in [-2, 2] (got %g)",
                           p->presence_penalty);
    if (!(p->frequency_penalty >= -2.0f && p->frequency_penalty <= 2.0f))
        return eng_err_set(ENG_ERR_INVALID, "frequency_penalty must be in [-2, 2] (got %g)",
                           p->frequency_penalty);
    if (p->n_logprobs < -1 || p->n_logprobs > ENG_SAMPLER_MAX_LOGPROBS)
        return eng_err_set(ENG_ERR_INVALID, "logprobs must be in [-1, %d] (got %d)", ENG_SAMPLER_MAX_LOGPROBS,
                           p->n_logprobs);
    if (p->n_logit_bias && !p->logit_bias) return eng_err_set(ENG_ERR_INVALID, "logit_bias: NULL array");
    for (size_t i = 0; i < p->n_logit_bias; i++) {
        const eng_logit_bias *b = &p->logit_bias[i];
        if (b->token < 0 || b->token >= vocab)
            return eng_err_set(ENG_ERR_INVALID, "logit_bias: token id %d is outside the vocabulary [0, %d)",
                               (int)b->token, vocab);
        if (!isfinite(b->bias))
            return eng_err_set(ENG_ERR_INVALID, "logit_bias: token %d has a non-finite bias", (int)b->token);
    }
    if (p->n_suppress && !p->suppress) return eng_err_set(ENG_ERR_INVALID, "sampler: NULL suppress array");
    return ENG_OK;
}

/* ==== lifecycle =============================================================================== */

eng_status eng_sampler_create(int vocab, eng_sampler **out)
{
    eng_sampler *s = NULL;
    *out = NULL;
    if (vocab < 1) return eng_err_set(ENG_ERR_INVALID, "sampler: vocab must be >= 1 (got %d)", vocab);
    s = eng_calloc(1, sizeof *s);
    if (!s) goto fail;
    s->vocab = vocab;
    s->work = eng_malloc((size_t)vocab * sizeof *s->work);
    s->keys = eng_malloc((size_t)vocab * sizeof *s->keys);
    s->wts = eng_malloc((size_t)vocab * sizeof *s->wts);
    s->cands = eng_malloc((size_t)vocab * sizeof *s->cands);
    s->cands2 = eng_malloc((size_t)vocab * sizeof *s->cands2);
    s->bin_mass = eng_malloc(TOPP_BINS * sizeof *s->bin_mass);
    s->mark_a = eng_calloc((size_t)vocab, sizeof *s->mark_a);
    s->mark_b = eng_calloc((size_t)vocab, sizeof *s->mark_b);
    s->count = eng_calloc((size_t)vocab, sizeof *s->count);
    if (!s->work || !s->keys || !s->wts || !s->cands || !s->cands2 || !s->bin_mass || !s->mark_a ||
        !s->mark_b || !s->count)
        goto fail;
    *out = s;
    return ENG_OK;
fail:
    eng_sampler_destroy(s);
    return eng_err_set(ENG_ERR_NOMEM, "sampler: out of memory for a vocabulary of %d", vocab);
}

void eng_sampler_destroy(eng_sampler *s)
{
    if (!s) return;
    eng_free(s->work);
    eng_free(s->keys);
    eng_free(s->wts);
    eng_free(s->cands);
    eng_free(s->cands2);
    eng_free(s->bin_mass);
    eng_free(s->mark_a);
    eng_free(s->mark_b);
    eng_free(s->count);
    eng_free(s);
}

int eng_sampler_vocab(const eng_sampler *s)
{
    return s->vocab;
}

/* A fresh epoch value; on wrap-around the mark arrays are cleared. */
static uint32_t next_epoch(eng_sampler *s)
{
    if (s->epoch == UINT32_MAX) {
        memset(s->mark_a, 0, (size_t)s->vocab * sizeof *s->mark_a);
        memset(s->mark_b, 0, (size_t)s->vocab * sizeof *s->mark_b);
        s->epoch = 0;
    }
    return ++s->epoch;
}

/* ==== exponentials =========================================================================== */

/* e^x for x <= 0 (-inf and NaN give 0), four lanes at a time with GCC/clang vector extensions
 * (SSE2 on x86-64, NEON on arm64; no intrinsics, no libm call): x = n ln2 + r with
 * |r| <= ln2 / 2, e^r by its degree-6 Taylor polynomial (relative error < 2e-7), 2^n through the
 * exponent bits. Results below 2^-126 flush to 0; that only drops probabilities < 1e-38. */
typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));

static inline v4f exp_le0_v4(v4f x)
{
    const v4f lo = {-104.0f, -104.0f, -104.0f, -104.0f};
    v4i keep = x > lo; /* false for NaN */
    x = (v4f)(((v4i)x & keep) | ((v4i)lo & ~keep));
    const v4f magic = {12582912.0f, 12582912.0f, 12582912.0f, 12582912.0f}; /* 1.5 * 2^23 */
    v4f n = (x * 1.44269504f + magic) - magic;                              /* round(x / ln2) */
    v4f r = x - n * 0.693145752f - n * 1.42860677e-6f;                      /* ln2 in two parts */
    v4f p = 1.0f +
            r * (1.0f + r * (0.5f + r * (1.66666667e-1f +
                                         r * (4.16666667e-2f + r * (8.33333333e-3f + r * 1.38888889e-3f)))));
    v4i e = __builtin_convertvector(n, v4i) + 127;
    e &= e > 0; /* 2^n underflows to 0 below n = -126 */
    return p * (v4f)(e << 23);
}

/* out[i] = e^((in[i] - m) * k) for in[i] <= m (or -inf / NaN: 0). */
static void exp_shifted(const float *in, float *out, int n, float m, float k)
{
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        v4f x;
        memcpy(&x, in + i, sizeof x);
        x = exp_le0_v4((x - m) * k);
        memcpy(out + i, &x, sizeof x);
    }
    if (i < n) {
        v4f x = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
        memcpy(&x, in + i, (size_t)(n - i) * sizeof(float));
        x = exp_le0_v4((x - m) * k);
        memcpy(out + i, &x, (size_t)(n - i) * sizeof(float));
    }
}

/* Sum in double with four independent chains (a fixed order: deterministic). */
static double sum_weights(const float *w, int n)
{
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int i = 0;
    for (; i + 4 <= n; i += 4) s0 += w[i], s1 += w[i + 1], s2 += w[i + 2], s3 += w[i + 3];
    for (; i < n; i++) s0 += w[i];
    return (s0 + s1) + (s2 + s3);
}

/* ==== selection helpers ======================================================================= */

/* Candidate order: larger logit first, then lower id. A strict total order (ids are distinct). */
static inline bool cand_before(const cand *a, const cand *b)
{
    return a->l > b->l || (a->l == b->l && a->id < b->id);
}

static int cand_cmp(const void *pa, const void *pb)
{
    const cand *a = pa, *b = pb;
    return cand_before(a, b) ? -1 : cand_before(b, a) ? 1 : 0;
}

/* Order-preserving map of a non-NaN float to uint32 (larger float -> larger key). */
static inline uint32_t float_key(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return (u & 0x80000000u) ? ~u : u | 0x80000000u;
}

static inline float key_float(uint32_t k)
{
    uint32_t u = (k & 0x80000000u) ? k & 0x7FFFFFFFu : ~k;
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* Radix-select step: the bin of `hist` (nb bins, counted from the top) holding the k-th largest
 * (1-based); *k becomes the rank inside that bin. */
static uint32_t radix_bin(const uint32_t *hist, uint32_t nb, size_t *k)
{
    for (uint32_t b = nb; b-- > 0;) {
        if (*k <= hist[b]) return b;
        *k -= hist[b];
    }
    return 0; /* unreachable when k <= total */
}

/* The k-th largest (1-based) of the values of w[0, V) that are >= lo and > -inf, or -inf when
 * there are at most k of them (nothing to cut). Radix select on order-preserving keys: 11 + 11 +
 * 10 bits, the first pass over the row, the others over the keys of the first bin only (copied to
 * `keys`). Branch-light O(V), with no data-dependent worst case. */
static float kth_largest(const float *w, int V, float lo, size_t k, uint32_t *keys)
{
    uint32_t hist[2048];
    memset(hist, 0, sizeof hist);
    size_t total = 0;
    for (int t = 0; t < V; t++) {
        float x = w[t];
        if (x >= lo && x > -INFINITY) hist[float_key(x) >> 21]++, total++;
    }
    if (total <= k) return -INFINITY;
    uint32_t b1 = radix_bin(hist, 2048, &k);
    size_t m = 0;
    for (int t = 0; t < V; t++) {
        float x = w[t];
        if (x >= lo && x > -INFINITY) {
            uint32_t key = float_key(x);
            if (key >> 21 == b1) keys[m++] = key;
        }
    }
    memset(hist, 0, sizeof hist);
    for (size_t i = 0; i < m; i++) hist[(keys[i] >> 10) & 0x7FF]++;
    uint32_t b2 = radix_bin(hist, 2048, &k);
    uint32_t hi22 = (b1 << 11) | b2;
    memset(hist, 0, 1024 * sizeof *hist);
    for (size_t i = 0; i < m; i++)
        if (keys[i] >> 10 == hi22) hist[keys[i] & 0x3FF]++;
    uint32_t b3 = radix_bin(hist, 1024, &k);
    return key_float((hi22 << 10) | b3);
}

/* ==== the pipeline ============================================================================ */

/* Steps 1-4 of sampler.h into s->work; counts NaNs of the raw row. */
static int process_logits(eng_sampler *s, const float *logits, const eng_sampler_params *p,
                          const eng_sampler_history *h)
{
    const int V = s->vocab;
    float *w = s->work;
    int n_nan = 0;
    for (int t = 0; t < V; t++) {
        float x = logits[t];
        if (isnan(x)) n_nan++;
        w[t] = x;
    }
    /* 1. suppression (min_tokens) */
    for (size_t i = 0; i < p->n_suppress; i++) {
        int32_t t = p->suppress[i];
        if (t >= 0 && t < V) w[t] = -INFINITY;
    }
    /* 2. logit bias */
    for (size_t i = 0; i < p->n_logit_bias; i++) w[p->logit_bias[i].token] += p->logit_bias[i].bias;

    const int32_t *prompt = h ? h->prompt : NULL, *output = h ? h->output : NULL;
    size_t n_prompt = h && h->prompt ? h->n_prompt : 0, n_output = h && h->output ? h->n_output : 0;

    /* 3. repetition penalty over prompt + output, once per distinct token */
    float r = p->repetition_penalty;
    if (r != 1.0f && (n_prompt || n_output)) {
        uint32_t e = next_epoch(s);
        for (int pass = 0; pass < 2; pass++) {
            const int32_t *ids = pass ? output : prompt;
            size_t n = pass ? n_output : n_prompt;
            for (size_t i = 0; i < n; i++) {
                int32_t t = ids[i];
                if (t < 0 || t >= V || s->mark_b[t] == e) continue;
                s->mark_b[t] = e;
                w[t] = w[t] > 0.0f ? w[t] / r : w[t] * r;
            }
        }
    }
    /* 4. frequency and presence over output tokens */
    float f = p->frequency_penalty, pr = p->presence_penalty;
    if ((f != 0.0f || pr != 0.0f) && n_output) {
        uint32_t ec = next_epoch(s);
        for (size_t i = 0; i < n_output; i++) {
            int32_t t = output[i];
            if (t < 0 || t >= V) continue;
            if (s->mark_a[t] != ec) s->mark_a[t] = ec, s->count[t] = 0;
            s->count[t]++;
        }
        uint32_t ed = next_epoch(s);
        for (size_t i = 0; i < n_output; i++) {
            int32_t t = output[i];
            if (t < 0 || t >= V || s->mark_b[t] == ed) continue;
            s->mark_b[t] = ed;
            w[t] -= f * (float)s->count[t];
            w[t] -= pr;
        }
    }
    return n_nan;
}

/* Top-p over c[0, n) (mass = sum of weights): keeps the shortest prefix of the (logit desc,
 * id asc) order whose mass before each kept token is < top_p * mass. Small sets are sorted.
 * Larger ones use the histogram the candidate pass built: s->keys[i] is candidate i's bin, a
 * monotone function of its logit (bin 0 holds the largest), s->bin_mass the weight per bin. Bins
 * are summed from the top until the one that crosses the target, and only that bin is sorted.
 * O(n) plus one bin's sort. Survivors end up in c[0, return): the bins above the crossing one in
 * id order, then the crossing bin sorted. */
static size_t top_p_filter(eng_sampler *s, cand *c, size_t n, double mass, float top_p, double *kept_mass)
{
    double target = (double)top_p * mass, cum = 0.0;
    size_t j = 0;
    if (n <= TOPP_SORT_MAX) {
        qsort(c, n, sizeof *c, cand_cmp);
        for (; j < n && cum < target; j++) cum += c[j].w;
        *kept_mass = cum;
        return j;
    }
    const uint32_t *bin = s->keys;
    uint32_t B = 0;
    for (; B < TOPP_BINS - 1; B++) {
        if (cum + s->bin_mass[B] >= target) break;
        cum += s->bin_mass[B];
    }
    size_t nb = 0;
    for (size_t i = 0; i < n; i++) {
        if (bin[i] < B)
            c[j++] = c[i];
        else if (bin[i] == B)
            s->cands2[nb++] = c[i];
    }
    qsort(s->cands2, nb, sizeof *s->cands2, cand_cmp);
    for (size_t k = 0; k < nb && cum < target; k++) {
        c[j++] = s->cands2[k];
        cum += s->cands2[k].w;
    }
    *kept_mass = cum;
    return j;
}

/* Runs the whole pipeline; leaves survivors in s->cands[0, n_kept) in draw order. */
static eng_status prepare(eng_sampler *s, const float *logits, const eng_sampler_params *p,
                          const eng_sampler_history *h, prepared *out)
{
    eng_status st = eng_sampler_params_check(p, s->vocab);
    if (st != ENG_OK) return st;
    if (!logits) return eng_err_set(ENG_ERR_INVALID, "sampler: NULL logits");
    memset(out, 0, sizeof *out);
    out->n_nan = process_logits(s, logits, p, h);

    const int V = s->vocab;
    const float *w = s->work;

    /* max and greedy argmax (NaN never wins: comparisons with NaN are false) */
    float m = -INFINITY;
    int32_t arg = -1;
    for (int t = 0; t < V; t++)
        if (w[t] > m) m = w[t], arg = t;
    if (arg < 0)
        return eng_err_set(ENG_ERR_INVALID,
                           "sampler: no token has a finite logit after suppression, bias and "
                           "penalties (%d NaN in the row)",
                           out->n_nan);

    /* 5. greedy */
    if (p->temperature < ENG_SAMPLER_GREEDY_EPS) {
        out->greedy = true;
        out->greedy_token = arg;
        out->n_kept = 1;
        out->mass = 1.0;
        return ENG_OK;
    }

    cand *c = s->cands;
    size_t n = 0;
    bool bins = p->top_p < 1.0f; /* top-p's histogram is built in the candidate pass */
    uint32_t *bin = s->keys;
    if (bins) memset(s->bin_mass, 0, TOPP_BINS * sizeof *s->bin_mass);
    if (isinf(m)) {
        /* +inf logits share the mass equally (top-k keeps all of them: they tie) */
        for (int t = 0; t < V; t++)
            if (w[t] == INFINITY) {
                if (bins) bin[n] = 0, s->bin_mass[0] += 1.0;
                c[n++] = (cand){INFINITY, 1.0f, t};
            }
    } else {
        /* 6-8. min-p and top-k both keep a top set of logits, so survivors are
         * {l >= kth largest logit} intersected with {w >= min_p, w > 0}; `lo` is a cheap logit
         * bound below which no token can survive. */
        float T = p->temperature, min_p = p->min_p, lo = -INFINITY;
        if (min_p > 0.0f) lo = m + T * (logf(min_p) - 1e-3f); /* loose: the exact w test follows */
        if (p->top_k > 0 && p->top_k < V) {
            float kth = kth_largest(w, V, lo, (size_t)p->top_k, s->keys); /* ties with it are kept */
            if (kth > lo) lo = kth;
        }
        exp_shifted(w, s->wts, V, m, 1.0f / T);
        /* a surviving weight is >= 2^-126, so (m - l) / T < 88: TOPP_BINS bins over [0, 88) */
        float bin_scale = (float)TOPP_BINS / (88.0f * T);
        for (int t = 0; t < V; t++) {
            float x = w[t], wt = s->wts[t];
            if (!(x >= lo) || !(wt > 0.0f) || wt < min_p) continue; /* bound, -inf/NaN/underflow, min-p */
            if (bins) {
                float d = (m - x) * bin_scale; /* >= 0, non-increasing in the logit */
                uint32_t b = d < (float)(TOPP_BINS - 1) ? (uint32_t)d : TOPP_BINS - 1;
                bin[n] = b;
                s->bin_mass[b] += wt;
            }
            c[n++] = (cand){x, wt, t};
        }
    }

    /* 9. top-p */
    double mass = 0.0;
    if (bins) {
        for (int b = 0; b < TOPP_BINS; b++) mass += s->bin_mass[b];
        if (n > 1) n = top_p_filter(s, c, n, mass, p->top_p, &mass);
    } else {
        double m0 = 0, m1 = 0; /* two chains, fixed order */
        size_t i = 0;
        for (; i + 2 <= n; i += 2) m0 += c[i].w, m1 += c[i + 1].w;
        if (i < n) m0 += c[i].w;
        mass = m0 + m1;
    }
    out->n_kept = n;
    out->mass = mass;
    return ENG_OK;
}

/* ==== raw logprobs ============================================================================ */

/* (l desc, id asc) with NaN as -inf */
static inline float lp_key(float x)
{
    return isnan(x) ? -INFINITY : x;
}
static inline bool lp_before(float la, int32_t ia, float lb, int32_t ib)
{
    return la > lb || (la == lb && ia < ib);
}

eng_status eng_sampler_logprobs(eng_sampler *s, const float *logits, int32_t token, int n, float *logprob,
                                eng_top_logprob *top, int *n_top)
{
    const int V = s->vocab;
    if (!logits || n < 0 || n > ENG_SAMPLER_MAX_LOGPROBS || (n > 0 && (!top || !n_top)) || token < 0 ||
        token >= V)
        return eng_err_set(ENG_ERR_INVALID, "sampler: bad logprobs arguments (token %d, n %d)", (int)token,
                           n);
    if (n > V) n = V;

    /* pass 1: max, +inf count, top-n min-heap (root = worst kept) */
    float m = -INFINITY;
    int n_inf = 0, heap_n = 0;
    eng_top_logprob *hp = top;
    for (int t = 0; t < V; t++) {
        float x = lp_key(logits[t]);
        if (x > m) m = x;
        if (x == INFINITY) n_inf++;
        if (n == 0) continue;
        if (heap_n < n) {
            int i = heap_n++;
            hp[i] = (eng_top_logprob){t, x};
            while (i > 0) { /* sift up: parent must be worse than child */
                int par = (i - 1) / 2;
                if (!lp_before(hp[par].logprob, hp[par].token, hp[i].logprob, hp[i].token)) break;
                eng_top_logprob tmp = hp[par];
                hp[par] = hp[i];
                hp[i] = tmp;
                i = par;
            }
        } else if (lp_before(x, t, hp[0].logprob, hp[0].token)) {
            hp[0] = (eng_top_logprob){t, x};
            int i = 0;
            for (;;) { /* sift down: move the worse child up */
                int l = 2 * i + 1, r = l + 1, worst = i;
                if (l < heap_n && lp_before(hp[worst].logprob, hp[worst].token, hp[l].logprob, hp[l].token))
                    worst = l;
                if (r < heap_n && lp_before(hp[worst].logprob, hp[worst].token, hp[r].logprob, hp[r].token))
                    worst = r;
                if (worst == i) break;
                eng_top_logprob tmp = hp[worst];
                hp[worst] = hp[i];
                hp[i] = tmp;
                i = worst;
            }
        }
    }
    if (m == -INFINITY) return eng_err_set(ENG_ERR_INVALID, "sampler: the logits row has no finite value");

    /* pass 2: log-sum-exp */
    double lse;
    if (n_inf) {
        lse = INFINITY;
    } else {
        double sum = 0.0;
        float buf[256];
        for (int t0 = 0; t0 < V; t0 += 256) {
            int nb = V - t0 < 256 ? V - t0 : 256;
            exp_shifted(logits + t0, buf, nb, m, 1.0f);
            sum += sum_weights(buf, nb);
        }
        lse = (double)m + log(sum);
    }
    float inf_lp = n_inf ? (float)-log((double)n_inf) : 0.0f;
#define RAW_LP(x) (n_inf ? ((x) == INFINITY ? inf_lp : -INFINITY) : (float)((double)(x)-lse))

    float xt = lp_key(logits[token]);
    *logprob = RAW_LP(xt);
    if (n > 0) {
        /* heap -> best first */
        for (int end = heap_n - 1; end > 0; end--) {
            eng_top_logprob tmp = hp[0];
            hp[0] = hp[end];
            hp[end] = tmp;
            int i = 0;
            for (;;) {
                int l = 2 * i + 1, r = l + 1, worst = i;
                if (l < end && lp_before(hp[worst].logprob, hp[worst].token, hp[l].logprob, hp[l].token))
                    worst = l;
                if (r < end && lp_before(hp[worst].logprob, hp[worst].token, hp[r].logprob, hp[r].token))
                    worst = r;
                if (worst == i) break;
                tmp = hp[worst];
                hp[worst] = hp[i];
                hp[i] = tmp;
                i = worst;
            }
        }
        /* the repeated "move the worst to the end" leaves the array worst-last: already best first */
        for (int i = 0; i < heap_n; i++) hp[i].logprob = RAW_LP(hp[i].logprob);
        *n_top = heap_n;
    } else if (n_top) {
        *n_top = 0;
    }
#undef RAW_LP
    return ENG_OK;
}

/* ==== public entry points ===================================================================== */

eng_status eng_sampler_sample(eng_sampler *s, const float *logits, const eng_sampler_params *p,
                              const eng_sampler_history *h, eng_sample_result *out)
{
    prepared pr;
    memset(out, 0, sizeof *out);
    out->token = -1;
    eng_status st = prepare(s, logits, p, h, &pr);
    if (st != ENG_OK) return st;
    out->n_nan = pr.n_nan;
    out->n_candidates = (int)pr.n_kept;

    if (pr.greedy) {
        out->token = pr.greedy_token;
    } else {
        const cand *c = s->cands;
        uint64_t pos = h && h->output ? (uint64_t)h->n_output : 0;
        double target = eng_rng_uniform(p->seed, p->choice, pos) * pr.mass, cum = 0.0;
        out->token = c[pr.n_kept - 1].id; /* rounding fallback: the last survivor */
        for (size_t i = 0; i < pr.n_kept; i++) {
            cum += c[i].w;
            if (cum > target) {
                out->token = c[i].id;
                break;
            }
        }
    }
    if (p->n_logprobs >= 0) {
        st = eng_sampler_logprobs(s, logits, out->token, p->n_logprobs, &out->logprob, out->top, &out->n_top);
        if (st != ENG_OK) return st;
    }
    return ENG_OK;
}

eng_status eng_sampler_distribution(eng_sampler *s, const float *logits, const eng_sampler_params *p,
                                    const eng_sampler_history *h, float *probs)
{
    prepared pr;
    if (!probs) return eng_err_set(ENG_ERR_INVALID, "sampler: NULL probs");
    eng_status st = prepare(s, logits, p, h, &pr);
    if (st != ENG_OK) return st;
    memset(probs, 0, (size_t)s->vocab * sizeof *probs);
    if (pr.greedy) {
        probs[pr.greedy_token] = 1.0f;
        return ENG_OK;
    }
    for (size_t i = 0; i < pr.n_kept; i++) probs[s->cands[i].id] = (float)(s->cands[i].w / pr.mass);
    return ENG_OK;
}
