/*
** io_posix.c -- the POSIX I/O backend: pread, pwrite, fdatasync.
**
** Used when io_uring cannot be set up, and by the io_uring backend itself
** for reads and file-system calls (see io_uring.c).  It holds no state, so
** every method is trivially safe to call from several threads at once.
**
** Rules (the contract of io.h):
**   1. A write transfers every byte or fails: a short pwrite() is continued
**      at the new offset.  A pwrite() that transfers nothing for a non-empty
**      buffer is reported as -EIO rather than retried forever.
**   2. A read is short only at end of file: a short pread() is continued
**      until a pread() returns 0.
**   3. EINTR and EAGAIN are retried.  Nothing else is: in particular a
**      failed fdatasync() is never retried, because Linux reports a
**      writeback error once and a second call would "succeed" (fsyncgate).
**   4. close() is not retried on EINTR: on Linux the descriptor is already
**      released and a retry could close a descriptor another thread just
**      opened.
**   5. submit() performs the requests one after another, in array order.
*/
#include "io.h"
#include "ls_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* Largest transfer asked of one system call; Linux caps a single read or
** write at a little under 2 GiB anyway, and the loops continue past it. */
#define POSIX_MAX_XFER ((size_t)1 << 30)

typedef struct posix_io {
  ls_io base;                      /* must be first */
} posix_io;

/* 1 if [off, off + len) can be expressed as off_t values. */
static int posix_range_ok(uint64_t off, size_t len) {
  return off <= (uint64_t)INT64_MAX && (uint64_t)len <= (uint64_t)INT64_MAX - off;
}

static int posix_errno(void) {
  return errno ? -errno : -EIO;
}

/* Read until len bytes or end of file.  Returns the bytes read or -errno. */
static ssize_t posix_read(ls_io *io, int fd, void *buf, size_t len, uint64_t off) {
  size_t done = 0;
  LS_UNUSED(io);
  if (!posix_range_ok(off, len)) return -EINVAL;
  while (done < len) {
    size_t want = len - done < POSIX_MAX_XFER ? len - done : POSIX_MAX_XFER;
    ssize_t n = pread(fd, (char *)buf + done, want, (off_t)(off + done));
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return posix_errno();
    }
    if (n == 0) break;                        /* end of file */
    done += (size_t)n;
  }
  return (ssize_t)done;
}

/* Write all len bytes.  Returns 0 or -errno. */
static int posix_write(ls_io *io, int fd, const void *buf, size_t len, uint64_t off) {
  size_t done = 0;
  LS_UNUSED(io);
  if (!posix_range_ok(off, len)) return -EINVAL;
  while (done < len) {
    size_t want = len - done < POSIX_MAX_XFER ? len - done : POSIX_MAX_XFER;
    ssize_t n = pwrite(fd, (const char *)buf + done, want, (off_t)(off + done));
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return posix_errno();
    }
    if (n == 0) return -EIO;                  /* no progress: rule 1 */
    done += (size_t)n;
  }
  return 0;
}

static int posix_sync(ls_io *io, int fd) {
  LS_UNUSED(io);
  while (fdatasync(fd) != 0) {
    if (errno != EINTR) return posix_errno();
  }
  return 0;
}

/* Perform the requests in order.  Returns 0 or the first request's error. */
static int posix_submit(ls_io *io, ls_io_req *reqs, int n) {
  int first_err = 0;
  if (n < 0) return -EINVAL;
  for (int i = 0; i < n; i++) {
    ls_io_req *r = &reqs[i];
    if (r->op == LS_IOOP_READ) {
      r->res = posix_read(io, r->fd, r->buf, r->len, r->off);
    } else if (r->op == LS_IOOP_WRITE) {
      int rc = posix_write(io, r->fd, r->buf, r->len, r->off);
      r->res = rc ? rc : (ssize_t)r->len;
    } else {
      r->res = -EINVAL;
    }
    if (r->res < 0 && !first_err) first_err = (int)r->res;
  }
  return first_err;
}

static int posix_open(ls_io *io, int dirfd, const char *name, int flags, int mode) {
  LS_UNUSED(io);
  for (;;) {
    int fd = openat(dirfd, name, flags | O_CLOEXEC | O_NOFOLLOW, (mode_t)mode);
    if (fd >= 0) return fd;
    if (errno != EINTR) return posix_errno();
  }
}

/* Rule 4: EINTR from close() means the descriptor is gone; report success. */
static int posix_close(ls_io *io, int fd) {
  LS_UNUSED(io);
  if (close(fd) != 0 && errno != EINTR) return posix_errno();
  return 0;
}

static int posix_rename(ls_io *io, int dirfd, const char *from, const char *to) {
  LS_UNUSED(io);
  return renameat(dirfd, from, dirfd, to) == 0 ? 0 : posix_errno();
}

static int posix_unlink(ls_io *io, int dirfd, const char *name) {
  LS_UNUSED(io);
  return unlinkat(dirfd, name, 0) == 0 ? 0 : posix_errno();
}

static int posix_fsync(ls_io *io, int fd) {
  LS_UNUSED(io);
  while (fsync(fd) != 0) {
    if (errno != EINTR) return posix_errno();
  }
  return 0;
}

/* Not "posix_fallocate": that name belongs to libc. */
static int posix_preallocate(ls_io *io, int fd, int mode, uint64_t off, uint64_t len) {
  LS_UNUSED(io);
  if (off > (uint64_t)INT64_MAX || len > (uint64_t)INT64_MAX - off) return -EINVAL;
  while (fallocate(fd, mode, (off_t)off, (off_t)len) != 0) {
    if (errno != EINTR) return posix_errno();
  }
  return 0;
}

static void posix_destroy(ls_io *io) {
  free(io);
}

static const struct ls_io_methods posix_methods = {
  .name = "posix",
  .read = posix_read,
  .write = posix_write,
  .sync = posix_sync,
  .submit = posix_submit,
  .open = posix_open,
  .close = posix_close,
  .rename = posix_rename,
  .unlink = posix_unlink,
  .fsync = posix_fsync,
  .fallocate = posix_preallocate,
  .destroy = posix_destroy,
};

int ls_io_posix_create(ls_io **out) {
  posix_io *p = calloc(1, sizeof *p);
  *out = NULL;
  if (!p) return ls_err(LS_NOMEM, "posix I/O backend: out of memory");
  p->base.m = &posix_methods;
  *out = &p->base;
  return LS_OK;
}
