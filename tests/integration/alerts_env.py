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
        return subprocess.run([CUSTODY_ALERTS] + list(args) + ["--config", self.config_path],
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

    def lines(self, path=None):
        try:
            with open(path or self.file) as f:
                return [json.loads(x) for x in f if x.strip()]
        except FileNotFoundError:
            return []

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
