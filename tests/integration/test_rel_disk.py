#!/usr/bin/env python3
"""A full, read-only or vanished audit store (DESIGN §7 "fail closed"):
a token leaves only after its record is durable, so when the store cannot
write, token requests get audit_unavailable and no token; once it can write
again the broker recovers by itself, without a restart.

The state dir sits on a 4 MiB tmpfs this test mounts (and unmounts in a
finally). Cases:
  1. full disk: a filler file takes every free byte; requests go on until
     the store runs out of room (SQLite may still reuse WAL space for a
     while), then every request is audit_unavailable without a token; the
     filler is removed and tokens flow again, same pid; verify passes.
  2. read-only store at start: a tmpfs cannot be remounted read-only while
     SQLite holds a file open for writing (EBUSY), and root ignores chmod
     and chattr +i on an open descriptor, so the read-only case is tested at
     start: custodyd is stopped, the vault moves to a tmpfs of its own over
     state/vault (custodyd must lock it), the state tmpfs is remounted ro,
     and custodyd must then either refuse to start saying why or answer
     audit_unavailable; never a token without a record. Remounted rw, it
     starts and serves again.
  3. audit.db removed under a running broker: requests are refused with
     audit_unavailable (a record written to an unlinked file is lost to
     every auditor) and the log says why.
Exit 77 (meson: skipped) only when the tmpfs cannot be mounted.
"""

import errno
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import CUSTODY, Env, check, expect_error, wait_for  # noqa: E402


def mount_tmpfs(path, size="4m"):
    os.makedirs(path, exist_ok=True)
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0700" % size, "tmpfs", path],
                       capture_output=True, text=True)
    return p.returncode == 0, p.stderr.strip()


def umount(path):
    for _ in range(20):
        p = subprocess.run(["umount", path], capture_output=True, text=True)
        if p.returncode == 0 or "not mounted" in p.stderr:
            return
        time.sleep(0.2)
    subprocess.run(["umount", "-l", path], capture_output=True)


def fill(path):
    """Write zeros into path until the file system is full; returns bytes."""
    n = 0
    buf = b"\0" * 65536
    with open(path, "wb", buffering=0) as f:
        while True:
            try:
                w = f.write(buf)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                if len(buf) == 1:
                    break
                buf = buf[:len(buf) // 2]
                continue
            n += w
    return n


def verify(env, vkey):
    p = subprocess.run([CUSTODY, "--config", env.config_path, "audit", "verify",
                        "--db", env.audit_db, "--key", vkey],
                       capture_output=True, text=True, timeout=120)
    check(p.returncode == 0, "custody audit verify failed (exit %d)" % p.returncode,
          p.stdout[-1500:], p.stderr[-1500:])


def main():
    env = Env("custody-rel-disk")
    mnt = env.config["state_dir"]
    ok, why = mount_tmpfs(mnt)
    if not ok:
        print("SKIP: cannot mount a tmpfs at %s (%s): this test needs root and mount(2)"
              % (mnt, why))
        env.close()
        sys.exit(77)
    mounted = True
    vault_mounted = []
    try:
        env.init_vault()
        env.start_idp()
        env.config["audit"]["checkpoint_every"] = 100000
        env.config["audit"]["checkpoint_interval_s"] = 3600
        env.start_broker()
        pid = env.pid()
        with env.tool() as c:
            vkey = c.request({"op": "keys"})["audit_verifier_key"]
        g, tid = env.new_tenant(name="disk")
        env.import_grant(g)
        r = env.token("disk")
        check(r.get("ok") is True, "first token failed", r)

        # ---- 1. full disk
        log_before = len(env.log_text())
        filler = os.path.join(mnt, "filler")
        filled = fill(filler)
        issued_while_full = 0
        refused = None
        c = env.tool(timeout=30)
        try:
            for i in range(20000):
                r = c.request({"op": "token", "tenant": "disk"})
                if r.get("ok"):
                    issued_while_full += 1
                    continue
                refused = r
                break
            check(refused is not None,
                  "20000 tokens issued on a full disk: the store never ran out of room?")
            expect_error(refused, "audit_unavailable")
            check("access_token" not in refused, "a token came with audit_unavailable", refused)
            # from now on nothing is issued while the disk stays full
            for i in range(20):
                r = c.request({"op": "token", "tenant": "disk"})
                expect_error(r, "audit_unavailable")
                check("access_token" not in r, "token issued on a full disk", r)
            # still answering (every request is audited, so even ping is
            # refused while nothing can be recorded)
            r = c.request({"op": "ping"})
            check(r.get("ok") is True or r.get("error") == "audit_unavailable",
                  "ping on a full disk", r)
        finally:
            c.close()
        wait_for(lambda: "audit" in env.log_text()[log_before:].lower(), 5,
                 what="a log line about the audit store failing")
        # free it: service resumes with no restart
        os.unlink(filler)
        t0 = time.monotonic()

        def resumed():
            r = env.token("disk")
            return r if r.get("ok") else None
        r = wait_for(resumed, 30, step=0.2, what="tokens after the disk was freed")
        took = time.monotonic() - t0
        check(env.pid() == pid and env.broker.poll() is None, "custodyd was restarted or died")
        print("disk full: filled %d KiB; %d tokens issued before the store ran out, then "
              "audit_unavailable; resumed %.2f s after freeing, same pid"
              % (filled // 1024, issued_while_full, took))
        rc, _ = env.stop_broker()
        check(rc == 0, "custodyd exit status %r after the full disk" % rc)
        verify(env, vkey)

        # ---- 2. read-only at start. The vault (which custodyd must lock)
        # gets its own small tmpfs mounted over state/vault, so only the
        # audit store is on the read-only file system.
        vault_copy = os.path.join(env.base, "vault-copy")
        shutil.copytree(env.vault_dir, vault_copy)
        ok, why = mount_tmpfs(env.vault_dir, "8m")
        check(ok, "cannot mount a tmpfs over the vault dir", why)
        vault_mounted.append(env.vault_dir)
        for n in os.listdir(vault_copy):
            shutil.copy2(os.path.join(vault_copy, n), os.path.join(env.vault_dir, n))
        p = subprocess.run(["mount", "-o", "remount,ro", mnt], capture_output=True, text=True)
        check(p.returncode == 0, "remount ro failed", p.stderr)
        try:
            log_before = len(env.log_text())
            env.start_broker(wait=False)
            started = False
            try:
                env.wait_ready(timeout=10)
                started = True
            except Exception:
                pass
            if started:
                r = env.token("disk")
                expect_error(r, "audit_unavailable")
                check("access_token" not in r, "token issued from a read-only store", r)
                env.stop_broker()
                print("read-only audit store: custodyd runs and answers audit_unavailable")
            else:
                check(env.broker.poll() is not None, "custodyd neither started nor exited")
                check(env.broker.returncode != 0, "custodyd exited 0 on a read-only store")
                last = env.log_text()[log_before:].strip().splitlines()[-1:]
                check(last and "audit" in last[0].lower(),
                      "custodyd failed on a read-only audit store without saying so", last)
                print("read-only audit store: custodyd refused to start (exit %d): %s"
                      % (env.broker.returncode, last[0]))
                env.broker = None
        finally:
            if env.broker is not None:
                env.broker.kill()
                env.broker.wait()
                env.broker = None
            subprocess.run(["mount", "-o", "remount,rw", mnt], check=True)
            umount(env.vault_dir)
            vault_mounted.remove(env.vault_dir)
        env.start_broker()
        r = env.token("disk")
        check(r.get("ok") is True, "no token after remounting rw", r)

        # ---- 3. audit.db removed under the running broker
        log_before = len(env.log_text())
        for suffix in ("", "-wal", "-shm"):
            try:
                os.unlink(env.audit_db + suffix)
            except FileNotFoundError:
                pass
        refused = None
        for n_after in range(50):
            r = env.token("disk")
            if not r.get("ok"):
                refused = r
                break
            time.sleep(0.05)
        check(refused is not None, "custodyd kept issuing tokens with its audit file gone")
        expect_error(refused, "audit_unavailable")
        check("access_token" not in refused, "a token came with audit_unavailable")
        for i in range(5):
            expect_error(env.token("disk"), "audit_unavailable")
        log = env.log_text()[log_before:].lower()
        check("audit" in log, "nothing about the audit store in the log", log[-2000:])
        print("audit.db removed: refused after %d more tokens, logged" % n_after)
        check(env.broker.poll() is None, "custodyd died when its audit file went away")
    except BaseException:
        sys.stderr.write(env.log_text()[-6000:])
        raise
    finally:
        try:
            if env.broker is not None:
                env.broker.kill()
                env.broker.wait(10)
                env.broker = None
            if env.idp is not None:
                env.idp.stop()
                env.idp = None
        finally:
            for m in vault_mounted:
                umount(m)
            if mounted:
                subprocess.run(["mount", "-o", "remount,rw", mnt], capture_output=True)
                umount(mnt)
            env.close()


if __name__ == "__main__":
    main()
