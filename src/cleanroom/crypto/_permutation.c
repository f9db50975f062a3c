/*
 * The C half of crypto/permutation.py: a Fisher-Yates shuffle driven by words the caller drew
 * from the OS CSPRNG.
 *
 * shuffle(out, words) writes into out (n int64) the identity shuffled from its last position
 * down: position i swaps with a position j drawn uniformly from 0..i, one 64-bit word per draw
 * (n - 1 words in all). A word becomes j by Lemire's multiply-and-shift ("Fast random integer
 * generation in an interval", ACM TOMACS 2019): j is the high half of word * (i + 1), which is
 * uniform over 0..i once the few words whose low half falls below 2^64 mod (i + 1) are refused.
 * A refused word (about n^2 / 2^65 per shuffle: 3 in a million for n = 10^7) makes the call
 * return False, and the caller draws all the words again: each draw is uniform given that none was
 * refused, and the draws are independent, so every order stays exactly equally likely.
 *
 * It replaces sorting n random keys and checking them for ties, a sort where a shuffle needs
 * one pass. The Python reference of the same steps is in the tests, which hold this to it word
 * for word.
 *
 * The order is no secret from the process that draws it, so the code branches and indexes on
 * the drawn values; nothing else can observe it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>

/* The high and low halves of x * y. */
static uint64_t
multiply(uint64_t x, uint64_t y, uint64_t *low)
{
#ifdef __SIZEOF_INT128__
    unsigned __int128 product = (unsigned __int128)x * y;
    *low = (uint64_t)product;
    return (uint64_t)(product >> 64);
#else
    uint64_t x0 = (uint32_t)x, x1 = x >> 32, y0 = (uint32_t)y, y1 = y >> 32;
    uint64_t p00 = x0 * y0, p01 = x0 * y1, p10 = x1 * y0, p11 = x1 * y1;
    uint64_t middle = (p00 >> 32) + (uint32_t)p01 + (uint32_t)p10;
    *low = (middle << 32) | (uint32_t)p00;
    return p11 + (p01 >> 32) + (p10 >> 32) + (middle >> 32);
#endif
}

PyDoc_STRVAR(shuffle_doc,
             "shuffle(out, words, /)\n--\n\n"
             "Fill out (a writable buffer of n int64) with a shuffle of 0..n-1 driven by words "
             "(n - 1 little-endian uint64, from the OS CSPRNG); False if a word was refused, "
             "so that the caller draws all the words again.");

static PyObject *
shuffle(PyObject *Py_UNUSED(module), PyObject *args)
{
    Py_buffer out, words;
    if (!PyArg_ParseTuple(args, "w*y*:shuffle", &out, &words)) {
        return NULL;
    }
    PyObject *result = NULL;
    Py_ssize_t n = out.len / (Py_ssize_t)sizeof(int64_t);
    if (out.len % (Py_ssize_t)sizeof(int64_t) != 0 ||
        words.len != (n > 0 ? n - 1 : 0) * (Py_ssize_t)sizeof(uint64_t)) {
        PyErr_SetString(PyExc_ValueError, "shuffle: out must hold n int64 and words n - 1 words");
        goto done;
    }
    int64_t *order = out.buf;
    const unsigned char *word = words.buf;
    int refused = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        order[i] = i;
    }
    for (Py_ssize_t i = n - 1; i > 0; i--, word += 8) {
        uint64_t x = 0;
        for (int b = 7; b >= 0; b--) {
            x = x << 8 | word[b]; /* little-endian, as the reference reads it */
        }
        uint64_t bound = (uint64_t)i + 1, low;
        Py_ssize_t j = (Py_ssize_t)multiply(x, bound, &low);
        if (low < bound && low < (0 - bound) % bound) {
            refused = 1;
            break;
        }
        int64_t held = order[i];
        order[i] = order[j];
        order[j] = held;
    }
    Py_END_ALLOW_THREADS
    result = PyBool_FromLong(!refused);
done:
    PyBuffer_Release(&out);
    PyBuffer_Release(&words);
    return result;
}

static PyMethodDef methods[] = {
    {"shuffle", shuffle, METH_VARARGS, shuffle_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "cleanroom.crypto._permutation",
    .m_doc = "A Fisher-Yates shuffle driven by words from the OS CSPRNG (see _permutation.c).",
    .m_size = 0,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__permutation(void)
{
    return PyModule_Create(&module);
}
