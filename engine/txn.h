/*
** txn.h -- a transaction as a container: its writes (encoded records in
** the order made), its savepoints and the committed versions it observed.
** Like LevelDB's WriteBatch it knows nothing of how it is written: the
** writer (writer.h) prepares, commits and publishes it, read.c reads
** through it.
**
** Layer: catalog -> txn -> read (engine/README.md).  Calls: catalog (a
** table's change count), index, format.
**
** States (t->state), changed only by the writer's entry points:
**
**     OPEN --ls_txn_commit--> DONE
**     OPEN --ls_txn_prepare--> PREPARED --ls_txn_publish--> DONE
**                                 |
**                                 +--ls_txn_unprepare--> OPEN
**
** Only an OPEN transaction takes writes or rolls back to a savepoint.
*/
#ifndef LS_TXN_H
#define LS_TXN_H

#include "catalog.h"

#define TXN_NONE UINT32_MAX              /* no record */

enum { TXN_OPEN = 0, TXN_PREPARED = 1, TXN_DONE = 2 };

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
  int order;                       /* the table's (KO_*): how idx is keyed */
} txn_map;

struct ls_txn {
  ls_engine *e;
  ls_snapshot *snap;               /* what its reads of committed rows see
                                   ** (&snap_mem; NULL: a read transaction
                                   ** between ls_txn_end_read and restart) */
  ls_snapshot snap_mem;
  int readonly;                    /* ls_txn_begin_read: no writes, and its
                                   ** reads are not recorded */
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
  int sync_mode;                   /* LS_SYNC_*; LS_SYNC_DEFAULT: the engine's */

  /* Where the writer put it (kept while it is prepared). */
  uint64_t first_seq, last_seq;    /* sequences its records got */
  uint32_t *direct;                /* group segments written for it */
  uint32_t ndirect, capdirect;
  uint64_t decision;               /* ls_txn_prepare_decided's id, else 0 */
  uint32_t prep_seg;               /* segment of its PREPARE record */
  struct ls_txn *next_prepared;    /* the writer's list of prepared txns */
};

static inline uint8_t *txn_rec_ptr(const ls_txn *t, const txn_rec *r) {
  return t->chunks[r->chunk] + r->off;
}

/* Free t and everything it holds (ls_txn_free, in writer.c, unprepares a
** prepared transaction first). */
void txn_destroy(ls_txn *t);

/* Look key up among t's own writes: LS_OK (a put: v filled unless NULL),
** LS_NOTFOUND (a delete), or 1 when t did not write the key. */
int txn_own(ls_txn *t, uint32_t table, const idx_key *key, ls_value *v);

/* Was the committed version of key observed through t?  1 (a row), 0 (no
** row), or -1 if it was not observed. */
int txn_seen(ls_txn *t, uint32_t table, const idx_key *key);

/* Call before reading table's committed rows for t (see txn_map.changes). */
int txn_before_read(ls_txn *t, uint32_t table);

/* Remember the committed version of key seen through t (first time only);
** txn_before_read was called before the read.  segseq: the incarnation of
** word's segment, read inside the guard section that found word. */
int txn_observe(ls_txn *t, uint32_t table, const idx_key *key, uint64_t word, uint64_t seq, uint64_t segseq,
                int present);

/* Set the sequence of an observation recorded without one (ls_locate),
** once the record was read at the same location. */
void txn_observe_seq(ls_txn *t, uint32_t table, const idx_key *key, uint64_t word, uint64_t seq);

/* The overlay index of t's writes to table (NULL if none); its words hold
** ordinal+1 in the low 32 bits (0: only observed). */
ls_index *txn_overlay(ls_txn *t, uint32_t table);

/* Fill v from write number ord of t (a put). */
int txn_value(ls_txn *t, uint32_t ord, ls_value *v);

/* Remember that the writer filled group segment s with records of t. */
int txn_add_direct(ls_txn *t, uint32_t s);

#endif /* LS_TXN_H */
