"""Phone and email normalisation: one form per person."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from storage.addresses import normalize_email, normalize_phone
from storage.errors import InvalidAddress


@pytest.mark.parametrize(
    "raw",
    ["+7 999 123-45-67", "8 (999) 123-45-67", "89991234567", "+79991234567", "9991234567"],
)
def test_russian_numbers_in_every_usual_form_are_one_number(raw: str) -> None:
    assert normalize_phone(raw) == "+79991234567"


def test_foreign_number_keeps_its_country() -> None:
    assert normalize_phone("+44 20 7946 0958") == "+442079460958"


@pytest.mark.parametrize(
    "raw",
    ["+7 999", "", "   ", "12", "+7 000 000-00-00", "8-800-FLOWERS", "call me", "+79991234567x"],
)
def test_numbers_that_cannot_be_anyones_are_refused(raw: str) -> None:
    with pytest.raises(InvalidAddress) as info:
        normalize_phone(raw)
    assert info.value.field == "phone"
    assert info.value.value == raw
    assert "not a valid phone number" in str(info.value)


def test_invalid_address_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="'\\+7 999' is not a valid phone number"):
        normalize_phone("+7 999")


# Operator codes that are allocated: not every 9xx is a valid Russian mobile range.
RU_MOBILE = st.builds(
    lambda prefix, code, rest: f"{prefix}{code}{rest}",
    st.sampled_from(["+7", "8", "+7 ", "8-"]),
    st.sampled_from(["999", "916", "903", "926", "985", "912"]),
    st.from_regex(r"\A[0-9]{7}\Z"),
)


@given(RU_MOBILE)
def test_normalising_a_phone_twice_is_stable(raw: str) -> None:
    once = normalize_phone(raw)
    assert normalize_phone(once) == once
    assert once == "+7" + raw[-10:]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Ivan.Petrov@Example.COM", "ivan.petrov@example.com"),
        ("  anna@mail.ru ", "anna@mail.ru"),
        ("user@XN--E1AFMKFD.XN--P1AI", "user@пример.рф"),
        ("user@Пример.РФ", "user@пример.рф"),
    ],
)
def test_emails_compare_case_insensitively(raw: str, expected: str) -> None:
    assert normalize_email(raw) == expected


@pytest.mark.parametrize("raw", ["", "anna", "anna@", "@mail.ru", "anna@@mail.ru", "an na@mail.ru"])
def test_malformed_emails_are_refused(raw: str) -> None:
    with pytest.raises(InvalidAddress) as info:
        normalize_email(raw)
    assert info.value.field == "email"
    assert "not a valid email address" in str(info.value)


@given(st.emails())
def test_normalising_an_email_twice_is_stable(raw: str) -> None:
    try:
        once = normalize_email(raw)
    except InvalidAddress:
        return  # hypothesis generates some RFC-valid forms we refuse (quoted parts)
    assert normalize_email(once) == once
