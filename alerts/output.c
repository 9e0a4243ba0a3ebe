/* output.c — where alerts go: one struct output per configured output,
 * dispatching to output_file.c, output_syslog.c and output_hec.c.
 *
 * An output that fails is "broken" for the rest of the pass: it gets no
 * more alerts (so a dead SIEM costs one timeout, not one per tenant), the
 * tenants whose alerts it missed keep their cursors, and the next pass
 * tries it again.
 */
#include "alerts.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

int output_open(struct output *o, const struct alerts_config *c, const struct output_config *oc,
		struct cerr *err)
{
	int rc = -EINVAL;

	memset(o, 0, sizeof(*o));
	o->cfg = oc;
	o->conf = c;
	o->fd = -1;
	if (gethostname(o->hostname, sizeof(o->hostname) - 1) < 0 || o->hostname[0] == '\0')
		strcpy(o->hostname, "-");
	switch (oc->type) {
	case OUTPUT_FILE:
		rc = output_file_open(o, err);
		break;
	case OUTPUT_HEC:
		rc = output_hec_open(o, err);
		break;
	case OUTPUT_SYSLOG:
		rc = 0;   /* connects on first use */
		break;
	}
	if (rc < 0) {
		o->broken = true;
		snprintf(o->error, sizeof(o->error), "%s", err && err->msg[0] ? err->msg : "cannot open");
	}
	return rc;
}

int output_put(struct output *o, json_t *const *alerts, size_t n, struct cerr *err)
{
	int rc = -EINVAL;

	if (o->broken)
		return cerr_set(err, -EIO, "%s", o->error);
	if (n == 0)
		return 0;
	switch (o->cfg->type) {
	case OUTPUT_FILE:
		rc = output_file_put(o, alerts, n, err);
		break;
	case OUTPUT_SYSLOG:
		rc = output_syslog_put(o, alerts, n, err);
		break;
	case OUTPUT_HEC:
		rc = output_hec_put(o, alerts, n, err);
		break;
	}
	if (rc < 0) {
		o->broken = true;
		snprintf(o->error, sizeof(o->error), "%s", err && err->msg[0] ? err->msg : "failed");
	}
	return rc;
}

int output_sync(struct output *o, struct cerr *err)
{
	int rc;

	if (o->broken || o->cfg->type != OUTPUT_FILE)
		return 0;
	rc = output_file_sync(o, err);
	if (rc < 0) {
		o->broken = true;
		snprintf(o->error, sizeof(o->error), "%s", err && err->msg[0] ? err->msg : "failed");
	}
	return rc;
}

void output_close(struct output *o)
{
	if (o->fd >= 0)
		close(o->fd);
	o->fd = -1;
	if (o->conn != NULL)
		curl_easy_cleanup(o->conn);
	o->conn = NULL;
	if (o->auth != NULL)
		sodium_free(o->auth);
	o->auth = NULL;
	buf_free(&o->out);
}
