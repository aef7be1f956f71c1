/* test_disburse.c — integration suite for disbursements: a real tumad (tests/switch_harness.h,
 * frames up to 64 KiB), the real `tuma disburse` CLI (TUMA_CLI) with certificates of each role
 * (admin, programme-manager "manager" and "manager2", approver), and real tuma-opsim processes
 * (TUMA_OPSIM) as the payee operators alpha and beta, whose wallets are the beneficiaries'
 * MSISDNs (alpha 25470…, beta 25471…; wallet i is the prefix and i zero-padded to 12 digits).
 *
 * Scenarios: every kind of bad row named by its line and reason (malformed amount, another
 * currency, over the cap, unknown beneficiary, a wallet no operator serves, a duplicate in the
 * file, already in another batch of the programme's cycle, an unknown id type), then
 * --exclude-invalid and the report's excluded block; control totals; chunked upload;
 * re-submitting the same file; maker-checker (roles and identities); a budget too short for
 * approval, then topped up (idempotent fund ids); a batch of 50 paid to completion and
 * reconciled three ways (opsim wallets, the report, the programme's budget) with its reach
 * breakdown; cancel mid-batch; a scheduled batch's reservation, released by a cancel; payments
 * the operator refuses, failed and released, and their beneficiaries paid by a later batch of
 * the same cycle; a payee operator offline, then back; recurring cycles, and one waiting for
 * funds; tumad killed mid-batch and restarted; beneficiary registration (masking, refused
 * rows, roles); usage errors.
 *
 * Every wait is bounded in time and count; assertions are on outcomes, never on durations. When
 * a test fails, its scratch directory is kept (tumad.log, the commands' and opsims' output).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "disburse_fixture.h"
#include "switch_harness.h"

extern char **environ;

#define T_START 15000 /* ms: tumad start-up */
#define T_READY 15000 /* ms: an opsim connected and its wallets registered */
#define T_CMD 20000   /* ms: a command that should finish promptly */
#define T_PAY 90000   /* ms: a small batch paid to completion */

/* A handshake gets 5 s (the harness's 500 ms partial-frame timeout also bounds the TLS
 * handshake, which a loaded machine running two suites at once can miss). */
static const dz_config CFG = {
    .start_ms = T_START, .ready_ms = T_READY, .cmd_ms = T_CMD, .read_timeout_ms = 5000};

static void disburse_fini(void) {
  dz_suite_fini(40, NULL);
}

TestSuite(disburse, .fini = disburse_fini, .timeout = 240);

/* Submits and approves (as approver) a list that must be accepted whole; returns the batch. */
static uint64_t submit_and_approve(dz_fixture *z, const char *path, uint64_t count, uint64_t total,
                                   const char *const *extra) {
  dz_result *r = malloc(sizeof *r);
  cr_assert_not_null(r);
  dz_submit(z, r, path, 1, count, total, extra);
  cr_assert_eq(r->status, 0, "submit: %s%s", r->out, r->err);
  uint64_t batch = dz_batch_of(r);
  DZ_CLI_OK(z, r, "approver", "disburse", "approve", dz_u64s(batch));
  free(r);
  return batch;
}

/* ================================================================ tests */

/* Each kind of bad row is named with its line; nothing is stored unless --exclude-invalid. */
Test(disburse, every_bad_row_is_named_by_its_line) {
  dz_fixture z;
  dz_start(&z, &CFG, 8);
  dz_make_programme(&z, 10000000);
  /* 39000001: registered with a wallet no operator serves (no participant has 25479…). */
  dz_register_beneficiaries(&z, 8, "national_id,39000001,254790000001,\n", 1);
  dz_result *r = malloc(sizeof *r);
  cr_assert_not_null(r);
  const char *bad =
      /* line 2: beneficiary 0, good (from write_list) */
      "national_id,30000001,12.345,KES,r3\n"   /* 3: malformed amount */
      "national_id,30000002,150.00,UGX,r4\n"   /* 4: another currency */
      "national_id,30000003,6000.00,KES,r5\n"  /* 5: over the cap of 5000.00 */
      "national_id,39999999,150.00,KES,r6\n"   /* 6: unknown beneficiary */
      "national_id,39000001,150.00,KES,r7\n"   /* 7: a wallet no operator serves */
      "national_id,30000004,150.00,KES,r8\n"   /* 8: good */
      "national_id,30000004,150.00,KES,r9\n"   /* 9: duplicate of line 8 */
      "passport,30000005,150.00,KES,r10\n"     /* 10: unknown id type */
      "national_id,30000005,150.00,KES,r11\n"; /* 11: good */
  uint64_t first = 0;
  const char *path = dz_write_list(&z, "bad.csv", 0, 1, bad, &first, 0);
  uint64_t valid_total = first + 15000 + 15000;
  dz_submit(&z, r, path, 1, 3, valid_total, NULL);
  cr_assert_eq(r->status, 1, "a list with bad rows is refused: %s%s", r->out, r->err);
  /* Each bad line with its reason (the switch's words, switch/DISBURSE.md). */
  static const struct {
    int line;
    const char *reason;
  } why[] = {{3, "amount"},         {4, "currency"},  {5, "cap"},     {6, "unknown beneficiary"},
             {7, "unknown wallet"}, {9, "duplicate"}, {10, "id type"}};
  for (size_t k = 0; k < sizeof why / sizeof why[0]; k++) {
    char want[32];
    snprintf(want, sizeof want, "line %d: ", why[k].line);
    const char *at = strstr(r->err, want);
    cr_assert_not_null(at, "'%s' in the refusal: %s", want, r->err);
    const char *eol = strchr(at, '\n');
    cr_assert_not_null(eol);
    char one[256];
    snprintf(one, sizeof one, "%.*s", (int)(eol - at), at);
    cr_assert(strstr(one, why[k].reason) != NULL, "line %d says why (%s): %s", why[k].line,
              why[k].reason, one);
  }
  cr_assert(strstr(r->err, "batch refused: 3100") != NULL, "%s", r->err);
  cr_assert(strstr(r->err, "line 2: ") == NULL && strstr(r->err, "line 8: ") == NULL &&
                strstr(r->err, "line 11: ") == NULL,
            "good rows are not named: %s", r->err);
  cr_assert(strstr(r->err, "30000001") == NULL, "ids are not printed in clear: %s", r->err);

  /* Accepted without its bad rows. */
  const char *excl[] = {"--exclude-invalid", NULL};
  dz_submit(&z, r, path, 1, 3, valid_total, excl);
  cr_assert_eq(r->status, 0, "%s%s", r->out, r->err);
  char want[128];
  snprintf(want, sizeof want, "submitted: 3 valid rows, total %s KES; 7 invalid",
           dz_kes(valid_total));
  cr_assert(strstr(r->out, want) != NULL, "'%s' in: %s", want, r->out);
  uint64_t b1 = dz_batch_of(r);
  cr_assert(strstr(r->out, "line 3: ") && strstr(r->out, "line 10: "), "%s", r->out);
  /* Its report: the three rows, then the seven excluded at validation. */
  dz_report rep = dz_get_report(&z, b1, r);
  cr_assert_eq(rep.n, 3);
  cr_assert_eq(rep.rows[0].line, 2);
  cr_assert_eq(rep.rows[1].line, 8);
  cr_assert_eq(rep.rows[2].line, 11);
  cr_assert_str_eq(rep.rows[0].status, "pending");
  const char *block = "# excluded at validation\nline,reason\n";
  cr_assert(strncmp(rep.invalid, block, strlen(block)) == 0, "%s", rep.invalid);
  int excluded = 0;
  for (const char *p = rep.invalid; (p = strchr(p, '\n')) != NULL; p++)
    excluded++;
  cr_assert_eq(excluded, 2 + 7, "header lines and 7 rows: %s", rep.invalid);
  cr_assert(strstr(rep.invalid, "\n3,") && strstr(rep.invalid, "\n10,"), "%s", rep.invalid);
  cr_assert(strstr(r->err, "3 items: paid 0") && strstr(r->err, "7 excluded at validation"), "%s",
            r->err);
  free(rep.rows);

  /* Beneficiary 0 (line 2 above) is in batch b1 for cycle 1: another list for cycle 1 that
   * names it is refused at that line; the same list for cycle 2 is fine. */
  const char *other = dz_write_list(&z, "other.csv", 0, 2, NULL, &first, 0);
  dz_submit(&z, r, other, 1, 2, first, NULL);
  cr_assert_eq(r->status, 1, "%s%s", r->out, r->err);
  char already[64];
  snprintf(already, sizeof already, "line 2: already in batch %" PRIu64, b1);
  cr_assert(strstr(r->err, already) != NULL, "'%s' in: %s", already, r->err);
  cr_assert(strstr(r->err, "line 3: ") == NULL, "%s", r->err);
  dz_submit(&z, r, other, 2, 2, first, NULL);
  cr_assert_eq(r->status, 0, "cycle 2 is another cycle: %s%s", r->out, r->err);
  cr_assert_neq(dz_batch_of(r), b1);
  free(r);
  dz_done(&z);
}

/* Control totals must match; the same file again for the same cycle is the same batch. */
Test(disburse, control_totals_and_resubmission) {
  dz_fixture z;
  dz_start(&z, &CFG, 0);
  dz_make_programme(&z, 10000000);
  dz_register_beneficiaries(&z, 5, NULL, 0);
  dz_result *r = malloc(sizeof *r);
  cr_assert_not_null(r);
  uint64_t total = 0;
  const char *path = dz_write_list(&z, "list.csv", 0, 5, NULL, &total, 0);
  dz_submit(&z, r, path, 1, 4, total, NULL);
  cr_assert_eq(r->status, 1, "a wrong count is refused: %s%s", r->out, r->err);
  cr_assert(strstr(r->err, "batch refused: 3100") && strstr(r->err, "control totals"), "%s",
            r->err);
  dz_submit(&z, r, path, 1, 5, total - 1, NULL);
  cr_assert_eq(r->status, 1, "a total off by 0.01 is refused: %s%s", r->out, r->err);
  char bad[SH_PATH_MAX + 32];
  snprintf(bad, sizeof bad, "%s/bad-header.csv", z.h->dir);
  dz_write_file(bad, "beneficiary_id_type,beneficiary_id,amout,currency,reference\n"
                     "national_id,30000000,100.00,KES,x\n");
  dz_submit(&z, r, bad, 1, 1, 10000, NULL);
  cr_assert_eq(r->status, 1, "%s%s", r->out, r->err);
  cr_assert(strstr(r->err, "batch refused: 3100") && strstr(r->err, "amout"), "%s", r->err);
  /* A chunk larger than the admin listener's frames (4 MiB by default) is refused, and said so. */
  static char big[4700000];
  size_t blen = (size_t)snprintf(big, sizeof big,
                                 "beneficiary_id_type,beneficiary_id,amount,currency,reference\n");
  while (blen < 4600000)
    blen += (size_t)snprintf(big + blen, sizeof big - blen, "national_id,30000000,1.00,KES,%s\n",
                             "padding-padding-padding-padding");
  char bigpath[SH_PATH_MAX + 32];
  snprintf(bigpath, sizeof bigpath, "%s/big.csv", z.h->dir);
  dz_write_file(bigpath, big);
  const char *huge[] = {"--chunk-bytes", "4650000", NULL};
  dz_submit(&z, r, bigpath, 1, 1, 100, huge);
  cr_assert_eq(r->status, 1, "%s%s", r->out, r->err);
  cr_assert(strstr(r->err, "give a smaller --chunk-bytes") != NULL, "%s", r->err);
  /* In chunks of 64 bytes: several requests, the options in the first. */
  const char *small[] = {"--chunk-bytes", "64", NULL};
  dz_submit(&z, r, path, 1, 5, total, small);
  cr_assert_eq(r->status, 0, "%s%s", r->out, r->err);
  char want[128];
  snprintf(want, sizeof want, "submitted: 5 valid rows, total %s KES; 0 invalid", dz_kes(total));
  cr_assert(strstr(r->out, want) != NULL, "'%s' in: %s", want, r->out);
  uint64_t batch = dz_batch_of(r);
  dz_submit(&z, r, path, 1, 5, total, NULL);
  cr_assert_eq(r->status, 0, "%s%s", r->out, r->err);
  snprintf(want, sizeof want, "batch %" PRIu64 " already submitted (same file)", batch);
  cr_assert(strstr(r->out, want) != NULL, "'%s' in: %s", want, r->out);
  dz_status s = dz_batch_status(&z, batch);
  cr_assert_str_eq(s.state, "submitted");
  cr_assert_eq(s.n[1], 5, "5 items pending");
  free(r);
  dz_done(&z);
}

/* A report longer than one page (the CLI asks for 1000 items a page): every item once, in line
 * order. The batch is only submitted, so every item is pending. */
Test(disburse, report_pages_through_a_long_batch) {
  dz_fixture z;
  dz_start(&z, &CFG, 0);
  dz_make_programme(&z, 100000000);
  enum { N = 2100 };
  dz_register_beneficiaries(&z, N, NULL, 0);
  uint64_t total = 0;
  const char *path = dz_write_list(&z, "long.csv", 0, N, NULL, &total, 0);
  dz_result *r = malloc(sizeof *r);
  cr_assert_not_null(r);
  dz_submit(&z, r, path, 1, N, total, NULL);
  cr_assert_eq(r->status, 0, "%s%s", r->out, r->err);
  dz_report rep = dz_get_report(&z, dz_batch_of(r), r);
  cr_assert_eq(rep.n, N, "every item, across three pages");
  uint64_t sum = 0;
  for (size_t i = 0; i < rep.n; i++) {
    cr_assert_eq(rep.rows[i].line, i + 2, "in line order, once each");
    cr_assert_str_eq(rep.rows[i].status, "pending");
    cr_assert_eq(rep.rows[i].amount, dz_ben_make(&z, (int)i).amount);
    sum += rep.rows[i].amount;
  }
  cr_assert_eq(sum, total);
  cr_assert(strstr(r->err, "2100 items: paid 0") != NULL, "%s", r->err);
  free(rep.rows);
  free(r);
  dz_done(&z);
}

/* Approval: only an approver, never the submitter's identity; the roles of the other verbs. */
Test(disburse, maker_checker) {
  dz_fixture z;
  dz_start(&z, &CFG, 0);
  dz_make_programme(&z, 10000000);
  dz_register_beneficiaries(&z, 3, NULL, 0);
  dz_result *r = malloc(sizeof *r);
  cr_assert_not_null(r);
  uint64_t total = 0;
  const char *path = dz_write_list(&z, "list.csv", 0, 3, NULL, &total, 0);
  /* An approver cannot submit; a manager cannot fund. */
  const char *args[] = {
      "disburse", "submit",         "--programme", DZ_PROG,          "--cycle",     "1", "--file",
      path,       "--expect-count", "3",           "--expect-total", dz_kes(total), NULL};
  dz_cli_runv(&z, r, T_CMD, "approver", args);
  cr_assert_eq(r->status, 1, "an approver may not submit: %s%s", r->out, r->err);
  DZ_CLI_REFUSED(&z, r, "manager", "disburse", "programme", "fund", "--programme", DZ_PROG,
                 "--amount", "10");
  dz_submit(&z, r, path, 1, 3, total, NULL);
  cr_assert_eq(r->status, 0, "%s%s", r->out, r->err);
  char batch[24];
  snprintf(batch, sizeof batch, "%" PRIu64, dz_batch_of(r));

  DZ_CLI_REFUSED(&z, r, "manager", "disburse", "approve", batch);
  cr_assert(strstr(r->err, "refused: ") != NULL, "code and text: %s", r->err);
  DZ_CLI_REFUSED(&z, r, "manager2", "disburse", "approve", batch);
  DZ_CLI_REFUSED(&z, r, "admin", "disburse", "approve", batch);
  /* An approver certificate with the submitter's name (CN=manager). */
  char dir[SH_PATH_MAX + 32], as[SH_PATH_MAX + 48];
  snprintf(dir, sizeof dir, "%s/same-name", z.h->dir);
  cr_assert_eq(mkdir(dir, 0700), 0);
  cr_assert_eq(sh_issue(z.h, "manager", "approver", dir, NULL), 0);
  snprintf(as, sizeof as, "%s/manager", dir);
  DZ_CLI_REFUSED(&z, r, as, "disburse", "approve", batch);
  cr_assert_str_eq(dz_batch_status(&z, strtoull(batch, NULL, 10)).state, "submitted");

  DZ_CLI_OK(&z, r, "approver", "disburse", "approve", batch);
  cr_assert(strstr(r->out, "approved") != NULL, "%s", r->out);
  DZ_CLI_OK(&z, r, "admin", "disburse", "status", batch);
  cr_assert(strstr(r->out, "submitted by manager") && strstr(r->out, "approved by approver"), "%s",
            r->out);
  free(r);
  dz_done(&z);
}

/* Approval reserves the batch's total: refused while the budget is short, accepted after a
 * top-up. A fund id makes a repeated top-up harmless. */
Test(disburse, budget_short_then_topped_up) {
  dz_fixture z;
  dz_start(&z, &CFG, 4);
  dz_make_programme(&z, 10000); /* 100.00 */
  dz_register_beneficiaries(&z, 4, NULL, 0);
  dz_result *r = malloc(sizeof *r);
  cr_assert_not_null(r);
  uint64_t total = 0;
  const char *path = dz_write_list(&z, "list.csv", 0, 4, NULL, &total, 0);
  dz_submit(&z, r, path, 1, 4, total, NULL);
  cr_assert_eq(r->status, 0, "%s%s", r->out, r->err);
  char batch[24];
  snprintf(batch, sizeof batch, "%" PRIu64, dz_batch_of(r));
  DZ_CLI_REFUSED(&z, r, "approver", "disburse", "approve", batch);
  cr_assert(strstr(r->err, "refused: ") && strstr(r->err, "budget"), "why: %s", r->err);
  dz_prog_info pi = dz_programme_show(&z);
  cr_assert_eq(pi.budget, 10000);
  cr_assert_eq(pi.available, 10000, "nothing reserved by a refused approval");

  const char *id = "0123456789abcdef0123456789abcdef";
  DZ_CLI_OK(&z, r, "admin", "disburse", "programme", "fund", "--programme", DZ_PROG, "--amount",
            "1000", "--id", id);
  DZ_CLI_OK(&z, r, "admin", "disburse", "programme", "fund", "--programme", DZ_PROG, "--amount",
            "1000", "--id", id);
  cr_assert(strstr(r->out, "budget 1100.00 KES, available 1100.00 KES") != NULL, "%s", r->out);
  pi = dz_programme_show(&z);
  cr_assert_eq(pi.budget, 10000 + 100000, "the same fund id moves the money once");

  DZ_CLI_OK(&z, r, "approver", "disburse", "approve", batch);
  uint64_t b = strtoull(batch, NULL, 10);
  dz_wait_status(&z, b, dz_state_is, "completed", T_PAY, "completed");
  pi = dz_programme_show(&z);
  cr_assert_eq(pi.budget, 110000 - total, "the budget paid the batch");
  cr_assert_eq(pi.reserved, 0);
  cr_assert_eq(pi.available, 110000 - total);
  free(r);
  dz_done(&z);
}

/* 50 beneficiaries on alpha and beta, paid to completion: each wallet credited once, the
 * report's paid amounts = the list = what left the programme's budget = what the wallets got. */
Test(disburse, small_batch_paid_and_reconciled) {
  dz_fixture z;
  dz_start(&z, &CFG, 25);
  dz_make_programme(&z, 10000000);
  dz_prog_info before = dz_programme_show(&z);
  dz_register_beneficiaries(&z, 50, NULL, 0);
  uint64_t total = 0, per_op[2] = {0, 0};
  const char *path = dz_write_list(&z, "list.csv", 0, 50, NULL, &total, 1);
  for (int k = 0; k < 50; k++)
    per_op[dz_ben_make(&z, k).op] += dz_ben_make(&z, k).amount;
  uint64_t batch = submit_and_approve(&z, path, 50, total, NULL);

  dz_result *r = malloc(sizeof *r);
  cr_assert_not_null(r);
  const char *args[] = {"disburse", "status", dz_u64s(batch), "--watch", "--interval", "1", NULL};
  dz_cli_runv(&z, r, T_PAY, "manager", args);
  cr_assert_eq(r->status, 0, "status --watch ends when the batch does: %s%s", r->out, r->err);
  const char *last = strstr(r->out, "state completed");
  cr_assert_not_null(last, "%s", r->out);
  cr_assert(strstr(last, "100%") != NULL, "%s", last);
  dz_status s = dz_batch_status(&z, batch);
  cr_assert_eq(s.n[3], 50, "50 paid");
  cr_assert_eq(s.amount[3], total);

  /* The wallets: each beneficiary's credited once, with its amount. */
  for (int op = 0; op < 2; op++) {
    dz_credits c;
    dz_opsim_credits(&z, op, &c, 0);
    cr_assert_eq(c.in_count, 25, "%s: 25 credits", DZ_OPS[op]);
    cr_assert_eq(c.in_amount, per_op[op], "%s: the amounts of its beneficiaries", DZ_OPS[op]);
    cr_assert_eq(c.pending, 0);
    for (int k = op; k < 50; k += 2) {
      dz_ben b = dz_ben_make(&z, k);
      cr_assert_eq(c.per_wallet[b.wallet], 1, "%s wallet %d credited once", DZ_OPS[op], b.wallet);
      cr_assert_eq(c.amount_wallet[b.wallet], b.amount);
    }
  }

  /* The report. */
  dz_report rep = dz_get_report(&z, batch, r);
  cr_assert_eq(rep.n, 50);
  uint64_t paid = 0;
  for (size_t i = 0; i < rep.n; i++) {
    const dz_row *w = &rep.rows[i];
    cr_assert_str_eq(w->status, "paid", "line %" PRIu64, w->line);
    cr_assert_str_eq(w->currency, "KES");
    cr_assert_eq(w->cycle, 1);
    cr_assert_eq(strlen(w->transfer_id), 32, "a transfer id of 32 hex: %s", w->transfer_id);
    cr_assert_eq(strlen(w->completed), 24, "an RFC 3339 time: %s", w->completed);
    cr_assert_eq(w->completed[23], 'Z');
    dz_ben b = dz_ben_make(&z, (int)w->line - 2);
    cr_assert_eq(w->amount, b.amount, "line %" PRIu64, w->line);
    cr_assert_str_eq(w->op, DZ_OPS[b.op], "line %" PRIu64, w->line);
    cr_assert(strstr(w->beneficiary, b.id) == NULL && strchr(w->beneficiary, '*') != NULL,
              "masked: %s", w->beneficiary);
    for (size_t j = 0; j < i; j++)
      cr_assert_str_neq(w->transfer_id, rep.rows[j].transfer_id, "transfer ids differ");
    paid += w->amount;
  }
  cr_assert_eq(paid, total, "the report's paid amounts are the list's total");
  cr_assert(strstr(r->err, "50 items: paid 50") != NULL, "totals on stderr: %s", r->err);
  cr_assert(strstr(r->err, dz_kes(total)) != NULL, "%s", r->err);
  free(rep.rows);

  /* The programme's funding account. */
  dz_prog_info after = dz_programme_show(&z);
  cr_assert_eq(before.budget - after.budget, total, "the budget moved by the paid total");
  cr_assert_eq(after.reserved, 0);

  /* Reach: everyone, paid; small cells suppressed. */
  DZ_CLI_OK(&z, r, "approver", "disburse", "reach", dz_u64s(batch), "--csv");
  cr_assert(strstr(r->out, "dimension,value,people,paid,failed,median_seconds\n") == r->out, "%s",
            r->out);
  cr_assert(strstr(r->out, "\nall,") != NULL, "an 'all' cell: %s", r->out);
  const char *all = strstr(r->out, "\nall,");
  cr_assert(strstr(all, ",50,50,0,") != NULL, "50 people, 50 paid, 0 failed: %s", all);
  cr_assert(strstr(r->out, "\nsex,F,25,25,0,") && strstr(r->out, "\nsex,M,25,25,0,"), "%s", r->out);
  cr_assert(strstr(r->out, "\nregion,Turkana,45,45,0,") != NULL, "%s", r->out);
  cr_assert(strstr(r->out, "\nregion,Lamu,<10,<10,<10,<10\n") != NULL,
            "a cell of 5 people is suppressed: %s", r->out);
  cr_assert(strstr(r->out, "\noperator,alpha,25,25,0,") &&
                strstr(r->out, "\noperator,beta,25,25,0,"),
            "%s", r->out);
  DZ_CLI_OK(&z, r, "manager", "disburse", "reach", dz_u64s(batch));
  cr_assert(strstr(r->out, "DIMENSION") != NULL && strstr(r->out, "<10") != NULL, "%s", r->out);
  free(r);
  dz_done(&z);
}

/* A slow batch cancelled midway: what was paid stays paid, the rest is cancelled and its money
 * is available to the programme again. */
Test(disburse, cancel_mid_batch) {
  dz_fixture z;
  dz_start(&z, &CFG, 20);
  dz_make_programme(&z, 10000000);
  dz_prog_info before = dz_programme_show(&z);
  dz_register_beneficiaries(&z, 40, NULL, 0);
  uint64_t total = 0;
  const char *path = dz_write_list(&z, "list.csv", 0, 40, NULL, &total, 0);
  const char *slow[] = {"--rate", "2", NULL};
  uint64_t batch = submit_and_approve(&z, path, 40, total, slow);
  uint64_t two = 2;
  dz_wait_status(&z, batch, dz_paid_at_least, &two, 30000, "2 paid");
  dz_result *r = malloc(sizeof *r);
  cr_assert_not_null(r);
  DZ_CLI_OK(&z, r, "approver", "disburse", "cancel", dz_u64s(batch));
  dz_status s = dz_wait_status(&z, batch, dz_state_is, "cancelled", 30000, "cancelled");
  cr_assert_gt(s.n[5], 0, "some items cancelled");
  cr_assert_lt(s.n[3], 40, "not all paid");

  dz_report rep = dz_get_report(&z, batch, r);
  cr_assert_eq(rep.n, 40);
  uint64_t paid = 0, npaid = 0, ncancelled = 0;
  for (size_t i = 0; i < rep.n; i++) {
    const dz_row *w = &rep.rows[i];
    if (strcmp(w->status, "paid") == 0) {
      paid += w->amount;
      npaid++;
    } else {
      cr_assert_str_eq(w->status, "cancelled", "line %" PRIu64 " is %s", w->line, w->status);
      cr_assert_str_eq(w->reason, "cancelled", "line %" PRIu64, w->line);
      cr_assert_eq(w->transfer_id[0] == '\0' || strlen(w->transfer_id) == 32, 1);
      ncancelled++;
    }
  }
  cr_assert_eq(npaid + ncancelled, 40);
  cr_assert_gt(ncancelled, 0);
  cr_assert_eq(npaid, s.n[3]);
  free(rep.rows);

  uint64_t credited = 0, credited_amount = 0;
  for (int op = 0; op < 2; op++) {
    dz_credits c;
    dz_opsim_credits(&z, op, &c, 0);
    credited += c.in_count;
    credited_amount += c.in_amount;
  }
  cr_assert_eq(credited, npaid, "the wallets got exactly the paid items");
  cr_assert_eq(credited_amount, paid);
  dz_prog_info after = dz_programme_show(&z);
  cr_assert_eq(after.reserved, 0, "nothing stays reserved");
  cr_assert_eq(after.available, before.available - paid,
               "the cancelled items' money is available again");
  cr_assert_eq(after.budget, before.budget - paid);
  DZ_CLI_REFUSED(&z, r, "approver", "disburse", "approve", dz_u64s(batch));
  free(r);
  dz_done(&z);
}

/* The payee operator beta is offline: its items wait and retry; once it is back they are paid,
 * each once. */
Test(disburse, payee_offline_then_back) {
  dz_fixture z;
  dz_start(&z, &CFG, 10);
  dz_make_programme(&z, 10000000);
  dz_register_beneficiaries(&z, 20, NULL, 0);
  uint64_t total = 0;
  const char *path = dz_write_list(&z, "list.csv", 0, 20, NULL, &total, 0);
  dz_opsim_stop(&z, 1);
  uint64_t batch = submit_and_approve(&z, path, 20, total, NULL);
  uint64_t ten = 10;
  dz_status s = dz_wait_status(&z, batch, dz_paid_at_least, &ten, 30000, "alpha's 10 paid");
  dz_sleep_ms(1500); /* a few retries to beta meanwhile */
  s = dz_batch_status(&z, batch);
  cr_assert_eq(s.n[3], 10, "only alpha's items are paid while beta is away");
  cr_assert_eq(s.n[4], 0, "beta's items wait for a retry, they do not fail");
  cr_assert_str_neq(s.state, "completed");
  dz_opsim_start(&z, 1);
  dz_wait_status(&z, batch, dz_state_is, "completed", T_PAY, "completed");
  s = dz_batch_status(&z, batch);
  cr_assert_eq(s.n[3], 20, "all paid");
  for (int op = 0; op < 2; op++) {
    dz_credits c;
    dz_opsim_credits(&z, op, &c, 0);
    cr_assert_eq(c.in_count, 10, "%s: 10 credits", DZ_OPS[op]);
    for (int w = 0; w < 10; w++)
      cr_assert_eq(c.per_wallet[w], 1, "%s wallet %d credited once", DZ_OPS[op], w);
  }
  dz_done(&z);
}

/* The payee operator refuses every payment (5105): those items fail at once, with the reason,
 * and their money goes back to the programme; a failed beneficiary may be paid by another batch
 * of the same cycle, a paid one may not. */
Test(disburse, refused_payments_fail_and_release_their_money) {
  dz_fixture z;
  dz_start(&z, &CFG, 5);
  dz_make_programme(&z, 10000000);
  dz_prog_info before = dz_programme_show(&z);
  dz_register_beneficiaries(&z, 10, NULL, 0);
  dz_opsim_stop(&z, 1);
  const char *reject[] = {"--reject-percent", "100", NULL};
  dz_opsim_start_with(&z, 1, reject);
  uint64_t total = 0, alpha_sum = 0, beta_sum = 0;
  const char *path = dz_write_list(&z, "list.csv", 0, 10, NULL, &total, 0);
  for (int k = 0; k < 10; k++)
    *(dz_ben_make(&z, k).op == 0 ? &alpha_sum : &beta_sum) += dz_ben_make(&z, k).amount;
  uint64_t batch = submit_and_approve(&z, path, 10, total, NULL);
  dz_status s = dz_wait_status(&z, batch, dz_state_is, "completed", T_PAY, "completed");
  cr_assert_eq(s.n[3], 5, "alpha's 5 paid");
  cr_assert_eq(s.n[4], 5, "beta's 5 failed");
  cr_assert_eq(s.amount[4], beta_sum);
  dz_result *r = malloc(sizeof *r);
  cr_assert_not_null(r);
  dz_report rep = dz_get_report(&z, batch, r);
  cr_assert_eq(rep.n, 10);
  for (size_t i = 0; i < rep.n; i++) {
    const dz_row *w = &rep.rows[i];
    if (strcmp(w->op, "beta") == 0) {
      cr_assert_str_eq(w->status, "failed", "line %" PRIu64, w->line);
      cr_assert_eq(w->reason_code, 5105, "line %" PRIu64 ": the operator's reason", w->line);
      cr_assert_neq(w->reason[0], '\0', "a reason text");
    } else {
      cr_assert_str_eq(w->status, "paid", "line %" PRIu64, w->line);
    }
  }
  free(rep.rows);
  cr_assert(strstr(r->err, "paid 5") && strstr(r->err, "failed 5"), "%s", r->err);
  dz_prog_info after = dz_programme_show(&z);
  cr_assert_eq(before.budget - after.budget, alpha_sum, "only the paid items left the budget");
  cr_assert_eq(after.reserved, 0);
  cr_assert_eq(after.available, before.available - alpha_sum);
  cr_assert_eq(dz_opsim_credit_count(&z, 1), 0, "beta credited nothing");

  /* beta accepts again: its beneficiaries (failed in cycle 1) may be paid in cycle 1 by a new
   * batch; alpha's (paid) may not. */
  dz_opsim_stop(&z, 1);
  dz_opsim_start(&z, 1);
  static char text[DZ_FILE];
  size_t len = (size_t)snprintf(text, sizeof text,
                                "beneficiary_id_type,beneficiary_id,amount,currency,reference\n");
  for (int k = 1; k < 10; k += 2)
    len += (size_t)snprintf(text + len, sizeof text - len, "national_id,%s,%s,KES,again-%d\n",
                            dz_ben_make(&z, k).id, dz_kes(dz_ben_make(&z, k).amount), k);
  char again[SH_PATH_MAX + 32];
  snprintf(again, sizeof again, "%s/again.csv", z.h->dir);
  dz_write_file(again, text);
  uint64_t batch2 = submit_and_approve(&z, again, 5, beta_sum, NULL);
  s = dz_wait_status(&z, batch2, dz_state_is, "completed", T_PAY, "completed");
  cr_assert_eq(s.n[3], 5);
  dz_credits c;
  dz_opsim_credits(&z, 1, &c, 0);
  for (int w = 0; w < 5; w++)
    cr_assert_eq(c.per_wallet[w], 1, "beta wallet %d paid once", w);
  const char *paid = dz_write_list(&z, "paid.csv", 0, 1, NULL, &total, 0);
  dz_submit(&z, r, paid, 1, 1, total, NULL);
  cr_assert_eq(r->status, 1, "a beneficiary paid in cycle 1 cannot be listed again: %s%s", r->out,
               r->err);
  cr_assert(strstr(r->err, "line 2: already in batch") != NULL, "%s", r->err);
  free(r);
  dz_done(&z);
}

/* A list paid for two cycles, 3 s apart: every beneficiary once per cycle. */
Test(disburse, recurring_cycles_pay_once_per_cycle) {
  dz_fixture z;
  dz_start(&z, &CFG, 5);
  dz_make_programme(&z, 10000000);
  dz_prog_info before = dz_programme_show(&z);
  dz_register_beneficiaries(&z, 10, NULL, 0);
  uint64_t total = 0;
  const char *path = dz_write_list(&z, "list.csv", 0, 10, NULL, &total, 0);
  const char *cycles[] = {"--cycles", "2", "--every", "3s", NULL};
  uint64_t batch = submit_and_approve(&z, path, 10, total, cycles);
  dz_wait_status(&z, batch, dz_state_is, "completed", T_PAY, "completed");
  dz_result *r = malloc(sizeof *r);
  cr_assert_not_null(r);
  dz_report rep = dz_get_report(&z, batch, r);
  cr_assert_eq(rep.n, 20, "10 items in each of 2 cycles");
  int per_cycle[3] = {0, 0, 0};
  for (size_t i = 0; i < rep.n; i++) {
    const dz_row *w = &rep.rows[i];
    cr_assert(w->cycle == 1 || w->cycle == 2, "cycle %" PRIu32, w->cycle);
    cr_assert_str_eq(w->status, "paid");
    per_cycle[w->cycle]++;
    for (size_t j = 0; j < i; j++) {
      cr_assert(!(rep.rows[j].cycle == w->cycle && rep.rows[j].line == w->line),
                "(cycle, line) once");
      cr_assert_str_neq(rep.rows[j].transfer_id, w->transfer_id);
    }
  }
  cr_assert_eq(per_cycle[1], 10);
  cr_assert_eq(per_cycle[2], 10);
  free(rep.rows);
  for (int op = 0; op < 2; op++) {
    dz_credits c;
    dz_opsim_credits(&z, op, &c, 0);
    cr_assert_eq(c.in_count, 10, "%s: 5 wallets × 2 cycles", DZ_OPS[op]);
    for (int w = 0; w < 5; w++)
      cr_assert_eq(c.per_wallet[w], 2, "%s wallet %d credited once per cycle", DZ_OPS[op], w);
  }
  dz_prog_info after = dz_programme_show(&z);
  cr_assert_eq(before.budget - after.budget, 2 * total);
  free(r);
  dz_done(&z);
}

/* A batch scheduled an hour ahead: approval reserves its total (nothing is paid yet) and that
 * money cannot be approved twice — a second batch waits; a cancel before the start releases the
 * reservation, and the second batch is then approved and paid. */
Test(disburse, scheduled_batch_holds_its_reservation_until_cancelled) {
  dz_fixture z;
  dz_start(&z, &CFG, 2);
  dz_register_beneficiaries(&z, 4, NULL, 0);
  uint64_t total = 0;
  const char *path = dz_write_list(&z, "list.csv", 0, 4, NULL, &total, 0);
  dz_make_programme(&z, total + total / 2); /* one batch's worth and a half */
  dz_prog_info before = dz_programme_show(&z);
  const char *later[] = {"--at", "+1h", NULL};
  uint64_t batch = submit_and_approve(&z, path, 4, total, later);
  dz_status s = dz_batch_status(&z, batch);
  cr_assert_str_eq(s.state, "approved");
  cr_assert_eq(s.n[3], 0, "nothing paid before the start");
  dz_prog_info held = dz_programme_show(&z);
  cr_assert_eq(held.reserved, total, "approval reserved the batch's total");
  cr_assert_eq(held.available, before.available - total);
  dz_result *r = malloc(sizeof *r);
  cr_assert_not_null(r);
  DZ_CLI_OK(&z, r, "manager", "disburse", "status", dz_u64s(batch));
  cr_assert(strstr(r->out, "starts at ") != NULL, "%s", r->out);

  /* The same list for cycle 2, due now: the reservation of the first leaves too little. */
  dz_submit(&z, r, path, 2, 4, total, NULL);
  cr_assert_eq(r->status, 0, "%s%s", r->out, r->err);
  char second[24];
  snprintf(second, sizeof second, "%" PRIu64, dz_batch_of(r));
  DZ_CLI_REFUSED(&z, r, "approver", "disburse", "approve", second);
  cr_assert(strstr(r->err, "refused: 4001") != NULL, "%s", r->err);

  DZ_CLI_OK(&z, r, "manager", "disburse", "cancel", dz_u64s(batch));
  s = dz_wait_status(&z, batch, dz_state_is, "cancelled", 30000, "cancelled");
  dz_prog_info after = dz_programme_show(&z);
  cr_assert_eq(after.reserved, 0);
  cr_assert_eq(after.available, before.available, "the reservation is released");
  cr_assert_eq(after.budget, before.budget);
  for (int op = 0; op < 2; op++)
    cr_assert_eq(dz_opsim_credit_count(&z, op), 0, "%s: nothing paid", DZ_OPS[op]);

  DZ_CLI_OK(&z, r, "approver", "disburse", "approve", second);
  dz_wait_status(&z, strtoull(second, NULL, 10), dz_state_is, "completed", T_PAY, "completed");
  after = dz_programme_show(&z);
  cr_assert_eq(after.budget, before.budget - total);
  cr_assert_eq(dz_opsim_credit_count(&z, 0) + dz_opsim_credit_count(&z, 1), 4);
  free(r);
  dz_done(&z);
}

/* A recurring batch whose second cycle finds the budget short waits for funds, and goes on
 * once the programme is topped up. */
Test(disburse, recurring_cycle_waits_for_funds) {
  dz_fixture z;
  dz_start(&z, &CFG, 3);
  dz_register_beneficiaries(&z, 6, NULL, 0);
  uint64_t total = 0;
  const char *path = dz_write_list(&z, "list.csv", 0, 6, NULL, &total, 0);
  dz_make_programme(&z, total); /* exactly one cycle */
  const char *cycles[] = {"--cycles", "2", "--every", "2s", NULL};
  uint64_t batch = submit_and_approve(&z, path, 6, total, cycles);
  dz_status s = dz_wait_status(&z, batch, dz_state_is, "waiting_funds", 60000, "waiting_funds");
  dz_prog_info pi = dz_programme_show(&z);
  cr_assert_eq(pi.budget, 0, "cycle 1 spent the budget");
  cr_assert_eq(dz_opsim_credit_count(&z, 0) + dz_opsim_credit_count(&z, 1), 6,
               "cycle 1 paid while cycle 2 waits");
  dz_result *r = malloc(sizeof *r);
  cr_assert_not_null(r);
  DZ_CLI_OK(&z, r, "admin", "disburse", "programme", "fund", "--programme", DZ_PROG, "--amount",
            dz_kes(total));
  s = dz_wait_status(&z, batch, dz_state_is, "completed", T_PAY, "completed");
  cr_assert_eq(s.n[3], 6, "cycle 2: 6 paid");
  pi = dz_programme_show(&z);
  cr_assert_eq(pi.budget, 0);
  cr_assert_eq(pi.reserved, 0);
  for (int op = 0; op < 2; op++) {
    dz_credits c;
    dz_opsim_credits(&z, op, &c, 0);
    for (int w = 0; w < 3; w++)
      cr_assert_eq(c.per_wallet[w], 2, "%s wallet %d paid in both cycles", DZ_OPS[op], w);
  }
  free(r);
  dz_done(&z);
}

/* tumad killed (SIGKILL) in the middle of a batch and restarted on its data directory: the
 * batch completes and no beneficiary is paid twice. */
Test(disburse, switch_killed_mid_batch_pays_each_once) {
  dz_fixture z;
  dz_start(&z, &CFG, 20);
  dz_make_programme(&z, 10000000);
  dz_prog_info before = dz_programme_show(&z);
  dz_register_beneficiaries(&z, 40, NULL, 0);
  uint64_t total = 0;
  const char *path = dz_write_list(&z, "list.csv", 0, 40, NULL, &total, 0);
  const char *slow[] = {"--rate", "8", NULL};
  uint64_t batch = submit_and_approve(&z, path, 40, total, slow);
  uint64_t some = 5;
  dz_status mid = dz_wait_status(&z, batch, dz_paid_at_least, &some, 30000, "5 paid");
  cr_assert_lt(mid.n[3], 40, "the batch is still running when tumad is killed");
  /* A watch that outlives the switch's restart. */
  dz_proc watch;
  const char *watch_args[] = {"disburse", "status", dz_u64s(batch), "--watch", "--interval",
                              "1",        NULL};
  dz_cli_spawn(&z, &watch, "approver", watch_args);
  dz_sleep_ms(300);
  cr_assert_eq(sh_kill(z.h), 0, "kill -9 tumad");
  dz_sleep_ms(1500); /* down for more than the watch's interval */
  char err[512] = "";
  cr_assert_eq(sh_start(z.h, T_START, err, sizeof err), 0, "%s", err);
  dz_status s =
      dz_wait_status(&z, batch, dz_state_is, "completed", T_PAY, "completed after the restart");
  cr_assert_eq(s.n[3], 40, "all 40 paid");
  static char out[DZ_OUT];
  int watched = dz_proc_wait(&watch, T_PAY);
  dz_read_file(watch.err, out);
  cr_assert_eq(watched, 0, "status --watch rode out the restart: %s", out);
  cr_assert(strstr(out, "tuma disburse status: ") != NULL, "a poll failed while tumad was down");
  cr_assert(strstr(dz_read_file(watch.out, out), "state completed") != NULL, "%s", out);
  for (int op = 0; op < 2; op++) {
    dz_credits c;
    dz_opsim_credits(&z, op, &c, 0);
    cr_assert_eq(c.pending, 0);
    for (int w = 0; w < 20; w++)
      cr_assert_eq(c.per_wallet[w], 1, "%s wallet %d credited exactly once", DZ_OPS[op], w);
  }
  dz_prog_info after = dz_programme_show(&z);
  cr_assert_eq(before.budget - after.budget, total, "the budget paid each item once");
  cr_assert_eq(after.reserved, 0);
  dz_done(&z);
}

/* One beneficiary at a time (id masked in the output), an upload with refused rows named by
 * line, and who may register. */
Test(disburse, beneficiary_registration) {
  dz_fixture z;
  dz_start(&z, &CFG, 0);
  dz_result *r = malloc(sizeof *r);
  cr_assert_not_null(r);
  DZ_CLI_OK(&z, r, "manager", "disburse", "beneficiary", "add", "--type", "national_id", "--id",
            "27845119", "--msisdn", "254700000001", "--operator", "alpha");
  cr_assert(strstr(r->out, "278***19") != NULL, "masked: %s", r->out);
  cr_assert(strstr(r->out, "27845119") == NULL && strstr(r->out, "254700000001") == NULL,
            "nothing in clear: %s", r->out);
  DZ_CLI_OK(&z, r, "admin", "disburse", "beneficiary", "add", "--type", "refugee_id", "--id",
            "KAK-104", "--msisdn", "254710000002");
  cr_assert(strstr(r->out, "*******") != NULL && strstr(r->out, "KAK") == NULL,
            "a short id masked whole: %s", r->out);
  DZ_CLI_REFUSED(&z, r, "approver", "disburse", "beneficiary", "add", "--type", "national_id",
                 "--id", "27845120", "--msisdn", "254700000003");

  char path[SH_PATH_MAX + 32];
  snprintf(path, sizeof path, "%s/ben.csv", z.h->dir);
  dz_write_file(path, "beneficiary_id_type,beneficiary_id,msisdn,operator\n"
                      "national_id,40000001,254700000011,alpha\n"
                      "national_id,40000002,25470000x012,alpha\n"
                      "passport,40000003,254700000013,\n"
                      "national_id,40000004,254710000014,\n");
  /* A file the switch cannot read at all (its header) is refused whole. */
  char bad[SH_PATH_MAX + 32];
  snprintf(bad, sizeof bad, "%s/bad-header.csv", z.h->dir);
  dz_write_file(bad, "beneficiary_id_type,beneficiary_id,msisdn,operater\n"
                     "national_id,40000009,254700000019,alpha\n");
  DZ_CLI_REFUSED(&z, r, "manager", "disburse", "beneficiary", "upload", "--file", bad);
  cr_assert(strstr(r->err, "refused: 3100") && strstr(r->err, "operater"), "%s", r->err);
  DZ_CLI_OK(&z, r, "manager", "disburse", "beneficiary", "upload", "--file", path, "--chunk-bytes",
            "64");
  cr_assert(strstr(r->out, "registered 2, refused 2") != NULL, "%s", r->out);
  cr_assert(strstr(r->out, "line 3: ") && strstr(r->out, "line 4: "), "%s", r->out);
  cr_assert(!strstr(r->out, "line 2: ") && !strstr(r->out, "line 5: "), "%s", r->out);
  free(r);
  dz_done(&z);
}

/* Usage errors exit 2 before anything is attempted (no switch runs here: 1 would mean it tried
 * to connect); a command that is fine but finds no switch exits 1. */
Test(disburse, usage_errors_exit_2) {
  const char *bin = getenv("TUMA_CLI");
  cr_assert_not_null(bin);
  const char *tmp = getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp";
  char dir[SH_PATH_MAX];
  snprintf(dir, sizeof dir, "%s/tuma-dz-XXXXXX", tmp);
  cr_assert_not_null(mkdtemp(dir));
  char file[SH_PATH_MAX + 16];
  snprintf(file, sizeof file, "%s/l.csv", dir);
  dz_write_file(file, "beneficiary_id_type,beneficiary_id,amount,currency,reference\n");
  const char *conn = "--connect=127.0.0.1:1";
  const char *const cases[][20] = {
      {"disburse", NULL},
      {"disburse", "frobnicate", NULL},
      {"disburse", "programme", "create", "--id", "Bad_Id", "--name", "x", "--currency", "KES",
       "--funding", "gamma", NULL},
      {"disburse", "programme", "create", "--id", "p", "--name", "x", "--currency", "XYZ",
       "--funding", "gamma", NULL},
      {"disburse", "programme", "create", "--id", "p", "--name", "x", "--currency", "KES",
       "--funding", "gamma", "--cap", "1.001", NULL},
      {"disburse", "programme", "create", "--id", "p", "--name", "x", "--currency", "KES",
       "--funding", "gamma", "--end", "2026-02-30T00:00:00Z", NULL},
      {"disburse", "programme", "fund", "--programme", "p", "--amount", "-5", NULL},
      {"disburse", "programme", "fund", "--programme", "p", "--amount", "5", "--id", "xyz", NULL},
      {"disburse", "beneficiary", "add", "--type", "passport", "--id", "1", "--msisdn", "25470",
       NULL},
      {"disburse", "beneficiary", "add", "--type", "msisdn", "--id", "12", "--msisdn",
       "254700000001", NULL},
      {"disburse", "submit", "--programme", "p", "--cycle", "0", "--file", file, "--expect-count",
       "1", "--expect-total", "1", NULL},
      {"disburse", "submit", "--programme", "p", "--cycle", "1", "--file", file, "--expect-count",
       "1", "--expect-total", "1e2", NULL},
      {"disburse", "submit", "--programme", "p", "--cycle", "1", "--file", file, "--expect-count",
       "1", "--expect-total", "1", "--cycles", "2", NULL},
      {"disburse", "submit", "--programme", "p", "--cycle", "1", "--file", file, "--expect-count",
       "1", "--expect-total", "1", "--every", "5x", "--cycles", "2", NULL},
      {"disburse", "submit", "--programme", "p", "--cycle", "1", "--file", "/nonexistent",
       "--expect-count", "1", "--expect-total", "1", NULL},
      {"disburse", "approve", "0", NULL},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    const char *argv[24];
    int n = 0;
    argv[n++] = bin;
    for (int j = 0; cases[k][j] != NULL; j++)
      argv[n++] = cases[k][j];
    argv[n++] = conn;
    argv[n] = NULL;
    dz_proc p;
    dz_proc_start(&p, dir, "usage", argv);
    int st = dz_proc_wait(&p, T_CMD);
    static char err[DZ_OUT];
    cr_assert_eq(st, 2, "case %zu (%s %s %s) exits 2, got %d: %s", k, cases[k][1],
                 cases[k][2] ? cases[k][2] : "", cases[k][3] ? cases[k][3] : "", st,
                 dz_read_file(p.err, err));
  }
  /* Help: exit 0, every command listed; `tuma --help` names disburse. */
  static const char *const helps[][4] = {
      {"disburse", "--help", NULL}, {"disburse", "submit", "--help", NULL}, {"--help", NULL}};
  for (size_t k = 0; k < sizeof helps / sizeof helps[0]; k++) {
    const char *argv[8] = {bin};
    for (int j = 0; helps[k][j] != NULL; j++)
      argv[j + 1] = helps[k][j];
    dz_proc h;
    dz_proc_start(&h, dir, "help", argv);
    cr_assert_eq(dz_proc_wait(&h, T_CMD), 0, "help %zu exits 0", k);
    static char out[DZ_OUT];
    dz_read_file(h.out, out);
    static const char *const words[] = {"programme create", "beneficiary upload",
                                        "submit",           "approve",
                                        "cancel",           "status",
                                        "report",           "reach"};
    if (k < 2)
      for (size_t w = 0; w < sizeof words / sizeof words[0]; w++)
        cr_assert(strstr(out, words[w]) != NULL, "'%s' in the help: %s", words[w], out);
    else
      cr_assert(strstr(out, "disburse") != NULL, "%s", out);
    unlink(h.out);
    unlink(h.err);
  }
  const char *fine[] = {bin,  "disburse", "status", "7",     conn, "--ca",
                        file, "--cert",   file,     "--key", file, NULL};
  dz_proc p;
  dz_proc_start(&p, dir, "fine", fine);
  cr_assert_eq(dz_proc_wait(&p, T_CMD), 1, "a well-formed command that cannot connect exits 1");
  unlink(p.out);
  unlink(p.err);
  char path[SH_PATH_MAX + 16];
  snprintf(path, sizeof path, "%s/usage.out", dir);
  unlink(path);
  snprintf(path, sizeof path, "%s/usage.err", dir);
  unlink(path);
  unlink(file);
  rmdir(dir);
}
