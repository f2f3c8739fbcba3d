"""Server side of the proof of possession, and the access tokens it leads to.

A challenge is stateless until used: the server signs (inbox, nonce, expiry) and
derives its ephemeral key from its own secret and the nonce, so nothing is stored
when a challenge is issued. When an answer arrives the nonce is recorded as spent
in the database, so a replay fails on every worker. A good answer earns a short
access token bound to that one inbox.
"""

import secrets
import time
from datetime import UTC, datetime

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from nacl.encoding import RawEncoder
from nacl.hash import blake2b

from secretlink.crypto import AuthError, EncodingError, b64decode, b64encode
from secretlink.crypto.proof import NONCE_BYTES, derive_ephemeral, verify
from secretlink.store.storage import Storage
from secretlink.web.errors import ApiError

CHALLENGE_SALT = "secretlink/v1/auth-challenge"
TOKEN_SALT = "secretlink/v1/inbox-token"  # noqa: S105 (a purpose label, not a secret)
EPHEMERAL_MASTER_PURPOSE = b"secretlink/v1/auth-master"


def _unauthorized(code: str, message: str) -> ApiError:
    return ApiError(401, code, message)


class Authenticator:
    def __init__(self, secret_key: str, storage: Storage, challenge_ttl: int, token_ttl: int):
        self._challenges = URLSafeTimedSerializer(secret_key, salt=CHALLENGE_SALT)
        self._tokens = URLSafeTimedSerializer(secret_key, salt=TOKEN_SALT)
        # The master key for ephemeral keys is derived under its own purpose, so it
        # never equals anything itsdangerous derives from the same secret.
        self._master = blake2b(
            EPHEMERAL_MASTER_PURPOSE + b"\x00" + secret_key.encode(),
            digest_size=32,
            encoder=RawEncoder,
        )
        self._storage = storage
        self.challenge_ttl = challenge_ttl
        self.token_ttl = token_ttl

    def issue_challenge(self, public_key: str) -> dict:
        nonce = secrets.token_bytes(NONCE_BYTES)
        expires_at = int(time.time()) + self.challenge_ttl
        _, server_key = derive_ephemeral(self._master, nonce)
        signed = self._challenges.dumps(
            {"pk": public_key, "n": b64encode(nonce), "exp": expires_at}
        )
        return {
            "challenge": signed,
            "public_key": public_key,
            "server_key": b64encode(server_key),
            "nonce": b64encode(nonce),
            "expires_at": expires_at,
        }

    def answer_challenge(self, signed_challenge: str, proof: str, origin: str) -> tuple[str, str]:
        """Check an answer; return (inbox public key, access token)."""
        try:
            claims = self._challenges.loads(signed_challenge, max_age=self.challenge_ttl + 1)
        except SignatureExpired:
            raise _unauthorized(
                "challenge_expired", "challenge expired; ask for a new one"
            ) from None
        except BadSignature:
            raise _unauthorized(
                "bad_challenge", "challenge was not issued by this server"
            ) from None
        if claims["exp"] < time.time():
            raise _unauthorized("challenge_expired", "challenge expired; ask for a new one")
        try:
            mac = b64decode(proof)
        except EncodingError:
            raise ApiError(400, "bad_proof", "proof must be unpadded base64url") from None
        nonce = b64decode(claims["n"])
        expires = datetime.fromtimestamp(claims["exp"], UTC).replace(tzinfo=None)
        # Spend the nonce before checking: one answer per challenge, right or wrong.
        if not self._storage.use_nonce(nonce, expires):
            raise _unauthorized(
                "challenge_used", "challenge was already answered; ask for a new one"
            )
        ephemeral_secret, _ = derive_ephemeral(self._master, nonce)
        try:
            verify(ephemeral_secret, b64decode(claims["pk"]), nonce, claims["exp"], origin, mac)
        except AuthError:
            raise _unauthorized(
                "bad_proof", "proof of possession does not verify for this inbox"
            ) from None
        return claims["pk"], self._tokens.dumps({"pk": claims["pk"]})

    def check_token(self, authorization: str | None, public_key: str) -> None:
        """Raise unless the Authorization header holds a live token for this inbox."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthorized("token_required", "send an access token as 'Authorization: Bearer'")
        try:
            claims = self._tokens.loads(token.strip(), max_age=self.token_ttl)
        except SignatureExpired:
            raise _unauthorized(
                "token_expired", "access token expired; prove possession again"
            ) from None
        except BadSignature:
            raise _unauthorized("bad_token", "access token is not valid") from None
        if not secrets.compare_digest(claims.get("pk", ""), public_key):
            raise ApiError(403, "wrong_inbox", "access token is for another inbox")
