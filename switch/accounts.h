/* accounts.h — how the switch lays participants' money out in the ledger.
 *
 * Per participant and currency (ledger = ISO 4217 numeric code):
 *   LIQUIDITY  prefunded: deposits and received payments credit it, withdrawals and sent
 *              payments debit it; debits_must_not_exceed_credits (a payer without liquidity
 *              gets 4001).
 *   NDC        the net debit cap: credited with the cap (from the participant's NDC_CONTROL
 *              account) and with received payments, debited with sent payments;
 *              debits_must_not_exceed_credits (a payer past its cap gets 4200).
 *   NDC_CONTROL  the source of the cap: cap = debits_posted - credits_posted.
 * Per currency, for the scheme (participant number 0):
 *   SETTLEMENT  the scheme's settlement bank account: deposits debit it, withdrawals credit it.
 *
 * A payment is a linked pair of pending transfers, payer → payee on LIQUIDITY (the id the
 * operator chose) and on NDC (an id derived from it), posted or voided together.
 * Account id: hi = participant number, lo = ledger << 16 | account code.
 *
 * Disbursements (switch/DISBURSE.md), per programme, owned by its funding participant:
 *   FUNDING       the budget: deposits from SETTLEMENT credit it; approvals reserve from it
 *                 (pending), cycle starts post that to the cycle's ESCROW, releases come back;
 *                 debits_must_not_exceed_credits (the budget can never be over-committed).
 *                 id lo = programme << 32 | ledger << 16 | code.
 *   PROGRAMME_NDC the other side of the NDC leg of the programme's payments (no constraint).
 *   ESCROW        one per batch and cycle: funded with the cycle's total, debited by each paid
 *                 item and by the release of each failed or cancelled one, so it ends at zero;
 *                 debits_must_not_exceed_credits. id lo = 1 << 63 | batch << 20 | cycle.
 */
#ifndef TUMA_SWITCH_ACCOUNTS_H
#define TUMA_SWITCH_ACCOUNTS_H

#include <stdint.h>

#include "ledger.h"

enum {
  SW_ACCOUNT_LIQUIDITY = 1,
  SW_ACCOUNT_NDC = 2,
  SW_ACCOUNT_NDC_CONTROL = 3,
  SW_ACCOUNT_SETTLEMENT = 10,
  SW_ACCOUNT_FUNDING = 20,
  SW_ACCOUNT_PROGRAMME_NDC = 21,
  SW_ACCOUNT_ESCROW = 22,
};

/* Transfer codes. */
enum {
  SW_CODE_PAYMENT = 1,     /* the LIQUIDITY leg of a payment, and its post/void */
  SW_CODE_PAYMENT_NDC = 2, /* the NDC leg */
  SW_CODE_DEPOSIT = 3,
  SW_CODE_WITHDRAW = 4,
  SW_CODE_NDC_ADJUST = 5,
  SW_CODE_PROGRAMME_FUND = 6,     /* SETTLEMENT → FUNDING (a budget top-up) */
  SW_CODE_PROGRAMME_DEFUND = 7,   /* FUNDING → SETTLEMENT */
  SW_CODE_RESERVE = 8,            /* FUNDING → ESCROW: pending at approval, posted at start */
  SW_CODE_RELEASE = 9,            /* ESCROW → FUNDING: a failed or cancelled item's amount */
};

/* A programme's account (FUNDING or PROGRAMME_NDC). */
static inline ledger_id sw_programme_account_id(uint32_t participant, uint32_t programme,
                                                uint32_t ledger_no, uint16_t code) {
  return ledger_id_make(participant, ((uint64_t)programme << 32) | ((uint64_t)ledger_no << 16) | code);
}

/* The ESCROW account of one cycle of one batch (batch < 2^43, cycle < 2^20). */
static inline ledger_id sw_escrow_account_id(uint32_t participant, uint64_t batch, uint32_t cycle) {
  return ledger_id_make(participant, (1ull << 63) | (batch << 20) | (cycle & 0xfffffu));
}

/* 1 if id is an ESCROW account id. */
static inline int sw_account_is_escrow(ledger_id id) {
  return (id.lo >> 63) != 0;
}

static inline ledger_id sw_account_id(uint32_t participant, uint32_t ledger_no, uint16_t code) {
  return ledger_id_make(participant, ((uint64_t)ledger_no << 16) | code);
}

/* The participant number of an account id made by sw_account_id. */
static inline uint32_t sw_account_participant(ledger_id id) {
  return (uint32_t)id.hi;
}

/* Derives a ledger id from a tag and an id: the NDC leg of a payment, the post and void legs,
 * liquidity adjustments. The high 64 bits are `from`'s and the low 64 bits are `from`'s plus a
 * constant of the tag (a 64-bit mix of it, odd), so derivation keeps order: time-ordered
 * operator ids (UUIDv7) and the disbursement items' ids, which ascend within a cycle, give
 * derived ids that ascend too, and the ledger's id index keeps appending near its right edge.
 * Two derived ids of distinct (tag, id) pairs collide only when the ids' low halves differ by
 * exactly the difference of two tag constants (2^-64 for unrelated ids). Not a secret: whoever
 * knows a transfer id can compute its legs' ids, as with any public function; a keyed
 * derivation would stop a payer or payee from squatting its own transfer's post id (which only
 * delays that transfer to its expiry). Cost: a few multiplications. */
ledger_id sw_derive_id(const char *tag, ledger_id from);

/* 16 bytes on the wire (big endian, UUID order) <-> ledger id. */
ledger_id sw_id_from_bytes(const uint8_t b[16]);
void sw_id_to_bytes(ledger_id id, uint8_t b[16]);

/* A transfer event (ledger.h) with these fields, everything else zero. */
ledger_event sw_transfer_event(ledger_id id, ledger_id debit, ledger_id credit, uint64_t amount,
                               uint32_t ledger_no, uint16_t code, uint16_t flags);

/* An account creation event with these fields, everything else zero. */
ledger_event sw_account_event(ledger_id id, uint32_t ledger_no, uint16_t code, uint16_t flags);

/* Account creation events (ledger.h) for one participant and currency: LIQUIDITY, NDC,
 * NDC_CONTROL and the scheme's SETTLEMENT for that ledger (creating one that exists gives
 * `exists`, which is fine). Writes 4 events into out. */
void sw_account_events(uint32_t participant, uint32_t ledger_no, ledger_event out[4]);

#endif
