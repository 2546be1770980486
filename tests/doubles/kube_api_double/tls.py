"""Certificates and the admin kubeconfig, made once per data dir and reused
across restarts (k3s keeps its CA under server/tls the same way, so an
upgrade restart must not invalidate kubeconfigs already handed out)."""

import base64
import datetime
import ipaddress
import os

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# The names k3s always puts into its serving cert besides --tls-san.
BUILTIN_SANS = ["127.0.0.1", "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local", "10.43.0.1"]


def _write(path, data, mode=0o600):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _key_pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())


def _cert(subject, issuer, pub, sign_key, ca=False, sans=None, usage=None, days=3650):
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(pub)
         .serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=days))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        b = b.add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False, content_commitment=False,
                                          data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                          crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
    if usage:
        b = b.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if sans:
        names = []
        for s in sans:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(s)))
            except ValueError:
                names.append(x509.DNSName(s))
        b = b.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return b.sign(sign_key, hashes.SHA256())


def _name(cn, org=None):
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def ensure_certs(data_dir, sans):
    """Return the paths of the TLS material, creating what is missing.

    The serving cert is remade when the SAN list grows (k3s does the same
    when --tls-san changes) but the CA never is."""
    d = os.path.join(data_dir, "tls")
    os.makedirs(d, mode=0o700, exist_ok=True)
    p = {n: os.path.join(d, n) for n in ("ca.key", "ca.crt", "server.key", "server.crt", "admin.key", "admin.crt")}
    if not (os.path.exists(p["ca.key"]) and os.path.exists(p["ca.crt"])):
        key = ec.generate_private_key(ec.SECP256R1())
        name = _name("k3s-double-server-ca")
        _write(p["ca.key"], _key_pem(key))
        _write(p["ca.crt"], _cert(name, name, key.public_key(), key, ca=True).public_bytes(serialization.Encoding.PEM), 0o644)
    ca_key = serialization.load_pem_private_key(open(p["ca.key"], "rb").read(), None)
    ca_cert = x509.load_pem_x509_certificate(open(p["ca.crt"], "rb").read())
    want = list(dict.fromkeys(list(sans) + BUILTIN_SANS))
    remake = not os.path.exists(p["server.crt"])
    if not remake:
        have = x509.load_pem_x509_certificate(open(p["server.crt"], "rb").read())
        got = {str(v) for v in have.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
               .get_values_for_type(x509.DNSName)}
        got |= {str(v) for v in have.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
                .get_values_for_type(x509.IPAddress)}
        remake = not {str(ipaddress.ip_address(s)) if _is_ip(s) else s for s in want} <= got
    if remake:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _cert(_name("kube-apiserver"), ca_cert.subject, key.public_key(), ca_key, sans=want,
                     usage=ExtendedKeyUsageOID.SERVER_AUTH)
        _write(p["server.key"], _key_pem(key))
        _write(p["server.crt"], cert.public_bytes(serialization.Encoding.PEM), 0o644)
    if not os.path.exists(p["admin.crt"]):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _cert(_name("system:admin", "system:masters"), ca_cert.subject, key.public_key(), ca_key,
                     usage=ExtendedKeyUsageOID.CLIENT_AUTH)
        _write(p["admin.key"], _key_pem(key))
        _write(p["admin.crt"], cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return p


def _is_ip(s):
    try:
        ipaddress.ip_address(s)
        return True
    except ValueError:
        return False


def write_kubeconfig(path, paths, server):
    def b64(name):
        return base64.b64encode(open(paths[name], "rb").read()).decode()
    doc = {
        "apiVersion": "v1", "kind": "Config", "preferences": {}, "current-context": "default",
        "clusters": [{"name": "default", "cluster": {"certificate-authority-data": b64("ca.crt"), "server": server}}],
        "contexts": [{"name": "default", "context": {"cluster": "default", "user": "default"}}],
        "users": [{"name": "default", "user": {"client-certificate-data": b64("admin.crt"),
                                               "client-key-data": b64("admin.key")}}],
    }
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    _write(path, yaml.safe_dump(doc, default_flow_style=False).encode(), 0o600)


def client_identity(peercert):
    """(user, groups) from a verified peer cert as Python's ssl hands it over."""
    user, groups = None, []
    for rdn in peercert.get("subject", ()):
        for k, v in rdn:
            if k == "commonName":
                user = v
            elif k == "organizationName":
                groups.append(v)
    return user, groups
