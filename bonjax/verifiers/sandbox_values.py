"""Canonical encoding of plain Python values: the only thing that crosses the judge boundary.

The judge (which runs the tests) and the candidate (which runs the completion) live in
separate processes; a call's arguments and its result travel between them as bytes in this
encoding. Decoding builds fresh objects of exact builtin types only, so whatever the candidate
sends, the tests compare plain `int`, `str`, `list`, ... objects whose `__eq__`, `__hash__`
and `__abs__` are Python's own: no subclass, no custom `__eq__`, no proxy can come through.

Encoding (JSON text): None, True, False and str are JSON's null, true, false and strings;
every other value is a JSON array whose first element is a one-letter tag:

  ["i", "-0x1f"]            int, in hex (exact at any size, no int-str digit limit)
  ["f", "0x1.8p+1"]         float, as `float.hex` (exact; also "inf", "-inf", "nan")
  ["c", re, im]             complex, two `float.hex` strings
  ["b", "00ff"]             bytes, in hex
  ["l" | "t" | "s" | "z", item, ...]   list, tuple, set, frozenset
  ["d", key, value, ...]    dict, in insertion order

The encoder accepts only exact builtin types (`type(x) is int`, never a subclass); bool is
its own type. Both directions bound the nesting depth and the message size. Standard library
only, and only its C JSON scanner (`_json`): the sandbox launcher imports this file as a
top-level module on every run, and the `json` package (with `re` and `enum`) would cost
tens of milliseconds there.
"""

import _json

MAX_DEPTH = 100
MAX_BYTES = 8 << 20
_HEX_INT_CHARS = "-0123456789abcdefx"
_MAX_FLOAT_CHARS = 40


class EncodeError(ValueError):
  """The value is not plain data (a non-builtin type, too deep, cyclic or too large)."""


class DecodeError(ValueError):
  """The bytes are not a well-formed encoding of plain data."""


def _hex_text(text):
  return '"' + text + '"'


def _encode_value(value, depth, out):
  """Appends the JSON text of `value` to the list `out`."""
  if depth > MAX_DEPTH:
    raise EncodeError(f"nested deeper than {MAX_DEPTH} levels (or cyclic)")
  kind = type(value)
  if value is None:
    out.append("null")
  elif kind is bool:
    out.append("true" if value else "false")
  elif kind is str:
    out.append(_json.encode_basestring_ascii(value))
  elif kind is int:
    out.append('["i",' + _hex_text(hex(value)) + "]")
  elif kind is float:
    out.append('["f",' + _hex_text(value.hex()) + "]")
  elif kind is complex:
    out.append('["c",' + _hex_text(value.real.hex()) + "," + _hex_text(value.imag.hex()) + "]")
  elif kind is bytes:
    out.append('["b",' + _hex_text(value.hex()) + "]")
  else:
    tag = _CONTAINER_TAGS.get(kind)
    if tag is None:
      raise EncodeError(f"a value of type {kind.__name__} is not plain data")
    out.append('["' + tag + '"')
    items = [part for pair in value.items() for part in pair] if tag == "d" else value
    for item in items:
      out.append(",")
      _encode_value(item, depth + 1, out)
    out.append("]")


_CONTAINER_TAGS = {list: "l", tuple: "t", set: "s", frozenset: "z", dict: "d"}


def encode(value) -> bytes:
  """The canonical bytes of `value` (ASCII JSON text).

  Raises:
    EncodeError: a part of `value` is not an exact builtin type, nesting exceeds MAX_DEPTH
      (cycles included), or the encoding exceeds MAX_BYTES.
  """
  out = []
  _encode_value(value, 0, out)
  data = "".join(out).encode("ascii")
  if len(data) > MAX_BYTES:
    raise EncodeError(f"encoding is {len(data)} bytes, over the {MAX_BYTES}-byte limit")
  return data


def _reject_number(text):
  raise DecodeError(f"bare JSON number {text[:20]!r}: numbers must be tagged")


def _float(text):
  if type(text) is not str or len(text) > _MAX_FLOAT_CHARS:
    raise DecodeError("float payload must be a short float.hex string")
  try:
    return float.fromhex(text)
  except (ValueError, OverflowError):
    raise DecodeError(f"bad float {text!r}") from None


def _int(text):
  if type(text) is not str or not text or text.strip(_HEX_INT_CHARS):
    raise DecodeError("int payload must be a hex string")
  try:
    return int(text, 16)
  except ValueError:
    raise DecodeError(f"bad int {text[:40]!r}") from None


def _decode_value(node, depth):
  if depth > MAX_DEPTH:
    raise DecodeError(f"nested deeper than {MAX_DEPTH} levels")
  kind = type(node)
  if node is None or kind is bool or kind is str:
    return node
  if kind is not list or not node or type(node[0]) is not str:
    raise DecodeError(f"expected a tagged array, got {kind.__name__}")
  tag, payload = node[0], node[1:]
  if tag == "i" and len(payload) == 1:
    return _int(payload[0])
  if tag == "f" and len(payload) == 1:
    return _float(payload[0])
  if tag == "c" and len(payload) == 2:
    return complex(_float(payload[0]), _float(payload[1]))
  if tag == "b" and len(payload) == 1 and type(payload[0]) is str:
    try:
      return bytes.fromhex(payload[0])
    except ValueError:
      raise DecodeError("bad bytes payload") from None
  items = [_decode_value(item, depth + 1) for item in payload]
  try:
    if tag == "l":
      return items
    if tag == "t":
      return tuple(items)
    if tag == "s":
      return set(items)
    if tag == "z":
      return frozenset(items)
    if tag == "d" and len(items) % 2 == 0:
      return dict(zip(items[0::2], items[1::2]))
  except TypeError as e:  # An unhashable set element or dict key.
    raise DecodeError(str(e)) from None
  raise DecodeError(f"unknown tag {tag[:10]!r} with {len(payload)} items")


def _reject_object(pairs):
  raise DecodeError("JSON objects are not part of the encoding")


class _ScannerContext:
  """What the C JSON scanner reads its options from."""

  strict = True
  object_hook = None
  object_pairs_hook = staticmethod(_reject_object)
  parse_float = staticmethod(_reject_number)
  parse_int = staticmethod(_reject_number)
  parse_constant = staticmethod(_reject_number)
  memo = None


_scan = _json.make_scanner(_ScannerContext())


def decode(data: bytes):
  """The plain value encoded by `data`; objects of exact builtin types only.

  Raises:
    DecodeError: anything else (not ASCII JSON, an unknown tag, bare numbers, trailing
      bytes, too deep, too large).
  """
  if len(data) > MAX_BYTES:
    raise DecodeError(f"{len(data)} bytes, over the {MAX_BYTES}-byte limit")
  try:
    text = data.decode("ascii")
    node, end = _scan(text, 0)
  except (ValueError, RecursionError, StopIteration) as e:
    raise DecodeError(f"not canonical JSON: {type(e).__name__}") from None
  if end != len(text):
    raise DecodeError(f"{len(text) - end} bytes after the value")
  return _decode_value(node, 0)
