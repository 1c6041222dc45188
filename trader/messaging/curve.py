"""CurveZMQ for Bourse's sockets: keys on disk, socket setup, and who may connect (ZAP).

A keypair is two files in the ZeroMQ certificate format (``zmq.auth``): ``<name>.key`` holds the
public key (safe to copy anywhere), ``<name>.key_secret`` holds both keys (mode 0600; never leaves
its machine). A server (the trader's ROUTER and PUB sockets) has a keypair and a directory of
authorized clients: the public key files (``*.key``) of the clients allowed to connect. A client
has its own keypair and the server's public key.

* :func:`generate_keypair` writes a keypair (``cli.py keys generate NAME``).
* :func:`load_keys` reads one (errors name the file and what to do).
* :func:`configure_server` / :func:`configure_client` set up a socket before it binds / connects;
  the server side also starts the process's ZAP authenticator, which accepts a client only when
  its public key is in the authorized directory. The directory is re-read when it changes, so
  adding or removing a client's key takes effect for the next connection, without a restart.
* :func:`is_loopback` tells whether an endpoint stays on this machine.

Nothing here opens a socket at import time. See docs/wire.md ("Security").
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

log = logging.getLogger("trader.messaging.curve")

PUBLIC_SUFFIX: Final = ".key"
SECRET_SUFFIX: Final = ".key_secret"


class CurveKeyError(ValueError):
    """A key file is missing, unreadable or not a ZeroMQ certificate; the message names it."""


@dataclass(frozen=True, slots=True)
class CurveKeys:
    """This side's keypair (Z85, 40 bytes each) and what it needs of the other side.

    A client sets ``server_public`` (the server's public key); a server sets ``authorized_dir``
    (the directory of public key files of the clients it lets in).
    """

    public: bytes
    secret: bytes
    server_public: bytes | None = None
    authorized_dir: Path | None = None

    def __repr__(self) -> str:  # never print a secret key
        return (
            f"CurveKeys(public={self.public.decode()!r}, secret=<hidden>, "
            f"server_public={self.server_public.decode() if self.server_public else None!r}, "
            f"authorized_dir={str(self.authorized_dir) if self.authorized_dir else None!r})"
        )


# ---------------------------------------------------------------------------------------- key files


def key_paths(directory: str | os.PathLike[str], name: str) -> tuple[Path, Path]:
    """(public, secret) file of keypair ``name`` in ``directory``."""
    base = Path(directory) / name
    return base.with_name(name + PUBLIC_SUFFIX), base.with_name(name + SECRET_SUFFIX)


def _check_name(name: str) -> None:
    if not name or name != Path(name).name or name.startswith(".") or any(c.isspace() for c in name):
        raise ValueError(f"a key name is a plain file name (letters, digits, '-', '_'), got {name!r}")


def generate_keypair(
    directory: str | os.PathLike[str], name: str, *, overwrite: bool = False
) -> tuple[Path, Path]:
    """Write keypair ``name`` into ``directory`` (created, mode 0700); returns (public, secret) paths.

    The secret file is mode 0600 from the start (it is written in a private temporary directory
    and moved into place). An existing keypair is kept (FileExistsError) unless ``overwrite``.
    """
    _check_name(name)
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    public, secret = key_paths(folder, name)
    if not overwrite and (public.exists() or secret.exists()):
        raise FileExistsError(f"{secret if secret.exists() else public}: a key named {name!r} exists already")
    scratch = Path(tempfile.mkdtemp(prefix=".keygen-", dir=folder))  # mode 0700
    try:
        made_public, made_secret = zmq.auth.create_certificates(scratch, name)
        os.chmod(made_secret, 0o600)
        os.chmod(made_public, 0o644)
        os.replace(made_secret, secret)
        os.replace(made_public, public)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return public, secret


def load_public_key(path: str | os.PathLike[str]) -> bytes:
    """The public key of certificate file ``path`` (a ``.key`` or ``.key_secret`` file)."""
    public, _ = _read_certificate(Path(path))
    return public


def load_keypair(path: str | os.PathLike[str]) -> tuple[bytes, bytes]:
    """(public, secret) of secret certificate file ``path`` (``<name>.key_secret``)."""
    file = Path(path)
    public, secret = _read_certificate(file)
    if secret is None:
        raise CurveKeyError(f"{file}: holds no secret key (the secret file is <name>{SECRET_SUFFIX})")
    return public, secret


def _read_certificate(file: Path) -> tuple[bytes, bytes | None]:
    if not file.is_file():
        raise CurveKeyError(f"{file}: key file not found (create one with: ./cli.py keys generate NAME)")
    try:
        public, secret = zmq.auth.load_certificate(file)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise CurveKeyError(f"{file}: not a ZeroMQ certificate file ({exc})") from None
    if not public or len(public) != 40:
        raise CurveKeyError(f"{file}: no valid public-key line (Z85, 40 characters)")
    if secret is not None and len(secret) != 40:
        raise CurveKeyError(f"{file}: the secret-key line is not a Z85 key of 40 characters")
    return public, secret


def load_keys(
    keys_dir: str | os.PathLike[str],
    name: str,
    *,
    server_key: str | os.PathLike[str] | None = None,
    authorized_dir: str | os.PathLike[str] | None = None,
) -> CurveKeys:
    """Keypair ``name`` of ``keys_dir``, plus the server's public key file (a client) or the
    authorized clients directory (a server). Raises :class:`CurveKeyError` naming the file."""
    _, secret_file = key_paths(keys_dir, name)
    public, secret = load_keypair(secret_file)
    server_public = load_public_key(server_key) if server_key is not None else None
    authorized: Path | None = None
    if authorized_dir is not None:
        authorized = Path(authorized_dir)
        if not authorized.is_dir():
            raise CurveKeyError(
                f"{authorized}: authorized clients directory not found (create it and copy the clients' "
                f"public {PUBLIC_SUFFIX} files into it, or: ./cli.py keys generate NAME --authorize)"
            )
    return CurveKeys(public, secret, server_public, authorized)


def list_keys(directory: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every key of ``directory``: name, public key, whether its secret file is there, the path."""
    folder = Path(directory)
    if not folder.is_dir():
        return []
    rows: dict[str, dict[str, Any]] = {}
    for file in sorted([*folder.glob("*" + PUBLIC_SUFFIX), *folder.glob("*" + SECRET_SUFFIX)]):
        name = file.name.removesuffix(SECRET_SUFFIX).removesuffix(PUBLIC_SUFFIX)
        row = rows.setdefault(name, {"name": name, "public": None, "secret": False, "path": str(file)})
        try:
            public, secret = _read_certificate(file)
        except CurveKeyError as exc:
            row["error"] = str(exc)
            continue
        row["public"] = public.decode()
        if secret is not None:
            row["secret"] = True
            row["path"] = str(file)
    return list(rows.values())


# ----------------------------------------------------------------------------------------- sockets


def configure_server(socket: zmq.Socket[Any], keys: CurveKeys) -> None:
    """Make ``socket`` (before it binds) a CURVE server that admits only ``keys.authorized_dir``'s keys.

    Starts (once per ZeroMQ context) the ZAP authenticator; ZAP_ENFORCE_DOMAIN makes a missing
    authenticator a refusal, never an open door.
    """
    if keys.authorized_dir is None:
        raise ValueError("a CURVE server needs authorized_dir: the public keys of the clients it admits")
    domain = _authenticator_for(socket.context).allow(keys.authorized_dir)
    socket.setsockopt(zmq.ZAP_DOMAIN, domain.encode())
    socket.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)
    socket.setsockopt(zmq.CURVE_SERVER, 1)
    socket.setsockopt(zmq.CURVE_SECRETKEY, keys.secret)
    socket.setsockopt(zmq.CURVE_PUBLICKEY, keys.public)


def configure_client(socket: zmq.Socket[Any], keys: CurveKeys, server_public: bytes | None = None) -> None:
    """Make ``socket`` (before it connects) a CURVE client of the server whose public key is
    ``server_public`` (default ``keys.server_public``)."""
    server = server_public if server_public is not None else keys.server_public
    if server is None:
        raise ValueError("a CURVE client needs the server's public key")
    socket.setsockopt(zmq.CURVE_SERVERKEY, server)
    socket.setsockopt(zmq.CURVE_PUBLICKEY, keys.public)
    socket.setsockopt(zmq.CURVE_SECRETKEY, keys.secret)


def configure(socket: zmq.Socket[Any], keys: CurveKeys | None, *, server: bool) -> None:
    """:func:`configure_server` or :func:`configure_client`; nothing when ``keys`` is None."""
    if keys is None:
        return
    if server:
        configure_server(socket, keys)
    else:
        configure_client(socket, keys)


class _DirectoryKeys:
    """The public keys of a directory's ``*.key`` files, re-read when the directory changes."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._stamp: tuple[int, int] | None = None
        self._keys: frozenset[bytes] = frozenset()
        self._lock = threading.Lock()
        self._warned: dict[bytes, float] = {}  # refused key -> when it was last logged

    def _stamp_now(self) -> tuple[int, int] | None:
        try:
            stat = self.directory.stat()
        except OSError:
            return None
        newest = stat.st_mtime_ns
        for file in self.directory.glob("*" + PUBLIC_SUFFIX):  # a key rewritten in place
            try:
                newest = max(newest, file.stat().st_mtime_ns)
            except OSError:
                continue
        return newest, stat.st_ino

    def keys(self) -> frozenset[bytes]:
        with self._lock:
            stamp = self._stamp_now()
            if stamp is None:
                self._stamp, self._keys = None, frozenset()
            elif stamp != self._stamp:
                self._stamp = stamp
                self._keys = frozenset(zmq.auth.load_certificates(self.directory))
                log.info("curve: %d authorized client keys in %s", len(self._keys), self.directory)
            return self._keys

    def callback(self, domain: str, key: bytes) -> bool:
        allowed = key in self.keys()
        now = time.monotonic()
        if not allowed and now - self._warned.get(key, -math.inf) >= 60.0:  # clients retry every 0.1 s
            if len(self._warned) > 1000:
                self._warned.clear()
            self._warned[key] = now
            log.warning(
                "curve: refused a client with unknown public key %s (not in %s; logged once a minute)",
                key.decode(errors="replace"),
                self.directory,
            )
        return allowed


class _Authenticator:
    """The ZAP handler of one ZeroMQ context: one domain per authorized directory."""

    def __init__(self, context: zmq.Context[Any]) -> None:
        self._auth = ThreadAuthenticator(context, log=logging.getLogger("trader.messaging.curve.zap"))
        self._auth.start()
        self._domains: dict[Path, str] = {}

    def allow(self, directory: Path) -> str:
        where = directory.resolve()
        domain = self._domains.get(where)
        if domain is None:
            domain = "bourse-" + hashlib.sha256(str(where).encode()).hexdigest()[:16]
            self._auth.configure_curve_callback(domain, _DirectoryKeys(where))
            self._domains[where] = domain
        return domain


_authenticators: dict[int, _Authenticator] = {}
_authenticators_lock = threading.Lock()


def _authenticator_for(context: zmq.Context[Any]) -> _Authenticator:
    """The authenticator of ``context``'s libzmq context (a plain twin for zmq.asyncio contexts)."""
    with _authenticators_lock:
        auth = _authenticators.get(context.underlying)
        if auth is None:
            plain = context if type(context) is zmq.Context else zmq.Context.shadow(context.underlying)
            auth = _authenticators[context.underlying] = _Authenticator(plain)
        return auth


# ---------------------------------------------------------------------------------------- endpoints


def endpoint_host(endpoint: str) -> str | None:
    """The host part of a ``tcp://`` endpoint (``*``, an address, a name or an interface); None
    for other transports."""
    transport, sep, rest = endpoint.partition("://")
    if not sep or transport not in ("tcp", "ws", "wss", "udp", "pgm", "epgm"):
        return None
    rest = rest.rpartition(";")[2]  # "source;destination" of a connect
    host = rest.rpartition(":")[0] if ":" in rest else rest
    return host.removeprefix("[").removesuffix("]")


def is_loopback(endpoint: str) -> bool:
    """Whether ``endpoint`` stays on this machine: ``ipc://``, ``inproc://``, or a TCP endpoint on
    a loopback address (127.0.0.0/8, ::1, ``localhost``). ``*``, 0.0.0.0, other addresses, host
    names and interface names are not."""
    transport = endpoint.partition("://")[0]
    if transport in ("ipc", "inproc"):
        return True
    host = endpoint_host(endpoint)
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
