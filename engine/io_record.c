/*
** io_record.c -- a recording I/O backend for the power-loss simulator.
**
** It wraps another backend (the "inner" one, which it owns) and logs every
** operation that changes what a power cut could leave on disk: each write
** (with a copy of its bytes), each sync of a file (its start and its end),
** each create, rename and unlink of a name, each sync of the directory
** and each hole punched.  Reads pass through unlogged.  A test then asks
** for the states a power cut after any logged event could leave
** (ls_iolog_variants, ls_iolog_materialize) and recovers each.
**
** The model of a power cut after event k (the dm-log-writes rule for what
** is durable; SQLite's test6.c and the reliability plan for what is not):
**   1. A write is durable if it completed before a sync of its file
**      started, and that sync ended (successfully) before k.  A write is
**      logged when it completes and a sync when it starts and when it ends,
**      so "completed before the sync started" is "logged before it".
**   2. Every other write logged before k reached the disk whole, not at
**      all, or torn: a prefix of its 512-byte sectors (at least one, not
**      all) reached it.  Each such write is decided independently, in any
**      combination: writes are not ordered by the device.
**   3. A create, rename or unlink is durable if a sync of the directory
**      started after it and ended before k.  Of those not durable, a prefix
**      in log order happened (a journalling file system commits its
**      metadata in order).  A file's bytes survive only under a name.
**   4. A punched hole is a write of zeros (rules 1 and 2 apply).
** Writes to names ending in ".tmp" or ".spare", which recovery never reads,
** are decided as whole (their variants add nothing).
**
** Variants of a cut are numbered 0 .. ls_iolog_variants()-1: a mixed-radix
** number whose digits are the choices of rule 2 for each undecided write
** (0 whole, 1 nothing, 2.. torn after 1.. sectors) and of rule 3 (how many
** pending names operations happened).  Variant 0 is "everything logged
** reached the disk".
**
** An fsync() of a descriptor the backend did not open is taken to be the
** directory's (the engine opens the directory itself and everything else
** through the backend).
*/
#include "io.h"
#include "format.h"
#include "ls_int.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

enum { OP_WRITE = 1, OP_SYNC_BEGIN, OP_SYNC_END, OP_DIRSYNC_BEGIN, OP_DIRSYNC_END, OP_CREATE, OP_RENAME,
       OP_UNLINK, OP_PUNCH };

typedef struct rec_op {
  uint8_t type;
  uint8_t ok;                      /* SYNC_END / DIRSYNC_END: it succeeded */
  uint32_t file;                   /* file id (write, sync, create, punch) */
  uint32_t sync;                   /* SYNC_END / DIRSYNC_END: index of its BEGIN */
  uint64_t off, len;
  uint8_t *data;                   /* write: the bytes */
  char *name, *name2;              /* create: name; rename: from, to; unlink */
} rec_op;

typedef struct fd_map { int fd; uint32_t file; } fd_map;
typedef struct name_map { char *name; uint32_t file; } name_map;

struct ls_iolog {
  pthread_mutex_t lock;
  int refs;
  rec_op *ops;
  uint64_t nops, capops;
  uint32_t nfiles;                 /* file ids handed out */
  fd_map *fds;                     /* open descriptors (live) */
  uint32_t nfds, capfds;
  name_map *names;                 /* names as they are now (live) */
  uint32_t nnames, capnames;
};

typedef struct record_io {
  ls_io base;                      /* must be first */
  struct ls_io_methods methods;
  char name[48];
  ls_io *inner;
  ls_iolog *log;
} record_io;

/* ---- the log ---------------------------------------------------------------- */

static rec_op *log_add(ls_iolog *l, int type) {
  if (LS_GROW(l->ops, l->capops, l->nops + 1, 256)) return NULL;
  rec_op *o = &l->ops[l->nops++];
  memset(o, 0, sizeof *o);
  o->type = (uint8_t)type;
  return o;
}

static int fd_file(ls_iolog *l, int fd) {
  for (uint32_t i = 0; i < l->nfds; i++)
    if (l->fds[i].fd == fd) return (int)l->fds[i].file;
  return -1;
}

static int name_find(ls_iolog *l, const char *name) {
  for (uint32_t i = 0; i < l->nnames; i++)
    if (!strcmp(l->names[i].name, name)) return (int)i;
  return -1;
}

static void name_drop(ls_iolog *l, int i) {
  free(l->names[i].name);
  l->names[i] = l->names[--l->nnames];
}

static void name_set(ls_iolog *l, const char *name, uint32_t file) {
  int i = name_find(l, name);
  if (i >= 0) { l->names[i].file = file; return; }
  char *c = strdup(name);
  if (!c || LS_GROW(l->names, l->capnames, l->nnames + 1, 16)) { free(c); return; }
  l->names[l->nnames++] = (name_map){ c, file };
}

void ls_iolog_release(ls_iolog *l) {
  if (!l) return;
  pthread_mutex_lock(&l->lock);
  int last = --l->refs == 0;
  pthread_mutex_unlock(&l->lock);
  if (!last) return;
  for (uint64_t i = 0; i < l->nops; i++) {
    free(l->ops[i].data);
    free(l->ops[i].name);
    free(l->ops[i].name2);
  }
  for (uint32_t i = 0; i < l->nnames; i++) free(l->names[i].name);
  free(l->ops);
  free(l->fds);
  free(l->names);
  pthread_mutex_destroy(&l->lock);
  free(l);
}

uint64_t ls_iolog_events(ls_iolog *l) {
  pthread_mutex_lock(&l->lock);
  uint64_t n = l->nops;
  pthread_mutex_unlock(&l->lock);
  return n;
}

/* ---- methods ------------------------------------------------------------------- */

static ssize_t record_read(ls_io *io, int fd, void *buf, size_t len, uint64_t off) {
  record_io *r = (record_io *)io;
  return r->inner->m->read(r->inner, fd, buf, len, off);
}

/* Log a completed write of len bytes at off to fd. */
static void log_write(ls_iolog *l, int fd, const void *buf, size_t len, uint64_t off) {
  uint8_t *copy = malloc(len ? len : 1);
  pthread_mutex_lock(&l->lock);
  int f = fd_file(l, fd);
  rec_op *o = f >= 0 && copy ? log_add(l, OP_WRITE) : NULL;
  if (o) {
    memcpy(copy, buf, len);
    o->file = (uint32_t)f;
    o->off = off;
    o->len = len;
    o->data = copy;
    copy = NULL;
  }
  pthread_mutex_unlock(&l->lock);
  free(copy);
}

static int record_write(ls_io *io, int fd, const void *buf, size_t len, uint64_t off) {
  record_io *r = (record_io *)io;
  int rc = r->inner->m->write(r->inner, fd, buf, len, off);
  if (!rc) log_write(r->log, fd, buf, len, off);
  return rc;
}

/* A sync of fd (dir: the directory): log its start, run it, log its end. */
static int record_sync_any(record_io *r, int fd, int full) {
  ls_iolog *l = r->log;
  pthread_mutex_lock(&l->lock);
  int f = fd_file(l, fd);
  rec_op *o = log_add(l, f >= 0 ? OP_SYNC_BEGIN : OP_DIRSYNC_BEGIN);
  uint64_t begin = l->nops - 1;
  if (o) o->file = f >= 0 ? (uint32_t)f : 0;
  pthread_mutex_unlock(&l->lock);
  int rc = full ? r->inner->m->fsync(r->inner, fd) : r->inner->m->sync(r->inner, fd);
  pthread_mutex_lock(&l->lock);
  o = log_add(l, f >= 0 ? OP_SYNC_END : OP_DIRSYNC_END);
  if (o) {
    o->file = f >= 0 ? (uint32_t)f : 0;
    o->sync = (uint32_t)begin;
    o->ok = rc == 0;
  }
  pthread_mutex_unlock(&l->lock);
  return rc;
}

static int record_sync(ls_io *io, int fd) { return record_sync_any((record_io *)io, fd, 0); }
static int record_fsync(ls_io *io, int fd) { return record_sync_any((record_io *)io, fd, 1); }

static int record_submit(ls_io *io, ls_io_req *reqs, int n) {
  record_io *r = (record_io *)io;
  int rc = r->inner->m->submit(r->inner, reqs, n);
  for (int i = 0; i < n; i++)
    if (reqs[i].op == LS_IOOP_WRITE && reqs[i].res == (ssize_t)reqs[i].len)
      log_write(r->log, reqs[i].fd, reqs[i].buf, reqs[i].len, reqs[i].off);
  return rc;
}

static int record_open(ls_io *io, int dirfd, const char *name, int flags, int mode) {
  record_io *r = (record_io *)io;
  ls_iolog *l = r->log;
  struct stat st;
  int existed = fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
  int fd = r->inner->m->open(r->inner, dirfd, name, flags, mode);
  if (fd < 0) return fd;
  pthread_mutex_lock(&l->lock);
  int i = name_find(l, name);
  uint32_t file;
  if (i >= 0) {
    file = l->names[i].file;
  } else {
    file = l->nfiles++;
    rec_op *o = log_add(l, OP_CREATE);
    if (o) { o->file = file; o->name = strdup(name); }
    name_set(l, name, file);
    if (existed) {
      /* A file from before the recording: its name and bytes are durable. */
      uint8_t *buf = st.st_size > 0 ? malloc((size_t)st.st_size) : NULL;
      if (buf && r->inner->m->read(r->inner, fd, buf, (size_t)st.st_size, 0) == st.st_size &&
          (o = log_add(l, OP_WRITE)) != NULL) {
        o->file = file;
        o->len = (uint64_t)st.st_size;
        o->data = buf;
        buf = NULL;
      }
      free(buf);
      if ((o = log_add(l, OP_SYNC_BEGIN))) o->file = file;
      uint64_t b = l->nops - 1;
      if ((o = log_add(l, OP_SYNC_END))) { o->file = file; o->sync = (uint32_t)b; o->ok = 1; }
      if ((o = log_add(l, OP_DIRSYNC_BEGIN))) {
        b = l->nops - 1;
        if ((o = log_add(l, OP_DIRSYNC_END))) { o->sync = (uint32_t)b; o->ok = 1; }
      }
    }
  }
  if (!LS_GROW(l->fds, l->capfds, l->nfds + 1, 16)) l->fds[l->nfds++] = (fd_map){ fd, file };
  pthread_mutex_unlock(&l->lock);
  return fd;
}

static int record_close(ls_io *io, int fd) {
  record_io *r = (record_io *)io;
  ls_iolog *l = r->log;
  pthread_mutex_lock(&l->lock);
  for (uint32_t i = 0; i < l->nfds; i++)
    if (l->fds[i].fd == fd) { l->fds[i] = l->fds[--l->nfds]; break; }
  pthread_mutex_unlock(&l->lock);
  return r->inner->m->close(r->inner, fd);
}

static int record_rename(ls_io *io, int dirfd, const char *from, const char *to) {
  record_io *r = (record_io *)io;
  int rc = r->inner->m->rename(r->inner, dirfd, from, to);
  if (rc) return rc;
  ls_iolog *l = r->log;
  pthread_mutex_lock(&l->lock);
  int i = name_find(l, from);
  if (i >= 0) {
    uint32_t file = l->names[i].file;
    name_drop(l, i);
    name_set(l, to, file);
    rec_op *o = log_add(l, OP_RENAME);
    if (o) { o->name = strdup(from); o->name2 = strdup(to); }
  }
  pthread_mutex_unlock(&l->lock);
  return 0;
}

static int record_unlink(ls_io *io, int dirfd, const char *name) {
  record_io *r = (record_io *)io;
  int rc = r->inner->m->unlink(r->inner, dirfd, name);
  if (rc) return rc;
  ls_iolog *l = r->log;
  pthread_mutex_lock(&l->lock);
  int i = name_find(l, name);
  if (i >= 0) {
    name_drop(l, i);
    rec_op *o = log_add(l, OP_UNLINK);
    if (o) o->name = strdup(name);
  }
  pthread_mutex_unlock(&l->lock);
  return 0;
}

static int record_fallocate(ls_io *io, int fd, int mode, uint64_t off, uint64_t len) {
  record_io *r = (record_io *)io;
  int rc = r->inner->m->fallocate(r->inner, fd, mode, off, len);
  if (rc || !(mode & FALLOC_FL_PUNCH_HOLE)) return rc;
  ls_iolog *l = r->log;
  pthread_mutex_lock(&l->lock);
  int f = fd_file(l, fd);
  rec_op *o = f >= 0 ? log_add(l, OP_PUNCH) : NULL;
  if (o) { o->file = (uint32_t)f; o->off = off; o->len = len; }
  pthread_mutex_unlock(&l->lock);
  return 0;
}

static void record_destroy(ls_io *io) {
  record_io *r = (record_io *)io;
  ls_io_destroy(r->inner);
  ls_iolog_release(r->log);
  free(r);
}

static const struct ls_io_methods record_methods = {
  .name = "record",
  .read = record_read,
  .write = record_write,
  .sync = record_sync,
  .submit = record_submit,
  .open = record_open,
  .close = record_close,
  .rename = record_rename,
  .unlink = record_unlink,
  .fsync = record_fsync,
  .fallocate = record_fallocate,
  .destroy = record_destroy,
};

int ls_io_record_create(ls_io *inner, ls_io **out) {
  *out = NULL;
  record_io *r = calloc(1, sizeof *r);
  ls_iolog *l = calloc(1, sizeof *l);
  if (!r || !l) { free(r); free(l); return ls_err(LS_NOMEM, "record backend: out of memory"); }
  pthread_mutex_init(&l->lock, NULL);
  l->refs = 1;
  r->methods = record_methods;
  snprintf(r->name, sizeof r->name, "%s+record", inner->m->name);
  r->methods.name = r->name;
  r->base.m = &r->methods;
  r->inner = inner;
  r->log = l;
  *out = &r->base;
  return LS_OK;
}

ls_iolog *ls_io_record_log(ls_io *io) {
  if (!io || io->m->destroy != record_destroy) return NULL;
  ls_iolog *l = ((record_io *)io)->log;
  pthread_mutex_lock(&l->lock);
  l->refs++;
  pthread_mutex_unlock(&l->lock);
  return l;
}

/* ---- crash states ---------------------------------------------------------------- */

/* What a cut leaves undecided: the writes of rule 2 and the names
** operations of rule 3. */
typedef struct cut_plan {
  uint64_t cut;
  uint8_t *fate;                   /* per op before cut: 0 durable/whole, 1 undecided */
  uint64_t *undecided;             /* op indexes of undecided writes */
  uint32_t *radix;                 /* choices of each */
  uint64_t nund;
  uint64_t meta_from;              /* first names op not durable */
  uint64_t nmeta;                  /* names ops pending (rule 3) */
} cut_plan;

static void plan_free(cut_plan *p) {
  free(p->fate);
  free(p->undecided);
  free(p->radix);
}

static int is_names_op(int t) { return t == OP_CREATE || t == OP_RENAME || t == OP_UNLINK; }

/* The name file f has after applying names ops [0, upto) (NULL: none). */
static const char *name_at(ls_iolog *l, uint32_t f, uint64_t upto) {
  const char *name = NULL;
  for (uint64_t i = 0; i < upto; i++) {
    rec_op *o = &l->ops[i];
    if (o->type == OP_CREATE && o->file == f) name = o->name;
    else if (o->type == OP_CREATE && name && !strcmp(name, o->name)) name = NULL;   /* replaced */
    else if (o->type == OP_RENAME && name && !strcmp(name, o->name)) name = o->name2;
    else if (o->type == OP_RENAME && name && !strcmp(name, o->name2)) name = NULL;  /* renamed over */
    else if (o->type == OP_UNLINK && name && !strcmp(name, o->name)) name = NULL;
  }
  return name;
}

static int ignored_name(const char *name) {
  size_t n = name ? strlen(name) : 0;
  return !name || (n >= 4 && !strcmp(name + n - 4, ".tmp")) || (n >= 6 && !strcmp(name + n - 6, ".spare"));
}

/* Sector boundaries strictly inside a write: its torn variants. */
static uint32_t tears(const rec_op *o) {
  uint64_t first = ls_align_up(o->off + 1, LS_SECTOR), end = o->off + o->len;
  return first >= end ? 0 : (uint32_t)((end - 1 - first) / LS_SECTOR + 1);
}

static int make_plan(ls_iolog *l, uint64_t cut, cut_plan *p) {
  memset(p, 0, sizeof *p);
  if (cut > l->nops) cut = l->nops;
  p->cut = cut;
  p->fate = calloc(cut + 1, 1);
  p->undecided = malloc((cut + 1) * sizeof *p->undecided);
  p->radix = malloc((cut + 2) * sizeof *p->radix);
  if (!p->fate || !p->undecided || !p->radix) { plan_free(p); return ls_err(LS_NOMEM, "out of memory"); }
  /* Rule 1: per file, the latest start of a sync that ended before cut. */
  uint64_t *synced = calloc(l->nfiles + 1, sizeof *synced);
  if (!synced) { plan_free(p); return ls_err(LS_NOMEM, "out of memory"); }
  uint64_t dirsynced = 0;
  for (uint64_t i = 0; i < cut; i++) {
    rec_op *o = &l->ops[i];
    if (o->type == OP_SYNC_END && o->ok && o->sync + 1 > synced[o->file]) synced[o->file] = o->sync + 1;
    if (o->type == OP_DIRSYNC_END && o->ok && o->sync + 1 > dirsynced) dirsynced = o->sync + 1;
  }
  /* Rule 3: names ops after the last directory sync that counts. */
  p->meta_from = dirsynced;
  for (uint64_t i = dirsynced; i < cut; i++) p->nmeta += is_names_op(l->ops[i].type);
  for (uint64_t i = 0; i < cut; i++) {
    rec_op *o = &l->ops[i];
    if (o->type != OP_WRITE && o->type != OP_PUNCH) continue;
    if (synced[o->file] && i + 1 < synced[o->file]) continue;   /* durable: before a sync's start */
    /* Undecided, unless recovery never reads its file. */
    if (ignored_name(name_at(l, o->file, cut))) continue;
    p->fate[i] = 1;
    p->radix[p->nund] = 2 + tears(o);
    p->undecided[p->nund++] = i;
  }
  free(synced);
  return LS_OK;
}

uint64_t ls_iolog_variants(ls_iolog *l, uint64_t cut) {
  pthread_mutex_lock(&l->lock);
  cut_plan p;
  uint64_t v = 0;
  if (!make_plan(l, cut, &p)) {
    v = p.nmeta + 1;
    for (uint64_t i = 0; i < p.nund && v; i++) v = v > UINT64_MAX / p.radix[i] ? UINT64_MAX : v * p.radix[i];
    plan_free(&p);
  }
  pthread_mutex_unlock(&l->lock);
  return v;
}

/* A file's bytes being rebuilt. */
typedef struct img { uint8_t *p; uint64_t size, cap; } img;

static int img_write(img *m, uint64_t off, const uint8_t *data, uint64_t len) {
  uint64_t old = m->cap;
  if (LS_GROW(m->p, m->cap, off + len, 65536)) return -ENOMEM;
  if (m->cap > old) memset(m->p + old, 0, m->cap - old);
  if (data) memcpy(m->p + off, data, len);
  else memset(m->p + off, 0, len);
  if (off + len > m->size) m->size = off + len;
  return 0;
}

/* Rebuild the disk as the choices say (choice[j] for undecided write j,
** meta ops applied) and write it into dir. */
static int materialize(ls_iolog *l, const cut_plan *p, const uint32_t *choice, uint64_t meta, const char *dir,
                       uint64_t *hash) {
  img *files = calloc(l->nfiles + 1, sizeof *files);
  if (!files) return ls_err(LS_NOMEM, "out of memory");
  int rc = LS_OK;
  uint64_t j = 0;
  for (uint64_t i = 0; !rc && i < p->cut; i++) {
    rec_op *o = &l->ops[i];
    if (o->type != OP_WRITE && o->type != OP_PUNCH) continue;
    uint64_t len = o->len;
    if (p->fate[i]) {
      uint32_t c = choice[j++];
      if (c == 1) continue;                     /* never reached the disk */
      if (c >= 2) len = ls_align_up(o->off + 1, LS_SECTOR) + (uint64_t)(c - 2) * LS_SECTOR - o->off;
    }
    if (img_write(&files[o->file], o->off, o->type == OP_WRITE ? o->data : NULL, len))
      rc = ls_err(LS_NOMEM, "out of memory");
  }
  /* Names: durable ops, then the chosen prefix of the pending ones. */
  uint64_t upto = p->meta_from, taken = 0;
  while (upto < p->cut && taken < meta) {
    if (is_names_op(l->ops[upto].type)) taken++;
    upto++;
  }
  uint64_t h = 0;
  for (uint32_t f = 0; !rc && f < l->nfiles; f++) {
    const char *name = name_at(l, f, upto);
    if (!name) continue;
    /* The state's fingerprint: names and bytes, in file order. */
    uint32_t c = ls_crc32c(ls_crc32c(f, name, strlen(name)), files[f].p ? files[f].p : (const uint8_t *)"",
                           files[f].size);
    h = (h ^ c) * 0x100000001b3ull + files[f].size;
    if (!dir) continue;
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) { rc = ls_err_io(-errno, LS_CAUSE_OTHER, "materialize %s", path); break; }
    size_t done = 0;
    while (done < files[f].size) {
      ssize_t n = write(fd, files[f].p + done, files[f].size - done);
      if (n <= 0) { rc = ls_err_io(-errno, LS_CAUSE_WRITE, "materialize %s", path); break; }
      done += (size_t)n;
    }
    close(fd);
  }
  for (uint32_t f = 0; f < l->nfiles; f++) free(files[f].p);
  free(files);
  if (hash) *hash = h;
  return rc;
}

int ls_iolog_materialize(ls_iolog *l, uint64_t cut, uint64_t variant, uint64_t *rng, const char *dir,
                         uint64_t *hash) {
  pthread_mutex_lock(&l->lock);
  cut_plan p;
  int rc = make_plan(l, cut, &p);
  int planned = !rc;
  uint32_t *choice = rc ? NULL : calloc(p.nund + 1, sizeof *choice);
  if (!rc && !choice) rc = ls_err(LS_NOMEM, "out of memory");
  uint64_t meta = 0;
  if (!rc) {
    if (rng) {
      /* xorshift64*: each undecided write whole, lost or torn alike often. */
      for (uint64_t j = 0; j < p.nund; j++) {
        *rng ^= *rng >> 12; *rng ^= *rng << 25; *rng ^= *rng >> 27;
        uint64_t x = *rng * 2685821657736338717ull;
        uint32_t k = (uint32_t)(x % 3);
        choice[j] = k < 2 || p.radix[j] == 2 ? (uint32_t)(k % 2) : 2 + (uint32_t)((x >> 8) % (p.radix[j] - 2));
      }
      *rng ^= *rng >> 12; *rng ^= *rng << 25; *rng ^= *rng >> 27;
      meta = (*rng * 2685821657736338717ull >> 16) % (p.nmeta + 1);
    } else {
      uint64_t v = variant;
      for (uint64_t j = 0; j < p.nund; j++) { choice[j] = (uint32_t)(v % p.radix[j]); v /= p.radix[j]; }
      meta = p.nmeta - v % (p.nmeta + 1);      /* variant 0: all of them */
    }
    rc = materialize(l, &p, choice, meta, dir, hash);
  }
  free(choice);
  if (planned) plan_free(&p);
  pthread_mutex_unlock(&l->lock);
  return rc;
}
