"""CURVE keys for network streams: ``ecg-keys``, key files, and socket set-up.

ZeroMQ CURVE (CurveZMQ: Curve25519 key exchange, encrypted and
authenticated transport) protects streams that leave the machine. Each side
has a key pair stored in two files in the format of
:func:`zmq.auth.create_certificates`: ``NAME.key`` (the public key, to hand
out) and ``NAME.key_secret`` (public and secret key, mode 0600, never to be
shared).

- The **publisher** (``ecg-replay``, the serial bridge) is the CURVE server:
  ``--curve-server-key server.key_secret``. With ``--curve-allow DIR`` only
  clients whose public key file (``*.key``) lies in ``DIR`` may subscribe
  (a ZAP handler, :class:`zmq.auth.thread.ThreadAuthenticator`; the
  directory is read at each connection, so deleting a file revokes a key).
  Without it any client that knows the server's public key may subscribe.
- The **receiver** (``ecg-monitor --source zmq:...``) is the client:
  ``--curve-client-key client.key_secret --curve-server-public server.key``.

Examples
--------
Shell::

    ecg-keys server --dir keys/            # keys/server.key, keys/server.key_secret
    ecg-keys monitor1 --dir keys/          # keys/monitor1.key, keys/monitor1.key_secret
    mkdir keys/allowed && cp keys/monitor1.key keys/allowed/
    ecg-replay serial:/dev/ttyUSB0 --fs 250 --endpoint tcp://192.168.1.10:5555 \\
        --curve-server-key keys/server.key_secret --curve-allow keys/allowed
    ecg-monitor --source zmq:tcp://192.168.1.10:5555 --headless \\
        --curve-client-key keys/monitor1.key_secret --curve-server-public keys/server.key
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import logging
import os
import stat
import sys
import threading
from pathlib import Path

import zmq

from . import _cli
from .errors import ConfigError

logger = logging.getLogger(__name__)

#: Suffix of public key files (as :func:`zmq.auth.create_certificates`).
PUBLIC_SUFFIX = ".key"
#: Suffix of secret key files.
SECRET_SUFFIX = ".key_secret"

_PUBLIC_BANNER = """#   ****  Generated on {0} by ecg-keys  ****
#   ZeroMQ CURVE Public Certificate
#   Give this file to the other side (the allowed-clients directory, or a
#   client's --curve-server-public). Check its contents after the exchange.

"""
_SECRET_BANNER = """#   ****  Generated on {0} by ecg-keys  ****
#   ZeroMQ CURVE **Secret** Certificate
#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.

"""


def check_curve_available() -> None:
    """Raise ConfigError if this libzmq was built without CURVE."""
    if not zmq.has("curve"):
        raise ConfigError(
            f"this ZeroMQ library ({zmq.zmq_version()}) lacks CURVE security; "
            "install a pyzmq wheel (pip install --force-reinstall pyzmq) or libzmq with libsodium"
        )


def _write(path: Path, text: str, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(path, mode)  # the umask may have narrowed it; never widen beyond ``mode``


def create_keypair(directory: str | os.PathLike, name: str, *, overwrite: bool = False) -> tuple[Path, Path]:
    """Create a CURVE key pair as ``DIR/NAME.key`` and ``DIR/NAME.key_secret``.

    Parameters
    ----------
    directory : path
        Where to write (created, mode 0700, if missing).
    name : str
        Base name of the files (letters, digits, ``_``, ``-``, ``.``).
    overwrite : bool
        Replace existing files; by default existing keys are never touched.

    Returns
    -------
    tuple of Path
        ``(public_file, secret_file)``; the secret file has mode 0600.
    """
    check_curve_available()
    if not name or not all(c.isalnum() or c in "_-." for c in name) or name.startswith("."):
        raise ConfigError(f"key name must be letters, digits, '_', '-' or '.', got {name!r}")
    d = Path(directory)
    try:
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cannot create key directory {d}: {err.strerror}") from None
    public_file = d / f"{name}{PUBLIC_SUFFIX}"
    secret_file = d / f"{name}{SECRET_SUFFIX}"
    for f in (public_file, secret_file):
        if f.exists():
            if not overwrite:
                raise ConfigError(f"{f} exists; keep it, choose another name, or pass --force")
            f.unlink()
    public, secret = zmq.curve_keypair()
    now = datetime.datetime.now().replace(microsecond=0)
    body = f'metadata\ncurve\n    public-key = "{public.decode("ascii")}"\n'
    try:
        _write(secret_file, _SECRET_BANNER.format(now) + body + f'    secret-key = "{secret.decode("ascii")}"\n', 0o600)
        _write(public_file, _PUBLIC_BANNER.format(now) + body, 0o644)
    except OSError as err:
        raise ConfigError(f"cannot write keys in {d}: {err.strerror}") from None
    return public_file, secret_file


def _load(path: str | os.PathLike, what: str) -> tuple[bytes, bytes | None]:
    import zmq.auth

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{what} {p} does not exist (create keys with: ecg-keys NAME --dir DIR)")
    try:
        public, secret = zmq.auth.load_certificate(p)
    except (OSError, ValueError) as err:
        raise ConfigError(f"{what} {p} is not a CURVE key file: {err}") from None
    if len(public) != 40:
        raise ConfigError(f"{what} {p}: the public key must be 40 Z85 characters, got {len(public)}")
    return public, secret


def load_secret_key(path: str | os.PathLike) -> tuple[bytes, bytes]:
    """Load ``(public, secret)`` Z85 keys from a ``.key_secret`` file.

    Raises ConfigError when the file is missing, holds no secret key, or is
    readable by other users (it must be mode 0600 or stricter).
    """
    public, secret = _load(path, "secret key file")
    if not secret or len(secret) != 40:
        raise ConfigError(
            f"{path} holds no secret key; give the NAME{SECRET_SUFFIX} file, not NAME{PUBLIC_SUFFIX}"
        )
    if os.name == "posix":
        mode = stat.S_IMODE(os.stat(path).st_mode)
        if mode & 0o077:
            raise ConfigError(
                f"secret key file {path} is readable by other users (mode {mode:o}); run: chmod 600 {path}"
            )
    return public, secret


def load_public_key(path: str | os.PathLike) -> bytes:
    """Load the Z85 public key from a ``.key`` (or ``.key_secret``) file."""
    return _load(path, "public key file")[0]


# --------------------------------------------------------------------------- sockets


class _AllowDirectory:
    """ZAP credentials provider: clients whose public key file lies in a directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        #: Connection attempts refused so far.
        self.refused = 0

    def callback(self, domain: str, key: bytes) -> bool:
        import zmq.auth

        try:
            allowed = zmq.auth.load_certificates(self.directory)
        except (OSError, ValueError) as err:
            logger.warning("cannot read allowed CURVE keys in %s: %s", self.directory, err)
            return False
        ok = key in allowed
        if not ok:
            self.refused += 1
            # a refused client retries every ZMQ_RECONNECT_IVL: log the first few, then rarely
            if self.refused <= 3 or self.refused % 1000 == 0:
                logger.warning(
                    "refused a CURVE client with an unknown key %s (%d refusal(s) so far)",
                    key.decode("ascii", "replace"), self.refused,
                )
        return ok


class _AllowAny:
    """ZAP credentials provider: any client with a valid CURVE handshake."""

    def callback(self, domain: str, key: bytes) -> bool:
        return True


_auth_lock = threading.Lock()
_auths: dict[int, list] = {}  # id(context) -> [ThreadAuthenticator, users]
_domains = itertools.count()


def _acquire_authenticator(context: zmq.Context):
    from zmq.auth.thread import ThreadAuthenticator

    with _auth_lock:
        entry = _auths.get(id(context))
        if entry is None:
            auth = ThreadAuthenticator(context, log=logging.getLogger(__name__ + ".zap"))
            auth.start()
            entry = _auths[id(context)] = [auth, 0]
        entry[1] += 1
        return entry[0]


def _release_authenticator(context: zmq.Context) -> None:
    with _auth_lock:
        entry = _auths.get(id(context))
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] <= 0:
            del _auths[id(context)]
            entry[0].stop()


class CurveServer:
    """CURVE server set-up of one socket, with an optional allowed-clients directory.

    Parameters
    ----------
    secret_key_file : path
        The server's ``.key_secret`` file.
    allow_dir : path, optional
        Directory of authorised clients' public ``.key`` files. Without it,
        any client that knows the server's public key is accepted.

    Notes
    -----
    Every socket gets its own ZAP domain, and one authenticator thread
    serves each context (shared by the sockets that use it), so several
    publishers with different policies can live in one process.
    """

    def __init__(self, secret_key_file: str | os.PathLike, allow_dir: str | os.PathLike | None = None) -> None:
        check_curve_available()
        self.public, self.secret = load_secret_key(secret_key_file)
        self.allow_dir = None
        if allow_dir is not None:
            d = Path(allow_dir)
            if not d.is_dir():
                raise ConfigError(f"allowed-clients directory {d} does not exist (put clients' .key files there)")
            if not list(d.glob(f"*{PUBLIC_SUFFIX}")):
                logger.warning("allowed-clients directory %s holds no %s file: every client is refused",
                               d, PUBLIC_SUFFIX)
            self.allow_dir = d
        self.domain = f"ecg-{os.getpid()}-{next(_domains)}"
        self._context: zmq.Context | None = None

    def apply(self, sock: zmq.Socket, context: zmq.Context) -> None:
        """Make ``sock`` a CURVE server (call before ``bind``)."""
        self._context = context
        _acquire_authenticator(context).configure_curve_callback(
            self.domain, _AllowDirectory(self.allow_dir) if self.allow_dir else _AllowAny()
        )
        sock.zap_domain = self.domain.encode("ascii")
        sock.curve_secretkey = self.secret
        sock.curve_publickey = self.public
        sock.curve_server = True
        logger.info(
            "CURVE encryption on; %s",
            f"clients allowed from {self.allow_dir}" if self.allow_dir else "any client with the server key",
        )

    def release(self) -> None:
        """Forget the ZAP domain (call after closing the socket)."""
        if self._context is not None:
            ctx, self._context = self._context, None
            with _auth_lock:
                entry = _auths.get(id(ctx))
                if entry is not None:
                    entry[0].credentials_providers.pop(self.domain, None)
            _release_authenticator(ctx)


class CurveClient:
    """CURVE client set-up of one socket.

    Parameters
    ----------
    secret_key_file : path
        The client's ``.key_secret`` file.
    server_public_file : path
        The server's public ``.key`` file.
    """

    def __init__(self, secret_key_file: str | os.PathLike, server_public_file: str | os.PathLike) -> None:
        check_curve_available()
        self.public, self.secret = load_secret_key(secret_key_file)
        self.server_public = load_public_key(server_public_file)

    def apply(self, sock: zmq.Socket) -> None:
        """Make ``sock`` a CURVE client (call before ``connect``)."""
        sock.curve_secretkey = self.secret
        sock.curve_publickey = self.public
        sock.curve_serverkey = self.server_public


# --------------------------------------------------------------------------- CLI helpers


def add_curve_client_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--curve-client-key`` and ``--curve-server-public`` to a receiving command."""
    g = parser.add_argument_group("CURVE security (zmq: sources)")
    g.add_argument("--curve-client-key", default=None, metavar="FILE",
                   help="this client's secret key file (NAME.key_secret, from ecg-keys)")
    g.add_argument("--curve-server-public", default=None, metavar="FILE",
                   help="the publisher's public key file (NAME.key)")


def curve_client_kwargs(args: argparse.Namespace) -> dict:
    """Receiver keyword arguments from the parsed ``--curve-client-*`` flags (both or none)."""
    key = getattr(args, "curve_client_key", None)
    server = getattr(args, "curve_server_public", None)
    if (key is None) != (server is None):
        raise ConfigError("--curve-client-key and --curve-server-public go together; give both")
    if key is None:
        return {}
    return {"curve_client_key": key, "curve_server_public": server}


def add_curve_server_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--curve-server-key`` and ``--curve-allow`` to a publishing command."""
    g = parser.add_argument_group("CURVE security")
    g.add_argument("--curve-server-key", default=None, metavar="FILE",
                   help="encrypt with this server secret key file (NAME.key_secret, from ecg-keys)")
    g.add_argument("--curve-allow", default=None, metavar="DIR",
                   help="accept only clients whose public key file (*.key) is in DIR")


def curve_server_kwargs(args: argparse.Namespace) -> dict:
    """Publisher keyword arguments from the parsed ``--curve-server-key`` / ``--curve-allow``."""
    key = getattr(args, "curve_server_key", None)
    allow = getattr(args, "curve_allow", None)
    if allow is not None and key is None:
        raise ConfigError("--curve-allow needs --curve-server-key (authorisation rides on CURVE)")
    if key is None:
        return {}
    return {"curve_server_key": key, "curve_allow": allow}


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``ecg-keys``."""
    p = argparse.ArgumentParser(
        prog="ecg-keys",
        description=(
            "Create a ZeroMQ CURVE key pair: NAME.key (public, give it to the other side) and "
            "NAME.key_secret (secret, mode 0600, keep it)."
        ),
        epilog="Example: ecg-keys server --dir keys && ecg-keys monitor1 --dir keys",
    )
    p.add_argument("name", metavar="NAME", help="base name of the key files (e.g. server, monitor1)")
    p.add_argument("--dir", default=".", metavar="DIR", help="where to write them (default: .)")
    p.add_argument("--force", action="store_true", help="replace existing key files of that name")
    _cli.add_common_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``ecg-keys``."""
    args = build_parser().parse_args(argv)
    _cli.setup_logging(args.log_level)

    def body() -> int:
        public_file, secret_file = create_keypair(args.dir, args.name, overwrite=args.force)
        print(f"public key: {public_file}")
        print(f"secret key: {secret_file} (mode 0600; keep it private)")
        return 0

    return _cli.run_main("ecg-keys", body)


if __name__ == "__main__":
    sys.exit(main())
