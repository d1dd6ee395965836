/*
** test_format.c -- unit tests of the on-disk format (format.c); CRC-32C
** is in test_crc.c.
**
** Buffer headers: encode/decode round trips, every rule of FORMAT.md's
** validity list, every single-bit flip.  Records: round trips at every size
** boundary (key and value lengths around the 8-byte padding, 4 KiB and the
** largest value of a segment), exact and one-short `avail`, every single-bit
** flip, another segment's seed, and structural rules checked with a CRC
** recomputed after tampering so that only the structure is wrong.
**
** Records under test are kept in malloc'ed buffers of exactly the size
** given to the decoder, so that ASan reports a decoder reading past avail.
*/
#include "format.h"
#include "ls_int.h"
#include "unit.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------
** Buffer headers.
*/

static void check_bufhdr_equal(const ls_bufhdr *got, const ls_bufhdr *want) {
  CHECK_U64(got->kind, want->kind);
  CHECK_U64(got->flags, want->flags);
  CHECK_U64(got->seg_seq, want->seg_seq);
  CHECK_U64(got->max_seq, want->max_seq);
  CHECK_U64(got->data_size, want->data_size);
  CHECK_U64(got->nrecords, want->nrecords);
  CHECK_U64(got->table, want->table);
  CHECK_U64(got->group, want->group);
}

/* A valid header of the given kind with fields from rng. */
static ls_bufhdr some_bufhdr(uint32_t kind, uint64_t *rng) {
  ls_bufhdr h;
  memset(&h, 0, sizeof h);
  h.kind = kind;
  h.seg_seq = unit_rand(rng) | 1;
  h.max_seq = unit_rand(rng);
  if (kind != LS_KIND_FREE) {
    h.data_size = (uint32_t)unit_rand(rng) & ~7u;
    h.nrecords = (uint32_t)unit_rand(rng);
  }
  if (kind == LS_KIND_GROUP) {
    h.table = (uint32_t)unit_rand(rng);
    h.group = (uint32_t)unit_rand(rng);
  }
  return h;
}

/* Re-encode the CRC of a header whose bytes were edited. */
static void bufhdr_recrc(uint8_t *p) { ls_put32(p + 44, ls_crc32c(0, p, 44)); }

static void t_bufhdr_roundtrip(void) {
  uint64_t rng = unit_seed("bufhdr");
  uint8_t *p = unit_xmalloc(LS_BUF_HDR);
  for (uint32_t kind = LS_KIND_MIXED; kind <= LS_KIND_FREE; kind++) {
    for (int i = 0; i < 200; i++) {
      ls_bufhdr h = some_bufhdr(kind, &rng), d;
      if (i == 0) {                /* extremes */
        h.seg_seq = UINT64_MAX; h.max_seq = UINT64_MAX;
        if (kind != LS_KIND_FREE) { h.data_size = UINT32_MAX & ~7u; h.nrecords = UINT32_MAX; }
        if (kind == LS_KIND_GROUP) { h.table = UINT32_MAX; h.group = UINT32_MAX; }
      } else if (i == 1) {
        h.seg_seq = 1; h.max_seq = 0; h.data_size = 0; h.nrecords = 0; h.table = 0; h.group = 0;
      }
      memset(p, 0xA5, LS_BUF_HDR);
      ls_bufhdr_encode(p, &h);
      /* The bytes FORMAT.md lists. */
      CHECK(p[0] == 'L' && p[1] == 'S' && p[2] == 'B' && p[3] == '1');
      CHECK_U64(ls_get32(p), LS_BUF_MAGIC);
      CHECK_U64(ls_get16(p + 4), LS_FORMAT_VERSION);
      CHECK_U64(p[6], kind);
      CHECK_U64(p[7], 0);
      CHECK_U64(ls_get64(p + 8), h.seg_seq);
      CHECK_U64(ls_get64(p + 16), h.max_seq);
      CHECK_U64(ls_get32(p + 24), h.data_size);
      CHECK_U64(ls_get32(p + 28), h.nrecords);
      CHECK_U64(ls_get32(p + 32), h.table);
      CHECK_U64(ls_get32(p + 36), h.group);
      CHECK_U64(ls_get32(p + 40), 0);
      CHECK_U64(ls_get32(p + 44), ls_crc32c(0, p, 44));
      memset(&d, 0x5A, sizeof d);
      CHECK_INT(ls_bufhdr_decode(p, &d), 1);
      check_bufhdr_equal(&d, &h);
    }
  }
  free(p);
}

/* Each rule of a valid header, broken with a correct CRC. */
static void t_bufhdr_invalid(void) {
  uint64_t rng = 12345;
  uint8_t p[LS_BUF_HDR];
  ls_bufhdr h = some_bufhdr(LS_KIND_MIXED, &rng), d;

  memset(p, 0, sizeof p);
  CHECK_INT(ls_bufhdr_decode(p, &d), 0);           /* zeros */
  memset(p, 0xFF, sizeof p);
  CHECK_INT(ls_bufhdr_decode(p, &d), 0);

  h.seg_seq = 0;                                   /* seg_seq 0 */
  ls_bufhdr_encode(p, &h);
  CHECK_INT(ls_bufhdr_decode(p, &d), 0);
  h.seg_seq = 7;

  for (uint32_t ds = 1; ds < 8; ds++) {            /* data_size not a multiple of 8 */
    h.data_size = 4096 + ds;
    ls_bufhdr_encode(p, &h);
    CHECK_INT(ls_bufhdr_decode(p, &d), 0);
  }
  h.data_size = 4096;
  ls_bufhdr_encode(p, &h);
  CHECK_INT(ls_bufhdr_decode(p, &d), 1);

  uint32_t bad_kinds[] = {0, 4, 5, 0x80, 0xFF};    /* kind */
  for (size_t i = 0; i < sizeof bad_kinds / sizeof bad_kinds[0]; i++) {
    h.kind = bad_kinds[i];
    ls_bufhdr_encode(p, &h);
    CHECK_INT(ls_bufhdr_decode(p, &d), 0);
  }
  h.kind = LS_KIND_MIXED;

  for (uint32_t f = 1; f < 256; f++) {             /* flags: SETTLED and SEALED exist */
    h.flags = f;
    h.seg_end = (f & LS_BF_SEALED) ? 8192 : 0;
    ls_bufhdr_encode(p, &h);
    int ok = ls_bufhdr_decode(p, &d);
    int valid = (f & ~(uint32_t)LS_BF_MASK) == 0;
    if (valid && (!ok || d.flags != f || d.seg_end != h.seg_end))
      unit_fail(__FILE__, __LINE__, "header with flags %u refused", f);
    if (!valid && ok) unit_fail(__FILE__, __LINE__, "header with flags %u accepted", f);
  }
  h.flags = LS_BF_SEALED;                          /* seg_end of a sealed segment */
  uint32_t bad_ends[] = {0, 8, 47, 49, 4097, 4100};
  for (size_t i = 0; i < sizeof bad_ends / sizeof bad_ends[0]; i++) {
    h.seg_end = bad_ends[i];
    ls_bufhdr_encode(p, &h);
    CHECK_INT(ls_bufhdr_decode(p, &d), 0);
  }
  h.seg_end = LS_BUF_HDR;
  ls_bufhdr_encode(p, &h);
  CHECK_INT(ls_bufhdr_decode(p, &d), 1);
  h.flags = 0;
  h.seg_end = 0;

  /* A free marker carries no records. */
  ls_bufhdr fr = some_bufhdr(LS_KIND_FREE, &rng);
  ls_bufhdr_encode(p, &fr);
  CHECK_INT(ls_bufhdr_decode(p, &d), 1);
  fr.data_size = 8;
  ls_bufhdr_encode(p, &fr);
  CHECK_INT(ls_bufhdr_decode(p, &d), 0);
  fr.data_size = 0; fr.nrecords = 1;
  ls_bufhdr_encode(p, &fr);
  CHECK_INT(ls_bufhdr_decode(p, &d), 0);
  fr.nrecords = 0; fr.table = 3;
  ls_bufhdr_encode(p, &fr);
  CHECK_INT(ls_bufhdr_decode(p, &d), 0);
  fr.table = 0; fr.seg_seq = 0;                    /* a formatted segment's marker */
  ls_bufhdr_encode(p, &fr);
  CHECK_INT(ls_bufhdr_decode(p, &d), 1);

  /* Magic, version, reserved: edited bytes with a recomputed CRC. */
  ls_bufhdr_encode(p, &h);
  p[3] = '2'; bufhdr_recrc(p);
  CHECK_INT(ls_bufhdr_decode(p, &d), 0);
  ls_bufhdr_encode(p, &h);
  ls_put32(p, 0); bufhdr_recrc(p);
  CHECK_INT(ls_bufhdr_decode(p, &d), 0);
  uint16_t versions[] = {0, 1, 3, 0x100, 0xFFFF};
  for (size_t i = 0; i < sizeof versions / sizeof versions[0]; i++) {
    ls_bufhdr_encode(p, &h);
    ls_put16(p + 4, versions[i]); bufhdr_recrc(p);
    CHECK_INT(ls_bufhdr_decode(p, &d), 0);
  }
  for (int byte = 40; byte < 44; byte++) {
    ls_bufhdr_encode(p, &h);
    p[byte] = 1; bufhdr_recrc(p);
    CHECK_INT(ls_bufhdr_decode(p, &d), 0);
  }
  /* The CRC itself. */
  ls_bufhdr_encode(p, &h);
  ls_put32(p + 44, ls_get32(p + 44) + 1);
  CHECK_INT(ls_bufhdr_decode(p, &d), 0);
  ls_bufhdr_encode(p, &h);
  ls_put32(p + 44, 0);
  CHECK_INT(ls_bufhdr_decode(p, &d), 0);
}

/* Every single-bit flip of a header is rejected. */
static void t_bufhdr_bitflips(void) {
  uint64_t rng = unit_seed("bufhdr flips");
  uint8_t *p = unit_xmalloc(LS_BUF_HDR);
  int accepted = 0;
  for (uint32_t kind = LS_KIND_MIXED; kind <= LS_KIND_FREE; kind++) {
    for (int rep = 0; rep < 4; rep++) {
      ls_bufhdr h = some_bufhdr(kind, &rng), d;
      ls_bufhdr_encode(p, &h);
      CHECK_INT(ls_bufhdr_decode(p, &d), 1);
      for (unsigned bit = 0; bit < LS_BUF_HDR * 8; bit++) {
        p[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        if (ls_bufhdr_decode(p, &d) != 0) {
          if (accepted++ < 10)
            unit_fail(__FILE__, __LINE__, "kind %u: flip of bit %u accepted", kind, bit);
        }
        p[bit / 8] ^= (uint8_t)(1u << (bit % 8));
      }
      CHECK_INT(ls_bufhdr_decode(p, &d), 1);
    }
  }
  CHECK_INT(accepted, 0);
  free(p);
}

/* ------------------------------------------------------------------------
** Records.
*/

/* An encoded, sealed record in a buffer of exactly its size (or of cap
** bytes if larger).  Key and value bytes come from tag. */
static uint8_t *make_record(uint32_t type, uint32_t table, uint32_t klen, uint32_t vlen,
                            uint64_t seq, uint32_t flags, uint32_t seed, uint64_t tag,
                            size_t cap) {
  uint32_t size = ls_rec_size(klen, vlen);
  uint8_t *kv = unit_xmalloc((size_t)klen + vlen);
  unit_fill_bytes(kv, (size_t)klen + vlen, tag);
  uint8_t *p = unit_xmalloc(cap > size ? cap : size);
  memset(p, 0xEE, cap > size ? cap : size);        /* poison: padding must be written */
  ls_rec_encode(p, type, table, kv, klen, kv + klen, vlen);
  ls_rec_seal(p, seq, flags, seed);
  free(kv);
  return p;
}

/* Recompute the CRC of a record whose header was edited; the CRC covers
** the lengths the header now claims (the buffer must hold them). */
static void rec_recrc(uint8_t *p, uint32_t seed) {
  uint32_t klen = ls_get16(p + 6), vlen = ls_get32(p + 8);
  ls_put32(p, ls_crc32c(seed, p + 4, 20 + (size_t)klen + vlen));
}

/* Decode a copy of the first avail bytes of p in a buffer of exactly
** avail bytes.  Returns ls_rec_decode's result. */
static int decode_copy(const uint8_t *p, size_t avail, uint32_t seed) {
  uint8_t *c = unit_xmalloc(avail);
  memcpy(c, p, avail);
  ls_rec r;
  int ok = ls_rec_decode(c, avail, seed, &r);
  free(c);
  return ok;
}

/* Encode, seal and decode one record and check every byte and field. */
static void roundtrip_one(uint32_t type, uint32_t table, uint32_t klen, uint32_t vlen,
                          uint64_t seq, uint32_t flags, uint64_t seg_seq) {
  uint32_t seed = ls_rec_seed(seg_seq);
  uint64_t tag = ((uint64_t)klen << 32) ^ vlen ^ seq;
  uint32_t size = ls_rec_size(klen, vlen);
  uint32_t used = LS_REC_HDR + klen + vlen;
  int bad = unit_failed_checks;

  CHECK_U64(size % LS_REC_ALIGN, 0);
  CHECK(size >= used && size - used < LS_REC_ALIGN);

  uint8_t *kv = unit_xmalloc((size_t)klen + vlen);
  unit_fill_bytes(kv, (size_t)klen + vlen, tag);
  uint8_t *p = unit_xmalloc(size);
  memset(p, 0xEE, size);
  ls_rec_encode(p, type, table, kv, klen, kv + klen, vlen);
  /* Before sealing: CRC, flags and seq are zero. */
  CHECK_U64(ls_get32(p), 0);
  CHECK_U64(p[5], 0);
  CHECK_U64(ls_get64(p + 16), 0);
  CHECK_U64(ls_rec_peek_size(p), size);
  ls_rec_seal(p, seq, flags, seed);

  CHECK_U64(p[4], type);
  CHECK_U64(p[5], flags);
  CHECK_U64(ls_get16(p + 6), klen);
  CHECK_U64(ls_get32(p + 8), vlen);
  CHECK_U64(ls_get32(p + 12), table);
  CHECK_U64(ls_get64(p + 16), seq);
  CHECK_U64(ls_get32(p), ls_crc32c(seed, p + 4, 20 + (size_t)klen + vlen));
  CHECK_U64(ls_rec_peek_size(p), size);
  CHECK_MEM(p + LS_REC_HDR, kv, (size_t)klen + vlen);
  for (uint32_t i = used; i < size; i++)
    if (p[i] != 0) unit_fail(__FILE__, __LINE__, "padding byte %u of %u is 0x%02x", i, size, p[i]);

  ls_rec r;
  memset(&r, 0x5A, sizeof r);
  CHECK_INT(ls_rec_decode(p, size, seed, &r), 1);
  CHECK_U64(r.type, type);
  CHECK_U64(r.flags, flags);
  CHECK_U64(r.table, table);
  CHECK_U64(r.key_len, klen);
  CHECK_U64(r.val_len, vlen);
  CHECK_U64(r.seq, seq);
  CHECK_U64(r.size, size);
  CHECK(r.key == p + LS_REC_HDR);
  CHECK(r.val == p + LS_REC_HDR + klen);
  /* One byte short: fails (padding included in the size). */
  CHECK_INT(ls_rec_decode(p, size - 1, seed, &r), 0);
  /* Another incarnation's seed: fails. */
  CHECK_INT(ls_rec_decode(p, size, ls_rec_seed(seg_seq + 1), &r), 0);
  CHECK_INT(ls_rec_decode(p, size, ls_rec_seed(seg_seq ^ (1ull << 63)), &r), 0);
  if (unit_failed_checks != bad)
    printf("     (record type %u klen %u vlen %u seq %" PRIu64 " flags %u)\n", type, klen, vlen, seq, flags);
  free(p);
  free(kv);
}

/* Round trips at every size boundary. */
static void t_rec_roundtrip_sizes(void) {
  static const uint32_t klens[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 16, 17, 23, 24, 25,
                                   31, 32, 33, 255, 256, 4095, 4096, 4097, 65527, 65534, 65535};
  uint32_t vlens[64];
  int nv = 0;
  for (uint32_t v = 0; v <= 17; v++) vlens[nv++] = v;
  for (uint32_t v = 4096 - 9; v <= 4096 + 9; v++) vlens[nv++] = v;
  vlens[nv++] = 65536;
  uint64_t seq = 1, rng = 99;
  for (size_t k = 0; k < sizeof klens / sizeof klens[0]; k++) {
    for (int v = 0; v < nv; v++) {
      uint32_t flags = (uint32_t)(seq & 3);
      uint64_t s = (seq % 5 == 0) ? UINT64_MAX - seq : seq;
      roundtrip_one(LS_REC_PUT, 1 + (uint32_t)(unit_rand(&rng) % UINT32_MAX), klens[k], vlens[v],
                    s, flags, unit_rand(&rng) | 1);
      seq++;
    }
    roundtrip_one(LS_REC_DELETE, 7, klens[k], 0, seq++, LS_RF_END, 1);
    roundtrip_one(LS_REC_DELETE, UINT32_MAX, klens[k], 0, seq++, LS_RF_CONT, UINT64_MAX);
  }
  roundtrip_one(LS_REC_COMMIT, 0, 0, 8, 12345, LS_RF_END, 42);
  roundtrip_one(LS_REC_COMMIT, 0, 0, 8, UINT64_MAX, LS_RF_END | LS_RF_CONT, 42);
  /* ls_rec_size itself. */
  CHECK_U64(ls_rec_size(0, 0), 24);
  CHECK_U64(ls_rec_size(1, 0), 32);
  CHECK_U64(ls_rec_size(0, 8), 32);
  CHECK_U64(ls_rec_size(8, 0), 32);
  CHECK_U64(ls_rec_size(9, 0), 40);
  CHECK_U64(ls_rec_size(65535, 0), 65560);
}

/* The largest value that fits a segment, for each segment size. */
static void t_rec_max_value(void) {
  static const uint32_t segs[] = {8u << 10, 128u << 10, 1u << 20};
  static const uint32_t klens[] = {0, 1, 7, 8, 9, 100, 4096, 8000, 65535};
  uint64_t seg_seq = 1000;
  for (size_t s = 0; s < 3; s++) {
    uint32_t seg = segs[s], max = ls_max_record(seg);
    CHECK_U64(max, seg - LS_BUF_HDR);
    CHECK_U64(max % LS_REC_ALIGN, 0);
    for (size_t k = 0; k < sizeof klens / sizeof klens[0]; k++) {
      uint32_t klen = klens[k];
      if ((uint64_t)LS_REC_HDR + klen > max) continue;
      uint32_t vlen = max - LS_REC_HDR - klen;     /* FORMAT.md's largest value */
      CHECK_U64(ls_rec_size(klen, vlen), max);
      CHECK(ls_rec_size(klen, vlen + 1) > max);
      CHECK_U64(LS_BUF_HDR + ls_rec_size(klen, vlen), seg);
      roundtrip_one(LS_REC_PUT, 3, klen, vlen, seg_seq, LS_RF_END, seg_seq);
      /* Placed right after a buffer header in a segment-sized buffer. */
      uint32_t seed = ls_rec_seed(seg_seq);
      uint8_t *rec = make_record(LS_REC_PUT, 3, klen, vlen, seg_seq, LS_RF_END, seed, klen, 0);
      uint8_t *segbuf = unit_xmalloc(seg);
      ls_bufhdr h = {LS_KIND_MIXED, 0, seg_seq, seg_seq, max, 1, 0, 0, 0}, d;
      ls_bufhdr_encode(segbuf, &h);
      memcpy(segbuf + LS_BUF_HDR, rec, max);
      CHECK_INT(ls_bufhdr_decode(segbuf, &d), 1);
      ls_rec r;
      CHECK_INT(ls_rec_decode(segbuf + LS_BUF_HDR, seg - LS_BUF_HDR, seed, &r), 1);
      CHECK_U64(r.size, max);
      CHECK_U64(r.val_len, vlen);
      CHECK_INT(ls_rec_decode(segbuf + LS_BUF_HDR, seg - LS_BUF_HDR - 1, seed, &r), 0);
      free(segbuf);
      free(rec);
      seg_seq++;
    }
  }
}

/* Every single-bit flip in header, key and value makes decode fail. */
static void t_rec_bitflips(void) {
  struct { uint32_t type, table, klen, vlen, flags; } recs[] = {
    {LS_REC_DELETE, 1, 1, 0, LS_RF_END},
    {LS_REC_DELETE, 9, 0, 0, LS_RF_CONT},
    {LS_REC_PUT, 2, 5, 3, LS_RF_END},
    {LS_REC_PUT, 77, 16, 100, 0},
    {LS_REC_PUT, 3, 33, 4096, LS_RF_CONT},
    {LS_REC_PUT, 0xFFFFFFFFu, 300, 1, LS_RF_END},
    {LS_REC_COMMIT, 0, 0, 8, LS_RF_END},
  };
  uint64_t seg_seq = unit_seed("record flips");
  int accepted = 0;
  for (size_t n = 0; n < sizeof recs / sizeof recs[0]; n++) {
    uint32_t seed = ls_rec_seed(seg_seq + n);
    uint32_t size = ls_rec_size(recs[n].klen, recs[n].vlen);
    uint32_t covered = LS_REC_HDR + recs[n].klen + recs[n].vlen;
    uint64_t seq = 1000 + n;
    uint8_t *p = make_record(recs[n].type, recs[n].table, recs[n].klen, recs[n].vlen, seq,
                             recs[n].flags, seed, n, 0);
    ls_rec r;
    CHECK_INT(ls_rec_decode(p, size, seed, &r), 1);
    for (uint32_t bit = 0; bit < covered * 8; bit++) {
      p[bit / 8] ^= (uint8_t)(1u << (bit % 8));
      if (ls_rec_decode(p, size, seed, &r) != 0 && accepted++ < 10)
        unit_fail(__FILE__, __LINE__, "record %zu (klen %u vlen %u): flip of bit %u accepted",
                  n, recs[n].klen, recs[n].vlen, bit);
      p[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    CHECK_INT(ls_rec_decode(p, size, seed, &r), 1);
    /* Seeds of other incarnations, near and far. */
    for (uint64_t other = 1; other < 200; other++) {
      if (ls_rec_decode(p, size, ls_rec_seed(seg_seq + n + other), &r) != 0 && accepted++ < 10)
        unit_fail(__FILE__, __LINE__, "record %zu accepted with the seed of seg_seq+%" PRIu64, n, other);
    }
    CHECK_INT(ls_rec_decode(p, size, 0, &r), 0);
    free(p);
  }
  CHECK_INT(accepted, 0);
}

/* Structural rules, each broken with a CRC that matches the edited bytes. */
static void t_rec_structure(void) {
  uint32_t seed = ls_rec_seed(5);
  ls_rec r;
  uint8_t *p;

  /* Types. */
  static const uint8_t bad_types[] = {0, 4, 5, 7, 0x80, 0xFF};
  for (size_t i = 0; i < sizeof bad_types; i++) {
    p = make_record(LS_REC_PUT, 1, 4, 4, 10, 0, seed, 1, 0);
    p[4] = bad_types[i];
    rec_recrc(p, seed);
    if (ls_rec_decode(p, 32, seed, &r) != 0)
      unit_fail(__FILE__, __LINE__, "record type %u accepted", bad_types[i]);
    free(p);
  }
  /* Flags: only END and CONT. */
  for (unsigned f = 0; f < 256; f++) {
    p = make_record(LS_REC_PUT, 1, 4, 4, 10, f, seed, 1, 0);
    int want = (f & ~LS_RF_MASK) == 0;
    if (ls_rec_decode(p, 32, seed, &r) != want)
      unit_fail(__FILE__, __LINE__, "record flags 0x%02x: expected %d, got %d", f, want, !want);
    free(p);
  }
  /* seq 0. */
  p = make_record(LS_REC_PUT, 1, 4, 4, 0, 0, seed, 1, 0);
  CHECK_U64(ls_get32(p), ls_crc32c(seed, p + 4, 28));
  CHECK_INT(ls_rec_decode(p, 32, seed, &r), 0);
  free(p);
  /* DELETE with a value. */
  for (uint32_t v = 1; v <= 9; v++) {
    p = make_record(LS_REC_DELETE, 1, 4, v, 10, 0, seed, 1, 0);
    CHECK_INT(ls_rec_decode(p, ls_rec_size(4, v), seed, &r), 0);
    free(p);
  }
  p = make_record(LS_REC_DELETE, 1, 4, 0, 10, 0, seed, 1, 0);
  CHECK_INT(ls_rec_decode(p, ls_rec_size(4, 0), seed, &r), 1);
  free(p);
  /* COMMIT: key_len 0, val_len 8, table 0. */
  p = make_record(LS_REC_COMMIT, 0, 0, 8, 10, LS_RF_END, seed, 1, 0);
  CHECK_INT(ls_rec_decode(p, 32, seed, &r), 1);
  free(p);
  p = make_record(LS_REC_COMMIT, 0, 1, 8, 10, LS_RF_END, seed, 1, 0);
  CHECK_INT(ls_rec_decode(p, ls_rec_size(1, 8), seed, &r), 0);
  free(p);
  p = make_record(LS_REC_COMMIT, 1, 0, 8, 10, LS_RF_END, seed, 1, 0);
  CHECK_INT(ls_rec_decode(p, 32, seed, &r), 0);
  free(p);
  static const uint32_t bad_commit_vlen[] = {0, 1, 7, 9, 15, 17, 24, 100};
  for (size_t i = 0; i < sizeof bad_commit_vlen / sizeof bad_commit_vlen[0]; i++) {
    uint32_t v = bad_commit_vlen[i];
    p = make_record(LS_REC_COMMIT, 0, 0, v, 10, LS_RF_END, seed, 1, 0);
    if (ls_rec_decode(p, ls_rec_size(0, v), seed, &r) != 0)
      unit_fail(__FILE__, __LINE__, "commit record with val_len %u accepted", v);
    free(p);
  }
  /* COMMIT naming its range (16 bytes); PREPARE: 16 bytes, no key, no table. */
  p = make_record(LS_REC_COMMIT, 0, 0, 16, 10, LS_RF_END, seed, 1, 0);
  CHECK_INT(ls_rec_decode(p, ls_rec_size(0, 16), seed, &r), 1);
  free(p);
  p = make_record(LS_REC_PREPARE, 0, 0, 16, 10, LS_RF_END, seed, 1, 0);
  CHECK_INT(ls_rec_decode(p, ls_rec_size(0, 16), seed, &r), 1);
  free(p);
  p = make_record(LS_REC_PREPARE, 0, 0, 8, 10, LS_RF_END, seed, 1, 0);
  CHECK_INT(ls_rec_decode(p, ls_rec_size(0, 8), seed, &r), 0);
  free(p);
  p = make_record(LS_REC_PREPARE, 2, 0, 16, 10, LS_RF_END, seed, 1, 0);
  CHECK_INT(ls_rec_decode(p, ls_rec_size(0, 16), seed, &r), 0);
  free(p);
  p = make_record(LS_REC_PREPARE + 1, 1, 4, 4, 10, 0, seed, 1, 0);
  CHECK_INT(ls_rec_decode(p, 32, seed, &r), 0);
  free(p);
  /* PUT and DELETE with table 0. */
  p = make_record(LS_REC_PUT, 0, 4, 4, 10, 0, seed, 1, 0);
  CHECK_INT(ls_rec_decode(p, 32, seed, &r), 0);
  free(p);
  p = make_record(LS_REC_DELETE, 0, 4, 0, 10, 0, seed, 1, 0);
  CHECK_INT(ls_rec_decode(p, 32, seed, &r), 0);
  free(p);

  /* Lengths past avail: the header claims more bytes than avail holds; the
  ** CRC is right for the claimed bytes (the buffer has them), so with a
  ** larger avail the same record decodes. */
  p = make_record(LS_REC_PUT, 1, 4, 4, 10, 0, seed, 1, 256);
  ls_put32(p + 8, 5);                              /* val_len 4 -> 5: size 40 */
  rec_recrc(p, seed);
  CHECK_INT(decode_copy(p, 32, seed), 0);
  CHECK_INT(decode_copy(p, 39, seed), 0);
  CHECK_INT(decode_copy(p, 40, seed), 1);
  ls_put32(p + 8, 4);
  ls_put16(p + 6, 13);                             /* key_len 4 -> 13: size 48 */
  rec_recrc(p, seed);
  CHECK_INT(decode_copy(p, 32, seed), 0);
  CHECK_INT(decode_copy(p, 47, seed), 0);
  CHECK_INT(decode_copy(p, 48, seed), 1);
  free(p);

  /* Huge lengths whose sums overflow 32 bits.  The CRC can only be
  ** computed over the bytes present; structure must reject them first. */
  static const uint32_t huge_v[] = {0xFFFFFFFFu, 0xFFFFFFF8u, 0xFFFFFFE8u, 0xFFFFFFE0u,
                                    0xFFFF0000u, 0x80000000u, 0x7FFFFFFFu, 4097, 4096 - 24 + 1};
  for (size_t i = 0; i < sizeof huge_v / sizeof huge_v[0]; i++) {
    for (uint32_t klen = 0; klen <= 65535; klen = klen ? klen * 2 + 1 : 1) {
      p = make_record(LS_REC_PUT, 1, 0, 0, 10, 0, seed, 1, 4096);
      ls_put16(p + 6, (uint16_t)klen);
      ls_put32(p + 8, huge_v[i]);
      ls_put32(p, ls_crc32c(seed, p + 4, 4096 - 4));
      if (ls_rec_decode(p, 4096, seed, &r) != 0)
        unit_fail(__FILE__, __LINE__, "key_len %u val_len 0x%08x accepted with avail 4096", klen, huge_v[i]);
      free(p);
    }
  }
  /* key_len alone past avail. */
  p = make_record(LS_REC_PUT, 1, 0, 0, 10, 0, seed, 1, 4096);
  ls_put16(p + 6, 65535);
  ls_put32(p, ls_crc32c(seed, p + 4, 4096 - 4));
  CHECK_INT(ls_rec_decode(p, 4096, seed, &r), 0);
  free(p);

  /* Fewer bytes than a record header. */
  p = make_record(LS_REC_DELETE, 1, 0, 0, 10, 0, seed, 1, 0);
  CHECK_INT(decode_copy(p, 24, seed), 1);
  for (size_t avail = 0; avail < LS_REC_HDR; avail++)
    if (decode_copy(p, avail, seed) != 0) unit_fail(__FILE__, __LINE__, "decode with avail %zu accepted", avail);
  free(p);
  /* A zeroed region (the tail of a buffer) is not a record. */
  uint8_t zero[64] = {0};
  CHECK_INT(ls_rec_decode(zero, sizeof zero, seed, &r), 0);
  CHECK_INT(ls_rec_decode(zero, sizeof zero, 0, &r), 0);
}

static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

/* The segment seed is the CRC of seg_seq's 8 little-endian bytes, and
** distinct for nearby sequences. */
static void t_rec_seed(void) {
  uint64_t seqs[] = {1, 2, 255, 256, 0x0102030405060708ull, UINT64_MAX};
  for (size_t i = 0; i < sizeof seqs / sizeof seqs[0]; i++) {
    uint8_t b[8];
    ls_put64(b, seqs[i]);
    CHECK_U64(ls_rec_seed(seqs[i]), ls_crc32c(0, b, 8));
  }
  uint8_t one[8] = {1, 0, 0, 0, 0, 0, 0, 0};
  CHECK_U64(ls_rec_seed(1), ls_crc32c(0, one, 8));
  /* Sequences that differ only in their low 32 bits have distinct CRCs
  ** (CRC-32 detects every error burst of up to 32 bits). */
  uint32_t n = 100000;
  uint32_t *seen = unit_xmalloc(n * sizeof *seen);
  for (uint32_t i = 0; i < n; i++) seen[i] = ls_rec_seed(1 + (uint64_t)i);
  qsort(seen, n, sizeof *seen, cmp_u32);
  int dup = 0;
  for (uint32_t i = 1; i < n; i++) dup += seen[i] == seen[i - 1];
  CHECK_INT(dup, 0);
  free(seen);
}

/* ------------------------------------------------------------------------
** The segment walker (format.h): one walker for recovery, the cleaner and
** the scrub; gaps reported, the walk resumed on the next header of the
** incarnation.
*/

#define WSEG 32768u

/* A buffer of n put records (keys "k<tag+i>") of incarnation seq at off of
** img; returns its aligned length. */
static uint32_t walk_buf(uint8_t *img, uint32_t off, uint64_t seq, uint32_t kind, int n, uint64_t tag) {
  uint32_t seed = ls_rec_seed(seq), pos = off + LS_BUF_HDR;
  for (int i = 0; i < n; i++) {
    char key[16];
    int kl = snprintf(key, sizeof key, "k%llu", (unsigned long long)(tag + (uint64_t)i));
    ls_rec_encode(img + pos, LS_REC_PUT, 1, key, (uint32_t)kl, "value", 5);
    ls_rec_seal(img + pos, tag + (uint64_t)i + 1, i == n - 1 ? LS_RF_END : 0, seed);
    pos += ls_rec_size((uint32_t)kl, 5);
  }
  ls_bufhdr h = { .kind = kind, .seg_seq = seq, .max_seq = tag + (uint64_t)n, .data_size = pos - off - LS_BUF_HDR,
                  .nrecords = (uint32_t)n, .table = kind == LS_KIND_GROUP ? 1 : 0 };
  ls_bufhdr_encode(img + off, &h);
  return (uint32_t)ls_align_up(pos - off, LS_BLOCK);
}

/* Walk img and describe what was found: "B<off>" per buffer, "R" per record,
** "G<start>-<end>[t]" per gap (t: tail). */
static int walk_durable;                          /* ls_walk.durable of walk_describe */

static void walk_describe(const uint8_t *img, uint32_t limit, uint64_t seq, uint32_t kind, char *out, size_t cap) {
  ls_walk w;
  ls_walk_init(&w, img, WSEG, limit, seq, kind);
  w.durable = walk_durable;
  ls_rec r;
  uint32_t off;
  int k;
  size_t n = 0;
  out[0] = 0;
  int steps = 0;
  while ((k = ls_walk_next(&w, &r, &off)) != LS_WALK_END && ++steps < 10000) {
    if (k == LS_WALK_BUFFER) n += (size_t)snprintf(out + n, cap - n, "B%u ", w.buf_off);
    else if (k == LS_WALK_RECORD) n += (size_t)snprintf(out + n, cap - n, "R");
    else n += (size_t)snprintf(out + n, cap - n, " G%u-%u%s ", w.gap_start, w.gap_end, w.gap_tail ? "t" : "");
    if (n >= cap) break;
  }
  CHECK(steps < 10000);
}

#define CHECK_WALK(img, limit, seq, kind, want) do { char got_[512]; \
  walk_describe((img), (limit), (seq), (kind), got_, sizeof got_); \
  if (strcmp(got_, (want))) unit_fail(__FILE__, __LINE__, "walk: expected \"%s\", got \"%s\"", (want), got_); \
  } while (0)

static void t_walk_gaps(void) {
  uint8_t *img = unit_xmalloc(WSEG);
  memset(img, 0, WSEG);
  uint32_t a = walk_buf(img, 0, 9, LS_KIND_MIXED, 3, 0);
  uint32_t b = walk_buf(img, a, 9, LS_KIND_MIXED, 2, 10);
  walk_buf(img, a + b, 9, LS_KIND_MIXED, 1, 20);
  uint32_t end = a + b + LS_BLOCK;
  char want[256];
  /* Intact: the unwritten rest is a tail gap (zeros). */
  snprintf(want, sizeof want, "B0 RRRB%u RRB%u R G%u-%ut ", a, a + b, end, WSEG);
  CHECK_WALK(img, WSEG, 9, LS_KIND_MIXED, want);
  /* Limited at the data's end (a sealed segment): nothing after. */
  snprintf(want, sizeof want, "B0 RRRB%u RRB%u R", a, a + b);
  CHECK_WALK(img, end, 9, LS_KIND_MIXED, want);
  /* Another incarnation or kind reads nothing but a gap. */
  snprintf(want, sizeof want, " G0-%ut ", WSEG);
  CHECK_WALK(img, WSEG, 8, LS_KIND_MIXED, want);
  CHECK_WALK(img, WSEG, 9, LS_KIND_GROUP, want);
  /* A damaged middle buffer header: resynchronised on the third buffer. */
  img[a + 10] ^= 0x40;
  snprintf(want, sizeof want, "B0 RRR G%u-%u B%u R G%u-%ut ", a, a + b, a + b, end, WSEG);
  CHECK_WALK(img, WSEG, 9, LS_KIND_MIXED, want);
  img[a + 10] ^= 0x40;
  /* A damaged record of a buffer another follows (so it was durable): the
  ** walk goes on at the buffer's next record. */
  img[a + LS_BUF_HDR + 30] ^= 1;
  uint32_t r1 = ls_rec_size(3, 5);                 /* "k10": the first record's size */
  snprintf(want, sizeof want, "B0 RRRB%u  G%u-%u RB%u R G%u-%ut ", a, a + LS_BUF_HDR, a + LS_BUF_HDR + r1,
           a + b, end, WSEG);
  CHECK_WALK(img, WSEG, 9, LS_KIND_MIXED, want);
  img[a + LS_BUF_HDR + 30] ^= 1;
  /* The first header gone: the walk still reads the later buffers. */
  memset(img, 0, LS_BLOCK);
  snprintf(want, sizeof want, " G0-%u B%u RRB%u R G%u-%ut ", a, a, a + b, end, WSEG);
  CHECK_WALK(img, WSEG, 9, LS_KIND_MIXED, want);
  ls_seghead hd;
  ls_seg_head(img, WSEG, &hd);
  CHECK_INT(hd.state, LS_HEAD_DAMAGED);
  CHECK_U64(hd.seg_seq, 9);
  free(img);
}

static void t_walk_cut_and_count(void) {
  uint8_t *img = unit_xmalloc(WSEG);
  memset(img, 0, WSEG);
  walk_buf(img, 0, 5, LS_KIND_GROUP, 4, 0);
  /* A limit inside the buffer (a torn tail cut by recovery): the records
  ** before it, no count check. */
  ls_rec r;
  uint32_t off, first2 = 0;
  ls_walk w;
  ls_walk_init(&w, img, WSEG, WSEG, 5, LS_KIND_GROUP);
  int n = 0, k;
  while ((k = ls_walk_next(&w, &r, &off)) != LS_WALK_END)
    if (k == LS_WALK_RECORD && ++n == 3) first2 = off;      /* end of the second record */
  CHECK(first2 > LS_BUF_HDR);
  CHECK_WALK(img, first2, 5, LS_KIND_GROUP, "B0 RR");
  /* A limit inside a record: that record is a gap. */
  char want[128];
  snprintf(want, sizeof want, "B0 RR G%u-%ut ", first2, first2 + 16);
  CHECK_WALK(img, first2 + 16, 5, LS_KIND_GROUP, want);
  /* A header whose count disagrees with its records: a certain gap. */
  ls_bufhdr h;
  CHECK(ls_bufhdr_decode(img, &h));
  h.nrecords = 5;
  ls_bufhdr_encode(img, &h);
  ls_walk_init(&w, img, WSEG, WSEG, 5, LS_KIND_GROUP);
  int certain = 0;
  while ((k = ls_walk_next(&w, &r, &off)) != LS_WALK_END)
    if (k == LS_WALK_GAP && w.gap_certain) certain++;
  CHECK_INT(certain, 1);
  free(img);
}

/* In durable data a bad record is passed over: the walk goes on at the
** next record of its buffer; in data that may be a torn tail it stops. */
static void t_walk_record_resync(void) {
  uint8_t *img = unit_xmalloc(WSEG);
  memset(img, 0, WSEG);
  uint32_t a = walk_buf(img, 0, 9, LS_KIND_GROUP, 4, 0);
  ls_walk w;
  ls_rec r;
  uint32_t off, offs[4], n = 0;
  ls_walk_init(&w, img, WSEG, WSEG, 9, LS_KIND_GROUP);
  int k;
  while ((k = ls_walk_next(&w, &r, &off)) != LS_WALK_END)
    if (k == LS_WALK_RECORD) offs[n++] = off;
  CHECK_INT(n, 4);
  img[offs[1] + LS_REC_HDR] ^= 0x20;             /* record 2's key */
  char want[128];
  walk_durable = 0;                                /* the last buffer: may be torn */
  snprintf(want, sizeof want, "B0 R G%u-%ut ", offs[1], WSEG);
  CHECK_WALK(img, WSEG, 9, LS_KIND_GROUP, want);
  walk_durable = 1;                                /* sealed: damage, passed over */
  snprintf(want, sizeof want, "B0 R G%u-%u RR", offs[1], offs[2]);
  CHECK_WALK(img, a, 9, LS_KIND_GROUP, want);
  ls_put16(img + offs[1] + 6, 60000);              /* its length too: found by scanning */
  CHECK_WALK(img, a, 9, LS_KIND_GROUP, want);
  img[offs[3] + 2] ^= 1;                           /* the last record too: to the end */
  snprintf(want, sizeof want, "B0 R G%u-%u R G%u-%ut ", offs[1], offs[2], offs[3], a);
  CHECK_WALK(img, a, 9, LS_KIND_GROUP, want);
  walk_durable = 0;
  free(img);
}

static void t_seg_head(void) {
  uint8_t *img = unit_xmalloc(WSEG);
  memset(img, 0, WSEG);
  ls_seghead hd;
  ls_seg_head(img, WSEG, &hd);                     /* zeros: damage, nothing readable */
  CHECK_INT(hd.state, LS_HEAD_DAMAGED);
  CHECK_U64(hd.seg_seq, 0);
  ls_free_marker(img, 0, 0);                       /* formatted */
  ls_seg_head(img, WSEG, &hd);
  CHECK_INT(hd.state, LS_HEAD_FREE);
  uint32_t a = walk_buf(img, 0, 7, LS_KIND_MIXED, 2, 0);
  ls_seg_head(img, WSEG, &hd);
  CHECK_INT(hd.state, LS_HEAD_DATA);
  CHECK_INT(hd.sealed, 0);
  CHECK_U64(hd.limit, WSEG);
  ls_bufhdr h;
  CHECK(ls_bufhdr_decode(img, &h));
  h.flags |= LS_BF_SEALED;
  h.seg_end = a;
  ls_bufhdr_encode(img, &h);
  ls_seg_head(img, WSEG, &hd);
  CHECK_INT(hd.sealed, 1);
  CHECK_U64(hd.limit, a);
  /* Older incarnations further on: the youngest is taken when offset 0
  ** is gone. */
  walk_buf(img, 2 * LS_BLOCK, 3, LS_KIND_MIXED, 1, 0);
  walk_buf(img, 4 * LS_BLOCK, 6, LS_KIND_GROUP, 1, 0);
  img[5] ^= 0xFF;
  ls_seg_head(img, WSEG, &hd);
  CHECK_INT(hd.state, LS_HEAD_DAMAGED);
  CHECK_U64(hd.seg_seq, 6);
  CHECK_INT(hd.kind, LS_KIND_GROUP);
  free(img);
}

int main(void) {
  RUN(t_bufhdr_roundtrip);
  RUN(t_bufhdr_invalid);
  RUN(t_bufhdr_bitflips);
  RUN(t_rec_seed);
  RUN(t_rec_roundtrip_sizes);
  RUN(t_rec_max_value);
  RUN(t_rec_bitflips);
  RUN(t_rec_structure);
  RUN(t_walk_gaps);
  RUN(t_walk_cut_and_count);
  RUN(t_walk_record_resync);
  RUN(t_seg_head);
  return unit_finish();
}
