/* fuzz_switch.c — libFuzzer target for every request handler tumad reaches from the network:
 * the operator dispatcher (hello, ping, party register / lookup, transfer prepare / fulfil /
 * query) and the admin dispatcher (participants, liquidity, caps, positions, the directory,
 * and the disbursement messages: programmes, beneficiaries, chunked uploads, approval, status,
 * report, reach — from admin, programme-manager and approver connections),
 * running in an in-process switch with a real ledger and registry in a scratch directory.
 *
 * What is real: switch/operator.c, admin.c, transfer.c, server.c (sending, participants),
 * accounts.c, errors.c, the registry and the ledger (LMDB, without fsync: the durability rule
 * is not what is fuzzed here). What is not: the connections are fake (no TLS, no socket: a
 * bufferevent without a descriptor whose output is decoded and discarded), and the ledger
 * writer thread is replaced by a synchronous stand-in of commit.h defined below, which applies
 * queued requests on this thread after each message — the same callbacks, in the same order,
 * deterministic. Expiry timers run in the event loop like in tumad.
 *
 * Input: a sequence of records [1 byte: which connection][4-byte big-endian length][body]; the
 * connection byte modulo 6 picks alpha, beta, gamma (operators), the admin, a programme manager
 * or an approver. A body that does
 * not decode is what server.c refuses before dispatch, so it is skipped. A TransferPrepare's
 * expiration_ms below 2^32 is read as relative to now (else nearly every prepare would be
 * refused as expired, and the state machine never reached). Everything the switch sends must
 * frame and decode. The switch is rebuilt from scratch every RESET_EVERY inputs, so its state
 * stays bounded over long runs.
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"
#include "disburse.h"
#include "frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                                           \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      fprintf(stderr, "fuzz_switch: check failed at line %d: %s\n", __LINE__, #cond);              \
      abort();                                                                                     \
    }                                                                                              \
  } while (0)

enum { RESET_EVERY = 500, QUEUE_CAP = 64, N_CONNS = 6 };

/* ---------------------------------------------------------------- a synchronous commit.h */

typedef struct fake_request {
  struct fake_request *next;
  sw_commit_cb cb;
  void *arg;
  size_t n;
  ledger_event events[];
} fake_request;

struct sw_commit {
  ledger *l;
  fake_request *head, *tail;
  size_t queued;
  void (*space_cb)(void *arg);
  void *space_arg;
  sw_commit_latency latency;
};

int sw_commit_start(struct event_base *base, ledger *l, const ledger_queue_options *opts,
                    sw_commit **out) {
  (void)base;
  (void)opts;
  sw_commit *c = calloc(1, sizeof *c);
  if (!c)
    return LEDGER_E_NOMEM;
  c->l = l;
  *out = c;
  return 0;
}

int sw_commit_submit(sw_commit *c, const ledger_event *events, size_t n, sw_commit_cb cb,
                     void *arg) {
  if (c->queued >= QUEUE_CAP)
    return LEDGER_E_AGAIN; /* the switch's queue-full path gets exercised too */
  fake_request *r = malloc(sizeof *r + n * sizeof *events);
  if (!r)
    return LEDGER_E_NOMEM;
  r->next = NULL;
  r->cb = cb;
  r->arg = arg;
  r->n = n;
  memcpy(r->events, events, n * sizeof *events);
  if (c->tail)
    c->tail->next = r;
  else
    c->head = r;
  c->tail = r;
  c->queued++;
  return 0;
}

void sw_commit_set_space_cb(sw_commit *c, void (*cb)(void *arg), void *arg) {
  c->space_cb = cb;
  c->space_arg = arg;
}

void sw_commit_stats(sw_commit *c, ledger_queue_stats *out) {
  memset(out, 0, sizeof *out);
  out->queued_events = c->queued;
}

const sw_commit_latency *sw_commit_latency_of(const sw_commit *c) {
  return &c->latency;
}

/* Applies every queued request (and those their callbacks queue) in order. */
static void fake_drain(sw_commit *c) {
  int any = 0;
  while (c->head) {
    fake_request *r = c->head;
    c->head = r->next;
    if (!c->head)
      c->tail = NULL;
    c->queued--;
    ledger_result results[LEDGER_BATCH_MAX < 64 ? LEDGER_BATCH_MAX : 64];
    FUZZ_CHECK(r->n <= sizeof results / sizeof results[0]);
    int status = ledger_apply(c->l, r->events, results, r->n);
    r->cb(status, results, r->n, r->arg);
    free(r);
    any = 1;
  }
  if (any && c->space_cb)
    c->space_cb(c->space_arg);
}

void sw_commit_close(sw_commit *c) {
  if (!c)
    return;
  fake_drain(c);
  free(c);
}

/* ---------------------------------------------------------------- the switch */

typedef struct fuzz_state {
  char dir[64];
  char config_path[128];
  sw_config cfg;
  sw_switch sw;
  sw_conn *conns[N_CONNS];
  unsigned inputs;
} fuzz_state;

static fuzz_state *g_state; /* the fuzz target's one switch (libFuzzer calls us in a loop) */

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(path);
}

/* Replicates server.c's index placement (open addressing by id) for the fake connections. */
static void index_put(sw_switch *sw, sw_conn *c) {
  size_t size = sw->conn_index_size,
         k = (size_t)((c->id * 0x9e3779b97f4a7c15ull) >> 20) & (size - 1);
  while (sw->conn_index[k])
    k = (k + 1) & (size - 1);
  sw->conn_index[k] = c;
}

static sw_conn *fake_conn(sw_switch *sw, const char *identity, int admin, const char *role) {
  sw_conn *c = calloc(1, sizeof *c);
  FUZZ_CHECK(c);
  c->sw = sw;
  c->id = ++sw->next_conn_id;
  c->admin = admin;
  c->ready = 1;
  c->bev = bufferevent_socket_new(sw->base, -1, 0);
  FUZZ_CHECK(c->bev);
  snprintf(c->identity, sizeof c->identity, "%s", identity);
  snprintf(c->role, sizeof c->role, "%s", role);
  snprintf(c->addr, sizeof c->addr, "fuzz");
  c->next = sw->conns;
  if (sw->conns)
    sw->conns->prev = c;
  sw->conns = c;
  sw->n_conns++;
  index_put(sw, c);
  if (!admin) {
    sw_peer *peer = sw_peer_by_id(sw, identity);
    FUZZ_CHECK(peer);
    c->participant = peer->p.number;
    c->peer_next = peer->conns;
    peer->conns = c;
    peer->n_conns++;
  }
  return c;
}

static void state_free(fuzz_state *s) {
  if (!s)
    return;
  sw_switch *sw = &s->sw;
  sw_disburse_stop(sw);
  sw_commit_close(sw->commit);
  sw->commit = NULL;
  sw_transfers_free(sw);
  sw_disburse_close(sw);
  for (int i = 0; i < N_CONNS; i++)
    if (s->conns[i]) {
      bufferevent_free(s->conns[i]->bev);
      free(s->conns[i]);
    }
  free(sw->conn_index);
  free(sw->peers);
  if (sw->base)
    event_base_free(sw->base);
  sw_registry_close(sw->registry);
  ledger_close(sw->ledger);
  sw_config_free(&s->cfg);
  nftw(s->dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
  free(s);
}

static fuzz_state *state_new(void) {
  fuzz_state *s = calloc(1, sizeof *s);
  FUZZ_CHECK(s);
  const char *tmp = getenv("TMPDIR");
  snprintf(s->dir, sizeof s->dir, "%.40s/tuma-fuzz-sw-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
  FUZZ_CHECK(mkdtemp(s->dir));
  snprintf(s->config_path, sizeof s->config_path, "%s/tumad.ini", s->dir);
  FILE *f = fopen(s->config_path, "w");
  FUZZ_CHECK(f);
  fprintf(f,
          "[switch]\ndata_dir = %s/data\nmax_frame_bytes = 4096\nmax_in_flight = 64\n"
          "max_expiry_ms = 60000\nlog_level = error\n"
          "[tls]\nca = ca.crt\ncert = tumad.crt\nkey = tumad.key\n"
          "[ledger]\nmap_size_mb = 4\nmap_size_max_mb = 256\n"
          "[participant alpha]\nname = Alpha\ncurrencies = KES, UGX\n"
          "initial_deposit.KES = 1000000\ninitial_deposit.UGX = 1000000\nmsisdn_prefixes = 25470\n"
          "[participant beta]\nname = Beta\ncurrencies = KES, UGX\ninitial_deposit.KES = 1000000\n"
          "msisdn_prefixes = 25471\n"
          "[participant gamma]\nname = Gamma\ncurrencies = KES\nnet_debit_cap.KES = 5000\n"
          "initial_deposit.KES = 1000000\nmsisdn_prefixes = 25472\n",
          s->dir);
  FUZZ_CHECK(fclose(f) == 0);
  char err[1024];
  FUZZ_CHECK(sw_config_load(s->config_path, &s->cfg, err, sizeof err) == 0);
  sw_switch *sw = &s->sw;
  sw->cfg = &s->cfg;
  sw->log.level = SW_LOG_ERROR - 1; /* silent: errors are the fuzzer's daily bread */
  sw->next_correlation = 1ull << 63;
  char path[256];
  snprintf(path, sizeof path, "%s/ledger", s->cfg.data_dir);
  ledger_options lo = {0};
  lo.map_size = (size_t)s->cfg.map_size_mb << 20;
  lo.map_size_max = (size_t)s->cfg.map_size_max_mb << 20;
  lo.flags = LEDGER_OPEN_UNSAFE_NOSYNC_BENCH_ONLY; /* speed; durability is not fuzzed here */
  FUZZ_CHECK(ledger_open(path, &lo, &sw->ledger) == 0);
  sw_registry_options ro = {0};
  ro.secret_file = s->cfg.directory_secret_file;
  FUZZ_CHECK(sw_registry_open(s->cfg.data_dir, &ro, &sw->registry, err, sizeof err) == 0);
  FUZZ_CHECK(sw_admin_apply_config(sw) == 0);
  sw->base = event_base_new();
  FUZZ_CHECK(sw->base);
  FUZZ_CHECK(sw_commit_start(sw->base, sw->ledger, NULL, &sw->commit) == 0);
  FUZZ_CHECK(sw_transfers_init(sw) == 0 && sw_transfers_recover(sw) == 0);
  FUZZ_CHECK(sw_disburse_open(sw) == 0);
  sw->conn_index_size = 64;
  sw->conn_index = calloc(sw->conn_index_size, sizeof *sw->conn_index);
  FUZZ_CHECK(sw->conn_index);
  s->conns[0] = fake_conn(sw, "alpha", 0, "operator");
  s->conns[1] = fake_conn(sw, "beta", 0, "operator");
  s->conns[2] = fake_conn(sw, "gamma", 0, "operator");
  s->conns[3] = fake_conn(sw, "admin", 1, "admin");
  s->conns[4] = fake_conn(sw, "manager", 1, "programme-manager");
  s->conns[5] = fake_conn(sw, "approver", 1, "approver");
  return s;
}

/* Everything the switch sent on c must be whole frames that decode; then it is discarded. */
static void check_output(sw_conn *c) {
  struct evbuffer *out = bufferevent_get_output(c->bev);
  size_t len = evbuffer_get_length(out);
  if (!len)
    return;
  const uint8_t *buf = evbuffer_pullup(out, (ssize_t)len);
  size_t at = 0;
  while (at < len) {
    size_t off = 0, body = 0, used = 0;
    FUZZ_CHECK(proto_frame_parse(buf + at, len - at, SIZE_MAX, &off, &body, &used) ==
               PROTO_FRAME_OK);
    if (c->admin) {
      Tuma__V1__AdminEnvelope *e = proto_admin_envelope_decode(buf + at + off, body);
      FUZZ_CHECK(e);
      tuma__v1__admin_envelope__free_unpacked(e, NULL);
    } else {
      Tuma__V1__Envelope *e = proto_envelope_decode(buf + at + off, body);
      FUZZ_CHECK(e);
      tuma__v1__envelope__free_unpacked(e, NULL);
    }
    at += used;
  }
  evbuffer_drain(out, len);
}

static void settle(fuzz_state *s) {
  for (int i = 0; i < 4; i++) {
    fake_drain(s->sw.commit);
    event_base_loop(s->sw.base, EVLOOP_NONBLOCK); /* due expiry timers */
  }
  fake_drain(s->sw.commit);
  for (int i = 0; i < N_CONNS; i++) {
    check_output(s->conns[i]);
    s->conns[i]->in_flight = 0; /* the fake connections are never paused */
    s->conns[i]->read_paused = 0;
    s->conns[i]->blocked = 0;
  }
  s->sw.blocked = NULL;
}

/* At exit: the scratch directory goes too. */
static void state_free_at_exit(void) {
  state_free(g_state);
  g_state = NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!g_state)
    atexit(state_free_at_exit);
  if (!g_state || g_state->inputs >= RESET_EVERY) {
    state_free(g_state);
    g_state = state_new();
  }
  fuzz_state *s = g_state;
  s->inputs++;
  size_t at = 0;
  while (size - at >= 1 + PROTO_FRAME_HEADER_BYTES) {
    sw_conn *c = s->conns[data[at] % N_CONNS];
    at++;
    size_t off = 0, body = 0, used = 0;
    if (proto_frame_parse(data + at, size - at, s->cfg.max_frame_bytes, &off, &body, &used) !=
        PROTO_FRAME_OK)
      break;
    const uint8_t *b = data + at + off;
    at += used;
    c->in_flight++;
    if (c->admin) {
      Tuma__V1__AdminEnvelope *env = proto_admin_envelope_decode(b, body);
      if (!env)
        continue;
      sw_admin_dispatch(c, env);
      tuma__v1__admin_envelope__free_unpacked(env, NULL);
    } else {
      Tuma__V1__Envelope *env = proto_envelope_decode(b, body);
      if (!env)
        continue;
      if (env->body_case == TUMA__V1__ENVELOPE__BODY_TRANSFER_PREPARE &&
          env->transfer_prepare->expiration_ms < (1ull << 32))
        env->transfer_prepare->expiration_ms += sw_now_ms();
      sw_operator_dispatch(c, env);
      tuma__v1__envelope__free_unpacked(env, NULL);
    }
    settle(s);
  }
  settle(s);
  return 0;
}
