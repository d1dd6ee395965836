/*
** test_checkpoint.c -- index checkpoints (checkpoint.c, K1-K5): a clean
** close leaves CHECKPOINT, the next open loads it instead of scanning and
** removes it, and what it loads is what a scan finds; a checkpoint with a
** flipped bit or cut short, or one that no longer matches the data files
** (rows written, a table truncated, a segment header damaged since), is
** ignored and the open scans everything, with the same result it would
** have had without one.  Kill -9 and power loss with and without a
** checkpoint are in crash.test and test_powerloss.
*/
#include "unit.h"
#include "checkpoint.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define KB 1024u
#define NTAB 2
#define NKEY 200

typedef struct model { char *v[NTAB][NKEY]; } model;

static uint32_t tid[NTAB];

static void model_set(model *m, int t, int k, const char *v) {
  free(m->v[t][k]);
  m->v[t][k] = v ? strdup(v) : NULL;
}

static void model_free(model *m) {
  for (int t = 0; t < NTAB; t++)
    for (int k = 0; k < NKEY; k++) model_set(m, t, k, NULL);
}

static int find_table(void *arg, const ls_table_info *ti) {
  int i = ti->name[1] - '1';
  if (i >= 0 && i < NTAB) tid[i] = ti->id;
  (void)arg;
  return 0;
}

static ls_engine *open_dir_manual(const char *dir, int on_damage, int manual, int *rc) {
  ls_options o;
  ls_options_init(&o);
  o.on_damage = on_damage;
  o.manual_cleaning = manual;
  ls_engine *e = NULL;
  *rc = ls_open(dir, &o, &e);
  if (!*rc) ls_table_foreach(e, find_table, NULL);
  return e;
}

static ls_engine *open_dir(const char *dir, int on_damage, int *rc) { return open_dir_manual(dir, on_damage, 0, rc); }

/* Every key of m reads as in m, and scans count no more rows. */
static int rows_equal(ls_engine *e, const model *m) {
  for (int t = 0; t < NTAB; t++) {
    int want = 0, n = 0;
    for (int k = 0; k < NKEY; k++) {
      char kb[16];
      snprintf(kb, sizeof kb, "key%03d", k);
      const char *got = unit_gets(e, tid[t], kb), *w = m->v[t][k];
      if (strcmp(got, w ? w : "")) {
        unit_fail(__FILE__, __LINE__, "table %d %s: expected %.20s, got %.40s", t + 1, kb, w ? w : "(absent)", got);
        return 0;
      }
      want += w != NULL;
    }
    ls_cursor *c = NULL;
    int rc = ls_cursor_open(e, NULL, tid[t], &c);
    for (rc = rc ? rc : ls_cursor_seek(c, INT64_MIN); !rc && ls_cursor_valid(c); rc = ls_cursor_next(c)) n++;
    ls_cursor_close(c);
    if (rc || n != want) {
      unit_fail(__FILE__, __LINE__, "table %d: a scan finds %d rows, expected %d", t + 1, n, want);
      return 0;
    }
  }
  return 1;
}

/* n seeded random commits (puts and deletes of NKEY keys per table, values
** of 10..1500 bytes), with flushes and compactions now and then. */
static void work(ls_engine *e, model *m, uint64_t *rng, int n) {
  for (int i = 0; i < n; i++) {
    uint64_t x = unit_rand(rng);
    if (x % 41 == 0) {
      uint64_t f;
      CHECK_RC(x % 2 ? ls_flush(e, tid[x % NTAB], &f) : ls_compact(e, tid[x % NTAB], &f), LS_OK);
      continue;
    }
    ls_txn *t = NULL;
    CHECK_RC(ls_txn_begin(e, &t), LS_OK);
    int nw = 1 + (int)(x % 5);
    char val[1600];
    for (int j = 0; j < nw; j++) {
      uint64_t y = unit_rand(rng);
      int tb = (int)(y % NTAB), k = (int)((y >> 8) % NKEY);
      char kb[16];
      snprintf(kb, sizeof kb, "key%03d", k);
      ls_key key;
      ls_key_set(&key, kb, (uint32_t)strlen(kb));
      if (y % 5 == 0) {
        CHECK_RC(ls_txn_delete(t, tid[tb], &key), LS_OK);
        model_set(m, tb, k, NULL);
      } else {
        size_t len = 10 + (size_t)((y >> 20) % 1490);
        int h = snprintf(val, sizeof val, "c%d.%d:", i, j);
        for (size_t b = (size_t)h; b < len; b++) val[b] = (char)('a' + (b + (size_t)i) % 26);
        val[len] = 0;
        CHECK_RC(ls_txn_put(t, tid[tb], &key, val, (uint32_t)len), LS_OK);
        model_set(m, tb, k, val);
      }
    }
    CHECK_RC(ls_txn_commit(t), LS_OK);
    ls_txn_free(t);
  }
}

static char *path_of(const char *dir, const char *name) {
  static char p[8400];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  return p;
}

/* Close e: a clean close of an engine with a background cleaner finishes
** its settling and separation first, so it always writes a checkpoint
** (K1), whatever the cleaner's timing (it used to skip it about one close
** in eight on a busy machine). */
static void close_with_ckpt(const char *dir, ls_engine *e) {
  ls_close(e);
  CHECK(access(path_of(dir, CKPT_NAME), F_OK) == 0);
}

static void build(const char *dir, model *m, uint64_t *rng) {
  ls_engine *e = unit_open(dir, 8 * KB, 128 * KB, 0, 0, 0);
  if (!e) return;
  CHECK_RC(ls_table_create(e, "t1", 2, &tid[0]), LS_OK);
  CHECK_RC(ls_table_create(e, "t2", 1, &tid[1]), LS_OK);
  work(e, m, rng, 400);
  close_with_ckpt(dir, e);
}

static int has_ckpt(const char *dir) { return access(path_of(dir, CKPT_NAME), F_OK) == 0; }

static uint8_t *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *b = malloc(n > 0 ? (size_t)n : 1);
  *len = fread(b, 1, (size_t)n, f);
  fclose(f);
  return b;
}

static void spit(const char *path, const uint8_t *b, size_t len) {
  FILE *f = fopen(path, "wb");
  CHECK(f != NULL);
  if (!f) return;
  CHECK(fwrite(b, 1, len, f) == len);
  fclose(f);
}

/* Open dir; the open must (or must not) have used a checkpoint; the rows
** must be m's and the check clean.  Returns the engine's counters. */
static ls_stats reopen_check(const char *dir, const model *m, int want_ckpt) {
  int rc;
  ls_stats s;
  memset(&s, 0, sizeof s);
  ls_engine *e = open_dir(dir, LS_ON_DAMAGE_ERROR, &rc);
  CHECK_RC(rc, LS_OK);
  if (!e) return s;
  s = unit_stats(e);
  CHECK_U64(s.recovery_checkpoint, want_ckpt);
  if (want_ckpt) CHECK_U64(s.recovery_records, 0);
  CHECK(!has_ckpt(dir));                         /* K3: consumed */
  CHECK(rows_equal(e, m));
  unit_check_ok(e);
  ls_close(e);
  return s;
}

/* ---- a clean close, and the same state from a checkpoint and a scan ---------- */

/* The segments holding live records after an open, and the counters. */
typedef struct segstate {
  ls_stats stats;
  struct { uint32_t id; char kind[8]; uint64_t live_bytes, records, seq; } s[4096];
  int n;
} segstate;

static int seg_row(void *arg, const ls_segment_info *si) {
  segstate *st = arg;
  if (!si->live_records || st->n == 4096) return 0;
  memset(&st->s[st->n], 0, sizeof st->s[0]);
  st->s[st->n].id = si->id;
  snprintf(st->s[st->n].kind, sizeof st->s[0].kind, "%s", si->kind);
  st->s[st->n].live_bytes = si->live_bytes;
  st->s[st->n].records = si->live_records;
  st->s[st->n].seq = si->seq;
  st->n++;
  return 0;
}

static void segs_of(const char *dir, const model *m, int want_ckpt, segstate *st) {
  int rc;
  memset(st, 0, sizeof *st);
  /* No background cleaning: what the open built, not what the separator
  ** did after it. */
  ls_engine *e = open_dir_manual(dir, LS_ON_DAMAGE_ERROR, 1, &rc);
  CHECK_RC(rc, LS_OK);
  if (!e) return;
  st->stats = unit_stats(e);
  CHECK_U64(st->stats.recovery_checkpoint, want_ckpt);
  CHECK_RC(ls_segment_foreach(e, seg_row, st), LS_OK);
  CHECK(rows_equal(e, m));
  ls_close(e);
}

static segstate load, scan;

static void test_roundtrip(void) {
  const char *dir = unit_tmpdir();
  model m;
  memset(&m, 0, sizeof m);
  uint64_t rng = unit_seed("checkpoint round trip");
  build(dir, &m, &rng);
  CHECK(has_ckpt(dir));
  ls_stats a = reopen_check(dir, &m, 1);
  /* The engine works on from a checkpoint: writes, cleaning, another close. */
  int rc;
  ls_engine *e = open_dir(dir, LS_ON_DAMAGE_ERROR, &rc);
  CHECK_RC(rc, LS_OK);
  if (!e) return;
  CHECK_U64(unit_stats(e).recovery_checkpoint, 1);
  work(e, &m, &rng, 300);
  CHECK(rows_equal(e, &m));
  unit_check_ok(e);
  close_with_ckpt(dir, e);
  /* The same directory loaded (checkpoint) and scanned (a copy without
  ** it): the same rows and the same accounting, segment by segment --
  ** except that a scan may count a tombstone live that the running engine
  ** had already let go (nothing older of its key left: a scan keeps every
  ** winning delete), so the loaded counts may be lower by such records. */
  CHECK(has_ckpt(dir));
  char copy[4200];
  snprintf(copy, sizeof copy, "%s/copy", unit_tmpdir());
  unit_copy_dir(dir, copy);
  unlink(path_of(copy, CKPT_NAME));
  segs_of(dir, &m, 1, &load);
  segs_of(copy, &m, 0, &scan);
  CHECK_U64(load.stats.rows, scan.stats.rows);
  CHECK(load.stats.records_live <= scan.stats.records_live);
  CHECK(load.stats.records_live + 8 >= scan.stats.records_live);
  CHECK(load.stats.bytes_live <= scan.stats.bytes_live);
  CHECK(load.stats.write_seq >= scan.stats.write_seq);
  CHECK_INT(load.n, scan.n);
  for (int i = 0; i < load.n && i < scan.n; i++)
    if (load.s[i].id != scan.s[i].id || strcmp(load.s[i].kind, scan.s[i].kind) || load.s[i].seq != scan.s[i].seq ||
        load.s[i].records > scan.s[i].records || load.s[i].live_bytes > scan.s[i].live_bytes ||
        scan.s[i].live_bytes - load.s[i].live_bytes != (scan.s[i].records - load.s[i].records) * 32)
      unit_fail(__FILE__, __LINE__, "segment %u: loaded %s, %" PRIu64 " live bytes, %" PRIu64 " records, seq %" PRIu64
                "; scanned %u %s, %" PRIu64 ", %" PRIu64 ", %" PRIu64, load.s[i].id, load.s[i].kind,
                load.s[i].live_bytes, load.s[i].records, load.s[i].seq, scan.s[i].id, scan.s[i].kind,
                scan.s[i].live_bytes, scan.s[i].records, scan.s[i].seq);
  CHECK(a.rows > 0);
  model_free(&m);
}

/* ---- damaged or stale checkpoints are ignored ----------------------------------- */

static void test_corrupt(void) {
  const char *dir = unit_tmpdir();
  model m;
  memset(&m, 0, sizeof m);
  uint64_t rng = unit_seed("checkpoint corruption");
  build(dir, &m, &rng);
  size_t len = 0;
  uint8_t *orig = slurp(path_of(dir, CKPT_NAME), &len);
  CHECK(orig && len > 100);
  if (!orig) return;
  char copy[4200];
  snprintf(copy, sizeof copy, "%s/copy", unit_tmpdir());
  for (int trial = 0; trial < 40; trial++) {
    unit_rmtree(copy);
    unit_copy_dir(dir, copy);
    uint8_t *b = malloc(len);
    memcpy(b, orig, len);
    size_t n = len;
    uint64_t x = unit_rand(&rng);
    if (trial % 4 == 3) n = (size_t)(x % len);                    /* cut short */
    else b[x % len] ^= (uint8_t)(1u << ((x >> 32) % 8));          /* one bit flipped */
    spit(path_of(copy, CKPT_NAME), b, n);
    free(b);
    reopen_check(copy, &m, 0);
  }
  /* The untouched one still loads. */
  unit_rmtree(copy);
  unit_copy_dir(dir, copy);
  reopen_check(copy, &m, 1);
  free(orig);
  model_free(&m);
}

/* Put the checkpoint taken before back after the directory changed. */
static void stale(const char *what, int how) {
  const char *dir = unit_tmpdir();
  model m;
  memset(&m, 0, sizeof m);
  uint64_t rng = unit_seed(what);
  build(dir, &m, &rng);
  size_t len = 0;
  uint8_t *old = slurp(path_of(dir, CKPT_NAME), &len);
  CHECK(old != NULL);
  if (!old) return;
  int rc;
  ls_engine *e = open_dir(dir, LS_ON_DAMAGE_ERROR, &rc);
  CHECK_RC(rc, LS_OK);
  if (!e) { free(old); return; }
  if (how == 0) {
    CHECK_RC(unit_puts(e, tid[0], "key007", "written after the checkpoint"), LS_OK);
    model_set(&m, 0, 7, "written after the checkpoint");
  } else {
    CHECK_RC(ls_table_truncate(e, tid[1]), LS_OK);
    for (int k = 0; k < NKEY; k++) model_set(&m, 1, k, NULL);
  }
  ls_close(e);
  spit(path_of(dir, CKPT_NAME), old, len);
  free(old);
  reopen_check(dir, &m, 0);
  model_free(&m);
}

static void test_stale_rows(void) { stale("checkpoint, rows written after it", 0); }
static void test_stale_truncate(void) { stale("checkpoint, a table truncated after it", 1); }

/* Damage in a data file is found as without a checkpoint: the header at
** offset 0 of a segment in use zeroed, or a byte of a record in it changed
** -- the open walks every segment in use, finds it, and the scan that runs
** instead reports it. */
static void damaged(const char *what, int in_record) {
  const char *dir = unit_tmpdir();
  model m;
  memset(&m, 0, sizeof m);
  uint64_t rng = unit_seed(what);
  build(dir, &m, &rng);
  CHECK(has_ckpt(dir));
  int fd = open(path_of(dir, "data-000000.ls"), O_RDWR);
  CHECK(fd >= 0);
  if (fd < 0) return;
  uint8_t hdr[48], zero[48] = {0};
  int hit = 0;
  /* Every segment that has a header: some may be free without a marker
  ** (freed by an open's recovery), and the damage must be in one in use. */
  for (uint32_t s = 0; s < 16; s++) {
    off_t base = (off_t)s * 8 * KB;
    CHECK(pread(fd, hdr, sizeof hdr, base) == (ssize_t)sizeof hdr);
    if (hdr[6] != 1 && hdr[6] != 2) continue;    /* kind: mixed or group (FORMAT.md) */
    if (in_record) {
      uint8_t b;
      CHECK(pread(fd, &b, 1, base + 48 + 30) == 1);
      b ^= 0x20;
      CHECK(pwrite(fd, &b, 1, base + 48 + 30) == 1);
    } else {
      CHECK(pwrite(fd, zero, sizeof zero, base) == (ssize_t)sizeof zero);
    }
    hit++;
  }
  close(fd);
  CHECK(hit);
  int rc;
  ls_engine *e = open_dir(dir, LS_ON_DAMAGE_ERROR, &rc);
  CHECK_RC(rc, LS_CORRUPT);
  if (e) ls_close(e);
  CHECK(!has_ckpt(dir));
  model_free(&m);
}

static void test_damage_header(void) { damaged("checkpoint and a damaged header", 0); }
static void test_damage_record(void) { damaged("checkpoint and a damaged record", 1); }

/* Read-only opens leave it; salvage consumes it without using it; a failed
** engine writes none. */
static void test_who_writes(void) {
  const char *dir = unit_tmpdir();
  model m;
  memset(&m, 0, sizeof m);
  uint64_t rng = unit_seed("checkpoint modes");
  build(dir, &m, &rng);
  int rc;
  ls_engine *e = open_dir(dir, LS_ON_DAMAGE_REPORT, &rc);
  CHECK_RC(rc, LS_OK);
  if (e) {
    CHECK_U64(unit_stats(e).recovery_checkpoint, 0);
    ls_close(e);
  }
  CHECK(has_ckpt(dir));
  e = open_dir(dir, LS_ON_DAMAGE_SALVAGE, &rc);
  CHECK_RC(rc, LS_OK);
  if (e) {
    CHECK_U64(unit_stats(e).recovery_checkpoint, 0);
    CHECK(!has_ckpt(dir));
    CHECK(rows_equal(e, &m));
    ls_close(e);
  }
  CHECK(!has_ckpt(dir));                         /* only the default mode writes one */
  e = open_dir(dir, LS_ON_DAMAGE_ERROR, &rc);
  CHECK_RC(rc, LS_OK);
  if (e) ls_close(e);
  CHECK(has_ckpt(dir));
  /* A write fails: the engine is failed, its close leaves no checkpoint. */
  ls_options o;
  ls_options_init(&o);
  o.fault = "sync=1:EIO:persist";
  e = NULL;
  CHECK_RC(ls_open(dir, &o, &e), LS_OK);
  if (e) {
    ls_table_foreach(e, find_table, NULL);
    CHECK(unit_puts(e, tid[0], "key001", "lost") != LS_OK);
    ls_close(e);
  }
  CHECK(!has_ckpt(dir));
  int r2;
  e = open_dir(dir, LS_ON_DAMAGE_ERROR, &r2);
  CHECK_RC(r2, LS_OK);
  if (e) {
    CHECK_U64(unit_stats(e).recovery_checkpoint, 0);
    const char *got = unit_gets(e, tid[0], "key001");
    CHECK(!strcmp(got, "lost") || !strcmp(got, m.v[0][1] ? m.v[0][1] : ""));
    ls_close(e);
  }
  model_free(&m);
}

/* A checkpoint larger than the writer's buffer (1 MiB; 60000 keys make
** 1.4 MB): written in pieces, its CRC across them, loaded back whole. */
static void test_large(void) {
  const char *dir = unit_tmpdir();
  ls_engine *e = unit_open(dir, 64 * KB, 1024 * KB, 0, 0, 0);
  if (!e) return;
  uint32_t t;
  CHECK_RC(ls_table_create(e, "big", 1, &t), LS_OK);
  char kb[32], val[16];
  for (int round = 0; round < 6; round++) {
    ls_txn *x;
    CHECK_RC(ls_txn_begin(e, &x), LS_OK);
    for (int i = round * 10000; i < (round + 1) * 10000; i++) {
      ls_key k;
      ls_key_set(&k, kb, (uint32_t)snprintf(kb, sizeof kb, "key%d", i));
      CHECK_RC(ls_txn_put(x, t, &k, val, (uint32_t)snprintf(val, sizeof val, "v%d", i)), LS_OK);
    }
    CHECK_RC(ls_txn_commit(x), LS_OK);
    ls_txn_free(x);
  }
  close_with_ckpt(dir, e);
  struct stat st;
  CHECK(stat(path_of(dir, CKPT_NAME), &st) == 0 && st.st_size > 60000 * 24);
  e = unit_open(dir, 64 * KB, 1024 * KB, 0, 0, 0);
  if (!e) return;
  CHECK_U64(unit_stats(e).recovery_checkpoint, 1);
  for (int i = 0; i < 60000; i += 997) {
    snprintf(kb, sizeof kb, "key%d", i);
    snprintf(val, sizeof val, "v%d", i);
    const char *v = unit_gets(e, t, kb);
    CHECK(v && !strcmp(v, val));
  }
  CHECK_U64(unit_stats(e).rows, 60000);
  unit_check_ok(e);
  ls_close(e);
}

int main(void) {
  RUN(test_roundtrip);
  RUN(test_large);
  RUN(test_corrupt);
  RUN(test_stale_rows);
  RUN(test_stale_truncate);
  RUN(test_damage_header);
  RUN(test_damage_record);
  RUN(test_who_writes);
  return unit_finish();
}
