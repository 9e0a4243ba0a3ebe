/* peer.c — who is on the other end of a socket, from the kernel's word
 * only (SO_PEERCRED, SO_PEERGROUPS, /proc), and which principal that is.
 *
 * A pidfd of the peer (SO_PEERPIDFD: the very process that connected;
 * else pidfd_open) is held so an exited process, and so a recycled pid,
 * is noticed before a token leaves, with one poll(2) shared with the
 * hang-up check instead of reading /proc per token. Without a pidfd
 * (old kernel, out of fds) the pid's start time is compared instead. The executable's SHA-256 is read through /proc/<pid>/exe
 * (the very file the process runs, even when its path was replaced) and
 * only when some principal asks for it; it is cached by (dev, inode,
 * mtime, size) so a busy tool does not cost a hash per connection.
 */
#include "broker_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <sodium.h>

#define EXE_CACHE_SLOTS 64

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77 /* Linux 6.5 */
#endif

struct exe_hash {
	dev_t dev;
	ino_t ino;
	struct timespec mtime;
	off_t size;
	uint8_t sha256[32];
	bool used;
};

static struct exe_hash exe_cache[EXE_CACHE_SLOTS];
static unsigned exe_cache_next;

void broker_user_name(uid_t uid, char out[static 64])
{
	struct passwd pw, *res = NULL;
	char buf[4096];

	if (getpwuid_r(uid, &pw, buf, sizeof(buf), &res) == 0 && res != NULL &&
	    strlen(pw.pw_name) < 64)
		snprintf(out, 64, "%s", pw.pw_name);
	else
		snprintf(out, 64, "uid:%u", (unsigned)uid);
}

/* Field 22 of /proc/<pid>/stat, counted after the ')' that ends comm
 * (comm itself may hold spaces and parentheses). */
static uint64_t proc_start_time(pid_t pid)
{
	char path[64], buf[1024];
	unsigned long long st = 0;
	const char *p;
	ssize_t n;
	int fd, field;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	p = strrchr(buf, ')');
	if (p == NULL)
		return 0;
	/* after ')' comes " S ..." : field 3 is the state */
	p++;
	for (field = 2; field < 22 && *p != '\0'; p++)
		if (*p == ' ')
			field++;
	if (field != 22 || sscanf(p, "%llu", &st) != 1)
		return 0;
	return (uint64_t)st;
}

/* The pidfd is taken before the start time is read, so both name the
 * same process unless the pid was recycled before we got here (only the
 * pidfd_open fallback has that window; SO_PEERPIDFD has none). */
static void peer_open_pidfd(int sock, struct peer *p)
{
	socklen_t len = sizeof(p->pidfd);
	long fd;

	if (getsockopt(sock, SOL_SOCKET, SO_PEERPIDFD, &p->pidfd, &len) == 0 &&
	    len == sizeof(p->pidfd) && p->pidfd >= 0) {
		p->has_pidfd = true;
		return;
	}
	fd = syscall(SYS_pidfd_open, p->pid, 0);
	if (fd >= 0) {
		p->pidfd = (int)fd;
		p->has_pidfd = true;
	}
}

int peer_from_socket(int fd, struct peer *p)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);
	gid_t *groups = NULL;
	char path[64], exe[PATH_MAX];
	ssize_t n;

	*p = (struct peer){0};
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0)
		return -errno;
	p->pid = cr.pid;
	peer_open_pidfd(fd, p);
	p->uid = cr.uid;
	p->gid = cr.gid;
	len = 64 * sizeof(gid_t);
	for (;;) {
		gid_t *ng = realloc(groups, len ? len : sizeof(gid_t));

		if (ng == NULL) {
			free(groups);
			return -ENOMEM;
		}
		groups = ng;
		if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) == 0)
			break;
		if (errno != ERANGE || len > 65536 * sizeof(gid_t)) {
			/* No groups known: match on primary uid/gid only. */
			len = 0;
			break;
		}
	}
	p->groups = groups;
	p->n_groups = len / sizeof(gid_t);
	p->start_time = proc_start_time(p->pid);
	snprintf(path, sizeof(path), "/proc/%d/exe", (int)p->pid);
	n = readlink(path, exe, sizeof(exe) - 1);
	if (n > 0) {
		exe[n] = '\0';
		p->exe = strdup(exe);
	}
	broker_user_name(p->uid, p->user);
	return 0;
}

void peer_clear(struct peer *p)
{
	if (p->has_pidfd)
		close(p->pidfd);
	json_decref(p->json);
	free(p->groups);
	free(p->exe);
	*p = (struct peer){0};
}

/* A pidfd turns readable once its process has exited. */
static bool pidfd_exited(int pidfd)
{
	struct pollfd pfd = {.fd = pidfd, .events = POLLIN};

	return poll(&pfd, 1, 0) != 0;
}

bool peer_still_same(const struct peer *p)
{
	if (p->start_time == 0)
		return false;
	if (p->has_pidfd)
		return !pidfd_exited(p->pidfd);
	return proc_start_time(p->pid) == p->start_time;
}

int peer_check_conn(const struct peer *p, int sock)
{
	struct pollfd pfd[2] = {{.fd = sock, .events = POLLIN},
				{.fd = p->has_pidfd ? p->pidfd : -1, .events = POLLIN}};
	int n = poll(pfd, 2, 0);

	/* a half-closed client (it shut down its writing side and still
	 * reads) is not gone: only POLLHUP/POLLERR say so */
	if (n < 0)
		return -EPIPE;
	if (pfd[0].revents & (POLLHUP | POLLERR))
		return -EPIPE;
	if (p->start_time == 0)
		return -ESRCH;
	if (p->has_pidfd)
		return pfd[1].revents != 0 ? -ESRCH : 0;
	return proc_start_time(p->pid) == p->start_time ? 0 : -ESRCH;
}

bool peer_in_group(const struct peer *p, gid_t g)
{
	if (p->gid == g)
		return true;
	for (size_t i = 0; i < p->n_groups; i++)
		if (p->groups[i] == g)
			return true;
	return false;
}

/* Hash the executable the peer runs. Opened through /proc/<pid>/exe so a
 * replaced path cannot change what is hashed. */
static int exe_sha256(struct peer *p)
{
	char path[64];
	struct stat st;
	crypto_hash_sha256_state h;
	uint8_t buf[65536];
	struct exe_hash *slot;
	int fd, rc = 0;

	if (p->have_exe_sha256)
		return 0;
	if (p->start_time == 0)
		return -ESRCH;
	snprintf(path, sizeof(path), "/proc/%d/exe", (int)p->pid);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		rc = -EINVAL;
		goto out;
	}
	for (unsigned i = 0; i < EXE_CACHE_SLOTS; i++) {
		struct exe_hash *e = &exe_cache[i];

		if (e->used && e->dev == st.st_dev && e->ino == st.st_ino &&
		    e->size == st.st_size && e->mtime.tv_sec == st.st_mtim.tv_sec &&
		    e->mtime.tv_nsec == st.st_mtim.tv_nsec) {
			memcpy(p->exe_sha256, e->sha256, 32);
			p->have_exe_sha256 = true;
			goto out;
		}
	}
	crypto_hash_sha256_init(&h);
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			goto out;
		}
		if (n == 0)
			break;
		crypto_hash_sha256_update(&h, buf, (unsigned long long)n);
	}
	crypto_hash_sha256_final(&h, p->exe_sha256);
	/* The process must still be the one we hashed for. */
	if (!peer_still_same(p)) {
		rc = -ESRCH;
		goto out;
	}
	p->have_exe_sha256 = true;
	slot = &exe_cache[exe_cache_next++ % EXE_CACHE_SLOTS];
	*slot = (struct exe_hash){.dev = st.st_dev, .ino = st.st_ino, .mtime = st.st_mtim,
				  .size = st.st_size, .used = true};
	memcpy(slot->sha256, p->exe_sha256, 32);
out:
	close(fd);
	return rc;
}

void peer_cache_free(void)
{
	memset(exe_cache, 0, sizeof(exe_cache));
}

static bool match_one(struct peer *p, const struct principal_match *m)
{
	if (m->has_uid && p->uid != m->uid)
		return false;
	if (m->has_user && p->uid != m->user_uid)
		return false;
	if (m->has_gid && p->gid != m->gid)
		return false;
	if (m->has_group && !peer_in_group(p, m->group_gid))
		return false;
	if (m->exe != NULL && (p->exe == NULL || strcmp(p->exe, m->exe) != 0))
		return false;
	if (m->has_exe_sha256) {
		if (exe_sha256(p) < 0)
			return false;
		if (sodium_memcmp(p->exe_sha256, m->exe_sha256, 32) != 0)
			return false;
	}
	return true;
}

int peer_match_principal(struct peer *p, const struct broker_config *c)
{
	for (size_t i = 0; i < c->n_principals; i++)
		if (match_one(p, &c->principals[i].match))
			return (int)i;
	return -1;
}

json_t *peer_json(struct peer *p)
{
	/* built once per connection: every record of it carries the same
	 * object (records are serialised on the loop thread, so sharing the
	 * reference count is safe) */
	if (p->json == NULL)
		p->json = json_pack("{s:I,s:I,s:I,s:s?}", "uid", (json_int_t)p->uid, "gid",
				    (json_int_t)p->gid, "pid", (json_int_t)p->pid, "exe", p->exe);
	return json_incref(p->json);
}
