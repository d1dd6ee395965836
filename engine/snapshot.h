/*
** snapshot.h -- snapshots: every read of a transaction sees one committed
** state while commits go on.
**
** Layer: segment -> snapshot -> catalog (engine/README.md).  Calls:
** segment (retaining segments), index (keys).
**
** Stamps.  Each install of a committed transaction into the indexes (a
** commit, or the publish of a prepared one) gets the next stamp, in install
** order.  A snapshot is the stamp current at its start: it sees exactly the
** installs with a stamp at or below it.  (Write sequences can not serve: a
** prepared transaction's records have older sequences than commits
** installed before its publish.)
**
** Versions.  An index holds only the newest version of each key.  While a
** snapshot exists, every install first records the version it replaces --
** its location, or 0 for "no row" -- with the stamp from which it is
** superseded.  A reader whose snapshot is older than some of a key's
** records takes the oldest of those superseded after its stamp; with none,
** the index's version is its version.  The record an old version points at
** stays readable: its segment is retained (never freed) until the version
** is dropped.  Versions are dropped, oldest first, once every active
** snapshot is at or after their stamp.
**
** Rules:
**  (S1) An install records the version it replaces before it changes the
**       index entry, both under the table's write lock; a reader looks up
**       the index and the versions under the table's read lock.  So a
**       reader never sees a new entry without the record of the old one.
**  (S2) A snapshot does not start while an install runs (it waits for it):
**       the snapshots an install records for are fixed when it starts (those
**       other than its own transaction's), and can only end meanwhile.
**  (S4) A version is recorded only if an active snapshot may see it: not
**       when the key's newest recorded version was superseded after the
**       newest snapshot began (then the version being replaced was
**       installed after every snapshot).  So a key keeps at most one
**       version per snapshot, however often it is rewritten.
**  (S3) Nothing removes an index entry while versions are recorded: the
**       cleaner drops tombstones only when none are (snap_any).  A dropped
**       or truncated table is not snapshot-isolated.
**  (S5) Versions are dropped up to the oldest active snapshot's stamp, read
**       while holding the versions' lock: a bound read earlier (no snapshot
**       active) would drop the versions an install recorded meanwhile for a
**       snapshot begun after it.
**
** Bounds.  At most max_versions versions (about 80 bytes of memory each)
** and max_bytes bytes of retained records are kept.  An install that would
** go beyond either expires the oldest snapshots until it fits (their next
** read fails with LS_EXPIRED), and so does a cleaner that can not find a
** free segment while segments are retained (snap_expire_all).
*/
#ifndef LS_SNAPSHOT_H
#define LS_SNAPSHOT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "index.h"
#include "segment.h"

struct ls_snapshot {
  uint64_t stamp;                  /* installs up to this one are visible */
  struct ls_snapshot *older, *newer;   /* the active list (store lock) */
  _Atomic int expired;             /* dropped by the bounds: reads fail */
};
typedef struct ls_snapshot ls_snapshot;

typedef struct snap_ver snap_ver;
#define SNAP_VERSION_BYTES 80          /* memory of one version, hash included */

typedef struct snap_store {
  ls_segmgr *sm;
  /* Segments no longer retained: they may be empty now (the cleaner frees
  ** them).  Called with no store lock held. */
  void (*released)(void *arg, const uint32_t *segs, uint32_t n);
  void *released_arg;
  uint64_t max_versions, max_bytes;

  pthread_mutex_t lock;            /* stamps and the active list */
  pthread_cond_t cond;             /* an install ended */
  uint64_t stamp;                  /* installs so far */
  int installing;                  /* an install is running ... */
  _Atomic int recording;           /* ... and records versions ... */
  uint64_t newest_stamp;           /* ... for snapshots up to this stamp */
  ls_snapshot *oldest, *newest;
  _Atomic uint32_t nactive;

  pthread_rwlock_t vlock;          /* the versions */
  snap_ver **buckets;              /* hash by (table, key) */
  uint32_t nbuckets;
  snap_ver *first, *last;          /* every version, oldest stamp first */
  _Atomic uint64_t nversions;
  _Atomic uint64_t bytes;          /* bytes of records retained */
  _Atomic uint64_t expired;        /* snapshots expired by the bounds */
  /* Tests: called by every collect before it takes the versions' lock. */
  void (*test_collect_hook)(void *arg);
  void *test_collect_arg;
} snap_store;

void snap_init(snap_store *st, ls_segmgr *sm, uint64_t max_versions, uint64_t max_bytes);
void snap_destroy(snap_store *st);

/* Start a snapshot of everything installed so far in *s (the caller's
** memory, which stays in the active list until snap_end). */
void snap_begin(snap_store *st, ls_snapshot *s);
/* End it; versions no snapshot needs any more are dropped.  *s may then be
** reused or freed. */
void snap_end(snap_store *st, ls_snapshot *s);

/* An install starts: returns the stamp it gets, and *record says whether
** it must record the versions it replaces (snap_record): whether a
** snapshot other than own (the installing transaction's, NULL: none) is
** active.  Every call is followed by snap_install_end with that stamp. */
uint64_t snap_install_begin(snap_store *st, const ls_snapshot *own, int *record);
/* Record that key of table had version word (0: no row) until the install
** of stamp until.  Caller holds the table's write lock (S1).  Failing to
** allocate expires every snapshot (they could not be served correctly). */
void snap_record(snap_store *st, uint32_t table, const idx_key *key, uint64_t word, uint64_t until);
void snap_install_end(snap_store *st, uint64_t stamp);

/* The version of key in table that snapshot s sees, given *word, the
** index's: *word is replaced by a recorded older version when one
** applies.  Caller holds the table's read (or write) lock.  LS_OK or
** LS_EXPIRED. */
int snap_lookup(snap_store *st, const ls_snapshot *s, uint32_t table, const idx_key *key, uint64_t *word);

/* Are versions recorded (S3)? */
static inline int snap_any(snap_store *st) { return atomic_load(&st->nversions) != 0; }

/* Expire every snapshot and drop every version (the disk is full and
** retained segments are in the way).  Returns how many were expired. */
uint32_t snap_expire_all(snap_store *st);

#endif /* LS_SNAPSHOT_H */
