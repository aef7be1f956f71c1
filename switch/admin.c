/* admin.c — the scheme operator's requests (admin.proto) and the participants of the
 * configuration file: participants and their ledger accounts, liquidity deposits and
 * withdrawals, net debit caps, positions, the party directory.
 *
 * Money movements are ordinary ledger transfers (accounts.h) through the group commit; a
 * request is answered only after its batch is durable. Ids make retries safe: account
 * creation and the initial cap are idempotent by construction, a liquidity adjustment carries
 * the caller's 16-byte id, and a cap change is computed from the ledger's current cap, so
 * setting the same cap twice moves nothing the second time. Admin requests are meant to be
 * issued one at a time.
 */
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#include "accounts.h"
#include "currency.h"
#include "daemon.h"
#include "disburse.h"
#include "errors.h"
#include "frame.h"

/* A request waiting for the ledger. */
typedef struct admin_op {
  sw_switch *sw;
  uint64_t conn, corr;
  int kind;
  sw_participant p; /* participant create / cap change */
  int cur_index;
  uint64_t new_cap;
} admin_op;

enum { OP_CREATE, OP_LIQUIDITY, OP_NDC };

void sw_admin_reply(sw_switch *sw, uint64_t conn_id, uint64_t corr, unsigned code,
                    const char *text) {
  sw_conn *c = sw_conn_find(sw, conn_id);
  if (!c)
    return;
  Tuma__V1__AdminEnvelope env = TUMA__V1__ADMIN_ENVELOPE__INIT;
  Tuma__V1__AdminResult res = TUMA__V1__ADMIN_RESULT__INIT;
  Tuma__V1__Error err = TUMA__V1__ERROR__INIT;
  if (code) {
    err.code = code;
    err.message = (char *)(text ? text : sw_error_text(code));
    res.error = &err;
  }
  env.correlation_id = corr;
  env.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_ADMIN_RESULT;
  env.admin_result = &res;
  sw_conn_send_admin(c, &env);
  sw_conn_request_done(c);
}

/* The events that give a participant its accounts in one currency and its initial (unlimited)
 * cap: 4 account events and 1 transfer, all idempotent. */
static size_t participant_events(uint32_t number, uint32_t ledger_no, ledger_event *out) {
  sw_account_events(number, ledger_no, out);
  ledger_id ctl = sw_account_id(number, ledger_no, SW_ACCOUNT_NDC_CONTROL);
  out[4] = sw_transfer_event(sw_derive_id("tuma-ndc-init", ctl), ctl,
                             sw_account_id(number, ledger_no, SW_ACCOUNT_NDC), SW_NDC_UNLIMITED,
                             ledger_no, SW_CODE_NDC_ADJUST, 0);
  return 5;
}

/* The current cap: NDC_CONTROL's debits_posted - credits_posted. */
static int current_cap(sw_switch *sw, uint32_t number, uint32_t ledger_no, uint64_t *cap) {
  ledger_account k;
  int rc = ledger_lookup_account(sw->ledger,
                                 sw_account_id(number, ledger_no, SW_ACCOUNT_NDC_CONTROL), &k);
  if (rc)
    return rc;
  *cap = k.debits_posted - k.credits_posted;
  return 0;
}

/* The transfer that moves the cap from `cap` to `want` (0 events if equal). */
static size_t cap_change_event(uint32_t number, uint32_t ledger_no, uint64_t cap, uint64_t want,
                               ledger_event *out) {
  if (cap == want)
    return 0;
  ledger_id id;
  if (RAND_bytes((unsigned char *)&id, sizeof id) != 1)
    return 0;
  ledger_id ctl = sw_account_id(number, ledger_no, SW_ACCOUNT_NDC_CONTROL);
  ledger_id ndc = sw_account_id(number, ledger_no, SW_ACCOUNT_NDC);
  if (want > cap)
    *out = sw_transfer_event(id, ctl, ndc, want - cap, ledger_no, SW_CODE_NDC_ADJUST, 0);
  else
    *out = sw_transfer_event(id, ndc, ctl, cap - want, ledger_no, SW_CODE_NDC_ADJUST, 0);
  return 1;
}

static int results_ok(const ledger_result *r, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!ledger_result_is_success(r[i]))
      return 0;
  return 1;
}

/* ---------------------------------------------------------------- start-up configuration */

/* Applies events synchronously (before the event loop and the writer thread run). */
static int apply_now(sw_switch *sw, const ledger_event *ev, size_t n, const char *what) {
  ledger_result r[64];
  if (n > 64)
    return -1;
  int rc = ledger_apply(sw->ledger, ev, r, n);
  if (rc) {
    sw_log(&sw->log, SW_LOG_ERROR, "config.ledger_failed", "what=%s error=\"%s\"", what,
           ledger_strerror(rc));
    return -1;
  }
  for (size_t i = 0; i < n; i++)
    if (!ledger_result_is_success(r[i])) {
      sw_log(&sw->log, SW_LOG_ERROR, "config.ledger_refused", "what=%s event=%zu result=%s", what,
             i, ledger_result_name(r[i]));
      return -1;
    }
  return 0;
}

/* A participant of the configuration file: registry record, accounts, cap, initial deposit.
 * The file is authoritative for what it says; the participant keeps its number. */
static int apply_participant(sw_switch *sw, const sw_config_participant *cp) {
  sw_participant p = cp->p;
  uint32_t number = 0;
  int rc = sw_registry_put_participant(sw->registry, &p, &number);
  if (rc) {
    sw_log(&sw->log, SW_LOG_ERROR, "config.participant_failed", "participant=%s error=\"%s\"", p.id,
           sw_registry_strerror(rc));
    return -1;
  }
  p.number = number;
  for (unsigned i = 0; i < p.n_currencies; i++) {
    uint32_t ledger_no = p.currencies[i];
    ledger_event ev[8];
    size_t n = participant_events(number, ledger_no, ev);
    if (apply_now(sw, ev, n, "accounts"))
      return -1;
    uint64_t cap = 0;
    if (current_cap(sw, number, ledger_no, &cap))
      return -1;
    n = cap_change_event(number, ledger_no, cap, p.net_debit_cap[i], ev);
    if (n && apply_now(sw, ev, n, "net_debit_cap"))
      return -1;
    if (cp->initial_deposit[i]) {
      ledger_id liq = sw_account_id(number, ledger_no, SW_ACCOUNT_LIQUIDITY);
      ev[0] = sw_transfer_event(sw_derive_id("tuma-initial-deposit", liq),
                                sw_account_id(0, ledger_no, SW_ACCOUNT_SETTLEMENT), liq,
                                cp->initial_deposit[i], ledger_no, SW_CODE_DEPOSIT, 0);
      ledger_result r;
      int rc2 = ledger_apply(sw->ledger, ev, &r, 1);
      if (rc2 || !ledger_result_is_success(r)) {
        if (!rc2 && r == LEDGER_EXISTS_WITH_DIFFERENT_AMOUNT) {
          /* Applied once, at the participant's first start; a later edit moves nothing. */
          sw_log(&sw->log, SW_LOG_WARN, "config.initial_deposit_ignored",
                 "participant=%s reason=\"already applied with another amount; use tuma "
                 "liquidity deposit\"",
                 p.id);
        } else {
          sw_log(&sw->log, SW_LOG_ERROR, "config.ledger_refused", "what=initial_deposit %s",
                 rc2 ? ledger_strerror(rc2) : ledger_result_name(r));
          return -1;
        }
      }
    }
  }
  return sw_peer_update(sw, &p);
}

/* A participant from the registry: its accounts are made sure of (idempotent), which also
 * completes a creation interrupted between the registry write and the ledger's commit. */
static int load_peer_cb(const sw_participant *p, void *arg) {
  sw_switch *sw = arg;
  for (unsigned i = 0; i < p->n_currencies; i++) {
    ledger_event ev[8];
    size_t n = participant_events(p->number, p->currencies[i], ev);
    if (apply_now(sw, ev, n, "accounts"))
      return -1;
  }
  return sw_peer_update(sw, p);
}

int sw_admin_apply_config(sw_switch *sw) {
  for (size_t i = 0; i < sw->cfg->n_participants; i++)
    if (apply_participant(sw, &sw->cfg->participants[i]))
      return -1;
  /* Participants created over the admin protocol earlier are in the registry too. */
  return sw_registry_list_participants(sw->registry, load_peer_cb, sw) ? -1 : 0;
}

/* ---------------------------------------------------------------- requests */

static void op_done_cb(int status, const ledger_result *r, size_t n, void *arg) {
  admin_op *op = arg;
  sw_switch *sw = op->sw;
  if (status) {
    sw_admin_reply(sw, op->conn, op->corr, SW_ERR_UNAVAILABLE, ledger_strerror(status));
  } else if (op->kind == OP_CREATE) {
    if (results_ok(r, n) && sw_peer_update(sw, &op->p) == 0) {
      sw_log(&sw->log, SW_LOG_INFO, "participant.created", "participant=%s number=%u", op->p.id,
             op->p.number);
      sw_admin_reply(sw, op->conn, op->corr, 0, NULL);
    } else {
      sw_admin_reply(sw, op->conn, op->corr, SW_ERR_INTERNAL, "ledger refused the accounts");
    }
  } else if (op->kind == OP_LIQUIDITY) {
    if (r[0] == LEDGER_OK || r[0] == LEDGER_EXISTS)
      sw_admin_reply(sw, op->conn, op->corr, 0, NULL);
    else if (r[0] == LEDGER_EXCEEDS_CREDITS || r[0] == LEDGER_ID_ALREADY_FAILED)
      sw_admin_reply(sw, op->conn, op->corr, SW_ERR_PAYER_LIQUIDITY,
                  "withdrawal exceeds the available liquidity");
    else if (r[0] >= LEDGER_EXISTS_WITH_DIFFERENT_FLAGS && r[0] < LEDGER_EXISTS)
      sw_admin_reply(sw, op->conn, op->corr, SW_ERR_MODIFIED_REQUEST,
                  "adjustment id already used for a different adjustment");
    else
      sw_admin_reply(sw, op->conn, op->corr, SW_ERR_INTERNAL, ledger_result_name(r[0]));
  } else { /* OP_NDC */
    if (r[0] == LEDGER_OK) {
      op->p.net_debit_cap[op->cur_index] = op->new_cap;
      uint32_t number;
      sw_registry_put_participant(sw->registry, &op->p, &number);
      sw_peer_update(sw, &op->p);
      sw_admin_reply(sw, op->conn, op->corr, 0, NULL);
    } else if (r[0] == LEDGER_EXCEEDS_CREDITS) {
      sw_admin_reply(sw, op->conn, op->corr, SW_ERR_PAYER_LIMIT,
                  "the participant's net position is above the new cap");
    } else {
      sw_admin_reply(sw, op->conn, op->corr, SW_ERR_INTERNAL, ledger_result_name(r[0]));
    }
  }
  free(op);
}

static void submit_op(sw_conn *c, uint64_t corr, admin_op *op, const ledger_event *ev, size_t n) {
  op->sw = c->sw;
  op->conn = c->id;
  op->corr = corr;
  if (n == 0) {
    sw_admin_reply(c->sw, c->id, corr, 0, NULL);
    free(op);
    return;
  }
  int rc = sw_commit_submit(c->sw->commit, ev, n, op_done_cb, op);
  if (rc) {
    sw_admin_reply(c->sw, c->id, corr, SW_ERR_UNAVAILABLE, ledger_strerror(rc));
    free(op);
  }
}

static void participant_create(sw_conn *c, uint64_t corr, const Tuma__V1__ParticipantCreate *m) {
  sw_switch *sw = c->sw;
  admin_op *op = calloc(1, sizeof *op);
  if (!op) {
    sw_admin_reply(sw, c->id, corr, SW_ERR_INTERNAL, "out of memory");
    return;
  }
  sw_participant *p = &op->p;
  sw_participant_init(p);
  if (!m->participant_id || strlen(m->participant_id) >= sizeof p->id || m->n_currencies == 0 ||
      m->n_currencies > SW_PARTICIPANT_MAX_CURRENCIES) {
    free(op);
    sw_admin_reply(sw, c->id, corr, SW_ERR_VALIDATION, "participant id and 1-8 currencies required");
    return;
  }
  if (sw_registry_get_participant(sw->registry, m->participant_id, p) == 0) {
    free(op);
    sw_admin_reply(sw, c->id, corr, SW_ERR_VALIDATION, "participant exists");
    return;
  }
  sw_participant_init(p);
  snprintf(p->id, sizeof p->id, "%s", m->participant_id);
  snprintf(p->name, sizeof p->name, "%s", m->name && m->name[0] ? m->name : m->participant_id);
  p->status = SW_PARTICIPANT_ACTIVE;
  for (size_t i = 0; i < m->n_currencies; i++) {
    sw_currency cur;
    if (!m->currencies[i] || sw_currency_by_code(m->currencies[i], &cur)) {
      free(op);
      sw_admin_reply(sw, c->id, corr, SW_ERR_VALIDATION, "unknown currency");
      return;
    }
    p->currencies[p->n_currencies] = cur.numeric;
    p->net_debit_cap[p->n_currencies] = SW_NDC_UNLIMITED;
    p->n_currencies++;
  }
  uint32_t number = 0;
  int rc = sw_participant_validate(p);
  if (!rc)
    rc = sw_registry_put_participant(sw->registry, p, &number);
  if (rc) {
    free(op);
    sw_admin_reply(sw, c->id, corr, rc == SW_REGISTRY_E_INVAL ? SW_ERR_VALIDATION : SW_ERR_INTERNAL,
                sw_registry_strerror(rc));
    return;
  }
  p->number = number;
  ledger_event ev[5 * SW_PARTICIPANT_MAX_CURRENCIES];
  size_t n = 0;
  for (unsigned i = 0; i < p->n_currencies; i++)
    n += participant_events(number, p->currencies[i], ev + n);
  op->kind = OP_CREATE;
  submit_op(c, corr, op, ev, n);
}

static void participant_set_status(sw_conn *c, uint64_t corr,
                                   const Tuma__V1__ParticipantSetStatus *m) {
  sw_switch *sw = c->sw;
  sw_participant p;
  if (!m->participant_id || sw_registry_get_participant(sw->registry, m->participant_id, &p)) {
    sw_admin_reply(sw, c->id, corr, SW_ERR_PAYEE_FSP_NOT_FOUND, "no such participant");
    return;
  }
  if (m->status != TUMA__V1__PARTICIPANT_STATUS__PARTICIPANT_STATUS_ACTIVE &&
      m->status != TUMA__V1__PARTICIPANT_STATUS__PARTICIPANT_STATUS_SUSPENDED) {
    sw_admin_reply(sw, c->id, corr, SW_ERR_VALIDATION, "status must be ACTIVE or SUSPENDED");
    return;
  }
  p.status = m->status == TUMA__V1__PARTICIPANT_STATUS__PARTICIPANT_STATUS_ACTIVE
                 ? SW_PARTICIPANT_ACTIVE
                 : SW_PARTICIPANT_SUSPENDED;
  uint32_t number;
  int rc = sw_registry_put_participant(sw->registry, &p, &number);
  if (rc || sw_peer_update(sw, &p)) {
    sw_admin_reply(sw, c->id, corr, SW_ERR_INTERNAL, sw_registry_strerror(rc));
    return;
  }
  sw_log(&sw->log, SW_LOG_INFO, "participant.status", "participant=%s status=%s", p.id,
         p.status == SW_PARTICIPANT_ACTIVE ? "active" : "suspended");
  sw_admin_reply(sw, c->id, corr, 0, NULL);
}

static void participant_list(sw_conn *c, uint64_t corr) {
  sw_switch *sw = c->sw;
  Tuma__V1__AdminEnvelope env = TUMA__V1__ADMIN_ENVELOPE__INIT;
  Tuma__V1__ParticipantListResult res = TUMA__V1__PARTICIPANT_LIST_RESULT__INIT;
  size_t cap = sw->n_peers;
  Tuma__V1__Participant *items = calloc(cap ? cap : 1, sizeof *items);
  Tuma__V1__Participant **ptrs = calloc(cap ? cap : 1, sizeof *ptrs);
  char(*codes)[SW_PARTICIPANT_MAX_CURRENCIES][4] = calloc(cap ? cap : 1, sizeof *codes);
  char *(*lists)[SW_PARTICIPANT_MAX_CURRENCIES] = calloc(cap ? cap : 1, sizeof *lists);
  if (!items || !ptrs || !codes || !lists) {
    sw_admin_reply(sw, c->id, corr, SW_ERR_INTERNAL, "out of memory");
    goto out;
  }
  size_t n = 0;
  for (uint32_t i = 1; i < sw->n_peers; i++) {
    sw_peer *peer = &sw->peers[i];
    if (!peer->known)
      continue;
    Tuma__V1__Participant *it = &items[n];
    tuma__v1__participant__init(it);
    it->participant_id = peer->p.id;
    it->name = peer->p.name;
    it->status = peer->p.status == SW_PARTICIPANT_ACTIVE
                     ? TUMA__V1__PARTICIPANT_STATUS__PARTICIPANT_STATUS_ACTIVE
                     : TUMA__V1__PARTICIPANT_STATUS__PARTICIPANT_STATUS_SUSPENDED;
    it->connected = peer->n_conns > 0;
    for (unsigned k = 0; k < peer->p.n_currencies; k++) {
      sw_currency cur;
      if (sw_currency_by_number(peer->p.currencies[k], &cur) == 0)
        memcpy(codes[n][k], cur.alpha, 4);
      lists[n][k] = codes[n][k];
    }
    it->n_currencies = peer->p.n_currencies;
    it->currencies = lists[n];
    ptrs[n] = it;
    n++;
  }
  res.n_participants = n;
  res.participants = ptrs;
  env.correlation_id = corr;
  env.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_PARTICIPANT_LIST_RESULT;
  env.participant_list_result = &res;
  sw_conn_send_admin(c, &env);
  sw_conn_request_done(c);
out:
  free(items);
  free(ptrs);
  free(codes);
  free(lists);
}

/* Finds participant and currency for a money request; replies and returns -1 if invalid. */
static int resolve_money(sw_conn *c, uint64_t corr, const char *participant_id,
                         const Tuma__V1__Money *money, sw_peer **peer, sw_currency *cur,
                         int *index) {
  sw_switch *sw = c->sw;
  *peer = participant_id ? sw_peer_by_id(sw, participant_id) : NULL;
  if (!*peer) {
    sw_admin_reply(sw, c->id, corr, SW_ERR_PAYEE_FSP_NOT_FOUND, "no such participant");
    return -1;
  }
  if (!money || !money->currency || sw_currency_by_code(money->currency, cur) ||
      (*index = sw_participant_currency_index(&(*peer)->p, cur->numeric)) < 0) {
    sw_admin_reply(sw, c->id, corr, SW_ERR_VALIDATION, "currency not held by the participant");
    return -1;
  }
  return 0;
}

static void liquidity_adjust(sw_conn *c, uint64_t corr, const Tuma__V1__LiquidityAdjust *m) {
  sw_peer *peer;
  sw_currency cur;
  int index;
  if (resolve_money(c, corr, m->participant_id, m->amount, &peer, &cur, &index))
    return;
  if (!proto_id16_valid(m->adjustment_id) || m->amount->amount == 0 ||
      (m->direction != TUMA__V1__LIQUIDITY_DIRECTION__LIQUIDITY_DIRECTION_DEPOSIT &&
       m->direction != TUMA__V1__LIQUIDITY_DIRECTION__LIQUIDITY_DIRECTION_WITHDRAW)) {
    sw_admin_reply(c->sw, c->id, corr, SW_ERR_VALIDATION,
                "16-byte adjustment id, non-zero amount and a direction required");
    return;
  }
  admin_op *op = calloc(1, sizeof *op);
  if (!op) {
    sw_admin_reply(c->sw, c->id, corr, SW_ERR_INTERNAL, "out of memory");
    return;
  }
  op->kind = OP_LIQUIDITY;
  ledger_id liq = sw_account_id(peer->p.number, cur.numeric, SW_ACCOUNT_LIQUIDITY);
  ledger_id settlement = sw_account_id(0, cur.numeric, SW_ACCOUNT_SETTLEMENT);
  int deposit = m->direction == TUMA__V1__LIQUIDITY_DIRECTION__LIQUIDITY_DIRECTION_DEPOSIT;
  ledger_event ev =
      sw_transfer_event(sw_derive_id("tuma-adj", sw_id_from_bytes(m->adjustment_id.data)),
                        deposit ? settlement : liq, deposit ? liq : settlement, m->amount->amount,
                        cur.numeric, deposit ? SW_CODE_DEPOSIT : SW_CODE_WITHDRAW, 0);
  sw_log(&c->sw->log, SW_LOG_INFO, "liquidity.adjust",
         "participant=%s currency=%s amount=%llu dir=%s", peer->p.id, cur.alpha,
         (unsigned long long)m->amount->amount, deposit ? "deposit" : "withdraw");
  submit_op(c, corr, op, &ev, 1);
}

static void ndc_set(sw_conn *c, uint64_t corr, const Tuma__V1__NetDebitCapSet *m) {
  sw_peer *peer;
  sw_currency cur;
  int index;
  if (resolve_money(c, corr, m->participant_id, m->cap, &peer, &cur, &index))
    return;
  if (m->cap->amount > SW_NDC_UNLIMITED) {
    sw_admin_reply(c->sw, c->id, corr, SW_ERR_VALIDATION, "cap too large");
    return;
  }
  uint64_t cap;
  if (current_cap(c->sw, peer->p.number, cur.numeric, &cap)) {
    sw_admin_reply(c->sw, c->id, corr, SW_ERR_INTERNAL, "cap account missing");
    return;
  }
  admin_op *op = calloc(1, sizeof *op);
  if (!op) {
    sw_admin_reply(c->sw, c->id, corr, SW_ERR_INTERNAL, "out of memory");
    return;
  }
  op->kind = OP_NDC;
  op->p = peer->p;
  op->cur_index = index;
  op->new_cap = m->cap->amount;
  ledger_event ev;
  size_t n = cap_change_event(peer->p.number, cur.numeric, cap, m->cap->amount, &ev);
  submit_op(c, corr, op, &ev, n);
}

static void positions(sw_conn *c, uint64_t corr, const Tuma__V1__PositionsQuery *m) {
  sw_switch *sw = c->sw;
  size_t cap = (size_t)sw->n_peers * SW_PARTICIPANT_MAX_CURRENCIES + 1;
  Tuma__V1__Position *items = calloc(cap, sizeof *items);
  Tuma__V1__Position **ptrs = calloc(cap, sizeof *ptrs);
  char(*codes)[4] = calloc(cap, sizeof *codes);
  if (!items || !ptrs || !codes) {
    sw_admin_reply(sw, c->id, corr, SW_ERR_INTERNAL, "out of memory");
    goto out;
  }
  size_t n = 0;
  for (uint32_t i = 1; i < sw->n_peers; i++) {
    sw_peer *peer = &sw->peers[i];
    if (!peer->known ||
        (m->participant_id && m->participant_id[0] && strcmp(m->participant_id, peer->p.id) != 0))
      continue;
    for (unsigned k = 0; k < peer->p.n_currencies; k++) {
      uint32_t ledger_no = peer->p.currencies[k];
      ledger_account liq, ndc, ctl;
      if (ledger_lookup_account(sw->ledger, sw_account_id(i, ledger_no, SW_ACCOUNT_LIQUIDITY),
                                &liq) ||
          ledger_lookup_account(sw->ledger, sw_account_id(i, ledger_no, SW_ACCOUNT_NDC), &ndc) ||
          ledger_lookup_account(sw->ledger, sw_account_id(i, ledger_no, SW_ACCOUNT_NDC_CONTROL),
                                &ctl))
        continue;
      Tuma__V1__Position *it = &items[n];
      tuma__v1__position__init(it);
      sw_currency cur;
      if (sw_currency_by_number(ledger_no, &cur) == 0)
        memcpy(codes[n], cur.alpha, 4);
      it->participant_id = peer->p.id;
      it->currency = codes[n];
      uint64_t capv = ctl.debits_posted - ctl.credits_posted;
      it->liquidity = liq.credits_posted - liq.debits_posted;
      it->reserved = liq.debits_pending;
      it->available = it->liquidity - it->reserved;
      it->net_debit_cap = capv;
      /* N: credits = cap + received, debits = sent; net = sent - received */
      it->net_position = (int64_t)(ndc.debits_posted - (ndc.credits_posted - capv));
      ptrs[n] = it;
      n++;
    }
  }
  Tuma__V1__AdminEnvelope env = TUMA__V1__ADMIN_ENVELOPE__INIT;
  Tuma__V1__PositionsResult res = TUMA__V1__POSITIONS_RESULT__INIT;
  res.n_positions = n;
  res.positions = ptrs;
  env.correlation_id = corr;
  env.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_POSITIONS_RESULT;
  env.positions_result = &res;
  sw_conn_send_admin(c, &env);
  sw_conn_request_done(c);
out:
  free(items);
  free(ptrs);
  free(codes);
}

static void party_upsert(sw_conn *c, uint64_t corr, const Tuma__V1__PartyDirectoryUpsert *m) {
  if (!m->party || !m->party->id || !m->participant_id) {
    sw_admin_reply(c->sw, c->id, corr, SW_ERR_MISSING_ELEMENT, "party and participant required");
    return;
  }
  int rc = sw_registry_put_party(c->sw->registry, (uint32_t)m->party->type, m->party->id,
                                 m->participant_id);
  sw_admin_reply(c->sw, c->id, corr, rc ? SW_ERR_VALIDATION : 0, rc ? sw_registry_strerror(rc) : NULL);
}

static void party_remove(sw_conn *c, uint64_t corr, const Tuma__V1__PartyDirectoryRemove *m) {
  if (!m->party || !m->party->id) {
    sw_admin_reply(c->sw, c->id, corr, SW_ERR_MISSING_ELEMENT, "party required");
    return;
  }
  int rc = sw_registry_remove_party(c->sw->registry, (uint32_t)m->party->type, m->party->id);
  sw_admin_reply(c->sw, c->id, corr,
              rc == SW_REGISTRY_E_NOTFOUND ? SW_ERR_PARTY_NOT_FOUND
              : rc                         ? SW_ERR_VALIDATION
                                           : 0,
              rc ? sw_registry_strerror(rc) : NULL);
}

void sw_admin_dispatch(sw_conn *c, Tuma__V1__AdminEnvelope *env) {
  uint64_t corr = env->correlation_id;
  if (sw_disburse_dispatch(c, env) == 0)
    return;
  if (strcmp(c->role, "admin") != 0) { /* programme managers and approvers: disbursements only */
    sw_log(&c->sw->log, SW_LOG_WARN, "admin.forbidden", "peer=%s role=%s body=%d", c->identity,
           c->role, (int)env->body_case);
    sw_admin_reply(c->sw, c->id, corr, SW_ERR_VALIDATION, "this request needs the admin role");
    return;
  }
  switch (env->body_case) {
  case TUMA__V1__ADMIN_ENVELOPE__BODY_PARTICIPANT_CREATE:
    participant_create(c, corr, env->participant_create);
    break;
  case TUMA__V1__ADMIN_ENVELOPE__BODY_PARTICIPANT_SET_STATUS:
    participant_set_status(c, corr, env->participant_set_status);
    break;
  case TUMA__V1__ADMIN_ENVELOPE__BODY_PARTICIPANT_LIST:
    participant_list(c, corr);
    break;
  case TUMA__V1__ADMIN_ENVELOPE__BODY_LIQUIDITY_ADJUST:
    liquidity_adjust(c, corr, env->liquidity_adjust);
    break;
  case TUMA__V1__ADMIN_ENVELOPE__BODY_NET_DEBIT_CAP_SET:
    ndc_set(c, corr, env->net_debit_cap_set);
    break;
  case TUMA__V1__ADMIN_ENVELOPE__BODY_POSITIONS_QUERY:
    positions(c, corr, env->positions_query);
    break;
  case TUMA__V1__ADMIN_ENVELOPE__BODY_PARTY_DIRECTORY_UPSERT:
    party_upsert(c, corr, env->party_directory_upsert);
    break;
  case TUMA__V1__ADMIN_ENVELOPE__BODY_PARTY_DIRECTORY_REMOVE:
    party_remove(c, corr, env->party_directory_remove);
    break;
  default:
    sw_admin_reply(c->sw, c->id, corr, SW_ERR_VALIDATION, "not an admin request");
    break;
  }
}
