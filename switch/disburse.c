/* disburse.c — the disbursement requests of the admin protocol (disburse.proto): programmes,
 * the beneficiary registry, batch upload and validation, approval and cancel (handed to
 * payout.c), status, the reconciliation report and the reach breakdown.
 *
 * Uploads: a CSV arrives in chunks on one connection. Each chunk is parsed as it arrives
 * (batch_file.h) and its rows are validated and written to the store in one transaction, so a
 * million-row list never sits in memory and the event loop is never held for more than a
 * chunk. A batch being uploaded is VALIDATING; when the connection goes away before the last
 * chunk, or the switch restarts, it is discarded. Rows are validated against the programme (cap,
 * currency), the beneficiary registry and the party directory (wallet), the file itself and the
 * other batches of the same programme and cycle (the cycle index).
 */
#include "disburse.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "accounts.h"
#include "batch_file.h"
#include "currency.h"
#include "errors.h"
#include "frame.h"

#define TOKEN_LABEL "tuma-beneficiary"
#define MAX_LISTED_ERRORS 1000
#define MAX_FILE_BYTES (2ull << 30)
#define MAX_CYCLES 1000
#define MAX_RATE 100000
#define REPORT_PAGE_MAX 10000
#define REPORT_PAGE_DEFAULT 2000

/* Roles (the certificate's OU) and what each may do. */
enum { ROLE_ADMIN = 1, ROLE_MANAGER = 2, ROLE_APPROVER = 4, ROLE_ANY = 7 };

/* The beneficiaries of the valid rows of a file so far, to find duplicates within the file
 * without writing to the store: open addressing on the first 16 bytes of the token (an HMAC:
 * uniformly random; a false duplicate needs a 2^-128 collision). */
typedef struct token_slot {
  uint8_t tok[16];
  uint64_t line; /* 0 = empty */
} token_slot;

typedef struct token_set {
  token_slot *slots;
  size_t cap, n;
} token_set;

static size_t token_hash(const uint8_t *tok, size_t cap) {
  uint64_t h;
  memcpy(&h, tok, sizeof h);
  return (size_t)(h & (cap - 1));
}

/* The line of tok's first valid row, or 0. */
static uint64_t token_find(const token_set *ts, const uint8_t tok[32]) {
  if (!ts->cap)
    return 0;
  for (size_t i = token_hash(tok, ts->cap);; i = (i + 1) & (ts->cap - 1)) {
    if (!ts->slots[i].line)
      return 0;
    if (memcmp(ts->slots[i].tok, tok, 16) == 0)
      return ts->slots[i].line;
  }
}

/* Adds tok (not present) with its line. 0, or -1 out of memory. Amortised O(1). */
static int token_add(token_set *ts, const uint8_t tok[32], uint64_t line) {
  if ((ts->n + 1) * 2 > ts->cap) {
    size_t cap = ts->cap ? ts->cap * 2 : 4096;
    token_slot *ns = calloc(cap, sizeof *ns);
    if (!ns)
      return -1;
    for (size_t k = 0; k < ts->cap; k++)
      if (ts->slots[k].line) {
        size_t i = token_hash(ts->slots[k].tok, cap);
        while (ns[i].line)
          i = (i + 1) & (cap - 1);
        ns[i] = ts->slots[k];
      }
    free(ts->slots);
    ts->slots = ns;
    ts->cap = cap;
  }
  size_t i = token_hash(tok, ts->cap);
  while (ts->slots[i].line)
    i = (i + 1) & (ts->cap - 1);
  memcpy(ts->slots[i].tok, tok, 16);
  ts->slots[i].line = line;
  ts->n++;
  return 0;
}

typedef struct sw_upload {
  struct sw_upload *next;
  sw_disburse *d;
  uint64_t conn;
  int kind; /* SW_BATCH_FILE_LIST / _REGISTER */
  sw_batch_file *reader;
  EVP_MD_CTX *sha;
  uint8_t want_sha[32];
  uint64_t want_size, got_size;
  sw_programme prog;
  sw_currency cur;
  sw_batch batch;          /* LIST: the batch being built */
  uint64_t existing_batch; /* LIST: the same file was submitted before: this batch */
  sw_dstore_txn *txn;      /* during one chunk */
  token_set seen;          /* LIST: beneficiaries of the valid rows */
  uint64_t n_valid, total, n_invalid;
  uint64_t listed_line[MAX_LISTED_ERRORS];
  char *listed_reason[MAX_LISTED_ERRORS];
  size_t n_listed;
  int failed;       /* the file cannot be accepted: fail_text says why */
  unsigned fail_code;
  char fail_text[160];
  int store_failed; /* a store write failed: the upload is aborted */
} sw_upload;

/* ---------------------------------------------------------------- replies */

static void reply_env(sw_conn *c, Tuma__V1__AdminEnvelope *env) {
  sw_conn_send_admin(c, env);
  sw_conn_request_done(c);
}

static int role_of(const sw_conn *c) {
  if (strcmp(c->role, "admin") == 0)
    return ROLE_ADMIN;
  if (strcmp(c->role, "programme-manager") == 0)
    return ROLE_MANAGER;
  if (strcmp(c->role, "approver") == 0)
    return ROLE_APPROVER;
  return 0;
}

/* 0 if c's role is one of `allowed`; else replies 3100 and returns -1. */
static int require_role(sw_conn *c, uint64_t corr, int allowed, const char *action) {
  if (role_of(c) & allowed)
    return 0;
  char text[160];
  snprintf(text, sizeof text, "role %s may not %s", c->role[0] ? c->role : "-", action);
  sw_log(&c->sw->log, SW_LOG_WARN, "disburse.forbidden", "peer=%s role=%s action=\"%s\"",
         c->identity, c->role, action);
  sw_admin_reply(c->sw, c->id, corr, SW_ERR_VALIDATION, text);
  return -1;
}

static int id_valid(const char *s) {
  size_t n = s ? strlen(s) : 0;
  if (n == 0 || n > 63)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
      return 0;
  return 1;
}

static int text_valid(const char *s, size_t max) {
  size_t n = s ? strlen(s) : 0;
  if (n == 0 || n > max)
    return 0;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
      return 0;
  return 1;
}

static int msisdn_valid(const char *s) {
  size_t n = s ? strlen(s) : 0;
  if (n == 0 || n > SW_MSISDN_MAX)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (s[i] < '0' || s[i] > '9')
      return 0;
  return 1;
}

static int store_read(sw_disburse *d, sw_dstore_txn **t) {
  return sw_dstore_begin(d->store, 1, t);
}

/* Loads programme `id` for a request; replies 3200 and returns -1 when there is none. */
static int load_programme(sw_conn *c, uint64_t corr, const char *id, sw_programme *p) {
  sw_disburse *d = c->sw->disburse;
  sw_dstore_txn *t;
  int rc = store_read(d, &t);
  if (!rc) {
    rc = sw_dstore_programme_find(t, id ? id : "", p);
    sw_dstore_abort(t);
  }
  if (rc) {
    sw_admin_reply(c->sw, c->id, corr, rc == SW_DSTORE_E_NOTFOUND ? SW_ERR_ID_NOT_FOUND : SW_ERR_INTERNAL,
                      rc == SW_DSTORE_E_NOTFOUND ? "programme not found" : sw_dstore_strerror(rc));
    return -1;
  }
  return 0;
}

static int load_batch(sw_conn *c, uint64_t corr, uint64_t number, sw_batch *b) {
  sw_disburse *d = c->sw->disburse;
  sw_dstore_txn *t;
  int rc = store_read(d, &t);
  if (!rc) {
    rc = sw_dstore_batch_get(t, number, b);
    sw_dstore_abort(t);
  }
  if (!rc && b->state == SW_BATCH_VALIDATING)
    rc = SW_DSTORE_E_NOTFOUND;
  if (rc) {
    sw_admin_reply(c->sw, c->id, corr, rc == SW_DSTORE_E_NOTFOUND ? SW_ERR_ID_NOT_FOUND : SW_ERR_INTERNAL,
                      rc == SW_DSTORE_E_NOTFOUND ? "batch not found" : sw_dstore_strerror(rc));
    return -1;
  }
  return 0;
}

/* ---------------------------------------------------------------- programmes */

typedef struct prog_op {
  sw_disburse *d;
  uint64_t conn, corr;
  sw_programme p;
} prog_op;

static void programme_created_cb(int status, const ledger_result *r, size_t n, void *arg) {
  prog_op *op = arg;
  sw_switch *sw = op->d->sw;
  int ok = status == 0;
  for (size_t i = 0; ok && i < n; i++)
    ok = r[i] == LEDGER_OK || r[i] == LEDGER_EXISTS;
  if (!ok) {
    sw_log(&sw->log, SW_LOG_ERROR, "programme.accounts_failed", "programme=%s status=%s",
           op->p.id, status ? ledger_strerror(status) : ledger_result_name(r[0]));
    sw_admin_reply(sw, op->conn, op->corr, SW_ERR_INTERNAL, "ledger refused the accounts");
    free(op);
    return;
  }
  sw_dstore_txn *t;
  int rc = sw_dstore_begin(op->d->store, 0, &t);
  if (!rc) {
    rc = sw_dstore_programme_put(t, &op->p);
    rc = rc ? (sw_dstore_abort(t), rc) : sw_dstore_commit(t);
  }
  if (rc) {
    sw_admin_reply(sw, op->conn, op->corr, SW_ERR_INTERNAL, sw_dstore_strerror(rc));
  } else {
    sw_log(&sw->log, SW_LOG_INFO, "programme.created", "programme=%s funding=%s currency=%u",
           op->p.id, op->p.funding_id, op->p.currency);
    sw_admin_reply(sw, op->conn, op->corr, 0, NULL);
  }
  free(op);
}

static void programme_create(sw_conn *c, uint64_t corr, const Tuma__V1__ProgrammeCreate *m) {
  sw_switch *sw = c->sw;
  sw_disburse *d = sw->disburse;
  if (require_role(c, corr, ROLE_ADMIN | ROLE_MANAGER, "create programmes"))
    return;
  sw_currency cur;
  sw_peer *funder = m->funding_participant ? sw_peer_by_id(sw, m->funding_participant) : NULL;
  if (!id_valid(m->programme_id) || !text_valid(m->name, 127)) {
    sw_admin_reply(sw, c->id, corr, SW_ERR_VALIDATION,
                      "programme id [a-z0-9-]{1,63} and a name of 1-127 bytes required");
    return;
  }
  if (!m->currency || sw_currency_by_code(m->currency, &cur)) {
    sw_admin_reply(sw, c->id, corr, SW_ERR_VALIDATION, "unknown currency");
    return;
  }
  if (!funder || sw_participant_currency_index(&funder->p, cur.numeric) < 0) {
    sw_admin_reply(sw, c->id, corr, SW_ERR_PAYEE_FSP_NOT_FOUND,
                      "funding participant unknown or without that currency");
    return;
  }
  sw_programme existing;
  sw_dstore_txn *t;
  int rc = sw_dstore_begin(d->store, 0, &t);
  if (rc) {
    sw_admin_reply(sw, c->id, corr, SW_ERR_INTERNAL, sw_dstore_strerror(rc));
    return;
  }
  if (sw_dstore_programme_find(t, m->programme_id, &existing) == 0) {
    sw_dstore_abort(t);
    int same = existing.currency == cur.numeric && existing.funding == funder->p.number &&
               existing.cap == m->beneficiary_cap && existing.end_ms == m->end_ms &&
               strcmp(existing.name, m->name) == 0;
    sw_admin_reply(sw, c->id, corr, same ? 0 : SW_ERR_MODIFIED_REQUEST,
                      same ? NULL : "a programme with this id exists with other settings");
    return;
  }
  prog_op *op = calloc(1, sizeof *op);
  uint64_t number = 0;
  rc = op ? sw_dstore_next(t, "programme", &number) : SW_DSTORE_E_NOMEM;
  rc = rc ? (sw_dstore_abort(t), rc) : sw_dstore_commit(t);
  if (rc || number > 0x7ffffff /* 27 bits in item ids (payout.c) */) {
    free(op);
    sw_admin_reply(sw, c->id, corr, SW_ERR_INTERNAL, sw_dstore_strerror(rc));
    return;
  }
  op->d = d;
  op->conn = c->id;
  op->corr = corr;
  sw_programme *p = &op->p;
  p->number = (uint32_t)number;
  p->funding = funder->p.number;
  p->currency = cur.numeric;
  p->exponent = cur.exponent;
  snprintf(p->id, sizeof p->id, "%s", m->programme_id);
  snprintf(p->name, sizeof p->name, "%s", m->name);
  snprintf(p->funding_id, sizeof p->funding_id, "%s", funder->p.id);
  p->cap = m->beneficiary_cap;
  p->end_ms = m->end_ms;
  p->created_ms = sw_now_ms();
  ledger_event ev[3];
  ev[0] = sw_account_event(
      sw_programme_account_id(p->funding, p->number, cur.numeric, SW_ACCOUNT_FUNDING), cur.numeric,
      SW_ACCOUNT_FUNDING, LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS);
  ev[1] = sw_account_event(
      sw_programme_account_id(p->funding, p->number, cur.numeric, SW_ACCOUNT_PROGRAMME_NDC),
      cur.numeric, SW_ACCOUNT_PROGRAMME_NDC, 0);
  ev[2] = sw_account_event(sw_account_id(0, cur.numeric, SW_ACCOUNT_SETTLEMENT), cur.numeric,
                           SW_ACCOUNT_SETTLEMENT, 0);
  rc = sw_commit_submit(sw->commit, ev, 3, programme_created_cb, op);
  if (rc) {
    free(op);
    sw_admin_reply(sw, c->id, corr, SW_ERR_UNAVAILABLE, ledger_strerror(rc));
  }
}

typedef struct fund_op {
  sw_switch *sw;
  uint64_t conn, corr;
  int withdraw;
} fund_op;

static void programme_funded_cb(int status, const ledger_result *r, size_t n, void *arg) {
  (void)n;
  fund_op *op = arg;
  if (status)
    sw_admin_reply(op->sw, op->conn, op->corr, SW_ERR_UNAVAILABLE, ledger_strerror(status));
  else if (r[0] == LEDGER_OK || r[0] == LEDGER_EXISTS)
    sw_admin_reply(op->sw, op->conn, op->corr, 0, NULL);
  else if (r[0] == LEDGER_EXCEEDS_CREDITS)
    sw_admin_reply(op->sw, op->conn, op->corr, SW_ERR_PAYER_LIQUIDITY,
                      "the programme's available budget is smaller");
  else if (r[0] >= LEDGER_EXISTS_WITH_DIFFERENT_FLAGS && r[0] <= LEDGER_EXISTS)
    sw_admin_reply(op->sw, op->conn, op->corr, SW_ERR_MODIFIED_REQUEST,
                      "this fund id was used with other values");
  else
    sw_admin_reply(op->sw, op->conn, op->corr, SW_ERR_INTERNAL, ledger_result_name(r[0]));
  free(op);
}

static void programme_fund(sw_conn *c, uint64_t corr, const Tuma__V1__ProgrammeFund *m) {
  sw_switch *sw = c->sw;
  if (require_role(c, corr, ROLE_ADMIN, "fund programmes"))
    return;
  sw_programme p;
  if (load_programme(c, corr, m->programme_id, &p))
    return;
  if (!proto_id16_valid(m->fund_id) || m->amount == 0) {
    sw_admin_reply(sw, c->id, corr, SW_ERR_VALIDATION, "a 16-byte fund id and an amount required");
    return;
  }
  fund_op *op = calloc(1, sizeof *op);
  if (!op) {
    sw_admin_reply(sw, c->id, corr, SW_ERR_INTERNAL, "out of memory");
    return;
  }
  *op = (fund_op){sw, c->id, corr, m->withdraw};
  ledger_id funding = sw_programme_account_id(p.funding, p.number, p.currency, SW_ACCOUNT_FUNDING);
  ledger_id settlement = sw_account_id(0, p.currency, SW_ACCOUNT_SETTLEMENT);
  ledger_event ev = sw_transfer_event(
      sw_derive_id("tuma-programme-fund", sw_id_from_bytes(m->fund_id.data)),
      m->withdraw ? funding : settlement, m->withdraw ? settlement : funding, m->amount, p.currency,
      m->withdraw ? SW_CODE_PROGRAMME_DEFUND : SW_CODE_PROGRAMME_FUND, 0);
  ev.transfer.user_data_32 = p.number;
  sw_log(&sw->log, SW_LOG_INFO, "programme.fund", "programme=%s amount=%llu dir=%s", p.id,
         (unsigned long long)m->amount, m->withdraw ? "withdraw" : "deposit");
  int rc = sw_commit_submit(sw->commit, &ev, 1, programme_funded_cb, op);
  if (rc) {
    free(op);
    sw_admin_reply(sw, c->id, corr, SW_ERR_UNAVAILABLE, ledger_strerror(rc));
  }
}

static void programme_query(sw_conn *c, uint64_t corr, const Tuma__V1__ProgrammeQuery *m) {
  sw_switch *sw = c->sw;
  if (require_role(c, corr, ROLE_ANY, "read programmes"))
    return;
  sw_programme p;
  if (load_programme(c, corr, m->programme_id, &p))
    return;
  ledger_account a;
  if (ledger_lookup_account(
          sw->ledger, sw_programme_account_id(p.funding, p.number, p.currency, SW_ACCOUNT_FUNDING),
          &a)) {
    sw_admin_reply(sw, c->id, corr, SW_ERR_INTERNAL, "programme account missing");
    return;
  }
  sw_currency cur;
  sw_currency_by_number(p.currency, &cur);
  Tuma__V1__AdminEnvelope env = TUMA__V1__ADMIN_ENVELOPE__INIT;
  Tuma__V1__ProgrammeInfo info = TUMA__V1__PROGRAMME_INFO__INIT;
  info.programme_id = p.id;
  info.name = p.name;
  info.currency = cur.alpha;
  info.funding_participant = p.funding_id;
  info.beneficiary_cap = p.cap;
  info.end_ms = p.end_ms;
  info.budget = a.credits_posted - a.debits_posted;
  info.reserved = a.debits_pending;
  info.available = info.budget - info.reserved;
  env.correlation_id = corr;
  env.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_PROGRAMME_INFO;
  env.programme_info = &info;
  reply_env(c, &env);
}

/* ---------------------------------------------------------------- beneficiaries */

/* The operator serving msisdn: `given` (a participant id) if not empty, else the directory. */
static sw_peer *resolve_operator(sw_switch *sw, const char *given, uint32_t given_no,
                                 const char *msisdn) {
  if (given && given[0])
    return sw_peer_by_id(sw, given);
  if (given_no)
    return sw_peer_by_number(sw, given_no);
  sw_participant found;
  if (sw_registry_lookup_party(sw->registry, SW_PARTY_MSISDN, msisdn, &found, NULL))
    return NULL;
  return sw_peer_by_number(sw, found.number);
}

/* Validates and stores one beneficiary in transaction t. 0, or a reason in why. */
static int beneficiary_store(sw_switch *sw, sw_dstore_txn *t, uint32_t type, const char *id,
                             const char *msisdn, const char *operator_id, char *why,
                             size_t whylen, int *store_rc) {
  *store_rc = 0;
  if (sw_registry_party_valid(type, id)) {
    snprintf(why, whylen, "malformed beneficiary id");
    return -1;
  }
  if (!msisdn_valid(msisdn)) {
    snprintf(why, whylen, "malformed msisdn");
    return -1;
  }
  sw_beneficiary b;
  memset(&b, 0, sizeof b);
  if (operator_id && operator_id[0]) {
    sw_peer *op = sw_peer_by_id(sw, operator_id);
    if (!op) {
      snprintf(why, whylen, "unknown operator");
      return -1;
    }
    b.operator_no = op->p.number;
  }
  b.id_type = type;
  snprintf(b.msisdn, sizeof b.msisdn, "%s", msisdn);
  sw_mask(id, b.masked, sizeof b.masked);
  uint8_t token[32];
  if (sw_registry_token(sw->registry, TOKEN_LABEL, type, id, token)) {
    snprintf(why, whylen, "internal error");
    *store_rc = SW_DSTORE_E_LMDB;
    return -1;
  }
  *store_rc = sw_dstore_beneficiary_put(t, token, &b);
  if (*store_rc) {
    snprintf(why, whylen, "%s", sw_dstore_strerror(*store_rc));
    return -1;
  }
  return 0;
}

static void beneficiary_register(sw_conn *c, uint64_t corr,
                                 const Tuma__V1__BeneficiaryRegister *m) {
  sw_switch *sw = c->sw;
  if (require_role(c, corr, ROLE_ADMIN | ROLE_MANAGER, "register beneficiaries"))
    return;
  if (!m->beneficiary || !m->beneficiary->id) {
    sw_admin_reply(sw, c->id, corr, SW_ERR_MISSING_ELEMENT, "beneficiary required");
    return;
  }
  sw_dstore_txn *t;
  int rc = sw_dstore_begin(sw->disburse->store, 0, &t);
  if (rc) {
    sw_admin_reply(sw, c->id, corr, SW_ERR_INTERNAL, sw_dstore_strerror(rc));
    return;
  }
  char why[128];
  int src;
  if (beneficiary_store(sw, t, (uint32_t)m->beneficiary->type, m->beneficiary->id, m->msisdn,
                        m->operator_participant, why, sizeof why, &src)) {
    sw_dstore_abort(t);
    sw_admin_reply(sw, c->id, corr, src ? SW_ERR_INTERNAL : SW_ERR_VALIDATION, why);
    return;
  }
  rc = sw_dstore_commit(t);
  char masked[64];
  sw_mask(m->beneficiary->id, masked, sizeof masked);
  sw_log(&sw->log, SW_LOG_INFO, "beneficiary.registered", "id=%s rc=%d", masked, rc);
  sw_admin_reply(sw, c->id, corr, rc ? SW_ERR_INTERNAL : 0, rc ? sw_dstore_strerror(rc) : NULL);
}

/* ---------------------------------------------------------------- uploads */

static void upload_reject(sw_upload *u, uint64_t line, const char *reason) {
  u->n_invalid++;
  if (u->kind == SW_BATCH_FILE_LIST && !u->store_failed) {
    int rc = sw_dstore_reject_put(u->txn, u->batch.number, line, reason);
    if (rc)
      u->store_failed = rc;
  }
  if (u->n_listed < MAX_LISTED_ERRORS) {
    char *copy = strdup(reason);
    if (copy) {
      u->listed_line[u->n_listed] = line;
      u->listed_reason[u->n_listed++] = copy;
    }
  }
}

static int register_row_cb(const sw_batch_row *row, void *arg) {
  sw_upload *u = arg;
  sw_switch *sw = u->d->sw;
  if (row->error) {
    upload_reject(u, row->line, sw_batch_file_row_strerror(row->error));
    return 0;
  }
  char why[128];
  int src;
  if (beneficiary_store(sw, u->txn, row->id_type, row->id, row->msisdn, row->operator_id, why,
                        sizeof why, &src)) {
    if (src) {
      u->store_failed = src;
      return 1;
    }
    upload_reject(u, row->line, why);
    return 0;
  }
  u->n_valid++;
  return 0;
}

static int list_row_cb(const sw_batch_row *row, void *arg) {
  sw_upload *u = arg;
  sw_switch *sw = u->d->sw;
  sw_batch *b = &u->batch;
  char why[160];
  if (row->error) {
    upload_reject(u, row->line, sw_batch_file_row_strerror(row->error));
    return u->store_failed ? 1 : 0;
  }
  if (u->prog.cap && row->amount > u->prog.cap) {
    upload_reject(u, row->line, "over the per-beneficiary cap");
    return u->store_failed ? 1 : 0;
  }
  sw_batch_item it;
  memset(&it, 0, sizeof it);
  if (sw_registry_token(sw->registry, TOKEN_LABEL, row->id_type, row->id, it.token)) {
    u->store_failed = SW_DSTORE_E_LMDB;
    return 1;
  }
  sw_beneficiary ben;
  int have_ben = sw_dstore_beneficiary_get(u->txn, it.token, &ben) == 0;
  const char *msisdn = row->msisdn[0] ? row->msisdn : have_ben ? ben.msisdn : NULL;
  if (!msisdn) {
    upload_reject(u, row->line, "unknown beneficiary");
    return u->store_failed ? 1 : 0;
  }
  uint32_t given_no = !row->msisdn[0] && have_ben ? ben.operator_no : 0;
  sw_peer *op = resolve_operator(sw, row->operator_id, given_no, msisdn);
  if (!op) {
    upload_reject(u, row->line, "unknown wallet: no operator serves this msisdn");
    return u->store_failed ? 1 : 0;
  }
  if (sw_participant_currency_index(&op->p, u->prog.currency) < 0) {
    snprintf(why, sizeof why, "unknown wallet: operator %s does not hold %s", op->p.id,
             u->cur.alpha);
    upload_reject(u, row->line, why);
    return u->store_failed ? 1 : 0;
  }
  uint64_t first = token_find(&u->seen, it.token);
  if (first) {
    snprintf(why, sizeof why, "duplicate within the file (first at line %llu)",
             (unsigned long long)first);
    upload_reject(u, row->line, why);
    return u->store_failed ? 1 : 0;
  }
  for (uint32_t k = 0; k < b->cycles; k++) { /* read only: the entries are written at the end */
    uint64_t other = 0, line = 0;
    int rc = sw_dstore_cycle_get(u->txn, b->programme, b->first_cycle + k, it.token, &other, &line);
    if (rc == 0) {
      snprintf(why, sizeof why, "already in batch %llu for cycle %u", (unsigned long long)other,
               b->first_cycle + k);
      upload_reject(u, row->line, why);
      return u->store_failed ? 1 : 0;
    }
    if (rc != SW_DSTORE_E_NOTFOUND) {
      u->store_failed = rc;
      return 1;
    }
  }
  if (u->total + row->amount < u->total || u->n_valid >= UINT32_MAX) {
    upload_reject(u, row->line, "the batch total overflows");
    return u->store_failed ? 1 : 0;
  }
  it.amount = row->amount;
  it.line = row->line;
  it.operator_no = op->p.number;
  it.id_type = row->id_type;
  sw_mask(row->id, it.masked, sizeof it.masked);
  snprintf(it.msisdn, sizeof it.msisdn, "%s", msisdn);
  snprintf(it.reference, sizeof it.reference, "%s", row->reference);
  it.sex = row->sex ? row->sex : 'U';
  snprintf(it.age_band, sizeof it.age_band, "%s", row->age_band);
  snprintf(it.region, sizeof it.region, "%s", row->region);
  int rc = sw_dstore_item_put(u->txn, b->number, (uint32_t)u->n_valid, &it);
  if (!rc && token_add(&u->seen, it.token, row->line))
    rc = SW_DSTORE_E_NOMEM;
  if (rc) {
    u->store_failed = rc;
    return 1;
  }
  u->n_valid++;
  u->total += row->amount;
  return 0;
}

static void upload_free(sw_upload *u) {
  if (!u)
    return;
  sw_batch_file_free(u->reader);
  EVP_MD_CTX_free(u->sha);
  sw_dstore_abort(u->txn);
  free(u->seen.slots);
  for (size_t i = 0; i < u->n_listed; i++)
    free(u->listed_reason[i]);
  free(u);
}

static void upload_unlink(sw_disburse *d, sw_upload *u) {
  for (sw_upload **p = &d->uploads; *p; p = &(*p)->next)
    if (*p == u) {
      *p = u->next;
      return;
    }
}

/* The cycle index entries of an accepted batch, written at the end of its upload in token
 * order (one pass over the index instead of one per chunk). */
typedef struct token_line {
  uint8_t token[32];
  uint64_t line;
} token_line;

typedef struct token_lines {
  token_line *v;
  size_t n, cap;
} token_lines;

static int collect_token_cb(uint32_t index, const sw_batch_item *it, void *arg) {
  (void)index;
  token_lines *tl = arg;
  if (tl->n == tl->cap)
    return SW_DSTORE_E_NOMEM;
  memcpy(tl->v[tl->n].token, it->token, 32);
  tl->v[tl->n++].line = it->line;
  return 0;
}

static int cmp_token_line(const void *a, const void *b) {
  return memcmp(((const token_line *)a)->token, ((const token_line *)b)->token, 32);
}

/* Takes the (programme, cycle, beneficiary) entries of batch b's items in t. *taken counts the
 * ones another batch took since they were checked (then nothing should be committed). O(n log n). */
static int index_batch(sw_dstore_txn *t, const sw_batch *b, uint64_t *taken) {
  token_lines tl = {.cap = b->items};
  *taken = 0;
  tl.v = malloc((tl.cap ? tl.cap : 1) * sizeof *tl.v);
  if (!tl.v)
    return SW_DSTORE_E_NOMEM;
  int rc = sw_dstore_item_each(t, b->number, 0, collect_token_cb, &tl);
  if (!rc)
    qsort(tl.v, tl.n, sizeof *tl.v, cmp_token_line);
  for (uint32_t k = 0; !rc && k < b->cycles; k++)
    for (size_t i = 0; !rc && i < tl.n; i++) {
      rc = sw_dstore_cycle_add(t, b->programme, b->first_cycle + k, tl.v[i].token, b->number,
                               tl.v[i].line);
      if (rc == SW_DSTORE_E_EXISTS) {
        (*taken)++;
        rc = 0;
      }
    }
  free(tl.v);
  return rc;
}

/* Drops an unfinished upload: its staged batch is deleted. */
static void upload_abandon(sw_disburse *d, sw_upload *u) {
  upload_unlink(d, u);
  if (u->kind == SW_BATCH_FILE_LIST && u->batch.number && !u->existing_batch) {
    sw_dstore_txn *t;
    if (sw_dstore_begin(d->store, 0, &t) == 0) {
      u->batch.state = SW_BATCH_REFUSED;
      snprintf(u->batch.refusal, sizeof u->batch.refusal, "upload abandoned");
      if (sw_dstore_batch_purge(t, u->batch.number, 0) || sw_dstore_batch_put(t, &u->batch))
        sw_dstore_abort(t);
      else
        sw_dstore_commit(t);
    }
  }
  upload_free(u);
}

void sw_disburse_gc_uploads(sw_disburse *d);
void sw_disburse_gc_uploads(sw_disburse *d) {
  for (sw_upload *u = d->uploads, *next; u; u = next) {
    next = u->next;
    if (!sw_conn_find(d->sw, u->conn)) {
      sw_log(&d->sw->log, SW_LOG_WARN, "disburse.upload_abandoned", "batch=%llu",
             (unsigned long long)u->batch.number);
      upload_abandon(d, u);
    }
  }
}

static sw_upload *upload_find(sw_disburse *d, uint64_t conn) {
  for (sw_upload *u = d->uploads; u; u = u->next)
    if (u->conn == conn)
      return u;
  return NULL;
}

/* Starts an upload from its first chunk. Replies and returns NULL on a refusal. */
static sw_upload *upload_start(sw_conn *c, uint64_t corr, int kind, const Tuma__V1__BatchSubmit *bs,
                               const Tuma__V1__FileChunk *ch) {
  sw_switch *sw = c->sw;
  sw_disburse *d = sw->disburse;
  if (ch->file_sha256.len != 32 || ch->file_size == 0 || ch->file_size > MAX_FILE_BYTES) {
    sw_admin_reply(sw, c->id, corr, SW_ERR_VALIDATION,
                      "the first chunk carries the file's SHA-256 and its size (1 byte to 2 GiB)");
    return NULL;
  }
  sw_upload *u = calloc(1, sizeof *u);
  if (!u || !(u->sha = EVP_MD_CTX_new()) || EVP_DigestInit_ex(u->sha, EVP_sha256(), NULL) != 1) {
    upload_free(u);
    sw_admin_reply(sw, c->id, corr, SW_ERR_INTERNAL, "out of memory");
    return NULL;
  }
  u->d = d;
  u->conn = c->id;
  u->kind = kind;
  memcpy(u->want_sha, ch->file_sha256.data, 32);
  u->want_size = ch->file_size;
  if (kind == SW_BATCH_FILE_LIST) {
    if (load_programme(c, corr, bs->programme_id, &u->prog)) {
      upload_free(u);
      return NULL;
    }
    sw_currency_by_number(u->prog.currency, &u->cur);
    uint32_t cycles = bs->cycles ? bs->cycles : 1;
    const char *bad = NULL;
    if (bs->cycle < 1 || cycles > MAX_CYCLES || (uint64_t)bs->cycle + cycles >= (1u << 20))
      bad = "cycle must be 1 or more and cycles at most 1000";
    else if (cycles > 1 && bs->every_ms < 1000)
      bad = "recurring cycles need --every of at least 1 s";
    else if (bs->rate > MAX_RATE)
      bad = "rate at most 100000 per second";
    else if (bs->expect_count == 0)
      bad = "control totals (expected count and total) required";
    else if (u->prog.end_ms && (bs->start_at_ms ? bs->start_at_ms : sw_now_ms()) > u->prog.end_ms)
      bad = "the programme has ended";
    if (bad) {
      upload_free(u);
      sw_admin_reply(sw, c->id, corr, SW_ERR_VALIDATION, bad);
      return NULL;
    }
    sw_batch *b = &u->batch;
    b->programme = u->prog.number;
    b->first_cycle = bs->cycle;
    b->current_cycle = bs->cycle;
    b->cycles = cycles;
    b->state = SW_BATCH_VALIDATING;
    b->exclude_invalid = bs->exclude_invalid ? 1 : 0;
    b->rate = bs->rate ? bs->rate : d->default_rate;
    b->every_ms = bs->every_ms;
    b->start_at_ms = bs->start_at_ms;
    b->expect_count = bs->expect_count;
    b->expect_total = bs->expect_total;
    memcpy(b->file_sha256, u->want_sha, 32);
    snprintf(b->submitted_by, sizeof b->submitted_by, "%s", c->identity);
    b->submitted_ms = sw_now_ms();
    sw_dstore_txn *t;
    int rc = sw_dstore_begin(d->store, 0, &t);
    if (!rc) {
      rc = sw_dstore_file_get(t, b->programme, b->first_cycle, u->want_sha, &u->existing_batch);
      if (rc == SW_DSTORE_E_NOTFOUND) {
        u->existing_batch = 0;
        rc = sw_dstore_next(t, "batch", &b->number);
        if (!rc)
          rc = sw_dstore_batch_put(t, b);
      }
      rc = rc ? (sw_dstore_abort(t), rc) : sw_dstore_commit(t);
    }
    if (rc) {
      upload_free(u);
      sw_admin_reply(sw, c->id, corr, SW_ERR_INTERNAL, sw_dstore_strerror(rc));
      return NULL;
    }
  }
  if (!u->existing_batch &&
      sw_batch_file_new(kind, &u->cur, kind == SW_BATCH_FILE_LIST ? list_row_cb : register_row_cb,
                        u, &u->reader)) {
    upload_abandon(d, u);
    sw_admin_reply(sw, c->id, corr, SW_ERR_INTERNAL, "out of memory");
    return NULL;
  }
  u->next = d->uploads;
  d->uploads = u;
  sw_log(&sw->log, SW_LOG_INFO, "disburse.upload_started", "peer=%s kind=%s batch=%llu bytes=%llu",
         c->identity, kind == SW_BATCH_FILE_LIST ? "list" : "beneficiaries",
         (unsigned long long)u->batch.number, (unsigned long long)u->want_size);
  return u;
}

static void upload_fail(sw_upload *u, unsigned code, const char *text) {
  if (u->failed)
    return;
  u->failed = 1;
  u->fail_code = code;
  snprintf(u->fail_text, sizeof u->fail_text, "%.159s", text);
}

/* Feeds one chunk's bytes, validating and storing their rows in one transaction. */
static void upload_feed(sw_upload *u, const uint8_t *data, size_t n) {
  u->got_size += n;
  EVP_DigestUpdate(u->sha, data, n);
  if (u->failed || u->existing_batch || n == 0)
    return;
  if (u->got_size > u->want_size) {
    upload_fail(u, SW_ERR_VALIDATION, "more bytes than the announced file size");
    return;
  }
  int rc = sw_dstore_begin(u->d->store, 0, &u->txn);
  if (rc) {
    upload_fail(u, SW_ERR_INTERNAL, sw_dstore_strerror(rc));
    return;
  }
  char err[200];
  rc = sw_batch_file_feed(u->reader, data, n, err, sizeof err);
  if (u->store_failed) {
    sw_dstore_abort(u->txn);
    upload_fail(u, SW_ERR_INTERNAL, sw_dstore_strerror(u->store_failed));
  } else {
    int crc = sw_dstore_commit_lazy(u->txn); /* the last chunk's commit makes it durable */
    if (crc)
      upload_fail(u, SW_ERR_INTERNAL, sw_dstore_strerror(crc));
    else if (rc)
      upload_fail(u, SW_ERR_VALIDATION, err);
  }
  u->txn = NULL;
}

static void add_errors(sw_upload *u, Tuma__V1__RowError *errs, Tuma__V1__RowError **ptrs) {
  for (size_t i = 0; i < u->n_listed; i++) {
    tuma__v1__row_error__init(&errs[i]);
    errs[i].line = u->listed_line[i];
    errs[i].reason = u->listed_reason[i];
    ptrs[i] = &errs[i];
  }
}

/* The last chunk of a beneficiary upload: answer with the counts. */
static void register_finish(sw_conn *c, uint64_t corr, sw_upload *u) {
  Tuma__V1__AdminEnvelope env = TUMA__V1__ADMIN_ENVELOPE__INIT;
  Tuma__V1__BeneficiaryUploadResult res = TUMA__V1__BENEFICIARY_UPLOAD_RESULT__INIT;
  Tuma__V1__RowError *errs = calloc(u->n_listed + 1, sizeof *errs);
  Tuma__V1__RowError **ptrs = calloc(u->n_listed + 1, sizeof *ptrs);
  if (!errs || !ptrs) {
    free(errs);
    free(ptrs);
    sw_admin_reply(c->sw, c->id, corr, SW_ERR_INTERNAL, "out of memory");
    return;
  }
  add_errors(u, errs, ptrs);
  res.registered = u->n_valid;
  res.refused = u->n_invalid;
  res.n_errors = u->n_listed;
  res.errors = ptrs;
  env.correlation_id = corr;
  env.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_BENEFICIARY_UPLOAD_RESULT;
  env.beneficiary_upload_result = &res;
  reply_env(c, &env);
  free(errs);
  free(ptrs);
}

/* The last chunk of a list: accept the batch (SUBMITTED) or refuse it, and answer. */
static void list_finish(sw_conn *c, uint64_t corr, sw_upload *u) {
  sw_switch *sw = c->sw;
  sw_batch *b = &u->batch;
  Tuma__V1__AdminEnvelope env = TUMA__V1__ADMIN_ENVELOPE__INIT;
  Tuma__V1__BatchSubmitResult res = TUMA__V1__BATCH_SUBMIT_RESULT__INIT;
  Tuma__V1__Error err = TUMA__V1__ERROR__INIT;
  if (u->existing_batch) {
    sw_batch old;
    sw_dstore_txn *t;
    int rc = store_read(u->d, &t);
    if (!rc) {
      rc = sw_dstore_batch_get(t, u->existing_batch, &old);
      sw_dstore_abort(t);
    }
    if (rc) {
      sw_admin_reply(sw, c->id, corr, SW_ERR_INTERNAL, sw_dstore_strerror(rc));
      return;
    }
    res.batch_id = old.number;
    res.state = (Tuma__V1__BatchState)old.state;
    res.valid_count = old.items;
    res.valid_total = old.total;
    res.invalid_count = old.invalid;
    res.existing = 1;
    env.correlation_id = corr;
    env.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_BATCH_SUBMIT_RESULT;
    env.batch_submit_result = &res;
    reply_env(c, &env);
    return;
  }
  if (!u->failed && u->got_size != u->want_size)
    upload_fail(u, SW_ERR_VALIDATION, "the file is shorter than its announced size");
  uint8_t sha[32];
  unsigned shalen = 0;
  EVP_DigestFinal_ex(u->sha, sha, &shalen);
  if (!u->failed && memcmp(sha, u->want_sha, 32) != 0)
    upload_fail(u, SW_ERR_VALIDATION, "the file's SHA-256 differs from the announced one");
  char text[200];
  if (!u->failed && u->n_invalid && !b->exclude_invalid) {
    snprintf(text, sizeof text,
             "%llu invalid rows (fix them, or submit with exclude_invalid to leave them out)",
             (unsigned long long)u->n_invalid);
    upload_fail(u, SW_ERR_VALIDATION, text);
  }
  if (!u->failed && u->n_valid == 0)
    upload_fail(u, SW_ERR_VALIDATION, "no valid rows");
  if (!u->failed && (u->n_valid != b->expect_count || u->total != b->expect_total)) {
    snprintf(text, sizeof text,
             "control totals differ: expected %llu rows totalling %llu, the valid rows are %llu "
             "totalling %llu (minor units)",
             (unsigned long long)b->expect_count, (unsigned long long)b->expect_total,
             (unsigned long long)u->n_valid, (unsigned long long)u->total);
    upload_fail(u, SW_ERR_VALIDATION, text);
  }
  b->items = u->n_valid;
  b->total = u->total;
  b->invalid = u->n_invalid;
  b->state = u->failed ? SW_BATCH_REFUSED : SW_BATCH_SUBMITTED;
  if (u->failed)
    snprintf(b->refusal, sizeof b->refusal, "%s", u->fail_text);
  sw_dstore_txn *t;
  int rc = sw_dstore_begin(u->d->store, 0, &t);
  if (!rc && !u->failed) {
    uint64_t taken = 0;
    rc = index_batch(t, b, &taken);
    if (!rc && taken) { /* another batch took some of them meanwhile: nothing of this one */
      sw_dstore_abort(t);
      snprintf(text, sizeof text,
               "%llu of these beneficiaries were taken by another batch of this cycle during the "
               "upload: submit again to see which",
               (unsigned long long)taken);
      upload_fail(u, SW_ERR_VALIDATION, text);
      b->state = SW_BATCH_REFUSED;
      snprintf(b->refusal, sizeof b->refusal, "%s", u->fail_text);
      rc = sw_dstore_begin(u->d->store, 0, &t);
    }
  }
  if (!rc && u->failed) /* keep the refused rows for the report, drop the items */
    rc = sw_dstore_batch_purge(t, b->number, 1);
  if (!rc && !u->failed)
    rc = sw_dstore_file_put(t, b->programme, b->first_cycle, b->file_sha256, b->number);
  if (!rc)
    rc = sw_dstore_batch_put(t, b);
  if (!rc)
    rc = sw_dstore_commit(t);
  else
    sw_dstore_abort(t);
  if (rc) {
    sw_admin_reply(sw, c->id, corr, SW_ERR_INTERNAL, sw_dstore_strerror(rc));
    return;
  }
  sw_log(&sw->log, SW_LOG_INFO, "disburse.batch_submitted",
         "batch=%llu programme=%s cycle=%u cycles=%u state=%s valid=%llu total=%llu invalid=%llu",
         (unsigned long long)b->number, u->prog.id, b->first_cycle, b->cycles,
         u->failed ? "refused" : "submitted", (unsigned long long)u->n_valid,
         (unsigned long long)u->total, (unsigned long long)u->n_invalid);
  Tuma__V1__RowError *errs = calloc(u->n_listed + 1, sizeof *errs);
  Tuma__V1__RowError **ptrs = calloc(u->n_listed + 1, sizeof *ptrs);
  if (!errs || !ptrs) {
    free(errs);
    free(ptrs);
    sw_admin_reply(sw, c->id, corr, SW_ERR_INTERNAL, "out of memory");
    return;
  }
  add_errors(u, errs, ptrs);
  res.batch_id = b->number;
  res.state = (Tuma__V1__BatchState)b->state;
  res.valid_count = u->n_valid;
  res.valid_total = u->total;
  res.invalid_count = u->n_invalid;
  res.n_errors = u->n_listed;
  res.errors = ptrs;
  if (u->failed) {
    err.code = u->fail_code;
    err.message = u->fail_text;
    res.error = &err;
  }
  env.correlation_id = corr;
  env.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_BATCH_SUBMIT_RESULT;
  env.batch_submit_result = &res;
  reply_env(c, &env);
  free(errs);
  free(ptrs);
}

/* Ends the input of an upload: the last record is delivered and checked. */
static void upload_end(sw_upload *u) {
  if (u->failed || u->existing_batch)
    return;
  int rc = sw_dstore_begin(u->d->store, 0, &u->txn);
  if (rc) {
    upload_fail(u, SW_ERR_INTERNAL, sw_dstore_strerror(rc));
    return;
  }
  char err[200];
  rc = sw_batch_file_finish(u->reader, err, sizeof err);
  if (u->store_failed) {
    sw_dstore_abort(u->txn);
    upload_fail(u, SW_ERR_INTERNAL, sw_dstore_strerror(u->store_failed));
  } else {
    int crc = sw_dstore_commit(u->txn); /* durable: a registration is answered after this */
    if (crc)
      upload_fail(u, SW_ERR_INTERNAL, sw_dstore_strerror(crc));
    else if (rc)
      upload_fail(u, SW_ERR_VALIDATION, err);
  }
  u->txn = NULL;
}

/* Answers the last chunk (or the first one after which the file cannot be accepted) and frees
 * the upload, which is no longer listed. */
static void upload_answer(sw_conn *c, uint64_t corr, sw_upload *u) {
  if (u->kind == SW_BATCH_FILE_LIST)
    list_finish(c, corr, u);
  else if (u->failed)
    sw_admin_reply(c->sw, c->id, corr, u->fail_code, u->fail_text);
  else
    register_finish(c, corr, u);
  upload_free(u);
}

static void upload_chunk(sw_conn *c, uint64_t corr, int kind, const Tuma__V1__BatchSubmit *bs,
                         const Tuma__V1__FileChunk *ch) {
  sw_disburse *d = c->sw->disburse;
  if (!ch) {
    sw_admin_reply(c->sw, c->id, corr, SW_ERR_MISSING_ELEMENT, "file chunk required");
    return;
  }
  sw_upload *u = upload_find(d, c->id);
  if (u && (ch->file_sha256.len || u->kind != kind)) { /* a new file: the old one is dropped */
    upload_abandon(d, u);
    u = NULL;
  }
  if (!u && !(u = upload_start(c, corr, kind, bs, ch)))
    return;
  upload_feed(u, ch->data.data, ch->data.len);
  if (ch->last) {
    upload_unlink(d, u);
    upload_end(u);
    upload_answer(c, corr, u);
  } else if (u->failed && !u->existing_batch) { /* refused already: no point in the rest */
    upload_unlink(d, u);
    upload_answer(c, corr, u);
  } else {
    sw_admin_reply(c->sw, c->id, corr, 0, NULL);
  }
}

/* ---------------------------------------------------------------- approve, cancel */

static void batch_approve(sw_conn *c, uint64_t corr, const Tuma__V1__BatchApprove *m) {
  if (require_role(c, corr, ROLE_APPROVER, "approve batches"))
    return;
  sw_batch b;
  if (load_batch(c, corr, m->batch_id, &b))
    return;
  if (strcmp(b.submitted_by, c->identity) == 0) {
    sw_log(&c->sw->log, SW_LOG_WARN, "disburse.self_approval", "batch=%llu peer=%s",
           (unsigned long long)b.number, c->identity);
    sw_admin_reply(c->sw, c->id, corr, SW_ERR_VALIDATION,
                      "the submitter of a batch may not approve it (maker-checker)");
    return;
  }
  if (b.state != SW_BATCH_SUBMITTED) {
    sw_admin_reply(c->sw, c->id, corr, b.state == SW_BATCH_APPROVED ? 0 : SW_ERR_VALIDATION,
                      "the batch is not waiting for approval");
    return;
  }
  sw_payout_approve(c->sw->disburse, &b, c->identity, c->id, corr);
}

static void batch_cancel(sw_conn *c, uint64_t corr, const Tuma__V1__BatchCancel *m) {
  if (require_role(c, corr, ROLE_MANAGER | ROLE_APPROVER, "cancel batches"))
    return;
  sw_batch b;
  if (load_batch(c, corr, m->batch_id, &b))
    return;
  if (b.state == SW_BATCH_CANCELLED) {
    sw_admin_reply(c->sw, c->id, corr, 0, NULL);
    return;
  }
  if (b.state == SW_BATCH_COMPLETED || b.state == SW_BATCH_REFUSED) {
    sw_admin_reply(c->sw, c->id, corr, SW_ERR_VALIDATION, "the batch has already ended");
    return;
  }
  sw_log(&c->sw->log, SW_LOG_INFO, "disburse.cancel", "batch=%llu peer=%s",
         (unsigned long long)b.number, c->identity);
  sw_payout_cancel(c->sw->disburse, &b, c->id, corr);
}

/* ---------------------------------------------------------------- status */

/* An item status as reported: an unfinished item of a cancelled batch reads as cancelled. */
static unsigned shown_status(const sw_batch *b, unsigned status) {
  if (status > SW_ITEM_CANCELLED)
    status = SW_ITEM_PENDING;
  if (b->state == SW_BATCH_CANCELLED && (status == SW_ITEM_PENDING || status == SW_ITEM_IN_FLIGHT))
    return SW_ITEM_CANCELLED;
  return status;
}

typedef struct count_scan {
  sw_dstore_txn *t;
  const sw_batch *b;
  uint32_t cycle;
  uint64_t count[6], amount[6];
} count_scan;

static int count_cb(uint32_t index, const sw_batch_item *it, void *arg) {
  count_scan *cs = arg;
  sw_item_status st;
  int rc = sw_dstore_status_get(cs->t, cs->b->number, cs->cycle, index, &st);
  if (rc)
    return rc;
  unsigned s = shown_status(cs->b, st.status);
  cs->count[s]++;
  cs->amount[s] += it->amount;
  return 0;
}

static void batch_status(sw_conn *c, uint64_t corr, const Tuma__V1__BatchStatusQuery *m) {
  sw_switch *sw = c->sw;
  sw_disburse *d = sw->disburse;
  if (require_role(c, corr, ROLE_ANY, "read batches"))
    return;
  sw_batch b;
  if (load_batch(c, corr, m->batch_id, &b))
    return;
  struct sw_run *run = sw_payout_run(d, b.number);
  uint64_t count[6] = {0}, amount[6] = {0};
  double rate = 0;
  if (run) {
    sw_payout_counts(run, count, amount, &rate);
  } else if (b.state == SW_BATCH_SUBMITTED || b.state == SW_BATCH_APPROVED ||
             b.state == SW_BATCH_REFUSED) {
    count[SW_ITEM_PENDING] = b.items;
    amount[SW_ITEM_PENDING] = b.total;
  } else {
    count_scan cs = {.b = &b, .cycle = b.current_cycle};
    if (store_read(d, &cs.t) == 0) {
      sw_dstore_item_each(cs.t, b.number, 0, count_cb, &cs);
      sw_dstore_abort(cs.t);
    }
    memcpy(count, cs.count, sizeof count);
    memcpy(amount, cs.amount, sizeof amount);
  }
  sw_programme p;
  sw_dstore_txn *t;
  memset(&p, 0, sizeof p);
  if (store_read(d, &t) == 0) {
    sw_dstore_programme_get(t, b.programme, &p);
    sw_dstore_abort(t);
  }
  sw_currency cur;
  memset(&cur, 0, sizeof cur);
  sw_currency_by_number(p.currency, &cur);
  Tuma__V1__AdminEnvelope env = TUMA__V1__ADMIN_ENVELOPE__INIT;
  Tuma__V1__BatchStatus st = TUMA__V1__BATCH_STATUS__INIT;
  Tuma__V1__StatusCount sc[5], *scp[5];
  for (int s = SW_ITEM_PENDING; s <= SW_ITEM_CANCELLED; s++) {
    tuma__v1__status_count__init(&sc[s - 1]);
    sc[s - 1].status = (Tuma__V1__ItemStatus)s;
    sc[s - 1].count = count[s];
    sc[s - 1].amount = amount[s];
    scp[s - 1] = &sc[s - 1];
  }
  st.batch_id = b.number;
  st.programme_id = p.id;
  st.currency = cur.alpha;
  st.state = (Tuma__V1__BatchState)b.state;
  st.first_cycle = b.first_cycle;
  st.cycles = b.cycles;
  st.current_cycle = b.current_cycle;
  st.items = b.items;
  st.total = b.total;
  st.submitted_by = b.submitted_by;
  st.approved_by = b.approved_by;
  st.submitted_ms = b.submitted_ms;
  st.approved_ms = b.approved_ms;
  st.start_at_ms = b.start_at_ms;
  st.every_ms = b.every_ms;
  st.rate = b.rate;
  st.n_counts = 5;
  st.counts = scp;
  st.paid_per_second = rate;
  uint64_t left = count[SW_ITEM_PENDING] + count[SW_ITEM_IN_FLIGHT];
  st.eta_ms = rate > 0 && left ? (uint64_t)(left / rate * 1000.0) : 0;
  st.invalid_count = b.invalid;
  env.correlation_id = corr;
  env.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_BATCH_STATUS;
  env.batch_status = &st;
  reply_env(c, &env);
}

/* ---------------------------------------------------------------- report */

typedef struct report_page {
  sw_disburse *d;
  sw_dstore_txn *t;
  const sw_batch *b;
  struct sw_run *run;
  uint32_t cycle;
  uint32_t limit;
  size_t n;
  Tuma__V1__ReportItem *items;
  Tuma__V1__ReportItem **ptrs;
  uint8_t (*ids)[16];
  char (*reasons)[64];
  char (*masked)[32];
  char (*refs)[65];
  uint64_t next;
  int error;
} report_page;

/* The status of item index in cycle: the run's memory when it is on that cycle, else the
 * store; an unfinished item of a cancelled batch reads as cancelled. */
static int item_status(report_page *rp, uint32_t cycle, uint32_t index, sw_item_status *st) {
  if (rp->run && sw_payout_item_status(rp->run, cycle, index, st))
    return 0;
  int rc = sw_dstore_status_get(rp->t, rp->b->number, cycle, index, st);
  if (!rc)
    st->status = (uint8_t)shown_status(rp->b, st->status);
  return rc;
}

static int report_item_cb(uint32_t index, const sw_batch_item *it, void *arg) {
  report_page *rp = arg;
  if (rp->n >= rp->limit)
    return 1;
  sw_item_status st;
  int rc = item_status(rp, rp->cycle, index, &st);
  if (rc)
    return rc;
  Tuma__V1__ReportItem *ri = &rp->items[rp->n];
  tuma__v1__report_item__init(ri);
  ri->cycle = rp->cycle;
  ri->line = it->line;
  /* the item is borrowed for this call: its strings are copied into the page */
  memcpy(rp->masked[rp->n], it->masked, sizeof rp->masked[rp->n]);
  rp->masked[rp->n][sizeof rp->masked[rp->n] - 1] = 0;
  memcpy(rp->refs[rp->n], it->reference, sizeof rp->refs[rp->n]);
  rp->refs[rp->n][sizeof rp->refs[rp->n] - 1] = 0;
  ri->masked_id = rp->masked[rp->n];
  ri->reference = rp->refs[rp->n];
  ri->amount = it->amount;
  ri->status = (Tuma__V1__ItemStatus)st.status;
  ri->reason_code = st.code;
  snprintf(rp->reasons[rp->n], sizeof rp->reasons[rp->n], "%s",
           st.status == SW_ITEM_CANCELLED ? "cancelled" : st.code ? sw_error_text(st.code) : "");
  ri->reason = rp->reasons[rp->n];
  if (st.ledger_attempt) {
    sw_id_to_bytes(sw_payout_item_id(rp->b->programme, rp->cycle, it->token, st.ledger_attempt),
                   rp->ids[rp->n]);
    ri->transfer_id.data = rp->ids[rp->n];
    ri->transfer_id.len = 16;
  }
  ri->completed_ms = st.completed_ms;
  sw_peer *op = sw_peer_by_number(rp->d->sw, it->operator_no);
  ri->operator_participant = op ? op->p.id : (char *)"";
  rp->ptrs[rp->n] = ri;
  rp->n++;
  rp->next = ((uint64_t)(rp->cycle - rp->b->first_cycle) << 32 | index) + 1;
  return 0;
}

typedef struct reject_list {
  size_t n, cap;
  Tuma__V1__RowError *errs;
  Tuma__V1__RowError **ptrs;
  char **texts;
} reject_list;

static int reject_cb(uint64_t line, const char *reason, void *arg) {
  reject_list *rl = arg;
  if (rl->n >= rl->cap)
    return 1;
  rl->texts[rl->n] = strdup(reason);
  if (!rl->texts[rl->n])
    return SW_DSTORE_E_NOMEM;
  tuma__v1__row_error__init(&rl->errs[rl->n]);
  rl->errs[rl->n].line = line;
  rl->errs[rl->n].reason = rl->texts[rl->n];
  rl->ptrs[rl->n] = &rl->errs[rl->n];
  rl->n++;
  return 0;
}

/* The cycles a batch has reached: first .. current (all of them once completed). */
static uint32_t cycles_reached(const sw_batch *b) {
  if (b->state == SW_BATCH_SUBMITTED || b->state == SW_BATCH_APPROVED ||
      b->state == SW_BATCH_REFUSED)
    return 1;
  uint32_t n = b->current_cycle - b->first_cycle + 1;
  return n > b->cycles ? b->cycles : n;
}

static void batch_report(sw_conn *c, uint64_t corr, const Tuma__V1__BatchReportQuery *m) {
  sw_switch *sw = c->sw;
  sw_disburse *d = sw->disburse;
  if (require_role(c, corr, ROLE_ANY, "read batches"))
    return;
  sw_batch b;
  if (load_batch(c, corr, m->batch_id, &b))
    return;
  report_page rp = {.d = d, .b = &b, .run = sw_payout_run(d, b.number)};
  rp.limit = m->limit ? (m->limit > REPORT_PAGE_MAX ? REPORT_PAGE_MAX : m->limit)
                      : REPORT_PAGE_DEFAULT;
  reject_list rl = {0};
  rp.items = calloc(rp.limit, sizeof *rp.items);
  rp.ptrs = calloc(rp.limit, sizeof *rp.ptrs);
  rp.ids = calloc(rp.limit, sizeof *rp.ids);
  rp.reasons = calloc(rp.limit, sizeof *rp.reasons);
  rp.masked = calloc(rp.limit, sizeof *rp.masked);
  rp.refs = calloc(rp.limit, sizeof *rp.refs);
  int first_page = m->after == 0;
  if (first_page) {
    rl.cap = b.invalid < 100000 ? (size_t)b.invalid : 100000;
    rl.errs = calloc(rl.cap + 1, sizeof *rl.errs);
    rl.ptrs = calloc(rl.cap + 1, sizeof *rl.ptrs);
    rl.texts = calloc(rl.cap + 1, sizeof *rl.texts);
  }
  int rc = !rp.items || !rp.ptrs || !rp.ids || !rp.reasons || !rp.masked || !rp.refs ||
                   (first_page && (!rl.errs || !rl.ptrs || !rl.texts))
               ? SW_DSTORE_E_NOMEM
               : store_read(d, &rp.t);
  int done = 0;
  if (!rc) {
    uint64_t pos = m->after ? m->after : 0; /* next position: cycle offset << 32 | index */
    uint32_t reached = b.state == SW_BATCH_REFUSED ? 0 : cycles_reached(&b);
    uint32_t off = (uint32_t)(pos >> 32), index = (uint32_t)pos;
    done = 1;
    for (; off < reached && rp.n < rp.limit && !rc; off++, index = 0) {
      rp.cycle = b.first_cycle + off;
      rc = sw_dstore_item_each(rp.t, b.number, index, report_item_cb, &rp);
      if (rc == 1) {
        rc = 0;
        done = 0;
        break;
      }
    }
    if (!rc && done && rp.n == rp.limit)
      done = off >= reached;
    if (!rc && first_page)
      rc = sw_dstore_reject_each(rp.t, b.number, reject_cb, &rl);
    if (rc == 1)
      rc = 0;
    sw_dstore_abort(rp.t);
  }
  if (rc) {
    sw_admin_reply(sw, c->id, corr, SW_ERR_INTERNAL, sw_dstore_strerror(rc));
  } else {
    Tuma__V1__AdminEnvelope env = TUMA__V1__ADMIN_ENVELOPE__INIT;
    Tuma__V1__BatchReportPage page = TUMA__V1__BATCH_REPORT_PAGE__INIT;
    page.n_items = rp.n;
    page.items = rp.ptrs;
    page.next = rp.next ? rp.next : m->after;
    page.done = done;
    page.n_invalid = rl.n;
    page.invalid = rl.ptrs;
    env.correlation_id = corr;
    env.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_BATCH_REPORT_PAGE;
    env.batch_report_page = &page;
    reply_env(c, &env);
  }
  for (size_t i = 0; i < rl.n; i++)
    free(rl.texts[i]);
  free(rl.texts);
  free(rl.errs);
  free(rl.ptrs);
  free(rp.items);
  free(rp.ptrs);
  free(rp.ids);
  free(rp.reasons);
  free(rp.masked);
  free(rp.refs);
}

/* ---------------------------------------------------------------- reach */

#define REACH_MIN_CELL 10
#define REACH_MAX_CELLS 4096

typedef struct reach_cell {
  char dimension[12];
  char value[64];
  uint64_t people, paid, failed;
  uint64_t *elapsed; /* paid items' times */
  size_t n_elapsed, cap_elapsed;
} reach_cell;

typedef struct reach_acc {
  report_page rp; /* for item_status */
  reach_cell *cells;
  size_t n_cells;
  int error;
} reach_acc;

static reach_cell *reach_find(reach_acc *ra, const char *dim, const char *value) {
  for (size_t i = 0; i < ra->n_cells; i++)
    if (strcmp(ra->cells[i].dimension, dim) == 0 && strcmp(ra->cells[i].value, value) == 0)
      return &ra->cells[i];
  if (ra->n_cells >= REACH_MAX_CELLS)
    return NULL;
  reach_cell *c = &ra->cells[ra->n_cells++];
  snprintf(c->dimension, sizeof c->dimension, "%s", dim);
  snprintf(c->value, sizeof c->value, "%s", value);
  return c;
}

static int reach_add(reach_acc *ra, const char *dim, const char *value, const sw_item_status *st) {
  reach_cell *c = reach_find(ra, dim, value[0] ? value : "unknown");
  if (!c)
    return 0; /* past the cell limit: counted in "all" only */
  c->people++;
  if (st->status == SW_ITEM_PAID) {
    c->paid++;
    if (c->n_elapsed == c->cap_elapsed) {
      size_t n = c->cap_elapsed ? c->cap_elapsed * 2 : 64;
      uint64_t *e = realloc(c->elapsed, n * sizeof *e);
      if (!e)
        return SW_DSTORE_E_NOMEM;
      c->elapsed = e;
      c->cap_elapsed = n;
    }
    c->elapsed[c->n_elapsed++] = st->elapsed_ms;
  } else if (st->status == SW_ITEM_FAILED || st->status == SW_ITEM_CANCELLED) {
    c->failed++;
  }
  return 0;
}

static int reach_item_cb(uint32_t index, const sw_batch_item *it, void *arg) {
  reach_acc *ra = arg;
  sw_item_status st;
  int rc = item_status(&ra->rp, ra->rp.cycle, index, &st);
  if (rc)
    return rc;
  char sex[2] = {it->sex ? it->sex : 'U', 0};
  sw_peer *op = sw_peer_by_number(ra->rp.d->sw, it->operator_no);
  if ((rc = reach_add(ra, "all", "all", &st)) || (rc = reach_add(ra, "sex", sex, &st)) ||
      (rc = reach_add(ra, "age_band", it->age_band, &st)) ||
      (rc = reach_add(ra, "region", it->region, &st)) ||
      (rc = reach_add(ra, "operator", op ? op->p.id : "", &st)))
    return rc;
  return 0;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static void batch_reach(sw_conn *c, uint64_t corr, const Tuma__V1__BatchReachQuery *m) {
  sw_switch *sw = c->sw;
  sw_disburse *d = sw->disburse;
  if (require_role(c, corr, ROLE_ANY, "read batches"))
    return;
  sw_batch b;
  if (load_batch(c, corr, m->batch_id, &b))
    return;
  reach_acc ra = {.rp = {.d = d, .b = &b, .run = sw_payout_run(d, b.number)}};
  ra.cells = calloc(REACH_MAX_CELLS, sizeof *ra.cells);
  int rc = ra.cells ? store_read(d, &ra.rp.t) : SW_DSTORE_E_NOMEM;
  if (!rc) {
    uint32_t reached = b.state == SW_BATCH_REFUSED ? 0 : cycles_reached(&b);
    for (uint32_t off = 0; off < reached && !rc; off++) {
      ra.rp.cycle = b.first_cycle + off;
      rc = sw_dstore_item_each(ra.rp.t, b.number, 0, reach_item_cb, &ra);
    }
    sw_dstore_abort(ra.rp.t);
  }
  Tuma__V1__ReachCell *cells = ra.cells ? calloc(ra.n_cells + 1, sizeof *cells) : NULL;
  Tuma__V1__ReachCell **ptrs = ra.cells ? calloc(ra.n_cells + 1, sizeof *ptrs) : NULL;
  if (rc || !cells || !ptrs) {
    sw_admin_reply(sw, c->id, corr, SW_ERR_INTERNAL,
                      rc ? sw_dstore_strerror(rc) : "out of memory");
  } else {
    for (size_t i = 0; i < ra.n_cells; i++) {
      reach_cell *rc2 = &ra.cells[i];
      Tuma__V1__ReachCell *out = &cells[i];
      tuma__v1__reach_cell__init(out);
      out->dimension = rc2->dimension;
      out->value = rc2->value;
      if (rc2->people < REACH_MIN_CELL) {
        out->suppressed = 1;
      } else {
        out->people = rc2->people;
        out->paid = rc2->paid;
        out->failed = rc2->failed;
        if (rc2->n_elapsed) {
          qsort(rc2->elapsed, rc2->n_elapsed, sizeof *rc2->elapsed, cmp_u64);
          out->median_ms = rc2->elapsed[rc2->n_elapsed / 2];
        }
      }
      ptrs[i] = out;
    }
    Tuma__V1__AdminEnvelope env = TUMA__V1__ADMIN_ENVELOPE__INIT;
    Tuma__V1__BatchReach reach = TUMA__V1__BATCH_REACH__INIT;
    reach.n_cells = ra.n_cells;
    reach.cells = ptrs;
    env.correlation_id = corr;
    env.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_BATCH_REACH;
    env.batch_reach = &reach;
    reply_env(c, &env);
  }
  for (size_t i = 0; ra.cells && i < ra.n_cells; i++)
    free(ra.cells[i].elapsed);
  free(ra.cells);
  free(cells);
  free(ptrs);
}

/* ---------------------------------------------------------------- dispatch, open, close */

int sw_disburse_dispatch(sw_conn *c, Tuma__V1__AdminEnvelope *env) {
  uint64_t corr = env->correlation_id;
  if (env->body_case < TUMA__V1__ADMIN_ENVELOPE__BODY_PROGRAMME_CREATE ||
      env->body_case > TUMA__V1__ADMIN_ENVELOPE__BODY_BATCH_REACH)
    return -1;
  if (!c->sw->disburse || !c->sw->commit || !c->sw->disburse->tick) {
    sw_admin_reply(c->sw, c->id, corr, SW_ERR_UNAVAILABLE, "disbursements are not running");
    return 0;
  }
  switch (env->body_case) {
  case TUMA__V1__ADMIN_ENVELOPE__BODY_PROGRAMME_CREATE:
    programme_create(c, corr, env->programme_create);
    return 0;
  case TUMA__V1__ADMIN_ENVELOPE__BODY_PROGRAMME_FUND:
    programme_fund(c, corr, env->programme_fund);
    return 0;
  case TUMA__V1__ADMIN_ENVELOPE__BODY_PROGRAMME_QUERY:
    programme_query(c, corr, env->programme_query);
    return 0;
  case TUMA__V1__ADMIN_ENVELOPE__BODY_BENEFICIARY_REGISTER:
    beneficiary_register(c, corr, env->beneficiary_register);
    return 0;
  case TUMA__V1__ADMIN_ENVELOPE__BODY_BENEFICIARY_UPLOAD:
    if (require_role(c, corr, ROLE_ADMIN | ROLE_MANAGER, "register beneficiaries"))
      return 0;
    upload_chunk(c, corr, SW_BATCH_FILE_REGISTER, NULL, env->beneficiary_upload->chunk);
    return 0;
  case TUMA__V1__ADMIN_ENVELOPE__BODY_BATCH_SUBMIT:
    if (require_role(c, corr, ROLE_MANAGER, "submit batches"))
      return 0;
    upload_chunk(c, corr, SW_BATCH_FILE_LIST, env->batch_submit, env->batch_submit->chunk);
    return 0;
  case TUMA__V1__ADMIN_ENVELOPE__BODY_BATCH_APPROVE:
    batch_approve(c, corr, env->batch_approve);
    return 0;
  case TUMA__V1__ADMIN_ENVELOPE__BODY_BATCH_CANCEL:
    batch_cancel(c, corr, env->batch_cancel);
    return 0;
  case TUMA__V1__ADMIN_ENVELOPE__BODY_BATCH_STATUS_QUERY:
    batch_status(c, corr, env->batch_status_query);
    return 0;
  case TUMA__V1__ADMIN_ENVELOPE__BODY_BATCH_REPORT_QUERY:
    batch_report(c, corr, env->batch_report_query);
    return 0;
  case TUMA__V1__ADMIN_ENVELOPE__BODY_BATCH_REACH_QUERY:
    batch_reach(c, corr, env->batch_reach_query);
    return 0;
  default:
    return -1;
  }
}

/* Discards the batches whose upload a stop interrupted. */
static int discard_cb(const sw_batch *b, void *arg) {
  uint64_t *list = arg;
  if (b->state == SW_BATCH_VALIDATING && list[0] < 1024)
    list[1 + list[0]++] = b->number;
  return 0;
}

static int discard_unfinished_uploads(sw_disburse *d) {
  uint64_t list[1025] = {0};
  sw_dstore_txn *t;
  int rc = sw_dstore_begin(d->store, 0, &t);
  if (rc)
    return rc;
  rc = sw_dstore_batch_each(t, discard_cb, list);
  for (uint64_t i = 0; !rc && i < list[0]; i++) {
    sw_batch b;
    rc = sw_dstore_batch_get(t, list[1 + i], &b);
    if (!rc)
      rc = sw_dstore_batch_purge(t, b.number, 0);
    if (!rc) {
      b.state = SW_BATCH_REFUSED;
      snprintf(b.refusal, sizeof b.refusal, "upload interrupted by a restart");
      rc = sw_dstore_batch_put(t, &b);
    }
  }
  if (rc) {
    sw_dstore_abort(t);
    return rc;
  }
  if (list[0])
    sw_log(&d->sw->log, SW_LOG_WARN, "disburse.uploads_discarded", "count=%llu",
           (unsigned long long)list[0]);
  return sw_dstore_commit(t);
}

int sw_disburse_open(sw_switch *sw) {
  sw_disburse *d = calloc(1, sizeof *d);
  if (!d)
    return -1;
  d->sw = sw;
  d->default_rate = 5000;
  d->window = 4096;
  d->max_attempts = sw->cfg->disburse_max_attempts;
  d->retry_base_ms = sw->cfg->disburse_retry_ms;
  d->item_expiry_ms = sw->cfg->disburse_item_expiry_ms;
  char err[256];
  if (sw_dstore_open(sw->cfg->data_dir, &d->store, err, sizeof err)) {
    sw_log(&sw->log, SW_LOG_ERROR, "disburse.open_failed", "error=\"%s\"", err);
    free(d);
    return -1;
  }
  sw->disburse = d;
  int rc = discard_unfinished_uploads(d);
  if (!rc)
    rc = sw_payout_resume(d);
  if (rc) {
    sw_log(&sw->log, SW_LOG_ERROR, "disburse.resume_failed", "error=\"%s\"",
           sw_dstore_strerror(rc));
    sw_disburse_close(sw);
    return -1;
  }
  return 0;
}

void sw_disburse_stop(sw_switch *sw) {
  sw_disburse *d = sw->disburse;
  if (!d)
    return;
  if (d->tick) {
    event_free(d->tick);
    d->tick = NULL;
  }
  sw_payout_flush(d);
}

void sw_disburse_close(sw_switch *sw) {
  sw_disburse *d = sw->disburse;
  if (!d)
    return;
  sw_payout_flush(d);
  sw_payout_free_all(d);
  while (d->uploads) {
    sw_upload *u = d->uploads;
    d->uploads = u->next;
    upload_free(u);
  }
  sw_dstore_close(d->store);
  free(d);
  sw->disburse = NULL;
}
