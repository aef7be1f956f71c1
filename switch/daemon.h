/* daemon.h — the state of a running tumad, shared by its modules: the connection layer
 * (server.c), the operator and admin requests (operator.c, admin.c), the transfer state
 * machine (transfer.c), metrics (metrics.c) and main (tumad.c). Everything here runs on the
 * event loop's thread; only the ledger writer (commit.h) runs beside it.
 */
#ifndef TUMA_SWITCH_DAEMON_H
#define TUMA_SWITCH_DAEMON_H

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/ssl.h>
#include <stdint.h>

#include "commit.h"
#include "config.h"
#include "ledger.h"
#include "log.h"
#include "registry.h"
#include "tuma/v1/admin.pb-c.h"
#include "tuma/v1/operator.pb-c.h"

typedef struct sw_switch sw_switch;
typedef struct sw_conn sw_conn;
typedef struct sw_transfer sw_transfer;

/* One participant in memory: its registry record and its live operator connections. */
typedef struct sw_peer {
  sw_participant p;
  int known;      /* p is loaded */
  sw_conn *conns; /* operator connections of this participant (sw_conn.peer_next) */
  unsigned n_conns;
} sw_peer;

/* Counters for /metrics (metrics.c renders them). */
typedef struct sw_metrics {
  uint64_t transfers_committed, transfers_aborted, transfers_expired, transfers_rejected;
  uint64_t prepares, fulfils, duplicates;
  uint64_t connections_accepted, connections_refused, frames_in, frames_out, frame_errors;
  uint64_t disburse_paid, disburse_failed, disburse_cancelled, disburse_retries;
} sw_metrics;

struct sw_switch {
  struct event_base *base;
  const sw_config *cfg;
  sw_logger log;
  ledger *ledger;
  sw_commit *commit;
  sw_registry *registry;
  SSL_CTX *tls;
  struct evconnlistener *operator_listener, *admin_listener;
  struct evhttp *http;
  sw_peer *peers; /* indexed by participant number */
  uint32_t n_peers;
  sw_conn *conns; /* every connection (sw_conn.next) */
  unsigned n_conns;
  sw_conn **conn_index; /* open addressing by id (linear probing, deletion by shifting) */
  size_t conn_index_size;
  uint64_t next_conn_id;
  uint64_t next_correlation; /* ids of messages the switch initiates: top bit set */
  struct sw_transfers *transfers;
  struct sw_disburse *disburse; /* disburse.h */
  sw_conn *blocked; /* connections waiting for room in the ledger queue (sw_conn.blocked_next) */
  sw_metrics metrics;
  int stopping;
};

struct sw_conn {
  sw_switch *sw;
  uint64_t id;
  struct bufferevent *bev;
  int admin;            /* accepted on the admin listener */
  int ready;            /* handshake done and the peer authorised */
  int closing;          /* flushing a last frame, then closed */
  uint32_t participant; /* operator connections: the participant's number */
  char identity[64];    /* certificate CN */
  char role[32];        /* certificate OU */
  char addr[64];
  int send_only;      /* said so in its Hello: no forwards or notifications here */
  unsigned in_flight; /* requests not yet answered */
  int read_paused;    /* reading stopped (in-flight limit or ledger queue full) */
  struct event *partial_timer;
  sw_conn *next, *prev;
  sw_conn *peer_next;
  sw_conn *blocked_next;
  int blocked;
};

/* ---- server.c: connections and frames */

int sw_server_start(sw_switch *sw);
/* Stops accepting (listeners freed); connections stay. */
void sw_server_stop_accepting(sw_switch *sw);
/* Closes every connection and frees the TLS context. */
void sw_server_close_all(sw_switch *sw);

/* The live connection with this id, or NULL (a connection may go away at any time: keep ids,
 * not pointers, across callbacks). */
sw_conn *sw_conn_find(sw_switch *sw, uint64_t id);

/* Sends one envelope (framed). Returns 0, or -1 if it could not be encoded (logged). */
int sw_conn_send(sw_conn *c, const Tuma__V1__Envelope *env);
int sw_conn_send_admin(sw_conn *c, const Tuma__V1__AdminEnvelope *env);

/* Sends an Error envelope with the request's correlation id. */
void sw_conn_send_error(sw_conn *c, uint64_t correlation, unsigned code, const char *text);

/* A request of c was answered: one fewer in flight (reading resumes below the limit). */
void sw_conn_request_done(sw_conn *c);

/* Parks c until the ledger queue has room: reading stops; sw_server_unblock resumes it. */
void sw_conn_block(sw_conn *c);
void sw_server_unblock(sw_switch *sw);

/* A connected operator connection of participant `number` to forward to (round robin), or
 * NULL if none is connected or all are congested. */
sw_conn *sw_peer_pick_conn(sw_switch *sw, uint32_t number);

/* The peer of a participant id, or NULL. */
sw_peer *sw_peer_by_id(sw_switch *sw, const char *participant_id);
sw_peer *sw_peer_by_number(sw_switch *sw, uint32_t number);
/* Adds or refreshes a participant in memory (after a registry put). */
int sw_peer_update(sw_switch *sw, const sw_participant *p);

/* ---- operator.c / admin.c: requests */

void sw_operator_dispatch(sw_conn *c, Tuma__V1__Envelope *env);
void sw_admin_dispatch(sw_conn *c, Tuma__V1__AdminEnvelope *env);

/* Answers admin request corr on connection conn_id (if still there) with an AdminResult: code 0
 * = done, else the error code and text (NULL: the code's default text); the request is done. */
void sw_admin_reply(sw_switch *sw, uint64_t conn_id, uint64_t corr, unsigned code,
                    const char *text);

/* Creates (idempotently) the participant's ledger accounts, its net debit caps and its
 * initial deposits from the configuration; done at start-up before the listeners open.
 * Blocks on the ledger (it runs before the event loop). */
int sw_admin_apply_config(sw_switch *sw);

/* ---- transfer.c: the payment state machine */

int sw_transfers_init(sw_switch *sw);
void sw_transfers_free(sw_switch *sw);
/* Rebuilds the reserved-but-unfinished transfers from the ledger after a restart. */
int sw_transfers_recover(sw_switch *sw);
size_t sw_transfers_in_flight(const sw_switch *sw);

void sw_transfer_prepare(sw_conn *c, uint64_t correlation, const Tuma__V1__TransferPrepare *m);
void sw_transfer_fulfil(sw_conn *c, uint64_t correlation, const Tuma__V1__TransferFulfil *m);
void sw_transfer_query(sw_conn *c, uint64_t correlation, const Tuma__V1__TransferQuery *m);

/* ---- transfer.c: transfers the switch itself starts (disbursement items) */

/* Told once of an internal transfer's final outcome: final_state is a
 * TUMA__V1__TRANSFER_STATE__* (COMMITTED, ABORTED or EXPIRED), code the reason (0 when
 * committed). Runs on the loop thread after the outcome is durable. */
typedef void (*sw_transfer_done_cb)(ledger_id id, int final_state, unsigned code,
                                    uint64_t completed_ms, void *arg);

/* What the switch pays: the same two ledger legs as an operator's payment, debited from the
 * given accounts (a programme's ESCROW and PROGRAMME_NDC), forwarded to the payee operator
 * with the payee party and reference. Strings are borrowed for the call. */
typedef struct sw_internal_transfer {
  ledger_id id;
  ledger_id debit_liquidity, debit_ndc;
  uint32_t payer; /* the funding participant (shown to the payee as payer_participant) */
  uint32_t payee; /* the payee participant number */
  uint32_t ledger_no;
  uint64_t amount;
  uint64_t expiration_ms;
  uint8_t digest[32]; /* what makes a retry with this id "the same" (its first 16 bytes are kept) */
  uint32_t payee_party_type;
  const char *payee_party_id;
  const char *reference;
  int unrecorded; /* the caller has just seen that the ledger holds no transfer with this id */
} sw_internal_transfer;

/* Starts internal transfer it, or rejoins it if it is already in flight (after a restart: cb
 * replaces the previous watcher). Returns 0 when cb will run once later; a final
 * TUMA__V1__TRANSFER_STATE__* (> 0) when the outcome is known now (already final in the
 * ledger, or refused before anything was reserved: payee unknown, suspended or not
 * connected), with its reason in *code; -2 when the ledger queue is full (nothing done, try
 * later); -1 on another failure (*code = 2001/2003). O(1) plus a ledger lookup. */
int sw_transfer_start_internal(sw_switch *sw, const sw_internal_transfer *it,
                               sw_transfer_done_cb cb, void *arg, unsigned *code);

/* Attaches cb to internal transfer id in flight (recovered after a restart). 0, or -1 when it is
 * not in flight. */
int sw_transfer_watch(sw_switch *sw, ledger_id id, sw_transfer_done_cb cb, void *arg);

/* ---- metrics.c */

int sw_metrics_start(sw_switch *sw);
void sw_metrics_stop(sw_switch *sw);

/* "host:port" (IPv6 hosts in brackets). */
void sw_format_addr(const sw_config_addr *a, char *out, size_t outlen);

/* Milliseconds since the Unix epoch. */
uint64_t sw_now_ms(void);

#endif
