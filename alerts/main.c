/* main.c — custody-alerts: the command line (DESIGN.md §12).
 *
 *   custody-alerts run [--config FILE] [--once]
 *   custody-alerts test-email --rule NAME [--config FILE]
 *   custody-alerts status [--config FILE] [--json]
 *
 * `run` without --once is a Type=notify service: READY=1 once the state
 * is open, a pass every interval_s, STOPPING=1 and exit 0 on SIGTERM (a
 * pass in progress stops at once; unfinished tenants keep their cursors).
 */
#include "alerts.h"
#include "custody_version.h"

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <sodium.h>

static const char usage[] =
	"usage: custody-alerts run [--config FILE] [--once]\n"
	"       custody-alerts test-email --rule NAME [--config FILE]\n"
	"       custody-alerts status [--config FILE] [--json]\n"
	"\n"
	"Fetch every customer's Defender for Endpoint alerts with tokens from\n"
	"custodyd, hand them to the configured outputs (file, syslog, splunk_hec)\n"
	"and send the e-mail notifications the rules ask for.\n"
	"\n"
	"  run          poll every interval_s as a service (Type=notify; SIGTERM stops)\n"
	"    --once     one pass over every tenant, then exit: 0 all succeeded,\n"
	"               4 a tenant's API or an output failed, 5 the broker cannot be\n"
	"               reached, 3 the broker refused\n"
	"  test-email   send a test message for one notification rule\n"
	"  status       per tenant: cursor, last success, last error, alerts delivered;\n"
	"               per output: alerts waiting (--json: one JSON object)\n"
	"\n"
	"  --config FILE  default $CUSTODY_ALERTS_CONFIG, else " ALERTS_DEFAULT_CONFIG "\n"
	"  --version      print the version\n";

struct opts {
	const char *config;
	const char *rule;
	bool once, json;
};

static int load(const struct opts *o, struct alerts_config **c)
{
	struct cerr e = { "" };
	const char *path = o->config;

	if (path == NULL)
		path = getenv("CUSTODY_ALERTS_CONFIG");
	if (path == NULL || path[0] == '\0')
		path = ALERTS_DEFAULT_CONFIG;
	if (alerts_config_load(path, c, &e) < 0) {
		fprintf(stderr, "custody-alerts: %s\n", e.msg);
		return AX_ERROR;
	}
	return AX_OK;
}

static int signal_fd(void)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		return -1;
	return signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
}

static void summary(const struct pass_result *r, int64_t ms)
{
	fprintf(stderr, "custody-alerts: pass: %zu tenant%s, %zu ok, %zu alert%s delivered, "
		"%zu notification%s queued (%lld.%03lld s)\n", r->tenants, r->tenants == 1 ? "" : "s",
		r->tenants_ok, r->delivered, r->delivered == 1 ? "" : "s", r->notified,
		r->notified == 1 ? "" : "s", (long long)(ms / 1000), (long long)(ms % 1000));
}

static int cmd_run(const struct opts *o)
{
	struct alerts_config *c = NULL;
	struct state *s = NULL;
	struct cerr e = { "" };
	struct pass_result r;
	int st, sfd = -1, rc;

	st = load(o, &c);
	if (st != AX_OK)
		return st;
	if (state_open(c->state_dir, true, &s, &e) < 0) {
		fprintf(stderr, "custody-alerts: %s\n", e.msg);
		alerts_config_free(c);
		return AX_ERROR;
	}
	sfd = signal_fd();
	if (o->once) {
		int64_t t0 = util_mono_ms();

		rc = alerts_pass(c, s, sfd, &r, &e);
		if (rc < 0 && rc != -EINTR)
			fprintf(stderr, "custody-alerts: %s\n", e.msg);
		summary(&r, util_mono_ms() - t0);
		st = rc == -EINTR ? AX_FAILED : r.status;
		goto out;
	}
	util_notify("READY=1");
	for (;;) {
		int64_t t0 = util_mono_ms(), left;
		char status[200];
		struct pollfd pfd = { .fd = sfd, .events = POLLIN };

		memset(&e, 0, sizeof(e));
		rc = alerts_pass(c, s, sfd, &r, &e);
		if (rc == -EINTR)
			break;
		if (rc < 0)
			fprintf(stderr, "custody-alerts: %s\n", e.msg);
		summary(&r, util_mono_ms() - t0);
		snprintf(status, sizeof(status), "STATUS=last pass: %zu/%zu tenants ok, %zu alerts "
			 "delivered", r.tenants_ok, r.tenants, r.delivered);
		util_notify(status);
		left = (int64_t)c->interval_s * 1000 - (util_mono_ms() - t0);
		if (left < 1000)
			left = 1000;
		if (poll(&pfd, 1, (int)left) > 0)
			break;
	}
	util_notify("STOPPING=1");
	fprintf(stderr, "custody-alerts: stopped\n");
	st = AX_OK;
out:
	if (sfd >= 0)
		close(sfd);
	state_close(s);
	alerts_config_free(c);
	return st;
}

static int cmd_test_email(const struct opts *o)
{
	struct alerts_config *c = NULL;
	const struct rule_config *r = NULL;
	struct cerr e = { "" };
	json_t *fake;
	char *msg;
	int st;

	if (o->rule == NULL) {
		fprintf(stderr, "custody-alerts: test-email: --rule NAME is required\n%s", usage);
		return AX_USAGE;
	}
	st = load(o, &c);
	if (st != AX_OK)
		return st;
	for (size_t i = 0; i < c->n_rules; i++)
		if (strcmp(c->rules[i].name, o->rule) == 0)
			r = &c->rules[i];
	if (r == NULL) {
		fprintf(stderr, "custody-alerts: test-email: no notification rule named \"%s\" in "
			"the config\n", o->rule);
		alerts_config_free(c);
		return AX_USAGE;
	}
	fake = json_object();
	msg = notice_message(c, r, fake, true);
	json_decref(fake);
	if (msg == NULL) {
		alerts_config_free(c);
		return AX_ERROR;
	}
	if (smtp_send(c, r, msg, &e) < 0) {
		fprintf(stderr, "custody-alerts: test-email: %s\n", e.msg);
		st = AX_FAILED;
	} else {
		printf("sent a test message for rule \"%s\" to", r->name);
		for (size_t i = 0; i < r->n_to; i++)
			printf("%s %s", i ? "," : "", r->to[i]);
		printf("\n");
	}
	free(msg);
	alerts_config_free(c);
	return st;
}

static const char *or_dash(const json_t *v)
{
	return json_is_string(v) ? json_string_value(v) : "-";
}

static int cmd_status(const struct opts *o)
{
	struct alerts_config *c = NULL;
	struct state *s = NULL;
	struct cerr e = { "" };
	json_t *j = NULL, *x;
	size_t i;
	int st;

	st = load(o, &c);
	if (st != AX_OK)
		return st;
	if (state_open(c->state_dir, false, &s, &e) < 0 || state_status(s, &j) < 0) {
		fprintf(stderr, "custody-alerts: %s\n", e.msg[0] ? e.msg : "cannot read the state");
		state_close(s);
		alerts_config_free(c);
		return AX_ERROR;
	}
	if (o->json) {
		json_dumpf(j, stdout, JSON_INDENT(2));
		printf("\n");
	} else {
		printf("%-20s %-36s %-27s %-20s %9s  %s\n", "TENANT", "TENANT ID", "CURSOR",
		       "LAST SUCCESS", "DELIVERED", "LAST ERROR");
		json_array_foreach(json_object_get(j, "tenants"), i, x)
			printf("%-20s %-36s %-27s %-20s %9lld  %s\n", or_dash(json_object_get(x, "tenant")),
			       or_dash(json_object_get(x, "tenant_id")),
			       or_dash(json_object_get(x, "cursor")),
			       or_dash(json_object_get(x, "last_success")),
			       (long long)json_integer_value(json_object_get(x, "alerts_delivered")),
			       or_dash(json_object_get(x, "last_error")));
		printf("\n%-60s %7s  %s\n", "OUTPUT", "WAITING", "LAST ERROR");
		json_array_foreach(json_object_get(j, "outputs"), i, x)
			printf("%-60s %7lld  %s\n", or_dash(json_object_get(x, "output")),
			       (long long)json_integer_value(json_object_get(x, "alerts_waiting")),
			       or_dash(json_object_get(x, "last_error")));
		x = json_object_get(j, "notifications");
		printf("\nnotifications: %lld sent, %lld failed (retried next pass), %lld unconfirmed "
		       "(interrupted while sending; never sent again)\n",
		       (long long)json_integer_value(json_object_get(x, "sent")),
		       (long long)json_integer_value(json_object_get(x, "failed")),
		       (long long)json_integer_value(json_object_get(x, "unconfirmed")));
	}
	json_decref(j);
	state_close(s);
	alerts_config_free(c);
	return AX_OK;
}

int main(int argc, char **argv)
{
	static const struct option long_opts[] = {
		{ "config", required_argument, NULL, 'c' }, { "once", no_argument, NULL, 'o' },
		{ "rule", required_argument, NULL, 'r' },   { "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },         { "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct opts o = { 0 };
	const char *cmd;
	int ch, st;

	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		fputs(usage, stdout);
		return AX_OK;
	}
	if (argc >= 2 && strcmp(argv[1], "--version") == 0) {
		printf("custody-alerts %s\n", CUSTODY_VERSION);
		return AX_OK;
	}
	if (argc < 2 || argv[1][0] == '-') {
		fputs(usage, stderr);
		return AX_USAGE;
	}
	cmd = argv[1];
	optind = 2;
	while ((ch = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			o.config = optarg;
			break;
		case 'o':
			o.once = true;
			break;
		case 'r':
			o.rule = optarg;
			break;
		case 'j':
			o.json = true;
			break;
		case 'h':
			fputs(usage, stdout);
			return AX_OK;
		case 'V':
			printf("custody-alerts %s\n", CUSTODY_VERSION);
			return AX_OK;
		default:
			fputs(usage, stderr);
			return AX_USAGE;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "custody-alerts: unexpected argument '%s'\n%s", argv[optind], usage);
		return AX_USAGE;
	}
	if ((o.once && strcmp(cmd, "run") != 0) || (o.rule && strcmp(cmd, "test-email") != 0) ||
	    (o.json && strcmp(cmd, "status") != 0)) {
		fprintf(stderr, "custody-alerts: %s: an option that belongs to another command\n%s",
			cmd, usage);
		return AX_USAGE;
	}
	/* tokens pass through this process: keep them out of core dumps */
	prctl(PR_SET_DUMPABLE, 0);
	if (sodium_init() < 0) {
		fprintf(stderr, "custody-alerts: libsodium cannot start\n");
		return AX_ERROR;
	}
	signal(SIGPIPE, SIG_IGN);
	/* logrotate's HUP needs no answer: file outputs are reopened every pass */
	signal(SIGHUP, SIG_IGN);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (strcmp(cmd, "run") == 0)
		st = cmd_run(&o);
	else if (strcmp(cmd, "test-email") == 0)
		st = cmd_test_email(&o);
	else if (strcmp(cmd, "status") == 0)
		st = cmd_status(&o);
	else {
		fprintf(stderr, "custody-alerts: unknown command '%s'\n%s", cmd, usage);
		st = AX_USAGE;
	}
	curl_global_cleanup();
	return st;
}
