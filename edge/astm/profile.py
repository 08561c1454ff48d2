"""Device profiles: what one instrument means by its test ids and units.

Instruments put their own test code in the universal test id (E1394 6.6.1), usually in
component 4 (``^^^GLU``), some elsewhere; their codes belong to a code system only the
facility can name; and some send no units, or wrong ones, for some tests. A profile per
listener says so, and the normalize stage reads results through it. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from edge.astm.records import Result, UniversalTestId

DEFAULT_COMPONENT = 4  # E1394 6.6.1: the manufacturer's (local) code


@dataclass(frozen=True, slots=True)
class Coding:
    """A test as a coding: ``system`` is empty when the profile names none."""

    system: str
    code: str
    display: str


@dataclass(frozen=True, slots=True)
class DeviceProfile:
    """``test_code_system``: URI of the instrument's test codes. ``test_code_component``: the
    component of the universal test id holding the code. ``units``: test code -> unit to use
    instead of what the instrument sends (or does not send)."""

    test_code_system: str = ""
    test_code_component: int = DEFAULT_COMPONENT
    units: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        if self.test_code_component < 1:
            raise ValueError("test_code_component is 1-based")
        object.__setattr__(self, "units", MappingProxyType(dict(self.units)))

    def __reduce__(self) -> tuple[type[DeviceProfile], tuple[str, int, dict[str, str]]]:
        # The processor hands profiles to worker processes by pickle, and a read-only mapping
        # does not pickle: rebuild from the plain values.
        return (type(self), (self.test_code_system, self.test_code_component, dict(self.units)))

    def test_code(self, test_id: UniversalTestId) -> Coding:
        """The coding of a universal test id: the profile's component, else the first
        non-empty one; the display is component 2 (the test name) when sent."""
        code = test_id.component(self.test_code_component) or test_id.code
        return Coding(self.test_code_system, code, test_id.component(2))

    def unit(self, result: Result) -> str:
        """The unit of a result: the profile's override for its test code, else R-5."""
        code = self.test_code(result.test_id).code
        return self.units.get(code, result.units)
