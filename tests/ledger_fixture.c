/* ledger_fixture.c — shared helpers of the ledger test suites (see ledger_fixture.h). */
#include "ledger_fixture.h"

#include <criterion/criterion.h>
#include <ftw.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

char *fixture_tmpdir(void) {
  const char *base = getenv("TMPDIR");
  char tmpl[4096];
  snprintf(tmpl, sizeof tmpl, "%s/tuma-test-XXXXXX", base && *base ? base : "/tmp");
  char *dir = mkdtemp(tmpl);
  cr_assert_not_null(dir, "mkdtemp failed");
  char *copy = strdup(dir);
  cr_assert_not_null(copy);
  return copy;
}

static int rm_cb(const char *path, const struct stat *st, int type, struct FTW *ftw) {
  (void)st;
  (void)type;
  (void)ftw;
  return remove(path);
}

void fixture_rmtree(const char *dir) {
  if (dir)
    nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

uint64_t fixture_clock_cb(void *arg) { return *(uint64_t *)arg; }

uint64_t fixture_atomic_clock_cb(void *arg) { return atomic_load((_Atomic uint64_t *)arg); }

ledger *fixture_open(const char *dir, uint64_t *now_ns) {
  ledger_options opts = {0};
  if (now_ns) {
    opts.clock = fixture_clock_cb;
    opts.clock_arg = now_ns;
  }
  ledger *l = NULL;
  int rc = ledger_open(dir, &opts, &l);
  cr_assert_eq(rc, 0, "ledger_open(%s): %s", dir, ledger_strerror(rc));
  return l;
}

ledger_event fixture_account(uint64_t id, uint16_t flags) {
  ledger_event ev;
  memset(&ev, 0, sizeof ev);
  ev.kind = LEDGER_EVENT_CREATE_ACCOUNT;
  ev.account.id = ledger_id_make(0, id);
  ev.account.ledger = 1;
  ev.account.code = 1;
  ev.account.flags = flags;
  return ev;
}

ledger_event fixture_transfer(uint64_t id, uint64_t debit, uint64_t credit, uint64_t amount,
                              uint16_t flags) {
  ledger_event ev;
  memset(&ev, 0, sizeof ev);
  ev.kind = LEDGER_EVENT_CREATE_TRANSFER;
  ev.transfer.id = ledger_id_make(0, id);
  ev.transfer.debit_account_id = ledger_id_make(0, debit);
  ev.transfer.credit_account_id = ledger_id_make(0, credit);
  ev.transfer.amount = amount;
  ev.transfer.ledger = 1;
  ev.transfer.code = 1;
  ev.transfer.flags = flags;
  return ev;
}

void fixture_apply(ledger *l, const ledger_event *events, ledger_result *out, size_t n) {
  ledger_result local[64];
  ledger_result *results = out ? out : local;
  cr_assert(out || n <= 64);
  int rc = ledger_apply(l, events, results, n);
  cr_assert_eq(rc, 0, "ledger_apply: %s", ledger_strerror(rc));
  if (!out)
    for (size_t i = 0; i < n; i++)
      cr_assert_eq(results[i], LEDGER_OK, "event %zu: %s", i, ledger_result_name(results[i]));
}

ledger_result fixture_apply_one(ledger *l, ledger_event ev) {
  ledger_result r = LEDGER_RESULT_COUNT_;
  int rc = ledger_apply(l, &ev, &r, 1);
  cr_assert_eq(rc, 0, "ledger_apply: %s", ledger_strerror(rc));
  return r;
}

void fixture_assert_invariants(ledger *l) {
  ledger_totals t;
  cr_assert_eq(ledger_totals_of(l, &t), 0);
  cr_assert(t.debits_posted == t.credits_posted, "posted debits != posted credits");
  cr_assert(t.debits_pending == t.credits_pending, "pending debits != pending credits");
}
