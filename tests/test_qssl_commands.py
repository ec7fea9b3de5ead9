"""The QSSL commands as data (bridged.core.qssl_commands): lines, names, answer checks."""

from __future__ import annotations

import pytest

from bridged.core.at_codec import DataFormat, DataFormatSetting
from bridged.core.qssl_commands import (
    QsslError,
    SslSocketSettings,
    UploadMismatch,
    check_upload_count,
    close_line,
    configure_lines,
    error_name,
    open_line,
    send_line,
    upload_line,
)


def test_command_lines_carry_the_profiles_context_id() -> None:
    settings = SslSocketSettings(
        seclevel=2,
        sslversion=4,
        dataformat=DataFormatSetting(send=DataFormat.HEX, recv=DataFormat.TEXT),
        timeout=90,
        debug=0,
    )
    assert configure_lines(1, 3, settings) == [
        'AT+QSSLCFG=1,3,"seclevel",2',
        'AT+QSSLCFG=1,3,"sslversion",4',
        'AT+QSSLCFG=1,3,"dataformat",1,0',
        'AT+QSSLCFG=1,3,"timeout",90',
        'AT+QSSLCFG=1,3,"debug",0',
    ]
    assert open_line(0, 0, "example.com", 443) == 'AT+QSSLOPEN=0,0,"example.com",443,0'
    assert send_line(1, 5, 730) == "AT+QSSLSEND=1,5,730"
    assert close_line(1, 2) == "AT+QSSLCLOSE=1,2"
    assert upload_line(1, 0, "cacert", b"-----BEGIN") == 'AT+QSSLCFG=1,0,"cacert"'


@pytest.mark.parametrize("pem", [b"a\x1ab", b"a\x1bb"])
def test_an_upload_that_ctrl_z_or_esc_would_cut_short_is_refused(pem: bytes) -> None:
    with pytest.raises(ValueError, match="Ctrl\\+Z or Esc"):
        upload_line(1, 0, "clientkey", pem)


def test_a_host_with_a_quote_cannot_become_an_open_command() -> None:
    with pytest.raises(ValueError):
        open_line(1, 0, 'evil",1,2', 443)


@pytest.mark.parametrize(
    ("lines", "problem"),
    [
        (['+QSSLCFG: 1,0,"cacert",1000'], None),
        (['+QSSLCFG: 1,0,"cacert",999'], "module counted 999 bytes, sent 1000"),
        (['+QSSLCFG: 1,1,"cacert",1000'], "no byte count"),  # another socket's
        ([], "no byte count"),
        (['+QSSLCFG: 1,0,"cacert",x'], "no byte count"),
    ],
)
def test_an_upload_must_be_counted_in_full(lines: list[str], problem: str | None) -> None:
    if problem is None:
        check_upload_count(lines, 1, 0, "cacert", 1000)
        return
    with pytest.raises(UploadMismatch, match=problem):
        check_upload_count(lines, 1, 0, "cacert", 1000)


def test_result_codes_have_stable_names_and_messages() -> None:
    assert [error_name(c) for c in (0, -3, -6, -8)] == [
        "ok",
        "cert_error",
        "state_error",
        "unknown",
    ]
    error = QsslError(2, "open", error_name(-5), -5)
    assert str(error) == "socket 2: open failed: cipher suite error (-5)"
    assert (error.name, error.code) == ("cipher_error", -5)
