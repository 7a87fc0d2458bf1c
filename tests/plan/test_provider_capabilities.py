"""Issue 10: the engine reaches git, registry reads, image publishing and mirroring only through
capabilities of providers it looks up by name (`udeploy.providers` entry points), never by import."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from udeploy.engine.load.catalog import Catalog, parse_catalog, read_catalog
from udeploy.engine.load.source import WorkTreeReader
from udeploy.engine.provider_api import (
    ArtifactReader,
    ImageMirror,
    ImagePublisher,
    ProviderCapabilityMissing,
    SourceReader,
    capable,
    image_mirror,
    image_publisher,
    registry_reader,
    source_reader,
)
from udeploy.providers.registry import RegistryProvider

SAMPLE = Path(__file__).resolve().parents[2] / "fixtures" / "unidesk-sample"


@pytest.fixture
def catalog() -> Catalog:
    return parse_catalog(json.loads((SAMPLE / "config.json").read_text()),
                         json.loads((SAMPLE / "CI.json").read_text()))


def test_the_source_reader_is_the_git_provider_found_by_name() -> None:
    reader = source_reader()
    assert isinstance(reader, SourceReader) and type(reader).name == "git"


def test_registry_capabilities_come_from_the_registry_provider(catalog: Catalog) -> None:
    reader, publisher, mirror = registry_reader(catalog), image_publisher(catalog), image_mirror(catalog)
    assert isinstance(reader, ArtifactReader) and isinstance(publisher, ImagePublisher)
    assert isinstance(mirror, ImageMirror)
    assert all(isinstance(p, RegistryProvider) for p in (reader, publisher, mirror))
    assert isinstance(publisher, RegistryProvider) and publisher.registry == catalog.registry
    assert publisher.builder is not None and publisher.builder.id == catalog.builder_host  # CI.json builder.host


def test_a_provider_without_the_capability_is_refused_by_name() -> None:
    with pytest.raises(ProviderCapabilityMissing, match="SourceReader"):
        capable(object(), SourceReader, "no-git")  # type: ignore[type-abstract]


def test_the_catalog_is_read_by_one_function(catalog: Catalog) -> None:
    assert read_catalog(WorkTreeReader(SAMPLE)) == catalog
