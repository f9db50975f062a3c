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
 * The products are built four elements at a time: the 16 subset products of a group of four
 * (11 multiplications), then each test multiplies in the one its 4 random bits select. That is
 * about 18 multiplications per element instead of the 32 of one bit per element and test.
 *
 * Nothing here is secret: the inputs are public points, the random bits only need to be
 * unpredictable to the sender until it has sent the chunk.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

#include "_fe25519.h"

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

static void subset_products(const uint8_t *rows, Py_ssize_t n, const uint8_t *masks,
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
"twist_test(rows, masks, listed, /) -> tuple[int, int, bytes]\n\n"
"For n 32-byte u-coordinates (rows), MASK_BYTES_PER_GROUP random bytes per GROUP rows (the\n"
"last group may be short; masks) and concatenated 32-byte encodings to look for (listed, the\n"
"caller's small-order points): the index of the first row that is not a canonical encoding\n"
"(or -1), the index of the first row equal to one of listed (or -1), and 64 products of random\n"
"subsets of the rows' y = u^3 + A u^2 + u, as 64 canonical 32-byte little-endian field\n"
"elements. Every row is on the curve iff all 64 products are squares, except with probability\n"
"2^-64 over the masks. The products are only meaningful when the first index is -1.");

static PyObject *py_twist_test(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer rows, masks, listed;
    if (!PyArg_ParseTuple(args, "y*y*y*", &rows, &masks, &listed)) return NULL;
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
    if (bad < 0) subset_products(rows.buf, n, masks.buf, products);
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
    {"twist_test", py_twist_test, METH_VARARGS, twist_test_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_check25519",
    "Curve membership of many X25519 u-coordinates at once (the random subset test).", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__check25519(void) {
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && (PyModule_AddIntConstant(m, "TESTS", TESTS) < 0 ||
                      PyModule_AddIntConstant(m, "GROUP", GROUP) < 0 ||
                      PyModule_AddIntConstant(m, "MASK_BYTES_PER_GROUP", MASK_BYTES_PER_GROUP) < 0)) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
