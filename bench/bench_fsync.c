/* bench_fsync.c — `tuma-bench fsync`: the machine's raw durable-write rate, the yardstick for
 * the ledger's --batch 1 figure. It rewrites one 4 KiB page of a preallocated file in a fresh
 * scratch directory (in the same temp folder the ledger benchmark uses) and calls fdatasync
 * after each write, --count times; the rate is writes+syncs per second. An LMDB commit does
 * two such syncs (data pages, then the meta page), hence the bar "--batch 1 ≥ half of this".
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

static const char *const fsync_cmd = "fsync";

static void fsync_usage(FILE *out) {
  fprintf(out,
          "usage: tuma-bench fsync [--count N] [--tmpdir DIR] [--json]\n"
          "  --count N     write+fdatasync rounds (default 1000, 1..10000000)\n"
          "  --tmpdir DIR  folder for the scratch file (default $TMPDIR or /tmp)\n"
          "  --json        one JSON object on stdout instead of the table\n");
}

typedef struct fsync_opts {
  uint64_t count;
  const char *tmpdir;
  int json;
} fsync_opts;

/* Parses argv into *o. Returns BENCH_EXIT_OK, BENCH_EXIT_USAGE after an error message, or -1
 * when help was asked for (printed). */
static int fsync_parse(int argc, char **argv, fsync_opts *o) {
  for (int i = 1; i < argc; i++) {
    const char *v = NULL;
    int m;
    if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
      fsync_usage(stdout);
      return -1;
    }
    if (strcmp(argv[i], "--json") == 0) {
      o->json = 1;
    } else if ((m = bench_opt(argc, argv, &i, fsync_cmd, "--count", &v)) != 0) {
      if (m < 0 || bench_parse_u64(fsync_cmd, "--count", v, 1, 10000000, &o->count) != 0)
        return BENCH_EXIT_USAGE;
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
  return BENCH_EXIT_OK;
}

/* Writes the whole page at offset 0 (retrying short writes). Returns 0 or -1 with errno. */
static int write_page(int fd, const unsigned char *page) {
  size_t done = 0;
  while (done < BENCH_FSYNC_PAGE) {
    ssize_t w = pwrite(fd, page + done, BENCH_FSYNC_PAGE - done, (off_t)done);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    done += (size_t)w;
  }
  return 0;
}

int bench_fsync_main(int argc, char **argv) {
  fsync_opts o = {.count = 1000};
  int rc = fsync_parse(argc, argv, &o);
  if (rc < 0)
    return BENCH_EXIT_OK;
  if (rc != BENCH_EXIT_OK)
    return rc;

  int status = BENCH_EXIT_FAIL;
  char *dir = NULL, *file = NULL;
  int fd = -1;
  bench_samples lat = {0};
  unsigned char page[BENCH_FSYNC_PAGE];
  memset(page, 0xa5, sizeof page);
  const char *base = bench_scratch_base(o.tmpdir);

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
  /* Allocate the page and make its metadata durable first, so the loop measures overwrites. */
  if (write_page(fd, page) != 0 || fsync(fd) != 0) {
    fprintf(stderr, "tuma-bench fsync: preparing %s: %s\n", file, strerror(errno));
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
    uint64_t a = bench_now_ns();
    page[0] = (unsigned char)i;
    if (write_page(fd, page) != 0 || fdatasync(fd) != 0) {
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
  bench_samples_sort(&lat);
  double p50 = bench_samples_percentile_ms(&lat, 50), p99 = bench_samples_percentile_ms(&lat, 99);
  double mx = bench_samples_max_ms(&lat);

  if (o.json) {
    printf("{\"bench\":\"fsync\",\"count\":%" PRIu64 ",\"page_bytes\":%d,\"seconds\":%.3f,"
           "\"fsyncs_per_sec\":%.1f,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,"
           "\"cpu_other_pct\":%.1f,\"tmpdir\":",
           o.count, BENCH_FSYNC_PAGE, seconds, rate, p50, p99, mx, other);
    bench_json_str(stdout, base);
    printf("}\n");
  } else {
    printf("tuma-bench fsync: %" PRIu64 " x (pwrite 4 KiB + fdatasync) in %s\n", o.count, base);
    printf("  rate        %.0f fsyncs/s  (%.3f s)\n", rate, seconds);
    printf("  latency     p50 %.3f ms  p99 %.3f ms  max %.3f ms\n", p50, p99, mx);
    if (other >= 0)
      printf("  others      %.0f%% of one core during the run\n", other);
  }
  status = BENCH_EXIT_OK;

out:
  if (fd >= 0 && close(fd) != 0 && status == BENCH_EXIT_OK) {
    fprintf(stderr, "tuma-bench fsync: close: %s\n", strerror(errno));
    status = BENCH_EXIT_FAIL;
  }
  if (dir && bench_scratch_remove(dir) != 0) {
    fprintf(stderr, "tuma-bench fsync: removing %s: %s\n", dir, strerror(errno));
    status = BENCH_EXIT_FAIL;
  }
  bench_samples_free(&lat);
  free(file);
  free(dir);
  return status;
}
