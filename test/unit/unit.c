/*
** unit.c -- implementation of the unit-test harness (see unit.h).
*/
#define UNIT_IMAGES
#define UNIT_ROWS
#define UNIT_INDEX
#include "unit.h"
#include "io.h"
#include "ls_int.h"
#include "logstor.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int unit_failed_checks;

void *unit_xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) { fprintf(stderr, "out of memory\n"); exit(2); }
  return p;
}

void unit_fill_bytes(void *buf, size_t len, uint64_t tag) {
  uint64_t x = tag * 0x9E3779B97F4A7C15ull + 1;
  uint8_t *p = buf;
  for (size_t i = 0; i < len; i++) {
    x ^= x >> 12; x ^= x << 25; x ^= x >> 27;
    p[i] = (uint8_t)(x >> 56);
  }
}
static int n_pass, n_fail;
static const char *cur_name = "?";
static char *tmpdirs[256];
static int n_tmpdirs;

void unit_fail(const char *file, int line, const char *fmt, ...) {
  va_list ap;
  fprintf(stdout, "! %s: %s:%d: ", cur_name, file, line);
  va_start(ap, fmt);
  vfprintf(stdout, fmt, ap);
  va_end(ap);
  fputc('\n', stdout);
  fflush(stdout);
  unit_failed_checks++;
}

void unit_run(const char *name, void (*fn)(void)) {
  const char *only = getenv("UNIT_ONLY");          /* run the tests whose name has this */
  if (only && !strstr(name, only)) return;
  cur_name = name;
  unit_failed_checks = 0;
  uint64_t t0 = (uint64_t)clock();
  fn();
  double ms = (double)((uint64_t)clock() - t0) * 1000.0 / CLOCKS_PER_SEC;
  if (unit_failed_checks) {
    n_fail++;
    printf("FAIL %s\n", name);
  } else {
    n_pass++;
    printf("ok   %s (%.0f ms cpu)\n", name, ms);
  }
  fflush(stdout);
}

void unit_rmtree(const char *path) {
  struct stat st;
  if (lstat(path, &st) != 0) return;
  if (S_ISDIR(st.st_mode)) {
    DIR *d = opendir(path);
    if (d) {
      struct dirent *de;
      while ((de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        char sub[4096];
        snprintf(sub, sizeof sub, "%s/%s", path, de->d_name);
        unit_rmtree(sub);
      }
      closedir(d);
    }
    rmdir(path);
  } else {
    unlink(path);
  }
}

void unit_copy_dir(const char *from, const char *to) {
  mkdir(to, 0700);
  DIR *d = opendir(from);
  struct dirent *de;
  while (d && (de = readdir(d)) != NULL) {
    if (de->d_name[0] == '.' || !strcmp(de->d_name, "LOCK")) continue;
    char a[8400], b[8400], buf[65536];
    snprintf(a, sizeof a, "%s/%s", from, de->d_name);
    snprintf(b, sizeof b, "%s/%s", to, de->d_name);
    int in = open(a, O_RDONLY | O_CLOEXEC), out = open(b, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int ok = in >= 0 && out >= 0;
    ssize_t n;
    while (ok && (n = read(in, buf, sizeof buf)) > 0) ok = write(out, buf, (size_t)n) == n;
    if (in >= 0) close(in);
    if (out >= 0) close(out);
    if (!ok) unit_fail(__FILE__, __LINE__, "copy %s to %s: %s", a, b, strerror(errno));
  }
  if (d) closedir(d);
}

const char *unit_tmpdir(void) {
  const char *base = getenv("TMPDIR");
  char tmpl[4096];
  snprintf(tmpl, sizeof tmpl, "%s/logstor-unit-XXXXXX", base && *base ? base : "/tmp");
  char *p = mkdtemp(tmpl);
  if (!p) {
    fprintf(stderr, "mkdtemp: %s\n", strerror(errno));
    exit(2);
  }
  p = strdup(p);
  if (n_tmpdirs < 256) tmpdirs[n_tmpdirs++] = p;
  return p;
}

uint64_t unit_seed(const char *what) {
  const char *s = getenv("LOGSTOR_SEED");
  uint64_t seed = s && *s ? strtoull(s, NULL, 0) : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 16);
  if (!seed) seed = 1;
  printf("     %s: seed %" PRIu64 " (rerun with LOGSTOR_SEED=%" PRIu64 ")\n", what, seed, seed);
  return seed;
}

uint64_t unit_rand(uint64_t *state) {
  uint64_t x = *state;
  x ^= x >> 12; x ^= x << 25; x ^= x >> 27;
  *state = x;
  return x * 0x2545F4914F6CDD1DULL;
}

int unit_finish(void) {
  if (!getenv("LOGSTOR_KEEP_TMP"))
    for (int i = 0; i < n_tmpdirs; i++) unit_rmtree(tmpdirs[i]);
  for (int i = 0; i < n_tmpdirs; i++) free(tmpdirs[i]);
  ls_thread_cleanup();
  printf("%d passed, %d failed\n", n_pass, n_fail);
  fflush(stdout);
  return n_fail ? 1 : 0;
}

void unit_check_ok(ls_engine *e) {
  char *rep = NULL;
  int rc = ls_check(e, 0, &rep);
  if (rc) unit_fail(__FILE__, __LINE__, "ls_check failed: %d %s", rc, ls_errmsg());
  else if (rep && strcmp(rep, "ok")) unit_fail(__FILE__, __LINE__, "ls_check: %s", rep);
  free(rep);
}

ls_stats unit_stats(ls_engine *e) {
  ls_stats s;
  ls_stats_get(e, &s);
  return s;
}

ls_engine *unit_reopen(const char *dir) {
  ls_engine *e = NULL;
  CHECK_RC(ls_open(dir, NULL, &e), LS_OK);
  return e;
}

ls_engine *unit_open(const char *dir, uint64_t seg, uint64_t file, uint64_t disk, int manual, int policy) {
  ls_options o;
  ls_options_init(&o);
  o.create = 1;
  o.segment_size = seg;
  o.file_size = file;
  o.disk_size = disk;
  o.manual_cleaning = manual;
  o.compaction_policy = policy;
  ls_engine *e = NULL;
  int rc = ls_open(dir, &o, &e);
  if (rc) unit_fail(__FILE__, __LINE__, "ls_open(%s): %d (%s): %s", dir, rc, ls_strerror(rc), ls_errmsg());
  return e;
}

int unit_put(ls_engine *e, uint32_t table, const char *key, const void *val, uint32_t len) {
  ls_txn *x;
  int rc = ls_txn_begin(e, &x);
  if (rc) return rc;
  ls_key k;
  ls_key_set(&k, key, (uint32_t)strlen(key));
  rc = val ? ls_txn_put(x, table, &k, val, len) : ls_txn_delete(x, table, &k);
  if (!rc) rc = ls_txn_commit(x);
  ls_txn_free(x);
  return rc;
}

int unit_puts(ls_engine *e, uint32_t table, const char *key, const char *val) {
  return unit_put(e, table, key, val, val ? (uint32_t)strlen(val) : 0);
}

const char *unit_gets(ls_engine *e, uint32_t table, const char *key) {
  static char out[4096];
  ls_key k;
  ls_key_set(&k, key, (uint32_t)strlen(key));
  ls_value v = {0};
  int rc = ls_get(e, table, &k, &v);
  if (rc == LS_NOTFOUND) strcpy(out, "");
  else if (rc) snprintf(out, sizeof out, "ERROR %d %s", rc, ls_errmsg());
  else snprintf(out, sizeof out, "%.*s", (int)v.len, (const char *)v.data);
  ls_value_free(&v);
  return out;
}

/* ---- data directories built byte by byte (UNIT_IMAGES) ------------------- */
uint32_t klen_of(const trec *r) { return r->key ? (uint32_t)strlen(r->key) : 0; }
uint32_t vlen_of(const trec *r) {
  return r->val ? (uint32_t)strlen(r->val) : r->type == LS_REC_COMMIT ? 8 : 0;
}

/* Bytes of a record that its CRC covers (header, key, value). */
uint32_t covered(const trec *r) { return LS_REC_HDR + klen_of(r) + vlen_of(r); }

/* Encode a buffer of n records for the segment incarnation seg_seq at p
** (header first).  max_seq 0 stands for the highest record sequence.
** offs (may be NULL) receives each record's offset from p.  Returns the
** bytes used (header + data); p must have room for them. */
uint32_t build_buf_ex(uint8_t *p, uint64_t seg_seq, uint32_t kind, uint64_t max_seq,
                             uint32_t table, uint32_t group, const trec *r, int n, uint32_t *offs) {
  uint32_t seed = ls_rec_seed(seg_seq);
  uint32_t off = LS_BUF_HDR;
  uint64_t hi = 0;
  for (int i = 0; i < n; i++) {
    uint8_t first[8];
    const void *val = r[i].val;
    if (r[i].type == LS_REC_COMMIT && !r[i].val) {
      ls_put64(first, r[i].first);
      val = first;
    }
    ls_rec_encode(p + off, r[i].type, r[i].table, r[i].key, klen_of(&r[i]), val, vlen_of(&r[i]));
    ls_rec_seal(p + off, r[i].seq, r[i].flags, seed);
    if (offs) offs[i] = off;
    off += ls_rec_size(klen_of(&r[i]), vlen_of(&r[i]));
    if (r[i].seq > hi) hi = r[i].seq;
  }
  ls_bufhdr h = {
    .kind = kind, .flags = 0, .seg_seq = seg_seq, .max_seq = max_seq ? max_seq : hi,
    .data_size = off - LS_BUF_HDR, .nrecords = (uint32_t)n, .table = table, .group = group,
  };
  ls_bufhdr_encode(p, &h);
  return off;
}

/* A mixed buffer whose max_seq is its highest record sequence. */
uint32_t build_buf(uint8_t *p, uint64_t seg_seq, const trec *r, int n, uint32_t *offs) {
  return build_buf_ex(p, seg_seq, LS_KIND_MIXED, 0, 0, 0, r, n, offs);
}

/* Re-encode the (valid) header at p with another data_size and nrecords;
** the CRC is recomputed, so only the numbers are wrong. */
void set_hdr_sizes(uint8_t *p, uint32_t data_size, uint32_t nrecords) {
  ls_bufhdr h;
  CHECK(ls_bufhdr_decode(p, &h));
  h.data_size = data_size;
  h.nrecords = nrecords;
  ls_bufhdr_encode(p, &h);
}

/* A free marker (kind 3, no records) at p. */
void build_free_marker(uint8_t *p, uint64_t seg_seq, uint64_t max_seq) {
  ls_bufhdr h = { .kind = LS_KIND_FREE, .seg_seq = seg_seq, .max_seq = max_seq };
  ls_bufhdr_encode(p, &h);
}

void path_of(char *out, size_t cap, const char *dir, const char *name) {
  snprintf(out, cap, "%s/%s", dir, name);
}

/* Write dir/MANIFEST with the standard sizes and the given catalog. */
uint32_t manifest_files;               /* the `files` count write_manifest writes */

void write_manifest(const char *dir, uint64_t seq_floor, uint32_t next_table,
                           const ls_mtable *tables, uint32_t ntables) {
  ls_io *io = NULL;
  CHECK_RC(ls_io_create(LS_IO_POSIX, NULL, &io), LS_OK);
  if (!io) return;
  int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  CHECK(dirfd >= 0);
  ls_manifest m;
  memset(&m, 0, sizeof m);
  m.version = LS_FORMAT_VERSION;
  m.segment_size = SEG;
  m.file_size = FILE_SIZE;
  m.disk_size = 0;
  m.next_table = next_table;
  m.seq_floor = seq_floor;
  /* The engine hands out a segment sequence only below a floor already in
  ** the manifest; hand-built images use sequences below 1000, so their
  ** manifests carry the floor the engine would have leased. */
  m.seg_seq_floor = 1000;
  m.files = manifest_files;
  m.ntables = ntables;
  m.tables = (ls_mtable *)tables;
  CHECK_RC(ls_manifest_write(io, dirfd, &m), LS_OK);
  close(dirfd);
  ls_io_destroy(io);
}

/* Data file n of dir, size bytes of zeros. */
void make_file(const char *dir, uint32_t n, uint64_t size) {
  char name[32], path[4200];
  snprintf(name, sizeof name, "data-%06u.ls", n);
  path_of(path, sizeof path, dir, name);
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  CHECK(fd >= 0);
  if (fd < 0) return;
  CHECK(ftruncate(fd, (off_t)size) == 0);
  /* As the engine formats a file: a free marker at each segment start. */
  uint8_t marker[LS_BUF_HDR];
  ls_free_marker(marker, 0, 0);
  for (uint64_t off = 0; off + LS_BUF_HDR <= size; off += SEG)
    CHECK(pwrite(fd, marker, sizeof marker, (off_t)off) == (ssize_t)sizeof marker);
  close(fd);
}

const ls_mtable std_tables[] = { { 1, 1, 0, "t1", 0 }, { 2, 1, 0, "t2", 0 } };

/* A fresh directory: manifest with tables 1 and 2 (seq_floor) and nfiles
** formatted data files (zeros, a free marker at each segment start). */
const char *new_dir_floor(uint32_t nfiles, uint64_t seq_floor) {
  const char *dir = unit_tmpdir();
  write_manifest(dir, seq_floor, 3, std_tables, 2);
  for (uint32_t i = 0; i < nfiles; i++) make_file(dir, i, FILE_SIZE);
  return dir;
}

const char *new_dir(uint32_t nfiles) { return new_dir_floor(nfiles, 0); }

/* Write len bytes at offset off of segment seg. */
void put_bytes(const char *dir, uint32_t seg, uint32_t off, const void *p, size_t len) {
  char name[32], path[4200];
  snprintf(name, sizeof name, "data-%06u.ls", seg / SPF);
  path_of(path, sizeof path, dir, name);
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  CHECK(fd >= 0);
  if (fd < 0) return;
  ssize_t n = pwrite(fd, p, len, (off_t)(seg % SPF) * SEG + off);
  CHECK(n == (ssize_t)len);
  close(fd);
}

/* Read a whole segment image (1 if the file had it). */
int get_seg(const char *dir, uint32_t seg, uint8_t *img) {
  char name[32], path[4200];
  snprintf(name, sizeof name, "data-%06u.ls", seg / SPF);
  path_of(path, sizeof path, dir, name);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t n = pread(fd, img, SEG, (off_t)(seg % SPF) * SEG);
  close(fd);
  return n == (ssize_t)SEG;
}

/* Encode a buffer and write it at offset off of segment seg. */
void put_buf(const char *dir, uint32_t seg, uint32_t off, uint64_t seg_seq, const trec *r, int n) {
  uint8_t *p = calloc(1, SEG);
  uint32_t len = build_buf(p, seg_seq, r, n, NULL);
  put_bytes(dir, seg, off, p, len);
  free(p);
}

/* Checking an opened engine. */

ls_engine *open_at(const char *file, int line, const char *dir) {
  ls_engine *e = NULL;
  int rc = ls_open(dir, NULL, &e);
  if (rc != LS_OK) {
    unit_fail(file, line, "ls_open(%s): expected LS_OK, got %d (%s): %s", dir, rc, ls_strerror(rc),
              ls_errmsg());
    return NULL;
  }
  return e;
}

/* Open without background cleaning: the records stay where they are (the
** garbage test's records share sequences, which real records never do,
** so moving them could change which of two "equal" versions wins). */
ls_engine *open_mode(const char *file, int line, const char *dir, int on_damage) {
  ls_options o;
  ls_options_init(&o);
  o.manual_cleaning = 1;
  o.on_damage = on_damage;
  ls_engine *e = NULL;
  int rc = ls_open(dir, &o, &e);
  if (rc != LS_OK) {
    unit_fail(file, line, "ls_open(%s): %d (%s): %s", dir, rc, ls_strerror(rc), ls_errmsg());
    return NULL;
  }
  return e;
}
ls_engine *open_still(const char *file, int line, const char *dir) { return open_mode(file, line, dir, LS_ON_DAMAGE_ERROR); }
/* Damage in the directory: the default open refuses it, naming it; the
** salvage open is returned. */
ls_engine *open_damaged(const char *file, int line, const char *dir, const char *needle) {
  ls_engine *e = NULL;
  int rc = ls_open(dir, NULL, &e);
  if (rc != LS_CORRUPT) {
    unit_fail(file, line, "ls_open(%s) of a damaged directory: expected LS_CORRUPT, got %d (%s)", dir, rc,
              ls_strerror(rc));
    if (e) ls_close(e);
  } else if (needle && !strstr(ls_errmsg(), needle)) {
    unit_fail(file, line, "ls_open(%s): the message does not mention '%s': %s", dir, needle, ls_errmsg());
  }
  return open_mode(file, line, dir, LS_ON_DAMAGE_SALVAGE);
}

/* The row key of table must hold want (NULL: absent); with want_seq, also
** that write sequence. */
void row_at(const char *file, int line, ls_engine *e, uint32_t table, const char *key, const char *want, uint64_t want_seq) {
  ls_key k;
  ls_key_set(&k, key, (uint32_t)strlen(key));
  ls_value v;
  memset(&v, 0, sizeof v);
  int rc = ls_get(e, table, &k, &v);
  if (!want) {
    if (rc != LS_NOTFOUND)
      unit_fail(file, line, "table %u key '%s': expected absent, got rc %d (%s)%s%.*s", table, key, rc,
                ls_strerror(rc), rc == LS_OK ? " value " : "", rc == LS_OK ? (int)(v.len > 60 ? 60 : v.len) : 0,
                rc == LS_OK ? (const char *)v.data : "");
  } else if (rc != LS_OK) {
    unit_fail(file, line, "table %u key '%s': expected '%.60s', got rc %d (%s): %s", table, key, want, rc,
              ls_strerror(rc), ls_errmsg());
  } else if (v.len != strlen(want) || memcmp(v.data, want, v.len) != 0) {
    unit_fail(file, line, "table %u key '%s': expected '%.60s' (%zu bytes), got '%.*s' (%u bytes)", table,
              key, want, strlen(want), (int)(v.len > 60 ? 60 : v.len), (const char *)v.data, v.len);
  } else if (want_seq && v.seq != want_seq) {
    unit_fail(file, line, "table %u key '%s': expected seq %" PRIu64 ", got %" PRIu64, table, key,
              want_seq, v.seq);
  }
  ls_value_free(&v);
}

/* Rows of table by a full cursor scan; each row is also read back with
** ls_get and must agree.  -1 on an error. */
long scan_rows(const char *file, int line, ls_engine *e, uint32_t table) {
  ls_cursor *c = NULL;
  int rc = ls_cursor_open(e, NULL, table, &c);
  if (rc) {
    unit_fail(file, line, "ls_cursor_open: %d (%s)", rc, ls_errmsg());
    return -1;
  }
  long n = 0;
  for (rc = ls_cursor_seek(c, INT64_MIN); !rc && ls_cursor_valid(c); rc = ls_cursor_next(c)) {
    const ls_value *r = ls_cursor_row(c);
    ls_key k;
    ls_key_set(&k, r->key, r->key_len);
    ls_value v;
    memset(&v, 0, sizeof v);
    int g = ls_get(e, table, &k, &v);
    if (g != LS_OK || v.len != r->len || memcmp(v.data, r->data, r->len) != 0 || v.seq != r->seq)
      unit_fail(file, line, "table %u: scanned row '%.*s' does not read back (rc %d)", table,
                (int)r->key_len, (const char *)r->key, g);
    ls_value_free(&v);
    n++;
  }
  if (rc) {
    unit_fail(file, line, "cursor scan of table %u: %d (%s): %s", table, rc, ls_strerror(rc), ls_errmsg());
    n = -1;
  }
  ls_cursor_close(c);
  return n;
}

/* ls_check must say "ok" (needle NULL) or mention needle. */
void check_at(const char *file, int line, ls_engine *e, const char *needle) {
  char *rep = NULL;
  int rc = ls_check(e, 0, &rep);
  if (rc != LS_OK) {
    unit_fail(file, line, "ls_check: %d (%s): %s", rc, ls_strerror(rc), ls_errmsg());
  } else if (!needle && strcmp(rep, "ok") != 0) {
    unit_fail(file, line, "ls_check: expected 'ok', got: %s", rep);
  } else if (needle && (!strcmp(rep, "ok") || !strstr(rep, needle))) {
    unit_fail(file, line, "ls_check: expected a report mentioning '%s', got: %s", needle, rep);
  }
  free(rep);
}

/* Commit one put (or a delete when val is NULL) of key in table. */
int commit_one(ls_engine *e, uint32_t table, const char *key, const char *val) {
  ls_txn *t = NULL;
  int rc = ls_txn_begin(e, &t);
  if (rc) return rc;
  ls_key k;
  ls_key_set(&k, key, (uint32_t)strlen(key));
  rc = val ? ls_txn_put(t, table, &k, val, (uint32_t)strlen(val)) : ls_txn_delete(t, table, &k);
  if (!rc) rc = ls_txn_commit(t);
  ls_txn_free(t);
  return rc;
}

/* ---- rows with versions and segment counts (UNIT_ROWS) -------------------- */
ls_engine *reopen(const char *dir, int manual) {
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

void mix_in(ls_engine *e) {
  uint32_t o = 0;
  ls_table_foreach(e, find_other, &o);
  if (!o) CHECK_RC(ls_table_create(e, "other", 1, &o), LS_OK);
  CHECK_RC(unit_put(e, o, "mix", "in", 2), LS_OK);
}

/* 1 if key holds exactly val (val NULL: absent). */
int is(ls_engine *e, uint32_t t, const char *key, const void *val, uint32_t len) {
  ls_key k;
  ls_key_set(&k, key, (uint32_t)strlen(key));
  ls_value v = {0};
  int rc = ls_get(e, t, &k, &v);
  int ok = val ? rc == LS_OK && v.len == len && !memcmp(v.data, val, len) : rc == LS_NOTFOUND;
  ls_value_free(&v);
  return ok;
}

/* The value of version ver of key number k: len bytes, recognisable. */
void fill(char *buf, uint32_t len, int k, long ver) {
  int n = snprintf(buf, len, "k%d v%ld ", k, ver);
  for (uint32_t i = (uint32_t)n; i < len; i++) buf[i] = (char)('a' + (k + ver + (long)i) % 26);
}


/* Row k of a test: key prefix + k, value version ver of len bytes.  put_row
** writes it, has_row checks it is there (or, present 0, not there). */
int put_row(ls_engine *e, uint32_t t, const char *prefix, int k, long ver, uint32_t len) {
  char kb[32], val[ROW_MAX];
  snprintf(kb, sizeof kb, "%s%d", prefix, k);
  fill(val, len, k, ver);
  return unit_put(e, t, kb, val, len);
}

int del_row(ls_engine *e, uint32_t t, const char *prefix, int k) {
  char kb[32];
  snprintf(kb, sizeof kb, "%s%d", prefix, k);
  return unit_put(e, t, kb, NULL, 0);
}

int has_row(ls_engine *e, uint32_t t, const char *prefix, int k, long ver, uint32_t len, int present) {
  char kb[32], val[ROW_MAX];
  snprintf(kb, sizeof kb, "%s%d", prefix, k);
  fill(val, len, k, ver);
  return is(e, t, kb, present ? val : NULL, len);
}


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

segcount segments(ls_engine *e, uint32_t table) {
  segcount c;
  memset(&c, 0, sizeof c);
  c.table = table;
  CHECK_RC(ls_segment_foreach(e, count_seg, &c), LS_OK);
  return c;
}

/* ---- reference checks of an ls_index (UNIT_INDEX) ------------------------ */

int key_cmp(uint64_t ahi, uint64_t alo, uint64_t bhi, uint64_t blo) {
  if (ahi != bhi) return ahi < bhi ? -1 : 1;
  if (alo != blo) return alo < blo ? -1 : 1;
  return 0;
}

int entry_cmp(const void *a, const void *b) {
  const idx_entry *x = a, *y = b;
  return key_cmp(x->hi, x->lo, y->hi, y->lo);
}

/* Sort e[0..n) by key and drop duplicate keys; returns the new count. */
size_t sort_unique(idx_entry *e, size_t n) {
  qsort(e, n, sizeof *e, entry_cmp);
  size_t m = 0;
  for (size_t i = 0; i < n; i++)
    if (m == 0 || entry_cmp(&e[m - 1], &e[i]) != 0) e[m++] = e[i];
  return m;
}

/* n random entries (sorted, unique); words are random. */
idx_entry *random_entries(size_t n, uint64_t *rng, size_t *got) {
  idx_entry *e = unit_xmalloc(n * sizeof *e);
  for (size_t i = 0; i < n; i++) {
    e[i].hi = unit_rand(rng);
    e[i].lo = unit_rand(rng);
    e[i].word = unit_rand(rng);
  }
  *got = sort_unique(e, n);
  return e;
}

idx_key key_of(const idx_entry *e) {
  idx_key k = {e->hi, e->lo};
  return k;
}

/* Insert e[0..n) in a random order. */
void insert_shuffled(ls_index *ix, const idx_entry *e, size_t n, uint64_t *rng) {
  size_t *order = unit_xmalloc(n * sizeof *order);
  for (size_t i = 0; i < n; i++) order[i] = i;
  for (size_t i = n; i > 1; i--) {
    size_t j = unit_rand(rng) % i, t = order[i - 1];
    order[i - 1] = order[j];
    order[j] = t;
  }
  int bad = 0;
  for (size_t i = 0; i < n; i++) {
    idx_key k = key_of(&e[order[i]]);
    int rc = idx_put(ix, &k, e[order[i]].word, NULL);
    if (rc != 0 && bad++ < 5) unit_fail(__FILE__, __LINE__, "idx_put of a new key returned %d", rc);
  }
  free(order);
}

/* The whole index equals want[0..n) (keys and words, in order), checked
** through idx_range in batches of `batch` (continuing with after=1 from
** the last key, or after=0 from its successor) and idx_get. */
void check_range_all(const ls_index *ix, const idx_entry *want, size_t n, size_t batch, int after) {
  idx_entry *out = unit_xmalloc((batch + 1) * sizeof *out);
  idx_key from = {0, 0};
  size_t pos = 0, calls = 0;
  int first = 1, bad = 0;
  for (;;) {
    /* Sentinel after the batch: idx_range must not write past max. */
    out[batch].hi = 0xDEAD; out[batch].lo = 0xBEEF; out[batch].word = 0xF00D;
    size_t got = idx_range(ix, &from, first ? 0 : after, out, batch);
    calls++;
    if (out[batch].hi != 0xDEAD || out[batch].lo != 0xBEEF || out[batch].word != 0xF00D) {
      unit_fail(__FILE__, __LINE__, "idx_range wrote past max (%zu)", batch);
      break;
    }
    if (got > batch) { unit_fail(__FILE__, __LINE__, "idx_range returned %zu > max %zu", got, batch); break; }
    for (size_t i = 0; i < got; i++, pos++) {
      if (pos >= n) {
        if (bad++ < 5) unit_fail(__FILE__, __LINE__, "batch %zu after %d: extra entry %zu", batch, after, pos);
        continue;
      }
      if ((out[i].hi != want[pos].hi || out[i].lo != want[pos].lo || out[i].word != want[pos].word) && bad++ < 5)
        unit_fail(__FILE__, __LINE__,
                  "batch %zu after %d: entry %zu: expected (%016" PRIx64 ",%016" PRIx64 ")=%" PRIx64
                  ", got (%016" PRIx64 ",%016" PRIx64 ")=%" PRIx64,
                  batch, after, pos, want[pos].hi, want[pos].lo, want[pos].word, out[i].hi, out[i].lo, out[i].word);
    }
    if (got < batch) break;
    first = 0;
    from.hi = out[got - 1].hi;
    from.lo = out[got - 1].lo;
    if (!after) {                  /* the successor of the last key */
      if (++from.lo == 0 && ++from.hi == 0) break;   /* past (max, max) */
    }
    if (calls > n + 2) { unit_fail(__FILE__, __LINE__, "idx_range does not advance"); break; }
  }
  if (pos != n) unit_fail(__FILE__, __LINE__, "batch %zu after %d: expected %zu entries, got %zu", batch, after, n, pos);
  free(out);
}

int foreach_fn(void *arg, const idx_entry *e, uint64_t seq) {
  foreach_state *st = arg;
  size_t i = st->pos++;
  if (i >= st->n) { st->bad++; return 0; }
  if (e->hi != st->want[i].hi || e->lo != st->want[i].lo || e->word != st->want[i].word) {
    if (st->bad++ < 5)
      unit_fail(__FILE__, __LINE__, "idx_foreach entry %zu: expected (%016" PRIx64 ",%016" PRIx64 "), got (%016"
                PRIx64 ",%016" PRIx64 ")", i, st->want[i].hi, st->want[i].lo, e->hi, e->lo);
  }
  if (st->want_seq && seq != st->want_seq[i] && st->bad++ < 5)
    unit_fail(__FILE__, __LINE__, "idx_foreach entry %zu: expected seq %" PRIu64 ", got %" PRIu64, i,
              st->want_seq[i], seq);
  return i == st->stop_at ? 7 : 0;
}

/* idx_foreach visits want[0..n) in order (with sequences if want_seq). */
void check_foreach(const ls_index *ix, const idx_entry *want, size_t n, const uint64_t *want_seq) {
  foreach_state st = {want, n, 0, 0, SIZE_MAX, want_seq};
  CHECK_INT(idx_foreach(ix, foreach_fn, &st), 0);
  CHECK_U64(st.pos, n);
  CHECK_INT(st.bad, 0);
}

/* Every key of want is found with its word. */
void check_gets(const ls_index *ix, const idx_entry *want, size_t n) {
  int bad = 0;
  for (size_t i = 0; i < n; i++) {
    idx_key k = key_of(&want[i]);
    uint64_t w = ~want[i].word;
    if ((!idx_get(ix, &k, &w) || w != want[i].word) && bad++ < 5)
      unit_fail(__FILE__, __LINE__, "key %zu (%016" PRIx64 ",%016" PRIx64 "): expected word %" PRIx64 ", got %" PRIx64,
                i, want[i].hi, want[i].lo, want[i].word, w);
  }
  CHECK_U64(idx_count(ix), n);
}


/* A key space of n keys: mostly random, plus groups that share a hi and
** keys that share the top 40 bits of hi. */
void model_init(model *md, size_t n, uint64_t *rng) {
  md->keys = unit_xmalloc(n * sizeof *md->keys);
  size_t k = 0;
  uint64_t same = unit_rand(rng), prefix = unit_rand(rng) & ~((1ull << 24) - 1);
  for (; k < n; k++) {
    uint64_t r = unit_rand(rng);
    switch (k % 10) {
    case 0: md->keys[k].hi = same; break;
    case 1: md->keys[k].hi = prefix | (r & 0xFFFFFF); break;
    case 2: md->keys[k].hi = k % 20 == 2 ? 0 : UINT64_MAX; break;
    default: md->keys[k].hi = r; break;
    }
    md->keys[k].lo = unit_rand(rng);
    md->keys[k].word = 0;
  }
  md->n = sort_unique(md->keys, n);
  md->present = calloc(md->n, 1);
  md->word = calloc(md->n, sizeof *md->word);
  md->seq = calloc(md->n, sizeof *md->seq);
  md->count = 0;
}

void model_free(model *md) {
  free(md->keys); free(md->present); free(md->word); free(md->seq);
}

/* The index holds exactly the model's present keys, in order. */
void model_check_all(const ls_index *ix, const model *md, int with_seq) {
  idx_entry *want = unit_xmalloc((md->count + 1) * sizeof *want);
  uint64_t *want_seq = unit_xmalloc((md->count + 1) * sizeof *want_seq);
  size_t m = 0;
  for (size_t i = 0; i < md->n; i++)
    if (md->present[i]) {
      want[m] = md->keys[i];
      want[m].word = md->word[i];
      want_seq[m] = md->seq[i];
      m++;
    }
  CHECK_U64(m, md->count);
  CHECK_U64(idx_count(ix), m);
  check_range_all(ix, want, m, 64, 1);
  check_foreach(ix, want, m, with_seq ? want_seq : NULL);
  if (with_seq) {
    int bad = 0;
    for (size_t i = 0; i < m; i++) {
      idx_key k = key_of(&want[i]);
      uint64_t s = idx_get_seq(ix, &k);
      if (s != want_seq[i] && bad++ < 5)
        unit_fail(__FILE__, __LINE__, "idx_get_seq of entry %zu: expected %" PRIu64 ", got %" PRIu64, i, want_seq[i], s);
    }
  }
  free(want);
  free(want_seq);
}
