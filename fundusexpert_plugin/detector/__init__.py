"""Detector: MMDetection localisation (inference, tiling, mmcv-lite ops), records -> COCO, detector training.

Takes photographs or records; gives scored boxes in pixels, or a trained checkpoint. Imports only :mod:`fundusexpert_plugin.core`.
"""
