/*
 * RFC 9380 curve25519_XMD:SHA-512_ELL2_RO_ in bulk: the hot loop of hash_to_curve_many.
 *
 * Why C: in Python (gmpy2) each message costs two 255-bit modular exponentiations plus about a
 * hundred interpreter-level big-integer operations, together more than one X25519 exchange. Here
 * the same straight-line formulas (h2c_curve25519.py's bulk loop, step for step) run on radix-2^51
 * field elements, the three SHA-512 calls of expand_message_xmd run without allocations, and the
 * final inversions of a block are shared (Montgomery's trick), so a message costs about the two
 * square-root exponentiations and nothing else.
 *
 * What stays in Python: the readable, step-by-step RFC implementation (the reference the
 * known-answer tests check intermediate values against), the DST handling (DST_prime is passed in)
 * and the rare exceptional messages (about 2^-250 each): for those this module reports the
 * index and the caller uses the affine path.
 *
 * Nothing here is secret: messages are hashed identifiers, and the outputs are public points.
 * The code is therefore not constant-time (branches on the square-root case), like the Python
 * path it replaces.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

#include "_fe25519.h"

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

/* Q = map_to_curve(u) as (n / d, y): Appendix G.2.1 with y affine and its sign fixed. */
static void map_fraction(const constants *k, const fe u, fe n, fe d, fe y) {
    fe tv1, xd2, gxd, gx1, g2, tv3, t, tmp, tmp2;
    fe_sq(tv1, u);
    fe_add(tv1, tv1, tv1);             /* 2 u^2 */
    fe one;
    fe_set_small(one, 1);
    fe_add(d, tv1, one);               /* xd = 1 + 2 u^2 */
    fe_sq(xd2, d);
    fe_mul(gxd, xd2, d);               /* xd^3 */
    fe_mul(tmp, k->j3, tv1);
    fe_mul_small(tmp2, xd2, J);
    fe_sub(gx1, tmp, tmp2);            /* J^3 2u^2 - J xd^2 = x1n^3 + J x1n^2 xd + x1n xd^2 */
    fe_sq(g2, gxd);
    fe_mul(tv3, g2, gxd);
    fe_mul(tv3, tv3, gx1);             /* gx1 gxd^3 */
    fe_sq(tmp, g2);
    fe_mul(tmp, tmp, tv3);             /* gx1 gxd^7 */
    fe_pow22523(tmp, tmp);
    fe_mul(y, tmp, tv3);               /* candidate sqrt(gx1 / gxd), up to a 4th root of 1 */
    fe_sq(t, y);
    fe_mul(t, t, gxd);
    if (fe_equal(t, gx1)) {
        fe_copy(n, k->minus_j);
        if (!fe_is_odd(y)) fe_neg(y, y);
        return;
    }
    fe_add(tmp, t, gx1);
    if (fe_is_zero(tmp)) {
        fe_copy(n, k->minus_j);
        fe_mul(y, y, k->c3);
        if (!fe_is_odd(y)) fe_neg(y, y);
        return;
    }
    fe_mul(n, k->minus_j, tv1);        /* x2n = -J 2u^2 */
    fe_mul(tmp, gx1, k->x2_check);
    fe_mul(y, y, u);
    fe_mul(y, y, fe_equal(t, tmp) ? k->c2 : k->c2c3);
    if (fe_is_odd(y)) fe_neg(y, y);
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

/* R = Q0 + Q1, then P = 8 R by x-only doublings, as X / Z (Z = 0 only in exceptional cases). */
static void hash_one(const constants *k, const sha512_ctx *after_z_pad, const uint8_t *msg,
                     size_t msg_len, const uint8_t *dst_prime, size_t dst_prime_len, fe x,
                     fe z) {
    fe u0, u1, q0n, q0d, q0y, q1n, q1d, q1y;
    hash_to_field2(after_z_pad, msg, msg_len, dst_prime, dst_prime_len, u0, u1);
    map_fraction(k, u0, q0n, q0d, q0y);
    map_fraction(k, u1, q1n, q1d, q1y);
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

/* Messages per shared inversion: big enough that the one inversion is noise, small enough that
 * the block's state fits in L1/L2. */
#define BLOCK 128

/* Hash n messages; out gets 32 bytes per message. Indices whose Z was 0 (the exceptional cases
 * the affine path handles) are written to failed[], their count returned. */
static size_t hash_many(const uint8_t *data, const Py_ssize_t *offsets, size_t n,
                        const uint8_t *dst_prime, size_t dst_prime_len, uint8_t *out,
                        size_t *failed) {
    constants k;
    constants_init(&k);
    sha512_ctx after_z_pad;
    uint8_t zeros[128];
    memset(zeros, 0, sizeof zeros);
    sha512_init(&after_z_pad);
    sha512_update(&after_z_pad, zeros, 128);
    size_t n_failed = 0;
    fe xs[BLOCK], zs[BLOCK], prefix[BLOCK];
    for (size_t start = 0; start < n; start += BLOCK) {
        size_t count = n - start < BLOCK ? n - start : BLOCK;
        for (size_t i = 0; i < count; i++) {
            size_t idx = start + i;
            hash_one(&k, &after_z_pad, data + offsets[idx], (size_t)(offsets[idx + 1] - offsets[idx]),
                     dst_prime, dst_prime_len, xs[i], zs[i]);
            if (fe_is_zero(zs[i])) {
                failed[n_failed++] = idx;
                fe_set_small(zs[i], 1);
                fe_set_small(xs[i], 0);
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
"hash_to_curve_many(msgs, dst_prime) -> (bytes, list[int])\n\n"
"Hash each message to curve25519 (RFC 9380 curve25519_XMD:SHA-512_ELL2_RO_). Returns the\n"
"concatenated 32-byte u-coordinates and the indices of exceptional messages (probability about\n"
"2^-250 each), whose 32 bytes are left zero for the caller to fill in by the affine path.\n"
"dst_prime is DST || I2OSP(len(DST), 1), with long DSTs already hashed (RFC 9380 5.3.3).");

static PyObject *py_hash_to_curve_many(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *msgs;
    Py_buffer dst;
    if (!PyArg_ParseTuple(args, "Oy*", &msgs, &dst)) return NULL;
    PyObject *result = NULL, *out = NULL, *failed_list = NULL;
    Py_ssize_t *offsets = NULL;
    uint8_t *data = NULL;
    size_t *failed = NULL;
    PyObject *seq = PySequence_Fast(msgs, "msgs must be a sequence of bytes");
    if (seq == NULL) goto done;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    /* Copy the messages out so the computation can run without the GIL. */
    offsets = PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)(n + 1));
    if (offsets == NULL) { PyErr_NoMemory(); goto done; }
    offsets[0] = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!PyBytes_Check(items[i])) {
            PyErr_Format(PyExc_TypeError, "message %zd is %.100s, not bytes", i,
                         Py_TYPE(items[i])->tp_name);
            goto done;
        }
        offsets[i + 1] = offsets[i] + PyBytes_GET_SIZE(items[i]);
    }
    data = PyMem_Malloc((size_t)offsets[n] + 1);
    failed = PyMem_Malloc(sizeof(size_t) * (size_t)(n + 1));
    if (data == NULL || failed == NULL) { PyErr_NoMemory(); goto done; }
    for (Py_ssize_t i = 0; i < n; i++)
        memcpy(data + offsets[i], PyBytes_AS_STRING(items[i]), (size_t)(offsets[i + 1] - offsets[i]));
    out = PyBytes_FromStringAndSize(NULL, 32 * n);
    if (out == NULL) goto done;
    uint8_t *out_bytes = (uint8_t *)PyBytes_AS_STRING(out);
    size_t n_failed;
    Py_BEGIN_ALLOW_THREADS
    n_failed = hash_many(data, offsets, (size_t)n, dst.buf, (size_t)dst.len, out_bytes, failed);
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
    Py_XDECREF(seq);
    PyMem_Free(offsets);
    PyMem_Free(data);
    PyMem_Free(failed);
    PyBuffer_Release(&dst);
    return result;
}

static PyMethodDef methods[] = {
    {"hash_to_curve_many", py_hash_to_curve_many, METH_VARARGS, hash_to_curve_many_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_h2c25519",
    "RFC 9380 curve25519_XMD:SHA-512_ELL2_RO_ in bulk (see h2c_curve25519.hash_to_curve_many).",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__h2c25519(void) { return PyModule_Create(&module); }
