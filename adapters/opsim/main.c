/* main.c — tuma-opsim, a simulated mobile-money operator on the Tuma switch (README.md):
 * parses the command line, then runs the operator (sim.c) or prints a data directory. */
#include <stdio.h>
#include <string.h>

#include "options.h"
#include "sim.h"
#include "store.h"

/* totals | history | wallets on a data directory (read-only). */
static int print_data(const opsim_options *o) {
  char err[512] = "";
  opsim_store *store = NULL;
  int rc = opsim_store_open(o->data, 1, &store, err, sizeof err);
  if (rc) {
    fprintf(stderr, "tuma-opsim: %s\n", err);
    return 1;
  }
  if (o->command == OPSIM_CMD_TOTALS) {
    rc = opsim_report_totals(store, stdout);
    if (!rc)
      fputc('\n', stdout);
  } else if (o->command == OPSIM_CMD_HISTORY) {
    rc = opsim_report_history(store, stdout);
  } else {
    rc = opsim_report_wallets(store, stdout);
  }
  opsim_store_close(store);
  if (fflush(stdout) != 0 && !rc)
    rc = OPSIM_STORE_E_IO;
  if (rc) {
    fprintf(stderr, "tuma-opsim: %s: %s\n", o->data, opsim_store_strerror(rc));
    return 1;
  }
  return 0;
}

int main(int argc, char **argv) {
  opsim_options o;
  char err[512];
  int rc = opsim_options_parse(argc, argv, &o, err, sizeof err);
  if (rc == OPSIM_OPTIONS_HELP) {
    opsim_options_usage(stdout);
    return 0;
  }
  if (rc != OPSIM_OPTIONS_OK) {
    fprintf(stderr, "tuma-opsim: %s\n(tuma-opsim --help for the usage)\n", err);
    return 2;
  }
  if (o.command != OPSIM_CMD_RUN)
    return print_data(&o);
  return opsim_sim_run(&o);
}
