/*
** test_writer.c -- the write path under injected I/O faults.
**
** For N = 1, 2, ... the Nth write (or sync) of a fixed workload fails, once
** or from then on.  The failing commit must get an error with a message,
** every later commit LS_READONLY (a failed sync is never retried), reads
** keep working, and after a reopen without faults every acknowledged
** transaction is present and whole, and every failed one is either whole or
** absent.  The loop ends when the workload completes without an injection.
** Short writes must be invisible.  Also: several threads committing at once
** are grouped (fewer syncs than commits) and all land; a lone committer
** commits on its own thread (no hand-off), one that finds the writer busy
** is handed to the writer thread, and a normal commit made on its own
** thread is still synced in the background.
*/
#include "unit.h"
#include "catalog.h"
#include "txn.h"
#include "writer_int.h"
#include "index.h"

#include <semaphore.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TXNS 24
#define ROWS 5
#define NO_FAULT "fallocate=1000000000:EIO"   /* wraps the backend, never fires */

static ls_engine *open_fault(const char *dir) {
  ls_options o;
  ls_options_init(&o);
  o.create = 1;
  o.segment_size = 8192;
  o.file_size = 65536;
  o.fault = NO_FAULT;
  /* The cleaner writes only when asked: the Nth write is the writer's. */
  o.manual_cleaning = 1;
  ls_engine *e = NULL;
  CHECK_RC(ls_open(dir, &o, &e), LS_OK);
  return e;
}

/* Transaction i writes rows "r<i>-<j>" = "v<i>" and "shared" = "v<i>";
** odd i also delete row r<i-1>-0. */
static int run_txn(ls_engine *e, uint32_t t, int i) {
  ls_txn *x;
  int rc = ls_txn_begin(e, &x);
  if (rc) return rc;
  char kb[32], vb[32];
  int vl = snprintf(vb, sizeof vb, "v%d", i);
  for (int j = 0; j < ROWS && !rc; j++) {
    int kl = snprintf(kb, sizeof kb, "r%d-%d", i, j);
    ls_key k;
    ls_key_set(&k, kb, (uint32_t)kl);
    rc = ls_txn_put(x, t, &k, vb, (uint32_t)vl);
  }
  ls_key s;
  ls_key_set(&s, "shared", 6);
  if (!rc) rc = ls_txn_put(x, t, &s, vb, (uint32_t)vl);
  if (!rc && (i & 1)) {
    int kl = snprintf(kb, sizeof kb, "r%d-0", i - 1);
    ls_key k;
    ls_key_set(&k, kb, (uint32_t)kl);
    rc = ls_txn_delete(x, t, &k);
  }
  if (!rc) rc = ls_txn_commit(x);
  ls_txn_free(x);
  return rc;
}

static int row_is(ls_engine *e, uint32_t t, const char *key, const char *want) {
  ls_key k;
  ls_key_set(&k, key, (uint32_t)strlen(key));
  ls_value v = {0};
  int rc = ls_get(e, t, &k, &v);
  int ok = want ? (rc == LS_OK && v.len == strlen(want) && !memcmp(v.data, want, v.len)) : rc == LS_NOTFOUND;
  ls_value_free(&v);
  return ok;
}

/* Is transaction i whole (1), absent (0) or partial (-1)?  Rows of i that a
** later transaction deleted are skipped. */
static int txn_state(ls_engine *e, uint32_t t, int i, int present_after_delete) {
  char kb[32], vb[32];
  snprintf(vb, sizeof vb, "v%d", i);
  int have = 0, miss = 0;
  for (int j = 0; j < ROWS; j++) {
    if (j == 0 && !(i & 1) && present_after_delete) continue;
    snprintf(kb, sizeof kb, "r%d-%d", i, j);
    if (row_is(e, t, kb, vb)) have++; else miss++;
  }
  return miss == 0 ? 1 : have == 0 ? 0 : -1;
}

/* One fault loop: returns the number of iterations in which a fault fired. */
static int fault_loop(const char *op, const char *err, int persist) {
  int fired_total = 0;
  for (int n = 1; n < 200; n++) {
    const char *dir = unit_tmpdir();
    ls_engine *e = open_fault(dir);
    uint32_t t;
    CHECK_RC(ls_table_create(e, "t", 1, &t), LS_OK);
    CHECK_RC(run_txn(e, t, 0), LS_OK);        /* formats the first file */
    char spec[64];
    snprintf(spec, sizeof spec, "%s=%d:%s%s", op, n, err, persist ? ":persist" : "");
    seg_ahead_hold(&e->sm, 1);                     /* every write is the workload's */
    CHECK_RC(ls_io_fault_set(e->io, spec), LS_OK);
    int acked[TXNS + 1] = {1}, failed_at = -1;
    for (int i = 1; i <= TXNS; i++) {
      int rc = run_txn(e, t, i);
      if (rc == LS_OK) {
        acked[i] = 1;
        continue;
      }
      if (failed_at < 0) {
        failed_at = i;
        CHECK(rc == LS_IOERR || rc == LS_FULL);
        CHECK(strstr(ls_errmsg(), op[0] == 's' ? "fdatasync" : "write") != NULL);
        /* The cause crossed from the writer thread with the message. */
        if (rc == LS_IOERR) CHECK_INT(ls_errcause(), op[0] == 's' ? LS_CAUSE_SYNC : LS_CAUSE_WRITE);
      } else {
        CHECK_RC(rc, LS_READONLY);
        CHECK(strstr(ls_errmsg(), "reopen") != NULL);
      }
    }
    uint64_t fired = ls_io_fault_injected(e->io);
    seg_ahead_hold(&e->sm, 0);
    if (failed_at > 0) {
      ls_stats s;
      ls_stats_get(e, &s);
      CHECK_INT(s.failed, 1);
      CHECK(row_is(e, t, "r0-1", "v0"));    /* reads still work */
    } else {
      CHECK_U64(fired, 0);          /* no fault fired unseen (test_segment:
                                    ** no second file formatted ahead) */
    }
    ls_close(e);
    ls_engine *r = NULL;
    CHECK_RC(ls_open(dir, NULL, &r), LS_OK);
    /* Newest first: whether transaction i+1 landed decides whether row 0
    ** of an even i is expected (i+1 deletes it). */
    int last_present = -1, next_state = 0;
    for (int i = TXNS; i >= 0; i--) {
      int st = txn_state(r, t, i, next_state == 1);
      if (acked[i]) CHECK_INT(st, 1);
      else CHECK(st != -1);
      if (st == 1 && last_present < 0) last_present = i;
      next_state = st;
    }
    char want[32];
    snprintf(want, sizeof want, "v%d", last_present);
    CHECK(row_is(r, t, "shared", want));
    char *rep = NULL;
    CHECK_RC(ls_check(r, 0, &rep), LS_OK);
    if (rep && strcmp(rep, "ok")) unit_fail(__FILE__, __LINE__, "%s=%d: ls_check: %s", op, n, rep);
    free(rep);
    /* The reopened engine writes again. */
    CHECK_RC(run_txn(r, t, TXNS + 1), LS_OK);
    ls_close(r);
    if (unit_failed_checks) {
      printf("     failed with fault %s\n", spec);
      break;
    }
    if (!fired) break;
    fired_total++;
  }
  return fired_total;
}

static void test_write_eio_once(void) { CHECK(fault_loop("write", "EIO", 0) > 3); }
static void test_write_eio_persist(void) { CHECK(fault_loop("write", "EIO", 1) > 3); }
static void test_sync_eio_once(void) { CHECK(fault_loop("sync", "EIO", 0) > 3); }
static void test_sync_eio_persist(void) { CHECK(fault_loop("sync", "EIO", 1) > 3); }
static void test_write_enospc(void) { CHECK(fault_loop("write", "ENOSPC", 0) > 3); }

/* Short writes are completed by the backend: nothing to see. */
static void test_short_writes(void) {
  const char *dir = unit_tmpdir();
  ls_engine *e = open_fault(dir);
  uint32_t t;
  CHECK_RC(ls_table_create(e, "t", 1, &t), LS_OK);
  CHECK_RC(run_txn(e, t, 0), LS_OK);
  CHECK_RC(ls_io_fault_set(e->io, "write=1:short=100,write=3:short=4000,write=5:short=1"), LS_OK);
  for (int i = 1; i <= 8; i++) CHECK_RC(run_txn(e, t, i), LS_OK);
  CHECK(ls_io_fault_injected(e->io) >= 3);
  ls_close(e);
  CHECK_RC(ls_open(dir, NULL, &e), LS_OK);
  for (int i = 0; i <= 8; i++) CHECK_INT(txn_state(e, t, i, i < 8), 1);
  ls_close(e);
}

/* W4: once a write failed, the writer writes nothing more -- also not for
** a seal asked after the failure (ls_flush checks the failed state before
** it asks, but the engine can fail in between: here the seal is asked
** straight after).  It used to write the open buffer again and seal it. */
static void test_seal_after_failure(void) {
  const char *dir = unit_tmpdir();
  ls_engine *e = open_fault(dir);
  uint32_t t;
  CHECK_RC(ls_table_create(e, "t", 1, &t), LS_OK);
  CHECK_RC(run_txn(e, t, 0), LS_OK);
  CHECK_RC(ls_io_fault_set(e->io, "write=1:EIO"), LS_OK);   /* once: later writes would work */
  CHECK(run_txn(e, t, 1) != LS_OK);
  CHECK_INT(unit_stats(e).failed, 1);
  uint64_t before = unit_stats(e).bytes_written;
  CHECK(writer_seal(e) != LS_OK);
  CHECK_U64(unit_stats(e).bytes_written, before);
  ls_close(e);
  CHECK_RC(ls_open(dir, NULL, &e), LS_OK);
  CHECK_INT(txn_state(e, t, 0, 1), 1);
  ls_close(e);
}

/* A data file that can not be formatted fails the commit that needed it,
** not the engine. */
static void test_format_failure(void) {
  const char *dir = unit_tmpdir();
  ls_engine *e = open_fault(dir);
  uint32_t t;
  CHECK_RC(ls_table_create(e, "t", 1, &t), LS_OK);
  CHECK_RC(run_txn(e, t, 0), LS_OK);            /* the first file exists */
  /* The segments the background thread keeps ahead, prepared now and
  ** not later (its step would meet the fault). */
  seg_ahead_hold(&e->sm, 1);
  seg_prepare_ahead(&e->sm);
  CHECK_RC(ls_io_fault_set(e->io, "open=1:ENOSPC:persist"), LS_OK);
  char val[7000];
  memset(val, 'x', sizeof val);
  int rc = LS_OK, i;
  for (i = 0; i < 40 && rc == LS_OK; i++) {      /* ~one segment each */
    char kb[16];
    snprintf(kb, sizeof kb, "big%d", i);
    ls_txn *x;
    CHECK_RC(ls_txn_begin(e, &x), LS_OK);
    ls_key k;
    ls_key_set(&k, kb, (uint32_t)strlen(kb));
    CHECK_RC(ls_txn_put(x, t, &k, val, sizeof val), LS_OK);
    rc = ls_txn_commit(x);
    ls_txn_free(x);
  }
  CHECK_RC(rc, LS_FULL);
  CHECK(strstr(ls_errmsg(), "data file") != NULL);
  CHECK(i > 1);                                 /* the first file's room was used */
  ls_stats s;
  ls_stats_get(e, &s);
  CHECK_INT(s.failed, 0);
  /* Once files can be made again, commits succeed without a reopen. */
  CHECK_RC(ls_io_fault_set(e->io, ""), LS_OK);
  seg_ahead_hold(&e->sm, 0);
  CHECK_RC(run_txn(e, t, 1), LS_OK);
  CHECK(row_is(e, t, "r0-1", "v0"));
  CHECK(row_is(e, t, "r1-1", "v1"));
  ls_close(e);
  CHECK_RC(ls_open(dir, NULL, &e), LS_OK);
  CHECK(row_is(e, t, "r1-1", "v1"));
  ls_close(e);
}

/* Concurrent committers share groups, and every commit lands. */
typedef struct thr_arg { ls_engine *e; uint32_t t; int id; int rc; } thr_arg;

static void *committer(void *p) {
  thr_arg *a = p;
  char kb[32];
  for (int i = 0; i < 200 && !a->rc; i++) {
    ls_txn *x;
    a->rc = ls_txn_begin(a->e, &x);
    int kl = snprintf(kb, sizeof kb, "c%d-%d", a->id, i);
    ls_key k;
    ls_key_set(&k, kb, (uint32_t)kl);
    if (!a->rc) a->rc = ls_txn_put(x, a->t, &k, kb, (uint32_t)kl);
    if (!a->rc) a->rc = ls_txn_commit(x);
    ls_txn_free(x);
  }
  ls_thread_cleanup();
  return NULL;
}

static void test_group_commit(void) {
  const char *dir = unit_tmpdir();
  ls_engine *e = open_fault(dir);
  uint32_t t;
  CHECK_RC(ls_table_create(e, "t", 1, &t), LS_OK);
  ls_stats s0, s1;
  ls_stats_get(e, &s0);
  pthread_t th[6];
  thr_arg a[6];
  for (int i = 0; i < 6; i++) {
    a[i] = (thr_arg){ e, t, i, 0 };
    pthread_create(&th[i], NULL, committer, &a[i]);
  }
  for (int i = 0; i < 6; i++) {
    pthread_join(th[i], NULL);
    CHECK_RC(a[i].rc, LS_OK);
  }
  ls_stats_get(e, &s1);
  CHECK_U64(s1.commits - s0.commits, 1200);
  CHECK(s1.commit_groups - s0.commit_groups < 1200);   /* some shared a sync */
  printf("     1200 commits from 6 threads in %llu groups\n",
         (unsigned long long)(s1.commit_groups - s0.commit_groups));
  ls_close(e);
  CHECK_RC(ls_open(dir, NULL, &e), LS_OK);
  char kb[32];
  int missing = 0;
  for (int id = 0; id < 6; id++)
    for (int i = 0; i < 200; i++) {
      snprintf(kb, sizeof kb, "c%d-%d", id, i);
      if (!row_is(e, t, kb, kb)) missing++;
    }
  CHECK_INT(missing, 0);
  ls_close(e);
}

/* A prepared transaction is frozen: its owner may go on reading through it
** (SQLite's COMMIT failed after xSync) while the writer thread checks other
** commits against it; reads record nothing into it.  Under TSan an
** unfrozen transaction shows as a race on its maps. */
typedef struct frozen_arg { ls_engine *e; ls_txn *p; uint32_t t1, t2; int bad; } frozen_arg;

static void *frozen_reader(void *arg) {
  frozen_arg *a = arg;
  ls_value v = {0};
  char kb[32];
  for (int i = 0; i < 400; i++) {
    int kl = snprintf(kb, sizeof kb, "r%d", i);
    ls_key k;
    ls_key_set(&k, kb, (uint32_t)kl);
    uint64_t where;
    if (ls_txn_get(a->p, (i & 1) ? a->t2 : a->t1, &k, &v) != LS_NOTFOUND) a->bad++;
    if (ls_txn_exists(a->p, a->t2, &k) != 0) a->bad++;
    if (ls_locate(a->e, a->p, a->t1, &k, &where) != LS_NOTFOUND) a->bad++;
  }
  ls_value_free(&v);
  ls_thread_cleanup();
  return NULL;
}

/* ls_wait_unprepared: LS_BUSY after its timeout while a transaction is
** prepared; LS_OK at once when none is (published or unprepared). */
static void test_wait_unprepared(void) {
  const char *dir = unit_tmpdir();
  ls_engine *e = unit_open(dir, 0, 0, 0, 0, 0);
  uint32_t t1;
  CHECK_RC(ls_table_create(e, "t1", 1, &t1), LS_OK);
  CHECK_RC(ls_wait_unprepared(e, 0), LS_OK);
  ls_key k;
  ls_key_set(&k, "a", 1);
  for (int publish = 0; publish < 2; publish++) {
    ls_txn *p;
    CHECK_RC(ls_txn_begin(e, &p), LS_OK);
    CHECK_RC(ls_txn_put(p, t1, &k, "v", 1), LS_OK);
    CHECK_RC(ls_txn_prepare(p), LS_OK);
    CHECK_RC(ls_wait_unprepared(e, 5), LS_BUSY);
    if (publish) ls_txn_publish(p);
    else CHECK_RC(ls_txn_unprepare(p), LS_OK);
    CHECK_RC(ls_wait_unprepared(e, 0), LS_OK);
    ls_txn_free(p);
  }
  ls_close(e);
}

static void test_prepared_frozen(void) {
  const char *dir = unit_tmpdir();
  ls_engine *e = unit_open(dir, 0, 0, 0, 0, 0);
  uint32_t t1, t2;
  CHECK_RC(ls_table_create(e, "t1", 1, &t1), LS_OK);
  CHECK_RC(ls_table_create(e, "t2", 1, &t2), LS_OK);
  CHECK_RC(unit_puts(e, t1, "a", "old"), LS_OK);
  ls_txn *p;
  ls_key ka;
  ls_key_set(&ka, "a", 1);
  CHECK_RC(ls_txn_begin(e, &p), LS_OK);
  CHECK_RC(ls_txn_put(p, t1, &ka, "new", 3), LS_OK);
  CHECK_RC(ls_txn_prepare(p), LS_OK);
  uint32_t nobs = p->nobs, nmaps = p->nmaps;
  frozen_arg a = { e, p, t1, t2, 0 };
  pthread_t th;
  pthread_create(&th, NULL, frozen_reader, &a);
  int conflicts = 0;
  for (int i = 0; i < 200; i++) {
    /* Commits the writer checks against p: a read of its key conflicts,
    ** a write elsewhere does not. */
    ls_txn *x;
    CHECK_RC(ls_txn_begin(e, &x), LS_OK);
    char kb[32];
    int kl = snprintf(kb, sizeof kb, "w%d", i);
    ls_key k;
    ls_key_set(&k, kb, (uint32_t)kl);
    if (i % 4 == 0) CHECK_INT(ls_txn_exists(x, t1, &ka), 1);
    CHECK_RC(ls_txn_put(x, (i & 1) ? t2 : t1, &k, kb, (uint32_t)kl), LS_OK);
    if (ls_txn_commit(x) == LS_CONFLICT) conflicts++;
    ls_txn_free(x);
  }
  pthread_join(th, NULL);
  CHECK_INT(a.bad, 0);
  CHECK_INT(conflicts, 50);
  CHECK_INT(p->nobs, nobs);
  CHECK_INT(p->nmaps, nmaps);
  ls_txn_publish(p);
  ls_txn_free(p);
  CHECK(!strcmp(unit_gets(e, t1, "a"), "new"));
  ls_close(e);
}

/* Two transactions in one commit group: T1 writes k, T2 read k before
** that and writes another key.  T2 must conflict, also when the group's
** key set can not be sized (out of memory: the overlays are checked). */
typedef struct group_arg { ls_txn *t; int rc; } group_arg;
static sem_t release_writer;
static _Atomic int writer_held;            /* hold_writer runs on the writer thread */

static int hold_writer(ls_engine *e, void *arg) {
  (void)e; (void)arg;
  atomic_store(&writer_held, 1);
  while (sem_wait(&release_writer)) {}
  return LS_OK;
}
static void *call_hold(void *p) { (void)writer_call(p, hold_writer, NULL); return NULL; }
static void *commit_thread(void *p) {
  group_arg *a = p;
  a->rc = ls_txn_commit(a->t);
  ls_thread_cleanup();
  return NULL;
}
/* Wait until the writer's queue holds n commits (it is held). */
static void queued(ls_engine *e, int n) {
  for (;;) {
    pthread_mutex_lock(&e->writer->lock);
    int k = 0;
    for (commit_req *q = e->writer->head; q; q = q->next) k++;
    /* The hold call was taken (not merely not queued yet: then a commit
    ** queued now could be processed before it, and never be seen). */
    int held = atomic_load(&writer_held);
    pthread_mutex_unlock(&e->writer->lock);
    if (k >= n && held) return;
    sched_yield();
  }
}

static void group_conflict(int nomem) {
  const char *dir = unit_tmpdir();
  ls_engine *e = unit_open(dir, 0, 0, 0, 1, 0);
  uint32_t tb;
  CHECK_RC(ls_table_create(e, "t", 1, &tb), LS_OK);
  CHECK_RC(unit_puts(e, tb, "k", "0"), LS_OK);
  ls_key k, j;
  ls_key_set(&k, "k", 1);
  ls_key_set(&j, "j", 1);
  group_arg a1 = { 0 }, a2 = { 0 };
  CHECK_RC(ls_txn_begin(e, &a1.t), LS_OK);
  CHECK_RC(ls_txn_begin(e, &a2.t), LS_OK);
  CHECK_INT(ls_txn_exists(a2.t, tb, &k), 1);          /* T2 reads k */
  CHECK_RC(ls_txn_put(a1.t, tb, &k, "1", 1), LS_OK);
  CHECK_RC(ls_txn_put(a2.t, tb, &j, "x", 1), LS_OK);
  sem_init(&release_writer, 0, 0);
  atomic_store(&writer_held, 0);
  commit_test_keyset_nomem = nomem;
  pthread_t h, t1, t2;
  pthread_create(&h, NULL, call_hold, e);
  queued(e, 0);
  pthread_create(&t1, NULL, commit_thread, &a1);
  queued(e, 1);
  pthread_create(&t2, NULL, commit_thread, &a2);
  queued(e, 2);
  sem_post(&release_writer);
  pthread_join(h, NULL);
  pthread_join(t1, NULL);
  pthread_join(t2, NULL);
  commit_test_keyset_nomem = 0;
  sem_destroy(&release_writer);
  CHECK_RC(a1.rc, LS_OK);
  CHECK_RC(a2.rc, LS_CONFLICT);
  CHECK(!strcmp(unit_gets(e, tb, "j"), ""));
  ls_txn_free(a1.t);
  ls_txn_free(a2.t);
  ls_close(e);
}
static void test_group_conflict(void) { group_conflict(0); }
static void test_group_conflict_nomem(void) { group_conflict(1); }

/* The index runs out of memory while installing a durable commit: the
** commit stays visible (the reserve is given back), the engine then
** refuses writes, and a reopen has every row. */
static void test_install_nomem(void) {
  const char *dir = unit_tmpdir();
  ls_engine *e = unit_open(dir, 0, 0, 0, 1, 0);
  uint32_t tb;
  CHECK_RC(ls_table_create(e, "t", 1, &tb), LS_OK);
  ls_txn *t;
  CHECK_RC(ls_txn_begin(e, &t), LS_OK);
  char kb[32];
  for (int i = 0; i < 2000; i++) {
    int n = snprintf(kb, sizeof kb, "r%d", i);
    ls_key k;
    ls_key_set(&k, kb, (uint32_t)n);
    CHECK_RC(ls_txn_put(t, tb, &k, kb, (uint32_t)n), LS_OK);
  }
  idx_test_fail_growths(1);
  CHECK_RC(ls_txn_commit(t), LS_OK);
  idx_test_fail_growths(0);
  ls_txn_free(t);
  int missing = 0;
  for (int i = 0; i < 2000; i++) {
    snprintf(kb, sizeof kb, "r%d", i);
    missing += strcmp(unit_gets(e, tb, kb), kb) != 0;
  }
  CHECK_INT(missing, 0);
  CHECK_RC(unit_puts(e, tb, "after", "x"), LS_READONLY);
  ls_close(e);
  e = unit_open(dir, 0, 0, 0, 1, 0);
  missing = 0;
  for (int i = 0; i < 2000; i++) {
    snprintf(kb, sizeof kb, "r%d", i);
    missing += strcmp(unit_gets(e, tb, kb), kb) != 0;
  }
  CHECK_INT(missing, 0);
  CHECK_RC(unit_puts(e, tb, "after", "x"), LS_OK);
  ls_close(e);
}

/* A table truncated between a transaction's prepare and its publish: the
** prepared rows are below the truncation point, so they are not visible,
** now or after a reopen. */
static void test_truncate_before_publish(void) {
  const char *dir = unit_tmpdir();
  ls_engine *e = unit_open(dir, 0, 0, 0, 1, 0);
  uint32_t tb;
  CHECK_RC(ls_table_create(e, "t", 1, &tb), LS_OK);
  ls_txn *t;
  ls_key k;
  ls_key_set(&k, "k", 1);
  CHECK_RC(ls_txn_begin(e, &t), LS_OK);
  CHECK_RC(ls_txn_put(t, tb, &k, "v", 1), LS_OK);
  CHECK_RC(ls_txn_prepare(t), LS_OK);
  CHECK_RC(ls_table_truncate(e, tb), LS_OK);
  ls_txn_publish(t);
  ls_txn_free(t);
  CHECK(!strcmp(unit_gets(e, tb, "k"), ""));
  ls_table_info ti;
  CHECK_RC(ls_table_info_get(e, tb, &ti), LS_OK);
  CHECK_U64(ti.rows, 0);
  unit_check_ok(e);
  ls_close(e);
  e = unit_open(dir, 0, 0, 0, 1, 0);
  CHECK(!strcmp(unit_gets(e, tb, "k"), ""));
  unit_check_ok(e);
  ls_close(e);
}

/* ---- the writer's role -------------------------------------------------- */

typedef struct role_arg {
  ls_engine *e;
  uint32_t t;
  sem_t holding, go;
  int rc;
} role_arg;

/* A writer call that keeps the role until the test says go. */
static int hold_role(ls_engine *e, void *arg) {
  role_arg *a = arg;
  LS_UNUSED(e);
  sem_post(&a->holding);
  while (sem_wait(&a->go)) {}
  return LS_OK;
}

static void *role_holder(void *p) {
  role_arg *a = p;
  a->rc = writer_call(a->e, hold_role, a);
  ls_thread_cleanup();
  return NULL;
}

static void *late_committer(void *p) {
  role_arg *a = p;
  a->rc = unit_puts(a->e, a->t, "late", "1");
  ls_thread_cleanup();
  return NULL;
}

static uint64_t stat_handoffs(ls_engine *e) {
  ls_stats s;
  ls_stats_get(e, &s);
  return s.writer_handoffs;
}

/* Commits one after another run on the committer's thread (no hand-off);
** a commit that finds the role held waits for the writer thread, which
** the holder wakes when it lets go. */
static void test_role(void) {
  const char *dir = unit_tmpdir();
  ls_engine *e = open_fault(dir);
  uint32_t t;
  CHECK_RC(ls_table_create(e, "t", 1, &t), LS_OK);
  ls_stats s0, s1;
  ls_stats_get(e, &s0);
  char kb[32];
  for (int i = 0; i < 50; i++) {
    snprintf(kb, sizeof kb, "k%d", i);
    CHECK_RC(unit_puts(e, t, kb, kb), LS_OK);
  }
  ls_stats_get(e, &s1);
  CHECK_U64(s1.commits - s0.commits, 50);
  CHECK_U64(s1.commit_groups - s0.commit_groups, 50);
  CHECK_U64(s1.writer_handoffs - s0.writer_handoffs, 0);

  role_arg a = { .e = e, .t = t };
  sem_init(&a.holding, 0, 0);
  sem_init(&a.go, 0, 0);
  pthread_t holder, late;
  pthread_create(&holder, NULL, role_holder, &a);
  while (sem_wait(&a.holding)) {}
  role_arg b = { .e = e, .t = t };
  pthread_create(&late, NULL, late_committer, &b);
  /* The late commit is queued (counted before it waits). */
  uint64_t h0 = s1.writer_handoffs;
  struct timespec ms = { 0, 1000000 };
  for (int i = 0; i < 10000 && stat_handoffs(e) == h0; i++) nanosleep(&ms, NULL);   /* at most 10 s */
  CHECK_U64(stat_handoffs(e) - h0, 1);
  CHECK(!row_is(e, t, "late", "1"));
  sem_post(&a.go);
  pthread_join(holder, NULL);
  pthread_join(late, NULL);
  CHECK_RC(a.rc, LS_OK);
  CHECK_RC(b.rc, LS_OK);
  CHECK(row_is(e, t, "late", "1"));
  sem_destroy(&a.holding);
  sem_destroy(&a.go);
  ls_close(e);
}

/* synchronous=normal: a commit made on the committer's own thread leaves
** its sync to the writer thread, which must be woken to time it (N1): the
** sync comes with no further commit. */
static void test_role_normal_sync(void) {
  const char *dir = unit_tmpdir();
  ls_engine *e = open_fault(dir);
  uint32_t t;
  CHECK_RC(ls_table_create(e, "t", 1, &t), LS_OK);
  CHECK_RC(ls_synchronous(e, LS_SYNC_NORMAL, 5), LS_OK);
  ls_stats s0, s1;
  ls_stats_get(e, &s0);
  CHECK_RC(unit_puts(e, t, "a", "1"), LS_OK);     /* written, its sync deferred */
  /* Wait for the event, at most 10 s. */
  struct timespec ts = { 0, 1000000 };
  for (int i = 0; i < 10000; i++) {
    ls_stats_get(e, &s1);
    if (s1.syncs > s0.syncs) break;
    nanosleep(&ts, NULL);
  }
  CHECK_U64(s1.writer_handoffs - s0.writer_handoffs, 0);
  CHECK(s1.syncs > s0.syncs);
  ls_close(e);
}

int main(void) {
  RUN(test_write_eio_once);
  RUN(test_write_eio_persist);
  RUN(test_sync_eio_once);
  RUN(test_sync_eio_persist);
  RUN(test_write_enospc);
  RUN(test_short_writes);
  RUN(test_seal_after_failure);
  RUN(test_format_failure);
  RUN(test_group_commit);
  RUN(test_wait_unprepared);
  RUN(test_prepared_frozen);
  RUN(test_group_conflict);
  RUN(test_group_conflict_nomem);
  RUN(test_install_nomem);
  RUN(test_truncate_before_publish);
  RUN(test_role);
  RUN(test_role_normal_sync);
  return unit_finish();
}
