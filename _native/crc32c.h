/*
 * CRC32C (Castagnoli), the checksum of Kafka record batches (magic 2).
 *
 * Two engines compute the same raw register update (no pre/post inversion; the caller applies it):
 *   - slicing-by-8 tables, portable C, used everywhere;
 *   - the SSE4.2 `crc32` instruction on x86-64, chosen at run time with __builtin_cpu_supports, compiled
 *     through a target attribute so the extension builds without -msse4.2 and still loads on any x86-64.
 * The hardware engine runs three independent streams over long inputs (the instruction has a latency of
 * three cycles but a throughput of one) and joins them with precomputed "advance over N zero bytes"
 * tables, which is valid because the CRC register update is linear over GF(2).
 *
 * Everything here is static: this header is included by exactly one translation unit (kafka.pyx).
 * sg_crc32c_init() must run once, under the GIL, before any other function (the module init does it).
 */
#ifndef STREAMGATE_CRC32C_H
#define STREAMGATE_CRC32C_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define SG_CRC32C_POLY 0x82F63B78u /* Castagnoli polynomial, bit-reflected */

static uint32_t sg_crc32c_table[8][256];
static int sg_crc32c_hw_available = 0;

static inline uint32_t sg_load_le32(const unsigned char *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static uint32_t sg_crc32c_portable_raw(uint32_t crc, const unsigned char *p, size_t n) {
    const uint32_t (*t)[256] = (const uint32_t (*)[256])sg_crc32c_table;
    while (n >= 8) {
        uint32_t lo = crc ^ sg_load_le32(p);
        uint32_t hi = sg_load_le32(p + 4);
        /* byte k of the 8-byte word is followed by 7-k more bytes, hence table 7-k */
        crc = t[7][lo & 0xffu] ^ t[6][(lo >> 8) & 0xffu] ^ t[5][(lo >> 16) & 0xffu] ^ t[4][lo >> 24]
            ^ t[3][hi & 0xffu] ^ t[2][(hi >> 8) & 0xffu] ^ t[1][(hi >> 16) & 0xffu] ^ t[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    while (n--) {
        crc = t[0][(crc ^ *p++) & 0xffu] ^ (crc >> 8);
    }
    return crc;
}

/* SG_CRC32C_PORTABLE_ONLY builds the table engine alone, as on non-x86 targets (used to test that build). */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(SG_CRC32C_PORTABLE_ONLY)
#define SG_CRC32C_HAVE_X86 1
#include <nmmintrin.h>

#define SG_CRC32C_LONG 8192u
#define SG_CRC32C_SHORT 256u

/* Raw register update over `count` zero bytes; only used to build the combine tables. */
static uint32_t sg_crc32c_advance_zeros(uint32_t crc, size_t count) {
    while (count--) {
        crc = sg_crc32c_table[0][crc & 0xffu] ^ (crc >> 8);
    }
    return crc;
}

/* shift tables: table[k][v] = the register after SG_CRC32C_{LONG,SHORT} zero bytes, starting from v << 8k */
static uint32_t sg_crc32c_shift_long[4][256];
static uint32_t sg_crc32c_shift_short[4][256];

static void sg_crc32c_build_shift(uint32_t table[4][256], size_t length) {
    uint32_t basis[32];
    for (int bit = 0; bit < 32; bit++) {
        basis[bit] = sg_crc32c_advance_zeros(1u << bit, length);
    }
    for (int k = 0; k < 4; k++) {
        for (int v = 0; v < 256; v++) {
            uint32_t acc = 0;
            for (int bit = 0; bit < 8; bit++) {
                if (v & (1 << bit)) {
                    acc ^= basis[8 * k + bit];
                }
            }
            table[k][v] = acc;
        }
    }
}

static inline uint32_t sg_crc32c_shift(const uint32_t table[4][256], uint32_t crc) {
    return table[0][crc & 0xffu] ^ table[1][(crc >> 8) & 0xffu] ^ table[2][(crc >> 16) & 0xffu]
         ^ table[3][crc >> 24];
}

static inline uint64_t sg_load_u64(const unsigned char *p) {
    uint64_t word;
    memcpy(&word, p, sizeof word); /* x86 is little-endian, which is the order crc32q consumes */
    return word;
}

__attribute__((target("sse4.2")))
static uint32_t sg_crc32c_sse42_raw(uint32_t crc, const unsigned char *p, size_t n) {
    uint64_t c0 = crc;
    /* Three streams over blocks of `block` bytes: A from the running state, B and C from zero. */
#define SG_CRC32C_THREE_WAY(block, table)                                                    \
    while (n >= 3 * (block)) {                                                               \
        uint64_t c1 = 0, c2 = 0;                                                             \
        const unsigned char *end = p + (block);                                              \
        do {                                                                                 \
            c0 = _mm_crc32_u64(c0, sg_load_u64(p));                                          \
            c1 = _mm_crc32_u64(c1, sg_load_u64(p + (block)));                                \
            c2 = _mm_crc32_u64(c2, sg_load_u64(p + 2 * (block)));                            \
            p += 8;                                                                          \
        } while (p < end);                                                                   \
        c0 = sg_crc32c_shift((table), (uint32_t)c0) ^ (uint32_t)c1;                          \
        c0 = sg_crc32c_shift((table), (uint32_t)c0) ^ (uint32_t)c2;                          \
        p += 2 * (block);                                                                    \
        n -= 3 * (block);                                                                    \
    }
    SG_CRC32C_THREE_WAY(SG_CRC32C_LONG, (const uint32_t (*)[256])sg_crc32c_shift_long)
    SG_CRC32C_THREE_WAY(SG_CRC32C_SHORT, (const uint32_t (*)[256])sg_crc32c_shift_short)
#undef SG_CRC32C_THREE_WAY
    while (n >= 8) {
        c0 = _mm_crc32_u64(c0, sg_load_u64(p));
        p += 8;
        n -= 8;
    }
    while (n--) {
        c0 = _mm_crc32_u8((uint32_t)c0, *p++);
    }
    return (uint32_t)c0;
}
#endif

static void sg_crc32c_init(void) {
    for (uint32_t v = 0; v < 256; v++) {
        uint32_t crc = v;
        for (int bit = 0; bit < 8; bit++) {
            crc = (crc >> 1) ^ (SG_CRC32C_POLY & (0u - (crc & 1u)));
        }
        sg_crc32c_table[0][v] = crc;
    }
    for (int k = 1; k < 8; k++) {
        for (int v = 0; v < 256; v++) {
            uint32_t prev = sg_crc32c_table[k - 1][v];
            sg_crc32c_table[k][v] = (prev >> 8) ^ sg_crc32c_table[0][prev & 0xffu];
        }
    }
#ifdef SG_CRC32C_HAVE_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("sse4.2")) {
        sg_crc32c_build_shift(sg_crc32c_shift_long, SG_CRC32C_LONG);
        sg_crc32c_build_shift(sg_crc32c_shift_short, SG_CRC32C_SHORT);
        sg_crc32c_hw_available = 1;
    }
#endif
}

/* Kafka's CRC32C: `crc` is a previous result (0 to start), so results chain across calls. */
static uint32_t sg_crc32c(uint32_t crc, const unsigned char *p, size_t n) {
#ifdef SG_CRC32C_HAVE_X86
    if (sg_crc32c_hw_available) {
        return ~sg_crc32c_sse42_raw(~crc, p, n);
    }
#endif
    return ~sg_crc32c_portable_raw(~crc, p, n);
}

static uint32_t sg_crc32c_portable(uint32_t crc, const unsigned char *p, size_t n) {
    return ~sg_crc32c_portable_raw(~crc, p, n);
}

static const char *sg_crc32c_backend(void) {
    return sg_crc32c_hw_available ? "sse4.2" : "slicing-by-8";
}

#endif /* STREAMGATE_CRC32C_H */
