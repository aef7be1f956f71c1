/* test_switch_crash.c — crash under load (issue 7): pipelined two-way traffic between two
 * operators through a real tumad, cut by kill -9 at random moments for several rounds, each
 * followed by a restart; then every outcome an operator was told is reconciled against the
 * ledger, read-only: told COMMITTED ⇒ posted with the amount sent, told ABORTED / EXPIRED ⇒
 * not posted, positions = deposits + what was posted, Σ debits = Σ credits, and the ledger's
 * journal verification passes. Bounded: 5 rounds, at most 300 batches of 32 per round, 4 min.
 * The random seed is logged (criterion --verbose) for a rerun.
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
#include <pthread.h>
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
#include "audit.h"
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

TestSuite(switch_crash, .fini = it_fini, .timeout = 180);

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
/* The auditor's check (ledger/audit.h, what `tuma audit verify` runs): the hash chain from
 * genesis, a replay of every record, every stored account, transfer and pending row compared. */
static void audit_ledger(const char *dir) {
  ledger_audit_report rep;
  char err[256] = "";
  int rc = ledger_audit_verify(dir, NULL, &rep, NULL, err, sizeof err);
  cr_assert_eq(rc, 0, "tuma audit verify %s: %s at record %llu: %s %s", dir,
               ledger_audit_problem_name(rep.problem), (unsigned long long)rep.bad_seq,
               rep.detail, err);
  cr_assert(rep.replayed && rep.compared, "the audit replayed and compared");
}

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
  audit_ledger(t->h->ledger_dir);
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

/* Closes the test's connections (tumad went away or is about to). */
static void drop_all(it_ctx *t) {
  for (size_t i = 0; i < t->n_clients; i++)
    tc_close(t->clients[i], 0);
  t->n_clients = 0;
}

/* ================================================================ crash under load */

enum { CR_ROUNDS = 5, CR_BATCH = 32, CR_ROUND_BATCHES = 300, CR_MAX = 50000 };

typedef struct cr_transfer {
  uint8_t id[16];
  uint64_t amount;
  int from_alpha; /* alpha paid beta (else beta paid alpha) */
  int told;       /* 0: no final outcome told to anyone; else ST_COMMITTED / _ABORTED / _EXPIRED */
} cr_transfer;

typedef struct cr_run {
  it_ctx *t;
  cr_transfer *x;
  size_t n;
  size_t told_conflicts; /* one operator told COMMITTED, another ABORTED: must stay 0 */
} cr_run;

static cr_transfer *cr_find(cr_run *run, const uint8_t id[16]) {
  for (size_t i = run->n; i-- > 0;)
    if (!memcmp(run->x[i].id, id, 16))
      return &run->x[i];
  return NULL;
}

/* Notes a TransferResult an operator received: a final state is what that operator was told. */
static void cr_note_result(cr_run *run, const Tuma__V1__TransferResult *m) {
  if (m->transfer_id.len != 16)
    return;
  int st = m->state;
  if (st != ST_COMMITTED && st != ST_ABORTED && st != ST_EXPIRED)
    return;
  cr_transfer *x = cr_find(run, m->transfer_id.data);
  if (!x)
    return;
  int was_commit = x->told == ST_COMMITTED, is_commit = st == ST_COMMITTED;
  if (x->told && was_commit != is_commit)
    run->told_conflicts++;
  x->told = st;
}

typedef struct killer {
  pid_t pid;
  int delay_ms;
} killer;

static void *killer_main(void *arg) {
  killer *k = arg;
  sleep_ms(k->delay_ms);
  kill(k->pid, SIGKILL);
  return NULL;
}

/* Reads envelopes from c until `want` of the kind `body` arrived (forwards collected into
 * fwd[] when body is a forward) or the connection fails. Results are noted on the way.
 * Returns 0, or -1 when the connection failed or nothing came within T_ANSWER. */
static int cr_read(cr_run *run, size_t first, tc_client *c, int body, size_t want,
                   uint8_t (*fwd)[16], size_t *got) {
  *got = 0;
  while (*got < want) {
    Tuma__V1__Envelope *r = NULL;
    if (tc_recv(c, T_ANSWER, &r) != TC_OK)
      return -1;
    const ProtobufCBinaryData *id = NULL;
    int final = 1;
    if (r->body_case == TUMA__V1__ENVELOPE__BODY_TRANSFER_RESULT) {
      cr_note_result(run, r->transfer_result);
      id = &r->transfer_result->transfer_id;
      final = r->transfer_result->state != ST_RESERVED;
    } else if (r->body_case == TUMA__V1__ENVELOPE__BODY_TRANSFER_FORWARD) {
      id = &r->transfer_forward->transfer_id;
    }
    /* Only this batch's transfers count (a restart may bring news of older ones). */
    cr_transfer *x = id && id->len == 16 ? cr_find(run, id->data) : NULL;
    if ((int)r->body_case == body && final && x && (size_t)(x - run->x) >= first) {
      if (fwd)
        memcpy(fwd[*got], id->data, 16);
      (*got)++;
    }
    tuma__v1__envelope__free_unpacked(r, NULL);
  }
  return 0;
}

/* One batch: CR_BATCH pipelined prepares payer → payee, the payee commits most and aborts
 * some, both read their outcomes. Returns 0, or -1 as soon as a connection fails (tumad was
 * killed): what was told up to then is noted. */
static int cr_batch(cr_run *run, tc_client *payer, tc_client *payee, int from_alpha, uint64_t *corr,
                    unsigned *seed) {
  size_t first = run->n;
  if (run->n + CR_BATCH > CR_MAX)
    return 0;
  for (int i = 0; i < CR_BATCH; i++) {
    cr_transfer *x = &run->x[run->n++];
    memset(x, 0, sizeof *x);
    new_id(x->id);
    x->amount = 1 + (uint64_t)(rand_r(seed) % 100);
    x->from_alpha = from_alpha;
    Tuma__V1__Envelope env = TUMA__V1__ENVELOPE__INIT;
    Tuma__V1__TransferPrepare m = TUMA__V1__TRANSFER_PREPARE__INIT;
    Tuma__V1__Money money = TUMA__V1__MONEY__INIT;
    m.transfer_id.data = x->id;
    m.transfer_id.len = 16;
    m.payee_participant = (char *)(from_alpha ? "beta" : "alpha");
    money.currency = (char *)"KES";
    money.amount = x->amount;
    m.amount = &money;
    m.expiration_ms = sh_now_ms() + 30000;
    env.correlation_id = ++*corr;
    env.body_case = TUMA__V1__ENVELOPE__BODY_TRANSFER_PREPARE;
    env.transfer_prepare = &m;
    if (tc_send(payer, &env) != TC_OK)
      return -1;
  }
  uint8_t fwd[CR_BATCH][16];
  size_t n_fwd = 0, got = 0;
  if (cr_read(run, first, payee, TUMA__V1__ENVELOPE__BODY_TRANSFER_FORWARD, CR_BATCH, fwd, &n_fwd))
    return -1;
  for (size_t i = 0; i < n_fwd; i++) {
    Tuma__V1__Envelope env = TUMA__V1__ENVELOPE__INIT;
    Tuma__V1__TransferFulfil m = TUMA__V1__TRANSFER_FULFIL__INIT;
    Tuma__V1__Error why = TUMA__V1__ERROR__INIT;
    m.transfer_id.data = fwd[i];
    m.transfer_id.len = 16;
    m.state = rand_r(seed) % 5 ? FS_COMMITTED : FS_ABORTED;
    if (m.state == FS_ABORTED) {
      why.code = 5105;
      why.message = (char *)"declined by the test";
      m.reason = &why;
    }
    env.correlation_id = ++*corr;
    env.body_case = TUMA__V1__ENVELOPE__BODY_TRANSFER_FULFIL;
    env.transfer_fulfil = &m;
    if (tc_send(payee, &env) != TC_OK)
      return -1;
  }
  if (cr_read(run, first, payer, TUMA__V1__ENVELOPE__BODY_TRANSFER_RESULT, CR_BATCH, NULL, &got))
    return -1;
  if (cr_read(run, first, payee, TUMA__V1__ENVELOPE__BODY_TRANSFER_RESULT, n_fwd, NULL, &got))
    return -1;
  for (size_t i = first; i < run->n; i++)
    cr_assert(run->x[i].told, "a batch that completed told every outcome (transfer %zu)", i);
  return 0;
}

/* Several rounds of pipelined two-way traffic alpha ⇄ beta, each cut short by a kill -9 of
 * tumad at a random moment, then a restart. Afterwards, read-only: every transfer an operator
 * was told COMMITTED is posted in the ledger with the amount sent, every one told ABORTED or
 * EXPIRED is not posted, no two operators were told different outcomes, the positions equal
 * the deposits plus what the ledger posted, Σ debits = Σ credits and the journal verifies. */
Test(switch_crash, kill9_under_load, .timeout = 600) {
  sh_options o;
  memset(&o, 0, sizeof o);
  o.log_level = "info";
  it_ctx *t = it_start(&o);
  cr_run run = {t, calloc(CR_MAX, sizeof(cr_transfer)), 0, 0};
  cr_assert_not_null(run.x);
  unsigned seed = (unsigned)sh_now_ms();
  cr_log_info("kill9_under_load: seed %u", seed);
  uint64_t corr = 0;
  int64_t deadline = mono_ms() + 240000;
  int killed_mid_batch = 0;
  for (int round = 0; round < CR_ROUNDS && mono_ms() < deadline; round++) {
    tc_client *a = op_connect(t, "alpha"), *b = op_connect(t, "beta");
    killer k = {t->h->pid, 150 + (int)(rand_r(&seed) % 1200)};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, killer_main, &k), 0);
    int batches = 0;
    while (mono_ms() < deadline && batches < CR_ROUND_BATCHES) {
      int from_alpha = batches % 2 == 0;
      if (cr_batch(&run, from_alpha ? a : b, from_alpha ? b : a, from_alpha, &corr, &seed)) {
        killed_mid_batch++;
        break;
      }
      batches++;
    }
    pthread_join(th, NULL);
    sh_kill(t->h); /* reaps it (killed already) */
    drop_all(t);
    it_restart(t);
  }
  /* After the last restart, traffic flows and nothing is cut short. */
  tc_client *a = op_connect(t, "alpha"), *b = op_connect(t, "beta");
  for (int i = 0; i < 4; i++)
    cr_assert_eq(cr_batch(&run, i % 2 ? b : a, i % 2 ? a : b, i % 2 == 0, &corr, &seed), 0);
  /* Positions as the switch reports them, before stopping it. */
  tc_client *adm = admin_connect(t);
  position pa = get_position(t, adm, "alpha"), pb = get_position(t, adm, "beta");
  int status = 0;
  cr_assert_eq(sh_stop(t->h, T_STOP, &status), 0);
  drop_all(t);
  cr_assert_eq(run.told_conflicts, 0, "no two operators told different outcomes");
  check_ledger(t); /* balanced, journal verified */

  ledger *l = NULL;
  ledger_options lo = {0};
  lo.flags = LEDGER_OPEN_READ_ONLY;
  cr_assert_eq(ledger_open(t->h->ledger_dir, &lo, &l), 0);
  size_t told_c = 0, told_a = 0, unknown = 0, unknown_posted = 0;
  int64_t alpha_delta = 0; /* what the ledger posted, seen from alpha */
  for (size_t i = 0; i < run.n; i++) {
    cr_transfer *x = &run.x[i];
    ledger_pending_state st = LEDGER_PENDING_NONE;
    int rc = ledger_pending_state_of(l, wire_id(x->id), &st, NULL);
    int posted = rc == 0 && st == LEDGER_PENDING_POSTED;
    if (posted) {
      ledger_transfer lt;
      cr_assert_eq(ledger_lookup_transfer(l, wire_id(x->id), &lt), 0);
      cr_assert_eq(lt.amount, x->amount, "transfer %zu: posted %llu, sent %llu", i,
                   (unsigned long long)lt.amount, (unsigned long long)x->amount);
      alpha_delta += x->from_alpha ? -(int64_t)x->amount : (int64_t)x->amount;
    }
    if (x->told == ST_COMMITTED) {
      told_c++;
      cr_assert(posted, "transfer %zu: told COMMITTED, not posted (rc %d, %s)", i, rc,
                pending_name(st));
    } else if (x->told) {
      told_a++;
      cr_assert(!posted, "transfer %zu: told %s, but posted", i, state_name(x->told));
    } else {
      unknown++;
      unknown_posted += posted;
    }
  }
  ledger_close(l);
  cr_assert_eq((int64_t)pa.liquidity, (int64_t)SH_DEPOSIT + alpha_delta,
               "alpha's liquidity = deposit + what the ledger posted");
  cr_assert_eq((int64_t)pb.liquidity, (int64_t)SH_DEPOSIT - alpha_delta,
               "beta's liquidity = deposit - what the ledger posted");
  cr_log_info("kill9_under_load: %d kills mid-batch, %zu transfers: %zu told committed, %zu told "
              "aborted/expired, %zu cut off by a kill (%zu of them posted)",
              killed_mid_batch, run.n, told_c, told_a, unknown, unknown_posted);
  cr_assert_gt(told_c, 0);
  free(run.x);
  sh_destroy(t->h, getenv("TUMA_TEST_KEEP") == NULL);
  t->h = NULL;
}
