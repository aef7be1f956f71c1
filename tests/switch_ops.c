/* switch_ops.c — what the integration suites do to a running tumad (tests/switch_ops.h): the
 * test's context and its end-of-test ledger check, operator and admin messages sent and
 * expected over tests/tclient.h connections. Test code only: every failure is a cr_assert.
 */
#include "switch_ops.h"

#include <criterion/criterion.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "audit.h"

/* ================================================================ the test's context */

/* The running test's context, for so_fini's diagnostics (each test is its own process). */
static so_ctx *so_current;

void so_fini(void) {
  if (!so_current || !so_current->h)
    return;
  /* Only reached with a live harness when the test failed before so_finish. */
  sh_dump_log(so_current->h, "tumad", 40);
  fprintf(stderr, "[tumad] scratch directory kept: %s\n", so_current->h->dir);
  sh_destroy(so_current->h, 0);
  so_current->h = NULL;
  free(so_current->seen);
  so_current->seen = NULL;
}

so_ctx *so_start(const sh_options *o, const so_config *cfg) {
  static so_ctx ctx; /* one test per process */
  memset(&ctx, 0, sizeof ctx);
  ctx.max_seen = cfg->max_seen;
  ctx.checks = cfg->checks;
  ctx.seen = calloc(ctx.max_seen, sizeof *ctx.seen);
  cr_assert_not_null(ctx.seen, "room for %zu transfers", ctx.max_seen);
  char err[512];
  cr_assert_eq(sh_create(o, &ctx.h, err, sizeof err), 0, "harness: %s", err);
  so_current = &ctx;
  cr_assert_eq(sh_start(ctx.h, SO_T_START, err, sizeof err), 0, "start: %s", err);
  return &ctx;
}

void so_restart(so_ctx *t) {
  char err[512];
  cr_assert_eq(sh_start(t->h, SO_T_START, err, sizeof err), 0, "restart: %s", err);
}

void so_track(so_ctx *t, const uint8_t id[16], int told, const char *what) {
  for (size_t i = 0; i < t->n_seen; i++)
    if (!memcmp(t->seen[i].id, id, 16)) {
      t->seen[i].told = told;
      return;
    }
  cr_assert_lt(t->n_seen, t->max_seen);
  so_seen *s = &t->seen[t->n_seen++];
  memcpy(s->id, id, 16);
  s->told = told;
  snprintf(s->what, sizeof s->what, "%s", what);
}

ledger_id so_wire_id(const uint8_t b[16]) {
  uint64_t hi = 0, lo = 0;
  for (int i = 0; i < 8; i++) {
    hi = hi << 8 | b[i];
    lo = lo << 8 | b[8 + i];
  }
  return ledger_id_make(hi, lo);
}

const char *so_pending_name(ledger_pending_state s) {
  switch (s) {
  case LEDGER_PENDING_NONE:
    return "none";
  case LEDGER_PENDING_OPEN:
    return "open";
  case LEDGER_PENDING_POSTED:
    return "posted";
  case LEDGER_PENDING_VOIDED:
    return "voided";
  case LEDGER_PENDING_EXPIRED:
    return "expired";
  }
  return "?";
}

/* The auditor's check (ledger/audit.h, what `tuma audit verify` runs): the hash chain from
 * genesis, a replay of every record, every stored account, transfer and pending row compared. */
static void audit_ledger(const char *dir) {
  ledger_audit_report rep;
  char err[256] = "";
  int rc = ledger_audit_verify(dir, NULL, &rep, NULL, err, sizeof err);
  cr_assert_eq(rc, 0, "tuma audit verify %s: %s at record %llu: %s %s", dir,
               ledger_audit_problem_name(rep.problem), (unsigned long long)rep.bad_seq, rep.detail,
               err);
  cr_assert(rep.replayed && rep.compared, "the audit replayed and compared");
}

/* The ledger, read-only, after tumad stopped: balanced, each transfer as told, and the
 * context's SO_CHECK_* checks. */
void so_check_ledger(so_ctx *t) {
  ledger *l = NULL;
  ledger_options o = {0};
  o.flags = LEDGER_OPEN_READ_ONLY;
  int rc = ledger_open(t->h->ledger_dir, &o, &l);
  cr_assert_eq(rc, 0, "ledger_open(%s) read-only: %s", t->h->ledger_dir, ledger_strerror(rc));
  ledger_totals tot;
  cr_assert_eq(ledger_totals_of(l, &tot), 0);
  cr_assert_gt(tot.accounts, 0, "the ledger has accounts");
  cr_assert(tot.debits_posted == tot.credits_posted, "Σ debits_posted %llu ≠ Σ credits_posted %llu",
            (unsigned long long)tot.debits_posted, (unsigned long long)tot.credits_posted);
  cr_assert(tot.debits_pending == tot.credits_pending,
            "Σ debits_pending %llu ≠ Σ credits_pending %llu",
            (unsigned long long)tot.debits_pending, (unsigned long long)tot.credits_pending);
  for (size_t i = 0; i < t->n_seen; i++) {
    const so_seen *s = &t->seen[i];
    ledger_pending_state st = LEDGER_PENDING_NONE;
    rc = ledger_pending_state_of(l, so_wire_id(s->id), &st, NULL);
    switch (s->told) {
    case SO_ST_COMMITTED:
      cr_assert(rc == 0 && st == LEDGER_PENDING_POSTED,
                "%s: told COMMITTED, ledger says %s (rc %d)", s->what, so_pending_name(st), rc);
      break;
    case SO_ST_ABORTED:
    case SO_ST_EXPIRED:
      cr_assert(rc == LEDGER_E_NOTFOUND ||
                    (rc == 0 && (st == LEDGER_PENDING_VOIDED || st == LEDGER_PENDING_EXPIRED)),
                "%s: told %s, ledger says %s (rc %d)", s->what,
                s->told == SO_ST_ABORTED ? "ABORTED" : "EXPIRED", so_pending_name(st), rc);
      break;
    case SO_ST_RESERVED:
      cr_assert(rc == 0 && st == LEDGER_PENDING_OPEN, "%s: told RESERVED, ledger says %s (rc %d)",
                s->what, so_pending_name(st), rc);
      break;
    default:
      cr_assert_fail("%s: nothing told", s->what);
    }
  }
  if (t->checks & SO_CHECK_JOURNAL) {
    uint64_t bad = 0;
    rc = ledger_journal_verify(l, &bad);
    cr_assert_eq(rc, 0, "the ledger's journal verifies (first bad record %llu)",
                 (unsigned long long)bad);
  }
  ledger_close(l);
  if (t->checks & SO_CHECK_AUDIT)
    audit_ledger(t->h->ledger_dir);
}

/* Stops tumad gracefully (it must exit 0), checks the ledger, cleans up. */
void so_finish(so_ctx *t) {
  int status = 0;
  cr_assert_eq(sh_stop(t->h, SO_T_STOP, &status), 0, "tumad did not stop within %d ms on SIGTERM",
               SO_T_STOP);
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "tumad exit status %d (signal %d)",
            WIFEXITED(status) ? WEXITSTATUS(status) : -1,
            WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  for (size_t i = 0; i < t->n_clients; i++)
    tc_close(t->clients[i], 0);
  t->n_clients = 0;
  so_check_ledger(t);
  if (t->soft_failures) {
    sh_dump_log(t->h, "tumad", 40);
    fprintf(stderr, "[tumad] scratch directory kept: %s\n", t->h->dir);
  }
  sh_destroy(t->h, !t->soft_failures && getenv("TUMA_TEST_KEEP") == NULL);
  t->h = NULL;
  free(t->seen);
  t->seen = NULL;
}

/* ================================================================ ids and time */

/* A UUIDv7-style id: 48-bit Unix milliseconds, version 7, random bits. */
void so_new_id(uint8_t id[16]) {
  uint64_t ms = sh_now_ms();
  for (int i = 0; i < 6; i++)
    id[i] = (uint8_t)(ms >> (8 * (5 - i)));
  cr_assert_eq(RAND_bytes(id + 6, 10), 1);
  id[6] = (uint8_t)(0x70 | (id[6] & 0x0f));
  id[8] = (uint8_t)(0x80 | (id[8] & 0x3f));
}

void so_sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

int64_t so_mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ================================================================ envelopes */

const char *so_body_name(int body_case) {
  const ProtobufCFieldDescriptor *f =
      protobuf_c_message_descriptor_get_field(&tuma__v1__envelope__descriptor, (unsigned)body_case);
  return f ? f->name : "(none)";
}

const char *so_admin_body_name(int body_case) {
  const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(
      &tuma__v1__admin_envelope__descriptor, (unsigned)body_case);
  return f ? f->name : "(none)";
}

const char *so_state_name(int s) {
  switch (s) {
  case SO_ST_RESERVED:
    return "RESERVED";
  case SO_ST_COMMITTED:
    return "COMMITTED";
  case SO_ST_ABORTED:
    return "ABORTED";
  case SO_ST_EXPIRED:
    return "EXPIRED";
  default:
    return "UNSPECIFIED";
  }
}

void so_send_env(tc_client *c, const char *who, Tuma__V1__Envelope *env) {
  int rc = tc_send(c, env);
  cr_assert_eq(rc, TC_OK, "%s: send %s: %s (%s)", who, so_body_name(env->body_case),
               tc_strerror(rc), tc_last_error(c));
}

Tuma__V1__Envelope *so_recv_env(tc_client *c, const char *who, int timeout_ms) {
  Tuma__V1__Envelope *env = NULL;
  int rc = tc_recv(c, timeout_ms, &env);
  cr_assert_eq(rc, TC_OK, "%s: no envelope within %d ms: %s (%s)", who, timeout_ms, tc_strerror(rc),
               tc_last_error(c));
  return env;
}

tc_client *so_connect_as(so_ctx *t, uint16_t port, const char *ca, const char *cert,
                         const char *key) {
  tc_client *c = NULL;
  char err[300];
  int rc = tc_connect(port, ca, cert, key, SO_T_ANSWER, &c, err, sizeof err);
  cr_assert_eq(rc, TC_OK, "connect to %u: %s: %s", port, tc_strerror(rc), err);
  cr_assert_lt(t->n_clients, sizeof t->clients / sizeof t->clients[0]);
  t->clients[t->n_clients++] = c;
  return c;
}

/* Forgets c (closed by the test itself). */
void so_untrack_client(so_ctx *t, tc_client *c) {
  for (size_t i = 0; i < t->n_clients; i++)
    if (t->clients[i] == c) {
      t->clients[i] = t->clients[--t->n_clients];
      return;
    }
}

void so_drop_client(so_ctx *t, tc_client *c, int graceful) {
  so_untrack_client(t, c);
  tc_close(c, graceful);
}

/* An operator connection for participant `name`, greeted: Hello → HelloAck naming it. Once
 * the ack is in, the switch has the connection registered for forwards. */
tc_client *so_op_connect(so_ctx *t, const char *name) {
  char cert[SH_PATH_MAX + 80], key[SH_PATH_MAX + 80];
  snprintf(cert, sizeof cert, "%s", sh_cert(t->h, name));
  snprintf(key, sizeof key, "%s", sh_key(t->h, name));
  tc_client *c = so_connect_as(t, t->h->port, t->h->ca, cert, key);
  Tuma__V1__Envelope env = TUMA__V1__ENVELOPE__INIT;
  Tuma__V1__Hello hello = TUMA__V1__HELLO__INIT;
  hello.client_name = (char *)"test_switch";
  env.correlation_id = 1;
  env.body_case = TUMA__V1__ENVELOPE__BODY_HELLO;
  env.hello = &hello;
  so_send_env(c, name, &env);
  Tuma__V1__Envelope *r = so_recv_env(c, name, SO_T_ANSWER);
  cr_assert_eq(r->body_case, TUMA__V1__ENVELOPE__BODY_HELLO_ACK, "%s: expected hello_ack, got %s",
               name, so_body_name(r->body_case));
  cr_assert_eq(r->correlation_id, 1);
  cr_assert_str_eq(r->hello_ack->participant_id, name);
  tuma__v1__envelope__free_unpacked(r, NULL);
  return c;
}

tc_client *so_admin_connect(so_ctx *t) {
  char cert[SH_PATH_MAX + 80], key[SH_PATH_MAX + 80];
  snprintf(cert, sizeof cert, "%s", sh_cert(t->h, "admin"));
  snprintf(key, sizeof key, "%s", sh_key(t->h, "admin"));
  return so_connect_as(t, t->h->admin_port, t->h->ca, cert, key);
}

/* ---------------------------------------------------------------- operator messages */

void so_send_prepare(tc_client *c, const char *who, uint64_t corr, const so_prep *p) {
  Tuma__V1__Envelope env = TUMA__V1__ENVELOPE__INIT;
  Tuma__V1__TransferPrepare m = TUMA__V1__TRANSFER_PREPARE__INIT;
  Tuma__V1__Money money = TUMA__V1__MONEY__INIT;
  Tuma__V1__Party payee = TUMA__V1__PARTY__INIT, payer = TUMA__V1__PARTY__INIT;
  m.transfer_id.data = (uint8_t *)p->id;
  m.transfer_id.len = 16;
  if (p->payee_participant)
    m.payee_participant = (char *)p->payee_participant;
  if (p->payer_participant)
    m.payer_participant = (char *)p->payer_participant;
  if (p->payee_type) {
    payee.type = p->payee_type;
    payee.id = (char *)p->payee_id;
    m.payee = &payee;
  }
  if (p->payer_type) {
    payer.type = p->payer_type;
    payer.id = (char *)p->payer_id;
    m.payer = &payer;
  }
  money.currency = (char *)(p->currency ? p->currency : "KES");
  money.amount = p->amount;
  m.amount = &money;
  m.expiration_ms = p->expiration_ms ? p->expiration_ms : sh_now_ms() + 30000;
  if (p->condition) {
    m.condition.data = (uint8_t *)p->condition;
    m.condition.len = 32;
  }
  if (p->reference)
    m.reference = (char *)p->reference;
  env.correlation_id = corr;
  env.body_case = TUMA__V1__ENVELOPE__BODY_TRANSFER_PREPARE;
  env.transfer_prepare = &m;
  so_send_env(c, who, &env);
}

/* A simple prepare alpha → payee participant, 30 s to live. */
so_prep so_simple(const uint8_t *id, const char *payee, uint64_t amount) {
  so_prep p;
  memset(&p, 0, sizeof p);
  p.id = id;
  p.payee_participant = payee;
  p.amount = amount;
  return p;
}

void so_send_fulfil(tc_client *c, const char *who, uint64_t corr, const uint8_t id[16], int state,
                    const uint8_t *fulfilment, unsigned reason) {
  Tuma__V1__Envelope env = TUMA__V1__ENVELOPE__INIT;
  Tuma__V1__TransferFulfil m = TUMA__V1__TRANSFER_FULFIL__INIT;
  Tuma__V1__Error why = TUMA__V1__ERROR__INIT;
  m.transfer_id.data = (uint8_t *)id;
  m.transfer_id.len = 16;
  m.state = state;
  if (fulfilment) {
    m.fulfilment.data = (uint8_t *)fulfilment;
    m.fulfilment.len = 32;
  }
  if (reason) {
    why.code = reason;
    why.message = (char *)"refused by the test";
    m.reason = &why;
  }
  env.correlation_id = corr;
  env.body_case = TUMA__V1__ENVELOPE__BODY_TRANSFER_FULFIL;
  env.transfer_fulfil = &m;
  so_send_env(c, who, &env);
}

void so_send_query(tc_client *c, const char *who, uint64_t corr, const uint8_t id[16]) {
  Tuma__V1__Envelope env = TUMA__V1__ENVELOPE__INIT;
  Tuma__V1__TransferQuery m = TUMA__V1__TRANSFER_QUERY__INIT;
  m.transfer_id.data = (uint8_t *)id;
  m.transfer_id.len = 16;
  env.correlation_id = corr;
  env.body_case = TUMA__V1__ENVELOPE__BODY_TRANSFER_QUERY;
  env.transfer_query = &m;
  so_send_env(c, who, &env);
}

void so_send_ping(tc_client *c, const char *who, uint64_t corr, uint64_t nonce) {
  Tuma__V1__Envelope env = TUMA__V1__ENVELOPE__INIT;
  Tuma__V1__Ping m = TUMA__V1__PING__INIT;
  m.nonce = nonce;
  env.correlation_id = corr;
  env.body_case = TUMA__V1__ENVELOPE__BODY_PING;
  env.ping = &m;
  so_send_env(c, who, &env);
}

void so_expect_pong(tc_client *c, const char *who, uint64_t corr, uint64_t nonce) {
  Tuma__V1__Envelope *r = so_recv_env(c, who, SO_T_ANSWER);
  cr_assert_eq(r->body_case, TUMA__V1__ENVELOPE__BODY_PONG, "%s: expected pong, got %s", who,
               so_body_name(r->body_case));
  cr_assert_eq(r->correlation_id, corr);
  cr_assert_eq(r->pong->nonce, nonce);
  tuma__v1__envelope__free_unpacked(r, NULL);
}

static int result_matches(const Tuma__V1__Envelope *r, const so_want_result *w) {
  const Tuma__V1__TransferResult *m = r->transfer_result;
  unsigned code = m->error ? m->error->code : 0;
  return r->correlation_id == w->corr && m->transfer_id.len == 16 &&
         !memcmp(m->transfer_id.data, w->id, 16) && (int)m->state == w->state && code == w->code;
}

static void describe_result(const Tuma__V1__Envelope *r, char *out, size_t outlen) {
  if (r->body_case != TUMA__V1__ENVELOPE__BODY_TRANSFER_RESULT) {
    unsigned code = r->body_case == TUMA__V1__ENVELOPE__BODY_ERROR ? r->error->code : 0;
    snprintf(out, outlen, "%s (corr %llu, code %u)", so_body_name(r->body_case),
             (unsigned long long)r->correlation_id, code);
    return;
  }
  const Tuma__V1__TransferResult *m = r->transfer_result;
  snprintf(out, outlen, "transfer_result corr %llu state %s code %u id %02x%02x..%02x%02x",
           (unsigned long long)r->correlation_id, so_state_name(m->state),
           m->error ? m->error->code : 0, m->transfer_id.len > 1 ? m->transfer_id.data[0] : 0,
           m->transfer_id.len > 1 ? m->transfer_id.data[1] : 0,
           m->transfer_id.len == 16 ? m->transfer_id.data[14] : 0,
           m->transfer_id.len == 16 ? m->transfer_id.data[15] : 0);
}

/* The next envelope on c is the TransferResult w; returns it (the caller frees). */
Tuma__V1__Envelope *so_expect_result_env(tc_client *c, const char *who, const so_want_result *w,
                                         int timeout_ms) {
  Tuma__V1__Envelope *r = so_recv_env(c, who, timeout_ms);
  char got[160];
  describe_result(r, got, sizeof got);
  cr_assert(r->body_case == TUMA__V1__ENVELOPE__BODY_TRANSFER_RESULT && result_matches(r, w),
            "%s: expected transfer_result corr %llu state %s code %u, got %s", who,
            (unsigned long long)w->corr, so_state_name(w->state), w->code, got);
  if (w->state != SO_ST_RESERVED)
    cr_assert_gt(r->transfer_result->completed_at_ms, 0, "%s: completed_at_ms set", who);
  return r;
}

void so_expect_result(tc_client *c, const char *who, uint64_t corr, const uint8_t id[16], int state,
                      unsigned code) {
  so_want_result w = {corr, id, state, code};
  tuma__v1__envelope__free_unpacked(so_expect_result_env(c, who, &w, SO_T_ANSWER), NULL);
}

void so_expect_error(tc_client *c, const char *who, uint64_t corr, unsigned code) {
  Tuma__V1__Envelope *r = so_recv_env(c, who, SO_T_ANSWER);
  char got[160];
  describe_result(r, got, sizeof got);
  cr_assert(r->body_case == TUMA__V1__ENVELOPE__BODY_ERROR && r->correlation_id == corr &&
                r->error->code == code,
            "%s: expected error %u corr %llu, got %s", who, code, (unsigned long long)corr, got);
  tuma__v1__envelope__free_unpacked(r, NULL);
}

/* Nothing arrives on c for ms milliseconds (and it stays open). */
void so_expect_silence(tc_client *c, const char *who, int ms) {
  Tuma__V1__Envelope *r = NULL;
  int rc = tc_recv(c, ms, &r);
  char got[160] = "";
  if (r)
    describe_result(r, got, sizeof got);
  cr_assert_eq(rc, TC_E_TIMEOUT, "%s: expected nothing for %d ms, got %s %s", who, ms,
               tc_strerror(rc), got);
}

/* The switch closes c within ms (whatever it sends first is discarded). */
void so_expect_closed(tc_client *c, const char *who, int ms) {
  int rc = tc_wait_closed(c, ms, NULL);
  cr_assert_eq(rc, TC_OK, "%s: expected the switch to close the connection within %d ms: %s", who,
               ms, tc_strerror(rc));
}

/* The next envelope on c is a TransferForward of id; returns its correlation id. */
uint64_t so_expect_forward(tc_client *c, const char *who, const uint8_t id[16], const char *payer,
                           uint64_t amount) {
  Tuma__V1__Envelope *r = so_recv_env(c, who, SO_T_ANSWER);
  char got[160];
  describe_result(r, got, sizeof got);
  cr_assert_eq(r->body_case, TUMA__V1__ENVELOPE__BODY_TRANSFER_FORWARD,
               "%s: expected transfer_forward, got %s", who, got);
  const Tuma__V1__TransferForward *f = r->transfer_forward;
  cr_assert(f->transfer_id.len == 16 && !memcmp(f->transfer_id.data, id, 16),
            "%s: forward of another transfer", who);
  cr_assert_str_eq(f->payer_participant, payer);
  cr_assert_not_null(f->amount);
  cr_assert_str_eq(f->amount->currency, "KES");
  cr_assert_eq(f->amount->amount, amount);
  cr_assert_neq(r->correlation_id, 0, "%s: a forward carries a switch-chosen correlation id", who);
  uint64_t corr = r->correlation_id;
  tuma__v1__envelope__free_unpacked(r, NULL);
  return corr;
}

/* ---------------------------------------------------------------- admin messages */

Tuma__V1__AdminEnvelope *so_admin_call(so_ctx *t, tc_client *adm, Tuma__V1__AdminEnvelope *env) {
  env->correlation_id = ++t->admin_corr + 1000;
  int rc = tc_send_admin(adm, env);
  cr_assert_eq(rc, TC_OK, "admin: send %s: %s", so_admin_body_name(env->body_case),
               tc_strerror(rc));
  Tuma__V1__AdminEnvelope *r = NULL;
  rc = tc_recv_admin(adm, SO_T_ANSWER, &r);
  cr_assert_eq(rc, TC_OK, "admin: no answer to %s: %s (%s)", so_admin_body_name(env->body_case),
               tc_strerror(rc), tc_last_error(adm));
  cr_assert_eq(r->correlation_id, env->correlation_id, "admin: answer's correlation id");
  return r;
}

/* Sends an admin request answered by AdminResult; returns its error code (0 = done). */
unsigned so_admin_result(so_ctx *t, tc_client *adm, Tuma__V1__AdminEnvelope *env) {
  Tuma__V1__AdminEnvelope *r = so_admin_call(t, adm, env);
  cr_assert_eq(r->body_case, TUMA__V1__ADMIN_ENVELOPE__BODY_ADMIN_RESULT,
               "admin: expected admin_result, got %s", so_admin_body_name(r->body_case));
  unsigned code = r->admin_result->error ? r->admin_result->error->code : 0;
  tuma__v1__admin_envelope__free_unpacked(r, NULL);
  return code;
}

so_position so_get_position(so_ctx *t, tc_client *adm, const char *participant) {
  Tuma__V1__AdminEnvelope env = TUMA__V1__ADMIN_ENVELOPE__INIT;
  Tuma__V1__PositionsQuery q = TUMA__V1__POSITIONS_QUERY__INIT;
  q.participant_id = (char *)participant;
  env.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_POSITIONS_QUERY;
  env.positions_query = &q;
  Tuma__V1__AdminEnvelope *r = so_admin_call(t, adm, &env);
  cr_assert_eq(r->body_case, TUMA__V1__ADMIN_ENVELOPE__BODY_POSITIONS_RESULT,
               "admin: expected positions_result, got %s", so_admin_body_name(r->body_case));
  const Tuma__V1__PositionsResult *res = r->positions_result;
  cr_assert_eq(res->n_positions, 1, "positions of %s: one currency", participant);
  const Tuma__V1__Position *p = res->positions[0];
  cr_assert_str_eq(p->participant_id, participant);
  cr_assert_str_eq(p->currency, "KES");
  so_position out = {p->liquidity, p->reserved, p->available, p->net_debit_cap, p->net_position};
  cr_assert_eq(out.available, out.liquidity - out.reserved, "%s: available = liquidity - reserved",
               participant);
  tuma__v1__admin_envelope__free_unpacked(r, NULL);
  return out;
}

unsigned so_set_status(so_ctx *t, tc_client *adm, const char *participant, int status) {
  Tuma__V1__AdminEnvelope env = TUMA__V1__ADMIN_ENVELOPE__INIT;
  Tuma__V1__ParticipantSetStatus m = TUMA__V1__PARTICIPANT_SET_STATUS__INIT;
  m.participant_id = (char *)participant;
  m.status = status;
  env.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_PARTICIPANT_SET_STATUS;
  env.participant_set_status = &m;
  return so_admin_result(t, adm, &env);
}

unsigned so_liquidity(so_ctx *t, tc_client *adm, const uint8_t id[16], const char *participant,
                      uint64_t amount, int deposit) {
  Tuma__V1__AdminEnvelope env = TUMA__V1__ADMIN_ENVELOPE__INIT;
  Tuma__V1__LiquidityAdjust m = TUMA__V1__LIQUIDITY_ADJUST__INIT;
  Tuma__V1__Money money = TUMA__V1__MONEY__INIT;
  m.adjustment_id.data = (uint8_t *)id;
  m.adjustment_id.len = 16;
  m.participant_id = (char *)participant;
  money.currency = (char *)"KES";
  money.amount = amount;
  m.amount = &money;
  m.direction = deposit ? TUMA__V1__LIQUIDITY_DIRECTION__LIQUIDITY_DIRECTION_DEPOSIT
                        : TUMA__V1__LIQUIDITY_DIRECTION__LIQUIDITY_DIRECTION_WITHDRAW;
  m.reason = (char *)"test";
  env.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_LIQUIDITY_ADJUST;
  env.liquidity_adjust = &m;
  return so_admin_result(t, adm, &env);
}

/* The participant's entry in ParticipantList; fails the test if it is not listed. */
void so_list_entry(so_ctx *t, tc_client *adm, const char *participant, int *status,
                   int *connected) {
  Tuma__V1__AdminEnvelope env = TUMA__V1__ADMIN_ENVELOPE__INIT;
  Tuma__V1__ParticipantList m = TUMA__V1__PARTICIPANT_LIST__INIT;
  env.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_PARTICIPANT_LIST;
  env.participant_list = &m;
  Tuma__V1__AdminEnvelope *r = so_admin_call(t, adm, &env);
  cr_assert_eq(r->body_case, TUMA__V1__ADMIN_ENVELOPE__BODY_PARTICIPANT_LIST_RESULT);
  int found = 0;
  for (size_t i = 0; i < r->participant_list_result->n_participants; i++) {
    const Tuma__V1__Participant *p = r->participant_list_result->participants[i];
    if (!strcmp(p->participant_id, participant)) {
      found = 1;
      *status = p->status;
      *connected = p->connected;
    }
  }
  tuma__v1__admin_envelope__free_unpacked(r, NULL);
  cr_assert(found, "participant %s listed", participant);
}

/* The switch refuses c's handshake: a request gets no answer, the connection closes. */
void so_expect_refused_handshake(tc_client *c, const char *who) {
  Tuma__V1__Envelope env = TUMA__V1__ENVELOPE__INIT;
  Tuma__V1__Ping ping = TUMA__V1__PING__INIT;
  env.correlation_id = 1;
  env.body_case = TUMA__V1__ENVELOPE__BODY_PING;
  env.ping = &ping;
  int rc = tc_send(c, &env); /* may fail already: the refusal can be there first */
  cr_assert(rc == TC_OK || rc == TC_E_CLOSED || rc == TC_E_TLS, "%s: send: %s", who,
            tc_strerror(rc));
  Tuma__V1__Envelope *r = NULL;
  if (rc == TC_OK)
    rc = tc_recv(c, SO_T_ANSWER, &r);
  else
    rc = tc_wait_closed(c, SO_T_ANSWER, NULL) == TC_OK ? TC_E_CLOSED : TC_E_TIMEOUT;
  cr_assert(rc == TC_E_TLS || rc == TC_E_CLOSED,
            "%s: expected the handshake to be refused, got %s (%s)", who, tc_strerror(rc),
            r ? so_body_name(r->body_case) : "");
}

/* One whole two-phase transfer payer → payee, committed; both sides told. */
void so_transfer_ok(so_ctx *t, tc_client *payer, const char *payer_name, tc_client *payee,
                    const char *payee_name, uint64_t amount, uint64_t corr) {
  uint8_t id[16];
  so_new_id(id);
  so_prep p = so_simple(id, payee_name, amount);
  so_send_prepare(payer, payer_name, corr, &p);
  uint64_t fcorr = so_expect_forward(payee, payee_name, id, payer_name, amount);
  (void)fcorr;
  so_send_fulfil(payee, payee_name, corr + 1, id, SO_FS_COMMITTED, NULL, 0);
  so_expect_result(payer, payer_name, corr, id, SO_ST_COMMITTED, 0);
  so_expect_result(payee, payee_name, corr + 1, id, SO_ST_COMMITTED, 0);
  so_track(t, id, SO_ST_COMMITTED, "transfer_ok");
}

/* Closes the test's connections (tumad went away or is about to). */
void so_drop_all(so_ctx *t) {
  for (size_t i = 0; i < t->n_clients; i++)
    tc_close(t->clients[i], 0);
  t->n_clients = 0;
}
