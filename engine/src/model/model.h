/* model/model.h - a loaded Qwen3-Next model and its ragged-batch forward pass.
 *
 *   qn_model_load      config.json + safetensors -> repacked weights on a backend (weights.c)
 *   qn_model_forward   one call runs several sequences, each with some new tokens (prefill chunks
 *                      and decode tokens mixed), against caches owned by the caller (cache.h),
 *                      and returns the logits of the rows asked for (qwen3next.c)
 *
 * The caller (the engine's scheduler and block manager, or a CLI) owns all sequence bookkeeping:
 * which recurrent-state slot and which KV blocks a sequence uses, and its position. The forward
 * reads and updates exactly the slots and block positions the batch names.
 *
 * Thread-safety: a model is used by one thread at a time (the forward uses model-owned scratch);
 * the backend's thread pool parallelises each op.
 *
 * Tensor parallelism (qn_model_params.tp_world = N > 1): qn_model_load builds N rank models, each
 * with its shard of the weights (cut from the one mmapped checkpoint, never copied whole) on its
 * own backend, and returns rank 0's handle. Ranks 1..N-1 run on worker threads; every call below
 * on the handle (forward, and every cache operation in cache.h) is run by all ranks on their own
 * shards, joined by collectives (tp/comm.h); rank 0 returns the full logits. The caller (the
 * engine: one scheduler, one sampler, as in nano-vllm) never sees the other ranks. Sharding:
 *   attention q/gate/k/v heads, GDN key/value heads    split by head (KV heads replicated when N
 *                                                       exceeds num_key_value_heads, as vLLM)
 *   o_proj, GDN out_proj                                row parallel + one all-reduce per mixer
 *   routed experts (gate/up/down), shared expert        split by intermediate dimension, + one
 *                                                       all-reduce per MoE block (shared fused in)
 *   router, shared_expert_gate, norms, conv/A/dt of     replicated (conv/A/dt follow their heads)
 *   the rank's heads
 *   embed_tokens, lm_head                               split by vocabulary (uneven sizes allowed):
 *                                                       masked lookup + all-reduce; logits
 *                                                       all-gathered to rank 0
 */
#ifndef QN_MODEL_H
#define QN_MODEL_H

#include "backend/backend.h"
#include "model/config.h"

struct eng_comm_group; /* tp/comm.h */

typedef struct qn_model qn_model;
typedef struct qn_cache qn_cache;

/* Makes the backend of tensor-parallel rank `rank` (1..world-1), e.g. a CUDA backend on GPU `rank`.
 * Called on that rank's worker thread. */
typedef eng_status (*qn_backend_factory)(void *ctx, int rank, eng_backend **out);

typedef struct qn_model_params {
    int max_tokens;   /* rows per forward call (prefill chunk + decode tokens); <= 0: 256 */
    int tp_rank;      /* must be 0: the handle qn_model_load returns is rank 0, which drives the others */
    int tp_world;     /* tensor-parallel world size; <= 0: 1 */
    bool progress;    /* draw a loading progress bar (eng_progress rules) */
    bool quiet;       /* no memory summary log line */
    /* tensor parallelism (tp_world > 1); all optional */
    int tp_threads;   /* CPU threads of each backend made for ranks 1..world-1; <= 0: online CPUs /
                         world (at least 1). Give `be` (rank 0) the same count. */
    qn_backend_factory tp_backend; /* makes ranks 1..world-1's backends; NULL: CPU backends with be's
                                      SIMD path (be must then be a CPU backend) */
    void *tp_backend_ctx;
    struct eng_comm_group *tp_comm; /* the collectives, world ranks (not owned; e.g. NCCL for GPUs);
                                       NULL: CPU shared memory, made and owned by the model */
    int tp_timeout_ms; /* deadline of every collective wait and of a rank finishing its step;
                          <= 0: 60000 */
} qn_model_params;

/* Loads the model in folder `dir` (config.json + model.safetensors or shards) onto backend `be`
 * (not owned; must outlive the model). Weights are repacked as the forward wants them
 * (de-interleaved GDN projections, per-head q/gate split, fused projections, expert stacks) and
 * FP8 block weights are dequantized in the kernels from their fp8 bytes and scales. Errors name
 * the file and tensor: ENG_ERR_IO / ENG_ERR_FORMAT (missing tensor, wrong shape or dtype) /
 * ENG_ERR_UNSUPPORTED (attention bias, YaRN) / ENG_ERR_INVALID (a tp_world that does not divide the
 * head counts or FFN sizes: the detail names the config field) / ENG_ERR_NOMEM. With tp_world > 1
 * the ranks load in parallel, each on its own thread; errors say which rank. */
eng_status qn_model_load(const char *dir, eng_backend *be, const qn_model_params *p, qn_model **out);

/* Frees weights and scratch and unmaps the checkpoint; with tensor parallelism also stops the rank
 * threads and frees their backends (not `be`). NULL-safe. Caches made from the model must be
 * destroyed first. */
void qn_model_destroy(qn_model *m);

const qn_config *qn_model_config(const qn_model *m);
eng_backend *qn_model_backend(const qn_model *m); /* rank 0's */
/* The backend of tensor-parallel rank `rank` (0: the caller's); NULL if out of range. */
eng_backend *qn_model_rank_backend(const qn_model *m, int rank);
int qn_model_max_tokens(const qn_model *m);
int qn_model_vocab(const qn_model *m);
int qn_model_tp(const qn_model *m); /* tensor-parallel world size (1 without) */

/* One sequence of a batch. Its n_new rows are consecutive in qn_batch.tokens, sequences in order. */
typedef struct qn_seq {
    int n_new;                  /* new tokens this call, >= 1 */
    int pos;                    /* position of the first new token (= tokens already in its caches);
                                   0 starts the sequence afresh: its slot's state is ignored and
                                   overwritten, so a slot never needs resetting before reuse */
    int slot;                   /* recurrent-state slot (GDN conv + SSM state), unique in the batch */
    const int32_t *block_table; /* [n_blocks] KV block ids for positions [0, pos + n_new): position
                                   p lives in block block_table[p / block_size]. The blocks written
                                   this call (positions pos..pos+n_new-1) must not be shared. */
    int n_blocks;
} qn_seq;

typedef struct qn_batch {
    int n_tokens;               /* total rows, 1..max_tokens */
    const int32_t *tokens;      /* [n_tokens] ids in [0, vocab) */
    int n_seqs;
    const qn_seq *seqs;         /* [n_seqs] */
    int n_out;                  /* rows whose logits are wanted */
    const int32_t *out_rows;    /* [n_out] row indices into tokens, any order, repeats allowed */
} qn_batch;

/* CUDA graphs (default on): whether qn_model_forward may give the backend's step_begin a nonzero
 * key, i.e. let a device backend capture decode steps as graphs and replay them (backend.h). Off:
 * every step runs eagerly (A/B comparisons, debugging). Every rank follows. Not while a forward
 * runs. */
void qn_model_set_graphs(qn_model *m, bool on);

/* Runs the batch: appends every sequence's new tokens to its caches (KV at its positions, GDN
 * state in its slot) and writes logits[i][0..vocab) for row out_rows[i] (host memory,
 * [n_out][vocab] float32). A sequence's results are bitwise identical whatever other sequences
 * share the batch (backend.h, batch invariance). ENG_ERR_INVALID (detail says which field) for a
 * malformed batch, which then changes nothing. With tp_world 1 it never fails after it started
 * computing. With tp_world > 1 a rank that fails mid-step (a collective timing out, a device
 * error) makes it return ENG_ERR_TIMEOUT (or the rank's error) with a detail naming the ranks and
 * the collective, within about twice tp_timeout_ms, never a hang; the caches are then
 * inconsistent, every later call fails the same way, and the model must be destroyed and
 * reloaded. Logits agree with tp_world 1 to float rounding (row-parallel sums), not bitwise.
 * Each rank's forward is one step of its backend: step_begin before the first op (key: see
 * qn_model_set_graphs; always 0 with tp_world > 1, whose collectives wait on the host inside the
 * step) and step_end after the last, on every return path; callers must not bracket it themselves
 * (steps do not nest). */
eng_status qn_model_forward(qn_model *m, qn_cache *c, const qn_batch *b, float *logits);

#endif /* QN_MODEL_H */
