/* cmd_principal.c — custody principal suspend|resume (security officer). */
#include "cli.h"

#include <string.h>

static const char suspend_usage[] =
	"Usage: custody principal suspend NAME --reason TEXT\n"
	"\n"
	"Suspend a principal: no token leaves for it, cached or not, until it is\n"
	"resumed. Persistent across broker restarts.\n"
	"\n"
	"Options:\n"
	"  --reason TEXT         why (recorded in the audit; required)\n" CLI_COMMON_HELP;

static const char resume_usage[] =
	"Usage: custody principal resume NAME\n"
	"\n"
	"End a principal's suspension.\n"
	"\n"
	"Options:\n" CLI_COMMON_HELP;

static int principal_op(struct cli_ctx *ctx, int argc, char **argv, bool suspend)
{
	static const struct option opts[] = {
		CLI_COMMON_OPTIONS, { "reason", required_argument, NULL, 'r' }, { NULL, 0, NULL, 0 },
	};
	const char *usage = suspend ? suspend_usage : resume_usage;
	const char *cmd = suspend ? "principal suspend" : "principal resume";
	const char *reason = NULL;
	json_t *req, *reply = NULL;
	int c, rc, st = EXIT_OK;

	cli_getopt_reset();
	if (cli_exact_options(cmd, argc, argv, opts) != 0)
		return EXIT_USAGE;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (c == 'r' && suspend) {
			reason = optarg;
			continue;
		}
		if (c == 'r')
			return cli_usage_error(cmd, "--reason is for suspend only");
		if (cli_common_stop(ctx, c, usage, &st))
			return st;
	}
	if (argc - optind != 1)
		return cli_usage_error(cmd, "expected one principal NAME");
	if (suspend && (reason == NULL || *reason == '\0'))
		return cli_usage_error(cmd, "--reason TEXT is required (it goes into the audit)");
	req = suspend ? json_pack("{s:s, s:s, s:s}", "op", "principal.suspend", "principal",
				  argv[optind], "reason", reason)
		      : json_pack("{s:s, s:s}", "op", "principal.resume", "principal", argv[optind]);
	if (req == NULL)
		return cli_usage_error(cmd, "an argument is not valid UTF-8");
	rc = cli_admin_call(ctx, req, 30000, &reply);
	json_decref(req);
	if (rc != 0)
		return rc;
	printf("principal %s is %s\n", argv[optind], suspend ? "suspended" : "active again");
	json_decref(reply);
	return EXIT_OK;
}

static int suspend_main(struct cli_ctx *ctx, int argc, char **argv)
{
	return principal_op(ctx, argc, argv, true);
}

static int resume_main(struct cli_ctx *ctx, int argc, char **argv)
{
	return principal_op(ctx, argc, argv, false);
}

int cmd_principal(struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct cli_cmd cmds[] = {
		{ "suspend", suspend_main, "no token leaves for this principal until resumed" },
		{ "resume", resume_main, "end a suspension" },
		{ NULL, NULL, NULL },
	};

	return cli_dispatch(ctx, "principal", cmds, argc, argv);
}
