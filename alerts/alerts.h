/* alerts.h — custody-alerts' private interfaces (DESIGN.md §12).
 *
 * custody-alerts is an MSSP tool: it asks custodyd (through libcustody) for
 * a token per customer tenant, reads the tenant's Defender alerts, hands
 * them to every configured output (file, syslog, Splunk HEC), sends the
 * notification e-mails its rules ask for, and only then moves the tenant's
 * cursor in its state database. It never sees a client secret.
 *
 * Errors: 0 or a negative errno; where a person must read why, a struct
 * cerr holds one line. No message ever holds a token or a secret.
 */
#ifndef CUSTODY_ALERTS_H
#define CUSTODY_ALERTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>
#include <jansson.h>
#include <sqlite3.h>

#include "util.h"

#define ALERTS_DEFAULT_CONFIG "/etc/custody/custody-alerts.json"

/* Exit statuses (DESIGN.md §12, the same numbers as custody's). */
enum {
	AX_OK = 0,
	AX_ERROR = 1,
	AX_USAGE = 2,
	AX_REFUSED = 3,   /* the broker refused a token */
	AX_FAILED = 4,    /* a tenant's API or an output failed */
	AX_BROKER = 5,    /* the broker cannot be reached */
};

/* ---- buf.c: a growable byte buffer ------------------------------------- */

struct buf {
	char *p;
	size_t len, cap;
	bool oom;   /* an append failed; the contents are incomplete */
};

void buf_add(struct buf *b, const void *data, size_t n);
void buf_str(struct buf *b, const char *s);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_reset(struct buf *b);
/* Wipe (the buffer may have held a secret) and free. */
void buf_free(struct buf *b);

/* ---- config.c ------------------------------------------------------------ */

enum output_type { OUTPUT_FILE, OUTPUT_SYSLOG, OUTPUT_HEC };
enum smtp_tls { SMTP_TLS_REQUIRED, SMTP_TLS_TRY, SMTP_TLS_NONE };

/* Severities in the order min_severity compares them. */
enum severity { SEV_UNKNOWN = -1, SEV_INFORMATIONAL, SEV_LOW, SEV_MEDIUM, SEV_HIGH };

struct output_config {
	enum output_type type;
	char *path;        /* file */
	char *url;         /* syslog (tls://host:port), splunk_hec (https://…) */
	char *ca_file;     /* syslog, splunk_hec; NULL: the system's CAs */
	char *token_file;  /* splunk_hec */
	bool json;         /* syslog: "format": "json" instead of "cef" */
	char label[256];   /* "outputs[1] (syslog tls://…)": names it in messages */
};

struct smtp_config {
	bool present;
	char *url, *from, *username, *password_file, *ca_file;
	enum smtp_tls tls;
};

struct rule_config {
	char *name;
	enum severity min_severity;
	char **tenants;
	size_t n_tenants;
	char **device_groups;
	size_t n_device_groups;
	bool include_org_name, include_portal_link, include_device_info;
	char **to;
	size_t n_to;
};

struct alerts_config {
	char *socket;               /* NULL: libcustody's default ($CUSTODY_SOCKET, …) */
	char *state_dir;
	char *api_base;             /* without a trailing slash */
	char *ca_file;
	char *scope;
	char **tenants;
	size_t n_tenants;
	int interval_s, initial_lookback_h, page_size, timeout_s;
	char *purpose;
	struct output_config *outputs;
	size_t n_outputs;
	struct smtp_config smtp;
	struct rule_config *rules;
	size_t n_rules;
};

/* Read and check the config file. Errors name the key's path
 * ("outputs[1].url: expected tls://host:port"). -EINVAL, -ENOENT, -ENOMEM. */
int alerts_config_load(const char *path, struct alerts_config **out, struct cerr *err)
	__attribute__((warn_unused_result));
int alerts_config_parse(const char *text, size_t len, const char *file, const char *base_dir,
			struct alerts_config **out, struct cerr *err)
	__attribute__((warn_unused_result));
void alerts_config_free(struct alerts_config *c);

enum severity severity_parse(const char *s);
const char *severity_name(enum severity s);

/* ---- page.c: one page of GET /api/alerts --------------------------------- */

/* Parse a page: an object whose "value" is an array of alert objects, each
 * with a non-empty string "id" (at most 256 bytes) and an RFC 3339
 * "lastUpdateTime". On 0, *alerts is the "value" array (a new reference).
 * -EBADMSG with err naming what is wrong (not JSON, no "value", value[3]
 * without "id", ...). */
int alerts_page_parse(const char *body, size_t len, json_t **alerts, struct cerr *err)
	__attribute__((warn_unused_result));

/* ---- cef.c ---------------------------------------------------------------- */

/* Append the alert as one CEF line (no line break) to out, with Microsoft's
 * ArcSight mapping for Defender alerts and CEF's escaping. The alert is
 * the delivered object (with the custody_* fields). */
void cef_encode(const json_t *alert, struct buf *out);
/* CEF severity 0-10 for a Defender severity. */
int cef_severity(const char *severity);

/* ---- state.c: the state database (SQLite, state_dir/state.db) --------- */

struct state;

struct tenant_state {
	char cursor[UTIL_TIME_LEN];   /* "" before the first pass */
	int64_t not_before;           /* unix s: the API said wait (429) until then */
	int64_t min_start, hour_start;/* API budget windows (unix s) */
	int min_calls, hour_calls;
};

int state_open(const char *state_dir, bool writer, struct state **out, struct cerr *err)
	__attribute__((warn_unused_result));
void state_close(struct state *s);
int state_begin(struct state *s);
int state_commit(struct state *s, struct cerr *err) __attribute__((warn_unused_result));
void state_rollback(struct state *s);
int state_tenant_get(struct state *s, const char *tenant_id, struct tenant_state *ts);
/* Record the end of a tenant's pass: error NULL on success (cursor moved,
 * delivered counted), else the one-line error. */
int state_tenant_put(struct state *s, const char *tenant_id, const char *name,
		     const struct tenant_state *ts, const char *error, uint64_t delivered);
/* 1 when (id, lastUpdateTime) was delivered already, 0 when not. output
 * NULL: to every output; else: taken by that output (its label) in a pass
 * where another output did not take it. */
int state_delivered(struct state *s, const char *output, const char *tenant_id, const char *id,
		    const char *lut);
int state_mark_delivered(struct state *s, const char *output, const char *tenant_id,
			 const char *id, const char *lut, int64_t lut_us);
/* Forget delivered and taken entries older than the cursor: the filter
 * never returns them again unless they change. */
int state_prune(struct state *s, const char *tenant_id, int64_t before_us);
/* Forget outputs of an older config (before the pass records its own). */
int state_outputs_clear(struct state *s);
int state_output_put(struct state *s, const char *label, uint64_t waiting, const char *error);

/* Notifications: one row per (rule, tenant, alert), never sent twice. */
/* 1 when the rule already has this alert (in any state), 0 when not. */
int state_notified(struct state *s, const char *rule, const char *tenant_id, const char *id);
/* Queue a message (state "queued"). */
int state_notify_queue(struct state *s, const char *rule, const char *tenant_id,
		       const char *id, const char *message);
struct notice {
	int64_t rowid;
	char *rule, *message;
};
/* Mark every queued or failed notice "sending" (durably, before any is
 * sent: a crash after this never sends one again) and return them. */
int state_notify_take(struct state *s, struct notice **out, size_t *n, struct cerr *err)
	__attribute__((warn_unused_result));
int state_notify_done(struct state *s, int64_t rowid, const char *error);
void notices_free(struct notice *v, size_t n);

/* status: everything as one JSON object (see status in main.c). */
int state_status(struct state *s, json_t **out);

/* ---- output.c: where alerts go -------------------------------------------- */

struct output {
	const struct output_config *cfg;
	const struct alerts_config *conf;
	bool broken;           /* failed this pass: no more alerts for it until the next */
	char error[CERR_MAX];
	uint64_t waiting;      /* alerts it did not take this pass */
	bool took;             /* it took the page in hand */
	int fd;                /* file */
	CURL *conn;            /* syslog: the TLS connection; hec: the handle */
	char hostname[256];
	char *auth;            /* hec: "Authorization: Splunk …" (sodium_malloc) */
	struct buf out;
};

int output_open(struct output *o, const struct alerts_config *c, const struct output_config *oc,
		struct cerr *err) __attribute__((warn_unused_result));
/* Hand n alerts (delivered objects) to the output. 0 when it took all. */
int output_put(struct output *o, json_t *const *alerts, size_t n, struct cerr *err)
	__attribute__((warn_unused_result));
/* Make what it took durable (file: fdatasync). */
int output_sync(struct output *o, struct cerr *err) __attribute__((warn_unused_result));
void output_close(struct output *o);

int output_file_open(struct output *o, struct cerr *err);
int output_file_put(struct output *o, json_t *const *alerts, size_t n, struct cerr *err);
int output_file_sync(struct output *o, struct cerr *err);
int output_syslog_put(struct output *o, json_t *const *alerts, size_t n, struct cerr *err);
/* One RFC 5424 message, RFC 5425 octet-counted, appended to out. */
void syslog_frame(const json_t *alert, bool json, const char *hostname, struct buf *out);
int output_hec_open(struct output *o, struct cerr *err);
int output_hec_put(struct output *o, json_t *const *alerts, size_t n, struct cerr *err);

/* ---- notify.c: notification rules and their e-mail ------------------------- */

/* True when the rule wants this alert (severity, tenant, device group). */
bool rule_matches(const struct rule_config *r, const json_t *alert);
/* The whole RFC 5322 message for one alert (CRLF line ends). NULL: OOM. */
char *notice_message(const struct alerts_config *c, const struct rule_config *r,
		     const json_t *alert, bool test);

/* ---- smtp.c ------------------------------------------------------------------ */

/* Send one message through c->smtp to the rule's recipients. */
int smtp_send(const struct alerts_config *c, const struct rule_config *r, const char *message,
	      struct cerr *err)
	__attribute__((warn_unused_result));

/* ---- poll.c: one pass over every tenant ---------------------------------------- */

struct pass_result {
	int status;             /* AX_OK, AX_REFUSED, AX_FAILED, AX_BROKER */
	size_t tenants, tenants_ok, delivered, notified;
};

/* stop_fd: a signalfd; when it turns readable the pass ends early (no
 * cursor moves for unfinished tenants). -1: none. */
int alerts_pass(const struct alerts_config *c, struct state *s, int stop_fd,
		struct pass_result *res, struct cerr *err);

/* Send whatever notices are queued or failed (also from earlier passes). */
size_t alerts_notify_flush(const struct alerts_config *c, struct state *s, size_t *failed);

#endif
