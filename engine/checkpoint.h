/*
** checkpoint.h -- index checkpoints (FORMAT.md, "Checkpoint"): at a clean
** close the indexes and the segment accounting are written to the file
** CHECKPOINT; the next open loads them instead of scanning every segment,
** once it has checked that the file is whole and that the data files are
** exactly as it describes them.  The file is removed as soon as an open
** has read it, so it never describes data written after it.  A checkpoint
** only makes the open faster: one that fails any check is ignored and
** recovery scans everything.
**
** Layer: beside recovery, which calls it; engine.c writes it at close.
** Calls: catalog, segment, format, io, index.
*/
#ifndef LS_CHECKPOINT_H
#define LS_CHECKPOINT_H

#include "catalog.h"

#define CKPT_NAME "CHECKPOINT"
#define CKPT_TMP  "CHECKPOINT.tmp"

/* At a clean close (the writer and the cleaner stopped): write the
** checkpoint if the engine's state allows one (nothing failed, no damage
** known, every segment in use sealed and free of dependencies).  Returns
** LS_OK (also when it chose not to write one) or an I/O error; a failed
** write leaves no CHECKPOINT behind. */
int ckpt_write(ls_engine *e);

/* At open, before scanning: read and remove CHECKPOINT.  If it is valid for
** the nseg segments of the data files (recovery found them all, whole, as
** the manifest counts them) and matches every segment's header on disk,
** build the indexes, the segment states and the sequences from it, fill
** mixed / empties as recover() does, and set *loaded.  Otherwise leave the
** engine untouched with *loaded 0.  Returns LS_OK, or an error when the
** file can not be removed (the open fails: a stale checkpoint must never
** stay). */
int ckpt_load(ls_engine *e, uint32_t nseg, seg_ids *mixed, seg_ids *empties, int *loaded);

/* A writable open that does not use the checkpoint removes it (K3).
** LS_OK or the error of the removal. */
int ckpt_discard(ls_engine *e);

/* The parsed file (pointers into the caller's bytes). */
typedef struct ckpt_view {
  uint32_t seg_size, nfiles, nsegs, ntables;
  uint64_t file_size, next_seq, next_seg_seq, nentries;
  uint64_t segments;               /* segments in the data files */
  const uint8_t *segs;             /* nsegs records of CKPT_SEG bytes */
  const uint8_t *tables;           /* ntables, each a CKPT_TAB header and its entries */
} ckpt_view;

/* Check bytes as a checkpoint for segments of seg_size bytes, nseg in all
** (everything that can be checked without the engine: checksum, lengths,
** counts, every location inside a segment the file lists in use).  1 and
** *v if valid, else 0.  Disk bytes are untrusted: the fuzz target calls it. */
int ckpt_parse(const uint8_t *buf, size_t len, uint32_t seg_size, uint32_t nseg, ckpt_view *v);

#endif
