"""Cross-checks of deploy/kubernetes/ that a JSON schema cannot make.

Run by scripts/validate-deploy with the Python of its venv (PyYAML comes with
kubernetes-validate):

    python deploy-checks.py DIR [--ferry BIN]

The schemas check each object alone; this checks that the objects fit together
and fit the worker: every file is listed in kustomization.yaml, every name a pod
refers to (ConfigMap, Secret, key, volume, port, ServiceAccount) exists, the
selectors select the pods, the worker file's port and pipelines_dir match the
container, every ${VAR} the worker file and the pipelines need is in the
container's environment, and the Secret holds placeholders only. With --ferry,
the pipelines of the ConfigMap are also checked by `ferry validate`, with the
container's environment. Prints one line per problem and exits 1 if any.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile

import yaml

# ${VAR} without a default (${VAR:-default} needs nothing set): what Ferry's
# interpolation fails on when VAR is unset. $${ is a literal ${.
VAR_REF = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
CONFIG_FLAG = "--config"
PLACEHOLDER_PREFIX = "REPLACE-ME"


class Problems:
    """Collects problems so one run reports all of them."""

    def __init__(self):
        self.items = []

    def add(self, where, message):
        self.items.append(f"{where}: {message}")


def load_objects(directory, problems):
    """Reads kustomization.yaml and the objects of the files it lists.

    Returns {(kind, name): (file, object)}; a file in the folder that the
    kustomization does not list is a problem (it would never be applied).
    """
    kustomization_path = os.path.join(directory, "kustomization.yaml")
    with open(kustomization_path, encoding="utf-8") as f:
        kustomization = yaml.safe_load(f) or {}
    listed = kustomization.get("resources") or []
    present = sorted(
        n for n in os.listdir(directory) if n.endswith((".yaml", ".yml")) and n != "kustomization.yaml"
    )
    for name in present:
        if name not in listed:
            problems.add(name, "not listed under resources: in kustomization.yaml (it would not be applied)")
    objects = {}
    for name in listed:
        path = os.path.join(directory, name)
        if not os.path.isfile(path):
            problems.add("kustomization.yaml", f"resources: lists {name}, which does not exist")
            continue
        with open(path, encoding="utf-8") as f:
            for doc in yaml.safe_load_all(f):
                if not doc:
                    continue
                key = (doc.get("kind"), (doc.get("metadata") or {}).get("name"))
                if key in objects:
                    problems.add(name, f"{key[0]} {key[1]} is defined twice (also in {objects[key][0]})")
                objects[key] = (name, doc)
    return objects


def keys_of(obj):
    """The keys of a ConfigMap or Secret (data and stringData together)."""
    return set((obj.get("data") or {}).keys()) | set((obj.get("stringData") or {}).keys())


def check_ref(objects, problems, where, kind, name, key=None):
    """Checks that `kind name` exists (and holds `key`); returns the object or None."""
    found = objects.get((kind, name))
    if found is None:
        problems.add(where, f"refers to {kind} '{name}', which no file defines")
        return None
    obj = found[1]
    if key is not None and key not in keys_of(obj):
        problems.add(where, f"refers to key '{key}' of {kind} '{name}', which has {sorted(keys_of(obj))}")
    return obj


def selects(selector, labels):
    """True when every label of `selector` is on `labels`."""
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def container_env(container):
    """{NAME: sample value} of a container's env, as the pod would see it.

    Literal values are kept; values from the downward API or a Secret get a
    stand-in, since they only exist in a running pod.
    """
    env = {}
    for item in container.get("env") or []:
        if "value" in item:
            env[item["name"]] = str(item["value"])
        else:
            env[item["name"]] = f"stand-in-for-{item['name'].lower()}"
    return env


def check_pod_refs(objects, problems, where, pod_spec):
    """Names the pod refers to: ServiceAccount, volumes' ConfigMaps and Secrets, env keys, mounts."""
    account = pod_spec.get("serviceAccountName")
    if account:
        check_ref(objects, problems, where, "ServiceAccount", account)
    volumes = {}
    for volume in pod_spec.get("volumes") or []:
        volumes[volume["name"]] = volume
        if "configMap" in volume:
            check_ref(objects, problems, f"{where} volume {volume['name']}", "ConfigMap", volume["configMap"]["name"])
        if "secret" in volume:
            check_ref(objects, problems, f"{where} volume {volume['name']}", "Secret", volume["secret"]["secretName"])
    for container in pod_spec.get("containers") or []:
        cwhere = f"{where} container {container['name']}"
        for item in container.get("env") or []:
            source = item.get("valueFrom") or {}
            if "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                check_ref(objects, problems, f"{cwhere} env {item['name']}", "Secret", ref["name"], ref["key"])
            if "configMapKeyRef" in source:
                ref = source["configMapKeyRef"]
                check_ref(objects, problems, f"{cwhere} env {item['name']}", "ConfigMap", ref["name"], ref["key"])
        for mount in container.get("volumeMounts") or []:
            volume = volumes.get(mount["name"])
            if volume is None:
                problems.add(cwhere, f"mounts volume '{mount['name']}', which the pod does not have")
                continue
            if "subPath" in mount and "configMap" in volume:
                check_ref(
                    objects, problems, f"{cwhere} mount {mount['mountPath']}", "ConfigMap",
                    volume["configMap"]["name"], mount["subPath"],
                )
        port_names = {p.get("name") for p in container.get("ports") or []}
        for probe_name in ("readinessProbe", "livenessProbe", "startupProbe"):
            probe = (container.get(probe_name) or {}).get("httpGet")
            if probe and isinstance(probe.get("port"), str) and probe["port"] not in port_names:
                problems.add(cwhere, f"{probe_name} uses port '{probe['port']}', which the container does not name")
    return volumes


def mounted_configmap_file(objects, container, volumes, path):
    """The text of the ConfigMap key mounted at `path` (a subPath mount), or None."""
    for mount in container.get("volumeMounts") or []:
        volume = volumes.get(mount["name"]) or {}
        if mount["mountPath"] == path and "subPath" in mount and "configMap" in volume:
            found = objects.get(("ConfigMap", volume["configMap"]["name"]))
            if found:
                return (found[1].get("data") or {}).get(mount["subPath"])
    return None


def mounted_configmap_dir(objects, container, volumes, path):
    """The ConfigMap mounted as a whole folder at `path`, or None."""
    for mount in container.get("volumeMounts") or []:
        volume = volumes.get(mount["name"]) or {}
        if mount["mountPath"].rstrip("/") == path.rstrip("/") and "subPath" not in mount and "configMap" in volume:
            found = objects.get(("ConfigMap", volume["configMap"]["name"]))
            return found[1] if found else None
    return None


def without_comment(line):
    """The line without its YAML comment: a # at the start or after a blank, outside quotes.

    Ferry does not interpolate comments, so a ${VAR} there needs nothing set.
    """
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i]
    return line


def missing_vars(text, env):
    """The ${VAR} references of `text` (without a default, outside comments) that `env` lacks."""
    refs = set()
    for line in text.splitlines():
        refs.update(VAR_REF.findall(without_comment(line)))
    return sorted(refs - set(env))


def port_of(address):
    """The port of 'host:port' or 'http://host:port/...', or None."""
    match = re.search(r":(\d+)(?:/.*)?$", address or "")
    return int(match.group(1)) if match else None


def check_worker(objects, problems, where, container, volumes):
    """The worker file the container's args name, against the container.

    Returns the pipelines ConfigMap (mounted at pipelines_dir) or None.
    """
    args = container.get("args") or []
    if CONFIG_FLAG not in args or args.index(CONFIG_FLAG) + 1 >= len(args):
        problems.add(where, f"args {args} name no worker file ({CONFIG_FLAG} PATH)")
        return None
    path = args[args.index(CONFIG_FLAG) + 1]
    text = mounted_configmap_file(objects, container, volumes, path)
    if text is None:
        problems.add(where, f"the worker file {path} is not a ConfigMap key mounted with subPath")
        return None
    wwhere = f"{where} worker file {path}"
    try:
        worker = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        problems.add(wwhere, f"is not YAML: {e}")
        return None
    for key in ("brokers", "group", "listen", "pipelines_dir"):
        if not worker.get(key):
            problems.add(wwhere, f"has no '{key}'")
    env = container_env(container)
    for var in missing_vars(text, env):
        problems.add(wwhere, f"uses ${{{var}}}, which the container's env does not set")
    container_ports = {p["containerPort"] for p in container.get("ports") or []}
    for key in ("listen", "advertised_url"):
        port = port_of(worker.get(key))
        if worker.get(key) and port not in container_ports:
            problems.add(wwhere, f"{key} port {port} is not a containerPort ({sorted(container_ports)})")
    listen = str(worker.get("listen") or "")
    if listen.startswith("127.") or listen.startswith("localhost"):
        problems.add(wwhere, f"listen {listen} is loopback: probes and the Service cannot reach it")
    pipelines_dir = worker.get("pipelines_dir")
    if not pipelines_dir:
        return None
    pipelines = mounted_configmap_dir(objects, container, volumes, pipelines_dir)
    if pipelines is None:
        problems.add(wwhere, f"pipelines_dir {pipelines_dir} is not a ConfigMap mounted as a folder")
    return pipelines


def check_pipelines(problems, where, pipelines, env, ferry):
    """Each pipeline file of the ConfigMap: YAML, its ${VAR}s set, and (with a binary) `ferry validate`."""
    files = pipelines.get("data") or {}
    if not files:
        problems.add(where, "holds no pipeline file")
    for name, text in sorted(files.items()):
        pwhere = f"{where} {name}"
        if not name.endswith((".yaml", ".yml")):
            problems.add(pwhere, "is not a .yaml file (the worker reads *.yaml)")
        try:
            yaml.safe_load(text)
        except yaml.YAMLError as e:
            problems.add(pwhere, f"is not YAML: {e}")
            continue
        for var in missing_vars(text, env):
            problems.add(pwhere, f"uses ${{{var}}}, which the container's env does not set")
    if ferry and files:
        run_ferry_validate(problems, where, files, env, ferry)


def run_ferry_validate(problems, where, files, env, ferry):
    """`ferry validate` on the pipeline files, with only the container's env (and PATH) set."""
    with tempfile.TemporaryDirectory(prefix="ferry-deploy-") as tmp:
        paths = []
        for name, text in sorted(files.items()):
            path = os.path.join(tmp, name)
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            paths.append(path)
        run_env = dict(env, PATH=os.environ.get("PATH", "/usr/bin:/bin"))
        result = subprocess.run([ferry, "validate", *paths], env=run_env, capture_output=True, text=True)
        for line in (result.stdout + result.stderr).splitlines():
            print(f"  ferry validate: {line.replace(tmp + os.sep, '')}", file=sys.stderr)
        if result.returncode != 0:
            problems.add(where, f"`ferry validate` refused the pipelines (exit {result.returncode}, lines above)")


def check_secrets(objects, problems):
    """Secrets in the repository hold placeholders, never a value someone could take for real."""
    for (kind, name), (file, obj) in sorted(objects.items()):
        if kind != "Secret":
            continue
        if obj.get("data"):
            problems.add(file, f"Secret {name} has data: (base64); write placeholders under stringData:")
        for key, value in (obj.get("stringData") or {}).items():
            if not str(value).startswith(PLACEHOLDER_PREFIX):
                problems.add(file, f"Secret {name} key {key} is not a placeholder (start it with {PLACEHOLDER_PREFIX})")


def check_selectors(objects, problems, labels, where):
    """Services and PodDisruptionBudgets select the Deployment's pods."""
    for (kind, name), (file, obj) in sorted(objects.items()):
        if kind == "Service":
            selector = (obj.get("spec") or {}).get("selector") or {}
        elif kind == "PodDisruptionBudget":
            selector = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        else:
            continue
        if not selects(selector, labels):
            problems.add(file, f"{kind} {name} selects {selector}, not the pods of {where} ({labels})")


def check_service_ports(objects, problems, containers):
    """Each Service targetPort is a port the pods have (by name or number)."""
    names = {p.get("name") for c in containers for p in c.get("ports") or []}
    numbers = {p.get("containerPort") for c in containers for p in c.get("ports") or []}
    for (kind, name), (file, obj) in sorted(objects.items()):
        if kind != "Service":
            continue
        for port in (obj.get("spec") or {}).get("ports") or []:
            target = port.get("targetPort", port.get("port"))
            if target not in names and target not in numbers:
                problems.add(file, f"Service {name} targetPort {target} is no port of the pods")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory")
    parser.add_argument("--ferry", help="a ferry binary: also `ferry validate` the ConfigMap's pipelines")
    args = parser.parse_args()
    problems = Problems()
    try:
        check_all(args, problems)
    except (KeyError, TypeError, AttributeError, yaml.YAMLError, OSError) as e:
        # A missing or mistyped field the checks rely on: the schema check names it exactly.
        problems.add(args.directory, f"cannot check further ({type(e).__name__}: {e}); see the schema errors")
    for item in problems.items:
        print(f"deploy-checks: {item}", file=sys.stderr)
    if problems.items:
        sys.exit(1)
    print(f"deploy-checks: {args.directory}: the objects fit together", file=sys.stderr)


def check_all(args, problems):
    """Every check of the module docstring, on the folder args.directory."""
    objects = load_objects(args.directory, problems)
    deployments = [(file, obj) for (kind, _), (file, obj) in objects.items() if kind == "Deployment"]
    if not deployments:
        problems.add(args.directory, "no Deployment")
    for file, deployment in deployments:
        where = f"{file} Deployment {deployment['metadata']['name']}"
        spec = deployment["spec"]
        pod_labels = spec["template"]["metadata"].get("labels") or {}
        if not selects(spec["selector"].get("matchLabels") or {}, pod_labels):
            problems.add(where, "spec.selector does not select the pod template's labels")
        pod_spec = spec["template"]["spec"]
        volumes = check_pod_refs(objects, problems, where, pod_spec)
        check_selectors(objects, problems, pod_labels, where)
        check_service_ports(objects, problems, pod_spec["containers"])
        for container in pod_spec["containers"]:
            cwhere = f"{where} container {container['name']}"
            pipelines = check_worker(objects, problems, cwhere, container, volumes)
            if pipelines is not None:
                pwhere = f"ConfigMap {pipelines['metadata']['name']}"
                check_pipelines(problems, pwhere, pipelines, container_env(container), args.ferry)
    check_secrets(objects, problems)


if __name__ == "__main__":
    main()
