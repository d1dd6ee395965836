/*
** io_uring.c -- the io_uring I/O backend (liburing).
**
** A small pool of rings, each guarded by a mutex, serves all threads: a call
** takes a free ring (trylock round-robin, else blocks on one), runs its
** requests to completion on it and releases it.  Nothing is left in flight
** on a ring between calls, so a completion can only belong to the call that
** holds the ring; the call's generation number is still kept in user_data
** and checked, to catch a stray completion instead of misapplying it.
**
** Which calls use the ring:
**   submit() goes through the ring.  write(), sync(), read() and the
**   file-system calls (open, close, rename, unlink, fsync, fallocate) are
**   delegated to an internal POSIX backend: a single read is usually a
**   page-cache hit, and pread(2) then costs one system call where a ring
**   round trip costs a submission, a wakeup and a completion.
**
** Rules (the contract of io.h, plus the ordering rules of H9):
**   1. At most `depth` requests are in flight on a ring, and the completion
**      queue holds 2 * depth entries, so it can never overflow; a batch
**      longer than that is fed through a sliding window of slots.
**   2. Completions are matched to requests by user_data (generation and
**      slot), never by order.
**   3. A short write is resubmitted for the rest; a short read is continued
**      until a read returns 0 (end of file).  A write completing with 0
**      bytes is -EIO, not a reason to spin.
**   4. -EINTR / -EAGAIN completions are resubmitted, and so is -ECANCELED:
**      this backend never cancels a request, so a cancel comes from the
**      kernel's io-wq failing to start a worker thread while a signal is
**      pending (seen on this machine under a signal storm), and the request
**      was not performed.  After URING_RETRY_MAX such results in a row
**      without progress the request fails with the last one.  -EINTR /
**      -EAGAIN / -EBUSY from io_uring_enter() are retried.
**   5. No sync goes through the ring: sync() is fdatasync(2), called by the
**      callers only after the writes it covers completed; submit() accepts
**      only READ and WRITE requests.
**   6. If io_uring_enter() fails in any other way, the ring is marked broken
**      and never entered again (it may hold prepared entries whose buffers
**      the caller will free); unfinished requests fail with that error and
**      later calls use the remaining rings.  If it was the wait that
**      failed, requests already in flight may still land in the caller's
**      buffers; no such failure is known while rule 1 holds.
**   7. Rings are shared memory mapped into this process: a child created by
**      fork() must create its own backend, never use the parent's.
*/
#include "io.h"
#include "ls_int.h"

#include <errno.h>
#include <liburing.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#define URING_RINGS 4              /* rings in the pool */
#define URING_DEPTH 64             /* submission queue entries per ring */
#define URING_MAX_XFER (1u << 30)  /* bytes asked of one request */
#define URING_EAGAIN_SPINS 100000  /* give up on a ring that never accepts */
#define URING_RETRY_MAX 10000      /* transient results in a row (rule 4) */

enum uring_slot_state {
  SLOT_FREE = 0,
  SLOT_QUEUED,                     /* prepared or in flight */
  SLOT_RESUBMIT                    /* partly done or transient error: resend */
};

typedef struct uring_slot {
  int req;                         /* index of the request in the call */
  int state;                       /* enum uring_slot_state */
  int retries;                     /* transient results since progress */
} uring_slot;

typedef struct uring_ring {
  pthread_mutex_t lock;            /* held by the call using the ring */
  struct io_uring ring;
  int ready;                       /* io_uring_queue_init succeeded */
  atomic_int broken;               /* rule 6: never entered again */
  uint32_t gen;                    /* generation of the current call */
  uring_slot slot[URING_DEPTH];
} uring_ring;

typedef struct uring_io {
  ls_io base;                      /* must be first */
  ls_io *posix;                    /* reads and file-system calls */
  atomic_uint next;                /* round-robin start for uring_grab */
  uring_ring rings[URING_RINGS];
} uring_io;

/* One call's progress through uring_run. */
typedef struct uring_call {
  ls_io_req *reqs;
  int n;
  int next;                        /* first request never given a slot */
  int finished;                    /* requests with a final res */
  int queued;                      /* slots prepared, not yet taken by the kernel */
  int inflight;                    /* slots taken by the kernel */
  int fatal;                       /* rule 6: -errno, or 0 */
} uring_call;

/* Take a ring that is not broken: first any free one, starting at a
** round-robin position, else wait for one.  Returns it locked, or NULL if
** every ring is broken. */
static uring_ring *uring_grab(uring_io *u) {
  unsigned start = atomic_fetch_add(&u->next, 1u);
  for (int i = 0; i < URING_RINGS; i++) {
    uring_ring *r = &u->rings[(start + (unsigned)i) % URING_RINGS];
    if (atomic_load(&r->broken)) continue;
    if (pthread_mutex_trylock(&r->lock) == 0) {
      if (!atomic_load(&r->broken)) return r;
      pthread_mutex_unlock(&r->lock);
    }
  }
  for (int i = 0; i < URING_RINGS; i++) {
    uring_ring *r = &u->rings[(start + (unsigned)i) % URING_RINGS];
    if (atomic_load(&r->broken)) continue;
    pthread_mutex_lock(&r->lock);
    if (!atomic_load(&r->broken)) return r;
    pthread_mutex_unlock(&r->lock);
  }
  return NULL;
}

static void uring_release(uring_ring *r) {
  pthread_mutex_unlock(&r->lock);
}

/* Give the request in slot s its final result and free the slot. */
static void uring_finish(uring_ring *r, uring_call *c, int s, ssize_t res) {
  c->reqs[r->slot[s].req].res = res;
  r->slot[s].state = SLOT_FREE;
  c->finished++;
}

/* Fill one SQE for the unfinished part of the request in slot s.  Progress
** so far is kept in req->res (bytes done) until the request finishes. */
static void uring_prep(uring_ring *r, uring_call *c, int s, struct io_uring_sqe *sqe) {
  ls_io_req *q = &c->reqs[r->slot[s].req];
  size_t done = (size_t)q->res;
  size_t want = q->len - done;
  if (want > URING_MAX_XFER) want = URING_MAX_XFER;
  if (q->op == LS_IOOP_READ)
    io_uring_prep_read(sqe, q->fd, (char *)q->buf + done, (unsigned)want, q->off + done);
  else
    io_uring_prep_write(sqe, q->fd, (const char *)q->buf + done, (unsigned)want, q->off + done);
  io_uring_sqe_set_data64(sqe, ((uint64_t)r->gen << 32) | (uint64_t)s);
  r->slot[s].state = SLOT_QUEUED;
  c->queued++;
}

/* Find the next request that needs a slot, finishing on the way the ones
** that need no I/O (empty transfers).  Returns its index or -1. */
static int uring_next_request(uring_call *c) {
  while (c->next < c->n) {
    ls_io_req *q = &c->reqs[c->next];
    if (q->len == 0) {
      q->res = 0;
      c->finished++;
      c->next++;
      continue;
    }
    return c->next++;
  }
  return -1;
}

/* Prepare SQEs for slots waiting to be resubmitted, then for new requests,
** while slots and submission-queue entries last. */
static void uring_fill(uring_ring *r, uring_call *c) {
  for (int s = 0; s < URING_DEPTH; s++) {
    if (r->slot[s].state != SLOT_RESUBMIT) continue;
    struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
    if (!sqe) return;
    uring_prep(r, c, s, sqe);
  }
  for (int s = 0; s < URING_DEPTH && c->next < c->n; s++) {
    if (r->slot[s].state != SLOT_FREE) continue;
    if (io_uring_sq_space_left(&r->ring) == 0) return;
    int q = uring_next_request(c);
    if (q < 0) return;
    r->slot[s].req = q;
    r->slot[s].retries = 0;
    uring_prep(r, c, s, io_uring_get_sqe(&r->ring));
  }
}

/* Apply one completion: finish the request, or mark it for resubmission
** (rules 3 and 4).  A completion that does not belong to this call is
** ignored; it cannot happen while rule 1 and the ring lock hold. */
static void uring_complete(uring_ring *r, uring_call *c, const struct io_uring_cqe *cqe) {
  uint64_t data = io_uring_cqe_get_data64(cqe);
  uint32_t s = (uint32_t)data;
  if ((uint32_t)(data >> 32) != r->gen || s >= URING_DEPTH || r->slot[s].state != SLOT_QUEUED)
    return;
  c->inflight--;
  ls_io_req *q = &c->reqs[r->slot[s].req];
  int res = cqe->res;
  if ((res == -EINTR || res == -EAGAIN || res == -ECANCELED) &&
      ++r->slot[s].retries < URING_RETRY_MAX) {
    r->slot[s].state = SLOT_RESUBMIT;
  } else if (res < 0) {
    uring_finish(r, c, (int)s, res);
  } else if (res == 0) {
    /* A read at end of file, or a write that made no progress. */
    uring_finish(r, c, (int)s, q->op == LS_IOOP_READ ? q->res : -EIO);
  } else {
    q->res += res;
    r->slot[s].retries = 0;
    if ((size_t)q->res >= q->len)
      uring_finish(r, c, (int)s, q->op == LS_IOOP_READ ? q->res : (ssize_t)q->len);
    else
      r->slot[s].state = SLOT_RESUBMIT;
  }
}

/* Rule 6: fail every request that will not complete on this ring any more.
** Called once nothing is in flight. */
static void uring_fail_rest(uring_ring *r, uring_call *c) {
  for (int s = 0; s < URING_DEPTH; s++)
    if (r->slot[s].state != SLOT_FREE) uring_finish(r, c, s, c->fatal);
  while (c->next < c->n) {
    c->reqs[c->next++].res = c->fatal;
    c->finished++;
  }
}

/* Hand prepared SQEs to the kernel.  Returns 0, or -errno if the ring can
** not be used any more (rule 6). */
static int uring_push(uring_ring *r, uring_call *c, int *spins) {
  int ret = io_uring_submit(&r->ring);
  if (ret >= 0) {
    c->queued -= ret;
    c->inflight += ret;
    *spins = 0;
    return 0;
  }
  if (ret == -EINTR) return 0;
  if ((ret == -EAGAIN || ret == -EBUSY) && (c->inflight > 0 || ++*spins < URING_EAGAIN_SPINS)) {
    if (c->inflight == 0) sched_yield();
    return 0;                        /* reap completions, then try again */
  }
  return ret;
}

/* Wait for at least one completion and apply all that are ready.  Returns 0
** or -errno if waiting failed for a reason other than a signal. */
static int uring_reap(uring_ring *r, uring_call *c) {
  struct io_uring_cqe *cqe;
  unsigned head, seen = 0;
  int ret = io_uring_wait_cqe(&r->ring, &cqe);
  if (ret == -EINTR || ret == -EAGAIN || ret == -ETIME) return 0;
  if (ret < 0) return ret;
  io_uring_for_each_cqe(&r->ring, head, cqe) {
    uring_complete(r, c, cqe);
    seen++;
  }
  io_uring_cq_advance(&r->ring, seen);
  return 0;
}

/* Run n requests (READ or WRITE) to completion on ring r,
** which the caller holds.  Sets every req->res.  Returns 0 or the first
** failed request's -errno, in array order. */
static int uring_run(uring_ring *r, ls_io_req *reqs, int n) {
  uring_call c = { .reqs = reqs, .n = n };
  int spins = 0;
  r->gen++;
  for (int i = 0; i < n; i++) reqs[i].res = 0;
  while (c.finished < n) {
    if (!c.fatal) {
      uring_fill(r, &c);
      if (c.queued > 0) {
        int rc = uring_push(r, &c, &spins);
        if (rc < 0) {
          c.fatal = rc;
          atomic_store(&r->broken, 1);
        }
      }
    }
    if (c.inflight == 0) {
      if (c.fatal) uring_fail_rest(r, &c);
      continue;
    }
    int rc = uring_reap(r, &c);
    if (rc < 0) {
      /* Requests still in flight may yet complete into the caller's
      ** buffers; nothing here can wait for them any more. */
      c.fatal = rc;
      c.inflight = 0;
      atomic_store(&r->broken, 1);
    }
  }
  for (int i = 0; i < n; i++)
    if (reqs[i].res < 0) return (int)reqs[i].res;
  return 0;
}

/* Run requests on some ring of the pool. */
static int uring_run_any(uring_io *u, ls_io_req *reqs, int n) {
  uring_ring *r = uring_grab(u);
  if (!r) {
    for (int i = 0; i < n; i++) reqs[i].res = -EIO;
    return n > 0 ? -EIO : 0;
  }
  int rc = uring_run(r, reqs, n);
  uring_release(r);
  return rc;
}

/* Plain pread(2), see the header comment: cheaper than a ring round trip
** for the page-cache hits most single reads are. */
static ssize_t uring_read(ls_io *io, int fd, void *buf, size_t len, uint64_t off) {
  uring_io *u = (uring_io *)io;
  return u->posix->m->read(u->posix, fd, buf, len, off);
}

/* A single buffered write or sync goes to the kernel directly: through a
** ring, the kernel hands buffered writes and fsyncs to an io-wq worker
** thread, which costs two context switches per request with nothing to
** overlap (measured: 1,300 single-row commits/s through the ring against
** 2,350/s with pwrite + fdatasync).  Batches keep using the ring. */
static int uring_write(ls_io *io, int fd, const void *buf, size_t len, uint64_t off) {
  ls_io *p = ((uring_io *)io)->posix;
  return p->m->write(p, fd, buf, len, off);
}
static int uring_sync(ls_io *io, int fd) {
  ls_io *p = ((uring_io *)io)->posix;
  return p->m->sync(p, fd);
}

/* 1 if q is a READ or WRITE whose byte range fits off_t. */
static int uring_req_ok(const ls_io_req *q) {
  return (q->op == LS_IOOP_READ || q->op == LS_IOOP_WRITE) && q->off <= (uint64_t)INT64_MAX
      && (uint64_t)q->len <= (uint64_t)INT64_MAX - q->off;
}

/* Run the batch.  Invalid requests (rule 5: only READ and WRITE) get
** -EINVAL and the runs of valid requests between them are run as usual. */
static int uring_submit(ls_io *io, ls_io_req *reqs, int n) {
  int start = 0;
  if (n < 0) return -EINVAL;
  for (int i = 0; i < n; i++) {
    if (uring_req_ok(&reqs[i])) continue;
    if (i > start) uring_run_any((uring_io *)io, reqs + start, i - start);
    reqs[i].res = -EINVAL;
    start = i + 1;
  }
  if (start == 0) return uring_run_any((uring_io *)io, reqs, n);
  if (n > start) uring_run_any((uring_io *)io, reqs + start, n - start);
  for (int i = 0; i < n; i++)
    if (reqs[i].res < 0) return (int)reqs[i].res;
  return 0;
}

static int uring_open(ls_io *io, int dirfd, const char *name, int flags, int mode) {
  ls_io *p = ((uring_io *)io)->posix;
  return p->m->open(p, dirfd, name, flags, mode);
}

static int uring_close(ls_io *io, int fd) {
  ls_io *p = ((uring_io *)io)->posix;
  return p->m->close(p, fd);
}

static int uring_rename(ls_io *io, int dirfd, const char *from, const char *to) {
  ls_io *p = ((uring_io *)io)->posix;
  return p->m->rename(p, dirfd, from, to);
}

static int uring_unlink(ls_io *io, int dirfd, const char *name) {
  ls_io *p = ((uring_io *)io)->posix;
  return p->m->unlink(p, dirfd, name);
}

static int uring_fsync(ls_io *io, int fd) {
  ls_io *p = ((uring_io *)io)->posix;
  return p->m->fsync(p, fd);
}

static int uring_fallocate(ls_io *io, int fd, int mode, uint64_t off, uint64_t len) {
  ls_io *p = ((uring_io *)io)->posix;
  return p->m->fallocate(p, fd, mode, off, len);
}

/* Tear down the rings that were set up.  Safe on a half-built backend. */
static void uring_destroy(ls_io *io) {
  uring_io *u = (uring_io *)io;
  if (!u) return;
  for (int i = 0; i < URING_RINGS; i++) {
    uring_ring *r = &u->rings[i];
    if (!r->ready) continue;
    io_uring_queue_exit(&r->ring);
    pthread_mutex_destroy(&r->lock);
  }
  ls_io_destroy(u->posix);
  free(u);
}

static const struct ls_io_methods uring_methods = {
  .name = "io_uring",
  .read = uring_read,
  .write = uring_write,
  .sync = uring_sync,
  .submit = uring_submit,
  .open = uring_open,
  .close = uring_close,
  .rename = uring_rename,
  .unlink = uring_unlink,
  .fsync = uring_fsync,
  .fallocate = uring_fallocate,
  .destroy = uring_destroy,
};

/* Set up the pool.  LS_IOERR if the kernel refuses io_uring (ENOSYS,
** EPERM under seccomp or io_uring_disabled, ENOMEM from memlock limits). */
int ls_io_uring_create(ls_io **out) {
  uring_io *u = calloc(1, sizeof *u);
  int rc;
  *out = NULL;
  if (!u) return ls_err(LS_NOMEM, "io_uring backend: out of memory");
  u->base.m = &uring_methods;
  atomic_init(&u->next, 0u);
  rc = ls_io_posix_create(&u->posix);
  if (rc != LS_OK) goto fail;
  for (int i = 0; i < URING_RINGS; i++) {
    uring_ring *r = &u->rings[i];
    int ret = io_uring_queue_init(URING_DEPTH, &r->ring, 0);
    if (ret < 0) {
      /* Any refusal (ENOSYS, EPERM, ENOMEM from the memlock limit) means
      ** io_uring is unavailable here, which AUTO answers with POSIX. */
      rc = ls_err(LS_IOERR, "io_uring unavailable: io_uring_queue_init(%d): %s",
                  URING_DEPTH, strerror(-ret));
      goto fail;
    }
    if (pthread_mutex_init(&r->lock, NULL) != 0) {
      io_uring_queue_exit(&r->ring);
      rc = ls_err(LS_NOMEM, "io_uring backend: pthread_mutex_init failed");
      goto fail;
    }
    atomic_init(&r->broken, 0);
    r->ready = 1;
  }
  *out = &u->base;
  return LS_OK;

fail:
  uring_destroy(&u->base);
  return rc;
}
