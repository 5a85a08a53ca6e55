"""Readers that turn a dataset's own annotation layout into FundusGen records."""
