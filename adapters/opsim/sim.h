/* sim.h — the running simulated operator: the context shared by its parts (sim.c: life cycle,
 * durable batches, settlement and recovery; payee.c: forwarded transfers; payer.c: the payments
 * it sends; report.c: what it prints). Internal to tuma-opsim.
 *
 * Everything runs on one libevent loop; nothing here locks. The rule that keeps the wallets
 * right: a change is applied to the in-memory wallets at once and queued in the batch; anything
 * that tells the switch about it (a prepare after a debit, a COMMITTED fulfil after a pending
 * credit) waits in the start list until the batch that holds the change has committed.
 */
#ifndef TUMA_ADAPTERS_OPSIM_SIM_H
#define TUMA_ADAPTERS_OPSIM_SIM_H

#include <event2/event.h>
#include <stdint.h>
#include <stdio.h>

#include "inflight.h"
#include "log.h"
#include "msisdn.h"
#include "options.h"
#include "store.h"
#include "tuma_client.h"

enum {
  OPSIM_REGISTER_MAX = 1000,       /* parties per PartyRegister (proto/README.md §5) */
  OPSIM_CODES = 16,                /* distinct error codes tallied in the run report */
  OPSIM_LATENCY_BUCKETS = 10001,   /* 1 ms buckets up to 10 s, then one overflow bucket */
  OPSIM_NOT_FOUND_GRACE_MS = 3000, /* 3208 counts as "never there" this long after expiry */
};

/* A forward waiting for the payee's answer (--payee-latency-ms). */
typedef struct opsim_deferred {
  uint8_t id[16];
  int64_t due_us; /* monotonic */
  int64_t wallet; /* index, or -1: no such wallet here */
  uint64_t amount, expiration_ms;
  uint8_t currency_ok, has_condition;
  uint8_t condition[32];
  struct opsim_deferred *next;
} opsim_deferred;

/* A tally of error codes. */
typedef struct opsim_codes {
  uint32_t code[OPSIM_CODES];
  uint64_t n[OPSIM_CODES];
  uint64_t other;
} opsim_codes;

/* What this run did (not durable; the store's counters are). */
typedef struct opsim_runstats {
  uint64_t sent, committed, aborted, expired, unsent, not_found, no_funds, unknown_sent, short_sent,
      behind;
  opsim_codes out_codes;
  uint64_t latency[OPSIM_LATENCY_BUCKETS];
  uint64_t forwards, accepted, in_committed, in_aborted, in_expired, in_not_found, rejected, late,
      unanswered;
  opsim_codes rejected_codes;
  uint64_t recovered_credits, recovered_debits;
} opsim_runstats;

typedef struct opsim_sim {
  const opsim_options *opt;
  opsim_log log;
  struct event_base *base;
  opsim_store *store;
  opsim_meta meta;
  opsim_wallet *wallets; /* meta.wallets */
  uint64_t *pend_in;     /* per wallet: Σ pending credits */
  uint64_t *pend_out;    /* per wallet: Σ pending debits (already taken from the balance) */
  uint64_t counters[OPSIM_COUNTERS];
  opsim_batch batch;
  struct event *flush_ev;
  int flush_armed;
  opsim_item *start_head, **start_tail; /* to start once the batch has committed */
  opsim_inflight *items;
  adp_client *client;
  int connected;
  uint32_t max_frame;
  /* registration of our MSISDNs */
  uint32_t reg_next, reg_chunk;
  int reg_busy, reg_retry, registered;
  adp_party reg_parties[OPSIM_REGISTER_MAX];
  char reg_ids[OPSIM_REGISTER_MAX][OPSIM_MSISDN_LEN];
  /* payee */
  opsim_deferred *dq_head, *dq_tail;
  struct event *latency_ev;
  /* payer */
  int payer_started, payer_stopped, payer_done_logged;
  int64_t payer_start_us;
  uint64_t issued, paced;
  uint32_t queries_out;
  int64_t next_resolve_us;
  /* life cycle */
  struct event *tick_ev, *sig_int, *sig_term;
  int64_t start_us, stop_us, drain_deadline_us;
  int stopping, fatal;
  int ever_connected; /* a payer that never reached the switch failed */
  uint64_t rng[4];
  opsim_runstats st;
} opsim_sim;

/* ---- sim.c */

/* Runs the operator described by o until it is done or stopped; returns the exit status
 * (0 done, 1 failed, 2 a usage error found only once the data directory was read). */
int opsim_sim_run(const opsim_options *o);

/* Monotonic microseconds, and Unix milliseconds. */
int64_t opsim_mono_us(void);
uint64_t opsim_now_ms(void);

/* A pseudo-random 64-bit number (xoshiro256**, seeded from getrandom). */
uint64_t opsim_rand(opsim_sim *s);

/* A fresh time-ordered transfer id (UUIDv7 layout). */
void opsim_new_id(opsim_sim *s, uint8_t id[16]);

/* Ends the run at once with status 1 after an error that leaves the state unsafe to go on
 * with (the store failed, memory ran out); what is logged. */
void opsim_fatal(opsim_sim *s, const char *what);

/* Makes sure the batch is committed at the end of this loop iteration. */
void opsim_flush_schedule(opsim_sim *s);

/* Records it as a new pending transfer (phase DURABLE): queued in the batch, added to the
 * table (which keeps it) and to the start list. Returns 0, or -1 after opsim_fatal (it is then
 * freed). */
int opsim_track_new(opsim_sim *s, opsim_item *it);

/* Settles it: applies outcome to its wallet and the counters, records it as settled, removes
 * the pending record (all in the batch) and frees it. it must not be in phase DURABLE. */
void opsim_settle(opsim_sim *s, opsim_item *it, int outcome, uint32_t code);

/* The outcome of a final transfer state (adp_transfer_state), or 0 for RESERVED / unknown. */
int opsim_outcome_of(int state);

/* Its state must be asked of the switch, not before delay_ms from now. */
void opsim_ask_later(opsim_sim *s, opsim_item *it, uint32_t delay_ms);

/* Adds code to a tally. */
void opsim_codes_add(opsim_codes *c, uint32_t code);

/* ---- payee.c */

void opsim_payee_forward_cb(adp_client *client, const adp_forward *fw, void *arg);
void opsim_payee_latency_cb(evutil_socket_t fd, short what, void *arg);
/* Sends (or sends again) the COMMITTED fulfil of credit it. */
void opsim_payee_send_fulfil(opsim_sim *s, opsim_item *it);
/* Answers every deferred forward now (on the way out). */
void opsim_payee_answer_all(opsim_sim *s);
void opsim_payee_free_deferred(opsim_sim *s);
/* The fulfilment an opsim payee uses for a transfer with a condition: SHA-256 over a fixed
 * label and the transfer id; the condition is SHA-256 of it. */
void opsim_fulfilment(const uint8_t id[16], uint8_t out[32]);
void opsim_condition(const uint8_t id[16], uint8_t out[32]);

/* ---- payer.c */

/* Sends what the pace allows; stops paying at the end of --duration / --count. */
void opsim_payer_tick(opsim_sim *s, int64_t now_us);
/* Sends the prepare of debit it (its reservation has committed). */
void opsim_payer_send(opsim_sim *s, opsim_item *it);

/* ---- report.c */

/* Prints the data directory's totals as one JSON object (no newline). Returns 0 or a store
 * error. O(wallets + pending). */
int opsim_report_totals(opsim_store *store, FILE *f);
/* One JSON object a line per settled transfer / per wallet. */
int opsim_report_history(opsim_store *store, FILE *f);
int opsim_report_wallets(opsim_store *store, FILE *f);
/* The end-of-run report: JSON (one object, with the totals if opt->print_totals) or text. */
void opsim_report_run(opsim_sim *s, FILE *f);

#endif
