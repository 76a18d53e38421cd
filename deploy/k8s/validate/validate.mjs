// Offline checks of the Kubernetes manifests (run by ctest as `k8s_manifests`):
//   node validate.mjs --meow=PATH/TO/meow [--kustomize-root=deploy/k8s]
// 1. Renders every overlay under overlays/ with the kustomize features the manifests use
//    (resources, labels with selectors, images, strategic-merge patches with containers merged by
//    name), the way `kubectl kustomize` does for these files.
// 2. Validates each rendered object against the Kubernetes JSON schemas of kubernetes-models.
// 3. Checks that every container runs a real `meow` subcommand and that every flag in its args
//    and in the flagfile ConfigMap is one the binary defines (from `meow help --helpfull`).
// 4. Checks what the layout promises: replay and learner StatefulSets with volume claims, gRPC
//    probes on their ports, an actor Deployment, resource requests everywhere, a
//    PodDisruptionBudget and a NetworkPolicy selecting replay and learner, and the GPU overlay's
//    learner asking for nvidia.com/gpu.
// Exits 1 with one line per problem.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import YAML from "yaml";

const here = path.dirname(fileURLToPath(import.meta.url));
const args = Object.fromEntries(process.argv.slice(2).map((a) => a.replace(/^--/, "").split("=")));
const root = path.resolve(args["kustomize-root"] ?? path.join(here, ".."));
const problems = [];
const fail = (where, what) => problems.push(`${where}: ${what}`);

let models;
try {
  models = {
    ConfigMap: (await import("kubernetes-models/v1/ConfigMap")).ConfigMap,
    Service: (await import("kubernetes-models/v1/Service")).Service,
    StatefulSet: (await import("kubernetes-models/apps/v1/StatefulSet")).StatefulSet,
    Deployment: (await import("kubernetes-models/apps/v1/Deployment")).Deployment,
    PodDisruptionBudget: (await import("kubernetes-models/policy/v1/PodDisruptionBudget")).PodDisruptionBudget,
    NetworkPolicy: (await import("kubernetes-models/networking.k8s.io/v1/NetworkPolicy")).NetworkPolicy,
  };
} catch (e) {
  console.error(`validate.mjs: the schema package is missing (${e.message}); run: npm ci --prefix ${here}`);
  process.exit(2);
}

// --- a small kustomize: what deploy/k8s uses ---------------------------------------------------
const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
function strategicMerge(base, patch) {
  if (!isObject(base) || !isObject(patch)) return structuredClone(patch);
  const out = structuredClone(base);
  for (const [key, value] of Object.entries(patch)) {
    if (Array.isArray(value) && Array.isArray(out[key]) && value.every((v) => isObject(v) && "name" in v) &&
        (key === "containers" || key === "initContainers" || key === "volumes" || key === "volumeMounts" ||
         key === "env" || key === "ports")) {
      const merged = out[key].map((v) => structuredClone(v));
      for (const item of value) {
        const i = merged.findIndex((m) => m.name === item.name);
        if (i >= 0) merged[i] = strategicMerge(merged[i], item);
        else merged.push(structuredClone(item));
      }
      out[key] = merged;
    } else {
      out[key] = key in out ? strategicMerge(out[key], value) : structuredClone(value);
    }
  }
  return out;
}
function addLabels(obj, labels) {
  obj.metadata = obj.metadata ?? {};
  obj.metadata.labels = { ...(obj.metadata.labels ?? {}), ...labels };
  const spec = obj.spec ?? {};
  if (obj.kind === "Service") spec.selector = { ...(spec.selector ?? {}), ...labels };
  if (["Deployment", "StatefulSet", "PodDisruptionBudget"].includes(obj.kind)) {
    spec.selector = spec.selector ?? {};
    spec.selector.matchLabels = { ...(spec.selector.matchLabels ?? {}), ...labels };
  }
  if (spec.template) {
    spec.template.metadata = spec.template.metadata ?? {};
    spec.template.metadata.labels = { ...(spec.template.metadata.labels ?? {}), ...labels };
  }
}
function render(dir) {
  const k = YAML.parse(fs.readFileSync(path.join(dir, "kustomization.yaml"), "utf8"));
  let objects = [];
  for (const r of k.resources ?? []) {
    const p = path.join(dir, r);
    if (fs.existsSync(path.join(p, "kustomization.yaml"))) objects.push(...render(p));
    else objects.push(...YAML.parseAllDocuments(fs.readFileSync(p, "utf8")).map((d) => d.toJS()).filter(Boolean));
  }
  const patchFiles = [...(k.patchesStrategicMerge ?? []), ...(k.patches ?? []).map((p) => p.path)];
  for (const p of patchFiles) {
    const patch = YAML.parse(fs.readFileSync(path.join(dir, p), "utf8"));
    const i = objects.findIndex((o) => o.kind === patch.kind && o.metadata?.name === patch.metadata?.name);
    if (i < 0) fail(path.join(dir, p), `patches ${patch.kind}/${patch.metadata?.name}, which the resources do not have`);
    else objects[i] = strategicMerge(objects[i], patch);
  }
  if (k.commonLabels) objects.forEach((o) => addLabels(o, k.commonLabels));
  for (const l of k.labels ?? []) objects.forEach((o) => addLabels(o, l.pairs));
  for (const image of k.images ?? []) {
    for (const o of objects) {
      for (const c of o.spec?.template?.spec?.containers ?? []) {
        const [name, tag] = c.image.split(":");
        if (name === image.name) c.image = `${image.newName ?? name}:${image.newTag ?? tag ?? "latest"}`;
      }
    }
  }
  return objects;
}

// --- the binary's flags and subcommands -------------------------------------------------------
const meow = args.meow;
if (!meow || !fs.existsSync(meow)) {
  console.error("validate.mjs: --meow=PATH to the meow binary is required");
  process.exit(2);
}
let helpfull = "";
try {
  helpfull = execFileSync(meow, ["help", "--helpfull"], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
} catch (e) {
  helpfull = (e.stdout ?? "") + (e.stderr ?? "");  // absl exits non-zero after --helpfull
}
const knownFlags = new Set([...helpfull.matchAll(/^\s+--([A-Za-z0-9_]+)/gm)].map((m) => m[1]));
if (knownFlags.size < 20) {
  console.error(`validate.mjs: could not read the flags of ${meow} (--helpfull printed ${helpfull.length} bytes)`);
  process.exit(2);
}
const usage = execFileSync(meow, ["help"], { encoding: "utf8" });
const subcommands = new Set([...usage.matchAll(/^  ([a-z]+)\s/gm)].map((m) => m[1]));
function checkFlags(where, flags) {
  for (const f of flags) {
    const m = /^--(no)?([A-Za-z0-9_]+)(=.*)?$/.exec(f.trim());
    if (!m) fail(where, `"${f}" is not a --flag`);
    else if (!knownFlags.has(m[2]) && !(m[1] && knownFlags.has(m[2]))) fail(where, `--${m[2]} is not a flag of meow`);
  }
}

// --- every overlay ----------------------------------------------------------------------------
const overlays = fs.readdirSync(path.join(root, "overlays"));
if (overlays.length === 0) fail(root, "no overlays");
let checked = 0;
for (const overlay of overlays) {
  const where = `overlays/${overlay}`;
  const objects = render(path.join(root, "overlays", overlay));
  const byKind = (kind) => objects.filter((o) => o.kind === kind);
  for (const o of objects) {
    const Model = models[o.kind];
    const id = `${where} ${o.kind}/${o.metadata?.name}`;
    if (!Model) {
      fail(id, "kind not checked by this script");
      continue;
    }
    try {
      new Model(o).validate();
      checked++;
    } catch (e) {
      fail(id, `schema: ${e.message.split("\n").slice(0, 4).join("; ")}`);
    }
    for (const c of o.spec?.template?.spec?.containers ?? []) {
      const cid = `${id} container ${c.name}`;
      const [sub, ...flags] = c.args ?? [];
      if (!subcommands.has(sub)) fail(cid, `"${sub}" is not a meow subcommand`);
      checkFlags(cid, flags);
      if (!c.resources?.requests?.cpu || !c.resources?.requests?.memory) fail(cid, "no cpu and memory requests");
    }
  }
  for (const cm of byKind("ConfigMap")) {
    if (cm.data?.flags) checkFlags(`${where} ConfigMap/${cm.metadata.name} flags`, cm.data.flags.split("\n").filter((l) => l.trim()));
  }
  for (const name of ["meow-replay", "meow-learner"]) {
    const s = byKind("StatefulSet").find((o) => o.metadata.name === name);
    if (!s) {
      fail(where, `no StatefulSet ${name}`);
      continue;
    }
    if (!s.spec.volumeClaimTemplates?.length) fail(where, `${name} has no volume claim`);
    const c = s.spec.template.spec.containers[0];
    for (const probe of ["readinessProbe", "livenessProbe"]) {
      if (!c[probe]?.grpc?.port) fail(where, `${name} has no gRPC ${probe}`);
    }
  }
  if (!byKind("Deployment").some((d) => d.metadata.name === "meow-actor")) fail(where, "no actor Deployment");
  if (byKind("PodDisruptionBudget").length === 0) fail(where, "no PodDisruptionBudget");
  const policy = byKind("NetworkPolicy")[0];
  const selected = policy?.spec?.podSelector?.matchExpressions?.[0]?.values ?? [];
  if (!selected.includes("meow-replay") || !selected.includes("meow-learner")) fail(where, "no NetworkPolicy for replay and learner");
  if (overlay === "gpu") {
    const learner = byKind("StatefulSet").find((o) => o.metadata.name === "meow-learner");
    const c = learner?.spec.template.spec.containers[0];
    if (!c?.resources?.limits?.["nvidia.com/gpu"]) fail(where, "the learner does not request nvidia.com/gpu");
    if (!c?.args?.includes("--device=cuda")) fail(where, "the learner does not run --device=cuda");
  }
}

if (problems.length > 0) {
  for (const p of problems) console.error(p);
  console.error(`${problems.length} problems`);
  process.exit(1);
}
console.log(`k8s manifests: ${overlays.length} overlays, ${checked} objects valid, flags known to ${meow}`);
