"""The dashboard: server-rendered pages for fleet managers, technicians and customers.

/portal/login, /portal/logout    sign in (a session cookie) and out; both audited
/portal/                         the fleet table (?q= finds a printer), open alerts, the boxes' health
/portal/device?box=B&device=D    one printer: counter history as a chart, supply levels as bars, alerts
/portal/audit                    the dealer's audit log (administrators, managers)
/portal/static/...               the stylesheet: every asset comes from the service (no CDN)

Charts and bars are inline SVG drawn here, so the page needs no script and a strict
Content-Security-Policy holds. Data comes through cloud.readapi's per-tenant queries only.
"""
import os
import time
import urllib.parse

import jinja2
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from cloud import accounts, readapi
from cloud import audit as audit_mod
from cloud.audit import audit
from cloud.auth import COOKIE, caller
from cloud.export import iso
from cloud.portal.chart import counter_chart, supply_bars
from cloud.tenancy import box_places

HERE = os.path.dirname(os.path.abspath(__file__))
HEADERS = {"content-security-policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                                      "form-action 'self'; frame-ancestors 'none'",
           "x-content-type-options": "nosniff", "referrer-policy": "same-origin", "cache-control": "no-store"}
MAX_FORM = 4096

env = jinja2.Environment(loader=jinja2.FileSystemLoader(os.path.join(HERE, "templates")),
                         autoescape=jinja2.select_autoescape(default=True), trim_blocks=True, lstrip_blocks=True)
env.filters["when"] = lambda ts: iso(ts).replace("T", " ").replace("Z", " UTC") if ts else "never"
env.filters["ago"] = lambda ts: _ago(ts)
env.filters["number"] = lambda n: "{:,}".format(n).replace(",", "\u202f") if isinstance(n, int) else (n or "")


def _ago(ts):
    if not ts:
        return "never"
    s = max(0, int(time.time() - ts))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= size:
            return "%d %s ago" % (s // size, unit)
    return "%d s ago" % s


def _page(name, status=200, **ctx):
    return HTMLResponse(env.get_template(name).render(**ctx), status, headers=HEADERS)


class Portal:
    def __init__(self, store):
        self.store = store

    def _signed_in(self, request):
        with self.store.engine.begin() as conn:
            return caller(request, conn)

    # -- sign in and out
    async def login(self, request):
        if request.method == "GET":
            return _page("login.html", next=request.query_params.get("next", ""))
        body = await request.body()
        if len(body) > MAX_FORM:
            return Response(b"", 413)
        form = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode("utf-8", "replace")).items()}
        return await run_in_threadpool(self._login, request, form)

    def _login(self, request, form):
        email, password = form.get("email", ""), form.get("password", "")
        client = request.client.host if request.client else "-"
        with self.store.engine.begin() as conn:
            user = accounts.sign_in(conn, email, password)
            if user is None:
                audit(conn, email or "-", "sign-in-failed", "portal", {"client": client},
                      dealer_id=accounts.dealer_of(conn, email))
            else:
                secret = accounts.issue(conn, user.id, "session", "portal")
                audit(conn, user, "sign-in", "portal", {"client": client})
        if user is None:
            return _page("login.html", 401, error="Wrong e-mail or password.", email=email, next=form.get("next", ""))
        nxt = form.get("next", "")
        resp = RedirectResponse(nxt if nxt.startswith("/portal/") else "/portal/", 303)
        resp.set_cookie(COOKIE, secret, max_age=accounts.SESSION_TTL_S, path="/", secure=True, httponly=True,
                        samesite="strict")
        return resp

    async def logout(self, request):
        return await run_in_threadpool(self._logout, request)

    def _logout(self, request):
        secret = request.cookies.get(COOKIE)
        with self.store.engine.begin() as conn:
            user = caller(request, conn)
            if secret:
                accounts.revoke(conn, secret)
            if user is not None:
                audit(conn, user, "sign-out", "portal")
        resp = RedirectResponse("/portal/login", 303)
        resp.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="strict")
        return resp

    # -- pages
    def _with_user(self, request, render):
        with self.store.engine.begin() as conn:
            user = caller(request, conn)
            if user is None:
                target = request.url.path + ("?" + request.url.query if request.url.query else "")
                return RedirectResponse("/portal/login?" + urllib.parse.urlencode({"next": target}), 303)
            return render(conn, user)

    async def fleet(self, request):
        return await run_in_threadpool(self._with_user, request, lambda conn, user: self._fleet(request, conn, user))

    def _fleet(self, request, conn, user):
        search = request.query_params.get("q", "").strip()
        rows = readapi.fleet(conn, user, search or None)
        everything = rows if not search else readapi.fleet(conn, user)
        alerts = [r for r in everything if r["alerts"]]
        today = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 86400))   # the window ends before `to`
        month = time.strftime("%Y-%m-01", time.gmtime())
        return _page("fleet.html", user=user, rows=rows, search=search, alerts=alerts,
                     boxes=readapi.box_list(conn, user), now=time.time(), month=month, today=today)

    async def device(self, request):
        return await run_in_threadpool(self._with_user, request, lambda conn, user: self._device(request, conn, user))

    def _device(self, request, conn, user):
        q = request.query_params
        box, dev = q.get("box", ""), q.get("device", "")
        rec = readapi.one_device(conn, user, box, dev)
        if rec is None:
            return _page("missing.html", 404, user=user)
        hist = readapi.history(conn, user, box, dev, 500)
        place = box_places(conn, [box]).get(box) or {}
        return _page("device.html", user=user, box=box, device=dev, rec=rec, place=place,
                     chart=counter_chart(hist), bars=supply_bars(rec.get("supplies") or []),
                     alerts=readapi.open_alerts(rec), readings=len(hist))

    async def audit_page(self, request):
        return await run_in_threadpool(self._with_user, request, self._audit)

    def _audit(self, conn, user):
        if not user.may("audit"):
            return _page("missing.html", 403, user=user, what="The audit log is for administrators and managers.")
        return _page("audit.html", user=user, entries=audit_mod.entries(conn, user.dealer_id, 200))

    async def home(self, request):
        return RedirectResponse("/portal/", 303)

    def routes(self):
        return [Route("/", self.home), Route("/portal", self.home),
                Route("/portal/login", self.login, methods=["GET", "POST"]),
                Route("/portal/logout", self.logout, methods=["POST"]),
                Route("/portal/", self.fleet), Route("/portal/device", self.device),
                Route("/portal/audit", self.audit_page),
                Mount("/portal/static", StaticFiles(directory=os.path.join(HERE, "static")), name="static")]


def routes(store):
    return Portal(store).routes()
