/*
** test_recovery_torn.c -- recovery (recovery.c) of torn tails on data
** directories built by hand (reliability plan R02 "recovery_torn_tail";
** hazards H1, H2): a last buffer torn at every sector, the open buffer's
** rewrite, a torn first write of a reused slot across two crashes.
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
** Torn writes.
**
** Segment 0 (incarnation 7) holds buffer A in block 0 (acknowledged) and a
** last buffer B of three blocks from offset 4096.  B's write is torn:
** some of its sectors hold the new bytes, the others the bytes that were
** there before (zeros, or an older incarnation 3 of the slot).  Recovery
** must return all of A and exactly the transactions of B whose records,
** from B's first record through their END record, all survived -- never a
** part of one.  The expectation is computed from the bytes: a record
** survived iff every byte its CRC covers equals the new image.
*/

#define TORN_TXNS 10
static char torn_key[TORN_TXNS][2][16];
static char torn_val[TORN_TXNS][2][1024];
static char stale_key[40][16];
static char stale_val[256];

typedef struct torn_case {
  uint8_t *newimg;                 /* A + B, never torn */
  uint8_t *oldimg;                 /* the slot's bytes before B's write */
  trec a[6];
  trec b[2 * TORN_TXNS + 1];
  int nb;
  int txn_end[TORN_TXNS];          /* index in b[] of each transaction's END */
  uint32_t boffs[2 * TORN_TXNS + 1];
  uint32_t blen;                   /* B's bytes, header included */
} torn_case;

static void torn_setup(torn_case *tc, int stale) {
  memset(tc, 0, sizeof *tc);
  static const char *akeys[6] = { "a0", "a1", "a2", "a3", "a4", "a5" };
  static const char *avals[6] = { "A-zero", "A-one", "A-two", "A-three", "A-four", "A-five" };
  for (int i = 0; i < 6; i++)
    tc->a[i] = (trec)PUT(1, akeys[i], avals[i], (uint64_t)(101 + i), (i % 2) ? END : 0);
  int n = 0;
  uint64_t seq = 107;
  for (int j = 0; j < TORN_TXNS; j++) {
    snprintf(torn_key[j][0], sizeof torn_key[j][0], "b%dx", j);
    snprintf(torn_key[j][1], sizeof torn_key[j][1], "b%dy", j);
    size_t lx = 300 + 60 * (size_t)j, ly = 150 + 40 * (size_t)j;
    memset(torn_val[j][0], 'A' + j, lx);
    torn_val[j][0][lx] = 0;
    memset(torn_val[j][1], 'a' + j, ly);
    torn_val[j][1][ly] = 0;
    tc->b[n++] = (trec)PUT(1, torn_key[j][0], torn_val[j][0], seq++, 0);
    if (j == 3)                                 /* this one also updates a key of A */
      tc->b[n++] = (trec)PUT(1, "a1", torn_val[j][1], seq++, 0);
    tc->b[n++] = (trec)PUT(1, torn_key[j][1], torn_val[j][1], seq++, END);
    tc->txn_end[j] = n - 1;
  }
  tc->nb = n;
  for (int i = 0; i < 40; i++) snprintf(stale_key[i], sizeof stale_key[i], "s%02d", i);
  tc->newimg = calloc(1, SEG);
  tc->oldimg = calloc(1, SEG);
  build_buf(tc->newimg, 7, tc->a, 6, NULL);
  tc->blen = build_buf(tc->newimg + BLK, 7, tc->b, n, tc->boffs);
  CHECK(tc->blen > 2 * BLK && BLK + tc->blen <= SEG);   /* B spans three blocks */
  if (stale) {
    /* Incarnation 3 filled blocks 1..3 with one buffer of 40 records. */
    memset(stale_val, 'o', 250);
    stale_val[250] = 0;
    trec s[40];
    for (int i = 0; i < 40; i++) s[i] = (trec)PUT(1, stale_key[i], stale_val, (uint64_t)(1 + i), END);
    build_buf(tc->oldimg, 3, s, 10, NULL);      /* block 0: overwritten by A */
    uint32_t l = build_buf(tc->oldimg + BLK, 3, s, 40, NULL);
    CHECK(BLK + l <= SEG);
  }
}

static void torn_free(torn_case *tc) {
  free(tc->newimg);
  free(tc->oldimg);
}

/* Write img as segment 0 of a fresh directory, open it and compare with
** the expectation derived from which bytes of B survived. */
static void torn_check(torn_case *tc, const uint8_t *img, const char *what, int k) {
  const char *dir = new_dir(1);
  put_bytes(dir, 0, 0, img, SEG);
  /* Which of B's records survived, in order. */
  const uint8_t *nb = tc->newimg + BLK, *tb = img + BLK;
  int hdr_ok = memcmp(nb, tb, LS_BUF_HDR) == 0;
  int good = 0;
  if (hdr_ok)
    while (good < tc->nb && memcmp(nb + tc->boffs[good], tb + tc->boffs[good], covered(&tc->b[good])) == 0)
      good++;
  /* Expected values: A, then every transaction of B whose END survived. */
  const char *want_a1 = "A-one";
  int applied[TORN_TXNS];
  for (int j = 0; j < TORN_TXNS; j++) {
    applied[j] = hdr_ok && tc->txn_end[j] < good;
    if (applied[j] && j == 3) want_a1 = torn_val[3][1];
  }
  ls_engine *e = OPEN(dir);
  if (!e) return;
  int before = unit_failed_checks;
  for (int i = 0; i < 6; i++)
    if (i != 1) ROW(e, 1, tc->a[i].key, tc->a[i].val);
  ROW(e, 1, "a1", want_a1);
  long want_rows = 6;
  for (int j = 0; j < TORN_TXNS; j++) {
    for (int x = 0; x < 2; x++) {
      if (applied[j]) ROW(e, 1, torn_key[j][x], torn_val[j][x]);
      else ABSENT(e, 1, torn_key[j][x]);
    }
    want_rows += applied[j] ? 2 : 0;
  }
  for (int i = 0; i < 40; i += 7) ABSENT(e, 1, stale_key[i]);
  CHECK_INT(ROWS(e, 1), want_rows);
  CHECK_U64(unit_stats(e).recovery_records, 6 + (uint64_t)good);
  CHECK_OK(e);
  if (unit_failed_checks != before)
    printf("     (in %s, k=%d: header %s, %d of %d records of B intact)\n", what, k,
           hdr_ok ? "intact" : "old", good, tc->nb);
  ls_close(e);
}

/* B torn at every 512-byte boundary: its first k sectors new, the rest old
** (zeros, or the stale bytes of an older incarnation). */
static void test_torn_last_buffer(void) {
  for (int stale = 0; stale < 2; stale++) {
    torn_case tc;
    torn_setup(&tc, stale);
    uint32_t span = (uint32_t)ls_align_up(tc.blen, BLK);
    uint8_t *img = malloc(SEG);
    for (uint32_t k = 0; k <= span / SECTOR; k++) {
      memcpy(img, tc.oldimg, SEG);
      memcpy(img, tc.newimg, BLK + (size_t)k * SECTOR);  /* A's block and B's first k sectors */
      torn_check(&tc, img, stale ? "stale prefix" : "zero prefix", (int)k);
    }
    free(img);
    torn_free(&tc);
  }
}

/* Sectors of a torn write may land in any order: every sector of B is new
** or old at random (seeded). */
static void test_torn_random_sectors(void) {
  uint64_t rnd = unit_seed("torn sectors");
  for (int iter = 0; iter < 48; iter++) {
    int stale = iter & 1;
    torn_case tc;
    torn_setup(&tc, stale);
    uint32_t span = (uint32_t)ls_align_up(tc.blen, BLK);
    uint8_t *img = malloc(SEG);
    memcpy(img, tc.oldimg, SEG);
    memcpy(img, tc.newimg, BLK);
    /* Mostly-new sectors make deep prefixes likely: the header sector is
    ** new 15 times in 16, the others 7 in 8. */
    for (uint32_t s = 0; s < span / SECTOR; s++) {
      uint64_t x = unit_rand(&rnd) % 16;
      int keep = s == 0 ? x != 0 : x >= 2;
      if (keep) memcpy(img + BLK + s * SECTOR, tc.newimg + BLK + s * SECTOR, SECTOR);
    }
    torn_check(&tc, img, stale ? "random stale" : "random zero", iter);
    free(img);
    torn_free(&tc);
  }
}

/* Sharing a block (FORMAT.md "Sharing blocks"): a one-block buffer was
** rewritten with more records and the crash tore the rewrite.  The old
** records survive byte for byte; whatever of the rewrite is missing, the
** old transaction is recovered and the new one is not. */
static void test_open_buffer_rewrite(void) {
  trec r[] = {
    PUT(1, "k1", "first-commit-1", 1, 0),
    PUT(1, "k2", "first-commit-2", 2, END),
    PUT(1, "k1", "second-commit-1", 3, 0),      /* the appended group */
    PUT(1, "k3", "second-commit-3", 4, END),
  };
  for (int variant = 0; variant < 3; variant++) {
    const char *dir = new_dir(1);
    uint8_t *img = calloc(1, SEG);
    uint32_t offs[NREC(r)];
    uint32_t full = build_buf(img, 5, r, NREC(r), offs);
    uint32_t old_size = offs[2] - LS_BUF_HDR;
    uint64_t want_records = 2;
    switch (variant) {
    case 0:                                     /* new header, new records missing */
      memset(img + offs[2], 0, full - offs[2]);
      break;
    case 1:                                     /* old header (its sector torn), new records present */
      set_hdr_sizes(img, old_size, 2);
      break;
    case 2:                                     /* new header, only the first new record present */
      memset(img + offs[3], 0, full - offs[3]);
      want_records = 3;
      break;
    }
    put_bytes(dir, 0, 0, img, SEG);
    free(img);
    ls_engine *e = OPEN(dir);
    if (!e) continue;
    ROW_SEQ(e, 1, "k1", "first-commit-1", 1);
    ROW(e, 1, "k2", "first-commit-2");
    ABSENT(e, 1, "k3");
    CHECK_INT(ROWS(e, 1), 2);
    CHECK_U64(unit_stats(e).recovery_records, want_records);
    CHECK_OK(e);
    ls_close(e);
  }
}

/* H1 across two crashes.  Crash 1 tore the first write of slot 1's
** incarnation 12 (a multi-block buffer): its header sector was lost, later
** sectors -- records seeded with 12, among them a put of "a" at seq 55 --
** reached the disk.  Recovery finds slot 1 free (no header) and the
** highest durable segment sequence is 11.  The next run commits "a" =
** "real" (acknowledged) into slot 1; then crash 2 tears a buffer in
** block 1 of slot 1: its first sector (header and one record) lands, the
** rest keeps the bytes of crash 1.  The stale record must not be
** recovered: its segment sequence names an incarnation that no longer
** exists, and its sequence was never acknowledged.  If the new
** incarnation reuses the segment sequence 12 (and write sequences from
** 50), the stale put decodes and, with seq 55 > 50, replaces the
** acknowledged value. */
static void test_torn_first_write_not_revived(void) {
  const char *dir = new_dir(1);
  trec s0[] = { PUT(1, "k0", "v0", 49, END) };
  put_buf(dir, 0, 0, 11, s0, NREC(s0));
  /* Crash 1: incarnation 12 of slot 1, one buffer of records 50..55; the
  ** filler makes the stale put of "a" start at offset 4608 (block 1,
  ** sector 1). */
  static char fill[4536];
  memset(fill, 'f', sizeof fill - 1);
  trec life1[] = { PUT(1, "f", fill, 50, 0), PUT(1, "a", "ghost", 55, END) };
  uint8_t *img = calloc(1, SEG);
  uint32_t offs[2];
  build_buf(img, 12, life1, NREC(life1), offs);
  CHECK_INT(offs[1], BLK + SECTOR);
  memset(img, 0, SECTOR);                       /* the header's sector never landed: */
  ls_free_marker(img, 0, 0);                    /* the slot's marker stays */
  put_bytes(dir, 1, 0, img, SEG);

  ls_engine *e = OPEN(dir);
  if (!e) { free(img); return; }
  ROW(e, 1, "k0", "v0");
  ABSENT(e, 1, "a");                            /* crash 1 lost it: fine */
  CHECK_RC(commit_one(e, 1, "a", "real"), LS_OK);
  ls_value v;
  memset(&v, 0, sizeof v);
  ls_key k;
  ls_key_set(&k, "a", 1);
  CHECK_RC(ls_get(e, 1, &k, &v), LS_OK);
  uint64_t real_seq = v.seq;
  ls_value_free(&v);
  ls_close(e);

  /* Crash 2: the next group (4.2 KB: too big to share block 0) went into
  ** a new buffer in blocks 1..2 of slot 1, stamped with the incarnation
  ** the engine gave the slot; the write was torn after its first sector
  ** (header + one record that ends exactly at the sector boundary). */
  CHECK(get_seg(dir, 1, img));
  ls_bufhdr h0;
  CHECK(ls_bufhdr_decode(img, &h0));
  uint64_t inc = h0.seg_seq;
  static char nv[439], nv2[3701];
  memset(nv, 'n', sizeof nv - 1);
  memset(nv2, 'm', sizeof nv2 - 1);             /* too big for block 0: a new buffer */
  trec life2[] = { PUT(1, "n1", nv, real_seq + 1, END), PUT(1, "n2", nv2, real_seq + 2, END) };
  uint8_t *blk = calloc(1, SEG);
  uint32_t offs2[2];
  build_buf(blk, inc, life2, NREC(life2), offs2);
  CHECK_INT(offs2[1], SECTOR);
  put_bytes(dir, 1, BLK, blk, SECTOR);          /* only the first sector landed */
  free(blk);
  free(img);

  e = OPEN(dir);
  if (!e) return;
  int before = unit_failed_checks;
  ROW_SEQ(e, 1, "a", "real", real_seq);         /* acknowledged: must survive */
  ROW(e, 1, "k0", "v0");
  if (unit_failed_checks != before)
    printf("     (slot 1 was reused as incarnation %" PRIu64 " after the torn incarnation 12; "
           "\"a\" = \"real\" was committed at seq %" PRIu64 ", the stale put has seq 55)\n", inc, real_seq);
  ls_close(e);
}


int main(void) {
  RUN(test_torn_last_buffer);
  RUN(test_torn_random_sectors);
  RUN(test_open_buffer_rewrite);
  RUN(test_torn_first_write_not_revived);
  return unit_finish();
}
