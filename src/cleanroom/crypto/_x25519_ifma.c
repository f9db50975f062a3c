/*
 * X25519 (RFC 7748) eight lanes at a time on AVX-512 IFMA, over whole chunks of 32-byte
 * u-coordinates with one key, the GIL released and no per-element Python.
 *
 * Why: OpenSSL computes one Montgomery ladder at a time with 64-bit scalar arithmetic; on a CPU
 * with AVX-512 IFMA eight ladders run side by side in the 52-bit lanes of _fe25519_ifma.h.
 *
 * Why not Intel's crypto_mb (mbx_x25519_mb8 in ipp-crypto-static 2026.2.0), which does the same:
 * it returns wrong results for valid curve points whose 52-bit limbs are all ones or nearly
 * (u = p - d, 2^254 - 9 = 1/2, -1/d and the like). Of 4,531 such u (tests/unit/
 * test_x25519_backend.py), it got 2,001 wrong, 1,018 of them valid elements, against OpenSSL
 * and the RFC's ladder in plain integers; for some the result is wrong only under some keys, a
 * fault that depends on the secret scalar and that the other party can trigger with an element
 * that passes every validation. So its lanes cannot be trusted with received elements. The
 * ladder here keeps every limb that reaches a multiplier below 2^52 by construction (see
 * _fe25519_ifma.h), and the tests check it against OpenSSL on exactly those inputs, on
 * arbitrary ones (Hypothesis) and on 10^5 random pairs. scripts/check_crypto_mb.py repeats the
 * check on crypto_mb for any release, for when Intel fixes it.
 *
 * Constant time: the ladder is the RFC's, 255 steps for every key, the swap done by masks on
 * all lanes alike (the key is the same in every lane), no branch or memory index that depends
 * on the key; the field arithmetic is straight-line code.
 *
 * Keys: the caller's raw scalar is copied once, clamped as RFC 7748 says (as OpenSSL does), and
 * that copy and the ladder's state are wiped before returning; nothing is logged. Padding: a
 * chunk whose length is not a multiple of 8 ends in a group whose spare lanes hold the base
 * point u = 9 (their results, the key's public point, are wiped): how many lanes are padding
 * depends only on the chunk's length. An all-zero result (a small-order u; received elements
 * are validated before this, so valid input never gives one) raises the same ValueError as
 * OpenSSL's X25519 through cryptography.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

#include "_fe25519.h"
#include "_fe25519_ifma.h"

#define LANES 8
#define SIZE 32

/* The message OpenSSL's X25519 gives, through cryptography, when a result is all zero. */
static const char ZERO_RESULT[] = "Error computing shared key.";

/* memset, then a barrier that makes the compiler assume the zeros are read: not optimized away. */
static void wipe(void *p, size_t n) {
    memset(p, 0, n);
    __asm__ __volatile__("" : : "r"(p) : "memory");
}

#if CLEANROOM_HAVE_IFMA

/* out[j] = X25519(k, us[j]) for the eight lanes; k is already clamped. Returns a bit per lane
 * whose result is all zero. */
IFMA_TARGET static unsigned ladder8(uint8_t out[LANES][SIZE], const uint8_t k[SIZE],
                                    const uint8_t *const us[LANES]) {
    fe xs[LANES];
    for (int j = 0; j < LANES; j++) {
        uint8_t u[SIZE];
        memcpy(u, us[j], SIZE);
        u[31] &= 0x7f; /* RFC 7748: mask the top bit */
        fe_from_bytes(xs[j], u);
    }
    fe8 x1, x2, z2, x3, z3, a, aa, b, bb, e, c, d, da, cb, t;
    fe8_load(&x1, xs);
    fe8_set_small(&x2, 1);
    fe8_set_small(&z2, 0);
    x3 = x1;
    fe8_set_small(&z3, 1);
    uint64_t swap = 0;
    for (int bit = 254; bit >= 0; bit--) {
        uint64_t k_t = (k[bit >> 3] >> (bit & 7)) & 1;
        swap ^= k_t;
        __m512i mask = _mm512_set1_epi64(-(long long)swap);
        fe8_cswap(&x2, &x3, mask);
        fe8_cswap(&z2, &z3, mask);
        swap = k_t;
        fe8_add(&a, &x2, &z2);
        fe8_sq(&aa, &a);
        fe8_sub(&b, &x2, &z2);
        fe8_sq(&bb, &b);
        fe8_sub(&e, &aa, &bb);
        fe8_add(&c, &x3, &z3);
        fe8_sub(&d, &x3, &z3);
        fe8_mul(&da, &d, &a);
        fe8_mul(&cb, &c, &b);
        fe8_add(&t, &da, &cb);
        fe8_sq(&x3, &t);
        fe8_sub(&t, &da, &cb);
        fe8_sq(&t, &t);
        fe8_mul(&z3, &x1, &t);
        fe8_mul(&x2, &aa, &bb);
        fe8_mul_small(&t, &e, 121665);
        fe8_add(&t, &aa, &t);
        fe8_mul(&z2, &e, &t);
    }
    __m512i mask = _mm512_set1_epi64(-(long long)swap);
    fe8_cswap(&x2, &x3, mask);
    fe8_cswap(&z2, &z3, mask);
    fe8_invert(&t, &z2);
    fe8_mul(&x2, &x2, &t);
    fe results[LANES];
    fe8_store(results, &x2);
    unsigned zero = 0;
    for (int j = 0; j < LANES; j++) {
        fe_to_bytes(out[j], results[j]);
        uint8_t any = 0;
        for (int i = 0; i < SIZE; i++) any |= out[j][i];
        zero |= (unsigned)(any == 0) << j;
    }
    /* the ladder's state depends on the key */
    wipe(&x2, sizeof x2);
    wipe(&z2, sizeof z2);
    wipe(&x3, sizeof x3);
    wipe(&z3, sizeof z3);
    wipe(&a, sizeof a);
    wipe(&b, sizeof b);
    wipe(&aa, sizeof aa);
    wipe(&bb, sizeof bb);
    wipe(&e, sizeof e);
    wipe(&c, sizeof c);
    wipe(&d, sizeof d);
    wipe(&da, sizeof da);
    wipe(&cb, sizeof cb);
    wipe(&t, sizeof t);
    wipe(results, sizeof results);
    wipe(&swap, sizeof swap);
    return zero;
}

static const uint8_t BASE_POINT[SIZE] = {9};

/* X25519(scalar, u) for n rows of 32 bytes; returns nonzero if any result is all zero. */
static unsigned exchange_rows(const uint8_t *scalar, const uint8_t *rows, size_t n, uint8_t *out) {
    uint8_t k[SIZE];
    memcpy(k, scalar, SIZE);
    k[0] &= 248;
    k[31] &= 127;
    k[31] |= 64;
    unsigned zero = 0;
    const uint8_t *us[LANES];
    size_t full = n - n % LANES;
    for (size_t start = 0; start < full; start += LANES) {
        for (int j = 0; j < LANES; j++) us[j] = rows + SIZE * (start + (size_t)j);
        zero |= ladder8((uint8_t(*)[SIZE])(out + SIZE * start), k, us);
    }
    size_t rest = n - full;
    if (rest) {
        uint8_t scratch[LANES][SIZE];
        for (size_t j = 0; j < LANES; j++) us[j] = j < rest ? rows + SIZE * (full + j) : BASE_POINT;
        zero |= ladder8(scratch, k, us) & ((1u << rest) - 1);
        memcpy(out + SIZE * full, scratch, SIZE * rest);
        wipe(scratch, sizeof scratch);
    }
    wipe(k, sizeof k);
    return zero;
}

/* RFC 7748 section 6.1: Alice's private key and Bob's public key give the shared secret. */
static const uint8_t KAT_SCALAR[SIZE] = {
    0x77, 0x07, 0x6d, 0x0a, 0x73, 0x18, 0xa5, 0x7d, 0x3c, 0x16, 0xc1, 0x72, 0x51, 0xb2, 0x66, 0x45,
    0xdf, 0x4c, 0x2f, 0x87, 0xeb, 0xc0, 0x99, 0x2a, 0xb1, 0x77, 0xfb, 0xa5, 0x1d, 0xb9, 0x2c, 0x2a};
static const uint8_t KAT_POINT[SIZE] = {
    0xde, 0x9e, 0xdb, 0x7d, 0x7b, 0x7d, 0xc1, 0xb4, 0xd3, 0x5b, 0x61, 0xc2, 0xec, 0xe4, 0x35, 0x37,
    0x3f, 0x83, 0x43, 0xc8, 0x5b, 0x78, 0x67, 0x4d, 0xad, 0xfc, 0x7e, 0x14, 0x6f, 0x88, 0x2b, 0x4f};
static const uint8_t KAT_SHARED[SIZE] = {
    0x4a, 0x5d, 0x9d, 0x5b, 0xa4, 0xce, 0x2d, 0xe1, 0x72, 0x8e, 0x3b, 0xf4, 0x80, 0x35, 0x0f, 0x25,
    0xe0, 0x7e, 0x21, 0xc9, 0x47, 0xd1, 0x9e, 0x33, 0x76, 0xf0, 0x9b, 0x3c, 0x1e, 0x16, 0x17, 0x42};

#endif /* CLEANROOM_HAVE_IFMA */

/* Set at import: NULL if the ladder runs here, else why not. */
static const char *problem = NULL;

static void probe_once(void) {
#if CLEANROOM_HAVE_IFMA
    if (!cpu_has_ifma()) {
        problem = "this CPU has no AVX-512 IFMA (or the OS does not enable it)";
        return;
    }
    /* nine rows: a full group and a padded one */
    uint8_t rows[(LANES + 1) * SIZE], out[(LANES + 1) * SIZE];
    for (int j = 0; j <= LANES; j++) memcpy(rows + SIZE * j, KAT_POINT, SIZE);
    if (exchange_rows(KAT_SCALAR, rows, LANES + 1, out) != 0) {
        problem = "the 8-lane X25519 self-test gave an all-zero result";
        return;
    }
    for (int j = 0; j <= LANES; j++)
        if (memcmp(out + SIZE * j, KAT_SHARED, SIZE) != 0) {
            problem = "the 8-lane X25519 self-test (RFC 7748 section 6.1) gave a wrong answer";
            return;
        }
#else
    problem = "AVX-512 IFMA code is built only for x86-64 with GCC or Clang";
#endif
}

PyDoc_STRVAR(probe_doc,
"probe() -> str | None\n\n"
"None if the 8-lane X25519 runs here (AVX-512 F and IFMA present and enabled by the OS, and\n"
"RFC 7748's Diffie-Hellman known answer comes out of every lane); otherwise why not.");

static PyObject *py_probe(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    if (problem == NULL) Py_RETURN_NONE;
    return PyUnicode_FromString(problem);
}

PyDoc_STRVAR(exchange_doc,
"exchange(scalar, rows, /) -> bytes\n\n"
"X25519(scalar, u) (RFC 7748) for every 32-byte u-coordinate of rows (any contiguous buffer of\n"
"a whole number of rows, e.g. bytes or a C-contiguous uint8 array), as concatenated 32-byte\n"
"results. scalar is the raw 32-byte private scalar; it is clamped as RFC 7748 says. Raises\n"
"ValueError if any result is all zero (a small-order u), as OpenSSL's X25519 does, and\n"
"RuntimeError where probe() is not None.");

static PyObject *py_exchange(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer scalar, rows;
    if (!PyArg_ParseTuple(args, "y*y*", &scalar, &rows)) return NULL;
    PyObject *out = NULL;
    if (problem != NULL) {
        PyErr_Format(PyExc_RuntimeError, "the 8-lane X25519 cannot run here: %s", problem);
        goto done;
    }
    if (scalar.len != SIZE) {
        PyErr_Format(PyExc_ValueError, "the scalar must be %d bytes, got %zd", SIZE, scalar.len);
        goto done;
    }
    if (rows.len % SIZE != 0) {
        PyErr_SetString(PyExc_ValueError, "rows must be a whole number of 32-byte u-coordinates");
        goto done;
    }
    out = PyBytes_FromStringAndSize(NULL, rows.len);
    if (out == NULL) goto done;
#if CLEANROOM_HAVE_IFMA
    unsigned zero;
    Py_BEGIN_ALLOW_THREADS
    zero = exchange_rows(scalar.buf, rows.buf, (size_t)(rows.len / SIZE),
                         (uint8_t *)PyBytes_AS_STRING(out));
    Py_END_ALLOW_THREADS
    if (zero) {
        PyErr_SetString(PyExc_ValueError, ZERO_RESULT);
        Py_CLEAR(out);
    }
#endif
done:
    PyBuffer_Release(&scalar);
    PyBuffer_Release(&rows);
    return out;
}

static PyMethodDef methods[] = {
    {"probe", py_probe, METH_NOARGS, probe_doc},
    {"exchange", py_exchange, METH_VARARGS, exchange_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_x25519_ifma",
    "X25519 eight lanes at a time on AVX-512 IFMA (RFC 7748's ladder on 52-bit lanes).", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__x25519_ifma(void) {
    probe_once();
    (void)wipe;
    return PyModule_Create(&module);
}
