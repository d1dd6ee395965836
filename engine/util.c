/*
** util.c -- error messages, clocks and aligned allocation shared by the
** engine's modules.
**
** The error message of the last failing call is kept per thread, so that
** concurrent callers (several SQLite connections) never see each other's
** messages.  It lives in thread-local storage, not on the heap: any thread
** may run a commit's work (writer.c: the writer's role), including threads
** that end without calling ls_thread_cleanup(), and nothing of it leaks.
*/
#include "ls_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define LS_ERRMSG_MAX 512

static _Thread_local char tls_msg[LS_ERRMSG_MAX];
static _Thread_local int tls_cause;      /* LS_CAUSE_* of the last failure */


const char *ls_strerror(int rc) {
  switch (rc) {
    case LS_OK: return "not an error";
    case LS_NOTFOUND: return "not found";
    case LS_CONFLICT: return "write conflict with another transaction";
    case LS_IOERR: return "I/O error";
    case LS_CORRUPT: return "data corruption detected";
    case LS_FULL: return "disk full";
    case LS_TOOBIG: return "row too large";
    case LS_NOMEM: return "out of memory";
    case LS_BUSY: return "data directory in use by another process";
    case LS_INVALID: return "invalid argument";
    case LS_READONLY: return "engine is read-only after a write failure";
    case LS_NOTABLE: return "no such table";
    case LS_FORMAT: return "unsupported on-disk format";
    case LS_EXPIRED: return "snapshot expired";
    default: return "unknown error";
  }
}

const char *ls_errmsg(void) {
  return tls_msg[0] ? tls_msg : "no detail";
}

int ls_errcause(void) { return tls_cause; }

void ls_err_save(ls_error *to) {
  to->cause = tls_cause;
  snprintf(to->msg, sizeof to->msg, "%s", ls_errmsg());
}

int ls_err_restore(int rc, const ls_error *from) {
  ls_err(rc, "%s", from->msg);
  tls_cause = from->cause;
  return rc;
}

int ls_grow(void **arr, uint64_t *cap, uint64_t need, size_t elem, uint64_t first) {
  if (need <= *cap) return LS_OK;
  uint64_t n = *cap ? *cap * 2 : first;
  while (n < need) n *= 2;
  void *p = realloc(*arr, n * elem);
  if (!p) return LS_NOMEM;
  *arr = p;
  *cap = n;
  return LS_OK;
}

void ls_thread_cleanup(void) {
  tls_msg[0] = 0;
  tls_cause = LS_CAUSE_NONE;
}

static int vset(int rc, const char *fmt, va_list ap) {
  tls_cause = LS_CAUSE_NONE;
  vsnprintf(tls_msg, LS_ERRMSG_MAX, fmt, ap);
  return rc;
}

int ls_err(int rc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vset(rc, fmt, ap);
  va_end(ap);
  return rc;
}

int ls_err_prefix(int rc, const char *fmt, ...) {
  char *m = tls_msg;
  char old[LS_ERRMSG_MAX], pre[LS_ERRMSG_MAX];
  memcpy(old, m, LS_ERRMSG_MAX);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(pre, sizeof pre, fmt, ap);
  va_end(ap);
  size_t a = strlen(pre), b = strnlen(old, LS_ERRMSG_MAX - 1);
  if (a > LS_ERRMSG_MAX - 3) a = LS_ERRMSG_MAX - 3;
  if (b > LS_ERRMSG_MAX - 3 - a) b = LS_ERRMSG_MAX - 3 - a;
  memcpy(m, pre, a);
  memcpy(m + a, ": ", 2);
  memcpy(m + a + 2, old, b);
  m[a + 2 + b] = 0;
  return rc;
}

/* Every detected corruption passes here: a place for a breakpoint. */
int ls_corrupt_bkpt(int line, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vset(LS_CORRUPT, fmt, ap);
  va_end(ap);
  (void)line;
  return LS_CORRUPT;
}

int ls_err_io(int neg_errno, int cause, const char *fmt, ...) {
  int e = -neg_errno;
  int rc = (e == ENOSPC || e == EDQUOT || e == EFBIG) ? LS_FULL
         : (e == ENOMEM) ? LS_NOMEM : LS_IOERR;
  char what[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  ls_err(rc, "%s: %s", what, strerror(e));
  tls_cause = cause;
  return rc;
}

uint64_t ls_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void ls_vappend_line(char **text, size_t *len, const char *fmt, va_list ap) {
  char line[768];
  int n = vsnprintf(line, sizeof line, fmt, ap);
  if (n < 0) return;
  if ((size_t)n >= sizeof line) n = sizeof line - 1;
  char *p = realloc(*text, *len + (size_t)n + 2);
  if (!p) return;
  memcpy(p + *len, line, (size_t)n);
  *len += (size_t)n;
  p[(*len)++] = '\n';
  p[*len] = 0;
  *text = p;
}

void *ls_alloc_aligned(size_t size) {
  void *p = NULL;
  if (posix_memalign(&p, 4096, size ? size : 4096)) return NULL;
  return p;
}
