"""The msgpack payload codec: round trips, structured errors, refusals."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import msgpack
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from asyncjobs.errors import SerializationError
from asyncjobs.serialization import RemoteError, deserialize, error_to_dict, is_job_record, serialize

ints = st.integers(min_value=-(2**63), max_value=2**64 - 1)
zones = st.sampled_from([None, UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))])
datetimes = st.builds(lambda d, tz: d.replace(tzinfo=tz), st.datetimes(), zones)
scalars = (
    st.none() | st.booleans() | ints | st.floats(allow_nan=False) | st.text() | st.binary() | datetimes | st.dates()
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10) | ints, children, max_size=5)
    ),
    max_leaves=30,
)


@settings(deadline=None)  # a loaded CI machine must not turn slowness into failure
@given(values)
def test_round_trip(value):
    # a map shaped like a job record without its try gets one (see the test below)
    assume(not (isinstance(value, dict) and "t" not in value and is_job_record(value)))
    assert deserialize(serialize(value)) == value


@settings(deadline=None)
@given(st.tuples(ints, st.text()))
def test_tuples_come_back_as_lists(value):
    assert deserialize(serialize(value)) == list(value)


@settings(deadline=None)
@given(st.floats(allow_nan=True))
def test_floats_round_trip_bit_for_bit(x):
    out = deserialize(serialize(x))
    assert out == x or (out != out and x != x)


@settings(deadline=None)
@given(datetimes)
def test_datetimes_keep_their_offset(d):
    out = deserialize(serialize(d))
    assert out == d and out.utcoffset() == d.utcoffset() and type(out) is datetime


def test_date_is_not_confused_with_datetime():
    out = deserialize(serialize({"d": date(2024, 2, 29)}))
    assert out == {"d": date(2024, 2, 29)} and type(out["d"]) is date


def _raise(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as e:
        return e


@settings(deadline=None)
@given(st.text(max_size=50))
def test_exception_becomes_remote_error(message):
    exc = _raise(ValueError(message))
    out = deserialize(serialize({"r": exc}))["r"]
    assert isinstance(out, RemoteError)
    assert out.type == "ValueError" and out.message == message
    assert out.traceback is not None and "raise exc" in out.traceback and "ValueError" in out.traceback


def test_exception_type_is_qualified_outside_builtins():
    class Custom(Exception):
        pass

    d = error_to_dict(Custom("x"))
    assert d == {
        "type": f"{__name__}.test_exception_type_is_qualified_outside_builtins.<locals>.Custom",
        "message": "x",
        "traceback": None,
    }


def test_remote_error_round_trips_unchanged():
    err = RemoteError("pkg.Boom", "bad", "Traceback...")
    assert deserialize(serialize(err)) == err
    assert str(err) == "pkg.Boom: bad"


def test_pydantic_models_travel_as_their_json_dump():
    from pydantic import BaseModel

    class Point(BaseModel):
        x: int
        when: datetime

    p = Point(x=1, when=datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert deserialize(serialize(p)) == {"x": 1, "when": "2024-01-02T03:04:05Z"}


@pytest.mark.parametrize("value", [object(), {1, 2}, {"k": lambda: None}, [complex(1, 2)], 2**64])
def test_unsupported_values_raise_serialization_error(value):
    with pytest.raises(SerializationError):
        serialize(["a value packed before the bad one", value])
    # the per-thread packer is left clean: the next value packs alone
    assert serialize({"next": 1}) == msgpack.packb({"next": 1})


def test_serialization_error_names_the_type():
    with pytest.raises(SerializationError, match="set"):
        serialize({"a": {1}})


@pytest.mark.parametrize("blob", [b"\xc1", b"\x92\x01", b"", b"\xd4\x01"])
def test_undecodable_bytes_raise_serialization_error(blob):
    with pytest.raises(SerializationError, match="undecodable"):
        deserialize(blob)


def test_a_job_record_leaves_out_what_its_reader_fills_in():
    """The enqueue writes arq's job record without ``t`` while it is None and without ``q`` on
    the default queue (a no-op's payload: 26 bytes, a 48-byte allocation in Redis instead of
    64); arq's own reader, configured with asyncjobs' deserializer, still reads it."""
    from arq.jobs import deserialize_job_raw

    from asyncjobs import keys
    from asyncjobs.connections import create_broker
    from asyncjobs.registry import EnqueueOptions

    broker = create_broker("redis://127.0.0.1:1/0")  # encoding needs no connection
    enc = broker.encode_enqueue("noop", [], {}, EnqueueOptions(), job_id="j", queue_key=keys.queue("default"))
    payload = enc.argv[1]
    assert msgpack.unpackb(payload) == {"f": "noop", "a": [], "k": {}, "et": enc.now_ms}
    assert len(payload) <= 28
    assert deserialize_job_raw(payload, deserializer=deserialize) == ("noop", [], {}, None, enc.now_ms)
    other = broker.encode_enqueue("f", [1], {}, EnqueueOptions(), job_id="j", queue_key=keys.queue("high"), job_try=3)
    assert msgpack.unpackb(other.argv[1]) == {"f": "f", "a": [1], "k": {}, "et": other.now_ms, "t": 3, "q": "high"}
    # only a job record gets a try filled in; other maps are decoded as written
    for other_map in ({"f": "x", "a": [], "k": {}}, {"f": "x", "a": [], "k": {}, "et": 1, "z": 0}, {"et": 1}):
        assert deserialize(serialize(other_map)) == other_map
