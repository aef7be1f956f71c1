/* config.c — loading and validating tumad's INI configuration (config.h).
 *
 * libinih does the INI syntax. Debian's libinih is built without INI_HANDLER_LINENO (and the
 * handler's signature is fixed when the shared library is built), so the handler cannot be told
 * line numbers. Instead ini_parse_stream() reads through reader_cb, which hands inih exactly one
 * physical line per call and counts them; the handler runs right after inih read its line, so
 * the count is that line's number. reader_cb also classifies each line the way inih will
 * (comment, continuation, section header, key = value) so that section headers are seen even
 * when a section has no keys, long participant ids survive (inih truncates section names to 49
 * bytes), and indented continuation lines are told apart from new keys. Parsing stops at the
 * first error; checks that need the whole file run afterwards (finish()).
 */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "currency.h"

enum section_kind {
  SEC_NONE,
  SEC_SWITCH,
  SEC_LEDGER,
  SEC_TLS,
  SEC_DISBURSE,
  SEC_AUDIT,
  SEC_PARTICIPANT
};

typedef enum key_type { T_ADDR, T_STR, T_TLS_PATH, T_U32, T_U64, T_LOG_LEVEL } key_type;

/* A key of the fixed sections: where it goes and what it may hold. */
typedef struct key_def {
  enum section_kind section;
  const char *name;
  key_type type;
  size_t offset; /* in sw_config */
  uint64_t min, max;
} key_def;

static const key_def keys[] = {
    {SEC_SWITCH, "listen", T_ADDR, offsetof(sw_config, listen), 0, 0},
    {SEC_SWITCH, "admin_listen", T_ADDR, offsetof(sw_config, admin_listen), 0, 0},
    {SEC_SWITCH, "metrics_listen", T_ADDR, offsetof(sw_config, metrics_listen), 0, 0},
    {SEC_SWITCH, "data_dir", T_STR, offsetof(sw_config, data_dir), 0, 0},
    {SEC_SWITCH, "max_frame_bytes", T_U32, offsetof(sw_config, max_frame_bytes), 256, 16777216},
    {SEC_SWITCH, "admin_max_frame_bytes", T_U32, offsetof(sw_config, admin_max_frame_bytes), 256,
     67108864},
    {SEC_SWITCH, "max_connections", T_U32, offsetof(sw_config, max_connections), 1, 1048576},
    {SEC_SWITCH, "max_in_flight", T_U32, offsetof(sw_config, max_in_flight), 1, 1048576},
    {SEC_SWITCH, "read_timeout_ms", T_U32, offsetof(sw_config, read_timeout_ms), 100, 3600000},
    {SEC_SWITCH, "max_expiry_ms", T_U32, offsetof(sw_config, max_expiry_ms), 1000, 86400000},
    {SEC_SWITCH, "log_level", T_LOG_LEVEL, offsetof(sw_config, log_level), 0, 0},
    {SEC_SWITCH, "directory_secret_file", T_STR, offsetof(sw_config, directory_secret_file), 0, 0},
    {SEC_LEDGER, "map_size_mb", T_U64, offsetof(sw_config, map_size_mb), 1, 67108864},
    {SEC_LEDGER, "map_size_max_mb", T_U64, offsetof(sw_config, map_size_max_mb), 1, 67108864},
    {SEC_LEDGER, "queue_capacity", T_U32, offsetof(sw_config, queue_capacity), 1, 16777216},
    {SEC_LEDGER, "batch_max", T_U32, offsetof(sw_config, batch_max), 1, 8190},
    {SEC_TLS, "ca", T_TLS_PATH, offsetof(sw_config, tls_ca), 0, 0},
    {SEC_TLS, "cert", T_TLS_PATH, offsetof(sw_config, tls_cert), 0, 0},
    {SEC_TLS, "key", T_TLS_PATH, offsetof(sw_config, tls_key), 0, 0},
    {SEC_TLS, "crl", T_TLS_PATH, offsetof(sw_config, tls_crl), 0, 0},
    {SEC_DISBURSE, "max_attempts", T_U32, offsetof(sw_config, disburse_max_attempts), 1, 100},
    {SEC_DISBURSE, "retry_ms", T_U32, offsetof(sw_config, disburse_retry_ms), 10, 3600000},
    {SEC_DISBURSE, "item_expiry_ms", T_U32, offsetof(sw_config, disburse_item_expiry_ms), 1000,
     86400000},
    {SEC_AUDIT, "checkpoint_key", T_TLS_PATH, offsetof(sw_config, checkpoint_key), 0, 0},
    {SEC_AUDIT, "checkpoint_every", T_U32, offsetof(sw_config, checkpoint_every), 1, 100000000},
};

#define N_KEYS (sizeof keys / sizeof keys[0])

/* Participant keys, for continuation lines. */
enum pkey { PK_NONE, PK_NAME, PK_CURRENCIES, PK_PREFIXES, PK_STATUS, PK_CAP, PK_DEPOSIT };

/* A net_debit_cap.CUR or initial_deposit.CUR line, matched to the currency list at the end. */
typedef struct amount_line {
  sw_currency currency;
  uint64_t value;
  int line;
} amount_line;

/* What the parser remembers about one [participant ID] section besides the values. */
typedef struct pstate {
  int name_line, currencies_line, prefixes_line, status_line;
  int prefix_line[SW_PARTICIPANT_MAX_PREFIXES];
  amount_line caps[SW_PARTICIPANT_MAX_CURRENCIES];
  size_t n_caps;
  amount_line deposits[SW_PARTICIPANT_MAX_CURRENCIES];
  size_t n_deposits;
} pstate;

typedef struct parse_ctx {
  FILE *f;
  const char *path;
  char *base_dir; /* absolute directory of the file, for [tls] paths */
  char *buf;      /* getline buffer */
  size_t bufcap;
  int lineno;        /* the physical line last handed to inih */
  bool have_name;    /* inih has a previous key in this section (continuations possible) */
  bool continuation; /* the current line continues the previous key's value */
  enum section_kind section;
  char label[200]; /* the current section's name, for messages */
  int section_line;
  int switch_line, ledger_line, tls_line, disburse_line,
      audit_line; /* header lines of the fixed sections, 0 = absent */
  int key_line[N_KEYS];
  enum pkey last_pkey;
  size_t cur; /* index of the current participant */
  pstate *ps; /* parallel to cfg->participants */
  size_t cap;
  sw_config *cfg;
  int status; /* the first error: SW_CONFIG_E_* */
  char *err;
  size_t errlen;
} parse_ctx;

const char *sw_config_strerror(int err) {
  switch (err) {
  case SW_CONFIG_E_OK:
    return "ok";
  case SW_CONFIG_E_NOMEM:
    return "out of memory";
  case SW_CONFIG_E_IO:
    return "configuration file unreadable";
  case SW_CONFIG_E_INVALID:
    return "invalid configuration";
  default:
    return "unknown configuration error";
  }
}

/* ---------------------------------------------------------------- errors */

/* Records the first error as "PATH:LINE: [section] key: message" (section and key optional). */
__attribute__((format(printf, 5, 6))) static void
cfg_error(parse_ctx *c, int line, const char *section, const char *key, const char *fmt, ...) {
  if (c->status)
    return;
  c->status = SW_CONFIG_E_INVALID;
  if (!c->err || !c->errlen)
    return;
  int off;
  if (section && key)
    off = snprintf(c->err, c->errlen, "%s:%d: [%s] %s: ", c->path, line, section, key);
  else if (section)
    off = snprintf(c->err, c->errlen, "%s:%d: [%s]: ", c->path, line, section);
  else if (key)
    off = snprintf(c->err, c->errlen, "%s:%d: %s: ", c->path, line, key);
  else
    off = snprintf(c->err, c->errlen, "%s:%d: ", c->path, line);
  if (off < 0 || (size_t)off >= c->errlen)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->err + off, c->errlen - (size_t)off, fmt, ap);
  va_end(ap);
}

/* An error in the current section, at the current line. */
#define key_error(c, key, ...) cfg_error((c), (c)->lineno, (c)->label, (key), __VA_ARGS__)

static void oom(parse_ctx *c) {
  if (c->status)
    return;
  c->status = SW_CONFIG_E_NOMEM;
  if (c->err && c->errlen)
    snprintf(c->err, c->errlen, "%s: out of memory", c->path);
}

/* ---------------------------------------------------------------- value parsers */

/* Parses a decimal u64 (digits only). 0 ok, -1 not a number, -2 larger than UINT64_MAX. */
static int parse_u64(const char *s, uint64_t *out) {
  uint64_t v = 0;
  if (!*s)
    return -1;
  for (const char *p = s; *p; p++) {
    if (*p < '0' || *p > '9')
      return -1;
    unsigned d = (unsigned)(*p - '0');
    if (v > (UINT64_MAX - d) / 10)
      return -2;
    v = v * 10 + d;
  }
  *out = v;
  return 0;
}

/* Parses a number in [min, max], reporting errors against key. */
static bool number_in(parse_ctx *c, const char *key, const char *value, uint64_t min, uint64_t max,
                      uint64_t *out) {
  int rc = parse_u64(value, out);
  if (rc == -1) {
    key_error(c, key, "not a number: '%s'", value);
    return false;
  }
  if (rc == -2 || *out < min || *out > max) {
    key_error(c, key, "out of range: %s (allowed %llu..%llu)", value, (unsigned long long)min,
              (unsigned long long)max);
    return false;
  }
  return true;
}

static bool hostname_valid(const char *h) {
  size_t len = strlen(h), label = 0;
  if (len == 0 || len > 253)
    return false;
  for (size_t i = 0; i <= len; i++) {
    char ch = h[i];
    if (ch == '.' || ch == 0) {
      if (label == 0 || label > 63 || h[i - 1] == '-' || h[i - label] == '-')
        return false;
      label = 0;
    } else if (isalnum((unsigned char)ch) || ch == '-') {
      label++;
    } else {
      return false;
    }
  }
  return true;
}

/* Parses "host:port", "[v6]:port"; NULL when fine, else why not. */
static const char *parse_addr(const char *s, sw_config_addr *out) {
  const char *colon;
  char host[sizeof out->host];
  size_t hlen;
  bool v6 = false;
  if (*s == '[') {
    const char *close = strchr(s, ']');
    if (!close)
      return "missing ']' after an IPv6 address";
    if (close[1] != ':')
      return "missing ':PORT'";
    colon = close + 1;
    hlen = (size_t)(close - s - 1);
    if (hlen == 0 || hlen >= sizeof host)
      return "bad IPv6 address";
    memcpy(host, s + 1, hlen);
    v6 = true;
  } else {
    colon = strrchr(s, ':');
    if (!colon)
      return "missing ':PORT'";
    hlen = (size_t)(colon - s);
    if (memchr(s, ':', hlen))
      return "an IPv6 address goes in brackets, e.g. [::1]:7400";
    if (hlen == 0)
      return "missing host";
    if (hlen >= sizeof host)
      return "host name too long";
    memcpy(host, s, hlen);
  }
  host[hlen] = 0;
  unsigned char bin[16];
  if (v6) {
    if (inet_pton(AF_INET6, host, bin) != 1)
      return "bad IPv6 address";
  } else if (strspn(host, "0123456789.") == hlen) {
    if (inet_pton(AF_INET, host, bin) != 1)
      return "bad IPv4 address";
  } else if (!hostname_valid(host)) {
    return "bad host name";
  }
  uint64_t port;
  const char *p = colon + 1;
  if (strlen(p) > 5 || parse_u64(p, &port) || port > 65535)
    return "bad port (0..65535)";
  memcpy(out->host, host, hlen + 1);
  out->port = (uint16_t)port;
  return NULL;
}

static bool addr_loopback(const sw_config_addr *a) {
  unsigned char bin[16];
  if (strcmp(a->host, "localhost") == 0)
    return true;
  if (inet_pton(AF_INET, a->host, bin) == 1)
    return bin[0] == 127;
  if (inet_pton(AF_INET6, a->host, bin) == 1) {
    static const unsigned char one[16] = {[15] = 1};
    return memcmp(bin, one, sizeof one) == 0;
  }
  return false;
}

/* Removes one pair of surrounding double quotes, in place. */
static char *unquote(char *s) {
  size_t len = strlen(s);
  if (len >= 2 && s[0] == '"' && s[len - 1] == '"') {
    s[len - 1] = 0;
    return s + 1;
  }
  return s;
}

/* dir + "/" + name (no doubled slash), malloc'ed. */
static char *path_join(const char *dir, const char *name) {
  size_t ld = strlen(dir), ln = strlen(name);
  while (ld > 1 && dir[ld - 1] == '/')
    ld--;
  bool slash = !(ld == 1 && dir[0] == '/');
  char *s = malloc(ld + slash + ln + 1);
  if (!s)
    return NULL;
  memcpy(s, dir, ld);
  if (slash)
    s[ld] = '/';
  memcpy(s + ld + slash, name, ln + 1);
  return s;
}

/* The absolute directory holding path, malloc'ed; NULL with errno on failure. */
static char *absolute_dir_of(const char *path) {
  const char *slash = strrchr(path, '/');
  char *dir;
  if (!slash)
    dir = strdup(".");
  else if (slash == path)
    dir = strdup("/");
  else
    dir = strndup(path, (size_t)(slash - path));
  if (!dir || dir[0] == '/')
    return dir;
  char cwd[PATH_MAX];
  if (!getcwd(cwd, sizeof cwd)) {
    int e = errno;
    free(dir);
    errno = e;
    return NULL;
  }
  char *abs = strcmp(dir, ".") == 0 ? strdup(cwd) : path_join(cwd, dir);
  free(dir);
  return abs;
}

/* ---------------------------------------------------------------- fixed sections */

static const key_def *find_key(enum section_kind section, const char *name, size_t *index) {
  for (size_t i = 0; i < N_KEYS; i++) {
    if (keys[i].section == section && strcmp(keys[i].name, name) == 0) {
      *index = i;
      return &keys[i];
    }
  }
  return NULL;
}

static void set_string(parse_ctx *c, const key_def *k, char *value) {
  char **slot = (char **)((char *)c->cfg + k->offset);
  value = unquote(value);
  if (!*value) {
    key_error(c, k->name, "empty value");
    return;
  }
  if (strlen(value) >= PATH_MAX) {
    key_error(c, k->name, "path too long");
    return;
  }
  char *copy;
  if (k->type == T_TLS_PATH && value[0] != '/') {
    while (value[0] == '.' && value[1] == '/')
      value += 2;
    copy = path_join(c->base_dir, value);
  } else {
    copy = strdup(value);
  }
  if (!copy) {
    oom(c);
    return;
  }
  free(*slot);
  *slot = copy;
}

static void fixed_key(parse_ctx *c, const char *name, char *value) {
  size_t i;
  const key_def *k = find_key(c->section, name, &i);
  if (!k) {
    key_error(c, name, "unknown key");
    return;
  }
  if (c->key_line[i]) {
    key_error(c, name, "set twice (first at line %d)", c->key_line[i]);
    return;
  }
  c->key_line[i] = c->lineno;
  void *slot = (char *)c->cfg + k->offset;
  uint64_t v;
  switch (k->type) {
  case T_ADDR: {
    sw_config_addr addr;
    const char *why = parse_addr(value, &addr);
    if (why) {
      key_error(c, name, "bad host:port '%s': %s", value, why);
      return;
    }
    if (slot == &c->cfg->metrics_listen && !addr_loopback(&addr)) {
      key_error(c, name,
                "'%s' is not a loopback address (metrics are served over plain HTTP: use "
                "127.0.0.1, [::1] or localhost)",
                value);
      return;
    }
    memcpy(slot, &addr, sizeof addr);
    return;
  }
  case T_STR:
  case T_TLS_PATH:
    set_string(c, k, value);
    return;
  case T_U32:
    if (number_in(c, name, value, k->min, k->max, &v))
      *(uint32_t *)slot = (uint32_t)v;
    return;
  case T_U64:
    if (number_in(c, name, value, k->min, k->max, &v))
      *(uint64_t *)slot = v;
    return;
  case T_LOG_LEVEL: {
    static const char *const levels[] = {"error", "warn", "info", "debug"};
    for (size_t l = 0; l < sizeof levels / sizeof levels[0]; l++) {
      if (strcmp(value, levels[l]) == 0) {
        c->cfg->log_level = (sw_config_log_level)l;
        return;
      }
    }
    key_error(c, name, "unknown log level '%s' (error, warn, info or debug)", value);
    return;
  }
  }
}

/* ---------------------------------------------------------------- participants */

static bool participant_id_valid(const char *id) {
  size_t len = strlen(id);
  if (len < 1 || len > SW_PARTICIPANT_ID_MAX)
    return false;
  return strspn(id, "abcdefghijklmnopqrstuvwxyz0123456789-") == len;
}

/* Starts participant section `id` (already validated). */
static void participant_begin(parse_ctx *c, const char *id) {
  sw_config *cfg = c->cfg;
  for (size_t i = 0; i < cfg->n_participants; i++) {
    if (strcmp(cfg->participants[i].p.id, id) == 0) {
      cfg_error(c, c->lineno, c->label, NULL, "duplicate participant (first at line %d)",
                cfg->participants[i].line);
      return;
    }
  }
  if (cfg->n_participants == SW_CONFIG_MAX_PARTICIPANTS) {
    cfg_error(c, c->lineno, c->label, NULL, "too many participants (at most %d)",
              SW_CONFIG_MAX_PARTICIPANTS);
    return;
  }
  if (cfg->n_participants == c->cap) {
    size_t ncap = c->cap ? c->cap * 2 : 8;
    sw_config_participant *np = realloc(cfg->participants, ncap * sizeof *np);
    if (!np) {
      oom(c);
      return;
    }
    cfg->participants = np;
    pstate *nps = realloc(c->ps, ncap * sizeof *nps);
    if (!nps) {
      oom(c);
      return;
    }
    c->ps = nps;
    c->cap = ncap;
  }
  c->cur = cfg->n_participants++;
  sw_config_participant *cp = &cfg->participants[c->cur];
  memset(cp, 0, sizeof *cp);
  sw_participant_init(&cp->p);
  memcpy(cp->p.id, id, strlen(id) + 1);
  cp->line = c->lineno;
  memset(&c->ps[c->cur], 0, sizeof c->ps[c->cur]);
}

/* Adds the comma-separated items of value to a list key (empty items are skipped). */
static void list_add(parse_ctx *c, const char *key, char *value, enum pkey which) {
  sw_config_participant *cp = &c->cfg->participants[c->cur];
  pstate *ps = &c->ps[c->cur];
  char *save = NULL;
  for (char *item = strtok_r(value, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
    while (isspace((unsigned char)*item))
      item++;
    size_t len = strlen(item);
    while (len && isspace((unsigned char)item[len - 1]))
      item[--len] = 0;
    if (!len)
      continue;
    if (which == PK_CURRENCIES) {
      sw_currency cur;
      if (sw_currency_by_code(item, &cur)) {
        key_error(c, key, "unknown currency '%s'", item);
        return;
      }
      if (sw_participant_currency_index(&cp->p, cur.numeric) >= 0) {
        key_error(c, key, "currency %s listed twice", item);
        return;
      }
      if (cp->p.n_currencies == SW_PARTICIPANT_MAX_CURRENCIES) {
        key_error(c, key, "more than %d currencies", SW_PARTICIPANT_MAX_CURRENCIES);
        return;
      }
      cp->p.currencies[cp->p.n_currencies++] = cur.numeric;
    } else {
      if (len > SW_MSISDN_MAX || strspn(item, "0123456789") != len) {
        key_error(c, key, "bad prefix '%s' (1-%d digits)", item, SW_MSISDN_MAX);
        return;
      }
      for (size_t i = 0; i < cp->p.n_prefixes; i++) {
        if (strcmp(cp->p.msisdn_prefixes[i], item) == 0) {
          key_error(c, key, "prefix %s listed twice", item);
          return;
        }
      }
      if (cp->p.n_prefixes == SW_PARTICIPANT_MAX_PREFIXES) {
        key_error(c, key, "more than %d prefixes", SW_PARTICIPANT_MAX_PREFIXES);
        return;
      }
      ps->prefix_line[cp->p.n_prefixes] = c->lineno;
      memcpy(cp->p.msisdn_prefixes[cp->p.n_prefixes++], item, len + 1);
    }
  }
}

/* net_debit_cap.CUR / initial_deposit.CUR = amount. */
static void amount_key(parse_ctx *c, const char *name, const char *code, char *value, bool is_cap) {
  pstate *ps = &c->ps[c->cur];
  amount_line *list = is_cap ? ps->caps : ps->deposits;
  size_t *n = is_cap ? &ps->n_caps : &ps->n_deposits;
  sw_currency cur;
  if (sw_currency_by_code(code, &cur)) {
    key_error(c, name, "unknown currency '%s'", code);
    return;
  }
  for (size_t i = 0; i < *n; i++) {
    if (list[i].currency.numeric == cur.numeric) {
      key_error(c, name, "set twice (first at line %d)", list[i].line);
      return;
    }
  }
  if (*n == SW_PARTICIPANT_MAX_CURRENCIES) {
    key_error(c, name, "more than %d currencies", SW_PARTICIPANT_MAX_CURRENCIES);
    return;
  }
  uint64_t v;
  if (is_cap && strcmp(value, "unlimited") == 0)
    v = SW_NDC_UNLIMITED;
  else if (!number_in(c, name, value, 0, SW_NDC_UNLIMITED, &v))
    return;
  list[*n] = (amount_line){cur, v, c->lineno};
  (*n)++;
}

/* Checks that key `name` (tracked by *line) is set once, and records it. */
static bool first_time(parse_ctx *c, const char *name, int *line) {
  if (*line) {
    key_error(c, name, "set twice (first at line %d)", *line);
    return false;
  }
  *line = c->lineno;
  return true;
}

static void participant_key(parse_ctx *c, const char *name, char *value) {
  sw_config_participant *cp = &c->cfg->participants[c->cur];
  pstate *ps = &c->ps[c->cur];
  static const char cap_prefix[] = "net_debit_cap.", deposit_prefix[] = "initial_deposit.";
  c->last_pkey = PK_NONE;
  if (strcmp(name, "name") == 0) {
    if (!first_time(c, name, &ps->name_line))
      return;
    value = unquote(value);
    size_t len = strlen(value);
    if (!len) {
      key_error(c, name, "empty value");
      return;
    }
    if (len > SW_PARTICIPANT_NAME_MAX) {
      key_error(c, name, "longer than %d bytes", SW_PARTICIPANT_NAME_MAX);
      return;
    }
    for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
      if (*p < 0x20 || *p == 0x7f) {
        key_error(c, name, "contains a control character");
        return;
      }
    }
    memcpy(cp->p.name, value, len + 1);
    c->last_pkey = PK_NAME;
  } else if (strcmp(name, "currencies") == 0) {
    if (!first_time(c, name, &ps->currencies_line))
      return;
    list_add(c, name, value, PK_CURRENCIES);
    c->last_pkey = PK_CURRENCIES;
  } else if (strcmp(name, "msisdn_prefixes") == 0) {
    if (!first_time(c, name, &ps->prefixes_line))
      return;
    list_add(c, name, value, PK_PREFIXES);
    c->last_pkey = PK_PREFIXES;
  } else if (strcmp(name, "status") == 0) {
    if (!first_time(c, name, &ps->status_line))
      return;
    if (strcmp(value, "active") == 0)
      cp->p.status = SW_PARTICIPANT_ACTIVE;
    else if (strcmp(value, "suspended") == 0)
      cp->p.status = SW_PARTICIPANT_SUSPENDED;
    else
      key_error(c, name, "unknown status '%s' (active or suspended)", value);
    c->last_pkey = PK_STATUS;
  } else if (strncmp(name, cap_prefix, sizeof cap_prefix - 1) == 0) {
    amount_key(c, name, name + sizeof cap_prefix - 1, value, true);
    c->last_pkey = PK_CAP;
  } else if (strncmp(name, deposit_prefix, sizeof deposit_prefix - 1) == 0) {
    amount_key(c, name, name + sizeof deposit_prefix - 1, value, false);
    c->last_pkey = PK_DEPOSIT;
  } else if (strcmp(name, "net_debit_cap") == 0 || strcmp(name, "initial_deposit") == 0) {
    key_error(c, name, "needs a currency, e.g. %s.KES", name);
  } else {
    key_error(c, name, "unknown key");
  }
}

/* ---------------------------------------------------------------- inih callbacks */

static int handler_cb(void *user, const char *section, const char *name, const char *value) {
  parse_ctx *c = user;
  (void)section; /* inih's copy is truncated at 49 bytes; c->section is exact */
  if (c->status)
    return 0;
  bool continuation = c->continuation;
  c->have_name = true;
  char *v = strdup(value);
  if (!v) {
    oom(c);
    return 0;
  }
  if (c->section == SEC_NONE) {
    cfg_error(c, c->lineno, NULL, name,
              "outside any section (put it under [switch], [ledger], [tls] or [participant ID])");
  } else if (continuation && c->section == SEC_PARTICIPANT &&
             (c->last_pkey == PK_CURRENCIES || c->last_pkey == PK_PREFIXES)) {
    list_add(c, name, v, c->last_pkey);
  } else if (continuation) {
    key_error(c, name,
              "this indented line continues its value; only currencies and msisdn_prefixes "
              "may go on over lines (remove the indentation)");
  } else if (c->section == SEC_PARTICIPANT) {
    participant_key(c, name, v);
  } else {
    fixed_key(c, name, v);
  }
  free(v);
  return c->status == 0;
}

/* inih's find_chars_or_comment (default build): the first of chars, or an inline comment
 * (';' after whitespace), or the end. */
static const char *find_chars_or_comment(const char *s, const char *chars) {
  bool was_space = false;
  while (*s && (!chars || !strchr(chars, *s)) &&
         !(was_space && strchr(INI_INLINE_COMMENT_PREFIXES, *s))) {
    was_space = isspace((unsigned char)*s) != 0;
    s++;
  }
  return s;
}

/* A "[name]" line: name is the text between the brackets (len bytes). */
static void section_header(parse_ctx *c, const char *text, size_t len) {
  while (len && isspace((unsigned char)*text)) {
    text++;
    len--;
  }
  while (len && isspace((unsigned char)text[len - 1]))
    len--;
  if (len >= sizeof c->label)
    len = sizeof c->label - 1;
  memcpy(c->label, text, len);
  c->label[len] = 0;
  c->have_name = false;
  c->last_pkey = PK_NONE;
  c->section_line = c->lineno;
  static const char participant[] = "participant";
  int *seen = NULL;
  if (strcmp(c->label, "switch") == 0) {
    c->section = SEC_SWITCH;
    seen = &c->switch_line;
  } else if (strcmp(c->label, "ledger") == 0) {
    c->section = SEC_LEDGER;
    seen = &c->ledger_line;
  } else if (strcmp(c->label, "tls") == 0) {
    c->section = SEC_TLS;
    seen = &c->tls_line;
  } else if (strcmp(c->label, "disburse") == 0) {
    c->section = SEC_DISBURSE;
    seen = &c->disburse_line;
  } else if (strcmp(c->label, "audit") == 0) {
    c->section = SEC_AUDIT;
    seen = &c->audit_line;
  } else if (strncmp(c->label, participant, sizeof participant - 1) == 0 &&
             (c->label[sizeof participant - 1] == 0 ||
              isspace((unsigned char)c->label[sizeof participant - 1]))) {
    const char *id = c->label + sizeof participant - 1;
    while (isspace((unsigned char)*id))
      id++;
    c->section = SEC_PARTICIPANT;
    if (!*id)
      cfg_error(c, c->lineno, c->label, NULL, "missing participant id: write [participant ID]");
    else if (!participant_id_valid(id))
      cfg_error(c, c->lineno, c->label, NULL,
                "bad participant id '%s' (1-%d characters of a-z, 0-9 and '-')", id,
                SW_PARTICIPANT_ID_MAX);
    else
      participant_begin(c, id);
    return;
  } else {
    cfg_error(c, c->lineno, c->label, NULL,
              "unknown section (expected switch, ledger, tls, audit or participant ID)");
    return;
  }
  if (*seen)
    cfg_error(c, c->lineno, c->label, NULL, "section appears twice (first at line %d)", *seen);
  *seen = c->lineno;
}

/* Classifies a line as inih will: comment or blank, continuation, section header, key. */
static void classify(parse_ctx *c, const char *line) {
  const char *start = line;
  c->continuation = false;
  while (*start && isspace((unsigned char)*start))
    start++;
  if (!*start || strchr(INI_START_COMMENT_PREFIXES, *start))
    return;
  if (c->have_name && start > line) {
    c->continuation = true;
    return;
  }
  if (*start == '[') {
    const char *end = find_chars_or_comment(start + 1, "]");
    if (*end != ']')
      cfg_error(c, c->lineno, NULL, NULL, "syntax error: section header without ']'");
    else
      section_header(c, start + 1, (size_t)(end - start - 1));
    return;
  }
  const char *end = find_chars_or_comment(start, "=:");
  if (*end != '=' && *end != ':')
    cfg_error(c, c->lineno, NULL, NULL,
              "syntax error: expected 'key = value', '[section]' or a comment");
  else if (end == start)
    cfg_error(c, c->lineno, NULL, NULL, "syntax error: missing key before '%c'", *end);
}

/* ini_reader: hands inih one physical line per call and counts lines. */
static char *reader_cb(char *str, int num, void *stream) {
  parse_ctx *c = stream;
  if (c->status)
    return NULL;
  errno = 0;
  ssize_t n = getline(&c->buf, &c->bufcap, c->f);
  if (n < 0) {
    if (ferror(c->f)) {
      c->status = SW_CONFIG_E_IO;
      if (c->err && c->errlen)
        snprintf(c->err, c->errlen, "%s:%d: read error: %s", c->path, c->lineno + 1,
                 strerror(errno ? errno : EIO));
    }
    return NULL;
  }
  c->lineno++;
  if (memchr(c->buf, 0, (size_t)n)) {
    cfg_error(c, c->lineno, NULL, NULL, "line contains a NUL byte");
    return NULL;
  }
  size_t len = (size_t)n;
  while (len && (c->buf[len - 1] == '\n' || c->buf[len - 1] == '\r'))
    len--;
  c->buf[len] = 0;
  char *line = c->buf;
  if (c->lineno == 1 && len >= 3 && memcmp(line, "\xEF\xBB\xBF", 3) == 0) {
    line += 3;
    len -= 3;
  }
  if (num < 4 || len > (size_t)num - 3) {
    cfg_error(c, c->lineno, NULL, NULL, "line too long (%zu characters, at most %d)", len,
              num < 4 ? 0 : num - 3);
    return NULL;
  }
  classify(c, line);
  if (c->status)
    return NULL;
  memcpy(str, line, len);
  str[len] = '\n';
  str[len + 1] = 0;
  return str;
}

/* ---------------------------------------------------------------- whole-file checks */

static int last_line(const parse_ctx *c) {
  return c->lineno > 0 ? c->lineno : 1;
}

/* A missing required key of a fixed section. */
static void require_key(parse_ctx *c, enum section_kind section, const char *sname,
                        int section_line, const char *key) {
  size_t i;
  if (!find_key(section, key, &i) || c->key_line[i])
    return;
  if (section_line)
    cfg_error(c, section_line, sname, key, "missing required key");
  else
    cfg_error(c, last_line(c), sname, key, "missing required key (no [%s] section)", sname);
}

static int line_of(const parse_ctx *c, enum section_kind section, const char *key) {
  size_t i;
  return find_key(section, key, &i) ? c->key_line[i] : 0;
}

static bool same_addr(const sw_config_addr *a, const sw_config_addr *b) {
  return a->port != 0 && a->port == b->port && strcmp(a->host, b->host) == 0;
}

static void check_addresses(parse_ctx *c) {
  sw_config *cfg = c->cfg;
  struct {
    const char *name;
    const sw_config_addr *addr;
  } a[] = {{"listen", &cfg->listen},
           {"admin_listen", &cfg->admin_listen},
           {"metrics_listen", &cfg->metrics_listen}};
  for (size_t i = 0; i < 3; i++) {
    for (size_t j = i + 1; j < 3; j++) {
      if (!same_addr(a[i].addr, a[j].addr))
        continue;
      int li = line_of(c, SEC_SWITCH, a[i].name), lj = line_of(c, SEC_SWITCH, a[j].name);
      bool later_j = lj >= li;
      cfg_error(c, later_j ? lj : li, "switch", later_j ? a[j].name : a[i].name,
                "same address as %s (%s:%u)", later_j ? a[i].name : a[j].name, a[i].addr->host,
                (unsigned)a[i].addr->port);
      return;
    }
  }
}

/* Matches net_debit_cap / initial_deposit lines to the participant's currencies. */
static void place_amounts(parse_ctx *c, sw_config_participant *cp, const char *label,
                          const amount_line *list, size_t n, uint64_t *dest, const char *what) {
  for (size_t i = 0; i < n && !c->status; i++) {
    int at = sw_participant_currency_index(&cp->p, list[i].currency.numeric);
    if (at < 0) {
      char key[64];
      snprintf(key, sizeof key, "%s.%s", what, list[i].currency.alpha);
      cfg_error(c, list[i].line, label, key, "%s is not one of this participant's currencies",
                list[i].currency.alpha);
      return;
    }
    dest[at] = list[i].value;
  }
}

static void check_participants(parse_ctx *c) {
  sw_config *cfg = c->cfg;
  for (size_t i = 0; i < cfg->n_participants && !c->status; i++) {
    sw_config_participant *cp = &cfg->participants[i];
    const pstate *ps = &c->ps[i];
    char label[sizeof "participant " + SW_PARTICIPANT_ID_MAX];
    snprintf(label, sizeof label, "participant %s", cp->p.id);
    if (!ps->name_line) {
      cfg_error(c, cp->line, label, "name", "missing required key");
      return;
    }
    if (!ps->currencies_line) {
      cfg_error(c, cp->line, label, "currencies", "missing required key");
      return;
    }
    if (cp->p.n_currencies == 0) {
      cfg_error(c, ps->currencies_line, label, "currencies", "at least one currency is required");
      return;
    }
    place_amounts(c, cp, label, ps->caps, ps->n_caps, cp->p.net_debit_cap, "net_debit_cap");
    place_amounts(c, cp, label, ps->deposits, ps->n_deposits, cp->initial_deposit,
                  "initial_deposit");
    for (size_t k = 0; k < cp->p.n_prefixes && !c->status; k++) {
      for (size_t j = 0; j < i; j++) {
        const sw_participant *other = &cfg->participants[j].p;
        for (size_t m = 0; m < other->n_prefixes; m++) {
          if (strcmp(other->msisdn_prefixes[m], cp->p.msisdn_prefixes[k]) == 0) {
            cfg_error(c, ps->prefix_line[k], label, "msisdn_prefixes",
                      "prefix %s is already routed to participant %s (line %d)",
                      cp->p.msisdn_prefixes[k], other->id, c->ps[j].prefix_line[m]);
            return;
          }
        }
      }
    }
  }
}

static void finish(parse_ctx *c) {
  sw_config *cfg = c->cfg;
  static const char *const tls_required[] = {"ca", "cert", "key"};
  for (size_t i = 0; i < 3 && !c->status; i++)
    require_key(c, SEC_TLS, "tls", c->tls_line, tls_required[i]);
  if (c->status)
    return;
  if (cfg->map_size_max_mb < cfg->map_size_mb) {
    int lmax = line_of(c, SEC_LEDGER, "map_size_max_mb");
    if (lmax)
      cfg_error(c, lmax, "ledger", "map_size_max_mb", "smaller than map_size_mb (%llu)",
                (unsigned long long)cfg->map_size_mb);
    else
      cfg_error(c, line_of(c, SEC_LEDGER, "map_size_mb"), "ledger", "map_size_mb",
                "larger than map_size_max_mb (%llu)", (unsigned long long)cfg->map_size_max_mb);
    return;
  }
  check_addresses(c);
  if (c->status)
    return;
  if (!cfg->directory_secret_file) {
    cfg->directory_secret_file = path_join(cfg->data_dir, "directory.key");
    if (!cfg->directory_secret_file) {
      oom(c);
      return;
    }
  }
  check_participants(c);
}

/* ---------------------------------------------------------------- load and free */

static int set_defaults(sw_config *cfg, const char *path) {
  memset(cfg, 0, sizeof *cfg);
  static const sw_config_addr listen = {"127.0.0.1", 7400}, admin = {"127.0.0.1", 7401},
                              metrics = {"127.0.0.1", 7402};
  cfg->listen = listen;
  cfg->admin_listen = admin;
  cfg->metrics_listen = metrics;
  cfg->max_frame_bytes = 65536;
  cfg->admin_max_frame_bytes = 4194304;
  cfg->max_connections = 1024;
  cfg->max_in_flight = 4096;
  cfg->read_timeout_ms = 10000;
  cfg->max_expiry_ms = 300000;
  cfg->log_level = SW_CONFIG_LOG_INFO;
  cfg->map_size_mb = 64;
  cfg->map_size_max_mb = 1048576;
  cfg->queue_capacity = 65536;
  cfg->batch_max = 8190;
  cfg->disburse_max_attempts = 8;
  cfg->disburse_retry_ms = 1000;
  cfg->disburse_item_expiry_ms = 30000;
  cfg->checkpoint_every = 1000;
  cfg->path = strdup(path);
  cfg->data_dir = strdup("var/tumad");
  return cfg->path && cfg->data_dir ? 0 : SW_CONFIG_E_NOMEM;
}

int sw_config_load(const char *path, sw_config *out, char *err, size_t errlen) {
  if (err && errlen)
    err[0] = 0;
  if (!path || !out) {
    if (err && errlen)
      snprintf(err, errlen, "sw_config_load: no path or output");
    return SW_CONFIG_E_INVALID;
  }
  parse_ctx c;
  memset(&c, 0, sizeof c);
  c.path = path;
  c.err = err;
  c.errlen = errlen;
  c.cfg = out;
  if (set_defaults(out, path)) {
    oom(&c);
    goto done;
  }
  c.base_dir = absolute_dir_of(path);
  if (!c.base_dir) {
    c.status = errno == ENOMEM ? SW_CONFIG_E_NOMEM : SW_CONFIG_E_IO;
    if (err && errlen)
      snprintf(err, errlen, "%s: cannot resolve its directory: %s", path, strerror(errno));
    goto done;
  }
  c.f = fopen(path, "r");
  if (!c.f) {
    c.status = SW_CONFIG_E_IO;
    if (err && errlen)
      snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    goto done;
  }
  int rc = ini_parse_stream(reader_cb, &c, handler_cb, &c);
  if (!c.status && rc == -2)
    oom(&c);
  else if (!c.status && rc != 0)
    cfg_error(&c, rc > 0 ? rc : last_line(&c), NULL, NULL, "syntax error");
  if (!c.status)
    finish(&c);

done:
  if (c.f)
    fclose(c.f);
  free(c.buf);
  free(c.ps);
  free(c.base_dir);
  if (c.status)
    sw_config_free(out);
  return c.status;
}

void sw_config_free(sw_config *cfg) {
  if (!cfg)
    return;
  free(cfg->path);
  free(cfg->data_dir);
  free(cfg->directory_secret_file);
  free(cfg->checkpoint_key);
  free(cfg->tls_ca);
  free(cfg->tls_cert);
  free(cfg->tls_key);
  free(cfg->tls_crl);
  free(cfg->participants);
  memset(cfg, 0, sizeof *cfg);
}
