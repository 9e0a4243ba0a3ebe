/* cmd_lockdown.c — custody lockdown / unlock (security officer). */
#include "cli.h"

#include <string.h>

static const char lockdown_usage[] =
	"Usage: custody lockdown --reason TEXT\n"
	"\n"
	"Stop every token from leaving the broker, for every principal and tenant,\n"
	"cached or not, until 'custody unlock'. Persistent across restarts.\n"
	"\n"
	"Options:\n"
	"  --reason TEXT         why (recorded in the audit; required)\n" CLI_COMMON_HELP;

static const char unlock_usage[] =
	"Usage: custody unlock\n"
	"\n"
	"End a lockdown.\n"
	"\n"
	"Options:\n" CLI_COMMON_HELP;

static int lock_op(struct cli_ctx *ctx, int argc, char **argv, bool lock)
{
	static const struct option opts[] = {
		CLI_COMMON_OPTIONS, { "reason", required_argument, NULL, 'r' }, { NULL, 0, NULL, 0 },
	};
	const char *cmd = lock ? "lockdown" : "unlock";
	const char *reason = NULL;
	json_t *req, *reply = NULL;
	int c, rc, st = EXIT_OK;

	cli_getopt_reset();
	if (cli_exact_options(cmd, argc, argv, opts) != 0)
		return EXIT_USAGE;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (c == 'r' && lock) {
			reason = optarg;
			continue;
		}
		if (c == 'r')
			return cli_usage_error(cmd, "--reason is for lockdown only");
		if (cli_common_stop(ctx, c, lock ? lockdown_usage : unlock_usage, &st))
			return st;
	}
	if (optind != argc)
		return cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
	if (lock && (reason == NULL || *reason == '\0'))
		return cli_usage_error(cmd, "--reason TEXT is required (it goes into the audit)");
	req = lock ? json_pack("{s:s, s:s}", "op", "lockdown", "reason", reason)
		   : json_pack("{s:s}", "op", "unlock");
	if (req == NULL)
		return cli_usage_error(cmd, "--reason is not valid UTF-8");
	rc = cli_admin_call(ctx, req, 30000, &reply);
	json_decref(req);
	if (rc != 0)
		return rc;
	printf(lock ? "locked down: no token leaves the broker until 'custody unlock'\n"
		    : "unlocked: tokens are issued again\n");
	json_decref(reply);
	return EXIT_OK;
}

int cmd_lockdown(struct cli_ctx *ctx, int argc, char **argv)
{
	return lock_op(ctx, argc, argv, true);
}

int cmd_unlock(struct cli_ctx *ctx, int argc, char **argv)
{
	return lock_op(ctx, argc, argv, false);
}
