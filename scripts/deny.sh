#!/usr/bin/env bash
# cargo-deny over the workspace's dependency tree, as configured in deny.toml.
#
# - licenses, bans, sources: need only Cargo.lock and the crates' manifests (cargo's registry
#   cache); always checked, and any failure fails the run.
# - advisories (RustSec vulnerabilities, unsoundness, unmaintained crates, and yanked versions,
#   which cargo-deny checks together with them): need the RustSec advisory database, a git
#   repository that cargo-deny clones from GitHub into $CARGO_HOME/advisory-dbs. Checked when
#   it can be fetched; otherwise checked against a copy already on the machine if its newest
#   advisory is younger than deny.toml's maximum-db-staleness; otherwise skipped, saying so on
#   a line that starts with "cargo deny: advisories NOT checked". An unreachable database never fails the
#   run, and a skipped check is never reported as a passed one.
set -euo pipefail
cd "$(dirname "$0")/.."

# Inclusion graphs hidden: the duplicate-version warnings alone would print thousands of lines;
# `cargo deny check bans` (or licenses, sources) shows them when a diagnostic needs explaining.
cargo deny --locked check --hide-inclusion-graph bans licenses sources

dbs="${CARGO_HOME:-$HOME/.cargo}/advisory-dbs"
skip() {
  echo "cargo deny: advisories NOT checked: $*" >&2
  echo "cargo deny: licenses, bans and sources were checked; rerun scripts/deny.sh where GitHub is reachable for advisories" >&2
}

if timeout 300 cargo deny --log-level error fetch db; then
  cargo deny --locked check --hide-inclusion-graph advisories
  exit
fi

local_db=$(find "$dbs" -mindepth 2 -maxdepth 2 -name .git -path "$dbs/advisory-db-*" 2>/dev/null | head -n1)
local_db=${local_db%/.git}
if [[ -z $local_db ]]; then
  skip "the RustSec advisory database (https://github.com/RustSec/advisory-db) could not be fetched and no copy is in $dbs"
  exit 0
fi
# How old is that copy? Not by the file times cargo-deny itself reads (a failed `git fetch`
# rewrites .git/FETCH_HEAD, so the copy would look fetched just now), but by its newest
# advisory commit: the database gains commits every few days.
max_days=$(sed -n 's/^maximum-db-staleness *= *"P\([0-9]*\)D".*/\1/p' deny.toml)
[[ -n $max_days ]] || { echo "deny.toml: maximum-db-staleness must be written as \"P<days>D\"" >&2; exit 1; }
if ! newest=$(git --git-dir="$local_db/.git" show -s --format=%ct HEAD 2>/dev/null); then
  skip "the RustSec advisory database could not be fetched and $local_db is not a readable copy of it"
  exit 0
fi
age_days=$((($(date +%s) - newest) / 86400))
if ((age_days > max_days)); then
  skip "the RustSec advisory database could not be fetched and the copy in $local_db ends $age_days days ago, more than maximum-db-staleness ($max_days days, deny.toml)"
  exit 0
fi
echo "cargo deny: the RustSec advisory database could not be fetched; checking against the copy in $local_db (newest advisory commit $age_days days ago)" >&2
cargo deny --locked --offline check --hide-inclusion-graph advisories
