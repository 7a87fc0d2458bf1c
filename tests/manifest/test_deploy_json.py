"""deploy.json parsing without git: M1, M2, M6, M8 as pure data rules."""

from __future__ import annotations

import copy

import pytest

from udeploy.engine.errors import ForbiddenServiceField, ManifestInvalid, UnknownEnvironment
from udeploy.engine.load.manifest import FORBIDDEN_FIELDS, parse_deploy

SHA = "0c3cdb4ee06a23361ed511a2da033d67b53d16f4"
ENTRY = {"id": "backend-core", "repo": "https://github.com/pikasTech/unidesk", "commitId": "348c644"}
V2 = {"schemaVersion": 2, "environments": {
    "prod": {"services": [{"id": "code-queue", "repo": ENTRY["repo"], "commitId": SHA}]},
    "dev": {"services": [ENTRY]}}}


def test_M1_v2_selects_the_environment() -> None:
    m = parse_deploy(V2, source="deploy.json", environment="dev")
    assert m.schema_version == 2
    assert [(s.id, s.commit_id) for s in m.services] == [("backend-core", "348c644")]
    assert m.services[0].path == "deploy.json#$.environments.dev.services[0]"


def test_M1_v1_is_refused_in_environment_mode() -> None:
    v1 = {"schemaVersion": 1, "services": [ENTRY]}
    with pytest.raises(ManifestInvalid, match="only local-manifest mode") as err:
        parse_deploy(v1, source="deploy.json", environment="prod")
    assert err.value.path == "deploy.json#$.schemaVersion"


def test_M1_v1_is_accepted_in_local_mode() -> None:
    m = parse_deploy({"schemaVersion": 1, "services": [ENTRY]}, source="d.json", environment=None)
    assert m.schema_version == 1 and m.services[0].id == "backend-core"


@pytest.mark.parametrize("field", sorted(FORBIDDEN_FIELDS))
def test_M2_every_forbidden_field_is_refused_by_name(field: str) -> None:
    doc = copy.deepcopy(V2)
    doc["environments"]["dev"]["services"][0][field] = "x"
    with pytest.raises(ForbiddenServiceField) as err:
        parse_deploy(doc, source="deploy.json", environment="dev")
    assert err.value.path == f"deploy.json#$.environments.dev.services[0].{field}"
    assert err.value.details["service"] == "backend-core"
    assert err.value.details["field"] == field
    assert field in err.value.message


def test_M2_forbidden_field_in_the_other_environment_is_refused_too() -> None:
    doc = copy.deepcopy(V2)
    doc["environments"]["prod"]["services"][0]["ports"] = [8080]
    with pytest.raises(ForbiddenServiceField, match="port"):
        parse_deploy(doc, source="deploy.json", environment="dev")


def test_M2_unknown_entry_field_is_a_schema_error_with_its_path() -> None:
    doc = copy.deepcopy(V2)
    doc["environments"]["dev"]["services"][0]["color"] = "blue"
    with pytest.raises(ManifestInvalid, match="color") as err:
        parse_deploy(doc, source="deploy.json", environment="dev")
    assert err.value.path == "deploy.json#$.environments.dev.services[0]"


def test_M6_ci_declaration_is_allowed_under_dev_and_is_not_a_service() -> None:
    doc = copy.deepcopy(V2)
    doc["environments"]["dev"]["ci"] = {"repo": ENTRY["repo"], "scriptPath": "scripts/ci/run.sh", "timeoutMs": 1000}
    m = parse_deploy(doc, source="deploy.json", environment="dev")
    assert m.ci is not None and m.ci.script_path == "scripts/ci/run.sh"
    assert [s.id for s in m.services] == ["backend-core"]


@pytest.mark.parametrize("where,key", [("dev", "lanes"), ("prod", "ci")])
def test_M6_any_other_non_service_key_is_refused(where: str, key: str) -> None:
    doc = copy.deepcopy(V2)
    doc["environments"][where][key] = {"repo": "r", "scriptPath": "s", "timeoutMs": 1}
    with pytest.raises(ManifestInvalid, match=key):
        parse_deploy(doc, source="deploy.json", environment="dev")


def test_M6_ci_declaration_needs_its_fields() -> None:
    doc = copy.deepcopy(V2)
    doc["environments"]["dev"]["ci"] = {"repo": ENTRY["repo"]}
    with pytest.raises(ManifestInvalid, match="scriptPath"):
        parse_deploy(doc, source="deploy.json", environment="dev")


@pytest.mark.parametrize("env", ["dev-v1", "dev-master", "staging", "release/v1"])
def test_M8_undeclared_environment_names_are_refused(env: str) -> None:
    with pytest.raises(UnknownEnvironment):
        parse_deploy(V2, source="deploy.json", environment=env)


def test_M8_an_undeclared_lane_inside_deploy_json_is_refused() -> None:
    doc = copy.deepcopy(V2)
    doc["environments"]["dev-v1"] = {"services": []}
    with pytest.raises(ManifestInvalid, match="dev-v1"):
        parse_deploy(doc, source="deploy.json", environment="dev")


def test_duplicate_service_in_one_environment_is_refused() -> None:
    doc = copy.deepcopy(V2)
    doc["environments"]["dev"]["services"].append(dict(ENTRY))
    with pytest.raises(ManifestInvalid, match="twice") as err:
        parse_deploy(doc, source="deploy.json", environment="dev")
    assert err.value.path.endswith("services[1]")


@pytest.mark.parametrize("bad", ["xyz", "12345", "G" * 40, SHA + "0"])
def test_M5_commit_ids_that_are_not_hex_shas_are_schema_errors(bad: str) -> None:
    doc = copy.deepcopy(V2)
    doc["environments"]["dev"]["services"][0]["commitId"] = bad
    with pytest.raises(ManifestInvalid, match="commitId"):
        parse_deploy(doc, source="deploy.json", environment="dev")


@pytest.mark.parametrize("version", [True, False, "2", 2.5, None])
def test_M1_schema_version_must_be_the_integer_1_or_2(version: object) -> None:
    """Found by hypothesis: JSON `true` equals 1 in Python and must not pass as version 1."""
    with pytest.raises(ManifestInvalid, match="schemaVersion"):
        parse_deploy({"schemaVersion": version, "services": [ENTRY]}, source="d.json", environment=None)
