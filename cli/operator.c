/* operator.c — `tuma op receive|send|query` (operator.h): an operator's side of the switch from
 * the command line. Every argument is checked before connecting; then one wire.h connection
 * with an operator certificate carries Envelope frames (proto/README.md §5-6). Output is one
 * line per event, party ids masked:
 *
 *   forward  ID from PAYER AMOUNT CUR to PAYEE [ref "TEXT"]   (receive: a TransferForward)
 *   fulfil   ID COMMITTED | ABORTED CODE (why)                 (receive: what it answered)
 *   result   ID STATE [CODE TEXT] [at TIME]                    (the switch's TransferResult)
 *   notice   ID STATE [CODE TEXT] [at TIME]                    (receive: an unsolicited one)
 *
 * PAYEE is TYPE:MASKED-ID for a party, or the participant when the payer named no party.
 */
#include "operator.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "cli.h"
#include "frame.h"
#include "wire.h"

enum {
  OP_PATH_MAX = 4096,
  OP_MAX_PARTIES = 1000, /* the switch's limit per PartyRegister */
  OP_PARTY_ID_MAX = 128, /* bytes, as the switch's registry */
  OP_MSISDN_MAX = 15,    /* E.164 digits */
  OP_REFERENCE_MAX = 256,
  OP_DEFAULT_TIMEOUT_MS = 10000,
  OP_DEFAULT_EXPIRES_IN_MS = 30000,
  OP_QUERY_INTERVAL_MS = 250,
};

/* Options a verb accepts beyond the connection ones. */
enum {
  OP_OPT_REGISTER = 1u << 0,
  OP_OPT_REJECT = 1u << 1,
  OP_OPT_COUNT = 1u << 2,
  OP_OPT_FULFILMENT = 1u << 3,
  OP_OPT_TO = 1u << 4, /* --to, --to-msisdn */
  OP_OPT_AMOUNT = 1u << 5,
  OP_OPT_CURRENCY = 1u << 6,
  OP_OPT_EXPIRES_IN = 1u << 7,
  OP_OPT_REFERENCE = 1u << 8,
  OP_OPT_ID = 1u << 9,
  OP_OPT_CONDITION = 1u << 10, /* --with-condition, --condition */
};

static const char op_usage[] =
    "usage: tuma op receive [--register TYPE:ID]... [--reject CODE] [--fulfilment HEX64]\n"
    "                       [--count N] CONNECTION\n"
    "       tuma op send (--to PARTICIPANT | --to-msisdn DIGITS) --amount MINOR --currency CODE\n"
    "                    [--expires-in MS] [--reference TEXT] [--id HEX32]\n"
    "                    [--with-condition | --condition HEX64] CONNECTION\n"
    "       tuma op query --id HEX32 CONNECTION\n"
    "\n"
    "An operator's side of the switch, with an operator certificate: 'receive' plays a payee\n"
    "operator (answers every transfer forwarded to it), 'send' a payer (one transfer, then its\n"
    "outcome), 'query' asks for a transfer's state. Run 'tuma op VERB --help' for details.\n";

static const char op_receive_usage[] =
    "usage: tuma op receive [--register TYPE:ID]... [--reject CODE] [--fulfilment HEX64]\n"
    "                       [--count N] CONNECTION\n"
    "\n"
    "Connects as an operator, says Hello (prints the participant and currencies the switch\n"
    "took it for), registers the given parties as reachable here, then answers every transfer\n"
    "the switch forwards: COMMITTED, or ABORTED with --reject. Prints each forward, its answer,\n"
    "the switch's confirmation, and unsolicited results (expiries). Stops after N transfers\n"
    "have an outcome (--count) or on Ctrl-C / SIGTERM, with exit status 0.\n"
    "\n"
    "  --register TYPE:ID  a party reachable at this operator (repeatable); TYPE is msisdn\n"
    "                      (1-15 digits, E.164 without '+'), national-id, account, refugee-id\n"
    "                      or business-id (1-128 bytes of text)\n"
    "  --reject CODE       refuse every transfer with this payee error code (5000-5999, e.g.\n"
    "                      5105 payee rejected)\n"
    "  --fulfilment HEX64  a preimage (32 bytes, 64 hex digits, e.g. from openssl rand -hex 32)\n"
    "                      to answer transfers whose condition is its SHA-256 (printed at the\n"
    "                      start: payers send it with tuma op send --condition). Without it, or\n"
    "                      when it does not match, a transfer with a condition is refused (5105).\n"
    "  --count N           stop after N transfers (default: run until stopped)\n";

static const char op_send_usage[] =
    "usage: tuma op send (--to PARTICIPANT | --to-msisdn DIGITS) --amount MINOR --currency CODE\n"
    "                    [--expires-in MS] [--reference TEXT] [--id HEX32]\n"
    "                    [--with-condition | --condition HEX64] CONNECTION\n"
    "\n"
    "Sends one transfer from this operator and waits for its outcome. Exit status 0 when it\n"
    "COMMITTED, 1 when it was ABORTED or EXPIRED (or the switch could not be asked).\n"
    "\n"
    "  --to PARTICIPANT    the payee operator's participant id\n"
    "  --to-msisdn DIGITS  or the payee's phone number (1-15 digits, E.164 without '+'): the\n"
    "                      switch finds its operator in the party directory\n"
    "  --amount MINOR      in minor units, digits only, more than 0 (2500 = KES 25.00)\n"
    "  --currency CODE     ISO 4217, three upper-case letters (KES)\n"
    "  --expires-in MS     the payee must answer within this many milliseconds (default 30000)\n"
    "  --reference TEXT    passed on to the payee (at most 256 bytes)\n"
    "  --id HEX32          the transfer id, 32 hex digits (default: a fresh time-ordered one,\n"
    "                      printed first). It is the idempotency key.\n"
    "  --condition HEX64   the condition (SHA-256 of the payee's preimage, 64 hex digits, as\n"
    "                      'tuma op receive --fulfilment' prints it): the transfer commits only\n"
    "                      if the payee reveals the preimage, which is then printed\n"
    "  --with-condition    make a random 32-byte preimage, send its SHA-256 as the condition and\n"
    "                      print the preimage (a payee must answer with it: --fulfilment)\n";

static const char op_query_usage[] =
    "usage: tuma op query --id HEX32 CONNECTION\n"
    "\n"
    "Prints the state of one of this operator's transfers (as payer or payee): RESERVED\n"
    "(waiting for the payee), COMMITTED, ABORTED or EXPIRED, with the error code if any.\n";

static const char op_common_help[] =
    "\n"
    "CONNECTION (every verb):\n"
    "  --pki DIR --as NAME    certificates from 'tuma pki': DIR/ca.crt, DIR/NAME.crt and\n"
    "                         DIR/NAME.key; NAME is the participant id (DIR defaults to\n"
    "                         $TUMA_PKI_DIR, else pki)\n"
    "  --ca FILE --cert FILE --key FILE   or the files one by one (each overrides --pki)\n"
    "  --connect HOST:PORT    tumad's operator listener (default 127.0.0.1:7400)\n"
    "  --server-name NAME     the name the switch's certificate must carry (default: HOST)\n"
    "  --timeout MS           for connecting and for each answer (default 10000)\n"
    "\n"
    "exit status: 0 done, 1 refused, failed, aborted or expired, 2 usage error\n";

/* A party to register. */
typedef struct op_party {
  Tuma__V1__PartyIdType type;
  const char *id; /* borrowed from argv */
} op_party;

/* Parsed arguments of one verb. */
typedef struct op_args {
  const char *connect, *ca, *cert, *key, *pki, *as, *server_name;
  int timeout_ms;
  op_party *parties; /* --register, calloc'd (OP_MAX_PARTIES) when the verb takes it */
  int nparties;
  int reject;     /* 0 = accept */
  uint64_t count; /* 0 = until stopped */
  uint8_t fulfilment[32];
  int has_fulfilment;
  const char *to, *to_msisdn, *currency, *reference;
  uint64_t amount;
  int expires_in_ms;
  uint8_t id[16];
  int has_id;
  int with_condition;
  uint8_t condition[32]; /* --condition */
  int has_condition;
  char host[256], port[16];
  char ca_buf[OP_PATH_MAX], cert_buf[OP_PATH_MAX], key_buf[OP_PATH_MAX];
} op_args;

static const struct {
  const char *name;
  Tuma__V1__PartyIdType type;
} op_party_types[] = {
    {"msisdn", TUMA__V1__PARTY_ID_TYPE__PARTY_ID_TYPE_MSISDN},
    {"national-id", TUMA__V1__PARTY_ID_TYPE__PARTY_ID_TYPE_NATIONAL_ID},
    {"account", TUMA__V1__PARTY_ID_TYPE__PARTY_ID_TYPE_ACCOUNT_ID},
    {"refugee-id", TUMA__V1__PARTY_ID_TYPE__PARTY_ID_TYPE_REFUGEE_ID},
    {"business-id", TUMA__V1__PARTY_ID_TYPE__PARTY_ID_TYPE_BUSINESS_ID},
};

/* ---- small helpers ---- */

/* Prints a usage error with the verb's usage and returns CLI_EXIT_USAGE. */
static int op_usage_error(const char *cmd, const char *usage, const char *fmt, const char *arg) {
  fprintf(stderr, "tuma %s: ", cmd);
  fprintf(stderr, fmt, arg != NULL ? arg : "");
  fprintf(stderr, "\n%s", usage);
  return CLI_EXIT_USAGE;
}


/* Writes bytes[0..n) as lower-case hex into out (2 * n + 1 bytes). Returns out. */
static char *op_hex(const uint8_t *bytes, size_t n, char *out) {
  static const char digits[] = "0123456789abcdef";
  for (size_t k = 0; k < n; k++) {
    out[2 * k] = digits[bytes[k] >> 4];
    out[2 * k + 1] = digits[bytes[k] & 15];
  }
  out[2 * n] = '\0';
  return out;
}

/* A transfer id for printing: 32 hex digits, or "(none)" when it is not 16 bytes. */
static const char *op_id_text(ProtobufCBinaryData id, char out[33]) {
  if (id.len != 16 || id.data == NULL) {
    snprintf(out, 33, "(none)");
    return out;
  }
  return op_hex(id.data, 16, out);
}


static uint64_t op_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int64_t op_mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* 1 if id is 1..max digits. */
static int op_digits_valid(const char *id, size_t max) {
  size_t n = strlen(id);
  if (n < 1 || n > max)
    return 0;
  for (size_t k = 0; k < n; k++)
    if (id[k] < '0' || id[k] > '9')
      return 0;
  return 1;
}

static const char *op_party_type_name(Tuma__V1__PartyIdType type) {
  for (size_t k = 0; k < sizeof op_party_types / sizeof op_party_types[0]; k++)
    if (op_party_types[k].type == type)
      return op_party_types[k].name;
  return "party";
}

/* "TYPE:MASKED" for a party (masked with cli_mask), or "-" when there is none. */
static const char *op_party_text(const Tuma__V1__Party *p, char *out, size_t cap) {
  if (p == NULL || p->id == NULL || p->id[0] == '\0') {
    snprintf(out, cap, "-");
    return out;
  }
  char masked[OP_PARTY_ID_MAX + 1];
  cli_mask(p->id, masked, sizeof masked);
  snprintf(out, cap, "%s:%s", op_party_type_name(p->type), masked);
  return out;
}

/* Copies text for printing: control characters and '"' become '?', at most cap - 1 bytes. */
static const char *op_printable(const char *text, char *out, size_t cap) {
  size_t k = 0;
  for (; text != NULL && text[k] != '\0' && k + 1 < cap; k++) {
    unsigned char c = (unsigned char)text[k];
    out[k] = c < 0x20 || c == 0x7f || c == '"' ? '?' : (char)c;
  }
  out[k] = '\0';
  return out;
}

static const char *op_state_name(Tuma__V1__TransferState s) {
  switch (s) {
  case TUMA__V1__TRANSFER_STATE__TRANSFER_STATE_RESERVED:
    return "RESERVED";
  case TUMA__V1__TRANSFER_STATE__TRANSFER_STATE_COMMITTED:
    return "COMMITTED";
  case TUMA__V1__TRANSFER_STATE__TRANSFER_STATE_ABORTED:
    return "ABORTED";
  case TUMA__V1__TRANSFER_STATE__TRANSFER_STATE_EXPIRED:
    return "EXPIRED";
  default:
    return "UNSPECIFIED";
  }
}

static int op_state_final(Tuma__V1__TransferState s) {
  return s == TUMA__V1__TRANSFER_STATE__TRANSFER_STATE_COMMITTED ||
         s == TUMA__V1__TRANSFER_STATE__TRANSFER_STATE_ABORTED ||
         s == TUMA__V1__TRANSFER_STATE__TRANSFER_STATE_EXPIRED;
}

/* Prints "WORD ID STATE [CODE TEXT] [at TIME]" for a TransferResult; the time only with_time
 * (the answer to a query carries the time of the query, not of the outcome). */
static void op_print_result(const char *word, const Tuma__V1__TransferResult *r, int with_time) {
  char id[33], msg[256], when[64] = "";
  printf("%-8s %s %s", word, op_id_text(r->transfer_id, id), op_state_name(r->state));
  if (r->error != NULL && r->error->code != 0)
    printf(" %" PRIu32 " %s", r->error->code, op_printable(r->error->message, msg, sizeof msg));
  if (with_time && r->completed_at_ms != 0) {
    time_t secs = (time_t)(r->completed_at_ms / 1000);
    struct tm tm;
    if (gmtime_r(&secs, &tm) != NULL && strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm) > 0)
      printf(" at %s.%03uZ", when, (unsigned)(r->completed_at_ms % 1000));
  }
  printf("\n");
}

/* Prints an Error envelope body as "tuma CMD: WHAT: CODE TEXT". */
static void op_print_error(const char *cmd, const char *what, const Tuma__V1__Error *e) {
  char msg[256];
  fprintf(stderr, "tuma %s: %s: %" PRIu32 " %s\n", cmd, what, e != NULL ? e->code : 0,
          e != NULL ? op_printable(e->message, msg, sizeof msg) : "");
}

/* ---- arguments ---- */

/* Parses "TYPE:ID" into p (the id borrowed from text). 0, or CLI_EXIT_USAGE after a message. */
static int op_parse_party(const char *cmd, const char *usage, const char *text, op_party *p) {
  const char *colon = strchr(text, ':');
  char masked[OP_PARTY_ID_MAX + 1];
  if (colon == NULL)
    return op_usage_error(cmd, usage, "--register: '%s' is not TYPE:ID (e.g. msisdn:254712345678)",
                          cli_mask(text, masked, sizeof masked));
  size_t tlen = (size_t)(colon - text);
  int type = -1;
  for (size_t k = 0; k < sizeof op_party_types / sizeof op_party_types[0]; k++)
    if (strlen(op_party_types[k].name) == tlen && strncmp(text, op_party_types[k].name, tlen) == 0)
      type = (int)op_party_types[k].type;
  if (type < 0)
    return op_usage_error(cmd, usage,
                          "--register: the type before ':' must be msisdn, national-id, account, "
                          "refugee-id or business-id%s",
                          NULL);
  const char *id = colon + 1;
  cli_mask(id, masked, sizeof masked);
  if (type == TUMA__V1__PARTY_ID_TYPE__PARTY_ID_TYPE_MSISDN ? !op_digits_valid(id, OP_MSISDN_MAX)
                                                            : !cli_text_valid(id, OP_PARTY_ID_MAX))
    return op_usage_error(cmd, usage,
                          type == TUMA__V1__PARTY_ID_TYPE__PARTY_ID_TYPE_MSISDN
                              ? "--register: '%s' is not an MSISDN (1-15 digits, no '+')"
                              : "--register: '%s' is not a party id (1-128 bytes of text)",
                          masked);
  p->type = (Tuma__V1__PartyIdType)type;
  p->id = id;
  return 0;
}

/* Parses argv[1..] (argv[0] is the verb) into a. Returns 0 to go on, 1 when --help was
 * printed (exit 0), or CLI_EXIT_USAGE after a message. */
static int op_parse(int argc, char **argv, const char *cmd, const char *usage, unsigned allowed,
                    op_args *a) {
  const char *v = NULL;
  int m;
  for (int i = 1; i < argc; i++) {
    const char *w = argv[i];
#define OP_OPT(name) ((m = cli_opt(argc, argv, &i, cmd, (name), &v)) != 0)
    if (cli_is_help(w)) {
      printf("%s%s", usage, op_common_help);
      return 1;
    } else if (OP_OPT("--connect")) {
      if (m < 0)
        return CLI_EXIT_USAGE;
      a->connect = v;
    } else if (OP_OPT("--ca")) {
      if (m < 0)
        return CLI_EXIT_USAGE;
      a->ca = v;
    } else if (OP_OPT("--cert")) {
      if (m < 0)
        return CLI_EXIT_USAGE;
      a->cert = v;
    } else if (OP_OPT("--key")) {
      if (m < 0)
        return CLI_EXIT_USAGE;
      a->key = v;
    } else if (OP_OPT("--pki")) {
      if (m < 0)
        return CLI_EXIT_USAGE;
      a->pki = v;
    } else if (OP_OPT("--as")) {
      if (m < 0)
        return CLI_EXIT_USAGE;
      if (!cli_participant_id_valid(v))
        return op_usage_error(cmd, usage,
                              "--as: '%s' is not a participant id (1-63 characters of a-z, 0-9 "
                              "and '-', not starting with '-')",
                              v);
      a->as = v;
    } else if (OP_OPT("--server-name")) {
      if (m < 0)
        return CLI_EXIT_USAGE;
      a->server_name = v;
    } else if (OP_OPT("--timeout")) {
      if (m < 0 || cli_parse_int(cmd, "--timeout", v, 1, 3600000, &a->timeout_ms) != 0)
        return CLI_EXIT_USAGE;
    } else if ((allowed & OP_OPT_REGISTER) && OP_OPT("--register")) {
      if (m < 0)
        return CLI_EXIT_USAGE;
      if (a->nparties == OP_MAX_PARTIES)
        return op_usage_error(cmd, usage, "at most 1000 parties%s", NULL);
      int rc = op_parse_party(cmd, usage, v, &a->parties[a->nparties]);
      if (rc != 0)
        return rc;
      a->nparties++;
    } else if ((allowed & OP_OPT_REJECT) && OP_OPT("--reject")) {
      if (m < 0 || cli_parse_int(cmd, "--reject", v, 5000, 5999, &a->reject) != 0)
        return CLI_EXIT_USAGE;
    } else if ((allowed & OP_OPT_COUNT) && OP_OPT("--count")) {
      if (m < 0 || cli_parse_u64(cmd, "--count", v, 1, UINT32_MAX, &a->count) != 0)
        return CLI_EXIT_USAGE;
    } else if ((allowed & OP_OPT_FULFILMENT) && OP_OPT("--fulfilment")) {
      if (m < 0)
        return CLI_EXIT_USAGE;
      if (cli_parse_hex(v, a->fulfilment, sizeof a->fulfilment) != 0)
        return op_usage_error(cmd, usage, "--fulfilment: '%s' is not 64 hex digits", v);
      a->has_fulfilment = 1;
    } else if ((allowed & OP_OPT_TO) && OP_OPT("--to")) {
      if (m < 0)
        return CLI_EXIT_USAGE;
      if (!cli_participant_id_valid(v))
        return op_usage_error(cmd, usage,
                              "--to: '%s' is not a participant id (1-63 characters of a-z, 0-9 "
                              "and '-', not starting with '-')",
                              v);
      a->to = v;
    } else if ((allowed & OP_OPT_TO) && OP_OPT("--to-msisdn")) {
      if (m < 0)
        return CLI_EXIT_USAGE;
      if (!op_digits_valid(v, OP_MSISDN_MAX)) {
        char masked[OP_PARTY_ID_MAX + 1];
        return op_usage_error(cmd, usage,
                              "--to-msisdn: '%s' is not an MSISDN (1-15 digits, E.164 without "
                              "'+')",
                              cli_mask(v, masked, sizeof masked));
      }
      a->to_msisdn = v;
    } else if ((allowed & OP_OPT_AMOUNT) && OP_OPT("--amount")) {
      if (m < 0 || cli_parse_u64(cmd, "--amount", v, 1, UINT64_MAX, &a->amount) != 0)
        return CLI_EXIT_USAGE;
    } else if ((allowed & OP_OPT_CURRENCY) && OP_OPT("--currency")) {
      if (m < 0)
        return CLI_EXIT_USAGE;
      if (!cli_currency_valid(v))
        return op_usage_error(cmd, usage,
                              "--currency: '%s' is not a currency code (three upper-case "
                              "letters, e.g. KES)",
                              v);
      a->currency = v;
    } else if ((allowed & OP_OPT_EXPIRES_IN) && OP_OPT("--expires-in")) {
      if (m < 0 || cli_parse_int(cmd, "--expires-in", v, 1, 86400000, &a->expires_in_ms) != 0)
        return CLI_EXIT_USAGE;
    } else if ((allowed & OP_OPT_REFERENCE) && OP_OPT("--reference")) {
      if (m < 0)
        return CLI_EXIT_USAGE;
      if (!cli_text_valid(v, OP_REFERENCE_MAX))
        return op_usage_error(cmd, usage,
                              "%s--reference must be 1-256 bytes of UTF-8 text, no control "
                              "characters",
                              NULL);
      a->reference = v;
    } else if ((allowed & OP_OPT_ID) && OP_OPT("--id")) {
      if (m < 0)
        return CLI_EXIT_USAGE;
      static const uint8_t zero[16];
      if (cli_parse_hex(v, a->id, sizeof a->id) != 0 || memcmp(a->id, zero, sizeof zero) == 0)
        return op_usage_error(cmd, usage, "--id: '%s' is not 32 hex digits (and not all zero)", v);
      a->has_id = 1;
    } else if ((allowed & OP_OPT_CONDITION) && cli_flag(argv, i, "--with-condition")) {
      a->with_condition = 1;
    } else if ((allowed & OP_OPT_CONDITION) && OP_OPT("--condition")) {
      if (m < 0)
        return CLI_EXIT_USAGE;
      if (cli_parse_hex(v, a->condition, sizeof a->condition) != 0)
        return op_usage_error(cmd, usage, "--condition: '%s' is not 64 hex digits", v);
      a->has_condition = 1;
    } else if (w[0] == '-') {
      return op_usage_error(cmd, usage, "unknown option '%s'", w);
    } else {
      return op_usage_error(cmd, usage, "unexpected argument '%s'", w);
    }
#undef OP_OPT
  }
  wire_diag diag = {""};
  if (wire_parse_address(a->connect, a->host, sizeof a->host, a->port, sizeof a->port, &diag) != 0)
    return op_usage_error(cmd, usage, "--connect: %s", diag.text);
  return 0;
}

/* The certificate files: explicit --ca/--cert/--key, else DIR/ca.crt, DIR/NAME.crt and
 * DIR/NAME.key with DIR = --pki, $TUMA_PKI_DIR or pki and NAME = --as. */
static int op_resolve_files(const char *cmd, const char *usage, op_args *a) {
  if ((a->cert == NULL || a->key == NULL) && a->as == NULL)
    return op_usage_error(
        cmd, usage, "%swhich operator? Give --pki DIR --as NAME (or --cert FILE --key FILE)", NULL);
  const char *dir = a->pki;
  if (dir == NULL)
    dir = getenv("TUMA_PKI_DIR");
  if (dir == NULL || dir[0] == '\0')
    dir = "pki";
  struct {
    const char **slot;
    char *buf;
    const char *name, *ext;
  } files[] = {{&a->ca, a->ca_buf, "ca", ".crt"},
               {&a->cert, a->cert_buf, a->as, ".crt"},
               {&a->key, a->key_buf, a->as, ".key"}};
  for (size_t k = 0; k < sizeof files / sizeof files[0]; k++) {
    if (*files[k].slot != NULL)
      continue;
    int n = snprintf(files[k].buf, OP_PATH_MAX, "%s/%s%s", dir, files[k].name, files[k].ext);
    if (n < 0 || n >= OP_PATH_MAX)
      return op_usage_error(cmd, usage, "the --pki directory '%s' is too long", dir);
    *files[k].slot = files[k].buf;
  }
  return 0;
}

/* ---- the session: one connection and its correlation ids ---- */

typedef struct op_session {
  const char *cmd;
  wire_conn *conn;
  uint64_t next_corr;
  int timeout_ms;
} op_session;

/* Connects with a's address and files. CLI_EXIT_FAIL after a message. */
static int op_connect(op_session *s, const op_args *a) {
  wire_options o = {.host = a->host,
                    .port = a->port,
                    .ca_file = a->ca,
                    .cert_file = a->cert,
                    .key_file = a->key,
                    .server_name = a->server_name,
                    .timeout_ms = a->timeout_ms,
                    .role = "operator",
                    .files_hint = "--pki DIR --as NAME"};
  wire_diag diag = {""};
  s->next_corr = 1;
  s->timeout_ms = a->timeout_ms;
  if (wire_connect(&o, &s->conn, &diag) != 0) {
    fprintf(stderr, "tuma %s: %s\n", s->cmd, diag.text);
    return CLI_EXIT_FAIL;
  }
  return 0;
}

/* Sends env with the next correlation id (returned in *corr; may be NULL) or, when env already
 * carries one (a fulfil keeps its own), as it is. CLI_EXIT_FAIL after a message. */
static int op_send_env(op_session *s, Tuma__V1__Envelope *env, uint64_t *corr) {
  if (env->correlation_id == 0)
    env->correlation_id = s->next_corr++;
  if (corr != NULL)
    *corr = env->correlation_id;
  uint8_t stack[1024];
  size_t size = proto_envelope_frame_size(env), len = 0;
  uint8_t *frame = size <= sizeof stack ? stack : malloc(size);
  if (frame == NULL) {
    fprintf(stderr, "tuma %s: out of memory\n", s->cmd);
    return CLI_EXIT_FAIL;
  }
  int rc = proto_envelope_encode(env, frame, size, &len);
  wire_diag diag = {""};
  if (rc != PROTO_FRAME_OK)
    fprintf(stderr, "tuma %s: cannot encode the request: %s\n", s->cmd, proto_frame_strerror(rc));
  else if ((rc = wire_send(s->conn, frame, len, &diag)) != 0)
    fprintf(stderr, "tuma %s: %s\n", s->cmd, diag.text);
  if (frame != stack)
    free(frame);
  return rc != 0 ? CLI_EXIT_FAIL : 0;
}

/* Tells the switch this connection only sends: no forwards or notifications come to it. The
 * HelloAck that answers is skipped like any reply to another correlation id. */
static int op_hello_send_only(op_session *s) {
  Tuma__V1__Hello hello = TUMA__V1__HELLO__INIT;
  hello.client_name = (char *)"tuma op " TUMA_VERSION;
  hello.send_only = 1;
  Tuma__V1__Envelope env = TUMA__V1__ENVELOPE__INIT;
  env.body_case = TUMA__V1__ENVELOPE__BODY_HELLO;
  env.hello = &hello;
  return op_send_env(s, &env, NULL);
}

/* Waits at most timeout_ms (< 0: no limit) for the next envelope, or until wake_fd (if >= 0)
 * is readable. 0 with *env (the caller frees it); WIRE_ETIMEOUT or WIRE_EWOKEN without a
 * message; CLI_EXIT_FAIL after a message for anything else. */
static int op_recv_env(op_session *s, int timeout_ms, int wake_fd, Tuma__V1__Envelope **env) {
  *env = NULL;
  const uint8_t *body = NULL;
  size_t len = 0;
  wire_diag diag = {""};
  int rc = wire_recv(s->conn, timeout_ms, wake_fd, &body, &len, &diag);
  if (rc == WIRE_ETIMEOUT || rc == WIRE_EWOKEN)
    return rc;
  if (rc != 0) {
    fprintf(stderr, "tuma %s: %s\n", s->cmd, diag.text);
    return CLI_EXIT_FAIL;
  }
  *env = proto_envelope_decode(body, len);
  if (*env == NULL) {
    fprintf(stderr,
            "tuma %s: the switch sent a frame that does not decode as an Envelope (is --connect "
            "the operator listener, not the admin one?)\n",
            s->cmd);
    return CLI_EXIT_FAIL;
  }
  return 0;
}

/* Refuses a transfer forwarded to a connection that does not take any (send, query), so the
 * payer hears at once instead of at the expiry. */
static int op_refuse_forward(op_session *s, const Tuma__V1__TransferForward *fw) {
  char id[33];
  fprintf(stderr,
          "tuma %s: the switch forwarded transfer %s to this connection; refused with 5100 "
          "(run 'tuma op receive' to take transfers)\n",
          s->cmd, op_id_text(fw->transfer_id, id));
  Tuma__V1__Error reason = TUMA__V1__ERROR__INIT;
  reason.code = 5100;
  reason.message = (char *)"this connection does not take transfers";
  Tuma__V1__TransferFulfil ful = TUMA__V1__TRANSFER_FULFIL__INIT;
  ful.transfer_id = fw->transfer_id;
  ful.state = TUMA__V1__FULFIL_STATE__FULFIL_STATE_ABORTED;
  ful.reason = &reason;
  Tuma__V1__Envelope env = TUMA__V1__ENVELOPE__INIT;
  env.body_case = TUMA__V1__ENVELOPE__BODY_TRANSFER_FULFIL;
  env.transfer_fulfil = &ful;
  return op_send_env(s, &env, NULL);
}

/* ---- receive ---- */

/* A forwarded transfer this receiver answered, until the switch has confirmed the answer. */
typedef struct op_pending {
  uint8_t id[16];
  uint64_t fulfil_corr;   /* the fulfil's correlation id; 0 once the switch answered it */
  uint64_t expiration_ms; /* the transfer's, Unix ms */
  int64_t deadline;       /* monotonic ms by which the switch must say something */
  int counted;            /* its outcome is known and counted in done */
} op_pending;

typedef struct op_receiver {
  op_session s;
  const op_args *a;
  uint64_t hello_corr, register_corr; /* 0 once answered */
  int64_t hello_deadline, register_deadline;
  int waiting_printed;
  char self[64]; /* our participant id, from the HelloAck */
  op_pending *pending;
  size_t npending, cap;
  uint64_t done; /* transfers with an outcome */
} op_receiver;

/* Milliseconds until the earliest answer is due, or -1 if none is awaited. *what names it. */
static int op_receiver_timeout(const op_receiver *r, const char **what) {
  int64_t first = -1;
  if (r->hello_corr != 0) {
    first = r->hello_deadline;
    *what = "the Hello";
  }
  if (r->register_corr != 0 && (first < 0 || r->register_deadline < first)) {
    first = r->register_deadline;
    *what = "the PartyRegister";
  }
  for (size_t k = 0; k < r->npending; k++)
    if (first < 0 || r->pending[k].deadline < first) {
      first = r->pending[k].deadline;
      *what = r->pending[k].fulfil_corr != 0 ? "a TransferFulfil" : "a transfer's outcome";
    }
  if (first < 0)
    return -1;
  int64_t left = first - op_mono_ms();
  return left <= 0 ? 0 : left > 3600000 ? 3600000 : (int)left;
}

static void op_receiver_maybe_ready(op_receiver *r) {
  if (r->waiting_printed || r->hello_corr != 0 || r->register_corr != 0)
    return;
  r->waiting_printed = 1;
  if (r->a->count > 0)
    printf("waiting for %" PRIu64 " transfer%s (Ctrl-C to stop)\n", r->a->count,
           r->a->count == 1 ? "" : "s");
  else
    printf("waiting for transfers (Ctrl-C to stop)\n");
}

/* Counts pending transfer k's outcome (once), and forgets it when forget. */
static void op_receiver_done(op_receiver *r, size_t k, int forget) {
  if (!r->pending[k].counted)
    r->done++;
  r->pending[k].counted = 1;
  if (forget)
    r->pending[k] = r->pending[--r->npending];
}

/* The index of the pending transfer with id, or -1. */
static long op_receiver_find(const op_receiver *r, ProtobufCBinaryData id) {
  for (size_t k = 0; k < r->npending; k++)
    if (id.len == 16 && memcmp(r->pending[k].id, id.data, 16) == 0)
      return (long)k;
  return -1;
}

/* Prints a forwarded transfer, decides, answers it with a TransferFulfil and remembers it. */
static int op_receiver_forward(op_receiver *r, const Tuma__V1__TransferForward *fw) {
  const op_args *a = r->a;
  char id[33], payee[OP_PARTY_ID_MAX + 32], ref[OP_REFERENCE_MAX + 1], payer[64], cur[8];
  const Tuma__V1__Money *amt = fw->amount;
  op_party_text(fw->payee, payee, sizeof payee);
  if (strcmp(payee, "-") == 0) /* sent to the participant, not to a party */
    snprintf(payee, sizeof payee, "%s", r->self[0] ? r->self : "this operator");
  printf("forward  %s from %s %" PRIu64 " %s to %s", op_id_text(fw->transfer_id, id),
         op_printable(fw->payer_participant, payer, sizeof payer), amt != NULL ? amt->amount : 0,
         amt != NULL ? op_printable(amt->currency, cur, sizeof cur) : "?", payee);
  if (fw->reference != NULL && fw->reference[0] != '\0')
    printf(" ref \"%s\"", op_printable(fw->reference, ref, sizeof ref));
  printf("\n");
  if (fw->transfer_id.len != 16) {
    fprintf(stderr, "tuma %s: the forward has no valid transfer id; not answered\n", r->s.cmd);
    return 0;
  }
  Tuma__V1__TransferFulfil ful = TUMA__V1__TRANSFER_FULFIL__INIT;
  Tuma__V1__Error reason = TUMA__V1__ERROR__INIT;
  ful.transfer_id = fw->transfer_id;
  ful.state = TUMA__V1__FULFIL_STATE__FULFIL_STATE_COMMITTED;
  uint8_t hash[SHA256_DIGEST_LENGTH];
  if (a->reject != 0) {
    reason.code = (uint32_t)a->reject;
    reason.message = (char *)"rejected with tuma op receive --reject";
  } else if (fw->condition.len != 0) {
    if (!a->has_fulfilment) {
      reason.code = 5105;
      reason.message = (char *)"the transfer has a condition and no --fulfilment was given";
    } else if (fw->condition.len != sizeof hash ||
               (SHA256(a->fulfilment, sizeof a->fulfilment, hash),
                CRYPTO_memcmp(hash, fw->condition.data, sizeof hash) != 0)) {
      reason.code = 5105;
      reason.message = (char *)"the --fulfilment does not match the transfer's condition";
    } else {
      ful.fulfilment.data = (uint8_t *)a->fulfilment;
      ful.fulfilment.len = sizeof a->fulfilment;
    }
  }
  if (reason.code != 0) {
    ful.state = TUMA__V1__FULFIL_STATE__FULFIL_STATE_ABORTED;
    ful.reason = &reason;
    printf("fulfil   %s ABORTED %" PRIu32 " (%s)\n", id, reason.code, reason.message);
  } else {
    printf("fulfil   %s COMMITTED%s\n", id, ful.fulfilment.len ? " with the fulfilment" : "");
  }
  if (r->npending == r->cap) {
    size_t cap = r->cap ? 2 * r->cap : 16;
    op_pending *np = realloc(r->pending, cap * sizeof *np);
    if (np == NULL) {
      fprintf(stderr, "tuma %s: out of memory\n", r->s.cmd);
      return CLI_EXIT_FAIL;
    }
    r->pending = np;
    r->cap = cap;
  }
  Tuma__V1__Envelope env = TUMA__V1__ENVELOPE__INIT;
  env.body_case = TUMA__V1__ENVELOPE__BODY_TRANSFER_FULFIL;
  env.transfer_fulfil = &ful;
  op_pending *p = &r->pending[r->npending];
  memset(p, 0, sizeof *p);
  memcpy(p->id, fw->transfer_id.data, 16);
  p->expiration_ms = fw->expiration_ms;
  p->deadline = op_mono_ms() + r->s.timeout_ms;
  int rc = op_send_env(&r->s, &env, &p->fulfil_corr);
  if (rc == 0)
    r->npending++;
  return rc;
}

/* Handles one envelope from the switch. 0 to go on, CLI_EXIT_FAIL after a message. */
static int op_receiver_handle(op_receiver *r, const Tuma__V1__Envelope *env) {
  const char *cmd = r->s.cmd;
  uint64_t corr = env->correlation_id;
  switch (env->body_case) {
  case TUMA__V1__ENVELOPE__BODY_HELLO_ACK:
    if (corr == r->hello_corr && corr != 0) {
      const Tuma__V1__HelloAck *ack = env->hello_ack;
      char who[64];
      op_printable(ack->participant_id, r->self, sizeof r->self);
      printf("connected as %s, currencies", r->self);
      for (size_t k = 0; k < ack->n_currencies; k++)
        printf("%s%s", k ? "," : " ", op_printable(ack->currencies[k], who, sizeof who));
      printf("%s (max frame %" PRIu32 " bytes)\n", ack->n_currencies ? "" : " none",
             ack->max_frame_bytes);
      r->hello_corr = 0;
      op_receiver_maybe_ready(r);
      return 0;
    }
    break;
  case TUMA__V1__ENVELOPE__BODY_PARTY_REGISTERED:
    if (corr == r->register_corr && corr != 0) {
      printf("registered %" PRIu32 " part%s:", env->party_registered->registered,
             env->party_registered->registered == 1 ? "y" : "ies");
      for (int k = 0; k < r->a->nparties; k++) {
        char text[OP_PARTY_ID_MAX + 32];
        Tuma__V1__Party p = TUMA__V1__PARTY__INIT;
        p.type = r->a->parties[k].type;
        p.id = (char *)r->a->parties[k].id;
        printf(" %s", op_party_text(&p, text, sizeof text));
      }
      printf("\n");
      r->register_corr = 0;
      op_receiver_maybe_ready(r);
      return 0;
    }
    break;
  case TUMA__V1__ENVELOPE__BODY_TRANSFER_FORWARD:
    return op_receiver_forward(r, env->transfer_forward);
  case TUMA__V1__ENVELOPE__BODY_TRANSFER_RESULT: {
    const Tuma__V1__TransferResult *res = env->transfer_result;
    long k = -1;
    for (size_t j = 0; j < r->npending && corr != 0; j++)
      if (r->pending[j].fulfil_corr == corr)
        k = (long)j;
    if (k >= 0) { /* the confirmation of our fulfil */
      op_print_result("result", res, 1);
      if (op_state_final(res->state)) {
        op_receiver_done(r, (size_t)k, 1);
      } else {
        /* Not resolved (the switch could not write it): the transfer stays reserved and its
         * outcome comes unsolicited, by its expiration at the latest. */
        op_pending *p = &r->pending[k];
        uint64_t now = op_now_ms();
        int64_t left = p->expiration_ms > now ? (int64_t)(p->expiration_ms - now) : 0;
        p->fulfil_corr = 0;
        p->deadline = op_mono_ms() + left + r->s.timeout_ms;
      }
      return 0;
    }
    /* An expiry (on the forward's correlation id), or an outcome after a reconnection. */
    op_print_result("notice", res, 1);
    k = op_receiver_find(r, res->transfer_id);
    if (k >= 0 && op_state_final(res->state)) /* keep it while our fulfil is unanswered */
      op_receiver_done(r, (size_t)k, r->pending[k].fulfil_corr == 0);
    return 0;
  }
  case TUMA__V1__ENVELOPE__BODY_ERROR:
    if (corr == 0) {
      op_print_error(cmd, "refused by the switch", env->error);
      return CLI_EXIT_FAIL;
    }
    if (corr == r->hello_corr) {
      op_print_error(cmd, "the switch refused the Hello", env->error);
      return CLI_EXIT_FAIL;
    }
    if (corr == r->register_corr) {
      op_print_error(cmd, "the switch refused to register the parties", env->error);
      return CLI_EXIT_FAIL;
    }
    for (size_t j = 0; j < r->npending; j++)
      if (r->pending[j].fulfil_corr == corr) { /* 3208: the switch knows no such transfer */
        char id[33];
        fprintf(stderr, "tuma %s: the switch refused the fulfil of %s\n", cmd,
                op_hex(r->pending[j].id, 16, id));
        op_print_error(cmd, "refused", env->error);
        printf("result   %s refused %" PRIu32 "\n", id, env->error ? env->error->code : 0);
        op_receiver_done(r, j, 1);
        return 0;
      }
    break;
  default:
    break;
  }
  fprintf(stderr, "tuma %s: ignoring an unexpected message (body %d, correlation id %" PRIu64 ")\n",
          cmd, (int)env->body_case, corr);
  return 0;
}

/* Blocks SIGINT and SIGTERM and returns a signalfd that becomes readable when one arrives
 * (the wake-up descriptor of every wait), or -1 with a message. A signal the caller ignores
 * (a shell does that to SIGINT for background jobs) stays ignored. */
static int op_signal_fd(const char *cmd) {
  sigset_t set;
  sigemptyset(&set);
  static const int signals[] = {SIGINT, SIGTERM};
  for (size_t k = 0; k < sizeof signals / sizeof signals[0]; k++) {
    struct sigaction old;
    if (sigaction(signals[k], NULL, &old) == 0 && old.sa_handler != SIG_IGN)
      sigaddset(&set, signals[k]);
  }
  if (sigprocmask(SIG_BLOCK, &set, NULL) != 0) {
    fprintf(stderr, "tuma %s: cannot block signals: %s\n", cmd, strerror(errno));
    return -1;
  }
  int fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
  if (fd < 0)
    fprintf(stderr, "tuma %s: signalfd: %s\n", cmd, strerror(errno));
  return fd;
}

/* `op receive`: Hello, PartyRegister, then answers forwards until --count outcomes or a signal.
 * Each answer the switch owes (HelloAck, PartyRegistered, a fulfil's TransferResult) must come
 * within --timeout; between transfers it waits without limit. */
static int op_receive(const char *cmd, op_args *a) {
  op_receiver r;
  memset(&r, 0, sizeof r);
  r.s.cmd = cmd;
  r.a = a;
  if (a->has_fulfilment) {
    uint8_t condition[SHA256_DIGEST_LENGTH];
    char hex[65];
    SHA256(a->fulfilment, sizeof a->fulfilment, condition);
    printf("condition %s (what payers send: tuma op send ... --condition)\n",
           op_hex(condition, sizeof condition, hex));
  }
  int sfd = op_signal_fd(cmd);
  if (sfd < 0)
    return CLI_EXIT_FAIL;
  int rc = op_connect(&r.s, a);
  if (rc != 0)
    goto out;
  Tuma__V1__Hello hello = TUMA__V1__HELLO__INIT;
  hello.client_name = (char *)"tuma op receive " TUMA_VERSION;
  Tuma__V1__Envelope env = TUMA__V1__ENVELOPE__INIT;
  env.body_case = TUMA__V1__ENVELOPE__BODY_HELLO;
  env.hello = &hello;
  r.hello_deadline = op_mono_ms() + a->timeout_ms;
  if ((rc = op_send_env(&r.s, &env, &r.hello_corr)) != 0)
    goto out;
  if (a->nparties > 0) {
    Tuma__V1__Party *parties = calloc((size_t)a->nparties, sizeof *parties);
    Tuma__V1__Party **list = calloc((size_t)a->nparties, sizeof *list);
    if (parties == NULL || list == NULL) {
      free(parties);
      free(list);
      fprintf(stderr, "tuma %s: out of memory\n", cmd);
      rc = CLI_EXIT_FAIL;
      goto out;
    }
    for (int k = 0; k < a->nparties; k++) {
      tuma__v1__party__init(&parties[k]);
      parties[k].type = a->parties[k].type;
      parties[k].id = (char *)a->parties[k].id;
      list[k] = &parties[k];
    }
    Tuma__V1__PartyRegister reg = TUMA__V1__PARTY_REGISTER__INIT;
    reg.n_parties = (size_t)a->nparties;
    reg.parties = list;
    Tuma__V1__Envelope renv = TUMA__V1__ENVELOPE__INIT;
    renv.body_case = TUMA__V1__ENVELOPE__BODY_PARTY_REGISTER;
    renv.party_register = &reg;
    r.register_deadline = op_mono_ms() + a->timeout_ms;
    rc = op_send_env(&r.s, &renv, &r.register_corr);
    free(parties);
    free(list);
    if (rc != 0)
      goto out;
  }
  while (a->count == 0 || r.done < a->count) {
    const char *what = "an answer";
    int timeout = op_receiver_timeout(&r, &what);
    Tuma__V1__Envelope *in = NULL;
    rc = op_recv_env(&r.s, timeout, sfd, &in);
    if (rc == WIRE_EWOKEN) {
      struct signalfd_siginfo si;
      ssize_t got = read(sfd, &si, sizeof si);
      fprintf(stderr, "tuma %s: %s, stopping\n", cmd,
              got == (ssize_t)sizeof si && si.ssi_signo == SIGTERM ? "terminated" : "interrupted");
      rc = CLI_EXIT_OK;
      goto out;
    }
    if (rc == WIRE_ETIMEOUT) {
      fprintf(stderr, "tuma %s: the switch did not answer %s within %d ms\n", cmd, what,
              a->timeout_ms);
      rc = CLI_EXIT_FAIL;
      goto out;
    }
    if (rc != 0)
      goto out;
    rc = op_receiver_handle(&r, in);
    tuma__v1__envelope__free_unpacked(in, NULL);
    if (rc != 0)
      goto out;
  }
  printf("received %" PRIu64 " transfer%s, done\n", r.done, r.done == 1 ? "" : "s");
  rc = CLI_EXIT_OK;
out:
  wire_close(r.s.conn);
  free(r.pending);
  close(sfd);
  return rc;
}

/* ---- send ---- */

/* Waits for the final TransferResult of prepare `corr` by the deadline (monotonic ms); queries
 * while the switch says RESERVED. Prints it; returns CLI_EXIT_OK for COMMITTED. */
static int op_send_wait(op_session *s, uint64_t corr, const uint8_t id[16],
                        const uint8_t *condition, int64_t deadline) {
  char hex[65];
  op_hex(id, 16, hex);
  uint64_t query_corr = 0;
  int querying = 0;
  int64_t next_query = 0;
  for (;;) {
    int64_t now = op_mono_ms();
    if (now >= deadline) {
      fprintf(stderr,
              "tuma %s: no outcome from the switch in time; the transfer may still complete: "
              "tuma op query --id %s\n",
              s->cmd, hex);
      return CLI_EXIT_FAIL;
    }
    int64_t until = querying && next_query < deadline ? next_query : deadline;
    int timeout = until - now > 3600000 ? 3600000 : (int)(until - now);
    Tuma__V1__Envelope *env = NULL;
    int rc = op_recv_env(s, timeout < 0 ? 0 : timeout, -1, &env);
    if (rc == WIRE_ETIMEOUT) {
      if (querying && op_mono_ms() >= next_query) {
        Tuma__V1__TransferQuery q = TUMA__V1__TRANSFER_QUERY__INIT;
        q.transfer_id.data = (uint8_t *)id;
        q.transfer_id.len = 16;
        Tuma__V1__Envelope qenv = TUMA__V1__ENVELOPE__INIT;
        qenv.body_case = TUMA__V1__ENVELOPE__BODY_TRANSFER_QUERY;
        qenv.transfer_query = &q;
        if (op_send_env(s, &qenv, &query_corr) != 0)
          return CLI_EXIT_FAIL;
        next_query = deadline; /* the next one after its answer */
      }
      continue;
    }
    if (rc != 0)
      return CLI_EXIT_FAIL;
    uint64_t c = env->correlation_id;
    rc = -1;
    if (env->body_case == TUMA__V1__ENVELOPE__BODY_TRANSFER_RESULT &&
        (c == corr || (c == query_corr && c != 0))) {
      const Tuma__V1__TransferResult *res = env->transfer_result;
      op_print_result("result", res, c == corr);
      uint32_t code = res->error != NULL ? res->error->code : 0;
      if (code == 3201)
        fprintf(stderr,
                "tuma %s: the payee operator is not connected to the switch (start 'tuma op "
                "receive' as the payee first)\n",
                s->cmd);
      if (res->state == TUMA__V1__TRANSFER_STATE__TRANSFER_STATE_COMMITTED) {
        if (res->fulfilment.len == 32) {
          uint8_t hash[SHA256_DIGEST_LENGTH];
          SHA256(res->fulfilment.data, 32, hash);
          int match = condition != NULL && CRYPTO_memcmp(hash, condition, sizeof hash) == 0;
          printf("fulfilment %s (%s the condition)\n", op_hex(res->fulfilment.data, 32, hex),
                 match ? "matches" : "does NOT match");
        }
        rc = CLI_EXIT_OK;
      } else if (op_state_final(res->state)) {
        rc = CLI_EXIT_FAIL;
      } else { /* RESERVED: a duplicate still in flight; ask until it is over */
        if (!querying)
          fprintf(stderr,
                  "tuma %s: the transfer is still in flight; asking the switch every %d "
                  "ms\n",
                  s->cmd, OP_QUERY_INTERVAL_MS);
        querying = 1;
        next_query = op_mono_ms() + OP_QUERY_INTERVAL_MS;
      }
    } else if (env->body_case == TUMA__V1__ENVELOPE__BODY_ERROR && (c == 0 || c == corr)) {
      op_print_error(s->cmd, "refused by the switch", env->error);
      rc = CLI_EXIT_FAIL;
    } else if (env->body_case == TUMA__V1__ENVELOPE__BODY_ERROR && c == query_corr) {
      op_print_error(s->cmd, "the switch refused the query", env->error);
      rc = CLI_EXIT_FAIL;
    } else if (env->body_case == TUMA__V1__ENVELOPE__BODY_TRANSFER_FORWARD) {
      if (op_refuse_forward(s, env->transfer_forward) != 0)
        rc = CLI_EXIT_FAIL;
    }
    tuma__v1__envelope__free_unpacked(env, NULL);
    if (rc >= 0)
      return rc;
  }
}

static int op_send(const char *cmd, const char *usage, op_args *a) {
  if ((a->to == NULL) == (a->to_msisdn == NULL))
    return op_usage_error(cmd, usage, "%sgive the payee: either --to or --to-msisdn", NULL);
  if (a->amount == 0)
    return op_usage_error(cmd, usage, "%s--amount is required", NULL);
  if (a->currency == NULL)
    return op_usage_error(cmd, usage, "%s--currency is required", NULL);
  if (a->with_condition && a->has_condition)
    return op_usage_error(cmd, usage, "%s--with-condition and --condition do not go together",
                          NULL);
  int rc = op_resolve_files(cmd, usage, a);
  if (rc != 0)
    return rc;
  if (!a->has_id && cli_new_id(a->id) != 0) {
    fprintf(stderr, "tuma %s: cannot make a transfer id\n", cmd);
    return CLI_EXIT_FAIL;
  }
  uint8_t preimage[32], condition[SHA256_DIGEST_LENGTH];
  int conditional = a->with_condition || a->has_condition;
  if (a->with_condition) {
    if (RAND_bytes(preimage, sizeof preimage) != 1) {
      fprintf(stderr, "tuma %s: cannot make a preimage\n", cmd);
      return CLI_EXIT_FAIL;
    }
    SHA256(preimage, sizeof preimage, condition);
  } else if (a->has_condition) {
    memcpy(condition, a->condition, sizeof condition);
  }
  char hex[65], payee[OP_PARTY_ID_MAX + 32];
  Tuma__V1__Party party = TUMA__V1__PARTY__INIT;
  party.type = TUMA__V1__PARTY_ID_TYPE__PARTY_ID_TYPE_MSISDN;
  party.id = (char *)a->to_msisdn;
  /* Printed before connecting, so a failure still leaves the id to ask about. */
  printf("transfer %s to %s: %" PRIu64 " %s\n", op_hex(a->id, 16, hex),
         a->to != NULL ? a->to : op_party_text(&party, payee, sizeof payee), a->amount,
         a->currency);
  if (conditional)
    printf("condition %s\n", op_hex(condition, 32, hex));
  if (a->with_condition)
    printf("preimage  %s (the payee must answer with it: tuma op receive --fulfilment)\n",
           op_hex(preimage, 32, hex));
  fflush(stdout);

  op_session s = {.cmd = cmd};
  if ((rc = op_connect(&s, a)) != 0)
    return rc;
  if ((rc = op_hello_send_only(&s)) != 0) {
    wire_close(s.conn);
    return rc;
  }
  Tuma__V1__Money money = TUMA__V1__MONEY__INIT;
  money.currency = (char *)a->currency;
  money.amount = a->amount;
  Tuma__V1__TransferPrepare prep = TUMA__V1__TRANSFER_PREPARE__INIT;
  prep.transfer_id.data = a->id;
  prep.transfer_id.len = sizeof a->id;
  if (a->to != NULL)
    prep.payee_participant = (char *)a->to;
  else
    prep.payee = &party;
  prep.amount = &money;
  prep.expiration_ms = op_now_ms() + (uint64_t)a->expires_in_ms;
  if (conditional) {
    prep.condition.data = condition;
    prep.condition.len = sizeof condition;
  }
  if (a->reference != NULL)
    prep.reference = (char *)a->reference;
  Tuma__V1__Envelope env = TUMA__V1__ENVELOPE__INIT;
  env.body_case = TUMA__V1__ENVELOPE__BODY_TRANSFER_PREPARE;
  env.transfer_prepare = &prep;
  uint64_t corr = 0;
  /* The outcome comes by the expiration at the latest; then allow the switch its timeout. */
  int64_t deadline = op_mono_ms() + a->expires_in_ms + a->timeout_ms;
  if ((rc = op_send_env(&s, &env, &corr)) == 0)
    rc = op_send_wait(&s, corr, a->id, conditional ? condition : NULL, deadline);
  wire_close(s.conn);
  return rc;
}

/* ---- query ---- */

static int op_query(const char *cmd, const char *usage, op_args *a) {
  if (!a->has_id)
    return op_usage_error(cmd, usage, "%s--id is required", NULL);
  int rc = op_resolve_files(cmd, usage, a);
  if (rc != 0)
    return rc;
  op_session s = {.cmd = cmd};
  if ((rc = op_connect(&s, a)) != 0)
    return rc;
  if ((rc = op_hello_send_only(&s)) != 0) {
    wire_close(s.conn);
    return rc;
  }
  Tuma__V1__TransferQuery q = TUMA__V1__TRANSFER_QUERY__INIT;
  q.transfer_id.data = a->id;
  q.transfer_id.len = sizeof a->id;
  Tuma__V1__Envelope env = TUMA__V1__ENVELOPE__INIT;
  env.body_case = TUMA__V1__ENVELOPE__BODY_TRANSFER_QUERY;
  env.transfer_query = &q;
  uint64_t corr = 0;
  int64_t deadline = op_mono_ms() + a->timeout_ms;
  if ((rc = op_send_env(&s, &env, &corr)) != 0)
    goto out;
  for (rc = -1; rc < 0;) {
    int64_t left = deadline - op_mono_ms();
    Tuma__V1__Envelope *in = NULL;
    int got = op_recv_env(&s, left < 0 ? 0 : (int)left, -1, &in);
    if (got == WIRE_ETIMEOUT) {
      fprintf(stderr, "tuma %s: the switch did not answer within %d ms\n", cmd, a->timeout_ms);
      rc = CLI_EXIT_FAIL;
      break;
    }
    if (got != 0) {
      rc = CLI_EXIT_FAIL;
      break;
    }
    uint64_t c = in->correlation_id;
    if (in->body_case == TUMA__V1__ENVELOPE__BODY_TRANSFER_RESULT && c == corr) {
      op_print_result("result", in->transfer_result, 0);
      rc = CLI_EXIT_OK;
    } else if (in->body_case == TUMA__V1__ENVELOPE__BODY_ERROR && (c == corr || c == 0)) {
      op_print_error(cmd, c == 0 ? "refused by the switch" : "the switch answered", in->error);
      rc = CLI_EXIT_FAIL;
    } else if (in->body_case == TUMA__V1__ENVELOPE__BODY_TRANSFER_FORWARD &&
               op_refuse_forward(&s, in->transfer_forward) != 0) {
      rc = CLI_EXIT_FAIL;
    }
    tuma__v1__envelope__free_unpacked(in, NULL);
  }
out:
  wire_close(s.conn);
  return rc;
}

/* ---- entry ---- */

int cli_op_main(int argc, char **argv) {
  if (argc < 2) {
    fputs(op_usage, stderr);
    return CLI_EXIT_USAGE;
  }
  if (cli_is_help(argv[1]) || strcmp(argv[1], "help") == 0) {
    printf("%s%s", op_usage, op_common_help);
    return CLI_EXIT_OK;
  }
  const char *verb = argv[1], *cmd, *usage;
  unsigned allowed;
  if (strcmp(verb, "receive") == 0) {
    cmd = "op receive";
    usage = op_receive_usage;
    allowed = OP_OPT_REGISTER | OP_OPT_REJECT | OP_OPT_COUNT | OP_OPT_FULFILMENT;
  } else if (strcmp(verb, "send") == 0) {
    cmd = "op send";
    usage = op_send_usage;
    allowed = OP_OPT_TO | OP_OPT_AMOUNT | OP_OPT_CURRENCY | OP_OPT_EXPIRES_IN | OP_OPT_REFERENCE |
              OP_OPT_ID | OP_OPT_CONDITION;
  } else if (strcmp(verb, "query") == 0) {
    cmd = "op query";
    usage = op_query_usage;
    allowed = OP_OPT_ID;
  } else {
    return op_usage_error("op", op_usage, "unknown command '%s'", verb);
  }
  /* Output goes to terminals and files alike: a line as soon as it happens. */
  setvbuf(stdout, NULL, _IOLBF, 0);
  op_args *a = calloc(1, sizeof *a);
  if (a == NULL || ((allowed & OP_OPT_REGISTER) &&
                    (a->parties = calloc(OP_MAX_PARTIES, sizeof *a->parties)) == NULL)) {
    fprintf(stderr, "tuma %s: out of memory\n", cmd);
    free(a);
    return CLI_EXIT_FAIL;
  }
  a->connect = "127.0.0.1:7400";
  a->timeout_ms = OP_DEFAULT_TIMEOUT_MS;
  a->expires_in_ms = OP_DEFAULT_EXPIRES_IN_MS;
  int rc = op_parse(argc - 1, argv + 1, cmd, usage, allowed, a);
  if (rc == 1) {
    rc = CLI_EXIT_OK;
  } else if (rc == 0) {
    if (strcmp(verb, "receive") == 0) {
      if (a->reject != 0 && a->has_fulfilment)
        rc = op_usage_error(cmd, usage, "%s--reject and --fulfilment do not go together", NULL);
      else if ((rc = op_resolve_files(cmd, usage, a)) == 0)
        rc = op_receive(cmd, a);
    } else if (strcmp(verb, "send") == 0) {
      rc = op_send(cmd, usage, a);
    } else {
      rc = op_query(cmd, usage, a);
    }
  }
  free(a->parties);
  free(a);
  return rc;
}
