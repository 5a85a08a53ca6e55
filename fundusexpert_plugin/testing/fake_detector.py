"""A stand-in detector for engine tests: deterministic boxes, optional interruption."""
from fundusexpert_plugin.detector.detect import Detection, Detector


class FakeDetector:
    """Returns an optic disc on the left third and one exudate; ``stop_after`` raises KeyboardInterrupt
    on that call (a killed run)."""

    classes = ('optic_disc', 'hard_exudates')

    def __init__(self, stop_after=None, extra=()):
        self.calls = 0
        self.stop_after = stop_after
        self.extra = list(extra)

    def predict(self, bgr):
        self.calls += 1
        if self.stop_after is not None and self.calls > self.stop_after:
            raise KeyboardInterrupt('simulated kill')
        h, w = bgr.shape[:2]
        level = float(bgr.mean()) / 255  # differs per image, so records differ
        return [Detection('optic_disc', (0.1 * w, 0.4 * h, 0.25 * w, 0.6 * h), 0.9),
                Detection('hard_exudates', (0.5 * w, 0.2 * h, (0.55 + 0.1 * level) * w, 0.3 * h), 0.6)] + self.extra


class TileConfusedDetector(Detector):
    """A :class:`Detector` without a model that misbehaves on tiles, as a detector trained on whole
    photographs does: on the whole image it returns the optic disc of the landmark locator (score
    0.8); on any smaller input (a tile) it returns a confident "optic disc" around the tile's
    brightest point (score 0.95) and one ``hard_exudates`` box at the tile centre (score 0.5).

    Args:
        tile_size: the tiling window (pixels); the whole image is recognised by being wider.
    """

    def __init__(self, tile_size, tile_overlap: float = 0.2):  # no mmdet model
        self.classes = ('optic_disc', 'hard_exudates')
        self.score_threshold, self.merge_iou, self.whole_image_pass = 0.3, 0.5, True
        self.tile_size, self.tile_overlap = tile_size, tile_overlap

    def _infer(self, images):
        import cv2

        from fundusexpert_plugin.detector.landmarks import locate_landmarks
        out = []
        for bgr in images:
            h, w = bgr.shape[:2]
            if self.tile_size is None or w > self.tile_size:
                box = locate_landmarks(bgr[:, :, ::-1]).disc_box_px
                out.append([Detection('optic_disc', tuple(float(v) for v in box), 0.8)])
                continue
            grey = cv2.GaussianBlur(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), (0, 0), 9)
            y, x = divmod(int(grey.argmax()), w)
            r = w / 8
            out.append([Detection('optic_disc', (max(0.0, x - r), max(0.0, y - r), min(w, x + r), min(h, y + r)), 0.95),
                        Detection('hard_exudates', (w / 2 - 4, h / 2 - 4, w / 2 + 4, h / 2 + 4), 0.5)])
        return out


class BoxListDetector:
    """Returns a fixed list of detections (whatever the photograph): for rules on known boxes."""

    def __init__(self, detections, classes=('optic_disc', 'hard_exudates', 'haemorrhages'), score_threshold=0.3):
        self.detections, self.classes, self.score_threshold = list(detections), tuple(classes), score_threshold

    def predict(self, bgr):
        return list(self.detections)
