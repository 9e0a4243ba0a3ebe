/* canon.c — canonical JSON, byte for byte what jansson's json_dumps
 * writes with JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII, in a
 * fraction of the time.
 *
 * Why: every audited request serialises its record this way on the
 * broker's loop thread, and jansson's sorted dump (a key array, qsort,
 * a hash lookup per key, a callback per escaped run) was a quarter of
 * that thread's time. This walks the same tree once into one buffer.
 *
 * The same walk without the sorting (audit_json_compact) writes the
 * broker's replies: jansson's JSON_COMPACT | JSON_ENSURE_ASCII bytes.
 *
 * What it handles: objects, arrays, strings, integers, true, false,
 * null, nested at most CANON_MAX_DEPTH deep. Anything else (reals,
 * deeper trees, a tree that contains itself) is handed to json_dumps
 * itself, so the output is always jansson's. The equality is checked by
 * tests/unit/test_audit_canon.c on generated trees and by the
 * canonical_json fuzz target on arbitrary input.
 *
 * The rules copied from jansson 2.14's dump.c: keys sorted by memcmp over
 * the shorter length, then the shorter first; strings escape '"', '\\'
 * and controls (\b \f \n \r \t by name, the rest as \u00XX), and every
 * code point above 0x7F as \uXXXX (upper-case hex; a UTF-16 surrogate
 * pair above the BMP); integers in decimal; invalid UTF-8 is an error. */
#include "audit.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit_int.h"

#define CANON_MAX_DEPTH 16
#define CANON_MAX_KEYS 64 /* larger objects: jansson's own path */

/* One walk over a tree: where it writes and how. */
struct walk {
	struct audit_jbuf *b;
	bool sort;     /* keys in byte order (else insertion order) */
	bool fallback; /* a node this code does not write: use jansson */
};

static int grow(struct audit_jbuf *b, size_t n)
{
	size_t nc;
	char *np;

	if (b->len + n + 1 <= b->cap)
		return 0;
	/* most records fit in one malloc; below 1 KiB so glibc serves it
	 * from its small bins without consolidating its fast bins first */
	nc = b->cap ? b->cap : 1000;
	while (nc < b->len + n + 1)
		nc *= 2;
	np = realloc(b->p, nc);
	if (np == NULL)
		return -ENOMEM;
	b->p = np;
	b->cap = nc;
	return 0;
}

static int put(struct audit_jbuf *b, const char *s, size_t n)
{
	if (grow(b, n) < 0)
		return -ENOMEM;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	return 0;
}

/* One code point from s (at most n bytes), as jansson's utf8_iterate
 * accepts it: no overlong forms, no surrogates, nothing above U+10FFFF.
 * Returns its length, or 0 when the bytes are not UTF-8. */
static size_t utf8_next(const unsigned char *s, size_t n, uint32_t *cp)
{
	uint32_t c = s[0], min;
	size_t len;

	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	if (c >= 0xC2 && c <= 0xDF) {
		len = 2;
		c &= 0x1F;
		min = 0x80;
	} else if (c >= 0xE0 && c <= 0xEF) {
		len = 3;
		c &= 0x0F;
		min = 0x800;
	} else if (c >= 0xF0 && c <= 0xF4) {
		len = 4;
		c &= 0x07;
		min = 0x10000;
	} else {
		return 0;
	}
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		c = (c << 6) | (s[i] & 0x3F);
	}
	if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
		return 0;
	*cp = c;
	return len;
}

/* Bytes written as they are: printable ASCII but '"' (0x22) and '\\'
 * (0x5c). A bitmap: this test runs once per byte of every record and
 * reply. */
static const uint64_t plain_map[4] = {
	0xFFFFFFFB00000000ULL, /* 0x20-0x3f, not 0x22 */
	0xFFFFFFFFEFFFFFFFULL, /* 0x40-0x7f, not 0x5c */
	0, 0,
};

static bool plain(unsigned char c)
{
	return (plain_map[c >> 6] >> (c & 63)) & 1;
}

/* Whether any of the 8 bytes in x is not plain: >= 0x80, < 0x20, '"' or
 * '\\'. (v - 0x01..) & ~v & 0x80.. is non-zero exactly when some byte of v
 * is zero (a borrow starts only at a byte that is zero), and likewise
 * with 0x20.. for a byte below 0x20 when no byte is >= 0x80. Exact as a
 * yes/no for the word, which is all the caller uses. */
static bool word_has_special(uint64_t x)
{
	const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
	uint64_t q = x ^ (ones * '"'), b = x ^ (ones * '\\');

	return ((x | ((x - ones * 0x20) & ~x) | ((q - ones) & ~q) | ((b - ones) & ~b)) & highs) != 0;
}

/* How many bytes from s on are plain: eight at a time while no byte of
 * the word needs care, then one at a time (the byte test per byte was
 * most of the walk over a token record's hex digests and paths). */
static size_t plain_run(const unsigned char *s, size_t n)
{
	size_t i = 0;

	while (n - i >= 8) {
		uint64_t x;

		memcpy(&x, s + i, 8);
		if (word_has_special(x))
			break;
		i += 8;
	}
	while (i < n && plain(s[i]))
		i++;
	return i;
}

/* Decimal, as printf's %lld writes it; snprintf was a tenth of the walk. */
static size_t fmt_int(char out[static 24], int64_t v)
{
	char tmp[24];
	size_t n = 0, o = 0;
	/* negate in unsigned: INT64_MIN has no positive twin */
	unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;

	do {
		tmp[n++] = (char)('0' + u % 10);
		u /= 10;
	} while (u != 0);
	if (v < 0)
		out[o++] = '-';
	while (n > 0)
		out[o++] = tmp[--n];
	return o;
}

static int put_string(struct audit_jbuf *b, const char *str, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0, run;

	if (grow(b, n + 2) < 0)
		return -ENOMEM;
	b->p[b->len++] = '"';
	/* most strings (ids, names, hex, times) need no escape at all: one
	 * copy into the room just made */
	run = plain_run(s, n);
	if (run == n) {
		memcpy(b->p + b->len, str, n);
		b->len += n;
		b->p[b->len++] = '"';
		return 0;
	}
	while (i < n) {
		uint32_t cp;
		size_t l;
		char esc[12];
		size_t el = 0;

		/* the common case: a run of plain bytes, copied at once */
		run = plain_run(s + i, n - i);
		if (run > 0) {
			if (put(b, str + i, run) < 0)
				return -ENOMEM;
			i += run;
			if (i == n)
				break;
		}
		l = utf8_next(s + i, n - i, &cp);
		if (l == 0)
			return -EINVAL;
		i += l;
		esc[el++] = '\\';
		switch (cp) {
		case '"':
			esc[el++] = '"';
			break;
		case '\\':
			esc[el++] = '\\';
			break;
		case '\b':
			esc[el++] = 'b';
			break;
		case '\f':
			esc[el++] = 'f';
			break;
		case '\n':
			esc[el++] = 'n';
			break;
		case '\r':
			esc[el++] = 'r';
			break;
		case '\t':
			esc[el++] = 't';
			break;
		default:
			if (cp >= 0x10000) {
				uint32_t v = cp - 0x10000, hi = 0xD800 | (v >> 10),
					 lo = 0xDC00 | (v & 0x3FF);

				esc[el++] = 'u';
				for (int k = 12; k >= 0; k -= 4)
					esc[el++] = hex[(hi >> k) & 0xF];
				esc[el++] = '\\';
				cp = lo;
			}
			esc[el++] = 'u';
			for (int k = 12; k >= 0; k -= 4)
				esc[el++] = hex[(cp >> k) & 0xF];
		}
		if (put(b, esc, el) < 0)
			return -ENOMEM;
	}
	return put(b, "\"", 1);
}

struct kv {
	const char *key;
	size_t len;
	json_t *val;
};

int audit_key_cmp(const char *x, size_t xl, const char *y, size_t yl)
{
	int r = memcmp(x, y, xl < yl ? xl : yl);

	if (r != 0)
		return r;
	return xl < yl ? -1 : xl > yl;
}

static int kv_cmp(const struct kv *x, const struct kv *y)
{
	return audit_key_cmp(x->key, x->len, y->key, y->len);
}

static int put_value(struct walk *w, json_t *v, int depth);

static int put_object(struct walk *w, json_t *o, int depth)
{
	struct kv kv[CANON_MAX_KEYS];
	size_t n = 0;
	const char *key;
	json_t *val;

	struct audit_jbuf *b = w->b;

	if (json_object_size(o) > CANON_MAX_KEYS) {
		w->fallback = true;
		return -ENOTSUP;
	}
	json_object_foreach(o, key, val) {
		struct kv e = {key, json_object_iter_key_len(json_object_key_to_iter(key)), val};
		size_t j = n++;

		/* insertion sort: records have a few dozen keys */
		while (w->sort && j > 0 && kv_cmp(&kv[j - 1], &e) > 0) {
			kv[j] = kv[j - 1];
			j--;
		}
		kv[j] = e;
	}
	if (put(b, "{", 1) < 0)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		int rc;

		if ((i > 0 && put(b, ",", 1) < 0))
			return -ENOMEM;
		rc = put_string(b, kv[i].key, kv[i].len);
		if (rc == 0)
			rc = put(b, ":", 1);
		if (rc == 0)
			rc = put_value(w, kv[i].val, depth + 1);
		if (rc < 0)
			return rc;
	}
	return put(b, "}", 1);
}

static int put_value(struct walk *w, json_t *v, int depth)
{
	struct audit_jbuf *b = w->b;
	char num[24];
	int rc;

	if (depth > CANON_MAX_DEPTH) {
		w->fallback = true;
		return -ENOTSUP;
	}
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return put_object(w, v, depth);
	case JSON_ARRAY:
		if (put(b, "[", 1) < 0)
			return -ENOMEM;
		for (size_t i = 0; i < json_array_size(v); i++) {
			if (i > 0 && put(b, ",", 1) < 0)
				return -ENOMEM;
			rc = put_value(w, json_array_get(v, i), depth + 1);
			if (rc < 0)
				return rc;
		}
		return put(b, "]", 1);
	case JSON_STRING:
		return put_string(b, json_string_value(v), json_string_length(v));
	case JSON_INTEGER:
		return put(b, num, fmt_int(num, json_integer_value(v)));
	case JSON_TRUE:
		return put(b, "true", 4);
	case JSON_FALSE:
		return put(b, "false", 5);
	case JSON_NULL:
		return put(b, "null", 4);
	default:
		w->fallback = true;
		return -ENOTSUP;
	}
}

static char *dump(json_t *v, bool sort, size_t *len_out)
{
	struct audit_jbuf b = {0};
	struct walk w = {.b = &b, .sort = sort};
	int rc;

	if (v == NULL || !(json_is_object(v) || json_is_array(v)))
		return NULL; /* json_dumps writes only objects and arrays */
	rc = put_value(&w, v, 0);
	if (rc == 0 && grow(&b, 0) == 0) {
		b.p[b.len] = '\0';
		if (len_out)
			*len_out = b.len;
		return b.p;
	}
	free(b.p);
	if (rc == -ENOTSUP && w.fallback) {
		char *s = json_dumps(v, sort ? AUDIT_JSON_FLAGS : JSON_COMPACT | JSON_ENSURE_ASCII);

		if (s != NULL && len_out)
			*len_out = strlen(s);
		return s;
	}
	return NULL;
}

char *audit_canonical_json(json_t *v, size_t *len_out)
{
	return dump(v, true, len_out);
}

char *audit_json_compact(json_t *v, size_t *len_out)
{
	return dump(v, false, len_out);
}

/* ---- writing JSON text piece by piece ----------------------------------- */

int audit_jbuf_raw(struct audit_jbuf *b, const char *s, size_t n)
{
	return put(b, s, n);
}

int audit_jbuf_string(struct audit_jbuf *b, const char *s, size_t n)
{
	return put_string(b, s, n);
}

int audit_jbuf_int(struct audit_jbuf *b, int64_t v)
{
	char num[24];

	return put(b, num, fmt_int(num, v));
}

int audit_jbuf_value(struct audit_jbuf *b, json_t *v, bool sort)
{
	struct walk w = {.b = b, .sort = sort};
	size_t mark = b->len;
	int rc = put_value(&w, v, 0);

	/* a node the walk does not write (a real): nothing half-written */
	if (rc < 0)
		b->len = mark;
	return rc == -ENOTSUP ? -EINVAL : rc;
}

char *audit_jbuf_finish(struct audit_jbuf *b, size_t *len)
{
	char *p;

	if (grow(b, 0) < 0) {
		audit_jbuf_free(b);
		return NULL;
	}
	b->p[b->len] = '\0';
	p = b->p;
	if (len != NULL)
		*len = b->len;
	*b = (struct audit_jbuf){0};
	return p;
}

void audit_jbuf_free(struct audit_jbuf *b)
{
	free(b->p);
	*b = (struct audit_jbuf){0};
}
