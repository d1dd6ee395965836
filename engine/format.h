/*
** format.h -- the on-disk format: constants and the encoders / decoders of
** buffer headers and records.  engine/FORMAT.md describes every byte; the
** two must change together (and LS_FORMAT_VERSION with them).  Decoders
** treat disk bytes as untrusted: every length is checked against what
** remains before it is used.
**
** Layer: the bottom (engine/README.md).
*/
#ifndef LS_FORMAT_H
#define LS_FORMAT_H

#include <stdint.h>
#include <stddef.h>

#define LS_FORMAT_VERSION   2
/* The manifest's version when it lists key-ordered tables (FORMAT.md,
** "Versions"): builds that do not know them refuse it with LS_FORMAT;
** everything else, buffers included, stays version 2. */
#define LS_MANIFEST_VERSION_KEY 3
#define LS_BLOCK            4096u          /* buffer alignment */
#define LS_SECTOR           512u           /* unit of torn writes */
#define LS_BUF_MAGIC        0x3142534cu    /* "LSB1" */
#define LS_BUF_HDR          48u            /* buffer header bytes */
#define LS_REC_HDR          24u            /* record header bytes */
#define LS_REC_ALIGN        8u

/* Buffer kinds (one per segment: every buffer of a segment has the same). */
#define LS_KIND_MIXED  1   /* user writes of all tables (the active segment) */
#define LS_KIND_GROUP  2   /* records of one table's compaction group */
#define LS_KIND_FREE   3   /* marker: segment freed; no records follow */

/* Buffer flags. */
#define LS_BF_SETTLED  0x01  /* every CONT record in this buffer is committed
                             ** (set by rewriting the header after commit) */
#define LS_BF_SEALED   0x02  /* (first buffer only) the segment's data ends at
                             ** seg_end and was durable when this was set */
#define LS_BF_MASK     0x03

/* Record types. */
#define LS_REC_PUT     1
#define LS_REC_DELETE  2   /* tombstone: key, no value */
#define LS_REC_COMMIT  3   /* commit of a batch written in several buffers */
#define LS_REC_ABORT   4   /* a prepared batch that must never count */
#define LS_REC_PREPARE 5   /* a batch whose outcome the host decides */

/* Record flags. */
#define LS_RF_END      0x01  /* last record of a batch held in one buffer */
#define LS_RF_CONT     0x02  /* record of a batch committed by a COMMIT record */
#define LS_RF_MASK     0x03

/* Decoded buffer header. */
typedef struct ls_bufhdr {
  uint32_t kind;
  uint32_t flags;
  uint64_t seg_seq;       /* sequence of the segment incarnation */
  uint64_t max_seq;       /* highest write sequence assigned when written */
  uint32_t data_size;     /* bytes of records after the header (multiple of 8) */
  uint32_t nrecords;      /* records in data_size */
  uint32_t table;         /* owning table (group segments), else 0 */
  uint32_t group;         /* compaction group (group segments), else 0 */
  uint32_t seg_end;       /* with LS_BF_SEALED: end of the segment's data */
} ls_bufhdr;

/* Decoded record header.  key/val point into the buffer that was decoded. */
typedef struct ls_rec {
  uint32_t type;
  uint32_t flags;
  uint32_t table;
  uint32_t key_len;
  uint32_t val_len;
  uint64_t seq;
  uint32_t size;          /* bytes on disk including header and padding */
  const uint8_t *key;
  const uint8_t *val;
} ls_rec;

/* Bytes a record takes on disk. */
static inline uint32_t ls_rec_size(uint32_t key_len, uint32_t val_len) {
  return (LS_REC_HDR + key_len + val_len + (LS_REC_ALIGN - 1)) & ~(LS_REC_ALIGN - 1);
}

/* CRC seed of every record of a segment incarnation: a record copied from
** another incarnation of the same slot fails its check. */
uint32_t ls_rec_seed(uint64_t seg_seq);

/* Encode a buffer header (LS_BUF_HDR bytes, CRC included) into p. */
void ls_bufhdr_encode(uint8_t *p, const ls_bufhdr *h);

/* Decode and validate a buffer header: magic, version, kind, CRC.  Returns
** 1 if valid, 0 if not (zeros, garbage, torn or foreign bytes). */
int ls_bufhdr_decode(const uint8_t *p, ls_bufhdr *h);

/* Write a record (header, key, value, padding) at p, which must have room
** for ls_rec_size(key_len, val_len) bytes.  The CRC is left zero: records
** are encoded once into a transaction and sealed when their segment is
** known (ls_rec_seal). */
void ls_rec_encode(uint8_t *p, uint32_t type, uint32_t table,
                   const void *key, uint32_t key_len,
                   const void *val, uint32_t val_len);

/* Set a record's sequence and flags and compute its CRC with the given
** segment seed.  p is the encoded record. */
void ls_rec_seal(uint8_t *p, uint64_t seq, uint32_t flags, uint32_t seed);

/* Read fields of an encoded record without checks (trusted memory). */
static inline uint32_t ls_rec_peek_size(const uint8_t *p) {
  uint32_t k = (uint32_t)p[6] | ((uint32_t)p[7] << 8);
  uint32_t v = (uint32_t)p[8] | ((uint32_t)p[9] << 8) | ((uint32_t)p[10] << 16) | ((uint32_t)p[11] << 24);
  return ls_rec_size(k, v);
}

/* Decode and validate the record at p with at most avail bytes available:
** type, flags, lengths within avail, CRC with seed.  Returns 1 if valid
** (r filled, pointers into p), 0 if not. */
int ls_rec_decode(const uint8_t *p, size_t avail, uint32_t seed, ls_rec *r);

/* Largest record that fits one segment. */
static inline uint32_t ls_max_record(uint32_t segment_size) { return segment_size - LS_BUF_HDR; }

/* ---- the segment walker ------------------------------------------------
**
** One walker reads every segment image: recovery at open, the cleaner when
** it reads a sealed segment back, the scrub of ls_check, the tools and the
** fuzz target.  It walks the buffers of one incarnation (seg_seq, kind)
** from offset 0 at 4 KiB boundaries, and the records of each buffer within
** its data_size, up to limit: the segment's seg_end when sealed, the bytes
** known written at run time, else the segment size.  It does not decide
** what a bad spot means; it reports it as a gap and goes on:
**
**   LS_WALK_BUFFER  a valid header of the incarnation at w->buf_off (w->hdr)
**   LS_WALK_RECORD  a record that decodes (r, its offset in *off; the flags
**                   of its buffer in w->hdr.flags)
**   LS_WALK_GAP     bytes [w->gap_start, w->gap_end) hold nothing readable
**                   where the incarnation's data could be (w->why says
**                   what failed first).  The walk resumes at the next 4 KiB
**                   boundary that holds a valid header of the incarnation
**                   (gap_end), or the gap runs to limit: then w->gap_tail
**                   is 1 and the walk ends.
**   LS_WALK_END     nothing more before limit.
**
** An unsealed segment's data ends with a gap to its limit (zeros, or bytes
** of an older incarnation, or a torn last write); whether a gap is damage
** is the caller's decision (FORMAT.md, "Recovery").  A buffer whose header
** claims more than limit is cut there: its records are walked up to limit
** and its record count is not checked; one that claims more than the
** segment holds is a gap no crash can leave (gap_certain).  In durable
** data (durable set, or a later buffer of the incarnation follows) a bad
** record whose buffer holds a good record further on is a gap up to it
** (gap_certain), and the walk goes on in the buffer. */
enum { LS_WALK_END = 0, LS_WALK_RECORD = 1, LS_WALK_BUFFER = 2, LS_WALK_GAP = 3 };

typedef struct ls_walk {
  const uint8_t *img;
  uint32_t size;                   /* the segment size */
  uint32_t limit;                  /* the walk ends here (<= size); bytes of
                                   ** img past limit are never read */
  uint64_t seg_seq;
  uint32_t kind, seed;
  uint32_t next;                   /* offset of the next buffer header */
  uint32_t pos, end;               /* records of the current buffer */
  uint32_t nrec;                   /* records seen in it */
  int in_buf, cut, done;
  int skipped;                     /* a bad record of it was passed over */
  int durable;                     /* set by the caller: the data up to limit
                                   ** was durable (a sealed segment, or one
                                   ** the engine wrote and synced), so a bad
                                   ** record is damage and the walk goes on
                                   ** at the next record of its buffer that
                                   ** decodes */
  ls_bufhdr hdr;                   /* the current buffer's header */
  uint32_t buf_off;                /* its offset */
  uint32_t gap_start, gap_end;     /* LS_WALK_GAP */
  int gap_tail;                    /* no buffer of the incarnation follows */
  int gap_certain;                 /* no crash can leave this gap (the
                                   ** records of a valid buffer disagree
                                   ** with its header) */
  const char *why;
} ls_walk;

void ls_walk_init(ls_walk *w, const uint8_t *img, uint32_t size, uint32_t limit, uint64_t seg_seq,
                  uint32_t kind);
int ls_walk_next(ls_walk *w, ls_rec *r, uint32_t *off);

/* How a segment image begins (FORMAT.md, "Recovery").  state:
**   LS_HEAD_FREE     a free marker at offset 0: no incarnation
**   LS_HEAD_DATA     a valid header of kind mixed or group at offset 0:
**                    seg_seq, kind and (if sealed) seg_end hold
**   LS_HEAD_DAMAGED  offset 0 holds no valid header, which no write of the
**                    engine leaves behind; if a later 4 KiB boundary holds
**                    a valid header, seg_seq and kind are those of the
**                    youngest such incarnation (the walk resynchronises on
**                    it), else seg_seq is 0
** limit is seg_end for a sealed segment, else size.  hdr is the header at
** offset 0 (DATA, FREE). */
enum { LS_HEAD_FREE = 0, LS_HEAD_DATA = 1, LS_HEAD_DAMAGED = 2 };
typedef struct ls_seghead {
  int state;
  uint64_t seg_seq;
  uint32_t kind;
  uint32_t limit;
  int sealed;
  ls_bufhdr hdr;
} ls_seghead;

void ls_seg_head(const uint8_t *img, uint32_t size, ls_seghead *out);

/* A free marker (kind free, seg_seq as given, 0 for "no incarnation") in
** the LS_BUF_HDR bytes at p. */
void ls_free_marker(uint8_t *p, uint64_t seg_seq, uint64_t max_seq);

#endif /* LS_FORMAT_H */
