"""Hypothesis: malformed deploy.json documents never crash the CLI (issue 3, M1, M2, M6).

Every generated document goes through `udeploy plan --file ... --no-refresh`; the answer is one
JSON document on stdout, either a plan or `{"error": {...}}` with a known code, never a traceback
or an `internal-error`.
"""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Cli
from tests.sample_repo import SampleRepo

KEYS = ["id", "repo", "commitId", "ports", "namespace", "ci", "services", "environments", "schemaVersion",
        "dev", "prod", "dev-v1", "health", "dockerfile", ""]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.text(max_size=8),
                    st.sampled_from(["backend-core", "abc1234", "0" * 40, "https://github.com/pikasTech/unidesk"]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.sampled_from(KEYS), inner, max_size=4)),
                      max_leaves=12)
documents = st.one_of(
    values,
    st.fixed_dictionaries({"schemaVersion": st.sampled_from([1, 2, 3, "2", None]),
                           "services": values, "environments": values}),
    st.fixed_dictionaries({"schemaVersion": st.just(2), "environments": st.dictionaries(
        st.sampled_from(["dev", "prod", "dev-v1"]), st.dictionaries(st.sampled_from(KEYS), values, max_size=3),
        max_size=2)}),
)
KNOWN_CODES = {"manifest-invalid", "forbidden-service-field", "unknown-environment", "service-not-found",
               "catalog-entry-missing", "commit-not-found", "commit-ambiguous", "git-error", "usage",
               "policy-refused", "repo-url-refused"}


def _assert_clean(cli: Cli, path: Path) -> None:
    r = cli("plan", "--file", str(path), "--no-refresh")
    assert "Traceback" not in r.stdout + r.stderr
    doc = json.loads(r.stdout)
    if r.exit_code == 0:
        assert "services" in doc
    else:
        assert r.exit_code in (1, 3)
        assert doc["error"]["code"] in KNOWN_CODES, doc


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=documents)
def test_M1_M2_M6_malformed_documents_get_a_json_error(shared_sample: tuple[SampleRepo, Cli], doc: object) -> None:
    sample, cli = shared_sample
    path = sample.workdir / "fuzz.json"
    path.write_text(json.dumps(doc))
    _assert_clean(cli, path)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=64))
def test_non_json_bytes_get_a_json_error(shared_sample: tuple[SampleRepo, Cli], raw: bytes) -> None:
    sample, cli = shared_sample
    path = sample.workdir / "fuzz.bin"
    path.write_bytes(raw)
    _assert_clean(cli, path)
