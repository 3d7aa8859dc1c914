/* model/demo.h - writes a small random-weight Qwen3-Next checkpoint (`qnext demo-model`).
 *
 * The architecture is the real one scaled down: hidden 256, 8 layers with every 4th full
 * attention (layers 3 and 7), 4 query / 2 KV heads of 64 (rotary 16), Gated DeltaNet with 2 K /
 * 4 V heads of 64, 8 routed experts (top 2) of 128 plus a shared expert of 128, one MTP layer, and
 * the real vocabulary (151936), so the real tokenizer works. Weights are N(0, 0.02) except where
 * the real model has structure: A_log = log(U(1, 16)), dt_bias = log(expm1(U(0.001, 0.1))),
 * conv1d ~ U(-0.5, 0.5) (PyTorch's default Conv1d init for 4 taps), the gated norm weight
 * 1 + N(0, 0.02). Values are a pure function of (seed, tensor name): the bf16 and fp8 variants of
 * one seed hold the same underlying numbers. With fp8, every quantizable weight (spec.h) is stored
 * F8_E4M3 with an F32 `weight_scale_inv` per 128 x 128 block (scale = max|block| / 448; dequantise
 * as fp8 * scale), and config.json gets the quantization_config of the real FP8 checkpoint.
 *
 * With `config_path`, the architecture is instead the one of any Qwen3-Next config.json (the
 * benchmark model, bench/model/config.json): that file is copied as config.json (and a
 * generation_config.json next to it, if any), the tensor list follows it (MTP layers only when it
 * names a count), and the weights are drawn the same way; fp8 then comes from its
 * quantization_config.
 */
#ifndef QN_DEMO_H
#define QN_DEMO_H

#include "model/config.h" /* defines: qn_config */

typedef struct qn_demo_options {
    const char *out_dir;       /* created (with parents) if missing; existing files are replaced */
    uint64_t seed;
    bool fp8;                  /* block-FP8 weights + scales instead of bf16 */
    const char *tokenizer_dir; /* tokenizer.json, tokenizer_config.json and chat_template.qwen3-next-instruct.jinja
                                * (or chat_template.jinja); NULL: no tokenizer files */
    uint64_t max_shard_bytes;  /* 0: one model.safetensors; else HF-style shards + model.safetensors.index.json */
    bool progress;             /* draw a progress bar on stderr (eng_progress rules) */
    const char *config_path;   /* a config.json to follow instead of the built-in demo architecture;
                                * NULL: the demo. fp8 must then be false unless the file has a
                                * block-fp8 quantization_config (which implies fp8) */
} qn_demo_options;

typedef struct qn_demo_summary {
    size_t n_tensors;  /* scales included */
    uint64_t n_params; /* scales excluded */
    uint64_t n_bytes;  /* tensor data */
    int n_shards;
    bool fp8;          /* weights written as block FP8 */
    int n_layers, n_linear, n_full, n_mtp; /* decoder layers by kind, MTP layers */
    int n_experts, top_k;
} qn_demo_summary;

/* The demo's config.json text (heap, free with eng_free). */
eng_status qn_demo_config_json(bool fp8, char **out);

/* Writes config.json, generation_config.json (Qwen3-Next conventions: eos [151645, 151643],
 * temperature 0.7, top_p 0.8, top_k 20), the weights, and the tokenizer files (tokenizer_config.json
 * gets the Instruct chat template; chat_template.jinja holds the same text). On error the detail
 * names the file; partially written files may remain. */
eng_status qn_demo_write(const qn_demo_options *o, qn_demo_summary *summary);

#endif /* QN_DEMO_H */
