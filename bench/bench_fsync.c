/* bench_fsync.c — `tuma-bench fsync`: the machine's raw durable-write rate, the yardstick for
 * the ledger's --batch 1 figure. In a fresh scratch directory (in the same temp folder the
 * ledger benchmark uses) it rewrites one 4 KiB page of a preallocated file and calls fdatasync
 * after each write, --count times; the rate is writes+syncs per second. An LMDB commit does
 * two such syncs (data pages, then the meta page), hence the bar "--batch 1 ≥ half of this".
 *
 * With --pages N it writes N distinct random pages of a --span-mb file per round (ascending
 * offsets, one pwrite each) before the fdatasync, and with --meta it then also writes page 0
 * through a second descriptor opened O_DSYNC, the way LMDB writes its meta page: that is the
 * I/O shape of one LMDB commit, to compare a ledger commit with.
 */
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BENCH_FSYNC_PAGE 4096
#define BENCH_FSYNC_PAGES_MAX 4096

static const char *const fsync_cmd = "fsync";

static void fsync_usage(FILE *out) {
  fprintf(out,
          "usage: tuma-bench fsync [--count N] [--pages N [--span-mb M]] [--meta] [--tmpdir DIR]\n"
          "                        [--json]\n"
          "  --count N     rounds (default 1000, 1..10000000)\n"
          "  --pages N     4 KiB pages written per round before its fdatasync (default 1,\n"
          "                1..%d); with N > 1, distinct random pages of the file\n"
          "  --span-mb M   file size when --pages > 1 (default 64, 1..65536)\n"
          "  --meta        then write page 0 through an O_DSYNC descriptor (LMDB's meta page)\n"
          "  --tmpdir DIR  folder for the scratch file (default $TMPDIR or /tmp)\n"
          "  --json        one JSON object on stdout instead of the table\n",
          BENCH_FSYNC_PAGES_MAX);
}

typedef struct fsync_opts {
  uint64_t count;
  uint64_t pages;
  uint64_t span_mb;
  int meta;
  const char *tmpdir;
  int json;
} fsync_opts;

/* Parses argv into *o. Returns BENCH_EXIT_OK, BENCH_EXIT_USAGE after an error message, or -1
 * when help was asked for (printed). */
static int fsync_parse(int argc, char **argv, fsync_opts *o) {
  int span_set = 0;
  for (int i = 1; i < argc; i++) {
    const char *v = NULL;
    int m;
    if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
      fsync_usage(stdout);
      return -1;
    }
    if (strcmp(argv[i], "--json") == 0) {
      o->json = 1;
    } else if (strcmp(argv[i], "--meta") == 0) {
      o->meta = 1;
    } else if ((m = bench_opt(argc, argv, &i, fsync_cmd, "--count", &v)) != 0) {
      if (m < 0 || bench_parse_u64(fsync_cmd, "--count", v, 1, 10000000, &o->count) != 0)
        return BENCH_EXIT_USAGE;
    } else if ((m = bench_opt(argc, argv, &i, fsync_cmd, "--pages", &v)) != 0) {
      if (m < 0 ||
          bench_parse_u64(fsync_cmd, "--pages", v, 1, BENCH_FSYNC_PAGES_MAX, &o->pages) != 0)
        return BENCH_EXIT_USAGE;
    } else if ((m = bench_opt(argc, argv, &i, fsync_cmd, "--span-mb", &v)) != 0) {
      if (m < 0 || bench_parse_u64(fsync_cmd, "--span-mb", v, 1, 65536, &o->span_mb) != 0)
        return BENCH_EXIT_USAGE;
      span_set = 1;
    } else if ((m = bench_opt(argc, argv, &i, fsync_cmd, "--tmpdir", &v)) != 0) {
      if (m < 0)
        return BENCH_EXIT_USAGE;
      o->tmpdir = v;
    } else {
      fprintf(stderr, "tuma-bench fsync: unknown option '%s'\n", argv[i]);
      fsync_usage(stderr);
      return BENCH_EXIT_USAGE;
    }
  }
  /* Page 0 is the meta page; the data pages are drawn from the others. */
  if (o->pages > 1 && o->span_mb * (1024 * 1024 / BENCH_FSYNC_PAGE) < 2 * (o->pages + 1)) {
    fprintf(stderr,
            "tuma-bench fsync: --span-mb %" PRIu64 " is too small for --pages %" PRIu64 "\n",
            o->span_mb, o->pages);
    return BENCH_EXIT_USAGE;
  }
  if (span_set && o->pages == 1) {
    fprintf(stderr, "tuma-bench fsync: --span-mb needs --pages > 1\n");
    return BENCH_EXIT_USAGE;
  }
  return BENCH_EXIT_OK;
}

/* Writes len bytes at off (retrying short writes). Returns 0 or -1 with errno. */
static int write_at(int fd, const unsigned char *buf, size_t len, uint64_t off) {
  size_t done = 0;
  while (done < len) {
    ssize_t w = pwrite(fd, buf + done, len - done, (off_t)(off + done));
    if (w < 0) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    done += (size_t)w;
  }
  return 0;
}

/* Fills the file with span_pages pages and makes them and its size durable, so the rounds
 * measure overwrites of allocated blocks (as LMDB's, once its file has grown). */
static int preallocate(int fd, uint64_t span_pages, unsigned char *page) {
  for (uint64_t p = 0; p < span_pages; p++)
    if (write_at(fd, page, BENCH_FSYNC_PAGE, p * BENCH_FSYNC_PAGE) != 0)
      return -1;
  return fsync(fd);
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return (x > y) - (x < y);
}

/* Picks n distinct pages in [1, span_pages), ascending, into out. n ≤ span_pages / 2, so the
 * rejection loop ends quickly. */
static void pick_pages(bench_rng *r, uint64_t span_pages, uint64_t *out, size_t n) {
  for (size_t i = 0; i < n; i++) {
    for (;;) {
      uint64_t p = 1 + bench_rng_below(r, span_pages - 1);
      size_t j = 0;
      while (j < i && out[j] != p)
        j++;
      if (j == i) {
        out[i] = p;
        break;
      }
    }
  }
  qsort(out, n, sizeof *out, cmp_u64);
}

int bench_fsync_main(int argc, char **argv) {
  fsync_opts o = {.count = 1000, .pages = 1, .span_mb = 64};
  int rc = fsync_parse(argc, argv, &o);
  if (rc < 0)
    return BENCH_EXIT_OK;
  if (rc != BENCH_EXIT_OK)
    return rc;

  int status = BENCH_EXIT_FAIL;
  char *dir = NULL, *file = NULL;
  int fd = -1, meta_fd = -1;
  uint64_t *offs = NULL;
  bench_samples lat = {0};
  bench_rng rng;
  bench_rng_seed(&rng, 1);
  unsigned char page[BENCH_FSYNC_PAGE];
  memset(page, 0xa5, sizeof page);
  const char *base = bench_scratch_base(o.tmpdir);
  uint64_t span_pages = o.pages > 1 ? o.span_mb * (1024 * 1024 / BENCH_FSYNC_PAGE) : 1;

  offs = malloc((size_t)o.pages * sizeof *offs);
  if (!offs) {
    fprintf(stderr, "tuma-bench fsync: out of memory\n");
    goto out;
  }
  if (bench_scratch_create(base, "fsync", &dir) != 0) {
    fprintf(stderr, "tuma-bench fsync: cannot create a directory in %s: %s\n", base,
            strerror(errno));
    goto out;
  }
  size_t flen = strlen(dir) + sizeof "/page";
  file = malloc(flen);
  if (!file) {
    fprintf(stderr, "tuma-bench fsync: out of memory\n");
    goto out;
  }
  snprintf(file, flen, "%s/page", dir);
  fd = open(file, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    fprintf(stderr, "tuma-bench fsync: open %s: %s\n", file, strerror(errno));
    goto out;
  }
  if (preallocate(fd, span_pages, page) != 0) {
    fprintf(stderr, "tuma-bench fsync: preparing %s: %s\n", file, strerror(errno));
    goto out;
  }
  if (o.meta && (meta_fd = open(file, O_WRONLY | O_DSYNC | O_CLOEXEC)) < 0) {
    fprintf(stderr, "tuma-bench fsync: open %s O_DSYNC: %s\n", file, strerror(errno));
    goto out;
  }

  bench_cpu cpu0, cpu1;
  bench_cpu_sample(&cpu0);
  uint64_t t0 = bench_now_ns();
  for (uint64_t i = 0; i < o.count; i++) {
    int sig = bench_interrupted();
    if (sig) {
      fprintf(stderr, "tuma-bench fsync: interrupted (signal %d)\n", sig);
      status = 128 + sig;
      goto out;
    }
    if (o.pages > 1)
      pick_pages(&rng, span_pages, offs, (size_t)o.pages);
    else
      offs[0] = 0;
    uint64_t a = bench_now_ns();
    page[0] = (unsigned char)i;
    int bad = 0;
    for (size_t k = 0; k < o.pages && !bad; k++)
      bad = write_at(fd, page, BENCH_FSYNC_PAGE, offs[k] * BENCH_FSYNC_PAGE) != 0;
    bad = bad || fdatasync(fd) != 0;
    bad = bad || (meta_fd >= 0 && write_at(meta_fd, page, BENCH_FSYNC_PAGE, 0) != 0);
    if (bad) {
      fprintf(stderr, "tuma-bench fsync: write/fdatasync %s: %s\n", file, strerror(errno));
      goto out;
    }
    if (bench_samples_push(&lat, bench_now_ns() - a) != 0) {
      fprintf(stderr, "tuma-bench fsync: out of memory\n");
      goto out;
    }
  }
  double seconds = (double)(bench_now_ns() - t0) / 1e9;
  bench_cpu_sample(&cpu1);
  double other = bench_cpu_other_pct(&cpu0, &cpu1);
  double rate = seconds > 0 ? (double)o.count / seconds : 0.0;
  int syncs = o.meta ? 2 : 1;
  bench_samples_sort(&lat);
  double p50 = bench_samples_percentile_ms(&lat, 50), p99 = bench_samples_percentile_ms(&lat, 99);
  double mx = bench_samples_max_ms(&lat);

  if (o.json) {
    printf("{\"bench\":\"fsync\",\"count\":%" PRIu64 ",\"pages\":%" PRIu64
           ",\"meta\":%s,\"span_bytes\":%" PRIu64 ",\"page_bytes\":%d,\"seconds\":%.3f,"
           "\"rounds_per_sec\":%.1f,\"fsyncs_per_sec\":%.1f,\"p50_ms\":%.3f,\"p99_ms\":%.3f,"
           "\"max_ms\":%.3f,\"cpu_other_pct\":%.1f,\"tmpdir\":",
           o.count, o.pages, o.meta ? "true" : "false", span_pages * BENCH_FSYNC_PAGE,
           BENCH_FSYNC_PAGE, seconds, rate, rate * syncs, p50, p99, mx, other);
    bench_json_str(stdout, base);
    printf("}\n");
  } else {
    printf("tuma-bench fsync: %" PRIu64 " x (%" PRIu64 " x pwrite 4 KiB + fdatasync%s) in %s\n",
           o.count, o.pages, o.meta ? " + O_DSYNC pwrite of page 0" : "", base);
    printf("  rate        %.0f rounds/s = %.0f syncs/s  (%.3f s)\n", rate, rate * syncs, seconds);
    printf("  latency     p50 %.3f ms  p99 %.3f ms  max %.3f ms\n", p50, p99, mx);
    if (other >= 0)
      printf("  others      %.0f%% of one core during the run\n", other);
  }
  status = BENCH_EXIT_OK;

out:
  if (meta_fd >= 0 && close(meta_fd) != 0 && status == BENCH_EXIT_OK) {
    fprintf(stderr, "tuma-bench fsync: close: %s\n", strerror(errno));
    status = BENCH_EXIT_FAIL;
  }
  if (fd >= 0 && close(fd) != 0 && status == BENCH_EXIT_OK) {
    fprintf(stderr, "tuma-bench fsync: close: %s\n", strerror(errno));
    status = BENCH_EXIT_FAIL;
  }
  if (dir && bench_scratch_remove(dir) != 0) {
    fprintf(stderr, "tuma-bench fsync: removing %s: %s\n", dir, strerror(errno));
    status = BENCH_EXIT_FAIL;
  }
  bench_samples_free(&lat);
  free(offs);
  free(file);
  free(dir);
  return status;
}
