/* tclient.h — a small blocking client for the integration tests: one TLS 1.3 connection to
 * tumad on 127.0.0.1, with a given CA, client certificate and key, that sends and receives
 * framed envelopes (proto/frame.h) of the operator or the admin protocol. Test code only.
 *
 * Plain OpenSSL on a blocking socket; every read waits at most the timeout it is given (poll
 * plus SO_RCVTIMEO), every write at most TC_WRITE_TIMEOUT_MS. Nothing is global except that
 * the first tc_connect() ignores SIGPIPE for the process (a write to a peer that closed must
 * give an error, not kill the test).
 *
 * TLS 1.3 note: the client finishes its handshake before the server has checked the client's
 * certificate, so a refused certificate shows up as a connection that closes (with a TLS alert)
 * on the first read, not as a failing tc_connect().
 */
#ifndef TUMA_TESTS_TCLIENT_H
#define TUMA_TESTS_TCLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "tuma/v1/admin.pb-c.h"
#include "tuma/v1/operator.pb-c.h"

enum { TC_WRITE_TIMEOUT_MS = 5000 };

/* Return codes (0 = ok). */
typedef enum tc_error {
  TC_OK = 0,
  TC_E_INVAL = 1,     /* bad argument, or an envelope that does not encode */
  TC_E_NOMEM = 2,     /* allocation failed */
  TC_E_CONNECT = 3,   /* the TCP connection failed */
  TC_E_TLS = 4,       /* TLS failed: handshake, or an alert / protocol error while reading */
  TC_E_TIMEOUT = 5,   /* nothing (whole) arrived within the timeout */
  TC_E_CLOSED = 6,    /* the peer closed the connection (close_notify, EOF or reset) */
  TC_E_DECODE = 7,    /* a frame arrived that does not decode as the expected envelope */
  TC_E_TOO_LARGE = 8, /* a frame announced more than TC_MAX_FRAME bytes */
} tc_error;

enum { TC_MAX_FRAME = 16u << 20 };

/* A static name for a tc_error; never NULL. */
const char *tc_strerror(int err);

typedef struct tc_client tc_client;

/* Connects to 127.0.0.1:port and completes a TLS 1.3 handshake, verifying the server's
 * certificate against ca_file (and that it names 127.0.0.1). cert_file and key_file are the
 * client's certificate and key; both NULL means "present no certificate". timeout_ms bounds
 * the connect and the handshake. On success *out is the connection (free with tc_close()). On
 * failure *out is NULL and the reason is in err[errlen] when err is not NULL.
 * Errors: TC_E_INVAL (bad files), TC_E_NOMEM, TC_E_CONNECT, TC_E_TLS, TC_E_TIMEOUT. */
int tc_connect(uint16_t port, const char *ca_file, const char *cert_file, const char *key_file,
               int timeout_ms, tc_client **out, char *err, size_t errlen);

/* Sends one envelope as one frame. env is borrowed for the call.
 * Errors: TC_E_INVAL (does not encode), TC_E_NOMEM, TC_E_CLOSED, TC_E_TLS, TC_E_TIMEOUT. */
int tc_send(tc_client *c, const Tuma__V1__Envelope *env);
int tc_send_admin(tc_client *c, const Tuma__V1__AdminEnvelope *env);

/* Writes raw bytes on the TLS connection (for malformed, oversized and truncated frames). */
int tc_write_raw(tc_client *c, const void *buf, size_t len);

/* Waits at most timeout_ms for the next whole frame and decodes it. On success *out is the
 * envelope; the caller frees it with tuma__v1__envelope__free_unpacked(*out, NULL) (or the
 * admin twin). Errors: TC_E_TIMEOUT, TC_E_CLOSED, TC_E_TLS, TC_E_DECODE, TC_E_TOO_LARGE. Bytes
 * that arrived after the frame stay buffered for the next call. */
int tc_recv(tc_client *c, int timeout_ms, Tuma__V1__Envelope **out);
int tc_recv_admin(tc_client *c, int timeout_ms, Tuma__V1__AdminEnvelope **out);

/* Waits at most timeout_ms for the peer to close the connection, discarding whatever arrives
 * meanwhile (*discarded, may be NULL, gets the number of bytes). Returns 0 once closed
 * (TC_E_CLOSED or TC_E_TLS seen), TC_E_TIMEOUT if it is still open. */
int tc_wait_closed(tc_client *c, int timeout_ms, size_t *discarded);

/* The last OpenSSL or system error text of this connection ("" if none). Valid until the next
 * call on c. */
const char *tc_last_error(const tc_client *c);

/* The connection's socket and its OpenSSL SSL object (as void *), for tests that drive the
 * connection themselves (non-blocking floods). Only valid while nothing is buffered in c (no
 * partial frame received). Borrowed until tc_close(). */
int tc_fd(const tc_client *c);
void *tc_ssl(const tc_client *c);

/* Closes the connection. graceful: send a TLS close_notify first; otherwise the socket is just
 * closed (a dropped connection). Accepts NULL. */
void tc_close(tc_client *c, int graceful);

#endif
