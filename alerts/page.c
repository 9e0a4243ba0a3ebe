/* page.c — one page of GET /api/alerts, checked before anything trusts it.
 *
 * The API is another party's service: a page may be HTML from a proxy, a
 * cut-off object, or alerts without the fields the cursor and the
 * delivered set are built on. Anything but a well-formed page is one
 * clear error, so the tenant's cursor stays where it was.
 */
#include "alerts.h"

#include <errno.h>
#include <string.h>

#define ALERT_ID_MAX 256

int alerts_page_parse(const char *body, size_t len, json_t **alerts, struct cerr *err)
{
	json_error_t je;
	json_t *root, *value, *a;
	int64_t us;
	size_t i;

	if (len == 0)
		return cerr_set(err, -EBADMSG, "an empty answer instead of a page of alerts");
	root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
	if (root == NULL)
		return cerr_set(err, -EBADMSG, "the answer is not JSON (%s at byte %d)", je.text,
				je.position);
	value = json_object_get(root, "value");
	if (!json_is_object(root) || !json_is_array(value)) {
		json_decref(root);
		return cerr_set(err, -EBADMSG, "the answer has no \"value\" array of alerts");
	}
	json_array_foreach(value, i, a) {
		const char *id = json_string_value(json_object_get(a, "id"));
		const char *lut = json_string_value(json_object_get(a, "lastUpdateTime"));
		const char *sev;

		if (!json_is_object(a)) {
			cerr_set(err, -EBADMSG, "value[%zu] is not an object", i);
			goto bad;
		}
		if (id == NULL || id[0] == '\0' || strlen(id) > ALERT_ID_MAX ||
		    strlen(id) != json_string_length(json_object_get(a, "id"))) {
			cerr_set(err, -EBADMSG, "value[%zu] has no valid \"id\"", i);
			goto bad;
		}
		if (lut == NULL || util_time_parse(lut, &us) < 0) {
			cerr_set(err, -EBADMSG, "alert %.64s (value[%zu]) has no valid "
				 "\"lastUpdateTime\"", id, i);
			goto bad;
		}
		sev = json_string_value(json_object_get(a, "severity"));
		if (json_object_get(a, "severity") != NULL && !json_is_null(json_object_get(a, "severity")) &&
		    sev == NULL) {
			cerr_set(err, -EBADMSG, "alert %.64s (value[%zu]): \"severity\" is not a string",
				 id, i);
			goto bad;
		}
	}
	*alerts = json_incref(value);
	json_decref(root);
	return 0;
bad:
	json_decref(root);
	return -EBADMSG;
}
