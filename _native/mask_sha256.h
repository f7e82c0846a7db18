/* SHA-256 (FIPS 180-4) and HMAC-SHA256 (RFC 2104) for the masking `hash` operator.
 *
 * The key's inner and outer pad blocks are absorbed once per engine (mask_hmac_init), so each token costs
 * only the compressions of the message and two final blocks. tests/masking/test_native_tables.py checks
 * the output against Python's hmac/hashlib.
 */
#ifndef STREAMGATE_MASK_SHA256_H
#define STREAMGATE_MASK_SHA256_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    uint32_t h[8];
    uint8_t block[64];
    size_t used;
    uint64_t total;
} mask_sha256;

static const uint32_t mask_sha256_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

#define MASK_ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void mask_sha256_compress(uint32_t h[8], const uint8_t p[64]) {
    uint32_t w[64], a, b, c, d, e, f, g, k;
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = MASK_ROR(w[i - 15], 7) ^ MASK_ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = MASK_ROR(w[i - 2], 17) ^ MASK_ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = k + (MASK_ROR(e, 6) ^ MASK_ROR(e, 11) ^ MASK_ROR(e, 25)) + ((e & f) ^ (~e & g)) +
                      mask_sha256_k[i] + w[i];
        uint32_t t2 = (MASK_ROR(a, 2) ^ MASK_ROR(a, 13) ^ MASK_ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        k = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e, h[5] += f, h[6] += g, h[7] += k;
}

static void mask_sha256_init(mask_sha256 *s) {
    static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(s->h, iv, sizeof iv);
    s->used = 0;
    s->total = 0;
}

static void mask_sha256_update(mask_sha256 *s, const uint8_t *p, size_t n) {
    s->total += n;
    while (n) {
        size_t take = 64 - s->used < n ? 64 - s->used : n;
        if (s->used == 0 && n >= 64) {
            mask_sha256_compress(s->h, p);
            p += 64;
            n -= 64;
            continue;
        }
        memcpy(s->block + s->used, p, take);
        s->used += take;
        p += take;
        n -= take;
        if (s->used == 64) {
            mask_sha256_compress(s->h, s->block);
            s->used = 0;
        }
    }
}

static void mask_sha256_final(mask_sha256 *s, uint8_t out[32]) {
    uint64_t bits = s->total * 8;
    uint8_t pad[72] = {0x80};
    size_t padlen = s->used < 56 ? 56 - s->used : 120 - s->used;
    for (int i = 0; i < 8; i++) pad[padlen + i] = (uint8_t)(bits >> (56 - 8 * i));
    mask_sha256_update(s, pad, padlen + 8);
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (uint8_t)(s->h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(s->h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(s->h[i] >> 8);
        out[4 * i + 3] = (uint8_t)s->h[i];
    }
}

typedef struct {
    mask_sha256 inner, outer; /* states after absorbing key^ipad / key^opad */
} mask_hmac;

static void mask_hmac_init(mask_hmac *m, const uint8_t *key, size_t klen) {
    uint8_t k[64] = {0}, pad[64];
    if (klen > 64) {
        mask_sha256 s;
        mask_sha256_init(&s);
        mask_sha256_update(&s, key, klen);
        mask_sha256_final(&s, k);
    } else if (klen) {
        memcpy(k, key, klen);
    }
    for (int i = 0; i < 64; i++) pad[i] = k[i] ^ 0x36;
    mask_sha256_init(&m->inner);
    mask_sha256_update(&m->inner, pad, 64);
    for (int i = 0; i < 64; i++) pad[i] = k[i] ^ 0x5c;
    mask_sha256_init(&m->outer);
    mask_sha256_update(&m->outer, pad, 64);
    memset(k, 0, sizeof k);
}

static void mask_hmac_digest(const mask_hmac *m, const uint8_t *msg, size_t n, uint8_t out[32]) {
    mask_sha256 s = m->inner;
    uint8_t inner[32];
    mask_sha256_update(&s, msg, n);
    mask_sha256_final(&s, inner);
    s = m->outer;
    mask_sha256_update(&s, inner, 32);
    mask_sha256_final(&s, out);
}

#endif
