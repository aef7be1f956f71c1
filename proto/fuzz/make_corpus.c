/* make_corpus.c — writes the seed corpus of fuzz_frame (proto/fuzz/corpus/frame/): byte
 * streams of valid frames of several message types of both protocols, pipelined ones, and the
 * malformed cases a connection must survive (truncated, oversized, empty, no body, garbage).
 * The output is deterministic; it was run once and its files are committed. To regenerate:
 *   ninja -C build-fuzz proto/fuzz/make_corpus && build-fuzz/proto/fuzz/make_corpus DIR
 */
#include "frame.h"

#include <stdio.h>
#include <string.h>

enum { MC_CAP = 2048 };

/* A stream being built: frames appended one after the other. */
typedef struct mc_stream {
  uint8_t buf[MC_CAP];
  size_t len;
} mc_stream;

static int mc_add(mc_stream *s, const Tuma__V1__Envelope *e) {
  size_t n;
  int rc = proto_envelope_encode(e, s->buf + s->len, MC_CAP - s->len, &n);
  if (rc != PROTO_FRAME_OK) {
    fprintf(stderr, "make_corpus: encode: %s\n", proto_frame_strerror(rc));
    return -1;
  }
  s->len += n;
  return 0;
}

static int mc_add_admin(mc_stream *s, const Tuma__V1__AdminEnvelope *e) {
  size_t n;
  int rc = proto_admin_envelope_encode(e, s->buf + s->len, MC_CAP - s->len, &n);
  if (rc != PROTO_FRAME_OK) {
    fprintf(stderr, "make_corpus: encode: %s\n", proto_frame_strerror(rc));
    return -1;
  }
  s->len += n;
  return 0;
}

static int mc_add_raw(mc_stream *s, const void *bytes, size_t n) {
  if (n > MC_CAP - s->len)
    return -1;
  memcpy(s->buf + s->len, bytes, n);
  s->len += n;
  return 0;
}

static int mc_cut(mc_stream *s, size_t n) {
  if (n > s->len)
    return -1;
  s->len -= n;
  return 0;
}

static int mc_write(const char *dir, const char *name, const mc_stream *s) {
  char path[4096];
  int n = snprintf(path, sizeof path, "%s/%s", dir, name);
  if (n < 0 || (size_t)n >= sizeof path)
    return -1;
  FILE *f = fopen(path, "wb");
  if (!f) {
    perror(path);
    return -1;
  }
  int ok = fwrite(s->buf, 1, s->len, f) == s->len;
  if (fclose(f) != 0)
    ok = 0;
  if (!ok) {
    perror(path);
    return -1;
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: make_corpus DIR\n");
    return 2;
  }
  const char *dir = argv[1];
  int err = 0;
  /* A UUIDv7-shaped transfer id, a condition and a fulfilment (the condition only stands for
   * SHA-256 of the fulfilment: the fuzzer does not care). */
  uint8_t idb[16] = {0x01, 0x93, 0x6c, 0x2a, 0x10, 0x00, 0x70, 0x00,
                     0x80, 0x00, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc};
  uint8_t cond[32], fulb[32];
  memset(cond, 0x5a, sizeof cond);
  memcpy(fulb, "tuma-seed-fulfilment-32-bytes!!", sizeof fulb);
  ProtobufCBinaryData id = {sizeof idb, idb};
  ProtobufCBinaryData condition = {sizeof cond, cond};
  ProtobufCBinaryData fulfilment = {sizeof fulb, fulb};

  Tuma__V1__Party payer = TUMA__V1__PARTY__INIT, payee = TUMA__V1__PARTY__INIT;
  payer.type = TUMA__V1__PARTY_ID_TYPE__PARTY_ID_TYPE_MSISDN;
  payer.id = "254712345678";
  payee.type = TUMA__V1__PARTY_ID_TYPE__PARTY_ID_TYPE_MSISDN;
  payee.id = "256772000111";
  Tuma__V1__Money amount = TUMA__V1__MONEY__INIT;
  amount.currency = "KES";
  amount.amount = 250000;

  /* Operator protocol. */
  Tuma__V1__Hello hello = TUMA__V1__HELLO__INIT;
  hello.client_name = "opsim 0.1";
  Tuma__V1__Envelope e_hello = TUMA__V1__ENVELOPE__INIT;
  e_hello.correlation_id = 1;
  e_hello.body_case = TUMA__V1__ENVELOPE__BODY_HELLO;
  e_hello.hello = &hello;

  Tuma__V1__TransferPrepare prep = TUMA__V1__TRANSFER_PREPARE__INIT;
  prep.transfer_id = id;
  prep.payer = &payer;
  prep.payee = &payee;
  prep.payee_participant = "mtn-ug";
  prep.amount = &amount;
  prep.expiration_ms = 1767225600000ull;
  prep.condition = condition;
  prep.reference = "school fees";
  Tuma__V1__Envelope e_prep = TUMA__V1__ENVELOPE__INIT;
  e_prep.correlation_id = 2;
  e_prep.body_case = TUMA__V1__ENVELOPE__BODY_TRANSFER_PREPARE;
  e_prep.transfer_prepare = &prep;

  Tuma__V1__TransferForward fwd = TUMA__V1__TRANSFER_FORWARD__INIT;
  fwd.transfer_id = id;
  fwd.payer_participant = "mpesa-ke";
  fwd.payer = &payer;
  fwd.payee = &payee;
  fwd.amount = &amount;
  fwd.expiration_ms = 1767225600000ull;
  fwd.condition = condition;
  fwd.reference = "school fees";
  Tuma__V1__Envelope e_fwd = TUMA__V1__ENVELOPE__INIT;
  e_fwd.correlation_id = 0x8000000000000001ull;
  e_fwd.body_case = TUMA__V1__ENVELOPE__BODY_TRANSFER_FORWARD;
  e_fwd.transfer_forward = &fwd;

  Tuma__V1__TransferFulfil ful = TUMA__V1__TRANSFER_FULFIL__INIT;
  ful.transfer_id = id;
  ful.state = TUMA__V1__FULFIL_STATE__FULFIL_STATE_COMMITTED;
  ful.fulfilment = fulfilment;
  Tuma__V1__Envelope e_ful = TUMA__V1__ENVELOPE__INIT;
  e_ful.correlation_id = 77;
  e_ful.body_case = TUMA__V1__ENVELOPE__BODY_TRANSFER_FULFIL;
  e_ful.transfer_fulfil = &ful;

  Tuma__V1__Error rejected = TUMA__V1__ERROR__INIT;
  rejected.code = 5105;
  rejected.message = "payee rejected the transfer";
  Tuma__V1__TransferFulfil abort_ = TUMA__V1__TRANSFER_FULFIL__INIT;
  abort_.transfer_id = id;
  abort_.state = TUMA__V1__FULFIL_STATE__FULFIL_STATE_ABORTED;
  abort_.reason = &rejected;
  Tuma__V1__Envelope e_abort = TUMA__V1__ENVELOPE__INIT;
  e_abort.correlation_id = 78;
  e_abort.body_case = TUMA__V1__ENVELOPE__BODY_TRANSFER_FULFIL;
  e_abort.transfer_fulfil = &abort_;

  Tuma__V1__TransferResult res = TUMA__V1__TRANSFER_RESULT__INIT;
  res.transfer_id = id;
  res.state = TUMA__V1__TRANSFER_STATE__TRANSFER_STATE_COMMITTED;
  res.completed_at_ms = 1767225500123ull;
  res.fulfilment = fulfilment;
  Tuma__V1__Envelope e_res = TUMA__V1__ENVELOPE__INIT;
  e_res.correlation_id = 2;
  e_res.body_case = TUMA__V1__ENVELOPE__BODY_TRANSFER_RESULT;
  e_res.transfer_result = &res;

  Tuma__V1__Party *parties[] = {&payer, &payee};
  Tuma__V1__PartyRegister reg = TUMA__V1__PARTY_REGISTER__INIT;
  reg.n_parties = 2;
  reg.parties = parties;
  Tuma__V1__Envelope e_reg = TUMA__V1__ENVELOPE__INIT;
  e_reg.correlation_id = 3;
  e_reg.body_case = TUMA__V1__ENVELOPE__BODY_PARTY_REGISTER;
  e_reg.party_register = &reg;

  Tuma__V1__PartyLookup look = TUMA__V1__PARTY_LOOKUP__INIT;
  look.party = &payee;
  Tuma__V1__Envelope e_look = TUMA__V1__ENVELOPE__INIT;
  e_look.correlation_id = 4;
  e_look.body_case = TUMA__V1__ENVELOPE__BODY_PARTY_LOOKUP;
  e_look.party_lookup = &look;
  Tuma__V1__TransferQuery query = TUMA__V1__TRANSFER_QUERY__INIT;
  query.transfer_id = id;
  Tuma__V1__Envelope e_query = TUMA__V1__ENVELOPE__INIT;
  e_query.correlation_id = 5;
  e_query.body_case = TUMA__V1__ENVELOPE__BODY_TRANSFER_QUERY;
  e_query.transfer_query = &query;
  Tuma__V1__Ping ping = TUMA__V1__PING__INIT;
  ping.nonce = 0x0123456789abcdefull;
  Tuma__V1__Envelope e_ping = TUMA__V1__ENVELOPE__INIT;
  e_ping.correlation_id = 6;
  e_ping.body_case = TUMA__V1__ENVELOPE__BODY_PING;
  e_ping.ping = &ping;

  Tuma__V1__Error malformed = TUMA__V1__ERROR__INIT;
  malformed.code = 3101;
  malformed.message = "malformed syntax";
  Tuma__V1__Envelope e_err = TUMA__V1__ENVELOPE__INIT;
  e_err.body_case = TUMA__V1__ENVELOPE__BODY_ERROR;
  e_err.error = &malformed;

  /* Admin protocol. */
  char *currencies[] = {"KES", "UGX"};
  Tuma__V1__ParticipantCreate pc = TUMA__V1__PARTICIPANT_CREATE__INIT;
  pc.participant_id = "mpesa-ke";
  pc.name = "M-Pesa Kenya";
  pc.n_currencies = 2;
  pc.currencies = currencies;
  Tuma__V1__AdminEnvelope a_pc = TUMA__V1__ADMIN_ENVELOPE__INIT;
  a_pc.correlation_id = 1;
  a_pc.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_PARTICIPANT_CREATE;
  a_pc.participant_create = &pc;

  Tuma__V1__Money deposit = TUMA__V1__MONEY__INIT;
  deposit.currency = "KES";
  deposit.amount = 1000000000ull;
  Tuma__V1__LiquidityAdjust adj = TUMA__V1__LIQUIDITY_ADJUST__INIT;
  adj.adjustment_id = id;
  adj.participant_id = "mpesa-ke";
  adj.amount = &deposit;
  adj.direction = TUMA__V1__LIQUIDITY_DIRECTION__LIQUIDITY_DIRECTION_DEPOSIT;
  adj.reason = "prefunding";
  Tuma__V1__AdminEnvelope a_adj = TUMA__V1__ADMIN_ENVELOPE__INIT;
  a_adj.correlation_id = 2;
  a_adj.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_LIQUIDITY_ADJUST;
  a_adj.liquidity_adjust = &adj;

  Tuma__V1__Position p1 = TUMA__V1__POSITION__INIT, p2 = TUMA__V1__POSITION__INIT;
  p1.participant_id = "mpesa-ke";
  p1.currency = "KES";
  p1.liquidity = 1000000000ull;
  p1.reserved = 250000;
  p1.available = 999750000ull;
  p1.net_debit_cap = 500000000ull;
  p1.net_position = 250000;
  p2.participant_id = "mtn-ug";
  p2.currency = "KES";
  p2.liquidity = 5000;
  p2.net_position = -250000;
  Tuma__V1__Position *positions[] = {&p1, &p2};
  Tuma__V1__PositionsResult pr = TUMA__V1__POSITIONS_RESULT__INIT;
  pr.n_positions = 2;
  pr.positions = positions;
  Tuma__V1__AdminEnvelope a_pr = TUMA__V1__ADMIN_ENVELOPE__INIT;
  a_pr.correlation_id = 3;
  a_pr.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_POSITIONS_RESULT;
  a_pr.positions_result = &pr;

  Tuma__V1__PartyDirectoryUpsert up = TUMA__V1__PARTY_DIRECTORY_UPSERT__INIT;
  up.party = &payee;
  up.participant_id = "mtn-ug";
  Tuma__V1__AdminEnvelope a_up = TUMA__V1__ADMIN_ENVELOPE__INIT;
  a_up.correlation_id = 4;
  a_up.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_PARTY_DIRECTORY_UPSERT;
  a_up.party_directory_upsert = &up;
  Tuma__V1__AdminResult ok = TUMA__V1__ADMIN_RESULT__INIT;
  Tuma__V1__AdminEnvelope a_ok = TUMA__V1__ADMIN_ENVELOPE__INIT;
  a_ok.correlation_id = 4;
  a_ok.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_ADMIN_RESULT;
  a_ok.admin_result = &ok;

  mc_stream s;
#define MC_FILE(name, ...)                                                                         \
  do {                                                                                             \
    s.len = 0;                                                                                     \
    if ((__VA_ARGS__) || mc_write(dir, name, &s) != 0)                                             \
      err = 1;                                                                                     \
  } while (0)

  MC_FILE("01-hello", mc_add(&s, &e_hello));
  MC_FILE("02-transfer-prepare", mc_add(&s, &e_prep));
  MC_FILE("03-transfer-forward", mc_add(&s, &e_fwd));
  MC_FILE("04-transfer-fulfil-committed", mc_add(&s, &e_ful));
  MC_FILE("05-transfer-fulfil-aborted", mc_add(&s, &e_abort));
  MC_FILE("06-transfer-result", mc_add(&s, &e_res));
  MC_FILE("07-party-register", mc_add(&s, &e_reg));
  MC_FILE("08-pipelined-lookup-query-ping",
          mc_add(&s, &e_look) || mc_add(&s, &e_query) || mc_add(&s, &e_ping));
  MC_FILE("09-error", mc_add(&s, &e_err));
  MC_FILE("10-admin-participant-create", mc_add_admin(&s, &a_pc));
  MC_FILE("11-admin-liquidity-adjust", mc_add_admin(&s, &a_adj));
  MC_FILE("12-admin-positions-result", mc_add_admin(&s, &a_pr));
  MC_FILE("13-admin-upsert-then-result", mc_add_admin(&s, &a_up) || mc_add_admin(&s, &a_ok));

  /* Malformed streams. */
  static const uint8_t oversized[] = {0x00, 0x10, 0x00, 0x00, 0xfa, 0x01, 0x00, 0x08};
  static const uint8_t empty[] = {0x00, 0x00, 0x00, 0x00};
  static const uint8_t no_body[] = {0x00, 0x00, 0x00, 0x02, 0x08, 0x07};
  static const uint8_t garbage[] = {0x00, 0x00, 0x00, 0x05, 0xff, 0xff, 0xff, 0x0f, 0x07};
  /* A ping, then a prepare cut 9 bytes short. */
  MC_FILE("14-truncated-prepare", mc_add(&s, &e_ping) || mc_add(&s, &e_prep) || mc_cut(&s, 9));
  MC_FILE("15-oversized", mc_add(&s, &e_ping) || mc_add_raw(&s, oversized, sizeof oversized));
  MC_FILE("16-empty-length", mc_add_raw(&s, empty, sizeof empty) || mc_add(&s, &e_ping));
  MC_FILE("17-no-body-then-ping", mc_add_raw(&s, no_body, sizeof no_body) || mc_add(&s, &e_ping));
  MC_FILE("18-garbage-body", mc_add_raw(&s, garbage, sizeof garbage) || mc_add(&s, &e_hello));
#undef MC_FILE

  if (err) {
    fprintf(stderr, "make_corpus: failed\n");
    return 1;
  }
  return 0;
}
