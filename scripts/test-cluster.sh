#!/usr/bin/env bash
# Checks a running docker-compose cluster: every node's health, role and term, that exactly
# one leader leads them all, that every party is enrolled and registered, and a smoke test
# that generates keys and signs with them (each signature verified by mpcctl against the key,
# independently of the cluster).
#   scripts/test-cluster.sh            Ed25519 and ECDSA (the first ECDSA key waits for the
#                                      parties' prime pairs: minutes on a fresh cluster)
#   scripts/test-cluster.sh --quick    Ed25519 only
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
cd "$MPC_ROOT"
have_docker || { echo "test-cluster: no Docker engine answers (docker info failed)" >&2; exit 1; }

fail() { echo "FAIL: $*" >&2; exit 1; }
s=$(any_running_coordinator) || fail "no coordinator container is running (scripts/start-cluster.sh)"

echo "== nodes"
status=$(mpcctl_in "$s" --output json cluster status) || fail "cluster status: $status"
python3 - "$status" <<'PY' || fail "the cluster is not in one piece"
import json, sys
st = json.loads(sys.argv[1])
nodes = st["nodes"]
for n in nodes:
    print(f"  coordinator-{n['id']}  {n['state']:<11} term {n['term']}  applied {n['last_applied']}  ready {n['ready']}")
leaders = [n for n in nodes if n["state"] == "leader"]
terms = {n["term"] for n in nodes}
problems = []
if len(leaders) != 1:
    problems.append(f"{len(leaders)} nodes say they lead")
if len(terms) != 1:
    problems.append(f"nodes disagree about the term: {sorted(t for t in terms if t is not None)}")
if not all(n["ready"] for n in nodes):
    problems.append("not every node is ready")
print(f"  leader: coordinator-{st['leader']}, term {st['term']}")
if problems:
    print("  " + "; ".join(problems), file=sys.stderr)
    sys.exit(1)
PY
for p in "${COORDINATORS[@]}" "${PARTIES[@]}"; do
  h=$(health_of "$p")
  printf '  %-14s %s\n' "$p" "$h"
  [[ $h == healthy ]] || fail "$p is $h"
done

echo "== parties"
parties=$(mpcctl_in "$s" --output json party list) || fail "party list: $parties"
python3 - "$parties" "${PARTIES[@]}" <<'PY' || fail "not every party is enrolled and registered"
import json, sys
listed = {p["party_id"]: p for p in json.loads(sys.argv[1])["parties"]}
ok = True
for name in sys.argv[2:]:
    p = listed.get(name)
    if p is None:
        print(f"  {name:<14} not enrolled", file=sys.stderr)
        ok = False
        continue
    print(f"  {name:<14} enrolled by {(p['enrolled_by'] or '?')[:16]}…  registered {p['registered']}  {p['status']}")
    ok = ok and p["registered"]
sys.exit(0 if ok else 1)
PY

json_field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

smoke() { # scheme sign-args...
  local scheme=$1; shift
  echo "== $scheme: 2-of-3 keygen and signing"
  local out key_id
  out=$(mpcctl_in "$s" --output json --timeout 30s keygen --scheme "$scheme" --threshold 2 --parties 3 \
    --description "test-cluster smoke" --timeout-seconds 900 --wait 15m) || fail "keygen $scheme: $out"
  key_id=$(json_field key_id <<<"$out")
  echo "  key $key_id"
  out=$(mpcctl_in "$s" --output json sign --key-id "$key_id" "$@" --wait 2m) || fail "sign $scheme: $out"
  [[ $(json_field verified <<<"$out") == True ]] || fail "signature not verified: $out"
  echo "  signature $(json_field signature <<<"$out") verified"
  LAST_KEY=$key_id
}

# An admin changes a key's policy (a second initiator: the admin's own key); the parties adopt
# it with the next signing, which the first initiator still approves alone.
policy_change() { # key_id sign-args...
  local key_id=$1; shift
  echo "== policy change of $key_id"
  local out initiator admin
  out=$(mpcctl_in "$s" --output json key get "$key_id") || fail "key get: $out"
  initiator=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["policy"]["initiators"][0])' <<<"$out")
  admin=$(mpcctl_in "$s" signing-key public /admin/admin-signing.key) || fail "signing-key public: $admin"
  out=$(mpcctl_in "$s" --output json key policy "$key_id" --initiators "$initiator,$admin" --approvals 1) ||
    fail "key policy: $out"
  python3 -c '
import json, sys
p = json.load(sys.stdin)["policy"]
assert p["version"] == 2 and len(p["initiators"]) == 2, p
' <<<"$out" || fail "the key does not hold policy version 2: $out"
  echo "  policy version 2: initiators ${initiator:0:16}…, ${admin:0:16}…"
  out=$(mpcctl_in "$s" --output json sign --key-id "$key_id" "$@" --wait 2m) || fail "sign under version 2: $out"
  [[ $(json_field verified <<<"$out") == True ]] || fail "signature not verified: $out"
  echo "  signed under version 2"
}

msg=0x$(printf 'test-cluster %s' "$(date +%s%N)" | od -An -tx1 | tr -d ' \n')
smoke schnorr-ed25519 --message "$msg"
if [[ ${1:-} != --quick ]]; then
  policy_change "$LAST_KEY" --message "$msg"
  smoke ecdsa-secp256k1 --message "$msg" --hash keccak256
fi
echo "cluster OK"
