"""The ``fundusexpert`` command line: every command, grouped by noun, with one error policy.

Takes argv; gives files and an exit status (0 done, 2 bad input or usage). Nothing in the library imports it.
"""
