/* main.c — custody: the command table (one file per command group). */
#include "cli.h"

#include <locale.h>
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
	{ "demo", cmd_demo, "the whole story on this machine, in a throw-away directory" },
	{ NULL, NULL, NULL },
};

static void usage(FILE *out)
{
	size_t i;

	fputs("Usage: custody <command> [options]\n\nCommands:\n", out);
	for (i = 0; commands[i].name != NULL; i++)
		fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
	fputs("\nEvery command takes --config FILE, --socket PATH, --admin-socket PATH and --help.\n"
	      "Exit status: 0 ok, 1 error, 2 usage, 3 refused, 4 upstream failure,\n"
	      "5 broker not reachable, 6 audit verification failed.\n", out);
}

int main(int argc, char **argv)
{
	struct cli_ctx ctx = { .prog = "custody" };
	int status = EXIT_USAGE;
	size_t i;

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
	for (i = 0; commands[i].name != NULL; i++) {
		if (strcmp(argv[1], commands[i].name) == 0) {
			status = commands[i].run(&ctx, argc - 1, argv + 1);
			goto out;
		}
	}
	cli_fail(EXIT_USAGE, "unknown command '%s'; see 'custody --help'", argv[1]);
out:
	broker_config_free(ctx.cfg);
	return status;
}
