/*
** test_compaction.c -- the cleaner: separation into compaction groups,
** compaction under overwrite loops far larger than the disk, the reserve
** on a full disk, tombstones that must not bring deleted rows back, races
** between relocation and user writes, settling, faults and crashes while
** cleaning, and readers of stable rows while everything moves (also run
** under ThreadSanitizer).
*/
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

#define KB 1024u

static ls_engine *reopen(const char *dir, int manual) {
  ls_options o;
  ls_options_init(&o);
  o.manual_cleaning = manual;
  ls_engine *e = NULL;
  CHECK_RC(ls_open(dir, &o, &e), LS_OK);
  return e;
}

/* Put a row of a second table, "other", so that the active segment holds
** rows of two tables: the separator copies its rows instead of adopting it
** whole. */
static int find_other(void *arg, const ls_table_info *ti) {
  if (strcmp(ti->name, "other")) return 0;
  *(uint32_t *)arg = ti->id;
  return 1;
}

static void mix_in(ls_engine *e) {
  uint32_t o = 0;
  ls_table_foreach(e, find_other, &o);
  if (!o) CHECK_RC(ls_table_create(e, "other", 1, &o), LS_OK);
  CHECK_RC(unit_put(e, o, "mix", "in", 2), LS_OK);
}

/* 1 if key holds exactly val (val NULL: absent). */
static int is(ls_engine *e, uint32_t t, const char *key, const void *val, uint32_t len) {
  ls_key k;
  ls_key_set(&k, key, (uint32_t)strlen(key));
  ls_value v = {0};
  int rc = ls_get(e, t, &k, &v);
  int ok = val ? rc == LS_OK && v.len == len && !memcmp(v.data, val, len) : rc == LS_NOTFOUND;
  ls_value_free(&v);
  return ok;
}

/* The value of version ver of key number k: len bytes, recognisable. */
static void fill(char *buf, uint32_t len, int k, long ver) {
  int n = snprintf(buf, len, "k%d v%ld ", k, ver);
  for (uint32_t i = (uint32_t)n; i < len; i++) buf[i] = (char)('a' + (k + ver + (long)i) % 26);
}

#define ROW_MAX 2048

/* Row k of a test: key prefix + k, value version ver of len bytes.  put_row
** writes it, has_row checks it is there (or, present 0, not there). */
static int put_row(ls_engine *e, uint32_t t, const char *prefix, int k, long ver, uint32_t len) {
  char kb[32], val[ROW_MAX];
  snprintf(kb, sizeof kb, "%s%d", prefix, k);
  fill(val, len, k, ver);
  return unit_put(e, t, kb, val, len);
}

static int del_row(ls_engine *e, uint32_t t, const char *prefix, int k) {
  char kb[32];
  snprintf(kb, sizeof kb, "%s%d", prefix, k);
  return unit_put(e, t, kb, NULL, 0);
}

static int has_row(ls_engine *e, uint32_t t, const char *prefix, int k, long ver, uint32_t len, int present) {
  char kb[32], val[ROW_MAX];
  snprintf(kb, sizeof kb, "%s%d", prefix, k);
  fill(val, len, k, ver);
  return is(e, t, kb, present ? val : NULL, len);
}

typedef struct segcount {
  int used, mixed, group, free;
  uint32_t table;                  /* count group segments of this table */
  int table_segs, table_single;    /* its segments, those with one record */
} segcount;

static int count_seg(void *arg, const ls_segment_info *s) {
  segcount *c = arg;
  if (!strcmp(s->state, "free")) { c->free++; return 0; }
  c->used++;
  if (!strcmp(s->kind, "mixed")) c->mixed++;
  else c->group++;
  if (c->table && s->table == c->table && !strcmp(s->kind, "group")) {
    c->table_segs++;
    c->table_single += s->live_records == 1;
  }
  return 0;
}

static segcount segments(ls_engine *e, uint32_t table) {
  segcount c;
  memset(&c, 0, sizeof c);
  c.table = table;
  CHECK_RC(ls_segment_foreach(e, count_seg, &c), LS_OK);
  return c;
}

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
    char kb[16];
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
** Relocation races (the badger#2310 window): a user write or delete lands
** after the copy is durable and before the index entry moves.  The user
** wins, now and after a restart.
*/

typedef struct race { ls_engine *e; uint32_t t; int mode; int fired; } race;

static void race_hook(void *arg, const char *point) {
  race *r = arg;
  if (strcmp(point, "flush:durable") || r->fired) return;
  r->fired = 1;
  const char *v2 = "version two";
  CHECK_RC(unit_put(r->e, r->t, "raced", r->mode ? NULL : v2, (uint32_t)strlen(v2)), LS_OK);
}

static void relocation_race(int mode, int compact) {
  const char *dir = unit_tmpdir();
  ls_engine *e = unit_open(dir, 8 * KB, 64 * KB, 0, 1, LS_POLICY_GREEDY);
  if (!e) return;
  uint32_t t;
  CHECK_RC(ls_table_create(e, "t", 1, &t), LS_OK);
  char val[200], kb[16];
  fill(val, sizeof val, 0, 1);
  CHECK_RC(unit_put(e, t, "raced", val, sizeof val), LS_OK);
  mix_in(e);                                     /* copied, not adopted */
  for (int k = 0; k < 60; k++) {
    snprintf(kb, sizeof kb, "o%d", k);
    CHECK_RC(unit_put(e, t, kb, val, sizeof val), LS_OK);
  }
  uint64_t f;
  race r = { e, t, mode, 0 };
  if (compact) {
    CHECK_RC(ls_flush(e, t, &f), LS_OK);
    for (int k = 0; k < 60; k += 2) {          /* half dead: worth compacting */
      snprintf(kb, sizeof kb, "o%d", k);
      CHECK_RC(unit_put(e, t, kb, NULL, 0), LS_OK);
    }
    CHECK_RC(ls_flush(e, t, &f), LS_OK);
    ls_set_hook(e, race_hook, &r);
    CHECK_RC(ls_compact(e, t, &f), LS_OK);
    CHECK(unit_stats(e).segments_compacted > 0);
  } else {
    ls_set_hook(e, race_hook, &r);
    CHECK_RC(ls_flush(e, t, &f), LS_OK);
  }
  ls_set_hook(e, NULL, NULL);
  CHECK_INT(r.fired, 1);
  const char *v2 = "version two";
  CHECK(is(e, t, "raced", mode ? NULL : v2, (uint32_t)strlen(v2)));
  unit_check_ok(e);
  ls_close(e);
  e = reopen(dir, 1);
  if (!e) return;
  CHECK(is(e, t, "raced", mode ? NULL : v2, (uint32_t)strlen(v2)));
  CHECK_RC(ls_flush(e, t, &f), LS_OK);
  CHECK(is(e, t, "raced", mode ? NULL : v2, (uint32_t)strlen(v2)));
  unit_check_ok(e);
  ls_close(e);
}

static void test_race_write_separator(void) { relocation_race(0, 0); }
static void test_race_delete_separator(void) { relocation_race(1, 0); }
static void test_race_write_compaction(void) { relocation_race(0, 1); }
static void test_race_delete_compaction(void) { relocation_race(1, 1); }

/* ---------------------------------------------------------------------------
** A full disk: live rows until LS_FULL (the reserve untouched), reads keep
** working, a transaction of deletes still commits, and once the cleaner
** reclaims their space writes succeed again without a restart.
*/
static void test_full_disk(void) {
  const char *dir = unit_tmpdir();
  ls_engine *e = unit_open(dir, 8 * KB, 64 * KB, 256 * KB, 0, 0);
  if (!e) return;
  uint32_t t;
  CHECK_RC(ls_table_create(e, "t", 1, &t), LS_OK);
  char kb[32], val[500];
  int rc = LS_OK, n = 0;
  while (rc == LS_OK && n < 10000) {
    snprintf(kb, sizeof kb, "f%d", n);
    fill(val, sizeof val, n, 0);
    rc = unit_put(e, t, kb, val, sizeof val);
    if (rc == LS_OK) n++;
  }
  CHECK_RC(rc, LS_FULL);
  CHECK(n > 200);
  CHECK(strstr(ls_errmsg(), "no space") != NULL);
  ls_stats s = unit_stats(e);
  CHECK_INT(s.failed, 0);
  for (int k = 0; k < n; k += 37) {
    snprintf(kb, sizeof kb, "f%d", k);
    fill(val, sizeof val, k, 0);
    CHECK(is(e, t, kb, val, sizeof val));
  }
  /* Delete half, in one transaction of deletes. */
  ls_txn *x;
  CHECK_RC(ls_txn_begin(e, &x), LS_OK);
  for (int k = 0; k < n; k += 2) {
    snprintf(kb, sizeof kb, "f%d", k);
    ls_key key;
    ls_key_set(&key, kb, (uint32_t)strlen(kb));
    CHECK_RC(ls_txn_delete(x, t, &key), LS_OK);
  }
  CHECK_RC(ls_txn_commit(x), LS_OK);
  ls_txn_free(x);
  int more = 0;
  rc = LS_OK;
  while (rc == LS_OK && more < n / 4) {
    snprintf(kb, sizeof kb, "g%d", more);
    fill(val, sizeof val, more, 2);
    rc = unit_put(e, t, kb, val, sizeof val);
    if (rc == LS_OK) more++;
  }
  CHECK_RC(rc, LS_OK);
  CHECK_INT(more, n / 4);
  unit_check_ok(e);
  ls_close(e);
  e = reopen(dir, 0);
  if (!e) return;
  for (int k = 0; k < n; k++) {
    snprintf(kb, sizeof kb, "f%d", k);
    fill(val, sizeof val, k, 0);
    if (!is(e, t, kb, k % 2 ? val : NULL, sizeof val)) { unit_fail(__FILE__, __LINE__, "row %s", kb); break; }
  }
  for (int k = 0; k < more; k++) {
    snprintf(kb, sizeof kb, "g%d", k);
    fill(val, sizeof val, k, 2);
    CHECK(is(e, t, kb, val, sizeof val));
  }
  unit_check_ok(e);
  ls_close(e);
}

/* ---------------------------------------------------------------------------
** The slow group (the modelled engine's test_trigger_separator_flush): a
** 4 MiB disk, two groups; each round writes ten tiny rows to both groups
** and one ~50 KiB row to one of them.  The slow group's buffer must be
** written before its old records pin the whole log: this completes with
** no LS_FULL.
*/
static void test_slow_group(void) {
  const char *dir = unit_tmpdir();
  ls_engine *e = unit_open(dir, 64 * KB, 1024 * KB, 4096 * KB, 0, 0);
  if (!e) return;
  uint32_t t;
  CHECK_RC(ls_table_create(e, "t", 2, &t), LS_OK);
  uint32_t big = 50 * KB;
  char *val = malloc(big), kb[16];
  int rounds = (int)(2 * (4096 * KB / (big + 100)));
  for (int r = 0; r < rounds && !unit_failed_checks; r++) {
    for (int k = 0; k < 10; k++) {
      snprintf(kb, sizeof kb, "%d", k);
      fill(val, 40, k, r);
      CHECK_RC(unit_put(e, t, kb, val, 40), LS_OK);
    }
    fill(val, big, 0, r);
    CHECK_RC(unit_put(e, t, "0", val, big), LS_OK);
  }
  fill(val, big, 0, rounds - 1);
  CHECK(is(e, t, "0", val, big));
  for (int k = 1; k < 10; k++) {
    snprintf(kb, sizeof kb, "%d", k);
    fill(val, 40, k, rounds - 1);
    CHECK(is(e, t, kb, val, 40));
  }
  unit_check_ok(e);
  ls_close(e);
  free(val);
}

/* ---------------------------------------------------------------------------
** DROP of one table while another keeps writing: after a restart the
** dropped rows never return and their space is reused.
*/
typedef struct bg_writer { ls_engine *e; uint32_t t; int stop; int rc; long n; } bg_writer;

static void *keep_writing(void *p) {
  bg_writer *w = p;
  char kb[32], val[300];
  while (!__atomic_load_n(&w->stop, __ATOMIC_ACQUIRE) && !w->rc) {
    snprintf(kb, sizeof kb, "w%ld", w->n % 500);
    fill(val, sizeof val, (int)(w->n % 500), w->n);
    w->rc = unit_put(w->e, w->t, kb, val, sizeof val);
    w->n++;
  }
  return NULL;
}

static void test_drop_while_writing(void) {
  const char *dir = unit_tmpdir();
  ls_engine *e = unit_open(dir, 16 * KB, 256 * KB, 4096 * KB, 0, 0);
  if (!e) return;
  uint32_t gone, kept;
  CHECK_RC(ls_table_create(e, "gone", 2, &gone), LS_OK);
  CHECK_RC(ls_table_create(e, "kept", 1, &kept), LS_OK);
  char kb[32], val[1000];
  for (int k = 0; k < 1500; k++) {
    snprintf(kb, sizeof kb, "g%d", k);
    fill(val, sizeof val, k, 0);
    CHECK_RC(unit_put(e, gone, kb, val, sizeof val), LS_OK);
  }
  uint64_t f;
  CHECK_RC(ls_flush(e, 0, &f), LS_OK);
  uint32_t used_before = segments(e, 0).used;
  bg_writer w = { e, kept, 0, 0, 0 };
  pthread_t th;
  CHECK(pthread_create(&th, NULL, keep_writing, &w) == 0);
  CHECK_RC(ls_table_drop(e, gone), LS_OK);
  __atomic_store_n(&w.stop, 1, __ATOMIC_RELEASE);
  pthread_join(th, NULL);
  CHECK_RC(w.rc, LS_OK);
  CHECK_RC(ls_flush(e, 0, &f), LS_OK);
  uint32_t used_after = segments(e, 0).used;
  CHECK(used_after + 50 < used_before);
  unit_check_ok(e);
  ls_close(e);
  e = reopen(dir, 0);
  if (!e) return;
  CHECK_INT(ls_table_exists(e, gone), 0);
  uint32_t again;
  CHECK_RC(ls_table_create(e, "gone", 2, &again), LS_OK);
  for (int k = 0; k < 1500; k += 7) {
    snprintf(kb, sizeof kb, "g%d", k);
    CHECK(is(e, again, kb, NULL, 0));
  }
  /* Its space serves new rows: 1.5 MiB more fits a 4 MiB disk easily. */
  for (int k = 0; k < 1500; k++) {
    snprintf(kb, sizeof kb, "n%d", k);
    fill(val, sizeof val, k, 3);
    CHECK_RC(unit_put(e, again, kb, val, sizeof val), LS_OK);
  }
  unit_check_ok(e);
  ls_close(e);
}

/* ---------------------------------------------------------------------------
** Large transactions write their group's records straight into group
** segments; those depend on the COMMIT record until settled.  Rows read
** back before and after the settling, and after restarts either side.
*/
static void test_direct_and_settle(void) {
  const char *dir = unit_tmpdir();
  ls_engine *e = unit_open(dir, 16 * KB, 256 * KB, 0, 1, 0);
  if (!e) return;
  uint32_t t;
  CHECK_RC(ls_table_create(e, "t", 1, &t), LS_OK);
  char kb[32], val[400];
  ls_txn *x;
  CHECK_RC(ls_txn_begin(e, &x), LS_OK);
  for (int k = 0; k < 300; k++) {                /* ~7 segments' worth */
    snprintf(kb, sizeof kb, "big%d", k);
    ls_key key;
    ls_key_set(&key, kb, (uint32_t)strlen(kb));
    fill(val, sizeof val, k, 0);
    CHECK_RC(ls_txn_put(x, t, &key, val, sizeof val), LS_OK);
  }
  CHECK_RC(ls_txn_commit(x), LS_OK);
  ls_txn_free(x);
  segcount c = segments(e, t);
  CHECK(c.table_segs >= 5);                      /* written as group segments */
  ls_stats s = unit_stats(e);
  CHECK(s.bytes_written - s.format_bytes_written < s.user_bytes_written * 13 / 10);
  ls_close(e);                                   /* the close settles them */
  e = reopen(dir, 1);
  if (!e) return;
  for (int k = 0; k < 300; k++) {
    snprintf(kb, sizeof kb, "big%d", k);
    fill(val, sizeof val, k, 0);
    CHECK(is(e, t, kb, val, sizeof val));
  }
  uint64_t f;
  CHECK_RC(ls_flush(e, t, &f), LS_OK);
  CHECK_INT(segments(e, 0).mixed, 0);            /* the COMMIT's segment is free */
  unit_check_ok(e);
  ls_close(e);
  e = reopen(dir, 1);
  if (!e) return;
  for (int k = 0; k < 300; k++) {
    snprintf(kb, sizeof kb, "big%d", k);
    fill(val, sizeof val, k, 0);
    CHECK(is(e, t, kb, val, sizeof val));
  }
  unit_check_ok(e);
  ls_close(e);
}

/* ---------------------------------------------------------------------------
** Faults while cleaning: the Nth write or sync of the cleaner fails.  The
** engine refuses writes until reopened; after the reopen every row is
** there and the check passes.
*/
static void cleaning_faults(const char *op) {
  int fired_total = 0;
  for (int n = 1; n < 200; n++) {
    const char *dir = unit_tmpdir();
    ls_options o;
    ls_options_init(&o);
    o.create = 1;
    o.segment_size = 8 * KB;
    o.file_size = 64 * KB;
    o.manual_cleaning = 1;
    o.fault = "fallocate=1000000000:EIO";          /* the fault backend, idle */
    ls_engine *e = NULL;
    CHECK_RC(ls_open(dir, &o, &e), LS_OK);
    if (!e) return;
    uint32_t t;
    CHECK_RC(ls_table_create(e, "t", 2, &t), LS_OK);
    char kb[32], val[300];
    for (int k = 0; k < 120; k++) {
      snprintf(kb, sizeof kb, "c%d", k);
      fill(val, sizeof val, k, 0);
      CHECK_RC(unit_put(e, t, kb, val, sizeof val), LS_OK);
    }
    for (int k = 0; k < 120; k += 3) {
      snprintf(kb, sizeof kb, "c%d", k);
      CHECK_RC(unit_put(e, t, kb, NULL, 0), LS_OK);
    }
    CHECK_RC(writer_seal(e), LS_OK);
    char spec[64];
    snprintf(spec, sizeof spec, "%s=%d:EIO", op, n);
    CHECK_RC(ls_io_fault_set(e->io, spec), LS_OK);
    uint64_t f;
    int rc = ls_compact(e, t, &f);
    uint64_t fired = ls_io_fault_injected(e->io);
    if (fired) {
      CHECK(rc != LS_OK);
      CHECK_INT(unit_stats(e).failed, 1);
      CHECK_RC(unit_put(e, t, "later", "x", 1), LS_READONLY);
    } else {
      CHECK_RC(rc, LS_OK);
    }
    for (int k = 0; k < 120; k++) {              /* reads still work */
      snprintf(kb, sizeof kb, "c%d", k);
      fill(val, sizeof val, k, 0);
      CHECK(is(e, t, kb, k % 3 ? val : NULL, sizeof val));
    }
    ls_close(e);
    e = reopen(dir, 0);
    if (!e) return;
    for (int k = 0; k < 120; k++) {
      snprintf(kb, sizeof kb, "c%d", k);
      fill(val, sizeof val, k, 0);
      if (!is(e, t, kb, k % 3 ? val : NULL, sizeof val)) { unit_fail(__FILE__, __LINE__, "%s: row %s", spec, kb); break; }
    }
    unit_check_ok(e);
    CHECK_RC(unit_put(e, t, "later", "x", 1), LS_OK);
    ls_close(e);
    if (unit_failed_checks || !fired) break;
    fired_total++;
  }
  CHECK(fired_total >= 3);
}

static void test_cleaning_write_faults(void) { cleaning_faults("write"); }
static void test_cleaning_sync_faults(void) { cleaning_faults("sync"); }

/* ---------------------------------------------------------------------------
** Kill -9 while the cleaner works: a child overwrites rows on a small disk
** (the background cleaner separating and compacting all along) and
** reports each acknowledged transaction; it is killed at a random point,
** or the fault backend tears one of its writes -- the writer's or the
** cleaner's.  After reopening, every acknowledged transaction is there.
*/
#define CK_KEYS 200
#define CK_VAL 700

static void ck_child(const char *dir, uint32_t t, long first, int fd, const char *fault) {
  ls_options o;
  ls_options_init(&o);
  o.fault = fault;
  ls_engine *e;
  if (ls_open(dir, &o, &e)) _exit(3);
  char kb[32], val[CK_VAL];
  for (long i = first;; i++) {
    ls_txn *x;
    if (ls_txn_begin(e, &x)) _exit(4);
    for (int j = 0; j < 8; j++) {
      int k = (int)((i * 8 + j) * 7919 % CK_KEYS);
      snprintf(kb, sizeof kb, "ck%d", k);
      ls_key key;
      ls_key_set(&key, kb, (uint32_t)strlen(kb));
      fill(val, CK_VAL, k, i);
      if (ls_txn_put(x, t, &key, val, CK_VAL)) _exit(5);
    }
    int rc = ls_txn_commit(x);
    ls_txn_free(x);
    if (rc) _exit(6);
    if (write(fd, &i, sizeof i) != sizeof i) _exit(7);
  }
}

static void test_kill_while_cleaning(void) {
  uint64_t rs = unit_seed("kill while cleaning");
  const char *dir = unit_tmpdir();
  ls_engine *e = unit_open(dir, 16 * KB, 128 * KB, 1024 * KB, 0, 0);
  if (!e) return;
  uint32_t t;
  CHECK_RC(ls_table_create(e, "t", 2, &t), LS_OK);
  ls_close(e);
  long next = 0;                                 /* transactions acknowledged: 0 .. next-1 */
  long ver[CK_KEYS];
  for (int k = 0; k < CK_KEYS; k++) ver[k] = -1;
  for (int it = 0; it < 16 && !unit_failed_checks; it++) {
    int p[2];
    CHECK(pipe(p) == 0);
    char fault[64] = "";
    int torn = it % 2 == 1;
    if (torn)
      snprintf(fault, sizeof fault, "write=%d:torn=%d", 20 + (int)(unit_rand(&rs) % 200),
               512 * (int)(unit_rand(&rs) % 8));
    int kill_after = 30 + (int)(unit_rand(&rs) % 200);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
      close(p[0]);
      ck_child(dir, t, next, p[1], fault[0] ? fault : NULL);
    }
    close(p[1]);
    long a, last = -1;
    int acks = 0;
    while ((torn || acks < kill_after) && read(p[0], &a, sizeof a) == sizeof a) { last = a; acks++; }
    if (!torn) kill(pid, SIGKILL);
    while (read(p[0], &a, sizeof a) == sizeof a) { last = a; acks++; }
    close(p[0]);
    int st;
    waitpid(pid, &st, 0);
    if (torn) CHECK(WIFEXITED(st) && WEXITSTATUS(st) == LS_FAULT_CRASH_EXIT);
    else CHECK(WIFSIGNALED(st));
    if (acks) {
      CHECK_INT(last, next + acks - 1);
      for (long i = next; i <= last; i++)
        for (int j = 0; j < 8; j++) ver[(i * 8 + j) * 7919 % CK_KEYS] = i;
      next = last + 1;
    }
    e = reopen(dir, 1);
    if (!e) return;
    char kb[32], val[CK_VAL];
    int bad = 0;
    for (int k = 0; k < CK_KEYS; k++) {
      snprintf(kb, sizeof kb, "ck%d", k);
      /* Acknowledged, or the one in flight (next). */
      ls_key key;
      ls_key_set(&key, kb, (uint32_t)strlen(kb));
      ls_value v = {0};
      int rc = ls_get(e, t, &key, &v);
      int ok;
      if (ver[k] < 0) ok = rc == LS_NOTFOUND || rc == LS_OK;
      else {
        fill(val, CK_VAL, k, ver[k]);
        ok = rc == LS_OK && v.len == CK_VAL && !memcmp(v.data, val, CK_VAL);
        if (!ok && rc == LS_OK) {                /* the transaction in flight */
          fill(val, CK_VAL, k, next);
          ok = v.len == CK_VAL && !memcmp(v.data, val, CK_VAL);
        }
      }
      ls_value_free(&v);
      if (!ok && bad++ < 3) unit_fail(__FILE__, __LINE__, "iteration %d: key %s lost version %ld", it, kb, ver[k]);
    }
    unit_check_ok(e);
    ls_close(e);
  }
  CHECK(next > 100);
}

/* ---------------------------------------------------------------------------
** Readers of stable rows while a writer churns other rows on a tiny disk
** and the cleaner moves everything: every read returns the exact value.
*/
typedef struct stab_ctx { ls_engine *e; uint32_t t; int stop; long reads; int bad; int rc; } stab_ctx;

static void *stable_reader(void *p) {
  stab_ctx *s = p;
  char kb[32], val[300];
  ls_value v = {0};
  uint64_t r = 99;
  while (!__atomic_load_n(&s->stop, __ATOMIC_ACQUIRE)) {
    int k = (int)(unit_rand(&r) % 100);
    snprintf(kb, sizeof kb, "stable%d", k);
    fill(val, sizeof val, k, 7);
    ls_key key;
    ls_key_set(&key, kb, (uint32_t)strlen(kb));
    int rc = ls_get(s->e, s->t, &key, &v);
    if (rc) { s->rc = rc; break; }
    if (v.len != sizeof val || memcmp(v.data, val, sizeof val)) s->bad++;
    __atomic_fetch_add(&s->reads, 1, __ATOMIC_RELAXED);
  }
  ls_value_free(&v);
  return NULL;
}

static void test_readers_while_cleaning(void) {
  const char *dir = unit_tmpdir();
  ls_engine *e = unit_open(dir, 8 * KB, 64 * KB, 512 * KB, 0, 0);
  if (!e) return;
  uint32_t t;
  CHECK_RC(ls_table_create(e, "t", 2, &t), LS_OK);
  char kb[32], val[300];
  for (int k = 0; k < 100; k++) {
    snprintf(kb, sizeof kb, "stable%d", k);
    fill(val, sizeof val, k, 7);
    CHECK_RC(unit_put(e, t, kb, val, sizeof val), LS_OK);
  }
  stab_ctx s = { e, t, 0, 0, 0, 0 };
  pthread_t th[2];
  for (int i = 0; i < 2; i++) CHECK(pthread_create(&th[i], NULL, stable_reader, &s) == 0);
  for (long i = 0; i < 3000; i++) {
    snprintf(kb, sizeof kb, "churn%ld", i % 200);
    fill(val, sizeof val, (int)(i % 200), i);
    CHECK_RC(unit_put(e, t, kb, val, sizeof val), LS_OK);
    if (i % 500 == 0) {
      uint64_t f;
      CHECK_RC(ls_compact(e, t, &f), LS_OK);
    }
  }
  __atomic_store_n(&s.stop, 1, __ATOMIC_RELEASE);
  for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
  CHECK_RC(s.rc, LS_OK);
  CHECK_INT(s.bad, 0);
  CHECK(s.reads > 100);
  ls_stats st = unit_stats(e);
  CHECK(st.segments_freed > 20);
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
  RUN(test_race_write_separator);
  RUN(test_race_delete_separator);
  RUN(test_race_write_compaction);
  RUN(test_race_delete_compaction);
  RUN(test_full_disk);
  RUN(test_slow_group);
  RUN(test_drop_while_writing);
  RUN(test_direct_and_settle);
  RUN(test_adopt);
  RUN(test_adopt_not_when_full);
  RUN(test_cleaning_write_faults);
  RUN(test_cleaning_sync_faults);
  RUN(test_kill_while_cleaning);
  RUN(test_readers_while_cleaning);
  RUN(test_space_returned);
  RUN(test_steps);
  RUN(test_space_target);
  return unit_finish();
}
