#!/usr/bin/env python3
"""Every workspace crate gets at least the workspace's lints.

A crate either inherits [workspace.lints] (`[lints] workspace = true`) or, when it is held to
more lints than the workspace, repeats the workspace's table in its own [lints] (Cargo cannot
extend an inherited table). This check fails when such a copy lacks an entry of the workspace
table or sets it to a weaker level, and when a crate has no [lints] at all.
"""

import pathlib
import sys
import tomllib

LEVELS = {"allow": 0, "expect": 0, "warn": 1, "deny": 2, "forbid": 3}
root = pathlib.Path(__file__).resolve().parent.parent


def level(entry):
    return LEVELS[entry if isinstance(entry, str) else entry["level"]]


workspace = tomllib.loads((root / "Cargo.toml").read_text())["workspace"]
wanted = workspace.get("lints", {})
problems = []
for member in workspace["members"]:
    manifest = root / member / "Cargo.toml"
    lints = tomllib.loads(manifest.read_text()).get("lints")
    if lints is None:
        problems.append(f"{manifest}: no [lints]; add `[lints] workspace = true`")
        continue
    if lints.get("workspace") is True:
        continue
    for tool, table in wanted.items():
        own = lints.get(tool, {})
        for name, entry in table.items():
            if name not in own:
                problems.append(f"{manifest}: [lints.{tool}] lacks {name} (workspace: {entry})")
            elif level(own[name]) < level(entry):
                problems.append(
                    f"{manifest}: [lints.{tool}] {name} = {own[name]} is weaker than the "
                    f"workspace's {entry}"
                )
for p in problems:
    print(p, file=sys.stderr)
sys.exit(1 if problems else 0)
