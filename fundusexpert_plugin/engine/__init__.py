"""Fundus-Engine: photographs (at most image-level labels) -> FundusGen records.

Takes photographs and a detector (:mod:`fundusexpert_plugin.detector`); gives records with positions and
expanded descriptions. ``spec`` (options -> engine, once) -> ``pipeline`` (one photograph) -> ``batch``
(folders, shards, resume) / ``ray_runner`` (Ray Data, same shard files); ``expand`` is the semantic expansion.
mmdet is imported only when a detector is built.
"""
from fundusexpert_plugin.engine.pipeline import FundusEngine

__all__ = ['FundusEngine']
