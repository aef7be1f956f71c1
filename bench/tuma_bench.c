/* tuma_bench.c — tuma-bench, the benchmark driver (DESIGN §1): `tuma-bench <command> …`.
 *
 * main() only picks a subcommand from the table below and hands it the rest of the command
 * line; each subcommand parses its own options, prints a human table by default or one JSON
 * object with --json, and returns the exit status (bench.h). Adding a benchmark is one entry
 * here plus its bench_<name>_main().
 *
 * SIGINT, SIGTERM and SIGHUP are blocked before any subcommand runs: a subcommand polls
 * bench_interrupted() between units of work, stops, removes its scratch directory and returns
 * 128 + the signal number. A new subcommand must poll too, or it cannot be interrupted.
 */
#include "bench.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

typedef int (*bench_main_fn)(int argc, char **argv);

typedef struct bench_command {
  const char *name;
  bench_main_fn main;
  const char *summary;
} bench_command;

int bench_switch_main(int argc, char **argv); /* bench_switch.c */

static const bench_command bench_commands[] = {
    {"ledger", bench_ledger_main, "durable ledger: batches of transfers via ledger_apply()"},
    {"fsync", bench_fsync_main, "raw write + fdatasync rate of one 4 KiB page"},
    {"switch", bench_switch_main, "tumad end to end: two-phase transfers over mTLS, durable"},
    {"disburse", bench_disburse_main, "a disbursement list validated, approved and paid"},
    {"audit", bench_audit_main, "tuma audit verify: hash chain, checkpoints, replay, compare"},
};

static void usage(FILE *out) {
  fprintf(out, "usage: tuma-bench <command> [options]   (tuma-bench <command> --help)\n\n"
               "commands:\n");
  for (size_t i = 0; i < sizeof bench_commands / sizeof bench_commands[0]; i++)
    fprintf(out, "  %-10s %s\n", bench_commands[i].name, bench_commands[i].summary);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return BENCH_EXIT_USAGE;
  }
  if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
      strcmp(argv[1], "help") == 0) {
    usage(stdout);
    return BENCH_EXIT_OK;
  }
  for (size_t i = 0; i < sizeof bench_commands / sizeof bench_commands[0]; i++) {
    if (strcmp(argv[1], bench_commands[i].name) != 0)
      continue;
    if (bench_interrupt_block() != 0) {
      fprintf(stderr, "tuma-bench: blocking signals: %s\n", strerror(errno));
      return BENCH_EXIT_FAIL;
    }
    return bench_commands[i].main(argc - 1, argv + 1);
  }
  fprintf(stderr, "tuma-bench: unknown command '%s'\n", argv[1]);
  usage(stderr);
  return BENCH_EXIT_USAGE;
}
