/* JSON for the masking engine: a strict RFC 8259 parser into a flat node array, string decoding, and
 * minimal re-escaping. Port of the JSON section of gateway/masking/reference.py (the specification):
 * a document is one object or array (after optional whitespace), strings must be valid UTF-8 (the same
 * strictness as Python's decoder: no overlongs, no encoded surrogates, nothing above U+10FFFF), at most
 * MASK_JSON_MAX_DEPTH nested containers; anything else is treated as text by the caller.
 */
#ifndef STREAMGATE_MASK_JSON_H
#define STREAMGATE_MASK_JSON_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#define MASK_JSON_MAX_DEPTH 256

enum { J_STR = 0, J_NUM, J_LIT, J_OBJ, J_ARR };

typedef struct {
    uint8_t kind, escaped;
    size_t start, end;    /* strings: opening quote .. one past the closing quote */
    int32_t first, next;  /* children of a container (OBJ: key, value, key, value, ...), siblings */
} mask_jnode;

typedef struct {
    const uint8_t *b;
    size_t n;
    mask_jnode *nodes;
    size_t nn, cap;
    int oom;
} mask_jparser;

#define MASK_JSON_FAIL (-1)
#define MASK_JSON_OOM (-2)

static int32_t mask_jnew(mask_jparser *P, int kind, size_t start) {
    if (P->nn == P->cap) {
        size_t cap = P->cap ? P->cap * 2 : 256;
        mask_jnode *q = (mask_jnode *)realloc(P->nodes, cap * sizeof *q);
        if (!q) {
            P->oom = 1;
            return -1;
        }
        P->nodes = q;
        P->cap = cap;
    }
    mask_jnode *nd = &P->nodes[P->nn];
    nd->kind = (uint8_t)kind;
    nd->escaped = 0;
    nd->start = start;
    nd->end = start;
    nd->first = -1;
    nd->next = -1;
    return (int32_t)P->nn++;
}

static size_t mask_skip_ws(const uint8_t *b, size_t n, size_t i) {
    while (i < n && b[i] <= ' ' && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r')) i++;
    return i;
}

static int mask_is_hex(uint8_t c) {
    return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f');
}

/* Length of the strictly valid UTF-8 sequence at p (first byte >= 0x80), or 0. */
static size_t mask_utf8_len(const uint8_t *p, size_t avail) {
    uint8_t c = p[0];
    size_t len;
    uint8_t lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c == 0xE0) len = 3, lo = 0xA0;
    else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) len = 3;
    else if (c == 0xED) len = 3, hi = 0x9F;
    else if (c == 0xF0) len = 4, lo = 0x90;
    else if (c >= 0xF1 && c <= 0xF3) len = 4;
    else if (c == 0xF4) len = 4, hi = 0x8F;
    else return 0;
    if (avail < len || p[1] < lo || p[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if (p[i] < 0x80 || p[i] > 0xBF) return 0;
    return len;
}

static int mask_jstring(mask_jparser *P, size_t *pos, int *escaped) {
    const uint8_t *b = P->b;
    size_t n = P->n, i = *pos + 1;
    int esc = 0;
#if defined(__SSE2__)
    const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\'), space = _mm_set1_epi8(0x20);
#endif
    for (;;) {
#if defined(__SSE2__)
        /* Skip 16 plain ASCII bytes at a time (no quote, backslash, control or non-ASCII byte: the
         * signed compare counts bytes >= 0x80 as below 0x20). */
        while (i + 16 <= n) {
            __m128i x = _mm_loadu_si128((const __m128i *)(const void *)(b + i));
            int m = _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, quote), _mm_cmpeq_epi8(x, bslash)),
                                                   _mm_cmplt_epi8(x, space)));
            if (m) {
                i += (size_t)__builtin_ctz((unsigned)m);
                break;
            }
            i += 16;
        }
#endif
        if (i >= n) return MASK_JSON_FAIL;
        uint8_t c = b[i];
        if (c == '"') break;
        if (c == '\\') {
            if (i + 1 >= n) return MASK_JSON_FAIL;
            uint8_t d = b[i + 1];
            if (d == 'u') {
                if (i + 6 > n) return MASK_JSON_FAIL;
                for (int k = 2; k < 6; k++)
                    if (!mask_is_hex(b[i + k])) return MASK_JSON_FAIL;
                i += 6;
            } else if (d == '"' || d == '\\' || d == '/' || d == 'b' || d == 'f' || d == 'n' || d == 'r' ||
                       d == 't') {
                i += 2;
            } else {
                return MASK_JSON_FAIL;
            }
            esc = 1;
            continue;
        }
        if (c < 0x20) return MASK_JSON_FAIL;
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len = mask_utf8_len(b + i, n - i);
        if (!len) return MASK_JSON_FAIL;
        i += len;
    }
    *pos = i + 1;
    *escaped = esc;
    return 0;
}

static int mask_jnumber(const uint8_t *b, size_t n, size_t *pos) {
    size_t i = *pos;
#define MASK_DIGIT(k) ((k) < n && b[k] >= '0' && b[k] <= '9')
    if (i < n && b[i] == '-') i++;
    if (!MASK_DIGIT(i)) return MASK_JSON_FAIL;
    if (b[i] == '0')
        i++;
    else
        while (MASK_DIGIT(i)) i++;
    if (i < n && b[i] == '.' && MASK_DIGIT(i + 1)) {
        i += 2;
        while (MASK_DIGIT(i)) i++;
    }
    if (i < n && (b[i] == 'e' || b[i] == 'E')) {
        size_t j = i + 1;
        if (j < n && (b[j] == '+' || b[j] == '-')) j++;
        if (MASK_DIGIT(j)) {
            i = j + 1;
            while (MASK_DIGIT(i)) i++;
        }
    }
#undef MASK_DIGIT
    *pos = i;
    return 0;
}

static int mask_jvalue(mask_jparser *P, size_t *pos, int depth, int32_t *out) {
    const uint8_t *b = P->b;
    size_t n = P->n, i = *pos;
    int32_t idx;
    if (i >= n) return MASK_JSON_FAIL;
    uint8_t c = b[i];
    if (c == '"') {
        int esc = 0;
        if ((idx = mask_jnew(P, J_STR, i)) < 0) return MASK_JSON_OOM;
        if (mask_jstring(P, &i, &esc)) return MASK_JSON_FAIL;
        P->nodes[idx].end = i;
        P->nodes[idx].escaped = (uint8_t)esc;
    } else if (c == '{' || c == '[') {
        int is_obj = c == '{';
        uint8_t close = is_obj ? '}' : ']';
        int32_t prev = -1;
        if (depth >= MASK_JSON_MAX_DEPTH) return MASK_JSON_FAIL;
        if ((idx = mask_jnew(P, is_obj ? J_OBJ : J_ARR, i)) < 0) return MASK_JSON_OOM;
        i = mask_skip_ws(b, n, i + 1);
        if (i < n && b[i] == close) {
            P->nodes[idx].end = i + 1;
            *pos = i + 1;
            *out = idx;
            return 0;
        }
        for (;;) {
            int32_t child;
            int rc;
            if (is_obj) {
                int32_t key;
                if (i >= n || b[i] != '"') return MASK_JSON_FAIL;
                if ((rc = mask_jvalue(P, &i, depth + 1, &key))) return rc;
                if (prev < 0) P->nodes[idx].first = key;
                else P->nodes[prev].next = key;
                prev = key;
                i = mask_skip_ws(b, n, i);
                if (i >= n || b[i] != ':') return MASK_JSON_FAIL;
                i = mask_skip_ws(b, n, i + 1);
            }
            if ((rc = mask_jvalue(P, &i, depth + 1, &child))) return rc;
            if (prev < 0) P->nodes[idx].first = child;
            else P->nodes[prev].next = child;
            prev = child;
            i = mask_skip_ws(b, n, i);
            if (i >= n) return MASK_JSON_FAIL;
            if (b[i] == ',') {
                i = mask_skip_ws(b, n, i + 1);
                continue;
            }
            if (b[i] == close) break;
            return MASK_JSON_FAIL;
        }
        P->nodes[idx].end = i + 1;
        i++;
    } else if (c == 't' && n - i >= 4 && memcmp(b + i, "true", 4) == 0) {
        if ((idx = mask_jnew(P, J_LIT, i)) < 0) return MASK_JSON_OOM;
        i += 4;
        P->nodes[idx].end = i;
    } else if (c == 'f' && n - i >= 5 && memcmp(b + i, "false", 5) == 0) {
        if ((idx = mask_jnew(P, J_LIT, i)) < 0) return MASK_JSON_OOM;
        i += 5;
        P->nodes[idx].end = i;
    } else if (c == 'n' && n - i >= 4 && memcmp(b + i, "null", 4) == 0) {
        if ((idx = mask_jnew(P, J_LIT, i)) < 0) return MASK_JSON_OOM;
        i += 4;
        P->nodes[idx].end = i;
    } else {
        size_t start = i;
        if (mask_jnumber(b, n, &i)) return MASK_JSON_FAIL;
        if ((idx = mask_jnew(P, J_NUM, start)) < 0) return MASK_JSON_OOM;
        P->nodes[idx].end = i;
    }
    *pos = i;
    *out = idx;
    return 0;
}

/* Parse a whole record; returns 0 and the root index, MASK_JSON_FAIL (text) or MASK_JSON_OOM. */
static int mask_jparse(mask_jparser *P, const uint8_t *b, size_t n, int32_t *root) {
    size_t i = mask_skip_ws(b, n, 0);
    int rc;
    P->b = b;
    P->n = n;
    P->nn = 0;
    P->oom = 0;
    if (i >= n || (b[i] != '{' && b[i] != '[')) return MASK_JSON_FAIL;
    rc = mask_jvalue(P, &i, 0, root);
    if (rc) return P->oom ? MASK_JSON_OOM : rc;
    if (mask_skip_ws(b, n, i) != n) return MASK_JSON_FAIL;
    return 0;
}

static uint32_t mask_hex4(const uint8_t *p) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        uint8_t c = p[i];
        v = v * 16 + (uint32_t)(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
    }
    return v;
}

static size_t mask_utf8_put(uint32_t cp, uint8_t *o) {
    if (cp < 0x80) {
        o[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (uint8_t)(0xC0 | (cp >> 6));
        o[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (uint8_t)(0xE0 | (cp >> 12));
        o[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (uint8_t)(0xF0 | (cp >> 18));
    o[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

/* Decode validated string content raw[0..n) into out (never longer than n); returns the length. */
static size_t mask_json_decode(const uint8_t *raw, size_t n, uint8_t *out) {
    size_t i = 0, o = 0;
    while (i < n) {
        const uint8_t *bs = (const uint8_t *)memchr(raw + i, '\\', n - i);
        size_t stop = bs ? (size_t)(bs - raw) : n;
        memcpy(out + o, raw + i, stop - i);
        o += stop - i;
        i = stop;
        if (i >= n) break;
        uint8_t k = raw[i + 1];
        if (k != 'u') {
            out[o++] = k == 'b' ? '\b' : k == 'f' ? '\f' : k == 'n' ? '\n' : k == 'r' ? '\r' : k == 't' ? '\t' : k;
            i += 2;
            continue;
        }
        uint32_t cp = mask_hex4(raw + i + 2);
        i += 6;
        if (cp >= 0xD800 && cp <= 0xDBFF && i + 6 <= n && raw[i] == '\\' && raw[i + 1] == 'u') {
            uint32_t low = mask_hex4(raw + i + 2);
            if (low >= 0xDC00 && low <= 0xDFFF) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                i += 6;
            }
        }
        if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xFFFD;
        o += mask_utf8_put(cp, out + o);
    }
    return o;
}

/* Write `"` + text with quotes, backslashes and control characters escaped + `"`; out needs 6n+18
 * (the fast path stores 16 bytes at a time). */
static size_t mask_json_quote(const uint8_t *t, size_t n, uint8_t *out) {
    static const char hexd[] = "0123456789abcdef";
    size_t o = 0, i = 0;
#if defined(__SSE2__)
    const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\'), space = _mm_set1_epi8(0x20);
#endif
    out[o++] = '"';
    for (; i < n; i++) {
        uint8_t c;
#if defined(__SSE2__)
        /* Copy 16 bytes at a time while none needs escaping (bytes >= 0x80 count as "maybe", they are
         * then copied one by one below). */
        while (i + 16 <= n) {
            __m128i x = _mm_loadu_si128((const __m128i *)(const void *)(t + i));
            int m = _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, quote), _mm_cmpeq_epi8(x, bslash)),
                                                   _mm_cmplt_epi8(x, space)));
            _mm_storeu_si128((__m128i *)(void *)(out + o), x);
            if (m) {
                size_t k = (size_t)__builtin_ctz((unsigned)m);
                o += k;
                i += k;
                break;
            }
            o += 16;
            i += 16;
        }
        if (i >= n) break;
#endif
        c = t[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            out[o++] = c;
            continue;
        }
        out[o++] = '\\';
        switch (c) {
        case '"': out[o++] = '"'; break;
        case '\\': out[o++] = '\\'; break;
        case '\b': out[o++] = 'b'; break;
        case '\f': out[o++] = 'f'; break;
        case '\n': out[o++] = 'n'; break;
        case '\r': out[o++] = 'r'; break;
        case '\t': out[o++] = 't'; break;
        default:
            out[o++] = 'u';
            out[o++] = '0';
            out[o++] = '0';
            out[o++] = (uint8_t)hexd[c >> 4];
            out[o++] = (uint8_t)hexd[c & 15];
        }
    }
    out[o++] = '"';
    return o;
}

#endif
