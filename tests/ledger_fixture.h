/* ledger_fixture.h — what the ledger test suites share: scratch data directories, event
 * builders, a fake clock and the invariant check. Test code only. */
#ifndef TUMA_TESTS_LEDGER_FIXTURE_H
#define TUMA_TESTS_LEDGER_FIXTURE_H

#include "ledger.h"

/* A fresh empty directory under $TMPDIR (or /tmp); the caller frees the string and may remove
 * the tree with fixture_rmtree(). Aborts the test on failure. */
char *fixture_tmpdir(void);
void fixture_rmtree(const char *dir);

/* A settable clock for ledger_options.clock: arg points at a uint64_t holding nanoseconds. */
uint64_t fixture_clock_cb(void *arg);

/* The same for a clock that other threads read (the queue's writer thread): arg points at an
 * _Atomic uint64_t holding nanoseconds, which the test may change at any time. */
uint64_t fixture_atomic_clock_cb(void *arg);

/* Opens a ledger in dir, with the fake clock when now_ns is non-NULL. Aborts on failure. */
ledger *fixture_open(const char *dir, uint64_t *now_ns);

/* Event builders: an account (ledger 1, code 1 unless changed) and a transfer. */
ledger_event fixture_account(uint64_t id, uint16_t flags);
ledger_event fixture_transfer(uint64_t id, uint64_t debit, uint64_t credit, uint64_t amount,
                              uint16_t flags);

/* Applies n events and asserts the call returned 0; results go to out (may be NULL if n ≤ 64,
 * then they are checked to be LEDGER_OK). */
void fixture_apply(ledger *l, const ledger_event *events, ledger_result *out, size_t n);

/* Applies one event and returns its result. */
ledger_result fixture_apply_one(ledger *l, ledger_event ev);

/* Asserts Σ debits_posted = Σ credits_posted and Σ debits_pending = Σ credits_pending. */
void fixture_assert_invariants(ledger *l);

#endif
