"""URL converters that refuse what the database cannot hold."""

from werkzeug.routing import IntegerConverter

# Integer primary keys are 32-bit on PostgreSQL; a longer number typed into
# an address is simply not found, instead of an overflow in the driver.
MAX_ROW_ID = 2**31 - 1


class RowIdConverter(IntegerConverter):
    """``<int:...>`` for row ids: from 1 up to ``MAX_ROW_ID``."""

    def __init__(self, map, *args, **kwargs):  # noqa: A002, ANN001, ANN002, ANN003  (werkzeug's signature)
        kwargs.setdefault("min", 1)
        kwargs.setdefault("max", MAX_ROW_ID)
        super().__init__(map, *args, **kwargs)
