/* export_scan.c — where an export's records array and each of its
 * elements lie in the text, so verification can hand jansson one record
 * at a time (and on two cores, two at once) instead of building one tree
 * of the whole 150 MB document.
 *
 * This is not a JSON parser: it only tells strings apart (a '"' is
 * escaped exactly when an odd run of backslashes precedes it inside the
 * string) and counts brackets. jansson still parses every byte: the
 * document with the records array cut down to "[]", and each element on
 * its own. When all of those parse, the document is valid JSON with the
 * same tree (see audit_export_scan in audit_int.h); when any does not,
 * verify.c parses the whole document as before and reports its error. */
#include "audit_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static bool json_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Index just past the string opening at b[i] ('"'); 0 when it never ends. */
static size_t str_end(const char *b, size_t n, size_t i)
{
	size_t start = i + 1, j = start;

	for (;;) {
		const char *q = memchr(b + j, '"', n - j);
		size_t k, run = 0;

		if (q == NULL)
			return 0;
		k = (size_t)(q - b);
		while (k - run > start && b[k - run - 1] == '\\')
			run++;
		if (run % 2 == 0)
			return k + 1;
		j = k + 1;
	}
}

static int piece_add(struct xscan *s, size_t *cap, size_t off, size_t len)
{
	if (s->n == *cap) {
		size_t nc = *cap ? 2 * *cap : 1024;
		struct xspan *np = realloc(s->piece, nc * sizeof(*np));

		if (np == NULL)
			return -ENOMEM;
		s->piece = np;
		*cap = nc;
	}
	s->piece[s->n++] = (struct xspan){off, len};
	return 0;
}

int audit_export_scan(const char *b, size_t n, struct xscan *out)
{
	struct xscan s = {0};
	size_t i = 0, depth = 0, key_s = 0, key_e = 0, cap = 0, piece_s = 0;
	bool in_rec = false, sep = false;
	int rc = -EINVAL;

	while (i < n && json_ws(b[i]))
		i++;
	if (i == n || b[i] != '{')
		goto out;
	for (; i < n; i++) {
		switch (b[i]) {
		case '"': {
			size_t e = str_end(b, n, i);

			if (e == 0)
				goto out;
			if (depth == 1) {
				key_s = i;
				key_e = e;
			}
			i = e - 1;
			break;
		}
		case ':':
			/* a key spelled with escapes is left to the whole parse */
			if (depth == 1 && key_e - key_s == 9 &&
			    memcmp(b + key_s, "\"records\"", 9) == 0) {
				size_t j = i + 1;

				while (j < n && json_ws(b[j]))
					j++;
				if (j == n || b[j] != '[')
					goto out;
				in_rec = true;
				s.rec_off = j;
				piece_s = j + 1;
				depth = 2;
				i = j;
			}
			break;
		case '{':
		case '[':
			if (++depth > XSCAN_DEPTH)
				goto out;
			break;
		case '}':
		case ']':
			if (depth == 0)
				goto out;
			if (in_rec && depth == 2) {
				if (b[i] != ']')
					goto out;
				/* "[ ]" holds no element; "[1, ]" an empty one
				 * (which jansson refuses) */
				bool empty = !sep;

				for (size_t k = piece_s; empty && k < i; k++)
					empty = json_ws(b[k]);
				if (!empty && (rc = piece_add(&s, &cap, piece_s, i - piece_s)) < 0)
					goto out;
				s.rec_len = i + 1 - s.rec_off;
				*out = s;
				return 0;
			}
			depth--;
			break;
		case ',':
			if (in_rec && depth == 2) {
				rc = piece_add(&s, &cap, piece_s, i - piece_s);
				if (rc < 0)
					goto out;
				rc = -EINVAL;
				piece_s = i + 1;
				sep = true;
			}
			break;
		default:
			break;
		}
	}
out:
	free(s.piece);
	return rc;
}

void audit_export_scan_free(struct xscan *s)
{
	free(s->piece);
	*s = (struct xscan){0};
}
