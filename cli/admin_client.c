/* admin_client.c — the blocking client for tumad's admin listener (admin_client.h): a wire.h
 * connection carrying AdminEnvelope frames, one request and its reply at a time. */
#include "admin_client.h"

#include <stdlib.h>

#include "frame.h"

struct admin_client {
  wire_conn *conn;
  int timeout_ms;
  uint64_t next_correlation_id;
  int broken; /* a call failed midway; the stream is out of step */
};

const char *admin_client_strerror(int err) {
  return wire_strerror(err);
}

int admin_client_parse_address(const char *text, char *host, size_t host_cap, char *port,
                               size_t port_cap, admin_client_diag *diag) {
  return wire_parse_address(text, host, host_cap, port, port_cap, diag);
}

int admin_client_connect(const admin_client_options *o, admin_client **out,
                         admin_client_diag *diag) {
  *out = NULL;
  admin_client *c = calloc(1, sizeof *c);
  if (c == NULL)
    return wire_fail(diag, ADMIN_CLIENT_ENOMEM, "out of memory");
  c->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 10000;
  c->next_correlation_id = 1;
  wire_options w = {.host = o->host,
                    .port = o->port,
                    .ca_file = o->ca_file,
                    .cert_file = o->cert_file,
                    .key_file = o->key_file,
                    .server_name = o->server_name,
                    .timeout_ms = c->timeout_ms,
                    .role = "admin",
                    .files_hint = "TUMA_PKI_DIR"};
  int rc = wire_connect(&w, &c->conn, diag);
  if (rc != 0) {
    free(c);
    return rc;
  }
  *out = c;
  return 0;
}

int admin_client_call(admin_client *c, Tuma__V1__AdminEnvelope *req,
                      Tuma__V1__AdminEnvelope **reply, admin_client_diag *diag) {
  *reply = NULL;
  if (c->broken)
    return wire_fail(diag, ADMIN_CLIENT_EPROTO, "the connection failed earlier");
  uint64_t id = c->next_correlation_id++;
  req->correlation_id = id;
  size_t size = proto_admin_envelope_frame_size(req);
  if (size == 0 || size > ADMIN_CLIENT_MAX_FRAME)
    return wire_fail(diag, ADMIN_CLIENT_EINVAL, "request too large (%zu bytes)", size);
  uint8_t *frame = malloc(size);
  if (frame == NULL)
    return wire_fail(diag, ADMIN_CLIENT_ENOMEM, "out of memory");
  size_t len = 0;
  int rc = proto_admin_envelope_encode(req, frame, size, &len);
  if (rc != PROTO_FRAME_OK) {
    free(frame);
    return wire_fail(diag, ADMIN_CLIENT_EINVAL, "cannot encode the request: %s",
                     proto_frame_strerror(rc));
  }
  rc = wire_send(c->conn, frame, len, diag);
  free(frame);
  if (rc != 0) {
    c->broken = 1;
    return rc;
  }
  for (;;) {
    const uint8_t *body = NULL;
    size_t blen = 0;
    /* Each frame within the timeout: a switch that answers other ids forever is not ours. */
    if ((rc = wire_recv(c->conn, c->timeout_ms, -1, &body, &blen, diag)) != 0) {
      c->broken = 1;
      if (rc == ADMIN_CLIENT_ETIMEOUT)
        wire_fail(diag, rc, "timed out waiting for the reply");
      return rc;
    }
    Tuma__V1__AdminEnvelope *env = proto_admin_envelope_decode(body, blen);
    if (env == NULL) {
      c->broken = 1;
      return wire_fail(diag, ADMIN_CLIENT_EPROTO,
                       "the switch sent a frame that does not decode as an AdminEnvelope (is "
                       "--connect the admin listener, not the operator one?)");
    }
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
  wire_close(c->conn);
  free(c);
}
