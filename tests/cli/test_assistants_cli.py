"""Assistants users cannot pick (`create --no-secretary`): listed apart, refused wherever a
user would get one, managed (versions, rollouts, catalog files) like secretaries."""

from __future__ import annotations

from pathlib import Path

from tests.cli.conftest import Run, as_json, failed, ok


def test_an_assistant_is_not_offered_to_users_but_is_managed_alike(
    cli: Run, tmp_path: Path
) -> None:
    ok(cli("create", "alice", "--model", "echo", "--prompt", "A.", "--default"))
    made = ok(cli("create", "researcher", "--model", "echo", "--prompt", "R.", "--no-secretary"))
    assert made.stdout.startswith("Created assistant researcher")
    assert [s["name"] for s in as_json(cli("list", "--json"))] == ["alice"]
    every = as_json(cli("list", "--assistants", "--json"))
    assert [(s["name"], s["is_secretary"]) for s in every] == [
        ("alice", True),
        ("researcher", False),
    ]
    shown = ok(cli("list", "--assistants")).stdout
    assert "researcher" in shown and "(assistant)" in shown
    assert as_json(cli("show", "researcher", "--json"))["is_secretary"] is False

    ok(cli("users", "add", "42"))
    failed(cli("assign", "42", "researcher"), 1, "assistant users cannot pick")
    failed(cli("set-default", "researcher"), 1, "assistant users cannot pick")
    failed(
        cli("create", "x", "--model", "echo", "--prompt", "X.", "--default", "--no-secretary"),
        1,
        "cannot be the default",
    )
    assert as_json(cli("current", "42", "--json"))["secretary"]["name"] == "alice"

    # Versions and rollouts as for a secretary.
    ok(cli("update", "researcher", "--prompt", "R2.", "--draft"))
    ok(cli("rollout", "start", "researcher", "--percent", "50"))
    assert len(as_json(cli("versions", "researcher", "--json"))) == 2
    ok(cli("rollout", "abort", "researcher"))

    # A catalog file round-trips it; it cannot turn into a secretary.
    exported = ok(cli("export")).stdout
    assert "secretary: false" in exported
    path = tmp_path / "catalog.yaml"
    path.write_text(exported)
    assert as_json(cli("plan", str(path), "--json")) == {"changes": []}
    path.write_text(exported.replace("  secretary: false\n", ""))
    failed(cli("apply", str(path), "--yes"), 1, "cannot change")
    path.write_text(
        exported.replace("default: true", "default: false")
        + "- name: helper\n  secretary: false\n  default: true\n  model: echo\n  prompt: H.\n"
    )
    failed(cli("apply", str(path), "--yes"), 1, "cannot be the default")
