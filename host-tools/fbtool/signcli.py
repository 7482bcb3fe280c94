"""fbtool's key, root-metadata and update-image commands (docs/update-image.md)."""
import json
import os
import time

from .keys import SigningError


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise SigningError("cannot read %s: %s" % (path, e.strerror))


def _write(path, data, private=False):
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def when(text):
    """'90d' / '12h' from now, or absolute UNIX seconds."""
    try:
        if text[-1:] in ("d", "h"):
            return int(time.time()) + int(text[:-1]) * (86400 if text[-1] == "d" else 3600)
        return int(text)
    except ValueError:
        raise SigningError("time %r: want UNIX seconds or a count of d(ays)/h(ours) from now" % text)


def cmd_keygen(args):
    from . import keys
    key_id, pub = keys.generate(args.output, args.bits)
    print("key %s (RSA-%d, PSS/SHA-256) -> %s (0600), public %s" % (key_id.hex(), args.bits, args.output, pub))
    return 0


def _publics(paths):
    from . import keys
    return [keys.load_public(p) for p in paths]


def _signers(args):
    from . import keys
    paths = args.sign or [p for p in args.key if b"PRIVATE KEY" in _read(p)]
    if not paths:
        raise SigningError("no private key to sign with: give --sign KEY.pem")
    return [keys.load_private(p) for p in paths]


def cmd_root(args):
    from . import signing
    if args.action == "verify":
        chain = [_read(p) for p in args.files]
        root = signing.verify_chain(chain[0], chain[1:], args.min_time)
        print("root metadata version %d verified (%d file%s), expires %d; root %d-of-%d, image %d-of-%d" % (
            root.version, len(chain), "" if len(chain) == 1 else "s", root.body["expires"],
            root.role("root")["threshold"], len(root.role("root")["keys"]),
            root.role("image")["threshold"], len(root.role("image")["keys"])))
        for kid in sorted(root.pubkeys, key=bytes.hex):
            roles = [r for r in signing.ROLES if kid.hex() in root.role(r)["keys"]]
            print("  key %s: %s" % (kid.hex(), ", ".join(roles)))
        return 0
    root_keys = _publics(args.key)
    image_keys = _publics(args.image_key) if args.image_key else root_keys
    image_threshold = args.image_threshold or args.threshold
    signers = _signers(args)
    if args.action == "init":
        body = signing.root_body(1, root_keys, args.threshold, image_keys, image_threshold, when(args.expires))
        data = signing.signed_root(body, signers)
        signing.verify_root(data)
    else:
        old = signing.Root(_read(args.trusted))
        data = signing.rotate(old, root_keys, args.threshold, image_keys, image_threshold,
                              when(args.expires), signers)
    _write(args.output, data)
    root = signing.Root(data)
    print("root metadata version %d -> %s (root %d-of-%d, image %d-of-%d, %d signatures)" % (
        root.version, args.output, args.threshold, len(root.role("root")["keys"]), image_threshold,
        len(root.role("image")["keys"]), len(root.sigs)))
    return 0


def _identity(args):
    """{"serial", "kid", "device_key"} from --identity, or from --manifest/--serial."""
    if args.identity:
        try:
            return json.loads(_read(args.identity))
        except ValueError:
            raise SigningError("%s is not an identity JSON" % args.identity)
    if args.manifest and args.serial:
        try:
            keys = json.loads(_read(args.manifest))[args.serial]
        except (ValueError, KeyError):
            raise SigningError("manifest %s has no box %s" % (args.manifest, args.serial))
        kid = str(args.kid) if args.kid is not None else max(keys, key=int)
        if kid not in keys:
            raise SigningError("manifest has no key %s for box %s" % (kid, args.serial))
        return {"serial": args.serial, "kid": int(kid), "device_key": keys[kid]}
    raise SigningError("give --identity ID.json, or --manifest MFG.json --serial SERIAL")


def _content_key(path):
    try:
        key = bytes.fromhex(_read(path).decode().strip())
    except (ValueError, UnicodeDecodeError):
        key = b""
    if len(key) != 32:
        raise SigningError("%s: want a 32-byte content key in hex" % path)
    return key


def cmd_image(args):
    from . import signing, updimage
    if args.action == "sign":
        from . import keys
        signers = [keys.load_private(p) for p in args.sign]
        data, content_key = updimage.sign(
            _read(args.input), signers, security_counter=args.security_counter,
            min_loader=args.min_loader, expires=when(args.expires), board=args.board,
            version=args.version, kind=args.kind, recovery=args.recovery, chunk_size=args.chunk_size)
        if args.root:
            updimage.verify(data, signing.Root(_read(args.root)))
        key_out = args.content_key_out or args.output + ".key"
        _write(key_out, (content_key.hex() + "\n").encode(), private=True)
        _write(args.output, data)
        img = updimage.Image(data)
        m = img.manifest
        print("signed %s: %s %s for %s, counter %d, %d chunks of %d, %d bytes, %d signatures; content key -> %s" % (
            args.output, m["kind"], m["version"], m["board"], m["security_counter"], m["chunks"],
            m["chunk_size"], len(data), len(img.sigs), key_out))
        return 0
    img_bytes = _read(args.image)
    if args.action == "info":
        root = signing.Root(_read(args.root)) if args.root else None
        for line in updimage.info_lines(updimage.Image(img_bytes), root):
            print(line)
        return 0
    if args.action == "wrap":
        ident = _identity(args)
        img = updimage.Image(img_bytes)
        data = updimage.make_wrap(img, _content_key(args.content_key), ident["serial"], ident["kid"],
                                  bytes.fromhex(ident["device_key"]))
        _write(args.output, data)
        print("wrapped the content key of %s for box %s (key %d) -> %s" % (
            args.image, ident["serial"], ident["kid"], args.output))
        return 0
    # verify
    roots = [_read(p) for p in args.root]
    root = signing.verify_chain(roots[0], roots[1:], args.min_time)
    content_key = _content_key(args.content_key) if args.content_key else None
    wrap = _read(args.wrap) if args.wrap else None
    if wrap is not None and not (args.identity or args.manifest):
        raise SigningError("--wrap needs the box's --identity (or --manifest and --serial)")
    img, payload = updimage.verify(
        img_bytes, root, board=args.board, min_time=args.min_time, slot_size=args.slot_size,
        loader_version=args.loader_version, content_key=content_key,
        identity=_identity(args) if wrap is not None else None, wrap=wrap,
        current_version=args.current_version, current_counter=args.security_counter)
    m = img.manifest
    print("verified %s: %s %s for %s, counter %d, signed by %d key(s) of root v%d, %d chunks%s" % (
        args.image, m["kind"], m["version"], m["board"], m["security_counter"],
        len(signing.check_signatures(img.signed, img.sigs, root.pubkeys, root.role("image"), "image")),
        root.version, m["chunks"],
        ", payload decrypted (%d bytes, %s)" % (len(payload), m["payload_format"]) if payload is not None
        else ", payload not decrypted (no key given)"))
    return 0


def register(sub):
    """Add keygen, root and image to fbtool's subcommands."""
    k = sub.add_parser("keygen", help="new RSA-PSS signing key (private PEM 0600 + public PEM)")
    k.add_argument("-o", "--output", required=True, metavar="KEY.pem")
    k.add_argument("--bits", type=int, choices=(3072, 4096), default=3072)
    k.set_defaults(func=cmd_keygen)

    r = sub.add_parser("root", help="root metadata: the signing keys and their thresholds")
    rs = r.add_subparsers(dest="action", required=True)
    for name, text in (("init", "first root metadata (version 1), signed by its own keys"),
                       ("rotate", "next root metadata, signed by a threshold of the old AND the new root keys")):
        p = rs.add_parser(name, help=text)
        p.add_argument("-o", "--output", required=True)
        p.add_argument("--key", action="append", required=True, metavar="PEM", help="a root key (repeat)")
        p.add_argument("--threshold", type=int, required=True, help="root keys needed to sign")
        p.add_argument("--image-key", action="append", metavar="PEM",
                       help="an image-signing key (default: the root keys)")
        p.add_argument("--image-threshold", type=int, help="image keys needed to sign (default: --threshold)")
        p.add_argument("--expires", default="365d", help="UNIX seconds or e.g. 365d from now")
        p.add_argument("--sign", action="append", metavar="KEY.pem", help="private key that signs (repeat)")
        if name == "rotate":
            p.add_argument("--trusted", required=True, metavar="ROOT", help="the current root metadata")
        p.set_defaults(func=cmd_root)
    p = rs.add_parser("verify", help="verify root metadata: a trusted first root, then each rotation")
    p.add_argument("files", nargs="+", metavar="ROOT")
    p.add_argument("--min-time", type=int, default=int(time.time()), help="expiry is checked against this")
    p.set_defaults(func=cmd_root)

    i = sub.add_parser("image", help="signed, encrypted update images (format 2)")
    isub = i.add_subparsers(dest="action", required=True)
    s = isub.add_parser("sign", help="encrypt and sign a .fbi (or a raw payload) into an update image")
    s.add_argument("input", metavar="FIRMWARE.fbi")
    s.add_argument("-o", "--output", required=True, metavar="OUT.fbu")
    s.add_argument("--sign", action="append", required=True, metavar="KEY.pem", help="image key that signs (repeat)")
    s.add_argument("--security-counter", type=int, required=True)
    s.add_argument("--min-loader", type=int, default=1)
    s.add_argument("--expires", default="90d")
    s.add_argument("--board")
    s.add_argument("--version")
    s.add_argument("--kind", help="payload kind (app, pack, ...) for a raw payload")
    s.add_argument("--recovery", action="store_true", help="signed recovery: may go below the running version")
    s.add_argument("--chunk-size", type=int, default=4096)
    s.add_argument("--root", help="check the result against this root metadata")
    s.add_argument("--content-key-out", metavar="FILE", help="where the content key goes (default OUT.fbu.key, 0600)")
    s.set_defaults(func=cmd_image)
    n = isub.add_parser("info", help="dump every field of an update image")
    n.add_argument("image")
    n.add_argument("--root", help="say which signatures verify against this root metadata")
    n.set_defaults(func=cmd_image)
    v = isub.add_parser("verify", help="verify an update image as a box would")
    v.add_argument("image")
    v.add_argument("--root", action="append", required=True, metavar="ROOT",
                   help="trusted root metadata; repeat for a chain of rotations, oldest first")
    v.add_argument("--board")
    v.add_argument("--min-time", type=int, default=int(time.time()))
    v.add_argument("--slot-size", type=int)
    v.add_argument("--loader-version", type=int)
    v.add_argument("--current-version", help="refuse an older version (unless a signed recovery)")
    v.add_argument("--security-counter", type=int, help="refuse a lower security counter")
    v.add_argument("--content-key", metavar="FILE", help="decrypt with this content key (hex file)")
    v.add_argument("--wrap", metavar="FILE", help="decrypt with the content key of this box's wrap")
    for p in (v,):
        p.add_argument("--identity", metavar="ID.json")
        p.add_argument("--manifest", metavar="MFG.json")
        p.add_argument("--serial")
        p.add_argument("--kid", type=int)
    v.set_defaults(func=cmd_image)
    w = isub.add_parser("wrap", help="wrap an image's content key for one box")
    w.add_argument("image")
    w.add_argument("--content-key", required=True, metavar="FILE")
    w.add_argument("--identity", metavar="ID.json", help="the box's factory identity")
    w.add_argument("--manifest", metavar="MFG.json", help="the cloud's manufacturing manifest (with --serial)")
    w.add_argument("--serial")
    w.add_argument("--kid", type=int, help="key id in the manifest (default: the highest)")
    w.add_argument("-o", "--output", required=True, metavar="BOX.fbw")
    w.set_defaults(func=cmd_image)
