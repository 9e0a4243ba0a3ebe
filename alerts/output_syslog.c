/* output_syslog.c — the "syslog" output: RFC 5424 messages over TLS with
 * RFC 5425 octet-counted framing, MSG in CEF (cef.c) or JSON.
 *
 * TLS comes from libcurl: CURLOPT_CONNECT_ONLY on an https:// URL does the
 * TCP connect and the verified TLS handshake and stops; curl_easy_send
 * then writes raw bytes through it. Syslog over TCP has no
 * acknowledgement: "took" means the receiver's TLS stream accepted the
 * bytes. The connection opens on first use and lasts the pass.
 */
#include "alerts.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>

static void sd_value(struct buf *b, const char *s)
{
	for (; s != NULL && *s != '\0'; s++) {
		if (*s == '"' || *s == '\\' || *s == ']')
			buf_add(b, "\\", 1);
		buf_add(b, (unsigned char)*s < 0x20 ? " " : s, 1);
	}
}

static int pri(const char *severity)
{
	static const int sev[] = { 6, 5, 4, 2 };   /* info, notice, warning, crit */
	enum severity s = severity_parse(severity);

	return 16 * 8 + (s == SEV_UNKNOWN ? 5 : sev[s]);   /* facility local0 */
}

static int to_buf(const char *p, size_t n, void *ctx)
{
	buf_add(ctx, p, n);
	return 0;
}

void syslog_frame(const json_t *alert, bool json, const char *hostname, struct buf *out)
{
	struct buf m = { 0 };
	char ts[UTIL_TIME_LEN], seq[32];

	util_time_format(util_now_us(), true, ts);
	snprintf(seq, sizeof(seq), "%lld",
		 (long long)json_integer_value(json_object_get(alert, "custody_audit_seq")));
	buf_printf(&m, "<%d>1 %s %s custody-alerts - alert [custody@32473 tenant=\"",
		   pri(json_string_value(json_object_get(alert, "severity"))), ts, hostname);
	sd_value(&m, json_string_value(json_object_get(alert, "custody_tenant")));
	buf_str(&m, "\" tenant_id=\"");
	sd_value(&m, json_string_value(json_object_get(alert, "custody_tenant_id")));
	buf_str(&m, "\" alert_id=\"");
	sd_value(&m, json_string_value(json_object_get(alert, "id")));
	buf_printf(&m, "\" audit_seq=\"%s\"] ", seq);
	if (json)
		json_dump_callback(alert, to_buf, &m, JSON_COMPACT);
	else
		cef_encode(alert, &m);
	if (m.oom) {
		out->oom = true;
	} else {
		buf_printf(out, "%zu ", m.len);
		buf_add(out, m.p, m.len);
	}
	buf_free(&m);
}

static int syslog_connect(struct output *o, struct cerr *err)
{
	const struct output_config *oc = o->cfg;
	char url[512], errbuf[CURL_ERROR_SIZE] = "";
	CURLcode cc;

	snprintf(url, sizeof(url), "https://%s/", oc->url + strlen("tls://"));
	o->conn = curl_easy_init();
	if (o->conn == NULL)
		return cerr_set(err, -ENOMEM, "%s: out of memory", oc->label);
	curl_easy_setopt(o->conn, CURLOPT_URL, url);
	curl_easy_setopt(o->conn, CURLOPT_CONNECT_ONLY, 1L);
	curl_easy_setopt(o->conn, CURLOPT_PROTOCOLS_STR, "https");
	if (oc->ca_file != NULL)
		curl_easy_setopt(o->conn, CURLOPT_CAINFO, oc->ca_file);
	curl_easy_setopt(o->conn, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(o->conn, CURLOPT_CONNECTTIMEOUT_MS, (long)o->conf->timeout_s * 1000L);
	curl_easy_setopt(o->conn, CURLOPT_ERRORBUFFER, errbuf);
	cc = curl_easy_perform(o->conn);
	if (cc != CURLE_OK) {
		curl_easy_cleanup(o->conn);
		o->conn = NULL;
		return cerr_set(err, -ECONNREFUSED, "%s: cannot connect: %s", oc->label,
				errbuf[0] ? errbuf : curl_easy_strerror(cc));
	}
	return 0;
}

static int send_all(struct output *o, const char *p, size_t n, struct cerr *err)
{
	int64_t deadline = util_mono_ms() + (int64_t)o->conf->timeout_s * 1000;

	while (n > 0) {
		size_t sent = 0;
		CURLcode cc = curl_easy_send(o->conn, p, n, &sent);

		if (cc == CURLE_AGAIN) {
			curl_socket_t fd = CURL_SOCKET_BAD;
			struct pollfd pfd;
			int64_t left = deadline - util_mono_ms();

			if (left <= 0)
				return cerr_set(err, -ETIMEDOUT, "%s: the receiver takes nothing "
						"(timed out after %d s)", o->cfg->label,
						o->conf->timeout_s);
			curl_easy_getinfo(o->conn, CURLINFO_ACTIVESOCKET, &fd);
			pfd.fd = fd;
			pfd.events = POLLOUT;
			(void)poll(&pfd, 1, (int)(left > 1000 ? 1000 : left));
			continue;
		}
		if (cc != CURLE_OK)
			return cerr_set(err, -EIO, "%s: the connection broke: %s", o->cfg->label,
					curl_easy_strerror(cc));
		p += sent;
		n -= sent;
	}
	return 0;
}

int output_syslog_put(struct output *o, json_t *const *alerts, size_t n, struct cerr *err)
{
	int rc;

	if (o->conn == NULL && (rc = syslog_connect(o, err)) < 0)
		return rc;
	buf_reset(&o->out);
	for (size_t i = 0; i < n; i++)
		syslog_frame(alerts[i], o->cfg->json, o->hostname, &o->out);
	if (o->out.oom)
		return cerr_set(err, -ENOMEM, "%s: out of memory", o->cfg->label);
	return send_all(o, o->out.p, o->out.len, err);
}
