/* test_faults.c — storage faults against a real tumad (issue 7): a failed fsync/fdatasync
 * (tests/faultinject.c, LD_PRELOAD) is never acknowledged, and a ledger map that cannot grow
 * fills up with clean refusals, no corruption and recovery once it may grow again. Same harness
 * and end-of-test check as tests/test_switch.c, plus the ledger's journal verification.
 *
 * TUMA_FAULTINJECT names the shim (tests/meson.build sets it); without it, or when tumad does
 * not load it, the sync test skips itself and says why.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "frame.h"
#include "ledger.h"
#include "switch_harness.h"
#include "tclient.h"

/* The helpers below are shared in shape with tests/test_switch.c; not all are used here. */
#pragma GCC diagnostic ignored "-Wunused-function"

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
  seen_transfer seen[20100];
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

TestSuite(faults, .fini = it_fini, .timeout = 180);

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
  uint64_t bad = 0;
  rc = ledger_journal_verify(l, &bad);
  cr_assert_eq(rc, 0, "the ledger's journal verifies (first bad record %llu)",
               (unsigned long long)bad);
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

/* ================================================================ helpers of this suite */

/* One whole two-phase transfer payer → payee, committed; both sides told. */
static void transfer_ok(it_ctx *t, tc_client *payer, const char *payer_name, tc_client *payee,
                        const char *payee_name, uint64_t amount, uint64_t corr) {
  uint8_t id[16];
  new_id(id);
  prep p = simple(id, payee_name, amount);
  send_prepare(payer, payer_name, corr, &p);
  uint64_t fcorr = expect_forward(payee, payee_name, id, payer_name, amount);
  (void)fcorr;
  send_fulfil(payee, payee_name, corr + 1, id, FS_COMMITTED, NULL, 0);
  expect_result(payer, payer_name, corr, id, ST_COMMITTED, 0);
  expect_result(payee, payee_name, corr + 1, id, ST_COMMITTED, 0);
  track(t, id, ST_COMMITTED, "transfer_ok");
}

/* ================================================================ more helpers */

/* Closes the test's connections (tumad went away or is about to). */
static void drop_all(it_ctx *t) {
  for (size_t i = 0; i < t->n_clients; i++)
    tc_close(t->clients[i], 0);
  t->n_clients = 0;
}

/* ================================================================ a failed sync */

/* Under tests/faultinject.c, a storage call fails while a trigger file exists (trigger_var
 * names it: syncs, or writes as on a full disk). A prepare whose reservation could not be
 * committed is refused (ABORTED prepare_code, never forwarded); a fulfil whose commit could not
 * be made leaves the transfer RESERVED (the payee is told 2001, the payer nothing). Once the
 * storage works again, both complete; after a kill -9 and a restart the ledger holds exactly
 * what was acknowledged and its journal verifies. Skips itself when the shim is not there or
 * not loaded. */
static void storage_fault(const char *trigger_var, const char *injected, unsigned prepare_code) {
  const char *shim = getenv("TUMA_FAULTINJECT");
  if (!shim || access(shim, R_OK) != 0)
    cr_skip_test("the fault-injection shim is not available (TUMA_FAULTINJECT unset)");
  char trigger[128];
  snprintf(trigger, sizeof trigger, "/tmp/tuma-fi-%d", (int)getpid());
  unlink(trigger);
  setenv("LD_PRELOAD", shim, 1);
  setenv(trigger_var, trigger, 1);
#if defined(__SANITIZE_ADDRESS__)
  /* ASan insists on being first in the link order; the shim comes before it. */
  char asan[512];
  const char *prev = getenv("ASAN_OPTIONS");
  snprintf(asan, sizeof asan, "%s%sverify_asan_link_order=0", prev ? prev : "",
           prev && prev[0] ? ":" : "");
  setenv("ASAN_OPTIONS", asan, 1);
#endif
  sh_options o;
  memset(&o, 0, sizeof o);
  o.log_level = "info";
  it_ctx *t = it_start(&o);
  if (!sh_log_contains(t->h, "faultinject: loaded")) {
    sh_destroy(t->h, 1);
    t->h = NULL;
    cr_skip_test("tumad did not load the shim %s (LD_PRELOAD refused)", shim);
  }
  tc_client *a = op_connect(t, "alpha"), *b = op_connect(t, "beta");
  transfer_ok(t, a, "alpha", b, "beta", 100, 10);

  /* y is reserved and forwarded before the disk goes bad. */
  uint8_t x[16], y[16];
  new_id(x);
  new_id(y);
  prep py = simple(y, "beta", 200);
  send_prepare(a, "alpha", 20, &py);
  expect_forward(b, "beta", y, "alpha", 200);

  FILE *f = fopen(trigger, "w");
  cr_assert_not_null(f, "create %s", trigger);
  fclose(f);
  /* x: its reservation cannot be synced. Refused, and beta never hears of it. */
  prep px = simple(x, "beta", 300);
  send_prepare(a, "alpha", 30, &px);
  expect_result(a, "alpha", 30, x, ST_ABORTED, prepare_code);
  /* y: beta commits, the commit cannot be synced. Still reserved; alpha is told nothing. */
  send_fulfil(b, "beta", 40, y, FS_COMMITTED, NULL, 0);
  expect_result(b, "beta", 40, y, ST_RESERVED, 2001);
  expect_silence(a, "alpha", T_SILENCE);
  expect_silence(b, "beta", T_SILENCE);
  cr_assert(sh_log_contains(t->h, injected), "the failure was injected (%s)", injected);
  send_ping(a, "alpha", 41, 41); /* tumad is up */
  expect_pong(a, "alpha", 41, 41);

  /* The disk recovers: y commits on the payee's retry, x goes through when sent again. */
  cr_assert_eq(unlink(trigger), 0);
  send_fulfil(b, "beta", 50, y, FS_COMMITTED, NULL, 0);
  expect_result(a, "alpha", 20, y, ST_COMMITTED, 0);
  expect_result(b, "beta", 50, y, ST_COMMITTED, 0);
  track(t, y, ST_COMMITTED, "committed after the sync failure");
  send_prepare(a, "alpha", 60, &px);
  expect_forward(b, "beta", x, "alpha", 300);
  send_fulfil(b, "beta", 61, x, FS_COMMITTED, NULL, 0);
  expect_result(a, "alpha", 60, x, ST_COMMITTED, 0);
  expect_result(b, "beta", 61, x, ST_COMMITTED, 0);
  track(t, x, ST_COMMITTED, "resent after the sync failure");

  /* Nothing acknowledged is lost to a crash right after. */
  cr_assert_eq(sh_kill(t->h), 0);
  drop_all(t);
  it_restart(t);
  a = op_connect(t, "alpha");
  send_query(a, "alpha", 70, x);
  expect_result(a, "alpha", 70, x, ST_COMMITTED, 0);
  send_query(a, "alpha", 71, y);
  expect_result(a, "alpha", 71, y, ST_COMMITTED, 0);
  unsetenv("LD_PRELOAD");
  it_finish(t);
}

/* fdatasync fails (LMDB syncs its data pages with it): never acknowledged, 2001. */
Test(faults, failed_sync_is_never_acknowledged) {
  storage_fault("TUMA_FI_SYNC_FAIL_FILE", "faultinject: fdatasync", 2001);
}

/* The disk is full: LMDB's page writes fail with ENOSPC. Operators get 2003 (service
 * unavailable), tumad stays up, and everything goes on once there is room. */
Test(faults, disk_full_enospc) {
  storage_fault("TUMA_FI_WRITE_FAIL_FILE", "-> errno 28", 2003);
}

/* ================================================================ the ledger's map fills up */

/* [ledger] map_size_max_mb = 1: the map cannot grow, and transfers run until it is full. The
 * operators get a clean refusal (2003, service unavailable; a fulfil that cannot commit leaves
 * the transfer RESERVED), tumad stays up and stops cleanly, the ledger balances and its journal
 * verifies. Restarted with a larger maximum, everything acknowledged is there, the transfer
 * left reserved commits, and traffic resumes. */
Test(faults, ledger_map_full, .timeout = 600) {
  enum { MAX_TRANSFERS = 20000 };
  sh_options o;
  memset(&o, 0, sizeof o);
  o.map_size_mb = 1;
  o.map_size_max_mb = 1;
  o.log_level = "info";
  it_ctx *t = it_start(&o);
  tc_client *a = op_connect(t, "alpha"), *b = op_connect(t, "beta");
  uint64_t corr = 10;
  int full = 0;
  size_t committed = 0;
  uint8_t stuck[16];
  int have_stuck = 0;
  int64_t deadline = mono_ms() + 300000;
  for (int i = 0; i < MAX_TRANSFERS && !full && mono_ms() < deadline; i++, corr += 2) {
    uint8_t id[16];
    new_id(id);
    prep p = simple(id, "beta", 1);
    send_prepare(a, "alpha", corr, &p);
    Tuma__V1__Envelope *r = NULL;
    int rc = tc_recv(b, T_ANSWER, &r);
    if (rc == TC_E_TIMEOUT) { /* not forwarded: the reservation was refused */
      expect_result(a, "alpha", corr, id, ST_ABORTED, 2003);
      track(t, id, ST_ABORTED, "refused: ledger full");
      full = 1;
      break;
    }
    cr_assert_eq(rc, TC_OK, "beta: %s", tc_strerror(rc));
    cr_assert_eq(r->body_case, TUMA__V1__ENVELOPE__BODY_TRANSFER_FORWARD, "beta: got %s",
                 body_name(r->body_case));
    tuma__v1__envelope__free_unpacked(r, NULL);
    send_fulfil(b, "beta", corr + 1, id, FS_COMMITTED, NULL, 0);
    r = recv_env(b, "beta", T_ANSWER);
    cr_assert_eq(r->body_case, TUMA__V1__ENVELOPE__BODY_TRANSFER_RESULT);
    int st = r->transfer_result->state;
    unsigned code = r->transfer_result->error ? r->transfer_result->error->code : 0;
    tuma__v1__envelope__free_unpacked(r, NULL);
    if (st == ST_COMMITTED) {
      expect_result(a, "alpha", corr, id, ST_COMMITTED, 0);
      track(t, id, ST_COMMITTED, "before the map filled");
      committed++;
    } else {
      cr_assert(st == ST_RESERVED && code == 2001, "a fulfil that cannot commit: %s %u",
                state_name(st), code);
      expect_silence(a, "alpha", T_SILENCE);
      track(t, id, ST_RESERVED, "fulfil refused: ledger full");
      memcpy(stuck, id, 16);
      have_stuck = 1;
      full = 1;
    }
  }
  cr_log_info("map full after %zu committed transfers", committed);
  cr_assert(full, "the 1 MiB map filled up within %d transfers", MAX_TRANSFERS);
  cr_assert_gt(committed, 0);
  cr_assert(sh_log_contains(t->h, "ledger.failed"), "tumad logs the failed batch");
  /* Still up and answering. */
  send_ping(a, "alpha", 1, 1);
  expect_pong(a, "alpha", 1, 1);
  char body[256];
  cr_assert_eq(sh_http_get(t->h, "/healthz", body, sizeof body), 200);

  /* A clean stop, and a ledger that balances and verifies as it is. */
  int status = 0;
  cr_assert_eq(sh_stop(t->h, T_STOP, &status), 0, "tumad stops on SIGTERM with a full map");
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "exit status %d", status);
  drop_all(t);
  check_ledger(t);

  /* Room again: everything is there, and traffic resumes. */
  t->h->opts.map_size_max_mb = 64;
  cr_assert_eq(sh_write_config(t->h), 0);
  it_restart(t);
  a = op_connect(t, "alpha");
  b = op_connect(t, "beta");
  if (have_stuck) {
    send_fulfil(b, "beta", 5, stuck, FS_COMMITTED, NULL, 0);
    expect_result(b, "beta", 5, stuck, ST_COMMITTED, 0);
    expect_result(a, "alpha", 0, stuck, ST_COMMITTED, 0);
    track(t, stuck, ST_COMMITTED, "committed after the map grew");
  }
  for (int i = 0; i < 50; i++)
    transfer_ok(t, a, "alpha", b, "beta", 2, 100000 + 2 * (uint64_t)i);
  it_finish(t);
}
