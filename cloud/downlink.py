"""The cloud -> box channel, cloud side (docs/downlink.md): every answer to a box is a sealed
`down` envelope of content type 2 whose plaintext is a deterministic CBOR map.

    body = seal_answer(store_or_conn, keys, device_id, fields, kid=K)

`keys`: a lookup keys(device_id, kid) -> 32-byte master key (cloud.keys.manifest_keys), or a
(kid, key) pair. `store_or_conn`: a cloud.store.Store, or (store, connection) to take the down
seq inside a caller's transaction. The down seq is per box, strictly increasing, kept in
`boxes.down_seq`; the envelope's ts is the cloud's clock.
"""
import time

import cbor2

from cloud import envelope

CT_ANSWER = 2
MAX_BODY = 16384        # the box refuses longer answers unread (firmware/fleetbox/downlink.py)

# The field registry (docs/downlink.md section 3): name -> what the box accepts. The box
# checks the same; a field of the wrong type makes it refuse the whole answer.
FIELDS = {
    "ok": bool, "re": int, "upload": int, "duplicate": bool, "reason": str, "last_seq": int,
    "resync": (bool, list), "time": int, "config": dict, "offer": dict, "revoked": bool,
}


class AnswerError(ValueError):
    pass


def encode(fields):
    """The plaintext: core deterministic CBOR (RFC 8949 4.2.1) of the map."""
    for k, v in fields.items():
        want = FIELDS.get(k)
        if want is not None and (not isinstance(v, want) or (want is int and isinstance(v, bool))):
            raise AnswerError("field %r must be %s" % (k, want))
    return cbor2.dumps(fields, canonical=True)


def _key(keys, device_id, kid):
    if callable(keys):
        if kid is None:
            raise AnswerError("kid is needed to look the key up")
        key = keys(device_id, kid)
    else:
        kid, key = keys
    if key is None:
        raise AnswerError("no key for %s kid %s" % (device_id, kid))
    return kid, key


def seal_answer(store_or_conn, keys, device_id, fields, kid=None, now=None, iv=None):
    """The sealed answer (bytes) to `device_id` carrying `fields`, under the next down seq."""
    kid, key = _key(keys, device_id, kid)
    plaintext = encode(fields)
    if isinstance(store_or_conn, tuple):
        store, conn = store_or_conn
        seq = store.next_down_seq(device_id, conn)
    else:
        seq = store_or_conn.next_down_seq(device_id)
    ts = int(time.time() if now is None else now)
    body = envelope.seal(key, kid, device_id, seq, ts, plaintext, CT_ANSWER, iv, envelope.DOWN)
    if len(body) > MAX_BODY:
        raise AnswerError("answer of %d bytes exceeds the box's limit %d" % (len(body), MAX_BODY))
    return body


def open_answer(keys, device_id, body, kid=None):
    """(header, fields) of a sealed answer: the box's view, for tests and tools (no replay state)."""
    opener = envelope.Opener(lambda d, k: _key(keys, d, k)[1] if d == device_id else None,
                             window=1 << 40, direction=envelope.DOWN)
    hdr, plaintext = opener.open(body)
    return hdr, cbor2.loads(plaintext)
