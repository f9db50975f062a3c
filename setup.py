"""Build configuration that pyproject.toml cannot express: the C extensions.

Everything else (metadata, dependencies, packages) is in pyproject.toml. The extensions need only
a C compiler; their AVX-512 and SHA-NI code is compiled per function and runs only where the CPU
has it.
"""

from setuptools import Extension, setup

C_FLAGS = ["-O3", "-std=c11", "-Wall", "-Wextra", "-Werror=implicit"]
FIELD = ["src/cleanroom/crypto/_fe25519.h", "src/cleanroom/crypto/_fe25519_ifma.h"]

setup(
    ext_modules=[
        # RFC 9380 hash-to-curve for curve25519 in bulk (see src/cleanroom/crypto/_h2c25519.c).
        Extension(
            "cleanroom.crypto._h2c25519",
            ["src/cleanroom/crypto/_h2c25519.c"],
            extra_compile_args=C_FLAGS,
            depends=FIELD,
        ),
        # Curve membership of many u-coordinates at once (see src/cleanroom/crypto/_check25519.c).
        Extension(
            "cleanroom.crypto._check25519",
            ["src/cleanroom/crypto/_check25519.c"],
            extra_compile_args=C_FLAGS,
            depends=FIELD,
        ),
        # X25519 eight lanes at a time on AVX-512 IFMA (see src/cleanroom/crypto/_x25519_ifma.c).
        Extension(
            "cleanroom.crypto._x25519_ifma",
            ["src/cleanroom/crypto/_x25519_ifma.c"],
            extra_compile_args=C_FLAGS,
            depends=FIELD,
        ),
        # Fisher-Yates over words from the OS CSPRNG (see src/cleanroom/crypto/_permutation.c).
        Extension(
            "cleanroom.crypto._permutation",
            ["src/cleanroom/crypto/_permutation.c"],
            extra_compile_args=C_FLAGS,
        ),
        # Email normalization and hash-to-curve messages for whole columns (see
        # src/cleanroom/identifiers/_batch.c).
        Extension(
            "cleanroom.identifiers._batch",
            ["src/cleanroom/identifiers/_batch.c"],
            extra_compile_args=C_FLAGS,
        ),
        # Plain blocks of an advertiser's list read, their record ids, matched rows copied (see
        # src/cleanroom/advertiser/_plain_block.c).
        Extension(
            "cleanroom.advertiser._plain_block",
            ["src/cleanroom/advertiser/_plain_block.c"],
            extra_compile_args=C_FLAGS,
        ),
    ],
)
