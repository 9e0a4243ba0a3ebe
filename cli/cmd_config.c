/* cmd_config.c — custody config check [FILE] and custody reload.
 *
 * `config check` validates a config offline, the way custodyd would load
 * it at start or reload, and lists every error with its key path, so an
 * admin fixes a file in one pass before a SIGHUP that would refuse it.
 * `reload` asks the running broker to re-read its config (as SIGHUP does)
 * and says which changes wait for the next start. */
#include "cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define ADMIN_TIMEOUT_MS 30000

static const char check_usage[] =
	"Usage: custody config check [FILE]\n"
	"\n"
	"Validate a config file (default: --config, $CUSTODY_CONFIG, then\n"
	"/etc/custody/custody.json) as custodyd would load it. Prints every error\n"
	"with its key path, one a line on stderr, and exits 1; exits 0 when valid.\n"
	"\n"
	"Options:\n" CLI_COMMON_HELP;

static const char reload_usage[] =
	"Usage: custody reload\n"
	"\n"
	"Ask the running custodyd to re-read its config (the same as SIGHUP). A\n"
	"config with an error is refused and the running policy stays; settings\n"
	"that only apply at the next start (state_dir, the key, a socket's path,\n"
	"mode or group, and the audit section: origin, checkpoints, witnesses,\n"
	"witness_quorum, ship sinks) are named.\n"
	"\n"
	"Options:\n" CLI_COMMON_HELP;

static void print_error(void *ctx, const char *msg)
{
	(void)ctx;
	fprintf(stderr, "custody: %s\n", msg);
}

static int config_check_main(struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct option opts[] = { CLI_COMMON_OPTIONS, { NULL, 0, NULL, 0 } };
	struct cerr err = { "" };
	const char *path;
	int c, rc, status = EXIT_OK;

	cli_getopt_reset();
	if (cli_exact_options("config check", argc, argv, opts) != 0)
		return EXIT_USAGE;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (cli_common_stop(ctx, c, check_usage, &status))
			return status;
	}
	if (argc - optind > 1)
		return cli_usage_error("config check", "unexpected argument '%s'", argv[optind + 1]);
	path = argc - optind == 1 ? argv[optind] : broker_config_path(ctx->config_arg);
	rc = broker_config_check(path, print_error, NULL, &err);
	if (rc == -EINVAL)
		return EXIT_ERROR;   /* every error printed */
	if (rc < 0)
		return cli_fail(EXIT_ERROR, "%s", err.msg[0] ? err.msg : strerror(-rc));
	printf("ok: %s is a valid custody config\n", path);
	return EXIT_OK;
}

int cmd_config(struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct cli_cmd cmds[] = {
		{ "check", config_check_main, "validate a config file; every error with its key path" },
		{ NULL, NULL, NULL },
	};

	return cli_dispatch(ctx, "config", cmds, argc, argv);
}

int cmd_reload(struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct option opts[] = { CLI_COMMON_OPTIONS, { NULL, 0, NULL, 0 } };
	json_t *req, *reply = NULL, *v;
	size_t i;
	int c, rc, status = EXIT_OK;

	cli_getopt_reset();
	if (cli_exact_options("reload", argc, argv, opts) != 0)
		return EXIT_USAGE;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (cli_common_stop(ctx, c, reload_usage, &status))
			return status;
	}
	if (optind != argc)
		return cli_usage_error("reload", "unexpected argument '%s'", argv[optind]);
	/* The file custodyd will read is the one the admin socket comes from:
	 * a broken one is refused here, in the words the broker would use. */
	if (ctx->cfg == NULL && ctx->admin_socket_arg == NULL) {
		struct cerr err = { "" };
		const char *path = broker_config_path(ctx->config_arg);

		if (broker_config_load(path, &ctx->cfg, &err) < 0)
			return cli_fail(EXIT_ERROR, "not reloaded, the running policy stays: %s; "
					"'custody config check FILE' lists every error", err.msg);
	}
	req = json_pack("{s:s}", "op", "reload");
	if (req == NULL)
		return cli_fail(EXIT_ERROR, "out of memory");
	rc = cli_admin_call(ctx, req, ADMIN_TIMEOUT_MS, &reply);
	json_decref(req);
	if (rc != 0)
		return rc;
	printf("custodyd reloaded its config\n");
	json_array_foreach(json_object_get(reply, "not_applied"), i, v)
		printf("not applied until custodyd restarts: %s\n", json_string_value(v));
	json_decref(reply);
	return EXIT_OK;
}
