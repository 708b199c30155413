"""Certificates made for a test with the openssl command line: a CA, and a server
certificate it signs for 127.0.0.1 (its name and its IP address)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def make_certificates(root: Path) -> None:
    """ca.pem (and ca.key), server.pem and server.key (unencrypted PKCS#8) in `root`."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=root, check=True, capture_output=True)

    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "1", "-subj", "/CN=availability test CA",
    )  # fmt: skip
    openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=127.0.0.1",
    )  # fmt: skip
    (root / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "1", "-extfile", "san.ext",
    )  # fmt: skip
