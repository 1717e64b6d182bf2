"""Whether a body is valid for its request model, decided without building the model.

The gateway validates each request against its route's pydantic model, then forwards the
JSON as it came (rewritten): the model instance is thrown away. Building it was most of the
cost — a chat request names 3 of its model's 37 fields, and the model fills in the other
34 with their defaults — about a tenth of a relayed request's instructions (44,000 of
428,000 per request under valgrind, as `python bench/instructions.py` counts them).

So each model is mirrored, once, by a TypedDict of its fields: absent fields stay absent.
Each field keeps its type and constraints and the model's own field validators; the model's
own `after` model validators then run over the values, read as attributes (a field absent
reads as its default). The mirror only decides acceptance: a body it refuses is validated by
the model itself, so every error a client sees is the model's. A model the mirror cannot
follow exactly (aliases, validators that run before or around, or take `info`, other
configuration) is left to the model.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, NotRequired, Protocol, Required

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    TypeAdapter,
    ValidationError,
    with_config,
)
from typing_extensions import TypedDict


class _Validator(Protocol):
    def validate_python(self, input: Any, *, strict: bool | None = None) -> Any: ...


@dataclass(frozen=True)
class Mirror:
    """A request model's fields as a TypedDict, and its model validators."""

    fields: _Validator  # the TypeAdapter's own validator: no Python layer per call
    after: tuple[Callable[[Any], Any], ...]
    # What the model validators read: the values as attributes of an instance of this
    # class, whose class attributes are the defaults (a field absent reads as its default).
    values: type

    def accepts(self, data: dict[str, Any]) -> bool:
        try:
            values = self.fields.validate_python(data, strict=True)
        except ValidationError:
            return False
        if self.after:
            view: Any = object.__new__(self.values)
            view.__dict__ = values  # no copy: the defaults stay on the class
            try:
                for validator in self.after:
                    validator(view)
            except Exception:  # the model decides, and names the error
                return False
        return True


@functools.cache
def mirror(model: type[BaseModel]) -> Mirror | None:
    """The model's mirror, or None where the model must decide itself."""
    decorators = model.__pydantic_decorators__
    extra = model.model_config.get("extra") or "ignore"
    if (
        set(model.model_config) - {"extra"}  # other configuration: not followed here
        or decorators.validators
        or decorators.root_validators
        or model.__private_attributes__
        or model.model_post_init is not BaseModel.model_post_init
    ):
        return None
    per_field: dict[str, list[Any]] = {name: [] for name in model.model_fields}
    for decorator in decorators.field_validators.values():
        fields = decorator.info.fields
        if decorator.info.mode != "after" or not set(fields) <= set(per_field):
            return None
        if not _takes_one(decorator.func):
            return None
        for name in fields:
            per_field[name].append(AfterValidator(decorator.func))
    after = []
    for validator in decorators.model_validators.values():
        if validator.info.mode != "after" or not _takes_one(validator.func):
            return None
        after.append(validator.func)
    shape: dict[str, Any] = {}
    defaults: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        if info.alias or info.validation_alias or info.discriminator or info.validate_default:
            return None
        if hasattr(object, name):  # read as an attribute, it would be every object's own
            return None
        marks = [*info.metadata, *per_field[name]]
        kind = Annotated[(info.annotation, *marks)] if marks else info.annotation
        if info.is_required():
            shape[name] = Required[kind]
        else:
            shape[name] = NotRequired[kind]
            defaults[name] = info.get_default(call_default_factory=True)
    typed = with_config(ConfigDict(extra=extra))(TypedDict(model.__name__, shape))  # type: ignore[operator]
    values = type(f"{model.__name__}Values", (), defaults)
    return Mirror(TypeAdapter(typed).validator, tuple(after), values)


def _takes_one(func: Callable[..., Any]) -> bool:
    """A validator of the value alone (a bound field validator) or of the model alone."""
    try:
        parameters = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return False
    return [p.kind for p in parameters] == [inspect.Parameter.POSITIONAL_OR_KEYWORD]
