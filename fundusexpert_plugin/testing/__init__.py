"""Fixtures for tests, the demo and benchmarks: tiny offline models, a stand-in detector.

Takes a folder; gives locally built models that need no download. The library proper never imports it.
"""
