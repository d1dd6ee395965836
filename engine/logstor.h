/*
** logstor.h -- public API of the logstor storage engine.
**
** logstor keeps rows of many tables in append-only segments inside large,
** preallocated data files.  Every row is found through an in-memory index
** (one ordered structure per table, keyed by the RIPEMD-160 digest of the
** key) and read with a single disk read.  Writes are grouped into
** transactions that one writer at a time commits durably in groups (on
** the committing thread itself when the writer is idle, else on the
** writer's thread with whatever else waits).
**
** Conventions:
**   - Every function that can fail returns an LS_* code: LS_OK (0) or a
**     negative code.  ls_errmsg() returns a message describing the most
**     recent failure on the calling thread (it names the table, segment or
**     file involved); ls_strerror() gives the generic text of a code.
**   - Keys and values are opaque byte strings.  A key is at most
**     LS_MAX_KEY bytes; a key plus value must fit one segment (see
**     ls_max_value()).
**   - All functions are thread-safe unless noted.  A transaction or cursor
**     object is used by one thread at a time.
**
** The engine has no dependency on SQLite.
*/
#ifndef LOGSTOR_H
#define LOGSTOR_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Result codes. */
#define LS_OK          0
#define LS_NOTFOUND  (-1)   /* no row with that key */
#define LS_CONFLICT  (-2)   /* commit: another transaction changed a key this one read */
#define LS_IOERR     (-3)   /* an I/O call failed (message names the call and errno) */
#define LS_CORRUPT   (-4)   /* data on disk failed a check (message names the segment) */
#define LS_FULL      (-5)   /* disk_size reached or the file system is full */
#define LS_TOOBIG    (-6)   /* key or row larger than a record can hold */
#define LS_NOMEM     (-7)   /* memory allocation failed */
#define LS_BUSY      (-8)   /* data directory locked by another process */
#define LS_INVALID   (-9)   /* bad argument, option or state */
#define LS_READONLY  (-10)  /* a write or sync failed earlier; reopen to write again */
#define LS_NOTABLE   (-11)  /* no table with that id */
#define LS_FORMAT    (-12)  /* directory written by an incompatible format version */
#define LS_EXPIRED   (-13)  /* the transaction's snapshot was released (its bounds) */

const char *ls_strerror(int rc);
const char *ls_errmsg(void);       /* detail of the last failure on this thread */

/* What the last failure on this thread was doing when the operating system
** refused (LS_IOERR, LS_FULL): map error codes from this, not from the
** words of ls_errmsg(). */
#define LS_CAUSE_NONE  0   /* not an I/O failure */
#define LS_CAUSE_READ  1   /* reading a data file, the manifest or the directory */
#define LS_CAUSE_WRITE 2   /* writing a data file or the manifest, formatting a data file */
#define LS_CAUSE_SYNC  3   /* fdatasync or fsync */
#define LS_CAUSE_OTHER 4   /* open, create, rename, lock, stat, hole punching */
int ls_errcause(void);

#define LS_MAX_KEY 65535u          /* largest key in bytes */

typedef struct ls_engine ls_engine;
typedef struct ls_txn ls_txn;
typedef struct ls_cursor ls_cursor;

/* ------------------------------------------------------------------------
** Keys.  An ls_key carries the key bytes (not copied) and their digest,
** computed once by ls_key_set() so that a caller checking and then writing
** a key hashes it once.
*/
typedef struct ls_key {
  const void *data;                /* key bytes, owned by the caller */
  uint32_t len;                    /* key length in bytes */
  uint8_t digest[20];              /* RIPEMD-160 of the key bytes */
} ls_key;

/* Fill k with the key bytes (not copied) and their digest. */
void ls_key_set(ls_key *k, const void *data, uint32_t len);

/* Token of a key: the first 8 bytes of its digest read as a signed
** big-endian integer.  Scans return rows in ascending token order. */
int64_t ls_key_token(const ls_key *k);
int64_t ls_token_of(const void *data, uint32_t len);

/* ------------------------------------------------------------------------
** Values returned by reads.  The engine reads a whole record into mem and
** points data at the value inside it; an ls_value may be reused across
** reads (mem grows as needed) and is released with ls_value_free().
*/
typedef struct ls_value {
  uint8_t *mem;                    /* read buffer (owned, malloc'ed) */
  size_t cap;                      /* allocated size of mem */
  const uint8_t *data;             /* value bytes, inside mem */
  uint32_t len;                    /* value length */
  const uint8_t *key;              /* key bytes of the record, inside mem */
  uint32_t key_len;
  int64_t token;                   /* token of the key */
  uint64_t seq;                    /* write sequence of the record */
} ls_value;

void ls_value_free(ls_value *v);

/* ------------------------------------------------------------------------
** Opening.  One engine instance serves one data directory.  Opening the
** same directory twice in one process returns the same instance (reference
** counted); another process gets LS_BUSY.
*/
enum ls_io_kind {
  LS_IO_AUTO = 0,                  /* io_uring if it can be set up, else POSIX */
  LS_IO_URING,                     /* io_uring only (fail if unavailable) */
  LS_IO_POSIX                      /* pread/pwrite/fdatasync */
};

typedef struct ls_options {
  uint64_t segment_size;  /* bytes; 0 = default (128 KiB) or as created */
  uint64_t file_size;     /* bytes; 0 = default (32 MiB) or as created */
  uint64_t disk_size;     /* bytes of data files at most; 0 = unlimited */
  int io;                 /* enum ls_io_kind */
  int create;             /* create the directory if it does not exist */
  const char *fault;      /* fault-injection spec (tests; see io_fault.c);
                          ** NULL: taken from $LOGSTOR_FAULT if set */
  uint64_t separator_memory;  /* bytes of relocation buffers (one segment
                              ** each); 0 = default (16 MiB) */
  int compaction_policy;  /* LS_POLICY_*; 0 = default (cost-benefit) */
  uint64_t snapshot_memory;   /* bytes of memory for the old versions that
                              ** running snapshots need; beyond it the oldest
                              ** snapshot expires (LS_EXPIRED); 0 = default
                              ** (64 MiB, about 800,000 versions) */
  int manual_cleaning;    /* tests: no background cleaning; the cleaner
                          ** runs only when a write needs room or when
                          ** called (ls_flush, ls_compact, ls_clean_step) */
  int on_damage;          /* LS_ON_DAMAGE_*: what damage found at open does */
  int readonly;           /* open read-only: a shared lock (any number of
                          ** read-only openers at once, no writer; a
                          ** writer holds it alone), the index rebuilt,
                          ** nothing written: no repair, no sealing, no
                          ** cleaning; writes fail with LS_READONLY */
  int record_io;          /* tests: wrap the I/O backend in the recording
                          ** one (io_record.c, the power-loss simulator) */
  int synchronous;        /* LS_SYNC_*: when a commit is durable; 0 = full */
  double space_target;    /* unbounded disk: compaction starts when the
                          ** segments in use hold more than this times the
                          ** live bytes; 0 = default (LS_DEFAULT_SPACE_TARGET),
                          ** else 1.1 .. 100 */
  uint32_t sync_interval_ms;  /* synchronous normal: the writer syncs at
                              ** most this long after a commit returned;
                              ** 0 = default (100 ms) */
  uint64_t cache_size;    /* bytes of the record cache (recently read
                          ** records, shared by every user of the engine);
                          ** 0 = default (64 MiB), LS_CACHE_NONE: no cache */
  /* The host's decision on a transaction prepared with
  ** ls_txn_prepare_decided that a crash left in doubt: 1 it committed, 0
  ** it did not, < 0 the decision can not be read now (the open fails).
  ** Called during the open; without it such a transaction fails the open
  ** with LS_BUSY. */
  int (*decide)(void *arg, uint64_t decision);
  void *decide_arg;
} ls_options;

/* Durability of a commit (SQLite's PRAGMA synchronous; writer.c, N1-N3):
**   LS_SYNC_FULL    the default: durable when the commit returns
**   LS_SYNC_NORMAL  written to the data file when the commit returns;
**                   synced in the background within sync_interval_ms, at
**                   close, and whenever the log's structure needs it.  A
**                   power cut may lose the last commits, never part of
**                   one: recovery finds a prefix of the commits, each whole,
**                   and no damage.  A process crash (kill -9) loses nothing.
**   LS_SYNC_OFF     the writer never syncs for a commit (bulk loads); a
**                   process crash loses nothing, a power cut may lose or
**                   damage anything written since the last sync.
** ls_options.synchronous sets the engine's choice, ls_txn_synchronous one
** transaction's; a commit group syncs as its strictest transaction asks. */
#define LS_SYNC_DEFAULT 0                /* a transaction: the engine's */
#define LS_SYNC_FULL    1
#define LS_SYNC_NORMAL  2
#define LS_SYNC_OFF     3
#define LS_DEFAULT_SYNC_INTERVAL_MS 100
#define LS_DEFAULT_SPACE_TARGET 1.3
/* Change the unbounded disk's space target (as ls_options.space_target;
** 0: unchanged). */
int ls_space_target(ls_engine *e, double target);
/* Change the engine's choice for later commits: mode LS_SYNC_* (DEFAULT:
** unchanged), interval_ms 1 .. LS_MAX_SYNC_INTERVAL_MS (0: unchanged). */
int ls_synchronous(ls_engine *e, int mode, uint32_t interval_ms);
#define LS_MAX_SYNC_INTERVAL_MS     60000

/* Damage found at open (FORMAT.md, "Damage"; a torn tail left by a crash
** is never damage):
**   LS_ON_DAMAGE_ERROR    the default: the open fails with LS_CORRUPT and a
**                         message naming the damage, unless every damaged
**                         range was accepted by an earlier salvage open
**   LS_ON_DAMAGE_SALVAGE  open with what is readable: missing or short data
**                         files are made again (empty), and the damaged
**                         ranges are recorded in the manifest as accepted;
**                         ls_check and the stats keep listing them
**   LS_ON_DAMAGE_REPORT   open read-only whatever the damage, writing
**                         nothing (tools: tool/logstor check) */
#define LS_ON_DAMAGE_ERROR   0
#define LS_ON_DAMAGE_SALVAGE 1
#define LS_ON_DAMAGE_REPORT  2

/* Compaction policies: which segments a compaction step takes (u: the
** segment's live fraction; cleaner.c explains the scores). */
#define LS_POLICY_COST_BENEFIT 1   /* (1-u)/u * sqrt(T / ln(u0/u)): bytes freed per
                                   ** byte copied, times how slowly its rows die */
#define LS_POLICY_GREEDY       2   /* least live bytes first */
#define LS_POLICY_LFS          3   /* LFS's (1-u) * age / (1+u), for comparison */

#define LS_DEFAULT_SEPARATOR_MEMORY (16u * 1024 * 1024)
#define LS_DEFAULT_SNAPSHOT_MEMORY  (64u * 1024 * 1024)
#define LS_DEFAULT_CACHE_SIZE       (64u * 1024 * 1024)
#define LS_CACHE_NONE               UINT64_MAX
/* Bytes of old records running snapshots may keep from being freed: a
** quarter of disk_size, or this on an unlimited disk. */
#define LS_DEFAULT_SNAPSHOT_DISK    (1024ull * 1024 * 1024)

#define LS_DEFAULT_SEGMENT_SIZE (128u * 1024)
#define LS_DEFAULT_FILE_SIZE    (32u * 1024 * 1024)
#define LS_MIN_SEGMENT_SIZE     (8u * 1024)
#define LS_MAX_SEGMENT_SIZE     (1024u * 1024)

/* Fill o with defaults (all zero: defaults, AUTO backend, no create). */
void ls_options_init(ls_options *o);

/* Open (or create) the engine for directory dir.  Options that are zero
** take the directory's values; a non-zero size that differs from the
** directory's is LS_INVALID.  On success *out holds a reference that must
** be released with ls_close(). */
int ls_open(const char *dir, const ls_options *opt, ls_engine **out);

/* Release a reference.  The last close stops the background threads and
** closes the files.  Transactions and cursors must be freed first. */
void ls_close(ls_engine *e);

/* Opens currently sharing e (1: the caller is its only user). */
int ls_refs(ls_engine *e);

/* The ids of the tables that existed when this engine instance opened the
** directory, handed out once: the first call gets them (*ids malloc'ed, to
** free with free()), every later call none.  A host that keeps its own
** catalog (the SQLite module's shadow tables) checks these for orphans --
** tables created later may belong to a creation still in flight. */
int ls_open_tables(ls_engine *e, uint32_t **ids, uint32_t *n);

/* Largest value that fits one record for a key of key_len bytes. */
uint32_t ls_max_value(ls_engine *e, uint32_t key_len);

/* ------------------------------------------------------------------------
** Tables.  Tables have stable numeric ids that are never reused; the name
** is a label for stats and tools.  Catalog changes are durable when the
** call returns.
*/
int ls_table_create(ls_engine *e, const char *name, uint32_t groups, uint32_t *id);
/* Create a table with the given id (a copy keeping its source's ids):
** LS_INVALID if a table of this directory has had that id or a later one,
** so ids stay never reused; create copies in ascending id order. */
int ls_table_create_id(ls_engine *e, const char *name, uint32_t groups, uint32_t id);
/* Table orders: the order of the index, of cursors and of tokens.
**   LS_ORDER_TOKEN  the default: by the key's digest (a hash: uniform
**                   tokens, compaction groups of equal size)
**   LS_ORDER_KEY    by the key: keys are typed keys (0x01 + 8-byte
**                   big-endian integer, 0x02 + IEEE-754 double, 0x03 +
**                   text, 0x04 + blob, the SQLite module's encoding), in
**                   SQLite's order (numbers by value, then text, then blobs,
**                   both by bytes); other byte strings after them, by their
**                   bytes.  A key's token is its position, a 64-bit summary
**                   that never contradicts that order (ls_key_position;
**                   distinct for integers from -2^62 up, keyorder.h). */
#define LS_ORDER_TOKEN 0
#define LS_ORDER_KEY   1
/* ls_table_create with an order, and an id (0: the next one; else as
** ls_table_create_id).  *id (may be NULL) receives the id. */
int ls_table_create_ex(ls_engine *e, const char *name, uint32_t groups, int order, uint32_t want, uint32_t *id);
/* The token of a key in a key-ordered table (its position). */
int64_t ls_key_position(const void *data, uint32_t len);
/* <0, 0, >0 as typed key a is before, equal to or after b (LS_ORDER_KEY). */
int ls_key_compare(const void *a, uint32_t alen, const void *b, uint32_t blen);
int ls_table_drop(ls_engine *e, uint32_t id);       /* data gone, space freed */
int ls_table_truncate(ls_engine *e, uint32_t id);   /* all rows gone */
int ls_table_rename(ls_engine *e, uint32_t id, const char *name);
int ls_table_exists(ls_engine *e, uint32_t id);     /* 1, 0 */

typedef struct ls_table_info {
  uint32_t id;
  uint32_t groups;
  int order;                       /* LS_ORDER_* */
  char name[128];
  uint64_t rows;                   /* live rows */
  uint64_t records_live;           /* index entries: rows and tombstones */
  uint64_t live_bytes;             /* bytes of live records (headers included) */
  uint64_t index_bytes;            /* memory of the table's index */
} ls_table_info;

int ls_table_info_get(ls_engine *e, uint32_t id, ls_table_info *info);

/* Call fn for each table in id order; stops early if fn returns non-zero. */
int ls_table_foreach(ls_engine *e, int (*fn)(void *arg, const ls_table_info *), void *arg);

/* ------------------------------------------------------------------------
** Reads of committed data.
*/
/* Read the row with key k of table id into v.  LS_NOTFOUND if absent. */
int ls_get(ls_engine *e, uint32_t table, const ls_key *k, ls_value *v);

/* Find the row of key k without reading it: LS_OK (and *where, to pass to
** ls_get_at) or LS_NOTFOUND.  With a transaction, its own writes count and
** the version found is remembered for the commit check. */
int ls_locate(ls_engine *e, ls_txn *txn, uint32_t table, const ls_key *k, uint64_t *where);

/* Read the row that ls_locate found.  If it has moved since (overwritten
** and relocated, or its segment reused), the key is looked up again. */
int ls_get_at(ls_engine *e, ls_txn *txn, uint32_t table, const ls_key *k, uint64_t where, ls_value *v);

/* Read n keys at once; the disk reads are issued together.  rc[i] receives
** LS_OK or LS_NOTFOUND (or an error) for key i.  Returns LS_OK unless the
** whole call failed. */
int ls_get_many(ls_engine *e, ls_txn *txn, uint32_t table, int n,
                const ls_key *keys, ls_value *vals, int *rc);

/* ------------------------------------------------------------------------
** Transactions.  A transaction buffers puts and deletes in memory; reads
** through it see its own writes first.  ls_txn_commit() hands it to the
** writer, which makes it durable and visible atomically (also across a
** crash) before returning.
**
** Snapshot: a transaction's reads of committed rows (gets, batches,
** cursors) see the state committed when it began, whatever commits
** afterwards; a row it reads again reads the same.  Old versions are kept
** for it within bounds (ls_options.snapshot_memory, and a quarter of
** disk_size); beyond them the oldest transaction's reads fail with
** LS_EXPIRED.  Reads without a transaction see the newest rows.
**
** Write conflicts: the first read of a key through a transaction records
** the version it saw.  At commit the writer checks that each such key is
** still at that version; if another transaction changed it, the commit
** fails with LS_CONFLICT and nothing is written.  Blind writes (a put or
** delete of a key not read before) are never in conflict.
*/
int ls_txn_begin(ls_engine *e, ls_txn **out);
/* A transaction that only reads: its reads see its snapshot and are not
** remembered for a commit check; it takes no writes. */
int ls_txn_begin_read(ls_engine *e, ls_txn **out);
/* End a read transaction's snapshot but keep t, to be started again by
** ls_txn_restart_read (or freed): between the two it must not be read
** through.  A restart (also of a running one) gives it a snapshot of
** everything committed now -- the same as ls_txn_free and
** ls_txn_begin_read, without their allocation. */
void ls_txn_end_read(ls_txn *t);
void ls_txn_restart_read(ls_txn *t);
int ls_txn_put(ls_txn *t, uint32_t table, const ls_key *k, const void *val, uint32_t vlen);
int ls_txn_delete(ls_txn *t, uint32_t table, const ls_key *k);

/* Read key k as this transaction sees it.  LS_NOTFOUND if absent. */
int ls_txn_get(ls_txn *t, uint32_t table, const ls_key *k, ls_value *v);

/* 1 if key k exists as this transaction sees it, 0 if not, or an error;
** records the version seen like ls_txn_get() but reads no value. */
int ls_txn_exists(ls_txn *t, uint32_t table, const ls_key *k);

/* Savepoints: ls_txn_savepoint() returns a mark (>= 0); rolling back to it
** discards every write made after it. */
int ls_txn_savepoint(ls_txn *t);
int ls_txn_rollback_to(ls_txn *t, int mark);

/* Number of writes that a commit would write (0: read-only). */
uint64_t ls_txn_size(ls_txn *t);

/* 1 if the transaction writes (puts or deletes) a row of table. */
int ls_txn_writes(ls_txn *t, uint32_t table);

/* Discard every write and read of table made through t (the table is
** being dropped in the transaction).  Savepoints taken before stay usable. */
int ls_txn_forget_table(ls_txn *t, uint32_t table);

/* Make the transaction durable and visible.  On LS_OK every write is on
** disk and in the index.  On failure nothing of it is visible now.  After
** a restart it is absent too -- except when the failure was an I/O error of
** the write or the sync itself (LS_IOERR, and the engine then refuses
** writes): the bytes may have reached the disk anyway, so the outcome is
** unknown, as for SQLite after an I/O error during COMMIT; it is whole or
** absent, never partial.  The transaction can not be used afterwards
** except for free. */
int ls_txn_commit(ls_txn *t);

/* Commit in two phases, for a host that decides the outcome after the
** storage is durable (SQLite: xSync, then xCommit or xRollback).
**   ls_txn_prepare   validate and make the writes durable, not yet visible;
**                    until the transaction is published or unprepared, any
**                    other transaction that reads or writes one of its keys
**                    fails to commit with LS_CONFLICT.  Fails like commit
**                    (an I/O error: the outcome after a restart is unknown).
**   ls_txn_publish   make a prepared transaction visible.  No I/O; can not
**                    fail.  The transaction is then done.
**   ls_txn_unprepare undo a prepare: an ABORT record makes it never count,
**                    also after a crash.  The transaction is open again with
**                    its writes, to be changed and prepared again or freed.
** A crash after a successful prepare and before publish or unprepare
** leaves the transaction committed. */
int ls_txn_prepare(ls_txn *t);

/* Prepare for a host that records the outcome itself, atomically with its
** own data (SQLite: a row in the same database file's transaction), so
** that a crash between the two commits can not split them.  Like
** ls_txn_prepare, except that a crash after it and before publish or
** unprepare leaves the transaction in doubt: the next open asks
** ls_options.decide about `decision` (a nonzero id, unique for ever:
** random 64 bits) and commits or drops it whole.  Publish then costs one
** more durable write (the COMMIT record that settles the doubt); until it
** returns, ls_decision_pending says 1, after it the host's record may go. */
int ls_txn_prepare_decided(ls_txn *t, uint64_t decision);
int ls_decision_pending(ls_engine *e, uint64_t decision);

void ls_txn_publish(ls_txn *t);
int ls_txn_unprepare(ls_txn *t);
int ls_txn_prepared(ls_txn *t);          /* 1 if prepared */

/* Wait until no transaction is prepared and not yet published or
** unprepared (at most timeout_ms; LS_BUSY then).  A host that keeps every
** new prepare out (SQLite: its write lock) and calls this has a moment at
** which the engine's committed state is its own (logstor_backup). */
int ls_wait_unprepared(ls_engine *e, uint32_t timeout_ms);

/* Free a transaction; uncommitted writes are discarded. */
void ls_txn_free(ls_txn *t);

/* How durable t's commit (or prepare) is: LS_SYNC_* (LS_SYNC_DEFAULT: the
** engine's choice).  LS_INVALID for another value. */
int ls_txn_synchronous(ls_txn *t, int mode);

/* ------------------------------------------------------------------------
** Cursors: rows of one table in token order (ascending, or descending with
** ls_cursor_range), from a starting token.  Safe while writes continue: a row committed during the scan may
** or may not be returned, every other row is returned exactly once.  With
** a transaction, the transaction's own writes are merged in.
*/
int ls_cursor_open(ls_engine *e, ls_txn *txn, uint32_t table, ls_cursor **out);
/* Position at the first row with token >= lo (use INT64_MIN for all). */
int ls_cursor_seek(ls_cursor *c, int64_t lo);
/* Position at the first row with token in [lo, hi] (lo > hi: none); with
** desc the rows come in descending order, from the last one <= hi.  Later
** ls_cursor_next calls stay within the range.  On a key-ordered table the
** rows come in key order (rows sharing a token sorted by their key). */
int ls_cursor_range(ls_cursor *c, int64_t lo, int64_t hi, int desc);
int ls_cursor_valid(ls_cursor *c);                 /* 1 while positioned on a row */
int ls_cursor_next(ls_cursor *c);
/* The current row: valid until the next call on the cursor. */
const ls_value *ls_cursor_row(ls_cursor *c);
void ls_cursor_close(ls_cursor *c);
/* Stop merging a transaction's writes into c (the transaction is ending
** while the cursor stays open); it goes on with committed rows only. */
void ls_cursor_detach(ls_cursor *c);

/* ------------------------------------------------------------------------
** Statistics and maintenance.
*/
typedef struct ls_stats {
  uint64_t bytes_written;          /* all bytes written to data files
                                   ** (commits, cleaning, formatting) */
  uint64_t user_bytes_written;     /* record bytes of committed user writes */
  uint64_t records_live;           /* index entries (rows and tombstones) */
  uint64_t rows;                   /* live rows of every table */
  uint64_t bytes_live;             /* bytes of live records */
  uint64_t index_bytes;            /* memory of all indexes */
  uint64_t segments_total;         /* segments in data files */
  uint64_t segments_free;
  uint64_t segments_used;          /* sealed + active */
  uint64_t data_file_bytes;        /* bytes of data files on disk */
  uint64_t commits;                /* transactions committed */
  uint64_t commit_groups;          /* group writes (one sync each) */
  uint64_t writer_handoffs;        /* commits and calls left to the writer
                                   ** thread (busy); the others ran on the
                                   ** caller's own thread */
  uint64_t syncs;                  /* fdatasync calls */
  uint64_t conflicts;              /* commits refused with LS_CONFLICT */
  uint64_t reads;                  /* records read by gets and scans */
  uint64_t recovery_ms;            /* time of the last open's recovery */
  uint64_t recovery_records;       /* records scanned by recovery */
  uint64_t recovery_segments;      /* segments scanned by recovery */
  uint64_t recovery_checkpoint;    /* 1: the last open loaded a checkpoint
                                   ** instead of scanning (recovery_records 0) */
  uint64_t doubts_resolved;        /* transactions left in doubt by a crash
                                   ** that the last open asked the host about */
  uint64_t write_seq;              /* next write sequence */
  uint64_t segment_size;           /* sizes fixed when the directory was created */
  uint64_t file_size;
  uint64_t disk_size;              /* 0 = unlimited */
  const char *io_backend;          /* "io_uring" or "posix" (+ "+fault") */
  int failed;                      /* 1 after a write or sync failure */
  int synchronous;                 /* LS_SYNC_* of the engine (its default) */
  double space_target;             /* compaction starts above it (unbounded disk) */
  /* Cleaning. */
  uint64_t segments_compacted;     /* group segments taken by compaction */
  uint64_t compaction_bytes_written;
  uint64_t compaction_records_relocated;
  uint64_t compaction_records_dropped;   /* dead records left behind */
  uint64_t tombstones_dropped;     /* deletes nothing older survives */
  uint64_t separator_bytes_written;
  uint64_t separator_records_relocated;
  uint64_t separator_segments_adopted;   /* mixed segments of one group kept whole */
  uint64_t separator_buffers_in_use;
  uint64_t separator_delay_us;     /* flow-control delay given to writers */
  uint64_t separator_delay_now_us; /* the delay the last commit got */
  uint64_t segments_freed_by_separator;
  uint64_t segments_freed;
  uint64_t mixed_segments;         /* mixed segments waiting for the separator */
  uint64_t format_bytes_written;   /* zeros written to prepare data files */
  uint64_t meta_bytes_written;     /* free markers and settled headers */
  uint64_t damaged_ranges;         /* damaged ranges found (ls_check lists them) */
  uint64_t damaged_bytes;          /* their bytes */
  uint64_t snapshots_active;       /* transactions' snapshots now */
  uint64_t snapshot_versions;      /* old versions kept for them */
  uint64_t snapshot_bytes;         /* bytes of old records they keep */
  uint64_t snapshots_expired;      /* snapshots released by the bounds */
  uint64_t cache_size;             /* the record cache's bound (0: none) */
  uint64_t cache_bytes;            /* memory it holds */
  uint64_t cache_entries;          /* records it holds */
  uint64_t cache_hits;             /* reads served from it */
  uint64_t cache_misses;           /* reads that went to disk with it on */
  double write_amplification;      /* data bytes written / user bytes */
  double space_amplification;      /* bytes of segments in use / live bytes */
} ls_stats;

void ls_stats_get(ls_engine *e, ls_stats *s);

typedef struct ls_segment_info {
  uint32_t id;
  const char *kind;                /* "mixed" or "group" */
  const char *state;               /* "free", "active", "sealed" (also while
                                   ** the cleaner empties it) */
  uint32_t table;                  /* owning table for group segments, else 0 */
  uint32_t group;
  uint64_t live_bytes;
  uint64_t live_records;
  uint64_t seq;                    /* incarnation sequence, 0 when free */
} ls_segment_info;

/* Call fn for each segment in id order; stops early if fn returns non-zero. */
int ls_segment_foreach(ls_engine *e, int (*fn)(void *arg, const ls_segment_info *), void *arg);

/* ------------------------------------------------------------------------
** Space reclamation.  User writes land in mixed segments shared by all
** tables; a background cleaner separates their live records into the
** segments of each table's compaction groups, compacts group segments
** whose records have mostly died, and frees what no longer holds a live
** record.  These calls run it now, on the calling thread.
*/

/* Separate everything committed so far (the active segment is sealed) and
** write every relocation buffer, so that each record lives in a segment of
** its own group and the mixed segments are free.  table (0: any) must
** exist.  *freed receives the segments freed. */
int ls_flush(ls_engine *e, uint32_t table, uint64_t *freed);

/* ls_flush, then compact table's groups until no step frees a segment,
** dropping the tombstones that nothing older survives.  *freed receives
** the segments freed by the whole call. */
int ls_compact(ls_engine *e, uint32_t table, uint64_t *freed);

/* One bounded step of the cleaner (tests drive it with manual_cleaning). */
#define LS_CLEAN_RECLAIM  1   /* free segments left without live records */
#define LS_CLEAN_SEPARATE 2   /* separate one sealed mixed segment */
#define LS_CLEAN_FLUSH    3   /* write every relocation buffer */
#define LS_CLEAN_COMPACT  4   /* one compaction step on the best group */
#define LS_CLEAN_SETTLE   5   /* settle directly written group segments */
int ls_clean_step(ls_engine *e, int what, uint64_t *count);

/* Tests: call fn(arg, point) at named points of the cleaner ("flush:durable",
** "flush:relocated", "compact:selected", "free:before-wait").  fn runs on
** the cleaning thread with no engine lock held and may use the engine. */
void ls_set_hook(ls_engine *e, void (*fn)(void *arg, const char *point), void *arg);

/* Verify table id (or every table when id is 0): every segment on disk is
** read and walked (a scrub: damage anywhere is found, not only where the
** index points), each index entry leads to a readable record with the same
** key and a good checksum, and the segment accounting adds up.  *report
** receives "ok" or one line per problem, damaged ranges first (those that
** may hold rows of table), found now or at open (malloc'ed; free with
** free()).  ls_check_progress calls progress(arg, done, total) as the
** scrub reads segments. */
int ls_check(ls_engine *e, uint32_t table, char **report);
int ls_check_progress(ls_engine *e, uint32_t table, void (*progress)(void *arg, uint64_t done, uint64_t total),
                      void *arg, char **report);

/* Forget the current thread's last error (it holds no memory: calling this
** before a thread ends is not needed). */
void ls_thread_cleanup(void);

#ifdef __cplusplus
}
#endif
#endif /* LOGSTOR_H */
