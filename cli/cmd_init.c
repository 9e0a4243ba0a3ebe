/* cmd_init.c — custody init: state directory, master key file, vault and
 * broker keys; the default config when there is none yet. */
#include "cli.h"

#include <errno.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vault.h"

static const char usage[] =
	"Usage: custody init [--config FILE]\n"
	"\n"
	"Create the state directory (mode 0700), the master key file (mode 0600,\n"
	"when the config names a key_file that does not exist yet), the vault and\n"
	"the broker's key pairs. An existing vault is never overwritten, and no key\n"
	"file is written for it when its key file is missing. When the\n"
	"config file does not exist, the default config is written there first:\n"
	"at /etc/custody/custody.json with /var/lib/custody, /run/custody and\n"
	"/etc/custody/master.key; anywhere else with state/, run/ and master.key\n"
	"beside the file.\n"
	"\n"
	"Options:\n" CLI_COMMON_HELP;

/* Write the default config at path (its directory created 0755). */
static int write_default_config(const char *path)
{
	char *text = NULL, *dir = NULL;
	int rc;

	/* At the system path: the system defaults. Anywhere else (a test, a
	 * second instance): everything beside the file, as relative paths. */
	if (strcmp(path, BROKER_DEFAULT_CONFIG) == 0)
		text = broker_config_default_text(NULL, NULL, NULL);
	else
		text = broker_config_default_text("state", "run", "master.key");
	dir = strdup(path);
	if (text == NULL || dir == NULL) {
		rc = cli_fail(EXIT_ERROR, "out of memory");
		goto out;
	}
	rc = util_mkdir_p(dirname(dir), 0755);
	if (rc == 0)
		rc = util_write_file(path, text, strlen(text), 0644);
	if (rc < 0) {
		rc = cli_fail(EXIT_ERROR, "cannot write the default config to %s: %s; pass "
			      "--config FILE in a writable place", path, strerror(-rc));
		goto out;
	}
	printf("wrote the default config to %s (edit principals and roles there)\n", path);
	rc = 0;
out:
	free(text);
	free(dir);
	return rc;
}

static int make_key_file(const char *key_file)
{
	struct cerr err = { "" };
	char *dir = strdup(key_file);
	int rc;

	if (dir == NULL)
		return cli_fail(EXIT_ERROR, "out of memory");
	rc = util_mkdir_p(dirname(dir), 0700);
	free(dir);
	if (rc < 0)
		return cli_fail(EXIT_ERROR, "cannot create the directory of %s: %s; check the "
				"config's key_file", key_file, strerror(-rc));
	rc = vault_key_file_create(key_file, &err);
	if (rc < 0)
		return cli_fail(EXIT_ERROR, "cannot create the master key file %s: %s; check the "
				"config's key_file", key_file, err.msg[0] ? err.msg : strerror(-rc));
	printf("created master key file %s (mode 0600); keep a copy offline: without it "
	       "the vault cannot be opened\n", key_file);
	return 0;
}

int cmd_init(struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct option opts[] = { CLI_COMMON_OPTIONS, { NULL, 0, NULL, 0 } };
	struct vault_key_source src;
	struct vault_public pub;
	struct cerr err = { "" };
	const char *path;
	struct stat st;
	int c, rc, status = EXIT_OK;

	cli_getopt_reset();
	if (cli_exact_options(argv[0], argc, argv, opts) != 0)
		return EXIT_USAGE;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (cli_common_stop(ctx, c, usage, &status))
			return status;
	}
	if (optind != argc)
		return cli_usage_error("init", "unexpected argument '%s'", argv[optind]);

	path = broker_config_path(ctx->config_arg);
	if (stat(path, &st) < 0 && errno == ENOENT) {
		rc = write_default_config(path);
		if (rc != 0)
			return rc;
	}
	rc = cli_config(ctx);
	if (rc != 0)
		return rc;

	rc = util_mkdir_p(ctx->cfg->state_dir, 0700);
	if (rc < 0)
		return cli_fail(EXIT_ERROR, "cannot create state directory %s: %s; check state_dir "
				"in %s", ctx->cfg->state_dir, strerror(-rc), ctx->cfg->path);
	broker_config_key_source(ctx->cfg, &src);
	/* The vault first: a key written for a vault that already exists
	 * opens nothing, and a person might take it for the lost one. */
	if (vault_exists(ctx->cfg->vault_dir)) {
		if (src.key_file != NULL && access(src.key_file, F_OK) < 0 && errno == ENOENT)
			return cli_fail(EXIT_ERROR, "a vault already exists in %s but its master key "
					"file %s is missing; no new key was written (it could not "
					"open this vault): restore the key file from your offline copy",
					ctx->cfg->vault_dir, src.key_file);
		return cli_fail(EXIT_ERROR, "a vault already exists in %s; it is never overwritten "
				"(to start over, stop custodyd and move that directory away)",
				ctx->cfg->vault_dir);
	}
	if (src.key_file != NULL && access(src.key_file, F_OK) < 0 && errno == ENOENT) {
		rc = make_key_file(src.key_file);
		if (rc != 0)
			return rc;
	} else if (src.key_file == NULL && access(src.passphrase_file, R_OK) < 0) {
		return cli_fail(EXIT_ERROR, "cannot read passphrase_file %s: %s; write the "
				"passphrase there (mode 0600) first", src.passphrase_file,
				strerror(errno));
	}

	rc = vault_create(ctx->cfg->vault_dir, &src, &err);
	if (rc == -EEXIST)
		return cli_fail(EXIT_ERROR, "a vault already exists in %s; it is never overwritten "
				"(to start over, stop custodyd and move that directory away)",
				ctx->cfg->vault_dir);
	if (rc < 0)
		return cli_fail(EXIT_ERROR, "cannot create the vault in %s: %s", ctx->cfg->vault_dir,
				err.msg[0] ? err.msg : strerror(-rc));
	printf("created vault %s with new broker keys\n", ctx->cfg->vault_dir);

	if (vault_read_public(ctx->cfg->vault_dir, &pub, &err) == 0)
		printf("seal key id: %s (send customers the output of 'custody keys')\n",
		       pub.seal_key_id);
	return EXIT_OK;
}
