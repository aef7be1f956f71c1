/* batch_file.c — the disbursement list / beneficiary registration CSV reader (batch_file.h).
 *
 * libcsv (strict mode, default space and line-end characters) cuts the bytes into fields and
 * records and calls field_cb / record_cb; this file maps fields to columns through the header
 * and checks them.
 *
 * Line numbers: libcsv ends a record at a CR or an LF, and with CSV_REPALL_NL it reports every
 * CR or LF met outside a record as an empty record. A line ends at an LF, a CRLF or a lone CR:
 * record_cb counts a CR and an LF, except the LF of a CRLF (an empty record right after a CR);
 * field_cb counts the line ends inside a quoted field's value. For an error libcsv raises in the
 * middle of a field, the line ends of the part of the field read so far (libcsv's entry buffer,
 * public in csv.h) are added.
 *
 * Memory: libcsv grows one buffer for the field being read. Its realloc function refuses to go
 * past BF_CSV_BUF, so a hostile field stops at that size (CSV_ENOMEM with a full buffer, which
 * is reported as SW_BATCH_FILE_E_TOO_LARGE). Each field is checked as libcsv delivers it,
 * straight into the one sw_batch_row the reader reuses; only the id waits (in a fixed array) for
 * the end of the record, since its rule depends on the id type, which may come after it. A
 * field that passes its rule holds no CR or LF, so only failing fields are scanned for lines.
 */
#include "batch_file.h"

#include <csv.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
  BF_CHUNK = 64 * 1024, /* bytes handed to libcsv at once, so a stop is noticed soon */
  /* libcsv's field buffer: the field, its closing quote and up to 63 spaces after it. */
  BF_CSV_BUF = SW_BATCH_FILE_FIELD_MAX + 64,
  BF_MSG = 320,
};

/* The columns, in the order their rules are checked (the order of sw_batch_file_row_error). */
enum bf_col {
  COL_ID_TYPE,
  COL_ID,
  COL_AMOUNT,
  COL_CURRENCY,
  COL_REFERENCE,
  COL_MSISDN,
  COL_OPERATOR,
  COL_SEX,
  COL_AGE_BAND,
  COL_REGION,
  COL_N
};

enum { IN_LIST = 1, IN_REGISTER = 2, REQ_LIST = 4, REQ_REGISTER = 8 };

static const struct {
  const char *name;
  unsigned flags;
} columns[COL_N] = {
    [COL_ID_TYPE] = {"beneficiary_id_type", IN_LIST | IN_REGISTER | REQ_LIST | REQ_REGISTER},
    [COL_ID] = {"beneficiary_id", IN_LIST | IN_REGISTER | REQ_LIST | REQ_REGISTER},
    [COL_AMOUNT] = {"amount", IN_LIST | REQ_LIST},
    [COL_CURRENCY] = {"currency", IN_LIST},
    [COL_REFERENCE] = {"reference", IN_LIST | REQ_LIST},
    [COL_MSISDN] = {"msisdn", IN_LIST | IN_REGISTER | REQ_REGISTER},
    [COL_OPERATOR] = {"operator", IN_LIST | IN_REGISTER},
    [COL_SEX] = {"sex", IN_LIST},
    [COL_AGE_BAND] = {"age_band", IN_LIST},
    [COL_REGION] = {"region", IN_LIST},
};

static const struct {
  const char *name;
  uint32_t type;
} id_types[] = {
    {"national_id", SW_PARTY_NATIONAL_ID}, {"refugee_id", SW_PARTY_REFUGEE_ID},
    {"msisdn", SW_PARTY_MSISDN},           {"account_id", SW_PARTY_ACCOUNT_ID},
    {"business_id", SW_PARTY_BUSINESS_ID},
};

static const struct {
  const char *name;
  char code;
} sexes[] = {
    {"f", 'F'}, {"female", 'F'}, {"m", 'M'}, {"male", 'M'},
    {"o", 'O'}, {"other", 'O'},  {"u", 'U'}, {"unknown", 'U'},
};

static const unsigned char utf8_bom[3] = {0xef, 0xbb, 0xbf};

struct sw_batch_file {
  struct csv_parser csv;
  sw_batch_file_kind kind;
  sw_currency currency; /* a copy of the programme's (LIST) */
  sw_batch_file_row_cb cb;
  void *arg;
  int status;    /* the first file error; non-zero = poisoned */
  bool finished; /* sw_batch_file_finish succeeded */
  bool header_done;
  bool bom_done;     /* the first bytes were checked for a BOM */
  size_t nbom;       /* bytes of a BOM seen so far, held back */
  uint64_t line;     /* line of libcsv's position, as far as the callbacks have seen */
  uint64_t rec_line; /* where the current record started */
  bool after_cr;     /* the last thing libcsv reported was a record ended by a CR */
  uint64_t rows, max_rows;
  size_t nfields;              /* fields of the current record so far */
  size_t ncols;                /* fields of the header */
  unsigned char col_of[COL_N]; /* the column of each header field */
  bool present[COL_N];
  bool id_bad;   /* the current record's id broke a rule common to every id type */
  size_t id_len; /* its trimmed id, checked against the id type at the end of the record */
  char id_raw[SW_PARTY_ID_MAX + 1];
  sw_batch_row row; /* the current record, checked field by field as they arrive */
  char msg[BF_MSG];
};

const char *sw_batch_file_strerror(int err) {
  switch (err) {
  case SW_BATCH_FILE_E_OK:
    return "ok";
  case SW_BATCH_FILE_E_NOMEM:
    return "out of memory";
  case SW_BATCH_FILE_E_INVAL:
    return "invalid argument";
  case SW_BATCH_FILE_E_HEADER:
    return "bad header row";
  case SW_BATCH_FILE_E_CSV:
    return "malformed CSV";
  case SW_BATCH_FILE_E_TOO_LARGE:
    return "file over the limits";
  case SW_BATCH_FILE_E_STOPPED:
    return "stopped by the row callback";
  default:
    return "unknown batch file error";
  }
}

const char *sw_batch_file_row_strerror(int row_err) {
  switch (row_err) {
  case SW_BATCH_FILE_ROW_OK:
    return "ok";
  case SW_BATCH_FILE_ROW_FIELDS:
    return "wrong number of fields";
  case SW_BATCH_FILE_ROW_ID_TYPE:
    return "unknown beneficiary id type";
  case SW_BATCH_FILE_ROW_ID:
    return "malformed beneficiary id";
  case SW_BATCH_FILE_ROW_AMOUNT:
    return "malformed amount";
  case SW_BATCH_FILE_ROW_CURRENCY:
    return "currency is not the programme's";
  case SW_BATCH_FILE_ROW_REFERENCE:
    return "malformed reference";
  case SW_BATCH_FILE_ROW_MSISDN:
    return "malformed msisdn";
  case SW_BATCH_FILE_ROW_OPERATOR:
    return "malformed operator id";
  case SW_BATCH_FILE_ROW_SEX:
    return "unknown sex";
  case SW_BATCH_FILE_ROW_AGE_BAND:
    return "malformed age band";
  case SW_BATCH_FILE_ROW_REGION:
    return "malformed region";
  default:
    return "unknown row error";
  }
}

/* ---------------------------------------------------------------- errors */

/* Records the first file error (printf-style message) and poisons the reader. */
__attribute__((format(printf, 3, 4))) static int bf_fail(sw_batch_file *f, int code,
                                                         const char *fmt, ...) {
  if (f->status)
    return f->status;
  f->status = code;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(f->msg, sizeof f->msg, fmt, ap);
  va_end(ap);
  return code;
}

/* Copies the reader's error message (if any) to err and returns its status. */
static int bf_report(const sw_batch_file *f, char *err, size_t errlen) {
  if (f->status && err && errlen)
    snprintf(err, errlen, "%s", f->msg);
  return f->status;
}

static int arg_error(int code, char *err, size_t errlen, const char *what) {
  if (err && errlen)
    snprintf(err, errlen, "%s", what);
  return code;
}

/* A printable excerpt of untrusted bytes for a message: at most 40 of them, anything but
 * printable ASCII shown as '?'. */
static void excerpt(const char *s, size_t len, char *out, size_t outlen) {
  size_t n = 0;
  for (size_t i = 0; i < len && n + 4 < outlen; i++) {
    if (i == 40) {
      memcpy(out + n, "...", 3);
      n += 3;
      break;
    }
    unsigned char c = (unsigned char)s[i];
    out[n++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
  }
  out[n] = '\0';
}

/* ---------------------------------------------------------------- small checks */

/* Line ends in p[0..n): LFs, CRLFs and lone CRs (a CR at the end counts). */
static uint64_t count_lines(const unsigned char *p, size_t n) {
  uint64_t lines = 0;
  for (size_t i = 0; i < n; i++)
    if (p[i] == '\n' || (p[i] == '\r' && (i + 1 == n || p[i + 1] != '\n')))
      lines++;
  return lines;
}

static bool has_line_end(const unsigned char *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (p[i] == '\n' || p[i] == '\r')
      return true;
  return false;
}

/* s[0..len) with surrounding spaces and tabs removed. libcsv already trims unquoted fields, so
 * this is mostly the test of the fast path. */
static inline void trim(const char **s, size_t *len) {
  const char *p = *s;
  size_t n = *len;
  if (n == 0 || (p[0] != ' ' && p[0] != '\t' && p[n - 1] != ' ' && p[n - 1] != '\t'))
    return;
  while (n && (*p == ' ' || *p == '\t')) {
    p++;
    n--;
  }
  while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
    n--;
  *s = p;
  *len = n;
}

/* s[0..len) equals the NUL-terminated lower-case `name`, ASCII case-insensitively. */
static bool ieq(const char *s, size_t len, const char *name) {
  for (size_t i = 0; i < len; i++) {
    char c = s[i];
    if (c >= 'A' && c <= 'Z')
      c = (char)(c - 'A' + 'a');
    if (name[i] == '\0' || c != name[i])
      return false;
  }
  return name[len] == '\0';
}

/* Well-formed UTF-8 (no overlong forms, surrogates or code points past U+10FFFF) without
 * control characters (C0, DEL, C1) — what "printable" means for a field. */
static bool text_ok(const char *str, size_t len) {
  const unsigned char *s = (const unsigned char *)str;
  size_t i = 0;
  while (i < len) {
    while (i < len && s[i] >= 0x20 && s[i] < 0x7f) /* printable ASCII, the usual case */
      i++;
    if (i == len)
      break;
    unsigned c = s[i];
    if (c < 0x80) {
      if (c < 0x20 || c == 0x7f)
        return false;
      i++;
      continue;
    }
    size_t more;
    uint32_t cp;
    if (c >= 0xc2 && c <= 0xdf) {
      more = 1;
      cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
      more = 2;
      cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      more = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (len - i - 1 < more)
      return false;
    for (size_t k = 1; k <= more; k++) {
      unsigned cc = s[i + k];
      if ((cc & 0xc0) != 0x80)
        return false;
      cp = cp << 6 | (cc & 0x3f);
    }
    if ((more == 2 && cp < 0x800) || (more == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff) || cp <= 0x9f)
      return false;
    i += more + 1;
  }
  return true;
}

static bool digits_ok(const char *s, size_t len) {
  for (size_t i = 0; i < len; i++)
    if (s[i] < '0' || s[i] > '9')
      return false;
  return true;
}

int sw_batch_file_parse_amount(const char *s, size_t len, unsigned exponent, uint64_t *out) {
  if (!s || !out || len == 0)
    return SW_BATCH_FILE_E_INVAL;
  uint64_t v = 0;
  size_t whole = 0, frac = 0;
  bool dot = false;
  for (size_t i = 0; i < len; i++) {
    char c = s[i];
    if (c == '.') {
      if (dot || whole == 0)
        return SW_BATCH_FILE_E_INVAL;
      dot = true;
      continue;
    }
    if (c < '0' || c > '9')
      return SW_BATCH_FILE_E_INVAL;
    if (dot)
      frac++;
    else
      whole++;
    unsigned d = (unsigned)(c - '0');
    if (v > (UINT64_MAX - d) / 10)
      return SW_BATCH_FILE_E_INVAL;
    v = v * 10 + d;
  }
  if ((dot && frac == 0) || frac > exponent)
    return SW_BATCH_FILE_E_INVAL;
  for (size_t k = frac; k < exponent && v; k++) {
    if (v > UINT64_MAX / 10)
      return SW_BATCH_FILE_E_INVAL;
    v *= 10;
  }
  if (v == 0)
    return SW_BATCH_FILE_E_INVAL;
  *out = v;
  return 0;
}

/* ---------------------------------------------------------------- field rules */

/* Each check takes the trimmed value, fills its member of r and returns 0 or its row error. */

static int check_id_type(const char *s, size_t len, sw_batch_row *r) {
  for (size_t i = 0; i < sizeof id_types / sizeof id_types[0]; i++)
    if (ieq(s, len, id_types[i].name)) {
      r->id_type = id_types[i].type;
      return 0;
    }
  return SW_BATCH_FILE_ROW_ID_TYPE;
}

/* The id rules, once the record's id type is known; s[0..len) already passed text_ok. With an
 * unknown id type (r->id_type 0) only the rules common to every type are checked. An MSISDN id
 * may be written with a leading '+', which is dropped. */
static int check_id(const char *s, size_t len, sw_batch_row *r) {
  if (r->id_type == SW_PARTY_MSISDN && len && s[0] == '+') {
    s++;
    len--;
  }
  if (len == 0 || len > SW_PARTY_ID_MAX)
    return SW_BATCH_FILE_ROW_ID;
  char id[SW_PARTY_ID_MAX + 1];
  memcpy(id, s, len);
  id[len] = '\0';
  if (r->id_type && sw_registry_party_valid(r->id_type, id) != 0)
    return SW_BATCH_FILE_ROW_ID;
  memcpy(r->id, id, len + 1);
  return 0;
}

static int check_amount(const char *s, size_t len, unsigned exponent, sw_batch_row *r) {
  return sw_batch_file_parse_amount(s, len, exponent, &r->amount) ? SW_BATCH_FILE_ROW_AMOUNT : 0;
}

static int check_currency(const char *s, size_t len, const sw_currency *c) {
  if (len == 0)
    return 0;
  if (len != 3)
    return SW_BATCH_FILE_ROW_CURRENCY;
  for (size_t i = 0; i < 3; i++) {
    char u = s[i] >= 'a' && s[i] <= 'z' ? (char)(s[i] - 'a' + 'A') : s[i];
    if (u != c->alpha[i])
      return SW_BATCH_FILE_ROW_CURRENCY;
  }
  return 0;
}

/* Optional text of at most max bytes into out[max + 1]. */
static int check_text(const char *s, size_t len, size_t max, char *out, int row_err) {
  if (len > max || !text_ok(s, len))
    return row_err;
  memcpy(out, s, len);
  out[len] = '\0';
  return 0;
}

static int check_msisdn(const char *s, size_t len, bool required, sw_batch_row *r) {
  if (len == 0)
    return required ? SW_BATCH_FILE_ROW_MSISDN : 0;
  if (s[0] == '+') {
    s++;
    len--;
  }
  if (len == 0 || len > SW_MSISDN_MAX || !digits_ok(s, len))
    return SW_BATCH_FILE_ROW_MSISDN;
  memcpy(r->msisdn, s, len);
  r->msisdn[len] = '\0';
  return 0;
}

static int check_operator(const char *s, size_t len, sw_batch_row *r) {
  if (len > SW_PARTICIPANT_ID_MAX)
    return SW_BATCH_FILE_ROW_OPERATOR;
  for (size_t i = 0; i < len; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
      return SW_BATCH_FILE_ROW_OPERATOR;
  }
  memcpy(r->operator_id, s, len);
  r->operator_id[len] = '\0';
  return 0;
}

static int check_sex(const char *s, size_t len, sw_batch_row *r) {
  if (len == 0)
    return 0; /* r->sex stays 'U' */
  for (size_t i = 0; i < sizeof sexes / sizeof sexes[0]; i++)
    if (ieq(s, len, sexes[i].name)) {
      r->sex = sexes[i].code;
      return 0;
    }
  return SW_BATCH_FILE_ROW_SEX;
}

static int check_age_band(const char *s, size_t len, sw_batch_row *r) {
  if (len > SW_BATCH_FILE_AGE_BAND_MAX)
    return SW_BATCH_FILE_ROW_AGE_BAND;
  for (size_t i = 0; i < len; i++) {
    char c = s[i];
    if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '+' ||
          c == '-' || c == '<' || c == '>'))
      return SW_BATCH_FILE_ROW_AGE_BAND;
  }
  memcpy(r->age_band, s, len);
  r->age_band[len] = '\0';
  return 0;
}

/* Checks one trimmed field of column col into f->row: 0 or its row error. The id is only
 * kept here (it is checked against the id type once the record is complete). Every rule
 * refuses CR and LF, so a field that passes has no line end in it. */
static int check_field(sw_batch_file *f, int col, const char *s, size_t len) {
  sw_batch_row *r = &f->row;
  switch (col) {
  case COL_ID_TYPE:
    return check_id_type(s, len, r);
  case COL_ID:
    /* An MSISDN id may carry a '+' more than SW_PARTY_ID_MAX allows. */
    if (len > SW_PARTY_ID_MAX + 1 || !text_ok(s, len)) {
      f->id_bad = true;
      return SW_BATCH_FILE_ROW_ID;
    }
    memcpy(f->id_raw, s, len);
    f->id_len = len;
    return 0;
  case COL_AMOUNT:
    return check_amount(s, len, f->currency.exponent, r);
  case COL_CURRENCY:
    return check_currency(s, len, &f->currency);
  case COL_REFERENCE:
    return check_text(s, len, SW_BATCH_FILE_REFERENCE_MAX, r->reference,
                      SW_BATCH_FILE_ROW_REFERENCE);
  case COL_MSISDN:
    return check_msisdn(s, len, f->kind == SW_BATCH_FILE_REGISTER, r);
  case COL_OPERATOR:
    return check_operator(s, len, r);
  case COL_SEX:
    return check_sex(s, len, r);
  case COL_AGE_BAND:
    return check_age_band(s, len, r);
  case COL_REGION:
    return check_text(s, len, SW_BATCH_FILE_REGION_MAX, r->region, SW_BATCH_FILE_ROW_REGION);
  default:
    return 0;
  }
}

/* Empties f->row for the next record (cheaper than clearing all of it: only the first byte of
 * each string). */
static void row_reset(sw_batch_file *f) {
  sw_batch_row *r = &f->row;
  r->error = 0;
  r->id_type = 0;
  r->id[0] = '\0';
  r->amount = 0;
  r->reference[0] = '\0';
  r->msisdn[0] = '\0';
  r->operator_id[0] = '\0';
  r->sex = 'U';
  r->age_band[0] = '\0';
  r->region[0] = '\0';
  f->id_bad = false;
  f->id_len = 0;
}

/* ---------------------------------------------------------------- header */

static unsigned kind_flag(const sw_batch_file *f, bool required) {
  if (f->kind == SW_BATCH_FILE_LIST)
    return required ? REQ_LIST : IN_LIST;
  return required ? REQ_REGISTER : IN_REGISTER;
}

/* "a, b, c": the columns of the file's kind, for messages. */
static void column_list(const sw_batch_file *f, char *out, size_t outlen) {
  size_t n = 0;
  out[0] = '\0';
  for (int col = 0; col < COL_N; col++) {
    if (!(columns[col].flags & kind_flag(f, false)))
      continue;
    int w = snprintf(out + n, outlen - n, "%s%s", n ? ", " : "", columns[col].name);
    if (w < 0 || (size_t)w >= outlen - n)
      return;
    n += (size_t)w;
  }
}

static void header_field(sw_batch_file *f, const char *s, size_t len) {
  trim(&s, &len);
  if (len == 0) {
    bf_fail(f, SW_BATCH_FILE_E_HEADER, "line %llu: column %zu of the header has no name",
            (unsigned long long)f->rec_line, f->nfields + 1);
    return;
  }
  for (int col = 0; col < COL_N; col++) {
    if (!(columns[col].flags & kind_flag(f, false)) || !ieq(s, len, columns[col].name))
      continue;
    if (f->present[col]) {
      bf_fail(f, SW_BATCH_FILE_E_HEADER, "line %llu: duplicate column '%s'",
              (unsigned long long)f->rec_line, columns[col].name);
      return;
    }
    f->present[col] = true;
    f->col_of[f->nfields] = (unsigned char)col;
    return;
  }
  char name[48], known[200];
  excerpt(s, len, name, sizeof name);
  column_list(f, known, sizeof known);
  bf_fail(f, SW_BATCH_FILE_E_HEADER, "line %llu: unknown column '%s' (a %s file has: %s)",
          (unsigned long long)f->rec_line, name,
          f->kind == SW_BATCH_FILE_LIST ? "disbursement list" : "registration", known);
}

static void header_end(sw_batch_file *f) {
  char missing[200];
  size_t n = 0;
  missing[0] = '\0';
  for (int col = 0; col < COL_N; col++) {
    if (!(columns[col].flags & kind_flag(f, true)) || f->present[col])
      continue;
    int w = snprintf(missing + n, sizeof missing - n, "%s'%s'", n ? ", " : "", columns[col].name);
    if (w > 0 && (size_t)w < sizeof missing - n)
      n += (size_t)w;
  }
  if (n) {
    bf_fail(f, SW_BATCH_FILE_E_HEADER, "line %llu: missing required column%s %s",
            (unsigned long long)f->rec_line, strchr(missing, ',') ? "s" : "", missing);
    return;
  }
  f->ncols = f->nfields;
  f->header_done = true;
}

/* ---------------------------------------------------------------- libcsv callbacks */

static void field_cb(void *data, size_t len, void *arg) {
  sw_batch_file *f = arg;
  if (f->status)
    return;
  f->after_cr = false;
  if (f->nfields == 0) {
    f->rec_line = f->line;
    row_reset(f);
  }
  if (len > SW_BATCH_FILE_FIELD_MAX) {
    bf_fail(f, SW_BATCH_FILE_E_TOO_LARGE, "line %llu: a field is longer than %d bytes",
            (unsigned long long)f->rec_line, SW_BATCH_FILE_FIELD_MAX);
    return;
  }
  bool may_span = true; /* the field may hold line ends to count */
  if (!f->header_done) {
    header_field(f, data, len);
  } else if (f->nfields < f->ncols) {
    const char *s = data;
    size_t n = len;
    trim(&s, &n);
    int e = check_field(f, f->col_of[f->nfields], s, n);
    if (e && (!f->row.error || e < f->row.error))
      f->row.error = e;
    may_span = e != 0;
  }
  if (may_span && has_line_end(data, len))
    f->line += count_lines(data, len);
  f->nfields++;
}

static void record_end(sw_batch_file *f) {
  if (f->rows >= f->max_rows) {
    bf_fail(f, SW_BATCH_FILE_E_TOO_LARGE, "line %llu: more than %llu records",
            (unsigned long long)f->rec_line, (unsigned long long)f->max_rows);
    return;
  }
  sw_batch_row *r = &f->row;
  if (f->nfields != f->ncols) {
    row_reset(f);
    r->error = SW_BATCH_FILE_ROW_FIELDS;
  } else if (!f->id_bad) {
    /* Only now is the id type known, whatever the order of the columns. */
    int e = check_id(f->id_raw, f->id_len, r);
    if (e && (!r->error || e < r->error))
      r->error = e;
  }
  r->line = f->rec_line;
  f->rows++;
  if (f->cb(r, f->arg) != 0)
    bf_fail(f, SW_BATCH_FILE_E_STOPPED, "line %llu: stopped by the row callback",
            (unsigned long long)r->line);
}

/* c: the byte that ended the record (CR or LF), or -1 at the end of the input. */
static void record_cb(int c, void *arg) {
  sw_batch_file *f = arg;
  if (f->status)
    return;
  bool crlf = c == '\n' && f->nfields == 0 && f->after_cr;
  if (f->nfields) {
    if (f->header_done)
      record_end(f);
    else
      header_end(f);
    f->nfields = 0;
  }
  if (c >= 0 && !crlf)
    f->line++;
  f->after_cr = c == '\r';
}

/* libcsv's field buffer never grows past BF_CSV_BUF. */
static void *bf_realloc(void *p, size_t n) {
  return n > BF_CSV_BUF ? NULL : realloc(p, n);
}

/* ---------------------------------------------------------------- reader */

int sw_batch_file_new(sw_batch_file_kind kind, const sw_currency *currency, sw_batch_file_row_cb cb,
                      void *arg, sw_batch_file **out) {
  if (!out || !cb || (kind != SW_BATCH_FILE_LIST && kind != SW_BATCH_FILE_REGISTER) ||
      (kind == SW_BATCH_FILE_LIST && !currency))
    return SW_BATCH_FILE_E_INVAL;
  *out = NULL;
  sw_batch_file *f = calloc(1, sizeof *f);
  if (!f)
    return SW_BATCH_FILE_E_NOMEM;
  if (csv_init(&f->csv, CSV_STRICT | CSV_STRICT_FINI | CSV_REPALL_NL) != 0) {
    free(f);
    return SW_BATCH_FILE_E_NOMEM;
  }
  csv_set_realloc_func(&f->csv, bf_realloc);
  csv_set_blk_size(&f->csv, BF_CSV_BUF);
  f->kind = kind;
  if (kind == SW_BATCH_FILE_LIST)
    f->currency = *currency;
  f->cb = cb;
  f->arg = arg;
  f->line = 1;
  f->max_rows = SW_BATCH_FILE_ROWS_MAX;
  *out = f;
  return 0;
}

void sw_batch_file_free(sw_batch_file *f) {
  if (!f)
    return;
  csv_free(&f->csv);
  free(f);
}

int sw_batch_file_set_max_rows(sw_batch_file *f, uint64_t max_rows) {
  if (!f || max_rows == 0 || max_rows > SW_BATCH_FILE_ROWS_MAX)
    return SW_BATCH_FILE_E_INVAL;
  f->max_rows = max_rows;
  return 0;
}

uint64_t sw_batch_file_rows(const sw_batch_file *f) {
  return f ? f->rows : 0;
}

/* Hands p[0..n) to libcsv in pieces of BF_CHUNK, stopping at the first error. */
static int bf_parse(sw_batch_file *f, const unsigned char *p, size_t n) {
  while (n && !f->status) {
    size_t k = n < BF_CHUNK ? n : BF_CHUNK;
    size_t done = csv_parse(&f->csv, p, k, field_cb, record_cb, f);
    if (f->status)
      break;
    if (done < k) {
      /* The line of the failing byte: the callbacks' count and the field read so far. */
      unsigned long long line = f->line + count_lines(f->csv.entry_buf, f->csv.entry_pos);
      int e = csv_error(&f->csv);
      if (e == CSV_EPARSE)
        bf_fail(f, SW_BATCH_FILE_E_CSV,
                "line %llu: malformed CSV: a quote inside an unquoted field or text after a "
                "closing quote (write a quote inside a quoted field as \"\")",
                line);
      else if (e == CSV_ETOOBIG || (e == CSV_ENOMEM && csv_get_buffer_size(&f->csv) >= BF_CSV_BUF))
        bf_fail(f, SW_BATCH_FILE_E_TOO_LARGE, "line %llu: a field is longer than %d bytes", line,
                SW_BATCH_FILE_FIELD_MAX);
      else
        bf_fail(f, SW_BATCH_FILE_E_NOMEM, "line %llu: out of memory", line);
      break;
    }
    p += k;
    n -= k;
  }
  return f->status;
}

int sw_batch_file_feed(sw_batch_file *f, const void *bytes, size_t n, char *err, size_t errlen) {
  if (!f || (!bytes && n))
    return arg_error(SW_BATCH_FILE_E_INVAL, err, errlen, "sw_batch_file_feed: bad argument");
  if (f->status)
    return bf_report(f, err, errlen);
  if (f->finished)
    return arg_error(SW_BATCH_FILE_E_INVAL, err, errlen, "sw_batch_file_feed: after finish");
  const unsigned char *p = bytes;
  /* A BOM at the start is dropped; the bytes of a partial one go to libcsv once it is clear
   * they are not one. */
  while (!f->bom_done && n) {
    if (*p == utf8_bom[f->nbom]) {
      p++;
      n--;
      if (++f->nbom == sizeof utf8_bom)
        f->bom_done = true;
    } else {
      f->bom_done = true;
      if (f->nbom && bf_parse(f, utf8_bom, f->nbom))
        return bf_report(f, err, errlen);
    }
  }
  bf_parse(f, p, n);
  return bf_report(f, err, errlen);
}

int sw_batch_file_finish(sw_batch_file *f, char *err, size_t errlen) {
  if (!f)
    return arg_error(SW_BATCH_FILE_E_INVAL, err, errlen, "sw_batch_file_finish: bad argument");
  if (f->status)
    return bf_report(f, err, errlen);
  if (f->finished)
    return arg_error(SW_BATCH_FILE_E_INVAL, err, errlen, "sw_batch_file_finish: called twice");
  if (!f->bom_done) {
    f->bom_done = true;
    if (f->nbom && bf_parse(f, utf8_bom, f->nbom))
      return bf_report(f, err, errlen);
  }
  if (csv_fini(&f->csv, field_cb, record_cb, f) != 0 && !f->status)
    bf_fail(f, SW_BATCH_FILE_E_CSV,
            "line %llu: the file ends inside a quoted field (its closing \" is missing)",
            (unsigned long long)(f->nfields ? f->rec_line : f->line));
  if (!f->status && !f->header_done)
    bf_fail(f, SW_BATCH_FILE_E_HEADER, "line %llu: no header row (the file is empty)",
            (unsigned long long)f->line);
  if (!f->status)
    f->finished = true;
  return bf_report(f, err, errlen);
}
