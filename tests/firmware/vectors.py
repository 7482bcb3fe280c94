"""The update-image vectors of docs/vectors/update/, read on both runtimes."""
import json

_here = __file__.replace("\\", "/").rsplit("/", 1)[0]
ROOT = _here.rsplit("/", 2)[0] if _here.count("/") >= 2 else "../.."
DIR = ROOT + "/docs/vectors/update/"


def load(name):
    with open(DIR + name, "rb") as f:
        return f.read()


def expected():
    with open(DIR + "expected.json") as f:
        return json.load(f)


class Reader:
    """read(n) over bytes, as a download or a file would give them."""

    def __init__(self, data):
        self.data = data
        self.pos = 0

    def __call__(self, n):
        b = self.data[self.pos:self.pos + n]
        self.pos += len(b)
        return b
