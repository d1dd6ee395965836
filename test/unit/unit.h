/*
** unit.h -- a tiny harness for the engine's C unit tests.
**
** A test program defines test functions and calls RUN(fn) for each from
** main(), then returns unit_finish().  A test fails when any CHECK in it
** fails; a failing CHECK prints the file, line, what was expected and what
** was got.  unit_finish() prints the closing line "N passed, N failed"
** (counting test functions) and returns the exit status.
**
** Tests that need a directory call unit_tmpdir(), which makes a fresh one
** (removed by unit_finish() unless LOGSTOR_KEEP_TMP is set).
*/
#ifndef LS_UNIT_H
#define LS_UNIT_H

#include <stdint.h>
#include <stdio.h>
#include <inttypes.h>

extern int unit_failed_checks;      /* failed checks in the current test */

void unit_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void unit_run(const char *name, void (*fn)(void));
int unit_finish(void);

/* Fresh empty directory for this test; path valid until unit_finish(). */
const char *unit_tmpdir(void);
/* rm -rf path (no symlink following). */
void unit_rmtree(const char *path);
/* Copy the files of directory from into directory to (made if needed),
** except LOCK; a failed CHECK if one can not be copied. */
void unit_copy_dir(const char *from, const char *to);

/* malloc(n), exiting the test program when there is no memory. */
void *unit_xmalloc(size_t n);
/* len deterministic bytes for tag. */
void unit_fill_bytes(void *buf, size_t len, uint64_t tag);

/* Engine helpers shared by the test programs. */
#include "logstor.h"
/* Open an existing dir with the default options; a failed CHECK when it
** does not open. */
ls_engine *unit_reopen(const char *dir);
/* ls_check of every table: a failed check unless it reports "ok". */
void unit_check_ok(ls_engine *e);
/* The engine's counters now. */
ls_stats unit_stats(ls_engine *e);
/* Open (creating) dir with these sizes (0: default), manual_cleaning and
** compaction policy (0: default); a failed CHECK when it does not open. */
ls_engine *unit_open(const char *dir, uint64_t seg, uint64_t file, uint64_t disk, int manual, int policy);
/* Put key -> val of len bytes (val NULL: delete key) in its own
** transaction; unit_puts takes a string.  The commit's result. */
int unit_put(ls_engine *e, uint32_t table, const char *key, const void *val, uint32_t len);
int unit_puts(ls_engine *e, uint32_t table, const char *key, const char *val);
/* The committed value of key as a string: "" if absent, "ERROR ..." on
** an error (a static buffer, valid until the next call). */
const char *unit_gets(ls_engine *e, uint32_t table, const char *key);
/* Seed from $LOGSTOR_SEED or the clock; printed so a failure can be rerun. */
uint64_t unit_seed(const char *what);
/* xorshift64* generator. */
uint64_t unit_rand(uint64_t *state);

#define RUN(fn) unit_run(#fn, fn)

#define CHECK(expr) do { if (!(expr)) \
  unit_fail(__FILE__, __LINE__, "CHECK(%s) failed", #expr); } while (0)

#define CHECK_INT(got, want) do { long long g_ = (long long)(got), w_ = (long long)(want); \
  if (g_ != w_) unit_fail(__FILE__, __LINE__, "%s: expected %lld, got %lld", #got, w_, g_); } while (0)

#define CHECK_U64(got, want) do { uint64_t g_ = (uint64_t)(got), w_ = (uint64_t)(want); \
  if (g_ != w_) unit_fail(__FILE__, __LINE__, "%s: expected %" PRIu64 ", got %" PRIu64, #got, w_, g_); } while (0)

/* An LS_* result code, printed with its message when it differs. */
#define CHECK_RC(got, want) do { int g_ = (got), w_ = (want); \
  if (g_ != w_) unit_fail(__FILE__, __LINE__, "%s: expected %d (%s), got %d (%s): %s", #got, \
                          w_, ls_strerror(w_), g_, ls_strerror(g_), ls_errmsg()); } while (0)

#define CHECK_MEM(got, want, n) do { if (memcmp((got), (want), (n)) != 0) \
  unit_fail(__FILE__, __LINE__, "%s differs from %s over %zu bytes", #got, #want, (size_t)(n)); } while (0)

#ifdef UNIT_IMAGES
/* ---- data directories built byte by byte (the recovery tests) ---------
** A test program defines UNIT_IMAGES before including unit.h.  Directories
** have a MANIFEST (through ls_manifest_write) and zero-filled data files
** of exactly IMG file_size bytes with a free marker at each segment start;
** buffer images are encoded with the engine's own encoders (ls_rec_encode,
** ls_rec_seal with the segment seed, ls_bufhdr_encode), so a test fails
** only if recovery misreads a correct image.  Geometry: 16 KiB segments, 4
** segments per data file; tables 1 and 2 (one group each). */
#include "format.h"
#include "manifest.h"

#define SEG        16384u                  /* segment_size */
#define SPF        4u                      /* segments per data file */
#define FILE_SIZE  ((uint64_t)SEG * SPF)   /* file_size */
#define BLK        LS_BLOCK
#define SECTOR     LS_SECTOR

#define END  LS_RF_END
#define CONT LS_RF_CONT

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

/* Key and value bytes of r; the bytes its CRC covers (header, key, value). */
uint32_t klen_of(const trec *r);
uint32_t vlen_of(const trec *r);
uint32_t covered(const trec *r);
/* Encode a buffer of n records for the segment incarnation seg_seq at p
** (header first).  max_seq 0 stands for the highest record sequence.
** offs (may be NULL) receives each record's offset from p.  Returns the
** bytes used (header + data); p must have room for them.  build_buf: a
** mixed buffer whose max_seq is its highest record sequence. */
uint32_t build_buf_ex(uint8_t *p, uint64_t seg_seq, uint32_t kind, uint64_t max_seq,
                      uint32_t table, uint32_t group, const trec *r, int n, uint32_t *offs);
uint32_t build_buf(uint8_t *p, uint64_t seg_seq, const trec *r, int n, uint32_t *offs);
/* Re-encode the (valid) header at p with another data_size and nrecords;
** the CRC is recomputed, so only the numbers are wrong. */
void set_hdr_sizes(uint8_t *p, uint32_t data_size, uint32_t nrecords);
/* A free marker (kind 3, no records) at p. */
void build_free_marker(uint8_t *p, uint64_t seg_seq, uint64_t max_seq);
void path_of(char *out, size_t cap, const char *dir, const char *name);
/* Write dir/MANIFEST with the standard sizes and the given catalog; its
** `files` count is manifest_files. */
extern uint32_t manifest_files;
void write_manifest(const char *dir, uint64_t seq_floor, uint32_t next_table,
                    const ls_mtable *tables, uint32_t ntables);
/* Data file n of dir, size bytes of zeros, formatted as the engine does. */
void make_file(const char *dir, uint32_t n, uint64_t size);
extern const ls_mtable std_tables[2];   /* tables 1 and 2 */
/* A fresh directory: manifest with tables 1 and 2 (seq_floor) and nfiles
** formatted data files. */
const char *new_dir_floor(uint32_t nfiles, uint64_t seq_floor);
const char *new_dir(uint32_t nfiles);
/* Write len bytes at offset off of segment seg; read a whole segment
** image (1 if the file had it); encode a buffer and write it at offset off
** of segment seg. */
void put_bytes(const char *dir, uint32_t seg, uint32_t off, const void *p, size_t len);
int get_seg(const char *dir, uint32_t seg, uint8_t *img);
void put_buf(const char *dir, uint32_t seg, uint32_t off, uint64_t seg_seq, const trec *r, int n);

/* Checking an opened engine; failures name the caller's file and line. */
ls_engine *open_at(const char *file, int line, const char *dir);
#define OPEN(dir) open_at(__FILE__, __LINE__, (dir))
/* Open without background cleaning (records stay where they are). */
ls_engine *open_mode(const char *file, int line, const char *dir, int on_damage);
ls_engine *open_still(const char *file, int line, const char *dir);
/* Damage in the directory: the default open refuses it, naming needle;
** the salvage open is returned. */
ls_engine *open_damaged(const char *file, int line, const char *dir, const char *needle);
#define OPEN_DAMAGED(dir, needle) open_damaged(__FILE__, __LINE__, (dir), (needle))
/* The row key of table must hold want (NULL: absent); with want_seq, also
** that write sequence. */
void row_at(const char *file, int line, ls_engine *e, uint32_t table, const char *key, const char *want,
            uint64_t want_seq);
#define ROW(e, t, k, v)         row_at(__FILE__, __LINE__, (e), (t), (k), (v), 0)
#define ROW_SEQ(e, t, k, v, s)  row_at(__FILE__, __LINE__, (e), (t), (k), (v), (s))
#define ABSENT(e, t, k)         row_at(__FILE__, __LINE__, (e), (t), (k), NULL, 0)
/* Rows of table by a full cursor scan, each read back with ls_get too;
** -1 on an error. */
long scan_rows(const char *file, int line, ls_engine *e, uint32_t table);
#define ROWS(e, t) scan_rows(__FILE__, __LINE__, (e), (t))
/* ls_check must say "ok" (needle NULL) or mention needle. */
void check_at(const char *file, int line, ls_engine *e, const char *needle);
#define CHECK_OK(e)             check_at(__FILE__, __LINE__, (e), NULL)
#define CHECK_DAMAGE(e, needle) check_at(__FILE__, __LINE__, (e), (needle))
/* Commit one put (or a delete when val is NULL) of key in table. */
int commit_one(ls_engine *e, uint32_t table, const char *key, const char *val);
#endif /* UNIT_IMAGES */

#ifdef UNIT_ROWS
/* ---- rows with versions and segment counts (the cleaner tests) --------
** A test program defines UNIT_ROWS before including unit.h. */
#define KB 1024u
#define ROW_MAX 2048               /* the longest value put_row writes */

/* Open dir (existing) with the default options and manual_cleaning. */
ls_engine *reopen(const char *dir, int manual);
/* Put a row of a second table, "other", so that the active segment holds
** rows of two tables: the separator copies its rows instead of adopting it
** whole. */
void mix_in(ls_engine *e);
/* 1 if key holds exactly val (val NULL: absent). */
int is(ls_engine *e, uint32_t t, const char *key, const void *val, uint32_t len);
/* The value of version ver of key number k: len bytes, recognisable. */
void fill(char *buf, uint32_t len, int k, long ver);
/* Row k of a test: key prefix + k, value version ver of len bytes.  put_row
** writes it, del_row deletes it, has_row checks it is there (or, present
** 0, not there). */
int put_row(ls_engine *e, uint32_t t, const char *prefix, int k, long ver, uint32_t len);
int del_row(ls_engine *e, uint32_t t, const char *prefix, int k);
int has_row(ls_engine *e, uint32_t t, const char *prefix, int k, long ver, uint32_t len, int present);
/* Segments by state and kind (ls_segment_foreach). */
typedef struct segcount {
  int used, mixed, group, free;
  uint32_t table;                  /* count group segments of this table */
  int table_segs, table_single;    /* its segments, those with one record */
} segcount;
segcount segments(ls_engine *e, uint32_t table);
#endif /* UNIT_ROWS */

#ifdef UNIT_INDEX
/* ---- reference checks of an ls_index (the index tests) ---------------
** A test program defines UNIT_INDEX before including unit.h.  Every check
** compares the index, through its public API, with a reference: a sorted
** array of entries, or a per-key model. */
#include "index.h"

int key_cmp(uint64_t ahi, uint64_t alo, uint64_t bhi, uint64_t blo);
int entry_cmp(const void *a, const void *b);   /* qsort of idx_entry by key */
/* Sort e[0..n) by key and drop duplicate keys; returns the new count. */
size_t sort_unique(idx_entry *e, size_t n);
/* n random entries (sorted, unique); words are random. */
idx_entry *random_entries(size_t n, uint64_t *rng, size_t *got);
idx_key key_of(const idx_entry *e);
/* Insert e[0..n) in a random order. */
void insert_shuffled(ls_index *ix, const idx_entry *e, size_t n, uint64_t *rng);
/* The whole index equals want[0..n) (keys and words, in order), checked
** with idx_range in batches of batch. */
void check_range_all(const ls_index *ix, const idx_entry *want, size_t n, size_t batch, int after);
/* idx_foreach's callback comparing with want (arg: a foreach_state). */
typedef struct foreach_state {
  const idx_entry *want;
  size_t n, pos;
  int bad;
  size_t stop_at;                  /* return 1 at this position (SIZE_MAX: never) */
  const uint64_t *want_seq;        /* expected sequences, or NULL */
} foreach_state;
int foreach_fn(void *arg, const idx_entry *e, uint64_t seq);
/* idx_foreach visits want[0..n) in order (with sequences if want_seq). */
void check_foreach(const ls_index *ix, const idx_entry *want, size_t n, const uint64_t *want_seq);
/* Every key of want is found with its word. */
void check_gets(const ls_index *ix, const idx_entry *want, size_t n);

/* A model of the index: which keys of a key space are present, with what
** word and sequence. */
typedef struct model {
  idx_entry *keys;                 /* key space, sorted */
  size_t n;
  uint8_t *present;
  uint64_t *word;
  uint64_t *seq;                   /* tracking runs only */
  uint64_t count;
} model;
/* A key space of n keys: mostly random, plus groups that share a hi and
** keys that share the top 40 bits of hi. */
void model_init(model *md, size_t n, uint64_t *rng);
void model_free(model *md);
/* The index holds exactly the model's present keys, in order. */
void model_check_all(const ls_index *ix, const model *md, int with_seq);
#endif /* UNIT_INDEX */

#endif
