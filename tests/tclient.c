/* tclient.c — the integration tests' blocking TLS 1.3 client (tclient.h). */
#include "tclient.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "frame.h"

struct tc_client {
  int fd;
  SSL_CTX *ctx;
  SSL *ssl;
  uint8_t *buf; /* received bytes not yet returned as frames */
  size_t len, cap;
  char err[256];
};

const char *tc_strerror(int err) {
  switch (err) {
  case TC_OK:
    return "ok";
  case TC_E_INVAL:
    return "invalid argument";
  case TC_E_NOMEM:
    return "out of memory";
  case TC_E_CONNECT:
    return "connect failed";
  case TC_E_TLS:
    return "TLS error";
  case TC_E_TIMEOUT:
    return "timed out";
  case TC_E_CLOSED:
    return "connection closed by the peer";
  case TC_E_DECODE:
    return "frame does not decode";
  case TC_E_TOO_LARGE:
    return "frame too large";
  default:
    return "unknown error";
  }
}

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void set_timeout(int fd, int opt, int64_t ms) {
  if (ms < 1)
    ms = 1;
  struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, opt, &tv, sizeof tv);
}

/* Takes OpenSSL's error queue (or errno) into c->err. */
static void note_error(tc_client *c, const char *what) {
  unsigned long e = ERR_peek_last_error();
  char ossl[200] = "";
  if (e)
    ERR_error_string_n(e, ossl, sizeof ossl);
  ERR_clear_error();
  snprintf(c->err, sizeof c->err, "%s: %s", what, ossl[0] ? ossl : strerror(errno));
}

static void free_client(tc_client *c) {
  if (!c)
    return;
  SSL_free(c->ssl);
  SSL_CTX_free(c->ctx);
  if (c->fd >= 0)
    close(c->fd);
  free(c->buf);
  free(c);
}

int tc_connect(uint16_t port, const char *ca_file, const char *cert_file, const char *key_file,
               int timeout_ms, tc_client **out, char *err, size_t errlen) {
  signal(SIGPIPE, SIG_IGN); /* a write to a peer that closed must fail, not kill the test */
  *out = NULL;
  if (err && errlen)
    err[0] = 0;
  if (!ca_file || (!cert_file) != (!key_file))
    return TC_E_INVAL;
  tc_client *c = calloc(1, sizeof *c);
  if (!c)
    return TC_E_NOMEM;
  c->fd = -1;
  int rc = TC_E_TLS;
  c->ctx = SSL_CTX_new(TLS_client_method());
  if (!c->ctx)
    goto fail;
  SSL_CTX_set_min_proto_version(c->ctx, TLS1_3_VERSION);
  SSL_CTX_set_max_proto_version(c->ctx, TLS1_3_VERSION);
  if (SSL_CTX_load_verify_locations(c->ctx, ca_file, NULL) != 1) {
    note_error(c, "load CA");
    rc = TC_E_INVAL;
    goto fail;
  }
  SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
  if (cert_file) {
    if (SSL_CTX_use_certificate_chain_file(c->ctx, cert_file) != 1 ||
        SSL_CTX_use_PrivateKey_file(c->ctx, key_file, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(c->ctx) != 1) {
      note_error(c, "load client certificate");
      rc = TC_E_INVAL;
      goto fail;
    }
  }
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (c->fd < 0) {
    note_error(c, "socket");
    rc = TC_E_CONNECT;
    goto fail;
  }
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  set_timeout(c->fd, SO_RCVTIMEO, timeout_ms);
  set_timeout(c->fd, SO_SNDTIMEO, timeout_ms);
  struct sockaddr_in sin;
  memset(&sin, 0, sizeof sin);
  sin.sin_family = AF_INET;
  sin.sin_port = htons(port);
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(c->fd, (struct sockaddr *)&sin, sizeof sin) != 0) {
    note_error(c, "connect");
    rc = errno == EINPROGRESS || errno == EAGAIN ? TC_E_TIMEOUT : TC_E_CONNECT;
    goto fail;
  }
  c->ssl = SSL_new(c->ctx);
  if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1)
    goto fail;
  X509_VERIFY_PARAM *param = SSL_get0_param(c->ssl);
  if (X509_VERIFY_PARAM_set1_ip_asc(param, "127.0.0.1") != 1)
    goto fail;
  int r = SSL_connect(c->ssl);
  if (r != 1) {
    int e = SSL_get_error(c->ssl, r);
    note_error(c, "TLS handshake");
    rc = (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) ? TC_E_TIMEOUT : TC_E_TLS;
    goto fail;
  }
  if (SSL_version(c->ssl) != TLS1_3_VERSION) {
    snprintf(c->err, sizeof c->err, "negotiated %s, not TLS 1.3", SSL_get_version(c->ssl));
    goto fail;
  }
  *out = c;
  return TC_OK;
fail:
  if (err && errlen)
    snprintf(err, errlen, "%s", c->err[0] ? c->err : tc_strerror(rc));
  free_client(c);
  return rc;
}

/* Writes all of buf within TC_WRITE_TIMEOUT_MS. */
static int write_all(tc_client *c, const uint8_t *buf, size_t len) {
  int64_t deadline = now_ms() + TC_WRITE_TIMEOUT_MS;
  while (len > 0) {
    set_timeout(c->fd, SO_SNDTIMEO, deadline - now_ms());
    int n = SSL_write(c->ssl, buf, len > 65536 ? 65536 : (int)len);
    if (n > 0) {
      buf += n;
      len -= (size_t)n;
      continue;
    }
    int e = SSL_get_error(c->ssl, n);
    note_error(c, "write");
    if ((e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) && now_ms() < deadline)
      continue;
    if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
      return TC_E_TIMEOUT;
    return e == SSL_ERROR_SSL ? TC_E_TLS : TC_E_CLOSED;
  }
  return TC_OK;
}

int tc_write_raw(tc_client *c, const void *buf, size_t len) {
  if (!c || (!buf && len))
    return TC_E_INVAL;
  return write_all(c, buf, len);
}

int tc_send(tc_client *c, const Tuma__V1__Envelope *env) {
  if (!c || !env)
    return TC_E_INVAL;
  size_t size = proto_envelope_frame_size(env), len = 0;
  uint8_t *buf = malloc(size ? size : 1);
  if (!buf)
    return TC_E_NOMEM;
  int rc = proto_envelope_encode(env, buf, size, &len) == PROTO_FRAME_OK ? write_all(c, buf, len)
                                                                         : TC_E_INVAL;
  free(buf);
  return rc;
}

int tc_send_admin(tc_client *c, const Tuma__V1__AdminEnvelope *env) {
  if (!c || !env)
    return TC_E_INVAL;
  size_t size = proto_admin_envelope_frame_size(env), len = 0;
  uint8_t *buf = malloc(size ? size : 1);
  if (!buf)
    return TC_E_NOMEM;
  int rc = proto_admin_envelope_encode(env, buf, size, &len) == PROTO_FRAME_OK
               ? write_all(c, buf, len)
               : TC_E_INVAL;
  free(buf);
  return rc;
}

/* Reads whatever arrives before deadline (at least one byte) into c->buf. */
static int read_some(tc_client *c, int64_t deadline) {
  for (;;) {
    int64_t left = deadline - now_ms();
    if (SSL_pending(c->ssl) == 0) {
      if (left <= 0)
        return TC_E_TIMEOUT;
      struct pollfd pfd = {c->fd, POLLIN, 0};
      int pr = poll(&pfd, 1, (int)left);
      if (pr == 0)
        return TC_E_TIMEOUT;
      if (pr < 0 && errno != EINTR) {
        note_error(c, "poll");
        return TC_E_CLOSED;
      }
      if (pr < 0)
        continue;
    }
    if (c->cap - c->len < 16384) {
      size_t ncap = c->cap ? c->cap * 2 : 65536;
      uint8_t *nb = realloc(c->buf, ncap);
      if (!nb)
        return TC_E_NOMEM;
      c->buf = nb;
      c->cap = ncap;
    }
    /* The rest of a record that started arriving must come within the deadline too. */
    set_timeout(c->fd, SO_RCVTIMEO, left > 0 ? left : 1);
    int n = SSL_read(c->ssl, c->buf + c->len, (int)(c->cap - c->len));
    if (n > 0) {
      c->len += (size_t)n;
      return TC_OK;
    }
    int e = SSL_get_error(c->ssl, n);
    switch (e) {
    case SSL_ERROR_ZERO_RETURN:
      snprintf(c->err, sizeof c->err, "close_notify");
      return TC_E_CLOSED;
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE: /* a non-application record, or SO_RCVTIMEO: go round */
      if (now_ms() >= deadline)
        return TC_E_TIMEOUT;
      continue;
    case SSL_ERROR_SYSCALL:
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
        if (now_ms() >= deadline)
          return TC_E_TIMEOUT;
        continue;
      }
      note_error(c, "read");
      return TC_E_CLOSED; /* EOF or reset */
    default:
      note_error(c, "read");
      return TC_E_TLS; /* e.g. an alert: certificate required, unknown CA */
    }
  }
}

/* The next whole frame body: buf[*off .. *off + *len), to be dropped with consume(). */
static int next_frame(tc_client *c, int timeout_ms, size_t *off, size_t *len, size_t *consumed) {
  int64_t deadline = now_ms() + timeout_ms;
  for (;;) {
    int st = proto_frame_parse(c->buf, c->len, TC_MAX_FRAME, off, len, consumed);
    if (st == PROTO_FRAME_OK)
      return TC_OK;
    if (st == PROTO_FRAME_TOO_LARGE)
      return TC_E_TOO_LARGE;
    if (st == PROTO_FRAME_EMPTY)
      return TC_E_DECODE;
    int rc = read_some(c, deadline);
    if (rc)
      return rc;
  }
}

static void consume(tc_client *c, size_t n) {
  memmove(c->buf, c->buf + n, c->len - n);
  c->len -= n;
}

int tc_recv(tc_client *c, int timeout_ms, Tuma__V1__Envelope **out) {
  if (!c || !out)
    return TC_E_INVAL;
  *out = NULL;
  size_t off, len, consumed;
  int rc = next_frame(c, timeout_ms, &off, &len, &consumed);
  if (rc)
    return rc;
  *out = proto_envelope_decode(c->buf + off, len);
  consume(c, consumed);
  return *out ? TC_OK : TC_E_DECODE;
}

int tc_recv_admin(tc_client *c, int timeout_ms, Tuma__V1__AdminEnvelope **out) {
  if (!c || !out)
    return TC_E_INVAL;
  *out = NULL;
  size_t off, len, consumed;
  int rc = next_frame(c, timeout_ms, &off, &len, &consumed);
  if (rc)
    return rc;
  *out = proto_admin_envelope_decode(c->buf + off, len);
  consume(c, consumed);
  return *out ? TC_OK : TC_E_DECODE;
}

int tc_wait_closed(tc_client *c, int timeout_ms, size_t *discarded) {
  if (!c)
    return TC_E_INVAL;
  size_t total = 0;
  int64_t deadline = now_ms() + timeout_ms;
  int rc;
  for (;;) {
    total += c->len;
    c->len = 0;
    rc = read_some(c, deadline);
    if (rc != TC_OK)
      break;
  }
  total += c->len;
  c->len = 0;
  if (discarded)
    *discarded = total;
  return rc == TC_E_CLOSED || rc == TC_E_TLS ? TC_OK : rc;
}

const char *tc_last_error(const tc_client *c) {
  return c ? c->err : "";
}

void tc_close(tc_client *c, int graceful) {
  if (!c)
    return;
  if (graceful && c->ssl) {
    set_timeout(c->fd, SO_SNDTIMEO, 200);
    SSL_shutdown(c->ssl); /* sends close_notify; does not wait for the peer's */
  } else if (c->ssl) {
    SSL_set_quiet_shutdown(c->ssl, 1);
  }
  free_client(c);
}

int tc_fd(const tc_client *c) {
  return c ? c->fd : -1;
}

void *tc_ssl(const tc_client *c) {
  return c ? c->ssl : NULL;
}
