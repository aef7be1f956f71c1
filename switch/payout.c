/* payout.c — the execution of approved disbursement batches (disburse.h).
 *
 * One run per batch being paid (or waiting for its start). A cycle goes:
 *   WAIT_START ─time─▶ reserve (unless approval did) ─▶ fund: post the reservation into the
 *   cycle's ESCROW ─▶ PAYING: items start at the batch's rate, at most `window` in flight,
 *   each an internal transfer (transfer.c) ESCROW → payee operator ─▶ every item paid, failed
 *   or cancelled, and every failed or cancelled item's amount released ESCROW → FUNDING ─▶
 *   the next cycle, or the batch is completed.
 *
 * Never twice: an item's attempts use ids derived from (programme, cycle, token, attempt);
 * attempt a + 1 starts only once attempt a is final in the ledger and not posted. After a
 * restart the ledger is asked, attempt by attempt, what happened (a posted one = paid, a
 * pending one = in flight, rejoined through sw_transfer_watch), so the statuses kept in the
 * store are only a cache. Transient failures (payee not connected, expired, switch busy) are
 * retried with a doubling backoff up to max_attempts tries; others fail the item at once.
 */
#include "disburse.h"

#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

#include "accounts.h"
#include "currency.h"
#include "errors.h"

#define TICK_MS 10
#define FLUSH_EVERY_MS 500
#define WAIT_FUNDS_RETRY_MS 5000
#define RELEASES_PER_SUBMIT 1024
#define RATE_SAMPLES 10
#define RESUME_GRACE_MS 2000 /* after a start, the payee operators reconnect before items go */

void sw_disburse_gc_uploads(sw_disburse *d);

enum { PH_WAIT_START, PH_LEDGER, PH_PAYING, PH_DONE };

/* Release progress of a failed or cancelled item. */
enum { REL_NONE, REL_QUEUED, REL_SUBMITTED, REL_DONE };

typedef struct run_item {
  uint8_t status;  /* SW_ITEM_* */
  uint8_t tries;   /* starts so far (refusals before the ledger included) */
  uint8_t attempt; /* the ledger attempt to use next (ids 1..attempt-1 are final, not posted) */
  uint8_t release; /* REL_* */
  uint8_t dirty;
  uint8_t retry_wait; /* PENDING with a retry due at next_ms */
  uint8_t shown;      /* the last attempt recorded in the ledger (the report's transfer) */
  uint8_t _pad;
  uint32_t code;
  uint64_t next_ms;
  uint64_t completed_ms;
  uint64_t amount; /* known once started or recovered (0 before) */
} run_item;

typedef struct sw_run {
  struct sw_run *next;
  sw_disburse *d;
  sw_batch b;
  sw_programme prog;
  ledger_id escrow, funding, prog_ndc;
  int phase;
  int reserved;   /* the current cycle's reservation is pending in the ledger */
  int cancelling; /* cancel asked: nothing more starts */
  uint64_t cancel_conn, cancel_corr;
  uint64_t wait_until_ms; /* WAITING_FUNDS: next reservation try */
  run_item *items;
  uint32_t n;
  uint32_t *order;      /* the items in the order their first tries start (token order) */
  uint32_t cursor;      /* position in order: the items before it were started or settled */
  uint32_t in_flight;
  uint32_t unfinished;  /* not final (paid, failed, cancelled) */
  uint32_t releases_open; /* failed or cancelled items whose release is not yet durable */
  uint32_t n_retry;     /* items waiting for a retry (retry_wait set) */
  uint32_t *retry;      /* their indices, unordered; entries whose retry_wait was cleared are
                           dropped when met */
  size_t retry_len, retry_cap;
  int ledger_ops;       /* ledger submissions of the run still open */
  double tokens;
  uint64_t last_ms;
  uint64_t paid_count;
  uint64_t sample_ms[RATE_SAMPLES], sample_paid[RATE_SAMPLES];
  unsigned sample_at;
  uint64_t last_sample_ms;
} sw_run;

typedef struct item_ctx {
  sw_run *run;
  uint32_t index;
} item_ctx;

static void run_start_cycle(sw_run *r);
static void item_final(sw_run *r, uint32_t i, int status, unsigned code, uint64_t at);
static void item_restore(sw_run *r, uint32_t i, int status, unsigned code, uint64_t at);
static void run_finish_cycle(sw_run *r);
static void run_free(sw_disburse *d, sw_run *r);

/* ---------------------------------------------------------------- ids */

static ledger_id item_base(uint32_t programme, uint32_t cycle, const uint8_t token[32],
                           const char *tag, uint64_t extra) {
  uint8_t buf[96], md[32];
  size_t n = strlen(tag); /* the tags are short literals */
  memcpy(buf, tag, n);
  memcpy(buf + n, &programme, 4);
  memcpy(buf + n + 4, &cycle, 4);
  memcpy(buf + n + 8, &extra, 8);
  memcpy(buf + n + 16, token, 32);
  SHA256(buf, n + 48, md);
  uint64_t lo = 0;
  for (int i = 0; i < 8; i++)
    lo = lo << 8 | md[i];
  /* hi: top bit set (never a UUIDv7 before the year 10889), then programme and cycle, so one
     cycle's items sit together in the ledger's id index */
  return ledger_id_make(1ull << 63 | (uint64_t)programme << 24 | (cycle & 0xffffffu), lo);
}

ledger_id sw_payout_item_id(uint32_t programme, uint32_t cycle, const uint8_t token[32],
                            unsigned attempt) {
  /* hi: top bit (never a UUIDv7 before the year 10889), programme, cycle, attempt; lo: the
     first 8 bytes of the beneficiary's token (an HMAC with the scheme's secret: unguessable).
     A cycle's first attempts thus share hi and, paid in token order (run_load_order), ascend:
     the ledger's id index appends instead of touching a random leaf per payment. */
  uint64_t lo = 0;
  for (int i = 0; i < 8; i++)
    lo = lo << 8 | token[i];
  return ledger_id_make(1ull << 63 | (uint64_t)(programme & 0x7ffffffu) << 28 |
                            (uint64_t)(cycle & 0xfffffu) << 8 | (attempt & 0xffu),
                        lo);
}

ledger_id sw_payout_release_id(uint32_t programme, uint64_t batch, uint32_t cycle,
                               const uint8_t token[32]) {
  return item_base(programme, cycle, token, "tuma-release", batch);
}

/* The current cycle's reservation: one id per try (the ledger remembers a refused id). */
static ledger_id reserve_id(const sw_run *r) {
  ledger_id from = r->escrow;
  from.hi ^= (uint64_t)r->b.reserve_try << 32;
  return sw_derive_id("tuma-reserve", from);
}

/* ---------------------------------------------------------------- persistence */

static int batch_save(sw_disburse *d, const sw_batch *b) {
  sw_dstore_txn *t;
  int rc = sw_dstore_begin(d->store, 0, &t);
  if (rc)
    return rc;
  rc = sw_dstore_batch_put(t, b);
  if (rc) {
    sw_dstore_abort(t);
    return rc;
  }
  rc = sw_dstore_commit(t);
  if (rc)
    sw_log(&d->sw->log, SW_LOG_ERROR, "disburse.store_failed", "batch=%llu error=\"%s\"",
           (unsigned long long)b->number, sw_dstore_strerror(rc));
  return rc;
}

int sw_payout_flush(sw_disburse *d) {
  int any = 0;
  for (sw_run *r = d->runs; r && !any; r = r->next)
    for (uint32_t i = 0; i < r->n && !any; i++)
      any = r->items[i].dirty;
  if (!any)
    return 0;
  sw_dstore_txn *t;
  int rc = sw_dstore_begin(d->store, 0, &t);
  if (rc)
    return rc;
  for (sw_run *r = d->runs; r && !rc; r = r->next)
    for (uint32_t i = 0; i < r->n && !rc; i++) {
      run_item *it = &r->items[i];
      if (!it->dirty)
        continue;
      sw_item_status st = {0};
      st.status = it->status == SW_ITEM_IN_FLIGHT ? SW_ITEM_IN_FLIGHT : it->status;
      st.attempt = it->tries;
      st.ledger_attempt = it->shown;
      st.code = it->code;
      st.completed_ms = it->completed_ms;
      st.elapsed_ms = it->completed_ms > r->b.cycle_start_ms
                          ? it->completed_ms - r->b.cycle_start_ms
                          : 0;
      rc = sw_dstore_status_put(t, r->b.number, r->b.current_cycle, i, &st);
    }
  if (rc) {
    sw_dstore_abort(t);
  } else if ((rc = sw_dstore_commit(t)) == 0) {
    for (sw_run *r = d->runs; r; r = r->next)
      for (uint32_t i = 0; i < r->n; i++)
        r->items[i].dirty = 0;
  }
  if (rc)
    sw_log(&d->sw->log, SW_LOG_ERROR, "disburse.flush_failed", "error=\"%s\"",
           sw_dstore_strerror(rc));
  return rc;
}

/* ---------------------------------------------------------------- queries */

sw_run *sw_payout_run(sw_disburse *d, uint64_t batch) {
  for (sw_run *r = d->runs; r; r = r->next)
    if (r->b.number == batch)
      return r;
  return NULL;
}

void sw_payout_counts(const sw_run *r, uint64_t count[6], uint64_t amount[6],
                      double *paid_per_second) {
  memset(count, 0, 6 * sizeof *count);
  memset(amount, 0, 6 * sizeof *amount);
  uint64_t known = 0;
  for (uint32_t i = 0; i < r->n; i++) {
    unsigned s = r->items[i].status <= SW_ITEM_CANCELLED ? r->items[i].status : 0;
    count[s]++;
    if (s != SW_ITEM_PENDING) {
      amount[s] += r->items[i].amount;
      known += r->items[i].amount;
    }
  }
  amount[SW_ITEM_PENDING] = r->b.total > known ? r->b.total - known : 0;
  unsigned newest = (r->sample_at + RATE_SAMPLES - 1) % RATE_SAMPLES;
  unsigned oldest = r->sample_at < RATE_SAMPLES ? 0 : r->sample_at % RATE_SAMPLES;
  uint64_t dt = r->sample_ms[newest] - r->sample_ms[oldest];
  *paid_per_second =
      r->sample_ms[oldest] && dt ? (double)(r->sample_paid[newest] - r->sample_paid[oldest]) *
                                       1000.0 / (double)dt
                                 : 0;
}

int sw_payout_item_status(const sw_run *r, uint32_t cycle, uint32_t index, sw_item_status *out) {
  if (cycle != r->b.current_cycle || index >= r->n || !r->items)
    return 0;
  const run_item *it = &r->items[index];
  memset(out, 0, sizeof *out);
  out->status = it->status;
  out->attempt = it->tries;
  out->ledger_attempt = it->shown;
  out->code = it->code;
  out->completed_ms = it->completed_ms;
  out->elapsed_ms =
      it->completed_ms > r->b.cycle_start_ms ? it->completed_ms - r->b.cycle_start_ms : 0;
  return 1;
}

/* ---------------------------------------------------------------- item outcomes */

/* The wait before the try after `tries` tries: retry_ms doubling, at most 60 s. */
static uint64_t retry_delay(const sw_disburse *d, unsigned tries) {
  uint64_t delay = (uint64_t)d->retry_base_ms << (tries > 7 ? 6 : tries ? tries - 1 : 0);
  return delay > 60000 ? 60000 : delay;
}

/* Item i waits until `at` for its next try. */
static void retry_later(sw_run *r, uint32_t i, uint64_t at) {
  run_item *it = &r->items[i];
  it->status = SW_ITEM_PENDING;
  it->next_ms = at;
  it->dirty = 1;
  if (it->retry_wait)
    return;
  if (r->retry_len == r->retry_cap) {
    size_t cap = r->retry_cap ? r->retry_cap * 2 : 256;
    uint32_t *nr = realloc(r->retry, cap * sizeof *nr);
    if (!nr) { /* cannot wait: fail it rather than lose it */
      item_final(r, i, SW_ITEM_FAILED, SW_ERR_INTERNAL, sw_now_ms());
      return;
    }
    r->retry = nr;
    r->retry_cap = cap;
  }
  r->retry[r->retry_len++] = i;
  it->retry_wait = 1;
  r->n_retry++;
}

static int transient(unsigned code) {
  return code == SW_ERR_DESTINATION || code == SW_ERR_TRANSFER_EXPIRED ||
         code == SW_ERR_INTERNAL || code == SW_ERR_UNAVAILABLE || code == SW_ERR_PAYEE_PERMISSION;
}

/* Item i is final: status with reason code at `at`. item_restore: the same for an item found
 * final after a restart (not counted again in the metrics). */
static void item_set_final(sw_run *r, uint32_t i, int status, unsigned code, uint64_t at,
                           int count) {
  run_item *it = &r->items[i];
  if (it->retry_wait) {
    it->retry_wait = 0;
    r->n_retry--;
  }
  it->status = (uint8_t)status;
  it->code = code;
  it->completed_ms = at;
  it->dirty = 1;
  r->unfinished--;
  sw_metrics *m = &r->d->sw->metrics;
  if (count && status == SW_ITEM_PAID)
    m->disburse_paid++;
  else if (count && status == SW_ITEM_FAILED)
    m->disburse_failed++;
  else if (count)
    m->disburse_cancelled++;
  if (status == SW_ITEM_PAID) {
    r->paid_count++;
  } else if (r->b.cycle_funded) { /* its amount is in the escrow: back to the budget */
    it->release = REL_QUEUED;
    r->releases_open++;
  }
}

static void item_final(sw_run *r, uint32_t i, int status, unsigned code, uint64_t at) {
  item_set_final(r, i, status, code, at, 1);
}

static void item_restore(sw_run *r, uint32_t i, int status, unsigned code, uint64_t at) {
  item_set_final(r, i, status, code, at, 0);
}

/* Where a try of attempt `id` that was not committed leaves item i. The ledger decides: the
 * attempt posted after all (paid), still reserved (wait for it, same attempt), voided or
 * expired (its id is used up: the next try takes the next attempt), or never recorded (the
 * next try reuses it). Then a transient reason is retried later, another fails the item. */
static void item_not_paid(sw_run *r, uint32_t i, ledger_id id, unsigned code) {
  run_item *it = &r->items[i];
  sw_disburse *d = r->d;
  ledger_pending_state ps = LEDGER_PENDING_NONE;
  uint64_t resolved = 0;
  ledger_transfer lt;
  int recorded = ledger_lookup_transfer(d->sw->ledger, id, &lt) == 0;
  if (recorded && ledger_pending_state_of(d->sw->ledger, id, &ps, &resolved) != 0)
    ps = LEDGER_PENDING_OPEN; /* cannot tell: treat as unresolved */
  if (recorded && ps == LEDGER_PENDING_POSTED) {
    item_final(r, i, SW_ITEM_PAID, 0, resolved / 1000000);
    return;
  }
  if (recorded && ps != LEDGER_PENDING_VOIDED && ps != LEDGER_PENDING_EXPIRED) {
    retry_later(r, i, sw_now_ms() + d->retry_base_ms); /* unresolved: never a new attempt */
    return;
  }
  if (recorded)
    it->shown = it->attempt;
  if (recorded && it->attempt < 255)
    it->attempt++;
  if (transient(code) && it->tries < d->max_attempts && !r->cancelling && it->attempt < 255) {
    uint64_t delay = retry_delay(d, it->tries);
    it->code = code;
    r->d->sw->metrics.disburse_retries++;
    retry_later(r, i, sw_now_ms() + delay);
    return;
  }
  item_final(r, i, r->cancelling && transient(code) ? SW_ITEM_CANCELLED : SW_ITEM_FAILED, code,
             sw_now_ms());
}

static void item_done_cb(ledger_id id, int final_state, unsigned code, uint64_t completed_ms,
                         void *arg) {
  item_ctx *ctx = arg;
  sw_run *r = ctx->run;
  uint32_t i = ctx->index;
  free(ctx);
  if (final_state == TUMA__V1__TRANSFER_STATE__TRANSFER_STATE_UNSPECIFIED)
    return; /* the switch stops with the item in flight: it resumes at the next start */
  r->in_flight--;
  if (final_state == TUMA__V1__TRANSFER_STATE__TRANSFER_STATE_COMMITTED) {
    item_final(r, i, SW_ITEM_PAID, 0, completed_ms);
  } else {
    item_not_paid(r, i, id, code ? code : SW_ERR_INTERNAL);
  }
}

/* What makes an item's attempt "the same" (kept in its ledger transfer's user_data_128): a
 * different one under the same id is a collision, never taken for this item's payment. */
static void item_digest(ledger_id id, const sw_batch_item *rec, uint8_t out[32]) {
  uint8_t buf[13 + 16 + 8 + 4 + 16];
  memcpy(buf, "tuma-disburse", 13);
  memcpy(buf + 13, &id, 16);
  memcpy(buf + 29, &rec->amount, 8);
  memcpy(buf + 37, &rec->operator_no, 4);
  memcpy(buf + 41, rec->msisdn, 16);
  SHA256(buf, sizeof buf, out);
}

/* What the ledger says of item i's attempts, from attempt `from` on: voided or expired ones
 * are used up and skipped; the first posted one makes the item paid; an open (reserved) one is
 * in flight (rejoined when transfer.c holds it, else looked at again later). Returns 1 when
 * it->attempt is now a free id for the next try, 0 when the item was settled here, -1 when
 * the ledger cannot be read. `restored`: found after a restart (not counted in metrics). */
static int item_probe(sw_run *r, uint32_t i, const sw_batch_item *rec, unsigned from,
                      int restored) {
  sw_switch *sw = r->d->sw;
  run_item *it = &r->items[i];
  for (unsigned a = from ? from : 1; a < 255; a++) {
    ledger_id id = sw_payout_item_id(r->prog.number, r->b.current_cycle, rec->token, a);
    ledger_transfer lt;
    it->attempt = (uint8_t)a;
    if (ledger_lookup_transfer(sw->ledger, id, &lt) != 0) {
      if (it->tries < a - 1)
        it->tries = (uint8_t)(a - 1);
      return 1;
    }
    ledger_pending_state ps = LEDGER_PENDING_NONE;
    uint64_t resolved = 0;
    if (ledger_pending_state_of(sw->ledger, id, &ps, &resolved))
      return -1;
    uint8_t want[32], have[16];
    item_digest(id, rec, want);
    sw_id_to_bytes(lt.user_data_128, have);
    int ours = ledger_id_eq(lt.debit_account_id, r->escrow) && memcmp(want, have, 16) == 0;
    if (!ours && (ps == LEDGER_PENDING_POSTED || ps == LEDGER_PENDING_OPEN)) {
      sw_log(&sw->log, SW_LOG_ERROR, "disburse.id_collision", "batch=%llu index=%u attempt=%u",
             (unsigned long long)r->b.number, i, a);
      item_final(r, i, SW_ITEM_FAILED, SW_ERR_MODIFIED_REQUEST, sw_now_ms());
      return 0;
    }
    it->shown = (uint8_t)a;
    if (ps == LEDGER_PENDING_POSTED) {
      if (restored)
        item_restore(r, i, SW_ITEM_PAID, 0, resolved / 1000000);
      else
        item_final(r, i, SW_ITEM_PAID, 0, resolved / 1000000);
      return 0;
    }
    if (ps == LEDGER_PENDING_OPEN) {
      item_ctx *ctx = malloc(sizeof *ctx);
      if (!ctx)
        return -1;
      ctx->run = r;
      ctx->index = i;
      if (it->tries < a)
        it->tries = (uint8_t)a;
      if (sw_transfer_watch(sw, id, item_done_cb, ctx) != 0) {
        free(ctx); /* not in memory: the ledger's expiry will void it; look again later */
        retry_later(r, i, sw_now_ms() + r->d->item_expiry_ms);
        return 0;
      }
      it->status = SW_ITEM_IN_FLIGHT;
      it->dirty = 1;
      r->in_flight++;
      return 0;
    }
    /* voided or expired: the next attempt */
  }
  item_final(r, i, SW_ITEM_FAILED, SW_ERR_INTERNAL, sw_now_ms());
  return 0;
}

/* Starts the next try of item i. Returns -2 when the ledger queue is full (nothing done). */
static int item_start(sw_run *r, sw_dstore_txn *t, uint32_t i) {
  sw_switch *sw = r->d->sw;
  run_item *it = &r->items[i];
  sw_batch_item rec;
  int rc = sw_dstore_item_get(t, r->b.number, i, &rec);
  if (rc) {
    sw_log(&sw->log, SW_LOG_ERROR, "disburse.item_unreadable", "batch=%llu index=%u error=\"%s\"",
           (unsigned long long)r->b.number, i, sw_dstore_strerror(rc));
    item_final(r, i, SW_ITEM_FAILED, SW_ERR_INTERNAL, sw_now_ms());
    return 0;
  }
  it->amount = rec.amount;
  /* an attempt id another try (of this batch before a restart, or of a batch that failed this
     beneficiary in this cycle) used up is skipped; a posted or open one settles the item */
  int pr = item_probe(r, i, &rec, it->attempt, 0);
  if (pr < 0) {
    retry_later(r, i, sw_now_ms() + r->d->retry_base_ms);
    return 0;
  }
  if (pr == 0)
    return 0;
  sw_internal_transfer tr;
  memset(&tr, 0, sizeof tr);
  tr.id = sw_payout_item_id(r->prog.number, r->b.current_cycle, rec.token, it->attempt);
  tr.debit_liquidity = r->escrow;
  tr.debit_ndc = r->prog_ndc;
  tr.payer = r->prog.funding;
  tr.payee = rec.operator_no;
  tr.ledger_no = r->prog.currency;
  tr.amount = rec.amount;
  tr.expiration_ms = sw_now_ms() + r->d->item_expiry_ms;
  item_digest(tr.id, &rec, tr.digest);
  tr.unrecorded = 1; /* item_probe just found no transfer under this id */
  tr.payee_party_type = SW_PARTY_MSISDN;
  tr.payee_party_id = rec.msisdn;
  tr.reference = rec.reference;
  item_ctx *ctx = malloc(sizeof *ctx);
  if (!ctx)
    return -2;
  ctx->run = r;
  ctx->index = i;
  unsigned code = 0;
  rc = sw_transfer_start_internal(sw, &tr, item_done_cb, ctx, &code);
  if (rc == -2) {
    free(ctx);
    return -2;
  }
  if (it->tries < 255)
    it->tries++;
  it->dirty = 1;
  if (rc == 0) {
    it->status = SW_ITEM_IN_FLIGHT;
    it->shown = it->attempt;
    r->in_flight++;
    return 0;
  }
  free(ctx);
  if (rc == TUMA__V1__TRANSFER_STATE__TRANSFER_STATE_COMMITTED) {
    item_final(r, i, SW_ITEM_PAID, 0, sw_now_ms());
  } else {
    item_not_paid(r, i, tr.id, code ? code : SW_ERR_INTERNAL);
  }
  return 0;
}

/* ---------------------------------------------------------------- releases */

typedef struct release_op {
  sw_run *run;
  uint32_t *index;
  size_t n;
} release_op;

static void release_done_cb(int status, const ledger_result *res, size_t n, void *arg) {
  release_op *op = arg;
  sw_run *r = op->run;
  r->ledger_ops--;
  for (size_t k = 0; k < op->n; k++) {
    run_item *it = &r->items[op->index[k]];
    int ok = status == 0 && k < n && (res[k] == LEDGER_OK || res[k] == LEDGER_EXISTS);
    if (ok) {
      it->release = REL_DONE;
      r->releases_open--;
    } else {
      it->release = REL_QUEUED; /* tried again at the next tick */
      if (status == 0)
        sw_log(&r->d->sw->log, SW_LOG_ERROR, "disburse.release_failed",
               "batch=%llu index=%u result=%s", (unsigned long long)r->b.number, op->index[k],
               ledger_result_name(res[k]));
    }
  }
  free(op->index);
  free(op);
}

/* Submits the queued releases (up to RELEASES_PER_SUBMIT). */
static void submit_releases(sw_run *r) {
  if (!r->releases_open)
    return;
  ledger_event *ev = malloc(RELEASES_PER_SUBMIT * sizeof *ev);
  release_op *op = calloc(1, sizeof *op);
  uint32_t *idx = malloc(RELEASES_PER_SUBMIT * sizeof *idx);
  sw_dstore_txn *t = NULL;
  if (!ev || !op || !idx || sw_dstore_begin(r->d->store, 1, &t)) {
    free(ev);
    free(op);
    free(idx);
    return;
  }
  size_t n = 0;
  for (uint32_t i = 0; i < r->n && n < RELEASES_PER_SUBMIT; i++) {
    run_item *it = &r->items[i];
    sw_batch_item rec;
    if (it->release != REL_QUEUED || sw_dstore_item_get(t, r->b.number, i, &rec))
      continue;
    ev[n] = sw_transfer_event(sw_payout_release_id(r->prog.number, r->b.number, r->b.current_cycle, rec.token),
                              r->escrow, r->funding, rec.amount, r->prog.currency,
                              SW_CODE_RELEASE, 0);
    ev[n].transfer.user_data_32 = it->code;
    idx[n++] = i;
  }
  sw_dstore_abort(t);
  op->run = r;
  op->index = idx;
  op->n = n;
  if (n && sw_commit_submit(r->d->sw->commit, ev, n, release_done_cb, op) == 0) {
    for (size_t k = 0; k < n; k++)
      r->items[idx[k]].release = REL_SUBMITTED;
    r->ledger_ops++;
  } else {
    free(idx);
    free(op);
  }
  free(ev);
}

/* ---------------------------------------------------------------- reservation, funding */

typedef struct phase_op {
  sw_run *run;
  int kind; /* OP_RESERVE, OP_FUND, OP_VOID */
  uint64_t conn, corr; /* approval: who to answer */
  char approver[64];
} phase_op;

enum { OP_RESERVE, OP_FUND, OP_VOID };

static void phase_done_cb(int status, const ledger_result *res, size_t n, void *arg);

static int phase_submit(sw_run *r, int kind, uint64_t conn, uint64_t corr, const char *approver) {
  phase_op *op = calloc(1, sizeof *op);
  if (!op)
    return -1;
  op->run = r;
  op->kind = kind;
  op->conn = conn;
  op->corr = corr;
  if (approver)
    snprintf(op->approver, sizeof op->approver, "%s", approver);
  ledger_event ev[2];
  size_t n = 0;
  ledger_id zero = {0, 0};
  if (kind == OP_RESERVE) {
    /* A reservation of the current try still open (an approval whose record a crash lost) is
       asked for again: the ledger answers `exists` and no second one is made. Otherwise a new
       try, recorded before it is used, so a restart finds it. */
    ledger_pending_state ps = LEDGER_PENDING_NONE;
    uint64_t resolved = 0;
    int open_already = r->b.reserve_try &&
                       ledger_pending_state_of(r->d->sw->ledger, reserve_id(r), &ps, &resolved) == 0 &&
                       ps == LEDGER_PENDING_OPEN;
    if (!open_already) {
      r->b.reserve_try++;
      int src = batch_save(r->d, &r->b);
      if (src) {
        r->b.reserve_try--;
        free(op);
        return LEDGER_E_IO;
      }
    }
    ev[n++] = sw_account_event(r->escrow, r->prog.currency, SW_ACCOUNT_ESCROW,
                               LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS);
    ev[n] = sw_transfer_event(reserve_id(r), r->funding, r->escrow, r->b.total, r->prog.currency,
                              SW_CODE_RESERVE, LEDGER_TRANSFER_PENDING);
    ev[n++].transfer.user_data_32 = r->b.current_cycle;
  } else {
    ev[n] = sw_transfer_event(sw_derive_id(kind == OP_FUND ? "tuma-reserve-post"
                                                           : "tuma-reserve-void",
                                           reserve_id(r)),
                              zero, zero, 0, 0, SW_CODE_RESERVE,
                              kind == OP_FUND ? LEDGER_TRANSFER_POST_PENDING
                                              : LEDGER_TRANSFER_VOID_PENDING);
    ev[n++].transfer.pending_id = reserve_id(r);
  }
  int rc = sw_commit_submit(r->d->sw->commit, ev, n, phase_done_cb, op);
  if (rc) {
    free(op);
    return rc;
  }
  r->ledger_ops++;
  r->phase = PH_LEDGER;
  return 0;
}

static void reply_approval(sw_run *r, phase_op *op, unsigned code, const char *text) {
  if (op->conn)
    sw_admin_reply(r->d->sw, op->conn, op->corr, code, text);
}

static void phase_done_cb(int status, const ledger_result *res, size_t n, void *arg) {
  phase_op *op = arg;
  sw_run *r = op->run;
  sw_disburse *d = r->d;
  r->ledger_ops--;
  ledger_result last = status ? LEDGER_OK : res[n - 1];
  if (status) {
    sw_log(&d->sw->log, SW_LOG_ERROR, "disburse.ledger_failed", "batch=%llu op=%d status=%s",
           (unsigned long long)r->b.number, op->kind, ledger_strerror(status));
    reply_approval(r, op, SW_ERR_UNAVAILABLE, ledger_strerror(status));
    r->phase = PH_WAIT_START; /* the tick tries again (approval: the approver asks again) */
    if (op->conn) {
      r->phase = PH_DONE;
      r->cancelling = 1;
    }
    free(op);
    return;
  }
  switch (op->kind) {
  case OP_RESERVE:
    if (last == LEDGER_OK || last == LEDGER_EXISTS) {
      r->reserved = 1;
      if (op->conn) { /* an approval */
        r->b.state = SW_BATCH_APPROVED;
        snprintf(r->b.approved_by, sizeof r->b.approved_by, "%s", op->approver);
        r->b.approved_ms = sw_now_ms();
        r->b.cycle_start_ms = r->b.start_at_ms > r->b.approved_ms ? r->b.start_at_ms
                                                                  : r->b.approved_ms;
        int rc = batch_save(d, &r->b);
        reply_approval(r, op, rc ? SW_ERR_INTERNAL : 0, rc ? sw_dstore_strerror(rc) : NULL);
        if (rc) { /* not recorded: the reservation stays, a new approval finds it */
          r->phase = PH_DONE;
          r->cancelling = 1;
          break;
        }
        sw_log(&d->sw->log, SW_LOG_INFO, "disburse.approved",
               "batch=%llu approver=%s reserved=%llu start_ms=%llu",
               (unsigned long long)r->b.number, op->approver, (unsigned long long)r->b.total,
               (unsigned long long)r->b.cycle_start_ms);
      } else if (r->b.state == SW_BATCH_WAITING_FUNDS) {
        r->b.state = SW_BATCH_RUNNING;
        batch_save(d, &r->b);
      }
      r->phase = PH_WAIT_START;
    } else if (last == LEDGER_EXCEEDS_CREDITS) {
      ledger_account a;
      char text[200];
      uint64_t avail = 0;
      if (ledger_lookup_account(d->sw->ledger, r->funding, &a) == 0)
        avail = a.credits_posted - a.debits_posted - a.debits_pending;
      snprintf(text, sizeof text,
               "programme budget exhausted: available %llu, the cycle needs %llu (minor units)",
               (unsigned long long)avail, (unsigned long long)r->b.total);
      if (op->conn) {
        reply_approval(r, op, SW_ERR_PAYER_LIQUIDITY, text);
        r->phase = PH_DONE;
        r->cancelling = 1; /* the run goes; the batch stays SUBMITTED */
      } else {
        if (r->b.state != SW_BATCH_WAITING_FUNDS) {
          sw_log(&d->sw->log, SW_LOG_WARN, "disburse.waiting_funds", "batch=%llu cycle=%u %s",
                 (unsigned long long)r->b.number, r->b.current_cycle, text);
          r->b.state = SW_BATCH_WAITING_FUNDS;
          batch_save(d, &r->b);
        }
        r->wait_until_ms = sw_now_ms() + WAIT_FUNDS_RETRY_MS;
        r->phase = PH_WAIT_START;
      }
    } else {
      sw_log(&d->sw->log, SW_LOG_ERROR, "disburse.reserve_failed", "batch=%llu result=%s/%s",
             (unsigned long long)r->b.number, ledger_result_name(res[0]), ledger_result_name(last));
      reply_approval(r, op, SW_ERR_INTERNAL, ledger_result_name(last));
      r->phase = op->conn ? PH_DONE : PH_WAIT_START;
      if (op->conn)
        r->cancelling = 1;
      r->wait_until_ms = sw_now_ms() + WAIT_FUNDS_RETRY_MS;
    }
    break;
  case OP_FUND:
    if (last == LEDGER_OK || last == LEDGER_EXISTS || last == LEDGER_PENDING_TRANSFER_ALREADY_POSTED) {
      r->reserved = 0;
      r->b.cycle_funded = 1;
      r->b.state = SW_BATCH_RUNNING;
      batch_save(d, &r->b);
      sw_log(&d->sw->log, SW_LOG_INFO, "disburse.cycle_started", "batch=%llu cycle=%u items=%u",
             (unsigned long long)r->b.number, r->b.current_cycle, r->n);
      r->phase = PH_PAYING;
      r->last_ms = sw_now_ms();
    } else {
      sw_log(&d->sw->log, SW_LOG_ERROR, "disburse.fund_failed", "batch=%llu result=%s",
             (unsigned long long)r->b.number, ledger_result_name(last));
      r->phase = PH_WAIT_START;
      r->wait_until_ms = sw_now_ms() + WAIT_FUNDS_RETRY_MS;
    }
    break;
  case OP_VOID:
    r->reserved = 0;
    r->phase = PH_PAYING; /* nothing to pay: the cancel completes at the next tick */
    break;
  }
  free(op);
}

/* ---------------------------------------------------------------- runs */

typedef struct order_key {
  uint64_t key;
  uint32_t index;
} order_key;

static int cmp_order_key(const void *a, const void *b) {
  uint64_t x = ((const order_key *)a)->key, y = ((const order_key *)b)->key;
  return x < y ? -1 : x > y;
}

typedef struct order_scan {
  order_key *k;
  uint32_t n, cap;
} order_scan;

static int order_cb(uint32_t index, const sw_batch_item *rec, void *arg) {
  order_scan *os = arg;
  if (os->n == os->cap)
    return SW_DSTORE_E_CORRUPT;
  uint64_t key = 0;
  for (int i = 0; i < 8; i++)
    key = key << 8 | rec->token[i];
  os->k[os->n].key = key;
  os->k[os->n++].index = index;
  return 0;
}

/* The order of first tries: by the items' ids (their tokens), so that a cycle's payments
 * append to the ledger's id index. O(n log n) and one pass over the items. Without memory for
 * it, index order (r->order stays NULL). */
static void run_load_order(sw_run *r) {
  free(r->order);
  r->order = NULL;
  order_scan os = {.cap = r->n};
  os.k = malloc((r->n ? r->n : 1) * sizeof *os.k);
  uint32_t *order = malloc((r->n ? r->n : 1) * sizeof *order);
  sw_dstore_txn *t = NULL;
  if (!os.k || !order || sw_dstore_begin(r->d->store, 1, &t)) {
    free(os.k);
    free(order);
    return;
  }
  int rc = sw_dstore_item_each(t, r->b.number, 0, order_cb, &os);
  sw_dstore_abort(t);
  if (rc || os.n != r->n) {
    free(os.k);
    free(order);
    return;
  }
  qsort(os.k, os.n, sizeof *os.k, cmp_order_key);
  for (uint32_t i = 0; i < os.n; i++)
    order[i] = os.k[i].index;
  free(os.k);
  r->order = order;
}

static int run_alloc_items(sw_run *r) {
  free(r->items);
  r->n = (uint32_t)r->b.items;
  r->items = calloc(r->n ? r->n : 1, sizeof *r->items);
  if (!r->items)
    return -1;
  for (uint32_t i = 0; i < r->n; i++) {
    r->items[i].status = SW_ITEM_PENDING;
    r->items[i].attempt = 1;
  }
  run_load_order(r);
  r->cursor = 0;
  r->in_flight = 0;
  r->unfinished = r->n;
  r->releases_open = 0;
  r->n_retry = 0;
  r->retry_len = 0;
  r->paid_count = 0;
  memset(r->sample_ms, 0, sizeof r->sample_ms);
  memset(r->sample_paid, 0, sizeof r->sample_paid);
  return 0;
}

static sw_run *run_new(sw_disburse *d, const sw_batch *b) {
  sw_run *r = calloc(1, sizeof *r);
  if (!r)
    return NULL;
  sw_dstore_txn *t;
  int rc = sw_dstore_begin(d->store, 1, &t);
  if (!rc) {
    rc = sw_dstore_programme_get(t, b->programme, &r->prog);
    sw_dstore_abort(t);
  }
  if (rc) {
    free(r);
    return NULL;
  }
  r->d = d;
  r->b = *b;
  r->escrow = sw_escrow_account_id(r->prog.funding, b->number, b->current_cycle);
  r->funding =
      sw_programme_account_id(r->prog.funding, r->prog.number, r->prog.currency, SW_ACCOUNT_FUNDING);
  r->prog_ndc = sw_programme_account_id(r->prog.funding, r->prog.number, r->prog.currency,
                                        SW_ACCOUNT_PROGRAMME_NDC);
  if (run_alloc_items(r)) {
    free(r);
    return NULL;
  }
  r->phase = PH_WAIT_START;
  r->next = d->runs;
  d->runs = r;
  return r;
}

static void run_free(sw_disburse *d, sw_run *r) {
  for (sw_run **p = &d->runs; *p; p = &(*p)->next)
    if (*p == r) {
      *p = r->next;
      break;
    }
  free(r->items);
  free(r->order);
  free(r->retry);
  free(r);
}

void sw_payout_free_all(sw_disburse *d) {
  if (d->tick) {
    event_free(d->tick);
    d->tick = NULL;
  }
  while (d->runs)
    run_free(d, d->runs);
}

typedef struct resume_scan {
  sw_run *r;
  sw_dstore_txn *t;
  int rc;
} resume_scan;

static int resume_item_cb(uint32_t index, const sw_batch_item *rec, void *arg) {
  resume_scan *rs = arg;
  sw_run *r = rs->r;
  if (index >= r->n)
    return 0;
  sw_item_status st;
  int rc = sw_dstore_status_get(rs->t, r->b.number, r->b.current_cycle, index, &st);
  if (rc)
    return rc;
  run_item *it = &r->items[index];
  it->tries = st.attempt;
  it->shown = (uint8_t)st.ledger_attempt;
  it->amount = rec->amount;
  it->code = st.code;
  if (st.status == SW_ITEM_FAILED || st.status == SW_ITEM_CANCELLED) {
    item_restore(r, index, st.status, st.code, st.completed_ms);
    it->dirty = 0;
    return 0; /* its release is submitted again: a repeat is `exists` */
  }
  if (st.status == SW_ITEM_PAID) {
    item_restore(r, index, SW_ITEM_PAID, 0, st.completed_ms);
    it->dirty = 0;
    return 0;
  }
  return item_probe(r, index, rec, 1, 1) < 0 ? SW_DSTORE_E_LMDB : 0;
}

/* Rebuilds a run's items of its current cycle from the store and the ledger. */
static int run_resume_items(sw_run *r) {
  resume_scan rs = {.r = r};
  int rc = sw_dstore_begin(r->d->store, 1, &rs.t);
  if (rc)
    return rc;
  rc = sw_dstore_item_each(rs.t, r->b.number, 0, resume_item_cb, &rs);
  sw_dstore_abort(rs.t);
  /* items tried before the stop keep their backoff: a run of restarts does not use their tries
     up while the payee operators are still reconnecting */
  uint64_t now = sw_now_ms();
  for (uint32_t i = 0; !rc && i < r->n; i++) {
    run_item *it = &r->items[i];
    if (it->status == SW_ITEM_PENDING && !it->retry_wait && it->tries)
      retry_later(r, i, now + retry_delay(r->d, it->tries));
  }
  r->cursor = 0; /* run_pay skips what is settled, in flight or waiting */
  return rc;
}

/* Resumes batch b (approved, running or waiting for funds: collect_cb chose it). */
static int resume_cb(const sw_batch *b, void *arg) {
  sw_disburse *d = arg;
  sw_run *r = run_new(d, b);
  if (!r)
    return SW_DSTORE_E_NOMEM;
  ledger_pending_state ps = LEDGER_PENDING_NONE;
  uint64_t resolved;
  if (ledger_pending_state_of(d->sw->ledger, reserve_id(r), &ps, &resolved) == 0) {
    if (ps == LEDGER_PENDING_OPEN)
      r->reserved = 1;
    else if (ps == LEDGER_PENDING_POSTED)
      r->b.cycle_funded = 1;
  }
  if (r->b.cycle_funded) {
    int rc = run_resume_items(r);
    if (rc)
      return rc;
    r->phase = PH_PAYING;
    r->last_ms = sw_now_ms();
  }
  sw_log(&d->sw->log, SW_LOG_INFO, "disburse.resumed",
         "batch=%llu cycle=%u state=%d funded=%d in_flight=%u unfinished=%u",
         (unsigned long long)b->number, r->b.current_cycle, r->b.state, r->b.cycle_funded,
         r->in_flight, r->unfinished);
  return 0;
}

/* ---------------------------------------------------------------- the tick */

static void run_pay(sw_run *r, uint64_t now) {
  sw_disburse *d = r->d;
  double dt = (double)(now - r->last_ms) / 1000.0;
  r->last_ms = now;
  r->tokens += dt * r->b.rate;
  double cap = r->b.rate / 10.0 + 1; /* at most 100 ms of burst */
  if (r->tokens > cap)
    r->tokens = cap;
  if (r->cancelling || now < d->hold_until_ms)
    return;
  sw_dstore_txn *t = NULL;
  if (sw_dstore_begin(d->store, 1, &t))
    return;
  /* retries first, then items never started */
  for (size_t k = 0; k < r->retry_len && r->tokens >= 1 && r->in_flight < d->window;) {
    uint32_t i = r->retry[k];
    run_item *it = &r->items[i];
    if (it->retry_wait && it->next_ms > now) {
      k++;
      continue;
    }
    r->retry[k] = r->retry[--r->retry_len]; /* due, or no longer waiting: off the list */
    if (!it->retry_wait)
      continue;
    it->retry_wait = 0;
    r->n_retry--;
    if (item_start(r, t, i) == -2) {
      retry_later(r, i, now); /* the ledger queue is full: next tick */
      goto out;
    }
    r->tokens -= 1;
  }
  while (r->cursor < r->n && r->tokens >= 1 && r->in_flight < d->window) {
    uint32_t i = r->order ? r->order[r->cursor] : r->cursor;
    if (r->items[i].status != SW_ITEM_PENDING || r->items[i].retry_wait) {
      r->cursor++; /* settled, in flight, or waiting for a retry (the retry list has it) */
      continue;
    }
    if (item_start(r, t, i) == -2)
      break;
    r->cursor++;
    r->tokens -= 1;
  }
out:
  sw_dstore_abort(t);
}

/* Cancels every item not started or waiting for a retry (their amounts are released when the
 * cycle was funded). */
static void run_cancel_pending(sw_run *r) {
  for (uint32_t i = 0; i < r->n; i++)
    if (r->items[i].status == SW_ITEM_PENDING)
      item_final(r, i, SW_ITEM_CANCELLED, 0, sw_now_ms());
}

static void run_step(sw_run *r, uint64_t now) {
  sw_disburse *d = r->d;
  if (r->phase == PH_LEDGER)
    return;
  if (r->phase == PH_DONE) {
    if (r->ledger_ops == 0 && r->in_flight == 0)
      run_free(d, r);
    return;
  }
  if (r->phase == PH_WAIT_START) {
    if (r->cancelling) {
      if (r->reserved) {
        if (phase_submit(r, OP_VOID, 0, 0, NULL) == 0)
          return;
        return;
      }
      run_cancel_pending(r);
      r->phase = PH_PAYING;
    } else if (now >= r->b.cycle_start_ms && now >= r->wait_until_ms) {
      if (r->prog.end_ms && r->b.cycle_start_ms > r->prog.end_ms && !r->reserved) {
        r->b.state = SW_BATCH_COMPLETED;
        r->b.finished_ms = now;
        batch_save(d, &r->b);
        sw_log(&d->sw->log, SW_LOG_INFO, "disburse.programme_ended", "batch=%llu cycle=%u",
               (unsigned long long)r->b.number, r->b.current_cycle);
        r->phase = PH_DONE;
        return;
      }
      phase_submit(r, r->reserved ? OP_FUND : OP_RESERVE, 0, 0, NULL);
      return;
    } else {
      return;
    }
  }
  /* PH_PAYING */
  if (r->cancelling)
    run_cancel_pending(r);
  run_pay(r, now);
  if (r->releases_open && r->ledger_ops < 2)
    submit_releases(r);
  if (now - r->last_sample_ms >= 1000) {
    r->last_sample_ms = now;
    r->sample_ms[r->sample_at % RATE_SAMPLES] = now;
    r->sample_paid[r->sample_at % RATE_SAMPLES] = r->paid_count;
    r->sample_at++;
  }
  if (r->unfinished == 0 && r->in_flight == 0 && r->releases_open == 0 && r->ledger_ops == 0)
    run_finish_cycle(r);
}

typedef struct free_scan {
  sw_run *r;
  sw_dstore_txn *t;
} free_scan;

static int free_entries_cb(uint32_t index, const sw_batch_item *rec, void *arg) {
  free_scan *fs = arg;
  sw_run *r = fs->r;
  const sw_batch *b = &r->b;
  int rc = 0;
  if (index < r->n && r->items[index].status != SW_ITEM_PAID)
    rc = sw_dstore_cycle_del(fs->t, b->programme, b->current_cycle, rec->token);
  for (uint32_t c = b->current_cycle + 1; r->cancelling && !rc && c < b->first_cycle + b->cycles;
       c++)
    rc = sw_dstore_cycle_del(fs->t, b->programme, c, rec->token);
  return rc;
}

/* At the end of a cycle, the beneficiaries it did not pay (failed, cancelled) are free to be
 * paid for that cycle by another batch, and after a cancel so are the cycles it will not run.
 * Paid ones stay taken. O(items) store writes. */
static int free_cycle_entries(sw_run *r) {
  free_scan fs = {.r = r};
  int rc = sw_dstore_begin(r->d->store, 0, &fs.t);
  if (rc)
    return rc;
  rc = sw_dstore_item_each(fs.t, r->b.number, 0, free_entries_cb, &fs);
  if (rc) {
    sw_dstore_abort(fs.t);
    return rc;
  }
  return sw_dstore_commit(fs.t);
}

static void run_finish_cycle(sw_run *r) {
  sw_disburse *d = r->d;
  for (uint32_t i = 0; i < r->n; i++)
    r->items[i].dirty = 1; /* every status of a finished cycle is kept */
  if (sw_payout_flush(d) || free_cycle_entries(r))
    return; /* try again at the next tick */
  uint64_t now = sw_now_ms();
  sw_log(&d->sw->log, SW_LOG_INFO, "disburse.cycle_finished", "batch=%llu cycle=%u paid=%llu",
         (unsigned long long)r->b.number, r->b.current_cycle, (unsigned long long)r->paid_count);
  int last = r->b.current_cycle + 1 >= r->b.first_cycle + r->b.cycles;
  if (r->cancelling || last) {
    r->b.state = r->cancelling ? SW_BATCH_CANCELLED : SW_BATCH_COMPLETED;
    r->b.finished_ms = now;
    batch_save(d, &r->b);
    if (r->cancel_conn)
      sw_admin_reply(d->sw, r->cancel_conn, r->cancel_corr, 0, NULL);
    r->cancel_conn = 0;
    r->phase = PH_DONE;
    return;
  }
  r->b.current_cycle++;
  r->b.cycle_start_ms += r->b.every_ms;
  r->b.cycle_funded = 0;
  r->b.reserve_try = 0;
  if (batch_save(d, &r->b)) {
    r->b.current_cycle--;
    r->b.cycle_start_ms -= r->b.every_ms;
    r->b.cycle_funded = 1;
    return;
  }
  run_start_cycle(r);
}

static void run_start_cycle(sw_run *r) {
  r->escrow = sw_escrow_account_id(r->prog.funding, r->b.number, r->b.current_cycle);
  r->reserved = 0;
  if (run_alloc_items(r)) {
    r->phase = PH_DONE;
    return;
  }
  r->phase = PH_WAIT_START;
}

static void tick_cb(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  sw_disburse *d = arg;
  static const struct timeval tv = {0, TICK_MS * 1000};
  uint64_t now = sw_now_ms();
  for (sw_run *r = d->runs, *next; r; r = next) {
    next = r->next;
    run_step(r, now);
  }
  if (now - d->last_flush_ms >= FLUSH_EVERY_MS) {
    d->last_flush_ms = now;
    sw_payout_flush(d);
  }
  if (now - d->last_gc_ms >= 1000) {
    d->last_gc_ms = now;
    sw_disburse_gc_uploads(d);
  }
  evtimer_add(d->tick, &tv);
}

static int tick_start(sw_disburse *d) {
  if (d->tick)
    return 0;
  static const struct timeval tv = {0, TICK_MS * 1000};
  d->tick = evtimer_new(d->sw->base, tick_cb, d);
  return d->tick && evtimer_add(d->tick, &tv) == 0 ? 0 : -1;
}

/* ---------------------------------------------------------------- entry points */

typedef struct batch_list {
  sw_batch *b;
  size_t n, cap;
} batch_list;

static int collect_cb(const sw_batch *b, void *arg) {
  batch_list *l = arg;
  if (b->state != SW_BATCH_APPROVED && b->state != SW_BATCH_RUNNING &&
      b->state != SW_BATCH_WAITING_FUNDS)
    return 0;
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 16;
    sw_batch *nb = realloc(l->b, cap * sizeof *nb);
    if (!nb)
      return SW_DSTORE_E_NOMEM;
    l->b = nb;
    l->cap = cap;
  }
  l->b[l->n++] = *b;
  return 0;
}

int sw_payout_resume(sw_disburse *d) {
  d->hold_until_ms = sw_now_ms() + RESUME_GRACE_MS;
  sw_dstore_txn *t;
  batch_list l = {0};
  int rc = sw_dstore_begin(d->store, 1, &t);
  if (rc)
    return rc;
  rc = sw_dstore_batch_each(t, collect_cb, &l);
  sw_dstore_abort(t);
  for (size_t i = 0; !rc && i < l.n; i++)
    rc = resume_cb(&l.b[i], d);
  free(l.b);
  return rc ? rc : tick_start(d);
}

void sw_payout_approve(sw_disburse *d, const sw_batch *b, const char *approver, uint64_t conn,
                       uint64_t corr) {
  if (sw_payout_run(d, b->number)) {
    sw_admin_reply(d->sw, conn, corr, SW_ERR_VALIDATION, "the batch is being approved");
    return;
  }
  sw_run *r = run_new(d, b);
  if (!r) {
    sw_admin_reply(d->sw, conn, corr, SW_ERR_INTERNAL, "out of memory");
    return;
  }
  int rc = phase_submit(r, OP_RESERVE, conn, corr, approver);
  if (rc) {
    run_free(d, r);
    sw_admin_reply(d->sw, conn, corr, SW_ERR_UNAVAILABLE, ledger_strerror(rc));
  }
}

void sw_payout_cancel(sw_disburse *d, const sw_batch *b, uint64_t conn, uint64_t corr) {
  sw_run *r = sw_payout_run(d, b->number);
  if (!r) {
    /* submitted: nothing runs, but a reservation may be in the ledger (an approval whose record
       a crash lost): the run voids it if so, then records the cancel */
    r = run_new(d, b);
    if (!r) {
      sw_admin_reply(d->sw, conn, corr, SW_ERR_INTERNAL, "out of memory");
      return;
    }
    r->reserved = 1;
  }
  if (r->phase == PH_DONE) { /* a refused approval's run, on its way out */
    sw_admin_reply(d->sw, conn, corr, SW_ERR_UNAVAILABLE, "the batch is busy: try again");
    return;
  }
  if (r->cancelling) {
    sw_admin_reply(d->sw, conn, corr, 0, NULL);
    return;
  }
  r->cancelling = 1;
  r->cancel_conn = conn;
  r->cancel_corr = corr;
}
