"""Text with ms-swift grounding placeholders and the ``objects`` that fill them.

ms-swift fills every ``<ref-object>`` in a conversation, user and assistant turns together, with
the next entry of ``objects.ref``, and every ``<bbox>`` with the next entry of ``objects.bbox``
(ms-swift 4.6 ``Template._pre_tokenize``). Each template family then renders its own
convention (InternVL ``<ref>..</ref><box>[[..]]</box>`` on 0-999, Qwen2.5-VL
``<|box_start|>(x1,y1),(x2,y2)<|box_end|>`` in resized pixels). Building the text and the
objects in one place keeps the two sequences in the same order.
"""
from __future__ import annotations

from typing import List, Optional, Sequence


class GroundedText:
    """Accumulates ``objects`` while text with placeholders is written, in reading order.

    Boxes are stored as xyxy **original-image pixels** (``bbox_type='real'``).
    """

    def __init__(self) -> None:
        self.refs: List[str] = []
        self.bboxes: List[List[float]] = []
        #: the reference text each box of ``bboxes`` belongs to (``None`` for a box without one)
        self.box_refs: List[Optional[str]] = []

    def ref(self, name: str, boxes_px: Sequence[Sequence[float]] = ()) -> str:
        """``<ref-object>`` for ``name`` followed by one ``<bbox>`` per box.

        Args:
            name: display text of the reference (already in the row's language).
            boxes_px: xyxy pixel boxes of that reference, in the order they should be written.
        """
        self.refs.append(name)
        text = '<ref-object>' + ''.join(self.box(b) for b in boxes_px)
        self.box_refs[len(self.box_refs) - len(boxes_px):] = [name] * len(boxes_px)
        return text

    def box(self, box_px: Sequence[float]) -> str:
        """One ``<bbox>`` placeholder for an xyxy pixel box (or an (x, y) point)."""
        self.bboxes.append([round(float(v), 2) for v in box_px])
        self.box_refs.append(None)
        return '<bbox>'

    def objects(self) -> Optional[dict]:
        """The ms-swift ``objects`` dict, or ``None`` when nothing was grounded."""
        if not self.refs and not self.bboxes:
            return None
        return {'ref': list(self.refs), 'bbox': [list(b) for b in self.bboxes], 'bbox_type': 'real'}
