/* cuda/util.cu - device utilities for benchmarks and tests: deterministic pseudo-random weight
 * fill (full-size models without a checkpoint), constant fill, and the memory read-bandwidth
 * probe that gives the decode roofline.
 */
#include "cuda/common.cuh"

// splitmix64: a pure function of (seed, index), so a fill is the same on every run and GPU.
__device__ __forceinline__ uint64_t mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// Uniform in [-amp, amp) as f32 / bf16; for e4m3, uniform in [-448, 448) quantized (the caller's
// block scales then set the magnitude).
__global__ void k_fill_random(void *dst, int dt, size_t n, uint64_t seed, float amp)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const uint64_t r = mix64(seed ^ (i * 0xd1342543de82ef95ull));
        const float u = (float)(r >> 40) * (1.0f / 16777216.0f) * 2.0f - 1.0f; // [-1, 1)
        switch (dt) {
        case ENG_DTYPE_F32:
            ((float *)dst)[i] = u * amp;
            break;
        case ENG_DTYPE_BF16:
            ((__nv_bfloat16 *)dst)[i] = __float2bfloat16_rn(u * amp);
            break;
        default:
            ((__nv_fp8_e4m3 *)dst)[i] = __nv_fp8_e4m3(u * 448.0f);
            break;
        }
    }
}

extern "C" void cu_launch_fill_random(void *dst, eng_dtype dt, size_t n, uint64_t seed, float amp, cudaStream_t s)
{
    if (!n) return;
    k_fill_random<<<1024, 256, 0, s>>>(dst, (int)dt, n, seed, amp);
    CU_LAUNCH_CHECK();
}

__global__ void k_fill_f32(float *dst, size_t n, float v)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = v;
}

extern "C" void cu_launch_fill_f32(float *dst, size_t n, float v, cudaStream_t s)
{
    if (!n) return;
    k_fill_f32<<<256, 256, 0, s>>>(dst, n, v);
    CU_LAUNCH_CHECK();
}

// Streams the buffer with 16-byte loads (grid-stride), xors everything into one word per thread
// and writes a value that depends on it only when impossible, so the loads stay live.
__global__ void k_read_probe(const uint4 *src, size_t n16, float *sink)
{
    uint32_t acc = 0;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n16; i += (size_t)gridDim.x * blockDim.x) {
        const uint4 v = __ldcs(src + i); // streaming: no L2 reuse between passes
        acc ^= v.x ^ v.y ^ v.z ^ v.w;
    }
    if (acc == 0x9e3779b9u) sink[0] = (float)acc;
}

extern "C" void cu_launch_read_probe(const void *src, size_t bytes, float *sink, cudaStream_t s)
{
    int dev = 0, sms = 1;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    k_read_probe<<<sms * 8, 512, 0, s>>>((const uint4 *)src, bytes / 16, sink);
    CU_LAUNCH_CHECK();
}
