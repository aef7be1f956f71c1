/* server.c — tumad's connections: the two mTLS listeners (operators, admin), authorisation by
 * certificate, framing, per-connection limits and backpressure, and the participants in
 * memory with their live connections.
 *
 * A connection reads frames (proto/frame.h) and hands each decoded envelope to the operator
 * or admin dispatcher. Every envelope counts as one request in flight until the handler calls
 * sw_conn_request_done(); at max_in_flight the connection stops reading (the peer's TCP window
 * fills: backpressure, never unbounded memory). A partial frame older than read_timeout_ms
 * closes the connection. Anything that does not frame or decode gets an Error frame and the
 * connection is closed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "daemon.h"
#include "errors.h"
#include "frame.h"

#define OUTPUT_HIGH_WATER (8u << 20) /* a payee with this much unsent is congested */
/* A connection with this much unsent is read no further until its output drains: a peer that
 * pipelines requests and never reads the replies cannot make them pile up without bound. */
#define OUTPUT_READ_PAUSE (1u << 20)

static void operator_accept_cb(struct evconnlistener *lst, evutil_socket_t fd, struct sockaddr *sa,
                               int salen, void *arg);
static void admin_accept_cb(struct evconnlistener *lst, evutil_socket_t fd, struct sockaddr *sa,
                            int salen, void *arg);
static void read_cb(struct bufferevent *bev, void *arg);
static void write_cb(struct bufferevent *bev, void *arg);
static void event_cb(struct bufferevent *bev, short what, void *arg);
static void partial_timeout_cb(evutil_socket_t fd, short what, void *arg);

uint64_t sw_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---------------------------------------------------------------- TLS */

static void log_openssl_errors(sw_switch *sw, const char *event, const char *what) {
  unsigned long e;
  char buf[256];
  int any = 0;
  while ((e = ERR_get_error()) != 0) {
    ERR_error_string_n(e, buf, sizeof buf);
    sw_log(&sw->log, SW_LOG_ERROR, event, "what=\"%s\" openssl=\"%s\"", what, buf);
    any = 1;
  }
  if (!any)
    sw_log(&sw->log, SW_LOG_ERROR, event, "what=\"%s\"", what);
}

static SSL_CTX *tls_context(sw_switch *sw) {
  const sw_config *cfg = sw->cfg;
  SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
  if (!ctx)
    return NULL;
  SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
  if (SSL_CTX_use_certificate_chain_file(ctx, cfg->tls_cert) != 1) {
    log_openssl_errors(sw, "tls.config", cfg->tls_cert);
    goto err;
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, cfg->tls_key, SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(ctx) != 1) {
    log_openssl_errors(sw, "tls.config", cfg->tls_key);
    goto err;
  }
  if (SSL_CTX_load_verify_locations(ctx, cfg->tls_ca, NULL) != 1) {
    log_openssl_errors(sw, "tls.config", cfg->tls_ca);
    goto err;
  }
  if (cfg->tls_crl) {
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    X509_LOOKUP *lookup = X509_STORE_add_lookup(store, X509_LOOKUP_file());
    if (!lookup || X509_load_crl_file(lookup, cfg->tls_crl, X509_FILETYPE_PEM) <= 0) {
      log_openssl_errors(sw, "tls.config", cfg->tls_crl);
      goto err;
    }
    X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);
  }
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
  return ctx;
err:
  SSL_CTX_free(ctx);
  return NULL;
}

/* ---------------------------------------------------------------- listeners */

void sw_format_addr(const sw_config_addr *a, char *out, size_t outlen) {
  snprintf(out, outlen, strchr(a->host, ':') ? "[%s]:%u" : "%s:%u", a->host, a->port);
}

static struct evconnlistener *listen_on(sw_switch *sw, const sw_config_addr *addr, int admin) {
  char hostport[300];
  sw_format_addr(addr, hostport, sizeof hostport);
  struct sockaddr_storage ss;
  int len = sizeof ss;
  if (evutil_parse_sockaddr_port(hostport, (struct sockaddr *)&ss, &len)) {
    sw_log(&sw->log, SW_LOG_ERROR, "listen.failed", "addr=%s reason=\"bad address\"", hostport);
    return NULL;
  }
  struct evconnlistener *lst =
      evconnlistener_new_bind(sw->base, admin ? admin_accept_cb : operator_accept_cb, sw,
                              LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
                              512, (struct sockaddr *)&ss, len);
  if (!lst) {
    sw_log(&sw->log, SW_LOG_ERROR, "listen.failed", "addr=%s reason=\"%s\"", hostport,
           strerror(errno));
    return NULL;
  }
  sw_log(&sw->log, SW_LOG_INFO, "listen", "addr=%s service=%s", hostport,
         admin ? "admin" : "operator");
  return lst;
}

int sw_server_start(sw_switch *sw) {
  sw->tls = tls_context(sw);
  if (!sw->tls)
    return -1;
  sw->operator_listener = listen_on(sw, &sw->cfg->listen, 0);
  if (!sw->operator_listener)
    return -1;
  sw->admin_listener = listen_on(sw, &sw->cfg->admin_listen, 1);
  if (!sw->admin_listener)
    return -1;
  return 0;
}

void sw_server_stop_accepting(sw_switch *sw) {
  if (sw->operator_listener)
    evconnlistener_free(sw->operator_listener);
  if (sw->admin_listener)
    evconnlistener_free(sw->admin_listener);
  sw->operator_listener = sw->admin_listener = NULL;
}

/* ---------------------------------------------------------------- connections */

/* The id index: a power-of-two table at most half full, so lookups by id stay O(1). */
static size_t index_slot(size_t size, uint64_t id) {
  return (size_t)((id * 0x9e3779b97f4a7c15ull) >> 20) & (size - 1);
}

static int index_add(sw_switch *sw, sw_conn *c) {
  if ((sw->n_conns + 1) * 2 > sw->conn_index_size) {
    size_t n = sw->conn_index_size ? sw->conn_index_size * 2 : 256;
    sw_conn **t = calloc(n, sizeof *t);
    if (!t)
      return -1;
    for (size_t i = 0; i < sw->conn_index_size; i++) {
      sw_conn *x = sw->conn_index[i];
      if (!x)
        continue;
      size_t k = index_slot(n, x->id);
      while (t[k])
        k = (k + 1) & (n - 1);
      t[k] = x;
    }
    free(sw->conn_index);
    sw->conn_index = t;
    sw->conn_index_size = n;
  }
  size_t k = index_slot(sw->conn_index_size, c->id);
  while (sw->conn_index[k])
    k = (k + 1) & (sw->conn_index_size - 1);
  sw->conn_index[k] = c;
  return 0;
}

static void index_remove(sw_switch *sw, sw_conn *c) {
  size_t mask = sw->conn_index_size - 1, k = index_slot(sw->conn_index_size, c->id);
  while (sw->conn_index[k] && sw->conn_index[k] != c)
    k = (k + 1) & mask;
  if (!sw->conn_index[k])
    return;
  sw->conn_index[k] = NULL;
  /* Shift back the entries of the probe run that follows (no tombstones). */
  for (size_t j = (k + 1) & mask; sw->conn_index[j]; j = (j + 1) & mask) {
    sw_conn *x = sw->conn_index[j];
    size_t home = index_slot(sw->conn_index_size, x->id);
    if ((j > k && (home <= k || home > j)) || (j < k && home <= k && home > j)) {
      sw->conn_index[k] = x;
      sw->conn_index[j] = NULL;
      k = j;
    }
  }
}

static void conn_free(sw_conn *c) {
  sw_switch *sw = c->sw;
  if (c->ready && !c->admin) {
    sw_peer *peer = sw_peer_by_number(sw, c->participant);
    if (peer) {
      for (sw_conn **p = &peer->conns; *p; p = &(*p)->peer_next)
        if (*p == c) {
          *p = c->peer_next;
          peer->n_conns--;
          break;
        }
    }
  }
  if (c->blocked)
    for (sw_conn **p = &sw->blocked; *p; p = &(*p)->blocked_next)
      if (*p == c) {
        *p = c->blocked_next;
        break;
      }
  index_remove(sw, c);
  if (c->prev)
    c->prev->next = c->next;
  else
    sw->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  sw->n_conns--;
  sw_log(&sw->log, SW_LOG_INFO, "conn.closed", "conn=%llu peer=%s addr=%s",
         (unsigned long long)c->id, c->identity[0] ? c->identity : "-", c->addr);
  if (c->partial_timer)
    event_free(c->partial_timer);
  if (c->bev) {
    SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
    if (ssl && SSL_is_init_finished(ssl))
      SSL_shutdown(ssl); /* close_notify, best effort: the peer sees a clean close */
    bufferevent_free(c->bev);
  }
  free(c);
}

sw_conn *sw_conn_find(sw_switch *sw, uint64_t id) {
  if (!sw->conn_index_size)
    return NULL;
  size_t mask = sw->conn_index_size - 1;
  for (size_t k = index_slot(sw->conn_index_size, id); sw->conn_index[k]; k = (k + 1) & mask)
    if (sw->conn_index[k]->id == id)
      return sw->conn_index[k]->closing ? NULL : sw->conn_index[k];
  return NULL;
}

static void conn_accept(sw_switch *sw, evutil_socket_t fd, struct sockaddr *sa, int admin) {
  if (sw->stopping || sw->n_conns >= sw->cfg->max_connections) {
    sw_log(&sw->log, SW_LOG_WARN, "conn.refused", "reason=\"%s\"",
           sw->stopping ? "shutting down" : "max_connections reached");
    sw->metrics.connections_refused++;
    evutil_closesocket(fd);
    return;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  sw_conn *c = calloc(1, sizeof *c);
  SSL *ssl = c ? SSL_new(sw->tls) : NULL;
  if (!ssl) {
    free(c);
    evutil_closesocket(fd);
    return;
  }
  c->sw = sw;
  c->id = ++sw->next_conn_id;
  c->admin = admin;
  if (sa->sa_family == AF_INET) {
    struct sockaddr_in *in = (struct sockaddr_in *)sa;
    char ip[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
    snprintf(c->addr, sizeof c->addr, "%s:%u", ip, ntohs(in->sin_port));
  } else if (sa->sa_family == AF_INET6) {
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)sa;
    char ip[INET6_ADDRSTRLEN];
    inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
    snprintf(c->addr, sizeof c->addr, "[%s]:%u", ip, ntohs(in6->sin6_port));
  }
  c->bev = bufferevent_openssl_socket_new(sw->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                          BEV_OPT_CLOSE_ON_FREE);
  c->partial_timer = evtimer_new(sw->base, partial_timeout_cb, c);
  if (!c->bev || !c->partial_timer || index_add(sw, c)) {
    if (c->partial_timer)
      event_free(c->partial_timer);
    if (c->bev)
      bufferevent_free(c->bev);
    else {
      SSL_free(ssl);
      evutil_closesocket(fd);
    }
    free(c);
    return;
  }
  c->next = sw->conns;
  if (sw->conns)
    sw->conns->prev = c;
  sw->conns = c;
  sw->n_conns++;
  bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
  bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
  /* The handshake must finish in time too. */
  struct timeval tv = {(time_t)(sw->cfg->read_timeout_ms / 1000),
                       (suseconds_t)(sw->cfg->read_timeout_ms % 1000) * 1000};
  bufferevent_set_timeouts(c->bev, &tv, NULL);
  bufferevent_enable(c->bev, EV_READ | EV_WRITE);
  sw->metrics.connections_accepted++;
}

static void operator_accept_cb(struct evconnlistener *lst, evutil_socket_t fd, struct sockaddr *sa,
                               int salen, void *arg) {
  (void)lst;
  (void)salen;
  conn_accept(arg, fd, sa, 0);
}

static void admin_accept_cb(struct evconnlistener *lst, evutil_socket_t fd, struct sockaddr *sa,
                            int salen, void *arg) {
  (void)lst;
  (void)salen;
  conn_accept(arg, fd, sa, 1);
}

/* Sends an error and closes once it is written. */
static void conn_refuse(sw_conn *c, unsigned code, const char *reason) {
  sw_log(&c->sw->log, SW_LOG_WARN, "conn.refused",
         "conn=%llu addr=%s peer=%s role=%s reason=\"%s\"", (unsigned long long)c->id, c->addr,
         c->identity[0] ? c->identity : "-", c->role[0] ? c->role : "-", reason);
  c->sw->metrics.connections_refused++;
  if (c->admin) {
    Tuma__V1__AdminEnvelope env = TUMA__V1__ADMIN_ENVELOPE__INIT;
    Tuma__V1__AdminResult res = TUMA__V1__ADMIN_RESULT__INIT;
    Tuma__V1__Error err = TUMA__V1__ERROR__INIT;
    err.code = code;
    err.message = (char *)reason;
    res.error = &err;
    env.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_ADMIN_RESULT;
    env.admin_result = &res;
    sw_conn_send_admin(c, &env);
  } else {
    sw_conn_send_error(c, 0, code, reason);
  }
  c->closing = 1;
  bufferevent_disable(c->bev, EV_READ);
}

/* The handshake is done: who is it, and may they in? */
static void conn_authorise(sw_conn *c) {
  sw_switch *sw = c->sw;
  SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
  X509 *cert = ssl ? SSL_get1_peer_certificate(ssl) : NULL;
  if (!cert) {
    conn_refuse(c, SW_ERR_VALIDATION, "no client certificate");
    return;
  }
  X509_NAME *name = X509_get_subject_name(cert);
  if (X509_NAME_get_text_by_NID(name, NID_commonName, c->identity, sizeof c->identity) <= 0)
    c->identity[0] = 0;
  if (X509_NAME_get_text_by_NID(name, NID_organizationalUnitName, c->role, sizeof c->role) <= 0)
    c->role[0] = 0;
  X509_free(cert);
  bufferevent_set_timeouts(c->bev, NULL, NULL); /* from now on: the partial-frame timer */
  if (c->admin) {
    if (strcmp(c->role, "admin") != 0 && strcmp(c->role, "programme-manager") != 0 &&
        strcmp(c->role, "approver") != 0) {
      conn_refuse(c, SW_ERR_VALIDATION,
                  "certificate role is not admin, programme-manager or approver");
      return;
    }
  } else {
    if (strcmp(c->role, "operator") != 0) {
      conn_refuse(c, SW_ERR_VALIDATION, "certificate role is not operator");
      return;
    }
    sw_peer *peer = sw_peer_by_id(sw, c->identity);
    if (!peer) {
      conn_refuse(c, SW_ERR_VALIDATION, "unknown participant");
      return;
    }
    if (peer->p.status != SW_PARTICIPANT_ACTIVE) {
      conn_refuse(c, SW_ERR_PAYER_PERMISSION, "participant suspended");
      return;
    }
    c->participant = peer->p.number;
    c->peer_next = peer->conns;
    peer->conns = c;
    peer->n_conns++;
  }
  c->ready = 1;
  sw_log(&sw->log, SW_LOG_INFO, "conn.ready", "conn=%llu addr=%s peer=%s role=%s",
         (unsigned long long)c->id, c->addr, c->identity, c->role);
}

static void conn_pause(sw_conn *c) {
  if (!c->read_paused) {
    c->read_paused = 1;
    bufferevent_disable(c->bev, EV_READ);
  }
}

static void process_input(sw_conn *c);

static size_t output_length(const sw_conn *c) {
  return evbuffer_get_length(bufferevent_get_output(c->bev));
}

static void conn_resume(sw_conn *c) {
  if (c->read_paused && !c->closing && !c->blocked && c->in_flight < c->sw->cfg->max_in_flight &&
      output_length(c) <= OUTPUT_READ_PAUSE) {
    c->read_paused = 0;
    bufferevent_enable(c->bev, EV_READ);
    process_input(c); /* frames may be waiting in the buffer already */
  }
}

void sw_conn_request_done(sw_conn *c) {
  if (!c)
    return;
  if (c->in_flight > 0)
    c->in_flight--;
  conn_resume(c);
}

void sw_conn_block(sw_conn *c) {
  if (c->blocked)
    return;
  c->blocked = 1;
  c->blocked_next = c->sw->blocked;
  c->sw->blocked = c;
  conn_pause(c);
}

void sw_server_unblock(sw_switch *sw) {
  sw_conn *list = sw->blocked;
  sw->blocked = NULL;
  while (list) {
    sw_conn *next = list->blocked_next;
    list->blocked = 0;
    list->blocked_next = NULL;
    conn_resume(list);
    list = next;
  }
}

/* Decodes and dispatches whole frames while the limits allow. */
static void process_input(sw_conn *c) {
  sw_switch *sw = c->sw;
  struct evbuffer *in = bufferevent_get_input(c->bev);
  size_t max_body = c->admin ? sw->cfg->admin_max_frame_bytes : sw->cfg->max_frame_bytes;
  while (!c->closing && !c->read_paused && c->ready) {
    size_t avail = evbuffer_get_length(in);
    if (avail < PROTO_FRAME_HEADER_BYTES)
      break;
    uint8_t hdr[PROTO_FRAME_HEADER_BYTES];
    evbuffer_copyout(in, hdr, sizeof hdr);
    size_t body_len = (size_t)hdr[0] << 24 | (size_t)hdr[1] << 16 | (size_t)hdr[2] << 8 | hdr[3];
    size_t need = body_len <= max_body ? PROTO_FRAME_HEADER_BYTES + body_len : sizeof hdr;
    if (avail < need)
      break;
    const uint8_t *buf = evbuffer_pullup(in, (ssize_t)need);
    size_t off = 0, len = 0, consumed = 0;
    int st = proto_frame_parse(buf, need, max_body, &off, &len, &consumed);
    if (st == PROTO_FRAME_AGAIN)
      break;
    if (st != PROTO_FRAME_OK) {
      sw->metrics.frame_errors++;
      conn_refuse(c, st == PROTO_FRAME_TOO_LARGE ? SW_ERR_TOO_LARGE : SW_ERR_MALFORMED,
                  proto_frame_strerror(st));
      return;
    }
    sw->metrics.frames_in++;
    if (c->admin) {
      Tuma__V1__AdminEnvelope *env = proto_admin_envelope_decode(buf + off, len);
      evbuffer_drain(in, consumed);
      if (!env) {
        sw->metrics.frame_errors++;
        conn_refuse(c, SW_ERR_MALFORMED, "admin envelope does not decode");
        return;
      }
      c->in_flight++;
      sw_admin_dispatch(c, env);
      tuma__v1__admin_envelope__free_unpacked(env, NULL);
    } else {
      Tuma__V1__Envelope *env = proto_envelope_decode(buf + off, len);
      evbuffer_drain(in, consumed);
      if (!env) {
        sw->metrics.frame_errors++;
        conn_refuse(c, SW_ERR_MALFORMED, "envelope does not decode");
        return;
      }
      c->in_flight++;
      sw_operator_dispatch(c, env);
      tuma__v1__envelope__free_unpacked(env, NULL);
    }
    if (c->in_flight >= sw->cfg->max_in_flight || output_length(c) > OUTPUT_READ_PAUSE)
      conn_pause(c); /* write_cb resumes it once the output has drained */
  }
  /* A partial frame must complete within read_timeout_ms. */
  if (!c->closing && evbuffer_get_length(in) > 0 && !c->read_paused) {
    if (!evtimer_pending(c->partial_timer, NULL)) {
      struct timeval tv = {(time_t)(sw->cfg->read_timeout_ms / 1000),
                           (suseconds_t)(sw->cfg->read_timeout_ms % 1000) * 1000};
      evtimer_add(c->partial_timer, &tv);
    }
  } else {
    evtimer_del(c->partial_timer);
  }
}

static void partial_timeout_cb(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  sw_conn *c = arg;
  sw_log(&c->sw->log, SW_LOG_WARN, "conn.timeout", "conn=%llu peer=%s reason=\"partial frame\"",
         (unsigned long long)c->id, c->identity[0] ? c->identity : "-");
  conn_free(c);
}

static void read_cb(struct bufferevent *bev, void *arg) {
  (void)bev;
  process_input(arg);
}

static void write_cb(struct bufferevent *bev, void *arg) {
  sw_conn *c = arg;
  if (c->closing && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
    conn_free(c);
  else if (c->read_paused)
    conn_resume(c); /* paused for its output: drained now (the low watermark is 0) */
}

static void event_cb(struct bufferevent *bev, short what, void *arg) {
  sw_conn *c = arg;
  (void)bev;
  if (what & BEV_EVENT_CONNECTED) {
    conn_authorise(c);
    if (!c->closing)
      process_input(c);
    return;
  }
  if (what & BEV_EVENT_ERROR) {
    unsigned long e;
    char buf[256] = "";
    while ((e = bufferevent_get_openssl_error(c->bev)) != 0)
      ERR_error_string_n(e, buf, sizeof buf);
    if (!c->ready) {
      /* Say why: the certificate check's verdict when there was one. */
      SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
      long vr = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
      X509 *peer = ssl ? SSL_get0_peer_certificate(ssl) : NULL;
      const char *why = vr != X509_V_OK ? X509_verify_cert_error_string(vr)
                        : !peer         ? "no usable client certificate"
                                        : "protocol error";
      c->sw->metrics.connections_refused++;
      sw_log(&c->sw->log, SW_LOG_WARN, "conn.refused",
             "conn=%llu addr=%s reason=\"TLS handshake failed: %s\" openssl=\"%s\"",
             (unsigned long long)c->id, c->addr, why, buf[0] ? buf : strerror(errno));
    }
  } else if ((what & BEV_EVENT_TIMEOUT) && !c->ready) {
    sw_log(&c->sw->log, SW_LOG_WARN, "conn.refused",
           "conn=%llu addr=%s reason=\"TLS handshake timed out\"", (unsigned long long)c->id,
           c->addr);
  }
  conn_free(c);
}

void sw_server_close_all(sw_switch *sw) {
  while (sw->conns)
    conn_free(sw->conns);
  free(sw->conn_index);
  sw->conn_index = NULL;
  sw->conn_index_size = 0;
  if (sw->tls)
    SSL_CTX_free(sw->tls);
  sw->tls = NULL;
}

/* ---------------------------------------------------------------- sending */

static int send_frame(sw_conn *c, size_t size,
                      int (*encode)(const void *, uint8_t *, size_t, size_t *), const void *env) {
  struct evbuffer *out = bufferevent_get_output(c->bev);
  struct evbuffer_iovec vec;
  if (evbuffer_reserve_space(out, (ssize_t)size, &vec, 1) != 1 || vec.iov_len < size)
    return -1;
  size_t len = 0;
  if (encode(env, vec.iov_base, size, &len) != PROTO_FRAME_OK) {
    sw_log(&c->sw->log, SW_LOG_ERROR, "frame.encode", "conn=%llu size=%zu",
           (unsigned long long)c->id, size);
    return -1;
  }
  vec.iov_len = len;
  if (evbuffer_commit_space(out, &vec, 1))
    return -1;
  c->sw->metrics.frames_out++;
  return 0;
}

static int encode_operator(const void *env, uint8_t *out, size_t cap, size_t *len) {
  return proto_envelope_encode(env, out, cap, len);
}

static int encode_admin(const void *env, uint8_t *out, size_t cap, size_t *len) {
  return proto_admin_envelope_encode(env, out, cap, len);
}

int sw_conn_send(sw_conn *c, const Tuma__V1__Envelope *env) {
  return send_frame(c, proto_envelope_frame_size(env), encode_operator, env);
}

int sw_conn_send_admin(sw_conn *c, const Tuma__V1__AdminEnvelope *env) {
  return send_frame(c, proto_admin_envelope_frame_size(env), encode_admin, env);
}

void sw_conn_send_error(sw_conn *c, uint64_t correlation, unsigned code, const char *text) {
  Tuma__V1__Envelope env = TUMA__V1__ENVELOPE__INIT;
  Tuma__V1__Error err = TUMA__V1__ERROR__INIT;
  err.code = code;
  err.message = (char *)(text ? text : sw_error_text(code));
  env.correlation_id = correlation;
  env.body_case = TUMA__V1__ENVELOPE__BODY_ERROR;
  env.error = &err;
  sw_conn_send(c, &env);
}

/* ---------------------------------------------------------------- participants */

sw_peer *sw_peer_by_number(sw_switch *sw, uint32_t number) {
  if (number == 0 || number >= sw->n_peers || !sw->peers[number].known)
    return NULL;
  return &sw->peers[number];
}

sw_peer *sw_peer_by_id(sw_switch *sw, const char *participant_id) {
  for (uint32_t i = 1; i < sw->n_peers; i++)
    if (sw->peers[i].known && !strcmp(sw->peers[i].p.id, participant_id))
      return &sw->peers[i];
  return NULL;
}

int sw_peer_update(sw_switch *sw, const sw_participant *p) {
  if (p->number == 0)
    return -1;
  if (p->number >= sw->n_peers) {
    uint32_t n = p->number + 16;
    sw_peer *peers = realloc(sw->peers, n * sizeof *peers);
    if (!peers)
      return -1;
    memset(peers + sw->n_peers, 0, (n - sw->n_peers) * sizeof *peers);
    /* Connections point at peers by number, never by address: the move is safe. */
    sw->peers = peers;
    sw->n_peers = n;
  }
  sw_peer *peer = &sw->peers[p->number];
  peer->p = *p;
  peer->known = 1;
  if (p->status != SW_PARTICIPANT_ACTIVE) { /* a suspended participant is cut off */
    while (peer->conns) {
      sw_conn *c = peer->conns;
      peer->conns = c->peer_next;
      peer->n_conns--;
      c->ready = 0;
      conn_refuse(c, SW_ERR_PAYER_PERMISSION, "participant suspended");
    }
  }
  return 0;
}

sw_conn *sw_peer_pick_conn(sw_switch *sw, uint32_t number) {
  sw_peer *peer = sw_peer_by_number(sw, number);
  if (!peer || !peer->conns)
    return NULL;
  /* Round robin: take the first uncongested one and rotate it to the back. */
  sw_conn **pp = &peer->conns;
  for (; *pp; pp = &(*pp)->peer_next) {
    sw_conn *c = *pp;
    if (c->closing || c->send_only ||
        evbuffer_get_length(bufferevent_get_output(c->bev)) > OUTPUT_HIGH_WATER)
      continue;
    if (c->peer_next) {
      *pp = c->peer_next;
      sw_conn *tail = *pp;
      while (tail->peer_next)
        tail = tail->peer_next;
      tail->peer_next = c;
      c->peer_next = NULL;
    }
    return c;
  }
  return NULL;
}
