/* Presearch's pair table in C: (first key, second key) -> entry ids, probed with an item's keys.
 *
 * Why C: probing the index is memory-bound. In Python every key the probe reads is an object
 * somewhere on the heap (a dict, a tuple, the strings in it), so an item's ~150 second-key
 * tests wait on ~150 cache misses. Here the table is two flat arrays of hashes, and an item's
 * keys are copied into a small hash set on the stack first: the seconds of a first key are one
 * or two cache lines, tested without touching any Python object.
 *
 * Keys are compared by their Python hash only, never by value. Two different keys with the
 * same 64-bit hash would make an entry a candidate it should not be, and presearch may return
 * too many candidates, never too few: every candidate is evaluated in full afterwards. Equal
 * keys always have equal hashes, so nothing is ever missed. The pure-Python twin of this type
 * (keypairs.py) compares by value and is held to the same results by the tests.
 *
 * Immutable once built, holds no Python objects, and probes use only their own memory: safe
 * to share between threads.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* A hint to fetch memory early: GCC and Clang have a builtin, other compilers do without. */
#if defined(__GNUC__) || defined(__clang__)
#define PREFETCH(address) __builtin_prefetch(address)
#else
#define PREFETCH(address) ((void)0)
#endif

/* Reading a set's stored hashes uses a CPython internal (private since 3.13, absent in other
 * Pythons): only where it exists; elsewhere a set is iterated like any iterable. */
#if !defined(PYPY_VERSION) && PY_VERSION_HEX < 0x030D0000
#define HAVE_SET_NEXT_ENTRY 1
#endif

typedef struct {
    Py_hash_t first; /* 0: an empty slot (a key hashing to 0 is stored as 1, see key_hash) */
    uint32_t start;  /* its seconds are seconds[start : start + count] */
    uint32_t count;
} Slot;

typedef struct {
    PyObject_HEAD
    uint64_t *bits;   /* one bit per hash value (mod its size): is it maybe a first key? */
    size_t bits_mask; /* bits in `bits` less one, a power of two less one */
    Slot *slots;
    size_t mask; /* slots: mask + 1, a power of two */
    Py_hash_t *seconds;
    uint32_t *ids; /* ids[i] is the entry of the pair (its first, seconds[i]) */
    Py_ssize_t pairs;
    Py_ssize_t firsts;
} KeyPairs;

typedef struct {
    Py_hash_t first;
    Py_hash_t second;
    uint32_t id;
} Triple;

/* A key's hash, never 0 (0 marks an empty slot; mapping 0 to 1 can only add candidates). */
static inline Py_hash_t key_hash(PyObject *key) {
    Py_hash_t h = PyObject_Hash(key);
    return h == 0 ? 1 : h;
}

static inline size_t spread(Py_hash_t h) {
    uint64_t x = (uint64_t)h; /* str hashes are already mixed; fold the high bits in anyway */
    return (size_t)(x ^ (x >> 29) ^ (x >> 47));
}

static int by_first(const void *a, const void *b) {
    Py_hash_t x = ((const Triple *)a)->first, y = ((const Triple *)b)->first;
    return (x > y) - (x < y);
}

static void KeyPairs_dealloc(KeyPairs *self) {
    PyMem_Free(self->bits);
    PyMem_Free(self->slots);
    PyMem_Free(self->seconds);
    PyMem_Free(self->ids);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* KeyPairs(triples): an iterable of (first key, second key, id), id in 0 .. 2**32 - 1. */
static int KeyPairs_init(KeyPairs *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"triples", NULL};
    PyObject *source = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O:KeyPairs", kwlist, &source)) return -1;
    if (self->slots != NULL) {
        PyErr_SetString(PyExc_TypeError, "KeyPairs is immutable: it is built once");
        return -1;
    }
    PyObject *seq = PySequence_Fast(source, "KeyPairs() takes an iterable of (first, second, id)");
    if (seq == NULL) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n >= (Py_ssize_t)UINT32_MAX) {
        Py_DECREF(seq);
        PyErr_SetString(PyExc_OverflowError, "KeyPairs: too many pairs");
        return -1;
    }
    Triple *triples = PyMem_Malloc(sizeof(Triple) * (size_t)(n > 0 ? n : 1));
    if (triples == NULL) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
        PyObject *first, *second;
        unsigned long id;
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 3) {
            PyErr_Format(PyExc_TypeError, "KeyPairs: pair %zd is not a (first, second, id) tuple", i);
            goto fail;
        }
        first = PyTuple_GET_ITEM(item, 0);
        second = PyTuple_GET_ITEM(item, 1);
        id = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(item, 2));
        if (id == (unsigned long)-1 && PyErr_Occurred()) goto fail;
        if (id > UINT32_MAX) {
            PyErr_Format(PyExc_OverflowError, "KeyPairs: id %lu of pair %zd is over 2**32 - 1", id, i);
            goto fail;
        }
        triples[i].first = key_hash(first);
        if (triples[i].first == -1 && PyErr_Occurred()) goto fail;
        triples[i].second = key_hash(second);
        if (triples[i].second == -1 && PyErr_Occurred()) goto fail;
        triples[i].id = (uint32_t)id;
    }
    Py_DECREF(seq);
    seq = NULL;
    qsort(triples, (size_t)n, sizeof(Triple), by_first);

    Py_ssize_t firsts = 0;
    for (Py_ssize_t i = 0; i < n; i++)
        if (i == 0 || triples[i].first != triples[i - 1].first) firsts++;
    size_t size = 8;
    while (size < (size_t)firsts + (size_t)firsts / 3 + 1) size <<= 1; /* load at most 3/4 */
    /* Eight bits per first key: an item's key that is no first key (two in three) is
     * mostly turned away by a bitmap small enough to stay in cache (16 KB at 8,000 first
     * keys), without reading the slot table. */
    size_t bits = 1024;
    while (bits < 8 * (size_t)firsts) bits <<= 1;
    self->bits = PyMem_Calloc(bits / 64, sizeof(uint64_t));
    self->bits_mask = bits - 1;
    self->slots = PyMem_Calloc(size, sizeof(Slot));
    self->seconds = PyMem_Malloc(sizeof(Py_hash_t) * (size_t)(n > 0 ? n : 1));
    self->ids = PyMem_Malloc(sizeof(uint32_t) * (size_t)(n > 0 ? n : 1));
    if (self->bits == NULL || self->slots == NULL || self->seconds == NULL || self->ids == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    self->mask = size - 1;
    for (Py_ssize_t i = 0; i < n; i++) {
        self->seconds[i] = triples[i].second;
        self->ids[i] = triples[i].id;
    }
    for (Py_ssize_t i = 0; i < n;) {
        Py_ssize_t j = i;
        while (j < n && triples[j].first == triples[i].first) j++;
        size_t at = spread(triples[i].first) & self->mask;
        while (self->slots[at].first != 0) at = (at + 1) & self->mask;
        self->slots[at].first = triples[i].first;
        self->slots[at].start = (uint32_t)i;
        self->slots[at].count = (uint32_t)(j - i);
        size_t bit = (size_t)triples[i].first & self->bits_mask;
        self->bits[bit / 64] |= (uint64_t)1 << (bit % 64);
        i = j;
    }
    self->pairs = n;
    self->firsts = firsts;
    PyMem_Free(triples);
    return 0;
fail:
    Py_XDECREF(seq);
    PyMem_Free(triples);
    PyMem_Free(self->bits);
    PyMem_Free(self->slots);
    PyMem_Free(self->seconds);
    PyMem_Free(self->ids);
    self->bits = NULL;
    self->slots = NULL;
    self->seconds = NULL;
    self->ids = NULL;
    return -1;
}

/* The item's keys as a set of hashes: open addressing in `table` (size a power of two). */
static inline int has(const Py_hash_t *table, size_t mask, Py_hash_t h) {
    size_t at = spread(h) & mask;
    for (;;) {
        Py_hash_t here = table[at];
        if (here == h) return 1;
        if (here == 0) return 0;
        at = (at + 1) & mask;
    }
}

#define STACK_KEYS 512

/* Makes room for `needed` hashes in *hashes (the stack buffer first, then the heap). */
static int grow(Py_hash_t **hashes, Py_hash_t *stack, Py_ssize_t *capacity, Py_ssize_t needed) {
    if (needed <= *capacity) return 0;
    Py_ssize_t size = *capacity;
    while (size < needed) size *= 2;
    Py_hash_t *grown = PyMem_Malloc(sizeof(Py_hash_t) * (size_t)size);
    if (grown == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memcpy(grown, *hashes, sizeof(Py_hash_t) * (size_t)*capacity);
    if (*hashes != stack) PyMem_Free(*hashes);
    *hashes = grown;
    *capacity = size;
    return 0;
}

/* probe(*key_sets) -> list of the ids of every pair whose first and second keys are both
 * among the keys (an id once per pair found: the same entry can come through several pairs). */
static PyObject *KeyPairs_probe(KeyPairs *self, PyObject *const *args, Py_ssize_t nargs) {
    Py_hash_t stack_hashes[STACK_KEYS];
    Py_hash_t stack_table[2 * STACK_KEYS];
    Py_hash_t *hashes = stack_hashes, *table = stack_table;
    Py_ssize_t count = 0, capacity = STACK_KEYS;
    PyObject *result = NULL;

    if (self->slots == NULL) {
        PyErr_SetString(PyExc_ValueError, "KeyPairs was not built");
        return NULL;
    }
    for (Py_ssize_t a = 0; a < nargs; a++) {
#ifdef HAVE_SET_NEXT_ENTRY
        if (PyAnySet_Check(args[a])) {
            /* A set holds its keys' hashes: read them there, not from the keys (the item's
             * key strings belong to the word cache and are mostly out of the CPU's cache). */
            Py_ssize_t pos = 0;
            PyObject *key;
            Py_hash_t h;
            if (grow(&hashes, stack_hashes, &capacity, count + PySet_GET_SIZE(args[a])) < 0) goto done;
            while (_PySet_NextEntry(args[a], &pos, &key, &h)) hashes[count++] = h == 0 ? 1 : h;
            continue;
        }
#endif
        PyObject *it = PyObject_GetIter(args[a]);
        if (it == NULL) goto done;
        PyObject *key;
        while ((key = PyIter_Next(it)) != NULL) {
            Py_hash_t h = key_hash(key);
            Py_DECREF(key);
            if ((h == -1 && PyErr_Occurred()) || grow(&hashes, stack_hashes, &capacity, count + 1) < 0) {
                Py_DECREF(it);
                goto done;
            }
            hashes[count++] = h;
        }
        Py_DECREF(it);
        if (PyErr_Occurred()) goto done;
    }
    size_t size = 16;
    while (size < 2 * (size_t)count) size <<= 1; /* load at most 1/2 */
    if (size > 2 * STACK_KEYS) {
        table = PyMem_Calloc(size, sizeof(Py_hash_t));
        if (table == NULL) {
            PyErr_NoMemory();
            goto done;
        }
    } else {
        memset(table, 0, sizeof(Py_hash_t) * size);
    }
    size_t mask = size - 1;
    /* Each distinct key into the item's table; those the bitmap says may be first keys are
     * packed at the front of `hashes` (never ahead of the reading), and the cache line of
     * their slot in the pair table is asked for before any slot is read: the loads overlap
     * instead of waiting on each miss in turn (the table is mostly out of cache between items). */
    Py_ssize_t distinct = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        Py_hash_t h = hashes[i];
        size_t at = spread(h) & mask;
        while (table[at] != 0 && table[at] != h) at = (at + 1) & mask;
        if (table[at] == h) continue; /* a key given twice */
        table[at] = h;
        size_t bit = (size_t)h & self->bits_mask;
        if (self->bits[bit / 64] & ((uint64_t)1 << (bit % 64))) {
            hashes[distinct++] = h;
            PREFETCH(&self->slots[spread(h) & self->mask]);
        }
    }
    Py_ssize_t found = 0; /* slots of the keys that are first keys, packed into `hashes` */
    const Slot *stack_hits[STACK_KEYS];
    const Slot **hits = stack_hits;
    if (distinct > STACK_KEYS) {
        hits = (const Slot **)PyMem_Malloc(sizeof(Slot *) * (size_t)distinct);
        if (hits == NULL) {
            PyErr_NoMemory();
            goto done;
        }
    }
    for (Py_ssize_t i = 0; i < distinct; i++) {
        Py_hash_t h = hashes[i];
        size_t at = spread(h) & self->mask;
        const Slot *slot;
        for (;;) {
            slot = &self->slots[at];
            if (slot->first == h || slot->first == 0) break;
            at = (at + 1) & self->mask;
        }
        if (slot->first == 0) continue;
        PREFETCH(self->seconds + slot->start);
        hits[found++] = slot;
    }
    result = PyList_New(0);
    if (result == NULL) goto free_hits;
    for (Py_ssize_t i = 0; i < found; i++) {
        const Slot *slot = hits[i];
        const Py_hash_t *seconds = self->seconds + slot->start;
        for (uint32_t s = 0; s < slot->count; s++) {
            if (!has(table, mask, seconds[s])) continue;
            PyObject *id = PyLong_FromUnsignedLong(self->ids[slot->start + s]);
            if (id == NULL || PyList_Append(result, id) < 0) {
                Py_XDECREF(id);
                Py_CLEAR(result);
                goto free_hits;
            }
            Py_DECREF(id);
        }
    }
free_hits:
    if (hits != stack_hits) PyMem_Free(hits);
done:
    if (hashes != stack_hashes) PyMem_Free(hashes);
    if (table != stack_table) PyMem_Free(table);
    return result;
}

static Py_ssize_t KeyPairs_len(KeyPairs *self) { return self->pairs; }

static PyObject *KeyPairs_get_firsts(KeyPairs *self, void *closure) {
    (void)closure;
    return PyLong_FromSsize_t(self->firsts);
}

static PyObject *KeyPairs_sizeof(KeyPairs *self, PyObject *unused) {
    (void)unused;
    size_t size = sizeof(KeyPairs) + ((self->mask + 1) * sizeof(Slot) + (self->bits_mask + 1) / 8) * (self->slots != NULL) +
                  (size_t)self->pairs * (sizeof(Py_hash_t) + sizeof(uint32_t));
    return PyLong_FromSize_t(size);
}

static PyMethodDef KeyPairs_methods[] = {
    {"probe", (PyCFunction)(void (*)(void))KeyPairs_probe, METH_FASTCALL,
     "probe(*key_sets) -> ids of the pairs whose two keys are both among the keys"},
    {"__sizeof__", (PyCFunction)KeyPairs_sizeof, METH_NOARGS, "memory held, in bytes"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef KeyPairs_getset[] = {
    {"firsts", (getter)KeyPairs_get_firsts, NULL, "distinct first keys", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PySequenceMethods KeyPairs_as_sequence = {
    .sq_length = (lenfunc)KeyPairs_len,
};

static PyTypeObject KeyPairsType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "newswatch.matcher._keypairs.KeyPairs",
    .tp_doc = PyDoc_STR("KeyPairs(triples): (first key, second key) -> ids, probed by hash "
                        "with an item's keys (see keypairs.py)"),
    .tp_basicsize = sizeof(KeyPairs),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)KeyPairs_init,
    .tp_dealloc = (destructor)KeyPairs_dealloc,
    .tp_methods = KeyPairs_methods,
    .tp_getset = KeyPairs_getset,
    .tp_as_sequence = &KeyPairs_as_sequence,
};

static struct PyModuleDef keypairs_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_keypairs",
    .m_doc = "Presearch's pair table in C (see keypairs.py for the Python twin).",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__keypairs(void) {
    if (PyType_Ready(&KeyPairsType) < 0) return NULL;
    PyObject *module = PyModule_Create(&keypairs_module);
    if (module == NULL) return NULL;
    Py_INCREF(&KeyPairsType);
    if (PyModule_AddObject(module, "KeyPairs", (PyObject *)&KeyPairsType) < 0) {
        Py_DECREF(&KeyPairsType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
