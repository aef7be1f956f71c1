/* admin_client.h — a blocking client for tumad's admin listener: a wire.h connection (TCP, TLS
 * 1.3 with mutual authentication against the scheme CA, 4-byte big-endian length frames) that
 * carries tuma.v1.AdminEnvelope (proto/tuma/v1/admin.proto). One request at a time; each call
 * waits (bounded by the timeout) for the reply with the same correlation id.
 *
 * A client is one connection; it is not shared between threads. Every function returns 0
 * (ADMIN_CLIENT_OK) or an ADMIN_CLIENT_E* code and, on failure, fills *diag with a sentence
 * for a human.
 */
#ifndef TUMA_CLI_ADMIN_CLIENT_H
#define TUMA_CLI_ADMIN_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "tuma/v1/admin.pb-c.h"

#include "wire.h"

/* The codes are wire.h's. */
enum {
  ADMIN_CLIENT_OK = WIRE_OK,
  ADMIN_CLIENT_EINVAL = WIRE_EINVAL, /* a bad address or option */
  ADMIN_CLIENT_EFILE = WIRE_EFILE,   /* the CA, certificate or key file is missing or unusable */
  ADMIN_CLIENT_ECONNECT = WIRE_ECONNECT, /* no TCP connection (refused, unreachable, not found) */
  ADMIN_CLIENT_ETLS = WIRE_ETLS,         /* the TLS handshake failed or a peer was not trusted */
  ADMIN_CLIENT_ETIMEOUT = WIRE_ETIMEOUT, /* the switch did not answer in time */
  ADMIN_CLIENT_ECLOSED = WIRE_ECLOSED,   /* the switch closed the connection */
  ADMIN_CLIENT_EPROTO = WIRE_EPROTO,     /* a frame too large or that does not decode */
  ADMIN_CLIENT_ENOMEM = WIRE_ENOMEM
};

/* The largest reply frame accepted (a participant list or positions of a big scheme). */
enum { ADMIN_CLIENT_MAX_FRAME = WIRE_MAX_FRAME };

/* A static English name for an ADMIN_CLIENT_E* code. */
const char *admin_client_strerror(int err);

typedef wire_diag admin_client_diag;

typedef struct admin_client_options {
  const char *host;        /* name or address literal (IPv6 without brackets) */
  const char *port;        /* decimal port or service name */
  const char *ca_file;     /* PEM: the scheme CA the switch's certificate must chain to */
  const char *cert_file;   /* PEM: our certificate (role admin) */
  const char *key_file;    /* PEM: its private key */
  const char *server_name; /* what the switch's certificate must name; NULL = host */
  int timeout_ms;          /* connect, handshake and each reply; 0 = 10000 */
} admin_client_options;

typedef struct admin_client admin_client;

/* Splits "HOST:PORT" or "[IPV6]:PORT" into host and port (written into the caller's buffers).
 * ADMIN_CLIENT_EINVAL if text has no port or a part does not fit. */
int admin_client_parse_address(const char *text, char *host, size_t host_cap, char *port,
                               size_t port_cap, admin_client_diag *diag);

/* Connects, completes the TLS 1.3 handshake and verifies the switch's certificate (chain to
 * ca_file, name server_name or host, serverAuth). Options are borrowed for the call only.
 * *out is the caller's, to close with admin_client_close. Cost: one round trip for TCP, one or
 * two for TLS. */
int admin_client_connect(const admin_client_options *o, admin_client **out,
                         admin_client_diag *diag);

/* Sends req (its correlation_id is overwritten with the next one this client uses) and waits
 * for the reply carrying the same correlation id; frames with other ids are skipped, except a
 * connection-level AdminResult (correlation id 0), which is returned as the reply. *reply is the
 * caller's, to free with tuma__v1__admin_envelope__free_unpacked(*reply, NULL). After a failure
 * the connection is unusable (only close is left). */
int admin_client_call(admin_client *c, Tuma__V1__AdminEnvelope *req,
                      Tuma__V1__AdminEnvelope **reply, admin_client_diag *diag);

/* Shuts the TLS session down (without waiting for the peer) and frees everything. NULL is
 * fine. */
void admin_client_close(admin_client *c);

#endif
