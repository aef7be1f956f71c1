/* transfer.c — the payment state machine of DESIGN §4.
 *
 *   prepare ─validate, duplicate check, route─▶ RESERVING ─ledger: pending legs─▶ RESERVED
 *   RESERVED ─forward to payee; fulfil COMMITTED─▶ COMMITTING ─post legs─▶ committed
 *   RESERVED ─fulfil ABORTED / bad fulfilment / payee gone─▶ ABORTING ─void legs─▶ aborted
 *   RESERVED ─expiration─▶ EXPIRING ─void legs─▶ expired
 *
 * A payment is two linked pending transfers in the ledger (accounts.h): payer → payee on the
 * LIQUIDITY accounts (the operator's transfer id; exceeds_credits = 4001) and on the NDC
 * accounts (a derived id; exceeds_credits = 4200). Every ledger write goes through the group
 * commit (commit.h) and nobody hears of an outcome before it is durable. A transfer lives in
 * memory from its prepare to its final state; after that, and after a restart, the ledger
 * answers duplicates and queries. The LIQUIDITY leg carries what a restart needs: user_data_128
 * = the first 16 bytes of the prepare's digest (duplicate detection), user_data_64 = the
 * expiration in ms, user_data_32 = 1 if there is a condition; the NDC leg's user_data_128 holds
 * the first 16 bytes of the condition. Party identifiers are never stored.
 *
 * Internal transfers: the switch itself pays a disbursement item (payout.c) from a programme's
 * ESCROW account. Same state machine and ledger legs with other debit accounts; there is no
 * payer connection to answer, a callback hears the outcome instead.
 */
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

#include "accounts.h"
#include "currency.h"
#include "daemon.h"
#include "errors.h"
#include "frame.h"

enum { T_RESERVING, T_RESERVED, T_COMMITTING, T_ABORTING, T_EXPIRING };

#define MAX_PARTY_ID 128
#define MAX_REFERENCE 256

struct sw_transfer {
  sw_switch *sw;
  ledger_id id;
  uint32_t payer, payee;
  ledger_id debit_liquidity, debit_ndc; /* the payer's side of the two legs */
  int internal;                         /* started by the switch: no payer connection */
  sw_transfer_done_cb done_cb;          /* internal: told the final outcome, once */
  void *done_arg;
  uint32_t ledger_no;
  char currency[4];
  uint64_t amount;
  uint64_t expiration_ms;
  uint8_t digest[32];
  size_t digest_len; /* 32 from a prepare, 16 when recovered from the ledger */
  uint8_t condition[32];
  size_t condition_len; /* 0 none; 32 from a prepare; 16 when recovered */
  uint8_t fulfilment[32];
  int has_fulfilment;
  int state;
  unsigned abort_code;
  int retry_resolve; /* a post/void found the ledger queue full: the timer retries it */
  int retry_post, retry_state;
  uint64_t payer_conn, payer_corr;   /* the prepare to answer (0: from before a restart) */
  uint64_t payee_conn, forward_corr; /* where the forward went */
  int payee_knows;                   /* forwarded (or recovered: it was forwarded before) */
  uint64_t fulfil_conn, fulfil_corr; /* the fulfil to confirm */
  /* Forwarded once, then dropped (personal data is kept no longer than needed). */
  Tuma__V1__Party payer_party, payee_party;
  char *payer_party_id, *payee_party_id, *reference;
  struct event *timer;
  sw_transfer *hnext;
};

/* The in-memory transfers, by id (chained hash table, doubling). */
struct sw_transfers {
  sw_transfer **buckets;
  size_t nbuckets;
  size_t count;
};

static void expiry_cb(evutil_socket_t fd, short what, void *arg);

/* ---------------------------------------------------------------- table */

static size_t bucket_of(const struct sw_transfers *tt, ledger_id id) {
  uint64_t h = (id.lo ^ (id.hi * 0x9e3779b97f4a7c15ull)) * 0xbf58476d1ce4e5b9ull;
  return (size_t)(h >> 17) & (tt->nbuckets - 1);
}

static sw_transfer *table_find(sw_switch *sw, ledger_id id) {
  struct sw_transfers *tt = sw->transfers;
  for (sw_transfer *t = tt->buckets[bucket_of(tt, id)]; t; t = t->hnext)
    if (ledger_id_eq(t->id, id))
      return t;
  return NULL;
}

static int table_insert(sw_switch *sw, sw_transfer *t) {
  struct sw_transfers *tt = sw->transfers;
  if (tt->count >= tt->nbuckets) {
    size_t n = tt->nbuckets * 2;
    sw_transfer **b = calloc(n, sizeof *b);
    if (!b)
      return -1;
    sw_transfer **old = tt->buckets;
    size_t oldn = tt->nbuckets;
    tt->buckets = b;
    tt->nbuckets = n;
    for (size_t i = 0; i < oldn; i++)
      for (sw_transfer *x = old[i], *next; x; x = next) {
        next = x->hnext;
        size_t k = bucket_of(tt, x->id);
        x->hnext = b[k];
        b[k] = x;
      }
    free(old);
  }
  size_t k = bucket_of(tt, t->id);
  t->hnext = tt->buckets[k];
  tt->buckets[k] = t;
  tt->count++;
  return 0;
}

static void table_remove(sw_switch *sw, sw_transfer *t) {
  struct sw_transfers *tt = sw->transfers;
  for (sw_transfer **p = &tt->buckets[bucket_of(tt, t->id)]; *p; p = &(*p)->hnext)
    if (*p == t) {
      *p = t->hnext;
      tt->count--;
      return;
    }
}

static void drop_forward_data(sw_transfer *t) {
  free(t->payer_party_id);
  free(t->payee_party_id);
  free(t->reference);
  t->payer_party_id = t->payee_party_id = t->reference = NULL;
}

static void transfer_free(sw_transfer *t) {
  if (t->timer)
    event_free(t->timer);
  drop_forward_data(t);
  free(t);
}

int sw_transfers_init(sw_switch *sw) {
  sw->transfers = calloc(1, sizeof *sw->transfers);
  if (!sw->transfers)
    return -1;
  sw->transfers->nbuckets = 1024;
  sw->transfers->buckets = calloc(sw->transfers->nbuckets, sizeof(sw_transfer *));
  return sw->transfers->buckets ? 0 : -1;
}

void sw_transfers_free(sw_switch *sw) {
  struct sw_transfers *tt = sw->transfers;
  if (!tt)
    return;
  for (size_t i = 0; i < tt->nbuckets; i++)
    for (sw_transfer *t = tt->buckets[i], *next; t; t = next) {
      next = t->hnext;
      if (t->done_cb) /* an internal transfer's watcher learns it will not hear more */
        t->done_cb(t->id, TUMA__V1__TRANSFER_STATE__TRANSFER_STATE_UNSPECIFIED, 0, 0, t->done_arg);
      transfer_free(t);
    }
  free(tt->buckets);
  free(tt);
  sw->transfers = NULL;
}

size_t sw_transfers_in_flight(const sw_switch *sw) {
  return sw->transfers ? sw->transfers->count : 0;
}

/* ---------------------------------------------------------------- replies */

static Tuma__V1__TransferState wire_state(int final_state) {
  switch (final_state) {
  case TUMA__V1__TRANSFER_STATE__TRANSFER_STATE_COMMITTED:
  case TUMA__V1__TRANSFER_STATE__TRANSFER_STATE_ABORTED:
  case TUMA__V1__TRANSFER_STATE__TRANSFER_STATE_EXPIRED:
    return final_state;
  default:
    return TUMA__V1__TRANSFER_STATE__TRANSFER_STATE_RESERVED;
  }
}

/* Sends a TransferResult on connection conn_id (if still there); `done` marks the request
 * answered. completed_ms: when the outcome happened (0 for a transfer still reserved). */
static void send_result_at(sw_switch *sw, uint64_t conn_id, uint64_t corr, ledger_id id, int state,
                           unsigned code, const uint8_t *fulfilment, int done,
                           uint64_t completed_ms) {
  sw_conn *c = conn_id ? sw_conn_find(sw, conn_id) : NULL;
  if (!c)
    return;
  uint8_t idb[16];
  sw_id_to_bytes(id, idb);
  Tuma__V1__Envelope env = TUMA__V1__ENVELOPE__INIT;
  Tuma__V1__TransferResult res = TUMA__V1__TRANSFER_RESULT__INIT;
  Tuma__V1__Error err = TUMA__V1__ERROR__INIT;
  res.transfer_id.data = idb;
  res.transfer_id.len = sizeof idb;
  res.state = wire_state(state);
  if (code) {
    err.code = code;
    err.message = (char *)sw_error_text(code);
    res.error = &err;
  }
  if (state != TUMA__V1__TRANSFER_STATE__TRANSFER_STATE_RESERVED)
    res.completed_at_ms = completed_ms;
  if (fulfilment) {
    res.fulfilment.data = (uint8_t *)fulfilment;
    res.fulfilment.len = 32;
  }
  env.correlation_id = corr;
  env.body_case = TUMA__V1__ENVELOPE__BODY_TRANSFER_RESULT;
  env.transfer_result = &res;
  sw_conn_send(c, &env);
  if (done)
    sw_conn_request_done(c);
}

/* The same, for an outcome happening now. */
static void send_result(sw_switch *sw, uint64_t conn_id, uint64_t corr, ledger_id id, int state,
                        unsigned code, const uint8_t *fulfilment, int done) {
  send_result_at(sw, conn_id, corr, id, state, code, fulfilment, done, sw_now_ms());
}

/* Refuses a request before anything was reserved. */
static void refuse(sw_conn *c, uint64_t corr, ledger_id id, unsigned code) {
  c->sw->metrics.transfers_rejected++;
  send_result(c->sw, c->id, corr, id, TUMA__V1__TRANSFER_STATE__TRANSFER_STATE_ABORTED, code, NULL,
              1);
}

/* ---------------------------------------------------------------- ledger legs */

static ledger_id bytes16_id(const uint8_t *b) {
  return sw_id_from_bytes(b);
}

static void reserve_events(const sw_transfer *t, uint64_t now_ms, ledger_event ev[2]) {
  uint64_t remaining_ms = t->expiration_ms > now_ms ? t->expiration_ms - now_ms : 0;
  uint32_t timeout_s = (uint32_t)((remaining_ms + 999) / 1000) + 1; /* the ledger's backstop */
  ev[0] = sw_transfer_event(t->id, t->debit_liquidity,
                            sw_account_id(t->payee, t->ledger_no, SW_ACCOUNT_LIQUIDITY), t->amount,
                            t->ledger_no, SW_CODE_PAYMENT,
                            LEDGER_TRANSFER_PENDING | LEDGER_TRANSFER_LINKED);
  ev[0].transfer.timeout = timeout_s;
  ev[0].transfer.user_data_128 = bytes16_id(t->digest);
  ev[0].transfer.user_data_64 = t->expiration_ms;
  ev[0].transfer.user_data_32 = t->condition_len ? 1 : 0;
  ev[1] = sw_transfer_event(sw_derive_id("tuma-ndc", t->id),
                            t->debit_ndc, sw_account_id(t->payee, t->ledger_no, SW_ACCOUNT_NDC),
                            t->amount,
                            t->ledger_no, SW_CODE_PAYMENT_NDC, LEDGER_TRANSFER_PENDING);
  ev[1].transfer.timeout = timeout_s;
  if (t->condition_len)
    ev[1].transfer.user_data_128 = bytes16_id(t->condition);
}

/* Post (commit) or void both legs, as a linked pair. Ids derived: a retry is idempotent. A
 * void carries its reason (an error code: 3303 for an expiry) in user_data_32, so the ledger
 * alone can say later why a transfer did not complete. */
static void resolve_events(const sw_transfer *t, int post, unsigned code, ledger_event ev[2]) {
  uint16_t f = post ? LEDGER_TRANSFER_POST_PENDING : LEDGER_TRANSFER_VOID_PENDING;
  ledger_id ndc = sw_derive_id("tuma-ndc", t->id);
  ledger_id zero = {0, 0};
  ev[0] = sw_transfer_event(sw_derive_id(post ? "tuma-post" : "tuma-void", t->id), zero, zero, 0, 0,
                            SW_CODE_PAYMENT, f | LEDGER_TRANSFER_LINKED);
  ev[0].transfer.pending_id = t->id;
  ev[0].transfer.user_data_32 = post ? 0 : code;
  ev[1] = sw_transfer_event(sw_derive_id(post ? "tuma-post-ndc" : "tuma-void-ndc", t->id), zero,
                            zero, 0, 0, SW_CODE_PAYMENT_NDC, f);
  ev[1].transfer.pending_id = ndc;
}

/* ---------------------------------------------------------------- finishing */

/* Tells both sides, counts, forgets the transfer. `rejected`: refused before anything was
 * reserved (counted apart from aborts). */
static void finish(sw_transfer *t, int final_state, unsigned code, int rejected) {
  sw_switch *sw = t->sw;
  const uint8_t *ful =
      final_state == TUMA__V1__TRANSFER_STATE__TRANSFER_STATE_COMMITTED && t->has_fulfilment
          ? t->fulfilment
          : NULL;
  /* The request that asked is answered on its connection. If that connection is gone (or the
   * transfer was recovered after a restart), a live connection of the operator is told with
   * correlation 0, so an operator that reconnected still hears the outcome. */
  if (t->internal) {
    /* the switch asked: done_cb below */
  } else if (t->payer_conn && sw_conn_find(sw, t->payer_conn)) {
    send_result(sw, t->payer_conn, t->payer_corr, t->id, final_state, code, ful, 1);
  } else {
    sw_conn *pc = sw_peer_pick_conn(sw, t->payer);
    if (pc)
      send_result(sw, pc->id, 0, t->id, final_state, code, ful, 0);
  }
  if (t->fulfil_conn && sw_conn_find(sw, t->fulfil_conn)) {
    send_result(sw, t->fulfil_conn, t->fulfil_corr, t->id, final_state, code, NULL, 1);
  } else if (t->fulfil_conn) {
    sw_conn *pc = sw_peer_pick_conn(sw, t->payee);
    if (pc)
      send_result(sw, pc->id, 0, t->id, final_state, code, NULL, 0);
  } else if (t->payee_knows && final_state != TUMA__V1__TRANSFER_STATE__TRANSFER_STATE_COMMITTED) {
    /* The payee heard of it if it was forwarded: on that connection with the forward's id,
     * or, if that one is gone, on another with correlation 0. */
    sw_conn *pc = t->payee_conn ? sw_conn_find(sw, t->payee_conn) : NULL;
    uint64_t corr = t->forward_corr;
    if (!pc) {
      pc = sw_peer_pick_conn(sw, t->payee);
      corr = 0;
    }
    if (pc)
      send_result(sw, pc->id, corr, t->id, final_state, code, NULL, 0);
  }
  if (rejected)
    sw->metrics.transfers_rejected++;
  else if (final_state == TUMA__V1__TRANSFER_STATE__TRANSFER_STATE_COMMITTED)
    sw->metrics.transfers_committed++;
  else if (final_state == TUMA__V1__TRANSFER_STATE__TRANSFER_STATE_EXPIRED)
    sw->metrics.transfers_expired++;
  else
    sw->metrics.transfers_aborted++;
  sw_log(&sw->log, SW_LOG_DEBUG, "transfer.final", "id=%016llx%016llx state=%d code=%u",
         (unsigned long long)t->id.hi, (unsigned long long)t->id.lo, final_state, code);
  sw_transfer_done_cb done = t->done_cb;
  void *done_arg = t->done_arg;
  ledger_id id = t->id;
  table_remove(sw, t);
  transfer_free(t);
  if (done)
    done(id, final_state, code, sw_now_ms(), done_arg);
}

static void resolve_done_cb(int status, const ledger_result *r, size_t n, void *arg);

/* Posts (post = 1) or voids the reserved legs; `code` is the reason given to both sides. */
static void resolve(sw_transfer *t, int post, int state, unsigned code) {
  ledger_event ev[2];
  resolve_events(t, post, code, ev);
  t->state = state;
  t->abort_code = code;
  t->retry_resolve = 0;
  int rc = sw_commit_submit(t->sw->commit, ev, 2, resolve_done_cb, t);
  if (rc) { /* queue full: try again shortly, the transfer stays reserved meanwhile */
    t->state = T_RESERVED;
    t->retry_resolve = 1;
    t->retry_post = post;
    t->retry_state = state;
    struct timeval tv = {0, 20000};
    evtimer_add(t->timer, &tv);
  }
}

static void resolve_done_cb(int status, const ledger_result *r, size_t n, void *arg) {
  (void)n;
  sw_transfer *t = arg;
  sw_switch *sw = t->sw;
  if (status) { /* nothing committed: still reserved; retry (expiry) or let the payee resend */
    sw_log(&sw->log, SW_LOG_ERROR, "ledger.failed", "op=resolve status=%s",
           ledger_strerror(status));
    int was = t->state;
    t->state = T_RESERVED;
    if (was == T_COMMITTING || was == T_ABORTING) {
      send_result(sw, t->fulfil_conn, t->fulfil_corr, t->id,
                  TUMA__V1__TRANSFER_STATE__TRANSFER_STATE_RESERVED, SW_ERR_INTERNAL, NULL, 1);
      t->fulfil_conn = 0;
    }
    struct timeval tv = {1, 0};
    if (was == T_EXPIRING)
      evtimer_add(t->timer, &tv);
    return;
  }
  ledger_result main_leg = r[0];
  int post = t->state == T_COMMITTING;
  if (main_leg == LEDGER_OK || main_leg == LEDGER_EXISTS) {
    if (post)
      finish(t, TUMA__V1__TRANSFER_STATE__TRANSFER_STATE_COMMITTED, 0, 0);
    else if (t->state == T_EXPIRING)
      finish(t, TUMA__V1__TRANSFER_STATE__TRANSFER_STATE_EXPIRED, SW_ERR_TRANSFER_EXPIRED, 0);
    else
      finish(t, TUMA__V1__TRANSFER_STATE__TRANSFER_STATE_ABORTED, t->abort_code, 0);
  } else if (main_leg == LEDGER_PENDING_TRANSFER_EXPIRED) {
    finish(t, TUMA__V1__TRANSFER_STATE__TRANSFER_STATE_EXPIRED, SW_ERR_TRANSFER_EXPIRED, 0);
  } else if (main_leg == LEDGER_PENDING_TRANSFER_ALREADY_POSTED) {
    finish(t, TUMA__V1__TRANSFER_STATE__TRANSFER_STATE_COMMITTED, 0, 0);
  } else if (main_leg == LEDGER_PENDING_TRANSFER_ALREADY_VOIDED) {
    finish(t, TUMA__V1__TRANSFER_STATE__TRANSFER_STATE_ABORTED, t->abort_code, 0);
  } else {
    /* Not expected: the legs were reserved by us. Keep it reserved and say so loudly. */
    sw_log(&sw->log, SW_LOG_ERROR, "transfer.resolve_failed", "id=%016llx%016llx result=%s",
           (unsigned long long)t->id.hi, (unsigned long long)t->id.lo,
           ledger_result_name(main_leg));
    t->state = T_RESERVED;
    send_result(sw, t->fulfil_conn, t->fulfil_corr, t->id,
                TUMA__V1__TRANSFER_STATE__TRANSFER_STATE_RESERVED, SW_ERR_INTERNAL, NULL, 1);
    t->fulfil_conn = 0;
  }
}

static void arm_expiry(sw_transfer *t) {
  uint64_t now = sw_now_ms();
  uint64_t ms = t->expiration_ms > now ? t->expiration_ms - now : 0;
  struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
  evtimer_add(t->timer, &tv);
}

static void expiry_cb(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  sw_transfer *t = arg;
  if (t->state != T_RESERVED)
    return;
  if (t->retry_resolve && (t->retry_post || sw_now_ms() < t->expiration_ms))
    resolve(t, t->retry_post, t->retry_state, t->abort_code);
  else if (sw_now_ms() >= t->expiration_ms)
    resolve(t, 0, T_EXPIRING, SW_ERR_TRANSFER_EXPIRED);
  else
    arm_expiry(t);
}

/* ---------------------------------------------------------------- forward */

static void forward(sw_transfer *t) {
  sw_switch *sw = t->sw;
  sw_conn *pc = sw_peer_pick_conn(sw, t->payee);
  if (!pc) {
    drop_forward_data(t);
    resolve(t, 0, T_ABORTING, SW_ERR_DESTINATION);
    return;
  }
  uint8_t idb[16];
  sw_id_to_bytes(t->id, idb);
  sw_peer *payer = sw_peer_by_number(sw, t->payer);
  Tuma__V1__Envelope env = TUMA__V1__ENVELOPE__INIT;
  Tuma__V1__TransferForward fw = TUMA__V1__TRANSFER_FORWARD__INIT;
  Tuma__V1__Money money = TUMA__V1__MONEY__INIT;
  fw.transfer_id.data = idb;
  fw.transfer_id.len = 16;
  fw.payer_participant = payer ? payer->p.id : (char *)"";
  if (t->payer_party_id) {
    t->payer_party.id = t->payer_party_id;
    fw.payer = &t->payer_party;
  }
  if (t->payee_party_id) {
    t->payee_party.id = t->payee_party_id;
    fw.payee = &t->payee_party;
  }
  money.currency = t->currency;
  money.amount = t->amount;
  fw.amount = &money;
  fw.expiration_ms = t->expiration_ms;
  if (t->condition_len == 32) {
    fw.condition.data = t->condition;
    fw.condition.len = 32;
  }
  fw.reference = t->reference ? t->reference : (char *)"";
  env.correlation_id = ++sw->next_correlation;
  env.body_case = TUMA__V1__ENVELOPE__BODY_TRANSFER_FORWARD;
  env.transfer_forward = &fw;
  t->payee_conn = pc->id;
  t->forward_corr = env.correlation_id;
  t->payee_knows = 1;
  sw_conn_send(pc, &env);
  drop_forward_data(t);
}

/* ---------------------------------------------------------------- prepare */

/* The ledger answered the reservation. */
static void reserve_done_cb(int status, const ledger_result *r, size_t n, void *arg) {
  (void)n;
  sw_transfer *t = arg;
  sw_switch *sw = t->sw;
  if (status) {
    sw_log(&sw->log, SW_LOG_ERROR, "ledger.failed", "op=reserve status=%s",
           ledger_strerror(status));
    finish(t, TUMA__V1__TRANSFER_STATE__TRANSFER_STATE_ABORTED,
           status == LEDGER_E_FULL ? SW_ERR_UNAVAILABLE : SW_ERR_INTERNAL, 1);
    return;
  }
  if (r[0] == LEDGER_OK && r[1] == LEDGER_OK) {
    t->state = T_RESERVED;
    if (sw_now_ms() >= t->expiration_ms) {
      drop_forward_data(t);
      resolve(t, 0, T_EXPIRING, SW_ERR_TRANSFER_EXPIRED);
      return;
    }
    arm_expiry(t);
    forward(t);
    return;
  }
  unsigned code = SW_ERR_INTERNAL;
  if (r[0] == LEDGER_EXCEEDS_CREDITS)
    code = SW_ERR_PAYER_LIQUIDITY;
  else if (r[1] == LEDGER_EXCEEDS_CREDITS)
    code = SW_ERR_PAYER_LIMIT;
  else if (r[0] == LEDGER_ID_ALREADY_FAILED || r[1] == LEDGER_ID_ALREADY_FAILED)
    code = SW_ERR_PAYER_GENERIC;
  else if (r[0] >= LEDGER_EXISTS_WITH_DIFFERENT_FLAGS && r[0] <= LEDGER_EXISTS)
    code = SW_ERR_MODIFIED_REQUEST;
  else
    sw_log(&sw->log, SW_LOG_ERROR, "transfer.reserve_failed", "result=%s/%s",
           ledger_result_name(r[0]), ledger_result_name(r[1]));
  finish(t, TUMA__V1__TRANSFER_STATE__TRANSFER_STATE_ABORTED, code, 1);
}

static void digest_add(EVP_MD_CTX *h, const void *p, size_t n) {
  uint32_t len = (uint32_t)n;
  EVP_DigestUpdate(h, &len, sizeof len);
  if (n)
    EVP_DigestUpdate(h, p, n);
}

static void digest_party(EVP_MD_CTX *h, const Tuma__V1__Party *p) {
  uint32_t type = p ? (uint32_t)p->type : 0;
  digest_add(h, &type, sizeof type);
  const char *id = p && p->id ? p->id : "";
  digest_add(h, id, strlen(id));
}

/* What makes two prepares "the same": every field the payer sent. */
static int prepare_digest(uint32_t payer, const Tuma__V1__TransferPrepare *m, uint8_t out[32]) {
  EVP_MD_CTX *h = EVP_MD_CTX_new();
  if (!h || EVP_DigestInit_ex(h, EVP_sha256(), NULL) != 1) {
    EVP_MD_CTX_free(h);
    return -1;
  }
  digest_add(h, m->transfer_id.data, m->transfer_id.len);
  digest_add(h, &payer, sizeof payer);
  digest_party(h, m->payer);
  digest_party(h, m->payee);
  const char *pp = m->payee_participant ? m->payee_participant : "";
  digest_add(h, pp, strlen(pp));
  digest_add(h, m->amount->currency, strlen(m->amount->currency));
  digest_add(h, &m->amount->amount, sizeof m->amount->amount);
  digest_add(h, &m->expiration_ms, sizeof m->expiration_ms);
  digest_add(h, m->condition.data, m->condition.len);
  const char *ref = m->reference ? m->reference : "";
  digest_add(h, ref, strlen(ref));
  unsigned len = 0;
  int ok = EVP_DigestFinal_ex(h, out, &len) == 1 && len == 32;
  EVP_MD_CTX_free(h);
  return ok ? 0 : -1;
}

static int party_valid(const Tuma__V1__Party *p) {
  return p && p->id && p->id[0] && strlen(p->id) <= MAX_PARTY_ID &&
         p->type > TUMA__V1__PARTY_ID_TYPE__PARTY_ID_TYPE_UNSPECIFIED &&
         p->type <= TUMA__V1__PARTY_ID_TYPE__PARTY_ID_TYPE_BUSINESS_ID;
}

static int peer_has_currency(const sw_peer *p, uint32_t number) {
  for (unsigned i = 0; i < p->p.n_currencies; i++)
    if (p->p.currencies[i] == number)
      return 1;
  return 0;
}

/* The state of a transfer found in the ledger but not in memory (finished, or from before a
 * restart and already resolved). */
static int ledger_state_of(sw_switch *sw, ledger_id id, unsigned *code, uint64_t *completed_ms) {
  ledger_pending_state st = LEDGER_PENDING_NONE;
  uint64_t resolved_ts = 0;
  *code = 0;
  *completed_ms = 0;
  if (ledger_pending_state_of(sw->ledger, id, &st, &resolved_ts))
    return TUMA__V1__TRANSFER_STATE__TRANSFER_STATE_UNSPECIFIED;
  *completed_ms = resolved_ts / 1000000; /* ledger timestamps are nanoseconds */
  switch (st) {
  case LEDGER_PENDING_POSTED:
    return TUMA__V1__TRANSFER_STATE__TRANSFER_STATE_COMMITTED;
  case LEDGER_PENDING_VOIDED: {
    ledger_transfer v;
    *code = 5100;
    if (ledger_lookup_transfer(sw->ledger, sw_derive_id("tuma-void", id), &v) == 0 &&
        v.user_data_32)
      *code = v.user_data_32;
    return *code == SW_ERR_TRANSFER_EXPIRED ? TUMA__V1__TRANSFER_STATE__TRANSFER_STATE_EXPIRED
                                            : TUMA__V1__TRANSFER_STATE__TRANSFER_STATE_ABORTED;
  }
  case LEDGER_PENDING_EXPIRED:
    *code = SW_ERR_TRANSFER_EXPIRED;
    return TUMA__V1__TRANSFER_STATE__TRANSFER_STATE_EXPIRED;
  default:
    return TUMA__V1__TRANSFER_STATE__TRANSFER_STATE_RESERVED;
  }
}

void sw_transfer_prepare(sw_conn *c, uint64_t corr, const Tuma__V1__TransferPrepare *m) {
  sw_switch *sw = c->sw;
  sw->metrics.prepares++;
  ledger_id id = {0, 0};
  if (!proto_id16_valid(m->transfer_id)) {
    refuse(c, corr, id, SW_ERR_MISSING_ELEMENT);
    return;
  }
  id = sw_id_from_bytes(m->transfer_id.data);
  sw_peer *payer = sw_peer_by_number(sw, c->participant);
  sw_currency cur;
  if (!m->amount || !m->amount->currency || !proto_currency_valid(m->amount->currency) ||
      m->amount->amount == 0 || (!m->payee_participant && !m->payee) ||
      (m->payee_participant && !m->payee_participant[0] && !m->payee)) {
    refuse(c, corr, id, SW_ERR_MISSING_ELEMENT);
    return;
  }
  uint64_t now = sw_now_ms();
  if (!payer || (m->payer_participant && m->payer_participant[0] &&
                 strcmp(m->payer_participant, payer->p.id) != 0)) {
    sw_log(&sw->log, SW_LOG_WARN, "transfer.spoofed_payer", "conn=%llu peer=%s claimed=%.63s",
           (unsigned long long)c->id, c->identity, m->payer_participant);
    refuse(c, corr, id, SW_ERR_VALIDATION);
    return;
  }
  /* Duplicate? Same content: the current state; different: 3106. Never forwarded twice.
   * Checked before the rest of the validation: a resend after the expiration still gets the
   * transfer's state. */
  uint8_t digest[32];
  if (prepare_digest(payer->p.number, m, digest)) {
    refuse(c, corr, id, SW_ERR_INTERNAL);
    return;
  }
  sw_transfer *t = table_find(sw, id);
  if (t) {
    sw->metrics.duplicates++;
    if (t->payer != payer->p.number || memcmp(t->digest, digest, t->digest_len))
      refuse(c, corr, id, SW_ERR_MODIFIED_REQUEST);
    else
      send_result(sw, c->id, corr, id, TUMA__V1__TRANSFER_STATE__TRANSFER_STATE_RESERVED, 0, NULL,
                  1);
    return;
  }
  ledger_transfer existing;
  if (ledger_lookup_transfer(sw->ledger, id, &existing) == 0) {
    sw->metrics.duplicates++;
    uint8_t stored[16];
    sw_id_to_bytes(existing.user_data_128, stored);
    if (existing.code != SW_CODE_PAYMENT ||
        sw_account_participant(existing.debit_account_id) != payer->p.number ||
        memcmp(stored, digest, 16)) {
      refuse(c, corr, id, SW_ERR_MODIFIED_REQUEST);
      return;
    }
    unsigned code;
    uint64_t at;
    int st = ledger_state_of(sw, id, &code, &at);
    send_result_at(sw, c->id, corr, id, st, code, NULL, 1, at);
    return;
  }

  if (sw_currency_by_code(m->amount->currency, &cur) || !peer_has_currency(payer, cur.numeric) ||
      m->expiration_ms <= now || m->expiration_ms > now + sw->cfg->max_expiry_ms ||
      (m->condition.len != 0 && m->condition.len != 32) || (m->payee && !party_valid(m->payee)) ||
      (m->payer && !party_valid(m->payer)) ||
      (m->reference && strlen(m->reference) > MAX_REFERENCE)) {
    refuse(c, corr, id, SW_ERR_VALIDATION);
    return;
  }

  /* Route. */
  sw_peer *payee = NULL;
  if (m->payee_participant && m->payee_participant[0]) {
    payee = sw_peer_by_id(sw, m->payee_participant);
    if (!payee) {
      refuse(c, corr, id, SW_ERR_PAYEE_FSP_NOT_FOUND);
      return;
    }
  } else {
    sw_participant found;
    if (sw_registry_lookup_party(sw->registry, (uint32_t)m->payee->type, m->payee->id, &found,
                                 NULL) != 0 ||
        !(payee = sw_peer_by_number(sw, found.number))) {
      char masked[64];
      sw_mask(m->payee->id, masked, sizeof masked);
      sw_log(&sw->log, SW_LOG_INFO, "transfer.party_not_found", "payer=%s party=%s", payer->p.id,
             masked);
      refuse(c, corr, id, SW_ERR_PARTY_NOT_FOUND);
      return;
    }
  }
  if (payee == payer || !peer_has_currency(payee, cur.numeric)) {
    refuse(c, corr, id, SW_ERR_VALIDATION);
    return;
  }
  if (payee->p.status != SW_PARTICIPANT_ACTIVE) {
    refuse(c, corr, id, SW_ERR_PAYEE_PERMISSION);
    return;
  }
  if (!sw_peer_pick_conn(sw, payee->p.number)) {
    refuse(c, corr, id, SW_ERR_DESTINATION);
    return;
  }

  /* Reserve. */
  t = calloc(1, sizeof *t);
  if (!t || !(t->timer = evtimer_new(sw->base, expiry_cb, t))) {
    free(t);
    refuse(c, corr, id, SW_ERR_INTERNAL);
    return;
  }
  t->sw = sw;
  t->id = id;
  t->payer = payer->p.number;
  t->payee = payee->p.number;
  t->debit_liquidity = sw_account_id(t->payer, cur.numeric, SW_ACCOUNT_LIQUIDITY);
  t->debit_ndc = sw_account_id(t->payer, cur.numeric, SW_ACCOUNT_NDC);
  t->ledger_no = cur.numeric;
  memcpy(t->currency, m->amount->currency, 3);
  t->amount = m->amount->amount;
  t->expiration_ms = m->expiration_ms;
  memcpy(t->digest, digest, 32);
  t->digest_len = 32;
  if (m->condition.len == 32) {
    memcpy(t->condition, m->condition.data, 32);
    t->condition_len = 32;
  }
  t->payer_conn = c->id;
  t->payer_corr = corr;
  t->state = T_RESERVING;
  if (m->payer) {
    tuma__v1__party__init(&t->payer_party);
    t->payer_party.type = m->payer->type;
    t->payer_party_id = strdup(m->payer->id);
  }
  if (m->payee) {
    tuma__v1__party__init(&t->payee_party);
    t->payee_party.type = m->payee->type;
    t->payee_party_id = strdup(m->payee->id);
  }
  if (m->reference)
    t->reference = strdup(m->reference);
  if ((m->payer && !t->payer_party_id) || (m->payee && !t->payee_party_id) ||
      (m->reference && !t->reference) || table_insert(sw, t)) {
    transfer_free(t);
    refuse(c, corr, id, SW_ERR_INTERNAL);
    return;
  }
  ledger_event ev[2];
  reserve_events(t, now, ev);
  int rc = sw_commit_submit(sw->commit, ev, 2, reserve_done_cb, t);
  if (rc) {
    table_remove(sw, t);
    transfer_free(t);
    refuse(c, corr, id, SW_ERR_UNAVAILABLE);
    if (rc == LEDGER_E_AGAIN)
      sw_conn_block(c); /* read no more from this operator until the queue drains */
  }
}

/* ---------------------------------------------------------------- fulfil */

void sw_transfer_fulfil(sw_conn *c, uint64_t corr, const Tuma__V1__TransferFulfil *m) {
  sw_switch *sw = c->sw;
  sw->metrics.fulfils++;
  ledger_id id = {0, 0};
  if (!proto_id16_valid(m->transfer_id) ||
      (m->state != TUMA__V1__FULFIL_STATE__FULFIL_STATE_COMMITTED &&
       m->state != TUMA__V1__FULFIL_STATE__FULFIL_STATE_ABORTED)) {
    sw_conn_send_error(c, corr, SW_ERR_MISSING_ELEMENT, NULL);
    sw_conn_request_done(c);
    return;
  }
  id = sw_id_from_bytes(m->transfer_id.data);
  sw_transfer *t = table_find(sw, id);
  if (!t || t->payee != c->participant) {
    ledger_transfer lt;
    if (!t && ledger_lookup_transfer(sw->ledger, id, &lt) == 0 && lt.code == SW_CODE_PAYMENT &&
        sw_account_participant(lt.credit_account_id) == c->participant) {
      unsigned code;
      uint64_t at;
      int st = ledger_state_of(sw, id, &code, &at); /* a late or repeated fulfil: its outcome */
      send_result_at(sw, c->id, corr, id, st, code, NULL, 1, at);
      return;
    }
    sw_conn_send_error(c, corr, SW_ERR_TRANSFER_NOT_FOUND, NULL);
    sw_conn_request_done(c);
    return;
  }
  if (t->state == T_EXPIRING || (t->state == T_RESERVED && sw_now_ms() >= t->expiration_ms)) {
    send_result(sw, c->id, corr, id, TUMA__V1__TRANSFER_STATE__TRANSFER_STATE_EXPIRED,
                SW_ERR_TRANSFER_EXPIRED, NULL, 1);
    return;
  }
  if (t->state != T_RESERVED || t->fulfil_conn) { /* already being resolved */
    send_result(sw, c->id, corr, id, TUMA__V1__TRANSFER_STATE__TRANSFER_STATE_RESERVED, 0, NULL, 1);
    return;
  }
  t->fulfil_conn = c->id;
  t->fulfil_corr = corr;
  if (m->state == TUMA__V1__FULFIL_STATE__FULFIL_STATE_ABORTED) {
    unsigned code = m->reason && m->reason->code >= 5000 && m->reason->code < 6000
                        ? m->reason->code
                        : SW_ERR_PAYEE_REJECTED;
    resolve(t, 0, T_ABORTING, code);
    return;
  }
  if (t->condition_len) {
    uint8_t h[32];
    int ok = m->fulfilment.len == 32;
    if (ok) {
      SHA256(m->fulfilment.data, 32, h);
      ok = CRYPTO_memcmp(h, t->condition, t->condition_len) == 0;
    }
    if (!ok) {
      sw_log(&sw->log, SW_LOG_WARN, "transfer.bad_fulfilment", "payee=%s", c->identity);
      resolve(t, 0, T_ABORTING, SW_ERR_VALIDATION);
      return;
    }
    memcpy(t->fulfilment, m->fulfilment.data, 32);
    t->has_fulfilment = 1;
  }
  resolve(t, 1, T_COMMITTING, 0);
}

/* ---------------------------------------------------------------- query */

void sw_transfer_query(sw_conn *c, uint64_t corr, const Tuma__V1__TransferQuery *m) {
  sw_switch *sw = c->sw;
  if (!proto_id16_valid(m->transfer_id)) {
    sw_conn_send_error(c, corr, SW_ERR_MISSING_ELEMENT, NULL);
    sw_conn_request_done(c);
    return;
  }
  ledger_id id = sw_id_from_bytes(m->transfer_id.data);
  sw_transfer *t = table_find(sw, id);
  if (t && (t->payer == c->participant || t->payee == c->participant)) {
    send_result(sw, c->id, corr, id, TUMA__V1__TRANSFER_STATE__TRANSFER_STATE_RESERVED, 0, NULL, 1);
    return;
  }
  ledger_transfer lt;
  if (!t && ledger_lookup_transfer(sw->ledger, id, &lt) == 0 && lt.code == SW_CODE_PAYMENT &&
      (sw_account_participant(lt.debit_account_id) == c->participant ||
       sw_account_participant(lt.credit_account_id) == c->participant)) {
    unsigned code;
    uint64_t at;
    int st = ledger_state_of(sw, id, &code, &at);
    send_result_at(sw, c->id, corr, id, st, code, NULL, 1, at);
    return;
  }
  sw_conn_send_error(c, corr, SW_ERR_TRANSFER_NOT_FOUND, NULL);
  sw_conn_request_done(c);
}

/* ---------------------------------------------------------------- recovery */

static int recover_cb(const ledger_transfer *lt, uint64_t expires_at, void *arg) {
  (void)expires_at;
  sw_switch *sw = arg;
  if (lt->code != SW_CODE_PAYMENT || table_find(sw, lt->id))
    return 0;
  sw_transfer *t = calloc(1, sizeof *t);
  if (!t || !(t->timer = evtimer_new(sw->base, expiry_cb, t))) {
    free(t);
    return -1;
  }
  t->sw = sw;
  t->id = lt->id;
  t->payer = sw_account_participant(lt->debit_account_id);
  t->payee = sw_account_participant(lt->credit_account_id);
  t->internal = sw_account_is_escrow(lt->debit_account_id);
  t->ledger_no = lt->ledger;
  t->amount = lt->amount;
  t->expiration_ms = lt->user_data_64;
  sw_id_to_bytes(lt->user_data_128, t->digest);
  t->digest_len = 16;
  sw_currency cur;
  if (sw_currency_by_number(lt->ledger, &cur) == 0)
    memcpy(t->currency, cur.alpha, 3);
  if (lt->user_data_32 & 1) {
    ledger_transfer ndc;
    if (ledger_lookup_transfer(sw->ledger, sw_derive_id("tuma-ndc", lt->id), &ndc) == 0) {
      sw_id_to_bytes(ndc.user_data_128, t->condition);
      t->condition_len = 16;
    }
  }
  t->state = T_RESERVED;
  t->payee_knows = 1;
  if (table_insert(sw, t)) {
    transfer_free(t);
    return -1;
  }
  arm_expiry(t);
  return 0;
}

int sw_transfers_recover(sw_switch *sw) {
  size_t before = sw_transfers_in_flight(sw);
  int rc = ledger_scan_expiring(sw->ledger, recover_cb, sw);
  sw_log(&sw->log, SW_LOG_INFO, "transfers.recovered", "count=%zu rc=%d",
         sw_transfers_in_flight(sw) - before, rc);
  return rc;
}

/* ---------------------------------------------------------------- internal transfers */

int sw_transfer_watch(sw_switch *sw, ledger_id id, sw_transfer_done_cb cb, void *arg) {
  sw_transfer *t = table_find(sw, id);
  if (!t || !t->internal)
    return -1;
  t->done_cb = cb;
  t->done_arg = arg;
  return 0;
}

int sw_transfer_start_internal(sw_switch *sw, const sw_internal_transfer *it,
                               sw_transfer_done_cb cb, void *arg, unsigned *code) {
  *code = 0;
  if (sw_transfer_watch(sw, it->id, cb, arg) == 0)
    return 0;
  ledger_transfer existing;
  if (!it->unrecorded && ledger_lookup_transfer(sw->ledger, it->id, &existing) == 0) {
    uint64_t at;
    int st = ledger_state_of(sw, it->id, code, &at);
    if (st == TUMA__V1__TRANSFER_STATE__TRANSFER_STATE_RESERVED) {
      *code = SW_ERR_INTERNAL; /* reserved in the ledger but not in memory: cannot happen */
      return -1;
    }
    return st;
  }
  sw_peer *payee = sw_peer_by_number(sw, it->payee);
  sw_currency cur;
  if (!payee || sw_currency_by_number(it->ledger_no, &cur) || !peer_has_currency(payee, cur.numeric)) {
    *code = SW_ERR_PAYEE_FSP_NOT_FOUND;
    return TUMA__V1__TRANSFER_STATE__TRANSFER_STATE_ABORTED;
  }
  if (payee->p.status != SW_PARTICIPANT_ACTIVE) {
    *code = SW_ERR_PAYEE_PERMISSION;
    return TUMA__V1__TRANSFER_STATE__TRANSFER_STATE_ABORTED;
  }
  if (!sw_peer_pick_conn(sw, payee->p.number)) {
    *code = SW_ERR_DESTINATION;
    return TUMA__V1__TRANSFER_STATE__TRANSFER_STATE_ABORTED;
  }
  sw_transfer *t = calloc(1, sizeof *t);
  if (!t || !(t->timer = evtimer_new(sw->base, expiry_cb, t))) {
    free(t);
    *code = SW_ERR_INTERNAL;
    return -1;
  }
  t->sw = sw;
  t->id = it->id;
  t->payer = it->payer;
  t->payee = it->payee;
  t->debit_liquidity = it->debit_liquidity;
  t->debit_ndc = it->debit_ndc;
  t->internal = 1;
  t->done_cb = cb;
  t->done_arg = arg;
  t->ledger_no = cur.numeric;
  memcpy(t->currency, cur.alpha, 3);
  t->amount = it->amount;
  t->expiration_ms = it->expiration_ms;
  memcpy(t->digest, it->digest, 32);
  t->digest_len = 32;
  t->state = T_RESERVING;
  if (it->payee_party_id) {
    tuma__v1__party__init(&t->payee_party);
    t->payee_party.type = (Tuma__V1__PartyIdType)it->payee_party_type;
    t->payee_party_id = strdup(it->payee_party_id);
  }
  if (it->reference)
    t->reference = strdup(it->reference);
  if ((it->payee_party_id && !t->payee_party_id) || (it->reference && !t->reference) ||
      table_insert(sw, t)) {
    transfer_free(t);
    *code = SW_ERR_INTERNAL;
    return -1;
  }
  ledger_event ev[2];
  reserve_events(t, sw_now_ms(), ev);
  int rc = sw_commit_submit(sw->commit, ev, 2, reserve_done_cb, t);
  if (rc) {
    table_remove(sw, t);
    transfer_free(t);
    *code = SW_ERR_UNAVAILABLE;
    return rc == LEDGER_E_AGAIN ? -2 : -1;
  }
  return 0;
}
