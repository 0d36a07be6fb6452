"""A real Dovecot IMAP server for the tests: its own config, loopback port and maildirs.

Debian's `dovecot-imapd` (installed by .ci/run). Static passdb (any user, one
password), maildir in a temp directory that the unprivileged mail user can
write, no TLS unless asked (then a throwaway self-signed certificate), run in
the foreground with `dovecot -F -c <conf>` and stopped with SIGTERM.
"""

from __future__ import annotations

import asyncio
import imaplib
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
USER = "support"
PASSWORD = "s3cret:pa@ss"  # percent-encoded in the URL

_CONF = """\
protocols = imap
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
{ssl}
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{root}/mail/%u/Maildir
passdb {{
  driver = static
  args = password={password}
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={root}/mail/%u
}}
default_internal_user = nobody
default_internal_group = nogroup
default_login_user = nobody
first_valid_uid = 1
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
    ssl = yes
  }}
}}
service stats {{
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
"""


def _certificate(root: Path) -> tuple[Path, Path]:
    cert, key = root / "cert.pem", root / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


class Dovecot:
    """One Dovecot instance; `start()`, `stop()`, and IMAP helpers for the test's side."""

    def __init__(self, port: int, tls_port: int, *, tls: bool = False) -> None:
        self.port = port
        self.tls_port = tls_port if tls else 0
        self.root = Path(tempfile.mkdtemp(prefix="chatgate-dovecot-"))
        self.root.chmod(0o755)  # the mail processes run as nobody
        for name in ("run", "state"):
            (self.root / name).mkdir()
        mail = self.root / "mail"
        mail.mkdir()
        mail.chmod(0o777)
        self.cert: Path | None = None
        ssl = "ssl = no"
        if tls:
            self.cert, key = _certificate(self.root)
            ssl = f"ssl = yes\nssl_cert = <{self.cert}\nssl_key = <{key}"
        self.conf = self.root / "dovecot.conf"
        self.conf.write_text(
            _CONF.format(
                root=self.root,
                port=port,
                tls_port=self.tls_port,
                password=PASSWORD,
                ssl=ssl,
                listener_ssl="ssl = yes" if tls else "",
            )
        )
        self._process: subprocess.Popen[bytes] | None = None

    def url(self, folder: str = "INBOX", scheme: str = "imap") -> str:
        port = self.tls_port if scheme == "imaps" else self.port
        return f"{scheme}://{USER}:{quote(PASSWORD, safe='')}@127.0.0.1:{port}/{folder}"

    def start(self) -> None:
        self._process = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                err = self._process.stderr.read().decode() if self._process.stderr else ""
                raise RuntimeError(f"dovecot exited: {err} {self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"dovecot did not listen on {self.port}: {self.log()}")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        if process.stderr is not None:
            process.stderr.close()
        # Child processes (imap, auth) follow the master; wait for the port to free up.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                time.sleep(0.05)
            except OSError:
                return

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    # The test's own IMAP client: stdlib imaplib, in a thread.

    def _session(self) -> imaplib.IMAP4:
        client = imaplib.IMAP4("127.0.0.1", self.port)
        client.login(USER, PASSWORD)
        return client

    def _append(self, raw: bytes, folder: str) -> int:
        client = self._session()
        try:
            if folder != "INBOX":
                client.create(folder)  # NO when it exists: fine
            status, data = client.append(folder, None, None, raw)
            assert status == "OK", data
            found = re.search(rb"APPENDUID \d+ (\d+)", data[0] or b"")
            assert found is not None, data
            return int(found.group(1))
        finally:
            client.logout()

    async def append(self, raw: bytes, folder: str = "INBOX") -> int:
        """APPEND one message; its UID."""
        return await asyncio.to_thread(self._append, raw, folder)

    def _flags(self, uid: int, folder: str) -> str:
        client = self._session()
        try:
            client.select(folder)
            status, data = client.uid("FETCH", str(uid), "(FLAGS)")
            assert status == "OK", data
            return b" ".join(d for d in data if isinstance(d, bytes)).decode()
        finally:
            client.logout()

    async def flags(self, uid: int, folder: str = "INBOX") -> str:
        """The FLAGS of one message as the server reports them."""
        return await asyncio.to_thread(self._flags, uid, folder)

    def _rebuild(self, folder: str) -> None:
        client = self._session()
        try:
            client.delete(folder)
            client.create(folder)
        finally:
            client.logout()

    async def rebuild(self, folder: str) -> None:
        """Delete and re-create a folder: a new UIDVALIDITY, as after a server migration."""
        await asyncio.to_thread(self._rebuild, folder)


def available() -> bool:
    return os.access(DOVECOT, os.X_OK)
