/*
 * report-gen: a signed tenant export (custody-audit-export/1) of N records
 * spread over D days, for the `custody audit report` tests and its timing.
 * The broker stamps records with the time they happen, so a trail of
 * months cannot come from a live broker in a test; this writes what the
 * store would, through the audit library's own Merkle tree and signed-note
 * code: canonical bodies (audit_canonical_json), a dense tenant chain,
 * RFC 9162 inclusion proofs, an Ed25519-signed checkpoint.
 *
 * usage: report-gen OUT N [DAYS] [--hostile] [--cosign NAME]
 * Prints the verifier key on stdout. --hostile mixes in records whose
 * strings attack the page: markup, bidi overrides, 60 KiB of text.
 * --cosign adds a witness cosignature (cosignature/v1) by NAME to the
 * checkpoint and prints that witness's key on a second line.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "audit.h"
#include "merkle.h"
#include "note.h"

#define ORIGIN "report.custody.test/audit"
#define TENANT "5eed0000-0000-4000-8000-000000000001"
#define START_S INT64_C(1764547200) /* 2025-12-01T00:00:00Z */

static int sign_cb(void *ctx, const uint8_t *msg, size_t len, uint8_t sig[static 64])
{
	return crypto_sign_detached(sig, NULL, msg, len, ctx) == 0 ? 0 : -EINVAL;
}

static const char *const principals[] = { "siem-connector", "soar-playbook", "analyst-console" };
static const char *const purposes[] = {
	"pull alerts for the SIEM", "enrich incident with device timeline",
	"hourly vulnerability sync", "analyst investigation", "isolate device (playbook)",
	"weekly secure score export",
};
static const char *const scopes[] = { "https://api.securitycenter.microsoft.com/.default",
				      "https://graph.microsoft.com/.default" };
static const char *const refusals[] = { "rate_limited", "scope_not_granted", "denied",
					"suspended", "locked_down" };

static char *big_text(size_t n, const char *unit)
{
	size_t ul = strlen(unit), i;
	char *s = malloc(n + 1);

	if (s == NULL)
		abort();
	for (i = 0; i + ul <= n; i += ul)
		memcpy(s + i, unit, ul);
	s[i] = '\0';
	return s;
}

/* The hostile strings: each goes into some record field the page shows. */
static json_t *hostile(uint64_t k)
{
	static char *long_ascii, *long_rtl;

	if (long_ascii == NULL) {
		long_ascii = big_text(60 * 1024, "<script>alert(1)</script>AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
		long_rtl = big_text(60 * 1024, "\xe2\x80\xae\xd7\xa9\xd7\x9c\xd7\x95\xd7\x9d");
	}
	switch (k % 8) {
	case 0:
		return json_pack("{s:s, s:s}", "purpose", "<script>alert(1)</script>",
				 "principal", "siem-connector");
	case 1:
		return json_pack("{s:s, s:s}", "purpose", "\"><img src=x onerror=alert(1)>",
				 "principal", "'><svg onload=alert(2)>");
	case 2:
		/* right-to-left override: "report.exe" shown as "exe.troper" */
		return json_pack("{s:s, s:s}", "purpose", "invoice \xe2\x80\xae" "exe.troper\xe2\x80\xac done",
				 "principal", "\xe2\x80\xae" "rotcennoc-meis");
	case 3:
		return json_pack("{s:s, s:{s:s}}", "purpose", long_ascii, "peer", "exe",
				 "/tmp/<iframe src=https://evil.example/>");
	case 4:
		return json_pack("{s:s}", "purpose", long_rtl);
	case 5:
		return json_pack("{s:s, s:s}", "purpose", "</td></tr></table><h1>pwned</h1><table><tr><td>",
				 "client_request_id", "<a href=\"https://evil.example/\">x</a>");
	case 6:
		return json_pack("{s:s}", "purpose",
				 "<link rel=stylesheet href=//evil.example/x.css><style>body{display:none}</style>");
	default:
		return json_pack("{s:s}", "purpose", "\xe2\x81\xa7 isolate \xe2\x80\x8f mark \x01\x7f ctl");
	}
}

static json_t *record(uint64_t i, uint64_t n, unsigned days, bool hostile_mode, char **reason_big)
{
	int64_t us = (START_S * 1000000) + (int64_t)((double)(i - 1) / (double)n * days * 86400e6);
	char time[UTIL_TIME_LEN], sha[65], crid[37], uti[32];
	unsigned char h[32];
	uint64_t r = i * 2654435761u;
	json_t *o, *extra = NULL;

	util_time_format(us, true, time);
	crypto_hash_sha256(h, (const unsigned char *)&i, sizeof(i));
	sodium_bin2hex(sha, sizeof(sha), h, sizeof(h));
	snprintf(crid, sizeof(crid), "%.8s-%.4s-4%.3s-8%.3s-%.12s", sha + 1, sha + 9, sha + 13,
		 sha + 16, sha + 20);
	sodium_bin2base64(uti, sizeof(uti), h + 8, 16, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	if (i % 997 == 500) {
		o = json_pack("{s:s, s:s, s:s, s:s, s:[{s:s, s:s, s:i, s:s}]}", "event",
			      "admin.grant.revoke", "outcome", "ok", "actor", "officer-jane", "reason",
			      "credential rotation: contract renewed", "revoked", "grant",
			      "g_0123456789abcdef0123", "state", "revoked", "outstanding_tokens", 3,
			      "valid_until", "2026-01-01T01:00:00Z");
	} else if (i % 499 == 7) {
		o = json_pack("{s:s, s:s, s:s, s:s}", "event", "admin.audit.export", "outcome", "ok",
			      "actor", "mssp-auditor", "tenant_name", "contoso");
	} else if (i % 10 == 3 || i % 10 == 7) {
		o = json_pack("{s:s, s:s, s:s, s:s, s:s}", "event", "token", "outcome",
			      refusals[r % 5], "error", refusals[r % 5], "principal",
			      principals[r % 3], "purpose", purposes[r % 6]);
	} else if (i % 50 == 11) {
		o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "event", "token", "outcome",
			      "upstream_unavailable", "error", "upstream_unavailable", "principal",
			      principals[r % 3], "purpose", purposes[r % 6], "scope", scopes[0]);
	} else {
		o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "event", "token",
			      "outcome", "ok", "principal", principals[r % 3], "purpose",
			      purposes[(r >> 3) % 6], "scope", scopes[(r >> 5) % 2], "cache",
			      (r >> 7) % 4 ? "hit" : "miss", "token_sha256", sha, "token_uti", uti,
			      "client_request_id", crid, "grant", "g_0123456789abcdef0123");
		json_object_set_new(o, "peer", json_pack("{s:i, s:i, s:i, s:s}", "uid", 1001, "gid",
							 1001, "pid", 4000 + (int)(r % 50), "exe",
							 "/usr/local/bin/siem-pull"));
	}
	if (hostile_mode && i % 5 == 2 && i / 5 < 16) {
		extra = hostile(i / 5);
		json_object_update(o, extra);
		json_decref(extra);
	}
	if (hostile_mode && i == 9) {
		/* an officer action whose reason attacks the page: 60 KiB with markup */
		json_decref(o);
		if (*reason_big == NULL)
			*reason_big = big_text(60 * 1024, "\"><script>alert(3)</script>\xe2\x80\xae");
		o = json_pack("{s:s, s:s, s:s, s:s, s:[{s:s, s:s, s:i, s:s}]}", "event",
			      "admin.grant.revoke", "outcome", "ok", "actor", "<b>mallory</b>", "reason",
			      *reason_big, "revoked", "grant", "g_<i>x</i>", "state", "revoked",
			      "outstanding_tokens", 2, "valid_until", "2026-01-01T01:00:00Z");
	}
	json_object_set_new(o, "time", json_string(time));
	json_object_set_new(o, "tenant", json_string(TENANT));
	json_object_set_new(o, "seq", json_integer((json_int_t)i));
	json_object_set_new(o, "tenant_seq", json_integer((json_int_t)i));
	return o;
}

static void put_b64(FILE *f, const uint8_t h[static 32])
{
	char b[64];

	sodium_bin2base64(b, sizeof(b), h, 32, sodium_base64_VARIANT_ORIGINAL);
	fprintf(f, "\"%s\"", b);
}

int main(int argc, char **argv)
{
	uint8_t pk[32], sk[64], seed[32] = { 7 }, root[32], prev[32];
	struct audit_signer signer = { .origin = ORIGIN, .sign = sign_cb, .ctx = sk };
	struct merkle_tree tree = { 0 };
	uint8_t(*leaves)[32];
	char **bodies, *note = NULL, *vkey = NULL, *reason_big = NULL, *witness_vkey = NULL;
	uint64_t n, i;
	unsigned days = 90;
	bool hostile_mode = false;
	const char *cosigner = NULL;
	FILE *f;

	if (argc < 3) {
		fprintf(stderr, "usage: report-gen OUT N [DAYS] [--hostile]\n");
		return 2;
	}
	n = strtoull(argv[2], NULL, 10);
	for (int a = 3; a < argc; a++) {
		if (strcmp(argv[a], "--hostile") == 0)
			hostile_mode = true;
		else if (strcmp(argv[a], "--cosign") == 0 && a + 1 < argc)
			cosigner = argv[++a];
		else
			days = (unsigned)strtoul(argv[a], NULL, 10);
	}
	if (n == 0 || days == 0 || sodium_init() < 0)
		return 2;
	crypto_sign_seed_keypair(pk, sk, seed);
	memcpy(signer.public_key, pk, 32);
	leaves = malloc(n * sizeof(*leaves));
	bodies = calloc(n, sizeof(*bodies));
	if (leaves == NULL || bodies == NULL)
		return 1;
	for (i = 1; i <= n; i++) {
		json_t *o = record(i, n, days, hostile_mode, &reason_big);
		char hex[65];

		if (i == 1) {
			json_object_set_new(o, "tenant_prev", json_null());
		} else {
			sodium_bin2hex(hex, sizeof(hex), prev, 32);
			json_object_set_new(o, "tenant_prev", json_string(hex));
		}
		bodies[i - 1] = audit_canonical_json(o, NULL);
		json_decref(o);
		if (bodies[i - 1] == NULL)
			return 1;
		merkle_leaf_hash(bodies[i - 1], strlen(bodies[i - 1]), leaves[i - 1]);
		memcpy(prev, leaves[i - 1], 32);
	}
	if (merkle_tree_build((const uint8_t(*)[32])leaves, n, &tree) < 0)
		return 1;
	merkle_tree_root(&tree, root);
	if (note_checkpoint_sign(&signer, n, root, &note) < 0 || audit_vkey(ORIGIN, pk, &vkey) < 0)
		return 1;
	if (cosigner != NULL) {
		uint8_t wpk[32], wsk[64], wseed[32] = { 9 };
		char *line = NULL, *wkey = NULL, *both = NULL;
		size_t body_len = (size_t)(strstr(note, "\n\n") - note) + 1;

		crypto_sign_seed_keypair(wpk, wsk, wseed);
		if (audit_cosig_sign(cosigner, wsk, note, body_len, (uint64_t)time(NULL) - 60,
				     &line) < 0 ||
		    audit_vkey_format_type(cosigner, AUDIT_SIG_TYPE_COSIG_V1, wpk, &wkey) < 0 ||
		    asprintf(&both, "%s%s", note, line) < 0)
			return 1;
		free(note);
		note = both;
		free(line);
		witness_vkey = wkey;
	}
	f = fopen(argv[1], "w");
	if (f == NULL)
		return 1;
	fprintf(f, "{\"format\":\"custody-audit-export/1\",\"origin\":\"%s\",\"tenant\":\"%s\","
		   "\"since\":null,\"until\":null,\"previous\":null,\"first_tenant_seq\":1,"
		   "\"last_tenant_seq\":%" PRIu64 ",\"checkpoint\":", ORIGIN, TENANT, n);
	{
		json_t *jn = json_string(note);

		json_dumpf(jn, f, JSON_ENCODE_ANY);
		json_decref(jn);
	}
	fprintf(f, ",\"tree_size\":%" PRIu64 ",\"records\":[", n);
	for (i = 0; i < n; i++) {
		uint8_t(*path)[32] = NULL;
		size_t np = 0;
		json_t *b = json_string(bodies[i]);

		if (merkle_tree_inclusion(&tree, i, &path, &np) < 0)
			return 1;
		fprintf(f, "%s{\"seq\":%" PRIu64 ",\"leaf_index\":%" PRIu64 ",\"body\":", i ? "," : "",
			i + 1, i);
		json_dumpf(b, f, JSON_ENCODE_ANY);
		json_decref(b);
		fputs(",\"inclusion\":[", f);
		for (size_t k = 0; k < np; k++) {
			if (k)
				fputc(',', f);
			put_b64(f, path[k]);
		}
		fputs("]}\n", f);
		free(path);
		free(bodies[i]);
	}
	fputs("],\"consistency\":null}\n", f);
	if (fclose(f) != 0)
		return 1;
	printf("%s\n", vkey);
	if (witness_vkey != NULL)
		printf("%s\n", witness_vkey);
	free(witness_vkey);
	merkle_tree_free(&tree);
	free(leaves);
	free(bodies);
	free(note);
	free(vkey);
	free(reason_big);
	return 0;
}
