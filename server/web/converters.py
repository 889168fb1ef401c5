"""URL converters that refuse what the database cannot hold."""

from werkzeug.routing import IntegerConverter


class RowIdConverter(IntegerConverter):
    """``<int:...>`` capped at 2**31 - 1, so ``/aid/99999999999999999999`` is a 404, not an overflow."""

    def __init__(self, map, *args, **kwargs):  # noqa: A002, ANN001, ANN002, ANN003  (werkzeug's signature)
        kwargs.setdefault("max", 2**31 - 1)
        super().__init__(map, *args, **kwargs)
