/* test_switch.c — integration suite for tumad (DESIGN §2, §4, §5; proto/README.md): a real
 * tumad (tests/switch_harness.h) driven over mutually authenticated TLS 1.3 by blocking test
 * clients (tests/tclient.h) for the operators alpha, beta, gamma and an admin.
 *
 * Scenarios: the two-phase happy path and positions, routing by participant, by registered
 * party and by MSISDN prefix, condition/fulfilment, payee rejection, expiry and late fulfils,
 * duplicates, liquidity and net-debit-cap limits, unknown payee / party, payee offline or
 * suspended, certificates (other CA, none, wrong role, unknown participant), spoofed payer,
 * malformed / oversized / truncated frames, a payee dropping mid-transfer, kill -9 and restart
 * with transfers in flight, graceful SIGTERM, liquidity adjustments and participants created
 * over the admin protocol.
 *
 * Every test ends the same way (so_finish, tests/switch_ops.h): SIGTERM, tumad must exit 0 in
 * time, then the ledger is opened read-only and must balance (Σ debits = Σ credits, posted and
 * pending), and every transfer the test saw must be in the state the operators were told:
 * COMMITTED ⇒ posted, ABORTED / EXPIRED ⇒ voided, expired or absent, RESERVED ⇒ still open.
 *
 * When a test fails, its scratch directory (tumad.ini, tumad.log, data/) is kept and the end
 * of tumad's log is written to stderr.
 */
#include <criterion/criterion.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "frame.h"
#include "ledger.h"
#include "switch_harness.h"
#include "switch_ops.h"
#include "tclient.h"

TestSuite(switch, .fini = so_fini, .timeout = 60);

static const so_config suite_cfg = {64, 0};

/* ================================================================ two-phase transfers */

Test(switch, happy_path) {
  so_ctx *t = so_start(NULL, &suite_cfg);
  tc_client *a = so_op_connect(t, "alpha"), *b = so_op_connect(t, "beta");
  tc_client *adm = so_admin_connect(t);
  so_position a0 = so_get_position(t, adm, "alpha"), b0 = so_get_position(t, adm, "beta");
  cr_assert_eq(a0.liquidity, SH_DEPOSIT, "alpha's initial deposit");
  cr_assert_eq(b0.liquidity, SH_DEPOSIT, "beta's initial deposit");
  cr_assert_eq(a0.reserved, 0);
  cr_assert_eq(a0.net, 0);

  uint8_t id[16];
  so_new_id(id);
  so_prep p = so_simple(id, "beta", 1500);
  p.payer_type = SO_PT_MSISDN;
  p.payer_id = "254700000001";
  p.payee_type = SO_PT_MSISDN;
  p.payee_id = "254711000002";
  p.reference = "invoice 42";
  p.expiration_ms = sh_now_ms() + 30000;
  so_send_prepare(a, "alpha", 11, &p);

  Tuma__V1__Envelope *f = so_recv_env(b, "beta", SO_T_ANSWER);
  cr_assert_eq(f->body_case, TUMA__V1__ENVELOPE__BODY_TRANSFER_FORWARD, "beta: got %s",
               so_body_name(f->body_case));
  const Tuma__V1__TransferForward *fw = f->transfer_forward;
  cr_assert(fw->transfer_id.len == 16 && !memcmp(fw->transfer_id.data, id, 16));
  cr_assert_str_eq(fw->payer_participant, "alpha");
  cr_assert_str_eq(fw->amount->currency, "KES");
  cr_assert_eq(fw->amount->amount, 1500);
  cr_assert_eq(fw->expiration_ms, p.expiration_ms);
  cr_assert_str_eq(fw->reference, "invoice 42");
  cr_assert_not_null(fw->payer);
  cr_assert_str_eq(fw->payer->id, "254700000001");
  cr_assert_not_null(fw->payee);
  cr_assert_str_eq(fw->payee->id, "254711000002");
  cr_assert_eq(fw->condition.len, 0);
  tuma__v1__envelope__free_unpacked(f, NULL);

  /* Reserved while the payee decides. */
  so_position a1 = so_get_position(t, adm, "alpha");
  cr_assert_eq(a1.reserved, 1500, "alpha's reservation");
  cr_assert_eq(a1.liquidity, SH_DEPOSIT);
  cr_assert_eq(a1.available, SH_DEPOSIT - 1500);

  so_send_fulfil(b, "beta", 21, id, SO_FS_COMMITTED, NULL, 0);
  so_want_result wa = {11, id, SO_ST_COMMITTED, 0};
  Tuma__V1__Envelope *ra = so_expect_result_env(a, "alpha", &wa, SO_T_ANSWER);
  cr_assert_eq(ra->transfer_result->fulfilment.len, 0, "no condition, no fulfilment");
  tuma__v1__envelope__free_unpacked(ra, NULL);
  so_expect_result(b, "beta", 21, id, SO_ST_COMMITTED, 0);
  so_track(t, id, SO_ST_COMMITTED, "happy");

  so_position a2 = so_get_position(t, adm, "alpha"), b2 = so_get_position(t, adm, "beta");
  cr_assert_eq(a2.liquidity, SH_DEPOSIT - 1500);
  cr_assert_eq(a2.reserved, 0);
  cr_assert_eq(a2.net, 1500, "alpha owes what it sent");
  cr_assert_eq(b2.liquidity, SH_DEPOSIT + 1500);
  cr_assert_eq(b2.net, -1500);

  /* Both sides may query it; a third participant may not. */
  so_send_query(a, "alpha", 12, id);
  so_expect_result(a, "alpha", 12, id, SO_ST_COMMITTED, 0);
  so_send_query(b, "beta", 22, id);
  so_expect_result(b, "beta", 22, id, SO_ST_COMMITTED, 0);
  tc_client *g = so_op_connect(t, "gamma");
  so_send_query(g, "gamma", 31, id);
  so_expect_error(g, "gamma", 31, 3208);
  so_expect_silence(a, "alpha", SO_T_SILENCE);
  so_expect_silence(b, "beta", SO_T_SILENCE);
  so_finish(t);
}

Test(switch, routing_by_party) {
  so_ctx *t = so_start(NULL, &suite_cfg);
  tc_client *a = so_op_connect(t, "alpha"), *b = so_op_connect(t, "beta");

  /* beta registers a wallet outside every prefix. */
  Tuma__V1__Envelope env = TUMA__V1__ENVELOPE__INIT;
  Tuma__V1__PartyRegister reg = TUMA__V1__PARTY_REGISTER__INIT;
  Tuma__V1__Party party = TUMA__V1__PARTY__INIT;
  Tuma__V1__Party *parties[1] = {&party};
  party.type = SO_PT_MSISDN;
  party.id = (char *)"255700000001";
  reg.n_parties = 1;
  reg.parties = parties;
  env.correlation_id = 5;
  env.body_case = TUMA__V1__ENVELOPE__BODY_PARTY_REGISTER;
  env.party_register = &reg;
  so_send_env(b, "beta", &env);
  Tuma__V1__Envelope *r = so_recv_env(b, "beta", SO_T_ANSWER);
  cr_assert_eq(r->body_case, TUMA__V1__ENVELOPE__BODY_PARTY_REGISTERED, "beta: got %s",
               so_body_name(r->body_case));
  cr_assert_eq(r->correlation_id, 5);
  cr_assert_eq(r->party_registered->registered, 1);
  tuma__v1__envelope__free_unpacked(r, NULL);

  /* alpha looks it up, and an unknown one. */
  Tuma__V1__PartyLookup look = TUMA__V1__PARTY_LOOKUP__INIT;
  look.party = &party;
  env = (Tuma__V1__Envelope)TUMA__V1__ENVELOPE__INIT;
  env.correlation_id = 6;
  env.body_case = TUMA__V1__ENVELOPE__BODY_PARTY_LOOKUP;
  env.party_lookup = &look;
  so_send_env(a, "alpha", &env);
  r = so_recv_env(a, "alpha", SO_T_ANSWER);
  cr_assert_eq(r->body_case, TUMA__V1__ENVELOPE__BODY_PARTY_LOOKUP_RESULT);
  cr_assert_eq(r->correlation_id, 6);
  cr_assert_str_eq(r->party_lookup_result->participant_id, "beta");
  cr_assert(!r->party_lookup_result->error || r->party_lookup_result->error->code == 0);
  tuma__v1__envelope__free_unpacked(r, NULL);
  Tuma__V1__Party unknown = TUMA__V1__PARTY__INIT;
  unknown.type = SO_PT_MSISDN;
  unknown.id = (char *)"15550001111";
  look.party = &unknown;
  env.correlation_id = 7;
  so_send_env(a, "alpha", &env);
  r = so_recv_env(a, "alpha", SO_T_ANSWER);
  cr_assert_eq(r->body_case, TUMA__V1__ENVELOPE__BODY_PARTY_LOOKUP_RESULT);
  cr_assert_str_eq(r->party_lookup_result->participant_id, "");
  cr_assert(r->party_lookup_result->error && r->party_lookup_result->error->code == 3204);
  tuma__v1__envelope__free_unpacked(r, NULL);

  /* Prepare by party only: routed to beta by the registration. */
  uint8_t id1[16];
  so_new_id(id1);
  so_prep p = so_simple(id1, NULL, 700);
  p.payee_type = SO_PT_MSISDN;
  p.payee_id = "255700000001";
  so_send_prepare(a, "alpha", 8, &p);
  Tuma__V1__Envelope *f = so_recv_env(b, "beta", SO_T_ANSWER);
  cr_assert_eq(f->body_case, TUMA__V1__ENVELOPE__BODY_TRANSFER_FORWARD, "beta: got %s",
               so_body_name(f->body_case));
  cr_assert(!memcmp(f->transfer_forward->transfer_id.data, id1, 16));
  cr_assert_not_null(f->transfer_forward->payee);
  cr_assert_eq(f->transfer_forward->payee->type, SO_PT_MSISDN);
  cr_assert_str_eq(f->transfer_forward->payee->id, "255700000001");
  tuma__v1__envelope__free_unpacked(f, NULL);
  so_send_fulfil(b, "beta", 50, id1, SO_FS_COMMITTED, NULL, 0);
  so_expect_result(a, "alpha", 8, id1, SO_ST_COMMITTED, 0);
  so_expect_result(b, "beta", 50, id1, SO_ST_COMMITTED, 0);
  so_track(t, id1, SO_ST_COMMITTED, "by registered party");

  /* An MSISDN with no entry routes by beta's prefix 25471. */
  uint8_t id2[16];
  so_new_id(id2);
  p = so_simple(id2, NULL, 800);
  p.payee_type = SO_PT_MSISDN;
  p.payee_id = "254719999999";
  so_send_prepare(a, "alpha", 9, &p);
  so_expect_forward(b, "beta", id2, "alpha", 800);
  so_send_fulfil(b, "beta", 51, id2, SO_FS_COMMITTED, NULL, 0);
  so_expect_result(a, "alpha", 9, id2, SO_ST_COMMITTED, 0);
  so_expect_result(b, "beta", 51, id2, SO_ST_COMMITTED, 0);
  so_track(t, id2, SO_ST_COMMITTED, "by MSISDN prefix");

  /* The scheme operator points a national ID at gamma, then removes it. */
  tc_client *adm = so_admin_connect(t);
  Tuma__V1__Party nid = TUMA__V1__PARTY__INIT;
  nid.type = SO_PT_NATIONAL_ID;
  nid.id = (char *)"KE-77777777";
  Tuma__V1__AdminEnvelope aenv = TUMA__V1__ADMIN_ENVELOPE__INIT;
  Tuma__V1__PartyDirectoryUpsert up = TUMA__V1__PARTY_DIRECTORY_UPSERT__INIT;
  up.party = &nid;
  up.participant_id = (char *)"gamma";
  aenv.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_PARTY_DIRECTORY_UPSERT;
  aenv.party_directory_upsert = &up;
  cr_assert_eq(so_admin_result(t, adm, &aenv), 0, "directory upsert");
  look.party = &nid;
  env.correlation_id = 10;
  env.body_case = TUMA__V1__ENVELOPE__BODY_PARTY_LOOKUP;
  env.party_lookup = &look;
  so_send_env(a, "alpha", &env);
  r = so_recv_env(a, "alpha", SO_T_ANSWER);
  cr_assert_eq(r->body_case, TUMA__V1__ENVELOPE__BODY_PARTY_LOOKUP_RESULT);
  cr_assert_str_eq(r->party_lookup_result->participant_id, "gamma");
  tuma__v1__envelope__free_unpacked(r, NULL);
  Tuma__V1__PartyDirectoryRemove rm = TUMA__V1__PARTY_DIRECTORY_REMOVE__INIT;
  rm.party = &nid;
  aenv = (Tuma__V1__AdminEnvelope)TUMA__V1__ADMIN_ENVELOPE__INIT;
  aenv.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_PARTY_DIRECTORY_REMOVE;
  aenv.party_directory_remove = &rm;
  cr_assert_eq(so_admin_result(t, adm, &aenv), 0, "directory remove");
  cr_assert_eq(so_admin_result(t, adm, &aenv), 3204, "removing it again: 3204");
  env.correlation_id = 11;
  so_send_env(a, "alpha", &env);
  r = so_recv_env(a, "alpha", SO_T_ANSWER);
  cr_assert_eq(r->body_case, TUMA__V1__ENVELOPE__BODY_PARTY_LOOKUP_RESULT);
  cr_assert_str_eq(r->party_lookup_result->participant_id, "");
  cr_assert(r->party_lookup_result->error && r->party_lookup_result->error->code == 3204);
  tuma__v1__envelope__free_unpacked(r, NULL);
  so_finish(t);
}

Test(switch, condition_and_good_fulfilment) {
  so_ctx *t = so_start(NULL, &suite_cfg);
  tc_client *a = so_op_connect(t, "alpha"), *b = so_op_connect(t, "beta");
  uint8_t id[16], ful[32], cond[32];
  so_new_id(id);
  cr_assert_eq(RAND_bytes(ful, sizeof ful), 1);
  SHA256(ful, sizeof ful, cond);
  so_prep p = so_simple(id, "beta", 2500);
  p.condition = cond;
  so_send_prepare(a, "alpha", 3, &p);
  Tuma__V1__Envelope *f = so_recv_env(b, "beta", SO_T_ANSWER);
  cr_assert_eq(f->body_case, TUMA__V1__ENVELOPE__BODY_TRANSFER_FORWARD);
  cr_assert_eq(f->transfer_forward->condition.len, 32, "the forward carries the condition");
  cr_assert_arr_eq(f->transfer_forward->condition.data, cond, 32);
  tuma__v1__envelope__free_unpacked(f, NULL);
  so_send_fulfil(b, "beta", 4, id, SO_FS_COMMITTED, ful, 0);
  so_want_result w = {3, id, SO_ST_COMMITTED, 0};
  Tuma__V1__Envelope *r = so_expect_result_env(a, "alpha", &w, SO_T_ANSWER);
  cr_assert_eq(r->transfer_result->fulfilment.len, 32, "the payer gets the fulfilment");
  cr_assert_arr_eq(r->transfer_result->fulfilment.data, ful, 32);
  tuma__v1__envelope__free_unpacked(r, NULL);
  so_expect_result(b, "beta", 4, id, SO_ST_COMMITTED, 0);
  so_track(t, id, SO_ST_COMMITTED, "good fulfilment");
  so_finish(t);
}

Test(switch, condition_and_bad_fulfilment) {
  so_ctx *t = so_start(NULL, &suite_cfg);
  tc_client *a = so_op_connect(t, "alpha"), *b = so_op_connect(t, "beta");
  tc_client *adm = so_admin_connect(t);
  uint8_t ful[32], cond[32], wrong[32];
  cr_assert_eq(RAND_bytes(ful, sizeof ful), 1);
  SHA256(ful, sizeof ful, cond);
  memcpy(wrong, ful, 32);
  wrong[31] ^= 1;

  /* A wrong fulfilment. */
  uint8_t id1[16];
  so_new_id(id1);
  so_prep p = so_simple(id1, "beta", 2500);
  p.condition = cond;
  so_send_prepare(a, "alpha", 3, &p);
  so_expect_forward(b, "beta", id1, "alpha", 2500);
  so_send_fulfil(b, "beta", 4, id1, SO_FS_COMMITTED, wrong, 0);
  so_expect_result(a, "alpha", 3, id1, SO_ST_ABORTED, 3100);
  so_expect_result(b, "beta", 4, id1, SO_ST_ABORTED, 3100);
  so_track(t, id1, SO_ST_ABORTED, "wrong fulfilment");

  /* No fulfilment at all. */
  uint8_t id2[16];
  so_new_id(id2);
  p = so_simple(id2, "beta", 2600);
  p.condition = cond;
  so_send_prepare(a, "alpha", 5, &p);
  so_expect_forward(b, "beta", id2, "alpha", 2600);
  so_send_fulfil(b, "beta", 6, id2, SO_FS_COMMITTED, NULL, 0);
  so_expect_result(a, "alpha", 5, id2, SO_ST_ABORTED, 3100);
  so_expect_result(b, "beta", 6, id2, SO_ST_ABORTED, 3100);
  so_track(t, id2, SO_ST_ABORTED, "missing fulfilment");

  so_position pa = so_get_position(t, adm, "alpha"), pb = so_get_position(t, adm, "beta");
  cr_assert_eq(pa.liquidity, SH_DEPOSIT, "nothing moved");
  cr_assert_eq(pa.reserved, 0, "the reservations were released");
  cr_assert_eq(pb.liquidity, SH_DEPOSIT);
  so_finish(t);
}

Test(switch, payee_rejects) {
  so_ctx *t = so_start(NULL, &suite_cfg);
  tc_client *a = so_op_connect(t, "alpha"), *b = so_op_connect(t, "beta");
  tc_client *adm = so_admin_connect(t);
  uint8_t id1[16], id2[16], id3[16];
  so_new_id(id1);
  so_new_id(id2);
  so_new_id(id3);
  so_prep p = so_simple(id1, "beta", 4000);
  so_send_prepare(a, "alpha", 1, &p);
  so_expect_forward(b, "beta", id1, "alpha", 4000);
  cr_assert_eq(so_get_position(t, adm, "alpha").reserved, 4000);
  so_send_fulfil(b, "beta", 2, id1, SO_FS_ABORTED, NULL, 5105);
  so_expect_result(a, "alpha", 1, id1, SO_ST_ABORTED, 5105);
  so_expect_result(b, "beta", 2, id1, SO_ST_ABORTED, 5105);
  so_track(t, id1, SO_ST_ABORTED, "rejected 5105");

  /* Another payee code (5xxx) is passed on as it is. */
  p = so_simple(id2, "beta", 4100);
  so_send_prepare(a, "alpha", 3, &p);
  so_expect_forward(b, "beta", id2, "alpha", 4100);
  so_send_fulfil(b, "beta", 4, id2, SO_FS_ABORTED, NULL, 5100);
  so_expect_result(a, "alpha", 3, id2, SO_ST_ABORTED, 5100);
  so_expect_result(b, "beta", 4, id2, SO_ST_ABORTED, 5100);
  so_track(t, id2, SO_ST_ABORTED, "rejected 5100");

  /* A code outside 5000-5999 becomes 5105. */
  p = so_simple(id3, "beta", 4200);
  so_send_prepare(a, "alpha", 5, &p);
  so_expect_forward(b, "beta", id3, "alpha", 4200);
  so_send_fulfil(b, "beta", 6, id3, SO_FS_ABORTED, NULL, 3204);
  so_expect_result(a, "alpha", 5, id3, SO_ST_ABORTED, 5105);
  so_expect_result(b, "beta", 6, id3, SO_ST_ABORTED, 5105);
  so_track(t, id3, SO_ST_ABORTED, "rejected 3204 -> 5105");

  so_position pa = so_get_position(t, adm, "alpha");
  cr_assert_eq(pa.liquidity, SH_DEPOSIT, "funds released");
  cr_assert_eq(pa.reserved, 0);
  cr_assert_eq(pa.net, 0);
  cr_assert_eq(so_get_position(t, adm, "beta").liquidity, SH_DEPOSIT);
  so_finish(t);
}

Test(switch, expiry) {
  so_ctx *t = so_start(NULL, &suite_cfg);
  tc_client *a = so_op_connect(t, "alpha"), *b = so_op_connect(t, "beta");
  tc_client *adm = so_admin_connect(t);
  uint8_t id[16];
  so_new_id(id);
  so_prep p = so_simple(id, "beta", 3000);
  p.expiration_ms = sh_now_ms() + 1500;
  so_send_prepare(a, "alpha", 70, &p);
  uint64_t fcorr = so_expect_forward(b, "beta", id, "alpha", 3000);
  /* beta never answers: both hear of the expiry, not before the expiration. */
  so_want_result wa = {70, id, SO_ST_EXPIRED, 3303};
  Tuma__V1__Envelope *r = so_expect_result_env(a, "alpha", &wa, 6000);
  cr_assert_geq(sh_now_ms(), p.expiration_ms, "not expired before its expiration");
  cr_assert_geq(r->transfer_result->completed_at_ms, p.expiration_ms);
  tuma__v1__envelope__free_unpacked(r, NULL);
  so_expect_result(b, "beta", fcorr, id, SO_ST_EXPIRED, 3303);
  so_track(t, id, SO_ST_EXPIRED, "expired");

  /* A late fulfil, a query and a retried prepare all say EXPIRED. */
  so_send_fulfil(b, "beta", 71, id, SO_FS_COMMITTED, NULL, 0);
  so_expect_result(b, "beta", 71, id, SO_ST_EXPIRED, 3303);
  so_send_query(a, "alpha", 72, id);
  so_expect_result(a, "alpha", 72, id, SO_ST_EXPIRED, 3303);
  so_send_prepare(a, "alpha", 73, &p);
  so_expect_result(a, "alpha", 73, id, SO_ST_EXPIRED, 3303);
  so_expect_silence(b, "beta", SO_T_SILENCE);

  so_position pa = so_get_position(t, adm, "alpha");
  cr_assert_eq(pa.liquidity, SH_DEPOSIT);
  cr_assert_eq(pa.reserved, 0, "the reservation was released");
  so_finish(t);
}

Test(switch, duplicates) {
  so_ctx *t = so_start(NULL, &suite_cfg);
  tc_client *a = so_op_connect(t, "alpha"), *b = so_op_connect(t, "beta");
  tc_client *adm = so_admin_connect(t);
  uint8_t id[16];
  so_new_id(id);
  so_prep p = so_simple(id, "beta", 1234);
  p.expiration_ms = sh_now_ms() + 30000;
  p.reference = "dup";
  so_send_prepare(a, "alpha", 1, &p);
  so_expect_forward(b, "beta", id, "alpha", 1234);

  /* Same id, same content, in flight: RESERVED, and no second forward. */
  so_send_prepare(a, "alpha", 2, &p);
  so_expect_result(a, "alpha", 2, id, SO_ST_RESERVED, 0);
  so_expect_silence(b, "beta", SO_T_SILENCE);

  /* Same id, different content: 3106; the transfer itself is unaffected. */
  so_prep q = p;
  q.amount = 1235;
  so_send_prepare(a, "alpha", 3, &q);
  so_want_result w3 = {3, id, SO_ST_ABORTED, 3106};
  Tuma__V1__Envelope *r = so_recv_env(a, "alpha", SO_T_ANSWER);
  cr_assert_eq(r->body_case, TUMA__V1__ENVELOPE__BODY_TRANSFER_RESULT);
  cr_assert_eq(r->correlation_id, w3.corr);
  cr_assert(r->transfer_result->error && r->transfer_result->error->code == 3106,
            "modified request: 3106");
  tuma__v1__envelope__free_unpacked(r, NULL);
  q = p;
  q.reference = "dup, changed";
  so_send_prepare(a, "alpha", 4, &q);
  r = so_recv_env(a, "alpha", SO_T_ANSWER);
  cr_assert_eq(r->body_case, TUMA__V1__ENVELOPE__BODY_TRANSFER_RESULT);
  cr_assert(r->transfer_result->error && r->transfer_result->error->code == 3106,
            "modified reference: 3106");
  tuma__v1__envelope__free_unpacked(r, NULL);
  so_expect_silence(b, "beta", SO_T_SILENCE);
  cr_assert_eq(so_get_position(t, adm, "alpha").reserved, 1234, "reserved once");

  /* The payee commits: the original prepare gets the outcome. */
  so_send_fulfil(b, "beta", 10, id, SO_FS_COMMITTED, NULL, 0);
  so_expect_result(a, "alpha", 1, id, SO_ST_COMMITTED, 0);
  so_expect_result(b, "beta", 10, id, SO_ST_COMMITTED, 0);
  so_track(t, id, SO_ST_COMMITTED, "duplicated");

  /* After the commit: the same prepare gets COMMITTED; a changed one 3106; a repeated fulfil
   * the final state. */
  so_send_prepare(a, "alpha", 5, &p);
  so_expect_result(a, "alpha", 5, id, SO_ST_COMMITTED, 0);
  q = p;
  q.amount = 999;
  so_send_prepare(a, "alpha", 6, &q);
  r = so_recv_env(a, "alpha", SO_T_ANSWER);
  cr_assert_eq(r->body_case, TUMA__V1__ENVELOPE__BODY_TRANSFER_RESULT);
  cr_assert_eq(r->correlation_id, 6);
  cr_assert(r->transfer_result->error && r->transfer_result->error->code == 3106,
            "modified after commit: 3106");
  tuma__v1__envelope__free_unpacked(r, NULL);
  so_send_fulfil(b, "beta", 11, id, SO_FS_COMMITTED, NULL, 0);
  so_expect_result(b, "beta", 11, id, SO_ST_COMMITTED, 0);
  so_expect_silence(b, "beta", SO_T_SILENCE);

  so_position pa = so_get_position(t, adm, "alpha");
  cr_assert_eq(pa.liquidity, SH_DEPOSIT - 1234, "debited once");
  cr_assert_eq(pa.reserved, 0);

  /* A payer that retries after a long outage resends a prepare whose expiration has passed:
   * it must still learn the outcome (COMMITTED), not a validation error. */
  uint8_t id2[16];
  so_new_id(id2);
  so_prep p2 = so_simple(id2, "beta", 321);
  p2.expiration_ms = sh_now_ms() + 1000;
  so_send_prepare(a, "alpha", 7, &p2);
  so_expect_forward(b, "beta", id2, "alpha", 321);
  so_send_fulfil(b, "beta", 12, id2, SO_FS_COMMITTED, NULL, 0);
  so_expect_result(a, "alpha", 7, id2, SO_ST_COMMITTED, 0);
  so_expect_result(b, "beta", 12, id2, SO_ST_COMMITTED, 0);
  so_track(t, id2, SO_ST_COMMITTED, "retried after its expiration");
  while (sh_now_ms() <= p2.expiration_ms + 100)
    so_sleep_ms(50);
  so_send_prepare(a, "alpha", 8, &p2);
  so_expect_result(a, "alpha", 8, id2, SO_ST_COMMITTED, 0);
  so_finish(t);
}

/* ================================================================ limits and refusals */

Test(switch, liquidity_limit) {
  so_ctx *t = so_start(NULL, &suite_cfg);
  tc_client *a = so_op_connect(t, "alpha"), *b = so_op_connect(t, "beta");
  tc_client *adm = so_admin_connect(t);
  uint8_t id1[16], id2[16], id3[16];
  so_new_id(id1);
  so_new_id(id2);
  so_new_id(id3);
  so_prep p = so_simple(id1, "beta", SH_DEPOSIT + 1);
  so_send_prepare(a, "alpha", 1, &p);
  so_expect_result(a, "alpha", 1, id1, SO_ST_ABORTED, 4001);
  so_expect_silence(b, "beta", SO_T_SILENCE);
  so_track(t, id1, SO_ST_ABORTED, "above liquidity");

  /* Exactly all of it is allowed… */
  p = so_simple(id2, "beta", SH_DEPOSIT);
  so_send_prepare(a, "alpha", 2, &p);
  so_expect_forward(b, "beta", id2, "alpha", SH_DEPOSIT);
  /* …and while it is reserved, nothing more. */
  p = so_simple(id3, "beta", 1);
  so_send_prepare(a, "alpha", 3, &p);
  so_expect_result(a, "alpha", 3, id3, SO_ST_ABORTED, 4001);
  so_track(t, id3, SO_ST_ABORTED, "nothing left");
  so_send_fulfil(b, "beta", 20, id2, SO_FS_COMMITTED, NULL, 0);
  so_expect_result(a, "alpha", 2, id2, SO_ST_COMMITTED, 0);
  so_expect_result(b, "beta", 20, id2, SO_ST_COMMITTED, 0);
  so_track(t, id2, SO_ST_COMMITTED, "all of it");
  so_position pa = so_get_position(t, adm, "alpha");
  cr_assert_eq(pa.liquidity, 0);
  cr_assert_eq(pa.available, 0);
  so_finish(t);
}

Test(switch, net_debit_cap) {
  so_ctx *t = so_start(NULL, &suite_cfg);
  tc_client *g = so_op_connect(t, "gamma"), *a = so_op_connect(t, "alpha");
  tc_client *adm = so_admin_connect(t);
  cr_assert_eq(so_get_position(t, adm, "gamma").cap, SH_GAMMA_CAP, "gamma's configured cap");
  uint8_t id[5][16];
  for (int i = 0; i < 5; i++)
    so_new_id(id[i]);

  so_prep p = so_simple(id[0], "alpha", 3000);
  so_send_prepare(g, "gamma", 1, &p);
  so_expect_forward(a, "alpha", id[0], "gamma", 3000);
  so_send_fulfil(a, "alpha", 101, id[0], SO_FS_COMMITTED, NULL, 0);
  so_expect_result(g, "gamma", 1, id[0], SO_ST_COMMITTED, 0);
  so_expect_result(a, "alpha", 101, id[0], SO_ST_COMMITTED, 0);
  so_track(t, id[0], SO_ST_COMMITTED, "ndc 3000");

  /* 3000 + 2500 > 5000: refused by the cap, although liquidity would allow it. */
  p = so_simple(id[1], "alpha", 2500);
  so_send_prepare(g, "gamma", 2, &p);
  so_expect_result(g, "gamma", 2, id[1], SO_ST_ABORTED, 4200);
  so_expect_silence(a, "alpha", SO_T_SILENCE);
  so_track(t, id[1], SO_ST_ABORTED, "ndc exceeded");

  /* 3000 + 2000 = 5000: up to the cap exactly. */
  p = so_simple(id[2], "alpha", 2000);
  so_send_prepare(g, "gamma", 3, &p);
  so_expect_forward(a, "alpha", id[2], "gamma", 2000);
  so_send_fulfil(a, "alpha", 102, id[2], SO_FS_COMMITTED, NULL, 0);
  so_expect_result(g, "gamma", 3, id[2], SO_ST_COMMITTED, 0);
  so_expect_result(a, "alpha", 102, id[2], SO_ST_COMMITTED, 0);
  so_track(t, id[2], SO_ST_COMMITTED, "ndc to the cap");
  so_position pg = so_get_position(t, adm, "gamma");
  cr_assert_eq(pg.net, 5000);
  cr_assert_eq(pg.liquidity, SH_DEPOSIT - 5000);

  /* Receiving 1000 makes room for 1000. */
  p = so_simple(id[3], "gamma", 1000);
  so_send_prepare(a, "alpha", 4, &p);
  so_expect_forward(g, "gamma", id[3], "alpha", 1000);
  so_send_fulfil(g, "gamma", 103, id[3], SO_FS_COMMITTED, NULL, 0);
  so_expect_result(a, "alpha", 4, id[3], SO_ST_COMMITTED, 0);
  so_expect_result(g, "gamma", 103, id[3], SO_ST_COMMITTED, 0);
  so_track(t, id[3], SO_ST_COMMITTED, "ndc room");
  p = so_simple(id[4], "alpha", 1000);
  so_send_prepare(g, "gamma", 5, &p);
  so_expect_forward(a, "alpha", id[4], "gamma", 1000);
  so_send_fulfil(a, "alpha", 104, id[4], SO_FS_COMMITTED, NULL, 0);
  so_expect_result(g, "gamma", 5, id[4], SO_ST_COMMITTED, 0);
  so_expect_result(a, "alpha", 104, id[4], SO_ST_COMMITTED, 0);
  so_track(t, id[4], SO_ST_COMMITTED, "ndc reuse");
  cr_assert_eq(so_get_position(t, adm, "gamma").net, 5000);

  /* A cap below the net position is refused; a higher one makes room. */
  Tuma__V1__AdminEnvelope env = TUMA__V1__ADMIN_ENVELOPE__INIT;
  Tuma__V1__NetDebitCapSet m = TUMA__V1__NET_DEBIT_CAP_SET__INIT;
  Tuma__V1__Money cap = TUMA__V1__MONEY__INIT;
  cap.currency = (char *)"KES";
  cap.amount = 4000;
  m.participant_id = (char *)"gamma";
  m.cap = &cap;
  env.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_NET_DEBIT_CAP_SET;
  env.net_debit_cap_set = &m;
  cr_assert_eq(so_admin_result(t, adm, &env), 4200, "cap below the net position");
  cr_assert_eq(so_get_position(t, adm, "gamma").cap, SH_GAMMA_CAP, "cap unchanged");
  cap.amount = 8000;
  cr_assert_eq(so_admin_result(t, adm, &env), 0, "cap raised");
  cr_assert_eq(so_admin_result(t, adm, &env), 0, "the same cap again");
  cr_assert_eq(so_get_position(t, adm, "gamma").cap, 8000);
  uint8_t more[16];
  so_new_id(more);
  p = so_simple(more, "alpha", 3000);
  so_send_prepare(g, "gamma", 6, &p);
  so_expect_forward(a, "alpha", more, "gamma", 3000);
  so_send_fulfil(a, "alpha", 105, more, SO_FS_COMMITTED, NULL, 0);
  so_expect_result(g, "gamma", 6, more, SO_ST_COMMITTED, 0);
  so_expect_result(a, "alpha", 105, more, SO_ST_COMMITTED, 0);
  so_track(t, more, SO_ST_COMMITTED, "ndc raised");
  cr_assert_eq(so_get_position(t, adm, "gamma").net, 8000);
  so_finish(t);
}

Test(switch, pipelined_transfers) {
  enum { N = 40 };
  so_ctx *t = so_start(NULL, &suite_cfg);
  tc_client *a = so_op_connect(t, "alpha"), *b = so_op_connect(t, "beta");
  tc_client *adm = so_admin_connect(t);
  uint8_t ids[N][16];
  int got_forward[N] = {0}, got_result[N] = {0}, got_confirm[N] = {0};
  uint64_t sent = 0;
  for (int i = 0; i < N; i++) {
    so_new_id(ids[i]);
    so_prep p = so_simple(ids[i], "beta", 10 + (uint64_t)i);
    so_send_prepare(a, "alpha", 100 + (uint64_t)i, &p);
  }
  /* beta gets every forward once, in whatever order the ledger batches them. */
  for (int k = 0; k < N; k++) {
    Tuma__V1__Envelope *r = so_recv_env(b, "beta", SO_T_ANSWER);
    cr_assert_eq(r->body_case, TUMA__V1__ENVELOPE__BODY_TRANSFER_FORWARD, "beta: got %s",
                 so_body_name(r->body_case));
    int i = 0;
    while (i < N && memcmp(r->transfer_forward->transfer_id.data, ids[i], 16))
      i++;
    cr_assert_lt(i, N, "a forward of a transfer alpha sent");
    cr_assert_eq(got_forward[i]++, 0, "forwarded once");
    cr_assert_eq(r->transfer_forward->amount->amount, 10 + (uint64_t)i);
    tuma__v1__envelope__free_unpacked(r, NULL);
  }
  /* Even ones committed, odd ones rejected, all pipelined. */
  for (int i = 0; i < N; i++) {
    so_send_fulfil(b, "beta", 500 + (uint64_t)i, ids[i], i % 2 ? SO_FS_ABORTED : SO_FS_COMMITTED,
                   NULL, i % 2 ? 5105 : 0);
    if (i % 2 == 0)
      sent += 10 + (uint64_t)i;
  }
  for (int k = 0; k < N; k++) {
    Tuma__V1__Envelope *r = so_recv_env(a, "alpha", SO_T_ANSWER);
    cr_assert_eq(r->body_case, TUMA__V1__ENVELOPE__BODY_TRANSFER_RESULT);
    int i = (int)r->correlation_id - 100;
    cr_assert(i >= 0 && i < N, "alpha: a result for one of its prepares (corr %llu)",
              (unsigned long long)r->correlation_id);
    cr_assert_eq(got_result[i]++, 0, "one result per prepare");
    cr_assert_arr_eq(r->transfer_result->transfer_id.data, ids[i], 16, "matched by correlation");
    cr_assert_eq(r->transfer_result->state, i % 2 ? SO_ST_ABORTED : SO_ST_COMMITTED);
    tuma__v1__envelope__free_unpacked(r, NULL);
    so_track(t, ids[i], i % 2 ? SO_ST_ABORTED : SO_ST_COMMITTED, "pipelined");
  }
  for (int k = 0; k < N; k++) {
    Tuma__V1__Envelope *r = so_recv_env(b, "beta", SO_T_ANSWER);
    cr_assert_eq(r->body_case, TUMA__V1__ENVELOPE__BODY_TRANSFER_RESULT);
    int i = (int)r->correlation_id - 500;
    cr_assert(i >= 0 && i < N, "beta: a confirmation of one of its fulfils");
    cr_assert_eq(got_confirm[i]++, 0);
    cr_assert_arr_eq(r->transfer_result->transfer_id.data, ids[i], 16);
    cr_assert_eq(r->transfer_result->state, i % 2 ? SO_ST_ABORTED : SO_ST_COMMITTED);
    tuma__v1__envelope__free_unpacked(r, NULL);
  }
  so_position pa = so_get_position(t, adm, "alpha"), pb = so_get_position(t, adm, "beta");
  cr_assert_eq(pa.liquidity, SH_DEPOSIT - sent);
  cr_assert_eq(pa.reserved, 0);
  cr_assert_eq(pb.liquidity, SH_DEPOSIT + sent);
  /* /metrics counts them. */
  char body[16384];
  cr_assert_eq(sh_http_get(t->h, "/metrics", body, sizeof body), 200);
  cr_assert(strstr(body, "tuma_transfers_total{outcome=\"committed\"} 20\n") != NULL,
            "metrics: 20 committed:\n%s", body);
  cr_assert(strstr(body, "tuma_transfers_total{outcome=\"aborted\"} 20\n") != NULL,
            "metrics: 20 aborted");
  so_finish(t);
}

Test(switch, unknown_payee_participant) {
  so_ctx *t = so_start(NULL, &suite_cfg);
  tc_client *a = so_op_connect(t, "alpha"), *b = so_op_connect(t, "beta");
  uint8_t id[16];
  so_new_id(id);
  so_prep p = so_simple(id, "nobody", 100);
  so_send_prepare(a, "alpha", 1, &p);
  so_expect_result(a, "alpha", 1, id, SO_ST_ABORTED, 3203);
  so_expect_silence(b, "beta", SO_T_SILENCE);
  so_track(t, id, SO_ST_ABORTED, "unknown payee");
  so_finish(t);
}

Test(switch, unknown_party) {
  so_ctx *t = so_start(NULL, &suite_cfg);
  tc_client *a = so_op_connect(t, "alpha"), *b = so_op_connect(t, "beta");
  uint8_t id1[16], id2[16];
  so_new_id(id1);
  so_new_id(id2);
  so_prep p = so_simple(id1, NULL, 100);
  p.payee_type = SO_PT_MSISDN;
  p.payee_id = "15551234567"; /* no entry, no prefix */
  so_send_prepare(a, "alpha", 1, &p);
  so_expect_result(a, "alpha", 1, id1, SO_ST_ABORTED, 3204);
  so_track(t, id1, SO_ST_ABORTED, "unknown msisdn");
  p = so_simple(id2, NULL, 100);
  p.payee_type = SO_PT_NATIONAL_ID;
  p.payee_id = "KE-12345678";
  so_send_prepare(a, "alpha", 2, &p);
  so_expect_result(a, "alpha", 2, id2, SO_ST_ABORTED, 3204);
  so_track(t, id2, SO_ST_ABORTED, "unknown national id");
  so_expect_silence(b, "beta", SO_T_SILENCE);
  so_finish(t);
}

Test(switch, payee_offline) {
  so_ctx *t = so_start(NULL, &suite_cfg);
  tc_client *a = so_op_connect(t, "alpha");
  uint8_t id[16];
  so_new_id(id);
  so_prep p = so_simple(id, "gamma", 100);
  int64_t t0 = so_mono_ms();
  so_send_prepare(a, "alpha", 1, &p);
  so_expect_result(a, "alpha", 1, id, SO_ST_ABORTED, 3201);
  cr_assert_lt(so_mono_ms() - t0, 2000, "refused at once, not at expiry");
  so_track(t, id, SO_ST_ABORTED, "payee offline");
  so_finish(t);
}

Test(switch, suspended_participant) {
  so_ctx *t = so_start(NULL, &suite_cfg);
  tc_client *a = so_op_connect(t, "alpha"), *b = so_op_connect(t, "beta");
  tc_client *adm = so_admin_connect(t);
  cr_assert_eq(
      so_set_status(t, adm, "beta", TUMA__V1__PARTICIPANT_STATUS__PARTICIPANT_STATUS_SUSPENDED), 0);
  /* beta's live connection is cut off: 4300, then closed. */
  so_expect_error(b, "beta", 0, 4300);
  so_expect_closed(b, "beta", SO_T_ANSWER);
  so_drop_client(t, b, 0);
  /* A new connection of beta is refused the same way. */
  tc_client *b2 =
      so_connect_as(t, t->h->port, t->h->ca, sh_cert(t->h, "beta"), sh_key(t->h, "beta"));
  so_expect_error(b2, "beta (new)", 0, 4300);
  so_expect_closed(b2, "beta (new)", SO_T_ANSWER);
  so_drop_client(t, b2, 0);
  int status = 0, connected = 1;
  so_list_entry(t, adm, "beta", &status, &connected);
  cr_assert_eq(status, TUMA__V1__PARTICIPANT_STATUS__PARTICIPANT_STATUS_SUSPENDED);
  cr_assert_eq(connected, 0);
  /* Nobody can pay beta. */
  uint8_t id1[16];
  so_new_id(id1);
  so_prep p = so_simple(id1, "beta", 100);
  so_send_prepare(a, "alpha", 1, &p);
  so_expect_result(a, "alpha", 1, id1, SO_ST_ABORTED, 5300);
  so_track(t, id1, SO_ST_ABORTED, "payee suspended");

  /* Reactivated, beta connects and is paid again. */
  cr_assert_eq(
      so_set_status(t, adm, "beta", TUMA__V1__PARTICIPANT_STATUS__PARTICIPANT_STATUS_ACTIVE), 0);
  tc_client *b3 = so_op_connect(t, "beta");
  uint8_t id2[16];
  so_new_id(id2);
  p = so_simple(id2, "beta", 100);
  so_send_prepare(a, "alpha", 2, &p);
  so_expect_forward(b3, "beta", id2, "alpha", 100);
  so_send_fulfil(b3, "beta", 9, id2, SO_FS_COMMITTED, NULL, 0);
  so_expect_result(a, "alpha", 2, id2, SO_ST_COMMITTED, 0);
  so_expect_result(b3, "beta", 9, id2, SO_ST_COMMITTED, 0);
  so_track(t, id2, SO_ST_COMMITTED, "after reactivation");
  so_finish(t);
}

Test(switch, spoofed_payer) {
  so_ctx *t = so_start(NULL, &suite_cfg);
  tc_client *a = so_op_connect(t, "alpha"), *b = so_op_connect(t, "beta");
  tc_client *adm = so_admin_connect(t);
  uint8_t id1[16], id2[16];
  so_new_id(id1);
  so_new_id(id2);
  so_prep p = so_simple(id1, "gamma", 100);
  p.payer_participant = "beta"; /* alpha claims to be beta */
  so_send_prepare(a, "alpha", 1, &p);
  so_expect_result(a, "alpha", 1, id1, SO_ST_ABORTED, 3100);
  so_track(t, id1, SO_ST_ABORTED, "spoofed payer");
  cr_assert_eq(so_get_position(t, adm, "beta").reserved, 0, "nothing reserved on beta");
  /* Naming itself is fine. */
  p = so_simple(id2, "beta", 100);
  p.payer_participant = "alpha";
  so_send_prepare(a, "alpha", 2, &p);
  so_expect_forward(b, "beta", id2, "alpha", 100);
  so_send_fulfil(b, "beta", 3, id2, SO_FS_ABORTED, NULL, 5105);
  so_expect_result(a, "alpha", 2, id2, SO_ST_ABORTED, 5105);
  so_expect_result(b, "beta", 3, id2, SO_ST_ABORTED, 5105);
  so_track(t, id2, SO_ST_ABORTED, "own name");
  so_finish(t);
}

/* ================================================================ certificates */

Test(switch, certificate_from_another_ca) {
  so_ctx *t = so_start(NULL, &suite_cfg);
  char other[SH_PATH_MAX + 16], other_ca[SH_PATH_MAX + 32], cert[SH_PATH_MAX + 32],
      key[SH_PATH_MAX + 32];
  snprintf(other, sizeof other, "%s/other", t->h->dir);
  const char *init[] = {"pki", "init", "--dir", other, NULL};
  cr_assert_eq(sh_run_cli(t->h, init, 10000), 0, "tuma pki init (another CA)");
  const char *issue[] = {"pki",   "issue",  "--dir",    other, "--name",
                         "alpha", "--role", "operator", NULL};
  cr_assert_eq(sh_run_cli(t->h, issue, 10000), 0, "tuma pki issue (another CA)");
  snprintf(other_ca, sizeof other_ca, "%s/ca.crt", other);
  snprintf(cert, sizeof cert, "%s/alpha.crt", other);
  snprintf(key, sizeof key, "%s/alpha.key", other);

  /* An "alpha" certificate from another CA: the switch refuses it. */
  tc_client *c = NULL;
  char err[300];
  int rc = tc_connect(t->h->port, t->h->ca, cert, key, SO_T_ANSWER, &c, err, sizeof err);
  if (rc == TC_OK) {
    so_expect_refused_handshake(c, "alpha (other CA)");
    tc_close(c, 0);
  } else {
    cr_assert_eq(rc, TC_E_TLS, "handshake: %s: %s", tc_strerror(rc), err);
  }
  /* A client that trusts only the other CA does not accept the switch either. */
  rc = tc_connect(t->h->port, other_ca, cert, key, SO_T_ANSWER, &c, err, sizeof err);
  cr_assert_eq(rc, TC_E_TLS, "the switch's certificate must not verify against another CA");
  cr_assert(strstr(err, "certificate verify failed") != NULL, "reason: %s", err);
  /* The real alpha is still welcome. */
  so_op_connect(t, "alpha");
  cr_assert(sh_log_contains(t->h, "TLS handshake failed"), "tumad logs the refused handshake");
  so_finish(t);
}

Test(switch, no_client_certificate) {
  so_ctx *t = so_start(NULL, &suite_cfg);
  tc_client *c = NULL;
  char err[300];
  int rc = tc_connect(t->h->port, t->h->ca, NULL, NULL, SO_T_ANSWER, &c, err, sizeof err);
  if (rc == TC_OK) {
    so_expect_refused_handshake(c, "anonymous");
    tc_close(c, 0);
  } else {
    cr_assert_eq(rc, TC_E_TLS, "handshake: %s: %s", tc_strerror(rc), err);
  }
  /* Same on the admin port. */
  rc = tc_connect(t->h->admin_port, t->h->ca, NULL, NULL, SO_T_ANSWER, &c, err, sizeof err);
  if (rc == TC_OK) {
    Tuma__V1__AdminEnvelope env = TUMA__V1__ADMIN_ENVELOPE__INIT;
    Tuma__V1__ParticipantList m = TUMA__V1__PARTICIPANT_LIST__INIT;
    env.correlation_id = 1;
    env.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_PARTICIPANT_LIST;
    env.participant_list = &m;
    tc_send_admin(c, &env);
    Tuma__V1__AdminEnvelope *r = NULL;
    rc = tc_recv_admin(c, SO_T_ANSWER, &r);
    cr_assert(rc == TC_E_TLS || rc == TC_E_CLOSED, "admin without certificate: got %s",
              tc_strerror(rc));
    tc_close(c, 0);
  } else {
    cr_assert_eq(rc, TC_E_TLS, "admin handshake: %s: %s", tc_strerror(rc), err);
  }
  so_op_connect(t, "beta");
  so_finish(t);
}

Test(switch, certificate_roles) {
  so_ctx *t = so_start(NULL, &suite_cfg);
  /* An admin certificate on the operator port: 3100 and closed. */
  tc_client *c =
      so_connect_as(t, t->h->port, t->h->ca, sh_cert(t->h, "admin"), sh_key(t->h, "admin"));
  so_expect_error(c, "admin on operator port", 0, 3100);
  so_expect_closed(c, "admin on operator port", SO_T_ANSWER);
  /* An operator certificate on the admin port: AdminResult 3100 and closed. */
  c = so_connect_as(t, t->h->admin_port, t->h->ca, sh_cert(t->h, "alpha"), sh_key(t->h, "alpha"));
  Tuma__V1__AdminEnvelope *r = NULL;
  int rc = tc_recv_admin(c, SO_T_ANSWER, &r);
  cr_assert_eq(rc, TC_OK, "operator on admin port: %s", tc_strerror(rc));
  cr_assert_eq(r->body_case, TUMA__V1__ADMIN_ENVELOPE__BODY_ADMIN_RESULT);
  cr_assert(r->admin_result->error && r->admin_result->error->code == 3100);
  tuma__v1__admin_envelope__free_unpacked(r, NULL);
  so_expect_closed(c, "operator on admin port", SO_T_ANSWER);
  /* An operator the switch does not know: 3100 and closed. */
  cr_assert_eq(sh_issue(t->h, "zeta", "operator", NULL, NULL), 0);
  c = so_connect_as(t, t->h->port, t->h->ca, sh_cert(t->h, "zeta"), sh_key(t->h, "zeta"));
  so_expect_error(c, "zeta", 0, 3100);
  so_expect_closed(c, "zeta", SO_T_ANSWER);
  /* The right ones work. */
  so_op_connect(t, "alpha");
  tc_client *adm = so_admin_connect(t);
  cr_assert_eq(so_get_position(t, adm, "alpha").liquidity, SH_DEPOSIT);
  so_finish(t);
}

/* ================================================================ framing */

Test(switch, malformed_frame) {
  so_ctx *t = so_start(NULL, &suite_cfg);
  tc_client *a = so_op_connect(t, "alpha");
  static const uint8_t garbage[] = {0,    0,    0,    10,   0xff, 0xff, 0xff,
                                    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  cr_assert_eq(tc_write_raw(a, garbage, sizeof garbage), TC_OK);
  so_expect_error(a, "alpha", 0, 3101);
  so_expect_closed(a, "alpha", SO_T_ANSWER);
  /* A frame of length 0 is malformed too. */
  tc_client *b = so_op_connect(t, "beta");
  static const uint8_t empty[] = {0, 0, 0, 0};
  cr_assert_eq(tc_write_raw(b, empty, sizeof empty), TC_OK);
  so_expect_error(b, "beta", 0, 3101);
  so_expect_closed(b, "beta", SO_T_ANSWER);
  /* On the admin port: an AdminResult with 3101, closed. */
  tc_client *adm = so_admin_connect(t);
  cr_assert_eq(tc_write_raw(adm, garbage, sizeof garbage), TC_OK);
  Tuma__V1__AdminEnvelope *r = NULL;
  cr_assert_eq(tc_recv_admin(adm, SO_T_ANSWER, &r), TC_OK);
  cr_assert_eq(r->body_case, TUMA__V1__ADMIN_ENVELOPE__BODY_ADMIN_RESULT);
  cr_assert(r->admin_result->error && r->admin_result->error->code == 3101);
  tuma__v1__admin_envelope__free_unpacked(r, NULL);
  so_expect_closed(adm, "admin", SO_T_ANSWER);
  /* The switch is fine. */
  tc_client *g = so_op_connect(t, "gamma");
  so_send_ping(g, "gamma", 2, 77);
  so_expect_pong(g, "gamma", 2, 77);
  so_finish(t);
}

Test(switch, oversized_frame) {
  so_ctx *t = so_start(NULL, &suite_cfg); /* max_frame_bytes 4096 */
  tc_client *a = so_op_connect(t, "alpha");
  uint8_t hdr[4];
  proto_frame_put_header(hdr, 4097);
  cr_assert_eq(tc_write_raw(a, hdr, sizeof hdr), TC_OK);
  /* Decided from the header alone: no body needed. */
  so_expect_error(a, "alpha", 0, 3104);
  so_expect_closed(a, "alpha", SO_T_ANSWER);
  /* Exactly the maximum is accepted (a Ping padded with an unknown field). */
  tc_client *b = so_op_connect(t, "beta");
  uint8_t frame[4 + 4096];
  size_t n = 0;
  frame[4 + n++] = 0x08; /* correlation_id = 5 */
  frame[4 + n++] = 0x05;
  frame[4 + n++] = 0xfa; /* field 31 (ping), length 2: nonce = 9 */
  frame[4 + n++] = 0x01;
  frame[4 + n++] = 0x02;
  frame[4 + n++] = 0x08;
  frame[4 + n++] = 0x09;
  /* field 1000, length-delimited, fills the rest: tag 0xc2 0x3e, 2-byte length */
  size_t pad = 4096 - n - 4;
  frame[4 + n++] = 0xc2;
  frame[4 + n++] = 0x3e;
  frame[4 + n++] = (uint8_t)(0x80 | (pad & 0x7f));
  frame[4 + n++] = (uint8_t)(pad >> 7);
  memset(frame + 4 + n, 'x', pad);
  n += pad;
  cr_assert_eq(n, 4096);
  proto_frame_put_header(frame, 4096);
  cr_assert_eq(tc_write_raw(b, frame, sizeof frame), TC_OK);
  so_expect_pong(b, "beta", 5, 9);
  so_finish(t);
}

Test(switch, truncated_frame) {
  so_ctx *t = so_start(NULL, &suite_cfg); /* read_timeout_ms 500 */
  tc_client *a = so_op_connect(t, "alpha");
  /* An idle connection is not a partial frame: it stays open past read_timeout_ms. */
  so_sleep_ms(1200);
  so_send_ping(a, "alpha", 2, 3);
  so_expect_pong(a, "alpha", 2, 3);
  /* A frame that starts and never completes: closed after ~read_timeout_ms, no error frame. */
  uint8_t partial[14] = {0, 0, 0, 100};
  memset(partial + 4, 0, 10);
  int64_t t0 = so_mono_ms();
  cr_assert_eq(tc_write_raw(a, partial, sizeof partial), TC_OK);
  size_t discarded = 0;
  cr_assert_eq(tc_wait_closed(a, 5000, &discarded), TC_OK, "closed after the partial frame");
  int64_t took = so_mono_ms() - t0;
  cr_assert_geq(took, 400, "closed after read_timeout_ms, not at once (%lld ms)", (long long)took);
  cr_assert_leq(took, 3000, "closed soon after read_timeout_ms (%lld ms)", (long long)took);
  cr_assert_eq(discarded, 0, "no error frame for a timeout");
  so_finish(t);
}

/* ================================================================ failures */

Test(switch, payee_drops_mid_transfer) {
  so_ctx *t = so_start(NULL, &suite_cfg);
  tc_client *a = so_op_connect(t, "alpha"), *b = so_op_connect(t, "beta");
  uint8_t id[16];
  so_new_id(id);
  so_prep p = so_simple(id, "beta", 600);
  p.expiration_ms = sh_now_ms() + 2000;
  so_send_prepare(a, "alpha", 1, &p);
  so_expect_forward(b, "beta", id, "alpha", 600);
  so_drop_client(t, b, 0); /* gone without a word */
  /* beta comes back (another connection) but does not answer either. */
  tc_client *b2 = so_op_connect(t, "beta");
  so_expect_result(a, "alpha", 1, id, SO_ST_EXPIRED, 3303);
  cr_assert_geq(sh_now_ms(), p.expiration_ms);
  /* The payee hears of the expiry on its live connection (correlation 0: not the forward's). */
  so_expect_result(b2, "beta", 0, id, SO_ST_EXPIRED, 3303);
  so_track(t, id, SO_ST_EXPIRED, "payee dropped");
  so_send_fulfil(b2, "beta", 5, id, SO_FS_COMMITTED, NULL, 0);
  so_expect_result(b2, "beta", 5, id, SO_ST_EXPIRED, 3303);
  so_finish(t);
}

Test(switch, restart_with_transfers_in_flight) {
  so_ctx *t = so_start(NULL, &suite_cfg);
  tc_client *a = so_op_connect(t, "alpha"), *b = so_op_connect(t, "beta");
  uint8_t x[16], y[16];
  so_new_id(x);
  so_new_id(y);
  so_prep px = so_simple(x, "beta", 7000);
  px.expiration_ms = sh_now_ms() + 30000;
  so_prep py = so_simple(y, "beta", 800);
  py.expiration_ms = sh_now_ms() + 5000;
  so_send_prepare(a, "alpha", 1, &px);
  so_expect_forward(b, "beta", x, "alpha", 7000);
  so_send_prepare(a, "alpha", 2, &py);
  so_expect_forward(b, "beta", y, "alpha", 800);

  /* kill -9: both reservations were durable before the forwards went out. */
  cr_assert_eq(sh_kill(t->h), 0);
  so_drop_client(t, a, 0);
  so_drop_client(t, b, 0);
  so_restart(t);

  tc_client *a2 = so_op_connect(t, "alpha"), *b2 = so_op_connect(t, "beta");
  so_send_query(a2, "alpha", 3, x);
  so_expect_result(a2, "alpha", 3, x, SO_ST_RESERVED, 0);
  so_send_fulfil(b2, "beta", 4, x, SO_FS_COMMITTED, NULL, 0);
  so_expect_result(b2, "beta", 4, x, SO_ST_COMMITTED, 0);
  /* The payer's prepare died with the old connection; its live one is told (correlation 0). */
  so_expect_result(a2, "alpha", 0, x, SO_ST_COMMITTED, 0);
  so_track(t, x, SO_ST_COMMITTED, "fulfilled after restart");

  /* y is left alone: it expires after the restart, and both live connections hear of it. */
  int64_t left = (int64_t)(py.expiration_ms - sh_now_ms());
  so_want_result wy_a = {0, y, SO_ST_EXPIRED, 3303};
  Tuma__V1__Envelope *r =
      so_expect_result_env(a2, "alpha", &wy_a, (int)(left > 0 ? left : 0) + 4000);
  tuma__v1__envelope__free_unpacked(r, NULL);
  cr_assert_geq(sh_now_ms(), py.expiration_ms);
  so_expect_result(b2, "beta", 0, y, SO_ST_EXPIRED, 3303);
  so_send_query(a2, "alpha", 5, y);
  so_expect_result(a2, "alpha", 5, y, SO_ST_EXPIRED, 3303);
  so_track(t, y, SO_ST_EXPIRED, "expired after restart");
  cr_assert(sh_log_contains(t->h, "transfers.recovered"), "tumad logs the recovery");
  so_finish(t);
}

Test(switch, graceful_sigterm) {
  so_ctx *t = so_start(NULL, &suite_cfg);
  tc_client *a = so_op_connect(t, "alpha"), *b = so_op_connect(t, "beta");
  uint8_t done[16], open[16];
  so_new_id(done);
  so_new_id(open);
  so_prep p = so_simple(done, "beta", 1000);
  so_send_prepare(a, "alpha", 1, &p);
  so_expect_forward(b, "beta", done, "alpha", 1000);
  so_send_fulfil(b, "beta", 2, done, SO_FS_COMMITTED, NULL, 0);
  so_expect_result(a, "alpha", 1, done, SO_ST_COMMITTED, 0);
  so_expect_result(b, "beta", 2, done, SO_ST_COMMITTED, 0);
  so_track(t, done, SO_ST_COMMITTED, "committed before stop");
  so_prep q = so_simple(open, "beta", 2000);
  q.expiration_ms = sh_now_ms() + 45000;
  so_send_prepare(a, "alpha", 3, &q);
  so_expect_forward(b, "beta", open, "alpha", 2000);
  so_send_prepare(a, "alpha", 4, &q);
  so_expect_result(a, "alpha", 4, open, SO_ST_RESERVED, 0);
  so_track(t, open, SO_ST_RESERVED, "reserved at stop");

  /* SIGTERM with connections open and a transfer in flight: exit 0, promptly. */
  int64_t t0 = so_mono_ms();
  int status = 0;
  cr_assert_eq(sh_stop(t->h, SO_T_STOP, &status), 0, "stopped on SIGTERM");
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "exit status 0");
  cr_assert_lt(so_mono_ms() - t0, 5000, "stopped within 5 s");
  so_expect_closed(a, "alpha", SO_T_ANSWER);
  so_expect_closed(b, "beta", SO_T_ANSWER);
  so_drop_client(t, a, 0);
  so_drop_client(t, b, 0);
  so_check_ledger(t); /* invariants hold; the in-flight one is still open */

  /* It resumes at the next start. */
  so_restart(t);
  tc_client *b2 = so_op_connect(t, "beta");
  so_send_fulfil(b2, "beta", 5, open, SO_FS_COMMITTED, NULL, 0);
  so_expect_result(b2, "beta", 5, open, SO_ST_COMMITTED, 0);
  so_track(t, open, SO_ST_COMMITTED, "committed after restart");
  so_finish(t);
}

/* ================================================================ admin protocol */

Test(switch, liquidity_deposit_withdraw) {
  so_ctx *t = so_start(NULL, &suite_cfg);
  tc_client *adm = so_admin_connect(t);
  uint8_t d1[16], w1[16], w2[16];
  so_new_id(d1);
  so_new_id(w1);
  so_new_id(w2);
  cr_assert_eq(so_liquidity(t, adm, d1, "alpha", 5000, 1), 0, "deposit");
  cr_assert_eq(so_get_position(t, adm, "alpha").liquidity, SH_DEPOSIT + 5000);
  /* The same adjustment again: done once. */
  cr_assert_eq(so_liquidity(t, adm, d1, "alpha", 5000, 1), 0, "repeated deposit");
  cr_assert_eq(so_get_position(t, adm, "alpha").liquidity, SH_DEPOSIT + 5000, "deposited once");
  /* The same id for something else: 3106. */
  cr_assert_eq(so_liquidity(t, adm, d1, "alpha", 6000, 1), 3106, "modified adjustment");
  cr_assert_eq(so_liquidity(t, adm, w1, "alpha", 2000, 0), 0, "withdraw");
  so_position pa = so_get_position(t, adm, "alpha");
  cr_assert_eq(pa.liquidity, SH_DEPOSIT + 3000);
  /* More than there is: refused, nothing moves. */
  cr_assert_eq(so_liquidity(t, adm, w2, "alpha", pa.liquidity + 1, 0), 4001, "withdraw too much");
  cr_assert_eq(so_get_position(t, adm, "alpha").liquidity, SH_DEPOSIT + 3000);
  /* Unknown participant. */
  uint8_t d2[16];
  so_new_id(d2);
  cr_assert_neq(so_liquidity(t, adm, d2, "nobody", 1, 1), 0, "unknown participant refused");
  /* Withdrawn liquidity cannot be spent. */
  uint8_t w3[16];
  so_new_id(w3);
  cr_assert_eq(so_liquidity(t, adm, w3, "beta", SH_DEPOSIT, 0), 0, "withdraw all of beta's");
  tc_client *a = so_op_connect(t, "alpha"), *b = so_op_connect(t, "beta");
  uint8_t id[16];
  so_new_id(id);
  so_prep p = so_simple(id, "alpha", 1);
  so_send_prepare(b, "beta", 1, &p);
  so_expect_result(b, "beta", 1, id, SO_ST_ABORTED, 4001);
  so_expect_silence(a, "alpha", SO_T_SILENCE);
  so_track(t, id, SO_ST_ABORTED, "after withdrawal");
  so_finish(t);
}

Test(switch, participant_created_over_admin) {
  so_ctx *t = so_start(NULL, &suite_cfg);
  tc_client *adm = so_admin_connect(t);
  cr_assert_eq(sh_issue(t->h, "delta", "operator", NULL, NULL), 0);
  /* Not a participant yet. */
  tc_client *d =
      so_connect_as(t, t->h->port, t->h->ca, sh_cert(t->h, "delta"), sh_key(t->h, "delta"));
  so_expect_error(d, "delta", 0, 3100);
  so_expect_closed(d, "delta", SO_T_ANSWER);
  so_drop_client(t, d, 0);

  Tuma__V1__AdminEnvelope env = TUMA__V1__ADMIN_ENVELOPE__INIT;
  Tuma__V1__ParticipantCreate m = TUMA__V1__PARTICIPANT_CREATE__INIT;
  char *currencies[] = {(char *)"KES"};
  m.participant_id = (char *)"delta";
  m.name = (char *)"Delta Pay";
  m.n_currencies = 1;
  m.currencies = currencies;
  env.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_PARTICIPANT_CREATE;
  env.participant_create = &m;
  cr_assert_eq(so_admin_result(t, adm, &env), 0, "participant create");
  cr_assert_neq(so_admin_result(t, adm, &env), 0, "creating it twice is refused");
  so_position pd = so_get_position(t, adm, "delta");
  cr_assert_eq(pd.liquidity, 0);
  cr_assert_eq(pd.net, 0);

  tc_client *dl = so_op_connect(t, "delta");
  int status = 0, connected = 0;
  so_list_entry(t, adm, "delta", &status, &connected);
  cr_assert_eq(status, TUMA__V1__PARTICIPANT_STATUS__PARTICIPANT_STATUS_ACTIVE);
  cr_assert_eq(connected, 1);

  /* Without liquidity it cannot pay; funded, it can. */
  tc_client *a = so_op_connect(t, "alpha");
  uint8_t id1[16], id2[16], dep[16];
  so_new_id(id1);
  so_new_id(id2);
  so_new_id(dep);
  so_prep p = so_simple(id1, "alpha", 500);
  so_send_prepare(dl, "delta", 1, &p);
  so_expect_result(dl, "delta", 1, id1, SO_ST_ABORTED, 4001);
  so_track(t, id1, SO_ST_ABORTED, "delta unfunded");
  cr_assert_eq(so_liquidity(t, adm, dep, "delta", 10000, 1), 0);
  p = so_simple(id2, "alpha", 500);
  so_send_prepare(dl, "delta", 2, &p);
  so_expect_forward(a, "alpha", id2, "delta", 500);
  so_send_fulfil(a, "alpha", 3, id2, SO_FS_COMMITTED, NULL, 0);
  so_expect_result(dl, "delta", 2, id2, SO_ST_COMMITTED, 0);
  so_expect_result(a, "alpha", 3, id2, SO_ST_COMMITTED, 0);
  so_track(t, id2, SO_ST_COMMITTED, "delta pays");
  pd = so_get_position(t, adm, "delta");
  cr_assert_eq(pd.liquidity, 9500);
  cr_assert_eq(pd.net, 500);

  /* It survives a restart (the registry is durable). */
  int st;
  cr_assert_eq(sh_stop(t->h, SO_T_STOP, &st), 0);
  so_drop_all(t);
  so_restart(t);
  so_op_connect(t, "delta");
  so_finish(t);
}

/* One BatchSubmit chunk of a one-row list for programme "relief", cycle 1: the row pays
 * 254700000001 (alpha, by prefix) 1.00 KES. announced_sha/announced_size say what the first
 * chunk claims (NULL/0: not given). Returns the answer (the caller frees). */
static Tuma__V1__AdminEnvelope *submit_chunk(so_ctx *t, tc_client *c, const uint8_t *announced_sha,
                                             uint64_t announced_size, int last) {
  static const char csv[] = "beneficiary_id_type,beneficiary_id,amount,reference,msisdn\n"
                            "national_id,12345678,1.00,one,254700000001\n";
  Tuma__V1__FileChunk ch = TUMA__V1__FILE_CHUNK__INIT;
  if (announced_sha) {
    ch.file_sha256.data = (uint8_t *)announced_sha;
    ch.file_sha256.len = 32;
  }
  ch.file_size = announced_size;
  ch.data.data = (uint8_t *)csv;
  ch.data.len = sizeof csv - 1;
  ch.last = last;
  Tuma__V1__BatchSubmit bs = TUMA__V1__BATCH_SUBMIT__INIT;
  bs.programme_id = (char *)"relief";
  bs.cycle = 1;
  bs.expect_count = 1;
  bs.expect_total = 100;
  bs.chunk = &ch;
  Tuma__V1__AdminEnvelope env = TUMA__V1__ADMIN_ENVELOPE__INIT;
  env.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_BATCH_SUBMIT;
  env.batch_submit = &bs;
  return so_admin_call(t, c, &env);
}

/* The refusal (code and text) in an AdminResult or a BatchSubmitResult; 0 when none. */
static unsigned refusal(const Tuma__V1__AdminEnvelope *r, const char **text) {
  const Tuma__V1__Error *e = NULL;
  if (r->body_case == TUMA__V1__ADMIN_ENVELOPE__BODY_ADMIN_RESULT)
    e = r->admin_result->error;
  else if (r->body_case == TUMA__V1__ADMIN_ENVELOPE__BODY_BATCH_SUBMIT_RESULT)
    e = r->batch_submit_result->error;
  *text = e && e->message ? e->message : "";
  return e ? e->code : 0;
}

/* What the CLI never sends, sent by hand: a first chunk without the file's SHA-256, a file
 * whose bytes differ from the announced SHA-256, more or fewer bytes than announced, a submit
 * from the admin role, an admin request from a programme manager, an unknown batch. Each gets
 * its refusal; the switch stays up and a correct upload still works afterwards. */
Test(switch, hostile_disbursement_uploads) {
  so_ctx *t = so_start(NULL, &suite_cfg);
  tc_client *adm = so_admin_connect(t);
  tc_client *mgr = so_connect_as(t, t->h->admin_port, t->h->ca, sh_cert(t->h, "manager"),
                                 sh_key(t->h, "manager"));
  Tuma__V1__AdminEnvelope env = TUMA__V1__ADMIN_ENVELOPE__INIT;
  Tuma__V1__ProgrammeCreate pc = TUMA__V1__PROGRAMME_CREATE__INIT;
  pc.programme_id = (char *)"relief";
  pc.name = (char *)"Relief";
  pc.currency = (char *)"KES";
  pc.funding_participant = (char *)"gamma";
  env.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_PROGRAMME_CREATE;
  env.programme_create = &pc;
  cr_assert_eq(so_admin_result(t, adm, &env), 0, "programme create");

  static const char csv[] = "beneficiary_id_type,beneficiary_id,amount,reference,msisdn\n"
                            "national_id,12345678,1.00,one,254700000001\n";
  uint8_t good[32], wrong[32];
  SHA256((const uint8_t *)csv, sizeof csv - 1, good);
  memcpy(wrong, good, 32);
  wrong[0] ^= 1;
  const char *text;

  Tuma__V1__AdminEnvelope *r = submit_chunk(t, mgr, NULL, 0, 1);
  cr_assert_eq(refusal(r, &text), 3100, "no SHA-256 in the first chunk: %s", text);
  cr_assert(strstr(text, "SHA-256") != NULL, "%s", text);
  tuma__v1__admin_envelope__free_unpacked(r, NULL);

  r = submit_chunk(t, mgr, wrong, sizeof csv - 1, 1);
  cr_assert_eq(refusal(r, &text), 3100, "another file's SHA-256: %s", text);
  cr_assert(strstr(text, "differs from the announced") != NULL, "%s", text);
  cr_assert_eq(r->batch_submit_result->state, TUMA__V1__BATCH_STATE__BATCH_STATE_REFUSED);
  tuma__v1__admin_envelope__free_unpacked(r, NULL);

  r = submit_chunk(t, mgr, good, 10, 1);
  cr_assert_eq(refusal(r, &text), 3100, "more bytes than announced: %s", text);
  cr_assert(strstr(text, "more bytes than the announced") != NULL, "%s", text);
  tuma__v1__admin_envelope__free_unpacked(r, NULL);

  r = submit_chunk(t, mgr, good, sizeof csv + 100, 1);
  cr_assert_eq(refusal(r, &text), 3100, "fewer bytes than announced: %s", text);
  cr_assert(strstr(text, "shorter than its announced") != NULL, "%s", text);
  tuma__v1__admin_envelope__free_unpacked(r, NULL);

  r = submit_chunk(t, adm, good, sizeof csv - 1, 1);
  cr_assert_eq(refusal(r, &text), 3100, "the admin role submits: %s", text);
  cr_assert(strstr(text, "may not submit") != NULL, "%s", text);
  tuma__v1__admin_envelope__free_unpacked(r, NULL);

  Tuma__V1__AdminEnvelope pl = TUMA__V1__ADMIN_ENVELOPE__INIT;
  Tuma__V1__ParticipantList list = TUMA__V1__PARTICIPANT_LIST__INIT;
  pl.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_PARTICIPANT_LIST;
  pl.participant_list = &list;
  cr_assert_eq(so_admin_result(t, mgr, &pl), 3100, "a programme manager lists participants");

  Tuma__V1__AdminEnvelope ap = TUMA__V1__ADMIN_ENVELOPE__INIT;
  Tuma__V1__BatchApprove ba = TUMA__V1__BATCH_APPROVE__INIT;
  ba.batch_id = 999;
  ap.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_BATCH_APPROVE;
  ap.batch_approve = &ba;
  tc_client *apr = so_connect_as(t, t->h->admin_port, t->h->ca, sh_cert(t->h, "approver"),
                                 sh_key(t->h, "approver"));
  cr_assert_eq(so_admin_result(t, apr, &ap), 3200, "an unknown batch");

  /* Still up, and a correct upload goes through. */
  r = submit_chunk(t, mgr, good, sizeof csv - 1, 1);
  cr_assert_eq(refusal(r, &text), 0, "a correct upload: %s", text);
  cr_assert_eq(r->batch_submit_result->state, TUMA__V1__BATCH_STATE__BATCH_STATE_SUBMITTED);
  cr_assert_eq(r->batch_submit_result->valid_count, 1);
  tuma__v1__admin_envelope__free_unpacked(r, NULL);
  so_finish(t);
}
