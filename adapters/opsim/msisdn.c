/* msisdn.c — the deterministic MSISDNs of a simulated operator's wallets (msisdn.h). */
#include "msisdn.h"

#include <string.h>

static int all_digits(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (s[i] < '0' || s[i] > '9')
      return 0;
  return 1;
}

uint64_t opsim_msisdn_capacity(const char *prefix, unsigned digits) {
  if (!prefix || digits < OPSIM_MSISDN_MIN_DIGITS || digits > OPSIM_MSISDN_MAX_DIGITS)
    return 0;
  size_t plen = strlen(prefix);
  if (plen == 0 || plen >= digits || !all_digits(prefix, plen))
    return 0;
  uint64_t cap = 1;
  for (size_t i = plen; i < digits; i++)
    cap *= 10; /* at most 10^14: no overflow */
  return cap;
}

int opsim_msisdn_format(const char *prefix, unsigned digits, uint64_t index,
                        char out[OPSIM_MSISDN_LEN]) {
  out[0] = '\0';
  uint64_t cap = opsim_msisdn_capacity(prefix, digits);
  if (cap == 0 || index >= cap)
    return -1;
  size_t plen = strlen(prefix);
  memcpy(out, prefix, plen);
  for (size_t i = digits; i > plen; i--) {
    out[i - 1] = (char)('0' + index % 10);
    index /= 10;
  }
  out[digits] = '\0';
  return 0;
}

int opsim_msisdn_index(const char *prefix, unsigned digits, const char *msisdn, uint64_t *index) {
  if (!msisdn || opsim_msisdn_capacity(prefix, digits) == 0)
    return -1;
  size_t plen = strlen(prefix);
  if (strlen(msisdn) != digits || strncmp(msisdn, prefix, plen) != 0 ||
      !all_digits(msisdn + plen, digits - plen))
    return -1;
  uint64_t v = 0;
  for (size_t i = plen; i < digits; i++)
    v = v * 10 + (uint64_t)(msisdn[i] - '0');
  *index = v;
  return 0;
}

char *opsim_msisdn_mask(const char *msisdn, char *out, size_t cap) {
  if (cap == 0)
    return out;
  size_t n = msisdn ? strlen(msisdn) : 0, k = 0;
  for (; k < n && k + 1 < cap; k++)
    out[k] = n > 5 && (k < 3 || k >= n - 2) ? msisdn[k] : '*';
  out[k] = '\0';
  return out;
}
