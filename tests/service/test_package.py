#!/usr/bin/env python3
"""test_package.py — the Debian packages (DESIGN §13), built and installed
for real:

1. `dpkg-buildpackage -us -uc -b` on a copy of the source tree builds
   `custody` and `libcustody-dev`;
2. `dpkg-deb -c` holds what each must (binaries, units, sysusers/tmpfiles,
   completion, man pages; header, static library, pkg-config file) and no
   shared library without a package for it;
3. lintian reports no error (its warnings are printed);
4. both packages are installed with `dpkg -i` into a throw-away root: an
   overlay of this machine's root with a tmpfs on top, in a private mount
   namespace, so the maintainer scripts run for real and nothing of it
   reaches the machine. There: the users and groups exist, no unit is
   enabled, `custody --version` prints meson's version, `custody init` with
   the default paths writes the config, key and vault, and custodyd then
   starts the way custodyd.service runs it (as user custody, the key as a
   credential, the state handed to custody, sockets passed by
   systemd-socket-activate): the admin socket answers root, a user in
   custody-tools reaches the tool socket and is told who the broker saw,
   a user outside it is refused by the socket's mode; and the README's
   libcustody example compiles against the installed libcustody-dev.

    test_package.py SOURCE_DIR VERSION B_SANITIZE
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))

# Run inside the throw-away root (as root, /bin/sh).
IN_ROOT = r"""
set -eu
fail() { echo "FAIL: $*" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive
dpkg -i /pkg/custody_*.deb /pkg/libcustody-dev_*.deb >/pkg/dpkg.log 2>&1 || { cat /pkg/dpkg.log >&2; fail "dpkg -i failed"; }

# users and groups (sysusers.d), nothing enabled
for g in custody custody-tools custody-admin custody-officers custody-auditors custody-alerts; do
	getent group "$g" >/dev/null || fail "group $g was not created"
done
getent passwd custody >/dev/null || fail "user custody was not created"
getent passwd custody-alerts >/dev/null || fail "user custody-alerts was not created"
id -nG custody-alerts | grep -qw custody-tools || fail "custody-alerts is not in custody-tools"
for l in /etc/systemd/system/*.wants/custody* ; do
	[ -e "$l" ] && fail "a unit was enabled at install: $l"
done
[ -d /run/custody ] || fail "tmpfiles did not create /run/custody"

# the version
[ "$(custody --version)" = "custody $VERSION" ] || fail "custody --version: $(custody --version)"
[ "$(custodyd --version)" = "custodyd $VERSION" ] || fail "custodyd --version: $(custodyd --version)"
man -w custodyd >/dev/null 2>&1 || [ -f /usr/share/man/man8/custodyd.8.gz ] || fail "no custodyd(8)"

# custody init with the default paths, right after install
[ ! -e /etc/custody/custody.json ] || fail "the package must not ship a config"
custody init >/pkg/init.log 2>&1 || { cat /pkg/init.log >&2; fail "custody init failed"; }
grep -q '"key_file": "master.key"' /etc/custody/custody.json || fail "config: key_file"
grep -q '"custody-officers"' /etc/custody/custody.json || fail "config: officer group"
grep -q '"custody-tools"' /etc/custody/custody.json || fail "config: tool socket group"
[ "$(stat -c %a /etc/custody/master.key)" = 600 ] || fail "master.key mode"
[ -d /var/lib/custody/vault ] || fail "no vault"
custody keys | grep -q '^seal_public_key: ' || fail "custody keys (offline)"

# a principal matched by executable: custodyd (user custody) reads
# /proc/PID/exe of another user's process only with the unit's CAP_SYS_PTRACE
python3 - <<'PY'
import json
p = "/etc/custody/custody.json"
c = json.load(open(p))
c["principals"] = [{"name": "pkg-tool", "match": {"user": "nobody", "exe": "/usr/bin/custody"},
                    "tenants": ["*"]}]
json.dump(c, open(p, "w"), indent=2)
PY

# custodyd as custodyd.service runs it: StateDirectory= hands the state to
# custody, LoadCredential= puts the key in $CREDENTIALS_DIRECTORY (0400,
# owned by the service user), the two socket units pass the sockets.
chown -R custody:custody /var/lib/custody
mkdir -p /run/credentials/custodyd.service
cp /etc/custody/master.key /run/credentials/custodyd.service/master.key
chown custody /run/credentials/custodyd.service/master.key
chmod 0400 /run/credentials/custodyd.service/master.key
systemd-socket-activate -l /run/custody/custody.sock -l /run/custody/admin.sock \
	--fdname=tool:admin \
	setpriv --reuid=custody --regid=custody --init-groups \
		--inh-caps=+sys_ptrace --ambient-caps=+sys_ptrace \
	env CREDENTIALS_DIRECTORY=/run/credentials/custodyd.service \
	/usr/sbin/custodyd --config /etc/custody/custody.json >/pkg/custodyd.log 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
i=0
while [ ! -S /run/custody/admin.sock ]; do
	i=$((i + 1)); [ $i -lt 100 ] || fail "no sockets"; sleep 0.1
done
# systemd's SocketMode=/SocketGroup=
chgrp custody-tools /run/custody/custody.sock; chmod 0660 /run/custody/custody.sock
chgrp custody-admin /run/custody/admin.sock; chmod 0660 /run/custody/admin.sock
custody status >/pkg/status.log 2>&1 || { cat /pkg/status.log /pkg/custodyd.log >&2; fail "custody status over the admin socket"; }
grep -q "custodyd $VERSION" /pkg/status.log || fail "status: $(cat /pkg/status.log)"
echo "custody status in the installed root: $(head -1 /pkg/status.log)"
[ "$(ps -o user= -p $pid)" = custody ] || fail "custodyd does not run as custody: $(ps -o user= -p $pid)"
grep -q "using the tool socket systemd passed" /pkg/custodyd.log || fail "custodyd: passed sockets"
# a user in custody-tools reaches the broker (which maps it to no principal)
rc=0
setpriv --reuid=12345 --regid=nogroup --groups="$(getent group custody-tools | cut -d: -f3)" \
	custody --config /etc/custody/custody.json token --tenant contoso >/pkg/tool.out 2>/pkg/tool.err || rc=$?
[ $rc -eq 3 ] || { cat /pkg/tool.err >&2; fail "a custody-tools member: exit $rc, expected 3 (unauthenticated)"; }
echo "a custody-tools member: $(cat /pkg/tool.err)"
# nobody running /usr/bin/custody is principal pkg-tool (matched by exe)
rc=0
setpriv --reuid=nobody --regid=nogroup --groups="$(getent group custody-tools | cut -d: -f3)" \
	custody --config /etc/custody/custody.json token --tenant contoso >/pkg/tool.out 2>/pkg/tool.err || rc=$?
grep -q unknown_tenant /pkg/tool.err || { cat /pkg/tool.err /pkg/custodyd.log >&2; fail "the exe-matched principal: exit $rc"; }
echo "the exe-matched principal: $(cat /pkg/tool.err)"
# a user outside it cannot connect at all
rc=0
setpriv --reuid=nobody --regid=nogroup --clear-groups \
	custody --config /etc/custody/custody.json token --tenant contoso >/pkg/tool.out 2>/pkg/tool.err || rc=$?
[ $rc -eq 5 ] || { cat /pkg/tool.err >&2; fail "a user outside custody-tools: exit $rc, expected 5"; }
echo "a user outside custody-tools: $(cat /pkg/tool.err)"
# officers and auditors reach the admin socket through the ACL that
# custody-admin.socket's ExecStartPost= sets; the broker's roles do the rest
post=$(sed -n 's/^ExecStartPost=-//p' /lib/systemd/system/custody-admin.socket)
[ -n "$post" ] || fail "custody-admin.socket has no ExecStartPost="
$post || fail "$post"
rc=0
setpriv --reuid=nobody --regid=nogroup --groups="$(getent group custody-auditors | cut -d: -f3)" \
	custody --config /etc/custody/custody.json status >/pkg/auditor.out 2>/pkg/auditor.err || rc=$?
[ $rc -eq 0 ] || { cat /pkg/auditor.err >&2; fail "an auditor: custody status exit $rc, expected 0"; }
rc=0
setpriv --reuid=nobody --regid=nogroup --groups="$(getent group custody-officers | cut -d: -f3)" \
	custody --config /etc/custody/custody.json lockdown --reason "package test" >/pkg/officer.out 2>/pkg/officer.err || rc=$?
[ $rc -eq 0 ] || { cat /pkg/officer.err >&2; fail "an officer: custody lockdown exit $rc, expected 0"; }
rc=0
setpriv --reuid=nobody --regid=nogroup --groups="$(getent group custody-officers | cut -d: -f3)" \
	custody --config /etc/custody/custody.json grant list >/pkg/officer.out 2>/pkg/officer.err || rc=$?
[ $rc -eq 3 ] || { cat /pkg/officer.err >&2; fail "an officer listing grants (admin role): exit $rc, expected 3"; }
echo "an auditor reads the status, an officer locks down, neither holds the admin role"
kill -TERM $pid
wait $pid || fail "custodyd did not stop cleanly: $(tail -3 /pkg/custodyd.log)"
trap - EXIT

# libcustody-dev: the README's example builds against the installed files
cc -o /pkg/example /pkg/example.c $(pkg-config --cflags --libs libcustody) \
	|| fail "example.c does not build against libcustody-dev"
echo "ok: installed, users and groups made, nothing enabled, init and the broker work from the installed paths"
"""


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def copy_tree(src, dst):
    if os.path.isdir(os.path.join(src, ".git")) or os.path.isfile(os.path.join(src, ".git")):
        files = run(["git", "-C", src, "ls-files", "-co", "--exclude-standard", "-z"],
                    check=True).stdout.split("\0")
    else:
        files = []
        for root, dirs, names in os.walk(src):
            dirs[:] = [d for d in dirs if not d.startswith((".", "build", "obj-"))]
            files += [os.path.relpath(os.path.join(root, n), src) for n in names]
    for f in files:
        if not f or not os.path.lexists(os.path.join(src, f)):
            continue
        os.makedirs(os.path.dirname(os.path.join(dst, f)), exist_ok=True)
        shutil.copy2(os.path.join(src, f), os.path.join(dst, f), follow_symlinks=False)


def main():
    src, version, sanitize = sys.argv[1:4]
    if sanitize not in ("", "none"):
        print("skip: the package is built and checked in the plain build's run")
        return 77
    for tool in ("dpkg-buildpackage", "dh", "lintian", "systemd-socket-activate"):
        if shutil.which(tool) is None:
            print("FAIL: %s is missing (./setup.sh test installs it)" % tool, file=sys.stderr)
            return 1
    bad = []
    with tempfile.TemporaryDirectory(prefix="custody-pkg-") as tmp:
        tree = os.path.join(tmp, "custody")
        copy_tree(src, tree)
        env = dict(os.environ, DEB_BUILD_OPTIONS="nocheck parallel=2", LC_ALL="C.UTF-8")
        p = run(["nice", "dpkg-buildpackage", "-us", "-uc", "-b"], cwd=tree, env=env,
                timeout=900)
        if p.returncode != 0:
            print("FAIL: dpkg-buildpackage -us -uc -b: exit %d\n%s" % (
                p.returncode, (p.stdout + p.stderr)[-4000:]), file=sys.stderr)
            return 1
        debs = {}
        for f in os.listdir(tmp):
            if f.endswith(".deb"):
                debs[f.split("_")[0]] = os.path.join(tmp, f)
        for name in ("custody", "libcustody-dev"):
            if name not in debs:
                bad.append("no %s package was built: %s" % (name, sorted(os.listdir(tmp))))
        if bad:
            print("FAIL: " + "\n".join(bad), file=sys.stderr)
            return 1
        print("ok: dpkg-buildpackage built %s" % ", ".join(sorted(
            os.path.basename(d) for d in debs.values())))

        want = {
            "custody": ["./usr/bin/custody", "./usr/sbin/custodyd",
                        "./lib/systemd/system/custodyd.service",
                        "./lib/systemd/system/custody-tool.socket",
                        "./lib/systemd/system/custody-admin.socket",
                        "./lib/systemd/system/custody-alerts.service",
                        "./usr/lib/sysusers.d/custody.conf",
                        "./usr/lib/tmpfiles.d/custody.conf",
                        "./usr/share/bash-completion/completions/custody",
                        "./usr/share/man/man1/custody.1.gz",
                        "./usr/share/man/man1/custody-alerts.1.gz",
                        "./usr/share/man/man8/custodyd.8.gz",
                        "./usr/share/man/man5/custody.json.5.gz",
                        "./usr/share/man/man5/custody-alerts.json.5.gz",
                        "./usr/share/doc/custody/copyright"],
            "libcustody-dev": ["./usr/include/libcustody.h",
                               "./usr/lib/x86_64-linux-gnu/libcustody.a",
                               "./usr/lib/x86_64-linux-gnu/pkgconfig/libcustody.pc",
                               "./usr/share/man/man3/libcustody.3.gz"],
        }
        if os.path.isdir(os.path.join(src, "alerts")) and \
                os.path.isfile(os.path.join(src, "alerts", "meson.build")):
            want["custody"].append("./usr/bin/custody-alerts")
        for name, paths in want.items():
            listing = run(["dpkg-deb", "-c", debs[name]], check=True).stdout
            have = {ln.split()[5] for ln in listing.splitlines() if len(ln.split()) >= 6}
            for path in paths:
                if path not in have:
                    bad.append("%s lacks %s" % (name, path))
            for path in have:
                if re.search(r"\.so(\.|$)", os.path.basename(path)):
                    bad.append("%s ships a shared object without a library package: %s"
                               % (name, path))
        if not bad:
            print("ok: dpkg-deb -c: both packages hold what they must")

        changes = [os.path.join(tmp, f) for f in os.listdir(tmp) if f.endswith(".changes")]
        p = run(["lintian", "--tag-display-limit", "0"] + changes, timeout=600)
        tags = [ln for ln in (p.stdout + p.stderr).splitlines() if ln[:2] in ("E:", "W:")]
        errors = [t for t in tags if t.startswith("E:")]
        for t in tags:
            print("lintian: " + t)
        if errors:
            bad.append("lintian reports errors:\n" + "\n".join(errors))
        else:
            print("ok: lintian: no error (%d warnings)" % (len(tags) - len(errors)))

        # The throw-away root: this machine's / under a tmpfs overlay.
        pkg = os.path.join(tmp, "pkg")
        os.makedirs(pkg)
        for name in ("custody", "libcustody-dev"):
            shutil.copy(debs[name], pkg)
        shutil.copy(os.path.join(src, "cli", "example.c"), pkg)
        with open(os.path.join(pkg, "in-root.sh"), "w") as f:
            f.write(IN_ROOT)
        top = os.path.join(tmp, "root")
        os.makedirs(top)
        outer = r"""
set -eu
mount -t tmpfs tmpfs "$TOP"
mkdir "$TOP/upper" "$TOP/work" "$TOP/merged"
mount -t overlay overlay -o "lowerdir=/,upperdir=$TOP/upper,workdir=$TOP/work" "$TOP/merged"
R="$TOP/merged"
mount --rbind /dev "$R/dev"
mount -t proc proc "$R/proc"
mount -t tmpfs tmpfs "$R/run"
mount -t tmpfs tmpfs "$R/tmp"
mkdir -p "$R/pkg"
mount --bind "$PKG" "$R/pkg"
exec chroot "$R" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin VERSION="$VERSION" sh /pkg/in-root.sh
"""
        p = run(["unshare", "--mount", "--propagation", "private", "--fork", "--pid",
                 "--mount-proc", "sh", "-c", outer],
                env=dict(os.environ, TOP=top, PKG=pkg, VERSION=version), timeout=300)
        out = (p.stdout + p.stderr).strip()
        if p.returncode != 0:
            logs = ""
            for name in ("custodyd.log", "init.log"):
                path = os.path.join(pkg, name)
                if os.path.exists(path):
                    with open(path) as f:
                        logs += "\n--- %s\n%s" % (name, f.read()[-2000:])
            bad.append("in the throw-away root: exit %d\n%s%s" % (p.returncode, out, logs))
        else:
            print(out)
    for b in bad:
        print("FAIL:", b, file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
