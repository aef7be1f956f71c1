/* bench.h — what tuma-bench's subcommands share: their entry points, option parsing, scratch
 * directories, a seeded PRNG and latency statistics. Benchmark code only; nothing here is
 * linked into tumad.
 *
 * Every subcommand is `int bench_<name>_main(int argc, char **argv)` with argv[0] the
 * subcommand's name; it returns the process exit status: 0 = ran (and every check held),
 * 1 = the run failed or a check failed, 2 = bad command line (BENCH_EXIT_USAGE), 128 + n =
 * interrupted by signal n (see bench_interrupted()).
 */
#ifndef TUMA_BENCH_H
#define TUMA_BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

enum {
  BENCH_EXIT_OK = 0,
  BENCH_EXIT_FAIL = 1,
  BENCH_EXIT_USAGE = 2,
};

/* Subcommands (one file each; tuma_bench.c lists them in its command table). */
int bench_ledger_main(int argc, char **argv);
int bench_fsync_main(int argc, char **argv);
int bench_disburse_main(int argc, char **argv);
int bench_audit_main(int argc, char **argv);

/* --- options (bench_args.c) --- */

/* Whether argv[*i] is the option `name` (e.g. "--accounts") given as "--name VALUE" or
 * "--name=VALUE". On a match, *value points into argv (borrowed) and *i is advanced to the
 * option's last word; returns 1. Returns 0 for any other word, and -1, after printing an
 * error naming `cmd`, when the value is missing. */
int bench_opt(int argc, char **argv, int *i, const char *cmd, const char *name, const char **value);

/* Parses `text` as a whole decimal number in [min, max] into *out: digits only (no sign, no
 * spaces, no suffix), no overflow. On failure prints "tuma-bench <cmd>: <name>: …" to stderr
 * and returns -1, leaving *out unchanged. */
int bench_parse_u64(const char *cmd, const char *name, const char *text, uint64_t min, uint64_t max,
                    uint64_t *out);

/* --- scratch directories (bench_scratch.c) --- */

/* The folder benchmarks create their scratch directories in: `override` when non-NULL, else
 * $TMPDIR when set and non-empty, else "/tmp". Borrowed (from the argument or environment). */
const char *bench_scratch_base(const char *override);

/* Creates a fresh directory "<base>/tuma-bench-<what>.XXXXXX" (mode 0700). On success *out is
 * a heap string the caller frees; returns 0, or -1 with errno set. */
int bench_scratch_create(const char *base, const char *what, char **out);

/* Removes the tree at `dir` (not following symbolic links); accepts NULL. Returns 0, or -1
 * with errno set for the first entry that could not be removed (it goes on with the rest). */
int bench_scratch_remove(const char *dir);

/* The apparent size (sum of st_size) and the allocated size (sum of st_blocks * 512) of the
 * regular files under `dir`. Returns 0, or -1 with errno set. */
int bench_scratch_size(const char *dir, uint64_t *apparent, uint64_t *allocated);

/* Interruption without a signal handler (and without a global flag): blocks SIGINT, SIGTERM
 * and SIGHUP in the calling thread (call it before any thread starts), so that a benchmark
 * can look between batches whether one is pending, stop, remove its scratch directory and
 * exit. Returns 0 or -1 with errno set. */
int bench_interrupt_block(void);

/* The blocked signal that is pending (SIGINT, SIGTERM or SIGHUP), or 0 if none. O(1). */
int bench_interrupted(void);

/* --- child processes (bench_proc.c) --- */

/* Starts argv[0] (a path) with argv, stdin from /dev/null, stdout appended to out_path and
 * stderr to err_path (NULL: to out_path too), the signal mask cleared and default dispositions
 * (tuma-bench blocks SIGINT/SIGTERM/SIGHUP), in a process group of its own. 0 and *pid, or -1
 * with errno set. */
int bench_proc_spawn(char *const argv[], const char *out_path, const char *err_path, pid_t *pid);

/* Waits at most timeout_ms for pid to exit, polling (1-10 ms) and watching for the benchmark's
 * interruption. 0 with *status (the exit status, 128 + n when killed by signal n); -1 with errno
 * ETIMEDOUT or EINTR (interrupted) and the child left running, or another errno. */
int bench_proc_wait(pid_t pid, unsigned timeout_ms, int *status);

/* Spawns (bench_proc_spawn) and waits at most timeout_ms; a child still running then, or when
 * the benchmark is interrupted, is killed (SIGKILL). Its exit status, or -1 with errno
 * (ETIMEDOUT, EINTR, …). */
int bench_proc_run(char *const argv[], const char *out_path, const char *err_path,
                   unsigned timeout_ms);

/* SIGTERM, then waits at most timeout_ms (SIGKILL after). Its exit status (128 + n when a
 * signal ended it), or -1. */
int bench_proc_stop(pid_t pid, unsigned timeout_ms);

/* The path of a sibling program: $env if set, else <dir of tuma-bench>/../<rel>. Heap string
 * the caller frees, or NULL. */
char *bench_proc_find(const char *env, const char *rel);

/* user + system CPU seconds of process pid (all threads), from /proc; -1 if unreadable. */
double bench_proc_cpu_s(pid_t pid);

/* n (≤ 8) loopback TCP ports that were free a moment ago. 0 or -1. */
int bench_free_ports(uint16_t *out, size_t n);

/* Whether the text file holds `text` within one line (lines up to 4 KiB). Reads it whole. */
int bench_file_contains(const char *path, const char *text);

/* Sleeps ms milliseconds (resumed after signals). */
void bench_sleep_ms(unsigned ms);

/* --- JSON output (bench_json.c) --- */

/* Writes s to out as a JSON string literal, quotes included, escaping what JSON requires. */
void bench_json_str(FILE *out, const char *s);

/* --- PRNG (bench_stats.c): xoshiro256**, seeded through splitmix64 --- */

typedef struct bench_rng {
  uint64_t s[4];
} bench_rng;

void bench_rng_seed(bench_rng *r, uint64_t seed);
uint64_t bench_rng_next(bench_rng *r);
/* Uniform in [0, n) for n > 0 (multiply-shift; the bias is below 2^-40 for n < 2^24). */
uint64_t bench_rng_below(bench_rng *r, uint64_t n);

/* --- time and latency statistics (bench_stats.c) --- */

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t bench_now_ns(void);

/* CPU accounting over a timed phase, to tell a clean measurement from one that shared the
 * machine: this process's CPU time (all threads) and the whole machine's busy time. */
typedef struct bench_cpu {
  uint64_t wall_ns;
  double self_s;    /* user + system time of this process */
  double machine_s; /* busy time of all CPUs (user, nice, system, irq, softirq, steal) */
  int machine_ok;   /* /proc/stat was readable */
} bench_cpu;

/* Samples the counters now. Never fails; machine_ok says whether /proc/stat could be read. */
void bench_cpu_sample(bench_cpu *out);

/* Between two samples: the CPU this process used, in seconds, and the CPU everything else
 * used (other processes and kernel threads) as a percentage of one core over the wall time,
 * or -1 when unknown. */
double bench_cpu_self_s(const bench_cpu *a, const bench_cpu *b);
double bench_cpu_other_pct(const bench_cpu *a, const bench_cpu *b);

/* A growable array of latency samples in nanoseconds. Zero-initialise, then push; free with
 * bench_samples_free() (accepts a zeroed one). */
typedef struct bench_samples {
  uint64_t *ns;
  size_t n;
  size_t cap;
} bench_samples;

/* Appends one sample; amortised O(1). Returns 0, or -1 when out of memory (the samples
 * already pushed stay). */
int bench_samples_push(bench_samples *s, uint64_t ns);

/* Sorts the samples in place (O(n log n)); the percentile and max functions need it. */
void bench_samples_sort(bench_samples *s);

/* The p-th percentile (0 < p ≤ 100, nearest rank) of sorted samples, in milliseconds; 0 for
 * no samples. */
double bench_samples_percentile_ms(const bench_samples *s, double p);

/* The largest sample of sorted samples in milliseconds; 0 for no samples. */
double bench_samples_max_ms(const bench_samples *s);

void bench_samples_free(bench_samples *s);

#endif
