"""The plan as pull-request comments (K5), in the tfcmt/Atlantis tradition.

Every part starts with a hidden marker (`<!-- udeploy plan env=dev -->`) a bot finds its earlier
comment by, then the one-line result outside `<details>`, "(part i/n)" when the plan is split. The
first part lists the warnings next (an offline plan, `--force`, drift, blocked services with their
rule, failing guardrails); the collapsible block holds, in this order, a ```diff block per service
to deploy (`-` live, `+` desired: commit as short SHA and subject, image; the target as context),
the services not deployed (blocked, gated, unsupported) with their rule ID, the table of every
service, and the guardrail findings. A part never splits a diff block, a list item or a row.

Every string in a plan may be hostile (issue 9), and each is escaped for where it lands: markdown
text through `md_text` (backslashes, entities, inert `@mentions` and `#refs`), code spans only for
plain tokens, and values inside a diff block made printable and put after a fixed `- label ` so no
line can close the fence. The marker's scope is percent-encoded, so it cannot end the comment.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any

import attrs

from udeploy.engine.plan.model import Action, Plan, ServiceChange
from udeploy.engine.plan.records import EnvManifest
from udeploy.engine.plan.render import FIELD_CLIP, clip, failed_guardrails, printable

GITHUB_COMMENT_LIMIT = 65536
WARNINGS_SHARE = 4  # the warnings on top take at most 1/4 of the first part; the rest are counted
SHORT_SHA = 7
NAME_CLIP = 40  # the environment's name in the marker and the title (dev, prod)
NOT_DEPLOYED = (Action.BLOCKED, Action.GATED, Action.UNSUPPORTED)
UNSUPPORTED_RULE = "P8"  # an item with no executable target is planned, never deployed

MD_BACKSLASHED = re.compile(r"([\\`*_\[\]|~$])")  # inline markdown syntax (and GitHub math)
MD_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}  # raw HTML (`</details>`, `<!--`, `<img`) stays text
MD_REFERENCE = re.compile(r"([@#])(?=[\w-])")
MD_CODE_SAFE = re.compile(r"[A-Za-z0-9._/@:+=-]*")  # shown as a `code span` only when nothing in it is syntax


def md_text(value: Any) -> str:
    """A value as literal markdown text for one table cell or list item: one line, no raw HTML."""
    text = MD_BACKSLASHED.sub(r"\\\1", printable(str(value)))
    text = re.sub(r"[&<>]", lambda m: MD_ENTITIES[m.group()], text)
    # GitHub links `@user`, `@org/team` and `#123` in comment text: a word joiner keeps them inert.
    return MD_REFERENCE.sub("\\1\u2060", text)


def md_code(value: Any) -> str:
    text = str(value)
    return f"`{text}`" if text and MD_CODE_SAFE.fullmatch(text) else md_text(text)


def marker(plan: Plan) -> str:
    """The hidden line a bot finds its comment by: `<!-- udeploy plan env=dev -->`, or `file` for a
    local-manifest plan. The name is percent-encoded and never holds `--`, so it cannot end the comment."""
    if plan.environment is None:
        return "<!-- udeploy plan file -->"
    name = urllib.parse.quote(clip(plan.environment.name, NAME_CLIP), safe="").replace("--", "-%2D")
    return f"<!-- udeploy plan env={name} -->"


def result_line(plan: Plan) -> str:
    """The counts a reviewer reads first: deploy and unchanged always, the others when present."""
    c = plan.counts()
    stopped = [f"{c[a.value]} {a.value}" for a in NOT_DEPLOYED if c[a.value]]
    return ", ".join([f"{c['deploy']} to deploy", f"{c['noop']} unchanged", *stopped])


def rule_of(s: ServiceChange) -> str:
    """The requirement that keeps a service from deploying."""
    return s.blocked.rule if s.blocked else UNSUPPORTED_RULE


# --- the parts ------------------------------------------------------------------------------------


@attrs.frozen
class Section:
    title: str  # its heading inside <details>, repeated in each part it continues in
    head: tuple[str, ...] = ()  # lines after the heading (a table's header rows)
    spaced: bool = False  # a blank line after each unit (diff blocks stand apart; rows and list items do not)


CHANGES = Section("**Changes**", spaced=True)
STOPPED = Section("**Not deployed** (blocked, gated, unsupported: the rule that stops each)")
TABLE = Section("**All services**", ("| service | action | commit | consumer | blocked | reason |",
                                     "|---|---|---|---|---|---|"))
SECTIONS = (CHANGES, STOPPED, TABLE)


def to_markdown_parts(plan: Plan, max_chars: int = GITHUB_COMMENT_LIMIT) -> list[str]:
    """The plan as one or more PR comments, each at most `max_chars` and well-formed on its own."""
    result = result_line(plan)  # once: it counts every service
    head = f"{marker(plan)}\n**udeploy plan{_for(plan)}** — {result}"
    where = md_text(clip(_source(plan), 3 * FIELD_CLIP))
    tail = _guardrail_tail(plan, max_chars // 4)
    sections = sum(len(_section_text(s)) + 2 for s in SECTIONS)
    # the title (with " (part i/n)"), the details wrapper, the section headings and the guardrail tail
    fixed = len(head) + len(where) + 160 + sections + len(tail)
    if max_chars - fixed <= 200:
        raise ValueError(f"--max-comment-chars {max_chars} is too small for one plan comment")
    budget = max_chars - fixed
    warnings = _warnings(plan, max(budget // WARNINGS_SHARE, 0))
    first = budget - len(warnings)
    units = [(section, _fit(render, first)) for section, render in _units(plan)]
    chunks = list(_chunk(units, first, budget))
    total = len(chunks)
    parts: list[str] = []
    for i, chunk in enumerate(chunks, 1):
        numbered = f" (part {i}/{total})" if total > 1 else ""
        top = [f"{head}{numbered}", "", where, ""]
        if i == 1 and warnings:
            top += [warnings, ""]
        body = _body(chunk) + ([tail] if i == total else [])
        label = f"Plan details{numbered}"
        parts.append("\n".join([*top, f"<details><summary>{label}</summary>", "", *body, "", "</details>", ""]))
    return parts


def _for(plan: Plan) -> str:
    if plan.environment is None:
        return " (local manifest)"
    return f" for {md_code(clip(plan.environment.name, NAME_CLIP))}"


def _source(plan: Plan) -> str:
    m = plan.manifest
    if isinstance(m, EnvManifest):
        return f"from {clip(m.ref, FIELD_CLIP)} @ {m.commit[:12]} (deploy.json blob {str(m.deploy_blob)[:12]})"
    return f"from the local manifest {clip(m.file, FIELD_CLIP)}"


def _section_text(section: Section) -> str:
    return "\n".join([section.title, "", *section.head])


def _body(chunk: Sequence[tuple[Section, str]]) -> list[str]:
    """A part's sections in order, each heading once before its first unit in this part."""
    lines: list[str] = []
    current: Section | None = None
    for section, unit in chunk:
        if section is not current:
            if current is not None and not current.spaced:
                lines.append("")
            lines += [section.title, ""] + ([*section.head] if section.head else [])
            current = section
        lines.append(unit)
        if section.spaced:
            lines.append("")
    if not chunk:
        lines.append("No services.")
    return lines


def _chunk(units: Iterable[tuple[Section, str]], first: int, budget: int) -> Iterable[list[tuple[Section, str]]]:
    """Units grouped so each group's text fits: `first` for the first part (it carries the warnings),
    `budget` for the others; a unit is never split."""
    chunk: list[tuple[Section, str]] = []
    size, room = 0, first
    for section, unit in units:
        if chunk and size + len(unit) + 2 > room:
            yield chunk
            chunk, size, room = [], 0, budget
        chunk.append((section, unit))
        size += len(unit) + 2
    yield chunk


def _fit(render: Callable[[int], str], budget: int) -> str:
    """A unit whose hostile fields are clipped until it fits `budget`: fields are cut, never the
    unit, so a row keeps its columns and a diff block its fences."""
    cap = FIELD_CLIP
    text = render(cap)
    while len(text) >= budget and cap > 1:
        cap //= 2
        text = render(cap)
    return text


def _units(plan: Plan) -> Iterable[tuple[Section, Callable[[int], str]]]:
    for s in plan.services:
        if s.action is Action.DEPLOY:
            yield CHANGES, partial(_diff_block, s, plan.refreshed)
    for s in plan.services:
        if s.action in NOT_DEPLOYED:
            yield STOPPED, partial(_stopped_item, s)
    for s in plan.services:
        yield TABLE, partial(_row, s)


# --- the units ------------------------------------------------------------------------------------


def _diff_block(s: ServiceChange, refreshed: bool, cap: int) -> str:
    """One service to deploy: a line naming it and why, then a fenced diff of live and desired."""
    title = f"{md_code(clip(s.id, cap))} **deploy**: {md_text(clip(s.reason, cap))}"
    source = s.item.artifact_consumer.source
    desired_commit = _commit(s.resolved_commit, source.subject, cap)
    lines: list[str] = []
    live = s.live
    if live is None:
        lines.append("# live state not read (--no-refresh)" if not refreshed else "# live state not observed")
        lines += [_line("+", "commit", desired_commit, cap), _line("+", "image", _image(s), cap)]
    elif live.commit is None and live.image is None:
        lines.append(_line("-", "live", f"{live.presence.value} on {live.target}", cap))
        lines += [_line("+", "commit", desired_commit, cap), _line("+", "image", _image(s), cap)]
    else:
        lines += _changed("commit", _commit(live.commit, live.subject, cap) if live.commit else "none", desired_commit,
                          cap)
        lines += _changed("image", live.image or "none", _image(s), cap)
    lines.append(_line(" ", "target", _target(s), cap))
    return "\n".join([title, "```diff", *lines, "```"])


def _changed(label: str, live: str, desired: str, cap: int) -> list[str]:
    if live == desired:
        return [_line(" ", label, desired, cap)]
    return [_line("-", label, live, cap), _line("+", label, desired, cap)]


def _line(sign: str, label: str, value: str, cap: int) -> str:
    """A diff line: the sign and a fixed label come first, so no value can close the fence."""
    return f"{sign} {label:<7} {printable(clip(value, cap))}"


def _commit(sha: str, subject: str | None, cap: int) -> str:
    short = sha[:SHORT_SHA]
    return f"{short} {clip(subject, cap)}" if subject else short


def _image(s: ServiceChange) -> str:
    t = s.item.target
    image = s.item.artifact_consumer.registry_image
    image = image or (t.compose.image if t.compose else None) or (t.k3s.import_image if t.k3s else None)
    return image or "none"


def _target(s: ServiceChange) -> str:
    t = s.item.target
    if t.compose:
        what = f"compose {t.compose.project}/{t.compose.service}"
    elif t.k3s:
        what = f"k3s {t.namespace}/{','.join(t.k3s.stamp_deployments)}"
    else:
        what = s.item.artifact_consumer.consumer_kind
    return f"{t.host}: {what}" if t.host else what


def _stopped_item(s: ServiceChange, cap: int) -> str:
    why = f" ({md_code(clip(str(s.blocked), cap))})" if s.blocked else ""
    return (f"- {md_code(clip(s.id, cap))} **{s.action.value}**, rule **{md_text(rule_of(s))}**{why}: "
            f"{md_text(clip(s.reason, cap))}")


def _row(s: ServiceChange, cap: int) -> str:
    kind = s.item.artifact_consumer.consumer_kind
    blocked = str(s.blocked) if s.blocked else ""
    cells = [md_code(clip(s.id, cap)), f"**{s.action.value}**", md_code(s.resolved_commit[:12]),
             md_text(clip(str(kind), cap)), md_text(clip(blocked, cap)), md_text(clip(s.reason, cap))]
    return "| " + " | ".join(cells) + " |"


# --- warnings and guardrails ----------------------------------------------------------------------


def warning_lines(plan: Plan) -> Iterable[str]:
    """Everything a reviewer should read before the diff, most general first."""
    if not plan.refreshed:
        yield ("Planned offline (`--no-refresh`): live state was not read, so each diff shows the desired side "
               "only and a service already at its commit is listed as a deploy; applying this plan does not "
               "compare live state first.")
    if plan.forced:
        yield "Planned with `--force`: services whose live commit already matches are deployed again."
    for d in plan.diagnostics:
        yield f"{md_text(clip(d.code, FIELD_CLIP))}: {md_text(clip(d.summary, FIELD_CLIP))}"
    for s in plan.services:
        if s.drift:
            yield f"Drift on {md_code(clip(s.id, FIELD_CLIP))}: {md_text(clip(s.drift, FIELD_CLIP))}"
    for s in plan.services:
        if s.action is Action.BLOCKED:
            yield (f"Blocked: {md_code(clip(s.id, FIELD_CLIP))} by rule **{md_text(rule_of(s))}** "
                   f"({md_code(clip(str(s.blocked), FIELD_CLIP))})")
    for g in plan.guardrails:
        if not g.passed:
            yield (f"Guardrail **{md_text(clip(g.id, FIELD_CLIP))}** {md_text(clip(g.name, FIELD_CLIP))} failed: "
                   f"{len(g.findings)} finding(s), listed at the end")


def _warnings(plan: Plan, budget: int) -> str:
    """The warnings as a list under a heading, cut to `budget` with a count of the rest."""
    lines: list[str] = []
    size = 0
    found = list(warning_lines(plan))
    for i, text in enumerate(found):
        line = f"- {text}"
        if size + len(line) + 1 > budget - 100:  # keep room for the "more" line
            lines.append(f"- … and {len(found) - i} more (every service is in the details below)")
            break
        lines.append(line)
        size += len(line) + 1
    return "\n".join(["**⚠ Warnings**", "", *lines]) if lines else ""


def _guardrail_tail(plan: Plan, budget: int) -> str:
    findings = failed_guardrails(plan)
    lines = ["", "**Guardrails:** " + (f"{len(findings)} finding(s)" if findings else
                                       f"all {len(plan.guardrails)} passed")]
    size = sum(len(line) + 1 for line in lines)
    for i, finding in enumerate(findings):
        line = "- " + md_text(clip(finding, FIELD_CLIP))
        if size + len(line) + 1 > budget - 80:  # keep room for the "more" line
            lines.append(f"- … and {len(findings) - i} more (see `udeploy show --format json`)")
            break
        lines.append(line)
        size += len(line) + 1
    return "\n".join(lines)
