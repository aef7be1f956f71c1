/* operator.c — requests on an operator connection: hello, the party directory, ping, and the
 * transfer messages, which go to the state machine (transfer.c). Each handler answers exactly
 * once and then marks the request done (sw_conn_request_done). */
#include <string.h>

#include "currency.h"
#include "daemon.h"
#include "errors.h"

#define MAX_PARTIES_PER_REGISTER 1000

static void reply(sw_conn *c, Tuma__V1__Envelope *env) {
  sw_conn_send(c, env);
  sw_conn_request_done(c);
}

static void hello(sw_conn *c, uint64_t corr, const Tuma__V1__Hello *m) {
  c->send_only = m->send_only;
  sw_peer *peer = sw_peer_by_number(c->sw, c->participant);
  Tuma__V1__Envelope env = TUMA__V1__ENVELOPE__INIT;
  Tuma__V1__HelloAck ack = TUMA__V1__HELLO_ACK__INIT;
  char codes[SW_PARTICIPANT_MAX_CURRENCIES][4];
  char *list[SW_PARTICIPANT_MAX_CURRENCIES];
  size_t n = 0;
  for (unsigned i = 0; peer && i < peer->p.n_currencies; i++) {
    sw_currency cur;
    if (sw_currency_by_number(peer->p.currencies[i], &cur) == 0) {
      memcpy(codes[n], cur.alpha, 4);
      list[n] = codes[n];
      n++;
    }
  }
  ack.participant_id = peer ? peer->p.id : (char *)"";
  ack.n_currencies = n;
  ack.currencies = list;
  ack.max_frame_bytes = (uint32_t)c->sw->cfg->max_frame_bytes;
  env.correlation_id = corr;
  env.body_case = TUMA__V1__ENVELOPE__BODY_HELLO_ACK;
  env.hello_ack = &ack;
  reply(c, &env);
}

static void party_register(sw_conn *c, uint64_t corr, const Tuma__V1__PartyRegister *m) {
  sw_peer *peer = sw_peer_by_number(c->sw, c->participant);
  if (!peer || m->n_parties == 0 || m->n_parties > MAX_PARTIES_PER_REGISTER) {
    sw_conn_send_error(c, corr, SW_ERR_VALIDATION, "between 1 and 1000 parties per register");
    sw_conn_request_done(c);
    return;
  }
  sw_party parties[MAX_PARTIES_PER_REGISTER];
  for (size_t i = 0; i < m->n_parties; i++) {
    const Tuma__V1__Party *p = m->parties[i];
    if (!p || !p->id || sw_registry_party_valid((uint32_t)p->type, p->id) != 0) {
      sw_conn_send_error(c, corr, SW_ERR_VALIDATION, "invalid party");
      sw_conn_request_done(c);
      return;
    }
    parties[i].type = (uint32_t)p->type;
    parties[i].id = p->id;
    /* A party another operator registered stays theirs: only the directory's admin moves it. */
    sw_participant owner;
    sw_party_match match;
    if (sw_registry_lookup_party(c->sw->registry, parties[i].type, p->id, &owner, &match) == 0 &&
        match == SW_PARTY_MATCH_EXACT && owner.number != peer->p.number) {
      char masked[64];
      sw_mask(p->id, masked, sizeof masked);
      sw_log(&c->sw->log, SW_LOG_WARN, "party.register_refused", "peer=%s party=%s owner=%s",
             c->identity, masked, owner.id);
      sw_conn_send_error(c, corr, SW_ERR_VALIDATION, "party registered by another participant");
      sw_conn_request_done(c);
      return;
    }
  }
  int rc = sw_registry_put_parties(c->sw->registry, parties, m->n_parties, peer->p.id);
  if (rc) {
    sw_log(&c->sw->log, SW_LOG_ERROR, "party.register_failed", "peer=%s error=\"%s\"", c->identity,
           sw_registry_strerror(rc));
    sw_conn_send_error(c, corr, rc == SW_REGISTRY_E_INVAL ? SW_ERR_VALIDATION : SW_ERR_INTERNAL,
                       sw_registry_strerror(rc));
    sw_conn_request_done(c);
    return;
  }
  sw_log(&c->sw->log, SW_LOG_INFO, "party.registered", "peer=%s count=%zu", c->identity,
         m->n_parties);
  Tuma__V1__Envelope env = TUMA__V1__ENVELOPE__INIT;
  Tuma__V1__PartyRegistered ok = TUMA__V1__PARTY_REGISTERED__INIT;
  ok.registered = (uint32_t)m->n_parties;
  env.correlation_id = corr;
  env.body_case = TUMA__V1__ENVELOPE__BODY_PARTY_REGISTERED;
  env.party_registered = &ok;
  reply(c, &env);
}

static void party_lookup(sw_conn *c, uint64_t corr, const Tuma__V1__PartyLookup *m) {
  Tuma__V1__Envelope env = TUMA__V1__ENVELOPE__INIT;
  Tuma__V1__PartyLookupResult res = TUMA__V1__PARTY_LOOKUP_RESULT__INIT;
  Tuma__V1__Error err = TUMA__V1__ERROR__INIT;
  sw_participant found;
  if (!m->party || !m->party->id ||
      sw_registry_party_valid((uint32_t)m->party->type, m->party->id) != 0) {
    sw_conn_send_error(c, corr, SW_ERR_VALIDATION, "invalid party");
    sw_conn_request_done(c);
    return;
  }
  res.party = m->party;
  if (sw_registry_lookup_party(c->sw->registry, (uint32_t)m->party->type, m->party->id, &found,
                               NULL) == 0) {
    res.participant_id = found.id;
  } else {
    res.participant_id = (char *)"";
    err.code = SW_ERR_PARTY_NOT_FOUND;
    err.message = (char *)sw_error_text(SW_ERR_PARTY_NOT_FOUND);
    res.error = &err;
  }
  env.correlation_id = corr;
  env.body_case = TUMA__V1__ENVELOPE__BODY_PARTY_LOOKUP_RESULT;
  env.party_lookup_result = &res;
  reply(c, &env);
}

void sw_operator_dispatch(sw_conn *c, Tuma__V1__Envelope *env) {
  uint64_t corr = env->correlation_id;
  switch (env->body_case) {
  case TUMA__V1__ENVELOPE__BODY_HELLO:
    hello(c, corr, env->hello);
    break;
  case TUMA__V1__ENVELOPE__BODY_PARTY_REGISTER:
    party_register(c, corr, env->party_register);
    break;
  case TUMA__V1__ENVELOPE__BODY_PARTY_LOOKUP:
    party_lookup(c, corr, env->party_lookup);
    break;
  case TUMA__V1__ENVELOPE__BODY_TRANSFER_PREPARE:
    sw_transfer_prepare(c, corr, env->transfer_prepare);
    break;
  case TUMA__V1__ENVELOPE__BODY_TRANSFER_FULFIL:
    sw_transfer_fulfil(c, corr, env->transfer_fulfil);
    break;
  case TUMA__V1__ENVELOPE__BODY_TRANSFER_QUERY:
    sw_transfer_query(c, corr, env->transfer_query);
    break;
  case TUMA__V1__ENVELOPE__BODY_PING: {
    Tuma__V1__Envelope out = TUMA__V1__ENVELOPE__INIT;
    Tuma__V1__Pong pong = TUMA__V1__PONG__INIT;
    pong.nonce = env->ping->nonce;
    out.correlation_id = corr;
    out.body_case = TUMA__V1__ENVELOPE__BODY_PONG;
    out.pong = &pong;
    reply(c, &out);
    break;
  }
  case TUMA__V1__ENVELOPE__BODY_PONG:
  case TUMA__V1__ENVELOPE__BODY_ERROR:
  case TUMA__V1__ENVELOPE__BODY_TRANSFER_RESULT:
    /* Answers from the operator to something the switch sent: nothing to reply. */
    sw_conn_request_done(c);
    break;
  default:
    sw_conn_send_error(c, corr, SW_ERR_VALIDATION, "message not accepted from an operator");
    sw_conn_request_done(c);
    break;
  }
}
