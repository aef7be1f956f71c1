/* bench_stats.c — the benchmarks' clock, CPU accounting, seeded PRNG (xoshiro256** with a
 * splitmix64 seeder, after Blackman and Vigna) and latency samples with percentiles. */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15u);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
  return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

void bench_rng_seed(bench_rng *r, uint64_t seed) {
  uint64_t x = seed;
  for (int i = 0; i < 4; i++)
    r->s[i] = splitmix64(&x);
}

uint64_t bench_rng_next(bench_rng *r) {
  uint64_t *s = r->s;
  uint64_t result = rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

uint64_t bench_rng_below(bench_rng *r, uint64_t n) {
  return (uint64_t)(((unsigned __int128)bench_rng_next(r) * n) >> 64);
}

uint64_t bench_now_ns(void) {
  struct timespec ts;
  /* CLOCK_MONOTONIC cannot fail with a valid pointer on Linux. */
  (void)clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Busy seconds of all CPUs from the first line of /proc/stat; -1 if unreadable. */
static double machine_busy_s(void) {
  FILE *f = fopen("/proc/stat", "r");
  if (!f)
    return -1;
  unsigned long long v[8] = {0};
  int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                 &v[4], &v[5], &v[6], &v[7]);
  fclose(f);
  long hz = sysconf(_SC_CLK_TCK);
  if (n != 8 || hz <= 0)
    return -1;
  /* user nice system idle iowait irq softirq steal: all but idle and iowait are busy */
  return (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / (double)hz;
}

void bench_cpu_sample(bench_cpu *out) {
  struct rusage ru;
  out->wall_ns = bench_now_ns();
  out->self_s = 0;
  if (getrusage(RUSAGE_SELF, &ru) == 0)
    out->self_s = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                  (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
  out->machine_s = machine_busy_s();
  out->machine_ok = out->machine_s >= 0;
}

double bench_cpu_self_s(const bench_cpu *a, const bench_cpu *b) {
  return b->self_s - a->self_s;
}

double bench_cpu_other_pct(const bench_cpu *a, const bench_cpu *b) {
  double wall = (double)(b->wall_ns - a->wall_ns) / 1e9;
  if (!a->machine_ok || !b->machine_ok || wall <= 0)
    return -1;
  double other = (b->machine_s - a->machine_s) - (b->self_s - a->self_s);
  if (other < 0)
    other = 0; /* tick granularity */
  return 100.0 * other / wall;
}

int bench_samples_push(bench_samples *s, uint64_t ns) {
  if (s->n == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 1024;
    uint64_t *p = realloc(s->ns, cap * sizeof *p);
    if (!p)
      return -1;
    s->ns = p;
    s->cap = cap;
  }
  s->ns[s->n++] = ns;
  return 0;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return (x > y) - (x < y);
}

void bench_samples_sort(bench_samples *s) {
  if (s->n > 1)
    qsort(s->ns, s->n, sizeof *s->ns, cmp_u64);
}

double bench_samples_percentile_ms(const bench_samples *s, double p) {
  if (s->n == 0)
    return 0.0;
  /* Nearest rank: the smallest sample with at least p% of the samples at or below it. */
  double rank = p / 100.0 * (double)s->n;
  size_t k = (size_t)rank;
  if ((double)k < rank)
    k++;
  if (k < 1)
    k = 1;
  if (k > s->n)
    k = s->n;
  return (double)s->ns[k - 1] / 1e6;
}

double bench_samples_max_ms(const bench_samples *s) {
  return s->n ? (double)s->ns[s->n - 1] / 1e6 : 0.0;
}

void bench_samples_free(bench_samples *s) {
  free(s->ns);
  s->ns = NULL;
  s->n = s->cap = 0;
}
