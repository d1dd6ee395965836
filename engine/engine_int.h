/*
** engine_int.h -- the engine object and the internal interfaces between its
** modules (engine.c, txn.c, writer.c, recovery.c).
**
** Lock order (outer first): registry lock -> catalog lock -> writer queue
** lock -> a table's index lock -> segment manager lock.  The guard is not a
** lock (readers never block).
*/
#ifndef LS_ENGINE_INT_H
#define LS_ENGINE_INT_H

#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <sys/types.h>

#include "ls_int.h"
#include "format.h"
#include "guard.h"
#include "index.h"
#include "io.h"
#include "loc.h"
#include "manifest.h"
#include "segment.h"

typedef struct ls_writer ls_writer;

/* A table: its catalog entry and its index. */
typedef struct ls_table {
  uint32_t id;
  uint32_t groups;
  uint64_t trunc_seq;              /* records below this sequence are gone */
  char name[LS_NAME_MAX + 1];
  pthread_rwlock_t lock;           /* guards idx (shared: readers) */
  ls_index *idx;
  _Atomic int64_t rows;            /* entries that are not tombstones */
  _Atomic uint64_t changes;        /* installs and truncations so far: a
                                   ** transaction whose reads of the table
                                   ** all came after the last change needs
                                   ** no validation of them */
  _Atomic int64_t live_bytes;      /* bytes of records the index points at */
} ls_table;

/* The catalog as readers see it: published as one pointer, replaced
** (never changed in place) under the catalog lock; old copies are freed
** after ls_guard_wait. */
typedef struct ls_catalog {
  uint32_t cap;                    /* entries in t[] (ids 0 .. cap-1) */
  ls_table *t[];                   /* NULL where no table */
} ls_catalog;

struct ls_engine {
  char *path;                      /* data directory, as opened */
  dev_t dev;                       /* identity in the process registry */
  ino_t ino;
  int refs;                        /* opens sharing this engine (registry lock) */
  pid_t pid;                       /* process that opened it (a forked child
                                   ** must not share it: no threads, no lock) */
  ls_engine *next_open;            /* registry list */
  int dirfd;
  int lockfd;                      /* holds the flock on LOCK */
  ls_io *io;

  uint32_t seg_size;
  uint64_t file_size;
  uint64_t disk_size;

  ls_segmgr sm;
  ls_guard guard;

  pthread_mutex_t cat_lock;        /* catalog changes and the manifest */
  ls_manifest man;                 /* as on disk (cat_lock) */
  _Atomic(ls_catalog *) catalog;

  ls_writer *writer;

  /* Background maintenance (formatting data files ahead of need). */
  pthread_t bg_thread;
  int bg_started;
  pthread_mutex_t bg_lock;
  pthread_cond_t bg_cond;
  int bg_stop;
  int bg_kick;

  /* Failure state: after a failed write or sync every write is refused. */
  _Atomic int failed;
  char fail_msg[256];

  /* Counters. */
  _Atomic uint64_t next_seq;       /* next write sequence (writer assigns) */
  _Atomic uint64_t bytes_written;
  _Atomic uint64_t user_bytes_written;
  _Atomic uint64_t commits;
  _Atomic uint64_t commit_groups;
  _Atomic uint64_t syncs;
  _Atomic uint64_t conflicts;
  _Atomic uint64_t reads;
  uint64_t recovery_ms;
  uint64_t recovery_records;
  uint64_t recovery_segments;
  char *problems;                  /* found at recovery, reported by ls_check */
};

/* ---- engine.c ---------------------------------------------------------- */

/* Table with id, or NULL.  The caller is inside the guard. */
ls_table *eng_table(ls_engine *e, uint32_t id);

/* Read and verify the record at word for table/key into v.  With k, the
** record's key must equal k (else LS_CORRUPT).  The caller is inside the
** guard.  LS_OK, LS_CORRUPT, LS_IOERR. */
int eng_read_record(ls_engine *e, uint64_t word, uint32_t table, const ls_key *k, ls_value *v);

/* Committed lookup of k in table: *word (0 if absent).  Guard held. */
int eng_lookup(ls_engine *e, uint32_t table, const idx_key *key, uint64_t *word);

/* Install k -> word in table t after a durable write, fixing accounting.
** Caller holds t->lock exclusively.  Returns INSTALL_NEW, INSTALL_REPLACED
** (*old = the replaced word, now dead) or INSTALL_DEAD: a tombstone for an
** absent key is not inserted -- with no entry no older version of the key
** exists, so the delete is a no-op and its record is dead at once. */
#define INSTALL_NEW      0
#define INSTALL_REPLACED 1
#define INSTALL_DEAD     2
int eng_install(ls_engine *e, ls_table *t, const idx_key *key, uint64_t word, uint64_t *old);

/* Put the engine into the failed (read-only) state with a message. */
void eng_fail(ls_engine *e, const char *what);

/* Ask the background thread to check whether a data file should be
** formatted ahead of need. */
void eng_kick_bg(ls_engine *e);

/* ---- txn.c ------------------------------------------------------------- */

#define TXN_NONE UINT32_MAX

/* One write of a transaction, in the order made. */
typedef struct txn_rec {
  uint64_t hi, lo;                 /* index key */
  uint64_t word;                   /* location once written (writer) */
  uint32_t table;
  uint32_t chunk;                  /* encoded record: chunk and offset */
  uint32_t off;
  uint32_t size;                   /* encoded size */
  uint32_t prev;                   /* previous write of the key here, or TXN_NONE */
  uint8_t type;                    /* LS_REC_PUT / LS_REC_DELETE */
  uint8_t dead;                    /* superseded by a later write of the key */
} txn_rec;

/* The committed version of a key as first seen through the transaction. */
typedef struct txn_obs {
  uint64_t hi, lo;
  uint64_t word;                   /* location seen (0 if absent) */
  uint64_t seq;                    /* its write sequence */
  uint32_t table;
  uint8_t present;                 /* a row (not absent, not a tombstone) */
} txn_obs;

typedef struct txn_map {
  uint32_t table;
  ls_index *idx;                   /* key -> (record ordinal+1) | (obs+1) << 32 */
  uint64_t changes;                /* the table's changes at the first read */
  int observed;                    /* a read of the table was recorded */
} txn_map;

struct ls_txn {
  ls_engine *e;
  txn_rec *recs;
  uint32_t nrec, caprec;
  uint8_t **chunks;                /* encoded records */
  uint32_t *chunk_len;             /* bytes used per chunk */
  uint32_t *chunk_cap;
  uint32_t nchunks;
  txn_obs *obs;
  uint32_t nobs, capobs;
  txn_map *maps;
  uint32_t nmaps;
  uint64_t live_bytes;             /* encoded bytes of records not dead */
  uint32_t live_recs;
  int state;                       /* TXN_OPEN, TXN_PREPARED, TXN_DONE */
  int mode;                        /* for the writer: WRITE_COMMIT or WRITE_PREPARE */
  uint64_t first_seq, last_seq;    /* sequences its records got (writer) */
  struct ls_txn *next_prepared;    /* writer's list of prepared txns */

  /* Hand-off to the writer. */
  struct ls_txn *next;
  int rc;
  char msg[256];                   /* message for rc, set by the writer */
  sem_t done;
};

static inline uint8_t *txn_rec_ptr(const ls_txn *t, const txn_rec *r) {
  return t->chunks[r->chunk] + r->off;
}

/* Look key up among t's own writes: LS_OK (a put: v filled), LS_NOTFOUND
** (a delete), or 1 when t did not write the key. */
int txn_own(ls_txn *t, uint32_t table, const idx_key *key, ls_value *v);

/* 1 if t wrote key (a put: *is_put), else 0. */
int txn_wrote(ls_txn *t, uint32_t table, const idx_key *key, int *is_put);

/* Set the sequence of an observation recorded without one (ls_locate),
** once the record was read at the same location. */
void txn_observe_seq(ls_txn *t, uint32_t table, const idx_key *key, uint64_t word, uint64_t seq);

/* Call before reading table's committed rows for t (see txn_map.changes). */
int txn_before_read(ls_txn *t, uint32_t table);

/* Remember the committed version of key seen through t (first time only);
** txn_before_read was called before the read. */
int txn_observe(ls_txn *t, uint32_t table, const idx_key *key, uint64_t word, uint64_t seq, int present);

/* The overlay index of t's writes to table (NULL if none); its words hold
** ordinal+1 in the low 32 bits (0: only observed). */
ls_index *txn_overlay(ls_txn *t, uint32_t table);

/* Fill v from write number ord of t (a put). */
int txn_value(ls_txn *t, uint32_t ord, ls_value *v);

/* ---- writer.c ---------------------------------------------------------- */

#define TXN_OPEN 0
#define TXN_PREPARED 1
#define TXN_DONE 2
#define WRITE_COMMIT 0                   /* durable and installed */
#define WRITE_PREPARE 1                  /* durable, not installed */

int writer_start(ls_engine *e);
void writer_stop(ls_engine *e);
/* Write t (blocks until durable -- and installed for WRITE_COMMIT -- or
** failed). */
int writer_commit(ls_engine *e, ls_txn *t, int mode);
/* Install a prepared t.  Can not fail. */
void writer_publish(ls_engine *e, ls_txn *t);
/* Write t's ABORT record durably; t is no longer prepared. */
int writer_unprepare(ls_engine *e, ls_txn *t);

/* Run fn(e, arg) on the writer thread between commit groups, so that it
** is ordered with every commit (catalog changes: drop, truncate).  Blocks;
** returns fn's result. */
int writer_call(ls_engine *e, int (*fn)(ls_engine *e, void *arg), void *arg);

/* On the writer thread (inside writer_call): note that word's record is
** dead, so that its segment is freed if it is sealed and now empty; then
** writer_free_empty() frees the noted segments once readers drained. */
void writer_note_dead(ls_engine *e, uint64_t word);
void writer_free_empty(ls_engine *e);

/* ---- recovery.c -------------------------------------------------------- */

/* Rebuild the indexes and segment states from the data files. */
int recover(ls_engine *e);

#endif
