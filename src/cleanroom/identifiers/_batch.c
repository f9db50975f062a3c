/*
 * The C half of identifiers/batch.py: email normalization v1 and hash-to-curve messages for whole
 * columns.
 *
 * normalize_emails accepts only what it can decide exactly as email.normalize_email does: an
 * exact str of ASCII characters that, once the characters of rules.TRIMMED_WHITESPACE are
 * trimmed, is local@domain made of printable non-space characters, with one '@', a non-empty
 * local part, and a dot in a domain that has no empty label; gmail.com local parts are folded
 * (dots removed, '+' and what follows dropped) unless that leaves them empty. Every other value
 * is handed back by index, so the Python reference says why it is rejected, in its own words
 * (and decides any case this code does not know). A property test holds the two paths to the
 * same indices, values, rejections and messages.
 *
 * hash_messages builds prefix || SHA-256(UTF-8 of value) for each value. The SHA-256 is written
 * here (FIPS 180-4) rather than taken from OpenSSL so that the extension needs nothing but a C
 * compiler and Python's headers at build time: no OpenSSL headers or library to link (hashlib's
 * OpenSSL is not reachable from C). Where the CPU has the SHA extensions (SHA-NI) the block
 * function uses them; it is checked against the portable code once at import, and a difference
 * turns it off.
 *
 * Both functions hold the GIL: they read str objects and create one object per value, and the
 * work per value is far too small to be worth copying the column out to run without it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CLEANROOM_HAVE_SHA_NI 1
#include <cpuid.h>
#include <immintrin.h>
#else
#define CLEANROOM_HAVE_SHA_NI 0
#endif

/* ---------------------------------------------------------------------------------------------
 * SHA-256 (FIPS 180-4), one-shot.
 */

#define DIGEST_SIZE 32

static const uint32_t SHA256_K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static const uint32_t SHA256_IV[8] = {
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
};

#define ROTR32(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static uint32_t load32_be(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static void store32_be(uint8_t *p, uint32_t v) {
#if defined(__GNUC__) || defined(__clang__)
    /* One swap and one store: the byte-by-byte form compiles to a long detour through the stack. */
    v = __builtin_bswap32(v);
    memcpy(p, &v, sizeof v);
#else
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
#endif
}

/* Compress `blocks` consecutive 64-byte blocks into the state h. */
typedef void (*sha256_blocks_fn)(uint32_t h[8], const uint8_t *data, size_t blocks);

static void sha256_blocks_portable(uint32_t h[8], const uint8_t *data, size_t blocks) {
    for (; blocks > 0; blocks--, data += 64) {
        uint32_t w[64];
        for (int i = 0; i < 16; i++) w[i] = load32_be(data + 4 * i);
        for (int i = 16; i < 64; i++) {
            uint32_t s0 = ROTR32(w[i - 15], 7) ^ ROTR32(w[i - 15], 18) ^ (w[i - 15] >> 3);
            uint32_t s1 = ROTR32(w[i - 2], 17) ^ ROTR32(w[i - 2], 19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16] + s0 + w[i - 7] + s1;
        }
        uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
        for (int i = 0; i < 64; i++) {
            uint32_t s1 = ROTR32(e, 6) ^ ROTR32(e, 11) ^ ROTR32(e, 25);
            uint32_t ch = (e & f) ^ (~e & g);
            uint32_t t1 = hh + s1 + ch + SHA256_K[i] + w[i];
            uint32_t s0 = ROTR32(a, 2) ^ ROTR32(a, 13) ^ ROTR32(a, 22);
            uint32_t maj = (a & b) ^ (a & c) ^ (b & c);
            uint32_t t2 = s0 + maj;
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
}

#if CLEANROOM_HAVE_SHA_NI
/* The SHA extensions keep the state as two vectors, ABEF and CDGH (lane 3 first), and run two
 * rounds per sha256rnds2; sha256msg1/msg2 extend the message schedule four words at a time. The
 * function carries its own target, so the module builds with the compiler's default target and
 * runs it only after cpu_has_sha_ni() said yes. */
__attribute__((target("sha,sse4.1"))) static void sha256_blocks_sha_ni(uint32_t h[8],
                                                                      const uint8_t *data,
                                                                      size_t blocks) {
    const __m128i byteswap = _mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL);
    __m128i dcba = _mm_loadu_si128((const __m128i *)&h[0]);
    __m128i hgfe = _mm_loadu_si128((const __m128i *)&h[4]);
    __m128i cdab = _mm_shuffle_epi32(dcba, 0xb1);
    __m128i efgh = _mm_shuffle_epi32(hgfe, 0x1b);
    __m128i abef = _mm_alignr_epi8(cdab, efgh, 8);
    __m128i cdgh = _mm_blend_epi16(efgh, cdab, 0xf0);
    for (; blocks > 0; blocks--, data += 64) {
        const __m128i abef_in = abef, cdgh_in = cdgh;
        __m128i w[4];
        /* Rounds 4i .. 4i + 3; w[i % 4] holds their message words. Unrolled, the tests on i
         * and the indices into w fold away and w stays in registers. */
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++) {
            if (i < 4)
                w[i] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(data + 16 * i)), byteswap);
            __m128i wk = _mm_add_epi32(w[i & 3], _mm_loadu_si128((const __m128i *)&SHA256_K[4 * i]));
            cdgh = _mm_sha256rnds2_epu32(cdgh, abef, wk);
            if (i >= 3 && i <= 14) {
                /* Words of rounds 4(i + 1) .. 4(i + 1) + 3, from those 16 and 7 rounds back. */
                __m128i next = _mm_add_epi32(w[(i + 1) & 3], _mm_alignr_epi8(w[i & 3], w[(i + 3) & 3], 4));
                w[(i + 1) & 3] = _mm_sha256msg2_epu32(next, w[i & 3]);
            }
            abef = _mm_sha256rnds2_epu32(abef, cdgh, _mm_shuffle_epi32(wk, 0x0e));
            if (i >= 1 && i <= 12) w[(i + 3) & 3] = _mm_sha256msg1_epu32(w[(i + 3) & 3], w[i & 3]);
        }
        abef = _mm_add_epi32(abef, abef_in);
        cdgh = _mm_add_epi32(cdgh, cdgh_in);
    }
    __m128i feba = _mm_shuffle_epi32(abef, 0x1b);
    __m128i dchg = _mm_shuffle_epi32(cdgh, 0xb1);
    _mm_storeu_si128((__m128i *)&h[0], _mm_blend_epi16(feba, dchg, 0xf0));
    _mm_storeu_si128((__m128i *)&h[4], _mm_alignr_epi8(dchg, feba, 8));
}

/* SHA (CPUID leaf 7), SSSE3 and SSE4.1 (leaf 1); x86-64 operating systems all save XMM state. */
static int cpu_has_sha_ni(void) {
    unsigned int eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return 0;
    if (!(ecx & bit_SSSE3) || !(ecx & bit_SSE4_1)) return 0;
    if (__get_cpuid_max(0, NULL) < 7) return 0;
    __cpuid_count(7, 0, eax, ebx, ecx, edx);
    return (ebx & bit_SHA) != 0;
}
#endif

/* Set once at import: the block function to use. */
static sha256_blocks_fn sha256_blocks = sha256_blocks_portable;

static void sha256(sha256_blocks_fn blocks_fn, const uint8_t *data, size_t len,
                   uint8_t out[DIGEST_SIZE]) {
    uint32_t h[8];
    memcpy(h, SHA256_IV, sizeof h);
    size_t full = len / 64;
    if (full > 0) blocks_fn(h, data, full);
    /* The tail, 0x80, zeros, and the length in bits: one block, or two if the tail is long. The
     * blocks are zeroed whole, at sizes known here, which compile to a few stores. */
    uint8_t last[128];
    size_t rest = len - 64 * full;
    size_t padded = rest < 56 ? 64 : 128;
    memset(last, 0, 64);
    if (padded > 64) memset(last + 64, 0, 64);
    memcpy(last, data + 64 * full, rest);
    last[rest] = 0x80;
    uint64_t bits = (uint64_t)len << 3; /* no str or bytes reaches 2^61 bytes */
    store32_be(last + padded - 8, (uint32_t)(bits >> 32));
    store32_be(last + padded - 4, (uint32_t)bits);
    blocks_fn(h, last, padded / 64);
    for (int i = 0; i < 8; i++) store32_be(out + 4 * i, h[i]);
}

/* ---------------------------------------------------------------------------------------------
 * Email normalization v1, the cases decided here.
 */

/* rules.TRIMMED_WHITESPACE: " \t\n\r\f\v". */
static int is_trimmed(Py_UCS1 c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

static int is_upper(Py_UCS1 c) { return (unsigned)(c - 'A') < 26u; }

static Py_UCS1 to_lower(Py_UCS1 c) { return is_upper(c) ? (Py_UCS1)(c + ('a' - 'A')) : c; }

static int is_gmail(const Py_UCS1 *domain, Py_ssize_t len) {
    static const char gmail[] = "gmail.com";
    if (len != (Py_ssize_t)(sizeof gmail - 1)) return 0;
    for (Py_ssize_t i = 0; i < len; i++)
        if (to_lower(domain[i]) != (Py_UCS1)gmail[i]) return 0;
    return 1;
}

/* The normalized address of `value` as a new reference in *out (1), or 0 to hand the value back
 * to the Python reference, or -1 with an exception set. */
static int normalize_email(PyObject *value, PyObject **out) {
    /* Subclasses and non-str go back too: the reference's behaviour on them is its own. */
    if (!PyUnicode_CheckExact(value) || !PyUnicode_IS_ASCII(value)) return 0;
    const Py_UCS1 *s = PyUnicode_1BYTE_DATA(value);
    Py_ssize_t n = PyUnicode_GET_LENGTH(value), start = 0, end = n;
    while (start < end && is_trimmed(s[start])) start++;
    while (end > start && is_trimmed(s[end - 1])) end--;
    /* Printable and not a space (so not blank either), exactly one '@'. */
    Py_ssize_t at = -1;
    int upper = 0;
    for (Py_ssize_t i = start; i < end; i++) {
        Py_UCS1 c = s[i];
        if (c <= ' ' || c > '~') return 0;
        if (c == '@') {
            if (at >= 0) return 0;
            at = i;
        }
        upper |= is_upper(c);
    }
    if (at <= start) return 0; /* no '@', or an empty local part */
    /* The domain: a dot, and no empty label. */
    Py_ssize_t domain = at + 1;
    if (domain == end || s[domain] == '.' || s[end - 1] == '.') return 0;
    int dot = 0;
    for (Py_ssize_t i = domain + 1; i < end; i++) {
        if (s[i] == '.') {
            if (s[i - 1] == '.') return 0;
            dot = 1;
        }
    }
    if (!dot) return 0;
    if (is_gmail(s + domain, end - domain)) {
        Py_ssize_t kept = 0;
        for (Py_ssize_t i = start; i < at && s[i] != '+'; i++) kept += s[i] != '.';
        if (kept == 0) return 0;
        PyObject *result = PyUnicode_New(kept + 1 + (end - domain), 127);
        if (result == NULL) return -1;
        Py_UCS1 *o = PyUnicode_1BYTE_DATA(result);
        for (Py_ssize_t i = start; i < at && s[i] != '+'; i++)
            if (s[i] != '.') *o++ = to_lower(s[i]);
        memcpy(o, "@gmail.com", 10);
        *out = result;
        return 1;
    }
    if (!upper && start == 0 && end == n) {
        Py_INCREF(value);
        *out = value;
        return 1;
    }
    PyObject *result = PyUnicode_New(end - start, 127);
    if (result == NULL) return -1;
    Py_UCS1 *o = PyUnicode_1BYTE_DATA(result);
    for (Py_ssize_t i = start; i < end; i++) o[i - start] = to_lower(s[i]);
    *out = result;
    return 1;
}

/* ---------------------------------------------------------------------------------------------
 * Python binding.
 */

PyDoc_STRVAR(normalize_emails_doc,
"normalize_emails(values, /) -> (list[int], list[str], list[int])\n\n"
"Normalize the email addresses this code can decide, as email.normalize_email does. Returns the\n"
"indices of the accepted values (ascending), their normalized forms, and the indices of the\n"
"values handed back (ascending) for the Python reference to normalize or reject.");

static PyObject *py_normalize_emails(PyObject *self, PyObject *values) {
    (void)self;
    PyObject *result = NULL, *indices = NULL, *normalized = NULL, *handed_back = NULL;
    PyObject *seq = PySequence_Fast(values, "values must be a sequence of str");
    if (seq == NULL) return NULL;
    indices = PyList_New(0);
    normalized = PyList_New(0);
    handed_back = PyList_New(0);
    if (indices == NULL || normalized == NULL || handed_back == NULL) goto done;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *email = NULL;
        int decided = normalize_email(items[i], &email);
        if (decided < 0) goto done;
        PyObject *index = PyLong_FromSsize_t(i);
        if (index == NULL) {
            Py_XDECREF(email);
            goto done;
        }
        int failed = PyList_Append(decided ? indices : handed_back, index) < 0;
        Py_DECREF(index);
        if (decided) {
            if (!failed) failed = PyList_Append(normalized, email) < 0;
            Py_DECREF(email);
        }
        if (failed) goto done;
    }
    result = PyTuple_Pack(3, indices, normalized, handed_back);
done:
    Py_XDECREF(indices);
    Py_XDECREF(normalized);
    Py_XDECREF(handed_back);
    Py_DECREF(seq);
    return result;
}

PyDoc_STRVAR(hash_messages_doc,
"hash_messages(prefix, values, /) -> list[bytes]\n\n"
"prefix + SHA-256(value.encode()) for each str value, in order.");

static PyObject *py_hash_messages(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer prefix;
    PyObject *values;
    if (!PyArg_ParseTuple(args, "y*O:hash_messages", &prefix, &values)) return NULL;
    PyObject *result = NULL, *out = NULL;
    PyObject *seq = PySequence_Fast(values, "values must be a sequence of str");
    if (seq == NULL) goto done;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    out = PyList_New(n);
    if (out == NULL) goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *value = items[i], *encoded = NULL;
        const uint8_t *data;
        Py_ssize_t len;
        if (!PyUnicode_Check(value)) {
            PyErr_Format(PyExc_TypeError, "value %zd is %.100s, not str", i,
                         Py_TYPE(value)->tp_name);
            goto done;
        }
        if (PyUnicode_IS_ASCII(value)) {
            data = PyUnicode_1BYTE_DATA(value);
            len = PyUnicode_GET_LENGTH(value);
        } else {
            /* Raises as str.encode() does on a lone surrogate. */
            encoded = PyUnicode_AsUTF8String(value);
            if (encoded == NULL) goto done;
            data = (const uint8_t *)PyBytes_AS_STRING(encoded);
            len = PyBytes_GET_SIZE(encoded);
        }
        PyObject *message = PyBytes_FromStringAndSize(NULL, prefix.len + DIGEST_SIZE);
        if (message != NULL) {
            uint8_t *m = (uint8_t *)PyBytes_AS_STRING(message);
            memcpy(m, prefix.buf, (size_t)prefix.len);
            sha256(sha256_blocks, data, (size_t)len, m + prefix.len);
        }
        Py_XDECREF(encoded);
        if (message == NULL) goto done;
        PyList_SET_ITEM(out, i, message);
    }
    result = out;
    out = NULL;
done:
    Py_XDECREF(out);
    Py_XDECREF(seq);
    PyBuffer_Release(&prefix);
    return result;
}

PyDoc_STRVAR(sha256_doc,
"sha256(data, /, sha_ni=True) -> bytes\n\n"
"SHA-256 of data, with the SHA extensions where SHA_NI is true (module constant) and sha_ni is\n"
"true, with the portable code otherwise: the bytes are the same.");

static PyObject *py_sha256(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
    static char *keywords[] = {"", "sha_ni", NULL};
    Py_buffer data;
    int sha_ni = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*|p:sha256", keywords, &data, &sha_ni))
        return NULL;
    uint8_t digest[DIGEST_SIZE];
    sha256(sha_ni ? sha256_blocks : sha256_blocks_portable, data.buf, (size_t)data.len, digest);
    PyBuffer_Release(&data);
    return PyBytes_FromStringAndSize((const char *)digest, DIGEST_SIZE);
}

static PyMethodDef methods[] = {
    {"normalize_emails", py_normalize_emails, METH_O, normalize_emails_doc},
    {"hash_messages", py_hash_messages, METH_VARARGS, hash_messages_doc},
    {"sha256", (PyCFunction)(void (*)(void))py_sha256, METH_VARARGS | METH_KEYWORDS, sha256_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_batch",
    "Email normalization v1 and hash-to-curve messages for whole columns (see identifiers.batch).",
    -1, methods, NULL, NULL, NULL, NULL,
};

#if CLEANROOM_HAVE_SHA_NI
/* The SHA-NI blocks must give the portable blocks' digests: checked once at import on lengths
 * around the one- and two-block padding edges; a difference turns SHA-NI off. */
static int sha_ni_agrees(void) {
    static const size_t lengths[] = {0, 3, 55, 56, 63, 64, 119, 120, 200};
    uint8_t data[200], ours[DIGEST_SIZE], theirs[DIGEST_SIZE];
    for (size_t i = 0; i < sizeof data; i++) data[i] = (uint8_t)(i * 7 + 1);
    for (size_t i = 0; i < sizeof lengths / sizeof lengths[0]; i++) {
        sha256(sha256_blocks_sha_ni, data, lengths[i], ours);
        sha256(sha256_blocks_portable, data, lengths[i], theirs);
        if (memcmp(ours, theirs, DIGEST_SIZE) != 0) return 0;
    }
    return 1;
}
#endif

PyMODINIT_FUNC PyInit__batch(void) {
    int sha_ni = 0;
#if CLEANROOM_HAVE_SHA_NI
    sha_ni = cpu_has_sha_ni() && sha_ni_agrees();
    if (sha_ni) sha256_blocks = sha256_blocks_sha_ni;
#endif
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddIntConstant(m, "SHA_NI", sha_ni) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
