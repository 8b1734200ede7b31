"""Offline PII detection: spans of e-mail addresses, phone numbers, IP addresses, payment
card numbers, IBANs and US social security numbers, as character offsets.

Each kind is a regular expression that proposes candidates and a check that keeps only
those that are what they look like, because precision matters more than recall here (a
redacted number in a maths text is lost data):

- ``email``: local@domain with a top-level domain of 2+ letters.
- ``phone``: an international number (``+`` then 8-15 digits in groups) or a North American
  one (``(202) 555-0143``, ``202-555-0143``, ``202.555.0143``, optional leading ``1``;
  area code and exchange start with 2-9). Dates (``2024-01-15``, ``12/03/2024``) and bare
  digit runs never match: a phone needs ``+`` or the 3-3-4 shape.
- ``ip``: IPv4 dotted quads (octets 0-255, no leading zeros) and IPv6 addresses
  (validated by `ipaddress`). A quad after a version marker (``v1.2.3.4``, ``version
  1.2.3.4``) or inside a longer dotted run (``1.2.3.4.5``) is not an address; a bare
  ``1.2.3.4`` is one, since that is how addresses appear in logs.
- ``credit_card``: 13-19 digits, optionally grouped by single spaces or hyphens, passing
  the Luhn check and starting with a card network's prefix (Visa, Mastercard, Amex,
  Discover, JCB, Diners).
- ``iban``: country code, check digits and the country's length (ISO 13616), passing
  the mod-97 checksum; printed groups of four are accepted.
- ``ssn``: the dashed form ``AAA-GG-SSSS`` with the SSA's never-issued values excluded
  (area 000, 666, 9xx; group 00; serial 0000). Nine bare digits are not matched.

Overlapping candidates are resolved in the order of `KINDS`: a span that overlaps one
already found is dropped.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from typing import NamedTuple

import pyarrow as pa

from thresher.storage.stage import Resources, Stage

KINDS = ("email", "iban", "credit_card", "ssn", "ip", "phone")


class Span(NamedTuple):
    kind: str
    start: int
    end: int


_EMAIL = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9](?:[A-Za-z0-9._%+-]{0,62}[A-Za-z0-9_%+-])?"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w-])"
)
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}(?![A-Za-z0-9])")
_CARD = re.compile(r"(?<![\d.,-])\d(?:[ -]?\d){12,18}(?![\d-]|[.,]\d)")
_SSN = re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])")
_IPV4 = re.compile(
    r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
    r"(?![\w]|\.\d)"
)
_VERSION = re.compile(r"(?:\bv|\bversion\s*|\bver\.?\s*|\brelease\s*)$", re.IGNORECASE)
_IPV6 = re.compile(r"(?<![\w:.])[0-9A-Fa-f:]*:[0-9A-Fa-f:]*:[0-9A-Fa-f:.]*(?![\w:])")
_PHONE_INTL = re.compile(r"(?<![\w+])\+\d{1,3}(?:[ .-]?\(\d{1,4}\))?(?:[ .-]?\d{1,5}){1,5}(?!\d)")
_PHONE_NANP = re.compile(
    r"(?<![\w+-])(?:1[ .-]?)?(?:\([2-9]\d{2}\) ?|[2-9]\d{2}[ .-])[2-9]\d{2}[ .-]\d{4}(?![\w-])"
)
_CARD_PREFIX = re.compile(r"4|5[1-5]|2[2-7]|3[47]|6011|65|64[4-9]|35|30[0-5]|36|38")
_IBAN_COUNTRIES = (
    "AD24 AE23 AL28 AT20 AZ28 BA20 BE16 BG22 BH22 BR29 BY28 CH21 CR22 CY28 CZ24 DE22 DK18 "
    "DO28 EE20 EG29 ES24 FI18 FO18 FR27 GB22 GE22 GI23 GL18 GR27 GT28 HR21 HU28 IE22 IL23 "
    "IQ23 IS26 IT27 JO30 KW30 KZ20 LB28 LC32 LI21 LT20 LU20 LV21 MC27 MD24 ME22 MK19 MR27 "
    "MT31 MU30 NL18 NO15 PK24 PL28 PS29 PT25 QA29 RO24 RS22 SA24 SC31 SE24 SI19 SK24 SM27 "
    "ST25 SV28 TL23 TN24 TR26 UA29 VA22 VG24 XK20"
)
IBAN_LENGTHS = {c[:2]: int(c[2:]) for c in _IBAN_COUNTRIES.split(" ")}


def luhn_ok(digits: str) -> bool:
    """The Luhn (mod 10) check of a digit string."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(compact: str) -> bool:
    """ISO 13616: the country's length and the mod-97 check of an IBAN without spaces."""
    if IBAN_LENGTHS.get(compact[:2]) != len(compact):
        return False
    moved = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in moved)) % 97 == 1


def _iban_end(text: str, start: int, end: int) -> int | None:
    """Where the IBAN starting at `start` ends (a greedy match may run into a following
    upper-case word); None when the candidate is no IBAN."""
    want = IBAN_LENGTHS.get(text[start : start + 2])
    if want is None:
        return None
    seen, pos = 0, start
    while pos < end and seen < want:
        seen += text[pos] != " "
        pos += 1
    if seen < want or (pos < end and text[pos] != " "):
        return None
    return pos if iban_ok(text[start:pos].replace(" ", "")) else None


def _candidates(text: str) -> list[Span]:
    out = [Span("email", m.start(), m.end()) for m in _EMAIL.finditer(text)]
    for m in _IBAN.finditer(text):
        if (end := _iban_end(text, m.start(), m.end())) is not None:
            out.append(Span("iban", m.start(), end))
    for m in _CARD.finditer(text):
        if (span := _card_span(m.group())) is not None:
            out.append(Span("credit_card", m.start() + span[0], m.start() + span[1]))
    out += [Span("ssn", m.start(), m.end()) for m in _SSN.finditer(text)]
    for m in _IPV4.finditer(text):
        if not _VERSION.search(text[max(0, m.start() - 12) : m.start()]):
            out.append(Span("ip", m.start(), m.end()))
    out += [Span("ip", m.start(), m.end()) for m in _IPV6.finditer(text) if _ipv6_ok(m.group())]
    for m in _PHONE_INTL.finditer(text):
        if 8 <= sum(c.isdigit() for c in m.group()) <= 15:
            out.append(Span("phone", m.start(), m.end()))
    out += [Span("phone", m.start(), m.end()) for m in _PHONE_NANP.finditer(text)]
    return out


def _card_span(raw: str) -> tuple[int, int] | None:
    """Offsets in `raw` (a run of digits, spaces and hyphens) of a card number: the whole
    run, else the longest run left after dropping whole groups from its ends (a number
    written next to another, "Microsoft 365 4239 7876 2742 0547", runs into it)."""
    if len({c for c in raw if c in " -"}) > 1:
        return None
    cuts = [0] + [i + 1 for i, c in enumerate(raw) if c in " -"]  # group starts
    ends = [i for i, c in enumerate(raw) if c in " -"] + [len(raw)]  # group ends
    options = [(a, b) for a in cuts[:3] for b in ends[-3:] if a < b]
    for a, b in sorted(options, key=lambda o: o[0] - o[1]):  # longest first
        if _card_ok(re.sub(r"[ -]", "", raw[a:b])):
            return a, b
    return None


def _card_ok(digits: str) -> bool:
    return 13 <= len(digits) <= 19 and bool(_CARD_PREFIX.match(digits)) and luhn_ok(digits)


def _ipv6_ok(candidate: str) -> bool:
    if not any(c.isdigit() for c in candidate) or candidate.count(":") < 2:
        return False
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return False
    return True


def find_pii(text: str) -> list[Span]:
    """The PII spans of `text`, by start offset; overlaps resolved in `KINDS` order."""
    rank = {k: i for i, k in enumerate(KINDS)}
    found = sorted(_candidates(text), key=lambda s: (rank[s.kind], s.start))
    kept: list[Span] = []
    for s in found:
        if all(s.end <= k.start or s.start >= k.end for k in kept):
            kept.append(s)
    return sorted(kept, key=lambda s: s.start)


def spans_table(item_ids: Sequence[int], texts: Sequence[str | None]) -> pa.Table:
    """(item_id, kind, start, end): one row per span, and one row with null kind/offsets
    for each item without any (so every scanned item comes back)."""
    cols: dict[str, list] = {"item_id": [], "kind": [], "start": [], "end": []}
    for item_id, text in zip(item_ids, texts, strict=True):
        spans: list[Span | None] = [*find_pii(text or "")] or [None]
        for s in spans:
            cols["item_id"].append(item_id)
            cols["kind"].append(s.kind if s else None)
            cols["start"].append(s.start if s else None)
            cols["end"].append(s.end if s else None)
    types = {"item_id": pa.int64(), "kind": pa.string(), "start": pa.int64(), "end": pa.int64()}
    return pa.table({k: pa.array(v, types[k]) for k, v in cols.items()})


class PiiStage(Stage):
    """(item_id, text) -> (item_id, kind, start, end): see `spans_table`."""

    name = "pii"
    resources = Resources(cpus=1)
    required_columns = ("item_id", "text")

    def process(self, batch: pa.Table) -> pa.Table:
        self.check_columns(batch)
        return spans_table(batch.column("item_id").to_pylist(), batch.column("text").to_pylist())
