/* switch_ops.h — what the integration suites (test_switch, test_hostile, test_faults,
 * test_switch_crash) do to a running tumad: the test's context (a harness from
 * tests/switch_harness.h, its client connections from tests/tclient.h and every transfer an
 * operator was told about), operator and admin messages sent and expected, and the read-only
 * ledger check every test ends with. Test code only.
 *
 * Every helper fails the running Criterion test (cr_assert) instead of returning an error: a
 * test reads as the conversation it drives. One test runs per process, so the context is one
 * static object (so_start), which so_fini (the suites' TestSuite .fini) reports on when a
 * test failed before so_finish.
 */
#ifndef TUMA_TESTS_SWITCH_OPS_H
#define TUMA_TESTS_SWITCH_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "ledger.h"
#include "switch_harness.h"
#include "tclient.h"

#define SO_T_ANSWER 5000 /* ms: an answer that should come at once (a ledger commit away) */
#define SO_T_SILENCE 400 /* ms: how long "nothing arrives" is watched */
#define SO_T_START 15000 /* ms: tumad start-up */
#define SO_T_STOP 10000  /* ms: graceful stop */

#define SO_ST_RESERVED TUMA__V1__TRANSFER_STATE__TRANSFER_STATE_RESERVED
#define SO_ST_COMMITTED TUMA__V1__TRANSFER_STATE__TRANSFER_STATE_COMMITTED
#define SO_ST_ABORTED TUMA__V1__TRANSFER_STATE__TRANSFER_STATE_ABORTED
#define SO_ST_EXPIRED TUMA__V1__TRANSFER_STATE__TRANSFER_STATE_EXPIRED
#define SO_FS_COMMITTED TUMA__V1__FULFIL_STATE__FULFIL_STATE_COMMITTED
#define SO_FS_ABORTED TUMA__V1__FULFIL_STATE__FULFIL_STATE_ABORTED
#define SO_PT_MSISDN TUMA__V1__PARTY_ID_TYPE__PARTY_ID_TYPE_MSISDN
#define SO_PT_NATIONAL_ID TUMA__V1__PARTY_ID_TYPE__PARTY_ID_TYPE_NATIONAL_ID

/* ================================================================ the test's context */

/* Checks of the ledger at the end of a test beyond the balance and the told states. */
enum {
  SO_CHECK_JOURNAL = 1, /* ledger_journal_verify: the journal's records verify */
  SO_CHECK_AUDIT = 2,   /* ledger_audit_verify: hash chain, replay, every stored row compared */
};

/* What a suite asks of its tests' contexts. */
typedef struct so_config {
  size_t max_seen; /* transfers so_track can hold; one more fails the test */
  unsigned checks; /* SO_CHECK_* bits */
} so_config;

typedef struct so_seen {
  uint8_t id[16];
  int told; /* the last final (or RESERVED) state an operator was told */
  char what[48];
} so_seen;

typedef struct so_ctx {
  sh_switch *h;
  so_seen *seen; /* max_seen entries, owned */
  size_t n_seen, max_seen;
  unsigned checks;
  tc_client *clients[32]; /* closed by so_finish */
  size_t n_clients;
  uint64_t admin_corr;
  int soft_failures; /* cr_expect failures so far: keep the scratch directory */
} so_ctx;

/* Criterion .fini for the suites: when a test failed before so_finish, dumps the end of
 * tumad's log, keeps the scratch directory and stops tumad. */
void so_fini(void);

/* Creates a harness with o (NULL: defaults) and starts tumad. The context is static (one test
 * per process) and borrowed until so_finish; cfg is read during the call. */
so_ctx *so_start(const sh_options *o, const so_config *cfg);

/* Starts tumad again (after sh_stop or a kill) in the same scratch directory. */
void so_restart(so_ctx *t);

/* Remembers that an operator was told `told` (an SO_ST_*) about transfer id; the last call for
 * an id wins. what (copied, truncated) names it in failure messages. */
void so_track(so_ctx *t, const uint8_t id[16], int told, const char *what);

/* The ledger id of a 16-byte wire id. */
ledger_id so_wire_id(const uint8_t b[16]);

/* A static name of a pending state. */
const char *so_pending_name(ledger_pending_state s);

/* The ledger, opened read-only after tumad stopped: it balances (Σ debits = Σ credits, posted
 * and pending), every tracked transfer is as told (COMMITTED ⇒ posted, ABORTED / EXPIRED ⇒
 * voided, expired or absent, RESERVED ⇒ still open), plus the context's SO_CHECK_* checks. */
void so_check_ledger(so_ctx *t);

/* Stops tumad gracefully (it must exit 0 within SO_T_STOP), closes the connections, checks the
 * ledger, removes the scratch directory (kept after soft failures or with TUMA_TEST_KEEP). */
void so_finish(so_ctx *t);

/* ================================================================ ids and time */

/* A UUIDv7-style id: 48-bit Unix milliseconds, version 7, random bits. */
void so_new_id(uint8_t id[16]);
void so_sleep_ms(int ms);
/* CLOCK_MONOTONIC in milliseconds. */
int64_t so_mono_ms(void);

/* ================================================================ connections */

/* Static names of an envelope's body case, an admin envelope's, a transfer state. */
const char *so_body_name(int body_case);
const char *so_admin_body_name(int body_case);
const char *so_state_name(int s);

/* Sends env (borrowed for the call) on c; who names the sender in failure messages. */
void so_send_env(tc_client *c, const char *who, Tuma__V1__Envelope *env);

/* The next envelope on c within timeout_ms; the caller frees it. */
Tuma__V1__Envelope *so_recv_env(tc_client *c, const char *who, int timeout_ms);

/* A TLS connection with the given CA, certificate and key (NULL, NULL: none); kept in t and
 * closed by so_finish. */
tc_client *so_connect_as(so_ctx *t, uint16_t port, const char *ca, const char *cert,
                         const char *key);

/* Forgets c (closed by the test itself). */
void so_untrack_client(so_ctx *t, tc_client *c);

/* Forgets and closes c. */
void so_drop_client(so_ctx *t, tc_client *c, int graceful);

/* Closes the test's connections (tumad went away or is about to). */
void so_drop_all(so_ctx *t);

/* An operator connection for participant `name`, greeted: Hello → HelloAck naming it. Once
 * the ack is in, the switch has the connection registered for forwards. */
tc_client *so_op_connect(so_ctx *t, const char *name);

/* A connection to the admin port with the admin certificate. */
tc_client *so_admin_connect(so_ctx *t);

/* ================================================================ operator messages */

typedef struct so_prep {
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
} so_prep;

void so_send_prepare(tc_client *c, const char *who, uint64_t corr, const so_prep *p);

/* A simple prepare → payee participant, 30 s to live (id is borrowed by the result). */
so_prep so_simple(const uint8_t *id, const char *payee, uint64_t amount);

/* A fulfil of id in state (SO_FS_*), with fulfilment (32 bytes, or NULL) and a reason code
 * (0: none). */
void so_send_fulfil(tc_client *c, const char *who, uint64_t corr, const uint8_t id[16], int state,
                    const uint8_t *fulfilment, unsigned reason);
void so_send_query(tc_client *c, const char *who, uint64_t corr, const uint8_t id[16]);
void so_send_ping(tc_client *c, const char *who, uint64_t corr, uint64_t nonce);
void so_expect_pong(tc_client *c, const char *who, uint64_t corr, uint64_t nonce);

/* What a TransferResult should say. code 0 = no error (absent or code 0). */
typedef struct so_want_result {
  uint64_t corr;
  const uint8_t *id;
  int state;
  unsigned code;
} so_want_result;

/* The next envelope on c is the TransferResult w; returns it (the caller frees). */
Tuma__V1__Envelope *so_expect_result_env(tc_client *c, const char *who, const so_want_result *w,
                                         int timeout_ms);
/* The next envelope on c (within SO_T_ANSWER) is that TransferResult. */
void so_expect_result(tc_client *c, const char *who, uint64_t corr, const uint8_t id[16], int state,
                      unsigned code);
/* The next envelope on c is an Error with code on corr. */
void so_expect_error(tc_client *c, const char *who, uint64_t corr, unsigned code);
/* Nothing arrives on c for ms milliseconds (and it stays open). */
void so_expect_silence(tc_client *c, const char *who, int ms);
/* The switch closes c within ms (whatever it sends first is discarded). */
void so_expect_closed(tc_client *c, const char *who, int ms);
/* The next envelope on c is a TransferForward of id from payer for amount KES; returns its
 * correlation id. */
uint64_t so_expect_forward(tc_client *c, const char *who, const uint8_t id[16], const char *payer,
                           uint64_t amount);
/* The switch refuses c's handshake: a request gets no answer, the connection closes. */
void so_expect_refused_handshake(tc_client *c, const char *who);

/* One whole two-phase transfer payer → payee, committed; both sides told (correlation ids corr
 * and corr + 1); tracked. */
void so_transfer_ok(so_ctx *t, tc_client *payer, const char *payer_name, tc_client *payee,
                    const char *payee_name, uint64_t amount, uint64_t corr);

/* ================================================================ admin messages */

/* Sends env (its correlation id is set) and returns the answer (the caller frees). */
Tuma__V1__AdminEnvelope *so_admin_call(so_ctx *t, tc_client *adm, Tuma__V1__AdminEnvelope *env);

/* Sends an admin request answered by AdminResult; returns its error code (0 = done). */
unsigned so_admin_result(so_ctx *t, tc_client *adm, Tuma__V1__AdminEnvelope *env);

typedef struct so_position {
  uint64_t liquidity, reserved, available, cap;
  int64_t net;
} so_position;

/* The participant's KES position (the only currency); available = liquidity - reserved. */
so_position so_get_position(so_ctx *t, tc_client *adm, const char *participant);
unsigned so_set_status(so_ctx *t, tc_client *adm, const char *participant, int status);
/* A KES liquidity deposit (deposit != 0) or withdrawal, adjustment id `id`. */
unsigned so_liquidity(so_ctx *t, tc_client *adm, const uint8_t id[16], const char *participant,
                      uint64_t amount, int deposit);
/* The participant's entry in ParticipantList; fails the test if it is not listed. */
void so_list_entry(so_ctx *t, tc_client *adm, const char *participant, int *status, int *connected);

#endif
