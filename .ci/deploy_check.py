#!/usr/bin/env python3
"""Checks deploy/ against the code and the recorded benchmarks (run by .ci/run).

Schema validity is kubernetes-validate's job and style yamllint's; this checks what neither
can know:

- the proxy container of every Deployment runs exactly the Dockerfile's ENTRYPOINT + CMD;
- the pod's terminationGracePeriodSeconds leaves room for the proxy's drain
  (shutdown.drain_delay + shutdown.grace_period from the ConfigMap, or the defaults) after
  Chamilo's preStop, and Chamilo outlives the proxy where both stop together;
- memory requests and limits are above the peak RSS recorded in bench/chamilo.md;
- probes and the Prometheus annotations use the admin port the configuration listens on;
- the kustomization lists files that exist, and the scrape configuration keeps the admin port.

Usage: deploy_check.py [REPO]  (needs PyYAML: the deploy venv of .ci/run has it)
"""

import json
import pathlib
import re
import sys
import tomllib

import yaml

ROOT = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
DEFAULT_DRAIN_DELAY = 5.0  # src/config/mod.rs, ShutdownConfig::default
DEFAULT_GRACE_PERIOD = 20.0
# Chamilo's own stop (Apache/PHP-FPM graceful stop) that the budget must leave room for.
CHAMILO_STOP = 10.0

failures = []


def fail(message):
    failures.append(message)
    print(f"✗ {message}")


def ok(message):
    print(f"✓ {message}")


def seconds(text):
    """A humantime duration as the configuration takes it ("5s", "1m 30s", "250ms")."""
    total = 0.0
    units = {"ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]+)", text):
        total += float(number) * units[unit]
    return total


def mebibytes(quantity):
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|M|G)?", str(quantity))
    if not match:
        raise ValueError(f"cannot read the quantity {quantity!r}")
    factor = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "M": 1e6 / 2**20, "G": 1e9 / 2**20, None: 1 / 2**20}
    return float(match.group(1)) * factor[match.group(2)]


def dockerfile_argv():
    """ENTRYPOINT + CMD of the final stage, both in exec (JSON) form."""
    entrypoint, cmd = None, None
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("FROM "):
            entrypoint, cmd = None, None
        elif line.startswith("ENTRYPOINT "):
            entrypoint = json.loads(line[len("ENTRYPOINT "):])
        elif line.startswith("CMD "):
            cmd = json.loads(line[len("CMD "):])
    if entrypoint is None or cmd is None:
        fail("the Dockerfile's last stage needs ENTRYPOINT and CMD in exec form")
        return [], []
    return entrypoint, cmd


def documents(path):
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def peak_rss_mib():
    """The largest VmHWM any recorded run of the binary reached (bench/chamilo.md tables:
    accounts, when, VmHWM, VmRSS, and since session 11 RssAnon and RssFile)."""
    peaks = [
        float(m.group(1))
        for m in re.finditer(r"^\|[^|\n]*\|[^|\n]*\|\s*([\d.]+) MiB\s*\|\s*[\d.]+ MiB\s*\|(?:\s*[\d.]+ MiB\s*\|)*$",
                             (ROOT / "bench/chamilo.md").read_text(), re.M)
    ]
    if not peaks:
        fail("no VmHWM figure found in bench/chamilo.md")
        return 0.0
    return max(peaks)


def main():
    entrypoint, cmd = dockerfile_argv()
    config_docs = documents(ROOT / "deploy/config.yaml")
    configmap = next(d for d in config_docs if d["kind"] == "ConfigMap")
    config = tomllib.loads(configmap["data"]["config.toml"])
    shutdown = config.get("shutdown", {})
    drain = seconds(shutdown.get("drain_delay", "")) or DEFAULT_DRAIN_DELAY
    grace = seconds(shutdown.get("grace_period", "")) or DEFAULT_GRACE_PERIOD
    admin_port = int(config.get("admin", {}).get("listen", "127.0.0.1:9090").rsplit(":", 1)[1])
    peak = peak_rss_mib()
    ok(f"drain {drain:g} s + grace {grace:g} s; admin port {admin_port}; peak RSS {peak} MiB")

    for name in ["native-sidecar.yaml", "classic-sidecar.yaml"]:
        for doc in documents(ROOT / "deploy" / name):
            if doc["kind"] != "Deployment":
                continue
            pod = doc["spec"]["template"]
            spec = pod["spec"]
            native = name.startswith("native")
            all_containers = spec.get("initContainers", []) + spec["containers"]
            proxy = next(c for c in all_containers if "chamilo-scim-proxy" in c["image"])
            chamilo = next(c for c in spec["containers"] if c["name"] == "chamilo")
            where = f"deploy/{name}"

            argv = proxy.get("command", []) + proxy.get("args", [])
            if argv == entrypoint + cmd:
                ok(f"{where}: the proxy runs the image's ENTRYPOINT + CMD {argv}")
            else:
                fail(f"{where}: the proxy runs {argv}, the Dockerfile says {entrypoint + cmd}")

            if native and proxy.get("restartPolicy") != "Always":
                fail(f"{where}: a native sidecar needs restartPolicy: Always")

            pre_stop = chamilo.get("lifecycle", {}).get("preStop", {})
            sleep = 0.0
            if "sleep" in pre_stop:
                sleep = float(pre_stop["sleep"]["seconds"])
            elif pre_stop.get("exec", {}).get("command", [None])[0] == "sleep":
                sleep = float(pre_stop["exec"]["command"][1])
            budget = float(spec.get("terminationGracePeriodSeconds", 30))
            if native:
                # Main containers stop first; the sidecar gets SIGTERM once Chamilo has exited.
                need = sleep + CHAMILO_STOP + drain + grace
                if sleep < drain:
                    fail(f"{where}: Chamilo's preStop ({sleep:g} s) should cover drain_delay ({drain:g} s) while endpoints update")
            else:
                # Both get SIGTERM together: Chamilo must still serve until the proxy is done.
                need = max(sleep, drain + grace) + CHAMILO_STOP
                if sleep < drain + grace:
                    fail(f"{where}: Chamilo's preStop ({sleep:g} s) ends before the proxy's drain ({drain + grace:g} s)")
            if budget >= need:
                ok(f"{where}: terminationGracePeriodSeconds {budget:g} ≥ {need:g} s needed (preStop {sleep:g} s)")
            else:
                fail(f"{where}: terminationGracePeriodSeconds {budget:g} < {need:g} s needed")

            resources = proxy.get("resources", {})
            request = mebibytes(resources.get("requests", {}).get("memory", "0"))
            limit = mebibytes(resources.get("limits", {}).get("memory", "0"))
            if request >= peak and limit >= 2 * peak:
                ok(f"{where}: memory request {request:g} MiB ≥ peak {peak} MiB, limit {limit:g} MiB ≥ twice it")
            else:
                fail(f"{where}: memory request {request:g} MiB / limit {limit:g} MiB against a recorded peak of {peak} MiB")
            if "cpu" not in resources.get("requests", {}):
                fail(f"{where}: no CPU request")

            ports = {p["name"]: p["containerPort"] for p in proxy.get("ports", [])}
            if ports.get("admin") != admin_port:
                fail(f"{where}: the admin containerPort {ports.get('admin')} is not admin.listen's {admin_port}")
            for probe in ["readinessProbe", "livenessProbe"]:
                if proxy.get(probe, {}).get("httpGet", {}).get("port") != "admin":
                    fail(f"{where}: {probe} must use the admin port")
            annotations = pod.get("metadata", {}).get("annotations", {})
            if annotations.get("prometheus.io/port") != str(admin_port) or annotations.get("prometheus.io/path") != "/metrics":
                fail(f"{where}: the prometheus.io annotations must name port {admin_port} and /metrics")

    kustomization = yaml.safe_load((ROOT / "deploy/kustomization.yaml").read_text())
    for resource in kustomization.get("resources", []):
        if not (ROOT / "deploy" / resource).is_file():
            fail(f"deploy/kustomization.yaml: {resource} does not exist")
    ok(f"deploy/kustomization.yaml: {', '.join(kustomization.get('resources', []))}")

    scrape = yaml.safe_load((ROOT / "deploy/prometheus/scrape.yaml").read_text())
    jobs = {job["job_name"]: job for job in scrape["scrape_configs"]}
    keeps = [r for r in jobs["chamilo-scim-proxy"]["relabel_configs"] if r.get("action") == "keep"]
    if not any(r.get("regex") == "admin" for r in keeps):
        fail("deploy/prometheus/scrape.yaml: the Kubernetes job must keep only the admin port")
    rules = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yaml").read_text())
    ok(f"deploy/prometheus/alerts.yaml: {sum(len(g['rules']) for g in rules['groups'])} alert rules")

    if failures:
        print(f"{len(failures)} deploy check(s) failed", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
