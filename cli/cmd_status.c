/* cmd_status.c — custody status: the broker's health in a few lines. */
#include "cli.h"

#include <string.h>

static const char usage[] =
	"Usage: custody status [--json]\n"
	"\n"
	"The broker's health: uptime, lockdown, grants by state, suspended\n"
	"principals, requests by outcome, token cache, upstream, audit and the\n"
	"refusal guard (refused requests per uid audited one by one, and the\n"
	"uids over that limit now), and the witnesses (a witness conflict stays\n"
	"shown until an officer runs 'custody audit ack-conflict').\n"
	"Exit 5 when the broker is not reachable.\n"
	"\n"
	"Options:\n"
	"  --json                the status object\n" CLI_COMMON_HELP;

static json_int_t num(json_t *o, const char *a, const char *b)
{
	json_t *v = json_object_get(o, a);

	if (b != NULL)
		v = json_object_get(v, b);
	return json_integer_value(v);
}

/* The witnesses, and first of all an unacknowledged conflict. */
static void print_witnesses(json_t *s)
{
	json_t *conflict = json_object_get(s, "witness_conflict"), *w;
	size_t i;

	if (json_is_object(conflict))
		printf("WITNESS CONFLICT (since %s): witness %s: %s; this audit store was rolled "
		       "back, replaced or forked; investigate, then 'custody audit ack-conflict "
		       "--reason TEXT'\n",
		       json_string_value(json_object_get(conflict, "since")),
		       json_string_value(json_object_get(conflict, "witness")),
		       json_string_value(json_object_get(conflict, "detail")));
	json_array_foreach(json_object_get(s, "witnesses"), i, w) {
		const char *err = json_string_value(json_object_get(w, "last_error"));
		const char *at = json_string_value(json_object_get(w, "last_cosigned_at"));

		printf("witness %s: cosigned size %lld%s%s%s%s\n",
		       json_string_value(json_object_get(w, "name")),
		       (long long)json_integer_value(json_object_get(w, "cosigned_size")),
		       at ? " at " : " (none this run)", at ? at : "", err ? "; " : "",
		       err ? err : "");
	}
}

static void print_status(json_t *s)
{
	json_int_t up = num(s, "uptime_s", NULL);
	const char *reason = json_string_value(json_object_get(s, "lockdown_reason"));
	const char *key;
	json_t *v;
	size_t i, n = 0;

	printf("custodyd %s, up %lldd %02lld:%02lld:%02lld\n",
	       json_is_string(json_object_get(s, "version")) ?
	       json_string_value(json_object_get(s, "version")) : "?", (long long)(up / 86400),
	       (long long)(up / 3600 % 24), (long long)(up / 60 % 60), (long long)(up % 60));
	if (json_is_true(json_object_get(s, "lockdown")))
		printf("lockdown: YES (%s)\n", reason ? reason : "no reason given");
	else
		printf("lockdown: no\n");
	printf("grants: %lld active, %lld pending, %lld expired, %lld revoked\n",
	       (long long)num(s, "grants", "active"), (long long)num(s, "grants", "pending"),
	       (long long)num(s, "grants", "expired"), (long long)num(s, "grants", "revoked"));
	printf("suspended:");
	json_array_foreach(json_object_get(s, "suspended"), i, v) {
		printf(" %s", json_string_value(v));
		n++;
	}
	printf(n ? "\n" : " (none)\n");
	printf("requests:");
	n = 0;
	json_object_foreach(json_object_get(s, "requests"), key, v) {
		printf("%s %s %lld", n ? "," : "", key, (long long)json_integer_value(v));
		n++;
	}
	printf(n ? "\n" : " (none)\n");
	printf("cache: %lld hits, %lld misses, %lld refreshes, %lld entries\n",
	       (long long)num(s, "cache", "hits"), (long long)num(s, "cache", "misses"),
	       (long long)num(s, "cache", "refreshes"), (long long)num(s, "cache", "entries"));
	printf("upstream: %lld calls, %lld errors\n", (long long)num(s, "upstream", "calls"),
	       (long long)num(s, "upstream", "errors"));
	printf("audit: %lld records, %s; newest signed checkpoint at size %lld leaves %lld "
	       "records uncovered\n", (long long)num(s, "audit", "seq"),
	       json_is_true(json_object_get(json_object_get(s, "audit"), "writable")) ?
	       "writable" : "NOT WRITABLE (tokens are refused)",
	       (long long)num(s, "audit", "checkpoint_size"), (long long)num(s, "audit", "uncovered"));
	printf("connections: %lld tool, %lld admin\n", (long long)num(s, "connections", "tool"),
	       (long long)num(s, "connections", "admin"));
	v = json_object_get(s, "refusal_guard");
	if (json_is_object(v)) {
		json_t *u;

		printf("refusal guard: %lld per uid in %lld s audited one by one; %lld more counted only, %lld connections closed",
		       (long long)num(s, "refusal_guard", "max_refusals"),
		       (long long)num(s, "refusal_guard", "window_s"),
		       (long long)num(s, "refusal_guard", "not_recorded_total"),
		       (long long)num(s, "refusal_guard", "connections_closed_total"));
		n = 0;
		json_array_foreach(json_object_get(v, "limited_uids"), i, u) {
			printf("%s uid %lld (%lld refused, %lld s left)", n ? "," : "; limited now:",
			       (long long)json_integer_value(json_object_get(u, "uid")),
			       (long long)json_integer_value(json_object_get(u, "refused")),
			       (long long)json_integer_value(json_object_get(u, "window_left_s")));
			n++;
		}
		printf("\n");
	}
	print_witnesses(s);
}

int cmd_status(struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct option opts[] = {
		CLI_COMMON_OPTIONS, { "json", no_argument, NULL, 'j' }, { NULL, 0, NULL, 0 },
	};
	json_t *req, *reply = NULL;
	bool as_json = false;
	int c, rc, st = EXIT_OK;

	cli_getopt_reset();
	if (cli_exact_options(argv[0], argc, argv, opts) != 0)
		return EXIT_USAGE;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (c == 'j') {
			as_json = true;
			continue;
		}
		if (cli_common_stop(ctx, c, usage, &st))
			return st;
	}
	if (optind != argc)
		return cli_usage_error("status", "unexpected argument '%s'", argv[optind]);
	req = json_pack("{s:s}", "op", "status");
	if (req == NULL)
		return cli_fail(EXIT_ERROR, "out of memory");
	rc = cli_admin_call(ctx, req, 30000, &reply);
	json_decref(req);
	if (rc != 0)
		return rc;
	if (as_json)
		cli_print_json(stdout, json_object_get(reply, "status"), true);
	else
		print_status(json_object_get(reply, "status"));
	json_decref(reply);
	return EXIT_OK;
}
