/*
** test_snapshot.c -- snapshots (snapshot.h): a transaction's reads see one
** committed state while commits, separation and compaction go on.
**
**   transfers    threads move amounts between accounts while other threads
**                sum every balance through one read transaction (a scan,
**                then point reads and a batch): every sum is the total, and
**                a row read twice reads the same; the cleaner runs in the
**                background on tiny segments
**   deleted      a row deleted (and its segment compacted and reused) after
**                a snapshot began is still read by it, in a scan, a point
**                read and a located-then-read row; its tombstone stays while
**                the snapshot lasts; inserted rows stay invisible
**   published    a prepared transaction published after a snapshot began is
**                invisible to it although its sequences are older
**   expiry       beyond the memory bound the oldest snapshot expires
**                (LS_EXPIRED) and its versions are dropped
**   retained     a segment holding a version a snapshot reads is not freed;
**                it is once the snapshot ends
**   full disk    retained versions never make writes fail with LS_FULL: the
**                snapshots holding them expire
**   late collect a snapshot ending while none other is active, its clean-up
**                overtaken by a new snapshot and an install recording for
**                it, drops none of the new versions
*/
#include "unit.h"
#include "catalog.h"
#include "snapshot.h"

#include <pthread.h>
#include <semaphore.h>
#include <stdlib.h>
#include <string.h>

#define KB 1024u
#define ACCOUNTS 64
#define TOTAL (ACCOUNTS * 1000L)

static void key_of(int i, char *kb, ls_key *k) {
  int n = snprintf(kb, 32, "acct%d", i);
  ls_key_set(k, kb, (uint32_t)n);
}

/* Balance of account i through t into *b (it may be negative). */
static int balance(ls_txn *t, uint32_t table, int i, long *b) {
  char kb[32];
  ls_key k;
  key_of(i, kb, &k);
  ls_value v = {0};
  int rc = ls_txn_get(t, table, &k, &v);
  if (!rc) *b = strtol((const char *)v.data, NULL, 10);
  ls_value_free(&v);
  return rc;
}

static int put_balance(ls_txn *t, uint32_t table, int i, long b) {
  char kb[32], val[64];
  ls_key k;
  key_of(i, kb, &k);
  /* Padding makes rows big, so that segments fill and the cleaner works. */
  int n = snprintf(val, sizeof val, "%ld %040d", b, i);
  return ls_txn_put(t, table, &k, val, (uint32_t)n + 1);
}

typedef struct xfer_arg {
  ls_engine *e;
  uint32_t table;
  int id, rounds;
  int bad;                         /* wrong sums or errors */
  long committed;
} xfer_arg;

static void *transfers(void *p) {
  xfer_arg *a = p;
  uint64_t r = 0x9e3779b97f4a7c15ull * (uint64_t)(a->id + 1);
  for (int i = 0; i < a->rounds; i++) {
    int x = (int)(unit_rand(&r) % ACCOUNTS), y = (int)(unit_rand(&r) % ACCOUNTS);
    if (x == y) continue;
    ls_txn *t;
    if (ls_txn_begin(a->e, &t)) { a->bad++; break; }
    long bx = 0, by = 0, amount = (long)(unit_rand(&r) % 100);
    int rc = balance(t, a->table, x, &bx);
    if (!rc) rc = balance(t, a->table, y, &by);
    if (!rc) rc = put_balance(t, a->table, x, bx - amount);
    if (!rc) rc = put_balance(t, a->table, y, by + amount);
    if (!rc) rc = ls_txn_commit(t);
    if (rc == LS_OK) a->committed++;
    else if (rc != LS_CONFLICT && a->bad++ < 3) fprintf(stderr, "     transfer: %d %s\n", rc, ls_errmsg());
    ls_txn_free(t);
  }
  ls_thread_cleanup();
  return NULL;
}

/* Sum by a scan, then by point reads and by one batch, in one snapshot. */
static void *sums(void *p) {
  xfer_arg *a = p;
  for (int i = 0; i < a->rounds; i++) {
    ls_txn *t;
    if (ls_txn_begin_read(a->e, &t)) { a->bad++; break; }
    long by_scan = 0, by_get = 0, by_batch = 0;
    int rows = 0;
    ls_cursor *c;
    int rc = ls_cursor_open(a->e, t, a->table, &c);
    for (rc = rc ? rc : ls_cursor_seek(c, INT64_MIN); !rc && ls_cursor_valid(c); rc = ls_cursor_next(c)) {
      by_scan += strtol((const char *)ls_cursor_row(c)->data, NULL, 10);
      rows++;
    }
    ls_cursor_close(c);
    for (int j = 0; j < ACCOUNTS && !rc; j++) {
      long b = 0;
      rc = balance(t, a->table, j, &b);
      by_get += b;
    }
    ls_key keys[ACCOUNTS];
    char kb[ACCOUNTS][32];
    ls_value vals[ACCOUNTS];
    int rcs[ACCOUNTS];
    memset(vals, 0, sizeof vals);
    for (int j = 0; j < ACCOUNTS; j++) key_of(j, kb[j], &keys[j]);
    if (!rc) rc = ls_get_many(a->e, t, a->table, ACCOUNTS, keys, vals, rcs);
    for (int j = 0; j < ACCOUNTS; j++) {
      if (!rc && rcs[j] == LS_OK) by_batch += strtol((const char *)vals[j].data, NULL, 10);
      else a->bad++;
      ls_value_free(&vals[j]);
    }
    if (rc || rows != ACCOUNTS || by_scan != TOTAL || by_get != TOTAL || by_batch != TOTAL) {
      if (a->bad < 5)
        fprintf(stderr, "     sum %d: rc %d rows %d scan %ld get %ld batch %ld (want %ld)\n", i, rc, rows, by_scan,
                by_get, by_batch, TOTAL);
      a->bad++;
    }
    ls_txn_free(t);
  }
  ls_thread_cleanup();
  return NULL;
}

static uint32_t setup_accounts(ls_engine *e) {
  uint32_t table;
  CHECK_RC(ls_table_create(e, "acct", 2, &table), LS_OK);
  ls_txn *t;
  CHECK_RC(ls_txn_begin(e, &t), LS_OK);
  for (int i = 0; i < ACCOUNTS; i++) CHECK_RC(put_balance(t, table, i, 1000), LS_OK);
  CHECK_RC(ls_txn_commit(t), LS_OK);
  ls_txn_free(t);
  return table;
}

static void test_transfers(void) {
  const char *dir = unit_tmpdir();
  /* Tiny segments and a small disk: the cleaner separates and compacts
  ** all the time in the background. */
  ls_engine *e = unit_open(dir, 8 * KB, 256 * KB, 1024 * KB, 0, 0);
  if (!e) return;
  uint32_t table = setup_accounts(e);
  pthread_t th[4];
  xfer_arg a[4];
  for (int i = 0; i < 4; i++) {
    a[i] = (xfer_arg){ e, table, i, i < 2 ? 3000 : 150, 0, 0 };
    pthread_create(&th[i], NULL, i < 2 ? transfers : sums, &a[i]);
  }
  for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
  for (int i = 0; i < 4; i++) CHECK_INT(a[i].bad, 0);
  CHECK(a[0].committed + a[1].committed > 1000);
  ls_stats s = unit_stats(e);
  printf("     %ld transfers, %llu compacted, %llu separated, %llu versions kept at the end\n",
         a[0].committed + a[1].committed, (unsigned long long)s.segments_compacted,
         (unsigned long long)s.separator_records_relocated, (unsigned long long)s.snapshot_versions);
  CHECK_U64(s.snapshots_active, 0);
  CHECK_U64(s.snapshot_versions, 0);
  CHECK_U64(s.snapshot_bytes, 0);
  unit_check_ok(e);
  ls_close(e);
}

static void test_deleted(void) {
  const char *dir = unit_tmpdir();
  ls_engine *e = unit_open(dir, 8 * KB, 256 * KB, 0, 1, 0);
  if (!e) return;
  uint32_t t;
  CHECK_RC(ls_table_create(e, "t", 1, &t), LS_OK);
  char val[400];
  memset(val, 'v', sizeof val);
  for (int i = 0; i < 40; i++) {
    char kb[16];
    snprintf(kb, sizeof kb, "k%d", i);
    CHECK_RC(unit_put(e, t, kb, val, sizeof val), LS_OK);
  }
  ls_txn *snap, *rd;
  CHECK_RC(ls_txn_begin_read(e, &snap), LS_OK);
  CHECK_RC(ls_txn_begin(e, &rd), LS_OK);
  /* rd locates k7 now and reads it after it was deleted and its segment
  ** emptied (the lazy read of a point lookup). */
  ls_key k7;
  ls_key_set(&k7, "k7", 2);
  uint64_t where;
  CHECK_RC(ls_locate(e, rd, t, &k7, &where), LS_OK);
  for (int i = 0; i < 40; i++) {
    char kb[16];
    snprintf(kb, sizeof kb, "k%d", i);
    CHECK_RC(unit_put(e, t, kb, NULL, 0), LS_OK);
  }
  CHECK_RC(unit_puts(e, t, "new", "row"), LS_OK);
  uint64_t freed;
  CHECK_RC(ls_compact(e, t, &freed), LS_OK);
  ls_stats s = unit_stats(e);
  CHECK_U64(s.tombstones_dropped, 0);                /* S3 */
  CHECK(s.snapshot_versions >= 41);
  /* Fill the freed space with other rows (slots reused). */
  for (int i = 0; i < 60; i++) {
    char kb[16];
    snprintf(kb, sizeof kb, "z%d", i);
    CHECK_RC(unit_put(e, t, kb, val, sizeof val), LS_OK);
  }
  ls_value v = {0};
  CHECK_RC(ls_get_at(e, rd, t, &k7, where, &v), LS_OK);
  CHECK(v.len == sizeof val && !memcmp(v.data, val, sizeof val));
  ls_key kn;
  ls_key_set(&kn, "new", 3);
  CHECK_RC(ls_txn_get(snap, t, &kn, &v), LS_NOTFOUND);
  CHECK_RC(ls_txn_get(snap, t, &k7, &v), LS_OK);
  ls_cursor *c;
  CHECK_RC(ls_cursor_open(e, snap, t, &c), LS_OK);
  int rows = 0;
  for (int rc = ls_cursor_seek(c, INT64_MIN); !rc && ls_cursor_valid(c); rc = ls_cursor_next(c)) {
    const ls_value *r = ls_cursor_row(c);
    rows += r->key_len >= 2 && r->key[0] == 'k';
    CHECK(r->key[0] == 'k');
  }
  ls_cursor_close(c);
  CHECK_INT(rows, 40);
  ls_value_free(&v);
  unit_check_ok(e);
  ls_txn_free(snap);
  ls_txn_free(rd);
  s = unit_stats(e);
  CHECK_U64(s.snapshot_versions, 0);
  CHECK_U64(s.snapshot_bytes, 0);
  unit_check_ok(e);
  ls_close(e);
}

static void test_published(void) {
  const char *dir = unit_tmpdir();
  ls_engine *e = unit_open(dir, 0, 0, 0, 1, 0);
  if (!e) return;
  uint32_t t;
  CHECK_RC(ls_table_create(e, "t", 1, &t), LS_OK);
  CHECK_RC(unit_puts(e, t, "a", "old"), LS_OK);
  ls_txn *p, *snap;
  ls_key ka, kb;
  ls_key_set(&ka, "a", 1);
  ls_key_set(&kb, "b", 1);
  CHECK_RC(ls_txn_begin(e, &p), LS_OK);
  CHECK_RC(ls_txn_put(p, t, &ka, "new", 4), LS_OK);
  CHECK_RC(ls_txn_prepare(p), LS_OK);
  /* A commit after the prepare has newer sequences, and is visible. */
  CHECK_RC(unit_puts(e, t, "b", "b1"), LS_OK);
  CHECK_RC(ls_txn_begin_read(e, &snap), LS_OK);
  ls_txn_publish(p);
  ls_txn_free(p);
  ls_value v = {0};
  CHECK_RC(ls_txn_get(snap, t, &ka, &v), LS_OK);
  CHECK(v.len == 3 && !memcmp(v.data, "old", 3));
  CHECK_RC(ls_txn_get(snap, t, &kb, &v), LS_OK);
  CHECK(v.len == 2 && !memcmp(v.data, "b1", 2));
  ls_txn_free(snap);
  CHECK(!strcmp(unit_gets(e, t, "a"), "new"));
  ls_value_free(&v);
  ls_close(e);
}

static void test_expiry(void) {
  const char *dir = unit_tmpdir();
  ls_options o;
  ls_options_init(&o);
  o.create = 1;
  o.manual_cleaning = 1;
  o.snapshot_memory = 10 * SNAP_VERSION_BYTES;      /* 11 versions */
  ls_engine *e;
  CHECK_RC(ls_open(dir, &o, &e), LS_OK);
  uint32_t t;
  CHECK_RC(ls_table_create(e, "t", 1, &t), LS_OK);
  CHECK_RC(unit_puts(e, t, "a", "0"), LS_OK);
  ls_txn *old, *young;
  CHECK_RC(ls_txn_begin_read(e, &old), LS_OK);
  for (int i = 0; i < 5; i++) {
    char kb[16];
    snprintf(kb, sizeof kb, "x%d", i);
    CHECK_RC(unit_puts(e, t, kb, "x"), LS_OK);
  }
  CHECK_RC(ls_txn_begin_read(e, &young), LS_OK);
  ls_key ka;
  ls_key_set(&ka, "a", 1);
  ls_value v = {0};
  CHECK_RC(ls_txn_get(old, t, &ka, &v), LS_OK);
  for (int i = 0; i < 20; i++) {
    char kb[16];
    snprintf(kb, sizeof kb, "y%d", i);
    CHECK_RC(unit_puts(e, t, kb, "y"), LS_OK);
  }
  /* The bound expired the oldest snapshots first. */
  CHECK_RC(ls_txn_get(old, t, &ka, &v), LS_EXPIRED);
  ls_stats s = unit_stats(e);
  CHECK(s.snapshots_expired >= 1);
  CHECK(s.snapshot_versions <= 11);
  ls_txn_free(old);
  ls_txn_free(young);
  s = unit_stats(e);
  CHECK_U64(s.snapshots_active, 0);
  CHECK_U64(s.snapshot_versions, 0);
  ls_value_free(&v);
  ls_close(e);
}

static void test_retained(void) {
  const char *dir = unit_tmpdir();
  ls_engine *e = unit_open(dir, 8 * KB, 256 * KB, 0, 1, 0);
  if (!e) return;
  uint32_t t;
  CHECK_RC(ls_table_create(e, "t", 1, &t), LS_OK);
  char val[2000];
  memset(val, 'o', sizeof val);
  for (int i = 0; i < 12; i++) {
    char kb[16];
    snprintf(kb, sizeof kb, "k%d", i);
    CHECK_RC(unit_put(e, t, kb, val, sizeof val), LS_OK);
  }
  uint64_t freed;
  CHECK_RC(ls_flush(e, t, &freed), LS_OK);
  ls_txn *snap;
  CHECK_RC(ls_txn_begin_read(e, &snap), LS_OK);
  memset(val, 'n', sizeof val);
  for (int i = 0; i < 12; i++) {
    char kb[16];
    snprintf(kb, sizeof kb, "k%d", i);
    CHECK_RC(unit_put(e, t, kb, val, sizeof val), LS_OK);
  }
  CHECK_RC(ls_compact(e, t, &freed), LS_OK);
  ls_stats s1 = unit_stats(e);
  CHECK(s1.snapshot_bytes >= 12 * 2000);
  /* Every old row still reads as it was. */
  for (int i = 0; i < 12; i++) {
    char kb[16];
    snprintf(kb, sizeof kb, "k%d", i);
    ls_key k;
    ls_key_set(&k, kb, (uint32_t)strlen(kb));
    ls_value v = {0};
    CHECK_RC(ls_txn_get(snap, t, &k, &v), LS_OK);
    CHECK(v.len == 2000 && v.data[0] == 'o' && v.data[1999] == 'o');
    ls_value_free(&v);
  }
  ls_txn_free(snap);
  CHECK_RC(ls_compact(e, t, &freed), LS_OK);
  ls_stats s2 = unit_stats(e);
  CHECK(s2.segments_free > s1.segments_free);
  CHECK_U64(s2.snapshot_bytes, 0);
  unit_check_ok(e);
  ls_close(e);
}

/* Snapshots do not make the disk full: when the cleaner finds no room
** because old versions are retained, the snapshots expire instead.  A new
** snapshot before each round of overwrites keeps that round's versions;
** the byte bound is lifted so that only the disk can stop them. */
#define FULL_ROUNDS 40
static void test_full_disk(void) {
  const char *dir = unit_tmpdir();
  ls_engine *e = unit_open(dir, 8 * KB, 128 * KB, 256 * KB, 1, 0);
  if (!e) return;
  e->snaps.max_bytes = UINT64_MAX;
  uint32_t t;
  CHECK_RC(ls_table_create(e, "t", 1, &t), LS_OK);
  char val[1000];
  memset(val, 'x', sizeof val);
  ls_txn *snap[FULL_ROUNDS];
  int failed = 0;
  for (int r = 0; r < FULL_ROUNDS && !failed; r++) {
    for (int i = 0; i < 20 && !failed; i++) {
      char kb[16];
      snprintf(kb, sizeof kb, "k%d", i);
      val[0] = (char)('a' + r % 26);
      failed = unit_put(e, t, kb, val, sizeof val) != LS_OK;
    }
    CHECK_RC(ls_txn_begin_read(e, &snap[r]), LS_OK);
  }
  CHECK_INT(failed, 0);
  ls_key k;
  ls_key_set(&k, "k0", 2);
  ls_value v = {0};
  /* The oldest expired; the newest still reads its round. */
  CHECK_RC(ls_txn_get(snap[0], t, &k, &v), LS_EXPIRED);
  CHECK_RC(ls_txn_get(snap[FULL_ROUNDS - 1], t, &k, &v), LS_OK);
  CHECK(v.len == sizeof val && v.data[0] == 'a' + (FULL_ROUNDS - 1) % 26);
  ls_value_free(&v);
  for (int r = 0; r < FULL_ROUNDS; r++) ls_txn_free(snap[r]);
  ls_stats s = unit_stats(e);
  CHECK(s.snapshots_expired >= 1);
  CHECK_U64(s.snapshot_versions, 0);
  unit_check_ok(e);
  ls_close(e);
}

/* A read transaction ended and restarted (ls_txn_end_read, ls_txn_restart_read:
** the autocommit statements of a connection reuse one) sees what was
** committed at the restart, holds no snapshot in between (commits record no
** versions for it), and an expired one starts afresh. */
static void test_restart(void) {
  const char *dir = unit_tmpdir();
  ls_options o;
  ls_options_init(&o);
  o.create = 1;
  o.manual_cleaning = 1;
  o.snapshot_memory = 4 * SNAP_VERSION_BYTES;
  ls_engine *e;
  CHECK_RC(ls_open(dir, &o, &e), LS_OK);
  uint32_t t;
  CHECK_RC(ls_table_create(e, "t", 1, &t), LS_OK);
  CHECK_RC(unit_puts(e, t, "a", "1"), LS_OK);
  ls_txn *r;
  CHECK_RC(ls_txn_begin_read(e, &r), LS_OK);
  ls_key ka;
  ls_key_set(&ka, "a", 1);
  ls_value v = {0};
  CHECK_RC(unit_puts(e, t, "a", "2"), LS_OK);
  CHECK_RC(ls_txn_get(r, t, &ka, &v), LS_OK);
  CHECK(v.len == 1 && v.data[0] == '1');
  ls_txn_end_read(r);
  ls_stats s = unit_stats(e);
  CHECK_U64(s.snapshots_active, 0);
  CHECK_U64(s.snapshot_versions, 0);
  CHECK_RC(unit_puts(e, t, "a", "3"), LS_OK);
  s = unit_stats(e);
  CHECK_U64(s.snapshot_versions, 0);              /* nobody to keep "2" for */
  ls_txn_restart_read(r);
  CHECK_RC(ls_txn_get(r, t, &ka, &v), LS_OK);
  CHECK(v.len == 1 && v.data[0] == '3');
  /* Restarting a running one moves it to now. */
  CHECK_RC(unit_puts(e, t, "a", "4"), LS_OK);
  CHECK_RC(ls_txn_get(r, t, &ka, &v), LS_OK);
  CHECK(v.len == 1 && v.data[0] == '3');
  ls_txn_restart_read(r);
  CHECK_RC(ls_txn_get(r, t, &ka, &v), LS_OK);
  CHECK(v.len == 1 && v.data[0] == '4');
  /* Expired by the bounds, then restarted: reads work again. */
  for (int i = 0; i < 10; i++) {
    char val[16];
    snprintf(val, sizeof val, "x%d", i);
    CHECK_RC(unit_puts(e, t, "a", val), LS_OK);
    char kb[16];
    snprintf(kb, sizeof kb, "k%d", i);
    CHECK_RC(unit_puts(e, t, kb, val), LS_OK);
    ls_key kk;
    ls_key_set(&kk, kb, (uint32_t)strlen(kb));
    ls_value w = {0};
    (void)ls_txn_get(r, t, &kk, &w);
    ls_value_free(&w);
  }
  CHECK_RC(ls_txn_get(r, t, &ka, &v), LS_EXPIRED);
  ls_txn_restart_read(r);
  CHECK_RC(ls_txn_get(r, t, &ka, &v), LS_OK);
  CHECK(v.len == 2 && !memcmp(v.data, "x9", 2));
  s = unit_stats(e);
  CHECK_U64(s.snapshots_active, 1);
  ls_txn_end_read(r);
  ls_txn_free(r);                                 /* ended: nothing left to end */
  s = unit_stats(e);
  CHECK_U64(s.snapshots_active, 0);
  CHECK_U64(s.snapshot_versions, 0);
  ls_value_free(&v);
  unit_check_ok(e);
  ls_close(e);
}

/* The store's collect stops once, where it is about to take the versions'
** lock, until the test lets it go on. */
typedef struct collect_pause {
  sem_t paused, go;
  int armed;
} collect_pause;

static void pause_collect(void *arg) {
  collect_pause *p = arg;
  if (!p->armed) return;
  p->armed = 0;
  sem_post(&p->paused);
  sem_wait(&p->go);
}

typedef struct end_arg {
  snap_store *st;
  ls_snapshot *s;
} end_arg;

static void *end_snapshot(void *p) {
  end_arg *a = p;
  snap_end(a->st, a->s);
  return NULL;
}

/* One install recording the no-row version of key (word 0: no segment
** involved, so the store runs without a segment manager). */
static void install_one(snap_store *st, const idx_key *key) {
  int record = 0;
  uint64_t stamp = snap_install_begin(st, NULL, &record);
  CHECK_INT(record, 1);
  snap_record(st, 1, key, 0, stamp);
  snap_install_end(st, stamp);
}

static void test_late_collect(void) {
  snap_store st;
  snap_init(&st, NULL, 1000, 1 << 20);
  collect_pause p = { .armed = 0 };
  sem_init(&p.paused, 0, 0);
  sem_init(&p.go, 0, 0);
  st.test_collect_hook = pause_collect;
  st.test_collect_arg = &p;
  idx_key k0 = { 1, 1 }, k1 = { 2, 2 };
  ls_snapshot a, s;
  snap_begin(&st, &a);
  install_one(&st, &k0);                       /* a version: collect has work */
  /* a ends, the last active snapshot; its collect stops before the drop. */
  p.armed = 1;
  pthread_t th;
  end_arg ea = { &st, &a };
  pthread_create(&th, NULL, end_snapshot, &ea);
  sem_wait(&p.paused);
  /* Meanwhile s begins and an install records k1's old version for it. */
  snap_begin(&st, &s);
  install_one(&st, &k1);
  sem_post(&p.go);
  pthread_join(th, NULL);
  uint64_t word = 77;                          /* the index's (new) word */
  CHECK_RC(snap_lookup(&st, &s, 1, &k1, &word), LS_OK);
  CHECK_U64(word, 0);                          /* s sees k1 absent, as it was */
  snap_end(&st, &s);
  CHECK_U64(atomic_load(&st.nversions), 0);
  snap_destroy(&st);
  sem_destroy(&p.paused);
  sem_destroy(&p.go);
}

int main(void) {
  RUN(test_transfers);
  RUN(test_deleted);
  RUN(test_published);
  RUN(test_expiry);
  RUN(test_retained);
  RUN(test_full_disk);
  RUN(test_restart);
  RUN(test_late_collect);
  return unit_finish();
}
