#!/usr/bin/env python3
"""Checks rendered Kubernetes manifests against paybind's code.

    check_manifests.py RENDERED.yaml

Every configuration key (in the ConfigMaps' TOML files and in
PAYMENT__…/MERCHANT__… environment variables) must be a field of the
service's Settings, read from the Rust source; every other environment
variable must be one the code reads; every container port must be the port
of the listen setting it is named for; Services, probes, annotations and
network policies must name ports that exist; every file the configuration
names must be in a mounted Secret or ConfigMap that has that key; the
probes and args must use subcommands and flags the binaries have.

Exits 1 and says what is wrong at the first run of findings.
"""
import re
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]

SERVICES = {
    "payment-svc": {"prefix": "PAYMENT", "config_env": "PAYMENT_CONFIG"},
    "merchant-svc": {"prefix": "MERCHANT", "config_env": "MERCHANT_CONFIG"},
}
# The listen setting each named container port serves.
PORT_SETTINGS = {
    "grpc": "grpc.listen",
    "pages": "web.listen",
    "storefront": "web.listen",
    "metrics": "metrics.listen",
}
# Variables the code reads besides its configuration: OpenTelemetry's own
# (the SDK reads them: shared/src/telemetry), the log format and filter.
OTHER_ENV = re.compile(r"^(OTEL_[A-Z_]+|LOG_FORMAT|RUST_LOG)$")


def rust_sources(service):
    files = sorted((ROOT / service / "src").rglob("*.rs"))
    return files + sorted((ROOT / "shared" / "src").rglob("*.rs"))


def structs(service):
    """Struct name -> {field: type}, the service's own crate first."""
    found = {}
    for path in rust_sources(service):
        text = path.read_text()
        for m in re.finditer(r"pub struct (\w+)\s*\{(.*?)\n\}", text, re.S):
            fields = dict(re.findall(r"^\s*pub (\w+):\s*([^\n]+?),?\s*$", m.group(2), re.M))
            found.setdefault(m.group(1), fields)
    return found


def inner(ty):
    """The type a TOML table or value of this field holds."""
    ty = ty.strip().rstrip(",")
    for wrapper in ("Option<", "Vec<", "Box<", "Arc<"):
        if ty.startswith(wrapper):
            return inner(ty[len(wrapper):-1])
    m = re.match(r"(?:std::collections::)?(?:BTreeMap|HashMap)<\s*\w+\s*,\s*(.+)>$", ty)
    if m:
        return ("map", inner(m.group(1)))
    return ty.split("::")[-1]


def resolve(service, path):
    """Whether the dotted key path is a field of the service's Settings."""
    table = structs(service)
    ty = "Settings"
    for part in path:
        if isinstance(ty, tuple):  # a map: any key, then its values' type
            ty = ty[1]
            continue
        fields = table.get(ty)
        if fields is None:
            return False  # a leaf (a string, a number) has no sub-keys
        if part not in fields:
            return False
        ty = inner(fields[part])
    return True


def flatten(table, prefix=()):
    for key, value in table.items():
        if isinstance(value, dict):
            yield from flatten(value, prefix + (key,))
        else:
            yield prefix + (key,), value


def main(rendered):
    docs = [d for d in yaml.safe_load_all(Path(rendered).read_text()) if d]
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    configmaps = {d["metadata"]["name"]: d for d in by_kind.get("ConfigMap", [])}
    secrets = {d["metadata"]["name"]: d for d in by_kind.get("Secret", [])}
    problems = []
    checked = 0

    deployments = {d["metadata"]["name"]: d for d in by_kind.get("Deployment", [])}
    for service, facts in SERVICES.items():
        deployment = deployments.get(service)
        if deployment is None:
            problems.append(f"no Deployment {service}")
            continue
        pod = deployment["spec"]["template"]["spec"]
        container = next(c for c in pod["containers"] if c["name"] == service)
        main_rs = (ROOT / service / "src" / "main.rs").read_text()

        # The configuration file: its TOML keys.
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        mounts = {m["mountPath"]: volumes[m["name"]] for m in container.get("volumeMounts", [])}
        args = container.get("args", [])
        config_path = args[args.index("--config") + 1] if "--config" in args else None
        settings = {}
        if config_path is None:
            problems.append(f"{service}: no --config in args {args}")
        else:
            directory, name = config_path.rsplit("/", 1)
            volume = mounts.get(directory)
            cm = configmaps.get((volume or {}).get("configMap", {}).get("name", ""))
            if cm is None or name not in cm.get("data", {}):
                problems.append(f"{service}: {config_path} is in no mounted ConfigMap")
            else:
                settings = tomllib.loads(cm["data"][name])
                for path, _ in flatten(settings):
                    checked += 1
                    if not resolve(service, path):
                        problems.append(f"{service}: config key {'.'.join(path)} is no setting of {service}")
        # The subcommands and flags the container runs.
        for word in ("serve", "health"):
            if not re.search(rf"^\s*{word.capitalize()}\b", main_rs, re.M):
                problems.append(f"{service}: the binary has no `{word}` subcommand")
        probes = [container.get(p) for p in ("startupProbe", "readinessProbe", "livenessProbe")]
        for probe in probes:
            command = (probe or {}).get("exec", {}).get("command", [])
            if command[:2] != [service, "health"]:
                problems.append(f"{service}: a probe does not run `{service} health`: {command}")
            if "--timeout-ms" in command and "timeout_ms" not in main_rs:
                problems.append(f"{service}: `health` has no --timeout-ms")

        # Environment variables.
        effective = {}
        for env in container.get("env", []):
            checked += 1
            name = env["name"]
            if name == facts["config_env"]:
                if f'env = "{name}"' not in main_rs:
                    problems.append(f"{service}: the binary does not read {name}")
                if env.get("value") != config_path:
                    problems.append(f"{service}: {name} is not the --config file (the probes read it)")
                continue
            if name.startswith(facts["prefix"] + "__"):
                path = tuple(p.lower() for p in name[len(facts["prefix"]) + 2:].split("__"))
                if not resolve(service, path):
                    problems.append(f"{service}: {name} names no setting ({'.'.join(path)})")
                effective[".".join(path)] = env.get("value")
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref and ref["key"] not in {
                    **secrets.get(ref["name"], {}).get("stringData", {}),
                    **secrets.get(ref["name"], {}).get("data", {}),
                }:
                    problems.append(f"{service}: {name} takes {ref['name']}/{ref['key']}, which no Secret holds")
                continue
            if not OTHER_ENV.match(name):
                problems.append(f"{service}: {name} is read by nothing in paybind")
        # Every secret the service needs is given somewhere.
        needed = {
            "payment-svc": ["database.url", "secrets.vault_keys.k1", "secrets.token_key",
                            "secrets.fingerprint_key", "secrets.otp_key"],
            "merchant-svc": ["database.url", "secrets.vault_keys.k1", "web.cookie_key"],
        }[service]
        for key in needed:
            if key not in effective:
                problems.append(f"{service}: {key} is given by no environment variable")

        # Ports: each named container port is its listen setting's port.
        ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        for port_name, port in ports.items():
            checked += 1
            setting = PORT_SETTINGS.get(port_name)
            if setting is None:
                problems.append(f"{service}: container port {port_name} stands for no listen setting")
                continue
            listen = effective.get(setting)
            if listen is None:
                section, key = setting.split(".")
                listen = settings.get(section, {}).get(key)
            if listen is None or not str(listen).endswith(f":{port}"):
                problems.append(f"{service}: port {port_name}={port} but {setting} = {listen!r}")
        annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
        if str(ports.get("metrics")) != annotations.get("prometheus.io/port"):
            problems.append(f"{service}: prometheus.io/port is not the metrics port")

        # Files the configuration names are in mounted Secrets/ConfigMaps.
        for path, value in flatten(settings):
            if isinstance(value, str) and value.startswith("/etc/"):
                directory, name = value.rsplit("/", 1)
                volume = mounts.get(directory)
                secret = secrets.get((volume or {}).get("secret", {}).get("secretName", ""))
                keys = {**(secret or {}).get("stringData", {}), **(secret or {}).get("data", {})}
                checked += 1
                if name not in keys:
                    problems.append(f"{service}: {'.'.join(path)} = {value} is in no mounted Secret")

        # The Service points at ports the container has.
        for svc in by_kind.get("Service", []):
            if svc["spec"].get("selector", {}).get("app.kubernetes.io/name") == service:
                for port in svc["spec"]["ports"]:
                    checked += 1
                    if port["targetPort"] not in ports and port["targetPort"] not in ports.values():
                        problems.append(f"Service {service}: targetPort {port['targetPort']} is no container port")

    # Network policies admit only ports that exist.
    all_ports = {
        p["containerPort"]
        for d in deployments.values()
        for c in d["spec"]["template"]["spec"]["containers"]
        for p in c.get("ports", [])
    }
    for policy in by_kind.get("NetworkPolicy", []):
        for rule in policy["spec"].get("ingress", []):
            for port in rule.get("ports", []):
                checked += 1
                if port["port"] not in all_ports:
                    problems.append(f"NetworkPolicy {policy['metadata']['name']}: ingress port {port['port']} is no container port")

    if problems:
        for p in problems:
            print(f"  MISMATCH {p}")
        return 1
    print(f"  {checked} keys, variables, ports and files match the code")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
