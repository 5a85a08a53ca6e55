"""The one error type for bad input data, shared by every reader, the builder and the engine."""


class FundusDataError(ValueError):
    """Bad input data: the message names the file, the line or record, and the field.

    The command line prints the message as one line and exits 2 (``-v`` adds the traceback).
    """
