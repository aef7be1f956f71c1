/* disburse_cmd.c — `tuma disburse`: programmes, the beneficiary registry, batches of payments
 * (chunked upload with control totals), maker-checker approval, cancellation, status, the
 * reconciliation report and the reach breakdown, over tumad's admin listener
 * (proto/tuma/v1/disburse.proto) with a certificate of role admin, programme-manager or
 * approver. Every command validates all of its arguments before it connects; amounts given in
 * major units are converted with the programme's currency exponent (switch/currency.h), which
 * is why commands that take an AMOUNT ask the switch for the programme first. */
#include "admin_client.h"
#include "cli.h"
#include "currency.h"

#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum {
  DIS_MAX_POSITIONAL = 2,
  DIS_PATH_MAX = 4096,
  DIS_NAME_MAX = 127,
  DIS_ID_MAX = 64,
  DIS_DEFAULT_TIMEOUT_S = 10,
  DIS_DEFAULT_CHUNK = 1048576,
  DIS_MIN_CHUNK = 64,
  DIS_MAX_CHUNK = 8 * 1024 * 1024,
  DIS_REPORT_PAGE = 1000,
  DIS_REPORT_MAX_PAGES = 1000000, /* a bound on the paging loop: 10^9 items */
  DIS_FRAME_TOO_LARGE = 3104,     /* the switch's error for a frame over its limit */
};

/* Options beyond the connection ones; a command lists those it takes as a bit set. */
enum {
  DO_ID,
  DO_NAME,
  DO_CURRENCY,
  DO_FUNDING,
  DO_CAP,
  DO_END,
  DO_PROGRAMME,
  DO_AMOUNT,
  DO_TYPE,
  DO_MSISDN,
  DO_OPERATOR,
  DO_FILE,
  DO_CYCLE,
  DO_EXPECT_COUNT,
  DO_EXPECT_TOTAL,
  DO_AT,
  DO_RATE,
  DO_CYCLES,
  DO_EVERY,
  DO_CHUNK_BYTES,
  DO_INTERVAL,
  DO_OUT,
  DO_COUNT_
};

static const char *const dis_opt_names[DO_COUNT_] = {
    "--id",        "--name",         "--currency",     "--funding", "--cap",      "--end",
    "--programme", "--amount",       "--type",         "--msisdn",  "--operator", "--file",
    "--cycle",     "--expect-count", "--expect-total", "--at",      "--rate",     "--cycles",
    "--every",     "--chunk-bytes",  "--interval",     "--out"};

/* Flags (options without a value). */
enum { DF_WITHDRAW, DF_EXCLUDE_INVALID, DF_WATCH, DF_CSV, DF_COUNT_ };

static const char *const dis_flag_names[DF_COUNT_] = {"--withdraw", "--exclude-invalid", "--watch",
                                                      "--csv"};

#define DIS_BIT(x) (1u << (x))

static const char dis_common_help[] =
    "\n"
    "connection options (every command):\n"
    "  --connect HOST:PORT    tumad's admin listener (default 127.0.0.1:7401)\n"
    "  --ca FILE              the scheme CA (default $TUMA_PKI_DIR/ca.crt or pki/ca.crt)\n"
    "  --cert FILE            a certificate of role admin, programme-manager or approver\n"
    "                         (default $TUMA_PKI_DIR/admin.crt or pki/admin.crt)\n"
    "  --key FILE             its key (default $TUMA_PKI_DIR/admin.key or pki/admin.key)\n"
    "  --server-name NAME     the name the switch's certificate must carry (default: HOST)\n"
    "  --timeout SECONDS      for connecting and for each reply (default 10)\n"
    "\n"
    "AMOUNT is a decimal in the currency's major units (1500, 1500.50); TIME is RFC 3339 in\n"
    "UTC (2026-11-28T10:00:00Z), 'now' or '+DURATION'; DURATION a whole number with a unit\n"
    "s, m, h or d (90s, 10m, 1h, 7d).\n"
    "\n"
    "exit status: 0 done, 1 refused by the switch or no connection, 2 usage error\n";

static const char dis_usage[] =
    "usage: tuma disburse programme create --id P --name TEXT --currency CODE\n"
    "                                      --funding PARTICIPANT [--cap AMOUNT] [--end TIME]\n"
    "       tuma disburse programme fund --programme P --amount AMOUNT [--withdraw] [--id HEX32]\n"
    "       tuma disburse programme show P\n"
    "       tuma disburse beneficiary add --type TYPE --id ID --msisdn MSISDN [--operator O]\n"
    "       tuma disburse beneficiary upload --file FILE.csv [--chunk-bytes N]\n"
    "       tuma disburse submit --programme P --cycle C --file FILE.csv --expect-count N\n"
    "                            --expect-total AMOUNT [--at TIME] [--rate R]\n"
    "                            [--cycles N --every DURATION] [--exclude-invalid]\n"
    "                            [--chunk-bytes N]\n"
    "       tuma disburse approve BATCH\n"
    "       tuma disburse cancel BATCH\n"
    "       tuma disburse status BATCH [--watch [--interval SECONDS]]\n"
    "       tuma disburse report BATCH [--csv] [--out FILE]\n"
    "       tuma disburse reach BATCH [--csv]\n"
    "\n"
    "Disbursements: a programme's budget paid to a list of beneficiaries, in batches that one\n"
    "person submits and another approves. TYPE is national_id, refugee_id, msisdn, account_id\n"
    "or business_id. --chunk-bytes is the size of each upload request (default 1048576; the\n"
    "switch's admin_max_frame_bytes must allow it). See cli/README.md, 'Disbursements'.\n";

/* Parsed arguments of one disburse command. */
typedef struct dis_args {
  const char *cmd; /* "disburse submit", for messages */
  const char *pos[DIS_MAX_POSITIONAL];
  int npos;
  const char *connect, *ca, *cert, *key, *server_name;
  int timeout_s;
  const char *opt[DO_COUNT_];
  int flag[DF_COUNT_];
  char ca_buf[DIS_PATH_MAX], cert_buf[DIS_PATH_MAX], key_buf[DIS_PATH_MAX];
} dis_args;

/* Prints "tuma CMD: <message>" and where the usage is to stderr; returns CLI_EXIT_USAGE. */
static int dis_usage_error(const char *cmd, const char *fmt, const char *arg) {
  fprintf(stderr, "tuma %s: ", cmd);
  fprintf(stderr, fmt, arg != NULL ? arg : "");
  fprintf(stderr, "\n(tuma disburse --help for the usage)\n");
  return CLI_EXIT_USAGE;
}

/* Parses argv[first..] into a: connection options, the options in `opts` and the flags in
 * `flags` (bit sets), and up to max_pos positional words. Returns 0 to go on, 1 after --help,
 * CLI_EXIT_USAGE after a message. */
static int dis_parse(int argc, char **argv, int first, const char *cmd, unsigned opts,
                     unsigned flags, int max_pos, dis_args *a) {
  memset(a, 0, sizeof *a);
  a->cmd = cmd;
  a->connect = "127.0.0.1:7401";
  a->timeout_s = DIS_DEFAULT_TIMEOUT_S;
  int only_positional = 0;
  for (int i = first; i < argc; i++) {
    const char *w = argv[i];
    const char *v = NULL;
    int m;
    if (only_positional || w[0] != '-' || w[1] == '\0') {
      if (a->npos >= max_pos)
        return dis_usage_error(cmd, "unexpected argument '%s'", w);
      a->pos[a->npos++] = w;
      continue;
    }
    if (strcmp(w, "--") == 0) {
      only_positional = 1;
      continue;
    }
    if (cli_is_help(w)) {
      printf("%s%s", dis_usage, dis_common_help);
      return 1;
    }
    const char **conn[] = {&a->connect, &a->ca, &a->cert, &a->key, &a->server_name};
    static const char *const conn_names[] = {"--connect", "--ca", "--cert", "--key",
                                             "--server-name"};
    int matched = 0;
    for (size_t k = 0; k < sizeof conn / sizeof conn[0] && !matched; k++) {
      if ((m = cli_opt(argc, argv, &i, cmd, conn_names[k], &v)) != 0) {
        if (m < 0)
          return CLI_EXIT_USAGE;
        *conn[k] = v;
        matched = 1;
      }
    }
    if (matched)
      continue;
    if ((m = cli_opt(argc, argv, &i, cmd, "--timeout", &v)) != 0) {
      if (m < 0 || cli_parse_int(cmd, "--timeout", v, 1, 3600, &a->timeout_s) != 0)
        return CLI_EXIT_USAGE;
      continue;
    }
    for (int k = 0; k < DO_COUNT_ && !matched; k++) {
      if (!(opts & DIS_BIT(k)))
        continue;
      if ((m = cli_opt(argc, argv, &i, cmd, dis_opt_names[k], &v)) != 0) {
        if (m < 0)
          return CLI_EXIT_USAGE;
        if (a->opt[k] != NULL)
          return dis_usage_error(cmd, "%s given twice", dis_opt_names[k]);
        a->opt[k] = v;
        matched = 1;
      }
    }
    for (int k = 0; k < DF_COUNT_ && !matched; k++) {
      if ((flags & DIS_BIT(k)) && cli_flag(argv, i, dis_flag_names[k])) {
        a->flag[k] = 1;
        matched = 1;
      }
    }
    if (!matched)
      return dis_usage_error(cmd, "unknown option '%s'", w);
  }
  admin_client_diag diag = {""};
  char host[256], port[16];
  if (admin_client_parse_address(a->connect, host, sizeof host, port, sizeof port, &diag) != 0)
    return dis_usage_error(cmd, "--connect: %s", diag.text);
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
    int n = snprintf(files[k].buf, DIS_PATH_MAX, "%s/%s", dir, files[k].file);
    if (n < 0 || n >= DIS_PATH_MAX)
      return dis_usage_error(cmd, "%sTUMA_PKI_DIR is too long", NULL);
    *files[k].slot = files[k].buf;
  }
  return 0;
}

/* Requires option k; a usage error names it. */
static int dis_require(const dis_args *a, int k) {
  if (a->opt[k] == NULL)
    return dis_usage_error(a->cmd, "%s is required", dis_opt_names[k]);
  return 0;
}

/* ---- connection ---- */

/* Connects with a's options. CLI_EXIT_FAIL after a message. */
static int dis_connect(const dis_args *a, admin_client **c) {
  char host[256], port[16];
  admin_client_diag diag = {""};
  *c = NULL;
  if (admin_client_parse_address(a->connect, host, sizeof host, port, sizeof port, &diag) != 0) {
    fprintf(stderr, "tuma %s: --connect: %s\n", a->cmd, diag.text);
    return CLI_EXIT_USAGE;
  }
  admin_client_options o = {.host = host,
                            .port = port,
                            .ca_file = a->ca,
                            .cert_file = a->cert,
                            .key_file = a->key,
                            .server_name = a->server_name,
                            .timeout_ms = a->timeout_s * 1000};
  if (admin_client_connect(&o, c, &diag) != 0) {
    fprintf(stderr, "tuma %s: %s\n", a->cmd, diag.text);
    return CLI_EXIT_FAIL;
  }
  return 0;
}

/* One request and its reply on c; *reply is the caller's to free. CLI_EXIT_FAIL after a
 * message. */
static int dis_call(const dis_args *a, admin_client *c, Tuma__V1__AdminEnvelope *req,
                    Tuma__V1__AdminEnvelope **reply) {
  admin_client_diag diag = {""};
  if (admin_client_call(c, req, reply, &diag) != 0) {
    fprintf(stderr, "tuma %s: %s\n", a->cmd, diag.text);
    return CLI_EXIT_FAIL;
  }
  return 0;
}

/* Prints an Error as a refusal; returns CLI_EXIT_FAIL. */
static int dis_refused(const char *cmd, const Tuma__V1__Error *e) {
  fprintf(stderr, "tuma %s: refused: %" PRIu32 " %s\n", cmd, e != NULL ? e->code : 0,
          e != NULL && e->message != NULL ? e->message : "");
  return CLI_EXIT_FAIL;
}

/* Judges reply when `want` is the expected body: 0 if it is; CLI_EXIT_FAIL after a message if
 * it is an AdminResult (a refusal, or a bare ok where an answer was due) or anything else.
 * want = BODY_ADMIN_RESULT accepts only an AdminResult without an error. */
static int dis_expect(const char *cmd, const Tuma__V1__AdminEnvelope *reply,
                      Tuma__V1__AdminEnvelope__BodyCase want) {
  if (reply->body_case == TUMA__V1__ADMIN_ENVELOPE__BODY_ADMIN_RESULT) {
    const Tuma__V1__Error *e = reply->admin_result->error;
    if (e != NULL && e->code != 0)
      return dis_refused(cmd, e);
    if (want == TUMA__V1__ADMIN_ENVELOPE__BODY_ADMIN_RESULT)
      return 0;
  } else if (reply->body_case == want) {
    return 0;
  }
  fprintf(stderr, "tuma %s: the switch answered with an unexpected message (body %d)\n", cmd,
          (int)reply->body_case);
  return CLI_EXIT_FAIL;
}

/* ---- shared helpers ---- */

/* The minor-unit exponent of currency code; -1 after a message if the table lacks it. */
static int dis_exponent(const char *cmd, const char *code) {
  sw_currency cur;
  if (code == NULL || sw_currency_by_code(code, &cur) != 0) {
    fprintf(stderr, "tuma %s: unknown currency '%s'\n", cmd, code != NULL ? code : "");
    return -1;
  }
  return cur.exponent;
}

/* Checks the form of an AMOUNT before the currency is known: as if it had as many decimals as
 * it shows. Usage error (after a message naming what) if malformed. */
static int dis_check_amount_form(const char *cmd, const char *what, const char *text) {
  uint64_t v = 0;
  const char *dot = strchr(text, '.');
  unsigned decimals = dot != NULL ? (unsigned)strlen(dot + 1) : 0;
  int rc = cli_parse_amount(text, decimals > 19 ? 19 : decimals, &v);
  if (rc != CLI_ARG_OK) {
    fprintf(stderr,
            "tuma %s: %s: '%s' is not an amount (%s); say it in major units, e.g. 1500.50\n", cmd,
            what, text, cli_arg_strerror(rc));
    return CLI_EXIT_USAGE;
  }
  return 0;
}

/* Converts AMOUNT with exponent; usage error after a message. */
static int dis_amount(const char *cmd, const char *what, const char *text, int exponent,
                      const char *currency, uint64_t *out) {
  int rc = cli_parse_amount(text, (unsigned)exponent, out);
  if (rc != CLI_ARG_OK) {
    fprintf(stderr, "tuma %s: %s: '%s' is not an amount in %s (%s; %d decimals at most)\n", cmd,
            what, text, currency, cli_arg_strerror(rc), exponent);
    return CLI_EXIT_USAGE;
  }
  return 0;
}

/* Asks for programme id on c; *info is the caller's (free the envelope *env). */
static int dis_programme_query(const dis_args *a, admin_client *c, const char *id,
                               Tuma__V1__AdminEnvelope **env) {
  Tuma__V1__ProgrammeQuery q = TUMA__V1__PROGRAMME_QUERY__INIT;
  q.programme_id = (char *)id;
  Tuma__V1__AdminEnvelope req = TUMA__V1__ADMIN_ENVELOPE__INIT;
  req.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_PROGRAMME_QUERY;
  req.programme_query = &q;
  int rc = dis_call(a, c, &req, env);
  if (rc != 0)
    return rc;
  rc = dis_expect(a->cmd, *env, TUMA__V1__ADMIN_ENVELOPE__BODY_PROGRAMME_INFO);
  if (rc != 0) {
    tuma__v1__admin_envelope__free_unpacked(*env, NULL);
    *env = NULL;
  }
  return rc;
}

static int dis_check_programme_id(const char *cmd, const char *id) {
  if (!cli_participant_id_valid(id))
    return dis_usage_error(cmd, "'%s' is not a programme id (1-63 of a-z, 0-9 and '-')", id);
  return 0;
}

static int dis_check_batch(const char *cmd, const dis_args *a, uint64_t *batch) {
  if (a->npos != 1)
    return dis_usage_error(cmd, "%sexactly one BATCH (the batch number) is needed", NULL);
  if (cli_parse_u64(cmd, "BATCH", a->pos[0], 1, UINT64_MAX, batch) != 0)
    return CLI_EXIT_USAGE;
  return 0;
}

static void dis_hex(const uint8_t *b, size_t n, char *out) {
  static const char digits[] = "0123456789abcdef";
  for (size_t k = 0; k < n; k++) {
    out[2 * k] = digits[b[k] >> 4];
    out[2 * k + 1] = digits[b[k] & 15];
  }
  out[2 * n] = '\0';
}

static void dis_print_row_errors(FILE *f, Tuma__V1__RowError **errors, size_t n) {
  for (size_t k = 0; k < n; k++)
    fprintf(f, "line %" PRIu64 ": %s\n", errors[k]->line,
            errors[k]->reason != NULL ? errors[k]->reason : "");
}

/* ---- programme ---- */

static void dis_print_programme(const Tuma__V1__ProgrammeInfo *p) {
  int e = dis_exponent("disburse programme show", p->currency);
  unsigned exp = e < 0 ? 0 : (unsigned)e;
  char b[3][32], t[40];
  printf("programme %s: %s\n", p->programme_id, p->name != NULL ? p->name : "");
  printf("  currency   %s\n", p->currency);
  printf("  funding    %s\n", p->funding_participant);
  if (p->beneficiary_cap != 0)
    printf("  cap        %s %s per beneficiary per cycle\n",
           cli_format_amount(p->beneficiary_cap, exp, b[0], sizeof b[0]), p->currency);
  else
    printf("  cap        none\n");
  printf("  end        %s\n", p->end_ms != 0 ? cli_format_time(p->end_ms, t, sizeof t) : "none");
  printf("  budget     %s %s\n", cli_format_amount(p->budget, exp, b[0], sizeof b[0]), p->currency);
  printf("  reserved   %s %s\n", cli_format_amount(p->reserved, exp, b[1], sizeof b[1]),
         p->currency);
  printf("  available  %s %s\n", cli_format_amount(p->available, exp, b[2], sizeof b[2]),
         p->currency);
}

static int dis_programme_create(int argc, char **argv) {
  const char *cmd = "disburse programme create";
  dis_args a;
  int rc = dis_parse(argc, argv, 3, cmd,
                     DIS_BIT(DO_ID) | DIS_BIT(DO_NAME) | DIS_BIT(DO_CURRENCY) |
                         DIS_BIT(DO_FUNDING) | DIS_BIT(DO_CAP) | DIS_BIT(DO_END),
                     0, 0, &a);
  if (rc != 0)
    return rc == 1 ? CLI_EXIT_OK : rc;
  if ((rc = dis_require(&a, DO_ID)) || (rc = dis_require(&a, DO_NAME)) ||
      (rc = dis_require(&a, DO_CURRENCY)) || (rc = dis_require(&a, DO_FUNDING)))
    return rc;
  if ((rc = dis_check_programme_id(cmd, a.opt[DO_ID])) != 0)
    return rc;
  if (!cli_text_valid(a.opt[DO_NAME], DIS_NAME_MAX))
    return dis_usage_error(cmd,
                           "%s--name must be 1-127 bytes of UTF-8 text, no control "
                           "characters",
                           NULL);
  const char *currency = a.opt[DO_CURRENCY];
  if (!cli_currency_valid(currency))
    return dis_usage_error(cmd, "'%s' is not a currency code (three upper-case letters)", currency);
  int exponent = dis_exponent(cmd, currency);
  if (exponent < 0)
    return CLI_EXIT_USAGE;
  if (!cli_participant_id_valid(a.opt[DO_FUNDING]))
    return dis_usage_error(cmd, "--funding: '%s' is not a participant id", a.opt[DO_FUNDING]);
  uint64_t cap = 0, end = 0;
  if (a.opt[DO_CAP] != NULL) {
    if ((rc = dis_amount(cmd, "--cap", a.opt[DO_CAP], exponent, currency, &cap)) != 0)
      return rc;
    if (cap == 0)
      return dis_usage_error(cmd, "%s--cap must be more than 0 (leave it out for no cap)", NULL);
  }
  if (a.opt[DO_END] != NULL) {
    int prc = cli_parse_time(a.opt[DO_END], cli_now_ms(), &end);
    if (prc != CLI_ARG_OK) {
      fprintf(stderr, "tuma %s: --end: '%s': %s\n", cmd, a.opt[DO_END], cli_arg_strerror(prc));
      return CLI_EXIT_USAGE;
    }
    if (end == 0)
      end = 1; /* 0 means open-ended on the wire */
  }
  Tuma__V1__ProgrammeCreate body = TUMA__V1__PROGRAMME_CREATE__INIT;
  body.programme_id = (char *)a.opt[DO_ID];
  body.name = (char *)a.opt[DO_NAME];
  body.currency = (char *)currency;
  body.funding_participant = (char *)a.opt[DO_FUNDING];
  body.beneficiary_cap = cap;
  body.end_ms = end;
  Tuma__V1__AdminEnvelope req = TUMA__V1__ADMIN_ENVELOPE__INIT;
  req.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_PROGRAMME_CREATE;
  req.programme_create = &body;
  admin_client *c = NULL;
  Tuma__V1__AdminEnvelope *reply = NULL;
  if ((rc = dis_connect(&a, &c)) == 0 && (rc = dis_call(&a, c, &req, &reply)) == 0 &&
      (rc = dis_expect(cmd, reply, TUMA__V1__ADMIN_ENVELOPE__BODY_ADMIN_RESULT)) == 0)
    printf("programme %s created (%s, funded by %s)\n", a.opt[DO_ID], currency, a.opt[DO_FUNDING]);
  if (reply != NULL)
    tuma__v1__admin_envelope__free_unpacked(reply, NULL);
  admin_client_close(c);
  return rc;
}

static int dis_programme_fund(int argc, char **argv) {
  const char *cmd = "disburse programme fund";
  dis_args a;
  int rc =
      dis_parse(argc, argv, 3, cmd, DIS_BIT(DO_PROGRAMME) | DIS_BIT(DO_AMOUNT) | DIS_BIT(DO_ID),
                DIS_BIT(DF_WITHDRAW), 0, &a);
  if (rc != 0)
    return rc == 1 ? CLI_EXIT_OK : rc;
  if ((rc = dis_require(&a, DO_PROGRAMME)) || (rc = dis_require(&a, DO_AMOUNT)))
    return rc;
  const char *prog = a.opt[DO_PROGRAMME];
  if ((rc = dis_check_programme_id(cmd, prog)) != 0 ||
      (rc = dis_check_amount_form(cmd, "--amount", a.opt[DO_AMOUNT])) != 0)
    return rc;
  uint8_t id[16];
  if (a.opt[DO_ID] != NULL) {
    if (cli_parse_hex(a.opt[DO_ID], id, 16) != 0 || cli_all_zero(id, 16))
      return dis_usage_error(cmd, "--id: '%s' is not 32 hex digits (and not all zero)",
                             a.opt[DO_ID]);
  } else if (cli_new_id(id) != 0) {
    fprintf(stderr, "tuma %s: cannot make a fund id\n", cmd);
    return CLI_EXIT_FAIL;
  }
  int withdraw = a.flag[DF_WITHDRAW];
  char hex[33];
  dis_hex(id, 16, hex);
  /* Before connecting: a timeout still leaves the id to retry with. */
  printf("fund id %s\n", hex);
  fflush(stdout);

  admin_client *c = NULL;
  Tuma__V1__AdminEnvelope *info = NULL, *reply = NULL;
  if ((rc = dis_connect(&a, &c)) != 0)
    return rc;
  if ((rc = dis_programme_query(&a, c, prog, &info)) != 0)
    goto done;
  /* Copied: info is freed and asked again below. */
  char currency[8];
  snprintf(currency, sizeof currency, "%s", info->programme_info->currency);
  int exponent = dis_exponent(cmd, currency);
  uint64_t amount = 0;
  if (exponent < 0) {
    rc = CLI_EXIT_FAIL;
    goto done;
  }
  if ((rc = dis_amount(cmd, "--amount", a.opt[DO_AMOUNT], exponent, currency, &amount)) != 0)
    goto done;
  if (amount == 0) {
    rc = dis_usage_error(cmd, "%s--amount must be more than 0", NULL);
    goto done;
  }
  Tuma__V1__ProgrammeFund body = TUMA__V1__PROGRAMME_FUND__INIT;
  body.fund_id.data = id;
  body.fund_id.len = sizeof id;
  body.programme_id = (char *)prog;
  body.amount = amount;
  body.withdraw = withdraw;
  Tuma__V1__AdminEnvelope req = TUMA__V1__ADMIN_ENVELOPE__INIT;
  req.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_PROGRAMME_FUND;
  req.programme_fund = &body;
  if ((rc = dis_call(&a, c, &req, &reply)) != 0) {
    fprintf(stderr,
            "tuma %s: to retry this same movement safely: tuma %s --programme %s --amount %s%s "
            "--id %s\n",
            cmd, cmd, prog, a.opt[DO_AMOUNT], withdraw ? " --withdraw" : "", hex);
    goto done;
  }
  if ((rc = dis_expect(cmd, reply, TUMA__V1__ADMIN_ENVELOPE__BODY_ADMIN_RESULT)) != 0)
    goto done;
  char b[32];
  printf("programme %s: %s %s %s\n", prog, withdraw ? "withdrew" : "deposited",
         cli_format_amount(amount, (unsigned)exponent, b, sizeof b), currency);
  tuma__v1__admin_envelope__free_unpacked(info, NULL);
  info = NULL;
  /* The budget after the movement; the movement itself is done whatever this says. */
  if (dis_programme_query(&a, c, prog, &info) == 0) {
    const Tuma__V1__ProgrammeInfo *p = info->programme_info;
    char b1[32], b2[32];
    printf("budget %s %s, available %s %s\n",
           cli_format_amount(p->budget, (unsigned)exponent, b1, sizeof b1), currency,
           cli_format_amount(p->available, (unsigned)exponent, b2, sizeof b2), currency);
  }
done:
  if (reply != NULL)
    tuma__v1__admin_envelope__free_unpacked(reply, NULL);
  if (info != NULL)
    tuma__v1__admin_envelope__free_unpacked(info, NULL);
  admin_client_close(c);
  return rc;
}

static int dis_programme_show(int argc, char **argv) {
  const char *cmd = "disburse programme show";
  dis_args a;
  int rc = dis_parse(argc, argv, 3, cmd, 0, 0, 1, &a);
  if (rc != 0)
    return rc == 1 ? CLI_EXIT_OK : rc;
  if (a.npos != 1)
    return dis_usage_error(cmd, "%sexactly one programme id is needed", NULL);
  if ((rc = dis_check_programme_id(cmd, a.pos[0])) != 0)
    return rc;
  admin_client *c = NULL;
  Tuma__V1__AdminEnvelope *info = NULL;
  if ((rc = dis_connect(&a, &c)) == 0 && (rc = dis_programme_query(&a, c, a.pos[0], &info)) == 0)
    dis_print_programme(info->programme_info);
  if (info != NULL)
    tuma__v1__admin_envelope__free_unpacked(info, NULL);
  admin_client_close(c);
  return rc;
}

/* ---- beneficiaries ---- */

static const struct {
  const char *name;
  Tuma__V1__PartyIdType type;
} dis_id_types[] = {
    {"national_id", TUMA__V1__PARTY_ID_TYPE__PARTY_ID_TYPE_NATIONAL_ID},
    {"refugee_id", TUMA__V1__PARTY_ID_TYPE__PARTY_ID_TYPE_REFUGEE_ID},
    {"msisdn", TUMA__V1__PARTY_ID_TYPE__PARTY_ID_TYPE_MSISDN},
    {"account_id", TUMA__V1__PARTY_ID_TYPE__PARTY_ID_TYPE_ACCOUNT_ID},
    {"business_id", TUMA__V1__PARTY_ID_TYPE__PARTY_ID_TYPE_BUSINESS_ID},
};

static int dis_msisdn_valid(const char *m) {
  size_t n = strlen(m);
  if (n < 5 || n > 15)
    return 0;
  for (size_t k = 0; k < n; k++)
    if (m[k] < '0' || m[k] > '9')
      return 0;
  return 1;
}

static int dis_beneficiary_add(int argc, char **argv) {
  const char *cmd = "disburse beneficiary add";
  dis_args a;
  int rc = dis_parse(argc, argv, 3, cmd,
                     DIS_BIT(DO_TYPE) | DIS_BIT(DO_ID) | DIS_BIT(DO_MSISDN) | DIS_BIT(DO_OPERATOR),
                     0, 0, &a);
  if (rc != 0)
    return rc == 1 ? CLI_EXIT_OK : rc;
  if ((rc = dis_require(&a, DO_TYPE)) || (rc = dis_require(&a, DO_ID)) ||
      (rc = dis_require(&a, DO_MSISDN)))
    return rc;
  int type = -1;
  for (size_t k = 0; k < sizeof dis_id_types / sizeof dis_id_types[0]; k++)
    if (strcmp(a.opt[DO_TYPE], dis_id_types[k].name) == 0)
      type = (int)dis_id_types[k].type;
  if (type < 0)
    return dis_usage_error(cmd,
                           "--type: '%s' is not national_id, refugee_id, msisdn, account_id or "
                           "business_id",
                           a.opt[DO_TYPE]);
  const char *id = a.opt[DO_ID];
  char masked[DIS_ID_MAX + 1], wallet[32];
  cli_mask_beneficiary(id, masked, sizeof masked);
  size_t n = strlen(id);
  int id_ok = n >= 1 && n <= DIS_ID_MAX;
  for (size_t k = 0; k < n; k++)
    id_ok &= id[k] > ' ' && id[k] <= '~' && id[k] != ',';
  if (type == TUMA__V1__PARTY_ID_TYPE__PARTY_ID_TYPE_MSISDN)
    id_ok = dis_msisdn_valid(id);
  if (!id_ok)
    return dis_usage_error(cmd,
                           "--id: '%s' is not an id of that type (1-64 printable characters, no "
                           "spaces or commas; an msisdn 5-15 digits)",
                           masked);
  if (!dis_msisdn_valid(a.opt[DO_MSISDN]))
    return dis_usage_error(cmd, "%s--msisdn must be 5-15 digits (E.164 without '+')", NULL);
  cli_mask(a.opt[DO_MSISDN], wallet, sizeof wallet);
  if (a.opt[DO_OPERATOR] != NULL && !cli_participant_id_valid(a.opt[DO_OPERATOR]))
    return dis_usage_error(cmd, "--operator: '%s' is not a participant id", a.opt[DO_OPERATOR]);

  Tuma__V1__Party party = TUMA__V1__PARTY__INIT;
  party.type = (Tuma__V1__PartyIdType)type;
  party.id = (char *)id;
  Tuma__V1__BeneficiaryRegister body = TUMA__V1__BENEFICIARY_REGISTER__INIT;
  body.beneficiary = &party;
  body.msisdn = (char *)a.opt[DO_MSISDN];
  if (a.opt[DO_OPERATOR] != NULL)
    body.operator_participant = (char *)a.opt[DO_OPERATOR];
  Tuma__V1__AdminEnvelope req = TUMA__V1__ADMIN_ENVELOPE__INIT;
  req.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_BENEFICIARY_REGISTER;
  req.beneficiary_register = &body;
  admin_client *c = NULL;
  Tuma__V1__AdminEnvelope *reply = NULL;
  if ((rc = dis_connect(&a, &c)) == 0 && (rc = dis_call(&a, c, &req, &reply)) == 0 &&
      (rc = dis_expect(cmd, reply, TUMA__V1__ADMIN_ENVELOPE__BODY_ADMIN_RESULT)) == 0)
    printf("beneficiary %s %s registered: wallet %s at %s\n", a.opt[DO_TYPE], masked, wallet,
           a.opt[DO_OPERATOR] != NULL ? a.opt[DO_OPERATOR] : "(the party directory's operator)");
  if (reply != NULL)
    tuma__v1__admin_envelope__free_unpacked(reply, NULL);
  admin_client_close(c);
  return rc;
}

/* ---- chunked upload ---- */

/* A file to upload: its SHA-256 and size from a first pass. */
typedef struct dis_file {
  FILE *f;
  uint8_t sha[32];
  uint64_t size;
} dis_file;

/* Opens path and hashes it. Usage error (exit 2) if it cannot be read: nothing was sent. */
static int dis_file_open(const char *cmd, const char *path, dis_file *df) {
  memset(df, 0, sizeof *df);
  df->f = fopen(path, "rb");
  if (df->f == NULL) {
    fprintf(stderr, "tuma %s: --file %s: %s\n", cmd, path, strerror(errno));
    return CLI_EXIT_USAGE;
  }
  struct stat st;
  if (fstat(fileno(df->f), &st) != 0 || !S_ISREG(st.st_mode)) {
    fprintf(stderr, "tuma %s: --file %s: not a regular file\n", cmd, path);
    fclose(df->f);
    df->f = NULL;
    return CLI_EXIT_USAGE;
  }
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  unsigned char buf[65536];
  size_t n;
  int ok = md != NULL && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1;
  while (ok && (n = fread(buf, 1, sizeof buf, df->f)) > 0) {
    ok = EVP_DigestUpdate(md, buf, n) == 1;
    df->size += n;
  }
  unsigned len = 0;
  ok = ok && !ferror(df->f) && EVP_DigestFinal_ex(md, df->sha, &len) == 1 && len == 32;
  EVP_MD_CTX_free(md);
  if (!ok || fseek(df->f, 0, SEEK_SET) != 0) {
    fprintf(stderr, "tuma %s: --file %s: cannot read it\n", cmd, path);
    fclose(df->f);
    df->f = NULL;
    return CLI_EXIT_USAGE;
  }
  return 0;
}

/* Builds and sends one chunk request; make_req fills the envelope around the chunk. */
typedef void (*dis_wrap_fn)(Tuma__V1__AdminEnvelope *req, Tuma__V1__FileChunk *chunk, int first,
                            void *arg);

/* Sends df in chunks of chunk_bytes, each wrapped by wrap. Every chunk but the last must be
 * answered with an ok AdminResult; the last one's reply (or an earlier reply that is not an
 * AdminResult: the switch's result after it refused the file midway) is handed back in
 * *last_reply (the caller's). The bytes sent are hashed again and compared with the first pass, so
 * a file that changed meanwhile is caught before its last chunk goes. CLI_EXIT_FAIL after a
 * message. */
static int dis_upload(const dis_args *a, admin_client *c, dis_file *df, size_t chunk_bytes,
                      dis_wrap_fn wrap, void *arg, Tuma__V1__AdminEnvelope **last_reply) {
  *last_reply = NULL;
  uint8_t *buf = malloc(chunk_bytes);
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  int rc = CLI_EXIT_FAIL;
  if (buf == NULL || md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
    fprintf(stderr, "tuma %s: out of memory\n", a->cmd);
    goto done;
  }
  uint64_t sent = 0;
  for (int first = 1;; first = 0) {
    size_t n = fread(buf, 1, chunk_bytes, df->f);
    if (ferror(df->f)) {
      fprintf(stderr, "tuma %s: reading the file: %s\n", a->cmd, strerror(errno));
      goto done;
    }
    sent += n;
    if (EVP_DigestUpdate(md, buf, n) != 1) {
      fprintf(stderr, "tuma %s: SHA-256 failed\n", a->cmd);
      goto done;
    }
    int last = sent >= df->size;
    if (last) {
      uint8_t sha[32];
      unsigned len = 0;
      int extra = fgetc(df->f) != EOF;
      if (EVP_DigestFinal_ex(md, sha, &len) != 1 || extra || sent != df->size ||
          memcmp(sha, df->sha, 32) != 0) {
        fprintf(stderr,
                "tuma %s: the file changed while it was being uploaded; nothing was "
                "accepted, run the command again\n",
                a->cmd);
        goto done;
      }
    } else if (n == 0) {
      fprintf(stderr, "tuma %s: the file shrank while it was being uploaded\n", a->cmd);
      goto done;
    }
    Tuma__V1__FileChunk chunk = TUMA__V1__FILE_CHUNK__INIT;
    if (first) {
      chunk.file_sha256.data = df->sha;
      chunk.file_sha256.len = 32;
      chunk.file_size = df->size;
    }
    chunk.data.data = buf;
    chunk.data.len = n;
    chunk.last = last;
    Tuma__V1__AdminEnvelope req = TUMA__V1__ADMIN_ENVELOPE__INIT;
    wrap(&req, &chunk, first, arg);
    Tuma__V1__AdminEnvelope *reply = NULL;
    int call_failed = dis_call(a, c, &req, &reply) != 0;
    if (call_failed || (reply->body_case == TUMA__V1__ADMIN_ENVELOPE__BODY_ADMIN_RESULT &&
                        reply->admin_result->error != NULL &&
                        reply->admin_result->error->code == DIS_FRAME_TOO_LARGE)) {
      /* The usual reason a switch hangs up on an upload: a frame over its max_frame_bytes
       * (refused with 3104, or the connection closed before that answer could be read). */
      if (!call_failed) {
        dis_refused(a->cmd, reply->admin_result->error);
        tuma__v1__admin_envelope__free_unpacked(reply, NULL);
      }
      fprintf(stderr,
              "tuma %s: the upload stopped at byte %" PRIu64 " of %" PRIu64
              "; if the switch's admin_max_frame_bytes is below %zu, give a smaller --chunk-bytes\n",
              a->cmd, sent - n, df->size, chunk_bytes + 256);
      goto done;
    }
    /* The final answer may come early: the switch stops reading a file once it has refused it
     * (and answers that chunk with the result instead of an AdminResult). */
    if (last || reply->body_case != TUMA__V1__ADMIN_ENVELOPE__BODY_ADMIN_RESULT) {
      *last_reply = reply;
      rc = 0;
      goto done;
    }
    int ok = dis_expect(a->cmd, reply, TUMA__V1__ADMIN_ENVELOPE__BODY_ADMIN_RESULT);
    tuma__v1__admin_envelope__free_unpacked(reply, NULL);
    if (ok != 0)
      goto done;
  }
done:
  EVP_MD_CTX_free(md);
  free(buf);
  return rc;
}

static int dis_chunk_bytes(const dis_args *a, size_t *out) {
  uint64_t v = DIS_DEFAULT_CHUNK;
  if (a->opt[DO_CHUNK_BYTES] != NULL &&
      cli_parse_u64(a->cmd, "--chunk-bytes", a->opt[DO_CHUNK_BYTES], DIS_MIN_CHUNK, DIS_MAX_CHUNK,
                    &v) != 0)
    return CLI_EXIT_USAGE;
  *out = (size_t)v;
  return 0;
}

static void dis_wrap_beneficiaries(Tuma__V1__AdminEnvelope *req, Tuma__V1__FileChunk *chunk,
                                   int first, void *arg) {
  (void)first;
  Tuma__V1__BeneficiaryUpload *up = arg;
  tuma__v1__beneficiary_upload__init(up);
  up->chunk = chunk;
  req->body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_BENEFICIARY_UPLOAD;
  req->beneficiary_upload = up;
}

static int dis_beneficiary_upload(int argc, char **argv) {
  const char *cmd = "disburse beneficiary upload";
  dis_args a;
  int rc = dis_parse(argc, argv, 3, cmd, DIS_BIT(DO_FILE) | DIS_BIT(DO_CHUNK_BYTES), 0, 0, &a);
  if (rc != 0)
    return rc == 1 ? CLI_EXIT_OK : rc;
  size_t chunk_bytes = 0;
  if ((rc = dis_require(&a, DO_FILE)) != 0 || (rc = dis_chunk_bytes(&a, &chunk_bytes)) != 0)
    return rc;
  dis_file df;
  if ((rc = dis_file_open(cmd, a.opt[DO_FILE], &df)) != 0)
    return rc;
  admin_client *c = NULL;
  Tuma__V1__AdminEnvelope *reply = NULL;
  Tuma__V1__BeneficiaryUpload up;
  if ((rc = dis_connect(&a, &c)) == 0 &&
      (rc = dis_upload(&a, c, &df, chunk_bytes, dis_wrap_beneficiaries, &up, &reply)) == 0 &&
      (rc = dis_expect(cmd, reply, TUMA__V1__ADMIN_ENVELOPE__BODY_BENEFICIARY_UPLOAD_RESULT)) ==
          0) {
    const Tuma__V1__BeneficiaryUploadResult *r = reply->beneficiary_upload_result;
    printf("registered %" PRIu64 ", refused %" PRIu64 "\n", r->registered, r->refused);
    dis_print_row_errors(stdout, r->errors, r->n_errors);
    if (r->refused > r->n_errors)
      printf("(%" PRIu64 " more refused rows not listed)\n", r->refused - r->n_errors);
  }
  if (reply != NULL)
    tuma__v1__admin_envelope__free_unpacked(reply, NULL);
  admin_client_close(c);
  fclose(df.f);
  return rc;
}

/* ---- submit ---- */

/* The first BatchSubmit carries the options, the others only their chunk. */
typedef struct dis_batch_reqs {
  Tuma__V1__BatchSubmit options, rest;
} dis_batch_reqs;

static void dis_wrap_batch(Tuma__V1__AdminEnvelope *req, Tuma__V1__FileChunk *chunk, int first,
                           void *arg) {
  dis_batch_reqs *r = arg;
  Tuma__V1__BatchSubmit *b = first ? &r->options : &r->rest;
  b->chunk = chunk;
  req->body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_BATCH_SUBMIT;
  req->batch_submit = b;
}

static int dis_submit(int argc, char **argv) {
  const char *cmd = "disburse submit";
  dis_args a;
  int rc = dis_parse(argc, argv, 2, cmd,
                     DIS_BIT(DO_PROGRAMME) | DIS_BIT(DO_CYCLE) | DIS_BIT(DO_FILE) |
                         DIS_BIT(DO_EXPECT_COUNT) | DIS_BIT(DO_EXPECT_TOTAL) | DIS_BIT(DO_AT) |
                         DIS_BIT(DO_RATE) | DIS_BIT(DO_CYCLES) | DIS_BIT(DO_EVERY) |
                         DIS_BIT(DO_CHUNK_BYTES),
                     DIS_BIT(DF_EXCLUDE_INVALID), 0, &a);
  if (rc != 0)
    return rc == 1 ? CLI_EXIT_OK : rc;
  if ((rc = dis_require(&a, DO_PROGRAMME)) || (rc = dis_require(&a, DO_CYCLE)) ||
      (rc = dis_require(&a, DO_FILE)) || (rc = dis_require(&a, DO_EXPECT_COUNT)) ||
      (rc = dis_require(&a, DO_EXPECT_TOTAL)))
    return rc;
  const char *prog = a.opt[DO_PROGRAMME];
  uint64_t cycle = 0, expect_count = 0, rate = 0, cycles = 1, every = 0, start_at = 0;
  size_t chunk_bytes = 0;
  if ((rc = dis_check_programme_id(cmd, prog)) != 0)
    return rc;
  if (cli_parse_u64(cmd, "--cycle", a.opt[DO_CYCLE], 1, UINT32_MAX, &cycle) != 0 ||
      cli_parse_u64(cmd, "--expect-count", a.opt[DO_EXPECT_COUNT], 0, UINT64_MAX, &expect_count) !=
          0)
    return CLI_EXIT_USAGE;
  if ((rc = dis_check_amount_form(cmd, "--expect-total", a.opt[DO_EXPECT_TOTAL])) != 0)
    return rc;
  if (a.opt[DO_AT] != NULL) {
    int prc = cli_parse_time(a.opt[DO_AT], cli_now_ms(), &start_at);
    if (prc != CLI_ARG_OK) {
      fprintf(stderr, "tuma %s: --at: '%s': %s\n", cmd, a.opt[DO_AT], cli_arg_strerror(prc));
      return CLI_EXIT_USAGE;
    }
  }
  if (a.opt[DO_RATE] != NULL &&
      cli_parse_u64(cmd, "--rate", a.opt[DO_RATE], 1, UINT32_MAX, &rate) != 0)
    return CLI_EXIT_USAGE;
  if (a.opt[DO_CYCLES] != NULL &&
      cli_parse_u64(cmd, "--cycles", a.opt[DO_CYCLES], 1, UINT32_MAX, &cycles) != 0)
    return CLI_EXIT_USAGE;
  if (a.opt[DO_EVERY] != NULL) {
    int prc = cli_parse_duration(a.opt[DO_EVERY], &every);
    if (prc != CLI_ARG_OK) {
      fprintf(stderr, "tuma %s: --every: '%s': %s\n", cmd, a.opt[DO_EVERY], cli_arg_strerror(prc));
      return CLI_EXIT_USAGE;
    }
    if (every == 0)
      return dis_usage_error(cmd, "%s--every must be more than 0", NULL);
  }
  if (cycles > 1 && a.opt[DO_EVERY] == NULL)
    return dis_usage_error(cmd, "%s--cycles more than 1 needs --every DURATION", NULL);
  if (cycles == 1 && a.opt[DO_EVERY] != NULL && a.opt[DO_CYCLES] == NULL)
    return dis_usage_error(cmd, "%s--every needs --cycles N (more than 1)", NULL);
  if (cycle + cycles - 1 > UINT32_MAX)
    return dis_usage_error(cmd, "%s--cycle + --cycles goes beyond the last cycle number", NULL);
  if ((rc = dis_chunk_bytes(&a, &chunk_bytes)) != 0)
    return rc;
  dis_file df;
  if ((rc = dis_file_open(cmd, a.opt[DO_FILE], &df)) != 0)
    return rc;

  admin_client *c = NULL;
  Tuma__V1__AdminEnvelope *info = NULL, *reply = NULL;
  if ((rc = dis_connect(&a, &c)) != 0)
    goto done;
  if ((rc = dis_programme_query(&a, c, prog, &info)) != 0)
    goto done;
  char currency[8];
  snprintf(currency, sizeof currency, "%s", info->programme_info->currency);
  int exponent = dis_exponent(cmd, currency);
  uint64_t expect_total = 0;
  if (exponent < 0) {
    rc = CLI_EXIT_FAIL;
    goto done;
  }
  if ((rc = dis_amount(cmd, "--expect-total", a.opt[DO_EXPECT_TOTAL], exponent, currency,
                       &expect_total)) != 0)
    goto done;
  dis_batch_reqs reqs = {TUMA__V1__BATCH_SUBMIT__INIT, TUMA__V1__BATCH_SUBMIT__INIT};
  Tuma__V1__BatchSubmit options = TUMA__V1__BATCH_SUBMIT__INIT;
  options.programme_id = (char *)prog;
  options.cycle = (uint32_t)cycle;
  options.expect_count = expect_count;
  options.expect_total = expect_total;
  options.start_at_ms = start_at;
  options.rate = (uint32_t)rate;
  options.cycles = cycles > 1 ? (uint32_t)cycles : 0;
  options.every_ms = every;
  options.exclude_invalid = a.flag[DF_EXCLUDE_INVALID];
  reqs.options = options;
  if ((rc = dis_upload(&a, c, &df, chunk_bytes, dis_wrap_batch, &reqs, &reply)) != 0)
    goto done;
  if ((rc = dis_expect(cmd, reply, TUMA__V1__ADMIN_ENVELOPE__BODY_BATCH_SUBMIT_RESULT)) != 0)
    goto done;
  const Tuma__V1__BatchSubmitResult *r = reply->batch_submit_result;
  char total[32];
  cli_format_amount(r->valid_total, (unsigned)exponent, total, sizeof total);
  if ((r->error != NULL && r->error->code != 0) ||
      r->state == TUMA__V1__BATCH_STATE__BATCH_STATE_REFUSED) {
    fprintf(stderr, "tuma %s: batch refused: %" PRIu32 " %s\n", cmd,
            r->error != NULL ? r->error->code : 0,
            r->error != NULL && r->error->message != NULL ? r->error->message : "");
    fprintf(stderr, "%" PRIu64 " valid rows, total %s %s; %" PRIu64 " invalid\n", r->valid_count,
            total, currency, r->invalid_count);
    dis_print_row_errors(stderr, r->errors, r->n_errors);
    if (r->invalid_count > r->n_errors)
      fprintf(stderr, "(%" PRIu64 " more bad rows not listed)\n", r->invalid_count - r->n_errors);
    rc = CLI_EXIT_FAIL;
    goto done;
  }
  if (r->existing) {
    printf("batch %" PRIu64 " already submitted (same file)\n", r->batch_id);
    goto done;
  }
  printf("batch %" PRIu64 " submitted: %" PRIu64 " valid rows, total %s %s; %" PRIu64 " invalid\n",
         r->batch_id, r->valid_count, total, currency, r->invalid_count);
  dis_print_row_errors(stdout, r->errors, r->n_errors);
done:
  if (reply != NULL)
    tuma__v1__admin_envelope__free_unpacked(reply, NULL);
  if (info != NULL)
    tuma__v1__admin_envelope__free_unpacked(info, NULL);
  admin_client_close(c);
  fclose(df.f);
  return rc;
}

/* ---- approve, cancel ---- */

static int dis_approve_cancel(int argc, char **argv, int approve) {
  const char *cmd = approve ? "disburse approve" : "disburse cancel";
  dis_args a;
  uint64_t batch = 0;
  int rc = dis_parse(argc, argv, 2, cmd, 0, 0, 1, &a);
  if (rc != 0)
    return rc == 1 ? CLI_EXIT_OK : rc;
  if ((rc = dis_check_batch(cmd, &a, &batch)) != 0)
    return rc;
  Tuma__V1__BatchApprove ap = TUMA__V1__BATCH_APPROVE__INIT;
  Tuma__V1__BatchCancel ca = TUMA__V1__BATCH_CANCEL__INIT;
  Tuma__V1__AdminEnvelope req = TUMA__V1__ADMIN_ENVELOPE__INIT;
  if (approve) {
    ap.batch_id = batch;
    req.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_BATCH_APPROVE;
    req.batch_approve = &ap;
  } else {
    ca.batch_id = batch;
    req.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_BATCH_CANCEL;
    req.batch_cancel = &ca;
  }
  admin_client *c = NULL;
  Tuma__V1__AdminEnvelope *reply = NULL;
  if ((rc = dis_connect(&a, &c)) == 0 && (rc = dis_call(&a, c, &req, &reply)) == 0 &&
      (rc = dis_expect(cmd, reply, TUMA__V1__ADMIN_ENVELOPE__BODY_ADMIN_RESULT)) == 0)
    printf("batch %" PRIu64 " %s\n", batch, approve ? "approved" : "cancelled");
  if (reply != NULL)
    tuma__v1__admin_envelope__free_unpacked(reply, NULL);
  admin_client_close(c);
  return rc;
}

/* ---- status ---- */

static const char *dis_state_name(Tuma__V1__BatchState s) {
  switch (s) {
  case TUMA__V1__BATCH_STATE__BATCH_STATE_SUBMITTED:
    return "submitted";
  case TUMA__V1__BATCH_STATE__BATCH_STATE_APPROVED:
    return "approved";
  case TUMA__V1__BATCH_STATE__BATCH_STATE_RUNNING:
    return "running";
  case TUMA__V1__BATCH_STATE__BATCH_STATE_COMPLETED:
    return "completed";
  case TUMA__V1__BATCH_STATE__BATCH_STATE_CANCELLED:
    return "cancelled";
  case TUMA__V1__BATCH_STATE__BATCH_STATE_REFUSED:
    return "refused";
  case TUMA__V1__BATCH_STATE__BATCH_STATE_WAITING_FUNDS:
    return "waiting_funds";
  default:
    return "unknown";
  }
}

static int dis_state_final(Tuma__V1__BatchState s) {
  return s == TUMA__V1__BATCH_STATE__BATCH_STATE_COMPLETED ||
         s == TUMA__V1__BATCH_STATE__BATCH_STATE_CANCELLED ||
         s == TUMA__V1__BATCH_STATE__BATCH_STATE_REFUSED;
}

static const char *dis_item_status_name(Tuma__V1__ItemStatus s) {
  switch (s) {
  case TUMA__V1__ITEM_STATUS__ITEM_STATUS_PENDING:
    return "pending";
  case TUMA__V1__ITEM_STATUS__ITEM_STATUS_IN_FLIGHT:
    return "in_flight";
  case TUMA__V1__ITEM_STATUS__ITEM_STATUS_PAID:
    return "paid";
  case TUMA__V1__ITEM_STATUS__ITEM_STATUS_FAILED:
    return "failed";
  case TUMA__V1__ITEM_STATUS__ITEM_STATUS_CANCELLED:
    return "cancelled";
  default:
    return "unknown";
  }
}

static void dis_print_status(const Tuma__V1__BatchStatus *s) {
  int e = dis_exponent("disburse status", s->currency);
  unsigned exp = e < 0 ? 0 : (unsigned)e;
  char b[32], t1[40], t2[40];
  uint32_t cycles = s->cycles > 0 ? s->cycles : 1;
  printf("batch %" PRIu64 "  programme %s  state %s  cycle %" PRIu32 " (cycles %" PRIu32 "-%" PRIu32
         ")\n",
         s->batch_id, s->programme_id, dis_state_name(s->state),
         s->current_cycle != 0 ? s->current_cycle : s->first_cycle, s->first_cycle,
         s->first_cycle + cycles - 1);
  printf("  items %" PRIu64 " per cycle, total %s %s; %" PRIu64 " excluded at validation\n",
         s->items, cli_format_amount(s->total, exp, b, sizeof b), s->currency, s->invalid_count);
  printf("  submitted by %s at %s", s->submitted_by != NULL ? s->submitted_by : "",
         s->submitted_ms ? cli_format_time(s->submitted_ms, t1, sizeof t1) : "-");
  if (s->approved_by != NULL && s->approved_by[0] != '\0')
    printf("; approved by %s at %s", s->approved_by,
           s->approved_ms ? cli_format_time(s->approved_ms, t2, sizeof t2) : "-");
  printf("\n");
  if (s->start_at_ms != 0)
    printf("  starts at %s\n", cli_format_time(s->start_at_ms, t1, sizeof t1));
  uint64_t done = 0, n[6] = {0}, amt[6] = {0};
  for (size_t k = 0; k < s->n_counts; k++) {
    int st = (int)s->counts[k]->status;
    if (st >= 0 && st < 6) {
      n[st] += s->counts[k]->count;
      amt[st] += s->counts[k]->amount;
    }
  }
  done = n[TUMA__V1__ITEM_STATUS__ITEM_STATUS_PAID] + n[TUMA__V1__ITEM_STATUS__ITEM_STATUS_FAILED] +
         n[TUMA__V1__ITEM_STATUS__ITEM_STATUS_CANCELLED];
  enum { BAR = 30 };
  char bar[BAR + 1];
  unsigned filled = s->items > 0 ? (unsigned)(done * BAR / s->items) : 0;
  if (filled > BAR)
    filled = BAR;
  for (unsigned k = 0; k < BAR; k++)
    bar[k] = k < filled ? '#' : '-';
  bar[BAR] = '\0';
  unsigned pct = s->items > 0 ? (unsigned)(done * 100 / s->items) : 0;
  printf("  [%s] %3u%%  %" PRIu64 "/%" PRIu64 " done\n", bar, pct > 100 ? 100 : pct, done,
         s->items);
  for (int st = TUMA__V1__ITEM_STATUS__ITEM_STATUS_PENDING;
       st <= TUMA__V1__ITEM_STATUS__ITEM_STATUS_CANCELLED; st++)
    printf("  %-10s %10" PRIu64 "  %20s %s\n", dis_item_status_name((Tuma__V1__ItemStatus)st),
           n[st], cli_format_amount(amt[st], exp, b, sizeof b), s->currency);
  printf("  rate %.1f/s", s->paid_per_second);
  if (s->rate != 0)
    printf(" (limit %" PRIu32 "/s)", s->rate);
  if (s->eta_ms != 0)
    printf("  ETA %" PRIu64 "s", (s->eta_ms + 999) / 1000);
  printf("\n");
}

/* Asks for batch's status on c; *env is the caller's. *answered (may be NULL) is set to 1 when
 * the switch answered (a status or a refusal), 0 when the exchange itself failed. */
static int dis_status_query(const dis_args *a, admin_client *c, uint64_t batch,
                            Tuma__V1__AdminEnvelope **env, int *answered) {
  Tuma__V1__BatchStatusQuery q = TUMA__V1__BATCH_STATUS_QUERY__INIT;
  q.batch_id = batch;
  Tuma__V1__AdminEnvelope req = TUMA__V1__ADMIN_ENVELOPE__INIT;
  req.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_BATCH_STATUS_QUERY;
  req.batch_status_query = &q;
  int rc = dis_call(a, c, &req, env);
  if (rc != 0)
    return rc;
  if (answered != NULL)
    *answered = 1;
  rc = dis_expect(a->cmd, *env, TUMA__V1__ADMIN_ENVELOPE__BODY_BATCH_STATUS);
  if (rc != 0) {
    tuma__v1__admin_envelope__free_unpacked(*env, NULL);
    *env = NULL;
  }
  return rc;
}

static void dis_sleep_ms(uint64_t ms) {
  struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

static int dis_status(int argc, char **argv) {
  const char *cmd = "disburse status";
  dis_args a;
  uint64_t batch = 0, interval = 2;
  int rc = dis_parse(argc, argv, 2, cmd, DIS_BIT(DO_INTERVAL), DIS_BIT(DF_WATCH), 1, &a);
  if (rc != 0)
    return rc == 1 ? CLI_EXIT_OK : rc;
  if ((rc = dis_check_batch(cmd, &a, &batch)) != 0)
    return rc;
  if (a.opt[DO_INTERVAL] != NULL) {
    if (!a.flag[DF_WATCH])
      return dis_usage_error(cmd, "%s--interval goes with --watch", NULL);
    if (cli_parse_u64(cmd, "--interval", a.opt[DO_INTERVAL], 1, 3600, &interval) != 0)
      return CLI_EXIT_USAGE;
  }
  /* A connection per poll: a watch may last hours, and an idle connection is not guaranteed to
   * survive that (nor the switch a restart). A watch gives up after DIS_WATCH_FAILURES polls
   * in a row that got no answer; a refusal ends it at once. */
  enum { DIS_WATCH_FAILURES = 10 };
  for (int failures = 0;;) {
    admin_client *c = NULL;
    Tuma__V1__AdminEnvelope *env = NULL;
    int answered = 0;
    if ((rc = dis_connect(&a, &c)) == 0)
      rc = dis_status_query(&a, c, batch, &env, &answered);
    admin_client_close(c);
    if (rc != 0) {
      if (!a.flag[DF_WATCH] || answered || ++failures >= DIS_WATCH_FAILURES)
        break;
      dis_sleep_ms(interval * 1000);
      continue;
    }
    failures = 0;
    dis_print_status(env->batch_status);
    int final = dis_state_final(env->batch_status->state);
    tuma__v1__admin_envelope__free_unpacked(env, NULL);
    fflush(stdout);
    if (!a.flag[DF_WATCH] || final)
      break;
    dis_sleep_ms(interval * 1000);
  }
  return rc;
}

/* ---- report ---- */

/* Writes text as one CSV field (quoted when it holds a comma, quote or line break). */
static void dis_csv_field(FILE *f, const char *text) {
  if (text == NULL)
    return;
  if (strpbrk(text, ",\"\r\n") == NULL) {
    fputs(text, f);
    return;
  }
  fputc('"', f);
  for (const char *p = text; *p; p++) {
    if (*p == '"')
      fputc('"', f);
    fputc(*p, f);
  }
  fputc('"', f);
}

static int dis_report(int argc, char **argv) {
  const char *cmd = "disburse report";
  dis_args a;
  uint64_t batch = 0;
  int rc = dis_parse(argc, argv, 2, cmd, DIS_BIT(DO_OUT), DIS_BIT(DF_CSV), 1, &a);
  if (rc != 0)
    return rc == 1 ? CLI_EXIT_OK : rc;
  if ((rc = dis_check_batch(cmd, &a, &batch)) != 0)
    return rc;
  char tmp[DIS_PATH_MAX + 16];
  if (a.opt[DO_OUT] != NULL &&
      snprintf(tmp, sizeof tmp, "%s.part", a.opt[DO_OUT]) >= (int)sizeof tmp)
    return dis_usage_error(cmd, "%s--out: the path is too long", NULL);
  admin_client *c = NULL;
  Tuma__V1__AdminEnvelope *st = NULL, *page = NULL;
  FILE *out = stdout;
  if ((rc = dis_connect(&a, &c)) != 0)
    return rc;
  if ((rc = dis_status_query(&a, c, batch, &st, NULL)) != 0)
    goto done;
  char currency[8];
  snprintf(currency, sizeof currency, "%s", st->batch_status->currency);
  int e = dis_exponent(cmd, currency);
  if (e < 0) {
    rc = CLI_EXIT_FAIL;
    goto done;
  }
  if (a.opt[DO_OUT] != NULL && (out = fopen(tmp, "w")) == NULL) {
    fprintf(stderr, "tuma %s: --out: %s: %s\n", cmd, tmp, strerror(errno));
    out = stdout;
    rc = CLI_EXIT_FAIL;
    goto done;
  }
  fputs("cycle,line,beneficiary,reference,amount,currency,status,reason_code,reason,"
        "transfer_id,completed_at,operator\n",
        out);
  uint64_t after = 0, items = 0, n[6] = {0}, amt[6] = {0};
  Tuma__V1__RowError **invalid = NULL;
  size_t n_invalid = 0;
  int finished = 0;
  for (int pages = 0; pages < DIS_REPORT_MAX_PAGES && !finished; pages++) {
    Tuma__V1__BatchReportQuery q = TUMA__V1__BATCH_REPORT_QUERY__INIT;
    q.batch_id = batch;
    q.after = after;
    q.limit = DIS_REPORT_PAGE;
    Tuma__V1__AdminEnvelope req = TUMA__V1__ADMIN_ENVELOPE__INIT;
    req.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_BATCH_REPORT_QUERY;
    req.batch_report_query = &q;
    Tuma__V1__AdminEnvelope *next = NULL;
    if ((rc = dis_call(&a, c, &req, &next)) != 0)
      goto done;
    if ((rc = dis_expect(cmd, next, TUMA__V1__ADMIN_ENVELOPE__BODY_BATCH_REPORT_PAGE)) != 0) {
      tuma__v1__admin_envelope__free_unpacked(next, NULL);
      goto done;
    }
    const Tuma__V1__BatchReportPage *p = next->batch_report_page;
    for (size_t k = 0; k < p->n_items; k++) {
      const Tuma__V1__ReportItem *it = p->items[k];
      char amount[32], tid[33] = "", when[40] = "";
      if (it->transfer_id.len == 16)
        dis_hex(it->transfer_id.data, 16, tid);
      if (it->completed_ms != 0)
        cli_format_time(it->completed_ms, when, sizeof when);
      fprintf(out, "%" PRIu32 ",%" PRIu64 ",", it->cycle, it->line);
      dis_csv_field(out, it->masked_id);
      fputc(',', out);
      dis_csv_field(out, it->reference);
      fprintf(out, ",%s,%s,%s,", cli_format_amount(it->amount, (unsigned)e, amount, sizeof amount),
              currency, dis_item_status_name(it->status));
      if (it->reason_code != 0)
        fprintf(out, "%" PRIu32, it->reason_code);
      fputc(',', out);
      dis_csv_field(out, it->reason);
      fprintf(out, ",%s,%s,", tid, when);
      dis_csv_field(out, it->operator_participant);
      fputc('\n', out);
      items++;
      int s = (int)it->status;
      if (s >= 0 && s < 6) {
        n[s]++;
        amt[s] += it->amount;
      }
    }
    if (pages == 0 && p->n_invalid > 0) { /* kept for the block after the items */
      page = next;
      invalid = p->invalid;
      n_invalid = p->n_invalid;
      next = NULL;
    }
    finished = p->done;
    int stuck = !finished && p->next == after;
    after = p->next;
    if (next != NULL)
      tuma__v1__admin_envelope__free_unpacked(next, NULL);
    if (stuck) {
      fprintf(stderr, "tuma %s: the switch's report does not advance (next %" PRIu64 ")\n", cmd,
              after);
      rc = CLI_EXIT_FAIL;
      goto done;
    }
  }
  if (!finished) {
    fprintf(stderr, "tuma %s: the report did not end within %d pages\n", cmd, DIS_REPORT_MAX_PAGES);
    rc = CLI_EXIT_FAIL;
    goto done;
  }
  if (n_invalid > 0) {
    fputs("# excluded at validation\nline,reason\n", out);
    for (size_t k = 0; k < n_invalid; k++) {
      fprintf(out, "%" PRIu64 ",", invalid[k]->line);
      dis_csv_field(out, invalid[k]->reason);
      fputc('\n', out);
    }
  }
  if (out != stdout) {
    int bad = ferror(out);
    bad |= fclose(out) != 0;
    out = stdout;
    if (bad || rename(tmp, a.opt[DO_OUT]) != 0) {
      fprintf(stderr, "tuma %s: --out %s: cannot write it\n", cmd, a.opt[DO_OUT]);
      unlink(tmp);
      rc = CLI_EXIT_FAIL;
      goto done;
    }
  } else {
    fflush(stdout);
  }
  char b[5][32];
  fprintf(stderr,
          "%" PRIu64 " items: paid %" PRIu64 " (%s %s), failed %" PRIu64 " (%s), cancelled %" PRIu64
          " (%s), pending %" PRIu64 " (%s), in flight %" PRIu64 " (%s); %zu excluded at "
          "validation\n",
          items, n[3], cli_format_amount(amt[3], (unsigned)e, b[0], sizeof b[0]), currency, n[4],
          cli_format_amount(amt[4], (unsigned)e, b[1], sizeof b[1]), n[5],
          cli_format_amount(amt[5], (unsigned)e, b[2], sizeof b[2]), n[1],
          cli_format_amount(amt[1], (unsigned)e, b[3], sizeof b[3]), n[2],
          cli_format_amount(amt[2], (unsigned)e, b[4], sizeof b[4]), n_invalid);
done:
  if (out != stdout) {
    fclose(out);
    unlink(tmp);
  }
  if (page != NULL)
    tuma__v1__admin_envelope__free_unpacked(page, NULL);
  if (st != NULL)
    tuma__v1__admin_envelope__free_unpacked(st, NULL);
  admin_client_close(c);
  return rc;
}

/* ---- reach ---- */

static int dis_reach(int argc, char **argv) {
  const char *cmd = "disburse reach";
  dis_args a;
  uint64_t batch = 0;
  int rc = dis_parse(argc, argv, 2, cmd, 0, DIS_BIT(DF_CSV), 1, &a);
  if (rc != 0)
    return rc == 1 ? CLI_EXIT_OK : rc;
  if ((rc = dis_check_batch(cmd, &a, &batch)) != 0)
    return rc;
  Tuma__V1__BatchReachQuery q = TUMA__V1__BATCH_REACH_QUERY__INIT;
  q.batch_id = batch;
  Tuma__V1__AdminEnvelope req = TUMA__V1__ADMIN_ENVELOPE__INIT;
  req.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_BATCH_REACH_QUERY;
  req.batch_reach_query = &q;
  admin_client *c = NULL;
  Tuma__V1__AdminEnvelope *reply = NULL;
  if ((rc = dis_connect(&a, &c)) != 0 || (rc = dis_call(&a, c, &req, &reply)) != 0 ||
      (rc = dis_expect(cmd, reply, TUMA__V1__ADMIN_ENVELOPE__BODY_BATCH_REACH)) != 0)
    goto done;
  const Tuma__V1__BatchReach *r = reply->batch_reach;
  int csv = a.flag[DF_CSV];
  if (csv)
    printf("dimension,value,people,paid,failed,median_seconds\n");
  else
    printf("%-10s  %-20s  %8s  %8s  %8s  %12s\n", "DIMENSION", "VALUE", "PEOPLE", "PAID", "FAILED",
           "MEDIAN TIME");
  for (size_t k = 0; k < r->n_cells; k++) {
    const Tuma__V1__ReachCell *cell = r->cells[k];
    char people[24], paid[24], failed[24], median[32];
    if (cell->suppressed) {
      snprintf(people, sizeof people, "<10");
      snprintf(paid, sizeof paid, "<10");
      snprintf(failed, sizeof failed, "<10");
      snprintf(median, sizeof median, "<10");
    } else {
      snprintf(people, sizeof people, "%" PRIu64, cell->people);
      snprintf(paid, sizeof paid, "%" PRIu64, cell->paid);
      snprintf(failed, sizeof failed, "%" PRIu64, cell->failed);
      if (cell->paid == 0)
        snprintf(median, sizeof median, "-");
      else
        snprintf(median, sizeof median, "%" PRIu64 ".%03" PRIu64 "%s", cell->median_ms / 1000,
                 cell->median_ms % 1000, csv ? "" : "s");
    }
    if (csv) {
      dis_csv_field(stdout, cell->dimension);
      putchar(',');
      dis_csv_field(stdout, cell->value);
      printf(",%s,%s,%s,%s\n", people, paid, failed, median);
    } else {
      printf("%-10s  %-20s  %8s  %8s  %8s  %12s\n", cell->dimension, cell->value, people, paid,
             failed, median);
    }
  }
  if (r->n_cells == 0 && !csv)
    printf("(no cells)\n");
done:
  if (reply != NULL)
    tuma__v1__admin_envelope__free_unpacked(reply, NULL);
  admin_client_close(c);
  return rc;
}

/* ---- dispatch ---- */

int cli_disburse_main(int argc, char **argv) {
  if (argc < 2) {
    fputs(dis_usage, stderr);
    return CLI_EXIT_USAGE;
  }
  const char *w = argv[1];
  if (cli_is_help(w) || strcmp(w, "help") == 0) {
    printf("%s%s", dis_usage, dis_common_help);
    return CLI_EXIT_OK;
  }
  if (strcmp(w, "programme") == 0 || strcmp(w, "beneficiary") == 0) {
    int prog = w[0] == 'p';
    const char *verb = argc > 2 ? argv[2] : "";
    if (cli_is_help(verb)) {
      printf("%s%s", dis_usage, dis_common_help);
      return CLI_EXIT_OK;
    }
    if (prog && strcmp(verb, "create") == 0)
      return dis_programme_create(argc, argv);
    if (prog && strcmp(verb, "fund") == 0)
      return dis_programme_fund(argc, argv);
    if (prog && strcmp(verb, "show") == 0)
      return dis_programme_show(argc, argv);
    if (!prog && strcmp(verb, "add") == 0)
      return dis_beneficiary_add(argc, argv);
    if (!prog && strcmp(verb, "upload") == 0)
      return dis_beneficiary_upload(argc, argv);
    return dis_usage_error(prog ? "disburse programme" : "disburse beneficiary",
                           "unknown command '%s'", verb);
  }
  if (strcmp(w, "submit") == 0)
    return dis_submit(argc, argv);
  if (strcmp(w, "approve") == 0)
    return dis_approve_cancel(argc, argv, 1);
  if (strcmp(w, "cancel") == 0)
    return dis_approve_cancel(argc, argv, 0);
  if (strcmp(w, "status") == 0)
    return dis_status(argc, argv);
  if (strcmp(w, "report") == 0)
    return dis_report(argc, argv);
  if (strcmp(w, "reach") == 0)
    return dis_reach(argc, argv);
  return dis_usage_error("disburse", "unknown command '%s'", w);
}
