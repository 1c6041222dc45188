#!/usr/bin/env python3
"""Bourse command line. ``./cli.py --help`` lists the commands."""

from trader.cli.main import main

if __name__ == "__main__":
    main()
