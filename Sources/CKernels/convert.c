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

#if defined(__x86_64__)
#include <immintrin.h>
/// Loads, each line asked for `distance` bytes ahead at `level` (as the decode kernels read
/// their weights) unless it is 0. Which reads faster depends on the host and its bandwidth
/// state, so the probe (FalconMambaModel.probeReadBandwidth) takes the best of all three:
/// measured in session 5, the prefetched read was 2-15% faster at ~45 GB/s and ~1% at
/// ~80; in session 6, on another host, loads alone were 1-3% faster at ~56.
__attribute__((target("avx512f"))) static uint64_t read_avx512(const void *data, int64_t bytes, int64_t distance,
                                                               int level) {
    const char *p = data;
    __m512i a = _mm512_setzero_si512(), b = a, c = a, d = a;
    int64_t i = 0;
    for (; i + 256 <= bytes; i += 256) {
        if (distance)
            for (int line = 0; line < 4; line++) mk_prefetch_weights(p + i + distance + 64 * line, level);
        a = _mm512_xor_si512(a, _mm512_loadu_si512(p + i));
        b = _mm512_xor_si512(b, _mm512_loadu_si512(p + i + 64));
        c = _mm512_xor_si512(c, _mm512_loadu_si512(p + i + 128));
        d = _mm512_xor_si512(d, _mm512_loadu_si512(p + i + 192));
    }
    uint64_t out[8];
    _mm512_storeu_si512(out, _mm512_xor_si512(_mm512_xor_si512(a, b), _mm512_xor_si512(c, d)));
    uint64_t h = out[0] ^ out[1] ^ out[2] ^ out[3] ^ out[4] ^ out[5] ^ out[6] ^ out[7];
    for (; i < bytes; i++) h = h * 31 + (uint8_t)p[i];
    return h;
}
#endif

uint64_t mk_read_bytes(const void *data, int64_t bytes, int64_t prefetch_distance, int level) {
#if defined(__x86_64__)
    if (mk_isa_level() == MK_ISA_AVX512) return read_avx512(data, bytes, prefetch_distance, level);
#else
    (void)prefetch_distance;
    (void)level;
#endif
    const uint64_t *p = data;
    uint64_t h = 0;
    int64_t i = 0;
    for (; (i + 1) * 8 <= bytes; i++) h ^= p[i];
    return h;
}
