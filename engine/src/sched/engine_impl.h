/* sched/engine_impl.h - the engine's internal state, shared by the files that implement qnext/eng.h:
 *
 *   engine.c         lifecycle (create / destroy, cache sizing), submit / cancel, stats, model info
 *   engine_step.c    eng_step: drain the queue, prepare requests, schedule, copy-on-write, forward,
 *                    snapshots, sample, fork n > 1 choices, retire (the nano-vllm step loop)
 *   engine_out.c     one accepted token -> detokenizer -> stops -> output parser -> events
 *   engine_forced.c  the QNEXT_TEST_FORCED_OUTPUT test hook (off unless that variable is set)
 *   engine_device.c  device selection: the CPU or CUDA backend(s), NCCL collectives for GPU ranks
 *   engine_size.c    how many KV blocks and state slots (a pure policy function)
 *
 * Ownership and threads (docs/architecture.md, Engine): eng_submit / eng_cancel run on any thread
 * and touch only the queue (sched/queue.h) and atomics; everything below `queue` belongs to the
 * thread that calls eng_step. A request's life: eng_submit copies it into an eng_payload (owned by
 * the queue until drained) -> the step thread turns it into an ereq (tokenize / render, resolve
 * sampling) with one eseq per choice -> choices run (choice 0 first; choices 1..n-1 are forked
 * from it when its prompt is done) -> every choice emits DONE -> the ereq is freed.
 */
#ifndef QN_SCHED_ENGINE_IMPL_H
#define QN_SCHED_ENGINE_IMPL_H

#include "qnext/chat.h"      /* defines: eng_output_parser, eng_template_kind, eng_deltas */
#include "qnext/eng.h"       /* defines: the public API */
#include "qnext/tokenizer.h" /* defines: eng_tokenizer, eng_detok */

#include "cache/block_pool.h"   /* defines: eng_block_pool, eng_block_table */
#include "cache/prefix_cache.h" /* defines: eng_prefix_cache */
#include "core/core.h"          /* defines: eng_malloc, eng_buf, eng_log */
#include "model/cache.h"        /* defines: qn_cache */
#include "model/config.h"       /* defines: qn_gen_config */
#include "model/model.h"        /* defines: qn_model, qn_batch */
#include "sample/sampler.h"     /* defines: eng_sampler, eng_sampler_params */
#include "sample/stop.h"        /* defines: eng_stop */
#include "sched/queue.h"        /* defines: eng_queue */
#include "sched/sched.h"        /* defines: eng_sched_plan, eng_sched_seq */

#include <pthread.h>
#include <stdatomic.h>

/* ==== submitted requests ====================================================================== */

/* Everything eng_submit copies out of an eng_request (one allocation per owned string/array).
 * `req` points into the copies; `sp` holds the resolved sampling parameters (defaults filled in,
 * checked) except the per-call fields (suppress, choice, history). */
typedef struct eng_payload {
    eng_request req;
    eng_sampler_params sp;
    int max_tokens;  /* resolved: < 0 unlimited (the context still caps it) */
    double t_submit; /* eng_now_s() at submission */
    /* owned copies */
    char *text, *messages_json, *tools_json, *kwargs_json, *client_id;
    int32_t *tokens;
    char **stop;
    int32_t *stop_ids;
    eng_logit_bias *bias;
} eng_payload;

void eng_payload_free(eng_payload *p); /* NULL-safe */

/* ==== the test hook (engine_forced.c) ========================================================= */

/* One rule of the forced-output file: requests whose prompt text contains `marker` emit `ids`
 * (output position i gets ids[i]) instead of sampling, then sample normally. */
typedef struct eng_forced_rule {
    char *marker;
    int32_t *ids;
    int n_ids;
} eng_forced_rule;

typedef struct eng_forced {
    eng_forced_rule *rules;
    int n_rules;
} eng_forced;

/* Reads QNEXT_TEST_FORCED_OUTPUT (if set) and encodes its rules with `tok`. *out = NULL when the
 * variable is unset or empty. ENG_ERR_IO / ENG_ERR_FORMAT (bad file, naming it) / ENG_ERR_INVALID
 * (a forced id >= vocab) / ENG_ERR_NOMEM. */
eng_status eng_forced_load(const eng_tokenizer *tok, int vocab, eng_forced **out);
/* The rules file's parser (JSON text, `source` names it in errors); same errors. */
eng_status eng_forced_parse(const char *json, size_t len, const eng_tokenizer *tok, int vocab,
                            const char *source, eng_forced **out);
void eng_forced_destroy(eng_forced *f); /* NULL-safe */
/* The first rule whose marker occurs in prompt[0, len), or NULL. */
const eng_forced_rule *eng_forced_match(const eng_forced *f, const char *prompt, size_t len);

/* ==== devices (engine_device.c) ================================================================ */

typedef enum eng_device_kind {
    ENG_DEVICE_CPU = 0,
    ENG_DEVICE_CUDA,
} eng_device_kind;

/* "cpu" or "cuda". */
const char *eng_device_name(eng_device_kind k);

/* Resolves eng_config.device for this build and machine: NULL or "cpu" -> CPU; "cuda" -> CUDA;
 * "auto" -> CUDA when the build has the CUDA backend and a GPU is present, else CPU.
 * ENG_ERR_INVALID for another name; ENG_ERR_UNSUPPORTED for "cuda" on a build without CUDA ("this
 * build has no CUDA backend") or on a machine without a GPU ("no CUDA device found: use --device
 * cpu"). Asks the CUDA driver for the device count (cheap; no context is made). */
eng_status eng_device_resolve(const char *name, eng_device_kind *out);

struct eng_engine;
/* Creates e->be (rank 0's backend) for e->device and e->cfg (tp, n_threads, gpu_memory_fraction,
 * batch_invariant) and fills the tensor-parallel fields of *mp: CPU ranks split the threads; CUDA
 * rank r runs on GPU r (a factory called on the rank's thread), with NCCL collectives bound to
 * each rank backend's stream (e->comm, owned). ENG_ERR_UNSUPPORTED when tp exceeds the GPUs or the
 * build has no NCCL; backend errors as they come. */
eng_status eng_device_open(struct eng_engine *e, qn_model_params *mp);
/* Frees what eng_device_open made besides e->be (the collectives); after the model and e->be. */
void eng_device_close(struct eng_engine *e);
/* Device memory left for caches: the smallest budget - used over the ranks' backends (*room);
 * false when the backend does not report memory (the CPU: host caches). */
bool eng_device_room(const struct eng_engine *e, size_t *room);

/* ==== cache sizing (engine_size.c) ============================================================ */

/* Inputs and results of the sizing policy (engine_size.c describes it). */
typedef struct eng_cache_plan {
    /* in */
    size_t block_bytes, slot_bytes; /* one KV block / one state slot, summed over the ranks */
    int world;                      /* ranks sharing each block and slot equally */
    int block_size;
    int n_state_slots;     /* eng_config's (0: default) */
    size_t kv_cache_bytes; /* eng_config's (0: default) */
    bool len_explicit;     /* max_model_len was given (else it is the model's) */
    size_t phys_bytes;     /* host memory (0: unknown) */
    bool device;           /* caches live in device memory ... */
    size_t room;           /* ... with this many bytes left per rank (eng_device_room) */
    /* in and out */
    int max_running;   /* may be lowered (device: slots that do not fit) */
    int max_model_len; /* may be lowered to what the pool holds (not when explicit) */
    /* out */
    int n_blocks, n_slots;
    int len_limited; /* the context the model allowed, when max_model_len was lowered; else 0 */
    char note[256];  /* what was lowered and why ("" if nothing) */
} eng_cache_plan;

/* Fills n_blocks and n_slots (and lowers max_running / max_model_len where allowed).
 * ENG_ERR_INVALID: an explicit max_model_len the pool cannot hold, a context under 2 tokens;
 * ENG_ERR_NOMEM: the caches do not fit the machine (host) or the memory left (device); the detail
 * names the knobs to turn. */
eng_status eng_cache_plan_make(eng_cache_plan *p);

/* ==== requests and sequences (step thread) ===================================================== */

typedef struct ereq ereq;

/* One choice of a request: a sequence the scheduler sees once it is active. */
typedef struct eseq {
    ereq *r;
    int choice;
    eng_seq_status status;
    bool active;              /* in eng_engine.seqs (described to the scheduler) */
    bool done;                /* DONE emitted; retired at the end of the step */
    eng_finish_reason finish; /* why it finished (NONE while running) */
    int32_t *tok;             /* (n_tok) prompt followed by the generated tokens */
    int n_tok, cap_tok;
    int n_computed;     /* RUNNING: positions in the caches (KV table and state slot) */
    eng_block_table bt; /* RUNNING: KV blocks of positions [0, n_computed) */
    int slot;           /* RUNNING: recurrent-state slot, else -1 */
    uint64_t admitted;  /* RUNNING: admission stamp */
    /* output side */
    eng_stop *stop;
    eng_detok *detok;
    eng_output_parser *parser; /* NULL: content = raw text */
    int n_out;                 /* generated tokens (also the RNG position of the next one) */
    int n_reasoning;
    bool content_seen;
    eng_buf ws_held; /* choices with tools: trailing whitespace of the content, held (engine_out.c) */
    double t_first, t_last;
    /* prefix-cache hint for a WAITING sequence, valid while the cache generation is unchanged */
    uint64_t hint_gen;
    bool hint_valid;
    int hint_n, hint_blocks;
} eseq;

struct ereq {
    uint64_t id;
    eng_payload *p;
    int32_t *prompt; /* (n_prompt) */
    int n_prompt;
    int n_choices, n_open; /* choices, and those without DONE yet */
    eseq **ch;             /* (n_choices); ch[c] may be NULL until choice 0's prompt is done */
    bool forked;           /* choices 1..n-1 exist */
    bool parse, tools;     /* chat output parsing; the request has tools */
    eng_reasoning_start rstart;
    int max_tokens; /* resolved, capped by the context: max_model_len - n_prompt */
    int n_cached;   /* prompt tokens served by the prefix cache at first admission */
    bool admitted_once;
    bool cancelled, failed;
    double t_submit, t_sched; /* t_sched: first scheduled (0 = not yet) */
    const eng_forced_rule *forced;
};

/* ==== the engine ============================================================================== */

/* Event payload storage for one step: bump allocation, reset when the next step starts. */
typedef struct eng_arena_block {
    struct eng_arena_block *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
} eng_arena_block;

struct eng_engine {
    eng_config cfg;
    char *model_dir, *model_id;
    const char *dtype;
    int32_t eos[QN_MAX_EOS];
    int n_eos;

    /* device, model and caches (step thread) */
    eng_device_kind device;
    struct eng_comm_group *comm; /* NCCL collectives of a CUDA tensor-parallel engine (owned), else NULL */
    eng_backend *be;
    qn_model *m;
    qn_cache *cache;
    const eng_tokenizer *tok;
    eng_tokenizer *tok_owned; /* NULL when the caller lent one (eng_config.tokenizer) */
    eng_template_kind tmpl;
    qn_gen_config gen;
    int vocab, max_model_len, block_size, n_blocks, n_slots, kv_watermark, max_prefill_chunk;
    size_t slot_bytes;
    eng_block_pool *pool;
    eng_prefix_cache *pc; /* NULL when disabled */
    eng_sampler *sampler;
    eng_forced *forced;

    /* shared with submitters */
    eng_queue *q;
    atomic_bool busy; /* the step thread holds requests or undelivered events */
    pthread_mutex_t stats_mu;
    eng_stats stats; /* guarded by stats_mu */

    /* step-thread state */
    ereq **reqs; /* (n_reqs) live requests, any order */
    int n_reqs, cap_reqs;
    eseq **seqs; /* (n_seqs) active sequences in activation order */
    int n_seqs, cap_seqs;
    uint32_t *block_mark; /* (n_blocks) stats scratch: blocks seen this pass have mark == mark_gen */
    uint32_t mark_gen;
    int *free_slots; /* (n_free_slots) stack of free state slots */
    int n_free_slots;
    uint64_t admit_stamp;
    eng_sched_plan plan;
    eng_sched_seq *desc; /* (cap_seqs) */
    /* forward scratch */
    int32_t *b_tok;  /* (max_batch_tokens) */
    qn_seq *b_seqs;  /* (max_running + 1) */
    int32_t *b_rows; /* (max_running + 1) */
    eseq **b_rowseq; /* (max_running + 1) sequence of each logits row */
    float *logits;   /* (max_running + 1) x vocab */
    int max_rows;
    eng_deltas deltas; /* parser output scratch */
    eng_buf text;      /* text assembly scratch */
    /* events of the last step; delivered across eng_step calls when `cap` is small */
    eng_event *ev;
    size_t n_ev, cap_ev, ev_pos;
    bool ev_lost; /* an event could not be recorded (out of memory): eng_step reports ENG_ERR_NOMEM */
    eng_arena_block *arena;
    /* counters (step thread; copied into `stats`) */
    uint64_t prompt_tokens_total, generation_tokens_total, prefill_tokens_total, steps_total;
    int n_preempted_total;
    double rate_t0;
    uint64_t rate_prompt0, rate_gen0;
    double rate_prompt, rate_gen;
};

/* ==== helpers shared by the engine files ====================================================== */

/* Step arena: n bytes (16-aligned), NULL when out of memory. */
void *eng_arena_alloc(eng_engine *e, size_t n);
char *eng_arena_strndup(eng_engine *e, const char *s, size_t n);
void eng_arena_reset(eng_engine *e);
void eng_arena_free(eng_engine *e);

/* Appends a zeroed event for (request, choice); NULL when out of memory. */
eng_event *eng_ev_new(eng_engine *e, uint64_t id, int choice, eng_event_kind kind);

/* Creates choice `choice` of r with the prompt copied in and its stop / detok / parser objects.
 * ENG_ERR_NOMEM / ENG_ERR_INVALID (stop strings). */
eng_status eng_seq_create(eng_engine *e, ereq *r, int choice, eseq **out);
void eng_seq_destroy(eseq *s); /* NULL-safe; the caller released blocks and slot */

/* engine_out.c: appends `token` to s (sampled, or forced) and emits its TOKENS event (and DONE when
 * it finished the choice). `lp` is the sampler result for logprobs (NULL: none requested).
 * ENG_ERR_NOMEM fails the request (the caller reports it). */
eng_status eng_out_token(eng_engine *e, eseq *s, int32_t token, const eng_sample_result *lp);
/* Ends choice s from outside with `reason` (CANCELLED or ERROR): emits DONE, no held-back text. */
void eng_out_finish(eng_engine *e, eseq *s, eng_finish_reason reason);

/* Releases a running sequence's KV blocks and state slot (it becomes WAITING-like, nothing held). */
void eng_seq_release(eng_engine *e, eseq *s);

/* Fails request r: one ERROR event, every choice closed, resources released at retirement. */
void eng_req_fail(eng_engine *e, ereq *r, eng_status st, const char *msg);

#endif /* QN_SCHED_ENGINE_IMPL_H */
