/*
** manifest.c -- reading and atomically replacing the manifest.
**
** Text grammar (one item per line, '\n' terminated):
**   logstor-manifest 1
**   segment_size <bytes>
**   file_size <bytes>
**   disk_size <bytes>
**   next_table <id>
**   seq_floor <seq>
**   segment_seq_floor <seq>
**   files <count>
**   last_file_size <bytes>                                   (optional)
**   table <id> <groups> <trunc_seq> <name, %XX-escaped>      (zero or more)
**   damaged <segment> <seg_seq> <offset> <length>            (zero or more)
**   crc32c <decimal CRC32C of every byte before this line>
** Unknown lines or a bad CRC make the manifest unusable (LS_CORRUPT); a
** different format number gives LS_FORMAT.
*/
#include "manifest.h"
#include "format.h"
#include "keyorder.h"
#include "ls_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define MANIFEST "MANIFEST"
#define MANIFEST_TMP "MANIFEST.tmp"
#define MANIFEST_MAX (16u << 20)
/* Space kept aside for writing the manifest on a full file system. */
#define MANIFEST_SPARE_NAME "MANIFEST.spare"
#define MANIFEST_SPARE (64u << 10)

void ls_manifest_free(ls_manifest *m) {
  free(m->tables);
  free(m->damaged);
  m->tables = NULL;
  m->ntables = 0;
  m->damaged = NULL;
  m->ndamaged = 0;
}

ls_mtable *ls_manifest_table(const ls_manifest *m, uint32_t id) {
  for (uint32_t i = 0; i < m->ntables; i++)
    if (m->tables[i].id == id) return &m->tables[i];
  return NULL;
}

uint32_t ls_manifest_segments(const ls_manifest *m) {
  if (!m->files || !m->segment_size) return 0;
  uint64_t last = m->last_file_size ? m->last_file_size : m->file_size;
  return (uint32_t)((uint64_t)(m->files - 1) * (m->file_size / m->segment_size) + last / m->segment_size);
}

void ls_manifest_set_segments(ls_manifest *m, uint32_t nsegs) {
  uint64_t spf = m->file_size / m->segment_size;
  m->files = (uint32_t)((nsegs + spf - 1) / spf);
  uint64_t tail = nsegs ? nsegs - (uint64_t)(m->files - 1) * spf : 0;
  m->last_file_size = tail == spf ? 0 : tail * m->segment_size;
}

int ls_manifest_copy(ls_manifest *dst, const ls_manifest *src) {
  *dst = *src;
  dst->tables = NULL;
  dst->damaged = NULL;
  if (src->ntables) {
    dst->tables = malloc(src->ntables * sizeof *dst->tables);
    if (!dst->tables) { dst->ntables = dst->ndamaged = 0; return ls_err(LS_NOMEM, "manifest: out of memory"); }
    memcpy(dst->tables, src->tables, src->ntables * sizeof *dst->tables);
  }
  if (src->ndamaged) {
    dst->damaged = malloc(src->ndamaged * sizeof *dst->damaged);
    if (!dst->damaged) { ls_manifest_free(dst); return ls_err(LS_NOMEM, "manifest: out of memory"); }
    memcpy(dst->damaged, src->damaged, src->ndamaged * sizeof *dst->damaged);
  }
  return LS_OK;
}

static int name_ok_char(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == '_' || c == '-' || c == '.';
}

char *ls_manifest_format(const ls_manifest *m, size_t *len) {
  size_t cap = 320 + (size_t)m->ntables * (88 + 3 * LS_NAME_MAX) + (size_t)m->ndamaged * 80;
  char *s = malloc(cap);
  if (!s) return NULL;
  size_t n = 0;
  uint32_t version = m->version;
  for (uint32_t i = 0; i < m->ntables; i++)
    if (m->tables[i].order == KO_KEY) version = LS_MANIFEST_VERSION_KEY;
  n += (size_t)snprintf(s + n, cap - n,
                        "logstor-manifest %u\nsegment_size %" PRIu64 "\nfile_size %" PRIu64
                        "\ndisk_size %" PRIu64 "\nnext_table %u\nseq_floor %" PRIu64
                        "\nsegment_seq_floor %" PRIu64 "\nfiles %u\n",
                        version, m->segment_size, m->file_size, m->disk_size,
                        m->next_table, m->seq_floor, m->seg_seq_floor, m->files);
  if (m->files && m->last_file_size && m->last_file_size != m->file_size)
    n += (size_t)snprintf(s + n, cap - n, "last_file_size %" PRIu64 "\n", m->last_file_size);
  for (uint32_t i = 0; i < m->ntables; i++) {
    const ls_mtable *t = &m->tables[i];
    n += (size_t)snprintf(s + n, cap - n, "table %u %u %" PRIu64 " ", t->id, t->groups, t->trunc_seq);
    for (const unsigned char *p = (const unsigned char *)t->name; *p; p++) {
      if (name_ok_char(*p)) s[n++] = (char)*p;
      else n += (size_t)snprintf(s + n, cap - n, "%%%02X", *p);
    }
    if (!t->name[0]) s[n++] = '%', s[n++] = '-';     /* empty name */
    s[n++] = '\n';
  }
  for (uint32_t i = 0; i < m->ntables; i++)
    if (m->tables[i].order == KO_KEY) n += (size_t)snprintf(s + n, cap - n, "key_ordered %u\n", m->tables[i].id);
  for (uint32_t i = 0; i < m->ndamaged; i++) {
    const ls_mdamage *d = &m->damaged[i];
    n += (size_t)snprintf(s + n, cap - n, "damaged %u %" PRIu64 " %u %u\n", d->segment, d->seg_seq, d->offset,
                          d->length);
  }
  n += (size_t)snprintf(s + n, cap - n, "crc32c %u\n", ls_crc32c(0, s, n));
  *len = n;
  return s;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

/* Decode a %XX-escaped name of len bytes into out.  1 if valid. */
static int unescape_name(const char *p, size_t len, char *out) {
  size_t o = 0;
  if (len == 2 && p[0] == '%' && p[1] == '-') { out[0] = 0; return 1; }
  if (len == 0) return 0;
  for (size_t i = 0; i < len; i++) {
    int c;
    if (p[i] == '%') {
      if (len - i < 3) return 0;
      int h = hexval(p[i + 1]), l = hexval(p[i + 2]);
      if (h < 0 || l < 0) return 0;
      c = h * 16 + l;
      i += 2;
    } else if (name_ok_char((unsigned char)p[i])) {
      c = (unsigned char)p[i];
    } else {
      return 0;
    }
    if (o >= LS_NAME_MAX || c == 0) return 0;
    out[o++] = (char)c;
  }
  out[o] = 0;
  return 1;
}

/* Strict decimal number at *p (no sign, no overflow), followed by a space
** or the end of the line.  Returns 1 and advances *p. */
static int parse_num(const char **p, const char *end, uint64_t max, uint64_t *out) {
  const char *q = *p;
  uint64_t v = 0;
  if (q >= end || *q < '0' || *q > '9') return 0;
  if (*q == '0' && q + 1 < end && q[1] >= '0' && q[1] <= '9') return 0;   /* no leading zeros */
  while (q < end && *q >= '0' && *q <= '9') {
    uint64_t d = (uint64_t)(*q - '0');
    if (v > (max - d) / 10) return 0;
    v = v * 10 + d;
    q++;
  }
  if (q < end && *q != ' ') return 0;
  *out = v;
  *p = q;
  return 1;
}

/* "word" at *p followed by a single space. */
static int parse_word(const char **p, const char *end, const char *word) {
  size_t n = strlen(word);
  if ((size_t)(end - *p) < n + 1 || memcmp(*p, word, n) != 0 || (*p)[n] != ' ') return 0;
  *p += n + 1;
  return 1;
}

/* One "name value" item line. */
static int parse_item(const char *line, const char *end, const char *name, uint64_t max, uint64_t *v) {
  const char *p = line;
  return parse_word(&p, end, name) && parse_num(&p, end, max, v) && p == end;
}

int ls_manifest_parse(const char *text, size_t len, ls_manifest *m) {
  memset(m, 0, sizeof *m);
  /* The last line is the CRC of everything before it. */
  if (len < 2 || text[len - 1] != '\n') return ls_corrupt("manifest: truncated");
  size_t last = len - 1;
  while (last > 0 && text[last - 1] != '\n') last--;
  uint64_t crc;
  if (!parse_item(text + last, text + len - 1, "crc32c", UINT32_MAX, &crc))
    return ls_corrupt("manifest: no checksum line");
  if (crc != ls_crc32c(0, text, last)) return ls_corrupt("manifest: checksum mismatch");

  static const char *items[] = { "logstor-manifest", "segment_size", "file_size", "disk_size",
                                 "next_table", "seq_floor", "segment_seq_floor", "files", "last_file_size" };
  enum { NITEMS = 9, NREQUIRED = 8 };   /* last_file_size is optional */
  uint64_t val[NITEMS];
  int have = 0;
  uint64_t capdamaged = 0;
  uint32_t nkeyordered = 0;
  const char *p = text, *end = text + last;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    if (!nl) goto bad;
    const char *line = p;
    p = nl + 1;
    if (nl - line >= 6 && !memcmp(line, "table ", 6)) {
      const char *q = line + 6;
      uint64_t id, groups, trunc;
      ls_mtable t;
      memset(&t, 0, sizeof t);
      if (!parse_num(&q, nl, UINT32_MAX, &id) || q >= nl || *q++ != ' ') goto bad;
      if (!parse_num(&q, nl, UINT32_MAX, &groups) || q >= nl || *q++ != ' ') goto bad;
      if (!parse_num(&q, nl, UINT64_MAX, &trunc) || q >= nl || *q++ != ' ') goto bad;
      if (!unescape_name(q, (size_t)(nl - q), t.name)) goto bad;
      t.id = (uint32_t)id;
      t.groups = (uint32_t)groups;
      t.trunc_seq = trunc;
      if (t.id == 0 || t.groups == 0) goto bad;
      if (m->ntables && m->tables[m->ntables - 1].id >= t.id) goto bad;
      ls_mtable *nt = realloc(m->tables, (m->ntables + 1) * sizeof *nt);
      if (!nt) { ls_manifest_free(m); return ls_err(LS_NOMEM, "manifest: out of memory"); }
      m->tables = nt;
      m->tables[m->ntables++] = t;
      continue;
    }
    if (nl - line >= 12 && !memcmp(line, "key_ordered ", 12)) {
      const char *q = line + 12;
      uint64_t id;
      uint32_t i = 0;
      if (!parse_num(&q, nl, UINT32_MAX, &id) || q != nl) goto bad;
      while (i < m->ntables && m->tables[i].id != id) i++;
      if (i == m->ntables || m->tables[i].order == KO_KEY) goto bad;
      m->tables[i].order = KO_KEY;
      nkeyordered++;
      continue;
    }
    if (nl - line >= 8 && !memcmp(line, "damaged ", 8)) {
      const char *q = line + 8;
      uint64_t seg, sseq, off, dlen;
      if (!parse_num(&q, nl, UINT32_MAX, &seg) || q >= nl || *q++ != ' ') goto bad;
      if (!parse_num(&q, nl, UINT64_MAX, &sseq) || q >= nl || *q++ != ' ') goto bad;
      if (!parse_num(&q, nl, UINT32_MAX, &off) || q >= nl || *q++ != ' ') goto bad;
      if (!parse_num(&q, nl, UINT32_MAX, &dlen) || q != nl) goto bad;
      if (LS_GROW(m->damaged, capdamaged, m->ndamaged + 1, 16)) {
        ls_manifest_free(m);
        return ls_err(LS_NOMEM, "manifest: out of memory");
      }
      m->damaged[m->ndamaged++] = (ls_mdamage){ (uint32_t)seg, sseq, (uint32_t)off, (uint32_t)dlen };
      continue;
    }
    int k;
    for (k = 0; k < NITEMS; k++) {
      uint64_t max = k == 0 || k == 4 || k == 7 ? UINT32_MAX : UINT64_MAX;
      if (parse_item(line, nl, items[k], max, &val[k])) break;
    }
    if (k == NITEMS || (have & (1 << k))) goto bad;       /* unknown or repeated */
    if (k == 0 && val[0] == 1) {
      /* Version 1 directories are refused (FORMAT.md, "Versions"). */
      ls_manifest_free(m);
      return ls_err(LS_FORMAT, "the data directory was written by logstor format version 1; this build reads "
                    "version %u only: open it with the logstor that wrote it, copy the rows out (SQL: "
                    "CREATE TABLE ... AS SELECT), and load them into a new directory", LS_FORMAT_VERSION);
    }
    if (k == 0 && val[0] != LS_FORMAT_VERSION && val[0] != LS_MANIFEST_VERSION_KEY) {
      ls_manifest_free(m);
      return ls_err(LS_FORMAT, "manifest: format version %llu, this build reads version %u",
                    (unsigned long long)val[0], LS_FORMAT_VERSION);
    }
    if (k != 0 && !(have & 1)) goto bad;                   /* the version comes first */
    have |= 1 << k;
  }
  if ((have & ((1 << NREQUIRED) - 1)) != (1 << NREQUIRED) - 1) goto bad;
  /* Version 3 is version 2 with key-ordered tables (FORMAT.md, "Versions"). */
  if ((val[0] == LS_MANIFEST_VERSION_KEY) != (nkeyordered > 0)) goto bad;
  m->version = LS_FORMAT_VERSION;
  m->segment_size = val[1];
  m->file_size = val[2];
  m->disk_size = val[3];
  m->next_table = (uint32_t)val[4];
  m->seq_floor = val[5];
  m->seg_seq_floor = val[6];
  m->files = (uint32_t)val[7];
  if (have & (1 << 8)) {
    /* A whole number of segments, 1 .. file_size, and only with a file. */
    m->last_file_size = val[8];
    if (!m->files || !m->segment_size || !m->last_file_size || m->last_file_size > m->file_size ||
        m->last_file_size % m->segment_size)
      goto bad;
  }
  for (uint32_t i = 0; i < m->ntables; i++)
    if (m->tables[i].id >= m->next_table) goto bad;
  return LS_OK;
bad:
  ls_manifest_free(m);
  return ls_corrupt("manifest: malformed contents");
}

int ls_manifest_read(ls_io *io, int dirfd, ls_manifest *m) {
  memset(m, 0, sizeof *m);
  int fd = io->m->open(io, dirfd, MANIFEST, O_RDONLY, 0);
  if (fd == -ENOENT) return LS_NOTFOUND;
  if (fd < 0) return ls_err_io(fd, LS_CAUSE_OTHER, "open MANIFEST");
  char *buf = malloc(MANIFEST_MAX);
  if (!buf) { io->m->close(io, fd); return ls_err(LS_NOMEM, "manifest: out of memory"); }
  ssize_t n = io->m->read(io, fd, buf, MANIFEST_MAX, 0);
  io->m->close(io, fd);
  int rc;
  if (n < 0) rc = ls_err_io((int)n, LS_CAUSE_READ, "read MANIFEST");
  else if ((size_t)n == MANIFEST_MAX) rc = ls_corrupt("manifest: too large");
  else rc = ls_manifest_parse(buf, (size_t)n, m);
  free(buf);
  return rc;
}

/* Write text as the new manifest: temp file, fsync, rename, fsync dir. */
static int write_once(ls_io *io, int dirfd, const char *text, size_t len) {
  io->m->unlink(io, dirfd, MANIFEST_TMP);
  int fd = io->m->open(io, dirfd, MANIFEST_TMP, O_WRONLY | O_CREAT | O_EXCL, 0600);
  if (fd < 0) return ls_err_io(fd, LS_CAUSE_OTHER, "create MANIFEST.tmp");
  int e = io->m->write(io, fd, text, len, 0);
  if (!e) e = io->m->fsync(io, fd);
  io->m->close(io, fd);
  if (e) {
    io->m->unlink(io, dirfd, MANIFEST_TMP);
    return ls_err_io(e, LS_CAUSE_WRITE, "write MANIFEST.tmp");
  }
  e = io->m->rename(io, dirfd, MANIFEST_TMP, MANIFEST);
  if (e) return ls_err_io(e, LS_CAUSE_OTHER, "rename MANIFEST.tmp");
  e = io->m->fsync(io, dirfd);
  if (e) return ls_err_io(e, LS_CAUSE_SYNC, "fsync data directory");
  return LS_OK;
}

/* Make sure MANIFEST.spare holds MANIFEST_SPARE bytes (best effort). */
static void keep_spare(ls_io *io, int dirfd) {
  int fd = io->m->open(io, dirfd, MANIFEST_SPARE_NAME, O_RDONLY, 0);
  if (fd >= 0) { io->m->close(io, fd); return; }
  fd = io->m->open(io, dirfd, MANIFEST_SPARE_NAME, O_WRONLY | O_CREAT | O_EXCL, 0600);
  if (fd < 0) return;
  char *zero = calloc(1, MANIFEST_SPARE);
  int e = zero ? io->m->write(io, fd, zero, MANIFEST_SPARE, 0) : -ENOMEM;
  if (!e) e = io->m->fsync(io, fd);
  io->m->close(io, fd);
  free(zero);
  if (e) io->m->unlink(io, dirfd, MANIFEST_SPARE_NAME);
}

int ls_manifest_write(ls_io *io, int dirfd, const ls_manifest *m) {
  size_t len;
  char *text = ls_manifest_format(m, &len);
  if (!text) return ls_err(LS_NOMEM, "manifest: out of memory");
  int rc = write_once(io, dirfd, text, len);
  if (rc == LS_FULL && io->m->unlink(io, dirfd, MANIFEST_SPARE_NAME) == 0) {
    /* The file system is full: the spare's space lets the catalog (and
    ** the cleaner, which leases segment sequences through it) go on. */
    (void)io->m->fsync(io, dirfd);
    rc = write_once(io, dirfd, text, len);
  }
  if (!rc) keep_spare(io, dirfd);
  free(text);
  return rc;
}
