"""Core: vocabulary, box geometry, the FundusGen record, the one image intake, jsonl io, the judge interface.

Takes files and plain values; gives validated records, upright RGB images and box conversions. Imports nothing else of the package.
"""
