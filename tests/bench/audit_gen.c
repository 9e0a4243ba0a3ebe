/*
 * audit_gen: the audit figures for run.py when the audit helper's
 * bench-audit is not built. Writes N token records over T tenants through
 * the real audit library (audit_append_async, group commits, signed
 * checkpoints every 1000 records), closes the store, then times
 * audit_verify_db over the whole file and audit_query for one tenant.
 *
 * usage: audit_gen DB RECORDS TENANTS
 * Prints one JSON object on stdout (with the verifier key, so `custody
 * audit verify --db DB --key KEY` can be timed too). DB must not exist.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "audit.h"

struct signer_key {
	uint8_t sk[crypto_sign_SECRETKEYBYTES];
};

static int sign_cb(void *ctx, const uint8_t *msg, size_t len, uint8_t sig[static 64])
{
	const struct signer_key *k = ctx;

	return crypto_sign_detached(sig, NULL, msg, len, k->sk) == 0 ? 0 : -EINVAL;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int count_cb(void *ctx, uint64_t seq, const char *body, size_t len)
{
	(void)seq;
	(void)body;
	(void)len;
	(*(uint64_t *)ctx)++;
	return 0;
}

static json_t *record(uint64_t i, unsigned tenants)
{
	char tenant[64], sha[65], crid[37];
	unsigned char h[32];

	snprintf(tenant, sizeof(tenant), "5eed0000-0000-4000-8000-%012u", (unsigned)(i % tenants));
	crypto_hash_sha256(h, (const unsigned char *)&i, sizeof(i));
	sodium_bin2hex(sha, sizeof(sha), h, sizeof(h));
	snprintf(crid, sizeof(crid), "%.8s-%.4s-4%.3s-8%.3s-%.12s", sha, sha + 8, sha + 12, sha + 15, sha + 18);
	return json_pack("{s:s, s:s, s:s, s:s, s:{s:i, s:i, s:i, s:s}, s:s, s:s, s:s, s:s, s:s, s:s, s:I}",
			 "event", "token", "outcome", "ok", "principal", "siem-connector", "tenant", tenant,
			 "peer", "uid", 1001, "gid", 1001, "pid", 4242, "exe", "/usr/local/bin/siem-pull",
			 "grant", "g_0123456789abcdef0123", "scope",
			 "https://api.securitycenter.microsoft.com/.default", "cache", "hit",
			 "token_sha256", sha, "client_request_id", crid, "expires_at", "2026-11-29T06:00:00Z",
			 "request_id", (json_int_t)i);
}

int main(int argc, char **argv)
{
	static const char origin[] = "bench.custody.invalid/audit";
	struct signer_key key;
	struct audit_signer signer = { .origin = origin, .sign = sign_cb, .ctx = &key };
	struct audit_opts opts = { .checkpoint_every = 1000, .signer = &signer };
	struct audit_verify_stats st = { 0 };
	struct audit_done done[1024];
	struct audit *a = NULL;
	struct cerr err = { { 0 } };
	uint64_t n, queued = 0, completed = 0, rows = 0, rows100 = 0;
	unsigned tenants;
	char *vkey = NULL;
	double t0, t_write, t_verify, t_query, t_query100;
	int rc;

	if (argc != 4 || sodium_init() < 0) {
		fprintf(stderr, "usage: audit_gen DB RECORDS TENANTS\n");
		return 2;
	}
	n = strtoull(argv[2], NULL, 10);
	tenants = (unsigned)strtoul(argv[3], NULL, 10);
	if (n == 0 || tenants == 0)
		return 2;
	crypto_sign_keypair(signer.public_key, key.sk);
	if (audit_vkey(origin, signer.public_key, &vkey) < 0 ||
	    audit_open(argv[1], &opts, &a, &err) < 0) {
		fprintf(stderr, "audit_gen: %s\n", err.msg[0] ? err.msg : "cannot open the store");
		return 1;
	}

	/* Keep a bounded number queued so the writer sees big batches but
	 * memory stays flat. */
	t0 = now_s();
	while (completed < n) {
		while (queued < n && queued - completed < 8192) {
			rc = audit_append_async(a, record(queued, tenants), queued);
			if (rc < 0) {
				fprintf(stderr, "audit_gen: append: %s\n", strerror(-rc));
				return 1;
			}
			queued++;
		}
		struct pollfd pfd = { .fd = audit_event_fd(a), .events = POLLIN };

		if (poll(&pfd, 1, 10000) <= 0) {
			fprintf(stderr, "audit_gen: the writer stalled\n");
			return 1;
		}
		for (size_t k, got; (got = audit_poll(a, done, 1024)) > 0;) {
			for (k = 0; k < got; k++) {
				if (done[k].rc < 0) {
					fprintf(stderr, "audit_gen: record not written: %s\n", strerror(-done[k].rc));
					return 1;
				}
			}
			completed += got;
		}
	}
	t_write = now_s() - t0;
	rc = audit_close(a);
	a = NULL;
	if (rc < 0) {
		fprintf(stderr, "audit_gen: close: %s\n", strerror(-rc));
		return 1;
	}

	t0 = now_s();
	rc = audit_verify_db(argv[1], vkey, &st, &err);
	t_verify = now_s() - t0;
	if (rc < 0) {
		fprintf(stderr, "audit_gen: verify failed: %s\n", err.msg);
		return 1;
	}

	{
		struct audit_opts ro = { .read_only = true };
		struct audit_filter f = { .tenant = "5eed0000-0000-4000-8000-000000000007" };

		if (audit_open(argv[1], &ro, &a, &err) < 0) {
			fprintf(stderr, "audit_gen: reopen: %s\n", err.msg);
			return 1;
		}
		t0 = now_s();
		rc = audit_query(a, &f, count_cb, &rows);
		t_query = now_s() - t0;
		f.limit = 100;
		f.descending = true;
		t0 = now_s();
		rc = rc < 0 ? rc : audit_query(a, &f, count_cb, &rows100);
		t_query100 = now_s() - t0;
		audit_close(a);
		if (rc < 0) {
			fprintf(stderr, "audit_gen: query: %s\n", strerror(-rc));
			return 1;
		}
	}
	printf("{\"records\":%" PRIu64 ",\"tenants\":%u,\"write_s\":%.3f,\"append_records_per_s\":%.0f,"
	       "\"verify_s\":%.3f,\"verify_records_per_s\":%.0f,\"verified_records\":%" PRIu64
	       ",\"verified_checkpoints\":%" PRIu64 ",\"tenant_query_rows\":%" PRIu64 ",\"tenant_query_ms\":%.2f,"
	       "\"tenant_query_newest100_ms\":%.2f,\"verifier_key\":\"%s\"}\n",
	       n, tenants, t_write, (double)n / t_write, t_verify, (double)st.records / t_verify, st.records,
	       st.checkpoints, rows, t_query * 1000, t_query100 * 1000, vkey);
	sodium_memzero(&key, sizeof(key));
	free(vkey);
	return 0;
}
