/*
** test_crc.c -- unit tests of CRC-32C (crc32c.c): known values, the
** hardware and table implementations against each other, incremental
** against one-shot.
*/
#include "ls_int.h"
#include "unit.h"

#include <stdlib.h>
#include <string.h>

/* The table implementation, exported by crc32c.c for cross-checking. */
uint32_t ls_crc32c_sw(uint32_t crc, const void *data, size_t len);

/* ------------------------------------------------------------------------
** CRC-32C.
*/

static void t_crc_known(void) {
  CHECK_U64(ls_crc32c(0, "123456789", 9), 0xE3069283u);
  CHECK_U64(ls_crc32c_sw(0, "123456789", 9), 0xE3069283u);
  CHECK_U64(ls_crc32c(0, "", 0), 0);
  CHECK_U64(ls_crc32c(0x12345678u, "x", 0), 0x12345678u);
  CHECK_U64(ls_crc32c_sw(0x12345678u, "x", 0), 0x12345678u);
  CHECK_U64(ls_crc32c(0, "a", 1), 0xC1D04330u);
  /* RFC 3720 (iSCSI) B.4 test vectors. */
  uint8_t b[48];
  memset(b, 0, 32);
  CHECK_U64(ls_crc32c(0, b, 32), 0x8A9136AAu);
  CHECK_U64(ls_crc32c_sw(0, b, 32), 0x8A9136AAu);
  memset(b, 0xFF, 32);
  CHECK_U64(ls_crc32c(0, b, 32), 0x62A8AB43u);
  CHECK_U64(ls_crc32c_sw(0, b, 32), 0x62A8AB43u);
  for (int i = 0; i < 32; i++) b[i] = (uint8_t)i;
  CHECK_U64(ls_crc32c(0, b, 32), 0x46DD794Eu);
  CHECK_U64(ls_crc32c_sw(0, b, 32), 0x46DD794Eu);
  for (int i = 0; i < 32; i++) b[i] = (uint8_t)(31 - i);
  CHECK_U64(ls_crc32c(0, b, 32), 0x113FDB5Cu);
  CHECK_U64(ls_crc32c_sw(0, b, 32), 0x113FDB5Cu);
  static const uint8_t iscsi_read[48] = {
    0x01, 0xC0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18,
    0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
  CHECK_U64(ls_crc32c(0, iscsi_read, 48), 0xD9963A56u);
  CHECK_U64(ls_crc32c_sw(0, iscsi_read, 48), 0xD9963A56u);
}

/* Hardware and table implementations agree on random buffers, lengths and
** alignments (when the CPU has no SSE4.2 both are the table). */
static void t_crc_hw_sw(void) {
  uint64_t rng = unit_seed("crc");
#if defined(__x86_64__)
  __builtin_cpu_init();
  printf("     sse4.2: %s\n", __builtin_cpu_supports("sse4.2") ? "yes (hardware path tested)" : "no");
#endif
  size_t cap = 70000;
  uint8_t *buf = unit_xmalloc(cap);
  unit_fill_bytes(buf, cap, rng);
  int bad = 0;
  /* Every alignment 0..15 with every length 0..300, random start value. */
  for (size_t a = 0; a < 16; a++)
    for (size_t n = 0; n <= 300; n++) {
      uint32_t c = (uint32_t)unit_rand(&rng);
      uint32_t hw = ls_crc32c(c, buf + a, n), sw = ls_crc32c_sw(c, buf + a, n);
      if (hw != sw && bad++ < 5)
        unit_fail(__FILE__, __LINE__, "align %zu len %zu crc 0x%08x: hw 0x%08x sw 0x%08x", a, n, c, hw, sw);
    }
  /* Random buffers of random lengths and alignments. */
  for (int i = 0; i < 3000; i++) {
    size_t a = unit_rand(&rng) % 64;
    size_t n = unit_rand(&rng) % (i < 100 ? cap - 64 : 5000);
    unit_fill_bytes(buf + a, n, unit_rand(&rng));
    uint32_t c = i & 1 ? 0 : (uint32_t)unit_rand(&rng);
    uint32_t hw = ls_crc32c(c, buf + a, n), sw = ls_crc32c_sw(c, buf + a, n);
    if (hw != sw && bad++ < 5)
      unit_fail(__FILE__, __LINE__, "align %zu len %zu crc 0x%08x: hw 0x%08x sw 0x%08x", a, n, c, hw, sw);
  }
  CHECK_INT(bad, 0);
  free(buf);
}

/* Incremental equals one-shot, for both implementations. */
static void t_crc_incremental(void) {
  uint64_t rng = unit_seed("crc incremental");
  size_t cap = 20000;
  uint8_t *buf = unit_xmalloc(cap);
  int bad = 0;
  for (int i = 0; i < 2000; i++) {
    size_t n = unit_rand(&rng) % cap;
    unit_fill_bytes(buf, n, unit_rand(&rng));
    uint32_t one = ls_crc32c(0, buf, n);
    if (one != ls_crc32c_sw(0, buf, n) && bad++ < 5) unit_fail(__FILE__, __LINE__, "one-shot hw/sw differ");
    /* Up to 8 random pieces. */
    int pieces = 1 + (int)(unit_rand(&rng) % 8);
    uint32_t c = 0, csw = 0;
    size_t off = 0;
    for (int k = 0; k < pieces; k++) {
      size_t len = k == pieces - 1 ? n - off : (size_t)(unit_rand(&rng) % (n - off + 1));
      c = ls_crc32c(c, buf + off, len);
      csw = ls_crc32c_sw(csw, buf + off, len);
      off += len;
    }
    if ((c != one || csw != one) && bad++ < 5)
      unit_fail(__FILE__, __LINE__, "len %zu in %d pieces: one-shot 0x%08x, incremental hw 0x%08x sw 0x%08x",
                n, pieces, one, c, csw);
  }
  /* Byte by byte. */
  unit_fill_bytes(buf, 1000, 7);
  uint32_t c = 0;
  for (size_t i = 0; i < 1000; i++) c = ls_crc32c(c, buf + i, 1);
  CHECK_U64(c, ls_crc32c(0, buf, 1000));
  CHECK_INT(bad, 0);
  free(buf);
}

int main(void) {
  RUN(t_crc_known);
  RUN(t_crc_hw_sw);
  RUN(t_crc_incremental);
  return unit_finish();
}
