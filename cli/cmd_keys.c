/* cmd_keys.c — custody keys: the broker's sealing public key and audit
 * verifier key, from the running broker or the vault's public part. */
#include "cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "vault.h"

static const char usage[] =
	"Usage: custody keys [--json]\n"
	"\n"
	"Print the broker's public keys: seal_public_key (customers seal grants to\n"
	"it), seal_key_id and audit_verifier_key (checks the audit's signed\n"
	"checkpoints). Asks the running broker; when it does not run, reads the\n"
	"vault's public part (no master key needed).\n"
	"\n"
	"Options:\n"
	"  --json                one JSON object\n" CLI_COMMON_HELP;

static int keys_from_vault(struct cli_ctx *ctx, json_t **out)
{
	char b64[sodium_base64_ENCODED_LEN(32, sodium_base64_VARIANT_ORIGINAL)];
	struct vault_public pub;
	struct cerr err = { "" };
	size_t vlen;
	char *vkey;
	json_t *j;
	int rc;

	rc = cli_config(ctx);
	if (rc != 0)
		return rc;
	rc = vault_read_public(ctx->cfg->vault_dir, &pub, &err);
	if (rc == -ENOENT)
		return cli_fail(EXIT_ERROR, "no vault in %s; run 'custody init' first",
				ctx->cfg->vault_dir);
	if (rc < 0)
		return cli_fail(EXIT_ERROR, "cannot read the vault's public keys in %s: %s",
				ctx->cfg->vault_dir, err.msg[0] ? err.msg : strerror(-rc));
	vlen = strlen(ctx->cfg->audit_origin) + 64;
	vkey = malloc(vlen);
	if (vkey == NULL)
		return cli_fail(EXIT_ERROR, "out of memory");
	rc = vault_vkey_format(ctx->cfg->audit_origin, pub.sign_pk, vkey, vlen);
	if (rc < 0) {
		free(vkey);
		return cli_fail(EXIT_ERROR, "cannot format the verifier key for origin '%s'; "
				"check audit.origin in the config", ctx->cfg->audit_origin);
	}
	sodium_bin2base64(b64, sizeof(b64), pub.seal_pk, sizeof(pub.seal_pk),
			  sodium_base64_VARIANT_ORIGINAL);
	j = json_pack("{s:s, s:s, s:s}", "seal_public_key", b64, "seal_key_id", pub.seal_key_id,
		      "audit_verifier_key", vkey);
	free(vkey);
	if (j == NULL)
		return cli_fail(EXIT_ERROR, "out of memory");
	*out = j;
	return 0;
}

int cli_keys_get(struct cli_ctx *ctx, json_t **out)
{
	json_t *req, *reply = NULL, *j;
	struct custody_client *c = NULL;
	struct custody_error e;
	const char *sock;
	int rc;

	sock = cli_tool_socket(ctx);
	if (sock == NULL)
		return EXIT_ERROR;
	memset(&e, 0, sizeof(e));
	if (custody_connect(sock, &c, &e) == 0) {
		req = json_pack("{s:s}", "op", "keys");
		rc = req ? custody_call(c, req, 10000, &reply, &e) : -ENOMEM;
		json_decref(req);
		custody_close(c);
		if (rc == 0) {
			j = json_pack("{s:O, s:O, s:O}",
				      "seal_public_key", json_object_get(reply, "seal_public_key"),
				      "seal_key_id", json_object_get(reply, "seal_key_id"),
				      "audit_verifier_key", json_object_get(reply, "audit_verifier_key"));
			json_decref(reply);
			if (j == NULL)
				return cli_fail(EXIT_ERROR, "the broker's keys reply is incomplete; "
						"check the broker version");
			*out = j;
			return 0;
		}
		/* A broker that does not know us still has the same vault on disk. */
	}
	return keys_from_vault(ctx, out);
}

int cmd_keys(struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct option opts[] = {
		CLI_COMMON_OPTIONS, { "json", no_argument, NULL, 'j' }, { NULL, 0, NULL, 0 },
	};
	bool as_json = false;
	json_t *keys = NULL;
	int c, rc, status = EXIT_OK;

	cli_getopt_reset();
	if (cli_exact_options(argv[0], argc, argv, opts) != 0)
		return EXIT_USAGE;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (c == 'j') {
			as_json = true;
			continue;
		}
		if (cli_common_stop(ctx, c, usage, &status))
			return status;
	}
	if (optind != argc)
		return cli_usage_error("keys", "unexpected argument '%s'", argv[optind]);
	rc = cli_keys_get(ctx, &keys);
	if (rc != 0)
		return rc;
	if (as_json) {
		/* DESIGN §9's form: one line, keys in this order, ": " and ", ". */
		char *text = json_dumps(keys, JSON_PRESERVE_ORDER);

		if (text == NULL) {
			json_decref(keys);
			return cli_fail(EXIT_ERROR, "out of memory");
		}
		printf("%s\n", text);
		free(text);
	} else {
		printf("seal_public_key: %s\nseal_key_id: %s\naudit_verifier_key: %s\n",
		       json_string_value(json_object_get(keys, "seal_public_key")),
		       json_string_value(json_object_get(keys, "seal_key_id")),
		       json_string_value(json_object_get(keys, "audit_verifier_key")));
	}
	json_decref(keys);
	return EXIT_OK;
}
