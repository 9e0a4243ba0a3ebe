/* cmd_witness.c — custody witness init|add-log|serve|status: a C2SP
 * tlog-witness a customer runs with nothing else (DESIGN.md §11.1). It
 * needs no broker, no config and no master key: only its state dir. */
#include "cli.h"

#include <errno.h>
#include <signal.h>
#include <string.h>

#include "witness.h"

static const char init_usage[] =
	"Usage: custody witness init --state DIR --name NAME\n"
	"\n"
	"Create a witness: a new Ed25519 key in DIR (0700) and its database.\n"
	"Prints the witness's verifier key (signature type 0x04): give it to the\n"
	"log operator (audit.witnesses[].key) and to 'custody audit verify --witness'.\n"
	"\n"
	"Options:\n"
	"  --state DIR           the witness's state directory (created)\n"
	"  --name NAME           the witness's key name, a schema-less URL\n"
	"                        (like witness.example.com/w1)\n" CLI_COMMON_HELP;

static const char add_log_usage[] =
	"Usage: custody witness add-log --state DIR --key LOG_VKEY [--origin O]\n"
	"\n"
	"Follow a log: cosign its checkpoints when they are signed by LOG_VKEY\n"
	"(the broker's 'custody keys' audit_verifier_key) and consistent with\n"
	"the last one cosigned.\n"
	"\n"
	"Options:\n"
	"  --state DIR           the witness's state directory\n"
	"  --key LOG_VKEY        the log's verifier key, or a file holding it\n"
	"  --origin O            the origin line of its checkpoints (default: the key's name)\n"
	CLI_COMMON_HELP;

static const char serve_usage[] =
	"Usage: custody witness serve --state DIR --listen ADDR:PORT [--tls-cert F --tls-key F]\n"
	"\n"
	"Answer C2SP tlog-witness add-checkpoint requests (POST .../add-checkpoint)\n"
	"over HTTP/1.1, or HTTPS with a certificate and key (PEM). Runs until\n"
	"SIGINT or SIGTERM; one log line per request on stderr.\n"
	"\n"
	"Options:\n"
	"  --state DIR           the witness's state directory\n"
	"  --listen ADDR:PORT    IPv4 address and port (port 0: any free one)\n"
	"  --tls-cert FILE       PEM certificate (chain) for HTTPS\n"
	"  --tls-key FILE        PEM private key for HTTPS\n" CLI_COMMON_HELP;

static const char status_usage[] =
	"Usage: custody witness status --state DIR [--json]\n"
	"\n"
	"Per log: its origin, the size and root of the newest checkpoint cosigned,\n"
	"and when.\n"
	"\n"
	"Options:\n"
	"  --state DIR           the witness's state directory\n"
	"  --json                one JSON object\n" CLI_COMMON_HELP;

enum { O_STATE = 1, O_NAME, O_KEY, O_ORIGIN, O_LISTEN, O_CERT, O_TLSKEY, O_JSON };

struct wopts {
	const char *state, *name, *key, *origin, *listen, *cert, *tlskey;
	bool json;
};

/* Parse the options a subcommand allows (allowed: a string of O_* bytes). */
static int wparse(struct cli_ctx *ctx, const char *cmd, const char *usage, const char *allowed,
		  int argc, char **argv, struct wopts *o, int *status)
{
	static const struct option opts[] = {
		CLI_COMMON_OPTIONS,
		{ "state", required_argument, NULL, O_STATE },
		{ "name", required_argument, NULL, O_NAME },
		{ "key", required_argument, NULL, O_KEY },
		{ "origin", required_argument, NULL, O_ORIGIN },
		{ "listen", required_argument, NULL, O_LISTEN },
		{ "tls-cert", required_argument, NULL, O_CERT },
		{ "tls-key", required_argument, NULL, O_TLSKEY },
		{ "json", no_argument, NULL, O_JSON },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	memset(o, 0, sizeof(*o));
	cli_getopt_reset();
	if (cli_exact_options(cmd, argc, argv, opts) != 0) {
		*status = EXIT_USAGE;
		return -1;
	}
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (c >= O_STATE && c <= O_JSON) {
			if (strchr(allowed, c) == NULL) {
				*status = cli_usage_error(cmd, "option '%s' does not apply here",
							  argv[optind - 1]);
				return -1;
			}
			switch (c) {
			case O_STATE: o->state = optarg; break;
			case O_NAME: o->name = optarg; break;
			case O_KEY: o->key = optarg; break;
			case O_ORIGIN: o->origin = optarg; break;
			case O_LISTEN: o->listen = optarg; break;
			case O_CERT: o->cert = optarg; break;
			case O_TLSKEY: o->tlskey = optarg; break;
			case O_JSON: o->json = true; break;
			}
			continue;
		}
		if (cli_common_stop(ctx, c, usage, status))
			return -1;
	}
	if (optind != argc) {
		*status = cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
		return -1;
	}
	if (o->state == NULL) {
		*status = cli_usage_error(cmd, "--state DIR is required");
		return -1;
	}
	return 0;
}

static int init_main(struct cli_ctx *ctx, int argc, char **argv)
{
	static const char allowed[] = { O_STATE, O_NAME, 0 };
	struct wopts o;
	struct cerr err = { "" };
	char *vkey = NULL;
	int st = EXIT_OK;

	if (wparse(ctx, "witness init", init_usage, allowed, argc, argv, &o, &st) < 0)
		return st;
	if (o.name == NULL)
		return cli_usage_error("witness init", "--name NAME is required");
	if (witness_create(o.state, o.name, &vkey, &err) < 0)
		return cli_fail(EXIT_ERROR, "%s", err.msg);
	printf("%s\n", vkey);
	free(vkey);
	return EXIT_OK;
}

/* A vkey given inline or as a file holding it. */
static char *vkey_arg(const char *arg)
{
	char *buf = NULL, *p, *e;
	size_t len = 0;

	if (strchr(arg, '+') != NULL && strchr(arg, '/') == NULL)
		return strdup(arg);
	if (strchr(arg, '+') != NULL && access(arg, R_OK) != 0)
		return strdup(arg);
	if (util_read_file(arg, 4096, &buf, &len) < 0)
		return strdup(arg);
	for (p = buf; *p == ' ' || *p == '\n' || *p == '\t' || *p == '\r'; p++)
		;
	e = p + strlen(p);
	while (e > p && (e[-1] == ' ' || e[-1] == '\n' || e[-1] == '\t' || e[-1] == '\r'))
		*--e = '\0';
	memmove(buf, p, strlen(p) + 1);
	return buf;
}

static int add_log_main(struct cli_ctx *ctx, int argc, char **argv)
{
	static const char allowed[] = { O_STATE, O_KEY, O_ORIGIN, 0 };
	struct wopts o;
	struct witness *w = NULL;
	struct cerr err = { "" };
	char *key;
	int st = EXIT_OK;

	if (wparse(ctx, "witness add-log", add_log_usage, allowed, argc, argv, &o, &st) < 0)
		return st;
	if (o.key == NULL)
		return cli_usage_error("witness add-log", "--key LOG_VKEY is required");
	if (witness_open(o.state, &w, &err) < 0)
		return cli_fail(EXIT_ERROR, "%s", err.msg);
	key = vkey_arg(o.key);
	if (key == NULL || witness_add_log(w, key, o.origin, &err) < 0) {
		st = cli_fail(EXIT_ERROR, "%s", key ? err.msg : "out of memory");
	} else {
		printf("witness %s follows %s\n", witness_name(w), o.origin ? o.origin : key);
	}
	free(key);
	witness_close(w);
	return st;
}

static volatile sig_atomic_t serve_stop;

static void on_stop(int sig)
{
	(void)sig;
	serve_stop = 1;
}

static int serve_main(struct cli_ctx *ctx, int argc, char **argv)
{
	static const char allowed[] = { O_STATE, O_LISTEN, O_CERT, O_TLSKEY, 0 };
	struct sigaction sa;
	struct wopts o;
	struct witness *w = NULL;
	struct cerr err = { "" };
	int st = EXIT_OK;

	if (wparse(ctx, "witness serve", serve_usage, allowed, argc, argv, &o, &st) < 0)
		return st;
	if (o.listen == NULL)
		return cli_usage_error("witness serve", "--listen ADDR:PORT is required");
	if ((o.cert == NULL) != (o.tlskey == NULL))
		return cli_usage_error("witness serve", "give both --tls-cert and --tls-key, or neither");
	if (witness_open(o.state, &w, &err) < 0)
		return cli_fail(EXIT_ERROR, "%s", err.msg);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (witness_serve(w, o.listen, o.cert, o.tlskey, &serve_stop, &err) < 0)
		st = cli_fail(EXIT_ERROR, "%s", err.msg);
	witness_close(w);
	return st;
}

static int status_main(struct cli_ctx *ctx, int argc, char **argv)
{
	static const char allowed[] = { O_STATE, O_JSON, 0 };
	struct wopts o;
	struct witness *w = NULL;
	struct cerr err = { "" };
	json_t *s = NULL, *l;
	size_t i;
	int st = EXIT_OK;

	if (wparse(ctx, "witness status", status_usage, allowed, argc, argv, &o, &st) < 0)
		return st;
	if (witness_open(o.state, &w, &err) < 0)
		return cli_fail(EXIT_ERROR, "%s", err.msg);
	if (witness_status(w, &s, &err) < 0) {
		witness_close(w);
		json_decref(s);
		return cli_fail(EXIT_ERROR, "%s", err.msg);
	}
	witness_close(w);
	if (o.json) {
		cli_print_json(stdout, s, true);
		json_decref(s);
		return EXIT_OK;
	}
	printf("witness: %s\nkey: %s\n", json_string_value(json_object_get(s, "name")),
	       json_string_value(json_object_get(s, "vkey")));
	json_array_foreach(json_object_get(s, "logs"), i, l) {
		json_t *at = json_object_get(l, "cosigned_at");
		char tb[40];

		printf("log %s: size %lld, root %s, last cosigned %s\n",
		       json_string_value(json_object_get(l, "origin")),
		       (long long)json_integer_value(json_object_get(l, "size")),
		       json_string_value(json_object_get(l, "root"))
			       ? json_string_value(json_object_get(l, "root"))
			       : "-",
		       json_is_integer(at) ? cli_time_s(json_integer_value(at), tb) : "never");
	}
	if (json_array_size(json_object_get(s, "logs")) == 0)
		printf("no logs yet: add one with 'custody witness add-log --state %s --key VKEY'\n",
		       o.state);
	json_decref(s);
	return EXIT_OK;
}

int cmd_witness(struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct cli_cmd cmds[] = {
		{ "init", init_main, "create a witness key and print its verifier key" },
		{ "add-log", add_log_main, "follow a log (its verifier key)" },
		{ "serve", serve_main, "answer add-checkpoint over HTTP(S)" },
		{ "status", status_main, "per log: size, root, last cosigned" },
		{ NULL, NULL, NULL },
	};

	return cli_dispatch(ctx, "witness", cmds, argc, argv);
}
