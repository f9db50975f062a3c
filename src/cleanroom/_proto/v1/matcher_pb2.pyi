from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MatchMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MATCH_MODE_UNSPECIFIED: _ClassVar[MatchMode]
    MATCH_MODE_COUNT: _ClassVar[MatchMode]
    MATCH_MODE_AUDIENCE: _ClassVar[MatchMode]
    MATCH_MODE_IDS: _ClassVar[MatchMode]
MATCH_MODE_UNSPECIFIED: MatchMode
MATCH_MODE_COUNT: MatchMode
MATCH_MODE_AUDIENCE: MatchMode
MATCH_MODE_IDS: MatchMode

class PolicyRequest(_message.Message):
    __slots__ = ("protocol_version",)
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    def __init__(self, protocol_version: _Optional[int] = ...) -> None: ...

class PolicyInfo(_message.Message):
    __slots__ = ("protocol_version", "suites", "normalization_version", "modes_allowed", "min_upload_records", "max_upload_records", "min_reported_count", "epsilon_per_release", "epsilon_budget", "epsilon_remaining", "max_sessions_per_day", "sessions_remaining_today", "default_region", "epoch_id", "platform_set_size", "max_chunk_bytes", "max_identifiers_per_record")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    SUITES_FIELD_NUMBER: _ClassVar[int]
    NORMALIZATION_VERSION_FIELD_NUMBER: _ClassVar[int]
    MODES_ALLOWED_FIELD_NUMBER: _ClassVar[int]
    MIN_UPLOAD_RECORDS_FIELD_NUMBER: _ClassVar[int]
    MAX_UPLOAD_RECORDS_FIELD_NUMBER: _ClassVar[int]
    MIN_REPORTED_COUNT_FIELD_NUMBER: _ClassVar[int]
    EPSILON_PER_RELEASE_FIELD_NUMBER: _ClassVar[int]
    EPSILON_BUDGET_FIELD_NUMBER: _ClassVar[int]
    EPSILON_REMAINING_FIELD_NUMBER: _ClassVar[int]
    MAX_SESSIONS_PER_DAY_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_REMAINING_TODAY_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_REGION_FIELD_NUMBER: _ClassVar[int]
    EPOCH_ID_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_SET_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_CHUNK_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_IDENTIFIERS_PER_RECORD_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    suites: _containers.RepeatedScalarFieldContainer[str]
    normalization_version: int
    modes_allowed: _containers.RepeatedScalarFieldContainer[MatchMode]
    min_upload_records: int
    max_upload_records: int
    min_reported_count: int
    epsilon_per_release: float
    epsilon_budget: float
    epsilon_remaining: float
    max_sessions_per_day: int
    sessions_remaining_today: int
    default_region: str
    epoch_id: int
    platform_set_size: int
    max_chunk_bytes: int
    max_identifiers_per_record: int
    def __init__(self, protocol_version: _Optional[int] = ..., suites: _Optional[_Iterable[str]] = ..., normalization_version: _Optional[int] = ..., modes_allowed: _Optional[_Iterable[_Union[MatchMode, str]]] = ..., min_upload_records: _Optional[int] = ..., max_upload_records: _Optional[int] = ..., min_reported_count: _Optional[int] = ..., epsilon_per_release: _Optional[float] = ..., epsilon_budget: _Optional[float] = ..., epsilon_remaining: _Optional[float] = ..., max_sessions_per_day: _Optional[int] = ..., sessions_remaining_today: _Optional[int] = ..., default_region: _Optional[str] = ..., epoch_id: _Optional[int] = ..., platform_set_size: _Optional[int] = ..., max_chunk_bytes: _Optional[int] = ..., max_identifiers_per_record: _Optional[int] = ...) -> None: ...

class OpenSession(_message.Message):
    __slots__ = ("mode", "suite", "normalization_version", "protocol_version", "record_count", "identifier_count")
    MODE_FIELD_NUMBER: _ClassVar[int]
    SUITE_FIELD_NUMBER: _ClassVar[int]
    NORMALIZATION_VERSION_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    RECORD_COUNT_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIER_COUNT_FIELD_NUMBER: _ClassVar[int]
    mode: MatchMode
    suite: str
    normalization_version: int
    protocol_version: int
    record_count: int
    identifier_count: int
    def __init__(self, mode: _Optional[_Union[MatchMode, str]] = ..., suite: _Optional[str] = ..., normalization_version: _Optional[int] = ..., protocol_version: _Optional[int] = ..., record_count: _Optional[int] = ..., identifier_count: _Optional[int] = ...) -> None: ...

class SessionOpened(_message.Message):
    __slots__ = ("session_id", "epoch_id", "suite", "mode", "normalization_version", "protocol_version", "platform_set_size", "max_chunk_bytes")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_ID_FIELD_NUMBER: _ClassVar[int]
    SUITE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    NORMALIZATION_VERSION_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_SET_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_CHUNK_BYTES_FIELD_NUMBER: _ClassVar[int]
    session_id: bytes
    epoch_id: int
    suite: str
    mode: MatchMode
    normalization_version: int
    protocol_version: int
    platform_set_size: int
    max_chunk_bytes: int
    def __init__(self, session_id: _Optional[bytes] = ..., epoch_id: _Optional[int] = ..., suite: _Optional[str] = ..., mode: _Optional[_Union[MatchMode, str]] = ..., normalization_version: _Optional[int] = ..., protocol_version: _Optional[int] = ..., platform_set_size: _Optional[int] = ..., max_chunk_bytes: _Optional[int] = ...) -> None: ...

class PlatformSetChunk(_message.Message):
    __slots__ = ("session_id", "offset", "count", "elements")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    ELEMENTS_FIELD_NUMBER: _ClassVar[int]
    session_id: bytes
    offset: int
    count: int
    elements: bytes
    def __init__(self, session_id: _Optional[bytes] = ..., offset: _Optional[int] = ..., count: _Optional[int] = ..., elements: _Optional[bytes] = ...) -> None: ...

class AdvertiserSetChunk(_message.Message):
    __slots__ = ("session_id", "offset", "count", "elements", "record_tags")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    ELEMENTS_FIELD_NUMBER: _ClassVar[int]
    RECORD_TAGS_FIELD_NUMBER: _ClassVar[int]
    session_id: bytes
    offset: int
    count: int
    elements: bytes
    record_tags: bytes
    def __init__(self, session_id: _Optional[bytes] = ..., offset: _Optional[int] = ..., count: _Optional[int] = ..., elements: _Optional[bytes] = ..., record_tags: _Optional[bytes] = ...) -> None: ...

class EncryptedPlatformSetChunk(_message.Message):
    __slots__ = ("session_id", "offset", "count", "elements")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    ELEMENTS_FIELD_NUMBER: _ClassVar[int]
    session_id: bytes
    offset: int
    count: int
    elements: bytes
    def __init__(self, session_id: _Optional[bytes] = ..., offset: _Optional[int] = ..., count: _Optional[int] = ..., elements: _Optional[bytes] = ...) -> None: ...

class EncryptedAdvertiserSetChunk(_message.Message):
    __slots__ = ("session_id", "offset", "count", "elements")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    ELEMENTS_FIELD_NUMBER: _ClassVar[int]
    session_id: bytes
    offset: int
    count: int
    elements: bytes
    def __init__(self, session_id: _Optional[bytes] = ..., offset: _Optional[int] = ..., count: _Optional[int] = ..., elements: _Optional[bytes] = ...) -> None: ...

class MatchResult(_message.Message):
    __slots__ = ("session_id", "mode", "count", "reported_as", "epsilon_charged", "epsilon_remaining", "noise_applied", "receipt")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    REPORTED_AS_FIELD_NUMBER: _ClassVar[int]
    EPSILON_CHARGED_FIELD_NUMBER: _ClassVar[int]
    EPSILON_REMAINING_FIELD_NUMBER: _ClassVar[int]
    NOISE_APPLIED_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    session_id: bytes
    mode: MatchMode
    count: int
    reported_as: str
    epsilon_charged: float
    epsilon_remaining: float
    noise_applied: bool
    receipt: bytes
    def __init__(self, session_id: _Optional[bytes] = ..., mode: _Optional[_Union[MatchMode, str]] = ..., count: _Optional[int] = ..., reported_as: _Optional[str] = ..., epsilon_charged: _Optional[float] = ..., epsilon_remaining: _Optional[float] = ..., noise_applied: _Optional[bool] = ..., receipt: _Optional[bytes] = ...) -> None: ...

class Close(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: bytes
    def __init__(self, session_id: _Optional[bytes] = ...) -> None: ...

class ClientMessage(_message.Message):
    __slots__ = ("open_session", "advertiser_set", "encrypted_platform_set", "close")
    OPEN_SESSION_FIELD_NUMBER: _ClassVar[int]
    ADVERTISER_SET_FIELD_NUMBER: _ClassVar[int]
    ENCRYPTED_PLATFORM_SET_FIELD_NUMBER: _ClassVar[int]
    CLOSE_FIELD_NUMBER: _ClassVar[int]
    open_session: OpenSession
    advertiser_set: AdvertiserSetChunk
    encrypted_platform_set: EncryptedPlatformSetChunk
    close: Close
    def __init__(self, open_session: _Optional[_Union[OpenSession, _Mapping]] = ..., advertiser_set: _Optional[_Union[AdvertiserSetChunk, _Mapping]] = ..., encrypted_platform_set: _Optional[_Union[EncryptedPlatformSetChunk, _Mapping]] = ..., close: _Optional[_Union[Close, _Mapping]] = ...) -> None: ...

class ServerMessage(_message.Message):
    __slots__ = ("session_opened", "platform_set", "encrypted_advertiser_set", "result")
    SESSION_OPENED_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_SET_FIELD_NUMBER: _ClassVar[int]
    ENCRYPTED_ADVERTISER_SET_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    session_opened: SessionOpened
    platform_set: PlatformSetChunk
    encrypted_advertiser_set: EncryptedAdvertiserSetChunk
    result: MatchResult
    def __init__(self, session_opened: _Optional[_Union[SessionOpened, _Mapping]] = ..., platform_set: _Optional[_Union[PlatformSetChunk, _Mapping]] = ..., encrypted_advertiser_set: _Optional[_Union[EncryptedAdvertiserSetChunk, _Mapping]] = ..., result: _Optional[_Union[MatchResult, _Mapping]] = ...) -> None: ...
