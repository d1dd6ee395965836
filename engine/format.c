/*
** format.c -- encoding and validation of buffer headers and records, and
** the segment walker.  The bytes are described in FORMAT.md, only there.
*/
#include "format.h"
#include "ls_int.h"

uint32_t ls_rec_seed(uint64_t seg_seq) {
  uint8_t b[8];
  ls_put64(b, seg_seq);
  return ls_crc32c(0, b, 8);
}

void ls_bufhdr_encode(uint8_t *p, const ls_bufhdr *h) {
  ls_put32(p + 0, LS_BUF_MAGIC);
  ls_put16(p + 4, LS_FORMAT_VERSION);
  p[6] = (uint8_t)h->kind;
  p[7] = (uint8_t)h->flags;
  ls_put64(p + 8, h->seg_seq);
  ls_put64(p + 16, h->max_seq);
  ls_put32(p + 24, h->data_size);
  ls_put32(p + 28, h->nrecords);
  ls_put32(p + 32, h->table);
  ls_put32(p + 36, h->group);
  ls_put32(p + 40, (h->flags & LS_BF_SEALED) ? h->seg_end : 0);
  ls_put32(p + 44, ls_crc32c(0, p, 44));
}

int ls_bufhdr_decode(const uint8_t *p, ls_bufhdr *h) {
  if (ls_get32(p) != LS_BUF_MAGIC) return 0;
  if (ls_get16(p + 4) != LS_FORMAT_VERSION) return 0;
  if (ls_get32(p + 44) != ls_crc32c(0, p, 44)) return 0;
  h->kind = p[6];
  h->flags = p[7];
  if (h->kind < LS_KIND_MIXED || h->kind > LS_KIND_FREE || (h->flags & ~LS_BF_MASK)) return 0;
  h->seg_seq = ls_get64(p + 8);
  h->max_seq = ls_get64(p + 16);
  h->data_size = ls_get32(p + 24);
  h->nrecords = ls_get32(p + 28);
  h->table = ls_get32(p + 32);
  h->group = ls_get32(p + 36);
  h->seg_end = ls_get32(p + 40);
  /* seg_seq 0 only for a free marker of no incarnation (formatted). */
  if ((h->seg_seq == 0 && h->kind != LS_KIND_FREE) || (h->data_size & (LS_REC_ALIGN - 1)) != 0) return 0;
  if (h->flags & LS_BF_SEALED) {
    if (h->seg_end < LS_BUF_HDR || (h->seg_end & (LS_REC_ALIGN - 1)) != 0) return 0;
  } else if (h->seg_end != 0) {
    return 0;
  }
  if (h->kind == LS_KIND_FREE && (h->data_size || h->nrecords || h->flags || h->table || h->group)) return 0;
  return 1;
}

void ls_rec_encode(uint8_t *p, uint32_t type, uint32_t table,
                   const void *key, uint32_t key_len,
                   const void *val, uint32_t val_len) {
  uint32_t size = ls_rec_size(key_len, val_len);
  ls_put32(p, 0);
  p[4] = (uint8_t)type;
  p[5] = 0;
  ls_put16(p + 6, (uint16_t)key_len);
  ls_put32(p + 8, val_len);
  ls_put32(p + 12, table);
  ls_put64(p + 16, 0);
  if (key_len) memcpy(p + LS_REC_HDR, key, key_len);
  if (val_len) memcpy(p + LS_REC_HDR + key_len, val, val_len);
  uint32_t used = LS_REC_HDR + key_len + val_len;
  if (size > used) memset(p + used, 0, size - used);
}

void ls_rec_seal(uint8_t *p, uint64_t seq, uint32_t flags, uint32_t seed) {
  p[5] = (uint8_t)flags;
  ls_put64(p + 16, seq);
  uint32_t key_len = ls_get16(p + 6), val_len = ls_get32(p + 8);
  ls_put32(p, ls_crc32c(seed, p + 4, LS_REC_HDR - 4 + key_len + val_len));
}

int ls_rec_decode(const uint8_t *p, size_t avail, uint32_t seed, ls_rec *r) {
  if (avail < LS_REC_HDR) return 0;
  if (avail > (1u << 30)) avail = 1u << 30;       /* lengths below stay 32-bit safe */
  r->type = p[4];
  r->flags = p[5];
  r->key_len = ls_get16(p + 6);
  r->val_len = ls_get32(p + 8);
  r->table = ls_get32(p + 12);
  r->seq = ls_get64(p + 16);
  if (r->type < LS_REC_PUT || r->type > LS_REC_PREPARE) return 0;
  if (r->flags & ~LS_RF_MASK) return 0;
  /* Lengths are untrusted: compare against what remains, never add first. */
  if (r->val_len > avail - LS_REC_HDR || r->key_len > avail - LS_REC_HDR - r->val_len) return 0;
  r->size = ls_rec_size(r->key_len, r->val_len);
  if (r->size > avail) return 0;
  if (r->seq == 0) return 0;
  if (ls_get32(p) != ls_crc32c(seed, p + 4, LS_REC_HDR - 4 + r->key_len + r->val_len)) return 0;
  /* Structural rules checked after the CRC (a good CRC with bad structure
  ** is a bug or a hostile file, still rejected). */
  if (r->type == LS_REC_DELETE && r->val_len != 0) return 0;
  int control = r->type == LS_REC_COMMIT || r->type == LS_REC_ABORT || r->type == LS_REC_PREPARE;
  if (r->type == LS_REC_COMMIT && r->val_len != 8 && r->val_len != 16) return 0;
  if ((r->type == LS_REC_ABORT || r->type == LS_REC_PREPARE) && r->val_len != 16) return 0;
  if (control && (r->key_len != 0 || r->table != 0)) return 0;
  if (!control && r->table == 0) return 0;
  r->key = p + LS_REC_HDR;
  r->val = p + LS_REC_HDR + r->key_len;
  return 1;
}

void ls_free_marker(uint8_t *p, uint64_t seg_seq, uint64_t max_seq) {
  ls_bufhdr h = { .kind = LS_KIND_FREE, .seg_seq = seg_seq, .max_seq = max_seq };
  ls_bufhdr_encode(p, &h);
}

/* ---- the segment walker (format.h) --------------------------------------- */

void ls_walk_init(ls_walk *w, const uint8_t *img, uint32_t size, uint32_t limit, uint64_t seg_seq,
                  uint32_t kind) {
  memset(w, 0, sizeof *w);
  w->img = img;
  w->size = size;
  w->limit = limit < size ? limit : size;
  w->seg_seq = seg_seq;
  w->kind = kind;
  w->seed = ls_rec_seed(seg_seq);
}

/* Is there a valid header of w's incarnation at o? */
static int walk_header_at(const ls_walk *w, uint32_t o, ls_bufhdr *h) {
  return o < w->limit && w->limit - o >= LS_BUF_HDR && ls_bufhdr_decode(w->img + o, h) &&
         h->seg_seq == w->seg_seq && h->kind == w->kind;
}

/* The first 4 KiB boundary at or after from that holds a valid header of
** the incarnation, or limit (or more) if none. */
static uint32_t walk_next_header(const ls_walk *w, uint32_t from) {
  ls_bufhdr h;
  uint32_t o = (uint32_t)ls_align_up(from, LS_BLOCK);
  while (o < w->limit && !walk_header_at(w, o, &h)) o += LS_BLOCK;
  return o;
}

/* A gap from start: the walk resumes at the next header of the
** incarnation at or after from. */
static int walk_gap(ls_walk *w, uint32_t start, uint32_t from, const char *why, int certain) {
  uint32_t o = walk_next_header(w, from);
  w->in_buf = 0;
  w->gap_start = start;
  w->gap_certain = certain;
  w->why = why;
  if (o < w->limit) {
    w->gap_end = o;
    w->gap_tail = 0;
    w->next = o;
  } else {
    w->gap_end = w->limit;
    w->gap_tail = 1;
    w->done = 1;
  }
  return LS_WALK_GAP;
}

/* The data is durable and the record at start bad: the first offset
** after it (8-aligned, within the buffer) where a record decodes -- its
** own length first, if that can be believed -- or 0. */
static uint32_t walk_record_resync(ls_walk *w, uint32_t start) {
  ls_rec r;
  uint32_t avail = w->end - start;
  if (avail >= LS_REC_HDR) {
    uint32_t size = ls_rec_peek_size(w->img + start);
    if (size >= LS_REC_HDR && size < avail && ls_rec_decode(w->img + start + size, avail - size, w->seed, &r))
      return start + size;
  }
  for (uint32_t o = start + LS_REC_ALIGN; o < w->end && w->end - o >= LS_REC_HDR; o += LS_REC_ALIGN)
    if (ls_rec_decode(w->img + o, w->end - o, w->seed, &r)) return o;
  return 0;
}

int ls_walk_next(ls_walk *w, ls_rec *r, uint32_t *off) {
  if (w->done) return LS_WALK_END;
  if (w->in_buf) {
    if (w->pos >= w->end) {
      w->in_buf = 0;
      if (!w->cut && !w->skipped && w->nrec != w->hdr.nrecords) {
        /* The records decode but are not the ones the header counts. */
        uint32_t start = w->buf_off;
        return walk_gap(w, start, w->next, "the records do not match their buffer header", 1);
      }
    } else {
      if (!ls_rec_decode(w->img + w->pos, w->end - w->pos, w->seed, r)) {
        uint32_t start = w->pos, at = 0;
        /* Durable data (the caller says so, or a later buffer of the
        ** incarnation follows, which is written only after this one was
        ** synced): the bad record is damage, not a torn write. */
        if (w->durable || walk_next_header(w, w->next > start ? w->next : start) < w->limit)
          at = walk_record_resync(w, start);
        if (at) {
          /* Damage, no torn write: the buffer's later records are kept. */
          w->gap_start = start;
          w->gap_end = at;
          w->gap_tail = 0;
          w->gap_certain = 1;
          w->why = "a record fails its check";
          w->pos = at;
          w->skipped = 1;
          return LS_WALK_GAP;
        }
        /* Another buffer can start no earlier than this one's end. */
        return walk_gap(w, start, w->next > start ? w->next : start, "a record fails its check", 0);
      }
      *off = w->pos;
      w->pos += r->size;
      w->nrec++;
      return LS_WALK_RECORD;
    }
  }
  if (w->next >= w->limit) {
    w->done = 1;
    return LS_WALK_END;
  }
  if (!walk_header_at(w, w->next, &w->hdr)) {
    uint32_t start = w->next;
    return walk_gap(w, start, start + LS_BLOCK, "a buffer header fails its check", 0);
  }
  if (w->hdr.data_size > w->size - w->next - LS_BUF_HDR) {
    /* More than the segment holds: no write of the engine says so. */
    uint32_t start = w->next;
    return walk_gap(w, start, start + LS_BLOCK, "a buffer header claims more bytes than the segment holds", 1);
  }
  w->buf_off = w->next;
  w->pos = w->next + LS_BUF_HDR;
  /* The incarnation's data may end inside this buffer (limit). */
  w->cut = w->hdr.data_size > w->limit - w->pos;
  w->end = w->cut ? w->limit : w->pos + w->hdr.data_size;
  w->nrec = 0;
  w->skipped = 0;
  w->in_buf = 1;
  uint64_t next = (uint64_t)w->next + ls_align_up(LS_BUF_HDR + (uint64_t)w->hdr.data_size, LS_BLOCK);
  w->next = next > w->limit ? w->limit : (uint32_t)next;
  return LS_WALK_BUFFER;
}

void ls_seg_head(const uint8_t *img, uint32_t size, ls_seghead *out) {
  memset(out, 0, sizeof *out);
  out->limit = size;
  if (size >= LS_BUF_HDR && ls_bufhdr_decode(img, &out->hdr)) {
    if (out->hdr.kind == LS_KIND_FREE) {
      out->state = LS_HEAD_FREE;
      return;
    }
    out->state = LS_HEAD_DATA;
    out->seg_seq = out->hdr.seg_seq;
    out->kind = out->hdr.kind;
    if ((out->hdr.flags & LS_BF_SEALED) && out->hdr.seg_end <= size) {
      out->sealed = 1;
      out->limit = out->hdr.seg_end;
    }
    return;
  }
  /* No write of the engine leaves offset 0 without a valid header: the
  ** youngest incarnation with a buffer further on is the one to read. */
  out->state = LS_HEAD_DAMAGED;
  for (uint32_t o = LS_BLOCK; o < size && size - o >= LS_BUF_HDR; o += LS_BLOCK) {
    ls_bufhdr h;
    if (ls_bufhdr_decode(img + o, &h) && h.kind != LS_KIND_FREE && h.seg_seq > out->seg_seq) {
      out->seg_seq = h.seg_seq;
      out->kind = h.kind;
    }
  }
}
