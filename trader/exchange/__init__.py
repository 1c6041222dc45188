"""Bourse paper exchange: a TWS API server (protocol, matching engine, session)."""
