"""The advertiser's list, from its rows to the session's encrypted elements, in one pass.

The reader hands over each block of kept records as soon as it has read them
(``read_customer_list(..., blocks=pipeline.block)``); the block is normalized at once and its
messages go to the engine's workers (:class:`~cleanroom.protocol.ListEncryption`), which hash and
encrypt them while the next block is read. So reading, normalizing and hashing overlap, instead
of following each other with one core idle.

The platform's policy decides the suite and the region of phone numbers written without a
country code: blocks read before it arrives wait for it, the reading does not. A refusal that
does not depend on the list's size (mode, suite, budget, the platform's set) stops the hashing at
once. Every failure is raised only after the whole list has been read, in the order the
advertiser reports them: the list's own errors first, then the platform's answer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection

from cleanroom._proto.v1 import matcher_pb2 as pb
from cleanroom.advertiser._client import PolicyCall
from cleanroom.advertiser._listfile import BLOCK_RECORDS, CustomerList
from cleanroom.advertiser._prepare import PreparedList, merge_prepared, prepare_list
from cleanroom.crypto import BatchEngine, Suite
from cleanroom.identifiers import DEFAULT_REGION
from cleanroom.protocol import ListEncryption

__all__ = ["ListPipeline"]


class ListPipeline:
    """Normalizes and starts encrypting a list block by block while it is read.

    Args:
        engine: the batch engine that hashes and encrypts.
        asked: the GetPolicy call in flight.
        decide: given the platform's policy, the session's suite; raises what the policy refuses
            whatever the list's size.
        region: region of phone numbers without a country code; ``None``: the platform's.
        prehashed: kinds whose column holds SHA-256 digests of normalized values.
        phases: where the time spent waiting for the policy and normalizing is added up
            (``wait_policy``, ``normalize``, ``get_policy``).
    """

    def __init__(
        self,
        engine: BatchEngine,
        asked: PolicyCall,
        *,
        decide: Callable[[pb.PolicyInfo], Suite],
        region: str | None,
        prehashed: Collection[str],
        phases: dict[str, float],
    ) -> None:
        self._engine = engine
        self._asked = asked
        self._decide = decide
        self._region = region
        self._prehashed = prehashed
        self._phases = phases
        self._waiting: list[CustomerList] = []
        self._prepared: list[PreparedList] = []
        self._info: pb.PolicyInfo | None = None
        self._suite: Suite | None = None
        self._encryption: ListEncryption | None = None
        self._failure: Exception | None = None  # ends the pass: raised before anything else
        self._refusal: Exception | None = None  # the policy's: raised after the list's errors
        self._started = False
        for name in ("get_policy", "wait_policy", "normalize"):  # in this order, always
            phases.setdefault(name, 0.0)

    def block(self, block: CustomerList) -> None:
        """Take one block of kept records (the reader's ``blocks`` callback)."""
        if not self._started and len(block.rows) == BLOCK_RECORDS:
            # A list of more than a block is hashed on the workers: start them now, off this
            # thread (the first waits for the fork server to load the crypto modules). A
            # failure to start shows again, and is reported, at the first chunk.
            self._started = True
            threading.Thread(target=self._engine.start, name="engine-start", daemon=True).start()
        if self._failure is not None:
            return
        self._waiting.append(block)
        if self._info is not None or self._asked.done():
            self._drain()

    def finish(self, customers: CustomerList) -> PreparedList:
        """The whole list prepared, once it has been read (its blocks all taken).

        Raises:
            PlatformRefused, PlatformFailed, PlatformUnreachable: the policy call failed.
            InvalidInput: ``region`` is not a known region.
        """
        self._drain()
        if self._failure is not None:
            raise self._failure
        return merge_prepared(customers, self._prepared)

    @property
    def info(self) -> pb.PolicyInfo:
        """The platform's policy (after :meth:`finish`)."""
        assert self._info is not None
        return self._info

    @property
    def suite(self) -> Suite:
        """The session's suite (after :meth:`finish`)."""
        assert self._suite is not None
        return self._suite

    def encryption(self) -> ListEncryption:
        """The list's encryption, for the session's role (after :meth:`finish`).

        Raises:
            PlatformRefused: the policy refuses the session whatever the list's size.
        """
        if self._refusal is not None:
            raise self._refusal
        assert self._encryption is not None
        return self._encryption

    def abandon(self) -> None:
        """Stop hashing: the match failed."""
        if self._encryption is not None:
            self._encryption.abandon()

    def _drain(self) -> None:
        if self._failure is not None:
            return
        try:
            if self._info is None:
                self._take_policy()
            assert self._info is not None
            region = self._region or self._info.default_region or DEFAULT_REGION
            for block in self._waiting:
                started = time.perf_counter()
                prepared = prepare_list(block, default_region=region, prehashed=self._prehashed)
                self._phases["normalize"] += time.perf_counter() - started
                self._prepared.append(prepared)
                if self._encryption is not None:
                    self._encryption.add(prepared.messages)
            self._waiting.clear()
        except Exception as exc:  # raised by finish, after the whole list has been read
            self._failure = exc
            self._waiting.clear()
            self.abandon()

    def _take_policy(self) -> None:
        started = time.perf_counter()
        try:
            self._info = self._asked.result()
        finally:
            self._phases["wait_policy"] += time.perf_counter() - started
            self._phases["get_policy"] = self._asked.seconds or 0.0
        try:
            self._suite = self._decide(self._info)
        except Exception as exc:
            self._refusal = exc  # nothing is hashed; the list is still read and checked
            return
        self._encryption = ListEncryption(self._suite, engine=self._engine)
