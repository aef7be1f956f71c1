/* fuzz_batch_file.c — libFuzzer target for the CSV files programme managers upload: the
 * disbursement list and beneficiary registration reader (switch/batch_file.h).
 *
 * Input: two bytes choosing where to split (little endian, modulo the rest's length + 1) and the
 * programme currency (the high bits), then the file. The file is read as each kind twice: once
 * in one feed, once in two feeds split at the chosen byte, each piece from a heap copy of
 * exactly its bytes so that ASan sees any read past them. Every delivered row must be
 * well-formed (strings NUL-terminated within their arrays, lines increasing, a known row error;
 * a row without error must satisfy every field rule), and both passes must deliver the same
 * rows and end with the same code and message. Any violation aborts.
 */
#include "batch_file.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                                           \
  do {                                                                                             \
    if (!(cond))                                                                                   \
      abort();                                                                                     \
  } while (0)

/* What one pass saw: a digest of the rows, their count and the last line. */
typedef struct fuzz_pass {
  sw_batch_file_kind kind;
  uint64_t digest, rows, last_line;
} fuzz_pass;

static uint64_t mix(uint64_t h, const void *p, size_t n) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++)
    h = (h ^ b[i]) * 0x100000001b3ull;
  return h;
}

static size_t bounded_len(const char *s, size_t cap) {
  const char *end = memchr(s, 0, cap);
  FUZZ_CHECK(end != NULL);
  return (size_t)(end - s);
}

static bool charset(const char *s, const char *allowed) {
  for (; *s; s++)
    if (!strchr(allowed, *s))
      return false;
  return true;
}

static int row_cb(const sw_batch_row *r, void *arg) {
  fuzz_pass *p = arg;
  size_t id = bounded_len(r->id, sizeof r->id);
  size_t ref = bounded_len(r->reference, sizeof r->reference);
  size_t msisdn = bounded_len(r->msisdn, sizeof r->msisdn);
  size_t op = bounded_len(r->operator_id, sizeof r->operator_id);
  size_t age = bounded_len(r->age_band, sizeof r->age_band);
  size_t region = bounded_len(r->region, sizeof r->region);
  FUZZ_CHECK(r->line > p->last_line && r->line >= 2);
  FUZZ_CHECK(r->error >= SW_BATCH_FILE_ROW_OK && r->error <= SW_BATCH_FILE_ROW_REGION);
  FUZZ_CHECK(r->sex == 'F' || r->sex == 'M' || r->sex == 'O' || r->sex == 'U');
  FUZZ_CHECK(strcmp(sw_batch_file_row_strerror(r->error), "unknown row error") != 0);
  if (r->error == SW_BATCH_FILE_ROW_OK) {
    FUZZ_CHECK(sw_registry_party_valid(r->id_type, r->id) == 0);
    FUZZ_CHECK(charset(r->msisdn, "0123456789"));
    FUZZ_CHECK(charset(r->operator_id, "abcdefghijklmnopqrstuvwxyz0123456789-"));
    FUZZ_CHECK(charset(r->age_band, "0123456789abcdefghijklmnopqrstuvwxyz"
                                    "ABCDEFGHIJKLMNOPQRSTUVWXYZ+-<>"));
    if (p->kind == SW_BATCH_FILE_LIST)
      FUZZ_CHECK(r->amount >= 1);
    else
      FUZZ_CHECK(r->amount == 0 && msisdn >= 1);
  }
  if (r->error == SW_BATCH_FILE_ROW_FIELDS)
    FUZZ_CHECK(id == 0 && ref == 0 && msisdn == 0 && op == 0 && age == 0 && region == 0 &&
               r->amount == 0);
  p->last_line = r->line;
  p->rows++;
  uint64_t h = p->digest;
  h = mix(h, &r->line, sizeof r->line);
  h = mix(h, &r->error, sizeof r->error);
  h = mix(h, &r->id_type, sizeof r->id_type);
  h = mix(h, &r->amount, sizeof r->amount);
  h = mix(h, &r->sex, 1);
  h = mix(h, r->id, id + 1);
  h = mix(h, r->reference, ref + 1);
  h = mix(h, r->msisdn, msisdn + 1);
  h = mix(h, r->operator_id, op + 1);
  h = mix(h, r->age_band, age + 1);
  h = mix(h, r->region, region + 1);
  p->digest = h;
  return 0;
}

/* Feeds a heap copy of exactly data[0..n). */
static int feed_copy(sw_batch_file *f, const uint8_t *data, size_t n, char *err, size_t errlen) {
  uint8_t *copy = malloc(n ? n : 1);
  FUZZ_CHECK(copy);
  if (n)
    memcpy(copy, data, n);
  int rc = sw_batch_file_feed(f, copy, n, err, errlen);
  free(copy);
  return rc;
}

/* Reads data[0..size) fed at [0, split) and [split, size); returns the code, message in err. */
static int fuzz_read(sw_batch_file_kind kind, const sw_currency *cur, const uint8_t *data,
                     size_t size, size_t split, fuzz_pass *p, char *err, size_t errlen) {
  memset(p, 0, sizeof *p);
  p->kind = kind;
  p->last_line = 1;
  sw_batch_file *f = NULL;
  FUZZ_CHECK(sw_batch_file_new(kind, cur, row_cb, p, &f) == 0);
  err[0] = '\0';
  int rc = feed_copy(f, data, split, err, errlen);
  if (!rc)
    rc = feed_copy(f, data + split, size - split, err, errlen);
  if (!rc)
    rc = sw_batch_file_finish(f, err, errlen);
  FUZZ_CHECK(rc >= SW_BATCH_FILE_E_OK && rc <= SW_BATCH_FILE_E_STOPPED);
  FUZZ_CHECK(rc != SW_BATCH_FILE_E_INVAL && rc != SW_BATCH_FILE_E_STOPPED);
  FUZZ_CHECK(sw_batch_file_rows(f) == p->rows);
  if (rc) {
    FUZZ_CHECK(memchr(err, 0, errlen) != NULL && strncmp(err, "line ", 5) == 0);
    /* Poisoned: the same error again. */
    char again[256];
    FUZZ_CHECK(sw_batch_file_finish(f, again, sizeof again) == rc);
    FUZZ_CHECK(strcmp(again, err) == 0);
  }
  sw_batch_file_free(f);
  return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2)
    return 0;
  static const char *const codes[4] = {"KES", "UGX", "TND", "USD"};
  sw_currency cur;
  FUZZ_CHECK(sw_currency_by_code(codes[data[1] >> 6], &cur) == 0);
  size_t want = (size_t)data[0] | (size_t)(data[1] & 0x3f) << 8;
  data += 2;
  size -= 2;
  size_t split = want % (size + 1);

  for (int k = 0; k < 2; k++) {
    sw_batch_file_kind kind = k ? SW_BATCH_FILE_REGISTER : SW_BATCH_FILE_LIST;
    fuzz_pass whole, pieces;
    char err_whole[256], err_pieces[256];
    int rc_whole = fuzz_read(kind, &cur, data, size, size, &whole, err_whole, sizeof err_whole);
    int rc_pieces =
        fuzz_read(kind, &cur, data, size, split, &pieces, err_pieces, sizeof err_pieces);
    FUZZ_CHECK(rc_whole == rc_pieces);
    FUZZ_CHECK(strcmp(err_whole, err_pieces) == 0);
    FUZZ_CHECK(whole.rows == pieces.rows && whole.digest == pieces.digest);
  }
  return 0;
}
