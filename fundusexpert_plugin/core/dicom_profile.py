"""DICOM PS3.15 Table E.1-1 (Application Level Confidentiality Profile Attributes) as data.

The table ships as ``ps315_basic_profile.json`` next to this module (read with
:mod:`importlib.resources`, so it works from a wheel): one row per attribute, ``[tag, name,
basic profile action, retain-longitudinal-temporal-information-with-modified-dates option]``, as
extracted from the DICOM standard (version and source in the file's ``source``/``version`` keys).

Actions (PS3.15 E.1.1): ``X`` remove; ``Z`` zero-length value, or a dummy value consistent with the
VR; ``D`` a non-zero-length dummy value consistent with the VR; ``U`` a UID internally consistent
within the set of instances; ``X/Z``, ``X/D``, ``X/Z/D``, ``Z/D``: the first unless the next is
needed for IOD conformance; ``X/Z/U*``: remove, or zero, or replace the UIDs contained in the sequence.
The modified-dates column is ``'C'`` where that option lets a date/time be kept shifted.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Optional, Tuple

#: Data file of the table, in this package.
PROFILE_FILE = 'ps315_basic_profile.json'
_TAG = re.compile(r'\(([0-9A-FX]{4}),([0-9A-FX]{4})\)')


@dataclass(frozen=True)
class ProfileAttribute:
    """One row of Table E.1-1.

    Attributes:
        tag: as printed in the table: ``'(0010,0010)'``, ``'(60XX,3000)'`` (repeating group), or
            ``'(GGGG,EEEE) WHERE GGGG IS ODD'`` (private attributes).
        name: the attribute name.
        action: the Basic Profile action (``'X'``, ``'Z'``, ``'D'``, ``'U'``, ``'X/Z'``, ...).
        modified_dates: the Retain Longitudinal Temporal Information with Modified Dates option
            applies (a shifted date/time may be kept).
    """

    tag: str
    name: str
    action: str
    modified_dates: bool

    @property
    def actions(self) -> frozenset:
        """The single actions of ``action`` (``'X/Z/U*'`` -> ``{'X', 'Z', 'U'}``)."""
        return frozenset(part.rstrip('*') for part in self.action.split('/'))

    @property
    def private(self) -> bool:
        """The row for all private attributes (odd groups)."""
        return 'GGGG' in self.tag

    def matches(self, tag: int) -> bool:
        """True when the 32-bit ``tag`` (group << 16 | element) is this row's attribute; ``X`` digits
        of a repeating group (``60XX``) match any hex digit, private rows match odd groups."""
        if self.private:
            return bool((tag >> 16) & 1)
        found = _TAG.fullmatch(self.tag)
        if not found:
            return False
        text = f'{tag >> 16:04X}{tag & 0xFFFF:04X}'
        return all(p in ('X', t) for p, t in zip(found.group(1) + found.group(2), text))


@lru_cache(maxsize=1)
def _load() -> dict:
    return json.loads(resources.files(__package__).joinpath(PROFILE_FILE).read_text(encoding='utf-8'))


def profile_version() -> str:
    """The DICOM standard version of the bundled table (e.g. ``'2024b'``)."""
    return _load()['version']


def basic_profile() -> Tuple[ProfileAttribute, ...]:
    """Every row of the bundled Table E.1-1, sorted by tag."""
    return tuple(ProfileAttribute(tag, name, action, option == 'C')
                 for tag, name, action, option in _load()['attributes'])


@lru_cache(maxsize=1)
def _index():
    exact, patterns = {}, []
    for row in basic_profile():
        found = _TAG.fullmatch(row.tag)
        if found and 'X' not in row.tag[1:-1].replace(',', ''):
            exact[int(found.group(1) + found.group(2), 16)] = row
        else:
            patterns.append(row)
    return exact, tuple(patterns)


def profile_row(tag: int) -> Optional[ProfileAttribute]:
    """The Table E.1-1 row of a 32-bit ``tag``, or ``None`` for attributes the table does not list
    (kept by the profile; sequences are still cleaned item by item)."""
    exact, patterns = _index()
    row = exact.get(int(tag))
    return row if row is not None else next((p for p in patterns if p.matches(int(tag))), None)
