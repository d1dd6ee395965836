/*
** crc32c.c -- CRC-32C (Castagnoli polynomial, reflected 0x82F63B78).
**
** The SSE4.2 crc32 instruction is used when the CPU has it (checked once at
** run time); otherwise a slice-by-8 table.  Both give identical results:
** ls_crc32c(0, "123456789", 9) == 0xE3069283.
**
** The crc argument is the running value returned by a previous call (0 to
** start), so ls_crc32c(ls_crc32c(0, a, n), b, m) == crc of a||b.
*/
#include "ls_int.h"

#include <pthread.h>

#define POLY 0x82F63B78u

static uint32_t table[8][256];
static int have_sse42;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void init(void) {
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ POLY : c >> 1;
    table[0][i] = c;
  }
  for (uint32_t i = 0; i < 256; i++)
    for (int s = 1; s < 8; s++)
      table[s][i] = (table[s - 1][i] >> 8) ^ table[0][table[s - 1][i] & 0xff];
#if defined(__x86_64__)
  __builtin_cpu_init();
  have_sse42 = __builtin_cpu_supports("sse4.2");
#endif
}

static uint32_t crc_sw(uint32_t c, const uint8_t *p, size_t n) {
  while (n && ((uintptr_t)p & 7)) { c = table[0][(c ^ *p++) & 0xff] ^ (c >> 8); n--; }
  while (n >= 8) {
    uint64_t w;
    memcpy(&w, p, 8);
    w ^= c;
    c = table[7][w & 0xff] ^ table[6][(w >> 8) & 0xff] ^ table[5][(w >> 16) & 0xff] ^
        table[4][(w >> 24) & 0xff] ^ table[3][(w >> 32) & 0xff] ^ table[2][(w >> 40) & 0xff] ^
        table[1][(w >> 48) & 0xff] ^ table[0][w >> 56];
    p += 8; n -= 8;
  }
  while (n--) c = table[0][(c ^ *p++) & 0xff] ^ (c >> 8);
  return c;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2")))
static uint32_t crc_hw(uint32_t c, const uint8_t *p, size_t n) {
  uint64_t c64 = c;
  while (n && ((uintptr_t)p & 7)) { c64 = __builtin_ia32_crc32qi((uint32_t)c64, *p++); n--; }
  while (n >= 8) {
    uint64_t w;
    memcpy(&w, p, 8);
    c64 = __builtin_ia32_crc32di(c64, w);
    p += 8; n -= 8;
  }
  uint32_t c32 = (uint32_t)c64;
  while (n--) c32 = __builtin_ia32_crc32qi(c32, *p++);
  return c32;
}
#endif

uint32_t ls_crc32c(uint32_t crc, const void *data, size_t len) {
  pthread_once(&once, init);
  uint32_t c = ~crc;
#if defined(__x86_64__)
  if (have_sse42) return ~crc_hw(c, data, len);
#endif
  return ~crc_sw(c, data, len);
}

/* Test hook: force the table implementation (for cross-checking). */
uint32_t ls_crc32c_sw(uint32_t crc, const void *data, size_t len);
uint32_t ls_crc32c_sw(uint32_t crc, const void *data, size_t len) {
  pthread_once(&once, init);
  return ~crc_sw(~crc, data, len);
}
