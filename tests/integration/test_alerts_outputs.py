#!/usr/bin/env python3
"""custody-alerts' outputs against real receivers (DESIGN.md §12):
a real rsyslog over TLS (RFC 5425 framing) receiving CEF — every line
parsed back and compared with the alert, escaping included — and JSON; a
local HTTPS endpoint standing in for Splunk HEC (Authorization header, body
shape); and an output that refuses: a clear error naming it, the other
outputs still served, the alerts kept waiting and sent on the next pass."""

import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Env, free_port  # noqa: E402
from alerts_env import Alerts, HecServer, Rsyslog, cef_parse  # noqa: E402

env = rsyslog = None


def setUpModule():
    global env, rsyslog
    env = Env("custody-alerts-out")
    try:
        env.init_vault()
        env.start_idp()
        env.start_broker()
        rsyslog = Rsyslog(env.base).start()
    except BaseException:
        print(env.log_text(), file=sys.stderr)
        if rsyslog:
            rsyslog.stop()
        env.close()
        raise


def tearDownModule():
    try:
        rsyslog.stop()
        env.stop_broker()
    finally:
        env.close()


def tenant(name, count):
    g, tid = env.new_tenant(name)
    env.import_grant(g)
    env.idp.add_alerts(tid, count=count)
    return tid


def ms(t):
    import calendar
    import re
    m = re.match(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d+))?Z", t)
    secs = calendar.timegm(tuple(int(x) for x in m.groups()[:6]) + (0, 0, 0))
    return secs * 1000 + int((m.group(7) or "0").ljust(3, "0")[:3])


class Outputs(unittest.TestCase):
    def test_syslog_cef_and_json(self):
        tid = tenant("syslog-co", 12)
        a = Alerts(env, "syslog")
        a.config["tenants"] = [tid]
        a.config["outputs"] += [
            {"type": "syslog", "url": "tls://127.0.0.1:%d" % rsyslog.port,
             "ca_file": rsyslog.ca, "format": "cef"},
            {"type": "syslog", "url": "tls://localhost:%d" % rsyslog.port,
             "ca_file": rsyslog.ca, "format": "json"},
        ]
        before = len(rsyslog.lines())
        p = a.run()
        self.assertEqual(p.returncode, 0, p.stderr)
        lines = rsyslog.wait_lines(before + 24)[before:]
        delivered = {x["id"]: x for x in a.lines()}
        self.assertEqual(len(delivered), 12)
        cef = [x for x in lines if "CEF:0|" in x]
        js = [x for x in lines if "|{" in x]
        self.assertEqual((len(cef), len(js)), (12, 12), lines[:3])
        seen = set()
        for line in cef:
            msgid, rest = line.split("|", 1)
            self.assertEqual(msgid, "alert")
            sd, msg = rest.split("] ", 1) if "] CEF" in rest else rest.split("]|", 1)
            msg = msg[msg.index("CEF:"):]
            head, ext = cef_parse(msg)
            x = delivered[ext["externalId"]]
            seen.add(x["id"])
            self.assertIn('tenant_id="%s"' % tid, sd)
            self.assertIn('audit_seq="%d"' % x["custody_audit_seq"], sd)
            self.assertEqual(head[:4], ["CEF:0", "Microsoft", "Microsoft Defender ATP", "2.0"])
            self.assertEqual(head[4], x["category"])
            self.assertEqual(head[5], x["title"])   # '|', '\\' and UTF-8 survive
            self.assertEqual(int(head[6]), {"Informational": 3, "Low": 4, "Medium": 6,
                                            "High": 9}[x["severity"]])
            self.assertEqual(ext["deviceSeverity"], x["severity"])
            self.assertEqual(ext["deviceEventCategory"], x["category"])
            self.assertEqual(ext["sourceServiceName"], x["detectionSource"])
            self.assertEqual(ext["sourceHostName"], x["computerDnsName"])
            self.assertEqual(ext["flexString1"], x["custody_portal_link"])
            self.assertIn("tid=" + tid, ext["flexString1"])
            self.assertEqual(ext["deviceReceiptTime"], str(ms(x["alertCreationTime"])))
            self.assertEqual(ext["sourceUserName"], x["relatedUser"]["userName"])
            self.assertEqual(ext["sourceNtDomain"], x["relatedUser"]["domainName"])
            self.assertEqual(ext["fileName"], x["evidence"][0]["fileName"])
            self.assertEqual(ext["filePath"], x["evidence"][0]["filePath"])   # backslashes
            self.assertEqual(ext["fileHash"], x["evidence"][0]["sha1"])
            self.assertEqual(ext["cs4"], "syslog-co")
            self.assertEqual(ext["cs5"], tid)
            self.assertEqual(int(ext["cn1"]), x["custody_audit_seq"])
            if x.get("threatName"):
                self.assertEqual(ext["deviceCustomString1"], x["threatName"])
        self.assertEqual(seen, set(delivered))
        # the titles the fixture cycles through include '|', '=', '\\' and UTF-8
        titles = {x["title"] for x in delivered.values()}
        self.assertTrue(any("|" in t and "\\" in t for t in titles), titles)
        self.assertTrue(any("\u2014" in t for t in titles), titles)
        for line in js:
            obj = json.loads(line[line.index("|{") + 1:])
            self.assertEqual(obj, delivered[obj["id"]])

    def test_hec(self):
        hec = HecServer(env.base)
        try:
            tid = tenant("hec-co", 6)
            a = Alerts(env, "hec")
            a.config["tenants"] = [tid]
            a.config["outputs"].append({"type": "splunk_hec", "url": hec.url,
                                        "token_file": hec.token_file, "ca_file": hec.ca})
            p = a.run()
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertTrue(hec.requests, p.stdout + p.stderr)
            for r in hec.requests:
                self.assertEqual(r["path"], "/services/collector/event")
                self.assertEqual(r["headers"]["Authorization"], "Splunk " + hec.token)
                self.assertTrue(r["headers"]["Content-Type"].startswith("application/json"))
            ev = hec.events()
            delivered = {x["id"]: x for x in a.lines()}
            self.assertEqual(len(ev), 6)
            for e in ev:
                self.assertEqual(set(e), {"time", "host", "source", "sourcetype", "event"})
                self.assertEqual(e["source"], "custody-alerts")
                self.assertEqual(e["sourcetype"], "mde:alert")
                self.assertEqual(e["event"], delivered[e["event"]["id"]])
                self.assertAlmostEqual(e["time"] * 1000, ms(e["event"]["alertCreationTime"]),
                                       delta=1)
            # the token never shows in what the connector prints
            self.assertNotIn(hec.token, p.stderr + p.stdout)
            # a collector that refuses: a clear error naming the output
            hec.refuse = True
            env.idp.update_alerts(tid, count=1)
            p = a.run()
            self.assertEqual(p.returncode, 4, p.stderr)
            self.assertIn("outputs[1] (splunk_hec", p.stderr)
            self.assertIn("refused the token", p.stderr)
            self.assertNotIn(hec.token, p.stderr)
        finally:
            hec.stop()

    def test_refusing_output_waits_and_others_go_on(self):
        tid = tenant("refuse-co", 5)
        other = tenant("refuse-other", 3)
        dead = free_port()
        a = Alerts(env, "refuse")
        a.config["tenants"] = [tid, other]
        a.config["outputs"].append({"type": "syslog", "url": "tls://127.0.0.1:%d" % dead,
                                    "ca_file": rsyslog.ca, "format": "cef"})
        p = a.run()
        self.assertEqual(p.returncode, 4, p.stderr)
        self.assertIn("outputs[1] (syslog tls://127.0.0.1:%d)" % dead, p.stderr)
        self.assertIn("cannot connect", p.stderr)
        # the file output took every alert of both tenants
        self.assertEqual(len(a.lines()), 8)
        st = a.status()
        waiting = {o["output"].split(" ")[0]: o for o in st["outputs"]}
        self.assertEqual(waiting["outputs[1]"]["alerts_waiting"], 8)
        self.assertIn("cannot connect", waiting["outputs[1]"]["last_error"])
        self.assertEqual(waiting["outputs[0]"]["alerts_waiting"], 0)
        # the receiver comes back: the next pass sends what it missed
        a.config["outputs"][1]["url"] = "tls://127.0.0.1:%d" % rsyslog.port
        before = len(rsyslog.lines())
        p = a.run()
        self.assertEqual(p.returncode, 0, p.stderr)
        got = rsyslog.wait_lines(before + 8)[before:]
        ids = {cef_parse(x[x.index("CEF:"):])[1]["externalId"] for x in got if "CEF:" in x}
        want = {x["id"] for x in env.idp.get_alerts(tid) + env.idp.get_alerts(other)}
        self.assertEqual(ids, want)
        self.assertEqual(a.status()["outputs"][1]["alerts_waiting"], 0)
        # and the file output, which took them the first time, got no duplicates
        self.assertEqual(len(a.lines()), 8)
        self.assertEqual(sorted(x["id"] for x in a.lines()), sorted(want))
        # nothing waits any more: a third pass sends nothing anywhere
        before = len(rsyslog.lines())
        p = a.run()
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(len(a.lines()), 8)
        self.assertEqual(len(rsyslog.lines()), before)


if __name__ == "__main__":
    unittest.main(verbosity=2)
