/* currency.h — the ISO 4217 currencies the switch knows: alphabetic code, numeric code and
 * minor-unit exponent. Amounts everywhere are unsigned integers in minor units (DESIGN §3); a
 * ledger's number is the currency's ISO numeric code. The table is static and read-only, so
 * every function here may be called from any thread. */
#ifndef TUMA_SW_CURRENCY_H
#define TUMA_SW_CURRENCY_H

#include <stddef.h>
#include <stdint.h>

/* One currency. `name` points into the static table (never freed, valid forever). */
typedef struct sw_currency {
  char alpha[4];    /* "KES", NUL-terminated */
  uint16_t numeric; /* 404 */
  uint8_t exponent; /* minor-unit digits: 2 for KES (cents), 0 for UGX */
  const char *name; /* "Kenyan shilling" */
} sw_currency;

/* Return codes (0 = ok). */
typedef enum sw_currency_error {
  SW_CURRENCY_E_OK = 0,
  SW_CURRENCY_E_INVAL = 1,    /* NULL argument */
  SW_CURRENCY_E_NOTFOUND = 2, /* not a currency of the table */
} sw_currency_error;

/* A static message for a sw_currency_error; never NULL. */
const char *sw_currency_strerror(int err);

/* Finds a currency by its alphabetic code: exactly three upper-case letters ("KES"; "kes" is
 * not found). Copies it to *out. O(table). Errors: SW_CURRENCY_E_INVAL, _NOTFOUND. */
int sw_currency_by_code(const char *alpha, sw_currency *out);

/* Finds a currency by its ISO numeric code (404). Same contract as sw_currency_by_code. */
int sw_currency_by_number(uint32_t numeric, sw_currency *out);

/* The i-th currency of the table, for listing (0 ≤ i < sw_currency_count()); *out as above.
 * SW_CURRENCY_E_NOTFOUND past the end. */
int sw_currency_at(size_t i, sw_currency *out);
size_t sw_currency_count(void);

#endif
