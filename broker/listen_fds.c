/* listen_fds.c — sockets passed by systemd (socket activation), without
 * libsystemd: the sd_listen_fds(3) protocol read by hand.
 *
 * systemd (or systemd-socket-activate) passes listening sockets as fds 3,
 * 4, ... and sets LISTEN_PID (the pid they are meant for), LISTEN_FDS (how
 * many) and LISTEN_FDNAMES (their FileDescriptorName=, ':'-separated).
 * custodyd takes the ones named "tool" and "admin" as they are — systemd
 * already bound them, with SocketMode= and SocketGroup= — and binds any it
 * was not given itself. Anything else passed in (a regular file, a
 * datagram socket, a socket nobody listens on, an unknown name) is a
 * start-up error: a unit that passes the wrong thing should fail loudly,
 * not leave a broker that answers nobody.
 *
 * Called once, before any thread starts (it unsets the variables, and
 * unsetenv is not safe beside threads that read the environment).
 */
#include "broker_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define LISTEN_FDS_START 3

static int parse_uint(const char *s, unsigned long max, unsigned long *out)
{
	char *end;
	unsigned long v;

	if (s == NULL || s[0] < '0' || s[0] > '9')
		return -EINVAL;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || *end != '\0' || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

static const char *kind_of(int fd, const struct stat *st)
{
	int type = 0, domain = 0;
	socklen_t len = sizeof(type);

	if (S_ISREG(st->st_mode))
		return "a regular file";
	if (S_ISDIR(st->st_mode))
		return "a directory";
	if (S_ISFIFO(st->st_mode))
		return "a pipe";
	if (S_ISCHR(st->st_mode))
		return "a character device";
	if (!S_ISSOCK(st->st_mode))
		return "not a socket";
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0)
		return "a socket of unknown type";
	len = sizeof(domain);
	if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0)
		return "a socket of unknown family";
	if (domain != AF_UNIX)
		return domain == AF_INET || domain == AF_INET6 ? "an IP socket" : "a non-Unix socket";
	if (type == SOCK_DGRAM)
		return "a datagram socket";
	if (type == SOCK_SEQPACKET)
		return "a seqpacket socket";
	if (type != SOCK_STREAM)
		return "a socket of another type";
	return NULL;
}

/* Check fd is a listening Unix stream socket; make it non-blocking and
 * close-on-exec; fill path with the address systemd bound it to. */
static int check_fd(int fd, const char *name, char *path, size_t path_size, struct cerr *err)
{
	struct sockaddr_un sa;
	socklen_t len = sizeof(sa);
	struct stat st;
	const char *kind;
	int listening = 0, flags;

	if (fstat(fd, &st) < 0)
		return cerr_set(err, -EBADF,
				"socket activation: fd %d (\"%s\") is not open: %s; check the "
				"custody-%s.socket unit", fd, name, strerror(errno), name);
	kind = kind_of(fd, &st);
	if (kind != NULL)
		return cerr_set(err, -ENOTSOCK,
				"socket activation: fd %d (\"%s\") is %s, not a listening Unix "
				"stream socket; use ListenStream=/path in custody-%s.socket", fd,
				name, kind, name);
	len = sizeof(listening);
	if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) < 0 || !listening)
		return cerr_set(err, -EINVAL,
				"socket activation: fd %d (\"%s\") is a Unix stream socket that is "
				"not listening; pass a listening socket (ListenStream=)", fd, name);
	len = sizeof(sa);
	memset(&sa, 0, sizeof(sa));
	if (getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
		return cerr_set(err, -errno, "socket activation: fd %d (\"%s\"): getsockname: %s",
				fd, name, strerror(errno));
	if (len > offsetof(struct sockaddr_un, sun_path) && sa.sun_path[0] != '\0')
		snprintf(path, path_size, "%.*s",
			 (int)(len - offsetof(struct sockaddr_un, sun_path)), sa.sun_path);
	else
		snprintf(path, path_size, "(unnamed socket, fd %d)", fd);
	/* The loop accepts without blocking; systemd passes sockets blocking
	 * unless NonBlocking=yes. */
	flags = fcntl(fd, F_GETFL);
	if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0 ||
	    fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
		return cerr_set(err, -errno, "socket activation: fd %d (\"%s\"): fcntl: %s", fd,
				name, strerror(errno));
	return 0;
}

static void unset_listen_env(void)
{
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
}

int listen_fds_take(struct listen_fds *out, struct cerr *err)
{
	const char *pid_s = getenv("LISTEN_PID"), *n_s = getenv("LISTEN_FDS");
	const char *names_s = getenv("LISTEN_FDNAMES");
	char *names = NULL, *save = NULL, *name;
	unsigned long pid, n;
	int rc = 0;

	out->tool_fd = out->admin_fd = -1;
	out->tool_path[0] = out->admin_path[0] = '\0';
	if (pid_s == NULL) {
		unset_listen_env();
		return 0;
	}
	if (parse_uint(pid_s, LONG_MAX, &pid) < 0 || parse_uint(n_s, INT_MAX - 3, &n) < 0) {
		rc = cerr_set(err, -EINVAL,
			      "socket activation: LISTEN_PID=%.20s LISTEN_FDS=%.20s is not valid; "
			      "start custodyd from systemd or unset both", pid_s,
			      n_s != NULL ? n_s : "(unset)");
		goto out;
	}
	/* Meant for another process (a parent that forgot to unset them). */
	if (pid != (unsigned long)getpid() || n == 0)
		goto out;
	if (n > 2) {
		rc = cerr_set(err, -EINVAL,
			      "socket activation: %lu sockets passed; custodyd takes two, named "
			      "tool and admin", n);
		goto out;
	}
	if (names_s == NULL) {
		rc = cerr_set(err, -EINVAL,
			      "socket activation: LISTEN_FDNAMES is not set; name the sockets "
			      "tool and admin (FileDescriptorName= in the .socket units, "
			      "--fdname=tool:admin for systemd-socket-activate)");
		goto out;
	}
	names = strdup(names_s);
	if (names == NULL) {
		rc = cerr_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	name = strtok_r(names, ":", &save);
	for (unsigned long i = 0; i < n; i++, name = strtok_r(NULL, ":", &save)) {
		int fd = LISTEN_FDS_START + (int)i;
		int *slot;
		char *path;

		if (name != NULL && strcmp(name, "tool") == 0) {
			slot = &out->tool_fd;
			path = out->tool_path;
		} else if (name != NULL && strcmp(name, "admin") == 0) {
			slot = &out->admin_fd;
			path = out->admin_path;
		} else {
			rc = cerr_set(err, -EINVAL,
				      "socket activation: fd %d is named \"%.64s\"; custodyd takes "
				      "sockets named tool and admin (FileDescriptorName=)", fd,
				      name != NULL ? name : "");
			goto out;
		}
		if (*slot >= 0) {
			rc = cerr_set(err, -EINVAL,
				      "socket activation: two sockets are named \"%s\"; pass one "
				      "each of tool and admin", name);
			goto out;
		}
		rc = check_fd(fd, name, path, sizeof(out->tool_path), err);
		if (rc < 0)
			goto out;
		*slot = fd;
	}
	rc = 0;
out:
	if (rc < 0)
		listen_fds_close(out);
	free(names);
	unset_listen_env();
	return rc;
}

int listen_fds_use(int *passed, const char *passed_path, const char *what,
		   const char *config_path, int *fd, char **path)
{
	char *p;

	if (*passed < 0)
		return 0;
	p = strdup(passed_path);
	if (p == NULL)
		return -ENOMEM;
	*fd = *passed;
	*passed = -1;
	*path = p;
	broker_log("using the %s socket systemd passed: %s", what, passed_path);
	/* custody and the tools find the socket through the config. */
	if (strcmp(passed_path, config_path) != 0)
		broker_log("the %s socket systemd passed is %s but the config says %s: clients "
			   "that read the config will not find it; make the two paths the same",
			   what, passed_path, config_path);
	return 1;
}

void listen_fds_close(struct listen_fds *fds)
{
	if (fds->tool_fd >= 0)
		close(fds->tool_fd);
	if (fds->admin_fd >= 0)
		close(fds->admin_fd);
	fds->tool_fd = fds->admin_fd = -1;
}
