/* cmd_grant.c — custody grant seal|import|list|show|revoke.
 *
 * `seal` runs at the customer's, offline, with only the broker's public
 * key; the others talk to the broker's admin socket. */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>
#include <time.h>

#include "vault.h"

#define SECRET_MAX 4096
#define DEFAULT_VALID_DAYS 180
#define ADMIN_TIMEOUT_MS 30000

static const char seal_usage[] =
	"Usage: custody grant seal --broker-key FILE --tenant-id ID [--tenant-name N]\n"
	"                          --client-id ID --client-secret-file F [--scope S]...\n"
	"                          [--not-before T] [--not-after T] [--token-endpoint URL]\n"
	"                          [--principal P]... --output FILE\n"
	"\n"
	"Seal an app credential to one broker's public key (runs anywhere, offline).\n"
	"Only that broker can open the file. Prints the grant id.\n"
	"\n"
	"Options:\n"
	"  --broker-key FILE       file holding the broker's seal_public_key ('custody keys');\n"
	"                          the base64 key itself is accepted too\n"
	"  --tenant-id ID          the customer's tenant id\n"
	"  --tenant-name N         a short name tools may use instead of the id\n"
	"  --client-id ID          the app registration's client id\n"
	"  --client-secret-file F  file holding the client secret, or - for stdin\n"
	"                          (never on the command line: argv is visible to everyone)\n"
	"  --scope S               scope tools may ask for (repeatable; default\n"
	"                          https://api.securitycenter.microsoft.com/.default)\n"
	"  --not-before T          RFC 3339; default: valid at once\n"
	"  --not-after T           RFC 3339, in the future and after --not-before;\n"
	"                          default: 180 days from now\n"
	"  --token-endpoint URL    default: the Microsoft identity platform v2.0 endpoint\n"
	"  --principal P           MSSP principal allowed to use it (repeatable; default: any\n"
	"                          the MSSP's policy allows)\n"
	"  --output FILE           where to write the sealed grant (- for stdout)\n"
	CLI_COMMON_HELP;

static const char import_usage[] =
	"Usage: custody grant import FILE [--probe]\n"
	"\n"
	"Store a sealed grant in the broker (idempotent) and print its id.\n"
	"\n"
	"Options:\n"
	"  --probe               then fetch one token to check the credential works,\n"
	"                        retrying for up to upstream.probe_wait_s (progress on\n"
	"                        stderr) while the provider does not know a new secret yet;\n"
	"                        a failed probe keeps the grant, never preferred over one\n"
	"                        that works, and exits 4. Importing the same file again with\n"
	"                        --probe probes again.\n"
	"\n"
	"A grant already expired is refused (exit 3). A principal named by the grant\n"
	"that the config does not have draws a warning on stderr.\n"
	CLI_COMMON_HELP;

static const char list_usage[] =
	"Usage: custody grant list [--tenant T] [--json]\n"
	"\n"
	"List the broker's grants (never a secret). SERVES says which grant of each\n"
	"tenant token requests use (yes) and WHY: the newest active grant whose\n"
	"credential has not failed; one whose probe failed only when no other is left.\n"
	"CRED is what the provider last said of the credential (works, failed, or\n"
	"untried: never probed).\n"
	"\n"
	"Options:\n"
	"  --tenant T            only this tenant (id or name)\n"
	"  --json                a JSON array\n" CLI_COMMON_HELP;

static const char show_usage[] =
	"Usage: custody grant show ID [--json]\n"
	"\n"
	"Show one grant (never its secret).\n"
	"\n"
	"Options:\n"
	"  --json                one JSON object\n" CLI_COMMON_HELP;

static const char revoke_usage[] =
	"Usage: custody grant revoke (ID | --tenant T) --reason TEXT [--json]\n"
	"\n"
	"Revoke a grant, or every grant of a tenant. Final: the grant is never\n"
	"active again and its secret is erased. Tokens already handed out stay\n"
	"valid at the provider until they expire; the command reports that\n"
	"exposure window.\n"
	"\n"
	"Options:\n"
	"  --tenant T            revoke every grant of tenant T\n"
	"  --reason TEXT         why (recorded in the audit; required)\n"
	"  --json                one JSON object per revoked grant, one per line\n"
	CLI_COMMON_HELP;

/* ---- seal ------------------------------------------------------------ */

static int read_broker_key(const char *arg, uint8_t pk[static 32])
{
	char *text = NULL, *p, *end;
	size_t len = 0, bin_len = 0;
	int rc;

	rc = util_read_file(arg, 4096, &text, &len);
	if (rc == -ENOENT || rc == -EISDIR) {
		text = strdup(arg);   /* the base64 key itself */
		if (text == NULL)
			return -ENOMEM;
	} else if (rc < 0) {
		return cli_fail(EXIT_ERROR, "cannot read broker key file %s: %s; pass the file "
				"'custody keys' printed, or the key itself", arg, strerror(-rc));
	}
	p = text;
	while (isspace((unsigned char)*p))
		p++;
	end = p + strlen(p);
	while (end > p && isspace((unsigned char)end[-1]))
		*--end = '\0';
	/* A whole `custody keys` output or its --json is not accepted: the
	 * customer must pick the one key, so nothing is guessed. */
	rc = sodium_base642bin(pk, 32, p, strlen(p), NULL, &bin_len, NULL,
			       sodium_base64_VARIANT_ORIGINAL);
	free(text);
	if (rc != 0 || bin_len != 32)
		return cli_fail(EXIT_USAGE, "--broker-key: not a file holding a 32-byte base64 key, "
				"nor such a key; pass the seal_public_key from 'custody keys'");
	return 0;
}

/* Read the client secret into sodium_malloc'd memory, trailing line end
 * and white space removed. */
static int read_secret(const char *path, char **out, size_t *out_len)
{
	char *buf;
	size_t len = 0;
	ssize_t r;
	int fd, rc = 0;

	buf = sodium_malloc(SECRET_MAX + 1);
	if (buf == NULL)
		return cli_fail(EXIT_ERROR, "out of memory");
	fd = strcmp(path, "-") == 0 ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = cli_fail(EXIT_ERROR, "cannot open client secret file %s: %s; check the path",
			      path, strerror(errno));
		goto out;
	}
	for (;;) {
		r = read(fd, buf + len, SECRET_MAX + 1 - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = cli_fail(EXIT_ERROR, "cannot read client secret file %s: %s", path,
				      strerror(errno));
			goto out;
		}
		if (r == 0)
			break;
		len += (size_t)r;
		if (len > SECRET_MAX) {
			rc = cli_fail(EXIT_ERROR, "client secret file %s holds more than %d bytes; "
				      "it must hold the secret alone", path, SECRET_MAX);
			goto out;
		}
	}
	while (len > 0 && isspace((unsigned char)buf[len - 1]))
		len--;
	buf[len] = '\0';
	if (len == 0) {
		rc = cli_fail(EXIT_ERROR, "client secret file %s is empty; write the secret there",
			      path);
		goto out;
	}
	if (!util_utf8_valid(buf, len)) {
		rc = cli_fail(EXIT_ERROR, "client secret in %s is not valid UTF-8 text", path);
		goto out;
	}
	*out = buf;
	*out_len = len;
	buf = NULL;
out:
	if (fd > STDIN_FILENO)
		close(fd);
	if (buf != NULL) {
		sodium_memzero(buf, SECRET_MAX + 1);
		sodium_free(buf);
	}
	return rc;
}

/* The grant JSON with the secret spliced in, built in sodium_malloc
 * memory so the secret never sits in jansson's (unwiped) heap. rest is the
 * compact JSON of every other field, starting with '{'. */
static int splice_secret(const char *rest, const char *secret, size_t slen, char **out,
			 size_t *out_len, size_t *out_cap)
{
	static const char prefix[] = "{\"client_secret\":\"";
	size_t cap, n = 0, i;
	char *buf;

	/* worst case every byte becomes \u00XX */
	cap = sizeof(prefix) + slen * 6 + 2 + strlen(rest) + 1;
	buf = sodium_malloc(cap);
	if (buf == NULL)
		return -ENOMEM;
	memcpy(buf, prefix, sizeof(prefix) - 1);
	n = sizeof(prefix) - 1;
	for (i = 0; i < slen; i++) {
		unsigned char ch = (unsigned char)secret[i];

		if (ch == '"' || ch == '\\') {
			buf[n++] = '\\';
			buf[n++] = (char)ch;
		} else if (ch < 0x20) {
			n += (size_t)snprintf(buf + n, cap - n, "\\u%04x", ch);
		} else {
			buf[n++] = (char)ch;
		}
	}
	buf[n++] = '"';
	if (strcmp(rest, "{}") != 0)
		buf[n++] = ',';
	memcpy(buf + n, rest + 1, strlen(rest + 1) + 1);   /* rest without its '{' */
	n += strlen(rest + 1);
	*out = buf;
	*out_len = n;
	*out_cap = cap;
	return 0;
}

static int check_time(const char *opt, const char *t, int64_t *us)
{
	if (util_time_parse(t, us) < 0)
		return cli_usage_error("grant seal", "%s: '%s' is not an RFC 3339 time "
				       "(like 2027-05-29T00:00:00Z)", opt, t);
	return 0;
}

static int grant_seal_main(struct cli_ctx *ctx, int argc, char **argv)
{
	enum { O_KEY = 1, O_TID, O_TNAME, O_CID, O_SECRET, O_SCOPE, O_NB, O_NA, O_EP, O_PR, O_OUT };
	static const struct option opts[] = {
		CLI_COMMON_OPTIONS,
		{ "broker-key", required_argument, NULL, O_KEY },
		{ "tenant-id", required_argument, NULL, O_TID },
		{ "tenant-name", required_argument, NULL, O_TNAME },
		{ "client-id", required_argument, NULL, O_CID },
		{ "client-secret-file", required_argument, NULL, O_SECRET },
		{ "scope", required_argument, NULL, O_SCOPE },
		{ "not-before", required_argument, NULL, O_NB },
		{ "not-after", required_argument, NULL, O_NA },
		{ "token-endpoint", required_argument, NULL, O_EP },
		{ "principal", required_argument, NULL, O_PR },
		{ "output", required_argument, NULL, O_OUT },
		{ NULL, 0, NULL, 0 },
	};
	const char *key_arg = NULL, *tid = NULL, *tname = NULL, *cid = NULL, *secret_path = NULL;
	const char *nb = NULL, *na = NULL, *ep = NULL, *output = NULL;
	char na_buf[UTIL_TIME_LEN], id[GRANT_ID_LEN];
	char *secret = NULL, *doc = NULL, *rest = NULL, *envelope = NULL;
	size_t secret_len = 0, doc_len = 0, doc_cap = 0;
	json_t *scopes = json_array(), *principals = json_array(), *g = NULL;
	uint8_t pk[32];
	struct cerr err = { "" };
	int64_t nb_us = 0, na_us = 0;
	int c, rc = EXIT_OK;

	if (cli_exact_options("grant seal", argc, argv, opts) != 0) {
		rc = EXIT_USAGE;
		goto out;
	}
	if (scopes == NULL || principals == NULL) {
		rc = cli_fail(EXIT_ERROR, "out of memory");
		goto out;
	}
	cli_getopt_reset();
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		int st = EXIT_OK;

		switch (c) {
		case O_KEY: key_arg = optarg; continue;
		case O_TID: tid = optarg; continue;
		case O_TNAME: tname = optarg; continue;
		case O_CID: cid = optarg; continue;
		case O_SECRET: secret_path = optarg; continue;
		case O_SCOPE:
		case O_PR:
			if (json_array_append_new(c == O_SCOPE ? scopes : principals,
						  json_string(optarg)) < 0) {
				rc = cli_usage_error("grant seal", "--%s is not valid UTF-8",
						     c == O_SCOPE ? "scope" : "principal");
				goto out;
			}
			continue;
		case O_NB: nb = optarg; continue;
		case O_NA: na = optarg; continue;
		case O_EP: ep = optarg; continue;
		case O_OUT: output = optarg; continue;
		default: break;
		}
		if (cli_common_stop(ctx, c, seal_usage, &st)) {
			rc = st;
			goto out;
		}
	}
	if (optind != argc) {
		rc = cli_usage_error("grant seal", "unexpected argument '%s' (the client secret is "
				     "read from --client-secret-file, never from the command line)",
				     argv[optind]);
		goto out;
	}
	if (key_arg == NULL || tid == NULL || cid == NULL || secret_path == NULL || output == NULL) {
		rc = cli_usage_error("grant seal", "--broker-key, --tenant-id, --client-id, "
				     "--client-secret-file and --output are required");
		goto out;
	}
	if ((nb && (rc = check_time("--not-before", nb, &nb_us)) != 0) ||
	    (na && (rc = check_time("--not-after", na, &na_us)) != 0))
		goto out;
	/* A grant that can never be active is refused here, at the customer's,
	 * rather than at the MSSP's import days later. */
	if (na != NULL && na_us <= util_now_us()) {
		rc = cli_usage_error("grant seal", "--not-after %s is in the past: the grant would "
				     "have expired before anyone could use it", na);
		goto out;
	}
	if (nb != NULL && na != NULL && nb_us >= na_us) {
		rc = cli_usage_error("grant seal", "--not-before %s is not earlier than --not-after "
				     "%s: the grant would never be valid", nb, na);
		goto out;
	}
	if (na == NULL) {
		int64_t def = util_now_us() + (int64_t)DEFAULT_VALID_DAYS * 86400 * 1000000;

		if (nb != NULL && nb_us >= def) {
			rc = cli_usage_error("grant seal", "--not-before %s is past the default "
					     "--not-after (%d days from now): give --not-after", nb,
					     DEFAULT_VALID_DAYS);
			goto out;
		}
		util_time_format(def, false, na_buf);
		na = na_buf;
	}
	if (json_array_size(scopes) == 0)
		json_array_append_new(scopes,
				      json_string("https://api.securitycenter.microsoft.com/.default"));
	rc = read_broker_key(key_arg, pk);
	if (rc != 0)
		goto out;

	g = json_pack("{s:i, s:s, s:s, s:O, s:s, s:O}", "custody_grant", 1, "tenant_id", tid,
		      "client_id", cid, "scopes", scopes, "not_after", na, "principals", principals);
	if (g == NULL || (tname && json_object_set_new(g, "tenant_name", json_string(tname)) < 0) ||
	    (nb && json_object_set_new(g, "not_before", json_string(nb)) < 0) ||
	    (ep && json_object_set_new(g, "token_endpoint", json_string(ep)) < 0)) {
		rc = cli_usage_error("grant seal", "an argument is not valid UTF-8");
		goto out;
	}
	rest = json_dumps(g, JSON_COMPACT | JSON_SORT_KEYS);
	if (rest == NULL) {
		rc = cli_fail(EXIT_ERROR, "out of memory");
		goto out;
	}
	rc = read_secret(secret_path, &secret, &secret_len);
	if (rc != 0)
		goto out;
	if (splice_secret(rest, secret, secret_len, &doc, &doc_len, &doc_cap) < 0) {
		rc = cli_fail(EXIT_ERROR, "out of memory");
		goto out;
	}
	sodium_memzero(secret, SECRET_MAX + 1);
	sodium_free(secret);
	secret = NULL;

	rc = grant_seal(doc, doc_len, pk, &envelope, &err);
	if (rc < 0) {
		rc = cli_fail(rc == -EINVAL ? EXIT_USAGE : EXIT_ERROR, "cannot seal the grant: %s",
			      err.msg[0] ? err.msg : strerror(-rc));
		goto out;
	}
	rc = grant_id_of_envelope(envelope, strlen(envelope), id, &err);
	if (rc < 0) {
		rc = cli_fail(EXIT_ERROR, "cannot derive the grant id: %s", err.msg);
		goto out;
	}
	if (strcmp(output, "-") == 0) {
		fputs(envelope, stdout);
	} else {
		rc = util_write_file(output, envelope, strlen(envelope), 0644);
		if (rc < 0) {
			rc = cli_fail(EXIT_ERROR, "cannot write %s: %s; check the --output path",
				      output, strerror(-rc));
			goto out;
		}
	}
	/* With --output -, stdout holds the envelope; the id goes to stderr. */
	fprintf(strcmp(output, "-") == 0 ? stderr : stdout, "%s\n", id);
	rc = EXIT_OK;
out:
	if (secret != NULL) {
		sodium_memzero(secret, SECRET_MAX + 1);
		sodium_free(secret);
	}
	if (doc != NULL) {
		sodium_memzero(doc, doc_cap);
		sodium_free(doc);
	}
	free(envelope);
	free(rest);
	json_decref(g);
	json_decref(scopes);
	json_decref(principals);
	return rc;
}

static const char *str_of(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s && *s ? s : "-";
}

/* ---- import ---------------------------------------------------------- */

/* While a probe waits (up to upstream.probe_wait_s), a line on stderr
 * every few seconds says it is still waiting, so a person does not take a
 * silent minute and a half for a hang. */
#define PROGRESS_EVERY_S 5

struct progress {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;
	int wait_s;
};

static void *progress_run(void *arg)
{
	struct progress *pr = arg;
	struct timespec at;
	int64_t start = util_mono_ms();

	clock_gettime(CLOCK_MONOTONIC, &at);
	pthread_mutex_lock(&pr->lock);
	while (!pr->done) {
		at.tv_sec += PROGRESS_EVERY_S;
		while (!pr->done && pthread_cond_timedwait(&pr->cond, &pr->lock, &at) == 0)
			;
		if (!pr->done) {
			long waited = (long)((util_mono_ms() - start + 500) / 1000);

			fprintf(stderr, "probe: still waiting for the provider (%ld s; it retries "
				"for up to %d s while the secret is not known yet)\n", waited,
				pr->wait_s);
		}
	}
	pthread_mutex_unlock(&pr->lock);
	return NULL;
}

static int admin_call_with_progress(struct cli_ctx *ctx, json_t *req, int wait_s, json_t **reply)
{
	struct progress pr = { .wait_s = wait_s };
	pthread_condattr_t ca;
	pthread_t th;
	bool started;
	int rc;

	pthread_mutex_init(&pr.lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&pr.cond, &ca);
	pthread_condattr_destroy(&ca);
	fprintf(stderr, "probe: asking the provider for one token with this credential (up to "
		"%d s while it does not know a new secret yet)\n", wait_s);
	started = pthread_create(&th, NULL, progress_run, &pr) == 0;
	rc = cli_admin_call(ctx, req, -1, reply);
	if (started) {
		pthread_mutex_lock(&pr.lock);
		pr.done = true;
		pthread_cond_signal(&pr.cond);
		pthread_mutex_unlock(&pr.lock);
		pthread_join(th, NULL);
	}
	pthread_cond_destroy(&pr.cond);
	pthread_mutex_destroy(&pr.lock);
	return rc;
}

static int grant_import_main(struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct option opts[] = {
		CLI_COMMON_OPTIONS, { "probe", no_argument, NULL, 'p' }, { NULL, 0, NULL, 0 },
	};
	json_t *req = NULL, *reply = NULL, *probe, *g, *w;
	char *text = NULL;
	size_t len = 0, i;
	bool do_probe = false;
	int c, rc, status = EXIT_OK;

	cli_getopt_reset();
	if (cli_exact_options("grant import", argc, argv, opts) != 0)
		return EXIT_USAGE;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (c == 'p') {
			do_probe = true;
			continue;
		}
		if (cli_common_stop(ctx, c, import_usage, &status))
			return status;
	}
	if (argc - optind != 1)
		return cli_usage_error("grant import", "expected one sealed grant FILE");
	rc = util_read_file(argv[optind], CUSTODY_MAX_REQUEST - 1024, &text, &len);
	if (rc == -EFBIG)
		return cli_fail(EXIT_ERROR, "%s is too large for a sealed grant; check the file",
				argv[optind]);
	if (rc < 0)
		return cli_fail(EXIT_ERROR, "cannot read %s: %s; check the path", argv[optind],
				strerror(-rc));
	req = json_pack("{s:s, s:s, s:b}", "op", "grant.import", "sealed", text, "probe",
			do_probe);
	free(text);
	if (req == NULL)
		return cli_fail(EXIT_ERROR, "%s is not a sealed grant (not UTF-8 text); ask the "
				"customer for the file 'custody grant seal' wrote", argv[optind]);
	/* A probe may wait up to upstream.probe_wait_s for the provider. */
	if (do_probe)
		rc = admin_call_with_progress(ctx, req, ctx->cfg ? ctx->cfg->upstream.probe_wait_s
								 : 90, &reply);
	else
		rc = cli_admin_call(ctx, req, ADMIN_TIMEOUT_MS, &reply);
	json_decref(req);
	if (rc != 0)
		return rc;
	g = json_object_get(reply, "grant");
	printf("%s\n", json_string_value(json_object_get(g, "id")));
	json_array_foreach(json_object_get(reply, "warnings"), i, w)
		fprintf(stderr, "custody: warning: %s\n", json_string_value(w));
	if (json_is_string(json_object_get(g, "state")) &&
	    strcmp(json_string_value(json_object_get(g, "state")), "pending") == 0)
		fprintf(stderr, "custody: note: the grant is pending: not valid before %s\n",
			str_of(g, "not_before"));
	probe = json_object_get(reply, "probe");
	rc = EXIT_OK;
	if (do_probe && json_is_true(json_object_get(probe, "ok"))) {
		printf("probe: ok (the provider issued a token for this credential)\n");
	} else if (do_probe) {
		const char *m = json_string_value(json_object_get(probe, "message"));
		const char *e = json_string_value(json_object_get(probe, "error"));

		rc = cli_fail(EXIT_UPSTREAM, "grant stored, but the probe failed: %s (%s); it is "
			      "kept but not preferred while another grant of the tenant works; ask "
			      "the customer to check the app registration and secret",
			      m ? m : "no token", e ? e : "upstream_rejected");
	}
	json_decref(reply);
	return rc;
}

/* ---- list / show ----------------------------------------------------- */


static void print_grant_lines(json_t *g)
{
	static const char *const keys[] = {
		"id", "tenant_id", "tenant_name", "client_id", "token_endpoint", "state",
		"not_before", "not_after", "imported_at", "revoked_at", "revoked_by", "reason",
		"credential", "credential_checked_at", "credential_error", "serving_why", NULL,
	};
	json_t *v;
	size_t i, j;

	if (json_object_get(g, "serving") != NULL)
		printf("serving: %s\n", json_is_true(json_object_get(g, "serving")) ? "yes" : "no");
	for (i = 0; keys[i] != NULL; i++) {
		if (json_object_get(g, keys[i]) == NULL)
			continue;
		printf("%s: %s\n", keys[i], str_of(g, keys[i]));
	}
	printf("scopes:");
	json_array_foreach(json_object_get(g, "scopes"), j, v)
		printf(" %s", json_string_value(v));
	printf("\nprincipals:");
	if (json_array_size(json_object_get(g, "principals")) == 0)
		printf(" (any the MSSP's policy allows)");
	json_array_foreach(json_object_get(g, "principals"), j, v)
		printf(" %s", json_string_value(v));
	printf("\n");
}

static int grant_list_main(struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct option opts[] = {
		CLI_COMMON_OPTIONS,
		{ "tenant", required_argument, NULL, 't' },
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 },
	};
	const char *tenant = NULL;
	json_t *req, *reply = NULL, *grants, *g;
	bool as_json = false;
	size_t i;
	int c, rc, status = EXIT_OK;

	cli_getopt_reset();
	if (cli_exact_options("grant list", argc, argv, opts) != 0)
		return EXIT_USAGE;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (c == 't') {
			tenant = optarg;
			continue;
		}
		if (c == 'j') {
			as_json = true;
			continue;
		}
		if (cli_common_stop(ctx, c, list_usage, &status))
			return status;
	}
	if (optind != argc)
		return cli_usage_error("grant list", "unexpected argument '%s'", argv[optind]);
	req = json_pack("{s:s}", "op", "grant.list");
	if (req == NULL || (tenant && json_object_set_new(req, "tenant", json_string(tenant)) < 0)) {
		json_decref(req);
		return cli_usage_error("grant list", "--tenant is not valid UTF-8");
	}
	rc = cli_admin_call(ctx, req, ADMIN_TIMEOUT_MS, &reply);
	json_decref(req);
	if (rc != 0)
		return rc;
	grants = json_object_get(reply, "grants");
	if (!json_is_array(grants)) {
		json_decref(reply);
		return cli_fail(EXIT_ERROR, "the broker's grant.list reply has no grants; check "
				"that custody and custodyd are the same version");
	}
	if (as_json) {
		cli_print_json(stdout, grants, true);
	} else {
		printf("%-36s %-20s %-8s %-8s %-6s %-20s %-36s %s\n", "ID", "TENANT", "STATE",
		       "CRED", "SERVES", "NOT_AFTER", "CLIENT_ID", "WHY");
		json_array_foreach(grants, i, g) {
			const char *name = str_of(g, "tenant_name");
			json_t *serving = json_object_get(g, "serving");

			printf("%-36s %-20s %-8s %-8s %-6s %-20s %-36s %s\n", str_of(g, "id"),
			       strcmp(name, "-") ? name : str_of(g, "tenant_id"), str_of(g, "state"),
			       str_of(g, "credential"),
			       serving == NULL ? "-" : json_is_true(serving) ? "yes" : "no",
			       str_of(g, "not_after"), str_of(g, "client_id"),
			       str_of(g, "serving_why"));
		}
	}
	json_decref(reply);
	return EXIT_OK;
}

static int grant_show_main(struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct option opts[] = {
		CLI_COMMON_OPTIONS, { "json", no_argument, NULL, 'j' }, { NULL, 0, NULL, 0 },
	};
	json_t *req, *reply = NULL, *g;
	bool as_json = false;
	int c, rc, status = EXIT_OK;

	cli_getopt_reset();
	if (cli_exact_options("grant show", argc, argv, opts) != 0)
		return EXIT_USAGE;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (c == 'j') {
			as_json = true;
			continue;
		}
		if (cli_common_stop(ctx, c, show_usage, &status))
			return status;
	}
	if (argc - optind != 1)
		return cli_usage_error("grant show", "expected one grant ID");
	req = json_pack("{s:s, s:s}", "op", "grant.show", "grant", argv[optind]);
	if (req == NULL)
		return cli_usage_error("grant show", "the grant ID is not valid UTF-8");
	rc = cli_admin_call(ctx, req, ADMIN_TIMEOUT_MS, &reply);
	json_decref(req);
	if (rc != 0)
		return rc;
	g = json_object_get(reply, "grant");
	if (as_json)
		cli_print_json(stdout, g, true);
	else
		print_grant_lines(g);
	json_decref(reply);
	return EXIT_OK;
}

/* ---- revoke ---------------------------------------------------------- */

static void print_exposure(json_t *r)
{
	json_int_t n = json_integer_value(json_object_get(r, "outstanding_tokens"));
	const char *until = json_string_value(json_object_get(r, "valid_until"));
	const char *id = str_of(r, "grant");

	if (n > 0 && until != NULL)
		printf("Revoked %s. %lld token%s issued under it stay%s valid at the provider until "
		       "%s; %s cannot be recalled — rotate the client secret in the tenant if "
		       "that matters.\n", id, (long long)n, n == 1 ? "" : "s", n == 1 ? "s" : "",
		       until, n == 1 ? "it" : "they");
	else
		printf("Revoked %s. No token issued under it is still valid: nothing stays "
		       "exposed.\n", id);
}

static int grant_revoke_main(struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct option opts[] = {
		CLI_COMMON_OPTIONS,
		{ "tenant", required_argument, NULL, 't' },
		{ "reason", required_argument, NULL, 'r' },
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 },
	};
	const char *tenant = NULL, *reason = NULL, *id = NULL;
	json_t *req, *reply = NULL, *r;
	bool as_json = false;
	size_t i;
	int c, rc, status = EXIT_OK;

	cli_getopt_reset();
	if (cli_exact_options("grant revoke", argc, argv, opts) != 0)
		return EXIT_USAGE;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 't': tenant = optarg; continue;
		case 'r': reason = optarg; continue;
		case 'j': as_json = true; continue;
		default: break;
		}
		if (cli_common_stop(ctx, c, revoke_usage, &status))
			return status;
	}
	if (argc - optind > 1)
		return cli_usage_error("grant revoke", "unexpected argument '%s'", argv[optind + 1]);
	if (argc - optind == 1)
		id = argv[optind];
	if ((id == NULL) == (tenant == NULL))
		return cli_usage_error("grant revoke", "give either a grant ID or --tenant T");
	if (reason == NULL || *reason == '\0')
		return cli_usage_error("grant revoke", "--reason TEXT is required (it goes into "
				       "the audit)");
	req = json_pack("{s:s, s:s, s:s}", "op", "grant.revoke", id ? "grant" : "tenant",
			id ? id : tenant, "reason", reason);
	if (req == NULL)
		return cli_usage_error("grant revoke", "an argument is not valid UTF-8");
	rc = cli_admin_call(ctx, req, ADMIN_TIMEOUT_MS, &reply);
	json_decref(req);
	if (rc != 0)
		return rc;
	json_array_foreach(json_object_get(reply, "already_revoked"), i, r) {
		if (as_json)
			cli_print_json(stdout, r, false);
		else
			printf("%s was already revoked by %s at %s (%s): nothing changed.\n",
			       str_of(r, "grant"), str_of(r, "revoked_by"), str_of(r, "revoked_at"),
			       str_of(r, "reason"));
	}
	json_array_foreach(json_object_get(reply, "revoked"), i, r) {
		if (as_json) {
			json_t *until = json_object_get(r, "valid_until");
			json_t *o = json_pack("{s:s, s:s, s:I, s:O}", "grant", str_of(r, "grant"),
					      "state", "revoked", "outstanding_tokens",
					      json_integer_value(json_object_get(r, "outstanding_tokens")),
					      "valid_until", json_is_string(until) ? until : json_null());
			if (o != NULL) {
				char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);

				if (s != NULL)
					printf("%s\n", s);
				free(s);
			}
			json_decref(o);
		} else {
			print_exposure(r);
		}
	}
	json_decref(reply);
	return EXIT_OK;
}

int cmd_grant(struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct cli_cmd cmds[] = {
		{ "seal", grant_seal_main, "seal a credential to a broker's public key (customer)" },
		{ "import", grant_import_main, "store a sealed grant in the broker" },
		{ "list", grant_list_main, "list grants" },
		{ "show", grant_show_main, "show one grant" },
		{ "revoke", grant_revoke_main, "revoke a grant or a tenant's grants (final)" },
		{ NULL, NULL, NULL },
	};

	return cli_dispatch(ctx, "grant", cmds, argc, argv);
}
