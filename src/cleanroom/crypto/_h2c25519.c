/*
 * RFC 9380 curve25519_XMD:SHA-512_ELL2_RO_ in bulk: the C path of h2c_curve25519.hash_to_curve_many.
 *
 * Per message: expand_message_xmd (three SHA-512 calls) gives u0 and u1; each is mapped by
 * Elligator 2 in the straight-line form of Appendix G.2.1, whose one exponentiation,
 * x^((p - 5) / 8), yields the candidate square root and, by squaring it back, the square test
 * (the Legendre-type test and the root share that one chain); the two points are added in
 * fractions, multiplied by the cofactor with three x-only doublings in projective coordinates,
 * and made affine with one inversion per block of 128 messages (Montgomery's trick). The
 * known-answer tests check it byte for byte against h2c_curve25519.hash_to_curve, the readable
 * affine implementation of the RFC's steps, and against the RFC's vectors.
 *
 * Two paths, chosen at run time, with the same bytes (tested on both, and compared once at
 * import: a difference turns the IFMA path off):
 * - AVX-512 IFMA (where the CPU and OS have it): messages go eight at a time, one per 64-bit
 *   lane, through SHA-512 and through the straight-line parts of the map and the sum, with
 *   the field arithmetic of _fe25519_ifma.h; the sixteen exponentiations of a group run as two
 *   interleaved 8-lane chains. Only the map's final case analysis (which root, which sign) and
 *   the block inversion stay scalar.
 * - portable C: the same steps one message at a time on radix-2^51 scalars (_fe25519.h).
 *
 * Why this SHA-512 and not OpenSSL's: on one-block inputs (what the expander hashes for
 * ordinary messages) OpenSSL 3's one-shot SHA512() is slower than the hand-written one below,
 * because its per-call provider fetch dominates such short inputs, and the 8-lane AVX-512
 * version hashes eight messages for about the price of one. Linking OpenSSL would also add a
 * system library (and a second OpenSSL beside cryptography's) to the build. So the portable
 * path keeps the small FIPS 180-4 implementation, and the IFMA path hashes eight lanes at once.
 *
 * The rare exceptional messages (Q0 = -Q1 and the like, about 2^-250 each) are reported by index
 * and the caller hashes them on the affine path. DST handling (DST_prime, long DSTs hashed) is
 * the caller's.
 *
 * Nothing here is secret: messages are hashed identifiers, and the outputs are public points.
 * The code is therefore not constant-time (branches on the square-root case).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

#include "_fe25519.h"
#include "_fe25519_ifma.h"

/* ---------------------------------------------------------------------------------------------
 * SHA-512 (FIPS 180-4), only what expand_message_xmd needs.
 */

typedef struct {
    uint64_t h[8];
    uint8_t buf[128];
    size_t buffered;  /* bytes in buf */
    uint64_t total;   /* bytes hashed so far (messages here are far below 2^61 bytes) */
} sha512_ctx;

static const uint64_t SHA512_K[80] = {
    0x428a2f98d728ae22ULL, 0x7137449123ef65cdULL, 0xb5c0fbcfec4d3b2fULL, 0xe9b5dba58189dbbcULL,
    0x3956c25bf348b538ULL, 0x59f111f1b605d019ULL, 0x923f82a4af194f9bULL, 0xab1c5ed5da6d8118ULL,
    0xd807aa98a3030242ULL, 0x12835b0145706fbeULL, 0x243185be4ee4b28cULL, 0x550c7dc3d5ffb4e2ULL,
    0x72be5d74f27b896fULL, 0x80deb1fe3b1696b1ULL, 0x9bdc06a725c71235ULL, 0xc19bf174cf692694ULL,
    0xe49b69c19ef14ad2ULL, 0xefbe4786384f25e3ULL, 0x0fc19dc68b8cd5b5ULL, 0x240ca1cc77ac9c65ULL,
    0x2de92c6f592b0275ULL, 0x4a7484aa6ea6e483ULL, 0x5cb0a9dcbd41fbd4ULL, 0x76f988da831153b5ULL,
    0x983e5152ee66dfabULL, 0xa831c66d2db43210ULL, 0xb00327c898fb213fULL, 0xbf597fc7beef0ee4ULL,
    0xc6e00bf33da88fc2ULL, 0xd5a79147930aa725ULL, 0x06ca6351e003826fULL, 0x142929670a0e6e70ULL,
    0x27b70a8546d22ffcULL, 0x2e1b21385c26c926ULL, 0x4d2c6dfc5ac42aedULL, 0x53380d139d95b3dfULL,
    0x650a73548baf63deULL, 0x766a0abb3c77b2a8ULL, 0x81c2c92e47edaee6ULL, 0x92722c851482353bULL,
    0xa2bfe8a14cf10364ULL, 0xa81a664bbc423001ULL, 0xc24b8b70d0f89791ULL, 0xc76c51a30654be30ULL,
    0xd192e819d6ef5218ULL, 0xd69906245565a910ULL, 0xf40e35855771202aULL, 0x106aa07032bbd1b8ULL,
    0x19a4c116b8d2d0c8ULL, 0x1e376c085141ab53ULL, 0x2748774cdf8eeb99ULL, 0x34b0bcb5e19b48a8ULL,
    0x391c0cb3c5c95a63ULL, 0x4ed8aa4ae3418acbULL, 0x5b9cca4f7763e373ULL, 0x682e6ff3d6b2b8a3ULL,
    0x748f82ee5defb2fcULL, 0x78a5636f43172f60ULL, 0x84c87814a1f0ab72ULL, 0x8cc702081a6439ecULL,
    0x90befffa23631e28ULL, 0xa4506cebde82bde9ULL, 0xbef9a3f7b2c67915ULL, 0xc67178f2e372532bULL,
    0xca273eceea26619cULL, 0xd186b8c721c0c207ULL, 0xeada7dd6cde0eb1eULL, 0xf57d4f7fee6ed178ULL,
    0x06f067aa72176fbaULL, 0x0a637dc5a2c898a6ULL, 0x113f9804bef90daeULL, 0x1b710b35131c471bULL,
    0x28db77f523047d84ULL, 0x32caab7b40c72493ULL, 0x3c9ebe0a15c9bebcULL, 0x431d67c49c100d4cULL,
    0x4cc5d4becb3e42b6ULL, 0x597f299cfc657e2aULL, 0x5fcb6fab3ad6faecULL, 0x6c44198c4a475817ULL,
};

#define ROTR64(x, n) (((x) >> (n)) | ((x) << (64 - (n))))

static uint64_t load64_be(const uint8_t *p) {
    return ((uint64_t)p[0] << 56) | ((uint64_t)p[1] << 48) | ((uint64_t)p[2] << 40) |
           ((uint64_t)p[3] << 32) | ((uint64_t)p[4] << 24) | ((uint64_t)p[5] << 16) |
           ((uint64_t)p[6] << 8) | (uint64_t)p[7];
}

static void store64_be(uint8_t *p, uint64_t v) {
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static void sha512_compress(uint64_t h[8], const uint8_t block[128]) {
    uint64_t w[80];
    for (int i = 0; i < 16; i++) w[i] = load64_be(block + 8 * i);
    for (int i = 16; i < 80; i++) {
        uint64_t s0 = ROTR64(w[i - 15], 1) ^ ROTR64(w[i - 15], 8) ^ (w[i - 15] >> 7);
        uint64_t s1 = ROTR64(w[i - 2], 19) ^ ROTR64(w[i - 2], 61) ^ (w[i - 2] >> 6);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint64_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    for (int i = 0; i < 80; i++) {
        uint64_t s1 = ROTR64(e, 14) ^ ROTR64(e, 18) ^ ROTR64(e, 41);
        uint64_t ch = (e & f) ^ (~e & g);
        uint64_t t1 = hh + s1 + ch + SHA512_K[i] + w[i];
        uint64_t s0 = ROTR64(a, 28) ^ ROTR64(a, 34) ^ ROTR64(a, 39);
        uint64_t maj = (a & b) ^ (a & c) ^ (b & c);
        uint64_t t2 = s0 + maj;
        hh = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
    h[5] += f;
    h[6] += g;
    h[7] += hh;
}

static void sha512_init(sha512_ctx *ctx) {
    static const uint64_t iv[8] = {
        0x6a09e667f3bcc908ULL, 0xbb67ae8584caa73bULL, 0x3c6ef372fe94f82bULL, 0xa54ff53a5f1d36f1ULL,
        0x510e527fade682d1ULL, 0x9b05688c2b3e6c1fULL, 0x1f83d9abfb41bd6bULL, 0x5be0cd19137e2179ULL,
    };
    memcpy(ctx->h, iv, sizeof iv);
    ctx->buffered = 0;
    ctx->total = 0;
}

static void sha512_update(sha512_ctx *ctx, const uint8_t *data, size_t len) {
    ctx->total += len;
    if (ctx->buffered) {
        size_t take = 128 - ctx->buffered;
        if (take > len) take = len;
        memcpy(ctx->buf + ctx->buffered, data, take);
        ctx->buffered += take;
        data += take;
        len -= take;
        if (ctx->buffered < 128) return;
        sha512_compress(ctx->h, ctx->buf);
        ctx->buffered = 0;
    }
    while (len >= 128) {
        sha512_compress(ctx->h, data);
        data += 128;
        len -= 128;
    }
    memcpy(ctx->buf, data, len);
    ctx->buffered = len;
}

static void sha512_final(sha512_ctx *ctx, uint8_t out[64]) {
    uint64_t bits = ctx->total * 8;
    ctx->buf[ctx->buffered++] = 0x80;
    if (ctx->buffered > 112) {
        memset(ctx->buf + ctx->buffered, 0, 128 - ctx->buffered);
        sha512_compress(ctx->h, ctx->buf);
        ctx->buffered = 0;
    }
    memset(ctx->buf + ctx->buffered, 0, 120 - ctx->buffered);
    store64_be(ctx->buf + 120, bits);  /* the high 64 bits of the 128-bit length are zero */
    sha512_compress(ctx->h, ctx->buf);
    for (int i = 0; i < 8; i++) store64_be(out + 8 * i, ctx->h[i]);
}

#if CLEANROOM_HAVE_IFMA
/* ---------------------------------------------------------------------------------------------
 * SHA-512 on eight messages at once (AVX-512: one message per 64-bit lane, rotations in one
 * instruction, the boolean functions in one ternary-logic instruction each).
 */

#define ROR8(x, n) _mm512_ror_epi64((x), (n))
#define XOR3(a, b, c) _mm512_ternarylogic_epi64((a), (b), (c), 0x96)

/* One block per lane: blocks[j] is lane j's 128-byte block. */
IFMA_TARGET static void sha512_compress8(__m512i h[8], const uint8_t *const blocks[8]) {
    __m512i w[80];
    for (int t = 0; t < 16; t++) {
        uint64_t words[8];
        for (int j = 0; j < 8; j++) words[j] = load64_be(blocks[j] + 8 * t);
        w[t] = _mm512_loadu_si512((const void *)words);
    }
    for (int t = 16; t < 80; t++) {
        __m512i s0 = XOR3(ROR8(w[t - 15], 1), ROR8(w[t - 15], 8), _mm512_srli_epi64(w[t - 15], 7));
        __m512i s1 = XOR3(ROR8(w[t - 2], 19), ROR8(w[t - 2], 61), _mm512_srli_epi64(w[t - 2], 6));
        w[t] = _mm512_add_epi64(_mm512_add_epi64(w[t - 16], s0), _mm512_add_epi64(w[t - 7], s1));
    }
    __m512i a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    for (int i = 0; i < 80; i++) {
        __m512i s1 = XOR3(ROR8(e, 14), ROR8(e, 18), ROR8(e, 41));
        __m512i ch = _mm512_ternarylogic_epi64(e, f, g, 0xca);
        __m512i t1 = _mm512_add_epi64(_mm512_add_epi64(hh, s1),
                                      _mm512_add_epi64(_mm512_add_epi64(ch, w[i]),
                                                       _mm512_set1_epi64((long long)SHA512_K[i])));
        __m512i s0 = XOR3(ROR8(a, 28), ROR8(a, 34), ROR8(a, 39));
        __m512i maj = _mm512_ternarylogic_epi64(a, b, c, 0xe8);
        __m512i t2 = _mm512_add_epi64(s0, maj);
        hh = g;
        g = f;
        f = e;
        e = _mm512_add_epi64(d, t1);
        d = c;
        c = b;
        b = a;
        a = _mm512_add_epi64(t1, t2);
    }
    h[0] = _mm512_add_epi64(h[0], a);
    h[1] = _mm512_add_epi64(h[1], b);
    h[2] = _mm512_add_epi64(h[2], c);
    h[3] = _mm512_add_epi64(h[3], d);
    h[4] = _mm512_add_epi64(h[4], e);
    h[5] = _mm512_add_epi64(h[5], f);
    h[6] = _mm512_add_epi64(h[6], g);
    h[7] = _mm512_add_epi64(h[7], hh);
}

/* The padded tail of one message: parts concatenated, 0x80, zeros, the 128-bit bit length of
 * everything hashed (prefix_len bytes already in the starting state, plus the parts). Returns
 * the number of 128-byte blocks written to buf. */
static size_t sha512_pad(uint8_t *buf, const uint8_t *const parts[3], const size_t lens[3],
                         uint64_t prefix_len) {
    size_t len = 0;
    for (int i = 0; i < 3; i++) {
        memcpy(buf + len, parts[i], lens[i]);
        len += lens[i];
    }
    size_t blocks = (len + 17 + 127) / 128;
    memset(buf + len, 0, blocks * 128 - len);
    buf[len] = 0x80;
    store64_be(buf + blocks * 128 - 8, (prefix_len + len) * 8);
    return blocks;
}

/* Hash each lane's padded tail (blocks[j] of them at bufs[j]) from the state start; lanes with
 * fewer blocks keep their state once done. */
IFMA_TARGET static void sha512_run8(const uint64_t start[8], uint8_t *const bufs[8],
                                    const size_t blocks[8], uint8_t out[8][64]) {
    __m512i h[8];
    for (int i = 0; i < 8; i++) h[i] = _mm512_set1_epi64((long long)start[i]);
    size_t most = 0;
    for (int j = 0; j < 8; j++) most = blocks[j] > most ? blocks[j] : most;
    for (size_t b = 0; b < most; b++) {
        const uint8_t *ptrs[8];
        __mmask8 active = 0;
        for (int j = 0; j < 8; j++) {
            int live = b < blocks[j];
            active |= (__mmask8)(live << j);
            ptrs[j] = bufs[j] + 128 * (live ? b : 0);
        }
        __m512i next[8];
        for (int i = 0; i < 8; i++) next[i] = h[i];
        sha512_compress8(next, ptrs);
        for (int i = 0; i < 8; i++) h[i] = _mm512_mask_blend_epi64(active, h[i], next[i]);
    }
    for (int i = 0; i < 8; i++) {
        uint64_t words[8];
        _mm512_storeu_si512((void *)words, h[i]);
        for (int j = 0; j < 8; j++) store64_be(out[j] + 8 * i, words[j]);
    }
}
#endif

/* ---------------------------------------------------------------------------------------------
 * GF(2^255 - 19): the shared radix-2^51 arithmetic is in _fe25519.h; here only what hashing needs.
 */

/* OS2IP of 48 big-endian bytes, mod p (hash_to_field's reduction, L = 48). */
static void fe_from_48_be(fe h, const uint8_t b[48]) {
    uint64_t w[6]; /* little-endian 64-bit words of the 384-bit number */
    for (int i = 0; i < 6; i++) w[i] = load64_be(b + 48 - 8 * (i + 1));
    /* low 255 bits */
    h[0] = w[0] & MASK51;
    h[1] = ((w[0] >> 51) | (w[1] << 13)) & MASK51;
    h[2] = ((w[1] >> 38) | (w[2] << 26)) & MASK51;
    h[3] = ((w[2] >> 25) | (w[3] << 39)) & MASK51;
    h[4] = (w[3] >> 12) & MASK51;
    /* the 129 high bits count 19 times each, as 2^255 = 19 (mod p) */
    uint64_t lo = (w[3] >> 63) | (w[4] << 1);
    uint64_t mid = (w[4] >> 63) | (w[5] << 1);
    uint64_t top = w[5] >> 63;
    h[0] += 19 * (lo & MASK51);
    h[1] += 19 * (((lo >> 51) | (mid << 13)) & MASK51);
    h[2] += 19 * ((mid >> 38) | (top << 26));
    fe_carry(h);
}

/* The shared head of both exponentiations below (ref10's chain): z^(2^250 - 1), and z^11. */
static void fe_pow_2_250_minus_1(fe out, fe z11, const fe z) {
    fe t0, t1, t2;
    fe_sq(t0, z);               /* 2 */
    fe_sq_times(t1, t0, 2);     /* 8 */
    fe_mul(t1, z, t1);          /* 9 */
    fe_mul(z11, t0, t1);        /* 11 */
    fe_sq(t0, z11);             /* 22 */
    fe_mul(t0, t1, t0);         /* 2^5 - 1 */
    fe_sq_times(t1, t0, 5);
    fe_mul(t0, t1, t0);         /* 2^10 - 1 */
    fe_sq_times(t1, t0, 10);
    fe_mul(t1, t1, t0);         /* 2^20 - 1 */
    fe_sq_times(t2, t1, 20);
    fe_mul(t1, t2, t1);         /* 2^40 - 1 */
    fe_sq_times(t1, t1, 10);
    fe_mul(t0, t1, t0);         /* 2^50 - 1 */
    fe_sq_times(t1, t0, 50);
    fe_mul(t1, t1, t0);         /* 2^100 - 1 */
    fe_sq_times(t2, t1, 100);
    fe_mul(t1, t2, t1);         /* 2^200 - 1 */
    fe_sq_times(t1, t1, 50);
    fe_mul(out, t1, t0);        /* 2^250 - 1 */
}

/* z^(2^252 - 3) = z^((p - 5) / 8), the square-root exponent of Appendix G.2.1 (c4). */
static void fe_pow22523(fe out, const fe z) {
    fe t, z11;
    fe_pow_2_250_minus_1(t, z11, z);
    fe_sq_times(t, t, 2);       /* 2^252 - 4 */
    fe_mul(out, t, z);          /* 2^252 - 3 */
}

/* z^(p - 2) = 1 / z (0 for z = 0). */
static void fe_invert(fe out, const fe z) {
    fe t, z11;
    fe_pow_2_250_minus_1(t, z11, z);
    fe_sq_times(t, t, 5);       /* 2^255 - 32 */
    fe_mul(out, t, z11);        /* 2^255 - 21 */
}

/* ---------------------------------------------------------------------------------------------
 * The map and the sum, exactly as h2c_curve25519.hash_to_curve_many computes them.
 */

#define J 486662ULL
#define A24 121665ULL

typedef struct {
    fe c2;          /* 2^((p + 3) / 8) */
    fe c3;          /* sqrt(-1) = 2^((p - 1) / 4) */
    fe c2c3;        /* c2 * c3 */
    fe j3;          /* J^3 */
    fe x2_check;    /* 2 / c2^2: in the x2 branch, t = g(x1) * this iff y * u * c2 is the root */
    fe minus_j;     /* -J, the numerator x1n */
} constants;

static void fe_pow_small_base(fe out, uint64_t base, const uint8_t exp_le[32]) {
    /* Square-and-multiply from the top bit: only for the constants, once per call. */
    fe b, r;
    fe_set_small(b, base);
    fe_set_small(r, 1);
    for (int bit = 255; bit >= 0; bit--) {
        fe_sq(r, r);
        if ((exp_le[bit / 8] >> (bit % 8)) & 1) fe_mul(r, r, b);
    }
    fe_copy(out, r);
}

static void exponent_bytes(uint8_t out[32], int shift_numer_add, int divisor) {
    /* (p + add) / divisor for p = 2^255 - 19, as 32 little-endian bytes. */
    uint8_t p[32];
    memset(p, 0xff, 32);
    p[0] = 0xed;
    p[31] = 0x7f;
    /* p + add, with add in [-19, 19] here: add to the low byte with carry/borrow. */
    int carry = shift_numer_add;
    for (int i = 0; i < 32; i++) {
        int v = p[i] + carry;
        carry = 0;
        while (v < 0) { v += 256; carry -= 1; }
        while (v > 255) { v -= 256; carry += 1; }
        p[i] = (uint8_t)v;
    }
    /* divide by divisor (a power of two here) */
    int rem = 0;
    for (int i = 31; i >= 0; i--) {
        int cur = (rem << 8) | p[i];
        out[i] = (uint8_t)(cur / divisor);
        rem = cur % divisor;
    }
}

static void constants_init(constants *k) {
    uint8_t e[32];
    exponent_bytes(e, 3, 8);
    fe_pow_small_base(k->c2, 2, e);
    exponent_bytes(e, -1, 4);
    fe_pow_small_base(k->c3, 2, e);
    fe_mul(k->c2c3, k->c2, k->c3);
    fe_set_small(k->j3, J);
    fe_mul_small(k->j3, k->j3, J);
    fe_mul_small(k->j3, k->j3, J);
    fe c2sq, inv;
    fe_sq(c2sq, k->c2);
    fe_invert(inv, c2sq);
    fe_add(k->x2_check, inv, inv);
    fe jfe;
    fe_set_small(jfe, J);
    fe_neg(k->minus_j, jfe);
}

/* Messages per group: the lanes of the 8-lane path (the portable path groups the same way). */
#define GROUP 8

/* Q = map_to_curve(u) as (n / d, y) (Appendix G.2.1 with y affine and its sign fixed) for the
 * 2 * GROUP field elements of a group: lane j < GROUP is u0 of message j, lane GROUP + j its u1.
 * The map is cut in three around its one exponentiation (prepare, pow, finish), so that the
 * 8-lane path can run the straight-line parts and the exponentiation on eight lanes at once. */
typedef struct {
    fe u[2 * GROUP], tv1[2 * GROUP], d[2 * GROUP], gxd[2 * GROUP], gx1[2 * GROUP];
    fe tv3[2 * GROUP];
    fe exp_in[2 * GROUP]; /* gx1 gxd^7, to be raised to (p - 5) / 8 */
    fe pow[2 * GROUP];
    fe qn[2 * GROUP], qd[2 * GROUP], qy[2 * GROUP];
} group_maps;

static void map_prepare(const constants *k, group_maps *g, int j) {
    fe xd2, g2, tmp, tmp2, one;
    fe_sq(g->tv1[j], g->u[j]);
    fe_add(g->tv1[j], g->tv1[j], g->tv1[j]); /* 2 u^2 */
    fe_set_small(one, 1);
    fe_add(g->d[j], g->tv1[j], one);         /* xd = 1 + 2 u^2 */
    fe_sq(xd2, g->d[j]);
    fe_mul(g->gxd[j], xd2, g->d[j]);         /* xd^3 */
    fe_mul(tmp, k->j3, g->tv1[j]);
    fe_mul_small(tmp2, xd2, J);
    fe_sub(g->gx1[j], tmp, tmp2);            /* J^3 2u^2 - J xd^2 = x1n^3 + J x1n^2 xd + x1n xd^2 */
    fe_sq(g2, g->gxd[j]);
    fe_mul(g->tv3[j], g2, g->gxd[j]);
    fe_mul(g->tv3[j], g->tv3[j], g->gx1[j]); /* gx1 gxd^3 */
    fe_sq(tmp, g2);
    fe_mul(g->exp_in[j], tmp, g->tv3[j]);    /* gx1 gxd^7 */
}

/* From pow = exp_in^((p - 5) / 8): the square root's case, x and the sign of y. */
static void map_finish(const constants *k, group_maps *g, int j) {
    fe t, tmp, y;
    fe_copy(g->qd[j], g->d[j]);
    fe_mul(y, g->pow[j], g->tv3[j]);         /* candidate sqrt(gx1 / gxd), up to a 4th root of 1 */
    fe_sq(t, y);
    fe_mul(t, t, g->gxd[j]);
    if (fe_equal(t, g->gx1[j])) {
        fe_copy(g->qn[j], k->minus_j);
        if (!fe_is_odd(y)) fe_neg(y, y);
    } else {
        fe_add(tmp, t, g->gx1[j]);
        if (fe_is_zero(tmp)) {
            fe_copy(g->qn[j], k->minus_j);
            fe_mul(y, y, k->c3);
            if (!fe_is_odd(y)) fe_neg(y, y);
        } else {
            fe_mul(g->qn[j], k->minus_j, g->tv1[j]); /* x2n = -J 2u^2 */
            fe_mul(tmp, g->gx1[j], k->x2_check);
            fe_mul(y, y, g->u[j]);
            fe_mul(y, y, fe_equal(t, tmp) ? k->c2 : k->c2c3);
            if (fe_is_odd(y)) fe_neg(y, y);
        }
    }
    fe_copy(g->qy[j], y);
}

/* expand_message_xmd(msg, DST, 96) with SHA-512, then u0, u1 (hash_to_field, count 2). */
static void hash_to_field2(const sha512_ctx *after_z_pad, const uint8_t *msg, size_t msg_len,
                           const uint8_t *dst_prime, size_t dst_prime_len, fe u0, fe u1) {
    static const uint8_t lib_str_and_zero[3] = {0x00, 0x60, 0x00}; /* I2OSP(96, 2) || 0 */
    uint8_t b0[64], b1[64], b2[64], x[64], one = 1, two = 2;
    sha512_ctx c = *after_z_pad;
    sha512_update(&c, msg, msg_len);
    sha512_update(&c, lib_str_and_zero, 3);
    sha512_update(&c, dst_prime, dst_prime_len);
    sha512_final(&c, b0);
    sha512_init(&c);
    sha512_update(&c, b0, 64);
    sha512_update(&c, &one, 1);
    sha512_update(&c, dst_prime, dst_prime_len);
    sha512_final(&c, b1);
    for (int i = 0; i < 64; i++) x[i] = b0[i] ^ b1[i];
    sha512_init(&c);
    sha512_update(&c, x, 64);
    sha512_update(&c, &two, 1);
    sha512_update(&c, dst_prime, dst_prime_len);
    sha512_final(&c, b2);
    uint8_t uniform[128];
    memcpy(uniform, b1, 64);
    memcpy(uniform + 64, b2, 64);
    fe_from_48_be(u0, uniform);
    fe_from_48_be(u1, uniform + 48);
}

#if CLEANROOM_HAVE_IFMA
/* hash_to_field2 for eight messages at once. scratch[j] holds at least
 * scratch_size(longest message, dst_prime_len) bytes. */
IFMA_TARGET static void hash_to_field8(const sha512_ctx *after_z_pad, const uint8_t *const msgs[8],
                                       const size_t msg_lens[8], const uint8_t *dst_prime,
                                       size_t dst_prime_len, uint8_t *const scratch[8], fe u0[8],
                                       fe u1[8]) {
    static const uint8_t lib_str_and_zero[3] = {0x00, 0x60, 0x00}; /* I2OSP(96, 2) || 0 */
    static const uint8_t one = 1, two = 2;
    sha512_ctx initial;
    sha512_init(&initial);
    uint8_t b0[8][64], b1[8][64], b2[8][64], x[64];
    uint8_t tails[8][384]; /* 64 + 1 + 256 bytes of DST_prime at most, padded: 3 blocks */
    uint8_t *tail_ptrs[8];
    size_t blocks[8];
    for (int j = 0; j < 8; j++) {
        const uint8_t *parts[3] = {msgs[j], lib_str_and_zero, dst_prime};
        const size_t lens[3] = {msg_lens[j], 3, dst_prime_len};
        blocks[j] = sha512_pad(scratch[j], parts, lens, 128);
    }
    sha512_run8(after_z_pad->h, scratch, blocks, b0);
    for (int j = 0; j < 8; j++) {
        const uint8_t *parts[3] = {b0[j], &one, dst_prime};
        const size_t lens[3] = {64, 1, dst_prime_len};
        blocks[j] = sha512_pad(tails[j], parts, lens, 0);
        tail_ptrs[j] = tails[j];
    }
    sha512_run8(initial.h, tail_ptrs, blocks, b1);
    for (int j = 0; j < 8; j++) {
        for (int i = 0; i < 64; i++) x[i] = b0[j][i] ^ b1[j][i];
        const uint8_t *parts[3] = {x, &two, dst_prime};
        const size_t lens[3] = {64, 1, dst_prime_len};
        blocks[j] = sha512_pad(tails[j], parts, lens, 0);
    }
    sha512_run8(initial.h, tail_ptrs, blocks, b2);
    for (int j = 0; j < 8; j++) {
        uint8_t uniform[128];
        memcpy(uniform, b1[j], 64);
        memcpy(uniform + 64, b2[j], 64);
        fe_from_48_be(u0[j], uniform);
        fe_from_48_be(u1[j], uniform + 48);
    }
}
#endif

/* Bytes of scratch per lane that hash_to_field8 needs for a message of msg_len bytes. */
static size_t scratch_size(size_t msg_len, size_t dst_prime_len) {
    return (msg_len + 3 + dst_prime_len + 17 + 127) / 128 * 128;
}

/* R = Q0 + Q1, then P = 8 R by x-only doublings, as X / Z (Z = 0 only in exceptional cases). */
static void sum_and_clear(const fe q0n, const fe q0d, const fe q0y, const fe q1n, const fe q1d,
                          const fe q1y, fe x, fe z) {
    fe cross0, cross1, w, m, tmp, tmp2;
    fe_mul(cross0, q0n, q1d);
    fe_mul(cross1, q1n, q0d);
    fe_mul(tmp, cross0, q1y);
    fe_mul(tmp2, cross1, q0y);
    fe_sub(w, tmp, tmp2);
    fe_sub(m, cross1, cross0);
    fe_sq(x, w);
    fe_mul(x, x, q0d);
    fe_mul(x, x, q1d);
    fe_mul(z, q0n, q1n);
    fe_sq(tmp, m);
    fe_mul(z, z, tmp);
    for (int i = 0; i < 3; i++) {
        fe s, d, aa, bb, e;
        fe_add(s, x, z);
        fe_sub(d, x, z);
        fe_sq(aa, s);
        fe_sq(bb, d);
        fe_sub(e, aa, bb);
        fe_mul(x, aa, bb);
        fe_mul_small(tmp, e, A24);
        fe_add(tmp, tmp, aa);
        fe_mul(z, e, tmp);
    }
}

/* The exponentiations and the straight-line parts of a group, portable. */
static void group_prepare_and_pow_portable(const constants *k, group_maps *g) {
    for (int j = 0; j < 2 * GROUP; j++) {
        map_prepare(k, g, j);
        fe_pow22523(g->pow[j], g->exp_in[j]);
    }
}

static void group_sum_portable(group_maps *g, fe xs[GROUP], fe zs[GROUP]) {
    for (int i = 0; i < GROUP; i++)
        sum_and_clear(g->qn[i], g->qd[i], g->qy[i], g->qn[GROUP + i], g->qd[GROUP + i],
                      g->qy[GROUP + i], xs[i], zs[i]);
}

#if CLEANROOM_HAVE_IFMA
/* The same on AVX-512 IFMA, eight lanes at a time: the u0 half and the u1 half of the group as
 * two independent chains side by side, which the CPU overlaps (each squaring of the
 * exponentiation waits on the one before). The formulas are map_prepare's, step for step. */
IFMA_TARGET static void group_prepare_and_pow_ifma(const constants *k, group_maps *g) {
    fe8 u[2], tv1[2], d[2], gxd[2], gx1[2], tv3[2], x[2], xd2[2], g2[2], tmp[2], tmp2[2];
    fe8 j3, one, t[2];
    fe8_broadcast(&j3, k->j3);
    fe8_set_small(&one, 1);
#define BOTH(stmt) for (int c = 0; c < 2; c++) { stmt; }
    BOTH(fe8_load(&u[c], g->u + c * GROUP))
    BOTH(fe8_sq(&tv1[c], &u[c]))
    BOTH(fe8_add(&tv1[c], &tv1[c], &tv1[c]))
    BOTH(fe8_add(&d[c], &tv1[c], &one))
    BOTH(fe8_sq(&xd2[c], &d[c]))
    BOTH(fe8_mul(&gxd[c], &xd2[c], &d[c]))
    BOTH(fe8_mul(&tmp[c], &j3, &tv1[c]))
    BOTH(fe8_mul_small(&tmp2[c], &xd2[c], J))
    BOTH(fe8_sub(&gx1[c], &tmp[c], &tmp2[c]))
    BOTH(fe8_sq(&g2[c], &gxd[c]))
    BOTH(fe8_mul(&tv3[c], &g2[c], &gxd[c]))
    BOTH(fe8_mul(&tv3[c], &tv3[c], &gx1[c]))
    BOTH(fe8_sq(&tmp[c], &g2[c]))
    BOTH(fe8_mul(&x[c], &tmp[c], &tv3[c]))       /* exp_in */
    fe8_pow22523(t, x, 2);
    BOTH(fe8_store(g->tv1 + c * GROUP, &tv1[c]))
    BOTH(fe8_store(g->d + c * GROUP, &d[c]))
    BOTH(fe8_store(g->gxd + c * GROUP, &gxd[c]))
    BOTH(fe8_store(g->gx1 + c * GROUP, &gx1[c]))
    BOTH(fe8_store(g->tv3 + c * GROUP, &tv3[c]))
    BOTH(fe8_store(g->pow + c * GROUP, &t[c]))
#undef BOTH
}

/* sum_and_clear on eight messages at once, step for step. */
IFMA_TARGET static void group_sum_ifma(group_maps *g, fe xs[GROUP], fe zs[GROUP]) {
    fe8 q0n, q0d, q0y, q1n, q1d, q1y, cross0, cross1, w, m, tmp, tmp2, x, z;
    fe8_load(&q0n, g->qn);
    fe8_load(&q0d, g->qd);
    fe8_load(&q0y, g->qy);
    fe8_load(&q1n, g->qn + GROUP);
    fe8_load(&q1d, g->qd + GROUP);
    fe8_load(&q1y, g->qy + GROUP);
    fe8_mul(&cross0, &q0n, &q1d);
    fe8_mul(&cross1, &q1n, &q0d);
    fe8_mul(&tmp, &cross0, &q1y);
    fe8_mul(&tmp2, &cross1, &q0y);
    fe8_sub(&w, &tmp, &tmp2);
    fe8_sub(&m, &cross1, &cross0);
    fe8_sq(&x, &w);
    fe8_mul(&x, &x, &q0d);
    fe8_mul(&x, &x, &q1d);
    fe8_mul(&z, &q0n, &q1n);
    fe8_sq(&tmp, &m);
    fe8_mul(&z, &z, &tmp);
    for (int i = 0; i < 3; i++) {
        fe8 s, d, aa, bb, e;
        fe8_add(&s, &x, &z);
        fe8_sub(&d, &x, &z);
        fe8_sq(&aa, &s);
        fe8_sq(&bb, &d);
        fe8_sub(&e, &aa, &bb);
        fe8_mul(&x, &aa, &bb);
        fe8_mul_small(&tmp, &e, A24);
        fe8_add(&tmp, &tmp, &aa);
        fe8_mul(&z, &e, &tmp);
    }
    fe8_store(xs, &x);
    fe8_store(zs, &z);
}
#endif

/* Messages per shared inversion: big enough that the one inversion is noise, small enough that
 * the block's state fits in L1/L2. A multiple of GROUP. */
#define BLOCK 128

/* Hash n messages; out gets 32 bytes per message. Indices whose Z was 0 (the exceptional cases
 * the affine path handles) are written to failed[], their count returned. */
static size_t hash_many(const uint8_t *data, const Py_ssize_t *offsets, size_t n,
                        const uint8_t *dst_prime, size_t dst_prime_len, uint8_t *out,
                        size_t *failed, int use_ifma, uint8_t *scratch, size_t scratch_per_lane) {
    constants k;
    constants_init(&k);
    sha512_ctx after_z_pad;
    uint8_t zeros[128];
    memset(zeros, 0, sizeof zeros);
    sha512_init(&after_z_pad);
    sha512_update(&after_z_pad, zeros, 128);
    uint8_t *lanes[GROUP];
    for (int j = 0; j < GROUP; j++) lanes[j] = scratch + (size_t)j * scratch_per_lane;
#if !CLEANROOM_HAVE_IFMA
    (void)use_ifma;
    (void)lanes;
#endif
    size_t n_failed = 0;
    fe xs[BLOCK], zs[BLOCK], prefix[BLOCK];
    group_maps g;
    for (size_t start = 0; start < n; start += BLOCK) {
        size_t count = n - start < BLOCK ? n - start : BLOCK;
        for (size_t first = 0; first < count; first += GROUP) {
            /* a short last group repeats its first message in the spare lanes (dropped) */
            size_t used = count - first < GROUP ? count - first : GROUP;
            const uint8_t *msgs[GROUP];
            size_t lens[GROUP];
            for (size_t i = 0; i < GROUP; i++) {
                size_t idx = start + first + (i < used ? i : 0);
                msgs[i] = data + offsets[idx];
                lens[i] = (size_t)(offsets[idx + 1] - offsets[idx]);
            }
            fe gx[GROUP], gz[GROUP];
#if CLEANROOM_HAVE_IFMA
            if (use_ifma) {
                hash_to_field8(&after_z_pad, msgs, lens, dst_prime, dst_prime_len, lanes, g.u,
                               g.u + GROUP);
                group_prepare_and_pow_ifma(&k, &g);
                for (int j = 0; j < 2 * GROUP; j++) map_finish(&k, &g, j);
                group_sum_ifma(&g, gx, gz);
            } else
#endif
            {
                for (size_t i = 0; i < GROUP; i++)
                    hash_to_field2(&after_z_pad, msgs[i], lens[i], dst_prime, dst_prime_len,
                                   g.u[i], g.u[GROUP + i]);
                group_prepare_and_pow_portable(&k, &g);
                for (int j = 0; j < 2 * GROUP; j++) map_finish(&k, &g, j);
                group_sum_portable(&g, gx, gz);
            }
            for (size_t i = 0; i < used; i++) {
                size_t b = first + i;
                fe_copy(xs[b], gx[i]);
                fe_copy(zs[b], gz[i]);
                if (fe_is_zero(zs[b])) {
                    failed[n_failed++] = start + b;
                    fe_set_small(zs[b], 1);
                    fe_set_small(xs[b], 0);
                }
            }
        }
        /* Montgomery's trick: one inversion for the block. */
        fe_copy(prefix[0], zs[0]);
        for (size_t i = 1; i < count; i++) fe_mul(prefix[i], prefix[i - 1], zs[i]);
        fe inv;
        fe_invert(inv, prefix[count - 1]);
        for (size_t i = count; i-- > 0;) {
            fe zinv;
            if (i > 0) {
                fe_mul(zinv, inv, prefix[i - 1]);
                fe_mul(inv, inv, zs[i]);
            } else {
                fe_copy(zinv, inv);
            }
            fe u;
            fe_mul(u, xs[i], zinv);
            fe_to_bytes(out + 32 * (start + i), u);
        }
    }
    return n_failed;
}

/* ---------------------------------------------------------------------------------------------
 * Python binding.
 */

PyDoc_STRVAR(hash_to_curve_many_doc,
"hash_to_curve_many(msgs, dst_prime, /, ifma=True) -> (bytes, list[int])\n\n"
"Hash each message to curve25519 (RFC 9380 curve25519_XMD:SHA-512_ELL2_RO_). Returns the\n"
"concatenated 32-byte u-coordinates and the indices of exceptional messages (probability about\n"
"2^-250 each), whose 32 bytes are left zero for the caller to fill in by the affine path.\n"
"dst_prime is DST || I2OSP(len(DST), 1), with long DSTs already hashed (RFC 9380 5.3.3).\n"
"The exponentiations run on AVX-512 IFMA where IFMA is true (module constant) and ifma is\n"
"true, on the portable code otherwise: the bytes are the same.");

/* Set once at import: this CPU and OS can run the IFMA code. */
static int have_ifma = 0;

/* Offsets are int64 on the wire between processes and Py_ssize_t in hash_many: the same. */
_Static_assert(sizeof(Py_ssize_t) == sizeof(int64_t), "a 64-bit build");

/* Hash n packed messages (message i is data[offsets[i]:offsets[i + 1]]) into a new bytes object
 * of 32 n bytes, without the GIL; returns (bytes, list of exceptional indices) or NULL. */
static PyObject *hash_packed(const uint8_t *data, const Py_ssize_t *offsets, Py_ssize_t n,
                             const Py_buffer *dst, int ifma) {
    PyObject *result = NULL, *out = NULL, *failed_list = NULL;
    size_t longest = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        size_t len = (size_t)(offsets[i + 1] - offsets[i]);
        longest = len > longest ? len : longest;
    }
    size_t per_lane = scratch_size(longest, (size_t)dst->len);
    size_t *failed = PyMem_Malloc(sizeof(size_t) * (size_t)(n + 1));
    uint8_t *scratch = PyMem_Malloc(GROUP * per_lane);
    if (failed == NULL || scratch == NULL) { PyErr_NoMemory(); goto done; }
    out = PyBytes_FromStringAndSize(NULL, 32 * n);
    if (out == NULL) goto done;
    uint8_t *out_bytes = (uint8_t *)PyBytes_AS_STRING(out);
    size_t n_failed;
    Py_BEGIN_ALLOW_THREADS
    n_failed = hash_many(data, offsets, (size_t)n, dst->buf, (size_t)dst->len, out_bytes, failed,
                         ifma && have_ifma, scratch, per_lane);
    Py_END_ALLOW_THREADS
    failed_list = PyList_New((Py_ssize_t)n_failed);
    if (failed_list == NULL) goto done;
    for (size_t i = 0; i < n_failed; i++) {
        memset(out_bytes + 32 * failed[i], 0, 32);
        PyObject *index = PyLong_FromSize_t(failed[i]);
        if (index == NULL) goto done;
        PyList_SET_ITEM(failed_list, (Py_ssize_t)i, index);
    }
    result = PyTuple_Pack(2, out, failed_list);
done:
    Py_XDECREF(out);
    Py_XDECREF(failed_list);
    PyMem_Free(failed);
    PyMem_Free(scratch);
    return result;
}

/* The offsets of a sequence of bytes objects (n + 1 of them, from 0) and their concatenation,
 * as two new bytes objects; -1 with an exception if an item is not bytes (numbered from first:
 * a chunk's messages are numbered as in the whole list). */
static int pack_messages(PyObject *msgs, Py_ssize_t first, PyObject **data_out,
                         PyObject **offsets_out) {
    *data_out = *offsets_out = NULL;
    PyObject *seq = PySequence_Fast(msgs, "msgs must be a sequence of bytes");
    if (seq == NULL) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    PyObject *offsets_obj = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)sizeof(int64_t) * (n + 1));
    if (offsets_obj == NULL) goto fail;
    int64_t *offsets = (int64_t *)PyBytes_AS_STRING(offsets_obj);
    offsets[0] = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!PyBytes_Check(items[i])) {
            PyErr_Format(PyExc_TypeError, "message %zd is %.100s, not bytes", first + i,
                         Py_TYPE(items[i])->tp_name);
            goto fail;
        }
        offsets[i + 1] = offsets[i] + PyBytes_GET_SIZE(items[i]);
    }
    PyObject *data_obj = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)offsets[n]);
    if (data_obj == NULL) goto fail;
    char *data = PyBytes_AS_STRING(data_obj);
    for (Py_ssize_t i = 0; i < n; i++)
        memcpy(data + offsets[i], PyBytes_AS_STRING(items[i]), (size_t)(offsets[i + 1] - offsets[i]));
    Py_DECREF(seq);
    *data_out = data_obj;
    *offsets_out = offsets_obj;
    return 0;
fail:
    Py_XDECREF(offsets_obj);
    Py_DECREF(seq);
    return -1;
}

static PyObject *py_hash_to_curve_many(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
    static char *keywords[] = {"", "", "ifma", NULL};
    PyObject *msgs, *data, *offsets;
    Py_buffer dst;
    int ifma = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "Oy*|p", keywords, &msgs, &dst, &ifma))
        return NULL;
    PyObject *result = NULL;
    /* Packed first, so the computation can run without the GIL. */
    if (pack_messages(msgs, 0, &data, &offsets) == 0) {
        Py_ssize_t n = PyBytes_GET_SIZE(offsets) / (Py_ssize_t)sizeof(int64_t) - 1;
        result = hash_packed((const uint8_t *)PyBytes_AS_STRING(data),
                             (const Py_ssize_t *)PyBytes_AS_STRING(offsets), n, &dst, ifma);
        Py_DECREF(data);
        Py_DECREF(offsets);
    }
    PyBuffer_Release(&dst);
    return result;
}

PyDoc_STRVAR(pack_doc,
"pack(msgs, first=0, /) -> (bytes, bytes)\n\n"
"The messages concatenated, and their n + 1 offsets into that (native int64, from 0): message i\n"
"is data[offsets[i]:offsets[i + 1]]. Two objects pickle as fast as a copy; a million small\n"
"bytes objects do not. A message that is not bytes is a TypeError naming it as first + i.");

static PyObject *py_pack(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *msgs, *data, *offsets;
    Py_ssize_t first = 0;
    if (!PyArg_ParseTuple(args, "O|n", &msgs, &first)) return NULL;
    if (pack_messages(msgs, first, &data, &offsets) < 0) return NULL;
    PyObject *result = PyTuple_Pack(2, data, offsets);
    Py_DECREF(data);
    Py_DECREF(offsets);
    return result;
}

PyDoc_STRVAR(hash_to_curve_packed_doc,
"hash_to_curve_packed(data, offsets, dst_prime, /, ifma=True) -> (bytes, list[int])\n\n"
"hash_to_curve_many of messages as pack returns them. ValueError if the offsets are not n + 1\n"
"native int64 values from 0, never decreasing, ending at len(data).");

static PyObject *py_hash_to_curve_packed(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
    static char *keywords[] = {"", "", "", "ifma", NULL};
    PyObject *data, *offsets; /* bytes, which no other thread can change while the GIL is off */
    Py_buffer dst;
    int ifma = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "SSy*|p", keywords, &data, &offsets, &dst,
                                     &ifma))
        return NULL;
    PyObject *result = NULL;
    const int64_t *at = (const int64_t *)PyBytes_AS_STRING(offsets);
    Py_ssize_t size = PyBytes_GET_SIZE(offsets);
    Py_ssize_t n = size / (Py_ssize_t)sizeof(int64_t) - 1;
    if (size % (Py_ssize_t)sizeof(int64_t) != 0 || n < 0 || at[0] != 0 ||
        at[n] != (int64_t)PyBytes_GET_SIZE(data)) {
        PyErr_SetString(PyExc_ValueError,
                        "offsets must be n + 1 int64 values from 0 to the data's length");
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (at[i + 1] < at[i]) {
            PyErr_Format(PyExc_ValueError, "offset %zd is below offset %zd", i + 1, i);
            goto done;
        }
    }
    result = hash_packed((const uint8_t *)PyBytes_AS_STRING(data), (const Py_ssize_t *)at, n,
                         &dst, ifma);
done:
    PyBuffer_Release(&dst);
    return result;
}

static PyMethodDef methods[] = {
    {"hash_to_curve_many", (PyCFunction)(void (*)(void))py_hash_to_curve_many,
     METH_VARARGS | METH_KEYWORDS, hash_to_curve_many_doc},
    {"hash_to_curve_packed", (PyCFunction)(void (*)(void))py_hash_to_curve_packed,
     METH_VARARGS | METH_KEYWORDS, hash_to_curve_packed_doc},
    {"pack", py_pack, METH_VARARGS, pack_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_h2c25519",
    "RFC 9380 curve25519_XMD:SHA-512_ELL2_RO_ in bulk (see h2c_curve25519.hash_to_curve_many).",
    -1, methods, NULL, NULL, NULL, NULL,
};

#if CLEANROOM_HAVE_IFMA
/* The IFMA path must give the portable path's bytes: checked once at import on nine messages
 * of different lengths (a full group and a short one); a difference turns the IFMA path off. */
static int ifma_agrees(void) {
    enum { N = 9 };
    static const uint8_t dst_prime[] = "CLEANROOM-SELF-TEST\x13";
    uint8_t data[N * 40], out_ifma[32 * N], out_portable[32 * N];
    Py_ssize_t offsets[N + 1];
    size_t failed[N];
    offsets[0] = 0;
    for (int i = 0; i < N; i++) offsets[i + 1] = offsets[i] + 4 * i;
    for (size_t i = 0; i < sizeof data; i++) data[i] = (uint8_t)(i * 7 + 1);
    size_t per_lane = scratch_size(4 * (N - 1), sizeof dst_prime - 1);
    uint8_t *scratch = PyMem_RawMalloc(GROUP * per_lane);
    if (scratch == NULL) return 0;
    hash_many(data, offsets, N, dst_prime, sizeof dst_prime - 1, out_ifma, failed, 1, scratch,
              per_lane);
    hash_many(data, offsets, N, dst_prime, sizeof dst_prime - 1, out_portable, failed, 0, scratch,
              per_lane);
    PyMem_RawFree(scratch);
    return memcmp(out_ifma, out_portable, sizeof out_ifma) == 0;
}
#endif

PyMODINIT_FUNC PyInit__h2c25519(void) {
#if CLEANROOM_HAVE_IFMA
    have_ifma = cpu_has_ifma() && ifma_agrees();
#endif
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddIntConstant(m, "IFMA", have_ifma) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
