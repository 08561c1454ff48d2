from __future__ import annotations

import datetime
import hmac
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.crypto.blind_index import (
    TERM_LEN,
    BlindIndexer,
    normalize_name,
    parse_identifier_token,
)
from edge.crypto.errors import CryptoError, IndexInputError
from edge.crypto.keys import DataKey, KeyPurpose

SYS = "urn:oid:2.16.840.1.113883.3.1234"


@pytest.fixture
def idx() -> BlindIndexer:
    return BlindIndexer(DataKey.generate(KeyPurpose.INDEX, "index"))


def test_deterministic_terms_and_full_patient_keys(idx: BlindIndexer) -> None:
    a = idx.identifier(SYS, "MRN123")
    assert a == idx.identifier(SYS, "MRN123")
    assert isinstance(a, bytes) and len(a) == TERM_LEN == 16
    assert len(idx.family("Smith")) == len(idx.birthdate("1970-01-01")) == TERM_LEN
    assert len(idx.patient_key(SYS, "MRN123")) == 32  # the owner of stored data keys


def test_depends_on_the_key(idx: BlindIndexer) -> None:
    other = BlindIndexer(DataKey.generate(KeyPurpose.INDEX, "index"))
    assert idx.identifier(SYS, "MRN123") != other.identifier(SYS, "MRN123")
    assert idx.family("Smith") != other.family("Smith")


def test_only_index_keys() -> None:
    with pytest.raises(CryptoError, match="index key"):
        BlindIndexer(DataKey.generate(KeyPurpose.PATIENT, "p"))
    key = DataKey.generate(KeyPurpose.INDEX, "index")
    idx = BlindIndexer(key)
    assert idx.key_id in repr(idx)
    assert key._material.hex() not in repr(idx)


def test_values_are_hmac_sha256_of_the_documented_input() -> None:
    # The indexer keeps HMAC's keyed states instead of calling hmac.digest; the values must
    # stay exactly HMAC-SHA256 over the layout in the module docstring, or every index
    # written before would stop matching.
    key = DataKey.generate(KeyPurpose.INDEX, "index")
    idx = BlindIndexer(key)
    def expected_input() -> bytes:
        return struct.pack(">I", len(SYS)) + SYS.encode() + struct.pack(">I", 6) + b"MRN123"

    expected = hmac.digest(
        key._material, b"hie-edge/blind-index/v1\x00identifier\x00" + expected_input(),
        "sha256")
    assert idx.identifier(SYS, "MRN123") == expected[:16]  # search terms: truncated
    assert idx.patient_key(SYS, "MRN123") == hmac.digest(
        key._material, b"hie-edge/blind-index/v1\x00patient-key\x00" + expected_input(),
        "sha256")
    assert idx.fingerprint(b"MSH|x") == hmac.digest(
        key._material, b"hie-edge/blind-index/v1\x00message\x00MSH|x", "sha256")
    assert idx.family("M\u00fcller") == hmac.digest(
        key._material, b"hie-edge/blind-index/v1\x00family\x00\x00\x00\x00\x06muller",
        "sha256")[:16]


# --- identifiers -----------------------------------------------------------------------


def test_identifier_normalization(idx: BlindIndexer) -> None:
    base = idx.identifier(SYS, "ab12")
    assert idx.identifier(f" {SYS} ", "\tab12\n") == base  # trimmed
    assert idx.identifier(SYS, "AB12") != base  # case-sensitive (FHIR identifiers)
    assert idx.identifier(SYS + "9", "ab12") != base  # the system matters
    assert idx.identifier("", "ab12") != base
    # NFC: composed and decomposed forms are the same identifier
    assert idx.identifier(SYS, "caf\u00e9") == idx.identifier(SYS, "cafe\u0301")


def test_identifier_fields_cannot_run_together(idx: BlindIndexer) -> None:
    assert idx.identifier("a|b", "c") != idx.identifier("a", "b|c")
    assert idx.identifier("ab", "c") != idx.identifier("a", "bc")


def test_empty_identifier_value_is_refused(idx: BlindIndexer) -> None:
    with pytest.raises(IndexInputError, match="identifier"):
        idx.identifier(SYS, "   ")
    with pytest.raises(IndexInputError, match="patient-key"):
        idx.patient_key(SYS, "")


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        (f"{SYS}|MRN1", (SYS, "MRN1")),
        ("|MRN1", ("", "MRN1")),
        ("sys|v|x", ("sys", "v|x")),
        (r"a\|b|c", ("a|b", "c")),
        (r"s|a\,b\$c\\d", ("s", "a,b$c\\d")),
    ],
)
def test_parse_identifier_token(token: str, expected: tuple[str, str]) -> None:
    assert parse_identifier_token(token) == expected


def test_parse_identifier_token_needs_a_bar() -> None:
    with pytest.raises(IndexInputError, match=r"SYSTEM\|VALUE"):
        parse_identifier_token("MRN1")


# --- names -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Müller", "MULLER"),
        ("  muller ", "Muller"),
        ("José", "jose"),
        ("Mu\u0308ller", "Müller"),  # decomposed umlaut
        ("O'Brien", "OBRIEN"),
        ("Smith-Jones", "smith   jones"),
        ("Smith\u2013Jones", "Smith Jones"),  # en dash
        ("Straße", "STRASSE"),
        ("\uff33\uff4d\uff49\uff54\uff48", "smith"),  # fullwidth (NFKD compatibility)
        ("van der  Berg", "Van Der Berg"),
        ("St. John", "st john"),
    ],
)
def test_names_that_should_match(idx: BlindIndexer, a: str, b: str) -> None:
    assert idx.family(a) == idx.family(b)
    assert idx.given(a) == idx.given(b)


@pytest.mark.parametrize(("a", "b"), [("Smith", "Smyth"), ("Jon", "John"), ("Øst", "Ost")])
def test_names_that_stay_distinct(idx: BlindIndexer, a: str, b: str) -> None:
    assert idx.family(a) != idx.family(b)


@pytest.mark.parametrize("name", ["", "   ", "---", "'.'", "\u0301"])
def test_empty_names_are_refused_without_echo(idx: BlindIndexer, name: str) -> None:
    with pytest.raises(IndexInputError, match="'family'") as info:
        idx.family(name)
    assert info.value.fault == "peer"


def test_error_does_not_contain_the_value(idx: BlindIndexer) -> None:
    with pytest.raises(IndexInputError) as info:
        idx.birthdate("1980-13-45")
    assert "1980" not in str(info.value)


@given(st.text(max_size=30))
def test_name_normalization_is_idempotent(name: str) -> None:
    try:
        once = normalize_name(name)
    except IndexInputError:
        return
    assert normalize_name(once) == once
    assert once == once.strip() and "  " not in once


# --- dates and gender ------------------------------------------------------------------


def test_birthdate(idx: BlindIndexer) -> None:
    full = idx.birthdate("1980-02-29")
    assert idx.birthdate(datetime.date(1980, 2, 29)) == full
    assert idx.birthdate(" 1980-02-29 ") == full
    assert idx.birthdate("1980-02") != full  # partial dates index as themselves
    assert idx.birthdate("1980") != idx.birthdate("1980-02")


@pytest.mark.parametrize(
    "bad", ["1981-02-29", "1980-2-3", "19800229", "1980-00", "80-02-29", "", "1980-02-29T00:00"]
)
def test_bad_birthdates(idx: BlindIndexer, bad: str) -> None:
    with pytest.raises(IndexInputError, match="birthdate"):
        idx.birthdate(bad)


def test_datetime_is_not_a_birthdate(idx: BlindIndexer) -> None:
    with pytest.raises(IndexInputError, match="datetime"):
        idx.birthdate(datetime.datetime(1980, 2, 29, 12, 0))


def test_gender(idx: BlindIndexer) -> None:
    assert idx.gender(" Male ") == idx.gender("male")
    assert idx.gender("female") != idx.gender("male")
    for bad in ["M", "F", "", "mal"]:
        with pytest.raises(IndexInputError, match="gender"):
            idx.gender(bad)


# --- domain separation -----------------------------------------------------------------


def test_kinds_are_separated(idx: BlindIndexer) -> None:
    assert idx.family("Jordan") != idx.given("Jordan")
    assert idx.identifier(SYS, "X1") != idx.patient_key(SYS, "X1")
    assert idx.patient_key(SYS, "X1") == idx.patient_key(f"{SYS} ", " X1")
    values = {
        idx.family("male"),
        idx.given("male"),
        idx.gender("male"),
        idx.identifier("", "male"),
        idx.patient_key("", "male"),
        idx.birthdate("1980"),
        idx.family("1980"),
    }
    assert len(values) == 7
