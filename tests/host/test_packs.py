"""Packs end to end on MicroPython (tests/mp/pack_box.py): packs built by fbtool from profiles/,
signed and wrapped by the vector keys, installed into a box's pack area; a collection against
a printer on 127.0.0.1 uses a rule only the new pack has; an older pack is refused; a tampered
pack on flash leaves the previous one in force; the box killed at seeded flash writes of an
install always loads the old pack or the new one, and the install then completes."""
import json
import os
import random
import shutil
import signal
import subprocess

import yaml

from fbtool import pack as fbpack
from fbtool import profiles as fbprofiles
from tests import update_kit as kit
from tests.hostile_printer import HostileAgent, oid

FIRMWARE = os.path.join(kit.ROOT, "firmware")
SCRIPT = os.path.join(kit.ROOT, "tests", "mp", "pack_box.py")
PROBE_OID = "1.3.6.1.4.1.2435.99.7.0"      # answered by the printer, read only by pack 2's Brother rule
NOW = kit.CREATED + 86400


def _source(tmp, with_probe):
    src = os.path.join(tmp, "src-%d" % with_probe)
    shutil.copytree(os.path.join(kit.ROOT, "profiles"), src)
    if with_probe:
        path = os.path.join(src, "brother.yaml")
        with open(path) as f:
            brother = yaml.safe_load(f)
        brother["counters"]["vendor"] = {"pack_probe": {"oid": PROBE_OID}}
        with open(path, "w") as f:
            yaml.safe_dump(brother, f)
    return src


def _pack(tmp, version, counter, with_probe):
    fbi, _ = fbpack.build(version, _source(tmp, with_probe), created=kit.CREATED)
    data, wrap = kit.signed(fbi, chunk_size=1024, security_counter=counter)
    paths = []
    for ext, blob in (("fbu", data), ("fbw", wrap)):
        paths.append(os.path.join(tmp, "pack-%s.%s" % (version, ext)))
        with open(paths[-1], "wb") as f:
            f.write(blob)
    return paths


class Box:
    def __init__(self, tmp, name="data"):
        self.tmp = str(tmp)
        self.data = os.path.join(self.tmp, name + ".img")      # the data partition: LittleFS in a flash file
        self.loader = os.path.join(self.tmp, name + "-loader.img")     # the loader partition: the pack floor
        self.builtin = os.path.join(self.tmp, "builtin.json")
        if not os.path.exists(self.builtin):
            with open(self.builtin, "wb") as f:
                f.write(fbprofiles.dumps(fbprofiles.compile_dir()))
        self.identity = os.path.join(self.tmp, "identity.json")
        with open(self.identity, "w") as f:
            json.dump(kit.identity(), f)

    def args(self, mode, *extra):
        return [kit.MICROPYTHON, "-X", "heapsize=2M", SCRIPT, FIRMWARE, self.data, self.loader,
                os.path.join(kit.VECTORS, "root-1.fbr"), self.builtin, mode] + [str(x) for x in extra]

    def run(self, mode, *extra):
        r = subprocess.run(self.args(mode, *extra), capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        return r.stdout

    def copy_from(self, other):
        shutil.copy(other.data, self.data)
        shutil.copy(other.loader, self.loader)

    def install(self, image, wrap):
        out = self.run("install", image, wrap, self.identity, NOW)
        report = json.loads(out.split("report ", 1)[1].split("\n", 1)[0])
        self.floor_at = int(out.split("floor ")[1].split()[0])
        return report, int(out.split("pages ")[1].split()[0]), int(out.split("switch ")[1].split()[0]), out

    def load(self, *printer):
        out = self.run("load", *printer)
        use = out.split("use ", 1)[1].split("\n", 1)[0].split()
        problems = [json.loads(line[8:]) for line in out.splitlines() if line.startswith("problem ")]
        recs = [json.loads(line[4:]) for line in out.splitlines() if line.startswith("rec ")]
        return use, problems, recs, out

    def install_killed(self, image, wrap, at):
        """The install, its power cut at flash write number `at` (SIGKILL, nothing flushed after)."""
        p = subprocess.Popen(self.args("install", image, wrap, self.identity, NOW, at), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        try:
            lines = []
            for line in p.stdout:
                lines.append(line)
                if line.startswith("cut "):
                    p.send_signal(signal.SIGKILL)
                    break
            p.wait(30)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        assert p.returncode == -signal.SIGKILL, "".join(lines) + p.stderr.read()
        return lines[-1].split()


def test_pack_vector_checks_out_with_fbtool():
    # docs/vectors/update/pack.*: what an independent verifier (here fbtool, on `cryptography`) finds
    from fbtool import image, signing, updimage
    v = json.loads(open(os.path.join(kit.VECTORS, "pack.json")).read())
    root = signing.Root(open(os.path.join(kit.VECTORS, "root-1.fbr"), "rb").read())
    data = open(os.path.join(kit.VECTORS, "pack.fbu"), "rb").read()
    img, payload = updimage.verify(data, root, board="any", min_time=NOW, identity=kit.identity(),
                                   wrap=open(os.path.join(kit.VECTORS, "pack.fbw"), "rb").read())
    assert img.digest.hex() == v["image_digest"] and img.manifest == v["manifest"]
    assert [h.hex() for h in img.table] == v["chunk_sha256"] and img.head_size == v["head_size"]
    manifest, files = image.parse(payload)
    assert manifest == v["payload_manifest"] and payload[-32:].hex() == v["payload_tail"]
    with open(os.path.join(kit.ROOT, "docs", "vectors", "profiles-example.json"), "rb") as f:
        assert files == [("profiles.json", f.read())]
    # `fbtool pack build` of the example profiles gives that payload byte for byte
    built, n = fbpack.build("7", os.path.join(kit.ROOT, "docs", "vectors", "profiles"), created=kit.CREATED)
    assert built == payload and n == 1


def _printer():
    agent = HostileAgent("127.0.0.1", 0, "normal", recording="printmaster_brother")
    agent.mib.objects[oid(PROBE_OID)] = ("Counter32", 777)
    agent.mib.keys = sorted(agent.mib.objects)
    return agent, agent.sock.getsockname()[1]


def test_new_pack_rule_used_older_refused_tampered_falls_back(tmp_path):
    v1 = _pack(str(tmp_path), "1", 1, False)
    v2 = _pack(str(tmp_path), "2", 1, True)
    box = Box(tmp_path)
    agent, port = _printer()
    try:
        use, problems, recs, out = box.load("127.0.0.1", port)
        assert use[0] == "builtin" and problems == [], out
        assert len(recs) == 1 and "pack_probe" not in recs[0]["counters"].get("vendor", {}), out
        report, _, _, out = box.install(*v1)
        assert report["state"] == "staged" and report["version"] == "1", out
        report, _, _, out = box.install(*v2)
        assert report["state"] == "staged" and report["version"] == "2", out
        use, problems, recs, out = box.load("127.0.0.1", port)
        assert use[:2] == ["b", "2"] and problems == [], out
        # the collection read the rule only pack 2 has
        assert recs[0]["counters"]["vendor"]["pack_probe"] == 777, out
        assert recs[0]["sources"]["counters.vendor"] == "profile Brother", recs[0]["sources"]
        # an older pack, signed and valid, is refused; pack 2 stays in force
        report, _, _, out = box.install(*v1)
        assert report["state"] == "refused" and report["reason"] == "older_version", out
        assert "update refused [older_version]" in out
        assert box.load()[0][:2] == ["b", "2"]
        # the stored pack 2 tampered: pack 1 is in force again, the problem logged and reported
        assert "flipped" in box.run("flip", "pack/b/profiles.json", 3000)
        use, problems, recs, out = box.load("127.0.0.1", port)
        assert use[:2] == ["a", "1"], out
        assert "pack in b refused at load [bad_chunk]" in out, out
        assert [(p["state"], p["reason"], p["rollout"]) for p in problems] == [("reverted", "bad_chunk", 1)], out
        assert "pack_probe" not in recs[0]["counters"].get("vendor", {}), out
    finally:
        agent.stop()


def test_power_cut_during_pack_install_leaves_the_old_pack_or_the_new(tmp_path):
    v1 = _pack(str(tmp_path), "1", 1, False)
    v2 = _pack(str(tmp_path), "2", 2, True)
    base = Box(tmp_path, "base")
    assert base.install(*v1)[0]["state"] == "staged"
    probe = Box(tmp_path, "probe")
    probe.copy_from(base)
    report, pages, switch, out = probe.install(*v2)
    assert report["state"] == "staged" and switch > 0 and pages > switch, out
    # seeded page programs over the whole install, the pack floor's rename and the pointer's (the switch)
    assert 0 < probe.floor_at < switch, (probe.floor_at, switch)
    instants = set(random.Random(2026).sample(range(1, pages + 1), 6))
    instants |= {probe.floor_at + 1, (probe.floor_at + switch) // 2 + 1}
    instants = sorted(instants | set(range(switch + 1, min(switch + 3, pages) + 1)))
    seen = set()
    for at in instants:
        box = Box(tmp_path, "cut-%d" % at)
        box.copy_from(base)
        box.install_killed(*v2, at=at)
        use, problems, _, out = box.load()
        assert problems == [] and use[:2] in (["a", "1"], ["b", "2"]), (at, out)
        seen.add(use[1])
        report, _, _, out = box.install(*v2)        # the offer comes again: it resumes or starts over
        assert report["state"] == "staged" and report["version"] == "2", (at, out)
        use = box.load()[0]
        assert use[1] == "2" and use[0] in "ab", (at, use)    # cut after the switch: installed again beside it
    assert seen == {"1", "2"}, (seen, instants, switch)    # cuts before and after the switch were both tried


def test_a_factory_reset_keeps_refusing_older_packs(tmp_path):
    # the pack floor is on the loader partition, which a factory reset does not wipe
    packs = []
    for n in (3, 4, 5):
        (tmp_path / str(n)).mkdir()
        packs.append(_pack(str(tmp_path / str(n)), str(n), n, False))
    v3, v4, v5 = packs
    box = Box(tmp_path)
    report, _, _, out = box.install(*v4)
    assert report["state"] == "staged" and box.load()[0][:2] == ["a", "4"], out
    assert "reset True" in box.run("reset")
    use, problems, _, out = box.load()
    assert use[0] == "builtin" and problems == [], out        # the pack area went with the data partition
    report, _, _, out = box.install(*v3)
    assert report["state"] == "refused" and report["reason"] == "security_counter", out
    assert "update refused [security_counter]: security counter 3 is below the box's 4" in out, out
    assert box.load()[0][0] == "builtin"
    report, _, _, out = box.install(*v5)
    assert report["state"] == "staged" and report["version"] == "5", out
    assert box.load()[0][:2] == ["a", "5"]
