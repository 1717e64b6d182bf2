"""Engine URLs as a chute's `url` gives them, and the settings around them."""

import pytest
from pydantic import ValidationError

from runtime.config.engine_url import check_url, engine_address, in_clear_over_a_network
from runtime.config.settings import ChuteSettings


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://engine:8000", "write https://host:port"),
        ("engine:8000", "write https://host:port"),
        ("http://:8000", "write http://host:port"),
        ("https://:8000", "write https://host:port"),
        ("http://engine:99999", "port"),
        ("https://engine:8000/v1", "without a path"),
        ("http://engine:8000?x=1", "without a path"),
    ],
)
def test_bad_urls_are_refused_naming_what_is_wrong(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_url(url)


def test_a_url_is_dialled_at_its_root_with_its_scheme() -> None:
    check_url("http://10.0.0.5:8000/")
    assert engine_address("http://10.0.0.5:8000/") == "http://10.0.0.5:8000"
    check_url("https://engine.internal:8443")
    assert engine_address("https://engine.internal:8443/") == "https://engine.internal:8443"


@pytest.mark.parametrize(
    ("url", "clear"),
    [
        ("http://10.0.0.5:8000", True),
        ("http://engine.internal:8000", True),
        ("http://127.0.0.1:8000", False),
        ("http://[::1]:8000", False),
        ("http://localhost:8000", False),
        ("https://10.0.0.5:8000", False),
    ],
)
def test_plain_http_off_this_machine_is_in_clear(url: str, clear: bool) -> None:
    assert in_clear_over_a_network(url) is clear


def test_one_url_string_is_one_replica_and_the_model_defaults_to_the_name() -> None:
    chute = ChuteSettings.model_validate({"name": "tiny", "url": "https://engine:8443"})
    assert chute.url == ("https://engine:8443",) and chute.model == "tiny"
    assert chute.served_name == "tiny"


def test_a_local_chute_still_needs_its_model() -> None:
    with pytest.raises(ValidationError, match="model"):
        ChuteSettings.model_validate({"name": "tiny"})


def test_a_ca_file_is_for_an_https_engine(tmp_path: object) -> None:
    with pytest.raises(ValidationError, match="https://"):
        ChuteSettings.model_validate({"name": "t", "url": "http://e:80", "ca_file": "ca.pem"})
    with pytest.raises(ValidationError, match="give url"):
        ChuteSettings.model_validate({"model": "m", "ca_file": "ca.pem"})
    chute = ChuteSettings.model_validate({"name": "t", "url": "https://e:443", "ca_file": "ca.pem"})
    assert str(chute.ca_file) == "ca.pem"
