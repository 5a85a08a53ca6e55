"""Sources: every annotation format (YOLO, COCO, CODRAS jsonl, CSV tables, masks, public dataset layouts) -> FundusGen records.

Takes a dataset's own files; gives records with provenance. Imports only :mod:`fundusexpert_plugin.core`.
"""
