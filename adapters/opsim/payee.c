/* payee.c — the simulated operator as payee (sim.h): forwarded transfers are checked against
 * the wallet they pay (unknown 3204, frozen 5300, over its limit 5200, the configured share
 * refused 5105), answered after --payee-latency-ms, and an accepted one becomes a pending
 * credit, durable before the COMMITTED fulfil leaves. The wallet is credited when the switch
 * confirms the commit (sim.c settles it), never on the fulfil alone.
 */
#include <assert.h>
#include <inttypes.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

static const char fulfilment_label[] = "tuma-opsim fulfilment v1";

void opsim_fulfilment(const uint8_t id[16], uint8_t out[32]) {
  uint8_t buf[sizeof fulfilment_label - 1 + 16];
  memcpy(buf, fulfilment_label, sizeof fulfilment_label - 1);
  memcpy(buf + sizeof fulfilment_label - 1, id, 16);
  SHA256(buf, sizeof buf, out);
}

void opsim_condition(const uint8_t id[16], uint8_t out[32]) {
  uint8_t f[32];
  opsim_fulfilment(id, f);
  SHA256(f, sizeof f, out);
}

static void abort_done_cb(adp_client *client, int status, const adp_transfer_result *r, void *arg) {
  (void)client;
  opsim_sim *s = arg;
  if (status != ADP_OK && status != ADP_E_CLOSED) {
    char idtext[ADP_ID_STR_LEN];
    opsim_logf(&s->log, OPSIM_LOG_DEBUG, "refusal of %s: %s", adp_id_format(r->transfer_id, idtext),
               adp_strerror(status));
  }
}

static void refuse(opsim_sim *s, const uint8_t id[16], uint32_t code, const char *why) {
  s->st.rejected++;
  opsim_codes_add(&s->st.rejected_codes, code);
  s->counters[OPSIM_C_IN_REJECTED]++;
  opsim_batch_touch_counters(&s->batch);
  opsim_flush_schedule(s);
  int rc = adp_client_fulfil(s->client, id, ADP_FULFIL_ABORT, NULL, code, why, abort_done_cb, s);
  if (rc == ADP_E_INVAL && (code < 5000 || code > 5999)) {
    /* The protocol lets a payee give any reason (the switch reports one outside 5000-5999 to
     * the payer as 5105), but libtuma-client accepts only 5xxx codes: send 5105 itself. */
    rc = adp_client_fulfil(s->client, id, ADP_FULFIL_ABORT, NULL, 5105, why, abort_done_cb, s);
  }
  if (rc != ADP_OK) /* not answered: the switch expires it */
    s->st.unanswered++;
}

/* The payee's decision on d, now. */
static void decide(opsim_sim *s, const opsim_deferred *d) {
  char idtext[ADP_ID_STR_LEN];
  if (opsim_now_ms() >= d->expiration_ms) { /* too late: the switch expires it anyway */
    s->st.late++;
    return;
  }
  if (opsim_inflight_find(s->items, d->id)) /* forwarded twice while deferred: accepted once */
    return;
  if (d->wallet < 0) {
    refuse(s, d->id, 3204, "party not found");
    return;
  }
  uint32_t w = (uint32_t)d->wallet;
  const opsim_wallet *wl = &s->wallets[w];
  char masked[OPSIM_MSISDN_LEN], msisdn[OPSIM_MSISDN_LEN];
  int ok = opsim_msisdn_format(s->meta.prefix, s->meta.digits, w, msisdn) == 0;
  assert(ok); /* w < wallets, which fit the prefix (checked at creation) */
  (void)ok;
  opsim_msisdn_mask(msisdn, masked, sizeof masked);
  if (!d->currency_ok) {
    refuse(s, d->id, 5100, "currency not held");
    return;
  }
  if (wl->status == OPSIM_WALLET_FROZEN) {
    opsim_logf(&s->log, OPSIM_LOG_DEBUG, "%s to %s: wallet frozen", adp_id_format(d->id, idtext),
               masked);
    refuse(s, d->id, 5300, "wallet frozen");
    return;
  }
  /* What the wallet would hold if every transfer in flight went its way. */
  uint64_t held = wl->balance, sum;
  if (__builtin_add_overflow(held, s->pend_in[w], &held) ||
      __builtin_add_overflow(held, s->pend_out[w], &held) ||
      __builtin_add_overflow(held, d->amount, &sum) || sum > wl->limit) {
    opsim_logf(&s->log, OPSIM_LOG_DEBUG, "%s to %s: over the wallet limit",
               adp_id_format(d->id, idtext), masked);
    refuse(s, d->id, 5200, "wallet limit");
    return;
  }
  if (d->has_condition) {
    uint8_t cond[32];
    opsim_condition(d->id, cond);
    if (memcmp(cond, d->condition, 32) != 0) {
      refuse(s, d->id, 5105, "condition not ours");
      return;
    }
  }
  if (s->opt->reject_bp && opsim_rand(s) % 10000 < s->opt->reject_bp) {
    refuse(s, d->id, 5105, "rejected");
    return;
  }
  opsim_item *it = calloc(1, sizeof *it);
  if (!it) {
    opsim_fatal(s, "out of memory");
    return;
  }
  memcpy(it->id, d->id, 16);
  it->kind = OPSIM_CREDIT;
  it->wallet = w;
  it->amount = d->amount;
  it->expiration_ms = d->expiration_ms;
  it->created_ms = opsim_now_ms();
  it->has_condition = d->has_condition;
  s->pend_in[w] += d->amount; /* within the limit: no overflow */
  if (opsim_track_new(s, it))
    return;
  s->st.accepted++;
  opsim_logf(&s->log, OPSIM_LOG_DEBUG, "%s to %s: %" PRIu64 " accepted",
             adp_id_format(d->id, idtext), masked, d->amount);
}

static void arm_latency(opsim_sim *s) {
  if (!s->dq_head)
    return;
  int64_t wait = s->dq_head->due_us - opsim_mono_us();
  if (wait < 0)
    wait = 0;
  struct timeval tv = {(time_t)(wait / 1000000), (suseconds_t)(wait % 1000000)};
  if (evtimer_add(s->latency_ev, &tv))
    opsim_fatal(s, "cannot arm a timer");
}

void opsim_payee_latency_cb(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  opsim_sim *s = arg;
  int64_t now = opsim_mono_us();
  while (s->dq_head && s->dq_head->due_us <= now && !s->fatal) {
    opsim_deferred *d = s->dq_head;
    s->dq_head = d->next;
    if (!s->dq_head)
      s->dq_tail = NULL;
    decide(s, d);
    free(d);
  }
  arm_latency(s);
}

void opsim_payee_answer_all(opsim_sim *s) {
  while (s->dq_head && !s->fatal) {
    opsim_deferred *d = s->dq_head;
    s->dq_head = d->next;
    decide(s, d);
    free(d);
  }
  s->dq_tail = NULL;
}

void opsim_payee_free_deferred(opsim_sim *s) {
  while (s->dq_head) {
    opsim_deferred *d = s->dq_head;
    s->dq_head = d->next;
    free(d);
  }
  s->dq_tail = NULL;
}

void opsim_payee_forward_cb(adp_client *client, const adp_forward *fw, void *arg) {
  (void)client;
  opsim_sim *s = arg;
  s->st.forwards++;
  if (s->fatal)
    return;
  opsim_item *known = opsim_inflight_find(s->items, fw->transfer_id);
  if (known) { /* the switch forwards once; after a reconnection, answer it again */
    if (known->kind == OPSIM_CREDIT && known->phase != OPSIM_PHASE_DURABLE &&
        known->phase != OPSIM_PHASE_QUERY)
      opsim_payee_send_fulfil(s, known);
    return;
  }
  if (s->stopping) {
    refuse(s, fw->transfer_id, 5100, "operator shutting down");
    return;
  }
  opsim_deferred d;
  memset(&d, 0, sizeof d);
  memcpy(d.id, fw->transfer_id, 16);
  d.amount = fw->amount;
  d.expiration_ms = fw->expiration_ms;
  d.currency_ok = strcmp(fw->currency, s->meta.currency) == 0;
  d.has_condition = (uint8_t)(fw->has_condition != 0);
  if (fw->has_condition)
    memcpy(d.condition, fw->condition, 32);
  uint64_t index;
  d.wallet =
      fw->payee.type == ADP_PARTY_MSISDN &&
              opsim_msisdn_index(s->meta.prefix, s->meta.digits, fw->payee.id, &index) == 0 &&
              index < s->meta.wallets
          ? (int64_t)index
          : -1;
  if (d.wallet < 0) {
    char masked[OPSIM_MSISDN_LEN + 8], idtext[ADP_ID_STR_LEN];
    opsim_msisdn_mask(fw->payee.id, masked, sizeof masked);
    opsim_logf(&s->log, OPSIM_LOG_DEBUG, "%s to %s: no such wallet",
               adp_id_format(fw->transfer_id, idtext), masked);
  }
  if (s->opt->payee_latency_ms == 0) {
    decide(s, &d);
    return;
  }
  opsim_deferred *q = malloc(sizeof *q);
  if (!q) {
    opsim_fatal(s, "out of memory");
    return;
  }
  *q = d;
  q->due_us = opsim_mono_us() + (int64_t)s->opt->payee_latency_ms * 1000;
  q->next = NULL;
  int was_empty = s->dq_head == NULL;
  if (s->dq_tail)
    s->dq_tail->next = q;
  else
    s->dq_head = q;
  s->dq_tail = q;
  if (was_empty) /* the latency is the same for all: the queue is in due order */
    arm_latency(s);
}

static void fulfil_done_cb(adp_client *client, int status, const adp_transfer_result *r,
                           void *arg) {
  (void)client;
  opsim_sim *s = arg;
  if (status == ADP_E_CLOSED)
    return;
  opsim_item *it = opsim_inflight_find(s->items, r->transfer_id);
  if (!it || it->kind != OPSIM_CREDIT || it->phase == OPSIM_PHASE_DURABLE)
    return; /* settled meanwhile */
  int outcome = status == ADP_OK ? opsim_outcome_of(r->state) : 0;
  if (outcome) { /* the confirmation: final, whatever else is under way for it */
    opsim_settle(s, it, outcome, r->error_code);
    return;
  }
  if (it->phase != OPSIM_PHASE_SENT)
    return; /* a query (or another fulfil) is already under way */
  if (status == ADP_OK && r->error_code == 2001) { /* the switch could not write it: again */
    opsim_payee_send_fulfil(s, it);
    return;
  }
  /* The confirmation was lost (a dropped connection, a timeout) or is not final (RESERVED:
   * being resolved): ask. */
  opsim_ask_later(s, it, status == ADP_OK ? 50 : 0);
}

void opsim_payee_send_fulfil(opsim_sim *s, opsim_item *it) {
  uint8_t f[32];
  if (it->has_condition)
    opsim_fulfilment(it->id, f);
  int rc = adp_client_fulfil(s->client, it->id, ADP_FULFIL_COMMIT, it->has_condition ? f : NULL, 0,
                             NULL, fulfil_done_cb, s);
  if (rc == ADP_OK) {
    it->phase = OPSIM_PHASE_SENT;
    return;
  }
  if (rc == ADP_E_CLOSED)
    return;
  /* Not sent (no connection, the fulfil window full): the query after the next connection
   * finds it RESERVED and sends it again, or finds it expired. */
  opsim_ask_later(s, it, 50);
}
