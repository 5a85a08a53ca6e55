"""``fundusexpert data deidentify``: de-identified copies of DICOM files, with dicognito.

dicognito (https://github.com/blairconrad/dicognito) replaces the identifying attributes of each
file: person names, patient/accession/study IDs, UIDs, dates and times (shifted by one offset per
run), addresses and institution/equipment names, and sets PatientIdentityRemoved = YES and
DeidentificationMethod. dicognito leaves free-text descriptions in place, which the DICOM PS3.15
Basic Application Level Confidentiality Profile (Table E.1-1, action X) removes; those listed in
:data:`FREE_TEXT_REMOVED` are removed here, as are private tags (the profile without the *Retain
Safe Private* option). Files with burned-in annotation are refused unless ``--accept-burned-in``. One anonymiser serves the whole run, so
files of one patient or study stay linked to one pseudonym; ``--seed`` makes the pseudonyms
repeatable. The pixels are not changed.

Output files are named by their new SOP Instance UID (``<uid>.dcm``), never by the input name.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List

#: Free-text attributes with action X (remove) in PS3.15 Table E.1-1 that dicognito 0.19 keeps.
FREE_TEXT_REMOVED = ('StudyDescription', 'SeriesDescription', 'ImageComments', 'PatientComments',
                     'AdditionalPatientHistory', 'AdmittingDiagnosesDescription', 'DerivationDescription',
                     'RequestedProcedureDescription', 'PerformedProcedureStepDescription', 'AcquisitionComments',
                     'StudyComments', 'ProtocolName', 'ReasonForTheRequestedProcedure')


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fundusexpert data deidentify``."""
    parser.add_argument('--dicom', type=Path, required=True, help='folder of DICOM files (recursive, by content)')
    parser.add_argument('--out', type=Path, required=True, help='folder for the de-identified copies')
    parser.add_argument('--seed', default=None, help='dicognito seed: same seed, same pseudonyms (keep it private)')
    parser.add_argument('--accept-burned-in', action='store_true', help='copy files with BurnedInAnnotation = YES')
    parser.add_argument('--lenient', action='store_true', help='skip refused or unreadable files (listed)')


def _read_checked(path: Path, accept_burned_in: bool):
    import pydicom
    from pydicom.errors import InvalidDicomError

    from fundusexpert_plugin.core.dicom import read_fields
    from fundusexpert_plugin.core.errors import FundusDataError
    try:
        ds = pydicom.dcmread(path)
    except (InvalidDicomError, OSError, ValueError) as exc:
        raise FundusDataError(f'{path}: unreadable DICOM file ({exc})') from None
    if read_fields(ds).burned_in and not accept_burned_in:
        raise FundusDataError(f'{path}: BurnedInAnnotation (0028,0301) = YES: burned-in text is not removed '
                              'by header de-identification; refused (--accept-burned-in to copy it)')
    return ds


def deidentify_folder(src: Path, out: Path, *, seed: str | None = None, accept_burned_in: bool = False,
                      lenient: bool = False, skipped: List[str] | None = None) -> List[Path]:
    """Write a de-identified copy of every DICOM file under ``src`` to ``out``.

    Returns:
        The files written.

    Raises:
        FundusDataError: a refused (burned-in) or unreadable file, when not ``lenient``.
        FileNotFoundError: no DICOM file under ``src``.
    """
    from dicognito.anonymizer import Anonymizer

    from fundusexpert_plugin.core.errors import FundusDataError
    from fundusexpert_plugin.sources.dicom import list_dicom_files
    anonymizer = Anonymizer(seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in list_dicom_files(src):
        try:
            ds = _read_checked(path, accept_burned_in)
        except FundusDataError as exc:
            if not lenient:
                raise
            if skipped is not None:
                skipped.append(str(exc))
            continue
        anonymizer.anonymize(ds)
        ds.remove_private_tags()
        for keyword in FREE_TEXT_REMOVED:
            if keyword in ds:
                delattr(ds, keyword)
        target = out / f'{ds.SOPInstanceUID}.dcm'
        ds.save_as(target)
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
