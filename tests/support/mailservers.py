"""A private Dovecot (IMAP) and a private Samba (SMB) on loopback, for the connectors' tests.

Each runs from a configuration of its own in a fresh temporary folder (its state,
locks, logs, passwords and data all inside it) on a free unprivileged port, in the
foreground as a child process, so nothing of the machine's own services (if any)
is read or changed. Both refuse to run their workers as root, so when the tests run
as root the servers use the unprivileged accounts their Debian packages create.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.processes import free_port


@dataclass
class Server:
    host: str
    port: int
    user: str
    password: str
    root: Path  # dovecot: the maildirs; samba: the share's folder
    log: Path
    tls_port: int = 0  # dovecot: IMAPS (the plain port also offers STARTTLS)
    cafile: Path | None = None  # dovecot: its self-signed certificate


def _require(binary: str, package: str) -> str:
    found = shutil.which(binary) or (f"/usr/sbin/{binary}" if os.path.exists(f"/usr/sbin/{binary}") else None)
    if found is None:
        pytest.fail(f"{binary} is not installed: apt-get install -y {package} (.ci/system-packages.sh)")
    return found


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path, what: str) -> None:
    # Waiting for readiness, not timing anything: the bound is generous for a busy machine.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited at start-up:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on {port}:\n{log.read_text(errors='replace')[-3000:]}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop the server and its helpers (started in a session of their own: its process group is theirs alone)."""
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=20)
    # Helpers that outlive their master (smbd's notifyd and cleanupd) would write into the
    # folder while it is removed.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10  # a bound for a busy machine, not a timing assertion
        while time.monotonic() < deadline:
            os.killpg(process.pid, 0)  # ProcessLookupError once the group is gone
            time.sleep(0.05)


def _private_dir(prefix: str) -> Path:
    # Traversable by the servers' unprivileged accounts (pytest's own tmp dirs are not).
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o755)
    return root


def self_signed(folder: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """A certificate for ``host`` (an IP address) and its key, the certificate also serving as the CA file."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    return cert_path, key_path


@contextmanager
def dovecot(*, user: str = "anna", password: str = "imap-pw-1") -> Iterator[Server]:  # noqa: S107 (a test server's)
    binary = _require("dovecot", "dovecot-imapd")
    root = _private_dir("assistant-dovecot-")
    port, tls_port = free_port(), free_port()
    cert, key = self_signed(root)
    for name in ("run", "state", "mail", "home"):
        (root / name).mkdir()
    if os.geteuid() == 0:
        internal, login, mail = "dovecot", "dovenull", pwd.getpwnam("dovecot")
        for name in ("mail", "home"):
            os.chown(root / name, mail.pw_uid, mail.pw_gid)
    else:
        me = pwd.getpwuid(os.geteuid())
        internal = login = me.pw_name
        mail = me
    (root / "passwd").write_text(f"{user}:{{PLAIN}}{password}\n")
    log = root / "dovecot.log"
    (root / "dovecot.conf").write_text(
        f"""instance_name = assistant-test-{port}
base_dir = {root}/run
state_dir = {root}/state
log_path = {log}
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
default_internal_user = {internal}
default_internal_group = {grp.getgrgid(pwd.getpwnam(internal).pw_gid).gr_name}
default_login_user = {login}
first_valid_uid = 1
mail_location = maildir:{root}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={mail.pw_uid} gid={mail.pw_gid} home={root}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = 0
  }}
}}
"""
    )
    process = subprocess.Popen(
        [binary, "-F", "-c", str(root / "dovecot.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait_for_port(port, process, log, "dovecot")
        _wait_for_port(tls_port, process, log, "dovecot (imaps)")
        yield Server(
            host="127.0.0.1", port=port, user=user, password=password, root=root / "mail", log=log,
            tls_port=tls_port, cafile=cert,
        )  # fmt: skip
    finally:
        _stop(process)
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def samba(*, share: str = "docs", password: str = "smb-pw-1") -> Iterator[Server]:  # noqa: S107 (a test server's)
    binary = _require("smbd", "samba")
    smbpasswd = _require("smbpasswd", "samba-common-bin")
    root = _private_dir("assistant-samba-")
    port = free_port()
    for name in ("private", "lock", "state", "cache", "pid", "ncalrpc", "share"):
        (root / name).mkdir()
    (root / "share").chmod(0o755)
    # smbd serves files as a Unix account: an unprivileged one that exists everywhere.
    user = "nobody" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
    log = root / "smbd.log"
    conf = root / "smb.conf"
    conf.write_text(
        f"""[global]
  workgroup = TESTGROUP
  server role = standalone server
  smb ports = {port}
  interfaces = lo
  bind interfaces only = yes
  private dir = {root}/private
  lock directory = {root}/lock
  state directory = {root}/state
  cache directory = {root}/cache
  pid directory = {root}/pid
  ncalrpc dir = {root}/ncalrpc
  log file = {log}
  log level = 1
  passdb backend = tdbsam:{root}/private/passdb.tdb
  disable netbios = yes
  load printers = no
  printing = bsd
  printcap name = /dev/null
  disable spoolss = yes
  server min protocol = SMB2
  map to guest = never
  usershare path =

[{share}]
  path = {root}/share
  read only = yes
  valid users = {user}
"""
    )
    subprocess.run(
        [smbpasswd, "-c", str(conf), "-a", "-s", user], input=f"{password}\n{password}\n".encode(),
        check=True, capture_output=True,
    )  # fmt: skip
    process = subprocess.Popen(
        [binary, "--foreground", "--no-process-group", f"--configfile={conf}", "--debug-stdout"],
        # A session of its own: smbd signals its whole process group when it stops.
        stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        _wait_for_port(port, process, log, "smbd")
        yield Server(host="127.0.0.1", port=port, user=user, password=password, root=root / "share", log=log)
    finally:
        _stop(process)
        shutil.rmtree(root, ignore_errors=True)
