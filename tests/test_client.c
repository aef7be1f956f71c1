/* test_client.c — integration suite for libtuma-client (adapters/client/tuma_client.h): clients
 * for the operators alpha, beta and gamma on one event loop, against a real tumad
 * (tests/switch_harness.h) that the tests stop, kill, freeze (SIGSTOP) and restart.
 *
 * Scenarios: the two-phase happy path with condition and fulfilment, 500 pipelined prepares,
 * ADP_E_AGAIN at max_outstanding (and the separate limit for fulfils), reconnection after a
 * restart, a callback for every request when the switch dies, fulfil abort, query, the party
 * directory, a request timeout and its late answer, expiry notifications, refused connections
 * (certificate role, server name), argument checks and free with requests outstanding, the
 * README's example, and valgrind over a program using every path of the library.
 *
 * Every wait is bounded. When a test fails, its scratch directory is kept and the end of
 * tumad's log is written to stderr.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <openssl/sha.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "switch_harness.h"
#include "tuma_client.h"

#define T_START 15000  /* ms: tumad start-up */
#define T_ANSWER 5000  /* ms: an answer that should come at once */
#define T_CONNECT 8000 /* ms: a (re)connection, backoff included */

/* ================================================================ the test's context */

enum { MAX_FWD = 600, MAX_NOTES = 64 };

typedef struct fwd {
  uint8_t id[16];
  char payer_participant[64];
  adp_party_type payer_type, payee_type;
  char payer_id[64], payee_id[64];
  char currency[8];
  uint64_t amount, expiration_ms;
  int has_condition;
  uint8_t condition[32];
  char reference[64];
} fwd;

/* One client and what it has been told. */
typedef struct peer {
  const char *name;
  adp_client *c;
  int connected; /* as last told by on_state */
  int n_connected, n_disconnected;
  int first_error, last_error; /* of DISCONNECTED events */
  uint32_t last_code;
  char last_reason[320];
  char participant[64];
  /* as payee */
  int answer; /* 0 hold, 1 commit, 2 abort */
  uint32_t abort_code;
  const uint8_t *fulfilment; /* for forwards with a condition */
  fwd fw[MAX_FWD];
  int n_fw;
  int fulfils_done, fulfil_status;
  adp_transfer_result fulfil_last;
  /* notifications */
  adp_transfer_result notes[MAX_NOTES];
  int n_notes;
} peer;

/* The completion of one transfer request. */
typedef struct outcome {
  int calls, status;
  adp_transfer_result r;
  char message[128];
} outcome;

typedef struct ct {
  sh_switch *h;
  struct event_base *base;
  struct event *tick;
  peer *peers[8];
  int n_peers;
} ct;

/* The running test's context, for the fini hook (each test is its own process). */
static ct *g_ct;

static void ct_fini(void) {
  if (!g_ct)
    return;
  for (int i = 0; i < g_ct->n_peers; i++)
    adp_client_free(g_ct->peers[i]->c);
  if (g_ct->h) { /* only left when the test failed before ct_finish */
    sh_dump_log(g_ct->h, "tumad", 40);
    fprintf(stderr, "[tumad] scratch directory kept: %s\n", g_ct->h->dir);
    sh_destroy(g_ct->h, 0);
  }
}

TestSuite(client, .fini = ct_fini, .timeout = 120);

static int64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void tick_cb(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  (void)arg;
}

/* Runs the loop until cond holds or ms have passed (a 10 ms tick keeps EVLOOP_ONCE short). */
#define RUN_UNTIL(t, cond, ms)                                                                     \
  do {                                                                                             \
    int64_t dl_ = mono_ms() + (ms);                                                                \
    while (!(cond) && mono_ms() < dl_)                                                             \
      event_base_loop((t)->base, EVLOOP_ONCE);                                                     \
  } while (0)

/* Runs the loop for ms, whatever happens. */
static void run_for(ct *t, int ms) {
  RUN_UNTIL(t, 0, ms);
}

static ct *ct_start(const sh_options *o) {
  static ct ctx;
  memset(&ctx, 0, sizeof ctx);
  g_ct = &ctx;
  char err[512];
  cr_assert_eq(sh_create(o, &ctx.h, err, sizeof err), 0, "harness: %s", err);
  cr_assert_eq(sh_start(ctx.h, T_START, err, sizeof err), 0, "start: %s", err);
  ctx.base = event_base_new();
  cr_assert_not_null(ctx.base);
  ctx.tick = event_new(ctx.base, -1, EV_PERSIST, tick_cb, NULL);
  struct timeval tv = {0, 10000};
  cr_assert(ctx.tick && event_add(ctx.tick, &tv) == 0);
  return &ctx;
}

static void ct_restart(ct *t) {
  uint16_t port = t->h->port;
  char err[512];
  cr_assert_eq(sh_start(t->h, T_START, err, sizeof err), 0, "restart: %s", err);
  cr_assert_eq(t->h->port, port,
               "tumad had to move to another port (%u → %u: taken meanwhile); the clients keep "
               "connecting to the old one",
               port, t->h->port);
}

/* Frees the clients, stops tumad (it must exit 0), cleans up. */
static void ct_finish(ct *t) {
  for (int i = 0; i < t->n_peers; i++) {
    adp_client_free(t->peers[i]->c);
    t->peers[i]->c = NULL;
  }
  int status = 0;
  cr_assert_eq(sh_stop(t->h, 10000, &status), 0, "tumad did not stop on SIGTERM");
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "tumad exit status %d",
            WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  event_free(t->tick);
  event_base_free(t->base);
  sh_destroy(t->h, getenv("TUMA_TEST_KEEP") == NULL);
  t->h = NULL;
  for (int i = 0; i < t->n_peers; i++)
    free(t->peers[i]);
  t->n_peers = 0;
}

/* ================================================================ client callbacks */

static void state_cb(adp_client *c, const adp_state_event *ev, void *arg) {
  (void)c;
  peer *p = arg;
  p->connected = ev->state == ADP_STATE_CONNECTED;
  if (p->connected) {
    p->n_connected++;
    cr_assert_eq(ev->error, 0);
    snprintf(p->participant, sizeof p->participant, "%s", ev->participant_id);
    cr_assert_gt(ev->max_frame_bytes, 0);
  } else {
    if (p->n_disconnected++ == 0)
      p->first_error = ev->error;
    p->last_error = ev->error;
    p->last_code = ev->switch_code;
    snprintf(p->last_reason, sizeof p->last_reason, "%s", ev->reason);
    cr_assert_neq(ev->error, 0, "a disconnection has a reason");
  }
}

static void fulfil_cb(adp_client *c, int status, const adp_transfer_result *r, void *arg) {
  (void)c;
  peer *p = arg;
  p->fulfils_done++;
  p->fulfil_status = status;
  p->fulfil_last = *r;
  p->fulfil_last.error_message = "";
}

static void forward_cb(adp_client *c, const adp_forward *fw, void *arg) {
  peer *p = arg;
  cr_assert_lt(p->n_fw, MAX_FWD);
  fwd *f = &p->fw[p->n_fw++];
  memcpy(f->id, fw->transfer_id, 16);
  snprintf(f->payer_participant, sizeof f->payer_participant, "%s", fw->payer_participant);
  f->payer_type = fw->payer.type;
  f->payee_type = fw->payee.type;
  snprintf(f->payer_id, sizeof f->payer_id, "%s", fw->payer.id);
  snprintf(f->payee_id, sizeof f->payee_id, "%s", fw->payee.id);
  snprintf(f->currency, sizeof f->currency, "%s", fw->currency);
  f->amount = fw->amount;
  f->expiration_ms = fw->expiration_ms;
  f->has_condition = fw->has_condition;
  memcpy(f->condition, fw->condition, 32);
  snprintf(f->reference, sizeof f->reference, "%s", fw->reference);
  int rc = 0;
  if (p->answer == 1)
    rc = adp_client_fulfil(c, fw->transfer_id, ADP_FULFIL_COMMIT,
                           fw->has_condition ? p->fulfilment : NULL, 0, NULL, fulfil_cb, p);
  else if (p->answer == 2)
    rc = adp_client_fulfil(c, fw->transfer_id, ADP_FULFIL_ABORT, NULL, p->abort_code,
                           "refused by the test", fulfil_cb, p);
  cr_assert_eq(rc, ADP_OK, "%s: fulfil: %s", p->name, adp_strerror(rc));
}

static void notify_cb(adp_client *c, const adp_transfer_result *r, void *arg) {
  (void)c;
  peer *p = arg;
  cr_assert_lt(p->n_notes, MAX_NOTES);
  p->notes[p->n_notes] = *r;
  p->notes[p->n_notes].error_message = "";
  p->n_notes++;
}

static void transfer_cb(adp_client *c, int status, const adp_transfer_result *r, void *arg) {
  (void)c;
  outcome *o = arg;
  cr_assert_not_null(r, "a transfer callback always gets a result");
  o->calls++;
  o->status = status;
  o->r = *r;
  snprintf(o->message, sizeof o->message, "%s", r->error_message);
  o->r.error_message = o->message;
}

typedef struct pinged {
  int calls, status;
  adp_ping_result r;
} pinged;

static void ping_cb(adp_client *c, int status, const adp_ping_result *r, void *arg) {
  (void)c;
  pinged *p = arg;
  p->calls++;
  p->status = status;
  p->r = *r;
}

/* ================================================================ helpers */

/* A client for participant `name` (certificate from the harness); extra may be NULL.
 * forwards: 0 = no on_forward (a send-only connection). */
static peer *peer_make(ct *t, const char *name, const adp_client_options *extra, int forwards) {
  peer *p = calloc(1, sizeof *p);
  cr_assert_not_null(p);
  cr_assert_lt(t->n_peers, 8);
  t->peers[t->n_peers++] = p;
  p->name = name;
  char cert[SH_PATH_MAX + 80], key[SH_PATH_MAX + 80];
  snprintf(cert, sizeof cert, "%s", sh_cert(t->h, name));
  snprintf(key, sizeof key, "%s", sh_key(t->h, name));
  adp_client_options o;
  if (extra)
    o = *extra;
  else
    memset(&o, 0, sizeof o);
  o.host = "127.0.0.1";
  o.port = t->h->port;
  o.ca_file = t->h->ca;
  o.cert_file = cert;
  o.key_file = key;
  o.on_state = state_cb;
  o.on_forward = forwards ? forward_cb : NULL;
  o.on_notify = notify_cb;
  o.arg = p;
  if (!o.reconnect_min_ms)
    o.reconnect_min_ms = 50;
  if (!o.reconnect_max_ms)
    o.reconnect_max_ms = 400;
  int rc = adp_client_new(t->base, &o, &p->c);
  cr_assert_eq(rc, ADP_OK, "adp_client_new(%s): %s", name, adp_strerror(rc));
  return p;
}

static peer *peer_new(ct *t, const char *name, const adp_client_options *extra) {
  return peer_make(t, name, extra, 1);
}

static void wait_connected(ct *t, peer *p) {
  RUN_UNTIL(t, p->connected, T_CONNECT);
  cr_assert(p->connected, "%s: not connected within %d ms (last: %s)", p->name, T_CONNECT,
            p->last_reason);
  cr_assert_str_eq(p->participant, p->name);
}

static adp_prepare simple(const char *payee, uint64_t amount) {
  adp_prepare p;
  memset(&p, 0, sizeof p);
  p.payee_participant = payee;
  p.currency = "KES";
  p.amount = amount;
  return p;
}

/* Sends a prepare; returns its id in id. */
static void send_prepare(peer *from, const adp_prepare *p, uint8_t id[16], outcome *o) {
  memset(o, 0, sizeof *o);
  int rc = adp_client_prepare(from->c, p, id, transfer_cb, o);
  cr_assert_eq(rc, ADP_OK, "%s: prepare: %s", from->name, adp_strerror(rc));
}

static void wait_outcome(ct *t, outcome *o, int ms) {
  RUN_UNTIL(t, o->calls > 0, ms);
  cr_assert_eq(o->calls, 1, "one callback within %d ms, got %d", ms, o->calls);
}

static const fwd *find_fwd(const peer *p, const uint8_t id[16]) {
  for (int i = 0; i < p->n_fw; i++)
    if (!memcmp(p->fw[i].id, id, 16))
      return &p->fw[i];
  return NULL;
}

static const adp_transfer_result *find_note(const peer *p, const uint8_t id[16]) {
  for (int i = 0; i < p->n_notes; i++)
    if (!memcmp(p->notes[i].transfer_id, id, 16))
      return &p->notes[i];
  return NULL;
}

static adp_stats stats_of(peer *p) {
  adp_stats s;
  cr_assert_eq(adp_client_stats(p->c, &s), ADP_OK);
  return s;
}

/* ================================================================ scenarios */

Test(client, happy_path_payer_and_payee) {
  ct *t = ct_start(NULL);
  peer *a = peer_new(t, "alpha", NULL), *b = peer_new(t, "beta", NULL);
  static const uint8_t preimage[32] = "the payee's secret, 32 bytes...";
  uint8_t condition[32];
  SHA256(preimage, 32, condition);
  b->answer = 1;
  b->fulfilment = preimage;
  wait_connected(t, a);
  wait_connected(t, b);

  adp_prepare p = simple("beta", 1234);
  p.payer.type = ADP_PARTY_MSISDN;
  p.payer.id = "254700000001";
  p.payee.type = ADP_PARTY_MSISDN;
  p.payee.id = "254710000002";
  p.condition = condition;
  p.reference = "invoice 42";
  uint64_t before = sh_now_ms();
  uint8_t id[16];
  outcome o;
  send_prepare(a, &p, id, &o);
  cr_assert_eq(id[6] >> 4, 7, "a UUIDv7");
  cr_assert_eq(id[8] >> 6, 2, "RFC 9562 variant");
  uint64_t ms = 0;
  for (int i = 0; i < 6; i++)
    ms = ms << 8 | id[i];
  cr_assert(ms >= before - 1 && ms <= sh_now_ms() + 1, "the id carries the time");
  wait_outcome(t, &o, T_ANSWER);
  cr_assert_eq(o.status, ADP_OK, "%s", adp_strerror(o.status));
  cr_assert_eq(o.r.state, ADP_TRANSFER_COMMITTED, "%s %u %s", adp_transfer_state_name(o.r.state),
               o.r.error_code, o.r.error_message);
  cr_assert_eq(memcmp(o.r.transfer_id, id, 16), 0);
  cr_assert_eq(o.r.error_code, 0);
  cr_assert_geq(o.r.completed_at_ms, before);
  cr_assert(o.r.has_fulfilment && !memcmp(o.r.fulfilment, preimage, 32), "the payer gets it");

  const fwd *f = find_fwd(b, id);
  cr_assert_not_null(f, "beta was forwarded the transfer");
  cr_assert_str_eq(f->payer_participant, "alpha");
  cr_assert_eq(f->payer_type, ADP_PARTY_MSISDN);
  cr_assert_str_eq(f->payer_id, "254700000001");
  cr_assert_eq(f->payee_type, ADP_PARTY_MSISDN);
  cr_assert_str_eq(f->payee_id, "254710000002");
  cr_assert_str_eq(f->currency, "KES");
  cr_assert_eq(f->amount, 1234);
  cr_assert_gt(f->expiration_ms, before);
  cr_assert(f->has_condition && !memcmp(f->condition, condition, 32));
  cr_assert_str_eq(f->reference, "invoice 42");
  RUN_UNTIL(t, b->fulfils_done == 1, T_ANSWER);
  cr_assert_eq(b->fulfils_done, 1);
  cr_assert_eq(b->fulfil_status, ADP_OK);
  cr_assert_eq(b->fulfil_last.state, ADP_TRANSFER_COMMITTED, "the payee's confirmation");

  pinged pg = {0, -1, {0, 0}};
  cr_assert_eq(adp_client_ping(a->c, ping_cb, &pg), ADP_OK);
  RUN_UNTIL(t, pg.calls, T_ANSWER);
  cr_assert(pg.calls == 1 && pg.status == ADP_OK && pg.r.nonce != 0, "pong");

  adp_stats sa = stats_of(a), sb = stats_of(b);
  cr_assert_eq(sa.outstanding, 0);
  cr_assert_eq(sa.sent, 3, "hello, prepare, ping: %llu", (unsigned long long)sa.sent);
  cr_assert_eq(sa.received, 3, "hello_ack, result, pong: %llu", (unsigned long long)sa.received);
  cr_assert_eq(sa.reconnects, 0);
  cr_assert(sa.connected);
  cr_assert_eq(sb.forwards, 1);
  cr_assert_eq(sb.outstanding, 0);
  cr_assert_eq(a->n_notes + b->n_notes, 0, "nothing unsolicited");
  ct_finish(t);
}

Test(client, pipelining_500_in_flight) {
  ct *t = ct_start(NULL);
  enum { N = 500 };
  adp_client_options o;
  memset(&o, 0, sizeof o);
  o.max_outstanding = 1000;
  peer *a = peer_new(t, "alpha", &o), *b = peer_new(t, "beta", &o);
  b->answer = 1;
  wait_connected(t, a);
  wait_connected(t, b);

  static outcome out[N];
  static uint8_t ids[N][16];
  for (int i = 0; i < N; i++) {
    adp_prepare p = simple("beta", 100 + (uint64_t)i);
    send_prepare(a, &p, ids[i], &out[i]);
  }
  cr_assert_eq(stats_of(a).outstanding, N, "all in flight before any answer is read");
  for (int i = 1; i < N; i++)
    cr_assert_lt(memcmp(ids[i - 1], ids[i], 16), 0, "ids are time-ordered (%d)", i);
  int done = 0;
  int64_t deadline = mono_ms() + 60000;
  while (done < N && mono_ms() < deadline) {
    event_base_loop(t->base, EVLOOP_ONCE);
    done = 0;
    for (int i = 0; i < N; i++)
      done += out[i].calls > 0;
  }
  cr_assert_eq(done, N, "all answered within 60 s: %d", done);
  for (int i = 0; i < N; i++) {
    cr_assert_eq(out[i].calls, 1, "#%d: one callback", i);
    cr_assert_eq(out[i].status, ADP_OK, "#%d: %s", i, adp_strerror(out[i].status));
    cr_assert_eq(out[i].r.state, ADP_TRANSFER_COMMITTED, "#%d: %s %u", i,
                 adp_transfer_state_name(out[i].r.state), out[i].r.error_code);
    cr_assert_eq(memcmp(out[i].r.transfer_id, ids[i], 16), 0, "#%d: its own answer", i);
    const fwd *f = find_fwd(b, ids[i]);
    cr_assert(f && f->amount == 100 + (uint64_t)i, "#%d: forwarded with its amount", i);
  }
  RUN_UNTIL(t, b->fulfils_done == N, T_ANSWER);
  cr_assert_eq(b->fulfils_done, N);
  adp_stats sa = stats_of(a);
  cr_assert_eq(sa.outstanding, 0);
  cr_assert_eq(sa.sent, N + 1);
  cr_assert_eq(stats_of(b).forwards, N);
  ct_finish(t);
}

Test(client, again_at_max_outstanding) {
  ct *t = ct_start(NULL);
  adp_client_options oa, ob;
  memset(&oa, 0, sizeof oa);
  memset(&ob, 0, sizeof ob);
  oa.max_outstanding = 4;
  ob.max_outstanding = 1;
  ob.max_outstanding_fulfils = 2;
  peer *a = peer_new(t, "alpha", &oa), *b = peer_new(t, "beta", &ob);
  wait_connected(t, a);
  wait_connected(t, b);

  outcome out[4];
  uint8_t ids[4][16];
  for (int i = 0; i < 4; i++) {
    adp_prepare p = simple("beta", 10);
    send_prepare(a, &p, ids[i], &out[i]);
  }
  /* The fifth request of any kind would block: refused at once, nothing queued. */
  adp_prepare p = simple("beta", 10);
  outcome extra = {0};
  cr_assert_eq(adp_client_prepare(a->c, &p, NULL, transfer_cb, &extra), ADP_E_AGAIN);
  pinged pg = {0, -1, {0, 0}};
  cr_assert_eq(adp_client_ping(a->c, ping_cb, &pg), ADP_E_AGAIN);
  cr_assert_eq(adp_client_query(a->c, ids[0], transfer_cb, &extra), ADP_E_AGAIN);
  adp_stats sa = stats_of(a);
  cr_assert_eq(sa.outstanding, 4);
  cr_assert_eq(sa.sent, 5, "hello + 4 prepares, nothing more");

  RUN_UNTIL(t, b->n_fw == 4, T_ANSWER);
  cr_assert_eq(b->n_fw, 4, "beta holds 4 forwards");
  /* beta's fulfils have their own limit (2): its one request slot does not matter. */
  outcome bq = {0};
  cr_assert_eq(adp_client_query(b->c, ids[0], transfer_cb, &bq), ADP_OK);
  cr_assert_eq(adp_client_ping(b->c, ping_cb, &pg), ADP_E_AGAIN, "beta's request slot is taken");
  cr_assert_eq(adp_client_fulfil(b->c, b->fw[0].id, ADP_FULFIL_COMMIT, NULL, 0, NULL, fulfil_cb, b),
               ADP_OK);
  cr_assert_eq(adp_client_fulfil(b->c, b->fw[1].id, ADP_FULFIL_COMMIT, NULL, 0, NULL, fulfil_cb, b),
               ADP_OK);
  cr_assert_eq(adp_client_fulfil(b->c, b->fw[2].id, ADP_FULFIL_COMMIT, NULL, 0, NULL, fulfil_cb, b),
               ADP_E_AGAIN);
  cr_assert_eq(stats_of(b).outstanding, 3);
  RUN_UNTIL(t, b->fulfils_done == 2 && bq.calls == 1, T_ANSWER);
  cr_assert_eq(b->fulfils_done, 2);
  cr_assert_eq(bq.status, ADP_OK);
  cr_assert_eq(bq.r.state, ADP_TRANSFER_RESERVED, "queried while open");

  /* Two answers in: two slots free again. */
  RUN_UNTIL(t, out[0].calls + out[1].calls + out[2].calls + out[3].calls == 2, T_ANSWER);
  cr_assert_eq(stats_of(a).outstanding, 2);
  cr_assert_eq(adp_client_ping(a->c, ping_cb, &pg), ADP_OK);
  RUN_UNTIL(t, pg.calls == 1, T_ANSWER);
  cr_assert_eq(pg.status, ADP_OK);
  cr_assert_eq(adp_client_fulfil(b->c, b->fw[2].id, ADP_FULFIL_COMMIT, NULL, 0, NULL, fulfil_cb, b),
               ADP_OK);
  cr_assert_eq(adp_client_fulfil(b->c, b->fw[3].id, ADP_FULFIL_COMMIT, NULL, 0, NULL, fulfil_cb, b),
               ADP_OK);
  RUN_UNTIL(t, out[0].calls + out[1].calls + out[2].calls + out[3].calls == 4, T_ANSWER);
  for (int i = 0; i < 4; i++) {
    cr_assert_eq(out[i].calls, 1);
    cr_assert_eq(out[i].r.state, ADP_TRANSFER_COMMITTED);
  }
  cr_assert_eq(extra.calls, 0, "refused requests never call back");
  ct_finish(t);
}

Test(client, reconnects_after_switch_restart) {
  ct *t = ct_start(NULL);
  peer *a = peer_new(t, "alpha", NULL), *b = peer_new(t, "beta", NULL);
  b->answer = 1;
  wait_connected(t, a);
  wait_connected(t, b);

  cr_assert_eq(sh_stop(t->h, 10000, NULL), 0, "tumad stopped on SIGTERM");
  RUN_UNTIL(t, !a->connected && !b->connected, T_ANSWER);
  cr_assert(!a->connected && !b->connected, "on_state DISCONNECTED");
  cr_assert_eq(a->first_error, ADP_E_DISCONNECTED, "%s: %s", adp_strerror(a->first_error),
               a->last_reason);
  adp_prepare p = simple("beta", 10);
  outcome o = {0};
  cr_assert_eq(adp_client_prepare(a->c, &p, NULL, transfer_cb, &o), ADP_E_NOT_CONNECTED);
  pinged pg = {0, -1, {0, 0}};
  cr_assert_eq(adp_client_ping(a->c, ping_cb, &pg), ADP_E_NOT_CONNECTED);
  cr_assert_eq(stats_of(a).connected, 0);
  /* It keeps trying (every attempt refused), with backoff. */
  RUN_UNTIL(t, a->n_disconnected >= 3, T_CONNECT);
  cr_assert_geq(a->n_disconnected, 3, "retries while the switch is down");
  cr_assert_eq(a->last_error, ADP_E_CONNECT, "%s: %s", adp_strerror(a->last_error), a->last_reason);

  ct_restart(t);
  wait_connected(t, a);
  wait_connected(t, b);
  cr_assert_eq(a->n_connected, 2);
  cr_assert_eq(stats_of(a).reconnects, 1);
  uint8_t id[16];
  send_prepare(a, &p, id, &o);
  wait_outcome(t, &o, T_ANSWER);
  cr_assert_eq(o.status, ADP_OK);
  cr_assert_eq(o.r.state, ADP_TRANSFER_COMMITTED, "a transfer after the restart");
  cr_assert_eq(adp_client_ping(a->c, ping_cb, &pg), ADP_OK);
  RUN_UNTIL(t, pg.calls, T_ANSWER);
  cr_assert_eq(pg.status, ADP_OK);
  ct_finish(t);
}

Test(client, every_request_called_back_once_when_the_switch_dies) {
  ct *t = ct_start(NULL);
  peer *a = peer_new(t, "alpha", NULL), *b = peer_new(t, "beta", NULL);
  wait_connected(t, a);
  wait_connected(t, b);
  enum { N = 20 };
  static outcome out[N];
  static uint8_t ids[N][16];
  for (int i = 0; i < N; i++) {
    adp_prepare p = simple("beta", 50 + (uint64_t)i);
    send_prepare(a, &p, ids[i], &out[i]);
  }
  RUN_UNTIL(t, b->n_fw == N, T_ANSWER);
  cr_assert_eq(b->n_fw, N, "all reserved and forwarded (beta holds them)");
  cr_assert_eq(stats_of(a).outstanding, N);

  cr_assert_eq(sh_kill(t->h), 0, "kill -9");
  int done = 0;
  int64_t deadline = mono_ms() + T_ANSWER;
  while (done < N && mono_ms() < deadline) {
    event_base_loop(t->base, EVLOOP_ONCE);
    done = 0;
    for (int i = 0; i < N; i++)
      done += out[i].calls > 0;
  }
  cr_assert_eq(done, N, "every request called back: %d of %d", done, N);
  run_for(t, 300); /* and nothing more comes */
  for (int i = 0; i < N; i++) {
    cr_assert_eq(out[i].calls, 1, "#%d: exactly once", i);
    cr_assert_eq(out[i].status, ADP_E_DISCONNECTED, "#%d: %s", i, adp_strerror(out[i].status));
    cr_assert_eq(out[i].r.state, ADP_TRANSFER_UNKNOWN);
    cr_assert_eq(memcmp(out[i].r.transfer_id, ids[i], 16), 0, "#%d: names its transfer", i);
  }
  cr_assert_eq(stats_of(a).outstanding, 0);

  /* After the restart the real outcome is learnt with a query: still reserved. */
  ct_restart(t);
  wait_connected(t, a);
  wait_connected(t, b);
  static outcome q[N];
  for (int i = 0; i < N; i++)
    cr_assert_eq(adp_client_query(a->c, ids[i], transfer_cb, &q[i]), ADP_OK);
  RUN_UNTIL(t, q[N - 1].calls && q[0].calls, T_ANSWER);
  for (int i = 0; i < N; i++) {
    cr_assert_eq(q[i].calls, 1);
    cr_assert_eq(q[i].status, ADP_OK);
    cr_assert_eq(q[i].r.state, ADP_TRANSFER_RESERVED, "#%d: %s", i,
                 adp_transfer_state_name(q[i].r.state));
  }
  /* beta decides one now: the payer hears of it unsolicited (its prepare died with the old
   * connection). */
  cr_assert_eq(adp_client_fulfil(b->c, ids[0], ADP_FULFIL_COMMIT, NULL, 0, NULL, fulfil_cb, b),
               ADP_OK);
  RUN_UNTIL(t, b->fulfils_done == 1 && find_note(a, ids[0]), T_ANSWER);
  cr_assert_eq(b->fulfil_status, ADP_OK);
  cr_assert_eq(b->fulfil_last.state, ADP_TRANSFER_COMMITTED);
  const adp_transfer_result *n = find_note(a, ids[0]);
  cr_assert_not_null(n, "alpha is notified of the outcome");
  cr_assert_eq(n->state, ADP_TRANSFER_COMMITTED);
  cr_assert_geq(stats_of(a).notifications, 1);
  for (int i = 0; i < N; i++)
    cr_assert_eq(out[i].calls, 1, "#%d: still exactly once", i);
  ct_finish(t);
}

Test(client, fulfil_abort) {
  ct *t = ct_start(NULL);
  peer *a = peer_new(t, "alpha", NULL), *b = peer_new(t, "beta", NULL);
  b->answer = 2;
  b->abort_code = 5100;
  wait_connected(t, a);
  wait_connected(t, b);

  adp_prepare p = simple("beta", 700);
  uint8_t id[16];
  outcome o;
  send_prepare(a, &p, id, &o);
  wait_outcome(t, &o, T_ANSWER);
  cr_assert_eq(o.status, ADP_OK);
  cr_assert_eq(o.r.state, ADP_TRANSFER_ABORTED);
  cr_assert_eq(o.r.error_code, 5100, "the payee's reason reaches the payer: %u", o.r.error_code);
  RUN_UNTIL(t, b->fulfils_done == 1, T_ANSWER);
  cr_assert_eq(b->fulfil_status, ADP_OK);
  cr_assert_eq(b->fulfil_last.state, ADP_TRANSFER_ABORTED);

  b->abort_code = 0; /* the default reason: 5105 */
  send_prepare(a, &p, id, &o);
  wait_outcome(t, &o, T_ANSWER);
  cr_assert_eq(o.r.state, ADP_TRANSFER_ABORTED);
  cr_assert_eq(o.r.error_code, 5105);

  /* Local checks: an abort needs a 5xxx reason and no fulfilment; a commit has no reason. */
  uint8_t f[32] = {1};
  cr_assert_eq(adp_client_fulfil(b->c, id, ADP_FULFIL_ABORT, NULL, 3100, NULL, NULL, NULL),
               ADP_E_INVAL);
  cr_assert_eq(adp_client_fulfil(b->c, id, ADP_FULFIL_ABORT, f, 5100, NULL, NULL, NULL),
               ADP_E_INVAL);
  cr_assert_eq(adp_client_fulfil(b->c, id, ADP_FULFIL_COMMIT, NULL, 5100, NULL, NULL, NULL),
               ADP_E_INVAL);
  cr_assert_eq(adp_client_fulfil(b->c, id, (adp_fulfil_state)7, NULL, 0, NULL, NULL, NULL),
               ADP_E_INVAL);
  /* A fulfil for a transfer that is already final: its final state. */
  outcome late = {0};
  cr_assert_eq(adp_client_fulfil(b->c, id, ADP_FULFIL_COMMIT, NULL, 0, NULL, transfer_cb, &late),
               ADP_OK);
  wait_outcome(t, &late, T_ANSWER);
  cr_assert_eq(late.status, ADP_OK);
  cr_assert_eq(late.r.state, ADP_TRANSFER_ABORTED);
  /* One for a transfer that is not beta's: refused with 3208. */
  uint8_t other[16] = {9, 9, 9};
  cr_assert_eq(adp_client_fulfil(b->c, other, ADP_FULFIL_COMMIT, NULL, 0, NULL, transfer_cb, &late),
               ADP_OK);
  memset(&late, 0, sizeof late);
  wait_outcome(t, &late, T_ANSWER);
  cr_assert_eq(late.status, ADP_E_REFUSED);
  cr_assert_eq(late.r.error_code, 3208);
  cr_assert_eq(memcmp(late.r.transfer_id, other, 16), 0);
  ct_finish(t);
}

Test(client, query) {
  ct *t = ct_start(NULL);
  peer *a = peer_new(t, "alpha", NULL), *b = peer_new(t, "beta", NULL);
  peer *g = peer_new(t, "gamma", NULL);
  b->answer = 1;
  wait_connected(t, a);
  wait_connected(t, b);
  wait_connected(t, g);
  adp_prepare p = simple("beta", 900);
  p.expiration_ms = sh_now_ms() + 30000; /* explicit: a repeat must carry the same */
  uint8_t id[16];
  outcome o;
  send_prepare(a, &p, id, &o);
  wait_outcome(t, &o, T_ANSWER);
  cr_assert_eq(o.r.state, ADP_TRANSFER_COMMITTED);

  outcome qa = {0}, qb = {0}, qg = {0}, qu = {0};
  uint8_t unknown[16] = {0x01, 0x93, 0x6c};
  cr_assert_eq(adp_client_query(a->c, id, transfer_cb, &qa), ADP_OK);
  cr_assert_eq(adp_client_query(b->c, id, transfer_cb, &qb), ADP_OK);
  cr_assert_eq(adp_client_query(g->c, id, transfer_cb, &qg), ADP_OK);
  cr_assert_eq(adp_client_query(a->c, unknown, transfer_cb, &qu), ADP_OK);
  RUN_UNTIL(t, qa.calls && qb.calls && qg.calls && qu.calls, T_ANSWER);
  cr_assert(qa.status == ADP_OK && qa.r.state == ADP_TRANSFER_COMMITTED, "the payer's query");
  cr_assert(qb.status == ADP_OK && qb.r.state == ADP_TRANSFER_COMMITTED, "the payee's query");
  cr_assert_eq(memcmp(qa.r.transfer_id, id, 16), 0);
  cr_assert_eq(qg.status, ADP_E_REFUSED, "not gamma's: %s", adp_strerror(qg.status));
  cr_assert_eq(qg.r.error_code, 3208);
  cr_assert_eq(qu.status, ADP_E_REFUSED);
  cr_assert_eq(qu.r.error_code, 3208);
  cr_assert_str_neq(qu.r.error_message, "", "the switch's text");
  uint8_t zero[16] = {0};
  cr_assert_eq(adp_client_query(a->c, zero, transfer_cb, &qu), ADP_E_INVAL);
  cr_assert_eq(adp_client_query(a->c, NULL, transfer_cb, &qu), ADP_E_INVAL);

  /* The same id again with the same content: its final state, not a second transfer. */
  outcome again;
  p.transfer_id = id;
  send_prepare(a, &p, NULL, &again);
  wait_outcome(t, &again, T_ANSWER);
  cr_assert_eq(again.status, ADP_OK);
  cr_assert_eq(again.r.state, ADP_TRANSFER_COMMITTED, "%s %u",
               adp_transfer_state_name(again.r.state), again.r.error_code);
  /* Different content under the same id: 3106. */
  p.amount = 901;
  send_prepare(a, &p, NULL, &again);
  wait_outcome(t, &again, T_ANSWER);
  cr_assert_eq(again.r.state, ADP_TRANSFER_ABORTED);
  cr_assert_eq(again.r.error_code, 3106);
  cr_assert_eq(b->n_fw, 1, "never forwarded twice");
  ct_finish(t);
}

Test(client, send_only_without_a_forward_handler) {
  ct *t = ct_start(NULL);
  peer *a = peer_new(t, "alpha", NULL);
  peer *bs = peer_make(t, "beta", NULL, 0); /* beta's payer-only connection */
  wait_connected(t, a);
  wait_connected(t, bs);
  /* beta's only connection is send-only: nobody can take a payment for beta. */
  adp_prepare p = simple("beta", 10);
  uint8_t id[16];
  outcome o;
  send_prepare(a, &p, id, &o);
  wait_outcome(t, &o, T_ANSWER);
  cr_assert_eq(o.r.state, ADP_TRANSFER_ABORTED);
  cr_assert_eq(o.r.error_code, 3201, "destination unavailable: %u", o.r.error_code);
  /* With a receiving connection beside it, every forward goes there, none is refused. */
  peer *b = peer_new(t, "beta", NULL);
  b->answer = 1;
  wait_connected(t, b);
  enum { N = 10 };
  outcome out[N];
  for (int i = 0; i < N; i++)
    send_prepare(a, &p, NULL, &out[i]);
  int done = 0;
  for (int64_t dl = mono_ms() + T_ANSWER; done < N && mono_ms() < dl;) {
    event_base_loop(t->base, EVLOOP_ONCE);
    done = 0;
    for (int i = 0; i < N; i++)
      done += out[i].calls;
  }
  cr_assert_eq(done, N);
  for (int i = 0; i < N; i++)
    cr_assert_eq(out[i].r.state, ADP_TRANSFER_COMMITTED, "#%d: %s %u", i,
                 adp_transfer_state_name(out[i].r.state), out[i].r.error_code);
  cr_assert_eq(b->n_fw, N);
  cr_assert_eq(stats_of(bs).forwards, 0, "none to the send-only connection");
  /* It still pays. */
  adp_prepare back = simple("alpha", 5);
  a->answer = 1;
  send_prepare(bs, &back, id, &o);
  wait_outcome(t, &o, T_ANSWER);
  cr_assert_eq(o.r.state, ADP_TRANSFER_COMMITTED);
  ct_finish(t);
}

typedef struct looked {
  int calls, status;
  uint32_t code, registered;
  char participant[64], party_id[64];
  adp_party_type party_type;
} looked;

static void lookup_cb(adp_client *c, int status, const adp_lookup_result *r, void *arg) {
  (void)c;
  looked *l = arg;
  l->calls++;
  l->status = status;
  l->code = r->error_code;
  snprintf(l->participant, sizeof l->participant, "%s", r->participant_id);
  snprintf(l->party_id, sizeof l->party_id, "%s", r->party.id);
  l->party_type = r->party.type;
}

static void register_cb(adp_client *c, int status, const adp_register_result *r, void *arg) {
  (void)c;
  looked *l = arg;
  l->calls++;
  l->status = status;
  l->registered = r->registered;
  l->code = r->error_code;
}

Test(client, party_directory) {
  ct *t = ct_start(NULL);
  peer *a = peer_new(t, "alpha", NULL), *b = peer_new(t, "beta", NULL);
  peer *g = peer_new(t, "gamma", NULL);
  b->answer = 1;
  wait_connected(t, a);
  wait_connected(t, b);
  wait_connected(t, g);

  adp_party mine[2] = {{ADP_PARTY_MSISDN, "254711000001"}, {ADP_PARTY_NATIONAL_ID, "B-1234"}};
  looked reg = {0};
  cr_assert_eq(adp_client_register_parties(b->c, mine, 2, register_cb, &reg), ADP_OK);
  RUN_UNTIL(t, reg.calls, T_ANSWER);
  cr_assert_eq(reg.status, ADP_OK, "%s %u", adp_strerror(reg.status), reg.code);
  cr_assert_eq(reg.registered, 2);

  looked l1 = {0}, l2 = {0};
  adp_party nobody = {ADP_PARTY_NATIONAL_ID, "nobody"};
  cr_assert_eq(adp_client_lookup_party(a->c, &mine[1], lookup_cb, &l1), ADP_OK);
  cr_assert_eq(adp_client_lookup_party(a->c, &nobody, lookup_cb, &l2), ADP_OK);
  RUN_UNTIL(t, l1.calls && l2.calls, T_ANSWER);
  cr_assert_eq(l1.status, ADP_OK);
  cr_assert_str_eq(l1.participant, "beta");
  cr_assert_eq(l1.party_type, ADP_PARTY_NATIONAL_ID);
  cr_assert_str_eq(l1.party_id, "B-1234");
  cr_assert_eq(l2.status, ADP_OK);
  cr_assert_str_eq(l2.participant, "");
  cr_assert_eq(l2.code, 3204);

  /* Routed by party, without a payee participant. */
  adp_prepare p = simple(NULL, 321);
  p.payee = mine[1];
  uint8_t id[16];
  outcome o;
  send_prepare(a, &p, id, &o);
  wait_outcome(t, &o, T_ANSWER);
  cr_assert_eq(o.r.state, ADP_TRANSFER_COMMITTED, "%s %u", adp_transfer_state_name(o.r.state),
               o.r.error_code);
  const fwd *f = find_fwd(b, id);
  cr_assert(f && f->payee_type == ADP_PARTY_NATIONAL_ID && !strcmp(f->payee_id, "B-1234"));
  /* An unknown party: refused by the switch with 3204, as the transfer's outcome. */
  p.payee = nobody;
  send_prepare(a, &p, id, &o);
  wait_outcome(t, &o, T_ANSWER);
  cr_assert_eq(o.status, ADP_OK);
  cr_assert_eq(o.r.state, ADP_TRANSFER_ABORTED);
  cr_assert_eq(o.r.error_code, 3204);

  /* gamma may not take beta's party: an Error from the switch. */
  looked steal = {0};
  cr_assert_eq(adp_client_register_parties(g->c, &mine[1], 1, register_cb, &steal), ADP_OK);
  RUN_UNTIL(t, steal.calls, T_ANSWER);
  cr_assert_eq(steal.status, ADP_E_REFUSED);
  cr_assert_eq(steal.code, 3100);

  /* Local checks, and a batch that cannot fit in one frame (max_frame_bytes 4096 here). */
  adp_party bad = {ADP_PARTY_NONE, "x"};
  cr_assert_eq(adp_client_register_parties(b->c, &bad, 1, register_cb, &reg), ADP_E_INVAL);
  cr_assert_eq(adp_client_register_parties(b->c, mine, 0, register_cb, &reg), ADP_E_INVAL);
  cr_assert_eq(adp_client_lookup_party(a->c, &bad, lookup_cb, &l1), ADP_E_INVAL);
  static adp_party many[1000];
  static char names[1000][16];
  for (int i = 0; i < 1000; i++) {
    snprintf(names[i], sizeof names[i], "2547110%05d", i);
    many[i].type = ADP_PARTY_MSISDN;
    many[i].id = names[i];
  }
  cr_assert_eq(adp_client_register_parties(b->c, many, 1000, register_cb, &reg), ADP_E_TOO_LARGE);
  cr_assert_eq(stats_of(b).outstanding, 0, "nothing kept");
  ct_finish(t);
}

Test(client, request_timeout_and_late_reply) {
  ct *t = ct_start(NULL);
  adp_client_options o;
  memset(&o, 0, sizeof o);
  o.request_timeout_ms = 300;
  peer *a = peer_new(t, "alpha", &o);
  wait_connected(t, a);

  cr_assert_eq(kill(t->h->pid, SIGSTOP), 0, "freeze tumad");
  pinged pg = {0, -1, {0, 0}};
  int64_t t0 = mono_ms();
  cr_assert_eq(adp_client_ping(a->c, ping_cb, &pg), ADP_OK);
  RUN_UNTIL(t, pg.calls, 3000);
  int64_t took = mono_ms() - t0;
  cr_assert_eq(kill(t->h->pid, SIGCONT), 0);
  cr_assert_eq(pg.calls, 1);
  cr_assert_eq(pg.status, ADP_E_TIMEOUT, "%s", adp_strerror(pg.status));
  cr_assert(took >= 290 && took < 2000, "after about request_timeout_ms: %lld ms", (long long)took);
  cr_assert_eq(stats_of(a).timeouts, 1);
  cr_assert_eq(stats_of(a).outstanding, 0);
  /* The late pong arrives and is dropped; the connection is fine. */
  RUN_UNTIL(t, stats_of(a).unmatched == 1, T_ANSWER);
  cr_assert_eq(stats_of(a).unmatched, 1);
  cr_assert_eq(pg.calls, 1, "still one callback");
  pinged pg2 = {0, -1, {0, 0}};
  cr_assert_eq(adp_client_ping(a->c, ping_cb, &pg2), ADP_OK);
  RUN_UNTIL(t, pg2.calls, T_ANSWER);
  cr_assert_eq(pg2.status, ADP_OK);
  cr_assert(a->connected && a->n_disconnected == 0);
  ct_finish(t);
}

Test(client, expiry_is_notified_to_the_payee) {
  ct *t = ct_start(NULL);
  peer *a = peer_new(t, "alpha", NULL), *b = peer_new(t, "beta", NULL);
  wait_connected(t, a);
  wait_connected(t, b);
  adp_prepare p = simple("beta", 77);
  p.expiration_ms = sh_now_ms() + 1500;
  uint8_t id[16];
  outcome o;
  send_prepare(a, &p, id, &o);
  wait_outcome(t, &o, 8000);
  cr_assert_eq(o.status, ADP_OK);
  cr_assert_eq(o.r.state, ADP_TRANSFER_EXPIRED);
  cr_assert_eq(o.r.error_code, 3303);
  cr_assert_geq(sh_now_ms(), p.expiration_ms);
  RUN_UNTIL(t, find_note(b, id), T_ANSWER);
  const adp_transfer_result *n = find_note(b, id);
  cr_assert_not_null(n, "beta (holding the forward) is told");
  cr_assert_eq(n->state, ADP_TRANSFER_EXPIRED);
  cr_assert_eq(n->error_code, 3303);
  /* A late fulfil gets the final state. */
  outcome late = {0};
  cr_assert_eq(adp_client_fulfil(b->c, id, ADP_FULFIL_COMMIT, NULL, 0, NULL, transfer_cb, &late),
               ADP_OK);
  wait_outcome(t, &late, T_ANSWER);
  cr_assert_eq(late.status, ADP_OK);
  cr_assert_eq(late.r.state, ADP_TRANSFER_EXPIRED);
  ct_finish(t);
}

Test(client, refused_connections) {
  ct *t = ct_start(NULL);
  /* An admin certificate on the operator port: the switch says why, then closes. */
  peer *adm = peer_new(t, "admin", NULL);
  RUN_UNTIL(t, adm->n_disconnected >= 1, T_CONNECT);
  cr_assert_geq(adm->n_disconnected, 1);
  cr_assert_eq(adm->n_connected, 0);
  cr_assert_eq(adm->first_error, ADP_E_REFUSED, "%s: %s", adp_strerror(adm->first_error),
               adm->last_reason);
  cr_assert_eq(adm->last_code, 3100);
  /* A server name the switch's certificate does not carry. */
  adp_client_options o;
  memset(&o, 0, sizeof o);
  o.server_name = "switch.example.org";
  peer *a = peer_new(t, "alpha", &o);
  RUN_UNTIL(t, a->n_disconnected >= 1, T_CONNECT);
  cr_assert_eq(a->n_connected, 0);
  cr_assert_eq(a->first_error, ADP_E_TLS, "%s: %s", adp_strerror(a->first_error), a->last_reason);
  /* The right name works (the switch's certificate carries localhost). */
  o.server_name = "localhost";
  peer *a2 = peer_new(t, "alpha", &o);
  wait_connected(t, a2);
  ct_finish(t);
}

typedef struct freer {
  adp_client *c;
  int calls, status, resubmit;
} freer;

static void free_in_cb(adp_client *c, int status, const adp_ping_result *r, void *arg) {
  (void)r;
  freer *f = arg;
  f->calls++;
  f->status = status;
  adp_client_free(c); /* from inside a callback */
}

static void closed_cb(adp_client *c, int status, const adp_transfer_result *r, void *arg) {
  (void)r;
  freer *f = arg;
  f->calls++;
  f->status = status;
  f->resubmit = adp_client_ping(c, NULL, NULL); /* during the free */
}

Test(client, arguments_not_connected_and_free) {
  ct *t = ct_start(NULL);
  char cert[SH_PATH_MAX + 80], key[SH_PATH_MAX + 80];
  snprintf(cert, sizeof cert, "%s", sh_cert(t->h, "alpha"));
  snprintf(key, sizeof key, "%s", sh_key(t->h, "alpha"));
  adp_client_options o;
  memset(&o, 0, sizeof o);
  adp_client *c = (adp_client *)1;
  cr_assert_eq(adp_client_new(t->base, &o, &c), ADP_E_INVAL);
  cr_assert_null(c);
  o.host = "127.0.0.1";
  o.port = t->h->port;
  o.ca_file = t->h->ca;
  o.cert_file = cert;
  o.key_file = "/nonexistent/alpha.key";
  cr_assert_eq(adp_client_new(t->base, &o, &c), ADP_E_TLS);
  o.key_file = sh_key(t->h, "beta"); /* not alpha's */
  cr_assert_eq(adp_client_new(t->base, &o, &c), ADP_E_TLS);
  o.key_file = key;
  o.reconnect_min_ms = 500;
  o.reconnect_max_ms = 100;
  cr_assert_eq(adp_client_new(t->base, &o, &c), ADP_E_INVAL);
  cr_assert_eq(adp_client_new(NULL, &o, &c), ADP_E_INVAL);
  adp_client_free(NULL);
  cr_assert_eq(adp_client_stats(NULL, NULL), ADP_E_INVAL);
  cr_assert_str_eq(adp_strerror(ADP_E_AGAIN), "would block: too many requests outstanding");
  cr_assert_str_eq(adp_strerror(12345), "unknown error");
  cr_assert_str_eq(adp_transfer_state_name(ADP_TRANSFER_EXPIRED), "EXPIRED");
  uint8_t idb[16] = {0x01, 0x93, 0x6c, 0x2a, 0x10, 0x00, 0x70, 0x00,
                     0x80, 0x00, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc};
  char text[ADP_ID_STR_LEN];
  cr_assert_str_eq(adp_id_format(idb, text), "01936c2a-1000-7000-8000-123456789abc");

  /* Before the connection is up: not connected, at once. */
  peer *a = peer_new(t, "alpha", NULL), *b = peer_new(t, "beta", NULL);
  pinged pg = {0, -1, {0, 0}};
  cr_assert_eq(adp_client_ping(a->c, ping_cb, &pg), ADP_E_NOT_CONNECTED);
  wait_connected(t, a);
  wait_connected(t, b);

  adp_prepare p = simple("beta", 10);
  outcome out = {0};
  cr_assert_eq(adp_client_prepare(a->c, NULL, NULL, transfer_cb, &out), ADP_E_INVAL);
  p.currency = "kes";
  cr_assert_eq(adp_client_prepare(a->c, &p, NULL, transfer_cb, &out), ADP_E_INVAL);
  p.currency = "KES";
  p.amount = 0;
  cr_assert_eq(adp_client_prepare(a->c, &p, NULL, transfer_cb, &out), ADP_E_INVAL);
  p.amount = 10;
  p.payee_participant = NULL;
  cr_assert_eq(adp_client_prepare(a->c, &p, NULL, transfer_cb, &out), ADP_E_INVAL, "no payee");
  p.payee_participant = "beta";
  uint8_t zero[16] = {0};
  p.transfer_id = zero;
  cr_assert_eq(adp_client_prepare(a->c, &p, NULL, transfer_cb, &out), ADP_E_INVAL);
  p.transfer_id = NULL;
  p.payer.type = ADP_PARTY_MSISDN;
  p.payer.id = "";
  cr_assert_eq(adp_client_prepare(a->c, &p, NULL, transfer_cb, &out), ADP_E_INVAL);
  p.payer.type = ADP_PARTY_NONE;
  cr_assert_eq(stats_of(a).sent, 1, "nothing was sent but the hello");
  /* The switch refuses what the library cannot know: the result says why. */
  p.payee_participant = "nobody";
  uint8_t id[16];
  send_prepare(a, &p, id, &out);
  wait_outcome(t, &out, T_ANSWER);
  cr_assert_eq(out.status, ADP_OK);
  cr_assert_eq(out.r.state, ADP_TRANSFER_ABORTED);
  cr_assert_eq(out.r.error_code, 3203);
  p.payee_participant = "beta";
  p.currency = "UGX";
  send_prepare(a, &p, id, &out);
  wait_outcome(t, &out, T_ANSWER);
  cr_assert_eq(out.r.error_code, 3100, "a currency alpha does not hold");
  p.currency = "KES";

  /* Freed with requests outstanding (beta holds the forwards): each callback once, with
   * ADP_E_CLOSED, before adp_client_free() returns; submitting from them is refused. */
  freer f1 = {0}, f2 = {0};
  cr_assert_eq(adp_client_prepare(a->c, &p, NULL, closed_cb, &f1), ADP_OK);
  cr_assert_eq(adp_client_prepare(a->c, &p, NULL, closed_cb, &f2), ADP_OK);
  RUN_UNTIL(t, b->n_fw == 2, T_ANSWER);
  adp_client_free(a->c);
  a->c = NULL;
  cr_assert(f1.calls == 1 && f1.status == ADP_E_CLOSED, "first: %d calls, %s", f1.calls,
            adp_strerror(f1.status));
  cr_assert(f2.calls == 1 && f2.status == ADP_E_CLOSED);
  cr_assert_eq(f1.resubmit, ADP_E_CLOSED);

  /* Freed from inside one of its own callbacks, with another request outstanding. */
  peer *a2 = peer_new(t, "alpha", NULL);
  wait_connected(t, a2);
  freer in = {0};
  outcome other = {0};
  cr_assert_eq(adp_client_prepare(a2->c, &p, NULL, transfer_cb, &other), ADP_OK);
  RUN_UNTIL(t, b->n_fw == 3, T_ANSWER);
  cr_assert_eq(adp_client_ping(a2->c, free_in_cb, &in), ADP_OK);
  RUN_UNTIL(t, in.calls, T_ANSWER);
  a2->c = NULL; /* freed by its callback */
  cr_assert_eq(in.calls, 1);
  cr_assert_eq(in.status, ADP_OK);
  cr_assert_eq(other.calls, 1, "the other request is completed by the free");
  cr_assert_eq(other.status, ADP_E_CLOSED);
  run_for(t, 200);
  cr_assert_eq(in.calls, 1);
  cr_assert_eq(other.calls, 1);
  ct_finish(t);
}

/* ================================================================ child processes */

typedef struct proc {
  pid_t pid;
  int out; /* its stdout (read end) */
  int in;  /* its stdin (write end), or -1 */
  char buf[65536];
  size_t len;
} proc;

/* Starts argv[0] with stdout to a pipe, stderr to err_path (NULL: inherited) and, if with_stdin,
 * stdin from a pipe (else /dev/null). The child dies with us. */
static void proc_start(proc *p, const char *const *argv, const char *err_path, int with_stdin) {
  memset(p, 0, sizeof *p);
  int out[2], in[2] = {-1, -1};
  cr_assert_eq(pipe(out), 0);
  if (with_stdin)
    cr_assert_eq(pipe(in), 0);
  pid_t parent = getpid();
  p->pid = fork();
  cr_assert_geq(p->pid, 0);
  if (p->pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
      _exit(127);
    dup2(out[1], 1);
    if (err_path) {
      int fd = open(err_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (fd >= 0)
        dup2(fd, 2);
    }
    int nul = open("/dev/null", O_RDONLY);
    dup2(with_stdin ? in[0] : nul, 0);
    execv(argv[0], (char *const *)argv);
    _exit(127);
  }
  close(out[1]);
  p->out = out[0];
  p->in = -1;
  if (with_stdin) {
    close(in[0]);
    p->in = in[1];
  }
}

/* Reads its output until it contains needle or timeout_ms pass; 1 if found. */
static int proc_expect(proc *p, const char *needle, int timeout_ms) {
  int64_t deadline = mono_ms() + timeout_ms;
  for (;;) {
    p->buf[p->len] = 0;
    if (strstr(p->buf, needle))
      return 1;
    int64_t left = deadline - mono_ms();
    if (left <= 0 || p->len + 1 >= sizeof p->buf)
      return 0;
    struct pollfd pf = {p->out, POLLIN, 0};
    if (poll(&pf, 1, (int)left) <= 0)
      continue;
    ssize_t n = read(p->out, p->buf + p->len, sizeof p->buf - 1 - p->len);
    if (n <= 0)
      return strstr(p->buf, needle) != NULL;
    p->len += (size_t)n;
  }
}

/* The next whole line of its output (without the newline), within timeout_ms; NULL if none.
 * Consumes it from the buffer. */
static const char *proc_line(proc *p, char *line, size_t linelen, int timeout_ms) {
  int64_t deadline = mono_ms() + timeout_ms;
  for (;;) {
    p->buf[p->len] = 0;
    char *nl = strchr(p->buf, '\n');
    if (nl) {
      size_t n = (size_t)(nl - p->buf);
      snprintf(line, linelen, "%.*s", (int)n, p->buf);
      memmove(p->buf, nl + 1, p->len - n - 1);
      p->len -= n + 1;
      return line;
    }
    int64_t left = deadline - mono_ms();
    if (left <= 0 || p->len + 1 >= sizeof p->buf)
      return NULL;
    struct pollfd pf = {p->out, POLLIN, 0};
    if (poll(&pf, 1, (int)left) <= 0)
      continue;
    ssize_t r = read(p->out, p->buf + p->len, sizeof p->buf - 1 - p->len);
    if (r <= 0)
      return NULL;
    p->len += (size_t)r;
  }
}

/* Waits at most timeout_ms for it to exit; returns the wait status, or -1 (then it is killed). */
static int proc_wait(proc *p, int timeout_ms) {
  int64_t deadline = mono_ms() + timeout_ms;
  int st = 0;
  while (mono_ms() < deadline) {
    pid_t r = waitpid(p->pid, &st, WNOHANG);
    if (r == p->pid)
      goto done;
    struct timespec ts = {0, 10000000};
    nanosleep(&ts, NULL);
  }
  kill(p->pid, SIGKILL);
  waitpid(p->pid, &st, 0);
  st = -1;
done:
  close(p->out);
  if (p->in >= 0)
    close(p->in);
  return st;
}

Test(client, the_readme_example_runs) {
  ct *t = ct_start(NULL);
  const char *example = getenv("CLIENT_EXAMPLE");
  cr_assert(example && access(example, X_OK) == 0, "CLIENT_EXAMPLE is the example program");
  char port[8], bcert[SH_PATH_MAX + 80], bkey[SH_PATH_MAX + 80], acert[SH_PATH_MAX + 80],
      akey[SH_PATH_MAX + 80];
  snprintf(port, sizeof port, "%u", t->h->port);
  snprintf(bcert, sizeof bcert, "%s", sh_cert(t->h, "beta"));
  snprintf(bkey, sizeof bkey, "%s", sh_key(t->h, "beta"));
  snprintf(acert, sizeof acert, "%s", sh_cert(t->h, "alpha"));
  snprintf(akey, sizeof akey, "%s", sh_key(t->h, "alpha"));
  const char *payee_argv[] = {example, "payee", "127.0.0.1", port, t->h->ca, bcert, bkey, NULL};
  const char *payer_argv[] = {example, "payer", "127.0.0.1", port,   t->h->ca,
                              acert,   akey,    "beta",      "2500", NULL};
  static proc payee, payer;
  proc_start(&payee, payee_argv, NULL, 0);
  cr_assert(proc_expect(&payee, "connected as beta", T_CONNECT), "payee output: %s", payee.buf);
  proc_start(&payer, payer_argv, NULL, 0);
  cr_assert(proc_expect(&payer, ": COMMITTED", T_ANSWER * 2), "payer output: %s", payer.buf);
  int st = proc_wait(&payer, T_ANSWER);
  cr_assert(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "payer exits 0 (status %d): %s", st,
            payer.buf);
  cr_assert(strstr(payer.buf, "connected as alpha") && strstr(payer.buf, "sent transfer "),
            "payer output: %s", payer.buf);
  cr_assert(proc_expect(&payee, ": COMMITTED", T_ANSWER), "payee output: %s", payee.buf);
  cr_assert(strstr(payee.buf, "from alpha: 2500 KES"), "payee output: %s", payee.buf);
  kill(payee.pid, SIGTERM);
  st = proc_wait(&payee, T_ANSWER);
  cr_assert(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "payee exits 0 on SIGTERM (%d)", st);
  ct_finish(t);
}

static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  cr_assert_not_null(f, "open %s: %s", path, strerror(errno));
  static char buf[1 << 16];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  return strdup(buf);
}

Test(client, the_readme_shows_the_example_as_built) {
  const char *src = getenv("CLIENT_EXAMPLE_SRC"), *readme = getenv("CLIENT_README");
  cr_assert(src && readme, "CLIENT_EXAMPLE_SRC and CLIENT_README are set");
  char *code = slurp(src), *doc = slurp(readme);
  const char *from = strstr(code, "#include");
  cr_assert_not_null(from);
  cr_assert(strstr(doc, from) != NULL,
            "adapters/client/README.md must show example.c from its first #include to its end");
  free(code);
  free(doc);
}

Test(client, valgrind_no_leaks, .timeout = 400) {
  const char *valgrind = getenv("VALGRIND"), *program = getenv("CLIENT_LEAKCHECK");
  if (!valgrind || !valgrind[0] || access(valgrind, X_OK) != 0)
    cr_skip_test("valgrind is not installed (or this is a sanitizer build: they do not mix)");
  cr_assert(program && access(program, X_OK) == 0, "CLIENT_LEAKCHECK is the program");
  ct *t = ct_start(NULL);
  char port[8], acert[SH_PATH_MAX + 80], akey[SH_PATH_MAX + 80], bcert[SH_PATH_MAX + 80],
      bkey[SH_PATH_MAX + 80], vlog[SH_PATH_MAX + 32];
  snprintf(port, sizeof port, "%u", t->h->port);
  snprintf(acert, sizeof acert, "%s", sh_cert(t->h, "alpha"));
  snprintf(akey, sizeof akey, "%s", sh_key(t->h, "alpha"));
  snprintf(bcert, sizeof bcert, "%s", sh_cert(t->h, "beta"));
  snprintf(bkey, sizeof bkey, "%s", sh_key(t->h, "beta"));
  snprintf(vlog, sizeof vlog, "%s/valgrind.log", t->h->dir);
  const char *argv[] = {valgrind,
                        "--error-exitcode=1",
                        "--leak-check=full",
                        "--show-leak-kinds=definite,indirect,possible",
                        "--errors-for-leak-kinds=definite,indirect,possible",
                        "--track-fds=no",
                        program,
                        "127.0.0.1",
                        port,
                        t->h->ca,
                        acert,
                        akey,
                        bcert,
                        bkey,
                        NULL};
  static proc v;
  proc_start(&v, argv, vlog, 1);
  char line[128], err[512];
  int64_t deadline = mono_ms() + 300000;
  while (mono_ms() < deadline) {
    if (!proc_line(&v, line, sizeof line, (int)(deadline - mono_ms())))
      break; /* it exited (or the time is up) */
    int ok = 0;
    if (!strcmp(line, "STOP"))
      ok = kill(t->h->pid, SIGSTOP) == 0;
    else if (!strcmp(line, "CONT"))
      ok = kill(t->h->pid, SIGCONT) == 0;
    else if (!strcmp(line, "KILL"))
      ok = sh_kill(t->h) == 0;
    else if (!strcmp(line, "START"))
      ok = sh_start(t->h, T_START, err, sizeof err) == 0 && t->h->port == (uint16_t)atoi(port);
    else
      continue;
    cr_assert(ok, "could not %s tumad", line);
    cr_assert_eq(write(v.in, "OK\n", 3), 3);
  }
  int st = proc_wait(&v, 10000);
  if (!(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
    char cmd[SH_PATH_MAX + 64];
    snprintf(cmd, sizeof cmd, "tail -n 60 %s >&2", vlog);
    if (system(cmd) != 0)
      fprintf(stderr, "no valgrind log at %s\n", vlog);
  }
  cr_assert(st >= 0 && WIFEXITED(st), "the program ran to its end under valgrind (status %d)", st);
  cr_assert_eq(WEXITSTATUS(st), 0,
               "valgrind found errors or leaks, or an expectation failed (log above: %s)", vlog);
  ct_finish(t);
}
