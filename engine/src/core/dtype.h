/* core/dtype.h - element types of weights and activations, with scalar conversions.
 *
 * bf16 is the top half of an fp32; fp8 e4m3fn (OCP "FN": no infinities, 0x7f/0xff are NaN, max
 * 448) is the checkpoint's weight format. Vectorised conversions live with the CPU kernels.
 */
#ifndef QN_DTYPE_H
#define QN_DTYPE_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef enum eng_dtype {
    ENG_DTYPE_F32 = 0,
    ENG_DTYPE_F16,
    ENG_DTYPE_BF16,
    ENG_DTYPE_F8_E4M3,
    ENG_DTYPE_F64,
    ENG_DTYPE_I8,
    ENG_DTYPE_U8,
    ENG_DTYPE_I16,
    ENG_DTYPE_I32,
    ENG_DTYPE_I64,
    ENG_DTYPE_BOOL,
    ENG_DTYPE_COUNT
} eng_dtype;

/* Bytes per element. */
size_t eng_dtype_size(eng_dtype t);
/* The safetensors name ("F32", "BF16", "F8_E4M3", ...). */
const char *eng_dtype_name(eng_dtype t);
/* Parses a safetensors dtype name; returns -1 if unknown. */
int eng_dtype_parse(const char *name, size_t len);

static inline float eng_bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Round to nearest even; NaN stays NaN. */
static inline uint16_t eng_f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline float eng_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, u;
    if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else { /* subnormal */
            float f = ldexpf((float)man, -24);
            memcpy(&u, &f, 4);
            u |= sign;
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000u | (man << 13);
    } else {
        u = sign | ((exp + 112u) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t eng_f32_to_f16(float f);

/* fp8 e4m3fn: 1 sign, 4 exponent (bias 7), 3 mantissa; exp=15,man=7 is NaN; no inf. */
static inline float eng_fp8e4m3_to_f32(uint8_t v)
{
    uint32_t sign = (uint32_t)(v & 0x80u) << 24;
    uint32_t exp = (v >> 3) & 0xfu, man = v & 0x7u, u;
    if (exp == 0xf && man == 0x7) {
        u = sign | 0x7fc00000u;
    } else if (exp == 0) {
        float f = ldexpf((float)man, -9); /* subnormal: man * 2^-6 * 2^-3 */
        memcpy(&u, &f, 4);
        u |= sign;
    } else {
        u = sign | ((exp + 120u) << 23) | (man << 20);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Round-to-nearest-even with saturation to ±448 (the e4m3fn max), as torch's cast does for finite
 * inputs in range; NaN -> NaN. */
uint8_t eng_f32_to_fp8e4m3(float f);

#endif /* QN_DTYPE_H */
