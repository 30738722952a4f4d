/**
 * The three PATCH formats of the Kubernetes API, as the real API server applies them.
 *
 * Reference: https://kubernetes.io/docs/tasks/manage-kubernetes-objects/update-api-object-kubectl-patch/
 * ("Use a JSON merge patch", "Use a strategic merge patch", "Notes on the strategic merge patch")
 * and https://github.com/kubernetes/community/blob/master/contributors/devel/sig-api-machinery/strategic-merge-patch.md
 */

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
export type JsonObject = { [k: string]: Json };

/** A patch the server refuses; `code` is the HTTP status it answers with. */
export class PatchError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

export function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function clone<T>(v: T): T {
  return v === undefined ? v : structuredClone(v);
}

/** RFC 7386 JSON merge patch (`application/merge-patch+json`): objects merge, null deletes, arrays replace. */
export function jsonMergePatch(target: Json | undefined, patch: Json): Json {
  if (!isObject(patch)) return clone(patch);
  const out: JsonObject = isObject(target) ? clone(target) : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = jsonMergePatch(out[k], v);
  }
  return out;
}

/**
 * Lists that strategic merge patch merges by key instead of replacing, with their patchMergeKey, taken
 * from the `patchStrategy:"merge" patchMergeKey:"..."` tags in k8s.io/api/core/v1/types.go (NodeStatus
 * Conditions and Addresses merge on `type`; ObjectMeta OwnerReferences on `uid`). `null` marks a list of
 * primitives with patchStrategy merge (Finalizers), which merges as a set.
 */
const MERGE_KEYS: Record<string, string | null> = {
  'status.conditions': 'type',
  'status.addresses': 'type',
  'metadata.ownerReferences': 'uid',
  'metadata.finalizers': null,
};

/**
 * Strategic merge patch (`application/strategic-merge-patch+json`) for the Node fields above. Directives
 * understood: `$patch: replace|delete` in maps and list elements, `$deleteFromPrimitiveList/<key>`;
 * `$setElementOrder/<key>` and `$retainKeys` (sent by kubectl) are accepted and do not change the result here.
 */
export function strategicMergePatch(target: Json | undefined, patch: Json, path = ''): Json | undefined {
  if (!isObject(patch)) return clone(patch);
  const directive = patch.$patch;
  if (directive === 'delete') return undefined;
  if (directive === 'replace') {
    const { $patch: _, ...rest } = patch;
    return clone(rest);
  }
  if (directive !== undefined) throw new PatchError(422, `unknown patch directive $patch: ${JSON.stringify(directive)}`);
  const out: JsonObject = isObject(target) ? clone(target) : {};
  for (const [k, v] of Object.entries(patch)) {
    if (k.startsWith('$setElementOrder/') || k === '$retainKeys') continue;
    if (k.startsWith('$deleteFromPrimitiveList/')) {
      const key = k.slice('$deleteFromPrimitiveList/'.length);
      const cur = out[key];
      if (Array.isArray(cur) && Array.isArray(v)) out[key] = cur.filter((x) => !v.some((d) => JSON.stringify(d) === JSON.stringify(x)));
      continue;
    }
    const child = path ? `${path}.${k}` : k;
    if (v === null) {
      delete out[k];
    } else if (Array.isArray(v)) {
      out[k] = child in MERGE_KEYS ? mergeList(out[k], v, MERGE_KEYS[child] ?? null, child) : clone(v);
    } else if (isObject(v)) {
      const merged = strategicMergePatch(out[k], v, child);
      if (merged === undefined) delete out[k];
      else out[k] = merged;
    } else {
      out[k] = v;
    }
  }
  return out;
}

function mergeList(target: Json | undefined, patch: Json[], key: string | null, path: string): Json[] {
  const out: Json[] = Array.isArray(target) ? clone(target) : [];
  if (key === null) {
    for (const item of patch) if (!out.some((x) => JSON.stringify(x) === JSON.stringify(item))) out.push(clone(item));
    return out;
  }
  for (const item of patch) {
    if (!isObject(item) || !(key in item)) {
      throw new PatchError(422, `${path}: every element of a strategic merge patch list needs its merge key "${key}"`);
    }
    const at = out.findIndex((x) => isObject(x) && x[key] === item[key]);
    if (item.$patch === 'delete') {
      if (at >= 0) out.splice(at, 1);
      continue;
    }
    if (at >= 0) out[at] = strategicMergePatch(out[at], item, path) ?? null;
    else out.push(strategicMergePatch(undefined, item, path) ?? null);
  }
  return out;
}

/** RFC 6901 pointer to path segments. */
function pointer(p: unknown): string[] {
  if (typeof p !== 'string' || (p !== '' && !p.startsWith('/'))) throw new PatchError(422, `invalid JSON pointer ${JSON.stringify(p)}`);
  return p === '' ? [] : p.slice(1).split('/').map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

function parentOf(doc: Json, segs: string[]): { parent: Json; last: string } {
  let cur: Json = doc;
  for (const s of segs.slice(0, -1)) {
    const next: Json | undefined = Array.isArray(cur) ? cur[Number(s)] : isObject(cur) ? cur[s] : undefined;
    if (next === undefined) throw new PatchError(422, `path /${segs.join('/')}: /${s} does not exist`);
    cur = next;
  }
  return { parent: cur, last: segs[segs.length - 1] ?? '' };
}

function getAt(doc: Json, segs: string[]): Json | undefined {
  let cur: Json | undefined = doc;
  for (const s of segs) cur = Array.isArray(cur) ? cur[Number(s)] : isObject(cur) ? cur[s] : undefined;
  return cur;
}

function addAt(doc: Json, segs: string[], value: Json): Json {
  if (!segs.length) return clone(value);
  const { parent, last } = parentOf(doc, segs);
  if (Array.isArray(parent)) {
    const i = last === '-' ? parent.length : Number(last);
    if (!Number.isInteger(i) || i < 0 || i > parent.length) throw new PatchError(422, `index ${last} out of range`);
    parent.splice(i, 0, clone(value));
  } else if (isObject(parent)) {
    parent[last] = clone(value);
  } else {
    throw new PatchError(422, `cannot add below a scalar at /${segs.join('/')}`);
  }
  return doc;
}

function removeAt(doc: Json, segs: string[]): Json {
  const { parent, last } = parentOf(doc, segs);
  if (Array.isArray(parent)) {
    const i = Number(last);
    if (!(i >= 0 && i < parent.length)) throw new PatchError(422, `index ${last} out of range`);
    parent.splice(i, 1);
  } else if (isObject(parent) && last in parent) {
    delete parent[last];
  } else {
    throw new PatchError(422, `path /${segs.join('/')} does not exist`);
  }
  return doc;
}

/**
 * RFC 6902 JSON patch (`application/json-patch+json`). The body must be an array of operations; the
 * API server answers a JSON object here with 400 (it cannot decode it into `[]jsonPatchOp`), which is
 * what client-node users meet when they forget the Content-Type of a strategic merge patch.
 */
export function jsonPatch(target: Json, ops: Json): Json {
  if (!Array.isArray(ops)) {
    throw new PatchError(400, 'json: cannot unmarshal object into Go value of type []handlers.jsonPatchOp');
  }
  let doc = clone(target);
  for (const op of ops) {
    if (!isObject(op)) throw new PatchError(400, 'a JSON patch operation must be an object');
    const segs = pointer(op.path);
    switch (op.op) {
      case 'add':
        doc = addAt(doc, segs, op.value ?? null);
        break;
      case 'remove':
        doc = removeAt(doc, segs);
        break;
      case 'replace':
        if (getAt(doc, segs) === undefined) throw new PatchError(422, `replace: path ${String(op.path)} does not exist`);
        doc = segs.length ? addAt(removeAt(doc, segs), segs, op.value ?? null) : clone(op.value ?? null);
        break;
      case 'test':
        if (JSON.stringify(getAt(doc, segs)) !== JSON.stringify(op.value)) {
          throw new PatchError(422, `testing value ${String(op.path)} failed`);
        }
        break;
      case 'move':
      case 'copy': {
        const from = pointer(op.from);
        const v = getAt(doc, from);
        if (v === undefined) throw new PatchError(422, `${op.op}: from ${String(op.from)} does not exist`);
        if (op.op === 'move') doc = removeAt(doc, from);
        doc = addAt(doc, segs, v);
        break;
      }
      default:
        throw new PatchError(422, `unknown JSON patch op ${JSON.stringify(op.op)}`);
    }
  }
  return doc;
}
