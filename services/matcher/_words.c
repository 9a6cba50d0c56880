/* An item's words in C: what ``text.WORD`` (``\w+(?:['’]\w+)*``) finds, with their offsets.
 *
 * Why C: splitting an item into words with the regex module was half of building a Document
 * (106k of its 181k instructions an item, callgrind): sre runs its matcher per character.
 * The rule is small and exact to write as one loop: a word is a run of word characters
 * (``str.isalnum()`` or ``_``, as sre's ``\w`` for str patterns), and an apostrophe (' or ’)
 * between two word characters joins two runs. ``text.split_words`` is the Python twin, built
 * on the regex itself, and the tests hold the two to the same words and offsets.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

/* Word characters below 128, looked up in a table: for most text the Unicode database (up to
 * four lookups for a character that is no letter) is never asked. Filled at import. */
static unsigned char ascii_word[128];

static inline int is_word(Py_UCS4 ch) {
    if (ch < 128) return ascii_word[ch];
    return Py_UNICODE_ISALNUM(ch) || ch == '_';
}

static inline int is_apostrophe(Py_UCS4 ch) { return ch == '\'' || ch == 0x2019; }

/* split_words(text) -> (words, offsets): offsets is a memoryview of native uint32 (format "I"),
 * two per word: where it starts and where it ends, as str indices. */
static PyObject *split_words(PyObject *module, PyObject *text) {
    (void)module;
    if (!PyUnicode_Check(text)) {
        PyErr_Format(PyExc_TypeError, "split_words() takes a str, not %.100s", Py_TYPE(text)->tp_name);
        return NULL;
    }
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    if (n > (Py_ssize_t)UINT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "split_words(): text longer than 2**32 - 1 characters");
        return NULL;
    }
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    PyObject *words = PyList_New(0);
    if (words == NULL) return NULL;
    Py_ssize_t capacity = 64, count = 0;
    uint32_t *spans = PyMem_Malloc(sizeof(uint32_t) * (size_t)capacity);
    if (spans == NULL) {
        Py_DECREF(words);
        return PyErr_NoMemory();
    }
    Py_ssize_t i = 0;
    while (i < n) {
        if (!is_word(PyUnicode_READ(kind, data, i))) {
            i++;
            continue;
        }
        Py_ssize_t start = i;
        while (i < n && is_word(PyUnicode_READ(kind, data, i))) i++;
        while (i + 1 < n && is_apostrophe(PyUnicode_READ(kind, data, i)) &&
               is_word(PyUnicode_READ(kind, data, i + 1))) {
            i++;
            while (i < n && is_word(PyUnicode_READ(kind, data, i))) i++;
        }
        if (count + 2 > capacity) {
            capacity *= 2;
            uint32_t *grown = PyMem_Realloc(spans, sizeof(uint32_t) * (size_t)capacity);
            if (grown == NULL) {
                PyErr_NoMemory();
                goto fail;
            }
            spans = grown;
        }
        spans[count++] = (uint32_t)start;
        spans[count++] = (uint32_t)i;
        PyObject *word = PyUnicode_Substring(text, start, i);
        if (word == NULL) goto fail;
        int appended = PyList_Append(words, word);
        Py_DECREF(word);
        if (appended < 0) goto fail;
    }
    PyObject *packed = PyBytes_FromStringAndSize((const char *)spans, (Py_ssize_t)(sizeof(uint32_t) * (size_t)count));
    PyMem_Free(spans);
    PyObject *view = packed == NULL ? NULL : PyMemoryView_FromObject(packed);
    Py_XDECREF(packed);
    PyObject *offsets = view == NULL ? NULL : PyObject_CallMethod(view, "cast", "s", "I");
    Py_XDECREF(view);
    if (offsets == NULL) {
        Py_DECREF(words);
        return NULL;
    }
    PyObject *result = PyTuple_Pack(2, words, offsets);
    Py_DECREF(words);
    Py_DECREF(offsets);
    return result;
fail:
    PyMem_Free(spans);
    Py_DECREF(words);
    return NULL;
}

static PyMethodDef words_methods[] = {
    {"split_words", split_words, METH_O,
     "split_words(text) -> (words, offsets): text.WORD's matches, and two offsets per word "
     "(start, end) in a memoryview of native uint32"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef words_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_words",
    .m_doc = "An item's words in C (see text.split_words for the Python twin).",
    .m_size = -1,
    .m_methods = words_methods,
};

PyMODINIT_FUNC PyInit__words(void) {
    for (Py_UCS4 ch = 0; ch < 128; ch++) ascii_word[ch] = (unsigned char)(Py_UNICODE_ISALNUM(ch) || ch == '_');
    return PyModule_Create(&words_module);
}
