"""``fundusexpert data deidentify``: de-identified copies of DICOM files, dicognito then PS3.15 Table E.1-1.

1. dicognito (https://github.com/blairconrad/dicognito) replaces the identifying attributes it
   knows with consistent pseudonyms: person names, patient/accession/study IDs, UIDs, addresses,
   institution/equipment names, and dates/times shifted by one offset per run; it sets
   PatientIdentityRemoved = YES and DeidentificationMethod. One anonymiser serves the whole run,
   so files of one patient or study stay linked to one pseudonym; ``--seed`` makes the pseudonyms
   (and the UIDs of step 2) repeatable.
2. Every attribute of the DICOM PS3.15 Basic Application Level Confidentiality Profile (Table
   E.1-1, the bundled table of :mod:`fundusexpert_plugin.core.dicom_profile`, version in
   :func:`~fundusexpert_plugin.core.dicom_profile.profile_version`) that dicognito left as it was
   gets its action, at every sequence depth: ``X`` removed; ``X/Z``, ``X/D``, ``X/Z/D``,
   ``X/Z/U*`` removed unless dicognito replaced the value; ``Z`` emptied; ``D``, ``Z/D`` set to
   the dummy of :data:`DUMMY_VALUES`; ``U`` mapped to a new UID (one per original UID per run).
   A sequence with ``Z`` is emptied; other sequences are kept with their items cleaned. Private
   attributes are removed (the table's row for them: no *Retain Safe Private* option), as are the
   repeating curve and overlay groups it lists (50xx, 60xx,3000 and 60xx,4000).
   Dates and times: dicognito's shifted value is kept only where the *Retain Longitudinal Temporal
   Information with Modified Dates* option applies to the attribute (e.g. Study Date); elsewhere
   (e.g. Patient's Birth Date) the basic action is applied to it as to an unchanged value.

Pixel data is never changed, so files with burned-in annotation are refused unless
``--accept-burned-in``. Output files are named by their new SOP Instance UID (``<uid>.dcm``),
never by the input name.
"""
from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Dict, List, Optional

#: Dummy value per VR for ``D`` (and ``Z/D``) attributes dicognito did not replace; binary VRs get 8 zero bytes.
DUMMY_VALUES = {'AE': 'ANONYMOUS', 'AS': '000Y', 'CS': 'ANONYMOUS', 'DA': '19000101', 'DT': '19000101000000',
                'TM': '000000', 'DS': '0', 'IS': '0', 'LO': 'ANONYMOUS', 'LT': 'ANONYMOUS', 'PN': 'ANONYMOUS',
                'SH': 'ANONYMOUS', 'ST': 'ANONYMOUS', 'UC': 'ANONYMOUS', 'UR': 'urn:anonymous', 'UT': 'ANONYMOUS',
                'AT': 0, 'FL': 0.0, 'FD': 0.0, 'SL': 0, 'SS': 0, 'SV': 0, 'UL': 0, 'US': 0, 'UV': 0}
_DATE_VRS = ('DA', 'DT', 'TM')


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fundusexpert data deidentify``."""
    parser.add_argument('--dicom', type=Path, required=True, help='a DICOM file, or a folder of them (recursive, by content)')
    parser.add_argument('--out', type=Path, required=True, help='folder for the de-identified copies')
    parser.add_argument('--seed', default=None, help='dicognito seed: same seed, same pseudonyms (keep it private)')
    parser.add_argument('--accept-burned-in', action='store_true', help='copy files with BurnedInAnnotation = YES')
    parser.add_argument('--lenient', action='store_true', help='skip refused or unreadable files (listed)')


def _read_checked(path: Path, accept_burned_in: bool):
    """The dataset of one file after the intake's checks (:mod:`fundusexpert_plugin.core.dicom`): a
    readable, complete DICOM image within the pixel limit whose frame 0 decodes, not burned in.

    Raises:
        FundusDataError: (an ``ImageSkip``) unreadable, cut short, no pixel data, undecodable, too
            many pixels, or burned-in annotation without ``accept_burned_in``; the file and the
            attribute are named.
    """
    from fundusexpert_plugin.core.dicom import check_pixel_count, decode_first_frame, open_dataset, read_fields
    from fundusexpert_plugin.core.errors import FundusDataError
    ds = open_dataset(path)
    if read_fields(ds).burned_in and not accept_burned_in:
        raise FundusDataError(f'{path}: BurnedInAnnotation (0028,0301) = YES: burned-in text is not removed '
                              'by header de-identification; refused (--accept-burned-in to copy it)')
    if not str(getattr(ds, 'SOPInstanceUID', '') or ''):
        raise FundusDataError(f'{path}: no SOPInstanceUID (0008,0018): the copy could not be named')
    check_pixel_count(ds, path)
    decode_first_frame(ds, path)  # a copy of undecodable pixels would pass for a good file
    return ds


class _UidMap:
    """One new UID (``2.25.`` form, PS3.5 B.2) per original UID for the run; repeatable with a seed."""

    def __init__(self, seed: Optional[str]) -> None:
        import secrets
        self.key = seed if seed is not None else secrets.token_hex(16)
        self.seen: Dict[str, str] = {}

    def __call__(self, uid: str) -> str:
        from pydicom.uid import generate_uid
        if uid not in self.seen:
            self.seen[uid] = generate_uid(prefix=None, entropy_srcs=['fundusexpert-deidentify', self.key, uid])
        return self.seen[uid]


def apply_basic_profile(ds, before, new_uid) -> None:
    """Apply Table E.1-1 (module docstring, step 2) to ``ds`` in place, recursing into sequences.

    Args:
        ds: the dataset after dicognito.
        before: a copy of the same dataset before dicognito (``None``: every value counts as unreplaced).
        new_uid: ``str -> str`` UID mapping (consistent for the run).
    """
    from fundusexpert_plugin.core.dicom_profile import profile_row
    for elem in list(ds):
        row = profile_row(elem.tag)
        old = before.get(elem.tag) if before is not None else None
        if elem.VR == 'SQ':
            if row is not None and 'X' in row.actions:
                del ds[elem.tag]
            elif row is not None and row.actions == {'Z'}:
                elem.value = []
            else:
                old_items = list(old.value) if old is not None and old.VR == 'SQ' else []
                for i, item in enumerate(elem.value):
                    apply_basic_profile(item, old_items[i] if i < len(old_items) else None, new_uid)
            continue
        if row is None:
            continue
        replaced = (old is not None and elem.value != old.value and not elem.is_empty
                    and (elem.VR not in _DATE_VRS or row.modified_dates))
        actions = row.actions
        if actions == {'X'} or ('X' in actions and not replaced):
            del ds[elem.tag]
        elif replaced or elem.is_empty:
            continue
        elif 'U' in actions:
            elem.value = [new_uid(str(v)) for v in elem.value] if elem.VM > 1 else new_uid(str(elem.value))
        elif actions == {'Z'}:
            elem.value = None
        else:  # D, Z/D
            elem.value = DUMMY_VALUES.get(elem.VR, bytes(8))


def deidentify_dataset(ds, anonymizer, new_uid) -> None:
    """De-identify one dataset in place: dicognito, then :func:`apply_basic_profile`; pixel data untouched."""
    before = copy.deepcopy(ds)
    anonymizer.anonymize(ds)
    ds.remove_private_tags()
    apply_basic_profile(ds, before, new_uid)
    if 'MediaStorageSOPInstanceUID' in ds.file_meta:
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID


def deidentify_folder(src: Path, out: Path, *, seed: str | None = None, accept_burned_in: bool = False,
                      lenient: bool = False, skipped: List[str] | None = None) -> List[Path]:
    """Write a de-identified copy of every DICOM file under ``src`` to ``out`` (module docstring).

    Returns:
        The files written, ``<out>/<new SOP Instance UID>.dcm``.

    ``src`` may be one DICOM file; an ``out`` inside ``src`` is not listed (its earlier copies).

    Raises:
        FundusDataError: a refused (burned-in), unreadable, cut short or undecodable file, or a file
            whose SOP Instance UID repeats an earlier file's (both named; the copies would share a
            name), when not ``lenient``.
            Also: ``out`` already holds ``*.dcm`` files and no ``seed`` is given, or the first copy
            would be a new file beside them (another seed: new UIDs would add a second copy of every
            file). A call that stops on an error removes the copies it wrote where there were none.
        FileNotFoundError: no DICOM file under ``src``.
    """
    from dicognito.anonymizer import Anonymizer

    from fundusexpert_plugin.core.atomic import removed_on_error, replacing
    from fundusexpert_plugin.core.errors import FundusDataError
    from fundusexpert_plugin.sources.dicom import list_dicom_files
    anonymizer = Anonymizer(seed=seed)
    new_uid = _UidMap(seed)
    exclude = out if out.resolve().is_relative_to(Path(src).resolve()) else None
    paths = list_dicom_files(src, exclude=exclude)
    earlier = sorted(out.glob('*.dcm')) if out.is_dir() else []
    if earlier and seed is None:
        raise FundusDataError(f'{out}: holds {len(earlier)} DICOM file(s) of an earlier run; without --seed the new '
                              'copies get other UIDs and both would be kept: give an empty --out, or the earlier '
                              '--seed (same seed, same file names)')
    out.mkdir(parents=True, exist_ok=True)
    written: List[Path] = []
    seen: Dict[str, Path] = {}
    with removed_on_error((FundusDataError,)) as new_files:
        for path in paths:
            try:
                ds = _read_checked(path, accept_burned_in)
                uid = str(ds.SOPInstanceUID)
                if uid in seen:
                    raise FundusDataError(f'{path}: SOPInstanceUID (0008,0018) repeats that of {seen[uid]}')
                seen[uid] = path
            except FundusDataError as exc:
                if not lenient:
                    raise
                if skipped is not None:
                    skipped.append(str(exc))
                continue
            deidentify_dataset(ds, anonymizer, new_uid)
            target = out / f'{ds.SOPInstanceUID}.dcm'
            if earlier and not written and not target.exists():
                raise FundusDataError(f'{out}: holds {len(earlier)} DICOM file(s) of an earlier run, and {path} '
                                      'would be a new copy beside them: another --seed (or other inputs) adds a '
                                      'second copy of every file; give an empty --out, or the earlier --seed')
            new_files.add(target)
            with replacing(target) as tmp:  # a kill leaves no half-written copy
                ds.save_as(tmp)
            written.append(target)
    return written


def run(args: argparse.Namespace) -> int:
    """Run ``fundusexpert data deidentify``; 0 written, 1 nothing written (FundusDataError: exit 2)."""
    skipped: List[str] = []
    written = deidentify_folder(args.dicom, args.out, seed=args.seed, accept_burned_in=args.accept_burned_in,
                                lenient=args.lenient, skipped=skipped)
    for message in skipped:
        print(f'skipped: {message}', file=sys.stderr)
    print(f'{args.out}: {len(written)} de-identified DICOM files written, {len(skipped)} skipped')
    return 0 if written else 1
