/* test_disburse_crash.c — the disbursement crash test (issue 5): tumad is killed with SIGKILL at
 * random moments while it pays a batch to simulated operators (tuma-opsim alpha and beta as the
 * payees, tests/switch_harness.h for tumad), restarted on the same data directory each time, and
 * left to finish; then every beneficiary's wallet was credited exactly once per cycle, and the
 * reconciliation report, the programme's budget, the ledger (read-only, after tumad stopped) and
 * the wallets agree.
 *
 * Scenarios: a batch of 300 at 40/s killed up to 5 times; a recurring batch (2 cycles, 3 s
 * apart) killed in both cycles; a payee offline while tumad is killed (items waiting for a retry
 * at the crash); without a kill, a payee offline then back (the report must name the transfer
 * that paid, not a try refused before the ledger); kills during the upload of a large list (the
 * batch is discarded at restart, the same file is then accepted and approved); the submitting
 * CLI killed mid-upload (tumad abandons it; restarts still work); a kill between submit and
 * approval; kills during approvals (no reservation may be left open or made twice).
 *
 * Randomness: the kill delays come from a seed drawn from the clock and printed on stderr
 * ("seed N"); TUMA_CRASH_SEED=N replays the same delays. Every loop is bounded in count and
 * time; no assertion is on a duration. When a test fails, its scratch directory is kept
 * (tumad.log across restarts, the commands' and opsims' output, commands.log, crashes.log).
 */
#include <criterion/criterion.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "audit.h"
#include "disburse_fixture.h"
#include "ledger.h"
#include "switch_harness.h"

#define T_START 20000 /* ms: tumad start-up (a restart included) */
#define T_READY 20000 /* ms: an opsim connected and its wallets registered */
#define T_CMD 60000   /* ms: a command that should finish promptly */
/* ms: after the last restart, the batch completes (an item in flight at a crash may wait for
 * its 30 s expiry, then retry) */
#define T_FINISH 180000
/* ms: items waiting for a retry (no ledger transfer) paid once the payee is back (backoff 1 s
 * doubling, a few tries) */
#define T_RETRIED 90000

enum { MAX_KILLS = 8 };

/* What a batch that never completes points at. */
#define STUCK "see crashes.log and tumad.log (disburse.resumed)"

/* The opsims get --pki; amounts repeat every 997 beneficiaries (lists of 20000 stay under the
 * programme's cap). */
static const dz_config CFG = {
    .start_ms = T_START, .ready_ms = T_READY, .cmd_ms = T_CMD, .opsim_pki = 1, .amount_wrap = 997};

/* The disbursement events of DIR/tumad.log (across restarts) to stderr: what a failure report
 * needs (resumed, cycle_started, …), without the connections of the status polls. */
static void dump_disburse_events(const sh_switch *h) {
  FILE *f = fopen(h->log, "r");
  if (f == NULL)
    return;
  char line[1024];
  int shown = 0;
  while (fgets(line, sizeof line, f) != NULL && shown < 200)
    if ((strstr(line, "event=disburse.") != NULL && strstr(line, "upload") == NULL) ||
        strstr(line, "event=transfers.recovered") != NULL) {
      fprintf(stderr, "[tumad] %s", line);
      shown++;
    }
  fclose(f);
}
/* ================================================================ randomness */

/* The test's seed: TUMA_CRASH_SEED, else drawn from the clock; printed so a failure replays. */
static unsigned crash_seed(const char *test) {
  const char *env = getenv("TUMA_CRASH_SEED");
  unsigned seed;
  if (env != NULL && env[0] != '\0') {
    seed = (unsigned)strtoul(env, NULL, 10);
  } else {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    seed = (unsigned)ts.tv_sec * 1000003u ^ (unsigned)ts.tv_nsec ^ (unsigned)getpid();
  }
  fprintf(stderr, "[%s] seed %u (replay with TUMA_CRASH_SEED=%u)\n", test, seed, seed);
  return seed;
}

/* Uniform in [lo, hi]. */
static int draw(unsigned *seed, int lo, int hi) {
  return lo + (int)(rand_r(seed) % (unsigned)(hi - lo + 1));
}

/* A line in DIR/crashes.log, and on stderr. */
static void crash_note(dz_fixture *z, const char *fmt, ...) {
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  fprintf(stderr, "[crash] %s\n", line);
  char path[SH_PATH_MAX + 32];
  snprintf(path, sizeof path, "%s/crashes.log", z->h->dir);
  FILE *f = fopen(path, "a");
  if (f != NULL) {
    fprintf(f, "%s\n", line);
    fclose(f);
  }
}

/* kill -9 tumad, wait down_ms, start it again on the same data directory and the same ports
 * (the opsims reconnect to the operator port by themselves, the CLI uses the admin port). */
static void crash_restart(dz_fixture *z, int down_ms) {
  uint16_t port = z->h->port, admin = z->h->admin_port;
  cr_assert_eq(sh_kill(z->h), 0, "kill -9 tumad (it was running)");
  z->kills++;
  dz_sleep_ms(down_ms);
  char err[512] = "";
  cr_assert_eq(sh_start(z->h, T_START, err, sizeof err), 0, "restart after kill %d: %s", z->kills,
               err);
  cr_assert_eq(z->h->port, port,
               "tumad came back on its operator port (the opsims reconnect there)");
  cr_assert_eq(z->h->admin_port, admin, "tumad came back on its admin port");
}

/* How many times operator op registered its wallets with tumad (DIR/tumad.log, across
 * restarts): it does after every (re)connection. */
static int registrations(dz_fixture *z, int op) {
  static char text[DZ_OUT];
  dz_read_file(z->h->log, text);
  char needle[64];
  snprintf(needle, sizeof needle, "event=party.registered peer=%s ", DZ_OPS[op]);
  int n = 0;
  for (const char *p = text; (p = strstr(p, needle)) != NULL; p++)
    n++;
  return n;
}

/* After a restart: waits (bounded) until both operators registered again, i.e. reconnected. */
static void wait_reconnected(dz_fixture *z, const int before[2]) {
  int64_t deadline = dz_mono_ms() + T_READY;
  for (int op = 0; op < 2; op++)
    while (registrations(z, op) <= before[op]) {
      cr_assert_lt(dz_mono_ms(), deadline, "%s reconnects to the restarted tumad", DZ_OPS[op]);
      dz_sleep_ms(50);
    }
}

/* Submits as manager (must be accepted whole); returns the batch. */
static uint64_t submit_ok(dz_fixture *z, const char *path, uint64_t count, uint64_t total,
                          const char *const *extra) {
  const char *args[DZ_ARGS];
  dz_submit_args(args, path, 1, count, total, extra);
  dz_result *r = dz_result_new();
  dz_cli_runv(z, r, T_CMD, "manager", args);
  cr_assert_eq(r->status, 0, "submit: %s%s", r->out, r->err);
  char want[128];
  snprintf(want, sizeof want, "submitted: %" PRIu64 " valid rows, total %s KES; 0 invalid", count,
           dz_kes(total));
  cr_assert(strstr(r->out, want) != NULL, "'%s' in: %s", want, r->out);
  uint64_t batch = dz_batch_of(r);
  free(r);
  return batch;
}

static void approve_ok(dz_fixture *z, uint64_t batch) {
  dz_result *r = dz_result_new();
  DZ_CLI_OK(z, r, "approver", "disburse", "approve", dz_u64s(batch));
  cr_assert(strstr(r->out, "approved") != NULL, "%s", r->out);
  free(r);
}

static void dc_fini(void) {
  dz_suite_fini(20, dump_disburse_events);
}

TestSuite(disburse_crash, .fini = dc_fini, .timeout = 600);

/* ================================================================ crashing */

/* Up to `rounds` times: wait a random lo..hi ms, kill -9 tumad, leave it down 0..400 ms, start
 * it again; stops early once the batch is completed or (cycle > 0) has moved past `cycle`.
 * Returns the kills done. */
static int crash_rounds(dz_fixture *z, unsigned *seed, uint64_t batch, uint32_t cycle, int rounds,
                        int lo, int hi) {
  cr_assert_leq(rounds, MAX_KILLS);
  int done = 0;
  for (int k = 0; k < rounds; k++) {
    int delay = draw(seed, lo, hi), down = draw(seed, 0, 400);
    dz_sleep_ms(delay);
    crash_restart(z, down);
    done++;
    dz_status s;
    int answered = dz_batch_status_try(z, batch, &s) == 0;
    crash_note(z,
               "kill %d: after %d ms, down %d ms; then state %s cycle %" PRIu32 " paid %" PRIu64
               " pending %" PRIu64 " in flight %" PRIu64 " failed %" PRIu64,
               z->kills, delay, down, answered ? s.state : "?", s.cycle, s.n[3], s.n[1], s.n[2],
               s.n[4]);
    if (answered && (strcmp(s.state, "completed") == 0 || (cycle > 0 && s.cycle > cycle)))
      break;
  }
  return done;
}

/* ================================================================ reconciling */

/* Everything after a batch of n beneficiaries (0..n-1, the list's amounts, total per cycle)
 * paid for `cycles` cycles completed: the wallets, the report, the budget (before → now). The
 * report is returned for the ledger check. */
static dz_report reconcile(dz_fixture *z, uint64_t batch, int n, uint32_t cycles, uint64_t total,
                           dz_prog_info before, dz_credits c[2]) {
  /* (1) the wallets: each beneficiary's credited exactly once per cycle with its amount */
  uint64_t credited = 0, paid_twice = 0, missing = 0;
  for (int op = 0; op < 2; op++) {
    dz_opsim_credits(z, op, &c[op], 1);
    cr_assert_eq(c[op].pending, 0, "%s: no credit left pending", DZ_OPS[op]);
    credited += c[op].in_amount;
  }
  for (int k = 0; k < n; k++) {
    dz_ben b = dz_ben_make(z, k);
    uint32_t got = c[b.op].per_wallet[b.wallet];
    if (got > cycles)
      paid_twice++;
    if (got < cycles)
      missing++;
    if (got != cycles || c[b.op].amount_wallet[b.wallet] != cycles * b.amount)
      fprintf(stderr,
              "[reconcile] %s wallet %d (beneficiary %d): %u credits, %" PRIu64
              " minor units; want %u × %" PRIu64 "\n",
              DZ_OPS[b.op], b.wallet, k, got, c[b.op].amount_wallet[b.wallet], cycles, b.amount);
  }
  cr_assert_eq(paid_twice, 0, "no wallet credited more than once per cycle (%" PRIu64 " were)",
               paid_twice);
  cr_assert_eq(missing, 0, "every wallet credited in every cycle (%" PRIu64 " were not)", missing);
  for (int k = 0; k < n; k++) {
    dz_ben b = dz_ben_make(z, k);
    cr_assert_eq(c[b.op].amount_wallet[b.wallet], cycles * b.amount,
                 "%s wallet %d: the row's amount each cycle", DZ_OPS[b.op], b.wallet);
  }
  cr_assert_eq(c[0].in_count + c[1].in_count, (uint64_t)n * cycles,
               "the operators saw no other credit");
  cr_assert_eq(credited, cycles * total, "the wallets got the list's total each cycle");

  /* (2) the report: every row paid, once per (cycle, line), its total = the wallets' */
  dz_report rep = dz_get_report(z, batch, NULL);
  cr_assert_eq(rep.n, (uint64_t)n * cycles, "%d rows per cycle", n);
  uint32_t per_cycle[8] = {0};
  for (size_t i = 0; i < rep.n; i++) {
    const dz_row *w = &rep.rows[i];
    cr_assert_str_eq(w->status, "paid", "cycle %" PRIu32 " line %" PRIu64 " is %s", w->cycle,
                     w->line, w->status);
    cr_assert(w->cycle >= 1 && w->cycle <= cycles && w->cycle < 8, "cycle %" PRIu32, w->cycle);
    per_cycle[w->cycle]++;
    dz_ben b = dz_ben_make(z, (int)w->line - 2);
    cr_assert_eq(w->amount, b.amount, "line %" PRIu64, w->line);
    cr_assert_str_eq(w->op, DZ_OPS[b.op], "line %" PRIu64, w->line);
    cr_assert_eq(strlen(w->transfer_id), 32, "a transfer id of 32 hex: %s", w->transfer_id);
  }
  for (uint32_t cy = 1; cy <= cycles; cy++)
    cr_assert_eq(per_cycle[cy], (uint32_t)n, "cycle %" PRIu32 ": %d rows", cy, n);
  cr_assert_eq(rep.paid_total, credited, "the report's paid total = the wallets' credits");
  /* each paid row's transfer is a credit one of the wallets got, and the other way round */
  for (size_t i = 0; i < rep.n; i++) {
    char want[33];
    dz_id_norm(rep.rows[i].transfer_id, want);
    int op = strcmp(rep.rows[i].op, "alpha") == 0 ? 0 : 1, found = 0;
    for (uint64_t j = 0; j < c[op].in_count && !found; j++)
      found = strcmp(c[op].ids[j], want) == 0;
    cr_assert(found,
              "the report's transfer %s (cycle %" PRIu32 " line %" PRIu64
              ") is a committed credit at %s",
              want, rep.rows[i].cycle, rep.rows[i].line, DZ_OPS[op]);
    for (size_t j = 0; j < i; j++)
      cr_assert_str_neq(rep.rows[j].transfer_id, rep.rows[i].transfer_id, "transfer ids differ");
  }

  /* (3) the budget went down by exactly the paid total; nothing stays reserved */
  dz_prog_info after = dz_programme_show(z);
  cr_assert_eq(before.budget - after.budget, rep.paid_total,
               "the budget moved by the paid total (before %" PRIu64 ", after %" PRIu64
               ", paid %" PRIu64 ")",
               before.budget, after.budget, rep.paid_total);
  cr_assert_eq(after.reserved, 0, "nothing stays reserved (%" PRIu64 ")", after.reserved);
  cr_assert_eq(after.available, after.budget);
  return rep;
}

/* 32 hex digits → a ledger id (big endian, UUID order: the first 16 digits are hi). */
static ledger_id hex_id(const char *hex) {
  uint64_t half[2] = {0, 0};
  for (int i = 0; i < 32; i++) {
    char ch = (char)tolower((unsigned char)hex[i]);
    unsigned v = ch >= 'a' ? (unsigned)(ch - 'a' + 10) : (unsigned)(ch - '0');
    half[i / 16] = half[i / 16] << 4 | v;
  }
  return ledger_id_make(half[0], half[1]);
}

/* The auditor's check (ledger/audit.h, what `tuma audit verify` runs): the hash chain from
 * genesis, a replay of every record, every stored account, transfer and pending row compared. */
static void audit_ledger(const char *dir) {
  ledger_audit_report rep;
  char err[256] = "";
  int rc = ledger_audit_verify(dir, NULL, &rep, NULL, err, sizeof err);
  cr_assert_eq(rc, 0, "tuma audit verify %s: %s at record %llu: %s %s", dir,
               ledger_audit_problem_name(rep.problem), (unsigned long long)rep.bad_seq, rep.detail,
               err);
  cr_assert(rep.replayed && rep.compared, "the audit replayed and compared");
}

/* (4) The ledger, read-only, after tumad stopped: Σ debits = Σ credits (posted and pending), the
 * journal's hash chain verifies; each paid row's transfer is a posted pending transfer of its
 * amount out of its cycle's ESCROW account; each ESCROW account holds exactly one posted item
 * per row of its cycle, nothing open, and ends at zero; the programme's FUNDING account has
 * nothing pending and its balance is the budget `tuma disburse programme show` printed;
 * what each payee's account received from the escrows is what its wallets got; and the full
 * audit (replay and comparison) passes. */
static void check_ledger(dz_fixture *z, const dz_report *rep, uint32_t cycles,
                         const dz_credits c[2], uint64_t budget) {
  ledger *l = NULL;
  ledger_options o = {0};
  o.flags = LEDGER_OPEN_READ_ONLY;
  int rc = ledger_open(z->h->ledger_dir, &o, &l);
  cr_assert_eq(rc, 0, "ledger_open(%s) read-only: %s", z->h->ledger_dir, ledger_strerror(rc));
  ledger_totals tot;
  cr_assert_eq(ledger_totals_of(l, &tot), 0);
  cr_assert(tot.debits_posted == tot.credits_posted, "Σ debits_posted = Σ credits_posted");
  cr_assert(tot.debits_pending == tot.credits_pending, "Σ debits_pending = Σ credits_pending");
  uint64_t bad = 0;
  cr_assert_eq(ledger_journal_verify(l, &bad), 0,
               "the journal verifies (fails at record %" PRIu64 ")", bad);

  ledger_id escrow[8], payee[2];
  int have_escrow[8] = {0}, have_payee[2] = {0};
  uint64_t rows_of[8] = {0}, amount_of[8] = {0}, to_payee[2] = {0};
  for (size_t i = 0; i < rep->n; i++) {
    const dz_row *w = &rep->rows[i];
    ledger_id id = hex_id(w->transfer_id);
    ledger_transfer t;
    cr_assert_eq(ledger_lookup_transfer(l, id, &t), 0, "transfer %s is in the ledger",
                 w->transfer_id);
    ledger_pending_state ps = LEDGER_PENDING_NONE;
    cr_assert_eq(ledger_pending_state_of(l, id, &ps, NULL), 0);
    cr_assert(t.flags & LEDGER_TRANSFER_PENDING, "%s is a two-phase transfer", w->transfer_id);
    cr_assert_eq(ps, LEDGER_PENDING_POSTED, "%s is posted (state %d)", w->transfer_id, (int)ps);
    cr_assert_eq(t.amount, w->amount, "%s: the row's amount", w->transfer_id);
    cr_assert(t.debit_account_id.lo >> 63, "%s is paid out of an ESCROW account", w->transfer_id);
    cr_assert_eq(t.debit_account_id.lo & 0xfffffu, w->cycle, "%s: its cycle's ESCROW",
                 w->transfer_id);
    if (!have_escrow[w->cycle]) {
      escrow[w->cycle] = t.debit_account_id;
      have_escrow[w->cycle] = 1;
    }
    cr_assert(ledger_id_eq(escrow[w->cycle], t.debit_account_id), "one ESCROW account per cycle");
    int op = strcmp(w->op, "alpha") == 0 ? 0 : 1;
    if (!have_payee[op]) {
      payee[op] = t.credit_account_id;
      have_payee[op] = 1;
    }
    cr_assert(ledger_id_eq(payee[op], t.credit_account_id), "one payee account per operator");
    rows_of[w->cycle]++;
    amount_of[w->cycle] += w->amount;
    to_payee[op] += w->amount;
  }
  if (have_payee[0] && have_payee[1])
    cr_assert(!ledger_id_eq(payee[0], payee[1]), "alpha and beta have their own accounts");
  for (int op = 0; op < 2; op++)
    cr_assert_eq(to_payee[op], c[op].in_amount,
                 "%s's account got from the escrows what its wallets got", DZ_OPS[op]);

  enum { CAP = 16384 };
  ledger_transfer *ts = calloc(CAP, sizeof *ts);
  cr_assert_not_null(ts);
  ledger_id funding = {0, 0};
  for (uint32_t cy = 1; cy <= cycles; cy++) {
    cr_assert(have_escrow[cy], "cycle %" PRIu32 " has an ESCROW account", cy);
    ledger_account a;
    cr_assert_eq(ledger_lookup_account(l, escrow[cy], &a), 0);
    cr_assert_eq(a.debits_pending, 0, "cycle %" PRIu32 ": no item still open", cy);
    cr_assert_eq(a.credits_pending, 0, "cycle %" PRIu32 ": no reservation still open", cy);
    cr_assert_eq(a.credits_posted, a.debits_posted, "cycle %" PRIu32 ": the ESCROW ends at 0", cy);
    cr_assert_eq(a.debits_posted, amount_of[cy], "cycle %" PRIu32 ": the items and nothing else",
                 cy);
    ledger_account_filter f = {.account_id = escrow[cy], .limit = CAP};
    size_t nt = 0;
    cr_assert_eq(ledger_account_transfers(l, &f, ts, CAP, &nt), 0);
    cr_assert_lt(nt, (size_t)CAP);
    uint64_t posted_items = 0, posted_amount = 0;
    for (size_t k = 0; k < nt; k++) {
      const ledger_transfer *t = &ts[k];
      if (!(t->flags & LEDGER_TRANSFER_PENDING))
        continue;
      ledger_pending_state ps = LEDGER_PENDING_NONE;
      cr_assert_eq(ledger_pending_state_of(l, t->id, &ps, NULL), 0);
      cr_assert_neq(ps, LEDGER_PENDING_OPEN, "cycle %" PRIu32 ": nothing left open", cy);
      if (ledger_id_eq(t->debit_account_id, escrow[cy])) {
        if (ps == LEDGER_PENDING_POSTED) {
          posted_items++;
          posted_amount += t->amount;
        }
      } else if (ledger_id_eq(t->credit_account_id, escrow[cy]) && ps == LEDGER_PENDING_POSTED) {
        funding = t->debit_account_id; /* the reservation, posted at the cycle's start */
      }
    }
    cr_assert_eq(posted_items, rows_of[cy],
                 "cycle %" PRIu32 ": one posted payment per row out of the ESCROW (%" PRIu64
                 " posted, %" PRIu64 " rows) — nobody paid twice",
                 cy, posted_items, rows_of[cy]);
    cr_assert_eq(posted_amount, amount_of[cy]);
  }
  free(ts);
  cr_assert(funding.lo != 0 || funding.hi != 0, "the reservation's FUNDING account was found");
  ledger_account fa;
  cr_assert_eq(ledger_lookup_account(l, funding, &fa), 0);
  cr_assert_eq(fa.debits_pending, 0, "no reservation left pending on the FUNDING account");
  cr_assert_eq(fa.credits_posted - fa.debits_posted, budget,
               "the FUNDING account's balance is the programme's budget");
  ledger_close(l);
  audit_ledger(z->h->ledger_dir);
}

/* ================================================================ a reconciled batch */

/* The start of a test that pays one list: tumad and both payees with n/2 wallets each, the
 * programme with a budget of 1,000,000.00, beneficiaries 0..n-1 registered and DIR/list.csv
 * written with them; *before gets the programme before any batch, *total the list's sum.
 * Returns the list's path (static until the next list is written). */
static const char *batch_setup(dz_fixture *z, int n, dz_prog_info *before, uint64_t *total) {
  dz_start(z, &CFG, n / 2);
  dz_make_programme(z, 100000000);
  *before = dz_programme_show(z);
  dz_register_beneficiaries(z, n, NULL, 0);
  return dz_write_list(z, "list.csv", 0, n, NULL, total, 0);
}

/* The end of such a test: the batch completes (within timeout_ms), wallets, report and budget
 * reconcile over `cycles` (reconcile), everything stops, the ledger agrees (check_ledger), and
 * the scratch directory is removed. */
static void batch_finish(dz_fixture *z, uint64_t batch, int n, uint32_t cycles, uint64_t total,
                         dz_prog_info before, int timeout_ms) {
  dz_wait_status(z, batch, dz_state_is, "completed", timeout_ms, STUCK);
  dz_credits c[2];
  dz_report rep = reconcile(z, batch, n, cycles, total, before, c);
  dz_prog_info after = dz_programme_show(z);
  dz_stop(z);
  check_ledger(z, &rep, cycles, c, after.budget);
  free(rep.rows);
  free(c[0].ids);
  free(c[1].ids);
  dz_destroy(z);
}

/* ================================================================ tests */

/* 300 beneficiaries on alpha and beta at 40 items/s (about 8 s of paying); tumad is killed up to
 * 5 times at random moments (the first right after the approval), restarted each time, and left
 * to finish. */
Test(disburse_crash, batch_survives_random_kills) {
  unsigned seed = crash_seed("batch_survives_random_kills");
  enum { N = 300 };
  dz_fixture z;
  dz_prog_info before;
  uint64_t total = 0;
  const char *path = batch_setup(&z, N, &before, &total);
  const char *rate[] = {"--rate", "40", NULL};
  uint64_t batch = submit_ok(&z, path, N, total, rate);
  approve_ok(&z, batch);
  /* the first within 150 ms of the approval (the cycle being funded, the first items), then
     up to 4 more while it pays */
  int kills = crash_rounds(&z, &seed, batch, 0, 1, 0, 150);
  kills += crash_rounds(&z, &seed, batch, 0, 4, 300, 2500);
  cr_assert_gt(kills, 0);
  batch_finish(&z, batch, N, 1, total, before, T_FINISH);
}

/* A recurring batch, 2 cycles 3 s apart, 200 beneficiaries at 50/s: up to 3 kills in cycle 1,
 * then up to 3 once cycle 2 is under way (waiting for its start or paying); every wallet
 * credited exactly twice. */
Test(disburse_crash, recurring_batch_survives_random_kills) {
  unsigned seed = crash_seed("recurring_batch_survives_random_kills");
  enum { N = 200 };
  dz_fixture z;
  dz_prog_info before;
  uint64_t total = 0;
  const char *path = batch_setup(&z, N, &before, &total);
  const char *extra[] = {"--rate", "50", "--cycles", "2", "--every", "3s", NULL};
  uint64_t batch = submit_ok(&z, path, N, total, extra);
  approve_ok(&z, batch);
  int kills = crash_rounds(&z, &seed, batch, 1, 3, 300, 2000);
  int64_t deadline = dz_mono_ms() + T_FINISH;
  dz_status s;
  for (;;) { /* cycle 2 under way (waiting for its start, or paying) */
    s = dz_batch_status(&z, batch);
    if (s.cycle >= 2 || strcmp(s.state, "completed") == 0)
      break;
    cr_assert(dz_mono_ms() < deadline,
              "cycle 2 begins (state %s, cycle %" PRIu32 ": pending %" PRIu64 ", in flight %" PRIu64
              ", paid %" PRIu64 ", failed %" PRIu64 "); see crashes.log and tumad.log",
              s.state, s.cycle, s.n[1], s.n[2], s.n[3], s.n[4]);
    dz_sleep_ms(100);
  }
  crash_note(&z, "cycle %" PRIu32 " (%s): paid %" PRIu64 " of its items", s.cycle, s.state, s.n[3]);
  if (strcmp(s.state, "completed") != 0)
    kills += crash_rounds(&z, &seed, batch, 2, 3, 200, 2000);
  cr_assert_gt(kills, 0);
  batch_finish(&z, batch, N, 2, total, before, T_FINISH);
}

/* beta is offline, so its items wait for a retry (payee not connected); tumad is killed while
 * they wait and restarted, then beta comes back: every item must still be paid, once. */
Test(disburse_crash, items_waiting_for_a_retry_survive_a_kill) {
  enum { N = 40 };
  dz_fixture z;
  dz_prog_info before;
  uint64_t total = 0;
  const char *path = batch_setup(&z, N, &before, &total);
  dz_opsim_stop(&z, 1);
  uint64_t batch = submit_ok(&z, path, N, total, NULL);
  approve_ok(&z, batch);
  int64_t deadline = dz_mono_ms() + T_FINISH;
  dz_status s;
  do { /* alpha's half paid, beta's half tried at least once and waiting */
    dz_sleep_ms(250);
    s = dz_batch_status(&z, batch);
    cr_assert(dz_mono_ms() < deadline, "alpha's %d items paid (paid %" PRIu64 ")", N / 2, s.n[3]);
  } while (s.n[3] < N / 2);
  dz_sleep_ms(1500); /* the statuses of the waiting items are flushed (every 500 ms) */
  s = dz_batch_status(&z, batch);
  cr_assert_eq(s.n[3], N / 2, "only alpha's items are paid while beta is away");
  cr_assert_eq(s.n[1], N / 2, "beta's items are pending (waiting for a retry)");
  crash_restart(&z, 100);
  crash_note(&z, "killed with %d items of beta waiting for a retry", N / 2);
  dz_opsim_start(&z, 1);
  batch_finish(&z, batch, N, 1, total, before, T_RETRIED);
}

/* No kill: beta is offline at first, so each of its items has a try refused before the ledger
 * (3201, payee not reachable), then is paid once beta is back. The reconciliation must still
 * hold: the report's transfer id of each paid row is the transfer that credited the wallet and
 * is posted in the ledger (the crash tests meet this after every restart, when tumad starts
 * paying before the operators have reconnected). */
Test(disburse_crash, report_names_the_paid_transfer_after_retries) {
  enum { N = 20 };
  dz_fixture z;
  dz_prog_info before;
  uint64_t total = 0;
  const char *path = batch_setup(&z, N, &before, &total);
  dz_opsim_stop(&z, 1);
  uint64_t batch = submit_ok(&z, path, N, total, NULL);
  approve_ok(&z, batch);
  int64_t deadline = dz_mono_ms() + T_FINISH;
  dz_status s;
  do { /* alpha's half paid; beta's half refused once at least, waiting for a retry */
    dz_sleep_ms(250);
    s = dz_batch_status(&z, batch);
    cr_assert(dz_mono_ms() < deadline, "alpha's %d items paid (paid %" PRIu64 ")", N / 2, s.n[3]);
  } while (s.n[3] < N / 2);
  dz_opsim_start(&z, 1);
  batch_finish(&z, batch, N, 1, total, before, T_RETRIED);
}

/* The batch number of the last "disburse.upload_started … kind=list batch=N" in tumad.log, 0 if
 * none. */
static uint64_t last_list_upload(dz_fixture *z) {
  static char text[DZ_OUT];
  dz_read_file(z->h->log, text);
  uint64_t batch = 0;
  for (const char *p = text; (p = strstr(p, "disburse.upload_started")) != NULL; p++) {
    const char *eol = strchr(p, '\n');
    const char *k = strstr(p, "kind=list");
    const char *b = strstr(p, "batch=");
    if (k != NULL && b != NULL && (eol == NULL || (k < eol && b < eol)))
      batch = strtoull(b + 6, NULL, 10);
  }
  return batch;
}

/* A list of 20000 rows uploaded in 2 KiB chunks; tumad is killed while it validates them (twice,
 * at random moments after the upload started). At each restart the half-uploaded batch is
 * discarded (refused, "upload interrupted by a restart"), and the same file is then accepted
 * whole as a new batch, which can be approved. */
Test(disburse_crash, kill_during_upload_discards_the_batch) {
  unsigned seed = crash_seed("kill_during_upload_discards_the_batch");
  enum { N = 20000 };
  dz_fixture z;
  dz_start(&z, &CFG, 0);
  dz_make_programme(&z, 10000000000ull);
  dz_register_beneficiaries(&z, N, NULL, 0);
  uint64_t total = 0;
  const char *path = dz_write_list(&z, "big.csv", 0, N, NULL, &total, 0);
  const char *chunks[] = {"--chunk-bytes", "2048", NULL};
  const char *args[DZ_ARGS];
  dz_submit_args(args, path, 1, N, total, chunks);
  uint64_t discarded[2] = {0, 0};
  int interrupted = 0;
  for (int round = 0; round < 6 && interrupted < 2; round++) {
    uint64_t seen = last_list_upload(&z);
    dz_proc p;
    dz_cli_spawn(&z, &p, "manager", args);
    int64_t deadline = dz_mono_ms() + T_CMD;
    uint64_t batch = 0;
    int st = 0, ended = 0;
    while (!(ended = dz_proc_poll(&p, &st)) && (batch = last_list_upload(&z)) == seen) {
      cr_assert_lt(dz_mono_ms(), deadline, "the upload starts");
      dz_sleep_ms(5);
    }
    int delay = draw(&seed, 0, 150);
    dz_sleep_ms(delay);
    if (!ended)
      ended = dz_proc_poll(&p, &st);
    if (ended) { /* it finished before the kill: the file was small for this machine */
      crash_note(&z, "round %d: the upload ended (status %d) before the kill at %d ms", round, st,
                 delay);
      cr_assert_fail("the upload of %d rows ended within %d ms of its start: make the list "
                     "larger (status %d)",
                     N, delay, st);
    }
    crash_restart(&z, draw(&seed, 0, 300));
    crash_note(&z, "round %d: killed %d ms into the upload of batch %" PRIu64, round, delay, batch);
    st = dz_proc_wait(&p, T_CMD);
    cr_assert_eq(st, 1, "the submit whose switch died fails with 1 (got %d)", st);
    cr_assert_neq(batch, 0);
    dz_status s = dz_batch_status(&z, batch);
    cr_assert_str_eq(s.state, "refused", "batch %" PRIu64 " discarded at the restart", batch);
    discarded[interrupted++] = batch;
  }
  cr_assert_eq(interrupted, 2);
  cr_assert(sh_log_contains(z.h, "disburse.uploads_discarded"), "the restart says so");
  /* The same file again: a new batch, every row valid (none "already in batch …"). */
  uint64_t batch = submit_ok(&z, path, N, total, NULL);
  cr_assert(batch != discarded[0] && batch != discarded[1], "a new batch");
  dz_status s = dz_batch_status(&z, batch);
  cr_assert_str_eq(s.state, "submitted");
  cr_assert_eq(s.n[1], N, "%d items pending", N);
  cr_assert_eq(s.amount[1], total);
  /* And once more: the same batch (the file is known now). */
  const char *again[DZ_ARGS];
  dz_submit_args(again, path, 1, N, total, NULL);
  dz_result *r = dz_result_new();
  dz_cli_runv(&z, r, T_CMD, "manager", again);
  cr_assert_eq(r->status, 0, "%s%s", r->out, r->err);
  char want[96];
  snprintf(want, sizeof want, "batch %" PRIu64 " already submitted", batch);
  cr_assert(strstr(r->out, want) != NULL, "'%s' in: %s", want, r->out);
  free(r);
  dz_prog_info before = dz_programme_show(&z);
  approve_ok(&z, batch);
  dz_prog_info mid = dz_programme_show(&z); /* reserved, or already moved to the cycle's escrow */
  cr_assert_eq(before.available - mid.available, total,
               "the approval reserved the batch's total (and nothing for the discarded ones)");
  dz_stop(&z);
  dz_destroy(&z);
}

/* The other side dies instead: the submitting CLI is killed (SIGKILL) in the middle of a large
 * upload. tumad abandons the upload (its connection is gone): the batch is refused, the same
 * file is accepted again, and a later restart of tumad (graceful, then kill -9) starts. */
Test(disburse_crash, client_killed_during_upload) {
  unsigned seed = crash_seed("client_killed_during_upload");
  enum { N = 20000 };
  dz_fixture z;
  dz_start(&z, &CFG, 0);
  dz_make_programme(&z, 10000000000ull);
  dz_register_beneficiaries(&z, N, NULL, 0);
  uint64_t total = 0;
  const char *path = dz_write_list(&z, "big.csv", 0, N, NULL, &total, 0);
  const char *chunks[] = {"--chunk-bytes", "2048", NULL};
  const char *args[DZ_ARGS];
  dz_submit_args(args, path, 1, N, total, chunks);
  dz_proc p;
  dz_cli_spawn(&z, &p, "manager", args);
  int64_t deadline = dz_mono_ms() + T_CMD;
  uint64_t batch = 0;
  int st = 0, ended = 0;
  while (!(ended = dz_proc_poll(&p, &st)) && (batch = last_list_upload(&z)) == 0) {
    cr_assert_lt(dz_mono_ms(), deadline, "the upload starts");
    dz_sleep_ms(5);
  }
  int delay = draw(&seed, 0, 150);
  dz_sleep_ms(delay);
  cr_assert(!ended && !dz_proc_poll(&p, &st),
            "the upload of %d rows ended within %d ms of its start: make the list larger", N,
            delay);
  cr_assert_eq(kill(p.pid, SIGKILL), 0);
  dz_proc_wait(&p, T_CMD);
  crash_note(&z, "the CLI killed %d ms into the upload of batch %" PRIu64, delay, batch);
  cr_assert(dz_wait_for_text(z.h->log, "disburse.upload_abandoned", T_CMD),
            "tumad notices the upload's connection is gone");
  dz_status s;
  dz_result *r = dz_result_new();
  deadline = dz_mono_ms() + 15000;
  for (;;) { /* the abandon is done within a tick of the notice */
    const char *sargs[] = {"disburse", "status", dz_u64s(batch), NULL};
    dz_cli_runv(&z, r, T_CMD, "manager", sargs);
    if (r->status == 0 && strstr(r->out, "state refused") != NULL)
      break;
    cr_assert(dz_mono_ms() < deadline,
              "batch %" PRIu64 " is refused once its upload was abandoned; `tuma disburse status "
              "%" PRIu64 "` says (exit %d): %s%s",
              batch, batch, r->status, r->out, r->err);
    dz_sleep_ms(100);
  }
  free(r);
  uint64_t again = submit_ok(&z, path, N, total, NULL);
  cr_assert_neq(again, batch, "a new batch");
  int stst = 0;
  cr_assert_eq(sh_stop(z.h, 15000, &stst), 0, "tumad stops on SIGTERM");
  char err[512] = "";
  cr_assert_eq(sh_start(z.h, T_START, err, sizeof err), 0, "tumad starts again: %s", err);
  crash_restart(&z, 100);
  s = dz_batch_status(&z, again);
  cr_assert_str_eq(s.state, "submitted");
  cr_assert_eq(s.n[1], N);
  dz_stop(&z);
  dz_destroy(&z);
}

/* Kills during the approval itself: 8 batches of 10 (other beneficiaries each, cycle 1); for
 * each, `tuma disburse approve` is started and tumad killed 0..40 ms later, then restarted. A
 * batch still submitted is approved again (that must work); every batch is then paid, each
 * wallet once, and nothing stays reserved: a reservation the crash left in the ledger without
 * the approval being recorded must not be reserved twice nor stay open. */
Test(disburse_crash, kill_during_approval) {
  unsigned seed = crash_seed("kill_during_approval");
  enum { B = 8, PER = 10, N = B * PER };
  dz_fixture z;
  dz_start(&z, &CFG, N / 2);
  dz_make_programme(&z, 100000000);
  dz_prog_info before = dz_programme_show(&z);
  dz_register_beneficiaries(&z, N, NULL, 0);
  uint64_t batch[B], total = 0;
  for (int k = 0; k < B; k++) {
    char name[32];
    uint64_t t = 0;
    snprintf(name, sizeof name, "list-%d.csv", k);
    const char *path = dz_write_list(&z, name, k * PER, PER, NULL, &t, 0);
    batch[k] = submit_ok(&z, path, PER, t, NULL);
    total += t;
  }
  for (int k = 0; k < B; k++) {
    const char *args[] = {"disburse", "approve", dz_u64s(batch[k]), NULL};
    dz_proc p;
    dz_cli_spawn(&z, &p, "approver", args);
    int delay = draw(&seed, 0, 40);
    dz_sleep_ms(delay);
    int regs[2] = {registrations(&z, 0), registrations(&z, 1)};
    crash_restart(&z, draw(&seed, 0, 200));
    int st = dz_proc_wait(&p, T_CMD);
    wait_reconnected(&z, regs);
    dz_status s = dz_batch_status(&z, batch[k]);
    crash_note(&z, "batch %" PRIu64 ": killed %d ms into its approval (approve exit %d); state %s",
               batch[k], delay, st, s.state);
    if (strcmp(s.state, "submitted") == 0)
      approve_ok(&z, batch[k]);
    else
      cr_assert(st != 1 || strcmp(s.state, "approved") == 0 || strcmp(s.state, "running") == 0 ||
                    strcmp(s.state, "completed") == 0,
                "batch %" PRIu64 " is approved or submitted (%s)", batch[k], s.state);
  }
  for (int k = 0; k < B; k++)
    dz_wait_status(&z, batch[k], dz_state_is, "completed", T_FINISH, STUCK);
  dz_credits c[2];
  uint64_t credited = 0;
  for (int op = 0; op < 2; op++) {
    dz_opsim_credits(&z, op, &c[op], 1);
    credited += c[op].in_amount;
  }
  for (int k = 0; k < N; k++) {
    dz_ben b = dz_ben_make(&z, k);
    cr_assert_eq(c[b.op].per_wallet[b.wallet], 1, "%s wallet %d credited once", DZ_OPS[b.op],
                 b.wallet);
    cr_assert_eq(c[b.op].amount_wallet[b.wallet], b.amount);
  }
  cr_assert_eq(credited, total);
  dz_prog_info after = dz_programme_show(&z);
  cr_assert_eq(before.budget - after.budget, total, "the budget paid the batches once");
  cr_assert_eq(after.reserved, 0,
               "nothing stays reserved (%s KES): a reservation of a crashed approval is left",
               dz_kes(after.reserved));
  free(c[0].ids);
  free(c[1].ids);
  dz_stop(&z);
  dz_destroy(&z);
}

/* A batch submitted, tumad killed before anyone approves it (at a random moment), restarted:
 * the batch is still submitted, the approval works, and it is paid to completion and
 * reconciled. */
Test(disburse_crash, kill_between_submit_and_approval) {
  unsigned seed = crash_seed("kill_between_submit_and_approval");
  enum { N = 60 };
  dz_fixture z;
  dz_prog_info before;
  uint64_t total = 0;
  const char *path = batch_setup(&z, N, &before, &total);
  uint64_t batch = submit_ok(&z, path, N, total, NULL);
  int delay = draw(&seed, 0, 300);
  dz_sleep_ms(delay);
  int regs[2] = {registrations(&z, 0), registrations(&z, 1)};
  crash_restart(&z, draw(&seed, 0, 300));
  crash_note(&z, "killed %d ms after the submit of batch %" PRIu64, delay, batch);
  /* approve once the payees are back: this test is about the approval (paying before they
     reconnect is the report_names_the_paid_transfer_after_retries case) */
  wait_reconnected(&z, regs);
  dz_status s = dz_batch_status(&z, batch);
  cr_assert_str_eq(s.state, "submitted", "still submitted after the restart");
  cr_assert_eq(s.n[1], N);
  dz_prog_info mid = dz_programme_show(&z);
  cr_assert_eq(mid.reserved, 0, "nothing reserved before the approval");
  approve_ok(&z, batch);
  batch_finish(&z, batch, N, 1, total, before, T_FINISH);
}
