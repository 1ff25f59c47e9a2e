"""A throwaway CA and a server certificate for localhost, made by the openssl CLI."""
from dataclasses import dataclass
from pathlib import Path

from .paths import system_tool
from .proc import run


@dataclass
class TLSCerts:
    dir: Path
    ca_cert: Path        # PEM, the trust anchor clients should use
    ca_key: Path
    server_cert: Path    # PEM, CN=localhost, SAN DNS:localhost, IP:127.0.0.1, IP:::1
    server_key: Path
    chain: Path          # server cert followed by CA cert
    client_cert: Path    # PEM, CN=testbed-client, signed by the CA (for client-auth tests)
    client_key: Path


def _openssl(*args):
    r = run([system_tool("openssl", "/usr/bin/openssl"), *args], timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(map(str, args))}: {r.stderr.decode(errors='replace')}")


def make_certs(directory: Path, days: int = 2) -> TLSCerts:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    # P-256 keys: generating them takes milliseconds, unlike RSA.
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    ca_key, ca_cert = d / "ca.key", d / "ca.pem"
    _openssl("req", "-x509", *ec, "-keyout", ca_key, "-out", ca_cert, "-days", str(days),
             "-subj", "/CN=sluice testbed CA", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")

    def leaf(name, cn, ext):
        key, csr, cert = d / f"{name}.key", d / f"{name}.csr", d / f"{name}.pem"
        extfile = d / f"{name}.ext"
        extfile.write_text(ext)
        _openssl("req", "-new", *ec, "-keyout", key, "-out", csr, "-subj", f"/CN={cn}")
        _openssl("x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key,
                 "-CAcreateserial", "-out", cert, "-days", str(days), "-extfile", extfile)
        key.chmod(0o600)
        return cert, key

    server_cert, server_key = leaf(
        "server", "localhost",
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n"
        "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n")
    client_cert, client_key = leaf(
        "client", "testbed-client",
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n")
    chain = d / "server-chain.pem"
    chain.write_bytes(server_cert.read_bytes() + ca_cert.read_bytes())
    # Postfix daemons run as the postfix user; the key must stay readable to
    # the smtpd that loads it (it reads it as root before dropping privileges,
    # but the directory must be traversable).
    d.chmod(0o755)
    return TLSCerts(d, ca_cert, ca_key, server_cert, server_key, chain, client_cert, client_key)
