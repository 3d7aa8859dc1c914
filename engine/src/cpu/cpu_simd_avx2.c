/* cpu/cpu_simd_avx2.c - the AVX2 + FMA primitive table (compiled with -mavx2 -mfma -mf16c; chosen
 * at run time only when the CPU has them). The body is cpu_simd_tmpl.h. */
#include "cpu/cpu_kernels.h"

#include <immintrin.h>

#define VL 8
typedef __m256 vf;
#define VZERO() _mm256_setzero_ps()
#define VLOADU(p) _mm256_loadu_ps(p)
#define VSTOREU(p, v) _mm256_storeu_ps(p, v)
#define VSET1(s) _mm256_set1_ps(s)
#define VFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define VMUL(a, b) _mm256_mul_ps(a, b)
#define VADD(a, b) _mm256_add_ps(a, b)
#define VSUB(a, b) _mm256_sub_ps(a, b)
#define VDIV(a, b) _mm256_div_ps(a, b)
#define VMIN(a, b) _mm256_min_ps(a, b)
#define VMAX(a, b) _mm256_max_ps(a, b)
#define VROUND(a) _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
/* 2^n for a float vector holding integers n in [-126, 127] */
#define VPOW2I(n) _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23))

static inline vf vload_bf16(const uint8_t *p)
{
    __m128i h = _mm_loadu_si128((const __m128i *)(const void *)p);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

/* e4m3fn -> f32: the 7 magnitude bits placed at the f32 exponent/mantissa boundary read as a float
 * 2^-120 times too small (subnormal inputs land on f32 subnormals), so one multiply by 2^120 gives
 * the exact value; the sign is or-ed back. (0x7f/0xff, NaN in e4m3fn, never occur in weights.) */
static inline vf vload_f8(const uint8_t *p)
{
    __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)p));
    __m256i mag = _mm256_slli_epi32(_mm256_and_si256(v, _mm256_set1_epi32(0x7f)), 20);
    __m256i sign = _mm256_slli_epi32(_mm256_and_si256(v, _mm256_set1_epi32(0x80)), 24);
    vf f = _mm256_mul_ps(_mm256_castsi256_ps(mag), _mm256_set1_ps(0x1p120f));
    return _mm256_or_ps(f, _mm256_castsi256_ps(sign));
}

/* ((a0+a4)+(a2+a6)) + ((a1+a5)+(a3+a7)), the scalar table's lane order. */
static inline float vhsum(vf v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

#define TABLE_NAME cpu_kernels_avx2
#define TABLE_STR "avx2"
#include "cpu/cpu_simd_tmpl.h"
