/* client.c — libtuma-client (tuma_client.h): one mTLS 1.3 connection to tumad's operator
 * listener on the caller's libevent loop, pipelined requests matched to replies by correlation
 * id, forwards and notifications handed to the application, reconnection with backoff.
 *
 * A connection goes IDLE → TCP (non-blocking connect) → TLS (handshake in an OpenSSL
 * bufferevent) → HELLO (the library's Hello, awaiting HelloAck) → READY. One timer bounds the
 * steps before READY (connect_timeout_ms); any failure or drop returns to IDLE, fails what is
 * outstanding with ADP_E_DISCONNECTED and arms the retry timer.
 *
 * Requests live in a hash table by correlation id and in a list in submission order (so that a
 * drop fails them in order); each has its own timer. Replies are matched by correlation id and
 * by the kind of body, and a TransferResult also by transfer id: the switch's own messages
 * carry correlation ids it chose, which may equal one of ours.
 *
 * Re-entrancy: user callbacks may call anything, adp_client_free() included. Every entry from
 * libevent counts itself in `depth`; a free requested meanwhile only tears the connection down
 * and completes the requests, and the memory goes when the outermost entry returns.
 */
#include "tuma_client.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/util.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "frame.h"

#define DEFAULT_MAX_OUTSTANDING 1024u
#define DEFAULT_REQUEST_TIMEOUT_MS 10000u
#define DEFAULT_CONNECT_TIMEOUT_MS 10000u
#define DEFAULT_RECONNECT_MIN_MS 100u
#define DEFAULT_RECONNECT_MAX_MS 30000u
#define DEFAULT_EXPIRY_MS 30000u
#define DEFAULT_MAX_FRAME 65536u /* until the HelloAck says otherwise */
#define MAX_FRAME_IN (16u << 20) /* the most the switch may configure */
#define MAX_PARTY_ID 128
#define MAX_PARTIES 1000

enum req_kind { K_HELLO, K_PREPARE, K_FULFIL, K_QUERY, K_REGISTER, K_LOOKUP, K_PING };
enum conn_state { CS_IDLE, CS_TCP, CS_TLS, CS_HELLO, CS_READY };

typedef struct req req;
struct req {
  adp_client *client;
  uint64_t corr;
  int kind;
  uint8_t transfer_id[ADP_ID_LEN]; /* prepare, fulfil, query */
  union {
    adp_transfer_cb transfer;
    adp_register_cb reg;
    adp_lookup_cb lookup;
    adp_ping_cb ping;
  } cb;
  void *arg;
  struct event *timer;
  uint64_t started_us;       /* ping: for the round trip */
  uint64_t nonce;            /* ping */
  adp_party_type party_type; /* lookup: the party asked about, for failures */
  char *party_id;
  req *hnext;       /* hash chain */
  req *prev, *next; /* every pending request, oldest first */
};

struct adp_client {
  struct event_base *base;
  char *host, *server_name, *client_name;
  uint16_t port;
  int server_is_ip;
  uint32_t max_outstanding, max_fulfils, request_timeout_ms, connect_timeout_ms;
  uint32_t backoff_min, backoff_max, default_expiry_ms;
  adp_forward_cb on_forward;
  adp_notify_cb on_notify;
  adp_state_cb on_state;
  void *arg;
  SSL_CTX *ctx;

  /* The connection. */
  int state;
  uint64_t gen;              /* bumped when a connection goes: stale loops stop */
  evutil_socket_t fd;        /* during CS_TCP; afterwards the bufferevent owns it */
  struct event *connect_ev;  /* writability during CS_TCP */
  struct bufferevent *bev;   /* from CS_TLS on */
  struct event *conn_timer;  /* bounds CS_TCP .. CS_HELLO */
  struct event *retry_timer; /* the next attempt */
  unsigned attempt;          /* failed attempts since the last READY */
  int ever_ready;
  uint32_t max_frame;
  char participant[64];

  /* Requests. */
  req **buckets;
  size_t nbuckets; /* a power of two */
  req *head, *tail;
  uint32_t n_requests, n_fulfils; /* outstanding, as limited by the options */
  uint64_t next_corr;
  uint64_t next_nonce;

  /* UUIDv7 state: last millisecond and the 12-bit counter within it. */
  uint64_t id_ms;
  unsigned id_seq;
  uint64_t rng; /* xorshift64*, for jitter */

  adp_stats stats;
  int depth;   /* entries from libevent in progress */
  int freeing; /* adp_client_free() was called */
};

static void connect_ready_cb(evutil_socket_t fd, short what, void *arg);
static void conn_timeout_cb(evutil_socket_t fd, short what, void *arg);
static void retry_cb(evutil_socket_t fd, short what, void *arg);
static void request_timeout_cb(evutil_socket_t fd, short what, void *arg);
static void read_cb(struct bufferevent *bev, void *arg);
static void bev_event_cb(struct bufferevent *bev, short what, void *arg);

/* ---------------------------------------------------------------- small things */

const char *adp_strerror(int status) {
  switch (status) {
  case ADP_OK:
    return "ok";
  case ADP_E_INVAL:
    return "invalid argument";
  case ADP_E_NOMEM:
    return "out of memory";
  case ADP_E_AGAIN:
    return "would block: too many requests outstanding";
  case ADP_E_NOT_CONNECTED:
    return "not connected to the switch";
  case ADP_E_DISCONNECTED:
    return "disconnected before the reply: outcome unknown";
  case ADP_E_TIMEOUT:
    return "timed out";
  case ADP_E_REFUSED:
    return "refused by the switch";
  case ADP_E_CLOSED:
    return "client closed";
  case ADP_E_TOO_LARGE:
    return "request larger than the switch's frame limit";
  case ADP_E_TLS:
    return "TLS error";
  case ADP_E_CONNECT:
    return "cannot connect";
  case ADP_E_PROTOCOL:
    return "protocol error from the switch";
  default:
    return "unknown error";
  }
}

const char *adp_transfer_state_name(int state) {
  switch (state) {
  case ADP_TRANSFER_RESERVED:
    return "RESERVED";
  case ADP_TRANSFER_COMMITTED:
    return "COMMITTED";
  case ADP_TRANSFER_ABORTED:
    return "ABORTED";
  case ADP_TRANSFER_EXPIRED:
    return "EXPIRED";
  default:
    return "UNKNOWN";
  }
}

char *adp_id_format(const uint8_t id[ADP_ID_LEN], char out[ADP_ID_STR_LEN]) {
  static const char hex[] = "0123456789abcdef";
  size_t o = 0;
  for (int i = 0; i < ADP_ID_LEN; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10)
      out[o++] = '-';
    out[o++] = hex[id[i] >> 4];
    out[o++] = hex[id[i] & 15];
  }
  out[o] = 0;
  return out;
}

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t mono_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static struct timeval ms_tv(uint64_t ms) {
  struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
  return tv;
}

static uint64_t next_random(adp_client *c) {
  c->rng ^= c->rng >> 12;
  c->rng ^= c->rng << 25;
  c->rng ^= c->rng >> 27;
  return c->rng * 0x2545f4914f6cdd1dull;
}

static char *dup_or_null(const char *s, int *failed) {
  if (!s)
    return NULL;
  char *d = strdup(s);
  if (!d)
    *failed = 1;
  return d;
}

static int id_valid(const uint8_t *id) {
  if (!id)
    return 0;
  for (int i = 0; i < ADP_ID_LEN; i++)
    if (id[i])
      return 1;
  return 0;
}

static int party_valid(const adp_party *p) {
  return p && p->type >= ADP_PARTY_MSISDN && p->type <= ADP_PARTY_BUSINESS_ID && p->id &&
         p->id[0] && strlen(p->id) <= MAX_PARTY_ID;
}

/* A UUIDv7 (RFC 9562): 48-bit Unix ms, version 7, a 12-bit counter that keeps ids made in the
 * same millisecond ordered (method 1, started at a random value with headroom), variant, then
 * 62 random bits. Monotonic per client even if the clock steps back. */
static int new_transfer_id(adp_client *c, uint8_t id[ADP_ID_LEN]) {
  uint8_t rnd[10];
  if (RAND_bytes(rnd, sizeof rnd) != 1)
    return ADP_E_TLS;
  uint64_t ms = now_ms();
  if (ms <= c->id_ms) {
    ms = c->id_ms;
    if (++c->id_seq > 0xfff) {
      ms++;
      c->id_seq = 0;
    }
  } else {
    c->id_seq = ((unsigned)rnd[0] << 8 | rnd[1]) & 0x7ff;
  }
  c->id_ms = ms;
  for (int i = 0; i < 6; i++)
    id[i] = (uint8_t)(ms >> (8 * (5 - i)));
  id[6] = (uint8_t)(0x70 | (c->id_seq >> 8));
  id[7] = (uint8_t)(c->id_seq & 0xff);
  memcpy(id + 8, rnd + 2, 8);
  id[8] = (uint8_t)(0x80 | (id[8] & 0x3f));
  return 0;
}

/* ---------------------------------------------------------------- lifetime */

static void destroy(adp_client *c);

static void enter(adp_client *c) {
  c->depth++;
}

/* Ends an entry from libevent; frees the client if it was freed meanwhile. c must not be used
 * after this call. */
static void leave(adp_client *c) {
  if (--c->depth == 0 && c->freeing)
    destroy(c);
}

/* ---------------------------------------------------------------- the request table */

static size_t bucket_of(const adp_client *c, uint64_t corr) {
  return (size_t)((corr * 0x9e3779b97f4a7c15ull) >> 20) & (c->nbuckets - 1);
}

static req *req_find(adp_client *c, uint64_t corr) {
  for (req *r = c->buckets[bucket_of(c, corr)]; r; r = r->hnext)
    if (r->corr == corr)
      return r;
  return NULL;
}

static void req_link(adp_client *c, req *r) {
  size_t b = bucket_of(c, r->corr);
  r->hnext = c->buckets[b];
  c->buckets[b] = r;
  r->prev = c->tail;
  r->next = NULL;
  if (c->tail)
    c->tail->next = r;
  else
    c->head = r;
  c->tail = r;
  if (r->kind == K_FULFIL)
    c->n_fulfils++;
  else if (r->kind != K_HELLO)
    c->n_requests++;
}

/* Takes r out of the table, the list and the counts, and stops its timer. */
static void req_unlink(adp_client *c, req *r) {
  for (req **p = &c->buckets[bucket_of(c, r->corr)]; *p; p = &(*p)->hnext)
    if (*p == r) {
      *p = r->hnext;
      break;
    }
  if (r->prev)
    r->prev->next = r->next;
  else
    c->head = r->next;
  if (r->next)
    r->next->prev = r->prev;
  else
    c->tail = r->prev;
  r->prev = r->next = r->hnext = NULL;
  if (r->kind == K_FULFIL)
    c->n_fulfils--;
  else if (r->kind != K_HELLO)
    c->n_requests--;
  if (r->timer)
    event_del(r->timer);
}

static void req_free(req *r) {
  if (!r)
    return;
  if (r->timer)
    event_free(r->timer);
  free(r->party_id);
  free(r);
}

/* Completes an unlinked request with status and no answer from the switch, then frees it. */
static void req_fail(adp_client *c, req *r, int status) {
  switch (r->kind) {
  case K_PREPARE:
  case K_FULFIL:
  case K_QUERY: {
    adp_transfer_result res;
    memset(&res, 0, sizeof res);
    memcpy(res.transfer_id, r->transfer_id, ADP_ID_LEN);
    res.error_message = "";
    if (r->cb.transfer)
      r->cb.transfer(c, status, &res, r->arg);
    break;
  }
  case K_REGISTER: {
    adp_register_result res = {0, 0, ""};
    if (r->cb.reg)
      r->cb.reg(c, status, &res, r->arg);
    break;
  }
  case K_LOOKUP: {
    adp_lookup_result res;
    res.party.type = r->party_type;
    res.party.id = r->party_id ? r->party_id : "";
    res.participant_id = "";
    res.error_code = 0;
    res.error_message = "";
    if (r->cb.lookup)
      r->cb.lookup(c, status, &res, r->arg);
    break;
  }
  case K_PING: {
    adp_ping_result res = {r->nonce, 0};
    if (r->cb.ping)
      r->cb.ping(c, status, &res, r->arg);
    break;
  }
  default:
    break;
  }
  req_free(r);
}

/* Completes every pending request with status, oldest first. Each is unlinked before its
 * callback runs, so a callback that frees the client (which fails the rest with ADP_E_CLOSED)
 * or submits new requests never sees one twice. */
static void fail_all(adp_client *c, int status) {
  while (c->head) {
    req *r = c->head;
    req_unlink(c, r);
    req_fail(c, r, status);
  }
}

static void request_timeout_cb(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  req *r = arg;
  adp_client *c = r->client;
  enter(c);
  req_unlink(c, r);
  c->stats.timeouts++;
  req_fail(c, r, ADP_E_TIMEOUT);
  leave(c);
}

/* ---------------------------------------------------------------- sending */

/* Checks the state and the limits for a request of kind. */
static int can_submit(const adp_client *c, int kind) {
  if (c->freeing)
    return ADP_E_CLOSED;
  if (c->state != CS_READY && kind != K_HELLO)
    return ADP_E_NOT_CONNECTED;
  if (kind == K_FULFIL && c->n_fulfils >= c->max_fulfils)
    return ADP_E_AGAIN;
  if (kind != K_FULFIL && kind != K_HELLO && c->n_requests >= c->max_outstanding)
    return ADP_E_AGAIN;
  return 0;
}

/* Encodes env as one frame at the end of the connection's output buffer. */
static int send_frame(adp_client *c, const Tuma__V1__Envelope *env) {
  size_t size = proto_envelope_frame_size(env);
  if (size == 0)
    return ADP_E_INVAL;
  if (size - PROTO_FRAME_HEADER_BYTES > c->max_frame)
    return ADP_E_TOO_LARGE;
  struct evbuffer *out = bufferevent_get_output(c->bev);
  struct evbuffer_iovec vec;
  if (evbuffer_reserve_space(out, (ev_ssize_t)size, &vec, 1) != 1 || vec.iov_len < size)
    return ADP_E_NOMEM;
  size_t len = 0;
  int st = proto_envelope_encode(env, vec.iov_base, size, &len);
  if (st != PROTO_FRAME_OK) /* nothing committed: the reserved space is simply not used */
    return st == PROTO_FRAME_TOO_LARGE ? ADP_E_TOO_LARGE : ADP_E_INVAL;
  vec.iov_len = len;
  if (evbuffer_commit_space(out, &vec, 1) != 0)
    return ADP_E_NOMEM;
  c->stats.sent++;
  return 0;
}

/* Sends env (its correlation id is set here) as a request of r's kind and, on success, keeps r
 * pending with a timer of timeout_ms (0: none). On failure r is freed and nothing is kept. */
static int submit(adp_client *c, req *r, Tuma__V1__Envelope *env, uint64_t timeout_ms) {
  r->client = c;
  r->corr = ++c->next_corr;
  if (r->corr == 0) /* after 2^64 requests: never 0, the switch's connection-level id */
    r->corr = ++c->next_corr;
  env->correlation_id = r->corr;
  int rc = 0;
  if (timeout_ms) {
    r->timer = evtimer_new(c->base, request_timeout_cb, r);
    if (!r->timer)
      rc = ADP_E_NOMEM;
  }
  if (!rc)
    rc = send_frame(c, env);
  if (!rc && r->timer) {
    struct timeval tv = ms_tv(timeout_ms);
    if (evtimer_add(r->timer, &tv) != 0) {
      /* The frame is out already: keep the request, just without a timer. */
      event_free(r->timer);
      r->timer = NULL;
    }
  }
  if (rc) {
    req_free(r);
    return rc;
  }
  req_link(c, r);
  return 0;
}

static req *req_new(int kind) {
  req *r = calloc(1, sizeof *r);
  if (r)
    r->kind = kind;
  return r;
}

static void set_party(Tuma__V1__Party *out, const adp_party *p) {
  tuma__v1__party__init(out);
  out->type = (Tuma__V1__PartyIdType)p->type;
  out->id = (char *)p->id;
}

int adp_client_prepare(adp_client *c, const adp_prepare *p, uint8_t transfer_id_out[ADP_ID_LEN],
                       adp_transfer_cb cb, void *arg) {
  if (!c || !p)
    return ADP_E_INVAL;
  int has_payee_participant = p->payee_participant && p->payee_participant[0];
  if ((!has_payee_participant && p->payee.type == ADP_PARTY_NONE) ||
      (p->payee.type != ADP_PARTY_NONE && !party_valid(&p->payee)) ||
      (p->payer.type != ADP_PARTY_NONE && !party_valid(&p->payer)) || p->amount == 0 ||
      !proto_currency_valid(p->currency) || (p->transfer_id && !id_valid(p->transfer_id)))
    return ADP_E_INVAL;
  int rc = can_submit(c, K_PREPARE);
  if (rc)
    return rc;
  req *r = req_new(K_PREPARE);
  if (!r)
    return ADP_E_NOMEM;
  if (p->transfer_id) {
    memcpy(r->transfer_id, p->transfer_id, ADP_ID_LEN);
  } else if ((rc = new_transfer_id(c, r->transfer_id)) != 0) {
    req_free(r);
    return rc;
  }
  r->cb.transfer = cb;
  r->arg = arg;

  Tuma__V1__Envelope env = TUMA__V1__ENVELOPE__INIT;
  Tuma__V1__TransferPrepare m = TUMA__V1__TRANSFER_PREPARE__INIT;
  Tuma__V1__Money money = TUMA__V1__MONEY__INIT;
  Tuma__V1__Party payee, payer;
  m.transfer_id.data = r->transfer_id;
  m.transfer_id.len = ADP_ID_LEN;
  if (has_payee_participant)
    m.payee_participant = (char *)p->payee_participant;
  if (p->payee.type != ADP_PARTY_NONE) {
    set_party(&payee, &p->payee);
    m.payee = &payee;
  }
  if (p->payer.type != ADP_PARTY_NONE) {
    set_party(&payer, &p->payer);
    m.payer = &payer;
  }
  money.currency = (char *)p->currency;
  money.amount = p->amount;
  m.amount = &money;
  uint64_t now = now_ms();
  m.expiration_ms = p->expiration_ms ? p->expiration_ms : now + c->default_expiry_ms;
  if (p->condition) {
    m.condition.data = (uint8_t *)p->condition;
    m.condition.len = 32;
  }
  if (p->reference)
    m.reference = (char *)p->reference;
  env.body_case = TUMA__V1__ENVELOPE__BODY_TRANSFER_PREPARE;
  env.transfer_prepare = &m;
  /* The answer is the final outcome, due by the expiration at the latest. */
  uint64_t timeout = c->request_timeout_ms;
  if (m.expiration_ms > now)
    timeout += m.expiration_ms - now;
  uint8_t id[ADP_ID_LEN];
  memcpy(id, r->transfer_id, ADP_ID_LEN);
  rc = submit(c, r, &env, timeout);
  if (rc == 0 && transfer_id_out)
    memcpy(transfer_id_out, id, ADP_ID_LEN);
  return rc;
}

int adp_client_fulfil(adp_client *c, const uint8_t transfer_id[ADP_ID_LEN], adp_fulfil_state state,
                      const uint8_t *fulfilment, uint32_t reason_code, const char *reason_message,
                      adp_transfer_cb cb, void *arg) {
  if (!c || !id_valid(transfer_id))
    return ADP_E_INVAL;
  if (state == ADP_FULFIL_ABORT) {
    if (fulfilment || (reason_code != 0 && (reason_code < 5000 || reason_code > 5999)))
      return ADP_E_INVAL;
  } else if (state != ADP_FULFIL_COMMIT || reason_code != 0) {
    return ADP_E_INVAL;
  }
  int rc = can_submit(c, K_FULFIL);
  if (rc)
    return rc;
  req *r = req_new(K_FULFIL);
  if (!r)
    return ADP_E_NOMEM;
  memcpy(r->transfer_id, transfer_id, ADP_ID_LEN);
  r->cb.transfer = cb;
  r->arg = arg;
  Tuma__V1__Envelope env = TUMA__V1__ENVELOPE__INIT;
  Tuma__V1__TransferFulfil m = TUMA__V1__TRANSFER_FULFIL__INIT;
  Tuma__V1__Error why = TUMA__V1__ERROR__INIT;
  m.transfer_id.data = r->transfer_id;
  m.transfer_id.len = ADP_ID_LEN;
  if (state == ADP_FULFIL_COMMIT) {
    m.state = TUMA__V1__FULFIL_STATE__FULFIL_STATE_COMMITTED;
    if (fulfilment) {
      m.fulfilment.data = (uint8_t *)fulfilment;
      m.fulfilment.len = 32;
    }
  } else {
    m.state = TUMA__V1__FULFIL_STATE__FULFIL_STATE_ABORTED;
    why.code = reason_code ? reason_code : 5105;
    why.message = (char *)(reason_message ? reason_message : "");
    m.reason = &why;
  }
  env.body_case = TUMA__V1__ENVELOPE__BODY_TRANSFER_FULFIL;
  env.transfer_fulfil = &m;
  return submit(c, r, &env, c->request_timeout_ms);
}

int adp_client_register_parties(adp_client *c, const adp_party *parties, size_t n,
                                adp_register_cb cb, void *arg) {
  if (!c || !parties || n == 0 || n > MAX_PARTIES)
    return ADP_E_INVAL;
  for (size_t i = 0; i < n; i++)
    if (!party_valid(&parties[i]))
      return ADP_E_INVAL;
  int rc = can_submit(c, K_REGISTER);
  if (rc)
    return rc;
  req *r = req_new(K_REGISTER);
  Tuma__V1__Party *wire = calloc(n, sizeof *wire);
  Tuma__V1__Party **ptrs = calloc(n, sizeof *ptrs);
  if (!r || !wire || !ptrs) {
    req_free(r);
    free(wire);
    free(ptrs);
    return ADP_E_NOMEM;
  }
  for (size_t i = 0; i < n; i++) {
    set_party(&wire[i], &parties[i]);
    ptrs[i] = &wire[i];
  }
  r->cb.reg = cb;
  r->arg = arg;
  Tuma__V1__Envelope env = TUMA__V1__ENVELOPE__INIT;
  Tuma__V1__PartyRegister m = TUMA__V1__PARTY_REGISTER__INIT;
  m.n_parties = n;
  m.parties = ptrs;
  env.body_case = TUMA__V1__ENVELOPE__BODY_PARTY_REGISTER;
  env.party_register = &m;
  rc = submit(c, r, &env, c->request_timeout_ms);
  free(wire);
  free(ptrs);
  return rc;
}

int adp_client_lookup_party(adp_client *c, const adp_party *party, adp_lookup_cb cb, void *arg) {
  if (!c || !party_valid(party))
    return ADP_E_INVAL;
  int rc = can_submit(c, K_LOOKUP);
  if (rc)
    return rc;
  req *r = req_new(K_LOOKUP);
  if (!r || !(r->party_id = strdup(party->id))) {
    req_free(r);
    return ADP_E_NOMEM;
  }
  r->party_type = party->type;
  r->cb.lookup = cb;
  r->arg = arg;
  Tuma__V1__Envelope env = TUMA__V1__ENVELOPE__INIT;
  Tuma__V1__PartyLookup m = TUMA__V1__PARTY_LOOKUP__INIT;
  Tuma__V1__Party wire;
  set_party(&wire, party);
  m.party = &wire;
  env.body_case = TUMA__V1__ENVELOPE__BODY_PARTY_LOOKUP;
  env.party_lookup = &m;
  return submit(c, r, &env, c->request_timeout_ms);
}

int adp_client_query(adp_client *c, const uint8_t transfer_id[ADP_ID_LEN], adp_transfer_cb cb,
                     void *arg) {
  if (!c || !id_valid(transfer_id))
    return ADP_E_INVAL;
  int rc = can_submit(c, K_QUERY);
  if (rc)
    return rc;
  req *r = req_new(K_QUERY);
  if (!r)
    return ADP_E_NOMEM;
  memcpy(r->transfer_id, transfer_id, ADP_ID_LEN);
  r->cb.transfer = cb;
  r->arg = arg;
  Tuma__V1__Envelope env = TUMA__V1__ENVELOPE__INIT;
  Tuma__V1__TransferQuery m = TUMA__V1__TRANSFER_QUERY__INIT;
  m.transfer_id.data = r->transfer_id;
  m.transfer_id.len = ADP_ID_LEN;
  env.body_case = TUMA__V1__ENVELOPE__BODY_TRANSFER_QUERY;
  env.transfer_query = &m;
  return submit(c, r, &env, c->request_timeout_ms);
}

int adp_client_ping(adp_client *c, adp_ping_cb cb, void *arg) {
  if (!c)
    return ADP_E_INVAL;
  int rc = can_submit(c, K_PING);
  if (rc)
    return rc;
  req *r = req_new(K_PING);
  if (!r)
    return ADP_E_NOMEM;
  r->nonce = ++c->next_nonce;
  r->started_us = mono_us();
  r->cb.ping = cb;
  r->arg = arg;
  Tuma__V1__Envelope env = TUMA__V1__ENVELOPE__INIT;
  Tuma__V1__Ping m = TUMA__V1__PING__INIT;
  m.nonce = r->nonce;
  env.body_case = TUMA__V1__ENVELOPE__BODY_PING;
  env.ping = &m;
  return submit(c, r, &env, c->request_timeout_ms);
}

int adp_client_stats(const adp_client *c, adp_stats *out) {
  if (!c || !out)
    return ADP_E_INVAL;
  *out = c->stats;
  out->outstanding = (uint64_t)c->n_requests + c->n_fulfils;
  out->connected = c->state == CS_READY;
  return 0;
}

/* ---------------------------------------------------------------- the connection */

/* Drops whatever connection there is (any state) without telling anyone. */
static void conn_close(adp_client *c) {
  c->gen++;
  if (c->conn_timer)
    event_del(c->conn_timer);
  if (c->connect_ev) {
    event_free(c->connect_ev);
    c->connect_ev = NULL;
  }
  if (c->fd >= 0) {
    evutil_closesocket(c->fd);
    c->fd = -1;
  }
  if (c->bev) {
    bufferevent_free(c->bev); /* BEV_OPT_CLOSE_ON_FREE: the socket and the SSL go too */
    c->bev = NULL;
  }
  c->state = CS_IDLE;
  c->participant[0] = 0;
}

static void state_event(adp_client *c, adp_conn_state st, int error, uint32_t code,
                        const char *reason, uint32_t retry_in) {
  if (!c->on_state)
    return;
  adp_state_event ev;
  memset(&ev, 0, sizeof ev);
  ev.state = st;
  ev.error = error;
  ev.switch_code = code;
  ev.reason = reason ? reason : "";
  ev.retry_in_ms = retry_in;
  ev.participant_id = st == ADP_STATE_CONNECTED ? c->participant : "";
  ev.max_frame_bytes = st == ADP_STATE_CONNECTED ? c->max_frame : 0;
  c->on_state(c, &ev, c->arg);
}

/* The next delay: min · 2^attempt, capped at max, drawn from [d/2, d]. */
static uint32_t backoff_delay(adp_client *c) {
  uint64_t d = c->backoff_min;
  for (unsigned i = 0; i < c->attempt && d < c->backoff_max; i++)
    d *= 2;
  if (d > c->backoff_max)
    d = c->backoff_max;
  c->attempt++;
  uint64_t half = d / 2;
  return (uint32_t)(d - half + (half ? next_random(c) % (half + 1) : 0));
}

/* The connection (or the attempt) is over: close it, arm the retry, tell the application, and
 * fail what was outstanding with ADP_E_DISCONNECTED. Called from inside an entry. */
static void conn_lost(adp_client *c, int error, uint32_t code, const char *reason) {
  conn_close(c);
  if (c->freeing)
    return;
  c->stats.connected = 0;
  uint32_t delay = backoff_delay(c);
  struct timeval tv = ms_tv(delay);
  if (evtimer_add(c->retry_timer, &tv) != 0) { /* cannot happen with a valid timer; try soon */
    struct timeval soon = ms_tv(1000);
    evtimer_add(c->retry_timer, &soon);
  }
  char why[320];
  snprintf(why, sizeof why, "%s", reason ? reason : adp_strerror(error));
  state_event(c, ADP_STATE_DISCONNECTED, error, code, why, delay);
  if (!c->freeing)
    fail_all(c, ADP_E_DISCONNECTED);
}

/* The text of OpenSSL's last error (clearing its queue), or of errno, or dflt. */
static void tls_reason(char *out, size_t outlen, const char *what, unsigned long e,
                       const char *dflt) {
  char ossl[200] = "";
  if (e)
    ERR_error_string_n(e, ossl, sizeof ossl);
  snprintf(out, outlen, "%s: %s", what, ossl[0] ? ossl : dflt);
}

static void start_attempt(adp_client *c) {
  char reason[300];
  struct addrinfo hints, *ai = NULL;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_ADDRCONFIG;
  char port[8];
  snprintf(port, sizeof port, "%u", c->port);
  int g = getaddrinfo(c->host, port, &hints, &ai);
  if (g != 0 || !ai) {
    snprintf(reason, sizeof reason, "cannot resolve %s: %s", c->host, gai_strerror(g));
    if (ai)
      freeaddrinfo(ai);
    conn_lost(c, ADP_E_CONNECT, 0, reason);
    return;
  }
  int one = 1;
  evutil_socket_t fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0 || setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0 ||
      (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS)) {
    snprintf(reason, sizeof reason, "connect to %s:%u: %s", c->host, c->port, strerror(errno));
    if (fd >= 0)
      evutil_closesocket(fd);
    freeaddrinfo(ai);
    conn_lost(c, ADP_E_CONNECT, 0, reason);
    return;
  }
  freeaddrinfo(ai);
  c->fd = fd;
  c->state = CS_TCP;
  c->connect_ev = event_new(c->base, fd, EV_WRITE, connect_ready_cb, c);
  struct timeval tv = ms_tv(c->connect_timeout_ms);
  if (!c->connect_ev || event_add(c->connect_ev, NULL) != 0 ||
      evtimer_add(c->conn_timer, &tv) != 0) {
    conn_lost(c, ADP_E_NOMEM, 0, "cannot watch the connecting socket");
    return;
  }
}

static void retry_cb(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  adp_client *c = arg;
  enter(c);
  if (!c->freeing && c->state == CS_IDLE)
    start_attempt(c);
  leave(c);
}

static void conn_timeout_cb(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  adp_client *c = arg;
  enter(c);
  static const char *const stage[] = {"", "TCP connect", "TLS handshake", "Hello"};
  char reason[160];
  snprintf(reason, sizeof reason, "%s did not complete within %u ms",
           c->state < CS_READY ? stage[c->state] : "connect", c->connect_timeout_ms);
  if (c->state != CS_IDLE && c->state != CS_READY)
    conn_lost(c, ADP_E_TIMEOUT, 0, reason);
  leave(c);
}

/* Sends the library's Hello; its HelloAck makes the connection READY. */
static int send_hello(adp_client *c) {
  req *r = req_new(K_HELLO);
  if (!r)
    return ADP_E_NOMEM;
  Tuma__V1__Envelope env = TUMA__V1__ENVELOPE__INIT;
  Tuma__V1__Hello m = TUMA__V1__HELLO__INIT;
  m.client_name = c->client_name;
  m.send_only = c->on_forward == NULL; /* no handler: route forwards to other connections */
  env.body_case = TUMA__V1__ENVELOPE__BODY_HELLO;
  env.hello = &m;
  return submit(c, r, &env, 0); /* bounded by conn_timer */
}

/* The TCP connect finished (or failed): start TLS over it. */
static void connect_ready_cb(evutil_socket_t fd, short what, void *arg) {
  (void)what;
  adp_client *c = arg;
  enter(c);
  char reason[300];
  int err = 0;
  socklen_t len = sizeof err;
  if (c->state != CS_TCP || fd != c->fd) {
    leave(c);
    return;
  }
  event_free(c->connect_ev);
  c->connect_ev = NULL;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
    err = errno;
  if (err) {
    snprintf(reason, sizeof reason, "connect to %s:%u: %s", c->host, c->port, strerror(err));
    conn_lost(c, ADP_E_CONNECT, 0, reason);
    leave(c);
    return;
  }
  SSL *ssl = SSL_new(c->ctx);
  int ok = ssl != NULL;
  if (ok) {
    X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (c->server_is_ip)
      ok = X509_VERIFY_PARAM_set1_ip_asc(param, c->server_name) == 1;
    else
      ok = X509_VERIFY_PARAM_set1_host(param, c->server_name, 0) == 1 &&
           SSL_set_tlsext_host_name(ssl, c->server_name) == 1;
  }
  struct bufferevent *bev = NULL;
  if (ok)
    bev = bufferevent_openssl_socket_new(c->base, fd, ssl, BUFFEREVENT_SSL_CONNECTING,
                                         BEV_OPT_CLOSE_ON_FREE);
  if (!bev) {
    tls_reason(reason, sizeof reason, "TLS set-up", ERR_get_error(), "out of memory");
    ERR_clear_error();
    SSL_free(ssl);
    conn_lost(c, ADP_E_TLS, 0, reason); /* closes c->fd */
    leave(c);
    return;
  }
  c->fd = -1; /* the bufferevent owns it now */
  c->bev = bev;
  c->state = CS_TLS;
  /* The switch may vanish (kill -9) without close_notify: that is a drop, not an attack. */
  bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
  bufferevent_setcb(bev, read_cb, NULL, bev_event_cb, c);
  if (bufferevent_enable(bev, EV_READ | EV_WRITE) != 0)
    conn_lost(c, ADP_E_NOMEM, 0, "cannot enable the connection");
  leave(c);
}

static void bev_event_cb(struct bufferevent *bev, short what, void *arg) {
  adp_client *c = arg;
  enter(c);
  if (bev != c->bev) {
    leave(c);
    return;
  }
  char reason[300];
  if (what & BEV_EVENT_CONNECTED) {
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    int rc = 0;
    if (!ssl || SSL_version(ssl) != TLS1_3_VERSION) {
      conn_lost(c, ADP_E_TLS, 0, "the switch did not negotiate TLS 1.3");
    } else {
      c->state = CS_HELLO;
      if ((rc = send_hello(c)) != 0)
        conn_lost(c, rc, 0, "cannot send Hello");
    }
    leave(c);
    return;
  }
  if (what & (BEV_EVENT_ERROR | BEV_EVENT_EOF)) {
    unsigned long e = 0, last;
    while ((last = bufferevent_get_openssl_error(bev)) != 0)
      e = last;
    int sock_err = EVUTIL_SOCKET_ERROR();
    int error;
    if (e) {
      tls_reason(reason, sizeof reason, c->state == CS_TLS ? "TLS handshake" : "TLS connection", e,
                 "");
      error = c->state == CS_READY ? ADP_E_DISCONNECTED : ADP_E_TLS;
    } else if (what & BEV_EVENT_EOF) {
      snprintf(reason, sizeof reason, "the switch closed the connection%s",
               c->state == CS_READY ? "" : " before it was ready");
      error = ADP_E_DISCONNECTED;
    } else {
      snprintf(reason, sizeof reason, "connection error: %s",
               sock_err ? evutil_socket_error_to_string(sock_err) : "unknown");
      error = c->state == CS_TLS ? ADP_E_TLS : ADP_E_DISCONNECTED;
    }
    conn_lost(c, error, 0, reason);
  } else if (what & BEV_EVENT_TIMEOUT) {
    conn_lost(c, ADP_E_TIMEOUT, 0, "connection timed out");
  }
  leave(c);
}

/* ---------------------------------------------------------------- receiving */

static void party_from_wire(const Tuma__V1__Party *w, adp_party *out) {
  if (w && w->type >= TUMA__V1__PARTY_ID_TYPE__PARTY_ID_TYPE_MSISDN &&
      w->type <= TUMA__V1__PARTY_ID_TYPE__PARTY_ID_TYPE_BUSINESS_ID) {
    out->type = (adp_party_type)w->type;
    out->id = w->id ? w->id : "";
  } else {
    out->type = ADP_PARTY_NONE;
    out->id = "";
  }
}

static void result_from_wire(const Tuma__V1__TransferResult *m, adp_transfer_result *out) {
  memset(out, 0, sizeof *out);
  if (m->transfer_id.len == ADP_ID_LEN)
    memcpy(out->transfer_id, m->transfer_id.data, ADP_ID_LEN);
  switch (m->state) {
  case TUMA__V1__TRANSFER_STATE__TRANSFER_STATE_RESERVED:
    out->state = ADP_TRANSFER_RESERVED;
    break;
  case TUMA__V1__TRANSFER_STATE__TRANSFER_STATE_COMMITTED:
    out->state = ADP_TRANSFER_COMMITTED;
    break;
  case TUMA__V1__TRANSFER_STATE__TRANSFER_STATE_ABORTED:
    out->state = ADP_TRANSFER_ABORTED;
    break;
  case TUMA__V1__TRANSFER_STATE__TRANSFER_STATE_EXPIRED:
    out->state = ADP_TRANSFER_EXPIRED;
    break;
  default:
    out->state = ADP_TRANSFER_UNKNOWN;
    break;
  }
  out->error_code = m->error ? m->error->code : 0;
  out->error_message = m->error && m->error->message ? m->error->message : "";
  out->completed_at_ms = m->completed_at_ms;
  if (m->fulfilment.len == 32) {
    out->has_fulfilment = 1;
    memcpy(out->fulfilment, m->fulfilment.data, 32);
  }
}

/* Takes the pending request corr if it is of kind; NULL if there is none (or of another kind:
 * not an answer to it). */
static req *take(adp_client *c, uint64_t corr, int kind) {
  req *r = corr ? req_find(c, corr) : NULL;
  if (!r || r->kind != kind)
    return NULL;
  req_unlink(c, r);
  return r;
}

static void on_hello_ack(adp_client *c, const Tuma__V1__HelloAck *m) {
  c->max_frame = m->max_frame_bytes ? m->max_frame_bytes : DEFAULT_MAX_FRAME;
  snprintf(c->participant, sizeof c->participant, "%s", m->participant_id ? m->participant_id : "");
  c->state = CS_READY;
  event_del(c->conn_timer);
  if (c->ever_ready)
    c->stats.reconnects++;
  c->ever_ready = 1;
  c->attempt = 0;
  c->stats.connected = 1;
  state_event(c, ADP_STATE_CONNECTED, 0, 0, "connected", 0);
}

static void on_transfer_result(adp_client *c, uint64_t corr, const Tuma__V1__TransferResult *m) {
  adp_transfer_result res;
  result_from_wire(m, &res);
  req *r = corr ? req_find(c, corr) : NULL;
  int answers =
      r && (r->kind == K_PREPARE || r->kind == K_FULFIL || r->kind == K_QUERY) &&
      (memcmp(r->transfer_id, res.transfer_id, ADP_ID_LEN) == 0 || !id_valid(res.transfer_id));
  if (answers) {
    req_unlink(c, r);
    memcpy(res.transfer_id, r->transfer_id, ADP_ID_LEN);
    adp_transfer_cb cb = r->cb.transfer;
    void *arg = r->arg;
    req_free(r);
    if (cb)
      cb(c, 0, &res, arg);
    return;
  }
  c->stats.notifications++;
  if (c->on_notify)
    c->on_notify(c, &res, c->arg);
}

static void on_forward(adp_client *c, const Tuma__V1__TransferForward *m) {
  if (m->transfer_id.len != ADP_ID_LEN) {
    c->stats.unmatched++;
    return;
  }
  c->stats.forwards++;
  adp_forward fw;
  memset(&fw, 0, sizeof fw);
  memcpy(fw.transfer_id, m->transfer_id.data, ADP_ID_LEN);
  fw.payer_participant = m->payer_participant ? m->payer_participant : "";
  party_from_wire(m->payer, &fw.payer);
  party_from_wire(m->payee, &fw.payee);
  fw.currency = m->amount && m->amount->currency ? m->amount->currency : "";
  fw.amount = m->amount ? m->amount->amount : 0;
  fw.expiration_ms = m->expiration_ms;
  if (m->condition.len == 32) {
    fw.has_condition = 1;
    memcpy(fw.condition, m->condition.data, 32);
  }
  fw.reference = m->reference ? m->reference : "";
  if (c->on_forward) {
    c->on_forward(c, &fw, c->arg);
    return;
  }
  /* Nobody to decide (the Hello said send_only, but the switch may have routed this before it
   * read the Hello): refuse at once rather than leave the payer waiting for the expiry. If that
   * cannot be sent now, the transfer simply expires. */
  (void)adp_client_fulfil(c, fw.transfer_id, ADP_FULFIL_ABORT, NULL, 5105,
                          "no forward handler at the payee", NULL, NULL);
}

/* An Error from the switch: the refusal of one request, or (correlation 0) of the connection. */
static void on_error(adp_client *c, uint64_t corr, const Tuma__V1__Error *m) {
  uint32_t code = m->code;
  const char *text = m->message ? m->message : "";
  req *r = corr ? req_find(c, corr) : NULL;
  if (!r && corr) {
    c->stats.unmatched++;
    return;
  }
  if (!r || r->kind == K_HELLO) {
    char reason[300];
    snprintf(reason, sizeof reason, "refused by the switch: %u %s", code, text);
    conn_lost(c, ADP_E_REFUSED, code, reason);
    return;
  }
  req_unlink(c, r);
  switch (r->kind) {
  case K_PREPARE:
  case K_FULFIL:
  case K_QUERY: {
    adp_transfer_result res;
    memset(&res, 0, sizeof res);
    memcpy(res.transfer_id, r->transfer_id, ADP_ID_LEN);
    res.error_code = code;
    res.error_message = text;
    if (r->cb.transfer)
      r->cb.transfer(c, ADP_E_REFUSED, &res, r->arg);
    break;
  }
  case K_REGISTER: {
    adp_register_result res = {0, code, text};
    if (r->cb.reg)
      r->cb.reg(c, ADP_E_REFUSED, &res, r->arg);
    break;
  }
  case K_LOOKUP: {
    adp_lookup_result res;
    res.party.type = r->party_type;
    res.party.id = r->party_id ? r->party_id : "";
    res.participant_id = "";
    res.error_code = code;
    res.error_message = text;
    if (r->cb.lookup)
      r->cb.lookup(c, ADP_E_REFUSED, &res, r->arg);
    break;
  }
  case K_PING: {
    adp_ping_result res = {r->nonce, mono_us() - r->started_us};
    if (r->cb.ping)
      r->cb.ping(c, ADP_E_REFUSED, &res, r->arg);
    break;
  }
  default:
    break;
  }
  req_free(r);
}

static void dispatch(adp_client *c, const Tuma__V1__Envelope *env) {
  uint64_t corr = env->correlation_id;
  req *r;
  switch (env->body_case) {
  case TUMA__V1__ENVELOPE__BODY_HELLO_ACK:
    if ((r = take(c, corr, K_HELLO)) != NULL) {
      req_free(r);
      if (c->state == CS_HELLO)
        on_hello_ack(c, env->hello_ack);
    } else {
      c->stats.unmatched++;
    }
    break;
  case TUMA__V1__ENVELOPE__BODY_TRANSFER_RESULT:
    on_transfer_result(c, corr, env->transfer_result);
    break;
  case TUMA__V1__ENVELOPE__BODY_TRANSFER_FORWARD:
    on_forward(c, env->transfer_forward);
    break;
  case TUMA__V1__ENVELOPE__BODY_ERROR:
    on_error(c, corr, env->error);
    break;
  case TUMA__V1__ENVELOPE__BODY_PONG:
    if ((r = take(c, corr, K_PING)) != NULL) {
      adp_ping_result res = {env->pong->nonce, mono_us() - r->started_us};
      adp_ping_cb cb = r->cb.ping;
      void *arg = r->arg;
      req_free(r);
      if (cb)
        cb(c, 0, &res, arg);
    } else {
      c->stats.unmatched++;
    }
    break;
  case TUMA__V1__ENVELOPE__BODY_PARTY_REGISTERED:
    if ((r = take(c, corr, K_REGISTER)) != NULL) {
      adp_register_result res = {env->party_registered->registered, 0, ""};
      adp_register_cb cb = r->cb.reg;
      void *arg = r->arg;
      req_free(r);
      if (cb)
        cb(c, 0, &res, arg);
    } else {
      c->stats.unmatched++;
    }
    break;
  case TUMA__V1__ENVELOPE__BODY_PARTY_LOOKUP_RESULT:
    if ((r = take(c, corr, K_LOOKUP)) != NULL) {
      const Tuma__V1__PartyLookupResult *m = env->party_lookup_result;
      adp_lookup_result res;
      party_from_wire(m->party, &res.party);
      if (res.party.type == ADP_PARTY_NONE) {
        res.party.type = r->party_type;
        res.party.id = r->party_id;
      }
      res.participant_id = m->participant_id ? m->participant_id : "";
      res.error_code = m->error ? m->error->code : 0;
      res.error_message = m->error && m->error->message ? m->error->message : "";
      if (r->cb.lookup)
        r->cb.lookup(c, 0, &res, r->arg);
      req_free(r);
    } else {
      c->stats.unmatched++;
    }
    break;
  default: /* a body the switch should not send: ignore it */
    c->stats.unmatched++;
    break;
  }
}

static void read_cb(struct bufferevent *bev, void *arg) {
  adp_client *c = arg;
  enter(c);
  uint64_t gen = c->gen;
  struct evbuffer *in = bufferevent_get_input(bev);
  while (c->gen == gen && !c->freeing && c->bev == bev) {
    size_t avail = evbuffer_get_length(in);
    if (avail < PROTO_FRAME_HEADER_BYTES)
      break;
    uint8_t hdr[PROTO_FRAME_HEADER_BYTES];
    if (evbuffer_copyout(in, hdr, sizeof hdr) != (ev_ssize_t)sizeof hdr)
      break;
    size_t off = 0, body = 0, consumed = 0;
    int st = proto_frame_parse(hdr, sizeof hdr, MAX_FRAME_IN, &off, &body, &consumed);
    if (st == PROTO_FRAME_TOO_LARGE || st == PROTO_FRAME_EMPTY) {
      conn_lost(c, ADP_E_PROTOCOL, 0,
                st == PROTO_FRAME_EMPTY ? "the switch sent an empty frame"
                                        : "the switch announced a frame over 16 MiB");
      break;
    }
    size_t need = PROTO_FRAME_HEADER_BYTES + body;
    if (avail < need)
      break;
    const uint8_t *buf = evbuffer_pullup(in, (ev_ssize_t)need);
    if (!buf) {
      conn_lost(c, ADP_E_NOMEM, 0, "out of memory reading a frame");
      break;
    }
    Tuma__V1__Envelope *env = proto_envelope_decode(buf + PROTO_FRAME_HEADER_BYTES, body);
    evbuffer_drain(in, need);
    if (!env) {
      conn_lost(c, ADP_E_PROTOCOL, 0, "a frame from the switch does not decode");
      break;
    }
    c->stats.received++;
    dispatch(c, env);
    tuma__v1__envelope__free_unpacked(env, NULL);
  }
  leave(c);
}

/* ---------------------------------------------------------------- create and free */

static int is_ip_literal(const char *s) {
  unsigned char buf[sizeof(struct in6_addr)];
  return evutil_inet_pton(AF_INET, s, buf) == 1 || evutil_inet_pton(AF_INET6, s, buf) == 1;
}

static SSL_CTX *tls_context(const adp_client_options *o) {
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  if (!ctx)
    return NULL;
  if (SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1 ||
      SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) != 1 ||
      SSL_CTX_load_verify_locations(ctx, o->ca_file, NULL) != 1 ||
      SSL_CTX_use_certificate_chain_file(ctx, o->cert_file) != 1 ||
      SSL_CTX_use_PrivateKey_file(ctx, o->key_file, SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(ctx) != 1) {
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return NULL;
  }
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  return ctx;
}

static void destroy(adp_client *c) {
  if (c->conn_timer)
    event_free(c->conn_timer);
  if (c->retry_timer)
    event_free(c->retry_timer);
  SSL_CTX_free(c->ctx);
  free(c->buckets);
  free(c->host);
  free(c->server_name);
  free(c->client_name);
  free(c);
}

static size_t pow2_at_least(size_t n) {
  size_t p = 64;
  while (p < n && p < ((size_t)1 << 30))
    p *= 2;
  return p;
}

int adp_client_new(struct event_base *base, const adp_client_options *o, adp_client **client) {
  if (client)
    *client = NULL;
  if (!base || !o || !client || !o->host || !o->host[0] || o->port == 0 || !o->ca_file ||
      !o->cert_file || !o->key_file)
    return ADP_E_INVAL;
  uint32_t bmin = o->reconnect_min_ms ? o->reconnect_min_ms : DEFAULT_RECONNECT_MIN_MS;
  uint32_t bmax = o->reconnect_max_ms ? o->reconnect_max_ms : DEFAULT_RECONNECT_MAX_MS;
  if (!o->reconnect_max_ms && bmax < bmin)
    bmax = bmin;
  if (bmin > bmax)
    return ADP_E_INVAL;

  /* A switch that goes away must give a write error, not kill the process. */
  struct sigaction sa;
  if (sigaction(SIGPIPE, NULL, &sa) == 0 && !(sa.sa_flags & SA_SIGINFO) &&
      sa.sa_handler == SIG_DFL) {
    struct sigaction ign;
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    sigemptyset(&ign.sa_mask);
    (void)sigaction(SIGPIPE, &ign, NULL); /* best effort: failing leaves the default */
  }

  adp_client *c = calloc(1, sizeof *c);
  if (!c)
    return ADP_E_NOMEM;
  c->fd = -1;
  c->base = base;
  int failed = 0;
  c->host = dup_or_null(o->host, &failed);
  c->server_name =
      dup_or_null(o->server_name && o->server_name[0] ? o->server_name : o->host, &failed);
  c->client_name = dup_or_null(o->client_name ? o->client_name : "libtuma-client", &failed);
  c->port = o->port;
  c->max_outstanding = o->max_outstanding ? o->max_outstanding : DEFAULT_MAX_OUTSTANDING;
  c->max_fulfils = o->max_outstanding_fulfils ? o->max_outstanding_fulfils : c->max_outstanding;
  c->request_timeout_ms =
      o->request_timeout_ms ? o->request_timeout_ms : DEFAULT_REQUEST_TIMEOUT_MS;
  c->connect_timeout_ms =
      o->connect_timeout_ms ? o->connect_timeout_ms : DEFAULT_CONNECT_TIMEOUT_MS;
  c->backoff_min = bmin;
  c->backoff_max = bmax;
  c->default_expiry_ms = o->default_expiry_ms ? o->default_expiry_ms : DEFAULT_EXPIRY_MS;
  c->on_forward = o->on_forward;
  c->on_notify = o->on_notify;
  c->on_state = o->on_state;
  c->arg = o->arg;
  c->max_frame = DEFAULT_MAX_FRAME;
  c->nbuckets = pow2_at_least(((size_t)c->max_outstanding + c->max_fulfils) / 2 + 1);
  c->buckets = calloc(c->nbuckets, sizeof *c->buckets);
  c->conn_timer = evtimer_new(base, conn_timeout_cb, c);
  c->retry_timer = evtimer_new(base, retry_cb, c);
  if (failed || !c->buckets || !c->conn_timer || !c->retry_timer) {
    destroy(c);
    return ADP_E_NOMEM;
  }
  c->server_is_ip = is_ip_literal(c->server_name);
  if (RAND_bytes((unsigned char *)&c->rng, sizeof c->rng) != 1 || c->rng == 0)
    c->rng = mono_us() | 1;
  c->ctx = tls_context(o);
  if (!c->ctx) {
    destroy(c);
    return ADP_E_TLS;
  }
  struct timeval now = {0, 0};
  if (evtimer_add(c->retry_timer, &now) != 0) {
    destroy(c);
    return ADP_E_NOMEM;
  }
  *client = c;
  return 0;
}

void adp_client_free(adp_client *c) {
  if (!c || c->freeing)
    return;
  c->freeing = 1;
  enter(c);
  conn_close(c);
  event_del(c->retry_timer);
  c->stats.connected = 0;
  fail_all(c, ADP_E_CLOSED);
  leave(c);
}
