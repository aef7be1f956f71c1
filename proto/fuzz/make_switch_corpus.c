/* make_switch_corpus.c — writes the seed corpus of fuzz_switch (corpus/switch/): conversations
 * in fuzz_switch's input format ([connection byte][frame]…; 0 alpha, 1 beta, 2 gamma, 3 admin,
 * 4 a programme manager, 5 an approver)
 * that reach each handler: hello and ping, two-phase transfers committed and aborted, routing
 * by party, party registration and lookup, an expiry, a net-debit-cap refusal, duplicates and
 * a modified duplicate, every admin request, and a disbursement from programme to reach (08).
 * Run once; its output is committed.
 *
 *   make_switch_corpus DIR
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include "frame.h"

typedef struct seed {
  uint8_t buf[16384];
  size_t len;
} seed;

static void put_op(seed *s, uint8_t who, Tuma__V1__Envelope *env) {
  size_t need = proto_envelope_frame_size(env), len = 0;
  if (s->len + 1 + need > sizeof s->buf ||
      proto_envelope_encode(env, s->buf + s->len + 1, need, &len) != PROTO_FRAME_OK) {
    fprintf(stderr, "make_switch_corpus: encode failed\n");
    exit(1);
  }
  s->buf[s->len] = who;
  s->len += 1 + len;
}

static void put_admin_as(seed *s, uint8_t who, Tuma__V1__AdminEnvelope *env) {
  size_t need = proto_admin_envelope_frame_size(env), len = 0;
  if (s->len + 1 + need > sizeof s->buf ||
      proto_admin_envelope_encode(env, s->buf + s->len + 1, need, &len) != PROTO_FRAME_OK) {
    fprintf(stderr, "make_switch_corpus: encode failed\n");
    exit(1);
  }
  s->buf[s->len] = who;
  s->len += 1 + len;
}

static void put_admin(seed *s, Tuma__V1__AdminEnvelope *env) {
  size_t need = proto_admin_envelope_frame_size(env), len = 0;
  if (s->len + 1 + need > sizeof s->buf ||
      proto_admin_envelope_encode(env, s->buf + s->len + 1, need, &len) != PROTO_FRAME_OK) {
    fprintf(stderr, "make_switch_corpus: encode failed\n");
    exit(1);
  }
  s->buf[s->len] = 3;
  s->len += 1 + len;
}

static void save(const char *dir, const char *name, const seed *s) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(s->buf, 1, s->len, f) != s->len || fclose(f) != 0) {
    fprintf(stderr, "make_switch_corpus: cannot write %s\n", path);
    exit(1);
  }
}

static uint8_t id_bytes[8][16];

static void hello(seed *s, uint8_t who) {
  Tuma__V1__Envelope env = TUMA__V1__ENVELOPE__INIT;
  Tuma__V1__Hello m = TUMA__V1__HELLO__INIT;
  m.client_name = (char *)"seed";
  env.correlation_id = 1;
  env.body_case = TUMA__V1__ENVELOPE__BODY_HELLO;
  env.hello = &m;
  put_op(s, who, &env);
}

static void ping(seed *s, uint8_t who, uint64_t nonce) {
  Tuma__V1__Envelope env = TUMA__V1__ENVELOPE__INIT;
  Tuma__V1__Ping m = TUMA__V1__PING__INIT;
  m.nonce = nonce;
  env.correlation_id = 2;
  env.body_case = TUMA__V1__ENVELOPE__BODY_PING;
  env.ping = &m;
  put_op(s, who, &env);
}

/* expiration is relative (fuzz_switch adds now to values below 2^32). */
static void prepare(seed *s, uint8_t who, int id, const char *payee, const char *msisdn,
                    const char *currency, uint64_t amount, uint64_t expiration) {
  Tuma__V1__Envelope env = TUMA__V1__ENVELOPE__INIT;
  Tuma__V1__TransferPrepare m = TUMA__V1__TRANSFER_PREPARE__INIT;
  Tuma__V1__Money money = TUMA__V1__MONEY__INIT;
  Tuma__V1__Party party = TUMA__V1__PARTY__INIT;
  m.transfer_id.data = id_bytes[id];
  m.transfer_id.len = 16;
  if (payee)
    m.payee_participant = (char *)payee;
  if (msisdn) {
    party.type = TUMA__V1__PARTY_ID_TYPE__PARTY_ID_TYPE_MSISDN;
    party.id = (char *)msisdn;
    m.payee = &party;
  }
  money.currency = (char *)currency;
  money.amount = amount;
  m.amount = &money;
  m.expiration_ms = expiration;
  m.reference = (char *)"seed";
  env.correlation_id = 10 + (uint64_t)id;
  env.body_case = TUMA__V1__ENVELOPE__BODY_TRANSFER_PREPARE;
  env.transfer_prepare = &m;
  put_op(s, who, &env);
}

static void fulfil(seed *s, uint8_t who, int id, int commit) {
  Tuma__V1__Envelope env = TUMA__V1__ENVELOPE__INIT;
  Tuma__V1__TransferFulfil m = TUMA__V1__TRANSFER_FULFIL__INIT;
  Tuma__V1__Error why = TUMA__V1__ERROR__INIT;
  m.transfer_id.data = id_bytes[id];
  m.transfer_id.len = 16;
  m.state = commit ? TUMA__V1__FULFIL_STATE__FULFIL_STATE_COMMITTED
                   : TUMA__V1__FULFIL_STATE__FULFIL_STATE_ABORTED;
  if (!commit) {
    why.code = 5105;
    why.message = (char *)"no";
    m.reason = &why;
  }
  env.correlation_id = 20 + (uint64_t)id;
  env.body_case = TUMA__V1__ENVELOPE__BODY_TRANSFER_FULFIL;
  env.transfer_fulfil = &m;
  put_op(s, who, &env);
}

static void query(seed *s, uint8_t who, int id) {
  Tuma__V1__Envelope env = TUMA__V1__ENVELOPE__INIT;
  Tuma__V1__TransferQuery m = TUMA__V1__TRANSFER_QUERY__INIT;
  m.transfer_id.data = id_bytes[id];
  m.transfer_id.len = 16;
  env.correlation_id = 30 + (uint64_t)id;
  env.body_case = TUMA__V1__ENVELOPE__BODY_TRANSFER_QUERY;
  env.transfer_query = &m;
  put_op(s, who, &env);
}

static void party_register(seed *s, uint8_t who, const char *msisdn) {
  Tuma__V1__Envelope env = TUMA__V1__ENVELOPE__INIT;
  Tuma__V1__PartyRegister m = TUMA__V1__PARTY_REGISTER__INIT;
  Tuma__V1__Party party = TUMA__V1__PARTY__INIT, *list[1] = {&party};
  party.type = TUMA__V1__PARTY_ID_TYPE__PARTY_ID_TYPE_MSISDN;
  party.id = (char *)msisdn;
  m.n_parties = 1;
  m.parties = list;
  env.correlation_id = 40;
  env.body_case = TUMA__V1__ENVELOPE__BODY_PARTY_REGISTER;
  env.party_register = &m;
  put_op(s, who, &env);
}

static void party_lookup(seed *s, uint8_t who, const char *msisdn) {
  Tuma__V1__Envelope env = TUMA__V1__ENVELOPE__INIT;
  Tuma__V1__PartyLookup m = TUMA__V1__PARTY_LOOKUP__INIT;
  Tuma__V1__Party party = TUMA__V1__PARTY__INIT;
  party.type = TUMA__V1__PARTY_ID_TYPE__PARTY_ID_TYPE_MSISDN;
  party.id = (char *)msisdn;
  m.party = &party;
  env.correlation_id = 41;
  env.body_case = TUMA__V1__ENVELOPE__BODY_PARTY_LOOKUP;
  env.party_lookup = &m;
  put_op(s, who, &env);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: make_switch_corpus DIR\n");
    return 2;
  }
  const char *dir = argv[1];
  for (int i = 0; i < 8; i++) {
    memset(id_bytes[i], 0, 16);
    id_bytes[i][0] = 0x01;
    id_bytes[i][1] = 0x9a;
    id_bytes[i][6] = 0x70;
    id_bytes[i][8] = 0x80;
    id_bytes[i][15] = (uint8_t)(i + 1);
  }
  seed s;

  memset(&s, 0, sizeof s);
  hello(&s, 0);
  ping(&s, 0, 7);
  hello(&s, 1);
  save(dir, "01-hello-ping", &s);

  memset(&s, 0, sizeof s);
  prepare(&s, 0, 0, "beta", NULL, "KES", 1500, 30000);
  fulfil(&s, 1, 0, 1);
  query(&s, 0, 0);
  query(&s, 1, 0);
  query(&s, 2, 0);
  save(dir, "02-transfer-committed", &s);

  memset(&s, 0, sizeof s);
  prepare(&s, 0, 1, "beta", NULL, "UGX", 700, 30000);
  fulfil(&s, 1, 1, 0);
  fulfil(&s, 1, 1, 1);
  save(dir, "03-transfer-aborted-then-late-fulfil", &s);

  memset(&s, 0, sizeof s);
  party_register(&s, 1, "254719999999");
  party_lookup(&s, 0, "254719999999");
  prepare(&s, 0, 2, NULL, "254719999999", "KES", 10, 30000);
  prepare(&s, 0, 3, NULL, "254720000001", "KES", 10, 30000);
  fulfil(&s, 1, 2, 1);
  fulfil(&s, 2, 3, 1);
  save(dir, "04-party-routing", &s);

  memset(&s, 0, sizeof s);
  prepare(&s, 0, 4, "gamma", NULL, "KES", 50, 1);
  ping(&s, 0, 8);
  fulfil(&s, 2, 4, 1);
  save(dir, "05-expiry", &s);

  memset(&s, 0, sizeof s);
  prepare(&s, 2, 5, "alpha", NULL, "KES", 6000, 30000);
  prepare(&s, 2, 6, "alpha", NULL, "KES", 100, 30000);
  prepare(&s, 2, 6, "alpha", NULL, "KES", 100, 30000);
  prepare(&s, 2, 6, "alpha", NULL, "KES", 101, 30000);
  fulfil(&s, 0, 6, 1);
  prepare(&s, 2, 6, "alpha", NULL, "KES", 100, 30000);
  save(dir, "06-cap-and-duplicates", &s);

  memset(&s, 0, sizeof s);
  {
    Tuma__V1__AdminEnvelope env = TUMA__V1__ADMIN_ENVELOPE__INIT;
    Tuma__V1__ParticipantList list = TUMA__V1__PARTICIPANT_LIST__INIT;
    env.correlation_id = 1;
    env.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_PARTICIPANT_LIST;
    env.participant_list = &list;
    put_admin(&s, &env);

    Tuma__V1__AdminEnvelope e2 = TUMA__V1__ADMIN_ENVELOPE__INIT;
    Tuma__V1__PositionsQuery pq = TUMA__V1__POSITIONS_QUERY__INIT;
    pq.participant_id = (char *)"";
    e2.correlation_id = 2;
    e2.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_POSITIONS_QUERY;
    e2.positions_query = &pq;
    put_admin(&s, &e2);

    Tuma__V1__AdminEnvelope e3 = TUMA__V1__ADMIN_ENVELOPE__INIT;
    Tuma__V1__LiquidityAdjust la = TUMA__V1__LIQUIDITY_ADJUST__INIT;
    Tuma__V1__Money money = TUMA__V1__MONEY__INIT;
    money.currency = (char *)"KES";
    money.amount = 5000;
    la.adjustment_id.data = id_bytes[7];
    la.adjustment_id.len = 16;
    la.participant_id = (char *)"gamma";
    la.amount = &money;
    la.direction = TUMA__V1__LIQUIDITY_DIRECTION__LIQUIDITY_DIRECTION_WITHDRAW;
    la.reason = (char *)"seed";
    e3.correlation_id = 3;
    e3.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_LIQUIDITY_ADJUST;
    e3.liquidity_adjust = &la;
    put_admin(&s, &e3);

    Tuma__V1__AdminEnvelope e4 = TUMA__V1__ADMIN_ENVELOPE__INIT;
    Tuma__V1__NetDebitCapSet cap = TUMA__V1__NET_DEBIT_CAP_SET__INIT;
    Tuma__V1__Money capm = TUMA__V1__MONEY__INIT;
    capm.currency = (char *)"KES";
    capm.amount = 100;
    cap.participant_id = (char *)"alpha";
    cap.cap = &capm;
    e4.correlation_id = 4;
    e4.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_NET_DEBIT_CAP_SET;
    e4.net_debit_cap_set = &cap;
    put_admin(&s, &e4);

    Tuma__V1__AdminEnvelope e5 = TUMA__V1__ADMIN_ENVELOPE__INIT;
    Tuma__V1__ParticipantCreate pc = TUMA__V1__PARTICIPANT_CREATE__INIT;
    char *curs[1] = {(char *)"KES"};
    pc.participant_id = (char *)"delta";
    pc.name = (char *)"Delta";
    pc.n_currencies = 1;
    pc.currencies = curs;
    e5.correlation_id = 5;
    e5.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_PARTICIPANT_CREATE;
    e5.participant_create = &pc;
    put_admin(&s, &e5);

    Tuma__V1__AdminEnvelope e6 = TUMA__V1__ADMIN_ENVELOPE__INIT;
    Tuma__V1__ParticipantSetStatus ss = TUMA__V1__PARTICIPANT_SET_STATUS__INIT;
    ss.participant_id = (char *)"beta";
    ss.status = TUMA__V1__PARTICIPANT_STATUS__PARTICIPANT_STATUS_SUSPENDED;
    e6.correlation_id = 6;
    e6.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_PARTICIPANT_SET_STATUS;
    e6.participant_set_status = &ss;
    put_admin(&s, &e6);

    Tuma__V1__AdminEnvelope e7 = TUMA__V1__ADMIN_ENVELOPE__INIT;
    Tuma__V1__PartyDirectoryUpsert up = TUMA__V1__PARTY_DIRECTORY_UPSERT__INIT;
    Tuma__V1__Party party = TUMA__V1__PARTY__INIT;
    party.type = TUMA__V1__PARTY_ID_TYPE__PARTY_ID_TYPE_NATIONAL_ID;
    party.id = (char *)"12345678";
    up.party = &party;
    up.participant_id = (char *)"alpha";
    e7.correlation_id = 7;
    e7.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_PARTY_DIRECTORY_UPSERT;
    e7.party_directory_upsert = &up;
    put_admin(&s, &e7);

    Tuma__V1__AdminEnvelope e8 = TUMA__V1__ADMIN_ENVELOPE__INIT;
    Tuma__V1__PartyDirectoryRemove rm = TUMA__V1__PARTY_DIRECTORY_REMOVE__INIT;
    rm.party = &party;
    e8.correlation_id = 8;
    e8.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_PARTY_DIRECTORY_REMOVE;
    e8.party_directory_remove = &rm;
    put_admin(&s, &e8);
  }
  prepare(&s, 0, 7, "beta", NULL, "KES", 10, 30000);
  save(dir, "07-admin-all", &s);

  /* 08: a disbursement: programme (admin), budget (admin), a list of two beneficiaries in one
     chunk (manager), approval (approver), status, a report page and the reach (manager). */
  memset(&s, 0, sizeof s);
  {
    static const char csv[] = "beneficiary_id_type,beneficiary_id,amount,reference,msisdn,sex\n"
                              "national_id,12345678,10.00,seed 1,254700000001,F\n"
                              "national_id,87654321,5.50,seed 2,254710000002,M\n";
    uint8_t sha[32], fund_id[16] = {0x01, 0x7f, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9};
    SHA256((const uint8_t *)csv, sizeof csv - 1, sha);
    Tuma__V1__AdminEnvelope e = TUMA__V1__ADMIN_ENVELOPE__INIT;
    Tuma__V1__ProgrammeCreate pc = TUMA__V1__PROGRAMME_CREATE__INIT;
    pc.programme_id = (char *)"relief";
    pc.name = (char *)"Relief";
    pc.currency = (char *)"KES";
    pc.funding_participant = (char *)"gamma";
    pc.beneficiary_cap = 5000;
    e.correlation_id = 1;
    e.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_PROGRAMME_CREATE;
    e.programme_create = &pc;
    put_admin_as(&s, 3, &e);
    Tuma__V1__ProgrammeFund pf = TUMA__V1__PROGRAMME_FUND__INIT;
    pf.fund_id.data = fund_id;
    pf.fund_id.len = 16;
    pf.programme_id = (char *)"relief";
    pf.amount = 100000;
    e.correlation_id = 2;
    e.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_PROGRAMME_FUND;
    e.programme_fund = &pf;
    put_admin_as(&s, 3, &e);
    Tuma__V1__FileChunk ch = TUMA__V1__FILE_CHUNK__INIT;
    ch.file_sha256.data = sha;
    ch.file_sha256.len = 32;
    ch.file_size = sizeof csv - 1;
    ch.data.data = (uint8_t *)csv;
    ch.data.len = sizeof csv - 1;
    ch.last = 1;
    Tuma__V1__BatchSubmit bs = TUMA__V1__BATCH_SUBMIT__INIT;
    bs.programme_id = (char *)"relief";
    bs.cycle = 1;
    bs.expect_count = 2;
    bs.expect_total = 1550;
    bs.chunk = &ch;
    e.correlation_id = 3;
    e.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_BATCH_SUBMIT;
    e.batch_submit = &bs;
    put_admin_as(&s, 4, &e);
    Tuma__V1__BatchApprove ba = TUMA__V1__BATCH_APPROVE__INIT;
    ba.batch_id = 1;
    e.correlation_id = 4;
    e.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_BATCH_APPROVE;
    e.batch_approve = &ba;
    put_admin_as(&s, 5, &e);
    Tuma__V1__BatchStatusQuery sq = TUMA__V1__BATCH_STATUS_QUERY__INIT;
    sq.batch_id = 1;
    e.correlation_id = 5;
    e.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_BATCH_STATUS_QUERY;
    e.batch_status_query = &sq;
    put_admin_as(&s, 4, &e);
    Tuma__V1__BatchReportQuery rq = TUMA__V1__BATCH_REPORT_QUERY__INIT;
    rq.batch_id = 1;
    rq.limit = 10;
    e.correlation_id = 6;
    e.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_BATCH_REPORT_QUERY;
    e.batch_report_query = &rq;
    put_admin_as(&s, 4, &e);
    Tuma__V1__BatchReachQuery re = TUMA__V1__BATCH_REACH_QUERY__INIT;
    re.batch_id = 1;
    e.correlation_id = 7;
    e.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_BATCH_REACH_QUERY;
    e.batch_reach_query = &re;
    put_admin_as(&s, 4, &e);
    Tuma__V1__BatchCancel bc = TUMA__V1__BATCH_CANCEL__INIT;
    bc.batch_id = 1;
    e.correlation_id = 8;
    e.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_BATCH_CANCEL;
    e.batch_cancel = &bc;
    put_admin_as(&s, 5, &e);
  }
  save(dir, "08-disburse", &s);
  return 0;
}
