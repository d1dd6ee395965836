/*
** test_compaction.c -- the cleaner: separation into compaction groups and
** adoption, compaction under overwrite loops far larger than the disk and
** its policies, tombstones that must not bring deleted rows back, bounded
** steps, space returned and the space target.  Races, faults and a full
** disk are in test_cleaning.c.  (Also run under ThreadSanitizer.)
*/
#define UNIT_ROWS
#include "unit.h"
#include "catalog.h"
#include "cleaner.h"
#include "cleaner_int.h"
#include "writer.h"

#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---------------------------------------------------------------------------
** Overwrite loops writing ten times the disk keep every latest value; the
** cleaner had to compact (a third of the disk is live), under each policy.
*/

#define OW_KEYS 600
#define OW_VAL 2000

static void overwrite_loop(int policy) {
  const char *dir = unit_tmpdir();
  ls_engine *e = unit_open(dir, 64 * KB, 1024 * KB, 4096 * KB, 0, policy);
  if (!e) return;
  uint32_t t;
  CHECK_RC(ls_table_create(e, "ow", 1, &t), LS_OK);
  uint64_t rnd = unit_seed("overwrite loop");
  long *ver = calloc(OW_KEYS, sizeof *ver);
  char val[OW_VAL], kb[32];
  uint64_t user = 0, goal = 10ull * 4096 * KB;
  long txns = 0;
  int rc = LS_OK;
  while (user < goal && rc == LS_OK) {
    /* Mostly batches; now and then single-row commits. */
    int rows = txns % 7 == 3 ? 1 : 1 + (int)(unit_rand(&rnd) % 40);
    ls_txn *x;
    CHECK_RC(ls_txn_begin(e, &x), LS_OK);
    int ks[64];
    for (int i = 0; i < rows; i++) {
      int k = (int)(unit_rand(&rnd) % OW_KEYS);
      ks[i] = k;
      snprintf(kb, sizeof kb, "ow%d", k);
      ls_key key;
      ls_key_set(&key, kb, (uint32_t)strlen(kb));
      fill(val, OW_VAL, k, txns);
      CHECK_RC(ls_txn_put(x, t, &key, val, OW_VAL), LS_OK);
    }
    rc = ls_txn_commit(x);
    ls_txn_free(x);
    if (rc == LS_OK)
      for (int i = 0; i < rows; i++) ver[ks[i]] = txns + 1;
    user += (uint64_t)rows * OW_VAL;
    txns++;
  }
  CHECK_RC(rc, LS_OK);
  ls_stats s = unit_stats(e);
  CHECK(s.user_bytes_written >= goal * 9 / 10);   /* rows written twice in a txn count once */
  CHECK(s.segments_compacted > 0);
  CHECK(s.separator_bytes_written > 0);
  CHECK_INT(s.failed, 0);
  for (int pass = 0; pass < 2; pass++) {
    int bad = 0;
    for (int k = 0; k < OW_KEYS; k++) {
      snprintf(kb, sizeof kb, "ow%d", k);
      if (ver[k]) fill(val, OW_VAL, k, ver[k] - 1);
      if (!is(e, t, kb, ver[k] ? val : NULL, OW_VAL) && bad++ < 5)
        unit_fail(__FILE__, __LINE__, "pass %d: key %s does not hold version %ld", pass, kb, ver[k] - 1);
    }
    unit_check_ok(e);
    ls_close(e);
    if (pass == 0) e = reopen(dir, 0);
    if (!e) break;
  }
  free(ver);
}

static void test_overwrite_cost_benefit(void) { overwrite_loop(LS_POLICY_COST_BENEFIT); }
static void test_overwrite_greedy(void) { overwrite_loop(LS_POLICY_GREEDY); }
static void test_overwrite_lfs(void) { overwrite_loop(LS_POLICY_LFS); }

/* ---------------------------------------------------------------------------
** The default policy's order.  Segments whose rows die at one rate (uniform
** writes) go in greedy's order, emptiest first, whatever their age; of two
** equally full segments the one whose rows die more slowly goes first; a
** segment of hot rows is left to empty by itself while a cold one nearly as
** full as it was is still worth less than one of cold rows at two thirds.
** LFS's rule, by contrast, takes the older of two equally full segments
** whatever their rates.
*/

static void test_policy_order(void) {
  const int cb = LS_POLICY_COST_BENEFIT;
  const uint64_t now = 1000000;
  /* One rate (u = exp(-t/200000)) at three ages: the emptiest first. */
  double rate = 1.0 / 200000;
  double s1 = cleaner_score(cb, exp(-rate * 50000), 1, now, now - 50000, now - 50000);
  double s2 = cleaner_score(cb, exp(-rate * 150000), 1, now, now - 150000, now - 150000);
  double s3 = cleaner_score(cb, exp(-rate * 400000), 1, now, now - 400000, now - 400000);
  CHECK(s3 > s2 && s2 > s1);
  /* Greedy agrees.  A full segment frees nothing: it never outscores a
  ** segment with room to free, however old. */
  CHECK(cleaner_score(LS_POLICY_GREEDY, 0.2, 1, now, 0, 0) > cleaner_score(LS_POLICY_GREEDY, 0.3, 1, now, 0, 0));
  CHECK(cleaner_score(cb, 1, 1, now, 1, 1) < cleaner_score(cb, 0.95, 1, now, now - 1000, now - 1000));
  /* Equally full (u 0.5): emptied over 900000 writes beats over 10000. */
  double slow = cleaner_score(cb, 0.5, 1, now, now - 900000, now - 900000);
  double fast = cleaner_score(cb, 0.5, 1, now, now - 10000, now - 10000);
  CHECK(slow > fast);
  /* A hot segment at u 0.3 after 5000 writes waits; a cold one at 0.6 after
  ** 800000 goes first.  Greedy would take the hot one. */
  double hot = cleaner_score(cb, 0.3, 1, now, now - 5000, now - 5000);
  double cold = cleaner_score(cb, 0.6, 1, now, now - 800000, now - 800000);
  CHECK(cold > hot);
  CHECK(cleaner_score(LS_POLICY_GREEDY, 0.3, 1, now, 0, 0) > cleaner_score(LS_POLICY_GREEDY, 0.6, 1, now, 0, 0));
  /* Rates count from when the segment was written (born), not from its
  ** youngest row: a compaction output of old rows written 5000 ago that
  ** already lost half is hot. */
  double copied = cleaner_score(cb, 0.5, 1, now, now - 5000, now - 900000);
  CHECK(copied < slow);
  /* A segment written part-full (u0 0.5) that lost nothing is not taken
  ** for a dying one. */
  CHECK(cleaner_score(cb, 0.5, 0.5, now, now - 900000, now - 900000) > 0);
  CHECK(cleaner_score(cb, 0.5, 0.5, now, now - 10000, now - 10000) < slow);
  /* LFS: older first at equal u, rates aside. */
  CHECK(cleaner_score(LS_POLICY_LFS, 0.5, 1, now, now - 10000, now - 900000) >
        cleaner_score(LS_POLICY_LFS, 0.5, 1, now, now - 900000, now - 10000));
}

/* ---------------------------------------------------------------------------
** The modelled engine's test_compaction: ten keys of about 120 KiB (a
** record per segment), then five writes of one more key.  The four dead
** segments are freed (here as soon as their record dies), compaction
** leaves exactly one segment per live row and no mixed segment.
*/
static void test_scylla_compaction(void) {
  const char *dir = unit_tmpdir();
  ls_engine *e = unit_open(dir, 128 * KB, 1024 * KB, 0, 0, 0);
  if (!e) return;
  uint32_t t;
  CHECK_RC(ls_table_create(e, "big", 1, &t), LS_OK);
  uint32_t len = 120 * KB;
  char *val = malloc(len), kb[16];
  for (int k = 0; k < 10; k++) {
    snprintf(kb, sizeof kb, "%d", k);
    fill(val, len, k, 0);
    CHECK_RC(unit_put(e, t, kb, val, len), LS_OK);
  }
  for (int i = 0; i < 5; i++) {
    fill(val, len, 100, i);
    CHECK_RC(unit_put(e, t, "100", val, len), LS_OK);
  }
  uint64_t freed = 0;
  CHECK_RC(ls_compact(e, t, &freed), LS_OK);
  segcount c = segments(e, t);
  CHECK_INT(c.table_segs, 11);
  CHECK_INT(c.table_single, 11);
  CHECK_INT(c.mixed, 0);
  CHECK_INT(c.used, 11);
  ls_stats s = unit_stats(e);
  CHECK(s.segments_freed >= 4);
  for (int k = 0; k < 10; k++) {
    snprintf(kb, sizeof kb, "%d", k);
    fill(val, len, k, 0);
    CHECK(is(e, t, kb, val, len));
  }
  fill(val, len, 100, 4);
  CHECK(is(e, t, "100", val, len));
  unit_check_ok(e);
  ls_close(e);
  e = reopen(dir, 0);
  if (e) {
    CHECK(is(e, t, "100", val, len));
    c = segments(e, t);
    CHECK_INT(c.used, 11);
    unit_check_ok(e);
    ls_close(e);
  }
  free(val);
}

/* ---------------------------------------------------------------------------
** Separation: two tables (one of four groups) written interleaved.  After
** ls_flush every record lives in a group segment of its own table and
** group, and no mixed segment is left.
*/

typedef struct owner_ctx { ls_engine *e; ls_table *t; int bad; } owner_ctx;

static int check_owner(void *arg, const idx_entry *en, uint64_t seq) {
  owner_ctx *x = arg;
  LS_UNUSED(seq);
  ls_seg *d = seg_get(&x->e->sm, loc_seg(en->word));
  uint32_t g = cat_group_of(en->hi, x->t->groups);
  if (d->kind != LS_KIND_GROUP || d->table != x->t->id || d->group != g) {
    if (x->bad++ < 3)
      unit_fail(__FILE__, __LINE__, "table %u group %u: a record lives in segment %u (kind %u, table %u, group %u)",
                x->t->id, g, loc_seg(en->word), d->kind, d->table, d->group);
  }
  return 0;
}

static void check_owners(ls_engine *e, uint32_t id) {
  owner_ctx x = { e, NULL, 0 };
  unsigned g = ls_guard_enter(&e->guard);
  x.t = cat_table(e, id);
  if (x.t) {
    pthread_rwlock_rdlock(&x.t->lock);
    idx_foreach(x.t->idx, check_owner, &x);
    pthread_rwlock_unlock(&x.t->lock);
  }
  ls_guard_leave(&e->guard, g);
  CHECK(x.t != NULL);
}

static void test_separation(void) {
  const char *dir = unit_tmpdir();
  ls_engine *e = unit_open(dir, 16 * KB, 256 * KB, 0, 1, 0);
  if (!e) return;
  uint32_t a, b;
  CHECK_RC(ls_table_create(e, "a", 1, &a), LS_OK);
  CHECK_RC(ls_table_create(e, "b", 4, &b), LS_OK);
  char kb[32], val[300];
  for (int i = 0; i < 400; i++) {
    ls_txn *x;
    CHECK_RC(ls_txn_begin(e, &x), LS_OK);
    for (int j = 0; j < 3; j++) {
      int k = i * 3 + j;
      snprintf(kb, sizeof kb, "r%d", k);
      ls_key key;
      ls_key_set(&key, kb, (uint32_t)strlen(kb));
      fill(val, sizeof val, k, 0);
      CHECK_RC(ls_txn_put(x, j == 1 ? a : b, &key, val, sizeof val), LS_OK);
    }
    CHECK_RC(ls_txn_commit(x), LS_OK);
    ls_txn_free(x);
  }
  CHECK(segments(e, 0).mixed > 10);
  uint64_t freed = 0;
  CHECK_RC(ls_flush(e, a, &freed), LS_OK);
  CHECK(freed > 10);
  segcount c = segments(e, 0);
  CHECK_INT(c.mixed, 0);
  CHECK(c.group >= 5);
  check_owners(e, a);
  check_owners(e, b);
  ls_stats s = unit_stats(e);
  CHECK_U64(s.separator_records_relocated, 1200);
  CHECK_U64(s.mixed_segments, 0);
  CHECK(s.segments_freed_by_separator > 10);
  unit_check_ok(e);
  ls_close(e);
  e = reopen(dir, 1);
  if (!e) return;
  for (int k = 0; k < 1200; k++) {
    snprintf(kb, sizeof kb, "r%d", k);
    fill(val, sizeof val, k, 0);
    if (!is(e, k % 3 == 1 ? a : b, kb, val, sizeof val)) unit_fail(__FILE__, __LINE__, "row %s lost", kb);
  }
  check_owners(e, a);
  check_owners(e, b);
  unit_check_ok(e);
  ls_close(e);
}

/* Mixed segments left at a close are separated after the next open. */
static void test_recover_mixed(void) {
  const char *dir = unit_tmpdir();
  ls_engine *e = unit_open(dir, 16 * KB, 256 * KB, 0, 1, 0);
  if (!e) return;
  uint32_t a, b;
  CHECK_RC(ls_table_create(e, "a", 2, &a), LS_OK);
  CHECK_RC(ls_table_create(e, "b", 1, &b), LS_OK);
  char kb[32], val[200];
  for (int k = 0; k < 600; k++) {
    snprintf(kb, sizeof kb, "m%d", k);
    fill(val, sizeof val, k, 1);
    CHECK_RC(unit_put(e, k % 2 ? a : b, kb, val, sizeof val), LS_OK);
  }
  CHECK(segments(e, 0).mixed > 5);
  ls_close(e);                     /* manual: nothing separated */
  e = reopen(dir, 1);
  if (!e) return;
  CHECK(segments(e, 0).mixed > 5);
  for (int k = 0; k < 600; k++) {
    snprintf(kb, sizeof kb, "m%d", k);
    fill(val, sizeof val, k, 1);
    CHECK(is(e, k % 2 ? a : b, kb, val, sizeof val));
  }
  uint64_t freed;
  CHECK_RC(ls_flush(e, 0, &freed), LS_OK);
  CHECK_INT(segments(e, 0).mixed, 0);
  check_owners(e, a);
  check_owners(e, b);
  unit_check_ok(e);
  ls_close(e);
}

/* ---------------------------------------------------------------------------
** Tombstones.  (a) The bitcask#82 order: puts in one segment, their
** deletes in another, compaction of the deletes' segment only, restart:
** nothing comes back -- the deletes are kept while the puts' segment (or
** its freed but still readable slot) exists.  Once that slot holds new
** data, compaction drops them; still nothing comes back.
*/
static void test_tombstones_kept_then_dropped(void) {
  const char *dir = unit_tmpdir();
  /* 24 segments of 8 KiB: slots are reused quickly. */
  ls_engine *e = unit_open(dir, 8 * KB, 64 * KB, 192 * KB, 1, LS_POLICY_GREEDY);
  if (!e) return;
  uint32_t t;
  CHECK_RC(ls_table_create(e, "t", 1, &t), LS_OK);
  char kb[32], val[100];
  uint64_t f;
  for (int k = 0; k < 40; k++) {
    snprintf(kb, sizeof kb, "d%d", k);
    fill(val, sizeof val, k, 0);
    CHECK_RC(unit_put(e, t, kb, val, sizeof val), LS_OK);
  }
  CHECK_RC(ls_flush(e, t, &f), LS_OK);
  for (int k = 0; k < 20; k++) {
    snprintf(kb, sizeof kb, "d%d", k);
    CHECK_RC(unit_put(e, t, kb, NULL, 0), LS_OK);
  }
  CHECK_RC(ls_flush(e, t, &f), LS_OK);
  CHECK_U64(unit_stats(e).tombstones_dropped, 0);     /* the puts' segment holds them back */
  CHECK_RC(ls_compact(e, t, &f), LS_OK);
  CHECK_U64(unit_stats(e).tombstones_dropped, 0);     /* its slot is free but readable */
  ls_close(e);
  e = reopen(dir, 1);
  if (!e) return;
  for (int k = 0; k < 40; k++) {
    snprintf(kb, sizeof kb, "d%d", k);
    fill(val, sizeof val, k, 0);
    CHECK(is(e, t, kb, k < 20 ? NULL : val, sizeof val));
  }
  /* New data through every slot, several times over. */
  for (int r = 0; r < 200; r++) {
    ls_txn *x;
    CHECK_RC(ls_txn_begin(e, &x), LS_OK);
    for (int j = 0; j < 30; j++) {
      snprintf(kb, sizeof kb, "filler%d", j);
      ls_key key;
      ls_key_set(&key, kb, (uint32_t)strlen(kb));
      fill(val, sizeof val, j, r);
      CHECK_RC(ls_txn_put(x, t, &key, val, sizeof val), LS_OK);
    }
    CHECK_RC(ls_txn_commit(x), LS_OK);
    ls_txn_free(x);
    if (r % 20 == 19) CHECK_RC(ls_compact(e, t, &f), LS_OK);
  }
  CHECK_RC(ls_compact(e, t, &f), LS_OK);
  CHECK_U64(unit_stats(e).tombstones_dropped, 20);
  for (int k = 0; k < 20; k++) {
    snprintf(kb, sizeof kb, "d%d", k);
    CHECK(is(e, t, kb, NULL, 0));
  }
  unit_check_ok(e);
  ls_close(e);
  e = reopen(dir, 0);
  if (!e) return;
  for (int k = 0; k < 40; k++) {
    snprintf(kb, sizeof kb, "d%d", k);
    fill(val, sizeof val, k, 0);
    CHECK(is(e, t, kb, k < 20 ? NULL : val, sizeof val));
  }
  ls_stats s = unit_stats(e);
  CHECK_U64(s.records_live, 20 + 30);            /* no tombstones left */
  unit_check_ok(e);
  ls_close(e);
}

/* Segment 0 of a closed store starts with a free marker: tear the first
** write of its next incarnation -- sectors 1..7 of the first block get new
** bytes (random ones, or 0x5a), the header sector keeps the marker. */
static void tear_marked_segment0(const char *dir, int random) {
  char path[512];
  snprintf(path, sizeof path, "%s/data-000000.ls", dir);
  int fd = open(path, O_RDWR);
  CHECK(fd >= 0);
  if (fd < 0) return;
  uint8_t blk[4096];
  CHECK(pread(fd, blk, sizeof blk, 0) == (ssize_t)sizeof blk);
  ls_bufhdr h;
  CHECK(ls_bufhdr_decode(blk, &h) && h.kind == LS_KIND_FREE);
  uint64_t r = 12345;
  for (uint32_t i = 512; i < sizeof blk; i += 8) {
    uint64_t x = random ? unit_rand(&r) : 0x5a5a5a5a5a5a5a5aull;
    memcpy(blk + i, &x, 8);
  }
  CHECK(pwrite(fd, blk + 512, sizeof blk - 512, 512) == (ssize_t)(sizeof blk - 512));
  close(fd);
}

/* (c) A put and its delete in one segment: the delete is dropped when that
** segment is separated (nothing older exists elsewhere), and the segment
** gets a free marker.  A torn first write of the slot's next incarnation
** -- the header sector not written, the rest of the first block
** overwritten -- must not bring back the put from the old bytes. */
static void test_torn_reuse_after_drop(void) {
  const char *dir = unit_tmpdir();
  ls_engine *e = unit_open(dir, 8 * KB, 64 * KB, 0, 1, 0);
  if (!e) return;
  uint32_t t;
  CHECK_RC(ls_table_create(e, "t", 1, &t), LS_OK);
  char val[100];
  fill(val, sizeof val, 1, 1);
  CHECK_RC(unit_put(e, t, "ghost", val, sizeof val), LS_OK);
  for (int i = 0; i < 6; i++) {                   /* the delete goes past the first sector */
    char kb[32];
    snprintf(kb, sizeof kb, "keeper%d", i);
    CHECK_RC(unit_put(e, t, kb, val, sizeof val), LS_OK);
  }
  CHECK_RC(unit_put(e, t, "ghost", NULL, 0), LS_OK);
  mix_in(e);                                     /* separated, not adopted */
  /* All these records are in the first segment of the first file. */
  CHECK_INT(seg_get(&e->sm, 0)->state, SEG_ACTIVE);
  uint64_t f;
  CHECK_RC(ls_flush(e, t, &f), LS_OK);
  CHECK_U64(unit_stats(e).tombstones_dropped, 1);
  CHECK_INT(seg_get(&e->sm, 0)->state, SEG_FREE);
  CHECK(is(e, t, "ghost", NULL, 0));
  CHECK(is(e, t, "keeper0", val, sizeof val));
  ls_close(e);
  tear_marked_segment0(dir, 1);
  e = reopen(dir, 1);
  if (!e) return;
  CHECK(is(e, t, "ghost", NULL, 0));
  CHECK(is(e, t, "keeper5", val, sizeof val));
  unit_check_ok(e);
  ls_close(e);
}

/* The same for a rolled-back prepared transaction: its record and the
** ABORT record that cancels it share a segment, the ABORT after the first
** sector.  When that segment is freed it gets a free marker; a torn reuse
** of its slot must not bring the rolled-back row back. */
static void test_torn_reuse_after_abort(void) {
  const char *dir = unit_tmpdir();
  ls_engine *e = unit_open(dir, 8 * KB, 64 * KB, 0, 1, 0);
  if (!e) return;
  uint32_t t;
  CHECK_RC(ls_table_create(e, "t", 1, &t), LS_OK);
  ls_txn *p;
  CHECK_RC(ls_txn_begin(e, &p), LS_OK);
  ls_key k;
  ls_key_set(&k, "aborted", 7);
  CHECK_RC(ls_txn_put(p, t, &k, "never", 5), LS_OK);
  CHECK_RC(ls_txn_prepare(p), LS_OK);            /* its record: segment 0, first */
  char kb[16], val[100];
  for (int i = 0; i < 6; i++) {                   /* past the first sector */
    snprintf(kb, sizeof kb, "keep%d", i);
    fill(val, sizeof val, i, 0);
    CHECK_RC(unit_put(e, t, kb, val, sizeof val), LS_OK);
  }
  CHECK_RC(ls_txn_unprepare(p), LS_OK);          /* the ABORT record */
  ls_txn_free(p);
  mix_in(e);                                     /* separated, not adopted */
  CHECK_INT(seg_get(&e->sm, 0)->state, SEG_ACTIVE);
  uint64_t f;
  CHECK_RC(ls_flush(e, t, &f), LS_OK);
  CHECK_INT(seg_get(&e->sm, 0)->state, SEG_FREE);
  CHECK(is(e, t, "aborted", NULL, 0));
  ls_close(e);
  tear_marked_segment0(dir, 0);
  e = reopen(dir, 1);
  if (!e) return;
  CHECK(is(e, t, "aborted", NULL, 0));
  for (int i = 0; i < 6; i++) {
    snprintf(kb, sizeof kb, "keep%d", i);
    fill(val, sizeof val, i, 0);
    CHECK(is(e, t, kb, val, sizeof val));
  }
  unit_check_ok(e);
  ls_close(e);
}

/* A prepared transaction whose table is dropped before it is published:
** the publish installs nothing of it (and does not crash). */
static void test_publish_after_drop(void) {
  const char *dir = unit_tmpdir();
  ls_engine *e = unit_open(dir, 8 * KB, 64 * KB, 0, 0, 0);
  if (!e) return;
  uint32_t t, u;
  CHECK_RC(ls_table_create(e, "t", 1, &t), LS_OK);
  CHECK_RC(ls_table_create(e, "u", 1, &u), LS_OK);
  ls_txn *p;
  CHECK_RC(ls_txn_begin(e, &p), LS_OK);
  ls_key k;
  ls_key_set(&k, "row", 3);
  CHECK_RC(ls_txn_put(p, t, &k, "in t", 4), LS_OK);
  CHECK_RC(ls_txn_put(p, u, &k, "in u", 4), LS_OK);
  CHECK_RC(ls_txn_prepare(p), LS_OK);
  CHECK_RC(ls_table_drop(e, t), LS_OK);
  ls_txn_publish(p);
  ls_txn_free(p);
  CHECK(is(e, u, "row", "in u", 4));
  CHECK_INT(ls_table_exists(e, t), 0);
  unit_check_ok(e);
  ls_close(e);
  e = reopen(dir, 0);
  if (!e) return;
  CHECK(is(e, u, "row", "in u", 4));
  CHECK_INT(ls_table_exists(e, t), 0);
  unit_check_ok(e);
  ls_close(e);
}

/* ---------------------------------------------------------------------------
** Adoption: the mixed segments of a single table of one group join its set
** whole (nothing copied); a table of two groups, or a segment shared with
** another table, is copied.  Adopted segments compact like any other, and
** after a restart recovery finds them mixed again and they are adopted
** again.
*/
static void test_adopt(void) {
  const char *dir = unit_tmpdir();
  ls_engine *e = unit_open(dir, 8 * KB, 64 * KB, 0, 1, LS_POLICY_GREEDY);
  if (!e) return;
  uint32_t t, two;
  CHECK_RC(ls_table_create(e, "t", 1, &t), LS_OK);
  for (int k = 0; k < 60; k++) CHECK_RC(put_row(e, t, "a", k, 0, 400), LS_OK);   /* ~18 per segment */
  CHECK_RC(writer_seal(e), LS_OK);
  int mixed = segments(e, 0).mixed;
  CHECK(mixed >= 3);
  uint64_t f;
  CHECK_RC(ls_flush(e, t, &f), LS_OK);
  ls_stats s = unit_stats(e);
  CHECK_U64(s.separator_segments_adopted, (uint64_t)mixed);
  CHECK_U64(s.separator_bytes_written, 0);
  CHECK_U64(s.separator_records_relocated, 0);
  CHECK_U64(s.mixed_segments, 0);
  segcount c = segments(e, t);
  CHECK_INT(c.mixed, 0);
  CHECK_INT(c.table_segs, mixed);                /* shown as t's group segments */
  unit_check_ok(e);

  /* Two groups: copied into one segment per group. */
  CHECK_RC(ls_table_create(e, "two", 2, &two), LS_OK);
  for (int k = 0; k < 40; k++) CHECK_RC(put_row(e, two, "b", k, 1, 400), LS_OK);
  CHECK_RC(ls_flush(e, two, &f), LS_OK);
  s = unit_stats(e);
  CHECK_U64(s.separator_segments_adopted, (uint64_t)mixed);
  CHECK_U64(s.separator_records_relocated, 40);
  CHECK_U64(s.mixed_segments, 0);

  /* Three rows in four die: the adopted segments are worth compacting. */
  for (int k = 0; k < 60; k++)
    if (k % 4) CHECK_RC(del_row(e, t, "a", k), LS_OK);
  CHECK_RC(ls_compact(e, t, &f), LS_OK);
  CHECK(f >= 2);
  CHECK(unit_stats(e).segments_compacted >= 2);
  unit_check_ok(e);
  for (int k = 0; k < 60; k++) CHECK(has_row(e, t, "a", k, 0, 400, k % 4 == 0));

  /* New rows in adopted segments, closed, reopened: mixed again, adopted
  ** again, nothing lost, nothing back. */
  for (int k = 60; k < 100; k++) CHECK_RC(put_row(e, t, "a", k, 0, 400), LS_OK);
  CHECK_RC(ls_flush(e, t, &f), LS_OK);
  CHECK(unit_stats(e).separator_segments_adopted > (uint64_t)mixed);
  ls_close(e);
  e = reopen(dir, 1);
  if (!e) return;
  CHECK(unit_stats(e).mixed_segments >= 1);
  CHECK_RC(ls_flush(e, t, &f), LS_OK);
  s = unit_stats(e);
  CHECK(s.separator_segments_adopted >= 1);
  CHECK_U64(s.mixed_segments, 0);
  for (int k = 0; k < 100; k++) CHECK(has_row(e, t, "a", k, 0, 400, k >= 60 || k % 4 == 0));
  for (int k = 0; k < 40; k++) CHECK(has_row(e, two, "b", k, 1, 400, 1));
  unit_check_ok(e);
  ls_close(e);
}

/* On a bounded disk more than half full of live rows, mixed segments are
** copied (packed tight) even when they could be adopted. */
static void test_adopt_not_when_full(void) {
  const char *dir = unit_tmpdir();
  ls_engine *e = unit_open(dir, 8 * KB, 256 * KB, 1024 * KB, 1, LS_POLICY_GREEDY);
  if (!e) return;
  uint32_t t;
  CHECK_RC(ls_table_create(e, "t", 1, &t), LS_OK);
  int k = 0;
  uint64_t f;
  while (unit_stats(e).bytes_live < 400 * KB) CHECK_RC(put_row(e, t, "h", k++, 0, 1000), LS_OK);
  CHECK_RC(ls_flush(e, t, &f), LS_OK);
  ls_stats s = unit_stats(e);
  uint64_t adopted = s.separator_segments_adopted;
  CHECK(adopted > 0);                            /* under half full */
  while (unit_stats(e).bytes_live < 600 * KB) CHECK_RC(put_row(e, t, "h", k++, 0, 1000), LS_OK);
  CHECK_RC(ls_flush(e, t, &f), LS_OK);
  s = unit_stats(e);
  CHECK_U64(s.separator_segments_adopted, adopted);
  CHECK(s.separator_records_relocated > 0);
  CHECK_U64(s.mixed_segments, 0);
  for (int i = 0; i < k; i++) CHECK(has_row(e, t, "h", i, 0, 1000, 1));
  unit_check_ok(e);
  ls_close(e);
}

/* ---------------------------------------------------------------------------
** The cleaner one bounded step at a time (manual_cleaning): each separate
** step takes one sealed mixed segment, the flush writes the buffers, the
** reclaim frees what emptied, a compaction step takes what it should.
*/
static void test_steps(void) {
  const char *dir = unit_tmpdir();
  ls_engine *e = unit_open(dir, 8 * KB, 64 * KB, 0, 1, LS_POLICY_GREEDY);
  if (!e) return;
  uint32_t t;
  CHECK_RC(ls_table_create(e, "t", 1, &t), LS_OK);
  for (int k = 0; k < 60; k++) {                 /* about 18 per segment */
    CHECK_RC(put_row(e, t, "s", k, 0, 400), LS_OK);
    if (k % 5 == 0) mix_in(e);                   /* every segment is mixed */
  }
  CHECK_RC(writer_seal(e), LS_OK);
  int mixed = segments(e, 0).mixed;
  CHECK(mixed >= 3);
  uint64_t n, total = 0;
  for (int i = 0; i < 100; i++) {
    CHECK_RC(ls_clean_step(e, LS_CLEAN_SEPARATE, &n), LS_OK);
    if (!n) break;
    CHECK_U64(n, 1);
    total += n;
  }
  CHECK_U64(total, (uint64_t)mixed);
  CHECK_INT(segments(e, 0).mixed, mixed);        /* nothing freed before the buffers are written */
  CHECK_RC(ls_clean_step(e, LS_CLEAN_FLUSH, NULL), LS_OK);
  CHECK_RC(ls_clean_step(e, LS_CLEAN_RECLAIM, &n), LS_OK);
  CHECK_U64(n, (uint64_t)mixed);
  CHECK_INT(segments(e, 0).mixed, 0);
  CHECK_RC(ls_clean_step(e, LS_CLEAN_COMPACT, &n), LS_OK);
  CHECK_U64(n, 0);                               /* full segments: nothing to gain */
  for (int k = 0; k < 60; k++)
    if (k % 4) CHECK_RC(del_row(e, t, "s", k), LS_OK);
  CHECK_RC(writer_seal(e), LS_OK);
  CHECK_RC(ls_clean_step(e, LS_CLEAN_COMPACT, &n), LS_OK);
  CHECK(n >= 2);
  CHECK_RC(ls_clean_step(e, LS_CLEAN_FLUSH, NULL), LS_OK);
  CHECK_RC(ls_clean_step(e, LS_CLEAN_RECLAIM, &n), LS_OK);
  CHECK(n >= 2);
  CHECK_RC(ls_clean_step(e, 99, &n), LS_INVALID);
  for (int k = 0; k < 60; k++) CHECK(has_row(e, t, "s", k, 0, 400, k % 4 == 0));
  unit_check_ok(e);
  ls_close(e);
}

/* ---------------------------------------------------------------------------
** Deleting most of the data gives its disk space back: after compaction the
** data files' allocated blocks follow the live rows; the holes serve new
** rows (zeroed first), also after a restart.
*/
static uint64_t allocated(const char *dir) {
  uint64_t sum = 0;
  for (int n = 0;; n++) {
    char path[512];
    snprintf(path, sizeof path, "%s/data-%06d.ls", dir, n);
    struct stat st;
    if (stat(path, &st)) break;
    sum += (uint64_t)st.st_blocks * 512;
  }
  return sum;
}

static void test_space_returned(void) {
  const char *dir = unit_tmpdir();
  ls_engine *e = unit_open(dir, 64 * KB, 1024 * KB, 0, 0, 0);
  if (!e) return;
  uint32_t t;
  CHECK_RC(ls_table_create(e, "t", 1, &t), LS_OK);
  char kb[32], val[2000];
  for (int b = 0; b < 40; b++) {
    ls_txn *x;
    CHECK_RC(ls_txn_begin(e, &x), LS_OK);
    for (int j = 0; j < 100; j++) {
      int k = b * 100 + j;
      snprintf(kb, sizeof kb, "s%d", k);
      ls_key key;
      ls_key_set(&key, kb, (uint32_t)strlen(kb));
      fill(val, sizeof val, k, 0);
      CHECK_RC(ls_txn_put(x, t, &key, val, sizeof val), LS_OK);
    }
    CHECK_RC(ls_txn_commit(x), LS_OK);
    ls_txn_free(x);
  }
  uint64_t f;
  CHECK_RC(ls_flush(e, t, &f), LS_OK);
  uint64_t full = allocated(dir);
  CHECK(full >= 8000 * KB);
  ls_txn *x;
  CHECK_RC(ls_txn_begin(e, &x), LS_OK);
  for (int k = 0; k < 4000; k++) {
    if (k % 10 == 0) continue;
    snprintf(kb, sizeof kb, "s%d", k);
    ls_key key;
    ls_key_set(&key, kb, (uint32_t)strlen(kb));
    CHECK_RC(ls_txn_delete(x, t, &key), LS_OK);
  }
  CHECK_RC(ls_txn_commit(x), LS_OK);
  ls_txn_free(x);
  CHECK_RC(ls_compact(e, t, &f), LS_OK);
  uint64_t after = allocated(dir);
  ls_stats s = unit_stats(e);
  /* 800 KiB live, plus the free segments kept at hand and the tombstones. */
  if (after > full / 3)
    unit_fail(__FILE__, __LINE__, "%" PRIu64 " bytes allocated after deleting 90%% of %" PRIu64 " (live %" PRIu64 ")",
              after, full, s.bytes_live);
  CHECK(seg_npunched(&e->sm) > 0);
  for (int k = 0; k < 4000; k += 10) {
    snprintf(kb, sizeof kb, "s%d", k);
    fill(val, sizeof val, k, 0);
    CHECK(is(e, t, kb, val, sizeof val));
  }
  unit_check_ok(e);
  ls_close(e);
  e = reopen(dir, 0);
  if (!e) return;
  CHECK(seg_npunched(&e->sm) > 0);               /* holes found again */
  for (int k = 0; k < 3000; k++) {               /* new rows go into them */
    snprintf(kb, sizeof kb, "n%d", k);
    fill(val, sizeof val, k, 5);
    CHECK_RC(unit_put(e, t, kb, val, sizeof val), LS_OK);
  }
  for (int k = 0; k < 3000; k += 7) {
    snprintf(kb, sizeof kb, "n%d", k);
    fill(val, sizeof val, k, 5);
    CHECK(is(e, t, kb, val, sizeof val));
  }
  unit_check_ok(e);
  ls_close(e);
}

/* ---------------------------------------------------------------------------
** On an unbounded disk compaction starts when the segments in use hold more
** than space_target times the live bytes (default 1.3), and compacting
** while it wants to brings them under it.
*/
static uint64_t used_bytes(ls_engine *e) {
  ls_stats s = unit_stats(e);
  return s.segments_used * s.segment_size;
}

static void test_space_target(void) {
  const char *dir = unit_tmpdir();
  ls_engine *e = unit_open(dir, 8 * KB, 256 * KB, 0, 1, LS_POLICY_GREEDY);
  if (!e) return;
  uint32_t t;
  CHECK_RC(ls_table_create(e, "t", 1, &t), LS_OK);
  int urgent;
  for (long ver = 0; ver < 2; ver++) {           /* 1800 rows (100 segments), then half again */
    ls_txn *x = NULL;
    CHECK_RC(ls_txn_begin(e, &x), LS_OK);
    for (int k = 0; k < 1800; k++) {
      if (ver && k % 2) continue;
      char kb[32], val[400];
      snprintf(kb, sizeof kb, "s%d", k);
      fill(val, sizeof val, k, ver);
      ls_key key;
      ls_key_set(&key, kb, (uint32_t)strlen(kb));
      CHECK_RC(ls_txn_put(x, t, &key, val, sizeof val), LS_OK);
    }
    CHECK_RC(ls_txn_commit(x), LS_OK);
    ls_txn_free(x);
    uint64_t f;
    CHECK_RC(ls_flush(e, t, &f), LS_OK);
    if (!ver) CHECK_INT(cl_want_compaction(e->cleaner, &urgent), 0);   /* nothing dead yet */
  }
  ls_stats s = unit_stats(e);
  CHECK(s.space_target == 1.3);
  double amp = (double)used_bytes(e) / (double)s.bytes_live;
  if (!(amp > 1.4)) unit_fail(__FILE__, __LINE__, "space amplification %.2f after overwriting half", amp);
  CHECK_INT(cl_want_compaction(e->cleaner, &urgent), 1);
  CHECK_INT(urgent, 0);
  CHECK_RC(ls_space_target(e, 2.0), LS_OK);      /* the old trigger: twice the live bytes */
  CHECK_INT(cl_want_compaction(e->cleaner, &urgent), 0);
  CHECK_RC(ls_space_target(e, 1.0), LS_INVALID);
  CHECK_RC(ls_space_target(e, 0), LS_OK);        /* unchanged */
  CHECK_INT(cl_want_compaction(e->cleaner, &urgent), 0);
  CHECK_RC(ls_space_target(e, 1.3), LS_OK);
  int steps = 0;
  uint64_t n;
  while (cl_want_compaction(e->cleaner, &urgent) && steps++ < 200) {
    CHECK_RC(ls_clean_step(e, LS_CLEAN_COMPACT, &n), LS_OK);
    CHECK_RC(ls_clean_step(e, LS_CLEAN_FLUSH, NULL), LS_OK);
    CHECK_RC(ls_clean_step(e, LS_CLEAN_RECLAIM, &n), LS_OK);
  }
  s = unit_stats(e);
  amp = (double)used_bytes(e) / (double)s.bytes_live;
  if (!(amp <= 1.3)) unit_fail(__FILE__, __LINE__, "space amplification %.2f after %d steps", amp, steps);
  for (int k = 0; k < 1800; k += 7) CHECK(has_row(e, t, "s", k, k % 2 ? 0 : 1, 400, 1));
  unit_check_ok(e);
  ls_close(e);
  ls_options o;                                  /* out of range at open */
  ls_options_init(&o);
  o.space_target = 0.5;
  CHECK_RC(ls_open(dir, &o, &e), LS_INVALID);
}


int main(void) {
  RUN(test_overwrite_cost_benefit);
  RUN(test_overwrite_greedy);
  RUN(test_overwrite_lfs);
  RUN(test_policy_order);
  RUN(test_scylla_compaction);
  RUN(test_separation);
  RUN(test_recover_mixed);
  RUN(test_tombstones_kept_then_dropped);
  RUN(test_torn_reuse_after_drop);
  RUN(test_torn_reuse_after_abort);
  RUN(test_publish_after_drop);
  RUN(test_adopt);
  RUN(test_adopt_not_when_full);
  RUN(test_space_returned);
  RUN(test_steps);
  RUN(test_space_target);
  return unit_finish();
}
