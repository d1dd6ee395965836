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
  ls_put32(p + 40, 0);
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
  if (h->seg_seq == 0 || (h->data_size & (LS_REC_ALIGN - 1)) != 0) return 0;
  if (ls_get32(p + 40) != 0) return 0;
  if (h->kind == LS_KIND_FREE && (h->data_size || h->nrecords || h->flags)) return 0;
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
  if (r->type < LS_REC_PUT || r->type > LS_REC_ABORT) return 0;
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
  if (r->type == LS_REC_COMMIT && (r->key_len != 0 || r->val_len != 8 || r->table != 0)) return 0;
  if (r->type == LS_REC_ABORT && (r->key_len != 0 || r->val_len != 16 || r->table != 0)) return 0;
  if (r->type != LS_REC_COMMIT && r->type != LS_REC_ABORT && r->table == 0) return 0;
  r->key = p + LS_REC_HDR;
  r->val = p + LS_REC_HDR + r->key_len;
  return 1;
}

void ls_walk_init(ls_walk *w, const uint8_t *img, uint32_t size, uint64_t seg_seq, uint32_t kind) {
  memset(w, 0, sizeof *w);
  w->img = img;
  w->size = size;
  w->seg_seq = seg_seq;
  w->kind = kind;
  w->seed = ls_rec_seed(seg_seq);
}

int ls_walk_next(ls_walk *w, ls_rec *r, uint32_t *off) {
  while (w->pos >= w->end) {
    if (w->next >= w->size || w->size - w->next < LS_BUF_HDR) return 0;
    if (!w->cut && w->nrec != w->want) { w->why = "record count"; return -1; }
    ls_bufhdr h;
    if (!ls_bufhdr_decode(w->img + w->next, &h) || h.seg_seq != w->seg_seq || h.kind != w->kind) {
      w->why = "buffer header";
      w->pos = w->next;
      return -1;
    }
    w->pos = w->next + LS_BUF_HDR;
    /* The segment's data may end inside this buffer (a torn tail that
    ** recovery accepted up to its last good record). */
    w->cut = h.data_size > w->size - w->pos;
    w->end = w->cut ? w->size : w->pos + h.data_size;
    w->nrec = 0;
    w->want = h.nrecords;
    w->bflags = h.flags;
    w->next += (uint32_t)ls_align_up(LS_BUF_HDR + h.data_size, LS_BLOCK);
  }
  if (!ls_rec_decode(w->img + w->pos, w->end - w->pos, w->seed, r)) {
    if (w->cut) return 0;
    w->why = "record";
    return -1;
  }
  *off = w->pos;
  w->pos += r->size;
  w->nrec++;
  return 1;
}
