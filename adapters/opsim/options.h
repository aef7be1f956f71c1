/* options.h — tuma-opsim's command line: parsing and validation of every argument (an error is
 * a usage error: exit status 2, nothing attempted). */
#ifndef TUMA_ADAPTERS_OPSIM_OPTIONS_H
#define TUMA_ADAPTERS_OPSIM_OPTIONS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "log.h"

typedef enum opsim_command {
  OPSIM_CMD_RUN = 0, /* connect and simulate */
  OPSIM_CMD_TOTALS,  /* print the totals of a data directory */
  OPSIM_CMD_HISTORY, /* print its settled transfers, one JSON object a line */
  OPSIM_CMD_WALLETS, /* print its wallets, one JSON object a line */
} opsim_command;

enum { OPSIM_PATH_MAX = 4096, OPSIM_HOST_MAX = 256 };

/* Percentages are kept in basis points (0 … 10000; "2.5" = 250). */
typedef struct opsim_options {
  opsim_command command;
  /* the switch and who we are */
  char host[OPSIM_HOST_MAX];
  uint16_t port;
  const char *as;          /* participant id */
  const char *server_name; /* NULL = host */
  char ca[OPSIM_PATH_MAX], cert[OPSIM_PATH_MAX], key[OPSIM_PATH_MAX];
  const char *data;
  /* wallets, used on the first start (then checked against the data directory if given) */
  uint32_t wallets;
  const char *prefix;
  uint32_t digits;
  uint64_t initial_balance;
  uint64_t wallet_limit; /* UINT64_MAX = none */
  uint32_t frozen_every; /* 0 = none */
  char currency[4];
  int wallets_set, prefix_set, digits_set, initial_balance_set, wallet_limit_set, frozen_every_set,
      currency_set;
  /* payee */
  uint32_t payee_latency_ms;
  uint32_t reject_bp;
  /* payer */
  int payer;            /* --rate or --max */
  uint32_t rate;        /* transfers/s; 0 with --max */
  uint32_t window;      /* most payments in flight */
  uint64_t duration_ms; /* 0 = no limit */
  uint64_t count;       /* 0 = no limit */
  const char *payee_prefix;
  uint32_t payee_digits; /* default: --msisdn-digits, else 12 */
  uint32_t payee_wallets;
  uint64_t amount_min, amount_max;
  uint32_t unknown_bp, short_expiry_bp;
  uint32_t short_expiry_ms, expiry_ms;
  int with_condition;
  /* the run */
  int linger;        /* after the payments, keep serving as payee until a signal */
  uint32_t drain_ms; /* on the way out, wait this long for outcomes */
  int print_totals;
  int json;
  opsim_log_level log_level;
} opsim_options;

typedef enum opsim_options_status {
  OPSIM_OPTIONS_OK = 0,
  OPSIM_OPTIONS_HELP = 1,  /* --help: print the usage, exit 0 */
  OPSIM_OPTIONS_USAGE = 2, /* a usage error, explained in err */
} opsim_options_status;

/* Parses argv into *o (argv is borrowed: o points into it). Returns an opsim_options_status;
 * on OPSIM_OPTIONS_USAGE err[errlen] says what is wrong. Checks every value, the combinations,
 * and that the certificate files are readable; touches nothing else. */
int opsim_options_parse(int argc, char **argv, opsim_options *o, char *err, size_t errlen);

/* Writes the usage text to f. */
void opsim_options_usage(FILE *f);

#endif
