/*
** test_recovery.c -- unit tests of recovery (recovery.c) on data
** directories built by hand, byte by byte, as engine/FORMAT.md describes
** them: basic images, version resolution (R03, H6), transactions written
** in several buffers (H11), dropped and truncated tables, sequences that
** continue across a restart, free markers.  Torn tails are in
** test_recovery_torn.c, damage in test_recovery_damage.c.
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
** Basic images.
*/

/* A directory holding only a manifest opens empty. */
static void test_empty_manifest_only(void) {
  const char *dir = new_dir_floor(0, 41);
  ls_engine *e = OPEN(dir);
  if (!e) return;
  ABSENT(e, 1, "a");
  ABSENT(e, 2, "a");
  CHECK_INT(ROWS(e, 1), 0);
  CHECK_INT(ROWS(e, 2), 0);
  CHECK_INT(ls_table_exists(e, 1), 1);
  CHECK_INT(ls_table_exists(e, 2), 1);
  CHECK_INT(ls_table_exists(e, 3), 0);
  ls_stats s = unit_stats(e);
  CHECK_U64(s.recovery_records, 0);
  CHECK_U64(s.recovery_segments, 0);
  CHECK_U64(s.records_live, 0);
  CHECK(s.write_seq > 41);
  CHECK_OK(e);
  ls_close(e);
}

/* One buffer, one transaction of three puts: all recovered exactly. */
static void test_one_buffer_three_puts(void) {
  const char *dir = new_dir(1);
  trec r[] = {
    PUT(1, "alpha", "one", 1, 0),
    PUT(1, "beta", "two-two", 2, 0),
    PUT(1, "gamma", "three-three-three", 3, END),
  };
  put_buf(dir, 0, 0, 1, r, NREC(r));
  ls_engine *e = OPEN(dir);
  if (!e) return;
  ROW_SEQ(e, 1, "alpha", "one", 1);
  ROW_SEQ(e, 1, "beta", "two-two", 2);
  ROW_SEQ(e, 1, "gamma", "three-three-three", 3);
  ABSENT(e, 2, "alpha");                        /* tables are separate */
  ABSENT(e, 1, "delta");
  CHECK_INT(ROWS(e, 1), 3);
  CHECK_INT(ROWS(e, 2), 0);
  ls_stats s = unit_stats(e);
  CHECK_U64(s.recovery_records, 3);
  CHECK_U64(s.recovery_segments, SPF);
  CHECK_U64(s.records_live, 3);
  CHECK(s.write_seq > 3);
  CHECK_OK(e);
  ls_close(e);
}

/* Records without END at the end of a buffer are an incomplete one-buffer
** transaction: not applied, and not completed by an END in the next
** buffer; the earlier complete transaction of the buffer is. */
static void test_incomplete_txn_not_applied(void) {
  const char *dir = new_dir(1);
  trec b0[] = {
    PUT(1, "a", "a-1", 1, 0),
    PUT(1, "b", "b-2", 2, END),
    PUT(1, "a", "a-3", 3, 0),                   /* incomplete: no END follows */
    PUT(1, "c", "c-4", 4, 0),
  };
  trec b1[] = {
    PUT(1, "d", "d-5", 5, 0),
    PUT(1, "e", "e-6", 6, END),
  };
  put_buf(dir, 0, 0, 1, b0, NREC(b0));
  put_buf(dir, 0, BLK, 1, b1, NREC(b1));
  ls_engine *e = OPEN(dir);
  if (!e) return;
  ROW_SEQ(e, 1, "a", "a-1", 1);
  ROW(e, 1, "b", "b-2");
  ABSENT(e, 1, "c");
  ROW(e, 1, "d", "d-5");
  ROW(e, 1, "e", "e-6");
  CHECK_INT(ROWS(e, 1), 4);
  CHECK_U64(unit_stats(e).recovery_records, 6);
  CHECK(unit_stats(e).write_seq > 6);
  CHECK_OK(e);
  ls_close(e);
}

/* A record cut short (data_size claims more than the valid records): the
** prefix of complete transactions is recovered, nothing after the cut. */
static void test_truncated_record(void) {
  trec r[] = {
    PUT(1, "a", "a-value", 1, 0),
    PUT(1, "b", "b-value", 2, END),
    PUT(1, "c", "c-value", 3, 0),
    PUT(1, "d", "d-value-long-enough-to-cut", 4, END),
    PUT(1, "e", "e-value", 5, END),             /* valid, but after the cut */
    PUT(1, "a", "a-newer", 6, END),
  };
  for (int variant = 0; variant < 4; variant++) {
    const char *dir = new_dir(1);
    uint8_t *img = calloc(1, SEG);
    uint32_t offs[NREC(r)];
    uint32_t len = build_buf(img, 1, r, NREC(r), offs);
    uint32_t d = offs[3];
    switch (variant) {
    case 0:                                     /* last 8 bytes of d's value zeroed */
      memset(img + d + covered(&r[3]) - 8, 0, 8);
      break;
    case 1:                                     /* everything from the middle of d on is zero */
      memset(img + d + 20, 0, len - d - 20);
      break;
    case 2:                                     /* data_size ends inside d's value */
      set_hdr_sizes(img, d + 32 - LS_BUF_HDR, 4);
      break;
    case 3:                                     /* d's header is garbage */
      memset(img + d + 4, 0xEE, 8);
      break;
    }
    put_bytes(dir, 0, 0, img, SEG);
    free(img);
    ls_engine *e = OPEN(dir);
    if (!e) continue;
    ROW(e, 1, "a", "a-value");
    ROW(e, 1, "b", "b-value");
    ABSENT(e, 1, "c");
    ABSENT(e, 1, "d");
    ABSENT(e, 1, "e");
    CHECK_INT(ROWS(e, 1), 2);
    CHECK_U64(unit_stats(e).recovery_records, 3);    /* a, b, c decode; d does not */
    CHECK_OK(e);
    ls_close(e);
  }
}

/* The rest of a segment after its last buffer is zeros (or, variant 1,
** garbage); a segment whose buffers fill it to the last block ends
** cleanly too. */
static void test_zero_tail(void) {
  for (int garbage = 0; garbage < 2; garbage++) {
    const char *dir = new_dir(1);
    uint8_t *img = calloc(1, SEG);
    if (garbage) {
      uint64_t x = 0x9E3779B97F4A7C15ull;
      for (uint32_t i = 0; i < SEG; i += 8) {
        x ^= x >> 12; x ^= x << 25; x ^= x >> 27;
        memcpy(img + i, &x, 8);
      }
    }
    trec s0a[] = { PUT(1, "k0", "v0", 1, 0), PUT(1, "k1", "v1", 2, END) };
    trec s0b[] = { PUT(1, "k2", "v2", 3, END) };
    uint8_t *tmp = calloc(1, SEG);
    uint32_t l = build_buf(tmp, 1, s0a, NREC(s0a), NULL);
    memset(img, 0, BLK);                        /* block 0 as the writer leaves it */
    memcpy(img, tmp, l);
    build_buf(img + BLK, 1, s0b, NREC(s0b), NULL);   /* the tail follows it */
    free(tmp);
    put_bytes(dir, 0, 0, img, SEG);
    free(img);
    char keys[4][16], vals[4][64];
    for (int b = 0; b < 4; b++) {               /* segment 1: one buffer in every block */
      snprintf(keys[b], sizeof keys[b], "f%d", b);
      snprintf(vals[b], sizeof vals[b], "full-segment-value-%d", b);
      trec r[] = { PUT(2, keys[b], vals[b], (uint64_t)(10 + b), END) };
      put_buf(dir, 1, (uint32_t)b * BLK, 2, r, 1);
    }
    ls_engine *e = OPEN(dir);
    if (!e) continue;
    ROW(e, 1, "k0", "v0");
    ROW(e, 1, "k1", "v1");
    ROW(e, 1, "k2", "v2");
    for (int b = 0; b < 4; b++) ROW(e, 2, keys[b], vals[b]);
    CHECK_INT(ROWS(e, 1), 3);
    CHECK_INT(ROWS(e, 2), 4);
    CHECK_U64(unit_stats(e).recovery_records, 7);
    CHECK_OK(e);
    ls_close(e);
  }
}

/* ------------------------------------------------------------------------
** Version resolution (H6).
*/

/* Versions of three keys spread over segments 0, 3 (file 0) and 6 (file
** 1), in all six orders of their write sequences.  K: puts 5, 7, 9 -> the
** seq-9 put.  D: puts 15, 17 and a delete 19 -> absent.  P: put 25,
** delete 27, put 29 -> the seq-29 put. */
static void test_version_resolution(void) {
  static const int perm[6][3] = { { 0, 1, 2 }, { 0, 2, 1 }, { 1, 0, 2 }, { 1, 2, 0 }, { 2, 0, 1 }, { 2, 1, 0 } };
  static const uint32_t segs[3] = { 0, 3, 6 };
  static const char *kv[3] = { "K-seq5", "K-seq7", "K-seq9" };
  static const char *pv[3] = { "P-seq25", NULL, "P-seq29" };
  for (int p = 0; p < 6; p++) {
    const char *dir = new_dir(2);
    for (int i = 0; i < 3; i++) {
      int v = perm[p][i];                       /* version v goes to segment segs[i] */
      trec r[3];
      r[0] = (trec)PUT(1, "K", kv[v], (uint64_t)(5 + 2 * v), END);
      r[1] = v == 2 ? (trec)DEL(1, "D", 19, END) : (trec)PUT(1, "D", "D-live", (uint64_t)(15 + 2 * v), END);
      r[2] = v == 1 ? (trec)DEL(1, "P", 27, END) : (trec)PUT(1, "P", pv[v], (uint64_t)(25 + 2 * v), END);
      put_buf(dir, segs[i], 0, (uint64_t)(100 + i), r, 3);
    }
    ls_engine *e = OPEN(dir);
    if (!e) continue;
    int before = unit_failed_checks;
    ROW_SEQ(e, 1, "K", "K-seq9", 9);
    ABSENT(e, 1, "D");
    ROW_SEQ(e, 1, "P", "P-seq29", 29);
    CHECK_INT(ROWS(e, 1), 2);
    CHECK(unit_stats(e).write_seq > 29);
    CHECK_OK(e);
    if (unit_failed_checks != before)
      printf("     (segments 0, 3, 6 hold versions %d, %d, %d)\n", perm[p][0], perm[p][1], perm[p][2]);
    ls_close(e);
  }

  /* Versions out of order inside one buffer, and a delete with the
  ** highest sequence scanned first. */
  const char *dir = new_dir(1);
  trec r0[] = {
    PUT(1, "M", "M-seq9", 9, END), PUT(1, "M", "M-seq5", 5, END),
    DEL(1, "T", 12, END), PUT(1, "T", "T-seq11", 11, END),
  };
  trec r1[] = { PUT(1, "M", "M-seq7", 7, END), PUT(1, "T", "T-seq10", 10, END) };
  put_buf(dir, 0, 0, 1, r0, NREC(r0));
  put_buf(dir, 1, 0, 2, r1, NREC(r1));
  ls_engine *e = OPEN(dir);
  if (!e) return;
  ROW_SEQ(e, 1, "M", "M-seq9", 9);
  ABSENT(e, 1, "T");
  CHECK_INT(ROWS(e, 1), 1);
  CHECK_OK(e);
  ls_close(e);
}

/* Two copies with the same sequence (a relocated copy in a group segment,
** left by a crash before the original's segment was freed) are the same
** version: that value, and the accounting counts one of them.  Both scan
** orders; plus a duplicated delete over an older put. */
static void test_equal_seq_copies(void) {
  for (int order = 0; order < 2; order++) {
    const char *dir = new_dir(2);
    trec orig[] = { PUT(1, "K", "K-v9", 9, END), DEL(1, "G", 12, END), PUT(1, "L", "L-v13", 13, END) };
    trec copy[] = { PUT(1, "K", "K-v9", 9, END), DEL(1, "G", 12, END) };
    trec older[] = { PUT(1, "K", "K-v4", 4, END), PUT(1, "G", "G-v3", 3, END) };
    uint8_t *p = calloc(1, SEG);
    uint32_t len = build_buf_ex(p, 30, LS_KIND_GROUP, 0, 1, 0, copy, NREC(copy), NULL);
    put_bytes(dir, order ? 1 : 5, 0, p, len);                /* the copy: group segment */
    free(p);
    put_buf(dir, order ? 5 : 1, 0, 20, orig, NREC(orig));     /* the original: mixed */
    put_buf(dir, 2, 0, 10, older, NREC(older));
    ls_engine *e = OPEN(dir);
    if (!e) continue;
    ROW_SEQ(e, 1, "K", "K-v9", 9);
    ABSENT(e, 1, "G");
    ROW(e, 1, "L", "L-v13");
    CHECK_INT(ROWS(e, 1), 2);
    CHECK_OK(e);
    /* A new version still wins after a restart. */
    CHECK_RC(commit_one(e, 1, "K", "K-new"), LS_OK);
    ls_close(e);
    e = OPEN(dir);
    if (!e) continue;
    ROW(e, 1, "K", "K-new");
    ABSENT(e, 1, "G");
    CHECK_OK(e);
    ls_close(e);
  }
}

typedef struct seg_seen {
  uint32_t n;
  char state[16][8];
  uint64_t seq[16];
} seg_seen;

static int note_seg(void *arg, const ls_segment_info *si) {
  seg_seen *s = arg;
  if (si->id < 16) {
    snprintf(s->state[si->id], sizeof s->state[si->id], "%s", si->state);
    s->seq[si->id] = si->seq;
  }
  s->n++;
  return 0;
}

/* ------------------------------------------------------------------------
** Transactions written in several buffers (H11).
*/

/* CONT records in segments 1 and 2, the COMMIT after the last one: the
** whole transaction is applied. */
static void test_multibuf_committed(void) {
  const char *dir = new_dir(1);
  trec s0[] = { PUT(1, "m1", "m1-old", 5, END) };
  trec s1[] = { PUT(1, "pre", "pre-v", 9, END), PUT(1, "m1", "m1-v", 10, CONT), PUT(1, "m2", "m2-v", 11, CONT) };
  trec s2[] = { PUT(1, "m3", "m3-v", 12, CONT), DEL(2, "gone", 13, CONT), COMMIT(10, 14) };
  trec s3[] = { PUT(2, "gone", "gone-v", 3, END) };
  put_buf(dir, 0, 0, 1, s0, NREC(s0));
  put_buf(dir, 1, 0, 20, s1, NREC(s1));
  put_buf(dir, 2, 0, 21, s2, NREC(s2));
  put_buf(dir, 3, 0, 2, s3, NREC(s3));
  ls_engine *e = OPEN(dir);
  if (!e) return;
  ROW(e, 1, "pre", "pre-v");
  ROW_SEQ(e, 1, "m1", "m1-v", 10);
  ROW(e, 1, "m2", "m2-v");
  ROW(e, 1, "m3", "m3-v");
  ABSENT(e, 2, "gone");
  CHECK_INT(ROWS(e, 1), 4);
  CHECK_INT(ROWS(e, 2), 0);
  CHECK(unit_stats(e).write_seq > 14);
  CHECK_OK(e);
  ls_close(e);
}

/* The same transaction without its COMMIT record: nothing of it. */
static void test_multibuf_no_commit(void) {
  const char *dir = new_dir(1);
  trec s0[] = { PUT(1, "m1", "m1-old", 5, END) };
  trec s1[] = { PUT(1, "pre", "pre-v", 9, END), PUT(1, "m1", "m1-v", 10, CONT), PUT(1, "m2", "m2-v", 11, CONT) };
  trec s2[] = { PUT(1, "m3", "m3-v", 12, CONT), DEL(2, "gone", 13, CONT) };
  trec s3[] = { PUT(2, "gone", "gone-v", 3, END) };
  put_buf(dir, 0, 0, 1, s0, NREC(s0));
  put_buf(dir, 1, 0, 20, s1, NREC(s1));
  put_buf(dir, 2, 0, 21, s2, NREC(s2));
  put_buf(dir, 3, 0, 2, s3, NREC(s3));
  ls_engine *e = OPEN(dir);
  if (!e) return;
  ROW(e, 1, "pre", "pre-v");
  ROW_SEQ(e, 1, "m1", "m1-old", 5);
  ABSENT(e, 1, "m2");
  ABSENT(e, 1, "m3");
  ROW(e, 2, "gone", "gone-v");
  CHECK_INT(ROWS(e, 1), 2);
  CHECK_INT(ROWS(e, 2), 1);
  /* Its sequences are used up all the same: a new transaction must not
  ** reuse them (a COMMIT naming them would revive these records). */
  CHECK(unit_stats(e).write_seq > 13);
  CHECK_OK(e);
  ls_close(e);
}

/* The COMMIT in a segment with a lower id (and another file) than the
** records it commits; and two streams side by side, only one committed. */
static void test_multibuf_commit_lower_segment(void) {
  const char *dir = new_dir(2);
  trec s0[] = { PUT(1, "one", "one-v", 20, END), COMMIT(40, 44) };
  trec s5[] = {
    PUT(1, "u1", "u1-v", 30, CONT), PUT(1, "u2", "u2-v", 31, CONT),    /* never committed */
    PUT(1, "c1", "c1-v", 40, CONT), PUT(1, "c2", "c2-v", 41, CONT),
  };
  trec s6[] = { PUT(1, "u3", "u3-v", 32, CONT), PUT(1, "c3", "c3-v", 42, CONT), PUT(1, "c4", "c4-v", 43, CONT) };
  put_buf(dir, 0, 0, 50, s0, NREC(s0));
  put_buf(dir, 5, 0, 48, s5, NREC(s5));
  put_buf(dir, 6, 0, 49, s6, NREC(s6));
  ls_engine *e = OPEN(dir);
  if (!e) return;
  ROW(e, 1, "one", "one-v");
  ROW(e, 1, "c1", "c1-v");
  ROW(e, 1, "c2", "c2-v");
  ROW(e, 1, "c3", "c3-v");
  ROW_SEQ(e, 1, "c4", "c4-v", 43);
  ABSENT(e, 1, "u1");
  ABSENT(e, 1, "u2");
  ABSENT(e, 1, "u3");
  CHECK_INT(ROWS(e, 1), 5);
  CHECK(unit_stats(e).write_seq > 44);
  CHECK_OK(e);
  ls_close(e);
}

static int seg_state_is(ls_engine *e, uint32_t id, const char *state) {
  seg_seen ss;
  memset(&ss, 0, sizeof ss);
  if (ls_segment_foreach(e, note_seg, &ss) != LS_OK || id >= 16) return 0;
  return !strcmp(ss.state[id], state);
}

/* A COMMIT record is no index entry, so the segment holding it may have
** no live record at all while the CONT records it commits are live
** elsewhere.  That segment must not be freed and overwritten, or the next
** recovery loses the committed transaction.  Variant 0: segment 2 holds
** only the COMMIT; variant 1: also a row, overwritten after the open.
** Enough is written afterwards to cycle through every free segment. */
static void test_commit_segment_kept(void) {
  for (int variant = 0; variant < 2; variant++) {
    const char *dir = new_dir(1);
    trec s1[] = { PUT(1, "m1", "m1-v", 10, CONT), PUT(1, "m2", "m2-v", 11, CONT) };
    trec s2a[] = { COMMIT(10, 12) };
    trec s2b[] = { COMMIT(10, 12), PUT(1, "x", "x-old", 13, END) };
    put_buf(dir, 1, 0, 20, s1, NREC(s1));
    if (variant == 0) put_buf(dir, 2, 0, 21, s2a, NREC(s2a));
    else put_buf(dir, 2, 0, 21, s2b, NREC(s2b));
    ls_engine *e = OPEN(dir);
    if (!e) continue;
    ROW(e, 1, "m1", "m1-v");
    ROW(e, 1, "m2", "m2-v");
    if (!seg_state_is(e, 2, "sealed"))
      unit_fail(__FILE__, __LINE__, "variant %d: segment 2, holding the only COMMIT of live records, is not "
                "sealed after recovery", variant);
    if (variant == 1) CHECK_RC(commit_one(e, 1, "x", "x-new"), LS_OK);
    static char big[1001];
    memset(big, 'w', 1000);
    for (int i = 0; i < 64; i++) {
      char k[16];
      snprintf(k, sizeof k, "w%02d", i);
      CHECK_RC(commit_one(e, 2, k, big), LS_OK);
    }
    CHECK_OK(e);
    ls_close(e);
    e = OPEN(dir);
    if (!e) continue;
    int before = unit_failed_checks;
    ROW(e, 1, "m1", "m1-v");
    ROW(e, 1, "m2", "m2-v");
    if (variant == 1) ROW(e, 1, "x", "x-new");
    CHECK_INT(ROWS(e, 2), 64);
    CHECK_OK(e);
    if (unit_failed_checks != before) printf("     (variant %d)\n", variant);
    ls_close(e);
  }
}

/* ------------------------------------------------------------------------
** Catalog: dropped tables and truncation points.
*/
static void test_dropped_and_truncated(void) {
  const char *dir = unit_tmpdir();
  /* Table 3 was dropped (absent, below next_table 4); table 2 was
  ** truncated at sequence 20. */
  static const ls_mtable tables[] = { { 1, 1, 0, "t1", 0 }, { 2, 1, 20, "t2", 0 } };
  write_manifest(dir, 20, 4, tables, 2);
  make_file(dir, 0, FILE_SIZE);
  trec r0[] = {
    PUT(3, "d", "dropped", 5, 0), PUT(1, "d", "t1-d", 4, END),
    PUT(2, "x", "x-19", 19, END), PUT(2, "y", "y-20", 20, END), PUT(2, "z", "z-21", 21, END),
  };
  trec r1[] = {
    PUT(2, "w", "w-15", 15, END), PUT(2, "w", "w-22", 22, END),
    PUT(2, "u", "u-25", 25, END), PUT(2, "u", "u-18", 18, END),
    PUT(2, "q", "q-18", 18, 0), DEL(2, "y", 9, END),
    PUT(3, "e", "dropped-too", 23, END),
  };
  put_buf(dir, 0, 0, 1, r0, NREC(r0));
  put_buf(dir, 1, 0, 2, r1, NREC(r1));
  ls_engine *e = OPEN(dir);
  if (!e) return;
  ROW(e, 1, "d", "t1-d");
  ABSENT(e, 2, "x");
  ROW(e, 2, "y", "y-20");
  ROW(e, 2, "z", "z-21");
  ROW(e, 2, "w", "w-22");
  ROW(e, 2, "u", "u-25");
  ABSENT(e, 2, "q");
  CHECK_INT(ls_table_exists(e, 3), 0);
  CHECK_INT(ROWS(e, 1), 1);
  CHECK_INT(ROWS(e, 2), 4);
  ls_table_info ti;
  CHECK_RC(ls_table_info_get(e, 2, &ti), LS_OK);
  CHECK_U64(ti.rows, 4);
  ls_stats s = unit_stats(e);
  CHECK_U64(s.records_live, 5);                 /* nothing of table 3, nothing below 20 */
  CHECK_U64(s.recovery_records, 12);
  CHECK(s.write_seq > 25);
  CHECK_OK(e);
  /* A new table gets an id never used: not the dropped 3. */
  uint32_t id = 0;
  CHECK_RC(ls_table_create(e, "fresh", 1, &id), LS_OK);
  CHECK_INT(id, 4);
  ls_key k;
  ls_key_set(&k, "d", 1);
  ls_value v;
  memset(&v, 0, sizeof v);
  CHECK_RC(ls_get(e, 4, &k, &v), LS_NOTFOUND);
  ls_value_free(&v);
  ls_close(e);
}

/* ------------------------------------------------------------------------
** Sequences after recovery (H6).
*/

/* Open dir, check write_seq > above, commit a new version of "a", reopen
** and check that it won over what was on disk. */
static void seq_case(int line, const char *dir, uint64_t above, int strict) {
  ls_engine *e = open_at(__FILE__, line, dir);
  if (!e) return;
  ls_stats s = unit_stats(e);
  if (strict ? s.write_seq <= above : s.write_seq < above)
    unit_fail(__FILE__, line, "write_seq %" PRIu64 " is not %s %" PRIu64, s.write_seq, strict ? "above" : "at least",
              above);
  int rc = commit_one(e, 1, "a", "a-after-restart");
  if (rc) unit_fail(__FILE__, line, "commit: %d (%s)", rc, ls_errmsg());
  ls_key k;
  ls_key_set(&k, "a", 1);
  ls_value v;
  memset(&v, 0, sizeof v);
  rc = ls_get(e, 1, &k, &v);
  if (rc || (strict ? v.seq <= above : v.seq < above))
    unit_fail(__FILE__, line, "new version: rc %d, seq %" PRIu64 " (must be beyond %" PRIu64 ")", rc, v.seq, above);
  ls_value_free(&v);
  ls_close(e);
  e = open_at(__FILE__, line, dir);
  if (!e) return;
  row_at(__FILE__, line, e, 1, "a", "a-after-restart", 0);
  check_at(__FILE__, line, e, NULL);
  ls_close(e);
}

static void test_sequences_continue(void) {
  /* Highest sequence in a record. */
  const char *dir = new_dir(1);
  trec r[] = { PUT(1, "a", "a-57", 57, 0), PUT(1, "b", "b-12", 12, END) };
  put_buf(dir, 0, 0, 1, r, NREC(r));
  seq_case(__LINE__, dir, 57, 1);

  /* Highest sequence only in a header's max_seq (the records with the
  ** highest sequences were collected since). */
  dir = new_dir(1);
  uint8_t *p = calloc(1, SEG);
  uint32_t len = build_buf_ex(p, 1, LS_KIND_MIXED, 1000, 0, 0, r, NREC(r), NULL);
  put_bytes(dir, 0, 0, p, len);
  seq_case(__LINE__, dir, 1000, 1);

  /* ... in the max_seq of a later buffer of the segment. */
  dir = new_dir(1);
  trec r2[] = { PUT(1, "c", "c-58", 58, END) };
  memset(p, 0, SEG);
  len = build_buf_ex(p, 1, LS_KIND_MIXED, 2000, 0, 0, r2, 1, NULL);
  put_buf(dir, 0, 0, 1, r, NREC(r));
  put_bytes(dir, 0, BLK, p, len);
  seq_case(__LINE__, dir, 2000, 1);

  /* ... in the max_seq of a free marker. */
  dir = new_dir(1);
  put_buf(dir, 0, 0, 1, r, NREC(r));
  memset(p, 0, SEG);
  build_free_marker(p, 2, 3000);
  put_bytes(dir, 1, 0, p, LS_BUF_HDR);
  seq_case(__LINE__, dir, 3000, 1);

  /* ... only in the manifest's seq_floor. */
  dir = new_dir_floor(1, 5000);
  put_buf(dir, 0, 0, 1, r, NREC(r));
  seq_case(__LINE__, dir, 5000, 1);

  /* ... in records that recovery does not apply: an uncommitted stream,
  ** a transaction without END, a dropped table.  Their headers' max_seq
  ** is set below them (the writer never does that) so that the record
  ** sequences alone must carry the rule. */
  dir = new_dir(1);
  trec r3[] = { PUT(1, "a", "a-57", 57, END), PUT(1, "s", "s-700", 700, CONT), PUT(1, "t", "t-702", 702, CONT) };
  memset(p, 0, SEG);
  len = build_buf_ex(p, 1, LS_KIND_MIXED, 57, 0, 0, r3, NREC(r3), NULL);
  put_bytes(dir, 0, 0, p, len);
  seq_case(__LINE__, dir, 702, 1);
  dir = new_dir(1);
  trec r4[] = { PUT(1, "a", "a-57", 57, END), PUT(1, "s", "s-800", 800, 0) };
  memset(p, 0, SEG);
  len = build_buf_ex(p, 1, LS_KIND_MIXED, 57, 0, 0, r4, NREC(r4), NULL);
  put_bytes(dir, 0, 0, p, len);
  seq_case(__LINE__, dir, 800, 1);
  dir = new_dir(1);
  trec r5[] = { PUT(1, "a", "a-57", 57, END), PUT(9, "s", "s-900", 900, END) };
  memset(p, 0, SEG);
  len = build_buf_ex(p, 1, LS_KIND_MIXED, 57, 0, 0, r5, NREC(r5), NULL);
  put_bytes(dir, 0, 0, p, len);
  seq_case(__LINE__, dir, 900, 1);

  /* A truncation point above every record: records from it on are kept,
  ** so new writes may start at it. */
  dir = unit_tmpdir();
  static const ls_mtable tt[] = { { 1, 1, 600, "t1", 0 }, { 2, 1, 0, "t2", 0 } };
  write_manifest(dir, 0, 3, tt, 2);
  make_file(dir, 0, FILE_SIZE);
  trec r6[] = { PUT(2, "a", "a-57", 57, END) };
  put_buf(dir, 0, 0, 1, r6, NREC(r6));
  seq_case(__LINE__, dir, 600, 0);
  free(p);
}

/* ------------------------------------------------------------------------
** Free markers and segment sequences.
*/

/* A free marker at offset 0 makes its segment free (stale buffers after
** it are ignored); its seg_seq still counts: a new segment gets a higher
** one, checked in memory and in the header it writes on disk. */
static void test_free_marker(void) {
  const char *dir = new_dir(1);
  uint8_t *img = calloc(1, SEG);
  build_free_marker(img, 50, 0);
  trec stale[] = { PUT(1, "stale", "stale-v", 8, END) };
  build_buf(img + BLK, 7, stale, 1, NULL);
  put_bytes(dir, 0, 0, img, SEG);
  trec live[] = { PUT(1, "live", "live-v", 10, END) };
  put_buf(dir, 1, 0, 3, live, 1);
  ls_engine *e = OPEN(dir);
  if (!e) { free(img); return; }
  ROW(e, 1, "live", "live-v");
  ABSENT(e, 1, "stale");
  seg_seen ss;
  memset(&ss, 0, sizeof ss);
  CHECK_RC(ls_segment_foreach(e, note_seg, &ss), LS_OK);
  CHECK(!strcmp(ss.state[0], "free"));
  CHECK(!strcmp(ss.state[1], "sealed"));
  CHECK_U64(ss.seq[1], 3);
  CHECK_RC(commit_one(e, 1, "new", "new-v"), LS_OK);
  memset(&ss, 0, sizeof ss);
  CHECK_RC(ls_segment_foreach(e, note_seg, &ss), LS_OK);
  int active = -1;
  for (uint32_t i = 0; i < ss.n && i < 16; i++)
    if (!strcmp(ss.state[i], "active")) active = (int)i;
  CHECK(active >= 0);
  if (active >= 0) CHECK(ss.seq[active] > 50);
  CHECK_OK(e);
  ls_close(e);

  /* On disk: the headers of the segments written since (the mixed one,
  ** and the group segment its row was separated into at close). */
  int found = 0;
  for (uint32_t s = 0; s < 16 && get_seg(dir, s, img); s++) {
    ls_bufhdr h;
    if (!ls_bufhdr_decode(img, &h) || h.kind == LS_KIND_FREE || h.seg_seq == 3) continue;
    found++;
    if (h.seg_seq <= 50)
      unit_fail(__FILE__, __LINE__, "segment %u was written with seg_seq %" PRIu64 ", not above the free "
                "marker's 50", s, h.seg_seq);
    CHECK(h.kind == LS_KIND_MIXED || h.kind == LS_KIND_GROUP);
  }
  CHECK(found >= 1);
  free(img);

  e = OPEN(dir);
  if (!e) return;
  ROW(e, 1, "live", "live-v");
  ROW(e, 1, "new", "new-v");
  ABSENT(e, 1, "stale");
  CHECK_INT(ROWS(e, 1), 2);
  CHECK_OK(e);
  ls_close(e);
}


int main(void) {
  RUN(test_empty_manifest_only);
  RUN(test_one_buffer_three_puts);
  RUN(test_incomplete_txn_not_applied);
  RUN(test_truncated_record);
  RUN(test_zero_tail);
  RUN(test_version_resolution);
  RUN(test_equal_seq_copies);
  RUN(test_multibuf_committed);
  RUN(test_multibuf_no_commit);
  RUN(test_multibuf_commit_lower_segment);
  RUN(test_commit_segment_kept);
  RUN(test_dropped_and_truncated);
  RUN(test_sequences_continue);
  RUN(test_free_marker);
  return unit_finish();
}
