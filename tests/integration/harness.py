"""harness.py — shared helpers for custody's integration tests (stdlib only).

    from harness import *
    env = Env()                       # temp state dir + config, cleaned up by env.close()
    env.init_vault()                  # vault + key file (custody-testtool)
    idp = env.start_idp()             # the fake Entra ID (tests/fixtures/idp.py), in process
    env.config["principals"] = [...]  # edit the config dict, then
    env.write_config()
    env.start_broker()                # custodyd --config ... --foreground; waits for its sockets
    with env.tool() as c: c.request({"op": "ping"})
    with env.admin() as a: a.request({"op": "grant.import", "sealed": env.seal(grant)})
    env.stop_broker()                 # SIGTERM, waits (<= 10 s), returns the exit status
    env.close()                       # stops everything still running, removes the temp dir
    rs = Rsyslog(env.base, "%msgid%|%msg%").start()   # rsyslog over TLS on loopback; rs.stop()

Binaries come from $CUSTODY_BUILD_DIR (default ./build), sources from
$CUSTODY_SOURCE_DIR (default: two levels above this file). Servers are
stopped by pid, on success and on failure (use Env as a context manager or
call close() in a finally).
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("CUSTODY_SOURCE_DIR") or os.path.dirname(os.path.dirname(HERE))
BUILD_DIR = os.environ.get("CUSTODY_BUILD_DIR") or os.path.join(SOURCE_DIR, "build")
sys.path.insert(0, os.path.join(SOURCE_DIR, "tests", "fixtures"))

DEFENDER_SCOPE = "https://api.securitycenter.microsoft.com/.default"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"


def build_path(*parts):
    return os.path.join(BUILD_DIR, *parts)


CUSTODYD = os.environ.get("CUSTODYD") or build_path("broker", "custodyd")
CUSTODY = build_path("cli", "custody")
TESTTOOL = build_path("tests", "integration", "custody-testtool")


class Fail(AssertionError):
    pass


def wait_for(pred, timeout=10.0, step=0.02, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    raise Fail("timed out after %.1f s waiting for %s" % (timeout, what))


class Client:
    """An NDJSON client on a Unix socket. request() adds "v":1 and an id
    when missing and returns the response with that id (others read on
    the way are kept for later)."""

    def __init__(self, path, timeout=10.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""
        self.next_id = 1
        self.stash = {}

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def send_raw(self, data):
        self.sock.sendall(data)

    def send(self, obj):
        obj = dict(obj)
        obj.setdefault("v", 1)
        if "id" not in obj:
            obj["id"] = self.next_id
            self.next_id += 1
        self.sock.sendall(json.dumps(obj).encode() + b"\n")
        return obj["id"]

    def read_line(self):
        """One raw line (bytes, without newline); b"" at EOF."""
        while b"\n" not in self.buf:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                rest, self.buf = self.buf, b""
                return rest
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    def recv(self):
        line = self.read_line()
        if not line:
            raise Fail("connection closed by custodyd")
        return json.loads(line)

    def recv_id(self, rid):
        if rid in self.stash:
            return self.stash.pop(rid)
        while True:
            r = self.recv()
            if r.get("id") == rid:
                return r
            self.stash[r.get("id")] = r

    def request(self, obj):
        return self.recv_id(self.send(obj))

    def is_closed(self, timeout=5.0):
        """True when custodyd closed the connection (EOF) within timeout."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except socket.timeout:
            return False
        except (ConnectionResetError, BrokenPipeError):
            return True


def uds_request(path, obj, timeout=10.0):
    with Client(path, timeout) as c:
        return c.request(obj)


def as_nobody_request(path, obj, uid=65534, timeout=10, gid=None, groups=None):
    """Send one request from another uid (setpriv; gid defaults to uid,
    groups: supplementary gids, default none) and return the reply."""
    code = ("import json,socket,sys\n"
            "s=socket.socket(socket.AF_UNIX);s.settimeout(%d);s.connect(sys.argv[1])\n"
            "s.sendall(sys.argv[2].encode()+b'\\n')\n"
            "b=b''\n"
            "while not b.endswith(b'\\n'):\n"
            "  c=s.recv(65536)\n"
            "  if not c: break\n"
            "  b+=c\n"
            "print(b.decode().strip())\n" % timeout)
    o = dict(obj)
    o.setdefault("v", 1)
    o.setdefault("id", 1)
    grp = ["--groups=" + ",".join(str(g) for g in groups)] if groups else ["--clear-groups"]
    p = subprocess.run(["setpriv", "--reuid=%d" % uid,
                        "--regid=%d" % (uid if gid is None else gid)] + grp + [
                        sys.executable, "-c", code, path, json.dumps(o)],
                       capture_output=True, text=True, timeout=timeout + 5)
    if p.returncode != 0:
        raise Fail("client as uid %d failed: %s" % (uid, p.stderr.strip()))
    return json.loads(p.stdout)


def default_config(base):
    return {
        "state_dir": os.path.join(base, "state"),
        "runtime_dir": os.path.join(base, "run"),
        "key_file": os.path.join(base, "master.key"),
        "tool_socket": {"path": "custody.sock", "mode": "0660"},
        "admin_socket": {"path": "admin.sock", "mode": "0660"},
        "principals": [
            {"name": "root-tool", "match": {"uid": 0}, "tenants": ["*"]},
        ],
        "upstream": {"allowed_hosts": ["127.0.0.1"], "timeout_ms": 5000, "retries": 1},
        "audit": {"origin": "custody.test/audit", "checkpoint_every": 1000,
                  "checkpoint_interval_s": 60},
        "limits": {"max_connections": 1024, "max_connections_per_uid": 1024,
                   "max_request_bytes": 65536, "idle_timeout_s": 60},
    }


class Env:
    def __init__(self, name="custody-test"):
        self.base = tempfile.mkdtemp(prefix=name + "-")
        # other uids (setpriv tests) must be able to reach the runtime dir
        os.chmod(self.base, 0o755)
        self.config = default_config(self.base)
        self.config_path = os.path.join(self.base, "custody.json")
        self.broker = None
        self.broker_log = os.path.join(self.base, "custodyd.log")
        self.idp = None
        self.log_offset = 0

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    # ---- paths
    @property
    def state_dir(self):
        return self.config["state_dir"]

    @property
    def vault_dir(self):
        return os.path.join(self.state_dir, "vault")

    @property
    def audit_db(self):
        return os.path.join(self.state_dir, "audit.db")

    @property
    def tool_path(self):
        return os.path.join(self.config["runtime_dir"], self.config["tool_socket"]["path"])

    @property
    def admin_path(self):
        return os.path.join(self.config["runtime_dir"], self.config["admin_socket"]["path"])

    # ---- state
    def write_config(self, cfg=None, path=None):
        with open(path or self.config_path, "w") as f:
            json.dump(self.config if cfg is None else cfg, f, indent=2)

    def init_vault(self):
        os.makedirs(self.state_dir, exist_ok=True)
        subprocess.run([TESTTOOL, "init", self.vault_dir, self.config["key_file"]], check=True)

    def seal(self, grant):
        """Seal a grant dict (DESIGN §4) to this broker; returns the envelope text."""
        p = os.path.join(self.base, "grant-%s.json" % uuid.uuid4().hex[:8])
        with open(p, "w") as f:
            json.dump(grant, f)
        try:
            out = subprocess.run([TESTTOOL, "seal", self.vault_dir, p], check=True,
                                 capture_output=True, text=True)
        finally:
            os.unlink(p)
        return out.stdout

    # ---- identity provider
    def start_idp(self):
        from idp import FakeIdP
        self.idp = FakeIdP(os.path.join(self.base, "idp"))
        self.idp.start()
        self.config["upstream"]["ca_file"] = self.idp.ca_file
        return self.idp

    def token_endpoint(self, tenant_id):
        return "https://127.0.0.1:%d/%s/oauth2/v2.0/token" % (self.idp.port, tenant_id)

    def new_tenant(self, name="contoso", scopes=(DEFENDER_SCOPE,), principals=None,
                   not_before=None, not_after=None, app_extra=None, register=True):
        """Register an app at the IdP and return (grant dict, tenant_id)."""
        tid = str(uuid.uuid4())
        cid = str(uuid.uuid4())
        secret = "s3cr3t~" + uuid.uuid4().hex + "+/="
        if register:
            a = {"tenant_id": tid, "tenant_name": name, "client_id": cid, "secret": secret}
            a.update(app_extra or {})
            self.idp.add_app(**a)
        g = {"custody_grant": 1, "tenant_id": tid, "tenant_name": name,
             "token_endpoint": self.token_endpoint(tid), "client_id": cid,
             "client_secret": secret, "scopes": list(scopes)}
        if principals is not None:
            g["principals"] = principals
        if not_before is not None:
            g["not_before"] = not_before
        if not_after is not None:
            g["not_after"] = not_after
        return g, tid

    def import_grant(self, grant, probe=False):
        r = uds_request(self.admin_path, {"op": "grant.import", "sealed": self.seal(grant),
                                          "probe": probe}, timeout=120)
        if not r.get("ok"):
            raise Fail("grant.import failed: %r" % r)
        return r

    # ---- broker
    def start_broker(self, wait=True, extra_env=None, expect_fail=False, nofile=None):
        if self.broker is not None:
            raise Fail("broker already running")
        self.write_config()
        env = dict(os.environ)
        env.update(extra_env or {})
        log = open(self.broker_log, "ab")
        self.log_offset = log.tell()
        def limits():
            if nofile is not None:
                import resource
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
        self.broker = subprocess.Popen([CUSTODYD, "--config", self.config_path, "--foreground"],
                                       stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                                       preexec_fn=limits)
        log.close()
        if expect_fail:
            try:
                rc = self.broker.wait(10)
            finally:
                if self.broker.poll() is None:
                    self.broker.kill()
                    self.broker.wait()
            self.broker = None
            return rc
        if wait:
            self.wait_ready()
        return self.broker

    def wait_ready(self, timeout=15):
        def up():
            if self.broker.poll() is not None:
                raise Fail("custodyd exited with %s:\n%s" % (self.broker.returncode,
                                                              self.log_text()))
            try:
                return uds_request(self.tool_path, {"op": "ping"}, timeout=2).get("ok")
            except (OSError, Fail, ValueError):
                return False
        wait_for(up, timeout, what="custodyd to answer ping")
        wait_for(lambda: os.path.exists(self.admin_path), timeout, what="admin socket")

    def signal_broker(self, sig):
        self.broker.send_signal(sig)

    def stop_broker(self, timeout=10):
        """SIGTERM, wait; returns (exit status, seconds taken)."""
        if self.broker is None:
            return None, 0
        t0 = time.monotonic()
        self.broker.send_signal(signal.SIGTERM)
        try:
            rc = self.broker.wait(timeout)
        except subprocess.TimeoutExpired:
            self.broker.kill()
            self.broker.wait()
            rc = "killed"
        took = time.monotonic() - t0
        self.broker = None
        return rc, took

    def log_text(self, since_start=False):
        try:
            with open(self.broker_log, "rb") as f:
                if since_start:
                    f.seek(self.log_offset)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def pid(self):
        return self.broker.pid

    def cpu_seconds(self):
        with open("/proc/%d/stat" % self.broker.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_kib(self):
        with open("/proc/%d/status" % self.broker.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    # ---- clients
    def tool(self, timeout=10.0):
        return Client(self.tool_path, timeout)

    def admin(self, timeout=30.0):
        return Client(self.admin_path, timeout)

    def token(self, tenant, **kw):
        o = {"op": "token", "tenant": tenant}
        o.update(kw)
        return uds_request(self.tool_path, o, timeout=60)

    def admin_request(self, op, **kw):
        o = {"op": op}
        o.update(kw)
        return uds_request(self.admin_path, o, timeout=60)

    def audit_records(self, **filt):
        r = self.admin_request("audit.query", limit=10000, **filt)
        if not r.get("ok"):
            raise Fail("audit.query failed: %r" % r)
        return r["records"]

    def run_cli(self, *args, input=None, timeout=60, env=None):
        e = dict(os.environ)
        e["CUSTODY_CONFIG"] = self.config_path
        e.update(env or {})
        return subprocess.run([CUSTODY, "--config", self.config_path] + list(args),
                              input=input, capture_output=True, text=True, timeout=timeout,
                              env=e)

    def close(self):
        if self.broker is not None:
            try:
                self.broker.kill()
                self.broker.wait(10)
            except Exception:
                pass
            self.broker = None
        if self.idp is not None:
            try:
                self.idp.stop()
            except Exception:
                pass
            self.idp = None
        if os.environ.get("CUSTODY_KEEP_TEST_DIR"):
            print("kept", self.base, file=sys.stderr)
        else:
            shutil.rmtree(self.base, ignore_errors=True)


def rfc3339(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def check(cond, msg, *ctx):
    if not cond:
        raise Fail(msg + ("".join("\n  " + repr(c) for c in ctx)))


def expect_error(r, code):
    check(r.get("ok") is False and r.get("error") == code,
          "expected error %s" % code, r)
    check(isinstance(r.get("message"), str) and r["message"], "error without a message", r)
    return r


# ---- a real syslog receiver: rsyslog over TLS (rsyslog-gnutls) ---------------

def stop_process(proc, timeout=10):
    """SIGTERM, SIGKILL when it has not exited after timeout seconds; reaped."""
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def free_port():
    """A loopback TCP port nobody listened on a moment ago."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Rsyslog:
    """rsyslogd -n with imtcp over TLS (gtls, anonymous clients) on a
    loopback port, writing each message as one line of `template` (rsyslog
    properties, e.g. "%msgid%|%msg%") to self.out. certs: (ca, cert, key);
    None makes a test CA in its folder (self.ca). keep_trailing_lf: a message
    keeps a trailing newline (shown as #012) instead of losing it."""

    def __init__(self, base, template, certs=None, max_size="64k", keep_trailing_lf=False):
        self.dir = os.path.join(base, "rsyslog")
        os.makedirs(self.dir, exist_ok=True)
        if certs is None:
            from idp import make_certs
            certs = make_certs(os.path.join(self.dir, "certs"))
        self.ca, cert, key = certs
        self.port = free_port()
        self.out = os.path.join(self.dir, "received.log")
        self.conf = os.path.join(self.dir, "rsyslog.conf")
        self.pidfile = os.path.join(self.dir, "rsyslog.pid")
        lf = ' parser.dropTrailingLFOnReception="off"' if keep_trailing_lf else ""
        with open(self.conf, "w") as f:
            f.write('global(workDirectory="%s" maxMessageSize="%s"%s\n'
                    '  DefaultNetstreamDriver="gtls" DefaultNetstreamDriverCAFile="%s"\n'
                    '  DefaultNetstreamDriverCertFile="%s" DefaultNetstreamDriverKeyFile="%s")\n'
                    'module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1"\n'
                    '  StreamDriver.AuthMode="anon")\n'
                    'template(name="t" type="string" string="%s\\n")\n'
                    'input(type="imtcp" port="%d" address="127.0.0.1" ruleset="r")\n'
                    'ruleset(name="r") { action(type="omfile" file="%s" template="t") }\n'
                    % (self.dir, max_size, lf, self.ca, cert, key, template, self.port,
                       self.out))
        self.proc = None

    def start(self):
        """Start it and wait until it accepts connections; returns self."""
        self.log = open(os.path.join(self.dir, "rsyslogd.log"), "ab")
        self.proc = subprocess.Popen(["rsyslogd", "-n", "-f", self.conf, "-i", self.pidfile],
                                     stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        end = time.monotonic() + 15
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise Fail("rsyslogd exited %s" % self.proc.returncode)
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.5).close()
                return self
            except OSError:
                time.sleep(0.1)
        raise Fail("rsyslogd does not listen on %d" % self.port)

    def kill(self):
        """SIGKILL: what it had not written yet is lost."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.proc = None
            self.log.close()

    def stop(self):
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None
            self.log.close()

    def lines(self):
        """The non-empty lines received so far."""
        try:
            with open(self.out, encoding="utf-8") as f:
                return [x.rstrip("\n") for x in f if x.strip()]
        except FileNotFoundError:
            return []

    def wait_lines(self, n, timeout=20):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            got = self.lines()
            if len(got) >= n:
                return got
            time.sleep(0.1)
        raise Fail("rsyslog received %d of %d messages" % (len(self.lines()), n))
