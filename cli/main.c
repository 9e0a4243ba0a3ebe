/* main.c — custody: the command table (one file per command group). */
#include "cli.h"
#include "custody_version.h"

#include <locale.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

static const struct cli_cmd commands[] = {
	{ "init", cmd_init, "create the state dir, master key file, vault and broker keys" },
	{ "keys", cmd_keys, "print the broker's sealing public key and audit verifier key" },
	{ "grant", cmd_grant, "seal, import, list, show and revoke grants" },
	{ "principal", cmd_principal, "suspend or resume a principal" },
	{ "lockdown", cmd_lockdown, "stop every token from leaving the broker" },
	{ "unlock", cmd_unlock, "end a lockdown" },
	{ "token", cmd_token, "get a short-lived access token for a tenant" },
	{ "status", cmd_status, "the broker's health in short" },
	{ "audit", cmd_audit, "list, export, verify and follow the audit trail" },
	{ "vault", cmd_vault, "vault maintenance (rekey)" },
	{ "witness", cmd_witness, "run a C2SP witness that cosigns a broker's audit checkpoints" },
	{ "config", cmd_config, "check a config file (every error with its key path)" },
	{ "reload", cmd_reload, "ask custodyd to re-read its config (as SIGHUP)" },
	{ "demo", cmd_demo, "the whole story on this machine, in a throw-away directory" },
	{ NULL, NULL, NULL },
};

static void usage(FILE *out)
{
	size_t i;

	fputs("Usage: custody <command> [options]\n\nCommands:\n", out);
	for (i = 0; commands[i].name != NULL; i++)
		fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
	fputs("\ncustody --version prints the version.\n"
	      "Every command takes --config FILE, --socket PATH, --admin-socket PATH and --help.\n"
	      "Exit status: 0 ok, 1 error, 2 usage, 3 refused, 4 upstream failure,\n"
	      "5 broker not reachable, 6 audit verification failed.\n", out);
}

/* `custody --config FILE <command> ...`: the common options may also come
 * before the command. Returns the index of the command, or -1. */
static int take_global_options(struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct { const char *name; size_t off; } opts[] = {
		{ "--config", offsetof(struct cli_ctx, config_arg) },
		{ "--socket", offsetof(struct cli_ctx, socket_arg) },
		{ "--admin-socket", offsetof(struct cli_ctx, admin_socket_arg) },
	};
	const char **slot;
	size_t k, n;
	int i = 1;

	while (i < argc && strncmp(argv[i], "--", 2) == 0) {
		for (k = 0; k < sizeof(opts) / sizeof(opts[0]); k++) {
			n = strlen(opts[k].name);
			if (strncmp(argv[i], opts[k].name, n) == 0 &&
			    (argv[i][n] == '\0' || argv[i][n] == '='))
				break;
		}
		if (k == sizeof(opts) / sizeof(opts[0])) {
			cli_fail(EXIT_USAGE, "unknown option '%s' before the command; see "
				 "'custody --help'", argv[i]);
			return -1;
		}
		slot = (const char **)(void *)((char *)ctx + opts[k].off);
		if (argv[i][n] == '=') {
			*slot = argv[i] + n + 1;
			i++;
		} else if (i + 1 < argc) {
			*slot = argv[i + 1];
			i += 2;
		} else {
			cli_fail(EXIT_USAGE, "%s needs an argument; see 'custody --help'", argv[i]);
			return -1;
		}
	}
	return i;
}

int main(int argc, char **argv)
{
	struct cli_ctx ctx = { .prog = "custody" };
	int status = EXIT_USAGE;
	size_t i;
	int argi;

	setlocale(LC_ALL, "C");
	if (sodium_init() < 0)
		return cli_fail(EXIT_ERROR, "libsodium failed to initialise; check the installation");
	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return EXIT_OK;
	}
	if (strcmp(argv[1], "--version") == 0) {
		printf("custody %s\n", CUSTODY_VERSION);
		return EXIT_OK;
	}
	argi = take_global_options(&ctx, argc, argv);
	if (argi < 0)
		return EXIT_USAGE;
	if (argi >= argc) {
		usage(stderr);
		return EXIT_USAGE;
	}
	for (i = 0; commands[i].name != NULL; i++) {
		if (strcmp(argv[argi], commands[i].name) == 0) {
			status = commands[i].run(&ctx, argc - argi, argv + argi);
			goto out;
		}
	}
	cli_fail(EXIT_USAGE, "unknown command '%s'; see 'custody --help'", argv[argi]);
out:
	broker_config_free(ctx.cfg);
	return status;
}
