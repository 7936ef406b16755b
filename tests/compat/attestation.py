"""An AWS Nitro attestation document checked with cbor2 and cryptography, independently of
keyward's verifier (crates/attest), for tests/kms_e2e/enclave_tls.rs.

  attestation.py < request.json

The request is {"document_b64", "root_pem", "nonce_hex", "user_data_hex", "pcrs": {"0": hex,
"1": hex, "2": hex}}. Prints {"verified": true, "module_id"} or exits 1 naming the check that
failed.
"""

import base64
import datetime
import json
import sys

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils

ES384 = -35


def refuse(message):
    print(message, file=sys.stderr)
    sys.exit(1)


def main():
    request = json.load(sys.stdin)
    cose = cbor2.loads(base64.b64decode(request["document_b64"]))
    if isinstance(cose, cbor2.CBORTag):
        cose = cose.value
    protected, _unprotected, payload, signature = cose
    if cbor2.loads(protected).get(1) != ES384:
        refuse("the document is not signed with ES384")
    document = cbor2.loads(payload)

    # The chain: the given root, then the bundle in order, then the signing certificate.
    root = x509.load_pem_x509_certificate(request["root_pem"].encode())
    bundle = [x509.load_der_x509_certificate(der) for der in document["cabundle"]]
    leaf = x509.load_der_x509_certificate(document["certificate"])
    if not bundle or bundle[0].public_bytes(serialization_der()) != root.public_bytes(serialization_der()):
        refuse("the bundle does not start at the given root")
    now = datetime.datetime.now(datetime.timezone.utc)
    chain = bundle + [leaf]
    for issuer, cert in zip(chain, chain[1:]):
        try:
            cert.verify_directly_issued_by(issuer)
        except Exception as error:  # noqa: BLE001 - any failure is a refusal
            refuse(f"{cert.subject.rfc4514_string()} is not issued by {issuer.subject.rfc4514_string()}: {error}")
    for cert in chain:
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            refuse(f"{cert.subject.rfc4514_string()} is not valid now")

    # COSE_Sign1: Sig_structure signed by the leaf, r || s of 48 bytes each.
    if len(signature) != 96:
        refuse("an ES384 signature is 96 bytes")
    to_be_signed = cbor2.dumps(["Signature1", protected, b"", payload])
    der = utils.encode_dss_signature(int.from_bytes(signature[:48], "big"), int.from_bytes(signature[48:], "big"))
    try:
        leaf.public_key().verify(der, to_be_signed, ec.ECDSA(hashes.SHA384()))
    except Exception:  # noqa: BLE001
        refuse("the document's signature does not verify")

    if document.get("nonce") != bytes.fromhex(request["nonce_hex"]):
        refuse("another nonce")
    if document.get("user_data") != bytes.fromhex(request["user_data_hex"]):
        refuse("other user_data")
    for index, value in request["pcrs"].items():
        if document["pcrs"].get(int(index)) != bytes.fromhex(value):
            refuse(f"PCR{index} differs")
    print(json.dumps({"verified": True, "module_id": document["module_id"]}))


def serialization_der():
    from cryptography.hazmat.primitives.serialization import Encoding

    return Encoding.DER


if __name__ == "__main__":
    main()
