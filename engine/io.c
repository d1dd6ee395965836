/*
** io.c -- choosing and naming an I/O backend (see io.h).
**
** ls_io_create() is the only place that decides which backend an engine
** uses:
**   LS_IO_URING  io_uring or LS_IOERR; never a silent substitute.
**   LS_IO_POSIX  pread / pwrite / fdatasync.
**   LS_IO_AUTO   io_uring if a ring can be set up, else POSIX without a
**                word: containers and seccomp profiles often refuse
**                io_uring, and the engine works the same on either.
** A non-empty fault spec then wraps the chosen backend in io_fault.c's
** fault-injecting backend, which owns it from then on.
*/
#include "io.h"
#include "ls_int.h"

#include <stddef.h>

int ls_io_create(int kind, const char *fault_spec, ls_io **out) {
  ls_io *base = NULL;
  int rc;

  *out = NULL;
  switch (kind) {
    case LS_IO_URING:
      rc = ls_io_uring_create(&base);
      break;
    case LS_IO_POSIX:
      rc = ls_io_posix_create(&base);
      break;
    case LS_IO_AUTO:
      rc = ls_io_uring_create(&base);
      if (rc == LS_IOERR) rc = ls_io_posix_create(&base);
      break;
    default:
      return ls_err(LS_INVALID, "unknown I/O backend kind %d", kind);
  }
  if (rc != LS_OK) return rc;

  if (fault_spec && fault_spec[0]) {
    ls_io *fault = NULL;
    rc = ls_io_fault_create(base, fault_spec, &fault);
    if (rc != LS_OK) {
      ls_io_destroy(base);
      return rc;
    }
    base = fault;
  }
  *out = base;
  return LS_OK;
}

/* The fault backend's method table carries the composed name ("posix+fault"),
** so every backend's name is simply its table's. */
const char *ls_io_name(ls_io *io) {
  return io ? io->m->name : "none";
}
