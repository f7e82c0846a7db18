/* The native masking engine: one Hyperscan scan over a whole batch, C match callbacks, C validators, and
 * rewriting of only the records that need it.
 *
 * Semantics are those of gateway/masking/reference.py (the specification). What is native-only is how
 * the work is avoided without changing any result:
 *   1. The batch is joined with NUL separators and scanned once: by Hyperscan for the literal-anchored
 *      patterns, and by the structure pass below for the character-class patterns (digit shapes, IBAN
 *      and IPv6 groups) that would slow a Hyperscan database down several times. Both report the ends the
 *      reference's patterns report. No pattern that yields findings matches NUL, so a record's matches
 *      are its own.
 *   2. A record without a match cannot have a finding. A record whose matches yield no candidate in its
 *      own bytes is clean too (see mask_record), so clean data is never parsed. TRIGGER matches (field-rule
 *      keys, secret-naming keys, backslashes) send a record to the full path.
 *   3. Plain text reuses its batch matches, unless the profile has custom regexes (they track the start
 *      of a match, which may lie in an earlier record): then the record is scanned again on its own.
 *   4. A JSON record is parsed; an unescaped scan unit (string value or number) reuses the batch matches
 *      ending inside it (its neighbours are quotes and JSON separators, which no finding pattern
 *      matches); a unit with escapes is decoded and scanned on its own, and so is every unit with a batch
 *      match when custom regexes are present.
 * Memory is owned by the engine and reused across calls; on allocation failure a call returns an error
 * and the engine stays usable. One engine must not be used by two threads at once (the wrapper locks).
 */
#ifndef STREAMGATE_MASK_ENGINE_H
#define STREAMGATE_MASK_ENGINE_H

#include <errno.h>
#include <hs.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mask_json.h"
#include "mask_sha256.h"
#include "mask_validators.h"

enum { OP_DROP = 0, OP_NULL, OP_REDACT, OP_HASH, OP_KEEP_LAST };
enum { STEP_NAME = 0, STEP_INDEX, STEP_ANY };

typedef struct {
    int type;
    size_t index;
    uint8_t *name;
    size_t nlen;
} mask_step;

typedef struct {
    int is_path;
    uint8_t *name; /* name rule: ASCII lower case */
    size_t nlen;
    int nsteps;
    mask_step *steps;
    int op, keep_last;
    uint8_t *label;
    size_t llen;
} mask_rule;

typedef struct {
    unsigned id;
    size_t from, to_first, to_last; /* consecutive ends of one pattern with the same start, merged */
} mask_match;

typedef struct {
    mask_match *p;
    size_t n, cap;
    uint32_t *last_gen;
    size_t *last_idx;
    uint32_t gen;
    int oom;
} mask_matchvec;

typedef struct {
    uint8_t *p;
    size_t n, cap;
} mask_buf;

typedef struct {
    size_t s, e, rep_off, rep_len;
} mask_edit;

typedef struct {
    size_t start, end;
    int dropped;
} mask_elem;

typedef struct {
    int is_index;
    size_t index;
    const uint8_t *key;
    size_t klen;
} mask_pathc;

typedef struct {
    size_t rec;
    mask_match m;
} mask_recmatch;

typedef struct {
    /* configuration */
    int npat;
    mask_pattern *pats;
    int ndet;
    uint8_t **labels;
    size_t *label_len;
    uint8_t *normalise;
    int op, keep_last;
    uint8_t *op_label;
    size_t op_label_len;
    int nrules;
    mask_rule *rules;
    int secret_det; /* generic_secret's detector index when JSON secret members apply, else -1 */
    int has_som;
    /* pattern ids the structure pass produces (-1 when the profile lacks them) */
    int emu_card_run, emu_card_group[4], emu_ssn[2], emu_nanp[6], emu_trunk, emu_ipv4, emu_iban[2], emu_ipv6g;
    int emu_digits, emu_iban_any;
    int emu_exhaustive; /* tests: examine every digit run, not only those that could hold a finding */
    mask_hmac hmac;
    /* counts of the current call */
    long long *det_counts, *rule_counts;
    /* Hyperscan (set up by the Cython wrapper, per process) */
    hs_database_t *db;
    hs_scratch_t *scratch;
    /* scan state */
    mask_matchvec raw, um;
    mask_unit_state ust;
    mask_candvec cands;
    mask_recmatch *rm, *urng;
    size_t nrm, rmcap, nurng, urngcap;
    /* record state */
    mask_jparser jp;
    mask_buf arena, reps, tmp, norm, out;
    mask_edit *edits;
    size_t nedits, editcap;
    mask_elem *elems;
    size_t nelems, elemcap;
    mask_pathc path[MASK_JSON_MAX_DEPTH + 2];
    const uint8_t *rec;
    size_t rec_len;
    const mask_recmatch *rr;
    size_t nrr, rcur, reach;
    int rewrite;
    int check_secret_keys; /* the record has a secret-naming key (or an escape that may hide one) */
    int can_drop;          /* the operator or a field rule drops elements: track element ranges */
    size_t *rec_first, reccap; /* per record: first index into rm (counting sort by record) */
    int error; /* 0, ENOMEM, or a Hyperscan error code (negative) */
} mask_engine;

/* ---------------------------------------------------------------------------------- buffers */
static int mask_grow(void **p, size_t *cap, size_t need, size_t elem) {
    size_t nc;
    void *q;
    if (need <= *cap) return 0;
    nc = *cap ? *cap : 64;
    while (nc < need) nc *= 2;
    q = realloc(*p, nc * elem);
    if (!q) return -1;
    *p = q;
    *cap = nc;
    return 0;
}

/* Sort small arrays by insertion (they are usually tiny and nearly sorted), large ones with qsort. */
#define MASK_SORT(T, arr, count, cmp)                                                    \
    do {                                                                                 \
        size_t n_ = (count);                                                             \
        T *a_ = (arr);                                                                   \
        if (n_ > 32) {                                                                   \
            qsort(a_, n_, sizeof(T), cmp);                                               \
            break;                                                                       \
        }                                                                                \
        for (size_t i_ = 1; i_ < n_; i_++) {                                             \
            T x_ = a_[i_];                                                               \
            size_t j_ = i_;                                                              \
            while (j_ > 0 && cmp(&a_[j_ - 1], &x_) > 0) {                                \
                a_[j_] = a_[j_ - 1];                                                     \
                j_--;                                                                    \
            }                                                                            \
            a_[j_] = x_;                                                                 \
        }                                                                                \
    } while (0)

static int mask_buf_reserve(mask_engine *E, mask_buf *b, size_t extra) {
    if (mask_grow((void **)&b->p, &b->cap, b->n + extra, 1)) {
        E->error = ENOMEM;
        return -1;
    }
    return 0;
}

static int mask_buf_put(mask_engine *E, mask_buf *b, const void *d, size_t len) {
    if (mask_buf_reserve(E, b, len)) return -1;
    if (len) memcpy(b->p + b->n, d, len);
    b->n += len;
    return 0;
}

/* ---------------------------------------------------------------------------------- scanning */
static int mask_on_match(unsigned int id, unsigned long long from, unsigned long long to, unsigned int flags,
                         void *ctx) {
    mask_matchvec *v = (mask_matchvec *)ctx;
    (void)flags;
    if (v->last_gen[id] == v->gen) {
        mask_match *m = &v->p[v->last_idx[id]];
        if (m->from == (size_t)from && m->to_last + 1 == (size_t)to) {
            m->to_last = (size_t)to;
            return 0;
        }
    }
    if (mask_grow((void **)&v->p, &v->cap, v->n + 1, sizeof *v->p)) {
        v->oom = 1;
        return 1; /* stop the scan */
    }
    v->p[v->n].id = id;
    v->p[v->n].from = (size_t)from;
    v->p[v->n].to_first = (size_t)to;
    v->p[v->n].to_last = (size_t)to;
    v->last_gen[id] = v->gen;
    v->last_idx[id] = v->n;
    v->n++;
    return 0;
}

static int mask_cmp_match(const void *a, const void *b) {
    const mask_match *x = (const mask_match *)a, *y = (const mask_match *)b;
    if (x->to_first != y->to_first) return x->to_first < y->to_first ? -1 : 1;
    if (x->id != y->id) return x->id < y->id ? -1 : 1;
    return x->from < y->from ? -1 : x->from > y->from;
}

static void mask_next_gen(uint32_t *gen, uint32_t *marks, size_t n) {
    if (++*gen == 0) { /* wrapped: forget every mark */
        memset(marks, 0, n * sizeof *marks);
        *gen = 1;
    }
}

static int mask_structure_scan(mask_engine *E, mask_matchvec *v, const uint8_t *b, size_t n);

/* Hyperscan and the structure pass over d[0..n): v holds merged match ranges sorted by end. */
static int mask_scan(mask_engine *E, mask_matchvec *v, const uint8_t *d, size_t n, int sort) {
    hs_error_t rc;
    v->n = 0;
    v->oom = 0;
    mask_next_gen(&v->gen, v->last_gen, (size_t)E->npat);
    if (n == 0) return 0;
    rc = hs_scan(E->db, (const char *)d, (unsigned int)n, 0, E->scratch, mask_on_match, v);
    if (v->oom) {
        E->error = ENOMEM;
        return -1;
    }
    if (rc != HS_SUCCESS) {
        E->error = rc < 0 ? rc : -1000;
        return -1;
    }
    if (mask_structure_scan(E, v, d, n)) {
        E->error = ENOMEM;
        return -1;
    }
    for (size_t i = 1; sort && i < v->n; i++)
        if (mask_cmp_match(&v->p[i - 1], &v->p[i]) > 0) {
            MASK_SORT(mask_match, v->p, v->n, mask_cmp_match);
            break;
        }
    return 0;
}

/* ---------------------------------------------------------------------------------- structure pass */
/* Hyperscan runs several times slower once a database holds unanchored character-class patterns (digit
 * runs, IBAN and IPv6 groups): nothing literal lets it skip ahead. Those precise trigger patterns of the
 * reference are therefore not compiled; this pass reports the very ends they would report, inside every
 * region that could hold a finding:
 *   - digit shapes (cards, SSNs, NANP and trunk phones, IPv4) only use [0-9 ().-] (CL_X), so all their
 *     matches lie inside one maximal CL_X run. A finding of the card/SSN/phone kinds needs >= 9 digits in
 *     its run and an IPv4 needs >= 3 dots and >= 4 digits, so other runs are skipped (no trigger there
 *     could lead to a finding, and the run-dedupe state only concerns triggers of the same run);
 *   - an IBAN starts with two capitals followed by a digit, i.e. right before a CL_X run;
 *   - the full-form IPv6 trigger needs a hex digit before a colon; '::' stays a Hyperscan literal.
 * Shapes use the notation of gateway/masking/detectors.py: d=[0-9] ?=[ -] U=[A-Z] A=[A-Z0-9]. */
static const char *const mask_card_shapes[4] = {"dddd?dddd?dddd?dddd", "dddd?dddd?dddd?dddd?ddd", "dddd?dddddd?ddddd",
                                                "dddd?dddddd?dddd"};
static const char *const mask_ssn_shapes[2] = {"ddd-dd-dddd", "ddd dd dddd"};
static const char *const mask_nanp_shapes[6] = {"ddd-ddd-dddd", "ddd.ddd.dddd", "ddd ddd dddd", "(ddd)ddd-dddd",
                                                "(ddd) ddd-dddd", "1-ddd-ddd-dddd"};
static const char *const mask_iban_shapes[2] = {"UUddAAAAAAAAAAA", "UUdd AAAA AAAA A"};

#define MASK_IS_DIGIT(c) ((c) >= '0' && (c) <= '9')

static int mask_shape_ok(const char *shape, size_t w, const uint8_t *p) {
    for (size_t i = 0; i < w; i++) {
        uint8_t c = p[i];
        switch (shape[i]) {
        case 'd': if (!MASK_IS_DIGIT(c)) return 0; break;
        case '?': if (c != ' ' && c != '-') return 0; break;
        case 'U': if (c < 'A' || c > 'Z') return 0; break;
        case 'A': if (!IS(c, CL_UPALNUM)) return 0; break;
        default: if (c != (uint8_t)shape[i]) return 0;
        }
    }
    return 1;
}

static int mask_push_match(mask_matchvec *v, int pid, size_t to_first, size_t to_last) {
    if (mask_grow((void **)&v->p, &v->cap, v->n + 1, sizeof *v->p)) return -1;
    v->p[v->n].id = (unsigned)pid;
    v->p[v->n].from = 0;
    v->p[v->n].to_first = to_first;
    v->p[v->n].to_last = to_last;
    v->n++;
    return 0;
}

/* Separator counts of a digit-shape run: a shape is only tried when the run has the separators it needs. */
typedef struct {
    size_t digits, space, dash, dot, lparen, rparen;
} mask_run_info;

/* Ends of fixed-width `shape` (width w) inside the run [rs, re). */
static int mask_emit_shape(mask_matchvec *v, int pid, const char *shape, size_t w, const uint8_t *b, size_t rs,
                           size_t re) {
    if (pid < 0) return 0;
    for (size_t e = rs + w; e <= re; e++)
        if (MASK_IS_DIGIT(b[e - 1]) && mask_shape_ok(shape, w, b + e - w))
            if (mask_push_match(v, pid, e, e)) return -1;
    return 0;
}

static int mask_emit_digit_run(mask_engine *E, mask_matchvec *v, const uint8_t *b, size_t n, size_t rs, size_t re,
                               const mask_run_info *ri) {
    static const size_t card_w[4] = {19, 23, 17, 16}, nanp_w[6] = {12, 12, 12, 13, 14, 14};
    size_t space_dash = ri->space + ri->dash;
    /* [0-9]{13,}: every end 13+ digits into a digit run. Its extractor takes the whole digit run and keeps
     * it only when it stands apart from letters and digits and passes the card validator, so other runs
     * are not reported at all (in tests, exhaustive mode reports them, to compare with Hyperscan). */
    if (E->emu_card_run >= 0 && ri->digits >= 13)
        for (size_t a = rs; a < re;) {
            size_t z = a;
            while (z < re && MASK_IS_DIGIT(b[z])) z++;
            if (z - a >= 13 &&
                (E->emu_exhaustive || (!(a > 0 && IS(b[a - 1], CL_ALNUM)) && !(z < n && IS(b[z], CL_ALNUM)) &&
                                       mask_card_ok(b + a, z - a))) &&
                mask_push_match(v, E->emu_card_run, a + 13, z))
                return -1;
            a = z > a ? z : a + 1;
        }
    if (space_dash >= 2) {
        static const size_t card_seps[4] = {3, 4, 2, 2}, card_digits[4] = {16, 19, 15, 14};
        for (int k = 0; k < 4; k++)
            if (space_dash >= card_seps[k] && ri->digits >= card_digits[k] &&
                mask_emit_shape(v, E->emu_card_group[k], mask_card_shapes[k], card_w[k], b, rs, re))
                return -1;
        if (ri->dash >= 2 && mask_emit_shape(v, E->emu_ssn[0], mask_ssn_shapes[0], 11, b, rs, re)) return -1;
        if (ri->space >= 2 && mask_emit_shape(v, E->emu_ssn[1], mask_ssn_shapes[1], 11, b, rs, re)) return -1;
    }
    if (ri->digits >= 10) {
        for (int k = 0; k < 6; k++) {
            int need = k == 0 ? ri->dash >= 2 : k == 1 ? ri->dot >= 2 : k == 2 ? ri->space >= 2 :
                       k == 5 ? ri->dash >= 3 : (ri->lparen && ri->rparen && ri->dash);
            if (need && mask_emit_shape(v, E->emu_nanp[k], mask_nanp_shapes[k], nanp_w[k], b, rs, re)) return -1;
        }
    }
    if (E->emu_trunk >= 0 && ri->space + ri->dash + ri->dot >= 1) /* 0[1-9][0-9]{0,3}[ .-][0-9]{2} */
        for (size_t e = rs + 5; e <= re; e++) {
            size_t j = e - 3;
            if (!MASK_IS_DIGIT(b[e - 1]) || !MASK_IS_DIGIT(b[e - 2])) continue;
            if (b[j] != ' ' && b[j] != '.' && b[j] != '-') continue;
            for (size_t k = 0; k <= 3; k++) {
                if (k > 0 && !MASK_IS_DIGIT(b[j - k])) break;
                if (j < rs + k + 2) break;
                if (b[j - k - 1] >= '1' && b[j - k - 1] <= '9' && b[j - k - 2] == '0') {
                    if (mask_push_match(v, E->emu_trunk, e, e)) return -1;
                    break;
                }
            }
        }
    return 0;
}

static int mask_emit_ipv4(mask_engine *E, mask_matchvec *v, const uint8_t *b, size_t rs, size_t re) {
    /* [0-9]\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9] */
    for (size_t e = rs + 7; e <= re; e++) {
        size_t p = e - 2;
        int ok = 1;
        if (!MASK_IS_DIGIT(b[e - 1]) || b[p] != '.') continue;
        for (int g = 0; g < 2 && ok; g++) {
            size_t j = p;
            while (j > rs && MASK_IS_DIGIT(b[j - 1]) && p - j < 4) j--;
            if (p - j < 1 || p - j > 3 || j <= rs || b[j - 1] != '.') ok = 0;
            else p = j - 1;
        }
        if (ok && p > rs && MASK_IS_DIGIT(b[p - 1]) && mask_push_match(v, E->emu_ipv4, e, e)) return -1;
    }
    return 0;
}

/* (?:[0-9A-Fa-f]{1,4}:){6} ending at e, inside the hex/colon run starting at lo. */
static int mask_six_groups_end(const uint8_t *b, size_t lo, size_t e) {
    size_t pos = e - 1;
    for (int g = 0; g < 6; g++) {
        size_t j = pos;
        while (j > lo && IS(b[j - 1], CL_HEX) && pos - j < 5) j--;
        if (pos - j < 1) return 0;
        if (g == 5) return 1;
        if (pos - j > 4 || j <= lo || b[j - 1] != ':') return 0;
        pos = j - 1;
    }
    return 1;
}

/* Next position >= i (i >= 1) of a ':' right after a hex digit, or n. */
static size_t mask_next_hex_colon(const uint8_t *b, size_t n, size_t i) {
#if defined(__SSE2__)
    const __m128i colon = _mm_set1_epi8(':'), d0 = _mm_set1_epi8('0' - 1), d9 = _mm_set1_epi8('9' + 1);
    const __m128i la = _mm_set1_epi8('a' - 1), lf = _mm_set1_epi8('f' + 1), bit = _mm_set1_epi8(0x20);
    while (i + 16 <= n) {
        __m128i x = _mm_loadu_si128((const __m128i *)(const void *)(b + i));
        int m = _mm_movemask_epi8(_mm_cmpeq_epi8(x, colon));
        if (m) {
            __m128i p = _mm_loadu_si128((const __m128i *)(const void *)(b + i - 1));
            __m128i low = _mm_or_si128(p, bit); /* A-F -> a-f; digits keep their value */
            __m128i hex = _mm_or_si128(_mm_and_si128(_mm_cmpgt_epi8(p, d0), _mm_cmplt_epi8(p, d9)),
                                       _mm_and_si128(_mm_cmpgt_epi8(low, la), _mm_cmplt_epi8(low, lf)));
            m &= _mm_movemask_epi8(hex);
            if (m) return i + (size_t)__builtin_ctz((unsigned)m);
        }
        i += 16;
    }
#endif
    while (i < n && !(b[i] == ':' && IS(b[i - 1], CL_HEX))) i++;
    return i;
}

static inline unsigned mask_popcount64(uint64_t v) {
    v = v - ((v >> 1) & 0x5555555555555555ull);
    v = (v & 0x3333333333333333ull) + ((v >> 2) & 0x3333333333333333ull);
    v = (v + (v >> 4)) & 0x0F0F0F0F0F0F0F0Full;
    return (unsigned)((v * 0x0101010101010101ull) >> 56);
}

/* Digit, CL_X and [A-Z] masks of b[base..base+lim), bit k for byte base+k (lim <= 64). */
static void mask_block_masks(const uint8_t *b, size_t base, size_t lim, uint64_t *xm, uint64_t *dm, uint64_t *um) {
    uint64_t x = 0, d = 0, u = 0;
#if defined(__SSE2__)
    if (lim == 64) {
        const __m128i d0 = _mm_set1_epi8('0' - 1), d9 = _mm_set1_epi8('9' + 1), sp = _mm_set1_epi8(' ');
        const __m128i lp = _mm_set1_epi8('('), rp = _mm_set1_epi8(')'), dot = _mm_set1_epi8('.');
        const __m128i dash = _mm_set1_epi8('-'), ua = _mm_set1_epi8('A' - 1), uz = _mm_set1_epi8('Z' + 1);
        for (int q = 0; q < 4; q++) {
            __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(b + base + 16 * q));
            __m128i dig = _mm_and_si128(_mm_cmpgt_epi8(v, d0), _mm_cmplt_epi8(v, d9));
            __m128i sep = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, sp), _mm_cmpeq_epi8(v, lp)),
                                       _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, rp), _mm_cmpeq_epi8(v, dot)),
                                                    _mm_cmpeq_epi8(v, dash)));
            d |= (uint64_t)(unsigned)_mm_movemask_epi8(dig) << (16 * q);
            x |= (uint64_t)(unsigned)_mm_movemask_epi8(_mm_or_si128(dig, sep)) << (16 * q);
            u |= (uint64_t)(unsigned)_mm_movemask_epi8(_mm_and_si128(_mm_cmpgt_epi8(v, ua), _mm_cmplt_epi8(v, uz)))
                 << (16 * q);
        }
        *xm = x;
        *dm = d;
        *um = u;
        return;
    }
#endif
    for (size_t k = 0; k < lim; k++) {
        uint8_t code = mask_xcode[b[base + k]];
        if (code != X_NONE) x |= 1ull << k;
        if (code == X_DIGIT) d |= 1ull << k;
        if (b[base + k] >= 'A' && b[base + k] <= 'Z') u |= 1ull << k;
    }
    *xm = x;
    *dm = d;
    *um = u;
}

/* One maximal CL_X run [rs, re) holding `digits` digits: report what the digit-shape patterns match. */
static int mask_digit_run(mask_engine *E, mask_matchvec *v, const uint8_t *b, size_t n, size_t rs, size_t re,
                          size_t digits) {
    mask_run_info ri;
    size_t d = rs;
    while (d < re && !MASK_IS_DIGIT(b[d])) d++;
    if (E->emu_iban_any && d == rs && rs >= 2 && b[rs - 1] >= 'A' && b[rs - 1] <= 'Z' && b[rs - 2] >= 'A' &&
        b[rs - 2] <= 'Z')
        for (int k = 0; k < 2; k++) {
            size_t s = rs - 2, w = k ? 16 : 15;
            if (E->emu_iban[k] >= 0 && s + w <= n && mask_shape_ok(mask_iban_shapes[k], w, b + s))
                if (mask_push_match(v, E->emu_iban[k], s + w, s + w)) return -1;
        }
    /* A digit-shape finding needs >= 9 digits in its run, or 4 digits and 3 dots (an IPv4 address);
     * most runs in JSON (hex ids, small numbers, dates) hold less, and their separators need not be
     * counted. Shapes have their separators between digits, except the '(' that opens a NANP area code,
     * so space, dash and dot are counted from the first to the last digit only. */
    if (!(digits >= 9 || (digits >= 4 && re - rs - digits >= 3) || E->emu_exhaustive)) return 0;
    memset(&ri, 0, sizeof ri);
    ri.digits = digits;
    {
        size_t cnt[X_CODES] = {0}, last = re;
        while (last > d && !MASK_IS_DIGIT(b[last - 1])) last--;
        for (size_t k = d; k < last; k++) cnt[mask_xcode[b[k]]]++;
        for (size_t k = rs; k < d; k++) cnt[mask_xcode[b[k]]] += b[k] == '(';
        ri.space = cnt[X_SPACE];
        ri.dash = cnt[X_DASH];
        ri.dot = cnt[X_DOT];
        ri.lparen = cnt[X_LPAREN];
        ri.rparen = cnt[X_RPAREN];
    }
    if (E->emu_exhaustive) ri.digits = ri.space = ri.dash = ri.dot = ri.lparen = ri.rparen = 99;
    if (ri.digits >= 9 && mask_emit_digit_run(E, v, b, n, rs, re, &ri)) return -1;
    if (E->emu_ipv4 >= 0 && ri.dot >= 3 && ri.digits >= 4 && mask_emit_ipv4(E, v, b, rs, re)) return -1;
    return 0;
}

/* Every maximal CL_X run that holds a digit, found 64 bytes at a time from bit masks. */
static int mask_digit_runs(mask_engine *E, mask_matchvec *v, const uint8_t *b, size_t n) {
    size_t pend_start = 0, pend_digits = 0;
    int pend = 0; /* a run with digits reached the end of the previous block */
    uint64_t prev_u = 0;
    for (size_t base = 0; base < n; base += 64) {
        size_t lim = n - base < 64 ? n - base : 64;
        uint64_t X, D, U, iban;
        mask_block_masks(b, base, lim, &X, &D, &U);
        /* digits right after two capitals (the capitals may end the previous block): IBAN starts */
        iban = E->emu_iban_any ? D & ((U << 1) | (prev_u >> 63)) & ((U << 2) | (prev_u >> 62)) : 0;
        prev_u = U;
        if (pend) {
            if (X == ~0ull) { /* the whole block continues the run */
                pend_digits += mask_popcount64(D);
                continue;
            }
            if (X & 1u) {
                unsigned e = (unsigned)__builtin_ctzll(~X);
                uint64_t below = (1ull << e) - 1u;
                pend_digits += mask_popcount64(D & below);
                D &= ~below;
                if (mask_digit_run(E, v, b, n, pend_start, base + e, pend_digits)) return -1;
            } else if (mask_digit_run(E, v, b, n, pend_start, base, pend_digits)) {
                return -1;
            }
            pend = 0;
        }
        while (D) {
            unsigned p = (unsigned)__builtin_ctzll(D);
            uint64_t below_p = p ? ~X & ((1ull << p) - 1u) : 0;
            size_t rs = base + (below_p ? 64u - (unsigned)__builtin_clzll(below_p) : 0u);
            if (!below_p) /* the run may have begun in an earlier block with separators only */
                while (rs > 0 && mask_xcode[b[rs - 1]] != X_NONE) rs--;
            if ((X >> p) == (~0ull >> p)) { /* runs to the end of the block: continue in the next one */
                pend = 1;
                pend_start = rs;
                pend_digits = mask_popcount64(D);
                D = 0;
                break;
            }
            unsigned e = p + (unsigned)__builtin_ctzll(~(X >> p));
            uint64_t below_e = (1ull << e) - 1u, run = D & below_e, three_fewer = run;
            three_fewer &= three_fewer - 1u;
            three_fewer &= three_fewer - 1u;
            three_fewer &= three_fewer - 1u;
            /* Only runs with >= 9 digits, or 4 digits and 3 other characters (an IPv4 address), or that
             * start with an IBAN's check digits can matter (mask_digit_run checks the same again). All of
             * the run's digits are in this block: a run with digits in an earlier block is pending. */
            if (three_fewer || (rs == base + p && ((iban >> p) & 1u)) || E->emu_exhaustive) {
                size_t digits = mask_popcount64(run), len = base + e - rs;
                if (digits >= 9 || (digits >= 4 && len - digits >= 3) || (rs == base + p && ((iban >> p) & 1u)) ||
                    E->emu_exhaustive)
                    if (mask_digit_run(E, v, b, n, rs, base + e, digits)) return -1;
            }
            D &= ~below_e;
        }
    }
    if (pend && mask_digit_run(E, v, b, n, pend_start, n, pend_digits)) return -1;
    return 0;
}

static int mask_structure_scan(mask_engine *E, mask_matchvec *v, const uint8_t *b, size_t n) {
    if ((E->emu_digits || E->emu_iban_any) && mask_digit_runs(E, v, b, n)) return -1;
    if (E->emu_ipv6g >= 0 && n > 1) {
        size_t i = 1;
        while (i < n) {
            size_t c = mask_next_hex_colon(b, n, i), hs, he, colons = 0;
            if (c >= n) break;
            hs = c;
            he = c + 1;
            while (hs > i - 1 && hs > 0 && IS(b[hs - 1], CL_HEXCOLON)) hs--;
            while (he < n && IS(b[he], CL_HEXCOLON)) he++;
            for (size_t q = hs; q < he; q++) colons += b[q] == ':';
            if (colons >= 6)
                for (size_t q = hs; q < he; q++)
                    if (b[q] == ':' && mask_six_groups_end(b, hs, q + 1))
                        if (mask_push_match(v, E->emu_ipv6g, q + 1, q + 1)) return -1;
            i = he + 1;
        }
    }
    return 0;
}

/* Derive what the structure pass stands in for, and other flags, once E->pats, op and rules are set. */
static void mask_engine_prepare(mask_engine *E) {
    E->emu_card_run = E->emu_trunk = E->emu_ipv4 = E->emu_ipv6g = -1;
    for (int k = 0; k < 4; k++) E->emu_card_group[k] = -1;
    for (int k = 0; k < 2; k++) E->emu_ssn[k] = E->emu_iban[k] = -1;
    for (int k = 0; k < 6; k++) E->emu_nanp[k] = -1;
    for (int i = 0; i < E->npat; i++) {
        mask_pattern *p = &E->pats[i];
        int prm = p->param;
        p->emulated = 1;
        switch (p->kind) {
        case K_CARD_RUN: E->emu_card_run = i; break;
        case K_CARD_GROUP: if (prm >= 0 && prm < 4) E->emu_card_group[prm] = i; break;
        case K_SSN: if (prm >= 0 && prm < 2) E->emu_ssn[prm] = i; break;
        case K_PHONE_NANP: if (prm >= 0 && prm < 6) E->emu_nanp[prm] = i; break;
        case K_PHONE_TRUNK: E->emu_trunk = i; break;
        case K_IPV4: E->emu_ipv4 = i; break;
        case K_IBAN_CONTIG: E->emu_iban[0] = i; break;
        case K_IBAN_GROUPED: E->emu_iban[1] = i; break;
        case K_IPV6:
            if (prm == 1) E->emu_ipv6g = i;
            else p->emulated = 0;
            break;
        default: p->emulated = 0;
        }
    }
    E->emu_digits = E->emu_card_run >= 0 || E->emu_trunk >= 0 || E->emu_ipv4 >= 0;
    for (int k = 0; k < 4; k++) E->emu_digits |= E->emu_card_group[k] >= 0;
    for (int k = 0; k < 2; k++) E->emu_digits |= E->emu_ssn[k] >= 0;
    for (int k = 0; k < 6; k++) E->emu_digits |= E->emu_nanp[k] >= 0;
    E->emu_iban_any = E->emu_iban[0] >= 0 || E->emu_iban[1] >= 0;
    E->can_drop = E->op == OP_DROP;
    for (int r = 0; r < E->nrules; r++) E->can_drop |= E->rules[r].op == OP_DROP;
}

/* ---------------------------------------------------------------------------------- findings */
static int mask_cmp_cand(const void *a, const void *b) {
    const mask_cand *x = (const mask_cand *)a, *y = (const mask_cand *)b;
    if (x->s != y->s) return x->s < y->s ? -1 : 1;
    if (x->e != y->e) return x->e > y->e ? -1 : 1; /* longer first */
    return x->det < y->det ? -1 : x->det > y->det;
}

/* Candidates of one unit -> E->cands holds the kept findings (sorted). `scan` asks for a scan of the
 * unit; otherwise `ms` are the unit's matches (unit-local ends) or none. */
static int mask_unit_findings(mask_engine *E, const uint8_t *u, size_t n, int scan, const mask_recmatch *ms,
                              size_t nm, const uint8_t *mkey, size_t mklen, int first_only) {
    mask_candvec *c = &E->cands;
    const mask_match *um = NULL;
    c->n = 0;
    if (scan) {
        if (mask_scan(E, &E->um, u, n, 1)) return -1;
        um = E->um.p;
        nm = E->um.n;
    }
    mask_next_gen(&E->ust.gen, E->ust.run_gen, (size_t)E->npat);
    E->ust.pem_marker = NULL;
    for (size_t k = 0; k < nm; k++) {
        const mask_match *m = scan ? &um[k] : &ms[k].m;
        const mask_pattern *pat = &E->pats[m->id];
        if (pat->kind == K_TRIGGER) continue;
        if (pat->som) {
            if (mask_extract(pat, (int)m->id, u, n, m->from, m->to_last, &E->ust, c)) goto oom;
            continue;
        }
        for (size_t e = m->to_first; e <= m->to_last; e++)
            if (mask_extract(pat, (int)m->id, u, n, m->from, e, &E->ust, c)) goto oom;
        if (first_only && c->n) return 0; /* the caller only asks whether there is any candidate */
    }
    if (mkey && E->secret_det >= 0 && mask_has_secret_keyword(mkey, mklen)) {
        int spaced = 0;
        for (size_t i = 0; i < n && !spaced; i++) spaced = IS(u[i], CL_SPACE) != 0;
        if (!spaced && mask_secret_value_ok(u, n, MASK_MIN_ASSIGNED_SECRET_LEN))
            if (mask_cand_push(c, 0, n, E->secret_det)) goto oom;
    }
    if (c->n > 1) {
        size_t kept = 0, end = 0;
        MASK_SORT(mask_cand, c->p, c->n, mask_cmp_cand);
        for (size_t i = 0; i < c->n; i++)
            if (c->p[i].s >= end) {
                c->p[kept++] = c->p[i];
                end = c->p[i].e;
            }
        c->n = kept;
    }
    return 0;
oom:
    E->error = ENOMEM;
    return -1;
}

/* ---------------------------------------------------------------------------------- operators */
static int mask_put_keep_last(mask_engine *E, mask_buf *dst, const uint8_t *t, size_t n, size_t keep) {
    size_t count = 0, cut = n, seen = 0;
    for (size_t i = 0; i < n; i++)
        if (i == 0 || (t[i] & 0xC0) != 0x80) count++;
    if (count <= keep || keep == 0) {
        if (mask_buf_reserve(E, dst, count)) return -1;
        memset(dst->p + dst->n, '*', count);
        dst->n += count;
        return 0;
    }
    for (size_t i = 0; i < n; i++)
        if (i == 0 || (t[i] & 0xC0) != 0x80) {
            if (seen == count - keep) {
                cut = i;
                break;
            }
            seen++;
        }
    if (mask_buf_reserve(E, dst, count - keep + (n - cut))) return -1;
    memset(dst->p + dst->n, '*', count - keep);
    dst->n += count - keep;
    memcpy(dst->p + dst->n, t + cut, n - cut);
    dst->n += n - cut;
    return 0;
}

static int mask_put_hash(mask_engine *E, mask_buf *dst, const uint8_t *t, size_t n, int normalise) {
    static const char hexd[] = "0123456789abcdef";
    uint8_t mac[32], tok[36];
    if (normalise) {
        E->norm.n = 0;
        if (mask_buf_reserve(E, &E->norm, n)) return -1;
        for (size_t i = 0; i < n; i++)
            if (t[i] != ' ' && t[i] != '-') E->norm.p[E->norm.n++] = t[i];
        t = E->norm.p;
        n = E->norm.n;
    }
    mask_hmac_digest(&E->hmac, t, n, mac);
    memcpy(tok, "tok_", 4);
    for (int i = 0; i < 16; i++) {
        tok[4 + 2 * i] = (uint8_t)hexd[mac[i] >> 4];
        tok[5 + 2 * i] = (uint8_t)hexd[mac[i] & 15];
    }
    return mask_buf_put(E, dst, tok, sizeof tok);
}

static int mask_put_replacement(mask_engine *E, mask_buf *dst, const uint8_t *t, size_t n, int det) {
    switch (E->op) {
    case OP_REDACT:
        if (mask_buf_put(E, dst, "[REDACTED:", 10)) return -1;
        if (E->op_label ? mask_buf_put(E, dst, E->op_label, E->op_label_len)
                        : mask_buf_put(E, dst, E->labels[det], E->label_len[det]))
            return -1;
        return mask_buf_put(E, dst, "]", 1);
    case OP_KEEP_LAST:
        return mask_put_keep_last(E, dst, t, n, (size_t)E->keep_last);
    case OP_HASH:
        return mask_put_hash(E, dst, t, n, E->normalise[det]);
    default:
        return 0; /* null / drop inside text: the finding is removed */
    }
}

/* The unit with its kept findings replaced, appended to dst. */
static int mask_splice(mask_engine *E, mask_buf *dst, const uint8_t *u, size_t n) {
    size_t pos = 0;
    for (size_t i = 0; i < E->cands.n; i++) {
        const mask_cand *f = &E->cands.p[i];
        if (mask_buf_put(E, dst, u + pos, f->s - pos)) return -1;
        if (mask_put_replacement(E, dst, u + f->s, f->e - f->s, f->det)) return -1;
        pos = f->e;
    }
    return mask_buf_put(E, dst, u + pos, n - pos);
}

static void mask_count_findings(mask_engine *E) {
    for (size_t i = 0; i < E->cands.n; i++) E->det_counts[E->cands.p[i].det]++;
}

/* ---------------------------------------------------------------------------------- JSON walk */
static int mask_add_edit(mask_engine *E, size_t s, size_t e, const void *rep, size_t len) {
    if (mask_grow((void **)&E->edits, &E->editcap, E->nedits + 1, sizeof *E->edits)) {
        E->error = ENOMEM;
        return -1;
    }
    E->edits[E->nedits].s = s;
    E->edits[E->nedits].e = e;
    E->edits[E->nedits].rep_off = E->reps.n;
    E->edits[E->nedits].rep_len = len;
    E->nedits++;
    return mask_buf_put(E, &E->reps, rep, len);
}

/* Replace [s, e) with a JSON string of E->tmp. */
static int mask_add_quoted_edit(mask_engine *E, size_t s, size_t e) {
    size_t off;
    if (mask_buf_reserve(E, &E->reps, E->tmp.n * 6 + 18)) return -1;
    off = E->reps.n;
    E->reps.n += mask_json_quote(E->tmp.p, E->tmp.n, E->reps.p + off);
    if (mask_grow((void **)&E->edits, &E->editcap, E->nedits + 1, sizeof *E->edits)) {
        E->error = ENOMEM;
        return -1;
    }
    E->edits[E->nedits].s = s;
    E->edits[E->nedits].e = e;
    E->edits[E->nedits].rep_off = off;
    E->edits[E->nedits].rep_len = E->reps.n - off;
    E->nedits++;
    return 0;
}

/* Decoded content of a string node (into the arena when escaped). */
static const uint8_t *mask_string_text(mask_engine *E, const mask_jnode *nd, size_t *len) {
    const uint8_t *raw = E->rec + nd->start + 1;
    size_t rawlen = nd->end - nd->start - 2;
    if (!nd->escaped) {
        *len = rawlen;
        return raw;
    }
    uint8_t *dst = E->arena.p + E->arena.n; /* capacity reserved for the whole record */
    *len = mask_json_decode(raw, rawlen, dst);
    E->arena.n += *len;
    return dst;
}

static int mask_match_rule(mask_engine *E, int depth, const uint8_t *mk, size_t mkl, int has_mk) {
    for (int r = 0; r < E->nrules; r++) {
        const mask_rule *rule = &E->rules[r];
        if (!rule->is_path) {
            if (!has_mk || mkl != rule->nlen) continue;
            size_t i = 0;
            for (; i < mkl; i++) {
                uint8_t c = mk[i];
                if (c >= 'A' && c <= 'Z') c = (uint8_t)(c + 32);
                if (c != rule->name[i]) break;
            }
            if (i == mkl) return r;
            continue;
        }
        if (rule->nsteps != depth) continue;
        int ok = 1;
        for (int i = 0; i < depth && ok; i++) {
            const mask_step *st = &rule->steps[i];
            const mask_pathc *pc = &E->path[i];
            if (st->type == STEP_NAME)
                ok = !pc->is_index && pc->klen == st->nlen && memcmp(pc->key, st->name, st->nlen) == 0;
            else if (st->type == STEP_INDEX)
                ok = pc->is_index && pc->index == st->index;
            else
                ok = pc->is_index;
        }
        if (ok) return r;
    }
    return -1;
}

static int mask_apply_rule(mask_engine *E, const mask_jnode *nd, int r) {
    const mask_rule *rule = &E->rules[r];
    const uint8_t *text;
    size_t len;
    if (rule->op == OP_DROP) {
        E->rule_counts[r]++;
        return 1;
    }
    if (nd->kind == J_LIT && nd->end - nd->start == 4 && memcmp(E->rec + nd->start, "null", 4) == 0) return 0;
    E->rule_counts[r]++;
    if (!E->rewrite) return 0;
    if (nd->kind == J_STR) {
        text = mask_string_text(E, nd, &len);
    } else {
        text = E->rec + nd->start;
        len = nd->end - nd->start;
    }
    E->tmp.n = 0;
    switch (rule->op) {
    case OP_NULL:
        return mask_add_edit(E, nd->start, nd->end, "null", 4) ? -1 : 0;
    case OP_HASH:
        if (mask_buf_put(E, &E->tmp, "\"", 1) || mask_put_hash(E, &E->tmp, text, len, 0) ||
            mask_buf_put(E, &E->tmp, "\"", 1))
            return -1;
        return mask_add_edit(E, nd->start, nd->end, E->tmp.p, E->tmp.n) ? -1 : 0;
    case OP_KEEP_LAST:
        if (nd->kind == J_STR || nd->kind == J_NUM) {
            if (mask_put_keep_last(E, &E->tmp, text, len, (size_t)rule->keep_last)) return -1;
            return mask_add_quoted_edit(E, nd->start, nd->end) ? -1 : 0;
        }
        break;
    default:
        break;
    }
    if (rule->label) {
        if (mask_buf_put(E, &E->tmp, "\"[REDACTED:", 11) || mask_buf_put(E, &E->tmp, rule->label, rule->llen) ||
            mask_buf_put(E, &E->tmp, "]\"", 2))
            return -1;
        return mask_add_edit(E, nd->start, nd->end, E->tmp.p, E->tmp.n) ? -1 : 0;
    }
    return mask_add_edit(E, nd->start, nd->end, "\"[REDACTED]\"", 12) ? -1 : 0;
}

/* Did the batch scan report a match ending inside (us, ue]? Units are asked in increasing order. */
static int mask_range_hit(mask_engine *E, size_t us, size_t ue) {
    while (E->rcur < E->nrr && E->rr[E->rcur].m.to_first <= ue) {
        if (E->rr[E->rcur].m.to_last > E->reach) E->reach = E->rr[E->rcur].m.to_last;
        E->rcur++;
    }
    return E->reach > us;
}

/* The batch matches ending inside (us, ue], shifted to unit-local ends, into E->urng. Units are asked in
 * increasing order. Only TRIGGER patterns can span from one unit into another (no finding pattern
 * matches a quote or a JSON separator), so ranges that start before the unit are left out. */
static int mask_unit_ranges(mask_engine *E, size_t us, size_t ue) {
    E->nurng = 0;
    while (E->rcur < E->nrr && E->rr[E->rcur].m.to_first <= us) E->rcur++;
    while (E->rcur < E->nrr && E->rr[E->rcur].m.to_first <= ue) {
        mask_recmatch r = E->rr[E->rcur++];
        if (mask_grow((void **)&E->urng, &E->urngcap, E->nurng + 1, sizeof *E->urng)) {
            E->error = ENOMEM;
            return -1;
        }
        r.m.to_first -= us;
        r.m.to_last = (r.m.to_last < ue ? r.m.to_last : ue) - us;
        r.m.from = r.m.from >= us ? r.m.from - us : 0;
        E->urng[E->nurng++] = r;
    }
    return 0;
}

static int mask_unit(mask_engine *E, const mask_jnode *nd, const uint8_t *mk, size_t mkl) {
    const uint8_t *u;
    size_t n, us = nd->kind == J_STR ? nd->start + 1 : nd->start, ue = nd->kind == J_STR ? nd->end - 1 : nd->end;
    if (nd->kind != J_STR) mk = NULL;
    if (nd->escaped || E->has_som) {
        /* Decoded text differs from the batch bytes / custom regexes need unit-local starts: scan alone. */
        int scan = nd->escaped || mask_range_hit(E, us, ue);
        if (!scan && !mk) return 0;
        if (nd->kind == J_STR) {
            u = mask_string_text(E, nd, &n);
        } else {
            u = E->rec + us;
            n = ue - us;
        }
        if (mask_unit_findings(E, u, n, scan, NULL, 0, mk, mkl, 0)) return -1;
    } else {
        /* Unescaped text is the batch bytes: the batch matches ending inside the unit are its matches. */
        if (mask_unit_ranges(E, us, ue)) return -1;
        if (!E->nurng && !mk) return 0;
        u = E->rec + us;
        n = ue - us;
        if (mask_unit_findings(E, u, n, 0, E->urng, E->nurng, mk, mkl, 0)) return -1;
    }
    if (E->cands.n == 0) return 0;
    mask_count_findings(E);
    if (E->op == OP_DROP) return 1;
    if (!E->rewrite) return 0;
    if (E->op == OP_NULL) return mask_add_edit(E, nd->start, nd->end, "null", 4) ? -1 : 0;
    E->tmp.n = 0;
    if (mask_splice(E, &E->tmp, u, n)) return -1;
    return mask_add_quoted_edit(E, nd->start, nd->end) ? -1 : 0;
}

static int mask_delete_elements(mask_engine *E, size_t base) {
    size_t k = E->nelems - base;
    long long last_kept = -1;
    const mask_elem *el = E->elems + base;
    for (size_t i = 0; i < k; i++)
        if (!el[i].dropped) last_kept = (long long)i;
    for (size_t i = 0; i < k; i++) {
        if (el[i].dropped && mask_add_edit(E, el[i].start, el[i].end, "", 0)) return -1;
        if (i + 1 < k && (el[i].dropped || (long long)i >= last_kept))
            if (mask_add_edit(E, el[i].end, el[i + 1].start, "", 0)) return -1;
    }
    return 0;
}

static int mask_walk(mask_engine *E, int32_t ni, int depth, const uint8_t *mk, size_t mkl, int has_mk) {
    const mask_jnode *nd = &E->jp.nodes[ni];
    if (depth > 0 && E->nrules) {
        int r = mask_match_rule(E, depth, mk, mkl, has_mk);
        if (r >= 0) return mask_apply_rule(E, nd, r);
    }
    if (nd->kind == J_OBJ || nd->kind == J_ARR) {
        size_t base = E->nelems, index = 0;
        int any = 0;
        int32_t c = nd->first;
        while (c >= 0) {
            int32_t value = c;
            size_t start = E->jp.nodes[c].start, end;
            int rc;
            if (nd->kind == J_OBJ) {
                const mask_jnode *key = &E->jp.nodes[c];
                size_t klen;
                const uint8_t *kp = mask_string_text(E, key, &klen);
                value = key->next;
                E->path[depth].is_index = 0;
                E->path[depth].key = kp;
                E->path[depth].klen = klen;
                rc = mask_walk(E, value, depth + 1, kp, klen, 1);
            } else {
                E->path[depth].is_index = 1;
                E->path[depth].index = index;
                rc = mask_walk(E, value, depth + 1, NULL, 0, 0);
            }
            if (rc < 0) return -1;
            if (E->can_drop) {
                end = E->jp.nodes[value].end;
                if (mask_grow((void **)&E->elems, &E->elemcap, E->nelems + 1, sizeof *E->elems)) {
                    E->error = ENOMEM;
                    return -1;
                }
                E->elems[E->nelems].start = start;
                E->elems[E->nelems].end = end;
                E->elems[E->nelems].dropped = rc;
                E->nelems++;
                any |= rc;
            }
            index++;
            c = E->jp.nodes[value].next;
        }
        if (any && E->rewrite && mask_delete_elements(E, base)) return -1;
        E->nelems = base;
        return 0;
    }
    if (nd->kind == J_LIT) return 0;
    return mask_unit(E, nd, (nd->kind == J_STR && has_mk && E->secret_det >= 0 && E->check_secret_keys) ? mk : NULL,
                     mkl);
}

static int mask_cmp_edit(const void *a, const void *b) {
    const mask_edit *x = (const mask_edit *)a, *y = (const mask_edit *)b;
    if (x->s != y->s) return x->s < y->s ? -1 : 1;
    return x->e < y->e ? -1 : x->e > y->e;
}

/* ---------------------------------------------------------------------------------- records */
/* Process one record that has batch matches `rr` (record-local ends). Returns 1 when the record changed
 * (its new bytes appended to E->out), 0 when unchanged, -1 on error. */
static int mask_record(mask_engine *E, const uint8_t *rec, size_t len, const mask_recmatch *rr, size_t nrr) {
    int32_t root;
    int rc, has_trigger = 0;
    E->rec = rec;
    E->rec_len = len;
    E->check_secret_keys = 0;
    for (size_t k = 0; k < nrr; k++)
        if (E->pats[rr[k].m.id].kind == K_TRIGGER) {
            has_trigger = 1;
            if (E->pats[rr[k].m.id].param != TRIGGER_FIELD_KEY) E->check_secret_keys = 1;
        }
    size_t first = mask_skip_ws(rec, len, 0);
    int looks_json = first < len && (rec[first] == '{' || rec[first] == '[');
    if (!has_trigger) {
        /* Prefilter in the record's own bytes. For text this is the answer; for unescaped JSON it finds at
         * least what the units would (their neighbours are quotes and separators, which no extractor takes
         * into a finding); escapes, field-rule keys and secret-naming keys are TRIGGER matches. So a record
         * without a candidate here is clean, whatever its shape, and need not be parsed. A record that
         * looks like JSON only needs to know whether there is a candidate at all. */
        if (mask_unit_findings(E, rec, len, 0, rr, nrr, NULL, 0, looks_json)) return -1;
        if (E->cands.n == 0) return 0;
    }
    rc = mask_jparse(&E->jp, rec, len, &root);
    if (rc == MASK_JSON_OOM) {
        E->error = ENOMEM;
        return -1;
    }
    if (rc != 0) { /* plain text: the whole value is one unit */
        if (E->has_som) {
            if (mask_unit_findings(E, rec, len, 1, NULL, 0, NULL, 0, 0)) return -1;
        } else if ((has_trigger || looks_json) && mask_unit_findings(E, rec, len, 0, rr, nrr, NULL, 0, 0)) {
            return -1;
        }
        if (E->cands.n == 0) return 0;
        mask_count_findings(E);
        if (!E->rewrite) return 0;
        return mask_splice(E, &E->out, rec, len) ? -1 : 1;
    }
    E->arena.n = 0;
    if (mask_buf_reserve(E, &E->arena, len + 1)) return -1;
    E->reps.n = 0;
    E->nedits = 0;
    E->nelems = 0;
    E->rr = rr;
    E->nrr = nrr;
    E->rcur = 0;
    E->reach = 0;
    if (mask_walk(E, root, 0, NULL, 0, 0) < 0) return -1;
    if (!E->nedits || !E->rewrite) return 0;
    if (E->nedits > 1) MASK_SORT(mask_edit, E->edits, E->nedits, mask_cmp_edit);
    size_t pos = 0;
    for (size_t i = 0; i < E->nedits; i++) {
        const mask_edit *ed = &E->edits[i];
        if (mask_buf_put(E, &E->out, rec + pos, ed->s - pos)) return -1;
        if (mask_buf_put(E, &E->out, E->reps.p + ed->rep_off, ed->rep_len)) return -1;
        pos = ed->e;
    }
    return mask_buf_put(E, &E->out, rec + pos, len - pos) ? -1 : 1;
}

static int mask_cmp_recmatch(const void *a, const void *b) {
    const mask_recmatch *x = (const mask_recmatch *)a, *y = (const mask_recmatch *)b;
    if (x->rec != y->rec) return x->rec < y->rec ? -1 : 1;
    return mask_cmp_match(&x->m, &y->m);
}

/* Mask a batch laid out in buf: record i at offs[i] (length lens[i]), each followed by a NUL byte;
 * null records have isnull[i]. changed[i] says whether out_off/out_len (into E->out) hold new bytes.
 * Returns 0 or -1 (E->error set). */
static int mask_batch(mask_engine *E, const uint8_t *buf, size_t buflen, const size_t *offs, const size_t *lens,
                      const uint8_t *isnull, size_t nrec, int rewrite, uint8_t *changed, size_t *out_off,
                      size_t *out_len) {
    size_t i, k;
    E->error = 0;
    E->rewrite = rewrite;
    E->out.n = 0;
    memset(E->det_counts, 0, (size_t)E->ndet * sizeof *E->det_counts);
    if (E->nrules) memset(E->rule_counts, 0, (size_t)E->nrules * sizeof *E->rule_counts);
    memset(changed, 0, nrec);
    if (mask_scan(E, &E->raw, buf, buflen, 0)) return -1;
    if (E->raw.n == 0) return 0;

    /* Attach every match range to each non-null record it ends in, with record-local ends: count per
     * record, then place (a counting sort by record), then sort each record's few matches by end. */
    if (mask_grow((void **)&E->rec_first, &E->reccap, nrec + 1, sizeof *E->rec_first)) {
        E->error = ENOMEM;
        return -1;
    }
    memset(E->rec_first, 0, (nrec + 1) * sizeof *E->rec_first);
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) {
            size_t total = 0;
            for (i = 0; i <= nrec; i++) {
                size_t c = E->rec_first[i];
                E->rec_first[i] = total;
                total += c;
            }
            if (mask_grow((void **)&E->rm, &E->rmcap, total + 1, sizeof *E->rm)) {
                E->error = ENOMEM;
                return -1;
            }
            E->nrm = total;
        }
        size_t hint = 0;
        for (k = 0; k < E->raw.n; k++) {
            const mask_match *m = &E->raw.p[k];
            size_t lo = 0, hi = nrec;
            /* first record whose end (offs+lens) >= to_first; matches mostly come in order, so try the
             * record of the previous match and its successor before searching */
            if (hint < nrec && offs[hint] < m->to_first && offs[hint] + lens[hint] >= m->to_first) {
                lo = hint;
            } else if (hint + 1 < nrec && offs[hint + 1] < m->to_first && offs[hint + 1] + lens[hint + 1] >= m->to_first) {
                lo = hint + 1;
            } else {
                while (lo < hi) {
                    size_t mid = lo + (hi - lo) / 2;
                    if (offs[mid] + lens[mid] < m->to_first) lo = mid + 1;
                    else hi = mid;
                }
            }
            hint = lo;
            for (i = lo; i < nrec && offs[i] < m->to_last; i++) {
                size_t rs = offs[i], re = offs[i] + lens[i], tf, tl;
                if (isnull[i]) continue;
                tf = m->to_first > rs + 1 ? m->to_first : rs + 1;
                tl = m->to_last < re ? m->to_last : re;
                if (tf > tl) continue;
                if (pass == 0) {
                    E->rec_first[i]++;
                    continue;
                }
                mask_recmatch *slot = &E->rm[E->rec_first[i]++];
                slot->rec = i;
                slot->m = *m;
                slot->m.to_first = tf - rs;
                slot->m.to_last = tl - rs;
                slot->m.from = m->from >= rs ? m->from - rs : 0;
            }
        }
    }
    /* rec_first[i] now holds the end of record i's slice (its start is the previous record's end). */
    for (i = 0, k = 0; i < nrec; i++) {
        size_t end = E->rec_first[i];
        if (end > k) MASK_SORT(mask_recmatch, E->rm + k, end - k, mask_cmp_recmatch);
        k = end;
    }
    for (k = 0; k < E->nrm;) {
        size_t r = E->rm[k].rec, j = k, before = E->out.n;
        int rc;
        while (j < E->nrm && E->rm[j].rec == r) j++;
        rc = mask_record(E, buf + offs[r], lens[r], E->rm + k, j - k);
        if (rc < 0) return -1;
        if (rc == 1) {
            changed[r] = 1;
            out_off[r] = before;
            out_len[r] = E->out.n - before;
        }
        k = j;
    }
    return 0;
}

/* Tests: the structure pass alone over b[0..n); writes up to cap (pattern id, end) pairs, returns how many
 * there are (or -1 when out of memory). */
static long mask_debug_structure(mask_engine *E, const uint8_t *b, size_t n, int exhaustive, unsigned *ids,
                                 size_t *ends, size_t cap) {
    mask_matchvec v;
    long count = 0;
    int saved = E->emu_exhaustive, rc;
    memset(&v, 0, sizeof v);
    E->emu_exhaustive = exhaustive;
    rc = mask_structure_scan(E, &v, b, n);
    E->emu_exhaustive = saved;
    if (rc) {
        free(v.p);
        return -1;
    }
    for (size_t i = 0; i < v.n; i++)
        for (size_t e = v.p[i].to_first; e <= v.p[i].to_last; e++, count++)
            if ((size_t)count < cap) {
                ids[count] = v.p[i].id;
                ends[count] = e;
            }
    free(v.p);
    return count;
}

/* ---------------------------------------------------------------------------------- lifetime */
static void mask_engine_destroy(mask_engine *E) {
    if (!E) return;
    for (int i = 0; E->labels && i < E->ndet; i++) free(E->labels[i]);
    for (int r = 0; E->rules && r < E->nrules; r++) {
        for (int k = 0; E->rules[r].steps && k < E->rules[r].nsteps; k++) free(E->rules[r].steps[k].name);
        free(E->rules[r].steps);
        free(E->rules[r].name);
        free(E->rules[r].label);
    }
    if (E->scratch) hs_free_scratch(E->scratch);
    if (E->db) hs_free_database(E->db);
    free(E->pats), free(E->labels), free(E->label_len), free(E->normalise), free(E->op_label), free(E->rules);
    free(E->det_counts), free(E->rule_counts);
    free(E->raw.p), free(E->raw.last_gen), free(E->raw.last_idx);
    free(E->um.p), free(E->um.last_gen), free(E->um.last_idx);
    free(E->ust.run_end), free(E->ust.run_gen), free(E->cands.p), free(E->rm), free(E->urng);
    free(E->jp.nodes), free(E->arena.p), free(E->reps.p), free(E->tmp.p), free(E->norm.p), free(E->out.p);
    free(E->edits), free(E->elems), free(E->rec_first);
    memset(&E->hmac, 0, sizeof E->hmac);
    free(E);
}

static mask_engine *mask_engine_create(int npat, int ndet, int nrules) {
    mask_engine *E = (mask_engine *)calloc(1, sizeof *E);
    size_t np = npat > 0 ? (size_t)npat : 1, nd = ndet > 0 ? (size_t)ndet : 1, nr = nrules > 0 ? (size_t)nrules : 1;
    if (!E) return NULL;
    E->npat = npat;
    E->ndet = ndet;
    E->nrules = nrules;
    E->secret_det = -1;
    E->pats = (mask_pattern *)calloc(np, sizeof *E->pats);
    E->labels = (uint8_t **)calloc(nd, sizeof *E->labels);
    E->label_len = (size_t *)calloc(nd, sizeof *E->label_len);
    E->normalise = (uint8_t *)calloc(nd, 1);
    E->rules = (mask_rule *)calloc(nr, sizeof *E->rules);
    E->det_counts = (long long *)calloc(nd, sizeof *E->det_counts);
    E->rule_counts = (long long *)calloc(nr, sizeof *E->rule_counts);
    E->raw.last_gen = (uint32_t *)calloc(np, sizeof(uint32_t));
    E->raw.last_idx = (size_t *)calloc(np, sizeof(size_t));
    E->um.last_gen = (uint32_t *)calloc(np, sizeof(uint32_t));
    E->um.last_idx = (size_t *)calloc(np, sizeof(size_t));
    E->ust.run_end = (size_t *)calloc(np, sizeof(size_t));
    E->ust.run_gen = (uint32_t *)calloc(np, sizeof(uint32_t));
    if (!E->pats || !E->labels || !E->label_len || !E->normalise || !E->rules || !E->det_counts ||
        !E->rule_counts || !E->raw.last_gen || !E->raw.last_idx || !E->um.last_gen || !E->um.last_idx ||
        !E->ust.run_end || !E->ust.run_gen) {
        mask_engine_destroy(E);
        return NULL;
    }
    return E;
}

#endif
