/*
** io_fault.c -- a fault-injecting I/O backend for tests.
**
** It wraps another backend (the "inner" one, which it owns) and, following
** a list of rules, makes chosen operations fail, shortens or tears writes,
** or ends the process at a chosen point.  The spec grammar is in io.h:
** "OP=N:ACTION" rules separated by commas, e.g. "write=5:EIO,sync=2:EIO:persist".
**
** Rules of this module:
**   1. Operations are counted per kind (read, write, sync, open, rename,
**      unlink, fsync, fallocate), from 1, since the rules were last set.
**      close is not counted and never fails here.  Each request of a
**      submit() batch is one read or write, counted in array order.
**   2. The first rule (in spec order) that matches an operation decides:
**      "N:ERRNO" matches only the Nth, "N:ERRNO:persist" the Nth and every
**      later one.  A failed operation never reaches the inner backend.
**   3. "short=B" writes the first B bytes, then the rest, as a backend that
**      resubmits would: the caller must see success and complete data.
**   4. "torn=B", "crash" and "crash-after" end the process with
**      _exit(LS_FAULT_CRASH_EXIT), like SIGKILL: no atexit handlers, no
**      stdio flush, nothing synced.  In a batch, the requests before the
**      one that crashes are performed first (in array order).
**   5. An injected errno reaches the caller as is, EINTR and EAGAIN
**      included: the wrapper sits above the backend's retry loops, so these
**      test the caller's handling, not the backend's.
**   6. Counters and rules are guarded by one mutex; the inner operations
**      run outside it, so the wrapper adds no serialisation.
**   7. ls_io_fault_create() takes ownership of inner only on success.
**
** The backend's method table is a per-instance copy whose name is the
** composed stats name ("posix+fault", "io_uring+fault"), so that
** ls_io_name() is the same for every backend.
*/
#include "io.h"
#include "ls_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define FAULT_MAX_RULES 32
#define FAULT_SPEC_MAX 1024

enum fault_op {
  FOP_READ, FOP_WRITE, FOP_SYNC, FOP_OPEN, FOP_RENAME, FOP_UNLINK, FOP_FSYNC,
  FOP_FALLOCATE, FOP_COUNT
};

static const char *const fault_op_names[FOP_COUNT] = {
  "read", "write", "sync", "open", "rename", "unlink", "fsync", "fallocate"
};

enum fault_action {
  FA_NONE = 0,
  FA_ERRNO,                        /* the Nth op fails */
  FA_PERSIST,                      /* the Nth and later ops fail */
  FA_SHORT,                        /* the Nth write goes in two parts */
  FA_TORN,                         /* the Nth write is cut, then exit */
  FA_CRASH,                        /* exit before the Nth op */
  FA_CRASH_AFTER                   /* exit after the Nth op */
};

typedef struct fault_rule {
  int op;                          /* enum fault_op */
  uint64_t n;                      /* 1-based count that triggers it */
  int action;                      /* enum fault_action */
  int err;                         /* errno for FA_ERRNO / FA_PERSIST */
  size_t bytes;                    /* B of short=B / torn=B */
} fault_rule;

typedef struct fault_io {
  ls_io base;                      /* must be first */
  struct ls_io_methods methods;    /* fault_methods with the composed name */
  char name[48];                   /* "<inner>+fault" */
  ls_io *inner;                    /* owned */
  pthread_mutex_t lock;            /* guards everything below */
  fault_rule rules[FAULT_MAX_RULES];
  int nrules;
  uint64_t count[FOP_COUNT];       /* operations seen since the last set */
  uint64_t injected;               /* rules that fired since the last set */
} fault_io;

static const struct { const char *name; int err; } fault_errnos[] = {
  { "EIO", EIO }, { "ENOSPC", ENOSPC }, { "EACCES", EACCES }, { "EPERM", EPERM },
  { "EINTR", EINTR }, { "EAGAIN", EAGAIN }, { "EROFS", EROFS }, { "EDQUOT", EDQUOT },
  { "EFBIG", EFBIG }, { "ENOMEM", ENOMEM }, { "EBADF", EBADF }, { "EINVAL", EINVAL },
  { "ENOENT", ENOENT }, { "EEXIST", EEXIST }, { "EBUSY", EBUSY }, { "EMFILE", EMFILE },
  { "ENFILE", ENFILE }, { "ENXIO", ENXIO }, { "ENODEV", ENODEV }, { "EXDEV", EXDEV },
  { "ENOTDIR", ENOTDIR }, { "EISDIR", EISDIR }, { "ELOOP", ELOOP },
  { "ENAMETOOLONG", ENAMETOOLONG }, { "ENOTEMPTY", ENOTEMPTY }, { "ETIMEDOUT", ETIMEDOUT },
  { "ESTALE", ESTALE }, { "EOPNOTSUPP", EOPNOTSUPP }, { "EFAULT", EFAULT },
  { "EOVERFLOW", EOVERFLOW }, { "ENOLCK", ENOLCK }, { "ECANCELED", ECANCELED },
};

/* ------------------------------------------------------------------------
** Parsing.
*/

/* Index of the op named by s[0..len), or -1. */
static int fault_op_lookup(const char *s, size_t len) {
  for (int i = 0; i < FOP_COUNT; i++)
    if (strlen(fault_op_names[i]) == len && memcmp(s, fault_op_names[i], len) == 0) return i;
  return -1;
}

/* errno named by s[0..len), or 0. */
static int fault_errno_lookup(const char *s, size_t len) {
  for (size_t i = 0; i < sizeof fault_errnos / sizeof fault_errnos[0]; i++)
    if (strlen(fault_errnos[i].name) == len && memcmp(s, fault_errnos[i].name, len) == 0)
      return fault_errnos[i].err;
  return 0;
}

/* Parse the decimal digits at *p into *v and advance *p.  Returns 0, or -1
** if there are no digits or the value does not fit 48 bits (no test needs
** a count or length beyond that). */
static int fault_parse_number(const char **p, uint64_t *v) {
  const char *s = *p;
  uint64_t x = 0;
  if (*s < '0' || *s > '9') return -1;
  while (*s >= '0' && *s <= '9') {
    x = x * 10 + (uint64_t)(*s++ - '0');
    if (x >> 48) return -1;
  }
  *v = x;
  *p = s;
  return 0;
}

static int fault_bad_rule(const char *rule, const char *why) {
  return ls_err(LS_INVALID, "fault spec: bad rule \"%s\": %s", rule, why);
}

/* Parse one rule "OP=N:ACTION" (NUL-terminated, trimmed) into *out.
** Returns LS_OK or LS_INVALID with a message naming the rule. */
static int fault_parse_rule(const char *rule, fault_rule *out) {
  const char *eq = strchr(rule, '=');
  const char *p;
  uint64_t v;

  memset(out, 0, sizeof *out);
  if (!eq) return fault_bad_rule(rule, "expected OP=N:ACTION");
  out->op = fault_op_lookup(rule, (size_t)(eq - rule));
  if (out->op < 0)
    return fault_bad_rule(rule, "unknown operation (read, write, sync, open, rename, "
                                "unlink, fsync, fallocate)");
  p = eq + 1;
  if (fault_parse_number(&p, &out->n) != 0 || out->n == 0)
    return fault_bad_rule(rule, "N must be a positive count");
  if (*p != ':') return fault_bad_rule(rule, "expected ':' and an action after N");
  p++;

  if (strcmp(p, "crash") == 0) {
    out->action = FA_CRASH;
  } else if (strcmp(p, "crash-after") == 0) {
    out->action = FA_CRASH_AFTER;
  } else if (strncmp(p, "short=", 6) == 0 || strncmp(p, "torn=", 5) == 0) {
    out->action = p[0] == 's' ? FA_SHORT : FA_TORN;
    p = strchr(p, '=') + 1;
    if (fault_parse_number(&p, &v) != 0 || *p)
      return fault_bad_rule(rule, "expected a byte count after short= or torn=");
    if (out->op != FOP_WRITE)
      return fault_bad_rule(rule, "short= and torn= apply only to write");
    out->bytes = (size_t)v;
  } else {
    const char *colon = strchr(p, ':');
    size_t len = colon ? (size_t)(colon - p) : strlen(p);
    out->err = fault_errno_lookup(p, len);
    if (!out->err)
      return fault_bad_rule(rule, "unknown action (an errno name such as EIO, "
                                  "short=B, torn=B, crash or crash-after)");
    out->action = FA_ERRNO;
    if (colon) {
      if (strcmp(colon + 1, "persist") != 0)
        return fault_bad_rule(rule, "only \":persist\" may follow an errno name");
      out->action = FA_PERSIST;
    }
  }
  return LS_OK;
}

/* Parse a whole spec into rules[] (FAULT_MAX_RULES entries).  An empty spec
** gives no rules.  Returns LS_OK or LS_INVALID. */
static int fault_parse(const char *spec, fault_rule *rules, int *nrules) {
  char buf[FAULT_SPEC_MAX];
  char *p = buf;
  size_t len = strlen(spec);

  *nrules = 0;
  if (len >= sizeof buf)
    return ls_err(LS_INVALID, "fault spec: longer than %d bytes", FAULT_SPEC_MAX - 1);
  if (len == 0) return LS_OK;
  memcpy(buf, spec, len + 1);
  for (;;) {
    char *comma = strchr(p, ',');
    char *end;
    if (comma) *comma = 0;
    while (*p == ' ' || *p == '\t') p++;
    end = p + strlen(p);
    while (end > p && (end[-1] == ' ' || end[-1] == '\t')) *--end = 0;
    if (!*p) return ls_err(LS_INVALID, "fault spec \"%s\": empty rule", spec);
    if (*nrules == FAULT_MAX_RULES)
      return ls_err(LS_INVALID, "fault spec: more than %d rules", FAULT_MAX_RULES);
    int rc = fault_parse_rule(p, &rules[*nrules]);
    if (rc != LS_OK) return rc;
    (*nrules)++;
    if (!comma) break;
    p = comma + 1;
  }
  return LS_OK;
}

/* ------------------------------------------------------------------------
** Deciding and applying faults.
*/

static _Noreturn void fault_crash(void) {
  _exit(LS_FAULT_CRASH_EXIT);
}

/* Count one operation of kind op and copy into *a the rule that fires on it
** (a->action is FA_NONE if none does). */
static void fault_take(fault_io *f, int op, fault_rule *a) {
  pthread_mutex_lock(&f->lock);
  uint64_t c = ++f->count[op];
  a->action = FA_NONE;
  for (int i = 0; i < f->nrules; i++) {
    const fault_rule *r = &f->rules[i];
    if (r->op != op) continue;
    if (r->n == c || (r->action == FA_PERSIST && c > r->n)) {
      *a = *r;
      f->injected++;
      break;
    }
  }
  pthread_mutex_unlock(&f->lock);
}

/* The part of a rule that acts before the operation: exits for "crash",
** returns -errno for an errno rule, else 0 (run the operation). */
static int fault_before(const fault_rule *a) {
  if (a->action == FA_CRASH) fault_crash();
  if (a->action == FA_ERRNO || a->action == FA_PERSIST) return -a->err;
  return 0;
}

/* The part that acts after it: "crash-after". */
static void fault_after(const fault_rule *a) {
  if (a->action == FA_CRASH_AFTER) fault_crash();
}

/* Count an operation and apply the "before" part of its rule. */
static int fault_enter(fault_io *f, int op, fault_rule *a) {
  fault_take(f, op, a);
  return fault_before(a);
}

/* Write through the inner backend, shortened (rule 3) or torn (rule 4) as
** rule a says.  Returns 0 or -errno. */
static int fault_write_through(fault_io *f, const fault_rule *a, int fd, const void *buf,
                               size_t len, uint64_t off) {
  ls_io *in = f->inner;
  if (a->action == FA_TORN) {
    size_t cut = a->bytes < len ? a->bytes : len;
    if (cut) (void)in->m->write(in, fd, buf, cut, off);
    fault_crash();
  }
  if (a->action == FA_SHORT && a->bytes < len) {
    int rc = a->bytes ? in->m->write(in, fd, buf, a->bytes, off) : 0;
    if (rc) return rc;
    return in->m->write(in, fd, (const char *)buf + a->bytes, len - a->bytes, off + a->bytes);
  }
  return in->m->write(in, fd, buf, len, off);
}

/* ------------------------------------------------------------------------
** Methods.
*/

static ssize_t fault_read(ls_io *io, int fd, void *buf, size_t len, uint64_t off) {
  fault_io *f = (fault_io *)io;
  fault_rule a;
  int rc = fault_enter(f, FOP_READ, &a);
  if (rc) return rc;
  ssize_t n = f->inner->m->read(f->inner, fd, buf, len, off);
  fault_after(&a);
  return n;
}

static int fault_write(ls_io *io, int fd, const void *buf, size_t len, uint64_t off) {
  fault_io *f = (fault_io *)io;
  fault_rule a;
  int rc = fault_enter(f, FOP_WRITE, &a);
  if (rc) return rc;
  rc = fault_write_through(f, &a, fd, buf, len, off);
  fault_after(&a);
  return rc;
}

static int fault_sync(ls_io *io, int fd) {
  fault_io *f = (fault_io *)io;
  fault_rule a;
  int rc = fault_enter(f, FOP_SYNC, &a);
  if (rc) return rc;
  rc = f->inner->m->sync(f->inner, fd);
  fault_after(&a);
  return rc;
}

/* Perform one batch request on which rule a fired, alone. */
static void fault_one_request(fault_io *f, ls_io_req *q, const fault_rule *a) {
  int rc = fault_before(a);
  if (rc) {
    q->res = rc;
    return;
  }
  if (q->op == LS_IOOP_READ) {
    q->res = f->inner->m->read(f->inner, q->fd, q->buf, q->len, q->off);
  } else {
    rc = fault_write_through(f, a, q->fd, q->buf, q->len, q->off);
    q->res = rc ? rc : (ssize_t)q->len;
  }
  fault_after(a);
}

/* Requests on which no rule fires go to the inner backend together, in
** runs; a request a rule fires on is performed alone, after the run before
** it (rule 4).  Returns the first failed request's -errno, in array order. */
static int fault_submit(ls_io *io, ls_io_req *reqs, int n) {
  fault_io *f = (fault_io *)io;
  ls_io *in = f->inner;
  int start = 0;

  if (n < 0) return -EINVAL;
  for (int i = 0; i < n; i++) {
    fault_rule a;
    int op = reqs[i].op == LS_IOOP_READ ? FOP_READ
           : reqs[i].op == LS_IOOP_WRITE ? FOP_WRITE : -1;
    if (op < 0) continue;                     /* the inner backend rejects it */
    fault_take(f, op, &a);
    if (a.action == FA_NONE) continue;
    if (i > start) in->m->submit(in, reqs + start, i - start);
    fault_one_request(f, &reqs[i], &a);
    start = i + 1;
  }
  if (start == 0) return in->m->submit(in, reqs, n);
  if (n > start) in->m->submit(in, reqs + start, n - start);
  for (int i = 0; i < n; i++)
    if (reqs[i].res < 0) return (int)reqs[i].res;
  return 0;
}

static int fault_open(ls_io *io, int dirfd, const char *name, int flags, int mode) {
  fault_io *f = (fault_io *)io;
  fault_rule a;
  int rc = fault_enter(f, FOP_OPEN, &a);
  if (rc) return rc;
  rc = f->inner->m->open(f->inner, dirfd, name, flags, mode);
  fault_after(&a);
  return rc;
}

static int fault_close(ls_io *io, int fd) {
  fault_io *f = (fault_io *)io;
  return f->inner->m->close(f->inner, fd);
}

static int fault_rename(ls_io *io, int dirfd, const char *from, const char *to) {
  fault_io *f = (fault_io *)io;
  fault_rule a;
  int rc = fault_enter(f, FOP_RENAME, &a);
  if (rc) return rc;
  rc = f->inner->m->rename(f->inner, dirfd, from, to);
  fault_after(&a);
  return rc;
}

static int fault_unlink(ls_io *io, int dirfd, const char *name) {
  fault_io *f = (fault_io *)io;
  fault_rule a;
  int rc = fault_enter(f, FOP_UNLINK, &a);
  if (rc) return rc;
  rc = f->inner->m->unlink(f->inner, dirfd, name);
  fault_after(&a);
  return rc;
}

static int fault_fsync(ls_io *io, int fd) {
  fault_io *f = (fault_io *)io;
  fault_rule a;
  int rc = fault_enter(f, FOP_FSYNC, &a);
  if (rc) return rc;
  rc = f->inner->m->fsync(f->inner, fd);
  fault_after(&a);
  return rc;
}

static int fault_fallocate(ls_io *io, int fd, int mode, uint64_t off, uint64_t len) {
  fault_io *f = (fault_io *)io;
  fault_rule a;
  int rc = fault_enter(f, FOP_FALLOCATE, &a);
  if (rc) return rc;
  rc = f->inner->m->fallocate(f->inner, fd, mode, off, len);
  fault_after(&a);
  return rc;
}

static void fault_destroy(ls_io *io) {
  fault_io *f = (fault_io *)io;
  ls_io_destroy(f->inner);
  pthread_mutex_destroy(&f->lock);
  free(f);
}

static const struct ls_io_methods fault_methods = {
  .name = "fault",
  .read = fault_read,
  .write = fault_write,
  .sync = fault_sync,
  .submit = fault_submit,
  .open = fault_open,
  .close = fault_close,
  .rename = fault_rename,
  .unlink = fault_unlink,
  .fsync = fault_fsync,
  .fallocate = fault_fallocate,
  .destroy = fault_destroy,
};

/* The fault backend behind io, or NULL if io is another kind. */
static fault_io *fault_of(ls_io *io) {
  return io && io->m->destroy == fault_destroy ? (fault_io *)io : NULL;
}

int ls_io_fault_create(ls_io *inner, const char *spec, ls_io **out) {
  fault_io *f;
  int rc;

  *out = NULL;
  if (!inner) return ls_err(LS_INVALID, "fault backend: no inner backend");
  f = calloc(1, sizeof *f);
  if (!f) return ls_err(LS_NOMEM, "fault backend: out of memory");
  rc = fault_parse(spec ? spec : "", f->rules, &f->nrules);
  if (rc != LS_OK) goto fail;
  if (pthread_mutex_init(&f->lock, NULL) != 0) {
    rc = ls_err(LS_NOMEM, "fault backend: pthread_mutex_init failed");
    goto fail;
  }
  f->methods = fault_methods;
  snprintf(f->name, sizeof f->name, "%s+fault", inner->m->name);
  f->methods.name = f->name;
  f->base.m = &f->methods;
  f->inner = inner;
  *out = &f->base;
  return LS_OK;

fail:
  free(f);
  return rc;
}

/* Replace the rules and restart the counters.  Rules are unchanged if the
** spec is invalid. */
int ls_io_fault_set(ls_io *io, const char *spec) {
  fault_io *f = fault_of(io);
  fault_rule rules[FAULT_MAX_RULES];
  int nrules, rc;

  if (!f)
    return ls_err(LS_INVALID, "fault rules: I/O backend \"%s\" does not inject faults",
                  ls_io_name(io));
  rc = fault_parse(spec ? spec : "", rules, &nrules);
  if (rc != LS_OK) return rc;
  pthread_mutex_lock(&f->lock);
  memcpy(f->rules, rules, (size_t)nrules * sizeof rules[0]);
  f->nrules = nrules;
  memset(f->count, 0, sizeof f->count);
  f->injected = 0;
  pthread_mutex_unlock(&f->lock);
  return LS_OK;
}

uint64_t ls_io_fault_count(ls_io *io, const char *op) {
  fault_io *f = fault_of(io);
  int k = op ? fault_op_lookup(op, strlen(op)) : -1;
  uint64_t c;
  if (!f || k < 0) return 0;
  pthread_mutex_lock(&f->lock);
  c = f->count[k];
  pthread_mutex_unlock(&f->lock);
  return c;
}

uint64_t ls_io_fault_injected(ls_io *io) {
  fault_io *f = fault_of(io);
  uint64_t c;
  if (!f) return 0;
  pthread_mutex_lock(&f->lock);
  c = f->injected;
  pthread_mutex_unlock(&f->lock);
  return c;
}
