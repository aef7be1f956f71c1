/* payer.c — the simulated operator as payer (sim.h): at --rate transfers/s (or as fast as the
 * --window of payments in flight allows, with --max) it draws an amount, a funded wallet and a
 * payee MSISDN of the other operator (some that do not exist, some with an expiration so short
 * it may pass), takes the amount from the wallet — durably — and only then sends the prepare.
 * The outcome keeps the debit (COMMITTED) or refunds it (sim.c settles it).
 */
#include <assert.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

enum { PICK_TRIES = 64 };

/* A random active wallet holding at least amount, or -1. O(PICK_TRIES), then O(wallets). */
static int64_t pick_wallet(opsim_sim *s, uint64_t amount) {
  uint32_t n = s->meta.wallets;
  for (int i = 0; i < PICK_TRIES; i++) {
    uint32_t w = (uint32_t)(opsim_rand(s) % n);
    if (s->wallets[w].status == OPSIM_WALLET_ACTIVE && s->wallets[w].balance >= amount)
      return w;
  }
  uint32_t start = (uint32_t)(opsim_rand(s) % n);
  for (uint32_t k = 0; k < n; k++) {
    uint32_t w = (start + k) % n;
    if (s->wallets[w].status == OPSIM_WALLET_ACTIVE && s->wallets[w].balance >= amount)
      return w;
  }
  return -1;
}

/* Reserves one payment (sent once the reservation is durable). -1: no wallet can pay it. */
static int reserve_one(opsim_sim *s) {
  const opsim_options *o = s->opt;
  uint64_t span = o->amount_max - o->amount_min;
  uint64_t amount =
      o->amount_min + (span == UINT64_MAX ? opsim_rand(s) : opsim_rand(s) % (span + 1));
  int64_t w = pick_wallet(s, amount);
  if (w < 0) {
    s->st.no_funds++;
    return -1;
  }
  opsim_item *it = calloc(1, sizeof *it);
  if (!it) {
    opsim_fatal(s, "out of memory");
    return -1;
  }
  opsim_new_id(s, it->id);
  it->kind = OPSIM_DEBIT;
  it->wallet = (uint32_t)w;
  it->amount = amount;
  uint64_t cap = opsim_msisdn_capacity(o->payee_prefix, o->payee_digits), index;
  if (o->unknown_bp && opsim_rand(s) % 10000 < o->unknown_bp) {
    index = o->payee_wallets + opsim_rand(s) % (cap - o->payee_wallets);
    s->st.unknown_sent++;
  } else {
    index = opsim_rand(s) % o->payee_wallets;
  }
  int ok = opsim_msisdn_format(o->payee_prefix, o->payee_digits, index, it->payee) == 0;
  assert(ok); /* index < the capacity (options.c) */
  (void)ok;
  it->created_ms = opsim_now_ms();
  it->short_expiry = o->short_expiry_bp && opsim_rand(s) % 10000 < o->short_expiry_bp;
  it->expiration_ms = it->created_ms + (it->short_expiry ? o->short_expiry_ms : o->expiry_ms);
  if (it->short_expiry)
    s->st.short_sent++;
  it->has_condition = (uint8_t)o->with_condition;
  s->wallets[w].balance -= amount;
  s->pend_out[w] += amount;
  if (opsim_track_new(s, it))
    return -1;
  s->issued++;
  return 0;
}

void opsim_payer_tick(opsim_sim *s, int64_t now_us) {
  const opsim_options *o = s->opt;
  if (!o->payer || s->payer_stopped || s->fatal)
    return;
  if ((o->duration_ms && now_us - s->start_us >= (int64_t)o->duration_ms * 1000) ||
      (o->count && s->issued >= o->count)) {
    s->payer_stopped = 1;
    opsim_logf(&s->log, OPSIM_LOG_INFO, "sent %" PRIu64 " payments; waiting for their outcomes",
               s->issued);
    return;
  }
  if (!s->payer_started || !s->connected)
    return;
  uint64_t allowed;
  if (o->rate) {
    uint64_t due = (uint64_t)(now_us - s->payer_start_us) * o->rate / 1000000;
    uint64_t burst = o->rate / 20 + 1; /* at most 50 ms of backlog; the rest is dropped */
    if (due > s->paced + burst) {
      s->st.behind += due - burst - s->paced;
      s->paced = due - burst;
    }
    allowed = due - s->paced;
  } else {
    allowed = o->window;
  }
  size_t inflight = opsim_inflight_count(s->items, OPSIM_DEBIT);
  uint64_t room = inflight < o->window ? o->window - inflight : 0;
  if (allowed > room)
    allowed = room;
  if (o->count && allowed > o->count - s->issued)
    allowed = o->count - s->issued;
  for (uint64_t i = 0; i < allowed && !s->fatal; i++) {
    s->paced++;
    if (reserve_one(s))
      break; /* no funds: try again at the next tick */
  }
}

static void prepare_done_cb(adp_client *client, int status, const adp_transfer_result *r,
                            void *arg) {
  (void)client;
  opsim_sim *s = arg;
  if (status == ADP_E_CLOSED)
    return;
  opsim_item *it = opsim_inflight_find(s->items, r->transfer_id);
  if (!it || it->kind != OPSIM_DEBIT || it->phase == OPSIM_PHASE_DURABLE)
    return; /* settled meanwhile (a notification, a query) */
  int outcome = status == ADP_OK ? opsim_outcome_of(r->state) : 0;
  if (outcome) {
    opsim_settle(s, it, outcome, r->error_code);
    return;
  }
  if (it->phase != OPSIM_PHASE_SENT)
    return;
  /* ADP_E_DISCONNECTED or a timeout (or RESERVED): unknown until the switch is asked. */
  opsim_ask_later(s, it, status == ADP_OK ? 200 : 0);
}

void opsim_payer_send(opsim_sim *s, opsim_item *it) {
  char payer_msisdn[OPSIM_MSISDN_LEN];
  int ok = opsim_msisdn_format(s->meta.prefix, s->meta.digits, it->wallet, payer_msisdn) == 0;
  assert(ok); /* a wallet of ours */
  (void)ok;
  uint8_t cond[32];
  adp_prepare p;
  memset(&p, 0, sizeof p);
  p.transfer_id = it->id;
  p.payee.type = ADP_PARTY_MSISDN;
  p.payee.id = it->payee;
  p.payer.type = ADP_PARTY_MSISDN;
  p.payer.id = payer_msisdn;
  p.currency = s->meta.currency;
  p.amount = it->amount;
  p.expiration_ms = it->expiration_ms;
  if (it->has_condition) {
    opsim_condition(it->id, cond);
    p.condition = cond;
  }
  p.reference = "tuma-opsim";
  int rc = adp_client_prepare(s->client, &p, NULL, prepare_done_cb, s);
  it->phase = OPSIM_PHASE_SENT;
  if (rc == ADP_OK) {
    it->sent_us = opsim_mono_us();
    s->st.sent++;
    return;
  }
  if (rc == ADP_E_CLOSED)
    return;
  /* Refused by the client before anything was sent (no connection, the window full, …): the
   * switch never saw it, so the reservation goes back at once. */
  char idtext[ADP_ID_STR_LEN];
  opsim_logf(&s->log, OPSIM_LOG_DEBUG, "%s not sent: %s", adp_id_format(it->id, idtext),
             adp_strerror(rc));
  opsim_settle(s, it, OPSIM_OUTCOME_UNSENT, 0);
}
