"""The wire format between the sandbox and the trusted grader: length-prefixed JSON messages.

Values are plain JSON plus tagged NumPy arrays, tuples and dicts. Nothing is unpickled: what
comes out of a sandbox is data, decoded with strict checks on types, dtypes and sizes, so a
hostile submission can at worst send wrong numbers (which the trusted checks then reject).

This module runs on both sides, so it depends on the standard library and NumPy only.
"""

import base64
import json
import os
import select
import struct
import time

import numpy as np

MAX_MESSAGE_BYTES = 8 * 2**20  # decoded JSON takes tens of times this in memory
MAX_ARRAY_ELEMENTS = 600_000  # base64 of this many float64 fits in a message
MAX_DEPTH = 12
_ARRAY_KINDS = "biufc"  # bool, int, unsigned, float, complex: nothing that holds objects
_HEADER = struct.Struct("!Q")


class WireError(ValueError):
    """A message that is not well-formed."""


class Opaque:
    """Stands for a value that cannot cross the wire (a function, a custom object...).

    Its class name is the original type's, so a check that expected an array says, for
    example, "should be a NumPy array but is a Tensor"."""

    def __repr__(self):
        return f"<{type(self).__name__} object>"


def _opaque(type_name: str) -> Opaque:
    name = "".join(ch for ch in str(type_name) if ch.isalnum() or ch == "_")[:60] or "object"
    return type(name, (Opaque,), {})()


def encode(value, depth: int = 0):
    """Plain data for ``value``; arrays keep dtype and shape exactly."""
    if depth > MAX_DEPTH:
        return {"__opaque__": "nested too deeply"}
    if value is None or isinstance(value, (bool, str, float)):
        return value
    if isinstance(value, int):
        return value if abs(value) < 2**62 else float(value)
    if isinstance(value, np.generic):
        return encode(value.item(), depth + 1)
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor: compare its values
        try:
            value = value.detach().cpu().numpy()
        except Exception:  # noqa: BLE001 - anything odd becomes opaque
            return {"__opaque__": type(value).__name__}
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in _ARRAY_KINDS or value.size > MAX_ARRAY_ELEMENTS:
            return {"__opaque__": f"ndarray of {value.dtype}"}
        data = np.ascontiguousarray(value)
        return {"__ndarray__": base64.b64encode(data.tobytes()).decode("ascii"),
                "dtype": data.dtype.str, "shape": list(value.shape)}  # not data.shape: ascontiguousarray makes 0-d arrays 1-d
    if isinstance(value, tuple):
        return {"__tuple__": [encode(v, depth + 1) for v in value]}
    if isinstance(value, list):
        return [encode(v, depth + 1) for v in value]
    if isinstance(value, (set, frozenset)):  # arrives as a list, in a fixed order
        return [encode(v, depth + 1) for v in sorted(value, key=repr)]
    if isinstance(value, dict):
        return {"__dict__": [[str(k), encode(v, depth + 1)] for k, v in value.items()]}
    return {"__opaque__": type(value).__name__}


def decode(obj, depth: int = 0):
    """The value ``encode`` made, after checking every part of it."""
    if depth > MAX_DEPTH + 1:
        raise WireError("nested too deeply")
    if obj is None or isinstance(obj, (bool, str, int, float)):
        return obj
    if isinstance(obj, list):
        return [decode(v, depth + 1) for v in obj]
    if not isinstance(obj, dict) or len(obj) == 0:
        raise WireError(f"unexpected {type(obj).__name__}")
    if "__ndarray__" in obj:
        return _decode_array(obj)
    if set(obj) == {"__tuple__"} and isinstance(obj["__tuple__"], list):
        return tuple(decode(v, depth + 1) for v in obj["__tuple__"])
    if set(obj) == {"__dict__"} and isinstance(obj["__dict__"], list):
        out = {}
        for pair in obj["__dict__"]:
            if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str)):
                raise WireError("malformed dict entry")
            out[pair[0]] = decode(pair[1], depth + 1)
        return out
    if set(obj) == {"__opaque__"}:
        return _opaque(obj["__opaque__"])
    raise WireError("unknown tagged value")


def _decode_array(obj) -> np.ndarray:
    if set(obj) != {"__ndarray__", "dtype", "shape"}:
        raise WireError("malformed array")
    try:
        dtype = np.dtype(obj["dtype"])
    except TypeError as exc:
        raise WireError("bad dtype") from exc
    shape = obj["shape"]
    if dtype.kind not in _ARRAY_KINDS or not isinstance(shape, list) or len(shape) > 32 \
            or not all(isinstance(n, int) and 0 <= n <= MAX_ARRAY_ELEMENTS for n in shape):
        raise WireError("bad dtype or shape")
    size = int(np.prod(shape, dtype=np.int64))
    raw = base64.b64decode(obj["__ndarray__"], validate=True)
    if size > MAX_ARRAY_ELEMENTS or len(raw) != size * dtype.itemsize:
        raise WireError("array data does not match its shape")
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()


def send(fd: int, message: dict, deadline: float | None = None) -> None:
    """Write one message. With a ``deadline`` the descriptor must be non-blocking: a reader that
    stops reading then raises TimeoutError instead of blocking the writer forever."""
    data = json.dumps(message).encode("utf-8")
    if len(data) > MAX_MESSAGE_BYTES:
        data = json.dumps({"ok": False, "too_large": True}).encode("utf-8")
    payload = _HEADER.pack(len(data)) + data
    view = memoryview(payload)
    while view:
        if deadline is not None:
            _, ready, _ = select.select([], [fd], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError("the other side stopped reading")
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            continue


def read_exactly(fd: int, n: int, deadline: float | None = None) -> bytes:
    """``n`` bytes from ``fd``; raises TimeoutError once ``time.monotonic()`` passes ``deadline``."""
    chunks, remaining = [], n
    while remaining:
        if deadline is not None:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError("no answer in time")
        chunk = os.read(fd, min(remaining, 2**20))
        if not chunk:
            raise EOFError("the other side closed the channel")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def receive(fd: int, deadline: float | None = None) -> dict:
    (length,) = _HEADER.unpack(read_exactly(fd, _HEADER.size, deadline))
    if length > MAX_MESSAGE_BYTES:
        raise WireError("message too large")
    try:
        message = json.loads(read_exactly(fd, length, deadline).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise WireError("not JSON") from exc
    if not isinstance(message, dict):
        raise WireError("a message must be a JSON object")
    return message
