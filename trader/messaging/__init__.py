"""The wire contract of Bourse: msgpack codec, RPC over ROUTER/DEALER, batched pub/sub.

See docs/wire.md for the byte-level description a client in another language needs.
"""
