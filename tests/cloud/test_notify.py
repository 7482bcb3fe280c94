"""Notification rules per customer mail through a real SMTP server (aiosmtpd on loopback): toner
under N %, an alert code, a box silent for N hours; each condition once until it clears; a mail
that could not be sent is tried again; `fleetbox-cloud notify` does the same from its config."""
import email
import email.policy
import os
import subprocess
import sys
import time

import pytest
from aiosmtpd.controller import Controller

from cloud import notify
from cloud.schema import boxes
from cloud.store import Store
from tests.cloud.tenants import World, wait_for

SMTP_HOST, SMTP_PORT = "127.77.50.1", 8025


class Inbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append((list(envelope.rcpt_tos), msg))
        return "250 OK"


@pytest.fixture
def inbox():
    box = Inbox()
    ctl = Controller(box, hostname=SMTP_HOST, port=SMTP_PORT)
    ctl.start()
    yield box
    ctl.stop()


@pytest.fixture
def world(database):
    store = Store(database)
    yield World(store)
    store.close()


def rule(world, customer, kind, to, threshold=None, code=None):
    with world.store.engine.begin() as c:
        return notify.add_rule(c, world.ids[customer], kind, to, threshold, code)


def test_rules_mail_each_condition_once_until_it_clears(world, inbox):
    smtp = notify.Smtp(SMTP_HOST, SMTP_PORT, "fleet@acme.example")
    toner = rule(world, "xeno", "toner", "ops@xeno.example, boss@xeno.example", threshold=20)
    rule(world, "yarn", "alert", "ops@yarn.example", code="tonerLow")
    rule(world, "zinc", "alert", "ops@zinc.example", code="paperJam")          # nothing matches
    silent = rule(world, "zinc", "silent", "ops@zinc.example", threshold=2)
    assert notify.run_once(world.store.engine, smtp) == 2
    by_to = {tuple(to): msg for to, msg in inbox.messages}
    assert set(by_to) == {("ops@xeno.example", "boss@xeno.example"), ("ops@yarn.example",)}
    xeno = by_to[("ops@xeno.example", "boss@xeno.example")]
    assert xeno["Subject"] == "fleetbox: Xeno: 1 printer(s) under 20 % toner"
    assert xeno["From"] == "fleet@acme.example"
    assert "serial X-P0" in xeno.get_content() and "Black Toner 16 %" in xeno.get_content()
    assert "X-P1" not in xeno.get_content()                                    # its toner is at 80 %
    yarn = by_to[("ops@yarn.example",)]
    assert "serial Y-P1" in yarn.get_content() and "Toner low" in yarn.get_content()
    # nothing new: nothing sent
    assert notify.run_once(world.store.engine, smtp) == 0
    # three hours later Zinc's box has been silent too long; the others are still known
    assert notify.run_once(world.store.engine, smtp, now=time.time() + 3 * 3600) == 1
    to, msg = inbox.messages[-1]
    assert to == ["ops@zinc.example"] and msg["Subject"] == "fleetbox: Zinc: 1 box(es) silent for over 2 h"
    assert "box FBX-Z at Zinc Yard" in msg.get_content()
    # Xeno's toner is replaced: the condition clears; when it runs low again it is mailed again
    from tests.cloud.tenants import record
    world.store.store_upload("FBX-X", 10, 10, {"scan": "full", "cycle": 1, "base": None, "seen": [],
                                               "records": [record("FBX-X", 0, 5, toner=100)]}, "liberty", 1)
    assert notify.run_once(world.store.engine, smtp) == 0
    world.store.store_upload("FBX-X", 11, 11, {"scan": "full", "cycle": 2, "base": None, "seen": [],
                                               "records": [record("FBX-X", 0, 6, toner=5)]}, "liberty", 1)
    assert notify.run_once(world.store.engine, smtp) == 1
    assert "Black Toner 5 %" in inbox.messages[-1][1].get_content()
    with world.store.engine.begin() as c:
        c.execute(boxes.update().where(boxes.c.box == "FBX-Z").values(last_seen=time.time() + 3 * 3600))
    assert notify.run_once(world.store.engine, smtp, now=time.time() + 3 * 3600) == 0
    assert toner and silent


def test_a_mail_that_cannot_be_sent_is_tried_again(world, inbox):
    rule(world, "xeno", "toner", "ops@xeno.example", threshold=20)
    down = notify.Smtp("127.77.50.2", SMTP_PORT, timeout_s=2)                    # nobody listens there
    assert notify.run_once(world.store.engine, down) == 0 and inbox.messages == []
    assert notify.run_once(world.store.engine, notify.Smtp(SMTP_HOST, SMTP_PORT)) == 1
    assert len(inbox.messages) == 1


def test_rules_are_checked_when_added():
    for bad in [("toner", "a@b", None, None), ("alert", "a@b", None, None), ("silent", "a@b", -1, None),
                ("toner", "not an address", 10, None), ("hot", "a@b", 1, None)]:
        with pytest.raises(notify.NotifyError):
            notify.add_rule(None, 1, bad[0], bad[1], bad[2], bad[3])


def test_the_notify_command_reads_smtp_from_the_config(tmp_path, inbox):
    database = "sqlite:///%s" % (tmp_path / "cloud.sqlite")
    store = Store(database)
    world = World(store)
    rule(world, "xeno", "toner", "ops@xeno.example", threshold=20)
    store.close()
    cfg = tmp_path / "cloud.toml"
    cfg.write_text('database = "%s"\nmanifest = "m.json"\n[[listener]]\nname = "liberty"\ncert = "c"\nkey = "k"\n'
                   '[smtp]\nhost = "%s"\nport = %d\nsender = "fleet@acme.example"\n'
                   % (database, SMTP_HOST, SMTP_PORT))
    r = subprocess.run([sys.executable, "-m", "cloud", "notify", "--config", str(cfg)], capture_output=True,
                       text=True, timeout=120, cwd=os.getcwd())
    assert r.returncode == 0 and "1 mail(s) sent" in r.stdout, r.stderr
    assert wait_for(lambda: len(inbox.messages) == 1)
    assert inbox.messages[0][1]["From"] == "fleet@acme.example"


def test_the_service_checks_the_rules_itself_when_smtp_has_every_s(tmp_path, inbox):
    from tests.cloud.service import Service
    database = "sqlite:///%s" % (tmp_path / "cloud.sqlite")
    store = Store(database)
    world = World(store)
    rule(world, "yarn", "alert", "ops@yarn.example", code="tonerLow")
    store.close()
    svc = Service(str(tmp_path), database, workers=1, endpoints={"liberty": "127.77.50.3"},
                  extra_toml=["[smtp]", 'host = "%s"' % SMTP_HOST, "port = %d" % SMTP_PORT, "every_s = 0.5"])
    svc.start()
    try:
        assert wait_for(lambda: len(inbox.messages) == 1, timeout=30), svc.log_text()[-2000:]
        time.sleep(1.5)                                   # three more checks: nothing new, nothing sent
        assert len(inbox.messages) == 1 and inbox.messages[0][0] == ["ops@yarn.example"]
    finally:
        assert svc.stop() == 0
    assert [e["to"] for e in svc.logs() if e.get("event") == "notified"] == ["ops@yarn.example"]
