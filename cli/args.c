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
