/* output_file.c — the "file" output: NDJSON, one delivered alert a line,
 * appended. The file is opened at the start of each pass (so a rotated
 * file is picked up) and synced before any cursor moves. */
#include "alerts.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int output_file_open(struct output *o, struct cerr *err)
{
	const char *path = o->cfg->path;
	char *dir, *slash;

	dir = strdup(path);
	if (dir == NULL)
		return -ENOMEM;
	slash = strrchr(dir, '/');
	if (slash != NULL && slash != dir) {
		*slash = '\0';
		(void)util_mkdir_p(dir, 0750);
	}
	free(dir);
	o->fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
	if (o->fd < 0) {
		int e = errno;

		o->broken = true;
		cerr_set(err, -e, "%s: cannot open %s: %s", o->cfg->label, path, strerror(e));
		snprintf(o->error, sizeof(o->error), "%s", err ? err->msg : "cannot open");
		return -e;
	}
	/* A write cut short (a crash, a full disk) may have left half a line:
	 * end it, so the next alert starts a line of its own. Those alerts
	 * were not recorded as delivered and are written again whole. */
	{
		char last = '\n';
		off_t end = lseek(o->fd, 0, SEEK_END);

		if (end > 0 && pread(o->fd, &last, 1, end - 1) == 1 && last != '\n' &&
		    write(o->fd, "\n", 1) != 1) {
			int e = errno;

			return cerr_set(err, -e, "%s: cannot write: %s", o->cfg->label, strerror(e));
		}
	}
	return 0;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int to_buf(const char *p, size_t n, void *ctx)
{
	buf_add(ctx, p, n);
	return 0;
}

int output_file_put(struct output *o, json_t *const *alerts, size_t n, struct cerr *err)
{
	int rc;

	buf_reset(&o->out);
	for (size_t i = 0; i < n; i++) {
		json_dump_callback(alerts[i], to_buf, &o->out, JSON_COMPACT);
		buf_add(&o->out, "\n", 1);
	}
	if (o->out.oom)
		return cerr_set(err, -ENOMEM, "%s: out of memory", o->cfg->label);
	/* One write per batch: a line is never split between two writers. */
	rc = write_all(o->fd, o->out.p, o->out.len);
	if (rc < 0)
		return cerr_set(err, rc, "%s: cannot write: %s", o->cfg->label, strerror(-rc));
	return 0;
}

int output_file_sync(struct output *o, struct cerr *err)
{
	if (fdatasync(o->fd) < 0)
		return cerr_set(err, -errno, "%s: cannot sync: %s", o->cfg->label, strerror(errno));
	return 0;
}
