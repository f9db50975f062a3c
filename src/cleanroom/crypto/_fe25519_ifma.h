/*
 * GF(2^255 - 19) eight elements at a time, on AVX-512 IFMA (52-bit multiply-accumulate lanes).
 *
 * Shared by _x25519_ifma.c (the 8-lane X25519 ladder), _h2c25519.c (the hash to curve's
 * exponentiations) and _check25519.c (the subset products of validation). The representation
 * is _fe25519.h's, lane by lane: five limbs of radix 2^51, so a lane converts to and from the
 * scalar code's fe by copying limbs.
 *
 * The invariant that makes IFMA safe: vpmadd52luq/huq read only the low 52 bits of each
 * multiplicand, so every limb that reaches fe8_mul/fe8_sq must be below 2^52, or bits are lost
 * silently. Radix 2^51 leaves one bit of headroom: fe8_carry_limbs brings any limbs below 2^63
 * back under 2^52 in one parallel pass (each below 2^51 + 19 * 2^12), and every
 * function here ends with it (fe8_add, fe8_sub, fe8_mul, fe8_sq, fe8_mul_small), so its outputs
 * always satisfy the invariant whatever their inputs did. Values are kept modulo p, not below p;
 * fe_to_bytes (scalar) makes them canonical.
 *
 * Products: a_i * b_j (both < 2^52) = L + H * 2^52 with L, H < 2^52 (the lo and hi halves IFMA
 * returns). At radix 2^51, L belongs to limb i + j and H * 2^52 = 2H * 2^51 to limb i + j + 1.
 * So limb k of the 10-limb product is t_k = sum of L over i + j = k plus twice the sum of H over
 * i + j = k - 1: at most 5 * 2^52 + 2 * 5 * 2^52 < 2^56. Limbs 5..10 fold down by 2^255 = 19
 * (limb 10 twice): r_k = t_k + 19 * t_(k+5) < 2^63, then one carry pass.
 *
 * Everything is straight-line code without branches or memory indices that depend on the values,
 * so it is constant-time; the X25519 ladder relies on that for its key.
 */
#ifndef CLEANROOM_FE25519_IFMA_H
#define CLEANROOM_FE25519_IFMA_H

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CLEANROOM_HAVE_IFMA 1

#include <cpuid.h>
#include <immintrin.h>
#include <stdint.h>

#include "_fe25519.h"

/* Functions that use AVX-512 carry this attribute, so the module builds with the compiler's
 * default target and runs them only after cpu_has_ifma() said yes. */
#define IFMA_TARGET __attribute__((target("avx512f,avx512ifma")))
#define IFMA_INLINE static inline __attribute__((always_inline)) IFMA_TARGET

typedef struct {
    __m512i v[5];
} fe8;

/* AVX-512 F and IFMA in CPUID, and the OS saving the ZMM and opmask state (XGETBV). */
static int cpu_has_ifma(void) {
    unsigned int eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx) || !(ecx & bit_OSXSAVE)) return 0;
    unsigned int xcr0_lo, xcr0_hi;
    __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    (void)xcr0_hi;
    /* SSE, AVX, opmask, upper halves of ZMM0-15, ZMM16-31 */
    if ((xcr0_lo & 0xe6) != 0xe6) return 0;
    if (__get_cpuid_max(0, NULL) < 7) return 0;
    __cpuid_count(7, 0, eax, ebx, ecx, edx);
    return (ebx & bit_AVX512F) && (ebx & bit_AVX512IFMA);
}

IFMA_INLINE __m512i times19(__m512i x) {
    return _mm512_add_epi64(_mm512_add_epi64(_mm512_slli_epi64(x, 4), _mm512_slli_epi64(x, 1)), x);
}

/* Limbs below 2^63 in, below 2^52 out: every limb keeps its low 51 bits and takes the carry of
 * the limb below it (below 2^12; limb 0 takes 19 times the top limb's), all at once rather than
 * rippling, so the chain of dependent instructions stays short. */
IFMA_INLINE void fe8_carry_limbs(__m512i r[5]) {
    const __m512i mask = _mm512_set1_epi64((long long)MASK51);
    __m512i c[5];
    for (int i = 0; i < 5; i++) c[i] = _mm512_srli_epi64(r[i], 51);
    r[0] = _mm512_add_epi64(_mm512_and_si512(r[0], mask), times19(c[4]));
    for (int i = 1; i < 5; i++) r[i] = _mm512_add_epi64(_mm512_and_si512(r[i], mask), c[i - 1]);
}

IFMA_INLINE void fe8_set_small(fe8 *h, uint64_t v) {
    h->v[0] = _mm512_set1_epi64((long long)v);
    for (int i = 1; i < 5; i++) h->v[i] = _mm512_setzero_si512();
}

/* The same scalar element in every lane. */
IFMA_INLINE void fe8_broadcast(fe8 *h, const fe f) {
    for (int i = 0; i < 5; i++) h->v[i] = _mm512_set1_epi64((long long)f[i]);
}

/* Lane j of h = fs[j] (limbs below 2^52, as _fe25519.h keeps them). */
IFMA_INLINE void fe8_load(fe8 *h, const fe fs[8]) {
    const __m512i index = _mm512_setr_epi64(0, 5, 10, 15, 20, 25, 30, 35);
    for (int i = 0; i < 5; i++) h->v[i] = _mm512_i64gather_epi64(index, (const void *)(&fs[0][i]), 8);
}

IFMA_INLINE void fe8_store(fe fs[8], const fe8 *h) {
    const __m512i index = _mm512_setr_epi64(0, 5, 10, 15, 20, 25, 30, 35);
    for (int i = 0; i < 5; i++) _mm512_i64scatter_epi64((void *)(&fs[0][i]), index, h->v[i], 8);
}

IFMA_INLINE void fe8_add(fe8 *h, const fe8 *f, const fe8 *g) {
    __m512i r[5];
    for (int i = 0; i < 5; i++) r[i] = _mm512_add_epi64(f->v[i], g->v[i]);
    fe8_carry_limbs(r);
    for (int i = 0; i < 5; i++) h->v[i] = r[i];
}

/* f - g + 4p: every limb of 4p (2^53 - 76, then 2^53 - 4) exceeds 2^52 > any limb of g. */
IFMA_INLINE void fe8_sub(fe8 *h, const fe8 *f, const fe8 *g) {
    __m512i r[5];
    r[0] = _mm512_sub_epi64(_mm512_add_epi64(f->v[0], _mm512_set1_epi64(0x1fffffffffffb4LL)), g->v[0]);
    for (int i = 1; i < 5; i++)
        r[i] = _mm512_sub_epi64(_mm512_add_epi64(f->v[i], _mm512_set1_epi64(0x1ffffffffffffcLL)), g->v[i]);
    fe8_carry_limbs(r);
    for (int i = 0; i < 5; i++) h->v[i] = r[i];
}

/* t_0..t_10 (see the header) folded to five limbs and carried. */
IFMA_INLINE void fe8_reduce(fe8 *h, __m512i lo[10], __m512i hi[11]) {
    __m512i t[11];
    for (int k = 0; k < 10; k++) t[k] = _mm512_add_epi64(lo[k], _mm512_slli_epi64(hi[k], 1));
    t[10] = _mm512_slli_epi64(hi[10], 1);
    t[5] = _mm512_add_epi64(t[5], times19(t[10])); /* 2^510 = 19 * 2^255 */
    __m512i r[5];
    for (int k = 0; k < 5; k++) r[k] = _mm512_add_epi64(t[k], times19(t[k + 5]));
    fe8_carry_limbs(r);
    for (int k = 0; k < 5; k++) h->v[k] = r[k];
}

IFMA_INLINE void fe8_mul(fe8 *h, const fe8 *f, const fe8 *g) {
    __m512i lo[10], hi[11];
    for (int k = 0; k < 10; k++) lo[k] = _mm512_setzero_si512();
    for (int k = 0; k < 11; k++) hi[k] = _mm512_setzero_si512();
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 5; j++) {
            lo[i + j] = _mm512_madd52lo_epu64(lo[i + j], f->v[i], g->v[j]);
            hi[i + j + 1] = _mm512_madd52hi_epu64(hi[i + j + 1], f->v[i], g->v[j]);
        }
    fe8_reduce(h, lo, hi);
}

/* Squaring: each product a_i a_j (i < j) once, doubled by shifting its sums (a doubled limb
 * could exceed 52 bits), then the squares a_i^2 accumulated onto the doubled sums. */
IFMA_INLINE void fe8_sq(fe8 *h, const fe8 *f) {
    __m512i lo[10], hi[11];
    for (int k = 0; k < 10; k++) lo[k] = _mm512_setzero_si512();
    for (int k = 0; k < 11; k++) hi[k] = _mm512_setzero_si512();
    for (int i = 0; i < 5; i++)
        for (int j = i + 1; j < 5; j++) {
            lo[i + j] = _mm512_madd52lo_epu64(lo[i + j], f->v[i], f->v[j]);
            hi[i + j + 1] = _mm512_madd52hi_epu64(hi[i + j + 1], f->v[i], f->v[j]);
        }
    for (int k = 0; k < 10; k++) lo[k] = _mm512_slli_epi64(lo[k], 1);
    for (int k = 0; k < 11; k++) hi[k] = _mm512_slli_epi64(hi[k], 1);
    for (int i = 0; i < 5; i++) {
        lo[2 * i] = _mm512_madd52lo_epu64(lo[2 * i], f->v[i], f->v[i]);
        hi[2 * i + 1] = _mm512_madd52hi_epu64(hi[2 * i + 1], f->v[i], f->v[i]);
    }
    fe8_reduce(h, lo, hi);
}

IFMA_INLINE void fe8_sq_times(fe8 *h, const fe8 *f, int n) {
    fe8_sq(h, f);
    for (int i = 1; i < n; i++) fe8_sq(h, h);
}

/* f * k for a small constant k < 2^52. */
IFMA_INLINE void fe8_mul_small(fe8 *h, const fe8 *f, uint64_t k) {
    const __m512i kv = _mm512_set1_epi64((long long)k), zero = _mm512_setzero_si512();
    __m512i r[5];
    for (int i = 0; i < 5; i++) r[i] = _mm512_madd52lo_epu64(zero, f->v[i], kv);
    for (int i = 0; i < 4; i++)
        r[i + 1] = _mm512_add_epi64(r[i + 1], _mm512_slli_epi64(_mm512_madd52hi_epu64(zero, f->v[i], kv), 1));
    r[0] = _mm512_add_epi64(r[0], times19(_mm512_slli_epi64(_mm512_madd52hi_epu64(zero, f->v[4], kv), 1)));
    fe8_carry_limbs(r);
    for (int i = 0; i < 5; i++) h->v[i] = r[i];
}

/* Swap f and g where mask is all ones (the same in every lane or not), by XOR: no branch. */
IFMA_INLINE void fe8_cswap(fe8 *f, fe8 *g, __m512i mask) {
    for (int i = 0; i < 5; i++) {
        __m512i t = _mm512_and_si512(_mm512_xor_si512(f->v[i], g->v[i]), mask);
        f->v[i] = _mm512_xor_si512(f->v[i], t);
        g->v[i] = _mm512_xor_si512(g->v[i], t);
    }
}

/* z^(2^250 - 1) and z^11 (the shared head of the inversion and the square-root exponent) for n
 * independent vectors z[0..n-1] side by side: each squaring waits on the one before, so two
 * chains interleaved keep the multipliers busier than one. */
IFMA_INLINE void fe8_pow_2_250_minus_1(fe8 *out, fe8 *z11, const fe8 *z, int n) {
    fe8 t0[2], t1[2], t2[2];
#define EACH(stmt) for (int c = 0; c < n; c++) { stmt; }
    EACH(fe8_sq(&t0[c], &z[c]))                  /* 2 */
    EACH(fe8_sq_times(&t1[c], &t0[c], 2))        /* 8 */
    EACH(fe8_mul(&t1[c], &z[c], &t1[c]))         /* 9 */
    EACH(fe8_mul(&z11[c], &t0[c], &t1[c]))       /* 11 */
    EACH(fe8_sq(&t0[c], &z11[c]))                /* 22 */
    EACH(fe8_mul(&t0[c], &t1[c], &t0[c]))        /* 2^5 - 1 */
    EACH(fe8_sq_times(&t1[c], &t0[c], 5))
    EACH(fe8_mul(&t0[c], &t1[c], &t0[c]))        /* 2^10 - 1 */
    EACH(fe8_sq_times(&t1[c], &t0[c], 10))
    EACH(fe8_mul(&t1[c], &t1[c], &t0[c]))        /* 2^20 - 1 */
    EACH(fe8_sq_times(&t2[c], &t1[c], 20))
    EACH(fe8_mul(&t1[c], &t2[c], &t1[c]))        /* 2^40 - 1 */
    EACH(fe8_sq_times(&t1[c], &t1[c], 10))
    EACH(fe8_mul(&t0[c], &t1[c], &t0[c]))        /* 2^50 - 1 */
    EACH(fe8_sq_times(&t1[c], &t0[c], 50))
    EACH(fe8_mul(&t1[c], &t1[c], &t0[c]))        /* 2^100 - 1 */
    EACH(fe8_sq_times(&t2[c], &t1[c], 100))
    EACH(fe8_mul(&t1[c], &t2[c], &t1[c]))        /* 2^200 - 1 */
    EACH(fe8_sq_times(&t1[c], &t1[c], 50))
    EACH(fe8_mul(&out[c], &t1[c], &t0[c]))       /* 2^250 - 1 */
#undef EACH
}

/* z^(p - 2) = 1 / z (0 for z = 0). */
IFMA_INLINE void fe8_invert(fe8 *out, const fe8 *z) {
    fe8 t, z11;
    fe8_pow_2_250_minus_1(&t, &z11, z, 1);
    fe8_sq_times(&t, &t, 5);       /* 2^255 - 32 */
    fe8_mul(out, &t, &z11);        /* 2^255 - 21 */
}

/* z^((p - 5) / 8) = z^(2^252 - 3), the exponent of the square root (RFC 9380 G.2.1, c4), for
 * n (1 or 2) vectors side by side. */
IFMA_INLINE void fe8_pow22523(fe8 *out, const fe8 *z, int n) {
    fe8 t[2], z11[2];
    fe8_pow_2_250_minus_1(t, z11, z, n);
    for (int c = 0; c < n; c++) {
        fe8_sq_times(&t[c], &t[c], 2); /* 2^252 - 4 */
        fe8_mul(&out[c], &t[c], &z[c]); /* 2^252 - 3 */
    }
}

#else
#define CLEANROOM_HAVE_IFMA 0
#endif

#endif /* CLEANROOM_FE25519_IFMA_H */
