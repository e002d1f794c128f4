"""Property-based fuzzing of the request parser: whatever arrives on the core's stdin, the
parser answers with a Request or one typed error, never another exception (which the worker
would report as "internal"). bench/fuzz.py runs the same generator for 100,000+ cases."""

from __future__ import annotations

import io
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nst_core import protocol
from nst_core.errors import NSTError
from nst_core.options import Options

from .request_fuzz import OPTION_NAMES, json_values, messages, outcome, valid_request

FUZZ = settings(max_examples=1500, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@FUZZ
@given(messages())
def test_any_message_gets_a_request_or_one_typed_error(data):
    result = outcome(data)
    assert result != "internal" and not result.startswith("crash"), result


@settings(max_examples=300, deadline=None, database=None)
@given(valid_request())
def test_valid_requests_parse_and_account_for_every_payload_byte(drawn):
    header, size = drawn
    data = json.dumps(header).encode() + b"\n" + bytes(size)
    request = protocol.read_request(io.BytesIO(data))
    assert request.payload_bytes == size
    assert len(request.content) == request.content_bytes
    assert [len(d) for d in request.style_data] == [s.size for s in request.styles]
    assert request.preview in (None, *range(protocol.PREVIEW_SIZES[0],
                                            protocol.PREVIEW_SIZES[1] + 1))


@FUZZ
@given(st.dictionaries(st.sampled_from(OPTION_NAMES), json_values, min_size=1, max_size=4))
def test_any_option_values_give_options_or_one_bad_option(values):
    try:
        Options.from_dict(values)
    except NSTError as e:
        assert e.kind == "bad_option", e
        assert any(name in e.message for name in values), e.message
