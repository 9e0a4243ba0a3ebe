#!/usr/bin/env python3
"""custody-alerts' e-mail notification rules against a real SMTP server
(aiosmtpd, STARTTLS with a test CA) (DESIGN.md §12): one message per new
matching alert, parsed as MIME and checked against the rule's fields; the
severity, tenant and device-group filters; never twice (not after an
update, not after a restart); test-email; STARTTLS required against a
server that offers none is a clear error, and the message goes out once
the setting allows it."""

import email.utils
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Env  # noqa: E402
from alerts_env import Alerts, Smtp  # noqa: E402

env = smtp = None
SEV = {"Informational": 0, "Low": 1, "Medium": 2, "High": 3}


def setUpModule():
    global env, smtp
    env = Env("custody-alerts-mail")
    try:
        env.init_vault()
        env.start_idp()
        env.start_broker()
        smtp = Smtp(env.base)
    except BaseException:
        print(env.log_text(), file=sys.stderr)
        if smtp:
            smtp.stop()
        env.close()
        raise


def tearDownModule():
    try:
        smtp.stop()
        env.stop_broker()
    finally:
        env.close()


def tenant(name, count, **kw):
    g, tid = env.new_tenant(name)
    env.import_grant(g)
    env.idp.add_alerts(tid, count=count, **kw)
    return tid


def body_text(msg):
    return msg.get_body(preferencelist=("plain",)).get_content()


class Notify(unittest.TestCase):
    def test_rules_mime_and_never_twice(self):
        ta = tenant("mail-a", 8)
        tb = tenant("mail-b", 4, device_groups=["Servers"])
        a = Alerts(env, "rules")
        a.config["tenants"] = [ta, tb]
        a.config["smtp"] = {"url": smtp.url, "from": "custody-alerts@mssp.example",
                            "tls": "required", "ca_file": smtp.ca}
        a.config["notifications"] = [
            {"name": "SOC high", "min_severity": "Medium", "tenants": [], "device_groups": [],
             "include_org_name": True, "include_portal_link": True,
             "include_device_info": False, "to": ["soc@mssp.example"]},
            {"name": "Servers of A", "min_severity": "Informational", "tenants": ["mail-a"],
             "device_groups": ["servers"], "include_org_name": False,
             "include_portal_link": False, "include_device_info": True,
             "to": ["a-team@mssp.example", "lead@mssp.example"]},
        ]
        before = len(smtp.messages())
        p = a.run()
        self.assertEqual(p.returncode, 0, p.stderr)
        alerts = {x["id"]: x for x in a.lines()}
        want = []
        for x in alerts.values():
            if SEV[x["severity"]] >= SEV["Medium"]:
                want.append(("SOC high", x["id"]))
            if x["custody_tenant_id"] == ta and x["rbacGroupName"] == "Servers":
                want.append(("Servers of A", x["id"]))
        got = smtp.messages()[before:]
        self.assertEqual(len(got), len(want), [m["Subject"] for _, m, _ in got])
        seen = []
        for envl, m, raw in got:
            self.assertTrue(envl["tls"], "sent without STARTTLS")
            self.assertEqual(envl["mail_from"], "custody-alerts@mssp.example")
            aid = m["X-Custody-Alert-Id"]
            x = alerts[aid]
            rule = "SOC high" if envl["rcpt_tos"] == ["soc@mssp.example"] else "Servers of A"
            seen.append((rule, aid))
            # RFC 5322 / MIME
            self.assertIsNotNone(email.utils.parsedate_to_datetime(m["Date"]))
            self.assertRegex(m["Message-ID"], r"^<[0-9a-f-]{36}@mssp\.example>$")
            self.assertEqual(m.get_content_type(), "text/plain")
            self.assertEqual(m.get_content_charset(), "utf-8")
            self.assertEqual(m["MIME-Version"], "1.0")
            self.assertTrue(all(len(line) <= 998 for line in raw.split(b"\r\n")))
            body = body_text(m)
            subject = str(m["Subject"])
            self.assertTrue(subject.startswith("[%s] %s" % (x["severity"], x["title"])), subject)
            for field in ("title", "severity", "category", "status", "alertCreationTime", "id"):
                self.assertIn(x[field], body, field)
            self.assertNotIn("eyJ", raw.decode("ascii", "replace"))   # never a token
            if rule == "SOC high":
                self.assertEqual(m["To"], "soc@mssp.example")
                self.assertTrue(subject.endswith(" \u2014 " + x["custody_tenant"]), subject)
                self.assertIn(x["custody_portal_link"], body)
                self.assertIn("tid=" + x["custody_tenant_id"], body)
                self.assertNotIn(x["computerDnsName"], body)
            else:
                self.assertEqual(sorted(envl["rcpt_tos"]),
                                 ["a-team@mssp.example", "lead@mssp.example"])
                self.assertEqual(subject, "[%s] %s" % (x["severity"], x["title"]))
                self.assertNotIn("security.microsoft.com", body)
                self.assertIn(x["computerDnsName"], body)
                self.assertEqual(x["rbacGroupName"], "Servers")
                self.assertEqual(x["custody_tenant_id"], ta)
        self.assertEqual(sorted(seen), sorted(want))

        # never twice: not on the next pass, not after an update
        n = len(smtp.messages())
        env.idp.update_alerts(ta, count=8)
        env.idp.update_alerts(tb, count=4)
        p = a.run()
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(len(a.lines()), 24)       # the outputs get the updates
        self.assertEqual(len(smtp.messages()), n)  # the rules do not mail again
        st = a.status()["notifications"]
        self.assertEqual(st["sent"], len(want))
        self.assertEqual(st["failed"], 0)

        # test-email: one message, the seed's "Send test email"
        p = a.cmd("test-email", "--rule", "Servers of A")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("a-team@mssp.example", p.stdout)
        envl, m, raw = smtp.messages()[-1]
        self.assertEqual(len(smtp.messages()), n + 1)
        self.assertIn("[Test]", str(m["Subject"]))
        self.assertIn("Servers of A", body_text(m))
        p = a.cmd("test-email", "--rule", "no such rule")
        self.assertEqual(p.returncode, 2)
        self.assertIn("no notification rule", p.stderr)

    def test_starttls_required_but_not_offered(self):
        plain = Smtp(env.base, "plain-smtp", starttls=False)
        try:
            tid = tenant("mail-tls", 2, severities=["High"])
            a = Alerts(env, "tls")
            a.config["tenants"] = [tid]
            a.config["smtp"] = {"url": plain.url, "from": "alerts@mssp.example",
                                "tls": "required"}
            a.config["notifications"] = [{"name": "all", "to": ["soc@mssp.example"]}]
            p = a.run()
            self.assertEqual(p.returncode, 4, p.stderr)
            self.assertIn("offers no STARTTLS", p.stderr)
            self.assertIn('smtp.tls is "required"', p.stderr)
            self.assertEqual(plain.messages(), [])
            self.assertEqual(len(a.lines()), 2)            # the outputs still got them
            self.assertEqual(a.status()["notifications"]["failed"], 2)
            p = a.cmd("test-email", "--rule", "all")
            self.assertEqual(p.returncode, 4)
            self.assertIn("offers no STARTTLS", p.stderr)
            # allowed in clear: the failed messages go out, once each
            a.config["smtp"]["tls"] = "none"
            p = a.run()
            self.assertEqual(p.returncode, 0, p.stderr)
            got = plain.messages()
            self.assertEqual(len(got), 2)
            self.assertFalse(got[0][0]["tls"])
            ids = sorted(m["X-Custody-Alert-Id"] for _, m, _ in got)
            self.assertEqual(ids, sorted(x["id"] for x in env.idp.get_alerts(tid)))
            p = a.run()
            self.assertEqual(len(plain.messages()), 2)
        finally:
            plain.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
