/*
** catalog.h -- the engine object and its catalog: the tables and their
** indexes, publishing the catalog to readers, installing a durable record
** with its accounting, and the failure state.
**
** Layer: segment -> catalog -> recovery (engine/README.md has the order).
** Calls: manifest, snapshot, segment, index, guard.  Never calls txn, read, the
** cleaner or the writer: they call it.
**
** struct ls_engine holds what every module shares (the segment manager,
** the guard, the catalog, the counters); the parts that belong to one
** upper module are opaque pointers to its own state (ls_writer,
** ls_cleaner, eng_host of engine.c).
**
** Lock order (outer first): registry lock -> catalog lock -> writer queue
** lock -> a table's index lock -> segment manager lock.  The guard is not
** a lock (readers never block).
*/
#ifndef LS_CATALOG_H
#define LS_CATALOG_H

#include <pthread.h>
#include <stdatomic.h>

#include "ls_int.h"
#include "format.h"
#include "cache.h"
#include "guard.h"
#include "index.h"
#include "keyorder.h"
#include "io.h"
#include "loc.h"
#include "manifest.h"
#include "segment.h"
#include "snapshot.h"

typedef struct ls_writer ls_writer;      /* writer.c */
typedef struct ls_cleaner ls_cleaner;    /* cleaner.c */
typedef struct eng_host eng_host;        /* engine.c: registry, lock file, threads */

/* Memory kept aside for an install that runs out (cat_install). */
#define LS_INSTALL_RESERVE (1u << 20)

/* A table: its catalog entry and its index. */
typedef struct ls_table {
  uint32_t id;
  uint32_t groups;
  uint64_t trunc_seq;              /* records below this sequence are gone */
  int order;                       /* KO_TOKEN or KO_KEY: how idx is keyed (keyorder.h) */
  char name[LS_NAME_MAX + 1];
  pthread_rwlock_t lock;           /* guards idx (shared: readers) */
  ls_index *idx;
  _Atomic int64_t rows;            /* entries that are not tombstones */
  _Atomic uint64_t changes;        /* installs and truncations so far: a
                                   ** transaction whose reads of the table
                                   ** all came after the last change needs
                                   ** no validation of them */
  _Atomic int64_t live_bytes;      /* bytes of records the index points at */
  _Atomic uint64_t last_install;   /* stamp of the last install into it
                                   ** (snapshot.h; truncation: the maximum) */
  uint32_t *gsets;                 /* [groups] group set handles (segment.h) */
} ls_table;

/* A damaged range of a data file (FORMAT.md, "Damage"): found by recovery,
** by the scrub of ls_check, or by the cleaner.  Rows whose newest version
** was in it are lost or read as an older version; which rows can not be
** known. */
typedef struct ls_damage {
  uint32_t file;                   /* data file number */
  uint64_t offset, length;         /* bytes of that file */
  uint32_t segment;                /* SEG_NONE: a whole-file problem */
  uint64_t seg_seq;                /* incarnation read there (0: none) */
  uint8_t kind;                    /* LS_KIND_MIXED, LS_KIND_GROUP, 0 unknown */
  uint8_t accepted;                /* accepted earlier (on_damage=salvage) */
  uint8_t runtime;                 /* found after the open */
  uint32_t table, group;           /* owner of a group segment */
  const char *why;                 /* what failed (a static string) */
} ls_damage;

/* The catalog as readers see it: published as one pointer, replaced
** (never changed in place) under the catalog lock; old copies are freed
** after ls_guard_wait. */
typedef struct ls_catalog {
  uint32_t cap;                    /* entries in t[] (ids 0 .. cap-1) */
  ls_table *t[];                   /* NULL where no table */
} ls_catalog;

struct ls_engine {
  char *path;                      /* data directory, as opened */
  int dirfd;
  ls_io *io;
  eng_host *host;                  /* engine.c's part */

  uint32_t seg_size;
  uint64_t file_size;
  uint64_t disk_size;

  ls_segmgr sm;
  ls_guard guard;
  snap_store snaps;                /* snapshots and old versions */
  ls_cache *cache;                 /* recently read records (NULL: none) */
  uint64_t cache_size;             /* its bound */

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

  void *reserve;                   /* memory given back when an install of a
                                   ** durable transaction runs out (catalog.c) */
  /* Failure state: after a failed write or sync every write is refused. */
  _Atomic int failed;
  char fail_msg[256];

  /* Counters. */
  _Atomic uint64_t next_seq;       /* next write sequence (writer assigns) */
  _Atomic uint64_t bytes_written;
  _Atomic uint64_t user_bytes_written;
  _Atomic uint64_t commits;
  _Atomic uint64_t commit_groups;
  _Atomic uint64_t writer_handoffs;
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
  int recovery_checkpoint;         /* the last open loaded a checkpoint */
  uint64_t doubts_resolved;        /* transactions in doubt decided at open */
  char *problems;                  /* other problems found, reported by ls_check */
  pthread_mutex_t problems_lock;   /* problems and the damage list */
  ls_damage *damage;               /* damaged ranges (problems_lock) */
  uint32_t ndamage, capdamage;
  uint32_t *damage_hash;           /* open addressing: 1 + index, 0 empty */
  uint32_t capdamage_hash;
  int on_damage;                   /* LS_ON_DAMAGE_* the engine was opened with */
  _Atomic uint32_t space_target;   /* per mille (1300: 1.3), cleaner.c */
  _Atomic int sync_mode;           /* LS_SYNC_FULL / _NORMAL / _OFF */
  _Atomic uint64_t sync_interval_ns;   /* synchronous normal: sync within this */
  int readonly;                    /* opened read-only (ls_options.readonly):
                                   ** recovery writes nothing, the engine is
                                   ** in the failed state from the start */
  int (*decide)(void *, uint64_t); /* ls_options.decide */
  void *decide_arg;
  uint64_t *kept;                  /* decisions recovery committed on (W11) */
  uint32_t nkept, capkept;
};

/* Compaction group of a key in a table of n groups: the token range split
** into n equal parts, in token order. */
static inline uint32_t cat_group_of(uint64_t hi, uint32_t n) {
  return (uint32_t)(((unsigned __int128)hi * n) >> 64);
}

/* Build the catalog from e->man (at open) / free it and every table. */
int cat_load(ls_engine *e);
void cat_free(ls_engine *e);

/* Table with id, or NULL.  The caller is inside the guard. */
ls_table *cat_table(ls_engine *e, uint32_t id);

/* Committed lookup of key in table: *word (0 if absent), the version
** snapshot snap sees (NULL: the newest).  Guard held.  LS_OK, LS_NOTABLE
** or LS_EXPIRED. */
/* The order of table (KO_TOKEN when there is no such table), and the index
** key of k in it (idx_key_of).  Enter the guard for the lookup. */
int cat_order(ls_engine *e, uint32_t table);
void cat_key(ls_engine *e, uint32_t table, const ls_key *k, idx_key *out);
int cat_lookup(ls_engine *e, uint32_t table, const idx_key *key, const ls_snapshot *snap, uint64_t *word);

/* Bytes of live records of all tables. */
uint64_t cat_live_bytes(ls_engine *e);

/* Install key -> word in table t after a durable write, fixing the
** accounting.  Caller holds t->lock exclusively.  Returns INSTALL_NEW,
** INSTALL_REPLACED (*old = the replaced word, now dead) or INSTALL_DEAD: a
** tombstone for an absent key is not inserted -- with no entry no older
** version of the key exists, so the delete is a no-op and its record is
** dead at once.  If the index runs out of memory the reserve is given back
** and the engine fails (refuses writes): the acknowledged row stays
** visible. */
#define INSTALL_NEW      0
#define INSTALL_REPLACED 1
#define INSTALL_DEAD     2
int cat_install(ls_engine *e, ls_table *t, const idx_key *key, uint64_t word, uint64_t *old);

/* idx_foreach callback, arg = (void *[2]){ engine, table }: count the entry
** in its segment's and its table's accounting (after recovery or a
** checkpoint filled the index). */
int cat_account_entry(void *arg, const idx_entry *en, uint64_t seq);

/* Remove table id from the manifest and the catalog, then every entry of
** its index from the accounting, calling dead(arg, word) for each, and
** free it.  Runs in the writer's role (ordered with every commit). */
int cat_drop(ls_engine *e, uint32_t id, void (*dead)(void *arg, uint64_t word), void *arg);

/* Truncate table id at write sequence cut (every record of it is below
** cut): the manifest first, then the index, calling dead(arg, word) for
** each entry.  Runs in the writer's role. */
int cat_truncate(ls_engine *e, uint32_t id, uint64_t cut, void (*dead)(void *arg, uint64_t word), void *arg);

/* The segment manager's lease callback (segment.h): make end the durable
** floor of segment sequences in the manifest. */
int cat_lease(void *arg, uint64_t end);

/* The segment manager's growth callback (segment.h): the manifest counts
** nsegs segments (its files and the length of the last). */
int cat_grown(void *arg, uint32_t nsegs);
/* Replace the manifest's count of segments (files and the length of the
** last) and its accepted damage (recovery).  LS_OK or an error. */
int cat_set_files(ls_engine *e, uint32_t nsegs, const ls_mdamage *dm, uint32_t n);

/* Put the engine into the failed (read-only) state with a message (the
** first failure's message is kept). */
void cat_fail(ls_engine *e, const char *what);
/* LS_READONLY with the failure's message if the engine failed, else LS_OK. */
int cat_check_failed(ls_engine *e);

/* Note a problem found while running (ls_check reports it). */
void cat_problem(ls_engine *e, const char *fmt, ...) LS_PRINTF(2, 3);

/* Add a damaged range to the list unless an equal one is there (1 if
** added).  Out of memory loses the entry, never the open. */
int cat_damage_add(ls_engine *e, const ls_damage *d);
/* Drop the ranges found in segments, keeping whole-file ones (recovery's
** second pass finds them again). */
void cat_damage_forget_segments(ls_engine *e);
/* One line describing d ("data-000001.ls offset ... Rows in this range are
** lost or may read as an older version."), into buf. */
void cat_damage_line(ls_engine *e, const ls_damage *d, char *buf, size_t cap);
/* The damaged ranges that may hold rows of table (0: all): how many and
** their bytes. */
void cat_damage_count(ls_engine *e, uint32_t table, uint64_t *ranges, uint64_t *bytes);
/* May d hold rows of table (0: any)? */
static inline int cat_damage_of(const ls_damage *d, uint32_t table) {
  return !table || d->kind != LS_KIND_GROUP || d->table == table;
}

/* Call the test hook at a named point (ls_set_hook). */
static inline void cat_hook(ls_engine *e, const char *point) {
  if (e->hook) e->hook(e->hook_arg, point);
}

#endif /* LS_CATALOG_H */
