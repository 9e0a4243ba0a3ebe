/* common.c — options, errors, exit statuses and socket calls shared by
 * every custody command. */
#include "cli.h"

#include <errno.h>
#include <grp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

int cli_fail(int status, const char *fmt, ...)
{
	va_list ap;

	fputs("custody: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return status;
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fputs("custody: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "; see 'custody %s --help'\n", cmd);
	return EXIT_USAGE;
}

/* The command being parsed, for one-line option errors (getopt's own
 * messages would make them two). Set by cli_exact_options, which every
 * command calls first. */
static const char *parsing_cmd;
static char **parsing_argv;

void cli_getopt_reset(void)
{
	optind = 0;   /* GNU: 0 re-initialises getopt completely */
	opterr = 0;   /* errors are reported by cli_common_option, in one line */
}

int cli_exact_options(const char *cmd, int argc, char **argv, const struct option *opts)
{
	const struct option *o;
	size_t n;
	int i;

	parsing_cmd = cmd;
	parsing_argv = argv;
	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0)
			break;
		if (strncmp(argv[i], "--", 2) != 0)
			continue;
		n = strcspn(argv[i] + 2, "=");
		for (o = opts; o->name != NULL; o++)
			if (strlen(o->name) == n && strncmp(o->name, argv[i] + 2, n) == 0)
				break;
		if (o->name == NULL) {
			/* The name is not echoed: it may be a secret typed by mistake. */
			return cli_fail(EXIT_USAGE, "unknown option in argument %d (options are "
					"spelled out in full); see 'custody %s --help'", i, cmd);
		}
		if (o->has_arg == required_argument && argv[i][2 + n] == '\0')
			i++;   /* its value, even if it starts with "--" */
	}
	return 0;
}

int cli_common_option(struct cli_ctx *ctx, int c, const char *usage, int *exit_now)
{
	switch (c) {
	case OPT_CONFIG:
		ctx->config_arg = optarg;
		return 1;
	case OPT_SOCKET:
		ctx->socket_arg = optarg;
		return 1;
	case OPT_ADMIN_SOCKET:
		ctx->admin_socket_arg = optarg;
		return 1;
	case OPT_HELP:
		fputs(usage, stdout);
		*exit_now = EXIT_OK;
		return 1;
	case '?':
	case ':': {
		/* long options are spelled out (cli_exact_options), so a '?' on
		 * one means its value is missing; on a short one, it is unknown */
		const char *arg = parsing_argv != NULL && optind > 0 ? parsing_argv[optind - 1] : NULL;
		const char *cmd = parsing_cmd != NULL ? parsing_cmd : "";

		if (arg != NULL && strncmp(arg, "--", 2) == 0)
			fprintf(stderr, "custody: option '%.*s' needs a value; see 'custody %s --help'\n",
				(int)strcspn(arg, "="), arg, cmd);
		else if (optopt > 0 && optopt < 128)
			fprintf(stderr, "custody: unknown option '-%c'; see 'custody %s --help'\n",
				optopt, cmd);
		else
			fprintf(stderr, "custody: bad option; see 'custody %s --help'\n", cmd);
		*exit_now = EXIT_USAGE;
		return -1;
	}
	default:
		return 0;
	}
}

bool cli_common_stop(struct cli_ctx *ctx, int c, const char *usage, int *status)
{
	/* --config and the socket options are taken and parsing goes on; help
	 * and a usage error (-1) end the command. */
	return cli_common_option(ctx, c, usage, status) != 0 &&
	       (c == OPT_HELP || c == '?' || c == ':');
}

int cli_config(struct cli_ctx *ctx)
{
	struct cerr err = { "" };
	const char *path;
	int rc;

	if (ctx->cfg != NULL)
		return 0;
	path = broker_config_path(ctx->config_arg);
	rc = broker_config_load(path, &ctx->cfg, &err);
	if (rc == -ENOENT)
		return cli_fail(EXIT_ERROR, "cannot read config %s: no such file; run 'custody init "
				"--config %s' or pass --config FILE", path, path);
	/* the message names the file already ("FILE: key.path: what") */
	if (rc < 0 && err.msg[0] != '\0')
		return cli_fail(EXIT_ERROR, "%s; fix the file and try again ('custody config check "
				"FILE' lists every error)", err.msg);
	if (rc < 0)
		return cli_fail(EXIT_ERROR, "config %s: %s; fix the file and try again", path,
				strerror(-rc));
	return 0;
}

const char *cli_tool_socket(struct cli_ctx *ctx)
{
	const char *env = getenv("CUSTODY_SOCKET");

	if (ctx->socket_arg != NULL)
		return ctx->socket_arg;
	if (env != NULL && *env != '\0')
		return env;
	if (cli_config(ctx) != 0)
		return NULL;
	return ctx->cfg->tool_socket.path;
}

const char *cli_admin_socket(struct cli_ctx *ctx)
{
	if (ctx->admin_socket_arg != NULL)
		return ctx->admin_socket_arg;
	if (cli_config(ctx) != 0)
		return NULL;
	return ctx->cfg->admin_socket.path;
}

int cli_exit_for_code(const char *code)
{
	static const char *const refused[] = {
		"unauthenticated", "denied", "unknown_tenant", "scope_not_granted",
		"grant_pending", "grant_expired", "revoked", "suspended", "locked_down",
		"rate_limited", NULL,
	};
	size_t i;

	if (code == NULL)
		return EXIT_ERROR;
	for (i = 0; refused[i] != NULL; i++)
		if (strcmp(code, refused[i]) == 0)
			return EXIT_REFUSED;
	if (strcmp(code, "upstream_rejected") == 0 || strcmp(code, "upstream_unavailable") == 0)
		return EXIT_UPSTREAM;
	return EXIT_ERROR;
}

int cli_exit_for_rc(int rc, const struct custody_error *e)
{
	if (rc == 0)
		return EXIT_OK;
	if (rc == -EREMOTEIO)
		return cli_exit_for_code(e->code);
	if (rc == -ENOENT || rc == -ECONNREFUSED || rc == -EACCES || rc == -ENOTDIR ||
	    rc == -ENAMETOOLONG)
		return EXIT_UNREACHABLE;
	return EXIT_ERROR;
}

/* What a person should do about a broker error code. */
static const char *advice_for(const char *code)
{
	if (strcmp(code, "unauthenticated") == 0)
		return "ask the MSSP admin to map your user or program to a principal in the config";
	if (strcmp(code, "denied") == 0)
		return "ask for the role or grant this needs";
	if (strcmp(code, "unknown_tenant") == 0)
		return "check the tenant with 'custody grant list'";
	if (strcmp(code, "scope_not_granted") == 0)
		return "ask the customer for a grant with that scope";
	if (strcmp(code, "grant_pending") == 0)
		return "wait until the grant's not_before";
	if (strcmp(code, "grant_expired") == 0 || strcmp(code, "revoked") == 0)
		return "the customer must seal a new grant";
	if (strcmp(code, "suspended") == 0 || strcmp(code, "locked_down") == 0)
		return "ask a security officer";
	if (strcmp(code, "rate_limited") == 0)
		return "retry later";
	if (strcmp(code, "upstream_rejected") == 0)
		return "the identity provider refused the credential; ask the customer to check the app registration";
	if (strcmp(code, "upstream_unavailable") == 0)
		return "the identity provider could not be reached; retry later";
	if (strcmp(code, "audit_unavailable") == 0)
		return "the audit store cannot write; check the broker's disk and log";
	if (strcmp(code, "bad_request") == 0)
		return "check the arguments";
	if (strcmp(code, "unknown_op") == 0 || strcmp(code, "unsupported_version") == 0)
		return "custody and custodyd are different versions; update one";
	if (strcmp(code, "too_large") == 0)
		return "the request is too large for the broker";
	return "see the broker's log";
}

/* The socket is there but this user may not connect: custodyd runs, so
 * "start custodyd" would mislead. Name the group that lets one in. */
static void report_denied(const char *sock)
{
	struct stat st;
	struct group *gr;

	if (sock == NULL || stat(sock, &st) < 0) {
		cli_fail(EXIT_UNREACHABLE, "permission denied on %s: a directory on the way does not "
			 "let you in; ask an admin to check the runtime directory's permissions",
			 sock ? sock : "the socket");
		return;
	}
	gr = getgrgid(st.st_gid);
	if (gr != NULL)
		cli_fail(EXIT_UNREACHABLE, "permission denied on %s (mode %04o, group %s); ask to be "
			 "added to group %s", sock, (unsigned)(st.st_mode & 07777), gr->gr_name,
			 gr->gr_name);
	else
		cli_fail(EXIT_UNREACHABLE, "permission denied on %s (mode %04o, gid %u); ask to be "
			 "added to group %u", sock, (unsigned)(st.st_mode & 07777),
			 (unsigned)st.st_gid, (unsigned)st.st_gid);
}

int cli_report(int rc, const struct custody_error *e, const char *sock)
{
	int status = cli_exit_for_rc(rc, e);
	size_t i;

	if (rc == -EREMOTEIO) {
		fprintf(stderr, "custody: %s (%s", e->message, e->code);
		if (e->retry_after > 0)
			fprintf(stderr, ", retry after %d s", e->retry_after);
		if (e->upstream_error[0] != '\0')
			fprintf(stderr, ", upstream %s", e->upstream_error);
		for (i = 0; i < e->n_upstream_codes; i++)
			fprintf(stderr, "%sAADSTS%ld", i == 0 ? " " : ",", e->upstream_codes[i]);
		/* Most refusals carry their own advice ("... (`custody grant
		 * list`)"): the generic one then would only say it twice. */
		if (strstr(e->message, "`custody ") || strstr(e->message, "'custody ") ||
		    strstr(e->message, "ask the ") || strstr(e->message, "ask an ") ||
		    strstr(e->message, " must "))
			fprintf(stderr, ")\n");
		else
			fprintf(stderr, "); %s\n", advice_for(e->code));
	} else if (status == EXIT_UNREACHABLE && rc == -EACCES) {
		report_denied(sock);
	} else if (status == EXIT_UNREACHABLE) {
		cli_fail(status, "broker not reachable at %s: %s; start custodyd or pass "
			 "--socket/--admin-socket", sock ? sock : "?", strerror(-rc));
	} else {
		cli_fail(status, "%s; check that custodyd runs and see its log",
			 e->message[0] ? e->message : custody_strerror(rc));
	}
	return status;
}

static int call_on(const char *sock, json_t *req, int timeout_ms, json_t **reply)
{
	struct custody_client *c = NULL;
	struct custody_error e;
	int rc;

	memset(&e, 0, sizeof(e));
	rc = custody_connect(sock, &c, &e);
	if (rc == 0)
		rc = custody_call(c, req, timeout_ms, reply, &e);
	custody_close(c);
	if (rc < 0)
		return cli_report(rc, &e, sock);
	return 0;
}

int cli_admin_call(struct cli_ctx *ctx, json_t *req, int timeout_ms, json_t **reply)
{
	const char *sock = cli_admin_socket(ctx);

	if (sock == NULL)
		return EXIT_ERROR;
	return call_on(sock, req, timeout_ms, reply);
}

int cli_tool_call(struct cli_ctx *ctx, json_t *req, int timeout_ms, json_t **reply)
{
	const char *sock = cli_tool_socket(ctx);

	if (sock == NULL)
		return EXIT_ERROR;
	return call_on(sock, req, timeout_ms, reply);
}

bool cli_socket_alive(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	bool alive;
	int fd;

	if (path == NULL || strlen(path) >= sizeof(sa.sun_path))
		return false;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	alive = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return alive;
}

void cli_print_json(FILE *out, json_t *j, bool pretty)
{
	json_dumpf(j, out, pretty ? JSON_INDENT(2) | JSON_SORT_KEYS : JSON_COMPACT);
	fputc('\n', out);
}

const char *cli_time_s(int64_t s, char buf[static 40])
{
	if (s == INT64_MIN || s == INT64_MAX || util_time_format(s * 1000000, false, buf) < 0)
		snprintf(buf, 40, "-");
	return buf;
}

int cli_dispatch(struct cli_ctx *ctx, const char *group, const struct cli_cmd *cmds,
		 int argc, char **argv)
{
	size_t i;

	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		FILE *out = argc < 2 ? stderr : stdout;

		fprintf(out, "Usage: custody %s <command> [options]\n\nCommands:\n", group);
		for (i = 0; cmds[i].name != NULL; i++)
			fprintf(out, "  %-10s %s\n", cmds[i].name, cmds[i].summary);
		fprintf(out, "\n'custody %s <command> --help' describes each.\n", group);
		return argc < 2 ? EXIT_USAGE : EXIT_OK;
	}
	for (i = 0; cmds[i].name != NULL; i++)
		if (strcmp(argv[1], cmds[i].name) == 0)
			return cmds[i].run(ctx, argc - 1, argv + 1);
	return cli_usage_error(group, "unknown command '%s %s'", group, argv[1]);
}
