/* util.h — small helpers shared by every custody library.
 *
 * Error currency everywhere in custody: functions return 0 on success or a
 * negative errno. Where a person must read why, the function also fills a
 * struct cerr with one line that says what went wrong and what to do. The
 * few errno values with a custody-specific meaning:
 *
 *   -EBADMSG       authentication failed: tampered data, forged signature
 *   -EKEYREJECTED  wrong master key
 *   -EINVAL        bad input; the message names the field
 *   -EACCES        unsafe permissions or ownership on a file
 *   -EBUSY         another process holds the state directory
 *   -ENOENT        no such object (file, grant, tenant)
 *
 * No message may ever contain a secret or a token.
 */
#ifndef CUSTODY_UTIL_H
#define CUSTODY_UTIL_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define CERR_MAX 512

struct cerr {
	char msg[CERR_MAX];
};

/* Fill e (if not NULL) with a formatted message; returns rc so callers can
 * write `return cerr_set(err, -EINVAL, "...")`. */
int cerr_set(struct cerr *e, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Wall-clock time, microseconds since the Unix epoch. */
int64_t util_now_us(void);
/* Monotonic time in milliseconds. */
int64_t util_mono_ms(void);

#define UTIL_TIME_LEN 32
/* Format unix microseconds as RFC 3339 UTC: "2026-11-29T04:00:00Z", or with
 * `micro` "2026-11-29T04:00:00.123456Z". Returns 0 or -EINVAL. */
int util_time_format(int64_t unix_us, bool micro, char out[static UTIL_TIME_LEN]);
/* Parse an RFC 3339 date-time ("Z" or "+hh:mm" offset, optional fraction of
 * up to 9 digits) into unix microseconds. Returns 0 or -EINVAL. */
int util_time_parse(const char *s, int64_t *unix_us);

/* A decimal as C2SP notes write sizes: digits only, no sign, no leading
 * zero (but "0"), at most UINT64_MAX. 0, or -EINVAL. */
int util_parse_dec(const char *s, size_t len, uint64_t *out);

/* Lowercase hex of n bytes into out (2n+1 bytes, NUL-terminated). */
void util_hex(const uint8_t *in, size_t n, char *out);

/* Read a whole regular file of at most max bytes into a malloc'd buffer,
 * NUL-terminated (len excludes the NUL). -EFBIG when larger than max. */
int util_read_file(const char *path, size_t max, char **out, size_t *len);
/* Write a file atomically: temp file in the same directory, fsync, rename,
 * fsync the directory. */
int util_write_file(const char *path, const void *buf, size_t len, mode_t mode);
/* The same in two steps, for a file written as a stream: create
 * "<path>.tmp.<random>" (O_EXCL | O_NOFOLLOW, mode) into tmp and *fd; then
 * util_tmp_commit fsyncs, closes fd and renames tmp over path (replacing a
 * symlink there, never following it), or removes tmp on failure. To give
 * up, close fd and unlink tmp. */
int util_tmp_create(const char *path, mode_t mode, char tmp[static PATH_MAX], int *fd_out);
int util_tmp_commit(const char *tmp, const char *path, int fd);
/* Create a directory (and missing parents) with mode; existing is fine. */
int util_mkdir_p(const char *path, mode_t mode);

/* A random RFC 4122 version 4 UUID, lowercase, 36 chars + NUL. */
void util_uuid4(char out[static 37]);

/* True when s (len bytes) is valid UTF-8 without NUL bytes. */
bool util_utf8_valid(const char *s, size_t len);

/* Join dir and a relative path; an absolute path is returned as is.
 * Returns a malloc'd string or NULL. */
char *util_path_join(const char *dir, const char *path);

/* sd_notify without libsystemd (notify.c): one datagram with state
 * ("READY=1", "STOPPING=1", "STATUS=...") to $NOTIFY_SOCKET; nothing
 * happens when it is unset. */
void util_notify(const char *state);

#endif
