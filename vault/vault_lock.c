/* vault_lock.c — one process owns a vault at a time: an exclusive flock on
 * DIR/lock, held for the life of the handle (released by the kernel when the
 * process dies, so a crash never leaves a stale lock). */
#include "vault_private.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

int vault_lock_take(const char *dir, int *fd, struct cerr *err)
{
	char *path = util_path_join(dir, VAULT_LOCK);
	int f, rc;

	if (path == NULL)
		return cerr_set(err, -ENOMEM, "out of memory");
	f = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (f < 0) {
		rc = -errno;
		cerr_set(err, rc, "cannot open the vault lock %s: %s", path, strerror(-rc));
		goto out;
	}
	if (flock(f, LOCK_EX | LOCK_NB) < 0) {
		rc = -errno;
		if (rc == -EWOULDBLOCK)
			rc = cerr_set(err, -EBUSY,
				      "the vault at %s is in use by another process (is custodyd running?)",
				      dir);
		else
			cerr_set(err, rc, "cannot lock the vault %s: %s", path, strerror(-rc));
		close(f);
		goto out;
	}
	*fd = f;
	rc = 0;
out:
	free(path);
	return rc;
}
