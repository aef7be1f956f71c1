/* fuzz_journal.c — libFuzzer target for the raw journal reader and the audit replay
 * (ledger/audit.h): what `tuma audit verify FILE` does with a file an auditor was handed.
 *
 * The input is a raw export (length-prefixed records, ledger/JOURNAL.md). The first byte
 * selects a mode: with bit 0 set, the records are re-chained first (each prev_hash and hash
 * recomputed, on a heap copy of exactly the input) so that mutations get past the hash check
 * and reach the replay; bit 1 stops the replay at record 2 (`tuma audit balances --at 2`).
 * The audit must end with a verdict, never crash; a record the audit accepts must parse, and
 * a clean verdict must report a consistent head.
 */
#include "audit.h"
#include "journal.h"

#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                                           \
  do {                                                                                             \
    if (!(cond))                                                                                   \
      abort();                                                                                     \
  } while (0)

/* Recomputes prev_hash and hash of every whole record in buf (lengths as they stand). */
static void rechain(uint8_t *buf, size_t len) {
  uint8_t prev[32] = {0};
  size_t off = 0;
  while (len - off >= 4) {
    size_t rl = (size_t)buf[off] | (size_t)buf[off + 1] << 8 | (size_t)buf[off + 2] << 16 |
                (size_t)buf[off + 3] << 24;
    off += 4;
    if (rl > len - off || rl < 64)
      return;
    uint8_t *rec = buf + off;
    memcpy(rec, prev, 32);
    SHA256(rec, rl - 32, rec + rl - 32);
    memcpy(prev, rec + rl - 32, 32);
    off += rl;
  }
}

static int parse_cb(uint64_t seq, const void *record, size_t len, void *arg) {
  (void)seq;
  size_t *n = arg;
  journal_view v;
  if (journal_parse(record, len, &v) == 0) {
    FUZZ_CHECK(v.size == len);
    for (uint32_t i = 0; i < v.event_count; i++) {
      ledger_event ev = journal_event_at(&v, i);
      (void)ev;
      (void)journal_result_at(&v, i);
    }
    for (uint32_t k = 0; k < v.expired_count; k++)
      (void)journal_expired_at(&v, k);
    (*n)++;
  }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  unsigned mode = data[0];
  size_t len = size - 1;
  uint8_t *buf = malloc(len ? len : 1);
  if (!buf)
    return 0;
  memcpy(buf, data + 1, len);
  if (mode & 1)
    rechain(buf, len);

  size_t parsed = 0;
  ledger_audit_scan_buffer(buf, len, 1, 0, parse_cb, &parsed);

  ledger_audit_options o = {0};
  if (mode & 2)
    o.stop_seq = 2;
  ledger_audit *a = NULL;
  if (ledger_audit_new(&o, &a) == 0) {
    int rc = ledger_audit_scan_buffer(buf, len, 1, 0, ledger_audit_feed_cb, a);
    if (rc == 0 || rc == 1 || rc == LEDGER_E_CORRUPT)
      rc = ledger_audit_finish(a, NULL);
    const ledger_audit_report *r = ledger_audit_report_of(a);
    FUZZ_CHECK(rc == 0 || rc == LEDGER_E_CORRUPT);
    FUZZ_CHECK((rc == 0) == (r->problem == LEDGER_AUDIT_OK));
    if (rc == 0 && r->records) {
      FUZZ_CHECK(r->head_seq - r->first_seq + 1 == r->records);
      FUZZ_CHECK(r->records <= parsed);
    }
    ledger_audit_free(a);
  }
  free(buf);
  return 0;
}
