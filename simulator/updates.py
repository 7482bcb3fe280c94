"""Signed updates in the simulator: development keys, a new image of this tree, publish, roll out.

Everything goes through the project's own tools, as an engineer and an operator would run them:
`fbtool keygen` (three keys), `fbtool root init` (2-of-3; the box is flashed with it through
`fbtool flash --root`), `fbtool build --version`, `fbtool image sign`, an operator's API token
from `fleetbox-cloud admin`, and `fbtool update publish|status` against the sim's liberty.
Keys and root stay in the state directory (`update-keys/`), so every run signs with the same root.

    sim = Simulation(..., updates=True)     # flash_box writes the root
    upd = SimUpdates(sim)
    fbu = upd.build("0.1.1", counter=1)     # a signed image of the current tree
    rid = upd.publish(fbu)                  # published and rolled out to the sim's box
    upd.follow(rid)                         # the box's steps as they happen, until confirmed
"""
import os
import subprocess
import time

from simulator.runner import BIN, SimError

THRESHOLD = 2
KEYS = ("k1", "k2", "k3")
OPERATOR = "operator@sim.example"
CHUNK_SIZE = 16384            # the box's largest chunk: fewest Range requests per image

# What the box logs at each step of an update (docs/logging.md), in the order they come.
STEPS = (
    ("offer", "I update: offer: "),
    ("downloaded", "I update: downloaded "),
    ("staged", "for a trial boot"),
    ("trial boot", " boots on trial"),
    ("started", "I loader: starting "),
    ("confirmed", "I main: slot_"),
    ("reported", "I update: update of rollout "),
)


def _tool(name):
    return os.path.join(BIN, name)


class SimUpdates:
    """The update story around one Simulation: signing keys, images, the operator, the rollout."""

    def __init__(self, sim):
        self.sim = sim
        self.dir = os.path.join(sim.state, "update-keys")
        self.token = os.path.join(sim.state, "operator.token")
        self._have_operator = False
        self.round = 0            # updates offered so far: the next version's last part

    def _run(self, args, stdin=None):
        r = subprocess.run(args, capture_output=True, text=True, input=stdin)
        if r.returncode != 0:
            raise SimError("%s %s failed: %s" % (os.path.basename(args[0]), args[1],
                                                  (r.stderr or r.stdout).strip()))
        return r.stdout.strip()

    def fbtool(self, *args):
        return self._run([_tool("fbtool")] + list(args))

    # -- keys: made once, kept with the sim's state
    def root(self):
        """The root metadata (ROOT.fbr) the box is flashed with: keygen and root init when missing."""
        path = os.path.join(self.dir, "root.fbr")
        if os.path.exists(path):
            return path
        os.makedirs(self.dir, exist_ok=True)
        for k in KEYS:
            self.fbtool("keygen", "-o", self._key(k))
        args = ["root", "init", "-o", path, "--threshold", str(THRESHOLD), "--expires", "3650d"]
        for k in KEYS:
            args += ["--key", self._key(k)[:-4] + ".pub.pem"]
        for k in KEYS[:THRESHOLD]:
            args += ["--sign", self._key(k)]
        self.sim.echo(self.fbtool(*args))
        return path

    def _key(self, name):
        return os.path.join(self.dir, name + ".pem")

    # -- images
    def build(self, version, counter, signers=KEYS[:THRESHOLD], board=None, name=None, **sign):
        """A signed update image of the current tree: fbtool build --version, then image sign."""
        fbi = os.path.join(self.sim.state, "update-%s.fbi" % version)
        if not os.path.exists(fbi):
            self.fbtool("build", "--board", board or self.sim.board, "--version", version, "-o", fbi)
        fbu = os.path.join(self.sim.state, (name or "update-%s-%d" % (version, counter)) + ".fbu")
        args = ["image", "sign", fbi, "-o", fbu, "--security-counter", str(counter),
                "--chunk-size", str(sign.pop("chunk_size", CHUNK_SIZE)), "--expires", str(sign.pop("expires", "30d"))]
        for k in signers:
            args += ["--sign", self._key(k)]
        for flag, value in sign.items():
            args += ["--" + flag.replace("_", "-")] + ([] if value is True else [str(value)])
        self.sim.echo(self.fbtool(*args))
        return fbu

    # -- the operator
    def operator(self):
        """An API token for an operator (a manager of the key-owning dealer), as fleetbox-cloud admin makes it."""
        if self._have_operator:
            return self.token
        db = os.path.join(self.sim.state, "cloud.sqlite")
        admin = [_tool("fleetbox-cloud"), "admin", db]
        password = os.urandom(12).hex() + "\n"
        if self.sim.fresh:     # the sim's dealer exists: one more user of it
            self._run(admin + ["user", "--dealer", "Sim Dealer", "--email", OPERATOR, "--role", "manager"], password)
        else:
            self._run(admin + ["bootstrap", "--dealer", "Sim Operator", "--email", OPERATOR], password)
        token = self._run(admin + ["token", "--email", OPERATOR, "--label", "simulator updates"])
        fd = os.open(self.token, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token.splitlines()[-1])
        self._have_operator = True
        return self.token

    def update_tool(self, *args):
        """fbtool update ARGS against the sim's liberty, with the operator's token."""
        addr, port = self.sim.endpoints["liberty"][0], self.sim.cloud.receivers["liberty"].port
        return self.fbtool("update", "--service", "https://%s:%d" % (addr, port),
                           "--ca", os.path.join(self.sim.state, "ca.pem"), "--token-file", self.operator(), *args)

    def publish(self, fbu, **spec):
        """Publish fbu and roll it out to the sim's box (or spec's boxes / percent / all); the rollout id."""
        args = ["publish", fbu]
        if spec.get("all"):
            args.append("--all")
        elif spec.get("percent"):
            args += ["--percent", str(spec["percent"])]
        else:
            args += ["--boxes"] + list(spec.get("boxes") or [self.sim.serial])
        args += ["--max-failure-rate", str(spec.get("max_failure_rate", 1.0)),
                 "--min-reports", str(spec.get("min_reports", 100))]
        out = self.update_tool(*args)
        self.sim.echo(out)
        for line in out.splitlines():
            if line.startswith("rollout "):
                return int(line.split()[1].rstrip(":"))
        raise SimError("fbtool update publish started no rollout: %s" % out)

    def rollout(self, rid):
        """The cloud's view of a rollout: {"state", "counts", "progress": [{box, state, reason, ...}]}."""
        from cloud.updates import Updates
        found = Updates(self.sim.cloud.store, None).rollout_status(rid)
        if not found:
            raise SimError("no rollout %d" % rid)
        return found[0]

    def box_state(self, rid):
        """(state, reason) of the sim's box in rollout rid, or (None, None)."""
        for p in self.rollout(rid)["progress"]:
            if p["box"] == self.sim.serial:
                return p["state"], p["reason"]
        return None, None

    def status(self, rid):
        """fbtool update status ROLLOUT: what an operator sees."""
        return self.update_tool("status", str(rid))

    def follow(self, rid, until=("confirmed",), timeout=600, since=0):
        """Print the box's update steps as they come until the box's rollout state is one of `until`
        (or a failure: refused, reverted); returns that state."""
        sim = self.sim
        seen = since
        deadline = time.time() + timeout
        while time.time() < deadline:
            if sim.hw.exit is not None:
                raise SimError("the box stopped (exit %s) during the update" % sim.hw.exit)
            lines = sim.box_log[seen:]
            seen += len(lines)
            for line in lines:
                for step, text in STEPS:
                    if text in line and (step != "confirmed" or line.rstrip().endswith(" confirmed")):
                        sim.echo("update: %-10s | %s" % (step, line.strip()))
            state, reason = self.box_state(rid)
            if state in until or state in ("refused", "reverted"):
                return state, reason
            time.sleep(0.3)
        raise SimError("rollout %d: the box did not reach %s within %d s (cloud: %s)"
                       % (rid, "/".join(until), timeout, self.box_state(rid)[0]))

    # -- one update, as `make sim SIM_ARGS=--update` and the `update` command run it
    def next_version(self):
        """The version after the newest one built here: the tree's version with one more part."""
        from fbtool.image import firmware_version
        self.round += 1
        return "%s.%d" % (firmware_version(), self.round)

    def offer(self, version=None, counter=None):
        """Build, sign, publish and roll out the next version to the box; the rollout id."""
        version = version or self.next_version()
        fbu = self.build(version, int(counter) if counter is not None else self.round)
        return self.publish(fbu)
