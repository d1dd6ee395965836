/*
** manifest.h -- the data directory's manifest: format version, sizes, the
** table catalog and per-table truncation points.
**
** The manifest is a small text file, MANIFEST, replaced atomically: the new
** contents are written to MANIFEST.tmp, fsynced, renamed over MANIFEST, and
** the directory is fsynced.  A reader accepts it only if its last line holds
** the CRC32C of everything before it.  See FORMAT.md for the grammar.
*/
#ifndef LS_MANIFEST_H
#define LS_MANIFEST_H

#include <stdint.h>
#include "io.h"

#define LS_NAME_MAX 127

typedef struct ls_mtable {
  uint32_t id;                     /* stable id, never reused */
  uint32_t groups;                 /* compaction groups (token ranges) */
  uint64_t trunc_seq;              /* records with a lower sequence are gone */
  char name[LS_NAME_MAX + 1];      /* label for stats and tools */
  uint32_t order;                  /* KO_TOKEN or KO_KEY (keyorder.h) */
} ls_mtable;

/* A damaged range the user accepted (opened with on_damage=salvage): the
** same damage found again at a later open is not new. */
typedef struct ls_mdamage {
  uint32_t segment;
  uint64_t seg_seq;                /* incarnation (0: none readable) */
  uint32_t offset, length;         /* within the segment */
} ls_mdamage;

typedef struct ls_manifest {
  uint32_t version;                /* LS_FORMAT_VERSION */
  uint64_t segment_size;
  uint64_t file_size;
  uint64_t disk_size;              /* 0 = unlimited */
  uint32_t next_table;             /* next table id to hand out */
  uint64_t seq_floor;              /* write sequences start above this */
  uint64_t seg_seq_floor;          /* segment sequences start above this */
  uint32_t files;                  /* data files 0 .. files-1 exist */
  uint32_t ntables;
  ls_mtable *tables;               /* sorted by id */
  uint32_t ndamaged;
  ls_mdamage *damaged;             /* accepted damage, sorted */
  uint64_t last_file_size;         /* bytes of file files-1 (0: file_size) */
} ls_manifest;

/* Read dir's MANIFEST into m.  LS_NOTFOUND if there is none; LS_CORRUPT or
** LS_FORMAT (with a message) if it can not be used. */
int ls_manifest_read(ls_io *io, int dirfd, ls_manifest *m);

/* Replace dir's MANIFEST by m, durably.  LS_OK or an I/O error. */
int ls_manifest_write(ls_io *io, int dirfd, const ls_manifest *m);

/* Parse / format the text (also used by tests and tool/logstor). */
int ls_manifest_parse(const char *text, size_t len, ls_manifest *m);
char *ls_manifest_format(const ls_manifest *m, size_t *len);

void ls_manifest_free(ls_manifest *m);
/* Deep copy (tables and damage arrays).  LS_OK or LS_NOMEM. */
int ls_manifest_copy(ls_manifest *dst, const ls_manifest *src);
ls_mtable *ls_manifest_table(const ls_manifest *m, uint32_t id);

/* Segments the data files hold, and setting files and last_file_size for
** nsegs segments. */
uint32_t ls_manifest_segments(const ls_manifest *m);
void ls_manifest_set_segments(ls_manifest *m, uint32_t nsegs);

#endif
