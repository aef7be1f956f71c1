/* admin_cmd.c — the `tuma` commands that talk to tumad's admin listener: participant,
 * liquidity, ndc, positions and party. Each validates all of its arguments before it connects,
 * sends one AdminEnvelope through admin_client.h, and prints the outcome (party ids masked). */
#include "admin_client.h"
#include "cli.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/rand.h>

enum {
  ADMIN_MAX_POSITIONAL = 4,
  ADMIN_MAX_CURRENCIES = 16,
  ADMIN_PATH_MAX = 4096,
  ADMIN_NAME_MAX = 128,
  ADMIN_REASON_MAX = 256,
  ADMIN_PARTY_ID_MAX = 64,
  ADMIN_DEFAULT_TIMEOUT_S = 10,
};

/* Options a command accepts beyond the connection ones. */
enum {
  ADMIN_OPT_NAME = 1u << 0,     /* --name TEXT */
  ADMIN_OPT_CURRENCY = 1u << 1, /* --currency CODE, repeatable */
  ADMIN_OPT_ID = 1u << 2,       /* --id HEX32 */
  ADMIN_OPT_REASON = 1u << 3,   /* --reason TEXT */
};

static const char admin_common_help[] =
    "\n"
    "connection options (every command):\n"
    "  --connect HOST:PORT    tumad's admin listener (default 127.0.0.1:7401)\n"
    "  --ca FILE              the scheme CA (default $TUMA_PKI_DIR/ca.crt or pki/ca.crt)\n"
    "  --cert FILE            an admin certificate (default $TUMA_PKI_DIR/admin.crt or "
    "pki/admin.crt)\n"
    "  --key FILE             its key (default $TUMA_PKI_DIR/admin.key or pki/admin.key)\n"
    "  --server-name NAME     the name the switch's certificate must carry (default: HOST)\n"
    "  --timeout SECONDS      for connecting and for the reply (default 10)\n"
    "\n"
    "exit status: 0 done, 1 refused by the switch or no connection, 2 usage error\n";

/* Parsed arguments of one admin command. */
typedef struct admin_args {
  const char *pos[ADMIN_MAX_POSITIONAL];
  int npos;
  const char *connect, *ca, *cert, *key, *server_name;
  int timeout_s;
  const char *name, *id_hex, *reason;
  const char *currencies[ADMIN_MAX_CURRENCIES];
  int ncurrencies;
  char ca_buf[ADMIN_PATH_MAX], cert_buf[ADMIN_PATH_MAX], key_buf[ADMIN_PATH_MAX];
} admin_args;

/* Prints a usage error with the command's usage and returns CLI_EXIT_USAGE. */
static int admin_usage_error(const char *cmd, const char *usage, const char *fmt, const char *arg) {
  fprintf(stderr, "tuma %s: ", cmd);
  fprintf(stderr, fmt, arg != NULL ? arg : "");
  fprintf(stderr, "\n%s", usage);
  return CLI_EXIT_USAGE;
}

/* Parses argv[1..] (argv[0] is the command's last word) into a. Returns 0 to go on, 1 when
 * --help was printed (exit 0), or CLI_EXIT_USAGE after a message. */
static int admin_parse(int argc, char **argv, const char *cmd, const char *usage, unsigned allowed,
                       admin_args *a) {
  memset(a, 0, sizeof *a);
  a->connect = "127.0.0.1:7401";
  a->timeout_s = ADMIN_DEFAULT_TIMEOUT_S;
  int only_positional = 0;
  for (int i = 1; i < argc; i++) {
    const char *v = NULL;
    int m;
    const char *w = argv[i];
    if (only_positional || w[0] != '-' || w[1] == '\0') {
      if (a->npos == ADMIN_MAX_POSITIONAL)
        return admin_usage_error(cmd, usage, "too many arguments: '%s'", w);
      a->pos[a->npos++] = w;
    } else if (strcmp(w, "--") == 0) {
      only_positional = 1;
    } else if (cli_is_help(w)) {
      printf("%s%s", usage, admin_common_help);
      return 1;
    } else if ((m = cli_opt(argc, argv, &i, cmd, "--connect", &v)) != 0) {
      if (m < 0)
        return CLI_EXIT_USAGE;
      a->connect = v;
    } else if ((m = cli_opt(argc, argv, &i, cmd, "--ca", &v)) != 0) {
      if (m < 0)
        return CLI_EXIT_USAGE;
      a->ca = v;
    } else if ((m = cli_opt(argc, argv, &i, cmd, "--cert", &v)) != 0) {
      if (m < 0)
        return CLI_EXIT_USAGE;
      a->cert = v;
    } else if ((m = cli_opt(argc, argv, &i, cmd, "--key", &v)) != 0) {
      if (m < 0)
        return CLI_EXIT_USAGE;
      a->key = v;
    } else if ((m = cli_opt(argc, argv, &i, cmd, "--server-name", &v)) != 0) {
      if (m < 0)
        return CLI_EXIT_USAGE;
      a->server_name = v;
    } else if ((m = cli_opt(argc, argv, &i, cmd, "--timeout", &v)) != 0) {
      if (m < 0 || cli_parse_int(cmd, "--timeout", v, 1, 3600, &a->timeout_s) != 0)
        return CLI_EXIT_USAGE;
    } else if ((allowed & ADMIN_OPT_NAME) &&
               (m = cli_opt(argc, argv, &i, cmd, "--name", &v)) != 0) {
      if (m < 0)
        return CLI_EXIT_USAGE;
      a->name = v;
    } else if ((allowed & ADMIN_OPT_CURRENCY) &&
               (m = cli_opt(argc, argv, &i, cmd, "--currency", &v)) != 0) {
      if (m < 0)
        return CLI_EXIT_USAGE;
      if (a->ncurrencies == ADMIN_MAX_CURRENCIES)
        return admin_usage_error(cmd, usage, "too many currencies: '%s'", v);
      a->currencies[a->ncurrencies++] = v;
    } else if ((allowed & ADMIN_OPT_ID) && (m = cli_opt(argc, argv, &i, cmd, "--id", &v)) != 0) {
      if (m < 0)
        return CLI_EXIT_USAGE;
      a->id_hex = v;
    } else if ((allowed & ADMIN_OPT_REASON) &&
               (m = cli_opt(argc, argv, &i, cmd, "--reason", &v)) != 0) {
      if (m < 0)
        return CLI_EXIT_USAGE;
      a->reason = v;
    } else {
      return admin_usage_error(cmd, usage, "unknown option '%s'", w);
    }
  }
  admin_client_diag diag = {""};
  char host[256], port[16];
  if (admin_client_parse_address(a->connect, host, sizeof host, port, sizeof port, &diag) != 0)
    return admin_usage_error(cmd, usage, "--connect: %s", diag.text);
  return 0;
}

/* The certificate files: explicit options, else $TUMA_PKI_DIR/{ca.crt,admin.crt,admin.key},
 * else pki/…. */
static int admin_resolve_files(const char *cmd, admin_args *a) {
  const char *dir = getenv("TUMA_PKI_DIR");
  if (dir == NULL || dir[0] == '\0')
    dir = "pki";
  struct {
    const char **slot;
    char *buf;
    const char *file;
  } files[] = {{&a->ca, a->ca_buf, "ca.crt"},
               {&a->cert, a->cert_buf, "admin.crt"},
               {&a->key, a->key_buf, "admin.key"}};
  for (size_t k = 0; k < sizeof files / sizeof files[0]; k++) {
    if (*files[k].slot != NULL)
      continue;
    int n = snprintf(files[k].buf, ADMIN_PATH_MAX, "%s/%s", dir, files[k].file);
    if (n < 0 || n >= ADMIN_PATH_MAX) {
      fprintf(stderr, "tuma %s: TUMA_PKI_DIR is too long\n", cmd);
      return CLI_EXIT_USAGE;
    }
    *files[k].slot = files[k].buf;
  }
  return 0;
}

/* Connects, sends req, and hands back the reply (the caller frees it). CLI_EXIT_FAIL after a
 * message when the switch cannot be reached or does not answer properly. */
static int admin_run(const char *cmd, admin_args *a, Tuma__V1__AdminEnvelope *req,
                     Tuma__V1__AdminEnvelope **reply) {
  int rc = admin_resolve_files(cmd, a);
  if (rc != 0)
    return rc;
  char host[256], port[16];
  admin_client_diag diag = {""};
  if (admin_client_parse_address(a->connect, host, sizeof host, port, sizeof port, &diag) != 0) {
    fprintf(stderr, "tuma %s: --connect: %s\n", cmd, diag.text);
    return CLI_EXIT_USAGE;
  }
  admin_client_options o = {.host = host,
                            .port = port,
                            .ca_file = a->ca,
                            .cert_file = a->cert,
                            .key_file = a->key,
                            .server_name = a->server_name,
                            .timeout_ms = a->timeout_s * 1000};
  admin_client *c = NULL;
  if (admin_client_connect(&o, &c, &diag) != 0 || admin_client_call(c, req, reply, &diag) != 0) {
    fprintf(stderr, "tuma %s: %s\n", cmd, diag.text);
    admin_client_close(c);
    return CLI_EXIT_FAIL;
  }
  admin_client_close(c);
  return 0;
}

/* If reply is an AdminResult carrying an error, prints it and returns CLI_EXIT_FAIL; if it is
 * an AdminResult without one, returns CLI_EXIT_OK; otherwise -1 (another body). */
static int admin_check_result(const char *cmd, const Tuma__V1__AdminEnvelope *reply) {
  if (reply->body_case != TUMA__V1__ADMIN_ENVELOPE__BODY_ADMIN_RESULT)
    return -1;
  const Tuma__V1__Error *e = reply->admin_result->error;
  if (e == NULL || e->code == 0)
    return CLI_EXIT_OK;
  fprintf(stderr, "tuma %s: refused: %" PRIu32 " %s\n", cmd, e->code,
          e->message != NULL ? e->message : "");
  return CLI_EXIT_FAIL;
}

/* Judges the reply to a request whose only answer is an AdminResult: prints done on success,
 * the refusal otherwise. reply stays the caller's. */
static int admin_finish(const char *cmd, const Tuma__V1__AdminEnvelope *reply, const char *done) {
  int rc = admin_check_result(cmd, reply);
  if (rc < 0) {
    fprintf(stderr, "tuma %s: the switch answered with an unexpected message (body %d)\n", cmd,
            (int)reply->body_case);
    rc = CLI_EXIT_FAIL;
  } else if (rc == CLI_EXIT_OK) {
    printf("%s\n", done);
  }
  return rc;
}

/* Sends a request whose only answer is an AdminResult; prints done on success. */
static int admin_simple(const char *cmd, admin_args *a, Tuma__V1__AdminEnvelope *req,
                        const char *done) {
  Tuma__V1__AdminEnvelope *reply = NULL;
  int rc = admin_run(cmd, a, req, &reply);
  if (rc != 0)
    return rc;
  rc = admin_finish(cmd, reply, done);
  tuma__v1__admin_envelope__free_unpacked(reply, NULL);
  return rc;
}

/* Checks a participant id argument. */
static int admin_check_participant(const char *cmd, const char *usage, const char *id) {
  if (!cli_participant_id_valid(id))
    return admin_usage_error(cmd, usage,
                             "'%s' is not a participant id (1-63 characters of a-z, 0-9 and "
                             "'-', not starting with '-')",
                             id);
  return 0;
}

static int admin_check_currency(const char *cmd, const char *usage, const char *code) {
  if (!cli_currency_valid(code))
    return admin_usage_error(
        cmd, usage, "'%s' is not a currency code (three upper-case letters, e.g. KES)", code);
  return 0;
}

/* ---- participant ---- */

static const char participant_usage[] =
    "usage: tuma participant create ID --name NAME --currency CODE [--currency CODE]...\n"
    "       tuma participant suspend ID\n"
    "       tuma participant resume ID\n"
    "       tuma participant list\n"
    "\n"
    "Manages the switch's participants (operators). ID is the participant id, also the CN of\n"
    "its certificate (tuma pki issue --name ID --role operator); CODE an ISO 4217 currency.\n";

static const char *admin_status_text(Tuma__V1__ParticipantStatus s) {
  switch (s) {
  case TUMA__V1__PARTICIPANT_STATUS__PARTICIPANT_STATUS_ACTIVE:
    return "active";
  case TUMA__V1__PARTICIPANT_STATUS__PARTICIPANT_STATUS_SUSPENDED:
    return "suspended";
  default:
    return "unknown";
  }
}

/* Joins a participant's currencies with ',' into buf. */
static const char *admin_join(char **items, size_t n, char *buf, size_t cap) {
  size_t len = 0;
  buf[0] = '\0';
  for (size_t k = 0; k < n && len < cap; k++) {
    int w = snprintf(buf + len, cap - len, "%s%s", k > 0 ? "," : "", items[k]);
    if (w < 0)
      break;
    len += (size_t)w;
  }
  return buf;
}

static int admin_print_participants(const Tuma__V1__ParticipantListResult *r) {
  int wid = 2, wname = 4, wcur = 10;
  char cur[256];
  for (size_t k = 0; k < r->n_participants; k++) {
    const Tuma__V1__Participant *p = r->participants[k];
    int l1 = (int)strlen(p->participant_id), l2 = (int)strlen(p->name);
    int l3 = (int)strlen(admin_join(p->currencies, p->n_currencies, cur, sizeof cur));
    wid = l1 > wid ? l1 : wid;
    wname = l2 > wname ? l2 : wname;
    wcur = l3 > wcur ? l3 : wcur;
  }
  printf("%-*s  %-*s  %-*s  %-9s  %s\n", wid, "ID", wname, "NAME", wcur, "CURRENCIES", "STATUS",
         "CONNECTED");
  for (size_t k = 0; k < r->n_participants; k++) {
    const Tuma__V1__Participant *p = r->participants[k];
    printf("%-*s  %-*s  %-*s  %-9s  %s\n", wid, p->participant_id, wname, p->name, wcur,
           admin_join(p->currencies, p->n_currencies, cur, sizeof cur),
           admin_status_text(p->status), p->connected ? "yes" : "no");
  }
  if (r->n_participants == 0)
    printf("(no participants)\n");
  return CLI_EXIT_OK;
}

static int admin_participant_list(const char *cmd, admin_args *a) {
  Tuma__V1__ParticipantList body = TUMA__V1__PARTICIPANT_LIST__INIT;
  Tuma__V1__AdminEnvelope req = TUMA__V1__ADMIN_ENVELOPE__INIT;
  req.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_PARTICIPANT_LIST;
  req.participant_list = &body;
  Tuma__V1__AdminEnvelope *reply = NULL;
  int rc = admin_run(cmd, a, &req, &reply);
  if (rc != 0)
    return rc;
  if (reply->body_case == TUMA__V1__ADMIN_ENVELOPE__BODY_PARTICIPANT_LIST_RESULT) {
    rc = admin_print_participants(reply->participant_list_result);
  } else if ((rc = admin_check_result(cmd, reply)) != CLI_EXIT_FAIL) {
    fprintf(stderr, "tuma %s: the switch answered with an unexpected message (body %d)\n", cmd,
            (int)reply->body_case);
    rc = CLI_EXIT_FAIL;
  }
  tuma__v1__admin_envelope__free_unpacked(reply, NULL);
  return rc;
}

int cli_participant_main(int argc, char **argv) {
  const char *usage = participant_usage;
  if (argc < 2) {
    fputs(usage, stderr);
    return CLI_EXIT_USAGE;
  }
  if (cli_is_help(argv[1]) || strcmp(argv[1], "help") == 0) {
    printf("%s%s", usage, admin_common_help);
    return CLI_EXIT_OK;
  }
  const char *verb = argv[1];
  char cmd[64];
  snprintf(cmd, sizeof cmd, "participant %.32s", verb);
  int is_create = strcmp(verb, "create") == 0;
  int is_list = strcmp(verb, "list") == 0;
  int is_status = strcmp(verb, "suspend") == 0 || strcmp(verb, "resume") == 0;
  if (!is_create && !is_list && !is_status)
    return admin_usage_error("participant", usage, "unknown command '%s'", verb);
  admin_args a;
  int rc = admin_parse(argc - 1, argv + 1, cmd, usage,
                       is_create ? ADMIN_OPT_NAME | ADMIN_OPT_CURRENCY : 0, &a);
  if (rc != 0)
    return rc == 1 ? CLI_EXIT_OK : rc;
  if (is_list) {
    if (a.npos != 0)
      return admin_usage_error(cmd, usage, "unexpected argument '%s'", a.pos[0]);
    return admin_participant_list(cmd, &a);
  }
  if (a.npos != 1)
    return admin_usage_error(cmd, usage, "%sexactly one participant id is needed", NULL);
  const char *id = a.pos[0];
  if ((rc = admin_check_participant(cmd, usage, id)) != 0)
    return rc;
  Tuma__V1__AdminEnvelope req = TUMA__V1__ADMIN_ENVELOPE__INIT;
  char done[512];
  if (is_status) {
    int suspend = strcmp(verb, "suspend") == 0;
    Tuma__V1__ParticipantSetStatus body = TUMA__V1__PARTICIPANT_SET_STATUS__INIT;
    body.participant_id = (char *)id;
    body.status = suspend ? TUMA__V1__PARTICIPANT_STATUS__PARTICIPANT_STATUS_SUSPENDED
                          : TUMA__V1__PARTICIPANT_STATUS__PARTICIPANT_STATUS_ACTIVE;
    req.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_PARTICIPANT_SET_STATUS;
    req.participant_set_status = &body;
    snprintf(done, sizeof done, "participant %s %s", id, suspend ? "suspended" : "resumed");
    return admin_simple(cmd, &a, &req, done);
  }
  if (a.name == NULL)
    return admin_usage_error(cmd, usage, "%s--name is required", NULL);
  if (!cli_text_valid(a.name, ADMIN_NAME_MAX))
    return admin_usage_error(
        cmd, usage, "%s--name must be 1-128 bytes of UTF-8 text, no control characters", NULL);
  if (a.ncurrencies == 0)
    return admin_usage_error(cmd, usage, "%sat least one --currency is needed", NULL);
  for (int k = 0; k < a.ncurrencies; k++) {
    if ((rc = admin_check_currency(cmd, usage, a.currencies[k])) != 0)
      return rc;
    for (int j = 0; j < k; j++)
      if (strcmp(a.currencies[j], a.currencies[k]) == 0)
        return admin_usage_error(cmd, usage, "currency %s given twice", a.currencies[k]);
  }
  Tuma__V1__ParticipantCreate body = TUMA__V1__PARTICIPANT_CREATE__INIT;
  body.participant_id = (char *)id;
  body.name = (char *)a.name;
  body.n_currencies = (size_t)a.ncurrencies;
  body.currencies = (char **)a.currencies;
  req.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_PARTICIPANT_CREATE;
  req.participant_create = &body;
  char cur[256];
  snprintf(done, sizeof done, "participant %s created (%s)", id,
           admin_join((char **)a.currencies, (size_t)a.ncurrencies, cur, sizeof cur));
  return admin_simple(cmd, &a, &req, done);
}

/* ---- liquidity ---- */

static const char liquidity_usage[] =
    "usage: tuma liquidity deposit ID AMOUNT CURRENCY [--id HEX32] [--reason TEXT]\n"
    "       tuma liquidity withdraw ID AMOUNT CURRENCY [--id HEX32] [--reason TEXT]\n"
    "\n"
    "Moves funds between the scheme's settlement account and participant ID's liquidity\n"
    "account. AMOUNT is in minor units (digits only, e.g. 150000 for KES 1,500.00). --id is the\n"
    "adjustment id, 32 hex digits, the idempotency key: without it a fresh one is made and\n"
    "printed; repeat the command with --id to retry without moving the money twice.\n";

int cli_liquidity_main(int argc, char **argv) {
  const char *usage = liquidity_usage;
  if (argc < 2) {
    fputs(usage, stderr);
    return CLI_EXIT_USAGE;
  }
  if (cli_is_help(argv[1]) || strcmp(argv[1], "help") == 0) {
    printf("%s%s", usage, admin_common_help);
    return CLI_EXIT_OK;
  }
  const char *verb = argv[1];
  int deposit = strcmp(verb, "deposit") == 0;
  if (!deposit && strcmp(verb, "withdraw") != 0)
    return admin_usage_error("liquidity", usage, "unknown command '%s'", verb);
  const char *cmd = deposit ? "liquidity deposit" : "liquidity withdraw";
  admin_args a;
  int rc = admin_parse(argc - 1, argv + 1, cmd, usage, ADMIN_OPT_ID | ADMIN_OPT_REASON, &a);
  if (rc != 0)
    return rc == 1 ? CLI_EXIT_OK : rc;
  if (a.npos != 3)
    return admin_usage_error(cmd, usage, "%sexpected ID AMOUNT CURRENCY", NULL);
  const char *id = a.pos[0], *currency = a.pos[2];
  uint64_t amount = 0;
  if ((rc = admin_check_participant(cmd, usage, id)) != 0)
    return rc;
  if (cli_parse_u64(cmd, "AMOUNT", a.pos[1], 1, UINT64_MAX, &amount) != 0)
    return CLI_EXIT_USAGE;
  if ((rc = admin_check_currency(cmd, usage, currency)) != 0)
    return rc;
  if (a.reason != NULL && !cli_text_valid(a.reason, ADMIN_REASON_MAX))
    return admin_usage_error(cmd, usage,
                             "%s--reason must be 1-256 bytes of UTF-8 text, no control "
                             "characters",
                             NULL);
  uint8_t adj[16];
  if (a.id_hex != NULL) {
    if (cli_parse_hex(a.id_hex, adj, 16) != 0 || cli_all_zero(adj, 16))
      return admin_usage_error(cmd, usage, "--id: '%s' is not 32 hex digits (and not all zero)",
                               a.id_hex);
  } else if (cli_new_id(adj) != 0) {
    fprintf(stderr, "tuma %s: cannot make an adjustment id\n", cmd);
    return CLI_EXIT_FAIL;
  }
  char hex[33];
  for (int k = 0; k < 16; k++)
    snprintf(hex + 2 * k, 3, "%02x", adj[k]);
  /* Printed before connecting, so a timeout still leaves the operator the id to retry with. */
  printf("adjustment id %s\n", hex);
  fflush(stdout);

  Tuma__V1__Money money = TUMA__V1__MONEY__INIT;
  money.currency = (char *)currency;
  money.amount = amount;
  Tuma__V1__LiquidityAdjust body = TUMA__V1__LIQUIDITY_ADJUST__INIT;
  body.adjustment_id.data = adj;
  body.adjustment_id.len = sizeof adj;
  body.participant_id = (char *)id;
  body.amount = &money;
  body.direction = deposit ? TUMA__V1__LIQUIDITY_DIRECTION__LIQUIDITY_DIRECTION_DEPOSIT
                           : TUMA__V1__LIQUIDITY_DIRECTION__LIQUIDITY_DIRECTION_WITHDRAW;
  if (a.reason != NULL)
    body.reason = (char *)a.reason;
  Tuma__V1__AdminEnvelope req = TUMA__V1__ADMIN_ENVELOPE__INIT;
  req.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_LIQUIDITY_ADJUST;
  req.liquidity_adjust = &body;
  char done[256];
  snprintf(done, sizeof done, "%s %" PRIu64 " %s %s %s", deposit ? "deposited" : "withdrew", amount,
           currency, deposit ? "to" : "from", id);
  Tuma__V1__AdminEnvelope *reply = NULL;
  if ((rc = admin_run(cmd, &a, &req, &reply)) != 0) {
    /* The adjustment may or may not have been applied; the same id makes a retry safe. */
    if (rc == CLI_EXIT_FAIL)
      fprintf(stderr,
              "tuma %s: to retry this same adjustment safely: tuma %s %s %" PRIu64 " %s --id %s\n",
              cmd, cmd, id, amount, currency, hex);
    return rc;
  }
  rc = admin_finish(cmd, reply, done);
  tuma__v1__admin_envelope__free_unpacked(reply, NULL);
  return rc;
}

/* ---- ndc ---- */

static const char ndc_usage[] =
    "usage: tuma ndc set ID AMOUNT CURRENCY\n"
    "\n"
    "Sets participant ID's net debit cap in CURRENCY: the most it may owe, net, in minor units\n"
    "(digits only, 0 to 9223372036854775807; 0 allows no net debit), or 'unlimited'.\n";

/* The largest cap the switch accepts; it also means "no cap" (switch/registry.h). */
#define ADMIN_NDC_UNLIMITED ((uint64_t)INT64_MAX)

int cli_ndc_main(int argc, char **argv) {
  const char *usage = ndc_usage, *cmd = "ndc set";
  if (argc < 2) {
    fputs(usage, stderr);
    return CLI_EXIT_USAGE;
  }
  if (cli_is_help(argv[1]) || strcmp(argv[1], "help") == 0) {
    printf("%s%s", usage, admin_common_help);
    return CLI_EXIT_OK;
  }
  if (strcmp(argv[1], "set") != 0)
    return admin_usage_error("ndc", usage, "unknown command '%s'", argv[1]);
  admin_args a;
  int rc = admin_parse(argc - 1, argv + 1, cmd, usage, 0, &a);
  if (rc != 0)
    return rc == 1 ? CLI_EXIT_OK : rc;
  if (a.npos != 3)
    return admin_usage_error(cmd, usage, "%sexpected ID AMOUNT CURRENCY", NULL);
  const char *id = a.pos[0], *currency = a.pos[2];
  uint64_t amount = 0;
  if ((rc = admin_check_participant(cmd, usage, id)) != 0)
    return rc;
  if (strcmp(a.pos[1], "unlimited") == 0)
    amount = ADMIN_NDC_UNLIMITED;
  else if (cli_parse_u64(cmd, "AMOUNT", a.pos[1], 0, ADMIN_NDC_UNLIMITED, &amount) != 0)
    return CLI_EXIT_USAGE;
  if ((rc = admin_check_currency(cmd, usage, currency)) != 0)
    return rc;
  Tuma__V1__Money money = TUMA__V1__MONEY__INIT;
  money.currency = (char *)currency;
  money.amount = amount;
  Tuma__V1__NetDebitCapSet body = TUMA__V1__NET_DEBIT_CAP_SET__INIT;
  body.participant_id = (char *)id;
  body.cap = &money;
  Tuma__V1__AdminEnvelope req = TUMA__V1__ADMIN_ENVELOPE__INIT;
  req.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_NET_DEBIT_CAP_SET;
  req.net_debit_cap_set = &body;
  char done[256];
  if (amount == ADMIN_NDC_UNLIMITED)
    snprintf(done, sizeof done, "net debit cap of %s in %s set to unlimited", id, currency);
  else
    snprintf(done, sizeof done, "net debit cap of %s set to %" PRIu64 " %s", id, amount, currency);
  return admin_simple(cmd, &a, &req, done);
}

/* ---- positions ---- */

static const char positions_usage[] =
    "usage: tuma positions [ID]\n"
    "\n"
    "Shows each participant's position per currency (or only ID's), in minor units:\n"
    "LIQUIDITY (posted), RESERVED (held by transfers in flight), AVAILABLE, NDC (net debit\n"
    "cap, or 'unlimited') and NET (sent - received, posted; positive = owes).\n";

static int admin_print_positions(const Tuma__V1__PositionsResult *r) {
  int wid = 11;
  for (size_t k = 0; k < r->n_positions; k++) {
    int l = (int)strlen(r->positions[k]->participant_id);
    wid = l > wid ? l : wid;
  }
  printf("%-*s  %-8s  %20s  %20s  %20s  %20s  %20s\n", wid, "PARTICIPANT", "CURRENCY", "LIQUIDITY",
         "RESERVED", "AVAILABLE", "NDC", "NET");
  for (size_t k = 0; k < r->n_positions; k++) {
    const Tuma__V1__Position *p = r->positions[k];
    char ndc[24];
    if (p->net_debit_cap >= ADMIN_NDC_UNLIMITED)
      snprintf(ndc, sizeof ndc, "unlimited");
    else
      snprintf(ndc, sizeof ndc, "%" PRIu64, p->net_debit_cap);
    printf("%-*s  %-8s  %20" PRIu64 "  %20" PRIu64 "  %20" PRIu64 "  %20s  %20" PRId64 "\n", wid,
           p->participant_id, p->currency, p->liquidity, p->reserved, p->available, ndc,
           p->net_position);
  }
  if (r->n_positions == 0)
    printf("(no positions)\n");
  return CLI_EXIT_OK;
}

int cli_positions_main(int argc, char **argv) {
  const char *usage = positions_usage, *cmd = "positions";
  admin_args a;
  int rc = admin_parse(argc, argv, cmd, usage, 0, &a);
  if (rc != 0)
    return rc == 1 ? CLI_EXIT_OK : rc;
  if (a.npos > 1)
    return admin_usage_error(cmd, usage, "unexpected argument '%s'", a.pos[1]);
  if (a.npos == 1 && (rc = admin_check_participant(cmd, usage, a.pos[0])) != 0)
    return rc;
  Tuma__V1__PositionsQuery body = TUMA__V1__POSITIONS_QUERY__INIT;
  if (a.npos == 1)
    body.participant_id = (char *)a.pos[0];
  Tuma__V1__AdminEnvelope req = TUMA__V1__ADMIN_ENVELOPE__INIT;
  req.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_POSITIONS_QUERY;
  req.positions_query = &body;
  Tuma__V1__AdminEnvelope *reply = NULL;
  if ((rc = admin_run(cmd, &a, &req, &reply)) != 0)
    return rc;
  if (reply->body_case == TUMA__V1__ADMIN_ENVELOPE__BODY_POSITIONS_RESULT) {
    rc = admin_print_positions(reply->positions_result);
  } else if ((rc = admin_check_result(cmd, reply)) != CLI_EXIT_FAIL) {
    fprintf(stderr, "tuma %s: the switch answered with an unexpected message (body %d)\n", cmd,
            (int)reply->body_case);
    rc = CLI_EXIT_FAIL;
  }
  tuma__v1__admin_envelope__free_unpacked(reply, NULL);
  return rc;
}

/* ---- party ---- */

static const char party_usage[] =
    "usage: tuma party add TYPE PARTY-ID PARTICIPANT\n"
    "       tuma party remove TYPE PARTY-ID\n"
    "\n"
    "Maps a party (a payer or payee) to the participant that holds its account, or removes\n"
    "the mapping. TYPE is msisdn (E.164 digits without '+', 5-15 of them), national-id,\n"
    "account, refugee-id or business-id (1-64 printable characters, no spaces). Party ids\n"
    "are masked in everything this command prints.\n";

static const struct {
  const char *name;
  Tuma__V1__PartyIdType type;
} admin_party_types[] = {
    {"msisdn", TUMA__V1__PARTY_ID_TYPE__PARTY_ID_TYPE_MSISDN},
    {"national-id", TUMA__V1__PARTY_ID_TYPE__PARTY_ID_TYPE_NATIONAL_ID},
    {"account", TUMA__V1__PARTY_ID_TYPE__PARTY_ID_TYPE_ACCOUNT_ID},
    {"refugee-id", TUMA__V1__PARTY_ID_TYPE__PARTY_ID_TYPE_REFUGEE_ID},
    {"business-id", TUMA__V1__PARTY_ID_TYPE__PARTY_ID_TYPE_BUSINESS_ID},
};

/* 1 if id is a plausible party id of the given type. */
static int admin_party_id_valid(Tuma__V1__PartyIdType type, const char *id) {
  size_t n = strlen(id);
  if (type == TUMA__V1__PARTY_ID_TYPE__PARTY_ID_TYPE_MSISDN) {
    if (n < 5 || n > 15)
      return 0;
    for (size_t k = 0; k < n; k++)
      if (id[k] < '0' || id[k] > '9')
        return 0;
    return 1;
  }
  if (n < 1 || n > ADMIN_PARTY_ID_MAX)
    return 0;
  for (size_t k = 0; k < n; k++)
    if (id[k] <= ' ' || id[k] > '~')
      return 0;
  return 1;
}

int cli_party_main(int argc, char **argv) {
  const char *usage = party_usage;
  if (argc < 2) {
    fputs(usage, stderr);
    return CLI_EXIT_USAGE;
  }
  if (cli_is_help(argv[1]) || strcmp(argv[1], "help") == 0) {
    printf("%s%s", usage, admin_common_help);
    return CLI_EXIT_OK;
  }
  int add = strcmp(argv[1], "add") == 0;
  if (!add && strcmp(argv[1], "remove") != 0)
    return admin_usage_error("party", usage, "unknown command '%s'", argv[1]);
  const char *cmd = add ? "party add" : "party remove";
  admin_args a;
  int rc = admin_parse(argc - 1, argv + 1, cmd, usage, 0, &a);
  if (rc != 0)
    return rc == 1 ? CLI_EXIT_OK : rc;
  if (a.npos != (add ? 3 : 2))
    return admin_usage_error(cmd, usage,
                             add ? "%sexpected TYPE PARTY-ID PARTICIPANT"
                                 : "%sexpected TYPE "
                                   "PARTY-ID",
                             NULL);
  const char *type_name = a.pos[0], *party_id = a.pos[1];
  int type = -1;
  for (size_t k = 0; k < sizeof admin_party_types / sizeof admin_party_types[0]; k++)
    if (strcmp(type_name, admin_party_types[k].name) == 0)
      type = (int)admin_party_types[k].type;
  if (type < 0)
    return admin_usage_error(cmd, usage,
                             "'%s' is not a party type: msisdn, national-id, account, "
                             "refugee-id or business-id",
                             type_name);
  char masked[ADMIN_PARTY_ID_MAX + 1];
  cli_mask(party_id, masked, sizeof masked);
  if (!admin_party_id_valid((Tuma__V1__PartyIdType)type, party_id))
    return admin_usage_error(cmd, usage, "'%s' is not a valid party id of that type", masked);
  if (add && (rc = admin_check_participant(cmd, usage, a.pos[2])) != 0)
    return rc;

  Tuma__V1__Party party = TUMA__V1__PARTY__INIT;
  party.type = (Tuma__V1__PartyIdType)type;
  party.id = (char *)party_id;
  Tuma__V1__AdminEnvelope req = TUMA__V1__ADMIN_ENVELOPE__INIT;
  Tuma__V1__PartyDirectoryUpsert up = TUMA__V1__PARTY_DIRECTORY_UPSERT__INIT;
  Tuma__V1__PartyDirectoryRemove rm = TUMA__V1__PARTY_DIRECTORY_REMOVE__INIT;
  char done[256];
  if (add) {
    up.party = &party;
    up.participant_id = (char *)a.pos[2];
    req.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_PARTY_DIRECTORY_UPSERT;
    req.party_directory_upsert = &up;
    snprintf(done, sizeof done, "party %s %s now routes to %s", type_name, masked, a.pos[2]);
  } else {
    rm.party = &party;
    req.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_PARTY_DIRECTORY_REMOVE;
    req.party_directory_remove = &rm;
    snprintf(done, sizeof done, "party %s %s removed", type_name, masked);
  }
  return admin_simple(cmd, &a, &req, done);
}
