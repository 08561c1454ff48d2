"""The consent decision, made at request time from the consents on file (issue 8).

Pure functions: the service reads the patient's Consent resources in the request's snapshot,
so a revocation counts from the next request (and the next page) on.

A request is **permitted** on one of these bases, in this order:

1. ``break-glass``: purpose BTG or ETREAT, a non-empty reason, and a role listed in
   ``[peer].break_glass_roles``. Overrides consents that deny and the default. A BTG/ETREAT
   request that lacks the reason or the role is *denied* (not silently treated as TREAT).
2. a blanket ``deny`` consent that applies (no resource type or category limits) denies.
3. ``consent``: at least one active ``permit`` consent applies to the requester: actor (the
   facility, or ``facility/practitioner``; none listed = every member), purpose (none listed
   = every purpose) and period.
4. ``default``: ``[peer].default_consent = "permit-treatment"`` permits purpose TREAT.
   ``deny`` and ``break-glass-only`` permit nothing here.

Then each **resource** is released only when (:meth:`AccessDecision.allows`): no applicable
deny covers it; a permit covers its type and category (on the ``default`` and
``break-glass`` bases every type is covered; the Patient resource itself is covered whenever
the request is permitted); and every sensitive label it carries (R, V, PSY, ETH, HIV, SDV in
``meta.security``) is listed in an applicable permit that covers it. No basis, not even
break-glass, releases sensitive data without such an explicit permit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

from edge.peer.codes import BREAK_GLASS_PURPOSES, SENSITIVE_LABELS, TREATMENT

DefaultPolicy = Literal["deny", "permit-treatment", "break-glass-only"]
Basis = Literal["break-glass", "consent", "default", "denied"]


@dataclass(frozen=True, slots=True)
class Provision:
    """One consent's rule, parsed (see :func:`edge.peer.consent.provisions_of`)."""

    consent_id: str
    permit: bool
    start: date | None = None
    end: date | None = None  # inclusive
    facilities: frozenset[str] = frozenset()
    practitioners: frozenset[str] = frozenset()  # "facility/practitioner"
    purposes: frozenset[str] = frozenset()
    classes: frozenset[str] = frozenset()  # resource types
    codes: frozenset[str] = frozenset()  # category codes
    labels: frozenset[str] = frozenset()  # sensitive labels explicitly permitted

    def applies(self, requester: Requester, today: date) -> bool:
        if self.start is not None and today < self.start:
            return False
        if self.end is not None and today > self.end:
            return False
        if self.facilities or self.practitioners:
            who = f"{requester.facility}/{requester.practitioner}"
            if requester.facility not in self.facilities and who not in self.practitioners:
                return False
        return not self.purposes or requester.purpose in self.purposes

    @property
    def blanket(self) -> bool:
        return not self.classes and not self.codes

    def covers(self, rtype: str, categories: frozenset[str]) -> bool:
        if self.classes and rtype not in self.classes:
            return False
        return not self.codes or bool(self.codes & categories)


@dataclass(frozen=True, slots=True)
class Requester:
    facility: str
    practitioner: str
    role: str
    purpose: str
    reason: str = field(default="", repr=False)


@dataclass(frozen=True, slots=True)
class AccessDecision:
    """The outcome for one request. ``reason`` is a code for audit and the 403 (no PHI)."""

    permitted: bool
    basis: Basis
    reason: str
    break_glass: bool = False
    permits: tuple[Provision, ...] = ()
    denies: tuple[Provision, ...] = ()

    @property
    def consent_ids(self) -> tuple[str, ...]:
        return tuple(sorted({p.consent_id for p in (*self.permits, *self.denies)}))

    def allows(self, resource: Mapping[str, Any]) -> bool:
        """Whether ``resource`` may be released under this decision."""
        return self.releases(str(resource.get("resourceType", "")), categories_of(resource),
                             sensitive_labels(resource))

    def releases(self, rtype: str, categories: frozenset[str],
                 sensitive: frozenset[str]) -> bool:
        """:meth:`allows` for a resource of type ``rtype`` with these category codes and
        sensitive labels (what :func:`categories_of` and :func:`sensitive_labels` find): the
        decision depends on nothing else, so a caller may compute the three once per record
        version and ask again for every request."""
        if not self.permitted:
            return False
        if any(d.covers(rtype, categories) for d in self.denies) and not self.break_glass:
            return False
        covering = [p for p in self.permits if rtype == "Patient" or p.covers(rtype, categories)]
        if self.basis == "consent" and not covering:
            return False
        return all(any(label in p.labels for p in covering) for label in sensitive)


def sensitive_labels(resource: Mapping[str, Any]) -> frozenset[str]:
    """The sensitive security labels in ``meta.security`` (codes; any system)."""
    meta = resource.get("meta")
    labels = meta.get("security") if isinstance(meta, Mapping) else None
    if not isinstance(labels, list):
        return frozenset()
    return frozenset(str(c.get("code")) for c in labels
                     if isinstance(c, Mapping) and c.get("code") in SENSITIVE_LABELS)


def categories_of(resource: Mapping[str, Any]) -> frozenset[str]:
    """Codes of the resource's ``category`` CodeableConcepts (one or many)."""
    value = resource.get("category")
    concepts = value if isinstance(value, list) else [value] if value else []
    codes: set[str] = set()
    for concept in concepts:
        if isinstance(concept, Mapping):
            codes |= {str(c.get("code")) for c in concept.get("coding", [])
                      if isinstance(c, Mapping) and c.get("code")}
        elif isinstance(concept, str):  # AllergyIntolerance.category is a code list
            codes.add(concept)
    return frozenset(codes)


def decide(provisions: Iterable[Provision], requester: Requester, *, policy: DefaultPolicy,
           break_glass_roles: Iterable[str], now: datetime) -> AccessDecision:
    """The decision for ``requester`` given the patient's active consents' provisions."""
    today = now.date()
    applicable = [p for p in provisions if p.applies(requester, today)]
    permits = tuple(p for p in applicable if p.permit)
    denies = tuple(p for p in applicable if not p.permit)
    if requester.purpose in BREAK_GLASS_PURPOSES:
        if not requester.reason.strip():
            return AccessDecision(False, "denied", "break-glass-needs-reason")
        if requester.role not in set(break_glass_roles):
            return AccessDecision(False, "denied", "break-glass-role-not-allowed")
        return AccessDecision(True, "break-glass", "break-glass", True, permits, denies)
    if any(d.blanket for d in denies):
        return AccessDecision(False, "denied", "consent-denies", False, permits, denies)
    if permits:
        return AccessDecision(True, "consent", "consent-permits", False, permits, denies)
    if policy == "permit-treatment" and requester.purpose == TREATMENT:
        return AccessDecision(True, "default", "default-permits-treatment", False, (), denies)
    return AccessDecision(False, "denied", "no-consent", False, (), denies)
