"""Metadata filters in the S3 Vectors syntax, checked and evaluated locally.

A filter is a JSON object: `{"key": value}` is equality, `{"key": {"$op": value}}`
applies an operator, several keys in one object must all hold, and `$and` / `$or`
take lists of filters. A key the metadata lacks matches only `{"$exists": false}`.
"""

from numbers import Real

from memories.vectorstores.base import VectorStoreError

COMPARISONS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte")
OPERATORS = (*COMPARISONS, "$in", "$nin", "$exists")
MAX_DEPTH = 8


class InvalidFilterError(VectorStoreError):
    """A filter that no store would accept."""


def filter_keys(where: dict | None) -> set[str]:
    """The metadata keys a filter reads (after checking its shape)."""
    keys: set[str] = set()
    if where:
        _check(where, keys, depth=0)
    return keys


def _check(where, keys: set[str], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise InvalidFilterError("Filter nested too deeply.")
    if not isinstance(where, dict) or not where:
        raise InvalidFilterError("A filter is a non-empty JSON object.")
    for key, condition in where.items():
        if key in ("$and", "$or"):
            if not isinstance(condition, list) or not condition:
                raise InvalidFilterError(f"{key} takes a non-empty list of filters.")
            for part in condition:
                _check(part, keys, depth + 1)
            continue
        if key.startswith("$"):
            raise InvalidFilterError(f"Unknown operator {key} at the top of a filter.")
        keys.add(key)
        if isinstance(condition, dict):
            if len(condition) != 1:
                raise InvalidFilterError(f"One operator per key: {key}.")
            ((operator, operand),) = condition.items()
            _check_operand(key, operator, operand)
        else:
            _check_operand(key, "$eq", condition)


def _check_operand(key: str, operator: str, operand) -> None:
    if operator not in OPERATORS:
        raise InvalidFilterError(f"Unknown operator {operator} on {key}.")
    if operator == "$exists":
        if not isinstance(operand, bool):
            raise InvalidFilterError(f"$exists on {key} takes true or false.")
    elif operator in ("$in", "$nin"):
        if not isinstance(operand, list) or not operand:
            raise InvalidFilterError(f"{operator} on {key} takes a non-empty list.")
        for value in operand:
            _check_scalar(key, value)
    elif operator in ("$gt", "$gte", "$lt", "$lte"):
        if isinstance(operand, bool) or not isinstance(operand, Real):
            raise InvalidFilterError(f"{operator} on {key} takes a number.")
    else:
        _check_scalar(key, operand)


def _check_scalar(key: str, value) -> None:
    if not isinstance(value, str | bool | Real):
        raise InvalidFilterError(f"{key} compares with strings, numbers or booleans.")


def metadata_matches(metadata: dict, where: dict | None) -> bool:
    """Whether one vector's metadata passes a filter."""
    if not where:
        return True
    for key, condition in where.items():
        if key == "$and":
            if not all(metadata_matches(metadata, part) for part in condition):
                return False
        elif key == "$or":
            if not any(metadata_matches(metadata, part) for part in condition):
                return False
        else:
            operator, operand = (
                next(iter(condition.items()))
                if isinstance(condition, dict)
                else ("$eq", condition)
            )
            if not _holds(metadata, key, operator, operand):
                return False
    return True


def _holds(metadata: dict, key: str, operator: str, operand) -> bool:
    if operator == "$exists":
        return (key in metadata) == operand
    if key not in metadata:
        return False
    value = metadata[key]
    # A list of values matches when one of its elements does, as in S3 Vectors.
    values = value if isinstance(value, list) else [value]
    if operator == "$eq":
        return any(_same(v, operand) for v in values)
    if operator == "$ne":
        return not any(_same(v, operand) for v in values)
    if operator == "$in":
        return any(_same(v, option) for v in values for option in operand)
    if operator == "$nin":
        return not any(_same(v, option) for v in values for option in operand)
    numbers = [v for v in values if isinstance(v, Real) and not isinstance(v, bool)]
    compare = {
        "$gt": lambda v: v > operand,
        "$gte": lambda v: v >= operand,
        "$lt": lambda v: v < operand,
        "$lte": lambda v: v <= operand,
    }[operator]
    return any(compare(v) for v in numbers)


def _same(value, operand) -> bool:
    # Booleans are not numbers here, though Python says True == 1.
    if isinstance(value, bool) or isinstance(operand, bool):
        return (
            isinstance(value, bool) and isinstance(operand, bool) and value == operand
        )
    return value == operand
