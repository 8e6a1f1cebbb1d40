"""Token encryption with KMS: tokens are encrypted before they reach DynamoDB.

A token set is a few hundred bytes, well under KMS's 4 KB plaintext limit, so it is encrypted
directly with the key (no data-key envelope needed). The encryption context binds a ciphertext
to its user: a ciphertext copied onto another user's item does not decrypt.
"""

from __future__ import annotations

from calsync.models import TokenSet


class TokenVault:
    def __init__(self, kms_client, key_id: str):
        self._kms = kms_client
        self._key_id = key_id

    @staticmethod
    def _context(user_id: str, purpose: str = "cronofy-tokens") -> dict[str, str]:
        return {"purpose": purpose, "user_id": user_id}

    def seal(self, user_id: str, tokens: TokenSet, purpose: str = "cronofy-tokens") -> bytes:
        """`purpose` keeps kinds apart: an org's Enterprise Connect service-account tokens are sealed with
        their own purpose, so they never decrypt as a user's tokens (or the reverse)."""
        resp = self._kms.encrypt(
            KeyId=self._key_id,
            Plaintext=tokens.model_dump_json().encode(),
            EncryptionContext=self._context(user_id, purpose),
        )
        return resp["CiphertextBlob"]

    def open(self, user_id: str, ciphertext: bytes, purpose: str = "cronofy-tokens") -> TokenSet:
        resp = self._kms.decrypt(CiphertextBlob=ciphertext, EncryptionContext=self._context(user_id, purpose))
        return TokenSet.model_validate_json(resp["Plaintext"])
