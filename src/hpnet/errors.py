"""The one exception type users see: a bad input, told in one line."""


class HPNetError(Exception):
    """Bad user input (file, row, argument). The CLI prints ``error: <message>`` and exits 2."""
