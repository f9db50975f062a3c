/*
 * The C half of advertiser/_listfile.py and advertiser/_copy_rows.py: the plain blocks of a
 * customer list read, the record ids seen so far, and the matched rows copied.
 *
 * take_plain reads a block that _chunks.FileChunks found plain (no quote, no NUL, every carriage
 * return part of a "\r\n" line end, whole lines only) and keeps its consenting records, as
 * _listfile._Records does for the same lines: rows without consent are counted and nothing else
 * is read from them; each kept record gives its row, its line, its record id (stripped) to the
 * ids seen so far and its identifier cells as they are.
 *
 * It takes lines as long as it can decide them exactly as the Python does, and stops at the
 * first it cannot, saying where, so the Python reads that line (and reports its problem in its
 * own words) and calls again after it: a line not of the header's width (a blank one included),
 * a consent spelling not already known to the reader's cache (the Python reads it and remembers
 * it), a record id that is empty, seen before, or has a byte that is not ASCII at either end
 * (where str.strip might trim more than the ASCII whitespace trimmed here). A property test
 * holds the two paths to the same records, counts, blocks and problems.
 *
 * RecordIds holds the record ids seen, each with the line of its record, as the UTF-8 bytes of
 * the id in one growing buffer and an open-addressing table of their hashes: a list of a million
 * records would otherwise make a million str objects only to look them up, which costs more than
 * the rest of the reading. On an error (no memory) take_plain takes back the ids it added. Its
 * hash is CPython's keyed hash of bytes (SipHash, keyed per process), so ids chosen to collide
 * cannot be made to. The Python path uses it through setdefault, as it would a dict (the
 * reference, where the module was not built).
 *
 * copy_rows is the C half of advertiser/_copy_rows.py: the wanted rows of a block of a plain
 * list, byte for byte, in one pass that also checks that the block is plain (no quote, no
 * carriage return but in "\r\n", no cell starting with a formula trigger), where the numpy
 * reference makes a pass per check and per trigger. A property test holds the two to the same
 * bytes and the same refusals.
 *
 * take_plain holds the GIL: it creates the objects the reader keeps, one or a few per record.
 * copy_rows releases it while it copies.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

/* What str.strip() trims among ASCII characters: Py_UNICODE_ISSPACE below 0x80. */
static int
is_ascii_space(unsigned char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f);
}

static int
has_non_ascii(const char *s, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] >= 0x80) {
            return 1;
        }
    }
    return 0;
}

/* A consent spelling met in this block, by its bytes, so a column that repeats a few spellings
 * costs a comparison per row rather than an object and a lookup. */
typedef struct {
    const char *at;
    Py_ssize_t len;
    int consent;
} Spelling;

#define SPELLINGS 4

/* Consent of the cell: 1, 0, or -1 where the Python must decide (unknown spelling); -2 on an
 * error with an exception set. */
static int
consent_of(const char *cell, Py_ssize_t len, PyObject *known, Spelling *seen, int *count)
{
    for (int i = 0; i < *count; i++) {
        if (seen[i].len == len && memcmp(seen[i].at, cell, (size_t)len) == 0) {
            return seen[i].consent;
        }
    }
    if (has_non_ascii(cell, len)) {
        return -1;
    }
    PyObject *key = PyUnicode_DecodeUTF8(cell, len, NULL);
    if (key == NULL) {
        return -2;
    }
    PyObject *value = PyDict_GetItemWithError(known, key); /* borrowed */
    Py_DECREF(key);
    if (value == NULL) {
        return PyErr_Occurred() ? -2 : -1;
    }
    if (value != Py_True && value != Py_False) {
        return -1;
    }
    int consent = value == Py_True;
    if (*count < SPELLINGS) {
        seen[*count].at = cell;
        seen[*count].len = len;
        seen[*count].consent = consent;
        (*count)++;
    }
    return consent;
}

/* ---------------------------------------------------------------------------------------------
 * RecordIds: id (UTF-8 bytes) -> line, added to and looked up, never removed but for the ids a
 * failed take_plain added (taken back newest first, which linear probing allows: no id added
 * before one can have probed past its slot). Each slot holds its entry's index and the top half
 * of its hash, so that a probe past another id's slot reads no entry: with a million ids, the
 * entries are far out of cache.
 */

typedef struct {
    uint64_t hash;
    size_t offset; /* in bytes */
    Py_ssize_t len;
    Py_ssize_t line;
} Entry;

typedef struct {
    PyObject_HEAD
    char *bytes;
    size_t bytes_used, bytes_size;
    Entry *entries;
    Py_ssize_t count, entries_size;
    uint64_t *slots; /* the hash's top 32 bits << 32 | entry index + 1; 0 is empty */
    size_t mask;     /* slots - 1; the table is at most half full */
} RecordIds;

static uint64_t
hash_id(const char *id, Py_ssize_t len)
{
#if PY_VERSION_HEX >= 0x030E0000
    return (uint64_t)Py_HashBuffer(id, len);
#else
    return (uint64_t)_Py_HashBytes(id, len);
#endif
}

#define SLOT_TAG(hash) ((hash) & 0xFFFFFFFF00000000u)
#define SLOT_INDEX(slot) ((uint32_t)(slot)) /* entry index + 1 */

/* The slot holding the id, or the empty slot where it would go. */
static size_t
find_slot(const RecordIds *ids, const char *id, Py_ssize_t len, uint64_t hash)
{
    size_t at = (size_t)hash & ids->mask;
    for (;;) {
        uint64_t slot = ids->slots[at];
        if (slot == 0) {
            return at;
        }
        if (SLOT_TAG(slot) == SLOT_TAG(hash)) {
            const Entry *entry = &ids->entries[SLOT_INDEX(slot) - 1];
            if (entry->hash == hash && entry->len == len &&
                memcmp(ids->bytes + entry->offset, id, (size_t)len) == 0) {
                return at;
            }
        }
        at = (at + 1) & ids->mask;
    }
}

static int
grow_slots(RecordIds *ids)
{
    size_t size = (ids->mask + 1) * 2;
    uint64_t *slots = PyMem_Calloc(size, sizeof(uint64_t));
    if (slots == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    PyMem_Free(ids->slots);
    ids->slots = slots;
    ids->mask = size - 1;
    for (Py_ssize_t i = 0; i < ids->count; i++) {
        uint64_t hash = ids->entries[i].hash;
        size_t at = (size_t)hash & ids->mask;
        while (slots[at] != 0) {
            at = (at + 1) & ids->mask;
        }
        slots[at] = SLOT_TAG(hash) | (uint64_t)(i + 1);
    }
    return 0;
}

/* The line of the id, adding it with ``line`` if it is new; -1 on an error (set). */
static Py_ssize_t
ids_setdefault(RecordIds *ids, const char *id, Py_ssize_t len, Py_ssize_t line)
{
    uint64_t hash = hash_id(id, len);
    size_t at = find_slot(ids, id, len, hash);
    if (ids->slots[at] != 0) {
        return ids->entries[SLOT_INDEX(ids->slots[at]) - 1].line;
    }
    if (ids->count == UINT32_MAX - 1) {
        PyErr_SetString(PyExc_OverflowError, "too many record ids");
        return -1;
    }
    if (ids->count == ids->entries_size) {
        Py_ssize_t size = ids->entries_size * 2;
        Entry *entries = PyMem_Realloc(ids->entries, sizeof(Entry) * (size_t)size);
        if (entries == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        ids->entries = entries;
        ids->entries_size = size;
    }
    if (ids->bytes_size - ids->bytes_used < (size_t)len) {
        size_t size = ids->bytes_size * 2 + (size_t)len;
        char *bytes = PyMem_Realloc(ids->bytes, size);
        if (bytes == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        ids->bytes = bytes;
        ids->bytes_size = size;
    }
    memcpy(ids->bytes + ids->bytes_used, id, (size_t)len);
    ids->entries[ids->count] = (Entry){hash, ids->bytes_used, len, line};
    ids->bytes_used += (size_t)len;
    ids->slots[at] = SLOT_TAG(hash) | (uint64_t)++ids->count;
    if ((size_t)ids->count * 2 > ids->mask + 1 && grow_slots(ids) < 0) {
        return -1; /* the id is kept; only the table could not grow */
    }
    return line;
}

/* Take back the ids added after the first ``keep``, newest first. */
static void
ids_truncate(RecordIds *ids, Py_ssize_t keep)
{
    while (ids->count > keep) {
        const Entry *entry = &ids->entries[ids->count - 1];
        size_t at = (size_t)entry->hash & ids->mask;
        while (SLOT_INDEX(ids->slots[at]) != (uint32_t)ids->count) {
            at = (at + 1) & ids->mask;
        }
        ids->slots[at] = 0;
        ids->bytes_used = entry->offset;
        ids->count--;
    }
}

static PyObject *
RecordIds_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, ":RecordIds", keywords)) {
        return NULL;
    }
    RecordIds *ids = (RecordIds *)type->tp_alloc(type, 0);
    if (ids == NULL) {
        return NULL;
    }
    ids->bytes_size = 4096;
    ids->entries_size = 256;
    ids->mask = 1023;
    ids->bytes = PyMem_Malloc(ids->bytes_size);
    ids->entries = PyMem_Malloc(sizeof(Entry) * (size_t)ids->entries_size);
    ids->slots = PyMem_Calloc(ids->mask + 1, sizeof(uint64_t));
    if (ids->bytes == NULL || ids->entries == NULL || ids->slots == NULL) {
        Py_DECREF(ids);
        return PyErr_NoMemory();
    }
    return (PyObject *)ids;
}

static void
RecordIds_dealloc(RecordIds *ids)
{
    PyMem_Free(ids->bytes);
    PyMem_Free(ids->entries);
    PyMem_Free(ids->slots);
    Py_TYPE(ids)->tp_free((PyObject *)ids);
}

static Py_ssize_t
RecordIds_len(RecordIds *ids)
{
    return ids->count;
}

static int
RecordIds_contains(RecordIds *ids, PyObject *key)
{
    if (!PyUnicode_Check(key)) {
        return 0;
    }
    Py_ssize_t len;
    const char *id = PyUnicode_AsUTF8AndSize(key, &len);
    if (id == NULL) {
        return -1;
    }
    return ids->slots[find_slot(ids, id, len, hash_id(id, len))] != 0;
}

PyDoc_STRVAR(RecordIds_setdefault_doc,
             "setdefault(record_id, line, /)\n--\n\n"
             "The line of the record id, after adding it with this line if it is new.");

static PyObject *
RecordIds_setdefault(RecordIds *ids, PyObject *args)
{
    PyObject *key;
    Py_ssize_t line;
    if (!PyArg_ParseTuple(args, "Un:setdefault", &key, &line)) {
        return NULL;
    }
    Py_ssize_t len;
    const char *id = PyUnicode_AsUTF8AndSize(key, &len);
    if (id == NULL) {
        return NULL;
    }
    Py_ssize_t first = ids_setdefault(ids, id, len, line);
    return first < 0 && PyErr_Occurred() ? NULL : PyLong_FromSsize_t(first);
}

static PyMethodDef RecordIds_methods[] = {
    {"setdefault", (PyCFunction)RecordIds_setdefault, METH_VARARGS, RecordIds_setdefault_doc},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods RecordIds_as_sequence = {
    .sq_length = (lenfunc)RecordIds_len,
    .sq_contains = (objobjproc)RecordIds_contains,
};

static PyTypeObject RecordIdsType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "cleanroom.advertiser._plain_block.RecordIds",
    .tp_doc = PyDoc_STR("Record ids seen, each with its record's line (see _plain_block.c)."),
    .tp_basicsize = sizeof(RecordIds),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = RecordIds_new,
    .tp_dealloc = (destructor)RecordIds_dealloc,
    .tp_as_sequence = &RecordIds_as_sequence,
    .tp_methods = RecordIds_methods,
};

/* ---------------------------------------------------------------------------------------------
 * take_plain
 */

PyDoc_STRVAR(take_plain_doc,
             "take_plain(text, start_byte, start_char, delimiter, width, first_line, first_row, "
             "consent_at, record_id_at, kinds_at, spellings, ids)\n--\n\n"
             "The kept records of a plain block's lines from a line start on, up to the first "
             "line the Python must read.\n\n"
             "Returns (rows read, rows, lines, columns, stop_byte, stop_char): the rows and lines "
             "of the kept records, for each position in kinds_at the cells of that column, and "
             "where the lines taken end in the text's UTF-8 and in its characters (its end, or "
             "the start of the line for the Python). Each kept record id is added to ids (a "
             "RecordIds) with its line; record_id_at is -1 without a record id column.");

static PyObject *
take_plain(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *text, *spellings, *kinds_at;
    RecordIds *ids;
    int delimiter;
    Py_ssize_t start_byte, start_char, width, first_line, first_row, consent_at, record_id_at;
    if (!PyArg_ParseTuple(args, "UnnCnnnnnO!O!O!:take_plain", &text, &start_byte, &start_char,
                          &delimiter, &width, &first_line, &first_row, &consent_at, &record_id_at,
                          &PyTuple_Type, &kinds_at, &PyDict_Type, &spellings, &RecordIdsType,
                          &ids)) {
        return NULL;
    }
    Py_ssize_t kinds = PyTuple_GET_SIZE(kinds_at);
    if (delimiter >= 0x80 || delimiter == '\n' || delimiter == '\r' || width < 2 ||
        consent_at < 0 || consent_at >= width || record_id_at < -1 || record_id_at >= width) {
        PyErr_SetString(PyExc_ValueError, "take_plain: bad layout");
        return NULL;
    }
    Py_ssize_t *kind_column = PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)(kinds ? kinds : 1));
    Py_ssize_t *starts = PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)(width + 1));
    if (kind_column == NULL || starts == NULL) {
        PyMem_Free(kind_column);
        PyMem_Free(starts);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t k = 0; k < kinds; k++) {
        kind_column[k] = PyLong_AsSsize_t(PyTuple_GET_ITEM(kinds_at, k));
        if (kind_column[k] < 0 || kind_column[k] >= width) {
            PyMem_Free(kind_column);
            PyMem_Free(starts);
            if (!PyErr_Occurred()) {
                PyErr_SetString(PyExc_ValueError, "take_plain: bad identifier column");
            }
            return NULL;
        }
    }

    PyObject *result = NULL;
    PyObject *rows = PyList_New(0), *lines = PyList_New(0);
    Py_ssize_t ids_before = ids->count;
    PyObject *columns = PyTuple_New(kinds);
    Py_ssize_t size;
    const char *utf8 = PyUnicode_AsUTF8AndSize(text, &size);
    if (rows == NULL || lines == NULL || columns == NULL || utf8 == NULL) {
        goto done;
    }
    for (Py_ssize_t k = 0; k < kinds; k++) {
        PyObject *column = PyList_New(0);
        if (column == NULL) {
            goto done;
        }
        PyTuple_SET_ITEM(columns, k, column);
    }
    if (size == 0 || utf8[size - 1] != '\n' || start_byte < 0 || start_byte > size ||
        (start_byte > 0 && utf8[start_byte - 1] != '\n')) {
        PyErr_SetString(PyExc_ValueError, "take_plain: whole lines only, from a line start");
        goto done;
    }

    Spelling seen[SPELLINGS];
    int seen_count = 0;
    Py_ssize_t line = first_line, row = first_row;
    const char *at = utf8 + start_byte, *end = utf8 + size;
    while (at < end) {
        const char *newline = memchr(at, '\n', (size_t)(end - at));
        const char *line_end = newline > at && newline[-1] == '\r' ? newline - 1 : newline;
        if (line_end == at) {
            break; /* a blank line: no row, which the Python counts out */
        }
        /* The cells: width - 1 delimiters, and none after them. */
        const char *cell = at;
        Py_ssize_t c = 0;
        for (; c < width - 1; c++) {
            const char *cut = memchr(cell, delimiter, (size_t)(line_end - cell));
            if (cut == NULL) {
                break;
            }
            starts[c] = cell - utf8;
            cell = cut + 1;
        }
        if (c < width - 1 || memchr(cell, delimiter, (size_t)(line_end - cell)) != NULL) {
            break; /* not of the header's width: a malformed row */
        }
        starts[width - 1] = cell - utf8;
        starts[width] = line_end - utf8 + 1; /* one past a delimiter, as for the other cells */
#define CELL_AT(i) (utf8 + starts[(i)])
#define CELL_LEN(i) (starts[(i) + 1] - starts[(i)] - 1)

        int consent = consent_of(CELL_AT(consent_at), CELL_LEN(consent_at), spellings, seen,
                                 &seen_count);
        if (consent == -2) {
            goto done;
        }
        if (consent == -1) {
            break; /* unreadable, or not yet read by the Python */
        }
        if (consent == 1) {
            PyObject *line_number = PyLong_FromSsize_t(line);
            if (line_number == NULL) {
                goto done;
            }
            if (record_id_at >= 0) {
                const char *id = CELL_AT(record_id_at);
                Py_ssize_t id_len = CELL_LEN(record_id_at);
                while (id_len > 0 && is_ascii_space((unsigned char)id[0])) {
                    id++;
                    id_len--;
                }
                while (id_len > 0 && is_ascii_space((unsigned char)id[id_len - 1])) {
                    id_len--;
                }
                if (id_len == 0 || (unsigned char)id[0] >= 0x80 ||
                    (unsigned char)id[id_len - 1] >= 0x80) {
                    Py_DECREF(line_number);
                    break; /* empty, or str.strip might trim more */
                }
                Py_ssize_t first = ids_setdefault(ids, id, id_len, line);
                if (first != line) {
                    Py_DECREF(line_number);
                    if (first < 0) {
                        goto done;
                    }
                    break; /* seen before: a repeated record id */
                }
            }
            PyObject *ordinal = PyLong_FromSsize_t(row);
            int failed = ordinal == NULL || PyList_Append(rows, ordinal) < 0 ||
                         PyList_Append(lines, line_number) < 0;
            Py_XDECREF(ordinal);
            Py_DECREF(line_number);
            if (failed) {
                goto done;
            }
            for (Py_ssize_t k = 0; k < kinds; k++) {
                PyObject *value =
                    PyUnicode_DecodeUTF8(CELL_AT(kind_column[k]), CELL_LEN(kind_column[k]), NULL);
                if (value == NULL || PyList_Append(PyTuple_GET_ITEM(columns, k), value) < 0) {
                    Py_XDECREF(value);
                    goto done;
                }
                Py_DECREF(value);
            }
        }
#undef CELL_AT
#undef CELL_LEN
        line++;
        row++;
        at = newline + 1;
    }
    /* Where the lines taken end, in characters too: a character is a byte that does not
     * continue one (10xxxxxx). */
    Py_ssize_t stop_byte = at - utf8, stop_char = start_char;
    for (const char *byte = utf8 + start_byte; byte < at; byte++) {
        stop_char += ((unsigned char)*byte & 0xC0) != 0x80;
    }
    result = Py_BuildValue("nOOOnn", row - first_row, rows, lines, columns, stop_byte, stop_char);

done:
    if (result == NULL) {
        ids_truncate(ids, ids_before);
    }
    PyMem_Free(kind_column);
    PyMem_Free(starts);
    Py_XDECREF(rows);
    Py_XDECREF(lines);
    Py_XDECREF(columns);
    return result;
}

/* ---------------------------------------------------------------------------------------------
 * copy_rows
 */

PyDoc_STRVAR(copy_rows_doc,
             "copy_rows(block, wanted, ordinal, delimiter, triggers, /)\n--\n\n"
             "The kept lines of a block of whole lines of a list file, or None if it is not "
             "plain.\n\n"
             "A line of more than its terminator is a row, numbered from ordinal on (the "
             "header's is -1, and is kept); data row i is kept if i < len(wanted) and wanted[i]. "
             "A last line without a newline gets one. Returns (bytes, rows, data rows kept).");

static PyObject *
copy_rows(PyObject *Py_UNUSED(module), PyObject *args)
{
    Py_buffer block, wanted, triggers;
    Py_ssize_t ordinal;
    int delimiter;
    if (!PyArg_ParseTuple(args, "y*y*nCy*:copy_rows", &block, &wanted, &ordinal, &delimiter,
                          &triggers)) {
        return NULL;
    }
    PyObject *result = NULL;
    const unsigned char *data = block.buf, *keep = wanted.buf;
    Py_ssize_t size = block.len, count = wanted.len;
    unsigned char trigger[256] = {0};
    for (Py_ssize_t i = 0; i < triggers.len; i++) {
        trigger[((const unsigned char *)triggers.buf)[i]] = 1;
    }
    char *out = PyMem_Malloc((size_t)size + 1);
    if (out == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t used = 0, rows = 0, written = 0;
    int plain = 1;
    Py_BEGIN_ALLOW_THREADS
    Py_ssize_t at = 0;
    while (at < size && plain) {
        Py_ssize_t start = at;
        int cell_start = 1;
        for (; at < size && data[at] != '\n'; at++) {
            unsigned char c = data[at];
            if (c == '"' || (c == '\r' && (at + 1 == size || data[at + 1] != '\n')) ||
                (cell_start && trigger[c])) {
                plain = 0;
                break;
            }
            cell_start = c == delimiter;
        }
        if (!plain) {
            break;
        }
        Py_ssize_t end = at < size ? at + 1 : at; /* past the newline, if there is one */
        Py_ssize_t content = at - start - (at > start && data[at - 1] == '\r');
        at = end;
        if (content == 0) {
            continue; /* a blank line is no row */
        }
        Py_ssize_t row = ordinal + rows++;
        if (row == -1 || (row >= 0 && row < count && keep[row])) {
            memcpy(out + used, data + start, (size_t)(end - start));
            used += end - start;
            written += row >= 0;
            if (data[end - 1] != '\n') {
                out[used++] = '\n';
            }
        }
    }
    Py_END_ALLOW_THREADS
    if (!plain) {
        result = Py_NewRef(Py_None);
    } else {
        result = Py_BuildValue("y#nn", out, used, rows, written);
    }
done:
    PyMem_Free(out);
    PyBuffer_Release(&block);
    PyBuffer_Release(&wanted);
    PyBuffer_Release(&triggers);
    return result;
}

static PyMethodDef methods[] = {
    {"take_plain", take_plain, METH_VARARGS, take_plain_doc},
    {"copy_rows", copy_rows, METH_VARARGS, copy_rows_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "cleanroom.advertiser._plain_block",
    .m_doc = "Plain blocks of a customer list: read, their record ids, rows copied.",
    .m_size = 0,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__plain_block(void)
{
    if (PyType_Ready(&RecordIdsType) < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(m, "RecordIds", (PyObject *)&RecordIdsType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
