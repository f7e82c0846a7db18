/* Masking detectors in C: character classes, validators and the extractors that turn a Hyperscan trigger
 * into candidate findings.
 *
 * This is a line-by-line port of gateway/masking/reference.py (`_extract` and the validators above it),
 * which is the specification; tests/masking/test_differential.py holds both to identical output. Kind
 * numbers and tables mirror gateway/masking/detectors.py (checked by tests/masking/test_native_tables.py).
 * Everything here works on one scan unit `u[0..n)`: a trigger end `e` is unit-local, nothing reads
 * outside the unit, and every loop is bounded so that adversarial input stays linear per trigger run.
 */
#ifndef STREAMGATE_MASK_VALIDATORS_H
#define STREAMGATE_MASK_VALIDATORS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum {
    K_CARD_RUN = 1, K_CARD_GROUP, K_SSN, K_IBAN_CONTIG, K_IBAN_GROUPED, K_EMAIL, K_PHONE_INTL,
    K_PHONE_NANP, K_PHONE_TRUNK, K_IPV4, K_IPV6, K_AWS, K_PEM, K_JWT, K_SECRET_PREFIX, K_SECRET_ASSIGN,
    K_CUSTOM_REGEX, K_CUSTOM_DICT, K_TRIGGER
};

/* `param` of K_TRIGGER patterns (gateway/masking/detectors.py TRIGGER_*) */
enum { TRIGGER_FIELD_KEY = 0, TRIGGER_SECRET_KEY = 1, TRIGGER_BACKSLASH = 2 };

#define MASK_ENTROPY_THRESHOLD 3.0
#define MASK_MIN_ASSIGNED_SECRET_LEN 8
#define MASK_MIN_PREFIXED_BODY_LEN 16

/* ---------------------------------------------------------------------------------- character classes */
enum {
    CL_DIGIT = 1u << 0, CL_ALNUM = 1u << 1, CL_WORD = 1u << 2, CL_TOKEN = 1u << 3, CL_LOCAL = 1u << 4,
    CL_DOMAIN = 1u << 5, CL_HEX = 1u << 6, CL_IPV4 = 1u << 7, CL_IPV6 = 1u << 8, CL_JWT = 1u << 9,
    CL_PEM = 1u << 10, CL_PHONESEP = 1u << 11, CL_SPACE = 1u << 12, CL_VALUE = 1u << 13,
    CL_UPALNUM = 1u << 14, CL_X = 1u << 15 /* digit-shape alphabet [0-9 ().-] */, CL_HEXCOLON = 1u << 16
};
static uint32_t mask_cc[256];
/* Digit-shape alphabet as small codes for the structure pass: 0 = not in [0-9 ().-]. */
enum { X_NONE = 0, X_DIGIT, X_SPACE, X_DASH, X_DOT, X_LPAREN, X_RPAREN, X_CODES };
static uint8_t mask_xcode[256];

static void mask_cc_add(const char *chars, uint32_t bit) {
    for (; *chars; chars++) mask_cc[(uint8_t)*chars] |= bit;
}

static void mask_init_tables(void) {
    const char *digits = "0123456789", *upper = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    const char *lower = "abcdefghijklmnopqrstuvwxyz";
    const uint32_t alnum_like = CL_ALNUM | CL_WORD | CL_TOKEN | CL_LOCAL | CL_DOMAIN | CL_JWT | CL_VALUE;
    memset(mask_cc, 0, sizeof mask_cc);
    mask_cc_add(digits, CL_DIGIT | alnum_like | CL_HEX | CL_IPV4 | CL_IPV6 | CL_PEM | CL_UPALNUM);
    mask_cc_add(upper, alnum_like | CL_PEM | CL_UPALNUM);
    mask_cc_add(lower, alnum_like);
    mask_cc_add("ABCDEFabcdef", CL_HEX | CL_IPV6);
    mask_cc_add("_", CL_WORD | CL_TOKEN | CL_LOCAL | CL_JWT | CL_VALUE);
    mask_cc_add("-", CL_TOKEN | CL_LOCAL | CL_DOMAIN | CL_JWT | CL_VALUE | CL_PHONESEP);
    mask_cc_add(".", CL_LOCAL | CL_DOMAIN | CL_IPV4 | CL_IPV6 | CL_JWT | CL_VALUE | CL_PHONESEP);
    mask_cc_add("%+", CL_LOCAL);
    mask_cc_add(":", CL_IPV6);
    mask_cc_add(" ", CL_PEM | CL_PHONESEP | CL_SPACE);
    mask_cc_add("()", CL_PHONESEP);
    mask_cc_add("\t\r\n", CL_SPACE);
    mask_cc_add("/+=~", CL_VALUE);
    mask_cc_add("0123456789 ().-", CL_X);
    memset(mask_xcode, X_NONE, sizeof mask_xcode);
    for (int c = '0'; c <= '9'; c++) mask_xcode[c] = X_DIGIT;
    mask_xcode[' '] = X_SPACE;
    mask_xcode['-'] = X_DASH;
    mask_xcode['.'] = X_DOT;
    mask_xcode['('] = X_LPAREN;
    mask_xcode[')'] = X_RPAREN;
    mask_cc_add("0123456789ABCDEFabcdef:", CL_HEXCOLON);
}

#define IS(c, cls) (mask_cc[(uint8_t)(c)] & (cls))

/* ---------------------------------------------------------------------------------- tables */
static const char *const mask_secret_keywords[] = {
    "apikey", "api_key", "api-key", "secret", "token", "password", "passwd", "pwd", "credential",
    "accesskey", "access_key", "access-key", "privatekey", "private_key", "private-key", NULL};

static const char *const mask_secret_prefixes[] = {
    "sk_live_", "sk_test_", "rk_live_", "rk_test_", "github_pat_", "ghp_", "gho_", "ghu_", "ghs_", "ghr_",
    "glpat-", "xoxb-", "xoxp-", "xoxa-", "xoxr-", "xoxs-", "xapp-", "AIza", "npm_", "pypi-", "hf_", "sk-",
    NULL};

static const char *const mask_ssn_samples[] = {"078051120", "219099999", "457555462", NULL};

static const struct { char cc[3]; int len; } mask_iban_table[] = {
    {"AD", 24}, {"AE", 23}, {"AL", 28}, {"AT", 20}, {"AZ", 28}, {"BA", 20}, {"BE", 16}, {"BG", 22},
    {"BH", 22}, {"BI", 27}, {"BR", 29}, {"BY", 28}, {"CH", 21}, {"CR", 22}, {"CY", 28}, {"CZ", 24},
    {"DE", 22}, {"DJ", 27}, {"DK", 18}, {"DO", 28}, {"EE", 20}, {"EG", 29}, {"ES", 24}, {"FI", 18},
    {"FK", 18}, {"FO", 18}, {"FR", 27}, {"GB", 22}, {"GE", 22}, {"GI", 23}, {"GL", 18}, {"GR", 27},
    {"GT", 28}, {"HR", 21}, {"HU", 28}, {"IE", 22}, {"IL", 23}, {"IQ", 23}, {"IS", 26}, {"IT", 27},
    {"JO", 30}, {"KW", 30}, {"KZ", 20}, {"LB", 28}, {"LC", 32}, {"LI", 21}, {"LT", 20}, {"LU", 20},
    {"LV", 21}, {"LY", 25}, {"MC", 27}, {"MD", 24}, {"ME", 22}, {"MK", 19}, {"MN", 20}, {"MR", 27},
    {"MT", 31}, {"MU", 30}, {"NI", 28}, {"NL", 18}, {"NO", 15}, {"OM", 23}, {"PK", 24}, {"PL", 28},
    {"PS", 29}, {"PT", 25}, {"QA", 29}, {"RO", 24}, {"RS", 22}, {"RU", 33}, {"SA", 24}, {"SC", 31},
    {"SD", 18}, {"SE", 24}, {"SI", 19}, {"SK", 24}, {"SM", 27}, {"SO", 23}, {"ST", 25}, {"SV", 28},
    {"TL", 23}, {"TN", 24}, {"TR", 26}, {"UA", 29}, {"VA", 22}, {"VG", 24}, {"XK", 20}, {"YE", 30},
    {"", 0}};

static int mask_iban_length(const uint8_t *cc) {
    for (int i = 0; mask_iban_table[i].len; i++)
        if ((uint8_t)mask_iban_table[i].cc[0] == cc[0] && (uint8_t)mask_iban_table[i].cc[1] == cc[1])
            return mask_iban_table[i].len;
    return 0;
}

/* ---------------------------------------------------------------------------------- validators */
static int mask_luhn_ok(const uint8_t *d, size_t n) {
    int total = 0;
    for (size_t i = 0; i < n; i++) {
        int x = d[n - 1 - i] - '0';
        if (i & 1) {
            x *= 2;
            if (x > 9) x -= 9;
        }
        total += x;
    }
    return total % 10 == 0;
}

static int mask_card_ok(const uint8_t *d, size_t n) {
    size_t i;
    if (n < 13 || n > 19 || d[0] < '2' || d[0] > '6') return 0;
    for (i = 1; i < n && d[i] == d[0]; i++) {
    }
    return i != n && mask_luhn_ok(d, n);
}

static int mask_ssn_ok(const uint8_t *d9) {
    int area = (d9[0] - '0') * 100 + (d9[1] - '0') * 10 + (d9[2] - '0');
    if (area == 0 || area == 666 || area >= 900) return 0;
    if (d9[3] == '0' && d9[4] == '0') return 0;
    if (d9[5] == '0' && d9[6] == '0' && d9[7] == '0' && d9[8] == '0') return 0;
    for (int i = 0; mask_ssn_samples[i]; i++)
        if (memcmp(d9, mask_ssn_samples[i], 9) == 0) return 0;
    return 1;
}

static int mask_iban_ok(const uint8_t *c, size_t n) {
    unsigned rest = 0;
    if ((size_t)mask_iban_length(c) != n) return 0;
    for (size_t k = 0; k < n; k++) {
        uint8_t ch = c[(k + 4) % n];
        if (ch >= '0' && ch <= '9')
            rest = (rest * 10 + (unsigned)(ch - '0')) % 97;
        else
            rest = (rest * 100 + (unsigned)(ch - 55)) % 97;
    }
    return rest == 1;
}

static int mask_email_local_ok(const uint8_t *l, size_t n) {
    if (n < 1 || n > 64 || l[n - 1] == '.') return 0;
    for (size_t i = 0; i + 1 < n; i++)
        if (l[i] == '.' && l[i + 1] == '.') return 0;
    return 1;
}

static int mask_email_domain_ok(const uint8_t *d, size_t n) {
    size_t labels = 0, start = 0;
    if (n < 1 || n > 253) return 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && d[i] != '.') continue;
        size_t len = i - start;
        if (len < 1 || len > 63 || d[start] == '-' || d[i - 1] == '-') return 0;
        labels++;
        if (i == n) { /* the TLD: alphabetic, at least two letters */
            if (len < 2) return 0;
            for (size_t k = start; k < n; k++)
                if (!((d[k] | 0x20) >= 'a' && (d[k] | 0x20) <= 'z')) return 0;
        }
        start = i + 1;
    }
    return labels >= 2;
}

static int mask_ipv4_ok(const uint8_t *t, size_t n) {
    size_t parts = 0, start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && t[i] != '.') continue;
        size_t len = i - start;
        int value = 0;
        if (len < 1 || len > 3) return 0;
        for (size_t k = start; k < i; k++) {
            if (!IS(t[k], CL_DIGIT)) return 0;
            value = value * 10 + (t[k] - '0');
        }
        if (len > 1 && t[start] == '0') return 0;
        if (value > 255) return 0;
        parts++;
        start = i + 1;
    }
    return parts == 4;
}

/* Groups of `t[0..n)` split on ':' must each be 1-4 hex digits; returns the group count or -1. */
static int mask_hex_groups(const uint8_t *t, size_t n) {
    int groups = 0;
    size_t start = 0;
    if (n == 0) return 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && t[i] != ':') continue;
        size_t len = i - start;
        if (len < 1 || len > 4) return -1;
        for (size_t k = start; k < i; k++)
            if (!IS(t[k], CL_HEX)) return -1;
        groups++;
        start = i + 1;
    }
    return groups;
}

static int mask_ipv6_ok(const uint8_t *t0, size_t n0) {
    uint8_t t[64];
    size_t n = n0, dc = 0, at = 0;
    if (n0 > 45) return 0; /* longer than any IPv6 text form */
    memcpy(t, t0, n0);
    if (memchr(t, '.', n)) {
        size_t cut = n;
        for (size_t i = n; i > 0; i--)
            if (t[i - 1] == ':') {
                cut = i - 1;
                break;
            }
        if (cut == n || !mask_ipv4_ok(t + cut + 1, n - cut - 1)) return 0;
        memcpy(t + cut + 1, "0:0", 3); /* the dotted quad counts as two groups */
        n = cut + 4;
    }
    for (size_t i = 0; i + 2 < n; i++)
        if (t[i] == ':' && t[i + 1] == ':' && t[i + 2] == ':') return 0;
    for (size_t i = 0; i + 1 < n; i++)
        if (t[i] == ':' && t[i + 1] == ':') {
            dc++;
            at = i;
            i++;
        }
    if (dc > 1) return 0;
    if (dc == 1) {
        int left = mask_hex_groups(t, at), right = mask_hex_groups(t + at + 2, n - at - 2);
        if (left < 0 || right < 0) return 0;
        return left + right >= 1 && left + right <= 7;
    }
    return mask_hex_groups(t, n) == 8;
}

static int mask_b64url_value(uint8_t c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    return 63; /* '_': the JWT run only holds base64url characters here */
}

/* Does the base64url-decoded segment contain `"alg"`? Decodes as a stream with a 5-byte window. */
static int mask_jwt_header_ok(const uint8_t *s, size_t n) {
    static const uint8_t want[5] = {'"', 'a', 'l', 'g', '"'};
    uint8_t win[5] = {0};
    size_t have = 0;
    uint32_t acc = 0;
    int bits = 0;
    if (n % 4 == 1) return 0;
    for (size_t i = 0; i < n; i++) {
        acc = (acc << 6) | (uint32_t)mask_b64url_value(s[i]);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            memmove(win, win + 1, 4);
            win[4] = (uint8_t)(acc >> bits);
            have++;
            if (have >= 5 && memcmp(win, want, 5) == 0) return 1;
        }
    }
    return 0;
}

/* Shannon entropy in bits per byte, summed in byte-value order (same doubles as the reference). */
static double mask_shannon_bits(const uint8_t *d, size_t n) {
    size_t counts[256] = {0};
    double acc = 0.0;
    for (size_t i = 0; i < n; i++) counts[d[i]]++;
    for (int b = 0; b < 256; b++)
        if (counts[b]) acc += (double)counts[b] * log2((double)counts[b]);
    return log2((double)n) - acc / (double)n;
}

static int mask_secret_value_ok(const uint8_t *v, size_t n, size_t min_len) {
    return n >= min_len && mask_shannon_bits(v, n) >= MASK_ENTROPY_THRESHOLD;
}

static int mask_has_secret_keyword(const uint8_t *w, size_t n) {
    for (int k = 0; mask_secret_keywords[k]; k++) {
        const char *kw = mask_secret_keywords[k];
        size_t kl = strlen(kw);
        if (kl > n) continue;
        for (size_t i = 0; i + kl <= n; i++) {
            size_t j = 0;
            while (j < kl) {
                uint8_t c = w[i + j];
                if (c >= 'A' && c <= 'Z') c = (uint8_t)(c + 32);
                if (c != (uint8_t)kw[j]) break;
                j++;
            }
            if (j == kl) return 1;
        }
    }
    return 0;
}

static int mask_nanp_ok(const uint8_t *ten) {
    return ten[0] >= '2' && ten[0] <= '9' && ten[3] >= '2' && ten[3] <= '9' &&
           !(ten[1] == '1' && ten[2] == '1') && !(ten[4] == '1' && ten[5] == '1');
}

static int mask_phone_sep_ok(const uint8_t *s, size_t k) {
    int seps = 0, parens = 0;
    for (size_t i = 0; i < k; i++) {
        if (s[i] == ' ' || s[i] == '.' || s[i] == '-') seps++;
        if (s[i] == '(' || s[i] == ')') parens++;
    }
    return seps <= 1 && parens <= 1;
}

/* ---------------------------------------------------------------------------------- extraction */
typedef struct {
    size_t s, e;
    int det;
} mask_cand;

typedef struct {
    mask_cand *p;
    size_t n, cap;
} mask_candvec;

static int mask_cand_push(mask_candvec *v, size_t s, size_t e, int det) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 64;
        mask_cand *q = (mask_cand *)realloc(v->p, cap * sizeof *q);
        if (!q) return -1;
        v->p = q;
        v->cap = cap;
    }
    v->p[v->n].s = s;
    v->p[v->n].e = e;
    v->p[v->n].det = det;
    v->n++;
    return 0;
}

typedef struct {
    int kind, width, det, param, som;
    int emulated; /* found by the structure pass (mask_engine.h), not compiled into the Hyperscan database */
} mask_pattern;

/* Per-unit extraction state: run dedupe marks (valid when gen matches) and the PEM END-line cache. */
typedef struct {
    size_t *run_end;
    uint32_t *run_gen;
    uint32_t gen;
    const uint8_t *pem_marker;
    size_t pem_marker_len, pem_from;
    long long pem_found;
} mask_unit_state;

static size_t mask_back(const uint8_t *u, size_t i, uint32_t cls) {
    while (i > 0 && IS(u[i - 1], cls)) i--;
    return i;
}

static size_t mask_fwd(const uint8_t *u, size_t n, size_t i, uint32_t cls) {
    while (i < n && IS(u[i], cls)) i++;
    return i;
}

static long long mask_find(const uint8_t *h, size_t hn, size_t from, const uint8_t *needle, size_t nn) {
    if (nn == 0 || from > hn || hn - from < nn) return -1;
    const uint8_t *end = h + hn - nn + 1, *p = h + from;
    while (p < end) {
        p = (const uint8_t *)memchr(p, needle[0], (size_t)(end - p));
        if (!p) return -1;
        if (memcmp(p, needle, nn) == 0) return (long long)(p - h);
        p++;
    }
    return -1;
}

static int mask_extract(const mask_pattern *pat, int pid, const uint8_t *u, size_t n, size_t frm, size_t e,
                        mask_unit_state *st, mask_candvec *out) {
    const int kind = pat->kind, det = pat->det;
    size_t s = 0;

    switch (kind) {
    case K_TRIGGER:
        return 0;
    case K_CARD_RUN:
    case K_IPV4:
    case K_IPV6:
    case K_JWT: {
        uint32_t cls = kind == K_CARD_RUN ? CL_DIGIT : kind == K_IPV4 ? CL_IPV4 : kind == K_IPV6 ? CL_IPV6 : CL_JWT;
        if (st->run_gen[pid] == st->gen && e <= st->run_end[pid]) return 0; /* same run as before */
        size_t a = mask_back(u, e, cls), b = mask_fwd(u, n, e, cls);
        st->run_gen[pid] = st->gen;
        st->run_end[pid] = b;
        if (kind == K_CARD_RUN) {
            if ((a > 0 && IS(u[a - 1], CL_ALNUM)) || (b < n && IS(u[b], CL_ALNUM))) return 0;
            if (mask_card_ok(u + a, b - a)) return mask_cand_push(out, a, b, det);
            return 0;
        }
        if (kind == K_IPV4) {
            size_t sa = a, sb = b;
            while (sa < sb && u[sa] == '.') sa++;
            while (sb > sa && u[sb - 1] == '.') sb--;
            if ((sa > 0 && IS(u[sa - 1], CL_WORD)) || (sb < n && IS(u[sb], CL_WORD))) return 0;
            if (mask_ipv4_ok(u + sa, sb - sa)) return mask_cand_push(out, sa, sb, det);
            return 0;
        }
        if (kind == K_IPV6) {
            size_t sa = a, sb = b;
            while (sb > sa && u[sb - 1] == '.') sb--;
            if (sb > sa && u[sb - 1] == ':' && !(sb >= sa + 2 && u[sb - 2] == ':')) sb--;
            if (sb > sa && u[sa] == ':' && !(sa + 1 < sb && u[sa + 1] == ':')) sa++;
            if ((sa > 0 && IS(u[sa - 1], CL_WORD)) || (sb < n && IS(u[sb], CL_WORD))) return 0;
            if (sb > sa && mask_ipv6_ok(u + sa, sb - sa)) return mask_cand_push(out, sa, sb, det);
            return 0;
        }
        /* JWT */
        if (b - a < 3 || memcmp(u + a, "eyJ", 3) != 0) return 0;
        {
            size_t segs = 1, first_dot = 0, second_dot = 0;
            for (size_t i = a; i < b; i++)
                if (u[i] == '.') {
                    if (segs == 1) first_dot = i;
                    if (segs == 2) second_dot = i;
                    segs++;
                }
            if ((segs == 4 || segs == 6) && u[b - 1] == '.') {
                segs--;
                b--;
            }
            if (segs != 3 && segs != 5) return 0;
            if (segs == 3 && second_dot == first_dot + 1) return 0; /* empty payload */
            if (mask_jwt_header_ok(u + a, first_dot - a)) return mask_cand_push(out, a, b, det);
        }
        return 0;
    }
    case K_CUSTOM_REGEX: {
        size_t cs = frm, ce = e;
        while (cs > 0 && (u[cs] & 0xC0) == 0x80) cs--;
        while (ce < n && (u[ce] & 0xC0) == 0x80) ce++;
        return mask_cand_push(out, cs, ce, det);
    }
    default:
        break;
    }

    if (pat->width) {
        if (e < (size_t)pat->width) return 0;
        s = e - (size_t)pat->width;
    }

    switch (kind) {
    case K_CARD_GROUP: {
        uint8_t digits[24], sep = 0;
        size_t nd = 0;
        if ((s > 0 && IS(u[s - 1], CL_ALNUM)) || (e < n && IS(u[e], CL_ALNUM))) return 0;
        for (size_t i = s; i < e; i++) {
            if (IS(u[i], CL_DIGIT)) {
                digits[nd++] = u[i];
            } else if (!sep) {
                sep = u[i];
            } else if (u[i] != sep) {
                return 0;
            }
        }
        if (mask_card_ok(digits, nd)) return mask_cand_push(out, s, e, det);
        return 0;
    }
    case K_SSN: {
        uint8_t d9[9];
        if ((s > 0 && IS(u[s - 1], CL_DIGIT)) || (e < n && IS(u[e], CL_DIGIT))) return 0;
        memcpy(d9, u + s, 3);
        memcpy(d9 + 3, u + s + 4, 2);
        memcpy(d9 + 5, u + s + 7, 4);
        if (mask_ssn_ok(d9)) return mask_cand_push(out, s, e, det);
        return 0;
    }
    case K_IBAN_CONTIG:
    case K_IBAN_GROUPED: {
        uint8_t chars[40];
        size_t end, length;
        if (s > 0 && IS(u[s - 1], CL_ALNUM)) return 0;
        length = (size_t)mask_iban_length(u + s);
        if (!length) return 0;
        if (kind == K_IBAN_CONTIG) {
            end = s + length;
            if (end > n) return 0;
            for (size_t i = s + 4; i < end; i++)
                if (!IS(u[i], CL_UPALNUM)) return 0;
            memcpy(chars, u + s, length);
        } else {
            size_t count = 4;
            memcpy(chars, u + s, 4);
            end = s + 4;
            while (count < length) {
                size_t take = length - count < 4 ? length - count : 4;
                if (end >= n || u[end] != ' ') return 0;
                end++;
                if (end + take > n) return 0;
                for (size_t i = 0; i < take; i++) {
                    if (!IS(u[end + i], CL_UPALNUM)) return 0;
                    chars[count + i] = u[end + i];
                }
                end += take;
                count += take;
            }
        }
        if (end < n && IS(u[end], CL_ALNUM)) return 0;
        if (mask_iban_ok(chars, length)) return mask_cand_push(out, s, end, det);
        return 0;
    }
    case K_EMAIL: {
        size_t at = e - 2, a = mask_back(u, at, CL_LOCAL), b;
        while (a < at && u[a] == '.') a++;
        b = mask_fwd(u, n, at + 1, CL_DOMAIN);
        while (b > at + 1 && (u[b - 1] == '.' || u[b - 1] == '-')) b--;
        if (mask_email_local_ok(u + a, at - a) && mask_email_domain_ok(u + at + 1, b - at - 1))
            return mask_cand_push(out, a, b, det);
        return 0;
    }
    case K_PHONE_INTL: {
        uint8_t digits[16];
        size_t nd = 0, p = s + 1, last;
        if (s > 0 && (IS(u[s - 1], CL_ALNUM) || u[s - 1] == '+')) return 0;
        for (;;) {
            size_t q = p, k = 0;
            while (q < n && IS(u[q], CL_DIGIT) && nd <= 15) digits[nd++] = u[q++];
            if (nd > 15) return 0;
            last = q;
            while (k < 3 && q + k < n && IS(u[q + k], CL_PHONESEP)) k++;
            if (k >= 1 && k <= 2 && q + k < n && IS(u[q + k], CL_DIGIT) && mask_phone_sep_ok(u + q, k)) {
                p = q + k;
                continue;
            }
            break;
        }
        if (nd < 8) return 0;
        if (digits[0] == '1' && !(nd == 11 && mask_nanp_ok(digits + 1))) return 0;
        if (last < n && IS(u[last], CL_ALNUM)) return 0;
        return mask_cand_push(out, s, last, det);
    }
    case K_PHONE_NANP: {
        uint8_t digits[11];
        size_t nd = 0;
        if (s > 0 && (IS(u[s - 1], CL_WORD) || u[s - 1] == '+' || u[s - 1] == '-' || u[s - 1] == '.' ||
                      u[s - 1] == '('))
            return 0;
        if (e < n && (IS(u[e], CL_WORD) ||
                      ((u[e] == '-' || u[e] == '.' || u[e] == ' ') && e + 1 < n && IS(u[e + 1], CL_DIGIT))))
            return 0;
        for (size_t i = s; i < e; i++)
            if (IS(u[i], CL_DIGIT) && nd < 11) digits[nd++] = u[i];
        if (nd >= 10 && mask_nanp_ok(digits + nd - 10)) return mask_cand_push(out, s, e, det);
        return 0;
    }
    case K_PHONE_TRUNK: {
        size_t sep_pos, g, first, groups = 1, total, p;
        uint8_t sep;
        if (e < 3) return 0;
        sep_pos = e - 3;
        g = mask_back(u, sep_pos, CL_DIGIT);
        first = sep_pos - g;
        if (!(first >= 2 && first <= 5 && u[g] == '0' && u[g + 1] != '0')) return 0;
        if (g > 0 && (IS(u[g - 1], CL_WORD) || u[g - 1] == '+' || u[g - 1] == '.' || u[g - 1] == '-')) return 0;
        sep = u[sep_pos];
        total = first;
        p = sep_pos;
        while (p + 1 < n && u[p] == sep && IS(u[p + 1], CL_DIGIT) && total <= 11) {
            size_t q = mask_fwd(u, n, p + 1, CL_DIGIT), size = q - p - 1;
            if (size < 2 || size > 8) return 0;
            groups++;
            total += size;
            p = q;
        }
        if (groups < 2 || (total != 10 && total != 11)) return 0;
        if (p < n && (IS(u[p], CL_WORD) ||
                      ((u[p] == ' ' || u[p] == '.' || u[p] == '-') && p + 1 < n && IS(u[p + 1], CL_DIGIT))))
            return 0;
        return mask_cand_push(out, g, p, det);
    }
    case K_AWS:
        if ((s > 0 && IS(u[s - 1], CL_ALNUM)) || (e < n && IS(u[e], CL_ALNUM))) return 0;
        return mask_cand_push(out, s, e, det);
    case K_PEM: {
        size_t q, p;
        long long found;
        const uint8_t *marker_tail;
        size_t tail_len;
        if (e >= 22 && memcmp(u + e - 22, "PRIVATE KEY BLOCK-----", 22) == 0)
            q = e - 22;
        else if (e >= 16 && memcmp(u + e - 16, "PRIVATE KEY-----", 16) == 0)
            q = e - 16;
        else
            return 0;
        p = mask_back(u, q, CL_PEM);
        if (p < 5 || memcmp(u + p - 5, "-----", 5) != 0 || p + 6 > q || memcmp(u + p, "BEGIN ", 6) != 0) return 0;
        /* END line = "-----END " + the header after "BEGIN " (u[p+6..e)). */
        marker_tail = u + p + 6;
        tail_len = e - (p + 6);
        if (st->pem_marker && st->pem_marker_len == tail_len && memcmp(st->pem_marker, marker_tail, tail_len) == 0 &&
            st->pem_from <= e && (st->pem_found < 0 || (size_t)st->pem_found >= e)) {
            found = st->pem_found;
        } else {
            found = -1;
            for (size_t from = e;;) {
                long long hit = mask_find(u, n, from, (const uint8_t *)"-----END ", 9);
                if (hit < 0) break;
                if ((size_t)hit + 9 + tail_len <= n && memcmp(u + hit + 9, marker_tail, tail_len) == 0) {
                    found = hit;
                    break;
                }
                from = (size_t)hit + 1;
            }
            st->pem_marker = marker_tail;
            st->pem_marker_len = tail_len;
            st->pem_from = e;
            st->pem_found = found;
        }
        return mask_cand_push(out, p - 5, found >= 0 ? (size_t)found + 9 + tail_len : n, det);
    }
    case K_SECRET_PREFIX: {
        size_t body = e - MASK_MIN_PREFIXED_BODY_LEN;
        if (e < MASK_MIN_PREFIXED_BODY_LEN) return 0;
        for (int k = 0; mask_secret_prefixes[k]; k++) {
            size_t pl = strlen(mask_secret_prefixes[k]), start, end;
            if (body < pl) continue;
            start = body - pl;
            if (memcmp(u + start, mask_secret_prefixes[k], pl) != 0) continue;
            if (start > 0 && IS(u[start - 1], CL_TOKEN)) continue;
            end = mask_fwd(u, n, body, CL_TOKEN);
            if (mask_shannon_bits(u + body, end - body) >= MASK_ENTROPY_THRESHOLD)
                if (mask_cand_push(out, start, end, det)) return -1;
        }
        return 0;
    }
    case K_SECRET_ASSIGN: {
        size_t v = e - 1, p = v, w, end;
        if (p > 0 && (u[p - 1] == '\'' || u[p - 1] == '"')) p--;
        while (p > 0 && (u[p - 1] == ' ' || u[p - 1] == '\t')) p--;
        if (p == 0 || (u[p - 1] != ':' && u[p - 1] != '=')) return 0;
        p--;
        while (p > 0 && (u[p - 1] == ' ' || u[p - 1] == '\t')) p--;
        if (p > 0 && (u[p - 1] == '\'' || u[p - 1] == '"')) p--;
        w = mask_back(u, p, CL_TOKEN);
        if (!mask_has_secret_keyword(u + w, p - w)) return 0;
        end = mask_fwd(u, n, v, CL_VALUE);
        if (mask_secret_value_ok(u + v, end - v, MASK_MIN_ASSIGNED_SECRET_LEN))
            return mask_cand_push(out, v, end, det);
        return 0;
    }
    case K_CUSTOM_DICT: {
        size_t cs = s, ce = e;
        if (pat->param && ((s > 0 && IS(u[s - 1], CL_WORD)) || (e < n && IS(u[e], CL_WORD)))) return 0;
        while (cs > 0 && (u[cs] & 0xC0) == 0x80) cs--;
        while (ce < n && (u[ce] & 0xC0) == 0x80) ce++;
        return mask_cand_push(out, cs, ce, det);
    }
    default:
        return 0;
    }
}

#endif
