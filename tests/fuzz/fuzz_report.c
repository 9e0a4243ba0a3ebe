/* fuzz_report.c — custody audit report's page writer (cli/report_html.c)
 * fed records it did not expect: each input line is a record body handed
 * over as the verifier would (report_record), the first byte picks the
 * store or the export view, and the verdict message is hostile too. The
 * page must then hold only the page's own elements: every '<' in it opens
 * or closes a tag of the writer's small set, so no record string ever
 * became markup. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const tags[] = {
	"!DOCTYPE", "html", "head", "meta", "title", "style", "body", "main", "header", "h1",
	"h2", "h3", "p", "dl", "dt", "dd", "code", "bdi", "nav", "a", "section", "svg", "line",
	"text", "g", "rect", "details", "summary", "div", "table", "thead", "tbody", "tr", "th",
	"td", "span", "br", "strong", "em", "i", "time", "ul", "li", "footer", NULL,
};

static void check_tags(const char *page, size_t len)
{
	const char *p = page, *end = page + len;

	while ((p = memchr(p, '<', (size_t)(end - p))) != NULL) {
		const char *n = p + 1;
		size_t k = 0;
		bool ok = false;

		if (n < end && *n == '/')
			n++;
		while (n + k < end && n[k] != ' ' && n[k] != '>' && n[k] != '\n')
			k++;
		for (size_t i = 0; tags[i] && !ok; i++)
			ok = strlen(tags[i]) == k && memcmp(tags[i], n, k) == 0;
		if (!ok)
			abort();
		p = n;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct audit_verify_stats st = { .records = 1, .have_cp = true, .cp_size = 1,
						.cp_key_id = "01020304" };
	struct report_verdict v = { .source = "fuzz.json", .vkey = "o+01020304+AQ==", .st = &st };
	struct report *r = NULL;
	const char *p, *end, *nl;
	char *page = NULL, *msg;
	size_t len = 0;
	uint64_t seq = 1;
	FILE *f;

	if (size == 0)
		return 0;
	v.is_db = data[0] & 1;
	v.outcome = (enum report_outcome)((data[0] >> 1) % 6);
	if (report_new(v.is_db, &r) < 0)
		return 0;
	p = (const char *)data + 1;
	end = (const char *)data + size;
	for (; p < end; p = nl + 1) {
		nl = memchr(p, '\n', (size_t)(end - p));
		if (nl == NULL)
			nl = end;
		/* the verifier hands over NUL-terminated bodies */
		msg = strndup(p, (size_t)(nl - p));
		if (msg == NULL || report_record(r, seq++, msg, strlen(msg), NULL) < 0) {
			free(msg);
			break;
		}
		free(msg);
	}
	msg = strndup((const char *)data + 1, size - 1 > 512 ? 512 : size - 1);
	v.message = msg;
	f = open_memstream(&page, &len);
	if (f != NULL) {
		if (report_write(r, &v, f) < 0)
			abort();
		fclose(f);
		check_tags(page, len);
	}
	free(page);
	free(msg);
	report_free(r);
	return 0;
}
