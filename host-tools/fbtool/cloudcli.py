"""fbtool factory and fbtool cloud: make a box's factory identity; claim, configure, revoke boxes
through the cloud's HTTP API as a dealer's user would (docs/provisioning.md).

Secrets (the user's API token from `fleetbox-cloud admin DB token`, a claim code) come from a
file, the environment or a prompt, and are never printed."""
import getpass
import json
import os
import sys

from .errors import FatalError

TOKEN_ENV = "FLEETBOX_TOKEN"
CODE_ENV = "FLEETBOX_CLAIM_CODE"


def _secret(file_arg, env, prompt, what):
    if file_arg:
        try:
            with open(file_arg) as f:
                return f.read().strip()
        except OSError as e:
            raise FatalError("cannot read the %s from %s: %s" % (what, file_arg, e.strerror))
    if os.environ.get(env):
        return os.environ[env]
    if sys.stdin.isatty():
        return getpass.getpass(prompt)
    raise FatalError("no %s" % what, hint="give --%s-file FILE or set %s" % (what.split()[-1], env))


def cmd_factory(args):
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from . import factory
    ca = factory.ensure_factory_ca(args.factory_dir)
    try:
        with open(args.server_ca, "rb") as f:
            server_ca = x509.load_pem_x509_certificate(f.read())
    except (OSError, ValueError) as e:
        raise FatalError("cannot read the server CA %s: %s" % (args.server_ca, e))
    endpoints = [factory.parse_endpoint(e) for e in args.endpoint]
    if not endpoints or not args.pin:
        raise FatalError("a box needs at least one --endpoint and one --pin to provision")
    identity, entry, code = factory.make(args.serial, ca, server_ca.public_bytes(serialization.Encoding.DER),
                                         args.pin, endpoints)
    factory.write_identity(args.output, identity)
    factory.add_to_manifest(args.manifest, args.serial, entry)
    factory.write_label(args.label, args.serial, code)
    print("factory identity %s -> %s; manifest %s; label (claim code) %s" % (
        args.serial, args.output, args.manifest, args.label))
    return 0


def api_token(token_file):
    """The user's API token (fbt_...): --token-file, else $FLEETBOX_TOKEN, else a prompt."""
    return _secret(token_file, TOKEN_ENV, "API token: ", "API token")


def _call(args, method, path, body=None):
    import requests
    token = api_token(args.token_file)
    url = args.url.rstrip("/") + path
    try:
        r = requests.request(method, url, json=body, timeout=args.timeout, verify=args.ca or True,
                             headers={"Authorization": "Bearer " + token})
    except requests.RequestException as e:
        raise FatalError("cannot reach %s: %s" % (url, type(e).__name__), hint="check --url and --ca")
    try:
        out = r.json()
    except ValueError:
        out = {}
    if r.status_code >= 400:
        raise FatalError("%s refused: HTTP %d %s" % (path, r.status_code, out.get("reason", "") if
                                                      isinstance(out, dict) else ""))
    return out


def cmd_cloud(args):
    if args.action == "claim":
        code = _secret(args.code_file, CODE_ENV, "claim code (from the label): ", "claim code")
        if args.site is None:
            raise FatalError("claim needs --site SITE_ID",
                             hint="the site's id, as `fleetbox-cloud admin DB site` printed it")
        _call(args, "POST", "/v1/claim", {"serial": args.serial, "code": code, "site": args.site})
        print("claimed %s for site %d" % (args.serial, args.site))
    elif args.action in ("unclaim", "revoke", "release", "rotate-key"):
        out = _call(args, "POST", "/v1/" + args.action, {"serial": args.serial})
        print("%s %s: done%s" % (args.action, args.serial, " (key %d)" % out["kid"] if "kid" in out else ""))
    elif args.action == "config":
        try:
            with open(args.file) as f:
                cfg = json.load(f)
        except (OSError, ValueError) as e:
            raise FatalError("cannot read the configuration %s: %s" % (args.file, e))
        out = _call(args, "PUT", "/v1/config", {"serial": args.serial, "config": cfg})
        print("configuration %d for %s stored; the box takes it at its next contact" % (out["version"], args.serial))
    else:
        out = _call(args, "GET", "/v1/provisioning" + ("?serial=" + args.serial if args.serial else ""))
        print(json.dumps(out, indent=1))
    return 0


def register(sub):
    f = sub.add_parser("factory", help="create a box's factory identity: key, certificate, claim code, manifest")
    f.add_argument("serial")
    f.add_argument("-o", "--output", required=True, help="identity JSON for the box's identity partition (0600)")
    f.add_argument("--manifest", required=True, help="the cloud's manufacturing manifest (public material, 0600)")
    f.add_argument("--label", required=True, help="the label's text with the claim code (0600)")
    f.add_argument("--factory-dir", required=True, help="folder of the factory CA (created on first use)")
    f.add_argument("--server-ca", required=True, help="PEM of the CA of the cloud's servers")
    f.add_argument("--pin", action="append", default=[], help="hex SPKI SHA-256 of a server key (repeatable)")
    f.add_argument("--endpoint", action="append", default=[], metavar="NAME=URL[@ADDRESS]",
                   help="provisioning endpoint, liberty first (repeatable)")
    f.set_defaults(func=cmd_factory)

    c = sub.add_parser("cloud", help="the dealer's side: claim, configure, revoke boxes in the cloud (as a user)")
    c.add_argument("action", choices=("claim", "unclaim", "revoke", "release", "rotate-key", "config", "status"))
    c.add_argument("serial", nargs="?")
    c.add_argument("--url", required=True, help="the cloud's base URL (https://host:port)")
    c.add_argument("--ca", help="PEM of the cloud's CA (default: the system's)")
    c.add_argument("--token-file", help="file holding your API token (else $%s, else a prompt)" % TOKEN_ENV)
    c.add_argument("--code-file", help="claim: file holding the claim code (else $%s, else a prompt)" % CODE_ENV)
    c.add_argument("--site", type=int, help="claim: the id of your dealer's customer site the box goes to")
    c.add_argument("--file", help="config: the configuration JSON")
    c.add_argument("--timeout", type=float, default=15)
    c.set_defaults(func=cmd_cloud)


def label_code(path):
    """The claim code printed on a label written by fbtool factory."""
    with open(path) as f:
        for line in f:
            if line.startswith("claim code "):
                return line.split(None, 2)[2].strip()
    raise FatalError("%s holds no claim code" % path)

