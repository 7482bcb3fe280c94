"""The dashboard over the real service: in headless Chromium (Debian's chromium, driven by Playwright)
a fleet manager signs in, finds a printer and sees its toner bar; a customer's user cannot open
another customer's printer; every asset comes from the service. A screenshot of the device page
is kept under build/test-artefacts/ (the test prints where). Plain HTTPS checks of the pages too."""
import csv
import itertools
import os
import shutil
import urllib.parse

import pytest
from playwright.sync_api import sync_playwright

from cloud import audit
from cloud.app import Limits
from tests.cloud.tenants import PASSWORD, World, http_for
from tests.uplink_kit import Kit

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ARTEFACTS = os.environ.get("FLEETBOX_ARTEFACTS", os.path.join(ROOT, "build", "test-artefacts"))
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
_hosts = itertools.count(10)


@pytest.fixture
def world(tmp_path):
    d = tmp_path / "cloud"
    d.mkdir()
    h = next(_hosts)
    kit = Kit(str(d), ("127.77.44.%d" % h, 0), ("127.77.45.%d" % h, 0),
              limits=Limits(max_body=65536, body_timeout_s=5.0)).start()
    w = World(kit.store)
    w.kit, w.http = kit, http_for(kit)
    r = kit.cloud.receivers["liberty"]
    w.base = "https://%s:%d" % (r.address, r.port)
    yield w
    kit.stop()


def _login(world, email, password=PASSWORD, next_=""):
    body = urllib.parse.urlencode({"email": email, "password": password, "next": next_}).encode()
    return world.http.request("POST", "/portal/login", body=body,
                              headers={"Content-Type": "application/x-www-form-urlencoded"})


def test_pages_need_a_session_and_show_only_the_callers_printers(world):
    status, headers, _ = world.http.request("GET", "/portal/device?box=FBX-X&device=X-P0")
    assert status == 303
    assert headers["location"] == "/portal/login?next=%2Fportal%2Fdevice%3Fbox%3DFBX-X%26device%3DX-P0"
    status, _, body = _login(world, "manager@acme.example", "wrong password")
    assert status == 401 and b"Wrong e-mail or password." in body
    status, headers, _ = _login(world, "user@yarn.example", next_="/portal/device?box=FBX-Y&device=Y-P1")
    assert status == 303 and headers["location"] == "/portal/device?box=FBX-Y&device=Y-P1"
    cookie = headers["set-cookie"]
    assert {"secure", "httponly", "samesite=strict"} <= {p.strip().lower() for p in cookie.split(";")}
    cookie = cookie.split(";")[0]
    status, headers, body = world.http.request("GET", "/portal/", cookie=cookie)
    assert status == 200 and "default-src 'self'" in headers["content-security-policy"]
    assert b"Y-P0" in body and b"Y-P1" in body and b"X-P0" not in body and b"Z-P0" not in body
    assert b"tonerLow" in body                                        # the open alert
    assert world.http.request("GET", "/portal/device?box=FBX-X&device=X-P0", cookie=cookie)[0] == 404
    status, _, body = world.http.request("GET", "/portal/device?box=FBX-Y&device=Y-P1", cookie=cookie)
    assert status == 200 and b'aria-valuenow="80"' in body and b'data-points="3"' in body
    # the API takes a token, not the page's cookie as a bearer; the cookie works for the API as a session
    assert world.http.request("GET", "/v1/boxes", cookie=cookie)[0] == 200
    status, headers, _ = world.http.request("POST", "/portal/logout", cookie=cookie)
    assert status == 303 and headers["location"] == "/portal/login"
    assert world.http.request("GET", "/portal/", cookie=cookie)[0] == 303       # the session is gone
    for email, status in (("manager@acme.example", 200), ("analyst@acme.example", 403)):
        cookie = _login(world, email)[1]["set-cookie"].split(";")[0]
        got, _, body = world.http.request("GET", "/portal/audit", cookie=cookie)
        assert got == status and (b"sign-in-failed" in body) == (status == 200), email
        assert (b'href="/portal/audit"' in body) == (status == 200)
        world.http.request("POST", "/portal/logout", cookie=cookie)
    status, headers, body = world.http.request("GET", "/portal/static/portal.css")
    assert status == 200 and headers["content-type"].startswith("text/css") and b"--accent" in body
    with world.store.engine.begin() as c:
        log = audit.entries(c, world.ids["acme"])
    assert [(e["actor"], e["action"]) for e in reversed(log)] == [
        ("manager@acme.example", "sign-in-failed"), ("user@yarn.example", "sign-in"),
        ("user@yarn.example", "sign-out"), ("manager@acme.example", "sign-in"), ("manager@acme.example", "sign-out"),
        ("analyst@acme.example", "sign-in"), ("analyst@acme.example", "sign-out")]


def test_a_fleet_manager_signs_in_finds_a_printer_and_sees_its_toner_bar_in_chromium(world):
    os.makedirs(ARTEFACTS, exist_ok=True)
    shot = os.path.join(ARTEFACTS, "portal-device.png")
    print("\nscreenshots in %s" % ARTEFACTS)
    outside = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            ctx = browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 900})
            page = ctx.new_page()
            page.on("request", lambda r: None if r.url.startswith(world.base) else outside.append(r.url))
            page.goto(world.base + "/portal/")
            assert page.url.startswith(world.base + "/portal/login")
            page.fill("#email", "manager@acme.example")
            page.fill("#password", "not the password")
            page.click("#sign-in")
            assert page.locator(".error").inner_text() == "Wrong e-mail or password."
            page.fill("#password", PASSWORD)
            page.click("#sign-in")
            page.wait_for_url(world.base + "/portal/")
            serials = page.locator("#fleet td.serial").all_inner_texts()
            assert sorted(serials) == ["X-P0", "X-P1", "Y-P0", "Y-P1"]          # Acme's, not Bolt's
            assert page.locator("#boxes tbody tr").count() == 2
            page.screenshot(path=os.path.join(ARTEFACTS, "portal-fleet.png"), full_page=True)
            page.fill('.export input[name="from"]', "2026-01-01")
            page.fill('.export input[name="to"]', "2027-01-01")
            page.select_option('.export select[name="kind"]', "period")
            with page.expect_download() as dl:
                page.click("#export")
            with open(dl.value.path(), encoding="utf-8") as f:
                billed = {r["serial"]: r for r in csv.DictReader(f)}
            assert set(billed) == {"X-P0", "X-P1", "Y-P0", "Y-P1"} and billed["X-P0"]["total_pages"] == "240"
            page.fill("#search", "X-P0")
            page.click("#find")
            page.wait_for_url("**/portal/?q=X-P0")
            rows = page.locator("#fleet tbody tr")
            assert rows.count() == 1 and "Xeno HQ" in rows.inner_text()
            assert rows.locator("td").nth(7).inner_text() == "16 %"             # lowest supply
            rows.locator("a").click()
            page.wait_for_url("**/portal/device?*")
            assert page.locator("#serial").inner_text() == "X-P0"
            black = page.locator('.supply[data-colour="black"]')
            assert black.get_attribute("data-percent") == "16"
            assert black.locator("svg.bar").get_attribute("aria-valuenow") == "16"
            fill = black.locator("rect.fill").bounding_box()
            track = black.locator("rect.track").bounding_box()
            assert track["width"] == 200 and abs(fill["width"] - 32) < 0.5     # 16 % of the bar, drawn
            assert page.locator("svg.chart").get_attribute("data-points") == "3"
            assert page.locator("svg.chart circle").count() == 3
            page.screenshot(path=shot, full_page=True)
            page.click("#sign-out")
            page.wait_for_url("**/portal/login")
            ctx.close()
        finally:
            browser.close()
    assert outside == []
    assert os.path.getsize(shot) > 10000
    with open(shot, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with world.store.engine.begin() as c:
        actions = [e["action"] for e in reversed(audit.entries(c, world.ids["acme"]))]
    assert actions == ["sign-in-failed", "sign-in", "export", "sign-out"]
