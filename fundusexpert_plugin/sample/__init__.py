"""The bundled sample: 12 real IDRiD photographs (downscaled) with CODRAS boxes.

See ``LICENSE.md`` in this folder for provenance and licences (CC BY 4.0 images, CC BY-SA 4.0
boxes).
"""
from pathlib import Path
from typing import List

SAMPLE_DIR = Path(__file__).resolve().parent
ANNOTATIONS = SAMPLE_DIR / 'annotations.jsonl'
SPLITS = ('train', 'heldout')


def sample_records(split: str) -> List['FundusGenRecord']:  # noqa: F821
    """FundusGen records of one split of the bundled sample (``'train'`` or ``'heldout'``).

    Raises:
        ValueError: unknown split.
    """
    from fundusexpert_plugin.sources.codras import read_codras
    if split not in SPLITS:
        raise ValueError(f'unknown sample split {split!r}; expected one of {SPLITS}')
    return list(read_codras(ANNOTATIONS, split=split))
