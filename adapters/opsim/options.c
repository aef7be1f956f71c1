/* options.c — tuma-opsim's command line (options.h). */
#include "options.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "msisdn.h"

#define DEFAULT_WALLETS 1000u
#define DEFAULT_PREFIX "2547"
#define DEFAULT_DIGITS 12u
#define DEFAULT_BALANCE 100000ull
#define MAX_WALLETS 10000000u

void opsim_options_usage(FILE *f) {
  fputs(
      "usage: tuma-opsim --connect HOST:PORT --pki DIR --as PARTICIPANT --data DIR [options]\n"
      "       tuma-opsim totals|history|wallets --data DIR\n"
      "\n"
      "A simulated mobile-money operator on the Tuma switch: wallets in its own LMDB data\n"
      "directory, registered in the switch's party directory; pays other operators' wallets\n"
      "(payer options) and is paid (always).\n"
      "\n"
      "Connection:\n"
      "  --connect HOST:PORT        the switch's operator listener ([v6]:port for IPv6)\n"
      "  --pki DIR --as NAME        DIR/ca.crt, DIR/NAME.crt, DIR/NAME.key; NAME = participant\n"
      "  --ca/--cert/--key FILE     the files one by one (each overrides --pki)\n"
      "  --server-name NAME         the name the switch's certificate must carry (default HOST)\n"
      "  --data DIR                 the data directory (created on the first start)\n"
      "Wallets (first start; later starts check what is given against the data directory):\n"
      "  --wallets N                how many (default 1000)\n"
      "  --msisdn-prefix DIGITS     wallet i is PREFIX followed by i, zero-padded (default 2547)\n"
      "  --msisdn-digits D          length of an MSISDN, 8-15 (default 12)\n"
      "  --initial-balance MINOR    each wallet's opening balance (default 100000)\n"
      "  --wallet-limit MINOR       most a wallet may hold, in flight included (default none)\n"
      "  --frozen-every K           wallets K-1, 2K-1, ... are frozen (default none)\n"
      "  --currency CUR             ISO 4217 code (default KES)\n"
      "Payee:\n"
      "  --payee-latency-ms L       answer forwards after L ms (default 0)\n"
      "  --reject-percent P         refuse P%% of acceptable forwards with 5105 (default 0)\n"
      "Payer (--rate or --max):\n"
      "  --rate R                   R transfers/s          --max   as fast as the window allows\n"
      "  --window W                 most payments in flight (default 64 with --max, else 1024)\n"
      "  --duration S | --count N   stop paying after S seconds / N payments (default: a signal)\n"
      "  --payee-prefix DIGITS      the other operator's MSISDN prefix (default 2547)\n"
      "  --payee-wallets N          and its wallet count (required)\n"
      "  --payee-digits D           and its MSISDN length (default --msisdn-digits, else 12)\n"
      "  --amount-min/--amount-max MINOR   amounts drawn uniformly (default 100 and 1000)\n"
      "  --unknown-percent P        pay MSISDNs that do not exist (default 0)\n"
      "  --short-expiry-percent P   with an expiration of --short-expiry-ms (default 0; 5 ms)\n"
      "  --expiry-ms MS             the others' expiration (default 30000)\n"
      "  --with-condition           send a condition the opsim payee can fulfil\n"
      "Run:\n"
      "  --linger                   after paying, stay as payee until SIGINT/SIGTERM\n"
      "  --drain-ms MS              on the way out, wait for outcomes this long (default 10000)\n"
      "  --print-totals             print the data directory's totals (JSON) at the end\n"
      "  --json                     the end-of-run report as one JSON object\n"
      "  --log-level LEVEL          error, warn, info (default) or debug; MSISDNs are masked\n"
      "\n"
      "Exit status: 0 done, 1 failed, 2 usage error.\n",
      f);
}

static int usage_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int usage_err(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return OPSIM_OPTIONS_USAGE;
}

/* Decimal digits only, no sign, no blanks, at most max. */
static int parse_u64(const char *s, uint64_t max, uint64_t *out) {
  if (!s || !*s)
    return -1;
  uint64_t v = 0;
  for (const char *p = s; *p; p++) {
    if (*p < '0' || *p > '9')
      return -1;
    unsigned d = (unsigned)(*p - '0');
    if (v > (UINT64_MAX - d) / 10)
      return -1;
    v = v * 10 + d;
  }
  if (v > max)
    return -1;
  *out = v;
  return 0;
}

/* A decimal with at most `scale` fraction digits ("2", "2.5"), times 10^scale. */
static int parse_fixed(const char *s, unsigned scale, uint64_t max, uint64_t *out) {
  if (!s || !*s || *s == '.')
    return -1;
  uint64_t v = 0;
  unsigned frac = 0;
  int dot = 0;
  for (const char *p = s; *p; p++) {
    if (*p == '.' && !dot) {
      dot = 1;
      if (!p[1])
        return -1;
      continue;
    }
    if (*p < '0' || *p > '9' || (dot && ++frac > scale) || v > (UINT64_MAX / 10 - 9))
      return -1;
    v = v * 10 + (uint64_t)(*p - '0');
  }
  for (; frac < scale; frac++) {
    if (v > UINT64_MAX / 10)
      return -1;
    v *= 10;
  }
  if (v > max)
    return -1;
  *out = v;
  return 0;
}

static int parse_connect(const char *s, opsim_options *o) {
  const char *colon;
  const char *host = s;
  size_t hlen;
  if (s[0] == '[') {
    const char *close = strchr(s, ']');
    if (!close || close[1] != ':')
      return -1;
    host = s + 1;
    hlen = (size_t)(close - host);
    colon = close + 1;
  } else {
    colon = strrchr(s, ':');
    if (!colon || strchr(s, ':') != colon)
      return -1;
    hlen = (size_t)(colon - s);
  }
  uint64_t port;
  if (hlen == 0 || hlen >= sizeof o->host || parse_u64(colon + 1, 65535, &port) || port == 0)
    return -1;
  memcpy(o->host, host, hlen);
  o->host[hlen] = '\0';
  o->port = (uint16_t)port;
  return 0;
}

static int participant_valid(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > 63 || s[0] == '-')
    return 0;
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
      return 0;
  return 1;
}

static int currency_valid(const char *s) {
  return strlen(s) == 3 && s[0] >= 'A' && s[0] <= 'Z' && s[1] >= 'A' && s[1] <= 'Z' &&
         s[2] >= 'A' && s[2] <= 'Z';
}

/* The options, each with the kind of value it takes. */
typedef enum { V_NONE, V_STR, V_U64, V_PERCENT, V_SECONDS } vkind;

typedef struct optdef {
  const char *name;
  vkind kind;
  uint64_t min, max; /* V_U64; V_PERCENT in bp; V_SECONDS in ms */
  int run_only;      /* refused by the totals / history / wallets commands */
} optdef;

enum {
  O_CONNECT,
  O_PKI,
  O_AS,
  O_CA,
  O_CERT,
  O_KEY,
  O_SERVER_NAME,
  O_DATA,
  O_WALLETS,
  O_PREFIX,
  O_DIGITS,
  O_BALANCE,
  O_LIMIT,
  O_FROZEN,
  O_CURRENCY,
  O_LATENCY,
  O_REJECT,
  O_RATE,
  O_MAX,
  O_WINDOW,
  O_DURATION,
  O_COUNT,
  O_PAYEE_PREFIX,
  O_PAYEE_WALLETS,
  O_PAYEE_DIGITS,
  O_AMOUNT_MIN,
  O_AMOUNT_MAX,
  O_UNKNOWN,
  O_SHORT,
  O_SHORT_MS,
  O_EXPIRY_MS,
  O_CONDITION,
  O_LINGER,
  O_DRAIN,
  O_TOTALS,
  O_JSON,
  O_LOG_LEVEL,
  O_HELP,
  O_COUNT_
};

static const optdef defs[O_COUNT_] = {
    [O_CONNECT] = {"--connect", V_STR, 0, 0, 1},
    [O_PKI] = {"--pki", V_STR, 0, 0, 1},
    [O_AS] = {"--as", V_STR, 0, 0, 1},
    [O_CA] = {"--ca", V_STR, 0, 0, 1},
    [O_CERT] = {"--cert", V_STR, 0, 0, 1},
    [O_KEY] = {"--key", V_STR, 0, 0, 1},
    [O_SERVER_NAME] = {"--server-name", V_STR, 0, 0, 1},
    [O_DATA] = {"--data", V_STR, 0, 0, 0},
    [O_WALLETS] = {"--wallets", V_U64, 1, MAX_WALLETS, 1},
    [O_PREFIX] = {"--msisdn-prefix", V_STR, 0, 0, 1},
    [O_DIGITS] = {"--msisdn-digits", V_U64, OPSIM_MSISDN_MIN_DIGITS, OPSIM_MSISDN_MAX_DIGITS, 1},
    [O_BALANCE] = {"--initial-balance", V_U64, 0, UINT64_MAX, 1},
    [O_LIMIT] = {"--wallet-limit", V_U64, 1, UINT64_MAX - 1, 1},
    [O_FROZEN] = {"--frozen-every", V_U64, 1, MAX_WALLETS, 1},
    [O_CURRENCY] = {"--currency", V_STR, 0, 0, 1},
    [O_LATENCY] = {"--payee-latency-ms", V_U64, 0, 600000, 1},
    [O_REJECT] = {"--reject-percent", V_PERCENT, 0, 10000, 1},
    [O_RATE] = {"--rate", V_U64, 1, 1000000, 1},
    [O_MAX] = {"--max", V_NONE, 0, 0, 1},
    [O_WINDOW] = {"--window", V_U64, 1, 65536, 1},
    [O_DURATION] = {"--duration", V_SECONDS, 1, 86400000ull * 365, 1},
    [O_COUNT] = {"--count", V_U64, 1, UINT64_MAX, 1},
    [O_PAYEE_PREFIX] = {"--payee-prefix", V_STR, 0, 0, 1},
    [O_PAYEE_WALLETS] = {"--payee-wallets", V_U64, 1, UINT32_MAX, 1},
    [O_PAYEE_DIGITS] = {"--payee-digits", V_U64, OPSIM_MSISDN_MIN_DIGITS, OPSIM_MSISDN_MAX_DIGITS,
                        1},
    [O_AMOUNT_MIN] = {"--amount-min", V_U64, 1, UINT64_MAX / 4, 1},
    [O_AMOUNT_MAX] = {"--amount-max", V_U64, 1, UINT64_MAX / 4, 1},
    [O_UNKNOWN] = {"--unknown-percent", V_PERCENT, 0, 10000, 1},
    [O_SHORT] = {"--short-expiry-percent", V_PERCENT, 0, 10000, 1},
    [O_SHORT_MS] = {"--short-expiry-ms", V_U64, 1, 60000, 1},
    [O_EXPIRY_MS] = {"--expiry-ms", V_U64, 100, 86400000, 1},
    [O_CONDITION] = {"--with-condition", V_NONE, 0, 0, 1},
    [O_LINGER] = {"--linger", V_NONE, 0, 0, 1},
    [O_DRAIN] = {"--drain-ms", V_U64, 0, 600000, 1},
    [O_TOTALS] = {"--print-totals", V_NONE, 0, 0, 1},
    [O_JSON] = {"--json", V_NONE, 0, 0, 1},
    [O_LOG_LEVEL] = {"--log-level", V_STR, 0, 0, 1},
    [O_HELP] = {"--help", V_NONE, 0, 0, 0},
};

static int readable(const char *path) {
  return access(path, R_OK) == 0;
}

static int file_path(char *out, const char *dir, const char *name, const char *ext) {
  int n = snprintf(out, OPSIM_PATH_MAX, "%s/%s%s", dir, name, ext);
  return n > 0 && n < OPSIM_PATH_MAX ? 0 : -1;
}

/* Cross-option checks of a run. */
static int check_run(opsim_options *o, const char *const *sval, const int *seen, char *err,
                     size_t errlen) {
  if (!seen[O_CONNECT])
    return usage_err(err, errlen, "--connect HOST:PORT is required");
  if (parse_connect(sval[O_CONNECT], o))
    return usage_err(err, errlen, "--connect: expected HOST:PORT with a port 1-65535, got '%s'",
                     sval[O_CONNECT]);
  if (!seen[O_AS])
    return usage_err(err, errlen, "--as PARTICIPANT is required (the participant id)");
  o->as = sval[O_AS];
  if (!participant_valid(o->as))
    return usage_err(err, errlen, "--as: a participant id is 1-63 characters of a-z, 0-9, '-'");
  if (!seen[O_DATA])
    return usage_err(err, errlen, "--data DIR is required");
  o->server_name = seen[O_SERVER_NAME] ? sval[O_SERVER_NAME] : NULL;
  if (o->server_name && !o->server_name[0])
    return usage_err(err, errlen, "--server-name must not be empty");
  /* certificate files */
  if (!seen[O_PKI] && !(seen[O_CA] && seen[O_CERT] && seen[O_KEY]))
    return usage_err(err, errlen, "which certificates? Give --pki DIR (or --ca, --cert, --key)");
  const char *pki = seen[O_PKI] ? sval[O_PKI] : NULL;
  struct {
    int opt;
    char *out;
    const char *name, *ext;
  } files[3] = {{O_CA, o->ca, "ca", ".crt"},
                {O_CERT, o->cert, o->as, ".crt"},
                {O_KEY, o->key, o->as, ".key"}};
  for (int i = 0; i < 3; i++) {
    if (seen[files[i].opt]) {
      if (snprintf(files[i].out, OPSIM_PATH_MAX, "%s", sval[files[i].opt]) >= OPSIM_PATH_MAX)
        return usage_err(err, errlen, "%s: path too long", defs[files[i].opt].name);
    } else if (file_path(files[i].out, pki, files[i].name, files[i].ext)) {
      return usage_err(err, errlen, "--pki: path too long");
    }
    if (!readable(files[i].out))
      return usage_err(err, errlen, "cannot read %s (%s)", files[i].out,
                       seen[files[i].opt] ? defs[files[i].opt].name : "from --pki and --as");
  }
  /* wallets */
  if (o->prefix_set || o->digits_set || o->wallets_set) {
    uint64_t cap = opsim_msisdn_capacity(o->prefix, o->digits);
    if (cap == 0)
      return usage_err(err, errlen,
                       "--msisdn-prefix must be 1 to %u digits (--msisdn-digits %u), got '%s'",
                       o->digits - 1, o->digits, o->prefix);
    if (o->wallets > cap)
      return usage_err(err, errlen, "--wallets %u do not fit behind prefix %s in %u digits",
                       o->wallets, o->prefix, o->digits);
  }
  if (o->currency_set && !currency_valid(o->currency))
    return usage_err(err, errlen, "--currency: three capital letters (ISO 4217), got '%s'",
                     o->currency);
  if (o->wallet_limit != UINT64_MAX && o->initial_balance > o->wallet_limit)
    return usage_err(err, errlen, "--initial-balance is above --wallet-limit");
  /* payer */
  const int payer_only[] = {O_WINDOW,        O_DURATION,     O_COUNT,      O_PAYEE_PREFIX,
                            O_PAYEE_WALLETS, O_PAYEE_DIGITS, O_AMOUNT_MIN, O_AMOUNT_MAX,
                            O_UNKNOWN,       O_SHORT,        O_SHORT_MS,   O_EXPIRY_MS,
                            O_CONDITION,     O_LINGER};
  if (seen[O_RATE] && seen[O_MAX])
    return usage_err(err, errlen, "--rate and --max exclude each other");
  o->payer = seen[O_RATE] || seen[O_MAX];
  if (!o->payer) {
    for (size_t i = 0; i < sizeof payer_only / sizeof payer_only[0]; i++)
      if (seen[payer_only[i]])
        return usage_err(err, errlen, "%s is a payer option: give --rate R or --max",
                         defs[payer_only[i]].name);
    return OPSIM_OPTIONS_OK;
  }
  if (!seen[O_PAYEE_WALLETS])
    return usage_err(err, errlen,
                     "--payee-wallets N is required to pay (the other operator's "
                     "wallet count)");
  if (!seen[O_WINDOW])
    o->window = o->rate ? 1024 : 64;
  uint64_t pcap = opsim_msisdn_capacity(o->payee_prefix, o->payee_digits);
  if (pcap == 0)
    return usage_err(err, errlen, "--payee-prefix must be 1 to %u digits, got '%s'",
                     o->payee_digits - 1, o->payee_prefix);
  if (o->payee_wallets > pcap)
    return usage_err(err, errlen, "--payee-wallets %u do not fit behind prefix %s in %u digits",
                     o->payee_wallets, o->payee_prefix, o->payee_digits);
  if (o->unknown_bp > 0 && o->payee_wallets == pcap)
    return usage_err(err, errlen,
                     "--unknown-percent: every MSISDN behind --payee-prefix %s "
                     "exists; use fewer --payee-wallets",
                     o->payee_prefix);
  if (o->amount_min > o->amount_max)
    return usage_err(err, errlen, "--amount-min is above --amount-max");
  if (o->short_expiry_ms >= o->expiry_ms)
    return usage_err(err, errlen, "--short-expiry-ms must be below --expiry-ms");
  return OPSIM_OPTIONS_OK;
}

int opsim_options_parse(int argc, char **argv, opsim_options *o, char *err, size_t errlen) {
  memset(o, 0, sizeof *o);
  o->wallets = DEFAULT_WALLETS;
  o->prefix = DEFAULT_PREFIX;
  o->digits = DEFAULT_DIGITS;
  o->initial_balance = DEFAULT_BALANCE;
  o->wallet_limit = UINT64_MAX;
  memcpy(o->currency, "KES", 4);
  o->payee_prefix = DEFAULT_PREFIX;
  o->amount_min = 100;
  o->amount_max = 1000;
  o->short_expiry_ms = 5;
  o->expiry_ms = 30000;
  o->drain_ms = 10000;
  o->log_level = OPSIM_LOG_INFO;
  err[0] = '\0';

  int i = 1;
  if (argc > 1 && argv[1][0] != '-') {
    if (strcmp(argv[1], "totals") == 0)
      o->command = OPSIM_CMD_TOTALS;
    else if (strcmp(argv[1], "history") == 0)
      o->command = OPSIM_CMD_HISTORY;
    else if (strcmp(argv[1], "wallets") == 0)
      o->command = OPSIM_CMD_WALLETS;
    else
      return usage_err(err, errlen,
                       "unknown command '%s' (totals, history, wallets, or options "
                       "to run)",
                       argv[1]);
    i = 2;
  }
  const char *sval[O_COUNT_] = {0};
  uint64_t nval[O_COUNT_] = {0};
  int seen[O_COUNT_] = {0};
  for (; i < argc; i++) {
    const char *word = argv[i], *value = NULL;
    int which = -1;
    for (int d = 0; d < O_COUNT_; d++) {
      size_t len = strlen(defs[d].name);
      if (strncmp(word, defs[d].name, len) == 0 &&
          (word[len] == '\0' || (word[len] == '=' && defs[d].kind != V_NONE))) {
        which = d;
        if (word[len] == '=')
          value = word + len + 1;
        break;
      }
    }
    if (which < 0)
      return usage_err(err, errlen, "unknown argument '%s' (see --help)", word);
    const optdef *d = &defs[which];
    if (which == O_HELP)
      return OPSIM_OPTIONS_HELP;
    if (seen[which])
      return usage_err(err, errlen, "%s given twice", d->name);
    seen[which] = 1;
    if (o->command != OPSIM_CMD_RUN && d->run_only)
      return usage_err(err, errlen, "%s does not apply to this command", d->name);
    if (d->kind == V_NONE)
      continue;
    if (!value) {
      if (i + 1 >= argc)
        return usage_err(err, errlen, "%s needs a value", d->name);
      value = argv[++i];
    }
    sval[which] = value;
    int bad = 0;
    switch (d->kind) {
    case V_STR:
      bad = value[0] == '\0';
      break;
    case V_U64:
      bad = parse_u64(value, d->max, &nval[which]) || nval[which] < d->min;
      break;
    case V_PERCENT:
      bad = parse_fixed(value, 2, d->max, &nval[which]);
      break;
    case V_SECONDS:
      bad = parse_fixed(value, 3, d->max, &nval[which]) || nval[which] < d->min;
      break;
    case V_NONE:
      break;
    }
    if (bad) {
      if (d->kind == V_U64)
        return usage_err(err, errlen, "%s: expected a whole number from %llu to %llu, got '%s'",
                         d->name, (unsigned long long)d->min, (unsigned long long)d->max, value);
      if (d->kind == V_PERCENT)
        return usage_err(err, errlen, "%s: expected a percentage from 0 to 100, got '%s'", d->name,
                         value);
      if (d->kind == V_SECONDS)
        return usage_err(err, errlen, "%s: expected seconds (e.g. 5 or 2.5), got '%s'", d->name,
                         value);
      return usage_err(err, errlen, "%s must not be empty", d->name);
    }
  }

  if (!seen[O_DATA])
    return usage_err(err, errlen, "--data DIR is required");
  o->data = sval[O_DATA];
  if (o->command != OPSIM_CMD_RUN)
    return OPSIM_OPTIONS_OK;

  /* values into the options */
  if ((o->wallets_set = seen[O_WALLETS]))
    o->wallets = (uint32_t)nval[O_WALLETS];
  if ((o->prefix_set = seen[O_PREFIX]))
    o->prefix = sval[O_PREFIX];
  if ((o->digits_set = seen[O_DIGITS]))
    o->digits = (uint32_t)nval[O_DIGITS];
  if ((o->initial_balance_set = seen[O_BALANCE]))
    o->initial_balance = nval[O_BALANCE];
  if ((o->wallet_limit_set = seen[O_LIMIT]))
    o->wallet_limit = nval[O_LIMIT];
  if ((o->frozen_every_set = seen[O_FROZEN]))
    o->frozen_every = (uint32_t)nval[O_FROZEN];
  if ((o->currency_set = seen[O_CURRENCY])) {
    if (strlen(sval[O_CURRENCY]) != 3)
      return usage_err(err, errlen, "--currency: three capital letters (ISO 4217), got '%s'",
                       sval[O_CURRENCY]);
    memcpy(o->currency, sval[O_CURRENCY], 4);
  }
  o->payee_latency_ms = (uint32_t)nval[O_LATENCY];
  o->reject_bp = (uint32_t)nval[O_REJECT];
  o->rate = (uint32_t)nval[O_RATE];
  o->window = (uint32_t)nval[O_WINDOW];
  o->duration_ms = nval[O_DURATION];
  o->count = nval[O_COUNT];
  if (seen[O_PAYEE_PREFIX])
    o->payee_prefix = sval[O_PAYEE_PREFIX];
  o->payee_wallets = (uint32_t)nval[O_PAYEE_WALLETS];
  o->payee_digits = seen[O_PAYEE_DIGITS] ? (uint32_t)nval[O_PAYEE_DIGITS] : o->digits;
  if (seen[O_AMOUNT_MIN])
    o->amount_min = nval[O_AMOUNT_MIN];
  if (seen[O_AMOUNT_MAX])
    o->amount_max = nval[O_AMOUNT_MAX];
  o->unknown_bp = (uint32_t)nval[O_UNKNOWN];
  o->short_expiry_bp = (uint32_t)nval[O_SHORT];
  if (seen[O_SHORT_MS])
    o->short_expiry_ms = (uint32_t)nval[O_SHORT_MS];
  if (seen[O_EXPIRY_MS])
    o->expiry_ms = (uint32_t)nval[O_EXPIRY_MS];
  o->with_condition = seen[O_CONDITION];
  o->linger = seen[O_LINGER];
  if (seen[O_DRAIN])
    o->drain_ms = (uint32_t)nval[O_DRAIN];
  o->print_totals = seen[O_TOTALS];
  o->json = seen[O_JSON];
  if (seen[O_LOG_LEVEL] && opsim_log_level_parse(sval[O_LOG_LEVEL], &o->log_level))
    return usage_err(err, errlen, "--log-level: error, warn, info or debug, got '%s'",
                     sval[O_LOG_LEVEL]);
  return check_run(o, sval, seen, err, errlen);
}
