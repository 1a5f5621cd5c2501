"""Vectors as the database keeps them (float32 little-endian) and cosine."""

import numpy as np

DTYPE = "<f4"


def to_bytes(vector) -> bytes:
    return np.asarray(vector, dtype=DTYPE).reshape(-1).tobytes()


def from_bytes(blob) -> np.ndarray:
    return np.frombuffer(bytes(blob), dtype=DTYPE)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity; 0 for vectors of different shapes or no length."""
    if np.shape(a) != np.shape(b):
        return 0.0
    denominator = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b) / denominator if denominator else 0.0
