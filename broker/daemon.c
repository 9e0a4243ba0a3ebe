/* daemon.c — custodyd's life: start, signals, reload, grant expiry, stop.
 *
 * custodyd always runs in the foreground (meant for systemd Type=notify,
 * or a test harness that tracks its pid); --foreground is accepted for
 * clarity and compatibility. Logs go to stderr, one line per event,
 * never a secret.
 *
 * Hardening before the first secret is touched: no core dumps
 * (PR_SET_DUMPABLE 0, RLIMIT_CORE 0), umask 077 (the sockets are
 * chmod'ed explicitly), SIGPIPE ignored, and SIGTERM/SIGINT/SIGHUP
 * blocked in every thread and read through a signalfd on the loop.
 */
#include "broker_int.h"
#include "custody_version.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>
#include <sodium.h>

#define EXPIRY_CHECK_MS 1000

/* Stopping: once no request is in flight the loop ends. */
static void stop_when_drained(struct broker *b)
{
	if (b->stopping && b->n_pending == 0)
		loop_stop(b->loop);
}

/* A record that answers nobody (lifecycle events). */
static void lifecycle_record(struct broker *b, json_t *rec)
{
	struct pending *p = pending_new(b, NULL);

	if (p == NULL) {
		json_decref(rec);
		return;
	}
	pending_audit(p, rec);
}

/* ---- grant expiry ------------------------------------------------------- */

struct expiry_seen {
	const char *grant;
	bool found;
};

static int expiry_seen_cb(void *ctx, uint64_t seq, const char *body, size_t len)
{
	struct expiry_seen *e = ctx;
	json_t *rec = json_loadb(body, len, 0, NULL);
	const char *g = json_string_value(json_object_get(rec, "grant"));

	if (g != NULL && strcmp(g, e->grant) == 0)
		e->found = true;
	json_decref(rec);
	return e->found ? 1 : 0;
}

static bool expiry_recorded(void *ctx, const struct grant *g)
{
	struct broker *b = ctx;
	struct expiry_seen e = {.grant = g->id};
	struct audit_filter f = {.tenant = g->tenant_id, .event = "grant.expired"};

	(void)audit_query(b->audit, &f, expiry_seen_cb, &e);
	return e.found;
}

/* Grants that expired while custodyd was down get their record now, once
 * (read at start, before the loop runs). */
static void expiry_init(struct broker *b)
{
	policy_expiry_init(b->policy, util_now_us() / 1000000, expiry_recorded, b);
}

static void expired_one(void *ctx, const struct grant *g)
{
	struct broker *b = ctx;
	char ts[UTIL_TIME_LEN];

	tokens_forget_grant(b->tokens, g->id);
	if (util_time_format(g->not_after * 1000000, false, ts) < 0)
		ts[0] = '\0';
	broker_log("grant %s for tenant %s expired at %s", g->id, g->tenant_id, ts);
	lifecycle_record(b, json_pack("{s:s,s:s,s:s,s:s,s:s}", "event", "grant.expired",
				      "outcome", "ok", "tenant", g->tenant_id, "grant", g->id,
				      "not_after", ts));
}

static void expiry_tick(struct loop *l, struct loop_timer *t, void *ctx)
{
	struct broker *b = ctx;

	policy_expiry_take(b->policy, util_now_us() / 1000000, expired_one, b);
	if (!b->stopping)
		loop_timer_arm(t, EXPIRY_CHECK_MS);
}

/* ---- reload --------------------------------------------------------------- */

static void reload_on_signal(struct broker *b)
{
	struct cerr err = {0};
	int rc;

	json_t *na = json_array();

	util_notify("RELOADING=1");
	rc = broker_reload(b, &err, na);
	lifecycle_record(b, rc == 0 ? json_pack("{s:s,s:s,s:o}", "event", "reload", "outcome", "ok",
						"not_applied", na)
				    : json_pack("{s:s,s:s,s:s}", "event", "reload", "outcome",
						"failed", "message", err.msg));
	if (rc != 0)
		json_decref(na);
	util_notify("READY=1");
}

/* ---- stop ---------------------------------------------------------------------- */

static void stop_deadline(struct loop *l, struct loop_timer *t, void *ctx)
{
	struct broker *b = ctx;

	broker_log("stop: %u requests still in flight after %d ms; giving up on them",
		   b->n_pending, BROKER_STOP_GRACE_MS);
	while (b->pend_head != NULL)
		pending_free(b->pend_head);
	loop_stop(l);
}

static void begin_stop(struct broker *b, const char *why)
{
	if (b->stopping)
		return;
	broker_log("stopping (%s)", why);
	util_notify("STOPPING=1");
	/* the counts of refusals not recorded one by one go in first */
	guard_flush(b, true);
	b->stopping = true;
	server_stop_listening(b);
	if (b->expiry_timer != NULL)
		loop_timer_disarm(b->expiry_timer);
	loop_timer_arm(b->stop_timer, BROKER_STOP_GRACE_MS);
	b->on_drained = stop_when_drained;
	stop_when_drained(b);
}

static void on_signal(struct loop *l, int fd, uint32_t events, void *ctx)
{
	struct broker *b = ctx;
	struct signalfd_siginfo si;

	while (read(fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		if (si.ssi_signo == SIGHUP)
			reload_on_signal(b);
		else if (si.ssi_signo == SIGTERM)
			begin_stop(b, "SIGTERM");
		else if (si.ssi_signo == SIGINT)
			begin_stop(b, "SIGINT");
	}
}

/* ---- start ----------------------------------------------------------------------- */

static void harden(void)
{
	struct rlimit rl = {0, 0};

	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	setrlimit(RLIMIT_CORE, &rl);
	umask(077);
	signal(SIGPIPE, SIG_IGN);
}

/* SIGTERM, SIGINT and SIGHUP through a signalfd: blocked before any
 * thread starts, so only the signalfd sees them. */
static int signals_open(struct broker *b)
{
	sigset_t mask;

	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
		return -errno;
	b->sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	return b->sigfd < 0 ? -errno : 0;
}

/* The audit store, its checkpoints signed with the vault's audit key. */
static int audit_store_open(struct broker *b)
{
	/* exports end at the newest checkpoint the witness quorum cosigned */
	static struct audit_vkey wkeys[AUDIT_WITNESS_MAX];
	struct audit_opts ao = {0};
	struct cerr err = {0};
	int rc;

	b->origin = strdup(b->cfg->audit_origin);
	if (b->origin == NULL)
		return -ENOMEM;
	b->signer.origin = b->origin;
	memcpy(b->signer.public_key, vault_public_keys(b->vault)->sign_pk, 32);
	b->signer.sign = vault_audit_sign;
	b->signer.ctx = b->vault;
	ao.checkpoint_every = b->cfg->checkpoint_every;
	ao.checkpoint_interval_s = b->cfg->checkpoint_interval_s;
	ao.signer = &b->signer;
	/* ~16 MiB: the WAL's laps (a fold every ~4 MiB) overwrite from the start */
	ao.wal_prefill_frames = BROKER_WAL_PREFILL_FRAMES;
	for (size_t i = 0; i < b->cfg->n_witnesses; i++)
		wkeys[i] = b->cfg->witnesses[i].vkey;
	ao.witnesses = wkeys;
	ao.n_witnesses = b->cfg->n_witnesses;
	ao.witness_quorum = b->cfg->witness_quorum;
	rc = audit_open(b->cfg->audit_db, &ao, &b->audit, &err);
	if (rc < 0)
		broker_log("cannot open the audit store: %s", err.msg);
	return rc;
}

/* What runs beside the loop: the offload worker, witnesses, shippers. */
static int helpers_start(struct broker *b)
{
	int rc = offload_init(b);

	if (rc < 0) {
		broker_log("cannot start the admin-reads thread: %s", strerror(-rc));
		return rc;
	}
	rc = witness_client_new(b, &b->wc);
	if (rc < 0) {
		broker_log("cannot start the witness client: %s", strerror(-rc));
		return rc;
	}
	rc = shipper_start(b, &b->ship);
	if (rc < 0)
		broker_log("cannot start shipping the audit trail: %s", strerror(-rc));
	return rc;
}

static void flush_audit(void *ctx)
{
	struct broker *b = ctx;

	audit_flush(b->audit);
}

static int broker_start(struct broker *b)
{
	struct vault_key_source src;
	struct cerr err = {0};
	int rc;

	b->tool_fd = b->admin_fd = b->sigfd = b->off_efd = -1;
	b->on_line = dispatch_line;
	b->on_too_large = dispatch_too_large;
	b->on_foreign_sender = dispatch_foreign_sender;
	b->on_conn_close = admin_follow_stop;
	b->started_us = util_now_us();
	b->outcomes = json_object();
	if (b->outcomes == NULL)
		return -ENOMEM;
	rc = signals_open(b);
	if (rc < 0)
		return rc;
	rc = loop_new(&b->loop);
	if (rc < 0)
		return rc;
	broker_config_key_source(b->cfg, &src);
	rc = vault_open(b->cfg->vault_dir, &src, &b->vault, &err);
	if (rc < 0) {
		broker_log("cannot open the vault: %s", err.msg);
		return rc;
	}
	rc = audit_store_open(b);
	if (rc < 0)
		return rc;
	rc = tokens_new(b->loop, b->vault, &b->cfg->upstream, &b->tokens);
	if (rc < 0) {
		broker_log("cannot start the token cache: %s", strerror(-rc));
		return rc;
	}
	rc = policy_new(&b->policy);
	if (rc < 0)
		return rc;
	policy_set_config(b->policy, b->cfg);
	rc = policy_load(b->policy, b->vault);
	if (rc < 0)
		return rc;
	expiry_init(b);
	/* the records of one loop iteration go to the writer together */
	audit_batch_wakes(b->audit);
	loop_set_before_wait(b->loop, flush_audit, b);
	rc = loop_fd_add(b->loop, b->sigfd, EPOLLIN, on_signal, b);
	if (rc == 0)
		rc = loop_fd_add(b->loop, audit_event_fd(b->audit), EPOLLIN, pending_audit_ready, b);
	if (rc == 0)
		rc = helpers_start(b);
	if (rc == 0)
		rc = loop_timer_new(b->loop, stop_deadline, b, &b->stop_timer);
	if (rc == 0)
		rc = loop_timer_new(b->loop, expiry_tick, b, &b->expiry_timer);
	if (rc == 0)
		rc = guard_init(b);
	if (rc == 0)
		rc = server_listen(b);
	return rc;
}

static void broker_finish(struct broker *b)
{
	/* first: a running export still reads the audit store */
	offload_fini(b);
	/* after the worker: its jobs point at the witness client */
	witness_client_free(b->wc);
	b->wc = NULL;
	/* the shippers read the store through their own connections */
	shipper_stop(b->ship);
	b->ship = NULL;
	if (b->loop != NULL) {
		server_stop_listening(b);
		server_close_all(b);
		while (b->pend_head != NULL)
			pending_free(b->pend_head);
		guard_fini(b);
	}
	if (b->tokens != NULL)
		tokens_free(b->tokens);
	if (b->audit != NULL) {
		if (b->loop != NULL && b->sigfd >= 0)
			loop_fd_del(b->loop, audit_event_fd(b->audit));
		if (audit_close(b->audit) < 0)
			broker_log("closing the audit store failed: the final checkpoint may be missing");
	}
	if (b->vault != NULL)
		vault_close(b->vault);
	policy_free(b->policy);
	if (b->loop != NULL)
		loop_free(b->loop);
	if (b->sigfd >= 0)
		close(b->sigfd);
	listen_fds_close(&b->passed);
	json_decref(b->outcomes);
	audit_jbuf_free(&b->reply_head);
	free(b->origin);
	peer_cache_free();
}

static void usage(FILE *f)
{
	fprintf(f, "usage: custodyd [--config FILE] [--foreground]\n"
		   "  --config FILE   config file (default $CUSTODY_CONFIG or %s)\n"
		   "  --foreground    run in the foreground (always the case: custodyd is\n"
		   "                  meant for systemd Type=notify or a supervisor)\n"
		   "  --version       print the version\n"
		   "Sockets passed by systemd (LISTEN_FDS, named tool and admin) are used as\n"
		   "they are; custodyd binds the ones it was not given (custodyd(8)).\n",
		   BROKER_DEFAULT_CONFIG);
}

int broker_main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"config", required_argument, NULL, 'c'},
		{"foreground", no_argument, NULL, 'f'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	struct broker b = {0};
	const char *config_arg = NULL;
	struct cerr err = {0};
	uint64_t seq = 0;
	int opt, rc, status = 1;

	while ((opt = getopt_long(argc, argv, "c:fhV", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			config_arg = optarg;
			break;
		case 'f':
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("custodyd %s\n", CUSTODY_VERSION);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	harden();
	/* First, before any thread: sockets systemd passed (listen_fds.c). */
	rc = listen_fds_take(&b.passed, &err);
	if (rc < 0) {
		broker_log("%s", err.msg);
		return 1;
	}
	if (sodium_init() < 0) {
		broker_log("libsodium failed to initialize");
		return 1;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		broker_log("libcurl failed to initialize");
		return 1;
	}
	b.config_path = (char *)broker_config_path(config_arg);
	rc = broker_config_load(b.config_path, &b.cfg, &err);
	if (rc < 0) {
		broker_log("%s", err.msg);
		goto out;
	}
	rc = broker_start(&b);
	if (rc < 0)
		goto out;
	rc = audit_append(b.audit, json_pack("{s:s,s:s,s:s,s:I,s:s}", "event", "start", "outcome",
					     "ok", "version", CUSTODY_VERSION, "pid", (json_int_t)getpid(),
					     "config", b.config_path),
			  &seq);
	if (rc < 0) {
		broker_log("cannot write the start record: the audit store is not writable (%s)",
			   strerror(-rc));
		goto out;
	}
	loop_timer_arm(b.expiry_timer, 0);
	broker_log("started: %zu grants, %zu principals%s, tool socket %s, admin socket %s",
		   policy_grant_count(b.policy), b.cfg->n_principals,
		   policy_locked_down(b.policy, NULL) ? ", LOCKED DOWN" : "", b.tool_path,
		   b.admin_path);
	util_notify("READY=1");
	rc = loop_run(b.loop);
	if (rc < 0)
		broker_log("event loop failed: %s", strerror(-rc));
	server_stop_listening(&b);
	server_close_all(&b);
	rc = audit_append(b.audit, json_pack("{s:s,s:s}", "event", "stop", "outcome", "ok"), &seq);
	if (rc < 0)
		broker_log("cannot write the stop record (%s)", strerror(-rc));
	broker_log("stopped");
	status = 0;
out:
	broker_finish(&b);
	broker_config_free(b.cfg);
	curl_global_cleanup();
	return status;
}
