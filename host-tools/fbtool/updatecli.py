"""fbtool update publish|root|status: drive the cloud's update service (cloud/updates.py,
docs/update-protocol.md) over HTTPS. The service gets the signed image and its content key
(to wrap it per box), never a signing key. Operator routes want a user whose role may roll out
(administrator, manager): its API token comes as fbtool cloud's does (file, environment, prompt)."""
import json
import os
import ssl
import urllib.error
import urllib.request

from .cloudcli import TOKEN_ENV, api_token
from .errors import FatalError


class UpdateServiceError(FatalError):
    pass


def _call(args, method, path, body=None, headers=None):
    ctx = ssl.create_default_context(cafile=args.ca) if args.ca else ssl.create_default_context()
    h = dict(headers or {})
    h["Authorization"] = "Bearer " + api_token(args.token_file)
    req = urllib.request.Request(args.service.rstrip("/") + path, body, h, method=method)
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=60) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        try:
            reason = json.loads(e.read()).get("reason")
        except ValueError:
            reason = None
        raise UpdateServiceError("update service: HTTP %d %s" % (e.code, reason or e.reason))
    except (urllib.error.URLError, OSError) as e:
        raise UpdateServiceError("update service %s unreachable: %s" % (args.service, getattr(e, "reason", e)),
                                 hint="check --service and --ca")


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise UpdateServiceError("cannot read %s: %s" % (path, e.strerror))


def cmd_publish(args):
    data = _read(args.image)
    key = _read(args.content_key or args.image + ".key").strip().decode()
    _, got = _call(args, "POST", "/v1/updates/images", data, {"X-Content-Key": key})
    print("published %s %s for %s: image %s (%d bytes)" % (got["kind"], got["version"], got["board"], got["image"],
                                                           got["size"]))
    if args.boxes or args.percent or args.all or args.rescue:
        spec = {"image": got["image"], "max_failure_rate": args.max_failure_rate, "min_reports": args.min_reports}
        if args.rescue:
            spec["rescue"] = True
        elif args.all:
            spec["all"] = True
        elif args.boxes:
            spec["boxes"] = args.boxes
        else:
            spec["percent"] = args.percent
        _, r = _call(args, "POST", "/v1/updates/rollouts", json.dumps(spec).encode(),
                     {"Content-Type": "application/json"})
        print("rollout %d: %s" % (r["rollout"], "the rescue image of board %s" % got["board"] if args.rescue else
                                  "all boxes" if args.all else
                                  ("%d%% of the boxes" % args.percent if args.percent else ", ".join(args.boxes))))
    return 0


def cmd_root(args):
    _, got = _call(args, "POST", "/v1/updates/roots", _read(args.root))
    print("root version %d published: offers name it, boxes walk to it" % got["root"])
    return 0


def cmd_status(args):
    _, got = _call(args, "GET", "/v1/updates/rollouts" + ("/%d" % args.rollout if args.rollout else ""))
    for r in got if isinstance(got, list) else [got]:
        target = {"all": "all", "percent": "%s%%" % r["percent"], "rescue": "rescue"}.get(r["target"],
                                                                                        ",".join(r["boxes"] or []))
        counts = ", ".join("%s %d" % kv for kv in sorted(r["counts"].items())) or "no reports"
        print("rollout %d  image %s  to %s  %s%s  [%s]" % (r["id"], r["image"][:16], target, r["state"],
                                                          " (%s)" % r["halted_reason"] if r["halted_reason"] else "",
                                                          counts))
        if args.rollout:
            for p in r["progress"]:
                print("  %-20s %-12s %s" % (p["box"], p["state"], p["reason"] or ""))
    return 0


def register(sub):
    u = sub.add_parser("update", help="publish signed images and follow rollouts on the update service")
    u.add_argument("--service", default=os.environ.get("FLEETBOX_UPDATE_URL", "https://127.0.0.1:8443"),
                   help="the cloud endpoint's base URL (env FLEETBOX_UPDATE_URL)")
    u.add_argument("--ca", help="CA certificate (PEM) the service's certificate is checked against")
    u.add_argument("--token-file", help="file holding your API token (else $%s, else a prompt)" % TOKEN_ENV)
    us = u.add_subparsers(dest="action", required=True)
    p = us.add_parser("publish", help="upload a signed .fbu and its content key; optionally start a rollout")
    p.add_argument("image", metavar="IMAGE.fbu")
    p.add_argument("--content-key", metavar="FILE", help="default IMAGE.fbu.key (written by fbtool image sign)")
    p.add_argument("--boxes", nargs="+", metavar="SERIAL", help="roll out to these boxes")
    p.add_argument("--percent", type=int, help="roll out to this share of the fleet (1..100)")
    p.add_argument("--all", action="store_true", help="roll out to every box")
    p.add_argument("--rescue", action="store_true",
                   help="mark it as the rescue image of its board: what a box with no bootable slot fetches")
    p.add_argument("--max-failure-rate", type=float, default=0.2, help="halt when this share of reports failed")
    p.add_argument("--min-reports", type=int, default=3, help="reports needed before the halt rule applies")
    p.set_defaults(func=cmd_publish)
    r = us.add_parser("root", help="publish root metadata (fbtool root rotate): offers carry its version")
    r.add_argument("root", metavar="ROOT.fbr")
    r.set_defaults(func=cmd_root)
    s = us.add_parser("status", help="rollouts, their state and every box's progress")
    s.add_argument("rollout", nargs="?", type=int)
    s.set_defaults(func=cmd_status)
