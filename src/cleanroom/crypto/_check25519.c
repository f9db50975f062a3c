/*
 * Curve membership of many X25519 u-coordinates at once: the random subset test.
 *
 * A u-coordinate is on curve25519 (not its twist) iff y = u^3 + A u^2 + u is a square mod p,
 * that is iff its Legendre symbol (y | p) is +1. One Legendre symbol (GMP) costs more than all
 * the rest of an element's validation, and received elements are validated by the
 * million per session. The symbol is multiplicative, so instead of n symbols the receiver
 * computes TESTS = 64 products, each over a random subset of the chunk's y (chosen by fresh
 * random bits drawn after the chunk arrived), and checks that each product is a square:
 *
 * - if every u is on the curve, every product is a square: valid chunks always pass;
 * - if some y_j is a non-square, each product's symbol is -1 exactly when y_j is in its subset
 *   (the rest of the subset is independent of that bit), so with probability 1/2 per product,
 *   independently: such a chunk passes with probability 2^-64.
 *
 * This is the random subset test of Bellare, Garay and Rabin ("Fast batch verification for
 * modular exponentiation and digital signatures", EUROCRYPT 1998). The Legendre symbols of the
 * 64 products are computed by the caller (gmpy2). Canonical encoding and small order are checked
 * exactly here too, in the same call, so that a valid chunk never has to be cut into one
 * Python object per row: the caller passes its list of small-order encodings (its one
 * definition of them) and, on any failure, checks row by row to name the bad row and why.
 *
 * The products are built four elements at a time: the 16 subset products of a group of four,
 * then each test multiplies in the one its 4 random bits select, about 18 multiplications per
 * element instead of the 32 of one bit per element and test. Two paths, chosen at run time, give
 * the same products (tested on both, and compared once at import: a difference turns the IFMA
 * path off):
 * - AVX-512 IFMA (where the CPU and OS have it): the 64 tests are eight vectors of eight lanes
 *   (_fe25519_ifma.h), so a group costs eight 8-lane multiplications where the scalar path does
 *   up to 64; each lane picks its subset product with a permute indexed by its test's nibble.
 * - portable C: the same products one test at a time on radix-2^51 scalars (_fe25519.h).
 *
 * Nothing here is secret: the inputs are public points, the random bits only need to be
 * unpredictable to the sender until it has sent the chunk. So the code branches on the row
 * count and indexes by the random bits, neither of which a constant-time discipline would allow
 * for a key.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

#include "_fe25519.h"
#include "_fe25519_ifma.h"

#define TESTS 64
#define GROUP 4
/* Random bytes per group: TESTS subsets of the group, 4 bits each. */
#define MASK_BYTES_PER_GROUP (TESTS * GROUP / 8)

/* y = u^3 + A u^2 + u = u (u (u + A) + 1), for u given by its limbs. */
static void curve_rhs(fe y, const fe u) {
    fe a, t;
    fe_set_small(a, 486662);
    fe_add(t, u, a);
    fe_mul(t, t, u);
    fe_set_small(a, 1);
    fe_add(t, t, a);
    fe_mul(y, t, u);
}

static void subset_products_scalar(const uint8_t *rows, Py_ssize_t n, const uint8_t *masks,
                            fe products[TESTS]) {
    for (int t = 0; t < TESTS; t++) fe_set_small(products[t], 1);
    for (Py_ssize_t first = 0; first < n; first += GROUP) {
        /* subsets[s] = product of the group's y_e for the bits e set in s */
        fe subsets[1 << GROUP];
        fe_set_small(subsets[0], 1);
        for (int e = 0; e < GROUP; e++) {
            int bit = 1 << e;
            if (first + e < n) {
                fe u;
                fe_from_bytes(u, rows + 32 * (first + e));
                curve_rhs(subsets[bit], u);
            } else {
                fe_set_small(subsets[bit], 1); /* the last group may be short */
            }
            for (int s = 1; s < bit; s++) fe_mul(subsets[bit | s], subsets[s], subsets[bit]);
        }
        const uint8_t *group_masks = masks + (first / GROUP) * MASK_BYTES_PER_GROUP;
        for (int t = 0; t < TESTS; t++) {
            int s = (group_masks[t / 2] >> (4 * (t % 2))) & 0xf;
            if (s != 0) fe_mul(products[t], products[t], subsets[s]);
        }
    }
}

#if CLEANROOM_HAVE_IFMA
/* Eight consecutive 32-byte rows as limbs, lane j = row j, as fe_from_bytes does one row. */
IFMA_INLINE void fe8_from_rows(fe8 *h, const uint8_t *rows) {
    const __m512i index = _mm512_setr_epi64(0, 4, 8, 12, 16, 20, 24, 28); /* in 8-byte words */
    const __m512i mask = _mm512_set1_epi64((long long)MASK51);
    __m512i w[4];
    for (int i = 0; i < 4; i++)
        w[i] = _mm512_i64gather_epi64(index, (const void *)(rows + 8 * i), 8);
    h->v[0] = w[0];
    h->v[1] = _mm512_or_si512(_mm512_srli_epi64(w[0], 51), _mm512_slli_epi64(w[1], 13));
    h->v[2] = _mm512_or_si512(_mm512_srli_epi64(w[1], 38), _mm512_slli_epi64(w[2], 26));
    h->v[3] = _mm512_or_si512(_mm512_srli_epi64(w[2], 25), _mm512_slli_epi64(w[3], 39));
    h->v[4] = _mm512_srli_epi64(w[3], 12);
    for (int i = 0; i < 5; i++) h->v[i] = _mm512_and_si512(h->v[i], mask);
}

IFMA_INLINE void curve_rhs8(fe8 *y, const fe8 *u) {
    fe8 a, t;
    fe8_set_small(&a, 486662);
    fe8_add(&t, u, &a);
    fe8_mul(&t, &t, u);
    fe8_set_small(&a, 1);
    fe8_add(&t, &t, &a);
    fe8_mul(y, &t, u);
}

/* subset_products_scalar's products, eight rows (two groups) at a time. Lane t of acc[k] is test
 * 8k + t. For each group, the 16 subset products sit in two vectors, lane s of lo = subsets[s]
 * and lane s of hi = subsets[8 + s] (three multiplications: 1 or y0 by lane, times 1 or y1,
 * times 1 or y2, then times y3), and each test's 4-bit nibble picks its subset from the pair by
 * one permute per limb (vpermt2q reads the index's low 3 bits as the lane and bit 3 as lo/hi).
 * The indices depend on the masks and the branches on n, neither secret (see the header). */
IFMA_TARGET static void subset_products_ifma(const uint8_t *rows, Py_ssize_t n,
                                             const uint8_t *masks, fe products[TESTS]) {
    fe8 acc[TESTS / 8];
    for (int k = 0; k < TESTS / 8; k++) fe8_set_small(&acc[k], 1);
    const __m512i shifts = _mm512_setr_epi64(0, 4, 8, 12, 16, 20, 24, 28);
    const __m512i nibble = _mm512_set1_epi64(0xf);
    fe8 one;
    fe8_set_small(&one, 1);
    uint8_t tail[8 * 32];
    for (Py_ssize_t first = 0; first < n; first += 2 * GROUP) {
        Py_ssize_t left = n - first;
        const uint8_t *block = rows + 32 * first;
        if (left < 2 * GROUP) { /* the last block may be short: its missing rows count as 1 */
            memset(tail, 0, sizeof tail);
            memcpy(tail, block, (size_t)(32 * left));
            block = tail;
        }
        fe8 u, y;
        fe8_from_rows(&u, block);
        curve_rhs8(&y, &u);
        if (left < 2 * GROUP) {
            __mmask8 missing = (__mmask8)(0xff << left);
            for (int i = 0; i < 5; i++)
                y.v[i] = _mm512_mask_mov_epi64(y.v[i], missing, one.v[i]);
        }
        for (int h = 0; h < 2 && GROUP * h < left; h++) {
            fe8 lo, hi, factor;
            /* lane j of e_i = the lane of row i of group h in y */
            const __m512i e0 = _mm512_set1_epi64(GROUP * h), e1 = _mm512_set1_epi64(GROUP * h + 1),
                          e2 = _mm512_set1_epi64(GROUP * h + 2),
                          e3 = _mm512_set1_epi64(GROUP * h + 3);
            for (int i = 0; i < 5; i++) {
                lo.v[i] = _mm512_mask_permutexvar_epi64(one.v[i], 0xaa, e0, y.v[i]);
                factor.v[i] = _mm512_mask_permutexvar_epi64(one.v[i], 0xcc, e1, y.v[i]);
            }
            fe8_mul(&lo, &lo, &factor);
            for (int i = 0; i < 5; i++)
                factor.v[i] = _mm512_mask_permutexvar_epi64(one.v[i], 0xf0, e2, y.v[i]);
            fe8_mul(&lo, &lo, &factor);
            for (int i = 0; i < 5; i++) factor.v[i] = _mm512_permutexvar_epi64(e3, y.v[i]);
            fe8_mul(&hi, &lo, &factor);
            const uint8_t *group_masks = masks + (first / GROUP + h) * MASK_BYTES_PER_GROUP;
            for (int k = 0; k < TESTS / 8; k++) {
                uint32_t word; /* the nibbles of tests 8k .. 8k + 7 */
                memcpy(&word, group_masks + 4 * k, 4);
                __m512i s = _mm512_srlv_epi64(_mm512_set1_epi64(word), shifts);
                s = _mm512_and_si512(s, nibble);
                fe8 chosen;
                for (int i = 0; i < 5; i++)
                    chosen.v[i] = _mm512_permutex2var_epi64(lo.v[i], s, hi.v[i]);
                fe8_mul(&acc[k], &acc[k], &chosen);
            }
        }
    }
    for (int k = 0; k < TESTS / 8; k++) fe8_store(&products[8 * k], &acc[k]);
}
#endif

/* Set once at import: this CPU and OS can run the IFMA code, and it agrees with the scalar code. */
static int have_ifma = 0;

static void subset_products(const uint8_t *rows, Py_ssize_t n, const uint8_t *masks,
                            fe products[TESTS], int use_ifma) {
#if CLEANROOM_HAVE_IFMA
    if (use_ifma) {
        subset_products_ifma(rows, n, masks, products);
        return;
    }
#else
    (void)use_ifma;
#endif
    subset_products_scalar(rows, n, masks, products);
}

/* Index of the first row whose encoding is not canonical (top bit set, or not below p), or -1. */
static Py_ssize_t first_noncanonical(const uint8_t *rows, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) {
        const uint8_t *u = rows + 32 * i;
        if (u[31] & 0x80) return i;
        /* below 2^255 and at least p = 2^255 - 19: 0x7f, then 30 bytes 0xff, then >= 0xed */
        if (u[31] == 0x7f && u[0] >= 0xed) {
            int all_ff = 1;
            for (int j = 1; j < 31; j++) all_ff &= (u[j] == 0xff);
            if (all_ff) return i;
        }
    }
    return -1;
}

/* Index of the first row equal to one of the k 32-byte encodings in listed, or -1. The first
 * eight bytes are compared before the rest, so a row costs k word comparisons. */
static Py_ssize_t first_listed(const uint8_t *rows, Py_ssize_t n, const uint8_t *listed,
                               Py_ssize_t k) {
    for (Py_ssize_t i = 0; i < n; i++) {
        const uint8_t *u = rows + 32 * i;
        uint64_t head;
        memcpy(&head, u, 8);
        for (Py_ssize_t j = 0; j < k; j++) {
            uint64_t listed_head;
            memcpy(&listed_head, listed + 32 * j, 8);
            if (head == listed_head && memcmp(u, listed + 32 * j, 32) == 0) return i;
        }
    }
    return -1;
}

PyDoc_STRVAR(twist_test_doc,
"twist_test(rows, masks, listed, /, ifma=True) -> tuple[int, int, bytes]\n\n"
"For n 32-byte u-coordinates (rows), MASK_BYTES_PER_GROUP random bytes per GROUP rows (the\n"
"last group may be short; masks) and concatenated 32-byte encodings to look for (listed, the\n"
"caller's small-order points): the index of the first row that is not a canonical encoding\n"
"(or -1), the index of the first row equal to one of listed (or -1), and 64 products of random\n"
"subsets of the rows' y = u^3 + A u^2 + u, as 64 canonical 32-byte little-endian field\n"
"elements. Every row is on the curve iff all 64 products are squares, except with probability\n"
"2^-64 over the masks. The products are only meaningful when the first index is -1.\n"
"They are computed on AVX-512 IFMA where IFMA is true (module constant) and ifma is true, on\n"
"the portable code otherwise: the bytes are the same.");

static PyObject *py_twist_test(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
    static char *keywords[] = {"", "", "", "ifma", NULL};
    Py_buffer rows, masks, listed;
    int ifma = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*y*y*|p", keywords, &rows, &masks, &listed,
                                     &ifma))
        return NULL;
    PyObject *result = NULL;
    if (rows.len % 32 != 0) {
        PyErr_SetString(PyExc_ValueError, "rows must be a whole number of 32-byte encodings");
        goto done;
    }
    if (listed.len % 32 != 0) {
        PyErr_SetString(PyExc_ValueError, "listed must be a whole number of 32-byte encodings");
        goto done;
    }
    Py_ssize_t n = rows.len / 32;
    Py_ssize_t groups = (n + GROUP - 1) / GROUP;
    if (masks.len != groups * MASK_BYTES_PER_GROUP) {
        PyErr_Format(PyExc_ValueError, "masks must be %zd bytes for %zd rows, got %zd",
                     groups * MASK_BYTES_PER_GROUP, n, masks.len);
        goto done;
    }
    PyObject *packed = PyBytes_FromStringAndSize(NULL, 32 * TESTS);
    if (packed == NULL) goto done;
    Py_ssize_t bad, small;
    fe products[TESTS];
    memset(products, 0, sizeof(products));
    Py_BEGIN_ALLOW_THREADS
    bad = first_noncanonical(rows.buf, n);
    small = first_listed(rows.buf, n, listed.buf, listed.len / 32);
    if (bad < 0) subset_products(rows.buf, n, masks.buf, products, ifma && have_ifma);
    Py_END_ALLOW_THREADS
    uint8_t *out = (uint8_t *)PyBytes_AS_STRING(packed);
    for (int t = 0; t < TESTS; t++) fe_to_bytes(out + 32 * t, products[t]);
    result = Py_BuildValue("(nnN)", bad, small, packed);
done:
    PyBuffer_Release(&rows);
    PyBuffer_Release(&masks);
    PyBuffer_Release(&listed);
    return result;
}

static PyMethodDef methods[] = {
    {"twist_test", (PyCFunction)(void (*)(void))py_twist_test, METH_VARARGS | METH_KEYWORDS,
     twist_test_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_check25519",
    "Curve membership of many X25519 u-coordinates at once (the random subset test).", -1,
    methods, NULL, NULL, NULL, NULL,
};

#if CLEANROOM_HAVE_IFMA
/* The IFMA path must give the scalar path's products: compared once at import on 45 rows (full
 * blocks of eight, a short block and a short group); a difference turns the IFMA path off. */
static int ifma_agrees(void) {
    enum { N = 45 };
    uint8_t rows[32 * N], masks[((N + GROUP - 1) / GROUP) * MASK_BYTES_PER_GROUP];
    uint64_t state = 0x9e3779b97f4a7c15ULL;
    for (size_t i = 0; i < sizeof rows; i++) {
        state = state * 6364136223846793005ULL + 1442695040888963407ULL;
        rows[i] = (uint8_t)(state >> 56);
    }
    for (int r = 0; r < N; r++) rows[32 * r + 31] &= 0x7f;
    for (size_t i = 0; i < sizeof masks; i++) masks[i] = (uint8_t)(i * 37 + 11);
    fe with_ifma[TESTS], scalar[TESTS];
    subset_products_ifma(rows, N, masks, with_ifma);
    subset_products_scalar(rows, N, masks, scalar);
    for (int t = 0; t < TESTS; t++) {
        uint8_t a[32], b[32];
        fe_to_bytes(a, with_ifma[t]);
        fe_to_bytes(b, scalar[t]);
        if (memcmp(a, b, 32) != 0) return 0;
    }
    return 1;
}
#endif

PyMODINIT_FUNC PyInit__check25519(void) {
#if CLEANROOM_HAVE_IFMA
    have_ifma = cpu_has_ifma() && ifma_agrees();
#endif
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && (PyModule_AddIntConstant(m, "IFMA", have_ifma) < 0 ||
                      PyModule_AddIntConstant(m, "TESTS", TESTS) < 0 ||
                      PyModule_AddIntConstant(m, "GROUP", GROUP) < 0 ||
                      PyModule_AddIntConstant(m, "MASK_BYTES_PER_GROUP", MASK_BYTES_PER_GROUP) < 0)) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
