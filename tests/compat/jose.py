"""JOSE with jwcrypto, an implementation independent of keyward's, for tests/kms_e2e/agree.rs.

  jose.py genkey X25519|P-256        a private JWK (JSON)
  jose.py encrypt PUBLIC_JWK TEXT    a compact JWE to the key: ECDH-ES+A256KW, A256GCM
  jose.py decrypt PRIVATE_JWK JWE    the JWE's plaintext
"""

import json
import sys

from jwcrypto import jwe, jwk


def main(argv):
    command = argv[1]
    if command == "genkey":
        kty = "OKP" if argv[2] == "X25519" else "EC"
        print(jwk.JWK.generate(kty=kty, crv=argv[2]).export_private())
    elif command == "encrypt":
        key = jwk.JWK.from_json(argv[2])
        header = {"alg": "ECDH-ES+A256KW", "enc": "A256GCM"}
        token = jwe.JWE(argv[3].encode(), protected=json.dumps(header))
        token.add_recipient(key)
        print(token.serialize(compact=True))
    elif command == "decrypt":
        key = jwk.JWK.from_json(argv[2])
        token = jwe.JWE()
        token.deserialize(argv[3], key=key)
        print(token.payload.decode())
    else:
        raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    main(sys.argv)
