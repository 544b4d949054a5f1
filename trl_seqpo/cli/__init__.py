"""The ``trl-seqpo`` command line: the only package that parses arguments.

Each command module turns flags into a config dataclass of the library, calls one library function and rewords its
``ValueError`` with the flag names. Nothing in the library imports this package.
"""
