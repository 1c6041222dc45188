"""Bourse: an automated trading platform for Interactive Brokers.

The library. Nothing here opens a socket or touches the disk at import time.
"""

__version__ = "0.1.0"
