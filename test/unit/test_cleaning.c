/*
** test_cleaning.c -- the cleaner among everything else: races between
** relocation and user writes, the reserve on a full disk, a slow group, a
** table dropped while written, direct group segments and settling, write
** and sync faults and crashes while cleaning, and readers of stable rows
** while everything moves.  (Also run under ThreadSanitizer.)
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
    seg_ahead_hold(&e->sm, 1);                     /* every write is the compaction's */
    CHECK_RC(ls_io_fault_set(e->io, spec), LS_OK);
    uint64_t f;
    int rc = ls_compact(e, t, &f);
    uint64_t fired = ls_io_fault_injected(e->io);
    seg_ahead_hold(&e->sm, 0);
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


int main(void) {
  RUN(test_race_write_separator);
  RUN(test_race_delete_separator);
  RUN(test_race_write_compaction);
  RUN(test_race_delete_compaction);
  RUN(test_full_disk);
  RUN(test_slow_group);
  RUN(test_drop_while_writing);
  RUN(test_direct_and_settle);
  RUN(test_cleaning_write_faults);
  RUN(test_cleaning_sync_faults);
  RUN(test_kill_while_cleaning);
  RUN(test_readers_while_cleaning);
  return unit_finish();
}
