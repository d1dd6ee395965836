/*
** test_engine.c -- the public engine API: opening, the catalog, reads and
** writes, transactions (read-your-writes, savepoints, conflicts), cursors,
** batched reads, limits, space reuse, stats and the check.  Two-phase
** commit is in test_prepare.c.
*/
#include "unit.h"
#include "catalog.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void key_of(ls_key *k, char *buf, size_t cap, const char *prefix, long i) {
  int n = snprintf(buf, cap, "%s%ld", prefix, i);
  ls_key_set(k, buf, (uint32_t)n);
}

/* ---------------------------------------------------------------------- */

static void test_open_options(void) {
  const char *d = unit_tmpdir();
  char sub[4200];
  snprintf(sub, sizeof sub, "%s/db", d);
  ls_engine *e = NULL;
  CHECK_RC(ls_open(sub, NULL, &e), LS_INVALID);          /* missing, no create */
  ls_options o;
  ls_options_init(&o);
  o.create = 1;
  o.segment_size = 5000;
  CHECK_RC(ls_open(sub, &o, &e), LS_INVALID);
  o.segment_size = 4096;
  CHECK_RC(ls_open(sub, &o, &e), LS_INVALID);
  o.segment_size = 2 << 20;
  CHECK_RC(ls_open(sub, &o, &e), LS_INVALID);
  o.segment_size = 65536;
  o.file_size = 65536 * 3 + 4096;
  CHECK_RC(ls_open(sub, &o, &e), LS_INVALID);
  o.file_size = 65536 * 4;
  o.disk_size = 65536 * 4;                              /* less than two files */
  CHECK_RC(ls_open(sub, &o, &e), LS_INVALID);
  o.disk_size = 65536 * 16;
  o.compaction_policy = LS_POLICY_LFS + 1;
  CHECK_RC(ls_open(sub, &o, &e), LS_INVALID);
  o.compaction_policy = -1;
  CHECK_RC(ls_open(sub, &o, &e), LS_INVALID);
  o.compaction_policy = 0;
  CHECK_RC(ls_open(sub, &o, &e), LS_OK);
  /* A second open in this process shares the engine. */
  ls_engine *e2 = NULL;
  CHECK_RC(ls_open(sub, NULL, &e2), LS_OK);
  CHECK(e2 == e);
  ls_close(e2);
  ls_close(e);
  /* Sizes are fixed at creation. */
  o.segment_size = 131072;
  o.file_size = 0;
  o.disk_size = 0;
  o.create = 0;
  CHECK_RC(ls_open(sub, &o, &e), LS_INVALID);
  CHECK(strstr(ls_errmsg(), "segment_size") != NULL);
  ls_options_init(&o);
  o.disk_size = 65536 * 32;
  CHECK_RC(ls_open(sub, &o, &e), LS_INVALID);
  CHECK(strstr(ls_errmsg(), "disk_size") != NULL);
  e = unit_reopen(sub);
  ls_stats s;
  ls_stats_get(e, &s);
  CHECK(s.io_backend && (!strcmp(s.io_backend, "io_uring") || !strcmp(s.io_backend, "posix")));
  ls_close(e);
}

static void test_busy_other_process(void) {
  const char *d = unit_tmpdir();
  ls_engine *e = unit_open(d, 16384, 65536, 0, 0, 0);
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    ls_engine *x = NULL;
    int rc = ls_open(d, NULL, &x);
    _exit(rc == LS_BUSY && strstr(ls_errmsg(), "in use") ? 0 : 1);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  /* The first process is unharmed. */
  uint32_t id;
  CHECK_RC(ls_table_create(e, "t", 1, &id), LS_OK);
  CHECK_RC(unit_puts(e, id, "k", "v"), LS_OK);
  CHECK(!strcmp(unit_gets(e, id, "k"), "v"));
  ls_close(e);
  /* After close another process may open it. */
  pid = fork();
  if (pid == 0) {
    ls_engine *x = NULL;
    int rc = ls_open(d, NULL, &x);
    int ok = rc == LS_OK && !strcmp(unit_gets(x, id, "k"), "v");
    ls_close(x);
    _exit(ok ? 0 : 1);
  }
  waitpid(pid, &st, 0);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static int count_tables(void *arg, const ls_table_info *t) {
  (*(int *)arg)++;
  (void)t;
  return 0;
}

static void test_catalog(void) {
  const char *d = unit_tmpdir();
  ls_engine *e = unit_open(d, 16384, 65536, 0, 0, 0);
  uint32_t a, b, c;
  CHECK_RC(ls_table_create(e, "alpha", 1, &a), LS_OK);
  CHECK_RC(ls_table_create(e, "beta", 4, &b), LS_OK);
  CHECK(a != b && a != 0 && b != 0);
  CHECK_RC(ls_table_create(e, "x", 0, &c), LS_INVALID);
  char longname[200];
  memset(longname, 'n', sizeof longname - 1);
  longname[sizeof longname - 1] = 0;
  CHECK_RC(ls_table_create(e, longname, 1, &c), LS_INVALID);
  CHECK_RC(unit_puts(e, a, "k", "in alpha"), LS_OK);
  CHECK_RC(unit_puts(e, b, "k", "in beta"), LS_OK);
  CHECK(!strcmp(unit_gets(e, a, "k"), "in alpha"));
  CHECK(!strcmp(unit_gets(e, b, "k"), "in beta"));
  CHECK_RC(ls_table_rename(e, a, "gamma"), LS_OK);
  ls_table_info ti;
  CHECK_RC(ls_table_info_get(e, a, &ti), LS_OK);
  CHECK(!strcmp(ti.name, "gamma"));
  CHECK_U64(ti.rows, 1);
  CHECK_RC(ls_table_info_get(e, b, &ti), LS_OK);
  CHECK_INT(ti.groups, 4);
  CHECK_RC(ls_table_drop(e, b), LS_OK);
  CHECK_INT(ls_table_exists(e, b), 0);
  ls_key k;
  ls_key_set(&k, "k", 1);
  ls_value v = {0};
  CHECK_RC(ls_get(e, b, &k, &v), LS_NOTABLE);
  CHECK_RC(ls_table_drop(e, b), LS_NOTABLE);
  CHECK_RC(unit_puts(e, b, "k", "x"), LS_NOTABLE);
  /* Ids are never reused. */
  CHECK_RC(ls_table_create(e, "beta", 1, &c), LS_OK);
  CHECK(c != a && c != b);
  CHECK(!strcmp(unit_gets(e, c, "k"), ""));
  int n = 0;
  ls_table_foreach(e, count_tables, &n);
  CHECK_INT(n, 2);
  unit_check_ok(e);
  ls_close(e);
  e = unit_reopen(d);
  CHECK(!strcmp(unit_gets(e, a, "k"), "in alpha"));
  CHECK_RC(ls_table_info_get(e, a, &ti), LS_OK);
  CHECK(!strcmp(ti.name, "gamma"));
  CHECK_INT(ls_table_exists(e, b), 0);
  CHECK(!strcmp(unit_gets(e, c, "k"), ""));
  unit_check_ok(e);
  ls_close(e);
  ls_value_free(&v);
}

static void test_truncate(void) {
  const char *d = unit_tmpdir();
  ls_engine *e = unit_open(d, 16384, 65536, 0, 0, 0);
  uint32_t t, u;
  CHECK_RC(ls_table_create(e, "t", 1, &t), LS_OK);
  CHECK_RC(ls_table_create(e, "u", 1, &u), LS_OK);
  char kb[32];
  for (long i = 0; i < 300; i++) {
    ls_key k;
    key_of(&k, kb, sizeof kb, "k", i);
    CHECK_RC(unit_puts(e, t, kb, "old"), LS_OK);
    CHECK_RC(unit_puts(e, u, kb, "keep"), LS_OK);
  }
  CHECK_RC(ls_table_truncate(e, t), LS_OK);
  ls_table_info ti;
  CHECK_RC(ls_table_info_get(e, t, &ti), LS_OK);
  CHECK_U64(ti.rows, 0);
  CHECK(!strcmp(unit_gets(e, t, "k5"), ""));
  CHECK_RC(unit_puts(e, t, "k7", "new"), LS_OK);
  unit_check_ok(e);
  ls_close(e);
  e = unit_reopen(d);
  /* Truncated rows never come back; rows written after do; other tables
  ** are untouched. */
  CHECK(!strcmp(unit_gets(e, t, "k5"), ""));
  CHECK(!strcmp(unit_gets(e, t, "k7"), "new"));
  CHECK(!strcmp(unit_gets(e, u, "k5"), "keep"));
  CHECK_RC(ls_table_info_get(e, t, &ti), LS_OK);
  CHECK_U64(ti.rows, 1);
  unit_check_ok(e);
  ls_close(e);
}

static void test_put_get_delete(void) {
  const char *d = unit_tmpdir();
  ls_engine *e = unit_open(d, 16384, 65536, 0, 0, 0);
  uint32_t t;
  CHECK_RC(ls_table_create(e, "t", 1, &t), LS_OK);
  CHECK(!strcmp(unit_gets(e, t, "a"), ""));
  CHECK_RC(unit_puts(e, t, "a", "1"), LS_OK);
  CHECK_RC(unit_puts(e, t, "a", "2"), LS_OK);
  CHECK(!strcmp(unit_gets(e, t, "a"), "2"));
  CHECK_RC(unit_puts(e, t, "a", NULL), LS_OK);
  CHECK(!strcmp(unit_gets(e, t, "a"), ""));
  CHECK_RC(unit_puts(e, t, "b", NULL), LS_OK);   /* delete of an absent key */
  CHECK_RC(unit_puts(e, t, "c", ""), LS_OK);     /* empty value */
  ls_key k;
  ls_key_set(&k, "c", 1);
  ls_value v = {0};
  CHECK_RC(ls_get(e, t, &k, &v), LS_OK);
  CHECK_INT(v.len, 0);
  CHECK_INT(v.key_len, 1);
  CHECK(v.token == ls_key_token(&k));
  CHECK(ls_token_of("c", 1) == ls_key_token(&k));
  ls_table_info ti;
  CHECK_RC(ls_table_info_get(e, t, &ti), LS_OK);
  CHECK_U64(ti.rows, 1);
  unit_check_ok(e);
  ls_close(e);
  e = unit_reopen(d);
  CHECK(!strcmp(unit_gets(e, t, "a"), ""));
  CHECK_RC(ls_get(e, t, &k, &v), LS_OK);
  CHECK_INT(v.len, 0);
  CHECK_RC(ls_table_info_get(e, t, &ti), LS_OK);
  CHECK_U64(ti.rows, 1);
  unit_check_ok(e);
  ls_close(e);
  ls_value_free(&v);
}

static void test_limits(void) {
  const char *d = unit_tmpdir();
  ls_engine *e = unit_open(d, 16384, 65536, 0, 0, 0);
  uint32_t t;
  CHECK_RC(ls_table_create(e, "t", 1, &t), LS_OK);
  uint32_t maxv = ls_max_value(e, 3);
  CHECK_INT(maxv, 16384 - 48 - 24 - 3);
  char *big = malloc(70000);
  memset(big, 'x', 70000);
  ls_txn *x;
  CHECK_RC(ls_txn_begin(e, &x), LS_OK);
  ls_key k;
  ls_key_set(&k, "max", 3);
  CHECK_RC(ls_txn_put(x, t, &k, big, maxv), LS_OK);
  ls_key k2;
  ls_key_set(&k2, "big", 3);
  CHECK_RC(ls_txn_put(x, t, &k2, big, maxv + 1), LS_TOOBIG);
  CHECK(strstr(ls_errmsg(), "does not fit") != NULL);
  ls_key kk;
  ls_key_set(&kk, big, 65536);
  CHECK_RC(ls_txn_put(x, t, &kk, "v", 1), LS_TOOBIG);
  CHECK_RC(ls_txn_commit(x), LS_OK);
  ls_txn_free(x);
  ls_value v = {0};
  CHECK_RC(ls_get(e, t, &k, &v), LS_OK);
  CHECK_INT(v.len, maxv);
  CHECK(v.len == maxv && memcmp(v.data, big, maxv) == 0);
  CHECK_RC(ls_get(e, t, &k2, &v), LS_NOTFOUND);
  /* A 65535-byte key fits a 128 KiB segment. */
  ls_close(e);
  const char *d2 = unit_tmpdir();
  e = unit_open(d2, 131072, 262144, 0, 0, 0);
  CHECK_RC(ls_table_create(e, "t", 1, &t), LS_OK);
  ls_key_set(&kk, big, 65535);
  CHECK_RC(ls_txn_begin(e, &x), LS_OK);
  CHECK_RC(ls_txn_put(x, t, &kk, "v", 1), LS_OK);
  CHECK_RC(ls_txn_commit(x), LS_OK);
  ls_txn_free(x);
  CHECK_RC(ls_get(e, t, &kk, &v), LS_OK);
  CHECK_INT(v.key_len, 65535);
  ls_close(e);
  e = unit_reopen(d2);
  CHECK_RC(ls_get(e, t, &kk, &v), LS_OK);
  CHECK_INT(v.len, 1);
  unit_check_ok(e);
  ls_close(e);
  ls_value_free(&v);
  free(big);
}

static void test_txn_visibility(void) {
  const char *d = unit_tmpdir();
  ls_engine *e = unit_open(d, 16384, 65536, 0, 0, 0);
  uint32_t t;
  CHECK_RC(ls_table_create(e, "t", 1, &t), LS_OK);
  CHECK_RC(unit_puts(e, t, "a", "committed"), LS_OK);
  ls_txn *x;
  CHECK_RC(ls_txn_begin(e, &x), LS_OK);
  ls_key ka, kb;
  ls_key_set(&ka, "a", 1);
  ls_key_set(&kb, "b", 1);
  ls_value v = {0};
  CHECK_RC(ls_txn_get(x, t, &ka, &v), LS_OK);
  CHECK(v.len == 9 && !memcmp(v.data, "committed", 9));
  CHECK_RC(ls_txn_put(x, t, &kb, "mine", 4), LS_OK);
  CHECK_RC(ls_txn_delete(x, t, &ka), LS_OK);
  /* Own writes are visible to the transaction only. */
  CHECK_RC(ls_txn_get(x, t, &kb, &v), LS_OK);
  CHECK(v.len == 4 && !memcmp(v.data, "mine", 4));
  CHECK_RC(ls_txn_get(x, t, &ka, &v), LS_NOTFOUND);
  CHECK_INT(ls_txn_exists(x, t, &ka), 0);
  CHECK_INT(ls_txn_exists(x, t, &kb), 1);
  CHECK(!strcmp(unit_gets(e, t, "a"), "committed"));
  CHECK(!strcmp(unit_gets(e, t, "b"), ""));
  CHECK_U64(ls_txn_size(x), 2);
  CHECK_RC(ls_txn_commit(x), LS_OK);
  CHECK_RC(ls_txn_commit(x), LS_INVALID);
  CHECK_RC(ls_txn_put(x, t, &kb, "late", 4), LS_INVALID);
  ls_txn_free(x);
  CHECK(!strcmp(unit_gets(e, t, "a"), ""));
  CHECK(!strcmp(unit_gets(e, t, "b"), "mine"));
  /* A transaction freed without commit leaves nothing. */
  CHECK_RC(ls_txn_begin(e, &x), LS_OK);
  CHECK_RC(ls_txn_put(x, t, &ka, "never", 5), LS_OK);
  ls_txn_free(x);
  CHECK(!strcmp(unit_gets(e, t, "a"), ""));
  /* A read-only transaction commits. */
  CHECK_RC(ls_txn_begin(e, &x), LS_OK);
  CHECK_RC(ls_txn_get(x, t, &kb, &v), LS_OK);
  CHECK_RC(ls_txn_commit(x), LS_OK);
  ls_txn_free(x);
  ls_value_free(&v);
  ls_close(e);
}

static void test_savepoints(void) {
  const char *d = unit_tmpdir();
  ls_engine *e = unit_open(d, 16384, 65536, 0, 0, 0);
  uint32_t t, u;
  CHECK_RC(ls_table_create(e, "t", 1, &t), LS_OK);
  CHECK_RC(ls_table_create(e, "u", 1, &u), LS_OK);
  CHECK_RC(unit_puts(e, t, "a", "c0"), LS_OK);
  ls_txn *x;
  CHECK_RC(ls_txn_begin(e, &x), LS_OK);
  ls_key ka, kb, kc;
  ls_key_set(&ka, "a", 1);
  ls_key_set(&kb, "b", 1);
  ls_key_set(&kc, "c", 1);
  ls_value v = {0};
  CHECK_RC(ls_txn_put(x, t, &ka, "a1", 2), LS_OK);
  int m1 = ls_txn_savepoint(x);
  CHECK_RC(ls_txn_put(x, t, &ka, "a2", 2), LS_OK);
  CHECK_RC(ls_txn_put(x, t, &kb, "b2", 2), LS_OK);
  CHECK_RC(ls_txn_put(x, u, &kb, "ub", 2), LS_OK);
  int m2 = ls_txn_savepoint(x);
  CHECK_RC(ls_txn_delete(x, t, &ka), LS_OK);
  CHECK_RC(ls_txn_put(x, t, &kc, "c3", 2), LS_OK);
  CHECK_RC(ls_txn_get(x, t, &ka, &v), LS_NOTFOUND);
  CHECK_RC(ls_txn_rollback_to(x, m2), LS_OK);
  CHECK_RC(ls_txn_get(x, t, &ka, &v), LS_OK);
  CHECK(v.len == 2 && !memcmp(v.data, "a2", 2));
  CHECK_RC(ls_txn_get(x, t, &kc, &v), LS_NOTFOUND);
  CHECK_RC(ls_txn_rollback_to(x, m1), LS_OK);
  CHECK_RC(ls_txn_get(x, t, &ka, &v), LS_OK);
  CHECK(v.len == 2 && !memcmp(v.data, "a1", 2));
  CHECK_RC(ls_txn_get(x, t, &kb, &v), LS_NOTFOUND);
  CHECK_RC(ls_txn_get(x, u, &kb, &v), LS_NOTFOUND);
  CHECK_RC(ls_txn_rollback_to(x, 99), LS_INVALID);
  CHECK_RC(ls_txn_put(x, t, &kc, "c4", 2), LS_OK);
  CHECK_RC(ls_txn_commit(x), LS_OK);
  ls_txn_free(x);
  CHECK(!strcmp(unit_gets(e, t, "a"), "a1"));
  CHECK(!strcmp(unit_gets(e, t, "b"), ""));
  CHECK(!strcmp(unit_gets(e, t, "c"), "c4"));
  CHECK(!strcmp(unit_gets(e, u, "b"), ""));
  /* Rolling back everything leaves a read-only transaction. */
  CHECK_RC(ls_txn_begin(e, &x), LS_OK);
  CHECK_RC(ls_txn_put(x, t, &ka, "zz", 2), LS_OK);
  CHECK_RC(ls_txn_rollback_to(x, 0), LS_OK);
  CHECK_U64(ls_txn_size(x), 0);
  CHECK_RC(ls_txn_commit(x), LS_OK);
  ls_txn_free(x);
  CHECK(!strcmp(unit_gets(e, t, "a"), "a1"));
  ls_close(e);
  e = unit_reopen(d);
  CHECK(!strcmp(unit_gets(e, t, "a"), "a1"));
  CHECK(!strcmp(unit_gets(e, t, "c"), "c4"));
  unit_check_ok(e);
  ls_close(e);
  ls_value_free(&v);
}

static void test_conflicts(void) {
  const char *d = unit_tmpdir();
  ls_engine *e = unit_open(d, 16384, 65536, 0, 0, 0);
  uint32_t t;
  CHECK_RC(ls_table_create(e, "t", 1, &t), LS_OK);
  CHECK_RC(unit_puts(e, t, "k", "v0"), LS_OK);
  ls_key k, n;
  ls_key_set(&k, "k", 1);
  ls_key_set(&n, "new", 3);
  ls_value v = {0};
  /* Read, someone else writes, write: conflict, nothing written. */
  ls_txn *a;
  CHECK_RC(ls_txn_begin(e, &a), LS_OK);
  CHECK_RC(ls_txn_get(a, t, &k, &v), LS_OK);
  CHECK_RC(unit_puts(e, t, "k", "v1"), LS_OK);
  CHECK_RC(ls_txn_put(a, t, &k, "va", 2), LS_OK);
  CHECK_RC(ls_txn_put(a, t, &n, "x", 1), LS_OK);
  CHECK_RC(ls_txn_commit(a), LS_CONFLICT);
  ls_txn_free(a);
  CHECK(!strcmp(unit_gets(e, t, "k"), "v1"));
  CHECK(!strcmp(unit_gets(e, t, "new"), ""));
  /* Seen absent, inserted by someone else: conflict. */
  CHECK_RC(ls_txn_begin(e, &a), LS_OK);
  CHECK_INT(ls_txn_exists(a, t, &n), 0);
  CHECK_RC(unit_puts(e, t, "new", "other"), LS_OK);
  CHECK_RC(ls_txn_put(a, t, &n, "mine", 4), LS_OK);
  CHECK_RC(ls_txn_commit(a), LS_CONFLICT);
  ls_txn_free(a);
  CHECK(!strcmp(unit_gets(e, t, "new"), "other"));
  /* Seen present, deleted by someone else: conflict. */
  CHECK_RC(ls_txn_begin(e, &a), LS_OK);
  CHECK_RC(ls_txn_get(a, t, &n, &v), LS_OK);
  CHECK_RC(unit_puts(e, t, "new", NULL), LS_OK);
  CHECK_RC(ls_txn_put(a, t, &n, "again", 5), LS_OK);
  CHECK_RC(ls_txn_commit(a), LS_CONFLICT);
  ls_txn_free(a);
  CHECK(!strcmp(unit_gets(e, t, "new"), ""));
  /* Blind writes never conflict; reads of unchanged keys pass. */
  CHECK_RC(ls_txn_begin(e, &a), LS_OK);
  CHECK_RC(ls_txn_get(a, t, &k, &v), LS_OK);
  CHECK_RC(ls_txn_put(a, t, &n, "blind", 5), LS_OK);
  CHECK_RC(unit_puts(e, t, "new", "interleaved"), LS_OK);
  CHECK_RC(ls_txn_put(a, t, &k, "vb", 2), LS_OK);
  CHECK_RC(ls_txn_commit(a), LS_OK);
  ls_txn_free(a);
  CHECK(!strcmp(unit_gets(e, t, "new"), "blind"));
  CHECK(!strcmp(unit_gets(e, t, "k"), "vb"));
  ls_stats s;
  ls_stats_get(e, &s);
  CHECK_U64(s.conflicts, 3);
  ls_value_free(&v);
  ls_close(e);
}

static void test_get_many(void) {
  const char *d = unit_tmpdir();
  ls_engine *e = unit_open(d, 16384, 65536, 0, 0, 0);
  uint32_t t;
  CHECK_RC(ls_table_create(e, "t", 1, &t), LS_OK);
  char bufs[10][16];
  ls_key keys[10];
  for (int i = 0; i < 10; i++) {
    key_of(&keys[i], bufs[i], sizeof bufs[i], "m", i);
    if (i % 3) CHECK_RC(unit_puts(e, t, bufs[i], bufs[i]), LS_OK);
  }
  ls_value vals[10];
  int rcs[10];
  memset(vals, 0, sizeof vals);
  CHECK_RC(ls_get_many(e, NULL, t, 10, keys, vals, rcs), LS_OK);
  for (int i = 0; i < 10; i++) {
    CHECK_RC(rcs[i], i % 3 ? LS_OK : LS_NOTFOUND);
    if (i % 3) CHECK(vals[i].len == keys[i].len && !memcmp(vals[i].data, bufs[i], vals[i].len));
  }
  /* Through a transaction: own writes first. */
  ls_txn *x;
  CHECK_RC(ls_txn_begin(e, &x), LS_OK);
  CHECK_RC(ls_txn_put(x, t, &keys[0], "own", 3), LS_OK);
  CHECK_RC(ls_txn_delete(x, t, &keys[1]), LS_OK);
  CHECK_RC(ls_get_many(e, x, t, 10, keys, vals, rcs), LS_OK);
  CHECK_RC(rcs[0], LS_OK);
  CHECK(vals[0].len == 3 && !memcmp(vals[0].data, "own", 3));
  CHECK_RC(rcs[1], LS_NOTFOUND);
  CHECK_RC(rcs[2], LS_OK);
  CHECK_RC(rcs[3], LS_NOTFOUND);
  /* The keys read through the transaction are now observed: a concurrent
  ** change to one of them makes the commit fail. */
  CHECK_RC(unit_puts(e, t, bufs[2], "changed"), LS_OK);
  CHECK_RC(ls_txn_commit(x), LS_CONFLICT);
  ls_txn_free(x);
  for (int i = 0; i < 10; i++) ls_value_free(&vals[i]);
  ls_close(e);
}

static void test_cursor(void) {
  const char *d = unit_tmpdir();
  ls_engine *e = unit_open(d, 16384, 65536, 0, 0, 0);
  uint32_t t, u;
  CHECK_RC(ls_table_create(e, "t", 1, &t), LS_OK);
  CHECK_RC(ls_table_create(e, "u", 1, &u), LS_OK);
  enum { N = 1000 };
  char kb[32];
  ls_txn *x;
  CHECK_RC(ls_txn_begin(e, &x), LS_OK);
  for (long i = 0; i < N; i++) {
    ls_key k;
    key_of(&k, kb, sizeof kb, "row", i);
    CHECK_RC(ls_txn_put(x, t, &k, kb, k.len), LS_OK);
    if (i < 10) CHECK_RC(ls_txn_put(x, u, &k, "other", 5), LS_OK);
  }
  CHECK_RC(ls_txn_commit(x), LS_OK);
  ls_txn_free(x);
  CHECK_RC(unit_puts(e, t, "row5", NULL), LS_OK);
  ls_cursor *c;
  CHECK_RC(ls_cursor_open(e, NULL, t, &c), LS_OK);
  CHECK_RC(ls_cursor_seek(c, INT64_MIN), LS_OK);
  long n = 0;
  int64_t prev = INT64_MIN;
  int ordered = 1, keys_match = 1;
  while (ls_cursor_valid(c)) {
    const ls_value *r = ls_cursor_row(c);
    if (r->token < prev) ordered = 0;
    prev = r->token;
    if (r->len != r->key_len || memcmp(r->data, r->key, r->len)) keys_match = 0;
    if (ls_token_of(r->key, r->key_len) != r->token) keys_match = 0;
    n++;
    CHECK_RC(ls_cursor_next(c), LS_OK);
  }
  CHECK_INT(n, N - 1);
  CHECK(ordered);
  CHECK(keys_match);
  /* Seek to a token: only rows at or above it. */
  int64_t mid = ls_token_of("row500", 6);
  CHECK_RC(ls_cursor_seek(c, mid), LS_OK);
  long above = 0;
  int all_above = 1;
  while (ls_cursor_valid(c)) {
    if (ls_cursor_row(c)->token < mid) all_above = 0;
    above++;
    CHECK_RC(ls_cursor_next(c), LS_OK);
  }
  CHECK(all_above);
  CHECK(above > 0 && above < N);
  CHECK_RC(ls_cursor_seek(c, INT64_MAX), LS_OK);
  CHECK_INT(ls_cursor_valid(c), 0);
  ls_cursor_close(c);
  /* With a transaction: own inserts appear, own deletes hide, own updates
  ** replace, all in token order. */
  CHECK_RC(ls_txn_begin(e, &x), LS_OK);
  ls_key k;
  key_of(&k, kb, sizeof kb, "row", 7);
  CHECK_RC(ls_txn_delete(x, t, &k), LS_OK);
  key_of(&k, kb, sizeof kb, "row", 8);
  CHECK_RC(ls_txn_put(x, t, &k, "updated", 7), LS_OK);
  key_of(&k, kb, sizeof kb, "extra", 1);
  CHECK_RC(ls_txn_put(x, t, &k, "inserted", 8), LS_OK);
  key_of(&k, kb, sizeof kb, "row", 5);
  CHECK_RC(ls_txn_put(x, t, &k, "revived", 7), LS_OK);
  CHECK_RC(ls_cursor_open(e, x, t, &c), LS_OK);
  CHECK_RC(ls_cursor_seek(c, INT64_MIN), LS_OK);
  n = 0;
  prev = INT64_MIN;
  ordered = 1;
  int saw_upd = 0, saw_ins = 0, saw_del = 0, saw_rev = 0;
  while (ls_cursor_valid(c)) {
    const ls_value *r = ls_cursor_row(c);
    if (r->token < prev) ordered = 0;
    prev = r->token;
    if (r->key_len == 4 && !memcmp(r->key, "row8", 4)) saw_upd = r->len == 7 && !memcmp(r->data, "updated", 7);
    if (r->key_len == 6 && !memcmp(r->key, "extra1", 6)) saw_ins = 1;
    if (r->key_len == 4 && !memcmp(r->key, "row7", 4)) saw_del = 1;
    if (r->key_len == 4 && !memcmp(r->key, "row5", 4)) saw_rev = r->len == 7;
    n++;
    CHECK_RC(ls_cursor_next(c), LS_OK);
  }
  CHECK_INT(n, N - 1 - 1 + 1 + 1);
  CHECK(ordered);
  CHECK(saw_upd && saw_ins && !saw_del && saw_rev);
  ls_cursor_close(c);
  ls_txn_free(x);
  /* Scanning a dropped table is an error. */
  CHECK_RC(ls_cursor_open(e, NULL, u, &c), LS_OK);
  CHECK_RC(ls_table_drop(e, u), LS_OK);
  CHECK_RC(ls_cursor_seek(c, INT64_MIN), LS_NOTABLE);
  ls_cursor_close(c);
  ls_close(e);
}

/* A transaction larger than a segment streams through several segments and
** data files, and is atomic across a reopen. */
static void test_big_transaction(void) {
  const char *d = unit_tmpdir();
  ls_engine *e = unit_open(d, 8192, 32768, 0, 0, 0);
  uint32_t t;
  CHECK_RC(ls_table_create(e, "t", 1, &t), LS_OK);
  CHECK_RC(unit_puts(e, t, "before", "x"), LS_OK);
  char kb[32], val[200];
  memset(val, 'v', sizeof val);
  ls_txn *x;
  CHECK_RC(ls_txn_begin(e, &x), LS_OK);
  enum { N = 3000 };
  for (long i = 0; i < N; i++) {
    ls_key k;
    key_of(&k, kb, sizeof kb, "big", i);
    memcpy(val, &i, sizeof i);
    CHECK_RC(ls_txn_put(x, t, &k, val, sizeof val), LS_OK);
  }
  CHECK_RC(ls_txn_commit(x), LS_OK);
  ls_txn_free(x);
  CHECK_RC(unit_puts(e, t, "after", "y"), LS_OK);
  ls_close(e);
  e = unit_reopen(d);
  ls_table_info ti;
  CHECK_RC(ls_table_info_get(e, t, &ti), LS_OK);
  CHECK_U64(ti.rows, N + 2);
  ls_value v = {0};
  int bad = 0;
  for (long i = 0; i < N; i++) {
    ls_key k;
    key_of(&k, kb, sizeof kb, "big", i);
    long got = -1;
    if (ls_get(e, t, &k, &v) || v.len != sizeof val) bad++;
    else { memcpy(&got, v.data, sizeof got); if (got != i) bad++; }
  }
  CHECK_INT(bad, 0);
  CHECK(!strcmp(unit_gets(e, t, "after"), "y"));
  unit_check_ok(e);
  ls_stats s;
  ls_stats_get(e, &s);
  CHECK(s.data_file_bytes >= 3000 * 200);
  ls_value_free(&v);
  ls_close(e);
}

/* disk_size limits: a transaction that does not fit fails with LS_FULL and
** leaves nothing; the engine stays writable. */
static void test_full(void) {
  const char *d = unit_tmpdir();
  ls_engine *e = unit_open(d, 8192, 32768, 65536, 0, 0);
  uint32_t t;
  CHECK_RC(ls_table_create(e, "t", 1, &t), LS_OK);
  char kb[32], val[1000];
  memset(val, 'f', sizeof val);
  ls_txn *x;
  CHECK_RC(ls_txn_begin(e, &x), LS_OK);
  for (long i = 0; i < 200; i++) {
    ls_key k;
    key_of(&k, kb, sizeof kb, "full", i);
    CHECK_RC(ls_txn_put(x, t, &k, val, sizeof val), LS_OK);
  }
  CHECK_RC(ls_txn_commit(x), LS_FULL);
  ls_txn_free(x);
  CHECK(!strcmp(unit_gets(e, t, "full0"), ""));
  CHECK_RC(unit_puts(e, t, "small", "fits"), LS_OK);
  CHECK(!strcmp(unit_gets(e, t, "small"), "fits"));
  ls_stats s;
  ls_stats_get(e, &s);
  CHECK_INT(s.failed, 0);
  /* Fill with live rows until full; reads keep working. */
  int rc = LS_OK;
  long i;
  for (i = 0; i < 1000 && rc == LS_OK; i++) {
    snprintf(kb, sizeof kb, "live%ld", i);
    rc = unit_puts(e, t, kb, "0123456789012345678901234567890123456789");
  }
  CHECK_RC(rc, LS_FULL);
  CHECK(i > 10);
  CHECK(!strcmp(unit_gets(e, t, "small"), "fits"));
  CHECK(!strcmp(unit_gets(e, t, "live3"), "0123456789012345678901234567890123456789"));
  unit_check_ok(e);
  ls_close(e);
  e = unit_reopen(d);
  CHECK(!strcmp(unit_gets(e, t, "live3"), "0123456789012345678901234567890123456789"));
  CHECK(!strcmp(unit_gets(e, t, "full1"), ""));
  unit_check_ok(e);
  ls_close(e);
}

/* Overwriting a few keys far more than the disk holds: sealed segments whose
** records are all dead are reused. */
static void test_space_reuse(void) {
  const char *d = unit_tmpdir();
  ls_engine *e = unit_open(d, 8192, 32768, 65536, 0, 0);
  uint32_t t;
  CHECK_RC(ls_table_create(e, "t", 1, &t), LS_OK);
  char kb[32], val[64];
  int rc = LS_OK;
  long i;
  for (i = 0; i < 20000 && rc == LS_OK; i++) {
    snprintf(kb, sizeof kb, "hot%ld", i % 10);
    snprintf(val, sizeof val, "value %ld", i);
    rc = unit_puts(e, t, kb, val);
  }
  CHECK_RC(rc, LS_OK);
  for (int j = 0; j < 10; j++) {
    snprintf(kb, sizeof kb, "hot%d", j);
    snprintf(val, sizeof val, "value %d", 20000 - 10 + j);
    CHECK(!strcmp(unit_gets(e, t, kb), val));
  }
  ls_stats s;
  ls_stats_get(e, &s);
  CHECK(s.user_bytes_written > 10 * 65536);
  CHECK(s.segments_free > 0);
  unit_check_ok(e);
  ls_close(e);
  e = unit_reopen(d);
  for (int j = 0; j < 10; j++) {
    snprintf(kb, sizeof kb, "hot%d", j);
    snprintf(val, sizeof val, "value %d", 20000 - 10 + j);
    CHECK(!strcmp(unit_gets(e, t, kb), val));
  }
  unit_check_ok(e);
  ls_close(e);
}

static int count_states(void *arg, const ls_segment_info *s) {
  int *n = arg;
  if (!strcmp(s->state, "free")) n[0]++;
  else if (!strcmp(s->state, "active")) n[1]++;
  else if (!strcmp(s->state, "sealed")) n[2]++;
  if (strcmp(s->kind, "mixed") && strcmp(s->kind, "group")) n[3]++;
  return 0;
}

static void test_stats_segments(void) {
  const char *d = unit_tmpdir();
  ls_engine *e = unit_open(d, 8192, 32768, 0, 0, 0);
  uint32_t t;
  CHECK_RC(ls_table_create(e, "t", 1, &t), LS_OK);
  ls_stats s0, s1;
  ls_stats_get(e, &s0);
  char kb[32];
  for (long i = 0; i < 200; i++) {
    snprintf(kb, sizeof kb, "s%ld", i);
    CHECK_RC(unit_puts(e, t, kb, "0123456789abcdef"), LS_OK);
  }
  ls_stats_get(e, &s1);
  CHECK_U64(s1.commits - s0.commits, 200);
  CHECK(s1.commit_groups - s0.commit_groups <= 200);
  CHECK(s1.syncs >= s1.commit_groups);
  CHECK_U64(s1.records_live, 200);
  CHECK(s1.bytes_live == 200 * (uint64_t)ls_rec_size(4, 16) || s1.bytes_live > 0);
  CHECK(s1.index_bytes > 0);
  CHECK(s1.user_bytes_written >= s1.bytes_live);
  CHECK(s1.bytes_written >= s1.user_bytes_written);
  CHECK(s1.write_seq > s0.write_seq);
  int n[4] = {0, 0, 0, 0};
  ls_segment_foreach(e, count_states, n);
  CHECK_INT(n[0] + n[1] + n[2], (int)s1.segments_total);
  CHECK_INT(n[1], 1);
  CHECK(n[2] >= 1);
  CHECK_INT(n[3], 0);
  CHECK_INT(n[0], (int)s1.segments_free);
  ls_close(e);
  e = unit_reopen(d);                   /* from the checkpoint of the clean close */
  ls_stats_get(e, &s1);
  CHECK_U64(s1.recovery_checkpoint, 1);
  CHECK_U64(s1.recovery_records, 0);
  CHECK(s1.recovery_segments > 0);
  CHECK_U64(s1.records_live, 200);
  ls_close(e);
  char ck[4200];                   /* without it: a scan */
  snprintf(ck, sizeof ck, "%s/CHECKPOINT", d);
  CHECK(unlink(ck) == 0);
  e = unit_reopen(d);
  ls_stats_get(e, &s1);
  CHECK_U64(s1.recovery_checkpoint, 0);
  CHECK(s1.recovery_records >= 200);
  CHECK(s1.recovery_segments > 0);
  CHECK_U64(s1.records_live, 200);
  ls_close(e);
}

int main(void) {
  RUN(test_open_options);
  RUN(test_busy_other_process);
  RUN(test_catalog);
  RUN(test_truncate);
  RUN(test_put_get_delete);
  RUN(test_limits);
  RUN(test_txn_visibility);
  RUN(test_savepoints);
  RUN(test_conflicts);
  RUN(test_get_many);
  RUN(test_cursor);
  RUN(test_big_transaction);
  RUN(test_full);
  RUN(test_space_reuse);
  RUN(test_stats_segments);
  return unit_finish();
}
