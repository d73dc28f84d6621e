"""The password policy: length, the vendored list of common passwords, the account's own
name; applied to the password change, the e-mailed set-password link and the command line."""

from __future__ import annotations

import pytest

from lens.auth import passwords
from lens.auth.passwords import common_passwords, password_problem
from tests.conftest import csrf_from


def test_the_vendored_list_is_there_and_lowercase():
    listed = common_passwords()
    assert len(listed) > 19_000
    assert {"password", "123456", "iloveyou", "qwertyuiop"} <= listed
    assert all(word == word.lower() for word in listed)


@pytest.mark.parametrize(
    ("password", "problem"),
    [
        ("short", passwords.TOO_SHORT),
        ("x" * 201 + "abcde", passwords.TOO_LONG),
        ("aaaaaaaaaaaaaaaa", passwords.SIMPLE),
        ("qwertyuiop123", passwords.COMMON),  # listed, with digits after it
        ("Password 2024!!", passwords.COMMON),
        ("1qaz2wsx3edc4rfv", passwords.COMMON),
        ("tess technician", passwords.PERSONAL),
        ("tess@example.com", passwords.PERSONAL),
        ("correct horse battery", None),
        ("a brand new long password", None),
    ],
)
def test_password_problems(password, problem):
    assert password_problem(password, email="tess@example.com", name="Tess Technician") == problem


def test_the_password_change_refuses_a_common_password(console):
    page = console.client.get("/account/password")
    response = console.client.post(
        "/account/password",
        data={"password": "Password 2024!!", "confirm": "Password 2024!!",
              "csrf_token": csrf_from(page.text)},
    )  # fmt: skip
    assert response.status_code == 200
    assert "This password is too common" in response.text


def test_the_password_change_says_so_in_dutch(console):
    console.client.set_cookie("lens_lang", "nl")
    page = console.client.get("/account/password")
    response = console.client.post(
        "/account/password",
        data={"password": "kort", "confirm": "kort", "csrf_token": csrf_from(page.text)},
    )
    assert "Gebruik minstens 12 tekens." in response.text


def test_the_command_line_refuses_a_common_password(app, runner):
    result = runner.invoke(
        args=["lens", "create-admin", "--name", "Ada", "--email", "ada@example.com",
              "--password", "password123456"],
    )  # fmt: skip
    assert result.exit_code != 0
    assert "This password is too common" in result.output
