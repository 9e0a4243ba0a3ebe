/* bench_audit.c — audit store figures: durable appends/s with 1, 8 and 64
 * blocking appenders (each waits for its own record, as the broker's
 * requests do), the async pipeline rate, a bulk load, offline verification
 * speed and tenant query latency on a store of --records records.
 *
 *   bench-audit [--records N] [--seconds S] [--dir DIR] [--keep]
 *
 * Prints a markdown table and one JSON line of the same numbers. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "audit.h"

#define NTENANTS 100
#define ORIGIN "custody.bench/audit"

static uint8_t sk[64];

static int bsign(void *ctx, const uint8_t *msg, size_t len, uint8_t sig[static 64])
{
	return crypto_sign_detached(sig, NULL, msg, len, sk) == 0 ? 0 : -EIO;
}

static double cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A token record as the broker writes it. */
static json_t *record(uint64_t i)
{
	char tenant[64], tok[65], rid[37];
	uint8_t h[32];

	snprintf(tenant, sizeof(tenant), "%08x-1111-2222-3333-%012" PRIx64, (unsigned)(i % NTENANTS),
		 (uint64_t)(i % NTENANTS));
	crypto_hash_sha256(h, (const uint8_t *)&i, sizeof(i));
	sodium_bin2hex(tok, sizeof(tok), h, 32);
	util_uuid4(rid);
	return json_pack("{s:s,s:s,s:s,s:{s:i,s:i,s:i,s:s},s:s,s:s,s:s,s:s,s:s,s:I,s:s}", "event",
			 "token", "outcome", "ok", "principal", "soc-tool", "peer", "uid", 1000, "gid",
			 1000, "pid", 4242, "exe", "/usr/bin/soc-tool", "tenant", tenant, "grant",
			 "defender-read", "scope", "https://api.securitycenter.microsoft.com/.default",
			 "cache", "hit", "token_sha256", tok, "expires_at", (json_int_t)1900000000,
			 "request_id", rid);
}

struct appender {
	struct audit *a;
	atomic_bool *stop;
	uint64_t base, done;
	int rc;
};

static void *appender_main(void *arg)
{
	struct appender *p = arg;

	while (!atomic_load(p->stop)) {
		uint64_t seq;
		int rc = audit_append(p->a, record(p->base + p->done), &seq);

		if (rc < 0) {
			p->rc = rc;
			break;
		}
		p->done++;
	}
	return NULL;
}

static double bench_blocking(struct audit *a, int nthreads, double seconds)
{
	pthread_t th[64];
	struct appender ap[64];
	atomic_bool stop = false;
	uint64_t total = 0;
	double t0, t1;

	t0 = now_s();
	for (int i = 0; i < nthreads; i++) {
		ap[i] = (struct appender){.a = a, .stop = &stop, .base = (uint64_t)i << 32};
		if (pthread_create(&th[i], NULL, appender_main, &ap[i]) != 0)
			exit(1);
	}
	usleep((useconds_t)(seconds * 1e6));
	atomic_store(&stop, true);
	for (int i = 0; i < nthreads; i++) {
		pthread_join(th[i], NULL);
		if (ap[i].rc < 0) {
			fprintf(stderr, "append failed: %s\n", strerror(-ap[i].rc));
			exit(1);
		}
		total += ap[i].done;
	}
	t1 = now_s();
	return (double)total / (t1 - t0);
}

/* One submitter keeping `window` async appends in flight (the broker's
 * shape); returns records/s for n records. */
static double bench_async(struct audit *a, uint64_t n, uint64_t window)
{
	struct audit_done d[1024];
	uint64_t sent = 0, got = 0;
	double t0 = now_s();

	while (got < n) {
		while (sent < n && sent - got < window) {
			int rc = audit_append_async(a, record(sent), sent);

			if (rc == -EAGAIN)
				break;
			if (rc < 0) {
				fprintf(stderr, "append_async: %s\n", strerror(-rc));
				exit(1);
			}
			sent++;
		}
		size_t k = audit_poll(a, d, 1024);

		for (size_t i = 0; i < k; i++)
			if (d[i].rc < 0) {
				fprintf(stderr, "record failed: %s\n", strerror(-d[i].rc));
				exit(1);
			}
		got += k;
		if (k == 0)
			usleep(200);
	}
	return (double)n / (now_s() - t0);
}

static int count_cb(void *ctx, uint64_t seq, const char *body, size_t len)
{
	(*(unsigned *)ctx)++;
	return 0;
}

static int cmp_d(const void *x, const void *y)
{
	double a = *(const double *)x, b = *(const double *)y;

	return a < b ? -1 : a > b;
}

int main(int argc, char **argv)
{
	uint64_t records = 1000000;
	double seconds = 3.0, r1, r8, r64, rasync, rload, rverify, verify_s, verify_cpu, load_cpu_us;
	const char *dir = "/var/tmp";
	char path[4096], path2[4096], *vkey = NULL;
	struct audit_signer signer = {.origin = ORIGIN, .sign = bsign};
	/* as custodyd opens it (broker/daemon.c) */
	struct audit_opts o = {.checkpoint_every = 100000, .signer = &signer,
			       .wal_prefill_frames = 4096};
	struct audit_verify_stats st;
	struct cerr err = {{0}};
	struct audit *a;
	double lat[100], p50, p99;
	bool keep = false;
	int c;

	static const struct option lo[] = {{"records", 1, NULL, 'n'}, {"seconds", 1, NULL, 's'},
					   {"dir", 1, NULL, 'd'},     {"keep", 0, NULL, 'k'},
					   {NULL, 0, NULL, 0}};
	while ((c = getopt_long(argc, argv, "n:s:d:k", lo, NULL)) != -1) {
		switch (c) {
		case 'n':
			records = strtoull(optarg, NULL, 10);
			break;
		case 's':
			seconds = strtod(optarg, NULL);
			break;
		case 'd':
			dir = optarg;
			break;
		case 'k':
			keep = true;
			break;
		default:
			fprintf(stderr, "usage: %s [--records N] [--seconds S] [--dir DIR] [--keep]\n",
				argv[0]);
			return 2;
		}
	}
	if (sodium_init() < 0 || records < 1000)
		return 2;
	crypto_sign_keypair(signer.public_key, sk);
	if (audit_vkey(ORIGIN, signer.public_key, &vkey) < 0)
		return 1;
	snprintf(path, sizeof(path), "%s/bench-audit-%d.db", dir, (int)getpid());
	snprintf(path2, sizeof(path2), "%s/bench-audit-%d-big.db", dir, (int)getpid());

	/* 1. durable appends with blocking appenders */
	if (audit_open(path, &o, &a, &err) < 0) {
		fprintf(stderr, "audit_open: %s\n", err.msg);
		return 1;
	}
	r1 = bench_blocking(a, 1, seconds);
	r8 = bench_blocking(a, 8, seconds);
	r64 = bench_blocking(a, 64, seconds);
	rasync = bench_async(a, 200000, 4096);
	if (audit_close(a) < 0)
		return 1;

	/* 2. a store of `records` records, loaded with big batches */
	if (audit_open(path2, &o, &a, &err) < 0) {
		fprintf(stderr, "audit_open: %s\n", err.msg);
		return 1;
	}
	{
		double c0 = cpu_s();

		rload = bench_async(a, records, 65536);
		load_cpu_us = (cpu_s() - c0) * 1e6 / (double)records;
	}
	/* 3. tenant query: newest 100 records of one tenant of 100 */
	for (int i = 0; i < 100; i++) {
		char tenant[64];
		unsigned n = 0;
		struct audit_filter f = {.tenant = tenant, .descending = true, .limit = 100};
		double t0;

		snprintf(tenant, sizeof(tenant), "%08x-1111-2222-3333-%012x", (unsigned)(i * 37 % NTENANTS),
			 (unsigned)(i * 37 % NTENANTS));
		t0 = now_s();
		if (audit_query(a, &f, count_cb, &n) < 0 || n != 100) {
			fprintf(stderr, "query returned %u records\n", n);
			return 1;
		}
		lat[i] = (now_s() - t0) * 1000.0;
	}
	qsort(lat, 100, sizeof(lat[0]), cmp_d);
	p50 = lat[49];
	p99 = lat[98];
	if (audit_close(a) < 0)
		return 1;

	/* 4. offline verification of the whole store */
	{
		double t0 = now_s(), c0 = cpu_s();
		int rc = audit_verify_db(path2, vkey, &st, &err);

		verify_s = now_s() - t0;
		verify_cpu = cpu_s() - c0;
		if (rc < 0 || st.records != records) {
			fprintf(stderr, "verify: %s\n", err.msg);
			return 1;
		}
		rverify = (double)st.records / verify_s;
	}

	printf("| audit store (%" PRIu64 " records, %d tenants) | figure |\n|---|---|\n", records,
	       NTENANTS);
	printf("| durable appends/s, 1 blocking appender | %.0f |\n", r1);
	printf("| durable appends/s, 8 blocking appenders | %.0f |\n", r8);
	printf("| durable appends/s, 64 blocking appenders | %.0f |\n", r64);
	printf("| durable appends/s, async, 4096 in flight | %.0f |\n", rasync);
	printf("| bulk load, async, 65536 in flight | %.0f records/s |\n", rload);
	printf("| bulk load, CPU per record (generator + writer, all threads) | %.1f us |\n",
	       load_cpu_us);
	printf("| verify %" PRIu64 " records, %" PRIu64 " checkpoints | %.2f s = %.0f records/s |\n",
	       st.records, st.checkpoints, verify_s, rverify);
	printf("| verify, per CPU second (load-independent) | %.0f records/s |\n",
	       (double)st.records / verify_cpu);
	printf("| tenant query, newest 100 of one tenant, p50 | %.3f ms |\n", p50);
	printf("| tenant query, newest 100 of one tenant, p99 | %.3f ms |\n", p99);
	printf("{\"append_1_per_s\":%.0f,\"append_8_per_s\":%.0f,\"append_64_per_s\":%.0f,"
	       "\"append_async_per_s\":%.0f,\"load_per_s\":%.0f,\"verify_records_per_s\":%.0f,"
	       "\"verify_records_per_cpu_s\":%.0f,"
	       "\"tenant_query_p50_ms\":%.3f,\"tenant_query_ms\":%.3f}\n",
	       r1, r8, r64, rasync, rload, rverify, (double)st.records / verify_cpu, p50, p99);
	if (!keep) {
		const char *sfx[] = {"", "-wal", "-shm"};

		for (int i = 0; i < 3; i++) {
			char p[4200];

			snprintf(p, sizeof(p), "%s%s", path, sfx[i]);
			unlink(p);
			snprintf(p, sizeof(p), "%s%s", path2, sfx[i]);
			unlink(p);
		}
	}
	free(vkey);
	return 0;
}
