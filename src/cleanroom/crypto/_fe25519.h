/*
 * GF(2^255 - 19) in radix 2^51, shared by the curve25519 C modules (_h2c25519.c, _check25519.c,
 * _x25519_ifma.c) and the lane-by-lane representation of _fe25519_ifma.h.
 *
 * Nothing it computes on is secret in this project: hashed identifiers, received elements and
 * X25519 results, all public points (the X25519 ladder, which does see the key, runs on
 * _fe25519_ifma.h and uses this file only to decode its inputs and encode its results; those
 * functions have no branches either). The functions are static inline so that each module keeps
 * only those it uses.
 */
#ifndef CLEANROOM_FE25519_H
#define CLEANROOM_FE25519_H

#include <stdint.h>
#include <string.h>

/* Invariant: every input to fe_mul/fe_sq has limbs below 2^52, which keeps every 128-bit
 * accumulator and every carry (times 19) inside its type; fe_add and fe_sub carry to keep it. */

typedef uint64_t fe[5];
typedef unsigned __int128 u128;

#define MASK51 ((uint64_t)0x7ffffffffffffULL)

static inline void fe_copy(fe h, const fe f) { memcpy(h, f, sizeof(fe)); }

static inline void fe_set_small(fe h, uint64_t v) {
    h[0] = v;
    h[1] = h[2] = h[3] = h[4] = 0;
}

static inline void fe_carry(fe h) {
    uint64_t c;
    c = h[0] >> 51; h[0] &= MASK51; h[1] += c;
    c = h[1] >> 51; h[1] &= MASK51; h[2] += c;
    c = h[2] >> 51; h[2] &= MASK51; h[3] += c;
    c = h[3] >> 51; h[3] &= MASK51; h[4] += c;
    c = h[4] >> 51; h[4] &= MASK51; h[0] += 19 * c;
    c = h[0] >> 51; h[0] &= MASK51; h[1] += c;
}

static inline void fe_add(fe h, const fe f, const fe g) {
    for (int i = 0; i < 5; i++) h[i] = f[i] + g[i];
    fe_carry(h);
}

/* f - g + 4p: every limb of 4p exceeds 2^52 > any limb of g. */
static inline void fe_sub(fe h, const fe f, const fe g) {
    h[0] = f[0] + 0x1fffffffffffb4ULL - g[0];
    for (int i = 1; i < 5; i++) h[i] = f[i] + 0x1ffffffffffffcULL - g[i];
    fe_carry(h);
}

static inline void fe_neg(fe h, const fe f) {
    fe zero = {0, 0, 0, 0, 0};
    fe_sub(h, zero, f);
}

static inline void fe_reduce_wide(fe h, u128 r0, u128 r1, u128 r2, u128 r3, u128 r4) {
    uint64_t c;
    r1 += (uint64_t)(r0 >> 51);
    r2 += (uint64_t)(r1 >> 51);
    r3 += (uint64_t)(r2 >> 51);
    r4 += (uint64_t)(r3 >> 51);
    c = (uint64_t)(r4 >> 51);
    h[0] = ((uint64_t)r0 & MASK51) + 19 * c;
    h[1] = (uint64_t)r1 & MASK51;
    h[2] = (uint64_t)r2 & MASK51;
    h[3] = (uint64_t)r3 & MASK51;
    h[4] = (uint64_t)r4 & MASK51;
    c = h[0] >> 51;
    h[0] &= MASK51;
    h[1] += c;
}

static inline void fe_mul(fe h, const fe f, const fe g) {
    uint64_t f0 = f[0], f1 = f[1], f2 = f[2], f3 = f[3], f4 = f[4];
    uint64_t g0 = g[0], g1 = g[1], g2 = g[2], g3 = g[3], g4 = g[4];
    uint64_t g1_19 = 19 * g1, g2_19 = 19 * g2, g3_19 = 19 * g3, g4_19 = 19 * g4;
    u128 r0 = (u128)f0 * g0 + (u128)f1 * g4_19 + (u128)f2 * g3_19 + (u128)f3 * g2_19 +
              (u128)f4 * g1_19;
    u128 r1 = (u128)f0 * g1 + (u128)f1 * g0 + (u128)f2 * g4_19 + (u128)f3 * g3_19 +
              (u128)f4 * g2_19;
    u128 r2 = (u128)f0 * g2 + (u128)f1 * g1 + (u128)f2 * g0 + (u128)f3 * g4_19 +
              (u128)f4 * g3_19;
    u128 r3 = (u128)f0 * g3 + (u128)f1 * g2 + (u128)f2 * g1 + (u128)f3 * g0 + (u128)f4 * g4_19;
    u128 r4 = (u128)f0 * g4 + (u128)f1 * g3 + (u128)f2 * g2 + (u128)f3 * g1 + (u128)f4 * g0;
    fe_reduce_wide(h, r0, r1, r2, r3, r4);
}

static inline void fe_sq(fe h, const fe f) {
    uint64_t f0 = f[0], f1 = f[1], f2 = f[2], f3 = f[3], f4 = f[4];
    uint64_t f0_2 = 2 * f0, f1_2 = 2 * f1, f2_2 = 2 * f2, f3_19 = 19 * f3, f4_19 = 19 * f4;
    u128 r0 = (u128)f0 * f0 + (u128)f1_2 * f4_19 + (u128)f2_2 * f3_19;
    u128 r1 = (u128)f0_2 * f1 + (u128)f2_2 * f4_19 + (u128)f3 * f3_19;
    u128 r2 = (u128)f0_2 * f2 + (u128)f1 * f1 + (u128)(2 * f3) * f4_19;
    u128 r3 = (u128)f0_2 * f3 + (u128)f1_2 * f2 + (u128)f4 * f4_19;
    u128 r4 = (u128)f0_2 * f4 + (u128)f1_2 * f3 + (u128)f2 * f2;
    fe_reduce_wide(h, r0, r1, r2, r3, r4);
}

static inline void fe_sq_times(fe h, const fe f, int n) {
    fe_sq(h, f);
    for (int i = 1; i < n; i++) fe_sq(h, h);
}

static inline void fe_mul_small(fe h, const fe f, uint64_t k) {
    fe_reduce_wide(h, (u128)f[0] * k, (u128)f[1] * k, (u128)f[2] * k, (u128)f[3] * k,
                   (u128)f[4] * k);
}

/* The canonical limbs (value in [0, p)). */
static inline void fe_canonical(fe h, const fe f) {
    fe_copy(h, f);
    fe_carry(h);
    fe_carry(h); /* now every limb < 2^51: the value is below 2^255 < 2p */
    uint64_t q = (h[0] + 19) >> 51;
    q = (h[1] + q) >> 51;
    q = (h[2] + q) >> 51;
    q = (h[3] + q) >> 51;
    q = (h[4] + q) >> 51; /* 1 iff value >= p */
    h[0] += 19 * q;
    uint64_t c;
    c = h[0] >> 51; h[0] &= MASK51; h[1] += c;
    c = h[1] >> 51; h[1] &= MASK51; h[2] += c;
    c = h[2] >> 51; h[2] &= MASK51; h[3] += c;
    c = h[3] >> 51; h[3] &= MASK51; h[4] += c;
    h[4] &= MASK51; /* drops the 2^255 that adding 19 carried up: value - p */
}

static inline int fe_is_zero(const fe f) {
    fe c;
    fe_canonical(c, f);
    return (c[0] | c[1] | c[2] | c[3] | c[4]) == 0;
}

static inline int fe_equal(const fe f, const fe g) {
    fe d;
    fe_sub(d, f, g);
    return fe_is_zero(d);
}

/* sgn0 (RFC 9380 §4.1): the parity of the canonical value. */
static inline int fe_is_odd(const fe f) {
    fe c;
    fe_canonical(c, f);
    return (int)(c[0] & 1);
}

static inline void fe_to_bytes(uint8_t out[32], const fe f) {
    fe c;
    fe_canonical(c, f);
    uint64_t w0 = c[0] | (c[1] << 51);
    uint64_t w1 = (c[1] >> 13) | (c[2] << 38);
    uint64_t w2 = (c[2] >> 26) | (c[3] << 25);
    uint64_t w3 = (c[3] >> 39) | (c[4] << 12);
    uint64_t w[4] = {w0, w1, w2, w3};
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 8; j++) out[8 * i + j] = (uint8_t)(w[i] >> (8 * j));
}

/* 32 little-endian bytes with the top bit clear, as limbs (the value may be >= p: not reduced). */
static inline void fe_from_bytes(fe h, const uint8_t s[32]) {
    uint64_t w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = 0;
        for (int j = 7; j >= 0; j--) w[i] = (w[i] << 8) | s[8 * i + j];
    }
    h[0] = w[0] & MASK51;
    h[1] = ((w[0] >> 51) | (w[1] << 13)) & MASK51;
    h[2] = ((w[1] >> 38) | (w[2] << 26)) & MASK51;
    h[3] = ((w[2] >> 25) | (w[3] << 39)) & MASK51;
    h[4] = (w[3] >> 12) & MASK51;
}

#endif /* CLEANROOM_FE25519_H */
