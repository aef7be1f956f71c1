/* test_batch_file.c — the disbursement list / registration CSV reader (switch/batch_file.h):
 * every field rule and row error, header errors, BOM, CRLF, quoting and line numbers, feeding
 * in any split, empty files, the field and record limits, malformed CSV, stopping, and the
 * example files of switch/examples/. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch_file.h"

#define HEADER                                                                                     \
  "beneficiary_id_type,beneficiary_id,amount,currency,reference,msisdn,operator,sex,age_band,"     \
  "region\n"

typedef struct collected {
  size_t n, cap;
  sw_batch_row *rows;
  size_t stop_after; /* the callback returns 1 after this many rows; 0 = never */
} collected;

static int collect_cb(const sw_batch_row *row, void *arg) {
  collected *c = arg;
  /* Every string is NUL-terminated within its array. */
  cr_assert(memchr(row->id, 0, sizeof row->id));
  cr_assert(memchr(row->reference, 0, sizeof row->reference));
  cr_assert(memchr(row->msisdn, 0, sizeof row->msisdn));
  cr_assert(memchr(row->operator_id, 0, sizeof row->operator_id));
  cr_assert(memchr(row->age_band, 0, sizeof row->age_band));
  cr_assert(memchr(row->region, 0, sizeof row->region));
  if (c->n == c->cap) {
    c->cap = c->cap ? 2 * c->cap : 16;
    c->rows = realloc(c->rows, c->cap * sizeof *c->rows);
    cr_assert(c->rows);
  }
  c->rows[c->n++] = *row;
  return c->stop_after && c->n == c->stop_after;
}

static sw_currency currency(const char *code) {
  sw_currency c;
  cr_assert_eq(sw_currency_by_code(code, &c), 0, "%s", code);
  return c;
}

/* Reads text[0..len) fed in pieces of `piece` bytes (0 = all at once), then finishes. Returns
 * the first non-zero code of feed/finish; the rows go to *out, the message to err. */
static int read_pieces(sw_batch_file_kind kind, const char *code, const void *text, size_t len,
                       size_t piece, collected *out, char *err, size_t errlen) {
  sw_currency cur = currency(code);
  sw_batch_file *f = NULL;
  cr_assert_eq(sw_batch_file_new(kind, &cur, collect_cb, out, &f), 0);
  int rc = 0;
  const char *p = text;
  size_t left = len;
  if (err && errlen)
    err[0] = '\0';
  while (left && !rc) {
    size_t k = piece && piece < left ? piece : left;
    rc = sw_batch_file_feed(f, p, k, err, errlen);
    p += k;
    left -= k;
  }
  if (!rc)
    rc = sw_batch_file_finish(f, err, errlen);
  if (!rc)
    cr_assert_eq(sw_batch_file_rows(f), out->n);
  sw_batch_file_free(f);
  return rc;
}

static int read_list(const char *text, collected *out, char *err, size_t errlen) {
  return read_pieces(SW_BATCH_FILE_LIST, "KES", text, strlen(text), 0, out, err, errlen);
}

static int read_register(const char *text, collected *out, char *err, size_t errlen) {
  return read_pieces(SW_BATCH_FILE_REGISTER, "KES", text, strlen(text), 0, out, err, errlen);
}

/* The checked row of a one-row list whose fields are the good defaults except column `col`,
 * which is `value` written into the CSV as is (so it may carry quotes). */
static const char *good[10] = {"national_id",  "12345678",  "100", "KES",   "ref",
                               "254712345678", "safaricom", "F",   "18-35", "Nairobi"};

static sw_batch_row one_row(int col, const char *value) {
  char text[8192];
  size_t n = (size_t)snprintf(text, sizeof text, "%s", HEADER);
  for (int i = 0; i < 10; i++)
    n += (size_t)snprintf(text + n, sizeof text - n, "%s%s", i ? "," : "",
                          i == col ? value : good[i]);
  snprintf(text + n, sizeof text - n, "\n");
  collected c = {0};
  char err[256];
  cr_assert_eq(read_list(text, &c, err, sizeof err), 0, "%s", err);
  cr_assert_eq(c.n, 1);
  sw_batch_row r = c.rows[0];
  free(c.rows);
  cr_assert_eq(r.line, 2);
  return r;
}

static int field_error(int col, const char *value) {
  return one_row(col, value).error;
}

enum { C_TYPE, C_ID, C_AMOUNT, C_CUR, C_REF, C_MSISDN, C_OP, C_SEX, C_AGE, C_REGION };

/* ---------------------------------------------------------------- a good file */

Test(batch_file, good_row_all_fields) {
  sw_batch_row r = one_row(-1, NULL);
  cr_assert_eq(r.error, SW_BATCH_FILE_ROW_OK);
  cr_assert_eq(r.id_type, SW_PARTY_NATIONAL_ID);
  cr_assert_str_eq(r.id, "12345678");
  cr_assert_eq(r.amount, 10000);
  cr_assert_str_eq(r.reference, "ref");
  cr_assert_str_eq(r.msisdn, "254712345678");
  cr_assert_str_eq(r.operator_id, "safaricom");
  cr_assert_eq(r.sex, 'F');
  cr_assert_str_eq(r.age_band, "18-35");
  cr_assert_str_eq(r.region, "Nairobi");
}

Test(batch_file, required_columns_only_any_order) {
  collected c = {0};
  char err[256];
  cr_assert_eq(read_list(" Reference ,AMOUNT,\"Beneficiary_ID\",beneficiary_id_type\n"
                         "x,1.5,A1,account_id\n",
                         &c, err, sizeof err),
               0, "%s", err);
  cr_assert_eq(c.n, 1);
  cr_assert_eq(c.rows[0].error, 0);
  cr_assert_eq(c.rows[0].amount, 150);
  cr_assert_str_eq(c.rows[0].id, "A1");
  cr_assert_eq(c.rows[0].id_type, SW_PARTY_ACCOUNT_ID);
  cr_assert_str_eq(c.rows[0].reference, "x");
  cr_assert_str_eq(c.rows[0].msisdn, "");
  cr_assert_str_eq(c.rows[0].operator_id, "");
  cr_assert_eq(c.rows[0].sex, 'U');
  free(c.rows);
}

Test(batch_file, header_only_is_an_empty_list) {
  collected c = {0};
  cr_assert_eq(read_list(HEADER, &c, NULL, 0), 0);
  cr_assert_eq(c.n, 0);
  cr_assert_eq(read_list("amount,reference,beneficiary_id,beneficiary_id_type", &c, NULL, 0), 0);
  cr_assert_eq(c.n, 0);
}

Test(batch_file, last_record_without_newline) {
  collected c = {0};
  cr_assert_eq(read_list("beneficiary_id_type,beneficiary_id,amount,reference\n"
                         "msisdn,254700000001,1,a\nmsisdn,254700000002,2,b",
                         &c, NULL, 0),
               0);
  cr_assert_eq(c.n, 2);
  cr_assert_eq(c.rows[1].amount, 200);
  cr_assert_eq(c.rows[1].line, 3);
  cr_assert_str_eq(c.rows[1].reference, "b");
  free(c.rows);
}

/* ---------------------------------------------------------------- header errors */

static void header_error(sw_batch_file_kind kind, const char *text, const char *needle) {
  collected c = {0};
  char err[512];
  int rc = read_pieces(kind, "KES", text, strlen(text), 0, &c, err, sizeof err);
  cr_assert_eq(rc, SW_BATCH_FILE_E_HEADER, "%s: rc %d", text, rc);
  cr_assert(strstr(err, needle), "'%s' lacks '%s'", err, needle);
  cr_assert_eq(c.n, 0);
}

Test(batch_file, header_errors) {
  header_error(SW_BATCH_FILE_LIST, "beneficiary_id_type,beneficiary_id,amout,reference\n",
               "line 1: unknown column 'amout'");
  header_error(SW_BATCH_FILE_LIST,
               "beneficiary_id_type,beneficiary_id,amount,reference,Amount\nx,y,1,r\n",
               "line 1: duplicate column 'amount'");
  header_error(SW_BATCH_FILE_LIST, "beneficiary_id_type,beneficiary_id,reference\n",
               "missing required column 'amount'");
  header_error(SW_BATCH_FILE_LIST, "beneficiary_id,amount\n",
               "missing required columns 'beneficiary_id_type', 'reference'");
  header_error(SW_BATCH_FILE_LIST, "beneficiary_id_type,beneficiary_id,amount,reference,\n",
               "column 5 of the header has no name");
  /* A list column is unknown in a registration file. */
  header_error(SW_BATCH_FILE_REGISTER, "beneficiary_id_type,beneficiary_id,msisdn,amount\n",
               "unknown column 'amount' (a registration file has: beneficiary_id_type, "
               "beneficiary_id, msisdn, operator)");
  header_error(SW_BATCH_FILE_REGISTER, "beneficiary_id_type,beneficiary_id\n",
               "missing required column 'msisdn'");
  /* Blank lines before the header: the error names the header's line. */
  header_error(SW_BATCH_FILE_LIST, "\n\r\n  \nfoo\n", "line 4: unknown column 'foo'");
  /* A control character in a name is shown as '?'. */
  header_error(SW_BATCH_FILE_LIST, "amount\x01,x\n", "unknown column 'amount?'");
}

Test(batch_file, empty_file) {
  collected c = {0};
  char err[256];
  cr_assert_eq(read_list("", &c, err, sizeof err), SW_BATCH_FILE_E_HEADER);
  cr_assert(strstr(err, "no header row"), "%s", err);
  cr_assert_eq(read_list("\n\r\n \n", &c, err, sizeof err), SW_BATCH_FILE_E_HEADER);
  cr_assert(strstr(err, "line 4: no header row"), "%s", err);
  cr_assert_eq(read_list("\xef\xbb\xbf", &c, err, sizeof err), SW_BATCH_FILE_E_HEADER);
  cr_assert_eq(c.n, 0);
}

/* ---------------------------------------------------------------- BOM, CRLF, quoting */

Test(batch_file, bom_is_skipped_in_any_split) {
  const char *text = "\xef\xbb\xbf" HEADER "national_id,1,1,,r,,,,,\n";
  for (size_t piece = 0; piece <= 4; piece++) {
    collected c = {0};
    char err[256];
    cr_assert_eq(
        read_pieces(SW_BATCH_FILE_LIST, "KES", text, strlen(text), piece, &c, err, sizeof err), 0,
        "piece %zu: %s", piece, err);
    cr_assert_eq(c.n, 1);
    cr_assert_eq(c.rows[0].error, 0);
    cr_assert_eq(c.rows[0].line, 2);
    free(c.rows);
  }
  /* Half a BOM is not one: its bytes stay in the first column's name. */
  collected c = {0};
  char err[256];
  cr_assert_eq(read_list("\xef\xbb" HEADER, &c, err, sizeof err), SW_BATCH_FILE_E_HEADER);
  cr_assert(strstr(err, "unknown column '??beneficiary_id_type'"), "%s", err);
  /* A BOM anywhere but the start is data. */
  cr_assert_eq(read_list("\n\xef\xbb\xbf" HEADER, &c, err, sizeof err), SW_BATCH_FILE_E_HEADER);
}

Test(batch_file, crlf_gives_the_same_rows_as_lf) {
  const char *lf = HEADER "national_id,1,1,KES,a,,,,,\n\n\"msisdn\",\"254700000001\",2,,\"b\",,,"
                          "m,,\"Kisumu\"\nrefugee_id,R-1,3,,c,,,,,\n";
  char crlf[1024];
  size_t n = 0;
  for (const char *p = lf; *p; p++) {
    if (*p == '\n')
      crlf[n++] = '\r';
    crlf[n++] = *p;
  }
  crlf[n] = '\0';
  collected a = {0}, b = {0};
  cr_assert_eq(read_list(lf, &a, NULL, 0), 0);
  cr_assert_eq(read_list(crlf, &b, NULL, 0), 0);
  cr_assert_eq(a.n, 3);
  cr_assert_eq(b.n, 3);
  cr_assert_eq(memcmp(a.rows, b.rows, 3 * sizeof *a.rows), 0);
  cr_assert_eq(b.rows[0].line, 2);
  cr_assert_eq(b.rows[1].line, 4);
  cr_assert_eq(b.rows[2].line, 5);
  cr_assert_str_eq(b.rows[1].region, "Kisumu");
  cr_assert_eq(b.rows[1].sex, 'M');
  for (size_t i = 0; i < 3; i++)
    cr_assert_eq(b.rows[i].error, 0, "row %zu: %d", i, b.rows[i].error);
  free(a.rows);
  free(b.rows);
}

Test(batch_file, quoted_fields_and_line_numbers) {
  const char *text =
      HEADER "national_id,1,1,KES,\"a, b\",,,,,\n"                 /* line 2: embedded comma */
             "national_id,2,1,KES,\"say \"\"hi\"\"\",,,,,\n"       /* line 3: embedded quotes */
             "national_id,3,1,KES,\"two\nlines\",,,,,\"x\r\ny\"\n" /* line 4-5: newlines */
             "national_id,4,1,KES,\"\",,,,,\"\"\"\"\n"             /* line 7: empty, one quote */
             "\n"                                                  /* line 8: blank */
             "national_id,5,1,KES,\"  spaced  \"  ,,,,,\n"         /* line 9 */
             "national_id,6,1,KES,\"\n\r\",,,,,\r\n"               /* lines 10-12 */
             "national_id,7,1,KES,last,,,,,\r"                     /* line 13, a lone CR */
             "national_id,8,1,KES,\"x\ry\",,,,,\n"                 /* lines 14-15 */
             "national_id,9,1,KES,end,,,,,\n";                     /* line 16 */
  collected c = {0};
  char err[256];
  cr_assert_eq(read_list(text, &c, err, sizeof err), 0, "%s", err);
  cr_assert_eq(c.n, 9);
  cr_assert_str_eq(c.rows[0].reference, "a, b");
  cr_assert_eq(c.rows[0].line, 2);
  cr_assert_str_eq(c.rows[1].reference, "say \"hi\"");
  cr_assert_eq(c.rows[1].line, 3);
  /* A newline is a control character: a row error, and the lines after stay right. */
  cr_assert_eq(c.rows[2].error, SW_BATCH_FILE_ROW_REFERENCE);
  cr_assert_eq(c.rows[2].line, 4);
  cr_assert_str_eq(c.rows[3].reference, "");
  cr_assert_str_eq(c.rows[3].region, "\"");
  cr_assert_eq(c.rows[3].line, 7);
  cr_assert_str_eq(c.rows[4].reference, "spaced");
  cr_assert_eq(c.rows[4].line, 9);
  cr_assert_eq(c.rows[5].line, 10);
  cr_assert_eq(c.rows[5].error, SW_BATCH_FILE_ROW_REFERENCE);
  cr_assert_eq(c.rows[6].line, 13);
  cr_assert_eq(c.rows[6].error, 0);
  cr_assert_str_eq(c.rows[6].reference, "last");
  cr_assert_eq(c.rows[7].line, 14);
  cr_assert_eq(c.rows[7].error, SW_BATCH_FILE_ROW_REFERENCE);
  cr_assert_eq(c.rows[8].line, 16);
  cr_assert_eq(c.rows[8].error, 0);
  free(c.rows);
}

Test(batch_file, byte_by_byte_equals_one_feed) {
  const char *text = "\xef\xbb\xbf"
                     "Region,beneficiary_id_type,beneficiary_id,amount,reference,sex\r\n"
                     "\"Nai\"\"robi\",national_id,12345678,1500.5,\"a,\r\nb\",F\r\n"
                     "\r\n"
                     ",msisdn,+254700000001,1,x,\r\n"
                     "Mombasa,bogus,1,1,y,male\r\n"
                     "Lamu,refugee_id,R-9,0.01,\"\",o";
  collected a = {0};
  cr_assert_eq(read_pieces(SW_BATCH_FILE_LIST, "KES", text, strlen(text), 0, &a, NULL, 0), 0);
  cr_assert_eq(a.n, 4);
  for (size_t piece = 1; piece <= 7; piece++) {
    collected b = {0};
    cr_assert_eq(read_pieces(SW_BATCH_FILE_LIST, "KES", text, strlen(text), piece, &b, NULL, 0), 0);
    cr_assert_eq(b.n, a.n);
    cr_assert_eq(memcmp(a.rows, b.rows, a.n * sizeof *a.rows), 0, "piece %zu", piece);
    free(b.rows);
  }
  cr_assert_eq(a.rows[0].line, 2);
  cr_assert_eq(a.rows[1].line, 5);
  cr_assert_eq(a.rows[2].line, 6);
  cr_assert_eq(a.rows[3].line, 7);
  cr_assert_str_eq(a.rows[1].id, "254700000001");
  cr_assert_eq(a.rows[2].error, SW_BATCH_FILE_ROW_ID_TYPE);
  cr_assert_eq(a.rows[3].amount, 1);
  free(a.rows);
}

/* ---------------------------------------------------------------- malformed CSV, limits */

Test(batch_file, malformed_quoting_is_a_csv_error) {
  collected c = {0};
  char err[256];
  cr_assert_eq(read_list(HEADER "national_id,1,1,KES,a\"b,,,,,\n", &c, err, sizeof err),
               SW_BATCH_FILE_E_CSV);
  cr_assert(strstr(err, "line 2: malformed CSV"), "%s", err);
  cr_assert_eq(read_list(HEADER "national_id,1,1,KES,\"a\nb\"c,,,,,\n", &c, err, sizeof err),
               SW_BATCH_FILE_E_CSV);
  cr_assert(strstr(err, "line 3: malformed CSV"), "%s", err);
}

Test(batch_file, file_ending_mid_quote) {
  collected c = {0};
  char err[256];
  cr_assert_eq(read_list(HEADER "national_id,1,1,KES,a,,,,,\n\nnational_id,2,1,KES,\"open\n\n", &c,
                         err, sizeof err),
               SW_BATCH_FILE_E_CSV);
  cr_assert(strstr(err, "line 4: the file ends inside a quoted field"), "%s", err);
  cr_assert_eq(c.n, 1);
  free(c.rows);
  c = (collected){0};
  cr_assert_eq(read_list(HEADER "\"", &c, err, sizeof err), SW_BATCH_FILE_E_CSV);
  cr_assert(strstr(err, "line 2:"), "%s", err);
}

static char *big_field_file(size_t n, int quoted) {
  char *text = malloc(n + 256);
  cr_assert(text);
  size_t k = (size_t)sprintf(text, HEADER "national_id,1,1,KES,%s", quoted ? "\"" : "");
  memset(text + k, 'r', n);
  k += n;
  sprintf(text + k, "%s,,,,,\n", quoted ? "\"" : "");
  return text;
}

Test(batch_file, field_over_the_limit) {
  char err[256];
  for (int quoted = 0; quoted < 2; quoted++) {
    /* 1024 bytes are a field (too long for a reference: a row error)… */
    collected c = {0};
    char *text = big_field_file(SW_BATCH_FILE_FIELD_MAX, quoted);
    cr_assert_eq(read_list(text, &c, err, sizeof err), 0, "%s", err);
    cr_assert_eq(c.n, 1);
    cr_assert_eq(c.rows[0].error, SW_BATCH_FILE_ROW_REFERENCE);
    free(c.rows);
    free(text);
    /* …1025 are too large for the file, and so are a million. */
    size_t sizes[] = {SW_BATCH_FILE_FIELD_MAX + 1, SW_BATCH_FILE_FIELD_MAX + 64, 1000000};
    for (size_t i = 0; i < 3; i++) {
      for (size_t piece = 0; piece <= 1000; piece += 1000) {
        c = (collected){0};
        text = big_field_file(sizes[i], quoted);
        cr_assert_eq(
            read_pieces(SW_BATCH_FILE_LIST, "KES", text, strlen(text), piece, &c, err, sizeof err),
            SW_BATCH_FILE_E_TOO_LARGE, "size %zu quoted %d", sizes[i], quoted);
        cr_assert(strstr(err, "line 2: a field is longer than 1024 bytes"), "%s", err);
        cr_assert_eq(c.n, 0);
        free(text);
      }
    }
  }
  /* An over-long header name too. */
  char name[3000];
  memset(name, 'n', 2000);
  strcpy(name + 2000, ",amount\n");
  collected c = {0};
  cr_assert_eq(read_list(name, &c, err, sizeof err), SW_BATCH_FILE_E_TOO_LARGE);
  cr_assert(strstr(err, "line 1: a field is longer"), "%s", err);
}

/* A hostile field is refused as soon as it passes the limit, not when it ends: the reader's
 * memory does not grow with it. */
Test(batch_file, long_field_refused_early) {
  for (int quoted = 0; quoted < 2; quoted++) {
    char *text = big_field_file(1000000, quoted);
    size_t len = strlen(text), start = strlen(HEADER) + 20, off = 0;
    sw_currency kes = currency("KES");
    collected c = {0};
    sw_batch_file *f;
    char err[256];
    cr_assert_eq(sw_batch_file_new(SW_BATCH_FILE_LIST, &kes, collect_cb, &c, &f), 0);
    int rc = 0;
    while (off < len && !rc) {
      size_t k = len - off < 100 ? len - off : 100;
      rc = sw_batch_file_feed(f, text + off, k, err, sizeof err);
      off += k;
    }
    cr_assert_eq(rc, SW_BATCH_FILE_E_TOO_LARGE);
    cr_assert_leq(off, start + SW_BATCH_FILE_FIELD_MAX + 64 + 100, "refused at byte %zu", off);
    sw_batch_file_free(f);
    free(text);
  }
}

Test(batch_file, record_limit) {
  sw_currency kes = currency("KES");
  collected c = {0};
  sw_batch_file *f;
  char err[256];
  cr_assert_eq(sw_batch_file_new(SW_BATCH_FILE_LIST, &kes, collect_cb, &c, &f), 0);
  cr_assert_eq(sw_batch_file_set_max_rows(f, 0), SW_BATCH_FILE_E_INVAL);
  cr_assert_eq(sw_batch_file_set_max_rows(f, SW_BATCH_FILE_ROWS_MAX + 1), SW_BATCH_FILE_E_INVAL);
  cr_assert_eq(sw_batch_file_set_max_rows(f, 2), 0);
  const char *text = HEADER "national_id,1,1,,a,,,,,\nnational_id,2,1,,a,,,,,\n";
  cr_assert_eq(sw_batch_file_feed(f, text, strlen(text), err, sizeof err), 0);
  cr_assert_eq(sw_batch_file_feed(f, "x,y\n", 4, err, sizeof err), SW_BATCH_FILE_E_TOO_LARGE);
  cr_assert(strstr(err, "line 4: more than 2 records"), "%s", err);
  cr_assert_eq(sw_batch_file_rows(f), 2);
  sw_batch_file_free(f);
  free(c.rows);
}

Test(batch_file, stop_and_poison) {
  sw_currency kes = currency("KES");
  collected c = {.stop_after = 1};
  sw_batch_file *f;
  char err[256];
  cr_assert_eq(sw_batch_file_new(SW_BATCH_FILE_LIST, &kes, collect_cb, &c, &f), 0);
  const char *text = HEADER "national_id,1,1,,a,,,,,\nnational_id,2,1,,a,,,,,\n";
  cr_assert_eq(sw_batch_file_feed(f, text, strlen(text), err, sizeof err), SW_BATCH_FILE_E_STOPPED);
  cr_assert_str_eq(err, "line 2: stopped by the row callback");
  cr_assert_eq(c.n, 1);
  err[0] = '\0';
  cr_assert_eq(sw_batch_file_feed(f, "x", 1, err, sizeof err), SW_BATCH_FILE_E_STOPPED);
  cr_assert_str_eq(err, "line 2: stopped by the row callback");
  cr_assert_eq(sw_batch_file_finish(f, err, sizeof err), SW_BATCH_FILE_E_STOPPED);
  cr_assert_eq(c.n, 1);
  sw_batch_file_free(f);
  free(c.rows);
}

Test(batch_file, arguments) {
  sw_currency kes = currency("KES");
  collected c = {0};
  sw_batch_file *f = NULL;
  char err[128];
  cr_assert_eq(sw_batch_file_new(0, &kes, collect_cb, &c, &f), SW_BATCH_FILE_E_INVAL);
  cr_assert_eq(sw_batch_file_new(3, &kes, collect_cb, &c, &f), SW_BATCH_FILE_E_INVAL);
  cr_assert_eq(sw_batch_file_new(SW_BATCH_FILE_LIST, NULL, collect_cb, &c, &f),
               SW_BATCH_FILE_E_INVAL);
  cr_assert_eq(sw_batch_file_new(SW_BATCH_FILE_LIST, &kes, NULL, &c, &f), SW_BATCH_FILE_E_INVAL);
  cr_assert_eq(sw_batch_file_new(SW_BATCH_FILE_LIST, &kes, collect_cb, &c, NULL),
               SW_BATCH_FILE_E_INVAL);
  cr_assert_eq(sw_batch_file_feed(NULL, "x", 1, err, sizeof err), SW_BATCH_FILE_E_INVAL);
  cr_assert_eq(sw_batch_file_finish(NULL, err, sizeof err), SW_BATCH_FILE_E_INVAL);
  cr_assert_eq(sw_batch_file_rows(NULL), 0);
  sw_batch_file_free(NULL);
  /* REGISTER needs no currency. */
  cr_assert_eq(sw_batch_file_new(SW_BATCH_FILE_REGISTER, NULL, collect_cb, &c, &f), 0);
  cr_assert_eq(sw_batch_file_feed(f, NULL, 0, err, sizeof err), 0);
  cr_assert_eq(sw_batch_file_feed(f, NULL, 1, err, sizeof err), SW_BATCH_FILE_E_INVAL);
  cr_assert_eq(sw_batch_file_feed(f, "msisdn,beneficiary_id,beneficiary_id_type", 41, NULL, 0), 0);
  cr_assert_eq(sw_batch_file_finish(f, err, sizeof err), 0);
  cr_assert_eq(sw_batch_file_feed(f, "x", 1, err, sizeof err), SW_BATCH_FILE_E_INVAL);
  cr_assert_eq(sw_batch_file_finish(f, err, sizeof err), SW_BATCH_FILE_E_INVAL);
  sw_batch_file_free(f);
}

Test(batch_file, strerror_texts) {
  for (int e = 0; e <= SW_BATCH_FILE_E_STOPPED + 1; e++)
    cr_assert(sw_batch_file_strerror(e) != NULL);
  cr_assert_str_eq(sw_batch_file_row_strerror(SW_BATCH_FILE_ROW_AMOUNT), "malformed amount");
  for (int a = 0; a <= SW_BATCH_FILE_ROW_REGION; a++)
    for (int b = a + 1; b <= SW_BATCH_FILE_ROW_REGION + 1; b++)
      cr_assert_str_neq(sw_batch_file_row_strerror(a), sw_batch_file_row_strerror(b));
  cr_assert_str_eq(sw_batch_file_row_strerror(99), "unknown row error");
}

/* ---------------------------------------------------------------- field rules */

Test(batch_file, wrong_field_count) {
  collected c = {0};
  cr_assert_eq(read_list(HEADER "national_id,1,1,KES,a,,,,\n"   /* 9 */
                                "national_id,1,1,KES,a,,,,,,\n" /* 11 */
                                "\"\"\n"                        /* 1 */
                                ",,,,,,,,,\n",                  /* 10 empty */
                         &c, NULL, 0),
               0);
  cr_assert_eq(c.n, 4);
  for (size_t i = 0; i < 3; i++) {
    cr_assert_eq(c.rows[i].error, SW_BATCH_FILE_ROW_FIELDS, "row %zu", i);
    cr_assert_str_eq(c.rows[i].id, "");
    cr_assert_eq(c.rows[i].line, 2 + i);
  }
  cr_assert_eq(c.rows[3].error, SW_BATCH_FILE_ROW_ID_TYPE);
  free(c.rows);
}

Test(batch_file, id_type) {
  const struct {
    const char *s;
    uint32_t type;
  } ok[] = {{"national_id", SW_PARTY_NATIONAL_ID},
            {"Refugee_ID", SW_PARTY_REFUGEE_ID},
            {"MSISDN", SW_PARTY_MSISDN},
            {" account_id ", SW_PARTY_ACCOUNT_ID},
            {"\"business_id\"", SW_PARTY_BUSINESS_ID}};
  for (size_t i = 0; i < 5; i++) {
    const char *id = ok[i].type == SW_PARTY_MSISDN ? "254700000001" : "A-1";
    char line[512];
    snprintf(line, sizeof line, HEADER "%s,%s,1,,,,,,,\n", ok[i].s, id);
    collected c = {0};
    cr_assert_eq(read_list(line, &c, NULL, 0), 0);
    cr_assert_eq(c.rows[0].error, 0, "%s", ok[i].s);
    cr_assert_eq(c.rows[0].id_type, ok[i].type);
    free(c.rows);
  }
  const char *bad[] = {"", "passport", "national id", "nationalid", "national_id_", "1"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    sw_batch_row r = one_row(C_TYPE, bad[i]);
    cr_assert_eq(r.error, SW_BATCH_FILE_ROW_ID_TYPE, "'%s'", bad[i]);
    cr_assert_eq(r.id_type, 0);
    /* The other fields are still checked and filled. */
    cr_assert_str_eq(r.id, "12345678");
    cr_assert_eq(r.amount, 10000);
  }
}

Test(batch_file, id) {
  cr_assert_str_eq(one_row(C_ID, "  ID 42  ").id, "ID 42");
  cr_assert_str_eq(one_row(C_ID, "\"Nyambura Wanjiru\"").id, "Nyambura Wanjiru");
  cr_assert_str_eq(one_row(C_ID, "\xc3\xa9l\xc3\xa8ve").id, "\xc3\xa9l\xc3\xa8ve");
  char max[SW_PARTY_ID_MAX + 2];
  memset(max, 'x', SW_PARTY_ID_MAX + 1);
  max[SW_PARTY_ID_MAX] = '\0';
  cr_assert_eq(field_error(C_ID, max), 0);
  max[SW_PARTY_ID_MAX] = 'x';
  max[SW_PARTY_ID_MAX + 1] = '\0';
  cr_assert_eq(field_error(C_ID, max), SW_BATCH_FILE_ROW_ID);
  const char *bad[] = {"",     "   ",      "\"a\tb\"",     "\"a\nb\"", "a\x7f",
                       "\xc3", "\xc0\xaf", "\xed\xa0\x80", "\xc2\x85", "\xf5\x80\x80\x80"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    sw_batch_row r = one_row(C_ID, bad[i]);
    cr_assert_eq(r.error, SW_BATCH_FILE_ROW_ID, "case %zu", i);
    cr_assert_str_eq(r.id, "");
  }
  /* An MSISDN id is 1..15 digits; a leading '+' is dropped. */
  collected c = {0};
  cr_assert_eq(read_list(HEADER "msisdn,+254700000001,1,,,,,,,\n"
                                "msisdn,2547-0000001,1,,,,,,,\n"
                                "msisdn,2547000000011111,1,,,,,,,\n"
                                "msisdn,+,1,,,,,,,\n",
                         &c, NULL, 0),
               0);
  cr_assert_eq(c.rows[0].error, 0);
  cr_assert_str_eq(c.rows[0].id, "254700000001");
  for (size_t i = 1; i < 4; i++)
    cr_assert_eq(c.rows[i].error, SW_BATCH_FILE_ROW_ID, "row %zu", i);
  free(c.rows);
}

static int amount(const char *s, unsigned exponent, uint64_t *out) {
  return sw_batch_file_parse_amount(s, strlen(s), exponent, out);
}

Test(batch_file, parse_amount) {
  const struct {
    const char *s;
    unsigned e;
    uint64_t v;
  } ok[] = {{"1500", 2, 150000},
            {"1500.5", 2, 150050},
            {"1500.50", 2, 150050},
            {"0.01", 2, 1},
            {"007", 0, 7},
            {"1", 3, 1000},
            {"1.234", 3, 1234},
            {"18446744073709551615", 0, UINT64_MAX},
            {"184467440737095516.15", 2, UINT64_MAX},
            {"184467440737095516", 2, 18446744073709551600u}};
  for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
    uint64_t v = 0;
    cr_assert_eq(amount(ok[i].s, ok[i].e, &v), 0, "%s", ok[i].s);
    cr_assert_eq(v, ok[i].v, "%s", ok[i].s);
  }
  const struct {
    const char *s;
    unsigned e;
  } bad[] = {{"", 2},
             {"0", 2},
             {"0.00", 2},
             {"1500.505", 2},
             {"1.0", 0},
             {"1.", 2},
             {".5", 2},
             {"-1", 2},
             {"+1", 2},
             {"1e3", 2},
             {"1,000", 2},
             {"1 000", 2},
             {" 1", 2},
             {"1..2", 2},
             {"1.2.3", 3},
             {"0x10", 2},
             {"18446744073709551616", 0},
             {"184467440737095516.16", 2},
             {"1", 20},
             {"99999999999999999999999", 0}};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    uint64_t v = 42;
    cr_assert_eq(amount(bad[i].s, bad[i].e, &v), SW_BATCH_FILE_E_INVAL, "%s", bad[i].s);
    cr_assert_eq(v, 42);
  }
  uint64_t v;
  cr_assert_eq(sw_batch_file_parse_amount("12", 1, 0, &v), 0); /* not NUL-terminated */
  cr_assert_eq(v, 1);
  cr_assert_eq(sw_batch_file_parse_amount("1\0", 2, 0, &v), SW_BATCH_FILE_E_INVAL);
  cr_assert_eq(sw_batch_file_parse_amount(NULL, 1, 0, &v), SW_BATCH_FILE_E_INVAL);
  cr_assert_eq(sw_batch_file_parse_amount("1", 1, 0, NULL), SW_BATCH_FILE_E_INVAL);
}

Test(batch_file, amount_field) {
  cr_assert_eq(one_row(C_AMOUNT, " 1500.5 ").amount, 150050);
  cr_assert_eq(one_row(C_AMOUNT, "\"2\"").amount, 200);
  const char *bad[] = {"", "0", "\"1,5\"", "\"1,000\"", "1.505", "-5", "abc", "1e2"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    sw_batch_row r = one_row(C_AMOUNT, bad[i]);
    cr_assert_eq(r.error, SW_BATCH_FILE_ROW_AMOUNT, "'%s'", bad[i]);
    cr_assert_eq(r.amount, 0);
  }
  /* The exponent is the programme currency's: UGX has none. */
  const char *text = "beneficiary_id_type,beneficiary_id,amount,reference\n"
                     "national_id,1,5000,\nnational_id,1,5000.5,\n";
  collected c = {0};
  cr_assert_eq(read_pieces(SW_BATCH_FILE_LIST, "UGX", text, strlen(text), 0, &c, NULL, 0), 0);
  cr_assert_eq(c.rows[0].amount, 5000);
  cr_assert_eq(c.rows[1].error, SW_BATCH_FILE_ROW_AMOUNT);
  free(c.rows);
}

Test(batch_file, currency_field) {
  cr_assert_eq(field_error(C_CUR, "KES"), 0);
  cr_assert_eq(field_error(C_CUR, ""), 0);
  cr_assert_eq(field_error(C_CUR, " kes "), 0);
  const char *bad[] = {"UGX", "KE", "KESS", "K\x01S", "404"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    cr_assert_eq(field_error(C_CUR, bad[i]), SW_BATCH_FILE_ROW_CURRENCY, "'%s'", bad[i]);
}

Test(batch_file, reference_field) {
  char s[80];
  memset(s, 'r', 64);
  s[64] = '\0';
  cr_assert_str_eq(one_row(C_REF, s).reference, s);
  cr_assert_str_eq(one_row(C_REF, "").reference, "");
  cr_assert_str_eq(one_row(C_REF, "\"Cash, \"\"March\"\" \xe2\x82\xac\"").reference,
                   "Cash, \"March\" \xe2\x82\xac");
  strcat(s, "r");
  const char *bad[] = {s, "\"a\tb\"", "a\x1b[31m", "\xff"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    sw_batch_row r = one_row(C_REF, bad[i]);
    cr_assert_eq(r.error, SW_BATCH_FILE_ROW_REFERENCE, "case %zu", i);
    cr_assert_str_eq(r.reference, "");
  }
}

Test(batch_file, msisdn_field) {
  cr_assert_str_eq(one_row(C_MSISDN, "+254712345678").msisdn, "254712345678");
  cr_assert_str_eq(one_row(C_MSISDN, "").msisdn, "");
  cr_assert_str_eq(one_row(C_MSISDN, "123456789012345").msisdn, "123456789012345");
  const char *bad[] = {"1234567890123456", "+", "254 712", "0712-345678", "++254", "abc"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    sw_batch_row r = one_row(C_MSISDN, bad[i]);
    cr_assert_eq(r.error, SW_BATCH_FILE_ROW_MSISDN, "'%s'", bad[i]);
    cr_assert_str_eq(r.msisdn, "");
  }
}

Test(batch_file, operator_field) {
  char id[70];
  memset(id, 'a', 63);
  id[63] = '\0';
  cr_assert_str_eq(one_row(C_OP, id).operator_id, id);
  cr_assert_str_eq(one_row(C_OP, "mtn-ug-2").operator_id, "mtn-ug-2");
  cr_assert_str_eq(one_row(C_OP, "").operator_id, "");
  strcat(id, "a");
  const char *bad[] = {id, "Safaricom", "mtn_ug", "mtn ug", "m.pesa"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    sw_batch_row r = one_row(C_OP, bad[i]);
    cr_assert_eq(r.error, SW_BATCH_FILE_ROW_OPERATOR, "'%s'", bad[i]);
    cr_assert_str_eq(r.operator_id, "");
  }
}

Test(batch_file, sex_field) {
  const struct {
    const char *s;
    char c;
  } ok[] = {{"", 'U'},  {"f", 'F'},     {"Female", 'F'}, {"M", 'M'},      {"MALE", 'M'},
            {"o", 'O'}, {"other", 'O'}, {"U", 'U'},      {"unknown", 'U'}};
  for (size_t i = 0; i < sizeof ok / sizeof *ok; i++)
    cr_assert_eq(one_row(C_SEX, ok[i].s).sex, ok[i].c, "'%s'", ok[i].s);
  const char *bad[] = {"x", "fem", "man", "1", "females"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    sw_batch_row r = one_row(C_SEX, bad[i]);
    cr_assert_eq(r.error, SW_BATCH_FILE_ROW_SEX, "'%s'", bad[i]);
    cr_assert_eq(r.sex, 'U');
  }
}

Test(batch_file, age_band_field) {
  const char *ok[] = {"", "18-35", "60+", "<18", ">65", "ADULT", "123456789012345"};
  for (size_t i = 0; i < sizeof ok / sizeof *ok; i++)
    cr_assert_str_eq(one_row(C_AGE, ok[i]).age_band, ok[i]);
  const char *bad[] = {"1234567890123456", "18 - 35", "18_35", "\"18,35\"", "\xc3\xa9"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    sw_batch_row r = one_row(C_AGE, bad[i]);
    cr_assert_eq(r.error, SW_BATCH_FILE_ROW_AGE_BAND, "'%s'", bad[i]);
    cr_assert_str_eq(r.age_band, "");
  }
}

Test(batch_file, region_field) {
  char s[60];
  memset(s, 'z', 48);
  s[48] = '\0';
  cr_assert_str_eq(one_row(C_REGION, s).region, s);
  cr_assert_str_eq(one_row(C_REGION, "").region, "");
  cr_assert_str_eq(one_row(C_REGION, "\"Nairobi, West\"").region, "Nairobi, West");
  cr_assert_str_eq(one_row(C_REGION, "Murang\xe2\x80\x99"
                                     "a")
                       .region,
                   "Murang\xe2\x80\x99"
                   "a");
  strcat(s, "z");
  const char *bad[] = {s, "\"a\r\nb\"", "a\x01", "\xe2\x80"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    sw_batch_row r = one_row(C_REGION, bad[i]);
    cr_assert_eq(r.error, SW_BATCH_FILE_ROW_REGION, "case %zu", i);
    cr_assert_str_eq(r.region, "");
  }
}

Test(batch_file, first_broken_rule_wins) {
  collected c = {0};
  cr_assert_eq(read_list(HEADER "bogus,1,abc,UGX,,,,,,\n"
                                "national_id,1,abc,UGX,,,BAD,,,\n"
                                "national_id,1,1,KES,,x,BAD,z,!,\n",
                         &c, NULL, 0),
               0);
  cr_assert_eq(c.rows[0].error, SW_BATCH_FILE_ROW_ID_TYPE);
  cr_assert_eq(c.rows[1].error, SW_BATCH_FILE_ROW_AMOUNT);
  cr_assert_eq(c.rows[2].error, SW_BATCH_FILE_ROW_MSISDN);
  free(c.rows);
}

Test(batch_file, register_file) {
  collected c = {0};
  char err[256];
  cr_assert_eq(read_register("MSISDN,beneficiary_id,beneficiary_id_type,operator\n"
                             "+254712345678,12345678,national_id,safaricom\n"
                             ",R-1,refugee_id,\n"
                             "254700000001,R-2,refugee_id,Airtel\n",
                             &c, err, sizeof err),
               0, "%s", err);
  cr_assert_eq(c.n, 3);
  cr_assert_eq(c.rows[0].error, 0);
  cr_assert_str_eq(c.rows[0].msisdn, "254712345678");
  cr_assert_str_eq(c.rows[0].operator_id, "safaricom");
  cr_assert_eq(c.rows[0].amount, 0);
  cr_assert_eq(c.rows[0].sex, 'U');
  /* A registration without an MSISDN registers nothing. */
  cr_assert_eq(c.rows[1].error, SW_BATCH_FILE_ROW_MSISDN);
  cr_assert_eq(c.rows[2].error, SW_BATCH_FILE_ROW_OPERATOR);
  free(c.rows);
}

/* ---------------------------------------------------------------- examples, volume */

static char *slurp(const char *path, size_t *len) {
  FILE *fp = fopen(path, "rb");
  cr_assert(fp, "%s", path);
  char *buf = malloc(1 << 16);
  cr_assert(buf);
  *len = fread(buf, 1, 1 << 16, fp);
  fclose(fp);
  return buf;
}

Test(batch_file, example_files) {
  size_t len;
  char *text = slurp(EXAMPLES_DIR "/disbursement.csv", &len);
  collected c = {0};
  char err[256];
  cr_assert_eq(read_pieces(SW_BATCH_FILE_LIST, "KES", text, len, 0, &c, err, sizeof err), 0, "%s",
               err);
  cr_assert_eq(c.n, 5);
  for (size_t i = 0; i < c.n; i++)
    cr_assert_eq(c.rows[i].error, 0, "row %zu: %s", i, sw_batch_file_row_strerror(c.rows[i].error));
  cr_assert_eq(c.rows[1].amount, 150050);
  cr_assert_str_eq(c.rows[2].reference, "Top-up \"winter\" round");
  free(c.rows);
  free(text);
  text = slurp(EXAMPLES_DIR "/beneficiaries.csv", &len);
  c = (collected){0};
  cr_assert_eq(read_pieces(SW_BATCH_FILE_REGISTER, "KES", text, len, 0, &c, err, sizeof err), 0,
               "%s", err);
  cr_assert_eq(c.n, 4);
  for (size_t i = 0; i < c.n; i++)
    cr_assert_eq(c.rows[i].error, 0, "row %zu", i);
  free(c.rows);
  free(text);
}

typedef struct counting {
  uint64_t rows, errors, total;
} counting;

static int count_cb(const sw_batch_row *row, void *arg) {
  counting *k = arg;
  k->rows++;
  k->errors += row->error != 0;
  k->total += row->amount;
  cr_assert_eq(row->line, k->rows + 1);
  return 0;
}

Test(batch_file, hundred_thousand_rows_in_odd_pieces) {
  enum { ROWS = 100000 };
  size_t cap = 64 + (size_t)ROWS * 96;
  char *text = malloc(cap);
  cr_assert(text);
  size_t n = (size_t)snprintf(text, cap, "%s", HEADER);
  for (unsigned i = 0; i < ROWS; i++)
    n += (size_t)snprintf(text + n, cap - n,
                          "national_id,%u,1.5,KES,March %u,2547%08u,safaricom,f,18-35,Nairobi\r\n",
                          10000000 + i, i, i);
  sw_currency kes = currency("KES");
  counting k = {0};
  sw_batch_file *f;
  cr_assert_eq(sw_batch_file_new(SW_BATCH_FILE_LIST, &kes, count_cb, &k, &f), 0);
  for (size_t off = 0, piece = 1; off < n; off += piece, piece = piece * 7 % 100003 + 1)
    cr_assert_eq(sw_batch_file_feed(f, text + off, off + piece <= n ? piece : n - off, NULL, 0), 0);
  cr_assert_eq(sw_batch_file_finish(f, NULL, 0), 0);
  cr_assert_eq(k.rows, ROWS);
  cr_assert_eq(k.errors, 0);
  cr_assert_eq(k.total, (uint64_t)ROWS * 150);
  cr_assert_eq(sw_batch_file_rows(f), ROWS);
  sw_batch_file_free(f);
  free(text);
}
