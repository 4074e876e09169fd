from uuid import UUID, uuid4


class UuidGenerator:
    """The `IdGenerator` of production: random version-4 UUIDs."""

    def new(self) -> UUID:
        return uuid4()
