"""`STORAGE_*` values refused by the settings with one line naming the variable."""

import os

import pytest

from api.settings import SettingsError, load_settings


@pytest.fixture(autouse=True)
def _no_storage_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in os.environ if name.startswith('STORAGE_')]:
        monkeypatch.delenv(name)


@pytest.mark.parametrize('host', ['127.0.0.1', '0.0.0.0', '::', '::1'])  # noqa: S104
def test_an_ip_address_is_a_host(monkeypatch: pytest.MonkeyPatch, host: str) -> None:
    monkeypatch.setenv('STORAGE_HOST', host)

    assert load_settings().host == host


@pytest.mark.parametrize('host', ['localhost', 'example.com', '', '127.0.0.1:80'])
def test_a_host_name_is_refused_in_one_line(monkeypatch: pytest.MonkeyPatch, host: str) -> None:
    monkeypatch.setenv('STORAGE_HOST', host)

    with pytest.raises(SettingsError) as raised:
        load_settings()

    assert str(raised.value) == (
        'invalid configuration: STORAGE_HOST: must be an IP address such as 127.0.0.1, '
        '0.0.0.0 or ::, not a host name'
    )


@pytest.mark.parametrize('variable', ['STORAGE_DATA_DIR', 'STORAGE_SQLITE_PATH'])
@pytest.mark.parametrize('value', ['', '  '])
def test_an_empty_path_is_refused_rather_than_taken_for_the_current_directory(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)

    with pytest.raises(SettingsError) as raised:
        load_settings()

    assert str(raised.value) == (
        f'invalid configuration: {variable}: must not be empty (unset it for the default)'
    )
