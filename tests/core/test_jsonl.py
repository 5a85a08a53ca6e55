"""core/jsonl.py: the JSON number rule shared by the result and benchmark readers."""
import json

import pytest

from fundusexpert_plugin.core.errors import FundusDataError
from fundusexpert_plugin.core.jsonl import is_json_number, read_jsonl


@pytest.mark.parametrize('text, expected', [
    ('0', True), ('-3.5', True), ('1e3', True),
    ('true', False), ('"100"', False), ('null', False), ('[1]', False),
    ('NaN', False), ('Infinity', False),          # json reads these as floats; they are no JSON numbers
])
def test_is_json_number_as_json_reads_each_value(text, expected):
    assert is_json_number(json.loads(text)) is expected


def test_an_unterminated_string_is_named_once_with_its_column(tmp_path):
    path = tmp_path / 'x.jsonl'
    path.write_text('{"a": "abc\n', encoding='utf-8')
    with pytest.raises(FundusDataError) as exc:
        list(read_jsonl(path))
    assert str(exc.value) == f'{path}:1: not valid JSON (Unterminated string starting at column 7)'
