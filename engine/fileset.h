/*
** fileset.h -- the data files an open finds, for recovery: which exist (the
** manifest's count, or more after a crash right after a file was made),
** the segments they hold (segment.h, "Growth"), the damage of a missing,
** short or overlong file, the salvage that makes them whole again, and the
** manifest's record of them.
**
** Layer: catalog -> fileset -> recovery (engine/README.md).  Calls:
** catalog, segment, manifest.
*/
#ifndef LS_FILESET_H
#define LS_FILESET_H

#include "catalog.h"

#define FS_LOST 0x01               /* sf: the segment is not on disk */

typedef struct ls_fileset {
  uint32_t nfiles;                 /* data files 0 .. nfiles-1 (some missing) */
  uint32_t nsegs;                  /* segments they hold */
  uint8_t *missing;                /* per file: it does not exist */
  uint64_t *fsize;                 /* per file: its size */
  uint8_t *sf;                     /* per segment flags (fs_check): FS_LOST;
                                   ** recovery adds its own above it */
} ls_fileset;

/* List the data files (deleting leftover .tmp files of an interrupted
** format) and work out the segments they hold.  LS_OK or an error. */
int fs_find(ls_engine *e, ls_fileset *fs);
/* After seg_open_files: report missing, short and overlong files as damage
** and mark the segments not on disk (fs->sf).  LS_OK or LS_NOMEM. */
int fs_check(ls_engine *e, ls_fileset *fs);
/* Salvage: make missing files again, fill short ones up to their length,
** cut overlong ones; their segments are on disk (and free) from now on. */
int fs_repair(ls_engine *e, ls_fileset *fs);
/* The manifest after this open: the segments counted, and the damaged
** ranges accepted (all found, after a salvage; else those accepted before
** and found again).  Written only if it changed. */
int fs_record(ls_engine *e, const ls_fileset *fs, int salvage);
void fs_free(ls_fileset *fs);

#endif
