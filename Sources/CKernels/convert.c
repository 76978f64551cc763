// Scalar float conversions, bit-exact with numpy/torch (round to nearest even).
#include "internal.h"

float mk_f16_to_f32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    const uint32_t exponent = (h >> 10) & 0x1F;
    const uint32_t mantissa = h & 0x3FF;
    if (exponent == 0x1F) return mk_float(sign | 0x7F800000 | (mantissa << 13));  // inf / nan
    if (exponent != 0) return mk_float(sign | ((exponent + 112) << 23) | (mantissa << 13));
    // zero or subnormal: mantissa * 2^-24, exact in float
    float v = (float)mantissa * 5.9604644775390625e-8f;
    return sign ? -v : v;
}

uint16_t mk_f32_to_f16(float f) {
    uint32_t u = mk_bits(f);
    const uint32_t sign = u & 0x80000000u;
    u ^= sign;
    uint16_t out;
    if (u >= (uint32_t)(127 + 16) << 23) {                 // overflow, inf or nan
        out = u > 0x7F800000u ? 0x7E00 : 0x7C00;
    } else if (u < (uint32_t)113 << 23) {                  // half subnormal or zero
        // Adding 0.5 aligns the 10 mantissa bits at the bottom; the FPU rounds to even.
        float v = mk_float(u) + 0.5f;
        out = (uint16_t)(mk_bits(v) - mk_bits(0.5f));
    } else {
        const uint32_t mantissa_odd = (u >> 13) & 1;
        u += ((uint32_t)(15 - 127) << 23) + 0xFFF;
        u += mantissa_odd;
        out = (uint16_t)(u >> 13);
    }
    return out | (uint16_t)(sign >> 16);
}

float mk_bf16_to_f32(uint16_t h) { return mk_float((uint32_t)h << 16); }

float mk_round_bf16(float f) {
    uint32_t u = mk_bits(f);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return f;  // nan stays nan
    u = (u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u;
    return mk_float(u);
}

float mk_round_f16(float f) { return mk_f16_to_f32(mk_f32_to_f16(f)); }

void mk_convert_to_f32(const void *src, int32_t dtype, int64_t count, float *dst) {
    if (dtype == MK_DTYPE_F32) {
        memcpy(dst, src, (size_t)count * sizeof(float));
    } else if (dtype == MK_DTYPE_F16) {
        const uint16_t *s = src;
        for (int64_t i = 0; i < count; i++) dst[i] = mk_f16_to_f32(s[i]);
    } else {
        const uint16_t *s = src;
        for (int64_t i = 0; i < count; i++) dst[i] = mk_bf16_to_f32(s[i]);
    }
}

void mk_q4_expand_nested_absmax(const uint8_t *codes, int64_t count, const float *nested_map,
                                const float *nested_absmax, int64_t nested_blocksize,
                                float offset, float *absmax) {
    // Two separate float operations, as bitsandbytes does: no fused multiply-add.
    for (int64_t i = 0; i < count; i++) {
        volatile float product = nested_map[codes[i]] * nested_absmax[i / nested_blocksize];
        absmax[i] = product + offset;
    }
}
