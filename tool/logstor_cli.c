/*
** logstor_cli.c -- tool/logstor: offline inspection of a data directory.
**
**   logstor info  DIR             sizes, tables, segment summary, counters
**   logstor check DIR [TABLE_ID]  read every segment, verify records and
**                                 accounting, list damage (exit 1 on problems)
**   logstor dump  DIR [SEGMENT]   segments; with SEGMENT, its buffers and records
**   logstor demo  DIR             write and read back a few rows (a smoke test)
**   logstor backup DB DEST        SELECT logstor_backup(DEST) on database DB
**   logstor dump-sql DB           SELECT logstor_dump_sql() on database DB
**
** backup and dump-sql work on a .db file, so they need SQLite: this program
** links libsqlite3 and the module's own objects, registered for every
** connection with sqlite3_auto_extension.  That, rather than loading
** logstor.so with sqlite3_load_extension, means the tool has no search
** path to get wrong (installed, in the build tree, or run from elsewhere)
** and can never meet a logstor.so of another version; the extension
** itself still does not link libsqlite3.  Both open DB read-only (a URI
** such as file:app.db?logstor_dir=... is accepted): the data directory is
** shared with other read-only processes and nothing in it can change, so
** no lock is taken on writers of the .db file; a process that has the
** database open for writing makes them fail with SQLITE_BUSY (run
** SELECT logstor_backup(...) in that process instead).
**
** info, check and dump open the engine read-only whatever damage it finds
** (on_damage=report: they write nothing), demo opens it to write; all take
** the directory's lock, so they fail with "in use" while a database has it
** open.  dump SEGMENT reads the data file directly.
*/
#include "catalog.h"

#include <sqlite3.h>

#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

/* Open dir read-only, whatever damage it holds. */
static int open_report(const char *dir, ls_engine **e) {
  ls_options o;
  ls_options_init(&o);
  o.on_damage = LS_ON_DAMAGE_REPORT;
  o.manual_cleaning = 1;
  return ls_open(dir, &o, e);
}

static int usage(void) {
  fprintf(stderr,
          "usage: logstor info DIR\n"
          "       logstor check DIR [TABLE_ID]\n"
          "       logstor dump DIR [SEGMENT]\n"
          "       logstor demo DIR\n"
          "       logstor backup DB DEST\n"
          "       logstor dump-sql DB\n");
  return 2;
}

static int fail(const char *what, int rc) {
  fprintf(stderr, "logstor: %s: %s (%s)\n", what, ls_errmsg(), ls_strerror(rc));
  return 1;
}

static int print_table(void *arg, const ls_table_info *t) {
  (void)arg;
  printf("  table %-4u %-24s groups %-3u rows %-10" PRIu64 " live_bytes %-12" PRIu64 " index_bytes %" PRIu64 "\n",
         t->id, t->name[0] ? t->name : "-", t->groups, t->rows, t->live_bytes, t->index_bytes);
  return 0;
}

typedef struct seg_summary { uint64_t n[3]; uint64_t live; } seg_summary;

static int count_segment(void *arg, const ls_segment_info *s) {
  seg_summary *x = arg;
  x->n[!strcmp(s->state, "free") ? 0 : !strcmp(s->state, "active") ? 1 : 2]++;
  x->live += s->live_bytes;
  return 0;
}

static int cmd_info(const char *dir) {
  ls_engine *e;
  int rc = open_report(dir, &e);
  if (rc) return fail(dir, rc);
  ls_stats s;
  ls_stats_get(e, &s);
  printf("directory      %s\n", dir);
  printf("format         %u\n", LS_FORMAT_VERSION);
  printf("segment_size   %u\nfile_size      %" PRIu64 "\ndisk_size      %" PRIu64 "%s\n", e->seg_size,
         e->file_size, e->disk_size, e->disk_size ? "" : " (unlimited)");
  printf("io_backend     %s\n", s.io_backend);
  printf("recovery       %" PRIu64 " ms, %" PRIu64 " records in %" PRIu64 " segments\n", s.recovery_ms,
         s.recovery_records, s.recovery_segments);
  printf("write_seq      %" PRIu64 "\n", s.write_seq);
  printf("index          %" PRIu64 " entries, %" PRIu64 " bytes (%.1f bytes per entry)\n", s.records_live,
         s.index_bytes, s.records_live ? (double)s.index_bytes / (double)s.records_live : 0.0);
  seg_summary x = {{0}, 0};
  ls_segment_foreach(e, count_segment, &x);
  printf("segments       %" PRIu64 " total: %" PRIu64 " free, %" PRIu64 " active, %" PRIu64 " sealed; %" PRIu64
         " live bytes in %" PRIu64 " data file bytes\n",
         s.segments_total, x.n[0], x.n[1], x.n[2], x.live, s.data_file_bytes);
  if (s.damaged_ranges)
    printf("damage         %" PRIu64 " damaged ranges, %" PRIu64 " bytes (logstor check lists them)\n",
           s.damaged_ranges, s.damaged_bytes);
  printf("tables:\n");
  ls_table_foreach(e, print_table, NULL);
  ls_close(e);
  return 0;
}

/* "check: segment N of M" on a terminal, at most ten times a second. */
static void progress(void *arg, uint64_t done, uint64_t total) {
  static struct timespec last;
  struct timespec now;
  (void)arg;
  clock_gettime(CLOCK_MONOTONIC, &now);
  long ms = (now.tv_sec - last.tv_sec) * 1000 + (now.tv_nsec - last.tv_nsec) / 1000000;
  if (done < total && ms < 100) return;
  last = now;
  fprintf(stderr, "\rcheck: read %" PRIu64 " of %" PRIu64 " segments", done, total);
  if (done == total) fprintf(stderr, "\n");
}

static int cmd_check(const char *dir, uint32_t table) {
  ls_engine *e;
  int rc = open_report(dir, &e);
  if (rc) return fail(dir, rc);
  char *report = NULL;
  rc = ls_check_progress(e, table, isatty(2) ? progress : NULL, NULL, &report);
  ls_close(e);
  if (rc) return fail("check", rc);
  printf("%s\n", report);
  int bad = strcmp(report, "ok") != 0;
  free(report);
  return bad;
}

static int print_segment(void *arg, const ls_segment_info *s) {
  (void)arg;
  if (!strcmp(s->state, "free")) return 0;
  printf("  segment %-6u %-6s %-6s seq %-8" PRIu64 " table %-4u group %-3u live %" PRIu64 " bytes in %" PRIu64
         " records\n", s->id, s->kind, s->state, s->seq, s->table, s->group, s->live_bytes, s->live_records);
  return 0;
}

/* Decode one segment straight from its data file. */
static int dump_segment(const char *dir, uint32_t id) {
  ls_io *io;
  int rc = ls_io_create(LS_IO_POSIX, NULL, &io);
  if (rc) return fail("io", rc);
  int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dirfd < 0) { perror(dir); ls_io_destroy(io); return 1; }
  ls_manifest m;
  rc = ls_manifest_read(io, dirfd, &m);
  if (rc) { close(dirfd); ls_io_destroy(io); return fail("manifest", rc); }
  uint32_t seg = (uint32_t)m.segment_size, spf = (uint32_t)(m.file_size / m.segment_size);
  char name[32];
  seg_file_name(id / spf, name);
  int fd = io->m->open(io, dirfd, name, O_RDONLY, 0);
  uint8_t *img = malloc(seg);
  ssize_t n = fd >= 0 && img ? io->m->read(io, fd, img, seg, (uint64_t)(id % spf) * seg) : -1;
  if (n != (ssize_t)seg) {
    fprintf(stderr, "logstor: cannot read segment %u from %s\n", id, name);
    rc = 1;
    goto out;
  }
  /* The walk recovery does (format.h): buffers, records, gaps. */
  ls_seghead hd;
  ls_seg_head(img, seg, &hd);
  if (hd.state == LS_HEAD_FREE) {
    printf("free (a free marker at offset 0, incarnation %" PRIu64 ")\n", hd.hdr.seg_seq);
    goto out;
  }
  if (hd.state == LS_HEAD_DAMAGED)
    printf("damaged: no valid header at offset 0%s\n", hd.seg_seq ? "; read as the youngest incarnation found" : "");
  if (!hd.seg_seq) goto out;
  printf("incarnation %" PRIu64 ", %s, %s", hd.seg_seq, hd.kind == LS_KIND_MIXED ? "mixed" : "group",
         hd.sealed ? "sealed" : "not sealed");
  if (hd.sealed) printf(" at %u", hd.limit);
  printf("\n");
  ls_walk w;
  ls_walk_init(&w, img, seg, hd.limit, hd.seg_seq, hd.kind);
  w.durable = hd.sealed;
  static const char *types[] = { "?", "put", "delete", "commit", "abort" };
  ls_rec r;
  uint32_t off;
  int k;
  while ((k = ls_walk_next(&w, &r, &off)) != LS_WALK_END) {
    if (k == LS_WALK_BUFFER) {
      printf("buffer @%-7u max_seq %-10" PRIu64 " data %-6u records %u", w.buf_off, w.hdr.max_seq,
             w.hdr.data_size, w.hdr.nrecords);
      if (w.hdr.kind == LS_KIND_GROUP) printf(" table %u group %u", w.hdr.table, w.hdr.group);
      printf("%s\n", w.hdr.flags & LS_BF_SETTLED ? " SETTLED" : "");
    } else if (k == LS_WALK_RECORD) {
      printf("    @%-7u %-6s table %-4u seq %-10" PRIu64 " key %u bytes value %u bytes%s%s\n", off,
             types[r.type <= 4 ? r.type : 0], r.table, r.seq, r.key_len, r.val_len,
             r.flags & LS_RF_END ? " END" : "", r.flags & LS_RF_CONT ? " CONT" : "");
    } else {
      printf("gap    @%-7u..%-7u %s%s\n", w.gap_start, w.gap_end, w.why,
             w.gap_tail && !hd.sealed && !w.gap_certain ? " (where the data ends)" : " (damage)");
    }
  }
out:
  free(img);
  if (fd >= 0) io->m->close(io, fd);
  ls_manifest_free(&m);
  close(dirfd);
  ls_io_destroy(io);
  return rc;
}

static int cmd_dump(const char *dir, int argc, char **argv) {
  if (argc > 0) return dump_segment(dir, (uint32_t)strtoul(argv[0], NULL, 0));
  ls_engine *e;
  int rc = open_report(dir, &e);
  if (rc) return fail(dir, rc);
  ls_segment_foreach(e, print_segment, NULL);
  ls_close(e);
  return 0;
}

static int cmd_demo(const char *dir) {
  ls_options o;
  ls_options_init(&o);
  o.create = 1;
  ls_engine *e;
  int rc = ls_open(dir, &o, &e);
  if (rc) return fail(dir, rc);
  uint32_t id;
  rc = ls_table_create(e, "demo", 1, &id);
  if (rc) { ls_close(e); return fail("create table", rc); }
  ls_txn *t;
  rc = ls_txn_begin(e, &t);
  const char *fruits[] = { "apple", "banana", "cherry", "damson", "elderberry" };
  for (int i = 0; !rc && i < 5; i++) {
    ls_key k;
    ls_key_set(&k, fruits[i], (uint32_t)strlen(fruits[i]));
    char val[64];
    int n = snprintf(val, sizeof val, "%d kg", (i + 1) * 3);
    rc = ls_txn_put(t, id, &k, val, (uint32_t)n);
  }
  if (!rc) rc = ls_txn_commit(t);
  ls_txn_free(t);
  if (rc) { ls_close(e); return fail("commit", rc); }
  printf("table %u \"demo\": committed 5 rows in one transaction; a scan in token order:\n", id);
  ls_cursor *c;
  rc = ls_cursor_open(e, NULL, id, &c);
  if (!rc) rc = ls_cursor_seek(c, INT64_MIN);
  while (!rc && ls_cursor_valid(c)) {
    const ls_value *v = ls_cursor_row(c);
    printf("  token %21" PRId64 "  %-12.*s %.*s\n", v->token, (int)v->key_len, v->key, (int)v->len, v->data);
    rc = ls_cursor_next(c);
  }
  ls_cursor_close(c);
  ls_close(e);
  if (rc) return fail("scan", rc);
  return cmd_info(dir);
}

int sqlite3_logstor_init(sqlite3 *db, char **pzErrMsg, const sqlite3_api_routines *pApi);

/* Run one SQL function on database file db (read-only) and print its
** result; dest, if given, is its argument. */
static int sql_command(const char *file, const char *sql, const char *arg, const char *what) {
  sqlite3_auto_extension((void (*)(void))sqlite3_logstor_init);
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_open_v2(file, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, NULL);
  if (rc == SQLITE_OK) {
    sqlite3_busy_timeout(db, 5000);
    rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
  }
  if (rc == SQLITE_OK && arg) rc = sqlite3_bind_text(st, 1, arg, -1, SQLITE_STATIC);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    const char *out = (const char *)sqlite3_column_text(st, 0);
    if (arg) printf("%s: %s logstor rows copied into %s\n", file, out ? out : "0", arg);
    else fputs(out ? out : "", stdout);
    rc = fflush(stdout) ? SQLITE_IOERR : SQLITE_OK;
  }
  if (rc) fprintf(stderr, "logstor %s: %s: %s\n", what, file, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
  sqlite3_finalize(st);
  sqlite3_close(db);
  return rc ? 1 : 0;
}

int main(int argc, char **argv) {
  if (argc == 4 && !strcmp(argv[1], "backup"))
    return sql_command(argv[2], "SELECT logstor_backup(?1)", argv[3], "backup");
  if (argc == 3 && !strcmp(argv[1], "dump-sql"))
    return sql_command(argv[2], "SELECT logstor_dump_sql()", NULL, "dump-sql");
  if (argc < 3) return usage();
  const char *cmd = argv[1], *dir = argv[2];
  int rc;
  if (!strcmp(cmd, "info")) rc = cmd_info(dir);
  else if (!strcmp(cmd, "check")) rc = cmd_check(dir, argc > 3 ? (uint32_t)strtoul(argv[3], NULL, 0) : 0);
  else if (!strcmp(cmd, "dump")) rc = cmd_dump(dir, argc - 3, argv + 3);
  else if (!strcmp(cmd, "demo")) rc = cmd_demo(dir);
  else rc = usage();
  ls_thread_cleanup();
  return rc;
}
