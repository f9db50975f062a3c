"""cleanroom: a privacy-preserving clean-room matcher.

An ad platform and an advertiser learn how many customers they share, or which ones, through an
elliptic-curve Diffie-Hellman private set intersection over consented marketing identifiers.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
