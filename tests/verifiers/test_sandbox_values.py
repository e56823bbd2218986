"""The canonical value encoding: exact builtin types in, fresh exact builtins out, bounded."""

import enum
import math

import pytest

from bonjax.verifiers import sandbox_values as sv


def _types(value):
  """The exact type of every part of `value`, in order."""
  if type(value) in (list, tuple):
    return [type(value), [_types(v) for v in value]]
  if type(value) is dict:
    return [dict, [(_types(k), _types(v)) for k, v in value.items()]]
  return type(value)


def test_round_trip_keeps_values_and_exact_types():
  value = [1, -0x1F, 10 ** 5000, True, False, None, 0.1, -0.0, math.inf, 1 + 2j, "t\u00e9\ud800",
           b"\x00\xff", (1, (2.5,)), {3, "x"}, frozenset({(1, 2)}), {"b": [1], 2: None, (1,): 3}]
  data = sv.encode(value)
  back = sv.decode(data)
  assert back == value and _types(back) == _types(value)
  assert math.copysign(1.0, back[7]) == -1.0
  assert list(back[-1]) == ["b", 2, (1,)]  # Dict order survives.
  nan = sv.decode(sv.encode(float("nan")))
  assert type(nan) is float and math.isnan(nan)
  assert sv.encode(5) == b'["i","0x5"]' and sv.encode([True, "a"]) == b'["l",true,"a"]'


class _Int(int):
  def __eq__(self, other):
    return True

  __hash__ = int.__hash__


class _Color(enum.IntEnum):
  RED = 1


@pytest.mark.parametrize("value", [_Int(1), _Color.RED, type("S", (str,), {})("x"),
                                   type("L", (list,), {})([1]), [object()], iter([1]),
                                   range(3), {1: {2: lambda: 0}}])
def test_encoder_accepts_exact_builtin_types_only(value):
  with pytest.raises(sv.EncodeError, match="is not plain data"):
    sv.encode(value)


def test_depth_cycles_and_size_are_bounded():
  deep = []
  for _ in range(sv.MAX_DEPTH):
    deep = [deep]
  assert sv.decode(sv.encode(deep)) == deep
  with pytest.raises(sv.EncodeError, match="deeper than 100"):
    sv.encode([deep])
  cycle = []
  cycle.append(cycle)
  with pytest.raises(sv.EncodeError, match="deeper than 100"):
    sv.encode(cycle)
  with pytest.raises(sv.EncodeError, match="over the 8388608-byte limit"):
    sv.encode("x" * sv.MAX_BYTES)


@pytest.mark.parametrize("data", [
    b"5", b"1.5", b"NaN", b"[1]", b'["i",5]', b'["i","12g"]', b'["i",""]',
    b'["f","' + b"1" * 41 + b'"]', b'["f","zz"]', b'["q",1]', b'["s",["l"]]',
    b'["d",["i","0x1"]]', b'["b","0"]', b"[]", b"{}", b"\xff", b"[" * 5000 + b"]" * 5000,
    b'["l",' * 101 + b"null" + b"]" * 101, b"x" * (sv.MAX_BYTES + 1),
])
def test_decoder_rejects_anything_else_with_decode_error(data):
  with pytest.raises(sv.DecodeError):
    sv.decode(data)
