/* bench_batch_file.c — how fast switch/batch_file.h reads a typical disbursement list.
 *
 * Usage: bench_batch_file [ROWS [wide|narrow]]   (default 2,000,000 wide)
 * Generates ROWS rows in memory — wide: all ten columns (about 86 bytes a row); narrow: the
 * four required ones and msisdn (about 60 bytes) — with CRLF line ends and a quoted reference
 * every tenth row, reads them fed in 64 KiB pieces, three times, and prints the best rows/s
 * and MB/s, by wall-clock time and by the thread's CPU time (which a busy shared machine
 * disturbs less). Not a test: timings depend on the machine. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "batch_file.h"

static int count_cb(const sw_batch_row *row, void *arg) {
  uint64_t *sum = arg;
  *sum += row->amount + (uint64_t)row->error;
  return 0;
}

static double now(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  unsigned long rows = argc > 1 ? strtoul(argv[1], NULL, 10) : 2000000;
  int narrow = argc > 2 && strcmp(argv[2], "narrow") == 0;
  size_t cap = 256 + rows * 128;
  char *text = malloc(cap);
  if (!text)
    return 1;
  size_t n = (size_t)snprintf(text, cap, "%s",
                              narrow ? "beneficiary_id_type,beneficiary_id,amount,reference,"
                                       "msisdn\r\n"
                                     : "beneficiary_id_type,beneficiary_id,amount,currency,"
                                       "reference,msisdn,operator,sex,age_band,region\r\n");
  for (unsigned long i = 0; i < rows; i++) {
    const char *fmt;
    if (narrow)
      fmt = i % 10 ? "national_id,%lu,%lu.50,March %lu,2547%08lu\r\n"
                   : "national_id,%lu,%lu.50,\"March, %lu\",2547%08lu\r\n";
    else
      fmt = i % 10 ? "national_id,%lu,%lu.50,KES,March %lu,2547%08lu,safaricom,F,18-35,"
                     "Turkana\r\n"
                   : "national_id,%lu,%lu.50,KES,\"March, %lu\",2547%08lu,safaricom,M,60+,"
                     "Turkana\r\n";
    n += (size_t)snprintf(text + n, cap - n, fmt, 20000000 + i, 1000 + i % 5000, i, i);
  }
  sw_currency kes;
  if (sw_currency_by_code("KES", &kes))
    return 1;
  double best = 1e30, best_cpu = 1e30;
  for (int round = 0; round < 3; round++) {
    uint64_t sum = 0;
    sw_batch_file *f;
    char err[256];
    if (sw_batch_file_new(SW_BATCH_FILE_LIST, &kes, count_cb, &sum, &f))
      return 1;
    double t0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_THREAD_CPUTIME_ID);
    for (size_t off = 0; off < n; off += 65536) {
      size_t k = n - off < 65536 ? n - off : 65536;
      if (sw_batch_file_feed(f, text + off, k, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
      }
    }
    if (sw_batch_file_finish(f, err, sizeof err)) {
      fprintf(stderr, "%s\n", err);
      return 1;
    }
    double t = now(CLOCK_MONOTONIC) - t0, c = now(CLOCK_THREAD_CPUTIME_ID) - c0;
    if (sw_batch_file_rows(f) != rows)
      return 1;
    sw_batch_file_free(f);
    if (t < best)
      best = t;
    if (c < best_cpu)
      best_cpu = c;
  }
  printf("%s, %lu rows, %.1f MB: wall %.3f s, %.0f rows/s, %.0f MB/s; cpu %.3f s, %.0f rows/s\n",
         narrow ? "narrow" : "wide", rows, (double)n / 1e6, best, (double)rows / best,
         (double)n / 1e6 / best, best_cpu, (double)rows / best_cpu);
  free(text);
  return 0;
}
