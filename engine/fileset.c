/*
** fileset.c -- the data files an open finds (fileset.h): which exist, how
** many segments they hold, and what is missing or short against the
** manifest (FORMAT.md, "Data files").
*/
#include "fileset.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void file_damage(ls_engine *e, uint32_t n, uint64_t off, uint64_t end, const char *why) {
  ls_damage x = { .file = n, .offset = off, .length = end - off, .segment = SEG_NONE, .why = why };
  cat_damage_add(e, &x);
}

/* The data files: how many there are (0 .. nfiles-1, the manifest's
** count or more), which are missing, deleting leftover .tmp files of an
** interrupted format. */
static int list_files(ls_engine *e, ls_fileset *fs) {
  int fd = openat(e->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ls_err_io(-errno, LS_CAUSE_OTHER, "open data directory %s", e->path);
  DIR *d = fdopendir(fd);
  if (!d) { close(fd); return ls_err_io(-errno, LS_CAUSE_READ, "read data directory %s", e->path); }
  uint8_t *have = NULL;
  uint64_t cap = 0;
  uint32_t n = e->man.files;
  int rc = LS_OK;
  if (n > e->sm.max_files) {
    closedir(d);
    return ls_corrupt("data directory %s: the manifest counts %u data files, more than disk_size allows (%u)",
                      e->path, n, e->sm.max_files);
  }
  struct dirent *de;
  while (!rc && (de = readdir(d)) != NULL) {
    unsigned i;
    char tail[8];
    if (sscanf(de->d_name, "data-%6u.%7s", &i, tail) != 2 || strlen(de->d_name) < 13) continue;
    if (!strcmp(tail, "tmp")) {
      e->io->m->unlink(e->io, e->dirfd, de->d_name);
    } else if (!strcmp(tail, "ls") && strlen(de->d_name) == 14) {
      if (i >= e->sm.max_files) {
        rc = ls_err(LS_INVALID, "data directory %s holds data file %s but disk_size allows %u files", e->path,
                    de->d_name, e->sm.max_files);
        break;
      }
      uint64_t old = cap;
      if (LS_GROW(have, cap, (uint64_t)i + 1, 64)) { rc = ls_err(LS_NOMEM, "recovery: out of memory"); break; }
      memset(have + old, 0, cap - old);
      have[i] = 1;
      if (i + 1 > n) n = i + 1;
    }
  }
  closedir(d);
  if (!rc) {
    fs->nfiles = n;
    fs->missing = calloc(n + 1, 1);
    fs->fsize = calloc(n + 1, sizeof *fs->fsize);
    if (!fs->missing || !fs->fsize) rc = ls_err(LS_NOMEM, "recovery: out of memory");
  }
  for (uint32_t i = 0; !rc && i < n; i++)
    if (i >= cap || !have[i]) fs->missing[i] = 1;
  free(have);
  return rc;
}

/* The sizes of the files present and the segments they hold: the
** manifest's count, or, with files beyond it, the whole segments of the
** last one (every file before it is full: a file is created only after
** the one before it was filled and counted so). */
static int file_sizes(ls_engine *e, ls_fileset *fs) {
  for (uint32_t i = 0; i < fs->nfiles; i++) {
    if (fs->missing[i]) continue;
    char name[32];
    struct stat st;
    seg_file_name(i, name);
    if (fstatat(e->dirfd, name, &st, 0)) return ls_err_io(-errno, LS_CAUSE_OTHER, "stat data file %s", name);
    fs->fsize[i] = (uint64_t)st.st_size;
  }
  uint32_t spf = e->sm.segs_per_file;
  if (fs->nfiles <= e->man.files) {
    fs->nsegs = ls_manifest_segments(&e->man);
  } else {
    uint64_t tail = fs->fsize[fs->nfiles - 1] / e->seg_size;
    fs->nsegs = (fs->nfiles - 1) * spf + (uint32_t)(tail < spf ? tail : spf);
    /* An uncounted last file without a whole segment is left to be made
    ** again. */
    fs->nfiles = seg_files_for(&e->sm, fs->nsegs);
  }
  return LS_OK;
}

/* Missing files and sizes against what the manifest says (fs_find):
** a missing or short file is damage (its missing bytes), one longer than
** file_size too (bytes no segment holds). */
int fs_check(ls_engine *e, ls_fileset *fs) {
  for (uint32_t i = 0; i < fs->nfiles; i++) {
    uint64_t want = seg_file_len(&e->sm, i, fs->nsegs);
    if (fs->missing[i])
      file_damage(e, i, 0, want, i < e->man.files ? "the data file is missing"
                                                  : "the data file is missing (among files the manifest does not count)");
    else if (fs->fsize[i] < want) file_damage(e, i, fs->fsize[i], want, "the data file is short");
    else if (fs->fsize[i] > e->file_size) file_damage(e, i, e->file_size, fs->fsize[i], "the data file is longer than file_size");
  }
  uint32_t nseg = fs->nsegs;
  fs->sf = calloc(nseg + 1, 1);
  if (!fs->sf) return ls_err(LS_NOMEM, "recovery: out of memory");
  for (uint32_t s = 0; s < nseg; s++) {
    uint32_t f = s / e->sm.segs_per_file;
    if (fs->missing[f] || seg_base(&e->sm, s) >= fs->fsize[f]) fs->sf[s] |= FS_LOST;
  }
  return LS_OK;
}

/* The manifest after this open: the files counted, and (writable modes)
** the damaged ranges accepted -- every one found, after a salvage; else
** those accepted before and found again.  Written only if it changed. */
int fs_record(ls_engine *e, const ls_fileset *fs, int salvage) {
  ls_mdamage *dm = NULL;
  uint64_t cap = 0;
  uint32_t n = 0;
  int rc = LS_OK;
  pthread_mutex_lock(&e->problems_lock);
  for (uint32_t i = 0; !rc && i < e->ndamage; i++) {
    ls_damage *x = &e->damage[i];
    if (x->segment == SEG_NONE || (!salvage && !x->accepted)) continue;
    if (LS_GROW(dm, cap, n + 1, 16)) { rc = ls_err(LS_NOMEM, "recovery: out of memory"); break; }
    dm[n++] = (ls_mdamage){ x->segment, x->seg_seq, (uint32_t)(x->offset - seg_base(&e->sm, x->segment)),
                            (uint32_t)x->length };
  }
  pthread_mutex_unlock(&e->problems_lock);
  int same = n == e->man.ndamaged;
  for (uint32_t i = 0; same && i < n; i++) {
    const ls_mdamage *x = &dm[i], *y = &e->man.damaged[i];
    same = x->segment == y->segment && x->seg_seq == y->seg_seq && x->offset == y->offset && x->length == y->length;
  }
  if (!rc && (!same || ls_manifest_segments(&e->man) != fs->nsegs)) rc = cat_set_files(e, fs->nsegs, dm, n);
  free(dm);
  return rc;
}

/* Salvage: make the missing data files again and fill short ones up to
** their length (zeros, a free marker at each segment start); their
** segments are free from now on. */
int fs_repair(ls_engine *e, ls_fileset *fs) {
  uint32_t spf = e->sm.segs_per_file;
  for (uint32_t f = 0; f < fs->nfiles; f++) {
    int rc = LS_OK;
    uint64_t want = seg_file_len(&e->sm, f, fs->nsegs);
    if (fs->missing[f]) {
      rc = seg_recreate_file(&e->sm, f);
      if (!rc) fs->missing[f] = 0;
    } else if (fs->fsize[f] < want) {
      int fd = e->sm.fds[f];
      int r = seg_format_range(&e->sm, fd, fs->fsize[f], want);
      if (!r) r = seg_sync(&e->sm, fd, 0);
      if (r) rc = ls_err_io(r, LS_CAUSE_WRITE, "salvage: fill data file %u up to its length", f);
    } else if (fs->fsize[f] > e->file_size) {
      if (ftruncate(e->sm.fds[f], (off_t)e->file_size) || seg_sync(&e->sm, e->sm.fds[f], 0))
        rc = ls_err_io(-errno, LS_CAUSE_WRITE, "salvage: cut data file %u to file_size", f);
    }
    if (rc) return rc;
    for (uint32_t s = f * spf; s < (f + 1) * spf && s < fs->nsegs; s++) fs->sf[s] &= (uint8_t)~FS_LOST;
  }
  return LS_OK;
}

int fs_find(ls_engine *e, ls_fileset *fs) {
  memset(fs, 0, sizeof *fs);
  int rc = list_files(e, fs);
  return rc ? rc : file_sizes(e, fs);
}

void fs_free(ls_fileset *fs) {
  free(fs->missing);
  free(fs->fsize);
  free(fs->sf);
  memset(fs, 0, sizeof *fs);
}
