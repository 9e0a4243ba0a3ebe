/* cmd_audit.c — custody audit list|export|verify|report|tail.
 *
 * list/export/tail ask the running broker (admin socket, role auditor) and,
 * when it does not run, read the database file read-only. verify is
 * always offline: it trusts nothing but the file and the verifier key. */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit.h"
#include "report.h"
#include "vault.h"

#define PAGE 1000
#define TAIL_LINES 10
#define FOLLOW_MS 250
#define RECONNECT_MS 500
#define SOURCE_LOST 100  /* source_query: the broker connection broke */

static const char list_usage[] =
	"Usage: custody audit list [--tenant T] [--principal P] [--event E] [--outcome O]\n"
	"                          [--since T] [--until T] [--limit N] [--format table|json|csv]\n"
	"\n"
	"List audit records, oldest first. With --limit N, the newest N that match.\n"
	"Asks the running broker; reads the database file when it does not run.\n"
	"A tenant is its id or its name (offline the name comes from the store's\n"
	"grant-import records or the vault). An unknown tenant, event or outcome\n"
	"is an error naming the accepted values, not an empty list.\n"
	"\n"
	"Options:\n"
	"  --tenant T            tenant id or name\n"
	"  --principal P, --event E, --outcome O   filters (exact match; outcome is\n"
	"                        ok or an error code such as denied, revoked)\n"
	"  --since T, --until T  RFC 3339 times\n"
	"  --limit N             at most N records (the newest)\n"
	"  --format F            table (default), json (one record body per line), csv\n"
	CLI_COMMON_HELP;

static const char export_usage[] =
	"Usage: custody audit export --tenant T [--since T] [--until T]\n"
	"                            [--from-checkpoint FILE] --output FILE\n"
	"\n"
	"Write one tenant's records, each with an inclusion proof against a signed\n"
	"checkpoint (and a consistency proof from --from-checkpoint, a checkpoint the\n"
	"customer kept), for the customer to verify offline with 'custody audit verify\n"
	"--export FILE --key VKEY'. Reveals nothing of other tenants.\n"
	"\n"
	"Options:\n"
	"  --tenant T            the tenant, by id or name (required)\n"
	"  --since T, --until T  RFC 3339 times\n"
	"  --from-checkpoint FILE  the previous export itself, or a checkpoint note saved\n"
	"                        with 'audit verify --save-checkpoint': the new export\n"
	"                        then proves the log only grew since\n"
	"  --output FILE         where to write the export (required); written to a new\n"
	"                        file and renamed into place, never through a symlink\n"
	CLI_COMMON_HELP;

static const char verify_usage[] =
	"Usage: custody audit verify [--db FILE | --export FILE] [--key VKEY]\n"
	"                            [--checkpoint NOTE] [--save-checkpoint NOTE]\n"
	"                            [--witness WKEY]... [--quorum N]\n"
	"\n"
	"Verify offline: every leaf hash, the root at every checkpoint, every\n"
	"signature and every tenant chain; for an export also its window (since,\n"
	"until, the tenant's first record). Names the first record that does not\n"
	"match. Records after the newest signed checkpoint are not covered by a\n"
	"signature: verify says how many, from which seq.\n"
	"\n"
	"Exit 0 verified (records not yet covered are listed), 6 verification\n"
	"failed: tampered, no signed checkpoint covers any record, the key is not\n"
	"this log's, or --checkpoint does not match; 1 cannot read.\n"
	"\n"
	"Options:\n"
	"  --db FILE             the audit database (default: state_dir/audit.db)\n"
	"  --export FILE         a tenant export instead\n"
	"  --key VKEY            the verifier key (or a file holding it); default: the\n"
	"                        audit_verifier_key 'custody keys' prints\n"
	"  --checkpoint NOTE     a checkpoint you kept (a note file, or an earlier\n"
	"                        export): the log must hold exactly what it signed\n"
	"  --save-checkpoint NOTE  after success, write the verified checkpoint note\n"
	"                        there, for the next --checkpoint/--from-checkpoint\n"
	"  --witness WKEY        also require a cosignature by this witness key (type\n"
	"                        0x04, or a file holding it) on the checkpoint the\n"
	"                        proofs end at (an export's; a database's newest\n"
	"                        witnessed one); repeat for several witnesses\n"
	"  --quorum N            how many of the --witness keys must have cosigned\n"
	"                        (default: all); timestamps must not be in the future\n"
	CLI_COMMON_HELP;

static const char report_usage[] =
	"Usage: custody audit report (--export FILE | --db FILE) [--key VKEY]\n"
	"                            [--checkpoint NOTE] [--witness WKEY]... [--quorum N]\n"
	"                            --output FILE\n"
	"\n"
	"Verify, then write the audit trail as one self-contained HTML page to read in\n"
	"a browser or print: the verdict, the period, tokens issued and refused per\n"
	"day, accesses by principal, purpose and scope, refusals by reason, every\n"
	"officer action with its reason, and every token with its SHA-256, uti and\n"
	"client-request-id for matching against Entra sign-in logs. The page runs no\n"
	"script and loads nothing. When verification fails the page is still\n"
	"written, with the first mismatch in red, and the exit status is 6.\n"
	"\n"
	"Options:\n"
	"  --export FILE         a tenant export (the customer's view)\n"
	"  --db FILE             an audit database: every tenant, one section each\n"
	"  --key VKEY            the verifier key (or a file holding it); default: the\n"
	"                        audit_verifier_key 'custody keys' prints\n"
	"  --checkpoint NOTE     a checkpoint you kept (a note, or the export it came in):\n"
	"                        the log must match it, as with 'audit verify'\n"
	"  --witness WKEY        a witness's key (or a file holding it; repeatable): the\n"
	"                        checkpoint must carry its valid cosignature, as with\n"
	"                        'audit verify --witness'; the banner lists them\n"
	"  --quorum N            how many of the --witness keys must have cosigned\n"
	"                        (default: all of them)\n"
	"  --output FILE         where to write the page (required)\n" CLI_COMMON_HELP;

static const char tail_usage[] =
	"Usage: custody audit tail [--follow]\n"
	"\n"
	"Print the last records; with --follow keep printing new ones as they come\n"
	"(until interrupted), by sequence, reconnecting when the broker restarts.\n"
	"The broker audits when following starts and when it stops, not each poll.\n"
	"\n"
	"Options:\n"
	"  -f, --follow          keep following\n"
	"  --format F            table (default), json, csv\n" CLI_COMMON_HELP;

enum fmt { FMT_TABLE, FMT_JSON, FMT_CSV };

struct aq {
	const char *tenant, *principal, *event, *outcome, *since, *until;
	uint64_t after_seq;
	unsigned limit;
	bool desc;
	bool follow;     /* audit tail --follow: the broker audits start and stop only */
};

/* A checkpoint note from a file: the note itself, or an export (its
 * "checkpoint"). 0, or an exit status (error printed). */
static int checkpoint_load(const char *opt, const char *path, char **out)
{
	char *text = NULL;
	size_t len = 0;
	json_t *doc;
	int rc;

	rc = util_read_file(path, (size_t)1 << 31, &text, &len);
	if (rc < 0)
		return cli_fail(EXIT_ERROR, "%s: cannot read %s: %s", opt, path, strerror(-rc));
	if (len > 0 && text[0] == '{') {
		const char *note;

		doc = json_loadb(text, len, 0, NULL);
		note = json_string_value(json_object_get(doc, "checkpoint"));
		free(text);
		text = note ? strdup(note) : NULL;
		json_decref(doc);
		if (note == NULL)
			return cli_fail(EXIT_ERROR, "%s: %s is JSON but not an audit export with a "
					"checkpoint; pass an export or a checkpoint note", opt, path);
		if (text == NULL)
			return cli_fail(EXIT_ERROR, "out of memory");
	}
	*out = text;
	return 0;
}

/* Where records come from: the broker, or the file when it does not run. */
struct source {
	struct custody_client *c;
	const char *sock;
	struct audit *a;
};

static int source_open(struct cli_ctx *ctx, struct source *s)
{
	struct audit_opts o = { .read_only = true };
	struct custody_error e;
	struct cerr err = { "" };
	int rc;

	memset(s, 0, sizeof(*s));
	s->sock = cli_admin_socket(ctx);
	if (s->sock == NULL)
		return EXIT_ERROR;
	memset(&e, 0, sizeof(e));
	rc = custody_connect(s->sock, &s->c, &e);
	if (rc == 0)
		return 0;
	if (cli_exit_for_rc(rc, &e) != EXIT_UNREACHABLE || rc == -EACCES)
		return cli_report(rc, &e, s->sock);
	/* Nobody listens: read the file itself (needs read access to it). */
	if (cli_config(ctx) != 0)
		return EXIT_ERROR;
	/* with witnesses configured, exports end where the broker's would:
	 * at the newest checkpoint carrying the quorum */
	{
		static struct audit_vkey wkeys[AUDIT_WITNESS_MAX];

		for (size_t i = 0; i < ctx->cfg->n_witnesses; i++)
			wkeys[i] = ctx->cfg->witnesses[i].vkey;
		o.witnesses = wkeys;
		o.n_witnesses = ctx->cfg->n_witnesses;
		o.witness_quorum = ctx->cfg->witness_quorum;
	}
	rc = audit_open(ctx->cfg->audit_db, &o, &s->a, &err);
	if (rc < 0)
		return cli_fail(rc == -ENOENT ? EXIT_UNREACHABLE : EXIT_ERROR,
				"the broker is not running and %s cannot be read: %s; start "
				"custodyd or check the path", ctx->cfg->audit_db,
				err.msg[0] ? err.msg : strerror(-rc));
	return 0;
}

struct name_find {
	const char *name;
	char id[128];
	int found;
};

static int name_find_cb(void *ctx, const struct grant *g)
{
	struct name_find *nf = ctx;

	if (strcasecmp(g->tenant_name, nf->name) != 0 && strcasecmp(g->tenant_id, nf->name) != 0)
		return 0;
	if (nf->found && strcmp(nf->id, g->tenant_id) != 0)
		nf->found = 2;
	else
		nf->found = nf->found ? nf->found : 1;
	snprintf(nf->id, sizeof(nf->id), "%s", g->tenant_id);
	return 0;
}

/* Offline, a tenant name becomes the tenant id the records carry: from
 * the store (its grant-import records carry the name), else from the
 * vault when this user can open it. 0, or an exit status (error printed). */
static int offline_tenant(struct cli_ctx *ctx, struct source *s, const char *tenant, char **id)
{
	struct vault_key_source src;
	struct name_find nf = { .name = tenant };
	struct cerr err = { "" }, verr = { "" };
	struct vault *v = NULL;
	int rc;

	rc = audit_tenant_resolve(s->a, tenant, id, &err);
	if (rc == 0)
		return 0;
	if (rc != -ENOENT)
		return cli_fail(rc == -EEXIST ? EXIT_REFUSED : EXIT_ERROR, "%s", err.msg);
	broker_config_key_source(ctx->cfg, &src);
	rc = vault_open(ctx->cfg->vault_dir, &src, &v, &verr);
	if (rc < 0)
		return cli_fail(EXIT_ERROR, "%s; a tenant name needs the running broker, the vault's "
				"master key, or the tenant id", err.msg);
	rc = vault_grant_foreach(v, name_find_cb, &nf);
	vault_close(v);
	if (rc < 0 || nf.found == 0)
		return cli_fail(EXIT_REFUSED, "%s", err.msg);
	if (nf.found > 1)
		return cli_fail(EXIT_REFUSED, "tenant name %s belongs to more than one tenant: give "
				"the tenant id", tenant);
	*id = strdup(nf.id);
	return *id ? 0 : cli_fail(EXIT_ERROR, "out of memory");
}

/* Offline checks of a filter: event and outcome values, the tenant by
 * id or name (q->tenant then points at *tid). 0 or an exit status. */
static int offline_filter(struct cli_ctx *ctx, struct source *s, struct aq *q, char **tid)
{
	struct audit_filter f = { .event = q->event, .outcome = q->outcome };
	struct cerr err = { "" };
	int rc;

	*tid = NULL;
	if (s->a == NULL)
		return 0;
	rc = audit_filter_check(s->a, &f, &err);
	if (rc < 0)
		return cli_fail(EXIT_ERROR, "%s", err.msg);
	if (q->tenant == NULL)
		return 0;
	rc = offline_tenant(ctx, s, q->tenant, tid);
	if (rc != 0)
		return rc;
	q->tenant = *tid;
	return 0;
}

static void source_close(struct source *s)
{
	custody_close(s->c);
	if (s->a != NULL)
		audit_close(s->a);
}

static int collect(void *ctx, uint64_t seq, const char *body, size_t len)
{
	json_t *arr = ctx, *o;

	(void)seq;
	o = json_loadb(body, len, 0, NULL);
	if (o == NULL)
		return -EBADMSG;
	return json_array_append_new(arr, o) < 0 ? -ENOMEM : 0;
}

static int parse_time_opt(const char *s, int64_t *us)
{
	if (s == NULL) {
		*us = 0;
		return 0;
	}
	return util_time_parse(s, us);
}

/* One page of records (body objects) into *out. Returns 0 or an exit status. */
static int source_query(struct source *s, const struct aq *q, json_t **out)
{
	json_t *req = NULL, *reply = NULL, *recs;
	struct audit_filter f = { 0 };
	struct custody_error e;
	int rc;

	if (s->a != NULL) {
		f.tenant = q->tenant;
		f.principal = q->principal;
		f.event = q->event;
		f.outcome = q->outcome;
		parse_time_opt(q->since, &f.since_us);
		parse_time_opt(q->until, &f.until_us);
		f.after_seq = q->after_seq;
		f.limit = q->limit;
		f.descending = q->desc;
		recs = json_array();
		if (recs == NULL)
			return cli_fail(EXIT_ERROR, "out of memory");
		rc = audit_query(s->a, &f, collect, recs);
		if (rc < 0) {
			json_decref(recs);
			return cli_fail(EXIT_ERROR, "cannot read the audit database: %s",
					strerror(-rc));
		}
		*out = recs;
		return 0;
	}
	req = json_pack("{s:s, s:I, s:I, s:s}", "op", "audit.query", "after_seq",
			(json_int_t)q->after_seq, "limit", (json_int_t)q->limit, "order",
			q->desc ? "desc" : "asc");
	if (req != NULL && q->follow)
		json_object_set_new(req, "follow", json_true());
	if (req == NULL ||
	    (q->tenant && json_object_set_new(req, "tenant", json_string(q->tenant))) ||
	    (q->principal && json_object_set_new(req, "principal", json_string(q->principal))) ||
	    (q->event && json_object_set_new(req, "event", json_string(q->event))) ||
	    (q->outcome && json_object_set_new(req, "outcome", json_string(q->outcome))) ||
	    (q->since && json_object_set_new(req, "since", json_string(q->since))) ||
	    (q->until && json_object_set_new(req, "until", json_string(q->until)))) {
		json_decref(req);
		return cli_fail(EXIT_USAGE, "a filter is not valid UTF-8");
	}
	memset(&e, 0, sizeof(e));
	rc = custody_call(s->c, req, 60000, &reply, &e);
	json_decref(req);
	/* a follower whose broker went away reconnects (audit_tail_main) */
	if (rc < 0 && rc != -EREMOTEIO && q->follow)
		return SOURCE_LOST;
	if (rc < 0)
		return cli_report(rc, &e, s->sock);
	recs = json_object_get(reply, "records");
	if (!json_is_array(recs)) {
		json_decref(reply);
		return cli_fail(EXIT_ERROR, "the broker's audit.query reply has no records; check "
				"that custody and custodyd are the same version");
	}
	*out = json_incref(recs);
	json_decref(reply);
	return 0;
}

static const char *field(json_t *r, const char *k)
{
	json_t *v = json_object_get(r, k);

	return json_is_string(v) ? json_string_value(v) : NULL;
}

static const char *dash(const char *s)
{
	return s != NULL ? s : "-";
}

static void csv_cell(const char *s, bool last)
{
	if (s != NULL && strpbrk(s, ",\"\r\n") != NULL) {
		putchar('"');
		for (; *s; s++) {
			if (*s == '"')
				putchar('"');
			putchar(*s);
		}
		putchar('"');
	} else if (s != NULL) {
		fputs(s, stdout);
	}
	putchar(last ? '\n' : ',');
}

static void print_header(enum fmt f)
{
	if (f == FMT_TABLE)
		printf("%-6s %-27s %-18s %-8s %-36s %-16s %s\n", "SEQ", "TIME", "EVENT", "OUTCOME",
		       "TENANT", "WHO", "DETAIL");
	else if (f == FMT_CSV)
		printf("seq,time,event,outcome,tenant,principal,actor,grant,scope,error,purpose\n");
}

static void print_record(json_t *r, enum fmt f)
{
	char seq[32];
	const char *detail, *who;

	snprintf(seq, sizeof(seq), "%lld", (long long)json_integer_value(json_object_get(r, "seq")));
	if (f == FMT_JSON) {
		cli_print_json(stdout, r, false);
		return;
	}
	if (f == FMT_CSV) {
		csv_cell(seq, false);
		csv_cell(field(r, "time"), false);
		csv_cell(field(r, "event"), false);
		csv_cell(field(r, "outcome"), false);
		csv_cell(field(r, "tenant"), false);
		csv_cell(field(r, "principal"), false);
		csv_cell(field(r, "actor"), false);
		csv_cell(field(r, "grant"), false);
		csv_cell(field(r, "scope"), false);
		csv_cell(field(r, "error"), false);
		csv_cell(field(r, "purpose"), true);
		return;
	}
	/* Admin ops have an actor (a user) where tool requests have a principal. */
	who = field(r, "principal") ? field(r, "principal") : field(r, "actor");
	detail = field(r, "error");
	if (detail == NULL)
		detail = field(r, "grant");
	printf("%-6s %-27s %-18s %-8s %-36s %-16s %s\n", seq, dash(field(r, "time")),
	       dash(field(r, "event")), dash(field(r, "outcome")), dash(field(r, "tenant")),
	       dash(who), detail ? detail : "");
}

/* Print the next page of records after q->after_seq, oldest first, and
 * move q->after_seq past them; *n: how many (fewer than PAGE: the end for
 * now). Returns 0 or an exit status (error printed). */
static int print_page(struct source *s, struct aq *q, enum fmt f, size_t *n)
{
	json_t *recs = NULL, *r;
	size_t i;
	int rc;

	q->limit = PAGE;
	rc = source_query(s, q, &recs);
	if (rc != 0)
		return rc;
	json_array_foreach(recs, i, r) {
		print_record(r, f);
		q->after_seq = (uint64_t)json_integer_value(json_object_get(r, "seq"));
	}
	*n = json_array_size(recs);
	json_decref(recs);
	return 0;
}

static int parse_format(const char *cmd, const char *s, enum fmt *f)
{
	if (strcmp(s, "table") == 0)
		*f = FMT_TABLE;
	else if (strcmp(s, "json") == 0)
		*f = FMT_JSON;
	else if (strcmp(s, "csv") == 0)
		*f = FMT_CSV;
	else
		return cli_usage_error(cmd, "--format: '%s' is not one of table, json, csv", s);
	return 0;
}

static int audit_list_main(struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct option opts[] = {
		CLI_COMMON_OPTIONS,
		{ "tenant", required_argument, NULL, 't' },
		{ "principal", required_argument, NULL, 'p' },
		{ "event", required_argument, NULL, 'e' },
		{ "outcome", required_argument, NULL, 'o' },
		{ "since", required_argument, NULL, 's' },
		{ "until", required_argument, NULL, 'u' },
		{ "limit", required_argument, NULL, 'l' },
		{ "format", required_argument, NULL, 'f' },
		{ NULL, 0, NULL, 0 },
	};
	struct aq q = { 0 };
	struct source s;
	enum fmt f = FMT_TABLE;
	json_t *recs = NULL;
	char *tid = NULL;
	unsigned long limit = 0;
	int64_t us;
	size_t n;
	char *end;
	int c, rc, status = EXIT_OK;

	cli_getopt_reset();
	if (cli_exact_options("audit list", argc, argv, opts) != 0)
		return EXIT_USAGE;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 't': q.tenant = optarg; continue;
		case 'p': q.principal = optarg; continue;
		case 'e': q.event = optarg; continue;
		case 'o': q.outcome = optarg; continue;
		case 's':
		case 'u':
			if (util_time_parse(optarg, &us) < 0)
				return cli_usage_error("audit list", "--%s: '%s' is not an RFC 3339 "
						       "time", c == 's' ? "since" : "until", optarg);
			*(c == 's' ? &q.since : &q.until) = optarg;
			continue;
		case 'l':
			errno = 0;
			limit = strtoul(optarg, &end, 10);
			if (errno || *end || end == optarg || limit == 0 || limit > 1000000000ul ||
			    optarg[0] == '-')
				return cli_usage_error("audit list", "--limit: '%s' is not a positive "
						       "number", optarg);
			continue;
		case 'f':
			if (parse_format("audit list", optarg, &f) != 0)
				return EXIT_USAGE;
			continue;
		default:
			break;
		}
		if (cli_common_stop(ctx, c, list_usage, &status))
			return status;
	}
	if (optind != argc)
		return cli_usage_error("audit list", "unexpected argument '%s'", argv[optind]);
	rc = source_open(ctx, &s);
	if (rc != 0)
		return rc;
	rc = offline_filter(ctx, &s, &q, &tid);
	if (rc != 0)
		goto out;
	/* the header only once the filter was accepted: an error is not an
	 * empty listing */
	if (limit > 0) {
		/* The newest N, printed oldest first. */
		q.desc = true;
		q.limit = (unsigned)(limit > 10000 ? 10000 : limit);
		rc = source_query(&s, &q, &recs);
		if (rc == 0) {
			print_header(f);
			for (n = json_array_size(recs); n > 0; n--)
				print_record(json_array_get(recs, n - 1), f);
		}
		json_decref(recs);
		goto out;
	}
	q.limit = PAGE;
	rc = source_query(&s, &q, &recs);
	if (rc != 0)
		goto out;
	print_header(f);
	for (size_t i = 0; i < json_array_size(recs); i++) {
		print_record(json_array_get(recs, i), f);
		q.after_seq = (uint64_t)json_integer_value(
			json_object_get(json_array_get(recs, i), "seq"));
	}
	n = json_array_size(recs);
	json_decref(recs);
	while (n == PAGE) {
		rc = print_page(&s, &q, f, &n);
		if (rc != 0)
			break;
	}
out:
	free(tid);
	source_close(&s);
	return rc;
}

static int audit_export_main(struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct option opts[] = {
		CLI_COMMON_OPTIONS,
		{ "tenant", required_argument, NULL, 't' },
		{ "since", required_argument, NULL, 's' },
		{ "until", required_argument, NULL, 'u' },
		{ "from-checkpoint", required_argument, NULL, 'c' },
		{ "output", required_argument, NULL, 'o' },
		{ NULL, 0, NULL, 0 },
	};
	const char *tenant = NULL, *since = NULL, *until = NULL, *cp_file = NULL, *output = NULL;
	json_t *req = NULL, *reply = NULL;
	struct custody_error e;
	struct cerr err = { "" };
	struct source s = { 0 };
	int64_t since_us = 0, until_us = 0;
	char *note = NULL, *text = NULL, *tid = NULL, tmp[PATH_MAX];
	size_t n = 0;
	FILE *fp = NULL;
	int fd = -1;
	int c, rc, status = EXIT_OK;

	cli_getopt_reset();
	if (cli_exact_options("audit export", argc, argv, opts) != 0)
		return EXIT_USAGE;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 't': tenant = optarg; continue;
		case 's':
			since = optarg;
			if (util_time_parse(optarg, &since_us) < 0)
				return cli_usage_error("audit export", "--since: not an RFC 3339 time");
			continue;
		case 'u':
			until = optarg;
			if (util_time_parse(optarg, &until_us) < 0)
				return cli_usage_error("audit export", "--until: not an RFC 3339 time");
			continue;
		case 'c': cp_file = optarg; continue;
		case 'o': output = optarg; continue;
		default: break;
		}
		if (cli_common_stop(ctx, c, export_usage, &status))
			return status;
	}
	if (optind != argc)
		return cli_usage_error("audit export", "unexpected argument '%s'", argv[optind]);
	if (tenant == NULL || output == NULL)
		return cli_usage_error("audit export", "--tenant and --output are required");
	if (cp_file != NULL) {
		rc = checkpoint_load("--from-checkpoint", cp_file, &note);
		if (rc != 0)
			return rc;
	}
	rc = source_open(ctx, &s);
	if (rc != 0)
		goto out;
	if (s.a != NULL) {
		rc = offline_tenant(ctx, &s, tenant, &tid);
		if (rc != 0)
			goto out;
		tenant = tid;
		rc = util_tmp_create(output, 0644, tmp, &fd);
		if (rc == 0 && (fp = fdopen(fd, "w")) == NULL) {
			rc = -errno;
			close(fd);
			unlink(tmp);
		}
		if (rc < 0) {
			rc = cli_fail(EXIT_ERROR, "cannot write %s: %s; check the --output path",
				      output, strerror(-rc));
			goto out;
		}
		rc = audit_export(s.a, tenant, since_us, until_us, note, fp, &err);
		if (fflush(fp) != 0 && rc == 0)
			rc = -EIO;
		if (rc == 0) {
			/* fsync, close and rename; fp's descriptor goes with it */
			rc = util_tmp_commit(tmp, output, dup(fileno(fp)));
			fclose(fp);
		} else {
			fclose(fp);
			unlink(tmp);
		}
		fp = NULL;
		if (rc < 0) {
			rc = cli_fail(EXIT_ERROR, "cannot export tenant %s: %s", tenant,
				      err.msg[0] ? err.msg : strerror(-rc));
			goto out;
		}
	} else {
		req = json_pack("{s:s, s:s}", "op", "audit.export", "tenant", tenant);
		if (req == NULL || (since && json_object_set_new(req, "since", json_string(since))) ||
		    (until && json_object_set_new(req, "until", json_string(until))) ||
		    (note && json_object_set_new(req, "from_checkpoint", json_string(note)))) {
			rc = cli_fail(EXIT_USAGE, "an argument is not valid UTF-8");
			goto out;
		}
		memset(&e, 0, sizeof(e));
		rc = custody_call(s.c, req, 300000, &reply, &e);
		if (rc < 0) {
			rc = cli_report(rc, &e, s.sock);
			goto out;
		}
		text = json_dumps(json_object_get(reply, "export"), JSON_COMPACT | JSON_PRESERVE_ORDER);
		if (text == NULL) {
			rc = cli_fail(EXIT_ERROR, "the broker's export reply holds no export");
			goto out;
		}
		n = strlen(text);
		text[n] = '\n';
		rc = util_write_file(output, text, n + 1, 0644);
		text[n] = '\0';
		if (rc < 0) {
			rc = cli_fail(EXIT_ERROR, "cannot write %s: %s; check the --output path",
				      output, strerror(-rc));
			goto out;
		}
	}
	printf("wrote the audit export of tenant %s to %s; verify it with 'custody audit verify "
	       "--export %s --key VKEY'\n", tenant, output, output);
	rc = EXIT_OK;
out:
	free(text);
	free(note);
	free(tid);
	json_decref(req);
	json_decref(reply);
	source_close(&s);
	return rc;
}

/* --key: the vkey itself, or a file holding it. */
static char *load_vkey(const char *arg)
{
	char *text = NULL, *p, *end;
	size_t len;

	if (util_read_file(arg, 4096, &text, &len) < 0)
		return strdup(arg);
	p = text;
	while (isspace((unsigned char)*p))
		p++;
	end = p + strlen(p);
	while (end > p && isspace((unsigned char)end[-1]))
		*--end = '\0';
	memmove(text, p, strlen(p) + 1);
	return text;
}

/* What verification showed, in one line on stdout. */
static void verify_print(const char *what, const struct audit_verify_stats *st, bool export)
{
	char trusted[96] = "";

	if (st->trusted)
		snprintf(trusted, sizeof(trusted), "; it matches the checkpoint you trust (size %llu)",
			 (unsigned long long)st->trusted_size);
	if (export) {
		char since[UTIL_TIME_LEN] = "the tenant's first record",
		     until[UTIL_TIME_LEN] = "the checkpoint";

		if (st->since_us)
			util_time_format(st->since_us, false, since);
		if (st->until_us)
			util_time_format(st->until_us, false, until);
		char chain[64] = "none";

		if (st->records > 0)
			snprintf(chain, sizeof(chain), "tenant_seq %llu..%llu",
				 (unsigned long long)st->first_tenant_seq,
				 (unsigned long long)st->last_tenant_seq);
		printf("ok: %s verified: %llu records (%s, from %s to %s), all in "
		       "the signed checkpoint at size %llu (key id %s), %llu signed checkpoints%s\n",
		       what, (unsigned long long)st->records, chain, since, until,
		       (unsigned long long)st->cp_size, st->cp_key_id,
		       (unsigned long long)st->checkpoints, trusted);
		return;
	}
	if (st->uncovered == 0) {
		printf("ok: %s verified: %llu records, %llu signed checkpoints, %llu tenant chains; "
		       "the newest checkpoint (size %llu, key id %s) leaves 0 records uncovered%s\n",
		       what, (unsigned long long)st->records, (unsigned long long)st->checkpoints,
		       (unsigned long long)st->tenants, (unsigned long long)st->cp_size,
		       st->have_cp ? st->cp_key_id : "-", trusted);
		return;
	}
	printf("partly verified: %s: records 1..%llu of %llu are covered by a signed checkpoint "
	       "(newest at size %llu, key id %s; %llu signed checkpoints, %llu tenant chains)%s; "
	       "%llu records from seq %llu on are NOT covered by any signed checkpoint yet and "
	       "could have been rewritten: verify again after the broker's next checkpoint\n",
	       what, (unsigned long long)st->covered, (unsigned long long)st->records,
	       (unsigned long long)st->cp_size, st->have_cp ? st->cp_key_id : "-",
	       (unsigned long long)st->checkpoints, (unsigned long long)st->tenants, trusted,
	       (unsigned long long)st->uncovered, (unsigned long long)st->uncovered_from);
}

/* verify --witness: the quorum of cosignatures on the checkpoint the
 * proofs end at. Prints what it found; EXIT_OK, EXIT_VERIFY or an error. */
static int verify_witnessed(const char *export, const char *db, const char *what,
			    const char **wargs, size_t nw, unsigned quorum)
{
	struct audit_vkey keys[AUDIT_WITNESS_MAX];
	struct audit_witness_check c;
	struct cerr err = { "" };
	int rc;

	for (size_t i = 0; i < nw; i++) {
		char *k = load_vkey(wargs[i]);

		if (k == NULL)
			return cli_fail(EXIT_ERROR, "out of memory");
		rc = audit_vkey_parse(k, AUDIT_SIG_TYPE_COSIG_V1, &keys[i], &err);
		free(k);
		if (rc < 0)
			return cli_usage_error("audit verify", "--witness %s: %s", wargs[i], err.msg);
	}
	rc = export ? audit_verify_export_witnessed(export, keys, nw, quorum,
						    util_now_us() / 1000000, &c, &err)
		    : audit_verify_db_witnessed(db, keys, nw, quorum, util_now_us() / 1000000, &c,
						&err);
	if (rc == -EBADMSG)
		return cli_fail(EXIT_VERIFY, "audit verification FAILED for %s: %s", what, err.msg);
	if (rc < 0)
		return cli_fail(EXIT_ERROR, "cannot check the witnesses of %s: %s", what,
				err.msg[0] ? err.msg : strerror(-rc));
	printf("witnessed: the checkpoint at size %llu carries %u of %zu witness cosignatures "
	       "(quorum %u):", (unsigned long long)c.size, c.valid, nw, quorum);
	for (size_t i = 0; i < nw; i++)
		if (c.w[i].rc == 0)
			printf(" %s", keys[i].name);
	printf("\n");
	return EXIT_OK;
}

static int audit_verify_main(struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct option opts[] = {
		CLI_COMMON_OPTIONS,
		{ "db", required_argument, NULL, 'd' },
		{ "export", required_argument, NULL, 'x' },
		{ "key", required_argument, NULL, 'k' },
		{ "checkpoint", required_argument, NULL, 'c' },
		{ "save-checkpoint", required_argument, NULL, 'S' },
		{ "witness", required_argument, NULL, 'W' },
		{ "quorum", required_argument, NULL, 'Q' },
		{ NULL, 0, NULL, 0 },
	};
	const char *db = NULL, *export = NULL, *key_arg = NULL, *what, *cp_file = NULL;
	const char *save = NULL;
	struct audit_verify_stats st;
	struct audit_verify_opts vo = { 0 };
	const char *wargs[AUDIT_WITNESS_MAX];
	size_t nw = 0;
	long quorum = 0;
	char *qend = NULL;
	struct cerr err = { "" };
	json_t *keys = NULL;
	char *vkey = NULL, *trusted = NULL;
	int c, rc, status = EXIT_OK;

	cli_getopt_reset();
	if (cli_exact_options("audit verify", argc, argv, opts) != 0)
		return EXIT_USAGE;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'd': db = optarg; continue;
		case 'x': export = optarg; continue;
		case 'k': key_arg = optarg; continue;
		case 'c': cp_file = optarg; continue;
		case 'S': save = optarg; continue;
		case 'W':
			if (nw == AUDIT_WITNESS_MAX)
				return cli_usage_error("audit verify", "at most %d --witness keys",
						       AUDIT_WITNESS_MAX);
			wargs[nw++] = optarg;
			continue;
		case 'Q':
			quorum = strtol(optarg, &qend, 10);
			if (*optarg == '\0' || *qend != '\0' || quorum < 1)
				return cli_usage_error("audit verify", "--quorum: a number from 1");
			continue;
		default: break;
		}
		if (cli_common_stop(ctx, c, verify_usage, &status))
			return status;
	}
	if (quorum > 0 && (size_t)quorum > nw)
		return cli_usage_error("audit verify", "--quorum %ld needs at least %ld --witness keys",
				       quorum, quorum);
	if (optind != argc)
		return cli_usage_error("audit verify", "unexpected argument '%s'", argv[optind]);
	if (db != NULL && export != NULL)
		return cli_usage_error("audit verify", "give --db FILE or --export FILE, not both");
	if (cp_file != NULL) {
		rc = checkpoint_load("--checkpoint", cp_file, &trusted);
		if (rc != 0)
			return rc;
	}
	if (key_arg != NULL) {
		vkey = load_vkey(key_arg);
	} else {
		/* The key comes from the broker or the vault the config names;
		 * without a config say so once, with what to pass instead. */
		const char *env_sock = getenv("CUSTODY_SOCKET");
		struct cerr cerr = { "" };

		if (ctx->cfg == NULL && ctx->socket_arg == NULL && (env_sock == NULL || !*env_sock) &&
		    broker_config_load(broker_config_path(ctx->config_arg), &ctx->cfg, &cerr) < 0)
			return cli_fail(EXIT_ERROR, "no verifier key: pass --key VKEY (the "
					"audit_verifier_key from 'custody keys'); without it the key "
					"comes from the config, and %s", cerr.msg);
		rc = cli_keys_get(ctx, &keys);
		if (rc != 0) {
			free(trusted);
			return rc;
		}
		vkey = strdup(json_string_value(json_object_get(keys, "audit_verifier_key")));
		json_decref(keys);
	}
	if (vkey == NULL) {
		free(trusted);
		return cli_fail(EXIT_ERROR, "out of memory");
	}
	if (export == NULL && db == NULL) {
		if ((rc = cli_config(ctx)) != 0)
			goto out;
		db = ctx->cfg->audit_db;
	}
	what = export ? export : db;
	vo.vkey = vkey;
	vo.checkpoint = trusted;
	rc = export ? audit_verify_export_with(export, &vo, &st, &err)
		    : audit_verify_db_with(db, &vo, &st, &err);
	switch (rc) {
	case 0:
		break;
	case -EBADMSG:
		rc = cli_fail(EXIT_VERIFY, "audit verification FAILED for %s: %s; keep the file "
			      "as evidence and compare it with a copy you trust", what,
			      err.msg[0] ? err.msg : "a record does not match");
		goto out;
	case -EKEYREJECTED:
		rc = cli_fail(EXIT_VERIFY, "audit verification not possible for %s: %s; ask the "
			      "broker's operator for this log's verifier key ('custody keys')", what,
			      err.msg);
		goto out;
	case -ENODATA:
		rc = cli_fail(EXIT_VERIFY, "audit verification INCOMPLETE for %s: %s", what, err.msg);
		goto out;
	case -EINVAL:
		rc = cli_fail(EXIT_ERROR, "cannot verify %s: %s", what, err.msg);
		goto out;
	default:
		rc = cli_fail(EXIT_ERROR, "cannot verify %s: %s; check the path and permissions",
			      what, err.msg[0] ? err.msg : strerror(-rc));
		goto out;
	}
	if (nw > 0) {
		rc = verify_witnessed(export, db, what, wargs, nw, quorum ? (unsigned)quorum : nw);
		if (rc != EXIT_OK)
			goto out;
	}
	verify_print(what, &st, export != NULL);
	rc = EXIT_OK;
	if (save != NULL) {
		if (!st.have_cp || st.cp_note[0] == '\0') {
			rc = cli_fail(EXIT_ERROR, "--save-checkpoint: %s has no signed checkpoint to "
				      "save", what);
			goto out;
		}
		rc = util_write_file(save, st.cp_note, strlen(st.cp_note), 0644);
		if (rc < 0) {
			rc = cli_fail(EXIT_ERROR, "--save-checkpoint: cannot write %s: %s", save,
				      strerror(-rc));
			goto out;
		}
		printf("saved the checkpoint at size %llu to %s: pass it to 'custody audit export "
		       "--from-checkpoint' or 'audit verify --checkpoint' next time\n",
		       (unsigned long long)st.cp_size, save);
		rc = EXIT_OK;
	}
out:
	free(vkey);
	free(trusted);
	return rc;
}

#define REPORT_WITNESS_MAX AUDIT_WITNESS_MAX

/* --witness for the report: the checkpoint the page shows (an export's,
 * or for a store the newest witnessed one) must carry quorum valid
 * cosignatures. 0, -EBADMSG (err says what is missing), other -errno. */
static int report_witnessed(const char *db, const struct audit_verify_stats *st,
			    const struct audit_vkey *keys, size_t n, unsigned quorum,
			    struct audit_witness_check *wc, struct cerr *err)
{
	int64_t now_s = util_now_us() / 1000000;
	char why[CERR_MAX / 2];
	struct cerr e2 = { "" };
	int rc;

	if (db != NULL)
		return audit_verify_db_witnessed(db, keys, n, quorum, now_s, wc, err);
	if (!st->have_cp || st->cp_note[0] == '\0')
		return cerr_set(err, -EBADMSG, "the export's checkpoint cannot be checked for "
				"witnesses (none, or its note is too long)");
	rc = audit_witness_check_note(st->cp_note, keys, n, now_s, wc, &e2);
	if (rc < 0)
		return cerr_set(err, rc, "export checkpoint: %s", e2.msg);
	if (wc->valid < quorum) {
		audit_witness_check_describe(wc, keys, n, why, sizeof(why));
		return cerr_set(err, -EBADMSG, "the checkpoint at size %llu carries %u of the %u "
				"required witness cosignatures (%s)", (unsigned long long)wc->size,
				wc->valid, quorum, why[0] ? why : "none given");
	}
	return 0;
}

static int audit_report_main(struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct option opts[] = {
		CLI_COMMON_OPTIONS,
		{ "db", required_argument, NULL, 'd' },
		{ "export", required_argument, NULL, 'x' },
		{ "key", required_argument, NULL, 'k' },
		{ "checkpoint", required_argument, NULL, 'c' },
		{ "witness", required_argument, NULL, 'w' },
		{ "quorum", required_argument, NULL, 'q' },
		{ "output", required_argument, NULL, 'o' },
		{ NULL, 0, NULL, 0 },
	};
	const char *db = NULL, *export = NULL, *key_arg = NULL, *output = NULL, *what;
	const char *cp_file = NULL;
	struct audit_vkey wkeys[REPORT_WITNESS_MAX];
	struct audit_witness_check wc = { 0 };
	unsigned long quorum = 0;
	char *witness[REPORT_WITNESS_MAX] = { NULL }, *vkey = NULL, *page = NULL, *trusted = NULL;
	char *end;
	struct report_verdict verdict = { 0 };
	struct audit_verify_stats *st = NULL;
	struct audit_verify_opts vo = { 0 };
	struct cerr err = { "" };
	struct report *rep = NULL;
	size_t n_witness = 0, page_len = 0;
	json_t *keys = NULL;
	FILE *mem = NULL;
	int c, rc, vrc, status = EXIT_OK;

	cli_getopt_reset();
	if (cli_exact_options("audit report", argc, argv, opts) != 0)
		return EXIT_USAGE;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'd': db = optarg; continue;
		case 'x': export = optarg; continue;
		case 'k': key_arg = optarg; continue;
		case 'c': cp_file = optarg; continue;
		case 'o': output = optarg; continue;
		case 'q':
			errno = 0;
			quorum = strtoul(optarg, &end, 10);
			if (errno || *end || end == optarg || optarg[0] == '-' || quorum == 0 ||
			    quorum > REPORT_WITNESS_MAX) {
				rc = cli_usage_error("audit report", "--quorum: '%s' is not a number "
						     "from 1 to %d", optarg, REPORT_WITNESS_MAX);
				goto out;
			}
			continue;
		case 'w':
			if (n_witness == REPORT_WITNESS_MAX) {
				rc = cli_usage_error("audit report", "--witness: at most %d keys",
						     REPORT_WITNESS_MAX);
				goto out;
			}
			witness[n_witness] = load_vkey(optarg);
			if (witness[n_witness++] == NULL) {
				rc = cli_fail(EXIT_ERROR, "out of memory");
				goto out;
			}
			continue;
		default: break;
		}
		if (cli_common_stop(ctx, c, report_usage, &status)) {
			rc = status;
			goto out;
		}
	}
	if (optind != argc) {
		rc = cli_usage_error("audit report", "unexpected argument '%s'", argv[optind]);
		goto out;
	}
	if ((db == NULL) == (export == NULL)) {
		rc = cli_usage_error("audit report", "give --export FILE or --db FILE (one of them)");
		goto out;
	}
	if (output == NULL) {
		rc = cli_usage_error("audit report", "--output FILE is required");
		goto out;
	}
	{
		/* never write the page over the evidence it reports on */
		struct stat in_sb, out_sb;
		const char *in = export ? export : db;

		if (stat(in, &in_sb) == 0 && stat(output, &out_sb) == 0 &&
		    in_sb.st_dev == out_sb.st_dev && in_sb.st_ino == out_sb.st_ino) {
			rc = cli_usage_error("audit report", "--output %s is the file being verified; "
					     "write the page somewhere else", output);
			goto out;
		}
	}
	for (size_t i = 0; i < n_witness; i++)
		if (audit_vkey_parse(witness[i], AUDIT_SIG_TYPE_COSIG_V1, &wkeys[i], &err) < 0) {
			rc = cli_usage_error("audit report", "--witness: %s", err.msg);
			goto out;
		}
	if (quorum > n_witness) {
		rc = cli_usage_error("audit report", "--quorum %lu: only %zu --witness keys given",
				     quorum, n_witness);
		goto out;
	}
	if (quorum == 0)
		quorum = n_witness;
	if (cp_file != NULL) {
		rc = checkpoint_load("--checkpoint", cp_file, &trusted);
		if (rc != 0)
			goto out;
	}
	if (key_arg != NULL) {
		vkey = load_vkey(key_arg);
	} else {
		rc = cli_keys_get(ctx, &keys);
		if (rc != 0) {
			fprintf(stderr, "custody: without a config, pass the verifier key: --key VKEY\n");
			goto out;
		}
		vkey = strdup(json_string_value(json_object_get(keys, "audit_verifier_key")));
	}
	st = calloc(1, sizeof(*st));
	if (vkey == NULL || st == NULL || report_new(db != NULL, &rep) < 0) {
		rc = cli_fail(EXIT_ERROR, "out of memory");
		goto out;
	}
	/* the page is built only from what the verifier hands over */
	vo.vkey = vkey;
	vo.checkpoint = trusted;
	vo.on_record = report_record;
	vo.ctx = rep;
	what = export ? export : db;
	vrc = export ? audit_verify_export_with(export, &vo, st, &err)
		     : audit_verify_db_with(db, &vo, st, &err);
	if (vrc == 0 && n_witness > 0) {
		vrc = report_witnessed(db, st, wkeys, n_witness, (unsigned)quorum, &wc, &err);
		if (vrc == -EBADMSG)
			verdict.outcome = REPORT_UNWITNESSED;
	}
	switch (vrc) {
	case 0:
		verdict.outcome = st->uncovered ? REPORT_PARTLY : REPORT_VERIFIED;
		break;
	case -EBADMSG:
		if (verdict.outcome != REPORT_UNWITNESSED)
			verdict.outcome = REPORT_TAMPERED;
		break;
	case -EKEYREJECTED:
		verdict.outcome = REPORT_WRONG_KEY;
		break;
	case -ENODATA:
		verdict.outcome = REPORT_INCOMPLETE;
		break;
	default:
		/* unreadable, a malformed key or checkpoint: nothing to show, no page */
		rc = cli_fail(EXIT_ERROR, "cannot verify %s: %s; check the path, permissions, --key "
			      "and --checkpoint", what, err.msg[0] ? err.msg : strerror(-vrc));
		goto out;
	}
	verdict.source = what;
	verdict.is_db = db != NULL;
	verdict.vkey = vkey;
	verdict.message = err.msg[0] ? err.msg : NULL;
	verdict.st = st;
	verdict.wkeys = wkeys;
	verdict.n_witness = n_witness;
	verdict.wcheck = &wc;
	verdict.quorum = (unsigned)quorum;
	mem = open_memstream(&page, &page_len);
	if (mem == NULL || report_write(rep, &verdict, mem) < 0 || fclose(mem) != 0) {
		mem = NULL;
		rc = cli_fail(EXIT_ERROR, "cannot write the report: out of memory");
		goto out;
	}
	mem = NULL;
	rc = util_write_file(output, page, page_len, 0644);
	if (rc < 0) {
		rc = cli_fail(EXIT_ERROR, "cannot write %s: %s; check the --output path", output,
			      strerror(-rc));
		goto out;
	}
	if (vrc < 0) {
		/* as audit verify: exit 6, whatever kept the verdict from green */
		rc = cli_fail(EXIT_VERIFY, "audit verification %s for %s: %s; the report %s says so "
			      "in red", vrc == -ENODATA ? "INCOMPLETE" : vrc == -EKEYREJECTED
			      ? "not possible (wrong key)" : "FAILED", what,
			      err.msg[0] ? err.msg : "a record does not match", output);
		goto out;
	}
	if (st->uncovered)
		printf("partly verified: %s: %llu records from seq %llu on are not under a signed "
		       "checkpoint yet; wrote the report to %s\n", what,
		       (unsigned long long)st->uncovered, (unsigned long long)st->uncovered_from,
		       output);
	else
		printf("ok: %s verified: %llu records; wrote the report to %s\n", what,
		       (unsigned long long)st->records, output);
	rc = EXIT_OK;
out:
	if (mem != NULL)
		fclose(mem);
	free(page);
	report_free(rep);
	json_decref(keys);
	free(st);
	free(vkey);
	free(trusted);
	for (size_t i = 0; i < n_witness; i++)
		free(witness[i]);
	return rc;
}

static volatile sig_atomic_t stop_following;

static void on_signal(int sig)
{
	(void)sig;
	stop_following = 1;
}

/* The broker went away under a follower (a restart, say): connect again
 * until it answers or the user stops; following goes on from the last
 * seq printed. 0, or an exit status. */
static int reconnect(struct source *s, uint64_t after)
{
	struct custody_error e;
	bool said = false;

	custody_close(s->c);
	s->c = NULL;
	while (!stop_following) {
		memset(&e, 0, sizeof(e));
		if (custody_connect(s->sock, &s->c, &e) == 0) {
			fprintf(stderr, "custody: reconnected to %s; following on after record %llu\n",
				s->sock, (unsigned long long)after);
			return 0;
		}
		if (!said) {
			fprintf(stderr, "custody: the broker at %s went away; reconnecting (Ctrl-C "
				"to stop)\n", s->sock);
			said = true;
		}
		poll(NULL, 0, RECONNECT_MS);
	}
	return EXIT_OK;
}

static int audit_tail_main(struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct option opts[] = {
		CLI_COMMON_OPTIONS,
		{ "follow", no_argument, NULL, 'f' },
		{ "format", required_argument, NULL, 'F' },
		{ NULL, 0, NULL, 0 },
	};
	struct aq q = { 0 };
	struct source s;
	enum fmt f = FMT_TABLE;
	json_t *recs = NULL, *r;
	bool follow = false;
	size_t n;
	int c, rc, status = EXIT_OK;

	cli_getopt_reset();
	if (cli_exact_options("audit tail", argc, argv, opts) != 0)
		return EXIT_USAGE;
	while ((c = getopt_long(argc, argv, "hf", opts, NULL)) != -1) {
		if (c == 'f') {
			follow = true;
			continue;
		}
		if (c == 'F') {
			if (parse_format("audit tail", optarg, &f) != 0)
				return EXIT_USAGE;
			continue;
		}
		if (cli_common_stop(ctx, c, tail_usage, &status))
			return status;
	}
	if (optind != argc)
		return cli_usage_error("audit tail", "unexpected argument '%s'", argv[optind]);
	rc = source_open(ctx, &s);
	if (rc != 0)
		return rc;
	print_header(f);
	q.desc = true;
	q.limit = TAIL_LINES;
	/* one record when following starts (this query), one when it stops
	 * (the connection closes), none per poll */
	q.follow = follow && s.c != NULL;
	rc = source_query(&s, &q, &recs);
	if (rc != 0)
		goto out;
	for (n = json_array_size(recs); n > 0; n--) {
		r = json_array_get(recs, n - 1);
		print_record(r, f);
		if ((uint64_t)json_integer_value(json_object_get(r, "seq")) > q.after_seq)
			q.after_seq = (uint64_t)json_integer_value(json_object_get(r, "seq"));
	}
	json_decref(recs);
	recs = NULL;
	fflush(stdout);
	if (!follow)
		goto out;
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	/* a closed stdout shows as a failed fflush, a broker gone as a failed
	 * call (then reconnect): neither may kill us with SIGPIPE */
	signal(SIGPIPE, SIG_IGN);
	q.desc = false;
	while (!stop_following) {
		rc = print_page(&s, &q, f, &n);
		if (rc == SOURCE_LOST) {
			rc = reconnect(&s, q.after_seq);
			if (rc != 0)
				break;
			continue;
		}
		if (rc != 0)
			break;
		if (fflush(stdout) != 0)
			break;
		if (n < PAGE)
			poll(NULL, 0, FOLLOW_MS);
	}
	if (stop_following)
		rc = EXIT_OK;
out:
	json_decref(recs);
	source_close(&s);
	return rc;
}

static const char ack_usage[] =
	"Usage: custody audit ack-conflict --reason TEXT\n"
	"\n"
	"Acknowledge the witness conflict 'custody status' shows: a witness has\n"
	"cosigned a checkpoint this audit store no longer extends (it was rolled\n"
	"back, replaced or forked). The acknowledgement is audited with the\n"
	"reason; custodyd then asks the witnesses again, and a store that is\n"
	"still not consistent with what they cosigned raises the alarm again.\n"
	"Officer role.\n"
	"\n"
	"Options:\n"
	"  --reason TEXT         what was found (recorded in the audit; required)\n"
	CLI_COMMON_HELP;

static int audit_ack_main(struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct option opts[] = {
		CLI_COMMON_OPTIONS, { "reason", required_argument, NULL, 'r' }, { NULL, 0, NULL, 0 },
	};
	const char *reason = NULL;
	json_t *req, *reply = NULL, *was;
	int c, rc, st = EXIT_OK;

	cli_getopt_reset();
	if (cli_exact_options("audit ack-conflict", argc, argv, opts) != 0)
		return EXIT_USAGE;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (c == 'r') {
			reason = optarg;
			continue;
		}
		if (cli_common_stop(ctx, c, ack_usage, &st))
			return st;
	}
	if (optind != argc)
		return cli_usage_error("audit ack-conflict", "unexpected argument '%s'", argv[optind]);
	if (reason == NULL || *reason == '\0')
		return cli_usage_error("audit ack-conflict",
				       "--reason TEXT is required (it goes into the audit)");
	req = json_pack("{s:s,s:s}", "op", "audit.ack_conflict", "reason", reason);
	if (req == NULL)
		return cli_usage_error("audit ack-conflict", "--reason is not valid UTF-8");
	rc = cli_admin_call(ctx, req, 30000, &reply);
	json_decref(req);
	if (rc != 0)
		return rc;
	was = json_object_get(reply, "acknowledged");
	printf("acknowledged the witness conflict of %s (%s)\n",
	       json_string_value(json_object_get(was, "witness")),
	       json_string_value(json_object_get(was, "detail")));
	json_decref(reply);
	return EXIT_OK;
}

int cmd_audit(struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct cli_cmd cmds[] = {
		{ "list", audit_list_main, "list records (filters, table/json/csv)" },
		{ "export", audit_export_main, "a tenant's records with proofs, for the customer" },
		{ "verify", audit_verify_main, "verify a database or an export offline" },
		{ "report", audit_report_main, "verify, then write the trail as an HTML page" },
		{ "tail", audit_tail_main, "the last records; --follow for new ones" },
		{ "ack-conflict", audit_ack_main, "officer: acknowledge a witness conflict" },
		{ NULL, NULL, NULL },
	};

	return cli_dispatch(ctx, "audit", cmds, argc, argv);
}
