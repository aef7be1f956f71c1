/* wire.c — the `tuma` commands' TLS 1.3 connection to tumad (wire.h): connect with a timeout,
 * mutual authentication, length-prefixed frames. The socket is non-blocking; every wait is a
 * poll() bounded by a deadline on the monotonic clock. */
#include "wire.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "frame.h"

enum { WIRE_DEFAULT_TIMEOUT_MS = 10000, WIRE_READ_CHUNK = 16384 };

struct wire_conn {
  int fd;
  SSL_CTX *ctx;
  SSL *ssl;
  int timeout_ms;
  int broken;   /* a call failed midway; the stream is out of step */
  int answered; /* a frame came: the switch accepted our certificate */
  char role[32];
  uint8_t *buf; /* received bytes: buf[0..len); the first `taken` were handed out last call */
  size_t len, cap, taken;
};

const char *wire_strerror(int err) {
  switch (err) {
  case WIRE_OK:
    return "ok";
  case WIRE_EINVAL:
    return "invalid argument";
  case WIRE_EFILE:
    return "unusable certificate or key file";
  case WIRE_ECONNECT:
    return "cannot connect";
  case WIRE_ETLS:
    return "TLS failure";
  case WIRE_ETIMEOUT:
    return "timed out";
  case WIRE_ECLOSED:
    return "connection closed";
  case WIRE_EPROTO:
    return "protocol error";
  case WIRE_ENOMEM:
    return "out of memory";
  case WIRE_EWOKEN:
    return "interrupted";
  default:
    return "unknown error";
  }
}

int wire_fail(wire_diag *diag, int err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(diag->text, sizeof diag->text, fmt, ap);
  va_end(ap);
  return err;
}

/* OpenSSL's most recent reason into buf, emptying its error queue. */
static const char *wire_ssl_reason(char *buf, size_t cap) {
  unsigned long e = ERR_peek_last_error();
  if (e == 0)
    snprintf(buf, cap, "no reason given");
  else
    ERR_error_string_n(e, buf, cap);
  ERR_clear_error();
  return buf;
}

static int64_t wire_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The deadline timeout_ms from now; -1 (none) for a negative timeout. */
static int64_t wire_deadline(int timeout_ms) {
  return timeout_ms < 0 ? -1 : wire_now_ms() + timeout_ms;
}

/* Waits until fd has events, the deadline passes or wake_fd (if >= 0) is readable. 0 when fd is
 * ready; WIRE_ETIMEOUT, WIRE_EWOKEN, or -1 with errno for a failed poll. */
static int wire_wait(int fd, short events, int64_t deadline, int wake_fd) {
  struct pollfd pfd[2] = {{.fd = fd, .events = events}, {.fd = wake_fd, .events = POLLIN}};
  nfds_t n = wake_fd >= 0 ? 2 : 1;
  for (;;) {
    int timeout = -1;
    if (deadline >= 0) {
      int64_t left = deadline - wire_now_ms();
      timeout = left <= 0 ? 0 : left > 3600000 ? 3600000 : (int)left;
    }
    int got = poll(pfd, n, timeout);
    if (got < 0 && errno == EINTR)
      continue;
    if (got < 0)
      return -1;
    if (n == 2 && (pfd[1].revents & (POLLIN | POLLHUP | POLLERR)))
      return WIRE_EWOKEN;
    if (got > 0)
      return 0;
    if (deadline >= 0 && wire_now_ms() >= deadline)
      return WIRE_ETIMEOUT;
  }
}

int wire_parse_address(const char *text, char *host, size_t host_cap, char *port, size_t port_cap,
                       wire_diag *diag) {
  const char *h = text, *p;
  size_t hlen;
  if (text[0] == '[') {
    const char *close = strchr(text, ']');
    if (close == NULL || close[1] != ':')
      return wire_fail(diag, WIRE_EINVAL, "'%s' is not HOST:PORT or [IPV6]:PORT", text);
    h = text + 1;
    hlen = (size_t)(close - h);
    p = close + 2;
  } else {
    const char *colon = strrchr(text, ':');
    if (colon == NULL || strchr(text, ':') != colon)
      return wire_fail(diag, WIRE_EINVAL, "'%s' is not HOST:PORT or [IPV6]:PORT", text);
    hlen = (size_t)(colon - text);
    p = colon + 1;
  }
  size_t plen = strlen(p);
  if (hlen == 0 || plen == 0)
    return wire_fail(diag, WIRE_EINVAL, "'%s' is not HOST:PORT or [IPV6]:PORT", text);
  for (size_t k = 0; k < plen; k++)
    if (p[k] < '0' || p[k] > '9')
      return wire_fail(diag, WIRE_EINVAL, "'%s': the port must be a number", text);
  long port_num = strtol(p, NULL, 10);
  if (plen > 5 || port_num < 1 || port_num > 65535)
    return wire_fail(diag, WIRE_EINVAL, "'%s': the port must be 1-65535", text);
  if (hlen >= host_cap || plen >= port_cap)
    return wire_fail(diag, WIRE_EINVAL, "'%s' is too long", text);
  memcpy(host, h, hlen);
  host[hlen] = '\0';
  memcpy(port, p, plen + 1);
  return 0;
}

/* Connects one non-blocking socket to ai by the deadline; returns the fd (still non-blocking),
 * or -1 with errno. */
static int wire_connect_one(const struct addrinfo *ai, int64_t deadline) {
  int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
  if (fd < 0)
    return -1;
  int err = 0;
  if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
    if (errno != EINPROGRESS) {
      err = errno;
      goto fail;
    }
    int w = wire_wait(fd, POLLOUT, deadline, -1);
    if (w != 0) {
      err = w == WIRE_ETIMEOUT ? ETIMEDOUT : errno;
      goto fail;
    }
    socklen_t len = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
      err = errno;
    if (err != 0)
      goto fail;
  }
  return fd;
fail:
  close(fd);
  errno = err;
  return -1;
}

/* TCP connection to host:port, trying each address in turn. */
static int wire_tcp_connect(const wire_options *o, int64_t deadline, int *fd_out, wire_diag *diag) {
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
  struct addrinfo *list = NULL;
  int gai = getaddrinfo(o->host, o->port, &hints, &list);
  if (gai != 0)
    return wire_fail(diag, WIRE_ECONNECT, "cannot resolve %s: %s", o->host, gai_strerror(gai));
  int fd = -1, err = 0;
  for (const struct addrinfo *ai = list; ai != NULL && fd < 0; ai = ai->ai_next) {
    fd = wire_connect_one(ai, deadline);
    if (fd < 0)
      err = errno;
  }
  freeaddrinfo(list);
  if (fd < 0)
    return wire_fail(diag, err == ETIMEDOUT ? WIRE_ETIMEOUT : WIRE_ECONNECT,
                     "cannot connect to %s port %s: %s (is tumad running with its %s listener "
                     "there?)",
                     o->host, o->port, strerror(err), o->role);
  int one = 1;
  if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0) {
    int rc = wire_fail(diag, WIRE_ECONNECT, "cannot set TCP_NODELAY: %s", strerror(errno));
    close(fd);
    return rc;
  }
  *fd_out = fd;
  return 0;
}

/* A readable file, or a message naming which one and the options that set it. */
static int wire_check_file(const wire_options *o, const char *path, const char *what,
                           const char *option, wire_diag *diag) {
  if (path == NULL)
    return wire_fail(diag, WIRE_EINVAL, "no %s given (%s)", what, option);
  if (access(path, R_OK) != 0)
    return wire_fail(diag, WIRE_EFILE, "cannot read the %s %s: %s (set it with %s or %s)", what,
                     path, strerror(errno), option, o->files_hint);
  return 0;
}

/* The TLS context: TLS 1.3 only, our certificate and key, the scheme CA, peer verification. */
static int wire_tls_context(const wire_options *o, SSL_CTX **out, wire_diag *diag) {
  char reason[256], cert_what[64], key_what[64];
  int rc;
  *out = NULL;
  snprintf(cert_what, sizeof cert_what, "%s certificate", o->role);
  snprintf(key_what, sizeof key_what, "%s key", o->role);
  if ((rc = wire_check_file(o, o->ca_file, "CA certificate", "--ca", diag)) != 0 ||
      (rc = wire_check_file(o, o->cert_file, cert_what, "--cert", diag)) != 0 ||
      (rc = wire_check_file(o, o->key_file, key_what, "--key", diag)) != 0)
    return rc;
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == NULL)
    return wire_fail(diag, WIRE_ENOMEM, "cannot create a TLS context: %s",
                     wire_ssl_reason(reason, sizeof reason));
  if (!SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION)) {
    rc = wire_fail(diag, WIRE_ETLS, "cannot require TLS 1.3: %s",
                   wire_ssl_reason(reason, sizeof reason));
  } else if (!SSL_CTX_load_verify_file(ctx, o->ca_file)) {
    rc = wire_fail(diag, WIRE_EFILE, "cannot load the CA certificate %s: %s", o->ca_file,
                   wire_ssl_reason(reason, sizeof reason));
  } else if (!SSL_CTX_use_certificate_chain_file(ctx, o->cert_file)) {
    rc = wire_fail(diag, WIRE_EFILE, "cannot load the certificate %s: %s", o->cert_file,
                   wire_ssl_reason(reason, sizeof reason));
  } else if (!SSL_CTX_use_PrivateKey_file(ctx, o->key_file, SSL_FILETYPE_PEM)) {
    rc = wire_fail(diag, WIRE_EFILE, "cannot load the key %s: %s", o->key_file,
                   wire_ssl_reason(reason, sizeof reason));
  } else if (!SSL_CTX_check_private_key(ctx)) {
    rc = wire_fail(diag, WIRE_EFILE, "the key %s does not belong to the certificate %s",
                   o->key_file, o->cert_file);
    ERR_clear_error();
  }
  if (rc != 0) {
    SSL_CTX_free(ctx);
    return rc;
  }
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
  *out = ctx;
  return 0;
}

/* Describes a failed SSL_* call on c (ret, its SSL_get_error() e): a closed connection or a
 * TLS error. Marks the connection broken. */
static int wire_io_fail(wire_conn *c, int e, const char *doing, wire_diag *diag) {
  char reason[256], hint[192] = "";
  int saved = errno;
  c->broken = 1;
  /* In TLS 1.3 the switch judges our certificate after our side of the handshake is done, so
   * a refusal shows up as a closed connection on the first request. */
  if (!c->answered)
    snprintf(hint, sizeof hint,
             " (did it refuse our certificate? revoked, expired, from another CA or without "
             "role %s: see tumad's log)",
             c->role);
  if (e == SSL_ERROR_ZERO_RETURN)
    return wire_fail(diag, WIRE_ECLOSED, "the switch closed the connection while %s%s", doing,
                     hint);
#ifdef SSL_R_UNEXPECTED_EOF_WHILE_READING
  /* OpenSSL 3 reports a peer that closed without close_notify as an error of its own. */
  if (e == SSL_ERROR_SSL &&
      ERR_GET_REASON(ERR_peek_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
    ERR_clear_error();
    return wire_fail(diag, WIRE_ECLOSED, "the switch closed the connection while %s%s", doing,
                     hint);
  }
#endif
  if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
    if (saved == 0 || saved == EPIPE || saved == ECONNRESET)
      return wire_fail(diag, WIRE_ECLOSED, "the switch closed the connection while %s%s", doing,
                       hint);
    return wire_fail(diag, WIRE_ECLOSED, "connection failed while %s: %s", doing, strerror(saved));
  }
  long verify = SSL_get_verify_result(c->ssl);
  if (verify != X509_V_OK) {
    ERR_clear_error();
    return wire_fail(diag, WIRE_ETLS, "the switch's certificate did not verify: %s",
                     X509_verify_cert_error_string(verify));
  }
  return wire_fail(diag, WIRE_ETLS,
                   "TLS error while %s: %s (does the switch trust our certificate, and is its "
                   "role %s?)",
                   doing, wire_ssl_reason(reason, sizeof reason), c->role);
}

/* After an SSL call returned e (SSL_get_error): waits for the socket as it asks, by the
 * deadline. 0 to retry the call; otherwise the failure (diag filled). */
static int wire_retry(wire_conn *c, int e, int64_t deadline, int wake_fd, const char *doing,
                      wire_diag *diag) {
  short events;
  if (e == SSL_ERROR_WANT_READ)
    events = POLLIN;
  else if (e == SSL_ERROR_WANT_WRITE)
    events = POLLOUT;
  else
    return wire_io_fail(c, e, doing, diag);
  int w = wire_wait(c->fd, events, deadline, wake_fd);
  if (w == WIRE_ETIMEOUT)
    return wire_fail(diag, WIRE_ETIMEOUT, "timed out %s", doing);
  if (w == WIRE_EWOKEN)
    return wire_fail(diag, WIRE_EWOKEN, "interrupted while %s", doing);
  if (w != 0) {
    c->broken = 1;
    return wire_fail(diag, WIRE_ECLOSED, "poll failed while %s: %s", doing, strerror(errno));
  }
  return 0;
}

int wire_connect(const wire_options *o, wire_conn **out, wire_diag *diag) {
  *out = NULL;
  if (o->host == NULL || o->port == NULL)
    return wire_fail(diag, WIRE_EINVAL, "no address to connect to");
  int timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : WIRE_DEFAULT_TIMEOUT_MS;
  int64_t deadline = wire_deadline(timeout_ms);
  wire_conn *c = calloc(1, sizeof *c);
  if (c == NULL)
    return wire_fail(diag, WIRE_ENOMEM, "out of memory");
  c->fd = -1;
  c->timeout_ms = timeout_ms;
  snprintf(c->role, sizeof c->role, "%s", o->role != NULL ? o->role : "operator");
  int rc;
  char reason[256];
  if ((rc = wire_tls_context(o, &c->ctx, diag)) != 0 ||
      (rc = wire_tcp_connect(o, deadline, &c->fd, diag)) != 0)
    goto err;
  c->ssl = SSL_new(c->ctx);
  if (c->ssl == NULL || !SSL_set_fd(c->ssl, c->fd)) {
    rc = wire_fail(diag, WIRE_ENOMEM, "cannot create a TLS session: %s",
                   wire_ssl_reason(reason, sizeof reason));
    goto err;
  }
  const char *name = o->server_name != NULL ? o->server_name : o->host;
  unsigned char addr[16];
  int is_ip = inet_pton(AF_INET, name, addr) == 1 || inet_pton(AF_INET6, name, addr) == 1;
  int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), name)
                 : SSL_set1_host(c->ssl, name) && SSL_set_tlsext_host_name(c->ssl, name);
  if (!ok) {
    rc = wire_fail(diag, WIRE_EINVAL, "cannot check the switch's name %s: %s", name,
                   wire_ssl_reason(reason, sizeof reason));
    goto err;
  }
  for (;;) {
    int ret = SSL_connect(c->ssl);
    if (ret == 1)
      break;
    if ((rc = wire_retry(c, SSL_get_error(c->ssl, ret), deadline, -1, "connecting", diag)) != 0)
      goto err;
  }
  *out = c;
  return 0;
err:
  c->broken = 1;
  wire_close(c);
  return rc;
}

int wire_send(wire_conn *c, const uint8_t *frame, size_t len, wire_diag *diag) {
  if (c->broken)
    return wire_fail(diag, WIRE_EPROTO, "the connection failed earlier");
  int64_t deadline = wire_deadline(c->timeout_ms);
  for (;;) {
    size_t written = 0;
    int ret = SSL_write_ex(c->ssl, frame, len, &written);
    if (ret == 1)
      return 0;
    int rc = wire_retry(c, SSL_get_error(c->ssl, ret), deadline, -1, "sending a request", diag);
    if (rc != 0) {
      c->broken = 1; /* part of a frame may be out */
      return rc;
    }
  }
}

/* Makes room for at least need bytes in c->buf. */
static int wire_reserve(wire_conn *c, size_t need, wire_diag *diag) {
  if (need <= c->cap)
    return 0;
  size_t cap = c->cap > 0 ? c->cap : WIRE_READ_CHUNK;
  while (cap < need)
    cap *= 2;
  uint8_t *nb = realloc(c->buf, cap);
  if (nb == NULL) {
    c->broken = 1;
    return wire_fail(diag, WIRE_ENOMEM, "out of memory for a frame of %zu bytes", need);
  }
  c->buf = nb;
  c->cap = cap;
  return 0;
}

int wire_recv(wire_conn *c, int timeout_ms, int wake_fd, const uint8_t **body, size_t *len,
              wire_diag *diag) {
  *body = NULL;
  *len = 0;
  if (c->broken)
    return wire_fail(diag, WIRE_EPROTO, "the connection failed earlier");
  if (c->taken > 0) { /* the frame handed out last time is done with */
    memmove(c->buf, c->buf + c->taken, c->len - c->taken);
    c->len -= c->taken;
    c->taken = 0;
  }
  int64_t deadline = wire_deadline(timeout_ms);
  for (;;) {
    size_t off = 0, blen = 0, consumed = 0;
    int st = proto_frame_parse(c->buf, c->len, WIRE_MAX_FRAME, &off, &blen, &consumed);
    if (st == PROTO_FRAME_OK) {
      c->answered = 1;
      c->taken = consumed;
      *body = c->buf + off;
      *len = blen;
      return 0;
    }
    if (st == PROTO_FRAME_TOO_LARGE || st == PROTO_FRAME_EMPTY) {
      c->broken = 1;
      if (st == PROTO_FRAME_EMPTY)
        return wire_fail(diag, WIRE_EPROTO, "the switch sent an empty frame");
      return wire_fail(diag, WIRE_EPROTO, "the switch sent a frame of %zu bytes (limit %d)", blen,
                       WIRE_MAX_FRAME);
    }
    size_t want = c->len + WIRE_READ_CHUNK;
    if (blen > 0 && PROTO_FRAME_HEADER_BYTES + blen > want)
      want = PROTO_FRAME_HEADER_BYTES + blen;
    int rc = wire_reserve(c, want, diag);
    if (rc != 0)
      return rc;
    size_t got = 0;
    int ret = SSL_read_ex(c->ssl, c->buf + c->len, c->cap - c->len, &got);
    if (ret == 1) {
      c->len += got;
      continue;
    }
    if ((rc = wire_retry(c, SSL_get_error(c->ssl, ret), deadline, wake_fd,
                         "waiting for its next message", diag)) != 0)
      return rc;
  }
}

void wire_close(wire_conn *c) {
  if (c == NULL)
    return;
  if (c->ssl != NULL) {
    if (!c->broken && SSL_is_init_finished(c->ssl))
      SSL_shutdown(c->ssl); /* non-blocking: sends close_notify if it can, waits for nothing */
    SSL_free(c->ssl);
  }
  if (c->fd >= 0)
    close(c->fd);
  SSL_CTX_free(c->ctx);
  ERR_clear_error();
  free(c->buf);
  free(c);
}
