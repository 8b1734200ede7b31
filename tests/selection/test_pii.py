"""PII detection: planted positives found with exact offsets, look-alikes left alone."""

from __future__ import annotations

import pytest

from thresher.selection.pii import PiiStage, find_pii, iban_ok, luhn_ok, spans_table


def kinds(text: str) -> list[tuple[str, str]]:
    return [(s.kind, text[s.start : s.end]) for s in find_pii(text)]


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        (
            "write to jane.doe+news@mail.example.co.uk today",
            "email",
            "jane.doe+news@mail.example.co.uk",
        ),
        ("call (202) 555-0143 now", "phone", "(202) 555-0143"),
        ("call 202-555-0143.", "phone", "202-555-0143"),
        ("call 1-800-555-0199 free", "phone", "1-800-555-0199"),
        ("tel +44 20 7946 0958 (London)", "phone", "+44 20 7946 0958"),
        ("tel +49-30-1234567", "phone", "+49-30-1234567"),
        ("from 192.168.10.254 at noon", "ip", "192.168.10.254"),
        ("host 2001:db8::8a2e:370:7334 up", "ip", "2001:db8::8a2e:370:7334"),
        ("loopback ::1 and", "ip", "::1"),
        ("card 4111 1111 1111 1111 exp", "credit_card", "4111 1111 1111 1111"),
        # a number run into the card's digits by a space is not part of it
        ("Microsoft 365 4239787627420547 Copilot", "credit_card", "4239787627420547"),
        ("ACME v2 4086 1438 4118 6858 Protocol", "credit_card", "4086 1438 4118 6858"),
        ("amex 3782-822463-10005", "credit_card", "3782-822463-10005"),
        ("mc 5555555555554444.", "credit_card", "5555555555554444"),
        ("pay DE89 3704 0044 0532 0130 00 THANKS", "iban", "DE89 3704 0044 0532 0130 00"),
        ("pay GB82WEST12345698765432 now", "iban", "GB82WEST12345698765432"),
        ("ssn 078-05-1120 on file", "ssn", "078-05-1120"),
    ],
)
def test_positives_with_offsets(text: str, kind: str, value: str) -> None:
    assert kinds(text) == [(kind, value)]


@pytest.mark.parametrize(
    "text",
    [
        "released v1.2.3.4 and version 10.0.0.1 today",  # version numbers
        "see section 1.2.3.4.5 of the spec",  # a longer dotted run
        "octets 256.1.1.1 and 01.02.03.04",  # out of range, leading zeros
        "order 4111 1111 1111 1112 failed Luhn",  # 16 digits failing Luhn
        "id 1234567812345678 is a number",  # Luhn fails
        "id 0000000000000000 passes Luhn but no network",
        "on 2024-01-15 and 12/03/2024 and 15.01.2024",  # dates
        "between 10:30:45 and 11:00",  # times are not IPv6
        "use std::vector and Foo::bar",  # C++ scope
        "the numbers 100 200 3000 and 555-1234",  # no area code / bad area code
        "ssn-like 000-12-3456 666-12-3456 912-34-5678 123-00-4567",  # never issued
        "IBAN-like DE89 3704 0044 0532 0130 01 checksum off",
        "user@localhost and @handle and a@b",  # no top-level domain
        "pi is 3.14159265358979 and e=2.718281828459045",
        "ISBN 978-3-16-148410-0 and 3+4=7",
    ],
)
def test_negatives(text: str) -> None:
    assert find_pii(text) == []


def test_several_kinds_in_one_text_sorted_without_overlap() -> None:
    text = "Mail bob@x.org or +1 202 555 0143; card 4012888888881881 from 10.0.0.7."
    assert kinds(text) == [
        ("email", "bob@x.org"),
        ("phone", "+1 202 555 0143"),
        ("credit_card", "4012888888881881"),
        ("ip", "10.0.0.7"),
    ]


def test_checksums() -> None:
    assert luhn_ok("79927398713") and not luhn_ok("79927398710")
    assert iban_ok("GB82WEST12345698765432") and not iban_ok("GB82WEST12345698765433")
    assert not iban_ok("XX82WEST12345698765432")  # unknown country


def test_stage_returns_every_scanned_item() -> None:
    import pyarrow as pa

    out = PiiStage().process(pa.table({"item_id": [1, 2, 3], "text": ["a@b.io x@y.io", "", None]}))
    assert out.to_pylist() == [
        {"item_id": 1, "kind": "email", "start": 0, "end": 6},
        {"item_id": 1, "kind": "email", "start": 7, "end": 13},
        {"item_id": 2, "kind": None, "start": None, "end": None},
        {"item_id": 3, "kind": None, "start": None, "end": None},
    ]
    assert spans_table([], []).num_rows == 0
