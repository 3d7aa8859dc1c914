/* cuda/common.cuh - device helpers shared by the kernel files: launch checking, warp/block sums,
 * exact weight conversions (bf16, e4m3 -> f32) and the math the CPU reference uses (silu,
 * sigmoid with accurate expf; no fast-math anywhere, so denormals and rounding follow IEEE).
 */
#pragma once

#include "cuda/cuda_impl.h" // defines: CUDA_CHECK, cu_* structs, launcher prototypes

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>
#include <stdint.h>

// Checks a kernel launch (configuration errors surface here; execution errors at the next sync).
#define CU_LAUNCH_CHECK() CUDA_CHECK(cudaGetLastError())

static inline unsigned cu_div_up(int64_t a, int64_t b)
{
    return (unsigned)((a + b - 1) / b);
}

__device__ __forceinline__ float warp_sum(float v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum over the block (blockDim.x a multiple of 32, <= 1024); every thread gets the result. `red`
// is shared scratch of 32 floats; the call contains __syncthreads (all threads must call it).
__device__ __forceinline__ float block_sum(float v, float *red)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads(); // red may still be read by a previous call
    if (lane == 0) red[warp] = v;
    __syncthreads();
    float t = 0.0f;
    for (int i = 0; i < nw; i++) t += red[i]; // fixed order: deterministic
    return t;
}

__device__ __forceinline__ float bf16_to_f32(uint32_t h)
{
    return __uint_as_float(h << 16);
}

// e4m3fn -> f32, exact for every finite value (normals and subnormals): the byte's exponent and
// mantissa bits are placed in an fp32 and rescaled by 2^120 (exact). 0x7f/0xff (NaN in e4m3fn)
// become 480: checkpoints hold no NaN. The same arithmetic as the CPU SIMD paths.
__device__ __forceinline__ float fp8_to_f32(uint32_t b)
{
    return __uint_as_float(((b & 0x80u) << 24) | ((b & 0x7fu) << 20)) * 1.329227995784915872903807060280344576e36f;
}

__device__ __forceinline__ float silu_f(float x)
{
    return x / (1.0f + expf(-x));
}

__device__ __forceinline__ float sigmoid_f(float x)
{
    return 1.0f / (1.0f + expf(-x));
}

// 16 bytes of weights -> VEC floats (VEC = 4 f32, 8 bf16, 16 fp8 values), times `s` for fp8.
template <int DT> struct wvec;
template <> struct wvec<ENG_DTYPE_F32> {
    static constexpr int VEC = 4;
    __device__ __forceinline__ static void load(const uint4 &u, float s, float *o)
    {
        (void)s;
        o[0] = __uint_as_float(u.x);
        o[1] = __uint_as_float(u.y);
        o[2] = __uint_as_float(u.z);
        o[3] = __uint_as_float(u.w);
    }
};
template <> struct wvec<ENG_DTYPE_BF16> {
    static constexpr int VEC = 8;
    __device__ __forceinline__ static void load(const uint4 &u, float s, float *o)
    {
        (void)s;
        const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
        for (int i = 0; i < 4; i++) {
            o[2 * i] = __uint_as_float(w[i] << 16);
            o[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
        }
    }
};
template <> struct wvec<ENG_DTYPE_F8_E4M3> {
    static constexpr int VEC = 16;
    __device__ __forceinline__ static void load(const uint4 &u, float s, float *o)
    {
        const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
        for (int i = 0; i < 4; i++)
#pragma unroll
            for (int j = 0; j < 4; j++) o[4 * i + j] = fp8_to_f32((w[i] >> (8 * j)) & 0xffu) * s;
    }
};

// One weight element (any stored dtype) as f32, scale applied; for tails and gathers.
__device__ __forceinline__ float w_elem(eng_dtype dt, const void *row, int64_t k, float s)
{
    switch (dt) {
    case ENG_DTYPE_F32:
        return ((const float *)row)[k];
    case ENG_DTYPE_BF16:
        return bf16_to_f32(((const uint16_t *)row)[k]);
    default:
        return fp8_to_f32(((const uint8_t *)row)[k]) * s;
    }
}

__host__ __device__ __forceinline__ size_t dtype_bytes(eng_dtype dt)
{
    return dt == ENG_DTYPE_F32 ? 4 : dt == ENG_DTYPE_BF16 ? 2 : 1;
}
