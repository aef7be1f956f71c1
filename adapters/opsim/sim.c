/* sim.c — the simulated operator's life cycle (sim.h): the data directory, the connection and
 * the registration of its wallets, the durable batches, settlement of transfers and recovery of
 * the ones a previous run left unsettled, and a graceful stop.
 *
 * Settlement. Every transfer this operator takes part in is a pending record from before it is
 * told to the switch until its outcome is known; the outcome, the wallet change and the
 * removal of the pending record are written in one transaction. Outcomes come from the answer
 * to the prepare or fulfil, from a notification, or from a TransferQuery: after a reconnection,
 * after a restart (every pending record is queried), and whenever an answer was lost.
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "sim.h"

#define TICK_US 2000       /* paying: the pace's resolution */
#define IDLE_TICK_US 20000 /* only a payee */
#define RESOLVE_EVERY_US 100000
#define MAX_QUERIES 256

/* ---------------------------------------------------------------- time, randomness, ids */

int64_t opsim_mono_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

uint64_t opsim_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t rotl(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

uint64_t opsim_rand(opsim_sim *s) {
  uint64_t *r = s->rng;
  uint64_t out = rotl(r[1] * 5, 7) * 9, t = r[1] << 17;
  r[2] ^= r[0];
  r[3] ^= r[1];
  r[1] ^= r[2];
  r[0] ^= r[3];
  r[2] ^= t;
  r[3] = rotl(r[3], 45);
  return out;
}

static void seed_rng(opsim_sim *s) {
  if (getrandom(s->rng, sizeof s->rng, 0) != (ssize_t)sizeof s->rng) {
    /* defensive: getrandom does not fail for 32 bytes once the pool is initialised */
    uint64_t x = (uint64_t)opsim_mono_us() ^ ((uint64_t)getpid() << 32) ^ opsim_now_ms();
    for (int i = 0; i < 4; i++) { /* splitmix64 */
      x += 0x9e3779b97f4a7c15ull;
      uint64_t z = x;
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
      s->rng[i] = z ^ (z >> 31);
    }
  }
  if (!(s->rng[0] | s->rng[1] | s->rng[2] | s->rng[3]))
    s->rng[0] = 1;
}

void opsim_new_id(opsim_sim *s, uint8_t id[16]) {
  uint64_t ms = opsim_now_ms(), a = opsim_rand(s), b = opsim_rand(s);
  for (int i = 0; i < 6; i++)
    id[i] = (uint8_t)(ms >> (40 - 8 * i));
  id[6] = (uint8_t)(0x70 | (a & 0x0f));
  id[7] = (uint8_t)(a >> 8);
  id[8] = (uint8_t)(0x80 | ((a >> 16) & 0x3f));
  for (int i = 9; i < 16; i++)
    id[i] = (uint8_t)(b >> (8 * (i - 9)));
}

void opsim_codes_add(opsim_codes *c, uint32_t code) {
  for (int i = 0; i < OPSIM_CODES; i++) {
    if (c->n[i] && c->code[i] == code) {
      c->n[i]++;
      return;
    }
    if (!c->n[i]) {
      c->code[i] = code;
      c->n[i] = 1;
      return;
    }
  }
  c->other++;
}

/* ---------------------------------------------------------------- batches */

void opsim_fatal(opsim_sim *s, const char *what) {
  opsim_logf(&s->log, OPSIM_LOG_ERROR, "%s: stopping at once", what);
  s->fatal = 1;
  event_base_loopbreak(s->base);
}

static void flush_cb(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  opsim_sim *s = arg;
  s->flush_armed = 0;
  if (s->fatal)
    return;
  /* Payments that settled in this iteration freed room: reserve their successors now, in the
   * same transaction, rather than in one of their own at the next tick. */
  opsim_payer_tick(s, opsim_mono_us());
  char err[512];
  int rc = opsim_store_commit(s->store, &s->batch, s->wallets, s->counters, err, sizeof err);
  if (rc) {
    opsim_fatal(s, err);
    return;
  }
  /* Durable now: tell the switch. */
  opsim_item *list = s->start_head;
  s->start_head = NULL;
  s->start_tail = &s->start_head;
  while (list) {
    opsim_item *it = list;
    list = it->snext;
    it->snext = NULL;
    if (s->fatal)
      continue; /* the loop is ending; the pending records settle at the next start */
    if (it->kind == OPSIM_DEBIT)
      opsim_payer_send(s, it);
    else
      opsim_payee_send_fulfil(s, it);
  }
}

void opsim_flush_schedule(opsim_sim *s) {
  if (s->flush_armed || s->fatal)
    return;
  s->flush_armed = 1;
  /* Group commit: the changes of the next millisecond travel in one transaction (one sync,
     and each touched page written once), at the cost of that millisecond of latency. */
  static const struct timeval window = {0, 1000};
  event_add(s->flush_ev, &window);
}

static opsim_pending pending_of(const opsim_item *it) {
  opsim_pending p;
  memset(&p, 0, sizeof p);
  memcpy(p.id, it->id, 16);
  p.kind = it->kind;
  p.wallet = it->wallet;
  p.flags = it->has_condition ? OPSIM_PENDING_CONDITION : 0;
  p.amount = it->amount;
  p.expiration_ms = it->expiration_ms;
  p.created_ms = it->created_ms;
  return p;
}

int opsim_track_new(opsim_sim *s, opsim_item *it) {
  opsim_pending p = pending_of(it);
  it->phase = OPSIM_PHASE_DURABLE;
  if (opsim_batch_put_pending(&s->batch, &p) || opsim_batch_touch_wallet(&s->batch, it->wallet) ||
      opsim_inflight_add(s->items, it)) {
    free(it);
    opsim_fatal(s, "out of memory");
    return -1;
  }
  it->snext = NULL;
  *s->start_tail = it;
  s->start_tail = &it->snext;
  opsim_flush_schedule(s);
  return 0;
}

void opsim_settle(opsim_sim *s, opsim_item *it, int outcome, uint32_t code) {
  uint32_t w = it->wallet;
  opsim_wallet *wl = &s->wallets[w];
  uint64_t *c = s->counters;
  if (it->kind == OPSIM_DEBIT) {
    s->pend_out[w] -= it->amount;
    switch (outcome) {
    case OPSIM_OUTCOME_COMMITTED:
      c[OPSIM_C_OUT_COMMITTED]++;
      c[OPSIM_C_OUT_COMMITTED_AMOUNT] += it->amount;
      s->st.committed++;
      if (it->sent_us) {
        int64_t ms = (opsim_mono_us() - it->sent_us) / 1000;
        s->st.latency[ms < 0                            ? 0
                      : ms >= OPSIM_LATENCY_BUCKETS - 1 ? OPSIM_LATENCY_BUCKETS - 1
                                                        : ms]++;
      }
      break;
    case OPSIM_OUTCOME_ABORTED:
      c[OPSIM_C_OUT_ABORTED]++, s->st.aborted++;
      break;
    case OPSIM_OUTCOME_EXPIRED:
      c[OPSIM_C_OUT_EXPIRED]++, s->st.expired++;
      break;
    case OPSIM_OUTCOME_UNSENT:
      c[OPSIM_C_OUT_UNSENT]++, s->st.unsent++;
      break;
    default:
      c[OPSIM_C_OUT_NOT_FOUND]++, s->st.not_found++;
      break;
    }
    if (outcome != OPSIM_OUTCOME_COMMITTED) {
      wl->balance += it->amount; /* no overflow: it was taken from this balance, and the
                                    limit check counts it as still there */
      if (outcome != OPSIM_OUTCOME_UNSENT)
        opsim_codes_add(&s->st.out_codes, code);
    }
  } else {
    s->pend_in[w] -= it->amount;
    switch (outcome) {
    case OPSIM_OUTCOME_COMMITTED:
      wl->balance += it->amount; /* within the limit: checked when it was accepted */
      c[OPSIM_C_IN_COMMITTED]++;
      c[OPSIM_C_IN_COMMITTED_AMOUNT] += it->amount;
      s->st.in_committed++;
      break;
    case OPSIM_OUTCOME_ABORTED:
      c[OPSIM_C_IN_ABORTED]++, s->st.in_aborted++;
      break;
    case OPSIM_OUTCOME_EXPIRED:
      c[OPSIM_C_IN_EXPIRED]++, s->st.in_expired++;
      break;
    default:
      c[OPSIM_C_IN_NOT_FOUND]++, s->st.in_not_found++;
      break;
    }
  }
  opsim_settled r;
  memset(&r, 0, sizeof r);
  memcpy(r.id, it->id, 16);
  r.kind = it->kind;
  r.wallet = w;
  r.outcome = (uint32_t)outcome;
  r.code = code;
  r.amount = it->amount;
  r.settled_ms = opsim_now_ms();
  char idtext[ADP_ID_STR_LEN];
  opsim_logf(&s->log, OPSIM_LOG_DEBUG, "%s %s of %" PRIu64 " settled: %s (%" PRIu32 ")",
             it->kind == OPSIM_DEBIT ? "debit" : "credit", adp_id_format(it->id, idtext),
             it->amount, opsim_outcome_name(outcome), code);
  opsim_inflight_remove(s->items, it);
  free(it);
  if (opsim_batch_del_pending(&s->batch, r.id) || opsim_batch_put_settled(&s->batch, &r) ||
      opsim_batch_touch_wallet(&s->batch, w)) {
    opsim_fatal(s, "out of memory");
    return;
  }
  opsim_batch_touch_counters(&s->batch);
  opsim_flush_schedule(s);
}

void opsim_ask_later(opsim_sim *s, opsim_item *it, uint32_t delay_ms) {
  it->phase = OPSIM_PHASE_UNKNOWN;
  it->next_query_ms = opsim_now_ms() + delay_ms;
  if (s->next_resolve_us > opsim_mono_us() + (int64_t)delay_ms * 1000)
    s->next_resolve_us = opsim_mono_us() + (int64_t)delay_ms * 1000;
}

/* ---------------------------------------------------------------- outcomes from the switch */

int opsim_outcome_of(int state) {
  switch (state) {
  case ADP_TRANSFER_COMMITTED:
    return OPSIM_OUTCOME_COMMITTED;
  case ADP_TRANSFER_ABORTED:
    return OPSIM_OUTCOME_ABORTED;
  case ADP_TRANSFER_EXPIRED:
    return OPSIM_OUTCOME_EXPIRED;
  default:
    return 0;
  }
}

static uint32_t backoff_ms(const opsim_item *it) {
  uint32_t q = it->queries < 5 ? it->queries : 5;
  return 100u << q; /* 100 ms … 3.2 s */
}

static void query_cb(adp_client *client, int status, const adp_transfer_result *r, void *arg) {
  (void)client;
  opsim_sim *s = arg;
  s->queries_out--;
  if (status == ADP_E_CLOSED)
    return;
  opsim_item *it = opsim_inflight_find(s->items, r->transfer_id);
  if (!it || it->phase == OPSIM_PHASE_DURABLE)
    return; /* settled meanwhile (a notification) */
  int outcome = status == ADP_OK ? opsim_outcome_of(r->state) : 0;
  if (outcome) {
    opsim_settle(s, it, outcome, r->error_code);
  } else if (it->phase != OPSIM_PHASE_QUERY) {
    return; /* something else is under way for it */
  } else if (status == ADP_OK && r->state == ADP_TRANSFER_RESERVED && it->kind == OPSIM_CREDIT) {
    opsim_payee_send_fulfil(s, it); /* our COMMITTED may never have arrived: say it again */
  } else if (status == ADP_E_REFUSED && r->error_code == 3208 &&
             opsim_now_ms() > it->expiration_ms + OPSIM_NOT_FOUND_GRACE_MS) {
    /* Past its expiration the switch would hold it if it had ever accepted it: it never
     * reached the switch (a prepare lost with a connection, or refused on arrival). */
    opsim_settle(s, it, OPSIM_OUTCOME_NOT_FOUND, 3208);
  } else {
    opsim_ask_later(s, it, backoff_ms(it));
  }
}

typedef struct resolve_ctx {
  opsim_sim *s;
  uint64_t now_ms;
  uint64_t next_ms;
} resolve_ctx;

static int resolve_one_cb(opsim_item *it, void *arg) {
  resolve_ctx *c = arg;
  opsim_sim *s = c->s;
  if (it->phase != OPSIM_PHASE_UNKNOWN)
    return 0;
  if (it->next_query_ms > c->now_ms) {
    if (it->next_query_ms < c->next_ms)
      c->next_ms = it->next_query_ms;
    return 0;
  }
  if (s->queries_out >= MAX_QUERIES)
    return 1;
  int rc = adp_client_query(s->client, it->id, query_cb, s);
  if (rc == ADP_E_AGAIN || rc == ADP_E_NOT_CONNECTED)
    return 1;
  if (rc != ADP_OK) { /* defensive: a valid id always encodes */
    it->next_query_ms = c->now_ms + 1000;
    return 0;
  }
  s->queries_out++;
  it->queries++;
  it->phase = OPSIM_PHASE_QUERY;
  return 0;
}

/* Queries the transfers whose state is unknown and due. */
static void resolve(opsim_sim *s, int64_t now_us) {
  if (!s->connected || now_us < s->next_resolve_us)
    return;
  resolve_ctx c = {s, opsim_now_ms(), UINT64_MAX};
  int full = opsim_inflight_each(s->items, resolve_one_cb, &c);
  int64_t next = now_us + RESOLVE_EVERY_US;
  if (!full && c.next_ms != UINT64_MAX && c.next_ms > c.now_ms &&
      (int64_t)(c.next_ms - c.now_ms) * 1000 < RESOLVE_EVERY_US)
    next = now_us + (int64_t)(c.next_ms - c.now_ms) * 1000;
  s->next_resolve_us = full ? now_us + 10000 : next;
}

static void notify_cb(adp_client *client, const adp_transfer_result *r, void *arg) {
  (void)client;
  opsim_sim *s = arg;
  opsim_item *it = opsim_inflight_find(s->items, r->transfer_id);
  int outcome = opsim_outcome_of(r->state);
  if (!it || it->phase == OPSIM_PHASE_DURABLE || !outcome) {
    char idtext[ADP_ID_STR_LEN];
    opsim_logf(&s->log, OPSIM_LOG_DEBUG, "notification for %s (%s): nothing pending",
               adp_id_format(r->transfer_id, idtext), adp_transfer_state_name(r->state));
    return;
  }
  opsim_settle(s, it, outcome, r->error_code);
}

/* ---------------------------------------------------------------- registration */

static void register_next(opsim_sim *s);

static void register_cb(adp_client *client, int status, const adp_register_result *r, void *arg) {
  (void)client;
  opsim_sim *s = arg;
  s->reg_busy = 0;
  if (status == ADP_E_CLOSED || status == ADP_E_DISCONNECTED)
    return; /* registered again on the next connection */
  if (status == ADP_E_REFUSED) {
    char msg[320];
    snprintf(msg, sizeof msg,
             "the switch refused our MSISDNs (%" PRIu32 " %s): another participant has "
             "registered them? (--msisdn-prefix)",
             r->error_code, r->error_message);
    opsim_fatal(s, msg);
    return;
  }
  if (status != ADP_OK) {
    opsim_logf(&s->log, OPSIM_LOG_WARN, "registering wallets: %s; retrying", adp_strerror(status));
    s->reg_retry = 1;
    return;
  }
  s->reg_next += r->registered;
  register_next(s);
}

static void register_next(opsim_sim *s) {
  if (s->reg_busy || !s->connected || s->fatal)
    return;
  s->reg_retry = 0;
  if (s->reg_next >= s->meta.wallets) {
    if (!s->registered)
      opsim_logf(&s->log, OPSIM_LOG_INFO, "registered %" PRIu32 " wallets (%s…): ready",
                 s->meta.wallets, s->meta.prefix);
    s->registered = 1;
    if (s->opt->payer && !s->payer_started && !s->stopping) {
      s->payer_started = 1;
      s->payer_start_us = opsim_mono_us();
    }
    return;
  }
  for (;;) {
    uint32_t n = s->meta.wallets - s->reg_next;
    if (n > s->reg_chunk)
      n = s->reg_chunk;
    for (uint32_t i = 0; i < n; i++) {
      int ok =
          opsim_msisdn_format(s->meta.prefix, s->meta.digits, s->reg_next + i, s->reg_ids[i]) == 0;
      assert(ok); /* the wallets fit the prefix (checked at creation) */
      (void)ok;
      s->reg_parties[i].type = ADP_PARTY_MSISDN;
      s->reg_parties[i].id = s->reg_ids[i];
    }
    int rc = adp_client_register_parties(s->client, s->reg_parties, n, register_cb, s);
    if (rc == ADP_OK) {
      s->reg_busy = 1;
      return;
    }
    if (rc == ADP_E_TOO_LARGE && s->reg_chunk > 1) {
      s->reg_chunk /= 2;
      continue;
    }
    if (rc != ADP_E_NOT_CONNECTED)
      s->reg_retry = 1; /* ADP_E_AGAIN: from the tick */
    return;
  }
}

static void state_cb(adp_client *client, const adp_state_event *ev, void *arg) {
  (void)client;
  opsim_sim *s = arg;
  if (ev->state == ADP_STATE_CONNECTED) {
    if (strcmp(ev->participant_id, s->meta.participant) != 0) {
      char msg[256];
      snprintf(msg, sizeof msg, "the switch took us for '%.63s', the data directory is '%.63s'",
               ev->participant_id, s->meta.participant);
      opsim_fatal(s, msg);
      return;
    }
    s->connected = 1;
    s->ever_connected = 1;
    s->max_frame = ev->max_frame_bytes;
    opsim_logf(&s->log, OPSIM_LOG_INFO, "connected to %s:%u as %s", s->opt->host, s->opt->port,
               ev->participant_id);
    /* A party is about digits + 8 bytes in a frame (room >= 64 and per <= 23: at least 2 a
     * frame); halved on ADP_E_TOO_LARGE anyway. */
    uint32_t per = s->meta.digits + 8, room = s->max_frame > 128 ? s->max_frame - 64 : 64;
    s->reg_chunk = room / per < OPSIM_REGISTER_MAX ? room / per : OPSIM_REGISTER_MAX;
    s->reg_next = 0;
    s->next_resolve_us = 0;
    register_next(s);
    return;
  }
  if (s->connected)
    opsim_logf(&s->log, OPSIM_LOG_WARN, "disconnected: %s (retry in %" PRIu32 " ms)", ev->reason,
               ev->retry_in_ms);
  else
    opsim_logf(&s->log, OPSIM_LOG_INFO, "cannot connect: %s (retry in %" PRIu32 " ms)", ev->reason,
               ev->retry_in_ms);
  s->connected = 0;
}

/* ---------------------------------------------------------------- stopping */

static void begin_stop(opsim_sim *s, const char *why) {
  if (s->stopping)
    return;
  s->stopping = 1;
  s->payer_stopped = 1;
  s->stop_us = opsim_mono_us();
  s->drain_deadline_us = s->stop_us + (int64_t)s->opt->drain_ms * 1000;
  opsim_payee_answer_all(s);
  opsim_logf(&s->log, OPSIM_LOG_INFO,
             "stopping (%s): waiting up to %" PRIu32 " ms for %zu transfers in flight", why,
             s->opt->drain_ms, opsim_inflight_count(s->items, 0));
}

static void signal_cb(evutil_socket_t sig, short what, void *arg) {
  (void)what;
  opsim_sim *s = arg;
  if (s->stopping) {
    opsim_logf(&s->log, OPSIM_LOG_WARN, "second signal: leaving now; %zu transfers stay pending",
               opsim_inflight_count(s->items, 0));
    event_base_loopbreak(s->base);
    return;
  }
  begin_stop(s, sig == SIGINT ? "SIGINT" : "SIGTERM");
}

static void tick_cb(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  opsim_sim *s = arg;
  int64_t now = opsim_mono_us();
  if (s->fatal)
    return;
  if (s->reg_retry && s->connected)
    register_next(s);
  opsim_payer_tick(s, now);
  resolve(s, now);
  if (s->opt->payer && s->payer_stopped && !s->stopping &&
      opsim_inflight_count(s->items, OPSIM_DEBIT) == 0) {
    if (!s->opt->linger) {
      begin_stop(s, "payments done");
    } else if (!s->payer_done_logged) {
      s->payer_done_logged = 1;
      opsim_logf(&s->log, OPSIM_LOG_INFO, "payments done; serving as payee until a signal");
    }
  }
  if (s->stopping) {
    int idle = opsim_inflight_count(s->items, 0) == 0 && !s->dq_head && !s->flush_armed &&
               !opsim_batch_pending(&s->batch);
    if (idle || now >= s->drain_deadline_us) {
      if (!idle)
        opsim_logf(&s->log, OPSIM_LOG_WARN,
                   "drain time over: %zu transfers stay pending (settled at the next start)",
                   opsim_inflight_count(s->items, 0));
      event_base_loopbreak(s->base);
    }
  }
}

/* ---------------------------------------------------------------- the data directory */

/* Writes the reason into err and returns status (an exit status). */
static int failed(char *err, size_t errlen, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int failed(char *err, size_t errlen, int status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return status;
}

/* Checks what the command line says about the wallets against the data directory: 0, or 2
 * (a usage error) with the reason in err. */
static int check_meta(const opsim_sim *s, char *err, size_t errlen) {
  const opsim_options *o = s->opt;
  const opsim_meta *m = &s->meta;
  if (strcmp(m->participant, o->as) != 0)
    return failed(err, errlen, 2, "%s belongs to participant '%s', not '%s'", o->data,
                  m->participant, o->as);
  if (o->wallets_set && o->wallets != m->wallets)
    return failed(err, errlen, 2, "--wallets %" PRIu32 ": %s holds %" PRIu32, o->wallets, o->data,
                  m->wallets);
  if (o->prefix_set && strcmp(o->prefix, m->prefix) != 0)
    return failed(err, errlen, 2, "--msisdn-prefix %s: %s uses %s", o->prefix, o->data, m->prefix);
  if (o->digits_set && o->digits != m->digits)
    return failed(err, errlen, 2, "--msisdn-digits %" PRIu32 ": %s uses %" PRIu32, o->digits,
                  o->data, m->digits);
  if (o->initial_balance_set && o->initial_balance != m->initial_balance)
    return failed(err, errlen, 2, "--initial-balance %" PRIu64 ": %s used %" PRIu64,
                  o->initial_balance, o->data, m->initial_balance);
  if (o->currency_set && strcmp(o->currency, m->currency) != 0)
    return failed(err, errlen, 2, "--currency %s: %s uses %s", o->currency, o->data, m->currency);
  if (o->payer && strcmp(o->payee_prefix, m->prefix) == 0 && o->payee_digits == m->digits)
    return failed(err, errlen, 2,
                  "--payee-prefix %s is this operator's own: pay another "
                  "operator's wallets",
                  o->payee_prefix);
  return 0;
}

/* The status a wallet gets from --frozen-every. */
static uint32_t status_of(const opsim_options *o, uint32_t index) {
  return o->frozen_every && index % o->frozen_every == o->frozen_every - 1 ? OPSIM_WALLET_FROZEN
                                                                           : OPSIM_WALLET_ACTIVE;
}

/* --frozen-every and --wallet-limit, when given, must describe the wallets there are. O(n). */
static int check_wallets(const opsim_sim *s, char *err, size_t errlen) {
  const opsim_options *o = s->opt;
  for (uint32_t i = 0; i < s->meta.wallets; i++) {
    if (o->frozen_every_set && s->wallets[i].status != status_of(o, i))
      return failed(err, errlen, 2,
                    "--frozen-every %" PRIu32 ": the wallets of %s were made "
                    "otherwise",
                    o->frozen_every, o->data);
    if (o->wallet_limit_set && s->wallets[i].limit != o->wallet_limit)
      return failed(err, errlen, 2,
                    "--wallet-limit %" PRIu64 ": the wallets of %s were made "
                    "with another limit",
                    o->wallet_limit, o->data);
  }
  return 0;
}

/* Makes the wallets of a new data directory from the options: 0, or an exit status with the
 * reason in err. */
static int create_wallets(opsim_sim *s, char *err, size_t errlen) {
  const opsim_options *o = s->opt;
  opsim_meta *m = &s->meta;
  memset(m, 0, sizeof *m);
  snprintf(m->participant, sizeof m->participant, "%s", o->as);
  if (strlen(o->prefix) >= sizeof m->prefix ||
      opsim_msisdn_capacity(o->prefix, o->digits) < o->wallets)
    return failed(err, errlen, 2, "--msisdn-prefix %s cannot hold %" PRIu32 " wallets", o->prefix,
                  o->wallets);
  snprintf(m->prefix, sizeof m->prefix, "%s", o->prefix);
  memcpy(m->currency, o->currency, 4);
  m->digits = o->digits;
  m->wallets = o->wallets;
  m->initial_balance = o->initial_balance;
  if (o->initial_balance && o->wallets > UINT64_MAX / o->initial_balance)
    return failed(err, errlen, 2, "--wallets × --initial-balance overflows");
  m->initial_total = o->initial_balance * o->wallets;
  m->created_ms = opsim_now_ms();
  opsim_wallet *w = calloc(m->wallets, sizeof *w);
  if (!w)
    return failed(err, errlen, 1, "out of memory");
  for (uint32_t i = 0; i < m->wallets; i++) {
    w[i].balance = o->initial_balance;
    w[i].limit = o->wallet_limit;
    w[i].status = status_of(o, i);
  }
  int rc = opsim_store_create(s->store, m, w);
  free(w);
  if (rc)
    return failed(err, errlen, 1, "creating the wallets: %s", opsim_store_strerror(rc));
  opsim_logf(&s->log, OPSIM_LOG_INFO,
             "created %" PRIu32 " wallets of %" PRIu64 " %s in %s (MSISDNs %s…, %" PRIu32
             " digits)",
             m->wallets, m->initial_balance, m->currency, o->data, m->prefix, m->digits);
  return 0;
}

static int load_pending_cb(const opsim_pending *p, void *arg) {
  opsim_sim *s = arg;
  if (p->wallet >= s->meta.wallets)
    return OPSIM_STORE_E_CORRUPT;
  opsim_item *it = calloc(1, sizeof *it);
  if (!it)
    return OPSIM_STORE_E_NOMEM;
  memcpy(it->id, p->id, 16);
  it->kind = (uint8_t)p->kind;
  it->wallet = p->wallet;
  it->amount = p->amount;
  it->expiration_ms = p->expiration_ms;
  it->created_ms = p->created_ms;
  it->has_condition = (p->flags & OPSIM_PENDING_CONDITION) != 0;
  it->phase = OPSIM_PHASE_UNKNOWN; /* ask the switch once connected */
  it->next_query_ms = 0;
  if (opsim_inflight_add(s->items, it)) {
    free(it);
    return OPSIM_STORE_E_NOMEM;
  }
  if (p->kind == OPSIM_CREDIT) {
    s->pend_in[p->wallet] += p->amount;
    s->st.recovered_credits++;
  } else {
    s->pend_out[p->wallet] += p->amount;
    s->st.recovered_debits++;
  }
  return 0;
}

/* Opens the store and brings wallets and pending transfers into memory. Returns 0, or an exit
 * status with the reason logged. */
static int open_data(opsim_sim *s) {
  char err[512] = "";
  int rc = opsim_store_open(s->opt->data, 0, &s->store, err, sizeof err);
  if (rc) {
    opsim_logf(&s->log, OPSIM_LOG_ERROR, "%s", err);
    return 1;
  }
  rc = opsim_store_get_meta(s->store, &s->meta, s->counters);
  if (rc == OPSIM_STORE_E_EMPTY) {
    int st = create_wallets(s, err, sizeof err);
    if (st) {
      opsim_logf(&s->log, OPSIM_LOG_ERROR, "%s", err);
      return st;
    }
    rc = opsim_store_get_meta(s->store, &s->meta, s->counters);
  }
  if (rc) {
    opsim_logf(&s->log, OPSIM_LOG_ERROR, "%s: %s", s->opt->data, opsim_store_strerror(rc));
    return 1;
  }
  if (check_meta(s, err, sizeof err)) {
    opsim_logf(&s->log, OPSIM_LOG_ERROR, "%s", err);
    return 2;
  }
  uint32_t n = s->meta.wallets;
  s->wallets = calloc(n, sizeof *s->wallets);
  s->pend_in = calloc(n, sizeof *s->pend_in);
  s->pend_out = calloc(n, sizeof *s->pend_out);
  if (!s->wallets || !s->pend_in || !s->pend_out || opsim_batch_init(&s->batch, n) ||
      opsim_inflight_new(&s->items)) {
    opsim_logf(&s->log, OPSIM_LOG_ERROR, "out of memory");
    return 1;
  }
  if ((rc = opsim_store_load_wallets(s->store, s->wallets, n)) != 0 ||
      (rc = opsim_store_each_pending(s->store, load_pending_cb, s)) != 0) {
    opsim_logf(&s->log, OPSIM_LOG_ERROR, "%s: reading the wallets: %s", s->opt->data,
               opsim_store_strerror(rc));
    return 1;
  }
  if (check_wallets(s, err, sizeof err)) {
    opsim_logf(&s->log, OPSIM_LOG_ERROR, "%s", err);
    return 2;
  }
  if (s->st.recovered_credits || s->st.recovered_debits)
    opsim_logf(&s->log, OPSIM_LOG_INFO,
               "%" PRIu64 " credits and %" PRIu64
               " debits were left unsettled: asking the switch about them",
               s->st.recovered_credits, s->st.recovered_debits);
  return 0;
}

/* ---------------------------------------------------------------- run */

static int setup_loop(opsim_sim *s) {
  s->base = event_base_new();
  if (!s->base)
    return -1;
  s->flush_ev = event_new(s->base, -1, 0, flush_cb, s);
  s->tick_ev = event_new(s->base, -1, EV_PERSIST, tick_cb, s);
  s->latency_ev = evtimer_new(s->base, opsim_payee_latency_cb, s);
  s->sig_int = evsignal_new(s->base, SIGINT, signal_cb, s);
  s->sig_term = evsignal_new(s->base, SIGTERM, signal_cb, s);
  struct timeval tick = {0, s->opt->payer ? TICK_US : IDLE_TICK_US};
  if (!s->flush_ev || !s->tick_ev || !s->latency_ev || !s->sig_int || !s->sig_term ||
      event_add(s->tick_ev, &tick) || event_add(s->sig_int, NULL) || event_add(s->sig_term, NULL))
    return -1;
  return 0;
}

static int setup_client(opsim_sim *s) {
  const opsim_options *o = s->opt;
  adp_client_options co;
  memset(&co, 0, sizeof co);
  co.host = o->host;
  co.port = o->port;
  co.ca_file = o->ca;
  co.cert_file = o->cert;
  co.key_file = o->key;
  co.server_name = o->server_name;
  co.client_name = "tuma-opsim";
  co.on_forward = opsim_payee_forward_cb;
  co.on_notify = notify_cb;
  co.on_state = state_cb;
  co.arg = s;
  co.max_outstanding = (o->payer ? o->window : 0) + MAX_QUERIES + 64;
  co.max_outstanding_fulfils = 8192;
  co.reconnect_min_ms = 100;
  co.reconnect_max_ms = 2000;
  int rc = adp_client_new(s->base, &co, &s->client);
  if (rc) {
    opsim_logf(&s->log, OPSIM_LOG_ERROR, "cannot set up the connection: %s (%s, %s, %s)",
               adp_strerror(rc), o->ca, o->cert, o->key);
    return -1;
  }
  return 0;
}

static void teardown(opsim_sim *s) {
  adp_client_free(s->client); /* what is outstanding completes with ADP_E_CLOSED: ignored */
  s->client = NULL;
  if (!s->fatal && opsim_batch_pending(&s->batch)) {
    char err[512];
    if (opsim_store_commit(s->store, &s->batch, s->wallets, s->counters, err, sizeof err)) {
      opsim_logf(&s->log, OPSIM_LOG_ERROR, "last write: %s", err);
      s->fatal = 1;
    }
  }
}

static void free_sim(opsim_sim *s) {
  opsim_payee_free_deferred(s);
  if (s->flush_ev)
    event_free(s->flush_ev);
  if (s->tick_ev)
    event_free(s->tick_ev);
  if (s->latency_ev)
    event_free(s->latency_ev);
  if (s->sig_int)
    event_free(s->sig_int);
  if (s->sig_term)
    event_free(s->sig_term);
  if (s->base)
    event_base_free(s->base);
  opsim_inflight_free(s->items);
  opsim_batch_free(&s->batch);
  free(s->wallets);
  free(s->pend_in);
  free(s->pend_out);
  opsim_store_close(s->store);
  free(s);
}

int opsim_sim_run(const opsim_options *o) {
  opsim_sim *s = calloc(1, sizeof *s);
  if (!s) {
    fprintf(stderr, "tuma-opsim: out of memory\n");
    return 1;
  }
  s->opt = o;
  s->log.level = o->log_level;
  s->log.who = o->as;
  s->start_tail = &s->start_head;
  s->start_us = opsim_mono_us();
  seed_rng(s);
  int status = open_data(s);
  if (status == 0 && setup_loop(s)) {
    opsim_logf(&s->log, OPSIM_LOG_ERROR, "cannot set up the event loop");
    status = 1;
  }
  if (status == 0 && setup_client(s))
    status = 1;
  if (status) {
    adp_client_free(s->client);
    free_sim(s);
    return status;
  }
  if (event_base_dispatch(s->base) < 0)
    opsim_fatal(s, "event loop failed");
  if (!s->stop_us)
    s->stop_us = opsim_mono_us();
  teardown(s);
  if (o->payer && !s->ever_connected && !s->fatal) {
    opsim_logf(&s->log, OPSIM_LOG_ERROR, "never connected to the switch: nothing was paid");
    s->fatal = 1;
  }
  status = s->fatal ? 1 : 0;
  opsim_report_run(s, stdout);
  free_sim(s);
  return status;
}
