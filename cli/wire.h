/* wire.h — the connection every `tuma` command that talks to tumad uses: TCP, TLS 1.3 with
 * mutual authentication against the scheme CA, and frames of a 4-byte big-endian length followed
 * by one protobuf body (proto/README.md §1-2). What the bodies are (an AdminEnvelope, an
 * Envelope) is the caller's business: admin_client.c and operator.c.
 *
 * Blocking in effect, bounded in time: every call waits at most its timeout (the socket itself
 * is non-blocking and waits happen in poll()). A receive can also be cut short by a descriptor
 * of the caller's becoming readable (a signalfd, say), so a command can wait for the switch and
 * for Ctrl-C at once.
 *
 * A connection is not shared between threads. Every function returns 0 (WIRE_OK) or a WIRE_E*
 * code and, on failure, fills *diag with a sentence for a human.
 */
#ifndef TUMA_CLI_WIRE_H
#define TUMA_CLI_WIRE_H

#include <stddef.h>
#include <stdint.h>

enum {
  WIRE_OK = 0,
  WIRE_EINVAL = 1,   /* a bad address or option */
  WIRE_EFILE = 2,    /* the CA, certificate or key file is missing or unusable */
  WIRE_ECONNECT = 3, /* no TCP connection (refused, unreachable, name not found) */
  WIRE_ETLS = 4,     /* the TLS handshake failed or a peer was not trusted */
  WIRE_ETIMEOUT = 5, /* the switch did not answer in time */
  WIRE_ECLOSED = 6,  /* the switch closed the connection */
  WIRE_EPROTO = 7,   /* a frame too large, empty, or that does not decode */
  WIRE_ENOMEM = 8,
  WIRE_EWOKEN = 9, /* the caller's wake-up descriptor became readable (not an error of ours) */
};

/* The largest frame body accepted from the switch (a participant list of a big scheme). */
enum { WIRE_MAX_FRAME = 16 * 1024 * 1024 };

/* A static English name for a WIRE_E* code. */
const char *wire_strerror(int err);

typedef struct wire_diag {
  char text[512];
} wire_diag;

typedef struct wire_options {
  const char *host;        /* name or address literal (IPv6 without brackets) */
  const char *port;        /* decimal port or service name */
  const char *ca_file;     /* PEM: the scheme CA the switch's certificate must chain to */
  const char *cert_file;   /* PEM: our certificate */
  const char *key_file;    /* PEM: its private key */
  const char *server_name; /* what the switch's certificate must name; NULL = host */
  int timeout_ms;          /* connect, handshake and each send; 0 = 10000 */
  /* For messages only: */
  const char *role;       /* the role our certificate should have: "admin", "operator" */
  const char *files_hint; /* how else the files are set, e.g. "TUMA_PKI_DIR" */
} wire_options;

typedef struct wire_conn wire_conn;

/* Fills diag with the formatted text and returns err (for callers that share wire_diag). */
int wire_fail(wire_diag *diag, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Splits "HOST:PORT" or "[IPV6]:PORT" into host and port (written into the caller's buffers).
 * WIRE_EINVAL if text has no port, the port is not 1-65535, or a part does not fit. */
int wire_parse_address(const char *text, char *host, size_t host_cap, char *port, size_t port_cap,
                       wire_diag *diag);

/* Connects, completes the TLS 1.3 handshake and verifies the switch's certificate (chain to
 * ca_file, name server_name or host). Options are borrowed for the call only. *out is the
 * caller's, to close with wire_close. Cost: one round trip for TCP, one or two for TLS.
 *
 * TLS 1.3: the switch judges our certificate after our side of the handshake is done, so a
 * refused certificate shows up later, as a closed connection or an error frame on the first
 * receive (whose message then says so). */
int wire_connect(const wire_options *o, wire_conn **out, wire_diag *diag);

/* Writes frame[0..len) (header and body, as proto_*_encode makes them) whole, waiting at most
 * the connection's timeout. frame is borrowed for the call. After a failure only close is
 * left. */
int wire_send(wire_conn *c, const uint8_t *frame, size_t len, wire_diag *diag);

/* Waits for the next whole frame, at most timeout_ms (< 0: no limit), and returns its body in
 * *body[0..*len), borrowed: valid until the next wire_recv or wire_close. If wake_fd >= 0 and
 * becomes readable first, returns WIRE_EWOKEN (nothing is lost: a frame in progress stays
 * buffered for the next call); WIRE_ETIMEOUT likewise leaves the stream usable. A frame
 * announcing more than WIRE_MAX_FRAME bytes or none is WIRE_EPROTO, after which only close is
 * left, as after every other failure. */
int wire_recv(wire_conn *c, int timeout_ms, int wake_fd, const uint8_t **body, size_t *len,
              wire_diag *diag);

/* Shuts the TLS session down (without waiting for the peer) and frees everything. NULL is
 * fine. */
void wire_close(wire_conn *c);

#endif
