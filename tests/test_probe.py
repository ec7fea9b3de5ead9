"""``bridged probe`` against real TLS servers (openssl s_server) started here."""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from bridged.tools.probe.cli import probe_main
from tests.support.pki import Pki, make_pki
from tests.support.tls_servers import (
    LOOPBACK,
    MODULE_COMPATIBLE_CIPHERS,
    RunningServer,
    free_port,
    start_openssl_server,
)

COMPATIBLE = ["-cipher", MODULE_COMPATIBLE_CIPHERS]
TLS13_ONLY = ["-tls1_3"]
ECDHE_ONLY = ["-cipher", "ECDHE-RSA-AES128-GCM-SHA256", "-no_tls1_3"]
RSA_SUITES_AT_TLS12 = {
    "TLS_RSA_WITH_AES_256_CBC_SHA256",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_RSA_WITH_AES_128_CBC_SHA",
}
NOT_TESTABLE_HERE = {
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_PSK_WITH_AES_256_CBC_SHA384",
    "TLS_PSK_WITH_AES_256_CBC_SHA",
    "TLS_PSK_WITH_AES_128_CBC_SHA256",
    "TLS_PSK_WITH_AES_128_CBC_SHA",
    "TLS_PSK_WITH_3DES_EDE_CBC_SHA",
}


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def servers(pki: Pki) -> Iterator[dict[str, RunningServer]]:
    """One server of each kind, shared by the module's tests (s_server serves them in turn)."""
    kinds = {
        "compatible": COMPATIBLE,
        "tls13": TLS13_ONLY,
        "ecdhe": ECDHE_ONLY,
        # Demands a client certificate issued by our CA and hangs up on any other.
        "mutual": [
            *COMPATIBLE,
            "-Verify",
            "1",
            "-CAfile",
            str(pki.ca_cert),
            "-verify_return_error",
        ],
    }
    with contextlib.ExitStack() as stack:
        yield {
            kind: stack.enter_context(start_openssl_server(pki, options))
            for kind, options in kinds.items()
        }


def address(server: RunningServer) -> str:
    return f"{LOOPBACK}:{server.port}"


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    code = probe_main([*argv, "--json"])
    report: dict[str, Any] = json.loads(capsys.readouterr().out)
    return code, report


def only_verdict(report: dict[str, Any]) -> dict[str, Any]:
    verdicts: list[dict[str, Any]] = report["verdicts"]
    assert len(verdicts) == 1
    return verdicts[0]


def results_by_suite(report: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {row["suite"]: row["results"] for row in report["suites"]}


# --------------------------------------------------------------------------- server kinds


def test_compatible_server_works_at_every_sslversion(
    servers: dict[str, RunningServer], pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = run_json(capsys, address(servers["compatible"]), "--cacert", str(pki.ca_cert))

    assert code == 0
    assert report["all_work"] is True
    verdict = only_verdict(report)
    assert verdict["verdict"] == "works"
    assert (verdict["code"], verdict["error_name"]) == (0, "ok")
    assert verdict["settings"]["seclevel"] == 1  # inferred: a CA, no client identity
    assert verdict["handshake"]["version"] == "TLSv1.2"
    assert verdict["handshake"]["suite"] == "TLS_RSA_WITH_AES_256_CBC_SHA256"
    assert verdict["chain"].startswith("verifies against")
    assert verdict["client_certificate"] == "not requested"

    results = results_by_suite(report)
    for suite in RSA_SUITES_AT_TLS12:
        assert results[suite]["TLS1.2"] == "accepted"
    assert results["TLS_RSA_WITH_AES_128_CBC_SHA"] == dict.fromkeys(
        ("TLS1.0", "TLS1.1", "TLS1.2"), "accepted"
    )
    assert results["TLS_RSA_WITH_AES_128_CBC_SHA256"]["TLS1.0"] == "not_in_version"
    for suite in NOT_TESTABLE_HERE:
        assert set(results[suite].values()) == {"not_testable"}
    assert "TLS_EMPTY_RENEGOTIATION_INFO_SCSV" not in results

    versions = {row["sslversion"]: row for row in report["sslversions"]}
    assert versions[0]["testable"] is False
    assert [versions[n]["handshake"]["version"] for n in (1, 2, 3, 4)] == [
        "TLSv1",
        "TLSv1.1",
        "TLSv1.2",
        "TLSv1.2",
    ]
    assert report["server"]["key"]["type"] == "RSA"
    assert report["server"]["key"]["bits"] == 2048
    assert report["server"]["client_certificate"] == "not_requested"
    assert report["server"]["sni"]["applicable"] is False  # an IP address: no SNI


def test_compatible_server_table(
    servers: dict[str, RunningServer], capsys: pytest.CaptureFixture[str]
) -> None:
    code = probe_main([address(servers["compatible"])])  # no files: seclevel 0

    out = capsys.readouterr().out
    assert code == 0
    assert "server key    RSA 2048 bits" in out
    assert "TLS_RSA_WITH_AES_128_CBC_SHA     accepted  accepted  accepted" in out
    assert "TLS_RSA_WITH_3DES_EDE_CBC_SHA    not testable here" in out
    assert "0 SSL3.0     not testable here" in out
    assert "4 any        TLSv1.2 TLS_RSA_WITH_AES_256_CBC_SHA256" in out
    assert "command line (seclevel 0 (no auth), sslversion 4 (any)): works" in out


@pytest.mark.parametrize(
    ("kind", "modern_version", "alert"),
    [
        pytest.param("tls13", "TLSv1.3", "protocol_version", id="tls1.3-only"),
        pytest.param("ecdhe", "TLSv1.2", "handshake_failure", id="ecdhe-only"),
    ],
)
def test_server_without_the_module_suites_is_a_cipher_error(
    servers: dict[str, RunningServer],
    pki: Pki,
    capsys: pytest.CaptureFixture[str],
    kind: str,
    modern_version: str,
    alert: str,
) -> None:
    code, report = run_json(capsys, address(servers[kind]), "--cacert", str(pki.ca_cert))

    assert code == 1
    verdict = only_verdict(report)
    assert verdict["verdict"] == "fails"
    assert (verdict["code"], verdict["error_name"]) == (-5, "cipher_error")
    assert verdict["error_description"] == "cipher suite error"
    assert verdict["handshake"]["alert"] == alert
    assert verdict["fixes"][0] == (
        "enable TLS_RSA_WITH_AES_256_CBC_SHA256 (OpenSSL: AES256-SHA256) and TLS 1.2 on the server"
    )
    # The chain is still checked, by a modern client, so every change is known at once.
    assert verdict["chain"].startswith("verifies against")
    assert report["server"]["modern_client"]["version"] == modern_version
    assert report["server"]["key"]["type"] == "RSA"  # seen by the modern client
    for suite in RSA_SUITES_AT_TLS12:
        assert results_by_suite(report)[suite]["TLS1.2"] == "refused"
    assert not any(row["works"] for row in report["sslversions"] if row["testable"])


def test_server_demanding_a_client_cert_we_lack_is_a_cert_error(
    servers: dict[str, RunningServer], pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = run_json(capsys, address(servers["mutual"]), "--cacert", str(pki.ca_cert))

    assert code == 1
    verdict = only_verdict(report)
    # -3, not -5: the server chose one of our suites before asking for the certificate.
    assert (verdict["code"], verdict["error_name"]) == (-3, "cert_error")
    assert "requires a client certificate" in verdict["reason"]
    assert verdict["handshake"]["alert"] == "handshake_failure"
    assert verdict["client_certificate"] == "requested, none configured (required)"
    assert verdict["chain"].startswith("verifies against")
    assert "set seclevel 2" in verdict["fixes"][0]
    assert report["server"]["client_certificate"] == "required"
    # The suites themselves are fine.
    assert results_by_suite(report)["TLS_RSA_WITH_AES_128_CBC_SHA256"]["TLS1.2"] == "accepted"


def test_server_accepts_our_client_cert_at_seclevel_2(
    servers: dict[str, RunningServer], pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    identity = ["--clientcert", str(pki.client_cert), "--clientkey", str(pki.client_key)]
    code = probe_main([address(servers["mutual"]), "--cacert", str(pki.ca_cert), *identity])

    out = capsys.readouterr().out
    assert code == 0
    assert "command line (seclevel 2 (mutual), sslversion 4 (any)): works" in out
    assert f"client cert: accepted: {pki.client_cert}" in out
    key_body = pki.client_key.read_text().splitlines()[1]
    assert key_body not in out and "PRIVATE KEY" not in out


def test_server_rejects_a_client_cert_from_another_ca(
    servers: dict[str, RunningServer], pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stranger = trustme.CA(key_type=trustme.KeyType.RSA).issue_cert(
        "stranger", key_type=trustme.KeyType.RSA
    )
    cert, key = tmp_path / "stranger.crt", tmp_path / "stranger.key"
    stranger.cert_chain_pems[0].write_to_path(str(cert))
    stranger.private_key_pem.write_to_path(str(key))

    code, report = run_json(
        capsys,
        address(servers["mutual"]),
        *("--cacert", str(pki.ca_cert), "--clientcert", str(cert), "--clientkey", str(key)),
    )

    assert code == 1
    verdict = only_verdict(report)
    assert verdict["code"] == -3
    assert "rejected our client certificate" in verdict["reason"]
    assert verdict["client_certificate"].startswith(f"rejected: {cert}")


def test_server_certificate_from_another_ca(
    servers: dict[str, RunningServer], pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    target = address(servers["compatible"])

    code, report = run_json(capsys, target, "--cacert", str(pki.other_ca_cert))
    assert code == 1
    verdict = only_verdict(report)
    assert (verdict["code"], verdict["error_name"]) == (-3, "cert_error")
    assert "does not verify against" in verdict["reason"]
    assert verdict["chain"].startswith("does not verify against")

    code, report = run_json(capsys, target)  # seclevel 0: the chain is not checked
    assert code == 0
    verdict = only_verdict(report)
    assert (verdict["settings"]["seclevel"], verdict["verdict"]) == (0, "works")
    assert verdict["chain"] == "not checked (seclevel 0)"


def test_socket_pinned_to_a_version_the_server_refuses(
    pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    with start_openssl_server(pki, [*COMPATIBLE, "-tls1_2"]) as server:
        code, report = run_json(capsys, address(server), "--sslversion", "1")

    assert code == 1
    verdict = only_verdict(report)
    assert verdict["code"] == -5
    assert verdict["reason"] == ("the server refuses TLS 1.0 (server sent alert protocol_version)")
    assert verdict["fixes"] == [
        "set sslversion 4 (any) for this socket: the server accepts "
        "TLS_RSA_WITH_AES_256_CBC_SHA256 at TLS 1.2"
    ]


def test_server_with_an_ec_key_needs_an_rsa_certificate(
    pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ec_identity = trustme.CA().issue_cert("localhost")  # trustme's default: ECDSA P-256
    cert, key = tmp_path / "ec.crt", tmp_path / "ec.key"
    ec_identity.cert_chain_pems[0].write_to_path(str(cert))
    ec_identity.private_key_pem.write_to_path(str(key))

    # The later -cert/-key win over the RSA pair start_openssl_server passes.
    with start_openssl_server(pki, ["-cert", str(cert), "-key", str(key)]) as server:
        code, report = run_json(capsys, address(server))

    assert code == 1
    assert report["server"]["key"]["type"] == "EC"
    assert report["server"]["key"]["curve"] == "secp256r1"
    verdict = only_verdict(report)
    assert verdict["code"] == -5
    assert verdict["fixes"][0].startswith("serve an RSA certificate")


# --------------------------------------------------------------------------- configuration


def write_config(directory: Path, pki: Pki, target: str) -> Path:
    config = directory / "bridged.yaml"
    config.write_text(
        f"""
serial: {{device: /dev/null}}
ssl: {{seclevel: 1, cacert: {pki.ca_cert}}}
sockets:
  - {{connect_id: 0, listen: "127.0.0.1:17000", remote: "{target}"}}
  - connect_id: 1
    listen: "127.0.0.1:17001"
    remote: "{target}"
    ssl: {{cacert: {pki.other_ca_cert}}}
  - {{connect_id: 2, listen: "127.0.0.1:17002", remote: "{target}", ssl: {{sslversion: 0}}}}
  - {{connect_id: 3, listen: "127.0.0.1:17003", remote: "elsewhere.example:443"}}
"""
    )
    return config


def test_config_gives_one_verdict_per_socket_with_that_remote(
    servers: dict[str, RunningServer], pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = address(servers["compatible"])
    config = write_config(tmp_path, pki, target)

    code, report = run_json(capsys, target, "-c", str(config))

    assert code == 1
    verdicts = {v["connect_id"]: v for v in report["verdicts"]}
    assert set(verdicts) == {0, 1, 2}  # socket 3 talks to another server
    assert verdicts[0]["verdict"] == "works"
    assert verdicts[1]["code"] == -3
    assert verdicts[2]["code"] == -5  # SSL 3.0: not testable, and refused everywhere
    assert "SSL 3.0" in verdicts[2]["reason"]
    assert verdicts[2]["fixes"] == ["set sslversion 4 (any) or 3 (TLS 1.2) for this socket"]


def test_connect_id_picks_one_socket_even_for_another_remote(
    servers: dict[str, RunningServer], pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = address(servers["compatible"])
    config = write_config(tmp_path, pki, target)

    code, report = run_json(capsys, target, "-c", str(config), "--connect-id", "3")

    assert code == 0
    verdict = only_verdict(report)
    assert (verdict["socket"], verdict["verdict"]) == ("socket 3", "works")
    assert verdict["notes"] == [
        f"socket 3's remote is elsewhere.example:443; probed {target} with its settings"
    ]


# --------------------------------------------------------------------------- no TLS server


def test_refused_connection_is_a_connection_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, report = run_json(capsys, f"{LOOPBACK}:{free_port()}")

    assert code == 1
    verdict = only_verdict(report)
    assert (verdict["code"], verdict["error_name"]) == (-2, "connection_error")
    assert report["suites"] == []  # nothing more was tried


@contextlib.contextmanager
def thread_server(handle: Callable[[socket.socket], None]) -> Iterator[int]:
    """A loopback TCP server calling ``handle(conn)`` for each connection in turn;
    connections are closed when the server stops (or by ``handle``)."""
    listener = socket.create_server((LOOPBACK, 0))
    accepted: list[socket.socket] = []

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = listener.accept()
                accepted.append(conn)
                conn.settimeout(5)
                with contextlib.suppress(OSError):  # ssl.SSLError too
                    handle(conn)

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        listener.close()
        for conn in accepted:
            conn.close()


def answer_http(conn: socket.socket) -> None:
    conn.recv(4096)
    conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    conn.close()


def test_silent_server_is_a_timeout(capsys: pytest.CaptureFixture[str]) -> None:
    with thread_server(lambda conn: None) as port:  # accepts, never answers
        code, report = run_json(capsys, f"{LOOPBACK}:{port}", "--timeout", "0.3")

    assert code == 1
    assert (only_verdict(report)["code"], only_verdict(report)["error_name"]) == (-7, "timeout")


def test_plain_http_server_is_a_connection_error(capsys: pytest.CaptureFixture[str]) -> None:
    with thread_server(answer_http) as port:
        code, report = run_json(capsys, f"{LOOPBACK}:{port}")

    assert code == 1
    verdict = only_verdict(report)
    assert (verdict["code"], verdict["reason"]) == (-2, "the server did not answer with TLS")


def test_python_default_server_context_refuses_the_module(
    pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.server_cert, pki.server_key)

    def serve_tls(conn: socket.socket) -> None:
        context.wrap_socket(conn, server_side=True).close()

    with thread_server(serve_tls) as port:
        code, report = run_json(capsys, f"{LOOPBACK}:{port}", "--cacert", str(pki.ca_cert))

    assert code == 1
    verdict = only_verdict(report)
    assert (verdict["code"], verdict["handshake"]["alert"]) == (-5, "handshake_failure")
    assert report["server"]["modern_client"]["version"] == "TLSv1.3"


# --------------------------------------------------------------------------- SNI


def test_server_answering_differently_without_sni(
    pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # -cert2 is served to clients asking for "localhost"; the others get the default one.
    sni_cert = trustme.CA(key_type=trustme.KeyType.RSA).issue_cert(
        "localhost", key_type=trustme.KeyType.RSA
    )
    cert2, key2 = tmp_path / "sni.crt", tmp_path / "sni.key"
    sni_cert.cert_chain_pems[0].write_to_path(str(cert2))
    sni_cert.private_key_pem.write_to_path(str(key2))
    options = [*COMPATIBLE, "-servername", "localhost", "-cert2", str(cert2), "-key2", str(key2)]

    with start_openssl_server(pki, options) as server:
        code, report = run_json(capsys, f"localhost:{server.port}")

    assert code == 0
    sni = report["server"]["sni"]
    assert sni["applicable"] is True
    assert sni["summary"] == "different certificate without SNI (the module sends SNI 'localhost')"


def test_same_certificate_with_and_without_sni(
    servers: dict[str, RunningServer], capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = run_json(capsys, f"localhost:{servers['compatible'].port}")

    assert code == 0
    assert report["server"]["sni"]["summary"] == "same certificate with and without SNI"


# --------------------------------------------------------------------------- usage


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param([], id="no-target"),
        pytest.param(["nohost"], id="no-port"),
        pytest.param(["127.0.0.1:99999"], id="bad-port"),
        pytest.param(["127.0.0.1:443", "--connect-id", "0"], id="connect-id-without-config"),
        pytest.param(["127.0.0.1:443", "--clientcert", "c.pem"], id="cert-without-key"),
        pytest.param(
            ["127.0.0.1:443", "--clientcert", "c.pem", "--clientkey", "k.pem"],
            id="identity-without-ca",
        ),
        pytest.param(["127.0.0.1:443", "--cacert", "/nonexistent/ca.pem"], id="missing-file"),
        pytest.param(["127.0.0.1:443", "--timeout", "0"], id="bad-timeout"),
        pytest.param(["127.0.0.1:443", "-c", "/nonexistent/bridged.yaml"], id="missing-config"),
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert probe_main(argv) == 2
    assert capsys.readouterr().err


def test_config_without_a_socket_for_the_target_exits_2(
    pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, pki, "127.0.0.1:4433")

    assert probe_main(["127.0.0.1:9", "-c", str(config)]) == 2
    assert "no socket in" in capsys.readouterr().err
    assert probe_main(["127.0.0.1:9", "-c", str(config), "--connect-id", "5"]) == 2


# --------------------------------------------------------------------------- module models

BC660K_SUITES = {
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
}


def test_a_bc660k_offers_its_three_suites_and_no_ssl3(
    servers: dict[str, RunningServer], capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = run_json(capsys, address(servers["compatible"]), "--model", "bc660k")
    assert code == 0
    assert set(results_by_suite(report)) == BC660K_SUITES
    assert [row["sslversion"] for row in report["sslversions"]] == [1, 2, 3, 4]
    assert only_verdict(report)["handshake"]["suite"] in BC660K_SUITES
    probe_main([address(servers["compatible"]), "--model", "bc660k"])
    assert "the BC660K-GL's TLS handshakes" in capsys.readouterr().out


def test_a_sha256_only_server_suits_a_bc26_but_not_a_bc660k(
    pki: Pki, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with start_openssl_server(pki, ["-cipher", "AES256-SHA256"]) as server:
        assert run_json(capsys, address(server))[0] == 0  # the BC26's first suite
        config = tmp_path / "bridged.yaml"
        config.write_text(
            "serial: {device: /dev/ttyUSB0}\nmodem: {model: bc660k}\nssl: {seclevel: 0}\n"
            f"sockets:\n  - {{connect_id: 0, listen: '127.0.0.1:7000', "
            f"remote: '{address(server)}'}}\n"
        )
        code, report = run_json(capsys, address(server), "-c", str(config))
    assert code == 1
    assert only_verdict(report)["error_name"] == "cipher_error"
