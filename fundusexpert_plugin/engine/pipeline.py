"""Fundus-Engine: photograph -> localization -> positioning -> semantic expansion -> FundusGen record.

    >>> from fundusexpert_plugin.engine import FundusEngine
    >>> from fundusexpert_plugin.detector.detect import Detector
    >>> engine = FundusEngine(Detector('work/rtmdet.py', 'work/rtmdet_slim.pth'))
    >>> record = engine.process('photos/0001.jpg', out_dir='engine_out')

The record is the one the FundusGen builder consumes; ``Finding.source='detector'`` with its score
marks what the detector produced, ``provenance.stages`` names the detector and the describer.
Positioning (laterality, fovea, quadrants, DD) is computed from the boxes when the chain is
written, so it always matches them.

Defined behaviours (counted in the batch run summary, never a crash):
    * image conversions and EXIF rotation: see :mod:`.images`; a converted photograph is saved as an
      upright 8-bit RGB PNG copy under ``<out_dir>/images/`` without metadata, and the record points
      to the copy (so every later reader sees the pixels the boxes refer to);
    * no optic disc detected: the record is kept without laterality (the chain then describes
      positions relative to the image) and the summary counts it under ``no_optic_disc``;
    * several optic-disc detections: only the highest-scoring one is kept (one disc per eye).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from PIL import Image

from fundusexpert_plugin.core import vocab
from fundusexpert_plugin.core.record import FundusGenRecord, parse_record
from fundusexpert_plugin.engine.expand import Describer, RuleDescriber, expand_record
from fundusexpert_plugin.core.images import LoadedImage, load_image, save_image
from fundusexpert_plugin.core.geometry import laterality_from_disc

logger = logging.getLogger(__name__)


class FundusEngine:
    """The data engine over one detector (anything with ``predict(bgr_array) -> [Detection]``).

    Args:
        detector: e.g. :class:`.detect.Detector`; ``predict`` takes np.ndarray[H, W, 3] uint8 BGR and
            returns detections with ``label_id`` (finding id), ``box_px`` (xyxy original pixels) and
            ``score``.
        describer: semantic expansion backend (default :class:`.expand.RuleDescriber`).
        languages: languages the describer is asked for.
        detector_name: recorded in ``provenance.stages['localization']``.
        claim_absent: also list the detector's classes as exhaustively annotated, so a class with no
            detection is reported "not seen". Off by default: a detector miss is not an absence.
        source_dataset, licence: provenance of the photographs.
        image_labels: optional image key (path relative to the image root, without suffix) ->
            ``image_labels`` dict (e.g. ``{'dr_grade': '2'}``) for photographs with image-level labels.
    """

    def __init__(self, detector, *, describer: Optional[Describer] = None, languages: Sequence[str] = vocab.LANGUAGES,
                 detector_name: str = 'detector', claim_absent: bool = False, source_dataset: str = 'unlabelled photographs',
                 licence: str = "see the photographs' terms", image_labels: Optional[Dict[str, Dict[str, str]]] = None):
        self.detector = detector
        self.describer = describer or RuleDescriber()
        self.languages = tuple(vocab.check_language(lang) for lang in languages)
        self.detector_name = detector_name
        self.claim_absent = claim_absent
        self.source_dataset, self.licence = source_dataset, licence
        self.image_labels = image_labels or {}

    def _detector_classes(self) -> List[str]:
        return list(getattr(self.detector, 'classes', []))

    def process(self, path: Path | str, *, out_dir: Path | str, record_id: Optional[str] = None,
                image: Optional[LoadedImage] = None) -> FundusGenRecord:
        """Run every stage on one photograph.

        Args:
            path: the photograph.
            out_dir: where records are written; the record's ``image`` is relative to it.
            record_id: default the file stem.
            image: an already loaded image (else :func:`.images.load_image`).

        Raises:
            ImageSkip: the image cannot be read.
            FundusDataError: the detector returned a box the record rejects (message names it).
        """
        out_dir = Path(out_dir)
        image = image or load_image(path)
        record_id = record_id or Path(path).stem
        image_file = Path(path)
        if image.conversion:
            image_file = out_dir / 'images' / f'{record_id}.png'
            save_image(image.rgb, image_file)  # a fresh image: no EXIF or other metadata
        detections = self.detector.predict(image.bgr())
        findings, disc_seen = [], False
        for det in sorted(detections, key=lambda d: -d.score):
            x1, y1, x2, y2 = (min(max(v, 0.0), lim) for v, lim in zip(det.box_px, (image.width, image.height) * 2))
            if x2 <= x1 or y2 <= y1:
                continue
            if det.label_id == 'optic_disc':
                if disc_seen:
                    continue
                disc_seen = True
            findings.append({'label': det.label_id, 'box_px': [x1, y1, x2, y2], 'source': 'detector',
                             'score': round(float(det.score), 4)})
        disc = next((f['box_px'] for f in findings if f['label'] == 'optic_disc'), None)
        laterality = laterality_from_disc(disc, image.width) if disc else None
        data = {
            'record_id': record_id,
            'image': os.path.relpath(image_file.resolve(), out_dir.resolve()).replace(os.sep, '/'),
            'width': image.width, 'height': image.height,
            'laterality': laterality, 'laterality_source': 'optic_disc_position' if laterality else None,
            'findings': findings,
            'image_labels': self.image_labels.get(record_id, {}),
            'provenance': {
                'source_dataset': self.source_dataset, 'licence': self.licence,
                'annotated_labels': self._detector_classes() if self.claim_absent else [],
                'stages': {'localization': self.detector_name, 'positioning': 'rules (engine/position.py)',
                           'expansion': self.describer.name,
                           **({'image': image.conversion} if image.conversion else {})},
            },
        }
        record = parse_record(data, where=f'{path}: engine output')
        if not isinstance(self.describer, RuleDescriber):
            with Image.fromarray(image.rgb) as pil:
                record = expand_record(record, self.describer, pil, self.languages)
        return record
