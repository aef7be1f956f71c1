/* test_journal.c — the hash-chained journal (DESIGN §3, ledger/JOURNAL.md).
 *
 * A varied workload (accounts, single-phase and two-phase transfers, expiry by a fake clock
 * and an empty batch, linked chains that fail, rejected events, a bulk batch) is applied to
 * a ledger; then its journal is checked record by record against the format (independently
 * hashed with OpenSSL), replayed into an empty ledger (which must end byte for byte equal),
 * tampered with in memory (every replay of a damaged, forged, reordered or repeated record is
 * refused and commits nothing) and on disk through LMDB directly (ledger_journal_verify finds
 * the damaged record).
 *
 * Record layout (little endian): prev_hash(32) | "TUMAJRN1" | seq u64 | timestamp u64 |
 * event_count u32 | expired_count u32 | expired ids (16 each) | event bodies (128 each) |
 * per event kind u16, result u16 | hash(32) = SHA-256 of everything before it.
 */
#include "ledger_fixture.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <lmdb.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JR_T0 1700000000000000000ull /* the fake clock's start, ns */
#define JR_STEP 1000000ull           /* the fake clock moves 1 ms before each batch */
#define JR_MAX_ID 700                /* transfer ids used are below this; accounts below 20 */
#define JR_MAX_ACCOUNT 20

enum { JR_HEADER = 64, JR_BODY = 128, JR_TRAILER = 4, JR_HASH = 32, JR_ID = 16 };

/* ---- little-endian fields ------------------------------------------------------------ */

static uint64_t jr_le64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--)
    v = (v << 8) | p[i];
  return v;
}

static uint32_t jr_le32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint16_t jr_le16(const unsigned char *p) {
  return (uint16_t)(p[0] | p[1] << 8);
}

static void jr_put_le64(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++)
    p[i] = (unsigned char)(v >> (8 * i));
}

static void jr_put_le16(unsigned char *p, uint16_t v) {
  p[0] = (unsigned char)v;
  p[1] = (unsigned char)(v >> 8);
}

/* ---- collected records ------------------------------------------------------------- */

typedef struct jr_rec {
  uint64_t seq;
  unsigned char *bytes;
  size_t len;
} jr_rec;

typedef struct jr_log {
  jr_rec *r;
  size_t n, cap;
} jr_log;

/* Where the parts of one record are. */
typedef struct jr_view {
  uint64_t seq, ts;
  uint32_t events, expired;
  size_t ids, bodies, trailers, hash;
} jr_view;

static int jr_collect_cb(uint64_t seq, const void *record, size_t len, void *arg) {
  jr_log *log = arg;
  if (log->n == log->cap) {
    size_t cap = log->cap ? 2 * log->cap : 16;
    jr_rec *r = realloc(log->r, cap * sizeof *r);
    if (!r)
      return -1;
    log->r = r;
    log->cap = cap;
  }
  unsigned char *copy = malloc(len ? len : 1);
  if (!copy)
    return -1;
  memcpy(copy, record, len);
  log->r[log->n++] = (jr_rec){seq, copy, len};
  return 0;
}

static jr_log jr_collect(ledger *l) {
  jr_log log = {0};
  int rc = ledger_journal_scan(l, 1, jr_collect_cb, &log);
  cr_assert_eq(rc, 0, "journal_scan: %d", rc);
  return log;
}

static void jr_log_free(jr_log *log) {
  for (size_t i = 0; i < log->n; i++)
    free(log->r[i].bytes);
  free(log->r);
  *log = (jr_log){0};
}

static jr_view jr_parse(const jr_rec *r) {
  cr_assert_geq(r->len, JR_HEADER + JR_HASH, "record %" PRIu64 " is %zu bytes", r->seq, r->len);
  const unsigned char *b = r->bytes;
  jr_view v = {.seq = jr_le64(b + 40),
               .ts = jr_le64(b + 48),
               .events = jr_le32(b + 56),
               .expired = jr_le32(b + 60)};
  v.ids = JR_HEADER;
  v.bodies = v.ids + (size_t)v.expired * JR_ID;
  v.trailers = v.bodies + (size_t)v.events * JR_BODY;
  v.hash = v.trailers + (size_t)v.events * JR_TRAILER;
  cr_assert_eq(r->len, v.hash + JR_HASH,
               "record %" PRIu64 ": %zu bytes, the layout says %zu (%u events, %u expired)", r->seq,
               r->len, v.hash + JR_HASH, v.events, v.expired);
  return v;
}

/* ---- the workload ------------------------------------------------------------------ */

typedef struct jr_world {
  char *dir;
  ledger *l;
  uint64_t now;     /* the fake clock */
  uint64_t records; /* journal records the workload should have produced */
} jr_world;

static ledger_event jr_t(uint64_t id, uint64_t dr, uint64_t cr, uint64_t amount, uint16_t flags) {
  return fixture_transfer(id, dr, cr, amount, flags);
}

/* A post or void of pending transfer `pending`, with zero accounts, ledger and code ("as the
 * pending transfer") unless dr/cr are given. */
static ledger_event jr_resolve(uint64_t id, uint64_t pending, uint64_t dr, uint64_t cr,
                               uint64_t amount, uint16_t flag) {
  ledger_event ev = fixture_transfer(id, dr, cr, amount, flag);
  ev.transfer.pending_id = ledger_id_make(0, pending);
  if (!dr && !cr) {
    ev.transfer.ledger = 0;
    ev.transfer.code = 0;
  }
  return ev;
}

static void jr_apply(jr_world *w, const ledger_event *ev, const ledger_result *want, size_t n) {
  ledger_result got[512];
  cr_assert_leq(n, 512);
  w->now += JR_STEP;
  int rc = ledger_apply(w->l, ev, got, n);
  cr_assert_eq(rc, 0, "ledger_apply: %s", ledger_strerror(rc));
  for (size_t i = 0; i < n; i++)
    cr_assert_eq(got[i], want[i], "record %" PRIu64 " event %zu: got %s, want %s", w->records + 1,
                 i, ledger_result_name(got[i]), ledger_result_name(want[i]));
  w->records++;
}

static uint64_t jr_head(ledger *l, uint8_t hash[32]) {
  uint64_t seq = 0;
  uint8_t local[32];
  cr_assert_eq(ledger_journal_head(l, &seq, hash ? hash : local), 0);
  return seq;
}

/* Builds the workload in a fresh directory: 10 records. The ledger's clock is w->now, so *w
 * must stay where it is while the ledger is open. */
static void jr_build(jr_world *w) {
  *w = (jr_world){.dir = fixture_tmpdir(), .now = JR_T0};
  w->l = fixture_open(w->dir, &w->now);

  { /* 1: accounts of every kind */
    ledger_event ev[7] = {
        fixture_account(1, 0),
        fixture_account(2, 0),
        fixture_account(3, LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS),
        fixture_account(4, LEDGER_ACCOUNT_CREDITS_MUST_NOT_EXCEED_DEBITS),
        fixture_account(5, LEDGER_ACCOUNT_HISTORY),
        fixture_account(6, 0),
        fixture_account(7, 0),
    };
    ev[5].account.ledger = 2;
    ev[6].account.code = 7;
    ev[6].account.user_data_128 = ledger_id_make(9, 8);
    ev[6].account.user_data_64 = 77;
    ev[6].account.user_data_32 = 7;
    ledger_result want[7] = {0};
    jr_apply(w, ev, want, 7);
  }
  { /* 2: single-phase transfers */
    ledger_event ev[7] = {
        jr_t(100, 1, 2, 100, 0), jr_t(101, 2, 3, 50, 0),  jr_t(102, 5, 1, 30, 0),
        jr_t(103, 1, 5, 70, 0),  jr_t(104, 4, 1, 200, 0), jr_t(105, 1, 4, 150, 0),
        jr_t(106, 1, 7, 10, 0),
    };
    ev[6].transfer.user_data_128 = ledger_id_make(1, 2);
    ev[6].transfer.user_data_64 = 3;
    ev[6].transfer.user_data_32 = 4;
    ledger_result want[7] = {0};
    jr_apply(w, ev, want, 7);
  }
  { /* 3: rejected events, nothing linked */
    ledger_event ev[14] = {
        jr_t(110, 3, 1, 1000, 0), jr_t(111, 1, 4, 100, 0), jr_t(112, 1, 1, 5, 0),
        jr_t(0, 1, 2, 5, 0),      jr_t(113, 1, 6, 5, 0),   jr_t(114, 1, 99, 5, 0),
        jr_t(100, 1, 2, 100, 0),  jr_t(100, 1, 2, 101, 0), fixture_account(1, 0),
        fixture_account(2, 0),    jr_t(115, 1, 2, 5, 0),   jr_t(116, 1, 2, 0, 0),
        jr_t(117, 0, 2, 5, 0),    jr_t(118, 0, 0, 0, 0),
    };
    ev[9].account.code = 2;
    ev[10].transfer.timeout = 5;
    memset(&ev[13], 0, sizeof ev[13]); /* an event of unknown kind: stored with kind 0 */
    ev[13].kind = 7;
    ev[13].transfer.id = ledger_id_make(0, 118);
    ledger_result want[14] = {LEDGER_EXCEEDS_CREDITS,
                              LEDGER_EXCEEDS_DEBITS,
                              LEDGER_ACCOUNTS_MUST_BE_DIFFERENT,
                              LEDGER_ID_MUST_NOT_BE_ZERO,
                              LEDGER_ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER,
                              LEDGER_CREDIT_ACCOUNT_NOT_FOUND,
                              LEDGER_EXISTS,
                              LEDGER_EXISTS_WITH_DIFFERENT_AMOUNT,
                              LEDGER_EXISTS,
                              LEDGER_EXISTS_WITH_DIFFERENT_CODE,
                              LEDGER_TIMEOUT_RESERVED_FOR_PENDING_TRANSFER,
                              LEDGER_AMOUNT_MUST_NOT_BE_ZERO,
                              LEDGER_DEBIT_ACCOUNT_ID_MUST_NOT_BE_ZERO,
                              LEDGER_UNKNOWN_EVENT_KIND};
    jr_apply(w, ev, want, 14);
  }
  { /* 4: failed ids, linked chains (failing, succeeding, mixed kinds), an open chain */
    ledger_event ev[14] = {
        jr_t(110, 3, 1, 1000, 0),
        jr_t(114, 1, 99, 5, 0),
        jr_t(112, 1, 1, 5, 0),
        jr_t(120, 1, 2, 10, LEDGER_TRANSFER_LINKED),
        jr_t(121, 2, 5, 5, LEDGER_TRANSFER_LINKED),
        jr_t(122, 3, 1, 10000, 0),
        jr_t(123, 1, 2, 1, LEDGER_TRANSFER_LINKED),
        jr_t(124, 2, 1, 1, 0),
        fixture_account(8, LEDGER_ACCOUNT_LINKED),
        jr_t(125, 8, 1, 3, 0),
        fixture_account(9, LEDGER_ACCOUNT_LINKED),
        jr_t(126, 9, 99, 3, 0),
        jr_t(128, 2, 1, 2, 0),
        jr_t(127, 1, 2, 1, LEDGER_TRANSFER_LINKED),
    };
    ledger_result want[14] = {LEDGER_ID_ALREADY_FAILED,
                              LEDGER_ID_ALREADY_FAILED,
                              LEDGER_ACCOUNTS_MUST_BE_DIFFERENT,
                              LEDGER_LINKED_EVENT_FAILED,
                              LEDGER_LINKED_EVENT_FAILED,
                              LEDGER_EXCEEDS_CREDITS,
                              LEDGER_OK,
                              LEDGER_OK,
                              LEDGER_OK,
                              LEDGER_OK,
                              LEDGER_LINKED_EVENT_FAILED,
                              LEDGER_CREDIT_ACCOUNT_NOT_FOUND,
                              LEDGER_OK,
                              LEDGER_LINKED_EVENT_CHAIN_OPEN};
    jr_apply(w, ev, want, 14);
  }
  { /* 5: pending transfers; 131 stays open with an hour's timeout, 132 expires */
    ledger_event ev[5] = {
        jr_t(130, 1, 2, 500, LEDGER_TRANSFER_PENDING), jr_t(131, 2, 5, 40, LEDGER_TRANSFER_PENDING),
        jr_t(132, 1, 5, 60, LEDGER_TRANSFER_PENDING),  jr_t(133, 5, 1, 20, LEDGER_TRANSFER_PENDING),
        jr_t(134, 1, 2, 80, LEDGER_TRANSFER_PENDING),
    };
    ev[1].transfer.timeout = 3600;
    ev[2].transfer.timeout = 1;
    ledger_result want[5] = {0};
    jr_apply(w, ev, want, 5);
  }
  { /* 6: posts and voids, good and bad */
    ledger_event ev[8] = {
        jr_resolve(140, 130, 0, 0, 0, LEDGER_TRANSFER_POST_PENDING),
        jr_resolve(141, 133, 5, 1, 20, LEDGER_TRANSFER_VOID_PENDING),
        jr_resolve(142, 134, 1, 2, 30, LEDGER_TRANSFER_POST_PENDING),
        jr_resolve(143, 133, 0, 0, 0, LEDGER_TRANSFER_POST_PENDING),
        jr_resolve(144, 130, 0, 0, 0, LEDGER_TRANSFER_POST_PENDING),
        jr_resolve(145, 999, 0, 0, 0, LEDGER_TRANSFER_POST_PENDING),
        jr_resolve(146, 131, 0, 0, 41, LEDGER_TRANSFER_POST_PENDING),
        jr_resolve(147, 134, 0, 0, 0, LEDGER_TRANSFER_VOID_PENDING),
    };
    ledger_result want[8] = {LEDGER_OK,
                             LEDGER_OK,
                             LEDGER_OK,
                             LEDGER_PENDING_TRANSFER_ALREADY_VOIDED,
                             LEDGER_PENDING_TRANSFER_ALREADY_POSTED,
                             LEDGER_PENDING_TRANSFER_NOT_FOUND,
                             LEDGER_EXCEEDS_PENDING_TRANSFER_AMOUNT,
                             LEDGER_PENDING_TRANSFER_ALREADY_POSTED};
    jr_apply(w, ev, want, 8);
  }
  { /* An empty batch with nothing due does nothing: no record. */
    uint64_t before = jr_head(w->l, NULL);
    w->now += JR_STEP;
    cr_assert_eq(ledger_apply(w->l, NULL, NULL, 0), 0);
    cr_assert_eq(jr_head(w->l, NULL), before,
                 "an empty batch with nothing to expire appended "
                 "a record");
  }
  { /* 7: two seconds later an empty batch expires 132 */
    w->now += 2000000000ull;
    uint64_t before = jr_head(w->l, NULL);
    cr_assert_eq(ledger_apply(w->l, NULL, NULL, 0), 0);
    w->records++;
    cr_assert_eq(jr_head(w->l, NULL), before + 1, "the expiry did not append a record");
    ledger_pending_state st;
    uint64_t resolved = 0;
    cr_assert_eq(ledger_pending_state_of(w->l, ledger_id_make(0, 132), &st, &resolved), 0);
    cr_assert_eq(st, LEDGER_PENDING_EXPIRED);
    cr_assert_neq(resolved, 0);
    ledger_transfer t131;
    cr_assert_eq(ledger_lookup_transfer(w->l, ledger_id_make(0, 131), &t131), 0);
    uint64_t next = 0;
    cr_assert_eq(ledger_next_expiry(w->l, &next), 0);
    cr_assert_eq(next, t131.timestamp + 3600ull * 1000000000ull);
  }
  { /* 8: after the expiry, a balancing transfer and history */
    ledger_event ev[4] = {
        jr_resolve(150, 132, 0, 0, 0, LEDGER_TRANSFER_POST_PENDING),
        jr_t(151, 3, 1, 1000, LEDGER_TRANSFER_BALANCING_DEBIT),
        jr_t(152, 1, 5, 25, 0),
        jr_t(153, 5, 2, 5, 0),
    };
    ledger_result want[4] = {LEDGER_PENDING_TRANSFER_EXPIRED, LEDGER_OK, LEDGER_OK, LEDGER_OK};
    jr_apply(w, ev, want, 4);
  }
  { /* 9: a bulk batch through the history account */
    ledger_event ev[300];
    ledger_result want[300] = {0};
    for (uint64_t i = 0; i < 300; i++) {
      uint64_t dr = i % 3 == 0 ? 1 : i % 3 == 1 ? 2 : 5;
      uint64_t cr = i % 3 == 0 ? 2 : i % 3 == 1 ? 5 : 1;
      ev[i] = jr_t(200 + i, dr, cr, 1 + i % 7, 0);
    }
    jr_apply(w, ev, want, 300);
  }
  { /* 10: mixed kinds in one batch */
    ledger_event ev[3] = {fixture_account(10, LEDGER_ACCOUNT_HISTORY), jr_t(160, 10, 1, 9, 0),
                          jr_t(161, 2, 10, 4, 0)};
    ledger_result want[3] = {0};
    jr_apply(w, ev, want, 3);
  }
  cr_assert_eq(jr_head(w->l, NULL), w->records);
  fixture_assert_invariants(w->l);
}

static void jr_destroy(jr_world *w) {
  ledger_close(w->l);
  fixture_rmtree(w->dir);
  free(w->dir);
}

/* An empty ledger in its own directory, on the real clock: replay must not depend on it. */
static ledger *jr_replica(char **dir) {
  *dir = fixture_tmpdir();
  return fixture_open(*dir, NULL);
}

static void jr_replay_upto(ledger *l, const jr_log *log, size_t count) {
  for (size_t i = 0; i < count; i++) {
    int rc = ledger_replay_record(l, log->r[i].bytes, log->r[i].len);
    cr_assert_eq(rc, 0, "replay of record %" PRIu64 ": %s", log->r[i].seq, ledger_strerror(rc));
  }
}

/* ---- comparisons ------------------------------------------------------------------- */

static void jr_assert_same_state(ledger *a, ledger *b) {
  uint8_t ha[32], hb[32];
  uint64_t sa = jr_head(a, ha), sb = jr_head(b, hb);
  cr_assert_eq(sa, sb, "heads: %" PRIu64 " vs %" PRIu64, sa, sb);
  if (memcmp(ha, hb, 32) != 0) {
    /* Say where the journals part. */
    jr_log la = jr_collect(a), lb = jr_collect(b);
    for (size_t i = 0; i < la.n && i < lb.n; i++) {
      size_t len = la.r[i].len < lb.r[i].len ? la.r[i].len : lb.r[i].len, at = 0;
      while (at < len && la.r[i].bytes[at] == lb.r[i].bytes[at])
        at++;
      if (at < len || la.r[i].len != lb.r[i].len)
        cr_assert_fail("head hashes differ: record %zu first differs at byte %zu (%zu vs %zu "
                       "bytes; header 64, then 16 per expired id, 128 per event body, 4 per "
                       "outcome); timestamps %" PRIu64 " vs %" PRIu64,
                       i + 1, at, la.r[i].len, lb.r[i].len, jr_le64(la.r[i].bytes + 48),
                       jr_le64(lb.r[i].bytes + 48));
    }
    cr_assert_fail("head hashes of record %" PRIu64 " differ", sa);
  }
  for (uint64_t id = 0; id < JR_MAX_ACCOUNT; id++) {
    ledger_account x, y;
    memset(&x, 0xa5, sizeof x);
    memset(&y, 0x5a, sizeof y);
    int rx = ledger_lookup_account(a, ledger_id_make(0, id), &x);
    int ry = ledger_lookup_account(b, ledger_id_make(0, id), &y);
    cr_assert_eq(rx, ry, "account %" PRIu64 ": %s vs %s", id, ledger_strerror(rx),
                 ledger_strerror(ry));
    if (rx == 0)
      cr_assert(memcmp(&x, &y, sizeof x) == 0, "account %" PRIu64 " differs", id);
  }
  for (uint64_t id = 0; id < JR_MAX_ID; id++) {
    ledger_transfer x, y;
    memset(&x, 0xa5, sizeof x);
    memset(&y, 0x5a, sizeof y);
    int rx = ledger_lookup_transfer(a, ledger_id_make(0, id), &x);
    int ry = ledger_lookup_transfer(b, ledger_id_make(0, id), &y);
    cr_assert_eq(rx, ry, "transfer %" PRIu64 ": %s vs %s", id, ledger_strerror(rx),
                 ledger_strerror(ry));
    if (rx == 0)
      cr_assert(memcmp(&x, &y, sizeof x) == 0, "transfer %" PRIu64 " differs", id);
    ledger_pending_state px = LEDGER_PENDING_NONE, py = LEDGER_PENDING_NONE;
    uint64_t tx = 1, ty = 2;
    rx = ledger_pending_state_of(a, ledger_id_make(0, id), &px, &tx);
    ry = ledger_pending_state_of(b, ledger_id_make(0, id), &py, &ty);
    cr_assert_eq(rx, ry, "pending state of %" PRIu64 ": %s vs %s", id, ledger_strerror(rx),
                 ledger_strerror(ry));
    if (rx == 0) {
      cr_assert_eq(px, py, "pending state of %" PRIu64, id);
      cr_assert_eq(tx, ty, "pending resolution timestamp of %" PRIu64, id);
    }
  }
  ledger_totals ta, tb;
  cr_assert_eq(ledger_totals_of(a, &ta), 0);
  cr_assert_eq(ledger_totals_of(b, &tb), 0);
  cr_assert(ta.accounts == tb.accounts && ta.debits_pending == tb.debits_pending &&
            ta.debits_posted == tb.debits_posted && ta.credits_pending == tb.credits_pending &&
            ta.credits_posted == tb.credits_posted);
  uint64_t ea = 0, eb = 0;
  cr_assert_eq(ledger_next_expiry(a, &ea), 0);
  cr_assert_eq(ledger_next_expiry(b, &eb), 0);
  cr_assert_eq(ea, eb, "next expiry %" PRIu64 " vs %" PRIu64, ea, eb);
  /* Per-account transfer lists and history balances. */
  ledger_transfer *xa = calloc(1024, sizeof *xa), *xb = calloc(1024, sizeof *xb);
  ledger_balance *ba = calloc(1024, sizeof *ba), *bb = calloc(1024, sizeof *bb);
  cr_assert(xa && xb && ba && bb);
  for (uint64_t id = 1; id <= 10; id++) {
    ledger_account_filter f = {.account_id = ledger_id_make(0, id), .limit = 1024};
    size_t na = 0, nb = 0;
    int rx = ledger_account_transfers(a, &f, xa, 1024, &na);
    int ry = ledger_account_transfers(b, &f, xb, 1024, &nb);
    cr_assert_eq(rx, ry, "account %" PRIu64 " transfers: %s vs %s", id, ledger_strerror(rx),
                 ledger_strerror(ry));
    if (rx != 0)
      continue; /* account 9 was never created */
    cr_assert_eq(na, nb, "account %" PRIu64 ": %zu vs %zu transfers", id, na, nb);
    cr_assert(memcmp(xa, xb, na * sizeof *xa) == 0, "account %" PRIu64 " transfers differ", id);
    cr_assert_eq(ledger_account_balances(a, &f, ba, 1024, &na), 0);
    cr_assert_eq(ledger_account_balances(b, &f, bb, 1024, &nb), 0);
    cr_assert_eq(na, nb, "account %" PRIu64 ": %zu vs %zu balances", id, na, nb);
    cr_assert(memcmp(ba, bb, na * sizeof *ba) == 0, "account %" PRIu64 " balances differ", id);
  }
  free(xa);
  free(xb);
  free(ba);
  free(bb);
}

/* Replays `bytes` into l and asserts it is refused with nothing committed. */
static void jr_assert_refused(ledger *l, const void *bytes, size_t len, const char *what) {
  uint8_t before[32], after[32];
  uint64_t s0 = jr_head(l, before);
  ledger_totals t0, t1;
  cr_assert_eq(ledger_totals_of(l, &t0), 0);
  int rc = ledger_replay_record(l, bytes, len);
  cr_assert_eq(rc, LEDGER_E_CORRUPT, "%s: replay returned %s, want corrupt", what,
               ledger_strerror(rc));
  uint64_t s1 = jr_head(l, after);
  cr_assert_eq(s1, s0, "%s: the head moved from %" PRIu64 " to %" PRIu64, what, s0, s1);
  cr_assert(memcmp(before, after, 32) == 0, "%s: the head hash changed", what);
  cr_assert_eq(ledger_totals_of(l, &t1), 0);
  cr_assert(t0.accounts == t1.accounts && t0.debits_posted == t1.debits_posted &&
                t0.debits_pending == t1.debits_pending,
            "%s: balances changed", what);
}

static void jr_rehash(unsigned char *bytes, size_t len) {
  SHA256(bytes, len - JR_HASH, bytes + len - JR_HASH);
}

/* ---- tests ------------------------------------------------------------------------- */

Test(journal, records_follow_the_format_and_chain, .timeout = 60) {
  jr_world w;
  jr_build(&w);
  jr_log log = jr_collect(w.l);
  cr_assert_eq(log.n, w.records, "%zu records scanned, %" PRIu64 " expected", log.n, w.records);
  uint8_t prev[32] = {0};
  uint64_t prev_ts = 0;
  unsigned with_expiry = 0, unknown = 0, checked_ts = 0;
  for (size_t i = 0; i < log.n; i++) {
    const jr_rec *r = &log.r[i];
    cr_assert_eq(r->seq, i + 1, "scan gave seq %" PRIu64 " at position %zu", r->seq, i);
    jr_view v = jr_parse(r);
    cr_assert_eq(v.seq, r->seq, "record %" PRIu64 " carries seq %" PRIu64, r->seq, v.seq);
    cr_assert(memcmp(r->bytes + 32, "TUMAJRN1", 8) == 0, "record %" PRIu64 ": bad magic", r->seq);
    cr_assert(memcmp(r->bytes, prev, 32) == 0,
              "record %" PRIu64 ": prev_hash is not the "
              "previous record's hash",
              r->seq);
    uint8_t h[32];
    SHA256(r->bytes, r->len - JR_HASH, h);
    cr_assert(memcmp(h, r->bytes + v.hash, 32) == 0, "record %" PRIu64 ": SHA-256 mismatch",
              r->seq);
    /* Timestamps (JOURNAL.md): expiry k at T + k, event i at T + X + i, and the next
     * record's T above this one's last, T + X + E - 1. */
    cr_assert_gt(v.ts, prev_ts,
                 "record %" PRIu64 ": timestamp %" PRIu64 " not above the "
                 "previous record's last %" PRIu64,
                 r->seq, v.ts, prev_ts);
    cr_assert_geq(v.ts, JR_T0, "record %" PRIu64 ": timestamp not from the ledger's clock", r->seq);
    cr_assert(v.events || v.expired, "record %" PRIu64 " records nothing", r->seq);
    prev_ts = v.ts + v.expired + v.events - 1;
    for (uint32_t e = 0; e < v.events; e++) {
      uint16_t kind = jr_le16(r->bytes + v.trailers + 4 * e);
      uint16_t result = jr_le16(r->bytes + v.trailers + 4 * e + 2);
      cr_assert_lt(result, LEDGER_RESULT_COUNT_);
      if (result == LEDGER_UNKNOWN_EVENT_KIND) {
        cr_assert_eq(kind, 0, "record %" PRIu64 " event %u: unknown kind stored as %u", r->seq, e,
                     kind);
        unknown++;
        continue;
      }
      cr_assert(kind == LEDGER_EVENT_CREATE_ACCOUNT || kind == LEDGER_EVENT_CREATE_TRANSFER,
                "record %" PRIu64 " event %u: kind %u", r->seq, e, kind);
      if (result != LEDGER_OK)
        continue;
      ledger_id id = {jr_le64(r->bytes + v.bodies + JR_BODY * e),
                      jr_le64(r->bytes + v.bodies + JR_BODY * e + 8)};
      uint64_t ts = 0;
      if (kind == LEDGER_EVENT_CREATE_ACCOUNT) {
        ledger_account a;
        cr_assert_eq(ledger_lookup_account(w.l, id, &a), 0);
        ts = a.timestamp;
      } else {
        ledger_transfer t;
        cr_assert_eq(ledger_lookup_transfer(w.l, id, &t), 0);
        ts = t.timestamp;
      }
      cr_assert_eq(ts, v.ts + v.expired + e,
                   "record %" PRIu64 " event %u: timestamp %" PRIu64 ", want T + X + i = %" PRIu64,
                   r->seq, e, ts, v.ts + v.expired + e);
      checked_ts++;
    }
    if (v.expired) {
      with_expiry++;
      cr_assert_eq(v.events, 0);
      cr_assert_eq(v.expired, 1);
      cr_assert_eq(jr_le64(r->bytes + v.ids), 132, "expired id");
      cr_assert_eq(jr_le64(r->bytes + v.ids + 8), 0, "expired id (high half)");
      ledger_pending_state st;
      uint64_t resolved = 0;
      cr_assert_eq(ledger_pending_state_of(w.l, ledger_id_make(0, 132), &st, &resolved), 0);
      cr_assert_eq(resolved, v.ts, "expiry 0 of record %" PRIu64 " at %" PRIu64 ", want T", r->seq,
                   resolved);
    }
    memcpy(prev, h, 32);
  }
  cr_assert_eq(with_expiry, 1);
  cr_assert_eq(unknown, 1);
  cr_assert_gt(checked_ts, 300);
  /* Spot checks against what was submitted: record 2's first body is transfer 100 as sent,
   * record 3's results are the rejections. */
  jr_view v2 = jr_parse(&log.r[1]);
  ledger_event t100 = jr_t(100, 1, 2, 100, 0);
  cr_assert(memcmp(log.r[1].bytes + v2.bodies, &t100.transfer, JR_BODY) == 0,
            "record 2's first event body is not the transfer as submitted");
  jr_view v3 = jr_parse(&log.r[2]);
  cr_assert_eq(jr_le16(log.r[2].bytes + v3.trailers + 2), LEDGER_EXCEEDS_CREDITS);
  cr_assert_eq(jr_le16(log.r[2].bytes + v3.trailers + 8 * 4), LEDGER_EVENT_CREATE_ACCOUNT);
  cr_assert_eq(jr_le16(log.r[2].bytes + v3.trailers + 8 * 4 + 2), LEDGER_EXISTS);
  /* The head is the last record. */
  uint8_t head[32];
  cr_assert_eq(jr_head(w.l, head), log.n);
  cr_assert(memcmp(head, prev, 32) == 0, "head hash is not the last record's hash");
  jr_log_free(&log);
  jr_destroy(&w);
}

static int jr_count_cb(uint64_t seq, const void *record, size_t len, void *arg) {
  (void)record;
  (void)len;
  uint64_t *seen = arg;
  seen[0]++;
  if (!seen[1])
    seen[1] = seq;
  return seq == 7 ? 42 : 0;
}

Test(journal, verify_and_scan_of_an_intact_ledger, .timeout = 60) {
  jr_world w;
  jr_build(&w);
  uint64_t bad = 12345;
  cr_assert_eq(ledger_journal_verify(w.l, &bad), 0);
  cr_assert_eq(ledger_journal_verify(w.l, NULL), 0);
  /* from_seq starts the scan there; a callback's non-zero return stops it and is returned. */
  uint64_t seen[2] = {0, 0};
  cr_assert_eq(ledger_journal_scan(w.l, 4, jr_count_cb, seen), 42);
  cr_assert_eq(seen[1], 4);
  cr_assert_eq(seen[0], 4, "records 4..7 before the stop, got %" PRIu64, seen[0]);
  seen[0] = seen[1] = 0;
  cr_assert_eq(ledger_journal_scan(w.l, 8, jr_count_cb, seen), 0);
  cr_assert_eq(seen[0], w.records - 7);
  seen[0] = 0;
  cr_assert_eq(ledger_journal_scan(w.l, w.records + 1, jr_count_cb, seen), 0);
  cr_assert_eq(seen[0], 0);
  /* A reopened ledger verifies too and has the same head. */
  uint8_t h1[32], h2[32];
  uint64_t s1 = jr_head(w.l, h1);
  ledger_close(w.l);
  w.l = fixture_open(w.dir, &w.now);
  cr_assert_eq(jr_head(w.l, h2), s1);
  cr_assert(memcmp(h1, h2, 32) == 0);
  cr_assert_eq(ledger_journal_verify(w.l, &bad), 0);
  /* An auditor opens it read-only: verify and scan work, replay and apply are refused. */
  ledger_close(w.l);
  ledger_options ro = {.flags = LEDGER_OPEN_READ_ONLY};
  int rc = ledger_open(w.dir, &ro, &w.l);
  cr_assert_eq(rc, 0, "read-only open: %s", ledger_strerror(rc));
  bad = 0;
  rc = ledger_journal_verify(w.l, &bad);
  cr_assert_eq(rc, 0, "read-only verify: %s (bad_seq %" PRIu64 ")", ledger_strerror(rc), bad);
  cr_assert_eq(jr_head(w.l, h2), s1);
  jr_log log = jr_collect(w.l);
  cr_assert_eq(log.n, s1);
  cr_assert_eq(ledger_replay_record(w.l, log.r[0].bytes, log.r[0].len), LEDGER_E_INVAL);
  ledger_event ev = fixture_account(19, 0);
  ledger_result res;
  cr_assert_eq(ledger_apply(w.l, &ev, &res, 1), LEDGER_E_INVAL);
  cr_assert_eq(jr_head(w.l, NULL), s1);
  jr_log_free(&log);
  jr_destroy(&w);
}

Test(journal, replay_reproduces_the_ledger, .timeout = 60) {
  jr_world w;
  jr_build(&w);
  jr_log log = jr_collect(w.l);
  char *rdir = NULL;
  ledger *r = jr_replica(&rdir);
  for (size_t i = 0; i < log.n; i++) {
    int rc = ledger_replay_record(r, log.r[i].bytes, log.r[i].len);
    cr_assert_eq(rc, 0, "replay of record %" PRIu64 ": %s", log.r[i].seq, ledger_strerror(rc));
    cr_assert_eq(jr_head(r, NULL), log.r[i].seq);
  }
  jr_assert_same_state(w.l, r);
  uint64_t bad = 0;
  cr_assert_eq(ledger_journal_verify(r, &bad), 0, "replica's journal fails at %" PRIu64, bad);
  /* The replica's own journal is the same bytes. */
  jr_log copy = jr_collect(r);
  cr_assert_eq(copy.n, log.n);
  for (size_t i = 0; i < log.n; i++) {
    cr_assert_eq(copy.r[i].len, log.r[i].len);
    cr_assert(memcmp(copy.r[i].bytes, log.r[i].bytes, log.r[i].len) == 0,
              "replica's record %zu differs", i + 1);
  }
  fixture_assert_invariants(r);
  /* Reopened, the replica is still the same; and, given the same clock and the same next
   * batch, it writes the same next record as the original (a standby can take over). */
  ledger_close(r);
  uint64_t rnow = w.now;
  r = fixture_open(rdir, &rnow);
  jr_assert_same_state(w.l, r);
  ledger_event next[3] = {jr_t(600, 1, 2, 7, LEDGER_TRANSFER_PENDING), jr_t(601, 2, 5, 3, 0),
                          jr_resolve(602, 131, 0, 0, 0, LEDGER_TRANSFER_VOID_PENDING)};
  next[0].transfer.timeout = 60;
  ledger_result want[3] = {LEDGER_OK, LEDGER_OK, LEDGER_OK};
  rnow = w.now + JR_STEP;
  jr_apply(&w, next, want, 3);
  ledger_result got[3];
  cr_assert_eq(ledger_apply(r, next, got, 3), 0);
  cr_assert(memcmp(got, want, sizeof got) == 0);
  jr_assert_same_state(w.l, r);
  ledger_close(r);
  jr_log_free(&copy);
  jr_log_free(&log);
  fixture_rmtree(rdir);
  free(rdir);
  jr_destroy(&w);
}

Test(journal, flipped_bytes_are_refused, .timeout = 60) {
  jr_world w;
  jr_build(&w);
  jr_log log = jr_collect(w.l);
  char *rdir = NULL;
  ledger *r = jr_replica(&rdir);
  unsigned tried = 0;
  for (size_t i = 0; i < log.n; i++) {
    const jr_rec *rec = &log.r[i];
    jr_view v = jr_parse(rec);
    size_t pos[] = {0,
                    31,
                    32,
                    39,
                    40,
                    47,
                    48,
                    55,
                    56,
                    60,
                    JR_HEADER,
                    v.bodies + (v.trailers - v.bodies) / 2,
                    v.trailers > v.bodies ? v.trailers - 1 : v.ids,
                    v.trailers,
                    v.trailers + 2,
                    v.hash > v.trailers ? v.hash - 1 : v.ids,
                    v.hash,
                    v.hash + 16,
                    rec->len - 1};
    unsigned char *copy = malloc(rec->len);
    cr_assert_not_null(copy);
    for (size_t p = 0; p < sizeof pos / sizeof pos[0]; p++) {
      if (pos[p] >= rec->len)
        continue;
      for (unsigned bit = 0; bit < 8; bit += 7) {
        memcpy(copy, rec->bytes, rec->len);
        copy[pos[p]] ^= (unsigned char)(1u << bit);
        char what[96];
        snprintf(what, sizeof what, "record %" PRIu64 " byte %zu bit %u flipped", rec->seq, pos[p],
                 bit);
        jr_assert_refused(r, copy, rec->len, what);
        tried++;
      }
    }
    /* Truncated or extended, it is refused too. */
    jr_assert_refused(r, rec->bytes, rec->len - 1, "truncated record");
    jr_assert_refused(r, rec->bytes, JR_HEADER, "header only");
    unsigned char *longer = malloc(rec->len + 16);
    cr_assert_not_null(longer);
    memcpy(longer, rec->bytes, rec->len);
    memset(longer + rec->len, 0, 16);
    jr_assert_refused(r, longer, rec->len + 16, "record with trailing bytes");
    free(longer);
    free(copy);
    /* The intact record still applies after all those refusals. */
    cr_assert_eq(ledger_replay_record(r, rec->bytes, rec->len), 0,
                 "intact record %" PRIu64 " refused after tampered copies", rec->seq);
  }
  cr_log_info("%u flipped copies refused", tried);
  jr_assert_same_state(w.l, r);
  ledger_close(r);
  jr_log_free(&log);
  fixture_rmtree(rdir);
  free(rdir);
  jr_destroy(&w);
}

Test(journal, forged_records_with_valid_hashes_are_refused, .timeout = 60) {
  /* The hash holds (recomputed), but the content disagrees with what the replica computes
   * or with its head: every one must be refused. */
  jr_world w;
  jr_build(&w);
  jr_log log = jr_collect(w.l);
  char *rdir = NULL;
  ledger *r = jr_replica(&rdir);
  for (size_t i = 0; i < log.n; i++) {
    const jr_rec *rec = &log.r[i];
    jr_view v = jr_parse(rec);
    unsigned char *f = malloc(rec->len);
    cr_assert_not_null(f);
    char what[128];

    memcpy(f, rec->bytes, rec->len); /* another seq */
    jr_put_le64(f + 40, v.seq + 1);
    jr_rehash(f, rec->len);
    snprintf(what, sizeof what, "record %" PRIu64 " with seq+1", v.seq);
    jr_assert_refused(r, f, rec->len, what);

    memcpy(f, rec->bytes, rec->len); /* another prev_hash */
    f[5] ^= 0x10;
    jr_rehash(f, rec->len);
    snprintf(what, sizeof what, "record %" PRIu64 " with another prev_hash", v.seq);
    jr_assert_refused(r, f, rec->len, what);

    memcpy(f, rec->bytes, rec->len); /* another magic */
    f[39] = '2';
    jr_rehash(f, rec->len);
    snprintf(what, sizeof what, "record %" PRIu64 " with magic TUMAJRN2", v.seq);
    jr_assert_refused(r, f, rec->len, what);

    if (v.events) { /* another result for the first and for the last event */
      for (uint32_t e = 0; e < v.events; e += v.events - 1 ? v.events - 1 : 1) {
        memcpy(f, rec->bytes, rec->len);
        size_t at = v.trailers + 4 * (size_t)e + 2;
        uint16_t res = jr_le16(f + at);
        jr_put_le16(f + at, res == LEDGER_OK ? LEDGER_EXISTS : LEDGER_OK);
        jr_rehash(f, rec->len);
        snprintf(what, sizeof what, "record %" PRIu64 " event %u with result %u instead of %u",
                 v.seq, e, jr_le16(f + at), res);
        jr_assert_refused(r, f, rec->len, what);

        memcpy(f, rec->bytes, rec->len); /* another kind */
        at = v.trailers + 4 * (size_t)e;
        jr_put_le16(f + at, (uint16_t)(3 - jr_le16(f + at)));
        jr_rehash(f, rec->len);
        snprintf(what, sizeof what, "record %" PRIu64 " event %u with another kind", v.seq, e);
        jr_assert_refused(r, f, rec->len, what);
        if (v.events == 1)
          break;
      }
    }
    if (v.expired) {
      memcpy(f, rec->bytes, rec->len); /* another expired id */
      f[v.ids] ^= 0x01;
      jr_rehash(f, rec->len);
      jr_assert_refused(r, f, rec->len, "expiry record naming another transfer");

    } else if (v.seq == 3) {
      /* Transfer 110 asked for 1000 from an account holding 50 (exceeds_credits); asking
       * for 10 it would succeed, which contradicts the recorded result. */
      memcpy(f, rec->bytes, rec->len);
      size_t amount_at = v.bodies + offsetof(ledger_transfer, amount);
      cr_assert_eq(jr_le64(f + amount_at), 1000);
      jr_put_le64(f + amount_at, 10);
      jr_rehash(f, rec->len);
      jr_assert_refused(r, f, rec->len, "record 3 with transfer 110 asking for 10");
    }
    free(f);
    cr_assert_eq(ledger_replay_record(r, rec->bytes, rec->len), 0,
                 "intact record %" PRIu64 " refused after forged copies", rec->seq);
  }
  jr_assert_same_state(w.l, r);
  ledger_close(r);
  jr_log_free(&log);
  fixture_rmtree(rdir);
  free(rdir);
  jr_destroy(&w);
}

Test(journal, forged_records_that_reproduce_nothing_are_refused, .timeout = 60) {
  /* A record that, replayed, makes the replica do nothing at all: a header with no events
   * and no expiries, or the expiry record dated before anything was due. Replay must refuse
   * it (LEDGER_E_CORRUPT), not return 0 with nothing committed: on success the contract
   * says the replica's head equals the record's. */
  jr_world w;
  jr_build(&w);
  jr_log log = jr_collect(w.l);
  char *rdir = NULL;
  ledger *r = jr_replica(&rdir);
  for (size_t i = 0; i < log.n; i++) {
    const jr_rec *rec = &log.r[i];
    jr_view v = jr_parse(rec);
    char what[128];
    unsigned char empty[JR_HEADER + JR_HASH];
    memcpy(empty, rec->bytes, JR_HEADER);
    memset(empty + 56, 0, 8); /* event_count = expired_count = 0 */
    jr_rehash(empty, sizeof empty);
    snprintf(what, sizeof what, "record %" PRIu64 " emptied of events and expiries", v.seq);
    jr_assert_refused(r, empty, sizeof empty, what);
    if (v.expired) {
      unsigned char *f = malloc(rec->len);
      cr_assert_not_null(f);
      memcpy(f, rec->bytes, rec->len); /* a time when nothing was due yet */
      jr_put_le64(f + 48, v.ts - 1500000000ull);
      jr_rehash(f, rec->len);
      jr_assert_refused(r, f, rec->len, "expiry record dated before the expiry was due");
      free(f);
    }
    cr_assert_eq(ledger_replay_record(r, rec->bytes, rec->len), 0);
  }
  jr_assert_same_state(w.l, r);
  ledger_close(r);
  jr_log_free(&log);
  fixture_rmtree(rdir);
  free(rdir);
  jr_destroy(&w);
}

Test(journal, out_of_order_and_repeated_records_are_refused, .timeout = 60) {
  jr_world w;
  jr_build(&w);
  jr_log log = jr_collect(w.l);
  cr_assert_geq(log.n, 5);
  char *rdir = NULL;
  ledger *r = jr_replica(&rdir);
  /* An empty ledger takes record 1 only. */
  jr_assert_refused(r, log.r[1].bytes, log.r[1].len, "record 2 into an empty ledger");
  jr_assert_refused(r, log.r[log.n - 1].bytes, log.r[log.n - 1].len, "last record first");
  jr_replay_upto(r, &log, 3);
  jr_assert_refused(r, log.r[4].bytes, log.r[4].len, "record 5 after record 3");
  jr_assert_refused(r, log.r[2].bytes, log.r[2].len, "record 3 twice");
  jr_assert_refused(r, log.r[0].bytes, log.r[0].len, "record 1 again");
  cr_assert_eq(ledger_replay_record(r, log.r[3].bytes, log.r[3].len), 0, "record 4 in order");
  jr_assert_refused(r, log.r[3].bytes, log.r[3].len, "record 4 twice");
  /* A record of another history (same seq, another predecessor) is refused: build a second
   * ledger whose record 5 follows a different record 4. */
  {
    char *odir = fixture_tmpdir();
    uint64_t now = JR_T0;
    ledger *o = fixture_open(odir, &now);
    jr_replay_upto(o, &log, 3);
    ledger_event ev = fixture_account(11, 0);
    now = JR_T0 + 50 * JR_STEP;
    cr_assert_eq(fixture_apply_one(o, ev), LEDGER_OK);
    now += JR_STEP;
    cr_assert_eq(fixture_apply_one(o, fixture_account(12, 0)), LEDGER_OK);
    jr_log other = jr_collect(o);
    cr_assert_eq(other.n, 5);
    jr_assert_refused(r, other.r[4].bytes, other.r[4].len, "record 5 of another history");
    jr_log_free(&other);
    ledger_close(o);
    fixture_rmtree(odir);
    free(odir);
  }
  for (size_t i = 4; i < log.n; i++)
    cr_assert_eq(ledger_replay_record(r, log.r[i].bytes, log.r[i].len), 0);
  jr_assert_same_state(w.l, r);
  ledger_close(r);
  jr_log_free(&log);
  fixture_rmtree(rdir);
  free(rdir);
  jr_destroy(&w);
}

/* ---- tampering with the stored journal through LMDB ---------------------------------- */

/* Opens the data directory's LMDB environment and the "journal" database, and finds the
 * stored record whose seq field is `seq` (so the key format does not matter). Calls edit on
 * a copy of its value and writes it back. */
static void jr_tamper_on_disk(const char *dir, uint64_t seq,
                              void (*edit)(unsigned char *v, size_t len)) {
  MDB_env *env = NULL;
  cr_assert_eq(mdb_env_create(&env), 0);
  cr_assert_eq(mdb_env_set_maxdbs(env, 64), 0);
  int rc = mdb_env_open(env, dir, 0, 0664);
  cr_assert_eq(rc, 0, "mdb_env_open(%s): %s", dir, mdb_strerror(rc));
  MDB_txn *txn = NULL;
  cr_assert_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
  MDB_dbi dbi;
  rc = mdb_dbi_open(txn, "journal", 0, &dbi);
  cr_assert_eq(rc, 0, "no \"journal\" database: %s", mdb_strerror(rc));
  unsigned flags = 0;
  cr_assert_eq(mdb_dbi_flags(txn, dbi, &flags), 0);
  cr_assert(flags & MDB_INTEGERKEY, "JOURNAL.md: the journal has 8-byte integer keys");
  MDB_cursor *cur = NULL;
  cr_assert_eq(mdb_cursor_open(txn, dbi, &cur), 0);
  MDB_val k, v;
  int found = 0;
  for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
       rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
    if (v.mv_size < JR_HEADER || jr_le64((const unsigned char *)v.mv_data + 40) != seq)
      continue;
    if (flags & MDB_INTEGERKEY) {
      uint64_t key;
      cr_assert_eq(k.mv_size, sizeof key);
      memcpy(&key, k.mv_data, sizeof key);
      cr_assert_eq(key, seq, "journal key %" PRIu64 " holds record %" PRIu64, key, seq);
    }
    unsigned char *copy = malloc(v.mv_size);
    cr_assert_not_null(copy);
    memcpy(copy, v.mv_data, v.mv_size);
    edit(copy, v.mv_size);
    MDB_val nv = {v.mv_size, copy};
    rc = mdb_cursor_put(cur, &k, &nv, MDB_CURRENT);
    cr_assert_eq(rc, 0, "mdb_cursor_put: %s", mdb_strerror(rc));
    free(copy);
    found = 1;
    break;
  }
  cr_assert(found, "record %" PRIu64 " not found in the journal database", seq);
  mdb_cursor_close(cur);
  cr_assert_eq(mdb_txn_commit(txn), 0);
  mdb_env_close(env);
}

static void jr_flip_body_cb(unsigned char *v, size_t len) {
  (void)len;
  v[JR_HEADER + 20] ^= 0x01; /* inside the first event body */
}

static void jr_flip_stored_hash_cb(unsigned char *v, size_t len) {
  v[len - 1] ^= 0x80;
}

static void jr_forge_cb(unsigned char *v, size_t len) {
  v[JR_HEADER + 20] ^= 0x01;
  jr_rehash(v, len);
}

static void jr_expect_bad_seq(jr_world *w, uint64_t want) {
  ledger_close(w->l);
  w->l = NULL;
  ledger *l = NULL;
  ledger_options opts = {.clock = fixture_clock_cb, .clock_arg = &w->now};
  int rc = ledger_open(w->dir, &opts, &l);
  cr_assert_eq(rc, 0, "ledger_open after tampering with record %" PRIu64 ": %s", want,
               ledger_strerror(rc));
  uint64_t bad = 0;
  rc = ledger_journal_verify(l, &bad);
  cr_assert_eq(rc, LEDGER_E_CORRUPT, "verify returned %s", ledger_strerror(rc));
  cr_assert_eq(bad, want, "bad_seq %" PRIu64 ", want %" PRIu64, bad, want);
  w->l = l;
}

Test(journal, tampering_on_disk_is_found_by_verify, .timeout = 60) {
  jr_world w;
  jr_build(&w);
  cr_assert_gt(w.records, 4);
  jr_log orig = jr_collect(w.l);

  /* One byte of record 3's event bytes: record 3 fails its hash. */
  ledger_close(w.l);
  jr_tamper_on_disk(w.dir, 3, jr_flip_body_cb);
  w.l = fixture_open(w.dir, &w.now);
  jr_expect_bad_seq(&w, 3);
  /* Put it back: the journal verifies again. */
  ledger_close(w.l);
  jr_tamper_on_disk(w.dir, 3, jr_flip_body_cb);
  w.l = fixture_open(w.dir, &w.now);
  cr_assert_eq(ledger_journal_verify(w.l, NULL), 0, "restored journal does not verify");

  /* Record 3's stored hash: record 3 fails. */
  ledger_close(w.l);
  jr_tamper_on_disk(w.dir, 3, jr_flip_stored_hash_cb);
  w.l = fixture_open(w.dir, &w.now);
  jr_expect_bad_seq(&w, 3);
  ledger_close(w.l);
  jr_tamper_on_disk(w.dir, 3, jr_flip_stored_hash_cb);
  w.l = fixture_open(w.dir, &w.now);
  cr_assert_eq(ledger_journal_verify(w.l, NULL), 0);

  /* Record 3 rewritten with a matching hash: it verifies alone, but record 4's prev_hash no
   * longer links to it, so the chain breaks at 4. */
  ledger_close(w.l);
  jr_tamper_on_disk(w.dir, 3, jr_forge_cb);
  w.l = fixture_open(w.dir, &w.now);
  jr_expect_bad_seq(&w, 4);

  /* The head record damaged: either ledger_open refuses (journal head unreadable) or the
   * ledger opens and verify names the head. */
  {
    uint64_t last = w.records;
    ledger_close(w.l);
    w.l = NULL;
    jr_tamper_on_disk(w.dir, last, jr_flip_body_cb);
    ledger *l = NULL;
    int orc = ledger_open(w.dir, NULL, &l);
    if (orc == 0) {
      uint64_t bad = 0;
      cr_assert_eq(ledger_journal_verify(l, &bad), LEDGER_E_CORRUPT);
      cr_assert_eq(bad, 4, "record 4's link to the forged record 3 fails first, got %" PRIu64, bad);
      ledger_close(l);
    } else {
      cr_assert_eq(orc, LEDGER_E_CORRUPT, "open with a damaged head: %s", ledger_strerror(orc));
    }
    jr_tamper_on_disk(w.dir, last, jr_flip_body_cb); /* restore it */
    w.l = fixture_open(w.dir, &w.now);
    jr_expect_bad_seq(&w, 4);
  }

  /* The tampered ledger's journal, replayed, is refused at record 3 or 4, never silently
   * taken. */
  jr_log bad = jr_collect(w.l);
  char *rdir = NULL;
  ledger *r = jr_replica(&rdir);
  jr_replay_upto(r, &bad, 2);
  int rc = ledger_replay_record(r, bad.r[2].bytes, bad.r[2].len);
  if (rc == 0)
    jr_assert_refused(r, bad.r[3].bytes, bad.r[3].len, "record 4 after a forged record 3");
  else
    cr_assert_eq(rc, LEDGER_E_CORRUPT, "forged record 3: %s", ledger_strerror(rc));
  ledger_close(r);
  fixture_rmtree(rdir);
  free(rdir);
  jr_log_free(&bad);
  jr_log_free(&orig);
  jr_destroy(&w);
}
