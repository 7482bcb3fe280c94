"""Packs through the update service (cloud/updates.py) with the box's own code on CPython over
real HTTPS on loopback: `fbtool pack build` + `fbtool image sign` + `fbtool update publish`,
the offer in the sealed upload answer, the install into the box's pack area, `installed`
(final: no second offer), and `reverted` when the stored pack later fails its check."""
import os

from fbtool import cli
from fleetbox import pack, updagent, updimage
from tests import update_kit as uk
from tests.cloud.test_updates import Board, _status, _upload, kit  # noqa: F401  (kit: the fixture)
from tests.interop.test_uplink import box

VECTORS = uk.VECTORS


class PackAgent(updagent.Agent):
    """The box's agent with the test root: pack offers go to its pack area."""

    def _installer(self):
        with open(os.path.join(VECTORS, "root-1.fbr"), "rb") as f:
            root = updimage.load_root(f.read())
        return self.packs.installer(root, self.identity, self.state_dir, 1, self._floor(), self.offer["rollout"])


def test_pack_published_offered_installed_and_reverted(kit, tmp_path, capsys):  # noqa: F811
    signing = [os.path.join(VECTORS, k) for k in ("k2.pem", "k3.pem")]
    fbi, fbu, token = (str(tmp_path / n) for n in ("p.fbi", "p.fbu", "token"))
    assert cli.main(["pack", "build", "--version", "4", "-o", fbi]) == 0
    assert cli.main(["image", "sign", fbi, "-o", fbu, "--sign", signing[0], "--sign", signing[1],
                     "--security-counter", "1", "--chunk-size", "1024", "--expires", str(uk.EXPIRES),
                     "--root", os.path.join(VECTORS, "root-1.fbr")]) == 0
    rec = kit.cloud.receivers["liberty"]
    with open(token, "w") as f:
        f.write(kit.tokens["manager"] + "\n")
    assert cli.main(["update", "--service", "https://%s:%d" % (rec.address, rec.port), "--ca",
                     os.path.join(kit.dir, "ca.pem"), "--token-file", token,
                     "publish", fbu, "--boxes", kit.serial]) == 0
    out = capsys.readouterr().out
    assert "published pack 4 for any" in out and "rollout 1: %s" % kit.serial in out, out

    spool, up = box(kit, tmp_path / "b")
    d = str(tmp_path / "b" / "box")
    with open(d + "/builtin.json", "w") as f:
        f.write('{"format":1,"profiles":0}\n')
    packs = pack.Packs(d, builtin=d + "/builtin.json", root_file=os.path.join(VECTORS, "root-1.fbr"),
                       floor_file=str(tmp_path / "b" / "pack.floor"))      # the loader partition's, on a box
    assert len(packs.load()) == 0
    agent = PackAgent(Board(d), kit.identity, up, "1.0.0", packs)
    _upload(spool, up)
    assert agent.due() and agent.offer["kind"] == "pack" and agent.offer["version"] == "4"
    assert agent.run() is False                    # a pack needs no reboot
    st = _status(kit, 1)
    assert st["counts"] == {"installed": 1} and st["state"] == "active", st
    assert packs.changed and len(packs.load()) == 16 and packs.in_use_version == "4"
    _upload(spool, up, 1)
    assert not agent.due()                         # installed is final: no second offer
    # the stored pack damaged: the box goes back to its own profiles and says so
    path = os.path.join(d, "pack", packs.in_use, "profiles.json")
    data = bytearray(open(path, "rb").read())
    data[500] ^= 1
    open(path, "wb").write(bytes(data))
    assert len(packs.load()) == 0 and packs.problems
    agent.after_cycle(False)
    st = _status(kit, 1)
    assert st["counts"] == {"reverted": 1}, st
    assert st["progress"][0]["reason"] == "bad_chunk" and "pack on flash" in st["progress"][0]["detail"]
