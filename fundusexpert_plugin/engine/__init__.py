"""Fundus-Engine: photographs (at most image-level labels) -> FundusGen records.

Stages, one module each: ``detect`` (MMDetection localization, tiled) -> ``masks`` (masks to boxes)
-> ``position`` (optic disc / fovea frame) -> ``expand`` (semantic expansion) -> ``chain`` (cognitive
chain, written by the builder) ; ``pipeline`` joins them for one photograph and ``batch`` runs them
over folders. mmdet is imported only when a detector is built.
"""
from .pipeline import FundusEngine

__all__ = ['FundusEngine']
