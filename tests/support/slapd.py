"""A private OpenLDAP server (Debian's slapd) for directory tests, on a free loopback port.

Its own slapd.conf and database in a temporary folder; the LDIF is loaded with
``slapadd`` before the server starts (offline, a fraction of a second), so entries get
their operational attributes (entryUUID) as a real server gives them. ``ldapmodify``
changes the directory while a test runs, as an administrator would.

``Slapd(ldif, tls=True)`` also serves TLS: a throwaway CA and a server certificate for
127.0.0.1 are made with the ``openssl`` command in the server's folder (``ca_file``),
StartTLS is offered on ``uri`` and LDAPS listens on ``ldaps_uri``.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from tests.support.processes import free_port
from tests.support.waiting import wait_until

SUFFIX = "dc=example,dc=org"
ROOT_DN = f"cn=admin,{SUFFIX}"
ROOT_PASSWORD = "root-secret"
READER_DN = f"cn=reader,{SUFFIX}"
READER_PASSWORD = "reader-secret"

CONFIG = """\
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
pidfile {root}/slapd.pid
modulepath /usr/lib/ldap
moduleload back_mdb
database mdb
suffix "{suffix}"
rootdn "{root_dn}"
rootpw {root_password}
directory {root}/db
maxsize 16777216
index objectClass,uid,member eq
access to attrs=userPassword by anonymous auth by self read by * none
access to * by users read by * none
"""


TLS_CONFIG = """\
TLSCACertificateFile {root}/ca.pem
TLSCertificateFile {root}/server.pem
TLSCertificateKeyFile {root}/server.key
"""


def make_ca(folder: Path, name: str = "ca") -> tuple[Path, Path]:
    """A self-signed certificate authority: (certificate, key) in ``folder``."""
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN=Test {name}",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return cert, key


def _server_certificate(folder: Path, ca: Path, ca_key: Path) -> None:
    """A certificate for 127.0.0.1 and localhost, signed by ``ca`` (server.pem, server.key)."""
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    subprocess.run(
        ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
         "-keyout", str(folder / "server.key"), "-out", str(folder / "server.csr")],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    subprocess.run(
        ["openssl", "x509", "-req", "-in", str(folder / "server.csr"), "-CA", str(ca), "-CAkey", str(ca_key),
         "-CAcreateserial", "-days", "2", "-extfile", str(folder / "san.ext"), "-out", str(folder / "server.pem")],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    (folder / "server.key").chmod(0o600)


def available() -> str:
    """Why slapd cannot run here ("" when it can)."""
    if shutil.which("openssl") is None:
        return "openssl not found (apt-get install openssl)"
    for tool in ("slapd", "slapadd", "ldapmodify"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            return f"{tool} not found (apt-get install slapd ldap-utils)"
    return ""


def _tool(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


class Slapd:
    def __init__(self, ldif: str, *, tls: bool = False) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="assistant-slapd-"))
        (self.root / "db").mkdir()
        self.config = self.root / "slapd.conf"
        config = CONFIG.format(root=self.root, suffix=SUFFIX, root_dn=ROOT_DN, root_password=ROOT_PASSWORD)
        self.ca_file: Path | None = None
        self.ldaps_uri = ""
        if tls:
            ca, ca_key = make_ca(self.root)
            _server_certificate(self.root, ca, ca_key)
            self.ca_file = ca
            # Global TLS directives go before the first "database" line.
            config = config.replace("database mdb", TLS_CONFIG.format(root=self.root) + "database mdb", 1)
        self.config.write_text(config)
        (self.root / "data.ldif").write_text(ldif)
        subprocess.run(
            [_tool("slapadd"), "-f", str(self.config), "-l", str(self.root / "data.ldif")],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        self.port = free_port()
        self.uri = f"ldap://127.0.0.1:{self.port}"
        listen = f"{self.uri}/"
        self.ldaps_port = 0
        if tls:
            self.ldaps_port = free_port()
            self.ldaps_uri = f"ldaps://127.0.0.1:{self.ldaps_port}"
            listen += f" {self.ldaps_uri}/"
        self.log = (self.root / "slapd.log").open("w")
        # -d keeps it in the foreground, a child of the test run that ends with it.
        self.process = subprocess.Popen(
            [_tool("slapd"), "-f", str(self.config), "-h", listen, "-d", "0"],
            stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_until(self._answers, 20, lambda: f"slapd did not start: {self._log_tail()}")

    def _answers(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"slapd exited: {self._log_tail()}")
        try:
            for port in (self.port, self.ldaps_port):
                if port:
                    with socket.create_connection(("127.0.0.1", port), timeout=1):
                        pass
            return True
        except OSError:
            return False

    def _log_tail(self) -> str:
        self.log.flush()
        return (self.root / "slapd.log").read_text()[-3000:]

    def modify(self, ldif: str) -> None:
        """Apply an LDIF of changes as the directory's administrator."""
        subprocess.run(
            [_tool("ldapmodify"), "-x", "-H", self.uri, "-D", ROOT_DN, "-w", ROOT_PASSWORD],
            input=ldif, check=True, capture_output=True, text=True,
        )  # fmt: skip

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()
        shutil.rmtree(self.root, ignore_errors=True)
