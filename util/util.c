/* util.c — time, files, hex, UUIDs and UTF-8 checks shared by custody. */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

int cerr_set(struct cerr *e, int rc, const char *fmt, ...)
{
	va_list ap;

	if (e == NULL)
		return rc;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	va_end(ap);
	return rc;
}

int64_t util_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t util_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* v as exactly n decimal digits at out (v < 10^n) */
static char *put_digits(char *out, long v, int n)
{
	for (int i = n - 1; i >= 0; i--) {
		out[i] = (char)('0' + v % 10);
		v /= 10;
	}
	return out + n;
}

int util_time_format(int64_t unix_us, bool micro, char out[static UTIL_TIME_LEN])
{
	time_t secs;
	int64_t frac;
	struct tm tm;
	char *o = out;

	secs = (time_t)(unix_us / 1000000);
	frac = unix_us % 1000000;
	if (frac < 0) {
		frac += 1000000;
		secs -= 1;
	}
	if (gmtime_r(&secs, &tm) == NULL || tm.tm_year + 1900 > 9999 || tm.tm_year + 1900 < 0)
		return -EINVAL;
	/* YYYY-MM-DDTHH:MM:SS[.ffffff]Z by hand: snprintf was most of the
	 * cost, and every token record and reply carries one */
	o = put_digits(o, tm.tm_year + 1900, 4);
	*o++ = '-';
	o = put_digits(o, tm.tm_mon + 1, 2);
	*o++ = '-';
	o = put_digits(o, tm.tm_mday, 2);
	*o++ = 'T';
	o = put_digits(o, tm.tm_hour, 2);
	*o++ = ':';
	o = put_digits(o, tm.tm_min, 2);
	*o++ = ':';
	o = put_digits(o, tm.tm_sec, 2);
	if (micro) {
		*o++ = '.';
		o = put_digits(o, (long)frac, 6);
	}
	*o++ = 'Z';
	*o = '\0';
	return 0;
}

static int digits(const char **p, int n, int *out)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if ((*p)[i] < '0' || (*p)[i] > '9')
			return -EINVAL;
		v = v * 10 + ((*p)[i] - '0');
	}
	*p += n;
	*out = v;
	return 0;
}

static int64_t days_from_civil(int y, int m, int d)
{
	/* Howard Hinnant's algorithm: days since 1970-01-01, proleptic Gregorian. */
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

int util_time_parse(const char *s, int64_t *unix_us)
{
	static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	int y, mo, d, h, mi, sec, oh = 0, om = 0, sign = 0;
	int64_t frac = 0;
	const char *p = s;

	if (s == NULL)
		return -EINVAL;
	if (digits(&p, 4, &y) || *p++ != '-' || digits(&p, 2, &mo) || *p++ != '-' ||
	    digits(&p, 2, &d) || (*p != 'T' && *p != 't'))
		return -EINVAL;
	p++;
	if (digits(&p, 2, &h) || *p++ != ':' || digits(&p, 2, &mi) || *p++ != ':' ||
	    digits(&p, 2, &sec))
		return -EINVAL;
	if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 || sec > 60)
		return -EINVAL;
	if (mo == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
		return -EINVAL;
	if (*p == '.') {
		int n = 0;

		p++;
		while (*p >= '0' && *p <= '9') {
			if (n < 6)
				frac = frac * 10 + (*p - '0');
			n++;
			p++;
		}
		if (n == 0 || n > 9)
			return -EINVAL;
		for (int i = n; i < 6; i++)
			frac *= 10;
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		sign = *p == '-' ? -1 : 1;
		p++;
		if (digits(&p, 2, &oh) || *p++ != ':' || digits(&p, 2, &om) || oh > 23 || om > 59)
			return -EINVAL;
	} else {
		return -EINVAL;
	}
	if (*p != '\0')
		return -EINVAL;
	if (sec == 60)
		sec = 59; /* leap second: clamp, as most systems do */
	int64_t t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec;
	t -= (int64_t)sign * (oh * 3600 + om * 60);
	*unix_us = t * 1000000 + frac;
	return 0;
}

void util_hex(const uint8_t *in, size_t n, char *out)
{
	static const char hx[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hx[in[i] >> 4];
		out[2 * i + 1] = hx[in[i] & 15];
	}
	out[2 * n] = '\0';
}

/* Move the first used bytes of *buf into a new buffer of ncap bytes and
 * wipe the old one: what is read may be a secret. */
static int regrow_wiped(char **buf, size_t *cap, size_t used, size_t ncap)
{
	char *nb = malloc(ncap);

	if (nb == NULL)
		return -ENOMEM;
	memcpy(nb, *buf, used);
	sodium_memzero(*buf, *cap);
	free(*buf);
	*buf = nb;
	*cap = ncap;
	return 0;
}

int util_read_file(const char *path, size_t max, char **out, size_t *len)
{
	struct stat st;
	char *buf = NULL;
	size_t got = 0, cap = 0;
	int fd, rc;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		goto out;
	}
	if (S_ISDIR(st.st_mode)) {
		rc = -EISDIR;
		goto out;
	}
	/* Size the buffer from the file, not from max: callers pass generous
	 * bounds (exports), and the file may still grow while we read. */
	cap = S_ISREG(st.st_mode) && (uint64_t)st.st_size < max ? (size_t)st.st_size + 1 : max + 1;
	if (cap < 4096 && cap < max + 1)
		cap = max + 1 < 4096 ? max + 1 : 4096;
	buf = malloc(cap);
	if (buf == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	for (;;) {
		ssize_t r;

		if (got == cap) {
			size_t ncap = cap * 2 > max + 1 || cap * 2 < cap ? max + 1 : cap * 2;

			if (ncap == cap) {
				rc = -EFBIG;
				goto out;
			}
			rc = regrow_wiped(&buf, &cap, got, ncap);
			if (rc < 0)
				goto out;
		}
		r = read(fd, buf + got, cap - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = -errno;
			goto out;
		}
		if (r == 0)
			break;
		got += (size_t)r;
		if (got > max) {
			rc = -EFBIG;
			goto out;
		}
	}
	/* exactly filled: room for the NUL */
	if (got == cap) {
		rc = regrow_wiped(&buf, &cap, got, got + 1);
		if (rc < 0)
			goto out;
	}
	buf[got] = '\0';
	*out = buf;
	*len = got;
	buf = NULL;
	rc = 0;
out:
	if (buf != NULL) {
		sodium_memzero(buf, cap);
		free(buf);
	}
	close(fd);
	return rc;
}

static int fsync_dir_of(const char *path)
{
	char *dup = strdup(path), *slash;
	int fd, rc = 0;

	if (dup == NULL)
		return -ENOMEM;
	slash = strrchr(dup, '/');
	if (slash == NULL)
		strcpy(dup, ".");
	else if (slash == dup)
		dup[1] = '\0';
	else
		*slash = '\0';
	fd = open(dup, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		rc = -errno;
	else if (fsync(fd) < 0)
		rc = -errno;
	if (fd >= 0)
		close(fd);
	free(dup);
	return rc;
}

int util_tmp_create(const char *path, mode_t mode, char tmp[static PATH_MAX], int *fd_out)
{
	for (int tries = 0; tries < 16; tries++) {
		char rnd[17];
		uint8_t b[8];
		int fd;

		/* random and created exclusively, never through a symlink: another
		 * user who can write the directory cannot guess the name, make us
		 * write through a link, or share the file with us */
		randombytes_buf(b, sizeof(b));
		util_hex(b, sizeof(b), rnd);
		if (snprintf(tmp, PATH_MAX, "%s.tmp.%s", path, rnd) >= PATH_MAX)
			return -ENAMETOOLONG;
		fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
		if (fd < 0 && errno == EEXIST)
			continue;
		if (fd < 0)
			return -errno;
		if (fchmod(fd, mode) < 0) {
			int rc = -errno;

			close(fd);
			unlink(tmp);
			return rc;
		}
		*fd_out = fd;
		return 0;
	}
	return -EEXIST;
}

int util_tmp_commit(const char *tmp, const char *path, int fd)
{
	int rc = 0;

	if (fsync(fd) < 0)
		rc = -errno;
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && rename(tmp, path) < 0)
		rc = -errno;
	if (rc < 0) {
		unlink(tmp);
		return rc;
	}
	return fsync_dir_of(path);
}

int util_write_file(const char *path, const void *buf, size_t len, mode_t mode)
{
	char tmp[PATH_MAX];
	const char *p = buf;
	int fd, rc;

	rc = util_tmp_create(path, mode, tmp, &fd);
	if (rc < 0)
		return rc;
	while (len > 0) {
		ssize_t w = write(fd, p, len);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			rc = -errno;
			close(fd);
			unlink(tmp);
			return rc;
		}
		p += w;
		len -= (size_t)w;
	}
	return util_tmp_commit(tmp, path, fd);
}

int util_mkdir_p(const char *path, mode_t mode)
{
	char buf[PATH_MAX];
	size_t n = strlen(path);

	if (n == 0 || n >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, path, n + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, mode) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, mode) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

void util_uuid4(char out[static 37])
{
	uint8_t b[16];

	randombytes_buf(b, sizeof(b));
	b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
	b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
	snprintf(out, 37,
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11],
		 b[12], b[13], b[14], b[15]);
}

bool util_utf8_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + len;

	while (p < end) {
		unsigned c = *p;
		size_t n;
		unsigned cp;

		if (c == 0)
			return false;
		if (c < 0x80) {
			p++;
			continue;
		} else if ((c & 0xe0) == 0xc0) {
			n = 1;
			cp = c & 0x1f;
		} else if ((c & 0xf0) == 0xe0) {
			n = 2;
			cp = c & 0x0f;
		} else if ((c & 0xf8) == 0xf0) {
			n = 3;
			cp = c & 0x07;
		} else {
			return false;
		}
		if ((size_t)(end - p) <= n)
			return false;
		for (size_t i = 1; i <= n; i++) {
			if ((p[i] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (p[i] & 0x3f);
		}
		/* overlong forms, surrogates, beyond U+10FFFF */
		if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
		    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
			return false;
		p += n + 1;
	}
	return true;
}

char *util_path_join(const char *dir, const char *path)
{
	char *out;

	if (path == NULL)
		return NULL;
	if (path[0] == '/' || dir == NULL || dir[0] == '\0')
		return strdup(path);
	if (asprintf(&out, "%s/%s", dir, path) < 0)
		return NULL;
	return out;
}

int util_parse_dec(const char *s, size_t len, uint64_t *out)
{
	uint64_t v = 0;

	if (len == 0 || len > 20 || (len > 1 && s[0] == '0'))
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		if (v > (UINT64_MAX - (uint64_t)(s[i] - '0')) / 10)
			return -EINVAL;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	*out = v;
	return 0;
}
