/* request.c — the add-checkpoint request body (c2sp.org/tlog-witness):
 *
 *     old <decimal, no leading zeroes>\n
 *     <base64 hash>\n            (0..63 consistency proof lines)
 *     \n
 *     <checkpoint>
 *
 * Strict: every line ends in '\n', nothing but what the spec allows. The
 * checkpoint itself is parsed by audit_note_parse.
 */
#include "witness.h"
#include "util.h"

#include <errno.h>
#include <string.h>

#include <sodium.h>

int witness_request_parse(const char *body, size_t len, struct witness_request *r,
			  struct cerr *err)
{
	const char *p = body, *end = body + len, *eol;

	if (body == NULL || len == 0)
		return cerr_set(err, -EBADMSG, "empty request body");
	if (len > WITNESS_REQUEST_MAX)
		return cerr_set(err, -EBADMSG, "request body larger than %d bytes",
				WITNESS_REQUEST_MAX);
	eol = memchr(p, '\n', len);
	if (eol == NULL || eol - p < 5 || memcmp(p, "old ", 4) != 0 ||
	    util_parse_dec(p + 4, (size_t)(eol - p - 4), &r->old) < 0)
		return cerr_set(err, -EBADMSG, "the first line is not 'old <size>'");
	r->nproof = 0;
	for (p = eol + 1;; p = eol + 1) {
		size_t got = 0;
		const char *bend = NULL;

		if (p >= end)
			return cerr_set(err, -EBADMSG, "no blank line before the checkpoint");
		eol = memchr(p, '\n', (size_t)(end - p));
		if (eol == NULL)
			return cerr_set(err, -EBADMSG, "no blank line before the checkpoint");
		if (eol == p)
			break;
		if (r->nproof == WITNESS_PROOF_MAX)
			return cerr_set(err, -EBADMSG, "more than %d consistency proof lines",
					WITNESS_PROOF_MAX);
		if (eol - p != 44 ||
		    sodium_base642bin(r->proof[r->nproof], 32, p, 44, NULL, &got, &bend,
				      sodium_base64_VARIANT_ORIGINAL) != 0 ||
		    got != 32 || bend != eol)
			return cerr_set(err, -EBADMSG,
					"consistency proof line %zu is not a base64 SHA-256 hash",
					r->nproof + 1);
		r->nproof++;
	}
	r->note = eol + 1;
	r->note_len = (size_t)(end - r->note);
	if (r->note_len == 0)
		return cerr_set(err, -EBADMSG, "no checkpoint after the blank line");
	return 0;
}
