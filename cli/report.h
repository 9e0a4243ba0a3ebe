/* report.h — `custody audit report`: the audit trail as one self-contained
 * HTML page a customer reads (DESIGN.md §11.3).
 *
 * The page is built only from what the audit library's verification hands
 * over: report_record is its on_record callback (audit_verify_opts), so a
 * record the verifier did not reach is never shown, and the banner says
 * what the verifier's result (audit_verify_stats) says. Every
 * string from a record is hostile: HTML-escaped, control and bidi
 * characters shown as visible code points, long text cut with its length
 * said. No script; a Content-Security-Policy that lets nothing load.
 *
 * Errors: 0 or -ENOMEM (callbacks), -EIO (writing).
 */
#ifndef CUSTODY_CLI_REPORT_H
#define CUSTODY_CLI_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "audit.h"

struct report;

/* What the page's banner says about the verification. */
enum report_outcome {
	REPORT_VERIFIED,   /* every record under a verified signed checkpoint */
	REPORT_PARTLY,     /* verified, but the newest records are under none yet */
	REPORT_TAMPERED,   /* a mismatch (-EBADMSG) */
	REPORT_WRONG_KEY,  /* the key is not this log's (-EKEYREJECTED) */
	REPORT_INCOMPLETE, /* no signed checkpoint covers any record (-ENODATA) */
	REPORT_UNWITNESSED,/* verified, but short of the witnesses asked for */
};

struct report_verdict {
	enum report_outcome outcome;
	const char *source;      /* the file verified, as the user named it */
	bool is_db;              /* a whole store (all tenants) rather than an export */
	const char *vkey;        /* the verifier key used */
	const char *message;     /* not verified: what the verifier said */
	const struct audit_verify_stats *st; /* the verifier's result */
	/* --witness: the keys, what their check found and the quorum asked
	 * for (n_witness 0: none given) */
	const struct audit_vkey *wkeys;
	size_t n_witness;
	const struct audit_witness_check *wcheck;
	unsigned quorum;
};

/* per_tenant: one section per tenant (the MSSP's view of a store). */
int report_new(bool per_tenant, struct report **out);
void report_free(struct report *r);

/* struct audit_verify_opts.on_record (ctx: the report). */
int report_record(void *ctx, uint64_t seq, const char *body, size_t len, json_t *parsed);

/* Write the page. 0 or -EIO. */
int report_write(struct report *r, const struct report_verdict *v, FILE *out);

/* Write s (len bytes of UTF-8) as HTML text: &<>"' escaped, control,
 * bidi and invisible formatting characters as a visible "U+XXXX", at most
 * limit code points (0: all) then a note of how many were left out.
 * Exposed for the unit test. */
void report_html_text(FILE *out, const char *s, size_t len, size_t limit);

#endif
