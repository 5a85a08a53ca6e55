"""core/jsonl.py: the JSON number rule shared by the result and benchmark readers."""
import json

import pytest

from fundusexpert_plugin.core.jsonl import is_json_number


@pytest.mark.parametrize('text, expected', [
    ('0', True), ('-3.5', True), ('1e3', True),
    ('true', False), ('"100"', False), ('null', False), ('[1]', False),
    ('NaN', False), ('Infinity', False),          # json reads these as floats; they are no JSON numbers
])
def test_is_json_number_as_json_reads_each_value(text, expected):
    assert is_json_number(json.loads(text)) is expected
