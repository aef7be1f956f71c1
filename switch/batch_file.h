/* batch_file.h — the reader of the CSV files programme managers upload (switch/DISBURSE.md):
 * the disbursement list (SW_BATCH_FILE_LIST: who gets how much) and the beneficiary
 * registration file (SW_BATCH_FILE_REGISTER: which MSISDN / operator serves a beneficiary).
 *
 * Format: RFC 4180 CSV in UTF-8, comma separated, one header row, LF or CRLF line ends (a lone
 * CR ends a line too), quoted fields with "" escapes; a UTF-8 byte-order mark at the very start
 * is skipped; blank lines are skipped; spaces and tabs around every value are removed. libcsv does
 * the CSV syntax (strict mode); this module maps the header to columns, checks every field and
 * hands each record to a callback as a fixed-size sw_batch_row.
 *
 * The reader is incremental: feed it the bytes in pieces of any size (a record, a field or a
 * CRLF may be split anywhere), then finish it. It holds no more than the field being read (at
 * most SW_BATCH_FILE_FIELD_MAX bytes) and the record's sw_batch_row, whatever the input: memory
 * does not grow with hostile input, and nothing is allocated per row.
 *
 * Two kinds of failure:
 *  - a row error (SW_BATCH_FILE_ROW_*): one record breaks a field rule. The record is still
 *    delivered to the callback with row->error set and its line number; reading goes on.
 *  - a file error (SW_BATCH_FILE_E_*): the header is unusable, the bytes are not CSV, a field
 *    or the record count is over the limits, or the callback asked to stop. Reading stops and
 *    the reader is poisoned: every later feed/finish returns the same error and message; only
 *    sw_batch_file_free() is left.
 *
 * The columns and field rules are those of switch/DISBURSE.md ("File formats"). Besides the
 * bare rules: an id of type msisdn may carry a leading '+' (dropped, as for the msisdn column);
 * the currency column is compared case-insensitively; in a REGISTER file the msisdn may not be
 * empty (SW_BATCH_FILE_ROW_MSISDN); text fields must be well-formed UTF-8 without C0/C1
 * control characters or DEL.
 *
 * Threads: a reader is not thread-safe; the functions without a reader are.
 */
#ifndef TUMA_SW_BATCH_FILE_H
#define TUMA_SW_BATCH_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "currency.h"
#include "registry.h"

#define SW_BATCH_FILE_FIELD_MAX 1024    /* bytes of one field, quotes excluded */
#define SW_BATCH_FILE_ROWS_MAX 10000000 /* records of one file, header excluded */
#define SW_BATCH_FILE_REFERENCE_MAX 64  /* bytes of a reference */
#define SW_BATCH_FILE_AGE_BAND_MAX 15   /* characters of an age band */
#define SW_BATCH_FILE_REGION_MAX 48     /* bytes of a region */

typedef enum { SW_BATCH_FILE_LIST = 1, SW_BATCH_FILE_REGISTER = 2 } sw_batch_file_kind;

/* File-level return codes (0 = ok). */
typedef enum sw_batch_file_error {
  SW_BATCH_FILE_E_OK = 0,
  SW_BATCH_FILE_E_NOMEM,     /* allocation failed */
  SW_BATCH_FILE_E_INVAL,     /* bad argument (or a call after finish) */
  SW_BATCH_FILE_E_HEADER,    /* header missing, duplicate, unknown or missing required column —
                                details in the err text */
  SW_BATCH_FILE_E_CSV,       /* libcsv refused the bytes: malformed quoting etc., with line */
  SW_BATCH_FILE_E_TOO_LARGE, /* a field or the row count exceeds the limits */
  SW_BATCH_FILE_E_STOPPED,   /* the row callback returned non-zero */
} sw_batch_file_error;

/* A static message for a sw_batch_file_error; never NULL. */
const char *sw_batch_file_strerror(int err);

/* Row errors: the first broken rule of a record, checked in this order (so a record with a
 * wrong field count reports SW_BATCH_FILE_ROW_FIELDS, and one with a bad id type and a bad
 * amount reports SW_BATCH_FILE_ROW_ID_TYPE). */
typedef enum sw_batch_file_row_error {
  SW_BATCH_FILE_ROW_OK = 0,
  SW_BATCH_FILE_ROW_FIELDS, /* wrong number of fields */
  SW_BATCH_FILE_ROW_ID_TYPE,
  SW_BATCH_FILE_ROW_ID,
  SW_BATCH_FILE_ROW_AMOUNT,
  SW_BATCH_FILE_ROW_CURRENCY,
  SW_BATCH_FILE_ROW_REFERENCE,
  SW_BATCH_FILE_ROW_MSISDN,
  SW_BATCH_FILE_ROW_OPERATOR,
  SW_BATCH_FILE_ROW_SEX,
  SW_BATCH_FILE_ROW_AGE_BAND,
  SW_BATCH_FILE_ROW_REGION,
} sw_batch_file_row_error;

/* A stable short text for a row error, e.g. "malformed amount" — used in validation reports
 * (the table in switch/DISBURSE.md). Never NULL; "unknown row error" outside the enum. */
const char *sw_batch_file_row_strerror(int row_err);

/* One record. Strings are NUL-terminated inside their arrays, with surrounding spaces and tabs
 * removed. When error is non-zero, the field that broke its rule is left empty (0 for numbers)
 * and, for SW_BATCH_FILE_ROW_FIELDS, every field is; the others hold their checked values. */
typedef struct sw_batch_row {
  uint64_t line;    /* 1-based line number where the record starts (header = line 1) */
  int error;        /* SW_BATCH_FILE_ROW_*; when non-zero the other fields may be partial */
  uint32_t id_type; /* SW_PARTY_* */
  char id[SW_PARTY_ID_MAX + 1];
  uint64_t amount; /* minor units (LIST only) */
  char reference[65];
  char msisdn[SW_MSISDN_MAX + 1];              /* "" when absent */
  char operator_id[SW_PARTICIPANT_ID_MAX + 1]; /* "" when absent */
  char sex;                                    /* 'F','M','O','U' */
  char age_band[16];
  char region[49];
} sw_batch_row;

/* Called once per record, in file order; row is borrowed for the call. Return non-zero to stop
 * (the feed or finish in progress then returns SW_BATCH_FILE_E_STOPPED). The callback must not
 * call the reader that called it. */
typedef int (*sw_batch_file_row_cb)(const sw_batch_row *row, void *arg);

typedef struct sw_batch_file sw_batch_file; /* an incremental reader */

/* Creates a reader of a file of `kind`. currency: the programme's currency (borrowed for the
 * reader's life; required for LIST, ignored for REGISTER). cb and arg are kept. One allocation
 * of about 1 KiB, and libcsv's field buffer (SW_BATCH_FILE_FIELD_MAX + 64 bytes) at the first
 * feed.
 * Errors: _INVAL (bad kind, NULL cb / out, LIST without currency), _NOMEM. */
int sw_batch_file_new(sw_batch_file_kind kind, const sw_currency *currency, sw_batch_file_row_cb cb,
                      void *arg, sw_batch_file **out);

/* Feeds the next bytes (any split, even mid-field or mid-CRLF); bytes are borrowed for the call.
 * Calls cb for each complete record. O(n). On error, err[errlen] (when err is not NULL) gets a
 * one-line reason with the line number, e.g. "line 1: unknown column 'amout'". After an error
 * the reader is poisoned. Errors: _INVAL, _HEADER, _CSV, _TOO_LARGE, _STOPPED, _NOMEM. */
int sw_batch_file_feed(sw_batch_file *f, const void *bytes, size_t n, char *err, size_t errlen);

/* Ends the input: the last record without a final newline is delivered; a file without a
 * header row (empty, or only blank lines) is SW_BATCH_FILE_E_HEADER, one that ends inside a
 * quoted field SW_BATCH_FILE_E_CSV. After a successful finish only sw_batch_file_rows() and
 * sw_batch_file_free() are meaningful (feed and finish return _INVAL). Errors as for feed. */
int sw_batch_file_finish(sw_batch_file *f, char *err, size_t errlen);

/* Records delivered so far (not counting the header / empty lines), those with a row error
 * included. 0 for NULL. */
uint64_t sw_batch_file_rows(const sw_batch_file *f);

/* Frees the reader; accepts NULL. */
void sw_batch_file_free(sw_batch_file *f);

/* Lowers the record limit of this reader from SW_BATCH_FILE_ROWS_MAX to max_rows
 * (1..SW_BATCH_FILE_ROWS_MAX): the record after the max_rows-th is SW_BATCH_FILE_E_TOO_LARGE.
 * Errors: _INVAL. */
int sw_batch_file_set_max_rows(sw_batch_file *f, uint64_t max_rows);

/* Parses a decimal amount in major units with `exponent` decimals into minor units: digits,
 * optionally '.' and 1..exponent more digits ("1500", "1500.5", "0.50"); no sign, exponent,
 * spaces or separators, no leading or trailing '.'; at least one minor unit; at most
 * UINT64_MAX minor units. s[0..len) is borrowed and need not be NUL-terminated. O(len).
 * 0 (and *out set) or SW_BATCH_FILE_E_INVAL. Shared with the CLI's --expect-total. */
int sw_batch_file_parse_amount(const char *s, size_t len, unsigned exponent, uint64_t *out);

#endif
