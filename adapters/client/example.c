/* example.c — the smallest complete libtuma-client programs (adapters/client/README.md).
 *
 *   tuma-client-example payee HOST PORT CA CERT KEY
 *       accepts every transfer the switch forwards to this operator; runs until SIGINT/SIGTERM.
 *   tuma-client-example payer HOST PORT CA CERT KEY PAYEE_PARTICIPANT AMOUNT [CURRENCY]
 *       sends one transfer to PAYEE_PARTICIPANT (AMOUNT in minor units, CURRENCY default KES),
 *       prints its outcome and exits: 0 if it was committed, 1 otherwise.
 *
 * CERT/KEY are this operator's certificate and key (tuma pki issue … --role operator), CA the
 * scheme's CA certificate.
 */
#include <event2/event.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tuma_client.h"

typedef struct app {
  struct event_base *base;
  adp_client *client;
  int payer;         /* payer mode: send one transfer once connected */
  const char *payee; /* payer mode: the payee participant */
  uint64_t amount;
  const char *currency;
  int sent;
  int exit_code;
} app;

/* ---- payee: accept every forward */

static void fulfil_done_cb(adp_client *client, int status, const adp_transfer_result *r,
                           void *arg) {
  (void)client;
  (void)arg;
  char id[ADP_ID_STR_LEN];
  if (status == ADP_OK)
    printf("transfer %s: %s\n", adp_id_format(r->transfer_id, id),
           adp_transfer_state_name(r->state));
  else
    printf("transfer %s: fulfil failed: %s\n", adp_id_format(r->transfer_id, id),
           adp_strerror(status));
  fflush(stdout);
}

static void forward_cb(adp_client *client, const adp_forward *fw, void *arg) {
  (void)arg;
  char id[ADP_ID_STR_LEN];
  printf("forward %s from %s: %" PRIu64 " %s\n", adp_id_format(fw->transfer_id, id),
         fw->payer_participant, fw->amount, fw->currency);
  /* A condition needs the preimage agreed with the payer beforehand; this example has none. */
  int rc = fw->has_condition ? adp_client_fulfil(client, fw->transfer_id, ADP_FULFIL_ABORT, NULL,
                                                 5105, "no fulfilment known", fulfil_done_cb, NULL)
                             : adp_client_fulfil(client, fw->transfer_id, ADP_FULFIL_COMMIT, NULL,
                                                 0, NULL, fulfil_done_cb, NULL);
  if (rc != ADP_OK) /* e.g. ADP_E_AGAIN: not answered; the transfer will expire */
    printf("transfer %s: cannot answer: %s\n", id, adp_strerror(rc));
  fflush(stdout);
}

/* ---- payer: one transfer */

static void prepare_done_cb(adp_client *client, int status, const adp_transfer_result *r,
                            void *arg) {
  (void)client;
  app *a = arg;
  char id[ADP_ID_STR_LEN];
  adp_id_format(r->transfer_id, id);
  if (status == ADP_OK) {
    printf("transfer %s: %s", id, adp_transfer_state_name(r->state));
    if (r->error_code)
      printf(" (%" PRIu32 " %s)", r->error_code, r->error_message);
    printf("\n");
    a->exit_code = r->state == ADP_TRANSFER_COMMITTED ? 0 : 1;
  } else {
    /* ADP_E_DISCONNECTED: the outcome is unknown; a real payer would adp_client_query() the
     * same id once reconnected. */
    printf("transfer %s: %s\n", id, adp_strerror(status));
    a->exit_code = 1;
  }
  event_base_loopbreak(a->base);
}

static void state_cb(adp_client *client, const adp_state_event *ev, void *arg) {
  app *a = arg;
  if (ev->state == ADP_STATE_DISCONNECTED) {
    printf("disconnected: %s (retry in %" PRIu32 " ms)\n", ev->reason, ev->retry_in_ms);
    fflush(stdout);
    return;
  }
  printf("connected as %s\n", ev->participant_id);
  fflush(stdout);
  if (!a->payer || a->sent)
    return;
  adp_prepare p;
  memset(&p, 0, sizeof p);
  p.payee_participant = a->payee;
  p.currency = a->currency;
  p.amount = a->amount;
  p.reference = "example";
  uint8_t id[ADP_ID_LEN];
  int rc = adp_client_prepare(client, &p, id, prepare_done_cb, a);
  if (rc != ADP_OK) {
    printf("cannot send the transfer: %s\n", adp_strerror(rc));
    a->exit_code = 1;
    event_base_loopbreak(a->base);
    return;
  }
  a->sent = 1;
  char text[ADP_ID_STR_LEN];
  printf("sent transfer %s\n", adp_id_format(id, text));
  fflush(stdout);
}

static void signal_cb(evutil_socket_t sig, short what, void *arg) {
  (void)sig;
  (void)what;
  event_base_loopbreak(arg);
}

int main(int argc, char **argv) {
  app a;
  memset(&a, 0, sizeof a);
  a.exit_code = 1;
  int payer = argc >= 9 && argc <= 10 && strcmp(argv[1], "payer") == 0;
  int payee = argc == 7 && strcmp(argv[1], "payee") == 0;
  if (!payer && !payee) {
    fprintf(stderr,
            "usage: %s payee HOST PORT CA CERT KEY\n"
            "       %s payer HOST PORT CA CERT KEY PAYEE_PARTICIPANT AMOUNT [CURRENCY]\n",
            argv[0], argv[0]);
    return 2;
  }
  a.payer = payer;
  if (payer) {
    a.payee = argv[7];
    a.amount = strtoull(argv[8], NULL, 10);
    a.currency = argc == 10 ? argv[9] : "KES";
  }

  a.base = event_base_new();
  struct event *sigint = a.base ? evsignal_new(a.base, SIGINT, signal_cb, a.base) : NULL;
  struct event *sigterm = a.base ? evsignal_new(a.base, SIGTERM, signal_cb, a.base) : NULL;
  if (!sigint || !sigterm || event_add(sigint, NULL) || event_add(sigterm, NULL)) {
    fprintf(stderr, "cannot set up the event loop\n");
    goto done;
  }

  adp_client_options o;
  memset(&o, 0, sizeof o);
  o.host = argv[2];
  o.port = (uint16_t)strtoul(argv[3], NULL, 10);
  o.ca_file = argv[4];
  o.cert_file = argv[5];
  o.key_file = argv[6];
  o.client_name = payer ? "example payer" : "example payee";
  o.on_forward = payee ? forward_cb : NULL;
  o.on_state = state_cb;
  o.arg = &a;
  int rc = adp_client_new(a.base, &o, &a.client);
  if (rc != ADP_OK) {
    fprintf(stderr, "adp_client_new: %s\n", adp_strerror(rc));
    goto done;
  }
  event_base_dispatch(a.base); /* until the outcome (payer) or a signal */
  if (payee)
    a.exit_code = 0;

done:
  adp_client_free(a.client); /* anything still outstanding gets ADP_E_CLOSED */
  if (sigint)
    event_free(sigint);
  if (sigterm)
    event_free(sigterm);
  if (a.base)
    event_base_free(a.base);
  return a.exit_code;
}
