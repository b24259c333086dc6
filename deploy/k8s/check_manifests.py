#!/usr/bin/env python3
"""Checks rendered Kubernetes manifests against paybind's code.

    check_manifests.py RENDERED.yaml

Reads the services' Rust source (no build) and fails, naming each finding,
when the manifests use anything the code does not have:

- every key of the ConfigMaps' TOML files and every PAYMENT__A__B /
  MERCHANT__A__B variable is a field of that service's `Settings` (the
  structs are parsed from payment-svc/src/config.rs, merchant-svc/src/
  config.rs and what they name in shared/ and the service's own crate);
- every other variable is one the code reads: the --config file's
  (PAYMENT_CONFIG, MERCHANT_CONFIG, from the binaries' clap attributes),
  an explicit list of OpenTelemetry's, LOG_FORMAT and RUST_LOG — with
  values the code accepts;
- the container runs `SERVICE serve`, the probes `SERVICE health`, with
  flags the binary has; probe timeouts are longer than health's own;
- each named container port is the port of its listen setting, which
  listens on every interface; the Services, network policies and the
  prometheus.io annotations name ports that exist;
- every file the configuration (or the database URL's sslrootcert) names
  is a key of a mounted Secret or ConfigMap; every secretKeyRef exists;
  the base's Secret values are marked placeholders ("REPLACE: ...");
- terminationGracePeriodSeconds covers the preStop pause and the drain
  (the gRPC server's request timeout and the pages' drain, read from the
  code);
- the network policies: only merchant-svc reaches payment-svc's gRPC port,
  and each service's egress to a database names its own database only.

Exits 1 after printing every finding; prints what it checked otherwise.
"""
import re
import sys
import tomllib
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import yaml

ROOT = Path(__file__).resolve().parents[2]

SERVICES = {
    "payment-svc": {"prefix": "PAYMENT", "database": "payment"},
    "merchant-svc": {"prefix": "MERCHANT", "database": "merchant"},
}
# The listen setting each named container port serves.
PORT_SETTINGS = {
    "grpc": "grpc.listen",
    "pages": "web.listen",
    "storefront": "web.listen",
    "metrics": "metrics.listen",
}
# Settings expected in the code that may still be on their way in: none now
# (`metrics.listen` and the `health` subcommand have landed). A key added
# here is accepted even if no struct has it yet — say why beside it.
EXPECTED_KEYS = {
    "payment-svc": set(),
    "merchant-svc": set(),
}
# Variables read outside the configuration: the OpenTelemetry SDK's and the
# OTLP exporter's own (shared/src/telemetry/export.rs; opentelemetry_sdk
# reads the sampler and resource ones), the log format and filter
# (shared/src/telemetry/mod.rs). Named one by one: a misspelt OTEL_ variable
# is silently ignored by the SDK, so it must fail here.
OTEL_ENV = {
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_TRACES_EXPORTER",
    "OTEL_SDK_DISABLED",
}
LOG_ENV = {"LOG_FORMAT", "RUST_LOG"}
SAMPLERS = {
    "always_on", "always_off", "traceidratio",
    "parentbased_always_on", "parentbased_always_off", "parentbased_traceidratio",
}
# What each service cannot start without, given by the environment (from
# Secrets) rather than the ConfigMap.
NEEDED_FROM_ENV = {
    "payment-svc": ["database.url", "secrets.vault_keys.k1", "secrets.token_key",
                    "secrets.fingerprint_key", "secrets.otp_key"],
    "merchant-svc": ["database.url", "secrets.vault_keys.k1", "web.cookie_key"],
}


# --- the Rust source ---------------------------------------------------------

def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def struct_fields(body):
    """The `pub name: Type` fields of a struct body, types whole (a generic
    type's commas and a type broken over lines included)."""
    body = re.sub(r"#\[[^\]]*\]", "", body)  # attributes (serde defaults…)
    fields, depth, current = {}, 0, ""
    for ch in body + ",":
        if ch in "<([":
            depth += 1
        elif ch in ">)]":
            depth -= 1
        if ch == "," and depth == 0:
            m = re.match(r"\s*pub(?:\([^)]*\))?\s+(\w+)\s*:\s*(.+)$", current, re.S)
            if m:
                fields[m.group(1)] = " ".join(m.group(2).split())
            current = ""
        else:
            current += ch
    return fields


def structs(service):
    """Struct name -> {field: type}: the service's config.rs first, then the
    rest of its crate, then shared/ (the first definition of a name wins)."""
    files = [ROOT / service / "src" / "config.rs"]
    files += sorted(p for p in (ROOT / service / "src").rglob("*.rs") if p not in files)
    files += sorted((ROOT / "shared" / "src").rglob("*.rs"))
    found = {}
    for path in files:
        text = strip_comments(path.read_text())
        for m in re.finditer(r"\bpub struct (\w+)\s*\{(.*?)\n\}", text, re.S):
            found.setdefault(m.group(1), struct_fields(m.group(2)))
    return found


def inner(ty):
    """The type a TOML table or value of this field holds: a struct name,
    ("map", values' type) or a leaf's name."""
    ty = ty.strip()
    for wrapper in ("Option<", "Vec<", "Box<", "Arc<"):
        if ty.startswith(wrapper) and ty.endswith(">"):
            return inner(ty[len(wrapper):-1])
    m = re.match(r"(?:[\w:]*::)?(?:BTreeMap|HashMap)<\s*[\w:]+\s*,\s*(.+)>$", ty)
    if m:
        return ("map", inner(m.group(1)))
    return ty.split("::")[-1]


def resolver(service):
    table = structs(service)
    if "Settings" not in table:
        sys.exit(f"{service}/src/config.rs: no `pub struct Settings` found: the check cannot read the code")

    def resolve(path):
        """Whether the dotted key path is a field of the service's Settings."""
        if ".".join(path) in EXPECTED_KEYS[service]:
            return True
        ty = "Settings"
        for part in path:
            if isinstance(ty, tuple):  # a map: any key, then its values' type
                ty = ty[1]
                continue
            fields = table.get(ty)
            if fields is None or part not in fields:
                return False  # a leaf (a string, a number) has no sub-keys
            ty = inner(fields[part])
            if ty == "IgnoredAny":
                return False  # a key kept only to be refused (allowed_clients)
        return True

    return resolve


def binary_facts(service):
    """What the binary's command line has: the --config variable, the
    subcommands, and the flags of `health`."""
    main_rs = (ROOT / service / "src" / "main.rs").read_text()
    config_env = re.search(r'long,[^\]]*env\s*=\s*"(\w+_CONFIG)"', main_rs)
    commands = set(re.findall(r"^\s{4}([A-Z]\w*)\s*(?:\{|,)", main_rs, re.M))
    health = re.search(r"^\s{4}Health\s*\{(.*?)^\s{4}\}", main_rs, re.S | re.M)
    health_flags = {
        "--" + name.replace("_", "-")
        for name in re.findall(r"^\s*(\w+)\s*:", health.group(1) if health else "", re.M)
    }
    default_timeout = re.search(r"default_value_t\s*=\s*(\d+)", health.group(1)) if health else None
    return {
        "config_env": config_env.group(1) if config_env else None,
        "subcommands": {c.lower() for c in commands},
        "health_flags": health_flags,
        "health_default_timeout_ms": int(default_timeout.group(1)) if default_timeout else None,
    }


def drain_seconds():
    """The longest a stop can take after SIGTERM: the gRPC server's request
    timeout (shared/src/grpc/mod.rs) or the pages' drain (shared/src/web.rs)."""
    grpc = re.search(r"\.timeout\(Duration::from_secs\((\d+)\)\)",
                     (ROOT / "shared/src/grpc/mod.rs").read_text())
    pages = re.search(r"DRAIN_FOR: Duration = Duration::from_secs\((\d+)\)",
                      (ROOT / "shared/src/web.rs").read_text())
    if not grpc or not pages:
        sys.exit("cannot read the drain from shared/src/grpc/mod.rs and shared/src/web.rs")
    return max(int(grpc.group(1)), int(pages.group(1)))


# --- the manifests -----------------------------------------------------------

def flatten(table, prefix=()):
    for key, value in table.items():
        if isinstance(value, dict):
            yield from flatten(value, prefix + (key,))
        else:
            yield prefix + (key,), value


def secret_keys(obj):
    return set((obj or {}).get("stringData", {})) | set((obj or {}).get("data", {}))


class Findings:
    def __init__(self):
        self.problems = []
        self.checked = {}

    def ok(self, what, n=1):
        self.checked[what] = self.checked.get(what, 0) + n

    def fail(self, text):
        self.problems.append(text)


def mounted_files(container, pod, configmaps, secrets):
    """Path of every file the container sees from a Secret or ConfigMap."""
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    files = {}
    for mount in container.get("volumeMounts", []):
        volume = volumes.get(mount["name"], {})
        if "secret" in volume:
            source, keys = volume["secret"], secret_keys(secrets.get(volume["secret"]["secretName"]))
        elif "configMap" in volume:
            source = volume["configMap"]
            keys = set((configmaps.get(source["name"]) or {}).get("data", {}))
        else:
            continue
        items = source.get("items")
        mapping = {i["path"]: i["key"] for i in items} if items else {k: k for k in keys}
        for path, key in mapping.items():
            if key in keys:
                files[f"{mount['mountPath'].rstrip('/')}/{path}"] = key
    return files


def check_service(service, facts, objects, f):
    deployment = objects["Deployment"].get(service)
    if deployment is None:
        f.fail(f"no Deployment {service}")
        return
    configmaps, secrets = objects["ConfigMap"], objects["Secret"]
    resolve = resolver(service)
    binary = binary_facts(service)
    pod = deployment["spec"]["template"]["spec"]
    containers = [c for c in pod["containers"] if c["name"] == service]
    if not containers:
        f.fail(f"{service}: no container named {service}")
        return
    container = containers[0]
    env = {e["name"]: e for e in container.get("env", [])}
    files = mounted_files(container, pod, configmaps, secrets)

    # The command, and where the configuration file comes from.
    command = container.get("command", []) + container.get("args", [])
    if container.get("command", [None])[0] != service or command[-1:] != ["serve"]:
        f.fail(f"{service}: the container does not run `{service} … serve`: {command}")
    for word in ("serve", "health"):
        if word not in binary["subcommands"]:
            f.fail(f"{service}: the binary has no `{word}` subcommand ({service}/src/main.rs)")
    config_env = binary["config_env"]
    if config_env is None:
        f.fail(f"{service}: the binary reads no *_CONFIG variable for --config")
    config_path = command[command.index("--config") + 1] if "--config" in command else None
    if config_env in env:
        if config_path and env[config_env].get("value") != config_path:
            f.fail(f"{service}: {config_env} and --config name different files")
        config_path = env[config_env].get("value")
    f.ok("commands and subcommands")
    settings = {}
    if config_path is None:
        f.fail(f"{service}: no configuration file (neither {config_env} nor --config)")
    elif config_path not in files:
        f.fail(f"{service}: {config_path} is in no mounted ConfigMap")
    else:
        directory = config_path.rsplit("/", 1)[0]
        volume = next(m for m in container["volumeMounts"] if m["mountPath"].rstrip("/") == directory)
        source = next(v for v in pod["volumes"] if v["name"] == volume["name"])
        data = configmaps[source["configMap"]["name"]]["data"][files[config_path]]
        settings = tomllib.loads(data)
        for path, _ in flatten(settings):
            f.ok("config keys (TOML)")
            if not resolve(path):
                f.fail(f"{service}: config key {'.'.join(path)} is no setting of {service}")

    # Environment variables.
    effective = {".".join(path): value for path, value in flatten(settings)}
    for name, var in env.items():
        f.ok("environment variables")
        value = var.get("value")
        if name == config_env:
            continue
        if name.startswith(facts["prefix"] + "__"):
            path = tuple(p.lower() for p in name[len(facts["prefix"]) + 2:].split("__"))
            if not all(path) or not resolve(path):
                f.fail(f"{service}: {name} names no setting ({'.'.join(path)})")
            effective[".".join(path)] = value if value is not None else var.get("valueFrom")
            continue
        if name in OTEL_ENV or name in LOG_ENV:
            if name == "OTEL_TRACES_SAMPLER" and value not in SAMPLERS:
                f.fail(f"{service}: OTEL_TRACES_SAMPLER={value!r} is no sampler the SDK knows")
            if name == "OTEL_TRACES_SAMPLER_ARG":
                try:
                    ok = 0.0 <= float(value) <= 1.0
                except (TypeError, ValueError):
                    ok = False
                if not ok:
                    f.fail(f"{service}: OTEL_TRACES_SAMPLER_ARG={value!r} is no ratio from 0 to 1")
            if name == "OTEL_EXPORTER_OTLP_PROTOCOL" and value != "grpc":
                f.fail(f"{service}: only OTLP over gRPC is built in, not {value!r}")
            if name == "LOG_FORMAT" and value != "json":
                f.fail(f"{service}: LOG_FORMAT={value!r}: the code knows only `json`")
            continue
        f.fail(f"{service}: {name} is read by nothing in {service}")
    sampler = env.get("OTEL_TRACES_SAMPLER", {}).get("value", "")
    if sampler.endswith("traceidratio") and "OTEL_TRACES_SAMPLER_ARG" not in env:
        f.fail(f"{service}: {sampler} without OTEL_TRACES_SAMPLER_ARG samples everything")
    for key in NEEDED_FROM_ENV[service]:
        f.ok("secrets given by the environment")
        ref = effective.get(key)
        if not (isinstance(ref, dict) and "secretKeyRef" in ref):
            f.fail(f"{service}: {key} is given by no variable from a Secret")
    for var in env.values():
        ref = var.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            f.ok("secretKeyRefs")
            if ref["key"] not in secret_keys(secrets.get(ref["name"])):
                f.fail(f"{service}: {var['name']} takes {ref['name']}/{ref['key']}, which no Secret holds")

    # Ports: each named container port is its listen setting's port, on
    # every interface.
    ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
    for port_name, port in ports.items():
        f.ok("container ports")
        setting = PORT_SETTINGS.get(port_name)
        if setting is None:
            f.fail(f"{service}: container port {port_name} stands for no listen setting")
            continue
        listen = effective.get(setting)
        m = re.fullmatch(r"(.+):(\d+)", str(listen or ""))
        if not m or int(m.group(2)) != port:
            f.fail(f"{service}: port {port_name}={port} but {setting} = {listen!r}")
        elif m.group(1) not in ("0.0.0.0", "[::]"):
            f.fail(f"{service}: {setting} = {listen} is not reachable from outside the pod")
    for setting in sorted(set(PORT_SETTINGS.values())):
        if resolve(tuple(setting.split("."))) and setting not in effective:
            f.fail(f"{service}: {setting} is not set: it would listen on loopback only")
    annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
    f.ok("prometheus.io annotations")
    if annotations.get("prometheus.io/scrape") != "true":
        f.fail(f"{service}: no prometheus.io/scrape: \"true\"")
    if str(ports.get("metrics")) != annotations.get("prometheus.io/port"):
        f.fail(f"{service}: prometheus.io/port is not the metrics port")
    if annotations.get("prometheus.io/path") != "/metrics":
        f.fail(f"{service}: prometheus.io/path is not /metrics")

    # Probes: the binary's own health check, given time to answer.
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        f.ok("probes")
        probe = container.get(kind)
        if probe is None:
            f.fail(f"{service}: no {kind}")
            continue
        command = probe.get("exec", {}).get("command", [])
        if command[:2] != [service, "health"]:
            f.fail(f"{service}: {kind} does not run `{service} health`: {command}")
        for flag in (w.split("=")[0] for w in command[2:] if w.startswith("--")):
            if flag not in binary["health_flags"] | {"--config"}:
                f.fail(f"{service}: `{service} health` has no {flag}")
        timeout_ms = binary["health_default_timeout_ms"] or 0
        if "--timeout-ms" in command:
            timeout_ms = int(command[command.index("--timeout-ms") + 1])
        if probe.get("timeoutSeconds", 1) * 1000 <= timeout_ms:
            f.fail(f"{service}: {kind} times out ({probe.get('timeoutSeconds', 1)} s) before health does ({timeout_ms} ms)")

    # The stop: preStop pause, then the drain, within the grace period.
    pre_stop = container.get("lifecycle", {}).get("preStop", {})
    pause = 0
    if pre_stop.get("exec", {}).get("command", [None])[0] == "sleep":
        pause = int(pre_stop["exec"]["command"][1])
    elif "sleep" in pre_stop:
        pause = int(pre_stop["sleep"]["seconds"])
    grace = pod.get("terminationGracePeriodSeconds", 30)
    need = pause + drain_seconds()
    f.ok("grace period against the drain")
    if grace < need:
        f.fail(f"{service}: terminationGracePeriodSeconds {grace} < preStop {pause} s + drain {need - pause} s")

    # Files the configuration names, and the database URL's root CA.
    named = [(".".join(p), v) for p, v in flatten(settings) if isinstance(v, str) and v.startswith("/")]
    db_ref = effective.get("database.url")
    if isinstance(db_ref, dict) and "secretKeyRef" in db_ref:
        ref = db_ref["secretKeyRef"]
        url = (secrets.get(ref["name"]) or {}).get("stringData", {}).get(ref["key"], "")
        query = parse_qs(urlsplit(url.split(" ", 1)[-1]).query)
        f.ok("database URLs")
        if query.get("sslmode") != ["verify-full"]:
            f.fail(f"{service}: the database URL in {ref['name']} is not sslmode=verify-full")
        named += [("database.url sslrootcert", v) for v in query.get("sslrootcert", [])]
    for key, path in named:
        f.ok("files named by the configuration")
        if path.startswith("/tmp/"):
            continue  # written by the service, in the /tmp emptyDir
        if path not in files:
            f.fail(f"{service}: {key} = {path} is in no mounted Secret or ConfigMap")

    # Services point at ports the container has.
    for svc in objects["Service"].values():
        if svc["spec"].get("selector", {}).get("app.kubernetes.io/name") == service:
            for port in svc["spec"]["ports"]:
                f.ok("Service ports")
                target = port.get("targetPort", port["port"])
                if target not in ports and target not in ports.values():
                    f.fail(f"Service {svc['metadata']['name']}: targetPort {target} is no container port")

    # Non-root, read-only, unprivileged.
    pod_sc, sc = pod.get("securityContext", {}), container.get("securityContext", {})
    f.ok("security contexts")
    if not (pod_sc.get("runAsNonRoot") and pod_sc.get("runAsUser", 0) != 0
            and sc.get("readOnlyRootFilesystem") and sc.get("allowPrivilegeEscalation") is False
            and sc.get("capabilities", {}).get("drop") == ["ALL"]
            and pod_sc.get("seccompProfile", {}).get("type") == "RuntimeDefault"):
        f.fail(f"{service}: the pod is not non-root, read-only, without privileges and seccomp'd")


def selects(selector, labels):
    return all(labels.get(k) == v for k, v in (selector or {}).get("matchLabels", {}).items())


def check_policies(objects, f):
    policies = list(objects["NetworkPolicy"].values())
    pod_labels = {
        name: d["spec"]["template"]["metadata"].get("labels", {})
        for name, d in objects["Deployment"].items()
    }
    all_ports = {
        p["containerPort"]
        for d in objects["Deployment"].values()
        for c in d["spec"]["template"]["spec"]["containers"]
        for p in c.get("ports", [])
    }
    for service, facts in SERVICES.items():
        labels = pod_labels.get(service, {})
        mine = [p for p in policies if selects(p["spec"]["podSelector"], labels)]
        if not any("Egress" in p["spec"].get("policyTypes", []) for p in mine):
            f.fail(f"NetworkPolicy: {service}'s egress is not restricted")
        for policy in mine:
            for rule in policy["spec"].get("ingress", []):
                for port in rule.get("ports", []):
                    f.ok("network policy rules")
                    if port["port"] not in all_ports:
                        f.fail(f"NetworkPolicy {policy['metadata']['name']}: ingress port {port['port']} is no container port")
            for rule in policy["spec"].get("egress", []):
                for peer in rule.get("to", []):
                    f.ok("network policy rules")
                    database = peer.get("podSelector", {}).get("matchLabels", {}).get("paybind.dev/database")
                    if database is not None and database != facts["database"]:
                        f.fail(f"NetworkPolicy {policy['metadata']['name']}: {service} may reach the {database} database")
    # payment-svc's gRPC port: from merchant-svc's pods only.
    grpc_port = 50051
    for policy in policies:
        if not selects(policy["spec"]["podSelector"], pod_labels.get("payment-svc", {})):
            continue
        for rule in policy["spec"].get("ingress", []):
            ports = [p["port"] for p in rule.get("ports", [])]
            if ports and grpc_port not in ports and "grpc" not in ports:
                continue
            peers = rule.get("from")
            f.ok("payment-svc gRPC ingress")
            if not peers or not all(
                set(peer) == {"podSelector"}
                and peer["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name") == "merchant-svc"
                for peer in peers
            ):
                f.fail(f"NetworkPolicy {policy['metadata']['name']}: payment-svc's gRPC port is open to more than merchant-svc")


def check_placeholders(objects, f, require):
    for name, secret in objects["Secret"].items():
        for key, value in secret.get("stringData", {}).items():
            f.ok("Secret values")
            if require and not str(value).startswith("REPLACE"):
                f.fail(f"Secret {name}/{key} holds a value that is not a marked placeholder")


def main(rendered):
    docs = [d for d in yaml.safe_load_all(Path(rendered).read_text()) if d]
    objects = {k: {} for k in ("Deployment", "ConfigMap", "Secret", "Service", "NetworkPolicy")}
    for d in docs:
        objects.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
    f = Findings()
    for service, facts in SERVICES.items():
        check_service(service, facts, objects, f)
    check_policies(objects, f)
    check_placeholders(objects, f, require=True)
    if f.problems:
        for p in f.problems:
            print(f"  MISMATCH {p}")
        return 1
    print("  against the code: " + ", ".join(f"{n} {what}" for what, n in f.checked.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
