/* cuda/cuda_backend.h - the CUDA backend of the op table (backend/backend.h) for NVIDIA GPUs, and
 * the few device facts the engine and the GPU benchmarks need. Plain C11: no CUDA type appears here,
 * so the engine, the CLI and the tests include it without the toolkit's headers.
 *
 * One backend drives one GPU (eng_cuda_options.device) on one CUDA stream; a tensor-parallel rank
 * thread creates its own backend for its own device. Activations, the KV pool and the recurrent
 * state are float32 (docs/decisions.md D18); weights stay in their checkpoint dtype on the device
 * (BF16, FP8 e4m3 + block scales, F32; F16 is widened to F32 at load) and are dequantized in the
 * kernels. The GEMM precision paths are described at eng_cuda_gemm; docs/decisions.md D20 has the
 * reasons (accuracy budget, FP8, CUDA graphs, memory sizing).
 *
 * Built only when nvcc is found (QN_HAVE_CUDA=1 is then defined for every engine target).
 */
#ifndef QN_CUDA_BACKEND_H
#define QN_CUDA_BACKEND_H

#ifdef __cplusplus
extern "C" {
#endif

#include "backend/backend.h" /* defines: eng_backend, eng_status */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* How matmuls and the MoE expert GEMMs compute (activations are float32 in every case). */
typedef enum eng_cuda_gemm {
    /* Default. Up to simt_max_tokens rows: the CUDA-core kernel (as ENG_CUDA_GEMM_FP32). More rows:
     * tensor cores on the activations split into two bf16 halves (x = hi + lo, both multiplied),
     * FP8/F32 weights also split after dequantization, fp32 accumulation: about 16 bits of
     * mantissa per operand, within ~1e-5 of float32 (the golden fixtures need this: their router
     * logits have gaps down to 4e-5). BF16 weights with many rows go through cuBLASLt. */
    ENG_CUDA_GEMM_SPLIT = 0,
    /* CUDA cores only: every weight dequantized exactly as the CPU does, fp32 FMA, one fixed
     * reduction order per output element whatever the number of rows: batch invariant, and the
     * reference the other paths are checked against. Slow for prefill (compute bound). */
    ENG_CUDA_GEMM_FP32,
    /* Tensor cores on bf16-rounded activations (one product instead of two or three): the usual
     * production precision (~1e-3 relative), for speed comparisons; fails the golden bound. */
    ENG_CUDA_GEMM_BF16,
} eng_cuda_gemm;

typedef struct eng_cuda_options {
    int device;              /* CUDA device index */
    double memory_fraction;  /* share of the device's total memory this backend may allocate;
                                <= 0: 0.90 (vLLM's --gpu-memory-utilization semantics) */
    eng_cuda_gemm gemm;      /* GEMM path (above) */
    bool batch_invariant;    /* every op computes a row the same way whatever the batch: forces
                                ENG_CUDA_GEMM_FP32 (attention, GDN and norms always are) */
    bool no_graphs;          /* step_begin never captures CUDA graphs (debugging, A/B timing) */
    int graph_max_tokens;    /* largest decode batch captured as a graph; <= 0: 256 */
    int simt_max_tokens;     /* matmuls with at most this many rows use the CUDA-core kernel; <= 0: 8 */
    int cublas_min_tokens;   /* BF16 weights with at least this many rows use cuBLASLt; <= 0: 128 */
    uint64_t random_weights; /* nonzero: weight_create reads no host data and fills each weight on
                                the device with pseudo-random values of this seed (std ~0.02; FP8
                                with constant block scales): benchmarks of full-size models from a
                                sparse checkpoint, never for real inference */
} eng_cuda_options;

/* Creates the CUDA backend on opt->device (NULL: defaults, device 0). Errors: ENG_ERR_DEVICE when
 * there is no driver, no such device, or the device cannot be initialised (detail says which and
 * what CUDA reported); ENG_ERR_INVALID for a bad option; ENG_ERR_NOMEM. The backend's name is
 * "cuda:<index> <device name>". Not thread-safe: one thread uses a backend at a time. */
eng_status eng_backend_cuda_create(const eng_cuda_options *opt, eng_backend **out);

/* true if `be` was made by eng_backend_cuda_create. */
bool eng_backend_is_cuda(const eng_backend *be);

/* Number of CUDA devices (0 when there is no driver or no GPU; never fails). */
int eng_cuda_device_count(void);

typedef struct eng_cuda_device_info {
    char name[256];
    int cc_major, cc_minor;
    int sm_count;
    size_t total_bytes, free_bytes;
    int driver_version, runtime_version; /* e.g. 13000 for 13.0 */
    double peak_bw_gbs;                  /* theoretical memory bandwidth (0 when the driver hides it) */
} eng_cuda_device_info;

/* Facts about device `device`. ENG_ERR_DEVICE if it cannot be queried. */
eng_status eng_cuda_device_info_get(int device, eng_cuda_device_info *out);

/* Device memory this backend may allocate (its budget), holds now, and held at most. */
void eng_cuda_memory(const eng_backend *be, size_t *budget, size_t *used, size_t *peak);

/* Measured device-memory read bandwidth in GB/s (1e9 bytes/s): a kernel streams a buffer of
 * `bytes` (<= 0: 1 GiB, capped at a quarter of the free budget) `iters` times; the best pass
 * counts. The ceiling against which decode speed is judged. ENG_ERR_NOMEM if the buffer does not
 * fit. Synchronises the device. */
eng_status eng_cuda_read_bandwidth(eng_backend *be, size_t bytes, int iters, double *gbs);

typedef struct eng_cuda_stats {
    long graph_captures, graph_replays, eager_steps;
    long scratch_grows; /* scratch buffers enlarged after the first reserve */
    int graphs_cached;
} eng_cuda_stats;

void eng_cuda_stats_get(const eng_backend *be, eng_cuda_stats *out);

/* The backend's CUDA stream (a cudaStream_t, as void * so this header needs no CUDA types) and
 * device index. Collectives (tensor parallelism) must enqueue on this stream: ops are ordered on
 * it, and a decode step being captured as a CUDA graph captures only work on it. */
void *eng_cuda_stream(const eng_backend *be);
int eng_cuda_device(const eng_backend *be);

#ifdef __cplusplus
}
#endif

#endif /* QN_CUDA_BACKEND_H */
