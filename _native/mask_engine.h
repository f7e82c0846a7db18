/* The native masking engine: one Hyperscan scan over a whole batch, C match callbacks, C validators, and
 * rewriting of only the records that need it.
 *
 * Semantics are those of gateway/masking/reference.py (the specification). What is native-only is how
 * the work is avoided without changing any result:
 *   1. The batch is joined with NUL separators and scanned once. A record without a single match (of any
 *      pattern, including the TRIGGER patterns for field-rule keys, secret-naming keys and backslashes)
 *      cannot have a finding or a field-rule hit, so it is returned as is: clean data costs one hs_scan.
 *   2. A plain-text record reuses its matches from the batch scan, because no finding pattern can match
 *      the NUL separator; unless the profile has custom regexes (they track start of match and may span
 *      records), in which case the record is scanned again on its own.
 *   3. A JSON record is parsed; a scan unit (string value / number) is scanned on its own only when the
 *      batch scan reported a match ending inside it, or when it holds escapes (then its decoded text is
 *      scanned). Every match of a unit scanned alone ends where some batch match ends, so skipping the
 *      other units skips nothing.
 * Memory is owned by the engine and reused across calls; on allocation failure a call returns an error
 * and the engine stays usable.
 */
#ifndef STREAMGATE_MASK_ENGINE_H
#define STREAMGATE_MASK_ENGINE_H

#include <errno.h>
#include <hs.h>
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
    mask_recmatch *rm;
    size_t nrm, rmcap;
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

static int mask_scan(mask_engine *E, mask_matchvec *v, const uint8_t *d, size_t n) {
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
    for (size_t i = 1; i < v->n; i++)
        if (mask_cmp_match(&v->p[i - 1], &v->p[i]) > 0) {
            qsort(v->p, v->n, sizeof *v->p, mask_cmp_match);
            break;
        }
    return 0;
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
                              size_t nm, const uint8_t *mkey, size_t mklen) {
    mask_candvec *c = &E->cands;
    const mask_match *um = NULL;
    c->n = 0;
    if (scan) {
        if (mask_scan(E, &E->um, u, n)) return -1;
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
    }
    if (mkey && E->secret_det >= 0 && mask_has_secret_keyword(mkey, mklen)) {
        int spaced = 0;
        for (size_t i = 0; i < n && !spaced; i++) spaced = IS(u[i], CL_SPACE) != 0;
        if (!spaced && mask_secret_value_ok(u, n, MASK_MIN_ASSIGNED_SECRET_LEN))
            if (mask_cand_push(c, 0, n, E->secret_det)) goto oom;
    }
    if (c->n > 1) {
        size_t kept = 0, end = 0;
        qsort(c->p, c->n, sizeof *c->p, mask_cmp_cand);
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
    if (mask_buf_reserve(E, &E->reps, E->tmp.n * 6 + 2)) return -1;
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

static int mask_unit(mask_engine *E, const mask_jnode *nd, const uint8_t *mk, size_t mkl) {
    const uint8_t *u;
    size_t n;
    int scan;
    if (nd->kind == J_STR) {
        scan = nd->escaped || mask_range_hit(E, nd->start + 1, nd->end - 1);
        if (!scan && !mk) return 0;
        u = mask_string_text(E, nd, &n);
    } else {
        if (!mask_range_hit(E, nd->start, nd->end)) return 0;
        scan = 1;
        u = E->rec + nd->start;
        n = nd->end - nd->start;
        mk = NULL;
    }
    if (mask_unit_findings(E, u, n, scan, NULL, 0, mk, mkl)) return -1;
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
            index++;
            c = E->jp.nodes[value].next;
        }
        if (any && E->rewrite && mask_delete_elements(E, base)) return -1;
        E->nelems = base;
        return 0;
    }
    if (nd->kind == J_LIT) return 0;
    return mask_unit(E, nd, (nd->kind == J_STR && has_mk && E->secret_det >= 0) ? mk : NULL, mkl);
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
    int rc;
    E->rec = rec;
    E->rec_len = len;
    rc = mask_jparse(&E->jp, rec, len, &root);
    if (rc == MASK_JSON_OOM) {
        E->error = ENOMEM;
        return -1;
    }
    if (rc != 0) { /* plain text: the whole value is one unit */
        if (E->has_som) {
            if (mask_unit_findings(E, rec, len, 1, NULL, 0, NULL, 0)) return -1;
        } else if (mask_unit_findings(E, rec, len, 0, rr, nrr, NULL, 0)) {
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
    if (E->nedits > 1) qsort(E->edits, E->nedits, sizeof *E->edits, mask_cmp_edit);
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
    if (mask_scan(E, &E->raw, buf, buflen)) return -1;
    if (E->raw.n == 0) return 0;

    /* Attach every match range to each non-null record it ends in, with record-local ends. */
    E->nrm = 0;
    for (k = 0; k < E->raw.n; k++) {
        const mask_match *m = &E->raw.p[k];
        size_t lo = 0, hi = nrec;
        while (lo < hi) { /* first record whose end (offs+lens) >= to_first */
            size_t mid = lo + (hi - lo) / 2;
            if (offs[mid] + lens[mid] < m->to_first) lo = mid + 1;
            else hi = mid;
        }
        for (i = lo; i < nrec && offs[i] < m->to_last; i++) {
            size_t rs = offs[i], re = offs[i] + lens[i], tf, tl;
            if (isnull[i]) continue;
            tf = m->to_first > rs + 1 ? m->to_first : rs + 1;
            tl = m->to_last < re ? m->to_last : re;
            if (tf > tl) continue;
            if (mask_grow((void **)&E->rm, &E->rmcap, E->nrm + 1, sizeof *E->rm)) {
                E->error = ENOMEM;
                return -1;
            }
            E->rm[E->nrm].rec = i;
            E->rm[E->nrm].m = *m;
            E->rm[E->nrm].m.to_first = tf - rs;
            E->rm[E->nrm].m.to_last = tl - rs;
            E->rm[E->nrm].m.from = m->from >= rs ? m->from - rs : 0;
            E->nrm++;
        }
    }
    for (k = 1; k < E->nrm; k++)
        if (mask_cmp_recmatch(&E->rm[k - 1], &E->rm[k]) > 0) {
            qsort(E->rm, E->nrm, sizeof *E->rm, mask_cmp_recmatch);
            break;
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
    free(E->ust.run_end), free(E->ust.run_gen), free(E->cands.p), free(E->rm);
    free(E->jp.nodes), free(E->arena.p), free(E->reps.p), free(E->tmp.p), free(E->norm.p), free(E->out.p);
    free(E->edits), free(E->elems);
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
