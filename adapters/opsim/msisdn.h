/* msisdn.h — the deterministic MSISDNs of a simulated operator's wallets.
 *
 * Wallet i of an operator with prefix P and length D has the MSISDN P followed by i in decimal,
 * zero-padded so that the whole is D digits (E.164 digits without '+'): with P = "25470" and
 * D = 12, wallet 0 is 254700000000 and wallet 1234 is 254700001234. Any opsim (or test) that
 * knows another's prefix, length and wallet count can therefore address its wallets, and an
 * index at or beyond the count names a wallet that does not exist.
 */
#ifndef TUMA_ADAPTERS_OPSIM_MSISDN_H
#define TUMA_ADAPTERS_OPSIM_MSISDN_H

#include <stddef.h>
#include <stdint.h>

enum {
  OPSIM_MSISDN_MIN_DIGITS = 8,
  OPSIM_MSISDN_MAX_DIGITS = 15, /* E.164 */
  OPSIM_MSISDN_LEN = 16,        /* a buffer for the longest MSISDN and its NUL */
};

/* How many distinct MSISDNs prefix and digits allow: 10^(digits - strlen(prefix)), or 0 when
 * the prefix is not 1 … digits-1 decimal digits or digits is out of range. O(digits). */
uint64_t opsim_msisdn_capacity(const char *prefix, unsigned digits);

/* Writes the MSISDN of index into out. Returns 0, or -1 when index is beyond the capacity (or
 * the prefix is invalid); out is then "". O(digits). */
int opsim_msisdn_format(const char *prefix, unsigned digits, uint64_t index,
                        char out[OPSIM_MSISDN_LEN]);

/* The index of msisdn under prefix and digits: 0 and *index when msisdn has exactly that form
 * (the index may be beyond the caller's wallet count: check it), -1 otherwise. O(digits). */
int opsim_msisdn_index(const char *prefix, unsigned digits, const char *msisdn, uint64_t *index);

/* The masked form for logs: the first 3 and the last 2 characters kept, the others '*'
 * ("254*******34"); ids of 5 characters or fewer are all '*'. Writes at most cap bytes with
 * the NUL into out and returns out. */
char *opsim_msisdn_mask(const char *msisdn, char *out, size_t cap);

#endif
