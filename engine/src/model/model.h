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
 */
#ifndef QN_MODEL_H
#define QN_MODEL_H

#include "backend/backend.h"
#include "model/config.h"

typedef struct qn_model qn_model;
typedef struct qn_cache qn_cache;

typedef struct qn_model_params {
    int max_tokens;   /* rows per forward call (prefill chunk + decode tokens); <= 0: 256 */
    int tp_rank;      /* tensor-parallel rank and world size; only world 1 is implemented */
    int tp_world;     /* <= 0: 1 */
    bool progress;    /* draw a loading progress bar (eng_progress rules) */
    bool quiet;       /* no memory summary log line */
} qn_model_params;

/* Loads the model in folder `dir` (config.json + model.safetensors or shards) onto backend `be`
 * (not owned; must outlive the model). Weights are repacked as the forward wants them
 * (de-interleaved GDN projections, per-head q/gate split, fused projections, expert stacks) and
 * FP8 block weights are dequantized in the kernels from their fp8 bytes and scales. Errors name
 * the file and tensor: ENG_ERR_IO / ENG_ERR_FORMAT (missing tensor, wrong shape or dtype) /
 * ENG_ERR_UNSUPPORTED (attention bias, YaRN, tensor parallel world > 1) / ENG_ERR_NOMEM. */
eng_status qn_model_load(const char *dir, eng_backend *be, const qn_model_params *p, qn_model **out);

/* Frees weights and scratch and unmaps the checkpoint. NULL-safe. Caches made from the model must
 * be destroyed first. */
void qn_model_destroy(qn_model *m);

const qn_config *qn_model_config(const qn_model *m);
eng_backend *qn_model_backend(const qn_model *m);
int qn_model_max_tokens(const qn_model *m);
int qn_model_vocab(const qn_model *m);

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

/* Runs the batch: appends every sequence's new tokens to its caches (KV at its positions, GDN
 * state in its slot) and writes logits[i][0..vocab) for row out_rows[i] (host memory,
 * [n_out][vocab] float32). A sequence's results are bitwise identical whatever other sequences
 * share the batch (backend.h, batch invariance). ENG_ERR_INVALID (detail says which field) for a
 * malformed batch, which then changes nothing; never fails after it started computing. */
eng_status qn_model_forward(qn_model *m, qn_cache *c, const qn_batch *b, float *logits);

#endif /* QN_MODEL_H */
