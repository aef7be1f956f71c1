/* bench_args.c — command-line option parsing shared by tuma-bench's subcommands: options as
 * "--name VALUE" or "--name=VALUE", and strict whole-number parsing with ranges. */
#include "bench.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int bench_opt(int argc, char **argv, int *i, const char *cmd, const char *name,
              const char **value) {
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
    fprintf(stderr, "tuma-bench %s: %s needs a value\n", cmd, name);
    return -1;
  }
  *i += 1;
  *value = argv[*i];
  return 1;
}

int bench_parse_u64(const char *cmd, const char *name, const char *text, uint64_t min, uint64_t max,
                    uint64_t *out) {
  /* strtoull alone would accept " 12", "+12", "-1" (as 2^64 - 1) and "12abc". */
  int ok = text[0] >= '0' && text[0] <= '9';
  unsigned long long v = 0;
  if (ok) {
    char *end = NULL;
    errno = 0;
    v = strtoull(text, &end, 10);
    ok = end != text && *end == '\0' && (errno == 0 || errno == ERANGE);
  }
  if (ok && errno == ERANGE) {
    fprintf(stderr, "tuma-bench %s: %s: %s is out of range [%" PRIu64 ", %" PRIu64 "]\n", cmd, name,
            text, min, max);
    return -1;
  }
  if (!ok) {
    fprintf(stderr, "tuma-bench %s: %s: '%s' is not a whole number\n", cmd, name, text);
    return -1;
  }
  if (v < min || v > max) {
    fprintf(stderr, "tuma-bench %s: %s: %s is out of range [%" PRIu64 ", %" PRIu64 "]\n", cmd, name,
            text, min, max);
    return -1;
  }
  *out = (uint64_t)v;
  return 0;
}
