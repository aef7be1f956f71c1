/* admin_client.c — the blocking TLS 1.3 client for tumad's admin listener (admin_client.h):
 * connect with a timeout, mutual authentication, length-prefixed AdminEnvelope frames. */
#include "admin_client.h"

#include <arpa/inet.h>
#include <assert.h>
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
#include <sys/time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

struct admin_client {
  int fd;
  SSL_CTX *ctx;
  SSL *ssl;
  uint64_t next_correlation_id;
  int broken;   /* a call failed midway; the stream is out of step */
  int answered; /* a reply came: the switch accepted our certificate */
};

const char *admin_client_strerror(int err) {
  switch (err) {
  case ADMIN_CLIENT_OK:
    return "ok";
  case ADMIN_CLIENT_EINVAL:
    return "invalid argument";
  case ADMIN_CLIENT_EFILE:
    return "unusable certificate or key file";
  case ADMIN_CLIENT_ECONNECT:
    return "cannot connect";
  case ADMIN_CLIENT_ETLS:
    return "TLS failure";
  case ADMIN_CLIENT_ETIMEOUT:
    return "timed out";
  case ADMIN_CLIENT_ECLOSED:
    return "connection closed";
  case ADMIN_CLIENT_EPROTO:
    return "protocol error";
  case ADMIN_CLIENT_ENOMEM:
    return "out of memory";
  default:
    return "unknown error";
  }
}

static int ac_fail(admin_client_diag *diag, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Fills diag with the formatted text and returns err. */
static int ac_fail(admin_client_diag *diag, int err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(diag->text, sizeof diag->text, fmt, ap);
  va_end(ap);
  return err;
}

/* OpenSSL's most recent reason into buf, emptying its error queue. */
static const char *ac_ssl_reason(char *buf, size_t cap) {
  unsigned long e = ERR_peek_last_error();
  if (e == 0)
    snprintf(buf, cap, "no reason given");
  else
    ERR_error_string_n(e, buf, cap);
  ERR_clear_error();
  return buf;
}

int admin_client_parse_address(const char *text, char *host, size_t host_cap, char *port,
                               size_t port_cap, admin_client_diag *diag) {
  const char *h = text, *p;
  size_t hlen;
  if (text[0] == '[') {
    const char *close = strchr(text, ']');
    if (close == NULL || close[1] != ':')
      return ac_fail(diag, ADMIN_CLIENT_EINVAL, "'%s' is not HOST:PORT or [IPV6]:PORT", text);
    h = text + 1;
    hlen = (size_t)(close - h);
    p = close + 2;
  } else {
    const char *colon = strrchr(text, ':');
    if (colon == NULL || strchr(text, ':') != colon)
      return ac_fail(diag, ADMIN_CLIENT_EINVAL, "'%s' is not HOST:PORT or [IPV6]:PORT", text);
    hlen = (size_t)(colon - text);
    p = colon + 1;
  }
  size_t plen = strlen(p);
  if (hlen == 0 || plen == 0)
    return ac_fail(diag, ADMIN_CLIENT_EINVAL, "'%s' is not HOST:PORT or [IPV6]:PORT", text);
  for (size_t k = 0; k < plen; k++)
    if (p[k] < '0' || p[k] > '9')
      return ac_fail(diag, ADMIN_CLIENT_EINVAL, "'%s': the port must be a number", text);
  long port_num = strtol(p, NULL, 10);
  if (plen > 5 || port_num < 1 || port_num > 65535)
    return ac_fail(diag, ADMIN_CLIENT_EINVAL, "'%s': the port must be 1-65535", text);
  if (hlen >= host_cap || plen >= port_cap)
    return ac_fail(diag, ADMIN_CLIENT_EINVAL, "'%s' is too long", text);
  memcpy(host, h, hlen);
  host[hlen] = '\0';
  memcpy(port, p, plen + 1);
  return 0;
}

/* Connects one socket to ai within timeout_ms; returns the blocking fd, or -1 with errno. */
static int ac_connect_one(const struct addrinfo *ai, int timeout_ms) {
  int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
  if (fd < 0)
    return -1;
  int err = 0;
  if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
    if (errno != EINPROGRESS) {
      err = errno;
      goto fail;
    }
    struct pollfd pfd = {.fd = fd, .events = POLLOUT};
    int n;
    do
      n = poll(&pfd, 1, timeout_ms);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
      err = errno;
      goto fail;
    }
    if (n == 0) {
      err = ETIMEDOUT;
      goto fail;
    }
    socklen_t len = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
      err = errno;
    if (err != 0)
      goto fail;
  }
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0) {
    err = errno;
    goto fail;
  }
  return fd;
fail:
  close(fd);
  errno = err;
  return -1;
}

/* TCP connection to host:port, trying each address in turn. */
static int ac_tcp_connect(const admin_client_options *o, int timeout_ms, int *fd_out,
                          admin_client_diag *diag) {
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
  struct addrinfo *list = NULL;
  int gai = getaddrinfo(o->host, o->port, &hints, &list);
  if (gai != 0)
    return ac_fail(diag, ADMIN_CLIENT_ECONNECT, "cannot resolve %s: %s", o->host,
                   gai_strerror(gai));
  int fd = -1, err = 0;
  for (const struct addrinfo *ai = list; ai != NULL && fd < 0; ai = ai->ai_next) {
    fd = ac_connect_one(ai, timeout_ms);
    if (fd < 0)
      err = errno;
  }
  freeaddrinfo(list);
  if (fd < 0)
    return ac_fail(diag, err == ETIMEDOUT ? ADMIN_CLIENT_ETIMEOUT : ADMIN_CLIENT_ECONNECT,
                   "cannot connect to %s port %s: %s (is tumad running with its admin listener "
                   "there?)",
                   o->host, o->port, strerror(err));
  int one = 1;
  struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
  if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0 ||
      setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0 ||
      setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0) {
    int rc = ac_fail(diag, ADMIN_CLIENT_ECONNECT, "cannot set socket options: %s", strerror(errno));
    close(fd);
    return rc;
  }
  *fd_out = fd;
  return 0;
}

/* A readable file, or a message naming which one and the option that sets it. */
static int ac_check_file(const char *path, const char *what, const char *option,
                         admin_client_diag *diag) {
  if (path == NULL)
    return ac_fail(diag, ADMIN_CLIENT_EINVAL, "no %s given (%s)", what, option);
  if (access(path, R_OK) != 0)
    return ac_fail(diag, ADMIN_CLIENT_EFILE,
                   "cannot read the %s %s: %s (set it with %s or "
                   "TUMA_PKI_DIR)",
                   what, path, strerror(errno), option);
  return 0;
}

/* The TLS context: TLS 1.3 only, our certificate and key, the scheme CA, peer verification. */
static int ac_tls_context(const admin_client_options *o, SSL_CTX **out, admin_client_diag *diag) {
  char reason[256];
  int rc;
  *out = NULL;
  if ((rc = ac_check_file(o->ca_file, "CA certificate", "--ca", diag)) != 0 ||
      (rc = ac_check_file(o->cert_file, "admin certificate", "--cert", diag)) != 0 ||
      (rc = ac_check_file(o->key_file, "admin key", "--key", diag)) != 0)
    return rc;
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == NULL)
    return ac_fail(diag, ADMIN_CLIENT_ENOMEM, "cannot create a TLS context: %s",
                   ac_ssl_reason(reason, sizeof reason));
  if (!SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION)) {
    rc = ac_fail(diag, ADMIN_CLIENT_ETLS, "cannot require TLS 1.3: %s",
                 ac_ssl_reason(reason, sizeof reason));
  } else if (!SSL_CTX_load_verify_file(ctx, o->ca_file)) {
    rc = ac_fail(diag, ADMIN_CLIENT_EFILE, "cannot load the CA certificate %s: %s", o->ca_file,
                 ac_ssl_reason(reason, sizeof reason));
  } else if (!SSL_CTX_use_certificate_chain_file(ctx, o->cert_file)) {
    rc = ac_fail(diag, ADMIN_CLIENT_EFILE, "cannot load the certificate %s: %s", o->cert_file,
                 ac_ssl_reason(reason, sizeof reason));
  } else if (!SSL_CTX_use_PrivateKey_file(ctx, o->key_file, SSL_FILETYPE_PEM)) {
    rc = ac_fail(diag, ADMIN_CLIENT_EFILE, "cannot load the key %s: %s", o->key_file,
                 ac_ssl_reason(reason, sizeof reason));
  } else if (!SSL_CTX_check_private_key(ctx)) {
    rc = ac_fail(diag, ADMIN_CLIENT_EFILE, "the key %s does not belong to the certificate %s",
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

/* Describes a failed SSL_* call on c: a timeout, a closed connection or a TLS error. */
static int ac_io_fail(admin_client *c, int ret, const char *doing, admin_client_diag *diag) {
  char reason[256];
  int saved = errno;
  int e = SSL_get_error(c->ssl, ret);
  c->broken = 1;
  /* In TLS 1.3 the switch judges our certificate after our side of the handshake is done, so
   * a refusal shows up as a closed connection on the first request. */
  const char *hint = c->answered ? ""
                                 : " (did it refuse our certificate? revoked, expired, from "
                                   "another CA or without role admin: see tumad's log)";
  if (e == SSL_ERROR_ZERO_RETURN)
    return ac_fail(diag, ADMIN_CLIENT_ECLOSED, "the switch closed the connection while %s%s", doing,
                   hint);
  if (e == SSL_ERROR_SYSCALL && (saved == EAGAIN || saved == EWOULDBLOCK)) {
    ERR_clear_error();
    return ac_fail(diag, ADMIN_CLIENT_ETIMEOUT, "timed out %s", doing);
  }
  if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
    if (saved == 0 || saved == EPIPE || saved == ECONNRESET)
      return ac_fail(diag, ADMIN_CLIENT_ECLOSED, "the switch closed the connection while %s%s",
                     doing, hint);
    return ac_fail(diag, ADMIN_CLIENT_ECLOSED, "connection failed while %s: %s", doing,
                   strerror(saved));
  }
  long verify = SSL_get_verify_result(c->ssl);
  if (verify != X509_V_OK) {
    ERR_clear_error();
    return ac_fail(diag, ADMIN_CLIENT_ETLS, "the switch's certificate did not verify: %s",
                   X509_verify_cert_error_string(verify));
  }
  return ac_fail(diag, ADMIN_CLIENT_ETLS,
                 "TLS error while %s: %s (does the switch trust our certificate, and is its "
                 "role admin?)",
                 doing, ac_ssl_reason(reason, sizeof reason));
}

int admin_client_connect(const admin_client_options *o, admin_client **out,
                         admin_client_diag *diag) {
  *out = NULL;
  if (o->host == NULL || o->port == NULL)
    return ac_fail(diag, ADMIN_CLIENT_EINVAL, "no address to connect to");
  int timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 10000;
  admin_client *c = calloc(1, sizeof *c);
  if (c == NULL)
    return ac_fail(diag, ADMIN_CLIENT_ENOMEM, "out of memory");
  c->fd = -1;
  c->next_correlation_id = 1;
  int rc;
  char reason[256];
  if ((rc = ac_tls_context(o, &c->ctx, diag)) != 0 ||
      (rc = ac_tcp_connect(o, timeout_ms, &c->fd, diag)) != 0)
    goto err;
  c->ssl = SSL_new(c->ctx);
  if (c->ssl == NULL || !SSL_set_fd(c->ssl, c->fd)) {
    rc = ac_fail(diag, ADMIN_CLIENT_ENOMEM, "cannot create a TLS session: %s",
                 ac_ssl_reason(reason, sizeof reason));
    goto err;
  }
  const char *name = o->server_name != NULL ? o->server_name : o->host;
  unsigned char addr[16];
  int is_ip = inet_pton(AF_INET, name, addr) == 1 || inet_pton(AF_INET6, name, addr) == 1;
  int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), name)
                 : SSL_set1_host(c->ssl, name) && SSL_set_tlsext_host_name(c->ssl, name);
  if (!ok) {
    rc = ac_fail(diag, ADMIN_CLIENT_EINVAL, "cannot check the switch's name %s: %s", name,
                 ac_ssl_reason(reason, sizeof reason));
    goto err;
  }
  int ret = SSL_connect(c->ssl);
  if (ret != 1) {
    rc = ac_io_fail(c, ret, "connecting", diag);
    goto err;
  }
  *out = c;
  return 0;
err:
  admin_client_close(c);
  return rc;
}

/* Reads exactly len bytes. */
static int ac_read_exact(admin_client *c, unsigned char *buf, size_t len, admin_client_diag *diag) {
  while (len > 0) {
    size_t got = 0;
    int ret = SSL_read_ex(c->ssl, buf, len, &got);
    if (ret != 1)
      return ac_io_fail(c, ret, "waiting for the reply", diag);
    buf += got;
    len -= got;
  }
  return 0;
}

/* Reads one frame and decodes it; *env is the caller's. */
static int ac_read_frame(admin_client *c, Tuma__V1__AdminEnvelope **env, admin_client_diag *diag) {
  *env = NULL;
  unsigned char head[4];
  int rc = ac_read_exact(c, head, sizeof head, diag);
  if (rc != 0)
    return rc;
  uint32_t len = (uint32_t)head[0] << 24 | (uint32_t)head[1] << 16 | (uint32_t)head[2] << 8 |
                 (uint32_t)head[3];
  if (len > ADMIN_CLIENT_MAX_FRAME) {
    c->broken = 1;
    return ac_fail(diag, ADMIN_CLIENT_EPROTO, "the switch sent a frame of %u bytes (limit %d)", len,
                   ADMIN_CLIENT_MAX_FRAME);
  }
  unsigned char *body = malloc(len > 0 ? len : 1);
  if (body == NULL) {
    c->broken = 1;
    return ac_fail(diag, ADMIN_CLIENT_ENOMEM, "out of memory for a frame of %u bytes", len);
  }
  if ((rc = ac_read_exact(c, body, len, diag)) == 0) {
    *env = tuma__v1__admin_envelope__unpack(NULL, len, body);
    if (*env == NULL) {
      c->broken = 1;
      rc = ac_fail(diag, ADMIN_CLIENT_EPROTO,
                   "the switch sent a frame that does not decode as an AdminEnvelope (is "
                   "--connect the admin listener, not the operator one?)");
    }
  }
  free(body);
  return rc;
}

int admin_client_call(admin_client *c, Tuma__V1__AdminEnvelope *req,
                      Tuma__V1__AdminEnvelope **reply, admin_client_diag *diag) {
  *reply = NULL;
  if (c->broken)
    return ac_fail(diag, ADMIN_CLIENT_EPROTO, "the connection failed earlier");
  uint64_t id = c->next_correlation_id++;
  req->correlation_id = id;
  size_t size = tuma__v1__admin_envelope__get_packed_size(req);
  if (size > ADMIN_CLIENT_MAX_FRAME)
    return ac_fail(diag, ADMIN_CLIENT_EINVAL, "request too large (%zu bytes)", size);
  unsigned char *frame = malloc(4 + size);
  if (frame == NULL)
    return ac_fail(diag, ADMIN_CLIENT_ENOMEM, "out of memory");
  frame[0] = (unsigned char)(size >> 24);
  frame[1] = (unsigned char)(size >> 16);
  frame[2] = (unsigned char)(size >> 8);
  frame[3] = (unsigned char)size;
  size_t packed = tuma__v1__admin_envelope__pack(req, frame + 4);
  size_t written = 0;
  int ret = packed == size ? SSL_write_ex(c->ssl, frame, 4 + size, &written) : -2;
  free(frame);
  if (ret == -2)
    return ac_fail(diag, ADMIN_CLIENT_EINVAL, "cannot encode the request");
  if (ret != 1)
    return ac_io_fail(c, ret, "sending the request", diag);
  for (;;) {
    Tuma__V1__AdminEnvelope *env = NULL;
    int rc = ac_read_frame(c, &env, diag);
    if (rc != 0)
      return rc;
    assert(env != NULL);
    c->answered = 1;
    int connection_error =
        env->correlation_id == 0 && env->body_case == TUMA__V1__ADMIN_ENVELOPE__BODY_ADMIN_RESULT;
    if (env->correlation_id == id || connection_error) {
      *reply = env;
      return 0;
    }
    tuma__v1__admin_envelope__free_unpacked(env, NULL);
  }
}

void admin_client_close(admin_client *c) {
  if (c == NULL)
    return;
  if (c->ssl != NULL) {
    if (!c->broken && SSL_is_init_finished(c->ssl))
      SSL_shutdown(c->ssl);
    SSL_free(c->ssl);
  }
  if (c->fd >= 0)
    close(c->fd);
  SSL_CTX_free(c->ctx);
  ERR_clear_error();
  free(c);
}
