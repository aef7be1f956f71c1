/* test_switch.c — integration suite for tumad (DESIGN §2, §4, §5; proto/README.md): a real
 * tumad (tests/switch_harness.h) driven over mutually authenticated TLS 1.3 by blocking test
 * clients (tests/tclient.h) for the operators alpha, beta, gamma and an admin.
 *
 * Scenarios: the two-phase happy path and positions, routing by participant, by registered
 * party and by MSISDN prefix, condition/fulfilment, payee rejection, expiry and late fulfils,
 * duplicates, liquidity and net-debit-cap limits, unknown payee / party, payee offline or
 * suspended, certificates (other CA, none, wrong role, unknown participant), spoofed payer,
 * malformed / oversized / truncated frames, a payee dropping mid-transfer, kill -9 and restart
 * with transfers in flight, graceful SIGTERM, liquidity adjustments and participants created
 * over the admin protocol.
 *
 * Every test ends the same way (it_finish): SIGTERM, tumad must exit 0 in time, then the
 * ledger is opened read-only and must balance (Σ debits = Σ credits, posted and pending), and
 * every transfer the test saw must be in the state the operators were told: COMMITTED ⇒
 * posted, ABORTED / EXPIRED ⇒ voided, expired or absent, RESERVED ⇒ still open.
 *
 * When a test fails, its scratch directory (tumad.ini, tumad.log, data/) is kept and the end
 * of tumad's log is written to stderr.
 */
#include <criterion/criterion.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "frame.h"
#include "ledger.h"
#include "switch_harness.h"
#include "tclient.h"

#define T_ANSWER 5000 /* ms: an answer that should come at once (a ledger commit away) */
#define T_SILENCE 400 /* ms: how long "nothing arrives" is watched */
#define T_START 15000 /* ms: tumad start-up */
#define T_STOP 10000  /* ms: graceful stop */

#define ST_RESERVED TUMA__V1__TRANSFER_STATE__TRANSFER_STATE_RESERVED
#define ST_COMMITTED TUMA__V1__TRANSFER_STATE__TRANSFER_STATE_COMMITTED
#define ST_ABORTED TUMA__V1__TRANSFER_STATE__TRANSFER_STATE_ABORTED
#define ST_EXPIRED TUMA__V1__TRANSFER_STATE__TRANSFER_STATE_EXPIRED
#define FS_COMMITTED TUMA__V1__FULFIL_STATE__FULFIL_STATE_COMMITTED
#define FS_ABORTED TUMA__V1__FULFIL_STATE__FULFIL_STATE_ABORTED
#define PT_MSISDN TUMA__V1__PARTY_ID_TYPE__PARTY_ID_TYPE_MSISDN
#define PT_NATIONAL_ID TUMA__V1__PARTY_ID_TYPE__PARTY_ID_TYPE_NATIONAL_ID

/* ================================================================ the test's context */

typedef struct seen_transfer {
  uint8_t id[16];
  int told; /* the last final (or RESERVED) state an operator was told */
  char what[48];
} seen_transfer;

typedef struct it_ctx {
  sh_switch *h;
  seen_transfer seen[64];
  size_t n_seen;
  tc_client *clients[32]; /* closed by it_finish */
  size_t n_clients;
  uint64_t admin_corr;
  int soft_failures; /* cr_expect failures so far: keep the scratch directory */
} it_ctx;

/* The running test's context, for it_fini's diagnostics (each test is its own process). */
static it_ctx *g_it;

static void it_fini(void) {
  if (!g_it || !g_it->h)
    return;
  /* Only reached with a live harness when the test failed before it_finish. */
  sh_dump_log(g_it->h, "tumad", 40);
  fprintf(stderr, "[tumad] scratch directory kept: %s\n", g_it->h->dir);
  sh_destroy(g_it->h, 0);
  g_it->h = NULL;
}

TestSuite(switch, .fini = it_fini, .timeout = 60);

static it_ctx *it_start(const sh_options *o) {
  static it_ctx ctx; /* one test per process */
  memset(&ctx, 0, sizeof ctx);
  char err[512];
  cr_assert_eq(sh_create(o, &ctx.h, err, sizeof err), 0, "harness: %s", err);
  g_it = &ctx;
  cr_assert_eq(sh_start(ctx.h, T_START, err, sizeof err), 0, "start: %s", err);
  return &ctx;
}

static void it_restart(it_ctx *t) {
  char err[512];
  cr_assert_eq(sh_start(t->h, T_START, err, sizeof err), 0, "restart: %s", err);
}

static void track(it_ctx *t, const uint8_t id[16], int told, const char *what) {
  for (size_t i = 0; i < t->n_seen; i++)
    if (!memcmp(t->seen[i].id, id, 16)) {
      t->seen[i].told = told;
      return;
    }
  cr_assert_lt(t->n_seen, sizeof t->seen / sizeof t->seen[0]);
  seen_transfer *s = &t->seen[t->n_seen++];
  memcpy(s->id, id, 16);
  s->told = told;
  snprintf(s->what, sizeof s->what, "%s", what);
}

static ledger_id wire_id(const uint8_t b[16]) {
  uint64_t hi = 0, lo = 0;
  for (int i = 0; i < 8; i++) {
    hi = hi << 8 | b[i];
    lo = lo << 8 | b[8 + i];
  }
  return ledger_id_make(hi, lo);
}

static const char *pending_name(ledger_pending_state s) {
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

/* The ledger, read-only, after tumad stopped: balanced, and each transfer as told. */
static void check_ledger(it_ctx *t) {
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
    const seen_transfer *s = &t->seen[i];
    ledger_pending_state st = LEDGER_PENDING_NONE;
    rc = ledger_pending_state_of(l, wire_id(s->id), &st, NULL);
    switch (s->told) {
    case ST_COMMITTED:
      cr_assert(rc == 0 && st == LEDGER_PENDING_POSTED,
                "%s: told COMMITTED, ledger says %s (rc %d)", s->what, pending_name(st), rc);
      break;
    case ST_ABORTED:
    case ST_EXPIRED:
      cr_assert(rc == LEDGER_E_NOTFOUND ||
                    (rc == 0 && (st == LEDGER_PENDING_VOIDED || st == LEDGER_PENDING_EXPIRED)),
                "%s: told %s, ledger says %s (rc %d)", s->what,
                s->told == ST_ABORTED ? "ABORTED" : "EXPIRED", pending_name(st), rc);
      break;
    case ST_RESERVED:
      cr_assert(rc == 0 && st == LEDGER_PENDING_OPEN, "%s: told RESERVED, ledger says %s (rc %d)",
                s->what, pending_name(st), rc);
      break;
    default:
      cr_assert_fail("%s: nothing told", s->what);
    }
  }
  ledger_close(l);
}

/* Stops tumad gracefully (it must exit 0), checks the ledger, cleans up. */
static void it_finish(it_ctx *t) {
  int status = 0;
  cr_assert_eq(sh_stop(t->h, T_STOP, &status), 0, "tumad did not stop within %d ms on SIGTERM",
               T_STOP);
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "tumad exit status %d (signal %d)",
            WIFEXITED(status) ? WEXITSTATUS(status) : -1,
            WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  for (size_t i = 0; i < t->n_clients; i++)
    tc_close(t->clients[i], 0);
  t->n_clients = 0;
  check_ledger(t);
  if (t->soft_failures) {
    sh_dump_log(t->h, "tumad", 40);
    fprintf(stderr, "[tumad] scratch directory kept: %s\n", t->h->dir);
  }
  sh_destroy(t->h, !t->soft_failures && getenv("TUMA_TEST_KEEP") == NULL);
  t->h = NULL;
}

/* ================================================================ ids and time */

/* A UUIDv7-style id: 48-bit Unix milliseconds, version 7, random bits. */
static void new_id(uint8_t id[16]) {
  uint64_t ms = sh_now_ms();
  for (int i = 0; i < 6; i++)
    id[i] = (uint8_t)(ms >> (8 * (5 - i)));
  cr_assert_eq(RAND_bytes(id + 6, 10), 1);
  id[6] = (uint8_t)(0x70 | (id[6] & 0x0f));
  id[8] = (uint8_t)(0x80 | (id[8] & 0x3f));
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

static int64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ================================================================ envelopes */

static const char *body_name(int body_case) {
  const ProtobufCFieldDescriptor *f =
      protobuf_c_message_descriptor_get_field(&tuma__v1__envelope__descriptor, (unsigned)body_case);
  return f ? f->name : "(none)";
}

static const char *admin_body_name(int body_case) {
  const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(
      &tuma__v1__admin_envelope__descriptor, (unsigned)body_case);
  return f ? f->name : "(none)";
}

static const char *state_name(int s) {
  switch (s) {
  case ST_RESERVED:
    return "RESERVED";
  case ST_COMMITTED:
    return "COMMITTED";
  case ST_ABORTED:
    return "ABORTED";
  case ST_EXPIRED:
    return "EXPIRED";
  default:
    return "UNSPECIFIED";
  }
}

static void send_env(tc_client *c, const char *who, Tuma__V1__Envelope *env) {
  int rc = tc_send(c, env);
  cr_assert_eq(rc, TC_OK, "%s: send %s: %s (%s)", who, body_name(env->body_case), tc_strerror(rc),
               tc_last_error(c));
}

static Tuma__V1__Envelope *recv_env(tc_client *c, const char *who, int timeout_ms) {
  Tuma__V1__Envelope *env = NULL;
  int rc = tc_recv(c, timeout_ms, &env);
  cr_assert_eq(rc, TC_OK, "%s: no envelope within %d ms: %s (%s)", who, timeout_ms, tc_strerror(rc),
               tc_last_error(c));
  return env;
}

static tc_client *connect_as(it_ctx *t, uint16_t port, const char *ca, const char *cert,
                             const char *key) {
  tc_client *c = NULL;
  char err[300];
  int rc = tc_connect(port, ca, cert, key, T_ANSWER, &c, err, sizeof err);
  cr_assert_eq(rc, TC_OK, "connect to %u: %s: %s", port, tc_strerror(rc), err);
  cr_assert_lt(t->n_clients, sizeof t->clients / sizeof t->clients[0]);
  t->clients[t->n_clients++] = c;
  return c;
}

/* Forgets c (closed by the test itself). */
static void untrack_client(it_ctx *t, tc_client *c) {
  for (size_t i = 0; i < t->n_clients; i++)
    if (t->clients[i] == c) {
      t->clients[i] = t->clients[--t->n_clients];
      return;
    }
}

static void drop_client(it_ctx *t, tc_client *c, int graceful) {
  untrack_client(t, c);
  tc_close(c, graceful);
}

/* An operator connection for participant `name`, greeted: Hello → HelloAck naming it. Once
 * the ack is in, the switch has the connection registered for forwards. */
static tc_client *op_connect(it_ctx *t, const char *name) {
  char cert[SH_PATH_MAX + 80], key[SH_PATH_MAX + 80];
  snprintf(cert, sizeof cert, "%s", sh_cert(t->h, name));
  snprintf(key, sizeof key, "%s", sh_key(t->h, name));
  tc_client *c = connect_as(t, t->h->port, t->h->ca, cert, key);
  Tuma__V1__Envelope env = TUMA__V1__ENVELOPE__INIT;
  Tuma__V1__Hello hello = TUMA__V1__HELLO__INIT;
  hello.client_name = (char *)"test_switch";
  env.correlation_id = 1;
  env.body_case = TUMA__V1__ENVELOPE__BODY_HELLO;
  env.hello = &hello;
  send_env(c, name, &env);
  Tuma__V1__Envelope *r = recv_env(c, name, T_ANSWER);
  cr_assert_eq(r->body_case, TUMA__V1__ENVELOPE__BODY_HELLO_ACK, "%s: expected hello_ack, got %s",
               name, body_name(r->body_case));
  cr_assert_eq(r->correlation_id, 1);
  cr_assert_str_eq(r->hello_ack->participant_id, name);
  tuma__v1__envelope__free_unpacked(r, NULL);
  return c;
}

static tc_client *admin_connect(it_ctx *t) {
  char cert[SH_PATH_MAX + 80], key[SH_PATH_MAX + 80];
  snprintf(cert, sizeof cert, "%s", sh_cert(t->h, "admin"));
  snprintf(key, sizeof key, "%s", sh_key(t->h, "admin"));
  return connect_as(t, t->h->admin_port, t->h->ca, cert, key);
}

/* ---------------------------------------------------------------- operator messages */

typedef struct prep {
  const uint8_t *id;
  const char *payee_participant; /* NULL: none */
  int payee_type;                /* 0: no payee party */
  const char *payee_id;
  int payer_type; /* 0: no payer party */
  const char *payer_id;
  const char *payer_participant; /* NULL: not set */
  const char *currency;          /* NULL: KES */
  uint64_t amount;
  uint64_t expiration_ms; /* 0: 30 s ahead */
  const uint8_t *condition;
  const char *reference;
} prep;

static void send_prepare(tc_client *c, const char *who, uint64_t corr, const prep *p) {
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
  send_env(c, who, &env);
}

/* A simple prepare alpha → payee participant, 30 s to live. */
static prep simple(const uint8_t *id, const char *payee, uint64_t amount) {
  prep p;
  memset(&p, 0, sizeof p);
  p.id = id;
  p.payee_participant = payee;
  p.amount = amount;
  return p;
}

static void send_fulfil(tc_client *c, const char *who, uint64_t corr, const uint8_t id[16],
                        int state, const uint8_t *fulfilment, unsigned reason) {
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
  send_env(c, who, &env);
}

static void send_query(tc_client *c, const char *who, uint64_t corr, const uint8_t id[16]) {
  Tuma__V1__Envelope env = TUMA__V1__ENVELOPE__INIT;
  Tuma__V1__TransferQuery m = TUMA__V1__TRANSFER_QUERY__INIT;
  m.transfer_id.data = (uint8_t *)id;
  m.transfer_id.len = 16;
  env.correlation_id = corr;
  env.body_case = TUMA__V1__ENVELOPE__BODY_TRANSFER_QUERY;
  env.transfer_query = &m;
  send_env(c, who, &env);
}

static void send_ping(tc_client *c, const char *who, uint64_t corr, uint64_t nonce) {
  Tuma__V1__Envelope env = TUMA__V1__ENVELOPE__INIT;
  Tuma__V1__Ping m = TUMA__V1__PING__INIT;
  m.nonce = nonce;
  env.correlation_id = corr;
  env.body_case = TUMA__V1__ENVELOPE__BODY_PING;
  env.ping = &m;
  send_env(c, who, &env);
}

static void expect_pong(tc_client *c, const char *who, uint64_t corr, uint64_t nonce) {
  Tuma__V1__Envelope *r = recv_env(c, who, T_ANSWER);
  cr_assert_eq(r->body_case, TUMA__V1__ENVELOPE__BODY_PONG, "%s: expected pong, got %s", who,
               body_name(r->body_case));
  cr_assert_eq(r->correlation_id, corr);
  cr_assert_eq(r->pong->nonce, nonce);
  tuma__v1__envelope__free_unpacked(r, NULL);
}

/* What a TransferResult should say. code 0 = no error (absent or code 0). */
typedef struct want_result {
  uint64_t corr;
  const uint8_t *id;
  int state;
  unsigned code;
} want_result;

static int result_matches(const Tuma__V1__Envelope *r, const want_result *w) {
  const Tuma__V1__TransferResult *m = r->transfer_result;
  unsigned code = m->error ? m->error->code : 0;
  return r->correlation_id == w->corr && m->transfer_id.len == 16 &&
         !memcmp(m->transfer_id.data, w->id, 16) && (int)m->state == w->state && code == w->code;
}

static void describe_result(const Tuma__V1__Envelope *r, char *out, size_t outlen) {
  if (r->body_case != TUMA__V1__ENVELOPE__BODY_TRANSFER_RESULT) {
    unsigned code = r->body_case == TUMA__V1__ENVELOPE__BODY_ERROR ? r->error->code : 0;
    snprintf(out, outlen, "%s (corr %llu, code %u)", body_name(r->body_case),
             (unsigned long long)r->correlation_id, code);
    return;
  }
  const Tuma__V1__TransferResult *m = r->transfer_result;
  snprintf(out, outlen, "transfer_result corr %llu state %s code %u id %02x%02x..%02x%02x",
           (unsigned long long)r->correlation_id, state_name(m->state),
           m->error ? m->error->code : 0, m->transfer_id.len > 1 ? m->transfer_id.data[0] : 0,
           m->transfer_id.len > 1 ? m->transfer_id.data[1] : 0,
           m->transfer_id.len == 16 ? m->transfer_id.data[14] : 0,
           m->transfer_id.len == 16 ? m->transfer_id.data[15] : 0);
}


/* The next envelope on c is the TransferResult w; returns it (the caller frees). */
static Tuma__V1__Envelope *expect_result_env(tc_client *c, const char *who, const want_result *w,
                                             int timeout_ms) {
  Tuma__V1__Envelope *r = recv_env(c, who, timeout_ms);
  char got[160];
  describe_result(r, got, sizeof got);
  cr_assert(r->body_case == TUMA__V1__ENVELOPE__BODY_TRANSFER_RESULT && result_matches(r, w),
            "%s: expected transfer_result corr %llu state %s code %u, got %s", who,
            (unsigned long long)w->corr, state_name(w->state), w->code, got);
  if (w->state != ST_RESERVED)
    cr_assert_gt(r->transfer_result->completed_at_ms, 0, "%s: completed_at_ms set", who);
  return r;
}

static void expect_result(tc_client *c, const char *who, uint64_t corr, const uint8_t id[16],
                          int state, unsigned code) {
  want_result w = {corr, id, state, code};
  tuma__v1__envelope__free_unpacked(expect_result_env(c, who, &w, T_ANSWER), NULL);
}

static void expect_error(tc_client *c, const char *who, uint64_t corr, unsigned code) {
  Tuma__V1__Envelope *r = recv_env(c, who, T_ANSWER);
  char got[160];
  describe_result(r, got, sizeof got);
  cr_assert(r->body_case == TUMA__V1__ENVELOPE__BODY_ERROR && r->correlation_id == corr &&
                r->error->code == code,
            "%s: expected error %u corr %llu, got %s", who, code, (unsigned long long)corr, got);
  tuma__v1__envelope__free_unpacked(r, NULL);
}

/* Nothing arrives on c for ms milliseconds (and it stays open). */
static void expect_silence(tc_client *c, const char *who, int ms) {
  Tuma__V1__Envelope *r = NULL;
  int rc = tc_recv(c, ms, &r);
  char got[160] = "";
  if (r)
    describe_result(r, got, sizeof got);
  cr_assert_eq(rc, TC_E_TIMEOUT, "%s: expected nothing for %d ms, got %s %s", who, ms,
               tc_strerror(rc), got);
}

/* The switch closes c within ms (whatever it sends first is discarded). */
static void expect_closed(tc_client *c, const char *who, int ms) {
  int rc = tc_wait_closed(c, ms, NULL);
  cr_assert_eq(rc, TC_OK, "%s: expected the switch to close the connection within %d ms: %s", who,
               ms, tc_strerror(rc));
}

/* The next envelope on c is a TransferForward of id; returns its correlation id. */
static uint64_t expect_forward(tc_client *c, const char *who, const uint8_t id[16],
                               const char *payer, uint64_t amount) {
  Tuma__V1__Envelope *r = recv_env(c, who, T_ANSWER);
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

static Tuma__V1__AdminEnvelope *admin_call(it_ctx *t, tc_client *adm,
                                           Tuma__V1__AdminEnvelope *env) {
  env->correlation_id = ++t->admin_corr + 1000;
  int rc = tc_send_admin(adm, env);
  cr_assert_eq(rc, TC_OK, "admin: send %s: %s", admin_body_name(env->body_case), tc_strerror(rc));
  Tuma__V1__AdminEnvelope *r = NULL;
  rc = tc_recv_admin(adm, T_ANSWER, &r);
  cr_assert_eq(rc, TC_OK, "admin: no answer to %s: %s (%s)", admin_body_name(env->body_case),
               tc_strerror(rc), tc_last_error(adm));
  cr_assert_eq(r->correlation_id, env->correlation_id, "admin: answer's correlation id");
  return r;
}

/* Sends an admin request answered by AdminResult; returns its error code (0 = done). */
static unsigned admin_result(it_ctx *t, tc_client *adm, Tuma__V1__AdminEnvelope *env) {
  Tuma__V1__AdminEnvelope *r = admin_call(t, adm, env);
  cr_assert_eq(r->body_case, TUMA__V1__ADMIN_ENVELOPE__BODY_ADMIN_RESULT,
               "admin: expected admin_result, got %s", admin_body_name(r->body_case));
  unsigned code = r->admin_result->error ? r->admin_result->error->code : 0;
  tuma__v1__admin_envelope__free_unpacked(r, NULL);
  return code;
}

typedef struct position {
  uint64_t liquidity, reserved, available, cap;
  int64_t net;
} position;

static position get_position(it_ctx *t, tc_client *adm, const char *participant) {
  Tuma__V1__AdminEnvelope env = TUMA__V1__ADMIN_ENVELOPE__INIT;
  Tuma__V1__PositionsQuery q = TUMA__V1__POSITIONS_QUERY__INIT;
  q.participant_id = (char *)participant;
  env.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_POSITIONS_QUERY;
  env.positions_query = &q;
  Tuma__V1__AdminEnvelope *r = admin_call(t, adm, &env);
  cr_assert_eq(r->body_case, TUMA__V1__ADMIN_ENVELOPE__BODY_POSITIONS_RESULT,
               "admin: expected positions_result, got %s", admin_body_name(r->body_case));
  const Tuma__V1__PositionsResult *res = r->positions_result;
  cr_assert_eq(res->n_positions, 1, "positions of %s: one currency", participant);
  const Tuma__V1__Position *p = res->positions[0];
  cr_assert_str_eq(p->participant_id, participant);
  cr_assert_str_eq(p->currency, "KES");
  position out = {p->liquidity, p->reserved, p->available, p->net_debit_cap, p->net_position};
  cr_assert_eq(out.available, out.liquidity - out.reserved, "%s: available = liquidity - reserved",
               participant);
  tuma__v1__admin_envelope__free_unpacked(r, NULL);
  return out;
}

static unsigned set_status(it_ctx *t, tc_client *adm, const char *participant, int status) {
  Tuma__V1__AdminEnvelope env = TUMA__V1__ADMIN_ENVELOPE__INIT;
  Tuma__V1__ParticipantSetStatus m = TUMA__V1__PARTICIPANT_SET_STATUS__INIT;
  m.participant_id = (char *)participant;
  m.status = status;
  env.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_PARTICIPANT_SET_STATUS;
  env.participant_set_status = &m;
  return admin_result(t, adm, &env);
}

static unsigned liquidity(it_ctx *t, tc_client *adm, const uint8_t id[16], const char *participant,
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
  return admin_result(t, adm, &env);
}

/* The participant's entry in ParticipantList; fails the test if it is not listed. */
static void list_entry(it_ctx *t, tc_client *adm, const char *participant, int *status,
                       int *connected) {
  Tuma__V1__AdminEnvelope env = TUMA__V1__ADMIN_ENVELOPE__INIT;
  Tuma__V1__ParticipantList m = TUMA__V1__PARTICIPANT_LIST__INIT;
  env.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_PARTICIPANT_LIST;
  env.participant_list = &m;
  Tuma__V1__AdminEnvelope *r = admin_call(t, adm, &env);
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

/* ================================================================ two-phase transfers */

Test(switch, happy_path) {
  it_ctx *t = it_start(NULL);
  tc_client *a = op_connect(t, "alpha"), *b = op_connect(t, "beta");
  tc_client *adm = admin_connect(t);
  position a0 = get_position(t, adm, "alpha"), b0 = get_position(t, adm, "beta");
  cr_assert_eq(a0.liquidity, SH_DEPOSIT, "alpha's initial deposit");
  cr_assert_eq(b0.liquidity, SH_DEPOSIT, "beta's initial deposit");
  cr_assert_eq(a0.reserved, 0);
  cr_assert_eq(a0.net, 0);

  uint8_t id[16];
  new_id(id);
  prep p = simple(id, "beta", 1500);
  p.payer_type = PT_MSISDN;
  p.payer_id = "254700000001";
  p.payee_type = PT_MSISDN;
  p.payee_id = "254711000002";
  p.reference = "invoice 42";
  p.expiration_ms = sh_now_ms() + 30000;
  send_prepare(a, "alpha", 11, &p);

  Tuma__V1__Envelope *f = recv_env(b, "beta", T_ANSWER);
  cr_assert_eq(f->body_case, TUMA__V1__ENVELOPE__BODY_TRANSFER_FORWARD, "beta: got %s",
               body_name(f->body_case));
  const Tuma__V1__TransferForward *fw = f->transfer_forward;
  cr_assert(fw->transfer_id.len == 16 && !memcmp(fw->transfer_id.data, id, 16));
  cr_assert_str_eq(fw->payer_participant, "alpha");
  cr_assert_str_eq(fw->amount->currency, "KES");
  cr_assert_eq(fw->amount->amount, 1500);
  cr_assert_eq(fw->expiration_ms, p.expiration_ms);
  cr_assert_str_eq(fw->reference, "invoice 42");
  cr_assert_not_null(fw->payer);
  cr_assert_str_eq(fw->payer->id, "254700000001");
  cr_assert_not_null(fw->payee);
  cr_assert_str_eq(fw->payee->id, "254711000002");
  cr_assert_eq(fw->condition.len, 0);
  tuma__v1__envelope__free_unpacked(f, NULL);

  /* Reserved while the payee decides. */
  position a1 = get_position(t, adm, "alpha");
  cr_assert_eq(a1.reserved, 1500, "alpha's reservation");
  cr_assert_eq(a1.liquidity, SH_DEPOSIT);
  cr_assert_eq(a1.available, SH_DEPOSIT - 1500);

  send_fulfil(b, "beta", 21, id, FS_COMMITTED, NULL, 0);
  want_result wa = {11, id, ST_COMMITTED, 0};
  Tuma__V1__Envelope *ra = expect_result_env(a, "alpha", &wa, T_ANSWER);
  cr_assert_eq(ra->transfer_result->fulfilment.len, 0, "no condition, no fulfilment");
  tuma__v1__envelope__free_unpacked(ra, NULL);
  expect_result(b, "beta", 21, id, ST_COMMITTED, 0);
  track(t, id, ST_COMMITTED, "happy");

  position a2 = get_position(t, adm, "alpha"), b2 = get_position(t, adm, "beta");
  cr_assert_eq(a2.liquidity, SH_DEPOSIT - 1500);
  cr_assert_eq(a2.reserved, 0);
  cr_assert_eq(a2.net, 1500, "alpha owes what it sent");
  cr_assert_eq(b2.liquidity, SH_DEPOSIT + 1500);
  cr_assert_eq(b2.net, -1500);

  /* Both sides may query it; a third participant may not. */
  send_query(a, "alpha", 12, id);
  expect_result(a, "alpha", 12, id, ST_COMMITTED, 0);
  send_query(b, "beta", 22, id);
  expect_result(b, "beta", 22, id, ST_COMMITTED, 0);
  tc_client *g = op_connect(t, "gamma");
  send_query(g, "gamma", 31, id);
  expect_error(g, "gamma", 31, 3208);
  expect_silence(a, "alpha", T_SILENCE);
  expect_silence(b, "beta", T_SILENCE);
  it_finish(t);
}

Test(switch, routing_by_party) {
  it_ctx *t = it_start(NULL);
  tc_client *a = op_connect(t, "alpha"), *b = op_connect(t, "beta");

  /* beta registers a wallet outside every prefix. */
  Tuma__V1__Envelope env = TUMA__V1__ENVELOPE__INIT;
  Tuma__V1__PartyRegister reg = TUMA__V1__PARTY_REGISTER__INIT;
  Tuma__V1__Party party = TUMA__V1__PARTY__INIT;
  Tuma__V1__Party *parties[1] = {&party};
  party.type = PT_MSISDN;
  party.id = (char *)"255700000001";
  reg.n_parties = 1;
  reg.parties = parties;
  env.correlation_id = 5;
  env.body_case = TUMA__V1__ENVELOPE__BODY_PARTY_REGISTER;
  env.party_register = &reg;
  send_env(b, "beta", &env);
  Tuma__V1__Envelope *r = recv_env(b, "beta", T_ANSWER);
  cr_assert_eq(r->body_case, TUMA__V1__ENVELOPE__BODY_PARTY_REGISTERED, "beta: got %s",
               body_name(r->body_case));
  cr_assert_eq(r->correlation_id, 5);
  cr_assert_eq(r->party_registered->registered, 1);
  tuma__v1__envelope__free_unpacked(r, NULL);

  /* alpha looks it up, and an unknown one. */
  Tuma__V1__PartyLookup look = TUMA__V1__PARTY_LOOKUP__INIT;
  look.party = &party;
  env = (Tuma__V1__Envelope)TUMA__V1__ENVELOPE__INIT;
  env.correlation_id = 6;
  env.body_case = TUMA__V1__ENVELOPE__BODY_PARTY_LOOKUP;
  env.party_lookup = &look;
  send_env(a, "alpha", &env);
  r = recv_env(a, "alpha", T_ANSWER);
  cr_assert_eq(r->body_case, TUMA__V1__ENVELOPE__BODY_PARTY_LOOKUP_RESULT);
  cr_assert_eq(r->correlation_id, 6);
  cr_assert_str_eq(r->party_lookup_result->participant_id, "beta");
  cr_assert(!r->party_lookup_result->error || r->party_lookup_result->error->code == 0);
  tuma__v1__envelope__free_unpacked(r, NULL);
  Tuma__V1__Party unknown = TUMA__V1__PARTY__INIT;
  unknown.type = PT_MSISDN;
  unknown.id = (char *)"15550001111";
  look.party = &unknown;
  env.correlation_id = 7;
  send_env(a, "alpha", &env);
  r = recv_env(a, "alpha", T_ANSWER);
  cr_assert_eq(r->body_case, TUMA__V1__ENVELOPE__BODY_PARTY_LOOKUP_RESULT);
  cr_assert_str_eq(r->party_lookup_result->participant_id, "");
  cr_assert(r->party_lookup_result->error && r->party_lookup_result->error->code == 3204);
  tuma__v1__envelope__free_unpacked(r, NULL);

  /* Prepare by party only: routed to beta by the registration. */
  uint8_t id1[16];
  new_id(id1);
  prep p = simple(id1, NULL, 700);
  p.payee_type = PT_MSISDN;
  p.payee_id = "255700000001";
  send_prepare(a, "alpha", 8, &p);
  Tuma__V1__Envelope *f = recv_env(b, "beta", T_ANSWER);
  cr_assert_eq(f->body_case, TUMA__V1__ENVELOPE__BODY_TRANSFER_FORWARD, "beta: got %s",
               body_name(f->body_case));
  cr_assert(!memcmp(f->transfer_forward->transfer_id.data, id1, 16));
  cr_assert_not_null(f->transfer_forward->payee);
  cr_assert_eq(f->transfer_forward->payee->type, PT_MSISDN);
  cr_assert_str_eq(f->transfer_forward->payee->id, "255700000001");
  tuma__v1__envelope__free_unpacked(f, NULL);
  send_fulfil(b, "beta", 50, id1, FS_COMMITTED, NULL, 0);
  expect_result(a, "alpha", 8, id1, ST_COMMITTED, 0);
  expect_result(b, "beta", 50, id1, ST_COMMITTED, 0);
  track(t, id1, ST_COMMITTED, "by registered party");

  /* An MSISDN with no entry routes by beta's prefix 25471. */
  uint8_t id2[16];
  new_id(id2);
  p = simple(id2, NULL, 800);
  p.payee_type = PT_MSISDN;
  p.payee_id = "254719999999";
  send_prepare(a, "alpha", 9, &p);
  expect_forward(b, "beta", id2, "alpha", 800);
  send_fulfil(b, "beta", 51, id2, FS_COMMITTED, NULL, 0);
  expect_result(a, "alpha", 9, id2, ST_COMMITTED, 0);
  expect_result(b, "beta", 51, id2, ST_COMMITTED, 0);
  track(t, id2, ST_COMMITTED, "by MSISDN prefix");

  /* The scheme operator points a national ID at gamma, then removes it. */
  tc_client *adm = admin_connect(t);
  Tuma__V1__Party nid = TUMA__V1__PARTY__INIT;
  nid.type = PT_NATIONAL_ID;
  nid.id = (char *)"KE-77777777";
  Tuma__V1__AdminEnvelope aenv = TUMA__V1__ADMIN_ENVELOPE__INIT;
  Tuma__V1__PartyDirectoryUpsert up = TUMA__V1__PARTY_DIRECTORY_UPSERT__INIT;
  up.party = &nid;
  up.participant_id = (char *)"gamma";
  aenv.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_PARTY_DIRECTORY_UPSERT;
  aenv.party_directory_upsert = &up;
  cr_assert_eq(admin_result(t, adm, &aenv), 0, "directory upsert");
  look.party = &nid;
  env.correlation_id = 10;
  env.body_case = TUMA__V1__ENVELOPE__BODY_PARTY_LOOKUP;
  env.party_lookup = &look;
  send_env(a, "alpha", &env);
  r = recv_env(a, "alpha", T_ANSWER);
  cr_assert_eq(r->body_case, TUMA__V1__ENVELOPE__BODY_PARTY_LOOKUP_RESULT);
  cr_assert_str_eq(r->party_lookup_result->participant_id, "gamma");
  tuma__v1__envelope__free_unpacked(r, NULL);
  Tuma__V1__PartyDirectoryRemove rm = TUMA__V1__PARTY_DIRECTORY_REMOVE__INIT;
  rm.party = &nid;
  aenv = (Tuma__V1__AdminEnvelope)TUMA__V1__ADMIN_ENVELOPE__INIT;
  aenv.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_PARTY_DIRECTORY_REMOVE;
  aenv.party_directory_remove = &rm;
  cr_assert_eq(admin_result(t, adm, &aenv), 0, "directory remove");
  cr_assert_eq(admin_result(t, adm, &aenv), 3204, "removing it again: 3204");
  env.correlation_id = 11;
  send_env(a, "alpha", &env);
  r = recv_env(a, "alpha", T_ANSWER);
  cr_assert_eq(r->body_case, TUMA__V1__ENVELOPE__BODY_PARTY_LOOKUP_RESULT);
  cr_assert_str_eq(r->party_lookup_result->participant_id, "");
  cr_assert(r->party_lookup_result->error && r->party_lookup_result->error->code == 3204);
  tuma__v1__envelope__free_unpacked(r, NULL);
  it_finish(t);
}

Test(switch, condition_and_good_fulfilment) {
  it_ctx *t = it_start(NULL);
  tc_client *a = op_connect(t, "alpha"), *b = op_connect(t, "beta");
  uint8_t id[16], ful[32], cond[32];
  new_id(id);
  cr_assert_eq(RAND_bytes(ful, sizeof ful), 1);
  SHA256(ful, sizeof ful, cond);
  prep p = simple(id, "beta", 2500);
  p.condition = cond;
  send_prepare(a, "alpha", 3, &p);
  Tuma__V1__Envelope *f = recv_env(b, "beta", T_ANSWER);
  cr_assert_eq(f->body_case, TUMA__V1__ENVELOPE__BODY_TRANSFER_FORWARD);
  cr_assert_eq(f->transfer_forward->condition.len, 32, "the forward carries the condition");
  cr_assert_arr_eq(f->transfer_forward->condition.data, cond, 32);
  tuma__v1__envelope__free_unpacked(f, NULL);
  send_fulfil(b, "beta", 4, id, FS_COMMITTED, ful, 0);
  want_result w = {3, id, ST_COMMITTED, 0};
  Tuma__V1__Envelope *r = expect_result_env(a, "alpha", &w, T_ANSWER);
  cr_assert_eq(r->transfer_result->fulfilment.len, 32, "the payer gets the fulfilment");
  cr_assert_arr_eq(r->transfer_result->fulfilment.data, ful, 32);
  tuma__v1__envelope__free_unpacked(r, NULL);
  expect_result(b, "beta", 4, id, ST_COMMITTED, 0);
  track(t, id, ST_COMMITTED, "good fulfilment");
  it_finish(t);
}

Test(switch, condition_and_bad_fulfilment) {
  it_ctx *t = it_start(NULL);
  tc_client *a = op_connect(t, "alpha"), *b = op_connect(t, "beta");
  tc_client *adm = admin_connect(t);
  uint8_t ful[32], cond[32], wrong[32];
  cr_assert_eq(RAND_bytes(ful, sizeof ful), 1);
  SHA256(ful, sizeof ful, cond);
  memcpy(wrong, ful, 32);
  wrong[31] ^= 1;

  /* A wrong fulfilment. */
  uint8_t id1[16];
  new_id(id1);
  prep p = simple(id1, "beta", 2500);
  p.condition = cond;
  send_prepare(a, "alpha", 3, &p);
  expect_forward(b, "beta", id1, "alpha", 2500);
  send_fulfil(b, "beta", 4, id1, FS_COMMITTED, wrong, 0);
  expect_result(a, "alpha", 3, id1, ST_ABORTED, 3100);
  expect_result(b, "beta", 4, id1, ST_ABORTED, 3100);
  track(t, id1, ST_ABORTED, "wrong fulfilment");

  /* No fulfilment at all. */
  uint8_t id2[16];
  new_id(id2);
  p = simple(id2, "beta", 2600);
  p.condition = cond;
  send_prepare(a, "alpha", 5, &p);
  expect_forward(b, "beta", id2, "alpha", 2600);
  send_fulfil(b, "beta", 6, id2, FS_COMMITTED, NULL, 0);
  expect_result(a, "alpha", 5, id2, ST_ABORTED, 3100);
  expect_result(b, "beta", 6, id2, ST_ABORTED, 3100);
  track(t, id2, ST_ABORTED, "missing fulfilment");

  position pa = get_position(t, adm, "alpha"), pb = get_position(t, adm, "beta");
  cr_assert_eq(pa.liquidity, SH_DEPOSIT, "nothing moved");
  cr_assert_eq(pa.reserved, 0, "the reservations were released");
  cr_assert_eq(pb.liquidity, SH_DEPOSIT);
  it_finish(t);
}

Test(switch, payee_rejects) {
  it_ctx *t = it_start(NULL);
  tc_client *a = op_connect(t, "alpha"), *b = op_connect(t, "beta");
  tc_client *adm = admin_connect(t);
  uint8_t id1[16], id2[16], id3[16];
  new_id(id1);
  new_id(id2);
  new_id(id3);
  prep p = simple(id1, "beta", 4000);
  send_prepare(a, "alpha", 1, &p);
  expect_forward(b, "beta", id1, "alpha", 4000);
  cr_assert_eq(get_position(t, adm, "alpha").reserved, 4000);
  send_fulfil(b, "beta", 2, id1, FS_ABORTED, NULL, 5105);
  expect_result(a, "alpha", 1, id1, ST_ABORTED, 5105);
  expect_result(b, "beta", 2, id1, ST_ABORTED, 5105);
  track(t, id1, ST_ABORTED, "rejected 5105");

  /* Another payee code (5xxx) is passed on as it is. */
  p = simple(id2, "beta", 4100);
  send_prepare(a, "alpha", 3, &p);
  expect_forward(b, "beta", id2, "alpha", 4100);
  send_fulfil(b, "beta", 4, id2, FS_ABORTED, NULL, 5100);
  expect_result(a, "alpha", 3, id2, ST_ABORTED, 5100);
  expect_result(b, "beta", 4, id2, ST_ABORTED, 5100);
  track(t, id2, ST_ABORTED, "rejected 5100");

  /* A code outside 5000-5999 becomes 5105. */
  p = simple(id3, "beta", 4200);
  send_prepare(a, "alpha", 5, &p);
  expect_forward(b, "beta", id3, "alpha", 4200);
  send_fulfil(b, "beta", 6, id3, FS_ABORTED, NULL, 3204);
  expect_result(a, "alpha", 5, id3, ST_ABORTED, 5105);
  expect_result(b, "beta", 6, id3, ST_ABORTED, 5105);
  track(t, id3, ST_ABORTED, "rejected 3204 -> 5105");

  position pa = get_position(t, adm, "alpha");
  cr_assert_eq(pa.liquidity, SH_DEPOSIT, "funds released");
  cr_assert_eq(pa.reserved, 0);
  cr_assert_eq(pa.net, 0);
  cr_assert_eq(get_position(t, adm, "beta").liquidity, SH_DEPOSIT);
  it_finish(t);
}

Test(switch, expiry) {
  it_ctx *t = it_start(NULL);
  tc_client *a = op_connect(t, "alpha"), *b = op_connect(t, "beta");
  tc_client *adm = admin_connect(t);
  uint8_t id[16];
  new_id(id);
  prep p = simple(id, "beta", 3000);
  p.expiration_ms = sh_now_ms() + 1500;
  send_prepare(a, "alpha", 70, &p);
  uint64_t fcorr = expect_forward(b, "beta", id, "alpha", 3000);
  /* beta never answers: both hear of the expiry, not before the expiration. */
  want_result wa = {70, id, ST_EXPIRED, 3303};
  Tuma__V1__Envelope *r = expect_result_env(a, "alpha", &wa, 6000);
  cr_assert_geq(sh_now_ms(), p.expiration_ms, "not expired before its expiration");
  cr_assert_geq(r->transfer_result->completed_at_ms, p.expiration_ms);
  tuma__v1__envelope__free_unpacked(r, NULL);
  expect_result(b, "beta", fcorr, id, ST_EXPIRED, 3303);
  track(t, id, ST_EXPIRED, "expired");

  /* A late fulfil, a query and a retried prepare all say EXPIRED. */
  send_fulfil(b, "beta", 71, id, FS_COMMITTED, NULL, 0);
  expect_result(b, "beta", 71, id, ST_EXPIRED, 3303);
  send_query(a, "alpha", 72, id);
  expect_result(a, "alpha", 72, id, ST_EXPIRED, 3303);
  send_prepare(a, "alpha", 73, &p);
  expect_result(a, "alpha", 73, id, ST_EXPIRED, 3303);
  expect_silence(b, "beta", T_SILENCE);

  position pa = get_position(t, adm, "alpha");
  cr_assert_eq(pa.liquidity, SH_DEPOSIT);
  cr_assert_eq(pa.reserved, 0, "the reservation was released");
  it_finish(t);
}

Test(switch, duplicates) {
  it_ctx *t = it_start(NULL);
  tc_client *a = op_connect(t, "alpha"), *b = op_connect(t, "beta");
  tc_client *adm = admin_connect(t);
  uint8_t id[16];
  new_id(id);
  prep p = simple(id, "beta", 1234);
  p.expiration_ms = sh_now_ms() + 30000;
  p.reference = "dup";
  send_prepare(a, "alpha", 1, &p);
  expect_forward(b, "beta", id, "alpha", 1234);

  /* Same id, same content, in flight: RESERVED, and no second forward. */
  send_prepare(a, "alpha", 2, &p);
  expect_result(a, "alpha", 2, id, ST_RESERVED, 0);
  expect_silence(b, "beta", T_SILENCE);

  /* Same id, different content: 3106; the transfer itself is unaffected. */
  prep q = p;
  q.amount = 1235;
  send_prepare(a, "alpha", 3, &q);
  want_result w3 = {3, id, ST_ABORTED, 3106};
  Tuma__V1__Envelope *r = recv_env(a, "alpha", T_ANSWER);
  cr_assert_eq(r->body_case, TUMA__V1__ENVELOPE__BODY_TRANSFER_RESULT);
  cr_assert_eq(r->correlation_id, w3.corr);
  cr_assert(r->transfer_result->error && r->transfer_result->error->code == 3106,
            "modified request: 3106");
  tuma__v1__envelope__free_unpacked(r, NULL);
  q = p;
  q.reference = "dup, changed";
  send_prepare(a, "alpha", 4, &q);
  r = recv_env(a, "alpha", T_ANSWER);
  cr_assert_eq(r->body_case, TUMA__V1__ENVELOPE__BODY_TRANSFER_RESULT);
  cr_assert(r->transfer_result->error && r->transfer_result->error->code == 3106,
            "modified reference: 3106");
  tuma__v1__envelope__free_unpacked(r, NULL);
  expect_silence(b, "beta", T_SILENCE);
  cr_assert_eq(get_position(t, adm, "alpha").reserved, 1234, "reserved once");

  /* The payee commits: the original prepare gets the outcome. */
  send_fulfil(b, "beta", 10, id, FS_COMMITTED, NULL, 0);
  expect_result(a, "alpha", 1, id, ST_COMMITTED, 0);
  expect_result(b, "beta", 10, id, ST_COMMITTED, 0);
  track(t, id, ST_COMMITTED, "duplicated");

  /* After the commit: the same prepare gets COMMITTED; a changed one 3106; a repeated fulfil
   * the final state. */
  send_prepare(a, "alpha", 5, &p);
  expect_result(a, "alpha", 5, id, ST_COMMITTED, 0);
  q = p;
  q.amount = 999;
  send_prepare(a, "alpha", 6, &q);
  r = recv_env(a, "alpha", T_ANSWER);
  cr_assert_eq(r->body_case, TUMA__V1__ENVELOPE__BODY_TRANSFER_RESULT);
  cr_assert_eq(r->correlation_id, 6);
  cr_assert(r->transfer_result->error && r->transfer_result->error->code == 3106,
            "modified after commit: 3106");
  tuma__v1__envelope__free_unpacked(r, NULL);
  send_fulfil(b, "beta", 11, id, FS_COMMITTED, NULL, 0);
  expect_result(b, "beta", 11, id, ST_COMMITTED, 0);
  expect_silence(b, "beta", T_SILENCE);

  position pa = get_position(t, adm, "alpha");
  cr_assert_eq(pa.liquidity, SH_DEPOSIT - 1234, "debited once");
  cr_assert_eq(pa.reserved, 0);

  /* A payer that retries after a long outage resends a prepare whose expiration has passed:
   * it must still learn the outcome (COMMITTED), not a validation error. */
  uint8_t id2[16];
  new_id(id2);
  prep p2 = simple(id2, "beta", 321);
  p2.expiration_ms = sh_now_ms() + 1000;
  send_prepare(a, "alpha", 7, &p2);
  expect_forward(b, "beta", id2, "alpha", 321);
  send_fulfil(b, "beta", 12, id2, FS_COMMITTED, NULL, 0);
  expect_result(a, "alpha", 7, id2, ST_COMMITTED, 0);
  expect_result(b, "beta", 12, id2, ST_COMMITTED, 0);
  track(t, id2, ST_COMMITTED, "retried after its expiration");
  while (sh_now_ms() <= p2.expiration_ms + 100)
    sleep_ms(50);
  send_prepare(a, "alpha", 8, &p2);
  expect_result(a, "alpha", 8, id2, ST_COMMITTED, 0);
  it_finish(t);
}

/* ================================================================ limits and refusals */

Test(switch, liquidity_limit) {
  it_ctx *t = it_start(NULL);
  tc_client *a = op_connect(t, "alpha"), *b = op_connect(t, "beta");
  tc_client *adm = admin_connect(t);
  uint8_t id1[16], id2[16], id3[16];
  new_id(id1);
  new_id(id2);
  new_id(id3);
  prep p = simple(id1, "beta", SH_DEPOSIT + 1);
  send_prepare(a, "alpha", 1, &p);
  expect_result(a, "alpha", 1, id1, ST_ABORTED, 4001);
  expect_silence(b, "beta", T_SILENCE);
  track(t, id1, ST_ABORTED, "above liquidity");

  /* Exactly all of it is allowed… */
  p = simple(id2, "beta", SH_DEPOSIT);
  send_prepare(a, "alpha", 2, &p);
  expect_forward(b, "beta", id2, "alpha", SH_DEPOSIT);
  /* …and while it is reserved, nothing more. */
  p = simple(id3, "beta", 1);
  send_prepare(a, "alpha", 3, &p);
  expect_result(a, "alpha", 3, id3, ST_ABORTED, 4001);
  track(t, id3, ST_ABORTED, "nothing left");
  send_fulfil(b, "beta", 20, id2, FS_COMMITTED, NULL, 0);
  expect_result(a, "alpha", 2, id2, ST_COMMITTED, 0);
  expect_result(b, "beta", 20, id2, ST_COMMITTED, 0);
  track(t, id2, ST_COMMITTED, "all of it");
  position pa = get_position(t, adm, "alpha");
  cr_assert_eq(pa.liquidity, 0);
  cr_assert_eq(pa.available, 0);
  it_finish(t);
}

Test(switch, net_debit_cap) {
  it_ctx *t = it_start(NULL);
  tc_client *g = op_connect(t, "gamma"), *a = op_connect(t, "alpha");
  tc_client *adm = admin_connect(t);
  cr_assert_eq(get_position(t, adm, "gamma").cap, SH_GAMMA_CAP, "gamma's configured cap");
  uint8_t id[5][16];
  for (int i = 0; i < 5; i++)
    new_id(id[i]);

  prep p = simple(id[0], "alpha", 3000);
  send_prepare(g, "gamma", 1, &p);
  expect_forward(a, "alpha", id[0], "gamma", 3000);
  send_fulfil(a, "alpha", 101, id[0], FS_COMMITTED, NULL, 0);
  expect_result(g, "gamma", 1, id[0], ST_COMMITTED, 0);
  expect_result(a, "alpha", 101, id[0], ST_COMMITTED, 0);
  track(t, id[0], ST_COMMITTED, "ndc 3000");

  /* 3000 + 2500 > 5000: refused by the cap, although liquidity would allow it. */
  p = simple(id[1], "alpha", 2500);
  send_prepare(g, "gamma", 2, &p);
  expect_result(g, "gamma", 2, id[1], ST_ABORTED, 4200);
  expect_silence(a, "alpha", T_SILENCE);
  track(t, id[1], ST_ABORTED, "ndc exceeded");

  /* 3000 + 2000 = 5000: up to the cap exactly. */
  p = simple(id[2], "alpha", 2000);
  send_prepare(g, "gamma", 3, &p);
  expect_forward(a, "alpha", id[2], "gamma", 2000);
  send_fulfil(a, "alpha", 102, id[2], FS_COMMITTED, NULL, 0);
  expect_result(g, "gamma", 3, id[2], ST_COMMITTED, 0);
  expect_result(a, "alpha", 102, id[2], ST_COMMITTED, 0);
  track(t, id[2], ST_COMMITTED, "ndc to the cap");
  position pg = get_position(t, adm, "gamma");
  cr_assert_eq(pg.net, 5000);
  cr_assert_eq(pg.liquidity, SH_DEPOSIT - 5000);

  /* Receiving 1000 makes room for 1000. */
  p = simple(id[3], "gamma", 1000);
  send_prepare(a, "alpha", 4, &p);
  expect_forward(g, "gamma", id[3], "alpha", 1000);
  send_fulfil(g, "gamma", 103, id[3], FS_COMMITTED, NULL, 0);
  expect_result(a, "alpha", 4, id[3], ST_COMMITTED, 0);
  expect_result(g, "gamma", 103, id[3], ST_COMMITTED, 0);
  track(t, id[3], ST_COMMITTED, "ndc room");
  p = simple(id[4], "alpha", 1000);
  send_prepare(g, "gamma", 5, &p);
  expect_forward(a, "alpha", id[4], "gamma", 1000);
  send_fulfil(a, "alpha", 104, id[4], FS_COMMITTED, NULL, 0);
  expect_result(g, "gamma", 5, id[4], ST_COMMITTED, 0);
  expect_result(a, "alpha", 104, id[4], ST_COMMITTED, 0);
  track(t, id[4], ST_COMMITTED, "ndc reuse");
  cr_assert_eq(get_position(t, adm, "gamma").net, 5000);

  /* A cap below the net position is refused; a higher one makes room. */
  Tuma__V1__AdminEnvelope env = TUMA__V1__ADMIN_ENVELOPE__INIT;
  Tuma__V1__NetDebitCapSet m = TUMA__V1__NET_DEBIT_CAP_SET__INIT;
  Tuma__V1__Money cap = TUMA__V1__MONEY__INIT;
  cap.currency = (char *)"KES";
  cap.amount = 4000;
  m.participant_id = (char *)"gamma";
  m.cap = &cap;
  env.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_NET_DEBIT_CAP_SET;
  env.net_debit_cap_set = &m;
  cr_assert_eq(admin_result(t, adm, &env), 4200, "cap below the net position");
  cr_assert_eq(get_position(t, adm, "gamma").cap, SH_GAMMA_CAP, "cap unchanged");
  cap.amount = 8000;
  cr_assert_eq(admin_result(t, adm, &env), 0, "cap raised");
  cr_assert_eq(admin_result(t, adm, &env), 0, "the same cap again");
  cr_assert_eq(get_position(t, adm, "gamma").cap, 8000);
  uint8_t more[16];
  new_id(more);
  p = simple(more, "alpha", 3000);
  send_prepare(g, "gamma", 6, &p);
  expect_forward(a, "alpha", more, "gamma", 3000);
  send_fulfil(a, "alpha", 105, more, FS_COMMITTED, NULL, 0);
  expect_result(g, "gamma", 6, more, ST_COMMITTED, 0);
  expect_result(a, "alpha", 105, more, ST_COMMITTED, 0);
  track(t, more, ST_COMMITTED, "ndc raised");
  cr_assert_eq(get_position(t, adm, "gamma").net, 8000);
  it_finish(t);
}

Test(switch, pipelined_transfers) {
  enum { N = 40 };
  it_ctx *t = it_start(NULL);
  tc_client *a = op_connect(t, "alpha"), *b = op_connect(t, "beta");
  tc_client *adm = admin_connect(t);
  uint8_t ids[N][16];
  int got_forward[N] = {0}, got_result[N] = {0}, got_confirm[N] = {0};
  uint64_t sent = 0;
  for (int i = 0; i < N; i++) {
    new_id(ids[i]);
    prep p = simple(ids[i], "beta", 10 + (uint64_t)i);
    send_prepare(a, "alpha", 100 + (uint64_t)i, &p);
  }
  /* beta gets every forward once, in whatever order the ledger batches them. */
  for (int k = 0; k < N; k++) {
    Tuma__V1__Envelope *r = recv_env(b, "beta", T_ANSWER);
    cr_assert_eq(r->body_case, TUMA__V1__ENVELOPE__BODY_TRANSFER_FORWARD, "beta: got %s",
                 body_name(r->body_case));
    int i = 0;
    while (i < N && memcmp(r->transfer_forward->transfer_id.data, ids[i], 16))
      i++;
    cr_assert_lt(i, N, "a forward of a transfer alpha sent");
    cr_assert_eq(got_forward[i]++, 0, "forwarded once");
    cr_assert_eq(r->transfer_forward->amount->amount, 10 + (uint64_t)i);
    tuma__v1__envelope__free_unpacked(r, NULL);
  }
  /* Even ones committed, odd ones rejected, all pipelined. */
  for (int i = 0; i < N; i++) {
    send_fulfil(b, "beta", 500 + (uint64_t)i, ids[i], i % 2 ? FS_ABORTED : FS_COMMITTED, NULL,
                i % 2 ? 5105 : 0);
    if (i % 2 == 0)
      sent += 10 + (uint64_t)i;
  }
  for (int k = 0; k < N; k++) {
    Tuma__V1__Envelope *r = recv_env(a, "alpha", T_ANSWER);
    cr_assert_eq(r->body_case, TUMA__V1__ENVELOPE__BODY_TRANSFER_RESULT);
    int i = (int)r->correlation_id - 100;
    cr_assert(i >= 0 && i < N, "alpha: a result for one of its prepares (corr %llu)",
              (unsigned long long)r->correlation_id);
    cr_assert_eq(got_result[i]++, 0, "one result per prepare");
    cr_assert_arr_eq(r->transfer_result->transfer_id.data, ids[i], 16, "matched by correlation");
    cr_assert_eq(r->transfer_result->state, i % 2 ? ST_ABORTED : ST_COMMITTED);
    tuma__v1__envelope__free_unpacked(r, NULL);
    track(t, ids[i], i % 2 ? ST_ABORTED : ST_COMMITTED, "pipelined");
  }
  for (int k = 0; k < N; k++) {
    Tuma__V1__Envelope *r = recv_env(b, "beta", T_ANSWER);
    cr_assert_eq(r->body_case, TUMA__V1__ENVELOPE__BODY_TRANSFER_RESULT);
    int i = (int)r->correlation_id - 500;
    cr_assert(i >= 0 && i < N, "beta: a confirmation of one of its fulfils");
    cr_assert_eq(got_confirm[i]++, 0);
    cr_assert_arr_eq(r->transfer_result->transfer_id.data, ids[i], 16);
    cr_assert_eq(r->transfer_result->state, i % 2 ? ST_ABORTED : ST_COMMITTED);
    tuma__v1__envelope__free_unpacked(r, NULL);
  }
  position pa = get_position(t, adm, "alpha"), pb = get_position(t, adm, "beta");
  cr_assert_eq(pa.liquidity, SH_DEPOSIT - sent);
  cr_assert_eq(pa.reserved, 0);
  cr_assert_eq(pb.liquidity, SH_DEPOSIT + sent);
  /* /metrics counts them. */
  char body[16384];
  cr_assert_eq(sh_http_get(t->h, "/metrics", body, sizeof body), 200);
  cr_assert(strstr(body, "tuma_transfers_total{outcome=\"committed\"} 20\n") != NULL,
            "metrics: 20 committed:\n%s", body);
  cr_assert(strstr(body, "tuma_transfers_total{outcome=\"aborted\"} 20\n") != NULL,
            "metrics: 20 aborted");
  it_finish(t);
}

Test(switch, unknown_payee_participant) {
  it_ctx *t = it_start(NULL);
  tc_client *a = op_connect(t, "alpha"), *b = op_connect(t, "beta");
  uint8_t id[16];
  new_id(id);
  prep p = simple(id, "nobody", 100);
  send_prepare(a, "alpha", 1, &p);
  expect_result(a, "alpha", 1, id, ST_ABORTED, 3203);
  expect_silence(b, "beta", T_SILENCE);
  track(t, id, ST_ABORTED, "unknown payee");
  it_finish(t);
}

Test(switch, unknown_party) {
  it_ctx *t = it_start(NULL);
  tc_client *a = op_connect(t, "alpha"), *b = op_connect(t, "beta");
  uint8_t id1[16], id2[16];
  new_id(id1);
  new_id(id2);
  prep p = simple(id1, NULL, 100);
  p.payee_type = PT_MSISDN;
  p.payee_id = "15551234567"; /* no entry, no prefix */
  send_prepare(a, "alpha", 1, &p);
  expect_result(a, "alpha", 1, id1, ST_ABORTED, 3204);
  track(t, id1, ST_ABORTED, "unknown msisdn");
  p = simple(id2, NULL, 100);
  p.payee_type = PT_NATIONAL_ID;
  p.payee_id = "KE-12345678";
  send_prepare(a, "alpha", 2, &p);
  expect_result(a, "alpha", 2, id2, ST_ABORTED, 3204);
  track(t, id2, ST_ABORTED, "unknown national id");
  expect_silence(b, "beta", T_SILENCE);
  it_finish(t);
}

Test(switch, payee_offline) {
  it_ctx *t = it_start(NULL);
  tc_client *a = op_connect(t, "alpha");
  uint8_t id[16];
  new_id(id);
  prep p = simple(id, "gamma", 100);
  int64_t t0 = mono_ms();
  send_prepare(a, "alpha", 1, &p);
  expect_result(a, "alpha", 1, id, ST_ABORTED, 3201);
  cr_assert_lt(mono_ms() - t0, 2000, "refused at once, not at expiry");
  track(t, id, ST_ABORTED, "payee offline");
  it_finish(t);
}

Test(switch, suspended_participant) {
  it_ctx *t = it_start(NULL);
  tc_client *a = op_connect(t, "alpha"), *b = op_connect(t, "beta");
  tc_client *adm = admin_connect(t);
  cr_assert_eq(
      set_status(t, adm, "beta", TUMA__V1__PARTICIPANT_STATUS__PARTICIPANT_STATUS_SUSPENDED), 0);
  /* beta's live connection is cut off: 4300, then closed. */
  expect_error(b, "beta", 0, 4300);
  expect_closed(b, "beta", T_ANSWER);
  drop_client(t, b, 0);
  /* A new connection of beta is refused the same way. */
  tc_client *b2 = connect_as(t, t->h->port, t->h->ca, sh_cert(t->h, "beta"), sh_key(t->h, "beta"));
  expect_error(b2, "beta (new)", 0, 4300);
  expect_closed(b2, "beta (new)", T_ANSWER);
  drop_client(t, b2, 0);
  int status = 0, connected = 1;
  list_entry(t, adm, "beta", &status, &connected);
  cr_assert_eq(status, TUMA__V1__PARTICIPANT_STATUS__PARTICIPANT_STATUS_SUSPENDED);
  cr_assert_eq(connected, 0);
  /* Nobody can pay beta. */
  uint8_t id1[16];
  new_id(id1);
  prep p = simple(id1, "beta", 100);
  send_prepare(a, "alpha", 1, &p);
  expect_result(a, "alpha", 1, id1, ST_ABORTED, 5300);
  track(t, id1, ST_ABORTED, "payee suspended");

  /* Reactivated, beta connects and is paid again. */
  cr_assert_eq(set_status(t, adm, "beta", TUMA__V1__PARTICIPANT_STATUS__PARTICIPANT_STATUS_ACTIVE),
               0);
  tc_client *b3 = op_connect(t, "beta");
  uint8_t id2[16];
  new_id(id2);
  p = simple(id2, "beta", 100);
  send_prepare(a, "alpha", 2, &p);
  expect_forward(b3, "beta", id2, "alpha", 100);
  send_fulfil(b3, "beta", 9, id2, FS_COMMITTED, NULL, 0);
  expect_result(a, "alpha", 2, id2, ST_COMMITTED, 0);
  expect_result(b3, "beta", 9, id2, ST_COMMITTED, 0);
  track(t, id2, ST_COMMITTED, "after reactivation");
  it_finish(t);
}

Test(switch, spoofed_payer) {
  it_ctx *t = it_start(NULL);
  tc_client *a = op_connect(t, "alpha"), *b = op_connect(t, "beta");
  tc_client *adm = admin_connect(t);
  uint8_t id1[16], id2[16];
  new_id(id1);
  new_id(id2);
  prep p = simple(id1, "gamma", 100);
  p.payer_participant = "beta"; /* alpha claims to be beta */
  send_prepare(a, "alpha", 1, &p);
  expect_result(a, "alpha", 1, id1, ST_ABORTED, 3100);
  track(t, id1, ST_ABORTED, "spoofed payer");
  cr_assert_eq(get_position(t, adm, "beta").reserved, 0, "nothing reserved on beta");
  /* Naming itself is fine. */
  p = simple(id2, "beta", 100);
  p.payer_participant = "alpha";
  send_prepare(a, "alpha", 2, &p);
  expect_forward(b, "beta", id2, "alpha", 100);
  send_fulfil(b, "beta", 3, id2, FS_ABORTED, NULL, 5105);
  expect_result(a, "alpha", 2, id2, ST_ABORTED, 5105);
  expect_result(b, "beta", 3, id2, ST_ABORTED, 5105);
  track(t, id2, ST_ABORTED, "own name");
  it_finish(t);
}

/* ================================================================ certificates */

/* The switch refuses c's handshake: a request gets no answer, the connection closes. */
static void expect_refused_handshake(tc_client *c, const char *who) {
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
    rc = tc_recv(c, T_ANSWER, &r);
  else
    rc = tc_wait_closed(c, T_ANSWER, NULL) == TC_OK ? TC_E_CLOSED : TC_E_TIMEOUT;
  cr_assert(rc == TC_E_TLS || rc == TC_E_CLOSED,
            "%s: expected the handshake to be refused, got %s (%s)", who, tc_strerror(rc),
            r ? body_name(r->body_case) : "");
}

Test(switch, certificate_from_another_ca) {
  it_ctx *t = it_start(NULL);
  char other[SH_PATH_MAX + 16], other_ca[SH_PATH_MAX + 32], cert[SH_PATH_MAX + 32],
      key[SH_PATH_MAX + 32];
  snprintf(other, sizeof other, "%s/other", t->h->dir);
  const char *init[] = {"pki", "init", "--dir", other, NULL};
  cr_assert_eq(sh_run_cli(t->h, init, 10000), 0, "tuma pki init (another CA)");
  const char *issue[] = {"pki",   "issue",  "--dir",    other, "--name",
                         "alpha", "--role", "operator", NULL};
  cr_assert_eq(sh_run_cli(t->h, issue, 10000), 0, "tuma pki issue (another CA)");
  snprintf(other_ca, sizeof other_ca, "%s/ca.crt", other);
  snprintf(cert, sizeof cert, "%s/alpha.crt", other);
  snprintf(key, sizeof key, "%s/alpha.key", other);

  /* An "alpha" certificate from another CA: the switch refuses it. */
  tc_client *c = NULL;
  char err[300];
  int rc = tc_connect(t->h->port, t->h->ca, cert, key, T_ANSWER, &c, err, sizeof err);
  if (rc == TC_OK) {
    expect_refused_handshake(c, "alpha (other CA)");
    tc_close(c, 0);
  } else {
    cr_assert_eq(rc, TC_E_TLS, "handshake: %s: %s", tc_strerror(rc), err);
  }
  /* A client that trusts only the other CA does not accept the switch either. */
  rc = tc_connect(t->h->port, other_ca, cert, key, T_ANSWER, &c, err, sizeof err);
  cr_assert_eq(rc, TC_E_TLS, "the switch's certificate must not verify against another CA");
  cr_assert(strstr(err, "certificate verify failed") != NULL, "reason: %s", err);
  /* The real alpha is still welcome. */
  op_connect(t, "alpha");
  cr_assert(sh_log_contains(t->h, "TLS handshake failed"), "tumad logs the refused handshake");
  it_finish(t);
}

Test(switch, no_client_certificate) {
  it_ctx *t = it_start(NULL);
  tc_client *c = NULL;
  char err[300];
  int rc = tc_connect(t->h->port, t->h->ca, NULL, NULL, T_ANSWER, &c, err, sizeof err);
  if (rc == TC_OK) {
    expect_refused_handshake(c, "anonymous");
    tc_close(c, 0);
  } else {
    cr_assert_eq(rc, TC_E_TLS, "handshake: %s: %s", tc_strerror(rc), err);
  }
  /* Same on the admin port. */
  rc = tc_connect(t->h->admin_port, t->h->ca, NULL, NULL, T_ANSWER, &c, err, sizeof err);
  if (rc == TC_OK) {
    Tuma__V1__AdminEnvelope env = TUMA__V1__ADMIN_ENVELOPE__INIT;
    Tuma__V1__ParticipantList m = TUMA__V1__PARTICIPANT_LIST__INIT;
    env.correlation_id = 1;
    env.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_PARTICIPANT_LIST;
    env.participant_list = &m;
    tc_send_admin(c, &env);
    Tuma__V1__AdminEnvelope *r = NULL;
    rc = tc_recv_admin(c, T_ANSWER, &r);
    cr_assert(rc == TC_E_TLS || rc == TC_E_CLOSED, "admin without certificate: got %s",
              tc_strerror(rc));
    tc_close(c, 0);
  } else {
    cr_assert_eq(rc, TC_E_TLS, "admin handshake: %s: %s", tc_strerror(rc), err);
  }
  op_connect(t, "beta");
  it_finish(t);
}

Test(switch, certificate_roles) {
  it_ctx *t = it_start(NULL);
  /* An admin certificate on the operator port: 3100 and closed. */
  tc_client *c = connect_as(t, t->h->port, t->h->ca, sh_cert(t->h, "admin"), sh_key(t->h, "admin"));
  expect_error(c, "admin on operator port", 0, 3100);
  expect_closed(c, "admin on operator port", T_ANSWER);
  /* An operator certificate on the admin port: AdminResult 3100 and closed. */
  c = connect_as(t, t->h->admin_port, t->h->ca, sh_cert(t->h, "alpha"), sh_key(t->h, "alpha"));
  Tuma__V1__AdminEnvelope *r = NULL;
  int rc = tc_recv_admin(c, T_ANSWER, &r);
  cr_assert_eq(rc, TC_OK, "operator on admin port: %s", tc_strerror(rc));
  cr_assert_eq(r->body_case, TUMA__V1__ADMIN_ENVELOPE__BODY_ADMIN_RESULT);
  cr_assert(r->admin_result->error && r->admin_result->error->code == 3100);
  tuma__v1__admin_envelope__free_unpacked(r, NULL);
  expect_closed(c, "operator on admin port", T_ANSWER);
  /* An operator the switch does not know: 3100 and closed. */
  cr_assert_eq(sh_issue(t->h, "zeta", "operator", NULL, NULL), 0);
  c = connect_as(t, t->h->port, t->h->ca, sh_cert(t->h, "zeta"), sh_key(t->h, "zeta"));
  expect_error(c, "zeta", 0, 3100);
  expect_closed(c, "zeta", T_ANSWER);
  /* The right ones work. */
  op_connect(t, "alpha");
  tc_client *adm = admin_connect(t);
  cr_assert_eq(get_position(t, adm, "alpha").liquidity, SH_DEPOSIT);
  it_finish(t);
}

/* ================================================================ framing */

Test(switch, malformed_frame) {
  it_ctx *t = it_start(NULL);
  tc_client *a = op_connect(t, "alpha");
  static const uint8_t garbage[] = {0,    0,    0,    10,   0xff, 0xff, 0xff,
                                    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  cr_assert_eq(tc_write_raw(a, garbage, sizeof garbage), TC_OK);
  expect_error(a, "alpha", 0, 3101);
  expect_closed(a, "alpha", T_ANSWER);
  /* A frame of length 0 is malformed too. */
  tc_client *b = op_connect(t, "beta");
  static const uint8_t empty[] = {0, 0, 0, 0};
  cr_assert_eq(tc_write_raw(b, empty, sizeof empty), TC_OK);
  expect_error(b, "beta", 0, 3101);
  expect_closed(b, "beta", T_ANSWER);
  /* On the admin port: an AdminResult with 3101, closed. */
  tc_client *adm = admin_connect(t);
  cr_assert_eq(tc_write_raw(adm, garbage, sizeof garbage), TC_OK);
  Tuma__V1__AdminEnvelope *r = NULL;
  cr_assert_eq(tc_recv_admin(adm, T_ANSWER, &r), TC_OK);
  cr_assert_eq(r->body_case, TUMA__V1__ADMIN_ENVELOPE__BODY_ADMIN_RESULT);
  cr_assert(r->admin_result->error && r->admin_result->error->code == 3101);
  tuma__v1__admin_envelope__free_unpacked(r, NULL);
  expect_closed(adm, "admin", T_ANSWER);
  /* The switch is fine. */
  tc_client *g = op_connect(t, "gamma");
  send_ping(g, "gamma", 2, 77);
  expect_pong(g, "gamma", 2, 77);
  it_finish(t);
}

Test(switch, oversized_frame) {
  it_ctx *t = it_start(NULL); /* max_frame_bytes 4096 */
  tc_client *a = op_connect(t, "alpha");
  uint8_t hdr[4];
  proto_frame_put_header(hdr, 4097);
  cr_assert_eq(tc_write_raw(a, hdr, sizeof hdr), TC_OK);
  /* Decided from the header alone: no body needed. */
  expect_error(a, "alpha", 0, 3104);
  expect_closed(a, "alpha", T_ANSWER);
  /* Exactly the maximum is accepted (a Ping padded with an unknown field). */
  tc_client *b = op_connect(t, "beta");
  uint8_t frame[4 + 4096];
  size_t n = 0;
  frame[4 + n++] = 0x08; /* correlation_id = 5 */
  frame[4 + n++] = 0x05;
  frame[4 + n++] = 0xfa; /* field 31 (ping), length 2: nonce = 9 */
  frame[4 + n++] = 0x01;
  frame[4 + n++] = 0x02;
  frame[4 + n++] = 0x08;
  frame[4 + n++] = 0x09;
  /* field 1000, length-delimited, fills the rest: tag 0xc2 0x3e, 2-byte length */
  size_t pad = 4096 - n - 4;
  frame[4 + n++] = 0xc2;
  frame[4 + n++] = 0x3e;
  frame[4 + n++] = (uint8_t)(0x80 | (pad & 0x7f));
  frame[4 + n++] = (uint8_t)(pad >> 7);
  memset(frame + 4 + n, 'x', pad);
  n += pad;
  cr_assert_eq(n, 4096);
  proto_frame_put_header(frame, 4096);
  cr_assert_eq(tc_write_raw(b, frame, sizeof frame), TC_OK);
  expect_pong(b, "beta", 5, 9);
  it_finish(t);
}

Test(switch, truncated_frame) {
  it_ctx *t = it_start(NULL); /* read_timeout_ms 500 */
  tc_client *a = op_connect(t, "alpha");
  /* An idle connection is not a partial frame: it stays open past read_timeout_ms. */
  sleep_ms(1200);
  send_ping(a, "alpha", 2, 3);
  expect_pong(a, "alpha", 2, 3);
  /* A frame that starts and never completes: closed after ~read_timeout_ms, no error frame. */
  uint8_t partial[14] = {0, 0, 0, 100};
  memset(partial + 4, 0, 10);
  int64_t t0 = mono_ms();
  cr_assert_eq(tc_write_raw(a, partial, sizeof partial), TC_OK);
  size_t discarded = 0;
  cr_assert_eq(tc_wait_closed(a, 5000, &discarded), TC_OK, "closed after the partial frame");
  int64_t took = mono_ms() - t0;
  cr_assert_geq(took, 400, "closed after read_timeout_ms, not at once (%lld ms)", (long long)took);
  cr_assert_leq(took, 3000, "closed soon after read_timeout_ms (%lld ms)", (long long)took);
  cr_assert_eq(discarded, 0, "no error frame for a timeout");
  it_finish(t);
}

/* ================================================================ failures */

Test(switch, payee_drops_mid_transfer) {
  it_ctx *t = it_start(NULL);
  tc_client *a = op_connect(t, "alpha"), *b = op_connect(t, "beta");
  uint8_t id[16];
  new_id(id);
  prep p = simple(id, "beta", 600);
  p.expiration_ms = sh_now_ms() + 2000;
  send_prepare(a, "alpha", 1, &p);
  expect_forward(b, "beta", id, "alpha", 600);
  drop_client(t, b, 0); /* gone without a word */
  /* beta comes back (another connection) but does not answer either. */
  tc_client *b2 = op_connect(t, "beta");
  expect_result(a, "alpha", 1, id, ST_EXPIRED, 3303);
  cr_assert_geq(sh_now_ms(), p.expiration_ms);
  /* The payee hears of the expiry on its live connection (correlation 0: not the forward's). */
  expect_result(b2, "beta", 0, id, ST_EXPIRED, 3303);
  track(t, id, ST_EXPIRED, "payee dropped");
  send_fulfil(b2, "beta", 5, id, FS_COMMITTED, NULL, 0);
  expect_result(b2, "beta", 5, id, ST_EXPIRED, 3303);
  it_finish(t);
}

Test(switch, restart_with_transfers_in_flight) {
  it_ctx *t = it_start(NULL);
  tc_client *a = op_connect(t, "alpha"), *b = op_connect(t, "beta");
  uint8_t x[16], y[16];
  new_id(x);
  new_id(y);
  prep px = simple(x, "beta", 7000);
  px.expiration_ms = sh_now_ms() + 30000;
  prep py = simple(y, "beta", 800);
  py.expiration_ms = sh_now_ms() + 5000;
  send_prepare(a, "alpha", 1, &px);
  expect_forward(b, "beta", x, "alpha", 7000);
  send_prepare(a, "alpha", 2, &py);
  expect_forward(b, "beta", y, "alpha", 800);

  /* kill -9: both reservations were durable before the forwards went out. */
  cr_assert_eq(sh_kill(t->h), 0);
  drop_client(t, a, 0);
  drop_client(t, b, 0);
  it_restart(t);

  tc_client *a2 = op_connect(t, "alpha"), *b2 = op_connect(t, "beta");
  send_query(a2, "alpha", 3, x);
  expect_result(a2, "alpha", 3, x, ST_RESERVED, 0);
  send_fulfil(b2, "beta", 4, x, FS_COMMITTED, NULL, 0);
  expect_result(b2, "beta", 4, x, ST_COMMITTED, 0);
  /* The payer's prepare died with the old connection; its live one is told (correlation 0). */
  expect_result(a2, "alpha", 0, x, ST_COMMITTED, 0);
  track(t, x, ST_COMMITTED, "fulfilled after restart");

  /* y is left alone: it expires after the restart, and both live connections hear of it. */
  int64_t left = (int64_t)(py.expiration_ms - sh_now_ms());
  want_result wy_a = {0, y, ST_EXPIRED, 3303};
  Tuma__V1__Envelope *r = expect_result_env(a2, "alpha", &wy_a, (int)(left > 0 ? left : 0) + 4000);
  tuma__v1__envelope__free_unpacked(r, NULL);
  cr_assert_geq(sh_now_ms(), py.expiration_ms);
  expect_result(b2, "beta", 0, y, ST_EXPIRED, 3303);
  send_query(a2, "alpha", 5, y);
  expect_result(a2, "alpha", 5, y, ST_EXPIRED, 3303);
  track(t, y, ST_EXPIRED, "expired after restart");
  cr_assert(sh_log_contains(t->h, "transfers.recovered"), "tumad logs the recovery");
  it_finish(t);
}

Test(switch, graceful_sigterm) {
  it_ctx *t = it_start(NULL);
  tc_client *a = op_connect(t, "alpha"), *b = op_connect(t, "beta");
  uint8_t done[16], open[16];
  new_id(done);
  new_id(open);
  prep p = simple(done, "beta", 1000);
  send_prepare(a, "alpha", 1, &p);
  expect_forward(b, "beta", done, "alpha", 1000);
  send_fulfil(b, "beta", 2, done, FS_COMMITTED, NULL, 0);
  expect_result(a, "alpha", 1, done, ST_COMMITTED, 0);
  expect_result(b, "beta", 2, done, ST_COMMITTED, 0);
  track(t, done, ST_COMMITTED, "committed before stop");
  prep q = simple(open, "beta", 2000);
  q.expiration_ms = sh_now_ms() + 45000;
  send_prepare(a, "alpha", 3, &q);
  expect_forward(b, "beta", open, "alpha", 2000);
  send_prepare(a, "alpha", 4, &q);
  expect_result(a, "alpha", 4, open, ST_RESERVED, 0);
  track(t, open, ST_RESERVED, "reserved at stop");

  /* SIGTERM with connections open and a transfer in flight: exit 0, promptly. */
  int64_t t0 = mono_ms();
  int status = 0;
  cr_assert_eq(sh_stop(t->h, T_STOP, &status), 0, "stopped on SIGTERM");
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "exit status 0");
  cr_assert_lt(mono_ms() - t0, 5000, "stopped within 5 s");
  expect_closed(a, "alpha", T_ANSWER);
  expect_closed(b, "beta", T_ANSWER);
  drop_client(t, a, 0);
  drop_client(t, b, 0);
  check_ledger(t); /* invariants hold; the in-flight one is still open */

  /* It resumes at the next start. */
  it_restart(t);
  tc_client *b2 = op_connect(t, "beta");
  send_fulfil(b2, "beta", 5, open, FS_COMMITTED, NULL, 0);
  expect_result(b2, "beta", 5, open, ST_COMMITTED, 0);
  track(t, open, ST_COMMITTED, "committed after restart");
  it_finish(t);
}

/* ================================================================ admin protocol */

Test(switch, liquidity_deposit_withdraw) {
  it_ctx *t = it_start(NULL);
  tc_client *adm = admin_connect(t);
  uint8_t d1[16], w1[16], w2[16];
  new_id(d1);
  new_id(w1);
  new_id(w2);
  cr_assert_eq(liquidity(t, adm, d1, "alpha", 5000, 1), 0, "deposit");
  cr_assert_eq(get_position(t, adm, "alpha").liquidity, SH_DEPOSIT + 5000);
  /* The same adjustment again: done once. */
  cr_assert_eq(liquidity(t, adm, d1, "alpha", 5000, 1), 0, "repeated deposit");
  cr_assert_eq(get_position(t, adm, "alpha").liquidity, SH_DEPOSIT + 5000, "deposited once");
  /* The same id for something else: 3106. */
  cr_assert_eq(liquidity(t, adm, d1, "alpha", 6000, 1), 3106, "modified adjustment");
  cr_assert_eq(liquidity(t, adm, w1, "alpha", 2000, 0), 0, "withdraw");
  position pa = get_position(t, adm, "alpha");
  cr_assert_eq(pa.liquidity, SH_DEPOSIT + 3000);
  /* More than there is: refused, nothing moves. */
  cr_assert_eq(liquidity(t, adm, w2, "alpha", pa.liquidity + 1, 0), 4001, "withdraw too much");
  cr_assert_eq(get_position(t, adm, "alpha").liquidity, SH_DEPOSIT + 3000);
  /* Unknown participant. */
  uint8_t d2[16];
  new_id(d2);
  cr_assert_neq(liquidity(t, adm, d2, "nobody", 1, 1), 0, "unknown participant refused");
  /* Withdrawn liquidity cannot be spent. */
  uint8_t w3[16];
  new_id(w3);
  cr_assert_eq(liquidity(t, adm, w3, "beta", SH_DEPOSIT, 0), 0, "withdraw all of beta's");
  tc_client *a = op_connect(t, "alpha"), *b = op_connect(t, "beta");
  uint8_t id[16];
  new_id(id);
  prep p = simple(id, "alpha", 1);
  send_prepare(b, "beta", 1, &p);
  expect_result(b, "beta", 1, id, ST_ABORTED, 4001);
  expect_silence(a, "alpha", T_SILENCE);
  track(t, id, ST_ABORTED, "after withdrawal");
  it_finish(t);
}

Test(switch, participant_created_over_admin) {
  it_ctx *t = it_start(NULL);
  tc_client *adm = admin_connect(t);
  cr_assert_eq(sh_issue(t->h, "delta", "operator", NULL, NULL), 0);
  /* Not a participant yet. */
  tc_client *d = connect_as(t, t->h->port, t->h->ca, sh_cert(t->h, "delta"), sh_key(t->h, "delta"));
  expect_error(d, "delta", 0, 3100);
  expect_closed(d, "delta", T_ANSWER);
  drop_client(t, d, 0);

  Tuma__V1__AdminEnvelope env = TUMA__V1__ADMIN_ENVELOPE__INIT;
  Tuma__V1__ParticipantCreate m = TUMA__V1__PARTICIPANT_CREATE__INIT;
  char *currencies[] = {(char *)"KES"};
  m.participant_id = (char *)"delta";
  m.name = (char *)"Delta Pay";
  m.n_currencies = 1;
  m.currencies = currencies;
  env.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_PARTICIPANT_CREATE;
  env.participant_create = &m;
  cr_assert_eq(admin_result(t, adm, &env), 0, "participant create");
  cr_assert_neq(admin_result(t, adm, &env), 0, "creating it twice is refused");
  position pd = get_position(t, adm, "delta");
  cr_assert_eq(pd.liquidity, 0);
  cr_assert_eq(pd.net, 0);

  tc_client *dl = op_connect(t, "delta");
  int status = 0, connected = 0;
  list_entry(t, adm, "delta", &status, &connected);
  cr_assert_eq(status, TUMA__V1__PARTICIPANT_STATUS__PARTICIPANT_STATUS_ACTIVE);
  cr_assert_eq(connected, 1);

  /* Without liquidity it cannot pay; funded, it can. */
  tc_client *a = op_connect(t, "alpha");
  uint8_t id1[16], id2[16], dep[16];
  new_id(id1);
  new_id(id2);
  new_id(dep);
  prep p = simple(id1, "alpha", 500);
  send_prepare(dl, "delta", 1, &p);
  expect_result(dl, "delta", 1, id1, ST_ABORTED, 4001);
  track(t, id1, ST_ABORTED, "delta unfunded");
  cr_assert_eq(liquidity(t, adm, dep, "delta", 10000, 1), 0);
  p = simple(id2, "alpha", 500);
  send_prepare(dl, "delta", 2, &p);
  expect_forward(a, "alpha", id2, "delta", 500);
  send_fulfil(a, "alpha", 3, id2, FS_COMMITTED, NULL, 0);
  expect_result(dl, "delta", 2, id2, ST_COMMITTED, 0);
  expect_result(a, "alpha", 3, id2, ST_COMMITTED, 0);
  track(t, id2, ST_COMMITTED, "delta pays");
  pd = get_position(t, adm, "delta");
  cr_assert_eq(pd.liquidity, 9500);
  cr_assert_eq(pd.net, 500);

  /* It survives a restart (the registry is durable). */
  int st;
  cr_assert_eq(sh_stop(t->h, T_STOP, &st), 0);
  for (size_t i = 0; i < t->n_clients; i++)
    tc_close(t->clients[i], 0);
  t->n_clients = 0;
  it_restart(t);
  op_connect(t, "delta");
  it_finish(t);
}
