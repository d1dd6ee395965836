/*
** test_recovery.c -- unit tests of recovery (recovery.c) on data
** directories built by hand, byte by byte, as engine/FORMAT.md describes
** them (reliability plan R02 "recovery_torn_tail" and R03
** "version_resolution"; hazards H1, H2, H6, H11).
**
** Every test writes a MANIFEST (through ls_manifest_write) and zero-filled
** data files of exactly file_size bytes, then places buffer images at
** chosen offsets of chosen segments.  Buffers are encoded with the
** engine's own encoders (ls_rec_encode, ls_rec_seal with the segment seed,
** ls_bufhdr_encode), so a test fails only if recovery misreads a correct
** image, never because the test got the format wrong; several tests also
** open an undamaged control image to show that the records they expect to
** be ignored would otherwise be recovered.
**
** The engine is then opened with ls_open() and checked through the public
** API only: ls_get, cursors, ls_stats_get (recovery_records,
** recovery_segments, write_seq), ls_segment_foreach and ls_check, whose
** report must be "ok" unless the test built damage that recovery has to
** report.
**
** Geometry: 16 KiB segments, 4 segments per data file.  Tables 1 and 2
** (one group each) exist unless a test says otherwise.
*/
#include "format.h"
#include "io.h"
#include "ls_int.h"
#include "manifest.h"
#include "unit.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SEG        16384u                  /* segment_size */
#define SPF        4u                      /* segments per data file */
#define FILE_SIZE  ((uint64_t)SEG * SPF)   /* file_size */
#define BLK        LS_BLOCK
#define SECTOR     LS_SECTOR

#define END  LS_RF_END
#define CONT LS_RF_CONT

/* ------------------------------------------------------------------------
** Building directories and buffer images.
*/

/* One record to encode.  Keys and values are NUL-terminated strings (the
** NUL is not stored); a commit record's value is `first`, 8 bytes LE,
** unless val is given (malformed commits). */
typedef struct trec {
  uint32_t type;
  uint32_t flags;
  uint32_t table;
  const char *key;
  const char *val;                 /* NULL: no value (delete, commit) */
  uint64_t seq;
  uint64_t first;                  /* commit records only */
} trec;

#define PUT(t, k, v, s, f)  { LS_REC_PUT, (f), (t), (k), (v), (s), 0 }
#define DEL(t, k, s, f)     { LS_REC_DELETE, (f), (t), (k), NULL, (s), 0 }
#define COMMIT(first, s)    { LS_REC_COMMIT, END, 0, NULL, NULL, (s), (first) }
#define NREC(a)             ((int)(sizeof(a) / sizeof((a)[0])))

static uint32_t klen_of(const trec *r) { return r->key ? (uint32_t)strlen(r->key) : 0; }
static uint32_t vlen_of(const trec *r) {
  return r->val ? (uint32_t)strlen(r->val) : r->type == LS_REC_COMMIT ? 8 : 0;
}

/* Bytes of a record that its CRC covers (header, key, value). */
static uint32_t covered(const trec *r) { return LS_REC_HDR + klen_of(r) + vlen_of(r); }

/* Encode a buffer of n records for the segment incarnation seg_seq at p
** (header first).  max_seq 0 stands for the highest record sequence.
** offs (may be NULL) receives each record's offset from p.  Returns the
** bytes used (header + data); p must have room for them. */
static uint32_t build_buf_ex(uint8_t *p, uint64_t seg_seq, uint32_t kind, uint64_t max_seq,
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
static uint32_t build_buf(uint8_t *p, uint64_t seg_seq, const trec *r, int n, uint32_t *offs) {
  return build_buf_ex(p, seg_seq, LS_KIND_MIXED, 0, 0, 0, r, n, offs);
}

/* Re-encode the (valid) header at p with another data_size and nrecords;
** the CRC is recomputed, so only the numbers are wrong. */
static void set_hdr_sizes(uint8_t *p, uint32_t data_size, uint32_t nrecords) {
  ls_bufhdr h;
  CHECK(ls_bufhdr_decode(p, &h));
  h.data_size = data_size;
  h.nrecords = nrecords;
  ls_bufhdr_encode(p, &h);
}

/* A free marker (kind 3, no records) at p. */
static void build_free_marker(uint8_t *p, uint64_t seg_seq, uint64_t max_seq) {
  ls_bufhdr h = { .kind = LS_KIND_FREE, .seg_seq = seg_seq, .max_seq = max_seq };
  ls_bufhdr_encode(p, &h);
}

static void path_of(char *out, size_t cap, const char *dir, const char *name) {
  snprintf(out, cap, "%s/%s", dir, name);
}

/* Write dir/MANIFEST with the standard sizes and the given catalog. */
static uint32_t manifest_files;               /* the `files` count write_manifest writes */

static void write_manifest(const char *dir, uint64_t seq_floor, uint32_t next_table,
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
static void make_file(const char *dir, uint32_t n, uint64_t size) {
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

static const ls_mtable std_tables[] = { { 1, 1, 0, "t1" }, { 2, 1, 0, "t2" } };

/* A fresh directory: manifest with tables 1 and 2 (seq_floor) and nfiles
** formatted data files (zeros, a free marker at each segment start). */
static const char *new_dir_floor(uint32_t nfiles, uint64_t seq_floor) {
  const char *dir = unit_tmpdir();
  write_manifest(dir, seq_floor, 3, std_tables, 2);
  for (uint32_t i = 0; i < nfiles; i++) make_file(dir, i, FILE_SIZE);
  return dir;
}

static const char *new_dir(uint32_t nfiles) { return new_dir_floor(nfiles, 0); }

/* Write len bytes at offset off of segment seg. */
static void put_bytes(const char *dir, uint32_t seg, uint32_t off, const void *p, size_t len) {
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
static int get_seg(const char *dir, uint32_t seg, uint8_t *img) {
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
static void put_buf(const char *dir, uint32_t seg, uint32_t off, uint64_t seg_seq, const trec *r, int n) {
  uint8_t *p = calloc(1, SEG);
  uint32_t len = build_buf(p, seg_seq, r, n, NULL);
  put_bytes(dir, seg, off, p, len);
  free(p);
}

/* ------------------------------------------------------------------------
** Checking an opened engine.
*/

static ls_engine *open_at(int line, const char *dir) {
  ls_engine *e = NULL;
  int rc = ls_open(dir, NULL, &e);
  if (rc != LS_OK) {
    unit_fail(__FILE__, line, "ls_open(%s): expected LS_OK, got %d (%s): %s", dir, rc, ls_strerror(rc),
              ls_errmsg());
    return NULL;
  }
  return e;
}
#define OPEN(dir) open_at(__LINE__, (dir))

/* Open without background cleaning: the records stay where they are (the
** garbage test's records share sequences, which real records never do,
** so moving them could change which of two "equal" versions wins). */
static ls_engine *open_mode(int line, const char *dir, int on_damage) {
  ls_options o;
  ls_options_init(&o);
  o.manual_cleaning = 1;
  o.on_damage = on_damage;
  ls_engine *e = NULL;
  int rc = ls_open(dir, &o, &e);
  if (rc != LS_OK) {
    unit_fail(__FILE__, line, "ls_open(%s): %d (%s): %s", dir, rc, ls_strerror(rc), ls_errmsg());
    return NULL;
  }
  return e;
}
static ls_engine *open_still(int line, const char *dir) { return open_mode(line, dir, LS_ON_DAMAGE_ERROR); }
/* Damage in the directory: the default open refuses it, naming it; the
** salvage open is returned. */
static ls_engine *open_damaged(int line, const char *dir, const char *needle) {
  ls_engine *e = NULL;
  int rc = ls_open(dir, NULL, &e);
  if (rc != LS_CORRUPT) {
    unit_fail(__FILE__, line, "ls_open(%s) of a damaged directory: expected LS_CORRUPT, got %d (%s)", dir, rc,
              ls_strerror(rc));
    if (e) ls_close(e);
  } else if (needle && !strstr(ls_errmsg(), needle)) {
    unit_fail(__FILE__, line, "ls_open(%s): the message does not mention '%s': %s", dir, needle, ls_errmsg());
  }
  return open_mode(line, dir, LS_ON_DAMAGE_SALVAGE);
}
#define OPEN_DAMAGED(dir, needle) open_damaged(__LINE__, (dir), (needle))

/* The row key of table must hold want (NULL: absent); with want_seq, also
** that write sequence. */
static void row_at(int line, ls_engine *e, uint32_t table, const char *key, const char *want, uint64_t want_seq) {
  ls_key k;
  ls_key_set(&k, key, (uint32_t)strlen(key));
  ls_value v;
  memset(&v, 0, sizeof v);
  int rc = ls_get(e, table, &k, &v);
  if (!want) {
    if (rc != LS_NOTFOUND)
      unit_fail(__FILE__, line, "table %u key '%s': expected absent, got rc %d (%s)%s%.*s", table, key, rc,
                ls_strerror(rc), rc == LS_OK ? " value " : "", rc == LS_OK ? (int)(v.len > 60 ? 60 : v.len) : 0,
                rc == LS_OK ? (const char *)v.data : "");
  } else if (rc != LS_OK) {
    unit_fail(__FILE__, line, "table %u key '%s': expected '%.60s', got rc %d (%s): %s", table, key, want, rc,
              ls_strerror(rc), ls_errmsg());
  } else if (v.len != strlen(want) || memcmp(v.data, want, v.len) != 0) {
    unit_fail(__FILE__, line, "table %u key '%s': expected '%.60s' (%zu bytes), got '%.*s' (%u bytes)", table,
              key, want, strlen(want), (int)(v.len > 60 ? 60 : v.len), (const char *)v.data, v.len);
  } else if (want_seq && v.seq != want_seq) {
    unit_fail(__FILE__, line, "table %u key '%s': expected seq %" PRIu64 ", got %" PRIu64, table, key,
              want_seq, v.seq);
  }
  ls_value_free(&v);
}
#define ROW(e, t, k, v)         row_at(__LINE__, (e), (t), (k), (v), 0)
#define ROW_SEQ(e, t, k, v, s)  row_at(__LINE__, (e), (t), (k), (v), (s))
#define ABSENT(e, t, k)         row_at(__LINE__, (e), (t), (k), NULL, 0)

/* Rows of table by a full cursor scan; each row is also read back with
** ls_get and must agree.  -1 on an error. */
static long scan_rows(int line, ls_engine *e, uint32_t table) {
  ls_cursor *c = NULL;
  int rc = ls_cursor_open(e, NULL, table, &c);
  if (rc) {
    unit_fail(__FILE__, line, "ls_cursor_open: %d (%s)", rc, ls_errmsg());
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
      unit_fail(__FILE__, line, "table %u: scanned row '%.*s' does not read back (rc %d)", table,
                (int)r->key_len, (const char *)r->key, g);
    ls_value_free(&v);
    n++;
  }
  if (rc) {
    unit_fail(__FILE__, line, "cursor scan of table %u: %d (%s): %s", table, rc, ls_strerror(rc), ls_errmsg());
    n = -1;
  }
  ls_cursor_close(c);
  return n;
}
#define ROWS(e, t) scan_rows(__LINE__, (e), (t))

/* ls_check must say "ok" (needle NULL) or mention needle. */
static void check_at(int line, ls_engine *e, const char *needle) {
  char *rep = NULL;
  int rc = ls_check(e, 0, &rep);
  if (rc != LS_OK) {
    unit_fail(__FILE__, line, "ls_check: %d (%s): %s", rc, ls_strerror(rc), ls_errmsg());
  } else if (!needle && strcmp(rep, "ok") != 0) {
    unit_fail(__FILE__, line, "ls_check: expected 'ok', got: %s", rep);
  } else if (needle && (!strcmp(rep, "ok") || !strstr(rep, needle))) {
    unit_fail(__FILE__, line, "ls_check: expected a report mentioning '%s', got: %s", needle, rep);
  }
  free(rep);
}
#define CHECK_OK(e)             check_at(__LINE__, (e), NULL)
#define CHECK_DAMAGE(e, needle) check_at(__LINE__, (e), (needle))

/* Commit one put (or a delete when val is NULL) of key in table. */
static int commit_one(ls_engine *e, uint32_t table, const char *key, const char *val) {
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

/* ------------------------------------------------------------------------
** Segment reuse (H1) and damage.
*/

/* Slot 2 was incarnation 5 (four buffers of records), then reused as
** incarnation 9, whose data ends in block 0.  Nothing of incarnation 5
** may come back: neither its buffers in blocks 1..3, nor its CRC-valid
** records right after incarnation 9's tail in block 0 (left in place, and
** in one variant even covered by a data_size that claims them). */
static void test_old_incarnation_after_tail(void) {
  char okey[16][16], oval[16][64];
  trec old[4][4];
  for (int i = 0; i < 16; i++) {
    snprintf(okey[i], sizeof okey[i], "o%02d", i);
    snprintf(oval[i], sizeof oval[i], "old-incarnation-value-%02d-padding-padding", i);
    old[i / 4][i % 4] = (trec)PUT(1, okey[i], oval[i], (uint64_t)(10 + i), END);
  }
  uint8_t *oldimg = calloc(1, SEG);
  for (int b = 0; b < 4; b++) build_buf(oldimg + b * BLK, 5, old[b], 4, NULL);

  /* Control: incarnation 5 alone is recovered in full. */
  {
    const char *dir = new_dir(1);
    put_bytes(dir, 2, 0, oldimg, SEG);
    ls_engine *e = OPEN(dir);
    if (e) {
      for (int i = 0; i < 16; i++) ROW(e, 1, okey[i], oval[i]);
      CHECK_OK(e);
      ls_close(e);
    }
  }

  trec nw[] = {
    PUT(1, "n0", "new-0", 60, 0),
    PUT(1, "o01", "o01-at-incarnation-9", 61, END),
  };
  for (int variant = 0; variant < 4; variant++) {
    const char *dir = new_dir(1);
    uint8_t *img = malloc(SEG);
    memcpy(img, oldimg, SEG);
    uint8_t *tmp = calloc(1, SEG);
    uint32_t nlen = build_buf(tmp, 9, nw, NREC(nw), NULL);
    uint64_t want_records = 2;
    if (variant == 0) {
      /* The new buffer over the old one's first bytes; old bytes follow. */
      memcpy(img, tmp, nlen);
    } else if (variant == 1) {
      /* Old incarnation-5 records placed right after the new tail, and the
      ** header's data_size and nrecords claim them (a torn rewrite). */
      memcpy(img, tmp, nlen);
      uint32_t olen = build_buf(tmp, 5, old[3], 4, NULL) - LS_BUF_HDR;
      memcpy(img + nlen, tmp + LS_BUF_HDR, olen);
      set_hdr_sizes(img, nlen - LS_BUF_HDR + olen, 2 + 4);
    } else if (variant == 2) {
      /* Incarnation 9 wrote blocks 0 and 1, the second one shorter than the
      ** old buffer there; the old buffers of blocks 2 and 3 follow. */
      memset(img, 0, BLK);
      memcpy(img, tmp, nlen);
      trec nw2[] = { PUT(1, "n1", "new-1", 62, END) };
      uint32_t l2 = build_buf(tmp, 9, nw2, 1, NULL);
      memcpy(img + BLK, tmp, l2);               /* old incarnation bytes after it */
      want_records = 3;
    } else {
      /* Not from a crash: an empty buffer of incarnation 5 in block 1
      ** between two buffers of incarnation 9.  The foreign header is a
      ** gap before a buffer of the incarnation: damage, reported; the
      ** walk resumes there and keeps the later buffer's row. */
      memset(img, 0, SEG);
      memcpy(img, tmp, nlen);
      build_buf(img + BLK, 5, NULL, 0, NULL);
      trec nw2[] = { PUT(1, "n2", "new-2", 63, END) };
      build_buf(img + 2 * BLK, 9, nw2, 1, NULL);
    }
    free(tmp);
    put_bytes(dir, 2, 0, img, SEG);
    free(img);
    ls_engine *e = variant == 3 ? OPEN_DAMAGED(dir, "segment 2") : OPEN(dir);
    if (!e) continue;
    ROW(e, 1, "n0", "new-0");
    ROW_SEQ(e, 1, "o01", "o01-at-incarnation-9", 61);
    if (variant == 2) ROW(e, 1, "n1", "new-1");
    if (variant == 3) ROW(e, 1, "n2", "new-2");
    else ABSENT(e, 1, "n2");
    for (int i = 0; i < 16; i++)
      if (i != 1) ABSENT(e, 1, okey[i]);
    CHECK_INT(ROWS(e, 1), variant >= 2 ? 3 : 2);
    CHECK_U64(unit_stats(e).recovery_records, variant == 3 ? 3 : want_records);
    if (variant == 3) CHECK_DAMAGE(e, "offset 36864 length 4096, segment 2");
    else CHECK_OK(e);
    ls_close(e);
  }
  free(oldimg);
}

/* A valid buffer of the same incarnation after a corrupt one can not come
** from a crash: the default open refuses the directory, naming the damage;
** the salvage open recovers what precedes the damage and what follows it
** (the walk resumes on the next buffer), and ls_check reports the damaged
** range.  Other segments are unaffected. */
static void test_valid_buffer_after_corrupt(void) {
  trec a[] = { PUT(1, "a0", "va0", 1, 0), PUT(1, "a1", "va1", 2, END) };
  trec b[] = { PUT(1, "b0", "vb0", 3, END), PUT(1, "b1", "vb1", 4, 0), PUT(1, "b2", "vb2", 5, END) };
  trec c[] = { PUT(1, "c0", "vc0", 6, 0), PUT(1, "a0", "va0-newer", 7, END) };
  trec other[] = { PUT(2, "x", "vx", 8, END) };
  for (int variant = 0; variant < 3; variant++) {
    const char *dir = new_dir(1);
    uint8_t *img = calloc(1, SEG);
    uint32_t boffs[NREC(b)];
    build_buf(img, 4, a, NREC(a), NULL);
    build_buf(img + BLK, 4, b, NREC(b), boffs);
    build_buf(img + 2 * BLK, 4, c, NREC(c), NULL);
    if (variant == 0) img[BLK + boffs[1] + LS_REC_HDR] ^= 0x01;   /* a bit of b1's key */
    else if (variant == 1) img[BLK + 20] ^= 0x40;                /* B's header (max_seq) */
    else img[BLK + boffs[2] + 6] = 0xFF;                         /* b2's key_len */
    put_bytes(dir, 0, 0, img, SEG);
    free(img);
    put_buf(dir, 1, 0, 6, other, 1);
    ls_engine *e = OPEN_DAMAGED(dir, "segment 0");
    if (!e) continue;
    ROW(e, 1, "a0", "va0-newer");               /* from the buffer after the damage */
    ROW(e, 1, "a1", "va1");
    if (variant == 1) ABSENT(e, 1, "b0");
    else ROW(e, 1, "b0", "vb0");
    /* The buffer is durable (a buffer follows): a bad b1 is passed over
    ** (b2 after it is read); when b2 is bad, b1 of its transaction counts. */
    if (variant == 2) ROW(e, 1, "b1", "vb1");
    else ABSENT(e, 1, "b1");
    if (variant == 0) ROW(e, 1, "b2", "vb2");
    else ABSENT(e, 1, "b2");
    ROW(e, 1, "c0", "vc0");
    ROW(e, 2, "x", "vx");
    CHECK_INT(ROWS(e, 1), variant == 1 ? 3 : 5);
    CHECK_DAMAGE(e, "segment 0");
    CHECK_DAMAGE(e, "Rows in this range are lost or may read as an older version.");
    char want[64];                              /* the range: b1, B, or b2 to the next buffer */
    uint32_t start = variant == 1 ? BLK : BLK + boffs[variant == 0 ? 1 : 2];
    uint32_t len = variant == 0 ? boffs[2] - boffs[1] : 2 * BLK - start;
    snprintf(want, sizeof want, "offset %u length %u,", start, len);
    CHECK_DAMAGE(e, want);
    ls_close(e);
  }
}

/* The life of accepted damage: refused by the default open; the salvage
** open keeps what is readable and records the range in the manifest; the
** default open then works and lists it as accepted; once the cleaner has
** copied the segment's rows elsewhere and freed it (a free marker over its
** start), the damage is gone from disk, and from the next open's report
** and the manifest. */
static void test_accepted_damage_life(void) {
  const char *dir = new_dir(1);
  trec a[] = { PUT(1, "a0", "va0", 1, 0), PUT(1, "a1", "va1", 2, END) };
  trec b[] = { PUT(1, "b0", "vb0", 3, END) };
  trec c[] = { PUT(2, "c0", "vc0", 4, END) };
  uint8_t *img = calloc(1, SEG);
  build_buf(img, 4, a, NREC(a), NULL);
  build_buf(img + BLK, 4, b, NREC(b), NULL);
  build_buf(img + 2 * BLK, 4, c, NREC(c), NULL);
  img[BLK + 20] ^= 0x40;                        /* b's header */
  put_bytes(dir, 0, 0, img, SEG);
  free(img);
  ls_engine *e = OPEN_DAMAGED(dir, "offset 4096 length 4096, segment 0");
  if (!e) return;
  ROW(e, 1, "a0", "va0");
  ROW(e, 1, "a1", "va1");
  ABSENT(e, 1, "b0");
  ROW(e, 2, "c0", "vc0");
  CHECK_U64(unit_stats(e).damaged_ranges, 1);
  ls_close(e);
  char path[4200];
  path_of(path, sizeof path, dir, "MANIFEST");
  FILE *f = fopen(path, "r");
  char text[2048] = "";
  size_t n = f ? fread(text, 1, sizeof text - 1, f) : 0;
  text[n] = 0;
  if (f) fclose(f);
  CHECK(strstr(text, "\ndamaged 0 4 4096 4096\n") != NULL);

  e = open_still(__LINE__, dir);                /* accepted: the default opens */
  if (!e) return;
  CHECK_DAMAGE(e, "accepted by an earlier open with on_damage=salvage");
  CHECK_U64(unit_stats(e).damaged_ranges, 1);
  uint64_t freed = 0;
  CHECK_RC(ls_flush(e, 0, &freed), LS_OK);      /* the rows move, segment 0 is freed */
  CHECK(freed >= 1);
  ls_close(e);

  e = open_still(__LINE__, dir);
  if (!e) return;
  ROW(e, 1, "a0", "va0");
  ROW(e, 1, "a1", "va1");
  ROW(e, 2, "c0", "vc0");
  CHECK_OK(e);
  CHECK_U64(unit_stats(e).damaged_ranges, 0);
  ls_close(e);
  f = fopen(path, "r");
  n = f ? fread(text, 1, sizeof text - 1, f) : 0;
  text[n] = 0;
  if (f) fclose(f);
  CHECK(strstr(text, "damaged") == NULL);
}

/* Records with a good CRC but an impossible structure (type, flags, seq
** 0, table 0, a delete with a value, a commit that is not key_len 0,
** val_len 8, table 0): each is rejected and ends the segment; the record
** before it is kept, the one after it is not used. */
static void test_malformed_records(void) {
  static const trec bad[] = {
    { 0, END, 1, "k", "v", 5, 0 },                      /* type 0 */
    { 4, END, 1, "k", "v", 5, 0 },                      /* type 4 */
    { LS_REC_PUT, 0x04, 1, "k", "v", 5, 0 },            /* unknown flag */
    { LS_REC_PUT, 0x80 | END, 1, "k", "v", 5, 0 },
    { LS_REC_PUT, END, 1, "k", "v", 0, 0 },             /* seq 0 */
    { LS_REC_PUT, END, 0, "k", "v", 5, 0 },             /* table 0 */
    { LS_REC_DELETE, END, 1, "k", "vv", 5, 0 },         /* a delete with a value */
    { LS_REC_COMMIT, END, 0, NULL, "four", 5, 0 },      /* commit of val_len 4 */
    { LS_REC_COMMIT, END, 0, "k", NULL, 5, 1 },         /* commit with a key */
    { LS_REC_COMMIT, END, 1, NULL, NULL, 5, 1 },        /* commit of a table */
  };
  for (int i = 0; i < NREC(bad); i++) {
    const char *dir = new_dir(1);
    trec r[] = { PUT(1, "a0", "va0", 1, END), bad[i], PUT(1, "b0", "vb0", 6, END) };
    put_buf(dir, 0, 0, 2, r, NREC(r));
    ls_engine *e = OPEN(dir);
    if (!e) continue;
    int before = unit_failed_checks;
    ROW(e, 1, "a0", "va0");
    ABSENT(e, 1, "k");
    ABSENT(e, 1, "b0");
    CHECK_INT(ROWS(e, 1), 1);
    CHECK_U64(unit_stats(e).recovery_records, 1);
    CHECK_OK(e);
    if (unit_failed_checks != before) printf("     (malformed record case %d)\n", i);
    ls_close(e);
  }
}

/* Every buffer of a segment has the segment's kind: a buffer of another
** kind (same incarnation) ends the segment, in a mixed segment and in a
** group segment. */
static void test_kind_change_ends_segment(void) {
  const char *dir = new_dir(1);
  trec a[] = { PUT(1, "a0", "va0", 1, END) };
  trec b[] = { PUT(1, "b0", "vb0", 2, END) };
  trec c[] = { PUT(2, "c0", "vc0", 3, END) };
  trec d[] = { PUT(2, "d0", "vd0", 4, END) };
  uint8_t *img = calloc(1, SEG);
  build_buf(img, 4, a, 1, NULL);                                        /* mixed */
  build_buf_ex(img + BLK, 4, LS_KIND_GROUP, 0, 1, 0, b, 1, NULL);       /* then group */
  put_bytes(dir, 0, 0, img, SEG);
  memset(img, 0, SEG);
  build_buf_ex(img, 5, LS_KIND_GROUP, 0, 2, 0, c, 1, NULL);             /* group */
  build_buf(img + BLK, 5, d, 1, NULL);                                  /* then mixed */
  put_bytes(dir, 1, 0, img, SEG);
  free(img);
  ls_engine *e = OPEN(dir);
  if (!e) return;
  ROW(e, 1, "a0", "va0");
  ABSENT(e, 1, "b0");
  ROW(e, 2, "c0", "vc0");
  ABSENT(e, 2, "d0");
  CHECK_INT(ROWS(e, 1), 1);
  CHECK_INT(ROWS(e, 2), 1);
  char *rep = NULL;
  CHECK_RC(ls_check(e, 0, &rep), LS_OK);
  free(rep);
  ls_close(e);
}

/* Lengths pointing past the end of the buffer, the segment or 32 bits:
** no out-of-bounds read (this test matters under ASan), the walk stops at
** the bad length, what precedes it is recovered.  A buffer header claiming
** more than the segment holds is no crash's: damage (variants 0-2). */
static void test_lengths_past_end(void) {
  trec a[] = { PUT(1, "a0", "va0", 1, 0), PUT(1, "a1", "va1", 2, END) };
  trec x[] = { PUT(1, "x0", "vx0", 3, 0), PUT(1, "x1", "vx1", 4, END) };
  static char big[3983];
  memset(big, 'B', sizeof big - 1);             /* x0 of 4008 bytes: x1 ends the block */
  trec y[] = { PUT(1, "x0", big, 3, 0), PUT(1, "x1", "vx1", 4, END) };
  for (int variant = 0; variant < 5; variant++) {
    const char *dir = new_dir(1);
    uint8_t *img = calloc(1, SEG);
    build_buf(img, 2, a, NREC(a), NULL);
    uint32_t offs[2];
    if (variant <= 2) {
      static const uint32_t sizes[3] = { SEG, SEG - BLK - LS_BUF_HDR + 8, 0xFFFFFFF8u };
      build_buf(img + BLK, 2, x, NREC(x), NULL);
      set_hdr_sizes(img + BLK, sizes[variant], 2);   /* data_size past the segment */
    } else if (variant == 3) {
      /* x1 claims a value running 64 bytes past data_size, inside the
      ** segment, with a CRC that is right over the claimed bytes. */
      uint32_t len = build_buf(img + BLK, 2, x, NREC(x), offs);
      uint8_t *p = img + BLK + offs[1];
      uint32_t klen = 2, vlen = (len - offs[1]) - LS_REC_HDR - klen + 64;
      memset(p + LS_REC_HDR + klen + 3, 'z', vlen - 3);
      ls_put32(p + 8, vlen);
      ls_put32(p, ls_crc32c(ls_rec_seed(2), p + 4, LS_REC_HDR - 4 + klen + vlen));
    } else {
      /* A buffer in the segment's last block whose last record, the last
      ** 40 bytes of the segment and of the file, claims an 8 KiB value. */
      trec f1[] = { PUT(1, "f1", "vf1", 10, END) }, f2[] = { PUT(1, "f2", "vf2", 11, END) };
      build_buf(img + BLK, 2, f1, 1, NULL);     /* blocks 1 and 2 lead there */
      build_buf(img + 2 * BLK, 2, f2, 1, NULL);
      uint8_t *q = img + SEG - BLK;
      uint32_t len = build_buf(q, 2, y, NREC(y), offs);
      CHECK_INT(offs[1], BLK - 40);
      CHECK_INT(len, BLK - 8);
      set_hdr_sizes(q, BLK - LS_BUF_HDR, 2);
      uint8_t *p = q + offs[1];
      ls_put32(p + 8, 8192);
      ls_put32(p, ls_crc32c(ls_rec_seed(2), p + 4, 40 - 4));
    }
    put_bytes(dir, 0, 0, img, SEG);
    free(img);
    ls_engine *e = variant <= 2 ? OPEN_DAMAGED(dir, "claims more bytes than the segment holds") : OPEN(dir);
    if (!e) continue;
    ROW(e, 1, "a0", "va0");
    ROW(e, 1, "a1", "va1");
    ABSENT(e, 1, "x0");                         /* x0's transaction has no valid END */
    ABSENT(e, 1, "x1");
    if (variant == 4) {
      ROW(e, 1, "f1", "vf1");
      ROW(e, 1, "f2", "vf2");
    }
    CHECK_INT(ROWS(e, 1), variant == 4 ? 4 : 2);
    CHECK_U64(unit_stats(e).recovery_records, variant == 4 ? 5 : variant == 3 ? 3 : 2);
    if (variant <= 2) CHECK_DAMAGE(e, "segment 0");
    else CHECK_OK(e);
    ls_close(e);
  }
}

/* Record lengths at their limits: val_len 0xFFFFFFFF, key_len 65535 past
** the buffer, and a key_len + val_len whose 32-bit sum wraps to a small
** size.  Each is rejected; the record before it is kept. */
static void test_oversize_lengths(void) {
  trec a[] = { PUT(1, "a0", "va0", 1, END), PUT(1, "zz", "vzz", 2, END) };
  for (int variant = 0; variant < 4; variant++) {
    const char *dir = new_dir(1);
    uint8_t *img = calloc(1, SEG);
    uint32_t offs[2];
    uint32_t len = build_buf(img, 3, a, NREC(a), offs);
    uint8_t *p = img + offs[1];
    switch (variant) {
    case 0: ls_put32(p + 8, 0xFFFFFFFFu); break;
    case 1: ls_put16(p + 6, 65535); break;
    case 2: ls_put16(p + 6, 16); ls_put32(p + 8, 0xFFFFFFF0u); break;   /* 24+16+v wraps to 24 */
    case 3: ls_put16(p + 6, 65535); ls_put32(p + 8, 0xFFFFFFFFu); break;
    }
    /* The CRC over the bytes the buffer holds, so only the lengths are wrong. */
    ls_put32(p, ls_crc32c(ls_rec_seed(3), p + 4, len - offs[1] - 4));
    /* A buffer claiming the whole rest of the segment, so the bad lengths
    ** are checked against a large remainder too. */
    if (variant >= 2) set_hdr_sizes(img, SEG - LS_BUF_HDR, 2);
    put_bytes(dir, 0, 0, img, SEG);
    free(img);
    ls_engine *e = OPEN(dir);
    if (!e) continue;
    ROW(e, 1, "a0", "va0");
    ABSENT(e, 1, "zz");
    CHECK_INT(ROWS(e, 1), 1);
    CHECK_U64(unit_stats(e).recovery_records, 1);
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
  static const ls_mtable tables[] = { { 1, 1, 0, "t1" }, { 2, 1, 20, "t2" } };
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
  ls_engine *e = open_at(line, dir);
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
  e = open_at(line, dir);
  if (!e) return;
  row_at(line, e, 1, "a", "a-after-restart", 0);
  check_at(line, e, NULL);
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
  static const ls_mtable tt[] = { { 1, 1, 600, "t1" }, { 2, 1, 0, "t2" } };
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

/* ------------------------------------------------------------------------
** The data files themselves.
*/

static int exists(const char *dir, const char *name) {
  char path[4200];
  path_of(path, sizeof path, dir, name);
  struct stat st;
  return lstat(path, &st) == 0;
}

static void test_data_file_problems(void) {
  /* A gap in the numbering. */
  const char *dir = unit_tmpdir();
  write_manifest(dir, 0, 3, std_tables, 2);
  make_file(dir, 0, FILE_SIZE);
  make_file(dir, 2, FILE_SIZE);
  ls_engine *e = NULL;
  CHECK_RC(ls_open(dir, NULL, &e), LS_CORRUPT);
  CHECK(e == NULL);
  CHECK(strstr(ls_errmsg(), "missing") != NULL);
  if (e) ls_close(e);

  /* Only data-000001.ls. */
  dir = unit_tmpdir();
  write_manifest(dir, 0, 3, std_tables, 2);
  make_file(dir, 1, FILE_SIZE);
  e = NULL;
  CHECK_RC(ls_open(dir, NULL, &e), LS_CORRUPT);
  if (e) ls_close(e);

  /* A data file of the wrong size, shorter or longer. */
  for (int longer = 0; longer < 2; longer++) {
    dir = unit_tmpdir();
    write_manifest(dir, 0, 3, std_tables, 2);
    make_file(dir, 0, FILE_SIZE);
    make_file(dir, 1, longer ? FILE_SIZE + BLK : FILE_SIZE - BLK);
    e = NULL;
    CHECK_RC(ls_open(dir, NULL, &e), LS_CORRUPT);
    CHECK(strstr(ls_errmsg(), "data-000001.ls") != NULL);
    if (e) ls_close(e);
  }

  /* The manifest counts the files: the last one missing is as visible as
  ** one in the middle; a count beyond what any disk_size allows is refused
  ** at once (no memory or time spent on it). */
  dir = unit_tmpdir();
  manifest_files = 3;
  write_manifest(dir, 0, 3, std_tables, 2);
  make_file(dir, 0, FILE_SIZE);
  make_file(dir, 1, FILE_SIZE);
  e = NULL;
  CHECK_RC(ls_open(dir, NULL, &e), LS_CORRUPT);
  CHECK(strstr(ls_errmsg(), "data-000002.ls offset 0 length 65536") != NULL);
  CHECK(strstr(ls_errmsg(), "the data file is missing") != NULL);
  if (e) ls_close(e);
  dir = unit_tmpdir();
  manifest_files = 4000000000u;
  write_manifest(dir, 0, 3, std_tables, 2);
  make_file(dir, 0, FILE_SIZE);
  CHECK_RC(ls_open(dir, NULL, &e), LS_CORRUPT);
  CHECK(strstr(ls_errmsg(), "more than disk_size allows") != NULL);
  if (e) ls_close(e);
  manifest_files = 0;

  /* Data files without a manifest. */
  dir = unit_tmpdir();
  make_file(dir, 0, FILE_SIZE);
  e = NULL;
  CHECK_RC(ls_open(dir, NULL, &e), LS_CORRUPT);
  if (e) ls_close(e);

  /* A leftover data-000003.tmp of an interrupted format is deleted. */
  dir = new_dir(3);
  make_file(dir, 3, FILE_SIZE / 2);
  char from[4200], to[4200];
  path_of(from, sizeof from, dir, "data-000003.ls");
  path_of(to, sizeof to, dir, "data-000003.tmp");
  CHECK(rename(from, to) == 0);
  trec r[] = { PUT(1, "k", "v", 1, END) };
  put_buf(dir, 9, 0, 1, r, 1);
  e = OPEN(dir);
  if (!e) return;
  CHECK(!exists(dir, "data-000003.tmp"));
  ROW(e, 1, "k", "v");
  CHECK_U64(unit_stats(e).recovery_segments, 3 * SPF);
  CHECK_OK(e);
  ls_close(e);
  CHECK(!exists(dir, "data-000003.tmp"));
}

/* Random bytes in every segment: damage (no segment starts with a valid
** header), nothing recovered, no crash; salvage makes the segments usable
** (free markers), and afterwards the directory opens cleanly. */
static void test_garbage_segments(void) {
  uint64_t rnd = unit_seed("garbage");
  const char *dir = new_dir(2);
  uint8_t *img = malloc(SEG);
  for (uint32_t s = 0; s < 2 * SPF; s++) {
    for (uint32_t i = 0; i < SEG; i += 8) {
      uint64_t x = unit_rand(&rnd);
      memcpy(img + i, &x, 8);
    }
    put_bytes(dir, s, 0, img, SEG);
  }
  free(img);
  ls_engine *e = OPEN_DAMAGED(dir, "no buffer header in the segment is valid");
  if (!e) return;
  CHECK_INT(ROWS(e, 1), 0);
  CHECK_INT(ROWS(e, 2), 0);
  ls_stats s = unit_stats(e);
  CHECK_U64(s.records_live, 0);
  CHECK_U64(s.recovery_records, 0);
  CHECK_U64(s.recovery_segments, 2 * SPF);
  CHECK_U64(s.segments_free, s.segments_total);
  CHECK_U64(s.damaged_ranges, 2 * SPF);
  CHECK_U64(s.damaged_bytes, 2 * SPF * SEG);
  CHECK_DAMAGE(e, "segment 7");
  for (int i = 0; i < 20; i++) {
    char k[16], v[32];
    snprintf(k, sizeof k, "g%d", i);
    snprintf(v, sizeof v, "after-garbage-%d", i);
    CHECK_RC(commit_one(e, 1 + (uint32_t)(i & 1), k, v), LS_OK);
  }
  ls_close(e);
  e = OPEN(dir);
  if (!e) return;
  for (int i = 0; i < 20; i++) {
    char k[16], v[32];
    snprintf(k, sizeof k, "g%d", i);
    snprintf(v, sizeof v, "after-garbage-%d", i);
    ROW(e, 1 + (uint32_t)(i & 1), k, v);
  }
  CHECK_INT(ROWS(e, 1), 10);
  CHECK_INT(ROWS(e, 2), 10);
  CHECK_OK(e);
  ls_close(e);
}

/* Fingerprint of every row of tables 1 and 2 except key skip: count and
** a sum of hashes of (table, key, value, seq). */
typedef struct fingerprint { long rows; uint64_t sum; } fingerprint;

static fingerprint fingerprint_of(ls_engine *e, const char *skip) {
  fingerprint f = { 0, 0 };
  for (uint32_t t = 1; t <= 2; t++) {
    ls_cursor *c = NULL;
    if (ls_cursor_open(e, NULL, t, &c)) { f.rows = -1; return f; }
    int rc;
    for (rc = ls_cursor_seek(c, INT64_MIN); !rc && ls_cursor_valid(c); rc = ls_cursor_next(c)) {
      const ls_value *r = ls_cursor_row(c);
      if (r->key_len == strlen(skip) && !memcmp(r->key, skip, r->key_len)) continue;
      uint32_t h = ls_crc32c(t, r->key, r->key_len);
      h = ls_crc32c(h, r->data, r->len);
      f.sum += ((uint64_t)h << 20) ^ r->seq;
      f.rows++;
    }
    if (rc) f.rows = -1;
    ls_cursor_close(c);
  }
  return f;
}

/* ls_check may report damaged ranges, but no problem of the indexes or
** the accounting. */
static void check_indexes_at(int line, ls_engine *e) {
  char *rep = NULL;
  int rc = ls_check(e, 0, &rep);
  if (rc != LS_OK) {
    unit_fail(__FILE__, line, "ls_check: %d (%s): %s", rc, ls_strerror(rc), ls_errmsg());
    return;
  }
  for (const char *l = rep; l && *l;) {
    const char *nl = strchr(l, '\n');
    size_t n = nl ? (size_t)(nl - l) : strlen(l);
    if ((n != 2 || memcmp(l, "ok", 2) != 0) && (n < 8 || memcmp(l, "damage: ", 8) != 0))
      unit_fail(__FILE__, line, "ls_check: %.*s", (int)n, l);
    l = nl ? nl + 1 : l + n;
  }
  free(rep);
}

/* Random but mostly well-formed segments: valid headers, records of random
** types, flags, tables (3 is dropped), one- or two-byte keys (so versions
** collide), sequences, CONT streams and COMMIT records, with one field in
** about sixteen corrupted (CRC kept or not), random data_size / nrecords
** now and then, and random bytes where a later block's header should be.
** Nothing may crash or read out of bounds; every recovered row must read
** back; ls_check may report damage but no index or accounting problem; a
** commit works; and a second recovery, in the default mode (the salvage
** accepted what it found), gives the same rows (V8). */
static void test_garbage_records(void) {
  uint64_t rnd = unit_seed("garbage records");
  uint8_t *img = malloc(SEG);
  uint64_t total_records = 0;
  long total_rows = 0;
  for (int iter = 0; iter < 40; iter++) {
    const char *dir = new_dir(1);
    for (uint32_t s = 0; s < SPF; s++) {
      uint64_t seg_seq = 1 + s + 4 * (uint64_t)iter;
      uint32_t seed = ls_rec_seed(seg_seq);
      for (uint32_t i = 0; i < SEG; i += 8) {
        uint64_t x = unit_rand(&rnd);
        memcpy(img + i, &x, 8);
      }
      for (uint32_t b = 0; b < SEG / BLK; b++) {
        uint8_t *buf = img + b * BLK;
        uint32_t off = LS_BUF_HDR, nrec = 0;
        uint64_t maxseq = 0;
        while (unit_rand(&rnd) % 16) {
          uint64_t x = unit_rand(&rnd), y = unit_rand(&rnd);
          uint32_t type = x % 8 == 0 ? LS_REC_COMMIT : x % 8 < 3 ? LS_REC_DELETE : LS_REC_PUT;
          uint32_t flags = (x >> 4) % 4 == 0 ? LS_RF_CONT : (x >> 4) % 4 == 1 ? 0 : LS_RF_END;
          uint32_t table = type == LS_REC_COMMIT ? 0 : 1 + (uint32_t)((x >> 8) % 5 == 0 ? 2 : (x >> 8) % 2);
          uint8_t key[2] = { (uint8_t)('a' + (y % 6)), (uint8_t)('a' + ((y >> 8) % 3)) };
          uint32_t klen = type == LS_REC_COMMIT ? 0 : 1 + (uint32_t)((y >> 16) % 2);
          uint8_t val[160];
          uint32_t vlen = type == LS_REC_PUT ? (uint32_t)((y >> 20) % sizeof val) : 0;
          for (uint32_t v = 0; v < vlen; v++) val[v] = (uint8_t)(y >> (v % 56));
          uint64_t seq = 1 + (x >> 16) % 300;
          if (type == LS_REC_COMMIT) {
            ls_put64(val, seq > 5 ? seq - 1 - (y >> 32) % 5 : 1);
            vlen = 8;
            flags = LS_RF_END;
          }
          uint32_t size = ls_rec_size(klen, vlen);
          if (off + size > BLK) break;
          uint8_t *p = buf + off;
          ls_rec_encode(p, type, table, key, klen, val, vlen);
          ls_rec_seal(p, seq, flags, seed);
          if (y % 16 == 0) {                    /* corrupt one field */
            int recrc = (y >> 4) % 2;
            switch ((y >> 8) % 6) {
            case 0: p[4] = (uint8_t)(y >> 24); break;
            case 1: p[5] = (uint8_t)(y >> 24); break;
            case 2: ls_put16(p + 6, (uint16_t)(y >> 24)); break;
            case 3: ls_put32(p + 8, (uint32_t)(y >> 24)); break;
            case 4: ls_put64(p + 16, (y >> 40) % 3); break;
            case 5: p[LS_REC_HDR + (klen + vlen ? (y >> 24) % (klen + vlen) : 0)] ^= 0x10; break;
            }
            uint64_t cov = (uint64_t)LS_REC_HDR + ls_get16(p + 6) + ls_get32(p + 8);
            if (recrc && b * BLK + off + cov <= SEG) ls_put32(p, ls_crc32c(seed, p + 4, (size_t)cov - 4));
          }
          if (seq > maxseq) maxseq = seq;
          off += size;
          nrec++;
        }
        uint64_t x = unit_rand(&rnd);
        ls_bufhdr h = {
          .kind = x % 32 ? LS_KIND_MIXED : LS_KIND_GROUP, .seg_seq = seg_seq, .max_seq = maxseq,
          .data_size = x % 16 ? off - LS_BUF_HDR : (uint32_t)(x >> 8) & ~7u,
          .nrecords = (x >> 4) % 16 ? nrec : (uint32_t)(x >> 20),
        };
        if (b == 0 || (x >> 60) % 4) ls_bufhdr_encode(buf, &h);
        if (b + 1 < SEG / BLK && (x >> 56) % 2)   /* zero tail, or random bytes, up to the next block */
          memset(buf + off, 0, BLK - off);
      }
      put_bytes(dir, s, 0, img, SEG);
    }
    ls_engine *e = open_mode(__LINE__, dir, LS_ON_DAMAGE_SALVAGE);
    if (!e) continue;
    int before = unit_failed_checks;
    long n1 = ROWS(e, 1), n2 = ROWS(e, 2);
    CHECK(n1 >= 0 && n2 >= 0);
    total_rows += n1 + n2;
    total_records += unit_stats(e).recovery_records;
    fingerprint f1 = fingerprint_of(e, "after");
    check_indexes_at(__LINE__, e);
    CHECK_RC(commit_one(e, 1, "after", "after-v"), LS_OK);
    ls_close(e);
    e = open_still(__LINE__, dir);                /* what remains was accepted */
    if (!e) continue;
    ROW(e, 1, "after", "after-v");
    fingerprint f2 = fingerprint_of(e, "after");
    CHECK_INT(f2.rows, f1.rows);
    CHECK_U64(f2.sum, f1.sum);
    check_indexes_at(__LINE__, e);
    ls_close(e);
    if (unit_failed_checks != before) printf("     (iteration %d)\n", iter);
  }
  /* The generator must reach deep enough to matter. */
  CHECK(total_records > 40 * 20);
  CHECK(total_rows > 40 * 5);
  free(img);
}

int main(void) {
  RUN(test_empty_manifest_only);
  RUN(test_one_buffer_three_puts);
  RUN(test_incomplete_txn_not_applied);
  RUN(test_truncated_record);
  RUN(test_zero_tail);
  RUN(test_torn_last_buffer);
  RUN(test_torn_random_sectors);
  RUN(test_open_buffer_rewrite);
  RUN(test_old_incarnation_after_tail);
  RUN(test_valid_buffer_after_corrupt);
  RUN(test_accepted_damage_life);
  RUN(test_malformed_records);
  RUN(test_kind_change_ends_segment);
  RUN(test_lengths_past_end);
  RUN(test_oversize_lengths);
  RUN(test_version_resolution);
  RUN(test_equal_seq_copies);
  RUN(test_multibuf_committed);
  RUN(test_multibuf_no_commit);
  RUN(test_multibuf_commit_lower_segment);
  RUN(test_commit_segment_kept);
  RUN(test_dropped_and_truncated);
  RUN(test_sequences_continue);
  RUN(test_free_marker);
  RUN(test_torn_first_write_not_revived);
  RUN(test_data_file_problems);
  RUN(test_garbage_segments);
  RUN(test_garbage_records);
  return unit_finish();
}
