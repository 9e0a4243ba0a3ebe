/* note.c — C2SP signed-note checkpoints and verifier keys. */
#include "note.h"
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#define EM_DASH "\xe2\x80\x94"
#define SIG_LEN (4 + crypto_sign_BYTES)

void note_key_id(const char *name, const uint8_t pk[static 32], uint8_t id[static 4])
{
	crypto_hash_sha256_state st;
	uint8_t h[crypto_hash_sha256_BYTES];
	static const uint8_t sep[2] = {0x0a, 0x01};

	crypto_hash_sha256_init(&st);
	crypto_hash_sha256_update(&st, (const uint8_t *)name, strlen(name));
	crypto_hash_sha256_update(&st, sep, sizeof(sep));
	crypto_hash_sha256_update(&st, pk, 32);
	crypto_hash_sha256_final(&st, h);
	memcpy(id, h, 4);
}

bool note_name_valid(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n >= NOTE_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (name[i] <= 0x20 || name[i] >= 0x7f || name[i] == '+')
			return false;
	return true;
}

/* Decode base64 (standard, padded) of exactly want bytes. */
static int b64_exact(const char *s, size_t len, uint8_t *out, size_t want)
{
	uint8_t buf[128];
	size_t got = 0;
	const char *end = NULL;

	if (want > sizeof(buf))
		return -EINVAL;
	if (sodium_base642bin(buf, sizeof(buf), s, len, NULL, &got, &end,
			      sodium_base64_VARIANT_ORIGINAL) != 0 ||
	    end != s + len || got != want)
		return -EINVAL;
	memcpy(out, buf, want);
	return 0;
}

int note_vkey_parse(const char *vkey, struct note_key *k, struct cerr *err)
{
	struct note_key nk = {0};
	const char *p1, *p2;
	uint8_t raw[33], id[4];
	size_t nlen;

	if (vkey == NULL)
		return cerr_set(err, -EINVAL, "no verifier key given");
	p1 = strchr(vkey, '+');
	p2 = p1 ? strchr(p1 + 1, '+') : NULL;
	if (p1 == NULL || p2 == NULL)
		return cerr_set(err, -EINVAL,
				"verifier key: expected <name>+<hex key id>+<base64 key>");
	nlen = (size_t)(p1 - vkey);
	if (nlen == 0 || nlen >= sizeof(nk.name))
		return cerr_set(err, -EINVAL, "verifier key: bad key name");
	memcpy(nk.name, vkey, nlen);
	if (!note_name_valid(nk.name))
		return cerr_set(err, -EINVAL, "verifier key: bad key name");
	if (p2 - p1 - 1 != 8 || sodium_hex2bin(nk.id, 4, p1 + 1, 8, NULL, NULL, NULL) != 0)
		return cerr_set(err, -EINVAL, "verifier key: key id is not 8 hex digits");
	if (b64_exact(p2 + 1, strlen(p2 + 1), raw, sizeof(raw)) < 0 || raw[0] != 0x01)
		return cerr_set(err, -EINVAL,
				"verifier key: key is not base64 of an Ed25519 key (0x01 || 32 bytes)");
	memcpy(nk.pk, raw + 1, 32);
	note_key_id(nk.name, nk.pk, id);
	if (memcmp(id, nk.id, 4) != 0)
		return cerr_set(err, -EINVAL, "verifier key: key id does not match name and key");
	*k = nk;
	return 0;
}

int note_checkpoint_sign(const struct audit_signer *s, uint64_t size, const uint8_t root[static 32],
			 char **out)
{
	char root64[sodium_base64_ENCODED_LEN(32, sodium_base64_VARIANT_ORIGINAL)];
	char sig64[sodium_base64_ENCODED_LEN(SIG_LEN, sodium_base64_VARIANT_ORIGINAL)];
	uint8_t sig[SIG_LEN];
	char *body = NULL, *note = NULL;
	int n, rc;

	if (s == NULL || s->sign == NULL || s->origin == NULL || !note_name_valid(s->origin))
		return -EINVAL;
	sodium_bin2base64(root64, sizeof(root64), root, 32, sodium_base64_VARIANT_ORIGINAL);
	n = asprintf(&body, "%s\n%" PRIu64 "\n%s\n", s->origin, size, root64);
	if (n < 0)
		return -ENOMEM;
	note_key_id(s->origin, s->public_key, sig);
	rc = s->sign(s->ctx, (const uint8_t *)body, (size_t)n, sig + 4);
	if (rc < 0)
		goto out;
	/* never store a signature the public key does not verify */
	if (crypto_sign_verify_detached(sig + 4, (const uint8_t *)body, (size_t)n,
					s->public_key) != 0) {
		rc = -EKEYREJECTED;
		goto out;
	}
	sodium_bin2base64(sig64, sizeof(sig64), sig, sizeof(sig), sodium_base64_VARIANT_ORIGINAL);
	if (asprintf(&note, "%s\n" EM_DASH " %s %s\n", body, s->origin, sig64) < 0) {
		rc = -ENOMEM;
		goto out;
	}
	*out = note;
	rc = 0;
out:
	free(body);
	return rc;
}

int note_checkpoint_verify(const char *note, const struct note_key *k, struct note_checkpoint *out,
			   struct cerr *err)
{
	struct note_checkpoint cp = {0};
	const char *sep, *l1, *l2, *p;
	size_t body_len, nlen = k ? strlen(k->name) : 0;
	bool verified = false;

	if (note == NULL)
		return cerr_set(err, -EBADMSG, "no checkpoint");
	for (p = note; *p; p++)
		if ((unsigned char)*p < 0x20 && *p != '\n')
			return cerr_set(err, -EBADMSG, "control character in checkpoint");
	if (!util_utf8_valid(note, strlen(note)))
		return cerr_set(err, -EBADMSG, "checkpoint is not UTF-8");
	sep = strstr(note, "\n\n");
	if (sep == NULL)
		return cerr_set(err, -EBADMSG, "checkpoint has no signature block");
	body_len = (size_t)(sep - note) + 1;
	/* line 1: origin, which must be the key's name */
	l1 = memchr(note, '\n', body_len);
	if (l1 == NULL || l1 == note)
		return cerr_set(err, -EBADMSG, "checkpoint origin line is malformed");
	if (k != NULL && ((size_t)(l1 - note) != nlen || memcmp(note, k->name, nlen) != 0))
		return cerr_set(err, -EBADMSG, "checkpoint origin is not %s", k->name);
	l2 = memchr(l1 + 1, '\n', body_len - (size_t)(l1 + 1 - note));
	if (l2 == NULL || util_parse_dec(l1 + 1, (size_t)(l2 - l1 - 1), &cp.size) < 0)
		return cerr_set(err, -EBADMSG, "checkpoint size line is malformed");
	p = memchr(l2 + 1, '\n', body_len - (size_t)(l2 + 1 - note));
	if (p == NULL || p != note + body_len - 1 ||
	    b64_exact(l2 + 1, (size_t)(p - l2 - 1), cp.root, 32) < 0)
		return cerr_set(err, -EBADMSG, "checkpoint root line is malformed");
	/* signature lines */
	p = sep + 2;
	if (*p == '\0')
		return cerr_set(err, -EBADMSG, "checkpoint has no signature");
	while (*p) {
		const char *eol = strchr(p, '\n'), *name, *sp;
		uint8_t sig[SIG_LEN];

		if (eol == NULL || strncmp(p, EM_DASH " ", 4) != 0)
			return cerr_set(err, -EBADMSG, "checkpoint signature line is malformed");
		name = p + 4;
		sp = memchr(name, ' ', (size_t)(eol - name));
		if (sp == NULL || sp == name)
			return cerr_set(err, -EBADMSG, "checkpoint signature line is malformed");
		if (k != NULL && (size_t)(sp - name) == nlen && memcmp(name, k->name, nlen) == 0) {
			uint8_t raw[128];
			size_t got = 0;
			const char *end = NULL;

			if (sodium_base642bin(raw, sizeof(raw), sp + 1, (size_t)(eol - sp - 1), NULL,
					      &got, &end, sodium_base64_VARIANT_ORIGINAL) != 0 ||
			    end != eol || got < 4)
				return cerr_set(err, -EBADMSG, "checkpoint signature is not base64");
			/* same name, other key id: another key, ignored */
			if (memcmp(raw, k->id, 4) == 0) {
				if (got != SIG_LEN)
					return cerr_set(err, -EBADMSG,
							"checkpoint signature has the wrong length");
				memcpy(sig, raw, SIG_LEN);
				if (crypto_sign_verify_detached(sig + 4, (const uint8_t *)note,
								body_len, k->pk) != 0)
					return cerr_set(err, -EBADMSG,
							"signature does not verify");
				verified = true;
			}
		}
		p = eol + 1;
	}
	if (k != NULL && !verified)
		return cerr_set(err, -EBADMSG, "no signature by %s", k->name);
	*out = cp;
	return 0;
}

/* The key id of a signature line "— name base64(id || sig)". */
static bool sig_line_id(const char *p, const char *eol, const char **name, size_t *nlen,
			uint8_t id[static 4])
{
	uint8_t raw[128];
	size_t got = 0;
	const char *sp, *end = NULL;

	if (strncmp(p, EM_DASH " ", 4) != 0)
		return false;
	*name = p + 4;
	sp = memchr(*name, ' ', (size_t)(eol - *name));
	if (sp == NULL || sp == *name)
		return false;
	*nlen = (size_t)(sp - *name);
	if (sodium_base642bin(raw, sizeof(raw), sp + 1, (size_t)(eol - sp - 1), NULL, &got, &end,
			      sodium_base64_VARIANT_ORIGINAL) != 0 ||
	    end != eol || got < 4)
		return false;
	memcpy(id, raw, 4);
	return true;
}

int note_signer(const char *note, char origin[static NOTE_NAME_MAX], uint8_t id[static 4],
		bool *has_id)
{
	const char *l1, *sep, *p;
	size_t olen;

	*has_id = false;
	origin[0] = '\0';
	if (note == NULL || (sep = strstr(note, "\n\n")) == NULL)
		return -EBADMSG;
	l1 = strchr(note, '\n');
	olen = (size_t)(l1 - note);
	if (olen == 0 || olen >= NOTE_NAME_MAX)
		return -EBADMSG;
	memcpy(origin, note, olen);
	origin[olen] = '\0';
	for (p = sep + 2; *p;) {
		const char *eol = strchr(p, '\n'), *name;
		size_t nlen;

		if (eol == NULL)
			break;
		if (sig_line_id(p, eol, &name, &nlen, id) && nlen == olen &&
		    memcmp(name, origin, olen) == 0) {
			*has_id = true;
			return 0;
		}
		p = eol + 1;
	}
	return 0;
}

bool note_names_key(const char *note, const struct note_key *k)
{
	size_t nlen = strlen(k->name);
	const char *sep, *p;

	if (note == NULL || strncmp(note, k->name, nlen) != 0 || note[nlen] != '\n' ||
	    (sep = strstr(note, "\n\n")) == NULL)
		return false;
	for (p = sep + 2; *p;) {
		const char *eol = strchr(p, '\n'), *name;
		size_t len;
		uint8_t id[4];

		if (eol == NULL)
			break;
		if (sig_line_id(p, eol, &name, &len, id) && len == nlen &&
		    memcmp(name, k->name, nlen) == 0 && memcmp(id, k->id, 4) == 0)
			return true;
		p = eol + 1;
	}
	return false;
}

int note_vkey_format(const char *name, const uint8_t pk[static 32], char **out)
{
	char b64[sodium_base64_ENCODED_LEN(33, sodium_base64_VARIANT_ORIGINAL)];
	uint8_t raw[33], id[4];
	char *s = NULL;

	if (!note_name_valid(name))
		return -EINVAL;
	note_key_id(name, pk, id);
	raw[0] = 0x01;
	memcpy(raw + 1, pk, 32);
	sodium_bin2base64(b64, sizeof(b64), raw, sizeof(raw), sodium_base64_VARIANT_ORIGINAL);
	if (asprintf(&s, "%s+%02x%02x%02x%02x+%s", name, id[0], id[1], id[2], id[3], b64) < 0)
		return -ENOMEM;
	*out = s;
	return 0;
}

int audit_vkey(const char *origin, const uint8_t public_key[static 32], char **out)
{
	return note_vkey_format(origin, public_key, out);
}
