/* args.c — the `tuma` command's option parsing and argument validation (cli.h): options as
 * "--name VALUE" or "--name=VALUE", strict whole numbers, participant ids, currency codes,
 * free text, and the masking of party ids in output. */
#include "cli.h"

#include <errno.h>
#include <inttypes.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int cli_opt(int argc, char **argv, int *i, const char *cmd, const char *name, const char **value) {
  const char *word = argv[*i];
  size_t len = strlen(name);
  if (strncmp(word, name, len) != 0)
    return 0;
  if (word[len] == '=') {
    *value = word + len + 1;
    return 1;
  }
  if (word[len] != '\0')
    return 0;
  if (*i + 1 >= argc) {
    fprintf(stderr, "tuma %s: %s needs a value\n", cmd, name);
    return -1;
  }
  *i += 1;
  *value = argv[*i];
  return 1;
}

int cli_flag(char **argv, int i, const char *flag) {
  return strcmp(argv[i], flag) == 0;
}

int cli_is_help(const char *word) {
  return strcmp(word, "--help") == 0 || strcmp(word, "-h") == 0;
}

int cli_parse_u64(const char *cmd, const char *what, const char *text, uint64_t min, uint64_t max,
                  uint64_t *out) {
  /* strtoull alone would accept " 12", "+12", "-1" (as 2^64 - 1) and "12abc". */
  size_t n = strlen(text);
  int digits = n > 0;
  for (size_t k = 0; k < n; k++)
    if (text[k] < '0' || text[k] > '9')
      digits = 0;
  if (!digits) {
    fprintf(stderr, "tuma %s: %s: '%s' is not a whole number (digits only)\n", cmd, what, text);
    return -1;
  }
  errno = 0;
  unsigned long long v = strtoull(text, NULL, 10);
  if (errno == ERANGE || v < min || v > max) {
    fprintf(stderr, "tuma %s: %s: %s is out of range [%" PRIu64 ", %" PRIu64 "]\n", cmd, what, text,
            min, max);
    return -1;
  }
  *out = (uint64_t)v;
  return 0;
}

int cli_parse_int(const char *cmd, const char *what, const char *text, int min, int max, int *out) {
  uint64_t v = 0;
  if (cli_parse_u64(cmd, what, text, (uint64_t)(min < 0 ? 0 : min), (uint64_t)max, &v) != 0)
    return -1;
  *out = (int)v;
  return 0;
}

int cli_participant_id_valid(const char *id) {
  size_t n = 0;
  if (id == NULL || id[0] == '-')
    return 0;
  for (; id[n] != '\0'; n++) {
    char c = id[n];
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
      return 0;
  }
  return n >= 1 && n <= 63;
}

int cli_currency_valid(const char *code) {
  if (code == NULL || strlen(code) != 3)
    return 0;
  for (int k = 0; k < 3; k++)
    if (code[k] < 'A' || code[k] > 'Z')
      return 0;
  return 1;
}

int cli_text_valid(const char *text, size_t max) {
  const unsigned char *p = (const unsigned char *)text;
  size_t n = strlen(text);
  if (n == 0 || n > max)
    return 0;
  for (size_t k = 0; k < n;) {
    unsigned char c = p[k];
    size_t more;
    uint32_t cp;
    if (c < 0x80) {
      if (c < 0x20 || c == 0x7f)
        return 0;
      k++;
      continue;
    }
    if ((c & 0xe0) == 0xc0) {
      more = 1;
      cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      more = 2;
      cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      more = 3;
      cp = c & 0x07;
    } else {
      return 0;
    }
    if (k + more >= n) /* truncated sequence */
      return 0;
    for (size_t m = 1; m <= more; m++) {
      if ((p[k + m] & 0xc0) != 0x80)
        return 0;
      cp = (cp << 6) | (p[k + m] & 0x3f);
    }
    /* Overlong forms, surrogates, beyond U+10FFFF, and C1 controls. */
    static const uint32_t least[4] = {0, 0x80, 0x800, 0x10000};
    if (cp < least[more] || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff ||
        (cp >= 0x80 && cp < 0xa0))
      return 0;
    k += more + 1;
  }
  return 1;
}

char *cli_mask(const char *id, char *out, size_t cap) {
  size_t n = strlen(id);
  if (cap == 0)
    return out;
  size_t k = 0;
  for (; k < n && k + 1 < cap; k++) {
    int keep = n > 5 && (k < 3 || k >= n - 2);
    out[k] = keep ? id[k] : '*';
  }
  out[k] = '\0';
  return out;
}

int cli_parse_hex(const char *text, uint8_t *out, size_t n) {
  if (strlen(text) != 2 * n)
    return -1;
  for (size_t k = 0; k < 2 * n; k++) {
    char c = text[k];
    unsigned d;
    if (c >= '0' && c <= '9')
      d = (unsigned)(c - '0');
    else if (c >= 'a' && c <= 'f')
      d = (unsigned)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F')
      d = (unsigned)(c - 'A' + 10);
    else
      return -1;
    out[k / 2] = (uint8_t)(k % 2 ? (out[k / 2] << 4) | d : d);
  }
  return 0;
}

int cli_all_zero(const uint8_t *b, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (b[i])
      return 0;
  return 1;
}

int cli_new_id(uint8_t out[16]) {
  struct timespec ts;
  if (clock_gettime(CLOCK_REALTIME, &ts) != 0 || RAND_bytes(out + 6, 10) != 1)
    return -1;
  uint64_t ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
  for (int k = 0; k < 6; k++)
    out[k] = (uint8_t)(ms >> (40 - 8 * k));
  out[6] = (uint8_t)(0x70 | (out[6] & 0x0f));
  out[8] = (uint8_t)(0x80 | (out[8] & 0x3f));
  return 0;
}

char *cli_mask_beneficiary(const char *id, char *out, size_t cap) {
  size_t n = strlen(id);
  if (cap == 0)
    return out;
  size_t k = 0;
  for (; k < n && k + 1 < cap; k++) {
    int keep = n >= 8 && (k < 3 || k >= n - 2);
    out[k] = keep ? id[k] : '*';
  }
  out[k] = '\0';
  return out;
}

/* ---- amounts, durations and times ---- */

const char *cli_arg_strerror(int err) {
  switch (err) {
  case CLI_ARG_OK:
    return "ok";
  case CLI_ARG_EEMPTY:
    return "empty";
  case CLI_ARG_ESYNTAX:
    return "not of the expected form";
  case CLI_ARG_EDECIMALS:
    return "more decimals than the currency has";
  case CLI_ARG_ERANGE:
    return "out of range";
  case CLI_ARG_EUNIT:
    return "no unit (s, m, h or d)";
  case CLI_ARG_EDATE:
    return "no such date or time";
  default:
    return "unknown error";
  }
}

static int cli_is_digit(char c) {
  return c >= '0' && c <= '9';
}

/* v * 10 + d, or -1 on overflow. */
static int cli_mul10_add(uint64_t *v, unsigned d) {
  if (*v > (UINT64_MAX - d) / 10)
    return -1;
  *v = *v * 10 + d;
  return 0;
}

int cli_parse_amount(const char *text, unsigned exponent, uint64_t *out) {
  if (text == NULL || text[0] == '\0')
    return CLI_ARG_EEMPTY;
  const char *p = text;
  uint64_t v = 0;
  size_t whole = 0, frac = 0;
  int overflow = 0;
  for (; cli_is_digit(*p); p++, whole++)
    overflow |= cli_mul10_add(&v, (unsigned)(*p - '0')) != 0;
  if (whole == 0)
    return CLI_ARG_ESYNTAX; /* a sign, a leading '.', a space … */
  if (*p == '.') {
    p++;
    for (; cli_is_digit(*p); p++, frac++)
      if (frac < exponent)
        overflow |= cli_mul10_add(&v, (unsigned)(*p - '0')) != 0;
    if (frac == 0)
      return CLI_ARG_ESYNTAX; /* "12." */
  }
  if (*p != '\0')
    return CLI_ARG_ESYNTAX; /* an exponent, a unit, a second '.' … */
  if (frac > exponent)
    return CLI_ARG_EDECIMALS;
  for (size_t k = frac; k < exponent; k++)
    overflow |= cli_mul10_add(&v, 0) != 0;
  if (overflow)
    return CLI_ARG_ERANGE;
  *out = v;
  return CLI_ARG_OK;
}

char *cli_format_amount(uint64_t minor, unsigned exponent, char *buf, size_t cap) {
  uint64_t scale = 1;
  for (unsigned k = 0; k < exponent && k < 19; k++)
    scale *= 10;
  if (exponent == 0 || exponent >= 20)
    snprintf(buf, cap, "%" PRIu64, minor);
  else
    snprintf(buf, cap, "%" PRIu64 ".%0*" PRIu64, minor / scale, (int)exponent, minor % scale);
  return buf;
}

int cli_parse_duration(const char *text, uint64_t *out_ms) {
  if (text == NULL || text[0] == '\0')
    return CLI_ARG_EEMPTY;
  const char *p = text;
  uint64_t v = 0;
  size_t digits = 0;
  int overflow = 0;
  for (; cli_is_digit(*p); p++, digits++)
    overflow |= cli_mul10_add(&v, (unsigned)(*p - '0')) != 0;
  if (digits == 0)
    return CLI_ARG_ESYNTAX;
  uint64_t unit;
  switch (*p) {
  case 's':
    unit = 1000u;
    break;
  case 'm':
    unit = 60u * 1000u;
    break;
  case 'h':
    unit = 3600u * 1000u;
    break;
  case 'd':
    unit = 86400u * 1000u;
    break;
  case '\0':
    return CLI_ARG_EUNIT;
  default:
    return cli_is_digit(*p) ? CLI_ARG_ESYNTAX : CLI_ARG_EUNIT;
  }
  if (p[1] != '\0')
    return CLI_ARG_EUNIT; /* "10ms", "1h30m" */
  if (overflow || v > UINT64_MAX / unit)
    return CLI_ARG_ERANGE;
  *out_ms = v * unit;
  return CLI_ARG_OK;
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian; H. Hinnant's days_from_civil). */
static int64_t cli_days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = (unsigned)(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? (unsigned)-3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + (int64_t)doe - 719468;
}

/* Reads exactly n digits at *p into *v and advances; -1 if they are not there. */
static int cli_fixed_digits(const char **p, int n, unsigned *v) {
  unsigned r = 0;
  for (int k = 0; k < n; k++) {
    if (!cli_is_digit((*p)[k]))
      return -1;
    r = r * 10 + (unsigned)((*p)[k] - '0');
  }
  *p += n;
  *v = r;
  return 0;
}

int cli_parse_time(const char *text, uint64_t now_ms, uint64_t *out_ms) {
  if (text == NULL || text[0] == '\0')
    return CLI_ARG_EEMPTY;
  if (strcmp(text, "now") == 0) {
    *out_ms = now_ms;
    return CLI_ARG_OK;
  }
  if (text[0] == '+') {
    uint64_t d = 0;
    int rc = cli_parse_duration(text + 1, &d);
    if (rc != CLI_ARG_OK)
      return rc;
    if (d > UINT64_MAX - now_ms)
      return CLI_ARG_ERANGE;
    *out_ms = now_ms + d;
    return CLI_ARG_OK;
  }
  const char *p = text;
  unsigned y, mo, d, h, mi, s, ms = 0;
  if (cli_fixed_digits(&p, 4, &y) || *p++ != '-' || cli_fixed_digits(&p, 2, &mo) || *p++ != '-' ||
      cli_fixed_digits(&p, 2, &d) || (*p != 'T' && *p != 't'))
    return CLI_ARG_ESYNTAX;
  p++;
  if (cli_fixed_digits(&p, 2, &h) || *p++ != ':' || cli_fixed_digits(&p, 2, &mi) || *p++ != ':' ||
      cli_fixed_digits(&p, 2, &s))
    return CLI_ARG_ESYNTAX;
  if (*p == '.') {
    p++;
    int n = 0;
    for (; cli_is_digit(*p); p++, n++)
      if (n < 3)
        ms = ms * 10 + (unsigned)(*p - '0');
    if (n == 0 || n > 3)
      return CLI_ARG_ESYNTAX;
    for (; n < 3; n++)
      ms *= 10;
  }
  if ((*p != 'Z' && *p != 'z') || p[1] != '\0')
    return CLI_ARG_ESYNTAX; /* offsets other than Z are not taken: say UTC */
  static const unsigned mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] ||
      (mo == 2 && d == 29 && !leap) || h > 23 || mi > 59 || s > 59)
    return CLI_ARG_EDATE;
  int64_t days = cli_days_from_civil((int64_t)y, mo, d);
  *out_ms = (((uint64_t)days * 24 + h) * 60 + mi) * 60000u + (uint64_t)s * 1000u + ms;
  return CLI_ARG_OK;
}

char *cli_format_time(uint64_t ms, char *buf, size_t cap) {
  time_t t = (time_t)(ms / 1000);
  struct tm tm;
  if (gmtime_r(&t, &tm) == NULL) {
    snprintf(buf, cap, "?");
    return buf;
  }
  snprintf(buf, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900, tm.tm_mon + 1,
           tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned)(ms % 1000));
  return buf;
}

uint64_t cli_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}
