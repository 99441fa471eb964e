"""The `CTI_*` environment laid over the config file (pydantic-settings), list items included.

Imported by `config.load` only when a `CTI_<key>` variable is set: pydantic-settings costs
about 40 ms to import, which every `cti` command would otherwise pay.
"""

from __future__ import annotations

from typing import Any

from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from cti_cli.config import Config, _overlay


class EnvOverlay(BaseSettings, Config):
    """`Config` with `CTI_*` environment variables taking precedence over the file."""

    model_config = SettingsConfigDict(
        env_prefix="CTI_", env_nested_delimiter="__", extra="forbid", validate_assignment=True
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (_FileThenEnv(settings_cls, init_settings, env_settings),)


class _FileThenEnv(PydanticBaseSettingsSource):
    """The file's data with the environment laid over it, list items included:
    `CTI_WEBHOOKS__0__SECRET` patches the first `[[webhooks]]` of the file (systemd gives
    secrets per item), where pydantic-settings alone would replace the whole list."""

    def __init__(
        self,
        settings_cls: type[BaseSettings],
        file: PydanticBaseSettingsSource,
        env: PydanticBaseSettingsSource,
    ) -> None:
        super().__init__(settings_cls)
        self.file = file
        self.env = env

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return _overlay(self.file(), self.env(), "CTI")
