"""A self-signed certificate for instances served over HTTPS without a proxy.

Made once with the `cryptography` package and kept in the data folder; reused while
it covers the configured host names, has more than 30 days left and its key file
holds its key. A damaged pair (a truncated file, another key) is made anew.
`check_pair` tries an operator's own certificate and key before the server starts.
"""

import datetime
import ipaddress
import os
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from secretlink.settings import SettingsError

VALID_DAYS = 397  # the longest lifetime browsers accept
RENEW_BEFORE = datetime.timedelta(days=30)


def _subject_names(hostnames: tuple[str, ...]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for name in hostnames:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            names.append(x509.DNSName(name))
    return names


class TLSError(SettingsError):
    """The certificate or its key cannot be used; the message says which and why."""


def check_pair(cert_path: Path, key_path: Path) -> None:
    """Load the pair as the server will, so a bad one stops start-up with one line."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        # A password callback: an encrypted key fails here instead of prompting.
        context.load_cert_chain(cert_path, key_path, password=lambda: "")
    except ssl.SSLError as exc:
        reason = (
            "the key does not belong to the certificate"
            if exc.reason == "KEY_VALUES_MISMATCH"
            else "they must be a PEM certificate (chain) and its unencrypted PEM private key"
        )
        raise TLSError(
            f"cannot use the certificate {cert_path} with the key {key_path}: {reason}"
        ) from None
    except OSError as exc:
        raise TLSError(
            f"cannot read the certificate {cert_path} or the key {key_path}: {exc.strerror}"
        ) from None


def _usable(cert_path: Path, key_path: Path, hostnames: tuple[str, ...]) -> bool:
    if not (cert_path.is_file() and key_path.is_file()):
        return False
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, TypeError, x509.ExtensionNotFound):
        return False  # damaged, encrypted or not ours: make a new pair
    if key.public_key() != cert.public_key():
        return False
    left = cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC)
    return left > RENEW_BEFORE and set(names) == set(_subject_names(hostnames))


def self_signed(data_dir: Path, hostnames: tuple[str, ...]) -> tuple[Path, Path]:
    """Return (certificate, key) paths, creating or renewing them when needed."""
    folder = data_dir / "tls"
    cert_path, key_path = folder / "self-signed-cert.pem", folder / "self-signed-key.pem"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        if not _usable(cert_path, key_path, hostnames):
            _make(cert_path, key_path, hostnames)
    except OSError as exc:
        raise TLSError(
            f"cannot make a self-signed certificate in {folder}: {exc.strerror or exc}"
        ) from None
    return cert_path, key_path


def _make(cert_path: Path, key_path: Path, hostnames: tuple[str, ...]) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(_subject_names(hostnames)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key_bytes)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
