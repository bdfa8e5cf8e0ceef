#!/usr/bin/env python3
"""Checks that the deployments say the same thing: docker-compose.yml, the Kubernetes
manifests (deploy/k8s) and the monitoring files (deploy/prometheus, deploy/grafana).

  check_deploy.py [--render FILE]

Compares the images, commands, ports, settings (MPC_* environment), probes, data and secret
mounts of compose's coordinators and parties with the StatefulSets; checks the manifests'
security settings (non-root, read-only root, no capabilities, requests and limits, probes,
secrets only as files); checks that Prometheus scrapes exactly compose's nodes and that every
metric the rules and the dashboard name is one the code exports (or is listed below as not
exported yet). Prints each check; exits 1 naming every mismatch. --render writes the
kustomization's resources as `kubectl kustomize` would (namespace and labels applied) for the
schema validation. Needs PyYAML (scripts/check-deploy.sh runs it in its venv).
"""

import glob
import json
import os
import re
import subprocess
import sys
import tempfile

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
K8S = os.path.join(ROOT, "deploy", "k8s")
PROM = os.path.join(ROOT, "deploy", "prometheus")
DASHBOARD = os.path.join(ROOT, "deploy", "grafana", "mpc.json")

# Metrics the rules and the dashboard name before any code exports them (each rule or panel
# says so), as {name: why}. Everything else must be exported by crates/.
NOT_EXPORTED_YET = {}
SECRETS_DIR = "/etc/mpc/secrets"
DATA_DIR = "/var/lib/mpc"
# Kubernetes-only variables: the pod's own name, from which node ids and names are derived.
K8S_ONLY_ENV = {"POD_NAME"}

failures = []


def ok(what):
    print(f"  ok: {what}")


def fail(what):
    failures.append(what)
    print(f"  MISMATCH: {what}")


def check(cond, what, why=""):
    if cond:
        ok(what)
    else:
        fail(f"{what}{': ' + why if why else ''}")


def interpolate(value):
    """Compose's ${VAR:-default} / ${VAR-default} / ${VAR} with an empty environment."""
    if not isinstance(value, str):
        return value
    return re.sub(r"\$\{([A-Z0-9_]+)(?::?-([^}]*))?\}", lambda m: m.group(2) or "", value)


def load_compose():
    with open(os.path.join(ROOT, "docker-compose.yml")) as f:
        doc = yaml.safe_load(f)
    services = {}
    for name, svc in doc["services"].items():
        env = {k: interpolate(str(v)) for k, v in (svc.get("environment") or {}).items()}
        services[name] = dict(svc, environment=env, image=interpolate(svc.get("image")))
    return doc, services


def load_manifests():
    with open(os.path.join(K8S, "kustomization.yaml")) as f:
        kust = yaml.safe_load(f)
    files = kust.get("resources", [])
    on_disk = sorted(
        os.path.basename(p)
        for p in glob.glob(os.path.join(K8S, "*.yaml"))
        if os.path.basename(p) != "kustomization.yaml"
    )
    check(
        sorted(files) == on_disk,
        "kustomization.yaml lists every manifest in deploy/k8s",
        f"resources {sorted(files)} vs files {on_disk}",
    )
    docs = []
    for name in files:
        with open(os.path.join(K8S, name)) as f:
            for d in yaml.safe_load_all(f):
                if d:
                    docs.append((name, d))
    return kust, docs


CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume", "StorageClass"}


def render(kust, docs, out):
    """What `kubectl kustomize` makes of this kustomization (namespace, labels)."""
    labels = {}
    for entry in kust.get("labels", []):
        labels.update(entry.get("pairs", {}))
    rendered = []
    for _, d in docs:
        d = json.loads(json.dumps(d))
        meta = d.setdefault("metadata", {})
        if kust.get("namespace") and d["kind"] not in CLUSTER_SCOPED:
            meta["namespace"] = kust["namespace"]
        meta.setdefault("labels", {}).update(labels)
        rendered.append(d)
    with open(out, "w") as f:
        yaml.safe_dump_all(rendered, f, sort_keys=False)
    print(f"  rendered {len(rendered)} resources of deploy/k8s/kustomization.yaml to {out}")


def find(docs, kind, name):
    for _, d in docs:
        if d["kind"] == kind and d["metadata"]["name"] == name:
            return d
    fail(f"no {kind} {name} in deploy/k8s")
    return None


def k8s_env(container):
    env, refs = {}, {}
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = str(e["value"])
        else:
            refs[e["name"]] = e.get("valueFrom", {})
    return env, refs


def port_of(addr):
    return int(str(addr).rsplit(":", 1)[1])


def named_port(container, port):
    if isinstance(port, int):
        return port
    for p in container.get("ports", []):
        if p.get("name") == port:
            return p["containerPort"]
    return None


def pod_names(sts):
    start = (sts["spec"].get("ordinals") or {}).get("start", 0)
    prefix = sts["metadata"]["name"]
    return [f"{prefix}-{i}" for i in range(start, start + sts["spec"]["replicas"])]


def expand_pod(value, pod):
    return value.replace("$(POD_NAME)", pod)


def compare_role(role, compose_services, sts, per_node_env, compose_ports):
    """compose_services: the compose services of this role (coordinator-1.., party-1..)."""
    print(f"{role}: compose {', '.join(sorted(compose_services))} vs StatefulSet {sts['metadata']['name']}")
    names = pod_names(sts)
    check(
        sorted(names) == sorted(compose_services),
        f"{role}: pods are named as compose's services ({', '.join(names)})",
        f"pods {names} vs services {sorted(compose_services)}",
    )
    spec = sts["spec"]["template"]["spec"]
    container = spec["containers"][0]
    first = compose_services[sorted(compose_services)[0]]
    check(container["image"] == first["image"], f"{role}: image {container['image']}", f"compose has {first['image']}")
    check(
        container.get("command") == first.get("command"),
        f"{role}: command {container.get('command')}",
        f"compose has {first.get('command')}",
    )
    # Ports: what the node listens on, and what the manifests open and probe.
    cports = {p["containerPort"] for p in container.get("ports", [])}
    check(cports == compose_ports, f"{role}: container ports {sorted(cports)}", f"compose's nodes use {sorted(compose_ports)}")
    env, refs = k8s_env(container)
    k8s_keys = (set(env) | set(refs)) - K8S_ONLY_ENV
    compose_keys = set(first["environment"])
    check(
        k8s_keys == compose_keys,
        f"{role}: the same settings ({len(compose_keys)} MPC_* variables)",
        f"only in compose: {sorted(compose_keys - k8s_keys)}; only in k8s: {sorted(k8s_keys - compose_keys)}",
    )
    for pod in names:
        cenv = compose_services[pod]["environment"]
        for key in sorted(compose_keys & set(env)):
            kval = expand_pod(env[key], pod)
            cval = cenv[key]
            if key in per_node_env:
                same, why = per_node_env[key](pod, kval, cval, sts)
                if not same:
                    fail(f"{role} {pod}: {key} = {kval!r} does not correspond to compose's {cval!r}: {why}")
            elif kval != cval:
                fail(f"{role} {pod}: {key} = {kval!r}, compose has {cval!r}")
    ok(f"{role}: every setting's value matches compose (node names mapped to the pods' DNS names)")
    for key, ref in refs.items():
        check(
            "secretKeyRef" not in ref,
            f"{role}: {key} comes from {list(ref)[0]}",
            "a Secret in an environment variable (docker inspect / kubectl describe show those)",
        )
    # Listening addresses agree with the container ports.
    for key in ("MPC_GRPC_LISTEN", "MPC_RAFT_LISTEN", "MPC_HTTP_LISTEN"):
        if key in env:
            check(port_of(env[key]) in cports, f"{role}: {key} port {port_of(env[key])} is a container port")
    # Probes: compose's healthcheck asks /ready on the HTTP port.
    http_port = port_of(first["environment"]["MPC_HTTP_LISTEN"])
    test = " ".join(first["healthcheck"]["test"])
    m = re.search(r"http://127\.0\.0\.1:(\d+)(/\S+)", test)
    ready = container.get("readinessProbe", {}).get("httpGet", {})
    live = container.get("livenessProbe", {}).get("httpGet", {})
    check(
        m and ready.get("path") == m.group(2) and named_port(container, ready.get("port")) == int(m.group(1)) == http_port,
        f"{role}: readiness probe {ready.get('path')} on {named_port(container, ready.get('port'))} as compose's healthcheck",
        f"compose probes {m.group(0) if m else test}",
    )
    check(
        live.get("path") == "/health" and named_port(container, live.get("port")) == http_port,
        f"{role}: liveness probe /health on {http_port}",
    )
    # Volumes: data and secrets where compose mounts them.
    mounts = {vm["mountPath"]: vm for vm in container.get("volumeMounts", [])}
    compose_mounts = {}
    for v in first.get("volumes", []):
        parts = interpolate(v).split(":")
        compose_mounts[parts[1]] = parts
    check(DATA_DIR in mounts and DATA_DIR in compose_mounts, f"{role}: data volume at {DATA_DIR}")
    claims = {c["metadata"]["name"] for c in sts["spec"].get("volumeClaimTemplates", [])}
    check(mounts.get(DATA_DIR, {}).get("name") in claims, f"{role}: {DATA_DIR} is a PersistentVolumeClaim of each pod")
    sm = mounts.get(SECRETS_DIR)
    check(
        sm is not None and sm.get("readOnly") and compose_mounts.get(SECRETS_DIR, [""])[-1] == "ro",
        f"{role}: secrets read-only at {SECRETS_DIR} (as compose)",
    )
    if sm:
        check(sm.get("subPathExpr") == "$(POD_NAME)", f"{role}: each pod sees only its own secrets directory")
        vol = next((v for v in spec.get("volumes", []) if v["name"] == sm["name"]), {})
        sources = vol.get("projected", {}).get("sources", [])
        check(
            sources and all(set(s) == {"secret"} for s in sources),
            f"{role}: the secrets volume is made of Secrets only",
        )
        paths = {i["path"] for s in sources for i in s["secret"].get("items", []) if not s["secret"].get("optional")}
        wanted = sorted({os.path.basename(v) for v in first["environment"].values() if v.startswith(SECRETS_DIR + "/")})
        missing = [f"{pod}/{w}" for pod in names for w in wanted if f"{pod}/{w}" not in paths]
        check(not missing, f"{role}: every pod gets the files compose's settings name ({', '.join(wanted)})", f"missing {missing}")


def members_match(pod, kval, cval, sts):
    """initial members: same ids and ports; k8s hosts are the pods' stable DNS names."""
    km = [m.split("=") for m in kval.split(",")]
    cm = [m.split("=") for m in cval.split(",")]
    if [m[0] for m in km] != [m[0] for m in cm]:
        return False, "different node ids"
    gov = sts["spec"]["serviceName"]
    for k, c in zip(km, cm):
        for ka, ca in zip(k[1:], c[1:]):
            if port_of(ka) != port_of(ca):
                return False, f"port of {ka} vs {ca}"
            if ka.rsplit(":", 1)[0] != f"{ca.rsplit(':', 1)[0]}.{gov}":
                return False, f"{ka} is not {ca} under the headless Service {gov}"
    return True, ""


def dns_name_match(pod, kval, cval, sts):
    gov = sts["spec"]["serviceName"]
    hosts_k = [a.rsplit(":", 1) for a in kval.split(",")]
    hosts_c = [a.rsplit(":", 1) for a in cval.split(",")]
    if len(hosts_k) != len(hosts_c):
        return False, "different number of addresses"
    for (kh, kp), (ch, cp) in zip(hosts_k, hosts_c):
        if kp != cp or not kh.startswith(ch + "."):
            return False, f"{kh}:{kp} is not {ch}:{cp} under a Service"
    return True, ""


def node_id_match(pod, kval, cval, sts):
    return True, ""


def party_id_match(pod, kval, cval, sts):
    return (kval == cval, f"{kval} vs {cval}")


def check_pod_security(docs):
    print("security: every workload")
    for name, d in docs:
        if d["kind"] not in ("StatefulSet", "Deployment"):
            continue
        what = f"{d['kind']}/{d['metadata']['name']}"
        spec = d["spec"]["template"]["spec"]
        psc = spec.get("securityContext", {})
        check(psc.get("runAsNonRoot") is True and psc.get("runAsUser", 0) != 0, f"{what}: runs as a non-root user")
        check(spec.get("automountServiceAccountToken") is False, f"{what}: no service account token mounted")
        for c in spec["containers"]:
            sc = c.get("securityContext", {})
            check(sc.get("readOnlyRootFilesystem") is True, f"{what}/{c['name']}: read-only root filesystem")
            check(sc.get("allowPrivilegeEscalation") is False, f"{what}/{c['name']}: no privilege escalation")
            check(sc.get("capabilities", {}).get("drop") == ["ALL"], f"{what}/{c['name']}: drops every capability")
            res = c.get("resources", {})
            check(
                all(k in res.get(x, {}) for x in ("requests", "limits") for k in ("cpu", "memory")),
                f"{what}/{c['name']}: cpu and memory requests and limits",
            )
            check("readinessProbe" in c and "livenessProbe" in c, f"{what}/{c['name']}: readiness and liveness probes")
            for e in c.get("env", []):
                if "secretKeyRef" in e.get("valueFrom", {}):
                    fail(f"{what}/{c['name']}: {e['name']} takes a Secret as an environment variable")
                if re.search(r"MASTER_KEY$|TOKEN$|PIN$|PASSWORD$|_KEY$", e["name"]) and not str(e.get("value", "/")).startswith("/"):
                    fail(f"{what}/{c['name']}: {e['name']} looks like a secret in the environment")
            for ef in c.get("envFrom", []):
                if "secretRef" in ef:
                    fail(f"{what}/{c['name']}: envFrom a Secret")


def check_k8s_shape(docs):
    print("kubernetes: services, budgets, policies")
    coord = find(docs, "StatefulSet", "coordinator")
    party = find(docs, "StatefulSet", "party")
    raft = find(docs, "Service", coord["spec"]["serviceName"]) if coord else None
    if raft:
        check(raft["spec"].get("clusterIP") == "None", f"Service {raft['metadata']['name']} is headless and governs the coordinators")
        check(raft["spec"].get("publishNotReadyAddresses") is True, "the Raft Service publishes pods before they are ready")
        check(50061 in {p["port"] for p in raft["spec"]["ports"]}, "the Raft Service carries port 50061")
    client = find(docs, "Service", "coordinator")
    if client:
        check(client["spec"].get("clusterIP") != "None" and 50051 in {p["port"] for p in client["spec"]["ports"]}, "client Service coordinator on 50051")
        check(50061 not in {p["port"] for p in client["spec"]["ports"]}, "the client Service does not carry Raft")
    if coord:
        check(coord["spec"].get("podManagementPolicy") == "Parallel", "coordinators start in parallel (a quorum must form)")
    pdb = find(docs, "PodDisruptionBudget", "coordinator")
    if pdb:
        check(pdb["spec"].get("maxUnavailable") == 1, "coordinators' PodDisruptionBudget: maxUnavailable 1")
    if party:
        spec = party["spec"]["template"]["spec"]
        anti = spec.get("affinity", {}).get("podAntiAffinity", {}).get("requiredDuringSchedulingIgnoredDuringExecution")
        check(bool(anti), "parties: required pod anti-affinity")
        tsc = spec.get("topologySpreadConstraints", [])
        check(
            any(t.get("whenUnsatisfiable") == "DoNotSchedule" and t.get("maxSkew") == 1 for t in tsc),
            "parties: one per failure domain (topologySpreadConstraints, DoNotSchedule)",
        )
    dvn = find(docs, "StatefulSet", "dvn")
    if dvn:
        c = dvn["spec"]["template"]["spec"]["containers"][0]
        check(c["image"] == (coord or {}).get("spec", {}).get("template", {}).get("spec", {}).get("containers", [{}])[0].get("image"), "relayers use the same image")
    np = find(docs, "NetworkPolicy", "party")
    if np:
        check("Ingress" in np["spec"]["policyTypes"] and not np["spec"].get("ingress"), "NetworkPolicy: nothing reaches a party")
    np = find(docs, "NetworkPolicy", "coordinator")
    if np:
        comps = set()
        for rule in np["spec"].get("ingress", []):
            if 50051 in {p["port"] for p in rule.get("ports", [])}:
                for peer in rule.get("from", []):
                    comps.add(peer.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component"))
        check({"party", "dvn"} <= comps, "NetworkPolicy: parties and relayers reach the coordinators' gRPC port")


def check_prometheus(compose_doc, services):
    print("prometheus: scrape targets vs compose")
    with open(os.path.join(PROM, "prometheus.yml")) as f:
        conf = yaml.safe_load(f)
    targets = {}
    for job in conf["scrape_configs"]:
        for sc in job.get("static_configs", []):
            for t in sc["targets"]:
                targets[t] = job["job_name"]
        check(job.get("scheme", "http") == "http" and job.get("metrics_path", "/metrics") == "/metrics", f"job {job['job_name']}: plain HTTP /metrics (as the nodes serve it)")
    want = {}
    for name, svc in services.items():
        http = svc["environment"].get("MPC_HTTP_LISTEN")
        if http:
            want[f"{name}:{port_of(http)}"] = name.rsplit("-", 1)[0]
    check(
        targets == want,
        f"Prometheus scrapes every compose node ({len(want)} targets, jobs coordinator and party)",
        f"only in compose: {sorted(set(want) - set(targets))}; only in prometheus.yml: {sorted(set(targets) - set(want))}; or a wrong job",
    )
    prom = services.get("prometheus")
    check(prom is not None and prom.get("profiles") == ["monitoring"], "compose: service prometheus in the monitoring profile")
    if prom:
        vols = [interpolate(v) for v in prom.get("volumes", [])]
        check(any(v.startswith("./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml") for v in vols), "compose: prometheus reads deploy/prometheus/prometheus.yml")
        check(any(v.startswith("./deploy/prometheus/rules:/etc/prometheus/rules") for v in vols), "compose: prometheus reads deploy/prometheus/rules")
        check(set(prom.get("networks", [])) == {"mpc"}, "compose: prometheus is on the nodes' network")
        check(not any(".cluster" in v or "secrets" in v for v in vols), "compose: prometheus mounts no secret")


def exported_metrics():
    """The mpc_* names that counter!, gauge! and histogram! record in crates/, written as a
    literal or as a constant (`const CURSOR_LAG: &str = "mpc_..."`, used as
    `gauge!(metrics::CURSOR_LAG, ...)`)."""
    texts = []
    for path in glob.glob(os.path.join(ROOT, "crates", "**", "*.rs"), recursive=True):
        with open(path, encoding="utf-8", errors="replace") as f:
            texts.append(f.read())
    constants = {}
    for text in texts:
        for const, name in re.findall(r'\bconst\s+([A-Z][A-Z0-9_]*)\s*:\s*&(?:\'static\s+)?str\s*=\s*"(mpc_[a-z0-9_]+)"', text):
            constants.setdefault(const, set()).add(name)
    names = set()
    for text in texts:
        names.update(re.findall(r'(?:counter|gauge|histogram)!\(\s*"(mpc_[a-z0-9_]+)"', text))
        for const in re.findall(r'(?:counter|gauge|histogram)!\(\s*(?:[A-Za-z_][A-Za-z0-9_]*::)*([A-Z][A-Z0-9_]*)\b', text):
            names |= constants.get(const, set())
    return names


def metric_names(expr):
    names = set(re.findall(r"(?<![:\w])(mpc_[a-z0-9_]+)(?![:\w])", expr))
    out = set()
    for n in names:
        for suffix in ("_bucket", "_count", "_sum"):
            if n.endswith(suffix):
                n = n[: -len(suffix)]
                break
        out.add(n)
    return out


def check_metrics():
    print("metrics: rules and dashboard vs the code")
    exported = exported_metrics()
    check(len(exported) >= 20, f"the code exports {len(exported)} mpc_* metrics")
    exprs = []
    for path in sorted(glob.glob(os.path.join(PROM, "rules", "*.yml"))):
        with open(path) as f:
            for g in yaml.safe_load(f)["groups"]:
                for r in g["rules"]:
                    exprs.append((f"{os.path.basename(path)} {r.get('alert') or r.get('record')}", r["expr"]))
                    if "alert" in r:
                        text = json.dumps(r.get("annotations", {})).lower()
                        caveat = "not exported yet" in text or "not built yet" in text
                        for n in metric_names(r["expr"]) & set(NOT_EXPORTED_YET):
                            check(
                                n in text and caveat,
                                f"alert {r['alert']}: its annotations say that {n} is not exported yet",
                            )
                        if caveat and not metric_names(r["expr"]) & set(NOT_EXPORTED_YET):
                            fail(f"alert {r['alert']}: its annotations say a metric is not exported yet, but the code exports every one it names")
    with open(DASHBOARD) as f:
        dash = json.load(f)
    rows = [p["title"] for p in dash["panels"] if p["type"] == "row"]
    check(
        any("Cluster" in r for r in rows) and any("Parties" in r for r in rows) and any("Relayers" in r for r in rows),
        f"dashboard rows: {rows}",
    )
    dash_exprs = [(f"dashboard '{p['title']}'", t["expr"]) for p in dash["panels"] for t in p.get("targets", [])]
    for p in dash["panels"]:
        described = p.get("description", "").lower()
        named = set().union(*(metric_names(t["expr"]) for t in p.get("targets", [])))
        if ("not exported yet" in described or "not built yet" in described) and not named & set(NOT_EXPORTED_YET):
            fail(f"dashboard '{p['title']}': its description says it is not exported or built yet, but the code exports every metric it queries")
    recorded = set()
    for path in glob.glob(os.path.join(PROM, "rules", "*.yml")):
        with open(path) as f:
            recorded |= {r["record"] for g in yaml.safe_load(f)["groups"] for r in g["rules"] if "record" in r}
    unknown = []
    for where, e in exprs + dash_exprs:
        for n in metric_names(e):
            if n not in exported and n not in NOT_EXPORTED_YET:
                unknown.append(f"{where}: {n}")
        for rec in re.findall(r"\b([a-z_]+:[a-z0-9_:]+)", e):
            if rec not in recorded:
                unknown.append(f"{where}: recording rule {rec}")
    check(not unknown, f"{len(exprs)} rule and {len(dash_exprs)} panel queries name only exported metrics and recorded series", "; ".join(unknown))
    for n, why in sorted(NOT_EXPORTED_YET.items()):
        print(f"  note: {n} is named but not exported yet ({why})")
    # The dashboard's queries parse: promtool checks them as recording rules.
    if subprocess.run(["sh", "-c", "command -v promtool"], capture_output=True).returncode == 0:
        with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
            yaml.safe_dump(
                {"groups": [{"name": "dashboard", "rules": [{"record": f"dashboard:q{i}", "expr": e} for i, (_, e) in enumerate(dash_exprs)]}]},
                f,
            )
        r = subprocess.run(["promtool", "check", "rules", f.name], capture_output=True, text=True)
        os.unlink(f.name)
        check(r.returncode == 0, f"promtool parses the dashboard's {len(dash_exprs)} queries", r.stdout + r.stderr)
    else:
        print("  note: promtool not found; the dashboard's queries were not parsed")


def main():
    out = None
    if len(sys.argv) == 3 and sys.argv[1] == "--render":
        out = sys.argv[2]
    elif len(sys.argv) != 1:
        sys.exit(__doc__)
    compose_doc, services = load_compose()
    print("deploy/k8s/kustomization.yaml")
    kust, docs = load_manifests()
    if out:
        render(kust, docs, out)
    coords = {n: s for n, s in services.items() if n.startswith("coordinator-")}
    parties = {n: s for n, s in services.items() if n.startswith("party-")}
    coord_ports = set()
    for s in coords.values():
        coord_ports |= {port_of(s["environment"][k]) for k in ("MPC_GRPC_LISTEN", "MPC_RAFT_LISTEN", "MPC_HTTP_LISTEN")}
        coord_ports |= {int(interpolate(p).rsplit(":", 1)[1]) for p in s.get("ports", [])}
    party_ports = set()
    for s in parties.values():
        party_ports |= {port_of(s["environment"]["MPC_HTTP_LISTEN"])}
        party_ports |= {int(interpolate(p).rsplit(":", 1)[1]) for p in s.get("ports", [])}
    sts = find(docs, "StatefulSet", "coordinator")
    if sts:
        compare_role(
            "coordinator",
            coords,
            sts,
            {
                "MPC_NODE_ID": lambda pod, k, c, s: (k == c or k.startswith("$(") or "pod-index" in k, ""),
                "MPC_INITIAL_MEMBERS": members_match,
                "MPC_ADVERTISE_GRPC": dns_name_match,
                "MPC_ADVERTISE_HTTP": dns_name_match,
                "MPC_ADVERTISE_RAFT": dns_name_match,
            },
            coord_ports,
        )
        # MPC_NODE_ID: the pod index label, and pods coordinator-N have index N.
        c = sts["spec"]["template"]["spec"]["containers"][0]
        ref = next((e for e in c["env"] if e["name"] == "MPC_NODE_ID"), {})
        check(
            "apps.kubernetes.io/pod-index" in json.dumps(ref) and sts["spec"].get("ordinals", {}).get("start") == 1,
            "coordinator: MPC_NODE_ID is the pod index, starting at 1 as compose's node ids",
        )
    sts = find(docs, "StatefulSet", "party")
    if sts:
        compare_role(
            "party",
            parties,
            sts,
            {"MPC_PARTY_ID": party_id_match, "MPC_COORDINATORS": dns_name_match},
            party_ports,
        )
    check_k8s_shape(docs)
    check_pod_security(docs)
    check_prometheus(compose_doc, services)
    check_metrics()
    if failures:
        print(f"\ncheck_deploy: {len(failures)} mismatch(es):")
        for f in failures:
            print(f"  - {f}")
        sys.exit(1)
    print("\ncheck_deploy: compose, the manifests and the monitoring files agree")


if __name__ == "__main__":
    main()
