/* test_ledger.c — the ledger's contract as ledger.h states it: every result code, two-phase
 * transfers and expiry, linked chains, balancing and closing transfers, balance constraints,
 * overflow, idempotency, timestamps, queries, reopening and a full map. Each test opens its own
 * scratch ledger with the fake clock and checks the invariants before it closes it. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "ledger_fixture.h"

#define T0 UINT64_C(1700000000000000000)
#define SEC UINT64_C(1000000000)
#define MAX64 UINT64_MAX

/* One test's ledger: a scratch directory and the fake clock the ledger reads. */
typedef struct ctx {
  char *dir;
  ledger *l;
  uint64_t now;
} ctx;

static void ctx_open(ctx *c) {
  c->dir = fixture_tmpdir();
  c->now = T0;
  c->l = fixture_open(c->dir, &c->now);
}

static void ctx_reopen(ctx *c) {
  ledger_close(c->l);
  c->l = fixture_open(c->dir, &c->now);
}

/* Checks the invariants, then closes and removes the ledger. */
static void ctx_done(ctx *c) {
  fixture_assert_invariants(c->l);
  ledger_close(c->l);
  fixture_rmtree(c->dir);
  free(c->dir);
}

static ledger_id idn(uint64_t lo) {
  return ledger_id_make(0, lo);
}

static const ledger_id ID_INT_MAX = {UINT64_MAX, UINT64_MAX};

/* ---- event builders ---------------------------------------------------------------------- */

static ledger_event account_ev(uint64_t id) {
  return fixture_account(id, 0);
}

static ledger_event tr(uint64_t id, uint64_t dr, uint64_t cr, uint64_t amount) {
  return fixture_transfer(id, dr, cr, amount, 0);
}

static ledger_event pend(uint64_t id, uint64_t dr, uint64_t cr, uint64_t amount, uint32_t timeout) {
  ledger_event ev = fixture_transfer(id, dr, cr, amount, LEDGER_TRANSFER_PENDING);
  ev.transfer.timeout = timeout;
  return ev;
}

/* A post or void that names only the pending transfer (accounts, ledger and code zero). */
static ledger_event resolve(uint64_t id, uint64_t pending_id, uint64_t amount, uint16_t flag) {
  ledger_event ev = fixture_transfer(id, 0, 0, amount, flag);
  ev.transfer.pending_id = idn(pending_id);
  ev.transfer.ledger = 0;
  ev.transfer.code = 0;
  return ev;
}

static ledger_event post(uint64_t id, uint64_t pending_id, uint64_t amount) {
  return resolve(id, pending_id, amount, LEDGER_TRANSFER_POST_PENDING);
}

static ledger_event void_(uint64_t id, uint64_t pending_id, uint64_t amount) {
  return resolve(id, pending_id, amount, LEDGER_TRANSFER_VOID_PENDING);
}

static ledger_event linked(ledger_event ev) {
  if (ev.kind == LEDGER_EVENT_CREATE_ACCOUNT)
    ev.account.flags |= LEDGER_ACCOUNT_LINKED;
  else
    ev.transfer.flags |= LEDGER_TRANSFER_LINKED;
  return ev;
}

/* ---- assertions -------------------------------------------------------------------------- */

#define EXPECT(c, ev, want) expect_at((c), (ev), (want), __LINE__)
static void expect_at(ctx *c, ledger_event ev, ledger_result want, int line) {
  ledger_result got = fixture_apply_one(c->l, ev);
  cr_assert_eq(got, want, "line %d: expected %s, got %s", line, ledger_result_name(want),
               ledger_result_name(got));
}

#define EXPECT_BATCH(c, evs, want)                                                                 \
  do {                                                                                             \
    cr_assert_eq(sizeof(evs) / sizeof((evs)[0]), sizeof(want) / sizeof((want)[0]));                \
    expect_batch_at((c), (evs), (want), sizeof(evs) / sizeof((evs)[0]), __LINE__);                 \
  } while (0)
static void expect_batch_at(ctx *c, const ledger_event *evs, const ledger_result *want, size_t n,
                            int line) {
  ledger_result got[64];
  cr_assert(n <= 64);
  fixture_apply(c->l, evs, got, n);
  for (size_t i = 0; i < n; i++)
    cr_assert_eq(got[i], want[i], "line %d, event %zu: expected %s, got %s", line, i,
                 ledger_result_name(want[i]), ledger_result_name(got[i]));
}

static void ok(ctx *c, ledger_event ev) {
  EXPECT(c, ev, LEDGER_OK);
}

static void accounts(ctx *c, uint16_t flags, uint64_t first, uint64_t last) {
  for (uint64_t id = first; id <= last; id++)
    ok(c, fixture_account(id, flags));
}

static ledger_account get_account(ctx *c, uint64_t id) {
  ledger_account a;
  int rc = ledger_lookup_account(c->l, idn(id), &a);
  cr_assert_eq(rc, 0, "lookup account %llu: %s", (unsigned long long)id, ledger_strerror(rc));
  return a;
}

static ledger_transfer get_transfer(ctx *c, uint64_t id) {
  ledger_transfer t;
  int rc = ledger_lookup_transfer(c->l, idn(id), &t);
  cr_assert_eq(rc, 0, "lookup transfer %llu: %s", (unsigned long long)id, ledger_strerror(rc));
  return t;
}

static void assert_no_account(ctx *c, uint64_t id) {
  ledger_account a;
  cr_assert_eq(ledger_lookup_account(c->l, idn(id), &a), LEDGER_E_NOTFOUND,
               "account %llu should not exist", (unsigned long long)id);
}

static void assert_no_transfer(ctx *c, uint64_t id) {
  ledger_transfer t;
  cr_assert_eq(ledger_lookup_transfer(c->l, idn(id), &t), LEDGER_E_NOTFOUND,
               "transfer %llu should not exist", (unsigned long long)id);
}

#define BALANCE(c, id, dp, dpo, cp, cpo) balance_at((c), (id), (dp), (dpo), (cp), (cpo), __LINE__)
static void balance_at(ctx *c, uint64_t id, uint64_t dp, uint64_t dpo, uint64_t cp, uint64_t cpo,
                       int line) {
  ledger_account a = get_account(c, id);
  cr_assert(a.debits_pending == dp && a.debits_posted == dpo && a.credits_pending == cp &&
                a.credits_posted == cpo,
            "line %d: account %llu: expected dp=%llu dpo=%llu cp=%llu cpo=%llu, got dp=%llu "
            "dpo=%llu cp=%llu cpo=%llu",
            line, (unsigned long long)id, (unsigned long long)dp, (unsigned long long)dpo,
            (unsigned long long)cp, (unsigned long long)cpo, (unsigned long long)a.debits_pending,
            (unsigned long long)a.debits_posted, (unsigned long long)a.credits_pending,
            (unsigned long long)a.credits_posted);
}

#define PSTATE(c, id, want) pstate_at((c), (id), (want), __LINE__)
static uint64_t pstate_at(ctx *c, uint64_t id, ledger_pending_state want, int line) {
  ledger_pending_state st = (ledger_pending_state)99;
  uint64_t ts = 12345;
  int rc = ledger_pending_state_of(c->l, idn(id), &st, &ts);
  cr_assert_eq(rc, 0, "line %d: pending_state_of(%llu): %s", line, (unsigned long long)id,
               ledger_strerror(rc));
  cr_assert_eq(st, want, "line %d: transfer %llu: state %d, expected %d", line,
               (unsigned long long)id, (int)st, (int)want);
  if (want == LEDGER_PENDING_OPEN || want == LEDGER_PENDING_NONE)
    cr_assert_eq(ts, 0, "line %d: resolved_ts of an unresolved transfer is %llu", line,
                 (unsigned long long)ts);
  else
    cr_assert_neq(ts, 0, "line %d: resolved_ts of a resolved transfer is 0", line);
  return ts;
}

/* Applies an empty batch: expires whatever is due at the clock's time. */
static void tick(ctx *c) {
  ledger_result r;
  int rc = ledger_apply(c->l, NULL, &r, 0);
  cr_assert_eq(rc, 0, "empty batch: %s", ledger_strerror(rc));
}

/* ---- names ------------------------------------------------------------------------------- */

Test(ledger, result_names_and_success) {
  for (int i = 0; i < LEDGER_RESULT_COUNT_; i++) {
    const char *a = ledger_result_name((ledger_result)i);
    cr_assert(a && *a, "result %d has no name", i);
    for (int j = 0; j < i; j++)
      cr_assert_str_neq(a, ledger_result_name((ledger_result)j), "results %d and %d share %s", i, j,
                        a);
  }
  cr_assert_str_eq(ledger_result_name(LEDGER_EXCEEDS_CREDITS), "exceeds_credits");
  for (int i = 0; i < LEDGER_RESULT_COUNT_; i++)
    cr_assert_eq(!!ledger_result_is_success((ledger_result)i), i == LEDGER_OK || i == LEDGER_EXISTS,
                 "is_success(%s)", ledger_result_name((ledger_result)i));
  cr_assert_not_null(ledger_strerror(LEDGER_E_FULL));
}

/* ---- accounts ---------------------------------------------------------------------------- */

Test(ledger, account_created_and_looked_up) {
  ctx c;
  ctx_open(&c);
  ledger_event ev = fixture_account(7, LEDGER_ACCOUNT_HISTORY);
  ev.account.user_data_128 = ledger_id_make(3, 4);
  ev.account.user_data_64 = 5;
  ev.account.user_data_32 = 6;
  ev.account.code = 9;
  ok(&c, ev);
  ledger_account a = get_account(&c, 7);
  cr_assert(ledger_id_eq(a.id, idn(7)));
  cr_assert(ledger_id_eq(a.user_data_128, ledger_id_make(3, 4)));
  cr_assert_eq(a.user_data_64, 5);
  cr_assert_eq(a.user_data_32, 6);
  cr_assert_eq(a.ledger, 1);
  cr_assert_eq(a.code, 9);
  cr_assert_eq(a.flags, LEDGER_ACCOUNT_HISTORY);
  cr_assert_neq(a.timestamp, 0, "the ledger assigns the timestamp");
  cr_assert_eq(a.debits_pending + a.debits_posted + a.credits_pending + a.credits_posted, 0);
  assert_no_account(&c, 8);
  ledger_totals t;
  cr_assert_eq(ledger_totals_of(c.l, &t), 0);
  cr_assert_eq(t.accounts, 1);
  ctx_done(&c);
}

Test(ledger, account_validation_results) {
  ctx c;
  ctx_open(&c);
  struct {
    ledger_event ev;
    ledger_result want;
  } cases[32];
  size_t n = 0;
  uint64_t id = 100;
#define ACASE(field_stmt, result)                                                                  \
  do {                                                                                             \
    ledger_event e_ = account_ev(id++);                                                            \
    ledger_account *a_ = &e_.account;                                                              \
    field_stmt;                                                                                    \
    (void)a_;                                                                                      \
    cases[n].ev = e_;                                                                              \
    cases[n].want = (result);                                                                      \
    n++;                                                                                           \
  } while (0)
  ACASE(a_->timestamp = 1, LEDGER_TIMESTAMP_MUST_BE_ZERO);
  ACASE(a_->reserved = 1, LEDGER_RESERVED_FIELD);
  ACASE(a_->padding[5] = 1, LEDGER_RESERVED_FIELD);
  ACASE(a_->flags = LEDGER_ACCOUNT_CLOSED, LEDGER_RESERVED_FLAG);
  ACASE(a_->flags = 1u << 9, LEDGER_RESERVED_FLAG);
  ACASE(a_->id = idn(0), LEDGER_ID_MUST_NOT_BE_ZERO);
  ACASE(a_->id = ID_INT_MAX, LEDGER_ID_MUST_NOT_BE_INT_MAX);
  ACASE(a_->flags = LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS |
                    LEDGER_ACCOUNT_CREDITS_MUST_NOT_EXCEED_DEBITS,
        LEDGER_FLAGS_ARE_MUTUALLY_EXCLUSIVE);
  ACASE(a_->debits_pending = 1, LEDGER_DEBITS_PENDING_MUST_BE_ZERO);
  ACASE(a_->debits_posted = 1, LEDGER_DEBITS_POSTED_MUST_BE_ZERO);
  ACASE(a_->credits_pending = 1, LEDGER_CREDITS_PENDING_MUST_BE_ZERO);
  ACASE(a_->credits_posted = 1, LEDGER_CREDITS_POSTED_MUST_BE_ZERO);
  ACASE(a_->ledger = 0, LEDGER_LEDGER_MUST_NOT_BE_ZERO);
  ACASE(a_->code = 0, LEDGER_CODE_MUST_NOT_BE_ZERO);
  /* precedence: the first applicable result in the header's order wins */
  ACASE((a_->timestamp = 1, a_->reserved = 1), LEDGER_TIMESTAMP_MUST_BE_ZERO);
  ACASE((a_->reserved = 1, a_->flags = LEDGER_ACCOUNT_CLOSED), LEDGER_RESERVED_FIELD);
  ACASE((a_->flags = LEDGER_ACCOUNT_CLOSED, a_->id = idn(0)), LEDGER_RESERVED_FLAG);
  ACASE((a_->id = idn(0), a_->ledger = 0), LEDGER_ID_MUST_NOT_BE_ZERO);
  ACASE((a_->flags = LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS |
                     LEDGER_ACCOUNT_CREDITS_MUST_NOT_EXCEED_DEBITS,
         a_->debits_posted = 1),
        LEDGER_FLAGS_ARE_MUTUALLY_EXCLUSIVE);
  ACASE((a_->credits_posted = 1, a_->ledger = 0), LEDGER_CREDITS_POSTED_MUST_BE_ZERO);
  ACASE((a_->ledger = 0, a_->code = 0), LEDGER_LEDGER_MUST_NOT_BE_ZERO);
#undef ACASE
  for (size_t i = 0; i < n; i++) {
    ledger_result got = fixture_apply_one(c.l, cases[i].ev);
    cr_assert_eq(got, cases[i].want, "case %zu: expected %s, got %s", i,
                 ledger_result_name(cases[i].want), ledger_result_name(got));
    assert_no_account(&c, 100 + i);
  }
  ledger_totals t;
  cr_assert_eq(ledger_totals_of(c.l, &t), 0);
  cr_assert_eq(t.accounts, 0, "no failed account was created");
  /* the same events in one batch give the same results */
  ledger_event evs[32];
  ledger_result got[32];
  for (size_t i = 0; i < n; i++)
    evs[i] = cases[i].ev;
  fixture_apply(c.l, evs, got, n);
  for (size_t i = 0; i < n; i++)
    cr_assert_eq(got[i], cases[i].want, "batched case %zu: expected %s, got %s", i,
                 ledger_result_name(cases[i].want), ledger_result_name(got[i]));
  /* a non-transient failure leaves the id free */
  ok(&c, account_ev(100));
  ctx_done(&c);
}

Test(ledger, account_exists_and_exists_with_different_fields) {
  ctx c;
  ctx_open(&c);
  ledger_event base = fixture_account(1, LEDGER_ACCOUNT_HISTORY);
  base.account.user_data_128 = ledger_id_make(1, 2);
  base.account.user_data_64 = 3;
  base.account.user_data_32 = 4;
  base.account.code = 5;
  ok(&c, base);
  ledger_account before = get_account(&c, 1);
  EXPECT(&c, base, LEDGER_EXISTS);

  ledger_event e = base;
  e.account.flags = LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS;
  EXPECT(&c, e, LEDGER_EXISTS_WITH_DIFFERENT_FLAGS);
  e = base;
  e.account.user_data_128 = ledger_id_make(1, 9);
  EXPECT(&c, e, LEDGER_EXISTS_WITH_DIFFERENT_USER_DATA_128);
  e = base;
  e.account.user_data_64 = 9;
  EXPECT(&c, e, LEDGER_EXISTS_WITH_DIFFERENT_USER_DATA_64);
  e = base;
  e.account.user_data_32 = 9;
  EXPECT(&c, e, LEDGER_EXISTS_WITH_DIFFERENT_USER_DATA_32);
  e = base;
  e.account.ledger = 2;
  EXPECT(&c, e, LEDGER_EXISTS_WITH_DIFFERENT_LEDGER);
  e = base;
  e.account.code = 6;
  EXPECT(&c, e, LEDGER_EXISTS_WITH_DIFFERENT_CODE);
  /* precedence among the differences */
  e = base;
  e.account.flags = 0;
  e.account.code = 6;
  EXPECT(&c, e, LEDGER_EXISTS_WITH_DIFFERENT_FLAGS);
  e = base;
  e.account.user_data_32 = 0;
  e.account.ledger = 3;
  EXPECT(&c, e, LEDGER_EXISTS_WITH_DIFFERENT_USER_DATA_32);
  /* validation comes before the existence check */
  e = base;
  e.account.code = 0;
  EXPECT(&c, e, LEDGER_CODE_MUST_NOT_BE_ZERO);

  /* the same id twice in one batch: created, then exists */
  ledger_event evs[] = {account_ev(2), account_ev(2)};
  ledger_result want[] = {LEDGER_OK, LEDGER_EXISTS};
  EXPECT_BATCH(&c, evs, want);

  ledger_account after = get_account(&c, 1);
  cr_assert_eq(memcmp(&before, &after, sizeof before), 0, "a duplicate changed the account");
  ctx_done(&c);
}

Test(ledger, unknown_event_kind) {
  ctx c;
  ctx_open(&c);
  ledger_event ev;
  memset(&ev, 0, sizeof ev);
  ev.account.id = idn(77);
  ev.kind = 7;
  EXPECT(&c, ev, LEDGER_UNKNOWN_EVENT_KIND);
  ev.kind = 0;
  EXPECT(&c, ev, LEDGER_UNKNOWN_EVENT_KIND);
  assert_no_account(&c, 77);
  assert_no_transfer(&c, 77);
  ctx_done(&c);
}

/* ---- transfer validation ----------------------------------------------------------------- */

Test(ledger, transfer_validation_results) {
  ctx c;
  ctx_open(&c);
  accounts(&c, 0, 1, 2);
  ledger_event l2 = account_ev(3);
  l2.account.ledger = 2;
  ok(&c, l2);
  struct {
    ledger_event ev;
    ledger_result want;
  } cases[48];
  size_t n = 0;
  uint64_t id = 1000;
#define TCASE(field_stmt, result)                                                                  \
  do {                                                                                             \
    ledger_event e_ = tr(id++, 1, 2, 10);                                                          \
    ledger_transfer *t_ = &e_.transfer;                                                            \
    field_stmt;                                                                                    \
    cases[n].ev = e_;                                                                              \
    cases[n].want = (result);                                                                      \
    n++;                                                                                           \
  } while (0)
  TCASE(t_->timestamp = 5, LEDGER_TIMESTAMP_MUST_BE_ZERO);
  TCASE(t_->reserved = 1, LEDGER_RESERVED_FIELD);
  TCASE(t_->flags = 1u << 8, LEDGER_RESERVED_FLAG);
  TCASE(t_->flags = 1u << 15, LEDGER_RESERVED_FLAG);
  TCASE(t_->id = idn(0), LEDGER_ID_MUST_NOT_BE_ZERO);
  TCASE(t_->id = ID_INT_MAX, LEDGER_ID_MUST_NOT_BE_INT_MAX);
  TCASE(t_->flags = LEDGER_TRANSFER_PENDING | LEDGER_TRANSFER_POST_PENDING,
        LEDGER_FLAGS_ARE_MUTUALLY_EXCLUSIVE);
  TCASE(t_->flags = LEDGER_TRANSFER_PENDING | LEDGER_TRANSFER_VOID_PENDING,
        LEDGER_FLAGS_ARE_MUTUALLY_EXCLUSIVE);
  TCASE((t_->flags = LEDGER_TRANSFER_POST_PENDING | LEDGER_TRANSFER_VOID_PENDING,
         t_->pending_id = idn(5)),
        LEDGER_FLAGS_ARE_MUTUALLY_EXCLUSIVE);
  TCASE((t_->flags = LEDGER_TRANSFER_POST_PENDING | LEDGER_TRANSFER_BALANCING_DEBIT,
         t_->pending_id = idn(5)),
        LEDGER_FLAGS_ARE_MUTUALLY_EXCLUSIVE);
  TCASE((t_->flags = LEDGER_TRANSFER_VOID_PENDING | LEDGER_TRANSFER_BALANCING_CREDIT,
         t_->pending_id = idn(5)),
        LEDGER_FLAGS_ARE_MUTUALLY_EXCLUSIVE);
  TCASE(t_->flags = LEDGER_TRANSFER_CLOSING_DEBIT, LEDGER_FLAGS_ARE_MUTUALLY_EXCLUSIVE);
  TCASE(t_->flags = LEDGER_TRANSFER_CLOSING_CREDIT, LEDGER_FLAGS_ARE_MUTUALLY_EXCLUSIVE);
  TCASE((t_->flags = LEDGER_TRANSFER_POST_PENDING | LEDGER_TRANSFER_CLOSING_DEBIT,
         t_->pending_id = idn(5)),
        LEDGER_FLAGS_ARE_MUTUALLY_EXCLUSIVE);
  TCASE(t_->pending_id = idn(5), LEDGER_PENDING_ID_MUST_BE_ZERO);
  TCASE(t_->debit_account_id = idn(0), LEDGER_DEBIT_ACCOUNT_ID_MUST_NOT_BE_ZERO);
  TCASE(t_->debit_account_id = ID_INT_MAX, LEDGER_DEBIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX);
  TCASE(t_->credit_account_id = idn(0), LEDGER_CREDIT_ACCOUNT_ID_MUST_NOT_BE_ZERO);
  TCASE(t_->credit_account_id = ID_INT_MAX, LEDGER_CREDIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX);
  TCASE(t_->credit_account_id = idn(1), LEDGER_ACCOUNTS_MUST_BE_DIFFERENT);
  TCASE(t_->timeout = 5, LEDGER_TIMEOUT_RESERVED_FOR_PENDING_TRANSFER);
  TCASE(t_->amount = 0, LEDGER_AMOUNT_MUST_NOT_BE_ZERO);
  TCASE(t_->ledger = 0, LEDGER_LEDGER_MUST_NOT_BE_ZERO);
  TCASE(t_->code = 0, LEDGER_CODE_MUST_NOT_BE_ZERO);
  TCASE(t_->debit_account_id = idn(99), LEDGER_DEBIT_ACCOUNT_NOT_FOUND);
  TCASE(t_->credit_account_id = idn(99), LEDGER_CREDIT_ACCOUNT_NOT_FOUND);
  TCASE(t_->credit_account_id = idn(3), LEDGER_ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER);
  TCASE(t_->ledger = 2, LEDGER_TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS);
  /* precedence */
  TCASE((t_->timestamp = 5, t_->reserved = 1), LEDGER_TIMESTAMP_MUST_BE_ZERO);
  TCASE((t_->reserved = 1, t_->flags = 1u << 8), LEDGER_RESERVED_FIELD);
  TCASE((t_->flags = 1u << 8, t_->id = idn(0)), LEDGER_RESERVED_FLAG);
  TCASE((t_->id = idn(0), t_->amount = 0), LEDGER_ID_MUST_NOT_BE_ZERO);
  TCASE((t_->flags = LEDGER_TRANSFER_CLOSING_DEBIT, t_->pending_id = idn(5)),
        LEDGER_FLAGS_ARE_MUTUALLY_EXCLUSIVE);
  TCASE((t_->pending_id = idn(5), t_->debit_account_id = idn(0)), LEDGER_PENDING_ID_MUST_BE_ZERO);
  TCASE((t_->debit_account_id = idn(0), t_->credit_account_id = idn(0)),
        LEDGER_DEBIT_ACCOUNT_ID_MUST_NOT_BE_ZERO);
  TCASE((t_->credit_account_id = idn(1), t_->timeout = 5), LEDGER_ACCOUNTS_MUST_BE_DIFFERENT);
  TCASE((t_->timeout = 5, t_->amount = 0), LEDGER_TIMEOUT_RESERVED_FOR_PENDING_TRANSFER);
  TCASE((t_->amount = 0, t_->ledger = 0), LEDGER_AMOUNT_MUST_NOT_BE_ZERO);
  TCASE((t_->ledger = 0, t_->code = 0), LEDGER_LEDGER_MUST_NOT_BE_ZERO);
  TCASE((t_->code = 0, t_->debit_account_id = idn(99)), LEDGER_CODE_MUST_NOT_BE_ZERO);
  TCASE((t_->debit_account_id = idn(99), t_->credit_account_id = idn(98)),
        LEDGER_DEBIT_ACCOUNT_NOT_FOUND);
  TCASE((t_->credit_account_id = idn(99), t_->ledger = 2), LEDGER_CREDIT_ACCOUNT_NOT_FOUND);
  TCASE((t_->credit_account_id = idn(3), t_->ledger = 2),
        LEDGER_ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER);
#undef TCASE
  cr_assert(n <= sizeof cases / sizeof cases[0]);
  for (size_t i = 0; i < n; i++) {
    ledger_result got = fixture_apply_one(c.l, cases[i].ev);
    cr_assert_eq(got, cases[i].want, "case %zu: expected %s, got %s", i,
                 ledger_result_name(cases[i].want), ledger_result_name(got));
    assert_no_transfer(&c, 1000 + i);
  }
  BALANCE(&c, 1, 0, 0, 0, 0);
  BALANCE(&c, 2, 0, 0, 0, 0);
  BALANCE(&c, 3, 0, 0, 0, 0);
  ctx_done(&c);
}

Test(ledger, post_and_void_validation_results) {
  ctx c;
  ctx_open(&c);
  accounts(&c, 0, 1, 3);
  ok(&c, pend(10, 1, 2, 100, 0));
  ok(&c, tr(11, 1, 2, 5));
  ledger_event e;

  e = post(20, 0, 0);
  EXPECT(&c, e, LEDGER_PENDING_ID_MUST_NOT_BE_ZERO);
  e = post(21, 0, 0);
  e.transfer.pending_id = ID_INT_MAX;
  EXPECT(&c, e, LEDGER_PENDING_ID_MUST_NOT_BE_INT_MAX);
  e = post(22, 22, 0);
  EXPECT(&c, e, LEDGER_PENDING_ID_MUST_BE_DIFFERENT);
  e = post(23, 10, 0);
  e.transfer.timeout = 5;
  EXPECT(&c, e, LEDGER_TIMEOUT_RESERVED_FOR_PENDING_TRANSFER);
  e = void_(24, 10, 0);
  e.transfer.timeout = 5;
  EXPECT(&c, e, LEDGER_TIMEOUT_RESERVED_FOR_PENDING_TRANSFER);
  EXPECT(&c, post(25, 999, 0), LEDGER_PENDING_TRANSFER_NOT_FOUND);
  EXPECT(&c, post(26, 11, 0), LEDGER_PENDING_TRANSFER_NOT_PENDING);
  e = post(27, 10, 0);
  e.transfer.debit_account_id = idn(3);
  EXPECT(&c, e, LEDGER_PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT_ID);
  e = post(28, 10, 0);
  e.transfer.credit_account_id = idn(3);
  EXPECT(&c, e, LEDGER_PENDING_TRANSFER_HAS_DIFFERENT_CREDIT_ACCOUNT_ID);
  e = post(29, 10, 0);
  e.transfer.ledger = 2;
  EXPECT(&c, e, LEDGER_PENDING_TRANSFER_HAS_DIFFERENT_LEDGER);
  e = void_(30, 10, 0);
  e.transfer.code = 2;
  EXPECT(&c, e, LEDGER_PENDING_TRANSFER_HAS_DIFFERENT_CODE);
  EXPECT(&c, post(31, 10, 101), LEDGER_EXCEEDS_PENDING_TRANSFER_AMOUNT);
  EXPECT(&c, void_(32, 10, 50), LEDGER_PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT);
  EXPECT(&c, void_(33, 10, 101), LEDGER_PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT);
  /* precedence */
  e = post(34, 0, 0);
  e.transfer.timeout = 5;
  EXPECT(&c, e, LEDGER_PENDING_ID_MUST_NOT_BE_ZERO);
  e = post(35, 999, 0);
  e.transfer.timeout = 5;
  EXPECT(&c, e, LEDGER_TIMEOUT_RESERVED_FOR_PENDING_TRANSFER);
  e = post(36, 11, 500);
  e.transfer.debit_account_id = idn(3);
  EXPECT(&c, e, LEDGER_PENDING_TRANSFER_NOT_PENDING);
  e = post(37, 10, 500);
  e.transfer.code = 2;
  e.transfer.ledger = 2;
  EXPECT(&c, e, LEDGER_PENDING_TRANSFER_HAS_DIFFERENT_LEDGER);
  e = post(38, 10, 500);
  e.transfer.code = 2;
  EXPECT(&c, e, LEDGER_PENDING_TRANSFER_HAS_DIFFERENT_CODE);
  /* a post with explicit, matching accounts, ledger and code is fine */
  e = post(39, 10, 40);
  e.transfer.debit_account_id = idn(1);
  e.transfer.credit_account_id = idn(2);
  e.transfer.ledger = 1;
  e.transfer.code = 1;
  ok(&c, e);
  BALANCE(&c, 1, 0, 45, 0, 0);
  BALANCE(&c, 2, 0, 0, 0, 45);

  /* resolved: already posted / already voided, with the amount checks first */
  EXPECT(&c, post(40, 10, 0), LEDGER_PENDING_TRANSFER_ALREADY_POSTED);
  EXPECT(&c, void_(41, 10, 0), LEDGER_PENDING_TRANSFER_ALREADY_POSTED);
  EXPECT(&c, post(42, 10, 101), LEDGER_EXCEEDS_PENDING_TRANSFER_AMOUNT);
  EXPECT(&c, void_(43, 10, 7), LEDGER_PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT);
  ok(&c, pend(50, 2, 1, 30, 0));
  ok(&c, void_(51, 50, 30));
  EXPECT(&c, void_(52, 50, 0), LEDGER_PENDING_TRANSFER_ALREADY_VOIDED);
  EXPECT(&c, post(53, 50, 0), LEDGER_PENDING_TRANSFER_ALREADY_VOIDED);
  EXPECT(&c, post(54, 50, 31), LEDGER_EXCEEDS_PENDING_TRANSFER_AMOUNT);
  /* post/void transfers are not pending transfers themselves */
  EXPECT(&c, post(55, 39, 0), LEDGER_PENDING_TRANSFER_NOT_PENDING);
  EXPECT(&c, void_(56, 51, 0), LEDGER_PENDING_TRANSFER_NOT_PENDING);
  for (uint64_t i = 20; i <= 38; i++)
    assert_no_transfer(&c, i);
  BALANCE(&c, 1, 0, 45, 0, 0);
  BALANCE(&c, 2, 0, 0, 0, 45);
  ctx_done(&c);
}

/* ---- idempotency ------------------------------------------------------------------------- */

Test(ledger, transfer_exists_and_exists_with_different_fields) {
  ctx c;
  ctx_open(&c);
  accounts(&c, 0, 1, 3);
  ledger_event base = tr(10, 1, 2, 100);
  base.transfer.user_data_128 = ledger_id_make(7, 8);
  base.transfer.user_data_64 = 9;
  base.transfer.user_data_32 = 10;
  base.transfer.code = 4;
  ok(&c, base);
  ledger_transfer before = get_transfer(&c, 10);
  EXPECT(&c, base, LEDGER_EXISTS);

  struct {
    const char *what;
    ledger_event ev;
    ledger_result want;
  } cases[16];
  size_t n = 0;
#define XCASE(field_stmt, result)                                                                  \
  do {                                                                                             \
    ledger_event e_ = base;                                                                        \
    ledger_transfer *t_ = &e_.transfer;                                                            \
    field_stmt;                                                                                    \
    cases[n].what = #field_stmt;                                                                   \
    cases[n].ev = e_;                                                                              \
    cases[n].want = (result);                                                                      \
    n++;                                                                                           \
  } while (0)
  XCASE(t_->flags = LEDGER_TRANSFER_PENDING, LEDGER_EXISTS_WITH_DIFFERENT_FLAGS);
  XCASE(t_->pending_id = idn(5), LEDGER_EXISTS_WITH_DIFFERENT_PENDING_ID);
  XCASE(t_->timeout = 5, LEDGER_EXISTS_WITH_DIFFERENT_TIMEOUT);
  XCASE(t_->debit_account_id = idn(3), LEDGER_EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID);
  XCASE(t_->credit_account_id = idn(3), LEDGER_EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID);
  XCASE(t_->amount = 101, LEDGER_EXISTS_WITH_DIFFERENT_AMOUNT);
  XCASE(t_->user_data_128 = ledger_id_make(7, 9), LEDGER_EXISTS_WITH_DIFFERENT_USER_DATA_128);
  XCASE(t_->user_data_64 = 1, LEDGER_EXISTS_WITH_DIFFERENT_USER_DATA_64);
  XCASE(t_->user_data_32 = 1, LEDGER_EXISTS_WITH_DIFFERENT_USER_DATA_32);
  XCASE(t_->ledger = 2, LEDGER_EXISTS_WITH_DIFFERENT_LEDGER);
  XCASE(t_->code = 5, LEDGER_EXISTS_WITH_DIFFERENT_CODE);
  /* precedence among differences, and before the validation of new transfers */
  XCASE((t_->amount = 0, t_->code = 5), LEDGER_EXISTS_WITH_DIFFERENT_AMOUNT);
  XCASE((t_->flags = LEDGER_TRANSFER_PENDING, t_->amount = 1), LEDGER_EXISTS_WITH_DIFFERENT_FLAGS);
  XCASE((t_->timeout = 5, t_->credit_account_id = idn(1)), LEDGER_EXISTS_WITH_DIFFERENT_TIMEOUT);
  XCASE((t_->user_data_64 = 1, t_->ledger = 0), LEDGER_EXISTS_WITH_DIFFERENT_USER_DATA_64);
  XCASE((t_->timestamp = 1, t_->amount = 1), LEDGER_TIMESTAMP_MUST_BE_ZERO);
#undef XCASE
  for (size_t i = 0; i < n; i++) {
    ledger_result got = fixture_apply_one(c.l, cases[i].ev);
    cr_assert_eq(got, cases[i].want, "%s: expected %s, got %s", cases[i].what,
                 ledger_result_name(cases[i].want), ledger_result_name(got));
  }
  ledger_transfer after = get_transfer(&c, 10);
  cr_assert_eq(memcmp(&before, &after, sizeof before), 0, "a duplicate changed the transfer");
  BALANCE(&c, 1, 0, 100, 0, 0);
  BALANCE(&c, 2, 0, 0, 0, 100);

  /* the same id twice in one batch: the second is a duplicate and moves nothing */
  ledger_event evs[] = {tr(11, 1, 2, 5), tr(11, 1, 2, 5), tr(11, 1, 2, 6)};
  ledger_result want[] = {LEDGER_OK, LEDGER_EXISTS, LEDGER_EXISTS_WITH_DIFFERENT_AMOUNT};
  EXPECT_BATCH(&c, evs, want);
  BALANCE(&c, 1, 0, 105, 0, 0);

  /* a pending transfer's timeout is part of its identity */
  ok(&c, pend(12, 1, 2, 5, 30));
  EXPECT(&c, pend(12, 1, 2, 5, 30), LEDGER_EXISTS);
  EXPECT(&c, pend(12, 1, 2, 5, 31), LEDGER_EXISTS_WITH_DIFFERENT_TIMEOUT);
  EXPECT(&c, pend(12, 1, 2, 5, 0), LEDGER_EXISTS_WITH_DIFFERENT_TIMEOUT);
  ctx_done(&c);
}

Test(ledger, post_exists_compares_as_the_pending_transfer) {
  ctx c;
  ctx_open(&c);
  accounts(&c, 0, 1, 3);
  ok(&c, pend(10, 1, 2, 100, 0));
  ok(&c, pend(11, 1, 2, 100, 0));
  ok(&c, post(20, 10, 0));
  /* the stored post carries the pending transfer's accounts, ledger, code and the amount moved */
  ledger_transfer p = get_transfer(&c, 20);
  cr_assert(ledger_id_eq(p.debit_account_id, idn(1)) && ledger_id_eq(p.credit_account_id, idn(2)),
            "post stored without the pending transfer's accounts");
  cr_assert(ledger_id_eq(p.pending_id, idn(10)));
  cr_assert_eq(p.amount, 100, "post of amount 0 stored amount %llu", (unsigned long long)p.amount);
  cr_assert_eq(p.ledger, 1);
  cr_assert_eq(p.code, 1);
  cr_assert_eq(p.flags, LEDGER_TRANSFER_POST_PENDING);

  EXPECT(&c, post(20, 10, 0), LEDGER_EXISTS);
  ledger_event e = post(20, 10, 100);
  e.transfer.debit_account_id = idn(1);
  e.transfer.credit_account_id = idn(2);
  e.transfer.ledger = 1;
  e.transfer.code = 1;
  EXPECT(&c, e, LEDGER_EXISTS);
  EXPECT(&c, post(20, 10, 60), LEDGER_EXISTS_WITH_DIFFERENT_AMOUNT);
  EXPECT(&c, post(20, 11, 0), LEDGER_EXISTS_WITH_DIFFERENT_PENDING_ID);
  EXPECT(&c, void_(20, 10, 0), LEDGER_EXISTS_WITH_DIFFERENT_FLAGS);
  e = post(20, 10, 0);
  e.transfer.debit_account_id = idn(3);
  EXPECT(&c, e, LEDGER_EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID);
  e = post(20, 10, 0);
  e.transfer.credit_account_id = idn(3);
  EXPECT(&c, e, LEDGER_EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID);
  e = post(20, 10, 0);
  e.transfer.code = 2;
  EXPECT(&c, e, LEDGER_EXISTS_WITH_DIFFERENT_CODE);

  /* a partial post: the stored amount is the one asked for */
  ok(&c, post(21, 11, 40));
  EXPECT(&c, post(21, 11, 40), LEDGER_EXISTS);
  EXPECT(&c, post(21, 11, 0), LEDGER_EXISTS_WITH_DIFFERENT_AMOUNT);
  /* a void sent again */
  ok(&c, pend(12, 1, 2, 30, 0));
  ok(&c, void_(22, 12, 0));
  EXPECT(&c, void_(22, 12, 0), LEDGER_EXISTS);
  BALANCE(&c, 1, 0, 140, 0, 0);
  BALANCE(&c, 2, 0, 0, 0, 140);
  ctx_done(&c);
}

Test(ledger, id_already_failed_after_transient_failure) {
  ctx c;
  ctx_open(&c);
  accounts(&c, LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS, 1, 1);
  accounts(&c, 0, 2, 3);
  EXPECT(&c, tr(10, 1, 2, 50), LEDGER_EXCEEDS_CREDITS);
  ok(&c, tr(11, 3, 1, 100)); /* now the balance would allow it */
  EXPECT(&c, tr(10, 1, 2, 50), LEDGER_ID_ALREADY_FAILED);
  EXPECT(&c, tr(10, 1, 2, 10), LEDGER_ID_ALREADY_FAILED); /* whatever the fields */
  EXPECT(&c, tr(10, 3, 2, 50), LEDGER_ID_ALREADY_FAILED);
  assert_no_transfer(&c, 10);
  BALANCE(&c, 1, 0, 0, 0, 100);

  /* the other transient results burn the id too */
  EXPECT(&c, tr(12, 99, 2, 5), LEDGER_DEBIT_ACCOUNT_NOT_FOUND);
  EXPECT(&c, tr(13, 2, 99, 5), LEDGER_CREDIT_ACCOUNT_NOT_FOUND);
  EXPECT(&c, post(14, 50, 0), LEDGER_PENDING_TRANSFER_NOT_FOUND);
  ok(&c, account_ev(99));
  ok(&c, pend(50, 2, 3, 5, 0));
  EXPECT(&c, tr(12, 99, 2, 5), LEDGER_ID_ALREADY_FAILED);
  EXPECT(&c, tr(13, 2, 99, 5), LEDGER_ID_ALREADY_FAILED);
  EXPECT(&c, post(14, 50, 0), LEDGER_ID_ALREADY_FAILED);
  /* a duplicate in the same batch as its transient failure */
  ledger_event evs[] = {tr(15, 1, 2, 1000), tr(15, 1, 2, 1000)};
  ledger_result want[] = {LEDGER_EXCEEDS_CREDITS, LEDGER_ID_ALREADY_FAILED};
  EXPECT_BATCH(&c, evs, want);

  /* a non-transient failure leaves the id free */
  EXPECT(&c, tr(20, 2, 3, 0), LEDGER_AMOUNT_MUST_NOT_BE_ZERO);
  EXPECT(&c, tr(21, 2, 2, 5), LEDGER_ACCOUNTS_MUST_BE_DIFFERENT);
  EXPECT(&c, post(22, 11, 0), LEDGER_PENDING_TRANSFER_NOT_PENDING);
  ok(&c, tr(20, 2, 3, 1));
  ok(&c, tr(21, 2, 3, 1));
  ok(&c, post(22, 50, 0));

  /* and it survives a reopen */
  ctx_reopen(&c);
  EXPECT(&c, tr(10, 1, 2, 50), LEDGER_ID_ALREADY_FAILED);
  EXPECT(&c, tr(15, 1, 2, 10), LEDGER_ID_ALREADY_FAILED);
  EXPECT(&c, tr(20, 2, 3, 1), LEDGER_EXISTS);
  BALANCE(&c, 1, 0, 0, 0, 100);
  ctx_done(&c);
}

/* ---- two-phase transfers ----------------------------------------------------------------- */

Test(ledger, two_phase_post_full) {
  ctx c;
  ctx_open(&c);
  accounts(&c, 0, 1, 2);
  ok(&c, pend(10, 1, 2, 100, 0));
  BALANCE(&c, 1, 100, 0, 0, 0);
  BALANCE(&c, 2, 0, 0, 100, 0);
  PSTATE(&c, 10, LEDGER_PENDING_OPEN);
  ok(&c, post(11, 10, 0)); /* amount 0: the whole pending amount */
  BALANCE(&c, 1, 0, 100, 0, 0);
  BALANCE(&c, 2, 0, 0, 0, 100);
  uint64_t ts = PSTATE(&c, 10, LEDGER_PENDING_POSTED);
  cr_assert_eq(ts, get_transfer(&c, 11).timestamp, "resolved_ts is not the post's timestamp");
  PSTATE(&c, 11, LEDGER_PENDING_NONE);
  /* posting with the exact amount */
  ok(&c, pend(12, 1, 2, 70, 0));
  ok(&c, post(13, 12, 70));
  BALANCE(&c, 1, 0, 170, 0, 0);
  BALANCE(&c, 2, 0, 0, 0, 170);
  PSTATE(&c, 12, LEDGER_PENDING_POSTED);
  /* a single-phase transfer is no pending transfer */
  ok(&c, tr(14, 1, 2, 1));
  PSTATE(&c, 14, LEDGER_PENDING_NONE);
  ledger_pending_state st;
  cr_assert_neq(ledger_pending_state_of(c.l, idn(999), &st, NULL), 0, "unknown transfer");
  ctx_done(&c);
}

Test(ledger, two_phase_partial_post_releases_the_rest) {
  ctx c;
  ctx_open(&c);
  accounts(&c, 0, 1, 2);
  ok(&c, pend(10, 1, 2, 100, 0));
  ok(&c, pend(11, 1, 2, 50, 0));
  BALANCE(&c, 1, 150, 0, 0, 0);
  ok(&c, post(12, 10, 60));
  BALANCE(&c, 1, 50, 60, 0, 0);
  BALANCE(&c, 2, 0, 0, 50, 60);
  cr_assert_eq(get_transfer(&c, 12).amount, 60);
  PSTATE(&c, 10, LEDGER_PENDING_POSTED);
  PSTATE(&c, 11, LEDGER_PENDING_OPEN);
  EXPECT(&c, post(13, 10, 40), LEDGER_PENDING_TRANSFER_ALREADY_POSTED);
  /* pending, post in one batch */
  ledger_event evs[] = {pend(14, 2, 1, 10, 0), post(15, 14, 1), post(16, 14, 1)};
  ledger_result want[] = {LEDGER_OK, LEDGER_OK, LEDGER_PENDING_TRANSFER_ALREADY_POSTED};
  EXPECT_BATCH(&c, evs, want);
  BALANCE(&c, 1, 50, 60, 0, 1);
  BALANCE(&c, 2, 0, 1, 50, 60);
  ctx_done(&c);
}

Test(ledger, two_phase_void) {
  ctx c;
  ctx_open(&c);
  accounts(&c, LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS, 1, 1);
  accounts(&c, 0, 2, 3);
  ok(&c, tr(9, 3, 1, 100));
  ok(&c, pend(10, 1, 2, 100, 0));
  EXPECT(&c, tr(11, 1, 2, 1), LEDGER_EXCEEDS_CREDITS); /* the pending amount is reserved */
  ok(&c, void_(12, 10, 0));
  BALANCE(&c, 1, 0, 0, 0, 100);
  BALANCE(&c, 2, 0, 0, 0, 0);
  uint64_t ts = PSTATE(&c, 10, LEDGER_PENDING_VOIDED);
  cr_assert_eq(ts, get_transfer(&c, 12).timestamp, "resolved_ts is not the void's timestamp");
  ok(&c, tr(13, 1, 2, 100)); /* released */
  /* void with the exact amount */
  ok(&c, pend(14, 2, 3, 25, 0));
  ok(&c, void_(15, 14, 25));
  PSTATE(&c, 14, LEDGER_PENDING_VOIDED);
  BALANCE(&c, 2, 0, 0, 0, 100);
  BALANCE(&c, 3, 0, 100, 0, 0);
  ctx_done(&c);
}

Test(ledger, two_phase_expiry) {
  ctx c;
  ctx_open(&c);
  accounts(&c, LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS, 1, 1);
  accounts(&c, 0, 2, 3);
  ok(&c, tr(9, 3, 1, 100));
  ok(&c, pend(10, 1, 2, 100, 10));
  ok(&c, pend(11, 3, 2, 7, 0)); /* no timeout: never expires */
  uint64_t ts = get_transfer(&c, 10).timestamp;
  uint64_t next = 0;
  cr_assert_eq(ledger_next_expiry(c.l, &next), 0);
  cr_assert_eq(next, ts + 10 * SEC, "next_expiry %llu, expected %llu", (unsigned long long)next,
               (unsigned long long)(ts + 10 * SEC));

  c.now = ts + 10 * SEC - SEC / 1000;
  tick(&c);
  PSTATE(&c, 10, LEDGER_PENDING_OPEN);
  BALANCE(&c, 1, 100, 0, 0, 100);

  c.now = ts + 10 * SEC + SEC / 1000;
  tick(&c);
  uint64_t resolved = PSTATE(&c, 10, LEDGER_PENDING_EXPIRED);
  cr_assert_geq(resolved, ts + 10 * SEC, "expired at %llu before its expiry",
                (unsigned long long)resolved);
  BALANCE(&c, 1, 0, 0, 0, 100);
  BALANCE(&c, 2, 0, 0, 7, 0);
  cr_assert_eq(ledger_next_expiry(c.l, &next), 0);
  cr_assert_eq(next, 0, "nothing left to expire, next_expiry %llu", (unsigned long long)next);
  EXPECT(&c, post(12, 10, 0), LEDGER_PENDING_TRANSFER_EXPIRED);
  EXPECT(&c, void_(13, 10, 0), LEDGER_PENDING_TRANSFER_EXPIRED);
  EXPECT(&c, post(14, 10, 101), LEDGER_EXCEEDS_PENDING_TRANSFER_AMOUNT);
  ok(&c, tr(15, 1, 2, 100)); /* the reserve is released */

  c.now += 1000 * SEC;
  tick(&c);
  PSTATE(&c, 11, LEDGER_PENDING_OPEN);
  ok(&c, post(16, 11, 0));
  ctx_done(&c);
}

Test(ledger, expiry_runs_before_the_events_of_a_batch) {
  ctx c;
  ctx_open(&c);
  accounts(&c, 0, 1, 2);
  ok(&c, pend(10, 1, 2, 100, 1));
  ok(&c, pend(11, 1, 2, 50, 1));
  c.now += 5 * SEC;
  ledger_event evs[] = {post(12, 10, 0), void_(13, 11, 0), pend(14, 1, 2, 5, 1)};
  ledger_result want[] = {LEDGER_PENDING_TRANSFER_EXPIRED, LEDGER_PENDING_TRANSFER_EXPIRED,
                          LEDGER_OK};
  EXPECT_BATCH(&c, evs, want);
  PSTATE(&c, 10, LEDGER_PENDING_EXPIRED);
  PSTATE(&c, 11, LEDGER_PENDING_EXPIRED);
  PSTATE(&c, 14, LEDGER_PENDING_OPEN);
  BALANCE(&c, 1, 5, 0, 0, 0);
  BALANCE(&c, 2, 0, 0, 5, 0);
  ctx_done(&c);
}

/* A pending transfer that falls due inside a batch (after the batch's expiry pass) may not be
 * posted by an event whose timestamp is at or past its expiry. */
Test(ledger, pending_due_within_a_batch_cannot_be_posted) {
  ctx c;
  ctx_open(&c);
  accounts(&c, 0, 1, 2);
  ok(&c, pend(10, 1, 2, 100, 1));
  uint64_t expires = get_transfer(&c, 10).timestamp + SEC;
  c.now = expires - 1;
  ledger_event evs[64];
  ledger_result res[64];
  for (int i = 0; i < 63; i++)
    evs[i] = account_ev(100 + (uint64_t)i);
  evs[63] = post(20, 10, 0);
  fixture_apply(c.l, evs, res, 64);
  for (int i = 0; i < 63; i++)
    cr_assert_eq(res[i], LEDGER_OK);
  uint64_t last_ts = get_account(&c, 162).timestamp;
  cr_assert(res[63] == LEDGER_OK || res[63] == LEDGER_PENDING_TRANSFER_EXPIRED, "got %s",
            ledger_result_name(res[63]));
  if (res[63] == LEDGER_OK) {
    uint64_t post_ts = get_transfer(&c, 20).timestamp;
    cr_assert_leq(post_ts, expires, "posted at %llu, after the expiry at %llu",
                  (unsigned long long)post_ts, (unsigned long long)expires);
  } else {
    assert_no_transfer(&c, 20);
  }
  if (last_ts >= expires)
    cr_assert_eq(res[63], LEDGER_PENDING_TRANSFER_EXPIRED,
                 "the post's timestamp is past the expiry (%llu ≥ %llu) yet it posted",
                 (unsigned long long)last_ts, (unsigned long long)expires);
  c.now = expires + SEC;
  tick(&c);
  PSTATE(&c, 10, res[63] == LEDGER_OK ? LEDGER_PENDING_POSTED : LEDGER_PENDING_EXPIRED);
  BALANCE(&c, 1, 0, res[63] == LEDGER_OK ? 100 : 0, 0, 0);
  ctx_done(&c);
}

/* ---- linked chains ----------------------------------------------------------------------- */

Test(ledger, linked_chain_failure_rolls_back_the_whole_chain) {
  ctx c;
  ctx_open(&c);
  accounts(&c, 0, 1, 2);
  ledger_event evs[] = {
      tr(100, 1, 2, 5),
      linked(account_ev(10)),
      linked(account_ev(11)),
      linked(tr(101, 10, 11, 7)),
      linked(pend(102, 1, 10, 3, 0)),
      linked(tr(103, 11, 10, 0)), /* fails */
      tr(104, 11, 11, 1),         /* invalid too, but its chain failed first */
      tr(105, 2, 1, 2),
  };
  ledger_result want[] = {
      LEDGER_OK,
      LEDGER_LINKED_EVENT_FAILED,
      LEDGER_LINKED_EVENT_FAILED,
      LEDGER_LINKED_EVENT_FAILED,
      LEDGER_LINKED_EVENT_FAILED,
      LEDGER_AMOUNT_MUST_NOT_BE_ZERO,
      LEDGER_LINKED_EVENT_FAILED,
      LEDGER_OK,
  };
  EXPECT_BATCH(&c, evs, want);
  assert_no_account(&c, 10);
  assert_no_account(&c, 11);
  for (uint64_t i = 101; i <= 104; i++)
    assert_no_transfer(&c, i);
  BALANCE(&c, 1, 0, 5, 0, 2);
  BALANCE(&c, 2, 0, 2, 0, 5);
  ledger_totals t;
  cr_assert_eq(ledger_totals_of(c.l, &t), 0);
  cr_assert_eq(t.accounts, 2);

  /* the ids of the rolled back chain are free: the corrected chain goes through */
  evs[5].transfer.amount = 4;
  evs[6].transfer.credit_account_id = idn(10);
  ledger_event again[] = {evs[1], evs[2], evs[3], evs[4], evs[5], evs[6]};
  ledger_result ok6[] = {LEDGER_OK, LEDGER_OK, LEDGER_OK, LEDGER_OK, LEDGER_OK, LEDGER_OK};
  EXPECT_BATCH(&c, again, ok6);
  BALANCE(&c, 1, 3, 5, 0, 2);
  BALANCE(&c, 10, 0, 7, 3, 5);
  BALANCE(&c, 11, 0, 5, 0, 7);
  ctx_done(&c);
}

Test(ledger, linked_chain_of_accounts_and_transfers_succeeds_as_a_unit) {
  ctx c;
  ctx_open(&c);
  ledger_event evs[] = {
      linked(account_ev(1)),
      linked(fixture_account(2, LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS)),
      linked(tr(10, 1, 2, 50)),
      linked(tr(11, 2, 1, 30)), /* uses the credit of the event before */
      linked(pend(12, 2, 1, 20, 0)),
      post(13, 12, 15),
      account_ev(3),
  };
  ledger_result want[] = {LEDGER_OK, LEDGER_OK, LEDGER_OK, LEDGER_OK,
                          LEDGER_OK, LEDGER_OK, LEDGER_OK};
  EXPECT_BATCH(&c, evs, want);
  BALANCE(&c, 1, 0, 50, 0, 45);
  BALANCE(&c, 2, 0, 45, 0, 50);
  PSTATE(&c, 12, LEDGER_PENDING_POSTED);
  ctx_done(&c);
}

Test(ledger, linked_chain_rolls_back_balances_and_two_phase_state) {
  ctx c;
  ctx_open(&c);
  accounts(&c, LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS, 1, 1);
  accounts(&c, 0, 2, 2);
  ok(&c, tr(9, 2, 1, 50));
  ok(&c, pend(20, 1, 2, 5, 0));
  ledger_event evs[] = {
      linked(pend(10, 1, 2, 30, 0)), linked(post(11, 10, 0)), linked(void_(12, 20, 0)),
      linked(tr(13, 1, 2, 10)),      tr(14, 1, 2, 20), /* 30 + 10 + 20 > 50: exceeds credits */
  };
  ledger_result want[] = {LEDGER_LINKED_EVENT_FAILED, LEDGER_LINKED_EVENT_FAILED,
                          LEDGER_LINKED_EVENT_FAILED, LEDGER_LINKED_EVENT_FAILED,
                          LEDGER_EXCEEDS_CREDITS};
  EXPECT_BATCH(&c, evs, want);
  BALANCE(&c, 1, 5, 0, 0, 50);
  BALANCE(&c, 2, 0, 50, 5, 0);
  assert_no_transfer(&c, 10);
  assert_no_transfer(&c, 11);
  assert_no_transfer(&c, 12);
  PSTATE(&c, 20, LEDGER_PENDING_OPEN);
  EXPECT(&c, post(15, 10, 0), LEDGER_PENDING_TRANSFER_NOT_FOUND);
  ok(&c, void_(12, 20, 0)); /* the void of the failed chain may be sent again */
  ctx_done(&c);
}

Test(ledger, linked_chain_open_at_the_end_of_the_batch) {
  ctx c;
  ctx_open(&c);
  accounts(&c, 0, 1, 2);
  ledger_event evs[] = {tr(10, 1, 2, 5), linked(tr(11, 1, 2, 6)), linked(tr(12, 1, 2, 7))};
  ledger_result want[] = {LEDGER_OK, LEDGER_LINKED_EVENT_FAILED, LEDGER_LINKED_EVENT_CHAIN_OPEN};
  EXPECT_BATCH(&c, evs, want);
  assert_no_transfer(&c, 11);
  assert_no_transfer(&c, 12);
  BALANCE(&c, 1, 0, 5, 0, 0);

  ledger_event one[] = {linked(account_ev(3))};
  ledger_result open1[] = {LEDGER_LINKED_EVENT_CHAIN_OPEN};
  EXPECT_BATCH(&c, one, open1);
  assert_no_account(&c, 3);

  /* an open chain fails as a whole, whatever its events: linked_event_failed on all but the
   * last, even on one that is invalid by itself */
  ledger_event bad[] = {linked(tr(13, 1, 2, 0)), linked(tr(14, 1, 2, 1))};
  ledger_result bad_want[] = {LEDGER_LINKED_EVENT_FAILED, LEDGER_LINKED_EVENT_CHAIN_OPEN};
  EXPECT_BATCH(&c, bad, bad_want);

  /* an earlier, closed chain in the same batch is not affected */
  ledger_event two[] = {linked(tr(15, 1, 2, 1)), tr(16, 2, 1, 1), linked(tr(17, 1, 2, 1))};
  ledger_result two_want[] = {LEDGER_OK, LEDGER_OK, LEDGER_LINKED_EVENT_CHAIN_OPEN};
  EXPECT_BATCH(&c, two, two_want);
  BALANCE(&c, 1, 0, 6, 0, 1);
  /* the ids of an open chain are free */
  ok(&c, tr(11, 1, 2, 6));
  ok(&c, tr(17, 1, 2, 1));
  ctx_done(&c);
}

Test(ledger, linked_chain_failing_first_event_and_neighbouring_chains) {
  ctx c;
  ctx_open(&c);
  accounts(&c, 0, 1, 2);
  ledger_event evs[] = {
      linked(tr(10, 1, 2, 1)),  tr(11, 1, 2, 1),                          /* chain A: ok */
      linked(tr(12, 1, 99, 1)), linked(tr(13, 1, 2, 1)), tr(14, 1, 2, 1), /* chain B fails */
      linked(tr(15, 2, 1, 1)),  tr(16, 2, 1, 1),                          /* chain C: ok */
  };
  ledger_result want[] = {
      LEDGER_OK,
      LEDGER_OK,
      LEDGER_CREDIT_ACCOUNT_NOT_FOUND,
      LEDGER_LINKED_EVENT_FAILED,
      LEDGER_LINKED_EVENT_FAILED,
      LEDGER_OK,
      LEDGER_OK,
  };
  EXPECT_BATCH(&c, evs, want);
  BALANCE(&c, 1, 0, 2, 0, 2);
  BALANCE(&c, 2, 0, 2, 0, 2);
  ok(&c, tr(13, 1, 2, 1)); /* linked_event_failed is not transient */
  ctx_done(&c);
}

/* ---- balancing, constraints, closing ----------------------------------------------------- */

Test(ledger, balancing_debit_and_credit) {
  ctx c;
  ctx_open(&c);
  accounts(&c, 0, 1, 4);
  ok(&c, tr(10, 2, 1, 100)); /* account 1: credits_posted 100 */
  ok(&c, pend(11, 1, 3, 30, 0));
  /* balancing_debit: at most credits_posted - debits_pending - debits_posted = 70 */
  ok(&c, fixture_transfer(12, 1, 3, 1000, LEDGER_TRANSFER_BALANCING_DEBIT));
  cr_assert_eq(get_transfer(&c, 12).amount, 70, "balancing debit moved %llu",
               (unsigned long long)get_transfer(&c, 12).amount);
  BALANCE(&c, 1, 30, 70, 0, 100);
  /* asked for less than the limit: moves what it asked for */
  ok(&c, void_(13, 11, 0));
  ok(&c, fixture_transfer(14, 1, 3, 10, LEDGER_TRANSFER_BALANCING_DEBIT));
  cr_assert_eq(get_transfer(&c, 14).amount, 10);
  BALANCE(&c, 1, 0, 80, 0, 100);
  /* the same event again is a duplicate, though it moved less than it asked for */
  EXPECT(&c, fixture_transfer(12, 1, 3, 1000, LEDGER_TRANSFER_BALANCING_DEBIT), LEDGER_EXISTS);
  BALANCE(&c, 1, 0, 80, 0, 100);

  /* balancing_credit: at most debits_posted - credits_pending - credits_posted of the credit
   * account; account 4 has debited 60 */
  ok(&c, tr(20, 4, 2, 60));
  ok(&c, pend(21, 3, 4, 15, 0));
  ok(&c, fixture_transfer(22, 2, 4, 500, LEDGER_TRANSFER_BALANCING_CREDIT));
  cr_assert_eq(get_transfer(&c, 22).amount, 45);
  BALANCE(&c, 4, 0, 60, 15, 45);
  /* both: the smaller of the two limits */
  ok(&c, void_(23, 21, 0));
  ok(&c, tr(24, 3, 1, 7)); /* account 1: credits 107, debits 80 → 27 left; account 4: 15 left */
  ok(&c, fixture_transfer(25, 1, 4, 500,
                          LEDGER_TRANSFER_BALANCING_DEBIT | LEDGER_TRANSFER_BALANCING_CREDIT));
  cr_assert_eq(get_transfer(&c, 25).amount, 15);
  BALANCE(&c, 1, 0, 95, 0, 107);
  BALANCE(&c, 4, 0, 60, 0, 60);
  ctx_done(&c);
}

Test(ledger, balance_constraints) {
  ctx c;
  ctx_open(&c);
  accounts(&c, LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS, 1, 1);
  accounts(&c, LEDGER_ACCOUNT_CREDITS_MUST_NOT_EXCEED_DEBITS, 2, 2);
  accounts(&c, 0, 3, 3);
  EXPECT(&c, tr(10, 1, 3, 1), LEDGER_EXCEEDS_CREDITS);
  EXPECT(&c, tr(11, 3, 2, 1), LEDGER_EXCEEDS_DEBITS);
  EXPECT(&c, pend(12, 1, 3, 1, 0), LEDGER_EXCEEDS_CREDITS);
  EXPECT(&c, tr(13, 1, 2, 1), LEDGER_EXCEEDS_CREDITS); /* both: credits first */
  ok(&c, tr(14, 3, 1, 100));
  ok(&c, tr(15, 2, 3, 50));
  ok(&c, tr(16, 1, 3, 60));
  EXPECT(&c, tr(17, 1, 3, 41), LEDGER_EXCEEDS_CREDITS);
  ok(&c, pend(18, 1, 3, 30, 0));
  EXPECT(&c, tr(19, 1, 3, 11), LEDGER_EXCEEDS_CREDITS); /* pending debits count */
  ok(&c, tr(20, 1, 3, 10));
  BALANCE(&c, 1, 30, 70, 0, 100);
  ok(&c, void_(21, 18, 0));
  ok(&c, tr(22, 1, 3, 30));
  BALANCE(&c, 1, 0, 100, 0, 100);
  /* credits_must_not_exceed_debits: 50 debited */
  EXPECT(&c, tr(23, 3, 2, 51), LEDGER_EXCEEDS_DEBITS);
  ok(&c, pend(24, 3, 2, 20, 0));
  EXPECT(&c, tr(25, 3, 2, 31), LEDGER_EXCEEDS_DEBITS); /* pending credits count */
  ok(&c, tr(26, 3, 2, 30));
  ok(&c, post(27, 24, 0));
  BALANCE(&c, 2, 0, 50, 0, 50);
  EXPECT(&c, tr(28, 3, 2, 1), LEDGER_EXCEEDS_DEBITS);
  /* credits pending on the debit account do not count */
  ok(&c, pend(29, 3, 1, 500, 0));
  EXPECT(&c, tr(30, 1, 3, 1), LEDGER_EXCEEDS_CREDITS);
  ctx_done(&c);
}

Test(ledger, closing_transfers) {
  ctx c;
  ctx_open(&c);
  accounts(&c, 0, 1, 3);
  ok(&c, tr(9, 3, 1, 100));
  ok(&c, fixture_transfer(10, 1, 2, 10, LEDGER_TRANSFER_PENDING | LEDGER_TRANSFER_CLOSING_DEBIT));
  cr_assert(get_account(&c, 1).flags & LEDGER_ACCOUNT_CLOSED, "debit account not closed");
  cr_assert(!(get_account(&c, 2).flags & LEDGER_ACCOUNT_CLOSED), "credit account closed");
  EXPECT(&c, tr(11, 1, 3, 5), LEDGER_DEBIT_ACCOUNT_ALREADY_CLOSED);
  EXPECT(&c, tr(12, 3, 1, 5), LEDGER_CREDIT_ACCOUNT_ALREADY_CLOSED);
  EXPECT(&c, pend(13, 1, 3, 5, 0), LEDGER_DEBIT_ACCOUNT_ALREADY_CLOSED);
  EXPECT(&c, fixture_transfer(14, 1, 3, 1, LEDGER_TRANSFER_PENDING | LEDGER_TRANSFER_CLOSING_DEBIT),
         LEDGER_DEBIT_ACCOUNT_ALREADY_CLOSED);
  ok(&c, tr(15, 2, 3, 5));
  BALANCE(&c, 1, 10, 0, 0, 100);
  /* voiding the closing transfer reopens the account */
  ok(&c, void_(16, 10, 0));
  cr_assert(!(get_account(&c, 1).flags & LEDGER_ACCOUNT_CLOSED), "void did not reopen");
  ok(&c, tr(17, 1, 3, 5));
  EXPECT(&c, tr(11, 1, 3, 5), LEDGER_ID_ALREADY_FAILED); /* already_closed is transient */

  /* closing_credit, reopened by expiry */
  ok(&c, fixture_transfer(18, 3, 2, 1, LEDGER_TRANSFER_PENDING | LEDGER_TRANSFER_CLOSING_CREDIT));
  ledger_event e =
      fixture_transfer(19, 3, 2, 1, LEDGER_TRANSFER_PENDING | LEDGER_TRANSFER_CLOSING_CREDIT);
  e.transfer.timeout = 5;
  EXPECT(&c, e, LEDGER_CREDIT_ACCOUNT_ALREADY_CLOSED);
  ok(&c, void_(20, 18, 0));
  e.transfer.id = idn(190);
  ok(&c, e);
  cr_assert(get_account(&c, 2).flags & LEDGER_ACCOUNT_CLOSED);
  EXPECT(&c, tr(21, 3, 2, 1), LEDGER_CREDIT_ACCOUNT_ALREADY_CLOSED);
  c.now += 6 * SEC;
  tick(&c);
  PSTATE(&c, 190, LEDGER_PENDING_EXPIRED);
  cr_assert(!(get_account(&c, 2).flags & LEDGER_ACCOUNT_CLOSED), "expiry did not reopen");
  ok(&c, tr(22, 3, 2, 1));

  /* posting the closing transfer keeps the account closed */
  ok(&c, fixture_transfer(23, 1, 2, 1, LEDGER_TRANSFER_PENDING | LEDGER_TRANSFER_CLOSING_DEBIT));
  ok(&c, post(24, 23, 0));
  cr_assert(get_account(&c, 1).flags & LEDGER_ACCOUNT_CLOSED, "post reopened the account");
  EXPECT(&c, tr(25, 1, 3, 1), LEDGER_DEBIT_ACCOUNT_ALREADY_CLOSED);
  ctx_reopen(&c);
  cr_assert(get_account(&c, 1).flags & LEDGER_ACCOUNT_CLOSED, "closed lost on reopen");
  EXPECT(&c, tr(26, 3, 1, 1), LEDGER_CREDIT_ACCOUNT_ALREADY_CLOSED);
  ctx_done(&c);
}

/* ---- overflow ---------------------------------------------------------------------------- */

Test(ledger, overflow_results) {
  ctx c;
  ctx_open(&c);
  accounts(&c, 0, 1, 12);
  /* pending: 1 → 2 near the top, then one more pending unit on each side */
  ok(&c, pend(10, 1, 2, MAX64 - 10, 0));
  EXPECT(&c, pend(11, 1, 3, 20, 0), LEDGER_OVERFLOWS_DEBITS_PENDING);
  EXPECT(&c, pend(12, 3, 2, 20, 0), LEDGER_OVERFLOWS_CREDITS_PENDING);
  EXPECT(&c, tr(13, 1, 3, 20), LEDGER_OVERFLOWS_DEBITS);  /* pending + posted */
  EXPECT(&c, tr(14, 3, 2, 20), LEDGER_OVERFLOWS_CREDITS); /* pending + posted */
  ok(&c, pend(15, 1, 3, 10, 0));                          /* exactly UINT64_MAX is fine */
  BALANCE(&c, 1, MAX64, 0, 0, 0);
  /* posted: 4 → 5 near the top */
  ok(&c, tr(20, 4, 5, MAX64 - 10));
  EXPECT(&c, tr(21, 4, 6, 20), LEDGER_OVERFLOWS_DEBITS_POSTED);
  EXPECT(&c, tr(22, 6, 5, 20), LEDGER_OVERFLOWS_CREDITS_POSTED);
  EXPECT(&c, tr(23, 4, 5, 20), LEDGER_OVERFLOWS_DEBITS_POSTED); /* debits first */
  ok(&c, tr(24, 4, 6, 10));
  BALANCE(&c, 4, 0, MAX64, 0, 0);
  /* precedence: pending before posted, debits before credits */
  ok(&c, tr(30, 7, 8, MAX64 - 10));
  ok(&c, pend(31, 9, 10, MAX64 - 10, 0));
  EXPECT(&c, pend(32, 9, 8, 20, 0), LEDGER_OVERFLOWS_DEBITS_PENDING);
  EXPECT(&c, pend(33, 11, 10, 20, 0), LEDGER_OVERFLOWS_CREDITS_PENDING);
  /* a pending transfer onto a posted balance near the top: the header does not say whether
   * the posted check (TigerBeetle) or only the pending + posted check applies to it; either
   * way it must fail with the debit-side (credit-side) overflow */
  ledger_result r = fixture_apply_one(c.l, pend(34, 7, 12, 20, 0));
  cr_assert(r == LEDGER_OVERFLOWS_DEBITS_POSTED || r == LEDGER_OVERFLOWS_DEBITS, "got %s",
            ledger_result_name(r));
  r = fixture_apply_one(c.l, pend(35, 12, 8, 20, 0));
  cr_assert(r == LEDGER_OVERFLOWS_CREDITS_POSTED || r == LEDGER_OVERFLOWS_CREDITS, "got %s",
            ledger_result_name(r));
  /* the overflow results are transient */
  ok(&c, void_(36, 10, 0));
  EXPECT(&c, pend(11, 1, 3, 20, 0), LEDGER_ID_ALREADY_FAILED);
  EXPECT(&c, tr(13, 1, 3, 20), LEDGER_ID_ALREADY_FAILED);
  ok(&c, tr(37, 1, 3, 20));
  BALANCE(&c, 1, 10, 20, 0, 0);
  ledger_totals t;
  cr_assert_eq(ledger_totals_of(c.l, &t), 0);
  /* posted: 20 (MAX-10), 24 (10), 30 (MAX-10), 37 (20) */
  cr_assert(t.debits_posted == (unsigned __int128)MAX64 * 2 + 10, "posted totals wrong");
  ctx_done(&c);
}

Test(ledger, overflows_timeout) {
  ctx c;
  ctx_open(&c);
  c.now = MAX64 - 100 * SEC;
  accounts(&c, 0, 1, 2);
  EXPECT(&c, pend(10, 1, 2, 1, 1000), LEDGER_OVERFLOWS_TIMEOUT);
  EXPECT(&c, pend(11, 1, 2, 1, UINT32_MAX), LEDGER_OVERFLOWS_TIMEOUT);
  ok(&c, pend(12, 1, 2, 1, 50));
  assert_no_transfer(&c, 10);
  BALANCE(&c, 1, 1, 0, 0, 0);
  ctx_done(&c);
}

/* ---- timestamps -------------------------------------------------------------------------- */

Test(ledger, timestamps_unique_and_increasing_across_batches) {
  ctx c;
  ctx_open(&c);
  uint64_t prev = 0;
  uint64_t next_id = 1;
  /* the clock stands still, then goes back: timestamps still increase */
  uint64_t clocks[] = {T0, T0, T0, T0 - 10 * SEC, T0 + 5 * SEC, T0 + 5 * SEC};
  for (size_t b = 0; b < sizeof clocks / sizeof clocks[0]; b++) {
    c.now = clocks[b];
    ledger_event evs[6];
    uint64_t first = next_id;
    for (int i = 0; i < 3; i++)
      evs[i] = account_ev(next_id++);
    for (int i = 3; i < 6; i++, next_id++)
      evs[i] = tr(1000 + next_id, first, first + 1, 1);
    fixture_apply(c.l, evs, NULL, 6);
    for (uint64_t id = first; id < next_id; id++) {
      uint64_t ts =
          id < first + 3 ? get_account(&c, id).timestamp : get_transfer(&c, 1000 + id).timestamp;
      cr_assert_gt(ts, prev, "batch %zu, id %llu: timestamp %llu after %llu", b,
                   (unsigned long long)id, (unsigned long long)ts, (unsigned long long)prev);
      prev = ts;
    }
  }
  /* and across a reopen */
  ctx_reopen(&c);
  c.now = T0 - 100 * SEC;
  ok(&c, account_ev(500));
  cr_assert_gt(get_account(&c, 500).timestamp, prev);
  ctx_done(&c);
}

/* ---- queries ----------------------------------------------------------------------------- */

static void query_ids(ctx *c, uint64_t account, uint64_t tmin, uint64_t tmax, uint32_t limit,
                      uint32_t flags, const uint64_t *want, size_t nwant, int line) {
  ledger_account_filter f = {idn(account), tmin, tmax, limit, flags};
  ledger_transfer out[16];
  size_t n = 99;
  int rc = ledger_account_transfers(c->l, &f, out, 16, &n);
  cr_assert_eq(rc, 0, "line %d: account_transfers: %s", line, ledger_strerror(rc));
  cr_assert_eq(n, nwant, "line %d: %zu transfers, expected %zu", line, n, nwant);
  for (size_t i = 0; i < n; i++)
    cr_assert(ledger_id_eq(out[i].id, idn(want[i])), "line %d: [%zu] is %llu, expected %llu", line,
              i, (unsigned long long)out[i].id.lo, (unsigned long long)want[i]);
}
#define QUERY(c, acc, tmin, tmax, limit, flags, ...)                                               \
  do {                                                                                             \
    const uint64_t want_[] = {__VA_ARGS__};                                                        \
    query_ids((c), (acc), (tmin), (tmax), (limit), (flags), want_, sizeof want_ / sizeof want_[0], \
              __LINE__);                                                                           \
  } while (0)

Test(ledger, queries) {
  ctx c;
  ctx_open(&c);
  accounts(&c, LEDGER_ACCOUNT_HISTORY, 1, 1);
  accounts(&c, 0, 2, 3);
  ledger_event steps[] = {
      tr(11, 2, 1, 100),     tr(12, 1, 3, 10), tr(13, 3, 1, 5),
      pend(14, 1, 2, 20, 0), tr(15, 2, 3, 7),  post(16, 14, 15),
  };
  uint64_t ts[17] = {0};
  for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
    c.now += SEC;
    ok(&c, steps[i]);
    ts[11 + i] = get_transfer(&c, 11 + i).timestamp;
  }
  const uint32_t D = LEDGER_FILTER_DEBITS, C = LEDGER_FILTER_CREDITS, R = LEDGER_FILTER_REVERSED;
  QUERY(&c, 1, 0, 0, 100, 0, 11, 12, 13, 14, 16);
  QUERY(&c, 1, 0, 0, 100, D | C, 11, 12, 13, 14, 16);
  QUERY(&c, 1, 0, 0, 100, R, 16, 14, 13, 12, 11);
  QUERY(&c, 1, 0, 0, 100, D, 12, 14, 16);
  QUERY(&c, 1, 0, 0, 100, C, 11, 13);
  QUERY(&c, 1, 0, 0, 100, C | R, 13, 11);
  QUERY(&c, 1, 0, 0, 2, 0, 11, 12);
  QUERY(&c, 1, 0, 0, 2, R, 16, 14);
  QUERY(&c, 1, 0, 0, 1, D | R, 16);
  QUERY(&c, 1, ts[12], ts[14], 100, 0, 12, 13, 14);
  QUERY(&c, 1, ts[12], ts[14], 100, R, 14, 13, 12);
  QUERY(&c, 1, ts[12], ts[14], 2, R, 14, 13);
  QUERY(&c, 1, ts[12], ts[14], 2, 0, 12, 13);
  QUERY(&c, 1, ts[12] + 1, ts[14] - 1, 100, 0, 13);
  QUERY(&c, 1, ts[13], 0, 100, 0, 13, 14, 16);
  QUERY(&c, 1, 0, ts[13], 100, 0, 11, 12, 13);
  QUERY(&c, 1, ts[12], 0, 100, C, 13);
  QUERY(&c, 3, 0, 0, 100, 0, 12, 13, 15);
  QUERY(&c, 2, 0, 0, 100, D, 11, 15);
  QUERY(&c, 2, 0, 0, 100, C, 14, 16);

  ledger_account_filter f = {idn(1), 0, 0, 0, 0};
  ledger_transfer out[16];
  size_t n = 0;
  cr_assert_eq(ledger_account_transfers(c.l, &f, out, 16, &n), LEDGER_E_INVAL, "limit 0");
  f.limit = 10;
  f.account_id = idn(42);
  cr_assert_eq(ledger_account_transfers(c.l, &f, out, 16, &n), LEDGER_E_NOTFOUND);

  /* the returned transfers are the stored ones */
  f.account_id = idn(1);
  f.flags = D;
  cr_assert_eq(ledger_account_transfers(c.l, &f, out, 16, &n), 0);
  cr_assert_eq(n, 3);
  ledger_transfer t12 = get_transfer(&c, 12);
  cr_assert_eq(memcmp(&out[0], &t12, sizeof t12), 0);

  /* balances of the history account after each of its transfers */
  ledger_balance bal[16];
  const ledger_balance want[] = {
      {0, 0, 0, 100, ts[11]},   {0, 10, 0, 100, ts[12]}, {0, 10, 0, 105, ts[13]},
      {20, 10, 0, 105, ts[14]}, {0, 25, 0, 105, ts[16]},
  };
  f = (ledger_account_filter){idn(1), 0, 0, 100, 0};
  cr_assert_eq(ledger_account_balances(c.l, &f, bal, 16, &n), 0);
  cr_assert_eq(n, 5, "%zu balances", n);
  for (size_t i = 0; i < 5; i++)
    cr_assert_eq(memcmp(&bal[i], &want[i], sizeof want[i]), 0,
                 "balance %zu: dp=%llu dpo=%llu cp=%llu cpo=%llu ts=%llu", i,
                 (unsigned long long)bal[i].debits_pending,
                 (unsigned long long)bal[i].debits_posted,
                 (unsigned long long)bal[i].credits_pending,
                 (unsigned long long)bal[i].credits_posted, (unsigned long long)bal[i].timestamp);
  f.flags = R;
  f.limit = 2;
  cr_assert_eq(ledger_account_balances(c.l, &f, bal, 16, &n), 0);
  cr_assert_eq(n, 2);
  cr_assert_eq(memcmp(&bal[0], &want[4], sizeof want[4]), 0);
  cr_assert_eq(memcmp(&bal[1], &want[3], sizeof want[3]), 0);
  f = (ledger_account_filter){idn(1), ts[12], ts[13], 100, C};
  cr_assert_eq(ledger_account_balances(c.l, &f, bal, 16, &n), 0);
  cr_assert_eq(n, 1);
  cr_assert_eq(memcmp(&bal[0], &want[2], sizeof want[2]), 0);
  /* an account without the history flag has none, though it has transfers */
  f = (ledger_account_filter){idn(2), 0, 0, 100, 0};
  n = 99;
  cr_assert_eq(ledger_account_balances(c.l, &f, bal, 16, &n), 0);
  cr_assert_eq(n, 0, "account without history has %zu balances", n);
  ctx_done(&c);
}

/* ---- reopening --------------------------------------------------------------------------- */

Test(ledger, reopen_keeps_everything) {
  ctx c;
  ctx_open(&c);
  accounts(&c, LEDGER_ACCOUNT_HISTORY, 1, 1);
  accounts(&c, LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS, 2, 2);
  accounts(&c, 0, 3, 3);
  ok(&c, tr(10, 1, 2, 100));
  ok(&c, pend(11, 2, 3, 30, 100));
  ok(&c, pend(12, 2, 3, 20, 0));
  ok(&c, post(13, 12, 15));
  EXPECT(&c, tr(14, 2, 3, 1000), LEDGER_EXCEEDS_CREDITS);
  ledger_account a[4];
  ledger_transfer t[4];
  for (int i = 1; i <= 3; i++)
    a[i] = get_account(&c, (uint64_t)i);
  for (int i = 0; i < 4; i++)
    t[i] = get_transfer(&c, 10 + (uint64_t)i);
  uint64_t seq, seq2, next, next2;
  uint8_t hash[32], hash2[32];
  cr_assert_eq(ledger_journal_head(c.l, &seq, hash), 0);
  cr_assert_eq(ledger_next_expiry(c.l, &next), 0);
  cr_assert_neq(next, 0);
  cr_assert_gt(seq, 0);

  ctx_reopen(&c);
  for (int i = 1; i <= 3; i++) {
    ledger_account b = get_account(&c, (uint64_t)i);
    cr_assert_eq(memcmp(&a[i], &b, sizeof b), 0, "account %d changed on reopen", i);
  }
  for (int i = 0; i < 4; i++) {
    ledger_transfer u = get_transfer(&c, 10 + (uint64_t)i);
    cr_assert_eq(memcmp(&t[i], &u, sizeof u), 0, "transfer %d changed on reopen", 10 + i);
  }
  cr_assert_eq(ledger_journal_head(c.l, &seq2, hash2), 0);
  cr_assert_eq(seq2, seq);
  cr_assert_eq(memcmp(hash, hash2, 32), 0);
  cr_assert_eq(ledger_next_expiry(c.l, &next2), 0);
  cr_assert_eq(next2, next);
  uint64_t bad = 0;
  cr_assert_eq(ledger_journal_verify(c.l, &bad), 0, "journal does not verify at %llu",
               (unsigned long long)bad);
  PSTATE(&c, 11, LEDGER_PENDING_OPEN);
  PSTATE(&c, 12, LEDGER_PENDING_POSTED);
  EXPECT(&c, tr(14, 2, 3, 1), LEDGER_ID_ALREADY_FAILED);
  EXPECT(&c, tr(10, 1, 2, 100), LEDGER_EXISTS);
  EXPECT(&c, post(15, 12, 0), LEDGER_PENDING_TRANSFER_ALREADY_POSTED);
  ok(&c, tr(16, 1, 3, 1));
  cr_assert_gt(get_transfer(&c, 16).timestamp, t[3].timestamp);
  QUERY(&c, 1, 0, 0, 10, 0, 10, 16);
  ledger_account_filter f = {idn(1), 0, 0, 10, 0};
  ledger_balance bal[4];
  size_t n = 0;
  cr_assert_eq(ledger_account_balances(c.l, &f, bal, 4, &n), 0);
  cr_assert_eq(n, 2);
  cr_assert_eq(bal[1].debits_posted, 101);
  /* the expiry scheduled before the reopen still happens */
  c.now = next + SEC;
  tick(&c);
  PSTATE(&c, 11, LEDGER_PENDING_EXPIRED);
  BALANCE(&c, 2, 0, 15, 0, 100);
  ctx_reopen(&c);
  PSTATE(&c, 11, LEDGER_PENDING_EXPIRED);
  BALANCE(&c, 2, 0, 15, 0, 100);
  ctx_done(&c);
}

/* ---- storage ----------------------------------------------------------------------------- */

static ledger *open_with_map(const char *dir, uint64_t *now, size_t map_size, size_t max) {
  ledger_options opts = {0};
  opts.map_size = map_size;
  opts.map_size_max = max;
  opts.clock = fixture_clock_cb;
  opts.clock_arg = now;
  ledger *l = NULL;
  int rc = ledger_open(dir, &opts, &l);
  cr_assert_eq(rc, 0, "ledger_open: %s", ledger_strerror(rc));
  return l;
}

#define FILL_BATCH 256

/* Fills c's ledger with batches of accounts until ledger_apply fails; returns its code and
 * leaves the failed batch in evs/res, the first id of that batch in *first. */
static int fill_until_failure(ctx *c, ledger_event *evs, ledger_result *res, uint64_t *first,
                              size_t max_batches) {
  uint64_t id = 1000;
  for (size_t b = 0; b < max_batches; b++) {
    *first = id;
    for (size_t i = 0; i < FILL_BATCH; i++) {
      evs[i] = account_ev(id++);
      evs[i].account.user_data_64 = id * 7919;
    }
    int rc = ledger_apply(c->l, evs, res, FILL_BATCH);
    if (rc != 0)
      return rc;
    for (size_t i = 0; i < FILL_BATCH; i++)
      cr_assert_eq(res[i], LEDGER_OK);
  }
  return 0;
}

Test(ledger, batch_storage_full, .timeout = 60) {
  ctx c;
  c.dir = fixture_tmpdir();
  c.now = T0;
  c.l = open_with_map(c.dir, &c.now, 1u << 20, 1u << 20);
  accounts(&c, 0, 1, 2);
  ok(&c, tr(10, 1, 2, 5));
  static ledger_event evs[FILL_BATCH];
  static ledger_result res[FILL_BATCH];
  uint64_t first = 0, seq0, seq1;
  uint8_t h0[32], h1[32];
  ledger_totals t0, t1;
  /* note the head before each attempt: the failed one must leave it as it was */
  int rc = 0;
  uint64_t id = 1000;
  for (size_t b = 0; b < 400; b++) {
    cr_assert_eq(ledger_journal_head(c.l, &seq0, h0), 0);
    cr_assert_eq(ledger_totals_of(c.l, &t0), 0);
    first = id;
    for (size_t i = 0; i < FILL_BATCH; i++) {
      evs[i] = account_ev(id++);
      evs[i].account.user_data_64 = id * 7919;
    }
    rc = ledger_apply(c.l, evs, res, FILL_BATCH);
    if (rc != 0)
      break;
    for (size_t i = 0; i < FILL_BATCH; i++)
      cr_assert_eq(res[i], LEDGER_OK);
  }
  cr_assert_eq(rc, LEDGER_E_FULL, "a 1 MiB map never filled up (rc %d: %s)", rc,
               ledger_strerror(rc));
  cr_assert_gt(first, 1000, "not even the first batch fitted in 1 MiB");
  for (size_t i = 0; i < FILL_BATCH; i++)
    cr_assert_eq(res[i], LEDGER_BATCH_STORAGE_FULL, "result %zu: %s", i,
                 ledger_result_name(res[i]));
  assert_no_account(&c, first);
  assert_no_account(&c, first + FILL_BATCH / 2);
  assert_no_account(&c, first + FILL_BATCH - 1);
  get_account(&c, first - 1);
  cr_assert_eq(ledger_journal_head(c.l, &seq1, h1), 0);
  cr_assert_eq(seq1, seq0, "the failed batch reached the journal");
  cr_assert_eq(memcmp(h0, h1, 32), 0);
  cr_assert_eq(ledger_totals_of(c.l, &t1), 0);
  cr_assert_eq(t1.accounts, t0.accounts);
  fixture_assert_invariants(c.l);

  /* a smaller batch still works, and the refused events may be sent again */
  ledger_event small[] = {evs[0], tr(11, 1, 2, 3)};
  ledger_result small_want[] = {LEDGER_OK, LEDGER_OK};
  EXPECT_BATCH(&c, small, small_want);
  get_account(&c, first);
  BALANCE(&c, 1, 0, 8, 0, 0);
  cr_assert_eq(ledger_journal_head(c.l, &seq1, h1), 0);
  cr_assert_eq(seq1, seq0 + 1);
  uint64_t bad = 0;
  cr_assert_eq(ledger_journal_verify(c.l, &bad), 0);
  ctx_done(&c);
}

/* A map that may grow: the same load goes through without any failure. */
Test(ledger, map_grows_when_allowed, .timeout = 60) {
  ctx c;
  c.dir = fixture_tmpdir();
  c.now = T0;
  c.l = open_with_map(c.dir, &c.now, 1u << 20, 64u << 20);
  static ledger_event evs[FILL_BATCH];
  static ledger_result res[FILL_BATCH];
  uint64_t first = 0;
  int rc = fill_until_failure(&c, evs, res, &first, 40); /* ~10,000 accounts */
  cr_assert_eq(rc, 0, "apply failed though the map may grow: %s", ledger_strerror(rc));
  get_account(&c, first + FILL_BATCH - 1);
  ledger_totals t;
  cr_assert_eq(ledger_totals_of(c.l, &t), 0);
  cr_assert_eq(t.accounts, 40 * FILL_BATCH);
  ctx_done(&c);
}

/* A write that fails (the file may not grow: RLIMIT_FSIZE, with SIGXFSZ ignored) fails the
 * whole batch with LEDGER_E_IO / LEDGER_BATCH_STORAGE_ERROR and leaves the ledger usable. */
Test(ledger, batch_storage_error, .timeout = 60) {
  ctx c;
  ctx_open(&c);
  accounts(&c, 0, 1, 2);
  ok(&c, tr(10, 1, 2, 5));
  char path[4096];
  snprintf(path, sizeof path, "%s/data.mdb", c.dir);
  struct stat st;
  cr_assert_eq(stat(path, &st), 0, "no LMDB data file at %s", path);
  enum { N = 2048 };
  static ledger_event evs[N];
  static ledger_result res[N];
  for (size_t i = 0; i < N; i++)
    evs[i] = account_ev(1000 + i);
  uint64_t seq0, seq1;
  uint8_t h0[32], h1[32];
  cr_assert_eq(ledger_journal_head(c.l, &seq0, h0), 0);

  signal(SIGXFSZ, SIG_IGN);
  struct rlimit old, lim;
  cr_assert_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
  lim.rlim_cur = (rlim_t)st.st_size;
  lim.rlim_max = old.rlim_max;
  cr_assert_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
  int rc = ledger_apply(c.l, evs, res, N);
  cr_assert_eq(setrlimit(RLIMIT_FSIZE, &old), 0);

  cr_assert_eq(rc, LEDGER_E_IO, "apply with a file that may not grow: rc %d (%s)", rc,
               ledger_strerror(rc));
  for (size_t i = 0; i < N; i++)
    cr_assert_eq(res[i], LEDGER_BATCH_STORAGE_ERROR, "result %zu: %s", i,
                 ledger_result_name(res[i]));
  assert_no_account(&c, 1000);
  assert_no_account(&c, 1000 + N - 1);
  cr_assert_eq(ledger_journal_head(c.l, &seq1, h1), 0);
  cr_assert_eq(seq1, seq0);
  cr_assert_eq(memcmp(h0, h1, 32), 0);
  ledger_totals t;
  cr_assert_eq(ledger_totals_of(c.l, &t), 0);
  cr_assert_eq(t.accounts, 2);
  fixture_assert_invariants(c.l);

  /* the storage is back: the same batch goes through */
  fixture_apply(c.l, evs, res, N);
  for (size_t i = 0; i < N; i++)
    cr_assert_eq(res[i], LEDGER_OK, "result %zu: %s", i, ledger_result_name(res[i]));
  get_account(&c, 1000 + N - 1);
  cr_assert_eq(ledger_journal_head(c.l, &seq1, h1), 0);
  cr_assert_eq(seq1, seq0 + 1);
  ok(&c, tr(11, 1, 2, 1));
  BALANCE(&c, 1, 0, 6, 0, 0);
  ctx_done(&c);
}
