"""Message classes and enums built at import from a serialized FileDescriptorProto.

protoc's Python output is tied to the protobuf it came from: code from protoc 33 calls
`google.protobuf.runtime_version` (protobuf >= 5.26), and code from an old protoc is only
promised to load on runtimes one major version newer. Dagster 1.1.9 installs protobuf 3.20
and Dagster 1.13 protobuf 6, so the stubs carry no generated code at all: the descriptor
bytes, and the few public calls below, each of which exists from protobuf 3.20 to 6.x.
"""
from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pool, message_factory
from google.protobuf.internal import enum_type_wrapper


class ProtoFile:
    """One .proto file's descriptors in a pool of its own (no clash with another copy of
    the same file in the default pool), and the message classes made from them."""

    def __init__(self, serialized: bytes):
        self.pool = descriptor_pool.DescriptorPool()
        self.descriptor = self.pool.AddSerializedFile(serialized)
        # protobuf >= 4.22 has GetMessageClass; earlier ones a MessageFactory whose
        # GetPrototype caches per factory, so one factory makes every class of the file
        # (a field of message type then holds the same class as the module's).
        self._get_class = getattr(message_factory, "GetMessageClass", None)
        self._factory = None if self._get_class else message_factory.MessageFactory(self.pool)

    def message(self, name: str) -> Any:
        descriptor = self.descriptor.message_types_by_name[name]
        if self._get_class is not None:
            return self._get_class(descriptor)
        return self._factory.GetPrototype(descriptor)

    def enum(self, name: str) -> enum_type_wrapper.EnumTypeWrapper:
        return enum_type_wrapper.EnumTypeWrapper(self.descriptor.enum_types_by_name[name])
