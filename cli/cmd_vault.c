/* cmd_vault.c — custody vault rekey (offline, broker stopped). */
#include "cli.h"

#include <errno.h>
#include <string.h>

#include "vault.h"

static const char rekey_usage[] =
	"Usage: custody vault rekey [--new-passphrase-file F]\n"
	"\n"
	"Re-encrypt every live record under a new master key and compact the\n"
	"vault, so records revoked earlier cannot be recovered from the file even\n"
	"with the old key. With a key_file, a new random key replaces that file\n"
	"(atomically, mode 0600); with a passphrase_file, the new passphrase is read\n"
	"from --new-passphrase-file. Stop custodyd first.\n"
	"\n"
	"Options:\n"
	"  --new-passphrase-file F   the new passphrase (passphrase_file configs only)\n"
	CLI_COMMON_HELP;

static int rekey_main(struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct option opts[] = {
		CLI_COMMON_OPTIONS,
		{ "new-passphrase-file", required_argument, NULL, 'n' },
		{ NULL, 0, NULL, 0 },
	};
	struct vault_key_source src;
	struct cerr err = { "" };
	const char *new_pass = NULL;
	int c, rc, st = EXIT_OK;

	cli_getopt_reset();
	if (cli_exact_options("vault rekey", argc, argv, opts) != 0)
		return EXIT_USAGE;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (c == 'n') {
			new_pass = optarg;
			continue;
		}
		if (cli_common_stop(ctx, c, rekey_usage, &st))
			return st;
	}
	if (optind != argc)
		return cli_usage_error("vault rekey", "unexpected argument '%s'", argv[optind]);
	rc = cli_config(ctx);
	if (rc != 0)
		return rc;
	broker_config_key_source(ctx->cfg, &src);
	if (src.key_file == NULL && new_pass == NULL)
		return cli_usage_error("vault rekey", "the vault uses a passphrase: pass "
				       "--new-passphrase-file F");
	if (src.key_file != NULL && new_pass != NULL)
		return cli_usage_error("vault rekey", "the vault uses a key file: a new key is "
				       "generated, --new-passphrase-file does not apply");
	rc = vault_rekey(ctx->cfg->vault_dir, &src, new_pass, &err);
	if (rc == -EBUSY)
		return cli_fail(EXIT_ERROR, "the vault in %s is in use (custodyd runs); stop "
				"custodyd, then run 'custody vault rekey' again", ctx->cfg->vault_dir);
	if (rc == -ENOENT)
		return cli_fail(EXIT_ERROR, "no vault in %s; run 'custody init' first",
				ctx->cfg->vault_dir);
	if (rc < 0)
		return cli_fail(EXIT_ERROR, "rekey failed: %s; the old key still opens the vault",
				err.msg[0] ? err.msg : strerror(-rc));
	if (src.key_file != NULL)
		printf("rekeyed %s: the new master key is in %s (replace every backup of the old "
		       "one)\n", ctx->cfg->vault_dir, src.key_file);
	else
		printf("rekeyed %s under the new passphrase\n", ctx->cfg->vault_dir);
	return EXIT_OK;
}

int cmd_vault(struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct cli_cmd cmds[] = {
		{ "rekey", rekey_main, "re-encrypt the vault under a new master key (broker stopped)" },
		{ NULL, NULL, NULL },
	};

	return cli_dispatch(ctx, "vault", cmds, argc, argv);
}
