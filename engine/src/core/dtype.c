/* core/dtype.c - dtype names and the slower scalar conversions (see dtype.h). */
#include "core/dtype.h"

static const struct {
    const char *name;
    size_t size;
} dtypes[ENG_DTYPE_COUNT] = {
    [ENG_DTYPE_F32] = {"F32", 4},    [ENG_DTYPE_F16] = {"F16", 2}, [ENG_DTYPE_BF16] = {"BF16", 2},
    [ENG_DTYPE_F8_E4M3] = {"F8_E4M3", 1}, [ENG_DTYPE_F64] = {"F64", 8}, [ENG_DTYPE_I8] = {"I8", 1},
    [ENG_DTYPE_U8] = {"U8", 1},      [ENG_DTYPE_I16] = {"I16", 2}, [ENG_DTYPE_I32] = {"I32", 4},
    [ENG_DTYPE_I64] = {"I64", 8},    [ENG_DTYPE_BOOL] = {"BOOL", 1},
};

size_t eng_dtype_size(eng_dtype t)
{
    return (unsigned)t < ENG_DTYPE_COUNT ? dtypes[t].size : 0;
}

const char *eng_dtype_name(eng_dtype t)
{
    return (unsigned)t < ENG_DTYPE_COUNT ? dtypes[t].name : "?";
}

int eng_dtype_parse(const char *name, size_t len)
{
    for (int i = 0; i < ENG_DTYPE_COUNT; i++)
        if (strlen(dtypes[i].name) == len && memcmp(dtypes[i].name, name, len) == 0) return i;
    return -1;
}

uint16_t eng_f32_to_f16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return sign | 0x7e00u;  /* NaN */
    if (a >= 0x477ff000u) return sign | 0x7c00u; /* overflow -> inf (rounds past 65504) */
    if (a < 0x38800000u) {                      /* subnormal or zero in f16 */
        float af;
        memcpy(&af, &a, 4);
        return sign | (uint16_t)lrintf(af * 16777216.0f); /* af / 2^-24, rint = nearest-even */
    }
    uint32_t r = a + 0xfffu + ((a >> 13) & 1u) - (112u << 23);
    return sign | (uint16_t)(r >> 13);
}

uint8_t eng_f32_to_fp8e4m3(float f)
{
    if (isnan(f)) return 0x7f;
    uint8_t sign = signbit(f) ? 0x80 : 0;
    float a = fabsf(f);
    if (a >= 448.0f) return sign | 0x7e; /* saturate */
    if (a < ldexpf(1.0f, -6)) {          /* subnormal range: step 2^-9 */
        long m = lrintf(a * 512.0f);
        return sign | (uint8_t)m; /* m == 8 rolls into the smallest normal, which is encoded 0x08 */
    }
    int e;
    float fr = frexpf(a, &e); /* a = fr * 2^e, fr in [0.5,1) */
    /* normal: a = (1 + man/8) * 2^(E-7) with E = e - 1 + 7 */
    long m = lrintf((fr * 2.0f - 1.0f) * 8.0f);
    int E = e - 1 + 7;
    if (m == 8) {
        m = 0;
        E++;
    }
    if (E > 15 || (E == 15 && m == 7)) return sign | 0x7e;
    return sign | (uint8_t)((E << 3) | m);
}
