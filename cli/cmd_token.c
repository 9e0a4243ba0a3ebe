/* cmd_token.c — custody token: a short-lived access token on stdout, for
 * scripts (through libcustody, like any tool). */
#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#define TOKEN_TIMEOUT_MS 120000

static const char usage[] =
	"Usage: custody token --tenant T [--scope S] [--min-ttl SECONDS] [--purpose TEXT]\n"
	"                     [--format raw|json|header|env]\n"
	"\n"
	"Ask the broker for an access token for tenant T (id or name). The broker\n"
	"decides from who runs this command (its uid, groups and executable).\n"
	"\n"
	"Options:\n"
	"  --tenant T            tenant id or name (required)\n"
	"  --scope S             default: the grant's first scope\n"
	"  --min-ttl SECONDS     the token must stay valid at least this long (default 300)\n"
	"  --purpose TEXT        ticket or reason, recorded in the audit (at most 256 bytes)\n"
	"  --format F            raw: the token alone (default)\n"
	"                        json: the tool socket's success object\n"
	"                        header: 'Authorization: Bearer <token>'\n"
	"                        env: CUSTODY_TOKEN=... CUSTODY_TOKEN_EXPIRES_AT=... for eval\n"
	CLI_COMMON_HELP;

enum fmt { FMT_RAW, FMT_JSON, FMT_HEADER, FMT_ENV };

/* Write the whole buffer to stdout (not through stdio: its buffer would
 * keep a copy of the token until exit). */
static int write_out(const char *p, size_t n)
{
	ssize_t w;

	while (n > 0) {
		w = write(STDOUT_FILENO, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Append s to buf in single quotes for a POSIX shell ('\'' for a quote). */
static size_t shell_quote(char *buf, size_t at, const char *s)
{
	buf[at++] = '\'';
	for (; *s; s++) {
		if (*s == '\'') {
			memcpy(buf + at, "'\\''", 4);
			at += 4;
		} else {
			buf[at++] = *s;
		}
	}
	buf[at++] = '\'';
	return at;
}

static int print_token(const struct custody_token *t, enum fmt f)
{
	size_t cap = t->token_len * 4 + 1024, n = 0;
	char *buf, *text = NULL;
	json_t *o = NULL;
	int rc = 0;

	buf = sodium_malloc(cap);
	if (buf == NULL)
		return -ENOMEM;
	switch (f) {
	case FMT_RAW:
		n = (size_t)snprintf(buf, cap, "%s\n", t->access_token);
		break;
	case FMT_HEADER:
		n = (size_t)snprintf(buf, cap, "Authorization: Bearer %s\n", t->access_token);
		break;
	case FMT_ENV:
		memcpy(buf, "CUSTODY_TOKEN=", 14);
		n = shell_quote(buf, 14, t->access_token);
		memcpy(buf + n, "\nCUSTODY_TOKEN_EXPIRES_AT=", 26);
		n = shell_quote(buf, n + 26, t->expires_at);
		buf[n++] = '\n';
		break;
	case FMT_JSON:
		o = json_pack("{s:b, s:s, s:s, s:s, s:I, s:s, s:s, s:s, s:I}", "ok", 1,
			      "token_type", t->token_type, "access_token", t->access_token,
			      "expires_at", t->expires_at, "expires_in", (json_int_t)t->expires_in,
			      "tenant", t->tenant, "scope", t->scope, "grant", t->grant,
			      "audit_seq", (json_int_t)t->audit_seq);
		if (o != NULL && t->cache[0])
			json_object_set_new(o, "cache", json_string(t->cache));
		text = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
		if (text == NULL) {
			rc = -ENOMEM;
			goto out;
		}
		n = (size_t)snprintf(buf, cap, "%s\n", text);
		break;
	}
	if (n >= cap) {
		rc = -EOVERFLOW;
		goto out;
	}
	rc = write_out(buf, n);
out:
	if (text != NULL) {
		sodium_memzero(text, strlen(text));
		free(text);
	}
	custody_json_wipe(o);
	sodium_memzero(buf, cap);
	sodium_free(buf);
	return rc;
}

int cmd_token(struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct option opts[] = {
		CLI_COMMON_OPTIONS,
		{ "tenant", required_argument, NULL, 't' },
		{ "scope", required_argument, NULL, 's' },
		{ "min-ttl", required_argument, NULL, 'm' },
		{ "purpose", required_argument, NULL, 'p' },
		{ "format", required_argument, NULL, 'f' },
		{ NULL, 0, NULL, 0 },
	};
	struct custody_token_request r = { 0 };
	struct custody_client *c = NULL;
	struct custody_token *t = NULL;
	struct custody_error e;
	enum fmt f = FMT_RAW;
	const char *sock;
	char *end;
	long v;
	int ch, rc, st = EXIT_OK;

	cli_getopt_reset();
	if (cli_exact_options(argv[0], argc, argv, opts) != 0)
		return EXIT_USAGE;
	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (ch) {
		case 't': r.tenant = optarg; continue;
		case 's': r.scope = optarg; continue;
		case 'p': r.purpose = optarg; continue;
		case 'm':
			errno = 0;
			v = strtol(optarg, &end, 10);
			if (errno || *end || end == optarg || v < 0 || v > 86400)
				return cli_usage_error("token", "--min-ttl: '%s' is not a number of "
						       "seconds from 0 to 86400", optarg);
			r.min_ttl = (int)v;
			continue;
		case 'f':
			if (strcmp(optarg, "raw") == 0)
				f = FMT_RAW;
			else if (strcmp(optarg, "json") == 0)
				f = FMT_JSON;
			else if (strcmp(optarg, "header") == 0)
				f = FMT_HEADER;
			else if (strcmp(optarg, "env") == 0)
				f = FMT_ENV;
			else
				return cli_usage_error("token", "--format: '%s' is not one of raw, "
						       "json, header, env", optarg);
			continue;
		default:
			break;
		}
		if (cli_common_stop(ctx, ch, usage, &st))
			return st;
	}
	if (optind != argc)
		return cli_usage_error("token", "unexpected argument '%s'", argv[optind]);
	if (r.tenant == NULL || *r.tenant == '\0')
		return cli_usage_error("token", "--tenant T is required");
	if (r.purpose != NULL && strlen(r.purpose) > 256)
		return cli_usage_error("token", "--purpose is longer than 256 bytes");

	sock = cli_tool_socket(ctx);
	if (sock == NULL)
		return EXIT_ERROR;
	memset(&e, 0, sizeof(e));
	rc = custody_connect(sock, &c, &e);
	if (rc == 0)
		rc = custody_token_request(c, &r, TOKEN_TIMEOUT_MS, &t, &e);
	custody_close(c);
	if (rc < 0)
		return cli_report(rc, &e, sock);
	rc = print_token(t, f);
	custody_token_free(t);
	if (rc < 0)
		return cli_fail(EXIT_ERROR, "cannot write the token to stdout: %s", strerror(-rc));
	return EXIT_OK;
}
