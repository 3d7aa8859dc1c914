/* qnext/eng.h - the public engine API: one model replica with continuous batching.
 *
 * Shape (nano-vllm's step loop, linenoise's step API): the caller owns the loop.
 *
 *     eng_config cfg; eng_config_init(&cfg); cfg.model_dir = "...";
 *     eng_engine *e; if (eng_create(&cfg, &e) != ENG_OK) { puts(eng_err_last()); ... }
 *     eng_request r; eng_request_init(&r); r.input = ENG_INPUT_TEXT; r.text = "Hello"; ...
 *     uint64_t id; eng_submit(e, &r, &id);                 // any thread
 *     for (;;) { eng_event ev[64]; size_t n; eng_step(e, ev, 64, &n); ...route ev[i]... }
 *
 * Threads: eng_submit, eng_cancel and eng_stats may be called from any thread. eng_step must be
 * called from one thread at a time (the engine-host thread); it owns every sequence and cache.
 * Event payloads (strings, arrays) point into engine memory and stay valid until the next
 * eng_step call on that engine; copy what you keep.
 *
 * This header compiles without CUDA, NCCL, gRPC or h2o headers (docs/style.md anti-pattern 4).
 */
#ifndef QNEXT_ENG_H
#define QNEXT_ENG_H

#include "qnext/status.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct eng_engine eng_engine;
typedef struct eng_tokenizer eng_tokenizer; /* see qnext/tokenizer.h */

/* ==== engine configuration ==================================================================== */

typedef struct eng_config {
    const char *model_dir;      /* folder with config.json, *.safetensors, tokenizer files (required) */
    const char *device;         /* "cpu" (default), "cuda" (GPU r for tensor-parallel rank r; ENG_ERR_UNSUPPORTED
                                   when the build has no CUDA backend or the machine no GPU), or "auto"
                                   (cuda when both are there, else cpu) */
    int n_threads;              /* CPU worker threads; 0 = all online cores */
    int tp;                     /* tensor-parallel world size (1) */
    const char *chat_template;  /* "auto" (from the model folder), "instruct", "thinking" or "hybrid" */

    /* scheduler limits */
    int max_running;            /* sequences decoding at once (default 64) */
    int max_batch_tokens;       /* tokens per step, decode + prefill chunks (default 2048) */
    int max_queue;              /* waiting requests before eng_submit says ENG_ERR_QUEUE_FULL (default 1024) */
    int max_model_len;          /* context limit in tokens; 0 = the model's max_position_embeddings */

    /* caches */
    int kv_block_size;          /* tokens per KV block (default 16) */
    size_t kv_cache_bytes;      /* KV cache budget; 0 = what max_running * max_model_len tokens need, on the CPU at
                                   most 10% of RAM and 4 GiB, on a GPU within the memory the weights leave (a
                                   max_model_len taken from the model shrinks to what the cache holds) */
    int n_state_slots;          /* recurrent-state slots; 0 = max_running + 1 (on a GPU at most half the memory
                                   the weights leave: max_running is then lowered to fit) */
    size_t prefix_cache_bytes;  /* prefix cache budget (host state snapshots + pinned KV blocks); 0 disables;
                                   eng_config_init sets 1 GiB */
    int prefix_snapshot_every;  /* also snapshot every N prompt tokens of long prompts (default 1024) */

    double gpu_memory_fraction; /* CUDA: fraction of device memory to use (default 0.90) */
    bool batch_invariant;       /* kernels use a fixed reduction order per row (default true) */

    const eng_tokenizer *tokenizer; /* optional: a loaded tokenizer to use instead of loading
                                       model_dir/tokenizer.json (not owned; must outlive the engine;
                                       lets several engines in one process share one) */
} eng_config;

/* Fills defaults (model_dir = NULL). */
void eng_config_init(eng_config *cfg);

/* ==== requests ================================================================================ */

typedef enum eng_input_kind {
    ENG_INPUT_TEXT = 0, /* `text` is tokenized as-is (no template), special-token strings stay text */
    ENG_INPUT_TOKENS,   /* `tokens[n_tokens]` */
    ENG_INPUT_CHAT,     /* `messages_json` (+ `tools_json`, `template_kwargs_json`) rendered by the chat template */
} eng_input_kind;

typedef struct eng_logit_bias {
    int32_t token;
    float bias;
} eng_logit_bias;

/* Sampling and stopping. Fields left at their eng_request_init values mean "the model's default
 * from generation_config.json" where one exists. */
typedef struct eng_sampling {
    float temperature;        /* < 0: model default; 0: greedy */
    float top_p;              /* < 0: model default; 1: off */
    int top_k;                /* < 0: model default; 0: off */
    float min_p;              /* < 0: model default; 0: off */
    float presence_penalty;   /* OpenAI semantics, -2..2 */
    float frequency_penalty;  /* -2..2 */
    float repetition_penalty; /* HF semantics, 1 = off; <= 0: model default */
    bool has_seed;
    uint64_t seed;            /* per-request RNG seed (reproducible under any batch) */
    int n;                    /* choices (forks share the prompt state), 1..128 */
    int logprobs;             /* -1: none; 0: the sampled token's logprob; k: plus top-k alternatives (<= 20) */
    const eng_logit_bias *logit_bias;
    size_t n_logit_bias;

    int max_tokens;           /* < 0: up to the context limit */
    int min_tokens;           /* EOS and stops are ignored before this many tokens */
    bool ignore_eos;
    const char *const *stop;  /* stop strings, matched across token boundaries, never emitted */
    size_t n_stop;
    const int32_t *stop_token_ids;
    size_t n_stop_token_ids;
    bool skip_special_tokens; /* when detokenizing (default true) */
} eng_sampling;

typedef struct eng_request {
    eng_input_kind input;
    const char *text;                 /* ENG_INPUT_TEXT */
    const int32_t *tokens;            /* ENG_INPUT_TOKENS */
    size_t n_tokens;
    const char *messages_json;        /* ENG_INPUT_CHAT: OpenAI `messages` array as JSON text */
    const char *tools_json;           /* optional: OpenAI `tools` array as JSON text */
    const char *template_kwargs_json; /* optional: e.g. {"enable_thinking": false} */
    bool add_generation_prompt;       /* chat only (default true) */

    eng_sampling sampling;
    int priority;                     /* lower runs first (vLLM convention); ties: arrival order */
    const char *client_id;            /* optional caller tag, echoed in logs */
    bool parse_output;                /* split output into reasoning / content / tool calls (default true for chat) */
} eng_request;

/* Fills defaults: chat off, add_generation_prompt true, temperature/top_p/top_k/min_p = model
 * default, n = 1, logprobs = -1, max_tokens = -1, skip_special_tokens = true. */
void eng_request_init(eng_request *r);

/* ==== events ================================================================================== */

typedef enum eng_event_kind {
    ENG_EV_TOKENS = 0, /* new tokens and text for one choice */
    ENG_EV_DONE,       /* the choice finished; carries finish reason, usage, timings */
    ENG_EV_ERROR,      /* the request failed; no more events for it */
} eng_event_kind;

typedef enum eng_finish_reason {
    ENG_FINISH_NONE = 0,
    ENG_FINISH_STOP,      /* EOS, stop token or stop string */
    ENG_FINISH_LENGTH,    /* max_tokens or context limit */
    ENG_FINISH_TOOL_CALLS,/* stopped after emitting one or more tool calls */
    ENG_FINISH_CANCELLED,
    ENG_FINISH_ERROR,
} eng_finish_reason;

const char *eng_finish_reason_str(eng_finish_reason r); /* "stop", "length", "tool_calls", ... */

typedef struct eng_top_logprob {
    int32_t token;
    float logprob;
} eng_top_logprob;

typedef struct eng_token_logprob {
    int32_t token;
    float logprob;
    const eng_top_logprob *top; /* n_top alternatives, most likely first */
    size_t n_top;
} eng_token_logprob;

/* One OpenAI-style tool-call fragment: the first fragment of a call has id and name set and
 * arguments ""; later ones only `arguments` (a piece of the JSON text). */
typedef struct eng_tool_delta {
    int index;             /* 0, 1, ... within the choice */
    const char *id;        /* "call_..." or NULL */
    const char *name;      /* or NULL */
    const char *arguments; /* fragment, may be "" */
} eng_tool_delta;

typedef struct eng_usage {
    int prompt_tokens;
    int completion_tokens;    /* generated tokens, counting an EOS / stop token that ended the choice
                                 (that token is not emitted in ENG_EV_TOKENS; vLLM counts it too) */
    int cached_prompt_tokens; /* prompt tokens served by the prefix cache */
    int reasoning_tokens;
} eng_usage;

typedef struct eng_timings {
    double queue_s;         /* submit -> first scheduled */
    double ttft_s;          /* submit -> first token */
    double total_s;         /* submit -> done */
    double mean_itl_s;      /* mean inter-token latency */
} eng_timings;

typedef struct eng_event {
    eng_event_kind kind;
    uint64_t request_id;
    int choice;                         /* 0..n-1 */

    /* ENG_EV_TOKENS */
    const int32_t *tokens;              /* the new token ids */
    size_t n_tokens;
    const char *text;                   /* raw detokenized text delta (complete UTF-8 only) */
    const char *content;                /* content delta after reasoning/tool-call parsing ("" if none) */
    const char *reasoning;              /* reasoning delta ("" if none) */
    const eng_tool_delta *tool_deltas;
    size_t n_tool_deltas;
    const eng_token_logprob *logprobs;  /* one per new token when requested, else NULL */

    /* ENG_EV_DONE */
    eng_finish_reason finish;
    const char *matched_stop;           /* the stop string that matched, or NULL */
    int32_t matched_stop_token;         /* the stop token id, or -1 */
    bool tool_call_parse_error;         /* a <tool_call> block was not valid JSON and went to content */
    eng_usage usage;
    eng_timings timings;

    /* ENG_EV_ERROR */
    eng_status error;
    const char *error_message;
} eng_event;

/* ==== lifecycle =============================================================================== */

/* Loads the model and allocates caches. On failure returns a status with eng_err_last() set and
 * *out = NULL. */
eng_status eng_create(const eng_config *cfg, eng_engine **out);

/* Frees everything. NULL-safe. No other call may be running on the engine. */
void eng_destroy(eng_engine *e);

/* Queues a request (thread-safe, quick: no tokenization). The request and everything it points to
 * are copied. Fails with ENG_ERR_QUEUE_FULL when the queue is full, ENG_ERR_INVALID on bad
 * parameters (detail says why), including token-id prompts with ids outside the vocabulary or as
 * long as the context. Text and chat prompts are tokenized / rendered by the step thread: one that
 * cannot be rendered or exceeds the context ends with one ENG_EV_ERROR (ENG_ERR_INVALID) instead.
 *
 * TEST HOOK (off by default): when the environment variable QNEXT_TEST_FORCED_OUTPUT names a rules
 * file at eng_create, requests whose prompt text contains a rule's marker emit that rule's tokens
 * instead of sampling them (then sample normally); see engine/src/sched/engine_forced.c. */
eng_status eng_submit(eng_engine *e, const eng_request *r, uint64_t *id);

/* Cancels a request (thread-safe). Its slot, KV blocks and state are released within one step and
 * a final ENG_EV_DONE with ENG_FINISH_CANCELLED is emitted. ENG_ERR_NOT_FOUND if unknown/finished. */
eng_status eng_cancel(eng_engine *e, uint64_t id);

/* One engine iteration: admit, schedule, run the forward, sample, detokenize, parse, emit events.
 * Writes at most `cap` events into out (more are kept for the next call) and sets *n. Returns
 * ENG_OK when there was nothing to do as well (then *n = 0). Only one thread may call it.
 * A failure of one request (a prompt that cannot be rendered, a sampler error, running out of
 * memory for its text) is its ENG_EV_ERROR event, not an error return. An error return
 * (ENG_ERR_NOMEM, ENG_ERR_INTERNAL, a device error) means the engine could not keep its state or
 * its events consistent: the events written are still valid, but the caller should fail every
 * open request and destroy the engine (eng_destroy releases everything in any state). */
eng_status eng_step(eng_engine *e, eng_event *out, size_t cap, size_t *n);

/* True if any request is queued, running, or has undelivered events. */
bool eng_has_work(eng_engine *e);

/* Blocks up to timeout_ms until there is work (a submit or cancel arrived). For host threads that
 * would otherwise spin on eng_step. Returns true if there is work. */
bool eng_wait_work(eng_engine *e, int timeout_ms);

/* ==== introspection =========================================================================== */

typedef struct eng_stats {
    int n_waiting, n_running, n_preempted_total;
    int kv_blocks_total, kv_blocks_used;
    int state_slots_total, state_slots_used;
    uint64_t prompt_tokens_total, generation_tokens_total;
    uint64_t prefix_cache_queries_tokens, prefix_cache_hit_tokens;
    double prompt_tok_per_s, decode_tok_per_s; /* recent rates (last few seconds) */
    uint64_t steps_total;
} eng_stats;

void eng_get_stats(eng_engine *e, eng_stats *out); /* thread-safe */

typedef struct eng_model_info {
    const char *model_id;      /* folder basename or config "_name_or_path" */
    const char *template_kind; /* "instruct", "thinking", "hybrid" */
    const char *dtype;         /* "bf16", "fp8", "f32", ... */
    const char *device;        /* "cpu" or "cuda" */
    int max_model_len;
    int vocab_size;
    int tp;
    const int32_t *eos_token_ids; /* n_eos_token_ids end-of-sequence ids (generation_config.json, then
                                     config.json), owned by the engine; Qwen3-Next: 151645, 151643 */
    int n_eos_token_ids;
} eng_model_info;

void eng_get_model_info(eng_engine *e, eng_model_info *out);

/* The engine's tokenizer (owned by the engine; thread-safe for encode/decode). */
const eng_tokenizer *eng_get_tokenizer(eng_engine *e);

#ifdef __cplusplus
}
#endif

#endif /* QNEXT_ENG_H */
