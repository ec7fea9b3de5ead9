"""Module profiles: the built-ins, the profile-file loader and its errors, the writer."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from bridged.config.module_profile_file import (
    load_profile_file,
    parse_profile_text,
    profile_yaml,
    resolve_profile,
)
from bridged.core.module_profile import (
    BC20,
    BC26,
    BC660K,
    BC950K,
    MODEL_CHOICES,
    OPEN_SITUATIONS,
    ModuleProfileError,
    detect_model,
)
from bridged.core.tls_suites import MODULE_CIPHER_SUITES


def test_builtins_say_what_bridged_assumes_today() -> None:
    assert (BC26.context_id, BC26.connect_ids) == (1, (0, 1, 2, 3, 4, 5))
    assert (BC26.max_send_hex, BC26.max_send_text) == (730, 1460)
    assert (BC26.max_recv_hex, BC26.max_recv_text) == (650, 1300)
    assert BC26.cipher_suites is MODULE_CIPHER_SUITES  # one definition, in core.tls_suites
    assert (BC26.prompt_delay, BC26.max_unconfirmed_sends, BC26.recv_quoted) == (0.5, 1, True)
    assert set(BC26.open_results) == set(OPEN_SITUATIONS)
    assert dataclasses.replace(BC20, name="bc26", title="BC26") == BC26


def test_a_profile_is_immutable_including_its_open_results() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        BC26.prompt_delay = 0.1  # type: ignore[misc]
    with pytest.raises(TypeError):
        BC26.open_results["wrong_ca"] = -9  # type: ignore[index]


def test_a_file_overrides_its_base_and_merges_open_results() -> None:
    profile = parse_profile_text(
        "base: bc20\nname: field-7\nprompt_delay: 0.2\nmax_unconfirmed_sends: 2\n"
        "recv_quoted: false\nopen_results: {client_cert_missing: -3}\n"
        "cipher_suites: [TLS_RSA_WITH_AES_128_CBC_SHA]\nssl_versions: [3, 4]\n"
    )
    assert profile.name == "field-7"
    assert (profile.prompt_delay, profile.max_unconfirmed_sends, profile.recv_quoted) == (
        0.2,
        2,
        False,
    )
    assert profile.open_results == {**BC20.open_results, "client_cert_missing": -3}
    assert [s.code for s in profile.cipher_suites] == [0x002F]
    assert profile.ssl_versions == (3, 4)
    assert profile.max_send_hex == BC20.max_send_hex


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("prompt_delay: 0.2\n", "base: must be one of bc26, bc20"),
        ("base: bc96\n", "base: must be one of"),
        ("base: bc26\npromt_delay: 0.2\n", "promt_delay: unknown field"),
        ("base: bc26\nprompt_delay: 9\n", "prompt_delay: must be a number of seconds in 0..5"),
        ("base: bc26\nprompt_delay: yes\n", "prompt_delay: must be a number"),
        ("base: bc26\nmax_unconfirmed_sends: 0\n", "max_unconfirmed_sends: must be in 1..16"),
        ("base: bc26\nrecv_quoted: 1\n", "recv_quoted: must be true or false"),
        ("base: bc26\nopen_results: {wrong_ca: 3}\n", "open_results: must be in -99..-1"),
        ("base: bc26\nopen_results: {refused: -2}\n", "unknown situation 'refused'"),
        ("base: bc26\ncipher_suites: [TLS_AES_128_GCM_SHA256]\n", "unknown suite(s)"),
        ("base: bc26\nconnect_ids: [0, 0]\n", "connect_ids: has duplicates"),
        ("base: bc26\nmax_send_text: 100\n", "max_send_text: smaller than max_send_hex"),
        ("- base: bc26\n", "must be a mapping"),
        ("base: [bc26\n", "not valid YAML"),
    ],
)
def test_invalid_files_are_refused_with_a_clear_message(text: str, message: str) -> None:
    with pytest.raises(ModuleProfileError) as caught:
        parse_profile_text(text, "p.yaml")
    assert message in str(caught.value)
    assert str(caught.value).startswith("p.yaml: invalid module profile")


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ModuleProfileError) as caught:
        parse_profile_text("base: bc26\nprompt_delay: -1\nrecv_quoted: 2\nfoo: 1\n")
    assert len(caught.value.problems) == 3


def test_written_file_loads_back_to_the_same_profile(tmp_path: Path) -> None:
    profile = dataclasses.replace(
        BC26,
        name="bc26-selftest",
        prompt_delay=0.075,
        recv_quoted=False,
        open_results={**BC26.open_results, "dns_failure": -7},
        cipher_suites=MODULE_CIPHER_SUITES[:4],
    )
    path = tmp_path / "p.yaml"
    path.write_text(profile_yaml(profile, BC26, ["from a test"]))
    text = path.read_text()
    assert text.startswith("# from a test\nbase: bc26\n")
    assert "max_send_hex" not in text  # only what differs
    assert load_profile_file(path) == profile


def test_missing_file_is_a_profile_error(tmp_path: Path) -> None:
    with pytest.raises(ModuleProfileError, match="cannot read the file"):
        load_profile_file(tmp_path / "nope.yaml")


def test_successors_say_what_their_note_says() -> None:
    # /work/shared/spec/bc660k-ssl-at.md
    for profile in (BC660K, BC950K):
        assert (profile.context_id, profile.connect_ids) == (0, (0,))
        assert (profile.max_send_hex, profile.max_send_text) == (1024, 1024)
        assert (profile.max_recv_hex, profile.max_recv_text) == (1400, 1400)
        assert [s.code for s in profile.cipher_suites] == [0x002F, 0x0035, 0x000A, 0x00FF]
        assert profile.ssl_versions == (1, 2, 3, 4)
        assert profile.unsigned_results
    assert (BC660K.label, BC950K.label) == ("BC660K-GL", "BC950K-GL")
    assert dataclasses.replace(BC950K, name="bc660k", title="BC660K-GL") == BC660K
    assert MODEL_CHOICES == ("bc26", "bc20", "bc660k", "bc950k", "auto")


@pytest.mark.parametrize(
    ("answer", "name"),
    [
        ("Quectel_Ltd\nQuectel_BC26\nRevision: BC26NBR01A10", "bc26"),
        ("Quectel\nBC660K-GL\nRevision: BC660KGLAAR01A03", "bc660k"),
        ("BC950K-GL", "bc950k"),
        ("Quectel_BC20", "bc20"),
    ],
)
def test_detect_model_reads_ati_and_cgmm_answers(answer: str, name: str) -> None:
    found = detect_model(answer)
    assert found is not None and found.name == name


def test_detect_model_names_nothing_it_does_not_know() -> None:
    assert detect_model("Quectel\nBG96\nRevision: BG96MAR02A07M1G") is None


def test_resolve_profile_by_model_file_or_auto(tmp_path: Path) -> None:
    assert resolve_profile("bc660k") is BC660K
    assert resolve_profile("auto") is None
    path = tmp_path / "p.yaml"
    path.write_text("base: bc660k\nprompt_delay: 0.3\n")
    loaded = resolve_profile("bc26", path)
    assert loaded is not None and loaded.context_id == 0 and loaded.prompt_delay == 0.3
