"""RSA key pairs for local actors, made when the actor is created (federation signs with them)."""

from __future__ import annotations

import asyncio

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

KEY_BITS = 2048


def generate_key_pair() -> tuple[str, str]:
    """(private PEM, public PEM) of a new RSA-2048 key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private_pem, public_pem


async def generate_key_pair_async() -> tuple[str, str]:
    """The same, off the event loop: a key takes tens of milliseconds to make."""
    return await asyncio.to_thread(generate_key_pair)
