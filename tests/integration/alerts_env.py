"""alerts_env.py — custody-alerts in the integration tests (stdlib only).

    from alerts_env import Alerts
    a = Alerts(env)                      # env: a harness.Env with IdP + broker running
    a.config["outputs"].append({...})    # edit, then
    p = a.run()                          # custody-alerts run --once --config ...
    a.lines()                            # the file output's alerts, parsed
    a.status()                           # status --json, parsed
"""

import json
import os
import signal
import subprocess
import time

import harness
from harness import BUILD_DIR, Fail

CUSTODY_ALERTS = os.path.join(BUILD_DIR, "alerts", "custody-alerts")


class Alerts:
    def __init__(self, env, name="alerts"):
        self.env = env
        self.dir = os.path.join(env.base, name)
        os.makedirs(self.dir, exist_ok=True)
        self.file = os.path.join(self.dir, "alerts.ndjson")
        self.config_path = os.path.join(self.dir, "custody-alerts.json")
        self.config = {
            "socket": env.tool_path,
            "state_dir": os.path.join(self.dir, "state"),
            "api_base": "https://127.0.0.1:%d" % env.idp.port,
            "ca_file": env.idp.ca_file,
            "interval_s": 10,
            "page_size": 50,
            "timeout_s": 5,
            "purpose": "SIEM alert pull (test)",
            "outputs": [{"type": "file", "path": self.file}],
        }
        self.proc = None

    def write(self):
        with open(self.config_path, "w") as f:
            json.dump(self.config, f, indent=2)

    def cmd(self, *args, timeout=60, env=None):
        self.write()
        e = dict(os.environ)
        e.pop("NOTIFY_SOCKET", None)
        e.update(env or {})
        wrap = os.environ.get("CUSTODY_ALERTS_WRAPPER", "").split()
        return subprocess.run(wrap + [CUSTODY_ALERTS] + list(args) + ["--config", self.config_path],
                              capture_output=True, text=True, timeout=timeout, env=e)

    def run(self, timeout=60, env=None):
        return self.cmd("run", "--once", timeout=timeout, env=env)

    def start(self, env=None, once=False):
        """custody-alerts run in the background; stderr to a log file."""
        self.write()
        e = dict(os.environ)
        e.update(env or {})
        self.log = open(os.path.join(self.dir, "run.log"), "ab")
        args = [CUSTODY_ALERTS, "run", "--config", self.config_path] + (["--once"] if once else [])
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=self.log, env=e)
        return self.proc

    def stop(self, sig=signal.SIGTERM, timeout=15):
        if self.proc is None:
            return None
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            rc = "hung"
        self.proc = None
        self.log.close()
        return rc

    def run_log(self):
        try:
            with open(os.path.join(self.dir, "run.log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def lines(self, path=None, torn_ok=False):
        """The complete lines of the file output, parsed. torn_ok: skip
        lines that are not JSON (a write cut by kill -9) instead of failing."""
        try:
            with open(path or self.file) as f:
                text = f.read()
        except FileNotFoundError:
            return []
        out = []
        for x in text.split("\n")[:-1]:    # a line still being written is not counted
            if not x.strip():
                continue
            try:
                out.append(json.loads(x))
            except ValueError:
                if not torn_ok:
                    raise
                self.torn = getattr(self, "torn", 0) + 1
        return out

    def status(self):
        p = self.cmd("status", "--json")
        if p.returncode != 0:
            raise Fail("status --json exited %d: %s" % (p.returncode, p.stderr))
        return json.loads(p.stdout)

    def tenant_status(self, tid):
        for t in self.status()["tenants"]:
            if t["tenant_id"] == tid:
                return t
        raise Fail("no status for tenant %s" % tid)

    def close(self):
        if self.proc is not None:
            try:
                self.proc.kill()
                self.proc.wait(10)
            except Exception:
                pass
            self.proc = None


def wait_file_lines(a, n, timeout=20, path=None):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = a.lines(path)
        if len(got) >= n:
            return got
        time.sleep(0.1)
    raise Fail("timed out waiting for %d alerts in %s (have %d)" % (n, path or a.file,
                                                                      len(a.lines(path))))


# ---- real receivers: rsyslog over TLS, a Splunk HEC stand-in, SMTP ----------

class Rsyslog(harness.Rsyslog):
    """The receiver the alerts tests read: "%msgid%|%structured-data%|%msg%"
    a line, its own test CA (self.ca)."""

    def __init__(self, base):
        super().__init__(base, "%msgid%|%structured-data%|%msg%")


CEF_KEY = "[A-Za-z0-9_]+"


def cef_unescape(s, header):
    out, i = [], 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            n = s[i + 1]
            out.append({"n": "\n", "r": "\r"}.get(n, n) if not header else n)
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def cef_parse(line):
    """A CEF line -> (header fields list, extension dict), unescaped."""
    import re
    if not line.startswith("CEF:"):
        raise Fail("not CEF: %r" % line[:80])
    fields, cur, i = [], [], 0
    while len(fields) < 7:
        c = line[i]
        if c == "\\":
            cur.append(line[i:i + 2])
            i += 2
            continue
        if c == "|":
            fields.append(cef_unescape("".join(cur), True))
            cur = []
            i += 1
            continue
        cur.append(c)
        i += 1
    ext = line[i:]
    pairs = {}
    # a key starts at the beginning or after a space, and is followed by an unescaped '='
    starts = [m for m in re.finditer(r"(?:^| )(%s)=" % CEF_KEY, ext)
              if not (m.start(1) > 0 and ext[m.start(1) - 1] == "\\")]
    for k, m in enumerate(starts):
        end = starts[k + 1].start() if k + 1 < len(starts) else len(ext)
        pairs[m.group(1)] = cef_unescape(ext[m.end():end], False)
    return fields, pairs


class HecServer:
    """A local HTTPS endpoint standing in for Splunk's HTTP Event Collector:
    keeps every request (path, headers, body); answers as Splunk does."""

    def __init__(self, base, token="11111111-2222-3333-4444-555555555555"):
        import http.server
        import ssl
        import threading
        from idp import make_certs
        self.dir = os.path.join(base, "hec")
        self.ca, cert, key = make_certs(self.dir)
        self.token = token
        self.requests = []
        self.refuse = False
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                outer.requests.append({"path": self.path, "headers": dict(self.headers),
                                       "body": body})
                ok = self.headers.get("Authorization") == "Splunk " + outer.token
                if outer.refuse or not ok:
                    status, ans = 403, {"text": "Invalid token", "code": 4}
                else:
                    status, ans = 200, {"text": "Success", "code": 0}
                data = json.dumps(ans).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.srv.daemon_threads = True
        self.srv.socket = ctx.wrap_socket(self.srv.socket, server_side=True)
        self.port = self.srv.server_address[1]
        self.url = "https://127.0.0.1:%d/services/collector/event" % self.port
        self.token_file = os.path.join(self.dir, "hec.token")
        with open(self.token_file, "w") as f:
            f.write(token + "\n")
        os.chmod(self.token_file, 0o600)
        self.thread = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.thread.start()

    def events(self):
        """Every event object received, in order (bodies are concatenated objects)."""
        out = []
        dec = json.JSONDecoder()
        for r in self.requests:
            s = r["body"].decode()
            i = 0
            while i < len(s):
                while i < len(s) and s[i] in " \r\n\t":
                    i += 1
                if i >= len(s):
                    break
                o, i = dec.raw_decode(s, i)
                out.append(o)
        return out

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()


class Smtp:
    """tests/fixtures/smtp.py (aiosmtpd under /usr/bin/python3) on loopback."""

    def __init__(self, base, name="smtp", starttls=True, require=True):
        from harness import SOURCE_DIR
        from idp import make_certs
        self.dir = os.path.join(base, name)
        self.maildir = os.path.join(self.dir, "mail")
        os.makedirs(self.maildir, exist_ok=True)
        args = ["/usr/bin/python3", os.path.join(SOURCE_DIR, "tests", "fixtures", "smtp.py"),
                "--dir", self.maildir]
        self.ca = None
        if starttls:
            self.ca, cert, key = make_certs(os.path.join(self.dir, "certs"))
            args += ["--tls-cert", cert, "--tls-key", key]
            if require:
                args.append("--require-starttls")
        self.log = open(os.path.join(self.dir, "smtp.log"), "ab")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self.log)
        line = self.proc.stdout.readline()
        if not line:
            raise Fail("the SMTP fixture did not start (python3-aiosmtpd installed?)")
        self.port = json.loads(line)["port"]
        self.url = "smtp://127.0.0.1:%d" % self.port

    def messages(self):
        """[(envelope dict, email.message.Message)] in arrival order."""
        import email
        import email.policy
        out = []
        for n in sorted(x for x in os.listdir(self.maildir) if x.endswith(".eml")):
            base = os.path.join(self.maildir, n[:-4])
            with open(base + ".json") as f:
                env = json.load(f)
            with open(base + ".eml", "rb") as f:
                raw = f.read()
            out.append((env, email.message_from_bytes(raw, policy=email.policy.default), raw))
        return out

    def stop(self):
        if self.proc is not None:
            harness.stop_process(self.proc)
            self.proc.stdout.close()
            self.proc = None
            self.log.close()
