"""A settings tree read from flat environment names.

The platform names its settings flat (`PORT`, `MONGODB_URL`, `LLM_MAX_CONCURRENCY`); the service reads
them into a tree of sections (`settings.server.port`). A `Section` is a frozen model whose fields' aliases
are those names. A `SectionedSettings` holds one section per field and reads every section's names from
the environment and the `.env` file (the environment first); it also takes them as keyword arguments,
flat (`PORT=9000`) or as whole sections (`server=ServerSettings(...)`). A name belongs to exactly one
section: one declared twice is an error when the class is defined.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)


def _empty_is_unset(value: object) -> object:
    return None if value == "" else value


EMPTY_IS_UNSET = BeforeValidator(_empty_is_unset)
"""For optional settings: `NAME=` (as `.env.example` writes it) means unset."""


class Section(BaseModel):
    """One part of the settings tree; each field's alias is its environment name."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @classmethod
    def environment_names(cls) -> dict[str, FieldInfo]:
        return {field.alias: field for field in cls.model_fields.values() if field.alias}


class _SectionNames(PydanticBaseSettingsSource):
    """One source (the environment, or the `.env` file) read under the sections' names."""

    def __init__(
        self, settings_cls: type[BaseSettings], source: EnvSettingsSource, sections: dict[str, type[Section]]
    ) -> None:
        super().__init__(settings_cls)
        self._values = source.env_vars
        self._case_sensitive = bool(source.case_sensitive)
        self._sections = sections

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        """Unused: `__call__` reads whole sections."""
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for section_name, section in self._sections.items():
            values = {
                name: self._values[key]
                for name in section.environment_names()
                if (key := name if self._case_sensitive else name.lower()) in self._values
            }
            if values:
                found[section_name] = values
        return found


class SectionedSettings(BaseSettings):
    """Settings whose every field is a `Section`."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="forbid", frozen=True)
    _sections: ClassVar[dict[str, type[Section]]] = {}

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        sections: dict[str, type[Section]] = {}
        owners: dict[str, str] = {}
        for name, field in cls.model_fields.items():
            section = field.annotation
            if not (isinstance(section, type) and issubclass(section, Section)):
                raise TypeError(f"{cls.__name__}.{name} is not a settings section")
            for environment_name in section.environment_names():
                if environment_name in owners:
                    raise TypeError(
                        f"{environment_name} is declared twice: in {cls.__name__}.{owners[environment_name]} "
                        f"and {cls.__name__}.{name}"
                    )
                owners[environment_name] = name
            sections[name] = section
        cls._sections = sections

    @classmethod
    def sections(cls) -> dict[str, type[Section]]:
        return dict(cls._sections)

    @classmethod
    def environment_names(cls) -> dict[str, FieldInfo]:
        """Every setting of the tree by its environment name."""
        return {
            name: field
            for section in cls._sections.values()
            for name, field in section.environment_names().items()
        }

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        assert isinstance(env_settings, EnvSettingsSource)
        assert isinstance(dotenv_settings, EnvSettingsSource)
        return (
            init_settings,
            _SectionNames(settings_cls, env_settings, cls._sections),
            _SectionNames(settings_cls, dotenv_settings, cls._sections),
        )

    @model_validator(mode="before")
    @classmethod
    def _names_into_sections(cls, data: Any) -> Any:
        """Flat names (keyword arguments, `with_values`) go into their sections, over what those hold."""
        if not isinstance(data, dict):
            return data
        values = dict(data)
        for section_name, section in cls._sections.items():
            named = {name: values.pop(name) for name in section.environment_names() if name in values}
            if not named:
                continue
            given = values.get(section_name, {})
            if isinstance(given, Section):
                given = given.model_dump(by_alias=True)
            values[section_name] = {**given, **named}
        return values

    def with_values(self, **values: Any) -> Self:
        """A copy with some settings replaced, by their environment names, checked as when read."""
        return self.model_validate({**self.model_dump(by_alias=True), **values})
