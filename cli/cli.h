/* cli.h — what the custody command's files share: the command table, the
 * options every command takes, exit statuses and the socket helpers.
 * Private to cli/.
 */
#ifndef CUSTODY_CLI_H
#define CUSTODY_CLI_H

#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>

#include <jansson.h>

#include "broker.h"
#include "libcustody.h"

/* Exit statuses, DESIGN.md §9. Scripts rely on them. */
enum cli_exit {
	EXIT_OK = 0,
	EXIT_ERROR = 1,
	EXIT_USAGE = 2,
	EXIT_REFUSED = 3,
	EXIT_UPSTREAM = 4,
	EXIT_UNREACHABLE = 5,
	EXIT_VERIFY = 6,
};

/* The options every command takes, set before the command runs. */
struct cli_ctx {
	const char *prog;             /* "custody" */
	const char *config_arg;       /* --config; NULL: $CUSTODY_CONFIG or the default */
	const char *socket_arg;       /* --socket; NULL: $CUSTODY_SOCKET or the config's */
	const char *admin_socket_arg; /* --admin-socket; NULL: the config's */
	struct broker_config *cfg;    /* loaded on first cli_config() */
};

struct cli_cmd {
	const char *name;
	int (*run)(struct cli_ctx *ctx, int argc, char **argv);
	const char *summary;
};

/* Long options shared by every command; put CLI_COMMON_OPTIONS at the start
 * of each command's option table and pass unknown option chars to
 * cli_common_option. */
enum { OPT_CONFIG = 0x1000, OPT_SOCKET, OPT_ADMIN_SOCKET, OPT_HELP = 'h' };
#define CLI_COMMON_OPTIONS                                            \
	{ "config", required_argument, NULL, OPT_CONFIG },             \
	{ "socket", required_argument, NULL, OPT_SOCKET },             \
	{ "admin-socket", required_argument, NULL, OPT_ADMIN_SOCKET }, \
	{ "help", no_argument, NULL, OPT_HELP }
#define CLI_COMMON_HELP \
	"  --config FILE         config file ($CUSTODY_CONFIG, default /etc/custody/custody.json)\n" \
	"  --socket PATH         tool socket ($CUSTODY_SOCKET, default from the config)\n"          \
	"  --admin-socket PATH   admin socket (default from the config)\n"                          \
	"  -h, --help            show this help\n"

/* Handle a common option. Returns 1 when handled (help prints usage to
 * stdout and sets *exit_now = EXIT_OK), 0 when c is not a common option,
 * or -1 for '?' (usage already reported by getopt: *exit_now = EXIT_USAGE). */
int cli_common_option(struct cli_ctx *ctx, int c, const char *usage, int *exit_now);
/* The last step of a command's option loop: cli_common_option, then true
 * when the command must return *status now (help printed: EXIT_OK, or a
 * usage error reported: EXIT_USAGE); false to go on parsing. */
bool cli_common_stop(struct cli_ctx *ctx, int c, const char *usage, int *status);

/* Refuse long options that are not spelled out in full: getopt_long takes
 * unambiguous prefixes, so "--client-secret X" would otherwise become
 * "--client-secret-file X". Returns 0 or EXIT_USAGE (message printed). */
int cli_exact_options(const char *cmd, int argc, char **argv, const struct option *opts);

/* Reset getopt for a fresh argv (commands parse their own). */
void cli_getopt_reset(void);

/* Print "custody: <msg>" on stderr and return status. */
int cli_fail(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A usage error: the message, then "see 'custody <cmd> --help'". */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Load the config (once). On failure prints the error and returns the exit
 * status (EXIT_ERROR); 0 on success. */
int cli_config(struct cli_ctx *ctx);

/* Socket paths: --socket/$CUSTODY_SOCKET or the config's. NULL only when
 * the config cannot be loaded (error already printed). */
const char *cli_tool_socket(struct cli_ctx *ctx);
const char *cli_admin_socket(struct cli_ctx *ctx);

/* The exit status for a broker error code (DESIGN.md §9's table). */
int cli_exit_for_code(const char *code);
/* The exit status for a libcustody return value (and its error). */
int cli_exit_for_rc(int rc, const struct custody_error *e);

/* Send one admin op and wait for its reply. On failure prints the error
 * (one line, with what to do) and returns the exit status; on success
 * returns 0 and *reply holds the reply. timeout_ms < 0: no limit. */
int cli_admin_call(struct cli_ctx *ctx, json_t *req, int timeout_ms, json_t **reply);
/* The same, on the tool socket. */
int cli_tool_call(struct cli_ctx *ctx, json_t *req, int timeout_ms, json_t **reply);
/* Is anything listening on path? (connect succeeds) */
bool cli_socket_alive(const char *path);

/* Print a libcustody failure as one line and return its exit status. */
int cli_report(int rc, const struct custody_error *e, const char *sock);

/* Print JSON to out, compact or indented, newline-ended. */
void cli_print_json(FILE *out, json_t *j, bool pretty);

/* RFC 3339 from unix seconds, or "-" when absent (INT64_MIN/INT64_MAX). */
const char *cli_time_s(int64_t s, char buf[static 40]);

int cmd_init(struct cli_ctx *ctx, int argc, char **argv);
int cmd_keys(struct cli_ctx *ctx, int argc, char **argv);
int cmd_grant(struct cli_ctx *ctx, int argc, char **argv);
int cmd_principal(struct cli_ctx *ctx, int argc, char **argv);
int cmd_lockdown(struct cli_ctx *ctx, int argc, char **argv);
int cmd_unlock(struct cli_ctx *ctx, int argc, char **argv);
int cmd_token(struct cli_ctx *ctx, int argc, char **argv);
int cmd_status(struct cli_ctx *ctx, int argc, char **argv);
int cmd_audit(struct cli_ctx *ctx, int argc, char **argv);
int cmd_vault(struct cli_ctx *ctx, int argc, char **argv);
int cmd_witness(struct cli_ctx *ctx, int argc, char **argv);
int cmd_config(struct cli_ctx *ctx, int argc, char **argv);
int cmd_reload(struct cli_ctx *ctx, int argc, char **argv);
int cmd_demo(struct cli_ctx *ctx, int argc, char **argv);

/* Run a command group's sub-table: argv[0] is the group name. */
int cli_dispatch(struct cli_ctx *ctx, const char *group, const struct cli_cmd *cmds,
		 int argc, char **argv);

/* The keys the broker would print for `keys`: from the running broker
 * (tool socket op "keys") or, when it does not run, the vault's public
 * part. *out: {"seal_public_key","seal_key_id","audit_verifier_key"}.
 * Returns 0 or an exit status (error printed). */
int cli_keys_get(struct cli_ctx *ctx, json_t **out);

#endif
