/*
** bench_clean.c -- tool/bench clean: write amplification of the cleaner
** against disk utilisation, for each compaction policy, uniform and
** hot/cold overwrites (engine only; bench.c lists the modes).
*/
#include "bench.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CL_REC_HDR 24u             /* record header bytes (FORMAT.md) */
#define CL_KEY 8u                  /* key bytes */
#define CL_VMIN 100u               /* value bytes: CL_VMIN .. CL_VMAX, fixed per key */
#define CL_VMAX 1000u
#define CL_BATCH 64                /* rows per transaction */
#define CL_BASE 3                  /* baseline runs per key set (the median counts) */

/* A value length for key i, and the bytes of its record on disk. */
static uint32_t cl_vlen(uint64_t i) {
  uint64_t s = i ^ 0xC1EA4ULL;
  return CL_VMIN + (uint32_t)(splitmix(&s) % (CL_VMAX - CL_VMIN + 1));
}
static uint64_t cl_recbytes(uint64_t i) { return (CL_REC_HDR + CL_KEY + cl_vlen(i) + 7) & ~(uint64_t)7; }

enum { CL_UNIFORM, CL_HOTCOLD };
static const char *cl_pname[2] = { "uniform", "hot/cold" };
static const char *cl_pcsv[2] = { "uniform", "hotcold" };

/* The key set of one utilisation: keys 0..n-1 with their digests. */
typedef struct cl_keys {
  uint64_t n;
  uint8_t (*bytes)[CL_KEY];
  ls_key *k;
  uint32_t *vlen;
  uint64_t *rec;
  uint64_t live;                   /* sum of rec */
} cl_keys;

static void cl_keys_make(cl_keys *ks, uint64_t target) {
  uint64_t n = 0, live = 0;
  while (live + cl_recbytes(n) <= target) live += cl_recbytes(n++);
  ks->n = n;
  ks->live = live;
  ks->bytes = malloc(n * sizeof *ks->bytes);
  ks->k = malloc(n * sizeof *ks->k);
  ks->vlen = malloc(n * sizeof *ks->vlen);
  ks->rec = malloc(n * sizeof *ks->rec);
  if (!ks->bytes || !ks->k || !ks->vlen || !ks->rec) { fprintf(stderr, "bench: out of memory\n"); exit(1); }
  for (uint64_t i = 0; i < n; i++) {
    make_key(i, ks->bytes[i]);
    ls_key_set(&ks->k[i], ks->bytes[i], CL_KEY);
    ks->vlen[i] = cl_vlen(i);
    ks->rec[i] = cl_recbytes(i);
  }
}

static void cl_keys_free(cl_keys *ks) {
  free(ks->bytes);
  free(ks->k);
  free(ks->vlen);
  free(ks->rec);
}

/* One run: a fresh directory, a table loaded with the key set. */
typedef struct cl_run {
  ls_engine *e;
  uint32_t id;
  const cl_keys *ks;
  int pattern;
  uint64_t rs;                     /* random state */
  uint64_t tag;                    /* written into each value */
  uint8_t val[CL_VMAX];
} cl_run;

static uint64_t cl_pick(cl_run *r) {
  uint64_t n = r->ks->n, x = splitmix(&r->rs);
  if (r->pattern == CL_UNIFORM) return x % n;
  /* Hot/cold: 90 % of the writes go to the keys whose number is a
  ** multiple of 10, 10 % of them, spread over the whole load (hot and cold
  ** rows start out in the same segments). */
  uint64_t hot = (n + 9) / 10, cold = n - hot;
  if (!cold || splitmix(&r->rs) % 10 < 9) return 10 * (x % hot);
  uint64_t c = x % cold;                       /* the c-th key that is not a multiple of 10 */
  return 10 * (c / 9) + c % 9 + 1;
}

/* Write keys in transactions of CL_BATCH rows until bytes record bytes
** are written: all keys in order (load) or picked keys (overwrite).
** *rows counts the rows written.  Returns LS_OK or the failing code. */
static int cl_write(cl_run *r, int load, uint64_t bytes, uint64_t *rows) {
  const cl_keys *ks = r->ks;
  uint64_t done = 0, i = 0;
  *rows = 0;
  while (load ? i < ks->n : done < bytes) {
    ls_txn *t;
    int rc = ls_txn_begin(r->e, &t);
    if (rc) return rc;
    for (int j = 0; j < CL_BATCH && (load ? i < ks->n : 1); j++) {
      uint64_t k = load ? i++ : cl_pick(r);
      r->tag++;
      memcpy(r->val, &r->tag, sizeof r->tag);
      if ((rc = ls_txn_put(t, r->id, &ks->k[k], r->val, ks->vlen[k]))) break;
      done += ks->rec[k];
      (*rows)++;
    }
    if (!rc) rc = ls_txn_commit(t);
    ls_txn_free(t);
    if (rc) return rc;
  }
  return LS_OK;
}

/* What one measured point (or baseline) gives. */
typedef struct cl_result {
  int ok;                          /* 0: the run failed (why in err, detail in msg) */
  char err[200], msg[300];
  uint64_t keys, live;             /* bytes_live after the load */
  uint64_t rows;
  double secs, ops;                /* measured phase */
  wa_delta wa;                     /* bytes written over the measured phase */
  uint64_t compacted, delay_us, commits, syncs;
  double wa_clean, wa_total;
  double space_amp;                /* at the end */
} cl_result;

static int cl_open(const char *path, uint64_t disk, uint64_t file, uint64_t seg, int policy, ls_engine **e) {
  rmtree(path);
  ls_options o;
  ls_options_init(&o);
  o.create = 1;
  o.disk_size = disk;
  o.file_size = file;
  o.segment_size = seg;
  o.compaction_policy = policy;
  return ls_open(path, &o, e);
}

/* Load the key set into a fresh directory, overwrite warm bytes, then
** measure meas bytes of overwrites.  disk 0: the baseline (unbounded). */
static void cl_point(const char *path, const cl_keys *ks, int pattern, int policy, uint64_t disk, uint64_t file,
                     uint64_t seg, uint64_t warm, uint64_t meas, cl_result *res) {
  memset(res, 0, sizeof *res);
  cl_run *r = calloc(1, sizeof *r);
  if (!r) { fprintf(stderr, "bench: out of memory\n"); exit(1); }
  r->ks = ks;
  r->pattern = pattern;
  r->rs = 1234567 + (uint64_t)pattern;
  uint64_t vs = 77;
  for (uint32_t i = 0; i < CL_VMAX; i++) r->val[i] = (uint8_t)splitmix(&vs);
  res->keys = ks->n;
  const char *phase = "open";
  uint64_t rows = 0, freed = 0;
  ls_stats sl, s0, s1;
  int rc = cl_open(path, disk, file, seg, policy, &r->e);
  if (!rc) { phase = "create table"; rc = ls_table_create(r->e, "t", 1, &r->id); }
  if (!rc) { phase = "load"; rc = cl_write(r, 1, 0, &rows); }
  /* Separate the load before anything is measured. */
  if (!rc) { phase = "flush"; rc = ls_flush(r->e, r->id, &freed); }
  if (!rc) {
    ls_stats_get(r->e, &sl);
    res->live = sl.bytes_live;
  }
  if (!rc && warm) { phase = "warm-up"; rc = cl_write(r, 0, warm, &rows); }
  if (!rc) {
    phase = "measured phase";
    ls_stats_get(r->e, &s0);
    double t0 = now();
    rc = cl_write(r, 0, meas, &res->rows);
    res->secs = now() - t0;
    ls_stats_get(r->e, &s1);
  }
  if (rc) {
    snprintf(res->msg, sizeof res->msg, "%s", ls_errmsg());
    if (r->e && (!strcmp(phase, "warm-up") || !strcmp(phase, "measured phase"))) {
      /* How far the overwrites got. */
      ls_stats_get(r->e, &s1);
      wa_delta d;
      wa_diff(&d, &sl, &s1);
      snprintf(res->err, sizeof res->err, "%s after %.1f MiB of overwrites (%.2fx disk_size; WA clean so far "
               "%.2f)", ls_strerror(rc), (double)d.user / 1048576.0, disk ? (double)d.user / (double)disk : 0,
               per_user(d.user + d.comp, d.user));
    } else {
      snprintf(res->err, sizeof res->err, "%s: %s", phase, ls_strerror(rc));
    }
  } else {
    res->ok = 1;
    res->ops = (double)res->rows / res->secs;
    wa_diff(&res->wa, &s0, &s1);
    res->compacted = s1.segments_compacted - s0.segments_compacted;
    res->delay_us = s1.separator_delay_us - s0.separator_delay_us;
    res->commits = s1.commits - s0.commits;
    res->syncs = s1.syncs - s0.syncs;
    res->wa_clean = per_user(res->wa.user + res->wa.comp, res->wa.user);
    res->wa_total = per_user(res->wa.data, res->wa.user);
    res->space_amp = s1.space_amplification;
  }
  if (r->e) ls_close(r->e);
  rmtree(path);
  free(r);
}

static int cmp_result_ops(const void *a, const void *b) {
  const cl_result *x = a, *y = b;
  return x->ops < y->ops ? -1 : x->ops > y->ops;
}

/* The policies measured, in the order of the table. */
#define CL_NPOL 3
static const int cl_policy[CL_NPOL] = { LS_POLICY_GREEDY, LS_POLICY_LFS, LS_POLICY_COST_BENEFIT };
static const char *cl_polname[CL_NPOL] = { "greedy", "LFS c-b", "cost-benefit" };
static const char *cl_polcsv[CL_NPOL] = { "greedy", "lfs", "cost-benefit" };

static void cl_plot(const char *png, const double *util, int nu, cl_result res[][CL_NPOL][2]) {
  int series = 0;
  for (int p = 0; p < CL_NPOL; p++)
    for (int g = 0; g < 2; g++)
      for (int u = 0; u < nu; u++) series += res[u][p][g].ok;
  if (!series) {
    printf("no point succeeded: no plot written\n");
    return;
  }
  char script[64];
  FILE *f = plot_begin(png, script, sizeof script);
  if (!f) return;
  fprintf(f, "set title 'logstor cleaning: random overwrites of a fixed key set'\n"
             "set xlabel 'disk utilisation (live bytes / disk size), %%'\n"
             "set ylabel 'cleaning WA: (user + compaction bytes) / user bytes'\n"
             "set key top left\nset grid\nset xrange [45:95]\nset yrange [1:*]\n");
  /* One data block per workload x policy, points that failed left out. */
  for (int p = 0; p < CL_NPOL; p++)
    for (int g = 0; g < 2; g++) {
      fprintf(f, "$d%d%d << EOD\n", p, g);
      for (int u = 0; u < nu; u++)
        if (res[u][p][g].ok) fprintf(f, "%.0f %.4f\n", util[u] * 100, res[u][p][g].wa_clean);
      fprintf(f, "EOD\n");
    }
  fprintf(f, "plot ");
  int first = 1;
  for (int p = 0; p < CL_NPOL; p++)
    for (int g = 0; g < 2; g++) {
      int n = 0;
      for (int u = 0; u < nu; u++) n += res[u][p][g].ok;
      if (!n) continue;
      fprintf(f, "%s$d%d%d using 1:2 with linespoints lw 2 pt %d title '%s, %s'", first ? "" : ", ", p, g,
              5 + 2 * p + g, cl_pname[g], cl_polname[p]);
      first = 0;
    }
  fprintf(f, "\n");
  plot_end(f, script, png);
}

int bench_clean(int argc, char **argv) {
  int quick = 0;
  const char *csv = "clean.csv", *png = "clean.png", *dir = NULL;
  double util[3] = { 0.50, 0.75, 0.90 };
  int NU = 3;
  for (int i = 0; i < argc; i++) {
    if (!strcmp(argv[i], "--quick")) quick = 1;
    else if (!strcmp(argv[i], "--util") && i + 1 < argc) {
      util[0] = atof(argv[++i]) / 100;
      NU = 1;
      if (util[0] <= 0 || util[0] >= 1) { fprintf(stderr, "bench clean: --util takes a percentage, 1..99\n"); return 2; }
    }
    else if (!strcmp(argv[i], "--csv") && i + 1 < argc) csv = argv[++i];
    else if (!strcmp(argv[i], "--png") && i + 1 < argc) png = argv[++i];
    else if (!strcmp(argv[i], "--dir") && i + 1 < argc) dir = argv[++i];
    else { fprintf(stderr, "bench clean: unknown option %s\n", argv[i]); return 2; }
  }
  const uint64_t MiB = 1024 * 1024;
  uint64_t disk = (quick ? 16 : 64) * MiB, file = 4 * MiB, seg = LS_DEFAULT_SEGMENT_SIZE;
  uint64_t warm = disk, meas = quick ? 2 * disk : 4 * disk;
  char tmpl[] = "/tmp/logstor-bench-XXXXXX";
  if (!dir) {
    if (!mkdtemp(tmpl)) { perror("mkdtemp"); return 1; }
    dir = tmpl;
  }
  char path[4200];
  snprintf(path, sizeof path, "%s/clean", dir);
  cl_result res[3][CL_NPOL][2], base[3][2];
  printf("cleaning bench: disk_size %" PRIu64 " MiB, file_size %" PRIu64 " MiB, segment_size %" PRIu64
         " KiB; 8-byte keys, %u..%u-byte values (fixed per key), %d rows per transaction\n",
         disk / MiB, file / MiB, seg / 1024, CL_VMIN, CL_VMAX, CL_BATCH);
  printf("each point: load the key set, ls_flush, %.0fx disk_size of overwrites as warm-up, then %.0fx disk_size "
         "measured; directory %s\n", (double)warm / (double)disk, (double)meas / (double)disk, dir);
  printf("hot/cold: 90%% of the writes go to 10%% of the keys.  baseline: the same key set and writes on an "
         "unbounded disk (disk_size 0),\nno warm-up, %.2fx the live bytes measured (compaction is not due before "
         "2x); the median of %d runs\n\n", 0.75, CL_BASE);
  fflush(stdout);
  double t_all = now();
  int step = 0, nsteps = NU * 2 * (1 + CL_NPOL);
  for (int u = 0; u < NU; u++) {
    cl_keys ks;
    cl_keys_make(&ks, (uint64_t)(util[u] * (double)disk));
    for (int g = 0; g < 2; g++) {
      /* Baseline: an unbounded disk compacts once the segments in use hold
      ** twice the live bytes; stay below.  The median of CL_BASE runs. */
      uint64_t bmeas = ks.live / 4 * 3 < meas ? ks.live / 4 * 3 : meas;
      double t0 = now();
      cl_result b[CL_BASE];
      int nb = 0;
      for (int i = 0; i < CL_BASE; i++) {
        cl_point(path, &ks, g, 0, 0, file, seg, 0, bmeas, &b[nb]);
        if (b[nb].ok) nb++;
        else base[u][g] = b[nb];
      }
      if (nb) {
        qsort(b, (size_t)nb, sizeof *b, cmp_result_ops);
        base[u][g] = b[nb / 2];
      }
      fprintf(stderr, "[%2d/%d] %3.0f%% %-8s baseline x%d   %6.1f s\n", ++step, nsteps, util[u] * 100, cl_pname[g],
              CL_BASE, now() - t0);
      for (int p = 0; p < CL_NPOL; p++) {
        t0 = now();
        cl_point(path, &ks, g, cl_policy[p], disk, file, seg, warm, meas, &res[u][p][g]);
        fprintf(stderr, "[%2d/%d] %3.0f%% %-8s %-12s  %6.1f s\n", ++step, nsteps, util[u] * 100, cl_pname[g],
                cl_polname[p], now() - t0);
      }
    }
    cl_keys_free(&ks);
  }
  double t_total = now() - t_all;

  printf("baseline (disk_size 0, no compaction expected; the files grow, so it also formats new files):\n");
  printf("%-5s %-9s %8s %9s %11s %9s %12s %10s\n", "util", "workload", "keys", "live MiB", "rows/s", "WA total",
         "format/user", "compacted");
  for (int u = 0; u < NU; u++)
    for (int g = 0; g < 2; g++) {
      cl_result *b = &base[u][g];
      if (!b->ok) { printf("%4.0f%% %-9s failed: %s\n", util[u] * 100, cl_pname[g], b->err); continue; }
      printf("%4.0f%% %-9s %8" PRIu64 " %9.1f %11.0f %9.2f %12.2f %10" PRIu64 "%s\n", util[u] * 100, cl_pname[g],
             b->keys, (double)b->live / (double)MiB, b->ops, b->wa_total, per_user(b->wa.format, b->wa.user), b->compacted,
             b->compacted ? "  (compaction ran: not a clean baseline)" : "");
    }
  printf("\n%-5s %-9s %-13s %6s %9s %9s %11s %8s %10s %9s\n", "util", "workload", "policy", "actual", "WA clean",
         "WA total", "rows/s", "vs base", "compacted", "space amp");
  for (int u = 0; u < NU; u++)
    for (int g = 0; g < 2; g++)
      for (int p = 0; p < CL_NPOL; p++) {
        cl_result *r = &res[u][p][g], *b = &base[u][g];
        if (!r->ok) {
          printf("%4.0f%% %-9s %-13s failed: %s\n", util[u] * 100, cl_pname[g], cl_polname[p], r->err);
          continue;
        }
        printf("%4.0f%% %-9s %-13s %5.1f%% %9.2f %9.2f %11.0f %7.2fx %10" PRIu64 " %9.2f\n", util[u] * 100,
               cl_pname[g], cl_polname[p], 100.0 * (double)r->live / (double)disk, r->wa_clean, r->wa_total, r->ops,
               b->ok ? r->ops / b->ops : 0, r->compacted, r->space_amp);
      }
  printf("\nWA clean = (user + compaction bytes) / user bytes; WA total = (all data bytes - format bytes) / user "
         "bytes,\nseparator and writer padding included; both from the engine's counters over the measured phase "
         "(user bytes:\nrecord bytes, 24-byte header + key + value, 8-byte aligned).  actual: bytes_live / disk_size "
         "after the load.\nvs base: rows/s / baseline rows/s of the same key set and workload.  compacted: "
         "segments taken by compaction.\nspace amp: bytes of segments in use / live bytes at the end.  "
         "policy: greedy = emptiest first; LFS c-b = (1-u)*age/(1+u);\ncost-benefit (the default) = "
         "(1-u)/u * sqrt(T/ln(u0/u)), engine/cleaner.c.  "
         "Total time %.0f s.\n", t_total);

  FILE *f = fopen(csv, "w");
  if (!f) {
    perror(csv);
  } else {
    fprintf(f, "utilisation,workload,policy,actual_utilisation,keys,live_bytes,rows,seconds,rows_per_s,"
               "baseline_rows_per_s,ratio_to_baseline,user_bytes,compaction_bytes,separator_bytes,data_bytes,"
               "format_bytes,wa_cleaning,wa_total,segments_compacted,separator_delay_us,commits,syncs,space_amplification,"
               "error\n");
    for (int u = 0; u < NU; u++)
      for (int g = 0; g < 2; g++)
        for (int p = -1; p < CL_NPOL; p++) {
          cl_result *r = p < 0 ? &base[u][g] : &res[u][p][g], *b = &base[u][g];
          fprintf(f, "%.2f,%s,%s,%.4f,%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%.3f,%.0f,%.0f,%.4f,%" PRIu64 ",%" PRIu64
                     ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%.4f,%.4f,%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64
                     ",%.4f,",
                  util[u], cl_pcsv[g], p < 0 ? "baseline" : cl_polcsv[p],
                  (double)r->live / (double)disk, r->keys, r->live, r->rows, r->secs, r->ops, b->ok ? b->ops : 0,
                  b->ok && r->ok ? r->ops / b->ops : 0, r->wa.user, r->wa.comp, r->wa.sep, r->wa.data, r->wa.format, r->wa_clean,
                  r->wa_total, r->compacted, r->delay_us, r->commits, r->syncs, r->space_amp);
          if (!r->ok) {
            /* A quoted field: the reason, then the engine's message. */
            fputc('"', f);
            for (const char *c = r->err; *c; c++) fputs(*c == '"' ? "\"\"" : (char[2]){ *c, 0 }, f);
            fputs(": ", f);
            for (const char *c = r->msg; *c; c++) fputs(*c == '"' ? "\"\"" : (char[2]){ *c, 0 }, f);
            fputc('"', f);
          }
          fputc('\n', f);
        }
    fclose(f);
    printf("CSV written to %s\n", csv);
  }
  cl_plot(png, util, NU, res);
  if (dir == tmpl) rmtree(tmpl);
  return 0;
}
