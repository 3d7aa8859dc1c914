/* sample/sampler.h - host sampler: logits row -> token id (+ logprobs), vLLM semantics.
 *
 * Design note. One eng_sampler per step thread; it owns O(vocab) scratch buffers so a call makes
 * no allocation. The step loop calls eng_sampler_sample() once per sequence that needs a token,
 * with that sequence's last logits row, its resolved sampling parameters, and its token history.
 * Nothing here touches a device or keeps per-request state: the random draw is a pure function
 * of (seed, choice, output position) (sample/rng.h), so a token never depends on the batch.
 *
 * Processing order (vLLM v1 `vllm/v1/sample/sampler.py`, class Sampler docstring and forward():
 * logprobs from the raw logits; float32; non-argmax-invariant processors (min_tokens, then logit
 * bias); penalties (repetition, frequency, presence: `vllm/model_executor/layers/utils.py`
 * apply_penalties); greedy argmax if temperature < 1e-5; temperature; argmax-invariant processors
 * (min_p); top-k then top-p (`vllm/v1/sample/ops/topk_topp_sampler.py` apply_top_k_top_p);
 * draw):
 *   1. suppress: listed token ids -> -inf (the step loop passes EOS + stop token ids while fewer
 *      than min_tokens tokens exist: vLLM's MinTokensLogitsProcessor).
 *   2. logit bias: l[t] += bias (OpenAI logit_bias).
 *   3. repetition penalty r (HF / vLLM): for every token t seen in prompt or output,
 *      l[t] = l[t] > 0 ? l[t] / r : l[t] * r.
 *   4. frequency f and presence p (OpenAI, over output tokens only):
 *      l[t] -= f * count(t) + p * (count(t) > 0)   (computed as two subtractions, like vLLM).
 *   5. greedy: temperature < ENG_SAMPLER_GREEDY_EPS -> argmax of l, ties to the lowest id.
 *   6. temperature T: weights w[t] = exp((l[t] - max l) / T).
 *   7. min-p: drop t when w[t] < min_p (w of the max is 1, so this is p[t] < min_p * p_max).
 *   8. top-k: keep t when l[t] >= the k-th largest l (tokens tied with the k-th are all kept,
 *      like vLLM's `logits_sort < kth_value` mask).
 *   9. top-p: over the survivors in order (w desc, id asc), keep a token while the mass before it
 *      is < top_p * total (the token that crosses top_p is kept; at least one is kept).
 *  10. draw u = eng_rng_uniform(seed, choice, n_output) and walk the survivors in a fixed order
 *      (id order; with top-p, the tokens above the crossing bin in id order, then that bin
 *      sorted) to the first cumulative weight > u * sum. Any fixed order gives the same
 *      distribution; a fixed one makes the token a pure function of (logits, params, seed).
 * Without sorting the vocabulary: top-k uses quickselect for the k-th logit (then min-p and
 * top-k are one threshold pass), top-p buckets the survivors into 4096 logit bins, sums bins
 * from the top and sorts only the bin that crosses top_p (sets up to 512 are sorted outright),
 * logprobs keep a heap of N <= 20. Sums are in double; top-p's boundary may differ from vLLM's
 * float32 ascending cumsum by rounding only.
 *
 * Logprobs: vLLM's default `logprobs_mode` is "raw_logprobs": log_softmax of the model's raw
 * logits, before bias, penalties, temperature and filters (sampler.py: "Use the original logits
 * ... for the top-k logprobs"). We do the same: `logprob` is the sampled token's raw logprob and
 * `top` the N most likely tokens of the raw distribution (logprob desc, id asc).
 *
 * Extreme values (defined behaviour):
 *   - NaN logits count as -inf (never sampled; logprob -inf) and are counted in n_nan.
 *   - +inf logits: all +inf tokens share the probability equally (greedy: the lowest +inf id);
 *     raw logprob -log(count of +inf) for them, -inf for the rest.
 *   - a row where nothing is left with a finite weight (all -inf/NaN, or everything suppressed)
 *     is ENG_ERR_INVALID with a detail; the caller fails that request, not the batch.
 */
#ifndef QN_SAMPLE_SAMPLER_H
#define QN_SAMPLE_SAMPLER_H

#include "qnext/eng.h" /* eng_logit_bias, eng_top_logprob, eng_status */

#include <stddef.h>
#include <stdint.h>

#define ENG_SAMPLER_MAX_LOGPROBS 20
#define ENG_SAMPLER_GREEDY_EPS 1e-5f /* vLLM _SAMPLING_EPS */

typedef struct eng_sampler eng_sampler;

/* Resolved sampling parameters of one choice ("model default" values already substituted).
 * Pointers are borrowed for the duration of one call. */
typedef struct eng_sampler_params {
    float temperature;                /* >= 0; < ENG_SAMPLER_GREEDY_EPS means greedy */
    int top_k;                        /* 0 = off; >= vocab = off */
    float top_p;                      /* (0, 1]; 1 = off */
    float min_p;                      /* [0, 1]; 0 = off */
    float repetition_penalty;         /* > 0; 1 = off (prompt + output tokens) */
    float presence_penalty;           /* [-2, 2]; 0 = off (output tokens) */
    float frequency_penalty;          /* [-2, 2]; 0 = off (output tokens) */
    const eng_logit_bias *logit_bias; /* n_logit_bias entries, token ids in [0, vocab), finite bias */
    size_t n_logit_bias;
    const int32_t *suppress; /* n_suppress token ids forced to -inf (min_tokens); ids >= vocab ignored */
    size_t n_suppress;
    uint64_t seed;   /* request seed (eng_rng_entropy_seed() when the request has none) */
    uint32_t choice; /* choice index 0..n-1: an independent stream per choice */
    int n_logprobs;  /* -1: none; 0: the sampled token's logprob; 1..20: plus top-N */
} eng_sampler_params;

/* Fills neutral parameters: temperature 1, top_k 0, top_p 1, min_p 0, repetition 1, no
 * penalties/bias/suppression, seed 0, choice 0, n_logprobs -1. */
void eng_sampler_params_init(eng_sampler_params *p);

/* Checks ranges (see the field comments; NaN is rejected everywhere). Returns ENG_OK or
 * ENG_ERR_INVALID with a detail naming the field. `vocab` bounds logit-bias token ids. */
eng_status eng_sampler_params_check(const eng_sampler_params *p, int vocab);

/* The token history penalties look at. Borrowed for one call. */
typedef struct eng_sampler_history {
    const int32_t *prompt; /* n_prompt prompt token ids */
    size_t n_prompt;
    const int32_t *output; /* n_output generated token ids (also the RNG position) */
    size_t n_output;
} eng_sampler_history;

typedef struct eng_sample_result {
    int32_t token;                                 /* the sampled id */
    float logprob;                                 /* raw logprob of `token` (0 when n_logprobs < 0) */
    eng_top_logprob top[ENG_SAMPLER_MAX_LOGPROBS]; /* n_top most likely raw tokens, best first */
    int n_top;
    int n_nan;        /* NaN entries in this logits row (the engine logs/counts them) */
    int n_candidates; /* tokens left after all filters (1 for greedy) */
} eng_sample_result;

/* Creates a sampler for a vocabulary of `vocab` (>= 1) ids, with O(vocab) scratch.
 * ENG_ERR_INVALID / ENG_ERR_NOMEM; *out = NULL on failure. Not thread-safe: one per thread. */
eng_status eng_sampler_create(int vocab, eng_sampler **out);

/* NULL-safe. */
void eng_sampler_destroy(eng_sampler *s);

/* The vocabulary size the sampler was created for (logits rows have this many entries). */
int eng_sampler_vocab(const eng_sampler *s);

/* Samples one token from `logits` (vocab) f32, which is not modified. `h` may be NULL (no
 * history; RNG position 0). History ids outside [0, vocab) are ignored. Returns ENG_OK,
 * ENG_ERR_INVALID (bad params, or no token left with a finite weight; detail set). */
eng_status eng_sampler_sample(eng_sampler *s, const float *logits, const eng_sampler_params *p,
                              const eng_sampler_history *h, eng_sample_result *out);

/* The final distribution eng_sampler_sample draws from, written densely to probs (vocab) f32
 * (zeros for dropped tokens; one-hot for greedy). For tests, debugging and a future
 * "processed_logprobs" mode. Same errors as eng_sampler_sample. */
eng_status eng_sampler_distribution(eng_sampler *s, const float *logits, const eng_sampler_params *p,
                                    const eng_sampler_history *h, float *probs);

/* Raw logprobs only: log_softmax(logits)[token] and the top-n (n <= 20) alternatives, as in
 * eng_sample_result. For prompt logprobs and for callers that sample elsewhere (a device
 * sampler). `top` may be NULL when n == 0. ENG_ERR_INVALID on bad arguments. */
eng_status eng_sampler_logprobs(eng_sampler *s, const float *logits, int32_t token, int n, float *logprob,
                                eng_top_logprob *top, int *n_top);

#endif /* QN_SAMPLE_SAMPLER_H */
