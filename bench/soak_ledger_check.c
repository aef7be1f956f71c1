/* soak_ledger_check.c — the end of `make soak` (bench/soak.sh): opens a stopped tumad's ledger
 * read-only and prints one JSON object with its totals, whether Σ debits = Σ credits (posted
 * and pending) and whether the journal's hash chain verifies (the ledger's own
 * ledger_journal_verify, until `tuma audit verify` exists). Exit 0 when both hold, 1 if not,
 * 2 on a usage error.
 *
 *   tuma-soak-check LEDGER_DIR
 */
#include <inttypes.h>
#include <stdio.h>

#include "ledger.h"

/* Prints an unsigned 128-bit sum in decimal. */
static void print_u128(unsigned __int128 v) {
  char buf[48];
  size_t n = sizeof buf;
  buf[--n] = 0;
  do {
    buf[--n] = (char)('0' + (int)(v % 10));
    v /= 10;
  } while (v && n > 0);
  fputs(buf + n, stdout);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: tuma-soak-check LEDGER_DIR\n");
    return 2;
  }
  ledger_options o = {.flags = LEDGER_OPEN_READ_ONLY};
  ledger *l = NULL;
  int rc = ledger_open(argv[1], &o, &l);
  if (rc) {
    fprintf(stderr, "tuma-soak-check: %s: %s\n", argv[1], ledger_strerror(rc));
    return 1;
  }
  ledger_totals t;
  uint64_t seq = 0, bad = 0;
  int totals_ok = ledger_totals_of(l, &t) == 0;
  int balanced =
      totals_ok && t.debits_posted == t.credits_posted && t.debits_pending == t.credits_pending;
  int chain = ledger_journal_verify(l, &bad) == 0 && ledger_journal_head(l, &seq, NULL) == 0;
  printf("{\"accounts\":%" PRIu64 ",\"debits_posted\":", totals_ok ? t.accounts : 0);
  print_u128(totals_ok ? t.debits_posted : 0);
  printf(",\"credits_posted\":");
  print_u128(totals_ok ? t.credits_posted : 0);
  printf(",\"debits_pending\":");
  print_u128(totals_ok ? t.debits_pending : 0);
  printf(",\"credits_pending\":");
  print_u128(totals_ok ? t.credits_pending : 0);
  printf(",\"balanced\":%s,\"journal_records\":%" PRIu64 ",\"journal_verified\":%s",
         balanced ? "true" : "false", seq, chain ? "true" : "false");
  if (!chain)
    printf(",\"journal_bad_record\":%" PRIu64, bad);
  printf("}\n");
  ledger_close(l);
  return balanced && chain ? 0 : 1;
}
