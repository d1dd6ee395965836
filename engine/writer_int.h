/*
** writer_int.h -- what writer.c and commit.c, the two files of the writer
** module, share; no other module includes it (they use writer.h).
**
** writer.c: the writer's role (its thread, or a caller while the writer is
** idle), the queue, the open buffer of the active segment,
** serialising a commit group and handing its segments to the cleaner.
** commit.c: validating transactions (write conflicts), installing them,
** two-phase commit, and the public entry points of a transaction's end.
*/
#ifndef LS_WRITER_INT_H
#define LS_WRITER_INT_H

#include <semaphore.h>

#include "cleaner.h"
#include "read.h"
#include "writer.h"

#define WRITE_COMMIT 0                   /* durable and installed */
#define WRITE_PREPARE 1                  /* durable, not installed */

/* A transaction handed to the writer: the caller waits on done. */
typedef struct commit_req {
  ls_txn *t;
  int mode;                        /* WRITE_COMMIT or WRITE_PREPARE */
  int rc;                          /* outcome, with err */
  ls_error err;
  sem_t done;
  struct commit_req *next;
} commit_req;

/* A call to run in the writer's role (writer_call). */
typedef struct writer_callreq {
  int (*fn)(ls_engine *e, void *arg);
  void *arg;
  int rc;
  ls_error err;
  sem_t done;
  struct writer_callreq *next;
} writer_callreq;

/* Keys written by the transactions already accepted in the current group:
** a later transaction of the same group that read one of them read the
** version before it, so it conflicts. */
typedef struct keyset {
  struct ks_slot { uint64_t hi, lo; uint32_t table; } *slots;
  uint32_t cap, n;
} keyset;

struct ls_writer {
  ls_engine *e;
  pthread_t thread;
  int started;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  commit_req *head, *tail;         /* queued commits */
  writer_callreq *calls;           /* queued calls */
  int stop;
  int busy;                        /* a thread holds the writer's role ... */
  pthread_t owner;                 /* ... this one (asserts) */

  /* The role's state (only its holder touches it): the active segment and
  ** its open buffer. */
  uint32_t seg;                    /* active segment, or SEG_NONE */
  uint8_t *buf;                    /* open buffer (segment-sized, aligned) */
  cache_batch written;             /* the group's records, for the cache */
  uint32_t buf_start;              /* offset of the open buffer in the segment */
  uint32_t buf_len;                /* header + records in buf */
  uint32_t buf_nrec;
  uint32_t buf_written;            /* buf_len as last written (0: never) */

  int io_error;                    /* a write or sync of this group failed */
  int nosync;                      /* this group is synchronous off (N3) */
  int structural;                  /* this group streamed a transaction (N2) */
  int deferred;                    /* writes of synchronous-normal groups
                                   ** not yet synced (N1) */
  uint64_t sync_due;               /* ls_now_ns() when they are synced */
  uint32_t last_seg, last_start;   /* the buffer written last (N1) */
  seg_syncset syncs;               /* files written in this group */
  seg_ids empties;                 /* segments that may have no live record */
  seg_ids sealed;                  /* mixed segments sealed in this group */
  seg_ids direct;                  /* group segments written in this group */
  uint32_t *tsegs;                 /* segments a streamed transaction used */
  uint32_t ntsegs, captsegs;
  uint8_t *dbuf;                   /* a directly written group segment */
  uint32_t *grp;                   /* compaction group of each record (W7) */
  uint32_t capgrp;
  ls_txn *prepared;                /* durable, not yet published or aborted */
  _Atomic uint32_t nprepared;      /* of those, and those being published or
                                   ** aborted: 0 once every install is done
                                   ** (ls_wait_unprepared reads it) */
  uint64_t *decisions;             /* ids of decided transactions in doubt
                                   ** (ls_decision_pending; under lock) */
  uint32_t ndecisions, capdecisions;
  uint64_t *settling;              /* of those, published: their COMMIT
                                   ** record written, not yet synced (W11;
                                   ** writer's role) */
  uint32_t nsettling, capsettling;
  keyset ks;
};

/* ---- writer.c ----------------------------------------------------------- */

/* The open buffer: at the start of a group of group_bytes (rule W3); make
** sure an active segment exists; its room left; seal it and start the
** next; append one record with the next sequence (returns its location);
** write its unwritten part. */
void writer_group_start(ls_writer *w, uint64_t group_bytes);
int writer_ensure_segment(ls_writer *w, int purpose);
uint32_t writer_room(const ls_writer *w);
int writer_switch_segment(ls_writer *w, int purpose);
uint64_t writer_append(ls_writer *w, const uint8_t *rec, uint32_t size, uint32_t flags, int tomb);
int writer_buf_write(ls_writer *w);
/* Sync every file written since the last sync (final: the end of a group
** or call). */
int writer_sync_files(ls_writer *w, int final);
/* The end of a group: sync as mode (LS_SYNC_*) asks (N1-N3). */
int writer_group_sync(ls_writer *w, int mode);
/* Everything written is durable: the settling decisions are no longer
** pending (commit.c, W11). */
void writer_decisions_durable(ls_writer *w);
/* Segment s may have no live record left: the cleaner checks it. */
void writer_note_empty(ls_writer *w, uint32_t s);
/* Give the cleaner what this group left it (W6). */
void writer_hand_off(ls_writer *w);

/* ---- commit.c ----------------------------------------------------------- */

/* Check every request of the group (write conflicts, dropped tables);
** the failing ones are finished; returns the accepted ones, in order. */
commit_req *writer_validate(ls_writer *w, commit_req *group);
/* Tests: non-zero makes the group's key set fail to size (out of memory),
** so validation falls back to the accepted transactions' overlays. */
extern int commit_test_keyset_nomem;
/* Tell a request's caller its outcome (err: with rc != LS_OK). */
void writer_finish(commit_req *q, int rc, const ls_error *err);
/* Run q (a commit, alone in its group) or c in the writer's role on the
** caller's thread if the writer is idle: 1; else 0 (queue it). */
int writer_inline(ls_writer *w, commit_req *q, writer_callreq *c);
/* Install a durable t in the indexes (W1). */
void writer_install(ls_writer *w, ls_txn *t);
/* Hold (+1) or release (-1) the segments of a prepared t's records. */
void writer_hold_segments(ls_writer *w, ls_txn *t, int delta);

#endif
