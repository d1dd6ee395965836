/*
** test_recovery_damage.c -- recovery (recovery.c) of reused segments and
** damage on data directories built by hand (hazards H1, H2): an old
** incarnation's records after the tail, corrupt and malformed buffers and
** records, lengths past the end, problems of the data files themselves,
** garbage segments and records.
**
** Every test writes a MANIFEST and zero-filled data files of exactly
** file_size bytes, then places buffer images at chosen offsets of chosen
** segments (the UNIT_IMAGES helpers of unit.h: the engine's own encoders,
** so a test fails only if recovery misreads a correct image); several
** tests also open an undamaged control image to show that the records
** they expect to be ignored would otherwise be recovered.  The engine is
** then opened with ls_open() and checked through the public API only:
** ls_get, cursors, ls_stats_get, ls_segment_foreach and ls_check, whose
** report must be "ok" unless the test built damage that recovery has to
** report.  Geometry: 16 KiB segments, 4 segments per data file; tables 1
** and 2 (one group each) exist unless a test says otherwise.
*/
#define UNIT_IMAGES
#include "io.h"
#include "ls_int.h"
#include "unit.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------------
** Segment reuse (H1) and damage.
*/

/* Slot 2 was incarnation 5 (four buffers of records), then reused as
** incarnation 9, whose data ends in block 0.  Nothing of incarnation 5
** may come back: neither its buffers in blocks 1..3, nor its CRC-valid
** records right after incarnation 9's tail in block 0 (left in place, and
** in one variant even covered by a data_size that claims them). */
static void test_old_incarnation_after_tail(void) {
  char okey[16][16], oval[16][64];
  trec old[4][4];
  for (int i = 0; i < 16; i++) {
    snprintf(okey[i], sizeof okey[i], "o%02d", i);
    snprintf(oval[i], sizeof oval[i], "old-incarnation-value-%02d-padding-padding", i);
    old[i / 4][i % 4] = (trec)PUT(1, okey[i], oval[i], (uint64_t)(10 + i), END);
  }
  uint8_t *oldimg = calloc(1, SEG);
  for (int b = 0; b < 4; b++) build_buf(oldimg + b * BLK, 5, old[b], 4, NULL);

  /* Control: incarnation 5 alone is recovered in full. */
  {
    const char *dir = new_dir(1);
    put_bytes(dir, 2, 0, oldimg, SEG);
    ls_engine *e = OPEN(dir);
    if (e) {
      for (int i = 0; i < 16; i++) ROW(e, 1, okey[i], oval[i]);
      CHECK_OK(e);
      ls_close(e);
    }
  }

  trec nw[] = {
    PUT(1, "n0", "new-0", 60, 0),
    PUT(1, "o01", "o01-at-incarnation-9", 61, END),
  };
  for (int variant = 0; variant < 4; variant++) {
    const char *dir = new_dir(1);
    uint8_t *img = malloc(SEG);
    memcpy(img, oldimg, SEG);
    uint8_t *tmp = calloc(1, SEG);
    uint32_t nlen = build_buf(tmp, 9, nw, NREC(nw), NULL);
    uint64_t want_records = 2;
    if (variant == 0) {
      /* The new buffer over the old one's first bytes; old bytes follow. */
      memcpy(img, tmp, nlen);
    } else if (variant == 1) {
      /* Old incarnation-5 records placed right after the new tail, and the
      ** header's data_size and nrecords claim them (a torn rewrite). */
      memcpy(img, tmp, nlen);
      uint32_t olen = build_buf(tmp, 5, old[3], 4, NULL) - LS_BUF_HDR;
      memcpy(img + nlen, tmp + LS_BUF_HDR, olen);
      set_hdr_sizes(img, nlen - LS_BUF_HDR + olen, 2 + 4);
    } else if (variant == 2) {
      /* Incarnation 9 wrote blocks 0 and 1, the second one shorter than the
      ** old buffer there; the old buffers of blocks 2 and 3 follow. */
      memset(img, 0, BLK);
      memcpy(img, tmp, nlen);
      trec nw2[] = { PUT(1, "n1", "new-1", 62, END) };
      uint32_t l2 = build_buf(tmp, 9, nw2, 1, NULL);
      memcpy(img + BLK, tmp, l2);               /* old incarnation bytes after it */
      want_records = 3;
    } else {
      /* Not from a crash: an empty buffer of incarnation 5 in block 1
      ** between two buffers of incarnation 9.  The foreign header is a
      ** gap before a buffer of the incarnation: damage, reported; the
      ** walk resumes there and keeps the later buffer's row. */
      memset(img, 0, SEG);
      memcpy(img, tmp, nlen);
      build_buf(img + BLK, 5, NULL, 0, NULL);
      trec nw2[] = { PUT(1, "n2", "new-2", 63, END) };
      build_buf(img + 2 * BLK, 9, nw2, 1, NULL);
    }
    free(tmp);
    put_bytes(dir, 2, 0, img, SEG);
    free(img);
    ls_engine *e = variant == 3 ? OPEN_DAMAGED(dir, "segment 2") : OPEN(dir);
    if (!e) continue;
    ROW(e, 1, "n0", "new-0");
    ROW_SEQ(e, 1, "o01", "o01-at-incarnation-9", 61);
    if (variant == 2) ROW(e, 1, "n1", "new-1");
    if (variant == 3) ROW(e, 1, "n2", "new-2");
    else ABSENT(e, 1, "n2");
    for (int i = 0; i < 16; i++)
      if (i != 1) ABSENT(e, 1, okey[i]);
    CHECK_INT(ROWS(e, 1), variant >= 2 ? 3 : 2);
    CHECK_U64(unit_stats(e).recovery_records, variant == 3 ? 3 : want_records);
    if (variant == 3) CHECK_DAMAGE(e, "offset 36864 length 4096, segment 2");
    else CHECK_OK(e);
    ls_close(e);
  }
  free(oldimg);
}

/* A valid buffer of the same incarnation after a corrupt one can not come
** from a crash: the default open refuses the directory, naming the damage;
** the salvage open recovers what precedes the damage and what follows it
** (the walk resumes on the next buffer), and ls_check reports the damaged
** range.  Other segments are unaffected. */
static void test_valid_buffer_after_corrupt(void) {
  trec a[] = { PUT(1, "a0", "va0", 1, 0), PUT(1, "a1", "va1", 2, END) };
  trec b[] = { PUT(1, "b0", "vb0", 3, END), PUT(1, "b1", "vb1", 4, 0), PUT(1, "b2", "vb2", 5, END) };
  trec c[] = { PUT(1, "c0", "vc0", 6, 0), PUT(1, "a0", "va0-newer", 7, END) };
  trec other[] = { PUT(2, "x", "vx", 8, END) };
  for (int variant = 0; variant < 3; variant++) {
    const char *dir = new_dir(1);
    uint8_t *img = calloc(1, SEG);
    uint32_t boffs[NREC(b)];
    build_buf(img, 4, a, NREC(a), NULL);
    build_buf(img + BLK, 4, b, NREC(b), boffs);
    build_buf(img + 2 * BLK, 4, c, NREC(c), NULL);
    if (variant == 0) img[BLK + boffs[1] + LS_REC_HDR] ^= 0x01;   /* a bit of b1's key */
    else if (variant == 1) img[BLK + 20] ^= 0x40;                /* B's header (max_seq) */
    else img[BLK + boffs[2] + 6] = 0xFF;                         /* b2's key_len */
    put_bytes(dir, 0, 0, img, SEG);
    free(img);
    put_buf(dir, 1, 0, 6, other, 1);
    ls_engine *e = OPEN_DAMAGED(dir, "segment 0");
    if (!e) continue;
    ROW(e, 1, "a0", "va0-newer");               /* from the buffer after the damage */
    ROW(e, 1, "a1", "va1");
    if (variant == 1) ABSENT(e, 1, "b0");
    else ROW(e, 1, "b0", "vb0");
    /* The buffer is durable (a buffer follows): a bad b1 is passed over
    ** (b2 after it is read); when b2 is bad, b1 of its transaction counts. */
    if (variant == 2) ROW(e, 1, "b1", "vb1");
    else ABSENT(e, 1, "b1");
    if (variant == 0) ROW(e, 1, "b2", "vb2");
    else ABSENT(e, 1, "b2");
    ROW(e, 1, "c0", "vc0");
    ROW(e, 2, "x", "vx");
    CHECK_INT(ROWS(e, 1), variant == 1 ? 3 : 5);
    CHECK_DAMAGE(e, "segment 0");
    CHECK_DAMAGE(e, "Rows in this range are lost or may read as an older version.");
    char want[64];                              /* the range: b1, B, or b2 to the next buffer */
    uint32_t start = variant == 1 ? BLK : BLK + boffs[variant == 0 ? 1 : 2];
    uint32_t len = variant == 0 ? boffs[2] - boffs[1] : 2 * BLK - start;
    snprintf(want, sizeof want, "offset %u length %u,", start, len);
    CHECK_DAMAGE(e, want);
    ls_close(e);
  }
}

/* The life of accepted damage: refused by the default open; the salvage
** open keeps what is readable and records the range in the manifest; the
** default open then works and lists it as accepted; once the cleaner has
** copied the segment's rows elsewhere and freed it (a free marker over its
** start), the damage is gone from disk, and from the next open's report
** and the manifest. */
static void test_accepted_damage_life(void) {
  const char *dir = new_dir(1);
  trec a[] = { PUT(1, "a0", "va0", 1, 0), PUT(1, "a1", "va1", 2, END) };
  trec b[] = { PUT(1, "b0", "vb0", 3, END) };
  trec c[] = { PUT(2, "c0", "vc0", 4, END) };
  uint8_t *img = calloc(1, SEG);
  build_buf(img, 4, a, NREC(a), NULL);
  build_buf(img + BLK, 4, b, NREC(b), NULL);
  build_buf(img + 2 * BLK, 4, c, NREC(c), NULL);
  img[BLK + 20] ^= 0x40;                        /* b's header */
  put_bytes(dir, 0, 0, img, SEG);
  free(img);
  ls_engine *e = OPEN_DAMAGED(dir, "offset 4096 length 4096, segment 0");
  if (!e) return;
  ROW(e, 1, "a0", "va0");
  ROW(e, 1, "a1", "va1");
  ABSENT(e, 1, "b0");
  ROW(e, 2, "c0", "vc0");
  CHECK_U64(unit_stats(e).damaged_ranges, 1);
  ls_close(e);
  char path[4200];
  path_of(path, sizeof path, dir, "MANIFEST");
  FILE *f = fopen(path, "r");
  char text[2048] = "";
  size_t n = f ? fread(text, 1, sizeof text - 1, f) : 0;
  text[n] = 0;
  if (f) fclose(f);
  CHECK(strstr(text, "\ndamaged 0 4 4096 4096\n") != NULL);

  e = open_still(__FILE__, __LINE__, dir);                /* accepted: the default opens */
  if (!e) return;
  CHECK_DAMAGE(e, "accepted by an earlier open with on_damage=salvage");
  CHECK_U64(unit_stats(e).damaged_ranges, 1);
  uint64_t freed = 0;
  CHECK_RC(ls_flush(e, 0, &freed), LS_OK);      /* the rows move, segment 0 is freed */
  CHECK(freed >= 1);
  ls_close(e);

  e = open_still(__FILE__, __LINE__, dir);
  if (!e) return;
  ROW(e, 1, "a0", "va0");
  ROW(e, 1, "a1", "va1");
  ROW(e, 2, "c0", "vc0");
  CHECK_OK(e);
  CHECK_U64(unit_stats(e).damaged_ranges, 0);
  ls_close(e);
  f = fopen(path, "r");
  n = f ? fread(text, 1, sizeof text - 1, f) : 0;
  text[n] = 0;
  if (f) fclose(f);
  CHECK(strstr(text, "damaged") == NULL);
}

/* Records with a good CRC but an impossible structure (type, flags, seq
** 0, table 0, a delete with a value, a commit that is not key_len 0,
** val_len 8, table 0): each is rejected and ends the segment; the record
** before it is kept, the one after it is not used. */
static void test_malformed_records(void) {
  static const trec bad[] = {
    { 0, END, 1, "k", "v", 5, 0 },                      /* type 0 */
    { 4, END, 1, "k", "v", 5, 0 },                      /* type 4 */
    { LS_REC_PUT, 0x04, 1, "k", "v", 5, 0 },            /* unknown flag */
    { LS_REC_PUT, 0x80 | END, 1, "k", "v", 5, 0 },
    { LS_REC_PUT, END, 1, "k", "v", 0, 0 },             /* seq 0 */
    { LS_REC_PUT, END, 0, "k", "v", 5, 0 },             /* table 0 */
    { LS_REC_DELETE, END, 1, "k", "vv", 5, 0 },         /* a delete with a value */
    { LS_REC_COMMIT, END, 0, NULL, "four", 5, 0 },      /* commit of val_len 4 */
    { LS_REC_COMMIT, END, 0, "k", NULL, 5, 1 },         /* commit with a key */
    { LS_REC_COMMIT, END, 1, NULL, NULL, 5, 1 },        /* commit of a table */
  };
  for (int i = 0; i < NREC(bad); i++) {
    const char *dir = new_dir(1);
    trec r[] = { PUT(1, "a0", "va0", 1, END), bad[i], PUT(1, "b0", "vb0", 6, END) };
    put_buf(dir, 0, 0, 2, r, NREC(r));
    ls_engine *e = OPEN(dir);
    if (!e) continue;
    int before = unit_failed_checks;
    ROW(e, 1, "a0", "va0");
    ABSENT(e, 1, "k");
    ABSENT(e, 1, "b0");
    CHECK_INT(ROWS(e, 1), 1);
    CHECK_U64(unit_stats(e).recovery_records, 1);
    CHECK_OK(e);
    if (unit_failed_checks != before) printf("     (malformed record case %d)\n", i);
    ls_close(e);
  }
}

/* Every buffer of a segment has the segment's kind: a buffer of another
** kind (same incarnation) ends the segment, in a mixed segment and in a
** group segment. */
static void test_kind_change_ends_segment(void) {
  const char *dir = new_dir(1);
  trec a[] = { PUT(1, "a0", "va0", 1, END) };
  trec b[] = { PUT(1, "b0", "vb0", 2, END) };
  trec c[] = { PUT(2, "c0", "vc0", 3, END) };
  trec d[] = { PUT(2, "d0", "vd0", 4, END) };
  uint8_t *img = calloc(1, SEG);
  build_buf(img, 4, a, 1, NULL);                                        /* mixed */
  build_buf_ex(img + BLK, 4, LS_KIND_GROUP, 0, 1, 0, b, 1, NULL);       /* then group */
  put_bytes(dir, 0, 0, img, SEG);
  memset(img, 0, SEG);
  build_buf_ex(img, 5, LS_KIND_GROUP, 0, 2, 0, c, 1, NULL);             /* group */
  build_buf(img + BLK, 5, d, 1, NULL);                                  /* then mixed */
  put_bytes(dir, 1, 0, img, SEG);
  free(img);
  ls_engine *e = OPEN(dir);
  if (!e) return;
  ROW(e, 1, "a0", "va0");
  ABSENT(e, 1, "b0");
  ROW(e, 2, "c0", "vc0");
  ABSENT(e, 2, "d0");
  CHECK_INT(ROWS(e, 1), 1);
  CHECK_INT(ROWS(e, 2), 1);
  char *rep = NULL;
  CHECK_RC(ls_check(e, 0, &rep), LS_OK);
  free(rep);
  ls_close(e);
}

/* Lengths pointing past the end of the buffer, the segment or 32 bits:
** no out-of-bounds read (this test matters under ASan), the walk stops at
** the bad length, what precedes it is recovered.  A buffer header claiming
** more than the segment holds is no crash's: damage (variants 0-2). */
static void test_lengths_past_end(void) {
  trec a[] = { PUT(1, "a0", "va0", 1, 0), PUT(1, "a1", "va1", 2, END) };
  trec x[] = { PUT(1, "x0", "vx0", 3, 0), PUT(1, "x1", "vx1", 4, END) };
  static char big[3983];
  memset(big, 'B', sizeof big - 1);             /* x0 of 4008 bytes: x1 ends the block */
  trec y[] = { PUT(1, "x0", big, 3, 0), PUT(1, "x1", "vx1", 4, END) };
  for (int variant = 0; variant < 5; variant++) {
    const char *dir = new_dir(1);
    uint8_t *img = calloc(1, SEG);
    build_buf(img, 2, a, NREC(a), NULL);
    uint32_t offs[2];
    if (variant <= 2) {
      static const uint32_t sizes[3] = { SEG, SEG - BLK - LS_BUF_HDR + 8, 0xFFFFFFF8u };
      build_buf(img + BLK, 2, x, NREC(x), NULL);
      set_hdr_sizes(img + BLK, sizes[variant], 2);   /* data_size past the segment */
    } else if (variant == 3) {
      /* x1 claims a value running 64 bytes past data_size, inside the
      ** segment, with a CRC that is right over the claimed bytes. */
      uint32_t len = build_buf(img + BLK, 2, x, NREC(x), offs);
      uint8_t *p = img + BLK + offs[1];
      uint32_t klen = 2, vlen = (len - offs[1]) - LS_REC_HDR - klen + 64;
      memset(p + LS_REC_HDR + klen + 3, 'z', vlen - 3);
      ls_put32(p + 8, vlen);
      ls_put32(p, ls_crc32c(ls_rec_seed(2), p + 4, LS_REC_HDR - 4 + klen + vlen));
    } else {
      /* A buffer in the segment's last block whose last record, the last
      ** 40 bytes of the segment and of the file, claims an 8 KiB value. */
      trec f1[] = { PUT(1, "f1", "vf1", 10, END) }, f2[] = { PUT(1, "f2", "vf2", 11, END) };
      build_buf(img + BLK, 2, f1, 1, NULL);     /* blocks 1 and 2 lead there */
      build_buf(img + 2 * BLK, 2, f2, 1, NULL);
      uint8_t *q = img + SEG - BLK;
      uint32_t len = build_buf(q, 2, y, NREC(y), offs);
      CHECK_INT(offs[1], BLK - 40);
      CHECK_INT(len, BLK - 8);
      set_hdr_sizes(q, BLK - LS_BUF_HDR, 2);
      uint8_t *p = q + offs[1];
      ls_put32(p + 8, 8192);
      ls_put32(p, ls_crc32c(ls_rec_seed(2), p + 4, 40 - 4));
    }
    put_bytes(dir, 0, 0, img, SEG);
    free(img);
    ls_engine *e = variant <= 2 ? OPEN_DAMAGED(dir, "claims more bytes than the segment holds") : OPEN(dir);
    if (!e) continue;
    ROW(e, 1, "a0", "va0");
    ROW(e, 1, "a1", "va1");
    ABSENT(e, 1, "x0");                         /* x0's transaction has no valid END */
    ABSENT(e, 1, "x1");
    if (variant == 4) {
      ROW(e, 1, "f1", "vf1");
      ROW(e, 1, "f2", "vf2");
    }
    CHECK_INT(ROWS(e, 1), variant == 4 ? 4 : 2);
    CHECK_U64(unit_stats(e).recovery_records, variant == 4 ? 5 : variant == 3 ? 3 : 2);
    if (variant <= 2) CHECK_DAMAGE(e, "segment 0");
    else CHECK_OK(e);
    ls_close(e);
  }
}

/* Record lengths at their limits: val_len 0xFFFFFFFF, key_len 65535 past
** the buffer, and a key_len + val_len whose 32-bit sum wraps to a small
** size.  Each is rejected; the record before it is kept. */
static void test_oversize_lengths(void) {
  trec a[] = { PUT(1, "a0", "va0", 1, END), PUT(1, "zz", "vzz", 2, END) };
  for (int variant = 0; variant < 4; variant++) {
    const char *dir = new_dir(1);
    uint8_t *img = calloc(1, SEG);
    uint32_t offs[2];
    uint32_t len = build_buf(img, 3, a, NREC(a), offs);
    uint8_t *p = img + offs[1];
    switch (variant) {
    case 0: ls_put32(p + 8, 0xFFFFFFFFu); break;
    case 1: ls_put16(p + 6, 65535); break;
    case 2: ls_put16(p + 6, 16); ls_put32(p + 8, 0xFFFFFFF0u); break;   /* 24+16+v wraps to 24 */
    case 3: ls_put16(p + 6, 65535); ls_put32(p + 8, 0xFFFFFFFFu); break;
    }
    /* The CRC over the bytes the buffer holds, so only the lengths are wrong. */
    ls_put32(p, ls_crc32c(ls_rec_seed(3), p + 4, len - offs[1] - 4));
    /* A buffer claiming the whole rest of the segment, so the bad lengths
    ** are checked against a large remainder too. */
    if (variant >= 2) set_hdr_sizes(img, SEG - LS_BUF_HDR, 2);
    put_bytes(dir, 0, 0, img, SEG);
    free(img);
    ls_engine *e = OPEN(dir);
    if (!e) continue;
    ROW(e, 1, "a0", "va0");
    ABSENT(e, 1, "zz");
    CHECK_INT(ROWS(e, 1), 1);
    CHECK_U64(unit_stats(e).recovery_records, 1);
    CHECK_OK(e);
    ls_close(e);
  }
}

/* ------------------------------------------------------------------------
** The data files themselves.
*/

static int exists(const char *dir, const char *name) {
  char path[4200];
  path_of(path, sizeof path, dir, name);
  struct stat st;
  return lstat(path, &st) == 0;
}

static void test_data_file_problems(void) {
  /* A gap in the numbering. */
  const char *dir = unit_tmpdir();
  write_manifest(dir, 0, 3, std_tables, 2);
  make_file(dir, 0, FILE_SIZE);
  make_file(dir, 2, FILE_SIZE);
  ls_engine *e = NULL;
  CHECK_RC(ls_open(dir, NULL, &e), LS_CORRUPT);
  CHECK(e == NULL);
  CHECK(strstr(ls_errmsg(), "missing") != NULL);
  if (e) ls_close(e);

  /* Only data-000001.ls. */
  dir = unit_tmpdir();
  write_manifest(dir, 0, 3, std_tables, 2);
  make_file(dir, 1, FILE_SIZE);
  e = NULL;
  CHECK_RC(ls_open(dir, NULL, &e), LS_CORRUPT);
  if (e) ls_close(e);

  /* A data file of the wrong size, shorter or longer.  (Both counted: an
  ** uncounted last file is taken in with the whole segments it has,
  ** test_growth.) */
  for (int longer = 0; longer < 2; longer++) {
    dir = unit_tmpdir();
    manifest_files = 2;
    write_manifest(dir, 0, 3, std_tables, 2);
    manifest_files = 0;
    make_file(dir, 0, FILE_SIZE);
    make_file(dir, 1, longer ? FILE_SIZE + BLK : FILE_SIZE - BLK);
    e = NULL;
    CHECK_RC(ls_open(dir, NULL, &e), LS_CORRUPT);
    CHECK(strstr(ls_errmsg(), "data-000001.ls") != NULL);
    if (e) ls_close(e);
  }

  /* The manifest counts the files: the last one missing is as visible as
  ** one in the middle; a count beyond what any disk_size allows is refused
  ** at once (no memory or time spent on it). */
  dir = unit_tmpdir();
  manifest_files = 3;
  write_manifest(dir, 0, 3, std_tables, 2);
  make_file(dir, 0, FILE_SIZE);
  make_file(dir, 1, FILE_SIZE);
  e = NULL;
  CHECK_RC(ls_open(dir, NULL, &e), LS_CORRUPT);
  CHECK(strstr(ls_errmsg(), "data-000002.ls offset 0 length 65536") != NULL);
  CHECK(strstr(ls_errmsg(), "the data file is missing") != NULL);
  if (e) ls_close(e);
  dir = unit_tmpdir();
  manifest_files = 4000000000u;
  write_manifest(dir, 0, 3, std_tables, 2);
  make_file(dir, 0, FILE_SIZE);
  CHECK_RC(ls_open(dir, NULL, &e), LS_CORRUPT);
  CHECK(strstr(ls_errmsg(), "more than disk_size allows") != NULL);
  if (e) ls_close(e);
  manifest_files = 0;

  /* Data files without a manifest. */
  dir = unit_tmpdir();
  make_file(dir, 0, FILE_SIZE);
  e = NULL;
  CHECK_RC(ls_open(dir, NULL, &e), LS_CORRUPT);
  if (e) ls_close(e);

  /* A leftover data-000003.tmp of an interrupted format is deleted. */
  dir = new_dir(3);
  make_file(dir, 3, FILE_SIZE / 2);
  char from[4200], to[4200];
  path_of(from, sizeof from, dir, "data-000003.ls");
  path_of(to, sizeof to, dir, "data-000003.tmp");
  CHECK(rename(from, to) == 0);
  trec r[] = { PUT(1, "k", "v", 1, END) };
  put_buf(dir, 9, 0, 1, r, 1);
  e = OPEN(dir);
  if (!e) return;
  CHECK(!exists(dir, "data-000003.tmp"));
  ROW(e, 1, "k", "v");
  CHECK_U64(unit_stats(e).recovery_segments, 3 * SPF);
  CHECK_OK(e);
  ls_close(e);
  CHECK(!exists(dir, "data-000003.tmp"));
}

/* Random bytes in every segment: damage (no segment starts with a valid
** header), nothing recovered, no crash; salvage makes the segments usable
** (free markers), and afterwards the directory opens cleanly. */
static void test_garbage_segments(void) {
  uint64_t rnd = unit_seed("garbage");
  const char *dir = new_dir(2);
  uint8_t *img = malloc(SEG);
  for (uint32_t s = 0; s < 2 * SPF; s++) {
    for (uint32_t i = 0; i < SEG; i += 8) {
      uint64_t x = unit_rand(&rnd);
      memcpy(img + i, &x, 8);
    }
    put_bytes(dir, s, 0, img, SEG);
  }
  free(img);
  ls_engine *e = OPEN_DAMAGED(dir, "no buffer header in the segment is valid");
  if (!e) return;
  CHECK_INT(ROWS(e, 1), 0);
  CHECK_INT(ROWS(e, 2), 0);
  ls_stats s = unit_stats(e);
  CHECK_U64(s.records_live, 0);
  CHECK_U64(s.recovery_records, 0);
  CHECK_U64(s.recovery_segments, 2 * SPF);
  CHECK_U64(s.segments_free, s.segments_total);
  CHECK_U64(s.damaged_ranges, 2 * SPF);
  CHECK_U64(s.damaged_bytes, 2 * SPF * SEG);
  CHECK_DAMAGE(e, "segment 7");
  for (int i = 0; i < 20; i++) {
    char k[16], v[32];
    snprintf(k, sizeof k, "g%d", i);
    snprintf(v, sizeof v, "after-garbage-%d", i);
    CHECK_RC(commit_one(e, 1 + (uint32_t)(i & 1), k, v), LS_OK);
  }
  ls_close(e);
  e = OPEN(dir);
  if (!e) return;
  for (int i = 0; i < 20; i++) {
    char k[16], v[32];
    snprintf(k, sizeof k, "g%d", i);
    snprintf(v, sizeof v, "after-garbage-%d", i);
    ROW(e, 1 + (uint32_t)(i & 1), k, v);
  }
  CHECK_INT(ROWS(e, 1), 10);
  CHECK_INT(ROWS(e, 2), 10);
  CHECK_OK(e);
  ls_close(e);
}

/* Fingerprint of every row of tables 1 and 2 except key skip: count and
** a sum of hashes of (table, key, value, seq). */
typedef struct fingerprint { long rows; uint64_t sum; } fingerprint;

static fingerprint fingerprint_of(ls_engine *e, const char *skip) {
  fingerprint f = { 0, 0 };
  for (uint32_t t = 1; t <= 2; t++) {
    ls_cursor *c = NULL;
    if (ls_cursor_open(e, NULL, t, &c)) { f.rows = -1; return f; }
    int rc;
    for (rc = ls_cursor_seek(c, INT64_MIN); !rc && ls_cursor_valid(c); rc = ls_cursor_next(c)) {
      const ls_value *r = ls_cursor_row(c);
      if (r->key_len == strlen(skip) && !memcmp(r->key, skip, r->key_len)) continue;
      uint32_t h = ls_crc32c(t, r->key, r->key_len);
      h = ls_crc32c(h, r->data, r->len);
      f.sum += ((uint64_t)h << 20) ^ r->seq;
      f.rows++;
    }
    if (rc) f.rows = -1;
    ls_cursor_close(c);
  }
  return f;
}

/* ls_check may report damaged ranges, but no problem of the indexes or
** the accounting. */
static void check_indexes_at(int line, ls_engine *e) {
  char *rep = NULL;
  int rc = ls_check(e, 0, &rep);
  if (rc != LS_OK) {
    unit_fail(__FILE__, line, "ls_check: %d (%s): %s", rc, ls_strerror(rc), ls_errmsg());
    return;
  }
  for (const char *l = rep; l && *l;) {
    const char *nl = strchr(l, '\n');
    size_t n = nl ? (size_t)(nl - l) : strlen(l);
    if ((n != 2 || memcmp(l, "ok", 2) != 0) && (n < 8 || memcmp(l, "damage: ", 8) != 0))
      unit_fail(__FILE__, line, "ls_check: %.*s", (int)n, l);
    l = nl ? nl + 1 : l + n;
  }
  free(rep);
}

/* Random but mostly well-formed segments: valid headers, records of random
** types, flags, tables (3 is dropped), one- or two-byte keys (so versions
** collide), sequences, CONT streams and COMMIT records, with one field in
** about sixteen corrupted (CRC kept or not), random data_size / nrecords
** now and then, and random bytes where a later block's header should be.
** Nothing may crash or read out of bounds; every recovered row must read
** back; ls_check may report damage but no index or accounting problem; a
** commit works; and a second recovery, in the default mode (the salvage
** accepted what it found), gives the same rows (V8). */
static void test_garbage_records(void) {
  uint64_t rnd = unit_seed("garbage records");
  uint8_t *img = malloc(SEG);
  uint64_t total_records = 0;
  long total_rows = 0;
  for (int iter = 0; iter < 40; iter++) {
    const char *dir = new_dir(1);
    for (uint32_t s = 0; s < SPF; s++) {
      uint64_t seg_seq = 1 + s + 4 * (uint64_t)iter;
      uint32_t seed = ls_rec_seed(seg_seq);
      for (uint32_t i = 0; i < SEG; i += 8) {
        uint64_t x = unit_rand(&rnd);
        memcpy(img + i, &x, 8);
      }
      for (uint32_t b = 0; b < SEG / BLK; b++) {
        uint8_t *buf = img + b * BLK;
        uint32_t off = LS_BUF_HDR, nrec = 0;
        uint64_t maxseq = 0;
        while (unit_rand(&rnd) % 16) {
          uint64_t x = unit_rand(&rnd), y = unit_rand(&rnd);
          uint32_t type = x % 8 == 0 ? LS_REC_COMMIT : x % 8 < 3 ? LS_REC_DELETE : LS_REC_PUT;
          uint32_t flags = (x >> 4) % 4 == 0 ? LS_RF_CONT : (x >> 4) % 4 == 1 ? 0 : LS_RF_END;
          uint32_t table = type == LS_REC_COMMIT ? 0 : 1 + (uint32_t)((x >> 8) % 5 == 0 ? 2 : (x >> 8) % 2);
          uint8_t key[2] = { (uint8_t)('a' + (y % 6)), (uint8_t)('a' + ((y >> 8) % 3)) };
          uint32_t klen = type == LS_REC_COMMIT ? 0 : 1 + (uint32_t)((y >> 16) % 2);
          uint8_t val[160];
          uint32_t vlen = type == LS_REC_PUT ? (uint32_t)((y >> 20) % sizeof val) : 0;
          for (uint32_t v = 0; v < vlen; v++) val[v] = (uint8_t)(y >> (v % 56));
          uint64_t seq = 1 + (x >> 16) % 300;
          if (type == LS_REC_COMMIT) {
            ls_put64(val, seq > 5 ? seq - 1 - (y >> 32) % 5 : 1);
            vlen = 8;
            flags = LS_RF_END;
          }
          uint32_t size = ls_rec_size(klen, vlen);
          if (off + size > BLK) break;
          uint8_t *p = buf + off;
          ls_rec_encode(p, type, table, key, klen, val, vlen);
          ls_rec_seal(p, seq, flags, seed);
          if (y % 16 == 0) {                    /* corrupt one field */
            int recrc = (y >> 4) % 2;
            switch ((y >> 8) % 6) {
            case 0: p[4] = (uint8_t)(y >> 24); break;
            case 1: p[5] = (uint8_t)(y >> 24); break;
            case 2: ls_put16(p + 6, (uint16_t)(y >> 24)); break;
            case 3: ls_put32(p + 8, (uint32_t)(y >> 24)); break;
            case 4: ls_put64(p + 16, (y >> 40) % 3); break;
            case 5: p[LS_REC_HDR + (klen + vlen ? (y >> 24) % (klen + vlen) : 0)] ^= 0x10; break;
            }
            uint64_t cov = (uint64_t)LS_REC_HDR + ls_get16(p + 6) + ls_get32(p + 8);
            if (recrc && b * BLK + off + cov <= SEG) ls_put32(p, ls_crc32c(seed, p + 4, (size_t)cov - 4));
          }
          if (seq > maxseq) maxseq = seq;
          off += size;
          nrec++;
        }
        uint64_t x = unit_rand(&rnd);
        ls_bufhdr h = {
          .kind = x % 32 ? LS_KIND_MIXED : LS_KIND_GROUP, .seg_seq = seg_seq, .max_seq = maxseq,
          .data_size = x % 16 ? off - LS_BUF_HDR : (uint32_t)(x >> 8) & ~7u,
          .nrecords = (x >> 4) % 16 ? nrec : (uint32_t)(x >> 20),
        };
        if (b == 0 || (x >> 60) % 4) ls_bufhdr_encode(buf, &h);
        if (b + 1 < SEG / BLK && (x >> 56) % 2)   /* zero tail, or random bytes, up to the next block */
          memset(buf + off, 0, BLK - off);
      }
      put_bytes(dir, s, 0, img, SEG);
    }
    ls_engine *e = open_mode(__FILE__, __LINE__, dir, LS_ON_DAMAGE_SALVAGE);
    if (!e) continue;
    int before = unit_failed_checks;
    long n1 = ROWS(e, 1), n2 = ROWS(e, 2);
    CHECK(n1 >= 0 && n2 >= 0);
    total_rows += n1 + n2;
    total_records += unit_stats(e).recovery_records;
    fingerprint f1 = fingerprint_of(e, "after");
    check_indexes_at(__LINE__, e);
    CHECK_RC(commit_one(e, 1, "after", "after-v"), LS_OK);
    ls_close(e);
    e = open_still(__FILE__, __LINE__, dir);                /* what remains was accepted */
    if (!e) continue;
    ROW(e, 1, "after", "after-v");
    fingerprint f2 = fingerprint_of(e, "after");
    CHECK_INT(f2.rows, f1.rows);
    CHECK_U64(f2.sum, f1.sum);
    check_indexes_at(__LINE__, e);
    ls_close(e);
    if (unit_failed_checks != before) printf("     (iteration %d)\n", iter);
  }
  /* The generator must reach deep enough to matter. */
  CHECK(total_records > 40 * 20);
  CHECK(total_rows > 40 * 5);
  free(img);
}


int main(void) {
  RUN(test_old_incarnation_after_tail);
  RUN(test_valid_buffer_after_corrupt);
  RUN(test_accepted_damage_life);
  RUN(test_malformed_records);
  RUN(test_kind_change_ends_segment);
  RUN(test_lengths_past_end);
  RUN(test_oversize_lengths);
  RUN(test_data_file_problems);
  RUN(test_garbage_segments);
  RUN(test_garbage_records);
  return unit_finish();
}
