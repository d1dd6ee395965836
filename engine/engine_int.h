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
typedef struct ls_cleaner ls_cleaner;

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
  uint32_t *gsets;                 /* [groups] group set handles (segment.h) */
} ls_table;

/* Compaction group of a key in a table of n groups: the token range split
** into n equal parts, in token order. */
static inline uint32_t eng_group_of(uint64_t hi, uint32_t n) {
  return (uint32_t)(((unsigned __int128)hi * n) >> 64);
}

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
  ls_cleaner *cleaner;
  int policy;                      /* LS_POLICY_* */
  int manual_cleaning;             /* no background cleaning (tests) */
  uint64_t separator_memory;       /* bytes of relocation buffers */
  void (*hook)(void *arg, const char *point);   /* test sync points */
  void *hook_arg;

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
  _Atomic uint64_t segments_compacted;      /* group segments compaction took */
  _Atomic uint64_t compaction_bytes;        /* bytes the cleaner wrote for them */
  _Atomic uint64_t compaction_relocated;    /* live records copied by compaction */
  _Atomic uint64_t compaction_dropped;      /* dead records left behind */
  _Atomic uint64_t tombstones_dropped;
  _Atomic uint64_t separator_bytes;         /* bytes written for mixed records */
  _Atomic uint64_t separator_relocated;
  _Atomic uint64_t separator_adopted;       /* mixed segments kept whole */
  _Atomic uint64_t separator_freed;         /* mixed segments freed after separation */
  _Atomic uint64_t segments_freed;
  _Atomic uint64_t cleaner_segments;        /* segments the cleaner wrote */
  _Atomic uint64_t marker_bytes;            /* free markers and settled headers */
  _Atomic uint64_t delay_us;                /* flow-control delay given to writers */
  _Atomic uint64_t delay_now_us;            /* the delay a writer gets now */
  uint64_t recovery_ms;
  uint64_t recovery_records;
  uint64_t recovery_segments;
  char *problems;                  /* damage found, reported by ls_check */
  pthread_mutex_t problems_lock;
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

/* Note damage found while running (ls_check reports it). */
void eng_problem(ls_engine *e, const char *fmt, ...) LS_PRINTF(2, 3);

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
  uint64_t segseq;                 /* incarnation of word's segment then (a
                                   ** slot reused since may hold a newer
                                   ** record at the same location) */
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
  uint32_t *direct;                /* group segments written for it (writer) */
  uint32_t ndirect, capdirect;
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
** txn_before_read was called before the read.  segseq: the incarnation of
** word's segment, read inside the guard section that found word. */
int txn_observe(ls_txn *t, uint32_t table, const idx_key *key, uint64_t word, uint64_t seq, uint64_t segseq,
                int present);

/* The incarnation of word's segment (0 for no word).  Inside the guard. */
static inline uint64_t eng_segseq(ls_engine *e, uint64_t word) {
  return word ? atomic_load(&seg_get(&e->sm, loc_seg(word))->seq) : 0;
}

/* The overlay index of t's writes to table (NULL if none); its words hold
** ordinal+1 in the low 32 bits (0: only observed). */
ls_index *txn_overlay(ls_txn *t, uint32_t table);

/* Fill v from write number ord of t (a put). */
int txn_value(ls_txn *t, uint32_t ord, ls_value *v);

/* Remember that the writer filled group segment s with records of t. */
int txn_add_direct(ls_txn *t, uint32_t s);

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

/* Seal the active segment and hand it to the separator. */
int writer_seal(ls_engine *e);

/* On the writer thread (inside writer_call): note that word's record is
** dead, so that its segment is freed if it is sealed and now empty; then
** writer_free_empty() frees the noted segments once readers drained. */
void writer_note_dead(ls_engine *e, uint64_t word);
void writer_free_empty(ls_engine *e);

/* ---- cleaner.c --------------------------------------------------------- */

/* Start cleaning (a thread unless manual_cleaning); mixed, settle and
** empties are what recovery left for it. */
int cleaner_start(ls_engine *e, seg_ids *mixed, seg_ids *settle, seg_ids *empties);
/* Write what the relocation buffers hold (unless failed) and stop. */
void cleaner_stop(ls_engine *e);
void cleaner_kick(ls_engine *e);

/* Hand-offs from the writer (after the group that wrote them installed):
** sealed mixed segments for the separator, segments that may have no live
** record left, and segments written directly for one group whose buffer
** can be settled (their CONT records are committed). */
void cleaner_mixed_ready(ls_engine *e, const uint32_t *segs, uint32_t n);
void cleaner_note_empty(ls_engine *e, const uint32_t *segs, uint32_t n);
void cleaner_settle(ls_engine *e, const uint32_t *segs, uint32_t n);

/* seg_alloc for a writer that found no segment: run the cleaner now, on
** the calling thread, until an allocation for purpose can succeed or
** nothing more can be reclaimed, and allocate under the cleaner's lock.
** LS_OK, LS_FULL or an error.  The caller holds no engine lock. */
int cleaner_alloc(ls_engine *e, int kind, uint32_t table, uint32_t group, int purpose, uint32_t *id);
/* Free the noted empty segments now (drop, truncate). */
void cleaner_reclaim_now(ls_engine *e);
/* Microseconds a committing writer should wait (flow control). */
uint64_t cleaner_delay_us(ls_engine *e);
/* Relocation buffers holding records. */
uint32_t cleaner_buffers_in_use(ls_engine *e);
/* Loops over many index lookups fetch the lookup PF_FAR keys ahead to
** stage 0 and PF_NEAR keys ahead to stage 1 of idx_prefetch. */
#define PF_FAR 8
#define PF_NEAR 4

/* The score a compaction candidate gets under policy (higher is taken
** first; cleaner.c).  Exposed for tests. */
double cleaner_score(int policy, double u, double u0, uint64_t now, uint64_t born, uint64_t youngest);
/* Keep the cleaner still (ls_check compares indexes and accounting). */
void cleaner_lock(ls_engine *e);
void cleaner_unlock(ls_engine *e);
/* Call the test hook at a named point. */
static inline void eng_hook(ls_engine *e, const char *point) {
  if (e->hook) e->hook(e->hook_arg, point);
}

/* ---- recovery.c -------------------------------------------------------- */

/* Rebuild the indexes and segment states from the data files.  The mixed
** segments that hold live records, oldest first, the group segments whose
** buffer can be settled, and the empty segments that need a free marker
** before they are freed are left in *mixed, *settle and *empties for the
** cleaner. */
int recover(ls_engine *e, seg_ids *mixed, seg_ids *settle, seg_ids *empties);

#endif
