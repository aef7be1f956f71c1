/* tuma_client.h — libtuma-client: the C library an operator (a mobile-money wallet, a bank) uses
 * to talk to the Tuma switch, tumad (DESIGN §4, §5; proto/README.md).
 *
 * One adp_client is one mutually authenticated TLS 1.3 connection to the switch's operator
 * listener, driven by libevent on the caller's event_base. Requests are pipelined: the library
 * gives each a correlation id (never 0), sends it at once and calls its completion callback when
 * the switch's reply arrives, in whatever order replies come. The connection is re-established
 * automatically, with exponential backoff and jitter, after the switch closes it or restarts.
 *
 * Threading: a client belongs to the thread running its event_base. Call every function from
 * that thread (from inside callbacks, or between loop iterations); nothing here locks.
 *
 * Callbacks. Completion callbacks run from the event loop, never from inside the call that
 * submitted the request — except in adp_client_free(), which completes what is outstanding with
 * ADP_E_CLOSED before it returns. Every request accepted (the submit call returned 0) gets its
 * callback called exactly once: with 0 and the switch's answer, or with an error status. Results
 * passed to callbacks are borrowed: valid only until the callback returns; copy what you keep.
 * Any function of this header may be called from any callback, adp_client_free() included.
 *
 * Ownership: options and request structures are borrowed for the call (strings and buffers are
 * copied or encoded before it returns). Nothing returned through a pointer has to be freed by
 * the caller except the client itself.
 *
 * SIGPIPE: OpenSSL and libevent write to sockets with write(2), so a switch that goes away
 * could raise SIGPIPE. adp_client_new() sets SIGPIPE to SIG_IGN when it is still at its default
 * (terminate the process); a handler of the application's own is left alone.
 */
#ifndef TUMA_ADAPTERS_CLIENT_TUMA_CLIENT_H
#define TUMA_ADAPTERS_CLIENT_TUMA_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct event_base;

typedef struct adp_client adp_client;

/* ---------------------------------------------------------------- status codes */

/* Return values and callback statuses (0 = ok). */
typedef enum adp_error {
  ADP_OK = 0,
  ADP_E_INVAL = 1,         /* a bad argument (the request was not sent) */
  ADP_E_NOMEM = 2,         /* an allocation failed */
  ADP_E_AGAIN = 3,         /* would block: max_outstanding requests already await a reply */
  ADP_E_NOT_CONNECTED = 4, /* submitted while there is no (greeted) connection to the switch */
  ADP_E_DISCONNECTED = 5,  /* the connection dropped before the reply: outcome unknown */
  ADP_E_TIMEOUT = 6,       /* no reply in time (a request), or a connection attempt too slow */
  ADP_E_REFUSED = 7,       /* the switch answered with an Error: its code is in the result */
  ADP_E_CLOSED = 8,        /* the client was freed before the reply; or a call during that */
  ADP_E_TOO_LARGE = 9,     /* the request exceeds the switch's max_frame_bytes */
  ADP_E_TLS = 10,          /* TLS / OpenSSL: certificate files, handshake, verification */
  ADP_E_CONNECT = 11,      /* the host did not resolve or the TCP connection failed */
  ADP_E_PROTOCOL = 12,     /* the switch sent something that does not frame or decode */
} adp_error;

/* A static, human-readable text for an adp_error; never NULL. */
const char *adp_strerror(int status);

/* ---------------------------------------------------------------- plain data */

/* The kind of a party identifier (tuma.v1.PartyIdType). ADP_PARTY_NONE: no party. */
typedef enum adp_party_type {
  ADP_PARTY_NONE = 0,
  ADP_PARTY_MSISDN = 1, /* E.164 digits without '+', e.g. "254712345678" */
  ADP_PARTY_NATIONAL_ID = 2,
  ADP_PARTY_ACCOUNT_ID = 3,
  ADP_PARTY_REFUGEE_ID = 4,
  ADP_PARTY_BUSINESS_ID = 5,
} adp_party_type;

/* A person or account at an operator. In results, id is "" (never NULL) when type is NONE. */
typedef struct adp_party {
  adp_party_type type;
  const char *id;
} adp_party;

/* The state of a transfer (tuma.v1.TransferState). */
typedef enum adp_transfer_state {
  ADP_TRANSFER_UNKNOWN = 0,   /* no answer (the status of the callback says why) */
  ADP_TRANSFER_RESERVED = 1,  /* funds held, the payee has not decided (or is being resolved) */
  ADP_TRANSFER_COMMITTED = 2, /* final: paid */
  ADP_TRANSFER_ABORTED = 3,   /* final: not paid; error_code says why */
  ADP_TRANSFER_EXPIRED = 4,   /* final: not paid, the payee did not decide in time (3303) */
} adp_transfer_state;

/* A static name ("COMMITTED", …) for an adp_transfer_state; never NULL. */
const char *adp_transfer_state_name(int state);

/* Transfer ids are 16 bytes; ADP_ID_STR_LEN is the size of their text form with its NUL. */
enum { ADP_ID_LEN = 16, ADP_ID_STR_LEN = 37 };

/* Writes id as a lowercase UUID ("0193…-…") into out[ADP_ID_STR_LEN]. Returns out. */
char *adp_id_format(const uint8_t id[ADP_ID_LEN], char out[ADP_ID_STR_LEN]);

/* The outcome or state of a transfer (tuma.v1.TransferResult), and also what a transfer
 * request's callback gets when the request failed: then state is ADP_TRANSFER_UNKNOWN (or the
 * switch's answer, for ADP_E_REFUSED) and transfer_id is the request's. */
typedef struct adp_transfer_result {
  uint8_t transfer_id[ADP_ID_LEN];
  adp_transfer_state state;
  uint32_t error_code;       /* FSPIOP code (proto/README.md §8) when ABORTED / EXPIRED /
                                refused; 0 when none */
  const char *error_message; /* the switch's text for error_code; "" when none */
  uint64_t completed_at_ms;  /* Unix ms when it became final; 0 while RESERVED */
  int has_fulfilment;        /* to the payer on COMMITTED when the prepare had a condition */
  uint8_t fulfilment[32];
} adp_transfer_result;

/* A transfer the switch forwards to this operator as the payee (tuma.v1.TransferForward).
 * Answer it with adp_client_fulfil() before expiration_ms. */
typedef struct adp_forward {
  uint8_t transfer_id[ADP_ID_LEN];
  const char *payer_participant; /* who pays (the switch vouches for it) */
  adp_party payer;               /* the payer's party, if the payer gave one */
  adp_party payee;               /* the party to be paid, if the payer routed by party */
  const char *currency;          /* ISO 4217 alphabetic, e.g. "KES" */
  uint64_t amount;               /* minor units */
  uint64_t expiration_ms;        /* Unix ms: decide before this */
  int has_condition;             /* then commit with a fulfilment: SHA-256(fulfilment) = it */
  uint8_t condition[32];
  const char *reference; /* the payer's reference; "" when none */
} adp_forward;

/* The answer to adp_client_register_parties(). */
typedef struct adp_register_result {
  uint32_t registered;       /* how many parties the switch registered (all of them) */
  uint32_t error_code;       /* with ADP_E_REFUSED: e.g. 3100 (an invalid party, or one that another
                                participant registered); 0 otherwise */
  const char *error_message; /* "" when none */
} adp_register_result;

/* The answer to adp_client_lookup_party(). */
typedef struct adp_lookup_result {
  adp_party party;            /* the party asked about */
  const char *participant_id; /* the participant serving it; "" when unknown */
  uint32_t error_code;        /* 3204 when unknown (status 0); 3100 with ADP_E_REFUSED */
  const char *error_message;  /* "" when none */
} adp_lookup_result;

/* The answer to adp_client_ping(). */
typedef struct adp_ping_result {
  uint64_t nonce;  /* the library's nonce, echoed by the switch */
  uint64_t rtt_us; /* from submission to the Pong */
} adp_ping_result;

/* ---------------------------------------------------------------- callbacks */

/* Completion of a prepare, fulfil or query. status: 0 (result holds the switch's answer),
 * ADP_E_REFUSED (the switch sent an Error; result->error_code), ADP_E_DISCONNECTED,
 * ADP_E_TIMEOUT or ADP_E_CLOSED. result is never NULL. */
typedef void (*adp_transfer_cb)(adp_client *client, int status, const adp_transfer_result *result,
                                void *arg);
typedef void (*adp_register_cb)(adp_client *client, int status, const adp_register_result *result,
                                void *arg);
typedef void (*adp_lookup_cb)(adp_client *client, int status, const adp_lookup_result *result,
                              void *arg);
typedef void (*adp_ping_cb)(adp_client *client, int status, const adp_ping_result *result,
                            void *arg);

/* A forwarded transfer for this operator as the payee; fw is borrowed for the call. */
typedef void (*adp_forward_cb)(adp_client *client, const adp_forward *fw, void *arg);

/* A TransferResult that answers none of this client's pending requests: an expiry of a transfer
 * forwarded to this operator, the outcome of a transfer whose prepare or fulfil was sent on an
 * earlier connection (after a restart of the switch, or a reconnect), or the late answer to a
 * request that already completed with ADP_E_TIMEOUT. */
typedef void (*adp_notify_cb)(adp_client *client, const adp_transfer_result *result, void *arg);

typedef enum adp_conn_state {
  ADP_STATE_DISCONNECTED = 0,
  ADP_STATE_CONNECTED = 1,
} adp_conn_state;

/* A change of the connection. CONNECTED: the TLS handshake is done and the switch answered the
 * library's Hello; requests can be submitted from now on. DISCONNECTED: an established
 * connection dropped, or an attempt failed (reported after each failed attempt, so the
 * application sees why it cannot connect); the next attempt starts after retry_in_ms. */
typedef struct adp_state_event {
  adp_conn_state state;
  int error;            /* DISCONNECTED: ADP_E_CONNECT, ADP_E_TLS, ADP_E_TIMEOUT, ADP_E_REFUSED
                           (the switch refused us: switch_code), ADP_E_PROTOCOL, or
                           ADP_E_DISCONNECTED (closed by the switch); 0 when CONNECTED */
  uint32_t switch_code; /* ADP_E_REFUSED: the switch's code, e.g. 3100 (wrong certificate
                           role, unknown participant) or 4300 (participant suspended) */
  const char *reason;   /* human-readable; never NULL */
  uint32_t retry_in_ms; /* DISCONNECTED: delay before the next attempt */
  const char *participant_id; /* CONNECTED: the participant the switch took us for; else "" */
  uint32_t max_frame_bytes;   /* CONNECTED: the switch's frame limit */
} adp_state_event;

typedef void (*adp_state_cb)(adp_client *client, const adp_state_event *ev, void *arg);

/* ---------------------------------------------------------------- the client */

typedef struct adp_client_options {
  const char *host;        /* the switch: a name or a numeric address. A name is resolved with
                              getaddrinfo() at each attempt, which blocks the loop meanwhile */
  uint16_t port;           /* its operator port (default 7400 in tumad) */
  const char *ca_file;     /* the scheme CA (PEM) the switch's certificate must chain to */
  const char *cert_file;   /* this operator's certificate (PEM; CN = participant, OU operator) */
  const char *key_file;    /* and its private key (PEM) */
  const char *server_name; /* the name (DNS or IP) the switch's certificate must carry;
                              NULL = host. Also sent as SNI when it is a DNS name */
  const char *client_name; /* free text for the switch's logs; NULL = "libtuma-client" */

  adp_forward_cb on_forward; /* NULL: a send-only connection (Hello.send_only): the switch
                                routes this operator's forwards and unsolicited results to its
                                other connections (or refuses them with 3201 if there are none);
                                a forward that still arrives is refused at once (ABORTED 5105) */
  adp_notify_cb on_notify;   /* NULL: unsolicited results are dropped (counted in stats) */
  adp_state_cb on_state;     /* NULL: not told */
  void *arg;                 /* passed to the three callbacks above */

  uint32_t max_outstanding;         /* requests started by the application (prepare, query,
                                       register, lookup, ping) awaiting a reply; at the limit
                                       they return ADP_E_AGAIN. 0 = 1024 */
  uint32_t max_outstanding_fulfils; /* the same for fulfils, counted apart so that answering
                                       forwards never waits behind one's own payments (two
                                       operators paying each other could otherwise stall until
                                       expiry). 0 = max_outstanding */
  uint32_t request_timeout_ms;      /* ADP_E_TIMEOUT after this; for a prepare, after its
                                       expiration plus this (its answer is the final outcome).
                                       0 = 10000 */
  uint32_t connect_timeout_ms;      /* TCP + TLS + Hello of one attempt. 0 = 10000 */
  uint32_t reconnect_min_ms;        /* backoff: the first delay (0 = 100) … */
  uint32_t reconnect_max_ms;        /* … doubling up to this (0 = 30000); each delay is drawn
                                       uniformly from [d/2, d] (jitter) */
  uint32_t default_expiry_ms;       /* a prepare without expiration_ms expires this long after
                                       it is submitted. 0 = 30000 */
} adp_client_options;

/* Creates a client on base and starts connecting (asynchronously: the first attempt starts on
 * the next loop iteration; on_state reports the outcome). It reconnects by itself until freed.
 * Loads the CA, certificate and key now. Returns 0 and *client, or ADP_E_INVAL (a missing host,
 * port or file name, reconnect_min_ms > reconnect_max_ms), ADP_E_TLS (a file that does not
 * load, a key that does not match the certificate), ADP_E_NOMEM; *client is then NULL. base
 * and the callbacks are kept; the option strings are copied. Free with adp_client_free(). */
int adp_client_new(struct event_base *base, const adp_client_options *options, adp_client **client);

/* Closes the connection and frees the client. Every outstanding request's callback is called
 * with ADP_E_CLOSED before this returns; calls made from those callbacks return ADP_E_CLOSED.
 * May be called from any callback of this client (the memory then goes when the callback
 * returns; the client must not be used after this call). Accepts NULL. */
void adp_client_free(adp_client *client);

/* A transfer to start, as the payer (tuma.v1.TransferPrepare). The payer participant is the
 * certificate's, never a field. */
typedef struct adp_prepare {
  const uint8_t *transfer_id;    /* 16 bytes, not all zero; NULL = a fresh UUIDv7. Reuse an id
                                    only to send the same transfer again: the same content (every
                                    field, expiration_ms included: give it explicitly if you may
                                    resend) gets its current state (RESERVED while open, without
                                    a second forward), different content ABORTED 3106 */
  const char *payee_participant; /* route to this participant; NULL or "" = by payee party */
  adp_party payee;               /* the party to pay (looked up in the directory when no
                                    payee_participant); type NONE = none */
  adp_party payer;               /* optional, forwarded to the payee */
  const char *currency;          /* ISO 4217 alphabetic, one the participant holds */
  uint64_t amount;               /* minor units, > 0 */
  uint64_t expiration_ms;        /* Unix ms, in the future, within the scheme's maximum (default
                                    5 min); 0 = now + default_expiry_ms */
  const uint8_t *condition;      /* NULL or 32 bytes: SHA-256 of the payee's fulfilment */
  const char *reference;         /* NULL or the payer's reference (≤ 256 bytes), forwarded */
} adp_prepare;

/* Starts a transfer. The id used (the caller's or a fresh UUIDv7) goes to transfer_id_out (may
 * be NULL) as soon as the call returns 0. cb gets the final outcome: COMMITTED, ABORTED (with
 * the reason in error_code: refused by the switch at once, e.g. 4001, 3201, 3204; or by the
 * payee, 5xxx) or EXPIRED; or RESERVED for a repeated id whose transfer is still open (its
 * outcome then goes to the first request, or to on_notify). The callback can come as late as
 * the expiration; ADP_E_TIMEOUT only after expiration + request_timeout_ms.
 *
 * ADP_E_DISCONNECTED: the connection dropped after the prepare was sent and the transfer's
 * real outcome is unknown to the client: it may be reserved, committed, aborted or never
 * received. Learn it with adp_client_query() (same transfer id) after the client reconnects
 * (on_state CONNECTED); while it is RESERVED the payee has not decided yet, so query again
 * later. (An outcome reached after a restart of the switch is also pushed to on_notify; after a
 * mere reconnect tumad does not push it, so the query is the reliable way.) Never resend the
 * payment with a new id: that could pay twice.
 *
 * Returns 0 (cb will be called exactly once), ADP_E_INVAL (missing / bad field: no payee, a
 * zero amount, a currency that is not three capital letters, an all-zero id, a bad party),
 * ADP_E_NOT_CONNECTED, ADP_E_AGAIN, ADP_E_TOO_LARGE, ADP_E_NOMEM, ADP_E_CLOSED. cb may be NULL
 * (then nothing is told). O(size of the request). */
int adp_client_prepare(adp_client *client, const adp_prepare *req,
                       uint8_t transfer_id_out[ADP_ID_LEN], adp_transfer_cb cb, void *arg);

typedef enum adp_fulfil_state {
  ADP_FULFIL_COMMIT = 1, /* accept: the switch posts the transfer */
  ADP_FULFIL_ABORT = 2,  /* refuse: the switch voids it and tells the payer reason_code */
} adp_fulfil_state;

/* The payee's decision on a forwarded transfer (tuma.v1.TransferFulfil). COMMIT: fulfilment is
 * NULL, or 32 bytes whose SHA-256 is the forward's condition (required when it had one; a wrong
 * one aborts the transfer with 3100). ABORT: reason_code 5000…5999 (passed to the payer), or 0
 * for 5105 (payee rejected); reason_message may be NULL; fulfilment must be NULL. cb gets the
 * switch's confirmation: COMMITTED / ABORTED / EXPIRED (3303: too late), or RESERVED when the
 * transfer is already being resolved (or, with error_code 2001, when the switch could not
 * write it: send the same fulfil again); ADP_E_REFUSED with 3208 when no such transfer is
 * pending for this operator. Returns as adp_client_prepare() (ADP_E_AGAIN when
 * max_outstanding_fulfils await a reply). */
int adp_client_fulfil(adp_client *client, const uint8_t transfer_id[ADP_ID_LEN],
                      adp_fulfil_state state, const uint8_t *fulfilment, uint32_t reason_code,
                      const char *reason_message, adp_transfer_cb cb, void *arg);

/* Makes parties reachable at this operator (1 … 1000 of them, each with a type and a non-empty
 * id of at most 128 bytes). cb gets registered = n, or ADP_E_REFUSED (3100: an invalid party or
 * one another participant registered; none is registered then). ADP_E_TOO_LARGE when they do
 * not fit in one frame (the switch's max_frame_bytes): register them in smaller batches. */
int adp_client_register_parties(adp_client *client, const adp_party *parties, size_t n,
                                adp_register_cb cb, void *arg);

/* Which participant serves party? cb: status 0 with participant_id, or with "" and error_code
 * 3204 when the directory does not know it; ADP_E_REFUSED (3100) for an invalid party. */
int adp_client_lookup_party(adp_client *client, const adp_party *party, adp_lookup_cb cb,
                            void *arg);

/* The current state of one of this operator's transfers (as payer or payee). cb: status 0 with
 * the state (RESERVED while open), or ADP_E_REFUSED with 3208 (no such transfer of ours). */
int adp_client_query(adp_client *client, const uint8_t transfer_id[ADP_ID_LEN], adp_transfer_cb cb,
                     void *arg);

/* Liveness and round-trip time. */
int adp_client_ping(adp_client *client, adp_ping_cb cb, void *arg);

typedef struct adp_stats {
  uint64_t sent;          /* frames sent (the library's Hellos included) */
  uint64_t received;      /* frames received */
  uint64_t outstanding;   /* requests accepted and not completed (fulfils included) */
  uint64_t reconnects;    /* connections established after the first one */
  uint64_t forwards;      /* TransferForwards received */
  uint64_t notifications; /* unsolicited TransferResults (given to on_notify, if set) */
  uint64_t timeouts;      /* requests completed with ADP_E_TIMEOUT */
  uint64_t unmatched;     /* replies that matched no pending request (late, after a timeout)
                             and were not TransferResults: dropped */
  int connected;          /* 1 between on_state CONNECTED and DISCONNECTED */
} adp_stats;

/* Copies the client's counters into *out. O(1). Returns 0, or ADP_E_INVAL for NULL. */
int adp_client_stats(const adp_client *client, adp_stats *out);

#ifdef __cplusplus
}
#endif

#endif
