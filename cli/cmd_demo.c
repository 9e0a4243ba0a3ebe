/* cmd_demo.c — custody demo: the whole story on one machine, in a
 * throw-away directory, one narrated line per step with the command a
 * person would type. It runs the real custodyd, this very custody binary
 * for each command, and libcustody + libcurl for the tool's part, against
 * a local HTTPS identity provider (tests/fixtures/idp.py).
 *
 * It never prints a secret or a token: the client secret lives in a 0600
 * file the broker reads through the sealed grant, and the tool shows only
 * a fingerprint of its token. Everything it starts is stopped by pid, on
 * success and on failure. */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <curl/curl.h>
#include <sodium.h>

#ifndef CUSTODY_SOURCE_ROOT
#define CUSTODY_SOURCE_ROOT "."
#endif
#ifndef CUSTODY_BUILD_ROOT
#define CUSTODY_BUILD_ROOT "."
#endif

#define DEMO_TENANT_ID "72f988bf-86f1-41af-91ab-2d7cd011db47"
#define DEMO_CLIENT_ID "00000000-0000-4000-8000-00000000c0de"
#define DEMO_TENANT "contoso"
#define DEMO_SCOPE "https://api.securitycenter.microsoft.com/.default"
#define CHILD_TIMEOUT_MS 180000
#define OUTPUT_MAX (1u << 20)

static const char usage[] =
	"Usage: custody demo [--keep]\n"
	"\n"
	"Show the whole story on this machine, in a fresh temporary directory: a\n"
	"local HTTPS identity provider, a customer sealing a grant, the MSSP\n"
	"importing it, a tool getting a token and reading alerts with it, the MSSP's\n"
	"connector custody-alerts pulling them into a file and a notification e-mail\n"
	"arriving, an\n"
	"officer revoking it, the tool refused, the audit trail listed and\n"
	"verified (and a tampered copy caught), and the customer's report written as\n"
	"a web page (kept, and its path printed, even without --keep). Then it stops\n"
	"everything it started. Exit 0 only when every step did what it should.\n"
	"Needs python3 and openssl; finds tests/fixtures/idp.py through\n"
	"$CUSTODY_SOURCE_DIR and custodyd through $CUSTODYD (defaults: the build tree).\n"
	"\n"
	"Options:\n"
	"  --keep                keep the directory (config, logs, audit.db) for a look\n"
	CLI_COMMON_HELP;

struct demo {
	char dir[PATH_MAX];
	char self[PATH_MAX];      /* this custody binary */
	char custodyd[PATH_MAX];
	char idp_py[PATH_MAX];
	pid_t idp_pid, broker_pid;
	int idp_port;
	char ca[PATH_MAX];
	int step;
	int failed;
	bool report;              /* the customer's report was written */
};

/* Interrupted (^C, SIGTERM): stop the servers at once, so the step running
 * fails and the normal cleanup (stop by pid, remove the directory) runs. */
static volatile pid_t sig_idp_pid, sig_broker_pid;
static volatile sig_atomic_t interrupted;

static void on_interrupt(int sig)
{
	(void)sig;
	interrupted = 1;
	if (sig_broker_pid > 0)
		kill(sig_broker_pid, SIGTERM);
	if (sig_idp_pid > 0)
		kill(sig_idp_pid, SIGTERM);
}

/* ---- narration ------------------------------------------------------- */

static void say(struct demo *d, const char *what, const char *cmd)
{
	d->step++;
	if (cmd != NULL)
		printf("==> %s:  %s\n", what, cmd);
	else
		printf("==> %s\n", what);
	fflush(stdout);
}

static void indent(const char *text)
{
	const char *p = text, *nl;

	while (*p) {
		nl = strchr(p, '\n');
		if (nl == NULL)
			nl = p + strlen(p);
		printf("    %.*s\n", (int)(nl - p), p);
		p = *nl ? nl + 1 : nl;
	}
	fflush(stdout);
}

static int fail(struct demo *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(struct demo *d, const char *fmt, ...)
{
	va_list ap;

	d->failed = 1;
	fprintf(stderr, "custody: demo step %d failed: ", d->step);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "; run 'custody demo --keep' and look at the logs in the directory\n");
	return -1;
}

static char *path_in(struct demo *d, const char *name)
{
	static char buf[4][PATH_MAX];
	static int i;

	i = (i + 1) % 4;
	/* d->dir is a short mkdtemp name; a cut path would only fail to open */
	if (snprintf(buf[i], sizeof(buf[i]), "%s/%s", d->dir, name) >= (int)sizeof(buf[i]))
		buf[i][0] = '\0';
	return buf[i];
}

/* ---- processes --------------------------------------------------------- */

/* Run argv (argv[0] a path) with cwd = demo dir, stdout+stderr captured
 * into *out (malloc'd, NUL-ended). Returns the exit status, or -1. */
static int run_capture(struct demo *d, char *const argv[], char **out)
{
	char *buf = NULL;
	size_t len = 0;
	int pfd[2], status = -1, devnull;
	int64_t deadline = util_mono_ms() + CHILD_TIMEOUT_MS;
	pid_t pid;
	ssize_t r;

	buf = malloc(OUTPUT_MAX + 1);
	if (buf == NULL || pipe2(pfd, O_CLOEXEC) < 0) {
		free(buf);
		return -1;
	}
	pid = fork();
	if (pid < 0) {
		close(pfd[0]);
		close(pfd[1]);
		free(buf);
		return -1;
	}
	if (pid == 0) {
		devnull = open("/dev/null", O_RDONLY);
		if (devnull >= 0)
			dup2(devnull, STDIN_FILENO);
		dup2(pfd[1], STDOUT_FILENO);
		dup2(pfd[1], STDERR_FILENO);
		if (chdir(d->dir) < 0)
			_exit(127);
		signal(SIGPIPE, SIG_DFL);
		execv(argv[0], argv);
		_exit(127);
	}
	close(pfd[1]);
	for (;;) {
		struct pollfd p = { .fd = pfd[0], .events = POLLIN };
		int left = (int)(deadline - util_mono_ms());

		if (left <= 0 || poll(&p, 1, left) == 0) {
			kill(pid, SIGKILL);
			break;
		}
		r = read(pfd[0], buf + len, OUTPUT_MAX - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		len += (size_t)r;
		if (len == OUTPUT_MAX)
			break;
	}
	close(pfd[0]);
	buf[len] = '\0';
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	*out = buf;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Run `custody <args>` (this binary), show the command and its output,
 * and check its exit status. *out (optional) keeps the output. */
static int custody(struct demo *d, const char *what, int want, char **out, ...)
{
	char *argv[32], shown[2048], *text = NULL;
	size_t n = 0, off;
	va_list ap;
	int st;

	argv[n++] = d->self;
	off = (size_t)snprintf(shown, sizeof(shown), "custody");
	va_start(ap, out);
	while (n < 31) {
		char *a = va_arg(ap, char *);

		if (a == NULL)
			break;
		argv[n++] = a;
		off += (size_t)snprintf(shown + off, off < sizeof(shown) ? sizeof(shown) - off : 0,
					strpbrk(a, " '\"") ? " '%s'" : " %s", a);
	}
	va_end(ap);
	argv[n] = NULL;
	say(d, what, shown);
	if (interrupted)
		return fail(d, "interrupted");
	st = run_capture(d, argv, &text);
	if (text != NULL)
		indent(text);
	if (st != want) {
		free(text);
		return fail(d, "'%s' exited %d, expected %d", shown, st, want);
	}
	if (out != NULL)
		*out = text;
	else
		free(text);
	return 0;
}

static pid_t spawn(struct demo *d, char *const argv[], const char *log, int *stdout_pipe)
{
	int pfd[2] = { -1, -1 }, logfd;
	pid_t pid;

	if (stdout_pipe != NULL && pipe2(pfd, O_CLOEXEC) < 0)
		return -1;
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		logfd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
		if (logfd < 0 || chdir(d->dir) < 0)
			_exit(127);
		dup2(logfd, STDERR_FILENO);
		dup2(stdout_pipe ? pfd[1] : logfd, STDOUT_FILENO);
		setpgid(0, 0);   /* a terminal's ^C reaches us; we stop it by pid */
		signal(SIGPIPE, SIG_DFL);
		execvp(argv[0], argv);
		_exit(127);
	}
	if (stdout_pipe != NULL) {
		close(pfd[1]);
		*stdout_pipe = pfd[0];
	}
	return pid;
}

static void stop_pid(pid_t *pid, const char *what)
{
	int status, i;

	if (*pid <= 0)
		return;
	kill(*pid, SIGTERM);
	for (i = 0; i < 100; i++) {
		if (waitpid(*pid, &status, WNOHANG) == *pid)
			goto out;
		poll(NULL, 0, 50);
	}
	fprintf(stderr, "custody: %s (pid %d) did not stop on SIGTERM; killing it\n", what,
		(int)*pid);
	kill(*pid, SIGKILL);
	waitpid(*pid, &status, 0);
out:
	if (*pid == sig_broker_pid)
		sig_broker_pid = 0;
	if (*pid == sig_idp_pid)
		sig_idp_pid = 0;
	*pid = 0;
}

/* ---- the identity provider -------------------------------------------- */

static int start_idp(struct demo *d)
{
	char line[4096], apps_json[1024], dir[PATH_MAX], apps[PATH_MAX];
	char *argv[] = { "python3", d->idp_py, "--dir", dir, "--port", "0", "--apps", apps, NULL };
	uint8_t raw[24];
	char secret[64];
	json_t *j = NULL;
	size_t len = 0;
	ssize_t r;
	int fd = -1, rc = -1;
	int64_t deadline = util_mono_ms() + 60000;

	snprintf(dir, sizeof(dir), "%s", path_in(d, "idp"));
	snprintf(apps, sizeof(apps), "%s", path_in(d, "idp-apps.json"));
	/* The customer's app registration: a fresh random secret that only the
	 * IdP and the sealed grant ever hold. */
	randombytes_buf(raw, sizeof(raw));
	sodium_bin2base64(secret, sizeof(secret), raw, sizeof(raw),
			  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	sodium_memzero(raw, sizeof(raw));
	if (util_mkdir_p(path_in(d, "customer"), 0700) < 0 ||
	    util_write_file(path_in(d, "customer/client-secret"), secret, strlen(secret),
			    0600) < 0)
		goto out;
	snprintf(apps_json, sizeof(apps_json),
		 "[{\"tenant_id\": \"%s\", \"tenant_name\": \"%s\", \"client_id\": \"%s\", "
		 "\"secret\": \"%s\", \"roles\": [\"Alert.Read.All\"]}]\n",
		 DEMO_TENANT_ID, DEMO_TENANT, DEMO_CLIENT_ID, secret);
	rc = util_write_file(path_in(d, "idp-apps.json"), apps_json, strlen(apps_json), 0600);
	sodium_memzero(apps_json, sizeof(apps_json));
	sodium_memzero(secret, sizeof(secret));
	if (rc < 0) {
		rc = -1;
		goto out;
	}
	rc = -1;
	d->idp_pid = spawn(d, argv, path_in(d, "idp.log"), &fd);
	sig_idp_pid = d->idp_pid;
	if (d->idp_pid < 0) {
		d->idp_pid = 0;
		fail(d, "cannot start python3 %s", d->idp_py);
		goto out;
	}
	/* It prints one JSON line once it listens. */
	while (len < sizeof(line) - 1 && memchr(line, '\n', len) == NULL) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int left = (int)(deadline - util_mono_ms());

		if (left <= 0 || poll(&p, 1, left) <= 0)
			break;
		r = read(fd, line + len, sizeof(line) - 1 - len);
		if (r <= 0)
			break;
		len += (size_t)r;
	}
	line[len] = '\0';
	j = json_loads(line, JSON_DISABLE_EOF_CHECK, NULL);
	if (!json_is_integer(json_object_get(j, "port")) ||
	    !json_is_string(json_object_get(j, "ca"))) {
		fail(d, "the identity provider did not start (see idp.log)");
		goto out;
	}
	d->idp_port = (int)json_integer_value(json_object_get(j, "port"));
	snprintf(d->ca, sizeof(d->ca), "%s", json_string_value(json_object_get(j, "ca")));
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	json_decref(j);
	return rc;
}

/* ---- config and broker ------------------------------------------------ */

static int write_config(struct demo *d)
{
	json_t *cfg;
	char *text;
	int rc;

	cfg = json_pack("{s:s, s:s, s:s,"
			" s:{s:{s:[i]}, s:{s:[i]}, s:{s:[i]}},"
			" s:[{s:s, s:{s:i}, s:[s], s:[s]}],"
			" s:{s:s, s:[s], s:i},"
			" s:{s:s, s:i}}",
			"state_dir", "state", "runtime_dir", "run", "key_file", "master.key",
			"roles", "admin", "uids", (int)getuid(), "officer", "uids", (int)getuid(),
			"auditor", "uids", (int)getuid(),
			"principals", "name", "siem-connector", "match", "uid", (int)getuid(),
			"tenants", "*", "scopes", DEMO_SCOPE,
			"upstream", "ca_file", d->ca, "allowed_hosts", "127.0.0.1", "probe_wait_s", 30,
			"audit", "origin", "demo.custody.example/audit", "checkpoint_every", 5);
	if (cfg == NULL)
		return -1;
	text = json_dumps(cfg, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	json_decref(cfg);
	if (text == NULL)
		return -1;
	rc = util_write_file(path_in(d, "custody.json"), text, strlen(text), 0644);
	free(text);
	return rc;
}

static int start_broker(struct demo *d)
{
	char cfg[PATH_MAX];
	char *argv[] = { d->custodyd, "--config", cfg, "--foreground", NULL };
	int64_t deadline = util_mono_ms() + 20000;
	int status;

	snprintf(cfg, sizeof(cfg), "%s", path_in(d, "custody.json"));
	d->broker_pid = spawn(d, argv, path_in(d, "custodyd.log"), NULL);
	sig_broker_pid = d->broker_pid;
	if (d->broker_pid < 0) {
		d->broker_pid = 0;
		return fail(d, "cannot start %s", d->custodyd);
	}
	while (util_mono_ms() < deadline) {
		if (waitpid(d->broker_pid, &status, WNOHANG) == d->broker_pid) {
			d->broker_pid = 0;
			return fail(d, "custodyd exited at start (see custodyd.log)");
		}
		if (cli_socket_alive(path_in(d, "run/custody.sock")) &&
		    cli_socket_alive(path_in(d, "run/admin.sock")))
			return 0;
		poll(NULL, 0, 50);
	}
	return fail(d, "custodyd did not listen within 20 s (see custodyd.log)");
}

/* ---- the tool's part: libcustody + libcurl ----------------------------- */

struct body {
	char *p;
	size_t len;
};

static size_t body_write(char *ptr, size_t size, size_t n, void *ctx)
{
	struct body *b = ctx;
	size_t add = size * n;
	char *np;

	if (b->len + add > OUTPUT_MAX)
		return 0;
	np = realloc(b->p, b->len + add + 1);
	if (np == NULL)
		return 0;
	b->p = np;
	memcpy(b->p + b->len, ptr, add);
	b->len += add;
	b->p[b->len] = '\0';
	return add;
}

static int read_alerts(struct demo *d, const struct custody_token *t, size_t *n_alerts)
{
	struct curl_slist *hdrs = NULL;
	struct body b = { NULL, 0 };
	char url[128], *auth;
	size_t auth_len = t->token_len + 32;
	long code = 0;
	json_t *j = NULL;
	CURLcode cc = CURLE_FAILED_INIT;
	CURL *h;
	int rc = -1;

	auth = sodium_malloc(auth_len);
	h = curl_easy_init();
	if (auth == NULL || h == NULL)
		goto out;
	snprintf(auth, auth_len, "Authorization: Bearer %s", t->access_token);
	hdrs = curl_slist_append(NULL, auth);
	sodium_memzero(auth, auth_len);
	snprintf(url, sizeof(url), "https://127.0.0.1:%d/api/alerts", d->idp_port);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https");
	curl_easy_setopt(h, CURLOPT_CAINFO, d->ca);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 15000L);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, body_write);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
	cc = curl_easy_perform(h);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
	if (cc != CURLE_OK) {
		fail(d, "GET /api/alerts: %s", curl_easy_strerror(cc));
		goto out;
	}
	j = b.p ? json_loads(b.p, 0, NULL) : NULL;
	if (code != 200 || !json_is_array(json_object_get(j, "value"))) {
		fail(d, "GET /api/alerts answered HTTP %ld without alerts", code);
		goto out;
	}
	*n_alerts = json_array_size(json_object_get(j, "value"));
	rc = 0;
out:
	json_decref(j);
	free(b.p);
	if (hdrs != NULL) {
		/* the list holds a copy of the header line */
		sodium_memzero(hdrs->data, strlen(hdrs->data));
		curl_slist_free_all(hdrs);
	}
	if (h != NULL)
		curl_easy_cleanup(h);
	if (auth != NULL)
		sodium_free(auth);
	return rc;
}

static int tool_gets_token(struct demo *d)
{
	struct custody_token_request r = {
		.tenant = DEMO_TENANT, .min_ttl = 300, .purpose = "demo: pull alerts for the SIEM",
	};
	struct custody_client *c = NULL;
	struct custody_token *t = NULL;
	struct custody_error e;
	uint8_t h[crypto_hash_sha256_BYTES];
	char fp[2 * sizeof(h) + 1];
	size_t n_alerts = 0;
	int rc;

	say(d, "a tool (the SIEM connector, through libcustody) gets a token",
	    "custody token --tenant contoso --purpose 'demo: pull alerts for the SIEM'");
	memset(&e, 0, sizeof(e));
	rc = custody_connect(path_in(d, "run/custody.sock"), &c, &e);
	if (rc == 0)
		rc = custody_token_request(c, &r, 60000, &t, &e);
	custody_close(c);
	if (rc < 0)
		return fail(d, "no token: %s (%s)", e.message, e.code[0] ? e.code : "local error");
	crypto_hash_sha256(h, (const uint8_t *)t->access_token, t->token_len);
	util_hex(h, 8, fp);
	printf("    token sha256:%s… (the token itself is never shown), expires %s, grant %s, "
	       "cache %s, audit record %llu\n", fp, t->expires_at, t->grant,
	       t->cache[0] ? t->cache : "-", (unsigned long long)t->audit_seq);
	say(d, "the tool reads the customer's alerts with it",
	    "curl -H \"$(custody token --tenant contoso --format header)\" "
	    "https://127.0.0.1:<idp>/api/alerts");
	rc = read_alerts(d, t, &n_alerts);
	custody_token_free(t);
	if (rc < 0)
		return rc;
	printf("    HTTP 200: %zu alerts\n", n_alerts);
	return 0;
}

/* ---- the MSSP's alert connector (custody-alerts, DESIGN.md §12) ---------- */

/* custody-alerts next to this binary (installed side by side), else in the
 * build tree; $CUSTODY_ALERTS overrides. */
static int find_alerts(struct demo *d, char out[static PATH_MAX])
{
	const char *env = getenv("CUSTODY_ALERTS");
	char *slash;

	if (env && *env) {
		snprintf(out, PATH_MAX, "%s", env);
		return access(out, X_OK);
	}
	snprintf(out, PATH_MAX, "%s", d->self);
	slash = strrchr(out, '/');
	snprintf(slash + 1, PATH_MAX - (size_t)(slash + 1 - out), "custody-alerts");
	if (access(out, X_OK) == 0)
		return 0;
	snprintf(slash + 1, PATH_MAX - (size_t)(slash + 1 - out), "../alerts/custody-alerts");
	if (access(out, X_OK) == 0)
		return 0;
	snprintf(out, PATH_MAX, "%s/alerts/custody-alerts", CUSTODY_BUILD_ROOT);
	return access(out, X_OK);
}

/* The SOC's mail server: tests/fixtures/smtp.py (aiosmtpd, Debian's
 * python3-aiosmtpd under /usr/bin/python3), STARTTLS with the demo CA's
 * certificate for 127.0.0.1. Returns its port, or -1. */
static int start_smtp(struct demo *d, pid_t *pid)
{
	char smtp_py[PATH_MAX], maildir[PATH_MAX], cert[PATH_MAX], key[PATH_MAX], line[256];
	char *argv[] = { "/usr/bin/python3", smtp_py, "--dir", maildir, "--tls-cert", cert,
			 "--tls-key", key, "--require-starttls", NULL };
	int64_t deadline = util_mono_ms() + 30000;
	size_t len = 0;
	json_t *j;
	int fd = -1, port = -1;

	snprintf(smtp_py, sizeof(smtp_py), "%s", d->idp_py);
	snprintf(strrchr(smtp_py, '/') + 1, sizeof(smtp_py) - (size_t)(strrchr(smtp_py, '/') + 1 - smtp_py),
		 "smtp.py");
	snprintf(maildir, sizeof(maildir), "%s", path_in(d, "mail"));
	snprintf(cert, sizeof(cert), "%s", path_in(d, "idp/server.pem"));
	snprintf(key, sizeof(key), "%s", path_in(d, "idp/server.key"));
	*pid = spawn(d, argv, path_in(d, "smtp.log"), &fd);
	if (*pid < 0) {
		*pid = 0;
		return -1;
	}
	while (len < sizeof(line) - 1 && memchr(line, '\n', len) == NULL) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int left = (int)(deadline - util_mono_ms());
		ssize_t r;

		if (left <= 0 || poll(&p, 1, left) <= 0)
			break;
		r = read(fd, line + len, sizeof(line) - 1 - len);
		if (r <= 0)
			break;
		len += (size_t)r;
	}
	close(fd);
	line[len] = '\0';
	j = json_loads(line, JSON_DISABLE_EOF_CHECK, NULL);
	if (json_is_integer(json_object_get(j, "port")))
		port = (int)json_integer_value(json_object_get(j, "port"));
	json_decref(j);
	return port;
}

static int write_alerts_config(struct demo *d, int smtp_port)
{
	char api[64], smtp[64];
	json_t *cfg;
	char *text;
	int rc;

	snprintf(api, sizeof(api), "https://127.0.0.1:%d", d->idp_port);
	snprintf(smtp, sizeof(smtp), "smtp://127.0.0.1:%d", smtp_port);
	cfg = json_pack("{s:s, s:s, s:s, s:s, s:s,"
			" s:[{s:s, s:s}],"
			" s:{s:s, s:s, s:s, s:s},"
			" s:[{s:s, s:s, s:b, s:b, s:b, s:[s]}]}",
			"socket", "run/custody.sock", "state_dir", "alerts-state", "api_base", api,
			"ca_file", d->ca, "purpose", "demo: SIEM alert pull",
			"outputs", "type", "file", "path", "siem/alerts.ndjson",
			"smtp", "url", smtp, "from", "custody-alerts@mssp.example", "tls", "required",
			"ca_file", d->ca,
			"notifications", "name", "SOC high", "min_severity", "High",
			"include_org_name", 1, "include_portal_link", 1, "include_device_info", 0,
			"to", "soc@mssp.example");
	if (cfg == NULL)
		return -1;
	text = json_dumps(cfg, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	json_decref(cfg);
	if (text == NULL)
		return -1;
	rc = util_write_file(path_in(d, "custody-alerts.json"), text, strlen(text), 0644);
	free(text);
	return rc;
}

/* A header value as a person reads it: RFC 2047 "=?UTF-8?B?...?=" words
 * decoded, folding undone. */
static void header_text(const char *v, char *out, size_t size)
{
	size_t o = 0;

	while (*v != '\0' && o + 1 < size) {
		const char *end;

		if (strncmp(v, "=?UTF-8?B?", 10) == 0 && (end = strstr(v + 10, "?=")) != NULL) {
			unsigned char bin[256];
			size_t n = 0;

			if (sodium_base642bin(bin, sizeof(bin), v + 10, (size_t)(end - v - 10), NULL, &n,
					      NULL, sodium_base64_VARIANT_ORIGINAL) == 0) {
				if (n > size - 1 - o)
					n = size - 1 - o;
				memcpy(out + o, bin, n);
				o += n;
			}
			v = end + 2;
			while (*v == '\r' || *v == '\n' || *v == ' ' || *v == '\t')
				v++;
			continue;
		}
		if (*v != '\r' && *v != '\n')
			out[o++] = *v;
		v++;
	}
	out[o] = '\0';
}

/* The first message in the mail directory: its Subject and To, decoded. */
static int first_mail(struct demo *d, char *subject, size_t ssize, char *to, size_t tsize)
{
	char *text = NULL, *p, *hdr_end, saved;
	size_t len = 0;

	if (util_read_file(path_in(d, "mail/0001.eml"), 1 << 20, &text, &len) < 0)
		return -1;
	subject[0] = to[0] = '\0';
	hdr_end = strstr(text, "\r\n\r\n");
	for (p = text; p != NULL && (hdr_end == NULL || p < hdr_end); ) {
		char *next = strstr(p, "\r\n");
		char *field = p;

		/* a header continues on lines that start with white space */
		while (next != NULL && (next[2] == ' ' || next[2] == '\t'))
			next = strstr(next + 2, "\r\n");
		if (next == NULL)
			break;
		saved = *next;
		*next = '\0';
		if (strncmp(field, "Subject: ", 9) == 0)
			header_text(field + 9, subject, ssize);
		else if (strncmp(field, "To: ", 4) == 0)
			header_text(field + 4, to, tsize);
		*next = saved;
		p = next + 2;
	}
	free(text);
	return 0;
}

/* The MSSP's connector pulls the customer's alerts into the SIEM's file and
 * the SOC gets its notification e-mail. */
static int demo_alerts(struct demo *d)
{
	char exe[PATH_MAX], subject[512], to[256], *out = NULL, *text = NULL;
	char *argv[] = { exe, "run", "--once", "--config", "custody-alerts.json", NULL };
	pid_t smtp_pid = 0;
	size_t len = 0, lines = 0;
	int port, st, rc = -1;
	int64_t deadline;

	if (find_alerts(d, exe) != 0)
		return fail(d, "custody-alerts not found (build it, or set CUSTODY_ALERTS)");
	say(d, "the SOC's mail server starts (STARTTLS, the demo CA)",
	    "/usr/bin/python3 tests/fixtures/smtp.py --dir mail --require-starttls ... &");
	port = start_smtp(d, &smtp_pid);
	if (port < 0) {
		fail(d, "the SMTP server did not start (python3-aiosmtpd installed? see smtp.log)");
		goto out;
	}
	printf("    smtp://127.0.0.1:%d\n", port);
	if (write_alerts_config(d, port) < 0) {
		fail(d, "cannot write custody-alerts.json");
		goto out;
	}
	say(d, "the MSSP's connector pulls every customer's alerts into the SIEM (one pass)",
	    "custody-alerts run --once --config custody-alerts.json");
	st = run_capture(d, argv, &out);
	if (out != NULL)
		indent(out);
	if (st != 0) {
		fail(d, "custody-alerts run --once exited %d", st);
		goto out;
	}
	if (util_read_file(path_in(d, "siem/alerts.ndjson"), 64u << 20, &text, &len) < 0) {
		fail(d, "custody-alerts wrote no siem/alerts.ndjson");
		goto out;
	}
	for (size_t i = 0; i < len; i++)
		lines += text[i] == '\n';
	printf("    siem/alerts.ndjson: %zu alerts, each with custody_tenant, custody_tenant_id, "
	       "custody_portal_link (tid=...) and custody_audit_seq\n", lines);
	if (lines == 0 || strstr(text, "\"custody_portal_link\":\"https://security.microsoft.com/alerts/") == NULL ||
	    strstr(text, "?tid=" DEMO_TENANT_ID) == NULL) {
		fail(d, "the alerts file lacks the custody fields");
		goto out;
	}
	say(d, "the SOC's notification e-mail arrives (rule \"SOC high\": High alerts)", "ls mail/");
	deadline = util_mono_ms() + 15000;
	while (access(path_in(d, "mail/0001.eml"), R_OK) != 0 && util_mono_ms() < deadline)
		poll(NULL, 0, 50);
	if (first_mail(d, subject, sizeof(subject), to, sizeof(to)) < 0) {
		fail(d, "no notification e-mail arrived (see smtp.log)");
		goto out;
	}
	printf("    To: %s\n    Subject: %s\n", to, subject);
	rc = 0;
out:
	free(out);
	free(text);
	if (smtp_pid > 0)
		stop_pid(&smtp_pid, "the SMTP server");
	return rc;
}

/* ---- tampering ------------------------------------------------------------ */

/* Copy audit.db and change one byte inside a record body, as someone
 * editing the file behind the broker's back would. */
static int tamper_copy(struct demo *d, const char *src, const char *dst)
{
	static const char needle[] = "pull alerts for the SIEM";
	char *data = NULL, *hit;
	size_t len = 0;
	int rc;

	rc = util_read_file(src, 64u << 20, &data, &len);   /* the demo's db is small */
	if (rc < 0)
		return fail(d, "cannot read %s: %s", src, strerror(-rc));
	hit = memmem(data, len, needle, sizeof(needle) - 1);
	if (hit == NULL) {
		free(data);
		return fail(d, "no record with the tool's purpose in %s", src);
	}
	hit[5] = 'A';   /* "pull Alerts": same length, different bytes */
	rc = util_write_file(dst, data, len, 0600);
	free(data);
	if (rc < 0)
		return fail(d, "cannot write %s: %s", dst, strerror(-rc));
	return 0;
}

/* ---- the customer's report ---------------------------------------------- */

#define DEMO_REPORT "customer/contoso-report.html"

/* The last step: the customer turns its verified export into the page it
 * reads (custody audit report). */
static int demo_report(struct demo *d)
{
	if (custody(d, "the customer reads its verified trail as a web page", 0, NULL, "audit",
		    "report", "--export", "customer/contoso-audit.json", "--key",
		    "customer/audit.vkey", "--output", DEMO_REPORT, NULL) < 0)
		return -1;
	d->report = true;
	return 0;
}

/* Where the report stays once the demo is over: in the kept directory, or
 * moved out of the directory about to be removed. Fills out ("" when there
 * is none). */
static void demo_report_keep(struct demo *d, bool keep, char out[static PATH_MAX])
{
	const char *tmp = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	int fd;

	out[0] = '\0';
	if (!d->report)
		return;
	if (keep) {
		snprintf(out, PATH_MAX, "%s", path_in(d, DEMO_REPORT));
		return;
	}
	snprintf(out, PATH_MAX, "%s/custody-demo-report.XXXXXX.html", tmp);
	fd = mkstemps(out, 5);
	if (fd < 0 || rename(path_in(d, DEMO_REPORT), out) < 0) {
		if (fd >= 0)
			unlink(out);
		out[0] = '\0';
	}
	if (fd >= 0)
		close(fd);
}

/* ---- setup and teardown ------------------------------------------------ */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int find_programs(struct demo *d)
{
	const char *env;
	ssize_t n;
	char *slash;

	n = readlink("/proc/self/exe", d->self, sizeof(d->self) - 1);
	if (n <= 0)
		return cli_fail(EXIT_ERROR, "cannot find this program's path (/proc/self/exe)");
	d->self[n] = '\0';

	env = getenv("CUSTODY_SOURCE_DIR");
	snprintf(d->idp_py, sizeof(d->idp_py), "%s/tests/fixtures/idp.py",
		 env && *env ? env : CUSTODY_SOURCE_ROOT);
	if (access(d->idp_py, R_OK) < 0)
		return cli_fail(EXIT_ERROR, "the demo identity provider %s is missing; set "
				"CUSTODY_SOURCE_DIR to custody's source tree", d->idp_py);

	env = getenv("CUSTODYD");
	if (env && *env) {
		snprintf(d->custodyd, sizeof(d->custodyd), "%s", env);
	} else {
		/* Installed side by side, or this binary's build tree. */
		snprintf(d->custodyd, sizeof(d->custodyd), "%s", d->self);
		slash = strrchr(d->custodyd, '/');
		snprintf(slash + 1, sizeof(d->custodyd) - (size_t)(slash + 1 - d->custodyd),
			 "custodyd");
		if (access(d->custodyd, X_OK) < 0)
			snprintf(slash + 1, sizeof(d->custodyd) - (size_t)(slash + 1 - d->custodyd),
				 "../sbin/custodyd");
		if (access(d->custodyd, X_OK) < 0)
			snprintf(slash + 1, sizeof(d->custodyd) - (size_t)(slash + 1 - d->custodyd),
				 "../broker/custodyd");
		if (access(d->custodyd, X_OK) < 0)
			snprintf(d->custodyd, sizeof(d->custodyd), "%s/broker/custodyd",
				 CUSTODY_BUILD_ROOT);
	}
	if (access(d->custodyd, X_OK) < 0)
		return cli_fail(EXIT_ERROR, "custodyd not found at %s; build it or set CUSTODYD "
				"to its path", d->custodyd);
	return 0;
}

static int run_story(struct demo *d)
{
	char *out = NULL, cmd[512], vkey[512] = "";
	json_t *keys = NULL;
	int rc = -1;

	say(d, "the customer registers an app in its tenant (a local HTTPS identity provider)",
	    NULL);
	if (start_idp(d) < 0)
		goto out;
	printf("    identity provider on https://127.0.0.1:%d (test CA %s)\n", d->idp_port,
	       d->ca);

	say(d, "the MSSP admin writes a config (127.0.0.1 allowed upstream, the IdP's CA)",
	    "export CUSTODY_CONFIG=$PWD/custody.json");
	if (write_config(d) < 0) {
		fail(d, "cannot write custody.json");
		goto out;
	}
	setenv("CUSTODY_CONFIG", path_in(d, "custody.json"), 1);
	unsetenv("CUSTODY_SOCKET");

	if (custody(d, "the MSSP admin creates the vault and broker keys", 0, NULL, "init", NULL) < 0)
		goto out;

	say(d, "the MSSP admin starts the broker", "custodyd --config custody.json --foreground &");
	if (start_broker(d) < 0)
		goto out;
	printf("    custodyd pid %d, log custodyd.log\n", (int)d->broker_pid);

	if (custody(d, "the MSSP publishes its public keys", 0, &out, "keys", "--json", NULL) < 0)
		goto out;
	keys = json_loads(out, 0, NULL);
	free(out);
	out = NULL;
	if (!json_is_string(json_object_get(keys, "seal_public_key"))) {
		fail(d, "'custody keys --json' printed no seal_public_key");
		goto out;
	}
	snprintf(vkey, sizeof(vkey), "%s",
		 json_string_value(json_object_get(keys, "audit_verifier_key")));
	if (util_write_file(path_in(d, "customer/broker.pub"),
			    json_string_value(json_object_get(keys, "seal_public_key")),
			    strlen(json_string_value(json_object_get(keys, "seal_public_key"))),
			    0644) < 0 ||
	    util_write_file(path_in(d, "customer/audit.vkey"), vkey, strlen(vkey), 0644) < 0) {
		fail(d, "cannot write the customer's copy of the keys");
		goto out;
	}

	snprintf(cmd, sizeof(cmd), "https://127.0.0.1:%d/%s/oauth2/v2.0/token", d->idp_port,
		 DEMO_TENANT_ID);
	if (custody(d, "the customer seals a grant to the broker's key", 0, NULL, "grant", "seal",
		    "--broker-key", "customer/broker.pub", "--tenant-id", DEMO_TENANT_ID,
		    "--tenant-name", DEMO_TENANT, "--client-id", DEMO_CLIENT_ID,
		    "--client-secret-file", "customer/client-secret", "--scope", DEMO_SCOPE,
		    "--token-endpoint", cmd, "--principal", "siem-connector",
		    "--output", "contoso.grant", NULL) < 0)
		goto out;

	if (custody(d, "the MSSP imports it and probes the credential", 0, NULL, "grant",
		    "import", "contoso.grant", "--probe", NULL) < 0)
		goto out;
	if (custody(d, "the MSSP lists its grants (never a secret)", 0, NULL, "grant", "list",
		    NULL) < 0)
		goto out;

	if (tool_gets_token(d) < 0)
		goto out;
	if (demo_alerts(d) < 0)
		goto out;

	if (custody(d, "a security officer revokes the grant (the exposure window is shown)", 0,
		    NULL, "grant", "revoke", "--tenant", DEMO_TENANT, "--reason",
		    "demo: contract ended", NULL) < 0)
		goto out;

	if (custody(d, "the tool asks again and is refused (exit 3)", EXIT_REFUSED, &out, "token",
		    "--tenant", DEMO_TENANT, "--purpose", "demo: after the revocation", NULL) < 0)
		goto out;
	if (strstr(out, "revoked") == NULL) {
		fail(d, "the refusal does not say the grant was revoked");
		goto out;
	}
	free(out);
	out = NULL;

	if (custody(d, "an auditor lists the audit trail", 0, NULL, "audit", "list", NULL) < 0)
		goto out;
	if (custody(d, "the customer exports its records with proofs", 0, NULL, "audit", "export",
		    "--tenant", DEMO_TENANT, "--output", "customer/contoso-audit.json", NULL) < 0)
		goto out;

	say(d, "the MSSP stops the broker (it signs a last checkpoint)", "kill -TERM <custodyd>");
	stop_pid(&d->broker_pid, "custodyd");

	if (custody(d, "the auditor verifies the audit database offline", 0, NULL, "audit",
		    "verify", "--db", "state/audit.db", "--key", "customer/audit.vkey", NULL) < 0)
		goto out;
	if (custody(d, "the customer verifies its export with only the verifier key", 0, NULL,
		    "audit", "verify", "--export", "customer/contoso-audit.json", "--key",
		    "customer/audit.vkey", NULL) < 0)
		goto out;

	say(d, "someone edits a record in a copy of audit.db",
	    "sed -i 's/pull alerts/pull Alerts/' tampered.db");
	if (tamper_copy(d, path_in(d, "state/audit.db"), path_in(d, "tampered.db")) < 0)
		goto out;
	if (custody(d, "verification catches it (exit 6)", EXIT_VERIFY, NULL, "audit", "verify",
		    "--db", "tampered.db", "--key", "customer/audit.vkey", NULL) < 0)
		goto out;
	if (demo_report(d) < 0)
		goto out;
	rc = 0;
out:
	free(out);
	json_decref(keys);
	return rc;
}

int cmd_demo(struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct option opts[] = {
		CLI_COMMON_OPTIONS, { "keep", no_argument, NULL, 'k' }, { NULL, 0, NULL, 0 },
	};
	struct demo d;
	char report[PATH_MAX];
	bool keep = false;
	int c, rc, st = EXIT_OK;

	cli_getopt_reset();
	if (cli_exact_options(argv[0], argc, argv, opts) != 0)
		return EXIT_USAGE;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (c == 'k') {
			keep = true;
			continue;
		}
		if (cli_common_stop(ctx, c, usage, &st))
			return st;
	}
	if (optind != argc)
		return cli_usage_error("demo", "unexpected argument '%s'", argv[optind]);

	memset(&d, 0, sizeof(d));
	rc = find_programs(&d);
	if (rc != 0)
		return rc;
	snprintf(d.dir, sizeof(d.dir), "%s/custody-demo.XXXXXX",
		 getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (mkdtemp(d.dir) == NULL)
		return cli_fail(EXIT_ERROR, "cannot create a temporary directory: %s; set TMPDIR",
				strerror(errno));
	printf("custody demo in %s\n", d.dir);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, on_interrupt);
	signal(SIGTERM, on_interrupt);

	rc = run_story(&d);

	stop_pid(&d.broker_pid, "custodyd");
	stop_pid(&d.idp_pid, "the identity provider");
	curl_global_cleanup();
	demo_report_keep(&d, keep, report);
	if (keep)
		printf("kept %s (custody.json, custodyd.log, idp.log, state/audit.db)\n", d.dir);
	else
		nftw(d.dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	if (interrupted) {
		printf("demo interrupted at step %d; everything it started is stopped\n", d.step);
		return EXIT_ERROR;
	}
	if (rc < 0 || d.failed) {
		printf("demo FAILED at step %d\n", d.step);
		return EXIT_ERROR;
	}
	printf("demo ok: every step did what it should; everything it started is stopped\n");
	if (report[0])
		printf("the customer's report: %s (open it in a browser)\n", report);
	return EXIT_OK;
}
