/* cpu/cpu_simd_avx512.c - the AVX-512 (F/BW/VL/DQ) primitive table, 16 lanes, compiled with the
 * AVX-512 flags and chosen at run time only when the CPU has them. The body is cpu_simd_tmpl.h,
 * shared with the AVX2 table (which the tests run on the development machine); only the macros
 * below are specific. NOT RUN on the development machine (AMD Zen3, no AVX-512): it is kept this
 * small so it is correct by construction, and the kernel tests exercise it wherever the CPU has
 * AVX-512. AVX512-BF16 (vdpbf16ps) is deliberately not used: it rounds activations to bf16, which
 * costs more accuracy than the golden tests allow. */
#include "cpu/cpu_kernels.h"

#include <immintrin.h>

#define VL 16
typedef __m512 vf;
#define VZERO() _mm512_setzero_ps()
#define VLOADU(p) _mm512_loadu_ps(p)
#define VSTOREU(p, v) _mm512_storeu_ps(p, v)
#define VSET1(s) _mm512_set1_ps(s)
#define VFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define VMUL(a, b) _mm512_mul_ps(a, b)
#define VADD(a, b) _mm512_add_ps(a, b)
#define VSUB(a, b) _mm512_sub_ps(a, b)
#define VDIV(a, b) _mm512_div_ps(a, b)
#define VMIN(a, b) _mm512_min_ps(a, b)
#define VMAX(a, b) _mm512_max_ps(a, b)
#define VROUND(a) _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
/* 2^n for a float vector holding integers n in [-126, 127] */
#define VPOW2I(n) _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23))

static inline vf vload_bf16(const uint8_t *p)
{
    __m256i h = _mm256_loadu_si256((const __m256i *)(const void *)p);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* See cpu_simd_avx2.c: exact e4m3fn -> f32 by bit placement and a 2^120 rescale. */
static inline vf vload_f8(const uint8_t *p)
{
    __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(const void *)p));
    __m512i mag = _mm512_slli_epi32(_mm512_and_si512(v, _mm512_set1_epi32(0x7f)), 20);
    __m512i sign = _mm512_slli_epi32(_mm512_and_si512(v, _mm512_set1_epi32(0x80)), 24);
    vf f = _mm512_mul_ps(_mm512_castsi512_ps(mag), _mm512_set1_ps(0x1p120f));
    return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(f), sign));
}

/* Halves added lane-wise, then the AVX2 order on the 8 sums. */
static inline float vhsum(vf v)
{
    __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

#define TABLE_NAME cpu_kernels_avx512
#define TABLE_STR "avx512"
#include "cpu/cpu_simd_tmpl.h"
