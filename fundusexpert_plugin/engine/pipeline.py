"""Fundus-Engine: photograph -> localization -> positioning -> semantic expansion -> FundusGen record.

    >>> from fundusexpert_plugin.engine import FundusEngine
    >>> from fundusexpert_plugin.detector.detect import Detector
    >>> engine = FundusEngine(Detector('work/rtmdet.py', 'work/rtmdet_slim.pth'))
    >>> record = engine.process('photos/0001.jpg', out_dir='engine_out')

The record is the one the FundusGen builder consumes; ``Finding.source='detector'`` with its score
marks what the detector produced, ``provenance.stages`` names the detector and the describer.
Positioning (laterality, fovea, quadrants, DD) is computed from the boxes when the chain is
written, so it always matches them.

Landmarks: the training-free locator (:mod:`fundusexpert_plugin.detector.landmarks`) runs on every
photograph (unless ``locator=None``). The optic disc comes from the detector when it finds a plausible
one (:func:`disc_plausibility`), else from the locator; the fovea from the detector when it has a
``fovea`` class and finds one, else from the locator (searched from the disc in use), so the 2.5-DD
prior is used only when neither exists. Either way the fovea finding is the 1-DD box
(:func:`~fundusexpert_plugin.core.geometry.fovea_box`, DD of the disc in use) centred on the
detected or located centre, as annotated fovea points are, so a fovea box means the same thing
whatever its source.
``provenance.landmarks`` says which source each landmark came from. When the detector and the
locator both give a landmark and their centres are more than :data:`DISAGREE_DD` disc diameters
apart, the record carries a sentence in ``provenance.flags`` (the detector's landmark is kept);
a detector disc that fails the plausibility rule is not used (the next plausible detector disc,
else the locator's) and ``provenance.flags`` says so (a sentence starting with
:data:`~fundusexpert_plugin.render.chain.IMPLAUSIBLE_DISC_FLAG`);
when the two discs lie on different sides of the image, laterality is left unknown. A DICOM
photograph's header laterality is kept as the record's; when the disc in use lies on the other
side (macula-centred rule), ``provenance.flags`` says so and a warning is logged.

Detector boxes go through :func:`fundusexpert_plugin.detector.detect.clean_detections` (nested
boxes of one class, bright lesions inside the disc in use, extra discs) before they are counted.

Defined behaviours (counted in the batch run summary, never a crash):
    * image conversions and EXIF rotation: see :mod:`.images`; a converted photograph is saved as an
      upright 8-bit RGB PNG copy under ``<out_dir>/images/`` without metadata (written whole or not at
      all, :func:`~fundusexpert_plugin.core.images.save_image`), and the record points to the copy (so
      every later reader sees the pixels the boxes refer to);
    * no optic disc from the detector nor the locator (e.g. a photograph too small for the
      locator, ``MIN_FOV_WIDTH_PX``): the record is kept without laterality (the chain then
      describes positions relative to the image) and the summary counts it under ``no_optic_disc``;
    * several optic-disc detections: only the highest-scoring plausible one is kept (one disc per eye).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path, PurePosixPath
from typing import Dict, List, Optional, Sequence

from PIL import Image

import numpy as np

from fundusexpert_plugin.core import vocab
from fundusexpert_plugin.core.dicom import DicomFields, check_laterality, is_dicom, read_dicom
from fundusexpert_plugin.core.errors import FundusDataError
from fundusexpert_plugin.core.geometry import box_center, clip_box, fovea_box, fovea_dd_px, laterality_from_disc
from fundusexpert_plugin.core.images import LoadedImage, load_image, save_image
from fundusexpert_plugin.core.record import FundusGenRecord, parse_record
from fundusexpert_plugin.detector.detect import Detection, clean_detections
from fundusexpert_plugin.detector.landmarks import LOCATOR_NAME, Landmarks, locate_landmarks
from fundusexpert_plugin.engine.expand import Describer, RuleDescriber, expand_record
from fundusexpert_plugin.engine.labels import ImageLabels
from fundusexpert_plugin.render.chain import IMPLAUSIBLE_DISC_FLAG
from fundusexpert_plugin.render.position import disc_diameter_px

logger = logging.getLogger(__name__)

#: Two sources' centres of one landmark further apart than this many disc diameters are flagged (ours:
#: one DD is about 1.5 mm on the retina, far beyond annotation noise; the locator's disc error on
#: IDRiD is under 0.2 DD, ``benchmarks/landmarks.py``).
DISAGREE_DD = 1.0
#: Plausible optic-disc diameter (:func:`~fundusexpert_plugin.core.geometry.disc_diameter_px`, the mean
#: of the box's sides) as a fraction of the image width, ``(low, high)``. Measured on the 36 CODRAS disc
#: boxes of IDRiD photos (12 of them ship in ``sample/annotations.jsonl``): 0.091-0.159 of the width,
#: median 0.130. The band is deliberately generous (other cameras, 30-50 degree fields,
#: photographs cropped to the field of view or with a wide black border), so only boxes no camera
#: gives (a 0.8-px box, a box over half the image) are refused.
DISC_DD_PER_WIDTH = (0.04, 0.30)
#: Plausible width / height of an optic-disc box, ``(low, high)``. The 36 CODRAS boxes: 0.82-1.09
#: (a disc is a slightly vertical oval); 0.5-2.0 also admits a disc cut by the image edge.
DISC_ASPECT = (0.5, 2.0)


class FundusEngine:
    """The data engine over one detector (anything with ``predict(bgr_array) -> [Detection]``) and
    the landmark locator.

    Args:
        detector: e.g. :class:`.detect.Detector`; ``predict`` takes np.ndarray[H, W, 3] uint8 BGR and
            returns detections with ``label_id`` (finding id), ``box_px`` (xyxy original pixels) and
            ``score``. ``None``: landmarks only (the locator).
        locator: ``f(rgb, disc_center_px=None) -> Landmarks`` (default
            :func:`.landmarks.locate_landmarks`); ``None`` turns it off.
        describer: semantic expansion backend (default :class:`.expand.RuleDescriber`).
        languages: languages the describer is asked for.
        detector_name: recorded in ``provenance.stages['localization']``.
        claim_absent: also list the detector's classes as exhaustively annotated, so a class with no
            detection is reported "not seen". Off by default: a detector miss is not an absence.
        source_dataset, licence: provenance of the photographs.
        image_labels: image-level labels of the photographs: a table read by
            :func:`.labels.read_image_labels` (matching rules there), or record id (path relative to
            the image root, without suffix) -> ``image_labels`` dict (e.g. ``{'dr_grade': '2'}``).
    """

    def __init__(self, detector=None, *, locator=locate_landmarks, describer: Optional[Describer] = None, languages: Sequence[str] = vocab.LANGUAGES,
                 detector_name: str = 'detector', claim_absent: bool = False, source_dataset: str = 'unlabelled photographs',
                 licence: str = "see the photographs' terms",
                 image_labels: Optional[ImageLabels | Dict[str, Dict[str, str]]] = None):
        self.detector = detector
        self.locator = locator
        self.describer = describer or RuleDescriber()
        self.languages = tuple(vocab.check_language(lang) for lang in languages)
        self.detector_name = detector_name
        self.claim_absent = claim_absent
        self.source_dataset, self.licence = source_dataset, licence
        self.image_labels = (image_labels if isinstance(image_labels, ImageLabels)
                             else ImageLabels.from_ids(image_labels or {}))

    def _detector_classes(self) -> List[str]:
        return list(getattr(self.detector, 'classes', [])) if self.detector is not None else []

    def _locate(self, rgb: np.ndarray, disc_center: Optional[Sequence[float]]) -> Optional[Landmarks]:
        if self.locator is None:
            return None
        try:
            return self.locator(rgb, disc_center_px=disc_center)
        except ValueError as exc:  # too small or no field of view: no landmarks, counted as no disc
            logger.debug('landmark locator: %s', exc)
            return None

    def process(self, path: Path | str, *, out_dir: Path | str, record_id: Optional[str] = None,
                image: Optional[LoadedImage] = None, dicom: Optional[DicomFields] = None) -> FundusGenRecord:
        """Run every stage on one photograph.

        Args:
            path: the photograph.
            out_dir: where records are written; the record's ``image`` is relative to it.
            record_id: default the file stem; required for a DICOM file, whose name may identify the
                patient (e.g. :func:`.batch.record_ids` with a salt, as ``engine run`` names them).
            image: an already loaded image (else :func:`.images.load_image`; a DICOM file, ``DICM`` at
                byte 128, is read with :func:`~fundusexpert_plugin.core.dicom.read_dicom`, which also
                gives ``dicom`` when it is not passed).
            dicom: the allowed header fields of a DICOM photograph
                (:func:`fundusexpert_plugin.core.dicom.read_dicom`): its laterality is the record's
                (``laterality_source='dicom'``), checked against the optic disc in use by
                :func:`~fundusexpert_plugin.core.dicom.check_laterality` (a disagreement is a warning
                and a sentence in ``provenance.flags``; the DICOM value is kept), and its pixel
                spacing is recorded. The pixels are always written as a fresh PNG copy.

        Raises:
            ImageSkip: the image cannot be read (a refused DICOM file: ``DicomRefused``).
            FundusDataError: the detector returned a box the record rejects (message names it), a
                DICOM file without ``record_id``, or a ``record_id`` that is absolute or holds ``..``
                (its photo copy would be written outside ``out_dir/images``).
        """
        out_dir = Path(out_dir)
        if image is None and is_dicom(path):
            if not record_id:
                raise FundusDataError('DICOM file (name withheld): give record_id, e.g. '
                                      'engine.batch.record_ids([path], None, dicom_salt=...); clinical file names '
                                      'often carry the patient name, so the file stem is never used')
            photo = read_dicom(path)
            image, dicom = photo.image, dicom or photo.fields
        image = image or load_image(path)
        record_id = record_id or Path(path).stem
        parts = PurePosixPath(record_id.replace('\\', '/')).parts
        if not parts or parts[0] == '/' or '..' in parts:
            raise FundusDataError(f'record_id {record_id!r}: not a relative path inside the output folder (the '
                                  'photo copy is written to <out_dir>/images/<record_id>.png); ids are file stems or '
                                  'paths relative to the image root, as engine.batch.record_ids makes them')
        image_file = Path(path)
        if image.conversion or dicom is not None:
            image_file = out_dir / 'images' / f'{record_id}.png'
            save_image(image.rgb, image_file)  # a fresh image: no EXIF or other metadata
        detections = list(self.detector.predict(image.bgr())) if self.detector is not None else []
        clipped = []
        for det in detections:
            box = clip_box(det.box_px, image.width, image.height)
            if box[2] > box[0] and box[3] > box[1]:
                clipped.append(det._replace(box_px=box))
        discs = sorted((d for d in clipped if d.label_id == 'optic_disc'), key=lambda d: -d.score)
        reasons = [disc_plausibility(d.box_px, image.width) for d in discs]
        refused = [(d, why) for d, why in zip(discs, reasons) if why]
        det_disc = next((d.box_px for d, why in zip(discs, reasons) if not why), None)
        clipped = [d for d in clipped if d not in {r for r, _ in refused}]  # never counted, never a finding
        marks = self._locate(image.rgb, box_center(det_disc) if det_disc else None)
        sources: Dict[str, str] = {}
        flags: List[str] = []
        laterality = None
        if refused:
            flags.append(_implausible_flag(refused, 'detector' if det_disc is not None else
                                           'locator' if marks is not None else None))
        if det_disc is not None:
            disc_box, sources['optic_disc'] = det_disc, 'detector'
        elif marks is not None:
            disc_box = clip_box(marks.disc_box_px, image.width, image.height)
            clipped.append(Detection('optic_disc', disc_box, 1.0))
            sources['optic_disc'] = 'locator'
        else:
            disc_box = None
        if disc_box is not None:
            laterality = laterality_from_disc(disc_box, image.width)
        if det_disc is not None and marks is not None:
            flag = _disagreement('optic disc', box_center(det_disc), marks.disc_center_px,
                                 disc_diameter_px(det_disc))
            if flag:
                loc_side = 'right' if marks.disc_center_px[0] > image.width / 2 else 'left'
                if loc_side != laterality:
                    laterality = None
                    flag += '; they lie on different sides of the image, so laterality is not given'
                flags.append(flag)
        laterality_source = 'optic_disc_position' if laterality else None
        if dicom is not None and dicom.laterality is not None:
            flag = check_laterality(dicom.laterality, disc_box, image.width, where=record_id)
            flags += [flag] if flag else []
            laterality, laterality_source = dicom.laterality, 'dicom'
        kept, _ = clean_detections(clipped, disc_box_px=disc_box)
        det_fovea = next((d for d in kept if d.label_id == 'fovea'), None)
        dd_fovea = fovea_dd_px(image.width, disc_box_px=disc_box)
        findings = []
        for det in kept:
            if det.label_id == 'fovea' and det is not det_fovea:
                continue
            located = det.label_id == 'optic_disc' and sources.get('optic_disc') == 'locator'
            box = det.box_px
            if det.label_id == 'fovea':  # the 1-DD box centred on the detection, as for annotated points
                box = fovea_box(*box_center(det.box_px), image.width, image.height, dd_fovea)
            findings.append({'label': det.label_id, 'box_px': list(box),
                             'source': 'locator' if located else 'detector',
                             'score': None if located else round(float(det.score), 4)})
        if det_fovea is not None:
            sources['fovea'] = 'detector'
            if marks is not None and disc_box is not None:
                flag = _disagreement('fovea', box_center(det_fovea.box_px), marks.fovea_px,
                                     disc_diameter_px(disc_box))
                flags += [flag] if flag else []
        elif marks is not None and disc_box is not None:
            sources['fovea'] = 'locator'
            findings.append({'label': 'fovea', 'source': 'locator',
                             'box_px': list(fovea_box(*marks.fovea_px, image.width, image.height, dd_fovea))})
        stages = {'localization': self.detector_name if self.detector is not None else 'none',
                  'positioning': 'rules (render/position.py)', 'expansion': self.describer.name}
        if marks is not None:
            stages['landmarks'] = LOCATOR_NAME
        if image.conversion:
            stages['image'] = image.conversion
        data = {
            'record_id': record_id,
            'image': os.path.relpath(image_file.resolve(), out_dir.resolve()).replace(os.sep, '/'),
            'width': image.width, 'height': image.height,
            'laterality': laterality, 'laterality_source': laterality_source,
            'pixel_spacing_mm': dicom.pixel_spacing_mm if dicom is not None else None,
            'findings': findings,
            'image_labels': self.image_labels.for_photo(record_id, path),
            'provenance': {
                'source_dataset': self.source_dataset, 'licence': self.licence,
                'annotated_labels': self._detector_classes() if self.claim_absent else [],
                'detector_labels': self._detector_classes(),
                'score_threshold': getattr(self.detector, 'score_threshold', None) if self.detector is not None else None,
                'stages': stages, 'landmarks': sources, 'flags': flags,
            },
        }
        record = parse_record(data, where=f'{path}: engine output')
        if not isinstance(self.describer, RuleDescriber):
            with Image.fromarray(image.rgb) as pil:
                record = expand_record(record, self.describer, pil, self.languages)
        return record


def disc_plausibility(box_px: Sequence[float], width: int) -> str:
    """Why a detected optic-disc box is implausible, or ``''`` when it is plausible.

    Rule (ours, from real disc boxes; see :data:`DISC_DD_PER_WIDTH` and :data:`DISC_ASPECT`): the disc
    diameter (:func:`~fundusexpert_plugin.core.geometry.disc_diameter_px`, mean of the sides) must lie
    within ``DISC_DD_PER_WIDTH`` of the image width and the width / height within ``DISC_ASPECT``.

    Args:
        box_px: xyxy pixel box (already clipped to the image).
        width: image width in pixels.

    Returns:
        e.g. ``'diameter 0.8 px = 0.0002 of the image width (plausible 0.04-0.30)'``; ``''`` if plausible.
    """
    x1, y1, x2, y2 = box_px
    dd = disc_diameter_px(box_px)
    frac = dd / width if width > 0 else 0.0
    reasons = []
    if not DISC_DD_PER_WIDTH[0] <= frac <= DISC_DD_PER_WIDTH[1]:
        reasons.append(f'diameter {dd:.1f} px = {frac:.4f} of the image width '
                       f'(plausible {DISC_DD_PER_WIDTH[0]:.2f}-{DISC_DD_PER_WIDTH[1]:.2f})')
    aspect = (x2 - x1) / (y2 - y1) if y2 > y1 else float('inf')
    if not DISC_ASPECT[0] <= aspect <= DISC_ASPECT[1]:
        reasons.append(f'width/height {aspect:.2f} (plausible {DISC_ASPECT[0]:g}-{DISC_ASPECT[1]:g})')
    return ', '.join(reasons)


def _implausible_flag(refused: Sequence, used: Optional[str]) -> str:
    """The one flag sentence for the refused detector discs ``[(Detection, reason)]``; ``used``: where
    the disc in use came from instead (``'detector'``, ``'locator'`` or ``None``)."""
    boxes = '; '.join(f'({", ".join(f"{v:.1f}" for v in d.box_px)}) score {d.score:.3g}: {why}' for d, why in refused)
    instead = {'detector': "the detector's next optic disc is used",
               'locator': "the landmark locator's optic disc is used"}.get(used, 'no other optic disc is available')
    return f'{IMPLAUSIBLE_DISC_FLAG}: {boxes}; not used, {instead}'


def _disagreement(name: str, a: Sequence[float], b: Sequence[float], dd_px: float) -> str:
    """The flag sentence when the detector's point ``a`` and the locator's ``b`` are more than
    :data:`DISAGREE_DD` disc diameters (``dd_px`` pixels) apart, else ``''``."""
    dist = float(np.hypot(a[0] - b[0], a[1] - b[1]))
    if dd_px <= 0 or dist <= DISAGREE_DD * dd_px:
        return ''
    return (f'{name}: the detector ({a[0]:.0f}, {a[1]:.0f}) and the landmark locator ({b[0]:.0f}, {b[1]:.0f}) '
            f'are {dist / dd_px:.1f} DD apart (> {DISAGREE_DD:g} DD); the detector\'s {name} is used')
