"""Render: positions relative to optic disc and fovea, the cognitive chain, grounded box text.

Takes a record; gives text (EN/ZH) with boxes on the template family's grid. Imports only :mod:`fundusexpert_plugin.core`.
"""
