#!/usr/bin/env python3
"""test_socket_activation.py — custodyd under socket activation
(DESIGN §13), with the real systemd-socket-activate (Debian's systemd
package; no PID 1 needed): it binds the two sockets, waits for the first
client and execs custodyd with LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES set, as
systemd does for custody-tool.socket and custody-admin.socket.

- Both sockets passed (--fdname=tool:admin): tokens and admin ops work over
  them, the CLI reaches them, and at stop custodyd leaves the socket files
  alone (they belong to systemd, which keeps listening on them).
- Only the tool socket passed: custodyd binds the admin socket itself.
- Anything else is a clear start-up error, before the broker serves
  anyone: a regular file, a datagram socket, a Unix stream socket that is
  not listening, an unknown name, no names at all.
"""

import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "integration"))
from harness import CUSTODYD, DEFENDER_SCOPE, Env, Fail, check, wait_for  # noqa: E402

SSA = shutil.which("systemd-socket-activate") or "/usr/bin/systemd-socket-activate"


def start_activated(env, sockets, fdnames, extra=()):
    """Run custodyd under systemd-socket-activate; returns the Popen (also
    kept as env.broker, so env.stop_broker()/close() end it by pid)."""
    env.write_config()
    args = [SSA]
    for path in sockets:
        args += ["-l", path]
    if fdnames is not None:
        args.append("--fdname=" + fdnames)
    args += list(extra) + [CUSTODYD, "--config", env.config_path, "--foreground"]
    log = open(env.broker_log, "ab")
    env.log_offset = log.tell()
    env.broker = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    log.close()
    for path in sockets:
        wait_for(lambda: os.path.exists(path), 10, what="systemd-socket-activate to bind " + path)
    return env.broker


def expect_start_error(env, argv, what, needle, pass_fds=()):
    """argv must end in custodyd failing at start: exit 1, one log line
    naming the problem, no socket served."""
    log = open(env.broker_log, "ab")
    start = log.tell()
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                         pass_fds=pass_fds)
    log.close()
    try:
        rc = p.wait(15)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    with open(env.broker_log, "rb") as f:
        f.seek(start)
        text = f.read().decode(errors="replace")
    check(rc == 1, "%s: custodyd must refuse to start (exit 1), got %s" % (what, rc), text)
    check(needle in text, "%s: the error must say %r" % (what, needle), text)
    check("socket activation:" in text, "%s: the error must name socket activation" % what, text)
    check(len([ln for ln in text.splitlines() if "socket activation" in ln]) == 1,
          "%s: one line" % what, text)
    return text


def both_passed():
    with Env("custody-sa") as env:
        env.init_vault()
        env.start_idp()
        os.makedirs(env.config["runtime_dir"])
        p = start_activated(env, [env.tool_path, env.admin_path], "tool:admin")
        # The first client starts custodyd (systemd-socket-activate execs it
        # in place: the pid stays the same, as LISTEN_PID requires).
        env.wait_ready()
        with open("/proc/%d/comm" % p.pid) as f:
            check(f.read().strip() == "custodyd", "custodyd runs as the activated pid")
        log = env.log_text(since_start=True)
        check("using the tool socket systemd passed: " + env.tool_path in log,
              "custodyd must say it took the passed tool socket", log)
        check("using the admin socket systemd passed: " + env.admin_path in log,
              "custodyd must say it took the passed admin socket", log)

        # Admin ops and tokens over the passed sockets.
        grant, tid = env.new_tenant("contoso")
        gid = env.import_grant(grant)["grant"]["id"]
        r = env.token("contoso", purpose="socket activation test")
        r.pop("access_token", None)     # never in a test's output
        check(r.get("ok") is True and r.get("grant") == gid, "token over the passed tool socket", r)
        r = env.admin_request("status")
        check(r.get("ok") is True and r["status"]["connections"]["admin"] >= 1
              and r["status"]["version"],
              "status over the passed admin socket", r)
        # The CLI finds them through the config.
        cp = env.run_cli("grant", "list", "--json")
        check(cp.returncode == 0 and gid in cp.stdout, "custody grant list over the passed socket",
              cp.stdout, cp.stderr)
        cp = env.run_cli("token", "--tenant", "contoso", "--format", "json",
                         "--purpose", "socket activation test (cli)")
        check(cp.returncode == 0 and '"ok": true' in cp.stdout.replace('"ok":true', '"ok": true'),
              "custody token over the passed socket", cp.stderr)
        # Many clients at once through the passed (non-blocking) listener.
        socks = []
        for _ in range(20):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(10)
            s.connect(env.tool_path)
            s.sendall(b'{"v":1,"id":1,"op":"ping"}\n')
            socks.append(s)
        for s in socks:
            check(b'"ok":true' in s.recv(4096).replace(b" ", b""), "ping over a burst of clients")
            s.close()

        rc, _ = env.stop_broker()
        check(rc == 0, "custodyd stops cleanly on SIGTERM, got %s" % rc, env.log_text())
        for path in (env.tool_path, env.admin_path):
            check(os.path.exists(path) and stat.S_ISSOCK(os.lstat(path).st_mode),
                  "custodyd must not unlink a socket systemd passed: " + path)
        print("ok: tool and admin sockets passed, tokens and admin ops over them, files kept")


def tool_only_passed():
    with Env("custody-sa") as env:
        env.init_vault()
        os.makedirs(env.config["runtime_dir"])
        start_activated(env, [env.tool_path], "tool")
        env.wait_ready()
        log = env.log_text(since_start=True)
        check("using the tool socket systemd passed" in log, "tool socket taken", log)
        check("admin socket systemd passed" not in log, "no admin socket was passed", log)
        r = env.admin_request("status")
        check(r.get("ok") is True, "status over the admin socket custodyd bound itself", r)
        rc, _ = env.stop_broker()
        check(rc == 0, "clean stop, got %s" % rc, env.log_text())
        check(os.path.exists(env.tool_path), "the passed tool socket stays")
        check(not os.path.exists(env.admin_path), "the admin socket custodyd bound is removed")
        print("ok: only the tool socket passed; custodyd bound the admin socket itself")


def wrong_fds():
    with Env("custody-sa") as env:
        env.init_vault()
        env.write_config()
        run = env.config["runtime_dir"]
        os.makedirs(run)
        daemon = [CUSTODYD, "--config", env.config_path, "--foreground"]
        # sh sets LISTEN_PID to its own pid, then execs custodyd (same pid).
        def sh(fds, names, redirect):
            envs = "export LISTEN_PID=$$ LISTEN_FDS=%d" % fds
            if names is not None:
                envs += " LISTEN_FDNAMES=%s" % names
            return ["sh", "-c", '%s; exec "$@" %s' % (envs, redirect), "sh"] + daemon

        regular = os.path.join(env.base, "not-a-socket")
        with open(regular, "w") as f:
            f.write("x\n")
        expect_start_error(env, sh(1, "tool", "3<" + regular), "a regular file as fd 3",
                           'fd 3 ("tool") is a regular file, not a listening Unix stream socket')

        # A Unix stream socket that was bound but never listened on.
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(os.path.join(run, "unlistened.sock"))
        expect_start_error(env, sh(1, "admin", "3<&%d" % s.fileno()), "a socket not listening",
                           "is a Unix stream socket that is not listening",
                           pass_fds=(s.fileno(),))
        s.close()

        # A TCP listener on loopback: not a Unix socket.
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        t.bind(("127.0.0.1", 0))
        t.listen(4)
        expect_start_error(env, sh(1, "tool", "3<&%d" % t.fileno()), "a TCP socket",
                           "is an IP socket", pass_fds=(t.fileno(),))
        t.close()

        # No names at all, and more sockets than custodyd takes.
        expect_start_error(env, sh(1, None, "3<" + regular), "no LISTEN_FDNAMES",
                           "LISTEN_FDNAMES is not set")
        expect_start_error(env, sh(3, "tool:admin:x", "3<%s 4<%s 5<%s" % ((regular,) * 3)),
                           "three fds", "3 sockets passed")

        # The real systemd-socket-activate with a datagram socket: custodyd
        # starts on the first datagram and must refuse it.
        dg = os.path.join(run, "custody.sock")
        argv = [SSA, "--datagram", "-l", dg, "--fdname=tool"] + daemon
        log = open(env.broker_log, "ab")
        start = log.tell()
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        try:
            wait_for(lambda: os.path.exists(dg), 10, what="the datagram socket")
            c = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            c.sendto(b"wake up", dg)
            c.close()
            rc = p.wait(15)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        with open(env.broker_log, "rb") as f:
            f.seek(start)
            text = f.read().decode(errors="replace")
        check(rc == 1, "a datagram socket must be refused (exit 1), got %s" % rc, text)
        check('fd 3 ("tool") is a datagram socket, not a listening Unix stream socket' in text,
              "the error must name the datagram socket", text)
        os.unlink(dg)

        # The real systemd-socket-activate with a name custodyd does not know.
        p = start_activated(env, [env.tool_path, env.admin_path], "tool:bogus")
        try:
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.connect(env.tool_path)
            rc = p.wait(15)
            c.close()
        finally:
            env.broker = None
            if p.poll() is None:
                p.kill()
                p.wait()
        text = env.log_text(since_start=True)
        check(rc == 1, "an unknown fd name must be refused (exit 1), got %s" % rc, text)
        check('fd 4 is named "bogus"; custodyd takes sockets named tool and admin' in text,
              "the error must name the bad fd name", text)
        print("ok: a regular file, an unlistened socket, a TCP socket, a datagram socket, "
              "missing and unknown names are each a clear start-up error")


def main():
    if not os.path.exists(SSA):
        raise Fail("systemd-socket-activate not found (Debian package systemd; ./setup.sh test "
                   "installs it)")
    both_passed()
    tool_only_passed()
    wrong_fds()


if __name__ == "__main__":
    try:
        main()
    except Fail as e:
        print("FAIL:", e, file=sys.stderr)
        sys.exit(1)
