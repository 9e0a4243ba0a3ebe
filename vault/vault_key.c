/* vault_key.c — where the master key comes from: a key file or a passphrase
 * (Argon2id), both held to sshd's rules for private key files. */
#include "vault_private.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define KEY_FILE_MAX 1024
#define PASSPHRASE_MAX 4096
#define KDF_CONTEXT "custodyv"

int vault_key_path_resolve(const char *path, char **out)
{
	const char *creds = getenv("CREDENTIALS_DIRECTORY");
	char *p;

	/* systemd credentials: a relative name is looked up there first. */
	if (path[0] != '/' && creds != NULL && creds[0] != '\0') {
		p = util_path_join(creds, path);
		if (p == NULL)
			return -ENOMEM;
		if (access(p, F_OK) == 0) {
			*out = p;
			return 0;
		}
		free(p);
	}
	p = strdup(path);
	if (p == NULL)
		return -ENOMEM;
	*out = p;
	return 0;
}

int vault_key_rekey_paths(const char *key_file, char **kf_out, char **pending_out)
{
	char *kf = NULL, *real, *pending = NULL;
	int rc;

	rc = vault_key_path_resolve(key_file, &kf);
	if (rc < 0)
		return rc;
	/* a rekey replaces the file a symlink points to, not the link */
	real = realpath(kf, NULL);
	if (real != NULL) {
		free(kf);
		kf = real;
	}
	if (asprintf(&pending, "%s%s", kf, VAULT_KEY_REKEY_SUFFIX) < 0) {
		free(kf);
		return -ENOMEM;
	}
	*kf_out = kf;
	*pending_out = pending;
	return 0;
}

/* Is path a file systemd placed in this service's $CREDENTIALS_DIRECTORY?
 * systemd makes that directory private to the service and hands each
 * credential to the service's user either by chown or, on newer systemd
 * and on a file system with ACLs, as a root-owned file with a read ACL
 * for the user (which shows in the mode as group bits, the ACL mask). */
static bool in_credentials_dir(const char *path)
{
	const char *creds = getenv("CREDENTIALS_DIRECTORY");
	size_t n;

	if (creds == NULL || creds[0] != '/')
		return false;
	n = strlen(creds);
	while (n > 1 && creds[n - 1] == '/')
		n--;
	/* directly inside it: no sub-directory, no ".." */
	return strncmp(path, creds, n) == 0 && path[n] == '/' && path[n + 1] != '\0' &&
	       strchr(path + n + 1, '/') == NULL && strcmp(path + n + 1, "..") != 0 &&
	       strcmp(path + n + 1, ".") != 0;
}

/* Read a secret file into sodium_malloc memory after checking that only its
 * owner (us) can read it; in $CREDENTIALS_DIRECTORY, also a root-owned file
 * readable through an ACL (as systemd writes credentials), but never one
 * that others may read. */
static int secret_file_read(const char *path, const char *what, size_t max, char **out,
			    size_t *len, struct cerr *err)
{
	struct stat st;
	char *buf = NULL;
	size_t got = 0;
	bool creds;
	int fd, rc;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		rc = -errno;
		return cerr_set(err, rc, "cannot open %s %s: %s", what, path, strerror(-rc));
	}
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		cerr_set(err, rc, "cannot stat %s %s: %s", what, path, strerror(-rc));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = cerr_set(err, -EACCES, "%s %s is not a regular file", what, path);
		goto out;
	}
	creds = in_credentials_dir(path);
	if (st.st_uid != geteuid() && !(creds && st.st_uid == 0)) {
		rc = cerr_set(err, -EACCES,
			      "%s %s is owned by uid %u, not by this process's uid %u; run: chown %u %s",
			      what, path, (unsigned)st.st_uid, (unsigned)geteuid(),
			      (unsigned)geteuid(), path);
		goto out;
	}
	if ((st.st_mode & (creds ? 007 : 077)) != 0) {
		rc = cerr_set(err, -EACCES,
			      "%s %s is readable by group/others (mode %04o); run: chmod 600 %s",
			      what, path, (unsigned)(st.st_mode & 07777), path);
		goto out;
	}
	buf = sodium_malloc(max + 1);
	if (buf == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	for (;;) {
		ssize_t r = read(fd, buf + got, max + 1 - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = -errno;
			cerr_set(err, rc, "cannot read %s %s: %s", what, path, strerror(-rc));
			goto out;
		}
		if (r == 0)
			break;
		got += (size_t)r;
		if (got > max) {
			rc = cerr_set(err, -EFBIG, "%s %s is too large (more than %zu bytes)",
				      what, path, max);
			goto out;
		}
	}
	buf[got] = '\0';
	*out = buf;
	*len = got;
	buf = NULL;
	rc = 0;
out:
	if (buf != NULL)
		sodium_free(buf); /* sodium_free wipes */
	close(fd);
	return rc;
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

int vault_key_file_load(const char *path, uint8_t key[static 32], struct cerr *err)
{
	char *buf = NULL;
	size_t len = 0, start, end, bin_len = 0;
	const char *b64_end = NULL;
	uint8_t *tmp = NULL;
	int rc;

	rc = secret_file_read(path, "key file", KEY_FILE_MAX, &buf, &len, err);
	if (rc < 0)
		return rc;
	tmp = sodium_malloc(KEY_FILE_MAX);
	if (tmp == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	/* 32 bytes exactly: raw. Base64 of 32 bytes is 43-44 characters, so the
	 * two forms cannot be confused. */
	if (len == VAULT_KEY_LEN) {
		memcpy(key, buf, VAULT_KEY_LEN);
		rc = 0;
		goto out;
	}
	start = 0;
	end = len;
	while (start < end && is_space(buf[start]))
		start++;
	while (end > start && is_space(buf[end - 1]))
		end--;
	if (end > start &&
	    sodium_base642bin(tmp, KEY_FILE_MAX, buf + start, end - start, NULL, &bin_len,
			      &b64_end, sodium_base64_VARIANT_ORIGINAL) == 0 &&
	    b64_end == buf + end && bin_len == VAULT_KEY_LEN) {
		memcpy(key, tmp, VAULT_KEY_LEN);
		rc = 0;
		goto out;
	}
	rc = cerr_set(err, -EINVAL,
		      "key file %s holds neither 32 raw bytes nor the base64 of 32 bytes", path);
out:
	if (tmp != NULL)
		sodium_free(tmp);
	sodium_free(buf);
	return rc;
}

int vault_passphrase_load(const char *path, char **pass, size_t *len, struct cerr *err)
{
	char *buf = NULL;
	size_t n = 0;
	int rc;

	rc = secret_file_read(path, "passphrase file", PASSPHRASE_MAX, &buf, &n, err);
	if (rc < 0)
		return rc;
	/* The line ending an editor or `echo` adds is not part of the passphrase. */
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
	if (n == 0) {
		sodium_free(buf);
		return cerr_set(err, -EINVAL, "passphrase file %s is empty", path);
	}
	*pass = buf;
	*len = n;
	return 0;
}

int vault_master_from_source(const struct vault_key_source *src, const struct vault_header *h,
			     uint8_t master[static 32], struct cerr *err)
{
	const char *given = src->key_file != NULL ? src->key_file : src->passphrase_file;
	char *path = NULL, *pass = NULL;
	size_t plen = 0;
	int rc;

	if (given == NULL || given[0] == '\0')
		return cerr_set(err, -EINVAL, "no key_file or passphrase_file configured");
	rc = vault_key_path_resolve(given, &path);
	if (rc < 0)
		return cerr_set(err, rc, "out of memory");
	if (src->key_file != NULL) {
		if (h->kdf != VAULT_KDF_KEYFILE) {
			rc = cerr_set(err, -EKEYREJECTED,
				      "wrong master key: this vault is protected by a passphrase; configure passphrase_file instead of key_file");
			goto out;
		}
		rc = vault_key_file_load(path, master, err);
		goto out;
	}
	if (h->kdf != VAULT_KDF_ARGON2ID) {
		rc = cerr_set(err, -EKEYREJECTED,
			      "wrong master key: this vault is protected by a key file; configure key_file instead of passphrase_file");
		goto out;
	}
	rc = vault_passphrase_load(path, &pass, &plen, err);
	if (rc < 0)
		goto out;
	if (crypto_pwhash(master, VAULT_KEY_LEN, pass, plen, h->salt, h->opslimit,
			  (size_t)h->memlimit, (int)h->alg) != 0) {
		rc = cerr_set(err, -ENOMEM, "key derivation (Argon2id) failed: out of memory");
		goto out;
	}
	rc = 0;
out:
	if (pass != NULL)
		sodium_free(pass);
	free(path);
	return rc;
}

void vault_subkeys_derive(const uint8_t master[static 32], struct vault_subkeys *sk)
{
	crypto_kdf_derive_from_key(sk->rec, sizeof(sk->rec), 1, KDF_CONTEXT, master);
	crypto_kdf_derive_from_key(sk->mac, sizeof(sk->mac), 2, KDF_CONTEXT, master);
	crypto_kdf_derive_from_key(sk->kcv, sizeof(sk->kcv), 3, KDF_CONTEXT, master);
}

static int fsync_parent(const char *path)
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
	if (fd < 0 || fsync(fd) < 0)
		rc = -errno;
	if (fd >= 0)
		close(fd);
	free(dup);
	return rc;
}

/* Write key, base64 and newline ended, to path (mode 0600, never over an
 * existing file: the temp file is linked into place). When owner_like is
 * set, the new file takes that file's owner and group (rekey run as root
 * must not hand the broker a key file it will refuse). */
int vault_key_file_write_new(const char *path, const char *owner_like, uint8_t key[static 32],
			     struct cerr *err)
{
	char tmp[PATH_MAX];
	char b64[sodium_base64_ENCODED_LEN(VAULT_KEY_LEN, sodium_base64_VARIANT_ORIGINAL) + 1];
	struct stat st;
	size_t n;
	int fd = -1, rc;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof(tmp))
		return cerr_set(err, -ENAMETOOLONG, "key file path %s is too long", path);
	sodium_bin2base64(b64, sizeof(b64) - 1, key, VAULT_KEY_LEN, sodium_base64_VARIANT_ORIGINAL);
	n = strlen(b64);
	b64[n++] = '\n';
	b64[n] = '\0';
	unlink(tmp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		rc = -errno;
		cerr_set(err, rc, "cannot create key file %s: %s", tmp, strerror(-rc));
		goto out;
	}
	if (fchmod(fd, 0600) < 0 ||
	    (owner_like != NULL &&
	     (stat(owner_like, &st) < 0 || fchown(fd, st.st_uid, st.st_gid) < 0))) {
		rc = -errno;
		cerr_set(err, rc, "cannot set owner/mode of key file %s: %s", tmp, strerror(-rc));
		goto out;
	}
	if (write(fd, b64, n) != (ssize_t)n || fsync(fd) < 0) {
		rc = errno != 0 ? -errno : -EIO;
		cerr_set(err, rc, "cannot write key file %s: %s", tmp, strerror(-rc));
		goto out;
	}
	close(fd);
	fd = -1;
	if (owner_like != NULL) {
		if (rename(tmp, path) < 0) {
			rc = -errno;
			cerr_set(err, rc, "cannot rename %s to %s: %s", tmp, path, strerror(-rc));
			goto out;
		}
	} else if (link(tmp, path) < 0) {
		rc = -errno;
		if (rc == -EEXIST)
			cerr_set(err, rc, "key file %s already exists; not overwriting it", path);
		else
			cerr_set(err, rc, "cannot create key file %s: %s", path, strerror(-rc));
		goto out;
	}
	rc = fsync_parent(path);
	if (rc < 0)
		cerr_set(err, rc, "cannot sync the directory of %s: %s", path, strerror(-rc));
out:
	sodium_memzero(b64, sizeof(b64));
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	return rc;
}

int vault_key_file_create(const char *path, struct cerr *err)
{
	uint8_t *key;
	int rc;

	if (sodium_init() < 0)
		return cerr_set(err, -EIO, "libsodium failed to initialise");
	key = sodium_malloc(VAULT_KEY_LEN);
	if (key == NULL)
		return cerr_set(err, -ENOMEM, "out of memory");
	randombytes_buf(key, VAULT_KEY_LEN);
	rc = vault_key_file_write_new(path, NULL, key, err);
	sodium_free(key);
	return rc;
}
