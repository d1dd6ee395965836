/*
** io.h -- the I/O backend: a small table of functions chosen at open.
**
** Every byte the engine reads or writes, and every file it creates, renames
** or syncs, goes through an ls_io.  Four implementations exist:
**
**   io_uring.c  liburing; batches of requests go to the kernel in one call.
**   io_posix.c  pread / pwrite / fdatasync; used automatically when io_uring
**               cannot be set up (containers, seccomp, io_uring_disabled).
**   io_fault.c  wraps another backend and injects failures for tests: the
**               Nth operation of a kind fails with a chosen errno (once or
**               from then on), short writes, torn writes and crash points.
**   io_record.c wraps another backend and records every write and sync, so
**               that tests can rebuild what a power cut could leave.
**
** Rules every backend keeps (the writer relies on them):
**   - write() and WRITE requests transfer all bytes or fail: a short write
**     is resubmitted for the rest, never reported as success.
**   - A sync covers only writes whose completions were already seen: callers
**     issue sync() after the writes it must cover have returned, and a
**     backend never reorders a sync before an earlier completed write.
**   - EINTR / EAGAIN from the kernel interface are retried internally.
**   - Every method is safe to call from several threads at once.
**   - Errors are returned as negative errno values.
*/
#ifndef LS_IO_H
#define LS_IO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct ls_io ls_io;

enum ls_io_opcode {
  LS_IOOP_READ = 1,
  LS_IOOP_WRITE = 2
};

/* One request of a batch given to submit(). */
typedef struct ls_io_req {
  int op;                          /* LS_IOOP_READ or LS_IOOP_WRITE */
  int fd;
  void *buf;
  size_t len;
  uint64_t off;
  ssize_t res;                     /* out: bytes transferred or -errno; a
                                   ** READ is short only at end of file */
} ls_io_req;

struct ls_io_methods {
  const char *name;                /* "posix", "io_uring", "fault" */

  /* Read up to len bytes at off.  Returns bytes read (less than len only at
  ** end of file) or -errno.  Short reads before end of file are continued. */
  ssize_t (*read)(ls_io *io, int fd, void *buf, size_t len, uint64_t off);

  /* Write all len bytes at off.  Returns 0 or -errno. */
  int (*write)(ls_io *io, int fd, const void *buf, size_t len, uint64_t off);

  /* fdatasync(fd).  Returns 0 or -errno. */
  int (*sync)(ls_io *io, int fd);

  /* Perform n READ/WRITE requests, possibly concurrently and in any order,
  ** and return when all are complete.  Sets every req->res.  Returns 0 if
  ** all succeeded, else the -errno of the first failed request (reads that
  ** stop at end of file are not failures). */
  int (*submit)(ls_io *io, ls_io_req *reqs, int n);

  /* openat(dirfd, name, flags | O_CLOEXEC | O_NOFOLLOW, mode): fd or -errno. */
  int (*open)(ls_io *io, int dirfd, const char *name, int flags, int mode);
  int (*close)(ls_io *io, int fd);
  /* renameat(dirfd, from, dirfd, to): 0 or -errno. */
  int (*rename)(ls_io *io, int dirfd, const char *from, const char *to);
  /* unlinkat(dirfd, name, 0): 0 or -errno. */
  int (*unlink)(ls_io *io, int dirfd, const char *name);
  /* fsync(fd) (full sync: directories and the manifest).  0 or -errno. */
  int (*fsync)(ls_io *io, int fd);
  /* fallocate(fd, mode, off, len): 0 or -errno. */
  int (*fallocate)(ls_io *io, int fd, int mode, uint64_t off, uint64_t len);

  void (*destroy)(ls_io *io);
};

struct ls_io {
  const struct ls_io_methods *m;
};

/* Backend kinds: the values of enum ls_io_kind in logstor.h. */

/* Create a backend.  kind is LS_IO_AUTO (io_uring if it can be set up,
** else POSIX), LS_IO_URING or LS_IO_POSIX.  A non-NULL, non-empty
** fault_spec wraps the result in the fault-injecting backend.  Returns
** LS_OK, LS_IOERR (io_uring requested but unavailable), LS_INVALID (bad
** fault spec) or LS_NOMEM; ls_errmsg() says why. */
int ls_io_create(int kind, const char *fault_spec, ls_io **out);

/* Name for stats: "io_uring", "posix", "io_uring+fault", "posix+fault". */
const char *ls_io_name(ls_io *io);

static inline void ls_io_destroy(ls_io *io) { if (io) io->m->destroy(io); }

/* Backend constructors (used by ls_io_create and by tests). */
int ls_io_posix_create(ls_io **out);
int ls_io_uring_create(ls_io **out);          /* LS_IOERR if unavailable */
int ls_io_fault_create(ls_io *inner, const char *spec, ls_io **out);

/* ---------------------------------------------------------------------------
** Fault injection (io_fault.c).
**
** A spec is a comma-separated list of rules "OP=N:ACTION":
**   OP      read | write | sync | open | rename | unlink | fsync | fallocate
**           (write and read also count each request of a submit() batch)
**   N       1-based count of operations of that kind since the rule was set
**   ACTION  EIO, ENOSPC, EACCES, ... (any errno name): the Nth op fails
**           with it, once;
**           ERRNO:persist   the Nth op and every later op of that kind fail;
**           short=B         the Nth write first transfers only B bytes (the
**                           backend must resubmit the rest);
**           torn=B          the Nth write puts only its first B bytes in the
**                           file, then the process exits (a crash mid-write);
**           crash           the process exits before the Nth op;
**           crash-after     the process exits after the Nth op completed.
** Example: "write=5:EIO,sync=2:EIO:persist".  "Exits" means
** _exit(LS_FAULT_CRASH_EXIT) without running atexit handlers, like a
** SIGKILL: data already written stays in the page cache.
*/
#define LS_FAULT_CRASH_EXIT 86

/* Replace the rules of a fault backend (counters restart).  "" clears. */
int ls_io_fault_set(ls_io *io, const char *spec);
/* Operations of kind op ("write", "sync", ...) seen since the last set. */
uint64_t ls_io_fault_count(ls_io *io, const char *op);
/* Number of faults injected since the last set. */
uint64_t ls_io_fault_injected(ls_io *io);

/* ---------------------------------------------------------------------------
** Recording (io_record.c): the power-loss simulator's backend.  It wraps
** another backend (owning it) and logs every write, sync, name operation
** and hole; the log outlives the backend while referenced.  For a cut after
** event `cut` (0 .. ls_iolog_events()), ls_iolog_variants() counts the disk
** states a power cut there could leave (io_record.c states the model) and
** ls_iolog_materialize() writes variant `variant` -- or, with rng non-NULL,
** a random one -- as files into the empty directory dir (NULL: none), and
** a fingerprint of the state into *hash (if non-NULL).
*/
typedef struct ls_iolog ls_iolog;
int ls_io_record_create(ls_io *inner, ls_io **out);
/* The log of a recording backend, referenced (NULL for another backend). */
ls_iolog *ls_io_record_log(ls_io *io);
void ls_iolog_release(ls_iolog *log);
uint64_t ls_iolog_events(ls_iolog *log);
uint64_t ls_iolog_variants(ls_iolog *log, uint64_t cut);
int ls_iolog_materialize(ls_iolog *log, uint64_t cut, uint64_t variant, uint64_t *rng, const char *dir,
                         uint64_t *hash);

#endif /* LS_IO_H */
