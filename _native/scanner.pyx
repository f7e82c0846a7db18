# cython: language_level=3, boundscheck=False, wraparound=False
"""Native masking engine: Python face of _native/mask_engine.h (module gateway.masking._scanner).

`NativeMaskingEngine(compiled, hmac_key)` has the interface of
gateway.masking.reference.ReferenceMaskingEngine and must produce identical bytes and counts.

Rules this module keeps:
- the Hyperscan database is compiled lazily, in the process that scans: a master that only validates
  configuration never compiles, and a worker forked after an engine was built compiles its own database
  and allocates its own scratch on first use (a database or scratch inherited from the parent is freed);
- match callbacks, validators and rewriting are C (mask_engine.h); the GIL is released while a batch is
  processed; Python objects are touched only to lay the batch out and to build the results;
- unchanged values are returned as the very objects passed in, so clean data costs no copies out.
"""

from libc.stdint cimport uint8_t, uint32_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_FromStringAndSize, PyBytes_GET_SIZE

import os
import threading

from gateway.masking.detectors import Flag, Kind
from gateway.masking.profile import MaskingConfigError, OpCode
from gateway.masking.reference import describe_compile_error

cdef extern from "hs.h" nogil:
    ctypedef struct hs_database_t:
        pass
    ctypedef struct hs_scratch_t:
        pass
    ctypedef struct hs_platform_info_t:
        pass
    ctypedef struct hs_compile_error_t:
        char *message
        int expression
    ctypedef struct hs_expr_info_t:
        unsigned int min_width
        unsigned int max_width
    ctypedef int hs_error_t
    hs_error_t hs_compile_multi(const char *const *expressions, const unsigned int *flags,
                                const unsigned int *ids, unsigned int elements, unsigned int mode,
                                const hs_platform_info_t *platform, hs_database_t **db,
                                hs_compile_error_t **error)
    hs_error_t hs_expression_info(const char *expression, unsigned int flags, hs_expr_info_t **info,
                                  hs_compile_error_t **error)
    hs_error_t hs_free_compile_error(hs_compile_error_t *error)
    hs_error_t hs_alloc_scratch(const hs_database_t *db, hs_scratch_t **scratch)
    hs_error_t hs_free_scratch(hs_scratch_t *scratch)
    hs_error_t hs_free_database(hs_database_t *db)
    const char *hs_version()
    ctypedef int (*match_event_handler)(unsigned int id, unsigned long long frm, unsigned long long to,
                                        unsigned int flags, void *context) noexcept nogil
    hs_error_t hs_scan(const hs_database_t *db, const char *data, unsigned int length, unsigned int flags,
                       hs_scratch_t *scratch, match_event_handler onEvent, void *context)
    unsigned int HS_MODE_BLOCK
    hs_error_t HS_SUCCESS

cdef extern from "mask_engine.h" nogil:
    ctypedef struct mask_hmac:
        pass
    ctypedef struct mask_pattern:
        int kind, width, det, param, som, emulated
    ctypedef struct mask_step:
        int type
        size_t index
        uint8_t *name
        size_t nlen
    ctypedef struct mask_rule:
        int is_path
        uint8_t *name
        size_t nlen
        int nsteps
        mask_step *steps
        int op, keep_last
        uint8_t *label
        size_t llen
    ctypedef struct mask_buf:
        uint8_t *p
        size_t n
    ctypedef struct mask_engine:
        int npat, ndet, nrules
        mask_pattern *pats
        uint8_t **labels
        size_t *label_len
        uint8_t *normalise
        int op, keep_last
        uint8_t *op_label
        size_t op_label_len
        mask_rule *rules
        int secret_det, has_som, emu_exhaustive
        mask_hmac hmac
        long long *det_counts
        long long *rule_counts
        hs_database_t *db
        hs_scratch_t *scratch
        mask_buf out
        int error
    mask_engine *mask_engine_create(int npat, int ndet, int nrules)
    void mask_engine_destroy(mask_engine *E)
    void mask_engine_prepare(mask_engine *E)
    long mask_debug_structure(mask_engine *E, const uint8_t *b, size_t n, int exhaustive, unsigned *ids,
                              size_t *ends, size_t cap)
    void mask_init_tables()
    void mask_hmac_init(mask_hmac *m, const uint8_t *key, size_t klen)
    void mask_hmac_digest(const mask_hmac *m, const uint8_t *msg, size_t n, uint8_t *out)
    int mask_batch(mask_engine *E, const uint8_t *buf, size_t buflen, const size_t *offs, const size_t *lens,
                   const uint8_t *isnull, size_t nrec, int rewrite, uint8_t *changed, size_t *out_off,
                   size_t *out_len)
    int mask_iban_length(const uint8_t *cc)
    double mask_shannon_bits(const uint8_t *d, size_t n)
    const char *const mask_secret_keywords[]
    const char *const mask_secret_prefixes[]
    const char *const mask_ssn_samples[]
    const char *const mask_card_shapes[4]
    const char *const mask_ssn_shapes[2]
    const char *const mask_nanp_shapes[6]
    const char *const mask_iban_shapes[2]
    int TRIGGER_FIELD_KEY, TRIGGER_SECRET_KEY, TRIGGER_BACKSLASH
    int K_CARD_RUN, K_CARD_GROUP, K_SSN, K_IBAN_CONTIG, K_IBAN_GROUPED, K_EMAIL, K_PHONE_INTL, K_PHONE_NANP
    int K_PHONE_TRUNK, K_IPV4, K_IPV6, K_AWS, K_PEM, K_JWT, K_SECRET_PREFIX, K_SECRET_ASSIGN
    int K_CUSTOM_REGEX, K_CUSTOM_DICT, K_TRIGGER
    int OP_DROP, OP_NULL, OP_REDACT, OP_HASH, OP_KEEP_LAST
    int STEP_NAME, STEP_INDEX, STEP_ANY
    double MASK_ENTROPY_THRESHOLD
    int MASK_MIN_ASSIGNED_SECRET_LEN, MASK_MIN_PREFIXED_BODY_LEN, MASK_JSON_MAX_DEPTH

mask_init_tables()

# Batches are cut into chunks of about this many bytes (Hyperscan scans at most 4 GiB at once).
DEF CHUNK_BYTES = 256 * 1024 * 1024


cdef uint8_t *_copy_bytes(bytes data) except? NULL:
    cdef Py_ssize_t n = len(data)
    cdef uint8_t *p = <uint8_t *>malloc(n + 1)
    if p == NULL:
        raise MemoryError()
    if n:
        memcpy(p, <const char *>data, n)
    p[n] = 0
    return p


def native_tables():
    """The C side's constants and tables, for tests/masking/test_native_tables.py."""
    cdef int i
    kinds = {name: value for name, value in (
        ("CARD_RUN", K_CARD_RUN), ("CARD_GROUP", K_CARD_GROUP), ("SSN", K_SSN), ("IBAN_CONTIG", K_IBAN_CONTIG),
        ("IBAN_GROUPED", K_IBAN_GROUPED), ("EMAIL", K_EMAIL), ("PHONE_INTL", K_PHONE_INTL),
        ("PHONE_NANP", K_PHONE_NANP), ("PHONE_TRUNK", K_PHONE_TRUNK), ("IPV4", K_IPV4), ("IPV6", K_IPV6),
        ("AWS", K_AWS), ("PEM", K_PEM), ("JWT", K_JWT), ("SECRET_PREFIX", K_SECRET_PREFIX),
        ("SECRET_ASSIGN", K_SECRET_ASSIGN), ("CUSTOM_REGEX", K_CUSTOM_REGEX), ("CUSTOM_DICT", K_CUSTOM_DICT),
        ("TRIGGER", K_TRIGGER))}
    ops = {"DROP": OP_DROP, "NULL": OP_NULL, "REDACT": OP_REDACT, "HASH": OP_HASH, "KEEP_LAST": OP_KEEP_LAST}
    keywords, prefixes, samples = [], [], []
    i = 0
    while mask_secret_keywords[i] != NULL:
        keywords.append(<bytes>mask_secret_keywords[i])
        i += 1
    i = 0
    while mask_secret_prefixes[i] != NULL:
        prefixes.append(<bytes>mask_secret_prefixes[i])
        i += 1
    i = 0
    while mask_ssn_samples[i] != NULL:
        samples.append(<bytes>mask_ssn_samples[i])
        i += 1
    letters = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    cdef uint8_t cc[2]
    iban = {}
    for a in letters:
        for b in letters:
            cc[0] = a
            cc[1] = b
            length = mask_iban_length(cc)
            if length:
                iban[bytes((a, b))] = length
    shapes = {
        "card": tuple((<bytes>mask_card_shapes[i]).decode() for i in range(4)),
        "ssn": tuple((<bytes>mask_ssn_shapes[i]).decode() for i in range(2)),
        "nanp": tuple((<bytes>mask_nanp_shapes[i]).decode() for i in range(6)),
        "iban": tuple((<bytes>mask_iban_shapes[i]).decode() for i in range(2)),
    }
    return {
        "kinds": kinds,
        "shapes": shapes,
        "triggers": {"FIELD_KEY": TRIGGER_FIELD_KEY, "SECRET_KEY": TRIGGER_SECRET_KEY,
                     "BACKSLASH": TRIGGER_BACKSLASH},
        "ops": ops,
        "keywords": tuple(keywords),
        "prefixes": tuple(prefixes),
        "ssn_samples": frozenset(samples),
        "iban_lengths": iban,
        "entropy_threshold": MASK_ENTROPY_THRESHOLD,
        "min_assigned_secret_len": MASK_MIN_ASSIGNED_SECRET_LEN,
        "min_prefixed_body_len": MASK_MIN_PREFIXED_BODY_LEN,
        "max_json_depth": MASK_JSON_MAX_DEPTH,
        "hyperscan_version": (<bytes>hs_version()).decode(),
    }


def native_hmac_hex(bytes key, bytes message):
    """HMAC-SHA256 hex digest computed by the C code (test helper)."""
    cdef mask_hmac m
    cdef uint8_t out[32]
    mask_hmac_init(&m, <const uint8_t *><const char *>key, len(key))
    mask_hmac_digest(&m, <const uint8_t *><const char *>message, len(message), out)
    return (<bytes>out[:32]).hex()


def native_shannon_bits(bytes data):
    return mask_shannon_bits(<const uint8_t *><const char *>data, len(data))


cdef class NativeMaskingEngine:
    """Masks batches of record values with one compiled profile (see gateway.masking.engine)."""

    cdef mask_engine *E
    cdef object _compiled
    cdef list _expressions
    cdef list _det_names
    cdef list _rule_keys
    cdef long _pid
    # Reusable per-call arrays (grown as needed).
    cdef uint8_t *_buf
    cdef size_t _buf_cap
    cdef size_t *_offs
    cdef size_t *_lens
    cdef size_t *_out_off
    cdef size_t *_out_len
    cdef uint8_t *_isnull
    cdef uint8_t *_changed
    cdef size_t _rec_cap
    cdef object _lock
    cdef readonly str implementation

    def __cinit__(self):
        self.E = NULL
        self._buf = NULL
        self._offs = self._lens = self._out_off = self._out_len = NULL
        self._isnull = self._changed = NULL
        self._buf_cap = self._rec_cap = 0
        self._pid = -1

    def __init__(self, compiled, hmac_key):
        cdef int i, k
        cdef mask_engine *E
        cdef mask_rule *rule
        self.implementation = "native"
        self._lock = threading.Lock()
        self._compiled = compiled
        patterns = compiled.patterns
        names = compiled.detector_names
        rules = compiled.field_rules
        self._expressions = [p.expression for p in patterns]
        self._det_names = list(names)
        self._rule_keys = [rule_.count_key for rule_ in rules]
        for i, p in enumerate(patterns):
            if b"\x00" in p.expression:
                raise MaskingConfigError(describe_compile_error(compiled, f"expression {i} contains a NUL byte"))
            if p.kind == Kind.CUSTOM_REGEX:
                _check_expression(compiled, i, p.expression, p.flags)
        E = mask_engine_create(len(patterns), len(names), len(rules))
        if E == NULL:
            raise MemoryError()
        self.E = E
        for i, p in enumerate(patterns):
            E.pats[i].kind = int(p.kind)
            E.pats[i].width = p.width
            E.pats[i].det = p.detector
            E.pats[i].param = p.param
            E.pats[i].som = 1 if p.flags & Flag.SOM_LEFTMOST else 0
        for i, label in enumerate(compiled.labels):
            E.labels[i] = _copy_bytes(label)
            E.label_len[i] = len(label)
            E.normalise[i] = 1 if compiled.normalise[i] else 0
        op = compiled.operator
        E.op = int(op.code)
        E.keep_last = op.keep_last
        if op.label is not None:
            E.op_label = _copy_bytes(op.label)
            E.op_label_len = len(op.label)
        for i, rule_ in enumerate(rules):
            rule = &E.rules[i]
            rule.op = int(rule_.operator.code)
            rule.keep_last = rule_.operator.keep_last
            if rule_.operator.label is not None:
                rule.label = _copy_bytes(rule_.operator.label)
                rule.llen = len(rule_.operator.label)
            if rule_.name is not None:
                rule.is_path = 0
                rule.name = _copy_bytes(rule_.name)
                rule.nlen = len(rule_.name)
                continue
            rule.is_path = 1
            steps = rule_.path
            rule.steps = <mask_step *>malloc(len(steps) * sizeof(mask_step))
            if rule.steps == NULL:
                raise MemoryError()
            rule.nsteps = len(steps)
            for k, step in enumerate(steps):
                rule.steps[k].name = NULL
                rule.steps[k].nlen = 0
                rule.steps[k].index = 0
                if step.name is not None:
                    rule.steps[k].type = STEP_NAME
                    rule.steps[k].name = _copy_bytes(step.name)
                    rule.steps[k].nlen = len(step.name)
                elif step.index is not None:
                    rule.steps[k].type = STEP_INDEX
                    rule.steps[k].index = step.index
                else:
                    rule.steps[k].type = STEP_ANY
        E.secret_det = names.index("generic_secret") if compiled.json_secret_members else -1
        E.has_som = 1 if compiled.has_som_patterns else 0
        mask_engine_prepare(E)
        key = hmac_key or b""
        mask_hmac_init(&E.hmac, <const uint8_t *><const char *>key, len(key))

    def __dealloc__(self):
        mask_engine_destroy(self.E)
        free(self._buf)
        free(self._offs)
        free(self._lens)
        free(self._out_off)
        free(self._out_len)
        free(self._isnull)
        free(self._changed)

    cdef _ensure_database(self):
        """Compile the database and allocate scratch in this process, on first use."""
        cdef long pid = os.getpid()
        cdef hs_database_t *db = NULL
        cdef hs_scratch_t *scratch = NULL
        cdef hs_compile_error_t *err = NULL
        cdef unsigned int n
        cdef const char **exprs
        cdef unsigned int *flags
        cdef unsigned int *ids
        cdef hs_error_t rc
        cdef unsigned int i
        if self._pid == pid and self.E.db != NULL and self.E.scratch != NULL:
            return
        # Anything inherited across fork belongs to the parent: free this process's copy, start afresh.
        if self.E.scratch != NULL:
            hs_free_scratch(self.E.scratch)
            self.E.scratch = NULL
        if self.E.db != NULL:
            hs_free_database(self.E.db)
            self.E.db = NULL
        wanted = [i for i in range(len(self._expressions)) if not self.E.pats[i].emulated]
        n = len(wanted)
        exprs = <const char **>malloc(n * sizeof(char *))
        flags = <unsigned int *>malloc(n * sizeof(unsigned int))
        ids = <unsigned int *>malloc(n * sizeof(unsigned int))
        if exprs == NULL or flags == NULL or ids == NULL:
            free(exprs)
            free(flags)
            free(ids)
            raise MemoryError()
        for i in range(n):
            exprs[i] = <const char *>(<bytes>self._expressions[wanted[i]])
            flags[i] = self._compiled.patterns[wanted[i]].flags
            ids[i] = wanted[i]
        rc = hs_compile_multi(exprs, flags, ids, n, HS_MODE_BLOCK, NULL, &db, &err)
        free(exprs)
        free(flags)
        free(ids)
        if rc != HS_SUCCESS:
            message = err.message.decode(errors="replace") if err != NULL else f"error {rc}"
            if err != NULL and err.expression >= 0:
                message = f"Expression {err.expression}: {message}"
            hs_free_compile_error(err)
            raise MaskingConfigError(describe_compile_error(self._compiled, message))
        rc = hs_alloc_scratch(db, &scratch)
        if rc != HS_SUCCESS:
            hs_free_database(db)
            raise MemoryError("Hyperscan scratch allocation failed")
        self.E.db = db
        self.E.scratch = scratch
        self._pid = pid

    cdef _reserve(self, size_t nbytes, size_t nrec):
        cdef void *p
        if nbytes > self._buf_cap:
            p = realloc(self._buf, nbytes)
            if p == NULL:
                raise MemoryError()
            self._buf = <uint8_t *>p
            self._buf_cap = nbytes
        if nrec > self._rec_cap:
            self._offs = <size_t *>_grow(self._offs, nrec * sizeof(size_t))
            self._lens = <size_t *>_grow(self._lens, nrec * sizeof(size_t))
            self._out_off = <size_t *>_grow(self._out_off, nrec * sizeof(size_t))
            self._out_len = <size_t *>_grow(self._out_len, nrec * sizeof(size_t))
            self._isnull = <uint8_t *>_grow(self._isnull, nrec)
            self._changed = <uint8_t *>_grow(self._changed, nrec)
            self._rec_cap = nrec

    def emulated_pattern_ids(self):
        """Ids of the patterns the structure pass reports instead of Hyperscan (for tests)."""
        return [i for i in range(self.E.npat) if self.E.pats[i].emulated]

    def structure_ends(self, bytes text, bint exhaustive=True):
        """(pattern id, end) pairs the structure pass reports for text (for tests)."""
        cdef size_t cap = 1024
        cdef long count
        cdef unsigned *ids
        cdef size_t *ends
        while True:
            ids = <unsigned *>malloc(cap * sizeof(unsigned))
            ends = <size_t *>malloc(cap * sizeof(size_t))
            if ids == NULL or ends == NULL:
                free(ids)
                free(ends)
                raise MemoryError()
            count = mask_debug_structure(self.E, <const uint8_t *><const char *>text, len(text), exhaustive,
                                         ids, ends, cap)
            if count < 0:
                free(ids)
                free(ends)
                raise MemoryError()
            if <size_t>count <= cap:
                result = sorted((ids[k], ends[k]) for k in range(count))
                free(ids)
                free(ends)
                return result
            free(ids)
            free(ends)
            cap = count

    def raw_scan(self, data):
        """Hyperscan alone over `data` (no structure pass, no validation): the ceiling for benchmarks."""
        with self._lock:
            self._ensure_database()
            return _raw_scan(self.E, data)

    def mask_values(self, values):
        out = list(values)
        with self._lock:  # the batch buffers are the engine's own; the GIL is released while they are used
            counts = self._run(out, 1)
        return out, counts

    def scan_counts(self, values):
        with self._lock:
            return self._run(list(values), 0)

    cdef dict _run(self, list items, int rewrite):
        """Mask `items` in place (rewrite) or only count; returns the counts."""
        cdef Py_ssize_t n = len(items), i = 0, j, k
        cdef size_t total
        cdef long long *det_totals
        self._ensure_database()
        ndet = len(self._det_names)
        nrules = len(self._rule_keys)
        det_totals_list = [0] * ndet
        rule_totals_list = [0] * nrules
        # Non-bytes buffers are masked through a bytes copy; the caller still gets its own object back
        # when nothing changed.
        originals = None
        for k in range(n):
            value = items[k]
            if value is not None and not PyBytes_CheckExact(value):
                if originals is None:
                    originals = {}
                originals[k] = value
                items[k] = bytes(value)
        while i < n:
            j = i
            total = 0
            while j < n and (j == i or total < CHUNK_BYTES):
                if items[j] is not None:
                    total += PyBytes_GET_SIZE(items[j]) + 1
                j += 1
            self._run_chunk(items, i, j, total, rewrite, det_totals_list, rule_totals_list)
            i = j
        if originals is not None:
            for k, value in originals.items():
                if isinstance(items[k], bytes) and items[k] == value:
                    items[k] = value
        counts = {}
        for k in range(ndet):
            if det_totals_list[k]:
                counts[self._det_names[k]] = det_totals_list[k]
        for k in range(nrules):
            if rule_totals_list[k]:
                counts[self._rule_keys[k]] = rule_totals_list[k]
        return counts

    cdef _run_chunk(self, list items, Py_ssize_t start, Py_ssize_t stop, size_t total, int rewrite,
                    list det_totals, list rule_totals):
        cdef size_t nrec = stop - start, off = 0, r, length
        cdef Py_ssize_t k
        cdef int rc
        cdef mask_engine *E = self.E
        self._reserve(total + 1, nrec)
        for r in range(nrec):
            value = items[start + r]
            self._offs[r] = off
            if value is None:
                self._isnull[r] = 1
                self._lens[r] = 0
                continue
            self._isnull[r] = 0
            length = PyBytes_GET_SIZE(value)
            self._lens[r] = length
            if length:
                memcpy(self._buf + off, PyBytes_AS_STRING(value), length)
            self._buf[off + length] = 0
            off += length + 1
        with nogil:
            rc = mask_batch(E, self._buf, off, self._offs, self._lens, self._isnull, nrec, rewrite,
                            self._changed, self._out_off, self._out_len)
        if rc != 0:
            if E.error == 12:  # ENOMEM
                raise MemoryError("masking engine ran out of memory")
            raise RuntimeError(f"Hyperscan scan failed (error {E.error})")
        for k in range(E.ndet):
            det_totals[k] += E.det_counts[k]
        for k in range(E.nrules):
            rule_totals[k] += E.rule_counts[k]
        if rewrite:
            for r in range(nrec):
                if self._changed[r]:
                    items[start + r] = PyBytes_FromStringAndSize(
                        <const char *>(E.out.p + self._out_off[r]), self._out_len[r])


cdef int _count_match(unsigned int id, unsigned long long frm, unsigned long long to, unsigned int flags,
                      void *ctx) noexcept nogil:
    (<long long *>ctx)[0] += 1
    return 0


cdef long long _raw_scan(mask_engine *E, data) except -1:
    cdef const unsigned char[::1] view = data
    cdef long long count = 0
    cdef hs_error_t rc
    if view.shape[0] == 0:
        return 0
    with nogil:
        rc = hs_scan(E.db, <const char *>&view[0], <unsigned int>view.shape[0], 0, E.scratch, _count_match, &count)
    if rc != HS_SUCCESS:
        raise RuntimeError(f"hs_scan failed: {rc}")
    return count


cdef class CountingDatabase:
    """A block-mode Hyperscan database of the given patterns whose scans only count matches, with a C
    callback: Hyperscan's own cost for a pattern set (the benchmarks' ceiling)."""

    cdef hs_database_t *db
    cdef hs_scratch_t *scratch

    def __cinit__(self, list expressions, list flags):
        cdef hs_compile_error_t *err = NULL
        cdef unsigned int n = len(expressions), i
        cdef const char **exprs = <const char **>malloc(n * sizeof(char *))
        cdef unsigned int *fl = <unsigned int *>malloc(n * sizeof(unsigned int))
        cdef unsigned int *ids = <unsigned int *>malloc(n * sizeof(unsigned int))
        cdef hs_error_t rc
        self.db = NULL
        self.scratch = NULL
        if exprs == NULL or fl == NULL or ids == NULL:
            free(exprs)
            free(fl)
            free(ids)
            raise MemoryError()
        for i in range(n):
            exprs[i] = <const char *>(<bytes>expressions[i])
            fl[i] = flags[i]
            ids[i] = i
        rc = hs_compile_multi(exprs, fl, ids, n, HS_MODE_BLOCK, NULL, &self.db, &err)
        free(exprs)
        free(fl)
        free(ids)
        if rc != HS_SUCCESS:
            message = err.message.decode(errors="replace") if err != NULL else str(rc)
            hs_free_compile_error(err)
            raise ValueError(message)
        if hs_alloc_scratch(self.db, &self.scratch) != HS_SUCCESS:
            raise MemoryError()

    def __dealloc__(self):
        if self.scratch != NULL:
            hs_free_scratch(self.scratch)
        if self.db != NULL:
            hs_free_database(self.db)

    def count(self, data):
        cdef const unsigned char[::1] view = data
        cdef long long matches = 0
        cdef hs_error_t rc
        if view.shape[0] == 0:
            return 0
        with nogil:
            rc = hs_scan(self.db, <const char *>&view[0], <unsigned int>view.shape[0], 0, self.scratch,
                         _count_match, &matches)
        if rc != HS_SUCCESS:
            raise RuntimeError(f"hs_scan failed: {rc}")
        return matches


cdef void *_grow(void *p, size_t nbytes) except NULL:
    cdef void *q = realloc(p, nbytes if nbytes else 1)
    if q == NULL:
        raise MemoryError()
    return q


cdef _check_expression(compiled, int index, bytes expression, unsigned int flags):
    """Reject a custom regex Hyperscan cannot compile or that can match the empty string, at build time."""
    cdef hs_expr_info_t *info = NULL
    cdef hs_compile_error_t *err = NULL
    cdef hs_error_t rc = hs_expression_info(<const char *>expression, flags, &info, &err)
    if rc != HS_SUCCESS:
        message = err.message.decode(errors="replace") if err != NULL else f"error {rc}"
        hs_free_compile_error(err)
        raise MaskingConfigError(describe_compile_error(compiled, f"Expression {index}: {message}"))
    min_width = info.min_width
    free(info)
    if min_width == 0:
        raise MaskingConfigError(
            describe_compile_error(compiled, f"Expression {index}: the pattern can match an empty string")
        )
