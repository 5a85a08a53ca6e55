"""A stand-in detector for engine tests: deterministic boxes, optional interruption."""
from fundusexpert_plugin.detector.detect import Detection


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
