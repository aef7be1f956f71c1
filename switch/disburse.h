/* disburse.h — disbursements (DESIGN §4, switch/DISBURSE.md): programmes, the beneficiary
 * registry, batches uploaded as CSV and validated (disburse.c), and their execution as
 * ordinary two-phase transfers from the programme's escrow to the payee operators (payout.c).
 *
 * Money: a programme's budget is its FUNDING account in the ledger (accounts.h). Approving a
 * batch reserves the cycle's total (a pending FUNDING → ESCROW transfer); the cycle's start
 * posts it; each item is a payment ESCROW → payee operator; a failed or cancelled item's amount
 * is released ESCROW → FUNDING. Every id is derived from (programme, cycle, beneficiary token,
 * attempt), and an attempt starts only when every earlier one is final in the ledger, so a
 * beneficiary is paid at most once per cycle across crashes, restarts and re-submissions.
 *
 * Everything runs on the event loop's thread.
 */
#ifndef TUMA_SW_DISBURSE_H
#define TUMA_SW_DISBURSE_H

#include <stdint.h>

#include "daemon.h"
#include "disburse_store.h"

typedef struct sw_disburse sw_disburse;

/* Opens DATA_DIR/disburse and resumes what was running: call after sw_transfers_recover and
 * before the listeners open. 0 or -1 (logged). */
int sw_disburse_open(sw_switch *sw);

/* Stops starting anything (the tick) and writes the statuses: call before the ledger writer
 * stops. Accepts a switch whose disbursements were never opened. */
void sw_disburse_stop(sw_switch *sw);

/* Frees everything (after sw_transfers_free: in-flight items are dropped); runs in progress resume at the next start. Accepts a switch
 * whose disbursements were never opened. */
void sw_disburse_close(sw_switch *sw);

/* Handles an AdminEnvelope carrying a disbursement message; returns 0 if it was one (answered
 * or to be answered), -1 if the body is not a disbursement message. The role of c's
 * certificate decides what is allowed (disburse.proto). */
int sw_disburse_dispatch(sw_conn *c, Tuma__V1__AdminEnvelope *env);

/* ---- between disburse.c and payout.c (not for other modules) ---------------------------- */

struct sw_run;

struct sw_disburse {
  sw_switch *sw;
  sw_dstore *store;
  struct sw_upload *uploads; /* uploads in progress, one per connection */
  struct sw_run *runs;       /* batches being paid (or waiting for their start) */
  struct event *tick;        /* drives the runs and the status flushes */
  uint32_t default_rate;     /* items per second when a batch gives none */
  uint32_t window;           /* items in flight per batch, at most */
  uint32_t max_attempts;     /* per item and cycle, transient failures included */
  uint32_t retry_base_ms;    /* backoff: base × 2^(attempt-1), at most 60 s */
  uint64_t item_expiry_ms;   /* each payment's expiration from its start */
  uint64_t last_flush_ms, last_gc_ms;
  uint64_t hold_until_ms; /* no item starts before (the payees reconnect after a start) */
};

/* payout.c: approval reserves the first cycle; the reply goes to (conn, corr). */
void sw_payout_approve(sw_disburse *d, const sw_batch *b, const char *approver, uint64_t conn,
                       uint64_t corr);
/* Cancels batch b: nothing more starts; pending items cancelled and released; an unstarted
 * reservation voided. Replies to (conn, corr) once it is recorded. */
void sw_payout_cancel(sw_disburse *d, const sw_batch *b, uint64_t conn, uint64_t corr);
/* Resumes the approved and running batches after a start. */
int sw_payout_resume(sw_disburse *d);
/* The run of batch number, or NULL. */
struct sw_run *sw_payout_run(sw_disburse *d, uint64_t batch);
/* Counts and amounts per SW_ITEM_* (index 0 unused) of the run's current cycle, and the paid
 * rate over the last seconds. */
void sw_payout_counts(const struct sw_run *r, uint64_t count[6], uint64_t amount[6],
                      double *paid_per_second);
/* The in-memory status of item index of the run's current cycle; 0 if the run is not on
 * `cycle`. */
int sw_payout_item_status(const struct sw_run *r, uint32_t cycle, uint32_t index,
                          sw_item_status *out);
/* Writes every changed status of every run to the store (one transaction). */
int sw_payout_flush(sw_disburse *d);
void sw_payout_free_all(sw_disburse *d);

/* The derived transfer id of an item's attempt (the same for every batch of the programme:
 * one beneficiary, one cycle, one sequence of attempts), and of its release from one batch's
 * escrow. */
ledger_id sw_payout_item_id(uint32_t programme, uint32_t cycle, const uint8_t token[32],
                            unsigned attempt);
ledger_id sw_payout_release_id(uint32_t programme, uint64_t batch, uint32_t cycle,
                               const uint8_t token[32]);

#endif
