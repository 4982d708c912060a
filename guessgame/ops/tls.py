"""Mutual TLS for the admin port: ``--admin-ca PEM`` with an ``ssl:`` endpoint.

Twisted's ``ssl:`` endpoint string cannot ask for client certificates, so
the admin endpoint is built here: the key and certificate come from the
``ssl:`` string as Twisted parses it, and the context gets the CA as its
trust root, which makes OpenSSL require a client certificate signed by it.
A client without one fails the TLS handshake and never reaches the game.
"""

from __future__ import annotations

import re
from typing import Any

from twisted.internet import endpoints, ssl

__all__ = ["load_ca", "mutual_tls_endpoint"]

PEM_CERTIFICATE = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----", re.DOTALL
)


def load_ca(path: str) -> Any:
    """The trust root made of every certificate in the PEM file ``path``.

    Raises `ValueError` with a message a user can act on.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror}") from None
    blocks = PEM_CERTIFICATE.findall(data)
    if not blocks:
        raise ValueError(f"{path} holds no PEM certificate")
    try:
        certificates = [ssl.Certificate.loadPEM(block) for block in blocks]
    except Exception as e:  # OpenSSL's errors have no common base worth naming
        raise ValueError(f"{path}: not a valid certificate: {e}") from None
    return ssl.trustRootFromCertificates(certificates)


def _modern(key_or_certificate: Any) -> Any:
    """The ``cryptography`` object for a pyOpenSSL key or certificate.

    pyOpenSSL deprecates its own X509 and PKey objects as arguments.
    """
    if hasattr(key_or_certificate, "to_cryptography"):
        return key_or_certificate.to_cryptography()
    if hasattr(key_or_certificate, "to_cryptography_key"):
        return key_or_certificate.to_cryptography_key()
    return key_or_certificate


def mutual_tls_endpoint(reactor: Any, description: str, ca_path: str) -> Any:
    """The ``ssl:`` server endpoint ``description``, requiring client certificates.

    Only clients whose certificate the CA in ``ca_path`` signed complete
    the handshake.  Raises `ValueError` when ``description`` is not an
    ``ssl:`` endpoint or the CA cannot be used.  The key, certificate,
    ``extraCertChain``, ``dhParameters``, port, interface and backlog are
    the string's; an ``sslmethod`` is not carried over (Twisted's default
    TLS versions apply).
    """
    endpoint = endpoints.serverFromString(reactor, description)
    if not isinstance(endpoint, endpoints.SSL4ServerEndpoint):
        raise ValueError(f"{description!r} is not an ssl: endpoint")
    trust_root = load_ca(ca_path)
    # The ssl: parser has loaded the key, certificate, chain and DH
    # parameters into its options; the endpoint keeps them privately.
    server = endpoint._sslContextFactory
    options = ssl.CertificateOptions(
        privateKey=_modern(server.privateKey),
        certificate=_modern(server.certificate),
        extraCertChain=[_modern(c) for c in server.extraCertChain] or None,
        dhParameters=server.dhParameters,
        trustRoot=trust_root,
    )
    return endpoints.SSL4ServerEndpoint(
        reactor,
        endpoint._port,
        options,
        backlog=endpoint._backlog,
        interface=endpoint._interface,
    )
