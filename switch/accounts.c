/* accounts.c — ledger account and transfer ids of the switch (accounts.h). */
#include "accounts.h"

#include <string.h>

ledger_id sw_id_from_bytes(const uint8_t b[16]) {
  uint64_t hi = 0, lo = 0;
  for (int i = 0; i < 8; i++) {
    hi = (hi << 8) | b[i];
    lo = (lo << 8) | b[8 + i];
  }
  return ledger_id_make(hi, lo);
}

void sw_id_to_bytes(ledger_id id, uint8_t b[16]) {
  for (int i = 7; i >= 0; i--) {
    b[i] = (uint8_t)(id.hi >> (8 * (7 - i)));
    b[8 + i] = (uint8_t)(id.lo >> (8 * (7 - i)));
  }
}

/* A 64-bit finaliser (splitmix64's): every input bit affects every output bit. */
static uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

ledger_id sw_derive_id(const char *tag, ledger_id from) {
  uint64_t t = 0xcbf29ce484222325ull; /* FNV-1a of the tag */
  for (const char *p = tag; *p; p++)
    t = (t ^ (uint8_t)*p) * 0x100000001b3ull;
  return ledger_id_make(from.hi, from.lo + (mix64(t) | 1));
}

ledger_event sw_transfer_event(ledger_id id, ledger_id debit, ledger_id credit, uint64_t amount,
                               uint32_t ledger_no, uint16_t code, uint16_t flags) {
  ledger_event ev;
  memset(&ev, 0, sizeof ev);
  ev.kind = LEDGER_EVENT_CREATE_TRANSFER;
  ev.transfer.id = id;
  ev.transfer.debit_account_id = debit;
  ev.transfer.credit_account_id = credit;
  ev.transfer.amount = amount;
  ev.transfer.ledger = ledger_no;
  ev.transfer.code = code;
  ev.transfer.flags = flags;
  return ev;
}

ledger_event sw_account_event(ledger_id id, uint32_t ledger_no, uint16_t code, uint16_t flags) {
  ledger_event ev;
  memset(&ev, 0, sizeof ev);
  ev.kind = LEDGER_EVENT_CREATE_ACCOUNT;
  ev.account.id = id;
  ev.account.ledger = ledger_no;
  ev.account.code = code;
  ev.account.flags = flags;
  return ev;
}

void sw_account_events(uint32_t participant, uint32_t ledger_no, ledger_event out[4]) {
  uint16_t dmnec = LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS;
  out[0] = sw_account_event(sw_account_id(participant, ledger_no, SW_ACCOUNT_LIQUIDITY), ledger_no,
                         SW_ACCOUNT_LIQUIDITY, dmnec);
  out[1] = sw_account_event(sw_account_id(participant, ledger_no, SW_ACCOUNT_NDC), ledger_no,
                         SW_ACCOUNT_NDC, dmnec);
  out[2] = sw_account_event(sw_account_id(participant, ledger_no, SW_ACCOUNT_NDC_CONTROL), ledger_no,
                         SW_ACCOUNT_NDC_CONTROL, 0);
  out[3] = sw_account_event(sw_account_id(0, ledger_no, SW_ACCOUNT_SETTLEMENT), ledger_no,
                         SW_ACCOUNT_SETTLEMENT, 0);
}
